/*
 * engine.c - the task engine: task records with compare-and-swap saves and
 * history, the per-request run over an SE's tasks in creation order, the
 * tasks a session starts itself, session kmsd connections, ids, test crash
 * points. Runs in tsmd's workers; the store is the truth, memory a cache.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "tsm/flow/flow_int.h"
#include "tsm/sei/client.h"

/* ---- small helpers ------------------------------------------------------ */

uint64_t
flow_now(void)
{
	return (uint64_t)wall_seconds();
}

void
flow_id_make(struct flow *f, const char *prefix, char *out, size_t cap)
{
	uint8_t r[4] = { 0 };
	char rh[9];
	uint32_t seq;
	uint64_t ms = wall_us() / 1000u;

	if (getrandom(r, sizeof(r), 0) != (ssize_t)sizeof(r))
		memset(r, 0x5a, sizeof(r));
	hex_encode_upper(r, sizeof(r), rh);
	pthread_mutex_lock(&f->mu);
	seq = ++f->seq;
	pthread_mutex_unlock(&f->mu);
	snprintf(out, cap, "%s%012llX%04X-%s", prefix,
	    (unsigned long long)(ms & 0xFFFFFFFFFFFFull), (unsigned)(seq & 0xFFFF),
	    rh);
}

void
flow_crash_point(struct flow *f, const char *p)
{
	if (f->crash != NULL && strcmp(f->crash, p) == 0) {
		log_msg(LOG_WARN, "event=test_crash point=%s note=\"TSMD_TEST_CRASH: "
		    "exiting on purpose (tests only)\"", p);
		_exit(70);
	}
}

/* Text for a store field: printable, at most cap - 1 bytes. */
static void
text_clean(char *dst, size_t cap, const char *src)
{
	size_t i;

	snprintf(dst, cap, "%s", src != NULL ? src : "");
	for (i = 0; dst[i] != '\0'; i++)
		if ((unsigned char)dst[i] < 0x20 || (unsigned char)dst[i] == 0x7f)
			dst[i] = ' ';
}

/* ---- configuration seen by requests, for the worker ---------------------- */

void
flow_cfg_note(struct flow *f, const struct tsm_config *c)
{
	struct tsm_config *old = NULL;

	pthread_mutex_lock(&f->mu);
	if (c != NULL && c != f->cfg) {
		old = f->cfg;
		f->cfg = tsm_config_ref((struct tsm_config *)c);
	}
	pthread_mutex_unlock(&f->mu);
	tsm_config_unref(old);
}

struct tsm_config *
flow_cfg_get(struct flow *f)
{
	struct tsm_config *c;

	pthread_mutex_lock(&f->mu);
	c = tsm_config_ref(f->cfg);
	pthread_mutex_unlock(&f->mu);
	return c;
}

/* ---- tasks ------------------------------------------------------------------ */

void
flow_task_init(struct flow_task *t)
{
	memset(t, 0, sizeof(*t));
	store_task_init(&t->r);
	buf_init(&t->raw);
}

void
flow_task_cleanup(struct flow_task *t)
{
	store_task_cleanup(&t->r);
	buf_free(&t->raw);
	json_decref(t->ctx);
	t->ctx = NULL;
}

int
flow_task_is_live(const struct store_task *r)
{
	return strcmp(r->state, TS_PENDING) == 0 ||
	    strcmp(r->state, TS_RUNNING) == 0;
}

int
flow_task_load(struct flow *f, const char *id, struct flow_task *t)
{
	json_error_t je;
	int rc;

	flow_task_cleanup(t);
	flow_task_init(t);
	if ((rc = store_raw_get(f->st, STORE_DB_TASK, id, strlen(id),
	    &t->raw)) != 0)
		return rc;
	if ((rc = store_task_decode(t->raw.p, t->raw.len, &t->r)) != 0)
		return rc;
	t->ctx = t->r.ctx.len > 0 ? json_loadb((const char *)t->r.ctx.p,
	    t->r.ctx.len, JSON_REJECT_DUPLICATES, &je) : json_object();
	if (!json_is_object(t->ctx)) {
		log_msg(LOG_ERR, "event=flow_task_ctx_bad task=%s", id);
		json_decref(t->ctx);
		t->ctx = json_object();
		return t->ctx != NULL ? ERR_PARSE : ERR_NOMEM;
	}
	return 0;
}

