/*
 * sei_peer.h - an SEI-TSM peer for the tests and the benchmark of tsmd's
 * SEI-facing routes, written from the contract alone (ARCHITECTURE.md,
 * tsm/sei/README.md) with OpenSSL and libcurl: random key sets wrapped
 * with AES-KW, GP/CMAC KCVs, X-TSM-Signature signing and checking, the
 * receipt check, starting tsmd. TEST MATERIAL. Header-only.
 */
#ifndef SPTSM_SEI_PEER_H
#define SPTSM_SEI_PEER_H

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <curl/curl.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include "kms/base.h"
#include "tests/testenv.h"

#define SP_KEYSYNC "/api/v1/sei/key-sync"
#define SP_SDSTATUS "/api/v1/sei/sd-status"

/* A key set as the SEI-TSM holds it: clear keys (test only), their
 * AES-KW wrapping and KCVs, as hex. */
struct sp_keyset {
	size_t  keylen;
	uint8_t key[3][32];
	char    wrapped[3][2 * 40 + 1];
	char    kcv[3][11];	/* upper-case hex, 3 (GP) or 5 (CMAC) bytes */
	size_t  kcvlen;
};

static const EVP_CIPHER * __attribute__((unused))
sp_aes_ecb(size_t len)
{
	return len == 16 ? EVP_aes_128_ecb() : len == 24 ? EVP_aes_192_ecb() :
	    EVP_aes_256_ecb();
}

/* AES-ECB of n bytes (a multiple of 16) under key. */
static int __attribute__((unused))
sp_ecb(const uint8_t *key, size_t keylen, const uint8_t *in, size_t n,
    uint8_t *out)
{
	EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
	int l = 0, ok;

	ok = c != NULL && EVP_EncryptInit_ex(c, sp_aes_ecb(keylen), NULL, key,
	    NULL) == 1 && EVP_CIPHER_CTX_set_padding(c, 0) == 1 &&
	    EVP_EncryptUpdate(c, out, &l, in, (int)n) == 1 && (size_t)l == n;
	EVP_CIPHER_CTX_free(c);
	return ok ? 0 : -1;
}

/* GP: first 3 bytes of AES(K, 01 x 16). */
static int __attribute__((unused))
sp_kcv_gp(const uint8_t *key, size_t keylen, uint8_t out[3])
{
	uint8_t in[16], ct[16];

	memset(in, 1, sizeof(in));
	if (sp_ecb(key, keylen, in, 16, ct) != 0)
		return -1;
	memcpy(out, ct, 3);
	return 0;
}

/* AES-CMAC of n bytes. */
static int __attribute__((unused))
sp_cmac(const uint8_t *key, size_t keylen, const uint8_t *in, size_t n,
    uint8_t out[16])
{
	EVP_MAC *m = EVP_MAC_fetch(NULL, "CMAC", NULL);
	EVP_MAC_CTX *c = m ? EVP_MAC_CTX_new(m) : NULL;
	OSSL_PARAM p[2];
	size_t ml = 0;
	int ok;

	p[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_CIPHER,
	    (char *)(keylen == 16 ? "AES-128-CBC" : keylen == 24 ? "AES-192-CBC" :
	    "AES-256-CBC"), 0);
	p[1] = OSSL_PARAM_construct_end();
	ok = c != NULL && EVP_MAC_init(c, key, keylen, p) == 1 &&
	    EVP_MAC_update(c, in, n) == 1 &&
	    EVP_MAC_final(c, out, &ml, 16) == 1 && ml == 16;
	EVP_MAC_CTX_free(c);
	EVP_MAC_free(m);
	return ok ? 0 : -1;
}

/* CMAC: first 5 bytes of AES-CMAC(K, 00 x 16). */
static int __attribute__((unused))
sp_kcv_cmac(const uint8_t *key, size_t keylen, uint8_t out[5])
{
	static const uint8_t zero[16];
	uint8_t mac[16];

	if (sp_cmac(key, keylen, zero, sizeof(zero), mac) != 0)
		return -1;
	memcpy(out, mac, 5);
	return 0;
}

/* The GP SCP03 KDF (gp-reference §1.3), one block: CMAC(K, 00 x 11 |
 * const | 00 | L | 01 | ctx), lbits 64 or 128. */
static int __attribute__((unused))
sp_scp03_kdf(const uint8_t *key, size_t keylen, uint8_t konst,
    const uint8_t *ctx, size_t clen, unsigned lbits, uint8_t out[16])
{
	uint8_t in[64];

	if (clen > 48)
		return -1;
	memset(in, 0, 11);
	in[11] = konst;
	in[12] = 0;
	in[13] = (uint8_t)(lbits >> 8);
	in[14] = (uint8_t)lbits;
	in[15] = 1;
	memcpy(in + 16, ctx, clen);
	return sp_cmac(key, keylen, in, 16 + clen, out);
}

