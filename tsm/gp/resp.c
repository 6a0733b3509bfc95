/*
 * resp.c - parsers for card responses: INITIALIZE UPDATE, GET STATUS (TLV
 * and legacy), GET DATA (CPLC, key information, card recognition data,
 * counters, free resources). Runs in tsmd. Every byte comes from the card
 * (or whoever relays it): bounds are checked, values are copied out.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tsm/gp/gp_int.h"

static uint32_t
be_uint(const uint8_t *p, size_t n)
{
	uint32_t v = 0;
	size_t i;

	for (i = 0; i < n; i++)
		v = (v << 8) | p[i];
	return v;
}

/* ---- INITIALIZE UPDATE (gpref §1.2) ----------------------------------- */

int
gp_iu_resp_parse(const uint8_t *p, size_t n, struct gp_iu_resp *out,
    struct gp_err *err)
{
	size_t c;

	memset(out, 0, sizeof(*out));
	/* The SCP id first: an SCP02 card answers with 28 bytes, and "wrong
	 * SCP" says more than "wrong length". */
	if (n >= 12 && p[11] != 0x03)
		return gp_fail(err, ERR_PROTO, "IU response: wrong SCP id %02X "
		    "(03 expected)", p[11]);
	switch (n) {
	case 29: out->s16 = 0; out->has_seq = 0; break;
	case 32: out->s16 = 0; out->has_seq = 1; break;
	case 45: out->s16 = 1; out->has_seq = 0; break;
	case 48: out->s16 = 1; out->has_seq = 1; break;
	default:
		return gp_fail(err, n < 29 ? ERR_TRUNC : ERR_PARSE,
		    "IU response: wrong length %zu (29 or 32 for S8, 45 or 48 "
		    "for S16)", n);
	}
	memcpy(out->kdd, p, 10);
	out->kvn = p[10];
	out->scp = p[11];
	out->i = p[12];
	/* gpref §1.1: b2-b4 and b8 RFU; R-ENC only with R-MAC. */
	if (out->i & 0x8e)
		return gp_fail(err, ERR_PROTO, "IU response: i=%02X has RFU bits "
		    "set", out->i);
	if ((out->i & 0x40) && !(out->i & 0x20))
		return gp_fail(err, ERR_PROTO, "IU response: i=%02X has R-ENC "
		    "without R-MAC", out->i);
	if ((out->i & 0x01) != out->s16)
		return gp_fail(err, ERR_PROTO, "IU response: i=%02X says %s but "
		    "the length %zu is %s", out->i, (out->i & 1) ? "S16" : "S8",
		    n, out->s16 ? "S16" : "S8");
	c = out->s16 ? 16 : 8;
	out->clen = c;
	memcpy(out->card_challenge, p + 13, c);
	memcpy(out->card_cryptogram, p + 13 + c, c);
	if (out->has_seq)
		memcpy(out->seq, p + 13 + 2 * c, 3);
	return 0;
}

/* ---- GET STATUS (gpref §5) ------------------------------------------- */

void
gp_status_list_init(struct gp_status_list *l)
{
	l->v = NULL;
	l->n = l->cap = 0;
}

void
gp_status_list_free(struct gp_status_list *l)
{
	free(l->v);
	gp_status_list_init(l);
}

static int
status_add(struct gp_status_list *l, struct gp_status_entry **e)
{
	struct gp_status_entry *nv;
	size_t ncap;

	if (l->n == l->cap) {
		if (l->cap >= 4096)
			return ERR_LIMIT;
		ncap = l->cap ? l->cap * 2 : 8;
		nv = realloc(l->v, ncap * sizeof(*nv));
		if (nv == NULL)
			return ERR_NOMEM;
		l->v = nv;
		l->cap = ncap;
	}
	*e = &l->v[l->n++];
	memset(*e, 0, sizeof(**e));
	return 0;
}

static int
copy_aid(const char *what, const uint8_t *p, size_t n, uint8_t *dst,
    size_t *dlen, struct gp_err *err)
{
	if (n < GP_AID_MIN || n > GP_AID_MAX)
		return gp_fail(err, ERR_PARSE, "GET STATUS: %s of %zu bytes",
		    what, n);
	memcpy(dst, p, n);
	*dlen = n;
	return 0;
}

