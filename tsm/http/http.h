/*
 * http.h - tsmd's HTTPS server framework on libmicrohttpd: routes, the
 * request/response objects handlers see, bearer API keys, TLS client
 * certificates, X-TSM-Signature message authentication (§8.3), metrics and
 * the per-thread kmsd connection. Runs in tsmd; trusts nothing from the
 * network: every limit is checked before a handler runs. See README.md.
 */
#ifndef SPTSM_HTTP_H
#define SPTSM_HTTP_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "kms/base.h"
#include "kms/kms.h"
#include "tsm/config.h"

/* GnuTLS priority string for the server (README.md explains each part):
 * TLS 1.3 and 1.2 only, ECDHE key exchange, AEAD ciphers only, no SHA-1
 * signatures, server's cipher order. */
#define HTTP_TLS_PRIORITIES \
	"SECURE128:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2:-CIPHER-ALL:" \
	"+AES-256-GCM:+AES-128-GCM:+CHACHA20-POLY1305:-MAC-ALL:+AEAD:" \
	"-KX-ALL:+ECDHE-ECDSA:+ECDHE-RSA:-SIGN-RSA-SHA1:-SIGN-ECDSA-SHA1:" \
	"-SIGN-DSA-SHA1:%SERVER_PRECEDENCE"

#define HTTP_MAX_PATH     2048	/* request path bytes */
#define HTTP_MAX_SEGS     24	/* path segments */
#define HTTP_MAX_PARAMS   8	/* {params} per route */
#define HTTP_JSON_DEPTH_MAX TSM_JSON_DEPTH_MAX

/* Who may call a route. Checked by the framework before the body is read
 * (the signature of HTTP_AUTH_SEI_PEER after, since it covers the body). */
enum http_auth {
	HTTP_AUTH_NONE = 0,
	HTTP_AUTH_ADMIN,	/* Bearer key with role admin */
	HTTP_AUTH_PROVIDER,	/* Bearer key with role provider or admin */
	HTTP_AUTH_CLIENT_CERT,	/* a TLS client certificate that chains to
				 * tls.clientCa: 401 none, 403 not valid */
	HTTP_AUTH_SEI_PEER,	/* X-TSM-Signature of a configured peer, checked
				 * in kmsd, plus the peer's client certificate
				 * when it has clientCertRequired; the reply is
				 * signed with the same key */
};

enum http_role { HTTP_ROLE_NONE = 0, HTTP_ROLE_ADMIN = 1, HTTP_ROLE_PROVIDER = 2 };

/* The caller behind a bearer key. */
struct http_identity {
	int  role;		/* HTTP_ROLE_* */
	char key_id[24];	/* public id of the key, never the key */
	char provider[65];	/* provider id ("" for admin keys) */
};

/* A TLS client certificate the framework verified (chain to tls.clientCa,
 * validity period, TLS client purpose). */
struct http_client_cert {
	char    subject[256];	/* RFC 2253 */
	char    cn[129];	/* the subject's one commonName, printable
				 * ASCII; "" when absent, repeated or not */
	char    issuer[256];
	char    sha256[65];	/* lowercase hex of SHA-256(DER of the leaf) */
	int64_t not_after;	/* unix seconds */
};

struct http_router;
struct http_req;
struct http_resp;
struct http_server;
struct http_apikeys;
struct http_sig;

/*
 * A handler fills `rs` (http_resp_json / http_resp_error / http_resp_body)
 * and returns 0, or returns a negative ERR_* and the framework answers
 * with a JSON error (ERR_INVAL/ERR_PARSE 400, ERR_AUTH 401, ERR_DENIED 403,
 * ERR_NOTFOUND 404, ERR_EXISTS/ERR_WRONGSTATE 409, ERR_TOOBIG 413,
 * ERR_BUSY/ERR_SEALED/ERR_IO/ERR_CLOSED 503, ERR_TIMEOUT 504, else 500).
 * Handlers run on the server's worker threads, many at once.
 */
typedef int (*http_handler_fn)(struct http_req *rq, struct http_resp *rs,
    void *arg);

