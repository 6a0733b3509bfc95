/*
 * statesync.c - the end of an SSD (§6.2.4, §7.1): a §9.5 DELETED/RESETED
 * from the SEI-TSM (through the hook tsm/sei calls inside the event's own
 * batch) or our own DELETE_SSD. The SSD and its applications are marked,
 * its live tasks cancelled, its key sets archived, each affected provider
 * notified - all in the caller's one batch. Runs in tsmd's workers.
 */
#include <stdio.h>
#include <string.h>

#include "tsm/flow/flow_int.h"
#include "tsm/sei/sei.h"

int
flow_keyset_archive(struct flow *f, struct store_batch *b,
    const struct store_keyset *ks, const char *reason, uint64_t now)
{
	struct tsm_config *cfg = flow_cfg_get(f);
	char key[STORE_KEY_MAX + 1], kv[3], hx[2 * STORE_KCV_MAX + 1], *bh = NULL;
	json_t *doc = NULL, *kcv;
	uint32_t seq;
	size_t i;
	int rc = ERR_NOMEM;

	pthread_mutex_lock(&f->mu);
	seq = ++f->seq;
	pthread_mutex_unlock(&f->mu);
	hex_encode_upper(&ks->kvn, 1, kv);
	/* SEID|AID|KV|<µs><seq>: unique, and in archive order per SSD. */
	snprintf(key, sizeof(key), "%s|%s|%s|%014llX%04X", ks->se_id, ks->sd_aid,
	    kv, (unsigned long long)wall_us(), (unsigned)(seq & 0xFFFF));
	if ((bh = malloc(2 * ks->blob.len + 1)) == NULL || (kcv = json_array())
	    == NULL)
		goto out;
	hex_encode_upper(ks->blob.p, ks->blob.len, bh);
	doc = json_pack("{s:s, s:s, s:s, s:i, s:s, s:s, s:o, s:s, s:I, s:I, "
	    "s:s, s:I}", "seId", ks->se_id, "sdAid", ks->sd_aid, "kvn", kv,
	    "alg", (int)ks->alg, "usage", ks->usage, "source", ks->source, "kcv",
	    kcv, "blob", bh, "created", (json_int_t)ks->created, "archived",
	    (json_int_t)now, "reason", reason, "destroyAfter", (json_int_t)(now +
	    (uint64_t)cfg->flows.key_archive_days * 86400u));
	if (doc == NULL)
		goto out;
	for (i = 0; i < ks->n_keys; i++) {
		hex_encode_upper(ks->keys[i].kcv, ks->keys[i].kcv_len, hx);
		if (json_array_append_new(kcv, json_pack("{s:s, s:s}", "usage",
		    kms_usage_name(ks->keys[i].usage), "kcv", hx)) != 0)
			goto out;
	}
	if ((rc = store_batch_put_doc(b, STORE_DB_KEYARCH, key, doc)) != 0 ||
	    (rc = store_batch_del_keyset(b, ks->se_id, ks->sd_aid, ks->kvn)) != 0)
		goto out;
	log_msg(LOG_INFO, "event=flow_keyset_archived se=%s aid=%s kvn=%s "
	    "reason=\"%s\"", ks->se_id, ks->sd_aid, kv, reason);
	rc = 0;
out:
	if (bh != NULL) {
		wipe(bh, 2 * ks->blob.len);
		free(bh);
	}
	json_decref(doc);
	tsm_config_unref(cfg);
	return rc;
}

struct end_ctx {
	struct flow        *f;
	struct store_batch *b;
	const char         *reason;
	uint64_t            now;
	int                 rc;
};

static int
archive_each(void *arg, const struct store_keyset *r)
{
	struct end_ctx *c = arg;

	c->rc = flow_keyset_archive(c->f, c->b, r, c->reason, c->now);
	return c->rc;
}

struct app_ctx {
	const char         *sd_aid;
	const char         *state;
	const char         *reason;
	struct store_batch *b;
	json_t             *providers;	/* {provider: [aid...]} */
	uint64_t            now;
	int                 rc;
};

static int
app_each(void *arg, const uint8_t *k, size_t kn, const uint8_t *v, size_t vn)
{
	struct app_ctx *c = arg;
	const char *sd, *st, *aid, *prov;
	char key[STORE_KEY_MAX + 1];
	json_t *doc = NULL, *list;
	int rc;

	if (kn > STORE_KEY_MAX || store_doc_decode(STORE_DB_APP, v, vn, &doc) != 0)
		return 0;	/* store check reports it; not ours to judge */
	memcpy(key, k, kn);
	key[kn] = '\0';
	sd = json_string_value(json_object_get(doc, "sdAid"));
	st = json_string_value(json_object_get(doc, "state"));
	aid = json_string_value(json_object_get(doc, "aid"));
	prov = json_string_value(json_object_get(doc, "providerId"));
	if (sd == NULL || strcmp(sd, c->sd_aid) != 0 || (st != NULL &&
	    (strcmp(st, SS_GONE) == 0 || strcmp(st, SS_DELETED) == 0))) {
		json_decref(doc);
		return 0;
	}
	json_object_set_new(doc, "prevState", json_string(st ? st : ""));
	json_object_set_new(doc, "state", json_string(c->state));
	json_object_set_new(doc, "stateReason", json_string(c->reason));
	json_object_set_new(doc, "updated", json_integer((json_int_t)c->now));
	if ((rc = store_batch_require_equal(c->b, STORE_DB_APP, key, kn, v,
	    vn)) != 0 || (rc = store_batch_put_doc(c->b, STORE_DB_APP, key,
	    doc)) != 0) {
		json_decref(doc);
		c->rc = rc;
		return rc;
	}
	if (prov != NULL && aid != NULL) {
		if ((list = json_object_get(c->providers, prov)) == NULL) {
			list = json_array();
			json_object_set_new(c->providers, prov, list);
		}
		json_array_append_new(list, json_string(aid));
	}
	json_decref(doc);
	return 0;
}