static int
copy_small(const char *what, const struct gp_tlv *t, size_t lo, size_t hi,
    uint8_t *dst, size_t *dlen, struct gp_err *err)
{
	if (*dlen != 0)
		return gp_fail(err, ERR_PARSE, "GET STATUS: %s repeated", what);
	if (t->len < lo || t->len > hi)
		return gp_fail(err, ERR_PARSE, "GET STATUS: %s of %zu bytes "
		    "(%zu..%zu expected)", what, t->len, lo, hi);
	memcpy(dst, t->val, t->len);
	*dlen = t->len;
	return 0;
}

static int
status_entry_tlv(const struct gp_tlv *e3, struct gp_status_entry *e,
    struct gp_err *err)
{
	struct gp_tlv_iter it;
	struct gp_tlv t;
	uint8_t lcs[2];
	int rc;

	gp_tlv_iter_init(&it, e3->val, e3->len, 0);
	while ((rc = gp_tlv_next(&it, &t, err)) == 1) {
		switch (t.tag) {
		case 0x4F:
			if (e->aid_len != 0)
				return gp_fail(err, ERR_PARSE, "GET STATUS: AID "
				    "repeated");
			if ((rc = copy_aid("AID", t.val, t.len, e->aid,
			    &e->aid_len, err)) != 0)
				return rc;
			break;
		case 0x9F70:	/* 1 byte, or 2 on some cards */
			if ((rc = copy_small("life cycle state", &t, 1, 2, lcs,
			    &e->lcs_len, err)) != 0)
				return rc;
			e->lcs = lcs[0];
			e->lcs2 = e->lcs_len == 2 ? lcs[1] : 0;
			break;
		case 0xC5:
			if (t.len != 1 && t.len != 3)
				return gp_fail(err, ERR_PARSE, "GET STATUS: "
				    "privileges of %zu bytes", t.len);
			if ((rc = copy_small("privileges", &t, 1, 3, e->priv,
			    &e->priv_len, err)) != 0)
				return rc;
			break;
		case 0xC4:
			if (e->elf_aid_len != 0)
				return gp_fail(err, ERR_PARSE, "GET STATUS: ELF "
				    "AID repeated");
			if ((rc = copy_aid("ELF AID", t.val, t.len, e->elf_aid,
			    &e->elf_aid_len, err)) != 0)
				return rc;
			break;
		case 0xCE:
			if ((rc = copy_small("version", &t, 1, sizeof(e->version),
			    e->version, &e->version_len, err)) != 0)
				return rc;
			break;
		case 0x84:
			if (e->nmodules == GP_STATUS_MAX_MODULES)
				return gp_fail(err, ERR_LIMIT, "GET STATUS: more "
				    "than %d modules", GP_STATUS_MAX_MODULES);
			if ((rc = copy_aid("module AID", t.val, t.len,
			    e->modules[e->nmodules].aid,
			    &e->modules[e->nmodules].len, err)) != 0)
				return rc;
			e->nmodules++;
			break;
		case 0xCC:
			if (e->sd_aid_len != 0)
				return gp_fail(err, ERR_PARSE, "GET STATUS: "
				    "associated SD repeated");
			if ((rc = copy_aid("associated SD AID", t.val, t.len,
			    e->sd_aid, &e->sd_aid_len, err)) != 0)
				return rc;
			break;
		case 0xCF:
			if ((rc = copy_small("implicit selection", &t, 1,
			    sizeof(e->implicit), e->implicit, &e->implicit_len,
			    err)) != 0)
				return rc;
			break;
		default:	/* EA and others: skipped (gpref §5) */
			break;
		}
	}
	if (rc < 0)
		return rc;
	if (e->aid_len == 0)
		return gp_fail(err, ERR_PARSE, "GET STATUS: entry without AID (4F)");
	return 0;
}

static int
status_parse_tlv(const uint8_t *data, size_t n, struct gp_status_list *l,
    struct gp_err *err)
{
	struct gp_tlv_iter it;
	struct gp_tlv t;
	struct gp_status_entry *e;
	int rc;

	gp_tlv_iter_init(&it, data, n, 0);
	while ((rc = gp_tlv_next(&it, &t, err)) == 1) {
		if (t.tag != 0xE3)
			return gp_fail(err, ERR_PARSE, "GET STATUS: tag %X where "
			    "E3 was expected", t.tag);
		if ((rc = status_add(l, &e)) != 0)
			return gp_fail(err, rc, "GET STATUS: %s", err_str(rc));
		if ((rc = status_entry_tlv(&t, e, err)) != 0)
			return rc;
	}
	return rc;
}

