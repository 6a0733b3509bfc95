/*
 * cmd_cm.c - card content management of the virtual SE: INSTALL (load,
 * install, make selectable, extradition, personalization, registry
 * update), LOAD, DELETE and SET STATUS, with Authorized/Delegated
 * Management rules, DM token checks, receipts and memory quotas. Runs in
 * the card; command data is untrusted, the registry is its own.
 */
#include <stdlib.h>
#include <string.h>

#include "tests/sim/vse/vse_int.h"

/* Privilege bits (gp-reference §5, GPC §6.6.1). */
#define P1_SD        0x80
#define P1_DM        0x20	/* with P1_SD: A0 Delegated Management */
#define P1_CARD_LOCK 0x10
#define P1_CARD_TERM 0x08
#define P1_CVM       0x02
#define P2_AM        0x40
#define P2_TV        0x20
#define P2_GDELETE   0x10
#define P2_GLOCK     0x08
#define P2_GREGISTRY 0x04
#define P2_FINAL     0x02
#define P3_RG        0x80

enum { MODE_NONE = 0, MODE_ISD, MODE_AM, MODE_DM };

static int
actor_mode(const struct vse_entry *a)
{
	if (a->kind == VSE_KIND_ISD)
		return MODE_ISD;
	if (a->priv[1] & P2_AM)
		return MODE_AM;
	if ((a->priv[0] & (P1_SD | P1_DM)) == (P1_SD | P1_DM))
		return MODE_DM;
	return MODE_NONE;
}

/* GPC §5.1.1: no content changes once the card is locked or terminated. */
static int
card_open_for_changes(const struct vse *c)
{
	const struct vse_entry *isd = vse_reg_isd(c);

	return isd != NULL && isd->lcs != VSE_CARD_LOCKED &&
	    isd->lcs != VSE_CARD_TERMINATED;
}

static struct vse_entry *
find_priv(const struct vse *c, int byte, uint8_t bit)
{
	size_t i;

	/* Prefer the ISD when several SDs carry the privilege. */
	for (i = 0; i < c->nents; i++)
		if (c->ents[i]->kind == VSE_KIND_ISD &&
		    (c->ents[i]->priv[byte] & bit))
			return c->ents[i];
	for (i = 0; i < c->nents; i++)
		if (c->ents[i]->kind == VSE_KIND_SSD &&
		    (c->ents[i]->priv[byte] & bit))
			return c->ents[i];
	return NULL;
}

/* gp-reference §6: token data = P1 | P2 | Lc | data without the token. */
static int
token_data(struct buf *b, uint8_t p1, uint8_t p2, const uint8_t *data,
    size_t n)
{
	int rc;

	if ((rc = buf_put_u8(b, p1)) != 0 || (rc = buf_put_u8(b, p2)) != 0)
		return rc;
	if (n <= 0xFF)
		rc = buf_put_u8(b, (uint8_t)n);
	else if ((rc = buf_put_u8(b, 0)) == 0)
		rc = buf_put_u16(b, (uint16_t)n);
	if (rc != 0)
		return rc;
	return buf_put(b, data, n);
}

/*
 * The token is checked with the public key at KVN 70 KID 01 of the SD
 * with Token Verification (usually the ISD). Any failure is 6982.
 */
static uint16_t
token_check(struct vse_req *r, const uint8_t *token, size_t tlen,
    const uint8_t *data, size_t n)
{
	struct vse_entry *tv = find_priv(r->c, 1, P2_TV);
	struct vse_keyset *ks;
	struct vse_key *k;
	struct buf m;
	uint16_t sw = SW_SECURITY;

	if (tv == NULL || tlen == 0 ||
	    (ks = vse_keyset_find(tv, VSE_KVN_TOKEN)) == NULL ||
	    (k = vse_keyset_key(ks, 0x01)) == NULL)
		return SW_SECURITY;
	buf_init(&m);
	if (token_data(&m, r->a->p1, r->a->p2, data, n) != 0) {
		sw = SW_UNKNOWN;
		goto cleanup;
	}
	if (vse_sig_verify(k, m.p, m.len, token, tlen) == 0)
		sw = SW_OK;
cleanup:
	buf_free(&m);
	return sw;
}

int
vse_receipt_append(struct vse_req *r, int due, const uint8_t *cmd_data,
    size_t n)
{
	struct vse *c = r->c;
	struct vse_entry *rg;
	struct vse_keyset *ks;
	struct vse_key *k;
	struct buf conf;
	struct vse_iov v[2];
	uint8_t mac[16];
	int rc;

	rg = due ? find_priv(c, 2, P3_RG) : NULL;
	ks = rg ? vse_keyset_find(rg, VSE_KVN_RECEIPT) : NULL;
	k = ks ? vse_keyset_key(ks, 0x01) : NULL;
	if (k == NULL || k->type != VSE_KEY_AES)
		return buf_put_u8(r->out, 0x00);	/* no receipt */
	/* The 2-byte counter saturates rather than wrap. */
	if (c->conf_counter < 0xFFFF)
		c->conf_counter++;
	c->dirty = 1;
	/* gp-reference §6: 02 counter | Lu SD unique data (IIN || CIN). */
	buf_init(&conf);
	if ((rc = buf_put_u8(&conf, 0x02)) != 0 ||
	    (rc = buf_put_u16(&conf, (uint16_t)c->conf_counter)) != 0 ||
	    (rc = buf_put_u8(&conf, (uint8_t)(c->iin_len + c->cin_len))) != 0 ||
	    (rc = buf_put(&conf, c->iin, c->iin_len)) != 0 ||
	    (rc = buf_put(&conf, c->cin, c->cin_len)) != 0)
		goto cleanup;
	/* receipt = CMAC(receipt key, confirmation data || command data). */
	v[0].p = conf.p;
	v[0].n = conf.len;
	v[1].p = cmd_data;
	v[1].n = n;
	if ((rc = vse_aes_cmac(k->val, k->len, v, 2, mac)) != 0)
		goto cleanup;
	/* Emitted with the outer length: L | 10 receipt | confirmation data. */
	if ((rc = vse_put_ber_len(r->out, 1 + 16 + conf.len)) != 0 ||
	    (rc = buf_put_u8(r->out, 16)) != 0 ||
	    (rc = buf_put(r->out, mac, 16)) != 0 ||
	    (rc = buf_put(r->out, conf.p, conf.len)) != 0)
		goto cleanup;
cleanup:
	wipe(mac, sizeof(mac));
	buf_free(&conf);
	return rc;
}

