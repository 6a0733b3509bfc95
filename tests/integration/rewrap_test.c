/*
 * rewrap_test.c - storage KEK rotation with `kmsctl rewrap` against a real
 * token, a real kmsd and tsmd's real LMDB store: 400 key sets, rotate,
 * rewrap killed with SIGKILL in the middle (twice, at different points),
 * rerun to the end; every blob opens in kmsd with its original KCVs, none
 * is lost, all use the new version, the old version ends archived, and the
 * store checks clean.
 */
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kms/kms.h"
#include "kms/kmsd.h"
#include "tests/kmsenv.h"
#include "tests/tap.h"
#include "tsm/store/store.h"

#define N 400

static struct kmsenv E;
static uint8_t kcvs[N][3][3];

static int
run_kmsctl(const char *const *args)
{
	char cmd[2048];
	size_t off;
	int i;

	off = (size_t)snprintf(cmd, sizeof(cmd), "%s/bin/kmsctl --var %s "
	    "--insecure-pin-file %s", getenv("SPTSM_BUILD"), E.var, E.pinfile);
	for (i = 0; args[i] != NULL; i++)
		off += (size_t)snprintf(cmd + off, sizeof(cmd) - off, " %s", args[i]);
	snprintf(cmd + off, sizeof(cmd) - off, " >>%s/kmsctl.out 2>&1", E.dir);
	return system(cmd);
}

/* Starts rewrap and kills it once `after` key sets are reported done. */
static int
rewrap_killed(size_t after)
{
	char bin[512], buf[4096];
	int p[2], st;
	size_t seen = 0;
	ssize_t n;
	pid_t pid;

	snprintf(bin, sizeof(bin), "%s/bin/kmsctl", getenv("SPTSM_BUILD"));
	if (pipe(p) != 0)
		bail("pipe");
	pid = fork();
	if (pid == 0) {
		dup2(p[1], 2);
		close(p[0]);
		execl(bin, "kmsctl", "--var", E.var, "--insecure-pin-file", E.pinfile,
		    "rewrap", (char *)NULL);
		_exit(127);
	}
	close(p[1]);
	while ((n = read(p[0], buf, sizeof(buf) - 1)) > 0) {
		char *q;

		buf[n] = '\0';
		for (q = buf; (q = strstr(q, "] ")) != NULL; q += 2)
			seen = (size_t)strtoul(q + 2, NULL, 10);
		if (seen >= after) {
			kill(pid, SIGKILL);
			break;
		}
	}
	close(p[0]);
	waitpid(pid, &st, 0);
	return WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL;
}

struct count {
	uint32_t version;
	size_t   on, total;
};

static int
count_cb(void *arg, const uint8_t *key, size_t klen, const uint8_t *val,
    size_t vlen)
{
	struct count *c = arg;
	struct store_keyset ks;
	struct blob_head h;

	(void)key;
	(void)klen;
	store_keyset_init(&ks);
	if (store_keyset_decode(val, vlen, &ks) == 0 &&
	    keyset_peek(ks.blob.p, ks.blob.len, &h) == 0) {
		c->total++;
		c->on += h.version == c->version;
	}
	store_keyset_cleanup(&ks);
	return 0;
}

static void
counts(struct count *c, uint32_t version)
{
	struct store *st;

	char d[600];

	c->version = version;
	c->on = c->total = 0;
	snprintf(d, sizeof(d), "%s/tsm/store", E.var);
	if (store_open(&st, d, NULL) != 0 ||
	    store_iter(st, STORE_DB_KEYSET, NULL, 0, count_cb, c) != 0)
		bail("count");
	store_close(st);
}

