/*
 * kms_bench.c - `make bench` for the KMS core: ops/s of AES-CMAC over 32
 * bytes, KCV, keyset.import of a 3-key AES-128 set and ECDSA P-256, three
 * ways in one run (raw OpenSSL in-process, PKCS#11 in-process through
 * pkcs11/, through kmsd over its socket), plus kmsd with 4 pipelining
 * connections, single-call latency percentiles, and the ratios the issue's
 * goals are stated in (against the plain in-process line, ~90k CMAC/s as
 * the issue puts it), and again against the in-process line with the
 * getpid cache kmsd runs with. Not a test: it prints numbers.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/ec.h>
#include <openssl/evp.h>

#include "kms/kms.h"
#include "tests/kmsenv.h"

static double secs = 1.0;
static struct kmsenv E;

#define RUN_FOR(count, BODY) do {					\
	uint64_t t0_ = now_us(), end_ = t0_ + (uint64_t)(secs * 1e6);	\
	count = 0;							\
	while (now_us() < end_) {					\
		for (int k_ = 0; k_ < 64; k_++) { BODY; }		\
		count += 64;						\
	}								\
	el = (double)(now_us() - t0_) / 1e6;				\
} while (0)

static double el;

static void
die(const char *what)
{
	fprintf(stderr, "kms_bench: %s failed\n", what);
	exit(1);
}

/* ---- OpenSSL in-process ---- */

static double
ossl_cmac_rate(void)
{
	static const uint8_t key[16] = { 1 }, d[32] = { 2 };
	EVP_MAC *m = EVP_MAC_fetch(NULL, "CMAC", NULL);
	EVP_MAC_CTX *c = EVP_MAC_CTX_new(m);
	OSSL_PARAM p[2] = { OSSL_PARAM_construct_utf8_string("cipher",
	    "AES-128-CBC", 0), OSSL_PARAM_construct_end() };
	uint8_t out[16];
	size_t ol;
	long n;

	RUN_FOR(n, if (EVP_MAC_init(c, key, 16, p) != 1 ||
	    EVP_MAC_update(c, d, 32) != 1 ||
	    EVP_MAC_final(c, out, &ol, 16) != 1) die("cmac"));
	EVP_MAC_CTX_free(c);
	EVP_MAC_free(m);
	return n / el;
}

static double
ossl_kcv_rate(void)
{
	static const uint8_t key[16] = { 1 }, ones[16] = { 1, 1, 1, 1, 1, 1, 1, 1,
		1, 1, 1, 1, 1, 1, 1, 1 };
	EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
	uint8_t out[32];
	int ol;
	long n;

	RUN_FOR(n, if (EVP_EncryptInit_ex(c, EVP_aes_128_ecb(), NULL, key,
	    NULL) != 1 || EVP_EncryptUpdate(c, out, &ol, ones, 16) != 1)
	    die("ecb"));
	EVP_CIPHER_CTX_free(c);
	return n / el;
}

static int
ossl_kw(int enc, const uint8_t *kek, size_t kl, const uint8_t *in, size_t n,
    uint8_t *out)
{
	EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
	int l1 = 0, l2 = 0, r;

	EVP_CIPHER_CTX_set_flags(c, EVP_CIPHER_CTX_FLAG_WRAP_ALLOW);
	r = EVP_CipherInit_ex(c, kl == 16 ? EVP_aes_128_wrap() : EVP_aes_256_wrap(),
	    NULL, kek, NULL, enc) == 1 &&
	    EVP_CipherUpdate(c, out, &l1, in, (int)n) == 1 &&
	    EVP_CipherFinal_ex(c, out + l1, &l2) == 1;
	EVP_CIPHER_CTX_free(c);
	return r ? l1 + l2 : -1;
}

/* The import work without a token: unwrap 3, KCV 3, rewrap 3. */
static double
ossl_import_rate(const uint8_t w[3][24])
{
	static const uint8_t storage[32] = { 7 }, ones[16] = { 1, 1, 1, 1, 1, 1,
		1, 1, 1, 1, 1, 1, 1, 1, 1, 1 };
	EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
	uint8_t key[32], out[48];
	int ol;
	long n;

	RUN_FOR(n, for (int i = 0; i < 3; i++) {
		if (ossl_kw(0, kmsenv_kek256, 32, w[i], 24, key) != 16 ||
		    EVP_EncryptInit_ex(c, EVP_aes_128_ecb(), NULL, key, NULL) != 1 ||
		    EVP_EncryptUpdate(c, out, &ol, ones, 16) != 1 ||
		    ossl_kw(1, storage, 32, key, 16, out) != 24)
			die("ossl import");
	});
	EVP_CIPHER_CTX_free(c);
	return n / el;
}

