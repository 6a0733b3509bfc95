/*
 * crypto.c - the simulator's OpenSSL 3 primitives: KCVs (GP and CMAC
 * methods), §9.4 key wrapping (AES-KW RFC 3394, AES-KWP RFC 5649,
 * RSA-OAEP to the SP-TSM's transport key), DM token signatures
 * (RSASSA-PSS SHA-256, salt 32; gpref §6), HMAC-SHA256 and the first-start
 * self-signed TLS certificate. Runs in seisim; keys are demo keys in clear.
 */
#include <string.h>
#include <arpa/inet.h>

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>
#include <openssl/x509v3.h>

#include "tests/sim/seisim/seisim.h"

static void
ossl_log(const char *op)
{
	unsigned long e;
	char msg[256];

	while ((e = ERR_get_error()) != 0) {
		ERR_error_string_n(e, msg, sizeof(msg));
		log_msg(LOG_ERR, "event=openssl_error op=%s detail=\"%s\"", op, msg);
	}
}

static const EVP_CIPHER *
aes_ecb(size_t n)
{
	return n == 16 ? EVP_aes_128_ecb() : n == 24 ? EVP_aes_192_ecb() :
	    n == 32 ? EVP_aes_256_ecb() : NULL;
}

static int
ecb_block(const uint8_t *key, size_t kl, const uint8_t in[16], uint8_t out[16])
{
	EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
	int l1 = 0, l2 = 0, rc = ERR_CRYPTO;

	if (c == NULL || aes_ecb(kl) == NULL)
		goto out;
	if (EVP_EncryptInit_ex(c, aes_ecb(kl), NULL, key, NULL) != 1 ||
	    EVP_CIPHER_CTX_set_padding(c, 0) != 1 ||
	    EVP_EncryptUpdate(c, out, &l1, in, 16) != 1 ||
	    EVP_EncryptFinal_ex(c, out + l1, &l2) != 1 || l1 + l2 != 16)
		goto out;
	rc = 0;
out:
	if (rc != 0)
		ossl_log("aes_ecb");
	EVP_CIPHER_CTX_free(c);
	return rc;
}

static int
cmac(const uint8_t *key, size_t kl, const uint8_t *d, size_t n,
    uint8_t out[16])
{
	EVP_MAC *mac = EVP_MAC_fetch(NULL, "CMAC", NULL);
	EVP_MAC_CTX *c = mac ? EVP_MAC_CTX_new(mac) : NULL;
	char cipher[16];
	OSSL_PARAM p[2];
	size_t ol = 0;
	int rc = ERR_CRYPTO;

	snprintf(cipher, sizeof(cipher), "AES-%zu-CBC", kl * 8);
	p[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_CIPHER, cipher, 0);
	p[1] = OSSL_PARAM_construct_end();
	if (c != NULL && EVP_MAC_init(c, key, kl, p) == 1 &&
	    EVP_MAC_update(c, d, n) == 1 && EVP_MAC_final(c, out, &ol, 16) == 1 &&
	    ol == 16)
		rc = 0;
	else
		ossl_log("cmac");
	EVP_MAC_CTX_free(c);
	EVP_MAC_free(mac);
	return rc;
}

int
seisim_kcv(const char *method, const uint8_t *key, size_t n, uint8_t kcv[5],
    size_t *kcvlen)
{
	uint8_t in[16], out[16];
	int rc;

	if (strcmp(method, "CMAC") == 0) {
		memset(in, 0x00, 16);
		rc = cmac(key, n, in, 16, out);
		*kcvlen = 5;
	} else {
		memset(in, 0x01, 16);	/* gpref §3 */
		rc = ecb_block(key, n, in, out);
		*kcvlen = 3;
	}
	if (rc == 0)
		memcpy(kcv, out, *kcvlen);
	wipe(out, sizeof(out));
	return rc;
}

static int
aes_wrap(const uint8_t *kek, size_t kl, int pad, const uint8_t *key,
    size_t n, uint8_t *out, size_t cap, size_t *outlen)
{
	const EVP_CIPHER *ci;
	EVP_CIPHER_CTX *c;
	int l1 = 0, l2 = 0, rc = ERR_CRYPTO;

	if (pad)
		ci = kl == 16 ? EVP_aes_128_wrap_pad() : kl == 24 ?
		    EVP_aes_192_wrap_pad() : EVP_aes_256_wrap_pad();
	else
		ci = kl == 16 ? EVP_aes_128_wrap() : kl == 24 ?
		    EVP_aes_192_wrap() : EVP_aes_256_wrap();
	if (cap < n + 16 || (c = EVP_CIPHER_CTX_new()) == NULL)
		return ERR_INVAL;
	EVP_CIPHER_CTX_set_flags(c, EVP_CIPHER_CTX_FLAG_WRAP_ALLOW);
	if (EVP_EncryptInit_ex(c, ci, NULL, kek, NULL) == 1 &&
	    EVP_EncryptUpdate(c, out, &l1, key, (int)n) == 1 &&
	    EVP_EncryptFinal_ex(c, out + l1, &l2) == 1) {
		*outlen = (size_t)(l1 + l2);
		rc = 0;
	} else
		ossl_log("aes_wrap");
	EVP_CIPHER_CTX_free(c);
	return rc;
}

