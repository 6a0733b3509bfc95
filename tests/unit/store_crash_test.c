/*
 * store_crash_test.c - crash safety: a child writes batches (SE + SSD + task
 * + nonce) from 4 threads and prints each acked id to a pipe; the parent
 * kill -9s it at a random moment, reopens, and checks every acked batch is
 * there, none is half there, and the store checks clean. 5 rounds.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "kms/base.h"
#include "tests/tap.h"
#include "tests/testenv.h"
#include "tsm/store/store.h"

#define ROUNDS 5
#define CHILD_THREADS 4
#define AID "A000000151535300"

static char dir[128];

/* ---- child ----------------------------------------------------------------- */

static struct store *cst;
static int ack_fd;
static pthread_mutex_t ack_mu = PTHREAD_MUTEX_INITIALIZER;
static int round_no;

static void
ids(int round, int t, unsigned i, char *se, size_t secap, char *task,
    size_t tcap)
{
	snprintf(se, secap, "C%01X%02X%08X", round, t, i);
	snprintf(task, tcap, "task-%d-%d-%u", round, t, i);
}

static void *
child_writer(void *arg)
{
	int t = (int)(intptr_t)arg;
	struct store_batch *b = NULL;
	struct store_se se;
	struct store_ssd ssd;
	struct store_task task;
	char line[64], nonce[40];
	unsigned i;

	if (store_batch_new(&b) != 0)
		_exit(3);
	for (i = 0;; i++) {
		store_batch_clear(b);
		memset(&se, 0, sizeof(se));
		memset(&ssd, 0, sizeof(ssd));
		store_task_init(&task);
		ids(round_no, t, i, se.se_id, sizeof(se.se_id), task.id,
		    sizeof(task.id));
		snprintf(se.state, sizeof(se.state), "ACTIVE");
		memcpy(ssd.se_id, se.se_id, sizeof(ssd.se_id));
		snprintf(ssd.sd_aid, sizeof(ssd.sd_aid), AID);
		snprintf(ssd.state, sizeof(ssd.state), "CREATING");
		snprintf(ssd.task_id, sizeof(ssd.task_id), "%s", task.id);
		ssd.mode = STORE_MODE_DMSD;
		memcpy(task.se_id, se.se_id, sizeof(task.se_id));
		snprintf(task.kind, sizeof(task.kind), "SSD_CREATE");
		snprintf(task.state, sizeof(task.state), "PENDING");
		if (buf_put(&task.ctx, "{\"x\":1}", 7) != 0 ||
		    store_task_hist_add(&task, 1, "created") != 0)
			_exit(3);
		snprintf(nonce, sizeof(nonce), "%02X%02X%08X", round_no, t, i);
		if (store_batch_put_se(b, &se) != 0 ||
		    store_batch_put_ssd(b, &ssd) != 0 ||
		    store_batch_put_task(b, &task) != 0 ||
		    store_batch_claim_nonce(b, "crash", nonce, 1000, 300) != 0)
			_exit(3);
		store_task_cleanup(&task);
		if (store_batch_commit(cst, b) != 0)
			_exit(4);
		/* Acknowledged: durable from here on. */
		snprintf(line, sizeof(line), "%d %u\n", t, i);
		pthread_mutex_lock(&ack_mu);
		if (write(ack_fd, line, strlen(line)) != (ssize_t)strlen(line))
			_exit(5);
		pthread_mutex_unlock(&ack_mu);
	}
	return NULL;
}

static void __attribute__((noreturn))
child(int fd, int round)
{
	pthread_t th[CHILD_THREADS];
	int t;

	ack_fd = fd;
	round_no = round;
	log_init("store_crash_child", LOG_ERR);
	if (store_open(&cst, dir, NULL) != 0)
		_exit(2);
	for (t = 0; t < CHILD_THREADS; t++)
		if (pthread_create(&th[t], NULL, child_writer,
		    (void *)(intptr_t)t) != 0)
			_exit(2);
	for (t = 0; t < CHILD_THREADS; t++)
		pthread_join(th[t], NULL);
	_exit(0);
}

/* ---- parent ------------------------------------------------------------------ */

struct acks {
	unsigned *t, *i;
	size_t n, cap;
};

static void
acks_parse(struct acks *a, char *text)
{
	char *line, *save = NULL;
	unsigned t, i;

	for (line = strtok_r(text, "\n", &save); line != NULL;
	    line = strtok_r(NULL, "\n", &save)) {
		if (sscanf(line, "%u %u", &t, &i) != 2)
			continue;
		if (a->n == a->cap) {
			a->cap = a->cap ? 2 * a->cap : 1024;
			a->t = realloc(a->t, a->cap * sizeof(*a->t));
			a->i = realloc(a->i, a->cap * sizeof(*a->i));
			if (a->t == NULL || a->i == NULL)
				bail("nomem");
		}
		a->t[a->n] = t;
		a->i[a->n] = i;
		a->n++;
	}
}

