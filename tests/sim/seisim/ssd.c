/*
 * ssd.c - §9.1 SSD management and §9.2 get-instructions: one task per
 * operation, carried across exchanges by an ISD SCP03 session (demo ISD
 * keys of the seId, KVN 30) built with the GP host engine on raw keys.
 * Batch 1: SELECT ISD + INITIALIZE UPDATE. Batch 2: EXTERNAL AUTHENTICATE
 * + the wrapped management commands (CREATE_SSD: INSTALL [for install and
 * make selectable] with C9 SD parameters, INSTALL [for personalization],
 * PUT KEY of fresh AES-128 keys at KVN 30 under the ISD DEK; LOCK/UNLOCK:
 * SET STATUS; DELETE: DELETE with related objects). Then DONE: resultCode
 * 0, resultMessage "DONE", apduList []. Runs in seisim under s->lock; every
 * request field and card response is outside input.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/rand.h>

#include "tests/sim/seisim/seisim.h"
#include "tsm/gp/gp.h"

enum cmd_kind {
	C_SELECT = 1, C_IU, C_EA, C_INSTALL, C_PERSO, C_PUTKEY, C_SETSTATUS,
	C_DELETE,
};
#define BATCH_MAX 8

static const char *const cmd_names[] = {
	"", "SELECT ISD", "INITIALIZE UPDATE", "EXTERNAL AUTHENTICATE",
	"INSTALL [for install and make selectable]", "INSTALL [for personalization]",
	"PUT KEY", "SET STATUS", "DELETE",
};

struct seisim_task {
	struct seisim_task *next;
	char     id[32];
	char     op[16];		/* CREATE_SSD, LOCK_SSD, UNLOCK_SSD, DELETE_SSD */
	char     se_id[130];		/* upper-case hex */
	char     sd_aid_hex[33];	/* upper-case hex */
	uint8_t  sd_aid[16];
	size_t   sd_aid_len;
	uint8_t  priv[3];
	uint8_t  scp, scp_i;
	char     scp_config[8];
	int      step;			/* 0: SELECT+IU out; 1: EA+commands out */
	int      finished;
	uint64_t touched;		/* wall seconds of the last exchange */
	struct gp_ossl *o;
	struct gp_backend be;
	struct gp_scp03 *sc;
	gp_keyref isd[3];		/* ISD ENC, MAC, DEK */
	gp_keyref nk[3];		/* the SSD's new keys (CREATE_SSD) */
	uint8_t  keys[3][16];
	struct gp_put_key_expect expect;
	int      kinds[BATCH_MAX];	/* the batch out on the wire */
	size_t   nkinds;
	int      installed;		/* CREATE_SSD: the INSTALL answered 9000 */
	uint8_t  last_digest[32];	/* the last §9.2 respList, for a replay */
	int      has_last;
	char    *last_answer;		/* its answer (JSON text) */
};

/* ---- answers ---- */

static void
answer(struct seisim_answer *a, int rc, const char *task_id, json_t *apdus,
    const char *fmt, ...)
{
	char msg[400];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	a->status = 200;
	a->body = json_pack("{s:i, s:s, s:o, s:s}", "resultCode", rc,
	    "resultMessage", msg, "apduList", apdus ? apdus : json_array(),
	    "taskId", task_id ? task_id : "");
	if (rc != 0)
		log_msg(LOG_INFO, "event=task_answer task=%s result=%d message=\"%s\"",
		    task_id ? task_id : "-", rc, msg);
}

/* ---- field checks ---- */

static const char *
str_field(json_t *b, const char *name)
{
	return json_string_value(json_object_get(b, name));
}

/* hex of min..max bytes into out (upper-case copy in up when not NULL). */
static int
hex_field(json_t *b, const char *name, size_t min, size_t max, uint8_t *out,
    size_t *n, char *up)
{
	const char *s = str_field(b, name);
	uint8_t tmp[128];
	size_t l;

	if (s == NULL || max > sizeof(tmp) || seisim_hex(s, tmp, max, &l) != 0 ||
	    l < min)
		return ERR_PARSE;
	if (out != NULL)
		memcpy(out, tmp, l);
	if (n != NULL)
		*n = l;
	if (up != NULL)
		seisim_hexu(tmp, l, up);
	return 0;
}

/* Common fields: tenantId (1001 when not ours), seId. 0 or a resultCode,
 * with the message in msg. */
static int
check_common(struct seisim *s, json_t *b, char *se_id, char *msg, size_t cap)
{
	const char *tenant = str_field(b, "tenantId");

	if (tenant == NULL) {
		snprintf(msg, cap, "missing or non-string field: tenantId");
		return SEISIM_RC_BAD_REQUEST;
	}
	if (strcmp(tenant, s->m.tenant_id) != 0) {
		snprintf(msg, cap, "unknown tenantId");
		return SEISIM_RC_TENANT;
	}
	if (str_field(b, "seId") == NULL) {
		snprintf(msg, cap, "missing or non-string field: seId");
		return SEISIM_RC_BAD_REQUEST;
	}
	if (hex_field(b, "seId", 4, 64, NULL, NULL, se_id) != 0) {
		snprintf(msg, cap, "seId: hex of 4..64 bytes");
		return SEISIM_RC_BAD_REQUEST;
	}
	return 0;
}

