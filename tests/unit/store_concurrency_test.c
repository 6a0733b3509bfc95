/*
 * store_concurrency_test.c - group commit under load on real LMDB: 8 x 500
 * batches (some failing a condition) beside a reader: all acked present,
 * failed ones absent, commits < batches (batching factor reported); reads
 * beside commits see every acknowledged one (kept read txns); map-full
 * batches fail alone inside a group; racing nonce claims: exactly one wins.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kms/base.h"
#include "tests/tap.h"
#include "tests/testenv.h"
#include "tsm/store/store.h"

#define THREADS 8
#define PER_THREAD 500
#define NONCES 300

static struct store *st;
static atomic_int writers_done;
static int results[THREADS][PER_THREAD];

static void
se_id(char *out, size_t cap, int t, int i)
{
	snprintf(out, cap, "5E%02X%04X", t, i);
}

static void *
writer(void *arg)
{
	int t = (int)(intptr_t)arg, i;
	struct store_batch *b = NULL;
	struct store_se se;
	struct store_ssd ssd;
	char k[STORE_KEY_MAX + 1], prev[32];

	if (store_batch_new(&b) != 0)
		return NULL;
	for (i = 0; i < PER_THREAD; i++) {
		store_batch_clear(b);
		memset(&se, 0, sizeof(se));
		se_id(se.se_id, sizeof(se.se_id), t, i);
		snprintf(se.state, sizeof(se.state), "ACTIVE");
		memset(&ssd, 0, sizeof(ssd));
		se_id(ssd.se_id, sizeof(ssd.se_id), t, i);
		snprintf(ssd.sd_aid, sizeof(ssd.sd_aid), "A000000151535300");
		snprintf(ssd.state, sizeof(ssd.state), "CREATED");
		ssd.mode = STORE_MODE_AMSD;
		if (store_batch_put_se(b, &se) != 0 ||
		    store_batch_put_ssd(b, &ssd) != 0) {
			results[t][i] = ERR_INTERNAL;
			continue;
		}
		/* Every 10th batch carries a condition that fails: the SE of
		 * the previous batch must be absent, and it is not. */
		if (i > 0 && i % 10 == 0) {
			se_id(prev, sizeof(prev), t, i - 1);
			if (store_key_se(k, prev) != 0 ||
			    store_batch_require_absent(b, STORE_DB_SE, k,
			    strlen(k)) != 0) {
				results[t][i] = ERR_INTERNAL;
				continue;
			}
		}
		results[t][i] = store_batch_commit(st, b);
	}
	store_batch_free(b);
	atomic_fetch_add(&writers_done, 1);
	return NULL;
}

static int
count_ssd(void *arg, const struct store_ssd *r)
{
	(*(long *)arg)++;
	return 0;
}

/* Reads while the writers write: every snapshot iterates cleanly. */
static void *
reader(void *arg)
{
	long *errors = arg, n;

	while (atomic_load(&writers_done) < THREADS) {
		n = 0;
		if (store_ssd_iter(st, NULL, count_ssd, &n) != 0)
			(*errors)++;
		usleep(2000);	/* leave the 2 cores to the writers */
	}
	return NULL;
}

static atomic_int wins[NONCES];
static atomic_int nonce_errors;

static void *
nonce_racer(void *arg)
{
	int t = (int)(intptr_t)arg, i, j, rc;
	char nonce[40];

	for (j = 0; j < NONCES; j++) {
		/* Each thread walks the nonces from a different start. */
		i = (j + t * 37) % NONCES;
		snprintf(nonce, sizeof(nonce), "%032X", i);
		rc = store_nonce_check_and_put(st, "racer", nonce, 1000, 300);
		if (rc == 0)
			atomic_fetch_add(&wins[i], 1);
		else if (rc != ERR_EXISTS)
			atomic_fetch_add(&nonce_errors, 1);
	}
	return NULL;
}

/* ---- fresh snapshots from kept read txns ---------------------------------
 * More readers than the store keeps read txns for (some are renewed, some
 * begun and aborted), each reading right after a commit it knows of: a
 * renewed txn must see every commit acknowledged before it. */

#define FRESH_READERS 12
#define FRESH_SES     300

static atomic_int fresh_acked = -1, fresh_stop, fresh_stale, fresh_reads;

static void *
fresh_reader(void *arg)
{
	struct store_se se;
	char id[32];
	int i;

	(void)arg;
	while (!atomic_load(&fresh_stop)) {
		if ((i = atomic_load(&fresh_acked)) < 0)
			continue;
		snprintf(id, sizeof(id), "5EFF%04X", i);
		if (store_se_get(st, id, &se) != 0)
			atomic_fetch_add(&fresh_stale, 1);
		atomic_fetch_add(&fresh_reads, 1);
	}
	return NULL;
}

