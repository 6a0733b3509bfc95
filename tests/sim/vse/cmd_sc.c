/*
 * cmd_sc.c - selection, card data and secure channel commands of the
 * virtual SE: SELECT, MANAGE CHANNEL, GET DATA, INITIALIZE UPDATE,
 * EXTERNAL AUTHENTICATE and PUT KEY. Runs in the card; command data is
 * untrusted, keys are the card's own.
 */
#include <string.h>

#include "tests/sim/vse/vse_int.h"

/* GP OID prefix {iso(1) member-body(2) us(840) globalPlatform(114283)}. */
static const uint8_t gp_oid[] = { 0x2A, 0x86, 0x48, 0x86, 0xFC, 0x6B };

void
vse_chan_reset(struct vse_chan *ch)
{
	vse_sess_clear(&ch->s);
	buf_free(&ch->load.stream);
	memset(&ch->load, 0, sizeof(ch->load));
	ch->perso = 0;
	memset(&ch->perso_aid, 0, sizeof(ch->perso_aid));
	ch->sd_next_block = 0;
	memset(&ch->gs, 0, sizeof(ch->gs));
}

struct vse_entry *
vse_sess_sd(struct vse_req *r)
{
	if (r->ch->s.state != VSE_SESS_AUTH)
		return NULL;
	return vse_reg_find(r->c, &r->ch->s.sd);
}

static int
put_oid(struct buf *b, uint32_t tag, const uint8_t *suffix, size_t n)
{
	uint8_t v[2 + sizeof(gp_oid) + 8];

	/* tag { 06 len GP-OID || suffix } */
	v[0] = 0x06;
	v[1] = (uint8_t)(sizeof(gp_oid) + n);
	memcpy(v + 2, gp_oid, sizeof(gp_oid));
	memcpy(v + 2 + sizeof(gp_oid), suffix, n);
	return vse_put_tlv(b, tag, v, 2 + sizeof(gp_oid) + n);
}

/* Card recognition data (GPC Appendix H.2), as the value of tag 73. */
int
vse_card_recognition(const struct vse *c, const struct vse_entry *sd,
    struct buf *out)
{
	static const uint8_t rec[] = { 0x01 };
	static const uint8_t ver[] = { 0x02, 0x02, 0x03, 0x01 };	/* GP 2.3.1 */
	static const uint8_t ids[] = { 0x03 };
	uint8_t scp[3] = { 0x04, 0x03, sd->scp_i };
	struct buf in;
	int rc;

	(void)c;
	buf_init(&in);
	/* 06 07 {GP 1}: the card recognition data OID itself. */
	if ((rc = buf_put_u8(&in, 0x06)) != 0 ||
	    (rc = buf_put_u8(&in, sizeof(gp_oid) + 1)) != 0 ||
	    (rc = buf_put(&in, gp_oid, sizeof(gp_oid))) != 0 ||
	    (rc = buf_put(&in, rec, 1)) != 0 ||
	    (rc = put_oid(&in, 0x60, ver, sizeof(ver))) != 0 ||
	    (rc = put_oid(&in, 0x63, ids, sizeof(ids))) != 0 ||
	    (rc = put_oid(&in, 0x64, scp, sizeof(scp))) != 0)
		goto cleanup;
	rc = vse_put_tlv(out, 0x73, in.p, in.len);
cleanup:
	buf_free(&in);
	return rc;
}

static int
selectable(const struct vse *c, const struct vse_entry *e)
{
	const struct vse_entry *isd = vse_reg_isd(c);

	if (e->kind == VSE_KIND_ISD)
		return 1;
	/* GPC §5.1.1.4/§5.1.1.5: a locked or terminated card selects only the ISD. */
	if (isd == NULL || isd->lcs == VSE_CARD_LOCKED ||
	    isd->lcs == VSE_CARD_TERMINATED)
		return 0;
	if (vse_reg_locked(c, e))
		return 0;
	if (e->kind == VSE_KIND_APP)
		return (e->lcs & 0x87) == 0x07;
	if (e->kind == VSE_KIND_SSD)
		return e->lcs == 0x07 || e->lcs == 0x0F;
	return 0;
}