/* gpref §1.1: SCP03 i values the SE may be given (b1 S16, b5, b6, b7). */
static int
scp03_i_ok(uint8_t i)
{
	uint8_t base = i & 0xFE;

	return base == 0x00 || base == 0x10 || base == 0x20 || base == 0x30 ||
	    base == 0x60 || base == 0x70;
}

/* ---- runtime tasks ---- */

static void
task_crypto_free(struct seisim_task *t)
{
	gp_scp03_free(t->sc);
	t->sc = NULL;
	gp_ossl_free(t->o);
	t->o = NULL;
	wipe(t->keys, sizeof(t->keys));
}

static void
task_free(struct seisim_task *t)
{
	task_crypto_free(t);
	free(t->last_answer);
	wipe(t, sizeof(*t));
	free(t);
}

void
seisim_tasks_free(struct seisim *s)
{
	struct seisim_task *t;

	while ((t = s->tasks) != NULL) {
		s->tasks = t->next;
		task_free(t);
	}
}

static struct seisim_task *
task_find(struct seisim *s, const char *id)
{
	struct seisim_task *t;

	for (t = s->tasks; t != NULL; t = t->next)
		if (strcmp(t->id, id) == 0)
			return t;
	return NULL;
}

/* Drops tasks idle beyond the TTL; a running one is recorded as FAILED. */
static void
tasks_expire(struct seisim *s)
{
	struct seisim_task **pp = &s->tasks, *t;
	uint64_t now = (uint64_t)wall_seconds();
	struct seisim_state st;
	json_t *rec;

	while ((t = *pp) != NULL) {
		if (now - t->touched < s->task_ttl_s) {
			pp = &t->next;
			continue;
		}
		*pp = t->next;
		if (!t->finished && seisim_state_open(&st, s->dir,
		    s->m.sei_tsm_id) == 0) {
			if ((rec = seisim_state_task(&st, t->id)) != NULL) {
				json_object_set_new(rec, "state", json_string("FAILED"));
				json_object_set_new(rec, "resultCode",
				    json_integer(SEISIM_RC_TASK));
				json_object_set_new(rec, "resultMessage", json_string(
				    "expired: no get-instructions within the task TTL"));
				json_object_set_new(rec, "updated",
				    json_integer(wall_seconds()));
				if (seisim_state_commit(&st) != 0)
					log_msg(LOG_ERR, "event=state_write_failed");
			}
			seisim_state_close(&st);
			log_msg(LOG_INFO, "event=task_expired task=%s", t->id);
		}
		task_free(t);
	}
}

/* Records the task in the state: created when absent. extra (may be
 * NULL) is called with the open state to change SSD records too. */
static int
task_record(struct seisim *s, struct seisim_task *t, const char *state,
    int rc, const char *msg,
    int (*extra)(struct seisim *, struct seisim_task *, struct seisim_state *))
{
	struct seisim_state st;
	json_t *rec;
	int r;

	if ((r = seisim_state_open(&st, s->dir, s->m.sei_tsm_id)) != 0)
		return r;
	if ((rec = seisim_state_task(&st, t->id)) == NULL) {
		rec = json_pack("{s:s, s:s, s:s, s:s, s:s, s:I}", "taskId", t->id,
		    "optType", t->op, "tenantId", s->m.tenant_id, "seId", t->se_id,
		    "sdAid", t->sd_aid_hex, "created", (json_int_t)wall_seconds());
		if (rec == NULL ||
		    json_array_append_new(seisim_state_tasks(&st), rec) != 0) {
			seisim_state_close(&st);
			return ERR_NOMEM;
		}
	}
	json_object_set_new(rec, "state", json_string(state));
	json_object_set_new(rec, "step", json_integer(t->step));
	json_object_set_new(rec, "resultCode", json_integer(rc));
	json_object_set_new(rec, "resultMessage", json_string(msg));
	json_object_set_new(rec, "updated", json_integer(wall_seconds()));
	r = extra != NULL ? extra(s, t, &st) : 0;
	seisim_state_trim(&st);
	if (r == 0)
		r = seisim_state_commit(&st);
	seisim_state_close(&st);
	return r;
}

/* ---- batches ---- */

static int
put_apdu(json_t *list, const struct buf *b)
{
	char *h = malloc(2 * b->len + 1);
	int rc;

	if (h == NULL)
		return ERR_NOMEM;
	seisim_hexu(b->p, b->len, h);
	rc = json_array_append_new(list, json_string(h)) == 0 ? 0 : ERR_NOMEM;
	free(h);
	return rc;
}

static int
batch_first(struct seisim *s, struct seisim_task *t, json_t *list,
    struct gp_err *e)
{
	struct buf b;
	int rc;

