/*
 * keysync_bench.c - `make bench` for §9.4 key sync end to end: durable key
 * syncs per second over HTTPS (client threads with keep-alive libcurl
 * handles; every request a fresh random key set wrapped with OpenSSL
 * under the test transport KEK and signed with the test MAC key) against
 * the real tsmd and kmsd, compared in the same run with keyset.import per
 * second on kmsd alone (4 pipelining connections) and with GET /healthz.
 * Clients, tsmd and kmsd share this machine's cores. Prints numbers.
 * Environment: BENCH_SECONDS (3), KEYSYNC_BENCH_CLIENTS (64),
 * KEYSYNC_BENCH_WORKERS (tsmd workers, 64), KEYSYNC_BENCH_METRICS (print
 * tsmd's /metrics to stderr at the end).
 */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kms/kms.h"
#include "tests/kmsenv.h"
#include "tests/integration/sei_peer.h"

static struct kmsenv E;
static char var[400], cfgf[400], logpath[400], addr[64], base[100], ca[500];
static double secs = 3.0;
static volatile int go, stop_flag;

static void __attribute__((noreturn))
die(const char *what)
{
	fprintf(stderr, "keysync_bench: %s\n", what);
	exit(1);
}

static int
env_int(const char *name, int def)
{
	const char *s = getenv(name);

	return s != NULL && atoi(s) > 0 ? atoi(s) : def;
}

/* ---- kmsd alone: keyset.import on 4 pipelining connections ---- */

struct kworker {
	pthread_t t;
	long      done;
	double    el;
};

static struct buf import_req, hmac_req;
static int kms_mix;	/* 1: per set, the import and the three HMACs of a key sync */

static void *
kms_run(void *arg)
{
	struct kworker *w = arg;
	struct kms_client *c;
	uint32_t id;
	int status, inflight = 0, depth = 4;
	uint64_t t0, end;
	struct rd r;

	if (kms_connect(&c, E.sock, "keysync-bench") != 0)
		die("kms_connect");
	t0 = now_us();
	end = t0 + (uint64_t)(secs * 1e6);
	for (;;) {
		int more = now_us() < end;

		while (more && inflight < depth) {
			if (kms_submit(c, KMS_OP_KEYSET_IMPORT, &import_req, &id) != 0)
				die("submit");
			inflight++;
			if (kms_mix) {
				int k;

				for (k = 0; k < 3; k++)
					if (kms_submit(c, KMS_OP_HMAC, &hmac_req, &id) != 0)
						die("submit");
				inflight += 3;
			}
		}
		if (kms_flush(c) != 0)
			die("flush");
		if (inflight == 0)
			break;
		if (kms_next(c, &id, &status, &r) != 0 || status != 0)
			die("import reply");
		inflight--;
		w->done++;
	}
	if (kms_mix)
		w->done /= 4;	/* sets, not operations */
	w->el = (double)(now_us() - t0) / 1e6;
	kms_close(c);
	return NULL;
}

static double
kms_import_rate(int mix)
{
	struct sp_keyset ks;
	struct kworker w[4];
	uint8_t b[40], k[5];
	double rate = 0;
	size_t n, i;
	int t;

	/* the same body a key sync makes: AES-KW under peer/test/kek, GP */
	if (sp_keyset_new(&ks, 16, kmsenv_kek128, 16, 0) != 0)
		die("keyset");
	buf_init(&import_req);
	if (buf_put_str(&import_req, "peer/test/kek") != 0 ||
	    buf_put_u8(&import_req, KMS_WRAP_AES_KW) != 0 ||
	    buf_put_u8(&import_req, KMS_ALG_AES128) != 0 ||
	    buf_put_u8(&import_req, KMS_KCV_GP) != 0 ||
	    buf_put_u8(&import_req, 3) != 0)
		die("body");
	for (i = 0; i < 3; i++)
		if (hex_decode(ks.wrapped[i], strlen(ks.wrapped[i]), b, sizeof(b),
		    &n) != 0 || hex_decode(ks.kcv[i], 6, k, sizeof(k), &n) != 0 ||
		    buf_put_u8(&import_req, (uint8_t)(KMS_USE_ENC + i)) != 0 ||
		    buf_put_lv16(&import_req, b, 24) != 0 ||
		    buf_put_lv16(&import_req, k, 3) != 0)
			die("body");
	/* an HMAC input the size of a signed-string or receipt */
	buf_init(&hmac_req);
	memset(b, 0x5a, sizeof(b));
	if (kms_put_ref(&hmac_req, KMS_LABEL("peer/test/mac")) != 0 ||
	    buf_put_lv32(&hmac_req, b, sizeof(b)) != 0)
		die("body");
	kms_mix = mix;
	memset(w, 0, sizeof(w));
	for (t = 0; t < 4; t++)
		pthread_create(&w[t].t, NULL, kms_run, &w[t]);
	for (t = 0; t < 4; t++) {
		pthread_join(w[t].t, NULL);
		rate += (double)w[t].done / w[t].el;
	}
	buf_free(&import_req);
	buf_free(&hmac_req);
	return rate;
}

