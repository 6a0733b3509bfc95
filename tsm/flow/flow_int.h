/*
 * flow_int.h - internals shared by tsm/flow/: the process-wide flow state,
 * agent sessions and the in-memory part of the task a session runs, task
 * records and their compare-and-swap saves, the task kinds, SSD and key-set
 * helpers, notifications. Runs in tsmd's workers and the flow worker.
 */
#ifndef SPTSM_FLOW_INT_H
#define SPTSM_FLOW_INT_H

#include <pthread.h>
#include <stdint.h>

#include <jansson.h>

#include "kms/kms.h"
#include "tsm/config.h"
#include "tsm/flow/flow.h"
#include "tsm/gp/gp.h"
#include "tsm/gp/gp_kms.h"
#include "tsm/http/http.h"
#include "tsm/store/store.h"

/* Task states (FLOWS.md "Tasks"). */
#define TS_PENDING   "PENDING"
#define TS_RUNNING   "RUNNING"
#define TS_DONE      "DONE"
#define TS_FAILED    "FAILED"
#define TS_CANCELLED "CANCELLED"

/* SSD states (FLOWS.md "SSD states"). */
#define SS_CREATING      "CREATING"
#define SS_CREATE_FAILED "CREATE_FAILED"
#define SS_CREATED       "CREATED"
#define SS_KEYS_RECEIVED "KEYS_RECEIVED"
#define SS_PERSONALIZED  "PERSONALIZED"
#define SS_LOCKED        "LOCKED"
#define SS_DELETED       "DELETED"
#define SS_GONE          "GONE"

/* The in-memory part of the task whose batch is out at the agent. Lost
 * with the session (expiry, tsmd restart): the task then resumes from its
 * record, re-reading the card where its state is unknown. Its kmsd
 * objects outlive the task (flow_run_forget) until another task of the
 * session starts or the session's connection closes: closing it drops
 * them all in kmsd without a request. */
struct flow_run {
	char     task_id[STORE_ID_MAX + 1];
	uint32_t step;			/* the task's step when the batch left */
	size_t   n_sent;		/* APDUs in that batch */
	/* KEY_REPLACE */
	struct gp_scp03 *sc;
	struct gp_scp03 *sc_done;	/* the one before sc, not released */
	struct kms_keyset ks[2];	/* [0] the set the IU names, [1] new
					 * (after PUT KEY: the replaced one) */
	int      ks_open[2];
	uint8_t  ks_kvn[2];
	uint8_t  hc[16];		/* host challenge of the IU out */
	size_t   hclen;
	struct gp_put_key_expect expect;
};

struct flow_sess {
	struct flow_sess *next;
	char     id[33];		/* 128 random bits, lowercase hex */
	char     se_id[STORE_SEID_MAX + 1];
	uint64_t started_ms, last_ms;	/* monotonic */
	int      busy;			/* a request is running on it */
	struct gp_kms *gk;		/* its own kmsd connection, lazily */
	struct gp_backend be;
	struct flow_run run;
	json_t  *outcomes;		/* [{taskId, kind, state, error}] */
	json_t  *seen;			/* {taskId: true}: not taken up again */
	json_t  *todo;			/* [sdAid]: key tasks to start, once
					 * the stored tasks are through */
	unsigned batches;
};

struct flow {
	struct store      *st;
	struct tsm_config *cfg;		/* the latest a request ran under */
	const char        *crash;	/* TSMD_TEST_CRASH or NULL */
	const char        *fail_kind;	/* TSMD_TEST_CRASH=internal:KIND */
	pthread_mutex_t    mu;		/* everything below */
	struct flow_sess  *sessions;
	size_t             nsess;
	uint32_t           seq;
	pthread_cond_t     cv;
	pthread_t          thr;
	int                thr_started, stop, kick;
};

/* A task as read: the record, its exact stored bytes (the CAS value) and
 * its parsed context. */
struct flow_task {
	struct store_task r;
	struct buf        raw;
	json_t           *ctx;
	int               fresh;	/* not stored yet: its first save
					 * creates it (require absent) */
};