	buf_init(&b);
	if ((rc = gp_select_build(s->isd_aid, s->isd_aid_len, &b, e)) != 0 ||
	    (rc = put_apdu(list, &b)) != 0 ||
	    (rc = gp_scp03_begin(t->sc, NULL, &b, e)) != 0 ||
	    (rc = put_apdu(list, &b)) != 0)
		goto out;
	t->kinds[0] = C_SELECT;
	t->kinds[1] = C_IU;
	t->nkinds = 2;
out:
	buf_free(&b);
	return rc;
}

/* The plain management commands of the operation, in order. */
static int
op_commands(struct seisim *s, struct seisim_task *t, struct buf *cmds,
    int *kinds, size_t *n, struct gp_err *e)
{
	struct buf p;
	int rc = 0;

	buf_init(&p);
	*n = 0;
	if (strcmp(t->op, "CREATE_SSD") == 0) {
		struct gp_sd_params sd;
		struct gp_install_params ip;
		struct gp_install in;

		/* GP UICC Configuration §4.3.2 (gpref §5): C9 {81 02 scp i}. */
		memset(&sd, 0, sizeof(sd));
		sd.scp[0].scp = t->scp;
		sd.scp[0].i = t->scp_i;
		sd.nscp = 1;
		memset(&ip, 0, sizeof(ip));
		ip.sd = &sd;
		memset(&in, 0, sizeof(in));
		in.kind = GP_INSTALL_AND_SELECTABLE;
		in.elf_aid = (struct gp_bytes){ s->sd_elf, s->sd_elf_len };
		in.module_aid = (struct gp_bytes){ s->sd_mod, s->sd_mod_len };
		in.app_aid = (struct gp_bytes){ t->sd_aid, t->sd_aid_len };
		in.priv = (struct gp_bytes){ t->priv, 3 };
		if ((rc = gp_install_params_build(&ip, &p, e)) != 0)
			goto out;
		in.params = (struct gp_bytes){ p.p, p.len };
		if ((rc = gp_install_build(&in, &cmds[0], NULL, e)) != 0)
			goto out;
		kinds[0] = C_INSTALL;
		/* First keys: INSTALL [for personalization] naming the SSD, then
		 * PUT KEY under the ISD's static DEK (tests/sim/vse/README.md). */
		memset(&in, 0, sizeof(in));
		in.kind = GP_INSTALL_PERSONALIZATION;
		in.app_aid = (struct gp_bytes){ t->sd_aid, t->sd_aid_len };
		if ((rc = gp_install_build(&in, &cmds[1], NULL, e)) != 0)
			goto out;
		kinds[1] = C_PERSO;
		if ((rc = gp_put_key_scp03_build(&t->be, t->isd[2], 0x00,
		    SEISIM_KVN, t->nk, &cmds[2], &t->expect, e)) != 0)
			goto out;
		kinds[2] = C_PUTKEY;
		*n = 3;
	} else if (strcmp(t->op, "LOCK_SSD") == 0 ||
	    strcmp(t->op, "UNLOCK_SSD") == 0) {
		/* gpref §5: P1 40 (application or SSD), P2 80 lock / 00 unlock */
		if ((rc = gp_set_status_build(GP_SS_APP, t->op[0] == 'L' ? 0x80 :
		    0x00, t->sd_aid, t->sd_aid_len, &cmds[0], e)) != 0)
			goto out;
		kinds[0] = C_SETSTATUS;
		*n = 1;
	} else {
		struct gp_bytes aid = { t->sd_aid, t->sd_aid_len };

		/* DELETE P2 80: the SSD and everything associated with it */
		if ((rc = gp_delete_build(&aid, 1, 1, NULL, &cmds[0], NULL, e)) != 0)
			goto out;
		kinds[0] = C_DELETE;
		*n = 1;
	}
out:
	buf_free(&p);
	return rc;
}

/* ---- state changes at the end of a task ---- */

