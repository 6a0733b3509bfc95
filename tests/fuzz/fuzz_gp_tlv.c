/*
 * fuzz_gp_tlv.c - libFuzzer target for the BER-TLV decoder and the APDU
 * codec of tsm/gp: whatever the input, no crash, no read past it, and
 * whatever the strict decoder accepts re-encodes to the same bytes.
 */
#include <stdlib.h>
#include <string.h>

#include "kms/base.h"
#include "tsm/gp/gp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Results the target does not judge go here (the functions are WUR). */
static volatile int sink;

/* Strictly decoded objects are minimal, so re-encoding gives them back. */
static void
roundtrip(const uint8_t *p, size_t n, unsigned depth)
{
	struct gp_tlv_iter it;
	struct gp_tlv t;
	struct buf b;

	if (depth > GP_TLV_MAX_DEPTH)
		return;
	buf_init(&b);
	gp_tlv_iter_init(&it, p, n, 0);
	while (gp_tlv_next(&it, &t, NULL) == 1) {
		buf_reset(&b);
		if (gp_tlv_put(&b, t.tag, t.val, t.len) != 0 ||
		    b.len != t.raw_len || memcmp(b.p, t.raw, b.len) != 0)
			abort();
		if (t.constructed)
			roundtrip(t.val, t.len, depth + 1);
	}
	buf_free(&b);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct gp_tlv_iter it;
	struct gp_tlv t;
	struct gp_apdu a;
	struct gp_err e;
	struct buf b;
	size_t count = 0;
	int rc;

	sink = gp_tlv_check(data, size, GP_TLV_MAX_DEPTH, &e);
	sink = gp_tlv_check(data, size, 2, NULL);
	sink = gp_tlv_decode(data, size, &t, &e);
	sink = gp_tlv_find(data, size, 0x9F70, &t, &e);
	gp_tlv_iter_init(&it, data, size, GP_TLV_LAX_LENGTH);
	while ((rc = gp_tlv_next(&it, &t, &e)) == 1) {
		if (t.val + t.len > data + size || t.raw != data + it.off - t.raw_len)
			abort();
		count++;
	}
	roundtrip(data, size, 0);

	buf_init(&b);
	if (gp_apdu_decode(data, size, &a, &e) == 0) {
		if (gp_apdu_encode(&a, &b, &e) != 0 || b.len != size ||
		    memcmp(b.p, data, size) != 0)
			abort();
	}
	buf_free(&b);
	(void)count;
	return 0;
}