/* RFC 3394 AES key wrap of key under kek (OpenSSL's wrap cipher). */
static int __attribute__((unused))
sp_aes_kw(const uint8_t *kek, size_t keklen, const uint8_t *key, size_t n,
    uint8_t *out, size_t *outlen)
{
	EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
	int l = 0, l2 = 0, ok;

	EVP_CIPHER_CTX_set_flags(c, EVP_CIPHER_CTX_FLAG_WRAP_ALLOW);
	ok = EVP_EncryptInit_ex(c, keklen == 16 ? EVP_aes_128_wrap() :
	    EVP_aes_256_wrap(), NULL, kek, NULL) == 1 &&
	    EVP_EncryptUpdate(c, out, &l, key, (int)n) == 1 &&
	    EVP_EncryptFinal_ex(c, out + l, &l2) == 1;
	EVP_CIPHER_CTX_free(c);
	*outlen = (size_t)(l + l2);
	return ok ? 0 : -1;
}

/* A fresh random key set of keylen-byte keys wrapped under kek. */
static int __attribute__((unused))
sp_keyset_new(struct sp_keyset *s, size_t keylen, const uint8_t *kek,
    size_t keklen, int cmac)
{
	uint8_t w[48], kcv[5];
	size_t wl, i;

	memset(s, 0, sizeof(*s));
	s->keylen = keylen;
	s->kcvlen = cmac ? 5 : 3;
	for (i = 0; i < 3; i++) {
		if (RAND_bytes(s->key[i], (int)keylen) != 1 ||
		    sp_aes_kw(kek, keklen, s->key[i], keylen, w, &wl) != 0 ||
		    (cmac ? sp_kcv_cmac(s->key[i], keylen, kcv) :
		    sp_kcv_gp(s->key[i], keylen, kcv)) != 0)
			return -1;
		hex_encode(w, wl, s->wrapped[i]);
		hex_encode_upper(kcv, s->kcvlen, s->kcv[i]);
	}
	return 0;
}

static void __attribute__((unused))
sp_nonce(char out[33])
{
	uint8_t b[16];

	if (RAND_bytes(b, sizeof(b)) != 1)
		abort();
	hex_encode(b, sizeof(b), out);
}

/* sig = HMAC-SHA256(key, METHOD\nPATH\nts\nnonce\nhex(SHA-256(body))),
 * lowercase hex: computed here, independently of tsm/http/sig.c. */
static void __attribute__((unused))
sp_mac(const uint8_t *key, size_t keylen, const char *method, const char *path,
    long long ts, const char *nonce, const void *body, size_t n, char hex[65])
{
	uint8_t md[32], mac[32];
	unsigned int ml = 0;
	char bh[65], msg[800];
	int len;

	EVP_Digest(body != NULL ? body : "", n, md, &ml, EVP_sha256(), NULL);
	hex_encode(md, 32, bh);
	len = snprintf(msg, sizeof(msg), "%s\n%s\n%lld\n%s\n%s", method, path, ts,
	    nonce, bh);
	HMAC(EVP_sha256(), key, (int)keylen, (const uint8_t *)msg, (size_t)len,
	    mac, &ml);
	hex_encode(mac, 32, hex);
}

/* The X-TSM-Signature value for a POST of body to path. */
static void __attribute__((unused))
sp_sign(const uint8_t *key, size_t keylen, const char *key_id,
    const char *path, long long ts, const char *nonce, const char *body,
    char *out, size_t cap)
{
	char hex[65];

	sp_mac(key, keylen, "POST", path, ts, nonce, body, strlen(body), hex);
	snprintf(out, cap, "keyId=%s,ts=%lld,nonce=%s,sig=%s", key_id, ts, nonce,
	    hex);
}

struct sp_resp {
	long       code;
	struct buf body;
	char       hdrs[4096];
	size_t     hlen;
};

static size_t
sp_on_body(char *p, size_t sz, size_t n, void *u)
{
	struct sp_resp *r = u;

	return buf_put(&r->body, p, sz * n) == 0 ? sz * n : 0;
}

static size_t
sp_on_hdr(char *p, size_t sz, size_t n, void *u)
{
	struct sp_resp *r = u;
	size_t l = sz * n;

	if (r->hlen + l < sizeof(r->hdrs)) {
		memcpy(r->hdrs + r->hlen, p, l);
		r->hlen += l;
		r->hdrs[r->hlen] = '\0';
	}
	return l;
}

static void __attribute__((unused))
sp_resp_free(struct sp_resp *r)
{
	buf_free(&r->body);
	r->code = 0;
	r->hlen = 0;
	r->hdrs[0] = '\0';
}

/* POSTs body (n bytes) to base+path with the signature header (NULL:
 * none) on h (kept alive between calls). 0 when an answer came. */
