/*
 * host.c - a minimal SCP03 host for tests, `vse run` scripts and the fuzz
 * target: INITIALIZE UPDATE / EXTERNAL AUTHENTICATE, command wrapping,
 * response unwrapping and PUT KEY blocks. Independent of tsm/gp (the
 * product's host); runs in test tools and trusts the static keys it is
 * given, nothing the card answers.
 */
#include <stdlib.h>
#include <string.h>

#include "tests/sim/vse/vse_int.h"

struct vse_host {
	uint8_t         enc[32], mac[32], dek[32];
	size_t          keylen;
	uint8_t         channel;
	struct vse_sess s;
};

int
vse_host_new(struct vse_host **out, const uint8_t *enc, const uint8_t *mac,
    const uint8_t *dek, size_t keylen)
{
	struct vse_host *h;

	*out = NULL;
	if (!vse_aes_keylen_ok(keylen))
		return ERR_INVAL;
	if ((h = calloc(1, sizeof(*h))) == NULL)
		return ERR_NOMEM;
	memcpy(h->enc, enc, keylen);
	memcpy(h->mac, mac, keylen);
	memcpy(h->dek, dek, keylen);
	h->keylen = keylen;
	*out = h;
	return 0;
}

void
vse_host_free(struct vse_host *h)
{
	if (h == NULL)
		return;
	wipe(h, sizeof(*h));
	free(h);
}

int
vse_host_is_open(const struct vse_host *h)
{
	return h->s.state == VSE_SESS_AUTH;
}

void
vse_host_close(struct vse_host *h)
{
	vse_sess_clear(&h->s);
}

int
vse_host_dek(const struct vse_host *h, const uint8_t **dek, size_t *n)
{
	*dek = h->dek;
	*n = h->keylen;
	return 0;
}

int
vse_host_iu(struct vse_host *h, uint8_t channel, uint8_t kvn, int s16,
    const uint8_t *host_challenge, struct buf *apdu)
{
	uint8_t hdr[5];
	int rc;

	if (channel >= VSE_CHANNELS)
		return ERR_INVAL;
	vse_sess_clear(&h->s);
	h->channel = channel;
	h->s.blen = s16 ? 16 : 8;
	if (host_challenge != NULL)
		memcpy(h->s.hc, host_challenge, h->s.blen);
	else if ((rc = vse_rand(h->s.hc, h->s.blen)) != 0)
		return rc;
	/* gp-reference §1.2: 80 50 KVN 00 Lc challenge 00. */
	hdr[0] = (uint8_t)(0x80 | channel);
	hdr[1] = 0x50;
	hdr[2] = kvn;
	hdr[3] = 0x00;
	hdr[4] = (uint8_t)h->s.blen;
	buf_reset(apdu);
	if ((rc = buf_put(apdu, hdr, 5)) != 0 ||
	    (rc = buf_put(apdu, h->s.hc, h->s.blen)) != 0 ||
	    (rc = buf_put_u8(apdu, 0x00)) != 0)
		return rc;
	h->s.state = VSE_SESS_INIT;
	return 0;
}

int
vse_host_ea(struct vse_host *h, const uint8_t *rsp, size_t n, uint8_t sl,
    struct buf *apdu)
{
	struct vse_sess *s = &h->s;
	uint8_t crypt[16], hdr[5], mac[16];
	size_t blen = s->blen, want = 10 + 3 + 2 * blen;
	int rc;

