/*
 * kdf.c - SP 800-108 counter-mode KDF over a CMAC callback, and the
 * GlobalPlatform SCP03 input layout. Runs in kmsd; holds no key.
 */
#include <string.h>

#include "kms/kdf.h"

int
kdf_counter_cmac(kdf_prf_fn prf, void *ctx, const uint8_t *before, size_t blen,
    const uint8_t *after, size_t alen, uint8_t *out, size_t outlen)
{
	uint8_t in[128], mac[16];
	size_t done = 0, take;
	unsigned i;
	int rc = 0;

	if (blen + 1 + alen > sizeof(in) || outlen > 255 * 16)
		return ERR_TOOBIG;
	memcpy(in, before, blen);
	memcpy(in + blen + 1, after, alen);
	for (i = 1; done < outlen; i++) {
		in[blen] = (uint8_t)i;
		if ((rc = prf(ctx, in, blen + 1 + alen, mac)) != 0)
			break;
		take = outlen - done < 16 ? outlen - done : 16;
		memcpy(out + done, mac, take);
		done += take;
	}
	wipe(mac, sizeof(mac));
	return rc;
}

int
kdf_scp03(kdf_prf_fn prf, void *ctx, uint8_t konst, const uint8_t *context,
    size_t clen, uint16_t lbits, uint8_t *out)
{
	uint8_t before[15] = { 0 };

	/* gp-reference §1.3: label 00x11 | const, separator 00, L in bits. */
	before[11] = konst;
	before[12] = 0x00;
	before[13] = (uint8_t)(lbits >> 8);
	before[14] = (uint8_t)lbits;
	if (lbits == 0 || lbits % 8 != 0)
		return ERR_INVAL;
	return kdf_counter_cmac(prf, ctx, before, sizeof(before), context, clen,
	    out, lbits / 8);
}
