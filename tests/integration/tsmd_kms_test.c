/*
 * tsmd_kms_test.c - tsmd with a real kmsd on a fresh SoftHSM2 token (the
 * kmsenv fixture): /healthz follows kmsd (up, stopped, restarted), the
 * X-TSM-Signature of an SEI-TSM peer is verified in kmsd and the answer is
 * signed (checked here with OpenSSL and the fixture's known test MAC key),
 * replays, stale timestamps and bad MACs are refused, kmsd latencies show
 * in /metrics; a health thread that failed to start is started again.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "kms/base.h"
#include "tests/kmsenv.h"
#include "tests/tap.h"
#include "tests/testenv.h"

static struct kmsenv E;
static char var[400], cfgf[400], logpath[400], addr[64];
static pid_t tsmd_pid;

static const char *peer_path = "/api/v1/sei/ping";

struct resp {
	long       code;
	struct buf body;
	char       hdrs[4096];
	size_t     hlen;
	json_t    *json;
};

static size_t
on_body(char *p, size_t sz, size_t n, void *u)
{
	struct resp *r = u;

	return buf_put(&r->body, p, sz * n) == 0 ? sz * n : 0;
}

static size_t
on_hdr(char *p, size_t sz, size_t n, void *u)
{
	struct resp *r = u;
	size_t l = sz * n;

	if (r->hlen + l < sizeof(r->hdrs)) {
		memcpy(r->hdrs + r->hlen, p, l);
		r->hlen += l;
		r->hdrs[r->hlen] = '\0';
	}
	return l;
}

static void
resp_free(struct resp *r)
{
	buf_free(&r->body);
	json_decref(r->json);
	memset(r, 0, sizeof(*r));
}

/* method NULL: GET. sig: X-TSM-Signature value or NULL. */
static void
request(const char *method, const char *path, const char *body,
    const char *sig, struct resp *r)
{
	CURL *h = curl_easy_init();
	struct curl_slist *hl = NULL;
	char url[200], ca[500], line[400];

	memset(r, 0, sizeof(*r));
	buf_init(&r->body);
	snprintf(url, sizeof(url), "https://%s%s", addr, path);
	snprintf(ca, sizeof(ca), "%s/ca.pem", var);
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_CAINFO, ca);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, r);
	curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_hdr);
	curl_easy_setopt(h, CURLOPT_HEADERDATA, r);
	curl_easy_setopt(h, CURLOPT_TIMEOUT, 20L);
	if (sig) {
		snprintf(line, sizeof(line), "X-TSM-Signature: %s", sig);
		hl = curl_slist_append(hl, line);
	}
	hl = curl_slist_append(hl, "Content-Type: application/json");
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, hl);
	if (method != NULL) {
		curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
		curl_easy_setopt(h, CURLOPT_POSTFIELDS, body ? body : "");
	}
	if (curl_easy_perform(h) == CURLE_OK)
		curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &r->code);
	curl_slist_free_all(hl);
	curl_easy_cleanup(h);
	if (r->body.len)
		r->json = json_loadb((const char *)r->body.p, r->body.len, 0, NULL);
}

/* HMAC-SHA256(test MAC key, METHOD\nPATH\nts\nnonce\nhex(SHA-256(body))),
 * computed independently of tsm/http/sig.c. */
static void
peer_mac(const char *method, const char *path, long long ts, const char *nonce,
    const void *body, size_t n, char hex[65])
{
	uint8_t md[32], mac[32];
	unsigned int ml;
	char bh[65], msg[600];
	int len;

	EVP_Digest(body, n, md, &ml, EVP_sha256(), NULL);
	hex_encode(md, 32, bh);
	len = snprintf(msg, sizeof(msg), "%s\n%s\n%lld\n%s\n%s", method, path, ts,
	    nonce, bh);
	HMAC(EVP_sha256(), kmsenv_mac, 32, (const uint8_t *)msg, (size_t)len, mac,
	    &ml);
	hex_encode(mac, 32, hex);
}

static void
sign(const char *key_id, long long ts, const char *nonce, const char *body,
    char *out, size_t cap)
{
	char hex[65];

	peer_mac("POST", peer_path, ts, nonce, body, strlen(body), hex);
	snprintf(out, cap, "keyId=%s,ts=%lld,nonce=%s,sig=%s", key_id, ts, nonce,
	    hex);
}

