/*
 * keyrepl.c - KEY_REPLACE (§6.2.2, §7.3): tsmd's own SCP03 session with an
 * SSD through the agent; the new key set recorded pending before PUT KEY
 * leaves, active only on the card's word, the old one destroyed once the
 * new one is proven. Runs in tsmd's workers; card answers are untrusted.
 */
#include <stdio.h>
#include <string.h>
#include <sys/random.h>

#include <openssl/evp.h>

#include "tsm/flow/flow_int.h"
#include "tsm/sei/sei.h"

enum {
	KR_QUEUED = 0,
	KR_OPEN = 1,	/* SELECT + IU with the old set out */
	KR_PUTKEY = 2,	/* new set pending; EA + PUT KEY out */
	KR_VERIFY = 3,	/* new set active; SELECT + IU with it out */
	KR_PROBE = 4,	/* which set does the card hold? SELECT + IU out */
};

static const char *
kr_step_name(uint32_t s)
{
	switch (s) {
	case KR_QUEUED: return "QUEUED";
	case KR_OPEN: return "OPEN";
	case KR_PUTKEY: return "PUTKEY";
	case KR_VERIFY: return "VERIFY";
	case KR_PROBE: return "PROBE";
	default: return "?";
	}
}

/* How an INITIALIZE UPDATE came back. */
enum iu_result {
	IU_OK = 0,	/* the card holds that set: cryptogram verified */
	IU_NOSSD,	/* SELECT refused: no such (selectable) SSD */
	IU_NOKEY,	/* the set does not open the SSD (6A88, cryptogram) */
};

/* The SSD change that goes with a save (applied to the record as read). */
struct kr_change {
	int      set_active, set_pending;
	uint8_t  active, pending;
	int      personalize;	/* KEYS_RECEIVED/CREATED -> PERSONALIZED */
	int      clear_task;	/* task_id "" when it names this task */
	uint8_t  keep_only;	/* destroy the SSD's other key sets */
	const struct store_keyset *add;	/* new key set record */
};

/* ---- key versions and records -------------------------------------------- */

/* FLOWS.md: old + 1 within 30..3F (wrapping); other ranges go on up,
 * skipping 70/71 (token and receipt keys at the ISD). */
static uint8_t
next_kvn(uint8_t old)
{
	if (old >= 0x30 && old <= 0x3F)
		return old == 0x3F ? 0x30 : (uint8_t)(old + 1);
	if (old >= 0x7F || old + 1 == 0x70 || old + 1 == 0x71)
		return 0x30;
	return (uint8_t)(old + 1);
}

static const char *
kvn_hex(uint8_t kvn, char out[3])
{
	hex_encode_upper(&kvn, 1, out);
	return out;
}

/* The SSD's SCP03 i parameter from its recorded scpConfig ("03" i): 0,
 * or ERR_NOTFOUND when none was recorded (an SSD known by key sync). */
static int
ssd_i(const struct store_ssd *r, uint8_t *i)
{
	uint8_t b[2];
	size_t n;

	if (strlen(r->scp_config) != 4 || hex_decode(r->scp_config, 4, b,
	    sizeof(b), &n) != 0 || b[0] != 0x03)
		return ERR_NOTFOUND;
	*i = b[1];
	return 0;
}

/* S16 from i b1. */
static int
ssd_s16(const struct store_ssd *r)
{
	uint8_t i;

	return ssd_i(r, &i) == 0 ? (i & 0x01) : 0;
}

static int
aid_bytes(const char *aid, uint8_t *out, size_t *n)
{
	return hex_decode(aid, strlen(aid), out, GP_AID_MAX, n) == 0 &&
	    *n >= GP_AID_MIN ? 0 : ERR_INVAL;
}

/* ---- saves ------------------------------------------------------------------ */

struct kr_intent {
	char     state[STORE_NAME_MAX + 1];
	uint32_t step;
	int32_t  err;
	char     text[STORE_TEXT_MAX + 1];
	json_t  *ctx;
};

static void
intent_take(struct kr_intent *in, const struct flow_task *t)
{
	snprintf(in->state, sizeof(in->state), "%s", t->r.state);
	in->step = t->r.step;
	in->err = t->r.last_err;
	snprintf(in->text, sizeof(in->text), "%s", t->r.last_error);
	in->ctx = json_deep_copy(t->ctx);
}

static void
intent_apply(const struct kr_intent *in, struct flow_task *t)
{
	flow_task_set(t, in->state, in->step, in->err, "%s", in->text);
	json_decref(t->ctx);
	t->ctx = json_deep_copy(in->ctx);
}

struct ks_del {
	struct store_batch *b;
	uint8_t keep;
	int rc;
};

static int
ks_del_each(void *arg, const struct store_keyset *r)
{
	struct ks_del *d = arg;

	if (r->kvn == d->keep)
		return 0;
	d->rc = store_batch_del_keyset(d->b, r->se_id, r->sd_aid, r->kvn);
	return d->rc != 0 ? d->rc : 0;
}

/*
 * Saves the task as the caller set it, with the SSD change c (NULL: none),
 * in one batch; rebuilt when the SSD raced (a key sync, a state sync: then
 * the task is no longer live and ERR_WRONGSTATE comes back).
 */
