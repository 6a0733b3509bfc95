/*
 * tls.c - tsmd's TLS material: the first-start self-signed EC P-256 server
 * certificate (OpenSSL 3), loading cert/key/client-CA for libmicrohttpd,
 * and verification of TLS client certificates, which MHD (GnuTLS) only
 * requests. Runs in tsmd; client chains are outside input.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <arpa/inet.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "tsm/http/http_int.h"

#define PEM_MAX (256u * 1024u)

static void
ossl_log(const char *what)
{
	unsigned long e;
	char msg[256];

	while ((e = ERR_get_error()) != 0) {
		ERR_error_string_n(e, msg, sizeof(msg));
		log_msg(LOG_ERR, "event=openssl_error op=%s detail=\"%s\"", what, msg);
	}
}

/* ---- bootstrap certificate ---- */

static int
add_ext(X509 *x, int nid, const char *value)
{
	X509V3_CTX ctx;
	X509_EXTENSION *ext;
	int ok;

	X509V3_set_ctx_nodb(&ctx);
	X509V3_set_ctx(&ctx, x, x, NULL, NULL, 0);
	ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
	if (ext == NULL)
		return ERR_CRYPTO;
	ok = X509_add_ext(x, ext, -1);
	X509_EXTENSION_free(ext);
	return ok == 1 ? 0 : ERR_CRYPTO;
}

static int
host_is_ip(const char *h)
{
	unsigned char a[16];

	return inet_pton(AF_INET, h, a) == 1 || inet_pton(AF_INET6, h, a) == 1;
}

static int
pem_of(int (*wr)(BIO *, void *), void *obj, struct buf *out)
{
	BIO *b = BIO_new(BIO_s_mem());
	char *p;
	long n;
	int rc = ERR_CRYPTO;

	if (b == NULL)
		return ERR_NOMEM;
	if (wr(b, obj) == 1 && (n = BIO_get_mem_data(b, &p)) > 0)
		rc = buf_put(out, p, (size_t)n);
	BIO_free(b);	/* BIO_s_mem clears its memory on free */
	return rc;
}

static int
wr_cert(BIO *b, void *x)
{
	return PEM_write_bio_X509(b, x);
}

static int
wr_key(BIO *b, void *k)
{
	return PEM_write_bio_PrivateKey(b, k, NULL, NULL, 0, NULL, NULL);
}

static int
make_cert(const char *host, EVP_PKEY **kout, X509 **xout)
{
	EVP_PKEY *k = NULL;
	X509 *x = NULL;
	X509_NAME *nm;
	uint8_t serial[16];
	BIGNUM *bn = NULL;
	char san[400];
	int rc = ERR_CRYPTO;

	if ((k = EVP_EC_gen("P-256")) == NULL || (x = X509_new()) == NULL)
		goto out;
	if (RAND_bytes(serial, sizeof(serial)) != 1)
		goto out;
	serial[0] &= 0x7f;	/* positive */
	serial[0] |= 0x01;	/* and 16 bytes long */
	if ((bn = BN_bin2bn(serial, sizeof(serial), NULL)) == NULL ||
	    BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) == NULL)
		goto out;
	nm = X509_get_subject_name(x);
	if (X509_set_version(x, 2) != 1 ||
	    X509_NAME_add_entry_by_txt(nm, "O", MBSTRING_UTF8,
	    (const unsigned char *)"SP-TSM (bootstrap, self-signed)", -1, -1,
	    0) != 1 ||
	    X509_NAME_add_entry_by_txt(nm, "CN", MBSTRING_UTF8,
	    (const unsigned char *)"tsmd", -1, -1, 0) != 1 ||
	    X509_set_issuer_name(x, nm) != 1 ||
	    X509_gmtime_adj(X509_getm_notBefore(x), -300) == NULL ||
	    X509_gmtime_adj(X509_getm_notAfter(x), 365L * 24 * 3600) == NULL ||
	    X509_set_pubkey(x, k) != 1)
		goto out;
	if (strcmp(host, "127.0.0.1") == 0 || strcmp(host, "localhost") == 0 ||
	    strcmp(host, "0.0.0.0") == 0 || strcmp(host, "::") == 0)
		snprintf(san, sizeof(san), "IP:127.0.0.1,DNS:localhost");
	else if (host_is_ip(host))
		snprintf(san, sizeof(san), "IP:%s,IP:127.0.0.1,DNS:localhost", host);
	else
		snprintf(san, sizeof(san), "DNS:%s,IP:127.0.0.1,DNS:localhost", host);
	if ((rc = add_ext(x, NID_subject_alt_name, san)) != 0 ||
	    (rc = add_ext(x, NID_basic_constraints, "critical,CA:FALSE")) != 0 ||
	    (rc = add_ext(x, NID_key_usage, "critical,digitalSignature")) != 0 ||
	    (rc = add_ext(x, NID_ext_key_usage, "serverAuth")) != 0 ||
	    (rc = add_ext(x, NID_subject_key_identifier, "hash")) != 0)
		goto out;
	rc = ERR_CRYPTO;
	if (X509_sign(x, k, EVP_sha256()) <= 0)
		goto out;
	*kout = k;
	*xout = x;
	k = NULL;
	x = NULL;
	rc = 0;
