/*
 * keysync.c - POST /api/v1/sei/key-sync (§9.4): validates the body, then
 * one kmsd request (keyset.receive) verifies the peer's MAC, unwraps the
 * keys under the peer's transport KEK, checks their KCVs, rewraps them and
 * MACs the receipt and the answer that carries it; then blob, SE/SSD
 * records and nonce claim go into one durable batch (a repeat rebuilds
 * the same answer: nothing else is kept of it). The
 * route checks the MAC itself (mac_in_handler): any other answer waits
 * for the usual check. Starts on MHD's thread (the usual case is handed
 * to kmsd's pipe from there), anything that may wait runs on a worker;
 * holds no key bytes (kmsd does).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tsm/sei/sei_int.h"

#define OK_MESSAGE    "key set received"

/* What one key sync works with besides the request. */
struct ks_job {
	struct http_req       *rq;
	const struct tsm_peer *peer;
	const struct http_sig *sig;
	struct store          *st;
	struct sei_keysync     ks;
	uint64_t               now;
	struct buf             blob;		/* from kmsd */
	struct kms_keyset_kcvs kcvs;		/* as computed in the token */
	uint8_t                mac[32];		/* receipt MAC */
	struct buf             body;		/* the answer, as sent */
	size_t                 mac_at;		/* receipt MAC hex in body */
	struct buf             head;		/* its signed string's head */
	int                    kms_signs;	/* kmsd MACs the answer (0: the
						 * header would not fit) */
	int64_t                ans_ts;		/* its X-TSM-Signature's */
	char                   ans_nonce[33];
	uint8_t                ans_mac[32];	/* the answer's, from kmsd */
	struct store_batch    *b;		/* the new set's batch */
	const struct http_sig *claimed;		/* the MAC, not yet settled */
	struct buf             sin;		/* the string it covers */
	struct buf             rin;		/* the receipt's MAC input */
	int                    known;		/* stored_set() before kmsd */
	uint8_t                active;		/* SET_RETIRED: the SSD's kvn */
	int                    rc;		/* handed to a worker: kmsd's
						 * reply, or the commit's */
};

static void
ks_free(struct ks_job *j)
{
	if (j == NULL)
		return;
	buf_free(&j->blob);
	buf_free(&j->body);
	buf_free(&j->head);
	buf_free(&j->sin);
	buf_free(&j->rin);
	store_batch_free(j->b);
	wipe(j, sizeof(*j));
	free(j);
}

/* ---- kmsd: the peer's MAC, the import and the receipt MAC at once ---- */

/* The request; w holds the keys' descriptors it points at. */
static void
receive_in(const struct ks_job *j, struct kms_wrapped w[SEI_KEYS],
    struct kms_receive *in)
{
	size_t i;

	for (i = 0; i < j->ks.n; i++)
		w[i] = (struct kms_wrapped){ j->ks.usages[i], j->ks.wrapped[i],
		    j->ks.wlen[i], j->ks.kcv[i], j->ks.kcvlen };
	*in = (struct kms_receive){ .mac_key = j->peer->mac_key,
	    .msg = j->sin.p, .msglen = j->sin.len, .mac = j->claimed->sig,
	    .kek = j->peer->transport_kek, .mech = j->peer->wrap,
	    .alg = j->ks.alg, .kcv_method = j->peer->kcv_method, .keys = w,
	    .n = j->ks.n, .receipt = j->rin.p, .rlen = j->rin.len };
	if (j->kms_signs) {
		in->ans_head = j->head.p;
		in->ans_hlen = j->head.len;
		in->ans_pre = j->body.p;
		in->ans_plen = j->mac_at;
		in->ans_suf = j->body.p + j->mac_at + 64;
		in->ans_slen = j->body.len - j->mac_at - 64;
	}
}

