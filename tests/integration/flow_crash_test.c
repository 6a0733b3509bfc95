/*
 * flow_crash_test.c - the crash matrix: kill -9 of tsmd (named steps, and
 * between the agent's requests) or kmsd at every step of a key replacement
 * and of an SSD creation; afterwards exactly one held key set opens the
 * SSD, the next sessions settle it, the record names that one.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/tap.h"
#include "tests/integration/flow_fixture.h"

#define SEID "0011223344556699"
#define K1   "A000000999300001"

static struct ff F;
static struct vse *card;

/* ---- where to kill ------------------------------------------------------------ */

enum who { NONE = 0, TSMD_ENV, TSMD_BEFORE, TSMD_AFTER, KMSD_AFTER };

struct kill {
	enum who    who;
	const char *point;	/* TSMD_ENV: the crash point */
	int         batch;	/* the others: which batch */
	const char *what;
};

static int
kill_before(void *arg, int batch, json_t *apdus)
{
	const struct kill *k = arg;

	(void)apdus;
	if (k->who == TSMD_BEFORE && batch == k->batch) {
		ff_tsmd_stop(&F, SIGKILL);
		return 1;
	}
	return 0;
}

static int
kill_after(void *arg, int batch, json_t *apdus, json_t *resps)
{
	const struct kill *k = arg;

	(void)apdus;
	(void)resps;
	if (batch != k->batch)
		return 0;
	if (k->who == TSMD_AFTER) {
		ff_tsmd_stop(&F, SIGKILL);
		return 1;
	}
	if (k->who == KMSD_AFTER) {
		kmsenv_stop(&F.E, 1);
		return 0;	/* the answers go to tsmd, which needs kmsd */
	}
	return 0;
}

/* Runs one session with the kill armed; restarts what died. */
static struct ff_sess
session_with_kill(const struct kill *k)
{
	struct ff_hooks h = { kill_before, kill_after, (void *)k };
	struct ff_sess s;

	if (k->who == TSMD_ENV) {
		ff_tsmd_stop(&F, SIGTERM);
		ff_tsmd_start(&F, k->point);
	}
	s = ff_session(&F, card, &h);
	if (k->who == TSMD_ENV) {
		int st = ff_tsmd_wait_exit(&F);

		ok(st == 70, "%s: tsmd exited at the crash point (%d)", k->what,
		    st);
	}
	if (F.tsmd == 0)
		ff_tsmd_start(&F, NULL);
	if (k->who == KMSD_AFTER) {
		ok(s.http == 503 && s.code == 2004, "%s: tsmd answered 503, 2004 "
		    "(kmsd gone): the task stays", k->what);
		if (kmsenv_start(&F.E, NULL) != 0)
			bail("kmsd restart (%s)", F.E.log);
	}
	return s;
}

/* Sessions until nothing is left for the SE (at most 10; a session that
 * could not finish - kmsd still reconnecting - is retried after 300 ms). */
static int
settle(void)
{
	struct ff_sess s;
	int i;

	for (i = 0; i < 10; i++) {
		s = ff_session(&F, card, NULL);
		if (s.done && s.batches == 0) {
			ff_sess_clear(&s);
			return 1;
		}
		if (!s.done) {
			diag("  session: HTTP %ld resultCode %d: %s", s.http, s.code,
			    s.msg);
			usleep(300000);
		}
		ff_sess_clear(&s);
	}
	return 0;
}

