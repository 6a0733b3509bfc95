/*
 * base.c - the project error table, byte buffers, bounds-checked readers
 * and hex. Runs in every process; trusts no length it reads.
 */
#include <stdlib.h>
#include <string.h>

#include "base.h"

const char *
err_str(int err)
{
	switch (err) {
	case 0: return "ok";
#define X(name, val, msg) case name: return msg;
	ERR_TABLE(X)
#undef X
	}
	return "unknown error";
}

const char *
err_name(int err)
{
	switch (err) {
	case 0: return "OK";
#define X(name, val, msg) case name: return #name;
	ERR_TABLE(X)
#undef X
	}
	return "ERR_UNKNOWN";
}

/* ---- buffers ---- */

void
buf_init(struct buf *b)
{
	b->p = NULL;
	b->len = b->cap = 0;
}

void
buf_free(struct buf *b)
{
	if (b->p != NULL) {
		wipe(b->p, b->cap);
		free(b->p);
	}
	buf_init(b);
}

void
buf_reset(struct buf *b)
{
	if (b->p != NULL)
		wipe(b->p, b->len);
	b->len = 0;
}

int
buf_reserve(struct buf *b, size_t extra)
{
	size_t need, ncap;
	uint8_t *np;

	if (extra > SIZE_MAX - b->len)
		return ERR_TOOBIG;
	need = b->len + extra;
	if (need <= b->cap)
		return 0;
	ncap = b->cap ? b->cap : 64;
	while (ncap < need) {
		if (ncap > SIZE_MAX / 2)
			return ERR_TOOBIG;
		ncap *= 2;
	}
	/* Not realloc: the old block may hold secrets and must be wiped. */
	np = malloc(ncap);
	if (np == NULL)
		return ERR_NOMEM;
	if (b->p != NULL) {
		memcpy(np, b->p, b->len);
		wipe(b->p, b->cap);
		free(b->p);
	}
	b->p = np;
	b->cap = ncap;
	return 0;
}

int
buf_put(struct buf *b, const void *p, size_t n)
{
	int rc;

	if (n == 0)
		return 0;
	if ((rc = buf_reserve(b, n)) != 0)
		return rc;
	memcpy(b->p + b->len, p, n);
	b->len += n;
	return 0;
}

int
buf_put_u8(struct buf *b, uint8_t v)
{
	return buf_put(b, &v, 1);
}

int
buf_put_u16(struct buf *b, uint16_t v)
{
	uint8_t x[2] = { (uint8_t)(v >> 8), (uint8_t)v };
	return buf_put(b, x, 2);
}

int
buf_put_u32(struct buf *b, uint32_t v)
{
	uint8_t x[4] = { (uint8_t)(v >> 24), (uint8_t)(v >> 16),
	    (uint8_t)(v >> 8), (uint8_t)v };
	return buf_put(b, x, 4);
}

int
buf_put_u64(struct buf *b, uint64_t v)
{
	int rc;

	if ((rc = buf_put_u32(b, (uint32_t)(v >> 32))) != 0)
		return rc;
	return buf_put_u32(b, (uint32_t)v);
}

int
buf_put_lv32(struct buf *b, const void *p, size_t n)
{
	int rc;

	if (n > UINT32_MAX)
		return ERR_TOOBIG;
	if ((rc = buf_put_u32(b, (uint32_t)n)) != 0)
		return rc;
	return buf_put(b, p, n);
}

int
buf_put_lv16(struct buf *b, const void *p, size_t n)
{
	int rc;

	if (n > UINT16_MAX)
		return ERR_TOOBIG;
	if ((rc = buf_put_u16(b, (uint16_t)n)) != 0)
		return rc;
	return buf_put(b, p, n);
}

int
buf_put_str(struct buf *b, const char *s)
{
	return buf_put_lv16(b, s, s ? strlen(s) : 0);
}

void
buf_consume(struct buf *b, size_t n)
{
	if (n >= b->len) {
		buf_reset(b);
		return;
	}
	memmove(b->p, b->p + n, b->len - n);
	wipe(b->p + b->len - n, n);
	b->len -= n;
}

/* ---- reader ---- */

int
rd_bytes(struct rd *r, size_t n, const uint8_t **p)
{
	if (n > rd_left(r))
		return ERR_TRUNC;
	*p = r->p + r->off;
	r->off += n;
	return 0;
}