/* ---- shared parsing ------------------------------------------------------ */

#define MAXF 6

struct fields {
	const uint8_t *v[MAXF];
	size_t n[MAXF];
	size_t token_off;	/* data before the token LV (token data) */
};

/* INSTALL data: count LV fields, the last one the token (gp-reference §5). */
static int
parse_lvs(const struct vse_apdu *a, size_t count, struct fields *f)
{
	struct rd rd;
	size_t i;
	int rc;

	memset(f, 0, sizeof(*f));
	rd_init(&rd, a->data, a->lc);
	for (i = 0; i < count; i++) {
		if (i == count - 1)
			f->token_off = rd.off;
		if ((rc = vse_lv_next(&rd, &f->v[i], &f->n[i])) != 0)
			return rc;
	}
	return rd_end(&rd);
}

static int
aid_from(struct vse_aid *a, const uint8_t *p, size_t n)
{
	return vse_aid_set(a, p, n);
}

static int
priv_from(const uint8_t *p, size_t n, uint8_t priv[3])
{
	/* 1 byte (GP 2.1.1 form) or 3 bytes (GPC §11.1.2). */
	if (n != 1 && n != 3)
		return ERR_PARSE;
	priv[0] = p[0];
	priv[1] = n == 3 ? p[1] : 0;
	priv[2] = n == 3 ? p[2] : 0;
	return 0;
}

/*
 * Privilege combinations the card refuses (6A80): SD-only privileges
 * without the SD bit, AM together with DM, and card-wide privileges
 * granted by anyone but the ISD.
 */
static int
priv_ok(const uint8_t priv[3], const struct vse_entry *actor)
{
	int sd = (priv[0] & P1_SD) != 0;

	if (!sd && ((priv[0] & P1_DM) || (priv[1] & (P2_AM | P2_TV)) ||
	    (priv[2] & P3_RG)))
		return 0;
	if ((priv[1] & P2_AM) && (priv[0] & P1_DM))
		return 0;
	if (actor->kind != VSE_KIND_ISD &&
	    ((priv[0] & (P1_CARD_LOCK | P1_CARD_TERM | P1_CVM)) ||
	    (priv[1] & (P2_TV | P2_GDELETE | P2_GLOCK | P2_GREGISTRY |
	    P2_FINAL)) || (priv[2] & P3_RG)))
		return 0;
	return 1;
}

/* EF{C6 NV code, C7 volatile, C8 NV data} (GPC §11.5.2.3.7). */
static int
parse_mem(const uint8_t *p, size_t n, uint32_t *c6, uint32_t *c7,
    uint32_t *c8, int *has7, int *has8)
{
	struct rd rd;
	uint32_t t;
	const uint8_t *v;
	size_t l;
	int rc;

	*has7 = *has8 = 0;
	rd_init(&rd, p, n);
	while (rd_left(&rd) > 0) {
		if ((rc = vse_tlv_next(&rd, &t, &v, &l)) != 0)
			return rc;
		switch (t) {
		case 0xC6:
			if (c6 == NULL)
				break;
			if ((rc = vse_get_uint(v, l, c6)) != 0)
				return rc;
			break;
		case 0xC7:
			if ((rc = vse_get_uint(v, l, c7)) != 0)
				return rc;
			*has7 = 1;
			break;
		case 0xC8:
			if ((rc = vse_get_uint(v, l, c8)) != 0)
				return rc;
			*has8 = 1;
			break;
		default:	/* CA, CB, CD, D7, D8, DD: not modelled */
			break;
		}
	}
	return 0;
}

/* Tentative registry change: keep it if quotas hold, else drop it (6A84). */
static uint16_t
add_checked(struct vse *c, struct vse_entry *e)
{
	if (vse_reg_add(c, e) != 0) {
		vse_entry_free(e);
		return SW_NO_MEMORY;
	}
	if (vse_reg_check_quota(c) != 0) {
		vse_reg_remove(c, e);
		return SW_NO_MEMORY;
	}
	return SW_OK;
}

/* A target an actor may manage: in its hierarchy and not under a lock. */
static uint16_t
target_check(struct vse_req *r, struct vse_entry *actor, struct vse_entry *t)
{
	if (t == NULL)
		return SW_REF_NOT_FOUND;
	if (!vse_reg_in_scope(r->c, actor, t))
		return SW_SECURITY;
	/* A locked SD refuses operations on its applications (6985). */
	if (vse_reg_locked(r->c, t))
		return SW_CONDITIONS;
	return SW_OK;
}

static void
deselect_unselectable(struct vse *c)
{
	size_t i;
	struct vse_entry *e;

	for (i = 0; i < VSE_CHANNELS; i++) {
		if (!c->ch[i].open || c->ch[i].sel.len == 0)
			continue;
		e = vse_reg_find(c, &c->ch[i].sel);
		if (e != NULL && e->kind != VSE_KIND_ISD && vse_reg_locked(c, e)) {
			vse_chan_reset(&c->ch[i]);
			memset(&c->ch[i].sel, 0, sizeof(c->ch[i].sel));
		}
	}
}

/* ---- INSTALL --------------------------------------------------------------- */