/* keyset.receive on this worker's connection, waiting for it. */
static int
receive(struct ks_job *j)
{
	struct kms_client *c = tsm_kms();
	struct kms_wrapped w[SEI_KEYS];
	struct kms_receive in;
	uint64_t t0 = now_us();
	int rc;

	if (c == NULL)
		return ERR_IO;
	receive_in(j, w, &in);
	rc = kms_keyset_receive(c, &in, &j->blob, &j->kcvs, j->mac,
	    j->kms_signs ? j->ans_mac : NULL);
	tsm_kms_observe(KMS_OP_KEYSET_RECEIVE, (double)(now_us() - t0) / 1e6,
	    rc);
	return rc;
}

/* ---- records ---- */

/* The same key set as stored: same source, Alg, usage and KCVs. */
static int
same_set(const struct store_keyset *r, const struct ks_job *j)
{
	size_t i;
	int same;

	if (strcmp(r->source, j->peer->sei_tsm_id) != 0 ||
	    r->alg != (uint8_t)j->ks.alg || strcmp(r->usage, j->ks.usage) != 0 ||
	    r->n_keys != j->ks.n)
		return 0;
	same = 1;
	for (i = 0; i < j->ks.n; i++)
		same &= r->keys[i].kcv_len == j->ks.kcvlen &&
		    ct_equal(r->keys[i].kcv, j->ks.kcv[i], j->ks.kcvlen);
	return same;
}

/* An SSD a key set arrives for: states from which it moves to
 * KEYS_RECEIVED (README.md); the others are the flows' to change. The
 * flows' states (tsm/flow/FLOWS.md): CREATING (their §9.1 task has not
 * seen its end yet: the key sync may overtake it), CREATE_FAILED (the
 * SEI-TSM may have finished after all) and GONE (removed, §9.5). */
static int
ssd_takes_keys(const char *state)
{
	return state[0] == '\0' || strcmp(state, "CREATED") == 0 ||
	    strcmp(state, "DELETED") == 0 || strcmp(state, "RESETED") == 0 ||
	    strcmp(state, "CREATING") == 0 ||
	    strcmp(state, "CREATE_FAILED") == 0 || strcmp(state, "GONE") == 0;
}

static void
log_result(const struct ks_job *j, int code, const char *what)
{
	char kv[3];

	hex_encode_upper(&j->ks.kvn, 1, kv);
	log_msg(code == SEI_OK ? LOG_INFO : LOG_WARN, "event=sei_key_sync rid=%s "
	    "peer=%s se=%s aid=%s kvn=%s result=%d what=%s", http_req_id(j->rq),
	    j->peer->sei_tsm_id, j->ks.se_id[0] ? j->ks.se_id : "*", j->ks.sd_aid,
	    kv, code, what);
}

#define SET_OTHER   2	/* stored_set: another set under this name */
#define SET_RETIRED 3	/* stored_set: a version tsmd's keys replaced */

/* An SSD whose keys tsmd has replaced (kvn_active, not deleted, reset or
 * gone since): the SEI-TSM no longer knows its keys, so a set for it is a
 * late retry of one the card has dropped (taking it would bring retired
 * keys back), or comes before the §9.5 notice of a re-created SSD. Any
 * version: tsmd's own wrap within 30..3F, so "newer" means nothing. */
static int
ssd_retired(struct ks_job *j, const struct store_ssd *ssd)
{
	if (ssd->kvn_active == 0 || ssd_takes_keys(ssd->state))
		return 0;
	j->active = ssd->kvn_active;
	return 1;
}

/* ssd_retired for the stored SSD: 1, 0 (none or not), < 0 an error. */
static int
retired_version(struct ks_job *j)
{
	struct store_ssd ssd;
	int rc;

	if (j->ks.se_id[0] == '\0')
		return 0;
	rc = store_ssd_get(j->st, j->ks.se_id, j->ks.sd_aid, &ssd);
	if (rc != 0)
		return rc == ERR_NOTFOUND ? 0 : rc;
	return ssd_retired(j, &ssd);
}

/* 1 stored and the same, 0 absent, SET_OTHER when a different set is
 * stored, SET_RETIRED for an SSD keyed by tsmd, < 0 an error. */
