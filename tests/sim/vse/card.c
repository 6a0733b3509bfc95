/*
 * card.c - life of a virtual SE object: create (identity, CPLC, ISD, the
 * preloaded SD package), open/save of its JSON file, power cycle,
 * provisioning of keys, inspection and the test hooks. Runs in the
 * process that links libvse; trusts the card file only after state.c
 * has validated it.
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/sim/vse/vse_int.h"

#define STATE_MAX (16u * 1024u * 1024u)

static const uint8_t default_isd[] = { 0xA0, 0x00, 0x00, 0x01, 0x51, 0x00,
    0x00, 0x00 };
/* Fabricator / IC type of the virtual SE in CPLC: "VS" 0001. */
static const uint8_t fab_type[] = { 0x56, 0x53, 0x00, 0x01 };

void
vse_config_init(struct vse_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->isd_i = 0x70;
	cfg->mem_nv = 512u * 1024u;
	cfg->mem_v = 8u * 1024u;
}

static struct vse *
card_alloc(void)
{
	struct vse *c = calloc(1, sizeof(*c));

	if (c == NULL)
		return NULL;
	buf_init(&c->last_plain);
	c->autosave = 1;
	c->ch[0].open = 1;
	return c;
}

void
vse_free(struct vse *c)
{
	size_t i;

	if (c == NULL)
		return;
	for (i = 0; i < VSE_CHANNELS; i++)
		vse_chan_reset(&c->ch[i]);
	for (i = 0; i < c->nents; i++)
		vse_entry_free(c->ents[i]);
	free(c->ents);
	buf_free(&c->last_plain);
	free(c->path);
	wipe(c, sizeof(*c));
	free(c);
}

void
vse_reset(struct vse *c)
{
	struct vse_entry *isd = vse_reg_isd(c);
	size_t i;

	for (i = 0; i < VSE_CHANNELS; i++) {
		vse_chan_reset(&c->ch[i]);
		memset(&c->ch[i], 0, sizeof(c->ch[i]));
	}
	c->ch[0].open = 1;
	/* GPC §11.9.2.3: the ISD is the default selected application here. */
	if (isd != NULL)
		c->ch[0].sel = isd->aid;
}

void
vse_card_forget(struct vse *c, const struct vse_entry *e)
{
	struct vse_chan *ch;
	size_t i;

	for (i = 0; i < VSE_CHANNELS; i++) {
		ch = &c->ch[i];
		if (vse_aid_eq(&ch->sel, &e->aid)) {
			vse_chan_reset(ch);
			memset(&ch->sel, 0, sizeof(ch->sel));
		}
		if (ch->s.state != VSE_SESS_NONE && vse_aid_eq(&ch->s.sd, &e->aid))
			vse_sess_clear(&ch->s);
		if (ch->perso && vse_aid_eq(&ch->perso_aid, &e->aid))
			ch->perso = 0;
		if (ch->load.active && (vse_aid_eq(&ch->load.sd, &e->aid) ||
		    vse_aid_eq(&ch->load.actor, &e->aid))) {
			buf_free(&ch->load.stream);
			memset(&ch->load, 0, sizeof(ch->load));
		}
	}
}

static int
i_valid(uint8_t i)
{
	/* gp-reference §1.1: b2-b4 and b8 RFU; R-ENC only with R-MAC. */
	return !(i & 0x8E) && (!(i & 0x40) || (i & 0x20));
}

static int
set_identity(struct vse *c, const char *se_id)
{
	uint8_t serial[4];
	size_t n, i;
	int rc;

	if (se_id == NULL) {
		if ((rc = vse_rand(serial, sizeof(serial))) != 0)
			return rc;
		memcpy(c->cin, fab_type, 4);
		memcpy(c->cin + 4, serial, 4);
		c->cin_len = 8;
	} else {
		n = strlen(se_id);
		if (n < 8 || n > 32 ||
		    hex_decode(se_id, n, c->cin, sizeof(c->cin), &i) != 0)
			return ERR_INVAL;
		c->cin_len = (uint8_t)i;
	}
	hex_encode_upper(c->cin, c->cin_len, c->se_id);
	return 0;
}

