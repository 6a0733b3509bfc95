/*
 * store_test.c - tsmd's store against real LMDB in a temp directory: typed
 * puts and gets, prefix iteration, conditional and poisoned batches, the
 * task index, nonces, idempotency records, purge, documents, the raw API,
 * read-only opening, schema refusal and map-full handling.
 */
#include <signal.h>
#include <sys/resource.h>

#include <lmdb.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kms/base.h"
#include "tests/tap.h"
#include "tests/testenv.h"
#include "tsm/store/store.h"

#define SE_A "00112233445566AA"
#define SE_B "00112233445566BB"
#define AID1 "A000000151535301"
#define AID2 "A000000151535302"
#define AID3 "A000000151535303"

static char tmp[256], sdir[512];

static struct store *
open_rw(const char *dir, uint64_t map)
{
	struct store_opts o = { .map_size = map };
	struct store *st = NULL;
	int rc = store_open(&st, dir, &o);

	if (rc != 0)
		bail("store_open %s: %s", dir, err_name(rc));
	return st;
}

static struct store_batch *
batch(void)
{
	struct store_batch *b = NULL;

	if (store_batch_new(&b) != 0)
		bail("batch");
	return b;
}

static void
mk_ssd(struct store_ssd *r, const char *se, const char *aid, const char *state)
{
	memset(r, 0, sizeof(*r));
	snprintf(r->se_id, sizeof(r->se_id), "%s", se);
	snprintf(r->sd_aid, sizeof(r->sd_aid), "%s", aid);
	snprintf(r->state, sizeof(r->state), "%s", state);
	r->mode = STORE_MODE_AMSD;
	r->created = r->updated = 1000;
}

static void
mk_se(struct store_se *r, const char *se)
{
	memset(r, 0, sizeof(*r));
	snprintf(r->se_id, sizeof(r->se_id), "%s", se);
	snprintf(r->state, sizeof(r->state), "ACTIVE");
}

static void
mk_task(struct store_task *t, const char *id, const char *se,
    const char *state)
{
	store_task_init(t);
	snprintf(t->id, sizeof(t->id), "%s", id);
	snprintf(t->se_id, sizeof(t->se_id), "%s", se);
	snprintf(t->kind, sizeof(t->kind), "SSD_CREATE");
	snprintf(t->state, sizeof(t->state), "%s", state);
}

static int
count_ssd(void *arg, const struct store_ssd *r)
{
	(*(int *)arg)++;
	return 0;
}

static int
count_keyset(void *arg, const struct store_keyset *r)
{
	(*(int *)arg)++;
	return 0;
}

struct tasks_seen {
	int n;
	char ids[512];
};

static int
collect_task(void *arg, const struct store_task *r)
{
	struct tasks_seen *s = arg;
	size_t l = strlen(s->ids);

	s->n++;
	snprintf(s->ids + l, sizeof(s->ids) - l, "%s%s", l ? "," : "", r->id);
	return 0;
}

static int
collect_ev(void *arg, const struct store_sdstatus *r)
{
	struct tasks_seen *s = arg;
	size_t l = strlen(s->ids);

	s->n++;
	snprintf(s->ids + l, sizeof(s->ids) - l, "%s%s", l ? "," : "", r->status);
	return 0;
}

static int
count_raw(void *arg, const uint8_t *k, size_t kn, const uint8_t *v, size_t vn)
{
	(*(int *)arg)++;
	return 0;
}

static int
stop_after_one(void *arg, const struct store_ssd *r)
{
	(*(int *)arg)++;
	return 1;
}

static int
clean(struct store *st, uint64_t now)
{
	struct store_check_report rep;
	int rc = store_check(st, now, stderr, &rep);

	return rc == 0 && rep.problems == 0;
}

