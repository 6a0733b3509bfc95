/*
 * codec.c - pure encoders/decoders: BER-TLV (ISO/IEC 7816-4 §5.2), command
 * APDUs (ISO/IEC 7816-3 §12.1), status word names. No I/O, no crypto.
 * Runs in tsmd; trusts no byte and no length it decodes.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "tsm/gp/gp_int.h"

/* ---- errors ---------------------------------------------------------- */

void
gp_err_clear(struct gp_err *e)
{
	if (e != NULL) {
		e->code = 0;
		e->msg[0] = '\0';
	}
}

int
gp_fail(struct gp_err *err, int code, const char *fmt, ...)
{
	va_list ap;

	if (err != NULL) {
		err->code = code;
		va_start(ap, fmt);
		vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
		va_end(ap);
	}
	return code;
}

const char *
gp_hexstr(const uint8_t *p, size_t n, char *out, size_t cap)
{
	size_t fit;

	if (cap == 0)
		return out;
	fit = (cap - 1) / 2;
	if (n <= fit) {
		hex_encode_upper(p, n, out);
		return out;
	}
	if (cap < 3) {
		out[0] = '\0';
		return out;
	}
	fit = (cap - 3) / 2;
	hex_encode_upper(p, fit, out);
	memcpy(out + 2 * fit, "..", 3);
	return out;
}

/* ---- BER-TLV --------------------------------------------------------- */

int
gp_ber_len_get(struct rd *r, size_t *len, unsigned flags, struct gp_err *err)
{
	uint8_t b, x;
	size_t v = 0, nb, i;
	int rc;

	if ((rc = rd_u8(r, &b)) != 0)
		return gp_fail(err, ERR_TRUNC, "BER length missing at offset %zu",
		    r->off);
	if (b < 0x80) {
		*len = b;
		return 0;
	}
	if (b == 0x80)
		return gp_fail(err, ERR_PARSE,
		    "indefinite BER length (80) at offset %zu refused",
		    r->off - 1);
	nb = b & 0x7f;
	if (nb > 3)
		return gp_fail(err, ERR_PARSE,
		    "BER length form %02X at offset %zu: more than 3 length bytes",
		    b, r->off - 1);
	for (i = 0; i < nb; i++) {
		if ((rc = rd_u8(r, &x)) != 0)
			return gp_fail(err, ERR_TRUNC,
			    "BER length %02X truncated at offset %zu", b, r->off);
		v = (v << 8) | x;
	}
	/* Minimal form: 81 only for 80..FF, 82 only above FF, 83 above FFFF. */
	if (!(flags & GP_TLV_LAX_LENGTH) &&
	    ((nb == 1 && v < 0x80) || (nb == 2 && v < 0x100) ||
	    (nb == 3 && v < 0x10000)))
		return gp_fail(err, ERR_PARSE,
		    "non-minimal BER length (%02X form for %zu) refused", b, v);
	*len = v;
	return 0;
}

/* Reads a tag; 1..3 bytes. */
static int
tlv_tag_get(struct rd *r, uint32_t *tag, struct gp_err *err)
{
	uint8_t b;
	size_t start = r->off, n = 1;
	uint32_t t;

	if (rd_u8(r, &b) != 0)
		return gp_fail(err, ERR_TRUNC, "tag missing at offset %zu", start);
	if (b == 0x00)
		return gp_fail(err, ERR_PARSE, "invalid tag 00 at offset %zu",
		    start);
	t = b;
	if ((b & 0x1f) == 0x1f) {
		do {
			if (rd_u8(r, &b) != 0)
				return gp_fail(err, ERR_TRUNC,
				    "multi-byte tag truncated at offset %zu", start);
			if (n == 1 && b == 0x80)
				return gp_fail(err, ERR_PARSE,
				    "non-minimal tag encoding at offset %zu", start);
			if (++n > 3)
				return gp_fail(err, ERR_PARSE,
				    "tag longer than 3 bytes at offset %zu", start);
			t = (t << 8) | b;
		} while (b & 0x80);
	}
	*tag = t;
	return 0;
}