static int
ssd_update(struct seisim *s, struct seisim_task *t, struct seisim_state *st)
{
	json_t *r = seisim_state_ssd(st, t->se_id, t->sd_aid_hex);
	json_int_t now = (json_int_t)wall_seconds();
	const char *ns;
	json_t *nr;
	int rc;

	(void)s;
	if (strcmp(t->op, "CREATE_SSD") == 0) {
		char priv[7], k[3][33], kvn[3];
		uint8_t kcv[5];
		size_t kl, i;
		json_t *kcvs = json_array();

		seisim_hexu(t->priv, 3, priv);
		for (i = 0; i < 3; i++) {
			char h[11];

			seisim_hexu(t->keys[i], 16, k[i]);
			if (seisim_kcv("GP", t->keys[i], 16, kcv, &kl) != 0)
				return ERR_CRYPTO;
			seisim_hexu(kcv, kl, h);
			json_array_append_new(kcvs, json_string(h));
		}
		snprintf(kvn, sizeof(kvn), "%02X", SEISIM_KVN);
		nr = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:I, s:I, "
		    "s:{s:s, s:s, s:s, s:s, s:s, s:o}}",
		    "seId", t->se_id, "sdAid", t->sd_aid_hex, "privileges", priv,
		    "scpConfig", t->scp_config, "state",
		    t->finished == 1 ? "CREATED" : "INCOMPLETE", "taskId", t->id,
		    "created", now, "updated", now, "keys", "_note",
		    "DEMO: initial SSD keys in clear (simulator)", "kvn", kvn,
		    "enc", k[0], "mac", k[1], "dek", k[2], "kcvGp", kcvs);
		wipe(k, sizeof(k));
		if (nr == NULL)
			return ERR_NOMEM;
		if (t->finished == 1)	/* the worker sends it after this answer */
			json_object_set_new(nr, "keySync", json_pack("{s:s, s:I}",
			    "status", "PENDING", "time", now));
		if (t->finished != 1) {
			json_object_del(nr, "keys");
			json_object_set_new(nr, "note", json_string("the SSD exists on "
			    "the SE without keys: DELETE_SSD it before a new "
			    "CREATE_SSD"));
		}
		if (r != NULL) {
			json_object_clear(r);
			rc = json_object_update(r, nr);
			json_decref(nr);
		} else {
			rc = json_array_append_new(seisim_state_ssds(st), nr);
		}
		return rc == 0 ? 0 : ERR_NOMEM;
	}
	if (r == NULL)
		return 0;	/* not one of ours: nothing to record */
	ns = t->op[0] == 'L' ? "LOCKED" : t->op[0] == 'U' ? "CREATED" : "DELETED";
	json_object_set_new(r, "state", json_string(ns));
	json_object_set_new(r, "updated", json_integer(now));
	return 0;
}

static int
ssd_incomplete(struct seisim *s, struct seisim_task *t,
    struct seisim_state *st)
{
	return t->installed ? ssd_update(s, t, st) : 0;
}

/* Ends the task with an error: recorded, crypto freed, answer built. */
static void
task_fail(struct seisim *s, struct seisim_task *t, struct seisim_answer *a,
    int rc, const char *fmt, ...)
{
	char msg[400];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	t->finished = -1;
	if (task_record(s, t, "FAILED", rc, msg, strcmp(t->op, "CREATE_SSD") == 0 ?
	    ssd_incomplete : NULL) != 0)
		log_msg(LOG_ERR, "event=state_record_failed task=%s", t->id);
	task_crypto_free(t);
	log_msg(LOG_INFO, "event=task_failed task=%s op=%s seId=%s sdAid=%s "
	    "result=%d message=\"%s\"", t->id, t->op, t->se_id, t->sd_aid_hex, rc,
	    msg);
	answer(a, rc, t->id, NULL, "%s", msg);
}

static void
task_done(struct seisim *s, struct seisim_task *t, struct seisim_answer *a)
{
	struct seisim_keys k;
	int i;

	t->finished = 1;
	if (task_record(s, t, "DONE", 0, "DONE", ssd_update) != 0)
		log_msg(LOG_ERR, "event=state_record_failed task=%s", t->id);
	if (strcmp(t->op, "CREATE_SSD") == 0) {
		memset(&k, 0, sizeof(k));
		snprintf(k.se_id, sizeof(k.se_id), "%s", t->se_id);
		snprintf(k.sd_aid, sizeof(k.sd_aid), "%s", t->sd_aid_hex);
		k.kvn = SEISIM_KVN;
		for (i = 0; i < 3; i++)
			memcpy(k.k[i], t->keys[i], 16);
		if (seisim_keysync_queue(s, &k) != 0)
			log_msg(LOG_ERR, "event=keysync_queue_failed task=%s", t->id);
		wipe(&k, sizeof(k));
	}
	task_crypto_free(t);
	log_msg(LOG_INFO, "event=task_done task=%s op=%s seId=%s sdAid=%s", t->id,
	    t->op, t->se_id, t->sd_aid_hex);
	/* §9.2 completion (README.md): resultCode 0, "DONE", empty apduList */
	answer(a, 0, t->id, NULL, "DONE");
}

/* ---- §9.1 ---- */

static int
task_crypto_init(struct seisim *s, struct seisim_task *t, struct gp_err *e)
{
	struct gp_scp03_cfg cfg;
	uint8_t isd[3][16];
	int i, rc;

	if ((t->o = gp_ossl_new()) == NULL)
		return ERR_NOMEM;
	gp_ossl_backend(t->o, &t->be);
	if ((rc = seisim_demo_isd_keys(t->se_id, isd)) != 0)
		goto out;
	for (i = 0; i < 3; i++)
		if ((rc = gp_ossl_key_add(t->o, isd[i], 16, &t->isd[i])) != 0)
			goto out;
	if (strcmp(t->op, "CREATE_SSD") == 0) {
		if (RAND_bytes(&t->keys[0][0], sizeof(t->keys)) != 1) {
			rc = ERR_CRYPTO;
			goto out;
		}
		for (i = 0; i < 3; i++)
			if ((rc = gp_ossl_key_add(t->o, t->keys[i], 16,
			    &t->nk[i])) != 0)
				goto out;
	}
	memset(&cfg, 0, sizeof(cfg));
	cfg.be = &t->be;
	cfg.enc = t->isd[0];
	cfg.mac = t->isd[1];
	cfg.kvn = SEISIM_KVN;
	cfg.sl = s->sl;
	cfg.sd_aid = s->isd_aid;
	cfg.sd_aid_len = s->isd_aid_len;
	rc = gp_scp03_new(&cfg, &t->sc, e);
out:
	wipe(isd, sizeof(isd));
	return rc;
}

