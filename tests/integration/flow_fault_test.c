/*
 * flow_fault_test.c - bad input and faults around the flows (real kmsd,
 * tsmd, seisim; the test is the agent): malformed and misdirected agent
 * bodies, busy SE, expiry; card refusals mid-batch; PUT KEY answers with
 * wrong KCVs or R-MAC; SEI-TSM 9999, bad signature, timeout.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/tap.h"
#include "tests/integration/flow_fixture.h"

#define SEID  "0011223344556688"
#define OTHER "00112233445566AA"
#define A1    "A000000999200001"	/* agent API faults, then normal */
#define A2    "A000000999200002"	/* card refuses INSTALL mid-batch */
#define A3    "A000000999200003"	/* PUT KEY refused mid-batch */
#define A4    "A000000999200004"	/* wrong KCVs at SL 03 (i = 10) */
#define A5    "A000000999200005"	/* broken R-MAC at SL 33 */
#define A6    "A000000999200006"	/* SEI faults */
#define A7    "A000000999200007"	/* answers too large to record */
#define A8    "A000000999200008"	/* INITIALIZE UPDATE offering less */

static struct ff F;
static struct vse *card;

static long
admin_post(const char *path, const char *body, json_t **o)
{
	return ff_http(&F, "POST", path, body, F.admin, o);
}

static void
queue_create(const char *aid, const char *scp)
{
	char path[200], body[200];
	json_t *o = NULL;

	snprintf(path, sizeof(path), "/api/v1/ses/%s/ssds", SEID);
	snprintf(body, sizeof(body), "{\"sdAid\":\"%s\",\"mode\":\"AMSD\","
	    "\"scpConfig\":\"%s\"}", aid, scp);
	if (admin_post(path, body, &o) != 202)
		bail("create %s: %s", aid, js(o, "message"));
	json_decref(o);
}

static int
outcome(struct ff_sess *s, const char *kind, const char *state,
    const char *err_part)
{
	json_t *t;
	size_t i;

	json_array_foreach(s->tasks, i, t)
		if (strcmp(js(t, "kind"), kind) == 0 &&
		    strcmp(js(t, "state"), state) == 0 && (err_part == NULL ||
		    strstr(js(t, "error"), err_part) != NULL))
			return 1;
	return 0;
}

static void
show_tasks(struct ff_sess *s)
{
	json_t *t;
	size_t i;

	json_array_foreach(s->tasks, i, t)
		diag("  task %s %s: %s", js(t, "kind"), js(t, "state"), js(t, "error"));
}

/* Waits for the key sync of aid (KEYS_RECEIVED). */
static int
wait_keys(const char *aid)
{
	return ff_wait_state(&F, SEID, aid, "KEYS_RECEIVED");
}

/* Raw agent calls. */
static long
agent_open(const char *body, json_t **o)
{
	return ff_http(&F, "POST", "/api/v1/agent/sessions", body, NULL, o);
}

static long
agent_post(const char *sid, const char *body, json_t **o)
{
	char path[200];

	snprintf(path, sizeof(path), "/api/v1/agent/sessions/%s", sid);
	return ff_http(&F, "POST", path, body, NULL, o);
}

static int
rc_of(json_t *o)
{
	json_t *c = json_object_get(o, "resultCode");

	return json_is_integer(c) ? (int)json_integer_value(c) : -1;
}

/* ---- agent API input ------------------------------------------------------------ */

