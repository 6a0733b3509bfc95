/*
 * shamir.c - thin, checked wrapper over libgfshare with the coefficients
 * drawn from OpenSSL's CSPRNG (libgfshare's default source is not trusted).
 * Runs in kmsctl and kmsd.
 */
#include <stdlib.h>
#include <string.h>

#include <libgfshare.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "kms/shamir.h"

static void
csprng(unsigned char *buf, unsigned int n)
{
	/* libgfshare cannot be told of a failure; abort rather than split
	 * with predictable coefficients. */
	if (RAND_bytes(buf, (int)n) != 1)
		abort();
}

int
shamir_split(const uint8_t *secret, size_t n, unsigned count,
    unsigned threshold, uint8_t *xs, uint8_t *const *shares)
{
	gfshare_ctx *g;
	uint8_t *copy;
	unsigned i;

	if (count < 1 || count > SHAMIR_MAX || threshold < 1 ||
	    threshold > count || n == 0 || n > 4096)
		return ERR_INVAL;
	for (i = 0; i < count; i++)
		xs[i] = (uint8_t)(i + 1);
	gfshare_fill_rand = csprng;
	g = gfshare_ctx_init_enc(xs, count, (unsigned char)threshold,
	    (unsigned)n);
	if (g == NULL)
		return ERR_NOMEM;
	copy = secmem_alloc(n);
	if (copy == NULL) {
		gfshare_ctx_free(g);
		return ERR_NOMEM;
	}
	memcpy(copy, secret, n);
	gfshare_ctx_enc_setsecret(g, copy);
	for (i = 0; i < count; i++)
		gfshare_ctx_enc_getshare(g, (unsigned char)i, shares[i]);
	gfshare_ctx_free(g);	/* wipes its own buffers */
	secmem_free(copy, n);
	return 0;
}

int
shamir_combine(const uint8_t *xs, const uint8_t *const *shares, unsigned k,
    size_t n, uint8_t *secret)
{
	uint8_t nrs[SHAMIR_MAX];
	gfshare_ctx *g;
	unsigned i, j;

	if (k < 1 || k > SHAMIR_MAX || n == 0 || n > 4096)
		return ERR_INVAL;
	for (i = 0; i < k; i++) {
		if (xs[i] == 0)
			return ERR_INVAL;
		for (j = 0; j < i; j++)
			if (xs[j] == xs[i])
				return ERR_EXISTS;
		nrs[i] = xs[i];
	}
	/* gfshare_ctx_free overwrites its buffers with fill_rand output:
	 * it must be set here too. */
	gfshare_fill_rand = csprng;
	g = gfshare_ctx_init_dec(nrs, k, (unsigned)n);
	if (g == NULL)
		return ERR_NOMEM;
	for (i = 0; i < k; i++)
		gfshare_ctx_dec_giveshare(g, (unsigned char)i,
		    (unsigned char *)(uintptr_t)shares[i]);
	gfshare_ctx_dec_extract(g, secret);
	gfshare_ctx_free(g);
	return 0;
}

void
shamir_pin_check(const uint8_t set[8], const uint8_t *pin, size_t n,
    uint8_t out[8])
{
	static const char tag[] = "sptsm-pin-check";
	uint8_t d[32];
	EVP_MD_CTX *c = EVP_MD_CTX_new();
	unsigned int dl = 0;

	memset(d, 0, sizeof(d));
	if (c != NULL && EVP_DigestInit_ex(c, EVP_sha256(), NULL) == 1 &&
	    EVP_DigestUpdate(c, tag, sizeof(tag) - 1) == 1 &&
	    EVP_DigestUpdate(c, set, 8) == 1 && EVP_DigestUpdate(c, pin, n) == 1)
		(void)EVP_DigestFinal_ex(c, d, &dl);
	EVP_MD_CTX_free(c);
	memcpy(out, d, 8);
}
