/*
 * apdu.c - the virtual SE's command dispatcher: APDU parsing (ISO 7816-3
 * §12.1 short and extended cases), class byte and logical channel checks,
 * SCP03 command unwrapping and response wrapping, and one dispatch table
 * row per instruction. Runs in the card; the APDU is untrusted.
 */
#include <string.h>

#include "tests/sim/vse/vse_int.h"

/* Command classes (ISO 7816-4 §5.4.1): interindustry or proprietary (GP). */
#define CLS_ISO 0x01
#define CLS_GP  0x02

#define F_SD    0x01	/* an SD must be selected on the channel */
#define F_AUTH  0x02	/* with an SD: an authenticated session is needed */
#define F_NOSM  0x04	/* never carries secure messaging */
#define F_OWNSM 0x08	/* checks its own MAC (EXTERNAL AUTHENTICATE) */
#define F_APP   0x10	/* also served when an application is selected */
#define F_TERM  0x20	/* still served when the card is TERMINATED */

static const struct cmd_row {
	uint8_t ins;
	uint8_t classes;
	uint8_t flags;
	uint16_t (*fn)(struct vse_req *);
	const char *name;
} cmds[] = {
	{ 0xA4, CLS_ISO, F_NOSM | F_APP | F_TERM, vse_cmd_select, "SELECT" },
	{ 0x70, CLS_ISO, F_NOSM | F_APP, vse_cmd_manage_channel,
	    "MANAGE CHANNEL" },
	{ 0xCA, CLS_ISO | CLS_GP, F_SD | F_TERM, vse_cmd_get_data, "GET DATA" },
	{ 0x50, CLS_GP, F_SD | F_NOSM, vse_cmd_initialize_update,
	    "INITIALIZE UPDATE" },
	{ 0x82, CLS_GP, F_SD | F_OWNSM, vse_cmd_external_authenticate,
	    "EXTERNAL AUTHENTICATE" },
	{ 0xD8, CLS_GP, F_SD | F_AUTH, vse_cmd_put_key, "PUT KEY" },
	{ 0xE6, CLS_GP, F_SD | F_AUTH, vse_cmd_install, "INSTALL" },
	{ 0xE8, CLS_GP, F_SD | F_AUTH, vse_cmd_load, "LOAD" },
	{ 0xE4, CLS_GP, F_SD | F_AUTH, vse_cmd_delete, "DELETE" },
	{ 0xF0, CLS_GP, F_SD | F_AUTH, vse_cmd_set_status, "SET STATUS" },
	{ 0xF2, CLS_GP, F_SD | F_AUTH, vse_cmd_get_status, "GET STATUS" },
	{ 0xE2, CLS_GP, F_AUTH | F_APP, vse_cmd_store_data, "STORE DATA" },
};

/* Handlers may always read a->data (never NULL, even when Lc is 0). */
static const uint8_t no_data[1];

int
vse_apdu_parse(const uint8_t *p, size_t n, struct vse_apdu *a)
{
	size_t lc;

	memset(a, 0, sizeof(*a));
	a->data = no_data;
	if (n < 4)
		return ERR_TRUNC;
	a->cla = p[0];
	a->ins = p[1];
	a->p1 = p[2];
	a->p2 = p[3];
	if (n == 4)
		return 0;			/* case 1 */
	if (n == 5) {				/* case 2S */
		a->has_le = 1;
		a->le = p[4] ? p[4] : 256;
		return 0;
	}
	if (p[4] != 0) {			/* case 3S / 4S */
		lc = p[4];
		a->data = p + 5;
		a->lc = lc;
		if (n == 5 + lc)
			return 0;
		if (n == 6 + lc) {
			a->has_le = 1;
			a->le = p[5 + lc] ? p[5 + lc] : 256;
			return 0;
		}
		return ERR_PROTO;
	}
	/* Extended: 00 then two bytes. */
	if (n < 7)
		return ERR_PROTO;
	a->ext = 1;
	lc = ((size_t)p[5] << 8) | p[6];
	if (n == 7) {				/* case 2E */
		a->has_le = 1;
		a->le = lc ? lc : 65536;
		return 0;
	}
	if (lc == 0)
		return ERR_PROTO;
	a->data = p + 7;
	a->lc = lc;
	if (n == 7 + lc)
		return 0;			/* case 3E */
	if (n == 9 + lc) {			/* case 4E */
		a->has_le = 1;
		a->le = ((size_t)p[7 + lc] << 8) | p[8 + lc];
		if (a->le == 0)
			a->le = 65536;
		return 0;
	}
	return ERR_PROTO;
}