void
seisim_ssd_manage(struct seisim *s, json_t *b, struct seisim_answer *a)
{
	struct seisim_task *t = NULL, *o;
	struct seisim_state st;
	struct gp_err e;
	char msg[300], se_id[130], aid[33];
	const char *op, *sc, *ep;
	uint8_t scb[2];
	size_t n;
	json_t *list = NULL, *rec;
	int rc;

	gp_err_clear(&e);
	pthread_mutex_lock(&s->lock);
	tasks_expire(s);
	if ((rc = check_common(s, b, se_id, msg, sizeof(msg))) != 0) {
		answer(a, rc, NULL, NULL, "%s", msg);
		goto out;
	}
	if ((op = str_field(b, "optType")) == NULL) {
		answer(a, SEISIM_RC_BAD_REQUEST, NULL, NULL,
		    "missing or non-string field: optType");
		goto out;
	}
	if (strcmp(op, "CREATE_SSD") && strcmp(op, "LOCK_SSD") &&
	    strcmp(op, "UNLOCK_SSD") && strcmp(op, "DELETE_SSD")) {
		answer(a, SEISIM_RC_OPTTYPE, NULL, NULL, "unsupported optType (one "
		    "of CREATE_SSD, LOCK_SSD, UNLOCK_SSD, DELETE_SSD)");
		goto out;
	}
	if ((t = calloc(1, sizeof(*t))) == NULL) {
		answer(a, SEISIM_RC_FAIL, NULL, NULL, "out of memory");
		goto out;
	}
	snprintf(t->op, sizeof(t->op), "%s", op);
	snprintf(t->se_id, sizeof(t->se_id), "%s", se_id);
	if (str_field(b, "sdAid") == NULL ||
	    hex_field(b, "sdAid", 5, 16, t->sd_aid, &t->sd_aid_len, aid) != 0) {
		answer(a, SEISIM_RC_BAD_REQUEST, NULL, NULL, "%s",
		    str_field(b, "sdAid") == NULL ? "missing or non-string field: "
		    "sdAid" : "sdAid: an AID of 5..16 bytes in hex");
		goto out;
	}
	snprintf(t->sd_aid_hex, sizeof(t->sd_aid_hex), "%s", aid);
	if ((sc = str_field(b, "scpConfig")) == NULL) {
		answer(a, SEISIM_RC_BAD_REQUEST, NULL, NULL,
		    "missing or non-string field: scpConfig");
		goto out;
	}
	if (strcmp(op, "CREATE_SSD") == 0) {
		if ((ep = str_field(b, "expPrivilege")) == NULL) {
			answer(a, SEISIM_RC_BAD_REQUEST, NULL, NULL, "expPrivilege is "
			    "required with CREATE_SSD");
			goto out;
		}
		if (hex_field(b, "expPrivilege", 1, 3, t->priv, &n, NULL) != 0 ||
		    n == 2) {
			answer(a, SEISIM_RC_BAD_REQUEST, NULL, NULL, "expPrivilege: "
			    "GP privileges as 1 or 3 bytes of hex (e.g. 80C000)");
			goto out;
		}
		if (!(t->priv[0] & 0x80) || gp_priv_check(t->priv, &e) != 0) {
			answer(a, SEISIM_RC_BAD_REQUEST, NULL, NULL, "expPrivilege %s: %s",
			    ep, !(t->priv[0] & 0x80) ? "an SSD needs the Security "
			    "Domain privilege (80 in the first byte)" : e.msg);
			goto out;
		}
		if (seisim_hex(sc, scb, sizeof(scb), &n) != 0 || n != 2) {
			answer(a, SEISIM_RC_BAD_REQUEST, NULL, NULL, "scpConfig: 2 bytes "
			    "of hex, SCP then i (e.g. 0370)");
			goto out;
		}
		if (scb[0] == 0x02) {
			answer(a, SEISIM_RC_SCP, NULL, NULL, "scpConfig %s asks for "
			    "SCP02 (i=%02X): the SE implements SCP03 only and refuses "
			    "an SCP02-only SSD (6A80); ask for SCP03, e.g. 0370", sc,
			    scb[1]);
			goto out;
		}
		if (scb[0] != 0x03 || !scp03_i_ok(scb[1])) {
			answer(a, SEISIM_RC_SCP, NULL, NULL, "scpConfig %s: unsupported "
			    "(SCP03 with i in 00 10 20 30 60 70, +01 for S16)", sc);
			goto out;
		}
		t->scp = scb[0];
		t->scp_i = scb[1];
		seisim_hexu(scb, 2, t->scp_config);
	}
	for (o = s->tasks; o != NULL; o = o->next)
		if (!o->finished && strcmp(o->se_id, t->se_id) == 0) {
			answer(a, SEISIM_RC_CONFLICT, NULL, NULL, "SE %s is busy with "
			    "task %s (%s)", t->se_id, o->id, o->op);
			goto out;
		}
	if ((rc = seisim_state_open(&st, s->dir, s->m.sei_tsm_id)) != 0) {
		answer(a, SEISIM_RC_FAIL, NULL, NULL, "state file: %s", err_str(rc));
		goto out;
	}
	if (strcmp(op, "CREATE_SSD") == 0 &&
	    (rec = seisim_state_ssd(&st, t->se_id, t->sd_aid_hex)) != NULL) {
		const char *state = json_string_value(json_object_get(rec, "state"));

		if (state != NULL && (strcmp(state, "CREATED") == 0 ||
		    strcmp(state, "LOCKED") == 0 || strcmp(state, "INCOMPLETE") == 0)) {
			seisim_state_close(&st);
			answer(a, SEISIM_RC_CONFLICT, NULL, NULL, "SSD %s already "
			    "exists on SE %s (%s)", t->sd_aid_hex, t->se_id, state);
			goto out;
		}
	}
	rc = seisim_state_next_task_id(&st, t->id, sizeof(t->id));
	if (rc == 0)
		rc = seisim_state_commit(&st);
	seisim_state_close(&st);
	if (rc != 0) {
		answer(a, SEISIM_RC_FAIL, NULL, NULL, "state file: %s", err_str(rc));
		goto out;
	}
	list = json_array();
	if (list == NULL || (rc = task_crypto_init(s, t, &e)) != 0 ||
	    (rc = batch_first(s, t, list, &e)) != 0) {
		answer(a, SEISIM_RC_FAIL, t->id, NULL, "cannot start the ISD session: "
		    "%s", e.msg[0] ? e.msg : err_str(rc));
		goto out;
	}
	t->touched = (uint64_t)wall_seconds();
	if (task_record(s, t, "RUNNING", 0, "OK", NULL) != 0) {
		answer(a, SEISIM_RC_FAIL, t->id, NULL, "state file not written");
		goto out;
	}
	log_msg(LOG_INFO, "event=task_start task=%s op=%s seId=%s sdAid=%s", t->id,
	    t->op, t->se_id, t->sd_aid_hex);
	answer(a, 0, t->id, list, "OK");
	list = NULL;
	t->next = s->tasks;
	s->tasks = t;
	t = NULL;
out:
	json_decref(list);
	if (t != NULL)
		task_free(t);
	pthread_mutex_unlock(&s->lock);
}

