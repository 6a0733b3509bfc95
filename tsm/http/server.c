/*
 * server.c - tsmd's HTTPS server on libmicrohttpd: TLS setup, the request
 * life cycle (route, authenticate, bound the body, parse JSON, verify the
 * peer signature, call the handler, sign and send the answer), per-request
 * logging and metrics, reload and draining stop. Runs in tsmd on MHD's
 * worker threads; everything a client sends is checked here first.
 */
#include <netdb.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gnutls/gnutls.h>
#include <microhttpd.h>
#include <openssl/rand.h>

#include "tsm/http/http_int.h"

#define CONN_MEMORY      (64u * 1024u)	/* headers and MHD buffers */
#define DISCARD_MAX      (16u * 1024u * 1024u)
#define CERT_RECHECK_MS  300000		/* re-verify a connection's cert */
#define RESP_HEADERS_MAX 16
#define HTTP_IO_THREADS  2		/* MHD threads, at most */

struct conn_ctx {
	int                     cert_state;	/* CERT_* */
	uint64_t                checked_ms;
	struct http_client_cert cert;
};
enum { CERT_UNKNOWN = 0, CERT_OK, CERT_NONE, CERT_BAD };

/*
 * Handlers run on a pool of `limits.workers` threads, not on MHD's: a
 * request whose body is in is suspended, queued, handled by a worker and
 * resumed. A handler waiting on a durable commit, kmsd or an SEI-TSM then
 * holds a worker, never the MHD thread that also serves other keep-alive
 * connections (MHD hands a burst of new connections to one thread).
 */
struct http_pool {
	pthread_mutex_t  mu;
	pthread_cond_t   cv;
	struct http_req *head, *tail;
	int              stop;
	long             deferred;	/* handed off by handlers, not done
					 * (below 0 for a moment when one is
					 * done before its worker counted it) */
	unsigned         n;		/* threads started */
	pthread_t       *th;
};

struct http_server {
	struct MHD_Daemon  *d;
	struct http_router *router;
	struct http_apikeys *keys;
	struct http_tls     tls;
	pthread_mutex_t     cfg_lock;
	struct tsm_config  *cfg;
	uint16_t            port;
	uint32_t            rid_prefix;
	uint64_t            rid_next;
	struct http_pool    pool;
};

struct http_resp {
	int      status;
	int      sei;			/* SEI-TSM error shape */
	http_error_fn errfn;		/* the route's error shape, or NULL */
	json_t  *json;
	char     ctype[64];
	struct buf body;
	size_t   nh;
	char    *hname[RESP_HEADERS_MAX];
	char    *hvalue[RESP_HEADERS_MAX];
};

struct http_req {
	struct http_server        *srv;
	struct MHD_Connection     *conn;
	struct conn_ctx           *cc;
	struct tsm_config         *cfg;
	const char                *method;
	const char                *path;
	char                       id[40];
	int                        match;
	struct http_match          m;
	const struct http_route   *rt;
	uint64_t                   t0, deadline;
	struct buf                 body;
	size_t                     discarded;
	size_t                     bytes_in;
	int                        too_big;
	json_t                    *json;
	int                        has_ident;
	struct http_identity       ident;
	const struct http_client_cert *cert;
	const struct tsm_peer     *peer;
	struct http_sig            sig;
	int                        sig_ok;	/* MAC verified, nonce fresh */
	int                        sig_pending;	/* mac_in_handler: not yet */
	int                        queued;
	const char                 *why;	/* short reason for the log */
	struct http_resp           rs;
	int                        job;		/* RQ_*: where the handler is */
	int                        on_io;	/* starts_on_io, on MHD's thread */
	http_handler_fn            cont;	/* http_req_continue: runs next */
	void                      *cont_arg;
	int                        rerun;	/* cont: the route's handler again
						 * (HTTP_ON_WORKER) */
	struct http_req           *qnext;
	struct buf                 out;		/* the answer's bytes, made once */
	char                      *sig_hdr;	/* its X-TSM-Signature, if any */
	int                        out_made;
	int                        out_broken;	/* no memory for its bytes */
};
enum { RQ_NONE = 0, RQ_QUEUED, RQ_DONE };

/* ---- small helpers ---- */

/* Copies s for a log value: at most 128 characters, anything outside a
 * safe set becomes '?'. */
static void
log_safe(const char *s, char *out, size_t cap)
{
	size_t i;

	for (i = 0; s != NULL && s[i] != '\0' && i + 1 < cap && i < 128; i++) {
		char c = s[i];

		out[i] = ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		    (c >= '0' && c <= '9') || strchr("/._:-{}=,", c) != NULL) ?
		    c : '?';
	}
	out[i] = '\0';
}

static int
err_status(int rc)
{
	switch (rc) {
	case ERR_INVAL: case ERR_PARSE: case ERR_TRUNC: case ERR_TRAILING:
	case ERR_KCV:
		return 400;
	case ERR_AUTH: return 401;
	case ERR_DENIED: return 403;
	case ERR_NOTFOUND: case ERR_NOKEY: return 404;
	case ERR_EXISTS: case ERR_WRONGSTATE: case ERR_KEYSTATE: return 409;
	case ERR_TOOBIG: return 413;
	case ERR_BUSY: case ERR_SEALED: case ERR_IO: case ERR_CLOSED:
	case ERR_LIMIT:
		return 503;
	case ERR_TIMEOUT: return 504;
	case ERR_NOTSUP: return 501;
	}
	return 500;
}

static const char *
status_code_name(int st)
{
	switch (st) {
	case 400: return "bad_request";
	case 401: return "unauthorized";
	case 403: return "forbidden";
	case 404: return "not_found";
	case 405: return "method_not_allowed";
	case 408: return "request_timeout";
	case 409: return "conflict";
	case 413: return "payload_too_large";
	case 501: return "not_implemented";
	case 503: return "unavailable";
	case 504: return "timeout";
	}
	return "internal_error";
}

static struct tsm_config *
cfg_get(struct http_server *s)
{
	struct tsm_config *c;

	pthread_mutex_lock(&s->cfg_lock);
	c = tsm_config_ref(s->cfg);
	pthread_mutex_unlock(&s->cfg_lock);
	return c;
}

/* ---- response API ---- */

static void
resp_clear(struct http_resp *rs)
{
	size_t i;

	json_decref(rs->json);
	rs->json = NULL;
	buf_free(&rs->body);
	for (i = 0; i < rs->nh; i++) {
		free(rs->hname[i]);
		free(rs->hvalue[i]);
	}
	rs->nh = 0;
	rs->ctype[0] = '\0';
	rs->status = 0;
}