void
gp_tlv_iter_init(struct gp_tlv_iter *it, const uint8_t *p, size_t n,
    unsigned flags)
{
	it->p = p;
	it->len = n;
	it->off = 0;
	it->flags = flags;
}

int
gp_tlv_next(struct gp_tlv_iter *it, struct gp_tlv *t, struct gp_err *err)
{
	struct rd r;
	size_t len, start = it->off;
	int rc;

	if (it->len > GP_TLV_MAX_INPUT)
		return gp_fail(err, ERR_TOOBIG, "TLV input of %zu bytes over the "
		    "%u byte limit", it->len, GP_TLV_MAX_INPUT);
	if (it->off >= it->len)
		return 0;
	rd_init(&r, it->p, it->len);
	r.off = it->off;
	if ((rc = tlv_tag_get(&r, &t->tag, err)) != 0)
		return rc;
	if ((rc = gp_ber_len_get(&r, &len, it->flags, err)) != 0)
		return rc;
	if (len > rd_left(&r))
		return gp_fail(err, ERR_TRUNC, "TLV %X at offset %zu: length %zu "
		    "past the end of the buffer (%zu bytes left)", t->tag, start,
		    len, rd_left(&r));
	t->constructed = (it->p[start] & 0x20) != 0;
	t->val = it->p + r.off;
	t->len = len;
	t->raw = it->p + start;
	t->raw_len = r.off + len - start;
	it->off = r.off + len;
	return 1;
}

int
gp_tlv_decode(const uint8_t *p, size_t n, struct gp_tlv *t, struct gp_err *err)
{
	struct gp_tlv_iter it;
	int rc;

	gp_tlv_iter_init(&it, p, n, 0);
	rc = gp_tlv_next(&it, t, err);
	if (rc < 0)
		return rc;
	if (rc == 0)
		return gp_fail(err, ERR_TRUNC, "empty input where a TLV was expected");
	if (it.off != n)
		return gp_fail(err, ERR_TRAILING, "%zu trailing bytes after TLV %X",
		    n - it.off, t->tag);
	return 0;
}

static int
tlv_check_rec(const uint8_t *p, size_t n, unsigned depth, unsigned max_depth,
    struct gp_err *err)
{
	struct gp_tlv_iter it;
	struct gp_tlv t;
	int rc;

	if (depth > max_depth)
		return gp_fail(err, ERR_LIMIT, "TLV nesting deeper than %u",
		    max_depth);
	gp_tlv_iter_init(&it, p, n, 0);
	while ((rc = gp_tlv_next(&it, &t, err)) == 1) {
		if (t.constructed &&
		    (rc = tlv_check_rec(t.val, t.len, depth + 1, max_depth,
		    err)) != 0)
			return rc;
	}
	return rc;
}

int
gp_tlv_check(const uint8_t *p, size_t n, unsigned max_depth, struct gp_err *err)
{
	if (n > GP_TLV_MAX_INPUT)
		return gp_fail(err, ERR_TOOBIG, "TLV input of %zu bytes over the "
		    "%u byte limit", n, GP_TLV_MAX_INPUT);
	if (max_depth > GP_TLV_MAX_DEPTH)
		max_depth = GP_TLV_MAX_DEPTH;
	/* depth = number of constructed objects around the bytes checked */
	return tlv_check_rec(p, n, 0, max_depth, err);
}

int
gp_tlv_find(const uint8_t *p, size_t n, uint32_t tag, struct gp_tlv *t,
    struct gp_err *err)
{
	struct gp_tlv_iter it;
	int rc;

	gp_tlv_iter_init(&it, p, n, 0);
	while ((rc = gp_tlv_next(&it, t, err)) == 1)
		if (t->tag == tag)
			return 0;
	if (rc < 0)
		return rc;
	return gp_fail(err, ERR_NOTFOUND, "tag %X not found", tag);
}

