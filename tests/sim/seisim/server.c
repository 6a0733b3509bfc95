/*
 * server.c - the simulator's HTTPS endpoints on libmicrohttpd: POST
 * {base}/ssd/manage (§9.1), {base}/ssd/instructions (§9.2), {base}/token
 * (§9.3), GET {base}/healthz; X-TSM-Signature checked on every request and
 * made on every answer past authentication (METHOD and PATH of the
 * request), the --fault behaviours for tests. Runs in seisim, one thread
 * per connection; requests are outside input.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <microhttpd.h>

#include "tests/sim/seisim/seisim.h"
#include "tests/sim/seisim/server.h"

/* GnuTLS priorities: TLS 1.2/1.3, ECDHE, AEAD only (as tsmd). */
#define TLS_PRIORITIES \
	"SECURE128:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2:-CIPHER-ALL:" \
	"+AES-256-GCM:+AES-128-GCM:+CHACHA20-POLY1305:-MAC-ALL:+AEAD:" \
	"-KX-ALL:+ECDHE-ECDSA:+ECDHE-RSA:-SIGN-RSA-SHA1:-SIGN-ECDSA-SHA1:" \
	"-SIGN-DSA-SHA1:%SERVER_PRECEDENCE"

struct conn {
	struct buf body;
	int        too_big;
	uint64_t   t0;
};

json_t *
seisim_result(int rc, const char *fmt, ...)
{
	char msg[400];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return json_pack("{s:i, s:s}", "resultCode", rc, "resultMessage", msg);
}

/* Sleeps ms in small steps so that a stop is not held up. */
static void
nap(struct seisim *s, unsigned ms)
{
	while (ms > 0 && !s->stopping) {
		unsigned d = ms > 50 ? 50 : ms;

		usleep(d * 1000u);
		ms -= d;
	}
}

/* --fault replay-answer: the first signed answer of a path is kept and
 * sent again, byte for byte, for every later request to that path. */
static void
replay(struct seisim *s, const char *path, int *status, char **text,
    char *hdr)
{
	struct seisim_replay *r = NULL;
	size_t i;
	char *t;

	pthread_mutex_lock(&s->rlock);
	for (i = 0; i < ARRAY_LEN(s->replay); i++)
		if (s->replay[i].text != NULL &&
		    strcmp(s->replay[i].path, path) == 0) {
			r = &s->replay[i];
			if ((t = strdup(r->text)) != NULL) {
				free(*text);
				*text = t;
				*status = r->status;
				memcpy(hdr, r->hdr, sizeof(r->hdr));
			}
			goto out;
		}
	for (i = 0; i < ARRAY_LEN(s->replay); i++)
		if (s->replay[i].text == NULL && strlen(path) <
		    sizeof(s->replay[i].path)) {
			r = &s->replay[i];
			if ((r->text = strdup(*text)) == NULL)
				goto out;
			snprintf(r->path, sizeof(r->path), "%s", path);
			r->status = *status;
			memcpy(r->hdr, hdr, sizeof(r->hdr));
			goto out;
		}
out:
	pthread_mutex_unlock(&s->rlock);
}

