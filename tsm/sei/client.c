/*
 * client.c - tsmd's SEI-TSM client (§9.1-9.3, client.h, client.md): one
 * libcurl easy handle per call, X-TSM-Signature made and checked in kmsd
 * through tsm/http's signature code and replay cache for answer nonces,
 * strict JSON checks of the answers, retries with backoff where repeating
 * is harmless, and one task-history entry per call. Runs in tsmd on any
 * worker thread; the network and the peer's answers are untrusted.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>
#include <openssl/rand.h>

#include "tsm/http/http.h"
#include "tsm/sei/client.h"
#include "tsm/store/store.h"

#define APDU_HEX_MAX  (2 * (65535 + 9))	/* extended APDU / response */
#define RAW_HEX_MAX   (2 * (65535 + 5))
#define TASK_ID_MAX   64
#define NOTE_MAX      255		/* STORE_TEXT_MAX */
#define HIST_TRIES    8			/* task CAS retries */

enum call_kind { K_MANAGE = 1, K_INSTR, K_TOKEN };

static const char *const kind_path[] = { "", "/ssd/manage",
	"/ssd/instructions", "/token" };
static const char *const kind_name[] = { "", "9.1 ssd/manage",
	"9.2 ssd/instructions", "9.3 token" };

/* ---- results ---- */

static void
list_free(struct sei_list *l)
{
	size_t i;

	for (i = 0; i < l->n; i++)
		free(l->v[i]);
	free(l->v);
	l->v = NULL;
	l->n = 0;
}

void
sei_result_init(struct sei_result *r)
{
	memset(r, 0, sizeof(*r));
	r->result_code = -1;
}

void
sei_result_cleanup(struct sei_result *r)
{
	list_free(&r->apdus);
	list_free(&r->tokens);
	sei_result_init(r);
}

static void __attribute__((format(printf, 2, 3)))
res_err(struct sei_result *r, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(r->error, sizeof(r->error), fmt, ap);
	va_end(ap);
}

int
sei_client_init(void)
{
	return curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK ? 0 :
	    ERR_INTERNAL;
}

void
sei_client_cleanup(void)
{
	curl_global_cleanup();
}

void
sei_client_opts_default(struct sei_client_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->connect_timeout_ms = 5000;
	o->timeout_ms = 30000;
	o->max_attempts = 3;
	o->backoff_ms = 250;
}

/* ---- input checks ---- */

static int
is_hex(const char *s, size_t min, size_t max)
{
	size_t n = s != NULL ? strlen(s) : 0;

	return n >= min && n <= max && n % 2 == 0 &&
	    strspn(s, "0123456789abcdefABCDEF") == n;
}

static char *
upper_dup(const char *s)
{
	char *d = strdup(s);
	size_t i;

	for (i = 0; d != NULL && d[i]; i++)
		if (d[i] >= 'a' && d[i] <= 'f')
			d[i] = (char)(d[i] - 'a' + 'A');
	return d;
}

static json_t *
hex_str(const char *s)
{
	char *u = upper_dup(s);
	json_t *j = u ? json_string(u) : NULL;

	free(u);
	return j;
}

/* The request list of the hex strings v[0..n-1], upper case; ERR_INVAL
 * (res->error names the element and says `rule`) for one that is not hex
 * of min..max digits. */
static int
hex_array(const char *const *v, size_t n, size_t min, size_t max,
    const char *name, const char *rule, struct sei_result *res, json_t **out)
{
	json_t *l;
	size_t i;

	*out = NULL;
	if ((l = json_array()) == NULL)
		return ERR_NOMEM;
	for (i = 0; i < n; i++) {
		if (!is_hex(v[i], min, max)) {
			json_decref(l);
			res_err(res, "%s[%zu]: %s", name, i, rule);
			return ERR_INVAL;
		}
		if (json_array_append_new(l, hex_str(v[i])) != 0) {
			json_decref(l);
			return ERR_NOMEM;
		}
	}
	*out = l;
	return 0;
}

/* A printable single-line id as the peer may give it. */
static int
id_ok(const char *s, size_t max)
{
	size_t i, n = s ? strlen(s) : 0;

	if (n == 0 || n > max)
		return 0;
	for (i = 0; i < n; i++)
		if ((unsigned char)s[i] < 0x21 || (unsigned char)s[i] > 0x7E ||
		    s[i] == '|')
			return 0;
	return 1;
}

