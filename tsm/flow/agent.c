/*
 * agent.c - the device agent API: opens a session per SE (one at a time),
 * hands out APDU batches and takes their answers until done; the session
 * table with expiry. Runs in tsmd's workers; agents and cards are outside
 * input. Contract: ARCHITECTURE.md "External contracts", README.md.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>

#include "tsm/flow/flow_int.h"

/* {"resultCode", "resultMessage"} with the agent API's codes (flow.h). */
static int __attribute__((format(printf, 4, 5)))
agent_error(struct http_resp *rs, int status, int code, const char *fmt, ...)
{
	char msg[400];
	va_list ap;

	va_start(ap, fmt);
	(void)vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return http_resp_json(rs, status, json_pack("{s:i, s:s}", "resultCode",
	    code, "resultMessage", msg));
}

/* The framework's own refusals on these routes, in the same shape. */
static json_t *
agent_error_json(int status, const char *code, const char *msg)
{
	int rc = status == 404 ? FLOW_AGENT_NO_SESSION :
	    status == 409 ? FLOW_AGENT_BUSY :
	    status == 503 || status == 504 || status == 408 ?
	    FLOW_AGENT_UNAVAILABLE : status >= 400 && status < 500 ?
	    FLOW_AGENT_BAD_REQUEST : FLOW_AGENT_INTERNAL;

	return json_pack("{s:i, s:s, s:s}", "resultCode", rc, "resultMessage",
	    msg != NULL ? msg : "", "error", code != NULL ? code : "");
}

/* ---- the session table ------------------------------------------------------ */

/* Unlinks s (under f->mu). */
static void
sess_unlink(struct flow *f, struct flow_sess *s)
{
	struct flow_sess **pp;

	for (pp = &f->sessions; *pp != NULL; pp = &(*pp)->next)
		if (*pp == s) {
			*pp = s->next;
			f->nsess--;
			return;
		}
}

void
flow_sessions_reap(struct flow *f, unsigned timeout_s)
{
	struct flow_sess **pp, *s, *dead = NULL;
	uint64_t now = now_ms();

	pthread_mutex_lock(&f->mu);
	for (pp = &f->sessions; (s = *pp) != NULL;) {
		if (!s->busy && now - s->last_ms > (uint64_t)timeout_s * 1000u) {
			*pp = s->next;
			f->nsess--;
			s->next = dead;
			dead = s;
			continue;
		}
		pp = &s->next;
	}
	pthread_mutex_unlock(&f->mu);
	while ((s = dead) != NULL) {
		dead = s->next;
		log_msg(LOG_INFO, "event=agent_session_expired se=%s session=%.8s "
		    "task=%s note=\"its task stays as recorded and resumes at the "
		    "SE's next session\"", s->se_id, s->id, s->run.task_id[0] ?
		    s->run.task_id : "-");
		flow_sess_free(f, s);
	}
}

/* Ends a session whose request the caller holds (busy). */
static void
sess_end(struct flow *f, struct flow_sess *s, const char *why)
{
	struct gp_kms_stats ks;

	memset(&ks, 0, sizeof(ks));
	if (s->gk != NULL)
		gp_kms_stats(s->gk, &ks);
	pthread_mutex_lock(&f->mu);
	sess_unlink(f, s);
	pthread_mutex_unlock(&f->mu);
	log_msg(LOG_INFO, "event=agent_session_end se=%s session=%.8s batches=%u "
	    "kms_requests=%llu dur_ms=%llu end=%s", s->se_id, s->id, s->batches,
	    (unsigned long long)ks.requests,
	    (unsigned long long)(now_ms() - s->started_ms), why);
	flow_sess_free(f, s);
}

/* Runs the engine and answers; the session is busy (ours) on entry. */
static int
sess_answer(struct http_req *rq, struct http_resp *rs, struct flow *f,
    struct flow_sess *s, const struct flow_resp *resp)
{
	struct flow_step fs;
	json_t *body;
	int rc;

