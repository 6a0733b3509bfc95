/*
 * gp_vse_cross_test.c - tsm/gp on the kmsd backend (real kmsd, SoftHSM2)
 * against the virtual SE, which shares no code with it: every i x security
 * level x S8/S16 x AES-128/256, a 20 KB LOAD with C-DEC sent as one batch,
 * INSTALL, PUT KEY of kmsd-generated key sets and a session on the new KVN.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kms/kms.h"
#include "tests/integration/sei_peer.h"
#include "tests/kmsenv.h"
#include "tests/sim/vse/vse.h"
#include "tests/tap.h"
#include "tsm/gp/gp.h"
#include "tsm/gp/gp_kms.h"

static struct kmsenv E;
static struct kms_client *M;		/* management: import, generate */
static struct gp_kms *G;
static struct gp_backend be;

static const uint8_t isd[] = { 0xA0, 0x00, 0x00, 0x01, 0x51, 0x00, 0x00, 0x00 };
static const uint8_t elf[] = { 0xA0, 0x00, 0x00, 0x09, 0x99, 0x20, 0x01 };
static const uint8_t mod[] = { 0xA0, 0x00, 0x00, 0x09, 0x99, 0x20, 0x01, 0x01 };
static const uint8_t app[] = { 0xA0, 0x00, 0x00, 0x09, 0x99, 0x20, 0x01, 0x01,
	0x01 };

/* ---- keys: known values into kmsd (AES-KW under peer/test/kek256) ----- */

struct kset {
	struct kms_keyset ks;
	gp_keyref enc, mac, dek;
	uint8_t   key[3][32];
	size_t    kl;
};

static const char *
last_err(void)
{
	static char m[256];

	return gp_kms_last_error(G, m, sizeof(m));
}

/* Three keys of kl bytes from `seed`, imported and opened on G. */
static void
kset_make(struct kset *s, size_t kl, uint8_t seed)
{
	struct kms_wrapped w[3];
	struct kms_keyset_kcvs kc;
	struct buf blob;
	uint8_t wrapped[3][48], kcv[3][3];
	size_t i, j;

	memset(s, 0, sizeof(*s));
	s->kl = kl;
	for (i = 0; i < 3; i++) {
		for (j = 0; j < kl; j++)
			s->key[i][j] = (uint8_t)(seed * 31 + i * 17 + j * 7 + 1);
		w[i].usage = (uint8_t)(KMS_USE_ENC + i);
		if (sp_aes_kw(kmsenv_kek256, 32, s->key[i], kl, wrapped[i],
		    &w[i].wlen) != 0 || sp_kcv_gp(s->key[i], kl, kcv[i]) != 0)
			bail("OpenSSL wrap or KCV");
		w[i].wrapped = wrapped[i];
		w[i].kcv = kcv[i];
		w[i].kcvlen = 3;
	}
	buf_init(&blob);
	if (kms_keyset_import(M, "peer/test/kek256", KMS_WRAP_AES_KW,
	    kl == 16 ? KMS_ALG_AES128 : KMS_ALG_AES256, KMS_KCV_GP, w, 3, &blob,
	    &kc) != 0)
		bail("keyset.import: %s", kms_last_error(M));
	if (gp_kms_keyset_open(G, blob.p, blob.len, 0, &s->ks) != 0 ||
	    gp_kms_keyset_ref(&s->ks, KMS_USE_ENC, &s->enc) != 0 ||
	    gp_kms_keyset_ref(&s->ks, KMS_USE_MAC, &s->mac) != 0 ||
	    gp_kms_keyset_ref(&s->ks, KMS_USE_DEK, &s->dek) != 0)
		bail("keyset.open: %s", last_err());
	buf_free(&blob);
}

static void
kset_drop(struct kset *s)
{
	if (gp_kms_keyset_close(G, &s->ks) != 0)
		diag("keyset close: %s", last_err());
	wipe(s, sizeof(*s));
}