static void
test_basic(struct store *st)
{
	struct store_batch *b = batch();
	struct store_se se;
	struct store_ssd ssd, got;
	struct store_keyset ks, ksg;
	struct store_peer peer, pg;
	int n, rc;

	mk_se(&se, SE_A);
	ok(store_batch_put_se(b, &se) == 0, "batch: put se A");
	mk_se(&se, "00112233445566bb");	/* lowercase seId */
	ok(store_batch_put_se(b, &se) == 0, "batch: put se B (lowercase id)");
	mk_ssd(&ssd, SE_A, AID1, "CREATED");
	ok(store_batch_put_ssd(b, &ssd) == 0, "batch: put ssd 1");
	mk_ssd(&ssd, SE_A, AID2, "CREATED");
	ok(store_batch_put_ssd(b, &ssd) == 0, "batch: put ssd 2");
	mk_ssd(&ssd, SE_A, "a000000151535303", "LOCKED");
	ok(store_batch_put_ssd(b, &ssd) == 0, "batch: put ssd 3 (lowercase AID)");
	mk_ssd(&ssd, SE_B, AID1, "CREATED");
	ok(store_batch_put_ssd(b, &ssd) == 0, "batch: put ssd on B");
	is_int(store_batch_len(b), 6, "batch holds 6 ops");
	is_int(store_batch_commit(st, b), 0, "commit: 0");

	ok(store_ssd_get(st, "00112233445566aa", "a000000151535303", &got) == 0 &&
	    strcmp(got.state, "LOCKED") == 0 && strcmp(got.sd_aid, AID3) == 0,
	    "get ssd with lowercase ids finds the uppercase record");
	is_int(store_ssd_get(st, SE_B, AID2, &got), ERR_NOTFOUND,
	    "get absent ssd: ERR_NOTFOUND");
	is_int(store_ssd_get(st, SE_B, "A0", &got), ERR_INVAL,
	    "get with a malformed AID: ERR_INVAL");
	ok(store_se_get(st, SE_B, &se) == 0 && strcmp(se.se_id, SE_B) == 0,
	    "get se B");

	n = 0;
	rc = store_ssd_iter(st, SE_A, count_ssd, &n);
	ok(rc == 0 && n == 3, "iterate SSDs of SE A: 3 (got %d)", n);
	n = 0;
	ok(store_ssd_iter(st, NULL, count_ssd, &n) == 0 && n == 4,
	    "iterate all SSDs: 4");
	n = 0;
	ok(store_ssd_iter(st, "00112233445566", count_ssd, &n) == 0 && n == 0,
	    "a prefix of an seId matches no SSD");
	n = 0;
	ok(store_ssd_iter(st, NULL, stop_after_one, &n) == 0 && n == 1,
	    "callback > 0 stops the iteration");

	/* key sets and a peer */
	store_batch_clear(b);
	store_keyset_init(&ks);
	snprintf(ks.se_id, sizeof(ks.se_id), SE_A);
	snprintf(ks.sd_aid, sizeof(ks.sd_aid), AID1);
	snprintf(ks.usage, sizeof(ks.usage), "SCP03");
	ks.n_keys = 1;
	ks.keys[0].usage = 1;
	ks.keys[0].kcv_len = 3;
	if (buf_put(&ks.blob, "KSB1-wrapped", 12) != 0)
		bail("nomem");
	ks.kvn = 0x30;
	ok(store_batch_put_keyset(b, &ks) == 0, "batch: keyset kvn 30");
	ks.kvn = 0x31;
	ok(store_batch_put_keyset(b, &ks) == 0, "batch: keyset kvn 31");
	ks.se_id[0] = '\0';
	ks.kvn = 0x30;
	ok(store_batch_put_keyset(b, &ks) == 0, "batch: master keyset");
	memset(&peer, 0, sizeof(peer));
	snprintf(peer.id, sizeof(peer.id), "sei-demo");
	snprintf(peer.wrap, sizeof(peer.wrap), "AES-KW");
	ok(store_batch_put_peer(b, &peer) == 0, "batch: peer");
	is_int(store_batch_commit(st, b), 0, "commit keysets + peer");
	store_keyset_init(&ksg);
	ok(store_keyset_get(st, SE_A, AID1, 0x31, &ksg) == 0 &&
	    ksg.blob.len == 12 && memcmp(ksg.blob.p, "KSB1-wrapped", 12) == 0,
	    "get keyset: blob back");
	ok(store_keyset_get(st, NULL, AID1, 0x30, &ksg) == 0 &&
	    ksg.se_id[0] == '\0', "get master keyset");
	store_keyset_cleanup(&ksg);
	store_keyset_cleanup(&ks);
	n = 0;
	ok(store_keyset_iter(st, SE_A, AID1, count_keyset, &n) == 0 && n == 2,
	    "iterate key sets of one SSD: 2");
	n = 0;
	ok(store_keyset_iter(st, "", AID1, count_keyset, &n) == 0 && n == 1,
	    "iterate master sets of the AID: 1");
	ok(store_peer_get(st, "sei-demo", &pg) == 0 &&
	    strcmp(pg.wrap, "AES-KW") == 0, "get peer");

	/* deletes */
	store_batch_clear(b);
	ok(store_batch_del_ssd(b, SE_B, AID1) == 0 &&
	    store_batch_del_ssd(b, SE_B, AID2) == 0, "batch: delete present and "
	    "absent SSD");
	is_int(store_batch_commit(st, b), 0, "deleting an absent key is fine");
	is_int(store_ssd_get(st, SE_B, AID1, &got), ERR_NOTFOUND, "ssd deleted");
	rc = store_check(st, 0, stderr, &(struct store_check_report){ 0 });
	is_int(rc, 0, "check runs");
	ok(clean(st, 0), "check: clean");
	store_batch_free(b);
}

static void
test_conditions(struct store *st)
{
	struct store_batch *b = batch();
	struct store_ssd cur, upd, got;
	struct store_se se;
	char k[STORE_KEY_MAX + 1];

	/* absent on a present key: nothing of the batch is written */
	mk_se(&se, "00C0");
	ok(store_batch_put_se(b, &se) == 0 &&
	    store_key_se(k, SE_A) == 0 &&
	    store_batch_require_absent(b, STORE_DB_SE, k, strlen(k)) == 0,
	    "batch: put + require_absent(existing)");
	is_int(store_batch_commit(st, b), ERR_EXISTS, "commit: ERR_EXISTS");
	is_int(store_se_get(st, "00C0", &se), ERR_NOTFOUND,
	    "the put before the failed condition was rolled back");

	store_batch_clear(b);
	ok(store_key_se(k, "00C1") == 0 &&
	    store_batch_require_present(b, STORE_DB_SE, k, strlen(k)) == 0,
	    "batch: require_present(missing)");
	is_int(store_batch_commit(st, b), ERR_WRONGSTATE,
	    "commit: ERR_WRONGSTATE");

	/* compare-and-swap on an SSD */
	if (store_ssd_get(st, SE_A, AID1, &cur) != 0)
		bail("get");
	upd = cur;
	snprintf(upd.state, sizeof(upd.state), "LOCKED");
	snprintf(upd.prev_state, sizeof(upd.prev_state), "%s", cur.state);
	store_batch_clear(b);
	ok(store_batch_require_ssd(b, &cur) == 0 &&
	    store_batch_put_ssd(b, &upd) == 0, "batch: CAS ssd CREATED->LOCKED");
	is_int(store_batch_commit(st, b), 0, "CAS with the current record: 0");
	is_int(store_batch_commit(st, b), ERR_WRONGSTATE,
	    "the same CAS again (stale): ERR_WRONGSTATE");
	ok(store_ssd_get(st, SE_A, AID1, &got) == 0 &&
	    strcmp(got.state, "LOCKED") == 0 &&
	    strcmp(got.prev_state, "CREATED") == 0, "ssd is LOCKED");

	/* put_new */
	store_batch_clear(b);
	{
		struct buf v;

		buf_init(&v);
		if (store_ssd_encode(&got, &v) != 0 ||
		    store_key_ssd(k, SE_A, AID1) != 0)
			bail("enc");
		ok(store_batch_put_new(b, STORE_DB_SSD, k, strlen(k), v.p,
		    v.len) == 0, "batch: put_new on an existing key");
		is_int(store_batch_commit(st, b), ERR_EXISTS,
		    "put_new existing: ERR_EXISTS");
		buf_free(&v);
	}

	/* conditions see the batch's own earlier ops */
	store_batch_clear(b);
	mk_se(&se, "00C2");
	ok(store_batch_put_se(b, &se) == 0 && store_key_se(k, "00C2") == 0 &&
	    store_batch_require_present(b, STORE_DB_SE, k, strlen(k)) == 0,
	    "batch: put then require_present of the same key");
	is_int(store_batch_commit(st, b), 0, "condition sees the earlier put");

	/* a poisoned batch */
	store_batch_clear(b);
	mk_se(&se, "00C3");
	ok(store_batch_put_se(b, &se) == 0, "batch: a good put");
	mk_se(&se, "XYZ");
	is_int(store_batch_put_se(b, &se), ERR_INVAL, "batch: a bad put fails");
	mk_se(&se, "00C4");
	is_int(store_batch_put_se(b, &se), ERR_INVAL,
	    "batch: later adds report the poison");
	is_int(store_batch_commit(st, b), ERR_INVAL,
	    "commit of a poisoned batch: its error");
	is_int(store_se_get(st, "00C3", &se), ERR_NOTFOUND,
	    "nothing of a poisoned batch written");
	store_batch_clear(b);
	is_int(store_batch_commit(st, b), 0, "a cleared batch commits (empty)");
	store_batch_free(b);
}

