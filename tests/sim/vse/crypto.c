/*
 * crypto.c - the card's cryptographic primitives on OpenSSL 3: AES-CMAC,
 * AES-ECB/CBC, GP key check values, hashes, and DM token signature checks
 * (RSA PKCS#1 v1.5 / PSS, ECDSA raw r||s). Runs in the virtual SE; keys
 * are the card's own, messages and signatures come from APDUs.
 */
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>

#include "tests/sim/vse/vse_int.h"

static const char *
aes_cbc_name(size_t keylen)
{
	switch (keylen) {
	case 16: return "AES-128-CBC";
	case 24: return "AES-192-CBC";
	case 32: return "AES-256-CBC";
	}
	return NULL;
}

static const EVP_CIPHER *
aes_cipher(size_t keylen, int cbc)
{
	switch (keylen) {
	case 16: return cbc ? EVP_aes_128_cbc() : EVP_aes_128_ecb();
	case 24: return cbc ? EVP_aes_192_cbc() : EVP_aes_192_ecb();
	case 32: return cbc ? EVP_aes_256_cbc() : EVP_aes_256_ecb();
	}
	return NULL;
}

int
vse_aes_cmac(const uint8_t *key, size_t keylen, const struct vse_iov *v,
    size_t nv, uint8_t mac[16])
{
	EVP_MAC *m = NULL;
	EVP_MAC_CTX *ctx = NULL;
	OSSL_PARAM params[2];
	const char *cn = aes_cbc_name(keylen);
	size_t outl = 0, i;
	int rc = ERR_CRYPTO;

	if (cn == NULL)
		return ERR_INVAL;
	params[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_CIPHER,
	    (char *)cn, 0);
	params[1] = OSSL_PARAM_construct_end();
	if ((m = EVP_MAC_fetch(NULL, "CMAC", NULL)) == NULL ||
	    (ctx = EVP_MAC_CTX_new(m)) == NULL ||
	    EVP_MAC_init(ctx, key, keylen, params) != 1)
		goto cleanup;
	for (i = 0; i < nv; i++)
		if (v[i].n > 0 && EVP_MAC_update(ctx, v[i].p, v[i].n) != 1)
			goto cleanup;
	if (EVP_MAC_final(ctx, mac, &outl, 16) != 1 || outl != 16)
		goto cleanup;
	rc = 0;
cleanup:
	EVP_MAC_CTX_free(ctx);
	EVP_MAC_free(m);
	if (rc != 0)
		ERR_clear_error();
	return rc;
}

static int
aes_run(const uint8_t *key, size_t keylen, const uint8_t *iv, const uint8_t *in,
    size_t n, uint8_t *out, int encrypt, int cbc)
{
	const EVP_CIPHER *ciph = aes_cipher(keylen, cbc);
	EVP_CIPHER_CTX *ctx = NULL;
	int l1 = 0, l2 = 0, rc = ERR_CRYPTO;

	if (ciph == NULL || n % 16 != 0 || n > INT32_MAX)
		return ERR_INVAL;
	if (n == 0)
		return 0;
	if ((ctx = EVP_CIPHER_CTX_new()) == NULL ||
	    EVP_CipherInit_ex(ctx, ciph, NULL, key, iv, encrypt) != 1 ||
	    EVP_CIPHER_CTX_set_padding(ctx, 0) != 1 ||
	    EVP_CipherUpdate(ctx, out, &l1, in, (int)n) != 1 ||
	    EVP_CipherFinal_ex(ctx, out + l1, &l2) != 1 ||
	    (size_t)(l1 + l2) != n)
		goto cleanup;
	rc = 0;
cleanup:
	EVP_CIPHER_CTX_free(ctx);
	if (rc != 0)
		ERR_clear_error();
	return rc;
}

int
vse_aes_ecb(const uint8_t *key, size_t keylen, const uint8_t in[16],
    uint8_t out[16])
{
	return aes_run(key, keylen, NULL, in, 16, out, 1, 0);
}

int
vse_aes_cbc(const uint8_t *key, size_t keylen, const uint8_t iv[16],
    const uint8_t *in, size_t n, uint8_t *out, int encrypt)
{
	return aes_run(key, keylen, iv, in, n, out, encrypt, 1);
}

/* gp-reference §3: first 3 bytes of AES-ECB(K, 01 x 16) (Amd D §7.2.2). */
int
vse_kcv_aes(const uint8_t *key, size_t keylen, uint8_t kcv[3])
{
	uint8_t ones[16], out[16];
	int rc;

	memset(ones, 0x01, sizeof(ones));
	if ((rc = vse_aes_ecb(key, keylen, ones, out)) != 0)
		return rc;
	memcpy(kcv, out, 3);
	wipe(out, sizeof(out));
	return 0;
}

static const EVP_MD *
md_by_len(size_t outlen)
{
	switch (outlen) {
	case 20: return EVP_sha1();
	case 32: return EVP_sha256();
	case 48: return EVP_sha384();
	case 64: return EVP_sha512();
	}
	return NULL;
}