static void
test_fresh_reads(void)
{
	pthread_t th[FRESH_READERS];
	struct store_batch *b = NULL;
	struct store_se se;
	int t, i, fails = 0;

	if (store_batch_new(&b) != 0)
		bail("batch");
	for (t = 0; t < FRESH_READERS; t++)
		if (pthread_create(&th[t], NULL, fresh_reader, NULL) != 0)
			bail("thread");
	for (i = 0; i < FRESH_SES; i++) {
		store_batch_clear(b);
		memset(&se, 0, sizeof(se));
		snprintf(se.se_id, sizeof(se.se_id), "5EFF%04X", i);
		snprintf(se.state, sizeof(se.state), "ACTIVE");
		if (store_batch_put_se(b, &se) != 0 ||
		    store_batch_commit(st, b) != 0)
			fails++;
		else
			atomic_store(&fresh_acked, i);
	}
	atomic_store(&fresh_stop, 1);
	for (t = 0; t < FRESH_READERS; t++)
		pthread_join(th[t], NULL);
	store_batch_free(b);
	is_int(fails, 0, "%d commits beside %d readers", FRESH_SES,
	    FRESH_READERS);
	ok(atomic_load(&fresh_reads) > FRESH_SES, "the readers read (%d reads)",
	    atomic_load(&fresh_reads));
	is_int(atomic_load(&fresh_stale), 0, "every read after an acknowledged "
	    "commit sees it (renewed read txns are fresh)");
}

/* ---- map full inside a group -------------------------------------------- */

static struct store *small;
static atomic_int small_bad, big_bad;

static void *
small_writer(void *arg)
{
	int t = (int)(intptr_t)arg, i;
	struct store_batch *b = NULL;
	struct store_se se;

	if (store_batch_new(&b) != 0)
		return NULL;
	for (i = 0; i < 100; i++) {
		store_batch_clear(b);
		memset(&se, 0, sizeof(se));
		snprintf(se.se_id, sizeof(se.se_id), "5A%02X%04X", t, i);
		if (store_batch_put_se(b, &se) != 0 ||
		    store_batch_commit(small, b) != 0)
			atomic_fetch_add(&small_bad, 1);
	}
	store_batch_free(b);
	return NULL;
}

/* 40 key sets of 60 KB: 2.4 MB, more than the whole 1 MB map. */
static void *
big_writer(void *arg)
{
	struct store_batch *b = NULL;
	struct store_keyset ks;
	int i, round;

	if (store_batch_new(&b) != 0)
		return NULL;
	store_keyset_init(&ks);
	snprintf(ks.se_id, sizeof(ks.se_id), "B16B16");
	snprintf(ks.sd_aid, sizeof(ks.sd_aid), "A000000151535300");
	snprintf(ks.usage, sizeof(ks.usage), "SCP03");
	ks.n_keys = 1;
	ks.keys[0].kcv_len = 3;
	for (i = 0; i < 60000; i++)
		if (buf_put_u8(&ks.blob, (uint8_t)i) != 0)
			return NULL;
	for (round = 0; round < 20; round++) {
		store_batch_clear(b);
		for (i = 1; i <= 40; i++) {
			ks.kvn = (uint8_t)i;
			if (store_batch_put_keyset(b, &ks) != 0)
				return NULL;
		}
		if (store_batch_commit(small, b) != ERR_LIMIT)
			atomic_fetch_add(&big_bad, 1);
	}
	store_keyset_cleanup(&ks);
	store_batch_free(b);
	return NULL;
}

static void
test_map_full_in_group(const char *tmp)
{
	struct store_opts o = { .map_size = 1 << 20 };
	struct store_check_report rep;
	struct store_stats s;
	pthread_t th[THREADS];
	char dir[128];
	int t, rc;

	snprintf(dir, sizeof(dir), "%s/small", tmp);
	if (store_open(&small, dir, &o) != 0)
		bail("open small");
	for (t = 0; t < THREADS; t++)
		if (pthread_create(&th[t], NULL, t ? small_writer : big_writer,
		    (void *)(intptr_t)t) != 0)
			bail("thread");
	for (t = 0; t < THREADS; t++)
		pthread_join(th[t], NULL);
	store_stats_get(small, &s);
	is_int(atomic_load(&big_bad), 0, "map full: every oversized batch got "
	    "ERR_LIMIT");
	is_int(atomic_load(&small_bad), 0, "map full: all %d small batches "
	    "committed meanwhile", (THREADS - 1) * 100);
	ok(s.max_group > 1, "map full: batches were grouped (max group %llu, "
	    "%llu commits for %llu batches)", (unsigned long long)s.max_group,
	    (unsigned long long)s.commits, (unsigned long long)s.batches);
	rc = store_check(small, 0, stderr, &rep);
	ok(rc == 0 && rep.problems == 0 && rep.records ==
	    1 + (uint64_t)(THREADS - 1) * 100, "map full: check clean, exactly "
	    "the small records stored (%llu)", (unsigned long long)rep.records);
	store_close(small);
}