static void
test_tasks(struct store *st)
{
	struct store_batch *b = batch();
	struct store_task t, g;
	struct tasks_seen s;
	const char *ids[4] = { "t1", "t2", "t3", "t4" };
	const char *ses[4] = { SE_A, SE_A, SE_B, "" };
	const char *states[4] = { "PENDING", "RUNNING", "PENDING", "PENDING" };
	int i;

	for (i = 0; i < 4; i++) {
		mk_task(&t, ids[i], ses[i], states[i]);
		if (store_task_hist_add(&t, 1, "created") != 0 ||
		    store_batch_put_task(b, &t) != 0)
			bail("task");
		store_task_cleanup(&t);
	}
	is_int(store_batch_commit(st, b), 0, "commit 4 tasks");
	memset(&s, 0, sizeof(s));
	ok(store_task_iter(st, SE_A, "PENDING", collect_task, &s) == 0 &&
	    strcmp(s.ids, "t1") == 0, "tasks of SE A in PENDING: t1 (%s)",
	    s.ids);
	memset(&s, 0, sizeof(s));
	ok(store_task_iter(st, SE_A, NULL, collect_task, &s) == 0 && s.n == 2,
	    "tasks of SE A: 2");
	memset(&s, 0, sizeof(s));
	ok(store_task_iter(st, NULL, NULL, collect_task, &s) == 0 && s.n == 4,
	    "all tasks: 4");
	memset(&s, 0, sizeof(s));
	ok(store_task_iter(st, NULL, "PENDING", collect_task, &s) == 0 &&
	    s.n == 3, "all PENDING tasks: 3");
	memset(&s, 0, sizeof(s));
	ok(store_task_iter(st, "", "PENDING", collect_task, &s) == 0 &&
	    strcmp(s.ids, "t4") == 0, "PENDING tasks without an SE: t4");

	/* state change moves the index entry */
	store_task_init(&g);
	if (store_task_get(st, "t1", &g) != 0)
		bail("get t1");
	snprintf(g.state, sizeof(g.state), "DONE");
	g.step = 3;
	ok(store_task_hist_add(&g, 2, "finished") == 0, "history: finished");
	store_batch_clear(b);
	ok(store_batch_put_task(b, &g) == 0, "batch: t1 -> DONE");
	is_int(store_batch_commit(st, b), 0, "commit");
	memset(&s, 0, sizeof(s));
	ok(store_task_iter(st, SE_A, "PENDING", collect_task, &s) == 0 &&
	    s.n == 0, "no PENDING task of SE A left");
	memset(&s, 0, sizeof(s));
	ok(store_task_iter(st, SE_A, "DONE", collect_task, &s) == 0 &&
	    strcmp(s.ids, "t1") == 0, "t1 is DONE");
	store_task_cleanup(&g);
	ok(store_task_get(st, "t1", &g) == 0 && g.n_hist == 2 &&
	    strcmp(g.hist[1].note, "finished") == 0 && g.step == 3,
	    "t1 history has 2 entries");
	store_task_cleanup(&g);

	store_batch_clear(b);
	ok(store_batch_del_task(b, "t2") == 0, "batch: delete t2");
	is_int(store_batch_commit(st, b), 0, "commit");
	memset(&s, 0, sizeof(s));
	ok(store_task_iter(st, SE_A, NULL, collect_task, &s) == 0 && s.n == 1,
	    "SE A has one task left");
	ok(clean(st, 0), "check clean: the index follows the tasks");
	store_batch_free(b);
}

static void
test_nonce_idem(struct store *st)
{
	struct store_idem r, g;
	uint32_t purged = 0;
	char nonce[40];
	int i, rc;

	is_int(store_nonce_check_and_put(st, "sei-demo",
	    "00112233445566778899aabbccddeeff", 1000, 300), 0, "nonce: fresh");
	is_int(store_nonce_check_and_put(st, "sei-demo",
	    "00112233445566778899AABBCCDDEEFF", 1100, 300), ERR_EXISTS,
	    "nonce: replay (other case) within the window: ERR_EXISTS");
	is_int(store_nonce_check_and_put(st, "other-peer",
	    "00112233445566778899AABBCCDDEEFF", 1100, 300), 0,
	    "nonce: same nonce from another peer is fresh");
	is_int(store_nonce_check_and_put(st, "sei-demo",
	    "00112233445566778899AABBCCDDEEFF", 1300, 300), 0,
	    "nonce: after expiry (1000+300 <= 1300) accepted again");
	is_int(store_nonce_check_and_put(st, "sei-demo", "zz", 1300, 300),
	    ERR_INVAL, "nonce: non-hex refused");
	is_int(store_nonce_check_and_put(st, "sei|x", "00", 1300, 300),
	    ERR_INVAL, "nonce: bad peer id refused");
	for (i = 0; i < 20; i++) {
		snprintf(nonce, sizeof(nonce), "%032X", i + 1);
		if (store_nonce_check_and_put(st, "bulk", nonce, 2000, 10) != 0)
			bail("bulk nonce");
	}
	ok(clean(st, 2000), "check clean with live nonces");
	rc = store_purge_expired(st, 3000, 1000, &purged);
	ok(rc == 0 && purged >= 20, "purge: %u expired records deleted",
	    (unsigned)purged);
	{
		struct store_check_report rep;

		rc = store_check(st, 3000, stderr, &rep);
		ok(rc == 0 && rep.problems == 0 && rep.expired == 0,
		    "after purge: clean, nothing expired left (expired=%llu)",
		    (unsigned long long)rep.expired);
	}
	
	store_idem_init(&r);
	memset(r.key, 0x5A, 32);
	r.key_len = 32;
	r.status = 202;
	r.created = 2000;
	r.expires = 2000 + 3600;
	if (buf_put(&r.body, "{\"taskId\":\"t9\"}", 15) != 0)
		bail("nomem");
	is_int(store_idem_put(st, &r, 2000), 0, "idem: put");
	is_int(store_idem_put(st, &r, 2001), ERR_EXISTS,
	    "idem: second put while live: ERR_EXISTS");
	store_idem_init(&g);
	ok(store_idem_get(st, r.key, 32, 2001, &g) == 0 && g.status == 202 &&
	    g.body.len == 15 && memcmp(g.body.p, "{\"taskId\"", 9) == 0,
	    "idem: get returns the stored response");
	is_int(store_idem_get(st, r.key, 32, 5600, &g), ERR_NOTFOUND,
	    "idem: expired record reads as absent");
	r.created = 5600;
	r.expires = 9200;
	r.status = 200;
	is_int(store_idem_put(st, &r, 5600), 0, "idem: an expired record is "
	    "replaced");
	ok(store_idem_get(st, r.key, 32, 5601, &g) == 0 && g.status == 200,
	    "idem: the new one is read");
	store_idem_cleanup(&g);
	store_idem_cleanup(&r);
	for (i = 0; i < 3; i++) {
		snprintf(nonce, sizeof(nonce), "%032X", i + 100);
		if (store_nonce_check_and_put(st, "bulk", nonce, 9000, 10) != 0)
			bail("bulk nonce");
	}
	rc = store_purge_expired(st, 20000, 1, &purged);
	ok(rc == 0 && purged == 1, "purge honours max");
	ok(clean(st, 20000), "check clean after a partial purge");

}

