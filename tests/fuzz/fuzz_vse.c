/*
 * fuzz_vse.c - libFuzzer target for the virtual SE's command dispatcher:
 * APDU sequences against a fresh in-memory demo card, optionally inside
 * an SCP03 session. Trusts nothing in the input.
 */

/*
 * Input: byte 0 = setup (b1 open SCP03 with the ISD first; b5-b7 pick the
 * level from 00 01 03 11 13 33 33 33), then records flags(1) len(2, big
 * endian) APDU(len); flags b1 wrap in the host session, b2 (re)open the
 * session first, b3 power cycle first. The seId is fixed, so runs are
 * deterministic. After a run the card's state must encode and decode
 * again (the persistence invariant).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kms/base.h"
#include "tests/sim/vse/vse.h"
#include "tests/sim/vse/vse_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_RECORDS 64

static const uint8_t levels[8] = { 0x00, 0x01, 0x03, 0x11, 0x13, 0x33, 0x33,
    0x33 };
static const uint8_t hc[8] = { 1, 2, 3, 4, 5, 6, 7, 8 };

static void
open_session(struct vse *c, struct vse_host *h, uint8_t sl)
{
	uint8_t sel[] = { 0x00, 0xA4, 0x04, 0x00, 0x00 };
	uint8_t r[VSE_RSP_MAX];
	size_t rl;
	uint16_t sw;

	if (vse_transmit(c, sel, sizeof(sel), r, sizeof(r), &rl) != 0)
		abort();
	/* Failure is a normal outcome here (e.g. keys deleted by input). */
	if (vse_host_open(h, c, 0, 0x30, sl, 0, hc, &sw) != 0)
		return;
}

static void
roundtrip(const struct vse *c)
{
	char *json = NULL;
	struct vse *again = NULL;

	if (vse_state_encode(c, &json) != 0)
		abort();
	/* The card must always be able to read back what it wrote. */
	if (vse_card_from_json(&again, (const uint8_t *)json, strlen(json)) != 0)
		abort();
	vse_free(again);
	free(json);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct vse_config cfg;
	struct vse *c = NULL;
	struct vse_host *h = NULL;
	uint8_t enc[16], mac[16], dek[16], r[VSE_RSP_MAX], flags, sl;
	struct buf w, plain;
	size_t off = 1, len, rl, n = 0;

	if (size < 1)
		return 0;
	vse_config_init(&cfg);
	cfg.se_id = "5653000100000001";
	if (vse_create(&c, NULL, &cfg) != 0 || vse_demo_provision(c) != 0 ||
	    vse_demo_isd_keys(cfg.se_id, enc, mac, dek) != 0 ||
	    vse_host_new(&h, enc, mac, dek, 16) != 0)
		abort();
	buf_init(&w);
	buf_init(&plain);
	sl = levels[(data[0] >> 4) & 0x07];
	if (data[0] & 0x01)
		open_session(c, h, sl);
	while (off + 3 <= size && n++ < MAX_RECORDS) {
		flags = data[off];
		len = ((size_t)data[off + 1] << 8) | data[off + 2];
		off += 3;
		if (len > size - off)
			len = size - off;
		if (flags & 0x04)
			vse_reset(c);
		if (flags & 0x02)
			open_session(c, h, sl);
		if ((flags & 0x01) && vse_host_is_open(h) &&
		    vse_host_wrap(h, data + off, len, &w) == 0) {
			if (vse_transmit(c, w.p, w.len, r, sizeof(r), &rl) != 0)
				abort();
			/* A bad R-MAC would be a card bug only when the card
			 * did not end the session; both are tolerated here. */
			if (vse_host_unwrap(h, r, rl, &plain) != 0)
				vse_host_close(h);
		} else if (vse_transmit(c, data + off, len, r, sizeof(r), &rl) != 0)
			abort();
		if (rl < 2 || rl > VSE_RSP_MAX)
			abort();
		off += len;
	}
	roundtrip(c);
	buf_free(&w);
	buf_free(&plain);
	vse_host_free(h);
	vse_free(c);
	return 0;
}
