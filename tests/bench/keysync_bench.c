/*
 * keysync_bench.c - `make bench` for §9.4 key sync end to end: durable key
 * syncs per second over HTTPS (keep-alive connections driven by one client
 * thread through libcurl's multi-socket interface; every request a fresh
 * random key set for a new SE, wrapped with OpenSSL under the test
 * transport KEK and signed with the test MAC key before the clock starts)
 * against the real tsmd and kmsd, compared in the same run with
 * keyset.import per second on kmsd alone (4 pipelining connections with
 * as many requests in flight in all as there are key-sync clients: kmsd
 * at its capacity, not held to the audit syncs' latency), with
 * kmsd doing exactly a key sync's work, and with GET /healthz. Clients,
 * tsmd and kmsd share this machine's cores; the CPU each spent per key
 * sync is read from /proc. kmsd alone and the key syncs alternate in
 * rounds (the VM's speed drifts within a run); the medians are reported.
 * Prints numbers.
 * Environment: BENCH_SECONDS (3, per cell), KEYSYNC_BENCH_ROUNDS (5),
 * KEYSYNC_BENCH_CLIENTS (connections, 128),
 * KEYSYNC_BENCH_WORKERS (tsmd workers, 64), KEYSYNC_BENCH_METRICS (print
 * tsmd's /metrics to stderr at the end).
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kms/kms.h"
#include "tests/kmsenv.h"
#include "tests/integration/sei_peer.h"

static struct kmsenv E;
static struct sp_bench B;
static char addr[64], base[100];
static double secs = 3.0;
static pid_t tsmd_pid;

static void __attribute__((noreturn))
die(const char *what)
{
	fprintf(stderr, "keysync_bench: %s\n", what);
	if (tsmd_pid > 0)	/* not left running on its own */
		kill(tsmd_pid, SIGTERM);
	exit(1);
}

/* ---- kmsd alone: keyset.import on 4 pipelining connections ---- */

static int kms_depth = 32;	/* requests in flight per connection */

struct kworker {
	pthread_t t;
	long      done;
	double    el;
};

static struct buf import_req, receive_req;
static int kms_mix;	/* 1: per set, a key sync's kmsd work: keyset.receive
			 * (MAC check, import, receipt and answer MACs) */