/* CPLC (gp-reference §5, 42 bytes); the IC serial is the seId's tail. */
static void
set_cplc(struct vse *c)
{
	uint8_t *p = c->cplc;

	memset(c->cplc, 0, sizeof(c->cplc));
	memcpy(p, fab_type, 4);			/* fabricator, IC type */
	p[4] = 0x56; p[5] = 0x53;		/* OS identifier */
	p[6] = 0x60; p[7] = 0x01;		/* OS release date */
	p[8] = 0x01; p[9] = 0x00;		/* OS release level */
	p[10] = 0x60; p[11] = 0x01;		/* IC fabrication date */
	memcpy(p + 12, c->cin + c->cin_len - 4, 4);	/* IC serial */
	p[16] = 0x00; p[17] = 0x01;		/* IC batch */
}

int
vse_create(struct vse **out, const char *path, const struct vse_config *cfg)
{
	struct vse_config def;
	struct vse *c = NULL;
	struct vse_entry *isd = NULL, *elf = NULL;
	struct vse_aid aid;
	int rc;

	*out = NULL;
	if (cfg == NULL) {
		vse_config_init(&def);
		cfg = &def;
	}
	if (path != NULL && access(path, F_OK) == 0)
		return ERR_EXISTS;
	if (!i_valid(cfg->isd_i) || cfg->mem_nv == 0 ||
	    (cfg->isd_aid != NULL && vse_aid_set(&aid, cfg->isd_aid,
	    cfg->isd_aid_len) != 0))
		return ERR_INVAL;
	if (cfg->isd_aid == NULL && vse_aid_set(&aid, default_isd,
	    sizeof(default_isd)) != 0)
		return ERR_INTERNAL;
	if ((c = card_alloc()) == NULL)
		return ERR_NOMEM;
	if ((rc = set_identity(c, cfg->se_id)) != 0)
		goto fail;
	set_cplc(c);
	memcpy(c->iin, "\x56\x53\x45", 3);
	c->iin_len = 3;
	if (cfg->kdd != NULL)
		memcpy(c->kdd, cfg->kdd, sizeof(c->kdd));
	else if (c->cin_len >= sizeof(c->kdd))
		memcpy(c->kdd, c->cin + c->cin_len - sizeof(c->kdd),
		    sizeof(c->kdd));
	else
		memcpy(c->kdd + sizeof(c->kdd) - c->cin_len, c->cin,
		    c->cin_len);
	if (cfg->eid != NULL) {
		memcpy(c->eid, cfg->eid, 16);
		c->has_eid = 1;
	}
	c->mem_nv = cfg->mem_nv;
	c->mem_v = cfg->mem_v;

	rc = ERR_NOMEM;
	if ((isd = vse_entry_new(VSE_KIND_ISD, &aid)) == NULL)
		goto fail;
	isd->lcs = VSE_CARD_SECURED;
	/* SD, card lock/terminate/reset, CVM; all of byte 2; receipts. */
	isd->priv[0] = 0x9E;
	isd->priv[1] = 0xFE;
	isd->priv[2] = 0x80;
	isd->scp_i = cfg->isd_i;
	if ((rc = vse_reg_add(c, isd)) != 0)
		goto fail;
	isd = NULL;
	if (!cfg->bare) {
		rc = ERR_NOMEM;
		if ((elf = vse_entry_new(VSE_KIND_ELF, &vse_sd_elf_aid)) == NULL)
			goto fail;
		elf->lcs = 0x01;
		elf->sd = aid;
		elf->nmodules = 1;
		elf->modules[0] = vse_sd_module_aid;
		if ((rc = vse_reg_add(c, elf)) != 0)
			goto fail;
		elf = NULL;
	}
	vse_reset(c);
	if (path != NULL) {
		rc = ERR_NOMEM;
		if ((c->path = strdup(path)) == NULL)
			goto fail;
		if ((rc = vse_save(c)) != 0)
			goto fail;
	}
	*out = c;
	return 0;
fail:
	vse_entry_free(isd);
	vse_entry_free(elf);
	vse_free(c);
	return rc;
}

