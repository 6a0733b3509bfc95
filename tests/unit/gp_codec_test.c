/*
 * gp_codec_test.c - BER-TLV decoder/encoder (strictness, limits, every bad
 * input named), APDU cases 1-4 short and extended, status word names.
 */
#include <stdlib.h>
#include <string.h>

#include "kms/base.h"
#include "tsm/gp/gp.h"
#include "tests/tap.h"

static void
hexb(const char *h, struct buf *b)
{
	if (hex_decode_buf(h, b) != 0)
		bail("bad hex in test data: %s", h);
}

static int
msg_has(const struct gp_err *e, const char *needle)
{
	return strstr(e->msg, needle) != NULL;
}

/* Decoded TLVs point into their input, so inputs live until the end. */
static struct buf keep[64];
static int nkeep;

static int
dec(const char *h, struct gp_tlv *t, struct gp_err *e)
{
	struct buf *b;

	if (nkeep == 64)
		bail("dec: too many inputs");
	b = &keep[nkeep++];
	buf_init(b);
	hexb(h, b);
	return gp_tlv_decode(b->p, b->len, t, e);
}

static void
dec_free_all(void)
{
	while (nkeep > 0)
		buf_free(&keep[--nkeep]);
}

static void
test_tlv_decode(void)
{
	struct gp_tlv t;
	struct gp_err e;
	struct buf b;
	size_t i;

	buf_init(&b);
	ok(dec("4F05A000000003", &t, &e) == 0 && t.tag == 0x4F && t.len == 5 &&
	    !t.constructed && t.raw_len == 7, "one-byte tag, short length");
	ok(dec("9F700107", &t, &e) == 0 && t.tag == 0x9F70 && t.len == 1 &&
	    t.val[0] == 7, "two-byte tag 9F70");
	ok(dec("DF810101AA", &t, &e) == 0 && t.tag == 0xDF8101 && t.len == 1,
	    "three-byte tag DF8101");
	ok(dec("FF2100", &t, &e) == 0 && t.tag == 0xFF21 && t.constructed,
	    "FF21 is a valid constructed tag");
	ok(dec("DF81818101AA", &t, &e) == ERR_PARSE &&
	    msg_has(&e, "longer than 3"), "four-byte tag refused: %s", e.msg);
	ok(dec("9F800101AA", &t, &e) == ERR_PARSE && msg_has(&e, "non-minimal tag"),
	    "non-minimal tag refused: %s", e.msg);
	ok(dec("0001AA", &t, &e) == ERR_PARSE && msg_has(&e, "invalid tag 00"),
	    "tag 00 refused: %s", e.msg);
	ok(dec("9F", &t, &e) == ERR_TRUNC && msg_has(&e, "truncated"),
	    "truncated tag refused: %s", e.msg);

	/* long forms */
	if (buf_put(&b, "\xC4\x81\x80", 3) != 0)
		bail("nomem");
	for (i = 0; i < 128; i++)
		if (buf_put_u8(&b, (uint8_t)i) != 0)
			bail("nomem");
	ok(gp_tlv_decode(b.p, b.len, &t, &e) == 0 && t.len == 128 &&
	    t.val == b.p + 3, "81 80: 128 bytes");
	buf_reset(&b);
	if (buf_put(&b, "\xC4\x82\x01\x00", 4) != 0 || buf_reserve(&b, 256) != 0)
		bail("nomem");
	memset(b.p + 4, 0x5a, 256);
	b.len = 260;
	ok(gp_tlv_decode(b.p, b.len, &t, &e) == 0 && t.len == 256,
	    "82 01 00: 256 bytes");
	buf_reset(&b);
	if (buf_put(&b, "\xC4\x83\x01\x00\x00", 5) != 0 ||
	    buf_reserve(&b, 65536) != 0)
		bail("nomem");
	memset(b.p + 5, 0x5a, 65536);
	b.len = 5 + 65536;
	ok(gp_tlv_decode(b.p, b.len, &t, &e) == 0 && t.len == 65536,
	    "83 01 00 00: 65536 bytes");
	b.len--;
	ok(gp_tlv_decode(b.p, b.len, &t, &e) == ERR_TRUNC &&
	    msg_has(&e, "past the end"), "length past the buffer refused: %s",
	    e.msg);
	buf_free(&b);

	ok(dec("4F8105A000000003", &t, &e) == ERR_PARSE &&
	    msg_has(&e, "non-minimal BER length"), "81 05 refused: %s", e.msg);
	ok(dec("4F820005A000000003", &t, &e) == ERR_PARSE,
	    "82 00 05 refused: %s", e.msg);
	ok(dec("4F83000100" "00", &t, &e) == ERR_PARSE,
	    "83 00 01 00 refused: %s", e.msg);
	{
		struct gp_tlv_iter it;
		uint8_t x[] = { 0x4F, 0x81, 0x02, 0xAA, 0xBB };
		gp_tlv_iter_init(&it, x, sizeof(x), GP_TLV_LAX_LENGTH);
		ok(gp_tlv_next(&it, &t, &e) == 1 && t.len == 2,
		    "81 02 accepted with GP_TLV_LAX_LENGTH");
	}
	ok(dec("E380", &t, &e) == ERR_PARSE && msg_has(&e, "indefinite"),
	    "indefinite length refused: %s", e.msg);
	ok(dec("4F8401000000", &t, &e) == ERR_PARSE &&
	    msg_has(&e, "more than 3 length bytes"), "84 form refused: %s", e.msg);
	ok(dec("4F05A000", &t, &e) == ERR_TRUNC && msg_has(&e, "past the end"),
	    "value shorter than its length: %s", e.msg);
	ok(dec("4F8201", &t, &e) == ERR_TRUNC && msg_has(&e, "truncated"),
	    "length bytes cut off: %s", e.msg);
	ok(dec("4F", &t, &e) == ERR_TRUNC && msg_has(&e, "length missing"),
	    "length missing: %s", e.msg);
	ok(dec("4F01AA00", &t, &e) == ERR_TRAILING && msg_has(&e, "trailing"),
	    "over-long input (trailing bytes) refused: %s", e.msg);
	ok(dec("", &t, &e) == ERR_TRUNC, "empty input is not a TLV");
	{
		uint8_t *big = calloc(1, GP_TLV_MAX_INPUT + 1);
		if (big == NULL)
			bail("nomem");
		big[0] = 0x4F;
		ok(gp_tlv_decode(big, GP_TLV_MAX_INPUT + 1, &t, &e) == ERR_TOOBIG,
		    "input over the size limit refused: %s", e.msg);
		ok(gp_tlv_check(big, GP_TLV_MAX_INPUT + 1, 8, &e) == ERR_TOOBIG,
		    "check over the size limit refused");
		free(big);
	}
}

