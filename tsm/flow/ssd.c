/*
 * ssd.c - SSD create, lock, unlock and delete relayed through the SEI-TSM
 * (§6.2.1, §9.1, §9.2, §7.1), every step recorded before it acts, and the
 * SSD helpers the kinds and the API share. Runs in tsmd's workers; SEI-TSM
 * answers are checked by tsm/sei/client.c, card answers here.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "tsm/flow/flow_int.h"
#include "tsm/sei/client.h"

/* Steps of the relayed kinds (FLOWS.md "SSD create"). */
enum {
	RS_QUEUED = 0,
	RS_PROBE = 1,		/* SELECT sdAid out: does the card have it? */
	RS_SEI_CALL = 2,	/* §9.1 about to be (or being) called */
	RS_RELAY = 3,		/* the SEI-TSM's apduList out at the agent */
	RS_RELAY_CALL = 4,	/* respList recorded, §9.2 to be called */
};

static const char *
relay_step_name(uint32_t s)
{
	switch (s) {
	case RS_QUEUED: return "QUEUED";
	case RS_PROBE: return "PROBE";
	case RS_SEI_CALL: return "SEI_CALL";
	case RS_RELAY: return "RELAY";
	case RS_RELAY_CALL: return "RELAY_CALL";
	default: return "?";
	}
}

/* ---- shared SSD helpers ---------------------------------------------------- */

int
flow_ssd_exists(const struct store_ssd *r)
{
	return strcmp(r->state, SS_CREATED) == 0 ||
	    strcmp(r->state, SS_KEYS_RECEIVED) == 0 ||
	    strcmp(r->state, SS_PERSONALIZED) == 0 ||
	    strcmp(r->state, SS_LOCKED) == 0;
}

int
flow_ssd_update(struct store_batch *b, const struct store_ssd *old,
    const struct store_ssd *nw)
{
	int rc;

	if ((rc = store_batch_require_ssd(b, old)) != 0)
		return rc;
	return store_batch_put_ssd(b, nw);
}

const struct tsm_peer *
flow_se_peer(struct flow *f, const struct tsm_config *cfg, const char *se_id,
    const char *want)
{
	struct store_se se;

	if (want != NULL && want[0] != '\0')
		return tsm_config_peer(cfg, want);
	if (store_se_get(f->st, se_id, &se) == 0 && se.peer_id[0] != '\0')
		return tsm_config_peer(cfg, se.peer_id);
	return cfg->npeers == 1 ? &cfg->peers[0] : NULL;
}

/* ---- the relayed kinds -------------------------------------------------------- */

/* "CREATE_SSD" ... from the kind. */
static const char *
op_of(const struct flow_task *t)
{
	const char *k = t->r.kind;

	if (strcmp(k, "SSD_CREATE") == 0) return "CREATE_SSD";
	if (strcmp(k, "SSD_LOCK") == 0) return "LOCK_SSD";
	if (strcmp(k, "SSD_UNLOCK") == 0) return "UNLOCK_SSD";
	return "DELETE_SSD";
}

/* The SSD record after a successful end of the task. */
static int
apply_ok(struct flow *f, struct flow_task *t, struct store_batch *b,
    const struct store_ssd *old, struct store_ssd *nw, uint64_t now)
{
	const char *op = op_of(t), *why;
	char base[STORE_ID_MAX + 1];
	int n = 0;

	*nw = *old;
	nw->updated = now;
	if (strcmp(nw->task_id, t->r.id) == 0)
		nw->task_id[0] = '\0';
	if (strcmp(op, "CREATE_SSD") == 0) {
		/* The key sync may have overtaken the end of the task. */
		if (strcmp(old->state, SS_KEYS_RECEIVED) != 0)
			snprintf(nw->state, sizeof(nw->state), SS_CREATED);
	} else if (strcmp(op, "LOCK_SSD") == 0) {
		if (strcmp(old->state, SS_LOCKED) != 0)
			snprintf(nw->prev_state, sizeof(nw->prev_state), "%s",
			    old->state);
		snprintf(nw->state, sizeof(nw->state), SS_LOCKED);
	} else if (strcmp(op, "UNLOCK_SSD") == 0) {
		/* §7.1: unlocking restores the state before the lock. */
		snprintf(nw->state, sizeof(nw->state), "%s", old->prev_state[0] ?
		    old->prev_state : SS_CREATED);
		nw->prev_state[0] = '\0';
	} else {
		why = flow_ctx_str(t, "reason");
		snprintf(base, sizeof(base), "N%016llX%s", (unsigned long long)now,
		    t->r.id + 1);
		base[33] = '\0';
		return flow_ssd_end(f, b, nw, SS_DELETED, old->state, "DELETED",
		    "SSD_DELETED", why != NULL ? why : "deleted through the "
		    "SEI-TSM (DELETE_SSD)", t->r.id, base, now, &n);
	}
	return 0;
}

