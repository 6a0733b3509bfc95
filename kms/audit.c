/*
 * audit.c - hash-chained, token-MACed audit log (one JSON line per record)
 * and its verifier. Runs in kmsd and kmsctl. Trusts nothing it reads back:
 * the verifier checks sequence, chain and MAC of every line.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "kms/audit.h"

#define MAX_PENDING 10000
#define MAX_LINE    8192

struct pend {
	char *body;
	int   durable;
};

struct audit {
	int           fd;
	uint64_t      seq;		/* of the last line written */
	uint8_t       prev[32];		/* SHA-256 of the last line */
	off_t         known_size;	/* file size after our last write */
	int           need_sync;
	audit_mac_fn  mac;
	void         *mac_ctx;
	struct pend  *pending;		/* records not written yet: no MAC
					 * function, or deferred mode */
	size_t        npending, cappending;
	int           pend_durable;	/* a pending record is durable */
	int           deferred;
	uint64_t      retry_ms;		/* after a failed write: not before */
	uint64_t      backoff_ms;	/* the wait after the last failure */
};

/* A failed write (a full disk) is tried again after 100 ms, then after
 * twice as long each time, up to a second. */
#define RETRY_MIN_MS 100
#define RETRY_MAX_MS 1000

/* Reads the last complete line of the file into line (NUL-terminated). */
static int
read_last_line(int fd, off_t size, char *line, size_t cap, size_t *len)
{
	size_t want = size > (off_t)cap ? cap : (size_t)size;
	off_t start = size - (off_t)want;
	ssize_t n;
	size_t end, beg;

	*len = 0;
	if (size == 0)
		return 0;
	n = pread(fd, line, want, start);
	if (n != (ssize_t)want)
		return ERR_IO;
	end = want;
	if (line[end - 1] != '\n')
		return ERR_AUDIT;	/* torn last line */
	end--;
	beg = end;
	while (beg > 0 && line[beg - 1] != '\n')
		beg--;
	if (beg == 0 && start != 0)
		return ERR_AUDIT;	/* line longer than cap */
	memmove(line, line + beg, end - beg);
	line[end - beg] = '\0';
	*len = end - beg;
	return 0;
}

/* Sets seq and prev from the file's current last line. */
static int
reload_tail(struct audit *a)
{
	char *line = malloc(MAX_LINE + 1);
	struct stat st;
	json_t *o;
	json_int_t seq;
	size_t len;
	int rc;

	if (line == NULL)
		return ERR_NOMEM;
	if (fstat(a->fd, &st) != 0) {
		free(line);
		return ERR_IO;
	}
	if ((rc = read_last_line(a->fd, st.st_size, line, MAX_LINE, &len)) != 0) {
		free(line);
		return rc;
	}
	a->known_size = st.st_size;
	if (len == 0) {
		a->seq = 0;
		memset(a->prev, 0, sizeof(a->prev));
		free(line);
		return 0;
	}
	o = json_loadb(line, len, 0, NULL);
	if (o == NULL || json_unpack(o, "{s:I}", "seq", &seq) != 0 || seq < 1) {
		json_decref(o);
		free(line);
		return ERR_AUDIT;
	}
	json_decref(o);
	a->seq = (uint64_t)seq;
	rc = sha256_of(line, len, a->prev);
	free(line);
	return rc;
}

