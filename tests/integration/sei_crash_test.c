/*
 * sei_crash_test.c - kill -9 of tsmd during a stream of key syncs from
 * several threads, in rounds (the last one a SIGTERM, which must stop it
 * cleanly with key syncs handed off in flight): afterwards the store
 * checks clean and every acknowledged key set is stored and opens in
 * kmsd with its KCVs; tsmd restarts on the same store and serves again.
 */
#include <pthread.h>
#include <signal.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <jansson.h>

#include "kms/kms.h"
#include "tsm/store/store.h"
#include "tests/kmsenv.h"
#include "tests/tap.h"
#include "tests/integration/sei_peer.h"

#define THREADS 4
#define ROUNDS  4	/* the last one stops tsmd with SIGTERM */
#define PER_THREAD 20000

static struct kmsenv E;
static char var[400], cfgf[400], logpath[400], addr[64], base[100], ca[500],
    storedir[500];
static int stop_flag;	/* __atomic: the main thread ends the stream */

struct acked {
	char    se[17];
	uint8_t kcv[3][3];
};

struct worker {
	pthread_t     t;
	int           round, id;
	size_t        n;		/* acknowledged */
	long          sent, errors, refused;
	struct acked *a;
};

static void *
run(void *arg)
{
	struct worker *w = arg;
	CURL *h = curl_easy_init();
	struct sp_keyset ks;
	struct sp_resp r;
	char body[1024], sig[300], nonce[33], se[17];
	size_t i;
	int len;

	for (i = 0; !__atomic_load_n(&stop_flag, __ATOMIC_RELAXED) &&
	    w->n < PER_THREAD; i++) {
		snprintf(se, sizeof(se), "%02X%02X%012zX", w->round, w->id, i);
		if (sp_keyset_new(&ks, 16, kmsenv_kek128, 16, 0) != 0)
			break;
		len = snprintf(body, sizeof(body), "{\"seiTsmId\":\"SEI-TEST\","
		    "\"SsdAid\":\"A0000001515350\",\"encryptedKey\":[\"%s\",\"%s\","
		    "\"%s\"],\"Alg\":\"AES-128\",\"Usage\":\"SCP03\",\"checkValue\":"
		    "[\"%s\",\"%s\",\"%s\"],\"seId\":\"%s\"}", ks.wrapped[0],
		    ks.wrapped[1], ks.wrapped[2], ks.kcv[0], ks.kcv[1], ks.kcv[2], se);
		sp_nonce(nonce);
		sp_sign(kmsenv_mac, 32, "test-mac", SP_KEYSYNC,
		    (long long)wall_seconds(), nonce, body, sig, sizeof(sig));
		w->sent++;
		if (sp_post(h, base, ca, SP_KEYSYNC, body, (size_t)len, sig, &r) != 0) {
			w->errors++;
			sp_resp_free(&r);
			usleep(20000);	/* tsmd is gone: wait for the stop */
			continue;
		}
		if (r.code == 200 && r.body.len > 14 &&
		    memcmp(r.body.p, "{\"resultCode\":0,", 16) == 0) {
			struct acked *a = &w->a[w->n++];
			size_t got;
			int k;

			memcpy(a->se, se, sizeof(se));
			for (k = 0; k < 3; k++)
				if (hex_decode(ks.kcv[k], 6, a->kcv[k], 3, &got) != 0)
					abort();
		} else
			w->refused++;
		sp_resp_free(&r);
	}
	curl_easy_cleanup(h);
	return NULL;
}

static pid_t
start_tsmd(void)
{
	pid_t pid = sp_tsmd_start(var, cfgf, E.sock, logpath, "warn", addr,
	    sizeof(addr));

	if (pid < 0)
		bail("tsmd did not start (%s)", logpath);
	snprintf(base, sizeof(base), "https://%s", addr);
	return pid;
}

/* Every acknowledged set is stored and opens in kmsd with its KCVs. */
static void
verify(struct worker *w, int round)
{
	struct store_opts o = { .readonly = 1 };
	struct store_check_report rep;
	struct kms_client *c;
	struct store *st;
	size_t total = 0, present = 0, opened = 0, i, k;
	int t, rc;

	if (store_open(&st, storedir, &o) != 0)
		bail("store_open read-only");
	rc = store_check(st, (uint64_t)wall_seconds(), stderr, &rep);
	ok(rc == 0 && rep.problems == 0, "round %d: store_check clean after "
	    "the stop (%llu records)", round, (unsigned long long)rep.records);
	{
		int krc = kms_connect(&c, E.sock, "sei-crash");

		if (krc != 0)
			bail("kms_connect: %s (errno %d; kmsd log %s)",
			    err_name(krc), errno, E.log);
	}
	for (t = 0; t < THREADS; t++) {
		for (i = 0; i < w[t].n; i++) {
			struct store_keyset r;
			struct kms_keyset ks;
			int good;

			total++;
			store_keyset_init(&r);
			if (store_keyset_get(st, w[t].a[i].se, "A0000001515350", 0x30,
			    &r) == 0) {
				present++;
				good = r.n_keys == 3;
				for (k = 0; k < 3 && good; k++)
					good = r.keys[k].kcv_len == 3 &&
					    memcmp(r.keys[k].kcv, w[t].a[i].kcv[k], 3) == 0;
				if (good && kms_keyset_open(c, r.blob.p, r.blob.len, 0,
				    &ks) == 0) {
					for (k = 0; k < ks.n; k++) {
						good &= memcmp(ks.kcv[k], w[t].a[i].kcv[k],
						    3) == 0;
						(void)!kms_handle_close(c, ks.handle[k]);
					}
					opened += good && ks.n == 3;
				}
			}
			store_keyset_cleanup(&r);
		}
	}
	kms_close(c);
	store_close(st);
	ok(total > 0, "round %d: %zu key syncs acknowledged before the stop",
	    round, total);
	is_int((long)present, (long)total, "round %d: every acknowledged key set "
	    "is in the store", round);
	is_int((long)opened, (long)total, "round %d: every one opens in kmsd "
	    "with its KCVs", round);
}

