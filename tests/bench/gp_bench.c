/*
 * gp_bench.c - SCP03 host throughput at security level 33 (C-MAC, C-DEC,
 * R-MAC check, R-ENC decryption) on the OpenSSL reference backend: the
 * "reference" line that kmsd/PKCS#11 backends are compared with.
 * A minimal card side (below) produces valid responses in advance, so
 * only the host's wrap + unwrap are timed. Prints one line:
 *   gp_wrap_sl33 backend=openssl apdus_per_s=NNNN
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kms/base.h"
#include "tsm/gp/gp.h"

/* A typical command: STORE DATA with 32 bytes; a 40-byte response. */
static const uint8_t cmd[] = {
	0x80, 0xE2, 0x90, 0x00, 0x20,
	0x70, 0x1E, 0x5F, 0x20, 0x1A, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07,
	0x08, 0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x0E, 0x0F, 0x10, 0x11, 0x12, 0x13,
	0x14, 0x15, 0x16, 0x17, 0x18, 0x19, 0x1A, 0x00,
};
#define RESP_LEN 40

static const uint8_t host_ch[8] = { 1, 2, 3, 4, 5, 6, 7, 8 };
static const uint8_t card_ch[8] = { 9, 10, 11, 12, 13, 14, 15, 16 };

struct card {
	struct gp_backend *be;
	gp_keyref s_enc, s_mac, s_rmac;
	uint8_t chain[16], counter[16];
};

static void __attribute__((noreturn))
die(const char *what, const struct gp_err *e)
{
	fprintf(stderr, "gp_bench: %s: %s\n", what, e ? e->msg : "");
	exit(1);
}

/* The card's view of one wrapped command: check its MAC, answer with
 * R-ENC data and an R-MAC (GPC Amd D; gpref §1.5-1.7). */
static void
card_answer(struct card *c, const uint8_t *w, size_t wn, struct buf *resp)
{
	uint8_t mi[300], mac[16], blk[16], icv[16], pt[48], ct[48];
	size_t dn = w[4], i;

	for (i = 15; i < 16 && ++c->counter[i] == 0; i--)
		;
	memcpy(mi, c->chain, 16);
	memcpy(mi + 16, w, 5 + dn - 8);
	if (c->be->cmac(c->be->ctx, c->s_mac, mi, 16 + 5 + dn - 8, mac) != 0 ||
	    memcmp(mac, w + 5 + dn - 8, 8) != 0 || wn < 5 + dn)
		die("card: C-MAC mismatch", NULL);
	memcpy(c->chain, mac, 16);
	for (i = 0; i < RESP_LEN; i++)
		pt[i] = (uint8_t)(0xA0 + i);
	pt[RESP_LEN] = 0x80;
	memset(pt + RESP_LEN + 1, 0, sizeof(pt) - RESP_LEN - 1);
	memcpy(blk, c->counter, 16);
	blk[0] = 0x80;
	if (c->be->encrypt(c->be->ctx, c->s_enc, GP_ECB, NULL, blk, 16, icv) != 0 ||
	    c->be->encrypt(c->be->ctx, c->s_enc, GP_CBC, icv, pt, 48, ct) != 0)
		die("card: R-ENC", NULL);
	memcpy(mi, c->chain, 16);
	memcpy(mi + 16, ct, 48);
	mi[64] = 0x90;
	mi[65] = 0x00;
	if (c->be->cmac(c->be->ctx, c->s_rmac, mi, 66, mac) != 0)
		die("card: R-MAC", NULL);
	buf_reset(resp);
	if (buf_put(resp, ct, 48) != 0 || buf_put(resp, mac, 8) != 0 ||
	    buf_put_u16(resp, 0x9000) != 0)
		die("nomem", NULL);
}

static struct gp_scp03 *
open_host(struct gp_backend *be, gp_keyref enc, gp_keyref mac,
    const struct buf *iu_rsp, struct buf *o)
{
	struct gp_scp03_cfg cfg;
	struct gp_scp03 *s;
	struct gp_err e;

	memset(&cfg, 0, sizeof(cfg));
	cfg.be = be;
	cfg.enc = enc;
	cfg.mac = mac;
	cfg.kvn = 0x30;
	cfg.sl = 0x33;
	if (gp_scp03_new(&cfg, &s, &e) != 0 ||
	    gp_scp03_begin(s, host_ch, o, &e) != 0 ||
	    gp_scp03_auth(s, iu_rsp->p, iu_rsp->len, o, &e) != 0 ||
	    gp_scp03_confirm(s, (const uint8_t *)"\x90\x00", 2, &e) != 0)
		die("open session", &e);
	return s;
}