out:
	if (rc != 0)
		ossl_log("tls_bootstrap");
	BN_free(bn);
	EVP_PKEY_free(k);
	X509_free(x);
	return rc;
}

static int
dir_of(const char *path, int mode)
{
	char d[1100];
	char *slash;

	if (snprintf(d, sizeof(d), "%s", path) >= (int)sizeof(d))
		return ERR_TOOBIG;
	if ((slash = strrchr(d, '/')) == NULL || slash == d)
		return 0;
	*slash = '\0';
	return mkdir_p(d, mode);
}

int
http_tls_bootstrap(const char *cert_path, const char *key_path,
    const char *ca_path, const char *host, int *created)
{
	int have_cert = access(cert_path, F_OK) == 0;
	int have_key = access(key_path, F_OK) == 0;
	EVP_PKEY *k = NULL;
	X509 *x = NULL;
	struct buf kp, cp;
	int rc;

	*created = 0;
	if (have_cert && have_key)
		return 0;
	if (have_cert != have_key) {
		log_msg(LOG_ERR, "event=tls_files_incomplete cert=%s key=%s note=\"one "
		    "exists without the other; refusing to replace it\"", cert_path,
		    key_path);
		return ERR_INVAL;
	}
	buf_init(&kp);
	buf_init(&cp);
	if ((rc = make_cert(host, &k, &x)) != 0 ||
	    (rc = pem_of(wr_key, k, &kp)) != 0 || (rc = pem_of(wr_cert, x, &cp)) != 0)
		goto out;
	if ((rc = dir_of(key_path, 0700)) != 0 || (rc = dir_of(cert_path, 0700)) != 0 ||
	    (rc = dir_of(ca_path, 0755)) != 0 ||
	    (rc = file_write_atomic(key_path, kp.p, kp.len, 0600)) != 0 ||
	    (rc = file_write_atomic(cert_path, cp.p, cp.len, 0644)) != 0 ||
	    (rc = file_write_atomic(ca_path, cp.p, cp.len, 0644)) != 0) {
		log_msg(LOG_ERR, "event=tls_bootstrap_write_failed err=%s",
		    err_name(rc));
		goto out;
	}
	*created = 1;
	log_msg(LOG_WARN, "event=tls_bootstrap_certificate cert=%s ca=%s host=%s "
	    "note=\"self-signed, one year; clients trust %s until a real CA "
	    "issues the server certificate\"", cert_path, ca_path, host, ca_path);
out:
	buf_free(&kp);
	buf_free(&cp);
	EVP_PKEY_free(k);
	X509_free(x);
	return rc;
}

/* ---- loading ---- */

static int
read_pem(const char *path, char **out)
{
	struct buf b;
	int rc;

	*out = NULL;
	buf_init(&b);
	if ((rc = file_read_all(path, PEM_MAX, &b)) != 0 ||
	    (rc = buf_put_u8(&b, 0)) != 0) {
		buf_free(&b);
		return rc;
	}
	*out = (char *)b.p;	/* ownership moves; freed with wipe below */
	return 0;
}

static void
free_pem(char *p)
{
	if (p != NULL) {
		wipe(p, strlen(p));
		free(p);
	}
}

int
http_tls_load(struct http_tls *t, const char *cert, const char *key,
    const char *client_ca)
{
	struct stat st;
	int rc;

	memset(t, 0, sizeof(*t));
	if (stat(key, &st) != 0) {
		log_msg(LOG_ERR, "event=tls_key_missing path=%s", key);
		return ERR_IO;
	}
	if ((st.st_mode & 0077) != 0) {
		log_msg(LOG_ERR, "event=tls_key_mode path=%s mode=%o note=\"must not "
		    "be readable by group or others (chmod 600)\"", key,
		    (unsigned)(st.st_mode & 0777));
		return ERR_DENIED;
	}
	if ((rc = read_pem(cert, &t->cert_pem)) != 0 ||
	    (rc = read_pem(key, &t->key_pem)) != 0) {
		log_msg(LOG_ERR, "event=tls_read_failed cert=%s key=%s err=%s", cert,
		    key, err_name(rc));
		goto fail;
	}
	if (client_ca != NULL) {
		if ((rc = read_pem(client_ca, &t->trust_pem)) != 0) {
			log_msg(LOG_ERR, "event=tls_client_ca_unreadable path=%s",
			    client_ca);
			goto fail;
		}
		rc = ERR_CRYPTO;
		if ((t->store = X509_STORE_new()) == NULL ||
		    X509_STORE_load_file(t->store, client_ca) != 1) {
			ossl_log("client_ca_load");
			log_msg(LOG_ERR, "event=tls_client_ca_bad path=%s", client_ca);
			goto fail;
		}
	}
	return 0;
fail:
	http_tls_cleanup(t);
	return rc;
}

