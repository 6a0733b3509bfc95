/*
 * cmd.c - builders for GlobalPlatform card content management commands
 * (SELECT, GET STATUS, GET DATA, SET STATUS, DELETE, INSTALL, LOAD,
 * STORE DATA, PUT KEY) as plain APDUs, plus the PUT KEY response check.
 * Runs in tsmd; key material only passes as backend refs (PUT KEY).
 */
#include <string.h>

#include <openssl/evp.h>

#include "tsm/gp/gp_int.h"

#define CLA_GP   0x80
#define INS_SELECT       0xA4
#define INS_GET_STATUS   0xF2
#define INS_GET_DATA     0xCA
#define INS_SET_STATUS   0xF0
#define INS_DELETE       0xE4
#define INS_INSTALL      0xE6
#define INS_LOAD         0xE8
#define INS_STORE_DATA   0xE2
#define INS_PUT_KEY      0xD8

static int
aid_check(const char *what, const uint8_t *aid, size_t n, int may_be_empty,
    struct gp_err *err)
{
	if (n == 0 && may_be_empty)
		return 0;
	if (n > 0 && aid == NULL)
		return gp_fail(err, ERR_INVAL, "%s: length %zu without bytes",
		    what, n);
	if (n < GP_AID_MIN || n > GP_AID_MAX)
		return gp_fail(err, ERR_INVAL, "%s: AID of %zu bytes (5..16 "
		    "expected)", what, n);
	return 0;
}

/* Over-long data is refused before anything is built. */
static int
data_fits(const char *what, size_t n, struct gp_err *err)
{
	if (n > 65535)
		return gp_fail(err, ERR_TOOBIG, "%s: %zu bytes of command data",
		    what, n);
	return 0;
}

int
gp_select_build(const uint8_t *aid, size_t aid_len, struct buf *out,
    struct gp_err *err)
{
	if (aid_len > GP_AID_MAX || (aid_len > 0 && aid == NULL))
		return gp_fail(err, ERR_INVAL, "SELECT: AID of %zu bytes", aid_len);
	/* ISO/IEC 7816-4 §11.1.1: P1 04 select by DF name, P2 00 first. */
	return gp_apdu_build(out, 0x00, INS_SELECT, 0x04, 0x00, aid, aid_len,
	    256, err);
}

int
gp_get_status_build(uint8_t p1, unsigned flags, const uint8_t *aid,
    size_t aid_len, const uint8_t *tags, size_t tags_len, struct buf *out,
    struct gp_err *err)
{
	struct buf d;
	uint8_t p2;
	int rc;

	if (p1 != GP_GS_ISD && p1 != GP_GS_APPS && p1 != GP_GS_ELFS &&
	    p1 != GP_GS_ELF_MODULES)
		return gp_fail(err, ERR_INVAL, "GET STATUS: P1 %02X not one of "
		    "80/40/20/10", p1);
	if (aid_len > GP_AID_MAX || (aid_len > 0 && aid == NULL))
		return gp_fail(err, ERR_INVAL, "GET STATUS: search AID of %zu "
		    "bytes", aid_len);
	if (tags_len > 0 && (tags == NULL || (flags & GP_GS_LEGACY)))
		return gp_fail(err, ERR_INVAL, "GET STATUS: a tag list needs the "
		    "TLV format");
	/* GPC §11.4.2: P2 b2 = TLV format, b1 = next occurrence. */
	p2 = (uint8_t)((flags & GP_GS_LEGACY) ? 0x00 : 0x02);
	if (flags & GP_GS_NEXT)
		p2 |= 0x01;
	buf_init(&d);
	if ((rc = gp_tlv_put(&d, 0x4F, aid, aid_len)) != 0 ||
	    (tags_len > 0 && (rc = gp_tlv_put(&d, 0x5C, tags, tags_len)) != 0)) {
		rc = gp_fail(err, rc, "GET STATUS: %s", err_str(rc));
		goto out;
	}
	rc = gp_apdu_build(out, CLA_GP, INS_GET_STATUS, p1, p2, d.p, d.len, 256,
	    err);
out:
	buf_free(&d);
	return rc;
}

