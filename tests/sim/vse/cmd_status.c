/*
 * cmd_status.c - GET STATUS (TLV and legacy formats, 6310 continuation)
 * and STORE DATA (DGI / BER-TLV blocks recorded per entry, DEK-encrypted
 * DGIs opened) of the virtual SE. Runs in the card; command data is
 * untrusted.
 */
#include <string.h>

#include "tests/sim/vse/vse_int.h"

#define P2_GREGISTRY 0x04

static int
kind_matches(uint8_t p1, const struct vse_entry *e)
{
	/* GPC §11.4.2.1: 80 ISD, 40 apps and SSDs, 20 ELFs, 10 ELFs+modules. */
	switch (p1) {
	case 0x80: return e->kind == VSE_KIND_ISD;
	case 0x40: return e->kind == VSE_KIND_APP || e->kind == VSE_KIND_SSD;
	case 0x20:
	case 0x10: return e->kind == VSE_KIND_ELF;
	}
	return 0;
}

static int
visible(const struct vse *c, const struct vse_entry *actor,
    const struct vse_entry *e)
{
	/* The ISD and Global Registry SDs see all; others their hierarchy. */
	if (actor->kind == VSE_KIND_ISD || (actor->priv[1] & P2_GREGISTRY))
		return 1;
	return e == actor || vse_reg_in_scope(c, actor, e);
}

static int
want(const struct vse_gs *gs, uint32_t tag)
{
	size_t i;

	if (gs->ntags == 0)
		return 1;
	for (i = 0; i < gs->ntags; i++)
		if (gs->tags[i] == tag)
			return 1;
	return 0;
}

/* One E3 entry (GPC §11.4.3.1; gp-reference §5). */
static int
encode_tlv(const struct vse_gs *gs, const struct vse_entry *e, struct buf *out)
{
	struct buf in;
	size_t i;
	int rc = 0;

	buf_init(&in);
	if (want(gs, 0x4F))
		rc = vse_put_tlv(&in, 0x4F, e->aid.b, e->aid.len);
	if (rc == 0 && want(gs, 0x9F70))
		rc = vse_put_tlv(&in, 0x9F70, &e->lcs, 1);
	if (rc == 0 && e->kind != VSE_KIND_ELF && want(gs, 0xC5))
		rc = vse_put_tlv(&in, 0xC5, e->priv, 3);
	if (rc == 0 && (e->kind == VSE_KIND_APP || e->kind == VSE_KIND_SSD) &&
	    e->elf.len > 0 && want(gs, 0xC4))
		rc = vse_put_tlv(&in, 0xC4, e->elf.b, e->elf.len);
	if (rc == 0 && gs->p1 == 0x10 && want(gs, 0x84))
		for (i = 0; rc == 0 && i < e->nmodules; i++)
			rc = vse_put_tlv(&in, 0x84, e->modules[i].b,
			    e->modules[i].len);
	if (rc == 0 && e->kind != VSE_KIND_ISD && e->sd.len > 0 &&
	    want(gs, 0xCC))
		rc = vse_put_tlv(&in, 0xCC, e->sd.b, e->sd.len);
	if (rc == 0)
		rc = vse_put_tlv(out, 0xE3, in.p, in.len);
	buf_free(&in);
	return rc;
}

/* Legacy format (P2 00): len AID LCS privileges(1) [modules]. */
static int
encode_legacy(const struct vse_gs *gs, const struct vse_entry *e,
    struct buf *out)
{
	int rc;
	size_t i;

	if ((rc = vse_put_lv(out, e->aid.b, e->aid.len)) != 0 ||
	    (rc = buf_put_u8(out, e->lcs)) != 0 ||
	    (rc = buf_put_u8(out, e->kind == VSE_KIND_ELF ? 0 : e->priv[0])) != 0)
		return rc;
	if (gs->p1 != 0x10)
		return 0;
	if ((rc = buf_put_u8(out, e->nmodules)) != 0)
		return rc;
	for (i = 0; i < e->nmodules; i++)
		if ((rc = vse_put_lv(out, e->modules[i].b, e->modules[i].len)) != 0)
			return rc;
	return 0;
}