/* ---- §9.2 ---- */

/* A response of the batch: data || SW, at least the SW. */
static int
resp_get(json_t *list, size_t i, struct buf *out, uint16_t *sw)
{
	const char *h = json_string_value(json_array_get(list, i));

	buf_reset(out);
	if (h == NULL || hex_decode_buf(h, out) != 0 || out->len < 2)
		return ERR_PARSE;
	*sw = (uint16_t)(out->p[out->len - 2] << 8 | out->p[out->len - 1]);
	return 0;
}

static int
sw_ok(uint16_t sw)
{
	return sw == 0x9000 || (sw >> 8) == 0x61;
}

/* Responses to SELECT + INITIALIZE UPDATE: authenticate, send batch 2. */
static void
step_auth(struct seisim *s, struct seisim_task *t, json_t *rl,
    struct seisim_answer *a)
{
	struct buf r, out, cmds[BATCH_MAX - 1];
	int kinds[BATCH_MAX - 1];
	struct gp_err e;
	char sws[64];
	json_t *list = json_array();
	uint16_t sw;
	size_t n = json_array_size(rl), i, nc = 0;
	int rc;

	gp_err_clear(&e);
	buf_init(&r);
	buf_init(&out);
	for (i = 0; i < ARRAY_LEN(cmds); i++)
		buf_init(&cmds[i]);
	if (resp_get(rl, 0, &r, &sw) != 0) {
		task_fail(s, t, a, SEISIM_RC_RESPONSE, "respList[0]: not a response "
		    "(hex data || SW)");
		goto out;
	}
	if (!sw_ok(sw)) {
		task_fail(s, t, a, SEISIM_RC_CARD, "SELECT ISD refused by the SE: %s",
		    gp_sw_str(sw, sws, sizeof(sws)));
		goto out;
	}
	if (n != 2 || resp_get(rl, 1, &r, &sw) != 0) {
		task_fail(s, t, a, SEISIM_RC_RESPONSE, "respList: expected 2 "
		    "responses (SELECT, INITIALIZE UPDATE), got %zu", n);
		goto out;
	}
	if ((rc = gp_scp03_auth(t->sc, r.p, r.len, &out, &e)) != 0) {
		task_fail(s, t, a, rc == ERR_SW ? SEISIM_RC_CARD : SEISIM_RC_CHANNEL,
		    "ISD INITIALIZE UPDATE (KVN 30, demo keys of SE %s): %s",
		    t->se_id, e.msg);
		goto out;
	}
	/* EXTERNAL AUTHENTICATE answers a bare 9000 (no R-MAC, gpref §1.4), so
	 * the session can be opened now and the commands wrapped behind it in
	 * the same batch; its real answer is checked in the next respList. */
	if ((rc = gp_scp03_confirm(t->sc, (const uint8_t *)"\x90\x00", 2,
	    &e)) != 0 || (rc = put_apdu(list, &out)) != 0 ||
	    (rc = op_commands(s, t, cmds, kinds, &nc, &e)) != 0) {
		task_fail(s, t, a, SEISIM_RC_FAIL, "building the commands: %s",
		    e.msg[0] ? e.msg : err_str(rc));
		goto out;
	}
	t->kinds[0] = C_EA;
	for (i = 0; i < nc; i++) {
		if ((rc = gp_scp03_wrap(t->sc, cmds[i].p, cmds[i].len, &out,
		    &e)) != 0 || (rc = put_apdu(list, &out)) != 0) {
			task_fail(s, t, a, SEISIM_RC_FAIL, "wrapping %s: %s",
			    cmd_names[kinds[i]], e.msg[0] ? e.msg : err_str(rc));
			goto out;
		}
		t->kinds[i + 1] = kinds[i];
	}
	t->nkinds = nc + 1;
	t->step = 1;
	if (task_record(s, t, "RUNNING", 0, "OK", NULL) != 0)
		log_msg(LOG_ERR, "event=state_record_failed task=%s", t->id);
	answer(a, 0, t->id, list, "OK");
	list = NULL;
out:
	json_decref(list);
	buf_free(&r);
	buf_free(&out);
	for (i = 0; i < ARRAY_LEN(cmds); i++)
		buf_free(&cmds[i]);
}