/* ---- HTTPS clients ---- */

struct cworker {
	pthread_t t;
	int       id, healthz;
	long      n, fail;
};

static size_t
sink(char *p, size_t sz, size_t n, void *u)
{
	return sz * n;
}

/* One key sync with a fresh key set for a new SE; 0 when acknowledged. */
static int
keysync_once(CURL *h, struct cworker *w, unsigned long seq)
{
	struct sp_keyset ks;
	struct sp_resp r;
	char body[1024], sig[300], nonce[33];
	int len, good;

	if (sp_keyset_new(&ks, 16, kmsenv_kek128, 16, 0) != 0)
		return -1;
	len = snprintf(body, sizeof(body), "{\"seiTsmId\":\"SEI-BENCH\","
	    "\"SsdAid\":\"A0000001515350\",\"encryptedKey\":[\"%s\",\"%s\","
	    "\"%s\"],\"Alg\":\"AES-128\",\"Usage\":\"SCP03\",\"checkValue\":"
	    "[\"%s\",\"%s\",\"%s\"],\"seId\":\"%04X%012lX\"}", ks.wrapped[0],
	    ks.wrapped[1], ks.wrapped[2], ks.kcv[0], ks.kcv[1], ks.kcv[2],
	    w->id, seq);
	sp_nonce(nonce);
	sp_sign(kmsenv_mac, 32, "bench-mac", SP_KEYSYNC, (long long)wall_seconds(),
	    nonce, body, sig, sizeof(sig));
	if (sp_post(h, base, ca, SP_KEYSYNC, body, (size_t)len, sig, &r) != 0)
		return -1;
	good = r.code == 200 && r.body.len > 16 &&
	    memcmp(r.body.p, "{\"resultCode\":0,", 16) == 0;
	if (!good && w->fail < 3)
		fprintf(stderr, "keysync_bench: %ld %.*s\n", r.code,
		    (int)r.body.len, (const char *)r.body.p);
	sp_resp_free(&r);
	return good ? 0 : -1;
}

static void *
client_run(void *arg)
{
	struct cworker *w = arg;
	CURL *h = curl_easy_init();
	unsigned long seq = 0;
	char url[200];
	long code;

	if (w->healthz) {
		snprintf(url, sizeof(url), "%s/healthz", base);
		curl_easy_setopt(h, CURLOPT_URL, url);
		curl_easy_setopt(h, CURLOPT_CAINFO, ca);
		curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, sink);
		curl_easy_setopt(h, CURLOPT_TCP_NODELAY, 1L);
	} else if (keysync_once(h, w, seq++) != 0)	/* connect, warm up */
		w->fail++;
	while (!go)
		usleep(100);
	while (!stop_flag) {
		if (w->healthz) {
			if (curl_easy_perform(h) != CURLE_OK ||
			    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code) !=
			    CURLE_OK || code != 200)
				w->fail++;
			else
				w->n++;
		} else if (keysync_once(h, w, seq++) == 0)
			w->n++;
		else
			w->fail++;
	}
	curl_easy_cleanup(h);
	return NULL;
}

static double
http_rate(int clients, int healthz, long *fails)
{
	struct cworker *w = calloc((size_t)clients, sizeof(*w));
	long total = 0;
	uint64_t t0;
	double el;
	int i;

	if (w == NULL)
		die("nomem");
	go = stop_flag = 0;
	*fails = 0;
	for (i = 0; i < clients; i++) {
		w[i].id = i;
		w[i].healthz = healthz;
		pthread_create(&w[i].t, NULL, client_run, &w[i]);
	}
	usleep(500000);
	t0 = now_us();
	go = 1;
	usleep((useconds_t)(secs * 1e6));
	stop_flag = 1;
	el = (double)(now_us() - t0) / 1e6;
	for (i = 0; i < clients; i++) {
		pthread_join(w[i].t, NULL);
		total += w[i].n;
		*fails += w[i].fail;
	}
	free(w);
	return (double)total / el;
}