static uint16_t
install_for_load(struct vse_req *r, struct vse_entry *actor, int mode)
{
	struct vse *c = r->c;
	struct vse_chan *ch = r->ch;
	struct fields f;
	struct vse_aid elf, sdaid;
	struct vse_entry *sd, *tmp;
	uint32_t c6 = 0, c7 = 0, c8 = 0;
	int h7, h8;
	const uint8_t *ef;
	size_t efn;
	uint16_t sw;

	/* ELF AID | SD AID | hash | load params | token */
	if (parse_lvs(r->a, 5, &f) != 0 || aid_from(&elf, f.v[0], f.n[0]) != 0)
		return SW_WRONG_DATA;
	if (f.n[1] == 0)
		sdaid = actor->aid;
	else if (aid_from(&sdaid, f.v[1], f.n[1]) != 0)
		return SW_WRONG_DATA;
	if (f.n[2] != 0 && f.n[2] != 20 && f.n[2] != 32 && f.n[2] != 48 &&
	    f.n[2] != 64)
		return SW_WRONG_DATA;
	if (f.n[3] > 0) {
		if (vse_tlv_find(f.v[3], f.n[3], 0xEF, &ef, &efn) != 0 ||
		    parse_mem(ef, efn, &c6, &c7, &c8, &h7, &h8) != 0)
			return SW_WRONG_DATA;
	}
	if (vse_reg_find(c, &elf) != NULL)
		return SW_CONDITIONS;
	sd = vse_reg_find(c, &sdaid);
	if (!vse_reg_is_sd(sd))
		return SW_REF_NOT_FOUND;
	if (sd != actor && !vse_reg_in_scope(c, actor, sd))
		return SW_SECURITY;
	if (vse_reg_locked(c, sd))
		return SW_CONDITIONS;
	if (mode == MODE_DM) {
		/* A token for load must come with the LFDB hash (gp-reference §6). */
		if (f.n[2] == 0)
			return SW_WRONG_DATA;
		if ((sw = token_check(r, f.v[4], f.n[4], r->a->data,
		    f.token_off)) != SW_OK)
			return sw;
	}
	/* Memory announced for the file must fit before a byte is loaded. */
	if ((tmp = vse_entry_new(VSE_KIND_ELF, &elf)) == NULL)
		return SW_UNKNOWN;
	tmp->sd = sdaid;
	tmp->use_nv = c6 + c8 < c6 ? UINT32_MAX : c6 + c8;
	tmp->use_v = c7;
	if ((sw = add_checked(c, tmp)) != SW_OK)
		return sw;
	vse_reg_remove(c, tmp);

	buf_free(&ch->load.stream);
	memset(&ch->load, 0, sizeof(ch->load));
	ch->load.active = 1;
	ch->load.elf = elf;
	ch->load.sd = sdaid;
	ch->load.actor = actor->aid;
	memcpy(ch->load.hash, f.v[2], f.n[2]);
	ch->load.hash_len = f.n[2];
	ch->load.c6 = c6;
	ch->load.c7 = c7;
	ch->load.c8 = c8;
	ch->load.dm = mode == MODE_DM;
	return buf_put_u8(r->out, 0x00) == 0 ? SW_OK : SW_UNKNOWN;
}

/* SD install parameters inside C9 (gp-reference §5 "Creating an SSD"). */
static int
parse_sd_params(const uint8_t *p, size_t n, uint8_t *scp_i, uint8_t *flags)
{
	struct rd rd;
	uint32_t t;
	const uint8_t *v;
	size_t l;
	int rc, have03 = 0, other = 0;

	*flags = 0;
	*scp_i = 0x70;
	rd_init(&rd, p, n);
	while (rd_left(&rd) > 0) {
		if ((rc = vse_tlv_next(&rd, &t, &v, &l)) != 0)
			return rc;
		switch (t) {
		case 0x81:
			if (l != 2)
				return ERR_PARSE;
			if (v[0] != 0x03) {
				other = 1;
				break;
			}
			/* i: b2-b4 and b8 RFU; R-ENC only with R-MAC (§1.1). */
			if ((v[1] & 0x8E) || ((v[1] & 0x40) && !(v[1] & 0x20)))
				return ERR_PARSE;
			if (!have03)
				*scp_i = v[1];
			have03 = 1;
			break;
		case 0x82: *flags |= VSE_SDF_EXTRAD_IN; break;
		case 0x83: *flags |= VSE_SDF_DELETE; break;
		case 0x84: *flags |= VSE_SDF_PERSO; break;
		case 0x86: *flags |= VSE_SDF_CASD; break;
		case 0x87: *flags |= VSE_SDF_EXTRAD_OUT; break;
		default: break;
		}
	}
	/* Only SCP03 is implemented: an SSD asking solely for another
	 * protocol (e.g. SCP02 "0255") is refused rather than faked. */
	if (other && !have03)
		return ERR_NOTSUP;
	return 0;
}