static void
keyrepl_point(const struct kill *k)
{
	struct ff_sess s;
	struct store_ssd r;
	json_t *o = NULL;
	char path[200];
	uint8_t which = 0, w2 = 0;
	int n;

	snprintf(path, sizeof(path), "/api/v1/ses/%s/ssds/%s/rotate-keys", SEID,
	    K1);
	if (ff_http(&F, "POST", path, NULL, F.admin, &o) != 202)
		bail("%s: rotate-keys: %s", k->what, js(o, "message"));
	json_decref(o);
	s = session_with_kill(k);
	ff_sess_clear(&s);
	n = ff_count_opening(&F, card, SEID, K1, &which);
	ff_ssd(&F, SEID, K1, &r);
	ok(n == 1, "%s: exactly one held key set opens the SSD (KVN %02X; "
	    "record: active %02X, pending %02X)", k->what, which, r.kvn_active,
	    r.kvn_pending);
	ok(settle(), "%s: the next sessions settle it", k->what);
	ff_ssd(&F, SEID, K1, &r);
	ok(ff_count_opening(&F, card, SEID, K1, &w2) == 1 && r.kvn_pending == 0 &&
	    r.kvn_active == w2 && strcmp(r.state, "PERSONALIZED") == 0,
	    "%s: the record names the set that opens it: KVN %02X, nothing "
	    "pending", k->what, r.kvn_active);
	ok(ff_store_problems(&F) == 0, "%s: store check clean", k->what);
}

static void
test_keyrepl_matrix(void)
{
	static const struct kill points[] = {
		{ TSMD_ENV, "keyrepl.generated", 0, "tsmd killed: new set made in "
		  "kmsd, not recorded" },
		{ TSMD_ENV, "keyrepl.pending", 0, "tsmd killed: pending recorded, "
		  "PUT KEY not sent" },
		{ TSMD_ENV, "keyrepl.confirming", 0, "tsmd killed: card took PUT "
		  "KEY, confirmation not recorded" },
		{ TSMD_ENV, "keyrepl.confirmed", 0, "tsmd killed: new set active, "
		  "VERIFY not sent" },
		{ TSMD_BEFORE, NULL, 1, "tsmd killed: OPEN batch out, not run" },
		{ TSMD_AFTER, NULL, 1, "tsmd killed: OPEN ran on the card" },
		{ TSMD_BEFORE, NULL, 2, "tsmd killed: PUT KEY out, not run" },
		{ TSMD_AFTER, NULL, 2, "tsmd killed: PUT KEY ran on the card" },
		{ TSMD_BEFORE, NULL, 3, "tsmd killed: VERIFY out, not run" },
		{ TSMD_AFTER, NULL, 3, "tsmd killed: VERIFY ran on the card" },
		{ KMSD_AFTER, NULL, 1, "kmsd killed: OPEN ran, cryptogram unchecked" },
		{ KMSD_AFTER, NULL, 2, "kmsd killed: PUT KEY ran, answer unchecked" },
		{ KMSD_AFTER, NULL, 3, "kmsd killed: VERIFY ran, unchecked" },
	};
	struct ff_sess s;
	json_t *o = NULL;
	char path[200];
	size_t i;

	/* The SSD, its keys replaced once. */
	snprintf(path, sizeof(path), "/api/v1/ses/%s/ssds", SEID);
	if (ff_http(&F, "POST", path, "{\"sdAid\":\"" K1 "\",\"mode\":\"AMSD\"}",
	    F.admin, &o) != 202)
		bail("create");
	json_decref(o);
	s = ff_session(&F, card, NULL);
	ff_sess_clear(&s);
	(void)ff_wait_state(&F, SEID, K1, "KEYS_RECEIVED");
	ok(settle(), "K1 created and its initial keys replaced");
	for (i = 0; i < ARRAY_LEN(points); i++)
		keyrepl_point(&points[i]);
}

/* ---- SSD creation --------------------------------------------------------------- */

/* The key sync arrived (KEYS_RECEIVED, or already replaced). */
static int
wait_keys(const char *aid)
{
	struct store_ssd r;
	int i;

	for (i = 0; i < 200; i++) {
		if (ff_ssd(&F, SEID, aid, &r) == 0 && (strcmp(r.state,
		    "KEYS_RECEIVED") == 0 || strcmp(r.state, "PERSONALIZED") == 0))
			return 1;
		usleep(50000);
	}
	return 0;
}

static int
on_card(const char *aid)
{
	struct vse_entry_info e;
	struct buf a;
	int found;

	buf_init(&a);
	hexb(aid, &a);
	found = vse_entry_get(card, a.p, a.len, &e) == 0;
	buf_free(&a);
	return found;
}