static void *
kms_run(void *arg)
{
	struct kworker *w = arg;
	struct kms_client *c;
	uint32_t id;
	int status, inflight = 0, depth = kms_depth;
	uint64_t t0, end;
	struct rd r;

	if (kms_connect(&c, E.sock, "keysync-bench") != 0)
		die("kms_connect");
	t0 = now_us();
	end = t0 + (uint64_t)(secs * 1e6);
	for (;;) {
		int more = now_us() < end;

		while (more && inflight < depth) {
			if (kms_submit(c, kms_mix ? KMS_OP_KEYSET_RECEIVE :
			    KMS_OP_KEYSET_IMPORT, kms_mix ? &receive_req :
			    &import_req, &id) != 0)
				die("submit");
			inflight++;
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
	w->el = (double)(now_us() - t0) / 1e6;
	kms_close(c);
	return NULL;
}

static double
kms_import_rate(int mix)
{
	struct sp_keyset ks;
	struct kworker w[4];
	uint8_t b[40], k[5], mac[32];
	static const uint8_t bench_receipt[120];
	static const char bench_msg[] = "POST\n/api/v1/sei/key-sync\n"
	    "1700000000\n00112233445566778899aabbccddeeff\n"
	    "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
	static const char bench_head[] = "POST\n/api/v1/sei/key-sync\n"
	    "1700000000\nffeeddccbbaa99887766554433221100\n";
	static const char bench_pre[] = "{\"resultCode\":0,\"resultMessage\":"
	    "\"key set received\",\"receipt\":[\"0A1B2C\",\"0A1B2C\","
	    "\"0A1B2C\",\"";
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
	/* keyset.receive: a signed string as the peer's message, MACed with
	 * the test MAC key, then the import, then a receipt input, then the
	 * answer's head, prefix and suffix, as a key sync sends them */
	buf_init(&receive_req);
	if (HMAC(EVP_sha256(), kmsenv_mac, 32, (const uint8_t *)bench_msg,
	    strlen(bench_msg), mac, NULL) == NULL ||
	    kms_put_ref(&receive_req, KMS_LABEL("peer/test/mac")) != 0 ||
	    buf_put_lv32(&receive_req, bench_msg, strlen(bench_msg)) != 0 ||
	    buf_put(&receive_req, mac, 32) != 0 ||
	    buf_put(&receive_req, import_req.p, import_req.len) != 0 ||
	    buf_put_lv32(&receive_req, bench_receipt, sizeof(bench_receipt)) != 0 ||
	    buf_put_u8(&receive_req, 1) != 0 ||
	    buf_put_lv32(&receive_req, bench_head, strlen(bench_head)) != 0 ||
	    buf_put_lv32(&receive_req, bench_pre, strlen(bench_pre)) != 0 ||
	    buf_put_lv32(&receive_req, "\"]}", 3) != 0)
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
	buf_free(&receive_req);
	return rate;
}

/* ---- HTTPS clients ---- */

/*
 * The clients stand for remote SEI-TSMs, so they take as little of this
 * machine's CPU as they can: every key-sync request (a fresh random key
 * set for a new SE, wrapped and signed with OpenSSL) is made before the
 * clock starts, and one thread drives all keep-alive connections through
 * libcurl's multi interface (a thread per connection cost a context
 * switch per request on each side of the bench). The timestamps stay well
 * inside tsmd's 300 s window; the pool is refilled on the fly if a run
 * outgrows it.
 */
struct prepared {
	char               *body;
	size_t              len;
	struct curl_slist  *hl;
};

struct conn {
	CURL             *h;
	struct buf        resp;
	struct prepared   rq;
	int               busy;
};

/* CPU (ms) of kmsd, tsmd and the clients, then the times kmsd and tsmd
 * blocked (voluntary context switches), the bytes tsmd had written to
 * disk and its write(2)-family calls (on any fd; socket sends go through
 * send(2) and are not counted), at the start and end of the counted key
 * syncs. The last two drift far less with the VM's speed than CPU times
 * (only through how many key syncs share a group commit). */
enum { CPU_KMSD, CPU_TSMD, CPU_CLIENTS, SW_KMSD, SW_TSMD, WB_TSMD, WC_TSMD,
	N_SAMPLE };
static double cpu0[N_SAMPLE], cpu1[N_SAMPLE];

static void
cpu_sample(double *out)
{
	out[CPU_KMSD] = testenv_cpu_ms(E.pid);
	out[CPU_TSMD] = testenv_cpu_ms(tsmd_pid);
	out[CPU_CLIENTS] = testenv_cpu_ms(0);
	out[SW_KMSD] = testenv_switches(E.pid);
	out[SW_TSMD] = testenv_switches(tsmd_pid);
	out[WB_TSMD] = testenv_proc_io(tsmd_pid, "write_bytes");
	out[WC_TSMD] = testenv_proc_io(tsmd_pid, "syscw");
}

static struct prepared *pool;
static size_t npool, pool_next;
static unsigned long seq;
/* seIds in no order, as SEs arrive (sequential ids would make every store
 * insert an append): seq times an odd constant, unique mod 2^64 */
#define SEID_SPREAD 0x9E3779B97F4A7C15ul
static char ks_url[200], hz_url[200];

static int
prepare(struct prepared *p)
{
	struct sp_keyset ks;
	char body[1024], sig[300], line[400], nonce[33];
	int len;

	memset(p, 0, sizeof(*p));
	if (sp_keyset_new(&ks, 16, kmsenv_kek128, 16, 0) != 0)
		return -1;
	len = snprintf(body, sizeof(body), "{\"seiTsmId\":\"SEI-BENCH\","
	    "\"SsdAid\":\"A0000001515350\",\"encryptedKey\":[\"%s\",\"%s\","
	    "\"%s\"],\"Alg\":\"AES-128\",\"Usage\":\"SCP03\",\"checkValue\":"
	    "[\"%s\",\"%s\",\"%s\"],\"seId\":\"%016lX\"}", ks.wrapped[0],
	    ks.wrapped[1], ks.wrapped[2], ks.kcv[0], ks.kcv[1], ks.kcv[2],
	    seq++ * SEID_SPREAD);
	wipe(&ks, sizeof(ks));
	sp_nonce(nonce);
	sp_sign(kmsenv_mac, 32, "bench-mac", SP_KEYSYNC, (long long)wall_seconds(),
	    nonce, body, sig, sizeof(sig));
	snprintf(line, sizeof(line), "X-TSM-Signature: %s", sig);
	if ((p->body = strdup(body)) == NULL ||
	    (p->hl = curl_slist_append(NULL, line)) == NULL ||
	    curl_slist_append(p->hl, "Content-Type: application/json") == NULL ||
	    curl_slist_append(p->hl, "Expect:") == NULL)
		return -1;
	p->len = (size_t)len;
	return 0;
}

static void
prepared_free(struct prepared *p)
{
	free(p->body);
	curl_slist_free_all(p->hl);
	memset(p, 0, sizeof(*p));
}

static size_t
to_buf(char *p, size_t sz, size_t n, void *u)
{
	return buf_put(u, p, sz * n) == 0 ? sz * n : 0;
}

static void
conn_start(CURLM *m, struct conn *c, int healthz)
{
	buf_reset(&c->resp);
	if (!healthz) {
		prepared_free(&c->rq);
		if (pool_next < npool) {
			c->rq = pool[pool_next];
			memset(&pool[pool_next++], 0, sizeof(*pool));
		} else if (prepare(&c->rq) != 0)
			die("request");
		curl_easy_setopt(c->h, CURLOPT_POSTFIELDS, c->rq.body);
		curl_easy_setopt(c->h, CURLOPT_POSTFIELDSIZE, (long)c->rq.len);
		curl_easy_setopt(c->h, CURLOPT_HTTPHEADER, c->rq.hl);
	}
	if (curl_multi_add_handle(m, c->h) != CURLM_OK)
		die("curl_multi_add_handle");
	c->busy = 1;
}

/* 1 when the exchange that ended on c was acknowledged. */
static int
conn_good(struct conn *c, CURLcode cc, int healthz, long fails)
{
	long code = 0;
	int good;

	if (cc == CURLE_OK)
		curl_easy_getinfo(c->h, CURLINFO_RESPONSE_CODE, &code);
	good = code == 200 && (healthz || (c->resp.len > 16 &&
	    memcmp(c->resp.p, "{\"resultCode\":0,", 16) == 0));
	if (!good && fails < 3)
		fprintf(stderr, "keysync_bench: %s %ld %.*s\n",
		    curl_easy_strerror(cc), code, (int)c->resp.len,
		    (const char *)c->resp.p);
	return good;
}

/* libcurl's multi-socket interface on epoll: only sockets with events are
 * looked at (curl_multi_poll scanned all of them at every wake). */
static int ep = -1;
static long timeout_ms = -1;

static int
on_socket(CURL *e, curl_socket_t s, int what, void *u, void *sp)
{
	struct epoll_event ev = { 0 };

	(void)e;
	if (what == CURL_POLL_REMOVE) {
		(void)epoll_ctl(ep, EPOLL_CTL_DEL, s, NULL);
		curl_multi_assign(u, s, NULL);
		return 0;
	}
	ev.events = (what & CURL_POLL_IN ? EPOLLIN : 0) |
	    (what & CURL_POLL_OUT ? EPOLLOUT : 0);
	ev.data.fd = s;
	if (epoll_ctl(ep, sp != NULL ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, s,
	    &ev) != 0)
		die("epoll_ctl");
	curl_multi_assign(u, s, &ep);
	return 0;
}

static int
on_timer(CURLM *m, long ms, void *u)
{
	(void)m;
	(void)u;
	timeout_ms = ms;
	return 0;
}

/* Runs the connections until every one is idle; from `t0` to `end`
 * (µs) completions are counted and idle connections restarted. */
static void
drive(CURLM *m, struct conn *c, int n, int healthz, uint64_t t0, uint64_t end,
    long *done, long *fails)
{
	struct epoll_event evs[64];
	CURLMsg *msg;
	int running, left, i, k, ne, busy = n, sampled = 0;

	while (busy > 0) {
		ne = epoll_wait(ep, evs, 64, timeout_ms < 0 ? 100 :
		    (int)timeout_ms);
		if (ne < 0 && errno != EINTR)	/* EINTR: e.g. a tracer */
			die("epoll_wait");
		if (ne < 0)
			ne = 0;
		for (k = 0; k < ne; k++)
			if (curl_multi_socket_action(m, evs[k].data.fd,
			    (evs[k].events & EPOLLIN ? CURL_CSELECT_IN : 0) |
			    (evs[k].events & EPOLLOUT ? CURL_CSELECT_OUT : 0) |
			    (evs[k].events & (EPOLLERR | EPOLLHUP) ?
			    CURL_CSELECT_ERR : 0), &running) != CURLM_OK)
				die("curl_multi_socket_action");
		if ((ne == 0 || timeout_ms == 0) && curl_multi_socket_action(m,
		    CURL_SOCKET_TIMEOUT, 0, &running) != CURLM_OK)
			die("curl_multi_socket_action");
		while ((msg = curl_multi_info_read(m, &left)) != NULL) {
			uint64_t now = now_us();

			if (msg->msg != CURLMSG_DONE)
				continue;
			if (now >= end && !sampled) {
				cpu_sample(cpu1);
				sampled = 1;
			}
			for (i = 0; i < n && c[i].h != msg->easy_handle; i++)
				;
			if (i == n)
				die("unknown handle");
			curl_multi_remove_handle(m, c[i].h);
			c[i].busy = 0;
			busy--;
			if (now >= t0 && now < end) {
				if (conn_good(&c[i], msg->data.result, healthz,
				    *fails))
					(*done)++;
				else
					(*fails)++;
			} else if (!conn_good(&c[i], msg->data.result, healthz,
			    *fails))
				(*fails)++;
			if (now < end) {
				conn_start(m, &c[i], healthz);
				busy++;
			}
		}
	}
}

static double
http_rate(int clients, int healthz, long *fails)
{
	struct conn *c = calloc((size_t)clients, sizeof(*c));
	CURLM *m = curl_multi_init();
	long done = 0;
	uint64_t t0, end;
	size_t i;
	int k;

	if (c == NULL || m == NULL || (ep = epoll_create1(EPOLL_CLOEXEC)) < 0)
		die("nomem");
	timeout_ms = -1;
	curl_multi_setopt(m, CURLMOPT_SOCKETFUNCTION, on_socket);
	curl_multi_setopt(m, CURLMOPT_SOCKETDATA, m);
	curl_multi_setopt(m, CURLMOPT_TIMERFUNCTION, on_timer);
	*fails = 0;
	if (!healthz) {
		npool = (size_t)clients + (size_t)(secs * 6000);
		pool_next = 0;
		if ((pool = calloc(npool, sizeof(*pool))) == NULL)
			die("nomem");
		for (i = 0; i < npool; i++)
			if (prepare(&pool[i]) != 0)
				die("request");
	}
	snprintf(ks_url, sizeof(ks_url), "%s%s", base, SP_KEYSYNC);
	snprintf(hz_url, sizeof(hz_url), "%s/healthz", base);
	for (k = 0; k < clients; k++) {
		buf_init(&c[k].resp);
		if ((c[k].h = curl_easy_init()) == NULL)
			die("curl_easy_init");
		curl_easy_setopt(c[k].h, CURLOPT_URL, healthz ? hz_url : ks_url);
		curl_easy_setopt(c[k].h, CURLOPT_CAINFO, B.ca);
		curl_easy_setopt(c[k].h, CURLOPT_WRITEFUNCTION, to_buf);
		curl_easy_setopt(c[k].h, CURLOPT_WRITEDATA, &c[k].resp);
		curl_easy_setopt(c[k].h, CURLOPT_TCP_NODELAY, 1L);
		curl_easy_setopt(c[k].h, CURLOPT_TIMEOUT, 30L);
		/* SIGPIPE is ignored once in main(), not by libcurl around
		 * every call (two sigactions each) */
		curl_easy_setopt(c[k].h, CURLOPT_NOSIGNAL, 1L);
		if (!healthz)
			curl_easy_setopt(c[k].h, CURLOPT_POST, 1L);
	}
	/* connect and warm up: one exchange each, not counted */
	for (k = 0; k < clients; k++)
		conn_start(m, &c[k], healthz);
	t0 = now_us();
	drive(m, c, clients, healthz, t0, t0, &done, fails);
	/* measured */
	cpu_sample(cpu0);
	t0 = now_us();
	end = t0 + (uint64_t)(secs * 1e6);
	for (k = 0; k < clients; k++)
		conn_start(m, &c[k], healthz);
	drive(m, c, clients, healthz, t0, end, &done, fails);
	for (k = 0; k < clients; k++) {
		curl_easy_cleanup(c[k].h);
		prepared_free(&c[k].rq);
		buf_free(&c[k].resp);
	}
	curl_multi_cleanup(m);
	close(ep);
	ep = -1;
	for (i = 0; i < npool; i++)
		prepared_free(&pool[i]);
	free(pool);
	pool = NULL;
	npool = 0;
	free(c);
	return (double)done / ((double)(end - t0) / 1e6);
}

#define ROUNDS_MAX 9

/* The median of n values (n at most ROUNDS_MAX; sorts a copy). */
static double
median(const double *v, int n)
{
	double t[ROUNDS_MAX];

	memcpy(t, v, (size_t)n * sizeof(t[0]));
	qsort(t, (size_t)n, sizeof(t[0]), testenv_cmp_double);
	return n % 2 ? t[n / 2] : (t[n / 2 - 1] + t[n / 2]) / 2;
}

int
main(void)
{
	const char *s = getenv("BENCH_SECONDS");
	int clients = testenv_env_int("KEYSYNC_BENCH_CLIENTS", 128);
	int workers = testenv_env_int("KEYSYNC_BENCH_WORKERS", 64);
	int rounds = testenv_env_int("KEYSYNC_BENCH_ROUNDS", 5);
	double kmsr, mixr, ksr, hzr, nks, ratio, cpu[N_SAMPLE];
	double rk[ROUNDS_MAX], rs[ROUNDS_MAX], rr[ROUNDS_MAX], ru[ROUNDS_MAX];
	long kfail, hfail;
	pid_t pid;
	int st, i, r;

	if (s != NULL && atof(s) > 0)
		secs = atof(s);
	if (rounds < 1 || rounds > ROUNDS_MAX)
		die("KEYSYNC_BENCH_ROUNDS: 1 to 9");
	log_init("keysync_bench", LOG_ERR);
	signal(SIGPIPE, SIG_IGN);
	curl_global_init(CURL_GLOBAL_DEFAULT);
	if (kmsenv_setup(&E, 0) != 0 || kmsenv_start(&E, NULL) != 0)
		die("kmsd fixture");
	if (sp_bench_config(E.dir, workers, 512, &B) != 0)
		die("config");

	kms_depth = clients / 4 > 0 ? clients / 4 : 1;
	mixr = kms_import_rate(1);
	tsmd_pid = pid = sp_tsmd_start(B.var, B.cfg, E.sock, B.log, "warn",
	    addr, sizeof(addr));
	if (pid < 0)
		die("tsmd did not start");
	snprintf(base, sizeof(base), "https://%s", addr);
	/* kmsd alone and the key syncs in turns: this VM's speed drifts
	 * within a run, and a ratio of two cells measured apart would
	 * carry the drift (tsmd idles through kmsd's cells) */
	nks = 0;
	kfail = 0;
	for (i = 0; i < N_SAMPLE; i++)
		cpu[i] = 0;
	for (r = 0; r < rounds; r++) {
		long f;

		rk[r] = kms_import_rate(0);
		rs[r] = http_rate(clients, 0, &f);
		rr[r] = rk[r] > 0 ? rs[r] / rk[r] : 0;
		kfail += f;
		nks += rs[r] * secs;
		/* kmsd's CPU per key sync in this round: the VM's slow phases
		 * show here first */
		ru[r] = rs[r] > 0 && cpu0[CPU_KMSD] >= 0 && cpu1[CPU_KMSD] >= 0 ?
		    (cpu1[CPU_KMSD] - cpu0[CPU_KMSD]) * 1000.0 / (rs[r] * secs) : -1;
		for (i = 0; i < N_SAMPLE; i++)
			cpu[i] += cpu0[i] >= 0 && cpu1[i] >= 0 ? cpu1[i] - cpu0[i] :
			    0;
	}
	for (i = 0; i < N_SAMPLE; i++)
		cpu[i] = nks > 0 ? cpu[i] * (i < SW_KMSD ? 1000.0 : 1.0) / nks : -1;
	kmsr = median(rk, rounds);
	ksr = median(rs, rounds);
	ratio = median(rr, rounds);
	hzr = http_rate(4, 1, &hfail);
	if (getenv("KEYSYNC_BENCH_METRICS") != NULL) {
		/* where the time went: tsmd's own histograms */
		CURL *h = curl_easy_init();
		char url[200];

		snprintf(url, sizeof(url), "%s/metrics", base);
		curl_easy_setopt(h, CURLOPT_URL, url);
		curl_easy_setopt(h, CURLOPT_CAINFO, B.ca);
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
	    "one run: kmsd alone and key syncs in %d alternating rounds, "
	    "medians)\n", secs, workers, rounds);
	for (r = 0; r < rounds; r++)
		printf("  round %d: kmsd keyset.import %.0f/s, key syncs %.0f/s, "
		    "ratio %.3f (kmsd %.0f us per key sync)\n", r + 1, rk[r],
		    rs[r], rr[r], ru[r]);
	printf("%-46s %10s\n", "measure", "per s");
	printf("%-46s %10.0f\n", "kmsd keyset.import, 4 conns x (clients/4)",
	    kmsr);
	printf("%-46s %10.0f\n", "kmsd keyset.receive alone (a key sync's work)",
	    mixr);
	printf("%-46s %10.0f\n", "key sync end to end, durable (clients below)",
	    ksr);
	printf("%-46s %10.0f\n", "GET /healthz, 4 clients", hzr);
	printf("  key-sync clients %d, failed or refused: %ld; healthz failed: %ld\n",
	    clients, kfail, hfail);
	printf("  key sync / kmsd import: %.3f, median of the rounds' ratios "
	    "(goal >= 0.5); key syncs/s goal >= 1000\n", ratio);
	printf("  key sync / kmsd's own key-sync work: %.3f\n", ksr / mixr);
	printf("  CPU per key sync: kmsd %.0f us, tsmd %.0f us, clients %.0f us "
	    "(kmsd import alone: %.0f us of one core)\n", cpu[CPU_KMSD],
	    cpu[CPU_TSMD], cpu[CPU_CLIENTS], 1e6 / kmsr);
	printf("  threads blocking per key sync: kmsd %.2f, tsmd %.2f\n",
	    cpu[SW_KMSD], cpu[SW_TSMD]);
	printf("  tsmd per key sync: %.1f KB written to disk, %.1f write, "
	    "pwrite and writev calls (the store's, and one eventfd wake-up of "
	    "MHD's)\n", cpu[WB_TSMD] / 1024.0, cpu[WC_TSMD]);
	printf("RESULT keysync_per_s=%.0f kmsd_import_per_s=%.0f ratio=%.3f "
	    "healthz_per_s=%.0f kmsd_keysync_work_per_s=%.0f kmsd_us=%.0f "
	    "tsmd_us=%.0f clients_us=%.0f tsmd_write_kb=%.1f tsmd_syscw=%.1f\n",
	    ksr, kmsr, ratio, hzr, mixr, cpu[CPU_KMSD], cpu[CPU_TSMD],
	    cpu[CPU_CLIENTS], cpu[WB_TSMD] / 1024.0, cpu[WC_TSMD]);
	return kfail > 0 ? 1 : 0;
}