uint16_t
vse_cmd_select(struct vse_req *r)
{
	const struct vse_apdu *a = r->a;
	struct vse *c = r->c;
	struct vse_entry *t = NULL, *e;
	struct buf fci, a5;
	size_t i;
	uint16_t sw = SW_OK;

	/* ISO 7816-4 §11.2.2: by DF name, first occurrence, FCI or nothing. */
	if (a->p1 != 0x04 || (a->p2 != 0x00 && a->p2 != 0x0C))
		return SW_WRONG_P1P2;
	if (a->lc > 16)
		return SW_WRONG_LENGTH;
	if (a->lc == 0)
		t = vse_reg_isd(c);		/* GPC §11.9.2.3: no AID = ISD */
	for (i = 0; t == NULL && i < c->nents; i++) {
		e = c->ents[i];
		if (e->kind != VSE_KIND_ELF && e->aid.len == a->lc &&
		    memcmp(e->aid.b, a->data, a->lc) == 0)
			t = e;
	}
	/* Partial AID selection: the first registry entry that starts so. */
	for (i = 0; t == NULL && i < c->nents; i++) {
		e = c->ents[i];
		if (e->kind != VSE_KIND_ELF && e->aid.len > a->lc &&
		    memcmp(e->aid.b, a->data, a->lc) == 0 && selectable(c, e))
			t = e;
	}
	if (t == NULL || !selectable(c, t))
		return SW_NOT_FOUND;
	/* Selecting ends the secure channel session and pending contexts. */
	vse_chan_reset(r->ch);
	r->ch->sel = t->aid;
	if (a->p2 == 0x0C)
		return SW_OK;
	buf_init(&fci);
	buf_init(&a5);
	if (vse_reg_is_sd(t) && vse_card_recognition(c, t, &a5) != 0)
		sw = SW_UNKNOWN;
	if (sw == SW_OK && (vse_put_tlv(&a5, 0x9F65, "\xFF", 1) != 0 ||
	    vse_put_tlv(&fci, 0x84, t->aid.b, t->aid.len) != 0 ||
	    vse_put_tlv(&fci, 0xA5, a5.p, a5.len) != 0 ||
	    vse_put_tlv(r->out, 0x6F, fci.p, fci.len) != 0))
		sw = SW_UNKNOWN;
	buf_free(&fci);
	buf_free(&a5);
	return sw;
}

uint16_t
vse_cmd_manage_channel(struct vse_req *r)
{
	const struct vse_apdu *a = r->a;
	struct vse *c = r->c;
	struct vse_entry *isd = vse_reg_isd(c);
	int n;

	if (a->lc != 0)
		return SW_WRONG_LENGTH;
	if (a->p1 == 0x80) {			/* close (ISO 7816-4 §11.1.2) */
		if (a->p2 == 0 || a->p2 >= VSE_CHANNELS)
			return SW_WRONG_P1P2;
		if (!c->ch[a->p2].open)
			return SW_CHAN_NOT_SUPP;
		vse_chan_reset(&c->ch[a->p2]);
		memset(&c->ch[a->p2], 0, sizeof(c->ch[a->p2]));
		return SW_OK;
	}
	if (a->p1 != 0x00)
		return SW_WRONG_P1P2;
	if (a->p2 == 0) {
		for (n = 1; n < VSE_CHANNELS && c->ch[n].open; n++)
			;
		if (n == VSE_CHANNELS)
			return SW_FUNC_NOT_SUPP;
		if (buf_put_u8(r->out, (uint8_t)n) != 0)
			return SW_UNKNOWN;
	} else {
		n = a->p2;
		if (n >= VSE_CHANNELS)
			return SW_WRONG_P1P2;
		if (c->ch[n].open)
			return SW_CONDITIONS;
	}
	memset(&c->ch[n], 0, sizeof(c->ch[n]));
	c->ch[n].open = 1;
	/* The ISD is what a new channel starts with. */
	if (isd != NULL)
		c->ch[n].sel = isd->aid;
	return SW_OK;
}