/* What a task kind's step function works with. */
struct flow_step {
	struct flow             *f;
	struct flow_sess        *s;
	const struct tsm_config *cfg;
	struct kms_client       *kc;	/* this thread's kmsd client, or NULL */
	const char              *rid;
	uint64_t                 deadline_us;	/* the request's (now_us) */
	const struct flow_resp  *resp;	/* answers to the batch this task
					 * sent in this session; NULL: start or
					 * resume from the record */
	json_t                  *out;	/* the next batch (hex); empty: none */
	char                     why[200];	/* a transient failure, for the
						 * agent's answer */
};

/*
 * A kind's step function. Returns 0 when the task either produced a batch
 * in fs->out (its step recorded RUNNING first) or reached a final state
 * (recorded); a transient error (ERR_IO, ERR_TIMEOUT, ERR_CLOSED,
 * ERR_SEALED, ERR_BUSY, ERR_LIMIT: the task stays as recorded, the session
 * ends with 2004); ERR_WRONGSTATE when the record changed under it (e.g.
 * cancelled by a state sync); anything else is an internal error.
 */
struct flow_kind {
	const char *name;
	int  (*run)(struct flow_step *fs, struct flow_task *t);
	const char *(*step_name)(uint32_t step);
	/* Ends the task FAILED (err, msg) after run returned an error that is
	 * not transient, releasing its SSD as the kind's own failures do. 0,
	 * or the store's error (ERR_WRONGSTATE: no longer live). Required. */
	int  (*fail)(struct flow_step *fs, struct flow_task *t, int err,
	    const char *msg);
};
extern const struct flow_kind flow_kind_ssd_create, flow_kind_ssd_lock,
    flow_kind_ssd_unlock, flow_kind_ssd_delete, flow_kind_key_replace;
const struct flow_kind *flow_kind_get(const char *name);

/* ---- engine.c: tasks ------------------------------------------------------ */

void flow_task_init(struct flow_task *t);
void flow_task_cleanup(struct flow_task *t);
int  flow_task_load(struct flow *f, const char *id, struct flow_task *t) WUR;
/* Fills a new task record (PENDING, step 0, fresh id, ctx, a history
 * entry) and adds it to b (require absent). ctx is borrowed. b NULL: the
 * task stays in memory (t->fresh) until its first save creates it. */
int  flow_task_new(struct flow *f, struct flow_task *t, const char *se_id,
	    const char *kind, json_t *ctx, const char *note,
	    struct store_batch *b) WUR;
/* Saves t as the caller changed it (state, step, last_err/last_error,
 * ctx) with one history entry (note), plus the ops already in b, in one
 * durable batch, on condition that the stored task is still what t was
 * read as. b may be NULL. On success t holds what is stored; on failure
 * t is stale (reload it). */
int  flow_task_save(struct flow *f, struct flow_task *t,
	    struct store_batch *b, const char *note) WUR;
/* Adds that save of t to b without committing (for a caller's larger
 * batch); nraw gets the record's new encoding. */
int  flow_task_stage(struct flow_task *t, struct store_batch *b,
	    const char *note, struct buf *nraw) WUR;
/* Sets state/step/last error (err 0: cleared) in t, for a save. */
void flow_task_set(struct flow_task *t, const char *state, uint32_t step,
	    int err, const char *fmt, ...) __attribute__((format(printf, 5, 6)));
int  flow_task_is_live(const struct store_task *r);
/* The live tasks (PENDING, RUNNING) of an SE in creation order, as an
 * array of task ids. */
int  flow_tasks_live(struct flow *f, const char *se_id, json_t **ids) WUR;
const char *flow_ctx_str(const struct flow_task *t, const char *key);
int  flow_ctx_int(const struct flow_task *t, const char *key, int def);

/* Test-only crash points (README.md): _exit when TSMD_TEST_CRASH names p. */
void flow_crash_point(struct flow *f, const char *p);

