/*
 * vse_registry_test.c - the virtual SE's registry and content management
 * through real APDUs in SCP03 sessions: SSDs and quotas, PUT KEY, LOAD and
 * INSTALL, DM tokens (RSA-1024, RSA-2048 PSS, ECDSA P-256) and receipts
 * (checked with OpenSSL alone), locks, DELETE, GET STATUS 6310, persistence.
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/sha.h>

#include "kms/base.h"
#include "tests/sim/vse/vse.h"
#include "tests/tap.h"

#define SEID "0011223344556677"

static struct vse *card;
static struct vse_host *host;
static char path[256], dir[64];
static uint8_t rsp[4096];
static size_t rsplen;		/* data only, SW removed */

static const uint8_t isd_aid[] = { 0xA0, 0x00, 0x00, 0x01, 0x51, 0x00, 0x00, 0x00 };
static const uint8_t sd_elf[] = { 0xA0, 0x00, 0x00, 0x01, 0x51, 0x53, 0x50 };
static const uint8_t sd_mod[] = { 0xA0, 0x00, 0x00, 0x01, 0x51, 0x53, 0x50, 0x41 };
static const uint8_t am_sd[] = { 0xA0, 0x00, 0x00, 0x09, 0x99, 0x00, 0x00, 0x01 };
static const uint8_t dm_sd[] = { 0xA0, 0x00, 0x00, 0x09, 0x99, 0x00, 0x00, 0x02 };
static const uint8_t elf1[] = { 0xA0, 0x00, 0x00, 0x09, 0x99, 0x10, 0x01 };
static const uint8_t mod1[] = { 0xA0, 0x00, 0x00, 0x09, 0x99, 0x10, 0x01, 0x01 };
static const uint8_t app1[] = { 0xA0, 0x00, 0x00, 0x09, 0x99, 0x10, 0x01, 0x01, 0x01 };

static uint8_t k_am1[16], k_am2[16], k_dm[16];

/* ---- plumbing ------------------------------------------------------------ */

static void
hexb(const char *s, struct buf *b)
{
	if (hex_decode_buf(s, b) != 0)
		bail("hex %s", s);
}

static void
put(struct buf *b, const void *p, size_t n)
{
	if (buf_put(b, p, n) != 0)
		bail("nomem");
}

static void
put8(struct buf *b, uint8_t v)
{
	put(b, &v, 1);
}

/* BER length then value (INSTALL fields, gp-reference §5). */
static void
lv(struct buf *b, const void *p, size_t n)
{
	if (n >= 256) {
		put8(b, 0x82);
		put8(b, (uint8_t)(n >> 8));
	} else if (n >= 128)
		put8(b, 0x81);
	put8(b, (uint8_t)n);
	put(b, p, n);
}

static void
tlv(struct buf *b, uint8_t tag, const void *p, size_t n)
{
	put8(b, tag);
	lv(b, p, n);
}

static uint16_t
tx(const uint8_t *apdu, size_t n)
{
	struct buf r;
	uint16_t sw;

	buf_init(&r);
	if (host != NULL && vse_host_is_open(host)) {
		if (vse_host_transmit(host, card, apdu, n, &r) != 0)
			bail("host transmit (R-MAC?)");
	} else {
		uint8_t raw[VSE_RSP_MAX];
		size_t rl;

		if (vse_transmit(card, apdu, n, raw, sizeof(raw), &rl) != 0)
			bail("transmit");
		put(&r, raw, rl);
	}
	if (r.len < 2)
		bail("short response");
	sw = (uint16_t)((r.p[r.len - 2] << 8) | r.p[r.len - 1]);
	rsplen = r.len - 2;
	memcpy(rsp, r.p, rsplen);
	buf_free(&r);
	return sw;
}

static uint16_t
txh(const char *h)
{
	struct buf b;
	uint16_t sw;

	buf_init(&b);
	hexb(h, &b);
	sw = tx(b.p, b.len);
	buf_free(&b);
	return sw;
}

/* CLA INS P1 P2 [Lc data] Le(00); extended when data > 255. */
static uint16_t
cmd(uint8_t cla, uint8_t ins, uint8_t p1, uint8_t p2, const struct buf *d)
{
	struct buf a;
	uint16_t sw;
	uint8_t h[4] = { cla, ins, p1, p2 };

	buf_init(&a);
	put(&a, h, 4);
	if (d != NULL && d->len > 255) {
		put8(&a, 0);
		put8(&a, (uint8_t)(d->len >> 8));
		put8(&a, (uint8_t)d->len);
		put(&a, d->p, d->len);
		put8(&a, 0);
		put8(&a, 0);
	} else {
		if (d != NULL && d->len > 0) {
			put8(&a, (uint8_t)d->len);
			put(&a, d->p, d->len);
		}
		put8(&a, 0);
	}
	sw = tx(a.p, a.len);
	buf_free(&a);
	return sw;
}

static uint16_t
select_aid(const uint8_t *aid, size_t n)
{
	struct buf d;
	uint16_t sw;

	if (host != NULL)
		vse_host_close(host);
	buf_init(&d);
	put(&d, aid, n);
	sw = cmd(0x00, 0xA4, 0x04, 0x00, &d);
	buf_free(&d);
	return sw;
}

static int
open_sd(const uint8_t *aid, size_t n, uint8_t kvn, const uint8_t *k,
    uint8_t sl)
{
	uint8_t enc[16], mac[16], dek[16];
	uint16_t sw = 0;

	if (select_aid(aid, n) != 0x9000)
		return -1;
	vse_host_free(host);
	host = NULL;
	if (k == NULL) {
		if (vse_demo_isd_keys(vse_se_id(card), enc, mac, dek) != 0)
			return -1;
	} else {
		memcpy(enc, k, 16);
		memcpy(mac, k, 16);
		memcpy(dek, k, 16);
	}
	if (vse_host_new(&host, enc, mac, dek, 16) != 0)
		return -1;
	return vse_host_open(host, card, 0, kvn, sl, 0, NULL, &sw) == 0 ? 0 :
	    (int)sw;
}

static int
rsp_has(const uint8_t *p, size_t n)
{
	size_t i;

	for (i = 0; i + n <= rsplen; i++)
		if (memcmp(rsp + i, p, n) == 0)
			return 1;
	return 0;
}

static struct vse_entry_info
info(const uint8_t *aid, size_t n)
{
	struct vse_entry_info e;

	if (vse_entry_get(card, aid, n, &e) != 0)
		memset(&e, 0, sizeof(e));
	return e;
}

/* INSTALL data without the token LV. */
static void
install_fields(struct buf *d, const void *f1, size_t n1, const void *f2,
    size_t n2, const void *f3, size_t n3, const void *f4, size_t n4,
    const struct buf *params)
{
	buf_reset(d);
	lv(d, f1, n1);
	lv(d, f2, n2);
	lv(d, f3, n3);
	lv(d, f4, n4);
	lv(d, params ? params->p : NULL, params ? params->len : 0);
}

/* ---- DM issuer side: token signing, receipt check ------------------------ */

static EVP_PKEY *
keygen(const char *kind, int bits)
{
	EVP_PKEY *k = strcmp(kind, "RSA") == 0 ?
	    EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)bits) :
	    EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");

	if (k == NULL)
		bail("keygen %s", kind);
	return k;
}

/* gp-reference §6: the token over P1 | P2 | Lc | data-without-token. */
static void
sign_token(EVP_PKEY *k, uint8_t p1, uint8_t p2, const struct buf *d,
    struct buf *tok)
{
	struct buf m;
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	EVP_PKEY_CTX *pc = NULL;
	uint8_t sig[1024];
	size_t sl = sizeof(sig);
	int rsa = EVP_PKEY_is_a(k, "RSA"), bits = EVP_PKEY_get_bits(k);
	const EVP_MD *h = rsa && bits <= 1024 ? EVP_sha1() : EVP_sha256();

	buf_init(&m);
	put8(&m, p1);
	put8(&m, p2);
	if (d->len > 255) {
		put8(&m, 0);
		put8(&m, (uint8_t)(d->len >> 8));
	}
	put8(&m, (uint8_t)d->len);
	put(&m, d->p, d->len);
	if (md == NULL || EVP_DigestSignInit(md, &pc, h, NULL, k) != 1)
		bail("sign init");
	if (rsa && bits > 1024 &&
	    (EVP_PKEY_CTX_set_rsa_padding(pc, RSA_PKCS1_PSS_PADDING) != 1 ||
	    EVP_PKEY_CTX_set_rsa_pss_saltlen(pc, 32) != 1 ||
	    EVP_PKEY_CTX_set_rsa_mgf1_md(pc, EVP_sha256()) != 1))
		bail("pss");
	if (EVP_DigestSign(md, sig, &sl, m.p, m.len) != 1)
		bail("sign");
	buf_reset(tok);
	if (rsa) {
		put(tok, sig, sl);
	} else {
		/* ECDSA: DER to raw r || s (gp-reference §6). */
		const unsigned char *p = sig;
		ECDSA_SIG *es = d2i_ECDSA_SIG(NULL, &p, (long)sl);
		uint8_t rs[64];

		if (es == NULL ||
		    BN_bn2binpad(ECDSA_SIG_get0_r(es), rs, 32) != 32 ||
		    BN_bn2binpad(ECDSA_SIG_get0_s(es), rs + 32, 32) != 32)
			bail("ecdsa raw");
		put(tok, rs, 64);
		ECDSA_SIG_free(es);
	}
	EVP_MD_CTX_free(md);
	buf_free(&m);
}