const char *
flow_ctx_str(const struct flow_task *t, const char *key)
{
	return json_string_value(json_object_get(t->ctx, key));
}

int
flow_ctx_int(const struct flow_task *t, const char *key, int def)
{
	json_t *v = json_object_get(t->ctx, key);

	return json_is_integer(v) ? (int)json_integer_value(v) : def;
}

void
flow_task_set(struct flow_task *t, const char *state, uint32_t step, int err,
    const char *fmt, ...)
{
	char msg[STORE_TEXT_MAX + 1];
	va_list ap;

	if (state != NULL)
		snprintf(t->r.state, sizeof(t->r.state), "%s", state);
	t->r.step = step;
	t->r.last_err = err;
	msg[0] = '\0';
	if (fmt != NULL) {
		va_start(ap, fmt);
		(void)vsnprintf(msg, sizeof(msg), fmt, ap);
		va_end(ap);
	}
	text_clean(t->r.last_error, sizeof(t->r.last_error), msg);
}

/* t->ctx into t->r.ctx, compact and sorted. */
static int
ctx_encode(struct flow_task *t)
{
	char *s = json_dumps(t->ctx, JSON_COMPACT | JSON_SORT_KEYS);
	int rc;

	if (s == NULL)
		return ERR_NOMEM;
	buf_reset(&t->r.ctx);
	rc = strlen(s) > STORE_CTX_MAX ? ERR_TOOBIG :
	    buf_put(&t->r.ctx, s, strlen(s));
	free(s);
	return rc;
}

static void
log_task(const struct flow_task *t, const char *note)
{
	log_msg(LOG_INFO, "event=flow_task task=%s se=%s kind=%s state=%s step=%u "
	    "note=\"%s\"%s%s%s", t->r.id, t->r.se_id, t->r.kind, t->r.state,
	    (unsigned)t->r.step, note, t->r.last_error[0] ? " error=\"" : "",
	    t->r.last_error, t->r.last_error[0] ? "\"" : "");
}

int
flow_task_new(struct flow *f, struct flow_task *t, const char *se_id,
    const char *kind, json_t *ctx, const char *note, struct store_batch *b)
{
	char clean[STORE_TEXT_MAX + 1];
	uint64_t now = flow_now();
	int rc;

	flow_task_cleanup(t);
	flow_task_init(t);
	flow_id_make(f, "T", t->r.id, sizeof(t->r.id));
	snprintf(t->r.se_id, sizeof(t->r.se_id), "%s", se_id);
	snprintf(t->r.kind, sizeof(t->r.kind), "%s", kind);
	snprintf(t->r.state, sizeof(t->r.state), TS_PENDING);
	t->r.created = t->r.updated = now;
	t->ctx = json_incref(ctx);
	text_clean(clean, sizeof(clean), note);
	if ((rc = ctx_encode(t)) != 0 ||
	    (rc = store_task_hist_add(&t->r, now, clean)) != 0)
		return rc;
	if (b == NULL) {
		t->fresh = 1;
		return 0;
	}
	if ((rc = store_task_encode(&t->r, &t->raw)) != 0 ||
	    (rc = store_batch_require_absent(b, STORE_DB_TASK, t->r.id,
	    strlen(t->r.id))) != 0 ||
	    (rc = store_batch_put_task(b, &t->r)) != 0)
		return rc;
	return 0;
}

int
flow_task_stage(struct flow_task *t, struct store_batch *b, const char *note,
    struct buf *nraw)
{
	char clean[STORE_TEXT_MAX + 1];
	uint64_t now = flow_now();
	int rc;