static void
test_sdstatus_docs_raw(struct store *st)
{
	struct store_batch *b = batch();
	struct store_sdstatus e;
	struct tasks_seen s;
	struct store_ssd ssd;
	struct buf v, raw;
	json_t *doc, *got = NULL;
	char k[STORE_KEY_MAX + 1];
	int i, n;

	memset(&e, 0, sizeof(e));
	snprintf(e.se_id, sizeof(e.se_id), SE_A);
	snprintf(e.sd_aid, sizeof(e.sd_aid), AID2);
	snprintf(e.source, sizeof(e.source), "sei-demo");
	for (i = 0; i < 3; i++) {
		snprintf(e.status, sizeof(e.status), "S%d", i);
		e.time = 5000 + (uint64_t)i;
		e.seq = 0;
		if (store_batch_put_sdstatus(b, &e) != 0)
			bail("sdstatus");
	}
	is_int(store_batch_commit(st, b), 0, "commit 3 sd-status events");
	memset(&s, 0, sizeof(s));
	ok(store_sdstatus_iter(st, SE_A, AID2, collect_ev, &s) == 0 &&
	    strcmp(s.ids, "S0,S1,S2") == 0, "events of the SSD, oldest first "
	    "(%s)", s.ids);
	memset(&s, 0, sizeof(s));
	ok(store_sdstatus_iter(st, SE_A, NULL, collect_ev, &s) == 0 && s.n == 3,
	    "events of the SE");

	/* documents */
	store_batch_clear(b);
	doc = json_pack("{s:s, s:s}", "name", "ACME", "state", "REVIEW");
	ok(store_batch_put_doc(b, STORE_DB_PROVIDER, "prov-1", doc) == 0,
	    "batch: provider document");
	ok(store_batch_put_doc(b, STORE_DB_APP, SE_A "|A0000001515353AA", doc) ==
	    0, "batch: app document keyed SE|AID");
	is_int(store_batch_commit(st, b), 0, "commit documents");
	ok(store_doc_get(st, STORE_DB_PROVIDER, "prov-1", &got) == 0 &&
	    json_equal(doc, got), "get provider document");
	json_decref(got);
	is_int(store_doc_get(st, STORE_DB_SSD, "x", &got), ERR_INVAL,
	    "doc get from a non-document db refused");
	json_decref(doc);

	/* raw API */
	store_batch_free(b);
	b = batch();
	is_int(store_batch_put(b, STORE_DB_TASK_IDX, "k", 1, NULL, 0), ERR_INVAL,
	    "raw put into an index db refused");
	store_batch_clear(b);
	is_int(store_batch_del(b, STORE_DB_META, "schema", 6), ERR_INVAL,
	    "raw delete in meta refused");
	store_batch_clear(b);
	is_int(store_batch_put(b, STORE_DB_SSD, "k", 1, "\x02\x01zz", 4),
	    ERR_PARSE, "raw put of bytes that do not decode refused");
	store_batch_clear(b);
	mk_ssd(&ssd, SE_A, AID1, "CREATED");
	buf_init(&v);
	if (store_ssd_encode(&ssd, &v) != 0 || store_key_ssd(k, SE_A, AID2) != 0)
		bail("enc");
	is_int(store_batch_put(b, STORE_DB_SSD, k, strlen(k), v.p, v.len),
	    ERR_INVAL, "raw put under another record's key refused");
	store_batch_clear(b);
	is_int(store_batch_put(b, STORE_DB_SSD, k, 0, v.p, v.len), ERR_INVAL,
	    "raw put with an empty key refused");
	store_batch_clear(b);
	/* A length that would wrap the batch's byte count is over the limit,
	 * never appended (the bytes are not there to read). */
	is_int(store_batch_require_equal(b, STORE_DB_SSD, k, strlen(k), v.p,
	    SIZE_MAX - 8), ERR_LIMIT, "condition with a wrapping length refused");
	is_int(store_batch_len(b), 0, "and nothing was added");
	buf_init(&raw);
	if (store_key_ssd(k, SE_A, AID2) != 0)
		bail("key");
	ok(store_raw_get(st, STORE_DB_SSD, k, strlen(k), &raw) == 0 &&
	    raw.len > 2 && raw.p[0] == STORE_REC_SSD && raw.p[1] == 1,
	    "raw get: value starts with type and version");
	n = 0;
	ok(store_iter(st, STORE_DB_SSD, SE_A "|", strlen(SE_A) + 1, count_raw,
	    &n) == 0 && n == 3, "raw prefix iteration: 3 SSDs of SE A");
	buf_free(&raw);
	buf_free(&v);
	store_batch_free(b);
}