int
gp_ber_len_put(struct buf *b, size_t n)
{
	uint8_t x[4];

	if (n < 0x80) {
		x[0] = (uint8_t)n;
		return buf_put(b, x, 1);
	}
	if (n <= 0xff) {
		x[0] = 0x81;
		x[1] = (uint8_t)n;
		return buf_put(b, x, 2);
	}
	if (n <= 0xffff) {
		x[0] = 0x82;
		x[1] = (uint8_t)(n >> 8);
		x[2] = (uint8_t)n;
		return buf_put(b, x, 3);
	}
	if (n <= 0xffffff) {
		x[0] = 0x83;
		x[1] = (uint8_t)(n >> 16);
		x[2] = (uint8_t)(n >> 8);
		x[3] = (uint8_t)n;
		return buf_put(b, x, 4);
	}
	return ERR_TOOBIG;
}

/* The tag's bytes, validated against the decoder's rules. */
static int
tlv_tag_bytes(uint32_t tag, uint8_t out[3], size_t *n)
{
	struct rd r;
	uint32_t back;

	if (tag == 0 || tag > 0xffffff)
		return ERR_INVAL;
	if (tag > 0xffff) {
		out[0] = (uint8_t)(tag >> 16);
		out[1] = (uint8_t)(tag >> 8);
		out[2] = (uint8_t)tag;
		*n = 3;
	} else if (tag > 0xff) {
		out[0] = (uint8_t)(tag >> 8);
		out[1] = (uint8_t)tag;
		*n = 2;
	} else {
		out[0] = (uint8_t)tag;
		*n = 1;
	}
	rd_init(&r, out, *n);
	if (tlv_tag_get(&r, &back, NULL) != 0 || back != tag || rd_left(&r) != 0)
		return ERR_INVAL;
	return 0;
}

int
gp_tlv_tag_put(struct buf *b, uint32_t tag)
{
	uint8_t t[3];
	size_t n;
	int rc;

	if ((rc = tlv_tag_bytes(tag, t, &n)) != 0)
		return rc;
	return buf_put(b, t, n);
}

int
gp_tlv_put(struct buf *b, uint32_t tag, const void *v, size_t n)
{
	int rc;

	if ((rc = gp_tlv_tag_put(b, tag)) != 0 ||
	    (rc = gp_ber_len_put(b, n)) != 0)
		return rc;
	return buf_put(b, v, n);
}

int
gp_tlv_open(struct buf *b, uint32_t tag, size_t *mark)
{
	int rc;

	if ((rc = gp_tlv_tag_put(b, tag)) != 0)
		return rc;
	*mark = b->len;
	return 0;
}

/* Inserts the minimal length of everything written since the mark. */
int
gp_tlv_close(struct buf *b, size_t mark)
{
	uint8_t lenbytes[4];
	struct buf lb = { lenbytes, 0, sizeof(lenbytes) };
	size_t n;
	int rc;

	if (mark > b->len)
		return ERR_INVAL;
	n = b->len - mark;
	if ((rc = gp_ber_len_put(&lb, n)) != 0)
		return rc;
	if ((rc = buf_reserve(b, lb.len)) != 0)
		return rc;
	memmove(b->p + mark + lb.len, b->p + mark, n);
	memcpy(b->p + mark, lenbytes, lb.len);
	b->len += lb.len;
	return 0;
}

int
gp_lv_put(struct buf *b, const uint8_t *p, size_t n)
{
	int rc;

	if ((rc = gp_ber_len_put(b, n)) != 0)
		return rc;
	return buf_put(b, p, n);
}

/* ---- APDUs ----------------------------------------------------------- */