/* The command as it would have been sent without secure messaging. */
static int
plain_encode(const struct vse_apdu *a, struct buf *out)
{
	uint8_t hdr[4] = { a->cla, a->ins, a->p1, a->p2 };
	int ext = a->ext || a->lc > 255, rc;

	buf_reset(out);
	if ((rc = buf_put(out, hdr, 4)) != 0)
		return rc;
	if (a->lc > 0) {
		if (ext) {
			if ((rc = buf_put_u8(out, 0)) != 0 ||
			    (rc = buf_put_u16(out, (uint16_t)a->lc)) != 0)
				return rc;
		} else if ((rc = buf_put_u8(out, (uint8_t)a->lc)) != 0)
			return rc;
		if ((rc = buf_put(out, a->data, a->lc)) != 0)
			return rc;
	}
	if (a->has_le) {
		if (ext) {
			if (a->lc == 0 && (rc = buf_put_u8(out, 0)) != 0)
				return rc;
			rc = buf_put_u16(out, (uint16_t)(a->le & 0xFFFF));
		} else
			rc = buf_put_u8(out, (uint8_t)(a->le & 0xFF));
	}
	return rc;
}

/*
 * GP Amd D §6.2.4 (gp-reference §1.5/1.6): increment the counter, check the
 * C-MAC over chain || CLA' INS P1 P2 Lc || data, then decrypt. CLA' as sent
 * is the standard; clearing the channel bits (pySim) is accepted too.
 */
static int
unwrap(struct vse_sess *s, const struct vse_apdu *a, struct buf *plain,
    struct vse_apdu *pa)
{
	uint8_t hdr[7], mac[16];
	size_t hlen, body;
	const uint8_t *rx;
	int rc, good;

	vse_scp03_ctr_inc(s->ctr);
	if (a->lc < s->blen)
		return ERR_AUTH;
	body = a->lc - s->blen;
	rx = a->data + body;
	hdr[0] = a->cla;
	hdr[1] = a->ins;
	hdr[2] = a->p1;
	hdr[3] = a->p2;
	if (a->ext) {
		hdr[4] = 0;
		hdr[5] = (uint8_t)(a->lc >> 8);
		hdr[6] = (uint8_t)a->lc;
		hlen = 7;
	} else {
		hdr[4] = (uint8_t)a->lc;
		hlen = 5;
	}
	if ((rc = vse_scp03_cmac(s, hdr, hlen, a->data, body, mac)) != 0)
		return rc;
	good = ct_equal(mac, rx, s->blen);
	if (!good && (a->cla & 0x03) != 0) {
		hdr[0] = (uint8_t)((a->cla & 0xF0) | 0x04);
		if ((rc = vse_scp03_cmac(s, hdr, hlen, a->data, body, mac)) != 0)
			return rc;
		good = ct_equal(mac, rx, s->blen);
	}
	if (!good) {
		wipe(mac, sizeof(mac));
		return ERR_AUTH;
	}
	memcpy(s->chain, mac, 16);
	wipe(mac, sizeof(mac));
	buf_reset(plain);
	if ((s->sl & VSE_SL_CDEC) && body > 0) {
		if ((rc = vse_scp03_decrypt(s, a->data, body, plain)) != 0)
			return ERR_AUTH;
	} else if ((rc = buf_put(plain, a->data, body)) != 0)
		return rc;
	*pa = *a;
	pa->cla = (uint8_t)(a->cla & ~0x04);
	pa->data = plain->len > 0 ? plain->p : no_data;
	pa->lc = plain->len;
	pa->ext = a->ext;
	return 0;
}

static size_t
rsp_room(const struct vse_sess *s, int wrapped)
{
	size_t avail = VSE_RSP_DATA_MAX;

	if (!wrapped || !(s->sl & VSE_SL_RMAC))
		return avail;
	avail -= s->blen;
	/* R-ENC pads to the next full block (at least one byte). */
	if (s->sl & VSE_SL_RENC)
		avail = (avail / 16) * 16 - 1;
	return avail;
}