int
http_resp_json(struct http_resp *rs, int status, json_t *body)
{
	if (body == NULL)
		return ERR_NOMEM;
	if (status < 100 || status > 599) {
		json_decref(body);
		return ERR_INVAL;
	}
	json_decref(rs->json);
	buf_reset(&rs->body);
	rs->json = body;
	rs->status = status;
	snprintf(rs->ctype, sizeof(rs->ctype), "application/json");
	return 0;
}

int
http_resp_body(struct http_resp *rs, int status, const char *ctype,
    const void *p, size_t n)
{
	int rc;

	if (status < 100 || status > 599 || ctype == NULL ||
	    strlen(ctype) >= sizeof(rs->ctype) || strpbrk(ctype, "\r\n") != NULL)
		return ERR_INVAL;
	json_decref(rs->json);
	rs->json = NULL;
	buf_reset(&rs->body);
	if ((rc = buf_put(&rs->body, p, n)) != 0)
		return rc;
	rs->status = status;
	snprintf(rs->ctype, sizeof(rs->ctype), "%s", ctype);
	return 0;
}

int
http_resp_error(struct http_resp *rs, int status, const char *code,
    const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	(void)vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (rs->errfn != NULL) {
		json_t *j = rs->errfn(status, code, msg);

		if (j != NULL)
			return http_resp_json(rs, status, j);
	}
	if (rs->sei)
		return http_resp_json(rs, status, json_pack("{s:i, s:s, s:s}",
		    "resultCode", 9999, "resultMessage", msg, "error", code));
	return http_resp_json(rs, status, json_pack("{s:s, s:s}", "error", code,
	    "message", msg));
}

static int
header_ok(const char *s, int name)
{
	if (*s == '\0' && name)
		return 0;
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;

		if (c < 0x20 || c == 0x7f || (name && (c == ':' || c == ' ')))
			return 0;
	}
	return 1;
}

int
http_resp_header(struct http_resp *rs, const char *name, const char *value)
{
	if (rs->nh == RESP_HEADERS_MAX)
		return ERR_LIMIT;
	if (!header_ok(name, 1) || !header_ok(value, 0) || strlen(name) > 64 ||
	    strlen(value) > 1024)
		return ERR_INVAL;
	rs->hname[rs->nh] = strdup(name);
	rs->hvalue[rs->nh] = strdup(value);
	if (rs->hname[rs->nh] == NULL || rs->hvalue[rs->nh] == NULL) {
		free(rs->hname[rs->nh]);
		free(rs->hvalue[rs->nh]);
		return ERR_NOMEM;
	}
	rs->nh++;
	return 0;
}

/* Framework answers: never fails (falls back to an empty body). */
static void __attribute__((format(printf, 4, 5)))
answer(struct http_req *rq, int status, const char *code, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	(void)vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	resp_clear(&rq->rs);
	if (http_resp_error(&rq->rs, status, code, "%s", msg) != 0)
		rq->rs.status = status;
	rq->why = code;
}

/* ---- request API ---- */

const char *http_req_method(const struct http_req *rq) { return rq->method; }
const char *http_req_path(const struct http_req *rq) { return rq->path; }
const char *http_req_id(const struct http_req *rq) { return rq->id; }
void *http_req_app(const struct http_req *rq) { return rq->srv->router->app; }
uint64_t http_req_deadline(const struct http_req *rq) { return rq->deadline; }
json_t *http_req_json(const struct http_req *rq) { return rq->json; }
const struct tsm_peer *http_req_peer(const struct http_req *rq) { return rq->peer; }
struct http_resp *http_req_resp(struct http_req *rq) { return &rq->rs; }
const struct http_client_cert *http_req_cert(const struct http_req *rq) { return rq->cert; }

const struct http_sig *
http_req_sig(const struct http_req *rq)
{
	return rq->sig_ok ? &rq->sig : NULL;
}

const char *
http_req_route(const struct http_req *rq)
{
	return rq->rt ? rq->rt->pattern : NULL;
}

const struct tsm_config *
http_req_config(const struct http_req *rq)
{
	return rq->cfg;
}

int
http_req_expired(const struct http_req *rq)
{
	return now_us() > rq->deadline;
}

const char *
http_req_param(const struct http_req *rq, const char *name)
{
	size_t i;

	for (i = 0; i < rq->m.nparams; i++)
		if (strcmp(rq->m.name[i], name) == 0)
			return rq->m.value[i];
	return NULL;
}

const char *
http_req_query(const struct http_req *rq, const char *name)
{
	return MHD_lookup_connection_value(rq->conn, MHD_GET_ARGUMENT_KIND, name);
}

const char *
http_req_header(const struct http_req *rq, const char *name)
{
	return MHD_lookup_connection_value(rq->conn, MHD_HEADER_KIND, name);
}

const uint8_t *
http_req_body(const struct http_req *rq, size_t *len)
{
	*len = rq->body.len;
	return rq->body.len ? rq->body.p : NULL;
}

const struct http_identity *
http_req_identity(const struct http_req *rq)
{
	return rq->has_ident ? &rq->ident : NULL;
}

/* ---- authentication ---- */

/* The connection's verified client certificate: 0, ERR_NOTFOUND (none
 * sent), ERR_AUTH (sent, does not verify), ERR_NOTSUP (no client CA). */
static int
conn_cert(struct http_req *rq)
{
	struct http_server *s = rq->srv;
	struct conn_ctx *cc = rq->cc;
	const union MHD_ConnectionInfo *ci;
	const gnutls_datum_t *peers;
	const uint8_t *der[10];
	size_t len[10], i;
	unsigned int n = 0;
	uint64_t now = now_ms();
	int rc;

	if (s->tls.store == NULL || cc == NULL)
		return ERR_NOTSUP;
	if (cc->cert_state == CERT_UNKNOWN || now - cc->checked_ms > CERT_RECHECK_MS) {
		ci = MHD_get_connection_info(rq->conn,
		    MHD_CONNECTION_INFO_GNUTLS_SESSION);
		peers = ci ? gnutls_certificate_get_peers(ci->tls_session, &n) : NULL;
		if (peers == NULL || n == 0)
			cc->cert_state = CERT_NONE;
		else {
			if (n > ARRAY_LEN(der))
				n = ARRAY_LEN(der);
			for (i = 0; i < n; i++) {
				der[i] = peers[i].data;
				len[i] = peers[i].size;
			}
			rc = http_tls_verify_chain(s->tls.store, der, len, n, &cc->cert);
			cc->cert_state = rc == 0 ? CERT_OK : CERT_BAD;
		}
		cc->checked_ms = now;
	}
	switch (cc->cert_state) {
	case CERT_OK:
		rq->cert = &cc->cert;
		return 0;
	case CERT_NONE:
		return ERR_NOTFOUND;
	}
	return ERR_AUTH;
}