static int
healthz(void)
{
	struct resp r;
	long c;

	request(NULL, "/healthz", NULL, NULL, &r);
	c = r.code;
	resp_free(&r);
	return (int)c;
}

/* /healthz every 200 ms until it answers want or 5 s pass; the last
 * status. */
static long
healthz_until(long want)
{
	uint64_t until = now_ms() + 5000;
	long code;

	while ((code = healthz()) != want && now_ms() < until)
		usleep(200000);
	return code;
}

/*
 * kmsd hangs (SIGSTOP: it accepts, and nothing answers): /healthz keeps
 * answering at once, turns 503 "unresponsive" once the probe has waited
 * over 3 s (not after the 30 s call timeout), and 200 again when kmsd
 * goes on.
 */
static void
test_hung_kmsd(void)
{
	uint64_t t0, worst = 0, until;
	const char *kms;
	struct resp r;
	long code = 0;
	int n = 0, unresp = 0;

	if (kill(E.pid, SIGSTOP) != 0) {
		ok(0, "SIGSTOP kmsd");
		return;
	}
	until = now_ms() + 8000;
	while (now_ms() < until) {
		t0 = now_ms();
		request(NULL, "/healthz", NULL, NULL, &r);
		if (now_ms() - t0 > worst)
			worst = now_ms() - t0;
		code = r.code;
		kms = r.json != NULL ? json_string_value(json_object_get(r.json,
		    "kms")) : NULL;
		unresp = kms != NULL && strcmp(kms, "unresponsive") == 0;
		resp_free(&r);
		n++;
		if (code == 503 && unresp)
			break;
		usleep(200000);
	}
	ok(code == 503 && unresp, "kmsd hung: /healthz 503 "
	    "\"unresponsive\" within 8 s (%d requests)", n);
	ok(worst < 1000, "and every /healthz answered at once (slowest %llu ms)",
	    (unsigned long long)worst);
	kill(E.pid, SIGCONT);
	code = healthz_until(200);
	is_int(code, 200, "kmsd goes on: /healthz 200 again");
}

static pid_t
start_tsmd(void)
{
	const char *argv[] = { testenv_bin("tsmd"), "--var", var, "--config", cfgf,
		"--listen", "127.0.0.1:0", "--kms-socket", E.sock, NULL };
	char ap[500];
	struct buf b;
	pid_t pid;
	int i, fd;

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
		if (file_read_all(ap, 100, &b) == 0 && b.len > 1) {
			memcpy(addr, b.p, b.len - 1);
			addr[b.len - 1] = '\0';
			buf_free(&b);
			return pid;
		}
		usleep(10000);
	}
	bail("tsmd did not start (%s)", logpath);
}

/* The answer's X-TSM-Signature must verify under the peer key, over the
 * request's METHOD and PATH and the answer body. */
static int
answer_signed(const struct resp *r)
{
	const char *h = strstr(r->hdrs, "X-TSM-Signature: ");
	char kid[80], nonce[40], sig[80], want[65];
	long long ts;

	if (h == NULL || sscanf(h + 17, "keyId=%79[^,],ts=%lld,nonce=%39[^,],"
	    "sig=%79[0-9a-f]", kid, &ts, nonce, sig) != 4)
		return 0;
	peer_mac("POST", peer_path, ts, nonce, r->body.p, r->body.len, want);
	return strcmp(kid, "test-mac") == 0 && strcmp(sig, want) == 0 &&
	    llabs(ts - (long long)wall_seconds()) < 5;
}