static const char *
sim_state_of(const char *aid, char *buf, size_t cap)
{
	json_t *root = sim_state(&F.sim);

	snprintf(buf, cap, "%s", js(sim_ssd(root, SEID, aid), "state"));
	json_decref(root);
	return buf;
}

struct cpoint {
	struct kill k;
	const char *aid;
	int         outcome;	/* 0: created; 1: FAILED (SEI task orphaned:
				 * again after its TTL); 2: FAILED, the card
				 * has it (delete, then create again) */
};

static void
post_create(const char *aid)
{
	json_t *o = NULL;
	char path[200], body[200];

	snprintf(path, sizeof(path), "/api/v1/ses/%s/ssds", SEID);
	snprintf(body, sizeof(body), "{\"sdAid\":\"%s\",\"mode\":\"AMSD\"}", aid);
	if (ff_http(&F, "POST", path, body, F.admin, &o) != 202)
		bail("create %s: %s", aid, js(o, "message"));
	json_decref(o);
}

static void
create_point(const struct cpoint *p)
{
	struct ff_sess s;
	struct store_ssd r;
	json_t *o = NULL;
	char path[200], ss[32];
	uint8_t which;

	post_create(p->aid);
	s = session_with_kill(&p->k);
	ff_sess_clear(&s);
	ok(settle(), "%s: the next sessions settle the create task", p->k.what);
	ff_ssd(&F, SEID, p->aid, &r);
	if (p->outcome == 0) {
		ok(wait_keys(p->aid), "%s: created, keys received", p->k.what);
	} else {
		ok(strcmp(r.state, "CREATE_FAILED") == 0, "%s: CREATE_FAILED "
		    "(%s)", p->k.what, r.state);
		if (p->outcome == 1) {
			ok(!on_card(p->aid), "%s: nothing on the card", p->k.what);
			sleep(4);	/* seisim --task-ttl 3: the orphan ends */
		} else {
			ok(on_card(p->aid), "%s: the card has it (its answers were "
			    "lost): delete it through the SEI-TSM", p->k.what);
			snprintf(path, sizeof(path), "/api/v1/ses/%s/ssds/%s/delete",
			    SEID, p->aid);
			ok(ff_http(&F, "POST", path, NULL, F.admin, &o) == 202,
			    "%s: delete queued", p->k.what);
			json_decref(o);
			ok(settle() && !on_card(p->aid) && ff_wait_state(&F,
			    SEID, p->aid, "DELETED"), "%s: deleted", p->k.what);
		}
		post_create(p->aid);
		ok(settle() && wait_keys(p->aid), "%s: created again", p->k.what);
	}
	ok(settle(), "%s: initial keys replaced", p->k.what);
	ff_ssd(&F, SEID, p->aid, &r);
	ok(strcmp(r.state, "PERSONALIZED") == 0 && on_card(p->aid) &&
	    strcmp(sim_state_of(p->aid, ss, sizeof(ss)), "CREATED") == 0 &&
	    ff_count_opening(&F, card, SEID, p->aid, &which) == 1 &&
	    which == r.kvn_active && r.kvn_pending == 0, "%s: agree: card, "
	    "simulator (%s) and tsmd (%s, KVN %02X) ", p->k.what, ss, r.state,
	    r.kvn_active);
	ok(ff_store_problems(&F) == 0, "%s: store check clean", p->k.what);
}

static void
test_create_matrix(void)
{
	static const struct cpoint points[] = {
		{ { TSMD_ENV, "relay.sei_call", 0, "create: tsmd killed before "
		    "9.1" }, "A000000999300011", 0 },
		{ { TSMD_ENV, "relay.manage_answered", 0, "create: tsmd killed "
		    "with the 9.1 answer unrecorded" }, "A000000999300012", 1 },
		{ { TSMD_ENV, "relay.resp_recorded", 0, "create: tsmd killed with "
		    "a respList recorded, before 9.2" }, "A000000999300013", 0 },
		{ { TSMD_ENV, "relay.instructions_answered", 0, "create: tsmd "
		    "killed with a 9.2 batch unrecorded" }, "A000000999300014", 0 },
		{ { TSMD_ENV, "relay.done_answered", 0, "create: tsmd killed with "
		    "the SEI's end unrecorded" }, "A000000999300015", 0 },
		{ { TSMD_BEFORE, NULL, 1, "create: tsmd killed, probe out" },
		  "A000000999300016", 0 },
		{ { TSMD_BEFORE, NULL, 2, "create: tsmd killed, SEI batch 1 out" },
		  "A000000999300017", 0 },
		{ { TSMD_AFTER, NULL, 2, "create: tsmd killed, SEI batch 1 ran" },
		  "A000000999300018", 0 },
		{ { TSMD_AFTER, NULL, 3, "create: tsmd killed, SEI batch 2 ran" },
		  "A000000999300019", 2 },
	};
	size_t i;

	for (i = 0; i < ARRAY_LEN(points); i++)
		create_point(&points[i]);
}