int
audit_open(struct audit **out, const char *path)
{
	struct audit *a;
	int rc;

	*out = NULL;
	a = calloc(1, sizeof(*a));
	if (a == NULL)
		return ERR_NOMEM;
	a->fd = open(path, O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
	if (a->fd < 0) {
		free(a);
		return ERR_IO;
	}
	flock(a->fd, LOCK_SH);
	rc = reload_tail(a);
	flock(a->fd, LOCK_UN);
	if (rc != 0) {
		close(a->fd);
		free(a);
		return rc;
	}
	*out = a;
	return 0;
}

static void
pend_free(struct audit *a)
{
	size_t i;

	for (i = 0; i < a->npending; i++)
		free(a->pending[i].body);
	a->npending = 0;
	a->pend_durable = 0;
}

void
audit_close(struct audit *a)
{
	if (a == NULL)
		return;
	if (a->mac != NULL && audit_flush_pending(a) != 0)
		log_msg(LOG_ERR, "event=audit_flush_at_close_failed");
	if (a->need_sync)
		(void)fdatasync(a->fd);
	pend_free(a);
	free(a->pending);
	close(a->fd);
	free(a);
}

uint64_t
audit_seq(const struct audit *a)
{
	return a->seq;
}

/* JSON string body with escapes; stops at cap. */
static size_t
json_esc(char *o, size_t cap, const char *s)
{
	static const char hx[] = "0123456789abcdef";
	size_t n = 0;

	for (; s && *s && n + 7 < cap; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '"' || c == '\\') {
			o[n++] = '\\';
			o[n++] = (char)c;
		} else if (c < 0x20 || c == 0x7f) {
			o[n++] = '\\';
			o[n++] = 'u';
			o[n++] = '0';
			o[n++] = '0';
			o[n++] = hx[c >> 4];
			o[n++] = hx[c & 15];
		} else {
			o[n++] = (char)c;
		}
	}
	o[n] = '\0';
	return n;
}

/* The record body before seq/prev/mac are known: a heap string. */
static char *
format_body(const struct audit_rec *r)
{
	char ts[40], role[64], op[96], key[288], res[64], det[1100], ph[65];
	uint8_t dig[32];
	char *s;

	time_rfc3339(ts, sizeof(ts));
	json_esc(role, sizeof(role), r->role ? r->role : "");
	json_esc(op, sizeof(op), r->op ? r->op : "");
	json_esc(key, sizeof(key), r->key ? r->key : "");
	json_esc(res, sizeof(res), r->result ? r->result : "");
	json_esc(det, sizeof(det), r->detail ? r->detail : "");
	if (sha256_of(r->params ? r->params : (const uint8_t *)"", r->nparams,
	    dig) != 0)
		return NULL;
	hex_encode(dig, sizeof(dig), ph);
	if (asprintf(&s, "\"time\":\"%s\",\"uid\":%u,\"pid\":%d,\"role\":\"%s\","
	    "\"op\":\"%s\",\"key\":\"%s\",\"params\":\"%s\",\"result\":\"%s\","
	    "\"detail\":\"%s\"", ts, r->uid, r->pid, role, op, key, ph, res,
	    det) < 0)
		return NULL;
	return s;
}

/* Chains and MACs one record onto out; the caller holds the lock and the
 * tail is current. */
static int
chain_one(struct audit *a, const char *body, struct buf *out)
{
	char prevhex[65], machex[65], *line = NULL, *full = NULL;
	uint8_t mac[32], next[32];
	int n, fl, rc;

	hex_encode(a->prev, 32, prevhex);
	n = asprintf(&line, "{\"seq\":%llu,%s,\"prev\":\"%s\"",
	    (unsigned long long)(a->seq + 1), body, prevhex);
	if (n < 0)
		return ERR_NOMEM;
	if ((rc = a->mac(a->mac_ctx, (const uint8_t *)line, (size_t)n, mac)) != 0) {
		free(line);
		return rc;
	}
	hex_encode(mac, 32, machex);
	fl = asprintf(&full, "%s,\"mac\":\"%s\"}\n", line, machex);
	free(line);
	if (fl < 0)
		return ERR_NOMEM;
	/* the chain moves on only with the record */
	if ((rc = sha256_of(full, (size_t)fl - 1, next)) == 0 &&
	    (rc = buf_put(out, full, (size_t)fl)) == 0) {
		memcpy(a->prev, next, sizeof(next));
		a->seq++;
	}
	free(full);
	return rc;
}

/*
 * Chains, MACs and appends records in one write; the caller holds the
 * lock. Another writer's appends are followed first (its chain continues).
 * All or nothing: when the write fails part way (disk full, EFBIG) the
 * bytes that got out are cut off again, so no torn line is left to make
 * every later open and append fail, and the caller may retry.
 */