/* 0 when the route's client-certificate demand is met; else answers. */
static int
need_cert(struct http_req *rq)
{
	int rc = conn_cert(rq);

	if (rc == 0)
		return 0;
	if (rc == ERR_NOTFOUND)
		answer(rq, 401, "client_cert_required",
		    "a TLS client certificate is required");
	else if (rc == ERR_NOTSUP)
		answer(rq, 403, "client_cert_unavailable",
		    "client certificates are not configured (tls.clientCa)");
	else
		answer(rq, 403, "client_cert_rejected",
		    "the TLS client certificate is not valid here");
	return -1;
}

static int
bearer(struct http_req *rq)
{
	const char *h = http_req_header(rq, "Authorization");
	int want = rq->rt->auth;

	if (h == NULL || strncasecmp(h, "Bearer ", 7) != 0) {
		answer(rq, 401, "unauthorized", "Authorization: Bearer <key> required");
		goto fail;
	}
	h += 7;
	while (*h == ' ')
		h++;
	if (http_apikeys_check(rq->srv->keys, h, &rq->ident) != 0) {
		answer(rq, 401, "unauthorized", "unknown API key");
		goto fail;
	}
	rq->has_ident = 1;
	if (want == HTTP_AUTH_ADMIN && rq->ident.role != HTTP_ROLE_ADMIN) {
		answer(rq, 403, "forbidden", "this needs an admin key");
		return -1;
	}
	return 0;
fail:
	(void)!http_resp_header(&rq->rs, "WWW-Authenticate", "Bearer realm=\"tsmd\"");
	return -1;
}

/* SEI-TSM peer, before the body: header, peer, time window, certificate. */
static int
sei_begin(struct http_req *rq)
{
	const char *h = http_req_header(rq, HTTP_SIG_HEADER);
	int64_t now = wall_seconds();

	if (h == NULL || http_sig_parse(h, &rq->sig) != 0) {
		answer(rq, 401, "signature_missing", "a valid %s header is required",
		    HTTP_SIG_HEADER);
		return -1;
	}
	rq->peer = tsm_config_peer_by_key_id(rq->cfg, rq->sig.key_id);
	if (rq->peer == NULL) {
		answer(rq, 401, "unknown_key_id", "unknown keyId");
		return -1;
	}
	if (rq->sig.ts > now + HTTP_SIG_WINDOW_S ||
	    rq->sig.ts < now - HTTP_SIG_WINDOW_S) {
		answer(rq, 401, "signature_expired",
		    "ts is more than %d s away from our clock", HTTP_SIG_WINDOW_S);
		return -1;
	}
	if (rq->peer->client_cert_required)
		return need_cert(rq);
	(void)conn_cert(rq);	/* exposed when present */
	return 0;
}

/* kmsd's verdict on the MAC (0: verified), then the nonce. 0: go on;
 * -1: the refusal is the answer. */
static int
sei_verdict(struct http_req *rq, int rc)
{
	rq->sig_pending = 0;
	if (rc == ERR_AUTH) {
		answer(rq, 401, "signature_invalid", "signature does not verify");
		return -1;
	}
	if (rc != 0) {
		log_msg(LOG_WARN, "event=sig_verify_failed rid=%s peer=%s err=%s",
		    rq->id, rq->peer->sei_tsm_id, err_name(rc));
		answer(rq, 503, "kms_unavailable", "cannot verify the signature now");
		return -1;
	}
	rc = http_nonce_check(rq->sig.key_id, rq->sig.nonce, rq->sig.ts,
	    wall_seconds());
	if (rc == ERR_EXISTS) {
		answer(rq, 401, "replay", "nonce already used");
		return -1;
	}
	/* A full cache: routes whose handler claims the nonce in the store
	 * go on (the store decides); the others must refuse. */
	if (rc != 0 && !(rc == ERR_LIMIT && rq->rt->ext.nonce_durable)) {
		answer(rq, 503, "busy", "replay cache full; retry later");
		return -1;
	}
	rq->sig_ok = 1;
	return 0;
}

/* After the body: the MAC (in kmsd), then the nonce. */
static int
sei_finish(struct http_req *rq)
{
	return sei_verdict(rq, http_sig_verify(tsm_kms(), rq->peer->mac_key,
	    &rq->sig, rq->method, rq->path, rq->body.p, rq->body.len));
}

int
http_req_sig_pending(const struct http_req *rq, struct buf *in,
    const struct http_sig **sig)
{
	if (!rq->sig_pending)
		return ERR_INVAL;
	*sig = &rq->sig;
	return http_sig_input(in, rq->method, rq->path, rq->sig.ts,
	    rq->sig.nonce, rq->body.p, rq->body.len);
}

int
http_req_sig_settle(struct http_req *rq, int verdict)
{
	if (!rq->sig_pending)
		return rq->sig_ok ? 0 : -1;
	return sei_verdict(rq, verdict);
}

int
http_req_sig_require(struct http_req *rq)
{
	if (!rq->sig_pending)
		return rq->sig_ok ? 0 : -1;
	return sei_finish(rq);
}

/* ---- request phases ---- */

static void
req_id(struct http_req *rq)
{
	const char *h = http_req_header(rq, "X-Request-Id");
	size_t i, n;

	if (h != NULL && (n = strlen(h)) > 0 && n < 40) {
		for (i = 0; i < n; i++)
			if (!((h[i] >= 'a' && h[i] <= 'z') || (h[i] >= 'A' &&
			    h[i] <= 'Z') || (h[i] >= '0' && h[i] <= '9') ||
			    h[i] == '-' || h[i] == '_' || h[i] == '.'))
				break;
		if (i == n) {
			memcpy(rq->id, h, n + 1);
			return;
		}
	}
	snprintf(rq->id, sizeof(rq->id), "%08x-%llx", rq->srv->rid_prefix,
	    (unsigned long long)__atomic_add_fetch(&rq->srv->rid_next, 1,
	    __ATOMIC_RELAXED));
}

/* Headers are in: route, authenticate, check the declared length. */
static void
req_begin(struct http_req *rq)
{
	const char *cl;
	unsigned long long len;
	char *end;

	rq->match = http_router_match(rq->srv->router, rq->method, rq->path, &rq->m);
	if (rq->match == HTTP_MATCH_NOPATH) {
		answer(rq, 404, "not_found", "no such resource");
		return;
	}
	if (rq->match == HTTP_MATCH_NOMETHOD) {
		answer(rq, 405, "method_not_allowed", "method %s not allowed here",
		    strlen(rq->method) < 16 ? rq->method : "?");
		(void)!http_resp_header(&rq->rs, "Allow", rq->m.allow);
		return;
	}
	rq->rt = &rq->srv->router->r[rq->m.route];
	rq->rs.sei = rq->rt->auth == HTTP_AUTH_SEI_PEER;
	rq->rs.errfn = rq->rt->ext.error;
	switch (rq->rt->auth) {
	case HTTP_AUTH_ADMIN:
	case HTTP_AUTH_PROVIDER:
		if (bearer(rq) != 0)
			return;
		break;
	case HTTP_AUTH_CLIENT_CERT:
		if (need_cert(rq) != 0)
			return;
		break;
	case HTTP_AUTH_SEI_PEER:
		if (sei_begin(rq) != 0)
			return;
		break;
	default:
		break;
	}
	cl = http_req_header(rq, "Content-Length");
	if (cl != NULL) {
		len = strtoull(cl, &end, 10);
		if (end == cl || *end != '\0' || len > rq->cfg->lim.max_body) {
			answer(rq, 413, "payload_too_large",
			    "body larger than %zu bytes", rq->cfg->lim.max_body);
			return;
		}
	}
}