static int
stored_set(struct ks_job *j)
{
	struct store_keyset r;
	int rc;

	store_keyset_init(&r);
	rc = store_keyset_get(j->st, j->ks.se_id, j->ks.sd_aid, j->ks.kvn, &r);
	if (rc == 0)
		rc = same_set(&r, j) ? 1 : SET_OTHER;
	else if (rc == ERR_NOTFOUND && (rc = retired_version(j)) == 1)
		rc = SET_RETIRED;
	store_keyset_cleanup(&r);
	return rc;
}

/* The refusal of a set stored_set found in conflict (seen). */
static int
refuse_set(struct ks_job *j, struct http_resp *rs, int seen)
{
	char kv[3], av[3];

	log_result(j, SEI_STATE_CONFLICT, seen == SET_RETIRED ? "retired" :
	    "conflict");
	if (seen != SET_RETIRED)
		return sei_reply(rs, SEI_STATE_CONFLICT, "another key set is "
		    "stored for this SE, SSD and keyVersion");
	hex_encode_upper(&j->ks.kvn, 1, kv);
	hex_encode_upper(&j->active, 1, av);
	return sei_reply(rs, SEI_STATE_CONFLICT, "keyVersion %s: tsmd has "
	    "replaced this SSD's keys (active version %s); a key set is taken "
	    "again once the SSD is reported deleted or reset (sd-status)", kv,
	    av);
}

static int
add_se_ssd(struct store_batch *b, struct ks_job *j)
{
	struct store_ssd old, ssd;
	int rc;

	if ((rc = sei_batch_add_se(b, j->st, j->ks.se_id, j->peer,
	    j->now)) != 0)
		return rc;
	rc = store_ssd_get(j->st, j->ks.se_id, j->ks.sd_aid, &old);
	if (rc == ERR_NOTFOUND) {
		sei_ssd_fresh(&ssd, j->ks.se_id, j->ks.sd_aid, "KEYS_RECEIVED",
		    j->now);
		ssd.kvn_pending = j->ks.kvn;
		return sei_batch_put_new_ssd(b, &ssd);
	}
	if (rc != 0)
		return rc;
	/* Keyed by tsmd since the check before kmsd: refused as there (the
	 * caller reads it again on ERR_WRONGSTATE). */
	if (ssd_retired(j, &old))
		return ERR_WRONGSTATE;
	/* The batch holds only while the SSD is as read, changed or not. */
	if ((rc = store_batch_require_ssd(b, &old)) != 0)
		return rc;
	ssd = old;
	if (ssd_takes_keys(ssd.state) || strcmp(ssd.state,
	    "KEYS_RECEIVED") == 0) {
		snprintf(ssd.state, sizeof(ssd.state), "KEYS_RECEIVED");
		if (j->ks.kvn > ssd.kvn_pending)
			ssd.kvn_pending = j->ks.kvn;
	}
	if (strcmp(ssd.state, old.state) == 0 &&
	    ssd.kvn_pending == old.kvn_pending)
		return 0;
	ssd.updated = j->now;
	return store_batch_put_ssd(b, &ssd);
}

/* The one batch of a new key set. */
static int
build_batch(struct store_batch *b, struct ks_job *j)
{
	char key[STORE_KEY_MAX + 1];
	struct store_keyset rec;
	size_t i;
	int rc;

	store_batch_clear(b);
	store_keyset_init(&rec);
	snprintf(rec.se_id, sizeof(rec.se_id), "%s", j->ks.se_id);
	snprintf(rec.sd_aid, sizeof(rec.sd_aid), "%s", j->ks.sd_aid);
	rec.kvn = j->ks.kvn;
	rec.alg = (uint8_t)j->ks.alg;
	snprintf(rec.usage, sizeof(rec.usage), "%s", j->ks.usage);
	snprintf(rec.source, sizeof(rec.source), "%s", j->peer->sei_tsm_id);
	rec.n_keys = (uint8_t)j->kcvs.n;
	for (i = 0; i < j->kcvs.n; i++) {
		rec.keys[i].usage = j->kcvs.usage[i];
		rec.keys[i].kcv_len = (uint8_t)j->kcvs.kcvlen;
		memcpy(rec.keys[i].kcv, j->kcvs.kcv[i], j->kcvs.kcvlen);
	}
	rec.created = j->now;
	if ((rc = buf_put(&rec.blob, j->blob.p, j->blob.len)) != 0 ||
	    (rc = store_key_keyset(key, j->ks.se_id, j->ks.sd_aid,
	    j->ks.kvn)) != 0 ||
	    (rc = store_batch_require_absent(b, STORE_DB_KEYSET, key,
	    strlen(key))) != 0 ||
	    (rc = store_batch_put_keyset(b, &rec)) != 0)
		goto out;
	if (j->ks.se_id[0] != '\0' && (rc = add_se_ssd(b, j)) != 0)
		goto out;
	rc = sei_claim_nonce(b, j->peer, j->sig, j->now);
out:
	store_keyset_cleanup(&rec);
	return rc;
}