static void
test_agent_input(void)
{
	/* Each refused, ending its session: the next one opens another. */
	static const struct {
		const char *body;
		long        http;
		int         rc;
		const char *what;
	} bad[] = {
		{ "{\"respList\":[]}", 400, 2003,
		    "no answer to a batch of one -> 2003" },
		{ "{\"respList\":[\"6Z82\"]}", 400, 2003, "garbage hex -> 2003" },
		{ "{\"respList\":[\"90\"]}", 400, 2003,
		    "a 1-byte answer (no SW) -> 2003" },
		{ "{\"respList\":\"9000\"}", 400, 2000,
		    "respList not an array -> 400, 2000" },
	};
	json_t *o = NULL;
	char sid[64];
	struct ff_sess s;
	size_t i;
	long code;

	code = agent_open("{\"seId\":", &o);
	ok(code == 400 && rc_of(o) == 2000, "open: not JSON -> 400, 2000");
	json_decref(o);
	code = agent_open("{}", &o);
	ok(code == 400 && rc_of(o) == 2000 && strstr(js(o, "resultMessage"),
	    "seId") != NULL, "open: no seId -> 400, 2000 naming it");
	json_decref(o);
	code = agent_open("{\"seId\":\"00112233XY\"}", &o);
	ok(code == 400 && rc_of(o) == 2000, "open: seId not hex -> 400");
	json_decref(o);
	code = agent_open("{\"seId\":\"0011\"}", &o);
	ok(code == 400 && rc_of(o) == 2000, "open: seId of 2 bytes -> 400");
	json_decref(o);
	code = agent_open("{\"seId\":\"" SEID "\",\"x\":1}", &o);
	ok(code == 400 && rc_of(o) == 2000, "open: unknown field -> 400");
	json_decref(o);
	code = agent_post("0123456789abcdef0123456789abcdef", "{\"respList\":[]}",
	    &o);
	ok(code == 404 && rc_of(o) == 2002, "respList for an unknown session -> "
	    "404, 2002");
	json_decref(o);
	code = agent_post("xyz", "{\"respList\":[]}", &o);
	ok(code == 404 && rc_of(o) == 2002, "a malformed session id -> 404");
	json_decref(o);

	/* A task with a one-APDU batch: the create probe. */
	queue_create(A1, "0370");
	code = agent_open("{\"seId\":\"" SEID "\"}", &o);
	snprintf(sid, sizeof(sid), "%s", js(o, "sessionId"));
	ok(code == 200 && rc_of(o) == 0 && json_array_size(json_object_get(o,
	    "apduList")) == 1, "open: the probe batch (SELECT)");
	json_decref(o);
	code = agent_open("{\"seId\":\"" SEID "\"}", &o);
	ok(code == 409 && rc_of(o) == 2001 && strstr(js(o, "resultMessage"),
	    "busy") != NULL, "a second session for the same SE -> 409, 2001 busy");
	json_decref(o);
	code = agent_open("{\"seId\":\"" OTHER "\"}", &o);
	ok(code == 200 && json_is_true(json_object_get(o, "done")), "another SE "
	    "meanwhile: its own session (done, nothing pending)");
	json_decref(o);
	code = agent_post(sid, "{\"respList\":[\"6A82\"],\"seId\":\"" OTHER "\"}",
	    &o);
	ok(code == 409 && rc_of(o) == 2001, "answers for another SE's session -> "
	    "409, refused, the session goes on");
	json_decref(o);
	code = agent_post(sid, "{\"respList\":[\"6A82\",\"9000\"]}", &o);
	ok(code == 400 && rc_of(o) == 2003, "more answers than APDUs -> 400, "
	    "2003");
	json_decref(o);
	code = agent_post(sid, "{\"respList\":[\"6A82\"]}", &o);
	ok(code == 404 && rc_of(o) == 2002, "...and that session is over (404)");
	json_decref(o);

	/* The task stays as recorded: the next session sends the probe
	 * again. Too few: */
	code = agent_open("{\"seId\":\"" SEID "\"}", &o);
	snprintf(sid, sizeof(sid), "%s", js(o, "sessionId"));
	ok(code == 200 && json_array_size(json_object_get(o, "apduList")) == 1,
	    "next session: the probe again");
	json_decref(o);
	for (i = 0; i < ARRAY_LEN(bad); i++) {
		if (i > 0) {
			agent_open("{\"seId\":\"" SEID "\"}", &o);
			snprintf(sid, sizeof(sid), "%s", js(o, "sessionId"));
			json_decref(o);
		}
		code = agent_post(sid, bad[i].body, &o);
		ok(code == bad[i].http && rc_of(o) == bad[i].rc, "%s",
		    bad[i].what);
		json_decref(o);
	}

	/* Expiry (agent.sessionTimeoutS 2 here). */
	agent_open("{\"seId\":\"" SEID "\"}", &o);
	snprintf(sid, sizeof(sid), "%s", js(o, "sessionId"));
	json_decref(o);
	sleep(3);
	code = agent_post(sid, "{\"respList\":[\"6A82\"]}", &o);
	ok(code == 404 && rc_of(o) == 2002 && strstr(js(o, "resultMessage"),
	    "expired") != NULL, "an expired session -> 404, 2002 expired");
	json_decref(o);

	/* And the task, as recorded, goes through. */
	s = ff_session(&F, card, NULL);
	ok(s.done && outcome(&s, "SSD_CREATE", "DONE", NULL), "then a clean "
	    "session creates the SSD (the probe taken up again)");
	ff_sess_clear(&s);
	ok(wait_keys(A1), "key sync");
	s = ff_session(&F, card, NULL);
	ok(s.done && outcome(&s, "KEY_REPLACE", "DONE", NULL), "and the next "
	    "replaces its keys");
	ff_sess_clear(&s);
}