static int
is_json_type(const char *ct)
{
	size_t n;

	if (ct == NULL)
		return 0;
	n = strcspn(ct, "; ");
	return (n == 16 && strncasecmp(ct, "application/json", 16) == 0) ||
	    (n > 5 && strncasecmp(ct + n - 5, "+json", 5) == 0);
}

/* Past its deadline: answered 408 (1), else 0. */
static int
refuse_late(struct http_req *rq)
{
	if (!http_req_expired(rq))
		return 0;
	answer(rq, 408, "request_timeout", "request took longer than %u ms",
	    rq->cfg->lim.request_timeout_ms);
	return 1;
}

/* The body is in: bound and parse it, finish authentication. 0: the
 * handler is to run; -1: answered. */
static int
req_prepare(struct http_req *rq)
{
	json_error_t je;
	size_t where;
	int rc;

	if (rq->too_big) {
		answer(rq, 413, "payload_too_large", "body larger than %zu bytes",
		    rq->cfg->lim.max_body);
		return -1;
	}
	if (refuse_late(rq))
		return -1;
	if (rq->body.len > 0 && is_json_type(http_req_header(rq, "Content-Type"))) {
		rc = http_json_precheck(rq->body.p, rq->body.len,
		    rq->cfg->lim.max_body, rq->cfg->lim.max_json_depth, &where);
		if (rc == ERR_TOOBIG) {
			answer(rq, 413, "payload_too_large", "body larger than %zu "
			    "bytes", rq->cfg->lim.max_body);
			return -1;
		}
		if (rc == ERR_LIMIT) {
			answer(rq, 400, "json_too_deep", "JSON nests deeper than %u "
			    "levels (at byte %zu)", rq->cfg->lim.max_json_depth, where);
			return -1;
		}
		/* ERR_PARSE: jansson names the problem better. */
		rq->json = json_loadb((const char *)rq->body.p, rq->body.len,
		    JSON_REJECT_DUPLICATES, &je);
		if (rq->json != NULL && rc != 0) {
			json_decref(rq->json);
			rq->json = NULL;
			answer(rq, 400, "invalid_json", "invalid JSON at byte %zu",
			    where);
			return -1;
		}
		if (rq->json == NULL) {
			answer(rq, 400, "invalid_json", "invalid JSON: line %d column "
			    "%d: %s", je.line, je.column, je.text);
			return -1;
		}
	}
	if (rq->rt->auth == HTTP_AUTH_SEI_PEER) {
		if (rq->rt->ext.mac_in_handler)
			rq->sig_pending = 1;
		else if (sei_finish(rq) != 0)
			return -1;
	}
	return 0;
}

/* What the handler returned (rc) becomes the answer. */
static void
req_conclude(struct http_req *rq, int rc)
{
	/* A deferred MAC the handler left unsettled is checked before
	 * anything it answered may leave. */
	if (rq->sig_pending && sei_finish(rq) != 0)
		return;
	if (rc == HTTP_DEFERRED) {	/* not on a worker: never handed off */
		log_msg(LOG_ERR, "event=handler_bad_defer rid=%s route=%s",
		    rq->id, rq->rt->pattern);
		rc = ERR_INTERNAL;
	}
	if (rc != 0) {
		int st = err_status(rc);

		if (st >= 500)
			log_msg(LOG_WARN, "event=handler_failed rid=%s route=%s err=%s",
			    rq->id, rq->rt->pattern, err_name(rc));
		answer(rq, st, st == 500 ? "internal_error" : status_code_name(st),
		    "%s", st == 500 ? "internal error" : err_str(rc));
		rq->why = err_name(rc);
	} else if (rq->rs.status == 0) {
		log_msg(LOG_ERR, "event=handler_no_answer rid=%s route=%s", rq->id,
		    rq->rt->pattern);
		answer(rq, 500, "internal_error", "internal error");
	}
}

/* Prepares and handles rq. 1 when the handler handed it off (on a worker
 * only): then rq is no longer this thread's to touch. */
static int
req_finish(struct http_req *rq)
{
	int rc, pooled = rq->job == RQ_QUEUED;

	if (req_prepare(rq) != 0)
		return 0;
	rc = rq->rt->fn(rq, &rq->rs, rq->rt->arg);
	if (rc == HTTP_DEFERRED && pooled)
		return 1;	/* rq may be gone already */
	req_conclude(rq, rc);
	return 0;
}

/* The framework signs rq's answer: an SEI-TSM peer's route, no refusal,
 * and not signed by the handler itself (to overlap the kmsd round trip
 * with other work). */
static int
sign_due(const struct http_req *rq)
{
	size_t i;

	if (rq->peer == NULL || rq->rt == NULL ||
	    rq->rt->auth != HTTP_AUTH_SEI_PEER || rq->why != NULL)
		return 0;
	for (i = 0; i < rq->rs.nh; i++)
		if (strcasecmp(rq->rs.hname[i], HTTP_SIG_HEADER) == 0)
			return 0;
	return 1;
}

/* The X-TSM-Signature of an SEI-TSM answer (same METHOD and PATH as the
 * request), or NULL. */
static char *
sei_sign(struct http_req *rq, const uint8_t *body, size_t n)
{
	char hdr[HTTP_SIG_HDR_MAX];
	int rc;

	rc = http_sig_make(tsm_kms(), rq->peer->mac_key, rq->peer->mac_key_id,
	    rq->method, rq->path, body, n, hdr, sizeof(hdr));
	if (rc != 0) {
		log_msg(LOG_WARN, "event=sig_sign_failed rid=%s peer=%s err=%s",
		    rq->id, rq->peer->sei_tsm_id, err_name(rc));
		return NULL;
	}
	return strdup(hdr);
}

/*
 * The answer's bytes and signature, made once, on the thread that ran the
 * handler (a worker: the signature is a kmsd call on its connection).
 */