static int
parse_criteria(const struct vse_apdu *a, struct vse_gs *gs)
{
	struct rd rd, tl;
	uint32_t t, tag;
	const uint8_t *v;
	size_t l;
	int have4f = 0;

	rd_init(&rd, a->data, a->lc);
	while (rd_left(&rd) > 0) {
		if (vse_tlv_next(&rd, &t, &v, &l) != 0)
			return ERR_PARSE;
		if (t == 0x4F && !have4f) {
			if (l > 16)
				return ERR_PARSE;
			memcpy(gs->crit.b, v, l);
			gs->crit_len = (uint8_t)l;
			have4f = 1;
		} else if (t == 0x5C && gs->ntags == 0) {
			/* Tag list: which TLVs each E3 carries. */
			rd_init(&tl, v, l);
			while (rd_left(&tl) > 0) {
				if (gs->ntags == ARRAY_LEN(gs->tags) ||
				    vse_ber_tag(&tl, &tag) != 0)
					return ERR_PARSE;
				gs->tags[gs->ntags++] = tag;
			}
			if (gs->ntags == 0)
				return ERR_PARSE;
		} else
			return ERR_PARSE;
	}
	return have4f ? 0 : ERR_PARSE;
}

uint16_t
vse_cmd_get_status(struct vse_req *r)
{
	const struct vse_apdu *a = r->a;
	struct vse *c = r->c;
	struct vse_gs *gs = &r->ch->gs;
	struct vse_entry *e;
	struct buf one;
	size_t i, found = 0;
	uint16_t sw = SW_OK;
	int rc;

	if (a->p1 != 0x80 && a->p1 != 0x40 && a->p1 != 0x20 && a->p1 != 0x10)
		return SW_WRONG_P1P2;
	if (a->p2 & ~0x03)
		return SW_WRONG_P1P2;
	if (a->p2 & 0x01) {
		/* "next occurrence" continues an answer that ended in 6310. */
		if (!gs->active || gs->p1 != a->p1 || gs->fmt != (a->p2 & 0x02))
			return SW_CONDITIONS;
	} else {
		memset(gs, 0, sizeof(*gs));
		gs->p1 = a->p1;
		gs->fmt = a->p2 & 0x02;
		if (parse_criteria(a, gs) != 0) {
			memset(gs, 0, sizeof(*gs));
			return SW_WRONG_DATA;
		}
	}
	buf_init(&one);
	for (i = gs->next; i < c->nents; i++) {
		e = c->ents[i];
		if (!kind_matches(gs->p1, e) || !visible(c, r->sel, e) ||
		    e->aid.len < gs->crit_len ||
		    memcmp(e->aid.b, gs->crit.b, gs->crit_len) != 0)
			continue;
		buf_reset(&one);
		rc = gs->fmt ? encode_tlv(gs, e, &one) : encode_legacy(gs, e, &one);
		if (rc != 0) {
			sw = SW_UNKNOWN;
			break;
		}
		if (r->out->len + one.len > r->out_max) {
			if (r->out->len == 0) {
				sw = SW_UNKNOWN;
				break;
			}
			gs->next = i;
			gs->active = 1;
			buf_free(&one);
			return SW_MORE_DATA;	/* GPC §11.4.3: more data available */
		}
		if (buf_put(r->out, one.p, one.len) != 0) {
			sw = SW_UNKNOWN;
			break;
		}
		found++;
	}
	buf_free(&one);
	if (sw == SW_OK && found == 0 && !gs->active)
		sw = SW_REF_NOT_FOUND;
	memset(gs, 0, sizeof(*gs));
	return sw;
}

/* ---- STORE DATA (GPC §11.11, gp-reference §5) ----------------------------- */

/*
 * DGI format: DGI(2) | len (1 byte, or FF + 2 bytes) | value. When the
 * block is marked encrypted, each value is AES-CBC(static DEK, zero ICV)
 * and is recorded decrypted.
 */
static uint16_t
dgi_walk(const struct vse_apdu *a, const struct vse_sess *s, int decrypt,
    struct buf *out)
{
	struct rd rd;
	uint16_t dgi, l16;
	uint8_t l8, iv[16];
	const uint8_t *v;
	size_t len, at;
	int rc;