int
gp_get_data_build(uint8_t cla, uint16_t tag, struct buf *out,
    struct gp_err *err)
{
	if (cla != 0x00 && cla != CLA_GP)
		return gp_fail(err, ERR_INVAL, "GET DATA: CLA %02X", cla);
	return gp_apdu_build(out, cla, INS_GET_DATA, (uint8_t)(tag >> 8),
	    (uint8_t)tag, NULL, 0, 256, err);
}

int
gp_set_status_build(uint8_t p1, uint8_t p2, const uint8_t *aid,
    size_t aid_len, struct buf *out, struct gp_err *err)
{
	int rc;

	if (p1 != GP_SS_ISD && p1 != GP_SS_APP && p1 != GP_SS_SD_APPS)
		return gp_fail(err, ERR_INVAL, "SET STATUS: P1 %02X not one of "
		    "80/40/60", p1);
	if ((rc = aid_check("SET STATUS", aid, aid_len, p1 == GP_SS_ISD,
	    err)) != 0)
		return rc;
	return gp_apdu_build(out, CLA_GP, INS_SET_STATUS, p1, p2, aid, aid_len,
	    0, err);
}

int
gp_dm_token_data(uint8_t p1, uint8_t p2, const uint8_t *data, size_t n,
    struct buf *out, struct gp_err *err)
{
	int rc;

	/* gpref §6: P1 P2 Lc data, Lc one byte or 00 hh ll over 255. */
	if ((rc = data_fits("token data", n, err)) != 0)
		return rc;
	buf_reset(out);
	if ((rc = buf_put_u8(out, p1)) != 0 || (rc = buf_put_u8(out, p2)) != 0)
		goto out;
	if (n <= 255)
		rc = buf_put_u8(out, (uint8_t)n);
	else if ((rc = buf_put_u8(out, 0)) == 0)
		rc = buf_put_u16(out, (uint16_t)n);
	if (rc == 0)
		rc = buf_put(out, data, n);
out:
	if (rc != 0)
		return gp_fail(err, rc, "token data: %s", err_str(rc));
	return 0;
}

int
gp_delete_build(const struct gp_bytes *aids, size_t naids, int related,
    const struct gp_bytes *token, struct buf *out, struct buf *token_data,
    struct gp_err *err)
{
	struct buf d;
	size_t i, body;
	uint8_t p2 = related ? 0x80 : 0x00;
	int rc;

	if (naids == 0)
		return gp_fail(err, ERR_INVAL, "DELETE: no AID");
	for (i = 0; i < naids; i++)
		if ((rc = aid_check("DELETE", aids[i].p, aids[i].n, 0, err)) != 0)
			return rc;
	if (token != NULL && token->n > 0 && token->p == NULL)
		return gp_fail(err, ERR_INVAL, "DELETE: token length without bytes");
	buf_init(&d);
	for (i = 0; i < naids; i++)
		if ((rc = gp_tlv_put(&d, 0x4F, aids[i].p, aids[i].n)) != 0)
			goto fail;
	body = d.len;
	if (token_data != NULL &&
	    (rc = gp_dm_token_data(0x00, p2, d.p, body, token_data, err)) != 0)
		goto out;
	/* gpref §6: the DELETE token travels as a 9E TLV. */
	if (token != NULL && token->n > 0 &&
	    (rc = gp_tlv_put(&d, 0x9E, token->p, token->n)) != 0)
		goto fail;
	if ((rc = data_fits("DELETE", d.len, err)) != 0)
		goto out;
	rc = gp_apdu_build(out, CLA_GP, INS_DELETE, 0x00, p2, d.p, d.len, 256,
	    err);
	goto out;
fail:
	rc = gp_fail(err, rc, "DELETE: %s", err_str(rc));
out:
	buf_free(&d);
	return rc;
}

int
gp_delete_key_build(uint8_t kid, uint8_t kvn, struct buf *out,
    struct gp_err *err)
{
	uint8_t d[6];
	size_t n = 0;

