/*
 * store_check_test.c - `tsmctl store check` and `store dump` end to end on
 * a real store: a consistent store checks clean (exit 0); dangling
 * references planted through the raw API, an undecodable value and a
 * dangling index entry planted with LMDB itself are each reported (exit
 * 1); dump hides blob bytes; --help for every subcommand.
 */
#include <lmdb.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kms/base.h"
#include "tests/tap.h"
#include "tests/testenv.h"
#include "tsm/store/store.h"

#define SE "0011223344556677"
#define AID "A000000151535301"
#define BLOB "KSB1-wrapped-bytes-not-for-printing"

static char tmp[64], var[128], sdir[192];

/* Runs tsmctl with args; output into out; returns the exit status. */
static int
tsmctl(struct buf *out, const char *args)
{
	char cmd[2048], chunk[4096];
	size_t n;
	FILE *p;
	int st;

	snprintf(cmd, sizeof(cmd), "%s %s 2>&1", testenv_bin("tsmctl"), args);
	buf_reset(out);
	p = popen(cmd, "r");
	if (p == NULL)
		bail("popen");
	while ((n = fread(chunk, 1, sizeof(chunk), p)) > 0)
		if (buf_put(out, chunk, n) != 0)
			bail("nomem");
	if (buf_put_u8(out, 0) != 0)
		bail("nomem");
	st = pclose(p);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static int
has(const struct buf *out, const char *s)
{
	return out->p != NULL && strstr((const char *)out->p, s) != NULL;
}

static struct store *
open_rw(void)
{
	struct store *st = NULL;

	if (store_open(&st, sdir, NULL) != 0)
		bail("open");
	return st;
}

static void
populate(void)
{
	struct store *st = open_rw();
	struct store_batch *b = NULL;
	struct store_se se = { .se_id = SE, .state = "ACTIVE" };
	struct store_ssd ssd = { .se_id = SE, .sd_aid = AID, .state = "CREATED",
	    .mode = STORE_MODE_AMSD, .task_id = "t1" };
	struct store_keyset ks;
	struct store_task t;
	struct store_sdstatus ev = { .se_id = SE, .sd_aid = AID,
	    .status = "RESETED", .source = "sei-demo", .time = 5 };
	struct store_idem idem;
	json_t *doc = json_pack("{s:s}", "name", "ACME");

	if (store_batch_new(&b) != 0)
		bail("batch");
	store_keyset_init(&ks);
	snprintf(ks.se_id, sizeof(ks.se_id), SE);
	snprintf(ks.sd_aid, sizeof(ks.sd_aid), AID);
	snprintf(ks.usage, sizeof(ks.usage), "SCP03");
	ks.kvn = 0x30;
	ks.n_keys = 1;
	ks.keys[0].kcv_len = 3;
	ks.keys[0].kcv[0] = 0xAB;
	if (buf_put(&ks.blob, BLOB, strlen(BLOB)) != 0)
		bail("nomem");
	store_task_init(&t);
	snprintf(t.id, sizeof(t.id), "t1");
	snprintf(t.se_id, sizeof(t.se_id), SE);
	snprintf(t.kind, sizeof(t.kind), "SSD_CREATE");
	snprintf(t.state, sizeof(t.state), "RUNNING");
	store_idem_init(&idem);
	memset(idem.key, 7, 32);
	idem.key_len = 32;
	idem.status = 200;
	idem.created = 100;
	idem.expires = 200;
	if (store_batch_put_se(b, &se) || store_batch_put_ssd(b, &ssd) ||
	    store_batch_put_keyset(b, &ks) || store_batch_put_task(b, &t) ||
	    store_batch_put_sdstatus(b, &ev) ||
	    store_batch_put_idem(b, &idem, 100) ||
	    store_batch_claim_nonce(b, "sei-demo", "00FF", 100, 300) ||
	    store_batch_put_doc(b, STORE_DB_PROVIDER, "p1", doc))
		bail("populate batch");
	ks.se_id[0] = '\0';	/* a master set */
	if (store_batch_put_keyset(b, &ks))
		bail("master");
	is_int(store_batch_commit(st, b), 0, "populate a consistent store");
	json_decref(doc);
	store_idem_cleanup(&idem);
	store_task_cleanup(&t);
	store_keyset_cleanup(&ks);
	store_batch_free(b);
	store_close(st);
}

/* Plants records whose references dangle, through the raw API. */
static void
plant_dangling(void)
{
	struct store *st = open_rw();
	struct store_batch *b = NULL;
	struct store_ssd ssd = { .se_id = "DEAD", .sd_aid = AID,
	    .state = "CREATED", .mode = STORE_MODE_AMSD };
	struct store_sdstatus ev = { .se_id = SE, .sd_aid = "A0000001515353FF",
	    .status = "DELETED", .time = 9, .seq = 1 };
	struct store_task t;
	char k[STORE_KEY_MAX + 1];
	struct buf v;

	if (store_batch_new(&b) != 0)
		bail("batch");
	buf_init(&v);
	if (store_ssd_encode(&ssd, &v) != 0 || store_key_ssd(k, "DEAD", AID))
		bail("encode");
	is_int(store_batch_put(b, STORE_DB_SSD, k, strlen(k), v.p, v.len), 0,
	    "raw put: an SSD whose SE does not exist");
	buf_reset(&v);
	if (store_sdstatus_encode(&ev, &v) != 0)
		bail("encode");
	{
		char ek[STORE_KEY_MAX + 1];

		snprintf(ek, sizeof(ek), SE "|A0000001515353FF|%016X|%08X", 9, 1);
		is_int(store_batch_put(b, STORE_DB_SDSTATUS, ek, strlen(ek), v.p,
		    v.len), 0, "raw put: an sd-status event of an unknown SSD");
	}
	store_task_init(&t);
	snprintf(t.id, sizeof(t.id), "t-orphan");
	snprintf(t.se_id, sizeof(t.se_id), "BEEF");
	snprintf(t.kind, sizeof(t.kind), "SSD_DELETE");
	snprintf(t.state, sizeof(t.state), "PENDING");
	ok(store_batch_put_task(b, &t) == 0, "put: a task of an unknown SE");
	store_task_cleanup(&t);
	is_int(store_batch_commit(st, b), 0, "commit the bad records");
	buf_free(&v);
	store_batch_free(b);
	store_close(st);
}

/* Plants what the API cannot write: garbage, and an orphaned index entry. */
static void
plant_with_lmdb(void)
{
	MDB_env *env;
	MDB_txn *txn;
	MDB_dbi se, task;
	MDB_val k = { 4, "00EE" }, v = { 5, "\x01\x01\xff\xff\xff" };
	MDB_val tk = { 2, "t1" };

	if (mdb_env_create(&env) || mdb_env_set_maxdbs(env, 32) ||
	    mdb_env_open(env, sdir, 0, 0600) ||
	    mdb_txn_begin(env, NULL, 0, &txn) ||
	    mdb_dbi_open(txn, "by_se", 0, &se) ||
	    mdb_dbi_open(txn, "task", 0, &task))
		bail("lmdb");
	if (mdb_put(txn, se, &k, &v, 0) || mdb_del(txn, task, &tk, NULL) ||
	    mdb_txn_commit(txn))
		bail("lmdb write");
	mdb_env_close(env);
	ok(1, "planted an undecodable SE value and deleted task t1 behind the "
	    "index's back");
}

int
main(void)
{
	const char *cmds[] = { "--help", "store --help", "store check --help",
	    "store dump --help" };
	struct store_check_report rep;
	struct store *st = NULL;
	struct store_opts ro = { .readonly = 1 };
	struct buf out;
	FILE *devnull;
	char args[512];
	size_t i;
	int rc;

	log_init("store_check_test", LOG_ERR);
	snprintf(tmp, sizeof(tmp), "/tmp/sptsm-test-XXXXXX");
	if (mkdtemp(tmp) == NULL)
		bail("mkdtemp");
	snprintf(var, sizeof(var), "%s/var", tmp);
	snprintf(sdir, sizeof(sdir), "%s/tsm/store", var);
	buf_init(&out);
	if (access(testenv_bin("tsmctl"), X_OK) != 0)
		bail("%s not built", testenv_bin("tsmctl"));

	for (i = 0; i < ARRAY_LEN(cmds); i++) {
		rc = tsmctl(&out, cmds[i]);
		ok(rc == 0 && has(&out, "usage: tsmctl"), "tsmctl %s: exit 0, "
		    "usage text", cmds[i]);
	}
	ok(tsmctl(&out, "") == 2, "tsmctl without a command: exit 2");
	ok(tsmctl(&out, "store frob") == 2, "unknown store command: exit 2");
	snprintf(args, sizeof(args), "store check --var %s", var);
	rc = tsmctl(&out, args);
	ok(rc == 2 && has(&out, "cannot open"), "check without a store: exit 2, "
	    "says why");

	populate();
	rc = tsmctl(&out, args);
	ok(rc == 0 && has(&out, "0 problems"), "check of a consistent store: "
	    "exit 0, 0 problems");
	if (rc != 0)
		diag("%s", (char *)out.p);
	ok(has(&out, "2 expired"), "the expired nonce and idempotency records "
	    "are counted");

	snprintf(args, sizeof(args), "store dump --var %s", var);
	rc = tsmctl(&out, args);
	ok(rc == 0 && has(&out, "keyset " SE "|" AID "|30") &&
	    has(&out, "blob=len:35,sha256:"), "dump: key set shown with blob "
	    "length and hash");
	ok(!has(&out, "wrapped-bytes"), "dump: blob bytes never printed");
	ok(has(&out, "provider p1 {\"name\":\"ACME\"}"), "dump: documents as JSON");
	snprintf(args, sizeof(args), "store dump --var %s --db ssd", var);
	rc = tsmctl(&out, args);
	ok(rc == 0 && has(&out, "ssd " SE "|" AID " state=CREATED") &&
	    !has(&out, "keyset "), "dump --db ssd: only SSDs");
	snprintf(args, sizeof(args), "store dump --var %s --db nope", var);
	ok(tsmctl(&out, args) == 2 && has(&out, "unknown db"),
	    "dump --db nope: exit 2");

	plant_dangling();
	snprintf(args, sizeof(args), "store check --var %s", var);
	rc = tsmctl(&out, args);
	is_int(rc, 1, "check after planting: exit 1");
	ok(has(&out, "problem db=ssd key=DEAD|" AID ": SE DEAD missing"),
	    "reports the SSD whose SE is missing");
	ok(has(&out, "problem db=sdstatus") &&
	    has(&out, "SSD " SE "|A0000001515353FF missing"),
	    "reports the sd-status event of a missing SSD");
	ok(has(&out, "problem db=task key=t-orphan: SE BEEF missing"),
	    "reports the task of a missing SE");
	ok(has(&out, "3 problems"), "summary: 3 problems");
	if (!has(&out, "3 problems"))
		diag("%s", (char *)out.p);

	is_int(store_open(&st, sdir, &ro), 0, "library: open read-only");
	devnull = fopen("/dev/null", "w");
	ok(st && devnull && store_check(st, 0, devnull, &rep) == 0,
	    "library check runs");
	if (devnull)
		fclose(devnull);
	is_int(rep.problems, 3, "library check counts the same 3 problems");
	store_close(st);

	plant_with_lmdb();
	rc = tsmctl(&out, args);
	is_int(rc, 1, "check: exit 1");
	ok(has(&out, "problem db=se key=00EE: record does not decode"),
	    "reports the undecodable record");
	ok(has(&out, "problem db=task_by_se key=" SE "|RUNNING|t1: dangling"),
	    "reports the index entry of the deleted task");
	ok(has(&out, "problem db=ssd key=" SE "|" AID ": task t1 missing"),
	    "reports the SSD whose running task is gone");
	snprintf(args, sizeof(args), "store dump --var %s --db se", var);
	rc = tsmctl(&out, args);
	ok(rc == 0 && has(&out, "se 00EE UNDECODABLE len=5"),
	    "dump marks the undecodable record");

	buf_free(&out);
	testenv_cleanup(tmp);
	return done_testing();
}