static double
ossl_ecdsa_rate(void)
{
	EVP_PKEY *pk = EVP_EC_gen("P-256");
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	uint8_t sig[128];
	size_t sl;
	long n;

	RUN_FOR(n, sl = sizeof(sig);
	    if (EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, pk) != 1 ||
	    EVP_DigestSign(md, sig, &sl, (const uint8_t *)"tbs certificate", 15) != 1)
		die("ecdsa"));
	EVP_MD_CTX_free(md);
	EVP_PKEY_free(pk);
	return n / el;
}

/* ---- PKCS#11 in-process ---- */

struct p11_rates {
	double cmac, kcv, import, ecdsa;
};

static void
p11_rates(struct p11 *p, struct keystore *ks, const uint8_t w[3][24],
    struct p11_rates *r)
{
	static const uint8_t d[32] = { 2 }, ones[16] = { 1, 1, 1, 1, 1, 1, 1, 1,
		1, 1, 1, 1, 1, 1, 1, 1 };
	struct p11_keyspec s = { .usage = P11_SIGN | P11_ENCRYPT };
	struct p11_keyspec ext = { .extractable = 1, .usage = P11_SIGN |
	    P11_ENCRYPT };
	struct ks_key *kek = ks_find(ks, "peer/test/kek256"),
	    *stor = ks_find(ks, "storage-kek"), *ca = ks_find(ks, "ca");
	struct ks_version *v;
	p11_obj k, ko, so, co, u;
	uint8_t out[64], sig[128];
	size_t ol, sl;
	long n;

	if (p11_aes_generate(p, 16, &s, &k) != 0)
		die("p11 key");
	RUN_FOR(n, if (p11_cmac(p, k, d, 32, out) != 0) die("p11 cmac"));
	r->cmac = n / el;
	RUN_FOR(n, if (p11_aes_encrypt(p, k, P11_ECB, NULL, ones, 16, out) != 0)
	    die("p11 ecb"));
	r->kcv = n / el;
	if (ks_version(kek, 0, &v) != 0 || ks_object(ks, kek, v, &ko) != 0 ||
	    ks_version(stor, 0, &v) != 0 || ks_object(ks, stor, v, &so) != 0 ||
	    ks_version(ca, 0, &v) != 0 || ks_object(ks, ca, v, &co) != 0)
		die("p11 token keys");
	RUN_FOR(n, for (int i = 0; i < 3; i++) {
		ol = sizeof(out);
		if (p11_unwrap(p, P11_WRAP_AES_KW, ko, w[i], 24, CKK_AES, 16, &ext,
		    &u) != 0 ||
		    p11_aes_encrypt(p, u, P11_ECB, NULL, ones, 16, out) != 0 ||
		    p11_wrap(p, P11_WRAP_AES_KW, so, u, out, &ol) != 0 ||
		    p11_destroy(p, u) != 0)
			die("p11 import");
	});
	r->import = n / el;
	RUN_FOR(n, sl = sizeof(sig);
	    if (p11_ecdsa_sign(p, co, 256, (const uint8_t *)"tbs certificate", 15,
	    sig, &sl) != 0) die("p11 ecdsa"));
	r->ecdsa = n / el;
}

/* ---- kmsd ---- */

static struct kms_wrapped wr[3];
static uint8_t wkcv[3][3];

static double
kmsd_sync_rate(struct kms_client *c, int op, uint32_t smac, uint32_t enc)
{
	static const uint8_t d[32] = { 2 };
	uint8_t out[64], kcv[5], sig[128];
	struct buf blob;
	struct kms_keyset_kcvs kc;
	size_t kl, sl;
	long n;

	buf_init(&blob);
	switch (op) {
	case 0:
		RUN_FOR(n, if (kms_cmac(c, smac, d, 32, out) != 0) die("kmsd cmac"));
		break;
	case 1:
		RUN_FOR(n, if (kms_kcv(c, KMS_HANDLE(enc), KMS_KCV_GP, kcv, &kl) != 0)
		    die("kmsd kcv"));
		break;
	case 2:
		RUN_FOR(n, if (kms_keyset_import(c, "peer/test/kek256",
		    KMS_WRAP_AES_KW, KMS_ALG_AES128, KMS_KCV_GP, wr, 3, &blob,
		    &kc) != 0) die("kmsd import"));
		break;
	default:
		RUN_FOR(n, sl = sizeof(sig);
		    if (kms_sign(c, KMS_LABEL("ca"), KMS_SIGN_ECDSA_SHA256, 0,
		    (const uint8_t *)"tbs certificate", 15, sig, &sl) != 0)
			die("kmsd sign"));
	}
	buf_free(&blob);
	return n / el;
}