	if (kid == 0 && kvn == 0)
		return gp_fail(err, ERR_INVAL, "DELETE key: neither KID nor KVN");
	if (kid != 0) {
		d[n++] = 0xD0;
		d[n++] = 1;
		d[n++] = kid;
	}
	if (kvn != 0) {
		d[n++] = 0xD2;
		d[n++] = 1;
		d[n++] = kvn;
	}
	return gp_apdu_build(out, CLA_GP, INS_DELETE, 0x00, 0x00, d, n, 256, err);
}

/* ---- INSTALL --------------------------------------------------------- */

static int
lv(struct buf *d, const struct gp_bytes *b)
{
	return gp_lv_put(d, b->p, b->n);
}

static int
priv_check_len(const struct gp_bytes *priv, int may_be_empty,
    struct gp_err *err)
{
	if ((priv->n == 0 && may_be_empty) || priv->n == 1 || priv->n == 3)
		return priv->n > 0 && priv->p == NULL ?
		    gp_fail(err, ERR_INVAL, "INSTALL: privileges without bytes") : 0;
	return gp_fail(err, ERR_INVAL, "INSTALL: privileges of %zu bytes (1 or "
	    "3 expected)", priv->n);
}

/* Install parameters must hold a well-formed C9 (GPC §11.5.2.3). */
static int
install_params_check(const struct gp_bytes *pa, struct gp_err *err)
{
	struct gp_tlv t;
	int rc;

	if (pa->n == 0)
		return 0;
	if (pa->p == NULL)
		return gp_fail(err, ERR_INVAL, "INSTALL: parameters without bytes");
	if ((rc = gp_tlv_check(pa->p, pa->n, GP_TLV_MAX_DEPTH, err)) != 0)
		return rc;
	if ((rc = gp_tlv_find(pa->p, pa->n, 0xC9, &t, err)) != 0)
		return gp_fail(err, ERR_INVAL, "INSTALL: parameters lack C9");
	return 0;
}