int
vse_card_from_json(struct vse **out, const uint8_t *p, size_t n)
{
	struct vse *c;
	int rc;

	*out = NULL;
	if ((c = card_alloc()) == NULL)
		return ERR_NOMEM;
	if ((rc = vse_state_decode(c, p, n)) != 0) {
		vse_free(c);
		return rc;
	}
	vse_reset(c);
	*out = c;
	return 0;
}

int
vse_open(struct vse **out, const char *path)
{
	struct vse *c = NULL;
	struct buf b;
	int rc;

	*out = NULL;
	if (path == NULL)
		return ERR_INVAL;
	buf_init(&b);
	if ((rc = file_read_all(path, STATE_MAX, &b)) != 0 ||
	    (rc = vse_card_from_json(&c, b.p, b.len)) != 0)
		goto fail;
	rc = ERR_NOMEM;
	if ((c->path = strdup(path)) == NULL)
		goto fail;
	buf_free(&b);
	*out = c;
	return 0;
fail:
	buf_free(&b);
	vse_free(c);
	return rc;
}

int
vse_save(struct vse *c)
{
	char *json = NULL;
	int rc;

	if (c == NULL || c->path == NULL)
		return ERR_INVAL;
	if ((rc = vse_state_encode(c, &json)) != 0)
		return rc;
	/* Keys are in the file: owner-only, replaced atomically. */
	rc = file_write_atomic(c->path, json, strlen(json), 0600);
	wipe(json, strlen(json));
	free(json);
	if (rc == 0)
		c->dirty = 0;
	return rc;
}

int
vse_save_as(struct vse *c, const char *path)
{
	char *p;
	int rc;

	if (c == NULL || path == NULL)
		return ERR_INVAL;
	if (access(path, F_OK) == 0)
		return ERR_EXISTS;
	if ((p = strdup(path)) == NULL)
		return ERR_NOMEM;
	free(c->path);
	c->path = p;
	if ((rc = vse_save(c)) != 0) {
		free(c->path);
		c->path = NULL;
	}
	return rc;
}

void
vse_set_autosave(struct vse *c, int on)
{
	c->autosave = on;
}

const char *
vse_se_id(const struct vse *c)
{
	return c->se_id;
}

/* ---- provisioning ----------------------------------------------------------- */

static struct vse_entry *
sd_by_aid(const struct vse *c, const uint8_t *p, size_t n)
{
	struct vse_aid aid;
	struct vse_entry *e;

	if (p == NULL)
		return vse_reg_isd(c);
	if (vse_aid_set(&aid, p, n) != 0)
		return NULL;
	e = vse_reg_find(c, &aid);
	return vse_reg_is_sd(e) ? e : NULL;
}

static int
key_put(struct vse *c, const uint8_t *sd_aid, size_t sd_len, uint8_t kvn,
    const struct vse_key *k)
{
	struct vse_entry *sd = sd_by_aid(c, sd_aid, sd_len);
	struct vse_keyset *ks;
	struct vse_key *old;

	if (sd == NULL)
		return ERR_NOTFOUND;
	if (kvn == 0 || kvn > 0x7F || k->kid == 0 || k->kid > 0x7F)
		return ERR_INVAL;
	if ((ks = vse_keyset_find(sd, kvn)) == NULL) {
		if (sd->nkeysets >= VSE_MAX_KEYSETS)
			return ERR_LIMIT;
		ks = &sd->keysets[sd->nkeysets++];
		memset(ks, 0, sizeof(*ks));
		ks->kvn = kvn;
	}
	if ((old = vse_keyset_key(ks, k->kid)) != NULL)
		*old = *k;
	else if (ks->nkeys >= VSE_MAX_KEYS)
		return ERR_LIMIT;
	else
		ks->keys[ks->nkeys++] = *k;
	c->dirty = 1;
	return 0;
}

int
vse_key_put_aes(struct vse *c, const uint8_t *sd_aid, size_t sd_len,
    uint8_t kvn, uint8_t kid, const uint8_t *key, size_t keylen)
{
	struct vse_key k;
	int rc;

	if (!vse_aes_keylen_ok(keylen))
		return ERR_INVAL;
	memset(&k, 0, sizeof(k));
	k.kid = kid;
	k.type = VSE_KEY_AES;
	k.len = (uint16_t)keylen;
	memcpy(k.val, key, keylen);
	rc = key_put(c, sd_aid, sd_len, kvn, &k);
	wipe(&k, sizeof(k));
	return rc;
}