int
flow_ssd_end(struct flow *f, struct store_batch *b, struct store_ssd *ssd,
    const char *state, const char *prev_state, const char *app_state,
    const char *event, const char *reason, const char *except,
    const char *id_base, uint64_t now, int *notified)
{
	struct end_ctx ec = { f, b, reason, now, 0 };
	struct app_ctx ac;
	struct flow_task t;
	struct buf nraw;
	char prefix[STORE_SEID_MAX + 2], id[STORE_KEY_MAX + 1], note[200];
	const char *prov, *aid;
	json_t *ids = NULL, *list, *payload;
	size_t i;
	int rc;

	*notified = 0;
	flow_task_init(&t);
	buf_init(&nraw);
	memset(&ac, 0, sizeof(ac));
	/* Key sets: archived, then destroyed when their retention ends. */
	if ((rc = store_keyset_iter(f->st, ssd->se_id, ssd->sd_aid, archive_each,
	    &ec)) != 0 || (rc = ec.rc) != 0)
		goto out;
	/* Live tasks of this SSD: cancelled with the reason. */
	if ((rc = flow_tasks_live(f, ssd->se_id, &ids)) != 0)
		goto out;
	snprintf(note, sizeof(note), "cancelled: %s", reason);
	for (i = 0; i < json_array_size(ids); i++) {
		const char *tid = json_string_value(json_array_get(ids, i));

		if (except != NULL && strcmp(tid, except) == 0)
			continue;
		if ((rc = flow_task_load(f, tid, &t)) != 0) {
			if (rc == ERR_NOTFOUND)
				continue;
			goto out;
		}
		aid = flow_ctx_str(&t, "sdAid");
		if (aid == NULL || strcmp(aid, ssd->sd_aid) != 0 ||
		    !flow_task_is_live(&t.r))
			continue;
		flow_task_set(&t, TS_CANCELLED, t.r.step, ERR_WRONGSTATE, "%s",
		    reason);
		if ((rc = flow_task_stage(&t, b, note, &nraw)) != 0)
			goto out;
	}
	/* Applications under the SSD, and who provides them. */
	ac.sd_aid = ssd->sd_aid;
	ac.state = app_state;
	ac.reason = reason;
	ac.b = b;
	ac.now = now;
	if ((ac.providers = json_object()) == NULL) {
		rc = ERR_NOMEM;
		goto out;
	}
	snprintf(prefix, sizeof(prefix), "%s|", ssd->se_id);
	if ((rc = store_iter(f->st, STORE_DB_APP, prefix, strlen(prefix),
	    app_each, &ac)) != 0 || (rc = ac.rc) != 0)
		goto out;
	json_object_foreach(ac.providers, prov, list) {
		snprintf(id, sizeof(id), "%s-%s", id_base, prov);
		payload = json_pack("{s:s, s:s, s:s, s:s, s:s, s:O, s:I}", "event",
		    event, "seId", ssd->se_id, "sdAid", ssd->sd_aid, "status",
		    prev_state != NULL && strcmp(state, SS_GONE) == 0 ? prev_state :
		    state, "reason", reason, "apps", list, "time", (json_int_t)now);
		if (payload == NULL) {
			rc = ERR_NOMEM;
			goto out;
		}
		rc = flow_notify_add(b, id, prov, payload, now);
		json_decref(payload);
		if (rc != 0)
			goto out;
		(*notified)++;
	}
	snprintf(ssd->state, sizeof(ssd->state), "%s", state);
	snprintf(ssd->prev_state, sizeof(ssd->prev_state), "%s",
	    prev_state != NULL ? prev_state : "");
	ssd->kvn_active = ssd->kvn_pending = 0;
	ssd->task_id[0] = '\0';
	ssd->updated = now;
	rc = 0;
out:
	json_decref(ids);
	json_decref(ac.providers);
	flow_task_cleanup(&t);
	buf_free(&nraw);
	return rc;
}

/* ---- the §9.5 hook --------------------------------------------------------- */

static int
hook_amend(void *arg, struct store *st, struct store_batch *b,
    const struct store_ssd *old, struct store_ssd *ssd,
    const struct store_sdstatus *ev, uint64_t now)
{
	struct flow *f = arg;
	char base[48], reason[160];
	int n = 0, rc;

	(void)st;
	(void)old;
	if (strcmp(ev->status, "DELETED") != 0 && strcmp(ev->status,
	    "RESETED") != 0)
		return 0;
	/* One id per event and provider: a rebuilt batch makes the same. */
	snprintf(base, sizeof(base), "N%016llX%08X", (unsigned long long)ev->time,
	    (unsigned)ev->seq);
	snprintf(reason, sizeof(reason), "SEI-TSM %s reported the SSD %s "
	    "(state sync, 9.5)", ev->source, ev->status);
	rc = flow_ssd_end(f, b, ssd, SS_GONE, ev->status, SS_GONE, "SSD_GONE",
	    reason, NULL, base, now, &n);
	if (rc == 0)
		log_msg(LOG_INFO, "event=flow_state_sync se=%s aid=%s status=%s "
		    "notifications=%d", ev->se_id, ev->sd_aid, ev->status, n);
	return rc;
}

static void
hook_committed(void *arg, const struct store_sdstatus *ev)
{
	(void)ev;
	flow_kick(arg);
}

void
flow_sdstatus_hook(struct flow *f, struct sei_sdstatus_hook *out)
{
	memset(out, 0, sizeof(*out));
	out->amend = hook_amend;
	out->committed = hook_committed;
	out->arg = f;
}