static void
answer_make(struct http_req *rq)
{
	struct http_resp *rs = &rq->rs;
	char *dump = NULL;

	if (rq->out_made)
		return;
	rq->out_made = 1;
	buf_init(&rq->out);
	if (rs->json != NULL) {
		dump = json_dumps(rs->json, JSON_COMPACT);
		if (dump == NULL) {
			answer(rq, 500, "internal_error", "internal error");
			dump = json_dumps(rs->json, JSON_COMPACT);
		}
		if (dump == NULL || buf_put(&rq->out, dump, strlen(dump)) != 0)
			rq->out_broken = 1;
		if (dump != NULL) {
			wipe(dump, strlen(dump));
			free(dump);
		}
	} else if (rs->body.len > 0 &&
	    buf_put(&rq->out, rs->body.p, rs->body.len) != 0)
		rq->out_broken = 1;
	/* An answer that cannot be made whole is not sent at all (the
	 * connection closes): never a status with a cut or empty body. */
	if (rq->out_broken)
		return;
	if (sign_due(rq))
		rq->sig_hdr = sei_sign(rq, rq->out.p ? rq->out.p :
		    (const uint8_t *)"", rq->out.len);
}

static enum MHD_Result
send_answer(struct http_req *rq)
{
	struct http_resp *rs = &rq->rs;
	struct MHD_Response *r;
	size_t i;
	enum MHD_Result ret;

	answer_make(rq);
	if (rq->out_broken)
		return MHD_NO;
	/* MHD sends from rq->out itself (no copy of its own, which it would
	 * free unwiped: answers carry API keys); rq->out lives until
	 * on_completed, after the last byte went. */
	r = MHD_create_response_from_buffer(rq->out.len, rq->out.p ?
	    (void *)rq->out.p : (void *)"", MHD_RESPMEM_PERSISTENT);
	if (r == NULL)
		return MHD_NO;
	if (rs->ctype[0])
		(void)MHD_add_response_header(r, "Content-Type", rs->ctype);
	(void)MHD_add_response_header(r, "X-Request-Id", rq->id);
	(void)MHD_add_response_header(r, "Cache-Control", "no-store");
	(void)MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
	for (i = 0; i < rs->nh; i++)
		(void)MHD_add_response_header(r, rs->hname[i], rs->hvalue[i]);
	if (rq->sig_hdr != NULL)
		(void)MHD_add_response_header(r, HTTP_SIG_HEADER, rq->sig_hdr);
	ret = MHD_queue_response(rq->conn, (unsigned int)rs->status, r);
	MHD_destroy_response(r);
	rq->queued = ret == MHD_YES;
	return ret;
}

/* ---- the handler pool ---- */

/* Queues rq for a worker and wakes one (q->mu held). */
static void
pool_append(struct http_pool *q, struct http_req *rq)
{
	rq->qnext = NULL;
	if (q->tail != NULL)
		q->tail->qnext = rq;
	else
		q->head = rq;
	q->tail = rq;
	pthread_cond_signal(&q->cv);
}

/* The answer is decided: its bytes are made here (a worker, or a thread
 * finishing a handed-off request) and MHD, woken, sends them. rq may be
 * gone once this returns. */
static void
req_release(struct http_req *rq)
{
	struct http_pool *q = &rq->srv->pool;

	answer_make(rq);
	pthread_mutex_lock(&q->mu);
	rq->job = RQ_DONE;
	pthread_mutex_unlock(&q->mu);
	/* MHD calls on_access again, which queues the answer. */
	MHD_resume_connection(rq->conn);
}

static void *
pool_main(void *arg)
{
	struct http_server *s = arg;
	struct http_pool *q = &s->pool;
	struct http_req *rq;

	(void)pthread_setname_np(pthread_self(), "http-worker");
	for (;;) {
		http_handler_fn cont;
		int rc, rerun;

		pthread_mutex_lock(&q->mu);
		/* Workers stay while a handed-off request may come back. */
		while (q->head == NULL && !(q->stop && q->deferred == 0))
			pthread_cond_wait(&q->cv, &q->mu);
		if ((rq = q->head) == NULL) {	/* stopping, queue drained */
			/* the others may sleep on a condition only this one
			 * saw become true */
			pthread_cond_broadcast(&q->cv);
			pthread_mutex_unlock(&q->mu);
			break;
		}
		q->head = rq->qnext;
		if (q->head == NULL)
			q->tail = NULL;
		cont = rq->cont;
		rq->cont = NULL;
		rerun = rq->rerun;
		rq->rerun = 0;
		rq->on_io = 0;		/* on a worker now */
		pthread_mutex_unlock(&q->mu);

		if (cont == NULL)	/* queued only without an answer yet */
			rc = req_finish(rq);
		else if (rerun && refuse_late(rq)) {
			/* it waited for a worker past its deadline: not run
			 * again (its MAC is still checked first) */
			req_conclude(rq, 0);
			rc = 0;
		} else if ((rc = cont(rq, &rq->rs, rq->cont_arg)) == HTTP_DEFERRED)
			rc = 1;
		else {
			req_conclude(rq, rc);
			rc = 0;
		}
		if (rc == 1) {		/* handed off again */
			pthread_mutex_lock(&q->mu);
			q->deferred++;
			pthread_mutex_unlock(&q->mu);
			continue;
		}
		req_release(rq);
	}
	tsm_kms_cleanup();
	return NULL;
}

/* A handed-off request is finished (its answer made, its connection
 * resumed): it no longer holds the workers back from stopping. */
static void
pool_deferred_done(struct http_pool *q)
{
	pthread_mutex_lock(&q->mu);
	if (--q->deferred == 0 && q->stop)
		pthread_cond_broadcast(&q->cv);
	pthread_mutex_unlock(&q->mu);
}

/* 1 when making rq's answer (for handler result rc) may wait on kmsd: a
 * MAC still unverified, or an SEI-TSM answer the framework signs (an
 * error answer is not signed). */
static int
answer_needs_kms(const struct http_req *rq, int rc)
{
	return rq->sig_pending || (rc == 0 && sign_due(rq));
}

static int
pass_rc(struct http_req *rq, struct http_resp *rs, void *arg)
{
	(void)rq;
	(void)rs;
	return (int)(intptr_t)arg;
}

int
http_req_on_io_thread(const struct http_req *rq)
{
	return rq->on_io;
}

int
http_req_can_defer(const struct http_req *rq)
{
	struct http_req *w = (struct http_req *)rq;
	struct http_pool *q;
	int ok;

	if (!rq->on_io)
		return rq->job == RQ_QUEUED;
	/* On MHD's thread: suspended now, before any other thread can
	 * finish it (and resume it), and counted as handed off in the same
	 * step that checks the pool is not stopping (no worker stays for a
	 * request counted later); not while the pool stops. */
	if (rq->job == RQ_QUEUED)
		return 1;
	q = &rq->srv->pool;
	pthread_mutex_lock(&q->mu);
	if ((ok = !q->stop && q->n > 0)) {
		MHD_suspend_connection(w->conn);
		w->job = RQ_QUEUED;
		q->deferred++;
	}
	pthread_mutex_unlock(&q->mu);
	return ok;
}