int
vse_keyset_put(struct vse *c, const uint8_t *sd_aid, size_t sd_len,
    uint8_t kvn, const uint8_t *enc, const uint8_t *mac, const uint8_t *dek,
    size_t keylen)
{
	struct vse_entry *sd = sd_by_aid(c, sd_aid, sd_len);
	struct vse_keyset *ks;
	int rc;

	if (sd == NULL)
		return ERR_NOTFOUND;
	if (kvn == 0 || kvn >= VSE_KVN_TOKEN)
		return ERR_INVAL;
	/* A provisioned set replaces any set of that version entirely. */
	if ((ks = vse_keyset_find(sd, kvn)) != NULL) {
		wipe(ks->keys, sizeof(ks->keys));
		ks->nkeys = 0;
		ks->seq = 0;
	}
	if ((rc = vse_key_put_aes(c, sd_aid, sd_len, kvn, 1, enc, keylen)) != 0 ||
	    (rc = vse_key_put_aes(c, sd_aid, sd_len, kvn, 2, mac, keylen)) != 0 ||
	    (rc = vse_key_put_aes(c, sd_aid, sd_len, kvn, 3, dek, keylen)) != 0)
		return rc;
	return 0;
}

int
vse_key_put_pem(struct vse *c, const uint8_t *sd_aid, size_t sd_len,
    uint8_t kvn, uint8_t kid, const char *pem)
{
	struct vse_key k;
	int rc;

	if ((rc = vse_key_from_pem(pem, &k)) != 0)
		return rc;
	k.kid = kid;
	return key_put(c, sd_aid, sd_len, kvn, &k);
}

/* ---- inspection ----------------------------------------------------------- */

static struct vse_entry *
entry_by(const struct vse *c, const uint8_t *aid, size_t n)
{
	struct vse_aid a;

	if (aid == NULL || vse_aid_set(&a, aid, n) != 0)
		return NULL;
	return vse_reg_find(c, &a);
}

int
vse_entry_get(const struct vse *c, const uint8_t *aid, size_t n,
    struct vse_entry_info *out)
{
	const struct vse_entry *e = entry_by(c, aid, n);

	memset(out, 0, sizeof(*out));
	if (e == NULL)
		return ERR_NOTFOUND;
	out->kind = (int)e->kind;
	out->lcs = e->lcs;
	memcpy(out->priv, e->priv, 3);
	memcpy(out->sd, e->sd.b, e->sd.len);
	out->sd_len = e->sd.len;
	out->use_nv = e->use_nv;
	out->use_v = e->use_v;
	out->has_quota_nv = e->has_quota_nv;
	out->has_quota_v = e->has_quota_v;
	out->quota_nv = e->quota_nv;
	out->quota_v = e->quota_v;
	if (vse_reg_is_sd(e))
		vse_reg_free_mem(c, e, &out->free_nv, &out->free_v);
	out->nkeysets = e->nkeysets;
	out->nrecords = e->nrecs;
	out->nmodules = e->nmodules;
	return 0;
}

int
vse_record_get(const struct vse *c, const uint8_t *aid, size_t n, size_t idx,
    uint8_t *p1, uint8_t *p2, const uint8_t **data, size_t *len)
{
	const struct vse_entry *e = entry_by(c, aid, n);

	if (e == NULL || idx >= e->nrecs)
		return ERR_NOTFOUND;
	*p1 = e->recs[idx].p1;
	*p2 = e->recs[idx].p2;
	*data = e->recs[idx].data;
	*len = e->recs[idx].len;
	return 0;
}

int
vse_seq_get(const struct vse *c, const uint8_t *sd_aid, size_t sd_len,
    uint8_t kvn, uint32_t *seq)
{
	struct vse_entry *sd = sd_by_aid(c, sd_aid, sd_len);
	struct vse_keyset *ks;

	if (sd == NULL || (ks = vse_keyset_find(sd, kvn)) == NULL)
		return ERR_NOTFOUND;
	*seq = ks->seq;
	return 0;
}

