/*
 * testenv.h - helpers shared by the C tests: a fresh SoftHSM2 token in a
 * temporary directory (real SoftHSM2, never a mock), paths of the built
 * binaries. Header-only; include once per test program.
 */
#ifndef SPTSM_TESTENV_H
#define SPTSM_TESTENV_H

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define TEST_SO_PIN "test-so-pin-0000"
#define TEST_USER_PIN "test-user-pin-0000"

/* Makes DIR=/tmp/sptsm-test-XXXXXX with a softhsm2.conf pointing at
 * DIR/tokens and exports SOFTHSM2_CONF. Call before loading the module. */
static int __attribute__((unused))
testenv_softhsm(char *dir, size_t cap)
{
	char path[512];
	FILE *f;

	snprintf(dir, cap, "/tmp/sptsm-test-XXXXXX");
	if (mkdtemp(dir) == NULL)
		return -1;
	snprintf(path, sizeof(path), "%s/tokens", dir);
	if (mkdir_p(path, 0700) != 0)
		return -1;
	snprintf(path, sizeof(path), "%s/softhsm2.conf", dir);
	f = fopen(path, "w");
	if (f == NULL)
		return -1;
	fprintf(f, "directories.tokendir = %s/tokens\nobjectstore.backend = file\n"
	    "log.level = ERROR\nslots.removable = false\n", dir);
	fclose(f);
	setenv("SOFTHSM2_CONF", path, 1);
	return 0;
}

static void __attribute__((unused))
testenv_cleanup(const char *dir)
{
	char cmd[600];

	if (getenv("KEEP_TEST_DIR") != NULL || strncmp(dir, "/tmp/sptsm-test-", 16))
		return;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	(void)!system(cmd);
}

/* Path of a built program: $SPTSM_BUILD/bin/<name>. */
static __attribute__((unused)) const char *
testenv_bin(const char *name)
{
	static char path[1024];
	const char *b = getenv("SPTSM_BUILD");

	snprintf(path, sizeof(path), "%s/bin/%s", b ? b : "build", name);
	return path;
}

/* utime + stime of a process (pid 0: this one), in milliseconds; -1 if
 * /proc cannot say. For the benchmarks' CPU-per-operation lines. */
/* qsort comparison of doubles (benches' medians and ranges). */
static int __attribute__((unused))
testenv_cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static double __attribute__((unused))
testenv_cpu_ms(pid_t pid)
{
	char path[64], buf[2048], *p;
	unsigned long ut = 0, st = 0;
	FILE *f;
	size_t n;

	if (pid == 0)
		snprintf(path, sizeof(path), "/proc/self/stat");
	else
		snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	if ((f = fopen(path, "r")) == NULL)
		return -1;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	/* after "(comm)": state ppid pgrp session tty tpgid flags minflt
	 * cminflt majflt cmajflt utime stime (fields 3..15) */
	if ((p = strrchr(buf, ')')) == NULL ||
	    sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu",
	    &ut, &st) != 2)
		return -1;
	return (double)(ut + st) * 1000.0 / (double)sysconf(_SC_CLK_TCK);
}

/* Voluntary context switches (a thread blocked) summed over the live
 * threads of a process; -1 if /proc cannot say. */
static double __attribute__((unused))
testenv_switches(pid_t pid)
{
	char path[96], line[128];
	unsigned long v, sum = 0;
	struct dirent *e;
	FILE *f;
	DIR *d;
	int any = 0;

	snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
	if ((d = opendir(path)) == NULL)
		return -1;
	while ((e = readdir(d)) != NULL) {
		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "/proc/%d/task/%.20s/status",
		    (int)pid, e->d_name);
		if ((f = fopen(path, "r")) == NULL)
			continue;	/* the thread ended */
		while (fgets(line, sizeof(line), f) != NULL)
			if (sscanf(line, "voluntary_ctxt_switches: %lu", &v) == 1) {
				sum += v;
				any = 1;
			}
		fclose(f);
	}
	closedir(d);
	return any ? (double)sum : -1;
}

/* One counter of /proc/PID/io ("write_bytes", "syscw", ...); -1 if /proc
 * cannot say. */
static double __attribute__((unused))
testenv_proc_io(pid_t pid, const char *field)
{
	char path[64], line[128];
	size_t fl = strlen(field);
	unsigned long long v;
	double out = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/io", (int)pid);
	if ((f = fopen(path, "r")) == NULL)
		return -1;
	while (fgets(line, sizeof(line), f) != NULL)
		if (strncmp(line, field, fl) == 0 && line[fl] == ':' &&
		    sscanf(line + fl + 1, "%llu", &v) == 1)
			out = (double)v;
	fclose(f);
	return out;
}

/* A positive integer from the environment, else def (benchmark knobs). */
static int __attribute__((unused))
testenv_env_int(const char *name, int def)
{
	const char *s = getenv(name);

	return s != NULL && atoi(s) > 0 ? atoi(s) : def;
}

#endif