static void
test_readonly_and_schema(void)
{
	struct store_opts ro = { .readonly = 1 };
	struct store *st = NULL;
	struct store_batch *b = batch();
	struct store_se se;
	MDB_env *env;
	MDB_txn *txn;
	MDB_dbi dbi;
	MDB_val k = { 6, "schema" }, v;
	uint8_t ver[4] = { 0, 0, 0, STORE_SCHEMA_VERSION + 1 };
	int rc;

	is_int(store_open(&st, sdir, &ro), 0, "open read-only");
	ok(st && store_se_get(st, SE_A, &se) == 0, "read-only: reads work");
	mk_se(&se, "00D0");
	if (store_batch_put_se(b, &se) != 0)
		bail("put");
	is_int(store_batch_commit(st, b), ERR_NOTSUP, "read-only: commit refused");
	store_close(st);
	st = NULL;

	/* Plant a newer schema with LMDB itself. */
	if (mdb_env_create(&env) || mdb_env_set_maxdbs(env, 32) ||
	    mdb_env_open(env, sdir, 0, 0600) || mdb_txn_begin(env, NULL, 0, &txn) ||
	    mdb_dbi_open(txn, "meta", 0, &dbi))
		bail("lmdb");
	v.mv_size = 4;
	v.mv_data = ver;
	if (mdb_put(txn, dbi, &k, &v, 0) || mdb_txn_commit(txn))
		bail("lmdb put");
	rc = store_open(&st, sdir, NULL);
	is_int(rc, ERR_VERSION, "a newer schema is refused (ERR_VERSION)");
	store_close(st);
	st = NULL;
	is_int(store_open(&st, sdir, &ro), ERR_VERSION,
	    "... also read-only");
	store_close(st);
	st = NULL;
	ver[3] = 0;
	if (mdb_txn_begin(env, NULL, 0, &txn) || mdb_put(txn, dbi, &k, &v, 0) ||
	    mdb_txn_commit(txn))
		bail("lmdb put");
	is_int(store_open(&st, sdir, NULL), ERR_VERSION, "schema 0 refused");
	store_close(st);
	st = NULL;
	if (mdb_txn_begin(env, NULL, 0, &txn) || mdb_del(txn, dbi, &k, NULL) ||
	    mdb_txn_commit(txn))
		bail("lmdb del");
	is_int(store_open(&st, sdir, NULL), ERR_VERSION,
	    "data without a schema record refused");
	store_close(st);
	st = NULL;
	ver[3] = STORE_SCHEMA_VERSION;
	if (mdb_txn_begin(env, NULL, 0, &txn) || mdb_put(txn, dbi, &k, &v, 0) ||
	    mdb_txn_commit(txn))
		bail("lmdb put");
	mdb_env_close(env);
	is_int(store_open(&st, sdir, NULL), 0, "schema %d opens again",
	    STORE_SCHEMA_VERSION);
	ok(st && store_se_get(st, SE_A, &se) == 0, "data intact");
	store_close(st);
	store_batch_free(b);
}

/* ---- schema 1 -> 2: an SE's records from three dbs into one ---- */

/* With LMDB itself: moves the records of db from whose keys hold bars '|'
 * (every one: bars < 0) into db to. */
static size_t
lmdb_move(MDB_txn *txn, const char *from, const char *to, int bars)
{
	MDB_dbi f, t;
	MDB_cursor *c;
	MDB_val k, v;
	size_t i, n = 0, nb;
	int mrc, again = 1;

	if (mdb_dbi_open(txn, from, 0, &f) || mdb_dbi_open(txn, to, MDB_CREATE,
	    &t) || mdb_cursor_open(txn, f, &c))
		bail("lmdb open %s", from);
	while (again) {		/* one at a time, from the start (a few) */
		again = 0;
		for (mrc = mdb_cursor_get(c, &k, &v, MDB_FIRST); mrc == 0;
		    mrc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
			for (i = nb = 0; i < k.mv_size; i++)
				nb += ((const char *)k.mv_data)[i] == '|';
			if (bars >= 0 && nb != (size_t)bars)
				continue;
			if (mdb_put(txn, t, &k, &v, 0) != 0 ||
			    mdb_cursor_del(c, 0) != 0)
				bail("lmdb move");
			n++;
			again = 1;
			break;
		}
	}
	mdb_cursor_close(c);
	return n;
}

static MDB_env *
lmdb_env(const char *dir)
{
	MDB_env *env;

	if (mdb_env_create(&env) || mdb_env_set_maxdbs(env, 32) ||
	    mdb_env_open(env, dir, 0, 0600))
		bail("lmdb env");
	return env;
}

static void
lmdb_schema(MDB_env *env, uint8_t ver)
{
	uint8_t b[4] = { 0, 0, 0, ver };
	MDB_val k = { 6, "schema" }, v = { 4, b };
	MDB_txn *txn;
	MDB_dbi m;

	if (mdb_txn_begin(env, NULL, 0, &txn) || mdb_dbi_open(txn, "meta", 0,
	    &m) || mdb_put(txn, m, &k, &v, 0) || mdb_txn_commit(txn))
		bail("lmdb schema");
}

/* 1 if the LMDB db name exists in dir's store. */
static int
lmdb_has(const char *dir, const char *name)
{
	MDB_env *env = lmdb_env(dir);
	MDB_txn *txn;
	MDB_dbi d;
	int has;

	if (mdb_txn_begin(env, NULL, MDB_RDONLY, &txn))
		bail("lmdb txn");
	has = mdb_dbi_open(txn, name, 0, &d) == 0;
	mdb_txn_abort(txn);
	mdb_env_close(env);
	return has;
}

/* Gives dir's store schema 1's layout with LMDB itself: its SEs, SSDs and
 * key sets from by_se into "se", "ssd" and "keyset" (bad: every SSD and
 * key set into "ssd"), by_se dropped, schema 1. Returns the records moved. */
static size_t
make_v1(const char *dir, int bad)
{
	MDB_env *env = lmdb_env(dir);
	MDB_txn *txn;
	MDB_dbi d;
	size_t moved;

	if (mdb_txn_begin(env, NULL, 0, &txn))
		bail("lmdb txn");
	moved = lmdb_move(txn, "by_se", "se", 0);
	if (bad)
		moved += lmdb_move(txn, "by_se", "ssd", -1);
	else {
		moved += lmdb_move(txn, "by_se", "ssd", 1);
		moved += lmdb_move(txn, "by_se", "keyset", 2);
	}
	if (mdb_dbi_open(txn, "by_se", 0, &d) || mdb_drop(txn, d, 1) ||
	    mdb_txn_commit(txn))
		bail("lmdb drop");
	lmdb_schema(env, 1);
	mdb_env_close(env);
	return moved;
}

/* dir's schema record, with LMDB itself. */
static int
lmdb_schema_of(const char *dir)
{
	MDB_env *env = lmdb_env(dir);
	MDB_val k = { 6, "schema" }, v;
	MDB_txn *txn;
	MDB_dbi m;
	int ver = -1;

	if (mdb_txn_begin(env, NULL, MDB_RDONLY, &txn) ||
	    mdb_dbi_open(txn, "meta", 0, &m))
		bail("lmdb meta");
	if (mdb_get(txn, m, &k, &v) == 0 && v.mv_size == 4)
		ver = ((const uint8_t *)v.mv_data)[3];
	mdb_txn_abort(txn);
	mdb_env_close(env);
	return ver;
}

