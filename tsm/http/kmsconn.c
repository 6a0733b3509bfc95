/*
 * kmsconn.c - one kmsd client per tsmd worker thread (thread-local, connected
 * lazily, closed when the thread exits); the shared pipelined connection
 * whose replies a reader thread hands on (so a worker need not wait for
 * them); and the kmsd health that /healthz and /metrics report, kept fresh
 * by a thread of its own so that they answer from memory and never wait
 * on kmsd. Runs in tsmd; trusts kmsd.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tsm/http/http_int.h"

#define RETRY_MS  1000		/* between failed connects, per thread */
#define HEALTH_MS 1000		/* cache lifetime of the kmsd state */
#define STALE_MS  3000		/* a probe unfinished this long: kmsd hangs */
#define PIPE_WAIT_MS 30000	/* the oldest reply on the pipe, at most */

static char sock_path[108];
static pthread_key_t tl_key;
static pthread_once_t tl_once = PTHREAD_ONCE_INIT;
static __thread struct kms_client *tl_client;
static __thread uint64_t tl_retry_ms;

static pthread_once_t health_once = PTHREAD_ONCE_INIT;
static int health_state = ERR_IO;
static uint64_t health_begun_ms;	/* the probe under way began, or 0 */
static uint64_t health_done_ms;		/* the last probe finished, or 0 */
static int health_thread;		/* the prober runs */
static uint64_t health_retry_ms;	/* without it: its next start */

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
	__atomic_store_n(&health_done_ms, now_ms(), __ATOMIC_RELEASE);
}

static void *
health_main(void *arg)
{
	(void)arg;
	(void)pthread_setname_np(pthread_self(), "kms-health");
	for (;;) {
		health_probe_once();
		usleep(HEALTH_MS * 1000);
	}
	return NULL;
}

static int
health_spawn(void)
{
	pthread_attr_t a;
	pthread_t t;
	int started;

	if (pthread_attr_init(&a) != 0)
		return 0;
	(void)pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
	started = pthread_create(&t, &a, health_main, NULL) == 0;
	(void)pthread_attr_destroy(&a);
	if (started)
		__atomic_store_n(&health_thread, 1, __ATOMIC_RELAXED);
	return started;
}

/* Without the thread no caller probes (a caller may be MHD's thread,
 * which must not wait on kmsd): its start is tried again, at most once a
 * HEALTH_MS, and until it runs the state is the initial "unreachable". */
static void
health_retry(void)
{
	static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
	uint64_t now = now_ms();

	if (now < __atomic_load_n(&health_retry_ms, __ATOMIC_RELAXED) ||
	    pthread_mutex_trylock(&mu) != 0)
		return;
	if (!__atomic_load_n(&health_thread, __ATOMIC_RELAXED) &&
	    now >= __atomic_load_n(&health_retry_ms, __ATOMIC_RELAXED)) {
		if (health_spawn())
			log_msg(LOG_INFO, "event=kms_health_thread_started");
		else
			__atomic_store_n(&health_retry_ms, now + HEALTH_MS,
			    __ATOMIC_RELAXED);
	}
	pthread_mutex_unlock(&mu);
}

/* A detached thread (with its own kmsd connection) probes at once, then
 * once a HEALTH_MS; the first caller waits for that first probe, but not
 * longer than STALE_MS (a hung kmsd does not hold tsmd's start for the
 * 30 s call timeout). If the thread does not start (or, in tests,
 * TSMD_TEST_NO_HEALTH_THREAD makes this first start fail), see
 * health_retry. */
static void
health_start(void)
{
	uint64_t until;

	if (getenv("TSMD_TEST_NO_HEALTH_THREAD") != NULL || !health_spawn()) {
		log_msg(LOG_ERR, "event=kms_health_thread_failed note=\"tried "
		    "again at most once a second\"");
		__atomic_store_n(&health_retry_ms, now_ms() + HEALTH_MS,
		    __ATOMIC_RELAXED);
		return;
	}
	until = now_ms() + STALE_MS;
	while (__atomic_load_n(&health_done_ms, __ATOMIC_ACQUIRE) == 0 &&
	    now_ms() < until)
		usleep(2000);
}