/*
 * Handing a request off. A handler on a worker (http_req_can_defer) may
 * pass rq to another thread (e.g. a store_batch_commit_async callback)
 * and return HTTP_DEFERRED: the worker goes on with the next request.
 * From then on rq belongs to that thread, which finishes it with exactly
 * one of:
 *   http_req_done(rq, rc)       - rc as a handler returns it (0 or an
 *                                 ERR_*), the answer in http_req_resp(rq).
 *                                 Never blocks: an
 *                                 answer that needs more (an error, an
 *                                 unsettled MAC, a signature to make) is
 *                                 finished on a worker.
 *   http_req_continue(rq, fn, a) - fn(rq, rs, a) runs on a worker as a
 *                                 handler would (it may block, or hand
 *                                 off again).
 * Neither the handler nor that thread may touch rq afterwards: it may be
 * answered and freed at once. The server's stop waits for handed-off
 * requests.
 */
#define HTTP_DEFERRED 0x44454652	/* no ERR_* (those are < 0) */
#define HTTP_ON_WORKER 0x574f524b	/* starts_on_io: run me on a worker */
/* 1 while a starts_on_io handler runs on MHD's thread: it must not
 * block. There http_req_can_defer suspends the connection and counts the
 * request as handed off (the handler must then hand it off, or
 * http_req_continue it). */
int  http_req_on_io_thread(const struct http_req *rq);
int  http_req_can_defer(const struct http_req *rq);
void http_req_done(struct http_req *rq, int rc);
void http_req_continue(struct http_req *rq, http_handler_fn fn, void *arg);
struct http_resp *http_req_resp(struct http_req *rq);

/* ---- router ------------------------------------------------------------- */

/* `app` is handed to every handler through http_req_app(). */
int  http_router_new(struct http_router **out, void *app) WUR;
void http_router_free(struct http_router *r);

/*
 * Adds a route. method: GET, POST, PUT, DELETE or PATCH (HEAD is served by
 * GET routes). pattern: "/a/{name}/b": literal segments and {params} that
 * match one non-empty segment; a literal segment wins over a {param} in
 * the same place. Errors: ERR_INVAL (bad method/pattern), ERR_EXISTS (same
 * method and shape already there), ERR_LIMIT, ERR_NOMEM.
 */
int  http_route_add(struct http_router *r, const char *method,
	    const char *pattern, enum http_auth auth, http_handler_fn fn,
	    void *arg) WUR;

/*
 * Shapes every error answer on a route - the framework's own refusals
 * (signature, replay, body size, JSON syntax, deadline, kmsd down, a
 * handler's ERR_*) and http_resp_error(): status is the HTTP status, code
 * the machine reason ("signature_invalid", "replay", "payload_too_large",
 * ...; tsm/http/README.md lists them), msg the text. Returns a new JSON
 * body, or NULL to fall back to the default shape. Must not block.
 */
typedef json_t *(*http_error_fn)(int status, const char *code,
    const char *msg);

/* Per-route options beyond http_route_add (zero = default). */
struct http_route_ext {
	http_error_fn error;	/* error body shape; NULL: the default */
	int nonce_durable;	/* HTTP_AUTH_SEI_PEER only: the handler claims
				 * http_req_sig()->nonce in its own durable
				 * store batch, so a full in-memory replay
				 * cache lets the request through to it
				 * instead of answering 503 */
	int inline_ok;		/* the handler never waits (no store commit,
				 * no SEI-TSM, at most a cached kmsd probe):
				 * it runs on MHD's thread, without the
				 * hand-off to a worker */
	int mac_in_handler;	/* HTTP_AUTH_SEI_PEER only: the MAC is not
				 * checked before the handler, which has
				 * kmsd check it in the same request as its
				 * own work (http_req_sig_pending) and
				 * settles it (http_req_sig_settle) before
				 * it changes anything; an answer it makes
				 * otherwise waits for the usual check */
	int starts_on_io;	/* the handler first runs on MHD's thread
				 * (http_req_on_io_thread), where it must not
				 * block: it hands the request off, or returns
				 * HTTP_ON_WORKER to run again from the start
				 * on a worker. With mac_in_handler only: the
				 * framework's MAC check would wait on kmsd */
};

/* Sets the options of the route with exactly this method and pattern.
 * Errors: ERR_NOTFOUND (no such route), ERR_INVAL. */
int  http_route_extend(struct http_router *r, const char *method,
	    const char *pattern, const struct http_route_ext *x) WUR;

/* ---- request (valid until the handler returns) --------------------------- */

const char *http_req_method(const struct http_req *rq);
const char *http_req_path(const struct http_req *rq);	/* decoded, no query */
const char *http_req_route(const struct http_req *rq);	/* the pattern */
const char *http_req_id(const struct http_req *rq);	/* also X-Request-Id */
/* A {param} of the route; NULL if the route has no such param. */
const char *http_req_param(const struct http_req *rq, const char *name);
/* A query argument, a request header (case-insensitive); NULL if absent. */
const char *http_req_query(const struct http_req *rq, const char *name);
const char *http_req_header(const struct http_req *rq, const char *name);
/* The body (NULL/0 when empty). */
const uint8_t *http_req_body(const struct http_req *rq, size_t *len);
/* The parsed body when the content type is application/json, else NULL.
 * Borrowed: do not decref. Depth and size were checked. */