static int
install_body(const struct gp_install *in, struct buf *d, struct gp_err *err)
{
	static const uint8_t c9_empty[] = { 0xC9, 0x00 };
	struct gp_bytes empty = { NULL, 0 };
	struct gp_bytes params = in->params;
	int rc;

	switch (in->kind) {
	case GP_INSTALL_FOR_LOAD:
		if ((rc = aid_check("INSTALL for load: ELF", in->elf_aid.p,
		    in->elf_aid.n, 0, err)) != 0 ||
		    (rc = aid_check("INSTALL for load: SD", in->sd_aid.p,
		    in->sd_aid.n, 1, err)) != 0)
			return rc;
		/* PYSIM rule (gpref §6): a DM token needs the LFDB hash. */
		if (in->token.n > 0 && in->hash.n == 0)
			return gp_fail(err, ERR_INVAL, "INSTALL for load: a token "
			    "needs the load file data block hash");
		if (in->hash.n != 0 && in->hash.n != 20 && in->hash.n != 32 &&
		    in->hash.n != 48 && in->hash.n != 64)
			return gp_fail(err, ERR_INVAL, "INSTALL for load: hash of "
			    "%zu bytes", in->hash.n);
		if (in->params.n > 0 && (rc = gp_tlv_check(in->params.p,
		    in->params.n, GP_TLV_MAX_DEPTH, err)) != 0)
			return rc;
		if ((rc = lv(d, &in->elf_aid)) || (rc = lv(d, &in->sd_aid)) ||
		    (rc = lv(d, &in->hash)) || (rc = lv(d, &in->params)))
			return gp_fail(err, rc, "INSTALL: %s", err_str(rc));
		return 0;
	case GP_INSTALL_FOR_INSTALL:
	case GP_INSTALL_AND_SELECTABLE:
		if ((rc = aid_check("INSTALL for install: ELF", in->elf_aid.p,
		    in->elf_aid.n, 0, err)) != 0 ||
		    (rc = aid_check("INSTALL for install: module",
		    in->module_aid.p, in->module_aid.n, 0, err)) != 0 ||
		    (rc = aid_check("INSTALL for install: application",
		    in->app_aid.p, in->app_aid.n, 0, err)) != 0 ||
		    (rc = priv_check_len(&in->priv, 0, err)) != 0 ||
		    (rc = install_params_check(&in->params, err)) != 0)
			return rc;
		/* gpref §5: C9 is mandatory even when empty. */
		if (params.n == 0) {
			params.p = c9_empty;
			params.n = sizeof(c9_empty);
		}
		if ((rc = lv(d, &in->elf_aid)) || (rc = lv(d, &in->module_aid)) ||
		    (rc = lv(d, &in->app_aid)) || (rc = lv(d, &in->priv)) ||
		    (rc = lv(d, &params)))
			return gp_fail(err, rc, "INSTALL: %s", err_str(rc));
		return 0;
	case GP_INSTALL_MAKE_SELECTABLE:
		if ((rc = aid_check("INSTALL make selectable", in->app_aid.p,
		    in->app_aid.n, 0, err)) != 0 ||
		    (rc = priv_check_len(&in->priv, 1, err)) != 0 ||
		    (rc = install_params_check(&in->params, err)) != 0)
			return rc;
		if ((rc = lv(d, &empty)) || (rc = lv(d, &empty)) ||
		    (rc = lv(d, &in->app_aid)) || (rc = lv(d, &in->priv)) ||
		    (rc = lv(d, &in->params)))
			return gp_fail(err, rc, "INSTALL: %s", err_str(rc));
		return 0;
	case GP_INSTALL_EXTRADITION:
		if ((rc = aid_check("INSTALL for extradition: SD", in->sd_aid.p,
		    in->sd_aid.n, 0, err)) != 0 ||
		    (rc = aid_check("INSTALL for extradition: application/ELF",
		    in->app_aid.p, in->app_aid.n, 0, err)) != 0)
			return rc;
		if (in->params.n > 0 && (rc = gp_tlv_check(in->params.p,
		    in->params.n, GP_TLV_MAX_DEPTH, err)) != 0)
			return rc;
		if ((rc = lv(d, &in->sd_aid)) || (rc = lv(d, &empty)) ||
		    (rc = lv(d, &in->app_aid)) || (rc = lv(d, &empty)) ||
		    (rc = lv(d, &in->params)))
			return gp_fail(err, rc, "INSTALL: %s", err_str(rc));
		return 0;
	case GP_INSTALL_PERSONALIZATION:
		if ((rc = aid_check("INSTALL for personalization",
		    in->app_aid.p, in->app_aid.n, 0, err)) != 0)
			return rc;
		if (in->token.n > 0)
			return gp_fail(err, ERR_INVAL, "INSTALL for personalization "
			    "takes no token");
		/* 00 00 app 00 00, and the (empty) token LV after it */
		if ((rc = lv(d, &empty)) || (rc = lv(d, &empty)) ||
		    (rc = lv(d, &in->app_aid)) || (rc = lv(d, &empty)) ||
		    (rc = lv(d, &empty)))
			return gp_fail(err, rc, "INSTALL: %s", err_str(rc));
		return 0;
	case GP_INSTALL_REGISTRY_UPDATE:
		if ((rc = aid_check("INSTALL for registry update: SD",
		    in->sd_aid.p, in->sd_aid.n, 1, err)) != 0 ||
		    (rc = aid_check("INSTALL for registry update: application",
		    in->app_aid.p, in->app_aid.n, 1, err)) != 0 ||
		    (rc = priv_check_len(&in->priv, 1, err)) != 0)
			return rc;
		if (in->params.n > 0 && (rc = gp_tlv_check(in->params.p,
		    in->params.n, GP_TLV_MAX_DEPTH, err)) != 0)
			return rc;
		if ((rc = lv(d, &in->sd_aid)) || (rc = lv(d, &empty)) ||
		    (rc = lv(d, &in->app_aid)) || (rc = lv(d, &in->priv)) ||
		    (rc = lv(d, &in->params)))
			return gp_fail(err, rc, "INSTALL: %s", err_str(rc));
		return 0;
	}
	return gp_fail(err, ERR_INVAL, "INSTALL: unknown kind %02X", in->kind);
}