/* Copies text with control characters (and non-ASCII) replaced. */
static void
sanitize(char *dst, size_t cap, const char *src)
{
	size_t i;

	if (cap == 0)
		return;
	for (i = 0; src != NULL && src[i] && i + 1 < cap; i++)
		dst[i] = (unsigned char)src[i] < 0x20 ||
		    (unsigned char)src[i] > 0x7E ? '?' : src[i];
	dst[i] = '\0';
}

/* ---- one HTTP exchange ---- */

struct reply {
	struct buf body;
	char       sig[600];
	int        nsig;
	int        too_big;
};

static size_t
on_body(char *p, size_t sz, size_t n, void *u)
{
	struct reply *r = u;

	if (r->body.len + sz * n > SEI_CLIENT_BODY_MAX) {
		r->too_big = 1;
		return 0;
	}
	return buf_put(&r->body, p, sz * n) == 0 ? sz * n : 0;
}

static size_t
on_header(char *p, size_t sz, size_t n, void *u)
{
	static const char name[] = "X-TSM-Signature:";
	struct reply *r = u;
	size_t l = sz * n, hl = sizeof(name) - 1, vl;
	const char *v;

	if (l > 5 && strncmp(p, "HTTP/", 5) == 0) {
		r->sig[0] = '\0';	/* a new response (after 1xx) */
		r->nsig = 0;
	}
	if (l <= hl || strncasecmp(p, name, hl) != 0)
		return l;
	v = p + hl;
	vl = l - hl;
	while (vl > 0 && (*v == ' ' || *v == '\t')) {
		v++;
		vl--;
	}
	while (vl > 0 && (v[vl - 1] == '\r' || v[vl - 1] == '\n' ||
	    v[vl - 1] == ' ' || v[vl - 1] == '\t'))
		vl--;
	r->nsig++;
	if (vl < sizeof(r->sig)) {
		memcpy(r->sig, v, vl);
		r->sig[vl] = '\0';
	} else {
		r->sig[0] = '\0';
	}
	return l;
}

/* Outcome classes of one attempt, for the retry decision. */
enum {
	A_ANSWER = 0,	/* a signed answer came back */
	A_NOT_SENT,	/* the request cannot have reached the peer */
	A_UNKNOWN,	/* it may have: timeout, reset, 5xx without signature */
	A_FINAL,	/* do not repeat: auth, TLS verification, protocol */
};

/* The path the peer signs over: that of base_url + endpoint. */
static void
url_path(const char *url, char *out, size_t cap)
{
	const char *p = strstr(url, "://");
	const char *slash = p ? strchr(p + 3, '/') : NULL;

	snprintf(out, cap, "%s", slash ? slash : "/");
}