static int
kr_save(struct flow_step *fs, struct flow_task *t, const struct kr_change *c,
    const char *note)
{
	static const struct kr_change none;
	const char *aid = flow_ctx_str(t, "sdAid");
	struct store_batch *b = NULL;
	struct store_ssd old, nw;
	struct kr_intent in;
	struct ks_del d;
	char id[STORE_ID_MAX + 1], aidc[STORE_AID_MAX + 1];
	int rc, tries;

	if (aid == NULL)
		return ERR_INTERNAL;
	if (c == NULL)
		c = &none;
	snprintf(aidc, sizeof(aidc), "%s", aid);
	snprintf(id, sizeof(id), "%s", t->r.id);
	intent_take(&in, t);
	if (in.ctx == NULL || (rc = store_batch_new(&b)) != 0) {
		json_decref(in.ctx);
		return ERR_NOMEM;
	}
	for (tries = 0; tries < 5; tries++) {
		store_batch_clear(b);
		if ((rc = store_ssd_get(fs->f->st, t->r.se_id, aidc, &old)) != 0)
			break;
		nw = old;
		nw.updated = flow_now();
		if (c->set_active)
			nw.kvn_active = c->active;
		if (c->set_pending)
			nw.kvn_pending = c->pending;
		if (c->personalize && (strcmp(old.state, SS_KEYS_RECEIVED) == 0 ||
		    strcmp(old.state, SS_CREATED) == 0))
			snprintf(nw.state, sizeof(nw.state), SS_PERSONALIZED);
		if (c->clear_task && strcmp(nw.task_id, id) == 0)
			nw.task_id[0] = '\0';
		/* A task started by the session is created with its first
		 * step: the SSD names it from then on. */
		if (t->fresh && !c->clear_task)
			snprintf(nw.task_id, sizeof(nw.task_id), "%s", id);
		if (c->add != NULL &&
		    ((rc = store_batch_del_keyset(b, c->add->se_id,
		    c->add->sd_aid, c->add->kvn)) != 0 ||
		    (rc = store_batch_put_keyset(b, c->add)) != 0))
			break;
		if (c->keep_only != 0) {
			d.b = b;
			d.keep = c->keep_only;
			d.rc = 0;
			if ((rc = store_keyset_iter(fs->f->st, t->r.se_id, aidc,
			    ks_del_each, &d)) != 0 || (rc = d.rc) != 0)
				break;
		}
		if ((rc = flow_ssd_update(b, &old, &nw)) != 0)
			break;
		rc = flow_task_save(fs->f, t, b, note);
		if (rc != ERR_WRONGSTATE || t->fresh)
			break;	/* a fresh task that lost a race: not created */
		if ((rc = flow_task_load(fs->f, id, t)) != 0)
			break;
		if (!flow_task_is_live(&t->r)) {
			rc = ERR_WRONGSTATE;
			break;
		}
		intent_apply(&in, t);
		rc = ERR_WRONGSTATE;
	}
	json_decref(in.ctx);
	store_batch_free(b);
	return rc;
}

/* Ends the task: DONE, or FAILED with err and msg; SSD change c (may be
 * NULL: only the task id is cleared). */
static int __attribute__((format(printf, 6, 7)))
kr_end(struct flow_step *fs, struct flow_task *t, const struct kr_change *c,
    int ok, int err, const char *fmt, ...)
{
	struct kr_change end;
	char msg[STORE_TEXT_MAX + 1], note[STORE_TEXT_MAX + 1];
	va_list ap;

	va_start(ap, fmt);
	(void)vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (c != NULL)
		end = *c;
	else
		memset(&end, 0, sizeof(end));
	end.clear_task = 1;
	flow_task_set(t, ok ? TS_DONE : TS_FAILED, t->r.step, ok ? 0 : err,
	    "%s", ok ? "" : msg);
	snprintf(note, sizeof(note), "%s: %.240s", ok ? "DONE" : "FAILED", msg);
	return kr_save(fs, t, &end, note);
}

/* ---- the card exchanges ---------------------------------------------------- */

/* The highest key version of the SSD AID's master sets (key sync without
 * seId), 0 when none. */
struct mkvn {
	uint8_t kvn;
};

static int
mkvn_each(void *arg, const struct store_keyset *r)
{
	struct mkvn *m = arg;

	if (r->kvn > m->kvn)
		m->kvn = r->kvn;
	return 0;
}

uint8_t
flow_master_kvn(struct flow *f, const char *aid)
{
	struct mkvn m = { 0 };

	return store_keyset_iter(f->st, "", aid, mkvn_each, &m) == 0 ? m.kvn : 0;
}

/*
 * Opens the SSD's key set kvn on the session's kmsd connection in slot
 * (0: the set an IU names, 1: the new set, exportable): its per-SE record,
 * whose KCVs must be the handles' (GP), or else the AID's master set of
 * that version, diversified for this SE (tsm/sei/README.md "Master sets").
 */