/* Responses to EXTERNAL AUTHENTICATE + the management commands. */
static void
step_commands(struct seisim *s, struct seisim_task *t, json_t *rl,
    struct seisim_answer *a)
{
	struct buf r, plain;
	struct gp_err e;
	char sws[64];
	uint16_t sw;
	size_t n = json_array_size(rl), i;
	int rc;

	gp_err_clear(&e);
	buf_init(&r);
	buf_init(&plain);
	if (n == 0 || n > t->nkinds) {
		task_fail(s, t, a, SEISIM_RC_RESPONSE, "respList: expected 1..%zu "
		    "responses, got %zu", t->nkinds, n);
		goto out;
	}
	for (i = 0; i < n; i++) {
		const char *what = cmd_names[t->kinds[i]];

		if (resp_get(rl, i, &r, &sw) != 0) {
			task_fail(s, t, a, SEISIM_RC_RESPONSE, "respList[%zu]: not a "
			    "response (hex data || SW)", i);
			goto out;
		}
		if (t->kinds[i] == C_EA) {
			if (sw != 0x9000)
				task_fail(s, t, a, sw == 0x6300 ? SEISIM_RC_CHANNEL :
				    SEISIM_RC_CARD, "%s refused by the SE: %s", what,
				    gp_sw_str(sw, sws, sizeof(sws)));
			else if (r.len != 2)
				task_fail(s, t, a, SEISIM_RC_RESPONSE, "%s: unexpected "
				    "response data", what);
			if (sw != 0x9000 || r.len != 2)
				goto out;
			continue;
		}
		if ((rc = gp_scp03_unwrap(t->sc, r.p, r.len, &plain, &e)) != 0) {
			task_fail(s, t, a, SEISIM_RC_CHANNEL, "%s: response rejected: "
			    "%s", what, e.msg);
			goto out;
		}
		if (plain.len < 2) {
			task_fail(s, t, a, SEISIM_RC_RESPONSE, "%s: no status word",
			    what);
			goto out;
		}
		sw = (uint16_t)(plain.p[plain.len - 2] << 8 | plain.p[plain.len - 1]);
		if (sw != 0x9000) {
			task_fail(s, t, a, SEISIM_RC_CARD, "%s refused by the SE: %s",
			    what, gp_sw_str(sw, sws, sizeof(sws)));
			goto out;
		}
		if (t->kinds[i] == C_INSTALL)
			t->installed = 1;
		if (t->kinds[i] == C_PUTKEY && gp_put_key_resp_check(plain.p,
		    plain.len - 2, &t->expect, &e) != 0) {
			task_fail(s, t, a, SEISIM_RC_RESPONSE, "PUT KEY: the SE's "
			    "answer does not confirm the keys: %s", e.msg);
			goto out;
		}
	}
	if (n < t->nkinds) {
		task_fail(s, t, a, SEISIM_RC_RESPONSE, "respList: %zu of %zu "
		    "responses and no error status word", n, t->nkinds);
		goto out;
	}
	task_done(s, t, a);
out:
	buf_free(&r);
	buf_free(&plain);
}