json_t *http_req_json(const struct http_req *rq);
/* Bearer caller (routes with ADMIN/PROVIDER auth), else NULL. */
const struct http_identity *http_req_identity(const struct http_req *rq);
/* Verified TLS client certificate, else NULL. */
const struct http_client_cert *http_req_cert(const struct http_req *rq);
/* The authenticated SEI-TSM peer (HTTP_AUTH_SEI_PEER routes), else NULL. */
const struct tsm_peer *http_req_peer(const struct http_req *rq);
/* The request's verified X-TSM-Signature (keyId, ts, nonce): set once the
 * MAC verified and the nonce passed the in-memory cache, else NULL. A
 * handler that changes state claims the nonce durably with it. */
const struct http_sig *http_req_sig(const struct http_req *rq);
/* The configuration this request runs under (stays valid while it runs,
 * even across a SIGHUP reload). */
const struct tsm_config *http_req_config(const struct http_req *rq);
void *http_req_app(const struct http_req *rq);
/* Monotonic microseconds (now_us) by which the handler must have answered;
 * outbound calls should use the time left. */
uint64_t http_req_deadline(const struct http_req *rq);
int  http_req_expired(const struct http_req *rq);

/* ---- response ---------------------------------------------------------------- */

/* Sets status and a JSON body; steals the reference. body == NULL (a failed
 * json_pack) returns ERR_NOMEM. */
int  http_resp_json(struct http_resp *rs, int status, json_t *body) WUR;
/* {"error": code, "message": text} - or, on SEI-TSM routes,
 * {"resultCode": 9999, "resultMessage": text, "error": code} - or what the
 * route's http_route_ext.error makes of (status, code, text). */
int  http_resp_error(struct http_resp *rs, int status, const char *code,
	    const char *fmt, ...) __attribute__((format(printf, 4, 5))) WUR;
int  http_resp_body(struct http_resp *rs, int status, const char *ctype,
	    const void *p, size_t n) WUR;
/* Extra header; name and value must be printable ASCII without CR/LF.
 * On HTTP_AUTH_SEI_PEER routes a handler may set X-TSM-Signature itself
 * (computed with http_sig_input over exactly the body it answers, with the
 * peer's key, e.g. pipelined with other kmsd work); the framework then
 * does not sign that answer again. */
int  http_resp_header(struct http_resp *rs, const char *name,
	    const char *value) WUR;

/*
 * Routes with mac_in_handler. Until the MAC is settled http_req_sig() is
 * NULL. http_req_sig_pending appends the string the peer MACed to `in`
 * and points *sig at the header as received, MAC unchecked (ERR_INVAL
 * when nothing is pending). http_req_sig_settle takes kmsd's verdict on
 * the MAC (0: verified, ERR_AUTH: not, other: could not tell) and checks
 * the nonce; http_req_sig_require verifies in kmsd now. Both: 0, go on;
 * -1, the refusal (401 or 503, as on other routes) is the answer and the
 * handler returns 0 at once. Nothing the handler answers leaves before
 * the MAC verified: an answer made while it is pending is checked after
 * the handler returns.
 */
int  http_req_sig_pending(const struct http_req *rq, struct buf *in,
	    const struct http_sig **sig) WUR;
int  http_req_sig_settle(struct http_req *rq, int verdict) WUR;
int  http_req_sig_require(struct http_req *rq) WUR;

/* ---- bearer API keys ----------------------------------------------------------- */

/*
 * Keys are "tsmk_" + 64 hex characters (256 random bits). The key file
 * holds one line per key: "<id> <role> <provider|-> <sha256-hex> <created>";
 * only the hash of a key is ever stored. A missing file is an empty set.
 */
int  http_apikeys_open(struct http_apikeys **out, const char *path) WUR;
void http_apikeys_free(struct http_apikeys *ak);
/* First run (the key file did not exist): creates an admin key, writes it
 * to admin_key_path (one line, mode 0600) and its hash to the key file.
 * Does nothing when the key file existed. *created = 1 when it made one. */
int  http_apikeys_bootstrap(struct http_apikeys *ak, const char *admin_key_path,
	    int *created) WUR;
