/*
 * scp03.c - SCP03 host side (GPC Amendment D; gpref §1): INITIALIZE UPDATE,
 * card cryptogram and pseudo-random challenge checks, EXTERNAL
 * AUTHENTICATE, C-MAC/C-DEC wrapping and R-MAC/R-ENC unwrapping. Runs in
 * tsmd. Holds only key references, challenges, cryptograms and MAC chain
 * values; all key use goes through the backend. Card responses are
 * untrusted: one that fails verification breaks the session for good.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "tsm/gp/gp_int.h"

#define INS_INIT_UPDATE 0x50
#define INS_EXT_AUTH    0x82

/* KDF constants, gpref §1.3 */
#define K_CARD_CRYPTO   0x00
#define K_HOST_CRYPTO   0x01
#define K_CARD_CHALL    0x02
#define K_S_ENC         0x04
#define K_S_MAC         0x06
#define K_S_RMAC        0x07

struct pend {
	uint8_t chain[16];		/* the command's full C-MAC (R-MAC input) */
	uint8_t counter[16];		/* its encryption counter (R-ENC ICV) */
};

#define MAX_IN_FLIGHT 4096

struct gp_scp03 {
	struct gp_backend be;
	gp_keyref enc, mac;
	uint8_t   kvn_req;
	uint8_t   sl;
	int       s16;
	unsigned  channel;
	unsigned  flags;
	uint8_t   sd_aid[GP_AID_MAX];
	size_t    sd_aid_len;

	enum gp_scp03_state state;
	size_t    clen;			/* 8 (S8) or 16 (S16) */
	uint8_t   host_challenge[16];
	struct gp_iu_resp iu;
	gp_keyref s_enc, s_mac, s_rmac;
	uint8_t   chain[16];		/* MAC chaining value (gpref §1.5) */
	uint8_t   counter[16];		/* encryption counter (gpref §1.6) */
	/* Commands wrapped and not yet answered, oldest first: what their
	 * responses are checked with (the agent API sends APDUs in batches,
	 * so several may be in flight). */
	struct pend *q;
	size_t    qhead, qlen, qcap;
	struct buf t1, t2;		/* scratch, wiped on reuse */
};

int
gp_sl_normalize(uint8_t req, uint8_t *out, struct gp_err *err)
{
	uint8_t sl = req;

	if (sl & (uint8_t)~(GP_SL_CMAC | GP_SL_CDEC | GP_SL_RMAC | GP_SL_RENC))
		return gp_fail(err, ERR_INVAL, "security level %02X has unknown "
		    "bits", req);
	if (sl & GP_SL_RENC)
		sl |= GP_SL_CDEC | GP_SL_RMAC;
	if (sl & (GP_SL_CDEC | GP_SL_RMAC))
		sl |= GP_SL_CMAC;
	*out = sl;
	return 0;
}

static void
keys_release(struct gp_scp03 *s)
{
	gp_keyref *k[3] = { &s->s_enc, &s->s_mac, &s->s_rmac }, live[3];
	size_t i, n = 0;

	for (i = 0; i < 3; i++)
		if (*k[i] != 0) {
			live[n++] = *k[i];
			*k[i] = 0;
		}
	if (n > 0 && s->be.release_n != NULL)
		s->be.release_n(s->be.ctx, live, n);
	else
		for (i = 0; i < n; i++)
			s->be.release(s->be.ctx, live[i]);
}

/* Every failure after INITIALIZE UPDATE ends here: keys go, nothing more
 * is wrapped or unwrapped. Returns rc for tail calls. */
static int
session_break(struct gp_scp03 *s, int rc)
{
	keys_release(s);
	s->state = GP_SCP03_BROKEN;
	if (s->q != NULL)
		wipe(s->q, s->qcap * sizeof(*s->q));
	s->qhead = s->qlen = 0;
	wipe(s->chain, sizeof(s->chain));
	/* A wrap that failed half-way leaves command plaintext here. */
	buf_reset(&s->t1);
	buf_reset(&s->t2);
	return rc;
}

static int
state_is(const struct gp_scp03 *s, enum gp_scp03_state want, const char *op,
    struct gp_err *err)
{
	static const char *names[] = {
		"new",
		"waiting for the INITIALIZE UPDATE response",
		"waiting for the EXTERNAL AUTHENTICATE response",
		"open",
		"broken",
	};