int
vse_hash(size_t outlen, const uint8_t *p, size_t n, uint8_t *out)
{
	const EVP_MD *md = md_by_len(outlen);
	unsigned int l = 0;

	if (md == NULL)
		return ERR_INVAL;
	if (EVP_Digest(p, n, out, &l, md, NULL) != 1 || l != outlen) {
		ERR_clear_error();
		return ERR_CRYPTO;
	}
	return 0;
}

int
vse_rand(uint8_t *p, size_t n)
{
	if (n > INT32_MAX || RAND_bytes(p, (int)n) != 1) {
		ERR_clear_error();
		return ERR_CRYPTO;
	}
	return 0;
}

static const char *
ec_group_name(uint8_t curve, size_t *field)
{
	/* GP curve references (gp-reference §7): 00 P-256, 01 P-384. */
	switch (curve) {
	case 0x00: *field = 32; return "prime256v1";
	case 0x01: *field = 48; return "secp384r1";
	}
	return NULL;
}

static int
pkey_from_key(const struct vse_key *k, EVP_PKEY **out)
{
	OSSL_PARAM_BLD *bld = NULL;
	OSSL_PARAM *params = NULL;
	EVP_PKEY_CTX *pctx = NULL;
	BIGNUM *n = NULL, *e = NULL;
	const char *gname;
	size_t field;
	int rc = ERR_CRYPTO;

	*out = NULL;
	if ((bld = OSSL_PARAM_BLD_new()) == NULL)
		goto cleanup;
	if (k->type == VSE_KEY_RSA) {
		if (k->len == 0 || k->exp_len == 0) {
			rc = ERR_INVAL;
			goto cleanup;
		}
		if ((n = BN_bin2bn(k->val, k->len, NULL)) == NULL ||
		    (e = BN_bin2bn(k->exp, k->exp_len, NULL)) == NULL ||
		    OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, n) != 1 ||
		    OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, e) != 1 ||
		    (pctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL)) == NULL)
			goto cleanup;
	} else if (k->type == VSE_KEY_EC) {
		if ((gname = ec_group_name(k->curve, &field)) == NULL ||
		    k->len != 1 + 2 * field || k->val[0] != 0x04) {
			rc = ERR_NOTSUP;
			goto cleanup;
		}
		if (OSSL_PARAM_BLD_push_utf8_string(bld,
		    OSSL_PKEY_PARAM_GROUP_NAME, gname, 0) != 1 ||
		    OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY,
		    k->val, k->len) != 1 ||
		    (pctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL)) == NULL)
			goto cleanup;
	} else {
		rc = ERR_NOTSUP;
		goto cleanup;
	}
	if ((params = OSSL_PARAM_BLD_to_param(bld)) == NULL ||
	    EVP_PKEY_fromdata_init(pctx) != 1 ||
	    EVP_PKEY_fromdata(pctx, out, EVP_PKEY_PUBLIC_KEY, params) != 1)
		goto cleanup;
	rc = 0;
cleanup:
	OSSL_PARAM_free(params);
	OSSL_PARAM_BLD_free(bld);
	EVP_PKEY_CTX_free(pctx);
	BN_free(n);
	BN_free(e);
	if (rc != 0)
		ERR_clear_error();
	return rc;
}

/* ECDSA signatures travel as raw r || s (gp-reference §6); OpenSSL wants DER. */
static int
ecdsa_raw_to_der(const uint8_t *sig, size_t n, size_t field, uint8_t **der,
    size_t *derlen)
{
	ECDSA_SIG *s = NULL;
	BIGNUM *r = NULL, *ss = NULL;
	unsigned char *p = NULL;
	int l, rc = ERR_CRYPTO;

	if (n != 2 * field)
		return ERR_AUTH;
	if ((s = ECDSA_SIG_new()) == NULL ||
	    (r = BN_bin2bn(sig, (int)field, NULL)) == NULL ||
	    (ss = BN_bin2bn(sig + field, (int)field, NULL)) == NULL)
		goto cleanup;
	if (ECDSA_SIG_set0(s, r, ss) != 1)
		goto cleanup;
	r = ss = NULL;
	if ((l = i2d_ECDSA_SIG(s, &p)) <= 0)
		goto cleanup;
	*der = p;
	*derlen = (size_t)l;
	rc = 0;
cleanup:
	BN_free(r);
	BN_free(ss);
	ECDSA_SIG_free(s);
	if (rc != 0)
		ERR_clear_error();
	return rc;
}

/*
 * gp-reference §6: RSA up to 1024 bits: PKCS#1 v1.5 with SHA-1; larger:
 * RSASSA-PSS, SHA-256, MGF1-SHA-256, 32-byte salt. ECDSA: SHA-256 on
 * P-256, SHA-384 on P-384.
 */
