/*
 * metrics.c - tsmd's Prometheus metrics: requests by route and status
 * class, latency histograms per route and per kmsd operation, requests in
 * flight. Counters are relaxed atomics (no lock on the request path); the
 * tables are sized once at start. Runs in tsmd on every worker thread.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tsm/http/http_int.h"

/* Fixed bucket bounds in microseconds (rendered in seconds). */
static const uint64_t bucket_us[] = { 500, 1000, 2500, 5000, 10000, 25000,
	50000, 100000, 250000, 500000, 1000000, 2500000, 5000000, 10000000 };
#define NBUCKETS ARRAY_LEN(bucket_us)

struct hist {
	uint64_t b[NBUCKETS + 1];	/* per bucket, last = above all */
	uint64_t sum_us;
	uint64_t count;
};

struct route_m {
	char        method[8];
	char        route[96];
	uint64_t    cls[6];		/* index status/100, 0 unused */
	struct hist h;
};

/* Every kmsd operation tsmd may call. */
static const int kms_ops[] = { KMS_OP_HELLO, KMS_OP_PING, KMS_OP_RANDOM,
	KMS_OP_KEY_INFO, KMS_OP_KCV, KMS_OP_KEYSET_GENERATE,
	KMS_OP_KEYSET_IMPORT, KMS_OP_KEYSET_RECEIVE, KMS_OP_KEYSET_OPEN,
	KMS_OP_HANDLE_CLOSE, KMS_OP_SCP03_DERIVE, KMS_OP_SCP03_KDF,
	KMS_OP_SCP03_OPEN, KMS_OP_CMAC, KMS_OP_ENCRYPT,
	KMS_OP_DECRYPT, KMS_OP_WRAP, KMS_OP_DIVERSIFY, KMS_OP_SIGN, KMS_OP_HMAC,
	KMS_OP_HMAC_VERIFY, KMS_OP_STATUS };
#define NKMS ARRAY_LEN(kms_ops)

struct kms_m {
	uint64_t    errors;
	struct hist h;
};

static struct route_m *routes;	/* nroutes + 1: the last one is unmatched */
static size_t nroutes;
static struct kms_m kms_m[NKMS];
static long inflight;
static int64_t started;

#define ADD(p, v) __atomic_fetch_add((p), (v), __ATOMIC_RELAXED)
#define GET(p) __atomic_load_n((p), __ATOMIC_RELAXED)

int
http_metrics_init(const struct http_router *r)
{
	size_t i;

	free(routes);
	nroutes = r->n;
	routes = calloc(nroutes + 1, sizeof(*routes));
	if (routes == NULL)
		return ERR_NOMEM;
	for (i = 0; i < nroutes; i++) {
		snprintf(routes[i].method, sizeof(routes[i].method), "%s",
		    r->r[i].method);
		snprintf(routes[i].route, sizeof(routes[i].route), "%s",
		    r->r[i].pattern);
	}
	snprintf(routes[nroutes].method, sizeof(routes[nroutes].method), "-");
	snprintf(routes[nroutes].route, sizeof(routes[nroutes].route),
	    "(unmatched)");
	started = wall_seconds();
	return 0;
}

void
http_metrics_cleanup(void)
{
	free(routes);
	routes = NULL;
	nroutes = 0;
}

static void
hist_add(struct hist *h, uint64_t usec)
{
	size_t i;

	for (i = 0; i < NBUCKETS && usec > bucket_us[i]; i++)
		;
	ADD(&h->b[i], 1);
	ADD(&h->sum_us, usec);
	ADD(&h->count, 1);
}

void
http_metrics_request(size_t route, int status, uint64_t usec)
{
	struct route_m *m;
	int c = status / 100;

	if (routes == NULL)
		return;
	m = &routes[route < nroutes ? route : nroutes];
	ADD(&m->cls[c >= 1 && c <= 5 ? c : 5], 1);
	hist_add(&m->h, usec);
}

void
http_metrics_inflight(int delta)
{
	ADD(&inflight, delta);
}

long
http_metrics_inflight_now(void)
{
	return GET(&inflight);
}

void
tsm_kms_observe(int op, double seconds, int rc)
{
	size_t i;

	for (i = 0; i < NKMS; i++)
		if (kms_ops[i] == op)
			break;
	if (i == NKMS)
		return;
	if (rc != 0)
		ADD(&kms_m[i].errors, 1);
	hist_add(&kms_m[i].h, seconds <= 0 ? 0 : (uint64_t)(seconds * 1e6));
}

/* ---- exposition ---- */

static int __attribute__((format(printf, 2, 3)))
out_printf(struct buf *b, const char *fmt, ...)
{
	char line[512];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(line))
		return ERR_INTERNAL;
	return buf_put(b, line, (size_t)n);
}

