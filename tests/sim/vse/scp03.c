/*
 * scp03.c - SCP03 primitives of the virtual SE (GPC Amendment D): the
 * SP 800-108 CMAC KDF, session keys, cryptograms, pseudo-random card
 * challenge, C-MAC, C-DECRYPTION, R-MAC and R-ENC. Runs in the card; the
 * static keys are its own, every MAC and ciphertext comes from the host.
 */
#include <string.h>

#include "tests/sim/vse/vse_int.h"

/*
 * gp-reference §1.3: CMAC input = 00 x 11 | const | 00 | L(2) | i | context;
 * the counter sits in the middle. Output blocks are concatenated and
 * truncated to outbits.
 */
int
vse_scp03_kdf(const uint8_t *key, size_t keylen, uint8_t konst,
    const uint8_t *ctx, size_t ctxlen, size_t outbits, uint8_t *out)
{
	uint8_t label[16], mac[16];
	struct vse_iov v[2];
	size_t outlen = outbits / 8, done = 0, take;
	uint8_t i;
	int rc = 0;

	if (outbits % 8 != 0 || outbits == 0 || outbits > 0xFFFF ||
	    outlen > 255 * 16)
		return ERR_INVAL;
	memset(label, 0, sizeof(label));
	label[11] = konst;
	label[12] = 0x00;
	label[13] = (uint8_t)(outbits >> 8);
	label[14] = (uint8_t)outbits;
	v[0].p = label;
	v[0].n = 16;
	v[1].p = ctx;
	v[1].n = ctxlen;
	for (i = 1; done < outlen; i++) {
		label[15] = i;
		if ((rc = vse_aes_cmac(key, keylen, v, 2, mac)) != 0)
			goto cleanup;
		take = outlen - done < 16 ? outlen - done : 16;
		memcpy(out + done, mac, take);
		done += take;
	}
cleanup:
	wipe(mac, sizeof(mac));
	return rc;
}

int
vse_scp03_session_keys(struct vse_sess *s, const uint8_t *enc,
    const uint8_t *mac, size_t keylen)
{
	uint8_t ctx[32];
	size_t bits = keylen * 8;
	int rc;

	if (!vse_aes_keylen_ok(keylen) || (s->blen != 8 && s->blen != 16))
		return ERR_INVAL;
	/* §1.3: context = host challenge || card challenge. */
	memcpy(ctx, s->hc, s->blen);
	memcpy(ctx + s->blen, s->cc, s->blen);
	s->keylen = keylen;
	if ((rc = vse_scp03_kdf(enc, keylen, 0x04, ctx, 2 * s->blen, bits,
	    s->senc)) != 0 ||
	    (rc = vse_scp03_kdf(mac, keylen, 0x06, ctx, 2 * s->blen, bits,
	    s->smac)) != 0 ||
	    (rc = vse_scp03_kdf(mac, keylen, 0x07, ctx, 2 * s->blen, bits,
	    s->srmac)) != 0)
		return rc;
	return 0;
}

/* const 00 = card cryptogram, 01 = host cryptogram (§1.3), both from S-MAC. */
int
vse_scp03_cryptogram(const struct vse_sess *s, uint8_t konst, uint8_t *out)
{
	uint8_t ctx[32];

	memcpy(ctx, s->hc, s->blen);
	memcpy(ctx + s->blen, s->cc, s->blen);
	return vse_scp03_kdf(s->smac, s->keylen, konst, ctx, 2 * s->blen,
	    s->blen * 8, out);
}

/* §1.2: KDF(static ENC, const 02, seqCounter(3) || SD AID, 64 or 128). */
int
vse_scp03_challenge(const uint8_t *enc, size_t keylen, uint32_t seq,
    const struct vse_aid *sd, size_t blen, uint8_t *out)
{
	uint8_t ctx[3 + 16];

	ctx[0] = (uint8_t)(seq >> 16);
	ctx[1] = (uint8_t)(seq >> 8);
	ctx[2] = (uint8_t)seq;
	memcpy(ctx + 3, sd->b, sd->len);
	return vse_scp03_kdf(enc, keylen, 0x02, ctx, 3 + sd->len, blen * 8,
	    out);
}

/* §1.5: MAC = CMAC(S-MAC, chain || CLA' INS P1 P2 Lc' || data). */
int
vse_scp03_cmac(const struct vse_sess *s, const uint8_t *hdr, size_t hlen,
    const uint8_t *data, size_t n, uint8_t mac[16])
{
	struct vse_iov v[3];

	v[0].p = s->chain;
	v[0].n = 16;
	v[1].p = hdr;
	v[1].n = hlen;
	v[2].p = data;
	v[2].n = n;
	return vse_aes_cmac(s->smac, s->keylen, v, 3, mac);
}

/* §1.6: the 16-byte big-endian encryption counter. */
void
vse_scp03_ctr_inc(uint8_t ctr[16])
{
	int i;

	for (i = 15; i >= 0; i--)
		if (++ctr[i] != 0)
			break;
}

static int
icv(const struct vse_sess *s, int response, uint8_t out[16])
{
	uint8_t blk[16];

	memcpy(blk, s->ctr, 16);
	/* §1.7: the response ICV uses 80 || counter[1..15]. */
	if (response)
		blk[0] = 0x80;
	return vse_aes_ecb(s->senc, s->keylen, blk, out);
}