/* PUT KEY block of a public key (gp-reference §4). */
static void
pubkey_block(EVP_PKEY *k, struct buf *d)
{
	if (EVP_PKEY_is_a(k, "RSA")) {
		BIGNUM *n = NULL, *e = NULL;
		uint8_t nb[512], eb[8];
		int nl, el;

		if (EVP_PKEY_get_bn_param(k, OSSL_PKEY_PARAM_RSA_N, &n) != 1 ||
		    EVP_PKEY_get_bn_param(k, OSSL_PKEY_PARAM_RSA_E, &e) != 1)
			bail("rsa params");
		nl = BN_bn2bin(n, nb);
		el = BN_bn2bin(e, eb);
		tlv(d, 0xA1, nb, (size_t)nl);
		tlv(d, 0xA0, eb, (size_t)el);
		put8(d, 0x00);
		BN_free(n);
		BN_free(e);
	} else {
		uint8_t pt[133];
		size_t pl = 0;

		if (EVP_PKEY_get_octet_string_param(k,
		    OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, pt, sizeof(pt), &pl) != 1)
			bail("ec point");
		tlv(d, 0xB0, pt, pl);
		tlv(d, 0xF0, "\x00", 1);
		put8(d, 0x00);
	}
}

/* The ISD's token key (KVN 70) replaced by a PUT KEY in an ISD session. */
static uint16_t
install_token_key(EVP_PKEY *k)
{
	struct buf d;
	uint16_t sw;

	if (open_sd(isd_aid, sizeof(isd_aid), 0x30, NULL, 0x03) != 0)
		bail("isd session");
	buf_init(&d);
	put8(&d, 0x70);
	pubkey_block(k, &d);
	sw = cmd(0x80, 0xD8, 0x70, 0x01, &d);
	buf_free(&d);
	return sw;
}

static void
cmac(const uint8_t *key, const uint8_t *m, size_t n, uint8_t out[16])
{
	EVP_MAC *mac = EVP_MAC_fetch(NULL, "CMAC", NULL);
	EVP_MAC_CTX *ctx = mac ? EVP_MAC_CTX_new(mac) : NULL;
	OSSL_PARAM p[2];
	size_t ol = 0;

	p[0] = OSSL_PARAM_construct_utf8_string("cipher", "AES-128-CBC", 0);
	p[1] = OSSL_PARAM_construct_end();
	if (ctx == NULL || EVP_MAC_init(ctx, key, 16, p) != 1 ||
	    EVP_MAC_update(ctx, m, n) != 1 || EVP_MAC_final(ctx, out, &ol, 16) != 1)
		bail("cmac");
	EVP_MAC_CTX_free(ctx);
	EVP_MAC_free(mac);
}

/*
 * The receipt key by the documented demo rule, computed here with OpenSSL
 * alone: AES-128-ECB("DEMOONLY-RECEIPT", SHA-256(seId)[0..15]).
 */
static void
demo_receipt_key(uint8_t k[16])
{
	uint8_t h[32];
	int l = 0;
	EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();

	SHA256((const uint8_t *)SEID, strlen(SEID), h);
	if (c == NULL || EVP_EncryptInit_ex(c, EVP_aes_128_ecb(), NULL,
	    (const uint8_t *)"DEMOONLY-RECEIPT", NULL) != 1 ||
	    EVP_CIPHER_CTX_set_padding(c, 0) != 1 ||
	    EVP_EncryptUpdate(c, k, &l, h, 16) != 1 || l != 16)
		bail("receipt key");
	EVP_CIPHER_CTX_free(c);
}

/* Checks rsp = L | 10 | CMAC | 02 cc(2) | Lu IIN||CIN against cmd_data. */
static uint8_t receipt_key[16];	/* all zero: use the demo rule */

static int
receipt_ok(const struct buf *cmd_data, uint16_t *counter)
{
	static const uint8_t zero[16];
	uint8_t k[16], want[16], uniq[16];
	struct buf m;
	size_t ul;
	int good;

	if (memcmp(receipt_key, zero, 16) == 0)
		demo_receipt_key(k);
	else
		memcpy(k, receipt_key, 16);
	if (rsplen < 2 + 16 + 4 || rsp[0] != rsplen - 1 || rsp[1] != 16 ||
	    rsp[18] != 0x02)
		return 0;
	*counter = (uint16_t)((rsp[19] << 8) | rsp[20]);
	if (hex_decode("565345" SEID, strlen("565345" SEID), uniq, sizeof(uniq),
	    &ul) != 0 || rsp[21] != ul || rsplen != 22 + ul ||
	    memcmp(rsp + 22, uniq, ul) != 0)
		return 0;
	buf_init(&m);
	put(&m, rsp + 18, rsplen - 18);		/* confirmation data */
	put(&m, cmd_data->p, cmd_data->len);
	cmac(k, m.p, m.len, want);
	good = memcmp(want, rsp + 2, 16) == 0;
	buf_free(&m);
	return good;
}

/* ---- load files ------------------------------------------------------------ */

/* A small CAP-shaped load file: Header (1), Applet (3) and filler. */
static void
make_cap(struct buf *lfdb, const uint8_t *pkg, size_t pn, const uint8_t *applet,
    size_t an, size_t filler)
{
	struct buf h;
	size_t i;

	buf_init(&h);
	put(&h, "\xDE\xCA\xFF\xED\x01\x02\x04\x00\x01", 9);
	put8(&h, (uint8_t)pn);
	put(&h, pkg, pn);
	buf_reset(lfdb);
	put8(lfdb, 0x01);
	put8(lfdb, 0);
	put8(lfdb, (uint8_t)h.len);
	put(lfdb, h.p, h.len);
	put8(lfdb, 0x03);
	put8(lfdb, 0);
	put8(lfdb, (uint8_t)(1 + 1 + an + 2));
	put8(lfdb, 1);
	put8(lfdb, (uint8_t)an);
	put(lfdb, applet, an);
	put(lfdb, "\x00\x10", 2);
	put8(lfdb, 0x06);		/* a "method" component of filler */
	put8(lfdb, (uint8_t)(filler >> 8));
	put8(lfdb, (uint8_t)filler);
	for (i = 0; i < filler; i++)
		put8(lfdb, (uint8_t)i);
	buf_free(&h);
}

/* Sends C4 <len> LFDB in 200-byte LOAD blocks; returns the last SW. */
static uint16_t
load_blocks(const struct buf *lfdb)
{
	struct buf s, blk;
	size_t off = 0, n;
	uint8_t no = 0;
	uint16_t sw = 0;

	buf_init(&s);
	buf_init(&blk);
	put8(&s, 0xC4);
	lv(&s, lfdb->p, lfdb->len);
	while (off < s.len) {
		n = s.len - off > 200 ? 200 : s.len - off;
		buf_reset(&blk);
		put(&blk, s.p + off, n);
		off += n;
		sw = cmd(0x80, 0xE8, off == s.len ? 0x80 : 0x00, no++, &blk);
		if (sw != 0x9000)
			break;
	}
	buf_free(&s);
	buf_free(&blk);
	return sw;
}

static void
sha256(const struct buf *b, uint8_t out[32])
{
	SHA256(b->p, b->len, out);
}

/* ---- scenarios -------------------------------------------------------------- */

static void
test_identity(void)
{
	is_int(txh("80CA004500"), 0x9000, "GET DATA 0045 (CIN)");
	is_hex(rsp, rsplen, "4508" SEID, "CIN is the seId");
	is_int(txh("00CA9F7F00"), 0x9000, "GET DATA 9F7F with CLA 00");
	ok(rsplen == 45 && memcmp(rsp, "\x9F\x7F\x2A", 3) == 0 &&
	    memcmp(rsp + 3 + 12, "\x44\x55\x66\x77", 4) == 0,
	    "CPLC: 42 bytes, IC serial = last 4 bytes of the seId");
	is_int(txh("80CA00CF00"), 0x9000, "GET DATA 00CF (KDD)");
	is_hex(rsp, rsplen, "CF0A0000" SEID, "KDD = seId right-aligned");
	is_int(txh("80CA006600"), 0x9000, "GET DATA 0066");
	ok(rsplen > 4 && rsp[0] == 0x66 && rsp[2] == 0x73, "card data 66 {73 ...}");
	is_int(txh("80CA00E000"), 0x9000, "GET DATA 00E0 key information");
	ok(rsp_has((const uint8_t *)"\xC0\x04\x01\x30\x88\x10", 6),
	    "key info lists KID 01 KVN 30 AES-128");
	is_int(txh("80CA00C100"), 0x9000, "GET DATA 00C1 (sequence counter)");
	is_int(txh("80CA00C200"), 0x9000, "GET DATA 00C2 (confirmation counter)");
	is_hex(rsp, rsplen, "C2020000", "no receipt yet");
	is_int(txh("80CAFF2100"), 0x9000, "GET DATA FF21 free resources");
	is_int(txh("80CA123400"), 0x6A88, "GET DATA unknown tag: 6A88");
}

