/*
 * http_pool_test.c - tsm/http's handler pool against a real MHD server and
 * real HTTP over loopback: a handler that waits (as one waiting on a
 * durable commit or an SEI-TSM does) holds a worker, never the MHD thread
 * that serves other keep-alive connections; a request that is still being
 * handled when the server stops is answered before it goes.
 */
#include <pthread.h>
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

struct late {
	long   st;
	double ms;
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
	l->st = get(h, "/slow", &l->ms);
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
	struct late l = { -1, 0 };
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
	    http_route_add(r, "GET", "/fast", HTTP_AUTH_NONE, h_fast, NULL) != 0)
		bail("router");
	is_int(http_server_start(&srv, cfg, r, NULL), 0,
	    "server on 127.0.0.1, 2 workers, plain HTTP (test only)");
	if (srv == NULL)
		bail("no server");
	snprintf(base, sizeof(base), "http://127.0.0.1:%u",
	    http_server_port(srv));

	test_no_head_of_line();

	/* Stopping while a request waits in its handler: it is answered. */
	pthread_create(&lt, NULL, late_client, &l);
	usleep(300 * 1000);
	t0 = now_ms();
	http_server_stop(srv, 5000);
	pthread_join(lt, NULL);
	ok(l.st == 200, "a request in its handler when the server stops is "
	    "answered (%ld after %.0f ms)", l.st, l.ms);
	ok(now_ms() - t0 < 4000, "and the stop waited for it, not for the "
	    "drain timeout (%llu ms)", (unsigned long long)(now_ms() - t0));

	http_router_free(r);
	tsm_config_unref(cfg);
	curl_global_cleanup();
	return done_testing();
}