static enum MHD_Result
send_json(struct seisim *s, struct MHD_Connection *mc, const char *path,
    int status, json_t *body, int sign, struct conn *k)
{
	struct MHD_Response *r;
	char *text = NULL, hdr[300];
	enum MHD_Result ret = MHD_NO;
	json_t *rc;

	if (body == NULL)
		body = seisim_result(SEISIM_RC_FAIL, "out of memory");
	/* --fault string-resultcode: "0000" / "9999" as some SEIs answer */
	if ((s->faults & SEISIM_FAULT_STRCODE) &&
	    json_is_integer(rc = json_object_get(body, "resultCode"))) {
		char c[24];

		snprintf(c, sizeof(c), "%04lld", (long long)json_integer_value(rc));
		json_object_set_new(body, "resultCode", json_string(c));
	}
	if ((text = json_dumps(body, JSON_COMPACT)) == NULL)
		goto out;
	hdr[0] = '\0';
	if (sign && seisim_sig_make_ts(&s->m, wall_seconds() -
	    ((s->faults & SEISIM_FAULT_STALE) ? 400 : 0), "POST", path, text,
	    strlen(text), hdr, sizeof(hdr)) == 0 &&
	    (s->faults & SEISIM_FAULT_BAD_SIG)) {
		/* flip the last hex digit of sig= */
		size_t l = strlen(hdr);

		hdr[l - 1] = hdr[l - 1] == '0' ? '1' : '0';
	}
	if (sign && (s->faults & SEISIM_FAULT_REPLAY))
		replay(s, path, &status, &text, hdr);
	r = MHD_create_response_from_buffer(strlen(text), text,
	    MHD_RESPMEM_MUST_FREE);
	if (r == NULL)
		goto out;
	if (hdr[0] != '\0')
		MHD_add_response_header(r, "X-TSM-Signature", hdr);
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE,
	    "application/json");
	log_msg(LOG_INFO, "event=request path=%s status=%d result=%s dur_ms=%.1f",
	    path, status, json_is_integer(json_object_get(body, "resultCode")) ?
	    "int" : "-", (double)(now_us() - k->t0) / 1000.0);
	if (s->faults & SEISIM_FAULT_TIMEOUT)
		nap(s, s->fault_delay_ms);
	ret = MHD_queue_response(mc, (unsigned)status, r);
	MHD_destroy_response(r);
	text = NULL;	/* owned by the response */
out:
	free(text);
	json_decref(body);
	return ret;
}

/* The §9.1-9.3 answer shapes of --fault result-9999. */
static json_t *
fault_9999(const char *op, json_t *req)
{
	const char *se = json_string_value(json_object_get(req, "seId"));
	json_t *b = seisim_result(SEISIM_RC_FAIL, "simulated SEI-TSM failure "
	    "(--fault result-9999)");

	if (strcmp(op, "token") == 0) {
		json_object_set_new(b, "seId", json_string(se ? se : ""));
		json_object_set_new(b, "token", json_array());
	} else {
		json_object_set_new(b, "apduList", json_array());
		json_object_set_new(b, "taskId", json_string(
		    json_string_value(json_object_get(req, "taskId")) ?
		    json_string_value(json_object_get(req, "taskId")) : ""));
	}
	return b;
}