static void
test_refusals(void)
{
	is_int(txh("80"), 0x6700, "truncated APDU: 6700");
	is_int(txh("80CA9F7F0501"), 0x6700, "Lc larger than the data: 6700");
	is_int(txh("8010000000"), 0x6D00, "unknown INS: 6D00");
	is_int(txh("A0CA9F7F00"), 0x6E00, "CLA A0: 6E00");
	is_int(txh("FFCA9F7F00"), 0x6E00, "CLA FF: 6E00");
	is_int(txh("90CA9F7F00"), 0x6884, "command chaining: 6884");
	is_int(txh("40CA9F7F00"), 0x6881, "channel 4+ class: 6881");
	is_int(txh("81CA9F7F00"), 0x6881, "closed channel 1: 6881");
	is_int(txh("00E60C0000"), 0x6E00, "GP command with CLA 00: 6E00");
	is_int(txh("80E60C000100"), 0x6982, "INSTALL without a session: 6982");
	is_int(txh("80F28002024F0000"), 0x6982, "GET STATUS without a session: 6982");
	is_int(txh("00A4040008A00000099999999900"), 0x6A82, "SELECT unknown: 6A82");
	is_int(txh("00A4080000"), 0x6A86, "SELECT by path: 6A86");
	is_int(txh("848200001000000000000000000000000000000000"), 0x6985,
	    "EXTERNAL AUTHENTICATE without INITIALIZE UPDATE: 6985");
	is_int(txh("80500000070102030405060700"), 0x6700, "IU wrong Lc: 6700");
	is_int(txh("80500001080102030405060700"), 0x6A86, "IU P2 01: 6A86");
}

static void
test_auth_failures(void)
{
	uint8_t bad[16];
	uint16_t sw = 0;
	struct buf iu, ea, r;
	struct vse_host *h = NULL;
	uint8_t raw[VSE_RSP_MAX];
	size_t rl;

	memset(bad, 0x5A, sizeof(bad));
	if (select_aid(isd_aid, sizeof(isd_aid)) != 0x9000)
		bail("select isd");
	/* Wrong static keys: the card cryptogram does not verify at the
	 * host; force the EA through anyway to see the card's answer. */
	buf_init(&iu);
	buf_init(&ea);
	buf_init(&r);
	if (vse_host_new(&h, bad, bad, bad, 16) != 0 ||
	    vse_host_iu(h, 0, 0x30, 0, NULL, &iu) != 0)
		bail("host");
	if (vse_transmit(card, iu.p, iu.len, raw, sizeof(raw), &rl) != 0)
		bail("iu");
	ok(vse_host_ea(h, raw, rl, 0x03, &ea) == ERR_CRYPTOGRAM,
	    "host sees a wrong card cryptogram");
	/* Good IU, then a tampered host cryptogram. */
	vse_host_free(h);
	h = NULL;
	{
		uint8_t enc[16], mac[16], dek[16];

		if (vse_demo_isd_keys(SEID, enc, mac, dek) != 0 ||
		    vse_host_new(&h, enc, mac, dek, 16) != 0)
			bail("host");
	}
	if (vse_host_iu(h, 0, 0x30, 0, NULL, &iu) != 0 ||
	    vse_transmit(card, iu.p, iu.len, raw, sizeof(raw), &rl) != 0 ||
	    vse_host_ea(h, raw, rl, 0x03, &ea) != 0)
		bail("iu/ea");
	ea.p[5] ^= 0x01;
	is_int(tx(ea.p, ea.len), 0x6300, "wrong host cryptogram: 6300");
	ea.p[5] ^= 0x01;
	is_int(tx(ea.p, ea.len), 0x6985, "session closed after 6300 (EA again: "
	    "6985)");
	/* Good session, then a wrong C-MAC closes it. */
	ok(vse_host_open(h, card, 0, 0x30, 0x01, 0, NULL, &sw) == 0,
	    "demo ISD keys open a session (seId " SEID ")");
	if (vse_host_wrap(h, (const uint8_t *)"\x80\xF2\x80\x02\x02\x4F\x00\x00",
	    8, &r) != 0)
		bail("wrap");
	r.p[r.len - 2] ^= 0x01;		/* last MAC byte (before Le) */
	is_int(tx(r.p, r.len), 0x6982, "wrong C-MAC: 6982");
	if (vse_host_wrap(h, (const uint8_t *)"\x80\xF2\x80\x02\x02\x4F\x00\x00",
	    8, &r) != 0)
		bail("wrap");
	is_int(tx(r.p, r.len), 0x6982, "session closed after a MAC error");
	/* A C-MAC session refuses an unprotected management command. */
	ok(vse_host_open(h, card, 0, 0x30, 0x01, 0, NULL, &sw) == 0, "reopen");
	is_int(txh("80F28002024F0000"), 0x6982,
	    "unwrapped GET STATUS in a C-MAC session: 6982");
	/* Invalid levels. */
	if (vse_host_iu(h, 0, 0x30, 0, NULL, &iu) != 0 ||
	    vse_transmit(card, iu.p, iu.len, raw, sizeof(raw), &rl) != 0 ||
	    vse_host_ea(h, raw, rl, 0x02, &ea) != 0)
		bail("iu/ea 02");
	is_int(tx(ea.p, ea.len), 0x6A86, "security level 02: 6A86");
	vse_host_free(h);
	buf_free(&iu);
	buf_free(&ea);
	buf_free(&r);
}

static void
put_key_set(uint8_t p1, uint8_t kvn, const uint8_t *k, int with_len,
    uint16_t want, const char *what)
{
	struct buf d;
	int i;

	buf_init(&d);
	put8(&d, kvn);
	for (i = 0; i < 3; i++)
		if (vse_host_key_block(host, k, 16, with_len, &d) != 0)
			bail("key block");
	is_int(cmd(0x80, 0xD8, p1, 0x81, &d), want, "%s", what);
	buf_free(&d);
}