/*
 * Ends the task (DONE, or FAILED with err and the message) with its SSD
 * change, in one batch; retried when the SSD record raced (a key sync).
 */
static int __attribute__((format(printf, 5, 6)))
finish(struct flow_step *fs, struct flow_task *t, int ok, int err,
    const char *fmt, ...)
{
	struct store_batch *b = NULL;
	struct store_ssd old, nw;
	char msg[STORE_TEXT_MAX + 1], note[STORE_TEXT_MAX + 1], id[STORE_ID_MAX + 1];
	const char *aid = flow_ctx_str(t, "sdAid");
	uint64_t now = flow_now();
	uint32_t step = t->r.step;
	va_list ap;
	int rc, tries, have;

	va_start(ap, fmt);
	(void)vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	snprintf(id, sizeof(id), "%s", t->r.id);
	if ((rc = store_batch_new(&b)) != 0)
		return rc;
	for (tries = 0; tries < 5; tries++) {
		store_batch_clear(b);
		have = aid != NULL && store_ssd_get(fs->f->st, t->r.se_id, aid,
		    &old) == 0;
		if (have && ok) {
			if ((rc = apply_ok(fs->f, t, b, &old, &nw, now)) != 0 ||
			    (rc = flow_ssd_update(b, &old, &nw)) != 0)
				break;
		} else if (have) {
			nw = old;
			if (strcmp(nw.task_id, id) == 0)
				nw.task_id[0] = '\0';
			if (strcmp(t->r.kind, "SSD_CREATE") == 0 &&
			    strcmp(old.state, SS_CREATING) == 0)
				snprintf(nw.state, sizeof(nw.state), SS_CREATE_FAILED);
			nw.updated = now;
			if ((rc = flow_ssd_update(b, &old, &nw)) != 0)
				break;
		}
		if (ok)
			flow_task_set(t, TS_DONE, step, 0, NULL);
		else
			flow_task_set(t, TS_FAILED, step, err, "%s", msg);
		snprintf(note, sizeof(note), "%s: %.240s", ok ? "done" : "failed",
		    msg);
		rc = flow_task_save(fs->f, t, b, note);
		if (rc != ERR_WRONGSTATE)
			break;
		/* The SSD or the task changed: still ours to end? */
		if ((rc = flow_task_load(fs->f, id, t)) != 0)
			break;
		if (!flow_task_is_live(&t->r)) {
			rc = ERR_WRONGSTATE;
			break;
		}
		rc = ERR_WRONGSTATE;
	}
	store_batch_free(b);
	if (rc == 0 && ok && strcmp(t->r.kind, "SSD_DELETE") == 0)
		flow_kick(fs->f);
	return rc;
}

/* Saves a step (RUNNING) with note; the batch, if any, is in fs->out. */
static int
step_save(struct flow_step *fs, struct flow_task *t, uint32_t step,
    const char *note)
{
	flow_task_set(t, TS_RUNNING, step, 0, NULL);
	return flow_task_save(fs->f, t, NULL, note);
}

