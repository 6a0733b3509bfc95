/*
 * dm.c - Delegated Management: parsing the confirmation (receipt) a card
 * returns after a DM command (GPC App. C; gpref §6). Token data assembly
 * lives with the command builders in cmd.c. Runs in tsmd; the bytes come
 * from the card and are only kept for the issuer, never trusted here.
 */
#include <string.h>

#include "tsm/gp/gp_int.h"

static int
conf_lv(struct rd *r, const char *what, size_t max, uint8_t *dst,
    size_t *dlen, struct gp_err *err)
{
	const uint8_t *p;
	size_t n;
	int rc;

	if ((rc = gp_ber_len_get(r, &n, 0, err)) != 0)
		return rc;
	if (n > max)
		return gp_fail(err, ERR_PARSE, "confirmation: %s of %zu bytes "
		    "(at most %zu)", what, n, max);
	if (rd_bytes(r, n, &p) != 0)
		return gp_fail(err, ERR_TRUNC, "confirmation: %s of %zu bytes "
		    "runs past the end", what, n);
	memcpy(dst, p, n);
	*dlen = n;
	return 0;
}

/* Lr receipt 02 counter Lu unique [Lt id] [Ld digest], exactly n bytes. */
static int
conf_inner(const uint8_t *p, size_t n, struct gp_confirmation *c,
    struct gp_err *err)
{
	struct rd r;
	uint8_t ctr[2];
	size_t clen, conf_start;
	int rc;

	rd_init(&r, p, n);
	if ((rc = conf_lv(&r, "receipt", sizeof(c->receipt), c->receipt,
	    &c->receipt_len, err)) != 0)
		return rc;
	conf_start = r.off;
	if ((rc = conf_lv(&r, "confirmation counter", sizeof(ctr), ctr, &clen,
	    err)) != 0)
		return rc;
	if (clen != 2)
		return gp_fail(err, ERR_PARSE, "confirmation: counter of %zu "
		    "bytes (2 expected)", clen);
	c->counter = (uint16_t)((ctr[0] << 8) | ctr[1]);
	if ((rc = conf_lv(&r, "SD unique data", sizeof(c->sd_unique),
	    c->sd_unique, &c->sd_unique_len, err)) != 0)
		return rc;
	if (rd_left(&r) > 0) {
		if ((rc = conf_lv(&r, "token identifier", sizeof(c->token_id),
		    c->token_id, &c->token_id_len, err)) != 0)
			return rc;
		c->has_token_id = 1;
	}
	if (rd_left(&r) > 0) {
		if ((rc = conf_lv(&r, "token data digest", sizeof(c->digest),
		    c->digest, &c->digest_len, err)) != 0)
			return rc;
		c->has_digest = 1;
	}
	if (rd_left(&r) > 0)
		return gp_fail(err, ERR_TRAILING, "confirmation: %zu trailing "
		    "bytes", rd_left(&r));
	if (n - conf_start > sizeof(c->conf_data))
		return gp_fail(err, ERR_TOOBIG, "confirmation data too long");
	memcpy(c->conf_data, p + conf_start, n - conf_start);
	c->conf_data_len = n - conf_start;
	c->present = 1;
	return 0;
}

int
gp_confirmation_parse(const uint8_t *p, size_t n, struct gp_confirmation *c,
    struct gp_err *err)
{
	struct rd r;
	size_t outer;
	int rc;

	memset(c, 0, sizeof(*c));
	/* A single 00 (or nothing at all) means "no receipt". */
	if (n == 0 || (n == 1 && p[0] == 0x00))
		return 0;
	/* First the form with the outer length, which the card should emit
	 * (gpref §6); it must cover exactly the rest of the data. */
	rd_init(&r, p, n);
	if (gp_ber_len_get(&r, &outer, 0, NULL) == 0 && outer == rd_left(&r) &&
	    conf_inner(p + r.off, outer, c, NULL) == 0) {
		c->outer_len = 1;
		return 0;
	}
	memset(c, 0, sizeof(*c));
	if ((rc = conf_inner(p, n, c, err)) != 0) {
		memset(c, 0, sizeof(*c));
		if (err != NULL) {
			char why[sizeof(err->msg)];
			memcpy(why, err->msg, sizeof(why));
			return gp_fail(err, rc, "receipt does not parse with or "
			    "without the outer length: %.180s", why);
		}
		return rc;
	}
	return 0;
}