static void
test_ssd_create(void)
{
	struct buf d, params, tok;
	struct vse_entry_info e;
	uint8_t priv_am[3] = { 0x80, 0x40, 0x00 }, priv_dm[3] = { 0xA0, 0, 0 };
	uint8_t kcv[3];
	size_t i;

	buf_init(&d);
	buf_init(&params);
	buf_init(&tok);
	ok(open_sd(isd_aid, sizeof(isd_aid), 0x30, NULL, 0x03) == 0,
	    "ISD session SL 03");
	/* AM SSD: C9{81 02 03 70} EF{C8 NV 4096, C7 V 256} (gp-reference §5). */
	hexb("C904810203" "70" "EF08C8021000C7020100", &params);
	install_fields(&d, sd_elf, 7, sd_mod, 8, am_sd, 8, priv_am, 3, &params);
	put8(&d, 0x00);
	is_int(cmd(0x80, 0xE6, 0x0C, 0x00, &d), 0x9000,
	    "INSTALL [install+selectable] creates the AM SSD");
	is_hex(rsp, rsplen, "00", "no receipt for the ISD");
	e = info(am_sd, 8);
	ok(e.kind == 2 && e.lcs == 0x07 && e.has_quota_nv && e.quota_nv == 4096 &&
	    e.quota_v == 256 && e.nkeysets == 0 && e.sd_len == 8,
	    "SSD SELECTABLE, quotas NV 4096 / V 256, no keys, under the ISD");
	is_int(cmd(0x80, 0xE6, 0x0C, 0x00, &d), 0x6985, "same AID again: 6985");
	/* DM SSD with a 4-byte quota, going straight to PERSONALIZED (84). */
	hexb("C906810203708400" "EF06C80400002000", &params);
	install_fields(&d, sd_elf, 7, sd_mod, 8, dm_sd, 8, priv_dm, 3, &params);
	put8(&d, 0x00);
	is_int(cmd(0x80, 0xE6, 0x0C, 0x00, &d), 0x9000, "DM SSD created");
	e = info(dm_sd, 8);
	ok(e.lcs == 0x0F && e.quota_nv == 0x2000 && !e.has_quota_v,
	    "DM SSD PERSONALIZED (84), NV quota from 4 bytes");
	/* Refusals. */
	hexb("C90481020255", &params);
	install_fields(&d, sd_elf, 7, sd_mod, 8, "\xA0\x00\x00\x09\x99\x00\x00\x03",
	    8, priv_am, 3, &params);
	put8(&d, 0x00);
	is_int(cmd(0x80, 0xE6, 0x0C, 0x00, &d), 0x6A80,
	    "SCP02-only SSD (scpConfig 0255): 6A80");
	hexb("C900", &params);
	install_fields(&d, sd_elf, 7, sd_mod, 8, "\xA0\x00\x00\x09\x99\x00\x00\x03",
	    8, "\xA0\x40\x00", 3, &params);
	put8(&d, 0x00);
	is_int(cmd(0x80, 0xE6, 0x0C, 0x00, &d), 0x6A80, "AM and DM together: 6A80");
	install_fields(&d, sd_elf, 7, sd_mod, 8, "\xA0\x00\x00\x09\x99\x00\x00\x03",
	    8, "\x00\x00\x00", 3, &params);
	put8(&d, 0x00);
	is_int(cmd(0x80, 0xE6, 0x0C, 0x00, &d), 0x6A80,
	    "SD module without the SD privilege: 6A80");
	hexb("C900EF06C804FFFFFFFF", &params);
	install_fields(&d, sd_elf, 7, sd_mod, 8, "\xA0\x00\x00\x09\x99\x00\x00\x03",
	    8, priv_am, 3, &params);
	put8(&d, 0x00);
	is_int(cmd(0x80, 0xE6, 0x0C, 0x00, &d), 0x6A84,
	    "quota beyond the card's memory: 6A84");
	ok(vse_entry_get(card, (const uint8_t *)"\xA0\x00\x00\x09\x99\x00\x00\x03",
	    8, &e) == ERR_NOTFOUND, "nothing registered by the refusals");
	hexb("C900", &params);
	install_fields(&d, sd_elf, 7, sd_mod, 8, "\xA0\x00\x00\x09\x99\x00\x00\x03",
	    8, priv_am, 3, &params);
	is_int(cmd(0x80, 0xE6, 0x0C, 0x00, &d), 0x6A80,
	    "INSTALL without the token LV: 6A80");

	/* First keys of the SSDs: INSTALL [for personalization] + PUT KEY under
	 * the ISD session (keys encrypted with the ISD DEK). */
	for (i = 0; i < 16; i++) {
		k_am1[i] = (uint8_t)(0x10 + i);
		k_am2[i] = (uint8_t)(0x50 + i);
		k_dm[i] = (uint8_t)(0x90 + i);
	}
	buf_reset(&d);
	lv(&d, NULL, 0);
	lv(&d, NULL, 0);
	lv(&d, am_sd, 8);
	lv(&d, NULL, 0);
	lv(&d, NULL, 0);
	lv(&d, NULL, 0);
	is_int(cmd(0x80, 0xE6, 0x20, 0x00, &d), 0x9000,
	    "INSTALL [for personalization] of the AM SSD");
	put_key_set(0x00, 0x30, k_am1, 1, 0x9000,
	    "PUT KEY (with key-length byte) gives the SSD KVN 30");
	if (vse_host_key_block(host, k_am1, 16, 1, &tok) != 0)
		bail("kcv");
	memcpy(kcv, tok.p + tok.len - 3, 3);
	ok(rsplen == 10 && rsp[0] == 0x30 && memcmp(rsp + 1, kcv, 3) == 0 &&
	    memcmp(rsp + 7, kcv, 3) == 0, "PUT KEY answers 30 || KCV x3");
	ok(info(am_sd, 8).nkeysets == 1 && info(isd_aid, 8).nkeysets == 3,
	    "the keys went to the SSD, not the ISD");
	buf_reset(&d);
	lv(&d, NULL, 0);
	lv(&d, NULL, 0);
	lv(&d, dm_sd, 8);
	lv(&d, NULL, 0);
	lv(&d, NULL, 0);
	lv(&d, NULL, 0);
	is_int(cmd(0x80, 0xE6, 0x20, 0x00, &d), 0x9000, "perso of the DM SSD");
	put_key_set(0x00, 0x30, k_dm, 0, 0x9000,
	    "PUT KEY without key-length byte gives the DM SSD KVN 30");

	/* The AM SSD rotates its own keys: replace 30 by 31. */
	ok(open_sd(am_sd, 8, 0x30, k_am1, 0x03) == 0, "AM SSD session with its keys");
	put_key_set(0x30, 0x31, k_am2, 0, 0x9000, "PUT KEY replaces KVN 30 by 31");
	put_key_set(0x00, 0x31, k_am2, 1, 0x6A80, "adding an existing KVN: 6A80");
	put_key_set(0x35, 0x36, k_am2, 1, 0x6A88, "replacing a missing KVN: 6A88");
	ok(open_sd(am_sd, 8, 0x30, k_am1, 0x03) == 0x6A88,
	    "old KVN 30 is gone (6A88)");
	ok(open_sd(am_sd, 8, 0x31, k_am2, 0x13) == 0, "KVN 31 opens at SL 13");
	/* The AM SSD may not create SSDs with card-wide privileges. */
	hexb("C900", &params);
	install_fields(&d, sd_elf, 7, sd_mod, 8, "\xA0\x00\x00\x09\x99\x00\x01\x01",
	    8, "\x80\x20\x00", 3, &params);
	put8(&d, 0x00);
	is_int(cmd(0x80, 0xE6, 0x0C, 0x00, &d), 0x6A80,
	    "AM SSD granting Token Verification: 6A80");
	buf_free(&d);
	buf_free(&params);
	buf_free(&tok);
}

static void
test_load_install(void)
{
	struct buf d, params, lfdb;
	uint8_t h[32];
	struct vse_entry_info e, sd0;
	const uint8_t *rec;
	uint8_t p1, p2;
	size_t rl;

	buf_init(&d);
	buf_init(&params);
	buf_init(&lfdb);
	ok(open_sd(am_sd, 8, 0x31, k_am2, 0x33) == 0, "AM SSD session SL 33");
	make_cap(&lfdb, elf1, sizeof(elf1), mod1, sizeof(mod1), 600);
	sha256(&lfdb, h);
	/* Wrong hash first: the load is refused at the last block. */
	h[0] ^= 1;
	hexb("EF04C6020400", &params);
	install_fields(&d, elf1, sizeof(elf1), NULL, 0, h, 32, params.p, params.len,
	    NULL);
	buf_reset(&d);
	lv(&d, elf1, sizeof(elf1));
	lv(&d, NULL, 0);
	lv(&d, h, 32);
	lv(&d, params.p, params.len);
	lv(&d, NULL, 0);
	is_int(cmd(0x80, 0xE6, 0x02, 0x00, &d), 0x9000, "INSTALL [for load]");
	is_int(load_blocks(&lfdb), 0x6A80, "LOAD with a wrong LFDB hash: 6A80");
	ok(vse_entry_get(card, elf1, sizeof(elf1), &e) == ERR_NOTFOUND,
	    "no ELF after the hash failure");
	is_int(txh("80E8800001C4"), 0x6985, "LOAD without INSTALL [for load]: 6985");
	/* Good hash. */
	h[0] ^= 1;
	buf_reset(&d);
	lv(&d, elf1, sizeof(elf1));
	lv(&d, NULL, 0);
	lv(&d, h, 32);
	lv(&d, params.p, params.len);
	lv(&d, NULL, 0);
	is_int(cmd(0x80, 0xE6, 0x02, 0x00, &d), 0x9000, "INSTALL [for load] again");
	is_int(load_blocks(&lfdb), 0x9000, "LOAD in 4 chained blocks, hash ok");
	is_hex(rsp, rsplen, "00", "last LOAD answers 00 (AM: no receipt)");
	e = info(elf1, sizeof(elf1));
	ok(e.kind == 4 && e.lcs == 0x01 && e.nmodules == 1 &&
	    e.use_nv == 0x400 && memcmp(e.sd, am_sd, 8) == 0,
	    "ELF LOADED under the AM SSD, module from the CAP applet component, "
	    "charged max(C6, LFDB size)");
	/* Module not in the file. */
	hexb("C900", &params);
	install_fields(&d, elf1, sizeof(elf1), "\xA0\x00\x00\x09\x99\x10\x01\x09",
	    8, app1, sizeof(app1), "\x00", 1, &params);
	put8(&d, 0x00);
	is_int(cmd(0x80, 0xE6, 0x0C, 0x00, &d), 0x6A88, "unknown module: 6A88");
	/* Instance with memory quotas EF{C8 512, C7 32}. */
	hexb("C900EF08C8020200C7020020", &params);
	install_fields(&d, elf1, sizeof(elf1), mod1, sizeof(mod1), app1,
	    sizeof(app1), "\x00", 1, &params);
	put8(&d, 0x00);
	is_int(cmd(0x80, 0xE6, 0x0C, 0x00, &d), 0x9000,
	    "INSTALL [install+selectable] of the application");
	e = info(app1, sizeof(app1));
	ok(e.kind == 3 && e.lcs == 0x07 && e.use_nv == 512 && e.use_v == 32 &&
	    memcmp(e.sd, am_sd, 8) == 0, "application SELECTABLE, uses NV 512 V 32");
	sd0 = info(am_sd, 8);
	is_int((long)sd0.free_nv, (long)(4096 - 0x400 - 512),
	    "SSD free NV = quota - ELF - app");
	is_int(txh("80CAFF2100"), 0x9000, "FF21 from the SSD");
	ok(rsplen == 3 + 4 + 6 + 6 && rsp[11] == (uint8_t)(sd0.free_nv >> 8) &&
	    rsp[12] == (uint8_t)sd0.free_nv, "FF21 reports the SSD's free NV");
	/* Quota exceeded (NV 3072 more): 6A84 and nothing changes. */
	hexb("C900EF04C8020C00", &params);
	install_fields(&d, elf1, sizeof(elf1), mod1, sizeof(mod1),
	    "\xA0\x00\x00\x09\x99\x10\x01\x01\x02", 9, "\x00", 1, &params);
	put8(&d, 0x00);
	is_int(cmd(0x80, 0xE6, 0x0C, 0x00, &d), 0x6A84, "SSD quota exceeded: 6A84");
	ok(info(am_sd, 8).free_nv == sd0.free_nv, "free memory unchanged");

	/* STORE DATA through INSTALL [for personalization]. */
	buf_reset(&d);
	lv(&d, NULL, 0);
	lv(&d, NULL, 0);
	lv(&d, app1, sizeof(app1));
	lv(&d, NULL, 0);
	lv(&d, NULL, 0);
	lv(&d, NULL, 0);
	is_int(cmd(0x80, 0xE6, 0x20, 0x00, &d), 0x9000,
	    "INSTALL [for personalization] of the application");
	is_int(txh("80E2080006010103AABBCC"), 0x9000, "STORE DATA block 0 (DGI)");
	is_int(txh("80E2880105010202DDEE"), 0x9000, "STORE DATA block 1, last");
	is_int(txh("80E2080505010202DDEE"), 0x6A86, "out-of-order block: 6A86");
	is_int(txh("80E2100002DF01"), 0x6A80, "malformed BER-TLV block: 6A80");
	{
		/* Encrypted DGI 8010: 16 bytes under the static DEK (zero ICV). */
		uint8_t pt[16], ct[16], iv[16] = { 0 };
		int l = 0;
		EVP_CIPHER_CTX *cc = EVP_CIPHER_CTX_new();

		memset(pt, 0x42, sizeof(pt));
		if (cc == NULL || EVP_EncryptInit_ex(cc, EVP_aes_128_cbc(), NULL,
		    k_am2, iv) != 1 || EVP_CIPHER_CTX_set_padding(cc, 0) != 1 ||
		    EVP_EncryptUpdate(cc, ct, &l, pt, 16) != 1)
			bail("dgi enc");
		EVP_CIPHER_CTX_free(cc);
		buf_reset(&d);
		put(&d, "\x80\x10\x10", 3);
		put(&d, ct, 16);
		is_int(cmd(0x80, 0xE2, 0xE8, 0x00, &d), 0x9000,
		    "STORE DATA encrypted DGI, last block");
	}
	ok(vse_record_get(card, app1, sizeof(app1), 0, &p1, &p2, &rec, &rl) == 0 &&
	    p1 == 0x08 && p2 == 0 && rl == 6 && memcmp(rec, "\x01\x01\x03\xAA\xBB\xCC",
	    6) == 0, "block 0 recorded for the application");
	ok(vse_record_get(card, app1, sizeof(app1), 1, &p1, &p2, &rec, &rl) == 0 &&
	    p1 == 0x88 && p2 == 1, "block 1 recorded");
	ok(vse_record_get(card, app1, sizeof(app1), 2, &p1, &p2, &rec, &rl) == 0 &&
	    rl == 19 && memcmp(rec, "\x80\x10\x10", 3) == 0 && rec[3] == 0x42 &&
	    rec[18] == 0x42, "encrypted DGI recorded decrypted");
	is_int(select_aid(app1, sizeof(app1)), 0x9000, "SELECT the application");
	is_int(txh("80E2800003010100"), 0x9000,
	    "STORE DATA to the selected application itself");
	ok(info(app1, sizeof(app1)).nrecords == 4, "4 blocks recorded");
	is_int(txh("80CA9F7F00"), 0x6D00, "application does not answer GET DATA");
	buf_free(&d);
	buf_free(&params);
	buf_free(&lfdb);
}

