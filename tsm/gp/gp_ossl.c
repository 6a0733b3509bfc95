/*
 * gp_ossl.c - reference backend for tests and benchmarks; tsmd never uses
 * it. Implements struct gp_backend with OpenSSL on raw AES keys held in
 * this process (library gpossl), so the engine can be checked against
 * public vectors and timed without kmsd. Trusts its caller; not
 * thread-safe. Production keys live in kmsd behind the same interface.
 */
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#include "tsm/gp/gp_int.h"

struct okey {
	size_t          len;
	uint8_t         k[32];
	EVP_MAC_CTX    *mac;		/* CMAC, keyed once, re-initialised per use */
	EVP_CIPHER_CTX *ecb, *cbc_e, *cbc_d;
};

struct gp_ossl {
	struct okey **keys;		/* ref = index + 1; slots are never reused */
	size_t        n, cap, live;
	EVP_MAC      *cmac;
	EVP_CIPHER   *ecb[3], *cbc[3];	/* AES-128/192/256 */
};

static const char *ecb_names[3] = { "AES-128-ECB", "AES-192-ECB", "AES-256-ECB" };
static const char *cbc_names[3] = { "AES-128-CBC", "AES-192-CBC", "AES-256-CBC" };

static int
size_index(size_t len)
{
	return len == 16 ? 0 : len == 24 ? 1 : len == 32 ? 2 : -1;
}

struct gp_ossl *
gp_ossl_new(void)
{
	struct gp_ossl *o = calloc(1, sizeof(*o));
	int i;

	if (o == NULL)
		return NULL;
	o->cmac = EVP_MAC_fetch(NULL, "CMAC", NULL);
	for (i = 0; i < 3; i++) {
		o->ecb[i] = EVP_CIPHER_fetch(NULL, ecb_names[i], NULL);
		o->cbc[i] = EVP_CIPHER_fetch(NULL, cbc_names[i], NULL);
		if (o->ecb[i] == NULL || o->cbc[i] == NULL)
			goto fail;
	}
	if (o->cmac == NULL)
		goto fail;
	return o;
fail:
	gp_ossl_free(o);
	return NULL;
}

static void
okey_free(struct okey *k)
{
	if (k == NULL)
		return;
	EVP_MAC_CTX_free(k->mac);
	EVP_CIPHER_CTX_free(k->ecb);
	EVP_CIPHER_CTX_free(k->cbc_e);
	EVP_CIPHER_CTX_free(k->cbc_d);
	wipe(k, sizeof(*k));
	free(k);
}

void
gp_ossl_free(struct gp_ossl *o)
{
	size_t i;

	if (o == NULL)
		return;
	for (i = 0; i < o->n; i++)
		okey_free(o->keys[i]);
	free(o->keys);
	EVP_MAC_free(o->cmac);
	for (i = 0; i < 3; i++) {
		EVP_CIPHER_free(o->ecb[i]);
		EVP_CIPHER_free(o->cbc[i]);
	}
	free(o);
}

int
gp_ossl_key_add(struct gp_ossl *o, const uint8_t *key, size_t len,
    gp_keyref *ref)
{
	struct okey **nv, *k;
	size_t ncap;

	if (size_index(len) < 0)
		return ERR_INVAL;
	if (o->n == o->cap) {
		if (o->cap >= UINT32_MAX / 4)
			return ERR_LIMIT;
		ncap = o->cap ? 2 * o->cap : 16;
		nv = realloc(o->keys, ncap * sizeof(*nv));
		if (nv == NULL)
			return ERR_NOMEM;
		o->keys = nv;
		o->cap = ncap;
	}
	if ((k = calloc(1, sizeof(*k))) == NULL)
		return ERR_NOMEM;
	memcpy(k->k, key, len);
	k->len = len;
	o->keys[o->n++] = k;
	o->live++;
	*ref = (gp_keyref)o->n;
	return 0;
}

static struct okey *
key_get(struct gp_ossl *o, gp_keyref ref)
{
	if (ref == 0 || ref > o->n)
		return NULL;
	return o->keys[ref - 1];
}

int
gp_ossl_key_export(struct gp_ossl *o, gp_keyref ref, uint8_t *out, size_t cap,
    size_t *len)
{
	struct okey *k = key_get(o, ref);

	if (k == NULL)
		return ERR_NOKEY;
	if (cap < k->len)
		return ERR_TOOBIG;
	memcpy(out, k->k, k->len);
	*len = k->len;
	return 0;
}

size_t
gp_ossl_key_count(const struct gp_ossl *o)
{
	return o->live;
}

/* ---- primitives ------------------------------------------------------ */