/* ---- a card that refuses a command in the middle of a batch ---------------------- */

struct corrupt {
	int batch;		/* which batch */
	int apdu;		/* which APDU of it: flip its last byte before */
	int resp;		/* which answer: change after (-1 none) */
	const char *how;	/* "kcv": flip a KCV byte; "rmac": flip the last
				 * MAC byte; "i": INITIALIZE UPDATE's i = 10 */
};

static int
corrupt_before(void *arg, int batch, json_t *apdus)
{
	struct corrupt *c = arg;
	char h[600];
	size_t n;

	if (batch != c->batch || c->apdu < 0)
		return 0;
	snprintf(h, sizeof(h), "%s", json_string_value(json_array_get(apdus,
	    (size_t)c->apdu)));
	n = strlen(h);
	/* The byte before Le: inside the C-MAC. */
	if (n >= 6)
		h[n - 3] = h[n - 3] == '0' ? '1' : '0';
	json_array_set_new(apdus, (size_t)c->apdu, json_string(h));
	return 0;
}

static int
corrupt_after(void *arg, int batch, json_t *apdus, json_t *resps)
{
	struct corrupt *c = arg;
	char h[600];
	size_t n;

	(void)apdus;
	if (batch != c->batch || c->resp < 0 || (size_t)c->resp >=
	    json_array_size(resps))
		return 0;
	snprintf(h, sizeof(h), "%s", json_string_value(json_array_get(resps,
	    (size_t)c->resp)));
	n = strlen(h);
	if (strcmp(c->how, "i") == 0 && n >= 30) {
		h[24] = '1';				/* key info's i byte */
		h[25] = '0';
	} else if (strcmp(c->how, "kcv") == 0 && n >= 6)
		h[2] = h[2] == '0' ? '1' : '0';		/* KCV1's first nibble */
	else if (n >= 6)
		h[n - 5] = h[n - 5] == '0' ? '1' : '0';	/* last MAC byte */
	json_array_set_new(resps, (size_t)c->resp, json_string(h));
	return 0;
}