void
http_req_continue(struct http_req *rq, http_handler_fn fn, void *arg)
{
	struct http_pool *q = &rq->srv->pool;

	pthread_mutex_lock(&q->mu);
	rq->cont = fn;
	rq->cont_arg = arg;
	pool_append(q, rq);
	q->deferred--;		/* the worker counts it again if it defers */
	pthread_mutex_unlock(&q->mu);
}

void
http_req_done(struct http_req *rq, int rc)
{
	struct http_pool *q = &rq->srv->pool;

	if (rc > 0) {		/* not a handler's result: a caller's bug */
		log_msg(LOG_ERR, "event=handler_bad_done rid=%s rc=%d", rq->id,
		    rc);
		rc = ERR_INTERNAL;
	}
	/* Only an answer ready to go is finished here: an unsettled MAC or
	 * a signature to make go to a worker. */
	if (answer_needs_kms(rq, rc)) {
		http_req_continue(rq, pass_rc, (void *)(intptr_t)rc);
		return;
	}
	req_conclude(rq, rc);
	req_release(rq);	/* rq may be gone after this */
	pool_deferred_done(q);
}

/* Suspends rq's connection and hands rq to a worker (which cannot take
 * it, and so cannot resume, before the suspension). 0, or ERR_CLOSED once
 * the pool stops: then nothing happened and the caller handles it. */
static int
pool_put(struct http_server *s, struct http_req *rq)
{
	struct http_pool *q = &s->pool;

	pthread_mutex_lock(&q->mu);
	if (q->stop || q->n == 0) {
		pthread_mutex_unlock(&q->mu);
		return ERR_CLOSED;
	}
	MHD_suspend_connection(rq->conn);
	rq->job = RQ_QUEUED;
	pool_append(q, rq);
	pthread_mutex_unlock(&q->mu);
	return 0;
}

static int
pool_start(struct http_server *s, unsigned n)
{
	struct http_pool *q = &s->pool;

	if ((q->th = calloc(n, sizeof(*q->th))) == NULL)
		return ERR_NOMEM;
	for (q->n = 0; q->n < n; q->n++)
		if (pthread_create(&q->th[q->n], NULL, pool_main, s) != 0)
			break;
	return q->n > 0 ? 0 : ERR_NOMEM;
}

/* Lets the workers finish every queued request, then joins them. */
static void
pool_stop(struct http_server *s)
{
	struct http_pool *q = &s->pool;
	unsigned i;

	pthread_mutex_lock(&q->mu);
	q->stop = 1;
	pthread_cond_broadcast(&q->cv);
	pthread_mutex_unlock(&q->mu);
	for (i = 0; i < q->n; i++)
		pthread_join(q->th[i], NULL);
	free(q->th);
	q->th = NULL;
	q->n = 0;
}

/* ---- MHD callbacks ---- */

static struct http_req *
req_new(struct http_server *s, struct MHD_Connection *conn, const char *url,
    const char *method)
{
	const union MHD_ConnectionInfo *ci;
	struct http_req *rq = calloc(1, sizeof(*rq));

	if (rq == NULL)
		return NULL;
	rq->srv = s;
	rq->conn = conn;
	rq->method = method;
	rq->path = url;
	rq->t0 = now_us();
	rq->cfg = cfg_get(s);
	rq->deadline = rq->t0 + (uint64_t)rq->cfg->lim.request_timeout_ms * 1000u;
	buf_init(&rq->body);
	buf_init(&rq->rs.body);
	ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
	rq->cc = ci ? ci->socket_context : NULL;
	req_id(rq);
	http_metrics_inflight(1);
	return rq;
}

/*
 * A starts_on_io route, prepared and handled here on MHD's thread: the
 * handler hands the request off (the usual case), or asks to run again
 * from the start on a worker. Returns what on_access returns.
 */
static enum MHD_Result
start_on_io(struct http_server *s, struct http_req *rq)
{
	struct http_pool *q = &s->pool;
	int rc;

	if (req_prepare(rq) != 0)	/* the framework's refusal: no kmsd */
		return send_answer(rq);
	rq->on_io = 1;
	rc = rq->rt->fn(rq, &rq->rs, rq->rt->arg);
	if (rc == HTTP_DEFERRED)	/* counted when it was suspended; rq
					 * may be answered and gone already */
		return MHD_YES;
	rq->on_io = 0;
	/* the handler runs again from the start: nothing of this run stays
	 * (an answer made here could need kmsd, its signature) */
	if (rc != HTTP_ON_WORKER)
		log_msg(LOG_ERR, "event=handler_bad_io_return rid=%s route=%s",
		    rq->id, rq->rt->pattern);
	resp_clear(&rq->rs);
	pthread_mutex_lock(&q->mu);
	rq->cont = rq->rt->fn;
	rq->cont_arg = rq->rt->arg;
	rq->rerun = 1;
	if (rq->job == RQ_QUEUED) {	/* suspended, not handed off: a bug */
		q->deferred--;		/* now the queue's */
		pool_append(q, rq);
		pthread_mutex_unlock(&q->mu);
		return MHD_YES;
	}
	pthread_mutex_unlock(&q->mu);
	if (pool_put(s, rq) == 0)
		return MHD_YES;
	/* The pool stops: here, and it may wait. */
	rq->cont = NULL;
	rq->rerun = 0;
	rc = rq->rt->fn(rq, &rq->rs, rq->rt->arg);
	req_conclude(rq, rc == HTTP_ON_WORKER || rc == HTTP_DEFERRED ?
	    ERR_INTERNAL : rc);
	return send_answer(rq);
}

static int
body_expected(struct http_req *rq)
{
	const char *cl = http_req_header(rq, "Content-Length");

	if (http_req_header(rq, "Transfer-Encoding") != NULL)
		return 1;
	return cl != NULL && strcmp(cl, "0") != 0;
}