static int
rsa_oaep(EVP_PKEY *pub, const EVP_MD *md, const uint8_t *key, size_t n,
    uint8_t *out, size_t cap, size_t *outlen)
{
	EVP_PKEY_CTX *c = EVP_PKEY_CTX_new(pub, NULL);
	size_t ol = cap;
	int rc = ERR_CRYPTO;

	if (c != NULL && EVP_PKEY_encrypt_init(c) == 1 &&
	    EVP_PKEY_CTX_set_rsa_padding(c, RSA_PKCS1_OAEP_PADDING) == 1 &&
	    EVP_PKEY_CTX_set_rsa_oaep_md(c, md) == 1 &&
	    EVP_PKEY_CTX_set_rsa_mgf1_md(c, md) == 1 &&
	    EVP_PKEY_encrypt(c, out, &ol, key, n) == 1) {
		*outlen = ol;
		rc = 0;
	} else
		ossl_log("rsa_oaep");
	EVP_PKEY_CTX_free(c);
	return rc;
}

int
seisim_wrap_key(const struct seisim_material *m, const uint8_t *key, size_t n,
    uint8_t *out, size_t cap, size_t *outlen)
{
	if (strcmp(m->wrap, "AES-KW") == 0)
		return aes_wrap(m->kek, m->kek_len, 0, key, n, out, cap, outlen);
	if (strcmp(m->wrap, "AES-KWP") == 0)
		return aes_wrap(m->kek, m->kek_len, 1, key, n, out, cap, outlen);
	if (m->sp_pub == NULL)
		return ERR_INVAL;
	return rsa_oaep(m->sp_pub, strcmp(m->wrap, "RSA-OAEP-SHA1") == 0 ?
	    EVP_sha1() : EVP_sha256(), key, n, out, cap, outlen);
}

int
seisim_token_sign(EVP_PKEY *k, const uint8_t *d, size_t n, uint8_t *sig,
    size_t cap, size_t *siglen)
{
	EVP_MD_CTX *c = EVP_MD_CTX_new();
	EVP_PKEY_CTX *pc = NULL;
	size_t sl = cap;
	int rc = ERR_CRYPTO;

	/* gpref §6: RSA above 1024 bits signs with PSS, SHA-256, MGF1-SHA-256,
	 * a 32-byte salt. */
	if (c != NULL && EVP_DigestSignInit(c, &pc, EVP_sha256(), NULL, k) == 1 &&
	    EVP_PKEY_CTX_set_rsa_padding(pc, RSA_PKCS1_PSS_PADDING) == 1 &&
	    EVP_PKEY_CTX_set_rsa_mgf1_md(pc, EVP_sha256()) == 1 &&
	    EVP_PKEY_CTX_set_rsa_pss_saltlen(pc, 32) == 1 &&
	    EVP_DigestSign(c, sig, &sl, d, n) == 1) {
		*siglen = sl;
		rc = 0;
	} else
		ossl_log("token_sign");
	EVP_MD_CTX_free(c);
	return rc;
}

/* DEMO ONLY (tests/sim/demo/README.md), written here again rather than
 * taken from the vSE: D = SHA-256(seId as upper-case hex)[0..15],
 * K = AES-128-ECB(label, D) with the 16 ASCII bytes of the label as key. */
int
seisim_demo_isd_keys(const char *se_id, uint8_t k[3][16])
{
	static const char *const labels[3] = { "DEMOONLY-ISD-ENC",
		"DEMOONLY-ISD-MAC", "DEMOONLY-ISD-DEK" };
	char up[260];
	uint8_t d[32];
	unsigned int dl = 0;
	size_t i, n = strlen(se_id);
	int rc = 0;

	if (n == 0 || n >= sizeof(up))
		return ERR_INVAL;
	for (i = 0; i <= n; i++)
		up[i] = (char)(se_id[i] >= 'a' && se_id[i] <= 'z' ?
		    se_id[i] - 'a' + 'A' : se_id[i]);
	if (EVP_Digest(up, n, d, &dl, EVP_sha256(), NULL) != 1)
		return ERR_CRYPTO;
	for (i = 0; i < 3 && rc == 0; i++)
		rc = ecb_block((const uint8_t *)labels[i], 16, d, k[i]);
	wipe(d, sizeof(d));
	return rc;
}