int
gp_apdu_decode(const uint8_t *p, size_t n, struct gp_apdu *a, struct gp_err *err)
{
	size_t lc;

	memset(a, 0, sizeof(*a));
	if (n < 4)
		return gp_fail(err, ERR_TRUNC, "APDU of %zu bytes: header needs 4",
		    n);
	a->cla = p[0];
	a->ins = p[1];
	a->p1 = p[2];
	a->p2 = p[3];
	if (n == 4)				/* case 1 */
		return 0;
	if (n == 5) {				/* case 2S */
		a->ne = p[4] ? p[4] : 256;
		return 0;
	}
	if (p[4] != 0) {			/* cases 3S, 4S */
		lc = p[4];
		if (n == 5 + lc) {
			a->data = p + 5;
			a->lc = lc;
			return 0;
		}
		if (n == 6 + lc) {
			a->data = p + 5;
			a->lc = lc;
			a->ne = p[5 + lc] ? p[5 + lc] : 256;
			return 0;
		}
		return gp_fail(err, ERR_PARSE, "APDU: short Lc %zu does not match "
		    "%zu bytes", lc, n);
	}
	a->ext = 1;
	if (n == 7) {				/* case 2E */
		a->ne = ((size_t)p[5] << 8) | p[6];
		if (a->ne == 0)
			a->ne = 65536;
		return 0;
	}
	if (n < 7)
		return gp_fail(err, ERR_PARSE, "APDU: %zu bytes after an extended "
		    "length marker", n);
	lc = ((size_t)p[5] << 8) | p[6];
	if (lc == 0)
		return gp_fail(err, ERR_PARSE, "APDU: extended Lc of zero");
	a->data = p + 7;
	a->lc = lc;
	if (n == 7 + lc)			/* case 3E */
		return 0;
	if (n == 9 + lc) {			/* case 4E */
		a->ne = ((size_t)p[7 + lc] << 8) | p[8 + lc];
		if (a->ne == 0)
			a->ne = 65536;
		return 0;
	}
	return gp_fail(err, ERR_PARSE, "APDU: extended Lc %zu does not match %zu "
	    "bytes", lc, n);
}

int
gp_apdu_encode(const struct gp_apdu *a, struct buf *out, struct gp_err *err)
{
	uint8_t h[4] = { a->cla, a->ins, a->p1, a->p2 };
	int ext, rc;

	if (a->lc > 65535 || a->ne > 65536)
		return gp_fail(err, ERR_TOOBIG, "APDU: Lc %zu / Ne %zu too large",
		    a->lc, a->ne);
	if (a->lc > 0 && a->data == NULL)
		return gp_fail(err, ERR_INVAL, "APDU: Lc %zu without data", a->lc);
	ext = a->ext || a->lc > 255 || a->ne > 256;
	buf_reset(out);
	if ((rc = buf_put(out, h, 4)) != 0)
		goto out;
	if (!ext) {
		if (a->lc > 0 && ((rc = buf_put_u8(out, (uint8_t)a->lc)) != 0 ||
		    (rc = buf_put(out, a->data, a->lc)) != 0))
			goto out;
		if (a->ne > 0)
			rc = buf_put_u8(out, (uint8_t)(a->ne == 256 ? 0 : a->ne));
		goto out;
	}
	if (a->lc == 0 && a->ne == 0)		/* case 1 has no extended form */
		goto out;
	if ((rc = buf_put_u8(out, 0)) != 0)
		goto out;
	if (a->lc > 0 && ((rc = buf_put_u16(out, (uint16_t)a->lc)) != 0 ||
	    (rc = buf_put(out, a->data, a->lc)) != 0))
		goto out;
	if (a->ne > 0)
		rc = buf_put_u16(out, (uint16_t)(a->ne == 65536 ? 0 : a->ne));
out:
	if (rc != 0)
		return gp_fail(err, rc, "APDU encode: %s", err_str(rc));
	return 0;
}

int
gp_apdu_build(struct buf *out, uint8_t cla, uint8_t ins, uint8_t p1,
    uint8_t p2, const uint8_t *data, size_t lc, size_t ne, struct gp_err *err)
{
	struct gp_apdu a = { cla, ins, p1, p2, data, lc, ne, 0 };

	return gp_apdu_encode(&a, out, err);
}

int
gp_resp_split(const uint8_t *p, size_t n, const uint8_t **data, size_t *dlen,
    uint16_t *sw, struct gp_err *err)
{
	if (n < 2)
		return gp_fail(err, ERR_TRUNC, "response of %zu bytes has no "
		    "status word", n);
	*data = p;
	*dlen = n - 2;
	*sw = (uint16_t)((p[n - 2] << 8) | p[n - 1]);
	return 0;
}

/* ISO/IEC 7816-4 §5.1.1: channels 0-3 in the first interindustry class
 * (b2b1), 4-19 in the further class (b7 set, b4-b1 = channel - 4). */