	if (s->state == want)
		return 0;
	return gp_fail(err, ERR_WRONGSTATE, "SCP03 %s refused: session is %s",
	    op, names[s->state]);
}

int
gp_scp03_new(const struct gp_scp03_cfg *cfg, struct gp_scp03 **out,
    struct gp_err *err)
{
	const struct gp_backend *be = cfg->be;
	struct gp_scp03 *s;
	uint8_t sl = 0;
	int rc;

	*out = NULL;
	if (be == NULL || be->derive == NULL || be->kdf == NULL ||
	    be->cmac == NULL || be->encrypt == NULL || be->decrypt == NULL ||
	    be->key_len == NULL || be->release == NULL)
		return gp_fail(err, ERR_INVAL, "SCP03: incomplete backend");
	if (cfg->enc == 0 || cfg->mac == 0)
		return gp_fail(err, ERR_INVAL, "SCP03: static ENC and MAC keys "
		    "are needed");
	if ((rc = gp_sl_normalize(cfg->sl, &sl, err)) != 0)
		return rc;
	if (cfg->channel > 19)
		return gp_fail(err, ERR_INVAL, "SCP03: logical channel %u",
		    cfg->channel);
	if (cfg->sd_aid_len > GP_AID_MAX ||
	    (cfg->sd_aid_len > 0 && cfg->sd_aid == NULL))
		return gp_fail(err, ERR_INVAL, "SCP03: SD AID of %zu bytes",
		    cfg->sd_aid_len);
	if ((s = calloc(1, sizeof(*s))) == NULL)
		return gp_fail(err, ERR_NOMEM, "SCP03: out of memory");
	s->be = *be;
	s->enc = cfg->enc;
	s->mac = cfg->mac;
	s->kvn_req = cfg->kvn;
	s->sl = sl;
	s->s16 = cfg->s16 != 0;
	s->clen = s->s16 ? 16 : 8;
	s->channel = cfg->channel;
	s->flags = cfg->flags;
	if (cfg->sd_aid_len > 0)
		memcpy(s->sd_aid, cfg->sd_aid, cfg->sd_aid_len);
	s->sd_aid_len = cfg->sd_aid_len;
	s->state = GP_SCP03_NEW;
	buf_init(&s->t1);
	buf_init(&s->t2);
	*out = s;
	return 0;
}

void
gp_scp03_free(struct gp_scp03 *s)
{
	if (s == NULL)
		return;
	keys_release(s);
	buf_free(&s->t1);
	buf_free(&s->t2);
	if (s->q != NULL) {
		wipe(s->q, s->qcap * sizeof(*s->q));
		free(s->q);
	}
	wipe(s, sizeof(*s));
	free(s);
}

void
gp_scp03_get_info(const struct gp_scp03 *s, struct gp_scp03_info *info)
{
	memset(info, 0, sizeof(*info));
	info->state = s->state;
	info->sl = s->sl;
	info->kvn = s->iu.kvn;
	info->i = s->iu.i;
	info->s16 = s->s16;
	info->has_seq = s->iu.has_seq;
	memcpy(info->seq, s->iu.seq, 3);
	memcpy(info->kdd, s->iu.kdd, 10);
	info->s_enc = s->s_enc;
	info->s_mac = s->s_mac;
	info->s_rmac = s->s_rmac;
	info->in_flight = s->qlen - s->qhead;
}

/* Room for one more in-flight command; compacts before growing. */
static int
queue_reserve(struct gp_scp03 *s, struct gp_err *err)
{
	struct pend *nq;
	size_t ncap;

	if (s->qhead > 0 && s->qhead == s->qlen)
		s->qhead = s->qlen = 0;
	if (s->qlen < s->qcap)
		return 0;
	if (s->qhead > 0) {
		memmove(s->q, s->q + s->qhead, (s->qlen - s->qhead) * sizeof(*s->q));
		s->qlen -= s->qhead;
		s->qhead = 0;
		return 0;
	}
	if (s->qcap >= MAX_IN_FLIGHT)
		return gp_fail(err, ERR_LIMIT, "SCP03: %d commands already await "
		    "their responses", MAX_IN_FLIGHT);
	ncap = s->qcap ? 2 * s->qcap : 16;
	if ((nq = calloc(ncap, sizeof(*nq))) == NULL)
		return gp_fail(err, ERR_NOMEM, "SCP03: out of memory");
	if (s->q != NULL) {
		memcpy(nq, s->q, s->qlen * sizeof(*nq));
		wipe(s->q, s->qcap * sizeof(*s->q));
		free(s->q);
	}
	s->q = nq;
	s->qcap = ncap;
	return 0;
}