/* A card whose ISD has SCP03 "i" and the key set at KVN 30. */
static struct vse *
card_new(uint8_t i, const struct kset *k)
{
	struct vse_config cfg;
	struct vse *c;

	vse_config_init(&cfg);
	cfg.isd_i = i;
	cfg.se_id = "5653000100C0FFEE";
	if (vse_create(&c, NULL, &cfg) != 0)
		bail("vse_create i=%02X", i);
	if (vse_keyset_put(c, NULL, 0, 0x30, k->key[0], k->key[1], k->key[2],
	    k->kl) != 0)
		bail("vse_keyset_put");
	return c;
}

/* ---- APDUs ------------------------------------------------------------ */

static uint16_t
sw_of(const struct buf *r)
{
	return r->len < 2 ? 0 : (uint16_t)(r->p[r->len - 2] << 8 | r->p[r->len - 1]);
}

static void
transmit(struct vse *c, const uint8_t *apdu, size_t n, struct buf *rsp)
{
	uint8_t raw[VSE_RSP_MAX];
	size_t rl;

	if (vse_transmit(c, apdu, n, raw, sizeof(raw), &rl) != 0)
		bail("vse_transmit");
	buf_reset(rsp);
	if (buf_put(rsp, raw, rl) != 0)
		bail("nomem");
}

/* Plain command -> wrap -> card -> unwrap; *plain = data || SW. */
static int
xmit(struct gp_scp03 *s, struct vse *c, const struct buf *cmd,
    struct buf *plain, struct gp_err *err)
{
	struct buf w, r;
	int rc;

	buf_init(&w);
	buf_init(&r);
	if ((rc = gp_scp03_wrap(s, cmd->p, cmd->len, &w, err)) == 0) {
		transmit(c, w.p, w.len, &r);
		rc = gp_scp03_unwrap(s, r.p, r.len, plain, err);
	}
	buf_free(&w);
	buf_free(&r);
	return rc;
}

/* SELECT ISD, INITIALIZE UPDATE, EXTERNAL AUTHENTICATE. */
static int
session_open(struct vse *c, const struct kset *k, uint8_t kvn, uint8_t sl,
    int s16, struct gp_scp03 **out, struct gp_err *err)
{
	struct gp_scp03_cfg cfg;
	struct gp_scp03 *s = NULL;
	struct buf a, r;
	int rc;

	*out = NULL;
	buf_init(&a);
	buf_init(&r);
	if (gp_select_build(isd, sizeof(isd), &a, err) != 0)
		bail("select");
	transmit(c, a.p, a.len, &r);
	if (sw_of(&r) != 0x9000)
		bail("SELECT ISD: %04X", sw_of(&r));
	memset(&cfg, 0, sizeof(cfg));
	cfg.be = &be;
	cfg.enc = k->enc;
	cfg.mac = k->mac;
	cfg.kvn = kvn;
	cfg.sl = sl;
	cfg.s16 = s16;
	cfg.sd_aid = isd;
	cfg.sd_aid_len = sizeof(isd);
	if ((rc = gp_scp03_new(&cfg, &s, err)) != 0 ||
	    (rc = gp_scp03_begin(s, NULL, &a, err)) != 0)
		goto out;
	transmit(c, a.p, a.len, &r);
	if ((rc = gp_scp03_auth(s, r.p, r.len, &a, err)) != 0)
		goto out;
	transmit(c, a.p, a.len, &r);
	if ((rc = gp_scp03_confirm(s, r.p, r.len, err)) != 0)
		goto out;
	*out = s;
	s = NULL;
out:
	gp_scp03_free(s);
	buf_free(&a);
	buf_free(&r);
	return rc;
}

/* GET STATUS of p1 with its entries in *l; SW 9000 expected. */
static int
get_status(struct gp_scp03 *s, struct vse *c, uint8_t p1,
    struct gp_status_list *l, struct gp_err *err)
{
	struct buf cmd, pl;
	int rc;

	buf_init(&cmd);
	buf_init(&pl);
	if ((rc = gp_get_status_build(p1, 0, NULL, 0, NULL, 0, &cmd, err)) == 0 &&
	    (rc = xmit(s, c, &cmd, &pl, err)) == 0) {
		if (sw_of(&pl) != 0x9000)
			rc = ERR_SW;
		else
			rc = gp_status_parse(pl.p, pl.len - 2, p1, 1, l, err);
	}
	buf_free(&cmd);
	buf_free(&pl);
	return rc;
}