static void
test_dm(void)
{
	static const uint8_t elf2[] = { 0xA0, 0x00, 0x00, 0x09, 0x99, 0x20, 0x01 };
	static const uint8_t mod2[] = { 0xA0, 0x00, 0x00, 0x09, 0x99, 0x20, 0x01,
	    0x01 };
	static const uint8_t app2[] = { 0xA0, 0x00, 0x00, 0x09, 0x99, 0x20, 0x01,
	    0x01, 0x01 };
	static const uint8_t app3[] = { 0xA0, 0x00, 0x00, 0x09, 0x99, 0x20, 0x01,
	    0x01, 0x02 };
	EVP_PKEY *rsa1024 = keygen("RSA", 1024), *rsa2048 = keygen("RSA", 2048);
	EVP_PKEY *p256 = keygen("EC", 0), *demo = NULL;
	struct buf d, params, tok, lfdb, rd, full;
	uint8_t h[32];
	uint16_t c1 = 0, c2 = 0, c3 = 0, c4 = 0;
	FILE *f;
	char pem[512];

	buf_init(&d);
	buf_init(&params);
	buf_init(&tok);
	buf_init(&lfdb);
	buf_init(&rd);
	buf_init(&full);

	/* RSA-1024, PKCS#1 v1.5 SHA-1: INSTALL [for load] + LOAD. */
	is_int(install_token_key(rsa1024), 0x9000,
	    "PUT KEY: RSA-1024 token key at ISD KVN 70 (replaces the demo key)");
	is_hex(rsp, rsplen, "70", "public key PUT KEY answers the KVN only");
	ok(open_sd(dm_sd, 8, 0x30, k_dm, 0x03) == 0, "DM SSD session");
	make_cap(&lfdb, elf2, sizeof(elf2), mod2, sizeof(mod2), 100);
	sha256(&lfdb, h);
	buf_reset(&d);
	lv(&d, elf2, sizeof(elf2));
	lv(&d, NULL, 0);
	lv(&d, h, 32);
	lv(&d, NULL, 0);
	buf_reset(&full);
	put(&full, d.p, d.len);
	lv(&full, NULL, 0);
	is_int(cmd(0x80, 0xE6, 0x02, 0x00, &full), 0x6982,
	    "DM INSTALL [for load] without a token: 6982");
	sign_token(rsa1024, 0x02, 0x00, &d, &tok);
	buf_reset(&full);
	put(&full, d.p, d.len);
	lv(&full, tok.p, tok.len);
	tok.p[5] ^= 1;
	{
		struct buf badf;

		buf_init(&badf);
		put(&badf, d.p, d.len);
		lv(&badf, tok.p, tok.len);
		is_int(cmd(0x80, 0xE6, 0x02, 0x00, &badf), 0x6982,
		    "DM INSTALL [for load] with a bad token: 6982");
		buf_free(&badf);
	}
	is_int(cmd(0x80, 0xE6, 0x02, 0x00, &full), 0x9000,
	    "DM INSTALL [for load] with an RSA-1024 PKCS#1 token");
	is_int(load_blocks(&lfdb), 0x9000, "LOAD");
	buf_reset(&rd);
	lv(&rd, elf2, sizeof(elf2));
	lv(&rd, dm_sd, 8);
	ok(receipt_ok(&rd, &c1), "load receipt in the last LOAD response verifies");

	/* RSA-2048 PSS: INSTALL [for install and make selectable]. */
	is_int(install_token_key(rsa2048), 0x9000,
	    "PUT KEY: RSA-2048 token key (extended-length APDU)");
	ok(open_sd(dm_sd, 8, 0x30, k_dm, 0x33) == 0, "DM SSD session SL 33");
	hexb("C900", &params);
	install_fields(&d, elf2, sizeof(elf2), mod2, sizeof(mod2), app2,
	    sizeof(app2), "\x00", 1, &params);
	sign_token(rsa2048, 0x0C, 0x00, &d, &tok);
	buf_reset(&full);
	put(&full, d.p, d.len);
	lv(&full, tok.p, tok.len);
	is_int(cmd(0x80, 0xE6, 0x0C, 0x00, &full), 0x9000,
	    "DM INSTALL with an RSA-2048 PSS token (81 xx token length)");
	buf_reset(&rd);
	lv(&rd, elf2, sizeof(elf2));
	lv(&rd, app2, sizeof(app2));
	ok(receipt_ok(&rd, &c2) && c2 == c1 + 1, "install receipt verifies, "
	    "confirmation counter +1");
	/* A DM SD may not create an SSD. */
	install_fields(&d, sd_elf, 7, sd_mod, 8, "\xA0\x00\x00\x09\x99\x00\x02\x01",
	    8, "\x80\x00\x00", 3, &params);
	sign_token(rsa2048, 0x0C, 0x00, &d, &tok);
	buf_reset(&full);
	put(&full, d.p, d.len);
	lv(&full, tok.p, tok.len);
	is_int(cmd(0x80, 0xE6, 0x0C, 0x00, &full), 0x6982,
	    "DM SSD creating an SSD: 6982");

	/* The demo token key from tests/sim/demo signs too. */
	snprintf(pem, sizeof(pem), "%s/tests/sim/demo/dm-token-demo.key.pem",
	    getenv("SPTSM_TOP") ? getenv("SPTSM_TOP") : ".");
	if ((f = fopen(pem, "r")) == NULL ||
	    (demo = PEM_read_PrivateKey(f, NULL, NULL, NULL)) == NULL)
		bail("demo token key %s", pem);
	fclose(f);
	is_int(install_token_key(demo), 0x9000, "PUT KEY: the demo token key");
	ok(open_sd(dm_sd, 8, 0x30, k_dm, 0x03) == 0, "DM SSD session");
	install_fields(&d, elf2, sizeof(elf2), mod2, sizeof(mod2), app3,
	    sizeof(app3), "\x00", 1, &params);
	sign_token(demo, 0x04, 0x00, &d, &tok);
	buf_reset(&full);
	put(&full, d.p, d.len);
	lv(&full, tok.p, tok.len);
	is_int(cmd(0x80, 0xE6, 0x04, 0x00, &full), 0x9000,
	    "DM INSTALL [for install] signed with the demo key");
	ok(receipt_ok(&rd, &c3) == 0 && c3 == c2 + 1, "receipt binds the app AID "
	    "(old command data no longer matches)");
	ok(info(app3, sizeof(app3)).lcs == 0x03, "app3 INSTALLED only");
	install_fields(&d, NULL, 0, NULL, 0, app3, sizeof(app3), NULL, 0, NULL);
	sign_token(demo, 0x08, 0x00, &d, &tok);
	buf_reset(&full);
	put(&full, d.p, d.len);
	lv(&full, tok.p, tok.len);
	is_int(cmd(0x80, 0xE6, 0x08, 0x00, &full), 0x9000,
	    "DM INSTALL [for make selectable]");
	ok(info(app3, sizeof(app3)).lcs == 0x07, "app3 SELECTABLE");
	buf_reset(&rd);
	lv(&rd, elf2, sizeof(elf2));
	lv(&rd, app3, sizeof(app3));
	ok(receipt_ok(&rd, &c3) && c3 == c2 + 2, "make-selectable receipt "
	    "verifies (install data layout)");
	/* DM extradition of app3 to the ISD: LV(old SD) LV(app) LV(new SD). */
	buf_reset(&d);
	lv(&d, isd_aid, sizeof(isd_aid));
	lv(&d, NULL, 0);
	lv(&d, app3, sizeof(app3));
	lv(&d, NULL, 0);
	lv(&d, NULL, 0);
	sign_token(demo, 0x10, 0x00, &d, &tok);
	buf_reset(&full);
	put(&full, d.p, d.len);
	lv(&full, tok.p, tok.len);
	is_int(cmd(0x80, 0xE6, 0x10, 0x00, &full), 0x9000,
	    "DM INSTALL [for extradition] to the ISD");
	buf_reset(&rd);
	lv(&rd, dm_sd, 8);
	lv(&rd, app3, sizeof(app3));
	lv(&rd, isd_aid, sizeof(isd_aid));
	ok(receipt_ok(&rd, &c3) && c3 == c2 + 3, "extradition receipt verifies");
	ok(memcmp(info(app3, sizeof(app3)).sd, isd_aid, 8) == 0,
	    "app3 now belongs to the ISD");
	/* A new receipt key (KVN 71, AES) by PUT KEY in an ISD session. */
	ok(open_sd(isd_aid, sizeof(isd_aid), 0x30, NULL, 0x03) == 0, "ISD session");
	{
		uint8_t nk[16];
		size_t i;

		for (i = 0; i < 16; i++)
			nk[i] = (uint8_t)(0xC0 + i);
		buf_reset(&d);
		put8(&d, 0x71);
		if (vse_host_key_block(host, nk, 16, 1, &d) != 0)
			bail("rk block");
		is_int(cmd(0x80, 0xD8, 0x71, 0x01, &d), 0x9000,
		    "PUT KEY replaces the receipt key (KVN 71)");
		ok(rsplen == 4 && rsp[0] == 0x71, "answer 71 || KCV");
		memcpy(receipt_key, nk, 16);
	}

	/* ECDSA P-256: DELETE with a 9E token. */
	is_int(install_token_key(p256), 0x9000, "PUT KEY: EC P-256 token key");
	ok(open_sd(dm_sd, 8, 0x30, k_dm, 0x03) == 0, "DM SSD session");
	buf_reset(&d);
	tlv(&d, 0x4F, app2, sizeof(app2));
	buf_reset(&full);
	put(&full, d.p, d.len);
	is_int(cmd(0x80, 0xE4, 0x00, 0x00, &full), 0x6982,
	    "DM DELETE without a token: 6982");
	sign_token(p256, 0x00, 0x00, &d, &tok);
	tlv(&full, 0x9E, tok.p, tok.len);
	is_int(cmd(0x80, 0xE4, 0x00, 0x00, &full), 0x9000,
	    "DM DELETE with an ECDSA P-256 token (raw r||s)");
	buf_reset(&rd);
	lv(&rd, app2, sizeof(app2));
	ok(receipt_ok(&rd, &c4) && c4 == c3 + 1, "delete receipt verifies with "
	    "the new receipt key");
	ok(vse_entry_get(card, app2, sizeof(app2), (struct vse_entry_info[1]){ 0 })
	    == ERR_NOTFOUND, "app2 deleted");
	is_int(txh("80CA00C200"), 0x9000, "GET DATA 00C2");
	ok(rsplen == 4 && rsp[2] == (uint8_t)(c4 >> 8) && rsp[3] == (uint8_t)c4,
	    "confirmation counter as in the last receipt");

	/* Back to the demo key for later use. */
	is_int(install_token_key(demo), 0x9000, "demo token key restored");
	EVP_PKEY_free(rsa1024);
	EVP_PKEY_free(rsa2048);
	EVP_PKEY_free(p256);
	EVP_PKEY_free(demo);
	buf_free(&d);
	buf_free(&params);
	buf_free(&tok);
	buf_free(&lfdb);
	buf_free(&rd);
	buf_free(&full);
}