size_t
gp_scp03_block_size(const struct gp_scp03 *s)
{
	return gp_block_size(s->sl, s->s16);
}

int
gp_scp03_begin(struct gp_scp03 *s, const uint8_t *host_challenge,
    struct buf *iu_apdu, struct gp_err *err)
{
	uint8_t cla;
	int rc;

	if ((rc = state_is(s, GP_SCP03_NEW, "INITIALIZE UPDATE", err)) != 0)
		return rc;
	if (host_challenge != NULL)
		memcpy(s->host_challenge, host_challenge, s->clen);
	else if (getrandom(s->host_challenge, s->clen, 0) != (ssize_t)s->clen)
		return gp_fail(err, ERR_IO, "SCP03: getrandom failed");
	if ((rc = gp_cla_channel(0x80, s->channel, &cla)) != 0)
		return gp_fail(err, rc, "SCP03: channel %u", s->channel);
	/* gpref §1.2: 80 50 KVN 00 Lc challenge 00 */
	if ((rc = gp_apdu_build(iu_apdu, cla, INS_INIT_UPDATE, s->kvn_req, 0x00,
	    s->host_challenge, s->clen, 256, err)) != 0)
		return rc;
	s->state = GP_SCP03_IU_SENT;
	return 0;
}

/*
 * MACs a command whose data field is final (already encrypted) and encodes
 * it for the wire (gpref §1.5):
 *   MAC = CMAC(S-MAC, chain || CLA' INS P1 P2 Lc' || data), chain = MAC,
 *   Lc' = |data| + 8/16, one byte or 00 hh ll (extended, as GPP).
 * Le stays out of the MAC and goes after it.
 */
static int
sm_finish(struct gp_scp03 *s, uint8_t wire_cla, uint8_t mac_cla,
    const struct gp_apdu *a, const uint8_t *d, size_t dn, struct buf *out,
    struct gp_err *err)
{
	uint8_t hdr[4] = { mac_cla, a->ins, a->p1, a->p2 }, mac[16];
	struct gp_apdu w;
	size_t lc = dn + s->clen;
	int ext = a->ext || lc > 255 || a->ne > 256, rc;

	if (lc > 65535)
		return gp_fail(err, ERR_TOOBIG, "SCP03: wrapped command data of "
		    "%zu bytes", lc);
	buf_reset(&s->t2);
	if ((rc = buf_put(&s->t2, s->chain, 16)) != 0 ||
	    (rc = buf_put(&s->t2, hdr, 4)) != 0)
		goto fail;
	if (ext) {
		if ((rc = buf_put_u8(&s->t2, 0)) != 0 ||
		    (rc = buf_put_u16(&s->t2, (uint16_t)lc)) != 0)
			goto fail;
	} else if ((rc = buf_put_u8(&s->t2, (uint8_t)lc)) != 0) {
		goto fail;
	}
	if ((rc = buf_put(&s->t2, d, dn)) != 0)
		goto fail;
	if ((rc = s->be.cmac(s->be.ctx, s->s_mac, s->t2.p, s->t2.len, mac)) != 0)
		return gp_fail(err, rc, "SCP03: C-MAC: backend: %s", err_str(rc));
	memcpy(s->chain, mac, 16);
	/* The wire data: (encrypted) data || MAC[0..clen). */
	buf_reset(&s->t2);
	if ((rc = buf_put(&s->t2, d, dn)) != 0 ||
	    (rc = buf_put(&s->t2, mac, s->clen)) != 0)
		goto fail;
	w.cla = wire_cla;
	w.ins = a->ins;
	w.p1 = a->p1;
	w.p2 = a->p2;
	w.data = s->t2.p;
	w.lc = s->t2.len;
	w.ne = a->ne;
	w.ext = ext;
	return gp_apdu_encode(&w, out, err);
fail:
	return gp_fail(err, rc, "SCP03: %s", err_str(rc));
}

static int
kdf_bytes(struct gp_scp03 *s, gp_keyref key, uint8_t konst,
    const uint8_t *ctx, size_t clen, uint8_t *out, const char *what,
    struct gp_err *err)
{
	int rc;