/* ---- answers ---- */

#define MAC_SLOT "00000000000000000000000000000000" \
		 "00000000000000000000000000000000"

/*
 * The answer, made before kmsd is asked: KCVs as sent (kmsd refuses a set
 * whose KCVs differ from the token's), a placeholder for the receipt
 * MAC's hex at mac_at, and the head of the string its signature covers,
 * so that keyset.receive MACs receipt and answer in the same request.
 */
static int
build_answer(struct ks_job *j)
{
	json_t *o, *a;
	char hx[11], hdr[HTTP_SIG_HDR_MAX];
	const char *slot;
	char *s;
	size_t i;
	int rc = ERR_NOMEM;

	o = json_pack("{s:i, s:s}", "resultCode", SEI_OK, "resultMessage",
	    OK_MESSAGE);
	a = json_array();
	if (o == NULL || a == NULL || json_object_set(o, "receipt", a) != 0)
		goto out;
	for (i = 0; i < j->ks.n; i++) {
		hex_encode_upper(j->ks.kcv[i], j->ks.kcvlen, hx);
		if (json_array_append_new(a, json_string(hx)) != 0)
			goto out;
	}
	if (json_array_append_new(a, json_string(MAC_SLOT)) != 0)
		goto out;
	if ((s = json_dumps(o, JSON_COMPACT)) == NULL)
		goto out;
	/* KCVs are at most 10 hex digits: the only run of 64 is the slot */
	slot = strstr(s, MAC_SLOT);
	j->mac_at = slot != NULL ? (size_t)(slot - s) : 0;
	buf_reset(&j->body);
	rc = slot != NULL ? buf_put(&j->body, s, strlen(s)) : ERR_INTERNAL;
	free(s);
	if (rc != 0)
		goto out;
	j->ans_ts = wall_seconds();
	if ((rc = http_sig_nonce(j->ans_nonce)) != 0)
		goto out;
	buf_reset(&j->head);
	if ((rc = http_sig_head(&j->head, http_req_method(j->rq),
	    http_req_path(j->rq), j->ans_ts, j->ans_nonce)) != 0)
		goto out;
	/* a header that does not fit is left to the framework */
	j->kms_signs = http_sig_header(hdr, sizeof(hdr), j->peer->mac_key_id,
	    j->ans_ts, j->ans_nonce, j->ans_mac) == 0;
out:
	json_decref(a);
	json_decref(o);
	return rc;
}

/* The receipt MAC, from kmsd, into its slot in the answer. */
static void
complete_answer(struct ks_job *j)
{
	char mhx[65];

	hex_encode(j->mac, 32, mhx);
	memcpy(j->body.p + j->mac_at, mhx, 64);
}

/* The answer j->body, signed with kmsd's answer MAC (else the framework
 * signs it). */
static void
sign_answer(struct ks_job *j, struct http_resp *rs)
{
	char hdr[HTTP_SIG_HDR_MAX];

	if (!j->kms_signs || http_sig_header(hdr, sizeof(hdr),
	    j->peer->mac_key_id, j->ans_ts, j->ans_nonce, j->ans_mac) != 0)
		return;
	if (http_resp_header(rs, HTTP_SIG_HEADER, hdr) != 0)
		log_msg(LOG_WARN, "event=sei_answer_sig_unused rid=%s",
		    http_req_id(j->rq));
}