static int
set_open(struct flow_step *fs, const char *se_id, const char *aid,
    uint8_t kvn, int slot, unsigned flags, char *why, size_t cap)
{
	struct flow_sess *s = fs->s;
	struct store_keyset r;
	uint8_t d[32];
	size_t i, j, keylen;
	int rc, master = 0;

	if (s->run.ks_open[slot] && s->run.ks_kvn[slot] == kvn)
		return 0;
	if (s->run.ks_open[slot]) {
		if (gp_kms_keyset_close(s->gk, &s->run.ks[slot]) != 0)
			log_msg(LOG_WARN, "event=flow_keyset_close_failed");
		s->run.ks_open[slot] = 0;
	}
	store_keyset_init(&r);
	rc = store_keyset_get(fs->f->st, se_id, aid, kvn, &r);
	if (rc == ERR_NOTFOUND && (rc = store_keyset_get(fs->f->st, "", aid, kvn,
	    &r)) == 0)
		master = 1;
	if (rc == ERR_NOTFOUND) {
		snprintf(why, cap, "no key set KVN %02X is recorded for this SSD",
		    kvn);
		goto out;
	}
	if (rc != 0)
		goto out;
	if ((rc = flow_sess_gp(fs->f, s, fs->cfg->kms_socket)) != 0) {
		snprintf(why, cap, "kmsd is unreachable (%s)", err_name(rc));
		goto out;
	}
	if (master) {
		keylen = kms_alg_keylen(r.alg);
		if ((rc = sei_master_div(se_id, keylen, d)) != 0) {
			snprintf(why, cap, "master key set KVN %02X: %s keys cannot be "
			    "diversified", kvn, kms_alg_name(r.alg));
			rc = ERR_NOTSUP;
			goto out;
		}
		rc = gp_kms_keyset_diversify(s->gk, r.blob.p, r.blob.len, d, keylen,
		    &s->run.ks[slot]);
		wipe(d, sizeof(d));
	} else {
		rc = gp_kms_keyset_open(s->gk, r.blob.p, r.blob.len, flags,
		    &s->run.ks[slot]);
	}
	if (rc != 0) {
		snprintf(why, cap, "kmsd could not open key set KVN %02X%s (%s)",
		    kvn, master ? " (master set, diversified)" : "", err_name(rc));
		goto out;
	}
	/* A per-SE blob must be the set the record describes (GP KCVs). */
	for (i = 0; !master && i < r.n_keys; i++) {
		if (r.keys[i].kcv_len != 3)
			continue;
		for (j = 0; j < s->run.ks[slot].n; j++)
			if (s->run.ks[slot].usage[j] == r.keys[i].usage &&
			    !ct_equal(s->run.ks[slot].kcv[j], r.keys[i].kcv, 3)) {
				snprintf(why, cap, "key set KVN %02X: the blob's KCVs "
				    "differ from the record's", kvn);
				/* Not kept: the slot caches proven sets only. */
				if (gp_kms_keyset_close(s->gk, &s->run.ks[slot]) != 0)
					log_msg(LOG_WARN,
					    "event=flow_keyset_close_failed");
				rc = ERR_KCV;
				goto out;
			}
	}
	s->run.ks_open[slot] = 1;
	s->run.ks_kvn[slot] = kvn;
out:
	store_keyset_cleanup(&r);
	return rc;
}

/* fs->out = SELECT sdAid, INITIALIZE UPDATE kvn (with the set in slot 0). */
static int
iu_batch(struct flow_step *fs, const struct store_ssd *ssd, uint8_t kvn)
{
	struct flow_sess *s = fs->s;
	uint8_t aid[GP_AID_MAX], iu[5 + 16 + 1];
	struct buf sel;
	struct gp_err e;
	size_t an;
	int rc;

	/* The session this IU replaces is kept, not released: its keys go
	 * with the connection (struct flow_run). */
	if (s->run.sc != NULL) {
		gp_scp03_free(s->run.sc_done);
		s->run.sc_done = s->run.sc;
		s->run.sc = NULL;
	}
	s->run.hclen = ssd_s16(ssd) ? 16 : 8;
	if (getrandom(s->run.hc, s->run.hclen, 0) != (ssize_t)s->run.hclen)
		return ERR_CRYPTO;
	if ((rc = aid_bytes(ssd->sd_aid, aid, &an)) != 0)
		return rc;
	buf_init(&sel);
	rc = gp_select_build(aid, an, &sel, &e);
	if (rc == 0)
		rc = flow_out_add(fs, sel.p, sel.len);
	buf_free(&sel);
	if (rc != 0)
		return rc;
	/* GPC Amd D §7.1.1: 80 50 KVN 00 Lc host-challenge Le. */
	iu[0] = 0x80;
	iu[1] = 0x50;
	iu[2] = kvn;
	iu[3] = 0x00;
	iu[4] = (uint8_t)s->run.hclen;
	memcpy(iu + 5, s->run.hc, s->run.hclen);
	iu[5 + s->run.hclen] = 0x00;
	return flow_out_add(fs, iu, 6 + s->run.hclen);
}

static int
kms_transient(int rc)
{
	return rc == ERR_CLOSED || rc == ERR_IO || rc == ERR_SEALED ||
	    rc == ERR_TIMEOUT || rc == ERR_BUSY;
}

/*
 * The answers to SELECT + IU kvn (slot 0's set): IU_OK with s->run.sc
 * authenticated and the EXTERNAL AUTHENTICATE in *ea (check_only: the
 * card proved it holds the set, no session), IU_NOSSD or IU_NOKEY with
 * why; or a negative (kmsd) error.
 */