static enum MHD_Result
on_access(void *cls, struct MHD_Connection *conn, const char *url,
    const char *method, const char *version, const char *upload,
    size_t *upsize, void **con_cls)
{
	struct http_server *s = cls;
	struct http_req *rq = *con_cls;
	size_t n;
	int job;

	if (rq == NULL) {
		if ((rq = req_new(s, conn, url, method)) == NULL)
			return MHD_NO;
		*con_cls = rq;
		req_begin(rq);
		/* Decided from the headers alone and a body is coming: answer
		 * now without reading it (MHD then closes the connection).
		 * Without a body, answer at the final call below, which keeps
		 * the connection alive. */
		return rq->rs.status != 0 && body_expected(rq) ? send_answer(rq) :
		    MHD_YES;
	}
	if (*upsize != 0) {
		n = *upsize;
		*upsize = 0;
		rq->bytes_in += n;
		if (rq->queued || rq->too_big || rq->rs.status != 0) {
			rq->discarded += n;
			return rq->discarded > DISCARD_MAX ? MHD_NO : MHD_YES;
		}
		if (http_req_expired(rq)) {
			log_msg(LOG_INFO, "event=request_deadline rid=%s phase=body",
			    rq->id);
			return MHD_NO;
		}
		if (n > rq->cfg->lim.max_body - rq->body.len) {
			rq->too_big = 1;	/* no Content-Length (chunked) */
			buf_free(&rq->body);
			rq->discarded += n;
			return MHD_YES;
		}
		return buf_put(&rq->body, upload, n) == 0 ? MHD_YES : MHD_NO;
	}
	if (rq->queued)
		return MHD_YES;
	pthread_mutex_lock(&s->pool.mu);
	job = rq->job;
	pthread_mutex_unlock(&s->pool.mu);
	if (job == RQ_QUEUED)		/* cannot be: the connection waits */
		return MHD_YES;
	if (job == RQ_NONE && rq->rs.status == 0) {
		if (rq->rt != NULL && rq->rt->ext.starts_on_io)
			return start_on_io(s, rq);
		/* Inline: a route that never waits, or the pool has stopped. */
		if (!(rq->rt != NULL && rq->rt->ext.inline_ok) &&
		    pool_put(s, rq) == 0)
			return MHD_YES;
		(void)req_finish(rq);	/* inline: never handed off */
	}
	return send_answer(rq);
}

static void
on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
    enum MHD_RequestTerminationCode toe)
{
	struct http_req *rq = *con_cls;
	char route[140], peer[70], method[20];
	uint64_t dur;
	int status;

	if (rq == NULL)
		return;
	*con_cls = NULL;
	dur = now_us() - rq->t0;
	/* 499: the client went away before it got an answer. */
	status = rq->queued ? rq->rs.status : 499;
	http_metrics_request(rq->rt ? rq->m.route : (size_t)-1, status, dur);
	http_metrics_inflight(-1);
	log_safe(rq->rt ? rq->rt->pattern : rq->path, route, sizeof(route));
	log_safe(rq->peer ? rq->peer->sei_tsm_id : "-", peer, sizeof(peer));
	log_safe(rq->method, method, sizeof(method));
	log_msg(status >= 500 ? LOG_WARN : LOG_INFO, "event=http_request rid=%s "
	    "method=%s route=%s status=%d dur_ms=%.3f peer=%s key_id=%s "
	    "cert=%.16s bytes_in=%zu%s%s%s", rq->id, method, route, status,
	    (double)dur / 1000.0, peer, rq->has_ident ? rq->ident.key_id : "-",
	    rq->cert ? rq->cert->sha256 : "-", rq->bytes_in,
	    rq->why ? " reason=" : "", rq->why ? rq->why : "",
	    toe == MHD_REQUEST_TERMINATED_COMPLETED_OK ? "" : " aborted=1");
	json_decref(rq->json);
	buf_free(&rq->body);
	if (rq->out_made)
		buf_free(&rq->out);
	free(rq->sig_hdr);
	resp_clear(&rq->rs);
	tsm_config_unref(rq->cfg);
	free(rq);
}

static void
on_connection(void *cls, struct MHD_Connection *conn, void **ctx,
    enum MHD_ConnectionNotificationCode code)
{
	if (code == MHD_CONNECTION_NOTIFY_STARTED)
		*ctx = calloc(1, sizeof(struct conn_ctx));
	else if (code == MHD_CONNECTION_NOTIFY_CLOSED) {
		free(*ctx);
		*ctx = NULL;
	}
}

static void
on_mhd_log(void *cls, const char *fmt, va_list ap)
{
	char msg[256], safe[256];
	size_t i, n;

	(void)vsnprintf(msg, sizeof(msg), fmt, ap);
	n = strlen(msg);
	while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
		msg[--n] = '\0';
	for (i = 0; i < n; i++)
		safe[i] = (msg[i] == '"' || (unsigned char)msg[i] < 0x20) ? '\'' :
		    msg[i];
	safe[n] = '\0';
	log_msg(LOG_INFO, "event=mhd msg=\"%s\"", safe);
}

/* ---- start / stop ---- */

static int
resolve(const struct tsm_config *c, struct sockaddr_storage *ss, int *v6)
{
	struct addrinfo hints, *res = NULL, *ai;
	char port[8];
	int rc;

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
	snprintf(port, sizeof(port), "%u", c->port);
	if ((rc = getaddrinfo(c->host, port, &hints, &res)) != 0 || res == NULL) {
		log_msg(LOG_ERR, "event=listen_resolve_failed host=%s err=\"%s\"",
		    c->host, gai_strerror(rc));
		return ERR_INVAL;
	}
	/* "localhost" may resolve to ::1 first; prefer IPv4, which is what
	 * the bootstrap certificate and most clients expect. */
	for (ai = res; ai != NULL && ai->ai_family != AF_INET; ai = ai->ai_next)
		;
	if (ai == NULL)
		ai = res;
	memset(ss, 0, sizeof(*ss));
	memcpy(ss, ai->ai_addr, ai->ai_addrlen);
	*v6 = ai->ai_family == AF_INET6;
	freeaddrinfo(res);
	return 0;
}

int
http_server_start(struct http_server **out, struct tsm_config *cfg,
    struct http_router *r, struct http_apikeys *ak)
{
	struct MHD_OptionItem opt[20];
	struct sockaddr_storage ss;
	const union MHD_DaemonInfo *di;
	struct http_server *s;
	unsigned int flags;
	size_t no = 0;
	int rc, v6 = 0;