static uint16_t
install_for_install(struct vse_req *r, struct vse_entry *actor, int mode)
{
	struct vse *c = r->c;
	struct fields f;
	struct vse_aid elfa, moda, appa;
	struct vse_entry *elf, *e;
	uint8_t priv[3] = { 0, 0, 0 }, scp_i = 0x70, flags = 0;
	uint32_t c7 = 0, c8 = 0;
	int h7 = 0, h8 = 0, is_sd, sel = (r->a->p1 & 0x08) != 0;
	const uint8_t *c9, *ef;
	size_t c9n, efn, i;
	struct rd rd;
	uint32_t t;
	struct buf rc_data;
	uint16_t sw;

	/* ELF | module | app | privileges | params | token */
	if (parse_lvs(r->a, 6, &f) != 0 ||
	    aid_from(&elfa, f.v[0], f.n[0]) != 0 ||
	    aid_from(&moda, f.v[1], f.n[1]) != 0)
		return SW_WRONG_DATA;
	if (f.n[2] == 0)
		appa = moda;
	else if (aid_from(&appa, f.v[2], f.n[2]) != 0)
		return SW_WRONG_DATA;
	if (f.n[3] > 0 && priv_from(f.v[3], f.n[3], priv) != 0)
		return SW_WRONG_DATA;
	/* C9 is mandatory and first, even when empty (C9 00). */
	rd_init(&rd, f.v[4], f.n[4]);
	if (f.n[4] > VSE_PARAMS_MAX || vse_tlv_next(&rd, &t, &c9, &c9n) != 0 ||
	    t != 0xC9 || vse_tlv_check(f.v[4], f.n[4]) != 0)
		return SW_WRONG_DATA;
	if (vse_tlv_find(f.v[4], f.n[4], 0xEF, &ef, &efn) == 0 &&
	    parse_mem(ef, efn, NULL, &c7, &c8, &h7, &h8) != 0)
		return SW_WRONG_DATA;
	is_sd = (priv[0] & P1_SD) != 0;
	if (!priv_ok(priv, actor))
		return SW_WRONG_DATA;
	elf = vse_reg_find(c, &elfa);
	if (elf == NULL || elf->kind != VSE_KIND_ELF)
		return SW_REF_NOT_FOUND;
	/* The module must be in the file when the file lists its modules. */
	for (i = 0; i < elf->nmodules; i++)
		if (vse_aid_eq(&elf->modules[i], &moda))
			break;
	if (elf->nmodules > 0 && i == elf->nmodules)
		return SW_REF_NOT_FOUND;
	/* An SD comes from the SD module, and the SD module only makes SDs. */
	if (is_sd != vse_aid_eq(&moda, &vse_sd_module_aid))
		return SW_WRONG_DATA;
	if (is_sd) {
		/* Only the ISD or an AM SD may create an SSD (no tokens). */
		if (mode != MODE_ISD && mode != MODE_AM)
			return SW_SECURITY;
		if (parse_sd_params(c9, c9n, &scp_i, &flags) != 0)
			return SW_WRONG_DATA;
	}
	if (vse_reg_find(c, &appa) != NULL)
		return SW_CONDITIONS;
	if (mode == MODE_DM && (sw = token_check(r, f.v[5], f.n[5],
	    r->a->data, f.token_off)) != SW_OK)
		return sw;

	if ((e = vse_entry_new(is_sd ? VSE_KIND_SSD : VSE_KIND_APP,
	    &appa)) == NULL)
		return SW_UNKNOWN;
	e->lcs = sel ? 0x07 : 0x03;
	if (is_sd && sel && (flags & VSE_SDF_PERSO))
		e->lcs = 0x0F;
	memcpy(e->priv, priv, 3);
	e->sd = actor->aid;
	e->elf = elfa;
	e->module = moda;
	e->scp_i = scp_i;
	e->sd_flags = flags;
	if (is_sd) {
		/* EF{C7,C8} of an SSD are its quotas; it starts with no keys. */
		e->has_quota_v = (uint8_t)h7;
		e->quota_v = c7;
		e->has_quota_nv = (uint8_t)h8;
		e->quota_nv = c8;
	} else {
		e->use_v = c7;
		e->use_nv = c8;
	}
	if (f.n[4] > 0 && (e->params = malloc(f.n[4])) != NULL) {
		memcpy(e->params, f.v[4], f.n[4]);
		e->params_len = f.n[4];
	}
	if ((sw = add_checked(c, e)) != SW_OK)
		return sw;
	c->dirty = 1;
	/* Install receipt data: LV(ELF) LV(app) (gp-reference §6). */
	buf_init(&rc_data);
	sw = SW_UNKNOWN;
	if (vse_put_lv(&rc_data, elfa.b, elfa.len) == 0 &&
	    vse_put_lv(&rc_data, appa.b, appa.len) == 0 &&
	    vse_receipt_append(r, mode == MODE_DM, rc_data.p, rc_data.len) == 0)
		sw = SW_OK;
	buf_free(&rc_data);
	return sw;
}

static uint16_t
install_make_selectable(struct vse_req *r, struct vse_entry *actor, int mode)
{
	struct vse *c = r->c;
	struct fields f;
	struct vse_aid appa;
	struct vse_entry *e;
	uint8_t priv[3];
	struct buf rc_data;
	uint16_t sw;

	if (parse_lvs(r->a, 6, &f) != 0 || f.n[0] != 0 || f.n[1] != 0 ||
	    aid_from(&appa, f.v[2], f.n[2]) != 0)
		return SW_WRONG_DATA;
	e = vse_reg_find(c, &appa);
	if (e != NULL && e->kind != VSE_KIND_APP && e->kind != VSE_KIND_SSD)
		return SW_REF_NOT_FOUND;
	if ((sw = target_check(r, actor, e)) != SW_OK)
		return sw;
	if (e->lcs != 0x03)
		return SW_CONDITIONS;
	if (f.n[3] > 0) {
		if (priv_from(f.v[3], f.n[3], priv) != 0 || !priv_ok(priv, actor) ||
		    ((priv[0] & P1_SD) != 0) != (e->kind == VSE_KIND_SSD))
			return SW_WRONG_DATA;
	}
	if (mode == MODE_DM && (sw = token_check(r, f.v[5], f.n[5],
	    r->a->data, f.token_off)) != SW_OK)
		return sw;
	if (f.n[3] > 0)
		memcpy(e->priv, priv, 3);
	e->lcs = (e->kind == VSE_KIND_SSD && (e->sd_flags & VSE_SDF_PERSO)) ?
	    0x0F : 0x07;
	c->dirty = 1;
	buf_init(&rc_data);
	sw = SW_UNKNOWN;
	if (vse_put_lv(&rc_data, e->elf.b, e->elf.len) == 0 &&
	    vse_put_lv(&rc_data, appa.b, appa.len) == 0 &&
	    vse_receipt_append(r, mode == MODE_DM, rc_data.p, rc_data.len) == 0)
		sw = SW_OK;
	buf_free(&rc_data);
	return sw;
}

