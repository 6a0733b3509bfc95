/*
 * kdf.h - NIST SP 800-108 KDF in counter mode with a CMAC PRF, counter
 * (8 bits) between two fixed parts: the shape GlobalPlatform SCP03 uses
 * (GPC Amd D §6.2.2: before = 00x11|const|00|L, after = context). The PRF
 * is a callback so the key stays in the token. Used by kmsd.
 */
#ifndef SPTSM_KDF_H
#define SPTSM_KDF_H

#include "kms/base.h"

typedef int (*kdf_prf_fn)(void *ctx, const uint8_t *in, size_t n,
    uint8_t out[16]);

/* out = PRF(before|i|after) for i = 1, 2, ... truncated to outlen bytes. */
int kdf_counter_cmac(kdf_prf_fn prf, void *ctx, const uint8_t *before,
	    size_t blen, const uint8_t *after, size_t alen, uint8_t *out,
	    size_t outlen) WUR;

/* The GP layout: before = 00x11 | konst | 00 | lbits (2 bytes). */
int kdf_scp03(kdf_prf_fn prf, void *ctx, uint8_t konst, const uint8_t *context,
	    size_t clen, uint16_t lbits, uint8_t *out) WUR;

#endif
