/*
 * http_bench.c - `make bench` for tsmd's HTTP framework: GET /healthz
 * requests per second over HTTPS with keep-alive, from several client
 * threads (one libcurl easy handle reused per thread), against the real
 * tsmd with a real kmsd behind it (kmsenv fixture). Clients and server
 * share this machine's cores. Not a test: it prints numbers.
 * Environment: HTTP_BENCH_SECS or BENCH_SECONDS (3), HTTP_BENCH_WORKERS (tsmd workers, 8),
 * HTTP_BENCH_PLAIN (also measure --no-tls); argv[1]: client threads (4).
 */
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <curl/curl.h>

#include "kms/base.h"
#include "tests/kmsenv.h"
#include "tests/testenv.h"

static struct kmsenv E;
static char var[400], addr[64], url[128], ca[500];
static double secs = 3.0;
static volatile int go, stop_flag;

struct worker {
	pthread_t t;
	long      n, fail, codes200;
};

static size_t
sink(char *p, size_t sz, size_t n, void *u)
{
	return sz * n;
}

static void *
run(void *arg)
{
	struct worker *w = arg;
	CURL *h = curl_easy_init();
	long code;

	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_CAINFO, ca);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, sink);
	curl_easy_setopt(h, CURLOPT_TCP_NODELAY, 1L);
	while (!go)
		usleep(100);
	while (!stop_flag) {
		if (curl_easy_perform(h) != CURLE_OK) {
			w->fail++;
			continue;
		}
		curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
		w->codes200 += code == 200;
		w->n++;
	}
	curl_easy_cleanup(h);
	return NULL;
}

static pid_t
start_tsmd(int tls)
{
	char ap[500], lp[500], cf[500], doc[200];
	const char *argv[] = { testenv_bin("tsmd"), "--var", var, "--listen",
		"127.0.0.1:0", "--kms-socket", E.sock, "--log-level", "warn",
		"--config", cf, tls ? NULL : "--no-tls", NULL };
	const char *wk = getenv("HTTP_BENCH_WORKERS");
	struct buf b;
	pid_t pid;
	int i, fd;

	snprintf(ap, sizeof(ap), "%s/tsm/tsmd.addr", var);
	snprintf(lp, sizeof(lp), "%s/tsmd.log", E.dir);
	snprintf(cf, sizeof(cf), "%s/tsmd.json", E.dir);
	snprintf(doc, sizeof(doc), "{\"limits\": {\"workers\": %d}}",
	    wk != NULL && atoi(wk) > 0 ? atoi(wk) : 8);
	if (file_write_atomic(cf, doc, strlen(doc), 0600) != 0)
		exit(1);
	(void)unlink(ap);
	if ((pid = fork()) == 0) {
		fd = open(lp, O_WRONLY | O_CREAT | O_APPEND, 0600);
		dup2(fd, 2);
		execv(argv[0], (char *const *)argv);
		_exit(127);
	}
	buf_init(&b);
	for (i = 0; i < 3000; i++) {
		if (file_read_all(ap, 100, &b) == 0 && b.len > 1) {
			memcpy(addr, b.p, b.len - 1);
			addr[b.len - 1] = '\0';
			buf_free(&b);
			return pid;
		}
		usleep(10000);
	}
	fprintf(stderr, "http_bench: tsmd did not start (%s)\n", lp);
	exit(1);
}

static void
bench(int tls, int conns)
{
	struct worker *w = calloc((size_t)conns, sizeof(*w));
	long total = 0, fail = 0, ok200 = 0;
	uint64_t t0;
	double el;
	int i;

	snprintf(url, sizeof(url), "%s://%s/healthz", tls ? "https" : "http", addr);
	go = stop_flag = 0;
	for (i = 0; i < conns; i++)
		pthread_create(&w[i].t, NULL, run, &w[i]);
	usleep(200000);
	t0 = now_us();
	go = 1;
	usleep((useconds_t)(secs * 1e6));
	stop_flag = 1;
	el = (double)(now_us() - t0) / 1e6;
	for (i = 0; i < conns; i++) {
		pthread_join(w[i].t, NULL);
		total += w[i].n;
		fail += w[i].fail;
		ok200 += w[i].codes200;
	}
	printf("http_healthz tls=%d conns=%d per_s=%.0f\n", tls, conns,
	    (double)total / el);
	if (fail || ok200 != total)
		fprintf(stderr, "http_bench: %ld failed, %ld of %ld answered 200\n",
		    fail, ok200, total);
	free(w);
}

int
main(int argc, char **argv)
{
	const char *s = getenv("HTTP_BENCH_SECS") ? getenv("HTTP_BENCH_SECS") :
	    getenv("BENCH_SECONDS");
	int conns = argc > 1 ? atoi(argv[1]) : 4, st;
	pid_t pid;

	if (s != NULL && atof(s) > 0)
		secs = atof(s);
	if (conns < 1 || conns > 256)
		conns = 4;
	curl_global_init(CURL_GLOBAL_DEFAULT);
	if (kmsenv_setup(&E, 0) != 0 || kmsenv_start(&E, NULL) != 0) {
		fprintf(stderr, "http_bench: kmsd fixture failed\n");
		return 1;
	}
	snprintf(var, sizeof(var), "%s/tsmvar", E.dir);
	snprintf(ca, sizeof(ca), "%s/ca.pem", var);

	pid = start_tsmd(1);
	bench(1, conns);
	kill(pid, SIGTERM);
	waitpid(pid, &st, 0);
	if (getenv("HTTP_BENCH_PLAIN") != NULL) {
		pid = start_tsmd(0);
		bench(0, conns);
		kill(pid, SIGTERM);
		waitpid(pid, &st, 0);
	}
	kmsenv_stop(&E, 0);
	kmsenv_cleanup(&E);
	curl_global_cleanup();
	return 0;
}