	text_clean(clean, sizeof(clean), note);
	t->r.updated = now;
	buf_reset(nraw);
	if ((rc = ctx_encode(t)) != 0 ||
	    (rc = store_task_hist_add(&t->r, now, clean)) != 0 ||
	    (rc = store_task_encode(&t->r, nraw)) != 0)
		return rc;
	rc = t->fresh ? store_batch_require_absent(b, STORE_DB_TASK, t->r.id,
	    strlen(t->r.id)) : store_batch_require_equal(b, STORE_DB_TASK,
	    t->r.id, strlen(t->r.id), t->raw.p, t->raw.len);
	if (rc != 0)
		return rc;
	return store_batch_put_task(b, &t->r);
}

int
flow_task_save(struct flow *f, struct flow_task *t, struct store_batch *b,
    const char *note)
{
	struct store_batch *own = NULL;
	struct buf nraw;
	int rc;

	buf_init(&nraw);
	if (b == NULL) {
		if ((rc = store_batch_new(&own)) != 0)
			goto out;
		b = own;
	}
	if ((rc = flow_task_stage(t, b, note, &nraw)) != 0)
		goto out;
	rc = store_batch_commit(f->st, b);
	if (rc == 0) {
		buf_free(&t->raw);
		t->raw = nraw;
		buf_init(&nraw);
		t->fresh = 0;
		log_task(t, t->r.n_hist > 0 ? t->r.hist[t->r.n_hist - 1].note : "");
	} else {
		log_msg(rc == ERR_WRONGSTATE ? LOG_INFO : LOG_ERR,
		    "event=flow_task_save_failed task=%s err=%s", t->r.id,
		    err_name(rc));
	}
out:
	buf_free(&nraw);
	store_batch_free(own);
	return rc;
}

struct live_acc {
	json_t *ids;
};

static int
live_each(void *arg, const struct store_task *r)
{
	struct live_acc *a = arg;

	return json_array_append_new(a->ids, json_string(r->id)) == 0 ? 0 :
	    ERR_NOMEM;
}