static void
test_tlv_check_find(void)
{
	struct buf b;
	struct gp_tlv t;
	struct gp_err e;
	size_t marks[12], i;

	buf_init(&b);
	hexb("E30A4F08A000000151000000E3069F70010FC500C500", &b);
	ok(gp_tlv_check(b.p, b.len, 8, &e) == 0, "sequence of E3 checks");
	ok(gp_tlv_find(b.p, b.len, 0xC5, &t, &e) == 0 && t.len == 0,
	    "find C5 at top level");
	ok(gp_tlv_find(b.p, b.len, 0x4F, &t, &e) == ERR_NOTFOUND &&
	    msg_has(&e, "4F not found"), "4F is nested, not top level: %s", e.msg);
	hexb("E3054F03A000", &b);
	ok(gp_tlv_check(b.p, b.len, 8, &e) == ERR_TRUNC,
	    "nested length past the parent refused: %s", e.msg);
	hexb("4F01AA" "C502", &b);
	ok(gp_tlv_find(b.p, b.len, 0x99, &t, &e) == ERR_TRUNC,
	    "find stops at a broken object: %s", e.msg);

	/* depth: 8 nested constructed objects are fine, 9 are not */
	buf_reset(&b);
	for (i = 0; i < 8; i++)
		if (gp_tlv_open(&b, 0xE3, &marks[i]) != 0)
			bail("open");
	if (gp_tlv_put(&b, 0x4F, "\xA0\x00\x00\x00\x01", 5) != 0)
		bail("put");
	for (i = 8; i-- > 0;)
		if (gp_tlv_close(&b, marks[i]) != 0)
			bail("close");
	ok(gp_tlv_check(b.p, b.len, 8, &e) == 0, "8 levels accepted");
	ok(gp_tlv_check(b.p, b.len, 7, &e) == ERR_LIMIT &&
	    msg_has(&e, "deeper than 7"), "8 levels over a limit of 7: %s", e.msg);
	ok(gp_tlv_check(b.p, b.len, 100, &e) == 0,
	    "limit is capped at GP_TLV_MAX_DEPTH");
	buf_reset(&b);
	for (i = 0; i < 9; i++)
		if (gp_tlv_open(&b, 0xE3, &marks[i]) != 0)
			bail("open");
	for (i = 9; i-- > 0;)
		if (gp_tlv_close(&b, marks[i]) != 0)
			bail("close");
	ok(gp_tlv_check(b.p, b.len, 100, &e) == ERR_LIMIT,
	    "9 levels refused: %s", e.msg);
	buf_free(&b);
}