static void
test_lock(void)
{
	struct buf d;

	buf_init(&d);
	ok(open_sd(isd_aid, sizeof(isd_aid), 0x30, NULL, 0x03) == 0, "ISD session");
	put(&d, am_sd, 8);
	is_int(cmd(0x80, 0xF0, 0x40, 0x80, &d), 0x9000, "SET STATUS locks the AM SSD");
	ok(info(am_sd, 8).lcs == 0x83, "SSD LOCKED (83)");
	is_int(cmd(0x80, 0xF0, 0x40, 0x80, &d), 0x6985, "locking twice: 6985");
	/* Operations on its applications are refused. */
	buf_reset(&d);
	lv(&d, NULL, 0);
	lv(&d, NULL, 0);
	lv(&d, app1, sizeof(app1));
	lv(&d, NULL, 0);
	lv(&d, NULL, 0);
	lv(&d, NULL, 0);
	is_int(cmd(0x80, 0xE6, 0x20, 0x00, &d), 0x6985,
	    "INSTALL [for personalization] under a locked SD: 6985");
	buf_reset(&d);
	put(&d, app1, sizeof(app1));
	is_int(cmd(0x80, 0xF0, 0x40, 0x80, &d), 0x6985,
	    "SET STATUS on an app of a locked SD: 6985");
	is_int(select_aid(app1, sizeof(app1)), 0x6A82,
	    "SELECT an app of a locked SD: 6A82");
	is_int(select_aid(am_sd, 8), 0x6A82, "SELECT the locked SD: 6A82");
	ok(open_sd(isd_aid, sizeof(isd_aid), 0x30, NULL, 0x03) == 0, "ISD session");
	buf_reset(&d);
	put(&d, am_sd, 8);
	is_int(cmd(0x80, 0xF0, 0x40, 0x00, &d), 0x9000, "SET STATUS unlocks it");
	ok(info(am_sd, 8).lcs == 0x07, "SSD back to SELECTABLE");
	/* P1 60: the SD and its applications. */
	is_int(cmd(0x80, 0xF0, 0x60, 0x80, &d), 0x9000, "lock SD + apps (P1 60)");
	ok(info(am_sd, 8).lcs == 0x83 && info(app1, sizeof(app1)).lcs == 0x87,
	    "SD 83, app 87 (b8 set)");
	is_int(cmd(0x80, 0xF0, 0x60, 0x00, &d), 0x9000, "unlock SD + apps");
	ok(info(am_sd, 8).lcs == 0x07 && info(app1, sizeof(app1)).lcs == 0x07,
	    "both back to 07");
	/* An application alone. */
	buf_reset(&d);
	put(&d, app1, sizeof(app1));
	is_int(cmd(0x80, 0xF0, 0x40, 0x80, &d), 0x9000, "lock the app");
	is_int(select_aid(app1, sizeof(app1)), 0x6A82, "locked app: SELECT 6A82");
	ok(open_sd(isd_aid, sizeof(isd_aid), 0x30, NULL, 0x03) == 0, "ISD session");
	is_int(cmd(0x80, 0xF0, 0x40, 0x00, &d), 0x9000, "unlock the app");
	is_int(select_aid(app1, sizeof(app1)), 0x9000, "app selectable again");
	/* The SSD personalises itself (P2 0F). */
	ok(open_sd(am_sd, 8, 0x31, k_am2, 0x03) == 0, "AM SSD session");
	buf_reset(&d);
	put(&d, am_sd, 8);
	is_int(cmd(0x80, 0xF0, 0x40, 0x0F, &d), 0x9000, "SSD -> PERSONALIZED");
	ok(info(am_sd, 8).lcs == 0x0F, "SSD 0F");
	is_int(cmd(0x80, 0xF0, 0x40, 0x80, &d), 0x6985, "an SSD cannot lock itself");
	/* The AM SSD cannot touch the DM SSD (not in its hierarchy). */
	buf_reset(&d);
	put(&d, dm_sd, 8);
	is_int(cmd(0x80, 0xF0, 0x40, 0x80, &d), 0x6982,
	    "SET STATUS outside the hierarchy: 6982");
	buf_reset(&d);
	put(&d, "\xA0\x00\x00\x09\x99\x99\x99", 7);
	is_int(cmd(0x80, 0xF0, 0x40, 0x80, &d), 0x6A88, "unknown AID: 6A88");
	is_int(cmd(0x80, 0xF0, 0x80, 0x7F, NULL), 0x6982,
	    "an SSD cannot lock the card: 6982");
	/* Card life cycle (P1 80) by the ISD. */
	ok(open_sd(isd_aid, sizeof(isd_aid), 0x30, NULL, 0x03) == 0, "ISD session");
	is_int(cmd(0x80, 0xF0, 0x80, 0x7F, NULL), 0x9000, "card -> CARD_LOCKED");
	ok(info(isd_aid, 8).lcs == 0x7F, "ISD reports 7F");
	buf_reset(&d);
	lv(&d, NULL, 0);
	lv(&d, NULL, 0);
	lv(&d, app1, sizeof(app1));
	lv(&d, NULL, 0);
	lv(&d, NULL, 0);
	lv(&d, NULL, 0);
	is_int(cmd(0x80, 0xE6, 0x20, 0x00, &d), 0x6985,
	    "no content management on a locked card: 6985");
	is_int(cmd(0x80, 0xF0, 0x80, 0x01, NULL), 0x6985,
	    "CARD_LOCKED -> OP_READY: 6985");
	is_int(cmd(0x80, 0xF0, 0x80, 0x0F, NULL), 0x9000, "ISD unlocks the card");
	is_int(select_aid(dm_sd, 8), 0x9000, "SSDs selectable again");
	buf_free(&d);
}