static int
put_key_info(struct vse_entry *sd, struct buf *out)
{
	struct buf in;
	uint8_t ki[8];
	size_t i, j, n;
	int rc = 0;

	/* GPC §11.3.3.1 Key Information Template: C0 {KID KVN type len}. */
	buf_init(&in);
	for (i = 0; rc == 0 && i < sd->nkeysets; i++) {
		struct vse_keyset *ks = &sd->keysets[i];

		for (j = 0; rc == 0 && j < ks->nkeys; j++) {
			struct vse_key *k = &ks->keys[j];

			ki[0] = k->kid;
			ki[1] = ks->kvn;
			ki[2] = k->type;
			if (k->len <= 0xFF) {
				ki[3] = (uint8_t)k->len;
				n = 4;
			} else {
				ki[3] = (uint8_t)(k->len >> 8);
				ki[4] = (uint8_t)k->len;
				n = 5;
			}
			if (k->type == VSE_KEY_RSA) {	/* exponent component */
				ki[n++] = 0xA0;
				ki[n++] = (uint8_t)k->exp_len;
			}
			rc = vse_put_tlv(&in, 0xC0, ki, n);
		}
	}
	if (rc == 0)
		rc = vse_put_tlv(out, 0xE0, in.p, in.len);
	buf_free(&in);
	return rc;
}

static int
put_free_resources(struct vse *c, struct vse_entry *sd, struct buf *out)
{
	struct buf in;
	uint64_t nv, v;
	size_t i, apps = 0;
	int rc;

	/* ETSI TS 102 226 §8.2.1.7.2: 81 installed apps, 82 free NV, 83 free V. */
	for (i = 0; i < c->nents; i++)
		if (c->ents[i]->kind == VSE_KIND_APP)
			apps++;
	vse_reg_free_mem(c, sd, &nv, &v);
	if (nv > UINT32_MAX)
		nv = UINT32_MAX;
	if (v > UINT32_MAX)
		v = UINT32_MAX;
	buf_init(&in);
	rc = buf_put_u8(&in, 0x81);
	if (rc == 0)
		rc = buf_put_u8(&in, 2);
	if (rc == 0)
		rc = buf_put_u16(&in, (uint16_t)(apps > 0xFFFF ? 0xFFFF : apps));
	if (rc == 0)
		rc = buf_put_u8(&in, 0x82);
	if (rc == 0)
		rc = buf_put_u8(&in, 4);
	if (rc == 0)
		rc = buf_put_u32(&in, (uint32_t)nv);
	if (rc == 0)
		rc = buf_put_u8(&in, 0x83);
	if (rc == 0)
		rc = buf_put_u8(&in, 4);
	if (rc == 0)
		rc = buf_put_u32(&in, (uint32_t)v);
	if (rc == 0)
		rc = vse_put_tlv(out, 0xFF21, in.p, in.len);
	buf_free(&in);
	return rc;
}