int
seisim_hmac(const uint8_t *key, size_t kl, const void *d, size_t n,
    uint8_t out[32])
{
	EVP_MAC *mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
	EVP_MAC_CTX *c = mac ? EVP_MAC_CTX_new(mac) : NULL;
	OSSL_PARAM p[2];
	size_t ol = 0;
	int rc = ERR_CRYPTO;

	p[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, "SHA256", 0);
	p[1] = OSSL_PARAM_construct_end();
	if (c != NULL && EVP_MAC_init(c, key, kl, p) == 1 &&
	    EVP_MAC_update(c, d, n) == 1 && EVP_MAC_final(c, out, &ol, 32) == 1 &&
	    ol == 32)
		rc = 0;
	else
		ossl_log("hmac");
	EVP_MAC_CTX_free(c);
	EVP_MAC_free(mac);
	return rc;
}

/* ---- first-start TLS certificate ---- */

static int
add_ext(X509 *x, int nid, const char *value)
{
	X509V3_CTX ctx;
	X509_EXTENSION *e;
	int ok;

	X509V3_set_ctx_nodb(&ctx);
	X509V3_set_ctx(&ctx, x, x, NULL, NULL, 0);
	if ((e = X509V3_EXT_conf_nid(NULL, &ctx, nid, value)) == NULL)
		return ERR_CRYPTO;
	ok = X509_add_ext(x, e, -1);
	X509_EXTENSION_free(e);
	return ok == 1 ? 0 : ERR_CRYPTO;
}

static int
inet_pton_any(const char *h, unsigned char a[16])
{
	return inet_pton(AF_INET, h, a) == 1 || inet_pton(AF_INET6, h, a) == 1;
}

static int
bio_to_buf(BIO *b, struct buf *out)
{
	char *p;
	long n = BIO_get_mem_data(b, &p);

	return n > 0 ? buf_put(out, p, (size_t)n) : ERR_CRYPTO;
}

int
seisim_tls_make(const char *host, struct buf *cert, struct buf *key)
{
	EVP_PKEY *k = EVP_EC_gen("P-256");
	X509 *x = X509_new();
	X509_NAME *nm;
	BIO *bc = BIO_new(BIO_s_mem()), *bk = BIO_new(BIO_s_mem());
	uint8_t serial[16];
	BIGNUM *bn = NULL;
	char san[400];
	unsigned char a[16];
	int rc = ERR_CRYPTO, ip;

	if (k == NULL || x == NULL || bc == NULL || bk == NULL ||
	    RAND_bytes(serial, sizeof(serial)) != 1)
		goto out;
	serial[0] &= 0x7F;
	ip = inet_pton_any(host, a);
	snprintf(san, sizeof(san), "%s%s%sIP:127.0.0.1,DNS:localhost",
	    ip ? "IP:" : "DNS:", host, ",");
	if (strcmp(host, "127.0.0.1") == 0 || strcmp(host, "localhost") == 0)
		snprintf(san, sizeof(san), "IP:127.0.0.1,DNS:localhost");
	if ((bn = BN_bin2bn(serial, sizeof(serial), NULL)) == NULL ||
	    BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) == NULL ||
	    X509_set_version(x, 2) != 1 ||
	    X509_gmtime_adj(X509_getm_notBefore(x), -3600) == NULL ||
	    X509_gmtime_adj(X509_getm_notAfter(x), 365L * 86400) == NULL ||
	    X509_set_pubkey(x, k) != 1)
		goto out;
	nm = X509_get_subject_name(x);
	if (X509_NAME_add_entry_by_txt(nm, "O", MBSTRING_ASC,
	    (const unsigned char *)"SEI-TSM simulator (DEMO)", -1, -1, 0) != 1 ||
	    X509_NAME_add_entry_by_txt(nm, "CN", MBSTRING_ASC,
	    (const unsigned char *)host, -1, -1, 0) != 1 ||
	    X509_set_issuer_name(x, nm) != 1 ||
	    add_ext(x, NID_basic_constraints, "critical,CA:TRUE,pathlen:0") ||
	    add_ext(x, NID_key_usage, "critical,digitalSignature,keyCertSign") ||
	    add_ext(x, NID_ext_key_usage, "serverAuth") ||
	    add_ext(x, NID_subject_key_identifier, "hash") ||
	    add_ext(x, NID_subject_alt_name, san) ||
	    X509_sign(x, k, EVP_sha256()) == 0)
		goto out;
	if (PEM_write_bio_X509(bc, x) != 1 ||
	    PEM_write_bio_PrivateKey(bk, k, NULL, NULL, 0, NULL, NULL) != 1 ||
	    bio_to_buf(bc, cert) != 0 || bio_to_buf(bk, key) != 0)
		goto out;
	rc = 0;
out:
	if (rc != 0)
		ossl_log("tls_make");
	BN_free(bn);
	BIO_free(bc);
	BIO_free(bk);
	X509_free(x);
	EVP_PKEY_free(k);
	return rc;
}