static int
attempt(const struct tsm_peer *peer, const struct sei_call *call,
    const struct sei_client_opts *o, const char *url, const char *body,
    json_t **answer, struct sei_result *res, int *klass)
{
	CURL *h = NULL;
	struct curl_slist *hl = NULL;
	struct reply r;
	struct http_sig sg;
	char path[1024], sig[300], line[400], ex[121];
	uint64_t left_ms = o->timeout_ms;
	json_error_t je;
	CURLcode cc;
	size_t i, k;
	int rc;

	*answer = NULL;
	*klass = A_FINAL;
	memset(&r, 0, sizeof(r));
	buf_init(&r.body);
	url_path(url, path, sizeof(path));
	if (o->deadline_us != 0) {
		uint64_t now = now_us();

		if (now >= o->deadline_us) {
			res_err(res, "deadline passed before the call");
			rc = ERR_TIMEOUT;
			goto out;
		}
		if ((o->deadline_us - now) / 1000 < left_ms)
			left_ms = (o->deadline_us - now) / 1000;
		if (left_ms == 0)
			left_ms = 1;
	}
	if ((rc = http_sig_make(call->kms, peer->mac_key, peer->mac_key_id,
	    "POST", path, (const uint8_t *)body, strlen(body), sig,
	    sizeof(sig))) != 0) {
		res_err(res, "signing with %s in kmsd: %s", peer->mac_key,
		    err_str(rc));
		goto out;
	}
	if ((h = curl_easy_init()) == NULL) {
		rc = ERR_NOMEM;
		goto out;
	}
	snprintf(line, sizeof(line), "%s: %s", HTTP_SIG_HEADER, sig);
	hl = curl_slist_append(hl, line);
	hl = curl_slist_append(hl, "Content-Type: application/json");
	hl = curl_slist_append(hl, "Accept: application/json");
	hl = curl_slist_append(hl, "Expect:");
	if (hl == NULL) {
		rc = ERR_NOMEM;
		goto out;
	}
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, hl);
	curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
	curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, &r);
	curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(h, CURLOPT_HEADERDATA, &r);
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS,
	    (long)(o->connect_timeout_ms < left_ms ? o->connect_timeout_ms :
	    left_ms));
	curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)left_ms);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "https,http");
	curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L);
	curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 2L);
	curl_easy_setopt(h, CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2);
	if (peer->tls_ca != NULL)
		curl_easy_setopt(h, CURLOPT_CAINFO, peer->tls_ca);
	cc = curl_easy_perform(h);
	curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &res->http_status);
	if (cc != CURLE_OK) {
		res_err(res, "%s: %s", url, r.too_big ? "answer too large" :
		    curl_easy_strerror(cc));
		switch (cc) {
		case CURLE_COULDNT_RESOLVE_HOST:
		case CURLE_COULDNT_RESOLVE_PROXY:
		case CURLE_COULDNT_CONNECT:
		case CURLE_SSL_CONNECT_ERROR:
			/* No request bytes left before the handshake finished. */
			*klass = A_NOT_SENT;
			rc = ERR_IO;
			break;
		case CURLE_OPERATION_TIMEDOUT:
			*klass = A_UNKNOWN;
			rc = ERR_TIMEOUT;
			break;
		case CURLE_PEER_FAILED_VERIFICATION:
		case CURLE_SSL_CACERT_BADFILE:
		case CURLE_WRITE_ERROR:
		case CURLE_UNSUPPORTED_PROTOCOL:
		case CURLE_URL_MALFORMAT:
			*klass = A_FINAL;	/* configuration or a hostile answer */
			rc = r.too_big ? ERR_PROTO : ERR_IO;
			break;
		default:
			*klass = A_UNKNOWN;	/* reset, partial answer, ... */
			rc = ERR_IO;
			break;
		}
		goto out;
	}
	/* The body is unauthenticated until the signature checks out. */
	for (i = k = 0; i < r.body.len && k < sizeof(ex) - 1; i++)
		ex[k++] = r.body.p[i] >= 0x20 && r.body.p[i] < 0x7F ?
		    (char)r.body.p[i] : '.';
	ex[k] = '\0';
	if (r.nsig != 1 || http_sig_parse(r.sig, &sg) != 0) {
		if (res->http_status >= 500 || res->http_status == 429) {
			*klass = A_UNKNOWN;
			rc = ERR_IO;
		} else {
			rc = ERR_AUTH;
		}
		res_err(res, "HTTP %ld from %s without a valid X-TSM-Signature "
		    "(%s); unauthenticated body: %s", res->http_status, url,
		    r.nsig == 0 ? "missing" : r.nsig > 1 ? "given twice" :
		    "malformed", ex);
		goto out;
	}
	if (strcmp(sg.key_id, peer->mac_key_id) != 0) {
		res_err(res, "answer signed with keyId %s, expected %s", sg.key_id,
		    peer->mac_key_id);
		rc = ERR_AUTH;
		goto out;
	}
	if (sg.ts > wall_seconds() + HTTP_SIG_WINDOW_S ||
	    sg.ts < wall_seconds() - HTTP_SIG_WINDOW_S) {
		res_err(res, "answer signature ts %lld is more than %d s away",
		    (long long)sg.ts, HTTP_SIG_WINDOW_S);
		rc = ERR_AUTH;
		goto out;
	}
	if ((rc = http_sig_verify(call->kms, peer->mac_key, &sg, "POST", path,
	    r.body.p, r.body.len)) != 0) {
		res_err(res, "answer signature %s (HTTP %ld)", rc == ERR_AUTH ?
		    "does not verify" : err_str(rc), res->http_status);
		rc = rc == ERR_AUTH ? ERR_AUTH : rc;
		goto out;
	}
	/* Answers share tsmd's replay cache: the same (keyId, nonce) twice is
	 * a replay whichever direction it came from. */
	if ((rc = http_nonce_check(sg.key_id, sg.nonce, sg.ts,
	    wall_seconds())) != 0) {
		res_err(res, "%s", rc == ERR_EXISTS ? "answer replayed (nonce seen)" :
		    rc == ERR_LIMIT ? "answer nonce cache full" : err_str(rc));
		rc = rc == ERR_EXISTS ? ERR_AUTH : rc;
		goto out;
	}
	*answer = json_loadb((const char *)r.body.p, r.body.len,
	    JSON_REJECT_DUPLICATES, &je);
	if (!json_is_object(*answer)) {
		json_decref(*answer);
		*answer = NULL;
		res_err(res, "HTTP %ld: signed answer is not a JSON object",
		    res->http_status);
		rc = ERR_PROTO;
		goto out;
	}
	*klass = A_ANSWER;
	rc = 0;
