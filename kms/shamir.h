/*
 * shamir.h - Shamir secret sharing over GF(2^8) (libgfshare), for the
 * custodian quorum: the token PINs are split into N shares of which any M
 * rebuild them. Shares and secrets live in locked memory (secmem).
 * Used by kmsctl (split, combine) and kmsd (combine, at unseal).
 */
#ifndef SPTSM_SHAMIR_H
#define SPTSM_SHAMIR_H

#include "kms/base.h"

#define SHAMIR_MAX 32

/* xs[i] (1..count) and shares[i] (n bytes each, caller-allocated) for
 * i < count; any `threshold` of them rebuild the secret. */
int shamir_split(const uint8_t *secret, size_t n, unsigned count,
	    unsigned threshold, uint8_t *xs, uint8_t *const *shares) WUR;
/* Rebuilds from k shares with distinct xs. A wrong share gives a wrong
 * secret, not an error: check the result against a verifier. */
int shamir_combine(const uint8_t *xs, const uint8_t *const *shares, unsigned k,
	    size_t n, uint8_t *secret) WUR;

/* Verifier stored with every share: the first 8 bytes of
 * SHA-256("sptsm-pin-check" | set | pin). Lets the combiner tell a wrong
 * quorum from a right one without spending a token login attempt. */
void shamir_pin_check(const uint8_t set[8], const uint8_t *pin, size_t n,
	    uint8_t out[8]);

#endif