	if ((rc = s->be.kdf(s->be.ctx, key, konst, ctx, clen,
	    (uint16_t)(s->clen * 8), out)) != 0)
		return gp_fail(err, rc, "SCP03: %s: backend: %s", what,
		    err_str(rc));
	return 0;
}

static int
derive_key(struct gp_scp03 *s, gp_keyref base, uint8_t konst,
    const uint8_t *ctx, size_t clen, gp_keyref *out, const char *what,
    struct gp_err *err)
{
	size_t klen;
	int rc;

	if ((rc = s->be.key_len(s->be.ctx, base, &klen)) != 0)
		return gp_fail(err, rc, "SCP03: length of the static key for %s: "
		    "%s", what, err_str(rc));
	if (klen != 16 && klen != 24 && klen != 32)
		return gp_fail(err, ERR_INVAL, "SCP03: static key for %s has %zu "
		    "bytes", what, klen);
	if ((rc = s->be.derive(s->be.ctx, base, konst, ctx, clen,
	    (uint16_t)(klen * 8), out)) != 0)
		return gp_fail(err, rc, "SCP03: deriving %s: backend: %s", what,
		    err_str(rc));
	return 0;
}

/* gpref §1.4: 84 82 SL 00 Lc host-cryptogram C-MAC, chain 0, never
 * encrypted, no counter. */
static int
ea_build(struct gp_scp03 *s, const uint8_t *host_crypto, struct buf *ea_apdu,
    struct gp_err *err)
{
	struct gp_apdu a;
	uint8_t cla;
	int rc;

	memset(s->chain, 0, sizeof(s->chain));
	if ((rc = gp_cla_channel(0x80, s->channel, &cla)) != 0)
		return gp_fail(err, rc, "SCP03: channel %u", s->channel);
	memset(&a, 0, sizeof(a));
	a.ins = INS_EXT_AUTH;
	a.p1 = s->sl;
	a.p2 = 0x00;
	return sm_finish(s, (uint8_t)(cla | (s->channel < 4 ? 0x04 : 0x20)),
	    0x84, &a, host_crypto, s->clen, ea_apdu, err);
}

/* The context of the pseudo-random card challenge check, seq || SD AID;
 * *len 0 when the card's challenge is random or the check is off. */
static int
challenge_context(const struct gp_scp03 *s, uint8_t *ctx, size_t *len,
    struct gp_err *err)
{
	*len = 0;
	if (!(s->iu.i & 0x10))
		return 0;
	if (!s->iu.has_seq)
		return gp_fail(err, ERR_PROTO, "IU response: i=%02X announces a "
		    "pseudo-random challenge but carries no sequence counter",
		    s->iu.i);
	if (s->flags & GP_SCP03_NO_CHALLENGE_CHECK)
		return 0;
	if (s->sd_aid_len == 0)
		return gp_fail(err, ERR_INVAL, "pseudo-random challenge check "
		    "needs the selected SD AID");
	memcpy(ctx, s->iu.seq, 3);
	memcpy(ctx + 3, s->sd_aid, s->sd_aid_len);
	*len = 3 + s->sd_aid_len;
	return 0;
}

/*
 * What the backend's open gives, from derive and kdf one call each (a
 * backend without open, such as gpossl): gpref §1.2 challenge = KDF(static
 * ENC, 02, seq || SD AID); §1.3 session keys and cryptograms over
 * ctx = host challenge || card challenge. The keys go straight into s, so
 * session_break releases whatever was made before a failure.
 */
static int
open_by_parts(struct gp_scp03 *s, int check_only, const uint8_t *ctx,
    const uint8_t *chal, size_t chlen, struct gp_open_out *o,
    struct gp_err *err)
{
	size_t cn = 2 * s->clen;
	int rc;

	if (chlen > 0 && (rc = kdf_bytes(s, s->enc, K_CARD_CHALL, chal, chlen,
	    o->challenge, "card challenge", err)) != 0)
		return rc;
	if ((rc = derive_key(s, s->mac, K_S_MAC, ctx, cn, &s->s_mac, "S-MAC",
	    err)) != 0 ||
	    (rc = kdf_bytes(s, s->s_mac, K_CARD_CRYPTO, ctx, cn, o->card_crypto,
	    "card cryptogram", err)) != 0 || check_only)
		return rc;
	if ((rc = derive_key(s, s->enc, K_S_ENC, ctx, cn, &s->s_enc, "S-ENC",
	    err)) != 0 ||
	    (rc = derive_key(s, s->mac, K_S_RMAC, ctx, cn, &s->s_rmac, "S-RMAC",
	    err)) != 0)
		return rc;
	return kdf_bytes(s, s->s_mac, K_HOST_CRYPTO, ctx, cn, o->host_crypto,
	    "host cryptogram", err);
}