int
tsm_kms_health(void)
{
	uint64_t begun;

	pthread_once(&health_once, health_start);
	if (!__atomic_load_n(&health_thread, __ATOMIC_RELAXED))
		health_retry();
	/* A kmsd that accepts but does not answer holds the probe up to the
	 * call timeout (30 s); past STALE_MS it is reported as hung. */
	begun = __atomic_load_n(&health_begun_ms, __ATOMIC_RELAXED);
	if (begun != 0 && now_ms() - begun > STALE_MS)
		return ERR_TIMEOUT;
	return __atomic_load_n(&health_state, __ATOMIC_RELAXED);
}

/* ---- the shared pipelined connection ---- */

/* A request on the pipe, waiting for its reply (replies come in request
 * order, so the list is a queue). */
struct pipe_req {
	uint32_t          id;
	int               op;
	uint64_t          t0;		/* µs, sent */
	tsm_kms_reply_fn  fn;
	void             *arg;
	struct pipe_req  *next;
};

/*
 * Two locks. `mu` guards the state below and is never held across I/O:
 * the reader needs it for every reply and for its timeout. `send_mu`
 * serializes the senders' writes (request ids, the client's output); a
 * send blocked on a kmsd that stopped reading holds only it, and the
 * reader's timeout then shuts the socket down, which ends that send. The
 * client is closed only by the reader, detached under `mu` and then
 * under `send_mu`, so no sender can be using it. Order: send_mu, mu.
 */
static struct {
	pthread_mutex_t    mu;
	pthread_mutex_t    send_mu;
	pthread_cond_t     cv;		/* reader: something to wait for */
	struct kms_client *c;		/* NULL: not connected */
	struct pipe_req   *head, *tail;
	size_t             n;
	uint64_t           retry_ms;	/* no connect before this */
	int                connecting;	/* a sender is connecting */
	int                started, stop;
	pthread_t          reader;
} pipe_ = { .mu = PTHREAD_MUTEX_INITIALIZER,
	.send_mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER };

/*
 * The reader found c broken: it is shut down and closed, and every
 * request on it fails: the oldest, whose reply was due, with rc; the
 * others, which were only behind it, with ERR_CLOSED (their callers may
 * try again on a worker's own connection).
 */
static void
pipe_drop(struct kms_client *c, int rc)
{
	struct pipe_req *list, *p;
	size_t n;
	int first = 1;

	pthread_mutex_lock(&pipe_.mu);
	if (pipe_.c == c)
		pipe_.c = NULL;
	list = pipe_.head;
	n = pipe_.n;
	pipe_.head = pipe_.tail = NULL;
	pipe_.n = 0;
	pthread_mutex_unlock(&pipe_.mu);
	log_msg(LOG_WARN, "event=kms_pipe_dropped err=%s pending=%zu",
	    err_name(rc), n);
	(void)shutdown(kms_fd(c), SHUT_RDWR);	/* ends a blocked send */
	pthread_mutex_lock(&pipe_.send_mu);
	kms_close(c);
	pthread_mutex_unlock(&pipe_.send_mu);
	while ((p = list) != NULL) {
		list = p->next;
		tsm_kms_observe(p->op, (double)(now_us() - p->t0) / 1e6,
		    first ? rc : ERR_CLOSED);
		p->fn(first ? rc : ERR_CLOSED, NULL, p->arg);
		first = 0;
		free(p);
	}
}

