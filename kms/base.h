/*
 * base.h - small shared base used by every process of the project: the one
 * error table, byte buffers and bounds-checked readers, hex, locked secret
 * memory, process hardening and key=value logging.
 * Trusts nothing it is given: every reader checks its bounds.
 */
#ifndef SPTSM_BASE_H
#define SPTSM_BASE_H

#include <stddef.h>
#include <stdint.h>
#include <stdarg.h>

#define WUR __attribute__((warn_unused_result))

/*
 * The project error table. Every fallible function returns 0 or one of
 * these (negative). Codes are stable: they travel on the kmsd wire.
 */
#define ERR_TABLE(X) \
	X(ERR_NOMEM,      -1,  "out of memory") \
	X(ERR_INVAL,      -2,  "invalid argument") \
	X(ERR_TRUNC,      -3,  "truncated input") \
	X(ERR_TRAILING,   -4,  "trailing bytes") \
	X(ERR_TOOBIG,     -5,  "input too large") \
	X(ERR_PROTO,      -6,  "protocol error") \
	X(ERR_VERSION,    -7,  "unsupported protocol version") \
	X(ERR_UNKNOWN_OP, -8,  "unknown operation") \
	X(ERR_DENIED,     -9,  "denied by policy") \
	X(ERR_NOKEY,      -10, "unknown key") \
	X(ERR_KEYCLASS,   -11, "wrong key class for operation") \
	X(ERR_HANDLE,     -12, "unknown or closed handle") \
	X(ERR_KCV,        -13, "key check value mismatch") \
	X(ERR_UNWRAP,     -14, "unwrap failed") \
	X(ERR_KEYSTATE,   -15, "key state forbids operation") \
	X(ERR_SEALED,     -16, "service is sealed") \
	X(ERR_P11,        -17, "PKCS#11 error") \
	X(ERR_P11_MECH,   -18, "mechanism not supported by token") \
	X(ERR_P11_DEVICE, -19, "token device error") \
	X(ERR_P11_PIN,    -20, "PIN incorrect or locked") \
	X(ERR_CRYPTO,     -21, "cryptographic library error") \
	X(ERR_IO,         -22, "I/O error") \
	X(ERR_CLOSED,     -23, "connection closed") \
	X(ERR_TIMEOUT,    -24, "timed out") \
	X(ERR_BUSY,       -25, "busy") \
	X(ERR_NOTFOUND,   -26, "not found") \
	X(ERR_EXISTS,     -27, "already exists") \
	X(ERR_PARSE,      -28, "parse error") \
	X(ERR_AUTH,       -29, "authentication failed") \
	X(ERR_BLOB,       -30, "key blob invalid") \
	X(ERR_NOTSUP,     -31, "not supported") \
	X(ERR_WRONGSTATE, -32, "operation not allowed in this state") \
	X(ERR_CRYPTOGRAM, -33, "cryptogram mismatch") \
	X(ERR_RMAC,       -34, "response MAC mismatch") \
	X(ERR_SW,         -35, "card returned an error status word") \
	X(ERR_INTERNAL,   -36, "internal error") \
	X(ERR_AUDIT,      -37, "audit log broken") \
	X(ERR_LIMIT,      -38, "limit reached")

enum {
#define X(name, val, msg) name = (val),
	ERR_TABLE(X)
#undef X
	ERR_MIN = -38
};

/* Human text for an error code; never NULL. */
const char *err_str(int err);
/* Symbolic name ("ERR_KCV"); never NULL. */
const char *err_name(int err);

/* ---- byte buffers (growable, wiped on free) ---------------------------- */

struct buf {
	uint8_t *p;
	size_t   len;
	size_t   cap;
};

void buf_init(struct buf *b);
/* Wipes the contents, frees, and resets to empty. */
void buf_free(struct buf *b);
/* Length to zero, capacity kept, contents wiped. */
void buf_reset(struct buf *b);
int  buf_reserve(struct buf *b, size_t extra) WUR;
int  buf_put(struct buf *b, const void *p, size_t n) WUR;
int  buf_put_u8(struct buf *b, uint8_t v) WUR;
int  buf_put_u16(struct buf *b, uint16_t v) WUR;	/* big-endian */
int  buf_put_u32(struct buf *b, uint32_t v) WUR;
int  buf_put_u64(struct buf *b, uint64_t v) WUR;
/* u32 length prefix then bytes */
int  buf_put_lv32(struct buf *b, const void *p, size_t n) WUR;
/* u16 length prefix then bytes (strings, labels) */
int  buf_put_lv16(struct buf *b, const void *p, size_t n) WUR;
int  buf_put_str(struct buf *b, const char *s) WUR;	/* lv16 */
/* Drop n bytes from the front. */
void buf_consume(struct buf *b, size_t n);