/* Legacy format (GPC §11.4.3.1): len AID LCS priv, and for P1 10 also
 * count {len module-AID}. */
static int
status_parse_legacy(const uint8_t *data, size_t n, uint8_t p1,
    struct gp_status_list *l, struct gp_err *err)
{
	struct rd r;
	struct gp_status_entry *e;
	const uint8_t *p;
	uint8_t len, nmod, i;
	int rc;

	rd_init(&r, data, n);
	while (rd_left(&r) > 0) {
		if ((rc = status_add(l, &e)) != 0)
			return gp_fail(err, rc, "GET STATUS: %s", err_str(rc));
		if (rd_u8(&r, &len) != 0 || rd_bytes(&r, len, &p) != 0)
			return gp_fail(err, ERR_TRUNC, "GET STATUS (legacy): AID "
			    "truncated at offset %zu", r.off);
		if ((rc = copy_aid("AID", p, len, e->aid, &e->aid_len, err)) != 0)
			return rc;
		if (rd_u8(&r, &e->lcs) != 0 || rd_u8(&r, &e->priv[0]) != 0)
			return gp_fail(err, ERR_TRUNC, "GET STATUS (legacy): "
			    "entry truncated at offset %zu", r.off);
		e->lcs_len = 1;
		e->priv_len = 1;
		if (p1 != GP_GS_ELF_MODULES)
			continue;
		if (rd_u8(&r, &nmod) != 0)
			return gp_fail(err, ERR_TRUNC, "GET STATUS (legacy): "
			    "module count missing");
		if (nmod > GP_STATUS_MAX_MODULES)
			return gp_fail(err, ERR_LIMIT, "GET STATUS: %u modules",
			    nmod);
		for (i = 0; i < nmod; i++) {
			if (rd_u8(&r, &len) != 0 || rd_bytes(&r, len, &p) != 0)
				return gp_fail(err, ERR_TRUNC, "GET STATUS "
				    "(legacy): module AID truncated");
			if ((rc = copy_aid("module AID", p, len,
			    e->modules[i].aid, &e->modules[i].len, err)) != 0)
				return rc;
			e->nmodules++;
		}
	}
	return 0;
}

int
gp_status_parse(const uint8_t *data, size_t n, uint8_t p1, int tlv,
    struct gp_status_list *l, struct gp_err *err)
{
	size_t before = l->n;
	int rc;

	if (p1 != GP_GS_ISD && p1 != GP_GS_APPS && p1 != GP_GS_ELFS &&
	    p1 != GP_GS_ELF_MODULES)
		return gp_fail(err, ERR_INVAL, "GET STATUS: P1 %02X", p1);
	if (n > 0 && data == NULL)
		return gp_fail(err, ERR_INVAL, "GET STATUS: no data");
	rc = tlv ? status_parse_tlv(data, n, l, err) :
	    status_parse_legacy(data, n, p1, l, err);
	if (rc != 0)
		l->n = before;	/* all or nothing */
	return rc;
}

/* ---- GET DATA -------------------------------------------------------- */

int
gp_cplc_parse(const uint8_t *p, size_t n, struct gp_cplc *c,
    struct gp_err *err)
{
	struct rd r;
	const uint8_t *b;

	memset(c, 0, sizeof(*c));
	/* Some cards return the bare 42 bytes, most the 9F7F 2A object. */
	if (n == 45 && p[0] == 0x9F && p[1] == 0x7F && p[2] == 0x2A) {
		p += 3;
		n -= 3;
	}
	if (n != 42)
		return gp_fail(err, n < 42 ? ERR_TRUNC : ERR_PARSE,
		    "CPLC of %zu bytes (42, or 45 with the 9F7F header, expected)",
		    n);
	rd_init(&r, p, n);
	/* gpref §5 field order; all reads are inside the 42 checked bytes. */
#define U16(f) do { if (rd_bytes(&r, 2, &b) != 0) goto trunc; \
	c->f = (uint16_t)be_uint(b, 2); } while (0)
#define U32(f) do { if (rd_bytes(&r, 4, &b) != 0) goto trunc; \
	c->f = be_uint(b, 4); } while (0)
	U16(ic_fabricator); U16(ic_type); U16(os_id); U16(os_release_date);
	U16(os_release_level); U16(ic_fabrication_date); U32(ic_serial);
	U16(ic_batch_id); U16(module_fabricator); U16(module_packaging_date);
	U16(icc_manufacturer); U16(ic_embedding_date); U16(prepersonalizer);
	U16(prepersonalization_date); U32(prepersonalization_equipment);
	U16(personalizer); U16(personalization_date);
	U32(personalization_equipment);