int
main(void)
{
	const char *s = getenv("BENCH_SECONDS");
	int clients = env_int("KEYSYNC_BENCH_CLIENTS", 64);
	int workers = env_int("KEYSYNC_BENCH_WORKERS", 64);
	double kmsr, mixr, ksr, hzr;
	long kfail, hfail;
	char doc[800];
	pid_t pid;
	int st;

	if (s != NULL && atof(s) > 0)
		secs = atof(s);
	log_init("keysync_bench", LOG_ERR);
	curl_global_init(CURL_GLOBAL_DEFAULT);
	if (kmsenv_setup(&E, 0) != 0 || kmsenv_start(&E, NULL) != 0)
		die("kmsd fixture");
	snprintf(var, sizeof(var), "%s/tsmvar", E.dir);
	snprintf(cfgf, sizeof(cfgf), "%s/tsmd.json", E.dir);
	snprintf(logpath, sizeof(logpath), "%s/tsmd.log", E.dir);
	snprintf(ca, sizeof(ca), "%s/ca.pem", var);
	snprintf(doc, sizeof(doc), "{\"limits\": {\"workers\": %d, "
	    "\"maxConnections\": 512}, \"peers\": [{\"seiTsmId\": \"SEI-BENCH\", "
	    "\"tenantId\": \"SP-1\", \"baseUrl\": \"http://127.0.0.1:9\", "
	    "\"wrap\": \"AES-KW\", \"kcvMethod\": \"GP\", \"transportKek\": "
	    "\"peer/test/kek\", \"macKeyId\": \"bench-mac\", \"macKey\": "
	    "\"peer/test/mac\", \"clientCertRequired\": false}]}", workers);
	if (file_write_atomic(cfgf, doc, strlen(doc), 0600) != 0)
		die("config");

	kmsr = kms_import_rate(0);
	mixr = kms_import_rate(1);
	pid = sp_tsmd_start(var, cfgf, E.sock, logpath, "warn", addr, sizeof(addr));
	if (pid < 0)
		die("tsmd did not start");
	snprintf(base, sizeof(base), "https://%s", addr);
	ksr = http_rate(clients, 0, &kfail);
	hzr = http_rate(4, 1, &hfail);
	if (getenv("KEYSYNC_BENCH_METRICS") != NULL) {
		/* where the time went: tsmd's own histograms */
		CURL *h = curl_easy_init();
		char url[200];

		snprintf(url, sizeof(url), "%s/metrics", base);
		curl_easy_setopt(h, CURLOPT_URL, url);
		curl_easy_setopt(h, CURLOPT_CAINFO, ca);
		curl_easy_setopt(h, CURLOPT_WRITEDATA, stderr);
		(void)curl_easy_perform(h);
		curl_easy_cleanup(h);
	}
	kill(pid, SIGTERM);
	waitpid(pid, &st, 0);
	kmsenv_stop(&E, 0);
	kmsenv_cleanup(&E);
	curl_global_cleanup();

	printf("SEI key sync (%.1f s per cell; HTTPS keep-alive; tsmd %d workers; "
	    "one run)\n", secs, workers);
	printf("%-46s %10s\n", "measure", "per s");
	printf("%-46s %10.0f\n", "kmsd keyset.import, 4 pipelining conns", kmsr);
	printf("%-46s %10.0f\n", "kmsd import + 3 HMAC (a key sync's kmsd work)",
	    mixr);
	printf("%-46s %10.0f\n", "key sync end to end, durable (clients below)",
	    ksr);
	printf("%-46s %10.0f\n", "GET /healthz, 4 clients", hzr);
	printf("  key-sync clients %d, failed or refused: %ld; healthz failed: %ld\n",
	    clients, kfail, hfail);
	printf("  key sync / kmsd import: %.3f (goal >= 0.5); key syncs/s goal "
	    ">= 1000\n", ksr / kmsr);
	printf("  key sync / kmsd's own key-sync work: %.3f\n", ksr / mixr);
	printf("RESULT keysync_per_s=%.0f kmsd_import_per_s=%.0f ratio=%.3f "
	    "healthz_per_s=%.0f kmsd_keysync_work_per_s=%.0f\n", ksr, kmsr,
	    ksr / kmsr, hzr, mixr);
	return kfail > 0 ? 1 : 0;
}