static void
test_card_refuses(void)
{
	struct corrupt c;
	struct ff_hooks h = { corrupt_before, corrupt_after, &c };
	struct ff_sess s;
	struct store_ssd r;
	struct vse_entry_info e;
	struct buf a;
	uint8_t which;
	json_t *root;
	int found;

	/* SEI relay: batch 3 is EA + INSTALL + ...: the INSTALL's C-MAC is
	 * broken, the card answers 6982 and the agent stops there. */
	queue_create(A2, "0370");
	memset(&c, 0, sizeof(c));
	c.batch = 3;
	c.apdu = 1;
	c.resp = -1;
	s = ff_session(&F, card, &h);
	ok(s.done && outcome(&s, "SSD_CREATE", "FAILED", "refused"), "create: the "
	    "card refused INSTALL mid-batch: the SEI-TSM ends its task, the task "
	    "FAILED with the SEI-TSM's reason");
	show_tasks(&s);
	ff_sess_clear(&s);
	buf_init(&a);
	hexb(A2, &a);
	found = vse_entry_get(card, a.p, a.len, &e) == 0;
	buf_free(&a);
	root = sim_state(&F.sim);
	ok(ff_ssd(&F, SEID, A2, &r) == 0 && strcmp(r.state, "CREATE_FAILED") == 0 &&
	    !found && sim_ssd(root, SEID, A2) == NULL, "agree: CREATE_FAILED, not "
	    "on the card, unknown to the simulator");
	json_decref(root);
	queue_create(A2, "0370");
	s = ff_session(&F, card, NULL);
	ok(s.done && outcome(&s, "SSD_CREATE", "DONE", NULL), "created again "
	    "from CREATE_FAILED: DONE");
	ff_sess_clear(&s);
	/* Its key replacement, so that the next sessions are about A3. */
	ok(wait_keys(A2), "A2: keys received");
	s = ff_session(&F, card, NULL);
	ok(s.done && outcome(&s, "KEY_REPLACE", "DONE", NULL), "A2: keys "
	    "replaced");
	ff_sess_clear(&s);

	/* PUT KEY broken on its way: the card refuses it (6982). */
	queue_create(A3, "0370");
	s = ff_session(&F, card, NULL);
	ff_sess_clear(&s);
	ok(wait_keys(A3), "A3 created, keys received");
	c.batch = 2;
	c.apdu = 1;
	s = ff_session(&F, card, &h);
	ok(s.done && outcome(&s, "KEY_REPLACE", "FAILED", "not activated"),
	    "PUT KEY refused by the card (6982): FAILED, the new keys not "
	    "activated");
	show_tasks(&s);
	ff_sess_clear(&s);
	ok(ff_ssd(&F, SEID, A3, &r) == 0 && r.kvn_active == 0x30 &&
	    r.kvn_pending == 0x31, "the record keeps both versions (30 active, 31 "
	    "pending): uncertain");
	ok(ff_count_opening(&F, card, SEID, A3, &which) == 1 && which == 0x30,
	    "the card opens with KVN 30 only");
	s = ff_session(&F, card, NULL);
	ok(s.done && outcome(&s, "KEY_REPLACE", "DONE", NULL) && s.batches == 4,
	    "next session: INITIALIZE UPDATE 31 (6A88), 30 (opens), then the "
	    "replacement again: DONE (%d batches)", s.batches);
	ff_sess_clear(&s);
	ok(ff_ssd(&F, SEID, A3, &r) == 0 && r.kvn_active == 0x31 &&
	    r.kvn_pending == 0 && ff_count_opening(&F, card, SEID, A3, &which) ==
	    1 && which == 0x31, "KVN 31 active, and it is the one that opens");
}

static void
test_bad_putkey_answer(const char *aid, const char *scp, const char *how,
    const char *what)
{
	struct corrupt c;
	struct ff_hooks h = { corrupt_before, corrupt_after, &c };
	struct ff_sess s;
	struct store_ssd r;
	uint8_t which;

	queue_create(aid, scp);
	s = ff_session(&F, card, NULL);
	ff_sess_clear(&s);
	ok(wait_keys(aid), "%s: created, keys received", what);
	memset(&c, 0, sizeof(c));
	c.batch = 2;
	c.apdu = -1;
	c.resp = 1;
	c.how = how;
	s = ff_session(&F, card, &h);
	ok(s.done && outcome(&s, "KEY_REPLACE", "FAILED", "not activated"),
	    "%s: the PUT KEY answer is refused, the new keys not activated", what);
	show_tasks(&s);
	ff_sess_clear(&s);
	ok(ff_ssd(&F, SEID, aid, &r) == 0 && r.kvn_active == 0x30 &&
	    r.kvn_pending == 0x31 && strcmp(r.state, "KEYS_RECEIVED") == 0,
	    "%s: record: KVN 30 active, 31 pending (uncertain)", what);
	/* The card did take the keys: only a fresh cryptogram says so. */
	ok(ff_count_opening(&F, card, SEID, aid, &which) == 1 && which == 0x31,
	    "%s: the card holds 31 (the answer was damaged on its way back)",
	    what);
	s = ff_session(&F, card, NULL);
	ok(s.done && outcome(&s, "KEY_REPLACE", "DONE", "") && s.batches == 1,
	    "%s: next session: INITIALIZE UPDATE 31 verifies: DONE in one batch",
	    what);
	ff_sess_clear(&s);
	ok(ff_ssd(&F, SEID, aid, &r) == 0 && r.kvn_active == 0x31 &&
	    r.kvn_pending == 0 && strcmp(r.state, "PERSONALIZED") == 0,
	    "%s: KVN 31 active (proven by its cryptogram), PERSONALIZED", what);
	ok(ff_store_problems(&F) == 0, "%s: store check clean", what);

	/* The same on a rotation of tsmd's own keys: the next session only
	 * settles which set the card holds ("probe only"), no new rotation. */
	{
		json_t *o = NULL;
		char path[200];

		snprintf(path, sizeof(path), "/api/v1/ses/%s/ssds/%s/rotate-keys",
		    SEID, aid);
		if (admin_post(path, NULL, &o) != 202)
			bail("rotate");
		json_decref(o);
	}
	s = ff_session(&F, card, &h);
	ok(s.done && outcome(&s, "KEY_REPLACE", "FAILED", "not activated"),
	    "%s: rotation with its answer damaged: FAILED, not activated", what);
	ff_sess_clear(&s);
	ok(ff_ssd(&F, SEID, aid, &r) == 0 && r.kvn_active == 0x31 &&
	    r.kvn_pending == 0x32, "%s: 31 active, 32 pending", what);
	s = ff_session(&F, card, NULL);
	ok(s.done && s.batches == 1 && outcome(&s, "KEY_REPLACE", "DONE", NULL),
	    "%s: next session: one INITIALIZE UPDATE settles it (probe only)",
	    what);
	ff_sess_clear(&s);
	ok(ff_ssd(&F, SEID, aid, &r) == 0 && r.kvn_active == 0x32 &&
	    r.kvn_pending == 0 && ff_count_opening(&F, card, SEID, aid, &which) ==
	    1 && which == 0x32, "%s: KVN 32 active and the one that opens", what);
}

