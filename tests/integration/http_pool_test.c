/*
 * http_pool_test.c - tsm/http's handler pool against a real MHD server and
 * real HTTP over loopback: a handler that waits (as one waiting on a
 * durable commit or an SEI-TSM does) holds a worker, never the MHD thread
 * that serves other keep-alive connections; a request that is still being
 * handled when the server stops is answered before it goes. Handed-off
 * requests (HTTP_DEFERRED) free their worker and are finished from another
 * thread: answered, refused, or continued on a worker, also across a stop.
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <curl/curl.h>

#include "kms/kms.h"
#include "tsm/config.h"
#include "tsm/http/http.h"
#include "tests/tap.h"

#define NCONN   6
#define SLOW_MS 1500

static char base[64];
static pthread_barrier_t opened, go;

static int
h_slow(struct http_req *rq, struct http_resp *rs, void *arg)
{
	(void)rq;
	(void)arg;
	usleep(SLOW_MS * 1000);
	return http_resp_body(rs, 200, "text/plain", "slow\n", 5);
}

static int
h_fast(struct http_req *rq, struct http_resp *rs, void *arg)
{
	(void)rq;
	(void)arg;
	return http_resp_body(rs, 200, "text/plain", "fast\n", 5);
}

/* ---- handing off: a thread of the test's finishes the request ---- */

#define HANDOFF_MS 600
#define NHANDOFF   6	/* three times the workers */

enum { FIN_DONE, FIN_ERROR, FIN_CONTINUE };

struct fin {
	struct http_req *rq;
	int              how;
};

static int
h_cont(struct http_req *rq, struct http_resp *rs, void *arg)
{
	(void)arg;
	/* on a worker again: it could hand off once more */
	if (!http_req_can_defer(rq))
		return ERR_INTERNAL;
	return http_resp_body(rs, 200, "text/plain", "continued\n", 10);
}

static void *
finisher(void *arg)
{
	struct fin f = *(struct fin *)arg;

	free(arg);
	usleep(HANDOFF_MS * 1000);
	if (f.how == FIN_DONE)
		http_req_done(f.rq, http_resp_body(http_req_resp(f.rq), 200,
		    "text/plain", "handed off\n", 11));
	else if (f.how == FIN_ERROR)
		http_req_done(f.rq, ERR_NOTFOUND);
	else
		http_req_continue(f.rq, h_cont, NULL);
	return NULL;
}

static int
h_handoff(struct http_req *rq, struct http_resp *rs, void *arg)
{
	struct fin *f;
	pthread_t t;

	if (!http_req_can_defer(rq))
		return http_resp_body(rs, 500, "text/plain", "inline\n", 7);
	if ((f = malloc(sizeof(*f))) == NULL)
		return ERR_NOMEM;
	f->rq = rq;
	f->how = (int)(intptr_t)arg;
	if (pthread_create(&t, NULL, finisher, f) != 0) {
		free(f);
		return ERR_NOMEM;
	}
	pthread_detach(t);
	return HTTP_DEFERRED;
}

static size_t
sink(char *p, size_t sz, size_t n, void *u)
{
	(void)p;
	(void)u;
	return sz * n;
}

/* One GET on h; the status, or -1; *ms the time it took. */
static long
get(CURL *h, const char *path, double *ms)
{
	char url[128];
	long st = -1;
	double t = 0;

	snprintf(url, sizeof(url), "%s%s", base, path);
	curl_easy_setopt(h, CURLOPT_URL, url);
	if (curl_easy_perform(h) != CURLE_OK)
		return -1;
	curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &st);
	curl_easy_getinfo(h, CURLINFO_TOTAL_TIME, &t);
	if (ms != NULL)
		*ms = t * 1000.0;
	return st;
}

struct client {
	int    i;
	long   st;		/* of the second request */
	double ms;
	long   reconnects;	/* new connections for the second request */
};