static int
iu_check(struct flow_step *fs, const struct store_ssd *ssd, uint8_t kvn,
    int check_only, struct buf *ea, char *why, size_t cap)
{
	const struct flow_resp *rp = fs->resp;
	struct flow_sess *s = fs->s;
	struct gp_scp03_cfg cfg;
	struct gp_iu_resp iu;
	gp_keyref enc, mac;
	uint8_t aid[GP_AID_MAX], sl, want_i;
	struct buf tmp;
	struct gp_err e;
	size_t an;
	int rc;

	if (rp->n < 1 || rp->sw[0] != 0x9000) {
		snprintf(why, cap, "SELECT %s answered %04X", ssd->sd_aid,
		    rp->n ? rp->sw[0] : 0);
		return IU_NOSSD;
	}
	if (rp->n != 2) {
		snprintf(why, cap, "%zu answers to SELECT + INITIALIZE UPDATE", rp->n);
		return IU_NOKEY;
	}
	if (rp->sw[1] != 0x9000) {
		snprintf(why, cap, "INITIALIZE UPDATE KVN %02X answered %04X%s", kvn,
		    rp->sw[1], rp->sw[1] == 0x6A88 ? " (no such key set)" : "");
		return IU_NOKEY;
	}
	gp_err_clear(&e);
	if (gp_iu_resp_parse(rp->v[1].p, rp->v[1].len - 2, &iu, &e) != 0) {
		snprintf(why, cap, "INITIALIZE UPDATE KVN %02X: %.180s", kvn,
		    e.msg);
		return IU_NOKEY;
	}
	/* The card's i is not covered by its cryptogram: when the SSD was
	 * made with a known scpConfig, an answer offering less (no R-MAC,
	 * say) is refused rather than followed down. */
	if (ssd_i(ssd, &want_i) == 0 && iu.i != want_i) {
		snprintf(why, cap, "INITIALIZE UPDATE KVN %02X: i=%02X, the SSD "
		    "was made with i=%02X", kvn, iu.i, want_i);
		return IU_NOKEY;
	}
	/* SL 33 where the card offers R-MAC and R-ENC (i b6, b7), else the
	 * best it offers; C-DEC always, so keys never travel readable. */
	sl = (iu.i & 0x40) ? 0x33 : (iu.i & 0x20) ? 0x13 : 0x03;
	if ((rc = aid_bytes(ssd->sd_aid, aid, &an)) != 0 ||
	    (rc = gp_kms_keyset_ref(&s->run.ks[0], KMS_USE_ENC, &enc)) != 0 ||
	    (rc = gp_kms_keyset_ref(&s->run.ks[0], KMS_USE_MAC, &mac)) != 0)
		return rc == ERR_NOTFOUND ? ERR_INTERNAL : rc;
	memset(&cfg, 0, sizeof(cfg));
	cfg.be = &s->be;
	cfg.enc = enc;
	cfg.mac = mac;
	cfg.kvn = kvn;
	cfg.sl = sl;
	cfg.s16 = (int)s->run.hclen == 16;
	cfg.sd_aid = aid;
	cfg.sd_aid_len = an;
	if (s->run.sc != NULL)
		gp_scp03_free(s->run.sc);
	s->run.sc = NULL;
	buf_init(&tmp);
	if ((rc = gp_scp03_new(&cfg, &s->run.sc, &e)) == 0 &&
	    (rc = gp_scp03_begin(s->run.sc, s->run.hc, &tmp, &e)) == 0)
		rc = check_only ? gp_scp03_check(s->run.sc, rp->v[1].p,
		    rp->v[1].len, &e) : gp_scp03_auth(s->run.sc, rp->v[1].p,
		    rp->v[1].len, ea, &e);
	buf_free(&tmp);
	if (rc == 0)
		return IU_OK;
	if (kms_transient(rc) || !gp_kms_alive(s->gk)) {
		snprintf(why, cap, "kmsd: %s", err_name(rc));
		return rc < 0 && kms_transient(rc) ? rc : ERR_CLOSED;
	}
	snprintf(why, cap, "KVN %02X does not open the SSD: %.180s", kvn,
	    e.msg[0] ? e.msg : err_str(rc));
	return IU_NOKEY;
}

/* Records step with the IU batch for kvn (alt: the version to try next,
 * 0 none; chg: the SSD change to record with it, may be NULL). */
static int
iu_send(struct flow_step *fs, struct flow_task *t, const struct store_ssd *ssd,
    uint32_t step, uint8_t kvn, uint8_t alt, const struct kr_change *chg,
    const char *why0)
{
	char note[STORE_TEXT_MAX + 1], why[200], k1[3], k2[3];
	int rc;

	why[0] = '\0';
	if ((rc = set_open(fs, t->r.se_id, ssd->sd_aid, kvn, 0, 0, why,
	    sizeof(why))) != 0) {
		if (kms_transient(rc)) {
			snprintf(fs->why, sizeof(fs->why), "%.190s", why);
			return rc;
		}
		if (alt != 0 && rc == ERR_NOTFOUND)
			return iu_send(fs, t, ssd, KR_PROBE, alt, 0, chg, why);
		return kr_end(fs, t, NULL, 0, rc, "%s", why);
	}
	if ((rc = iu_batch(fs, ssd, kvn)) != 0)
		return rc;
	json_object_set_new(t->ctx, "probe", json_integer(kvn));
	json_object_set_new(t->ctx, "probeAlt", json_integer(alt));
	flow_task_set(t, TS_RUNNING, step, 0, NULL);
	snprintf(note, sizeof(note), "%s%s%s: SELECT %s + INITIALIZE UPDATE KVN %s"
	    "%s%s", why0 ? why0 : "", why0 ? "; " : "", kr_step_name(step),
	    ssd->sd_aid, kvn_hex(kvn, k1), alt ? ", then KVN " : "",
	    alt ? kvn_hex(alt, k2) : "");
	rc = kr_save(fs, t, chg, note);
	if (rc != 0)
		json_array_clear(fs->out);
	return rc;
}

/* The new key set: random or diversified from the SP master keys
 * (ssdKeys), made in kmsd; the record to store. */