static int
key_cmac(struct gp_ossl *o, struct okey *k, const uint8_t *d1, size_t n1,
    const uint8_t *d2, size_t n2, const uint8_t *d3, size_t n3,
    uint8_t mac[16])
{
	OSSL_PARAM params[2];
	size_t outl = 0;

	if (k->mac == NULL) {
		if ((k->mac = EVP_MAC_CTX_new(o->cmac)) == NULL)
			return ERR_CRYPTO;
		params[0] = OSSL_PARAM_construct_utf8_string(
		    OSSL_MAC_PARAM_CIPHER,
		    (char *)cbc_names[size_index(k->len)], 0);
		params[1] = OSSL_PARAM_construct_end();
		if (EVP_MAC_init(k->mac, k->k, k->len, params) != 1)
			return ERR_CRYPTO;
	} else if (EVP_MAC_init(k->mac, NULL, 0, NULL) != 1) {
		return ERR_CRYPTO;
	}
	if ((n1 && EVP_MAC_update(k->mac, d1, n1) != 1) ||
	    (n2 && EVP_MAC_update(k->mac, d2, n2) != 1) ||
	    (n3 && EVP_MAC_update(k->mac, d3, n3) != 1) ||
	    EVP_MAC_final(k->mac, mac, &outl, 16) != 1 || outl != 16)
		return ERR_CRYPTO;
	return 0;
}

static int
key_cipher(struct gp_ossl *o, struct okey *k, int mode, int enc,
    const uint8_t *iv, const uint8_t *in, size_t n, uint8_t *out)
{
	EVP_CIPHER_CTX **cp;
	EVP_CIPHER *c;
	int idx = size_index(k->len), outl = 0, fl = 0;

	if (n % 16 != 0 || n > INT32_MAX)
		return ERR_INVAL;
	if (mode == GP_ECB) {
		cp = &k->ecb;
		c = o->ecb[idx];
		if (!enc)
			return ERR_NOTSUP;	/* nothing in GP needs ECB decrypt */
	} else if (mode == GP_CBC) {
		cp = enc ? &k->cbc_e : &k->cbc_d;
		c = o->cbc[idx];
		if (iv == NULL)
			return ERR_INVAL;
	} else {
		return ERR_INVAL;
	}
	if (*cp == NULL) {
		if ((*cp = EVP_CIPHER_CTX_new()) == NULL)
			return ERR_NOMEM;
		if (EVP_CipherInit_ex2(*cp, c, k->k, mode == GP_CBC ? iv : NULL,
		    enc, NULL) != 1)
			return ERR_CRYPTO;
	} else if (mode == GP_CBC &&
	    EVP_CipherInit_ex2(*cp, NULL, NULL, iv, enc, NULL) != 1) {
		return ERR_CRYPTO;
	}
	EVP_CIPHER_CTX_set_padding(*cp, 0);
	if (n > 0 && EVP_CipherUpdate(*cp, out, &outl, in, (int)n) != 1)
		return ERR_CRYPTO;
	if (EVP_CipherFinal_ex(*cp, out + outl, &fl) != 1 ||
	    (size_t)(outl + fl) != n)
		return ERR_CRYPTO;
	return 0;
}

/* SP 800-108 counter mode, CMAC, 8-bit counter between before and after. */
static int
kbkdf(struct gp_ossl *o, struct okey *k, const uint8_t *before, size_t blen,
    const uint8_t *after, size_t alen, uint8_t *out, size_t outlen)
{
	uint8_t block[16], i;
	size_t done = 0, take;
	int rc;

	if (outlen == 0 || outlen > 255 * 16)
		return ERR_INVAL;
	for (i = 1; done < outlen; i++) {
		if ((rc = key_cmac(o, k, before, blen, &i, 1, after, alen,
		    block)) != 0)
			return rc;
		take = outlen - done < 16 ? outlen - done : 16;
		memcpy(out + done, block, take);
		done += take;
	}
	wipe(block, sizeof(block));
	return 0;
}

int
gp_ossl_kbkdf(const uint8_t *key, size_t klen, const uint8_t *before,
    size_t blen, const uint8_t *after, size_t alen, uint8_t *out,
    size_t outlen)
{
	struct gp_ossl *o = gp_ossl_new();
	gp_keyref ref;
	int rc;

	if (o == NULL)
		return ERR_NOMEM;
	if ((rc = gp_ossl_key_add(o, key, klen, &ref)) == 0)
		rc = kbkdf(o, key_get(o, ref), before, blen, after, alen, out,
		    outlen);
	gp_ossl_free(o);
	return rc;
}

/* gpref §1.3: 00x11 | const | 00 | L | i | context. */
static int
gp_kdf(struct gp_ossl *o, struct okey *k, uint8_t konst, const uint8_t *ctx,
    size_t clen, uint16_t lbits, uint8_t *out)
{
	uint8_t before[16];

	memset(before, 0, 11);
	before[11] = konst;
	before[12] = 0x00;
	before[13] = (uint8_t)(lbits >> 8);
	before[14] = (uint8_t)lbits;
	return kbkdf(o, k, before, 15, ctx, clen, out, lbits / 8u);
}

/* ---- the backend ----------------------------------------------------- */