static const struct gp_status_entry *
status_find(const struct gp_status_list *l, const uint8_t *aid, size_t n)
{
	size_t i;

	for (i = 0; i < l->n; i++)
		if (l->v[i].aid_len == n && memcmp(l->v[i].aid, aid, n) == 0)
			return &l->v[i];
	return NULL;
}

/* ---- the matrix ---------------------------------------------------------- */

/* GET STATUS, GET DATA (two data-less commands), STORE DATA with data. */
static void
exchange(struct gp_scp03 *s, struct vse *c, const char *name, size_t nrec)
{
	struct gp_status_list l;
	const struct gp_status_entry *e;
	struct buf cmd, pl;
	struct gp_err err;
	uint8_t data[40], p1, p2;
	const uint8_t *rec;
	size_t i, rl;
	int rc;

	buf_init(&cmd);
	buf_init(&pl);
	gp_status_list_init(&l);
	rc = get_status(s, c, GP_GS_ISD, &l, &err);
	e = status_find(&l, isd, sizeof(isd));
	ok(rc == 0 && e != NULL && e->lcs == 0x0F, "%s: GET STATUS: ISD SECURED%s%s",
	    name, rc ? ": " : "", rc ? err.msg : "");
	gp_status_list_free(&l);

	if (gp_get_data_build(0x80, GP_TAG_KDD, &cmd, &err) != 0)
		bail("get data");
	rc = xmit(s, c, &cmd, &pl, &err);
	ok(rc == 0 && sw_of(&pl) == 0x9000 && pl.len == 2 + 12 &&
	    pl.p[0] == 0xCF && pl.p[1] == 10 &&
	    memcmp(pl.p + 8, "\x00\xC0\xFF\xEE", 4) == 0,
	    "%s: GET DATA 00CF (no data): the KDD%s%s", name, rc ? ": " : "",
	    rc ? err.msg : "");
	if (gp_get_data_build(0x80, GP_TAG_CPLC, &cmd, &err) != 0)
		bail("get data");
	rc = xmit(s, c, &cmd, &pl, &err);
	if (rc == 0 && sw_of(&pl) == 0x9000) {
		struct gp_cplc cp;

		ok(gp_cplc_parse(pl.p, pl.len - 2, &cp, &err) == 0 &&
		    cp.ic_serial == 0x00C0FFEE, "%s: GET DATA 9F7F: CPLC, IC "
		    "serial 00C0FFEE", name);
	} else {
		ok(0, "%s: GET DATA 9F7F: %s %04X", name, rc ? err.msg : "",
		    sw_of(&pl));
	}

	/* one DGI (GP STORE DATA format 01): 0202 | 25 | 37 bytes */
	data[0] = 0x02;
	data[1] = 0x02;
	data[2] = sizeof(data) - 3;
	for (i = 3; i < sizeof(data); i++)
		data[i] = (uint8_t)(0xD0 + i + nrec);
	if (gp_store_data_build(GP_SD_LAST | GP_SD_DGI, 0, data, sizeof(data),
	    &cmd, &err) != 0)
		bail("store data");
	rc = xmit(s, c, &cmd, &pl, &err);
	ok(rc == 0 && pl.len == 2 && sw_of(&pl) == 0x9000 &&
	    vse_record_get(c, isd, sizeof(isd), nrec, &p1, &p2, &rec, &rl) == 0 &&
	    rl == sizeof(data) && memcmp(rec, data, rl) == 0 && p1 == 0x88,
	    "%s: STORE DATA of %zu bytes reached the card intact%s%s", name,
	    sizeof(data), rc ? ": " : "", rc ? err.msg : "");
	buf_free(&cmd);
	buf_free(&pl);
}