int
rd_u8(struct rd *r, uint8_t *v)
{
	const uint8_t *p;
	int rc;

	if ((rc = rd_bytes(r, 1, &p)) != 0)
		return rc;
	*v = p[0];
	return 0;
}

int
rd_u16(struct rd *r, uint16_t *v)
{
	const uint8_t *p;
	int rc;

	if ((rc = rd_bytes(r, 2, &p)) != 0)
		return rc;
	*v = (uint16_t)((p[0] << 8) | p[1]);
	return 0;
}

int
rd_u32(struct rd *r, uint32_t *v)
{
	const uint8_t *p;
	int rc;

	if ((rc = rd_bytes(r, 4, &p)) != 0)
		return rc;
	*v = ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) |
	    ((uint32_t)p[2] << 8) | p[3];
	return 0;
}

int
rd_u64(struct rd *r, uint64_t *v)
{
	uint32_t hi, lo;
	int rc;

	if ((rc = rd_u32(r, &hi)) != 0 || (rc = rd_u32(r, &lo)) != 0)
		return rc;
	*v = ((uint64_t)hi << 32) | lo;
	return 0;
}

int
rd_lv32(struct rd *r, size_t max, const uint8_t **p, size_t *n)
{
	uint32_t len;
	size_t save = r->off;
	int rc;

	if ((rc = rd_u32(r, &len)) != 0)
		return rc;
	if (len > max) {
		r->off = save;
		return ERR_TOOBIG;
	}
	if ((rc = rd_bytes(r, len, p)) != 0) {
		r->off = save;
		return rc;
	}
	*n = len;
	return 0;
}

int
rd_lv16(struct rd *r, const uint8_t **p, size_t *n)
{
	uint16_t len;
	size_t save = r->off;
	int rc;

	if ((rc = rd_u16(r, &len)) != 0)
		return rc;
	if ((rc = rd_bytes(r, len, p)) != 0) {
		r->off = save;
		return rc;
	}
	*n = len;
	return 0;
}

int
rd_str(struct rd *r, char *out, size_t cap)
{
	const uint8_t *p;
	size_t n;
	size_t save = r->off;
	int rc;

	if ((rc = rd_lv16(r, &p, &n)) != 0)
		return rc;
	if (n >= cap) {
		r->off = save;
		return ERR_TOOBIG;
	}
	if (memchr(p, 0, n) != NULL) {
		r->off = save;
		return ERR_INVAL;
	}
	memcpy(out, p, n);
	out[n] = '\0';
	return 0;
}

int
rd_end(const struct rd *r)
{
	return rd_left(r) == 0 ? 0 : ERR_TRAILING;
}

/* ---- hex ---- */

static void
hex_encode_with(const uint8_t *in, size_t n, char *out, const char *digits)
{
	size_t i;

	for (i = 0; i < n; i++) {
		out[2 * i] = digits[in[i] >> 4];
		out[2 * i + 1] = digits[in[i] & 0x0f];
	}
	out[2 * n] = '\0';
}

void
hex_encode(const uint8_t *in, size_t n, char *out)
{
	hex_encode_with(in, n, out, "0123456789abcdef");
}

void
hex_encode_upper(const uint8_t *in, size_t n, char *out)
{
	hex_encode_with(in, n, out, "0123456789ABCDEF");
}

static int
hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int
hex_decode(const char *in, size_t inlen, uint8_t *out, size_t cap,
    size_t *outlen)
{
	size_t i;
	int hi, lo;

	if (inlen % 2 != 0)
		return ERR_PARSE;
	if (inlen / 2 > cap)
		return ERR_TOOBIG;
	for (i = 0; i < inlen / 2; i++) {
		hi = hexval((unsigned char)in[2 * i]);
		lo = hexval((unsigned char)in[2 * i + 1]);
		if (hi < 0 || lo < 0)
			return ERR_PARSE;
		out[i] = (uint8_t)((hi << 4) | lo);
	}
	*outlen = inlen / 2;
	return 0;
}

int
hex_decode_buf(const char *in, struct buf *out)
{
	size_t n = strlen(in), got;
	int rc;

	buf_reset(out);
	if ((rc = buf_reserve(out, n / 2 + 1)) != 0)
		return rc;
	if ((rc = hex_decode(in, n, out->p, out->cap, &got)) != 0)
		return rc;
	out->len = got;
	return 0;
}