	if (s->state != VSE_SESS_INIT)
		return ERR_WRONGSTATE;
	/* KDD(10) KVN 03 i challenge cryptogram [seq(3)] (+ SW). */
	if (n >= 2 && rsp[n - 2] == 0x90 && rsp[n - 1] == 0x00)
		n -= 2;
	if (n != want && n != want + 3)
		return ERR_PROTO;
	if (rsp[11] != 0x03 || ((rsp[12] & 0x01) != 0) != (blen == 16))
		return ERR_PROTO;
	s->kvn = rsp[10];
	s->i = rsp[12];
	memcpy(s->cc, rsp + 13, blen);
	if ((rc = vse_scp03_session_keys(s, h->enc, h->mac, h->keylen)) != 0 ||
	    (rc = vse_scp03_cryptogram(s, 0x00, crypt)) != 0)
		goto cleanup;
	if (!ct_equal(crypt, rsp + 13 + blen, blen)) {
		rc = ERR_CRYPTOGRAM;
		goto cleanup;
	}
	if ((rc = vse_scp03_cryptogram(s, 0x01, crypt)) != 0)
		goto cleanup;
	/* gp-reference §1.4: 84 82 SL 00 Lc hostCryptogram C-MAC, zero chain. */
	hdr[0] = (uint8_t)(0x84 | h->channel);
	hdr[1] = 0x82;
	hdr[2] = sl;
	hdr[3] = 0x00;
	hdr[4] = (uint8_t)(2 * blen);
	memset(s->chain, 0, 16);
	if ((rc = vse_scp03_cmac(s, hdr, 5, crypt, blen, mac)) != 0)
		goto cleanup;
	buf_reset(apdu);
	if ((rc = buf_put(apdu, hdr, 5)) != 0 ||
	    (rc = buf_put(apdu, crypt, blen)) != 0 ||
	    (rc = buf_put(apdu, mac, blen)) != 0)
		goto cleanup;
	memcpy(s->chain, mac, 16);
	memset(s->ctr, 0, 16);
	s->sl = sl;
	s->state = VSE_SESS_AUTH;	/* provisional until the card says 9000 */
cleanup:
	wipe(crypt, sizeof(crypt));
	wipe(mac, sizeof(mac));
	if (rc != 0)
		vse_sess_clear(s);
	return rc;
}

static int
xmit(struct vse *c, const uint8_t *apdu, size_t n, struct buf *rsp)
{
	uint8_t r[VSE_RSP_MAX];
	size_t rl = 0;
	int rc;

	if ((rc = vse_transmit(c, apdu, n, r, sizeof(r), &rl)) != 0)
		return rc;
	buf_reset(rsp);
	return buf_put(rsp, r, rl);
}

static uint16_t
sw_of(const struct buf *b)
{
	return b->len >= 2 ? (uint16_t)((b->p[b->len - 2] << 8) |
	    b->p[b->len - 1]) : 0;
}

int
vse_host_open(struct vse_host *h, struct vse *c, uint8_t channel, uint8_t kvn,
    uint8_t sl, int s16, const uint8_t *host_challenge, uint16_t *sw)
{
	struct buf apdu, rsp;
	int rc;

	buf_init(&apdu);
	buf_init(&rsp);
	*sw = 0;
	if ((rc = vse_host_iu(h, channel, kvn, s16, host_challenge, &apdu)) != 0 ||
	    (rc = xmit(c, apdu.p, apdu.len, &rsp)) != 0)
		goto cleanup;
	if ((*sw = sw_of(&rsp)) != 0x9000) {
		rc = ERR_SW;
		goto cleanup;
	}
	if ((rc = vse_host_ea(h, rsp.p, rsp.len, sl, &apdu)) != 0 ||
	    (rc = xmit(c, apdu.p, apdu.len, &rsp)) != 0)
		goto cleanup;
	if ((*sw = sw_of(&rsp)) != 0x9000)
		rc = ERR_SW;
cleanup:
	if (rc != 0)
		vse_sess_clear(&h->s);
	buf_free(&apdu);
	buf_free(&rsp);
	return rc;
}

/* gp-reference §1.5/1.6: counter++, encrypt data, MAC, append MAC, Le. */
int
vse_host_wrap(struct vse_host *h, const uint8_t *apdu, size_t n,
    struct buf *out)
{
	struct vse_sess *s = &h->s;
	struct vse_apdu a;
	size_t newlc;
	uint8_t hdr[7], mac[16];
	int ext, rc;
	struct buf body;