/* Moving e under nsd: nsd must be an unlocked SD outside e's own subtree. */
static uint16_t
association_check(struct vse *c, struct vse_entry *e, struct vse_entry *nsd)
{
	const struct vse_entry *p = nsd;
	size_t depth = 0;

	if (!vse_reg_is_sd(nsd))
		return SW_REF_NOT_FOUND;
	if (vse_reg_locked(c, nsd) || nsd == e)
		return SW_CONDITIONS;
	while ((p = vse_reg_parent(c, p)) != NULL && depth++ <= c->nents)
		if (p == e)
			return SW_CONDITIONS;
	return SW_OK;
}

static uint16_t
install_extradition(struct vse_req *r, struct vse_entry *actor, int mode,
    int registry_update)
{
	struct vse *c = r->c;
	struct fields f;
	struct vse_aid nsda, appa, old;
	struct vse_entry *e, *nsd = NULL;
	uint8_t priv[3];
	struct buf rc_data;
	uint16_t sw;

	/* extradition: SD | 00 | app | 00 | params | token
	 * registry update: SD | 00 | app | privileges | params | token */
	if (parse_lvs(r->a, 6, &f) != 0 || f.n[1] != 0 ||
	    aid_from(&appa, f.v[2], f.n[2]) != 0 ||
	    (!registry_update && f.n[3] != 0))
		return SW_WRONG_DATA;
	if (f.n[0] > 0 && aid_from(&nsda, f.v[0], f.n[0]) != 0)
		return SW_WRONG_DATA;
	if (!registry_update && f.n[0] == 0)
		return SW_WRONG_DATA;
	e = vse_reg_find(c, &appa);
	if ((sw = target_check(r, actor, e)) != SW_OK)
		return sw;
	if (f.n[0] > 0) {
		nsd = vse_reg_find(c, &nsda);
		if ((sw = association_check(c, e, nsd)) != SW_OK)
			return sw;
	}
	if (registry_update && f.n[3] > 0) {
		if (e->kind == VSE_KIND_ELF ||
		    priv_from(f.v[3], f.n[3], priv) != 0 || !priv_ok(priv, actor) ||
		    ((priv[0] & P1_SD) != 0) != (e->kind == VSE_KIND_SSD))
			return SW_WRONG_DATA;
	}
	if (mode == MODE_DM && (sw = token_check(r, f.v[5], f.n[5],
	    r->a->data, f.token_off)) != SW_OK)
		return sw;
	old = e->sd;
	if (nsd != NULL) {
		e->sd = nsd->aid;
		if (vse_reg_check_quota(c) != 0) {
			e->sd = old;
			return SW_NO_MEMORY;
		}
	}
	if (registry_update && f.n[3] > 0)
		memcpy(e->priv, priv, 3);
	c->dirty = 1;
	/* Receipt data (gp-reference §6): LV(old SD) LV(app) LV(new SD)
	 * [LV(privileges) LV(params) for registry update]. */
	buf_init(&rc_data);
	sw = SW_UNKNOWN;
	if (vse_put_lv(&rc_data, old.b, old.len) != 0 ||
	    vse_put_lv(&rc_data, appa.b, appa.len) != 0 ||
	    vse_put_lv(&rc_data, e->sd.b, e->sd.len) != 0)
		goto cleanup;
	if (registry_update && (vse_put_lv(&rc_data, f.v[3], f.n[3]) != 0 ||
	    vse_put_lv(&rc_data, f.v[4], f.n[4]) != 0))
		goto cleanup;
	if (vse_receipt_append(r, mode == MODE_DM, rc_data.p, rc_data.len) == 0)
		sw = SW_OK;
cleanup:
	buf_free(&rc_data);
	return sw;
}

static uint16_t
install_for_perso(struct vse_req *r, struct vse_entry *actor)
{
	struct fields f;
	struct vse_aid appa;
	struct vse_entry *e;
	uint16_t sw;

	/* 00 00 LV(app) 00 00 00 */
	if (parse_lvs(r->a, 6, &f) != 0 || f.n[0] || f.n[1] || f.n[3] ||
	    f.n[4] || f.n[5] || aid_from(&appa, f.v[2], f.n[2]) != 0)
		return SW_WRONG_DATA;
	e = vse_reg_find(r->c, &appa);
	if (e != NULL && e->kind != VSE_KIND_APP && e->kind != VSE_KIND_SSD)
		return SW_REF_NOT_FOUND;
	if ((sw = target_check(r, actor, e)) != SW_OK)
		return sw;
	/* Following STORE DATA (and PUT KEY for an SD) go to this entry. */
	r->ch->perso = 1;
	r->ch->perso_aid = appa;
	r->ch->sd_next_block = 0;
	return buf_put_u8(r->out, 0x00) == 0 ? SW_OK : SW_UNKNOWN;
}

uint16_t
vse_cmd_install(struct vse_req *r)
{
	struct vse_entry *actor = r->sel;
	uint8_t p1 = r->a->p1 & 0x7F;	/* b8: more INSTALL commands follow */
	int mode = actor_mode(actor);

	if (r->a->p2 != 0x00)
		return SW_WRONG_P1P2;
	if (p1 != 0x02 && p1 != 0x04 && p1 != 0x0C && p1 != 0x08 &&
	    p1 != 0x10 && p1 != 0x20 && p1 != 0x40)
		return SW_WRONG_P1P2;
	if (!card_open_for_changes(r->c))
		return SW_CONDITIONS;
	/* Personalization is any SD's business for its own applications. */
	if (p1 == 0x20)
		return install_for_perso(r, actor);
	if (mode == MODE_NONE)
		return SW_SECURITY;
	/* A new INSTALL ends a pending load or personalization. */
	r->ch->perso = 0;
	switch (p1) {
	case 0x02: return install_for_load(r, actor, mode);
	case 0x04:
	case 0x0C: return install_for_install(r, actor, mode);
	case 0x08: return install_make_selectable(r, actor, mode);
	case 0x10: return install_extradition(r, actor, mode, 0);
	case 0x40: return install_extradition(r, actor, mode, 1);
	}
	return SW_WRONG_P1P2;
}