static void
call_opts(const struct flow_step *fs, struct sei_client_opts *o)
{
	sei_client_opts_default(o);
	o->timeout_ms = fs->cfg->flows.sei_timeout_ms;
	if (o->connect_timeout_ms > o->timeout_ms)
		o->connect_timeout_ms = o->timeout_ms;
	/* Leave the agent's request time to answer after the call. */
	o->deadline_us = fs->deadline_us > 1000000 ? fs->deadline_us - 500000 : 0;
}

/*
 * The SEI-TSM's next batch (answer r to `what`): recorded in the task
 * (ctx.out, step RELAY), then handed to the agent in fs->out. A batch
 * too large for one agent batch or for the task record fails the task.
 */
static int
relay_batch(struct flow_step *fs, struct flow_task *t, const char *what,
    const struct sei_result *r)
{
	char note[STORE_TEXT_MAX + 1];
	json_t *a;
	size_t i;
	int rc;

	if (r->apdus.n > FLOW_BATCH_MAX)
		return finish(fs, t, 0, ERR_LIMIT, "%s: the SEI-TSM sent %zu APDUs "
		    "in one batch (at most %d)", what, r->apdus.n, FLOW_BATCH_MAX);
	if ((a = json_array()) == NULL)
		return ERR_NOMEM;
	for (i = 0; i < r->apdus.n; i++)
		if (json_array_append_new(a, json_string(r->apdus.v[i])) != 0) {
			json_decref(a);
			return ERR_NOMEM;
		}
	json_object_set_new(t->ctx, "out", a);
	json_object_del(t->ctx, "resp");
	json_object_set_new(t->ctx, "exchanges", json_integer(flow_ctx_int(t,
	    "exchanges", 0) + 1));
	snprintf(note, sizeof(note), "RELAY: sei %s: resultCode 0, SEI task %s, "
	    "%zu APDUs to the agent (HTTP %ld, %u attempt(s), %llu ms)", what,
	    flow_ctx_str(t, "seiTaskId") ? flow_ctx_str(t, "seiTaskId") : "-",
	    r->apdus.n, r->http_status, r->attempts,
	    (unsigned long long)r->elapsed_ms);
	rc = step_save(fs, t, RS_RELAY, note);
	if (rc == ERR_TOOBIG) {
		json_object_del(t->ctx, "out");
		return finish(fs, t, 0, rc, "%s: the SEI-TSM's batch of %zu APDUs "
		    "is too large to record (task context at most %d bytes)",
		    what, r->apdus.n, STORE_CTX_MAX);
	}
	if (rc == 0 && json_array_extend(fs->out, a) != 0)
		rc = ERR_NOMEM;
	return rc;
}

/* What to do with a failed §9.1/§9.2 call. */
static int
call_failed(struct flow_step *fs, struct flow_task *t, const char *what,
    int rc, const struct sei_result *r)
{
	char note[STORE_TEXT_MAX + 1];
	int trc;

	if (rc == ERR_DENIED)
		return finish(fs, t, 0, rc, "the SEI-TSM refused %s: resultCode "
		    "%ld: %s", what, r->result_code, r->result_message[0] ?
		    r->result_message : "(no message)");
	if (rc == ERR_AUTH || rc == ERR_PROTO || rc == ERR_INVAL)
		return finish(fs, t, 0, rc, "the SEI-TSM's answer to %s was "
		    "rejected: %s", what, r->error[0] ? r->error : err_str(rc));
	/* No answer (or kmsd could not sign): the step stays; the next
	 * session calls again (FLOWS.md). */
	snprintf(fs->why, sizeof(fs->why), "the SEI-TSM did not answer %s (%s)",
	    what, err_name(rc));
	flow_task_set(t, TS_RUNNING, t->r.step, rc, "%s: %s; tried again at the "
	    "next agent session", what, r->error[0] ? r->error : err_str(rc));
	snprintf(note, sizeof(note), "%s: no usable answer (%s, %u attempt(s), "
	    "%llu ms)", what, err_name(rc), r->attempts,
	    (unsigned long long)r->elapsed_ms);
	trc = flow_task_save(fs->f, t, NULL, note);
	if (trc == ERR_WRONGSTATE)
		return trc;
	return rc == ERR_TIMEOUT || rc == ERR_IO || rc == ERR_SEALED ||
	    rc == ERR_CLOSED ? rc : ERR_IO;
}