/* A process of an older build with the store open: holds a reader slot
 * until killed. */
static pid_t
v1_reader(const char *dir)
{
	int fds[2];
	char c;
	pid_t pid;

	if (pipe(fds) != 0)
		bail("pipe");
	if ((pid = fork()) == 0) {
		MDB_env *env = lmdb_env(dir);
		MDB_txn *txn;

		if (mdb_txn_begin(env, NULL, MDB_RDONLY, &txn) != 0)
			_exit(1);
		if (write(fds[1], "r", 1) != 1)
			_exit(1);
		for (;;)
			pause();
	}
	close(fds[1]);
	if (pid < 0 || read(fds[0], &c, 1) != 1)
		bail("reader child");
	close(fds[0]);
	return pid;
}

static void
put_keyset(struct store_batch *b, const char *se, int kvn)
{
	struct store_keyset ks;

	store_keyset_init(&ks);
	snprintf(ks.se_id, sizeof(ks.se_id), "%s", se);
	snprintf(ks.sd_aid, sizeof(ks.sd_aid), AID1);
	snprintf(ks.usage, sizeof(ks.usage), "SCP03");
	ks.kvn = (uint8_t)kvn;
	ks.alg = 1;
	ks.n_keys = 1;
	ks.keys[0].usage = 1;
	ks.keys[0].kcv_len = 3;
	if (buf_put(&ks.blob, "blob", 4) != 0 || store_batch_put_keyset(b, &ks))
		bail("keyset");
	store_keyset_cleanup(&ks);
}

static void
test_upgrade(void)
{
	struct store_opts ro = { .readonly = 1 };
	char dir[600], key[80];
	struct store *st;
	struct store_batch *b = batch();
	struct store_se se;
	struct store_ssd ssd;
	struct store_keyset ks;
	struct store_check_report rep;
	struct buf raw;
	MDB_env *env;
	MDB_txn *txn;
	FILE *devnull;
	pid_t reader;
	int n, rc;

	if ((devnull = fopen("/dev/null", "w")) == NULL)
		bail("/dev/null");
	/* A store of this build given schema 1's layout by LMDB itself: the
	 * same keys and records in "se", "ssd" and "keyset", no by_se. */
	snprintf(dir, sizeof(dir), "%s/upgrade", tmp);
	st = open_rw(dir, 0);
	mk_se(&se, SE_A);
	mk_ssd(&ssd, SE_A, AID1, "CREATED");
	if (store_batch_put_se(b, &se) != 0 || store_batch_put_ssd(b, &ssd))
		bail("records");
	put_keyset(b, SE_A, 0x30);
	put_keyset(b, "", 0x31);	/* a master set: "*|AID|31" */
	mk_se(&se, SE_B);
	if (store_batch_put_se(b, &se) != 0 || store_batch_commit(st, b))
		bail("records");
	store_close(st);
	is_int((int)make_v1(dir, 0), 5, "a schema 1 store: 2 SEs, an SSD, a key "
	    "set and a master set in three dbs");

	st = NULL;
	is_int(store_open(&st, dir, &ro), ERR_VERSION, "read-only: schema 1 is "
	    "refused (a read-write open upgrades it)");
	store_close(st);
	reader = v1_reader(dir);
	st = NULL;
	is_int(store_open(&st, dir, NULL), ERR_BUSY, "another process has the "
	    "store open: the upgrade is refused (ERR_BUSY)");
	store_close(st);
	kill(reader, SIGKILL);
	waitpid(reader, NULL, 0);
	is_int(lmdb_schema_of(dir), 1, "... and the store stays at schema 1");

	st = open_rw(dir, 0);
	ok(store_se_get(st, SE_B, &se) == 0 && store_ssd_get(st, SE_A, AID1,
	    &ssd) == 0 && strcmp(ssd.state, "CREATED") == 0,
	    "the other process gone: upgraded to 2, SE and SSD records read");
	store_keyset_init(&ks);
	rc = store_keyset_get(st, SE_A, AID1, 0x30, &ks);
	ok(rc == 0 && ks.blob.len == 4 && memcmp(ks.blob.p, "blob", 4) == 0,
	    "... the key set");
	store_keyset_cleanup(&ks);
	store_keyset_init(&ks);
	ok(store_keyset_get(st, "", AID1, 0x31, &ks) == 0, "... the master set");
	store_keyset_cleanup(&ks);
	n = 0;
	rc = store_iter(st, STORE_DB_SSD, SE_A "|", strlen(SE_A) + 1, count_raw,
	    &n);
	ok(rc == 0 && n == 1, "the SSDs of an SE: its one SSD, not its key set "
	    "(%d)", n);
	n = 0;
	rc = store_iter(st, STORE_DB_SE, NULL, 0, count_raw, &n);
	ok(rc == 0 && n == 2, "every SE: 2, not the SSD and key sets beside them "
	    "(%d)", n);
	memset(&rep, 0, sizeof(rep));
	rc = store_check(st, 0, stderr, &rep);
	ok(rc == 0 && rep.problems == 0 && rep.records == 6, "store check: clean "
	    "(%llu records: schema and the 5)", (unsigned long long)rep.records);

	/* The API's raw calls keep to their db's key shape. */
	snprintf(key, sizeof(key), "%s|%s", SE_A, AID1);
	buf_init(&raw);
	is_int(store_raw_get(st, STORE_DB_SE, key, strlen(key), &raw), ERR_INVAL,
	    "raw get from se with an SSD's key: ERR_INVAL");
	ok(store_raw_get(st, STORE_DB_SSD, key, strlen(key), &raw) == 0 &&
	    raw.len > 0, "... from ssd: the SSD");
	buf_free(&raw);
	store_batch_clear(b);
	is_int(store_batch_del(b, STORE_DB_SE, key, strlen(key)), ERR_INVAL,
	    "a batch delete in se with an SSD's key: ERR_INVAL");
	store_close(st);
	ok(!lmdb_has(dir, "se") && !lmdb_has(dir, "ssd") &&
	    !lmdb_has(dir, "keyset") && lmdb_has(dir, "by_se") &&
	    lmdb_schema_of(dir) == 2, "the three dbs are gone, by_se holds their "
	    "records, schema 2");

	/* Schema 1 whose "ssd" db holds key-set keys: refused, nothing
	 * changed. */
	(void)make_v1(dir, 1);
	st = NULL;
	is_int(store_open(&st, dir, NULL), ERR_VERSION, "schema 1 with key-set "
	    "keys in ssd: the upgrade refuses");
	store_close(st);
	ok(lmdb_has(dir, "se") && lmdb_has(dir, "ssd") && !lmdb_has(dir, "by_se")
	    && lmdb_schema_of(dir) == 1, "... and changes nothing");

	/* Its schema record gone: data in schema 1's dbs is still data. */
	env = lmdb_env(dir);
	{
		MDB_val k = { 6, "schema" };
		MDB_dbi m;

		if (mdb_txn_begin(env, NULL, 0, &txn) ||
		    mdb_dbi_open(txn, "meta", 0, &m) ||
		    mdb_del(txn, m, &k, NULL) || mdb_txn_commit(txn))
			bail("lmdb del");
	}
	mdb_env_close(env);
	st = NULL;
	is_int(store_open(&st, dir, NULL), ERR_VERSION, "schema 1's dbs hold "
	    "records and no schema record: refused, not initialised");
	store_close(st);

	/* A schema 1 store with SEs only (no "ssd", no "keyset"). */
	snprintf(dir, sizeof(dir), "%s/upgrade-se", tmp);
	st = open_rw(dir, 0);
	mk_se(&se, SE_A);
	store_batch_clear(b);
	if (store_batch_put_se(b, &se) != 0 || store_batch_commit(st, b))
		bail("records");
	store_close(st);
	(void)make_v1(dir, 0);
	st = open_rw(dir, 0);
	ok(store_se_get(st, SE_A, &se) == 0, "schema 1 with only an \"se\" db: "
	    "upgraded, the SE read");
	store_close(st);

	/* A key that fits no record type in by_se: check and dump say so. */
	st = NULL;
	snprintf(dir, sizeof(dir), "%s/shape", tmp);
	store_close(open_rw(dir, 0));
	env = lmdb_env(dir);
	{
		MDB_val k = { 7, "A|B|C|D" }, v = { 1, "x" };
		MDB_dbi d;

		if (mdb_txn_begin(env, NULL, 0, &txn) ||
		    mdb_dbi_open(txn, "by_se", 0, &d) ||
		    mdb_put(txn, d, &k, &v, 0) || mdb_txn_commit(txn))
			bail("lmdb put");
	}
	mdb_env_close(env);
	st = open_rw(dir, 0);
	memset(&rep, 0, sizeof(rep));
	rc = store_check(st, 0, devnull, &rep);
	ok(rc == 0 && rep.problems == 1, "store check: a by_se key of no record "
	    "type is a problem (%llu)", (unsigned long long)rep.problems);
	{
		char *dump = NULL;
		size_t dn = 0;
		FILE *m = open_memstream(&dump, &dn);

		ok(m != NULL && store_dump(st, STORE_DB_COUNT, m) == 0 &&
		    fclose(m) == 0 && strstr(dump, "by_se A|B|C|D UNDECODABLE") !=
		    NULL, "store dump shows it");
		free(dump);
	}
	store_close(st);
	fclose(devnull);
	store_batch_free(b);
}