static void *
client(void *arg)
{
	struct client *c = arg;
	CURL *h = curl_easy_init();

	if (h == NULL)
		return NULL;
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, sink);
	curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 10000L);
	/* Every connection opens at once: MHD takes a burst of new
	 * connections on one of its threads. */
	pthread_barrier_wait(&opened);
	(void)get(h, "/fast", NULL);
	pthread_barrier_wait(&go);
	if (c->i == 0)
		c->st = get(h, "/slow", &c->ms);
	else {
		usleep(200 * 1000);	/* the slow one is being handled */
		c->st = get(h, "/fast", &c->ms);
	}
	curl_easy_getinfo(h, CURLINFO_NUM_CONNECTS, &c->reconnects);
	curl_easy_cleanup(h);
	return NULL;
}

static void
test_no_head_of_line(void)
{
	pthread_t t[NCONN];
	struct client c[NCONN];
	double worst = 0;
	int i, all200 = 1;
	long reconn = 0;

	pthread_barrier_init(&opened, NULL, NCONN);
	pthread_barrier_init(&go, NULL, NCONN);
	for (i = 0; i < NCONN; i++) {
		memset(&c[i], 0, sizeof(c[i]));
		c[i].i = i;
		pthread_create(&t[i], NULL, client, &c[i]);
	}
	for (i = 0; i < NCONN; i++)
		pthread_join(t[i], NULL);
	for (i = 1; i < NCONN; i++) {
		all200 &= c[i].st == 200;
		reconn += c[i].reconnects;
		if (c[i].ms > worst)
			worst = c[i].ms;
	}
	ok(c[0].st == 200 && c[0].ms >= SLOW_MS - 50,
	    "the slow request is answered (%.0f ms)", c[0].ms);
	ok(all200 && reconn == 0, "%d other keep-alive connections answered, "
	    "on their own connections", NCONN - 1);
	ok(worst < SLOW_MS / 2, "none of them waited for the slow handler "
	    "(slowest %.0f ms)", worst);
	pthread_barrier_destroy(&opened);
	pthread_barrier_destroy(&go);
}

struct hclient {
	pthread_t t;
	const char *path;
	long      st;
	double    ms;
	struct buf body;
};

static size_t
keep(char *p, size_t sz, size_t n, void *u)
{
	return buf_put(u, p, sz * n) == 0 ? sz * n : 0;
}

static void *
hclient_run(void *arg)
{
	struct hclient *c = arg;
	CURL *h = curl_easy_init();

	c->st = -1;
	if (h == NULL)
		return NULL;
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, keep);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, &c->body);
	curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 10000L);
	c->st = get(h, c->path, &c->ms);
	curl_easy_cleanup(h);
	return NULL;
}

static int
body_is(const struct hclient *c, const char *want)
{
	return c->body.len == strlen(want) && memcmp(c->body.p, want,
	    c->body.len) == 0;
}

static void
test_handoff(void)
{
	struct hclient c[NHANDOFF], e = { .path = "/handoff/error" },
	    k = { .path = "/handoff/continue" };
	uint64_t t0 = now_ms(), took;
	int i, all = 1;

	for (i = 0; i < NHANDOFF; i++) {
		memset(&c[i], 0, sizeof(c[i]));
		c[i].path = "/handoff";
		buf_init(&c[i].body);
		pthread_create(&c[i].t, NULL, hclient_run, &c[i]);
	}
	for (i = 0; i < NHANDOFF; i++) {
		pthread_join(c[i].t, NULL);
		all &= c[i].st == 200 && body_is(&c[i], "handed off\n");
		buf_free(&c[i].body);
	}
	took = now_ms() - t0;
	ok(all, "%d handed-off requests on 2 workers: all answered from the "
	    "finishing thread", NHANDOFF);
	ok(took < 2 * HANDOFF_MS, "... together in %llu ms: a handed-off request "
	    "holds no worker (one at a time per worker: %d ms)",
	    (unsigned long long)took, NHANDOFF / 2 * HANDOFF_MS);

	buf_init(&e.body);
	buf_init(&k.body);
	pthread_create(&e.t, NULL, hclient_run, &e);
	pthread_create(&k.t, NULL, hclient_run, &k);
	pthread_join(e.t, NULL);
	pthread_join(k.t, NULL);
	ok(e.st == 404 && e.body.len > 0, "http_req_done with an error: the "
	    "framework's error answer (%ld)", e.st);
	ok(k.st == 200 && body_is(&k, "continued\n"), "http_req_continue: the "
	    "continuation answers from a worker (%ld)", k.st);
	buf_free(&e.body);
	buf_free(&k.body);
}