/* Adds a batch's APDU (bytes) to fs->out as upper-case hex. */
int  flow_out_add(struct flow_step *fs, const uint8_t *p, size_t n) WUR;

/* ---- engine.c: agent sessions ------------------------------------------- */

/* Runs the SE's tasks for one agent request (resp NULL on the session's
 * first request): fills fs->out with the next batch, or leaves it empty
 * when nothing is left. Returns 0, a transient error or ERR_INTERNAL. */
int  flow_engine_run(struct flow_step *fs) WUR;
/* Frees the in-memory run state (SCP03 sessions, key-set handles). */
void flow_run_clear(struct flow_sess *s);
/* Ends the run's task but keeps its kmsd objects (struct flow_run). */
void flow_run_forget(struct flow_sess *s);
/* The session's own kmsd connection for SCP03 (opened on first use). */
int  flow_sess_gp(struct flow *f, struct flow_sess *s, const char *sock) WUR;

/* ---- ssd.c: SSD helpers shared by the kinds and the API -------------------- */

/* 1 when the SSD is on the card as far as our records know. */
int  flow_ssd_exists(const struct store_ssd *r);
/* Appends the CAS update old -> new of an SSD record to b. */
int  flow_ssd_update(struct store_batch *b, const struct store_ssd *old,
	    const struct store_ssd *nw) WUR;
/* The SEI-TSM peer of an SE (its record's peer, else the only one
 * configured); NULL when none fits. */
const struct tsm_peer *flow_se_peer(struct flow *f,
	    const struct tsm_config *cfg, const char *se_id,
	    const char *want);

/* ---- keyrepl.c ------------------------------------------------------------ */

/* The highest key version of the SSD AID's master sets, 0 when none. */
uint8_t flow_master_kvn(struct flow *f, const char *sd_aid);

/* ---- statesync.c --------------------------------------------------------- */

/*
 * The end of an SSD (FLOWS.md "State sync", "Delete"): into b go the
 * archive of each of its key sets (removed from the live key-set db), the
 * cancellation of its live tasks other than `except`, its applications
 * marked `app_state`, and a notification per affected provider (id_base
 * makes their ids). ssd is changed to state/prev_state with no key
 * versions or task. *notified counts the notifications added.
 */
int  flow_ssd_end(struct flow *f, struct store_batch *b, struct store_ssd *ssd,
	    const char *state, const char *prev_state, const char *app_state,
	    const char *event, const char *reason, const char *except,
	    const char *id_base, uint64_t now, int *notified) WUR;
/* Moves one key set of the SSD to the archive (reason) in b. */
int  flow_keyset_archive(struct flow *f, struct store_batch *b,
	    const struct store_keyset *ks, const char *reason,
	    uint64_t now) WUR;

/* ---- notify.c -------------------------------------------------------------- */

/* Queues a notification document (PENDING) for provider in b. */
int  flow_notify_add(struct store_batch *b, const char *id,
	    const char *provider, json_t *payload, uint64_t now) WUR;
/* Wakes the worker (notifications to deliver). */
void flow_kick(struct flow *f);
/* The worker: session expiry, deliveries when due, archive purge. */
void *flow_worker_main(void *arg);
/* A reference to the newest configuration (for the worker). */
struct tsm_config *flow_cfg_get(struct flow *f);
void flow_cfg_note(struct flow *f, const struct tsm_config *c);

/* ---- agent.c / api.c routes ---------------------------------------------- */

int  flow_agent_routes(struct http_router *r, struct flow *f) WUR;
int  flow_api_routes(struct http_router *r, struct flow *f) WUR;
/* Ends sessions idle past the timeout. */
void flow_sessions_reap(struct flow *f, unsigned timeout_s);
void flow_sess_free(struct flow *f, struct flow_sess *s);

/* ---- ids and small helpers --------------------------------------------- */

/* "<prefix><12 hex ms><4 hex seq>-<8 hex random>": sorts by creation. */
void flow_id_make(struct flow *f, const char *prefix, char *out, size_t cap);
uint64_t flow_now(void);	/* unix seconds */

#endif