int
gp_cla_channel(uint8_t base, unsigned channel, uint8_t *cla)
{
	if (base != 0x00 && base != 0x80)
		return ERR_INVAL;
	if (channel < 4)
		*cla = (uint8_t)(base | channel);
	else if (channel < 20)
		*cla = (uint8_t)(base | 0x40 | (channel - 4));
	else
		return ERR_INVAL;
	return 0;
}

/* ---- status words ---------------------------------------------------- */

static const struct {
	uint16_t sw, mask;
	const char *text;
} sw_table[] = {
	{ 0x9000, 0xffff, "success" },
	{ 0x6100, 0xff00, "response bytes still available" },
	{ 0x6200, 0xffff, "warning, no information given" },
	{ 0x6281, 0xffff, "part of returned data may be corrupted" },
	{ 0x6282, 0xffff, "end of data reached before Le bytes" },
	{ 0x6283, 0xffff, "selected file invalidated / card locked" },
	{ 0x6284, 0xffff, "FCI not formatted" },
	{ 0x6310, 0xffff, "more data available" },
	{ 0x63c0, 0xfff0, "verification failed, retries left in low nibble" },
	{ 0x6400, 0xffff, "execution error, state unchanged" },
	{ 0x6500, 0xffff, "execution error, memory changed" },
	{ 0x6581, 0xffff, "memory failure" },
	{ 0x6700, 0xffff, "wrong length" },
	{ 0x6800, 0xffff, "functions in CLA not supported" },
	{ 0x6881, 0xffff, "logical channel not supported" },
	{ 0x6882, 0xffff, "secure messaging not supported" },
	{ 0x6883, 0xffff, "last command of the chain expected" },
	{ 0x6884, 0xffff, "command chaining not supported" },
	{ 0x6900, 0xffff, "command not allowed" },
	{ 0x6981, 0xffff, "command incompatible with file structure" },
	{ 0x6982, 0xffff, "security status not satisfied" },
	{ 0x6983, 0xffff, "authentication method blocked" },
	{ 0x6984, 0xffff, "referenced data invalidated" },
	{ 0x6985, 0xffff, "conditions of use not satisfied" },
	{ 0x6986, 0xffff, "command not allowed (no current EF)" },
	{ 0x6987, 0xffff, "expected secure messaging data objects missing" },
	{ 0x6988, 0xffff, "incorrect secure messaging data objects" },
	{ 0x6a80, 0xffff, "incorrect values in command data" },
	{ 0x6a81, 0xffff, "function not supported" },
	{ 0x6a82, 0xffff, "application or file not found" },
	{ 0x6a84, 0xffff, "not enough memory space" },
	{ 0x6a86, 0xffff, "incorrect P1 P2" },
	{ 0x6a88, 0xffff, "referenced data not found" },
	{ 0x6b00, 0xffff, "wrong parameters P1 P2" },
	{ 0x6c00, 0xff00, "wrong Le, exact length in SW2" },
	{ 0x6d00, 0xffff, "instruction not supported" },
	{ 0x6e00, 0xffff, "class not supported" },
	{ 0x6f00, 0xffff, "no precise diagnosis" },
	{ 0x9484, 0xffff, "algorithm not supported" },
	{ 0x9485, 0xffff, "invalid key check value" },
};

const char *
gp_sw_text(uint16_t sw)
{
	size_t i;

	for (i = 0; i < ARRAY_LEN(sw_table); i++)
		if ((sw & sw_table[i].mask) == sw_table[i].sw)
			return sw_table[i].text;
	switch (sw >> 8) {
	case 0x62: case 0x63: return "warning";
	case 0x64: case 0x65: case 0x66: return "execution error";
	case 0x67: case 0x68: case 0x69: case 0x6a: case 0x6b: case 0x6d:
	case 0x6e: case 0x6f: return "checking error";
	}
	return "unknown status word";
}

const char *
gp_sw_str(uint16_t sw, char *out, size_t cap)
{
	if (cap > 0)
		snprintf(out, cap, "SW_%04X %s", sw, gp_sw_text(sw));
	return out;
}

int
gp_sw_processed(uint16_t sw)
{
	return sw == 0x9000 || (sw >> 8) == 0x62 || (sw >> 8) == 0x63;
}