/* A key set of SE_A, AID1 whose blob is n bytes (kvn left to the caller). */
static void
big_keyset(struct store_keyset *ks, size_t n)
{
	size_t i;

	store_keyset_init(ks);
	snprintf(ks->se_id, sizeof(ks->se_id), SE_A);
	snprintf(ks->sd_aid, sizeof(ks->sd_aid), AID1);
	snprintf(ks->usage, sizeof(ks->usage), "SCP03");
	ks->n_keys = 1;
	ks->keys[0].kcv_len = 3;
	for (i = 0; i < n; i++)
		if (buf_put_u8(&ks->blob, (uint8_t)i) != 0)
			bail("nomem");
}

/* The disk full (a file-size limit at the data file's size): commits that
 * need pages past it fail, nothing else breaks, and the writer does not
 * retry its zeros ahead of the data at every group (once a second). */
static void
test_disk_full(void)
{
	char dir[600], dpath[700];
	struct store *st;
	struct store_batch *b = batch();
	struct store_keyset ks;
	struct store_stats s0, s1;
	struct rlimit old, lim;
	struct stat sb;
	int i, good = 0, bad = 0, rc;
	uint64_t t0, ms;

	snprintf(dir, sizeof(dir), "%s/full", tmp);
	st = open_rw(dir, 64u << 20);
	big_keyset(&ks, 6000);
	ks.kvn = 1;
	if (store_batch_put_keyset(b, &ks) != 0 || store_batch_commit(st, b) != 0)
		bail("first commit");
	snprintf(dpath, sizeof(dpath), "%s/data.mdb", dir);
	/* The writer writes its zeros after it has woken the committer:
	 * the limit goes on once they are there (256 KiB at least). */
	for (i = 0; i < 500; i++) {
		if (stat(dpath, &sb) != 0)
			bail("stat");
		if (sb.st_size >= (256 << 10))
			break;
		usleep(10000);
	}
	if (getrlimit(RLIMIT_FSIZE, &old) != 0)
		bail("getrlimit");
	store_stats_get(st, &s0);
	signal(SIGXFSZ, SIG_IGN);
	lim = old;
	lim.rlim_cur = (rlim_t)sb.st_size;
	if (setrlimit(RLIMIT_FSIZE, &lim) != 0)
		bail("setrlimit");
	/* 6 KB key sets, each in its own commit, until well past the file */
	t0 = now_ms();
	for (i = 0; i < 200; i++) {
		store_batch_clear(b);
		snprintf(ks.se_id, sizeof(ks.se_id), "%016X", i + 1);
		if (store_batch_put_keyset(b, &ks) != 0)
			bail("put");
		if ((rc = store_batch_commit(st, b)) == 0)
			good++;
		else
			bad++;
	}
	ms = now_ms() - t0;
	store_stats_get(st, &s1);
	if (setrlimit(RLIMIT_FSIZE, &old) != 0)
		bail("setrlimit back");
	signal(SIGXFSZ, SIG_DFL);
	ok(good > 0 && bad > 0, "disk full: the commits that fit go through "
	    "(%d), the others fail (%d)", good, bad);
	/* once, and once more per second the commits took (a slow disk) */
	ok(s1.ext_failed - s0.ext_failed >= 1 && s1.ext_failed - s0.ext_failed
	    <= 2 + ms / 1000, "the writer's zeros ahead fell short %llu times "
	    "over %d commits in %llu ms (retried once a second, not at every "
	    "group)", (unsigned long long)(s1.ext_failed - s0.ext_failed),
	    good + bad, (unsigned long long)ms);
	store_batch_clear(b);
	snprintf(ks.se_id, sizeof(ks.se_id), "%016X", 999);
	if (store_batch_put_keyset(b, &ks) != 0)
		bail("put");
	is_int(store_batch_commit(st, b), 0, "room again: a commit goes through");
	store_keyset_cleanup(&ks);
	store_batch_free(b);
	store_close(st);
}