static int __attribute__((unused))
sp_post(CURL *h, const char *base, const char *ca, const char *path,
    const char *body, size_t n, const char *sig, struct sp_resp *r)
{
	struct curl_slist *hl = NULL;
	char url[300], line[400];
	CURLcode cc;

	r->code = 0;
	r->hlen = 0;
	r->hdrs[0] = '\0';
	buf_init(&r->body);
	snprintf(url, sizeof(url), "%s%s", base, path);
	curl_easy_setopt(h, CURLOPT_URL, url);
	if (ca != NULL)
		curl_easy_setopt(h, CURLOPT_CAINFO, ca);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, sp_on_body);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, r);
	curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, sp_on_hdr);
	curl_easy_setopt(h, CURLOPT_HEADERDATA, r);
	curl_easy_setopt(h, CURLOPT_TIMEOUT, 30L);
	curl_easy_setopt(h, CURLOPT_TCP_NODELAY, 1L);
	if (sig != NULL) {
		snprintf(line, sizeof(line), "X-TSM-Signature: %s", sig);
		hl = curl_slist_append(hl, line);
	}
	hl = curl_slist_append(hl, "Content-Type: application/json");
	hl = curl_slist_append(hl, "Expect:");
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, hl);
	curl_easy_setopt(h, CURLOPT_POST, 1L);
	curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
	curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)n);
	cc = curl_easy_perform(h);
	if (cc == CURLE_OK)
		curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &r->code);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, NULL);
	curl_slist_free_all(hl);
	return cc == CURLE_OK ? 0 : -1;
}

/* The answer's X-TSM-Signature verifies under key over POST, path and
 * the answer body, with a ts within 10 s of now. */
static int __attribute__((unused))
sp_answer_signed(const struct sp_resp *r, const uint8_t *key, size_t keylen,
    const char *key_id, const char *path)
{
	const char *h = strcasestr(r->hdrs, "\nX-TSM-Signature: ");
	char kid[80], nonce[40], sig[80], want[65];
	long long ts;

	if (h == NULL || sscanf(h + 18, "keyId=%79[^,],ts=%lld,nonce=%39[^,],"
	    "sig=%79[0-9a-f]", kid, &ts, nonce, sig) != 4)
		return 0;
	sp_mac(key, keylen, "POST", path, ts, nonce, r->body.p, r->body.len,
	    want);
	return strcmp(kid, key_id) == 0 && strlen(sig) == 64 &&
	    CRYPTO_memcmp(sig, want, 64) == 0 &&
	    llabs(ts - (long long)wall_seconds()) < 10;
}

/* The benchmarks' tsmd: its paths under dir, and a config file with one
 * peer, SEI-BENCH, that uses the kmsenv fixture's test transport KEK and
 * MAC key (keyId bench-mac); max_conns 0 keeps tsmd's default. */
struct sp_bench {
	char var[400], cfg[400], log[400], ca[500];
};

static int __attribute__((unused))
sp_bench_config(const char *dir, int workers, int max_conns, struct sp_bench *b)
{
	char doc[800], mc[40] = "";

	snprintf(b->var, sizeof(b->var), "%s/tsmvar", dir);
	snprintf(b->cfg, sizeof(b->cfg), "%s/tsmd.json", dir);
	snprintf(b->log, sizeof(b->log), "%s/tsmd.log", dir);
	snprintf(b->ca, sizeof(b->ca), "%s/ca.pem", b->var);
	if (max_conns > 0)
		snprintf(mc, sizeof(mc), ", \"maxConnections\": %d", max_conns);
	snprintf(doc, sizeof(doc), "{\"limits\": {\"workers\": %d%s}, "
	    "\"peers\": [{\"seiTsmId\": \"SEI-BENCH\", \"tenantId\": \"SP-1\", "
	    "\"baseUrl\": \"http://127.0.0.1:9\", \"wrap\": \"AES-KW\", "
	    "\"kcvMethod\": \"GP\", \"transportKek\": \"peer/test/kek\", "
	    "\"macKeyId\": \"bench-mac\", \"macKey\": \"peer/test/mac\", "
	    "\"clientCertRequired\": false}]}", workers, mc);
	return file_write_atomic(b->cfg, doc, strlen(doc), 0600);
}

/* Starts tsmd (its stderr to logpath) and waits for VAR/tsm/tsmd.addr;
 * addr gets "host:port". Returns the pid, or -1. */
static pid_t __attribute__((unused))
sp_tsmd_start(const char *var, const char *cfg, const char *kms_sock,
    const char *logpath, const char *level, char *addr, size_t cap)
{
	const char *argv[] = { testenv_bin("tsmd"), "--var", var, "--config", cfg,
		"--listen", "127.0.0.1:0", "--kms-socket", kms_sock, "--log-level",
		level, NULL };
	char ap[600];
	struct buf b;
	pid_t pid;
	int i, fd, st;

	snprintf(ap, sizeof(ap), "%s/tsm/tsmd.addr", var);
	(void)unlink(ap);
	if ((pid = fork()) == 0) {
		fd = open(logpath, O_WRONLY | O_CREAT | O_APPEND, 0600);
		dup2(fd, 2);
		execv(argv[0], (char *const *)argv);
		_exit(127);
	}
	buf_init(&b);
	for (i = 0; i < 3000; i++) {
		if (file_read_all(ap, 100, &b) == 0 && b.len > 1 &&
		    b.len - 1 < cap) {
			memcpy(addr, b.p, b.len - 1);
			addr[b.len - 1] = '\0';
			buf_free(&b);
			return pid;
		}
		if (waitpid(pid, &st, WNOHANG) == pid)
			break;
		usleep(10000);
	}
	buf_free(&b);
	return -1;
}

#endif