out:
	curl_slist_free_all(hl);
	if (h != NULL)
		curl_easy_cleanup(h);
	buf_free(&r.body);
	return rc;
}

/* ---- answer parsing ---- */

static int
result_code(json_t *v, long *out)
{
	const char *s;
	char *end;

	if (json_is_integer(v)) {
		*out = (long)json_integer_value(v);
		return 0;
	}
	/* "0000" / "9999": the examples in the standard's tables */
	if ((s = json_string_value(v)) != NULL && *s != '\0' && strlen(s) <= 9 &&
	    strspn(s, "0123456789") == strlen(s)) {
		*out = strtol(s, &end, 10);
		return 0;
	}
	return ERR_PROTO;
}

static int
hex_list(json_t *a, size_t maxlen, size_t min, struct sei_list *l,
    const char *name, struct sei_result *res)
{
	json_t *v;
	size_t i;

	if (!json_is_array(a) || json_array_size(a) > SEI_CLIENT_LIST_MAX) {
		res_err(res, "answer: %s is not a list of at most %d strings", name,
		    SEI_CLIENT_LIST_MAX);
		return ERR_PROTO;
	}
	if (json_array_size(a) > 0 &&
	    (l->v = calloc(json_array_size(a), sizeof(*l->v))) == NULL)
		return ERR_NOMEM;
	json_array_foreach(a, i, v) {
		if (!is_hex(json_string_value(v), min, maxlen)) {
			res_err(res, "answer: %s[%zu] is not hex of the expected size",
			    name, i);
			return ERR_PROTO;
		}
		if ((l->v[i] = upper_dup(json_string_value(v))) == NULL)
			return ERR_NOMEM;
		l->n = i + 1;
	}
	return 0;
}

static int
parse_answer(enum call_kind kind, json_t *j, const char *task_id,
    const char *se_id, size_t nraw, struct sei_result *res)
{
	json_t *msg = json_object_get(j, "resultMessage"), *t;
	const char *s;
	int rc;

	if ((rc = result_code(json_object_get(j, "resultCode"),
	    &res->result_code)) != 0) {
		res_err(res, "answer: resultCode missing or not an integer");
		return rc;
	}
	if (msg != NULL && !json_is_string(msg) && !json_is_null(msg)) {
		res_err(res, "answer: resultMessage is not a string");
		return ERR_PROTO;
	}
	sanitize(res->result_message, sizeof(res->result_message),
	    json_string_value(msg));
	if (res->result_code != 0) {
		s = json_string_value(json_object_get(j, "taskId"));
		if (kind != K_TOKEN && id_ok(s, TASK_ID_MAX))
			snprintf(res->task_id, sizeof(res->task_id), "%s", s);
		res_err(res, "peer resultCode %ld: %s", res->result_code,
		    res->result_message);
		return ERR_DENIED;	/* lists are optional in a refusal */
	}
	if (kind == K_TOKEN) {
		s = json_string_value(json_object_get(j, "seId"));
		if (s == NULL || strcasecmp(s, se_id) != 0) {
			res_err(res, "answer: seId missing or not the one asked for");
			return ERR_PROTO;
		}
		snprintf(res->se_id, sizeof(res->se_id), "%s", s);
		if ((rc = hex_list(json_object_get(j, "token"), 2 * 512, 2,
		    &res->tokens, "token", res)) != 0)
			return rc;
		if (res->tokens.n != nraw) {
			res_err(res, "answer: %zu tokens for %zu rawData", res->tokens.n,
			    nraw);
			return ERR_PROTO;
		}
		return 0;
	}
	t = json_object_get(j, "taskId");
	if (!id_ok(s = json_string_value(t), TASK_ID_MAX)) {
		res_err(res, "answer: taskId missing or not a printable id of "
		    "1..%d", TASK_ID_MAX);
		return ERR_PROTO;
	}
	if (task_id != NULL && strcmp(s, task_id) != 0) {
		res_err(res, "answer: taskId %s, asked about %s", s, task_id);
		return ERR_PROTO;
	}
	snprintf(res->task_id, sizeof(res->task_id), "%s", s);
	if ((rc = hex_list(json_object_get(j, "apduList"), APDU_HEX_MAX, 8,
	    &res->apdus, "apduList", res)) != 0)
		return rc;
	res->done = res->apdus.n == 0;
	return 0;
}