uint16_t
vse_cmd_get_data(struct vse_req *r)
{
	const struct vse_apdu *a = r->a;
	struct vse *c = r->c;
	struct vse_entry *sd = r->sel;
	struct vse_keyset *ks = NULL;
	struct vse_entry *ssd;
	uint16_t tag = (uint16_t)((a->p1 << 8) | a->p2);
	uint8_t v[4];
	struct buf tmp;
	int rc;

	/* Only the plain retrieval form (no command data) is offered. */
	if (a->lc != 0)
		return SW_REF_NOT_FOUND;
	switch (tag) {
	case 0x9F7F:			/* CPLC (gp-reference §5) */
		rc = vse_put_tlv(r->out, 0x9F7F, c->cplc, sizeof(c->cplc));
		break;
	case 0x0066:			/* card data */
		buf_init(&tmp);
		rc = vse_card_recognition(c, sd, &tmp);
		if (rc == 0)
			rc = vse_put_tlv(r->out, 0x66, tmp.p, tmp.len);
		buf_free(&tmp);
		break;
	case 0x00E0:
		rc = put_key_info(sd, r->out);
		break;
	case 0x00C1:			/* sequence counter of the key set in use */
		ssd = vse_sess_sd(r);
		if (ssd == sd)
			ks = vse_keyset_find(sd, r->ch->s.kvn);
		if (ks == NULL)
			ks = vse_keyset_default(sd);
		if (ks == NULL)
			return SW_REF_NOT_FOUND;
		v[0] = (uint8_t)(ks->seq >> 16);
		v[1] = (uint8_t)(ks->seq >> 8);
		v[2] = (uint8_t)ks->seq;
		rc = vse_put_tlv(r->out, 0xC1, v, 3);
		break;
	case 0x00C2:			/* confirmation counter (receipts) */
		v[0] = (uint8_t)(c->conf_counter >> 8);
		v[1] = (uint8_t)c->conf_counter;
		rc = vse_put_tlv(r->out, 0xC2, v, 2);
		break;
	case 0xFF21:
		rc = put_free_resources(c, sd, r->out);
		break;
	case 0x00CF:
		rc = vse_put_tlv(r->out, 0xCF, c->kdd, sizeof(c->kdd));
		break;
	case 0x0045:
		rc = vse_put_tlv(r->out, 0x45, c->cin, c->cin_len);
		break;
	case 0x0042:
		rc = vse_put_tlv(r->out, 0x42, c->iin, c->iin_len);
		break;
	default:
		return SW_REF_NOT_FOUND;
	}
	return rc == 0 ? SW_OK : SW_UNKNOWN;
}

uint16_t
vse_cmd_initialize_update(struct vse_req *r)
{
	const struct vse_apdu *a = r->a;
	struct vse *c = r->c;
	struct vse_entry *sd = r->sel;
	struct vse_sess *s = &r->ch->s;
	struct vse_keyset *ks;
	struct vse_key *enc, *mac, *dek;
	uint8_t crypt[16], hdr[3];
	uint32_t seq;
	size_t blen = (sd->scp_i & 0x01) ? 16 : 8;

	vse_sess_clear(s);
	/* gp-reference §1.2: 80 50 KVN 00 Lc challenge. */
	if (a->p2 != 0x00)
		return SW_WRONG_P1P2;
	if (a->lc != blen)
		return SW_WRONG_LENGTH;
	ks = a->p1 == 0 ? vse_keyset_default(sd) : vse_keyset_find(sd, a->p1);
	if (ks == NULL || !vse_keyset_is_scp03(ks))
		return SW_REF_NOT_FOUND;
	if (ks->seq >= 0xFFFFFF)
		return SW_CONDITIONS;		/* counter exhausted: no wrap */
	seq = ks->seq + 1;
	enc = vse_keyset_key(ks, 1);
	mac = vse_keyset_key(ks, 2);
	dek = vse_keyset_key(ks, 3);
	s->blen = blen;
	memcpy(s->hc, a->data, blen);
	if (c->forced_len == blen) {
		memcpy(s->cc, c->forced, blen);
		c->forced_len = 0;
	} else if (sd->scp_i & 0x10) {
		if (vse_scp03_challenge(enc->val, enc->len, seq, &sd->aid, blen,
		    s->cc) != 0)
			goto fail;
	} else if (vse_rand(s->cc, blen) != 0)
		goto fail;
	if (vse_scp03_session_keys(s, enc->val, mac->val, enc->len) != 0 ||
	    vse_scp03_cryptogram(s, 0x00, crypt) != 0)
		goto fail;
	hdr[0] = ks->kvn;
	hdr[1] = 0x03;
	hdr[2] = sd->scp_i;
	if (buf_put(r->out, c->kdd, sizeof(c->kdd)) != 0 ||
	    buf_put(r->out, hdr, 3) != 0 ||
	    buf_put(r->out, s->cc, blen) != 0 ||
	    buf_put(r->out, crypt, blen) != 0)
		goto fail;
	if (sd->scp_i & 0x10) {
		uint8_t sq[3] = { (uint8_t)(seq >> 16), (uint8_t)(seq >> 8),
		    (uint8_t)seq };

		if (buf_put(r->out, sq, 3) != 0)
			goto fail;
	}
	/* The counter moves once per session start and is persisted. */
	ks->seq = seq;
	c->dirty = 1;
	memcpy(s->dek, dek->val, dek->len);
	s->sd = sd->aid;
	s->kvn = ks->kvn;
	s->i = sd->scp_i;
	s->state = VSE_SESS_INIT;
	wipe(crypt, sizeof(crypt));
	return SW_OK;
fail:
	wipe(crypt, sizeof(crypt));
	vse_sess_clear(s);
	buf_reset(r->out);
	return SW_UNKNOWN;
}