/* Session keys and cryptograms in one backend call when the backend
 * offers open (kmsd scp03.open: one round trip), else by parts. */
static int
open_keys(struct gp_scp03 *s, int check_only, const uint8_t *ctx,
    const uint8_t *chal, size_t chlen, struct gp_open_out *o,
    struct gp_err *err)
{
	unsigned flags = check_only ? 0 : (GP_OPEN_SENC | GP_OPEN_SRMAC |
	    GP_OPEN_HOST);
	int rc;

	if (s->be.open == NULL)
		return open_by_parts(s, check_only, ctx, chal, chlen, o, err);
	if ((rc = s->be.open(s->be.ctx, s->enc, s->mac, flags, ctx,
	    2 * s->clen, (uint16_t)(s->clen * 8), chlen ? chal : NULL, chlen,
	    o)) != 0)
		return gp_fail(err, rc, "SCP03: session opening: backend: %s",
		    err_str(rc));
	s->s_enc = o->s_enc;
	s->s_mac = o->s_mac;
	s->s_rmac = o->s_rmac;
	return 0;
}

static int
bad_challenge(const struct gp_scp03 *s, struct gp_err *err)
{
	char hx[40];

	return gp_fail(err, ERR_CRYPTOGRAM, "bad pseudo-random card challenge "
	    "(sequence counter %02X%02X%02X, SD %s)", s->iu.seq[0],
	    s->iu.seq[1], s->iu.seq[2],
	    gp_hexstr(s->sd_aid, s->sd_aid_len, hx, sizeof(hx)));
}

/* check_only: prove the card holds the static keys (challenge, card
 * cryptogram) and stop: S-MAC alone is made, no EA is built. The
 * comparisons are in constant time, whichever way the values came. */
static int
auth_checks(struct gp_scp03 *s, const uint8_t *resp, size_t n,
    struct buf *ea_apdu, int check_only, struct gp_err *err)
{
	struct gp_open_out o;
	const uint8_t *d;
	size_t dn;
	uint16_t sw;
	uint8_t ctx[32], chal[3 + GP_AID_MAX];
	size_t chlen;
	char swb[64];
	int rc;

	if ((rc = gp_resp_split(resp, n, &d, &dn, &sw, err)) != 0)
		return rc;
	if (sw != 0x9000)
		return gp_fail(err, ERR_SW, "INITIALIZE UPDATE failed: %s",
		    gp_sw_str(sw, swb, sizeof(swb)));
	if ((rc = gp_iu_resp_parse(d, dn, &s->iu, err)) != 0)
		return rc;
	if (s->iu.s16 != s->s16)
		return gp_fail(err, ERR_PROTO, "IU response in %s mode to an %s "
		    "INITIALIZE UPDATE", s->iu.s16 ? "S16" : "S8",
		    s->s16 ? "S16" : "S8");
	if (s->kvn_req != 0 && s->iu.kvn != s->kvn_req)
		return gp_fail(err, ERR_PROTO, "IU response: key version %02X, "
		    "%02X was requested", s->iu.kvn, s->kvn_req);
	if ((s->sl & GP_SL_RMAC) && !(s->iu.i & 0x20))
		return gp_fail(err, ERR_NOTSUP, "card (i=%02X) does not support "
		    "R-MAC, security level %02X needs it", s->iu.i, s->sl);
	if ((s->sl & GP_SL_RENC) && !(s->iu.i & 0x40))
		return gp_fail(err, ERR_NOTSUP, "card (i=%02X) does not support "
		    "R-ENC, security level %02X needs it", s->iu.i, s->sl);
	if ((rc = challenge_context(s, chal, &chlen, err)) != 0)
		return rc;
	memcpy(ctx, s->host_challenge, s->clen);
	memcpy(ctx + s->clen, s->iu.card_challenge, s->clen);
	memset(&o, 0, sizeof(o));
	if ((rc = open_keys(s, check_only, ctx, chal, chlen, &o, err)) != 0)
		goto out;
	/* A card that answers with another challenge does not know our ENC
	 * key or is replaying. */
	if (chlen > 0 && !ct_equal(o.challenge, s->iu.card_challenge, s->clen))
		rc = bad_challenge(s, err);
	else if (!ct_equal(o.card_crypto, s->iu.card_cryptogram, s->clen))
		rc = gp_fail(err, ERR_CRYPTOGRAM, "wrong card cryptogram (the "
		    "card does not hold these static keys, KVN %02X)", s->iu.kvn);
	else if (!check_only)
		rc = ea_build(s, o.host_crypto, ea_apdu, err);
out:
	wipe(&o, sizeof(o));
	return rc;
}

