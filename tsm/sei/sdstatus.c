/*
 * sdstatus.c - POST /api/v1/sei/sd-status (§9.5): validates the body (seId
 * required here), records the event and marks the SSD record in one
 * durable batch with the nonce claim. Acting on the new state is the
 * flows' business. Runs in tsmd's workers; the body is untrusted.
 */
#include <stdio.h>
#include <string.h>

#include "tsm/sei/sei_int.h"

/* The flows' reaction, run inside the batch (sei.h). */
static struct sei_sdstatus_hook the_hook;

void
sei_sdstatus_set_hook(const struct sei_sdstatus_hook *h)
{
	if (h == NULL)
		memset(&the_hook, 0, sizeof(the_hook));
	else
		the_hook = *h;
}

/* 1 when a and b encode differently (struct padding is not compared). */
static int
ssd_differs(const struct store_ssd *a, const struct store_ssd *b)
{
	struct buf x, y;
	int d;

	buf_init(&x);
	buf_init(&y);
	d = store_ssd_encode(a, &x) != 0 || store_ssd_encode(b, &y) != 0 ||
	    x.len != y.len || memcmp(x.p, y.p, x.len) != 0;
	buf_free(&x);
	buf_free(&y);
	return d;
}

/* The batch: SE and SSD records (created when unknown, so that the event
 * refers to an SSD), the event, the SSD's state marker with whatever the
 * flows' hook adds to it, the nonce. */
static int
build_batch(struct store_batch *b, struct store *st, const struct tsm_peer *p,
    const struct http_sig *sig, struct store_sdstatus *ev, uint64_t now)
{
	struct store_ssd old, ssd;
	int rc, known;

	store_batch_clear(b);
	if ((rc = sei_batch_add_se(b, st, ev->se_id, p, now)) != 0)
		return rc;
	/* The event first: it gets its seq, which the hook may use. */
	if ((rc = store_batch_put_sdstatus(b, ev)) != 0)
		return rc;
	rc = store_ssd_get(st, ev->se_id, ev->sd_aid, &old);
	if (rc == ERR_NOTFOUND) {
		known = 0;
		sei_ssd_fresh(&ssd, ev->se_id, ev->sd_aid, ev->status, now);
	} else if (rc != 0) {
		return rc;
	} else {
		known = 1;
		ssd = old;
		if (strcmp(old.state, ev->status) != 0) {
			/* What an unlock restores, among others. */
			snprintf(ssd.prev_state, sizeof(ssd.prev_state), "%s",
			    old.state);
			snprintf(ssd.state, sizeof(ssd.state), "%s", ev->status);
			ssd.updated = now;
		}
	}
	if (the_hook.amend != NULL && (rc = the_hook.amend(the_hook.arg, st, b,
	    known ? &old : NULL, &ssd, ev, now)) != 0)
		return rc;
	if (!known) {
		if ((rc = sei_batch_put_new_ssd(b, &ssd)) != 0)
			return rc;
	} else if (ssd_differs(&ssd, &old)) {
		if ((rc = store_batch_require_ssd(b, &old)) != 0 ||
		    (rc = store_batch_put_ssd(b, &ssd)) != 0)
			return rc;
	}
	return sei_claim_nonce(b, p, sig, now);
}

int
sei_sdstatus_handle(struct http_req *rq, struct http_resp *rs, void *arg)
{
	struct sei_app *app = arg;
	const struct tsm_peer *p = http_req_peer(rq);
	const struct http_sig *sig = http_req_sig(rq);
	struct store_batch *b = NULL;
	struct store_sdstatus ev;
	struct sei_sdstatus req;
	char msg[SEI_MSG_MAX];
	uint64_t now = (uint64_t)wall_seconds();
	int rc, code, tries, seen;

	if (p == NULL || sig == NULL)
		return ERR_INTERNAL;
	code = sei_sdstatus_parse(http_req_json(rq), &req, msg, sizeof(msg));
	if (code == SEI_OK)
		code = sei_check_request(rq, http_req_sig(rq), app->st,
		    req.sei_tsm_id, msg, sizeof(msg));
	if (code != SEI_OK) {
		log_msg(LOG_INFO, "event=sei_sd_status rid=%s peer=%s result=%d "
		    "what=refused", http_req_id(rq), p->sei_tsm_id, code);
		return sei_reply(rs, code, "%s", msg);
	}
	memset(&ev, 0, sizeof(ev));
	snprintf(ev.se_id, sizeof(ev.se_id), "%s", req.se_id);
	snprintf(ev.sd_aid, sizeof(ev.sd_aid), "%s", req.sd_aid);
	snprintf(ev.status, sizeof(ev.status), "%s", req.status);
	snprintf(ev.source, sizeof(ev.source), "%s", p->sei_tsm_id);
	ev.time = now;

	if ((rc = store_batch_new(&b)) != 0)
		return sei_store_failure(rq, rs, rc);
	for (tries = 0; tries < SEI_BATCH_TRIES; tries++) {
		if ((rc = build_batch(b, app->st, p, sig, &ev, now)) != 0)
			break;
		rc = store_batch_commit(app->st, b);
		if (rc != ERR_EXISTS && rc != ERR_WRONGSTATE)
			break;
		/* The nonce (a replay) or an SE/SSD record that changed
		 * since it was read (then again). */
		seen = sei_nonce_claimed(app->st, p->sei_tsm_id, sig->nonce, now);
		if (seen == 1) {
			store_batch_free(b);
			return sei_reply(rs, SEI_REPLAY, "nonce already used");
		}
		if (seen < 0) {
			rc = seen;
			break;
		}
	}
	store_batch_free(b);
	if (rc != 0)
		return sei_store_failure(rq, rs, rc);
	if (the_hook.committed != NULL)
		the_hook.committed(the_hook.arg, &ev);
	log_msg(LOG_INFO, "event=sei_sd_status rid=%s peer=%s se=%s aid=%s "
	    "status=%s result=0", http_req_id(rq), p->sei_tsm_id, ev.se_id,
	    ev.sd_aid, ev.status);
	return sei_reply(rs, SEI_OK, "status recorded");
}