struct late {
	long   st;
	double ms;
	const char *path;
};

static void *
late_client(void *arg)
{
	struct late *l = arg;
	CURL *h = curl_easy_init();

	if (h == NULL)
		return NULL;
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, sink);
	curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 10000L);
	l->st = get(h, l->path, &l->ms);
	curl_easy_cleanup(h);
	return NULL;
}

int
main(void)
{
	static const struct tsm_config_args args = { .no_tls = 1 };
	static const char *conf = "{\"listen\": \"127.0.0.1:0\", \"limits\": "
	    "{\"workers\": 2, \"drainTimeoutMs\": 5000}}";
	struct tsm_config *cfg = NULL;
	struct http_router *r = NULL;
	struct http_server *srv = NULL;
	struct late l = { -1, 0, "/slow" }, l2 = { -1, 0, "/handoff" };
	pthread_t lt2;
	pthread_t lt;
	char err[300];
	uint64_t t0;

	log_init("http_pool_test", LOG_ERR);
	curl_global_init(CURL_GLOBAL_DEFAULT);
	if (tsm_config_parse(&cfg, conf, strlen(conf), &args, err,
	    sizeof(err)) != 0)
		bail("config: %s", err);
	if (http_router_new(&r, NULL) != 0 ||
	    http_route_add(r, "GET", "/slow", HTTP_AUTH_NONE, h_slow, NULL) != 0 ||
	    http_route_add(r, "GET", "/fast", HTTP_AUTH_NONE, h_fast, NULL) != 0 ||
	    http_route_add(r, "GET", "/handoff", HTTP_AUTH_NONE, h_handoff,
	    (void *)(intptr_t)FIN_DONE) != 0 ||
	    http_route_add(r, "GET", "/handoff/error", HTTP_AUTH_NONE, h_handoff,
	    (void *)(intptr_t)FIN_ERROR) != 0 ||
	    http_route_add(r, "GET", "/handoff/continue", HTTP_AUTH_NONE,
	    h_handoff, (void *)(intptr_t)FIN_CONTINUE) != 0)
		bail("router");
	is_int(http_server_start(&srv, cfg, r, NULL), 0,
	    "server on 127.0.0.1, 2 workers, plain HTTP (test only)");
	if (srv == NULL)
		bail("no server");
	snprintf(base, sizeof(base), "http://127.0.0.1:%u",
	    http_server_port(srv));

	test_no_head_of_line();
	test_handoff();

	/* Stopping while a request waits in its handler, and while one is
	 * handed off: both are answered. */
	pthread_create(&lt, NULL, late_client, &l);
	pthread_create(&lt2, NULL, late_client, &l2);
	usleep(300 * 1000);
	t0 = now_ms();
	http_server_stop(srv, 5000);
	pthread_join(lt, NULL);
	pthread_join(lt2, NULL);
	ok(l.st == 200, "a request in its handler when the server stops is "
	    "answered (%ld after %.0f ms)", l.st, l.ms);
	ok(l2.st == 200, "a handed-off request when the server stops is "
	    "answered (%ld after %.0f ms)", l2.st, l2.ms);
	ok(now_ms() - t0 < 4000, "and the stop waited for it, not for the "
	    "drain timeout (%llu ms)", (unsigned long long)(now_ms() - t0));

	http_router_free(r);
	tsm_config_unref(cfg);
	curl_global_cleanup();
	return done_testing();
}