/*
 * An internal error in a task (TSMD_TEST_CRASH=internal:KIND): the task
 * FAILED, and its SSD released as the kind's own failures leave it - not
 * held by the dead task: a create ends CREATE_FAILED and can be made
 * again; a key replacement leaves the received keys for the next one.
 */
static void
test_internal_error(void)
{
	static const char aid[] = "A00000099930001A";
	struct store_ssd r;
	struct ff_sess s;
	json_t *o = NULL;
	char path[200], body[200], task[80] = "", st[32];
	long code;

	ff_tsmd_stop(&F, SIGTERM);
	ff_tsmd_start(&F, "internal:SSD_CREATE");
	snprintf(path, sizeof(path), "/api/v1/ses/%s/ssds", SEID);
	snprintf(body, sizeof(body), "{\"sdAid\":\"%s\",\"mode\":\"AMSD\"}", aid);
	if (ff_http(&F, "POST", path, body, F.admin, &o) != 202)
		bail("create %s: %s", aid, js(o, "message"));
	snprintf(task, sizeof(task), "%s", js(o, "taskId"));
	json_decref(o);
	s = ff_session(&F, card, NULL);
	ff_sess_clear(&s);
	ok(strcmp(ff_task_state(&F, task, st, sizeof(st)), "FAILED") == 0,
	    "internal error in SSD_CREATE: the task FAILED (%s)", st);
	ok(ff_ssd(&F, SEID, aid, &r) == 0 && strcmp(r.state, "CREATE_FAILED") ==
	    0 && r.task_id[0] == '\0', "... the SSD CREATE_FAILED and held by "
	    "no task (%s, task '%s')", r.state, r.task_id);
	ff_tsmd_stop(&F, SIGTERM);
	ff_tsmd_start(&F, "internal:KEY_REPLACE");
	code = ff_http(&F, "POST", path, body, F.admin, &o);
	json_decref(o);
	ok(code == 202 && settle() && wait_keys(aid), "... created again "
	    "(%ld), keys received", code);
	ok(ff_ssd(&F, SEID, aid, &r) == 0 && strcmp(r.state, "KEYS_RECEIVED") ==
	    0 && r.task_id[0] == '\0', "internal error in KEY_REPLACE: the SSD "
	    "keeps its received keys, held by no task (%s, task '%s')", r.state,
	    r.task_id);
	ff_tsmd_stop(&F, SIGTERM);
	ff_tsmd_start(&F, NULL);
	ok(settle() && ff_ssd(&F, SEID, aid, &r) == 0 &&
	    strcmp(r.state, "PERSONALIZED") == 0, "... and without the fault the "
	    "next sessions replace the keys (%s)", r.state);
	ok(ff_store_problems(&F) == 0, "internal errors: store check clean");
}

int
main(void)
{
	static const char *const sim_args[] = { "--task-ttl", "3", NULL };
	char path[700];

	log_init("flow_crash_test", LOG_ERR);
	ff_setup(&F, "\"flows\": {\"seiTimeoutMs\": 3000}", sim_args);
	snprintf(path, sizeof(path), "%s/card.json", F.base);
	card = demo_card(path, SEID);

	test_keyrepl_matrix();
	test_create_matrix();
	test_internal_error();

	vse_free(card);
	ff_teardown(&F, tap_failed != 0);
	return done_testing();
}