static void
test_matrix(void)
{
	static const uint8_t is[] = { 0x00, 0x10, 0x20, 0x30, 0x60, 0x70 };
	static const uint8_t sls[] = { 0x01, 0x03, 0x11, 0x13, 0x33 };
	static const size_t kls[] = { 16, 32 };
	size_t a, x, y, runs = 0, refused = 0, nrec;
	int s16;

	for (a = 0; a < 2; a++) {
		struct kset k;

		kset_make(&k, kls[a], (uint8_t)(0x10 + a));
		for (x = 0; x < sizeof(is); x++) {
			for (s16 = 0; s16 < 2; s16++) {
				uint8_t i = (uint8_t)(is[x] | s16);
				struct vse *c = card_new(i, &k);
				char skipped[64] = "";

				nrec = 0;
				for (y = 0; y < sizeof(sls); y++) {
					struct gp_scp03 *s;
					struct gp_err err;
					char name[80];
					int rc, supported = (!(sls[y] & 0x10) ||
					    (i & 0x20)) && (!(sls[y] & 0x20) ||
					    (i & 0x40));

					snprintf(name, sizeof(name), "AES-%zu i=%02X "
					    "%s SL %02X", kls[a] * 8, i, s16 ? "S16" :
					    "S8", sls[y]);
					rc = session_open(c, &k, 0x30, sls[y], s16, &s,
					    &err);
					if (!supported) {
						/* not a run: the host refuses the
						 * level this card cannot give */
						snprintf(skipped + strlen(skipped),
						    sizeof(skipped) - strlen(skipped),
						    " %02X", sls[y]);
						if (rc != ERR_NOTSUP)
							ok(0, "%s: host refuses the "
							    "level: %s", name, err.msg);
						refused++;
						gp_scp03_free(s);
						continue;
					}
					if (!ok(rc == 0, "%s: session through kmsd "
					    "with the virtual SE%s%s", name, rc ?
					    ": " : "", rc ? err.msg : ""))
						continue;
					exchange(s, c, name, nrec++);
					gp_scp03_free(s);
					runs++;
				}
				if (skipped[0])
					diag("AES-%zu i=%02X: SL%s skipped: i has no "
					    "%s (the host refuses them before EXTERNAL "
					    "AUTHENTICATE)", kls[a] * 8, i, skipped,
					    (i & 0x20) ? "R-ENC" : "R-MAC");
				vse_free(c);
			}
		}
		kset_drop(&k);
	}
	is_int((long)runs, 2 * 2 * (2 + 2 + 4 + 4 + 5 + 5),
	    "every supported (alg, i, S8/S16, SL) combination ran");
	is_int((long)refused, 2 * 2 * (3 + 3 + 1 + 1),
	    "every unsupported one was refused by the host with ERR_NOTSUP");
}

/* ---- 20 KB LOAD with C-DEC, INSTALL, GET STATUS ------------------------ */

static void
put(struct buf *b, const void *p, size_t n)
{
	if (buf_put(b, p, n) != 0)
		bail("nomem");
}

/* A Java Card CAP-shaped load file of exactly `total` bytes: Header
 * component (package = elf), Applet component (one applet = mod), and a
 * Method component of filler. The card takes its module list from it. */
static void
cap_file(struct buf *lfdb, size_t total)
{
	static const uint8_t hdr[] = { 0xDE, 0xCA, 0xFF, 0xED, 0x01, 0x02, 0x04,
		0x00, 0x01 };
	size_t head = 3 + sizeof(hdr) + 1 + sizeof(elf) + 3 + 2 + sizeof(mod) + 2,
	    filler = total - head - 3, i;
	uint8_t b[3];

	buf_reset(lfdb);
	b[0] = 0x01;
	b[1] = 0;
	b[2] = (uint8_t)(sizeof(hdr) + 1 + sizeof(elf));
	put(lfdb, b, 3);
	put(lfdb, hdr, sizeof(hdr));
	b[0] = sizeof(elf);
	put(lfdb, b, 1);
	put(lfdb, elf, sizeof(elf));
	b[0] = 0x03;
	b[2] = (uint8_t)(2 + sizeof(mod) + 2);
	put(lfdb, b, 3);
	b[0] = 1;
	b[1] = sizeof(mod);
	put(lfdb, b, 2);
	put(lfdb, mod, sizeof(mod));
	put(lfdb, "\x00\x10", 2);
	b[0] = 0x07;
	b[1] = (uint8_t)(filler >> 8);
	b[2] = (uint8_t)filler;
	put(lfdb, b, 3);
	for (i = 0; i < filler; i++) {
		b[0] = (uint8_t)((i * 2654435761u) >> 13);
		put(lfdb, b, 1);
	}
	if (lfdb->len != total)
		bail("cap_file: %zu bytes", lfdb->len);
}