/* One connection's session: a key set and S-MAC derived from it. */
static void
open_session(struct kms_client *c, uint32_t *smac, uint32_t *enc)
{
	struct kms_keyset_kcvs kc;
	struct kms_keyset ks;
	struct buf blob;
	uint8_t ctx[16] = { 3 };

	buf_init(&blob);
	if (kms_keyset_generate(c, KMS_ALG_AES128, KMS_KCV_GP, &blob, &kc) != 0 ||
	    kms_keyset_open(c, blob.p, blob.len, 0, &ks) != 0 ||
	    kms_scp03_derive(c, ks.handle[1], 0x06, ctx, 16, 128, smac) != 0)
		die("session");
	*enc = ks.handle[0];
	buf_free(&blob);
}

struct worker {
	int     op;
	long    done;
	double  secs;
};

/* Keeps `depth` requests in flight on its own connection. */
static void *
pipeline(void *arg)
{
	struct worker *w = arg;
	struct kms_client *c;
	struct buf body;
	uint32_t smac, enc, id;
	uint64_t t0, end;
	long inflight = 0;
	int status, op, depth = 16;
	struct rd r;

	if (kms_connect(&c, E.sock, "bench") != 0)
		die("connect");
	open_session(c, &smac, &enc);
	buf_init(&body);
	if (w->op == 0) {
		static const uint8_t d[32] = { 2 };

		op = KMS_OP_CMAC;
		if (kms_put_ref(&body, KMS_HANDLE(smac)) != 0 ||
		    buf_put_lv32(&body, d, 32) != 0)
			die("body");
	} else if (w->op == 2) {
		op = KMS_OP_KEYSET_IMPORT;
		if (buf_put_str(&body, "peer/test/kek256") || buf_put_u8(&body, 1) ||
		    buf_put_u8(&body, 1) || buf_put_u8(&body, 1) ||
		    buf_put_u8(&body, 3))
			die("body");
		for (int i = 0; i < 3; i++)
			if (buf_put_u8(&body, wr[i].usage) ||
			    buf_put_lv16(&body, wr[i].wrapped, wr[i].wlen) ||
			    buf_put_lv16(&body, wr[i].kcv, 3))
				die("body");
		depth = 4;
	} else {
		op = KMS_OP_SIGN;
		if (kms_put_ref(&body, KMS_LABEL("ca")) || buf_put_u8(&body, 1) ||
		    buf_put_u8(&body, 0) || buf_put_lv32(&body, "tbs certificate", 15))
			die("body");
		depth = 8;
	}
	t0 = now_us();
	end = t0 + (uint64_t)(secs * 1e6);
	w->done = 0;
	for (;;) {
		int more = now_us() < end;

		while (more && inflight < depth) {
			if (kms_submit(c, op, &body, &id) != 0)
				die("submit");
			inflight++;
		}
		if (kms_flush(c) != 0)
			die("flush");
		if (inflight == 0)
			break;
		if (kms_next(c, &id, &status, &r) != 0 || status != 0)
			die("reply");
		inflight--;
		w->done++;
	}
	w->secs = (double)(now_us() - t0) / 1e6;
	buf_free(&body);
	kms_close(c);
	return NULL;
}

static double
kmsd_parallel_rate(int op, int nconn)
{
	pthread_t t[8];
	struct worker w[8];
	double total = 0;
	int i;

	for (i = 0; i < nconn; i++) {
		w[i].op = op;
		pthread_create(&t[i], NULL, pipeline, &w[i]);
	}
	for (i = 0; i < nconn; i++) {
		pthread_join(t[i], NULL);
		total += w[i].done / w[i].secs;
	}
	return total;
}

static int
cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static void
latency(struct kms_client *c, uint32_t smac, double *p50, double *p99)
{
	static const uint8_t d[32] = { 2 };
	enum { N = 20000 };
	static uint64_t lat[N];
	uint8_t out[16];
	int i;

	for (i = 0; i < N; i++) {
		uint64_t t = now_us();

		if (kms_cmac(c, smac, d, 32, out) != 0)
			die("cmac");
		lat[i] = now_us() - t;
	}
	qsort(lat, N, sizeof(lat[0]), cmp_u64);
	*p50 = (double)lat[N / 2];
	*p99 = (double)lat[N * 99 / 100];
}