int
main(void)
{
	static const uint8_t kenc[16] = { 0x40, 0x41, 0x42, 0x43, 0x44, 0x45,
	    0x46, 0x47, 0x48, 0x49, 0x4a, 0x4b, 0x4c, 0x4d, 0x4e, 0x4f };
	static const uint8_t kmac[16] = { 0x50, 0x51, 0x52, 0x53, 0x54, 0x55,
	    0x56, 0x57, 0x58, 0x59, 0x5a, 0x5b, 0x5c, 0x5d, 0x5e, 0x5f };
	const char *env = getenv("GP_BENCH_N");
	size_t n = env ? strtoul(env, NULL, 10) : 50000, i;
	struct gp_ossl *o = gp_ossl_new();
	struct gp_backend be;
	struct card card;
	struct gp_scp03 *s;
	struct gp_err e;
	struct buf iu, w, out, *resps;
	gp_keyref enc, mac;
	uint8_t ctx[16], crypto[8];
	uint64_t t0, t1;
	double secs;

	if (o == NULL || n == 0)
		die("setup", NULL);
	gp_ossl_backend(o, &be);
	if (gp_ossl_key_add(o, kenc, 16, &enc) != 0 ||
	    gp_ossl_key_add(o, kmac, 16, &mac) != 0)
		die("keys", NULL);

	/* Card: session keys and the IU response (i = 60: random challenge,
	 * R-MAC and R-ENC). */
	memset(&card, 0, sizeof(card));
	card.be = &be;
	memcpy(ctx, host_ch, 8);
	memcpy(ctx + 8, card_ch, 8);
	if (be.derive(be.ctx, enc, 0x04, ctx, 16, 128, &card.s_enc) != 0 ||
	    be.derive(be.ctx, mac, 0x06, ctx, 16, 128, &card.s_mac) != 0 ||
	    be.derive(be.ctx, mac, 0x07, ctx, 16, 128, &card.s_rmac) != 0 ||
	    be.kdf(be.ctx, card.s_mac, 0x00, ctx, 16, 64, crypto) != 0)
		die("card keys", NULL);
	buf_init(&iu);
	buf_init(&w);
	buf_init(&out);
	if (buf_put(&iu, "\0\0\0\0\0\0\0\0\0\0\x30\x03\x60", 13) != 0 ||
	    buf_put(&iu, card_ch, 8) != 0 || buf_put(&iu, crypto, 8) != 0 ||
	    buf_put_u16(&iu, 0x9000) != 0)
		die("nomem", NULL);

	/* Pass 1: record the card's answers (and check them once). */
	if ((resps = calloc(n, sizeof(*resps))) == NULL)
		die("nomem", NULL);
	s = open_host(&be, enc, mac, &iu, &w);
	/* The card's chain starts at the full MAC of EXTERNAL AUTHENTICATE. */
	{
		uint8_t mi[16 + 5 + 8];

		memset(mi, 0, 16);
		memcpy(mi + 16, w.p, 5 + 8);
		if (be.cmac(be.ctx, card.s_mac, mi, sizeof(mi), card.chain) != 0 ||
		    memcmp(card.chain, w.p + 13, 8) != 0)
			die("card: EA MAC", NULL);
	}
	for (i = 0; i < n; i++) {
		buf_init(&resps[i]);
		if (gp_scp03_wrap(s, cmd, sizeof(cmd), &w, &e) != 0)
			die("wrap", &e);
		card_answer(&card, w.p, w.len, &resps[i]);
		if (gp_scp03_unwrap(s, resps[i].p, resps[i].len, &out, &e) != 0 ||
		    out.len != RESP_LEN + 2)
			die("unwrap", &e);
	}
	gp_scp03_free(s);

	/* Pass 2: the same session again, timed. */
	s = open_host(&be, enc, mac, &iu, &w);
	t0 = now_us();
	for (i = 0; i < n; i++) {
		if (gp_scp03_wrap(s, cmd, sizeof(cmd), &w, &e) != 0)
			die("wrap", &e);
		if (gp_scp03_unwrap(s, resps[i].p, resps[i].len, &out, &e) != 0)
			die("unwrap", &e);
	}
	t1 = now_us();
	gp_scp03_free(s);
	secs = (double)(t1 - t0) / 1e6;
	printf("gp_wrap_sl33 backend=openssl apdus_per_s=%.0f\n",
	    secs > 0 ? (double)n / secs : 0.0);

	for (i = 0; i < n; i++)
		buf_free(&resps[i]);
	free(resps);
	buf_free(&iu);
	buf_free(&w);
	buf_free(&out);
	gp_ossl_free(o);
	return 0;
}