static int
write_locked(struct audit *a, struct pend *p, size_t n)
{
	struct buf out;
	struct stat st;
	uint8_t prev[32];
	uint64_t seq;
	size_t i, off = 0;
	ssize_t w;
	int rc = 0, durable = 0;

	if (fstat(a->fd, &st) != 0)
		return ERR_IO;
	if (st.st_size != a->known_size && (rc = reload_tail(a)) != 0)
		return rc;
	memcpy(prev, a->prev, 32);
	seq = a->seq;
	buf_init(&out);
	for (i = 0; i < n && rc == 0; i++) {
		rc = chain_one(a, p[i].body, &out);
		durable |= p[i].durable;
	}
	while (rc == 0 && off < out.len) {
		w = write(a->fd, out.p + off, out.len - off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			rc = ERR_IO;
			break;
		}
		off += (size_t)w;
	}
	if (rc != 0) {
		memcpy(a->prev, prev, 32);
		a->seq = seq;
		if (off > 0 && ftruncate(a->fd, st.st_size) != 0)
			log_msg(LOG_ERR, "event=audit_torn_line errno=%d", errno);
	} else {
		a->known_size = st.st_size + (off_t)out.len;
		if (durable)
			a->need_sync = 1;
	}
	buf_free(&out);
	return rc;
}

static int
flush(struct audit *a, int force)
{
	int rc;

	if (a->mac == NULL || a->npending == 0)
		return 0;
	/* every try writes (chains, MACs) all the queue: not at every
	 * event-loop pass while the disk stays full */
	if (!force && now_ms() < a->retry_ms)
		return ERR_BUSY;
	flock(a->fd, LOCK_EX);
	rc = write_locked(a, a->pending, a->npending);
	flock(a->fd, LOCK_UN);
	/* Nothing was written on failure: the records stay queued for the
	 * next flush instead of being lost. */
	if (rc == 0)
		pend_free(a);
	if (rc == 0)
		a->backoff_ms = 0;
	else
		a->backoff_ms = a->backoff_ms == 0 ? RETRY_MIN_MS :
		    a->backoff_ms * 2 > RETRY_MAX_MS ? RETRY_MAX_MS :
		    a->backoff_ms * 2;
	a->retry_ms = rc == 0 ? 0 : now_ms() + a->backoff_ms;
	return rc;
}

int
audit_flush_pending(struct audit *a)
{
	return flush(a, 1);
}

int
audit_flush_due(struct audit *a)
{
	return flush(a, 0);
}

void
audit_set_mac(struct audit *a, audit_mac_fn fn, void *ctx)
{
	a->mac = fn;
	a->mac_ctx = ctx;
}

void
audit_set_deferred(struct audit *a, int on)
{
	a->deferred = on;
}

int
audit_has_room(struct audit *a)
{
	if (a->npending < MAX_PENDING)
		return 0;
	return a->mac == NULL ? ERR_LIMIT : flush(a, 0);
}

int
audit_log(struct audit *a, const struct audit_rec *r, int durable)
{
	struct pend one;
	char *body = format_body(r);
	int rc;

	if (body == NULL)
		return ERR_NOMEM;
	if (a->mac == NULL || a->deferred) {
		struct pend *np;

		if (a->npending >= MAX_PENDING) {
			if (a->mac == NULL) {
				free(body);
				return ERR_LIMIT;
			}
			if ((rc = flush(a, 0)) != 0) {
				free(body);
				return rc;
			}
		}
		if (a->npending == a->cappending) {
			size_t nc = a->cappending ? a->cappending * 2 : 64;

			np = realloc(a->pending, nc * sizeof(*np));
			if (np == NULL) {
				free(body);
				return ERR_NOMEM;
			}
			a->pending = np;
			a->cappending = nc;
		}
		a->pending[a->npending].body = body;
		a->pending[a->npending++].durable = durable;
		a->pend_durable |= durable;
		return 0;
	}
	if (a->npending > 0 && (rc = audit_flush_pending(a)) != 0) {
		free(body);
		return rc;
	}
	one.body = body;
	one.durable = durable;
	flock(a->fd, LOCK_EX);
	rc = write_locked(a, &one, 1);
	flock(a->fd, LOCK_UN);
	free(body);
	return rc;
}