/*
 * The same key set again, after claiming the new nonce alone: the answer
 * is the first one's bytes, since everything in it (KCVs, the receipt
 * MAC) follows from the key set and the peer's MAC key.
 */
static int
answer_repeat(struct ks_job *j, struct http_resp *rs, struct store_batch *b)
{
	int rc;

	store_batch_clear(b);
	if ((rc = sei_claim_nonce(b, j->peer, j->sig, j->now)) != 0)
		return rc;
	rc = store_batch_commit(j->st, b);
	if (rc == ERR_EXISTS)
		return sei_reply(rs, SEI_REPLAY, "nonce already used");
	if (rc != 0)
		return rc;
	rc = http_resp_body(rs, 200, "application/json", j->body.p,
	    j->body.len);
	if (rc == 0)
		sign_answer(j, rs);
	return rc;
}

/* The answer for a newly stored set: the body built before kmsd was
 * asked, signed with kmsd's answer MAC. */
static int
answer_stored(struct ks_job *j, struct http_resp *rs)
{
	int rc;

	log_result(j, SEI_OK, "stored");
	rc = http_resp_body(rs, 200, "application/json", j->body.p, j->body.len);
	if (rc == 0)
		sign_answer(j, rs);
	return rc;
}

#define NO_COMMIT_YET 1	/* store_new_set: none made (errors are < 0) */

/*
 * Stores the new set and answers. first: the result of a commit of j->b
 * already made (by the handed-off path), or NO_COMMIT_YET.
 */
static int
store_new_set(struct ks_job *j, struct http_resp *rs, int first)
{
	struct store_batch *b;
	int rc, tries, seen;

	if (j->b == NULL && (rc = store_batch_new(&j->b)) != 0)
		return sei_store_failure(j->rq, rs, rc);
	b = j->b;
	for (tries = 0; tries < SEI_BATCH_TRIES; tries++) {
		if (tries == 0 && first != NO_COMMIT_YET)
			rc = first;
		else if ((rc = build_batch(b, j)) == 0)
			rc = store_batch_commit(j->st, b);
		if (rc != ERR_EXISTS && rc != ERR_WRONGSTATE)
			break;
		/* A condition failed: a replay, the same set arriving
		 * twice at once, another set, or an SE/SSD record that
		 * changed since it was read. */
		if ((seen = sei_nonce_claimed(j->st, j->peer->sei_tsm_id,
		    j->sig->nonce, j->now)) == 1) {
			log_result(j, SEI_REPLAY, "replay");
			return sei_reply(rs, SEI_REPLAY, "nonce already used");
		}
		if (seen == 0)
			seen = stored_set(j);
		if (seen == 1) {
			log_result(j, SEI_OK, "repeat");
			if ((rc = answer_repeat(j, rs, b)) != 0)
				rc = sei_store_failure(j->rq, rs, rc);
			return rc;
		}
		if (seen == SET_OTHER || seen == SET_RETIRED)
			return refuse_set(j, rs, seen);
		if (seen < 0) {
			rc = seen;
			break;
		}
		rc = ERR_WRONGSTATE;	/* an SE/SSD record moved: again */
	}
	if (rc == 0)
		return answer_stored(j, rs);
	if (rc == ERR_EXISTS || rc == ERR_WRONGSTATE)
		log_result(j, SEI_UNAVAILABLE, "contention");
	return sei_store_failure(j->rq, rs, rc);
}

/* A handed-off commit failed: the retries and refusals, on a worker. */
static int
ks_retry(struct http_req *rq, struct http_resp *rs, void *arg)
{
	struct ks_job *j = arg;
	int rc;

	(void)rq;
	rc = store_new_set(j, rs, j->rc);
	ks_free(j);
	return rc;
}

