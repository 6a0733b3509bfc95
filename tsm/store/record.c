/*
 * record.c - keys and record codecs of the store: validation and uppercase
 * normalisation of ids, one encoder/decoder pair per record type (layouts
 * in STORE.md). Runs in tsmd and tsmctl; decoders trust none of the bytes
 * they are given (they come back from disk) and accept only canonical input.
 */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tsm/store/store_int.h"

/* ---- field classes ------------------------------------------------------ */

enum fclass {
	F_HEX,		/* uppercase hex (lowercase accepted on encode) */
	F_ID,		/* printable ASCII, no '|' */
	F_NAME,		/* [A-Za-z0-9_.-] */
	F_TEXT		/* no control characters */
};

struct fspec {
	enum fclass cls;
	size_t min, max;	/* characters; min 0 allows "" */
	int even;		/* hex: even length */
};

static const struct fspec F_SEID = { F_HEX, 2, STORE_SEID_MAX, 1 };
static const struct fspec F_SEID_OPT = { F_HEX, 0, STORE_SEID_MAX, 1 };
static const struct fspec F_AID = { F_HEX, 10, STORE_AID_MAX, 1 };
static const struct fspec F_SCP = { F_HEX, 0, 16, 1 };
static const struct fspec F_NONCE = { F_HEX, 1, STORE_NONCE_MAX, 0 };
static const struct fspec F_IDREQ = { F_ID, 1, STORE_ID_MAX, 0 };
static const struct fspec F_IDOPT = { F_ID, 0, STORE_ID_MAX, 0 };
static const struct fspec F_NAMEREQ = { F_NAME, 1, STORE_NAME_MAX, 0 };
static const struct fspec F_NAMEOPT = { F_NAME, 0, STORE_NAME_MAX, 0 };
static const struct fspec F_TEXTOPT = { F_TEXT, 0, STORE_TEXT_MAX, 0 };

static int
hexdigit(int c, int lower_ok)
{
	return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'F') ||
	    (lower_ok && c >= 'a' && c <= 'f');
}

