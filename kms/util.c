/*
 * util.c - logging (key=value lines on stderr), clocks and careful file I/O
 * (atomic replace, bounded reads). Used by every process.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <pthread.h>

#include <openssl/evp.h>

#include "base.h"

static const char *log_prog = "sptsm";
static int log_lvl = LOG_INFO;

void
log_init(const char *prog, int level)
{
	log_prog = prog;
	log_lvl = level;
}

void
log_set_level(int level)
{
	log_lvl = level;
}

int
log_level(void)
{
	return log_lvl;
}

void
log_msg(int level, const char *fmt, ...)
{
	static const char *names[] = { "error", "warn", "info", "debug" };
	char ts[40], line[2048];
	va_list ap;
	int n;

	if (level > log_lvl)
		return;
	time_rfc3339(ts, sizeof(ts));
	n = snprintf(line, sizeof(line), "ts=%s prog=%s pid=%ld level=%s ", ts,
	    log_prog, (long)getpid(), names[level < 0 ? 0 : level > 3 ? 3 : level]);
	if (n < 0 || (size_t)n >= sizeof(line))
		return;
	va_start(ap, fmt);
	(void)vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
	va_end(ap);
	fprintf(stderr, "%s\n", line);
}

uint64_t
now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

uint64_t
now_ms(void)
{
	return now_us() / 1000u;
}

int64_t
wall_seconds(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec;
}

uint64_t
wall_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

void
time_rfc3339(char *out, size_t cap)
{
	struct timespec ts;
	struct tm tm;
	char base[32];

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	strftime(base, sizeof(base), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(out, cap, "%s.%03ldZ", base, ts.tv_nsec / 1000000L);
}

int
file_read_all(const char *path, size_t max, struct buf *out)
{
	uint8_t chunk[4096];
	ssize_t n;
	int fd, rc = 0;

	buf_reset(out);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? ERR_NOTFOUND : ERR_IO;
	for (;;) {
		n = read(fd, chunk, sizeof(chunk));
		if (n < 0) {
			if (errno == EINTR)
				continue;
			rc = ERR_IO;
			break;
		}
		if (n == 0)
			break;
		if (out->len + (size_t)n > max) {
			rc = ERR_TOOBIG;
			break;
		}
		if ((rc = buf_put(out, chunk, (size_t)n)) != 0)
			break;
	}
	wipe(chunk, sizeof(chunk));
	close(fd);
	if (rc != 0)
		buf_reset(out);
	return rc;
}

static int
write_full(int fd, const void *p, size_t n)
{
	const uint8_t *q = p;
	ssize_t w;

	while (n > 0) {
		w = write(fd, q, n);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return ERR_IO;
		}
		q += w;
		n -= (size_t)w;
	}
	return 0;
}

int
file_write_atomic(const char *path, const void *p, size_t n, int mode)
{
	char tmp[PATH_MAX], dir[PATH_MAX];
	char *slash;
	int fd, rc;

	if (snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long)getpid()) >=
	    (int)sizeof(tmp))
		return ERR_TOOBIG;
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW,
	    mode);
	if (fd < 0)
		return ERR_IO;
	if ((rc = write_full(fd, p, n)) != 0 || fsync(fd) != 0) {
		close(fd);
		unlink(tmp);
		return rc ? rc : ERR_IO;
	}
	if (fchmod(fd, (mode_t)mode) != 0 || close(fd) != 0) {
		unlink(tmp);
		return ERR_IO;
	}
	if (rename(tmp, path) != 0) {
		unlink(tmp);
		return ERR_IO;
	}
	/* Make the rename itself durable. */
	snprintf(dir, sizeof(dir), "%s", path);
	slash = strrchr(dir, '/');
	if (slash == NULL)
		snprintf(dir, sizeof(dir), ".");
	else if (slash == dir)
		dir[1] = '\0';
	else
		*slash = '\0';
	fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd >= 0) {
		(void)fsync(fd);
		close(fd);
	}
	return 0;
}

int
mkdir_p(const char *path, int mode)
{
	char tmp[PATH_MAX];
	size_t i, n;

	n = strlen(path);
	if (n == 0 || n >= sizeof(tmp))
		return ERR_INVAL;
	memcpy(tmp, path, n + 1);
	for (i = 1; i <= n; i++) {
		if (tmp[i] != '/' && tmp[i] != '\0')
			continue;
		tmp[i] = '\0';
		if (mkdir(tmp, (mode_t)mode) != 0 && errno != EEXIST)
			return ERR_IO;
		if (i < n)
			tmp[i] = '/';
	}
	return 0;
}

static EVP_MD *sha256_md;
static pthread_once_t sha256_once = PTHREAD_ONCE_INIT;

static void
sha256_fetch(void)
{
	sha256_md = EVP_MD_fetch(NULL, "SHA256", NULL);
}

const EVP_MD *
sha256_evp(void)
{
	(void)pthread_once(&sha256_once, sha256_fetch);
	return sha256_md != NULL ? sha256_md : EVP_sha256();
}

int
sha256_of(const void *p, size_t n, uint8_t out[32])
{
	unsigned int ml = 0;

	if (EVP_Digest(p, n, out, &ml, sha256_evp(), NULL) != 1 || ml != 32)
		return ERR_CRYPTO;
	return 0;
}