void
http_tls_cleanup(struct http_tls *t)
{
	free_pem(t->cert_pem);
	free_pem(t->key_pem);
	free_pem(t->trust_pem);
	X509_STORE_free(t->store);
	memset(t, 0, sizeof(*t));
}

/* ---- client certificate verification ---- */

/* The subject's commonName when there is exactly one, of printable ASCII
 * that fits; else "". */
static void
subject_cn(const X509_NAME *nm, char *out, size_t cap)
{
	const ASN1_STRING *v;
	const unsigned char *p;
	int i, n;

	out[0] = '\0';
	if ((i = X509_NAME_get_index_by_NID(nm, NID_commonName, -1)) < 0 ||
	    X509_NAME_get_index_by_NID(nm, NID_commonName, i) >= 0 ||
	    (v = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(nm, i))) == NULL)
		return;
	n = ASN1_STRING_length(v);
	p = ASN1_STRING_get0_data(v);
	if (n <= 0 || (size_t)n >= cap)
		return;
	for (i = 0; i < n; i++)
		if (p[i] < 0x21 || p[i] > 0x7e)
			return;
	memcpy(out, p, (size_t)n);
	out[n] = '\0';
}

static void
name_str(const X509_NAME *nm, char *out, size_t cap)
{
	BIO *b = BIO_new(BIO_s_mem());
	char *p;
	long n;

	out[0] = '\0';
	if (b == NULL)
		return;
	/* RFC 2253 escapes non-ASCII bytes (\XX): the result is ASCII, safe
	 * for logs and for JSON. */
	if (X509_NAME_print_ex(b, nm, 0, XN_FLAG_RFC2253) >= 0 &&
	    (n = BIO_get_mem_data(b, &p)) > 0) {
		size_t l = (size_t)n < cap - 1 ? (size_t)n : cap - 1, i;

		memcpy(out, p, l);
		out[l] = '\0';
		/* Subjects go to logs: keep them printable and quote-free. */
		for (i = 0; i < l; i++)
			if ((unsigned char)out[i] < 0x20 || out[i] == '"' ||
			    (unsigned char)out[i] >= 0x7f)
				out[i] = '?';
	}
	BIO_free(b);
}

int
http_tls_verify_chain(X509_STORE *store, const uint8_t *const *der,
    const size_t *len, size_t n, struct http_client_cert *out)
{
	STACK_OF(X509) *untrusted = NULL;
	X509_STORE_CTX *ctx = NULL;
	X509 *leaf = NULL;
	uint8_t md[32];
	const ASN1_TIME *na;
	struct tm tm;
	size_t i;
	int rc = ERR_PARSE;

	memset(out, 0, sizeof(*out));
	if (store == NULL || n == 0 || n > 10)
		return ERR_AUTH;
	for (i = 0; i < n; i++) {
		const unsigned char *p = der[i];
		X509 *x;

		if (len[i] == 0 || len[i] > 65536)
			goto out;
		x = d2i_X509(NULL, &p, (long)len[i]);
		if (x == NULL || p != der[i] + len[i]) {
			X509_free(x);
			goto out;
		}
		if (i == 0) {
			leaf = x;
			continue;
		}
		if ((untrusted == NULL && (untrusted = sk_X509_new_null()) == NULL) ||
		    sk_X509_push(untrusted, x) == 0) {
			X509_free(x);
			rc = ERR_NOMEM;
			goto out;
		}
	}
	rc = ERR_AUTH;
	if ((ctx = X509_STORE_CTX_new()) == NULL ||
	    X509_STORE_CTX_init(ctx, store, leaf, untrusted) != 1 ||
	    X509_STORE_CTX_set_purpose(ctx, X509_PURPOSE_SSL_CLIENT) != 1) {
		rc = ERR_CRYPTO;
		goto out;
	}
	if (X509_verify_cert(ctx) != 1) {
		log_msg(LOG_INFO, "event=client_cert_rejected reason=\"%s\"",
		    X509_verify_cert_error_string(X509_STORE_CTX_get_error(ctx)));
		goto out;
	}
	name_str(X509_get_subject_name(leaf), out->subject, sizeof(out->subject));
	subject_cn(X509_get_subject_name(leaf), out->cn, sizeof(out->cn));
	name_str(X509_get_issuer_name(leaf), out->issuer, sizeof(out->issuer));
	if ((rc = sha256_of(der[0], len[0], md)) != 0)
		goto out;
	hex_encode(md, 32, out->sha256);
	na = X509_get0_notAfter(leaf);
	if (ASN1_TIME_to_tm(na, &tm) == 1)
		out->not_after = (int64_t)timegm(&tm);
	rc = 0;
out:
	ERR_clear_error();
	X509_STORE_CTX_free(ctx);
	X509_free(leaf);
	sk_X509_pop_free(untrusted, X509_free);
	return rc;
}