static int
gen_set(struct flow_step *fs, const char *se_id, const char *aid,
    uint8_t kvn, int alg, struct store_keyset *rec, const char **source,
    char *why, size_t cap)
{
	const struct tsm_ssd_keys *sk = tsm_config_ssd_keys(fs->cfg, aid);
	struct kms_keyset_kcvs kcvs;
	uint8_t md[32], d[16];
	unsigned int ml = 0;
	char kv[3], in[STORE_SEID_MAX + 8];
	uint64_t t0;
	size_t i;
	int rc;

	*source = sk != NULL && sk->source == TSM_KEYS_DIVERSIFIED ?
	    "diversified" : "random";
	if (fs->kc == NULL) {
		snprintf(why, cap, "kmsd is unreachable");
		return ERR_IO;
	}
	memset(&kcvs, 0, sizeof(kcvs));
	t0 = now_us();
	if (sk != NULL && sk->source == TSM_KEYS_DIVERSIFIED) {
		/* D = SHA-256(seId ":" KVN)[0..15]: per SE and per version, so
		 * a rotation gives new keys (FLOWS.md). */
		snprintf(in, sizeof(in), "%s:%s", se_id, kvn_hex(kvn, kv));
		if (EVP_Digest(in, strlen(in), md, &ml, EVP_sha256(), NULL) != 1)
			return ERR_CRYPTO;
		memcpy(d, md, sizeof(d));
		rc = kms_keyset_derive(fs->kc, sk->master, d, sizeof(d), KMS_KCV_GP,
		    &rec->blob, &kcvs);
		wipe(d, sizeof(d));
		wipe(md, sizeof(md));
		alg = KMS_ALG_AES128;
	} else {
		rc = kms_keyset_generate(fs->kc, alg, KMS_KCV_GP, &rec->blob, &kcvs);
	}
	tsm_kms_observe(KMS_OP_KEYSET_GENERATE, (double)(now_us() - t0) / 1e6, rc);
	if (rc != 0) {
		snprintf(why, cap, "kmsd could not make the new key set (%s: %s)",
		    err_name(rc), kms_last_error(fs->kc));
		return rc;
	}
	if (kcvs.n != 3 || kcvs.kcvlen != 3)
		return ERR_PROTO;
	snprintf(rec->se_id, sizeof(rec->se_id), "%s", se_id);
	snprintf(rec->sd_aid, sizeof(rec->sd_aid), "%s", aid);
	rec->kvn = kvn;
	rec->alg = (uint8_t)alg;
	snprintf(rec->usage, sizeof(rec->usage), "SCP03");
	rec->source[0] = '\0';		/* generated by tsmd */
	rec->n_keys = 3;
	for (i = 0; i < 3; i++) {
		rec->keys[i].usage = kcvs.usage[i];
		rec->keys[i].kcv_len = 3;
		memcpy(rec->keys[i].kcv, kcvs.kcv[i], 3);
	}
	rec->created = flow_now();
	return 0;
}

/*
 * The old set opened the SSD (s->run.sc authenticated, *ea built): make
 * the new set, build EXTERNAL AUTHENTICATE + PUT KEY, record the new set
 * as pending (with the task step) and only then hand the batch out.
 */