	memset(&fs, 0, sizeof(fs));
	fs.f = f;
	fs.s = s;
	fs.cfg = http_req_config(rq);
	fs.kc = tsm_kms();
	fs.rid = http_req_id(rq);
	fs.deadline_us = http_req_deadline(rq);
	fs.resp = resp;
	if ((fs.out = json_array()) == NULL) {
		sess_end(f, s, "nomem");
		return ERR_NOMEM;
	}
	rc = flow_engine_run(&fs);
	if (rc == 0 && json_array_size(fs.out) > 0) {
		s->batches++;
		body = json_pack("{s:i, s:s, s:O, s:b}", "resultCode", FLOW_AGENT_OK,
		    "sessionId", s->id, "apduList", fs.out, "done", 0);
		pthread_mutex_lock(&f->mu);
		s->busy = 0;
		s->last_ms = now_ms();
		pthread_mutex_unlock(&f->mu);
		json_decref(fs.out);
		return http_resp_json(rs, 200, body);
	}
	json_decref(fs.out);
	if (rc == 0) {
		body = json_pack("{s:i, s:s, s:[], s:b, s:O}", "resultCode",
		    FLOW_AGENT_OK, "sessionId", s->id, "apduList", "done", 1,
		    "tasks", s->outcomes);
		sess_end(f, s, "done");
		return http_resp_json(rs, 200, body);
	}
	body = json_pack("{s:i, s:s, s:O}", "resultCode", rc == ERR_INTERNAL ?
	    FLOW_AGENT_INTERNAL : FLOW_AGENT_UNAVAILABLE, "resultMessage",
	    fs.why[0] ? fs.why : rc == ERR_INTERNAL ? "internal error" :
	    "a service tsmd needs is unavailable", "tasks", s->outcomes);
	if (body != NULL && rc != ERR_INTERNAL) {
		char m[400];

		snprintf(m, sizeof(m), "%s (%s): the session ends; its tasks stay "
		    "as recorded and resume at the SE's next session", fs.why[0] ?
		    fs.why : "a service tsmd needs is unavailable", err_name(rc));
		json_object_set_new(body, "resultMessage", json_string(m));
	}
	log_msg(LOG_WARN, "event=agent_session_failed se=%s session=%.8s err=%s "
	    "why=\"%s\"", s->se_id, s->id, err_name(rc), fs.why);
	sess_end(f, s, err_name(rc));
	return http_resp_json(rs, rc == ERR_INTERNAL ? 500 : 503, body);
}

/*
 * With agent.auth clientCert, a device speaks only for its own SE: the
 * certificate's subject commonName must be the seId (hex, any case).
 * Without it (the default, loopback and the demo) the session id is the
 * capability.
 */
static int
cert_for_se(struct flow *f, struct http_req *rq, const char *se)
{
	const struct http_client_cert *c = http_req_cert(rq);

	if (f->cfg->flows.agent_auth != TSM_AGENT_AUTH_CLIENT_CERT)
		return 1;
	return c != NULL && strcasecmp(c->cn, se) == 0;
}

/* POST /api/v1/agent/sessions {"seId"} */
static int
h_open(struct http_req *rq, struct http_resp *rs, void *arg)
{
	struct flow *f = arg;
	const struct tsm_config *cfg = http_req_config(rq);
	struct flow_sess *s, *o;
	uint8_t rnd[16];
	char se[STORE_SEID_MAX + 1], msg[200];
	uint64_t now = now_ms();

	flow_cfg_note(f, cfg);
	if (flow_open_parse(http_req_json(rq), se, sizeof(se), msg,
	    sizeof(msg)) != FLOW_AGENT_OK)
		return agent_error(rs, 400, FLOW_AGENT_BAD_REQUEST, "%s", msg);
	if (!cert_for_se(f, rq, se))
		return agent_error(rs, 403, FLOW_AGENT_FORBIDDEN, "this device "
		    "certificate is not SE %s's (its subject CN must be the seId)",
		    se);
	flow_sessions_reap(f, cfg->flows.session_timeout_s);
	if ((s = calloc(1, sizeof(*s))) == NULL ||
	    (s->outcomes = json_array()) == NULL ||
	    (s->seen = json_object()) == NULL ||
	    (s->todo = json_array()) == NULL ||
	    getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd)) {
		flow_sess_free(f, s);
		return ERR_NOMEM;
	}
	hex_encode(rnd, sizeof(rnd), s->id);
	wipe(rnd, sizeof(rnd));
	snprintf(s->se_id, sizeof(s->se_id), "%s", se);
	s->started_ms = s->last_ms = now;
	s->busy = 1;
	pthread_mutex_lock(&f->mu);
	for (o = f->sessions; o != NULL; o = o->next)
		if (strcmp(o->se_id, se) == 0)
			break;
	if (o == NULL && f->nsess >= FLOW_SESSIONS_MAX) {
		pthread_mutex_unlock(&f->mu);
		flow_sess_free(f, s);
		log_msg(LOG_WARN, "event=agent_sessions_full max=%d",
		    FLOW_SESSIONS_MAX);
		return agent_error(rs, 503, FLOW_AGENT_UNAVAILABLE, "%d agent "
		    "sessions are open: retry later", FLOW_SESSIONS_MAX);
	}
	if (o != NULL) {
		uint64_t age = (now - o->started_ms) / 1000u;
		uint64_t idle = (now - o->last_ms) / 1000u;

		pthread_mutex_unlock(&f->mu);
		flow_sess_free(f, s);
		log_msg(LOG_INFO, "event=agent_session_busy se=%s", se);
		return agent_error(rs, 409, FLOW_AGENT_BUSY, "SE %s is busy: another "
		    "agent session for it started %llu s ago and is still open (it "
		    "expires after %u s without a request); retry later", se,
		    (unsigned long long)age, cfg->flows.session_timeout_s >
		    idle ? cfg->flows.session_timeout_s : 0);
	}
	s->next = f->sessions;
	f->sessions = s;
	f->nsess++;
	pthread_mutex_unlock(&f->mu);
	log_msg(LOG_INFO, "event=agent_session_start rid=%s se=%s session=%.8s",
	    http_req_id(rq), se, s->id);
	return sess_answer(rq, rs, f, s, NULL);
}