int
gp_scp03_auth(struct gp_scp03 *s, const uint8_t *resp, size_t n,
    struct buf *ea_apdu, struct gp_err *err)
{
	int rc;

	if ((rc = state_is(s, GP_SCP03_IU_SENT, "authentication", err)) != 0)
		return rc;
	if ((rc = auth_checks(s, resp, n, ea_apdu, 0, err)) != 0)
		return session_break(s, rc);
	s->state = GP_SCP03_EA_SENT;
	return 0;
}

int
gp_scp03_check(struct gp_scp03 *s, const uint8_t *resp, size_t n,
    struct gp_err *err)
{
	int rc;

	if ((rc = state_is(s, GP_SCP03_IU_SENT, "card check", err)) != 0)
		return rc;
	rc = auth_checks(s, resp, n, NULL, 1, err);
	/* Either way the session goes no further: S-MAC released now. */
	(void)session_break(s, rc);
	return rc;
}

int
gp_scp03_confirm(struct gp_scp03 *s, const uint8_t *resp, size_t n,
    struct gp_err *err)
{
	const uint8_t *d;
	size_t dn;
	uint16_t sw;
	char swb[64];
	int rc;

	if ((rc = state_is(s, GP_SCP03_EA_SENT, "confirmation", err)) != 0)
		return rc;
	if ((rc = gp_resp_split(resp, n, &d, &dn, &sw, err)) != 0)
		return session_break(s, rc);
	if (sw != 0x9000)
		return session_break(s, gp_fail(err, ERR_SW, "EXTERNAL "
		    "AUTHENTICATE rejected: %s", gp_sw_str(sw, swb, sizeof(swb))));
	if (dn != 0)
		return session_break(s, gp_fail(err, ERR_PROTO, "EXTERNAL "
		    "AUTHENTICATE answered with %zu data bytes", dn));
	memset(s->counter, 0, sizeof(s->counter));
	s->state = GP_SCP03_OPEN;
	return 0;
}

/*
 * CLA handling (gpref §1.5, ISO/IEC 7816-4 §5.1.1). The wire CLA carries
 * the session's channel and the SM indication (b3 for channels 0-3, b6
 * for 4-19). The MAC input uses the channel-0 form with b3 set, so the
 * MAC does not depend on the channel (as PYSIM: (cla & F0) | 04; for the
 * further interindustry class we take the same channel-0 form).
 */
static int
cla_for_sm(const struct gp_scp03 *s, uint8_t cla, uint8_t *wire,
    uint8_t *mac_cla, struct gp_err *err)
{
	uint8_t base = cla & 0x80, chain = cla & 0x10, c;
	unsigned ch;

	if (cla == 0xFF)
		return gp_fail(err, ERR_INVAL, "SCP03: CLA FF is invalid");
	if (cla & 0x40) {
		if (cla & 0x20)
			return gp_fail(err, ERR_INVAL, "SCP03: CLA %02X already "
			    "indicates secure messaging", cla);
		ch = 4 + (cla & 0x0Fu);
	} else {
		if (cla & 0x0C)
			return gp_fail(err, ERR_INVAL, "SCP03: CLA %02X already "
			    "indicates secure messaging", cla);
		if (cla & 0x20)
			return gp_fail(err, ERR_INVAL, "SCP03: CLA %02X has the "
			    "RFU bit b6 set", cla);
		ch = cla & 0x03u;
	}
	if (ch != 0 && ch != s->channel)
		return gp_fail(err, ERR_INVAL, "SCP03: CLA %02X is on channel %u, "
		    "the session on %u", cla, ch, s->channel);
	if (gp_cla_channel(base, s->channel, &c) != 0)
		return gp_fail(err, ERR_INTERNAL, "SCP03: channel %u", s->channel);
	*wire = (uint8_t)(c | chain | (s->channel < 4 ? 0x04 : 0x20));
	*mac_cla = (uint8_t)(base | chain | 0x04);
	return 0;
}