int
main(void)
{
	struct worker w[THREADS];
	char doc[800];
	pid_t pid;
	int round, t, st;
	long sent, errors, refused;

	curl_global_init(CURL_GLOBAL_DEFAULT);
	srand((unsigned)getpid());
	if (kmsenv_setup(&E, 0) != 0)
		bail("kmsenv_setup");
	if (kmsenv_start(&E, NULL) != 0)
		bail("kmsd did not start (%s)", E.log);
	snprintf(var, sizeof(var), "%s/tsmvar", E.dir);
	snprintf(cfgf, sizeof(cfgf), "%s/tsmd.json", E.dir);
	snprintf(logpath, sizeof(logpath), "%s/tsmd.log", E.dir);
	snprintf(ca, sizeof(ca), "%s/ca.pem", var);
	snprintf(storedir, sizeof(storedir), "%s/tsm/store", var);
	snprintf(doc, sizeof(doc), "{\"peers\": [{\"seiTsmId\": \"SEI-TEST\", "
	    "\"tenantId\": \"SP-1\", \"baseUrl\": \"http://127.0.0.1:9\", "
	    "\"wrap\": \"AES-KW\", \"kcvMethod\": \"GP\", \"transportKek\": "
	    "\"peer/test/kek\", \"macKeyId\": \"test-mac\", \"macKey\": "
	    "\"peer/test/mac\", \"clientCertRequired\": false}], "
	    "\"limits\": {\"drainTimeoutMs\": 1000}}");
	if (file_write_atomic(cfgf, doc, strlen(doc), 0600) != 0)
		bail("config");

	for (round = 1; round <= ROUNDS; round++) {
		pid = start_tsmd();
		__atomic_store_n(&stop_flag, 0, __ATOMIC_RELAXED);
		for (t = 0; t < THREADS; t++) {
			memset(&w[t], 0, sizeof(w[t]));
			w[t].round = round;
			w[t].id = t;
			if ((w[t].a = calloc(PER_THREAD, sizeof(*w[t].a))) == NULL)
				bail("nomem");
			pthread_create(&w[t].t, NULL, run, &w[t]);
		}
		/* kill at a random moment of the stream */
		usleep((useconds_t)(400000 + rand() % 1200000));
		if (round < ROUNDS) {
			kill(pid, SIGKILL);
			waitpid(pid, &st, 0);
			ok(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL, "round %d: "
			    "tsmd killed with SIGKILL mid-stream", round);
		} else {
			uint64_t t0 = now_ms();

			kill(pid, SIGTERM);
			waitpid(pid, &st, 0);
			ok(WIFEXITED(st) && WEXITSTATUS(st) == 0, "round %d: SIGTERM "
			    "mid-stream (key syncs in flight, handed off): tsmd "
			    "exits 0 after %llu ms", round,
			    (unsigned long long)(now_ms() - t0));
		}
		usleep(100000);
		__atomic_store_n(&stop_flag, 1, __ATOMIC_RELAXED);
		sent = errors = refused = 0;
		for (t = 0; t < THREADS; t++) {
			pthread_join(w[t].t, NULL);
			sent += w[t].sent;
			errors += w[t].errors;
			refused += w[t].refused;
		}
		diag("round %d: %ld sent, %ld cut off, %ld not acknowledged", round,
		    sent, errors, refused);
		verify(w, round);
		for (t = 0; t < THREADS; t++)
			free(w[t].a);
	}

	/* tsmd comes back on the same store and serves */
	{
		struct sp_keyset ks;
		struct sp_resp r;
		char body[1024], sig[300], nonce[33];
		CURL *h = curl_easy_init();
		int len;

		pid = start_tsmd();
		sp_keyset_new(&ks, 16, kmsenv_kek128, 16, 0);
		len = snprintf(body, sizeof(body), "{\"seiTsmId\":\"SEI-TEST\","
		    "\"SsdAid\":\"A0000001515350\",\"encryptedKey\":[\"%s\",\"%s\","
		    "\"%s\"],\"Alg\":\"AES-128\",\"Usage\":\"SCP03\",\"checkValue\":"
		    "[\"%s\",\"%s\",\"%s\"],\"seId\":\"FFFF000000000001\"}",
		    ks.wrapped[0], ks.wrapped[1], ks.wrapped[2], ks.kcv[0], ks.kcv[1],
		    ks.kcv[2]);
		sp_nonce(nonce);
		sp_sign(kmsenv_mac, 32, "test-mac", SP_KEYSYNC,
		    (long long)wall_seconds(), nonce, body, sig, sizeof(sig));
		ok(sp_post(h, base, ca, SP_KEYSYNC, body, (size_t)len, sig, &r) == 0 &&
		    r.code == 200, "after the rounds tsmd serves key syncs again");
		sp_resp_free(&r);
		curl_easy_cleanup(h);
		kill(pid, SIGTERM);
		waitpid(pid, &st, 0);
		ok(WIFEXITED(st) && WEXITSTATUS(st) == 0, "SIGTERM: tsmd exits 0");
	}
	kmsenv_stop(&E, 0);
	if (tap_failed == 0)
		kmsenv_cleanup(&E);
	else
		diag("kept %s", E.dir);
	curl_global_cleanup();
	return done_testing();
}