int
gp_install_build(const struct gp_install *in, struct buf *out,
    struct buf *token_data, struct gp_err *err)
{
	struct buf d;
	uint8_t p1 = (uint8_t)(in->kind | (in->more ? 0x80 : 0x00));
	int rc;

	if (in->token.n > 0 && in->token.p == NULL)
		return gp_fail(err, ERR_INVAL, "INSTALL: token length without bytes");
	buf_init(&d);
	if ((rc = install_body(in, &d, err)) != 0)
		goto out;
	if (token_data != NULL &&
	    (rc = gp_dm_token_data(p1, 0x00, d.p, d.len, token_data, err)) != 0)
		goto out;
	if ((rc = gp_lv_put(&d, in->token.p, in->token.n)) != 0) {
		rc = gp_fail(err, rc, "INSTALL: %s", err_str(rc));
		goto out;
	}
	if ((rc = data_fits("INSTALL", d.len, err)) != 0)
		goto out;
	rc = gp_apdu_build(out, CLA_GP, INS_INSTALL, p1, 0x00, d.p, d.len, 256,
	    err);
out:
	buf_free(&d);
	return rc;
}

static int
quota_put(struct buf *b, uint32_t tag, uint32_t v)
{
	uint8_t x[4] = { (uint8_t)(v >> 24), (uint8_t)(v >> 16),
	    (uint8_t)(v >> 8), (uint8_t)v };

	/* 2 bytes when it fits, else 4 (gpref §5). */
	return v <= 0xffff ? gp_tlv_put(b, tag, x + 2, 2) :
	    gp_tlv_put(b, tag, x, 4);
}

static int
opt_tlv(struct buf *b, uint32_t tag, const struct gp_bytes *v)
{
	if (v->n == 0)
		return 0;
	if (v->p == NULL)
		return ERR_INVAL;
	return gp_tlv_put(b, tag, v->p, v->n);
}

int
gp_install_params_build(const struct gp_install_params *p, struct buf *out,
    struct gp_err *err)
{
	const struct gp_sd_params *sd = p->sd;
	size_t mark, i;
	int rc;

	buf_reset(out);
	if ((rc = gp_tlv_open(out, 0xC9, &mark)) != 0)
		goto fail;
	if (sd != NULL) {
		if (sd->nscp > ARRAY_LEN(sd->scp))
			return gp_fail(err, ERR_INVAL, "SD parameters: %zu SCPs",
			    sd->nscp);
		for (i = 0; i < sd->nscp; i++) {
			uint8_t v[2] = { sd->scp[i].scp, sd->scp[i].i };
			if ((rc = gp_tlv_put(out, 0x81, v, 2)) != 0)
				goto fail;
		}
		if ((rc = opt_tlv(out, 0x82, &sd->accept_extradition_in)) != 0 ||
		    (rc = opt_tlv(out, 0x83, &sd->accept_delete)) != 0 ||
		    (sd->personalized &&
		    (rc = gp_tlv_put(out, 0x84, NULL, 0)) != 0) ||
		    (rc = opt_tlv(out, 0x86, &sd->casd_capability)) != 0 ||
		    (rc = opt_tlv(out, 0x87, &sd->accept_extradition_out)) != 0)
			goto fail;
	} else if (p->app_specific.n > 0) {
		if (p->app_specific.p == NULL) {
			rc = ERR_INVAL;
			goto fail;
		}
		if ((rc = buf_put(out, p->app_specific.p, p->app_specific.n)) != 0)
			goto fail;
	}
	if ((rc = gp_tlv_close(out, mark)) != 0)
		goto fail;
	if (p->has_volatile_quota || p->has_nv_quota || p->extra_ef.n > 0) {
		if ((rc = gp_tlv_open(out, 0xEF, &mark)) != 0 ||
		    (p->has_volatile_quota &&
		    (rc = quota_put(out, 0xC7, p->volatile_quota)) != 0) ||
		    (p->has_nv_quota &&
		    (rc = quota_put(out, 0xC8, p->nv_quota)) != 0))
			goto fail;
		if (p->extra_ef.n > 0) {
			if (p->extra_ef.p == NULL ||
			    gp_tlv_check(p->extra_ef.p, p->extra_ef.n,
			    GP_TLV_MAX_DEPTH, NULL) != 0) {
				rc = ERR_INVAL;
				goto fail;
			}
			if ((rc = buf_put(out, p->extra_ef.p, p->extra_ef.n)) != 0)
				goto fail;
		}
		if ((rc = gp_tlv_close(out, mark)) != 0)
			goto fail;
	}
	return 0;
fail:
	return gp_fail(err, rc, "install parameters: %s", err_str(rc));
}