int
audit_sync_pending(const struct audit *a)
{
	/* In deferred mode a durable record is still queued when its caller
	 * asks: it will be written, then need a sync, at the next flush. */
	return a->need_sync || (a->mac != NULL && a->pend_durable);
}

int
audit_take_sync(struct audit *a, int *fd)
{
	if (!a->need_sync)
		return 0;
	a->need_sync = 0;
	*fd = a->fd;
	return 1;
}

int
audit_sync(struct audit *a)
{
	if (!a->need_sync)
		return 0;
	a->need_sync = 0;
	return fdatasync(a->fd) == 0 ? 0 : ERR_IO;
}

/* ---- verification ---- */

static int
bad(struct audit_report *rep, uint64_t line, const char *why)
{
	rep->bad_line = line;
	snprintf(rep->reason, sizeof(rep->reason), "%s", why);
	return ERR_AUDIT;
}

int
audit_verify_file(const char *path, audit_verify_fn vf, void *ctx,
    struct audit_report *rep)
{
	static const char mactag[] = ",\"mac\":\"";
	uint8_t prev[32] = { 0 }, mac[32];
	char *line = NULL, *m, prevhex[65];
	size_t cap = 0, macl;
	ssize_t len;
	uint64_t lineno = 0, seq = 0;
	struct stat st;
	off_t done = 0;
	FILE *f;
	int rc = 0;

	memset(rep, 0, sizeof(*rep));
	f = fopen(path, "r");
	if (f == NULL)
		return errno == ENOENT ? ERR_NOTFOUND : ERR_IO;
	/* Verify what is there now: writers may append while we read (the
	 * verification itself is audited). */
	if (fstat(fileno(f), &st) != 0) {
		fclose(f);
		return ERR_IO;
	}
	while (done < st.st_size && (len = getline(&line, &cap, f)) > 0) {
		done += len;
		json_t *o;
		json_int_t s;
		const char *ph;

		lineno++;
		if (line[len - 1] != '\n') {
			rc = bad(rep, lineno, "torn last line (no newline)");
			break;
		}
		line[--len] = '\0';
		o = json_loadb(line, (size_t)len, JSON_REJECT_DUPLICATES, NULL);
		if (o == NULL || json_unpack(o, "{s:I, s:s}", "seq", &s, "prev",
		    &ph) != 0) {
			json_decref(o);
			rc = bad(rep, lineno, "line is not an audit record");
			break;
		}
		if ((uint64_t)s != seq + 1) {
			json_decref(o);
			rc = bad(rep, lineno, "sequence number out of order "
			    "(line deleted, inserted or reordered)");
			break;
		}
		hex_encode(prev, 32, prevhex);
		if (strcmp(ph, prevhex) != 0) {
			json_decref(o);
			rc = bad(rep, lineno, "hash chain broken (previous line "
			    "changed or removed)");
			break;
		}
		json_decref(o);
		m = NULL;
		for (char *p = strstr(line, mactag); p; p = strstr(p + 1, mactag))
			m = p;
		if (m == NULL || hex_decode(m + sizeof(mactag) - 1, 64, mac,
		    sizeof(mac), &macl) != 0 || strcmp(m + sizeof(mactag) - 1 + 64,
		    "\"}") != 0) {
			rc = bad(rep, lineno, "MAC field missing or malformed");
			break;
		}
		if (vf != NULL && vf(ctx, (const uint8_t *)line, (size_t)(m - line),
		    mac) != 0) {
			rc = bad(rep, lineno, "MAC does not verify (line edited, or "
			    "another audit key)");
			break;
		}
		if ((rc = sha256_of(line, (size_t)len, prev)) != 0)
			break;
		seq = (uint64_t)s;
	}
	free(line);
	fclose(f);
	rep->lines = lineno;
	return rc;
}