#undef U16
#undef U32
	return rd_end(&r) == 0 ? 0 :
	    gp_fail(err, ERR_INTERNAL, "CPLC: field table out of step");
trunc:
	return gp_fail(err, ERR_TRUNC, "CPLC truncated");
}

int
gp_cplc_format(const struct gp_cplc *c, char *out, size_t cap)
{
	int n;

	n = snprintf(out, cap,
	    "ic_fabricator=%04X ic_type=%04X os_id=%04X os_release_date=%04X "
	    "os_release_level=%04X ic_fabrication_date=%04X ic_serial=%08X "
	    "ic_batch_id=%04X module_fabricator=%04X "
	    "module_packaging_date=%04X icc_manufacturer=%04X "
	    "ic_embedding_date=%04X prepersonalizer=%04X "
	    "prepersonalization_date=%04X prepersonalization_equipment=%08X "
	    "personalizer=%04X personalization_date=%04X "
	    "personalization_equipment=%08X",
	    c->ic_fabricator, c->ic_type, c->os_id, c->os_release_date,
	    c->os_release_level, c->ic_fabrication_date, c->ic_serial,
	    c->ic_batch_id, c->module_fabricator, c->module_packaging_date,
	    c->icc_manufacturer, c->ic_embedding_date, c->prepersonalizer,
	    c->prepersonalization_date, c->prepersonalization_equipment,
	    c->personalizer, c->personalization_date,
	    c->personalization_equipment);
	return n < 0 || (size_t)n >= cap ? ERR_TOOBIG : 0;
}

/* GPC §11.3.3.1 key information template, basic format. */
int
gp_key_info_parse(const uint8_t *p, size_t n, struct gp_key_info *out,
    size_t cap, size_t *count, struct gp_err *err)
{
	struct gp_tlv_iter it;
	struct gp_tlv t;
	struct gp_key_info *k;
	size_t i;
	int rc;

	*count = 0;
	/* With or without the E0 wrapper. */
	if (n > 0 && p[0] == 0xE0) {
		if ((rc = gp_tlv_decode(p, n, &t, err)) != 0)
			return rc;
		p = t.val;
		n = t.len;
	}
	gp_tlv_iter_init(&it, p, n, 0);
	while ((rc = gp_tlv_next(&it, &t, err)) == 1) {
		if (t.tag != 0xC0)
			return gp_fail(err, ERR_PARSE, "key information: tag %X "
			    "where C0 was expected", t.tag);
		if (*count == cap)
			return gp_fail(err, ERR_LIMIT, "key information: more "
			    "than %zu keys", cap);
		if (t.len < 4 || (t.len - 2) % 2 != 0)
			return gp_fail(err, ERR_PARSE, "key information: C0 of "
			    "%zu bytes", t.len);
		k = &out[*count];
		memset(k, 0, sizeof(*k));
		k->kid = t.val[0];
		k->kvn = t.val[1];
		for (i = 2; i + 1 < t.len; i += 2) {
			if (t.val[i] == 0xFF)
				return gp_fail(err, ERR_NOTSUP, "key information: "
				    "extended format (type FF) not supported");
			if (k->ncomp == GP_KEYINFO_MAX_COMP)
				return gp_fail(err, ERR_LIMIT, "key information: "
				    "more than %d components", GP_KEYINFO_MAX_COMP);
			k->comp[k->ncomp].type = t.val[i];
			k->comp[k->ncomp].len = t.val[i + 1];
			k->ncomp++;
		}
		(*count)++;
	}
	return rc;
}

/* GP RID OID 1.2.840.114283 followed by a sub-identifier. */
static const uint8_t gp_oid[] = { 0x2A, 0x86, 0x48, 0x86, 0xFC, 0x6B };

static int
card_data_oid(const struct gp_tlv *outer, uint8_t sub, const uint8_t **rest,
    size_t *rlen, struct gp_err *err)
{
	struct gp_tlv o;
	int rc;

	if ((rc = gp_tlv_find(outer->val, outer->len, 0x06, &o, err)) != 0)
		return rc != ERR_NOTFOUND ? rc : gp_fail(err, ERR_PARSE,
		    "card data: tag %X without OID", outer->tag);
	if (o.len < sizeof(gp_oid) + 1 ||
	    memcmp(o.val, gp_oid, sizeof(gp_oid)) != 0 ||
	    o.val[sizeof(gp_oid)] != sub)
		return 1;	/* not a GP OID of this kind: ignore */
	*rest = o.val + sizeof(gp_oid) + 1;
	*rlen = o.len - sizeof(gp_oid) - 1;
	return 0;
}

