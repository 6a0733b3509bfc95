/*
 * store_bench.c - durable single-record commits/s of tsmd's store, from 1
 * thread and from 8 through group commit (a call returns once its batch is
 * synced), in a temp dir under $SPTSM_TOP/build (a real disk). Prints
 *   store_commit threads=N per_s=NNNN batch_factor=X.X
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kms/base.h"
#include "tsm/store/store.h"

static struct store *st;
static int per_thread;
static int failures;
static pthread_mutex_t fail_mu = PTHREAD_MUTEX_INITIALIZER;

/* A key-sync sized record: a key set with a ~120-byte blob. */
static void *
run(void *arg)
{
	int t = (int)(intptr_t)arg, i, rc;
	struct store_batch *b = NULL;
	struct store_keyset ks;

	if (store_batch_new(&b) != 0)
		return NULL;
	store_keyset_init(&ks);
	snprintf(ks.sd_aid, sizeof(ks.sd_aid), "A000000151535300");
	snprintf(ks.usage, sizeof(ks.usage), "SCP03");
	ks.kvn = 0x30;
	ks.n_keys = 3;
	for (i = 0; i < 3; i++)
		ks.keys[i].kcv_len = 3;
	for (i = 0; i < 120; i++)
		if (buf_put_u8(&ks.blob, (uint8_t)i) != 0)
			return NULL;
	for (i = 0; i < per_thread; i++) {
		store_batch_clear(b);
		snprintf(ks.se_id, sizeof(ks.se_id), "%02X%08X", t, i);
		if ((rc = store_batch_put_keyset(b, &ks)) == 0)
			rc = store_batch_commit(st, b);
		if (rc != 0) {
			pthread_mutex_lock(&fail_mu);
			failures++;
			pthread_mutex_unlock(&fail_mu);
		}
	}
	store_keyset_cleanup(&ks);
	store_batch_free(b);
	return NULL;
}

static void
bench(int threads, int total)
{
	pthread_t th[64];
	struct store_stats s0, s1;
	uint64_t t0, us;
	double batches, commits;
	int i;

	per_thread = total / threads;
	store_stats_get(st, &s0);
	t0 = now_us();
	for (i = 0; i < threads; i++)
		if (pthread_create(&th[i], NULL, run, (void *)(intptr_t)i) != 0) {
			fprintf(stderr, "store_bench: thread\n");
			exit(1);
		}
	for (i = 0; i < threads; i++)
		pthread_join(th[i], NULL);
	us = now_us() - t0;
	store_stats_get(st, &s1);
	batches = (double)(s1.batches - s0.batches);
	commits = (double)(s1.commits - s0.commits);
	printf("store_commit threads=%d per_s=%.0f batch_factor=%.1f\n", threads,
	    batches * 1e6 / (double)(us ? us : 1), commits ? batches / commits : 0);
	fflush(stdout);
}

int
main(int argc, char **argv)
{
	const char *top = getenv("SPTSM_TOP"), *n_env = getenv("STORE_BENCH_N");
	char tmp[1024], dir[1100], cmd[1200];
	int n = n_env ? atoi(n_env) : 4000, rc;

	log_init("store_bench", LOG_WARN);
	if (n < 8)
		n = 8;
	/* Next to the build tree: a real disk, so fsync costs what it costs. */
	snprintf(tmp, sizeof(tmp), "%s/build/store-bench-XXXXXX", top ? top : ".");
	if (mkdtemp(tmp) == NULL) {
		perror("store_bench: mkdtemp");
		return 1;
	}
	snprintf(dir, sizeof(dir), "%s/store", tmp);
	if ((rc = store_open(&st, dir, NULL)) != 0) {
		fprintf(stderr, "store_bench: open: %s\n", err_str(rc));
		return 1;
	}
	bench(1, n / 2);
	bench(8, n);
	store_close(st);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmp);
	(void)!system(cmd);
	if (failures) {
		fprintf(stderr, "store_bench: %d commits failed\n", failures);
		return 1;
	}
	return 0;
}