/* POST /api/v1/agent/sessions/{id} {"respList": [...]} */
static int
h_resp(struct http_req *rq, struct http_resp *rs, void *arg)
{
	struct flow *f = arg;
	const struct tsm_config *cfg = http_req_config(rq);
	const char *id = http_req_param(rq, "id");
	struct flow_sess *s;
	struct flow_resp resp;
	char se[STORE_SEID_MAX + 1], msg[300];
	uint64_t now = now_ms();
	int code, rc, expired = 0;

	flow_cfg_note(f, cfg);
	if (id == NULL || strlen(id) != 32)
		return agent_error(rs, 404, FLOW_AGENT_NO_SESSION, "unknown session "
		    "(ended or expired?): open a new one");
	pthread_mutex_lock(&f->mu);
	for (s = f->sessions; s != NULL; s = s->next)
		if (ct_equal(s->id, id, 32))
			break;
	if (s != NULL && !cert_for_se(f, rq, s->se_id)) {
		pthread_mutex_unlock(&f->mu);
		return agent_error(rs, 403, FLOW_AGENT_FORBIDDEN, "this device "
		    "certificate is not the session's SE's");
	}
	if (s != NULL && !s->busy && now - s->last_ms >
	    (uint64_t)cfg->flows.session_timeout_s * 1000u) {
		sess_unlink(f, s);
		expired = 1;
	} else if (s != NULL && s->busy) {
		pthread_mutex_unlock(&f->mu);
		return agent_error(rs, 409, FLOW_AGENT_BUSY, "a request of this "
		    "session is still being answered");
	} else if (s != NULL) {
		s->busy = 1;
	}
	pthread_mutex_unlock(&f->mu);
	if (expired) {
		log_msg(LOG_INFO, "event=agent_session_expired se=%s session=%.8s",
		    s->se_id, s->id);
		flow_sess_free(f, s);
		return agent_error(rs, 404, FLOW_AGENT_NO_SESSION, "session expired "
		    "(more than %u s without a request): open a new one; its task "
		    "resumes there", cfg->flows.session_timeout_s);
	}
	if (s == NULL)
		return agent_error(rs, 404, FLOW_AGENT_NO_SESSION, "unknown session "
		    "(ended or expired?): open a new one");

	flow_resp_init(&resp);
	code = flow_resp_parse(http_req_json(rq), s->run.n_sent, &resp, se,
	    sizeof(se), msg, sizeof(msg));
	if (code == FLOW_AGENT_OK && se[0] != '\0' && strcmp(se, s->se_id) != 0) {
		/* Answers for another SE: not this session's agent. */
		flow_resp_free(&resp);
		pthread_mutex_lock(&f->mu);
		s->busy = 0;
		pthread_mutex_unlock(&f->mu);
		log_msg(LOG_WARN, "event=agent_wrong_session session=%.8s se=%s "
		    "claimed=%s", s->id, s->se_id, se);
		return agent_error(rs, 409, FLOW_AGENT_BUSY, "this session belongs to "
		    "another SE than %s: answers refused, the session goes on", se);
	}
	if (code != FLOW_AGENT_OK) {
		log_msg(LOG_WARN, "event=agent_resp_refused se=%s session=%.8s "
		    "task=%s why=\"%s\"", s->se_id, s->id, s->run.task_id[0] ?
		    s->run.task_id : "-", msg);
		sess_end(f, s, "bad_resp");
		flow_resp_free(&resp);
		return agent_error(rs, code == FLOW_AGENT_INTERNAL ? 500 : 400, code,
		    "%s: the session ends; its task stays as recorded and the next "
		    "session takes it up again", msg);
	}
	rc = sess_answer(rq, rs, f, s, &resp);
	flow_resp_free(&resp);
	return rc;
}

int
flow_agent_routes(struct http_router *r, struct flow *f)
{
	const struct http_route_ext ext = { .error = agent_error_json };
	enum http_auth auth = f->cfg->flows.agent_auth ==
	    TSM_AGENT_AUTH_CLIENT_CERT ? HTTP_AUTH_CLIENT_CERT : HTTP_AUTH_NONE;
	int rc;

	if ((rc = http_route_add(r, "POST", "/api/v1/agent/sessions", auth,
	    h_open, f)) != 0 ||
	    (rc = http_route_extend(r, "POST", "/api/v1/agent/sessions",
	    &ext)) != 0 ||
	    (rc = http_route_add(r, "POST", "/api/v1/agent/sessions/{id}", auth,
	    h_resp, f)) != 0)
		return rc;
	if (auth == HTTP_AUTH_NONE && !tsm_host_is_loopback(f->cfg->host))
		log_msg(LOG_WARN, "event=agent_api_unauthenticated listen=%s note=\""
		    "agent.auth is none on a non-loopback address: set clientCert "
		    "(device certificates under tls.clientCa)\"", f->cfg->listen);
	return http_route_extend(r, "POST", "/api/v1/agent/sessions/{id}", &ext);
}