static enum MHD_Result
handle(struct seisim *s, struct MHD_Connection *mc, const char *url,
    const char *method, struct conn *k)
{
	size_t bl = strlen(s->base_path);
	const char *op, *why, *sig;
	struct seisim_answer a = { 0, NULL };
	json_error_t je;
	json_t *req;

	if (strncmp(url, s->base_path, bl) != 0)
		return send_json(s, mc, url, 404, seisim_result(SEISIM_RC_BAD_REQUEST,
		    "no such endpoint"), 0, k);
	op = url + bl;
	if (strcmp(op, "/healthz") == 0 && strcmp(method, "GET") == 0)
		return send_json(s, mc, url, 200, json_pack("{s:s, s:s}", "status",
		    "ok", "seiTsmId", s->m.sei_tsm_id), 0, k);
	if (strcmp(op, "/ssd/manage") && strcmp(op, "/ssd/instructions") &&
	    strcmp(op, "/token"))
		return send_json(s, mc, url, 404, seisim_result(SEISIM_RC_BAD_REQUEST,
		    "no such endpoint"), 0, k);
	if (strcmp(method, "POST") != 0)
		return send_json(s, mc, url, 405, seisim_result(SEISIM_RC_BAD_REQUEST,
		    "method not allowed (POST)"), 0, k);
	if (k->too_big)
		return send_json(s, mc, url, 413, seisim_result(SEISIM_RC_BAD_REQUEST,
		    "body too large"), 0, k);
	sig = MHD_lookup_connection_value(mc, MHD_HEADER_KIND, "X-TSM-Signature");
	if (seisim_sig_check(&s->m, sig, "POST", url, k->body.p, k->body.len,
	    &why) != 0) {
		log_msg(LOG_INFO, "event=request_refused path=%s reason=%s", url,
		    why ? why : "error");
		return send_json(s, mc, url, 401, seisim_result(SEISIM_RC_AUTH,
		    "X-TSM-Signature: %s", why ? why : "error"), 0, k);
	}
	/* Authenticated from here on: every answer is signed. */
	req = json_loadb((const char *)k->body.p, k->body.len,
	    JSON_REJECT_DUPLICATES, &je);
	if (!json_is_object(req)) {
		json_decref(req);
		return send_json(s, mc, url, 400, seisim_result(SEISIM_RC_BAD_REQUEST,
		    "body: not a JSON object (%s)", req ? "wrong type" : je.text), 1,
		    k);
	}
	if (s->faults & SEISIM_FAULT_9999)
		a.body = fault_9999(op + 1, req);
	else if (strcmp(op, "/ssd/manage") == 0)
		seisim_ssd_manage(s, req, &a);
	else if (strcmp(op, "/ssd/instructions") == 0)
		seisim_ssd_instructions(s, req, &a);
	else
		seisim_token(s, req, &a);
	json_decref(req);
	return send_json(s, mc, url, a.status ? a.status : 200, a.body, 1, k);
}

static enum MHD_Result
on_access(void *cls, struct MHD_Connection *mc, const char *url,
    const char *method, const char *version, const char *upload,
    size_t *upsize, void **con_cls)
{
	struct seisim *s = cls;
	struct conn *k = *con_cls;

	(void)version;
	if (k == NULL) {
		if ((k = calloc(1, sizeof(*k))) == NULL)
			return MHD_NO;
		buf_init(&k->body);
		k->t0 = now_us();
		*con_cls = k;
		return MHD_YES;
	}
	if (*upsize != 0) {
		if (!k->too_big && k->body.len + *upsize > SEISIM_BODY_MAX) {
			k->too_big = 1;
			buf_free(&k->body);
		}
		if (!k->too_big && buf_put(&k->body, upload, *upsize) != 0)
			return MHD_NO;
		*upsize = 0;
		return MHD_YES;
	}
	return handle(s, mc, url, method, k);
}

static void
on_completed(void *cls, struct MHD_Connection *mc, void **con_cls,
    enum MHD_RequestTerminationCode toe)
{
	struct conn *k = *con_cls;

	(void)cls;
	(void)mc;
	(void)toe;
	if (k != NULL) {
		buf_free(&k->body);
		free(k);
	}
	*con_cls = NULL;
}

static void
on_mhd_log(void *cls, const char *fmt, va_list ap)
{
	char msg[300];
	size_t n;

	(void)cls;
	vsnprintf(msg, sizeof(msg), fmt, ap);
	n = strlen(msg);
	while (n > 0 && msg[n - 1] == '\n')
		msg[--n] = '\0';
	log_msg(LOG_WARN, "event=mhd detail=\"%s\"", msg);
}