static void
test_tlv_encode(void)
{
	static const struct { size_t n; const char *hdr; } cases[] = {
		{ 0, "C400" }, { 127, "C47F" }, { 128, "C48180" },
		{ 255, "C481FF" }, { 256, "C4820100" }, { 65535, "C482FFFF" },
		{ 65536, "C483010000" },
	};
	struct buf b, v;
	struct gp_tlv t;
	struct gp_tlv_iter it;
	struct gp_err e;
	size_t i, mark, mark2;
	int rc;

	buf_init(&b);
	buf_init(&v);
	if (buf_reserve(&v, 65536) != 0)
		bail("nomem");
	memset(v.p, 0x11, 65536);
	for (i = 0; i < ARRAY_LEN(cases); i++) {
		buf_reset(&b);
		ok(gp_tlv_put(&b, 0xC4, v.p, cases[i].n) == 0 &&
		    b.len == strlen(cases[i].hdr) / 2 + cases[i].n,
		    "encode %zu bytes", cases[i].n);
		is_hex(b.p, strlen(cases[i].hdr) / 2, cases[i].hdr,
		    "minimal length header for %zu", cases[i].n);
		ok(gp_tlv_decode(b.p, b.len, &t, &e) == 0 && t.len == cases[i].n,
		    "round trip %zu", cases[i].n);
	}
	buf_reset(&b);
	ok(gp_ber_len_put(&b, 0x1000000) == ERR_TOOBIG, "length 2^24 refused");
	ok(gp_tlv_tag_put(&b, 0x9F70) == 0 && gp_tlv_tag_put(&b, 0xDF8101) == 0,
	    "valid multi-byte tags");
	ok(gp_tlv_tag_put(&b, 0x1F) == ERR_INVAL, "1F alone is not a tag");
	ok(gp_tlv_tag_put(&b, 0x9F80) == ERR_INVAL, "9F80 is an unfinished tag");
	ok(gp_tlv_tag_put(&b, 0x4F01) == ERR_INVAL, "4F01 is not one tag");
	ok(gp_tlv_tag_put(&b, 0) == ERR_INVAL, "tag 0 refused");
	ok(gp_tlv_tag_put(&b, 0x1000000) == ERR_INVAL, "4-byte tag refused");

	/* nested open/close with a long inner length */
	buf_reset(&b);
	if (gp_tlv_open(&b, 0xE3, &mark) != 0 ||
	    gp_tlv_put(&b, 0x4F, v.p, 8) != 0 ||
	    gp_tlv_open(&b, 0xEA, &mark2) != 0 ||
	    gp_tlv_put(&b, 0x80, v.p, 200) != 0 ||
	    gp_tlv_close(&b, mark2) != 0 || gp_tlv_close(&b, mark) != 0)
		bail("nested");
	is_hex(b.p, 3, "E381D8", "outer length 81 D8 inserted");
	gp_tlv_iter_init(&it, b.p + 3, b.len - 3, 0);
	ok(gp_tlv_next(&it, &t, &e) == 1 && t.tag == 0x4F && t.len == 8 &&
	    gp_tlv_next(&it, &t, &e) == 1 && t.tag == 0xEA && t.len == 203 &&
	    (rc = gp_tlv_next(&it, &t, &e)) == 0, "nested round trip");
	ok(gp_tlv_check(b.p, b.len, 8, &e) == 0, "nested checks");
	buf_free(&b);
	buf_free(&v);
}