static void
test_delete(void)
{
	struct buf d;
	uint64_t before, mid;

	buf_init(&d);
	ok(open_sd(am_sd, 8, 0x31, k_am2, 0x03) == 0, "AM SSD session");
	before = info(am_sd, 8).free_nv;
	tlv(&d, 0x4F, elf1, sizeof(elf1));
	is_int(cmd(0x80, 0xE4, 0x00, 0x00, &d), 0x6985,
	    "DELETE an ELF with an instance (P2 00): 6985");
	buf_reset(&d);
	tlv(&d, 0x4F, app1, sizeof(app1));
	is_int(cmd(0x80, 0xE4, 0x00, 0x00, &d), 0x9000, "DELETE the application");
	is_hex(rsp, rsplen, "00", "answer 00");
	mid = info(am_sd, 8).free_nv;
	is_int((long)(mid - before), 512, "its 512 NV bytes are free again");
	buf_reset(&d);
	tlv(&d, 0x4F, elf1, sizeof(elf1));
	is_int(cmd(0x80, 0xE4, 0x00, 0x00, &d), 0x9000, "DELETE the ELF");
	is_int((long)info(am_sd, 8).free_nv, 4096, "the whole quota is free");
	is_int(cmd(0x80, 0xE4, 0x00, 0x00, &d), 0x6A88, "DELETE again: 6A88");
	buf_reset(&d);
	tlv(&d, 0x4F, am_sd, 8);
	is_int(cmd(0x80, 0xE4, 0x00, 0x00, &d), 0x6985, "an SD cannot delete itself");
	buf_reset(&d);
	tlv(&d, 0x4F, isd_aid, 8);
	is_int(cmd(0x80, 0xE4, 0x00, 0x00, &d), 0x6985, "DELETE the ISD: 6985");
	buf_reset(&d);
	tlv(&d, 0xD2, "\x31", 1);
	is_int(cmd(0x80, 0xE4, 0x00, 0x00, &d), 0x6985,
	    "DELETE the key set of the open session: 6985");
	put_key_set(0x00, 0x32, k_am1, 1, 0x9000, "PUT KEY adds KVN 32");
	buf_reset(&d);
	tlv(&d, 0xD2, "\x32", 1);
	is_int(cmd(0x80, 0xE4, 0x00, 0x00, &d), 0x9000, "DELETE key set D2 32");
	is_int(cmd(0x80, 0xE4, 0x00, 0x00, &d), 0x6A88, "again: 6A88");
	is_int(txh("80E4000000"), 0x6A80, "DELETE without data: 6A80");
	is_int(txh("80E40001024F00"), 0x6A86, "DELETE P2 01: 6A86");
	buf_free(&d);
}

static void
test_hierarchy(void)
{
	static const uint8_t sub[] = { 0xA0, 0x00, 0x00, 0x09, 0x99, 0x00, 0x01,
	    0x01 };
	struct buf d, params;
	struct vse_entry_info e;

	buf_init(&d);
	buf_init(&params);
	ok(open_sd(am_sd, 8, 0x31, k_am2, 0x03) == 0, "AM SSD session");
	hexb("C900EF04C8020400", &params);
	install_fields(&d, sd_elf, 7, sd_mod, 8, sub, 8, "\x80\x00\x00", 3,
	    &params);
	put8(&d, 0x00);
	is_int(cmd(0x80, 0xE6, 0x0C, 0x00, &d), 0x9000,
	    "the AM SSD creates a sub-SSD with NV quota 1024");
	e = info(sub, 8);
	ok(e.kind == 2 && e.sd_len == 8 && memcmp(e.sd, am_sd, 8) == 0,
	    "sub-SSD associated with the AM SSD");
	is_int((long)info(am_sd, 8).free_nv, 4096 - 1024,
	    "its quota is reserved from the parent's");
	hexb("C900EF04C8021000", &params);
	install_fields(&d, sd_elf, 7, sd_mod, 8, "\xA0\x00\x00\x09\x99\x00\x01"
	    "\x02", 8, "\x80\x00\x00", 3, &params);
	put8(&d, 0x00);
	is_int(cmd(0x80, 0xE6, 0x0C, 0x00, &d), 0x6A84,
	    "a sub-SSD quota beyond the parent's free quota: 6A84");
	buf_reset(&d);
	put(&d, "\x4F\x00", 2);
	is_int(cmd(0x80, 0xF2, 0x40, 0x02, &d), 0x9000, "AM SSD GET STATUS");
	ok(rsp_has(sub, 8) && !rsp_has(dm_sd, 8) && !rsp_has(app1 + 0, 9),
	    "it sees its own hierarchy only");
	is_int(cmd(0x80, 0xF2, 0x80, 0x02, &d), 0x6A88,
	    "the ISD entry is not visible to it: 6A88");

	ok(open_sd(isd_aid, sizeof(isd_aid), 0x30, NULL, 0x03) == 0, "ISD session");
	/* Extradition: SD | 00 | app | 00 | params | token. */
	buf_reset(&d);
	lv(&d, isd_aid, 8);
	lv(&d, NULL, 0);
	lv(&d, sub, 8);
	lv(&d, NULL, 0);
	lv(&d, NULL, 0);
	lv(&d, NULL, 0);
	is_int(cmd(0x80, 0xE6, 0x10, 0x00, &d), 0x9000,
	    "INSTALL [for extradition] of the sub-SSD to the ISD");
	ok(memcmp(info(sub, 8).sd, isd_aid, 8) == 0 &&
	    info(am_sd, 8).free_nv == 4096, "moved; the AM SSD's quota is free");
	/* Registry update: back under the AM SSD, now with AM privilege. */
	buf_reset(&d);
	lv(&d, am_sd, 8);
	lv(&d, NULL, 0);
	lv(&d, sub, 8);
	lv(&d, "\x80\x40\x00", 3);
	lv(&d, NULL, 0);
	lv(&d, NULL, 0);
	is_int(cmd(0x80, 0xE6, 0x40, 0x00, &d), 0x9000,
	    "INSTALL [for registry update]: new SD and privileges");
	e = info(sub, 8);
	ok(memcmp(e.sd, am_sd, 8) == 0 && e.priv[1] == 0x40,
	    "sub-SSD under the AM SSD with AM privilege");
	buf_reset(&d);
	lv(&d, sub, 8);
	lv(&d, NULL, 0);
	lv(&d, am_sd, 8);
	lv(&d, NULL, 0);
	lv(&d, NULL, 0);
	lv(&d, NULL, 0);
	is_int(cmd(0x80, 0xE6, 0x10, 0x00, &d), 0x6985,
	    "extradition into its own sub-SD (a cycle): 6985");
	buf_reset(&d);
	tlv(&d, 0x4F, am_sd, 8);
	is_int(cmd(0x80, 0xE4, 0x00, 0x00, &d), 0x6985,
	    "DELETE an SSD with content (P2 00): 6985");
	is_int(cmd(0x80, 0xE4, 0x00, 0x80, &d), 0x9000,
	    "DELETE the SSD and its hierarchy (P2 80)");
	ok(vse_entry_get(card, sub, 8, &e) == ERR_NOTFOUND &&
	    vse_entry_get(card, am_sd, 8, &e) == ERR_NOTFOUND,
	    "both SDs are gone");
	buf_free(&d);
	buf_free(&params);
}