static void
test_load(size_t kl, uint8_t i, uint8_t sl)
{
	enum { LFDB_LEN = 20 * 1024 };
	struct kset k;
	struct vse *c;
	struct gp_scp03 *s;
	struct gp_err err;
	struct gp_install in;
	struct gp_status_list l;
	const struct gp_status_entry *e;
	struct buf lfdb, stream, cmd, w, r, pl, params;
	struct buf *wire = NULL;
	uint8_t hash[32], load_params[] = { 0xEF, 0x04, 0xC6, 0x02, 0x50, 0x00 };
	size_t hl, bs, nb, b, good = 0;
	int last = 0, rc;
	char name[64];

	snprintf(name, sizeof(name), "LOAD AES-%zu i=%02X SL %02X", kl * 8, i, sl);
	buf_init(&lfdb);
	buf_init(&stream);
	buf_init(&cmd);
	buf_init(&w);
	buf_init(&r);
	buf_init(&pl);
	buf_init(&params);
	kset_make(&k, kl, (uint8_t)(0x40 + kl + sl));
	c = card_new(i, &k);
	if (!ok(session_open(c, &k, 0x30, sl, i & 1, &s, &err) == 0,
	    "%s: session", name)) {
		diag("%s", err.msg);
		goto out;
	}
	cap_file(&lfdb, LFDB_LEN);
	if (gp_lfdb_hash(GP_HASH_SHA256, lfdb.p, lfdb.len, hash, &hl, &err) != 0)
		bail("hash");

	memset(&in, 0, sizeof(in));
	in.kind = GP_INSTALL_FOR_LOAD;
	in.elf_aid = (struct gp_bytes){ elf, sizeof(elf) };
	in.sd_aid = (struct gp_bytes){ isd, sizeof(isd) };
	in.hash = (struct gp_bytes){ hash, hl };
	in.params = (struct gp_bytes){ load_params, sizeof(load_params) };
	if (gp_install_build(&in, &cmd, NULL, &err) != 0)
		bail("install: %s", err.msg);
	rc = xmit(s, c, &cmd, &pl, &err);
	ok(rc == 0 && sw_of(&pl) == 0x9000, "%s: INSTALL [for load] with the "
	    "SHA-256 LFDB hash", name);

	/* The LOAD blocks go as one batch, as through the agent API: all
	 * wrapped first, then sent, then all responses unwrapped. */
	if (gp_load_stream_build(lfdb.p, lfdb.len, NULL, 0, &stream, &err) != 0)
		bail("stream");
	bs = gp_scp03_block_size(s);
	nb = gp_block_count(stream.len, bs);
	if ((wire = calloc(nb, sizeof(*wire))) == NULL)
		bail("nomem");
	for (b = 0; b < nb; b++) {
		buf_init(&wire[b]);
		if (gp_load_build(stream.p, stream.len, bs, b, &cmd, &last,
		    &err) != 0 || gp_scp03_wrap(s, cmd.p, cmd.len, &w, &err) != 0)
			bail("%s: block %zu: %s", name, b, err.msg);
		if (w.len > 5 + 255 + 1 || buf_put(&wire[b], w.p, w.len) != 0)
			bail("%s: block %zu does not fit a short APDU", name, b);
	}
	for (b = 0; b < nb; b++) {
		transmit(c, wire[b].p, wire[b].len, &r);
		buf_reset(&wire[b]);
		if (buf_put(&wire[b], r.p, r.len) != 0)
			bail("nomem");
	}
	for (b = 0; b < nb; b++) {
		rc = gp_scp03_unwrap(s, wire[b].p, wire[b].len, &pl, &err);
		if (rc == 0 && sw_of(&pl) == 0x9000 &&
		    (b + 1 < nb ? pl.len == 2 : pl.len == 3 && pl.p[0] == 0x00))
			good++;
		else
			diag("%s: block %zu: %s %04X", name, b, rc ? err.msg : "",
			    sw_of(&pl));
		buf_free(&wire[b]);
	}
	ok(good == nb && last, "%s: %zu LFDB bytes in %zu LOAD blocks of %zu "
	    "(engine's size for this level), wrapped as one batch, all 9000, "
	    "last answers 00", name, lfdb.len, nb, bs);

	memset(&in, 0, sizeof(in));
	in.kind = GP_INSTALL_AND_SELECTABLE;
	in.elf_aid = (struct gp_bytes){ elf, sizeof(elf) };
	in.module_aid = (struct gp_bytes){ mod, sizeof(mod) };
	in.app_aid = (struct gp_bytes){ app, sizeof(app) };
	in.priv = (struct gp_bytes){ (const uint8_t *)"\x00", 1 };
	{
		struct gp_install_params ip;

		memset(&ip, 0, sizeof(ip));
		if (gp_install_params_build(&ip, &params, &err) != 0)
			bail("params: %s", err.msg);
	}
	in.params = (struct gp_bytes){ params.p, params.len };
	if (gp_install_build(&in, &cmd, NULL, &err) != 0)
		bail("install: %s", err.msg);
	rc = xmit(s, c, &cmd, &pl, &err);
	ok(rc == 0 && sw_of(&pl) == 0x9000, "%s: INSTALL [for install and make "
	    "selectable]", name);

	gp_status_list_init(&l);
	rc = get_status(s, c, GP_GS_ELF_MODULES, &l, &err);
	e = status_find(&l, elf, sizeof(elf));
	ok(rc == 0 && e != NULL && e->lcs == 0x01 && e->nmodules == 1 &&
	    e->modules[0].len == sizeof(mod) &&
	    memcmp(e->modules[0].aid, mod, sizeof(mod)) == 0,
	    "%s: GET STATUS shows the ELF LOADED with its module", name);
	gp_status_list_free(&l);
	gp_status_list_init(&l);
	rc = get_status(s, c, GP_GS_APPS, &l, &err);
	e = status_find(&l, app, sizeof(app));
	ok(rc == 0 && e != NULL && e->lcs == 0x07,
	    "%s: GET STATUS shows the application SELECTABLE", name);
	gp_status_list_free(&l);
	gp_scp03_free(s);
out:
	free(wire);
	vse_free(c);
	kset_drop(&k);
	buf_free(&lfdb);
	buf_free(&stream);
	buf_free(&cmd);
	buf_free(&w);
	buf_free(&r);
	buf_free(&pl);
	buf_free(&params);
}