/* "host:port" or "[v6]:port" into a socket address. */
static int
parse_listen(const char *l, struct sockaddr_storage *ss, int *v6, char *host,
    size_t hcap)
{
	const char *colon = strrchr(l, ':');
	char *end;
	long port;
	size_t hl;

	memset(ss, 0, sizeof(*ss));
	if (colon == NULL)
		return ERR_INVAL;
	port = strtol(colon + 1, &end, 10);
	if (*end != '\0' || colon[1] == '\0' || port < 0 || port > 65535)
		return ERR_INVAL;
	hl = (size_t)(colon - l);
	if (hl >= 2 && l[0] == '[' && l[hl - 1] == ']') {
		l++;
		hl -= 2;
	}
	if (hl == 0 || hl >= hcap)
		return ERR_INVAL;
	memcpy(host, l, hl);
	host[hl] = '\0';
	if (strcmp(host, "localhost") == 0)
		snprintf(host, hcap, "127.0.0.1");
	*v6 = 0;
	if (inet_pton(AF_INET, host, &((struct sockaddr_in *)ss)->sin_addr) == 1) {
		((struct sockaddr_in *)ss)->sin_family = AF_INET;
		((struct sockaddr_in *)ss)->sin_port = htons((uint16_t)port);
		return 0;
	}
	if (inet_pton(AF_INET6, host, &((struct sockaddr_in6 *)ss)->sin6_addr) ==
	    1) {
		((struct sockaddr_in6 *)ss)->sin6_family = AF_INET6;
		((struct sockaddr_in6 *)ss)->sin6_port = htons((uint16_t)port);
		*v6 = 1;
		return 0;
	}
	return ERR_INVAL;
}

struct seisim_server {
	struct MHD_Daemon *d;
	char *cert, *key;
	uint16_t port;
};

int
seisim_server_start(struct seisim *s, struct seisim_server **out,
    const char *cert_pem, const char *key_pem)
{
	struct seisim_server *sv = calloc(1, sizeof(*sv));
	struct sockaddr_storage ss;
	char host[256];
	const union MHD_DaemonInfo *di;
	unsigned flags;
	int v6;

	*out = NULL;
	if (sv == NULL)
		return ERR_NOMEM;
	if (parse_listen(s->listen, &ss, &v6, host, sizeof(host)) != 0) {
		free(sv);
		return ERR_INVAL;
	}
	flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD |
	    MHD_USE_ERROR_LOG | MHD_USE_AUTO | (v6 ? MHD_USE_IPv6 : 0);
	if (!s->no_tls) {
		flags |= MHD_USE_TLS;
		sv->cert = strdup(cert_pem);
		sv->key = strdup(key_pem);
		if (sv->cert == NULL || sv->key == NULL)
			goto fail;
		sv->d = MHD_start_daemon(flags, 0, NULL, NULL, on_access, s,
		    MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, s,
		    MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
		    MHD_OPTION_NOTIFY_COMPLETED, on_completed, s,
		    MHD_OPTION_CONNECTION_TIMEOUT, 60u,
		    MHD_OPTION_CONNECTION_LIMIT, 64u,
		    MHD_OPTION_HTTPS_MEM_CERT, sv->cert,
		    MHD_OPTION_HTTPS_MEM_KEY, sv->key,
		    MHD_OPTION_HTTPS_PRIORITIES, TLS_PRIORITIES,
		    MHD_OPTION_END);
	} else {
		sv->d = MHD_start_daemon(flags, 0, NULL, NULL, on_access, s,
		    MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, s,
		    MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
		    MHD_OPTION_NOTIFY_COMPLETED, on_completed, s,
		    MHD_OPTION_CONNECTION_TIMEOUT, 60u,
		    MHD_OPTION_CONNECTION_LIMIT, 64u,
		    MHD_OPTION_END);
	}
	if (sv->d == NULL)
		goto fail;
	di = MHD_get_daemon_info(sv->d, MHD_DAEMON_INFO_BIND_PORT);
	sv->port = di != NULL ? di->port : 0;
	*out = sv;
	return 0;
fail:
	seisim_server_stop(sv);
	return ERR_IO;
}

uint16_t
seisim_server_port(const struct seisim_server *sv)
{
	return sv->port;
}

void
seisim_server_stop(struct seisim_server *sv)
{
	if (sv == NULL)
		return;
	if (sv->d != NULL)
		MHD_stop_daemon(sv->d);
	free(sv->cert);
	if (sv->key != NULL) {
		wipe(sv->key, strlen(sv->key));
		free(sv->key);
	}
	free(sv);
}