/* §9.1, then the first batch or the end. */
static int
do_manage(struct flow_step *fs, struct flow_task *t)
{
	const struct tsm_peer *peer = flow_se_peer(fs->f, fs->cfg, t->r.se_id,
	    flow_ctx_str(t, "peer"));
	const char *op = op_of(t);
	struct sei_client_opts o;
	struct sei_call call;
	struct sei_result r;
	char what[40];
	int rc;

	snprintf(what, sizeof(what), "9.1 %s", op);
	if (peer == NULL)
		return finish(fs, t, 0, ERR_NOTFOUND, "no SEI-TSM peer for SE %s "
		    "(peer %s not configured)", t->r.se_id, flow_ctx_str(t, "peer") ?
		    flow_ctx_str(t, "peer") : "-");
	if (fs->kc == NULL) {
		snprintf(fs->why, sizeof(fs->why), "kmsd is unreachable");
		return ERR_IO;
	}
	flow_crash_point(fs->f, "relay.sei_call");
	call_opts(fs, &o);
	memset(&call, 0, sizeof(call));
	call.kms = fs->kc;
	call.opts = &o;
	sei_result_init(&r);
	rc = sei_ssd_manage(peer, &call, op, t->r.se_id, flow_ctx_str(t, "sdAid"),
	    strcmp(op, "CREATE_SSD") == 0 ? flow_ctx_str(t, "expPrivilege") : NULL,
	    flow_ctx_str(t, "scpConfig") ? flow_ctx_str(t, "scpConfig") : "0370",
	    &r);
	if (rc != 0) {
		rc = call_failed(fs, t, what, rc, &r);
		goto out;
	}
	flow_crash_point(fs->f, "relay.manage_answered");
	json_object_set_new(t->ctx, "seiTaskId", json_string(r.task_id));
	json_object_set_new(t->ctx, "peer", json_string(peer->sei_tsm_id));
	rc = r.done ? finish(fs, t, 1, 0, "%s: the SEI-TSM ended task %s at once",
	    what, r.task_id) : relay_batch(fs, t, what, &r);
out:
	sei_result_cleanup(&r);
	return rc;
}

/* §9.2 with the recorded respList, then the next batch or the end. */
static int
do_instructions(struct flow_step *fs, struct flow_task *t)
{
	const struct tsm_peer *peer = flow_se_peer(fs->f, fs->cfg, t->r.se_id,
	    flow_ctx_str(t, "peer"));
	json_t *resp = json_object_get(t->ctx, "resp");
	const char *list[FLOW_BATCH_MAX], *sei_task = flow_ctx_str(t, "seiTaskId");
	struct sei_client_opts o;
	struct sei_call call;
	struct sei_result r;
	size_t i, n = json_array_size(resp);
	int rc;

	if (peer == NULL || sei_task == NULL || n > FLOW_BATCH_MAX)
		return finish(fs, t, 0, ERR_INTERNAL, "9.2: the task record lacks "
		    "its peer, SEI task or responses");
	if (fs->kc == NULL) {
		snprintf(fs->why, sizeof(fs->why), "kmsd is unreachable");
		return ERR_IO;
	}
	for (i = 0; i < n; i++)
		if ((list[i] = json_string_value(json_array_get(resp, i))) == NULL)
			return finish(fs, t, 0, ERR_INTERNAL, "9.2: bad recorded "
			    "response");
	flow_crash_point(fs->f, "relay.resp_recorded");
	call_opts(fs, &o);
	memset(&call, 0, sizeof(call));
	call.kms = fs->kc;
	call.opts = &o;
	sei_result_init(&r);
	rc = sei_ssd_instructions(peer, &call, sei_task, t->r.se_id, list, n, &r);
	if (rc != 0) {
		rc = call_failed(fs, t, "9.2 get instructions", rc, &r);
		goto out;
	}
	flow_crash_point(fs->f, r.done ? "relay.done_answered" :
	    "relay.instructions_answered");
	rc = r.done ? finish(fs, t, 1, 0, "the SEI-TSM ended task %s (%s) after "
	    "%d exchange(s)", sei_task, r.result_message[0] ? r.result_message :
	    "done", flow_ctx_int(t, "exchanges", 0) + 1) :
	    relay_batch(fs, t, "9.2", &r);
out:
	sei_result_cleanup(&r);
	return rc;
}

