/*
 * kmsconn.c - one kmsd client per tsmd worker thread (thread-local, connected
 * lazily, closed when the thread exits) and the kmsd health that /healthz
 * and /metrics report, kept fresh by a thread of its own so that they
 * answer from memory and never wait on kmsd. Runs in tsmd; trusts kmsd.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tsm/http/http_int.h"

#define RETRY_MS  1000		/* between failed connects, per thread */
#define HEALTH_MS 1000		/* cache lifetime of the kmsd state */
#define STALE_MS  3000		/* a probe unfinished this long: kmsd hangs */

static char sock_path[108];
static pthread_key_t tl_key;
static pthread_once_t tl_once = PTHREAD_ONCE_INIT;
static __thread struct kms_client *tl_client;
static __thread uint64_t tl_retry_ms;

static pthread_once_t health_once = PTHREAD_ONCE_INIT;
static int health_state = ERR_IO;
static uint64_t health_begun_ms;	/* the probe under way began, or 0 */
static unsigned health_probes;		/* finished; written by one thread */

static void
tl_destroy(void *p)
{
	kms_close(p);
}

static void
tl_init(void)
{
	(void)pthread_key_create(&tl_key, tl_destroy);
}

int
tsm_kms_init(const char *path)
{
	if (path == NULL || strlen(path) >= sizeof(sock_path))
		return ERR_INVAL;
	strcpy(sock_path, path);
	pthread_once(&tl_once, tl_init);
	return 0;
}

struct kms_client *
tsm_kms(void)
{
	uint64_t t0, now;
	int rc;

	if (tl_client != NULL)
		return tl_client;
	if (sock_path[0] == '\0')
		return NULL;
	now = now_ms();
	if (tl_retry_ms != 0 && now < tl_retry_ms)
		return NULL;
	t0 = now_us();
	rc = kms_connect(&tl_client, sock_path, "tsmd");
	tsm_kms_observe(KMS_OP_HELLO, (double)(now_us() - t0) / 1e6, rc);
	if (rc != 0) {
		tl_client = NULL;
		tl_retry_ms = now + RETRY_MS;
		log_msg(LOG_DEBUG, "event=kms_connect_failed path=%s err=%s",
		    sock_path, err_name(rc));
		return NULL;
	}
	tl_retry_ms = 0;
	/* The key's destructor closes it when the worker thread ends. */
	(void)pthread_setspecific(tl_key, tl_client);
	return tl_client;
}

/* Closes the calling thread's client (the main thread at exit). */
void
tsm_kms_cleanup(void)
{
	if (tl_client != NULL) {
		(void)pthread_setspecific(tl_key, NULL);
		kms_close(tl_client);
		tl_client = NULL;
	}
}

static int
health_probe(void)
{
	struct kms_client *c = tsm_kms();
	struct kms_status st;
	uint64_t t0;
	int rc;

	if (c == NULL)
		return ERR_IO;
	t0 = now_us();
	rc = kms_status(c, &st);
	tsm_kms_observe(KMS_OP_STATUS, (double)(now_us() - t0) / 1e6, rc);
	if (rc == ERR_SEALED || (rc == 0 && st.sealed))
		return ERR_SEALED;
	return rc == 0 ? 0 : ERR_IO;
}

static void
health_probe_once(void)
{
	__atomic_store_n(&health_begun_ms, now_ms(), __ATOMIC_RELAXED);
	__atomic_store_n(&health_state, health_probe(), __ATOMIC_RELAXED);
	__atomic_store_n(&health_begun_ms, 0, __ATOMIC_RELAXED);
	__atomic_store_n(&health_probes, health_probes + 1, __ATOMIC_RELEASE);
}

static void *
health_main(void *arg)
{
	(void)arg;
	for (;;) {
		health_probe_once();
		usleep(HEALTH_MS * 1000);
	}
	return NULL;
}

/* A detached thread (with its own kmsd connection) probes at once, then
 * once a HEALTH_MS; the first caller waits for that first probe, but not
 * longer than STALE_MS (a hung kmsd does not hold tsmd's start for the
 * 30 s call timeout). Without the thread, the caller probes itself. */
static void
health_start(void)
{
	pthread_attr_t a;
	pthread_t t;
	uint64_t until;
	int started;

	__atomic_store_n(&health_begun_ms, now_ms(), __ATOMIC_RELAXED);
	started = pthread_attr_init(&a) == 0;
	if (started) {
		(void)pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
		started = pthread_create(&t, &a, health_main, NULL) == 0;
		(void)pthread_attr_destroy(&a);
	}
	if (!started) {
		log_msg(LOG_ERR, "event=kms_health_thread_failed");
		health_probe_once();
		return;
	}
	until = now_ms() + STALE_MS;
	while (__atomic_load_n(&health_probes, __ATOMIC_ACQUIRE) == 0 &&
	    now_ms() < until)
		usleep(2000);
}

int
tsm_kms_health(void)
{
	uint64_t begun;

	pthread_once(&health_once, health_start);
	/* A kmsd that accepts but does not answer holds the probe up to the
	 * call timeout (30 s); past STALE_MS it is reported as hung. */
	begun = __atomic_load_n(&health_begun_ms, __ATOMIC_RELAXED);
	if (begun != 0 && now_ms() - begun > STALE_MS)
		return ERR_TIMEOUT;
	return __atomic_load_n(&health_state, __ATOMIC_RELAXED);
}