int
gp_lfdb_hash(enum gp_hash_alg alg, const uint8_t *lfdb, size_t n,
    uint8_t out[32], size_t *outlen, struct gp_err *err)
{
	const EVP_MD *md;
	unsigned int len = 0;

	if (alg == GP_HASH_SHA1)
		md = EVP_sha1();
	else if (alg == GP_HASH_SHA256)
		md = EVP_sha256();
	else
		return gp_fail(err, ERR_INVAL, "LFDB hash: unknown algorithm %d",
		    (int)alg);
	if (n > 0 && lfdb == NULL)
		return gp_fail(err, ERR_INVAL, "LFDB hash: no data");
	if (EVP_Digest(lfdb, n, out, &len, md, NULL) != 1)
		return gp_fail(err, ERR_CRYPTO, "LFDB hash: EVP_Digest failed");
	*outlen = len;
	return 0;
}

/* ---- LOAD and STORE DATA --------------------------------------------- */

int
gp_load_stream_build(const uint8_t *lfdb, size_t n,
    const struct gp_dap_block *daps, size_t ndaps, struct buf *stream,
    struct gp_err *err)
{
	size_t i, mark;
	int rc;

	buf_reset(stream);
	if (n > 0xffffff || (n > 0 && lfdb == NULL))
		return gp_fail(err, ERR_TOOBIG, "LOAD: load file of %zu bytes", n);
	for (i = 0; i < ndaps; i++) {
		if ((rc = aid_check("LOAD: DAP block SD", daps[i].sd_aid.p,
		    daps[i].sd_aid.n, 0, err)) != 0)
			return rc;
		if (daps[i].signature.n == 0 || daps[i].signature.p == NULL)
			return gp_fail(err, ERR_INVAL, "LOAD: DAP block %zu has no "
			    "signature", i);
		if ((rc = gp_tlv_open(stream, 0xE2, &mark)) != 0 ||
		    (rc = gp_tlv_put(stream, 0x4F, daps[i].sd_aid.p,
		    daps[i].sd_aid.n)) != 0 ||
		    (rc = gp_tlv_put(stream, 0xC3, daps[i].signature.p,
		    daps[i].signature.n)) != 0 ||
		    (rc = gp_tlv_close(stream, mark)) != 0)
			goto fail;
	}
	if ((rc = gp_tlv_put(stream, 0xC4, lfdb, n)) != 0)
		goto fail;
	return 0;
fail:
	return gp_fail(err, rc, "LOAD stream: %s", err_str(rc));
}

size_t
gp_block_size(uint8_t sl, int s16)
{
	size_t mac = 0, room;

	/* gpref §1.4: any protection implies C-MAC; R-ENC implies C-DEC. */
	if (sl & (GP_SL_CMAC | GP_SL_CDEC | GP_SL_RMAC | GP_SL_RENC))
		mac = s16 ? 16 : 8;
	room = 255 - mac;
	if (sl & (GP_SL_CDEC | GP_SL_RENC))
		/* gpref §1.6: padding always adds 1..16 bytes. */
		return room / 16 * 16 - 1;
	return room;
}