static int
sl_valid(uint8_t sl, uint8_t i)
{
	/* gp-reference §1.4: 00 01 03 11 13 33; R-MAC/R-ENC only if i offers them. */
	switch (sl) {
	case 0x00: case 0x01: case 0x03:
		return 1;
	case 0x11: case 0x13:
		return (i & 0x20) != 0;
	case 0x33:
		return (i & 0x60) == 0x60;
	}
	return 0;
}

uint16_t
vse_cmd_external_authenticate(struct vse_req *r)
{
	const struct vse_apdu *a = r->a;
	struct vse_sess *s = &r->ch->s;
	uint8_t hdr[5], mac[16], hcrypt[16];
	int good;
	uint16_t sw = SW_AUTH_FAILED;

	if (s->state != VSE_SESS_INIT || !vse_aid_eq(&s->sd, &r->sel->aid)) {
		vse_sess_clear(s);
		return SW_CONDITIONS;
	}
	if (a->p2 != 0x00 || !sl_valid(a->p1, s->i)) {
		vse_sess_clear(s);
		return SW_WRONG_P1P2;
	}
	if (a->ext || a->lc != 2 * s->blen) {
		vse_sess_clear(s);
		return SW_WRONG_LENGTH;
	}
	/* §1.4: MAC with a zero chain over 84 82 SL 00 Lc host-cryptogram. */
	memset(s->chain, 0, sizeof(s->chain));
	hdr[0] = a->cla;
	hdr[1] = a->ins;
	hdr[2] = a->p1;
	hdr[3] = a->p2;
	hdr[4] = (uint8_t)a->lc;
	if (vse_scp03_cmac(s, hdr, 5, a->data, s->blen, mac) != 0)
		goto fail;
	good = ct_equal(mac, a->data + s->blen, s->blen);
	if (!good && (a->cla & 0x03)) {
		hdr[0] = (uint8_t)((a->cla & 0xF0) | 0x04);
		if (vse_scp03_cmac(s, hdr, 5, a->data, s->blen, mac) != 0)
			goto fail;
		good = ct_equal(mac, a->data + s->blen, s->blen);
	}
	if (vse_scp03_cryptogram(s, 0x01, hcrypt) != 0)
		goto fail;
	if (!ct_equal(hcrypt, a->data, s->blen) || !good) {
		sw = SW_AUTH_FAILED;
		goto fail;
	}
	memcpy(s->chain, mac, 16);
	memset(s->ctr, 0, sizeof(s->ctr));
	s->sl = a->p1;
	s->state = VSE_SESS_AUTH;
	wipe(mac, sizeof(mac));
	wipe(hcrypt, sizeof(hcrypt));
	return SW_OK;
fail:
	wipe(mac, sizeof(mac));
	wipe(hcrypt, sizeof(hcrypt));
	vse_sess_clear(s);
	return sw;
}

/* ---- PUT KEY (GPC §11.8, gp-reference §4) --------------------------------- */