int
main(void)
{
	const char *s = getenv("BENCH_SECONDS");
	struct kms_client *c;
	struct p11 *p;
	struct keystore ks;
	struct p11_rates pr, pc;
	uint8_t keys[3][16], w[3][24];
	uint32_t smac, enc;
	double o[4], k1[4], k4[4], p50, p99;
	int i;

	if (s != NULL && atof(s) > 0)
		secs = atof(s);
	log_init("kms_bench", LOG_ERR);
	if (kmsenv_setup(&E, 0) != 0 || kmsenv_start(&E, NULL) != 0)
		die("fixture");
	for (i = 0; i < 3; i++) {
		memset(keys[i], 0x21 + i, 16);
		if (ossl_kw(1, kmsenv_kek256, 32, keys[i], 16, w[i]) != 24)
			die("wrap");
		wr[i].usage = (uint8_t)(KMS_USE_ENC + i);
		wr[i].wrapped = w[i];
		wr[i].wlen = 24;
		if (ks_kcv_bytes(KMS_ALG_AES128, KMS_KCV_GP, keys[i], 16, wkcv[i],
		    &(size_t){ 0 }) != 0)
			die("kcv");
		wr[i].kcv = wkcv[i];
		wr[i].kcvlen = 3;
	}
	o[0] = ossl_cmac_rate();
	o[1] = ossl_kcv_rate();
	o[2] = ossl_import_rate((const uint8_t (*)[24])w);
	o[3] = ossl_ecdsa_rate();
	if (kmsenv_open_token(&E, &p, &ks) != 0)
		die("token");
	p11_rates(p, &ks, (const uint8_t (*)[24])w, &pr);
	/* The same calls with the getpid cache kmsd runs with (pid.c). */
	p11_pid_cache();
	p11_rates(p, &ks, (const uint8_t (*)[24])w, &pc);
	ks_free(&ks);
	p11_close(p);
	if (kms_connect(&c, E.sock, "bench") != 0)
		die("connect");
	open_session(c, &smac, &enc);
	for (i = 0; i < 4; i++)
		k1[i] = kmsd_sync_rate(c, i, smac, enc);
	latency(c, smac, &p50, &p99);
	k4[0] = kmsd_parallel_rate(0, 4);
	k4[1] = 0;
	k4[2] = kmsd_parallel_rate(2, 4);
	k4[3] = kmsd_parallel_rate(3, 4);
	kms_close(c);
	kmsenv_stop(&E, 0);
	kmsenv_cleanup(&E);

	printf("KMS core (ops/s; %.1f s per cell; SoftHSM2 token; one run)\n", secs);
	printf("%-28s %12s %12s %12s %14s\n", "operation", "openssl", "pkcs11",
	    "kmsd 1 conn", "kmsd 4 conns");
	printf("%-28s %12.0f %12.0f %12.0f %14.0f\n", "AES-CMAC 32 bytes", o[0],
	    pr.cmac, k1[0], k4[0]);
	printf("%-28s %12.0f %12.0f %12.0f %14s\n", "KCV (kmsd: recorded)", o[1],
	    pr.kcv, k1[1], "-");
	printf("%-28s %12.0f %12.0f %12.0f %14.0f\n", "keyset.import 3x AES-128",
	    o[2], pr.import, k1[2], k4[2]);
	printf("%-28s %12.0f %12.0f %12.0f %14.0f\n", "ECDSA P-256 sign", o[3],
	    pr.ecdsa, k1[3], k4[3]);
	printf("\nratios\n");
	printf("  pkcs11 / openssl: cmac %.3f, import %.3f, ecdsa %.3f\n",
	    pr.cmac / o[0], pr.import / o[2], pr.ecdsa / o[3]);
	printf("  kmsd 1 conn / pkcs11: cmac %.3f, import %.3f, ecdsa %.3f\n",
	    k1[0] / pr.cmac, k1[2] / pr.import, k1[3] / pr.ecdsa);
	printf("  kmsd 4 conns / pkcs11: cmac %.3f (goal >= 0.60), import %.3f, "
	    "ecdsa %.3f\n", k4[0] / pr.cmac, k4[2] / pr.import, k4[3] / pr.ecdsa);
	printf("  single-call CMAC latency through kmsd: p50 %.0f us (goal < 60), "
	    "p99 %.0f us\n", p50, p99);
	printf("pkcs11 in-process with kmsd's getpid cache: cmac %.0f, kcv %.0f, "
	    "import %.0f, ecdsa %.0f\n", pc.cmac, pc.kcv, pc.import, pc.ecdsa);
	printf("  kmsd 4 conns / that: cmac %.3f, import %.3f, ecdsa %.3f\n",
	    k4[0] / pc.cmac, k4[2] / pc.import, k4[3] / pc.ecdsa);
	printf("RESULT kms_cmac_4conn_ratio=%.3f kms_cmac_p50_us=%.0f "
	    "kms_import_per_s=%.0f kms_cmac_4conn_ratio_pidcache=%.3f\n",
	    k4[0] / pr.cmac, p50, k4[2], k4[0] / pc.cmac);
	return 0;
}
