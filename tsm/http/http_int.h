/*
 * http_int.h - internals shared by the files of tsm/http/ (and by their
 * unit tests and fuzz target): the route table and path matcher, the JSON
 * pre-checker, metrics, TLS helpers and the nonce cache. Not for handlers.
 */
#ifndef SPTSM_HTTP_INT_H
#define SPTSM_HTTP_INT_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/x509.h>

#include "tsm/http/http.h"

/* ---- router (router.c) ---- */

struct http_route {
	char            method[8];
	char           *pattern;
	size_t          nseg;
	char           *seg[HTTP_MAX_SEGS];	/* literal, or param name */
	uint8_t         param[HTTP_MAX_SEGS];	/* 1: seg[i] is a {param} */
	size_t          nparams;
	enum http_auth  auth;
	http_handler_fn fn;
	void           *arg;
	struct http_route_ext ext;	/* http_route_extend */
};

struct http_router {
	struct http_route *r;
	size_t             n, cap;
	void              *app;
};

enum { HTTP_MATCH_OK = 0, HTTP_MATCH_NOPATH = 1, HTTP_MATCH_NOMETHOD = 2 };

struct http_match {
	size_t      route;			/* index when HTTP_MATCH_OK */
	size_t      nparams;
	const char *name[HTTP_MAX_PARAMS];	/* into the route */
	const char *value[HTTP_MAX_PARAMS];	/* into buf */
	char        buf[HTTP_MAX_PATH + 1];
	char        allow[48];			/* for 405: "GET, POST" */
};

/* HTTP_MATCH_OK / _NOPATH / _NOMETHOD; path is the decoded path without
 * the query. Never fails otherwise; any input is safe. */
int http_router_match(const struct http_router *r, const char *method,
    const char *path, struct http_match *m);

/* ---- JSON pre-checker (json.c) ---- */

/*
 * Scans a body before jansson sees it: ERR_TOOBIG when n > max_len,
 * ERR_LIMIT when arrays/objects nest deeper than max_depth (<=
 * HTTP_JSON_DEPTH_MAX), ERR_PARSE on mismatched brackets, a NUL byte or
 * an unterminated string. *where gets the offending offset.
 */
int http_json_precheck(const uint8_t *p, size_t n, size_t max_len,
    unsigned max_depth, size_t *where) WUR;

/* ---- metrics (metrics.c): process-wide, lock-free counters ---- */

/* Sizes the per-route tables; called once by http_server_start. */
int  http_metrics_init(const struct http_router *r) WUR;
void http_metrics_cleanup(void);
/* route: index, or (size_t)-1 for requests that matched no route. */
void http_metrics_request(size_t route, int status, uint64_t usec);
void http_metrics_inflight(int delta);
long http_metrics_inflight_now(void);
/* Prometheus text exposition format 0.0.4. */
int  http_metrics_render(struct buf *out) WUR;

/* ---- TLS (tls.c) ---- */

struct http_tls {
	char       *cert_pem;		/* for MHD (NUL-terminated) */
	char       *key_pem;		/* wiped on free */
	char       *trust_pem;		/* client CA file, or NULL */
	X509_STORE *store;		/* client CA, or NULL */
};

int  http_tls_load(struct http_tls *t, const char *cert, const char *key,
	    const char *client_ca) WUR;
void http_tls_cleanup(struct http_tls *t);
/* Verifies a DER chain (leaf first) against the client CA store. 0 and
 * *out filled; ERR_AUTH when it does not verify; ERR_PARSE bad DER. */
int  http_tls_verify_chain(X509_STORE *store, const uint8_t *const *der,
	    const size_t *len, size_t n, struct http_client_cert *out) WUR;

/* ---- identifiers (sig.c) ---- */

/* X-TSM-Signature keyIds and API-key provider ids: 1..HTTP_IDENT_MAX of
 * [A-Za-z0-9._:-] (the identifiers of tsm/config.c). */
#define HTTP_IDENT_MAX 64
int  http_ident_ok(const char *s, size_t n);

#endif