static int
put_key(struct flow_step *fs, struct flow_task *t, const struct store_ssd *ssd,
    uint8_t old, const struct buf *ea)
{
	struct flow_sess *s = fs->s;
	struct store_keyset rec;
	struct kr_change chg;
	struct buf cmd, wrapped;
	struct gp_err e;
	gp_keyref dek, nk[3];
	const char *source;
	char why[240], note[STORE_TEXT_MAX + 1], k1[3], k2[3];
	uint8_t kvn = next_kvn(old);
	int rc, i, alg = s->run.ks[0].alg ? s->run.ks[0].alg : KMS_ALG_AES128;
	static const int use[3] = { KMS_USE_ENC, KMS_USE_MAC, KMS_USE_DEK };

	store_keyset_init(&rec);
	buf_init(&cmd);
	buf_init(&wrapped);
	gp_err_clear(&e);
	why[0] = '\0';
	if ((rc = gen_set(fs, t->r.se_id, ssd->sd_aid, kvn, alg, &rec, &source,
	    why, sizeof(why))) != 0) {
		if (kms_transient(rc))
			snprintf(fs->why, sizeof(fs->why), "%.190s", why);
		else
			rc = kr_end(fs, t, NULL, 0, rc, "%s", why);
		goto out;
	}
	flow_crash_point(fs->f, "keyrepl.generated");
	/* The fresh blob, exportable: PUT KEY wraps its members. */
	if (s->run.ks_open[1]) {
		if (gp_kms_keyset_close(s->gk, &s->run.ks[1]) != 0)
			log_msg(LOG_WARN, "event=flow_keyset_close_failed");
		s->run.ks_open[1] = 0;
	}
	if ((rc = gp_kms_keyset_open(s->gk, rec.blob.p, rec.blob.len,
	    KMS_OPEN_EXPORTABLE, &s->run.ks[1])) != 0)
		goto kms_fail;
	s->run.ks_open[1] = 1;
	s->run.ks_kvn[1] = kvn;
	for (i = 0; i < 3; i++)
		if ((rc = gp_kms_keyset_ref(&s->run.ks[1], use[i], &nk[i])) != 0)
			goto kms_fail;
	if ((rc = gp_kms_keyset_ref(&s->run.ks[0], KMS_USE_DEK, &dek)) != 0)
		goto kms_fail;
	/* EA answers a bare 9000 (gpref §1.4): the session opens now and PUT
	 * KEY rides behind it; EA's real answer is checked first. */
	if ((rc = gp_scp03_confirm(s->run.sc, (const uint8_t *)"\x90\x00", 2,
	    &e)) != 0 ||
	    (rc = gp_put_key_scp03_build(&s->be, dek, old, kvn, nk, &cmd,
	    &s->run.expect, &e)) != 0)
		goto kms_fail;
	/* The KCVs PUT KEY announces are the ones kmsd recorded at birth. */
	for (i = 0; i < 3; i++)
		if (!ct_equal(s->run.expect.kcv[i], rec.keys[i].kcv, 3)) {
			rc = kr_end(fs, t, NULL, 0, ERR_KCV, "kmsd's KCVs of the new "
			    "key set differ between generation and use");
			goto out;
		}
	if ((rc = gp_scp03_wrap(s->run.sc, cmd.p, cmd.len, &wrapped, &e)) != 0)
		goto kms_fail;
	if ((rc = flow_out_add(fs, ea->p, ea->len)) != 0 ||
	    (rc = flow_out_add(fs, wrapped.p, wrapped.len)) != 0)
		goto out;

	memset(&chg, 0, sizeof(chg));
	chg.set_active = chg.set_pending = 1;
	chg.active = old;
	chg.pending = kvn;
	chg.add = &rec;
	json_object_set_new(t->ctx, "old", json_integer(old));
	json_object_set_new(t->ctx, "new", json_integer(kvn));
	json_object_set_new(t->ctx, "source", json_string(source));
	flow_task_set(t, TS_RUNNING, KR_PUTKEY, 0, NULL);
	snprintf(note, sizeof(note), "PUTKEY: KVN %s opened the SSD; new key set "
	    "KVN %s (%s) recorded as pending; EXTERNAL AUTHENTICATE + PUT KEY "
	    "replacing KVN %s", kvn_hex(old, k1), kvn_hex(kvn, k2), source,
	    kvn_hex(old, k1));
	if ((rc = kr_save(fs, t, &chg, note)) != 0) {
		json_array_clear(fs->out);
		goto out;
	}
	flow_crash_point(fs->f, "keyrepl.pending");
	goto out;
kms_fail:
	json_array_clear(fs->out);
	if (kms_transient(rc) || !gp_kms_alive(s->gk)) {
		snprintf(fs->why, sizeof(fs->why), "kmsd failed while building PUT "
		    "KEY (%s)", err_name(rc));
		rc = kms_transient(rc) ? rc : ERR_CLOSED;
	} else {
		rc = kr_end(fs, t, NULL, 0, rc, "building PUT KEY: %s",
		    e.msg[0] ? e.msg : why[0] ? why : err_str(rc));
	}
out:
	buf_free(&cmd);
	buf_free(&wrapped);
	store_keyset_cleanup(&rec);
	return rc;
}

/* The recorded state of the key versions of this SSD: one active set, or
 * an uncertain pair. */
static int
uncertain(const struct store_ssd *r)
{
	return r->kvn_active != 0 && r->kvn_pending != 0;
}

/* An IU kvn answered OK in step `step`: what follows. */
static int
iu_ok(struct flow_step *fs, struct flow_task *t, const struct store_ssd *ssd,
    uint8_t kvn, const struct buf *ea)
{
	struct kr_change chg;
	char k1[3], k2[3];
	int probe_only = json_is_true(json_object_get(t->ctx, "probeOnly"));
	int target = flow_ctx_int(t, "new", 0);
	int rc;

	switch (t->r.step) {
	case KR_OPEN:
		return put_key(fs, t, ssd, kvn, ea);
	case KR_VERIFY:
		memset(&chg, 0, sizeof(chg));
		chg.keep_only = kvn;
		chg.personalize = 1;
		return kr_end(fs, t, &chg, 1, 0, "KVN %s opens the SSD in a fresh "
		    "session: the replaced key sets are destroyed",
		    kvn_hex(kvn, k1));
	case KR_PROBE:
		break;
	default:
		return ERR_INTERNAL;
	}
	/* The card holds kvn: the record says so, the other set goes. */
	memset(&chg, 0, sizeof(chg));
	chg.set_active = chg.set_pending = 1;
	chg.active = kvn;
	chg.pending = 0;
	chg.keep_only = kvn;
	if (probe_only || kvn == target || (ssd->kvn_pending == kvn &&
	    target == 0)) {
		struct store_keyset r;
		int ours;

		/* A set tsmd made (source "") means the keys were replaced. */
		store_keyset_init(&r);
		ours = store_keyset_get(fs->f->st, t->r.se_id, ssd->sd_aid, kvn,
		    &r) == 0 && r.source[0] == '\0';
		store_keyset_cleanup(&r);
		chg.personalize = ours;
		return kr_end(fs, t, &chg, 1, 0, "the card holds KVN %s (fresh "
		    "cryptogram): recorded as the active key set%s",
		    kvn_hex(kvn, k1), ours ? "" : "; the initial keys are still "
		    "to be replaced");
	}
	/* The old set is still the card's: record that, then replace it. */
	flow_task_set(t, TS_RUNNING, KR_PROBE, 0, NULL);
	snprintf(fs->why, sizeof(fs->why), "the card holds KVN %s",
	    kvn_hex(kvn, k2));
	{
		char note[STORE_TEXT_MAX + 1];

		snprintf(note, sizeof(note), "PROBE: the card holds KVN %s (fresh "
		    "cryptogram): recorded as the active set; the replacement goes "
		    "on", kvn_hex(kvn, k1));
		if ((rc = kr_save(fs, t, &chg, note)) != 0)
			return rc;
	}
	fs->why[0] = '\0';
	return put_key(fs, t, ssd, kvn, ea);
}