static void
apdu_is(const char *h, int rc_want, size_t lc, size_t ne, int ext,
    const char *what)
{
	struct buf b, o;
	struct gp_apdu a;
	struct gp_err e;
	int rc;

	buf_init(&b);
	buf_init(&o);
	hexb(h, &b);
	rc = gp_apdu_decode(b.p, b.len, &a, &e);
	if (rc_want != 0) {
		ok(rc == rc_want, "%s refused: %s", what, e.msg);
	} else {
		ok(rc == 0 && a.lc == lc && a.ne == ne && a.ext == ext,
		    "%s: Lc %zu Ne %zu%s", what, lc, ne, ext ? " extended" : "");
		ok(gp_apdu_encode(&a, &o, &e) == 0 &&
		    o.len == b.len && memcmp(o.p, b.p, b.len) == 0,
		    "%s: re-encodes to the same bytes", what);
	}
	buf_free(&b);
	buf_free(&o);
}

static void
test_apdu(void)
{
	struct buf o;
	struct gp_apdu a;
	struct gp_err e;
	const uint8_t *d;
	size_t dn;
	uint16_t sw;
	uint8_t cla, big[300];

	buf_init(&o);
	apdu_is("80F22002", 0, 0, 0, 0, "case 1");
	apdu_is("80CA006600", 0, 0, 256, 0, "case 2S Le 00");
	apdu_is("80CA00660A", 0, 0, 10, 0, "case 2S Le 0A");
	apdu_is("80E400800A4F08A00100015141434C", 0, 10, 0, 0, "case 3S");
	apdu_is("80F28002024F0000", 0, 2, 256, 0, "case 4S");
	apdu_is("80CA0066000100", 0, 0, 256, 1, "case 2E");
	apdu_is("80CA0066000000", 0, 0, 65536, 1, "case 2E Le 0000");
	apdu_is("80E20000000003010203", 0, 3, 0, 1, "case 3E");
	apdu_is("80E20000000003010203" "0000", 0, 3, 65536, 1, "case 4E");
	apdu_is("80E20000000003010203" "0010", 0, 3, 16, 1, "case 4E Le 10");
	apdu_is("80E200", ERR_TRUNC, 0, 0, 0, "3-byte APDU");
	apdu_is("80E2000003AABB", ERR_PARSE, 0, 0, 0, "short Lc past the end");
	apdu_is("80E2000002AABBCCDD", ERR_PARSE, 0, 0, 0, "short Lc with 2 extra");
	apdu_is("80E200000000", ERR_PARSE, 0, 0, 0, "6 bytes with 00 marker");
	apdu_is("80E20000000000AA", ERR_PARSE, 0, 0, 0, "extended Lc 0");
	apdu_is("80E20000000003AABB", ERR_PARSE, 0, 0, 0, "extended Lc past end");

	memset(big, 0x42, sizeof(big));
	memset(&a, 0, sizeof(a));
	a.cla = 0x80;
	a.ins = 0xE2;
	a.data = big;
	a.lc = 300;
	a.ne = 256;
	ok(gp_apdu_encode(&a, &o, &e) == 0 && o.len == 4 + 3 + 300 + 2,
	    "Lc 300 goes extended automatically");
	is_hex(o.p, 7, "80E2000000012C", "extended header 00 01 2C");
	is_hex(o.p + o.len - 2, 2, "0100", "Le 256 as 01 00 in extended form");
	a.lc = 0;
	a.ne = 0;
	a.ext = 1;
	ok(gp_apdu_encode(&a, &o, &e) == 0 && o.len == 4,
	    "case 1 has no extended form");
	a.lc = 70000;
	ok(gp_apdu_encode(&a, &o, &e) == ERR_TOOBIG, "Lc 70000 refused: %s",
	    e.msg);

	ok(gp_resp_split((const uint8_t *)"\x01\x90\x00", 3, &d, &dn, &sw,
	    &e) == 0 && dn == 1 && sw == 0x9000, "response split");
	ok(gp_resp_split((const uint8_t *)"\x90", 1, &d, &dn, &sw, &e) ==
	    ERR_TRUNC && msg_has(&e, "no status word"),
	    "one-byte response refused: %s", e.msg);

	ok(gp_cla_channel(0x80, 0, &cla) == 0 && cla == 0x80, "CLA ch 0");
	ok(gp_cla_channel(0x80, 3, &cla) == 0 && cla == 0x83, "CLA ch 3");
	ok(gp_cla_channel(0x80, 4, &cla) == 0 && cla == 0xC0, "CLA ch 4");
	ok(gp_cla_channel(0x00, 19, &cla) == 0 && cla == 0x4F, "CLA ch 19");
	ok(gp_cla_channel(0x80, 20, &cla) == ERR_INVAL, "channel 20 refused");
	buf_free(&o);
}