int
main(void)
{
	static const char *const rotate[] = { "key", "rotate", "--label",
		"storage-kek", NULL };
	static const char *const rewrap[] = { "rewrap", NULL };
	struct kms_client *c;
	struct store *st;
	struct store_batch *b;
	struct count cnt;
	char sdir[600];
	size_t i, j, bad = 0;

	if (kmsenv_setup(&E, 0) != 0 || kmsenv_start(&E, NULL) != 0 ||
	    kms_connect(&c, E.sock, "rewrap-test") != 0)
		bail("fixture");
	snprintf(sdir, sizeof(sdir), "%s/tsm/store", E.var);
	if (mkdir_p(sdir, 0700) != 0 || store_open(&st, sdir, NULL) != 0 ||
	    store_batch_new(&b) != 0)
		bail("store");
	for (i = 0; i < N; i++) {
		struct store_keyset ks;
		struct kms_keyset_kcvs kc;

		store_keyset_init(&ks);
		snprintf(ks.se_id, sizeof(ks.se_id), "5653%04zX", i);
		snprintf(ks.sd_aid, sizeof(ks.sd_aid), "A0000001515350");
		ks.kvn = 0x30;
		ks.alg = KMS_ALG_AES128;
		snprintf(ks.usage, sizeof(ks.usage), "SCP03");
		if (kms_keyset_generate(c, KMS_ALG_AES128, KMS_KCV_GP, &ks.blob,
		    &kc) != 0)
			bail("generate: %s", kms_last_error(c));
		ks.n_keys = 3;
		for (j = 0; j < 3; j++) {
			ks.keys[j].usage = kc.usage[j];
			ks.keys[j].kcv_len = 3;
			memcpy(ks.keys[j].kcv, kc.kcv[j], 3);
			memcpy(kcvs[i][j], kc.kcv[j], 3);
		}
		store_batch_clear(b);
		if (store_batch_put_keyset(b, &ks) != 0 ||
		    store_batch_commit(st, b) != 0)
			bail("put");
		store_keyset_cleanup(&ks);
	}
	store_batch_free(b);
	store_close(st);
	counts(&cnt, 1);
	ok(cnt.total == N && cnt.on == N, "%d key sets under storage-kek v1", N);

	ok(run_kmsctl(rotate) == 0, "storage KEK rotated to v2");
	ok(rewrap_killed(64), "rewrap killed with SIGKILL after its first batch");
	counts(&cnt, 2);
	ok(cnt.total == N && cnt.on > 0 && cnt.on < N,
	    "partly done: %zu of %zu on v2, none lost", cnt.on, cnt.total);
	ok(rewrap_killed(cnt.on + 130), "killed again further on");
	counts(&cnt, 2);
	ok(cnt.total == N && cnt.on < N, "still partial (%zu on v2), none lost",
	    cnt.on);
	ok(run_kmsctl(rewrap) == 0, "rewrap run again to the end");
	counts(&cnt, 2);
	ok(cnt.total == N && cnt.on == N, "all %zu key sets on v2", cnt.on);

	/* Every blob opens through kmsd with the KCVs it had. */
	if (store_open(&st, sdir, NULL) != 0)
		bail("store");
	for (i = 0; i < N; i++) {
		struct store_keyset ks;
		struct kms_keyset ko;
		char se[32];

		snprintf(se, sizeof(se), "5653%04zX", i);
		store_keyset_init(&ks);
		if (store_keyset_get(st, se, "A0000001515350", 0x30, &ks) != 0 ||
		    kms_keyset_open(c, ks.blob.p, ks.blob.len, 0, &ko) != 0 ||
		    memcmp(ko.kcv[0], kcvs[i][0], 3) != 0 ||
		    memcmp(ko.kcv[1], kcvs[i][1], 3) != 0 ||
		    memcmp(ko.kcv[2], kcvs[i][2], 3) != 0)
			bad++;
		else
			for (j = 0; j < ko.n; j++)
				if (kms_handle_close(c, ko.handle[j]) != 0)
					bad++;
		store_keyset_cleanup(&ks);
	}
	ok(bad == 0, "every key set opens in kmsd with its original KCVs "
	    "(%zu bad)", bad);
	{
		struct store_check_report rep;
		FILE *devnull = fopen("/dev/null", "w");

		ok(store_check(st, (uint64_t)wall_seconds(), devnull, &rep) == 0,
		    "store check clean");
		fclose(devnull);
	}
	store_close(st);
	{
		struct kms_key_info ki;
		struct kms_client *cu;

		if (kms_connect(&cu, E.csock, "cu") != 0)
			bail("custodian");
		ok(kms_key_info(cu, (struct kms_ref){ "storage-kek", 1, 0 }, &ki) == 0 &&
		    ki.state == KMS_ST_DEACTIVATED, "storage-kek v1 archived");
		ok(kms_key_info(cu, KMS_LABEL("storage-kek"), &ki) == 0 &&
		    ki.version == 2 && ki.state == KMS_ST_ACTIVE, "v2 current");
		kms_close(cu);
	}
	ok(run_kmsctl(rewrap) == 0, "a further rewrap finds nothing to do");
	kms_close(c);
	kmsenv_cleanup(&E);
	return done_testing();
}