struct whole {
	struct store *st;
	long ses, partial;
};

/* Every crash-test SE must have its SSD and task: batches are all or
 * nothing. */
static int
se_whole(void *arg, const uint8_t *k, size_t kn, const uint8_t *v, size_t vn)
{
	struct whole *w = arg;
	struct store_se se;
	struct store_ssd ssd;
	struct store_task task;
	int rc;

	if (store_se_decode(v, vn, &se) != 0)
		return ERR_PARSE;
	w->ses++;
	store_task_init(&task);
	rc = store_ssd_get(w->st, se.se_id, AID, &ssd);
	if (rc == 0)
		rc = store_task_get(w->st, ssd.task_id, &task);
	if (rc != 0 || strcmp(task.se_id, se.se_id) != 0)
		w->partial++;
	store_task_cleanup(&task);
	return 0;
}

static void
one_round(int round)
{
	struct store_check_report rep;
	struct store *st = NULL;
	struct store_se se;
	struct store_task task;
	struct acks a = { 0 };
	struct whole w = { 0 };
	struct buf text;
	char se_id[40], task_id[64], chunk[4096];
	int fds[2], status, delay_ms, missing = 0, rc;
	uint64_t t0;
	ssize_t r;
	size_t k;
	pid_t pid;

	if (pipe(fds) != 0)
		bail("pipe");
	pid = fork();
	if (pid < 0)
		bail("fork");
	if (pid == 0) {
		close(fds[0]);
		child(fds[1], round);
	}
	close(fds[1]);
	buf_init(&text);
	/* Let it get going (first ack), then kill at a random moment. */
	delay_ms = 30 + rand() % 400;
	t0 = 0;
	for (;;) {
		r = read(fds[0], chunk, sizeof(chunk));
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		if (buf_put(&text, chunk, (size_t)r) != 0)
			bail("nomem");
		if (t0 == 0)
			t0 = now_ms();
		if (now_ms() - t0 >= (uint64_t)delay_ms)
			break;
	}
	kill(pid, SIGKILL);
	/* Whatever the child acknowledged before it died is in the pipe. */
	while ((r = read(fds[0], chunk, sizeof(chunk))) > 0 ||
	    (r < 0 && errno == EINTR))
		if (r > 0 && buf_put(&text, chunk, (size_t)r) != 0)
			bail("nomem");
	close(fds[0]);
	if (waitpid(pid, &status, 0) != pid)
		bail("waitpid");
	ok(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL,
	    "round %d: child killed by SIGKILL after ~%d ms", round, delay_ms);
	if (buf_put_u8(&text, 0) != 0)
		bail("nomem");
	acks_parse(&a, (char *)text.p);

	is_int(store_open(&st, dir, NULL), 0, "round %d: store reopens", round);
	if (st == NULL)
		bail("reopen");
	for (k = 0; k < a.n; k++) {
		ids(round, (int)a.t[k], a.i[k], se_id, sizeof(se_id), task_id,
		    sizeof(task_id));
		store_task_init(&task);
		if (store_se_get(st, se_id, &se) != 0 ||
		    store_task_get(st, task_id, &task) != 0)
			missing++;
		store_task_cleanup(&task);
	}
	ok(a.n > 0 && missing == 0, "round %d: all %zu acknowledged batches "
	    "present (%d missing)", round, a.n, missing);
	w.st = st;
	rc = store_iter(st, STORE_DB_SE, "C", 1, se_whole, &w);
	ok(rc == 0 && w.partial == 0, "round %d: %ld SEs on disk, none "
	    "half-written", round, w.ses);
	ok(w.ses >= (long)a.n, "round %d: on disk >= acknowledged "
	    "(%ld >= %zu)", round, w.ses, a.n);
	rc = store_check(st, 1000, stderr, &rep);
	ok(rc == 0 && rep.problems == 0,
	    "round %d: check clean: %llu records decode, references resolve",
	    round, (unsigned long long)rep.records);
	store_close(st);
	free(a.t);
	free(a.i);
	buf_free(&text);
}

int
main(void)
{
	char tmp[64];
	unsigned seed;
	int round;

	log_init("store_crash_test", LOG_ERR);
	seed = (unsigned)time(NULL) ^ (unsigned)getpid();
	srand(seed);
	diag("seed %u", seed);
	signal(SIGPIPE, SIG_IGN);
	snprintf(tmp, sizeof(tmp), "/tmp/sptsm-test-XXXXXX");
	if (mkdtemp(tmp) == NULL)
		bail("mkdtemp");
	snprintf(dir, sizeof(dir), "%s/store", tmp);
	for (round = 1; round <= ROUNDS; round++)
		one_round(round);
	testenv_cleanup(tmp);
	return done_testing();
}