uint32_t
vse_confirmation_counter(const struct vse *c)
{
	return c->conf_counter;
}

static const char *
kind_name(enum vse_kind k)
{
	switch (k) {
	case VSE_KIND_ISD: return "ISD";
	case VSE_KIND_SSD: return "SSD";
	case VSE_KIND_APP: return "APP";
	case VSE_KIND_ELF: return "ELF";
	}
	return "?";
}

static const char *
lcs_name(const struct vse_entry *e)
{
	if (e->kind == VSE_KIND_ISD) {
		switch (e->lcs) {
		case VSE_CARD_OP_READY: return "OP_READY";
		case VSE_CARD_INITIALIZED: return "INITIALIZED";
		case VSE_CARD_SECURED: return "SECURED";
		case VSE_CARD_LOCKED: return "CARD_LOCKED";
		case VSE_CARD_TERMINATED: return "TERMINATED";
		}
		return "?";
	}
	if (e->kind == VSE_KIND_ELF)
		return e->lcs == 0x01 ? "LOADED" : "?";
	if (e->lcs & 0x80)
		return "LOCKED";
	switch (e->lcs) {
	case 0x03: return "INSTALLED";
	case 0x07: return "SELECTABLE";
	case 0x0F: return e->kind == VSE_KIND_SSD ? "PERSONALIZED" :
	    "SELECTABLE+";
	}
	return "APP_SPECIFIC";
}

static void
print_hex(FILE *f, const uint8_t *p, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		fprintf(f, "%02X", p[i]);
}

int
vse_print(const struct vse *c, FILE *f)
{
	const struct vse_entry *e;
	const struct vse_keyset *ks;
	const struct vse_key *k;
	uint8_t kcv[3];
	uint64_t nv, v;
	size_t i, j, m;

	fprintf(f, "seId      %s\n", c->se_id);
	fprintf(f, "CIN       ");
	print_hex(f, c->cin, c->cin_len);
	fprintf(f, "\nIIN       ");
	print_hex(f, c->iin, c->iin_len);
	fprintf(f, "\nKDD       ");
	print_hex(f, c->kdd, sizeof(c->kdd));
	fprintf(f, "\nCPLC      ");
	print_hex(f, c->cplc, sizeof(c->cplc));
	if (c->has_eid) {
		fprintf(f, "\nEID       ");
		print_hex(f, c->eid, sizeof(c->eid));
	}
	if ((e = vse_reg_isd(c)) != NULL) {
		vse_reg_free_mem(c, e, &nv, &v);
		fprintf(f, "\nmemory    NV %llu of %lu free, V %llu of %lu free\n",
		    (unsigned long long)nv, (unsigned long)c->mem_nv,
		    (unsigned long long)v, (unsigned long)c->mem_v);
	}
	fprintf(f, "confirmation counter %lu\nregistry (%zu entries)\n",
	    (unsigned long)c->conf_counter, c->nents);
	for (i = 0; i < c->nents; i++) {
		e = c->ents[i];
		fprintf(f, "  %s ", kind_name(e->kind));
		print_hex(f, e->aid.b, e->aid.len);
		fprintf(f, " lcs %02X %s", e->lcs, lcs_name(e));
		if (e->kind != VSE_KIND_ELF) {
			fprintf(f, " priv ");
			print_hex(f, e->priv, 3);
		}
		if (e->sd.len > 0) {
			fprintf(f, " sd ");
			print_hex(f, e->sd.b, e->sd.len);
		}
		if (vse_reg_is_sd(e))
			fprintf(f, " scp 03/%02X", e->scp_i);
		if (e->has_quota_nv || e->has_quota_v)
			fprintf(f, " quota nv %lu v %lu",
			    (unsigned long)e->quota_nv, (unsigned long)e->quota_v);
		if (e->use_nv || e->use_v)
			fprintf(f, " uses nv %lu v %lu", (unsigned long)e->use_nv,
			    (unsigned long)e->use_v);
		fprintf(f, "\n");
		for (m = 0; m < e->nmodules; m++) {
			fprintf(f, "      module ");
			print_hex(f, e->modules[m].b, e->modules[m].len);
			fprintf(f, "\n");
		}
		for (j = 0; j < e->nkeysets; j++) {
			ks = &e->keysets[j];
			fprintf(f, "      keyset KVN %02X seq %06lX:", ks->kvn,
			    (unsigned long)ks->seq);
			for (m = 0; m < ks->nkeys; m++) {
				k = &ks->keys[m];
				if (k->type == VSE_KEY_AES &&
				    vse_kcv_aes(k->val, k->len, kcv) == 0) {
					fprintf(f, " KID %02X AES-%u KCV ", k->kid,
					    (unsigned)k->len * 8);
					print_hex(f, kcv, 3);
				} else if (k->type == VSE_KEY_RSA)
					fprintf(f, " KID %02X RSA-%u", k->kid,
					    (unsigned)k->len * 8);
				else
					fprintf(f, " KID %02X EC-%s", k->kid,
					    k->curve == 0 ? "P256" : "P384");
			}
			fprintf(f, "\n");
		}
		for (j = 0; j < e->nrecs; j++) {
			fprintf(f, "      STORE DATA P1 %02X block %02X%s: ",
			    e->recs[j].p1, e->recs[j].p2,
			    e->recs[j].decrypted ? " (decrypted)" : "");
			print_hex(f, e->recs[j].data, e->recs[j].len);
			fprintf(f, "\n");
		}
	}
	return ferror(f) ? ERR_IO : 0;
}