size_t
gp_block_count(size_t stream_len, size_t block_size)
{
	if (block_size == 0)
		return 0;
	return (stream_len + block_size - 1) / block_size;
}

static int
block_slice(const char *what, size_t n, size_t block_size, size_t block_no,
    size_t *off, size_t *len, int *last, struct gp_err *err)
{
	size_t count = gp_block_count(n, block_size);

	if (block_size == 0 || block_size > 255)
		return gp_fail(err, ERR_INVAL, "%s: block size %zu", what,
		    block_size);
	if (count > 256)
		return gp_fail(err, ERR_LIMIT, "%s: %zu bytes need %zu blocks, "
		    "more than 256", what, n, count);
	if (block_no >= count)
		return gp_fail(err, ERR_INVAL, "%s: block %zu of %zu", what,
		    block_no, count);
	*off = block_no * block_size;
	*len = n - *off < block_size ? n - *off : block_size;
	*last = block_no + 1 == count;
	return 0;
}

int
gp_load_build(const uint8_t *stream, size_t n, size_t block_size,
    size_t block_no, struct buf *out, int *last, struct gp_err *err)
{
	size_t off, len;
	int rc;

	if ((rc = block_slice("LOAD", n, block_size, block_no, &off, &len,
	    last, err)) != 0)
		return rc;
	/* gpref §5: P1 80 on the last block, P2 the block number. */
	return gp_apdu_build(out, CLA_GP, INS_LOAD, *last ? 0x80 : 0x00,
	    (uint8_t)block_no, stream + off, len, 256, err);
}

int
gp_store_data_build(uint8_t p1, uint8_t block_no, const uint8_t *data,
    size_t n, struct buf *out, struct gp_err *err)
{
	if ((p1 & 0x60) == 0x40)
		return gp_fail(err, ERR_INVAL, "STORE DATA: P1 %02X uses the RFU "
		    "encryption coding 10", p1);
	if ((p1 & 0x18) == 0x18)
		return gp_fail(err, ERR_INVAL, "STORE DATA: P1 %02X uses the RFU "
		    "structure coding 11", p1);
	if (n > 255 || (n > 0 && data == NULL))
		return gp_fail(err, ERR_TOOBIG, "STORE DATA: block of %zu bytes", n);
	return gp_apdu_build(out, CLA_GP, INS_STORE_DATA, p1, block_no, data, n,
	    (p1 & GP_SD_RESPONSE) ? 256 : 0, err);
}

int
gp_store_data_block(uint8_t p1_flags, const uint8_t *stream, size_t n,
    size_t block_size, size_t block_no, struct buf *out, int *last,
    struct gp_err *err)
{
	size_t off, len;
	int rc;

	if ((rc = block_slice("STORE DATA", n, block_size, block_no, &off,
	    &len, last, err)) != 0)
		return rc;
	p1_flags &= (uint8_t)~GP_SD_LAST;
	if (*last)
		p1_flags |= GP_SD_LAST;
	return gp_store_data_build(p1_flags, (uint8_t)block_no, stream + off,
	    len, out, err);
}

/* ---- PUT KEY (gpref §4) ---------------------------------------------- */

int
gp_put_key_scp03_build(const struct gp_backend *be, gp_keyref dek,
    uint8_t replace_kvn, uint8_t new_kvn, const gp_keyref keys[3],
    struct buf *out, struct gp_put_key_expect *expect, struct gp_err *err)
{
	static const char *names[3] = { "ENC", "MAC", "DEK" };
	uint8_t ct[3][32], kcv[3];
	size_t klen, ctlen[3], i;
	struct buf d;
	int rc;