int
vse_sig_verify(const struct vse_key *k, const uint8_t *msg, size_t n,
    const uint8_t *sig, size_t siglen)
{
	EVP_PKEY *pkey = NULL;
	EVP_MD_CTX *md = NULL;
	EVP_PKEY_CTX *pctx = NULL;
	const EVP_MD *h;
	uint8_t *der = NULL;
	size_t derlen = 0, field = 0;
	const uint8_t *s = sig;
	int rc, v;

	if ((rc = pkey_from_key(k, &pkey)) != 0)
		return rc;
	rc = ERR_CRYPTO;
	if (k->type == VSE_KEY_RSA) {
		if (siglen != k->len) {
			rc = ERR_AUTH;
			goto cleanup;
		}
		h = EVP_PKEY_get_bits(pkey) <= 1024 ? EVP_sha1() : EVP_sha256();
	} else {
		if (ec_group_name(k->curve, &field) == NULL) {
			rc = ERR_NOTSUP;
			goto cleanup;
		}
		h = field == 32 ? EVP_sha256() : EVP_sha384();
		if ((rc = ecdsa_raw_to_der(sig, siglen, field, &der,
		    &derlen)) != 0)
			goto cleanup;
		rc = ERR_CRYPTO;
		s = der;
		siglen = derlen;
	}
	if ((md = EVP_MD_CTX_new()) == NULL ||
	    EVP_DigestVerifyInit(md, &pctx, h, NULL, pkey) != 1)
		goto cleanup;
	if (k->type == VSE_KEY_RSA) {
		if (EVP_PKEY_get_bits(pkey) <= 1024) {
			if (EVP_PKEY_CTX_set_rsa_padding(pctx,
			    RSA_PKCS1_PADDING) != 1)
				goto cleanup;
		} else if (EVP_PKEY_CTX_set_rsa_padding(pctx,
		    RSA_PKCS1_PSS_PADDING) != 1 ||
		    EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, 32) != 1 ||
		    EVP_PKEY_CTX_set_rsa_mgf1_md(pctx, EVP_sha256()) != 1)
			goto cleanup;
	}
	v = EVP_DigestVerify(md, s, siglen, msg, n);
	rc = v == 1 ? 0 : ERR_AUTH;
cleanup:
	OPENSSL_free(der);
	EVP_MD_CTX_free(md);
	EVP_PKEY_free(pkey);
	ERR_clear_error();
	return rc;
}

static int
bn_param(EVP_PKEY *pkey, const char *name, uint8_t *out, size_t cap,
    uint16_t *len)
{
	BIGNUM *bn = NULL;
	int l, rc = ERR_CRYPTO;

	if (EVP_PKEY_get_bn_param(pkey, name, &bn) != 1)
		goto cleanup;
	l = BN_num_bytes(bn);
	if (l <= 0 || (size_t)l > cap) {
		rc = ERR_NOTSUP;
		goto cleanup;
	}
	if (BN_bn2bin(bn, out) != l)
		goto cleanup;
	*len = (uint16_t)l;
	rc = 0;
cleanup:
	BN_free(bn);
	return rc;
}

int
vse_key_from_pem(const char *pem, struct vse_key *out)
{
	BIO *bio = NULL;
	EVP_PKEY *pkey = NULL;
	char group[64];
	size_t glen = 0, plen = 0;
	int rc = ERR_PARSE;

	memset(out, 0, sizeof(*out));
	if ((bio = BIO_new_mem_buf(pem, -1)) == NULL) {
		rc = ERR_NOMEM;
		goto cleanup;
	}
	if ((pkey = PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL)) == NULL)
		goto cleanup;
	if (EVP_PKEY_is_a(pkey, "RSA")) {
		out->type = VSE_KEY_RSA;
		if ((rc = bn_param(pkey, OSSL_PKEY_PARAM_RSA_N, out->val,
		    sizeof(out->val), &out->len)) != 0 ||
		    (rc = bn_param(pkey, OSSL_PKEY_PARAM_RSA_E, out->exp,
		    sizeof(out->exp), &out->exp_len)) != 0)
			goto cleanup;
	} else if (EVP_PKEY_is_a(pkey, "EC")) {
		out->type = VSE_KEY_EC;
		rc = ERR_NOTSUP;
		if (EVP_PKEY_get_utf8_string_param(pkey,
		    OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof(group),
		    &glen) != 1)
			goto cleanup;
		if (strcmp(group, "prime256v1") == 0)
			out->curve = 0x00;
		else if (strcmp(group, "secp384r1") == 0)
			out->curve = 0x01;
		else
			goto cleanup;
		if (EVP_PKEY_get_octet_string_param(pkey,
		    OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, out->val,
		    sizeof(out->val), &plen) != 1 || plen == 0 ||
		    out->val[0] != 0x04)
			goto cleanup;
		out->len = (uint16_t)plen;
	} else {
		rc = ERR_NOTSUP;
		goto cleanup;
	}
	rc = 0;
cleanup:
	EVP_PKEY_free(pkey);
	BIO_free(bio);
	ERR_clear_error();
	return rc;
}

/* 0 when a public key can be used by vse_sig_verify (PUT KEY accepts it). */
int
vse_key_check(const struct vse_key *k)
{
	EVP_PKEY *pkey = NULL;
	int rc;

	if ((rc = pkey_from_key(k, &pkey)) != 0)
		return rc;
	EVP_PKEY_free(pkey);
	return 0;
}