/* ---- PUT KEY of a key set generated in kmsd ------------------------------ */

static void
test_put_key(size_t kl_old, size_t kl_new)
{
	struct kset k;
	struct kms_keyset nks;
	struct kms_keyset_kcvs kc;
	struct gp_put_key_expect exp;
	struct gp_scp03 *s;
	struct gp_err err;
	struct buf blob, cmd, pl;
	struct vse_entry_info ei;
	gp_keyref nk[3];
	struct kset nk_set;
	struct vse *c;
	char name[64];
	int rc;

	snprintf(name, sizeof(name), "PUT KEY AES-%zu under an AES-%zu DEK",
	    kl_new * 8, kl_old * 8);
	buf_init(&blob);
	buf_init(&cmd);
	buf_init(&pl);
	kset_make(&k, kl_old, (uint8_t)(0x70 + kl_old + kl_new));
	c = card_new(0x70, &k);

	if (kms_keyset_generate(M, kl_new == 16 ? KMS_ALG_AES128 :
	    KMS_ALG_AES256, KMS_KCV_GP, &blob, &kc) != 0)
		bail("keyset.generate: %s", kms_last_error(M));
	rc = gp_kms_keyset_open(G, blob.p, blob.len, KMS_OPEN_EXPORTABLE, &nks);
	if (!ok(rc == 0, "%s: new key set generated in kmsd, opened exportable",
	    name))
		goto out;
	if (gp_kms_keyset_ref(&nks, KMS_USE_ENC, &nk[0]) != 0 ||
	    gp_kms_keyset_ref(&nks, KMS_USE_MAC, &nk[1]) != 0 ||
	    gp_kms_keyset_ref(&nks, KMS_USE_DEK, &nk[2]) != 0)
		bail("members");
	if (!ok(session_open(c, &k, 0x30, 0x03, 0, &s, &err) == 0,
	    "%s: session on KVN 30", name))
		goto close;
	if (gp_put_key_scp03_build(&be, k.dek, 0x00, 0x31, nk, &cmd, &exp,
	    &err) != 0)
		bail("%s: %s", name, err.msg);
	rc = xmit(s, c, &cmd, &pl, &err);
	ok(rc == 0 && sw_of(&pl) == 0x9000 && gp_put_key_resp_check(pl.p,
	    pl.len - 2, &exp, &err) == 0 && memcmp(exp.kcv[0], kc.kcv[0], 3) == 0,
	    "%s: the card took KVN 31 and answered the KCVs kmsd recorded", name);
	gp_scp03_free(s);
	ok(vse_entry_get(c, isd, sizeof(isd), &ei) == 0 && ei.nkeysets == 2,
	    "%s: the ISD holds KVN 30 and 31", name);

	/* A session on the new KVN with the new (kmsd-generated) keys. */
	memset(&nk_set, 0, sizeof(nk_set));
	nk_set.enc = nk[0];
	nk_set.mac = nk[1];
	rc = session_open(c, &nk_set, 0x31, 0x33, 0, &s, &err);
	if (ok(rc == 0, "%s: new session on KVN 31 at SL 33%s%s", name,
	    rc ? ": " : "", rc ? err.msg : "")) {
		struct gp_scp03_info info;

		gp_scp03_get_info(s, &info);
		ok(info.kvn == 0x31, "%s: the card answered with KVN 31", name);
		exchange(s, c, name, 0);
		gp_scp03_free(s);
	}
close:
	if (gp_kms_keyset_close(G, &nks) != 0)
		diag("close: %s", last_err());
out:
	vse_free(c);
	kset_drop(&k);
	buf_free(&blob);
	buf_free(&cmd);
	buf_free(&pl);
}