/* SHA-256 over the responses, upper-cased, each followed by '\n'. */
static int
resp_digest(json_t *rl, uint8_t md[32])
{
	EVP_MD_CTX *c = EVP_MD_CTX_new();
	unsigned int ml = 0;
	size_t i, j;
	json_t *v;
	int rc = ERR_CRYPTO;

	if (c == NULL || EVP_DigestInit_ex(c, EVP_sha256(), NULL) != 1)
		goto out;
	json_array_foreach(rl, i, v) {
		const char *h = json_string_value(v);

		for (j = 0; h[j]; j++) {
			char ch = (char)(h[j] >= 'a' && h[j] <= 'f' ? h[j] - 32 : h[j]);

			if (EVP_DigestUpdate(c, &ch, 1) != 1)
				goto out;
		}
		if (EVP_DigestUpdate(c, "\n", 1) != 1)
			goto out;
	}
	if (EVP_DigestFinal_ex(c, md, &ml) == 1)
		rc = 0;
out:
	EVP_MD_CTX_free(c);
	return rc;
}

void
seisim_ssd_instructions(struct seisim *s, json_t *b, struct seisim_answer *a)
{
	struct seisim_task *t;
	struct seisim_state st;
	char msg[300], se_id[130];
	const char *id;
	uint8_t md[32];
	json_t *rl, *v, *rec;
	size_t i;
	int rc;

	pthread_mutex_lock(&s->lock);
	tasks_expire(s);
	if ((rc = check_common(s, b, se_id, msg, sizeof(msg))) != 0) {
		answer(a, rc, str_field(b, "taskId"), NULL, "%s", msg);
		goto out;
	}
	if ((id = str_field(b, "taskId")) == NULL) {
		answer(a, SEISIM_RC_BAD_REQUEST, NULL, NULL,
		    "missing or non-string field: taskId");
		goto out;
	}
	rl = json_object_get(b, "respList");
	if (!json_is_array(rl)) {
		answer(a, SEISIM_RC_BAD_REQUEST, id, NULL,
		    "missing field: respList (a list of hex responses)");
		goto out;
	}
	json_array_foreach(rl, i, v) {
		size_t l;
		const char *h = json_string_value(v);

		if (h == NULL || (l = strlen(h)) < 4 || l % 2 || l > 2 * 65538 ||
		    strspn(h, "0123456789abcdefABCDEF") != l) {
			answer(a, SEISIM_RC_BAD_REQUEST, id, NULL, "respList[%zu]: hex "
			    "of data || SW1 SW2", i);
			goto out;
		}
	}
	if ((t = task_find(s, id)) == NULL) {
		const char *state = NULL;

		if (seisim_state_open(&st, s->dir, s->m.sei_tsm_id) == 0) {
			if ((rec = seisim_state_task(&st, id)) != NULL &&
			    (state = json_string_value(json_object_get(rec,
			    "state"))) != NULL && strcmp(state, "RUNNING") == 0) {
				/* Its SCP03 session died with a previous process. */
				json_object_set_new(rec, "state", json_string("FAILED"));
				json_object_set_new(rec, "resultCode",
				    json_integer(SEISIM_RC_TASK));
				json_object_set_new(rec, "resultMessage", json_string(
				    "lost: the simulator restarted during the task"));
				if (seisim_state_commit(&st) != 0)
					log_msg(LOG_ERR, "event=state_write_failed");
			}
			seisim_state_close(&st);
		}
		if (state != NULL)
			answer(a, SEISIM_RC_TASK, id, NULL, "task %s is over (%s)", id,
			    strcmp(state, "RUNNING") == 0 ? "lost: the simulator "
			    "restarted during the task" : state);
		else
			answer(a, SEISIM_RC_TASK, id, NULL, "unknown taskId");
		goto out;
	}
	if (strcmp(t->se_id, se_id) != 0) {
		answer(a, SEISIM_RC_BAD_REQUEST, id, NULL, "seId does not match the "
		    "task's SE");
		goto out;
	}
	/* The same respList again (a retry whose answer was lost): the same
	 * answer again, without advancing the task. */
	if (resp_digest(rl, md) != 0) {
		answer(a, SEISIM_RC_FAIL, id, NULL, "digest failed");
		goto out;
	}
	if (t->has_last && memcmp(md, t->last_digest, 32) == 0 &&
	    t->last_answer != NULL) {
		a->status = 200;
		a->body = json_loads(t->last_answer, 0, NULL);
		log_msg(LOG_INFO, "event=task_replay task=%s", t->id);
		goto out;
	}
	if (t->finished) {
		answer(a, SEISIM_RC_TASK, id, NULL, "task %s is over (%s)", id,
		    t->finished > 0 ? "DONE" : "FAILED");
		goto out;
	}
	t->touched = (uint64_t)wall_seconds();
	if (t->step == 0)
		step_auth(s, t, rl, a);
	else
		step_commands(s, t, rl, a);
	free(t->last_answer);
	t->last_answer = a->body ? json_dumps(a->body, JSON_COMPACT) : NULL;
	memcpy(t->last_digest, md, 32);
	t->has_last = 1;
out:
	pthread_mutex_unlock(&s->lock);
}