static uint16_t
dispatch(struct vse *c, const uint8_t *p, size_t n, struct buf *out)
{
	struct vse_apdu a, pa;
	struct vse_req r;
	struct buf plain, data;
	const struct cmd_row *row = NULL;
	struct vse_chan *ch;
	struct vse_entry *isd = vse_reg_isd(c);
	uint16_t sw;
	int smbit, cls, is_sd, rc;
	size_t i;

	buf_init(&plain);
	buf_init(&data);
	if (vse_apdu_parse(p, n, &a) != 0)
		return SW_WRONG_LENGTH;
	if (a.cla == 0xFF)
		return SW_CLA_NOT_SUPP;
	/* Further interindustry classes address channels 4-19: not offered. */
	if (a.cla & 0x40)
		return SW_CHAN_NOT_SUPP;
	if (a.cla & 0x20)
		return SW_CLA_NOT_SUPP;
	if (a.cla & 0x10)
		return SW_CHAIN_NOT_SUPP;
	cls = (a.cla & 0x80) ? CLS_GP : CLS_ISO;
	ch = &c->ch[a.cla & 0x03];
	if (!ch->open)
		return SW_CHAN_NOT_SUPP;
	smbit = (a.cla & 0x0C) == 0x04;
	if ((a.cla & 0x08) || (smbit && cls == CLS_ISO))
		return SW_SM_NOT_SUPP;
	for (i = 0; i < ARRAY_LEN(cmds); i++)
		if (cmds[i].ins == a.ins)
			row = &cmds[i];
	if (row == NULL)
		return SW_INS_NOT_SUPP;
	if (!(row->classes & cls))
		return SW_CLA_NOT_SUPP;
	if (isd != NULL && isd->lcs == VSE_CARD_TERMINATED &&
	    !(row->flags & F_TERM))
		return SW_CONDITIONS;

	memset(&r, 0, sizeof(r));
	r.c = c;
	r.chn = a.cla & 0x03;
	r.ch = ch;
	r.out = out;
	r.sel = vse_reg_find(c, &ch->sel);
	is_sd = vse_reg_is_sd(r.sel);
	if (!is_sd && !(row->flags & F_APP))
		return SW_INS_NOT_SUPP;
	if ((row->flags & F_NOSM) && smbit)
		return SW_CLA_NOT_SUPP;
	if ((row->flags & F_OWNSM) && !smbit)
		return SW_CLA_NOT_SUPP;
	/* Amd D §6.2.1: anything but EXTERNAL AUTHENTICATE aborts initiation. */
	if (ch->s.state == VSE_SESS_INIT && a.ins != 0x82)
		vse_sess_clear(&ch->s);

	pa = a;
	if (smbit && !(row->flags & F_OWNSM)) {
		if (!is_sd || ch->s.state != VSE_SESS_AUTH ||
		    !vse_aid_eq(&ch->s.sd, &r.sel->aid) ||
		    !(ch->s.sl & VSE_SL_CMAC)) {
			vse_sess_clear(&ch->s);
			sw = SW_SECURITY;
			goto cleanup;
		}
		if ((rc = unwrap(&ch->s, &a, &plain, &pa)) != 0) {
			/* GPC §10.8: a secure messaging error ends the session. */
			vse_sess_clear(&ch->s);
			sw = rc == ERR_AUTH ? SW_SECURITY : SW_UNKNOWN;
			goto cleanup;
		}
		r.wrapped = 1;
	} else if (is_sd && (row->flags & F_AUTH) &&
	    ch->s.state == VSE_SESS_AUTH && (ch->s.sl & VSE_SL_CMAC)) {
		/* The level demands C-MAC: an unprotected command ends it. */
		vse_sess_clear(&ch->s);
		sw = SW_SECURITY;
		goto cleanup;
	}
	if (is_sd && (row->flags & F_AUTH) &&
	    (ch->s.state != VSE_SESS_AUTH || !vse_aid_eq(&ch->s.sd, &r.sel->aid))) {
		sw = SW_SECURITY;
		goto cleanup;
	}
	if (plain_encode(&pa, &c->last_plain) != 0) {
		sw = SW_UNKNOWN;
		goto cleanup;
	}
	r.a = &pa;
	r.out = &data;
	r.out_max = rsp_room(&ch->s, r.wrapped);
	sw = row->fn(&r);
	if (data.len > r.out_max) {
		sw = SW_UNKNOWN;
		buf_reset(&data);
	}
	if (r.wrapped && ch->s.state == VSE_SESS_AUTH) {
		size_t pad = c->renc_pad;

		c->renc_pad = 0;
		if (vse_scp03_wrap_rsp(&ch->s, data.p, data.len, sw, pad,
		    out) != 0) {
			buf_reset(out);
			sw = SW_UNKNOWN;
		}
	} else if ((sw == SW_OK || (sw >> 8) == 0x62 || (sw >> 8) == 0x63) &&
	    buf_put(out, data.p, data.len) != 0) {
		buf_reset(out);
		sw = SW_UNKNOWN;
	}
cleanup:
	buf_free(&plain);
	buf_free(&data);
	return sw;
}