static void
test_get_status(void)
{
	static const uint8_t elf3[] = { 0xA0, 0x00, 0x00, 0x09, 0x99, 0x30 };
	struct buf d, params, lfdb, all;
	uint8_t aid[16];
	size_t i, count = 0, off;
	uint16_t sw;
	int rounds = 0, legacy_rounds = 0;

	buf_init(&d);
	buf_init(&params);
	buf_init(&lfdb);
	buf_init(&all);
	ok(open_sd(isd_aid, sizeof(isd_aid), 0x30, NULL, 0x33) == 0,
	    "ISD session SL 33 (R-MAC + R-ENC)");
	/* An opaque load file (not a CAP): any module AID is accepted. */
	for (i = 0; i < 40; i++)
		put8(&lfdb, (uint8_t)i);
	{
		uint8_t h1[20];

		SHA1(lfdb.p, lfdb.len, h1);
		buf_reset(&d);
		lv(&d, elf3, sizeof(elf3));
		lv(&d, NULL, 0);
		lv(&d, h1, sizeof(h1));
		lv(&d, NULL, 0);
		lv(&d, NULL, 0);
	}
	is_int(cmd(0x80, 0xE6, 0x02, 0x00, &d), 0x9000,
	    "INSTALL [for load] (ISD) with a SHA-1 LFDB hash");
	is_int(load_blocks(&lfdb), 0x9000, "LOAD, SHA-1 hash checked");
	hexb("C900", &params);
	memcpy(aid, "\xA0\x00\x00\x09\x99\x30\x00\x00\x00\x00\x00\x00\x00\x00\x00",
	    15);
	for (i = 0; i < 30; i++) {
		aid[15] = (uint8_t)i;
		install_fields(&d, elf3, sizeof(elf3), "\xA0\x00\x00\x09\x99\x30\x01",
		    7, aid, 16, "\x00", 1, &params);
		put8(&d, 0x00);
		if (cmd(0x80, 0xE6, 0x0C, 0x00, &d) != 0x9000)
			break;
	}
	is_int((long)i, 30, "30 applications installed by the ISD");
	/* P1 40, TLV: 30 x 35 bytes do not fit one response. */
	buf_reset(&d);
	put(&d, "\x4F\x06\xA0\x00\x00\x09\x99\x30", 8);
	sw = cmd(0x80, 0xF2, 0x40, 0x02, &d);
	while (sw == 0x6310 && rounds < 20) {
		put(&all, rsp, rsplen);
		rounds++;
		sw = cmd(0x80, 0xF2, 0x40, 0x03, &d);
	}
	put(&all, rsp, rsplen);
	ok(sw == 0x9000 && rounds >= 4, "GET STATUS answered in %d parts with "
	    "6310 then 9000", rounds + 1);
	for (off = 0; off + 2 <= all.len && all.p[off] == 0xE3;
	    off += 2 + all.p[off + 1])
		count++;
	ok(off == all.len && count == 30, "30 E3 entries, none lost or repeated "
	    "(%zu)", count);
	is_int(cmd(0x80, 0xF2, 0x40, 0x03, &d), 0x6985,
	    "'next' without a pending answer: 6985");
	/* Legacy format with continuation too. */
	sw = cmd(0x80, 0xF2, 0x40, 0x00, &d);
	while (sw == 0x6310 && legacy_rounds < 20) {
		legacy_rounds++;
		sw = cmd(0x80, 0xF2, 0x40, 0x01, &d);
	}
	ok(sw == 0x9000 && legacy_rounds >= 2, "legacy format continues too");
	/* Tag list and other criteria. */
	buf_reset(&d);
	put(&d, "\x4F\x00\x5C\x03\x4F\x9F\x70", 7);
	is_int(cmd(0x80, 0xF2, 0x80, 0x02, &d), 0x9000, "GET STATUS ISD, tag list");
	is_hex(rsp, rsplen, "E30E4F08A0000001510000009F70010F",
	    "only AID and life cycle");
	buf_reset(&d);
	put(&d, "\x4F\x00", 2);
	is_int(cmd(0x80, 0xF2, 0x10, 0x02, &d), 0x9000, "ELFs and modules");
	ok(rsp_has(sd_mod, sizeof(sd_mod)), "the SD package lists its module (84)");
	is_int(cmd(0x80, 0xF2, 0x08, 0x02, &d), 0x6A86, "P1 08: 6A86");
	is_int(cmd(0x80, 0xF2, 0x40, 0x06, &d), 0x6A86, "P2 06: 6A86");
	buf_reset(&d);
	put(&d, "\x4F\x03\xB0\xB1\xB2", 5);
	is_int(cmd(0x80, 0xF2, 0x40, 0x02, &d), 0x6A88, "no match: 6A88");
	buf_reset(&d);
	put(&d, "\x5C\x01\x4F", 3);
	is_int(cmd(0x80, 0xF2, 0x40, 0x02, &d), 0x6A80, "no 4F criterion: 6A80");
	/* DELETE the file with P2 80 removes its 30 instances. */
	buf_reset(&d);
	tlv(&d, 0x4F, elf3, sizeof(elf3));
	is_int(cmd(0x80, 0xE4, 0x00, 0x80, &d), 0x9000,
	    "DELETE ELF and related objects (P2 80)");
	aid[15] = 7;
	ok(vse_entry_get(card, aid, 16, (struct vse_entry_info[1]){ 0 }) ==
	    ERR_NOTFOUND, "its instances are gone");
	buf_free(&d);
	buf_free(&params);
	buf_free(&lfdb);
	buf_free(&all);
}

static void
test_channels(void)
{
	struct vse_host *h = NULL;
	uint8_t enc[16], mac[16], dek[16];
	uint16_t sw;
	struct buf r;

	buf_init(&r);
	vse_host_close(host);
	is_int(txh("0070000001"), 0x9000, "MANAGE CHANNEL open");
	is_hex(rsp, rsplen, "01", "channel 1");
	is_int(txh("01A4040008A000000151000000"), 0x9000, "SELECT ISD on channel 1");
	if (vse_demo_isd_keys(SEID, enc, mac, dek) != 0 ||
	    vse_host_new(&h, enc, mac, dek, 16) != 0)
		bail("host");
	ok(vse_host_open(h, card, 1, 0x30, 0x03, 0, NULL, &sw) == 0,
	    "SCP03 on channel 1 (CLA 81/85)");
	ok(vse_host_transmit(h, card, (const uint8_t *)"\x81\xF2\x80\x02\x02\x4F\x00"
	    "\x00", 8, &r) == 0 && r.len > 2 && r.p[r.len - 2] == 0x90,
	    "wrapped GET STATUS on channel 1");
	is_int(txh("0070800100"), 0x9000, "MANAGE CHANNEL close 1");
	is_int(txh("81CA9F7F00"), 0x6881, "closed channel: 6881");
	vse_host_free(h);
	buf_free(&r);
}

static void
test_persistence(void)
{
	uint32_t s1 = 0, s2 = 0, s3 = 0, cc;
	struct vse *again = NULL;
	uint16_t sw;

	cc = vse_confirmation_counter(card);
	if (vse_seq_get(card, isd_aid, 8, 0x30, &s1) != 0)
		bail("seq");
	ok(s1 > 10, "ISD KVN 30 sequence counter %u after the sessions so far",
	    s1);
	/* Autosave: a second handle sees the state already on disk. */
	ok(vse_open(&again, path) == 0, "reopen the card file");
	if (vse_seq_get(again, isd_aid, 8, 0x30, &s2) != 0)
		bail("seq");
	ok(s2 == s1, "sequence counter persisted (%u)", s2);
	ok(vse_confirmation_counter(again) == cc && cc >= 3,
	    "confirmation counter persisted");
	ok(info(dm_sd, 8).kind == 2 && vse_entry_get(again, dm_sd, 8,
	    (struct vse_entry_info[1]){ 0 }) == 0, "registry persisted");
	vse_free(card);
	card = again;
	ok(open_sd(isd_aid, sizeof(isd_aid), 0x30, NULL, 0x01) == 0,
	    "session after reopen");
	vse_free(card);
	card = NULL;
	if (vse_open(&card, path) != 0 ||
	    vse_seq_get(card, isd_aid, 8, 0x30, &s3) != 0)
		bail("reopen");
	ok(s3 == s1 + 1, "counter moved by one and persisted (%u)", s3);
	/* The pseudo-random challenge follows the counter (i = 70). */
	{
		struct vse_host *h = NULL;
		uint8_t enc[16], mac[16], dek[16];

		if (vse_demo_isd_keys(SEID, enc, mac, dek) != 0 ||
		    vse_host_new(&h, enc, mac, dek, 16) != 0)
			bail("host");
		ok(vse_host_open(h, card, 0, 0x30, 0x01, 0, NULL, &sw) == 0,
		    "open once more");
		vse_host_free(h);
	}
	ok(vse_save(card) == 0, "explicit save");
	{
		struct vse *mem = NULL;

		ok(vse_create(&mem, path, NULL) == ERR_EXISTS,
		    "create refuses an existing file");
		ok(vse_open(&mem, "/nonexistent/card.json") == ERR_NOTFOUND,
		    "open of a missing file: ERR_NOTFOUND");
	}
}

static void
test_bad_files(void)
{
	static const char *bad[] = {
		"", "{", "[]", "{\"format\":\"other\"}",
		"{\"format\":\"sptsm-vse/1\"}",
	};
	char p[320];
	size_t i;
	struct vse *c = NULL;

	snprintf(p, sizeof(p), "%s/bad.json", dir);
	for (i = 0; i < ARRAY_LEN(bad); i++) {
		if (file_write_atomic(p, bad[i], strlen(bad[i]), 0600) != 0)
			bail("write");
		ok(vse_open(&c, p) == ERR_PARSE, "bad card file #%zu refused", i);
	}
	unlink(p);
}

int
main(void)
{
	struct vse_config cfg;

	snprintf(dir, sizeof(dir), "/tmp/vse_reg.XXXXXX");
	if (mkdtemp(dir) == NULL)
		bail("mkdtemp");
	snprintf(path, sizeof(path), "%s/card.json", dir);
	vse_config_init(&cfg);
	cfg.se_id = SEID;
	if (vse_create(&card, path, &cfg) != 0 || vse_demo_provision(card) != 0 ||
	    vse_save(card) != 0)
		bail("card");
	test_identity();
	test_refusals();
	test_auth_failures();
	test_ssd_create();
	test_load_install();
	test_dm();
	test_lock();
	test_delete();
	test_hierarchy();
	test_get_status();
	test_channels();
	test_persistence();
	test_bad_files();
	vse_host_free(host);
	vse_free(card);
	unlink(path);
	rmdir(dir);
	return done_testing();
}