static void *
pipe_main(void *arg)
{
	struct kms_client *c;
	struct pipe_req *p;
	struct pollfd pf;
	struct rd body;
	uint64_t deadline, now;
	uint32_t id;
	int rc, status, r;

	(void)arg;
	(void)pthread_setname_np(pthread_self(), "kms-pipe");
	for (;;) {
		pthread_mutex_lock(&pipe_.mu);
		while (pipe_.n == 0 && !pipe_.stop)
			pthread_cond_wait(&pipe_.cv, &pipe_.mu);
		if (pipe_.n == 0) {		/* stopping, all answered */
			pthread_mutex_unlock(&pipe_.mu);
			break;
		}
		c = pipe_.c;		/* not NULL while requests wait */
		deadline = pipe_.head->t0 / 1000 + PIPE_WAIT_MS;
		pthread_mutex_unlock(&pipe_.mu);

		if (!kms_buffered(c)) {
			now = now_ms();
			pf.fd = kms_fd(c);
			pf.events = POLLIN;
			r = poll(&pf, 1, now >= deadline ? 0 :
			    (int)(deadline - now));
			if (r < 0 && errno == EINTR)
				continue;
			if (r <= 0) {
				pipe_drop(c, r == 0 ? ERR_TIMEOUT : ERR_IO);
				continue;
			}
		}
		if ((rc = kms_next(c, &id, &status, &body)) != 0) {
			pipe_drop(c, rc);
			continue;
		}
		pthread_mutex_lock(&pipe_.mu);
		p = pipe_.head;
		if (p == NULL || p->id != id) {
			pthread_mutex_unlock(&pipe_.mu);
			pipe_drop(c, ERR_PROTO);
			continue;
		}
		pipe_.head = p->next;
		if (pipe_.head == NULL)
			pipe_.tail = NULL;
		pipe_.n--;
		pthread_mutex_unlock(&pipe_.mu);
		tsm_kms_observe(p->op, (double)(now_us() - p->t0) / 1e6, status);
		p->fn(status, &body, p->arg);
		free(p);
	}
	return NULL;
}

/* The pipe's client, connected if need be (outside both locks: a hung
 * kmsd holds only this sender, and the others meanwhile answer ERR_BUSY
 * and use their own connections); nowait: never connects (ERR_BUSY). */
static int
pipe_client(struct kms_client **out, int nowait)
{
	struct kms_client *c = NULL;
	uint64_t t0;
	int rc;

	pthread_mutex_lock(&pipe_.mu);
	if (pipe_.stop) {
		pthread_mutex_unlock(&pipe_.mu);
		return ERR_CLOSED;
	}
	if (!pipe_.started) {
		if (pthread_create(&pipe_.reader, NULL, pipe_main, NULL) != 0) {
			pthread_mutex_unlock(&pipe_.mu);
			return ERR_NOMEM;
		}
		pipe_.started = 1;
	}
	if ((*out = pipe_.c) != NULL) {
		pthread_mutex_unlock(&pipe_.mu);
		return 0;
	}
	if (nowait || pipe_.connecting || now_ms() < pipe_.retry_ms) {
		rc = nowait || pipe_.connecting ? ERR_BUSY : ERR_IO;
		pthread_mutex_unlock(&pipe_.mu);
		return rc;
	}
	pipe_.connecting = 1;
	pthread_mutex_unlock(&pipe_.mu);

	t0 = now_us();
	rc = kms_connect(&c, sock_path, "tsmd");
	tsm_kms_observe(KMS_OP_HELLO, (double)(now_us() - t0) / 1e6, rc);
	if (rc == 0)
		kms_share(c);
	pthread_mutex_lock(&pipe_.mu);
	pipe_.connecting = 0;
	if (rc == 0 && pipe_.stop) {	/* stopped meanwhile: not installed */
		kms_close(c);
		rc = ERR_CLOSED;
	} else if (rc != 0)
		pipe_.retry_ms = now_ms() + RETRY_MS;
	else
		pipe_.c = c;
	*out = pipe_.c;
	pthread_mutex_unlock(&pipe_.mu);
	return rc;
}

/* p, queued last by this sender (send_mu held), is taken back: 1; or
 * the connection was dropped meanwhile and the reader fails it: 0. */