int
main(void)
{
	pthread_t th[THREADS], rd;
	struct store_stats s0, s1;
	struct store_check_report rep;
	struct store_se se;
	struct store_ssd ssd;
	char tmp[64], dir[128], id[32];
	long read_errors = 0;
	int t, i, acked = 0, failed_ok = 0, missing = 0, leaked = 0, other = 0;
	int once = 0, never = 0, twice = 0;
	uint64_t t0, ms;

	log_init("store_concurrency_test", LOG_ERR);
	snprintf(tmp, sizeof(tmp), "/tmp/sptsm-test-XXXXXX");
	if (mkdtemp(tmp) == NULL)
		bail("mkdtemp");
	snprintf(dir, sizeof(dir), "%s/store", tmp);
	if (store_open(&st, dir, NULL) != 0)
		bail("open");

	store_stats_get(st, &s0);
	t0 = now_ms();
	if (pthread_create(&rd, NULL, reader, &read_errors) != 0)
		bail("thread");
	for (t = 0; t < THREADS; t++)
		if (pthread_create(&th[t], NULL, writer, (void *)(intptr_t)t))
			bail("thread");
	for (t = 0; t < THREADS; t++)
		pthread_join(th[t], NULL);
	pthread_join(rd, NULL);
	ms = now_ms() - t0;
	store_stats_get(st, &s1);

	for (t = 0; t < THREADS; t++)
		for (i = 0; i < PER_THREAD; i++) {
			int expect_fail = i > 0 && i % 10 == 0;
			int have;

			se_id(id, sizeof(id), t, i);
			have = store_se_get(st, id, &se) == 0 &&
			    store_ssd_get(st, id, "A000000151535300", &ssd) == 0;
			if (results[t][i] == 0) {
				acked++;
				missing += !have;
			} else if (results[t][i] == ERR_EXISTS && expect_fail) {
				failed_ok++;
				leaked += store_se_get(st, id, &se) == 0 ||
				    store_ssd_get(st, id, "A000000151535300",
				    &ssd) == 0;
			} else
				other++;
			if (results[t][i] == 0 && expect_fail)
				other++;
		}
	is_int(other, 0, "every batch got its expected result");
	is_int(acked, THREADS * PER_THREAD - THREADS * ((PER_THREAD - 1) / 10),
	    "%d batches acknowledged", acked);
	is_int(missing, 0, "every acknowledged batch is present (both records)");
	is_int(failed_ok, THREADS * ((PER_THREAD - 1) / 10),
	    "%d batches failed their condition with ERR_EXISTS", failed_ok);
	is_int(leaked, 0, "no op of a failed batch was written");
	is_int(read_errors, 0, "concurrent readers saw no error");
	{
		uint64_t batches = s1.batches - s0.batches;
		uint64_t commits = s1.commits - s0.commits;

		ok(batches == THREADS * PER_THREAD,
		    "writer counted %llu batches", (unsigned long long)batches);
		ok(commits < batches, "group commit: %llu commits for %llu "
		    "batches", (unsigned long long)commits,
		    (unsigned long long)batches);
		diag("batching factor %.2f (max group %llu), %.0f batches/s "
		    "durable", commits ? (double)batches / (double)commits : 0.0,
		    (unsigned long long)s1.max_group,
		    ms ? 1000.0 * (double)batches / (double)ms : 0.0);
	}
	i = store_check(st, 0, stderr, &rep);
	ok(i == 0 && rep.problems == 0,
	    "check clean after the run (%llu records)",
	    (unsigned long long)rep.records);

	/* Nonce atomicity. */
	for (t = 0; t < THREADS; t++)
		if (pthread_create(&th[t], NULL, nonce_racer, (void *)(intptr_t)t))
			bail("thread");
	for (t = 0; t < THREADS; t++)
		pthread_join(th[t], NULL);
	for (i = 0; i < NONCES; i++) {
		int w = atomic_load(&wins[i]);

		once += w == 1;
		never += w == 0;
		twice += w > 1;
	}
	is_int(atomic_load(&nonce_errors), 0, "nonce racers: no errors");
	is_int(once, NONCES, "each of %d nonces won exactly once by %d racing "
	    "threads", NONCES, THREADS);
	is_int(twice, 0, "no nonce accepted twice");
	is_int(never, 0, "no nonce lost");

	test_fresh_reads();
	store_close(st);
	test_map_full_in_group(tmp);
	testenv_cleanup(tmp);
	return done_testing();
}