static void
counter_inc(uint8_t c[16])
{
	int i;

	for (i = 15; i >= 0; i--)
		if (++c[i] != 0)
			break;
}

int
gp_scp03_wrap(struct gp_scp03 *s, const uint8_t *apdu, size_t n,
    struct buf *out, struct gp_err *err)
{
	static const uint8_t zero_iv[16];
	struct gp_apdu a;
	uint8_t wire = 0, mac_cla = 0;
	const uint8_t *d;
	size_t dn, padded;
	int rc;

	if ((rc = state_is(s, GP_SCP03_OPEN, "wrap", err)) != 0)
		return rc;
	if ((rc = gp_apdu_decode(apdu, n, &a, err)) != 0)
		return rc;
	if ((rc = cla_for_sm(s, a.cla, &wire, &mac_cla, err)) != 0)
		return rc;
	padded = (s->sl & GP_SL_CDEC) && a.lc > 0 ? (a.lc / 16 + 1) * 16 : a.lc;
	if (s->sl != 0 && padded + s->clen > 65535)
		return gp_fail(err, ERR_TOOBIG, "SCP03: %zu bytes of command data "
		    "do not fit once wrapped", a.lc);
	if ((rc = queue_reserve(s, err)) != 0)
		return rc;
	/* gpref §1.6: the counter moves before every command after EXTERNAL
	 * AUTHENTICATE, with or without data. */
	counter_inc(s->counter);
	if (s->sl == 0) {
		/* No secure messaging: the command only moves to the channel. */
		a.cla = (uint8_t)(wire & ~(s->channel < 4 ? 0x04 : 0x20));
		if ((rc = gp_apdu_encode(&a, out, err)) == 0)
			s->qlen++;
		return rc;
	}
	d = a.data;
	dn = a.lc;
	if ((s->sl & GP_SL_CDEC) && a.lc > 0) {
		/* gpref §1.6: ICV = E(S-ENC, counter); data = CBC(S-ENC, ICV,
		 * data || 80 00..). One backend call does both: CBC with a zero
		 * IV over counter || padded data gives E(counter) as its first
		 * block and the wanted ciphertext after it. */
		buf_reset(&s->t1);
		if ((rc = buf_reserve(&s->t1, 2 * (16 + padded))) != 0)
			return session_break(s, gp_fail(err, rc, "SCP03: %s",
			    err_str(rc)));
		memcpy(s->t1.p, s->counter, 16);
		memcpy(s->t1.p + 16, a.data, a.lc);
		s->t1.p[16 + a.lc] = 0x80;
		memset(s->t1.p + 17 + a.lc, 0, padded - a.lc - 1);
		s->t1.len = 2 * (16 + padded);
		if ((rc = s->be.encrypt(s->be.ctx, s->s_enc, GP_CBC, zero_iv,
		    s->t1.p, 16 + padded, s->t1.p + 16 + padded)) != 0)
			return session_break(s, gp_fail(err, rc, "SCP03: C-DEC: "
			    "backend: %s", err_str(rc)));
		d = s->t1.p + 16 + padded + 16;
		dn = padded;
	}
	rc = sm_finish(s, wire, mac_cla, &a, d, dn, out, err);
	buf_reset(&s->t1);
	/* The chain may have moved: a half-done wrap leaves no usable state. */
	if (rc != 0)
		return session_break(s, rc);
	memcpy(s->q[s->qlen].chain, s->chain, 16);
	memcpy(s->q[s->qlen].counter, s->counter, 16);
	s->qlen++;
	return 0;
}