/* ---- LOAD ------------------------------------------------------------------ */

/* Modules of a Java Card CAP load file: Applet component (tag 3). */
static void
cap_modules(const uint8_t *p, size_t n, struct vse_entry *elf)
{
	struct rd rd, comp;
	const uint8_t *info, *aid;
	uint8_t tag, count, alen;
	uint16_t size, off;
	size_t i;

	elf->nmodules = 0;
	rd_init(&rd, p, n);
	while (rd_left(&rd) > 0) {
		if (rd_u8(&rd, &tag) != 0 || rd_u16(&rd, &size) != 0 ||
		    rd_bytes(&rd, size, &info) != 0 || tag == 0 || tag > 12)
			goto opaque;
		if (tag != 3)
			continue;
		rd_init(&comp, info, size);
		if (rd_u8(&comp, &count) != 0 || count > VSE_MAX_MODULES)
			goto opaque;
		for (i = 0; i < count; i++) {
			if (rd_u8(&comp, &alen) != 0 ||
			    rd_bytes(&comp, alen, &aid) != 0 ||
			    rd_u16(&comp, &off) != 0 ||
			    vse_aid_set(&elf->modules[i], aid, alen) != 0)
				goto opaque;
		}
		if (rd_end(&comp) != 0)
			goto opaque;
		elf->nmodules = count;
	}
	return;
opaque:
	/* Not a CAP file: the module list stays open (any module AID). */
	elf->nmodules = 0;
}

static uint16_t
load_finish(struct vse_req *r)
{
	struct vse *c = r->c;
	struct vse_load *ld = &r->ch->load;
	struct rd rd;
	uint32_t t;
	const uint8_t *v, *lfdb = NULL;
	size_t l, lfdb_len = 0;
	uint8_t h[64];
	struct vse_entry *e;
	struct buf rc_data;
	uint64_t nv;
	uint16_t sw;

	/* gp-reference §5: [E2 DAP blocks] C4 <BER len> LFDB, nothing after. */
	rd_init(&rd, ld->stream.p, ld->stream.len);
	while (rd_left(&rd) > 0) {
		if (vse_tlv_next(&rd, &t, &v, &l) != 0)
			return SW_WRONG_DATA;
		if (t == 0xE2 && lfdb == NULL)
			continue;	/* DAP not checked by this card */
		if (t == 0xC4 && lfdb == NULL) {
			lfdb = v;
			lfdb_len = l;
			continue;
		}
		/* D3/D4 ciphered load files are not supported. */
		return SW_WRONG_DATA;
	}
	if (lfdb == NULL)
		return SW_WRONG_DATA;
	/* The LFDB hash covers the C4 value only (gp-reference §6). */
	if (ld->hash_len > 0) {
		if (vse_hash(ld->hash_len, lfdb, lfdb_len, h) != 0)
			return SW_UNKNOWN;
		if (!ct_equal(h, ld->hash, ld->hash_len))
			return SW_WRONG_DATA;
	}
	if ((e = vse_entry_new(VSE_KIND_ELF, &ld->elf)) == NULL)
		return SW_UNKNOWN;
	e->lcs = 0x01;			/* LOADED */
	e->sd = ld->sd;
	nv = (uint64_t)(ld->c6 > lfdb_len ? ld->c6 : lfdb_len) + ld->c8;
	e->use_nv = nv > UINT32_MAX ? UINT32_MAX : (uint32_t)nv;
	e->use_v = ld->c7;
	cap_modules(lfdb, lfdb_len, e);
	if ((sw = add_checked(c, e)) != SW_OK)
		return sw;
	c->dirty = 1;
	buf_init(&rc_data);
	sw = SW_UNKNOWN;
	/* Load receipt data: LV(ELF) LV(SD), in the last LOAD response. */
	if (vse_put_lv(&rc_data, ld->elf.b, ld->elf.len) == 0 &&
	    vse_put_lv(&rc_data, ld->sd.b, ld->sd.len) == 0 &&
	    vse_receipt_append(r, ld->dm, rc_data.p, rc_data.len) == 0)
		sw = SW_OK;
	buf_free(&rc_data);
	return sw;
}

uint16_t
vse_cmd_load(struct vse_req *r)
{
	struct vse_load *ld = &r->ch->load;
	const struct vse_apdu *a = r->a;
	uint16_t sw;

	if (!ld->active || !vse_aid_eq(&ld->actor, &r->sel->aid))
		return SW_CONDITIONS;
	/* P1 00 more blocks / 80 last; P2 block number in sequence. */
	if ((a->p1 != 0x00 && a->p1 != 0x80) || a->p2 != (ld->next_block & 0xFF) ||
	    ld->next_block > 0xFF) {
		sw = SW_WRONG_P1P2;
		goto abort;
	}
	if (a->lc == 0) {
		sw = SW_WRONG_LENGTH;
		goto abort;
	}
	if (ld->stream.len + a->lc > VSE_LOAD_MAX) {
		sw = SW_NO_MEMORY;
		goto abort;
	}
	if (buf_put(&ld->stream, a->data, a->lc) != 0) {
		sw = SW_UNKNOWN;
		goto abort;
	}
	ld->next_block++;
	if (a->p1 == 0x00)
		return SW_OK;
	sw = load_finish(r);
abort:
	buf_free(&ld->stream);
	memset(ld, 0, sizeof(*ld));
	return sw;
}

/* ---- DELETE (GPC §11.2, gp-reference §5) ----------------------------------- */