int
main(void)
{
	struct kms_client *c;
	struct gp_kms_stats st;
	struct kms_status ks;

	log_init("gp_vse_cross_test", LOG_ERR);
	if (kmsenv_setup(&E, 0) != 0)
		bail("fixture");
	if (kmsenv_start(&E, NULL) != 0)
		bail("kmsd did not start (see %s)", E.log);
	if (kms_connect(&M, E.sock, "gp_vse_cross_test-mgmt") != 0 ||
	    kms_connect(&c, E.sock, "gp_vse_cross_test") != 0)
		bail("connect");
	if (gp_kms_new(c, &G) != 0)
		bail("gp_kms_new");
	gp_kms_backend(G, &be);

	test_matrix();
	test_load(16, 0x70, 0x03);
	test_load(16, 0x70, 0x33);
	test_load(32, 0x70, 0x03);
	test_load(32, 0x70, 0x33);
	test_load(16, 0x71, 0x33);
	test_put_key(16, 16);
	test_put_key(16, 32);
	test_put_key(32, 16);
	test_put_key(32, 32);

	gp_kms_stats(G, &st);
	is_int((long)st.live_refs, 0, "no key reference left registered");
	ok(kms_status(M, &ks) == 0 && ks.handles == 0,
	    "no handle left in kmsd (%u)", ks.handles);
	diag("%llu kmsd requests, %llu R-ENC ICVs from the look-ahead",
	    (unsigned long long)st.requests, (unsigned long long)st.icv_hits);
	gp_kms_free(G);
	kms_close(M);
	(void)kmsenv_stop(&E, 0);
	kmsenv_cleanup(&E);
	return done_testing();
}