int
sei_client_answer_parse(int call, const uint8_t *body, size_t n,
    const char *task_id, const char *se_id, size_t nraw,
    struct sei_result *res)
{
	json_error_t je;
	json_t *j;
	int rc;

	if (call < K_MANAGE || call > K_TOKEN || (call == K_TOKEN &&
	    se_id == NULL))
		return ERR_INVAL;
	if (n > SEI_CLIENT_BODY_MAX)
		return ERR_PROTO;
	j = json_loadb((const char *)body, n, JSON_REJECT_DUPLICATES, &je);
	if (!json_is_object(j)) {
		json_decref(j);
		res_err(res, "answer is not a JSON object");
		return ERR_PROTO;
	}
	rc = parse_answer((enum call_kind)call, j, task_id, se_id, nraw, res);
	json_decref(j);
	return rc;
}

/* ---- the task history ---- */

static void
record(const struct sei_call *call, const char *note)
{
	struct store_batch *b = NULL;
	struct store_task t;
	int i, rc = 0;

	if (call->store == NULL || call->task_id == NULL)
		return;
	if (store_batch_new(&b) != 0)
		return;
	for (i = 0; i < HIST_TRIES; i++) {
		store_task_init(&t);
		store_batch_clear(b);
		if ((rc = store_task_get(call->store, call->task_id, &t)) != 0 ||
		    (rc = store_batch_require_task(b, &t)) != 0 ||
		    (rc = store_task_hist_add(&t, (uint64_t)wall_seconds(),
		    note)) != 0)
			break;
		t.updated = (uint64_t)wall_seconds();
		if ((rc = store_batch_put_task(b, &t)) != 0)
			break;
		rc = store_batch_commit(call->store, b);
		store_task_cleanup(&t);
		if (rc != ERR_WRONGSTATE)	/* someone else changed the task */
			break;
	}
	store_task_cleanup(&t);
	store_batch_free(b);
	if (rc != 0)
		log_msg(LOG_WARN, "event=sei_history_failed task=%s err=%s",
		    call->task_id, err_name(rc));
}

/* ---- the call loop ---- */

static int
retryable(enum call_kind kind, const struct sei_call *call, int klass)
{
	if (klass == A_NOT_SENT)
		return 1;
	if (klass != A_UNKNOWN)
		return 0;
	/* §9.3 signs data: asking twice yields a second valid token for the
	 * same command, which is harmless. §9.1 starts a task at the SEI
	 * (CREATE twice could create twice) and §9.2 advances one, so they are
	 * repeated only for a peer that says it deduplicates. */
	return kind == K_TOKEN || call->peer_idempotent;
}

static uint64_t
backoff_ms(const struct sei_client_opts *o, unsigned n)
{
	uint64_t ms = (uint64_t)o->backoff_ms << (n > 10 ? 10 : n);
	uint16_t r = 0;

	if (RAND_bytes((uint8_t *)&r, sizeof(r)) != 1)
		r = 0x8000;
	/* +-25 % jitter so that many callers do not retry in step */
	return ms * 3 / 4 + (ms / 2) * r / 0xFFFF;
}

static int
run(enum call_kind kind, const struct tsm_peer *peer,
    const struct sei_call *call, json_t *body, const char *summary,
    const char *task_id, const char *se_id, size_t nraw,
    struct sei_result *res)
{
	struct sei_client_opts o;
	char url[1100], full[1024], note[NOTE_MAX + 1];
	char *text = NULL;
	json_t *ans = NULL;
	uint64_t t0 = now_us(), w;
	unsigned max;
	int rc = ERR_NOMEM, klass = A_FINAL;