/* One histogram's lines; labels is `k="v",...` without braces. */
static int
hist_render(struct buf *b, const char *name, const char *labels,
    const struct hist *h)
{
	uint64_t cum = 0, count = GET(&h->count);
	size_t i;
	int rc;

	for (i = 0; i < NBUCKETS; i++) {
		cum += GET(&h->b[i]);
		if ((rc = out_printf(b, "%s_bucket{%s,le=\"%g\"} %llu\n", name,
		    labels, (double)bucket_us[i] / 1e6,
		    (unsigned long long)cum)) != 0)
			return rc;
	}
	cum += GET(&h->b[NBUCKETS]);
	/* Buckets and count are read at slightly different times; +Inf and
	 * _count agree by taking the larger. */
	if (cum > count)
		count = cum;
	if ((rc = out_printf(b, "%s_bucket{%s,le=\"+Inf\"} %llu\n", name, labels,
	    (unsigned long long)count)) != 0 ||
	    (rc = out_printf(b, "%s_sum{%s} %.6f\n", name, labels,
	    (double)GET(&h->sum_us) / 1e6)) != 0 ||
	    (rc = out_printf(b, "%s_count{%s} %llu\n", name, labels,
	    (unsigned long long)count)) != 0)
		return rc;
	return 0;
}

int
http_metrics_render(struct buf *b)
{
	char labels[160];
	size_t i;
	int c, rc, health;

	if (routes == NULL)
		return ERR_WRONGSTATE;
	if ((rc = out_printf(b, "# HELP tsmd_http_requests_total HTTP requests "
	    "by route and status class.\n# TYPE tsmd_http_requests_total "
	    "counter\n")) != 0)
		return rc;
	for (i = 0; i <= nroutes; i++)
		for (c = 1; c <= 5; c++) {
			uint64_t v = GET(&routes[i].cls[c]);

			if (v == 0)
				continue;
			if ((rc = out_printf(b, "tsmd_http_requests_total{method="
			    "\"%s\",route=\"%s\",class=\"%dxx\"} %llu\n",
			    routes[i].method, routes[i].route, c,
			    (unsigned long long)v)) != 0)
				return rc;
		}
	if ((rc = out_printf(b, "# HELP tsmd_http_request_duration_seconds Time "
	    "from the first byte of a request to its answer.\n# TYPE "
	    "tsmd_http_request_duration_seconds histogram\n")) != 0)
		return rc;
	for (i = 0; i <= nroutes; i++) {
		if (GET(&routes[i].h.count) == 0)
			continue;
		snprintf(labels, sizeof(labels), "method=\"%s\",route=\"%s\"",
		    routes[i].method, routes[i].route);
		if ((rc = hist_render(b, "tsmd_http_request_duration_seconds",
		    labels, &routes[i].h)) != 0)
			return rc;
	}
	if ((rc = out_printf(b, "# HELP tsmd_http_requests_in_flight Requests "
	    "being handled.\n# TYPE tsmd_http_requests_in_flight gauge\n"
	    "tsmd_http_requests_in_flight %ld\n", GET(&inflight))) != 0)
		return rc;
	if ((rc = out_printf(b, "# HELP tsmd_kms_call_duration_seconds kmsd "
	    "calls by operation.\n# TYPE tsmd_kms_call_duration_seconds "
	    "histogram\n")) != 0)
		return rc;
	for (i = 0; i < NKMS; i++) {
		if (GET(&kms_m[i].h.count) == 0)
			continue;
		snprintf(labels, sizeof(labels), "op=\"%s\"",
		    kms_op_name(kms_ops[i]));
		if ((rc = hist_render(b, "tsmd_kms_call_duration_seconds", labels,
		    &kms_m[i].h)) != 0)
			return rc;
	}
	if ((rc = out_printf(b, "# HELP tsmd_kms_call_errors_total kmsd calls "
	    "that failed, by operation.\n# TYPE tsmd_kms_call_errors_total "
	    "counter\n")) != 0)
		return rc;
	for (i = 0; i < NKMS; i++) {
		if (GET(&kms_m[i].h.count) == 0)
			continue;
		if ((rc = out_printf(b, "tsmd_kms_call_errors_total{op=\"%s\"} "
		    "%llu\n", kms_op_name(kms_ops[i]),
		    (unsigned long long)GET(&kms_m[i].errors))) != 0)
			return rc;
	}
	health = tsm_kms_health();
	if ((rc = out_printf(b, "# HELP tsmd_kms_up 1 when kmsd answers and is "
	    "unsealed.\n# TYPE tsmd_kms_up gauge\ntsmd_kms_up %d\n"
	    "# HELP tsmd_start_time_seconds Start time of tsmd (unix).\n"
	    "# TYPE tsmd_start_time_seconds gauge\ntsmd_start_time_seconds "
	    "%lld\n", health == 0, (long long)started)) != 0)
		return rc;
	return 0;
}