int
vse_transmit(struct vse *c, const uint8_t *apdu, size_t n, uint8_t *rsp,
    size_t cap, size_t *rsplen)
{
	struct buf out;
	uint16_t sw;

	if (c == NULL || (apdu == NULL && n > 0) || rsp == NULL ||
	    rsplen == NULL || cap < VSE_RSP_MAX)
		return ERR_INVAL;
	buf_init(&out);
	sw = dispatch(c, apdu, n, &out);
	if (c->dirty && c->autosave && c->path != NULL && vse_save(c) != 0) {
		/* The change could not be made durable: say so like a card. */
		buf_reset(&out);
		sw = SW_MEMORY_FAILURE;
	}
	if (out.len > VSE_RSP_MAX - 2) {
		buf_reset(&out);
		sw = SW_UNKNOWN;
	}
	if (out.len > 0)
		memcpy(rsp, out.p, out.len);
	rsp[out.len] = (uint8_t)(sw >> 8);
	rsp[out.len + 1] = (uint8_t)sw;
	*rsplen = out.len + 2;
	buf_free(&out);
	return 0;
}

const char *
vse_sw_str(uint16_t sw)
{
	switch (sw) {
	case SW_OK:             return "OK";
	case SW_MORE_DATA:      return "MORE_DATA";
	case SW_AUTH_FAILED:    return "AUTHENTICATION_FAILED";
	case SW_MEMORY_FAILURE: return "MEMORY_FAILURE";
	case SW_WRONG_LENGTH:   return "WRONG_LENGTH";
	case SW_CHAN_NOT_SUPP:  return "LOGICAL_CHANNEL_NOT_SUPPORTED";
	case SW_SM_NOT_SUPP:    return "SECURE_MESSAGING_NOT_SUPPORTED";
	case SW_CHAIN_NOT_SUPP: return "COMMAND_CHAINING_NOT_SUPPORTED";
	case SW_SECURITY:       return "SECURITY_STATUS_NOT_SATISFIED";
	case SW_CONDITIONS:     return "CONDITIONS_NOT_SATISFIED";
	case SW_WRONG_DATA:     return "WRONG_DATA";
	case SW_FUNC_NOT_SUPP:  return "FUNCTION_NOT_SUPPORTED";
	case SW_NOT_FOUND:      return "APPLICATION_NOT_FOUND";
	case SW_NO_MEMORY:      return "NOT_ENOUGH_MEMORY";
	case SW_WRONG_P1P2:     return "WRONG_P1P2";
	case SW_REF_NOT_FOUND:  return "REFERENCED_DATA_NOT_FOUND";
	case SW_INS_NOT_SUPP:   return "INS_NOT_SUPPORTED";
	case SW_CLA_NOT_SUPP:   return "CLA_NOT_SUPPORTED";
	case SW_UNKNOWN:        return "UNKNOWN_ERROR";
	case SW_ALG_NOT_SUPP:   return "ALGORITHM_NOT_SUPPORTED";
	case SW_BAD_KCV:        return "INVALID_KEY_CHECK_VALUE";
	}
	return "?";
}