static int
be_derive(void *ctx, gp_keyref base, uint8_t konst, const uint8_t *context,
    size_t clen, uint16_t lbits, gp_keyref *out)
{
	struct gp_ossl *o = ctx;
	struct okey *k = key_get(o, base);
	uint8_t key[32];
	int rc;

	if (k == NULL)
		return ERR_NOKEY;
	if (konst != 0x04 && konst != 0x06 && konst != 0x07)
		return ERR_DENIED;
	if (lbits != 128 && lbits != 192 && lbits != 256)
		return ERR_INVAL;
	if ((rc = gp_kdf(o, k, konst, context, clen, lbits, key)) == 0)
		rc = gp_ossl_key_add(o, key, lbits / 8u, out);
	wipe(key, sizeof(key));
	return rc;
}

static int
be_kdf(void *ctx, gp_keyref ref, uint8_t konst, const uint8_t *context,
    size_t clen, uint16_t lbits, uint8_t *out)
{
	struct gp_ossl *o = ctx;
	struct okey *k = key_get(o, ref);

	if (k == NULL)
		return ERR_NOKEY;
	/* Only cryptograms and challenges come out as bytes. */
	if (konst > 0x02)
		return ERR_DENIED;
	if (lbits != 64 && lbits != 128)
		return ERR_INVAL;
	return gp_kdf(o, k, konst, context, clen, lbits, out);
}

static int
be_cmac(void *ctx, gp_keyref ref, const uint8_t *data, size_t n,
    uint8_t mac[16])
{
	struct gp_ossl *o = ctx;
	struct okey *k = key_get(o, ref);

	if (k == NULL)
		return ERR_NOKEY;
	return key_cmac(o, k, data, n, NULL, 0, NULL, 0, mac);
}

static int
be_encrypt(void *ctx, gp_keyref ref, int mode, const uint8_t iv[16],
    const uint8_t *in, size_t n, uint8_t *out)
{
	struct gp_ossl *o = ctx;
	struct okey *k = key_get(o, ref);

	if (k == NULL)
		return ERR_NOKEY;
	return key_cipher(o, k, mode, 1, iv, in, n, out);
}

static int
be_decrypt(void *ctx, gp_keyref ref, int mode, const uint8_t iv[16],
    const uint8_t *in, size_t n, uint8_t *out)
{
	struct gp_ossl *o = ctx;
	struct okey *k = key_get(o, ref);

	if (k == NULL)
		return ERR_NOKEY;
	return key_cipher(o, k, mode, 0, iv, in, n, out);
}

static int
be_wrap(void *ctx, gp_keyref dekref, gp_keyref keyref, uint8_t *out,
    size_t *outlen)
{
	static const uint8_t zero_iv[16];
	struct gp_ossl *o = ctx;
	struct okey *dek = key_get(o, dekref), *k = key_get(o, keyref);
	uint8_t pt[32];
	size_t n;
	int rc;

	if (dek == NULL || k == NULL)
		return ERR_NOKEY;
	/* gpref §4: AES-192 keys padded with zeros to 32 bytes. */
	n = k->len == 16 ? 16 : 32;
	if (*outlen < n)
		return ERR_TOOBIG;
	memset(pt, 0, sizeof(pt));
	memcpy(pt, k->k, k->len);
	rc = key_cipher(o, dek, GP_CBC, 1, zero_iv, pt, n, out);
	wipe(pt, sizeof(pt));
	if (rc == 0)
		*outlen = n;
	return rc;
}

static int
be_kcv(void *ctx, gp_keyref ref, uint8_t kcv[3])
{
	static const uint8_t ones[16] = { 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
	    1, 1, 1 };
	struct gp_ossl *o = ctx;
	struct okey *k = key_get(o, ref);
	uint8_t out[16];
	int rc;

	if (k == NULL)
		return ERR_NOKEY;
	/* gpref §3: first 3 bytes of AES-ECB(key, 01 x 16). */
	if ((rc = key_cipher(o, k, GP_ECB, 1, NULL, ones, 16, out)) == 0)
		memcpy(kcv, out, 3);
	return rc;
}

static int
be_key_len(void *ctx, gp_keyref ref, size_t *len)
{
	struct okey *k = key_get(ctx, ref);

	if (k == NULL)
		return ERR_NOKEY;
	*len = k->len;
	return 0;
}

static void
be_release(void *ctx, gp_keyref ref)
{
	struct gp_ossl *o = ctx;

	if (ref == 0 || ref > o->n || o->keys[ref - 1] == NULL)
		return;
	okey_free(o->keys[ref - 1]);
	o->keys[ref - 1] = NULL;
	o->live--;
}

void
gp_ossl_backend(struct gp_ossl *o, struct gp_backend *be)
{
	memset(be, 0, sizeof(*be));
	be->ctx = o;
	be->derive = be_derive;
	be->kdf = be_kdf;
	be->cmac = be_cmac;
	be->encrypt = be_encrypt;
	be->decrypt = be_decrypt;
	be->wrap = be_wrap;
	be->kcv = be_kcv;
	be->key_len = be_key_len;
	be->release = be_release;
}