static int
pad_strip(const uint8_t *p, size_t n, size_t *plain)
{
	size_t i = n;

	/* ISO 9797-1 method 2. Padding longer than one block is accepted:
	 * the Samsung S16 vectors carry such R-ENC responses (gp-reference §2). */
	while (i > 0 && p[i - 1] == 0x00)
		i--;
	if (i == 0 || p[i - 1] != 0x80)
		return ERR_PARSE;
	*plain = i - 1;
	return 0;
}

static int
cbc_pad_crypt(const struct vse_sess *s, int response, int encrypt,
    const uint8_t *in, size_t n, size_t min_pad, struct buf *out)
{
	uint8_t iv[16];
	struct buf tmp;
	size_t plen = 0;
	int rc;

	buf_init(&tmp);
	if ((rc = icv(s, response, iv)) != 0)
		goto cleanup;
	if (encrypt) {
		size_t padded = (n / 16 + 1) * 16;

		if (min_pad > padded)
			padded = (min_pad + 15) / 16 * 16;

		if ((rc = buf_reserve(&tmp, padded)) != 0)
			goto cleanup;
		memcpy(tmp.p, in, n);
		tmp.p[n] = 0x80;
		memset(tmp.p + n + 1, 0, padded - n - 1);
		tmp.len = padded;
		if ((rc = buf_reserve(out, padded)) != 0 ||
		    (rc = vse_aes_cbc(s->senc, s->keylen, iv, tmp.p, padded,
		    out->p + out->len, 1)) != 0)
			goto cleanup;
		out->len += padded;
	} else {
		if (n == 0 || n % 16 != 0) {
			rc = ERR_PARSE;
			goto cleanup;
		}
		if ((rc = buf_reserve(&tmp, n)) != 0 ||
		    (rc = vse_aes_cbc(s->senc, s->keylen, iv, in, n, tmp.p,
		    0)) != 0)
			goto cleanup;
		tmp.len = n;
		if ((rc = pad_strip(tmp.p, n, &plen)) != 0 ||
		    (rc = buf_put(out, tmp.p, plen)) != 0)
			goto cleanup;
	}
cleanup:
	wipe(iv, sizeof(iv));
	buf_free(&tmp);
	return rc;
}

int
vse_scp03_decrypt(const struct vse_sess *s, const uint8_t *in, size_t n,
    struct buf *out)
{
	return cbc_pad_crypt(s, 0, 0, in, n, 0, out);
}

int
vse_scp03_encrypt(const struct vse_sess *s, const uint8_t *in, size_t n,
    struct buf *out)
{
	return cbc_pad_crypt(s, 0, 1, in, n, 0, out);
}

static int
rmac(const struct vse_sess *s, const uint8_t *data, size_t n, uint16_t sw,
    uint8_t mac[16])
{
	uint8_t swb[2] = { (uint8_t)(sw >> 8), (uint8_t)sw };
	struct vse_iov v[3];

	/* §1.7: chain = C-MAC of the command; the R-MAC does not update it. */
	v[0].p = s->chain;
	v[0].n = 16;
	v[1].p = data;
	v[1].n = n;
	v[2].p = swb;
	v[2].n = 2;
	return vse_aes_cmac(s->srmac, s->keylen, v, 3, mac);
}

static int
sw_carries_data(uint16_t sw)
{
	return sw == 0x9000 || (sw >> 8) == 0x62 || (sw >> 8) == 0x63;
}

int
vse_scp03_wrap_rsp(const struct vse_sess *s, const uint8_t *data, size_t n,
    uint16_t sw, size_t min_pad, struct buf *out)
{
	uint8_t mac[16];
	size_t start = out->len;
	int rc;

	if (!sw_carries_data(sw))
		return 0;
	if (!(s->sl & VSE_SL_RMAC))
		return buf_put(out, data, n);
	if ((s->sl & VSE_SL_RENC) && n > 0)
		rc = cbc_pad_crypt(s, 1, 1, data, n, min_pad, out);
	else
		rc = buf_put(out, data, n);
	if (rc != 0)
		return rc;
	/* An empty body is legal: R-MAC over the status word alone. */
	if ((rc = rmac(s, out->len > start ? out->p + start : NULL,
	    out->len - start, sw, mac)) != 0)
		return rc;
	rc = buf_put(out, mac, s->blen);
	wipe(mac, sizeof(mac));
	return rc;
}

int
vse_scp03_unwrap_rsp(const struct vse_sess *s, const uint8_t *data, size_t n,
    uint16_t sw, struct buf *out)
{
	uint8_t mac[16];
	size_t body;
	int rc;

	if (!(s->sl & VSE_SL_RMAC) || !sw_carries_data(sw))
		return buf_put(out, data, n);
	if (n < s->blen)
		return ERR_RMAC;
	body = n - s->blen;
	if ((rc = rmac(s, data, body, sw, mac)) != 0)
		return rc;
	if (!ct_equal(mac, data + body, s->blen)) {
		wipe(mac, sizeof(mac));
		return ERR_RMAC;
	}
	wipe(mac, sizeof(mac));
	if ((s->sl & VSE_SL_RENC) && body > 0)
		return cbc_pad_crypt(s, 1, 0, data, body, 0, out);
	return buf_put(out, data, body);
}

void
vse_sess_clear(struct vse_sess *s)
{
	wipe(s, sizeof(*s));
	s->state = VSE_SESS_NONE;
}