/* ERR_AUTH unless key is a known key; fills *id. */
int  http_apikeys_check(struct http_apikeys *ak, const char *key,
	    struct http_identity *id) WUR;
/* New key (role admin, or provider with a provider id); key_out gets the
 * key (cap >= 70), id_out its id (cap >= 24). Persists before returning. */
int  http_apikeys_create(struct http_apikeys *ak, int role,
	    const char *provider, char *key_out, size_t cap, char *id_out,
	    size_t idcap) WUR;
/* ERR_NOTFOUND when no such id. Persists before returning. */
int  http_apikeys_revoke(struct http_apikeys *ak, const char *id) WUR;
/* JSON array of {id, role, providerId, created}; no hashes. */
int  http_apikeys_list(struct http_apikeys *ak, json_t **out) WUR;
/* Re-reads the key file (SIGHUP); the old set stays on error. */
int  http_apikeys_reload(struct http_apikeys *ak) WUR;
int  http_role_parse(const char *s);	/* HTTP_ROLE_NONE when unknown */
const char *http_role_name(int role);

/* ---- server -------------------------------------------------------------------- */

/*
 * Starts the server described by cfg (listen, tls, limits) on its worker
 * threads, serving the routes of r with the keys of ak. Takes a reference
 * on cfg. TLS material must exist (http_tls_bootstrap). Errors: ERR_INVAL
 * (listen/--no-tls misuse), ERR_IO (cannot bind, cannot read TLS files),
 * ERR_DENIED (key file readable by others), ERR_CRYPTO.
 */
int  http_server_start(struct http_server **out, struct tsm_config *cfg,
	    struct http_router *r, struct http_apikeys *ak) WUR;
/* The bound port (useful with port 0). */
uint16_t http_server_port(const struct http_server *s);
/* Requests being handled right now. */
long http_server_inflight(const struct http_server *s);
/* Swaps in a new configuration for requests that start from now on
 * (limits, peers, log level); settings that need a restart are reported
 * in the log and keep their old value. Takes a reference on cfg. */
void http_server_reload(struct http_server *s, struct tsm_config *cfg);
/* Stops accepting, waits up to drain_ms for in-flight requests, closes
 * every connection and frees the server. */
void http_server_stop(struct http_server *s, unsigned drain_ms);

/* The built-in routes: GET /healthz, GET /metrics, GET /api/v1/whoami,
 * GET|POST /api/v1/apikeys, DELETE /api/v1/apikeys/{id},
 * GET /api/v1/sei/ping (client certificate), POST /api/v1/sei/ping
 * (signed, SEI-TSM peers). The router's app pointer is unused by them;
 * ak is the key set they manage. */
int  http_builtin_register(struct http_router *r, struct http_apikeys *ak) WUR;

/* ---- TLS material -------------------------------------------------------------- */

/*
 * First start: when neither cert_path nor key_path exists, makes a
 * self-signed EC P-256 server certificate (SAN: host, 127.0.0.1,
 * localhost; one year), writes the key (mode 0600), the certificate, and
 * the certificate again to ca_path (the file clients trust). *created = 1
 * then. Exactly one of the two existing is ERR_INVAL.
 */
int  http_tls_bootstrap(const char *cert_path, const char *key_path,
	    const char *ca_path, const char *host, int *created) WUR;

/* ---- X-TSM-Signature (ARCHITECTURE.md "External contracts") -------------------- */

struct http_sig {
	char    key_id[65];
	int64_t ts;
	char    nonce[33];	/* lowercase hex */
	uint8_t sig[32];
};
#define HTTP_SIG_HEADER "X-TSM-Signature"
#define HTTP_SIG_WINDOW_S 300
#define HTTP_SIG_HDR_MAX  256	/* a header value with a 64-char keyId fits */

/* Parses "keyId=<id>,ts=<unix>,nonce=<32 hex>,sig=<64 hex>" (each field
 * once, any order). ERR_PARSE on anything else. Pure; fuzzed. */
int  http_sig_parse(const char *hdr, struct http_sig *out) WUR;
/* The signed string METHOD "\n" PATH "\n" ts "\n" nonce "\n"
 * hex(SHA-256(body)), appended to out; http_sig_head appends all but the
 * body's hash (for kmsd's keyset.receive, which signs an answer whose body
 * it completes). */
int  http_sig_head(struct buf *out, const char *method, const char *path,
	    int64_t ts, const char *nonce) WUR;
int  http_sig_input(struct buf *out, const char *method, const char *path,
	    int64_t ts, const char *nonce, const uint8_t *body, size_t n) WUR;