static void
test_map_full(void)
{
	char dir[600];
	struct store *st;
	struct store_batch *b = batch();
	struct store_keyset ks, g;
	struct store_se se;
	int i, rc = 0, stored = 0;

	snprintf(dir, sizeof(dir), "%s/small", tmp);
	st = open_rw(dir, 256 * 1024);
	big_keyset(&ks, 60000);
	/* One batch far larger than the map. */
	for (i = 1; i <= 20; i++) {
		ks.kvn = (uint8_t)i;
		if (store_batch_put_keyset(b, &ks) != 0)
			bail("put");
	}
	is_int(store_batch_commit(st, b), ERR_LIMIT,
	    "a batch larger than the map: ERR_LIMIT");
	store_keyset_init(&g);
	is_int(store_keyset_get(st, SE_A, AID1, 1, &g), ERR_NOTFOUND,
	    "nothing of it was written");
	mk_se(&se, SE_A);
	store_batch_clear(b);
	if (store_batch_put_se(b, &se) != 0)
		bail("put");
	is_int(store_batch_commit(st, b), 0, "a small batch still commits");
	/* Fill one key set at a time until the map is full. */
	for (i = 1; i <= 20; i++) {
		store_batch_clear(b);
		ks.kvn = (uint8_t)i;
		if (store_batch_put_keyset(b, &ks) != 0)
			bail("put");
		if ((rc = store_batch_commit(st, b)) != 0)
			break;
		stored++;
	}
	is_int(rc, ERR_LIMIT, "filling up: ERR_LIMIT after %d key sets", stored);
	ok(stored > 0 && store_keyset_get(st, SE_A, AID1, (uint8_t)stored,
	    &g) == 0 && g.blob.len == 60000, "the last acknowledged one reads back");
	store_batch_clear(b);
	ks.kvn = 1;
	if (store_batch_del_keyset(b, SE_A, AID1, 1) != 0)
		bail("del");
	is_int(store_batch_commit(st, b), 0, "a delete commits on a full map");
	store_batch_clear(b);
	if (store_batch_put_se(b, &se) != 0)
		bail("put");
	is_int(store_batch_commit(st, b), 0, "and so does a small put");
	store_close(st);

	/* Opened with no size (as kmsctl and tsmctl do), a store keeps the
	 * map size it was given: 300 KB more do not fit in 256 KiB (they
	 * would in the default 1 GiB); given a larger size, they do. */
	st = NULL;
	is_int(store_open(&st, dir, NULL), 0, "reopened with no map size");
	store_batch_clear(b);
	for (i = 30; i < 35; i++) {
		ks.kvn = (uint8_t)i;
		if (store_batch_put_keyset(b, &ks) != 0)
			bail("put");
	}
	is_int(store_batch_commit(st, b), ERR_LIMIT, "... it keeps the recorded "
	    "256 KiB, not the default");
	store_close(st);
	st = open_rw(dir, 4u << 20);
	is_int(store_batch_commit(st, b), 0, "reopened with 4 MiB: they fit");
	store_close(st);

	/* An empty data.mdb (a process killed as it created the store) is a
	 * new store: the default map, not LMDB's own 1 MiB. */
	snprintf(dir, sizeof(dir), "%s/empty", tmp);
	{
		char f[700];
		FILE *e;

		if (mkdir(dir, 0700) != 0 || snprintf(f, sizeof(f), "%s/data.mdb",
		    dir) < 0 || (e = fopen(f, "w")) == NULL || fclose(e) != 0)
			bail("empty data.mdb");
	}
	st = NULL;
	is_int(store_open(&st, dir, NULL), 0, "an empty data.mdb opens");
	store_batch_clear(b);
	for (i = 1; i <= 20; i++) {
		ks.kvn = (uint8_t)i;
		if (store_batch_put_keyset(b, &ks) != 0)
			bail("put");
	}
	is_int(store_batch_commit(st, b), 0, "... with the default map: 1.2 MB "
	    "in one batch fit");
	store_keyset_cleanup(&g);
	store_keyset_cleanup(&ks);
	store_batch_free(b);
	store_close(st);
}

int
main(void)
{
	struct store_stats stats;
	struct store *st;
	struct stat sb;

	log_init("store_test", LOG_ERR);
	snprintf(tmp, sizeof(tmp), "/tmp/sptsm-test-XXXXXX");
	if (mkdtemp(tmp) == NULL)
		bail("mkdtemp");
	snprintf(sdir, sizeof(sdir), "%s/var/tsm/store", tmp);
	st = open_rw(sdir, 0);
	ok(stat(sdir, &sb) == 0 && (sb.st_mode & 0777) == 0700,
	    "store directory created with mode 0700");
	test_basic(st);
	test_conditions(st);
	test_tasks(st);
	test_nonce_idem(st);
	test_sdstatus_docs_raw(st);
	store_stats_get(st, &stats);
	ok(stats.commits > 0 && stats.batches >= stats.commits,
	    "stats: %llu batches, %llu commits, %llu failed",
	    (unsigned long long)stats.batches, (unsigned long long)stats.commits,
	    (unsigned long long)stats.failed);
	store_close(st);
	st = open_rw(sdir, 0);
	{
		struct store_ssd g;

		char dpath[600];
		struct store_check_report rep;

		ok(store_ssd_get(st, SE_A, AID1, &g) == 0 &&
		    strcmp(g.state, "LOCKED") == 0, "reopen: data persisted");
		/* The writer keeps written zeros ahead of LMDB's last page
		 * (commit.c preextend): the file is larger than this handful
		 * of records needs, and LMDB and the check do not mind. */
		snprintf(dpath, sizeof(dpath), "%s/data.mdb", sdir);
		if (stat(dpath, &sb) != 0)
			bail("stat data.mdb");
		ok(sb.st_size >= (256 << 10), "data file runs ahead of its pages "
		    "(%lld bytes)", (long long)sb.st_size);
		memset(&rep, 0, sizeof(rep));
		is_int(store_check(st, 0, stderr, &rep), 0,
		    "store check after reopen: clean");
	}
	store_close(st);
	test_readonly_and_schema();
	test_upgrade();
	test_map_full();
	test_disk_full();
	testenv_cleanup(tmp);
	return done_testing();
}