	if (call->opts != NULL)
		o = *call->opts;
	else
		sei_client_opts_default(&o);
	max = o.max_attempts < 1 ? 1 : o.max_attempts > 10 ? 10 : o.max_attempts;
	if (snprintf(url, sizeof(url), "%s%s", peer->base_url, kind_path[kind]) >=
	    (int)sizeof(url)) {
		res_err(res, "base URL too long");
		rc = ERR_INVAL;
		goto out;
	}
	if ((text = json_dumps(body, JSON_COMPACT)) == NULL)
		goto out;
	for (res->attempts = 1;; res->attempts++) {
		list_free(&res->apdus);
		list_free(&res->tokens);
		res->error[0] = '\0';
		rc = attempt(peer, call, &o, url, text, &ans, res, &klass);
		if (rc == 0) {
			rc = parse_answer(kind, ans, task_id, se_id, nraw, res);
			break;
		}
		if (res->attempts >= max || !retryable(kind, call, klass))
			break;
		w = backoff_ms(&o, res->attempts - 1);
		if (o.deadline_us != 0 && now_us() + w * 1000 >= o.deadline_us)
			break;
		log_msg(LOG_INFO, "event=sei_retry peer=%s call=\"%s\" attempt=%u "
		    "wait_ms=%llu err=\"%s\"", peer->sei_tsm_id, kind_name[kind],
		    res->attempts, (unsigned long long)w, res->error);
		usleep((useconds_t)(w * 1000));
	}
out:
	res->elapsed_ms = (now_us() - t0) / 1000;
	if (rc == 0)
		snprintf(full, sizeof(full), "sei %s %s: resultCode 0%s%s %s%zu "
		    "(HTTP %ld, %u attempt%s, %llu ms)", kind_name[kind], summary,
		    kind != K_TOKEN ? " taskId=" : "", kind != K_TOKEN ?
		    res->task_id : "", kind == K_TOKEN ? "tokens=" : "apdus=",
		    kind == K_TOKEN ? res->tokens.n : res->apdus.n, res->http_status,
		    res->attempts, res->attempts == 1 ? "" : "s",
		    (unsigned long long)res->elapsed_ms);
	else
		snprintf(full, sizeof(full), "sei %s %s: %s: %s (HTTP %ld, %u "
		    "attempt%s, %llu ms)", kind_name[kind], summary, err_name(rc),
		    res->error, res->http_status, res->attempts,
		    res->attempts == 1 ? "" : "s",
		    (unsigned long long)res->elapsed_ms);
	sanitize(note, sizeof(note), full);	/* the history keeps 255 */
	record(call, note);
	log_msg(rc == 0 ? LOG_INFO : LOG_WARN, "event=sei_call peer=%s call=\"%s\" "
	    "task=%s http=%ld result=%ld attempts=%u dur_ms=%llu err=%s%s%s%s",
	    peer->sei_tsm_id, kind_name[kind], call->task_id ? call->task_id : "-",
	    res->http_status, res->result_code, res->attempts,
	    (unsigned long long)res->elapsed_ms, rc ? err_name(rc) : "-",
	    rc ? " detail=\"" : "", rc ? res->error : "", rc ? "\"" : "");
	json_decref(ans);
	free(text);
	return rc;
}

static int
call_ok(const struct tsm_peer *peer, const struct sei_call *call,
    struct sei_result *res)
{
	sei_result_init(res);
	if (peer == NULL || call == NULL || call->kms == NULL ||
	    peer->base_url == NULL || peer->mac_key == NULL ||
	    peer->mac_key_id == NULL || peer->tenant_id == NULL) {
		res_err(res, "peer, kmsd connection or peer keys missing");
		return ERR_INVAL;
	}
	return 0;
}