/*
 * The store writer, after the commit of a handed-off new set: the usual
 * case (stored) is answered here, with no worker waking to do it.
 */
static void
ks_committed(int rc, void *arg)
{
	struct ks_job *j = arg;
	struct http_req *rq = j->rq;
	struct http_resp *rs = http_req_resp(rq);

	if (rc != 0) {
		j->rc = rc;
		http_req_continue(rq, ks_retry, j);
		return;
	}
	rc = answer_stored(j, rs);
	ks_free(j);
	http_req_done(rq, rc);
}

/*
 * A new set from a worker: its batch goes to the store writer, and the
 * worker is free for the next request while the commit is made durable.
 * 1: handed off (j and rq are no longer ours); 0: the commit could not be
 * queued, do it here.
 */
static int
hand_off(struct ks_job *j)
{
	if (!http_req_can_defer(j->rq))
		return 0;
	if (j->b == NULL && store_batch_new(&j->b) != 0)
		return 0;
	if (build_batch(j->b, j) != 0)
		return 0;
	return store_batch_commit_async(j->st, j->b, ks_committed, j) == 0;
}

/* The kmsd part failed: the answer for the SEI-TSM. */
static int
kms_failure(struct ks_job *j, struct http_resp *rs, int rc)
{
	int code = sei_result_from_err(rc);

	log_result(j, code, err_name(rc));
	switch (code) {
	case SEI_KCV_MISMATCH:
		return sei_reply(rs, code, "checkValue: a key's check value "
		    "computed in the token differs from the one sent");
	case SEI_UNWRAP_FAILED:
		return sei_reply(rs, code, "encryptedKey: cannot unwrap under the "
		    "transport key agreed with %s (or the key is not %s)",
		    j->peer->sei_tsm_id, kms_alg_name(j->ks.alg));
	case SEI_BAD_FORMAT:
		return sei_reply(rs, code, "Alg: %s is not supported by the "
		    "token", kms_alg_name(j->ks.alg));
	case SEI_UNAVAILABLE:
		return sei_reply(rs, code, "the key service is unavailable; retry "
		    "later");
	}
	log_msg(LOG_ERR, "event=sei_kms_failed rid=%s err=%s", http_req_id(j->rq),
	    err_name(rc));
	return sei_reply(rs, SEI_INTERNAL, "internal error");
}

/* kmsd's KCVs are the ones sent (kmsd compared them in the token; the
 * receipt MAC was computed over the sent ones, so they must be the
 * token's). */
static int
kcvs_as_sent(const struct ks_job *j)
{
	size_t i;

	if (j->kcvs.n != j->ks.n || j->kcvs.kcvlen != j->ks.kcvlen)
		return 0;
	for (i = 0; i < j->ks.n; i++)
		if (j->kcvs.usage[i] != j->ks.usages[i] ||
		    !ct_equal(j->kcvs.kcv[i], j->ks.kcv[i], j->ks.kcvlen))
			return 0;
	return 1;
}

/* kmsd's answer is good (rc 0 from it): the MAC settles (the nonce is
 * claimed), the KCVs are the ones sent, the receipt MAC goes into the
 * answer. 0, 1 when refused (a replay: answered), or an error. */
static int
accept_set(struct ks_job *j)
{
	if (http_req_sig_settle(j->rq, 0) != 0)
		return 1;
	if ((j->sig = http_req_sig(j->rq)) == NULL)
		return ERR_INTERNAL;
	if (!kcvs_as_sent(j))
		return ERR_PROTO;
	complete_answer(j);
	return 0;
}

/*
 * Everything after keyset.receive (rc its result), on a worker: the MAC's
 * verdict, then the repeat's answer or the new set's commit.
 * HTTP_DEFERRED when the commit was handed off (j is no longer ours).
 */