/* ---- SEI-TSM faults --------------------------------------------------------------- */

static void
sim_restart(const char *const *faults)
{
	fx_sim_stop(&F.sim);
	ff_sim_start(&F, faults);
}

static void
test_sei_faults(void)
{
	static const char *const f9999[] = { "--fault", "result-9999", NULL };
	static const char *const fsig[] = { "--fault", "bad-signature", NULL };
	static const char *const fslow[] = { "--fault", "timeout",
		"--fault-delay-ms", "2500", NULL };
	struct ff_sess s;
	struct store_ssd r;
	char st[32];
	json_t *o = NULL;
	char path[200], tid[80];

	sim_restart(f9999);
	queue_create(A6, "0370");
	s = ff_session(&F, card, NULL);
	ok(s.done && outcome(&s, "SSD_CREATE", "FAILED", "resultCode 9999"),
	    "SEI answers 9999: the task FAILED with the SEI-TSM's code");
	show_tasks(&s);
	ff_sess_clear(&s);
	ok(ff_ssd(&F, SEID, A6, &r) == 0 && strcmp(r.state, "CREATE_FAILED") == 0,
	    "SSD CREATE_FAILED");

	sim_restart(fsig);
	queue_create(A6, "0370");
	s = ff_session(&F, card, NULL);
	ok(s.done && outcome(&s, "SSD_CREATE", "FAILED", "rejected"),
	    "SEI answer with a bad signature: rejected, FAILED");
	show_tasks(&s);
	ff_sess_clear(&s);

	sim_restart(fslow);
	snprintf(path, sizeof(path), "/api/v1/ses/%s/ssds", SEID);
	admin_post(path, "{\"sdAid\":\"" A6 "\",\"mode\":\"AMSD\"}", &o);
	snprintf(tid, sizeof(tid), "%s", js(o, "taskId"));
	json_decref(o);
	s = ff_session(&F, card, NULL);
	ok(s.http == 503 && s.code == 2004 && strstr(s.msg, "resume") != NULL,
	    "SEI times out: 503, 2004, the task resumes later (%s)", s.msg);
	ff_sess_clear(&s);
	ok(strcmp(ff_task_state(&F, tid, st, sizeof(st)), "RUNNING") == 0,
	    "the task stays RUNNING at its step");
	sim_restart(NULL);
	s = ff_session(&F, card, NULL);
	ok(s.done && outcome(&s, "SSD_CREATE", "DONE", NULL), "the SEI-TSM back: "
	    "the next session calls again and creates the SSD");
	show_tasks(&s);
	ff_sess_clear(&s);
	ok(ff_store_problems(&F) == 0, "store check clean");
}

/* ---- an INITIALIZE UPDATE answer offering less than the SSD has ------------------- */

/* The card's i is outside its cryptogram: an answer on the way saying
 * i = 10 (no R-MAC) for an SSD made with i = 70 must not lower the PUT
 * KEY session's level; the keys are not replaced in that session. */