/* Whether the SSD may start this operation now; msg says why not. */
static int
precondition(const struct flow_task *t, const struct store_ssd *r, char *msg,
    size_t cap)
{
	const char *k = t->r.kind;

	if (strcmp(k, "SSD_CREATE") == 0) {
		if (strcmp(r->state, SS_CREATING) != 0) {
			snprintf(msg, cap, "the SSD is %s, no longer CREATING",
			    r->state);
			return 0;
		}
	} else if (strcmp(k, "SSD_LOCK") == 0) {
		if (!flow_ssd_exists(r) || strcmp(r->state, SS_LOCKED) == 0) {
			snprintf(msg, cap, "an SSD in state %s cannot be locked",
			    r->state);
			return 0;
		}
	} else if (strcmp(k, "SSD_UNLOCK") == 0) {
		if (strcmp(r->state, SS_LOCKED) != 0) {
			snprintf(msg, cap, "only a LOCKED SSD can be unlocked (it is "
			    "%s)", r->state);
			return 0;
		}
	} else if (strcmp(r->state, SS_GONE) == 0 ||
	    strcmp(r->state, SS_DELETED) == 0 || strcmp(r->state, SS_CREATING) == 0) {
		snprintf(msg, cap, "an SSD in state %s cannot be deleted", r->state);
		return 0;
	}
	return 1;
}