static int
id_cmp(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

int
flow_tasks_live(struct flow *f, const char *se_id, json_t **ids)
{
	struct live_acc a;
	const char **v = NULL;
	json_t *sorted = NULL;
	size_t i, n;
	int rc;

	*ids = NULL;
	if ((a.ids = json_array()) == NULL)
		return ERR_NOMEM;
	if ((rc = store_task_iter(f->st, se_id, TS_RUNNING, live_each, &a)) != 0 ||
	    (rc = store_task_iter(f->st, se_id, TS_PENDING, live_each, &a)) != 0)
		goto out;
	/* Creation order = id order across both states. */
	n = json_array_size(a.ids);
	rc = ERR_NOMEM;
	if ((sorted = json_array()) == NULL ||
	    (n > 0 && (v = calloc(n, sizeof(*v))) == NULL))
		goto out;
	for (i = 0; i < n; i++)
		v[i] = json_string_value(json_array_get(a.ids, i));
	if (n > 1)
		qsort(v, n, sizeof(*v), id_cmp);
	for (i = 0; i < n; i++)
		if (json_array_append_new(sorted, json_string(v[i])) != 0)
			goto out;
	*ids = sorted;
	sorted = NULL;
	rc = 0;
out:
	free(v);
	json_decref(sorted);
	json_decref(a.ids);
	return rc;
}

int
flow_out_add(struct flow_step *fs, const uint8_t *p, size_t n)
{
	char *h;
	int rc;

	if (json_array_size(fs->out) >= FLOW_BATCH_MAX)
		return ERR_LIMIT;
	if ((h = malloc(2 * n + 1)) == NULL)
		return ERR_NOMEM;
	hex_encode_upper(p, n, h);
	rc = json_array_append_new(fs->out, json_string(h)) == 0 ? 0 : ERR_NOMEM;
	free(h);
	return rc;
}

/* ---- session kmsd connection and run state -------------------------------- */

int
flow_sess_gp(struct flow *f, struct flow_sess *s, const char *sock)
{
	struct kms_client *c = NULL;
	int rc;

	(void)f;
	if (s->gk != NULL && gp_kms_alive(s->gk))
		return 0;
	if (s->gk != NULL) {
		/* The connection died (kmsd restarted): every handle of the
		 * run went with it. */
		flow_run_clear(s);
		gp_kms_free(s->gk);
		s->gk = NULL;
	}
	if ((rc = kms_connect(&c, sock, "tsmd-flow")) != 0)
		return rc == ERR_DENIED || rc == ERR_VERSION ? rc : ERR_IO;
	if ((rc = gp_kms_new(c, &s->gk)) != 0) {
		kms_close(c);
		return rc;
	}
	gp_kms_backend(s->gk, &s->be);
	return 0;
}

void
flow_run_clear(struct flow_sess *s)
{
	int i;

	gp_scp03_free(s->run.sc);
	gp_scp03_free(s->run.sc_done);
	for (i = 0; i < 2; i++)
		if (s->run.ks_open[i] && s->gk != NULL &&
		    gp_kms_keyset_close(s->gk, &s->run.ks[i]) != 0)
			log_msg(LOG_WARN, "event=flow_keyset_close_failed");
	wipe(&s->run, sizeof(s->run));
}

void
flow_run_forget(struct flow_sess *s)
{
	s->run.task_id[0] = '\0';
	s->run.step = 0;
	s->run.n_sent = 0;
}

void
flow_sess_free(struct flow *f, struct flow_sess *s)
{
	(void)f;
	if (s == NULL)
		return;
	/* Closing the connection first destroys every handle of the
	 * session in kmsd at once: no handle.close per key. */
	if (s->gk != NULL)
		gp_kms_close(s->gk);
	flow_run_clear(s);
	if (s->gk != NULL)
		gp_kms_free(s->gk);
	json_decref(s->outcomes);
	json_decref(s->seen);
	json_decref(s->todo);
	wipe(s, sizeof(*s));
	free(s);
}

/* ---- the tasks a session starts by itself ---------------------------------- */

struct ssd_acc {
	struct store_ssd *v;
	size_t n, cap;
};

static int
ssd_each(void *arg, const struct store_ssd *r)
{
	struct ssd_acc *a = arg;
	struct store_ssd *nv;

	if (a->n == a->cap) {
		if (a->cap >= 4096)
			return 1;
		nv = realloc(a->v, (a->cap ? 2 * a->cap : 8) * sizeof(*nv));
		if (nv == NULL)
			return ERR_NOMEM;
		a->v = nv;
		a->cap = a->cap ? 2 * a->cap : 8;
	}
	a->v[a->n++] = *r;
	return 0;
}

/*
 * 1 when the SSD needs a KEY_REPLACE task of its own: its initial keys
 * are still in use (KEYS_RECEIVED: replace them; if a replacement left
 * two versions recorded, the task reads the card first; CREATED with a
 * master set of its AID: the per-SE keys from it), or a replacement
 * of tsmd's own keys left two versions and which one the card holds is
 * unknown (*probe = 1: only that is settled, no new rotation starts).
 */
static int
ssd_needs_keys(struct flow *f, const struct store_ssd *r, int *probe)
{
	*probe = 0;
	if (strcmp(r->state, SS_GONE) == 0 || strcmp(r->state, SS_DELETED) == 0 ||
	    strcmp(r->state, SS_CREATING) == 0 || strcmp(r->state, SS_LOCKED) == 0)
		return 0;
	if (strcmp(r->state, SS_KEYS_RECEIVED) == 0)
		return r->kvn_pending != 0 || r->kvn_active != 0;
	/* Created, and its initial keys come from the AID's master set (key
	 * sync without seId): replace them too. */
	if (strcmp(r->state, SS_CREATED) == 0 && r->kvn_active == 0 &&
	    r->kvn_pending == 0)
		return flow_master_kvn(f, r->sd_aid) != 0;
	if (r->kvn_pending != 0 && r->kvn_active != 0) {
		*probe = 1;
		return 1;
	}
	return 0;
}

/*
 * The SSDs of the SE that need a KEY_REPLACE of their own and have no live
 * task: queued in the session (s->todo). Each becomes a task only when the
 * session takes it up, in the same durable batch as its first step.
 */
static int
engine_prepare(struct flow *f, struct flow_sess *s)
{
	struct ssd_acc a = { NULL, 0, 0 };
	struct flow_task t;
	json_t *ids = NULL, *busy = NULL;
	const char *aid;
	size_t i;
	int rc, probe;

	flow_task_init(&t);
	json_array_clear(s->todo);
	if ((rc = store_ssd_iter(f->st, s->se_id, ssd_each, &a)) != 0 || a.n == 0)
		goto out;
	if ((rc = flow_tasks_live(f, s->se_id, &ids)) != 0)
		goto out;
	if ((busy = json_object()) == NULL) {
		rc = ERR_NOMEM;
		goto out;
	}
	/* SSDs with a live task are left to it. */
	for (i = 0; i < json_array_size(ids); i++) {
		if (flow_task_load(f, json_string_value(json_array_get(ids, i)),
		    &t) != 0)
			continue;
		if ((aid = flow_ctx_str(&t, "sdAid")) != NULL)
			json_object_set_new(busy, aid, json_true());
	}
	for (i = 0; i < a.n; i++)
		if (json_object_get(busy, a.v[i].sd_aid) == NULL &&
		    ssd_needs_keys(f, &a.v[i], &probe))
			json_array_append_new(s->todo, json_string(a.v[i].sd_aid));
out:
	json_decref(ids);
	json_decref(busy);
	flow_task_cleanup(&t);
	free(a.v);
	return rc;
}

/* The next queued SSD that still needs its key task: t becomes that task,
 * fresh (in memory). 1 when there is one, 0 when none is left. */
static int
todo_pop(struct flow *f, struct flow_sess *s, struct flow_task *t)
{
	struct store_ssd r;
	char aid[STORE_AID_MAX + 1];
	json_t *ctx;
	int probe, rc;

	while (json_array_size(s->todo) > 0) {
		snprintf(aid, sizeof(aid), "%s", json_string_value(
		    json_array_get(s->todo, 0)));
		json_array_remove(s->todo, 0);
		if (store_ssd_get(f->st, s->se_id, aid, &r) != 0 ||
		    !ssd_needs_keys(f, &r, &probe))
			continue;
		ctx = json_pack("{s:s, s:b, s:s}", "sdAid", aid, "probeOnly", probe,
		    "reason", probe ? "uncertain" : "initial");
		rc = ctx != NULL ? flow_task_new(f, t, s->se_id, "KEY_REPLACE", ctx,
		    probe ? "started by the agent session: two key versions "
		    "recorded, the card decides which one it holds" :
		    "started by the agent session: replace the initial keys",
		    NULL) : ERR_NOMEM;
		json_decref(ctx);
		if (rc == 0)
			return 1;
	}
	return 0;
}

/* ---- the run -------------------------------------------------------------- */

static int
transient(int rc)
{
	return rc == ERR_IO || rc == ERR_TIMEOUT || rc == ERR_CLOSED ||
	    rc == ERR_SEALED || rc == ERR_BUSY || rc == ERR_LIMIT;
}

static void
outcome(struct flow_sess *s, const struct flow_task *t)
{
	const struct flow_kind *k = flow_kind_get(t->r.kind);
	json_t *o;

	json_object_set_new(s->seen, t->r.id, json_true());
	o = json_pack("{s:s, s:s, s:s, s:s}", "taskId", t->r.id, "kind",
	    t->r.kind, "state", t->r.state, "step", k != NULL ?
	    k->step_name(t->r.step) : "?");
	if (o == NULL)
		return;
	if (t->r.last_error[0] != '\0')
		json_object_set_new(o, "error", json_string(t->r.last_error));
	json_array_append_new(s->outcomes, o);
}

/* The next live task of the SE not yet taken up in this session. */
static int
next_task(struct flow *f, struct flow_sess *s, char *id, size_t cap)
{
	json_t *ids = NULL;
	const char *v;
	size_t i;
	int rc;

	id[0] = '\0';
	if ((rc = flow_tasks_live(f, s->se_id, &ids)) != 0)
		return rc;
	for (i = 0; i < json_array_size(ids); i++) {
		v = json_string_value(json_array_get(ids, i));
		if (json_object_get(s->seen, v) == NULL) {
			snprintf(id, cap, "%s", v);
			break;
		}
	}
	json_decref(ids);
	return 0;
}

int
flow_engine_run(struct flow_step *fs)
{
	struct flow_sess *s = fs->s;
	struct flow *f = fs->f;
	const struct flow_resp *resp = fs->resp;
	const struct flow_kind *k;
	struct flow_task t;
	char id[STORE_ID_MAX + 1];
	int rc = 0, guard, mine, fresh;

	flow_task_init(&t);
	if (resp == NULL && (rc = engine_prepare(f, s)) != 0)
		log_msg(LOG_WARN, "event=flow_prepare_failed se=%s err=%s",
		    s->se_id, err_name(rc));
	for (guard = 0; guard < 256; guard++) {
		json_array_clear(fs->out);
		mine = s->run.task_id[0] != '\0';
		fresh = 0;
		if (mine) {
			snprintf(id, sizeof(id), "%s", s->run.task_id);
		} else {
			if ((rc = next_task(f, s, id, sizeof(id))) != 0)
				break;
			if (id[0] == '\0') {
				/* The stored tasks are through: the session's own. */
				if (!todo_pop(f, s, &t)) {
					rc = 0;
					break;
				}
				fresh = 1;
				snprintf(id, sizeof(id), "%s", t.r.id);
			}
		}
		rc = fresh ? 0 : flow_task_load(f, id, &t);
		if (rc == ERR_NOTFOUND || (rc == 0 && !flow_task_is_live(&t.r))) {
			if (rc == 0)
				outcome(s, &t);
			flow_run_forget(s);
			resp = NULL;
			continue;
		}
		if (rc != 0)
			break;
		if ((k = flow_kind_get(t.r.kind)) == NULL) {
			flow_task_set(&t, TS_FAILED, t.r.step, ERR_NOTSUP,
			    "unknown task kind %s", t.r.kind);
			if ((rc = flow_task_save(f, &t, NULL, "failed: unknown "
			    "kind")) != 0 && transient(rc))
				break;
			outcome(s, &t);
			continue;
		}
		/* Answers belong to the batch this run sent for this task;
		 * another task (or a fresh start) gets a clean run. */
		fs->resp = mine && s->run.step == t.r.step ? resp : NULL;
		if (!mine || fs->resp == NULL)
			flow_run_clear(s);
		resp = NULL;
		if (f->fail_kind != NULL && strcmp(f->fail_kind, t.r.kind) == 0) {
			log_msg(LOG_WARN, "event=test_internal_error task=%s kind=%s "
			    "note=\"TSMD_TEST_CRASH=internal:KIND (tests only)\"",
			    t.r.id, t.r.kind);
			rc = ERR_INTERNAL;
		} else
			rc = k->run(fs, &t);
		if (rc == 0 && json_array_size(fs->out) > 0) {
			snprintf(s->run.task_id, sizeof(s->run.task_id), "%s", t.r.id);
			s->run.step = t.r.step;
			s->run.n_sent = json_array_size(fs->out);
			break;
		}
		if (rc == ERR_WRONGSTATE || rc == 0) {
			/* Final, or changed under us (cancelled): as stored. */
			if (flow_task_load(f, id, &t) == 0) {
				if (!flow_task_is_live(&t.r))
					outcome(s, &t);
				else
					json_object_set_new(s->seen, id, json_true());
			}
			flow_run_forget(s);
			rc = 0;
			continue;
		}
		flow_run_forget(s);
		if (transient(rc)) {
			json_object_set_new(s->seen, id, json_true());
			break;
		}
		/* An internal error ends this task, not the session. */
		log_msg(LOG_ERR, "event=flow_task_error task=%s kind=%s step=%u "
		    "err=%s", t.r.id, t.r.kind, (unsigned)t.r.step, err_name(rc));
		if (flow_task_load(f, id, &t) == 0 && flow_task_is_live(&t.r)) {
			char why[80];
			int frc;

			snprintf(why, sizeof(why), "internal error (%s); see "
			    "tsmd's log", err_name(rc));
			/* The kind ends it as its own failures do, so that its
			 * SSD is not left held by a dead task. */
			frc = k->fail(fs, &t, rc, why);
			if (frc != 0)
				json_object_set_new(s->seen, id, json_true());
			else
				outcome(s, &t);
		}
		rc = 0;
	}
	if (guard == 256)
		rc = ERR_INTERNAL;
	flow_task_cleanup(&t);
	return rc;
}

/* ---- the kinds ---------------------------------------------------------------- */

const struct flow_kind *
flow_kind_get(const char *name)
{
	static const struct flow_kind *const kinds[] = {
		&flow_kind_ssd_create, &flow_kind_ssd_lock, &flow_kind_ssd_unlock,
		&flow_kind_ssd_delete, &flow_kind_key_replace,
	};
	size_t i;

	for (i = 0; name != NULL && i < ARRAY_LEN(kinds); i++)
		if (strcmp(kinds[i]->name, name) == 0)
			return kinds[i];
	return NULL;
}

/* ---- lifetime ------------------------------------------------------------------ */

int
flow_new(struct flow **out, struct store *st, struct tsm_config *cfg)
{
	struct flow *f;
	const char *crash = getenv("TSMD_TEST_CRASH");

	*out = NULL;
	if (st == NULL || cfg == NULL)
		return ERR_INVAL;
	if ((f = calloc(1, sizeof(*f))) == NULL)
		return ERR_NOMEM;
	/* libcurl's global init, before any thread of ours calls it. */
	if (sei_client_init() != 0) {
		free(f);
		return ERR_INTERNAL;
	}
	f->st = st;
	f->cfg = tsm_config_ref(cfg);
	if (crash != NULL && strncmp(crash, "internal:", 9) == 0) {
		f->fail_kind = crash + 9;
		log_msg(LOG_WARN, "event=test_crash_armed point=%s note=\"TSMD_TEST_"
		    "CRASH is for tests only: every %s task fails with an "
		    "internal error\"", crash, f->fail_kind);
	} else if (crash != NULL && crash[0] != '\0') {
		f->crash = crash;
		log_msg(LOG_WARN, "event=test_crash_armed point=%s note=\"TSMD_TEST_"
		    "CRASH is for tests only: tsmd exits at that step\"", crash);
	}
	pthread_mutex_init(&f->mu, NULL);
	pthread_cond_init(&f->cv, NULL);
	*out = f;
	return 0;
}

int
flow_start(struct flow *f)
{
	if (pthread_create(&f->thr, NULL, flow_worker_main, f) != 0)
		return ERR_NOMEM;
	f->thr_started = 1;
	return 0;
}

void
flow_free(struct flow *f)
{
	struct flow_sess *s, *n;

	if (f == NULL)
		return;
	if (f->thr_started) {
		pthread_mutex_lock(&f->mu);
		f->stop = 1;
		pthread_cond_signal(&f->cv);
		pthread_mutex_unlock(&f->mu);
		pthread_join(f->thr, NULL);
	}
	for (s = f->sessions; s != NULL; s = n) {
		n = s->next;
		flow_sess_free(f, s);
	}
	tsm_config_unref(f->cfg);
	sei_client_cleanup();
	pthread_cond_destroy(&f->cv);
	pthread_mutex_destroy(&f->mu);
	free(f);
}

int
flow_routes_register(struct http_router *r, struct flow *f)
{
	int rc;

	if ((rc = flow_agent_routes(r, f)) != 0)
		return rc;
	return flow_api_routes(r, f);
}