	if (s->state != VSE_SESS_AUTH)
		return ERR_WRONGSTATE;
	/* The card's own parser: host and card read a command alike. */
	if (vse_apdu_parse(apdu, n, &a) != 0)
		return ERR_PARSE;
	buf_init(&body);
	buf_reset(out);
	if (!(s->sl & VSE_SL_CMAC)) {
		rc = buf_put(out, apdu, n);
		goto cleanup;
	}
	vse_scp03_ctr_inc(s->ctr);
	if ((s->sl & VSE_SL_CDEC) && a.lc > 0)
		rc = vse_scp03_encrypt(s, a.data, a.lc, &body);
	else
		rc = buf_put(&body, a.data, a.lc);
	if (rc != 0)
		goto cleanup;
	newlc = body.len + s->blen;
	if (newlc > 0xFFFF) {
		rc = ERR_TOOBIG;
		goto cleanup;
	}
	ext = newlc > 255 || (a.ext && a.has_le);
	hdr[0] = (uint8_t)(a.cla | 0x04);
	hdr[1] = a.ins;
	hdr[2] = a.p1;
	hdr[3] = a.p2;
	if (ext) {
		hdr[4] = 0;
		hdr[5] = (uint8_t)(newlc >> 8);
		hdr[6] = (uint8_t)newlc;
	} else
		hdr[4] = (uint8_t)newlc;
	if ((rc = vse_scp03_cmac(s, hdr, ext ? 7 : 5, body.p, body.len,
	    mac)) != 0)
		goto cleanup;
	memcpy(s->chain, mac, 16);
	if ((rc = buf_put(out, hdr, ext ? 7 : 5)) != 0 ||
	    (rc = buf_put(out, body.p, body.len)) != 0 ||
	    (rc = buf_put(out, mac, s->blen)) != 0)
		goto cleanup;
	/* Ne 256 / 65536 are coded 00 / 0000. */
	if (a.has_le)
		rc = ext ? buf_put_u16(out, (uint16_t)(a.le & 0xFFFF)) :
		    buf_put_u8(out, (uint8_t)(a.le & 0xFF));
cleanup:
	wipe(mac, sizeof(mac));
	buf_free(&body);
	return rc;
}

int
vse_host_unwrap(struct vse_host *h, const uint8_t *rsp, size_t n,
    struct buf *out)
{
	uint16_t sw;
	int rc;

	if (n < 2)
		return ERR_PROTO;
	sw = (uint16_t)((rsp[n - 2] << 8) | rsp[n - 1]);
	buf_reset(out);
	if (h->s.state == VSE_SESS_AUTH) {
		if ((rc = vse_scp03_unwrap_rsp(&h->s, rsp, n - 2, sw, out)) != 0)
			return rc;
	} else if ((rc = buf_put(out, rsp, n - 2)) != 0)
		return rc;
	return buf_put_u16(out, sw);
}

int
vse_host_transmit(struct vse_host *h, struct vse *c, const uint8_t *apdu,
    size_t n, struct buf *rsp)
{
	struct buf w, r;
	int rc;

	buf_init(&w);
	buf_init(&r);
	if ((rc = vse_host_wrap(h, apdu, n, &w)) != 0 ||
	    (rc = xmit(c, w.p, w.len, &r)) != 0 ||
	    (rc = vse_host_unwrap(h, r.p, r.len, rsp)) != 0)
		goto cleanup;
	/* 6982 may end the card's session (secure messaging error) or not
	 * (a refused DM token): the host keeps wrapping either way. */
cleanup:
	buf_free(&w);
	buf_free(&r);
	return rc;
}

int
vse_host_key_block(const struct vse_host *h, const uint8_t *key, size_t keylen,
    int with_len, struct buf *out)
{
	uint8_t iv[16], padded[32], ct[32], kcv[3];
	size_t plen = keylen <= 16 ? 16 : 32;
	int rc;

	if (!vse_aes_keylen_ok(keylen))
		return ERR_INVAL;
	/* Without the length byte only 16- and 32-byte keys are unambiguous. */
	if (!with_len && keylen == 24)
		return ERR_INVAL;
	memset(iv, 0, sizeof(iv));
	memset(padded, 0, sizeof(padded));
	memcpy(padded, key, keylen);
	if ((rc = vse_aes_cbc(h->dek, h->keylen, iv, padded, plen, ct, 1)) != 0 ||
	    (rc = vse_kcv_aes(key, keylen, kcv)) != 0)
		goto cleanup;
	/* 88 Lblock [keyLen] E_DEK(key) 03 KCV (gp-reference §4). */
	if ((rc = buf_put_u8(out, 0x88)) != 0 ||
	    (rc = buf_put_u8(out, (uint8_t)(plen + (with_len ? 1 : 0)))) != 0 ||
	    (with_len && (rc = buf_put_u8(out, (uint8_t)keylen)) != 0) ||
	    (rc = buf_put(out, ct, plen)) != 0 ||
	    (rc = buf_put_u8(out, 3)) != 0 ||
	    (rc = buf_put(out, kcv, 3)) != 0)
		goto cleanup;
cleanup:
	wipe(padded, sizeof(padded));
	wipe(ct, sizeof(ct));
	return rc;
}