/* ---- bounds-checked reader ---------------------------------------------- */

struct rd {
	const uint8_t *p;
	size_t         len;
	size_t         off;
};

static inline void rd_init(struct rd *r, const void *p, size_t len)
{
	r->p = p; r->len = len; r->off = 0;
}
static inline size_t rd_left(const struct rd *r) { return r->len - r->off; }
int rd_u8(struct rd *r, uint8_t *v) WUR;
int rd_u16(struct rd *r, uint16_t *v) WUR;
int rd_u32(struct rd *r, uint32_t *v) WUR;
int rd_u64(struct rd *r, uint64_t *v) WUR;
/* Points into the reader's memory; no copy. */
int rd_bytes(struct rd *r, size_t n, const uint8_t **p) WUR;
/* u32 length then bytes; the length must be <= max. */
int rd_lv32(struct rd *r, size_t max, const uint8_t **p, size_t *n) WUR;
/* u16 length then bytes. */
int rd_lv16(struct rd *r, const uint8_t **p, size_t *n) WUR;
/* lv16 string copied NUL-terminated into out (cap bytes incl. NUL); rejects
 * embedded NULs. */
int rd_str(struct rd *r, char *out, size_t cap) WUR;
/* ERR_TRAILING unless everything was consumed. */
int rd_end(const struct rd *r) WUR;

/* ---- hex ----------------------------------------------------------------- */

/* Lowercase; out must hold 2*n+1 bytes. */
void hex_encode(const uint8_t *in, size_t n, char *out);
void hex_encode_upper(const uint8_t *in, size_t n, char *out);
/* Strict: even length, [0-9a-fA-F] only. *outlen = bytes written. */
int  hex_decode(const char *in, size_t inlen, uint8_t *out, size_t cap,
		size_t *outlen) WUR;
/* Decodes into a freshly allocated buffer. */
int  hex_decode_buf(const char *in, struct buf *out) WUR;

/* ---- secret memory ------------------------------------------------------- */

/* Page-backed, mlock'ed, excluded from core dumps, zeroed. Free wipes. */
void *secmem_alloc(size_t n);
void  secmem_free(void *p, size_t n);
/* Wipe that the compiler cannot drop. */
void  wipe(void *p, size_t n);
/* Constant-time equality for MACs, cryptograms, KCVs, PINs. */
int   ct_equal(const void *a, const void *b, size_t n);
/* No core dumps, not ptrace-able, for processes that hold secrets. */
int   process_harden(void) WUR;

/* ---- logging: one line per event, key=value, never secret bytes --------- */

enum { LOG_ERR = 0, LOG_WARN = 1, LOG_INFO = 2, LOG_DEBUG = 3 };
void log_init(const char *prog, int level);
void log_set_level(int level);
int  log_level(void);
void log_msg(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---- misc ------------------------------------------------------------------ */

uint64_t now_ms(void);		/* monotonic */
uint64_t now_us(void);		/* monotonic */
int64_t  wall_seconds(void);	/* CLOCK_REALTIME */
uint64_t wall_us(void);		/* CLOCK_REALTIME, for ids in time order */
/* RFC 3339 UTC with milliseconds, "2026-11-27T05:36:22.123Z"; out >= 32. */
void     time_rfc3339(char *out, size_t cap);

/* Reads a whole file (at most max bytes); ERR_TOOBIG beyond. */
int  file_read_all(const char *path, size_t max, struct buf *out) WUR;
/* Write to path.tmp, fsync, rename, fsync dir: all or nothing. */
int  file_write_atomic(const char *path, const void *p, size_t n, int mode) WUR;
/* mkdir -p with mode for each created component. */
int  mkdir_p(const char *path, int mode) WUR;

/* SHA-256 through a digest OpenSSL looks up once per process (SHA256()
 * and EVP_sha256() look it up, under a lock, at every call). */
struct evp_md_st;
const struct evp_md_st *sha256_evp(void);
int  sha256_of(const void *p, size_t n, uint8_t out[32]) WUR;	/* ERR_CRYPTO */

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

#endif