static void
test_sw(void)
{
	char s[80];

	ok(strcmp(gp_sw_str(0x6A88, s, sizeof(s)),
	    "SW_6A88 referenced data not found") == 0, "%s", s);
	ok(strcmp(gp_sw_str(0x9000, s, sizeof(s)), "SW_9000 success") == 0,
	    "%s", s);
	ok(strcmp(gp_sw_str(0x6982, s, sizeof(s)),
	    "SW_6982 security status not satisfied") == 0, "%s", s);
	ok(strcmp(gp_sw_str(0x6310, s, sizeof(s)),
	    "SW_6310 more data available") == 0, "%s", s);
	ok(strstr(gp_sw_str(0x6105, s, sizeof(s)), "still available") != NULL,
	    "%s", s);
	ok(strstr(gp_sw_str(0x6C10, s, sizeof(s)), "wrong Le") != NULL, "%s", s);
	ok(strstr(gp_sw_str(0x63C2, s, sizeof(s)), "retries") != NULL, "%s", s);
	ok(strcmp(gp_sw_text(0x6A84), "not enough memory space") == 0,
	    "6A84 text");
	ok(strcmp(gp_sw_text(0x9485), "invalid key check value") == 0,
	    "9485 text");
	ok(strcmp(gp_sw_text(0x6A99), "checking error") == 0, "unknown 6Axx");
	ok(strcmp(gp_sw_text(0x1234), "unknown status word") == 0, "1234");
	ok(gp_sw_processed(0x9000) && gp_sw_processed(0x6310) &&
	    gp_sw_processed(0x6283) && !gp_sw_processed(0x6A88) &&
	    !gp_sw_processed(0x6100), "processed: 9000, 62xx, 63xx only");
}

int
main(void)
{
	test_tlv_decode();
	test_tlv_check_find();
	test_tlv_encode();
	test_apdu();
	test_sw();
	dec_free_all();
	return done_testing();
}