static int
after_receive(struct ks_job *j, struct http_resp *rs, int rc)
{
	struct http_req *rq = j->rq;
	int settled;

	if (rc != 0) {
		/* Which step failed is not the peer's to learn before its MAC
		 * is known good. kmsd checks the MAC before anything else, so
		 * ERR_AUTH is the MAC and an unwrap or KCV failure comes after
		 * it verified; any other failure has it checked on its own. */
		if (rc == ERR_AUTH || rc == ERR_UNWRAP || rc == ERR_KCV)
			settled = http_req_sig_settle(rq, rc == ERR_AUTH ? rc : 0);
		else
			settled = http_req_sig_require(rq);
		if (settled != 0)
			return 0;
		return kms_failure(j, rs, rc);
	}
	if ((rc = accept_set(j)) != 0)
		return rc > 0 ? 0 : rc;
	if (j->known == 1) {
		log_result(j, SEI_OK, "repeat");
		rc = j->b == NULL ? store_batch_new(&j->b) : 0;
		if (rc == 0)
			rc = answer_repeat(j, rs, j->b);
		return rc != 0 ? sei_store_failure(rq, rs, rc) : 0;
	}
	if (hand_off(j))
		return HTTP_DEFERRED;
	return store_new_set(j, rs, NO_COMMIT_YET);
}

/* after_receive for a handed-off request, on a worker: j is freed unless
 * handed off again. */
static int
after_on_worker(struct ks_job *j, struct http_resp *rs, int rc)
{
	rc = after_receive(j, rs, rc);
	if (rc != HTTP_DEFERRED)
		ks_free(j);
	return rc;
}

/* A handed-off receive that did not end in the usual way, on a worker. A
 * lost pipe connection is retried once on the worker's own (the request
 * is repeatable), as a synchronous call does by itself. */
static int
ks_after(struct http_req *rq, struct http_resp *rs, void *arg)
{
	struct ks_job *j = arg;
	int rc = j->rc;

	(void)rq;
	if (rc == ERR_CLOSED || rc == ERR_IO)
		rc = receive(j);
	return after_on_worker(j, rs, rc);
}

/*
 * kmsd's reply to a handed-off keyset.receive, on the pipe's reader
 * thread, which must not block: the usual case (MAC good, nonce fresh,
 * KCVs as sent) goes on to the store writer from here; anything else goes
 * to a worker.
 */
static void
on_received(int status, struct rd *reply, void *arg)
{
	struct ks_job *j = arg;
	struct http_req *rq = j->rq;
	int rc = status;

	if (rc == 0 && reply != NULL)
		rc = kms_keyset_receive_decode(reply, j->kms_signs,
		    &j->blob, &j->kcvs, j->mac, j->ans_mac);
	/* (accept_set again on the worker gives the same verdict) */
	if (rc == 0 && accept_set(j) == 0 && hand_off(j))
		return;
	j->rc = rc;
	http_req_continue(rq, ks_after, j);
}

static int send_receive(struct ks_job *j);

/* On a worker, after the pipe could not take the request from MHD's
 * thread (not connected yet, busy, full): sent on it from here, where it
 * may wait (and connect), or else keyset.receive waited for on the
 * worker's own connection. */
static int
ks_receive(struct http_req *rq, struct http_resp *rs, void *arg)
{
	struct ks_job *j = arg;

	(void)rq;
	if (send_receive(j))
		return HTTP_DEFERRED;
	return after_on_worker(j, rs, receive(j));
}

/* keyset.receive on the shared pipe, from a handler that hands its
 * request off: 1 when handed off (j and the request are no longer ours):
 * sent, or, from MHD's thread with the request suspended already, passed
 * to a worker when the pipe does not take it. */
static int
send_receive(struct ks_job *j)
{
	struct kms_wrapped w[SEI_KEYS];
	struct kms_receive in;
	struct buf b;
	int rc;

	if (!http_req_can_defer(j->rq))
		return 0;
	receive_in(j, w, &in);
	buf_init(&b);
	rc = kms_keyset_receive_encode(&b, &in);
	if (rc == 0)
		rc = tsm_kms_send(KMS_OP_KEYSET_RECEIVE, &b, on_received, j,
		    http_req_on_io_thread(j->rq));
	buf_free(&b);
	if (rc != 0 && http_req_on_io_thread(j->rq)) {
		http_req_continue(j->rq, ks_receive, j);
		return 1;
	}
	return rc == 0;
}