static int
unwrap_checked(struct gp_scp03 *s, const struct pend *pc, const uint8_t *resp,
    size_t n, struct buf *out, struct gp_err *err)
{
	const uint8_t *d;
	size_t dn, body, i;
	uint16_t sw;
	uint8_t mac[16], icv[16], swb2[2];
	char swb[64];
	int rc;

	if ((rc = gp_resp_split(resp, n, &d, &dn, &sw, err)) != 0)
		return rc;
	buf_reset(out);
	if (!(s->sl & GP_SL_RMAC)) {
		if ((rc = buf_put(out, resp, n)) != 0)
			return gp_fail(err, rc, "SCP03: %s", err_str(rc));
		return 0;
	}
	/* gpref §1.7: only 9000/62xx/63xx carry data and an R-MAC. */
	if (!gp_sw_processed(sw)) {
		if (dn != 0)
			return gp_fail(err, ERR_RMAC, "response with %s carries "
			    "%zu bytes and no verifiable R-MAC",
			    gp_sw_str(sw, swb, sizeof(swb)), dn);
		if ((rc = buf_put(out, resp, n)) != 0)
			return gp_fail(err, rc, "SCP03: %s", err_str(rc));
		return 0;
	}
	if (dn < s->clen)
		return gp_fail(err, ERR_RMAC, "response of %zu data bytes has no "
		    "room for its %zu-byte R-MAC", dn, s->clen);
	body = dn - s->clen;
	swb2[0] = (uint8_t)(sw >> 8);
	swb2[1] = (uint8_t)sw;
	buf_reset(&s->t2);
	if ((rc = buf_put(&s->t2, pc->chain, 16)) != 0 ||
	    (rc = buf_put(&s->t2, d, body)) != 0 ||
	    (rc = buf_put(&s->t2, swb2, 2)) != 0)
		return gp_fail(err, rc, "SCP03: %s", err_str(rc));
	if ((rc = s->be.cmac(s->be.ctx, s->s_rmac, s->t2.p, s->t2.len, mac)) != 0)
		return gp_fail(err, rc, "SCP03: R-MAC: backend: %s", err_str(rc));
	if (!ct_equal(mac, d + body, s->clen))
		return gp_fail(err, ERR_RMAC, "bad R-MAC on the response to the "
		    "oldest command in flight (%s)",
		    gp_sw_str(sw, swb, sizeof(swb)));
	if (!(s->sl & GP_SL_RENC) || body == 0) {
		if ((rc = buf_put(out, d, body)) != 0 ||
		    (rc = buf_put(out, swb2, 2)) != 0)
			return gp_fail(err, rc, "SCP03: %s", err_str(rc));
		return 0;
	}
	/* gpref §1.7: ICV = E(S-ENC, 80 || counter[1..15]), then CBC. */
	if (body % 16 != 0)
		return gp_fail(err, ERR_PROTO, "R-ENC data of %zu bytes is not a "
		    "multiple of 16", body);
	memcpy(icv, pc->counter, 16);
	icv[0] = 0x80;
	if ((rc = s->be.encrypt(s->be.ctx, s->s_enc, GP_ECB, NULL, icv, 16,
	    mac)) != 0)
		return gp_fail(err, rc, "SCP03: R-ENC ICV: backend: %s",
		    err_str(rc));
	if ((rc = buf_reserve(out, body + 2)) != 0)
		return gp_fail(err, rc, "SCP03: %s", err_str(rc));
	if ((rc = s->be.decrypt(s->be.ctx, s->s_enc, GP_CBC, mac, d, body,
	    out->p)) != 0)
		return gp_fail(err, rc, "SCP03: R-ENC: backend: %s", err_str(rc));
	out->len = body;
	/* Strip 80 00.. padding. Not limited to the last block: the Samsung
	 * vectors pad 11 bytes to 32. Safe to be lenient here because the
	 * R-MAC over the ciphertext was verified first (no padding oracle). */
	for (i = body; i > 0 && out->p[i - 1] == 0x00; i--)
		;
	if (i == 0 || out->p[i - 1] != 0x80) {
		buf_reset(out);
		return gp_fail(err, ERR_PROTO, "R-ENC data has bad padding");
	}
	wipe(out->p + i - 1, body - (i - 1));
	out->len = i - 1;
	if ((rc = buf_put(out, swb2, 2)) != 0)
		return gp_fail(err, rc, "SCP03: %s", err_str(rc));
	return 0;
}

int
gp_scp03_unwrap(struct gp_scp03 *s, const uint8_t *resp, size_t n,
    struct buf *out, struct gp_err *err)
{
	struct pend *pc;
	int rc;

	if ((rc = state_is(s, GP_SCP03_OPEN, "unwrap", err)) != 0)
		return rc;
	if (s->qhead == s->qlen)
		return gp_fail(err, ERR_WRONGSTATE, "SCP03 unwrap refused: no "
		    "command awaits a response");
	pc = &s->q[s->qhead++];
	rc = unwrap_checked(s, pc, resp, n, out, err);
	wipe(pc, sizeof(*pc));
	if (rc != 0) {
		buf_reset(out);
		return session_break(s, rc);
	}
	return 0;
}