static int
pipe_unqueue(struct pipe_req *p)
{
	struct pipe_req **pp, *prev = NULL;
	int found = 0;

	pthread_mutex_lock(&pipe_.mu);
	for (pp = &pipe_.head; *pp != NULL; prev = *pp, pp = &(*pp)->next)
		if (*pp == p) {
			*pp = p->next;
			if (pipe_.tail == p)
				pipe_.tail = prev;
			pipe_.n--;
			found = 1;
			break;
		}
	pthread_mutex_unlock(&pipe_.mu);
	return found;
}

int
tsm_kms_send(int op, const struct buf *body, tsm_kms_reply_fn fn, void *arg,
    int nowait)
{
	struct kms_client *c;
	struct pipe_req *p;
	size_t mark;
	int rc;

	if (sock_path[0] == '\0' || fn == NULL)
		return ERR_INVAL;
	if ((rc = pipe_client(&c, nowait)) != 0)
		return rc;
	if ((p = calloc(1, sizeof(*p))) == NULL)
		return ERR_NOMEM;
	p->op = op;
	p->fn = fn;
	p->arg = arg;
	if (!nowait)
		pthread_mutex_lock(&pipe_.send_mu);
	else if (pthread_mutex_trylock(&pipe_.send_mu) != 0) {
		free(p);
		return ERR_BUSY;
	}
	/* Still the pipe's client, it cannot be closed while send_mu is
	 * held (the reader detaches it first, then closes it under
	 * send_mu); dropped since pipe_client, it may be gone already. The
	 * frame is queued in memory under mu too (no I/O), so the check,
	 * the id and the queue's order are one step. */
	pthread_mutex_lock(&pipe_.mu);
	if (pipe_.c != c || pipe_.stop) {	/* dropped, or no reader soon */
		pthread_mutex_unlock(&pipe_.mu);
		rc = ERR_CLOSED;
		goto fail;
	}
	mark = kms_out_len(c);
	if ((rc = kms_submit(c, op, body, &p->id)) != 0) {
		pthread_mutex_unlock(&pipe_.mu);
		goto fail;		/* nothing went out */
	}
	p->t0 = now_us();
	if (pipe_.tail != NULL)
		pipe_.tail->next = p;
	else
		pipe_.head = p;
	pipe_.tail = p;
	if (++pipe_.n == 1)
		pthread_cond_signal(&pipe_.cv);
	pthread_mutex_unlock(&pipe_.mu);
	/* From here p belongs to the reader. A failed write may have sent
	 * part of the frame: the connection is out of step. Shut down, the
	 * reader fails what waits on it (this one too) and the next send
	 * connects again. Without waiting, a full socket that took nothing
	 * gives the request back. */
	rc = nowait ? kms_flush_nowait(c, mark) : kms_flush(c);
	if (rc == ERR_BUSY && pipe_unqueue(p)) {
		pthread_mutex_unlock(&pipe_.send_mu);
		free(p);
		return ERR_BUSY;
	}
	if (rc != 0 && rc != ERR_BUSY)
		(void)shutdown(kms_fd(c), SHUT_RDWR);
	pthread_mutex_unlock(&pipe_.send_mu);
	return 0;
fail:
	pthread_mutex_unlock(&pipe_.send_mu);
	free(p);
	return rc;
}

void
tsm_kms_pipe_stop(void)
{
	pthread_mutex_lock(&pipe_.mu);
	pipe_.stop = 1;
	pthread_cond_signal(&pipe_.cv);
	pthread_mutex_unlock(&pipe_.mu);
	if (pipe_.started)
		pthread_join(pipe_.reader, NULL);
	/* No sender can queue now; one may still be writing. */
	pthread_mutex_lock(&pipe_.send_mu);
	pthread_mutex_lock(&pipe_.mu);
	kms_close(pipe_.c);
	pipe_.c = NULL;
	pthread_mutex_unlock(&pipe_.mu);
	pthread_mutex_unlock(&pipe_.send_mu);
}