/* ---- test hooks ------------------------------------------------------------- */

int
vse_test_force_challenge(struct vse *c, const uint8_t *ch, size_t n)
{
	if (n != 8 && n != 16)
		return ERR_INVAL;
	memcpy(c->forced, ch, n);
	c->forced_len = n;
	return 0;
}

int
vse_test_set_seq(struct vse *c, const uint8_t *sd_aid, size_t sd_len,
    uint8_t kvn, uint32_t next)
{
	struct vse_entry *sd = sd_by_aid(c, sd_aid, sd_len);
	struct vse_keyset *ks;

	if (next == 0 || next > 0xFFFFFF)
		return ERR_INVAL;
	if (sd == NULL || (ks = vse_keyset_find(sd, kvn)) == NULL)
		return ERR_NOTFOUND;
	ks->seq = next - 1;	/* the card increments before use */
	c->dirty = 1;
	return 0;
}

int
vse_test_force_renc_pad(struct vse *c, size_t n)
{
	if (n > VSE_RSP_DATA_MAX - 16)
		return ERR_INVAL;
	c->renc_pad = n;
	return 0;
}

int
vse_test_last_command(const struct vse *c, const uint8_t **p, size_t *n)
{
	if (c->last_plain.len == 0)
		return ERR_NOTFOUND;
	*p = c->last_plain.p;
	*n = c->last_plain.len;
	return 0;
}

int
vse_test_registry_put(struct vse *c, int kind, const uint8_t *aid, size_t n,
    uint8_t lcs, const uint8_t priv[3], const uint8_t *sd_aid, size_t sd_len)
{
	struct vse_aid a;
	struct vse_entry *e, *sd;
	int rc;

	if (kind < VSE_KIND_ISD || kind > VSE_KIND_ELF ||
	    vse_aid_set(&a, aid, n) != 0)
		return ERR_INVAL;
	sd = sd_by_aid(c, sd_aid, sd_len);
	if (kind != VSE_KIND_ISD && sd == NULL)
		return ERR_NOTFOUND;
	e = vse_reg_find(c, &a);
	if (kind == VSE_KIND_ISD && (e == NULL || e->kind != VSE_KIND_ISD))
		return ERR_INVAL;
	if (e != NULL && (int)e->kind != kind)
		return ERR_EXISTS;
	if (e == NULL) {
		if ((e = vse_entry_new((enum vse_kind)kind, &a)) == NULL)
			return ERR_NOMEM;
		if ((rc = vse_reg_add(c, e)) != 0) {
			vse_entry_free(e);
			return rc;
		}
	}
	e->lcs = lcs;
	if (priv != NULL)
		memcpy(e->priv, priv, 3);
	if (kind != VSE_KIND_ISD && sd != e)
		e->sd = sd->aid;
	c->dirty = 1;
	return 0;
}
