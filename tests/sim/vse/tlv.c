/*
 * tlv.c - the virtual SE's own BER-TLV and LV reading and writing
 * (ISO 7816-4 §5.2 / X.690 lengths up to 3 bytes). Runs in the card;
 * every byte it reads comes from an APDU, so every read is bounds-checked.
 */
#include <string.h>

#include "tests/sim/vse/vse_int.h"

int
vse_ber_len(struct rd *r, size_t *len)
{
	uint8_t b, x;
	size_t i, n, v = 0;
	int rc;

	if ((rc = rd_u8(r, &b)) != 0)
		return rc;
	if (b < 0x80) {
		*len = b;
		return 0;
	}
	/* 81 xx, 82 xxxx, 83 xxxxxx; nothing larger fits a card anyway. */
	n = b & 0x7F;
	if (n == 0 || n > 3)
		return ERR_PARSE;
	for (i = 0; i < n; i++) {
		if ((rc = rd_u8(r, &x)) != 0)
			return rc;
		v = (v << 8) | x;
	}
	*len = v;
	return 0;
}

int
vse_ber_tag(struct rd *r, uint32_t *tag)
{
	uint8_t b;
	uint32_t t;
	int rc, i;

	if ((rc = rd_u8(r, &b)) != 0)
		return rc;
	/* 00 and FF are padding/invalid as first tag byte (ISO 7816-4 §5.2.2). */
	if (b == 0x00 || b == 0xFF)
		return ERR_PARSE;
	t = b;
	if ((b & 0x1F) == 0x1F) {
		for (i = 0; i < 2; i++) {
			if ((rc = rd_u8(r, &b)) != 0)
				return rc;
			t = (t << 8) | b;
			if (!(b & 0x80))
				break;
		}
		if (b & 0x80)
			return ERR_PARSE;
	}
	*tag = t;
	return 0;
}

int
vse_tlv_next(struct rd *r, uint32_t *tag, const uint8_t **v, size_t *n)
{
	size_t save = r->off, len;
	int rc;

	if ((rc = vse_ber_tag(r, tag)) != 0 || (rc = vse_ber_len(r, &len)) != 0 ||
	    (rc = rd_bytes(r, len, v)) != 0) {
		r->off = save;
		return rc == ERR_TRUNC ? ERR_PARSE : rc;
	}
	*n = len;
	return 0;
}

int
vse_tlv_find(const uint8_t *p, size_t n, uint32_t tag, const uint8_t **v,
    size_t *vn)
{
	struct rd r;
	uint32_t t;
	const uint8_t *val;
	size_t len;
	int rc;

	rd_init(&r, p, n);
	while (rd_left(&r) > 0) {
		if ((rc = vse_tlv_next(&r, &t, &val, &len)) != 0)
			return rc;
		if (t == tag) {
			*v = val;
			*vn = len;
			return 0;
		}
	}
	return ERR_NOTFOUND;
}

int
vse_tlv_check(const uint8_t *p, size_t n)
{
	struct rd r;
	uint32_t t;
	const uint8_t *v;
	size_t len;
	int rc;

	rd_init(&r, p, n);
	while (rd_left(&r) > 0)
		if ((rc = vse_tlv_next(&r, &t, &v, &len)) != 0)
			return rc;
	return 0;
}

int
vse_lv_next(struct rd *r, const uint8_t **v, size_t *n)
{
	size_t save = r->off, len;
	int rc;

	if ((rc = vse_ber_len(r, &len)) != 0 || (rc = rd_bytes(r, len, v)) != 0) {
		r->off = save;
		return rc == ERR_TRUNC ? ERR_PARSE : rc;
	}
	*n = len;
	return 0;
}

int
vse_put_ber_len(struct buf *b, size_t n)
{
	int rc;

	if (n < 0x80)
		return buf_put_u8(b, (uint8_t)n);
	if (n <= 0xFF) {
		if ((rc = buf_put_u8(b, 0x81)) != 0)
			return rc;
		return buf_put_u8(b, (uint8_t)n);
	}
	if (n <= 0xFFFF) {
		if ((rc = buf_put_u8(b, 0x82)) != 0)
			return rc;
		return buf_put_u16(b, (uint16_t)n);
	}
	return ERR_TOOBIG;
}

int
vse_put_tag(struct buf *b, uint32_t tag)
{
	int rc = 0;

	if (tag > 0xFFFF)
		rc = buf_put_u8(b, (uint8_t)(tag >> 16));
	if (rc == 0 && tag > 0xFF)
		rc = buf_put_u8(b, (uint8_t)(tag >> 8));
	if (rc == 0)
		rc = buf_put_u8(b, (uint8_t)tag);
	return rc;
}

int
vse_put_tlv(struct buf *b, uint32_t tag, const void *v, size_t n)
{
	int rc;

	if ((rc = vse_put_tag(b, tag)) != 0 || (rc = vse_put_ber_len(b, n)) != 0)
		return rc;
	return buf_put(b, v, n);
}

int
vse_put_lv(struct buf *b, const void *v, size_t n)
{
	int rc;

	if ((rc = vse_put_ber_len(b, n)) != 0)
		return rc;
	return buf_put(b, v, n);
}

int
vse_get_uint(const uint8_t *p, size_t n, uint32_t *v)
{
	size_t i;
	uint32_t x = 0;

	/* EF{C6,C7,C8} values are 2 or 4 bytes (GPC §11.5.2.3.7). */
	if (n != 2 && n != 4)
		return ERR_PARSE;
	for (i = 0; i < n; i++)
		x = (x << 8) | p[i];
	*v = x;
	return 0;
}