/* SELECT + IU for kvn did not open: try the alternative, or end. */
static int
iu_fail(struct flow_step *fs, struct flow_task *t, const struct store_ssd *ssd,
    int res, uint8_t kvn, const char *why)
{
	struct kr_change chg;
	uint8_t alt = (uint8_t)flow_ctx_int(t, "probeAlt", 0);
	char k1[3], k2[3], w[240];

	if (res == IU_NOSSD)
		return kr_end(fs, t, NULL, 0, ERR_NOTFOUND, "the card has no "
		    "selectable SSD %s (%s)", ssd->sd_aid, why);
	if (alt != 0) {
		/* Which set the card holds is unknown until a cryptogram says
		 * so: record both versions before asking about the other. */
		memset(&chg, 0, sizeof(chg));
		chg.set_active = chg.set_pending = 1;
		chg.active = alt;
		chg.pending = kvn;
		snprintf(w, sizeof(w), "%s", why);
		return iu_send(fs, t, ssd, KR_PROBE, alt, 0, &chg, w);
	}
	if (t->r.step == KR_OPEN)
		return kr_end(fs, t, NULL, 0, ERR_CRYPTOGRAM, "key set KVN %s does "
		    "not open SSD %s: %s", kvn_hex(kvn, k1), ssd->sd_aid, why);
	return kr_end(fs, t, NULL, 0, ERR_CRYPTOGRAM, "no recorded key set opens "
	    "SSD %s (last: %s); KVN %s and %s stay recorded", ssd->sd_aid, why,
	    kvn_hex(ssd->kvn_pending, k1), kvn_hex(ssd->kvn_active, k2));
}

static void
slots_swap(struct flow_run *r)
{
	struct kms_keyset ks = r->ks[0];
	int open = r->ks_open[0];
	uint8_t kvn = r->ks_kvn[0];

	r->ks[0] = r->ks[1];
	r->ks_open[0] = r->ks_open[1];
	r->ks_kvn[0] = r->ks_kvn[1];
	r->ks[1] = ks;
	r->ks_open[1] = open;
	r->ks_kvn[1] = kvn;
}

/* Anything but a clean, authenticated PUT KEY confirmation: the new keys
 * are not activated; the SSD stays uncertain for the next session. */
static int __attribute__((format(printf, 3, 4)))
put_key_unsure(struct flow_step *fs, struct flow_task *t, const char *fmt, ...)
{
	char msg[200];
	va_list ap;

	va_start(ap, fmt);
	(void)vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return kr_end(fs, t, NULL, 0, ERR_SW, "%s: the new keys are not "
	    "activated; the next agent session reads which key set the card "
	    "holds", msg);
}

static int
put_key_answer(struct flow_step *fs, struct flow_task *t,
    const struct store_ssd *ssd)
{
	const struct flow_resp *rp = fs->resp;
	struct flow_sess *s = fs->s;
	struct kr_change chg;
	const uint8_t *data;
	struct buf plain;
	struct gp_err e;
	uint8_t kvn = (uint8_t)flow_ctx_int(t, "new", 0);
	uint8_t old = (uint8_t)flow_ctx_int(t, "old", 0);
	uint16_t sw;
	size_t dn;
	char k1[3], k2[3], note[STORE_TEXT_MAX + 1];
	int rc;

	if (kvn == 0 || old == 0 || s->run.sc == NULL)
		return ERR_INTERNAL;
	if (rp->n < 1 || rp->sw[0] != 0x9000 || rp->v[0].len != 2)
		return put_key_unsure(fs, t, "EXTERNAL AUTHENTICATE answered %04X",
		    rp->n ? rp->sw[0] : 0);
	if (rp->n != 2)
		return put_key_unsure(fs, t, "no answer to PUT KEY");
	buf_init(&plain);
	gp_err_clear(&e);
	rc = gp_scp03_unwrap(s->run.sc, rp->v[1].p, rp->v[1].len, &plain, &e);
	if (rc != 0 && kms_transient(rc)) {
		buf_free(&plain);
		snprintf(fs->why, sizeof(fs->why), "kmsd failed on the PUT KEY "
		    "answer (%s)", err_name(rc));
		return rc;
	}
	if (rc != 0 || gp_resp_split(plain.p, plain.len, &data, &dn, &sw,
	    &e) != 0) {
		rc = put_key_unsure(fs, t, "PUT KEY answer: %s", e.msg[0] ? e.msg :
		    err_str(rc));
		buf_free(&plain);
		return rc;
	}
	if (sw != 0x9000) {
		buf_free(&plain);
		return put_key_unsure(fs, t, "PUT KEY answered %04X", sw);
	}
	if (gp_put_key_resp_check(data, dn, &s->run.expect, &e) != 0) {
		buf_free(&plain);
		return put_key_unsure(fs, t, "PUT KEY answer: KCVs differ from the "
		    "new key set (%s)", e.msg);
	}
	buf_free(&plain);
	flow_crash_point(fs->f, "keyrepl.confirming");

	/* Confirmed: the new set is active, the old one kept until a fresh
	 * session proves the new one; then VERIFY in this session. */
	memset(&chg, 0, sizeof(chg));
	chg.set_active = chg.set_pending = 1;
	chg.active = kvn;
	chg.pending = 0;
	chg.personalize = 1;
	snprintf(note, sizeof(note), "the card took KVN %s and confirmed its "
	    "KCVs: active (KVN %s kept until the new keys are proven)",
	    kvn_hex(kvn, k1), kvn_hex(old, k2));
	/* The VERIFY batch uses the new set in slot 0; the replaced one
	 * stays open in slot 1 (struct flow_run). */
	slots_swap(&s->run);
	{
		struct store_ssd now = *ssd;

		now.kvn_active = kvn;
		now.kvn_pending = 0;
		rc = iu_send(fs, t, &now, KR_VERIFY, kvn, old, &chg, note);
	}
	if (rc == 0)
		flow_crash_point(fs->f, "keyrepl.confirmed");
	return rc;
}