	*out = NULL;
	if (!cfg->tls && !tsm_host_is_loopback(cfg->host))
		return ERR_INVAL;
	if ((s = calloc(1, sizeof(*s))) == NULL)
		return ERR_NOMEM;
	pthread_mutex_init(&s->cfg_lock, NULL);
	pthread_mutex_init(&s->pool.mu, NULL);
	pthread_cond_init(&s->pool.cv, NULL);
	s->router = r;
	s->keys = ak;
	s->cfg = tsm_config_ref(cfg);
	if (RAND_bytes((uint8_t *)&s->rid_prefix, sizeof(s->rid_prefix)) != 1) {
		rc = ERR_CRYPTO;
		goto fail;
	}
	if ((rc = resolve(cfg, &ss, &v6)) != 0 ||
	    (rc = http_metrics_init(r)) != 0)
		goto fail;
	if (cfg->tls && (rc = http_tls_load(&s->tls, cfg->tls_cert, cfg->tls_key,
	    cfg->tls_client_ca)) != 0)
		goto fail;

#define OPT(o, v, p) (opt[no++] = (struct MHD_OptionItem){ (o), (intptr_t)(v), (p) })
	OPT(MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, s);	/* must be first */
	OPT(MHD_OPTION_SOCK_ADDR, 0, &ss);
	/* MHD's threads only move bytes and run TLS; handlers have the pool. */
	OPT(MHD_OPTION_THREAD_POOL_SIZE, cfg->lim.workers < HTTP_IO_THREADS ?
	    cfg->lim.workers : HTTP_IO_THREADS, NULL);
	OPT(MHD_OPTION_CONNECTION_LIMIT, cfg->lim.max_connections, NULL);
	OPT(MHD_OPTION_CONNECTION_TIMEOUT, cfg->lim.conn_timeout_s, NULL);
	OPT(MHD_OPTION_CONNECTION_MEMORY_LIMIT, CONN_MEMORY, NULL);
	OPT(MHD_OPTION_LISTEN_BACKLOG_SIZE, 256, NULL);
	OPT(MHD_OPTION_NOTIFY_COMPLETED, on_completed, s);
	OPT(MHD_OPTION_NOTIFY_CONNECTION, on_connection, s);
	OPT(MHD_OPTION_STRICT_FOR_CLIENT, 1, NULL);
	if (cfg->tls) {
		OPT(MHD_OPTION_HTTPS_MEM_KEY, 0, s->tls.key_pem);
		OPT(MHD_OPTION_HTTPS_MEM_CERT, 0, s->tls.cert_pem);
		OPT(MHD_OPTION_HTTPS_PRIORITIES, 0, HTTP_TLS_PRIORITIES);
		/* With a trust list MHD asks clients for a certificate
		 * (GNUTLS_CERT_REQUEST); conn_cert() does the verification. */
		if (s->tls.trust_pem != NULL)
			OPT(MHD_OPTION_HTTPS_MEM_TRUST, 0, s->tls.trust_pem);
	}
	OPT(MHD_OPTION_END, 0, NULL);
#undef OPT
	if ((rc = pool_start(s, cfg->lim.workers)) != 0)
		goto fail;
	flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_USE_ITC |
	    MHD_ALLOW_SUSPEND_RESUME |
	    MHD_USE_ERROR_LOG | (cfg->tls ? MHD_USE_TLS : 0) |
	    (v6 ? MHD_USE_IPv6 : 0);
	s->d = MHD_start_daemon(flags, cfg->port, NULL, NULL, on_access, s,
	    MHD_OPTION_ARRAY, opt, MHD_OPTION_END);
	if (s->d == NULL) {
		log_msg(LOG_ERR, "event=listen_failed listen=%s", cfg->listen);
		rc = ERR_IO;
		goto fail;
	}
	di = MHD_get_daemon_info(s->d, MHD_DAEMON_INFO_BIND_PORT);
	s->port = di ? di->port : cfg->port;
	if (!cfg->tls)
		log_msg(LOG_WARN, "event=insecure_plain_http listen=%s:%u note=\"TLS "
		    "is OFF: tests and benchmarks only, never in production\"",
		    cfg->host, s->port);
	log_msg(LOG_INFO, "event=listening host=%s port=%u tls=%d client_ca=%s "
	    "workers=%u max_conn=%u", cfg->host, s->port, cfg->tls,
	    cfg->tls_client_ca ? cfg->tls_client_ca : "-", cfg->lim.workers,
	    cfg->lim.max_connections);
	*out = s;
	return 0;
fail:
	pool_stop(s);
	pthread_cond_destroy(&s->pool.cv);
	pthread_mutex_destroy(&s->pool.mu);
	http_tls_cleanup(&s->tls);
	http_metrics_cleanup();
	tsm_config_unref(s->cfg);
	pthread_mutex_destroy(&s->cfg_lock);
	free(s);
	return rc;
}

uint16_t
http_server_port(const struct http_server *s)
{
	return s->port;
}

long
http_server_inflight(const struct http_server *s)
{
	return http_metrics_inflight_now();
}

static int
str_differs(const char *a, const char *b)
{
	return (a == NULL) != (b == NULL) || (a != NULL && strcmp(a, b) != 0);
}

void
http_server_reload(struct http_server *s, struct tsm_config *cfg)
{
	struct tsm_config *old;

	pthread_mutex_lock(&s->cfg_lock);
	old = s->cfg;
	s->cfg = tsm_config_ref(cfg);
	pthread_mutex_unlock(&s->cfg_lock);
	if (str_differs(old->listen, cfg->listen) || old->tls != cfg->tls ||
	    str_differs(old->tls_cert, cfg->tls_cert) ||
	    str_differs(old->tls_key, cfg->tls_key) ||
	    str_differs(old->tls_client_ca, cfg->tls_client_ca) ||
	    str_differs(old->kms_socket, cfg->kms_socket) ||
	    str_differs(old->var_dir, cfg->var_dir) ||
	    old->lim.workers != cfg->lim.workers ||
	    old->lim.max_connections != cfg->lim.max_connections ||
	    old->lim.conn_timeout_s != cfg->lim.conn_timeout_s ||
	    old->lim.store_map_mib != cfg->lim.store_map_mib)
		log_msg(LOG_WARN, "event=reload_partial note=\"listen, tls, "
		    "varDir, kmsSocket, workers, maxConnections, "
		    "connectionTimeoutS and storeMapMiB take effect at the next "
		    "restart\"");
	log_set_level(cfg->log_level);
	log_msg(LOG_INFO, "event=reloaded peers=%zu max_body=%zu max_depth=%u "
	    "request_timeout_ms=%u", cfg->npeers, cfg->lim.max_body,
	    cfg->lim.max_json_depth, cfg->lim.request_timeout_ms);
	tsm_config_unref(old);
}

void
http_server_stop(struct http_server *s, unsigned drain_ms)
{
	MHD_socket lfd;
	uint64_t until = now_ms() + drain_ms;
	long left;

	if (s == NULL)
		return;
	lfd = MHD_quiesce_daemon(s->d);
	while ((left = http_metrics_inflight_now()) > 0 && now_ms() < until)
		usleep(10000);
	if (left > 0)
		log_msg(LOG_WARN, "event=drain_timeout in_flight=%ld", left);
	/* Queued requests are handled and their connections resumed before
	 * MHD stops (it must not stop with a connection suspended); then MHD
	 * gets a moment to send what they answered. */
	pool_stop(s);
	until = now_ms() + 500;
	while (http_metrics_inflight_now() > 0 && now_ms() < until)
		usleep(5000);
	MHD_stop_daemon(s->d);
	if (lfd != MHD_INVALID_SOCKET)
		close(lfd);
	http_tls_cleanup(&s->tls);
	http_metrics_cleanup();
	tsm_config_unref(s->cfg);
	pthread_cond_destroy(&s->pool.cv);
	pthread_mutex_destroy(&s->pool.mu);
	pthread_mutex_destroy(&s->cfg_lock);
	free(s);
}