int
sei_ssd_manage(const struct tsm_peer *peer, const struct sei_call *call,
    const char *opt_type, const char *se_id, const char *sd_aid,
    const char *exp_privilege, const char *scp_config, struct sei_result *res)
{
	char summary[200];
	json_t *b;
	int rc, create;

	if ((rc = call_ok(peer, call, res)) != 0)
		return rc;
	create = opt_type != NULL && strcmp(opt_type, "CREATE_SSD") == 0;
	if (opt_type == NULL || (!create && strcmp(opt_type, "LOCK_SSD") &&
	    strcmp(opt_type, "UNLOCK_SSD") && strcmp(opt_type, "DELETE_SSD"))) {
		res_err(res, "optType: CREATE_SSD, LOCK_SSD, UNLOCK_SSD or "
		    "DELETE_SSD");
		return ERR_INVAL;
	}
	if (!is_hex(se_id, 2, 128) || !is_hex(sd_aid, 10, 32) ||
	    scp_config == NULL || strlen(scp_config) > 32 ||
	    (create && (exp_privilege == NULL || (strlen(exp_privilege) != 2 &&
	    strlen(exp_privilege) != 6) || !is_hex(exp_privilege, 2, 6) ||
	    !is_hex(scp_config, 2, 32))) ||
	    (exp_privilege != NULL && !is_hex(exp_privilege, 2, 6))) {
		res_err(res, "arguments: seId hex, sdAid hex of 5..16 bytes, "
		    "scpConfig given (hex for CREATE_SSD), expPrivilege 1 or 3 "
		    "bytes of hex (required with CREATE_SSD)");
		return ERR_INVAL;
	}
	b = json_pack("{s:s, s:s, s:o, s:o, s:o}", "tenantId", peer->tenant_id,
	    "optType", opt_type, "seId", hex_str(se_id), "sdAid", hex_str(sd_aid),
	    "scpConfig", create ? hex_str(scp_config) : json_string(scp_config));
	if (b != NULL && exp_privilege != NULL &&
	    json_object_set_new(b, "expPrivilege", hex_str(exp_privilege)) != 0) {
		json_decref(b);
		b = NULL;
	}
	if (b == NULL)
		return ERR_NOMEM;
	snprintf(summary, sizeof(summary), "%s seId=%s sdAid=%s", opt_type, se_id,
	    sd_aid);
	rc = run(K_MANAGE, peer, call, b, summary, NULL, se_id, 0, res);
	json_decref(b);
	return rc;
}

int
sei_ssd_instructions(const struct tsm_peer *peer, const struct sei_call *call,
    const char *task_id, const char *se_id, const char *const *resp_list,
    size_t n, struct sei_result *res)
{
	char summary[200];
	json_t *b, *l;
	int rc;

	if ((rc = call_ok(peer, call, res)) != 0)
		return rc;
	if (!id_ok(task_id, TASK_ID_MAX) || !is_hex(se_id, 2, 128) ||
	    n > SEI_CLIENT_LIST_MAX || (n > 0 && resp_list == NULL)) {
		res_err(res, "arguments: taskId, seId hex, at most %d responses",
		    SEI_CLIENT_LIST_MAX);
		return ERR_INVAL;
	}
	if ((rc = hex_array(resp_list, n, 4, APDU_HEX_MAX, "respList",
	    "hex of data || SW1 SW2", res, &l)) != 0)
		return rc;
	b = json_pack("{s:s, s:s, s:o, s:o}", "tenantId", peer->tenant_id,
	    "taskId", task_id, "seId", hex_str(se_id), "respList", l);
	if (b == NULL)
		return ERR_NOMEM;
	snprintf(summary, sizeof(summary), "taskId=%s seId=%s responses=%zu",
	    task_id, se_id, n);
	rc = run(K_INSTR, peer, call, b, summary, task_id, se_id, 0, res);
	json_decref(b);
	return rc;
}

int
sei_token(const struct tsm_peer *peer, const struct sei_call *call,
    const char *se_id, const char *const *raw_data, size_t n,
    struct sei_result *res)
{
	char summary[200];
	json_t *b, *l;
	int rc;

	if ((rc = call_ok(peer, call, res)) != 0)
		return rc;
	if (!is_hex(se_id, 2, 128) || n == 0 || n > SEI_CLIENT_LIST_MAX ||
	    raw_data == NULL) {
		res_err(res, "arguments: seId hex, 1..%d rawData",
		    SEI_CLIENT_LIST_MAX);
		return ERR_INVAL;
	}
	/* P1 P2 Lc at least (gpref §6) */
	if ((rc = hex_array(raw_data, n, 6, RAW_HEX_MAX, "rawData",
	    "hex of P1 P2 Lc data", res, &l)) != 0)
		return rc;
	b = json_pack("{s:s, s:s, s:o, s:o}", "tenantId", peer->tenant_id,
	    "optType", "CREATE_TOKEN", "seId", hex_str(se_id), "rawData", l);
	if (b == NULL)
		return ERR_NOMEM;
	snprintf(summary, sizeof(summary), "CREATE_TOKEN seId=%s rawData=%zu",
	    se_id, n);
	rc = run(K_TOKEN, peer, call, b, summary, NULL, se_id, n, res);
	json_decref(b);
	return rc;
}