static uint16_t
read_aes_block(struct rd *rd, const struct vse_sess *s, struct vse_key *k,
    uint8_t kcv_out[3])
{
	const uint8_t *blk, *ct, *kcv;
	uint8_t iv[16], plain[32], mine[3], kcvlen;
	size_t L, ctlen, keylen;
	uint16_t sw = SW_WRONG_DATA;

	memset(iv, 0, sizeof(iv));
	if (vse_ber_len(rd, &L) != 0 || rd_bytes(rd, L, &blk) != 0 || L == 0)
		return SW_WRONG_DATA;
	/* Both forms (gp-reference §4): a block whose length is not a multiple
	 * of 16 starts with the key-length byte. */
	if (L % 16 != 0) {
		keylen = blk[0];
		ct = blk + 1;
		ctlen = L - 1;
	} else {
		keylen = L;
		ct = blk;
		ctlen = L;
	}
	if (ctlen == 0 || ctlen % 16 != 0 || ctlen > sizeof(plain) ||
	    !vse_aes_keylen_ok(keylen) || keylen > ctlen)
		return SW_WRONG_DATA;
	if (rd_u8(rd, &kcvlen) != 0 || (kcvlen != 0 && kcvlen != 3) ||
	    rd_bytes(rd, kcvlen, &kcv) != 0)
		return SW_WRONG_DATA;
	/* Static DEK, AES-CBC, zero ICV. */
	if (vse_aes_cbc(s->dek, s->keylen, iv, ct, ctlen, plain, 0) != 0 ||
	    vse_kcv_aes(plain, keylen, mine) != 0) {
		sw = SW_UNKNOWN;
		goto cleanup;
	}
	if (kcvlen == 3 && !ct_equal(mine, kcv, 3)) {
		sw = SW_BAD_KCV;
		goto cleanup;
	}
	k->type = VSE_KEY_AES;
	k->len = (uint16_t)keylen;
	memcpy(k->val, plain, keylen);
	memcpy(kcv_out, mine, 3);
	sw = SW_OK;
cleanup:
	wipe(plain, sizeof(plain));
	return sw;
}

static uint16_t
read_public(struct rd *rd, uint8_t type, struct vse_key *k)
{
	const uint8_t *v, *kcv;
	size_t L;
	uint8_t t, kcvlen;

	if (vse_ber_len(rd, &L) != 0 || rd_bytes(rd, L, &v) != 0)
		return SW_WRONG_DATA;
	if (type == VSE_KEY_RSA) {
		/* A1 modulus, A0 exponent, then one KCV length byte. */
		if (L < 64 || L > VSE_KEY_MAX)
			return SW_WRONG_DATA;
		k->type = VSE_KEY_RSA;
		k->len = (uint16_t)L;
		memcpy(k->val, v, L);
		if (rd_u8(rd, &t) != 0 || t != 0xA0 ||
		    vse_ber_len(rd, &L) != 0 || rd_bytes(rd, L, &v) != 0 ||
		    L == 0 || L > VSE_EXP_MAX)
			return SW_WRONG_DATA;
		k->exp_len = (uint16_t)L;
		memcpy(k->exp, v, L);
	} else {
		/* B0 uncompressed point, optional F0 curve reference. */
		if (L != 65 && L != 97)
			return SW_WRONG_DATA;
		k->type = VSE_KEY_EC;
		k->len = (uint16_t)L;
		memcpy(k->val, v, L);
		k->curve = L == 65 ? 0x00 : 0x01;
		if (rd_left(rd) > 0 && rd->p[rd->off] == 0xF0) {
			rd->off++;
			if (vse_ber_len(rd, &L) != 0 || rd_bytes(rd, L, &v) != 0 ||
			    L != 1 || v[0] != k->curve)
				return SW_WRONG_DATA;
		}
	}
	if (rd_u8(rd, &kcvlen) != 0 || rd_bytes(rd, kcvlen, &kcv) != 0)
		return SW_WRONG_DATA;
	if (vse_key_check(k) != 0)
		return SW_WRONG_DATA;
	return SW_OK;
}

/*
 * Keys go to the selected SD, or to the SD named by a preceding INSTALL
 * [for personalization] in this session (how an ISD gives a new SSD its
 * first key set: GPC §11.5.2.3.6, forwarded commands).
 */