static void
test_iu_downgrade(void)
{
	struct corrupt c = { 1, -1, 1, "i" };
	struct ff_hooks h = { corrupt_before, corrupt_after, &c };
	struct ff_sess s;
	struct store_ssd r;
	uint8_t which;

	/* What earlier tests left: A6's keys arrive by key sync after its
	 * create; their replacement runs first. */
	ok(wait_keys(A6), "i downgrade: A6's keys are in");
	s = ff_session(&F, card, NULL);
	ff_sess_clear(&s);
	queue_create(A8, "0370");
	s = ff_session(&F, card, NULL);
	ff_sess_clear(&s);
	ok(wait_keys(A8), "i downgrade: created, keys received");
	s = ff_session(&F, card, &h);
	ok(!outcome(&s, "KEY_REPLACE", "DONE", NULL) && ff_ssd(&F, SEID, A8,
	    &r) == 0 && r.kvn_active == 0 && ff_count_opening(&F, card, SEID, A8,
	    &which) == 1 && which == 0x30, "INITIALIZE UPDATE answered with "
	    "i=10 for an i=70 SSD: no PUT KEY, the card keeps 30");
	ok(outcome(&s, "KEY_REPLACE", "FAILED", "i=10, the SSD was made with "
	    "i=70"), "and the task says why");
	show_tasks(&s);
	ff_sess_clear(&s);
	s = ff_session(&F, card, NULL);
	ok(s.done && outcome(&s, "KEY_REPLACE", "DONE", NULL), "an untouched "
	    "session then replaces the keys");
	ff_sess_clear(&s);
}

/* ---- answers too large to record ------------------------------------------------ */

/* A relayed batch answered with more bytes than a task context holds:
 * the task ends FAILED through the SSD's own ending (CREATE_FAILED, so a
 * new create may follow), not left CREATING behind a failed task. */
static void
test_huge_answers(void)
{
	json_t *o = NULL;
	struct store_ssd r;
	char sid[64], *body, *p;
	size_t n, i, big = 40000;	/* bytes of the first answer */
	long code;

	queue_create(A7, "0370");
	code = agent_open("{\"seId\":\"" SEID "\"}", &o);
	snprintf(sid, sizeof(sid), "%s", js(o, "sessionId"));
	ok(code == 200 && json_array_size(json_object_get(o, "apduList")) == 1,
	    "huge answers: the probe");
	json_decref(o);
	code = agent_post(sid, "{\"respList\":[\"6A82\"]}", &o);
	n = json_array_size(json_object_get(o, "apduList"));
	ok(code == 200 && n > 0, "the SEI-TSM's batch of %zu APDUs follows", n);
	json_decref(o);
	if ((body = malloc(2 * big + 16 * n + 64)) == NULL)
		bail("nomem");
	p = body + sprintf(body, "{\"respList\":[\"");
	memset(p, 'A', 2 * big);
	p += 2 * big;
	p += sprintf(p, "9000\"");
	for (i = 1; i < n; i++)
		p += sprintf(p, ",\"9000\"");
	sprintf(p, "]}");
	code = agent_post(sid, body, &o);
	free(body);
	json_decref(o);
	ok(ff_ssd(&F, SEID, A7, &r) == 0 && strcmp(r.state, "CREATE_FAILED") == 0,
	    "an answer of %zu bytes: the SSD is CREATE_FAILED (%s), not stuck "
	    "CREATING", big, r.state);
}

int
main(void)
{
	char path[700];

	log_init("flow_fault_test", LOG_ERR);
	ff_setup(&F, "\"agent\": {\"sessionTimeoutS\": 2}, \"flows\": "
	    "{\"seiTimeoutMs\": 1000}", NULL);
	snprintf(path, sizeof(path), "%s/card.json", F.base);
	card = demo_card(path, SEID);

	test_agent_input();
	test_card_refuses();
	test_bad_putkey_answer(A4, "0310", "kcv", "wrong KCVs, SL 03");
	test_bad_putkey_answer(A5, "0370", "rmac", "broken R-MAC, SL 33");
	test_sei_faults();
	test_iu_downgrade();
	test_huge_answers();

	vse_free(card);
	ff_teardown(&F, tap_failed != 0);
	return done_testing();
}