static void
test_signed(void)
{
	const char *body = "{\"seiTsmId\":\"SEI-TEST\"}";
	char hdr[300], hdr2[300];
	long long now = (long long)wall_seconds();
	struct resp r;

	sign("test-mac", now, "00000000000000000000000000000001", body, hdr,
	    sizeof(hdr));
	request("POST", peer_path, body, hdr, &r);
	is_int(r.code, 200, "signed request from the configured peer: 200");
	ok(r.json && json_integer_value(json_object_get(r.json, "resultCode")) == 0 &&
	    strcmp(json_string_value(json_object_get(r.json, "seiTsmId")),
	    "SEI-TEST") == 0, "handler sees the peer");
	if (!ok(answer_signed(&r), "the answer carries a valid X-TSM-Signature"))
		diag("headers: %s", r.hdrs);
	resp_free(&r);

	request("POST", peer_path, body, hdr, &r);
	ok(r.code == 401 && strcmp(json_string_value(json_object_get(r.json,
	    "error")), "replay") == 0, "the same nonce again: 401 replay");
	ok(json_integer_value(json_object_get(r.json, "resultCode")) == 9999,
	    "SEI error shape: resultCode 9999");
	resp_free(&r);

	sign("test-mac", now, "00000000000000000000000000000002", body, hdr,
	    sizeof(hdr));
	request("POST", peer_path, "{\"seiTsmId\":\"SEI-EVIL\"}", hdr, &r);
	ok(r.code == 401 && strcmp(json_string_value(json_object_get(r.json,
	    "error")), "signature_invalid") == 0, "body changed: 401");
	resp_free(&r);
	request("POST", peer_path, body, hdr, &r);
	is_int(r.code, 200, "a refused MAC did not burn the nonce");
	resp_free(&r);

	sign("test-mac", now, "00000000000000000000000000000003", body, hdr,
	    sizeof(hdr));
	hdr[strlen(hdr) - 1] ^= 1;
	request("POST", peer_path, body, hdr, &r);
	is_int(r.code, 401, "flipped MAC bit: 401");
	resp_free(&r);

	sign("test-mac", now - 301, "00000000000000000000000000000004", body, hdr,
	    sizeof(hdr));
	request("POST", peer_path, body, hdr, &r);
	ok(r.code == 401 && strcmp(json_string_value(json_object_get(r.json,
	    "error")), "signature_expired") == 0, "ts 301 s old: 401");
	resp_free(&r);
	/* A fresh clock: `now` is seconds old by here, which would bring a
	 * 301 s lead back inside the window. */
	now = (long long)wall_seconds();
	sign("test-mac", now + 302, "00000000000000000000000000000005", body, hdr,
	    sizeof(hdr));
	is_int((request("POST", peer_path, body, hdr, &r), r.code), 401,
	    "ts 302 s ahead (window 300 s, 1 s for the clock to move): 401");
	resp_free(&r);

	sign("other-mac", now, "00000000000000000000000000000006", body, hdr2,
	    sizeof(hdr2));
	request("POST", peer_path, body, hdr2, &r);
	ok(r.code == 401 && strcmp(json_string_value(json_object_get(r.json,
	    "error")), "unknown_key_id") == 0, "unknown keyId: 401");
	resp_free(&r);
	request("POST", peer_path, body, "keyId=test-mac,ts=1", &r);
	is_int(r.code, 401, "malformed header: 401");
	resp_free(&r);
}

static double
metric(const char *series)
{
	struct resp r;
	const char *p;
	double v = -1;

	request(NULL, "/metrics", NULL, NULL, &r);
	if (buf_put_u8(&r.body, 0) != 0)
		bail("nomem");
	p = strstr((const char *)r.body.p, series);
	if (p != NULL && p[strlen(series)] == ' ')
		v = strtod(p + strlen(series) + 1, NULL);
	resp_free(&r);
	return v;
}

/*
 * The health thread does not start (TSMD_TEST_NO_HEALTH_THREAD stands for
 * a failed pthread_create at start): /healthz says 503 and nothing waits
 * on kmsd for it; the start is tried again within a second, and /healthz
 * then follows kmsd. Before, kmsd was probed once at start and a stopped
 * kmsd stayed "ok"; then the callers probed, on MHD's thread.
 */
static void
test_threadless_health(void)
{
	struct buf lg;
	long code;
	int st;

	setenv("TSMD_TEST_NO_HEALTH_THREAD", "1", 1);
	tsmd_pid = start_tsmd();
	unsetenv("TSMD_TEST_NO_HEALTH_THREAD");
	is_int(healthz(), 503, "health thread not started: /healthz 503");
	code = healthz_until(200);
	is_int(code, 200, "started again within a second: 200 with kmsd up");
	buf_init(&lg);
	ok(file_read_all(logpath, 1u << 24, &lg) == 0 && buf_put(&lg, "", 1) == 0 &&
	    strstr((char *)lg.p, "event=kms_health_thread_failed") != NULL &&
	    strstr((char *)lg.p, "event=kms_health_thread_started") != NULL,
	    "both logged");
	buf_free(&lg);
	kmsenv_stop(&E, 0);
	code = healthz_until(503);
	is_int(code, 503, "kmsd stopped: /healthz 503");
	if (kmsenv_start(&E, NULL) != 0)
		bail("kmsd restart");
	code = healthz_until(200);
	is_int(code, 200, "kmsd back: 200");
	kill(tsmd_pid, SIGTERM);
	waitpid(tsmd_pid, &st, 0);
	ok(WIFEXITED(st) && WEXITSTATUS(st) == 0, "and tsmd exits 0");
}