int
gp_card_data_parse(const uint8_t *p, size_t n, struct gp_card_data *out,
    struct gp_err *err)
{
	struct gp_tlv t;
	struct gp_tlv_iter it;
	const uint8_t *rest = NULL;
	size_t rlen = 0;
	int rc;

	memset(out, 0, sizeof(*out));
	/* Only 60 and 64 are read; other templates are not inspected. */
	if (n > 0 && p[0] == 0x66) {
		if ((rc = gp_tlv_decode(p, n, &t, err)) != 0)
			return rc;
		p = t.val;
		n = t.len;
	}
	if ((rc = gp_tlv_decode(p, n, &t, err)) != 0)
		return rc;
	if (t.tag != 0x73)
		return gp_fail(err, ERR_PARSE, "card data: tag %X where 73 was "
		    "expected", t.tag);
	gp_tlv_iter_init(&it, t.val, t.len, 0);
	while ((rc = gp_tlv_next(&it, &t, err)) == 1) {
		if (t.tag != 0x60 && t.tag != 0x64)
			continue;
		rc = card_data_oid(&t, t.tag == 0x60 ? 0x02 : 0x04, &rest,
		    &rlen, err);
		if (rc < 0)
			return rc;
		if (rc == 1)
			continue;
		if (t.tag == 0x60) {
			if (rlen == 0 || rlen > sizeof(out->gp_version))
				return gp_fail(err, ERR_PARSE, "card data: GP "
				    "version of %zu bytes", rlen);
			memcpy(out->gp_version, rest, rlen);
			out->gp_version_len = rlen;
		} else {
			if (rlen != 2)
				return gp_fail(err, ERR_PARSE, "card data: SCP "
				    "OID with %zu trailing bytes", rlen);
			if (out->nscp == ARRAY_LEN(out->scp))
				return gp_fail(err, ERR_LIMIT, "card data: too "
				    "many SCPs");
			out->scp[out->nscp].scp = rest[0];
			out->scp[out->nscp].i = rest[1];
			out->nscp++;
		}
	}
	return rc;
}

int
gp_counter_parse(const uint8_t *p, size_t n, uint8_t tag, uint32_t *value,
    struct gp_err *err)
{
	struct gp_tlv t;
	int rc;

	if ((rc = gp_tlv_decode(p, n, &t, err)) != 0)
		return rc;
	if (t.tag != tag)
		return gp_fail(err, ERR_PARSE, "counter: tag %X where %02X was "
		    "expected", t.tag, tag);
	if (t.len < 1 || t.len > 4)
		return gp_fail(err, ERR_PARSE, "counter: %zu bytes", t.len);
	*value = be_uint(t.val, t.len);
	return 0;
}

int
gp_free_res_parse(const uint8_t *p, size_t n, struct gp_free_res *out,
    struct gp_err *err)
{
	struct gp_tlv t;
	struct gp_tlv_iter it;
	int rc;

	memset(out, 0, sizeof(*out));
	if ((rc = gp_tlv_decode(p, n, &t, err)) != 0)
		return rc;
	if (t.tag != 0xFF21)
		return gp_fail(err, ERR_PARSE, "free resources: tag %X where FF21 "
		    "was expected", t.tag);
	gp_tlv_iter_init(&it, t.val, t.len, 0);
	while ((rc = gp_tlv_next(&it, &t, err)) == 1) {
		uint32_t *v;
		int *has;

		switch (t.tag) {
		case 0x81: v = &out->apps; has = &out->has_apps; break;
		case 0x82: v = &out->nvm; has = &out->has_nvm; break;
		case 0x83: v = &out->vm; has = &out->has_vm; break;
		default: continue;
		}
		if (*has)
			return gp_fail(err, ERR_PARSE, "free resources: tag %X "
			    "repeated", t.tag);
		if (t.len < 1 || t.len > 4)
			return gp_fail(err, ERR_PARSE, "free resources: tag %X of "
			    "%zu bytes", t.tag, t.len);
		*v = be_uint(t.val, t.len);
		*has = 1;
	}
	return rc;
}