static int
char_ok(enum fclass cls, unsigned char c, int lower_ok)
{
	switch (cls) {
	case F_HEX:
		return hexdigit(c, lower_ok);
	case F_ID:
		return c >= 0x21 && c <= 0x7E && c != '|';
	case F_NAME:
		return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
		    (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-';
	case F_TEXT:
		return c >= 0x20 && c != 0x7F;
	}
	return 0;
}

/* lower_ok: encoders accept lowercase hex (and write it uppercase);
 * decoders want the canonical form only. */
static int
field_ok(const struct fspec *f, const char *s, int lower_ok)
{
	size_t i, n;

	if (s == NULL)
		return 0;
	n = strnlen(s, f->max + 1);
	if (n < f->min || n > f->max || (f->even && n % 2 != 0))
		return 0;
	for (i = 0; i < n; i++)
		if (!char_ok(f->cls, (unsigned char)s[i], lower_ok))
			return 0;
	return 1;
}

static char
upper(char c)
{
	return (c >= 'a' && c <= 'z') ? (char)(c - 'a' + 'A') : c;
}

/* Appends s as lv16, uppercased if hex; ERR_INVAL if s breaks f. */
static int
put_field(struct buf *b, const struct fspec *f, const char *s)
{
	size_t i, n;
	int rc;

	if (!field_ok(f, s, 1))
		return ERR_INVAL;
	n = strlen(s);
	if ((rc = buf_put_u16(b, (uint16_t)n)) != 0 ||
	    (rc = buf_reserve(b, n)) != 0)
		return rc;
	for (i = 0; i < n; i++)
		b->p[b->len++] = f->cls == F_HEX ? upper(s[i]) : s[i];
	return 0;
}

/* Reads an lv16 field into out (cap bytes) and checks it against f. */
static int
get_field(struct rd *r, const struct fspec *f, char *out, size_t cap)
{
	if (rd_str(r, out, cap) != 0 || !field_ok(f, out, 0))
		return ERR_PARSE;
	return 0;
}

/* Copies s normalised (uppercase hex) into out at *off, plus sep. */
static int
key_part(char *out, size_t *off, const struct fspec *f, const char *s,
    char sep)
{
	size_t i, n;

	if (!field_ok(f, s, 1))
		return ERR_INVAL;
	n = strlen(s);
	if (*off + n + 2 > STORE_KEY_MAX + 1)
		return ERR_INVAL;
	for (i = 0; i < n; i++)
		out[(*off)++] = f->cls == F_HEX ? upper(s[i]) : s[i];
	if (sep)
		out[(*off)++] = sep;
	out[*off] = '\0';
	return 0;
}

/* ---- keys ----------------------------------------------------------------- */

int
store_key_se(char *out, const char *se_id)
{
	size_t off = 0;

	return key_part(out, &off, &F_SEID, se_id, 0);
}

int
store_key_ssd(char *out, const char *se_id, const char *sd_aid)
{
	size_t off = 0;
	int rc;

	if ((rc = key_part(out, &off, &F_SEID, se_id, '|')) != 0)
		return rc;
	return key_part(out, &off, &F_AID, sd_aid, 0);
}

int
store_key_keyset(char *out, const char *se_id, const char *sd_aid,
    uint8_t kvn)
{
	size_t off = 0;
	int rc;

	if (kvn == 0)
		return ERR_INVAL;
	if (se_id == NULL || se_id[0] == '\0') {
		out[off++] = '*';
		out[off++] = '|';
		out[off] = '\0';
	} else if ((rc = key_part(out, &off, &F_SEID, se_id, '|')) != 0)
		return rc;
	if ((rc = key_part(out, &off, &F_AID, sd_aid, '|')) != 0)
		return rc;
	snprintf(out + off, STORE_KEY_MAX + 1 - off, "%02X", kvn);
	return 0;
}

int
store_key_nonce(char *out, const char *peer, const char *nonce_hex)
{
	size_t off = 0;
	int rc;

	if ((rc = key_part(out, &off, &F_IDREQ, peer, '|')) != 0)
		return rc;
	return key_part(out, &off, &F_NONCE, nonce_hex, 0);
}

int
store_key_task(char *out, const char *id)
{
	size_t off = 0;

	return key_part(out, &off, &F_IDREQ, id, 0);
}

int
store_key_peer(char *out, const char *id)
{
	size_t off = 0;

	return key_part(out, &off, &F_IDREQ, id, 0);
}

int
store_task_idx_key(const char *se_id, const char *state, const char *id,
    char *out)
{
	size_t off = 0;
	int rc;

	if (se_id == NULL || se_id[0] == '\0') {
		out[off++] = '*';
		out[off++] = '|';
		out[off] = '\0';
	} else if ((rc = key_part(out, &off, &F_SEID, se_id, '|')) != 0)
		return rc;
	if ((rc = key_part(out, &off, &F_NAMEREQ, state, '|')) != 0)
		return rc;
	return key_part(out, &off, &F_IDREQ, id, 0);
}

int
store_key_sdstatus(char *out, const struct store_sdstatus *r)
{
	size_t off = 0;
	int rc;

	if ((rc = key_part(out, &off, &F_SEID, r->se_id, '|')) != 0 ||
	    (rc = key_part(out, &off, &F_AID, r->sd_aid, '|')) != 0)
		return rc;
	snprintf(out + off, STORE_KEY_MAX + 1 - off, "%016llX|%08X",
	    (unsigned long long)r->time, (unsigned)r->seq);
	return 0;
}

/* Document keys are the caller's: printable ASCII ('|' allowed, e.g.
 * "SEID|AID" for apps), 1..STORE_KEY_MAX bytes. */
int
store_key_doc_check_n(const void *key, size_t n)
{
	const uint8_t *p = key;
	size_t i;

	if (key == NULL || n == 0 || n > STORE_KEY_MAX)
		return ERR_INVAL;
	for (i = 0; i < n; i++)
		if (p[i] < 0x21 || p[i] > 0x7E)
			return ERR_INVAL;
	return 0;
}

int
store_key_doc_check(const char *key)
{
	if (key == NULL)
		return ERR_INVAL;
	return store_key_doc_check_n(key, strnlen(key, STORE_KEY_MAX + 1));
}

/* ---- dbs -------------------------------------------------------------------- */

static const char *const db_names[STORE_DB_COUNT] = {
	[STORE_DB_META] = "meta",
	[STORE_DB_SE] = "se",
	[STORE_DB_SSD] = "ssd",
	[STORE_DB_KEYSET] = "keyset",
	[STORE_DB_PEER] = "peer",
	[STORE_DB_TASK] = "task",
	[STORE_DB_TASK_IDX] = "task_by_se",
	[STORE_DB_IDEM] = "idem",
	[STORE_DB_NONCE] = "nonce",
	[STORE_DB_EXPIRY] = "expiry",
	[STORE_DB_SDSTATUS] = "sdstatus",
	[STORE_DB_PROVIDER] = "provider",
	[STORE_DB_APP] = "app",
	[STORE_DB_CERT] = "cert",
	[STORE_DB_NOTIFY] = "notification",
	[STORE_DB_KEYARCH] = "keyset_archive",
};

const char *
store_db_phys(enum store_db db)
{
	if (db == STORE_DB_SE || db == STORE_DB_SSD || db == STORE_DB_KEYSET)
		return STORE_BY_SE;
	return store_db_name(db);
}

int
store_key_fits(enum store_db db, const void *key, size_t n)
{
	const uint8_t *k = key;
	size_t i, bars = 0;

	if (db != STORE_DB_SE && db != STORE_DB_SSD && db != STORE_DB_KEYSET)
		return 1;
	for (i = 0; i < n; i++)
		bars += k[i] == '|';
	return bars == (size_t)(db - STORE_DB_SE);
}

const char *
store_db_name(enum store_db db)
{
	if ((unsigned)db >= STORE_DB_COUNT)
		return NULL;
	return db_names[db];
}

int
store_db_by_name(const char *name)
{
	int i;

	for (i = 0; i < STORE_DB_COUNT; i++)
		if (name != NULL && strcmp(name, db_names[i]) == 0)
			return i;
	return ERR_NOTFOUND;
}

int
store_db_rec_type(enum store_db db)
{
	switch (db) {
	case STORE_DB_SE: return STORE_REC_SE;
	case STORE_DB_SSD: return STORE_REC_SSD;
	case STORE_DB_KEYSET: return STORE_REC_KEYSET;
	case STORE_DB_PEER: return STORE_REC_PEER;
	case STORE_DB_TASK: return STORE_REC_TASK;
	case STORE_DB_IDEM: return STORE_REC_IDEM;
	case STORE_DB_NONCE: return STORE_REC_NONCE;
	case STORE_DB_SDSTATUS: return STORE_REC_SDSTATUS;
	case STORE_DB_PROVIDER: return STORE_REC_PROVIDER;
	case STORE_DB_APP: return STORE_REC_APP;
	case STORE_DB_CERT: return STORE_REC_CERT;
	case STORE_DB_NOTIFY: return STORE_REC_NOTIFY;
	case STORE_DB_KEYARCH: return STORE_REC_KEYARCH;
	default: return 0;
	}
}

int
store_rec_type_db(int type)
{
	int db;

	for (db = 0; db < STORE_DB_COUNT; db++)
		if (type != 0 && store_db_rec_type(db) == type)
			return db;
	return ERR_NOTFOUND;
}

/* ---- header and field tables --------------------------------------------- */

static int
put_header(struct buf *b, int type)
{
	int rc;

	if ((rc = buf_put_u8(b, (uint8_t)type)) != 0)
		return rc;
	return buf_put_u8(b, STORE_REC_VERSION);
}

/* Type must match; version 1 is the only one this build reads. */
static int
get_header(struct rd *r, int type)
{
	uint8_t t, v;

	if (rd_u8(r, &t) != 0 || rd_u8(r, &v) != 0)
		return ERR_PARSE;
	if (t != type || v != STORE_REC_VERSION)
		return ERR_PARSE;
	return 0;
}

/*
 * A run of a record's fields in on-disk order, read from and written to
 * the members of its struct: a string of a class (lv16), or a big-endian
 * integer as wide as the member (store.h's fixed-width types are the
 * on-disk widths of STORE.md). One table drives both the encoder and the
 * decoder, so the two cannot drift apart.
 */
struct field {
	const struct fspec *str;	/* NULL: an integer */
	size_t off, size;		/* the member */
};

#define FSTR(T, m, spec) { &(spec), offsetof(T, m), sizeof(((T *)0)->m) }
#define FINT(T, m) { NULL, offsetof(T, m), sizeof(((T *)0)->m) }

static int
put_fields(struct buf *b, const void *rec, const struct field *f, size_t n)
{
	const uint8_t *m;
	size_t i;
	int rc = 0;

	for (i = 0; i < n && rc == 0; i++) {
		m = (const uint8_t *)rec + f[i].off;
		if (f[i].str != NULL)
			rc = put_field(b, f[i].str, (const char *)m);
		else if (f[i].size == 1)
			rc = buf_put_u8(b, *m);
		else if (f[i].size == 2)
			rc = buf_put_u16(b, *(const uint16_t *)m);
		else if (f[i].size == 4)
			rc = buf_put_u32(b, *(const uint32_t *)m);
		else if (f[i].size == 8)
			rc = buf_put_u64(b, *(const uint64_t *)m);
		else
			rc = ERR_INTERNAL;
	}
	return rc;
}

static int
get_fields(struct rd *r, void *rec, const struct field *f, size_t n)
{
	uint8_t *m;
	size_t i;
	int rc = 0;

	for (i = 0; i < n && rc == 0; i++) {
		m = (uint8_t *)rec + f[i].off;
		if (f[i].str != NULL)
			rc = get_field(r, f[i].str, (char *)m, f[i].size);
		else if (f[i].size == 1)
			rc = rd_u8(r, m);
		else if (f[i].size == 2)
			rc = rd_u16(r, (uint16_t *)m);
		else if (f[i].size == 4)
			rc = rd_u32(r, (uint32_t *)m);
		else if (f[i].size == 8)
			rc = rd_u64(r, (uint64_t *)m);
		else
			rc = ERR_INTERNAL;
	}
	return rc == 0 || rc == ERR_INTERNAL ? rc : ERR_PARSE;
}

/* The encoders append; on failure they take back what they appended. */
#define ENC_BEGIN(b, type) \
	size_t enc_start_ = (b)->len; \
	int rc; \
	if ((rc = put_header((b), (type))) != 0) \
		goto out
#define ENC_END(b) \
out: \
	if (rc != 0) \
		(b)->len = enc_start_; \
	return rc

#define TRY(expr) do { if ((rc = (expr)) != 0) goto out; } while (0)
#define RD(expr) do { if ((expr) != 0) { rc = ERR_PARSE; goto out; } } while (0)
#define PUT_FIELDS(b, r, tbl) TRY(put_fields((b), (r), (tbl), ARRAY_LEN(tbl)))
#define GET_FIELDS(rd, r, tbl) TRY(get_fields((rd), (r), (tbl), ARRAY_LEN(tbl)))

/* Records that are only a field table: header, fields, nothing after. */
static int
encode_flat(struct buf *out, int type, const void *r, const struct field *f,
    size_t n)
{
	ENC_BEGIN(out, type);
	TRY(put_fields(out, r, f, n));
	ENC_END(out);
}

static int
decode_flat(const void *p, size_t n, int type, void *r,
    const struct field *f, size_t nf)
{
	struct rd rd;
	int rc;

	rd_init(&rd, p, n);
	TRY(get_header(&rd, type));
	TRY(get_fields(&rd, r, f, nf));
	RD(rd_end(&rd));
out:
	return rc;
}

/* ---- SE ----------------------------------------------------------------- */

static const struct field se_fields[] = {
	FSTR(struct store_se, se_id, F_SEID),
	FSTR(struct store_se, peer_id, F_IDOPT),
	FSTR(struct store_se, state, F_NAMEOPT),
	FINT(struct store_se, created),
	FINT(struct store_se, updated),
	FINT(struct store_se, last_seen),
};

int
store_se_encode(const struct store_se *r, struct buf *out)
{
	return encode_flat(out, STORE_REC_SE, r, se_fields,
	    ARRAY_LEN(se_fields));
}

int
store_se_decode(const void *p, size_t n, struct store_se *r)
{
	memset(r, 0, sizeof(*r));
	return decode_flat(p, n, STORE_REC_SE, r, se_fields,
	    ARRAY_LEN(se_fields));
}

/* ---- SSD ---------------------------------------------------------------- */

/* Before and after the priv_len privilege bytes. */
static const struct field ssd_head[] = {
	FSTR(struct store_ssd, se_id, F_SEID),
	FSTR(struct store_ssd, sd_aid, F_AID),
	FSTR(struct store_ssd, state, F_NAMEREQ),
	FSTR(struct store_ssd, prev_state, F_NAMEOPT),
	FINT(struct store_ssd, mode),
	FINT(struct store_ssd, priv_len),
};
static const struct field ssd_tail[] = {
	FSTR(struct store_ssd, scp_config, F_SCP),
	FINT(struct store_ssd, kvn_active),
	FINT(struct store_ssd, kvn_pending),
	FINT(struct store_ssd, quota_nv),
	FINT(struct store_ssd, quota_v),
	FINT(struct store_ssd, quota_apps),
	FSTR(struct store_ssd, task_id, F_IDOPT),
	FINT(struct store_ssd, created),
	FINT(struct store_ssd, updated),
};

static int
ssd_mode_ok(const struct store_ssd *r)
{
	return (r->mode == STORE_MODE_AMSD || r->mode == STORE_MODE_DMSD) &&
	    r->priv_len <= sizeof(r->priv);
}

int
store_ssd_encode(const struct store_ssd *r, struct buf *out)
{
	ENC_BEGIN(out, STORE_REC_SSD);
	if (!ssd_mode_ok(r)) {
		rc = ERR_INVAL;
		goto out;
	}
	PUT_FIELDS(out, r, ssd_head);
	TRY(buf_put(out, r->priv, r->priv_len));
	PUT_FIELDS(out, r, ssd_tail);
	ENC_END(out);
}

int
store_ssd_decode(const void *p, size_t n, struct store_ssd *r)
{
	const uint8_t *pv;
	struct rd rd;
	int rc;

	memset(r, 0, sizeof(*r));
	rd_init(&rd, p, n);
	TRY(get_header(&rd, STORE_REC_SSD));
	GET_FIELDS(&rd, r, ssd_head);
	if (!ssd_mode_ok(r)) {
		rc = ERR_PARSE;
		goto out;
	}
	RD(rd_bytes(&rd, r->priv_len, &pv));
	memcpy(r->priv, pv, r->priv_len);
	GET_FIELDS(&rd, r, ssd_tail);
	RD(rd_end(&rd));
out:
	return rc;
}

/* ---- key set -------------------------------------------------------------- */

void
store_keyset_init(struct store_keyset *k)
{
	memset(k, 0, sizeof(*k));
	buf_init(&k->blob);
}

void
store_keyset_cleanup(struct store_keyset *k)
{
	buf_free(&k->blob);
	memset(k, 0, sizeof(*k));
	buf_init(&k->blob);
}

/* Followed by n_keys × (usage, kcv_len, kcv), lv32 blob, u64 created. */
static const struct field keyset_head[] = {
	FSTR(struct store_keyset, se_id, F_SEID_OPT),
	FSTR(struct store_keyset, sd_aid, F_AID),
	FINT(struct store_keyset, kvn),
	FINT(struct store_keyset, alg),
	FSTR(struct store_keyset, usage, F_NAMEREQ),
	FSTR(struct store_keyset, source, F_IDOPT),
	FINT(struct store_keyset, n_keys),
};

int
store_keyset_encode(const struct store_keyset *r, struct buf *out)
{
	size_t i;

	ENC_BEGIN(out, STORE_REC_KEYSET);
	if (r->kvn == 0 || r->n_keys == 0 ||
	    r->n_keys > STORE_KEYSET_KEYS_MAX || r->blob.len == 0 ||
	    r->blob.len > STORE_BLOB_MAX) {
		rc = ERR_INVAL;
		goto out;
	}
	PUT_FIELDS(out, r, keyset_head);
	for (i = 0; i < r->n_keys; i++) {
		const struct store_keyset_key *k = &r->keys[i];

		if (k->kcv_len == 0 || k->kcv_len > STORE_KCV_MAX) {
			rc = ERR_INVAL;
			goto out;
		}
		TRY(buf_put_u8(out, k->usage));
		TRY(buf_put_u8(out, k->kcv_len));
		TRY(buf_put(out, k->kcv, k->kcv_len));
	}
	TRY(buf_put_lv32(out, r->blob.p, r->blob.len));
	TRY(buf_put_u64(out, r->created));
	ENC_END(out);
}

int
store_keyset_decode(const void *p, size_t n, struct store_keyset *r)
{
	const uint8_t *bp;
	size_t bn, i;
	struct rd rd;
	int rc;

	store_keyset_cleanup(r);
	rd_init(&rd, p, n);
	TRY(get_header(&rd, STORE_REC_KEYSET));
	GET_FIELDS(&rd, r, keyset_head);
	if (r->kvn == 0 || r->n_keys == 0 ||
	    r->n_keys > STORE_KEYSET_KEYS_MAX) {
		rc = ERR_PARSE;
		goto out;
	}
	for (i = 0; i < r->n_keys; i++) {
		struct store_keyset_key *k = &r->keys[i];

		RD(rd_u8(&rd, &k->usage));
		RD(rd_u8(&rd, &k->kcv_len));
		if (k->kcv_len == 0 || k->kcv_len > STORE_KCV_MAX) {
			rc = ERR_PARSE;
			goto out;
		}
		RD(rd_bytes(&rd, k->kcv_len, &bp));
		memcpy(k->kcv, bp, k->kcv_len);
	}
	RD(rd_lv32(&rd, STORE_BLOB_MAX, &bp, &bn));
	if (bn == 0) {
		rc = ERR_PARSE;
		goto out;
	}
	TRY(buf_put(&r->blob, bp, bn));
	RD(rd_u64(&rd, &r->created));
	RD(rd_end(&rd));
out:
	return rc;
}

/* ---- peer ------------------------------------------------------------------ */

static const struct field peer_fields[] = {
	FSTR(struct store_peer, id, F_IDREQ),
	FSTR(struct store_peer, tenant_id, F_IDOPT),
	FSTR(struct store_peer, base_url, F_TEXTOPT),
	FSTR(struct store_peer, wrap, F_NAMEOPT),
	FSTR(struct store_peer, kcv_method, F_NAMEOPT),
	FSTR(struct store_peer, kek_label, F_IDOPT),
	FSTR(struct store_peer, mac_key_id, F_IDOPT),
	FSTR(struct store_peer, mac_key_label, F_IDOPT),
	FSTR(struct store_peer, state, F_NAMEOPT),
	FINT(struct store_peer, created),
	FINT(struct store_peer, updated),
};

int
store_peer_encode(const struct store_peer *r, struct buf *out)
{
	return encode_flat(out, STORE_REC_PEER, r, peer_fields,
	    ARRAY_LEN(peer_fields));
}

int
store_peer_decode(const void *p, size_t n, struct store_peer *r)
{
	memset(r, 0, sizeof(*r));
	return decode_flat(p, n, STORE_REC_PEER, r, peer_fields,
	    ARRAY_LEN(peer_fields));
}

/* ---- task -------------------------------------------------------------------- */

void
store_task_init(struct store_task *t)
{
	memset(t, 0, sizeof(*t));
	buf_init(&t->ctx);
}

void
store_task_cleanup(struct store_task *t)
{
	buf_free(&t->ctx);
	free(t->hist);
	store_task_init(t);
}

int
store_task_hist_add(struct store_task *t, uint64_t time, const char *note)
{
	struct store_task_hist *h, *nh;

	if (note != NULL && !field_ok(&F_TEXTOPT, note, 0))
		return ERR_INVAL;
	if (!field_ok(&F_NAMEREQ, t->state, 0))
		return ERR_INVAL;
	if (t->n_hist > STORE_HIST_MAX || (t->n_hist > 0 && t->hist == NULL))
		return ERR_INVAL;
	if (t->n_hist == STORE_HIST_MAX) {
		memmove(t->hist, t->hist + 1,
		    (STORE_HIST_MAX - 1) * sizeof(*t->hist));
		t->n_hist--;
	} else {
		nh = realloc(t->hist, (t->n_hist + 1) * sizeof(*nh));
		if (nh == NULL)
			return ERR_NOMEM;
		t->hist = nh;
	}
	h = &t->hist[t->n_hist++];
	memset(h, 0, sizeof(*h));
	h->time = time;
	h->step = t->step;
	snprintf(h->state, sizeof(h->state), "%s", t->state);
	snprintf(h->note, sizeof(h->note), "%s", note ? note : "");
	return 0;
}

/* Followed by lv32 ctx, u16 n_hist and n_hist history entries. last_err
 * (int32_t) is stored as its two's complement u32. */
static const struct field task_head[] = {
	FSTR(struct store_task, id, F_IDREQ),
	FSTR(struct store_task, se_id, F_SEID_OPT),
	FSTR(struct store_task, kind, F_NAMEREQ),
	FSTR(struct store_task, state, F_NAMEREQ),
	FINT(struct store_task, step),
	FINT(struct store_task, last_err),
	FSTR(struct store_task, last_error, F_TEXTOPT),
	FINT(struct store_task, created),
	FINT(struct store_task, updated),
};
static const struct field task_hist[] = {
	FINT(struct store_task_hist, time),
	FSTR(struct store_task_hist, state, F_NAMEREQ),
	FINT(struct store_task_hist, step),
	FSTR(struct store_task_hist, note, F_TEXTOPT),
};

int
store_task_encode(const struct store_task *r, struct buf *out)
{
	size_t i;

	ENC_BEGIN(out, STORE_REC_TASK);
	if (r->ctx.len > STORE_CTX_MAX || r->n_hist > STORE_HIST_MAX ||
	    (r->n_hist > 0 && r->hist == NULL)) {
		rc = ERR_INVAL;
		goto out;
	}
	PUT_FIELDS(out, r, task_head);
	TRY(buf_put_lv32(out, r->ctx.p, r->ctx.len));
	TRY(buf_put_u16(out, (uint16_t)r->n_hist));
	for (i = 0; i < r->n_hist; i++)
		PUT_FIELDS(out, &r->hist[i], task_hist);
	ENC_END(out);
}

int
store_task_decode(const void *p, size_t n, struct store_task *r)
{
	const uint8_t *cp;
	size_t cn, i;
	uint16_t nh;
	struct rd rd;
	int rc;

	store_task_cleanup(r);
	rd_init(&rd, p, n);
	TRY(get_header(&rd, STORE_REC_TASK));
	GET_FIELDS(&rd, r, task_head);
	RD(rd_lv32(&rd, STORE_CTX_MAX, &cp, &cn));
	TRY(buf_put(&r->ctx, cp, cn));
	RD(rd_u16(&rd, &nh));
	if (nh > STORE_HIST_MAX) {
		rc = ERR_PARSE;
		goto out;
	}
	if (nh > 0) {
		r->hist = calloc(nh, sizeof(*r->hist));
		if (r->hist == NULL) {
			rc = ERR_NOMEM;
			goto out;
		}
	}
	for (i = 0; i < nh; i++) {
		r->n_hist = i + 1;
		GET_FIELDS(&rd, &r->hist[i], task_hist);
	}
	RD(rd_end(&rd));
out:
	return rc;
}

/* ---- idempotency record ------------------------------------------------------ */

void
store_idem_init(struct store_idem *r)
{
	memset(r, 0, sizeof(*r));
	buf_init(&r->body);
}

void
store_idem_cleanup(struct store_idem *r)
{
	buf_free(&r->body);
	store_idem_init(r);
}

/* After lv16 key; followed by lv32 body. */
static const struct field idem_fields[] = {
	FINT(struct store_idem, status),
	FINT(struct store_idem, created),
	FINT(struct store_idem, expires),
};

int
store_idem_encode(const struct store_idem *r, struct buf *out)
{
	ENC_BEGIN(out, STORE_REC_IDEM);
	if (r->key_len == 0 || r->key_len > STORE_DIGEST_MAX ||
	    r->body.len > STORE_BODY_MAX) {
		rc = ERR_INVAL;
		goto out;
	}
	TRY(buf_put_lv16(out, r->key, r->key_len));
	PUT_FIELDS(out, r, idem_fields);
	TRY(buf_put_lv32(out, r->body.p, r->body.len));
	ENC_END(out);
}

/* Reads the fixed prefix; the body is left in rd. */
static int
idem_head(struct rd *rd, struct store_idem *r)
{
	const uint8_t *kp;
	size_t kn;
	int rc;

	TRY(get_header(rd, STORE_REC_IDEM));
	RD(rd_lv16(rd, &kp, &kn));
	if (kn == 0 || kn > STORE_DIGEST_MAX) {
		rc = ERR_PARSE;
		goto out;
	}
	memcpy(r->key, kp, kn);
	r->key_len = kn;
	GET_FIELDS(rd, r, idem_fields);
out:
	return rc;
}

/* Checks a whole idempotency record and fills r but for the body, which
 * is left in place (*bp, *bn): key lookups copy no bodies. */
static int
idem_parse(const void *p, size_t n, struct store_idem *r,
    const uint8_t **bp, size_t *bn)
{
	struct rd rd;
	int rc;

	rd_init(&rd, p, n);
	TRY(idem_head(&rd, r));
	RD(rd_lv32(&rd, STORE_BODY_MAX, bp, bn));
	RD(rd_end(&rd));
out:
	return rc;
}

int
store_idem_decode(const void *p, size_t n, struct store_idem *r)
{
	const uint8_t *bp;
	size_t bn;
	int rc;

	store_idem_cleanup(r);
	if ((rc = idem_parse(p, n, r, &bp, &bn)) != 0)
		return rc;
	return buf_put(&r->body, bp, bn);
}

/* ---- nonce --------------------------------------------------------------------- */

static const struct field nonce_fields[] = {
	FSTR(struct store_nonce, peer, F_IDREQ),
	FSTR(struct store_nonce, nonce, F_NONCE),
	FINT(struct store_nonce, created),
	FINT(struct store_nonce, expires),
};

int
store_nonce_encode(const struct store_nonce *r, struct buf *out)
{
	return encode_flat(out, STORE_REC_NONCE, r, nonce_fields,
	    ARRAY_LEN(nonce_fields));
}

int
store_nonce_decode(const void *p, size_t n, struct store_nonce *r)
{
	memset(r, 0, sizeof(*r));
	return decode_flat(p, n, STORE_REC_NONCE, r, nonce_fields,
	    ARRAY_LEN(nonce_fields));
}

int
store_rec_expires(enum store_db db, const void *p, size_t n,
    uint64_t *expires)
{
	struct store_nonce nr;
	struct store_idem ir;
	struct rd rd;
	int rc;

	if (db == STORE_DB_NONCE) {
		if ((rc = store_nonce_decode(p, n, &nr)) == 0)
			*expires = nr.expires;
		return rc;
	}
	if (db != STORE_DB_IDEM)
		return ERR_INVAL;
	memset(&ir, 0, sizeof(ir));
	rd_init(&rd, p, n);
	if ((rc = idem_head(&rd, &ir)) == 0)
		*expires = ir.expires;
	return rc;
}

/* ---- sd-status event --------------------------------------------------------- */

static const struct field sdstatus_fields[] = {
	FSTR(struct store_sdstatus, se_id, F_SEID),
	FSTR(struct store_sdstatus, sd_aid, F_AID),
	FSTR(struct store_sdstatus, status, F_NAMEREQ),
	FSTR(struct store_sdstatus, source, F_IDOPT),
	FINT(struct store_sdstatus, time),
	FINT(struct store_sdstatus, seq),
};

int
store_sdstatus_encode(const struct store_sdstatus *r, struct buf *out)
{
	return encode_flat(out, STORE_REC_SDSTATUS, r, sdstatus_fields,
	    ARRAY_LEN(sdstatus_fields));
}

int
store_sdstatus_decode(const void *p, size_t n, struct store_sdstatus *r)
{
	memset(r, 0, sizeof(*r));
	return decode_flat(p, n, STORE_REC_SDSTATUS, r, sdstatus_fields,
	    ARRAY_LEN(sdstatus_fields));
}

/* ---- JSON documents ------------------------------------------------------------ */

static int
doc_type(enum store_db db)
{
	switch (db) {
	case STORE_DB_PROVIDER: case STORE_DB_APP:
	case STORE_DB_CERT: case STORE_DB_NOTIFY: case STORE_DB_KEYARCH:
		return store_db_rec_type(db);
	default:
		return 0;
	}
}

int
store_doc_encode(enum store_db db, const json_t *doc, struct buf *out)
{
	char *s = NULL;
	int type = doc_type(db);

	ENC_BEGIN(out, type);
	if (type == 0 || !json_is_object(doc)) {
		rc = ERR_INVAL;
		goto out;
	}
	/* Sorted and compact: equal documents give equal bytes. */
	s = json_dumps(doc, JSON_COMPACT | JSON_SORT_KEYS);
	if (s == NULL) {
		rc = ERR_NOMEM;
		goto out;
	}
	if (strlen(s) > STORE_BODY_MAX) {
		rc = ERR_INVAL;
		goto out;
	}
	TRY(buf_put_lv32(out, s, strlen(s)));
	rc = 0;
out:
	free(s);
	if (rc != 0)
		out->len = enc_start_;
	return rc;
}

int
store_doc_decode(enum store_db db, const void *p, size_t n, json_t **out)
{
	const uint8_t *jp;
	json_error_t jerr;
	json_t *j = NULL;
	size_t jn;
	struct rd rd;
	int rc, type = doc_type(db);

	*out = NULL;
	if (type == 0)
		return ERR_INVAL;
	rd_init(&rd, p, n);
	TRY(get_header(&rd, type));
	RD(rd_lv32(&rd, STORE_BODY_MAX, &jp, &jn));
	RD(rd_end(&rd));
	j = json_loadb((const char *)jp, jn, JSON_REJECT_DUPLICATES, &jerr);
	if (j == NULL || !json_is_object(j)) {
		rc = ERR_PARSE;
		goto out;
	}
	*out = j;
	j = NULL;
out:
	json_decref(j);
	return rc;
}

int
store_value_check(enum store_db db, const void *p, size_t n)
{
	uint8_t k[STORE_KEY_MAX + 1];
	json_t *j = NULL;
	size_t kn;
	int rc;

	if (doc_type(db) != 0) {
		rc = store_doc_decode(db, p, n, &j);
		json_decref(j);
		return rc;
	}
	/* Deriving the key decodes the whole value. */
	rc = store_rec_key(db, p, n, k, &kn);
	return rc == ERR_NOTSUP ? ERR_INVAL : rc;
}

int
store_rec_key(enum store_db db, const void *p, size_t n, uint8_t *out,
    size_t *outlen)
{
	char *k = (char *)out;
	union {
		struct store_se se;
		struct store_ssd ssd;
		struct store_peer peer;
		struct store_nonce nonce;
		struct store_sdstatus ev;
	} u;
	struct store_keyset ks;
	struct store_task t;
	struct store_idem id;
	const uint8_t *bp;
	size_t bn;
	int rc;

	switch (db) {
	case STORE_DB_SE:
		if ((rc = store_se_decode(p, n, &u.se)) == 0)
			rc = store_key_se(k, u.se.se_id);
		break;
	case STORE_DB_SSD:
		if ((rc = store_ssd_decode(p, n, &u.ssd)) == 0)
			rc = store_key_ssd(k, u.ssd.se_id, u.ssd.sd_aid);
		break;
	case STORE_DB_PEER:
		if ((rc = store_peer_decode(p, n, &u.peer)) == 0)
			rc = store_key_peer(k, u.peer.id);
		break;
	case STORE_DB_NONCE:
		if ((rc = store_nonce_decode(p, n, &u.nonce)) == 0)
			rc = store_key_nonce(k, u.nonce.peer, u.nonce.nonce);
		break;
	case STORE_DB_SDSTATUS:
		if ((rc = store_sdstatus_decode(p, n, &u.ev)) == 0)
			rc = store_key_sdstatus(k, &u.ev);
		break;
	case STORE_DB_KEYSET:
		store_keyset_init(&ks);
		if ((rc = store_keyset_decode(p, n, &ks)) == 0)
			rc = store_key_keyset(k, ks.se_id, ks.sd_aid, ks.kvn);
		store_keyset_cleanup(&ks);
		break;
	case STORE_DB_TASK:
		store_task_init(&t);
		if ((rc = store_task_decode(p, n, &t)) == 0)
			rc = store_key_task(k, t.id);
		store_task_cleanup(&t);
		break;
	case STORE_DB_IDEM:
		/* The key is the digest: binary, so not a string. */
		memset(&id, 0, sizeof(id));
		if ((rc = idem_parse(p, n, &id, &bp, &bn)) != 0)
			return rc;
		memcpy(out, id.key, id.key_len);
		*outlen = id.key_len;
		return 0;
	default:
		return ERR_NOTSUP;
	}
	if (rc != 0)
		return rc == ERR_INVAL ? ERR_PARSE : rc;
	*outlen = strlen(k);
	return 0;
}