uint16_t
vse_cmd_put_key(struct vse_req *r)
{
	const struct vse_apdu *a = r->a;
	struct vse *c = r->c;
	struct vse_entry *t = r->sel, *pt;
	struct vse_sess *s = &r->ch->s;
	struct vse_keyset *old, nks;
	struct vse_key *keys = NULL;
	uint8_t kcvs[VSE_MAX_KEYS][3], newkvn, type;
	uint8_t p1 = a->p1 & 0x7F, kid0 = a->p2 & 0x7F;
	int multi = (a->p2 & 0x80) != 0, naes = 0;
	size_t nk = 0, i, j;
	struct rd rd;
	uint16_t sw;

	if (r->ch->perso) {
		pt = vse_reg_find(c, &r->ch->perso_aid);
		if (pt == NULL)
			return SW_CONDITIONS;
		if (!vse_reg_is_sd(pt))
			return SW_CONDITIONS;
		t = pt;
	}
	if (kid0 == 0)
		return SW_WRONG_P1P2;
	memset(&nks, 0, sizeof(nks));
	keys = nks.keys;
	rd_init(&rd, a->data, a->lc);
	if (rd_u8(&rd, &newkvn) != 0 || newkvn == 0 || newkvn > 0x7F)
		return SW_WRONG_DATA;
	while (rd_left(&rd) > 0) {
		if (nk == VSE_MAX_KEYS) {
			sw = SW_WRONG_DATA;
			goto cleanup;
		}
		if (rd_u8(&rd, &type) != 0) {
			sw = SW_WRONG_DATA;
			goto cleanup;
		}
		memset(&keys[nk], 0, sizeof(keys[nk]));
		if (type == VSE_KEY_AES) {
			sw = read_aes_block(&rd, s, &keys[nk], kcvs[nk]);
			naes++;
		} else if (type == VSE_KEY_RSA || type == VSE_KEY_EC)
			sw = read_public(&rd, type, &keys[nk]);
		else
			sw = SW_ALG_NOT_SUPP;	/* DES, SM4, private keys... */
		if (sw != SW_OK)
			goto cleanup;
		if (kid0 + nk > 0x7F) {
			sw = SW_WRONG_DATA;
			goto cleanup;
		}
		keys[nk].kid = (uint8_t)(kid0 + nk);
		nk++;
	}
	sw = SW_WRONG_DATA;
	if (nk == 0 || (!multi && nk != 1))
		goto cleanup;
	/* Public keys only for the token key set; AES everywhere else. */
	if ((newkvn == VSE_KVN_TOKEN) != (naes == 0))
		goto cleanup;
	if (p1 == 0) {
		if (vse_keyset_find(t, newkvn) != NULL)
			goto cleanup;
		if (t->nkeysets >= VSE_MAX_KEYSETS) {
			sw = SW_NO_MEMORY;
			goto cleanup;
		}
		nks.kvn = newkvn;
		nks.nkeys = (uint8_t)nk;
		t->keysets[t->nkeysets++] = nks;
	} else {
		if ((old = vse_keyset_find(t, p1)) == NULL) {
			sw = SW_REF_NOT_FOUND;
			goto cleanup;
		}
		if (newkvn != p1 && vse_keyset_find(t, newkvn) != NULL)
			goto cleanup;
		/* Keep the old keys whose KIDs are not being replaced. */
		for (i = 0; i < old->nkeys; i++) {
			for (j = 0; j < nk; j++)
				if (keys[j].kid == old->keys[i].kid)
					break;
			if (j < nk)
				continue;
			if (nk == VSE_MAX_KEYS) {
				sw = SW_NO_MEMORY;
				goto cleanup;
			}
			keys[nk++] = old->keys[i];
		}
		nks.kvn = newkvn;
		nks.nkeys = (uint8_t)nk;
		nks.seq = 0;		/* new keys: the counter starts again */
		*old = nks;
	}
	c->dirty = 1;
	sw = SW_UNKNOWN;
	if (buf_put_u8(r->out, newkvn) != 0)
		goto cleanup;
	for (i = 0; i < (size_t)naes; i++)
		if (buf_put(r->out, kcvs[i], 3) != 0)
			goto cleanup;
	sw = SW_OK;
cleanup:
	wipe(&nks, sizeof(nks));
	wipe(kcvs, sizeof(kcvs));
	return sw;
}