static uint16_t
delete_keys(struct vse_req *r, struct vse_entry *sd, int has_kid, uint8_t kid,
    int has_kvn, uint8_t kvn)
{
	struct vse_sess *s = &r->ch->s;
	struct vse_keyset *ks;
	size_t i, j, hit = 0;

	for (i = 0; i < sd->nkeysets; i++) {
		ks = &sd->keysets[i];
		if (has_kvn && ks->kvn != kvn)
			continue;
		/* The key set that protects this very session stays. */
		if (ks->kvn == s->kvn && (!has_kid || (kid >= 1 && kid <= 3)))
			return SW_CONDITIONS;
		if (!has_kid) {
			hit++;
			continue;
		}
		for (j = 0; j < ks->nkeys; j++)
			if (ks->keys[j].kid == kid)
				hit++;
	}
	if (hit == 0)
		return SW_REF_NOT_FOUND;
	for (i = 0; i < sd->nkeysets;) {
		ks = &sd->keysets[i];
		if (has_kvn && ks->kvn != kvn) {
			i++;
			continue;
		}
		if (has_kid) {
			for (j = 0; j < ks->nkeys;) {
				if (ks->keys[j].kid == kid) {
					ks->keys[j] = ks->keys[ks->nkeys - 1];
					wipe(&ks->keys[ks->nkeys - 1],
					    sizeof(ks->keys[0]));
					ks->nkeys--;
				} else
					j++;
			}
		}
		if (!has_kid || ks->nkeys == 0) {
			*ks = sd->keysets[sd->nkeysets - 1];
			wipe(&sd->keysets[sd->nkeysets - 1], sizeof(*ks));
			sd->nkeysets--;
		} else
			i++;
	}
	r->c->dirty = 1;
	return buf_put_u8(r->out, 0x00) == 0 ? SW_OK : SW_UNKNOWN;
}

static int
depends_on(const struct vse_entry *e, const struct vse_entry *t)
{
	if (vse_aid_eq(&e->sd, &t->aid))
		return 1;
	return t->kind == VSE_KIND_ELF && e->kind != VSE_KIND_ELF &&
	    vse_aid_eq(&e->elf, &t->aid);
}

uint16_t
vse_cmd_delete(struct vse_req *r)
{
	const struct vse_apdu *a = r->a;
	struct vse *c = r->c;
	struct vse_entry *actor = r->sel, *e;
	struct vse_aid aids[8];
	size_t naids = 0, i, j, token_off = 0, changed;
	const uint8_t *token = NULL, *v;
	size_t tlen = 0, l;
	uint8_t kid = 0, kvn = 0, *mark = NULL;
	int has_kid = 0, has_kvn = 0, mode = actor_mode(actor);
	struct rd rd;
	uint32_t t;
	struct buf rc_data;
	uint16_t sw;

	if (a->p1 != 0x00 || (a->p2 != 0x00 && a->p2 != 0x80))
		return SW_WRONG_P1P2;
	if (!card_open_for_changes(c))
		return SW_CONDITIONS;
	rd_init(&rd, a->data, a->lc);
	while (rd_left(&rd) > 0) {
		size_t at = rd.off;

		if (token != NULL || vse_tlv_next(&rd, &t, &v, &l) != 0)
			return SW_WRONG_DATA;
		switch (t) {
		case 0x4F:
			if (naids == ARRAY_LEN(aids) ||
			    vse_aid_set(&aids[naids], v, l) != 0)
				return SW_WRONG_DATA;
			naids++;
			break;
		case 0xD0:
			if (l != 1 || has_kid)
				return SW_WRONG_DATA;
			kid = v[0];
			has_kid = 1;
			break;
		case 0xD2:
			if (l != 1 || has_kvn)
				return SW_WRONG_DATA;
			kvn = v[0];
			has_kvn = 1;
			break;
		case 0x9E:		/* DM token, always last */
			token = v;
			tlen = l;
			token_off = at;
			break;
		default:
			return SW_WRONG_DATA;
		}
	}
	if (token == NULL)
		token_off = a->lc;
	/* Either objects (4F...) or keys (D0/D2) of the selected SD. */
	if ((naids == 0) == (has_kid == 0 && has_kvn == 0))
		return SW_WRONG_DATA;
	if (naids == 0)
		return delete_keys(r, actor, has_kid, kid, has_kvn, kvn);
	if (mode == MODE_NONE)
		return SW_SECURITY;
	if ((mark = calloc(c->nents ? c->nents : 1, 1)) == NULL)
		return SW_UNKNOWN;
	for (j = 0; j < naids; j++) {
		e = vse_reg_find(c, &aids[j]);
		if (e == NULL) {
			sw = SW_REF_NOT_FOUND;
			goto cleanup;
		}
		if (e->kind == VSE_KIND_ISD || e == actor) {
			sw = SW_CONDITIONS;
			goto cleanup;
		}
		if (!vse_reg_in_scope(c, actor, e) &&
		    !(actor->priv[1] & P2_GDELETE)) {
			sw = SW_SECURITY;
			goto cleanup;
		}
		for (i = 0; i < c->nents; i++)
			if (c->ents[i] == e)
				mark[i] = 1;
	}
	/* Related objects (P2 80): instances of a file, content of an SSD. */
	do {
		changed = 0;
		for (i = 0; i < c->nents; i++) {
			if (mark[i])
				continue;
			for (j = 0; j < c->nents; j++) {
				if (!mark[j] || !depends_on(c->ents[i], c->ents[j]))
					continue;
				if (a->p2 != 0x80) {
					sw = SW_CONDITIONS;
					goto cleanup;
				}
				mark[i] = 1;
				changed = 1;
				break;
			}
		}
	} while (changed);
	for (i = 0; i < c->nents; i++)
		if (mark[i] && (c->ents[i] == actor ||
		    c->ents[i]->kind == VSE_KIND_ISD)) {
			sw = SW_CONDITIONS;
			goto cleanup;
		}
	if (mode == MODE_DM &&
	    (sw = token_check(r, token, tlen, a->data, token_off)) != SW_OK)
		goto cleanup;
	for (i = c->nents; i-- > 0;)
		if (mark[i])
			vse_reg_remove(c, c->ents[i]);
	c->dirty = 1;
	buf_init(&rc_data);
	sw = SW_UNKNOWN;
	/* Delete receipt data: LV(AID) of each object named (gp-reference §6). */
	for (j = 0; j < naids; j++)
		if (vse_put_lv(&rc_data, aids[j].b, aids[j].len) != 0)
			break;
	if (j == naids &&
	    vse_receipt_append(r, mode == MODE_DM, rc_data.p, rc_data.len) == 0)
		sw = SW_OK;
	buf_free(&rc_data);
cleanup:
	free(mark);
	return sw;
}