/* The X-TSM-Signature value "keyId=..,ts=..,nonce=..,sig=<hex mac>" into
 * hdr; ERR_TOOBIG when it does not fit cap. */
int  http_sig_header(char *hdr, size_t cap, const char *key_id, int64_t ts,
	    const char *nonce, const uint8_t mac[32]) WUR;
/* A fresh nonce: 16 random bytes as 32 lowercase hex digits. The bytes
 * come from a per-thread pool refilled 32 nonces at a time (one DRBG call,
 * and its fork check, instead of one per nonce; tsmd does not fork). */
int  http_sig_nonce(char out[33]) WUR;
/* Signs with kmsd key `key_label` (fresh ts and nonce) and writes the
 * header value to hdr (cap >= 200). For responses and for the SEI client. */
int  http_sig_make(struct kms_client *c, const char *key_label,
	    const char *key_id, const char *method, const char *path,
	    const uint8_t *body, size_t n, char *hdr, size_t cap) WUR;
/* Checks the signature in kmsd: ERR_AUTH on a wrong one. */
int  http_sig_verify(struct kms_client *c, const char *key_label,
	    const struct http_sig *s, const char *method, const char *path,
	    const uint8_t *body, size_t n) WUR;
/* The process-wide replay cache of X-TSM-Signature nonces, for requests
 * (the server) and answers (tsm/sei's client): 0 when (key_id, nonce) is
 * new (and records it until ts + window); ERR_EXISTS when seen; ERR_LIMIT
 * when the cache is full. */
int  http_nonce_check(const char *key_id, const char *nonce, int64_t ts,
	    int64_t now) WUR;
/* 1 when (key_id, nonce) is in the cache (and live); records nothing. */
int  http_nonce_seen(const char *key_id, const char *nonce, int64_t now);
void http_nonce_cleanup(void);

/* ---- kmsd connection of the calling worker thread ------------------------------ */

/* Set once before the server starts. */
int  tsm_kms_init(const char *sock_path) WUR;
/* This thread's kmsd client, connected lazily (a failed connect is retried
 * at most once a second); NULL while kmsd is unreachable. The library
 * reconnects after ERR_CLOSED by itself. Closed when the thread exits. */
struct kms_client *tsm_kms(void);
/* Feeds the kmsd latency histogram; op is a KMS_OP_*, rc the call's
 * result. Every kms_* call made by tsmd code should report here. */
void tsm_kms_observe(int op, double seconds, int rc);
/* Closes the calling thread's client (main thread, at exit). */
void tsm_kms_cleanup(void);
/*
 * A request on tsmd's shared pipelined kmsd connection, for a caller that
 * must not wait (a handler handing its request off): body is sent now;
 * fn(status, reply, arg) runs once on the pipe's reader thread with
 * kmsd's status and reply body (valid during the call only), or with
 * ERR_CLOSED, ERR_TIMEOUT (no reply in 30 s), ERR_IO or ERR_PROTO and a
 * NULL reply when the connection failed first: the request may or may
 * not have run. fn holds up every later reply: it must not block. 0: sent,
 * fn will run; else (kmsd unreachable, ERR_IO; stopping, ERR_CLOSED;
 * ERR_NOMEM) fn will not run. Latencies go to tsm_kms_observe.
 */
typedef void (*tsm_kms_reply_fn)(int status, struct rd *reply, void *arg);
int  tsm_kms_send(int op, const struct buf *body, tsm_kms_reply_fn fn,
	    void *arg, int nowait) WUR;
/* (nowait, for MHD's thread: never connects, never waits for the send
 * lock or for room in the socket; ERR_BUSY instead, and nothing sent.
 * A connection that fails ends with rc for its oldest request, whose
 * reply was due, and ERR_CLOSED for the others; a sender meeting another
 * that is connecting gets ERR_BUSY at once. fn may read the store: LMDB
 * reads do not wait on the writer.) */
/* After the server stopped: waits for the pipe's outstanding replies (or
 * their timeout), ends its reader, closes it. */
void tsm_kms_pipe_stop(void);
/* kmsd state, at most about a second old: 0 ready, ERR_SEALED, ERR_IO;
 * ERR_TIMEOUT while a probe has waited over 3 s for kmsd (hung). The
 * first call starts a thread that probes at once and then once a second,
 * and waits for its first probe, at most 3 s; later calls answer from
 * memory (tsmd makes the first call at start, so MHD's threads never
 * wait). */
int  tsm_kms_health(void);

#endif