	memset(iv, 0, sizeof(iv));
	rd_init(&rd, a->data, a->lc);
	while (rd_left(&rd) > 0) {
		if (rd_u16(&rd, &dgi) != 0 || rd_u8(&rd, &l8) != 0)
			return SW_WRONG_DATA;
		if (l8 == 0xFF) {
			if (rd_u16(&rd, &l16) != 0)
				return SW_WRONG_DATA;
			len = l16;
		} else
			len = l8;
		if (rd_bytes(&rd, len, &v) != 0)
			return SW_WRONG_DATA;
		if (!decrypt)
			continue;
		if (len == 0 || len % 16 != 0)
			return SW_WRONG_DATA;
		if (buf_put_u16(out, dgi) != 0)
			return SW_UNKNOWN;
		rc = len < 0xFF ? buf_put_u8(out, (uint8_t)len) :
		    (buf_put_u8(out, 0xFF) || buf_put_u16(out, (uint16_t)len));
		if (rc != 0 || buf_reserve(out, len) != 0)
			return SW_UNKNOWN;
		at = out->len;
		if (vse_aes_cbc(s->dek, s->keylen, iv, v, len, out->p + at,
		    0) != 0)
			return SW_UNKNOWN;
		out->len += len;
	}
	return SW_OK;
}

static const uint8_t get_eid_req[] = { 0xBF, 0x3E, 0x03, 0x5C, 0x01, 0x5A };

uint16_t
vse_cmd_store_data(struct vse_req *r)
{
	const struct vse_apdu *a = r->a;
	struct vse *c = r->c;
	struct vse_chan *ch = r->ch;
	struct vse_entry *t = r->sel;
	uint8_t enc = a->p1 & 0x60, fmt = a->p1 & 0x18;
	int decrypt, is_sd = vse_reg_is_sd(r->sel);
	struct buf dec;
	uint16_t sw;

	if (t == NULL)
		return SW_CONDITIONS;
	if (is_sd && ch->perso) {
		t = vse_reg_find(c, &ch->perso_aid);
		if (t == NULL)
			return SW_CONDITIONS;
	}
	if (t->kind != VSE_KIND_ISD && vse_reg_locked(c, t))
		return SW_CONDITIONS;
	/* P1: b8 last, b7-b6 encryption, b5-b4 structure, b3-b2 RFU. */
	if (enc == 0x40 || fmt == 0x18 || (a->p1 & 0x06))
		return SW_WRONG_P1P2;
	if (a->p2 != (ch->sd_next_block & 0xFF))
		return SW_WRONG_P1P2;
	if (fmt == 0x10 && vse_tlv_check(a->data, a->lc) != 0)
		return SW_WRONG_DATA;
	/* SGP.22 GetEuiccData(EID) through the ISD-R, as eUICCs answer it. */
	if (fmt == 0x10 && t->kind == VSE_KIND_ISD && c->has_eid &&
	    a->lc == sizeof(get_eid_req) &&
	    memcmp(a->data, get_eid_req, sizeof(get_eid_req)) == 0) {
		uint8_t rsp[3 + 2 + 16] = { 0xBF, 0x3E, 0x12, 0x5A, 0x10 };

		memcpy(rsp + 5, c->eid, 16);
		ch->sd_next_block = (a->p1 & 0x80) ? 0 : ch->sd_next_block + 1;
		return buf_put(r->out, rsp, sizeof(rsp)) == 0 ? SW_OK :
		    SW_UNKNOWN;
	}
	decrypt = is_sd && enc == 0x60 && fmt == 0x08 &&
	    ch->s.state == VSE_SESS_AUTH;
	buf_init(&dec);
	if (fmt == 0x08 && (sw = dgi_walk(a, &ch->s, decrypt, &dec)) != SW_OK)
		goto cleanup;
	if (decrypt)
		sw = vse_record_add(t, a->p1, a->p2, 1, dec.p, dec.len) == 0 ?
		    SW_OK : SW_NO_MEMORY;
	else
		sw = vse_record_add(t, a->p1, a->p2, 0, a->data, a->lc) == 0 ?
		    SW_OK : SW_NO_MEMORY;
	if (sw != SW_OK)
		goto cleanup;
	c->dirty = 1;
	ch->sd_next_block = (a->p1 & 0x80) ? 0 : ch->sd_next_block + 1;
cleanup:
	buf_free(&dec);
	return sw;
}