int
sei_keysync_handle(struct http_req *rq, struct http_resp *rs, void *arg)
{
	struct sei_app *app = arg;
	const struct http_sig *claimed;
	struct ks_job *j;
	char msg[SEI_MSG_MAX];
	/* On MHD's thread only the usual case goes on: whatever else may
	 * wait (a MAC check in kmsd, a commit) runs again on a worker. */
	int io = http_req_on_io_thread(rq), rc, code, known;

	if ((j = calloc(1, sizeof(*j))) == NULL)
		return io ? HTTP_ON_WORKER : ERR_NOMEM;
	buf_init(&j->blob);
	buf_init(&j->body);
	buf_init(&j->head);
	buf_init(&j->sin);
	buf_init(&j->rin);
	j->rq = rq;
	j->st = app->st;
	j->peer = http_req_peer(rq);
	j->now = (uint64_t)wall_seconds();
	/* The MAC is checked with the import (mac_in_handler); whatever is
	 * answered before must first pass the usual check. */
	if (j->peer == NULL || http_req_sig_pending(rq, &j->sin, &claimed) != 0) {
		rc = io ? HTTP_ON_WORKER : ERR_INTERNAL;
		goto out;
	}
	j->claimed = claimed;
	code = sei_keysync_parse(http_req_json(rq), j->peer->wrap,
	    j->peer->kcv_method, &j->ks, msg, sizeof(msg));
	if (code == SEI_OK)
		code = sei_check_request(rq, claimed, j->st, j->ks.sei_tsm_id, msg,
		    sizeof(msg));
	/* A nonce seen lately: the usual check answers the replay before
	 * kmsd unwraps anything. */
	if (code != SEI_OK || http_nonce_seen(claimed->key_id, claimed->nonce,
	    wall_seconds())) {
		if (io) {
			rc = HTTP_ON_WORKER;
			goto out;
		}
		if (http_req_sig_require(rq) != 0) {
			rc = 0;
			goto out;
		}
	}
	if (code != SEI_OK) {
		log_msg(LOG_INFO, "event=sei_key_sync rid=%s peer=%s result=%d "
		    "what=refused", http_req_id(rq), j->peer->sei_tsm_id, code);
		rc = sei_reply(rs, code, "%s", msg);
		goto out;
	}

	/* Another set under this name is refused before any key is
	 * touched; the same set is checked in kmsd and answered as before. */
	if ((known = stored_set(j)) < 0 || known == SET_OTHER ||
	    known == SET_RETIRED) {
		if (io) {
			rc = HTTP_ON_WORKER;
			goto out;
		}
		if (http_req_sig_require(rq) != 0) {
			rc = 0;
			goto out;
		}
		if (known < 0) {
			rc = sei_store_failure(rq, rs, known);
			goto out;
		}
		rc = refuse_set(j, rs, known);
		goto out;
	}
	if (io && known != 0) {		/* a repeat: on a worker */
		rc = HTTP_ON_WORKER;
		goto out;
	}
	if ((rc = sei_receipt_input(&j->rin, j->ks.sei_tsm_id, j->ks.sd_aid,
	    j->ks.se_id, j->ks.kvn, (const uint8_t (*)[5])j->ks.kcv, j->ks.n,
	    j->ks.kcvlen)) != 0 || (rc = build_answer(j)) != 0) {
		if (io)
			rc = HTTP_ON_WORKER;
		goto out;
	}
	j->known = known;
	/* A new set: this thread (MHD's, or a worker) goes on with the
	 * next request while kmsd and then the store work on this one. */
	if (known == 0 && send_receive(j)) {
		j = NULL;
		rc = HTTP_DEFERRED;
		goto out;
	}
	if (io) {
		rc = HTTP_ON_WORKER;
		goto out;
	}
	rc = after_receive(j, rs, receive(j));
	if (rc == HTTP_DEFERRED)
		j = NULL;
out:
	ks_free(j);
	return rc;
}