static int
relay_run(struct flow_step *fs, struct flow_task *t)
{
	const char *aid = flow_ctx_str(t, "sdAid");
	const struct flow_resp *rp = fs->resp;
	struct store_ssd ssd;
	struct buf sel, apdu;
	struct gp_err e;
	char msg[200], note[STORE_TEXT_MAX + 1];
	json_t *a;
	size_t i;
	int rc;

	if (aid == NULL)
		return finish(fs, t, 0, ERR_INTERNAL, "task without sdAid");
	rc = store_ssd_get(fs->f->st, t->r.se_id, aid, &ssd);
	if (rc == ERR_NOTFOUND)
		return finish(fs, t, 0, ERR_NOTFOUND, "no record of SSD %s", aid);
	if (rc != 0)
		return rc;

	if (t->r.step == RS_QUEUED) {
		if (!precondition(t, &ssd, msg, sizeof(msg)))
			return finish(fs, t, 0, ERR_WRONGSTATE, "%s", msg);
		if (strcmp(t->r.kind, "SSD_CREATE") != 0) {
			snprintf(note, sizeof(note), "SEI_CALL: 9.1 %s to the SEI-TSM",
			    op_of(t));
			if ((rc = step_save(fs, t, RS_SEI_CALL, note)) != 0)
				return rc;
			return do_manage(fs, t);
		}
		rp = NULL;
		t->r.step = RS_PROBE;	/* falls into the probe below */
		goto probe_send;
	}

	switch (t->r.step) {
	case RS_PROBE:
		if (rp == NULL)
			goto probe_send;
		if (rp->n == 1 && rp->sw[0] == 0x9000) {
			return finish(fs, t, 1, 0, "the card already has SSD %s "
			    "(SELECT 9000): nothing sent to the SEI-TSM", aid);
		}
		if (rp->n != 1 || rp->sw[0] != 0x6A82)
			return finish(fs, t, 0, ERR_SW, "SELECT %s answered %04X "
			    "(expected 9000 or 6A82)", aid, rp->sw[rp->n - 1]);
		snprintf(note, sizeof(note), "SEI_CALL: the card has no SSD %s "
		    "(SELECT 6A82): 9.1 CREATE_SSD to the SEI-TSM", aid);
		if ((rc = step_save(fs, t, RS_SEI_CALL, note)) != 0)
			return rc;
		return do_manage(fs, t);
	case RS_SEI_CALL:
		return do_manage(fs, t);
	case RS_RELAY:
		if (rp == NULL) {
			/* The batch went out and its answers never came back
			 * (agent gone, tsmd restarted): send it again and let
			 * the SEI-TSM judge what the card says. */
			a = json_object_get(t->ctx, "out");
			if (!json_is_array(a) || json_array_size(a) == 0)
				return finish(fs, t, 0, ERR_INTERNAL, "RELAY without a "
				    "recorded batch");
			if ((rc = step_save(fs, t, RS_RELAY, "RELAY: the batch's "
			    "answers were lost: sent again")) != 0)
				return rc;
			json_array_extend(fs->out, a);
			return 0;
		}
		if ((a = json_array()) == NULL)
			return ERR_NOMEM;
		for (i = 0; i < rp->n; i++)
			json_array_append_new(a, json_string(rp->hex[i]));
		snprintf(note, sizeof(note), "RELAY_CALL: %zu response(s) of %zu "
		    "recorded, last SW %04X", rp->n, json_array_size(json_object_get(
		    t->ctx, "out")), rp->sw[rp->n - 1]);
		/* The batch is answered: it was kept only to be sent again. */
		json_object_set_new(t->ctx, "resp", a);
		json_object_del(t->ctx, "out");
		rc = step_save(fs, t, RS_RELAY_CALL, note);
		if (rc == ERR_TOOBIG) {
			json_object_del(t->ctx, "resp");
			return finish(fs, t, 0, rc, "RELAY: the card's %zu answers "
			    "are too large to record (task context at most %d "
			    "bytes)", rp->n, STORE_CTX_MAX);
		}
		if (rc != 0)
			return rc;
		return do_instructions(fs, t);
	case RS_RELAY_CALL:
		return do_instructions(fs, t);
	default:
		return finish(fs, t, 0, ERR_INTERNAL, "unknown step %u",
		    (unsigned)t->r.step);
	}

probe_send:
	buf_init(&sel);
	buf_init(&apdu);
	if (flow_hex_norm(aid, GP_AID_MIN, GP_AID_MAX, msg, sizeof(msg)) != 0 ||
	    hex_decode_buf(msg, &sel) != 0) {
		buf_free(&sel);
		return finish(fs, t, 0, ERR_INTERNAL, "bad sdAid");
	}
	rc = gp_select_build(sel.p, sel.len, &apdu, &e);
	if (rc == 0)
		rc = flow_out_add(fs, apdu.p, apdu.len);
	buf_free(&sel);
	buf_free(&apdu);
	if (rc != 0)
		return rc;
	snprintf(note, sizeof(note), "PROBE: SELECT %s: does the card have it?%s",
	    aid, t->r.state[0] == 'R' ? " (sent again)" : "");
	if ((rc = step_save(fs, t, RS_PROBE, note)) != 0)
		json_array_clear(fs->out);
	return rc;
}

/* The engine's end for an internal error: as any failure of the kind
 * (the SSD's task cleared; a create still CREATING becomes CREATE_FAILED). */
static int
relay_fail(struct flow_step *fs, struct flow_task *t, int err, const char *msg)
{
	return finish(fs, t, 0, err, "%s", msg);
}

const struct flow_kind flow_kind_ssd_create = { "SSD_CREATE", relay_run,
	relay_step_name, relay_fail };
const struct flow_kind flow_kind_ssd_lock = { "SSD_LOCK", relay_run,
	relay_step_name, relay_fail };
const struct flow_kind flow_kind_ssd_unlock = { "SSD_UNLOCK", relay_run,
	relay_step_name, relay_fail };
const struct flow_kind flow_kind_ssd_delete = { "SSD_DELETE", relay_run,
	relay_step_name, relay_fail };