	if (new_kvn == 0 || new_kvn > 0x7f || replace_kvn > 0x7f)
		return gp_fail(err, ERR_INVAL, "PUT KEY: KVN %02X / %02X out of "
		    "range 01..7F", new_kvn, replace_kvn);
	if (dek == 0)
		return gp_fail(err, ERR_INVAL, "PUT KEY: no static DEK");
	buf_init(&d);
	if ((rc = buf_put_u8(&d, new_kvn)) != 0)
		goto fail;
	expect->kvn = new_kvn;
	/* One backend call for the three when it can (one kmsd round trip). */
	if (be->wrap_n != NULL && (rc = be->wrap_n(be->ctx, dek, keys, 3, ct,
	    ctlen)) != 0) {
		rc = gp_fail(err, rc, "PUT KEY: wrapping the new keys: %s",
		    err_str(rc));
		goto out;
	}
	for (i = 0; i < 3; i++) {
		if ((rc = be->key_len(be->ctx, keys[i], &klen)) != 0) {
			rc = gp_fail(err, rc, "PUT KEY: length of new %s key: %s",
			    names[i], err_str(rc));
			goto out;
		}
		if (klen != 16 && klen != 24 && klen != 32) {
			rc = gp_fail(err, ERR_INVAL, "PUT KEY: new %s key of %zu "
			    "bytes", names[i], klen);
			goto out;
		}
		if (be->wrap_n == NULL && (ctlen[i] = sizeof(ct[i]),
		    rc = be->wrap(be->ctx, dek, keys[i], ct[i], &ctlen[i])) != 0) {
			rc = gp_fail(err, rc, "PUT KEY: wrapping new %s key: %s",
			    names[i], err_str(rc));
			goto out;
		}
		/* AES-192 is padded to 32 bytes before encryption. */
		if (ctlen[i] != (klen == 16 ? 16u : 32u)) {
			rc = gp_fail(err, ERR_CRYPTO, "PUT KEY: backend wrapped a "
			    "%zu-byte key into %zu bytes", klen, ctlen[i]);
			goto out;
		}
		if ((rc = be->kcv(be->ctx, keys[i], kcv)) != 0) {
			rc = gp_fail(err, rc, "PUT KEY: KCV of new %s key: %s",
			    names[i], err_str(rc));
			goto out;
		}
		memcpy(expect->kcv[i], kcv, 3);
		/* 88 Lblock keyLen E(key) 03 KCV: the keyLen byte is always
		 * sent (gpref §4, sources disagree; GPP/NXP/JCOP need it). */
		if ((rc = buf_put_u8(&d, 0x88)) != 0 ||
		    (rc = buf_put_u8(&d, (uint8_t)(1 + ctlen[i]))) != 0 ||
		    (rc = buf_put_u8(&d, (uint8_t)klen)) != 0 ||
		    (rc = buf_put(&d, ct[i], ctlen[i])) != 0 ||
		    (rc = buf_put_u8(&d, 3)) != 0 ||
		    (rc = buf_put(&d, kcv, 3)) != 0)
			goto fail;
	}
	/* P2 = KID 01 with b8 set: several keys follow. */
	rc = gp_apdu_build(out, CLA_GP, INS_PUT_KEY, replace_kvn, 0x81, d.p,
	    d.len, 256, err);
	goto out;
fail:
	rc = gp_fail(err, rc, "PUT KEY: %s", err_str(rc));
out:
	wipe(ct, sizeof(ct));
	buf_free(&d);
	return rc;
}

int
gp_put_key_resp_check(const uint8_t *data, size_t n,
    const struct gp_put_key_expect *expect, struct gp_err *err)
{
	static const char *names[3] = { "ENC", "MAC", "DEK" };
	int good[3], i;

	if (n != 10)
		return gp_fail(err, n < 10 ? ERR_TRUNC : ERR_TRAILING,
		    "PUT KEY response of %zu bytes (KVN + 3 KCVs = 10 expected)",
		    n);
	if (data[0] != expect->kvn)
		return gp_fail(err, ERR_KCV, "PUT KEY response: KVN %02X, sent %02X",
		    data[0], expect->kvn);
	for (i = 0; i < 3; i++)
		good[i] = ct_equal(data + 1 + 3 * i, expect->kcv[i], 3);
	for (i = 0; i < 3; i++)
		if (!good[i])
			return gp_fail(err, ERR_KCV, "PUT KEY response: KCV of the "
			    "%s key (key %d) does not match", names[i], i + 1);
	return 0;
}