/* Starting or resuming from the record. */
static int
kr_start(struct flow_step *fs, struct flow_task *t, struct store_ssd *ssd)
{
	int probe_only = json_is_true(json_object_get(t->ctx, "probeOnly"));
	uint8_t old;
	char k1[3];

	if (strcmp(ssd->state, SS_LOCKED) == 0)
		return kr_end(fs, t, NULL, 0, ERR_WRONGSTATE, "SSD %s is LOCKED: "
		    "its keys are replaced after it is unlocked", ssd->sd_aid);
	if (strcmp(ssd->state, SS_GONE) == 0 || strcmp(ssd->state,
	    SS_DELETED) == 0 || strcmp(ssd->state, SS_CREATING) == 0 ||
	    strcmp(ssd->state, SS_CREATE_FAILED) == 0)
		return kr_end(fs, t, NULL, 0, ERR_WRONGSTATE, "SSD %s is %s",
		    ssd->sd_aid, ssd->state);
	if (uncertain(ssd))
		return iu_send(fs, t, ssd, KR_PROBE, ssd->kvn_pending,
		    ssd->kvn_active, NULL, t->r.step != KR_QUEUED ?
		    "resumed with two key versions recorded" : NULL);
	if (t->r.step == KR_VERIFY && ssd->kvn_active != 0)
		return iu_send(fs, t, ssd, KR_VERIFY, ssd->kvn_active,
		    (uint8_t)flow_ctx_int(t, "old", 0), NULL, "resumed");
	if (probe_only)
		return kr_end(fs, t, NULL, 1, 0, "nothing uncertain: KVN %s is the "
		    "recorded key set", kvn_hex(ssd->kvn_active, k1));
	old = ssd->kvn_active != 0 ? ssd->kvn_active : ssd->kvn_pending;
	if (old == 0)
		old = flow_master_kvn(fs->f, ssd->sd_aid);	/* per-SE from it */
	if (old == 0)
		return kr_end(fs, t, NULL, 0, ERR_NOTFOUND, "no key set recorded "
		    "for SSD %s (no key sync yet)", ssd->sd_aid);
	if (t->r.step != KR_QUEUED && t->r.step != KR_OPEN && ssd->kvn_active &&
	    flow_ctx_int(t, "new", 0) == ssd->kvn_active)
		return kr_end(fs, t, NULL, 1, 0, "KVN %s is active",
		    kvn_hex(ssd->kvn_active, k1));
	return iu_send(fs, t, ssd, KR_OPEN, old, 0, NULL,
	    t->r.step != KR_QUEUED ? "resumed" : NULL);
}

static int
kr_run(struct flow_step *fs, struct flow_task *t)
{
	const char *aid = flow_ctx_str(t, "sdAid");
	struct store_ssd ssd;
	struct buf ea;
	char why[240];
	uint8_t kvn;
	int rc, res;

	if (aid == NULL)
		return kr_end(fs, t, NULL, 0, ERR_INTERNAL, "task without sdAid");
	rc = store_ssd_get(fs->f->st, t->r.se_id, aid, &ssd);
	if (rc == ERR_NOTFOUND)
		return kr_end(fs, t, NULL, 0, rc, "no record of SSD %s", aid);
	if (rc != 0)
		return rc;
	if (fs->resp == NULL)
		return kr_start(fs, t, &ssd);

	switch (t->r.step) {
	case KR_OPEN:
	case KR_VERIFY:
	case KR_PROBE:
		kvn = (uint8_t)flow_ctx_int(t, "probe", 0);
		if (kvn == 0 || fs->s->run.ks_kvn[0] != kvn)
			return kr_start(fs, t, &ssd);
		buf_init(&ea);
		why[0] = '\0';
		/* VERIFY needs the proof only, not a session. */
		res = iu_check(fs, &ssd, kvn, t->r.step == KR_VERIFY, &ea, why,
		    sizeof(why));
		if (res < 0) {
			buf_free(&ea);
			snprintf(fs->why, sizeof(fs->why), "%.190s", why);
			return res;
		}
		rc = res == IU_OK ? iu_ok(fs, t, &ssd, kvn, &ea) :
		    iu_fail(fs, t, &ssd, res, kvn, why);
		buf_free(&ea);
		return rc;
	case KR_PUTKEY:
		return put_key_answer(fs, t, &ssd);
	default:
		return kr_end(fs, t, NULL, 0, ERR_INTERNAL, "unknown step %u",
		    (unsigned)t->r.step);
	}
}

/* The engine's end for an internal error: FAILED, the SSD's task
 * cleared, its key versions as they are. */
static int
kr_fail(struct flow_step *fs, struct flow_task *t, int err, const char *msg)
{
	return kr_end(fs, t, NULL, 0, err, "%s", msg);
}

const struct flow_kind flow_kind_key_replace = { "KEY_REPLACE", kr_run,
	kr_step_name, kr_fail };