int
main(void)
{
	char doc[1200];
	struct resp r;
	int st;

	curl_global_init(CURL_GLOBAL_DEFAULT);
	if (kmsenv_setup(&E, 0) != 0)
		bail("kmsenv_setup");
	if (kmsenv_start(&E, NULL) != 0)
		bail("kmsd did not start (%s)", E.log);
	snprintf(var, sizeof(var), "%s/tsmvar", E.dir);
	snprintf(cfgf, sizeof(cfgf), "%s/tsmd.json", E.dir);
	snprintf(logpath, sizeof(logpath), "%s/tsmd.log", E.dir);
	snprintf(doc, sizeof(doc), "{\"peers\": [{\"seiTsmId\": \"SEI-TEST\","
	    " \"tenantId\": \"SP-1\", \"baseUrl\": \"http://127.0.0.1:9\","
	    " \"wrap\": \"AES-KW\", \"kcvMethod\": \"GP\","
	    " \"transportKek\": \"peer/test/kek\", \"macKeyId\": \"test-mac\","
	    " \"macKey\": \"peer/test/mac\", \"clientCertRequired\": false}]}");
	if (file_write_atomic(cfgf, doc, strlen(doc), 0600) != 0)
		bail("config");
	tsmd_pid = start_tsmd();

	request(NULL, "/healthz", NULL, NULL, &r);
	is_int(r.code, 200, "/healthz with kmsd up: 200");
	ok(r.json && strcmp(json_string_value(json_object_get(r.json, "status")),
	    "ok") == 0 && strcmp(json_string_value(json_object_get(r.json, "kms")),
	    "ok") == 0, "status ok, kms ok");
	resp_free(&r);

	test_signed();
	ok(metric("tsmd_kms_call_duration_seconds_count{op=\"hmac.verify\"}") >= 3,
	    "kmsd hmac.verify latencies in /metrics");
	ok(metric("tsmd_kms_call_duration_seconds_count{op=\"hmac\"}") >= 2,
	    "kmsd hmac (answer signing) latencies in /metrics");
	ok(metric("tsmd_kms_up") == 1, "tsmd_kms_up 1");

	test_hung_kmsd();
	kmsenv_stop(&E, 0);
	sleep(2);	/* past the health cache */
	is_int(healthz(), 503, "kmsd stopped: /healthz 503");
	if (kmsenv_start(&E, NULL) != 0)
		bail("kmsd restart");
	sleep(2);
	is_int(healthz(), 200, "kmsd back: /healthz 200 again (reconnected)");

	kill(tsmd_pid, SIGTERM);
	waitpid(tsmd_pid, &st, 0);
	ok(WIFEXITED(st) && WEXITSTATUS(st) == 0, "SIGTERM: tsmd exits 0");

	/* tsmd started while kmsd hangs: up within the 3 s health wait (not
	 * the 30 s call timeout), /healthz 503 "unresponsive", then 200 */
	if (kill(E.pid, SIGSTOP) == 0) {
		uint64_t t0 = now_ms();
		long code;

		tsmd_pid = start_tsmd();
		ok(now_ms() - t0 < 8000, "tsmd starts beside a hung kmsd (%llu ms)",
		    (unsigned long long)(now_ms() - t0));
		is_int(healthz(), 503, "its /healthz: 503");
		kill(E.pid, SIGCONT);
		code = healthz_until(200);
		is_int(code, 200, "kmsd goes on: 200");
		kill(tsmd_pid, SIGTERM);
		waitpid(tsmd_pid, &st, 0);
		ok(WIFEXITED(st) && WEXITSTATUS(st) == 0, "and tsmd exits 0");
	} else
		ok(0, "SIGSTOP kmsd");
	test_threadless_health();
	kmsenv_stop(&E, 0);
	if (tap_failed == 0)
		kmsenv_cleanup(&E);
	else
		diag("kept %s", E.dir);
	curl_global_cleanup();
	return done_testing();
}