/* ---- SET STATUS (GPC §11.10, gp-reference §5) ------------------------------ */

static uint16_t
set_card_state(struct vse_req *r, struct vse_entry *actor)
{
	struct vse_entry *isd = vse_reg_isd(r->c);
	uint8_t from = isd->lcs, to = r->a->p2;
	int ok = 0;

	if (to == VSE_CARD_TERMINATED)
		ok = from != VSE_CARD_TERMINATED &&
		    (actor == isd || (actor->priv[0] & P1_CARD_TERM));
	else if (to == VSE_CARD_LOCKED)
		ok = from == VSE_CARD_SECURED &&
		    (actor == isd || (actor->priv[0] & P1_CARD_LOCK));
	else if (actor == isd)
		/* Forward-only personalisation states; unlock only by the ISD. */
		ok = (from == VSE_CARD_OP_READY && (to == VSE_CARD_INITIALIZED ||
		    to == VSE_CARD_SECURED)) ||
		    (from == VSE_CARD_INITIALIZED && to == VSE_CARD_SECURED) ||
		    (from == VSE_CARD_LOCKED && to == VSE_CARD_SECURED);
	if (actor != isd && !(actor->priv[0] & (P1_CARD_LOCK | P1_CARD_TERM)))
		return SW_SECURITY;
	if (!ok)
		return SW_CONDITIONS;
	isd->lcs = to;
	r->c->dirty = 1;
	deselect_unselectable(r->c);
	return SW_OK;
}

static void
lock_entry(struct vse_entry *e)
{
	e->lcs_prev = e->lcs;
	/* GPC §5.3: SD LOCKED is 83; an application keeps its state with b8. */
	e->lcs = e->kind == VSE_KIND_SSD ? 0x83 : (uint8_t)(e->lcs | 0x80);
}

static void
unlock_entry(struct vse_entry *e)
{
	if (e->kind == VSE_KIND_SSD)
		e->lcs = (e->lcs_prev & 0x80) ? 0x07 : e->lcs_prev;
	else
		e->lcs &= 0x7F;
	if (e->lcs == 0)
		e->lcs = 0x07;
}

uint16_t
vse_cmd_set_status(struct vse_req *r)
{
	const struct vse_apdu *a = r->a;
	struct vse *c = r->c;
	struct vse_entry *actor = r->sel, *t, *parent, *e;
	struct vse_aid aid;
	int lock, global = (actor->priv[1] & P2_GLOCK) != 0;
	size_t i;

	if (a->p1 == 0x80)
		return set_card_state(r, actor);
	if (a->p1 != 0x40 && a->p1 != 0x60)
		return SW_WRONG_P1P2;
	if (!card_open_for_changes(c))
		return SW_CONDITIONS;
	if (vse_aid_set(&aid, a->data, a->lc) != 0)
		return SW_WRONG_DATA;
	t = vse_reg_find(c, &aid);
	if (t == NULL)
		return SW_REF_NOT_FOUND;
	if (t->kind == VSE_KIND_ISD || t->kind == VSE_KIND_ELF ||
	    (a->p1 == 0x60 && t->kind != VSE_KIND_SSD))
		return SW_WRONG_DATA;

	/* An SSD may move itself to PERSONALIZED (P2 0F). */
	if (a->p2 == 0x0F && t->kind == VSE_KIND_SSD && !vse_reg_entry_locked(t)) {
		if (t != actor && !vse_reg_in_scope(c, actor, t))
			return SW_SECURITY;
		if (t->lcs != 0x07)
			return SW_CONDITIONS;
		t->lcs = 0x0F;
		c->dirty = 1;
		return SW_OK;
	}
	if (t == actor)
		return SW_CONDITIONS;	/* an SD does not lock itself */
	if (actor_mode(actor) == MODE_NONE && !global)
		return SW_SECURITY;
	if (!vse_reg_in_scope(c, actor, t) && !global)
		return SW_SECURITY;
	/* Applications of a locked SD are out of reach until it is unlocked. */
	parent = vse_reg_parent(c, t);
	if (parent != NULL && vse_reg_locked(c, parent) &&
	    parent->kind != VSE_KIND_ISD)
		return SW_CONDITIONS;
	lock = (a->p2 & 0x80) != 0;
	if (lock == vse_reg_entry_locked(t))
		return SW_CONDITIONS;	/* already locked / not locked */
	if (lock)
		lock_entry(t);
	else
		unlock_entry(t);
	if (a->p1 == 0x60) {
		for (i = 0; i < c->nents; i++) {
			e = c->ents[i];
			if (e->kind != VSE_KIND_APP || !vse_aid_eq(&e->sd, &t->aid))
				continue;
			if (lock && !vse_reg_entry_locked(e))
				lock_entry(e);
			else if (!lock && vse_reg_entry_locked(e))
				unlock_entry(e);
		}
	}
	c->dirty = 1;
	deselect_unselectable(c);
	return SW_OK;
}
