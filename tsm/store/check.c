/*
 * check.c - fsck and dump of tsmd's store (tsmctl store check / dump):
 * decodes every record, checks it sits under its own key and that every
 * reference and index entry resolves, all in one read snapshot; prints
 * records for humans with blobs as length + SHA-256 prefix only.
 * Runs in tsmctl (read-only open); trusts nothing it reads.
 */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "tsm/store/store_int.h"

/* Expiry sanity: a nonce outlives its window by far less than a day, an
 * idempotency record is not kept for more than a year. */
#define NONCE_LIFE_MAX (24u * 3600u)
#define IDEM_LIFE_MAX  (366u * 24u * 3600u)

struct ctx {
	struct store *st;
	MDB_txn *txn;
	FILE *out;
	uint64_t now;
	struct store_check_report *rep;
	int db;
	const char *label;	/* the db's name in reports, if not db's */
};

/* A key as text: printable keys as they are, others as 0x<hex>. */
static void
key_text(const uint8_t *k, size_t n, char *out, size_t cap)
{
	size_t i, printable = n > 0;

	for (i = 0; i < n; i++)
		if (k[i] < 0x21 || k[i] > 0x7E)
			printable = 0;
	if (printable) {
		snprintf(out, cap, "%.*s", (int)n, (const char *)k);
		return;
	}
	if (cap < 4) {
		out[0] = '\0';
		return;
	}
	out[0] = '0';
	out[1] = 'x';
	for (i = 0; i < n && 2 + 2 * i + 2 < cap; i++)
		snprintf(out + 2 + 2 * i, 3, "%02X", k[i]);
	out[2 + 2 * i] = '\0';
}

static void __attribute__((format(printf, 4, 5)))
problem(struct ctx *c, const uint8_t *k, size_t kn, const char *fmt, ...)
{
	char kt[2 * STORE_KEY_MAX + 8];
	va_list ap;

	key_text(k, kn, kt, sizeof(kt));
	fprintf(c->out, "problem db=%s key=%s: ", c->label ? c->label :
	    store_db_name(c->db), kt);
	va_start(ap, fmt);
	vfprintf(c->out, fmt, ap);
	va_end(ap);
	fputc('\n', c->out);
	c->rep->problems++;
}

/* 1 present, 0 absent, < 0 error. */
static int
present(struct ctx *c, int db, const void *k, size_t kn, MDB_val *v)
{
	MDB_val key = { kn, (void *)k }, val;
	int mrc;

	mrc = mdb_get(c->txn, c->st->dbi[db], &key, v ? v : &val);
	if (mrc == MDB_NOTFOUND)
		return 0;
	return mrc == 0 ? 1 : store_mdb_err(mrc);
}

/* Checks that a string key of db exists; reports otherwise. */
static int
need(struct ctx *c, const uint8_t *k, size_t kn, int db, const char *ref,
    const char *what)
{
	int rc = present(c, db, ref, strlen(ref), NULL);

	if (rc == 0)
		problem(c, k, kn, "%s %s missing", what, ref);
	return rc < 0 ? rc : 0;
}

static int
check_expiry(struct ctx *c, const uint8_t *k, size_t kn, uint64_t created,
    uint64_t expires, uint64_t life_max)
{
	uint8_t ik[STORE_KEY_MAX + 1];
	size_t i;
	int rc;

	if (expires < created)
		problem(c, k, kn, "expires %llu before created %llu",
		    (unsigned long long)expires, (unsigned long long)created);
	else if (expires - created > life_max)
		problem(c, k, kn, "lifetime %llu s beyond %llu s",
		    (unsigned long long)(expires - created),
		    (unsigned long long)life_max);
	if (expires <= c->now)
		c->rep->expired++;
	if (kn + 9 > STORE_KEY_MAX) {
		problem(c, k, kn, "key too long for the expiry index");
		return 0;
	}
	ik[0] = (uint8_t)store_db_rec_type(c->db);
	for (i = 0; i < 8; i++)
		ik[1 + i] = (uint8_t)(expires >> (56 - 8 * i));
	memcpy(ik + 9, k, kn);
	if ((rc = present(c, STORE_DB_EXPIRY, ik, kn + 9, NULL)) == 0)
		problem(c, k, kn, "no expiry index entry");
	return rc < 0 ? rc : 0;
}

static int
check_record(void *arg, const uint8_t *k, size_t kn, const uint8_t *v,
    size_t vn)
{
	struct ctx *c = arg;
	uint8_t want[STORE_KEY_MAX + 1];
	char ref[STORE_KEY_MAX + 1];
	size_t wn;
	int rc, doc;

	c->rep->records++;
	/* Deriving the key decodes the whole value; documents carry none. */
	rc = store_rec_key(c->db, v, vn, want, &wn);
	if ((doc = rc == ERR_NOTSUP))
		rc = store_value_check(c->db, v, vn);
	if (rc != 0) {
		problem(c, k, kn, "record does not decode (%s), %zu bytes",
		    err_name(rc), vn);
		return 0;
	}
	if (doc) {
		if (store_key_doc_check_n(k, kn) != 0)
			problem(c, k, kn, "malformed document key");
	} else if (wn != kn || memcmp(want, k, kn) != 0) {
		char wt[2 * STORE_KEY_MAX + 8];

		key_text(want, wn, wt, sizeof(wt));
		problem(c, k, kn, "record belongs under key %s", wt);
	}

	switch (c->db) {
	case STORE_DB_SSD: {
		struct store_ssd r;

		if (store_ssd_decode(v, vn, &r) != 0)
			return ERR_INTERNAL;
		if ((rc = store_key_se(ref, r.se_id)) == 0)
			rc = need(c, k, kn, STORE_DB_SE, ref, "SE");
		if (rc == 0 && r.task_id[0] != '\0' &&
		    (rc = store_key_task(ref, r.task_id)) == 0)
			rc = need(c, k, kn, STORE_DB_TASK, ref, "task");
		break;
	}
	case STORE_DB_KEYSET: {
		struct store_keyset r;

		store_keyset_init(&r);
		if (store_keyset_decode(v, vn, &r) != 0)
			rc = ERR_INTERNAL;
		else if (r.se_id[0] != '\0') {	/* master sets stand alone */
			if ((rc = store_key_se(ref, r.se_id)) == 0)
				rc = need(c, k, kn, STORE_DB_SE, ref, "SE");
			if (rc == 0 && (rc = store_key_ssd(ref, r.se_id,
			    r.sd_aid)) == 0)
				rc = need(c, k, kn, STORE_DB_SSD, ref, "SSD");
		}
		store_keyset_cleanup(&r);
		break;
	}
	case STORE_DB_TASK: {
		struct store_task r;

		store_task_init(&r);
		if (store_task_decode(v, vn, &r) != 0)
			rc = ERR_INTERNAL;
		else {
			if (r.se_id[0] != '\0' &&
			    (rc = store_key_se(ref, r.se_id)) == 0)
				rc = need(c, k, kn, STORE_DB_SE, ref, "SE");
			if (rc == 0 && (rc = store_task_idx_key(r.se_id,
			    r.state, r.id, ref)) == 0 &&
			    (rc = present(c, STORE_DB_TASK_IDX, ref,
			    strlen(ref), NULL)) == 0)
				problem(c, k, kn, "no task_by_se entry %s", ref);
			rc = rc < 0 ? rc : 0;
		}
		store_task_cleanup(&r);
		break;
	}
	case STORE_DB_SDSTATUS: {
		struct store_sdstatus r;

		if (store_sdstatus_decode(v, vn, &r) != 0)
			return ERR_INTERNAL;
		if ((rc = store_key_ssd(ref, r.se_id, r.sd_aid)) == 0)
			rc = need(c, k, kn, STORE_DB_SSD, ref, "SSD");
		break;
	}
	case STORE_DB_NONCE: {
		struct store_nonce r;

		if (store_nonce_decode(v, vn, &r) != 0)
			return ERR_INTERNAL;
		rc = check_expiry(c, k, kn, r.created, r.expires,
		    NONCE_LIFE_MAX);
		break;
	}
	case STORE_DB_IDEM: {
		struct store_idem r;

		store_idem_init(&r);
		if (store_idem_decode(v, vn, &r) != 0)
			rc = ERR_INTERNAL;
		else
			rc = check_expiry(c, k, kn, r.created, r.expires,
			    IDEM_LIFE_MAX);
		store_idem_cleanup(&r);
		break;
	}
	default:
		break;
	}
	/* Key functions refuse only what the decoder already refused. */
	return rc == ERR_INVAL ? ERR_INTERNAL : rc;
}

/* task_by_se: "SE|STATE|ID" -> empty; the task must exist and agree. */
static int
check_task_idx(void *arg, const uint8_t *k, size_t kn, const uint8_t *v,
    size_t vn)
{
	struct ctx *c = arg;
	char want[STORE_KEY_MAX + 1];
	const uint8_t *id = NULL;
	struct store_task t;
	MDB_val tv;
	size_t i;
	int rc;

	c->rep->records++;
	if (vn != 0)
		problem(c, k, kn, "index entry carries %zu value bytes", vn);
	for (i = kn; i > 0 && id == NULL; i--)
		if (k[i - 1] == '|')
			id = k + i;
	if (id == NULL || id == k + kn) {
		problem(c, k, kn, "malformed index key");
		return 0;
	}
	rc = present(c, STORE_DB_TASK, id, (size_t)(k + kn - id), &tv);
	if (rc < 0)
		return rc;
	if (rc == 0) {
		problem(c, k, kn, "dangling: task %.*s missing",
		    (int)(k + kn - id), (const char *)id);
		return 0;
	}
	store_task_init(&t);
	if (store_task_decode(tv.mv_data, tv.mv_size, &t) == 0 &&
	    store_task_idx_key(t.se_id, t.state, t.id, want) == 0 &&
	    (strlen(want) != kn || memcmp(want, k, kn) != 0))
		problem(c, k, kn, "stale: the task's entry is %s", want);
	store_task_cleanup(&t);
	return 0;
}

/* expiry: u8 record type | u64 expires | key -> empty; the record must
 * exist with that expiry. */
static int
check_expiry_idx(void *arg, const uint8_t *k, size_t kn, const uint8_t *v,
    size_t vn)
{
	struct ctx *c = arg;
	uint64_t exp = 0, rexp;
	MDB_val pv;
	size_t i;
	int rc, db;

	c->rep->records++;
	if (vn != 0)
		problem(c, k, kn, "index entry carries %zu value bytes", vn);
	if (kn < 10 || (k[0] != STORE_REC_NONCE && k[0] != STORE_REC_IDEM)) {
		problem(c, k, kn, "malformed index key");
		return 0;
	}
	db = store_rec_type_db(k[0]);
	for (i = 1; i < 9; i++)
		exp = exp << 8 | k[i];
	rc = present(c, db, k + 9, kn - 9, &pv);
	if (rc < 0)
		return rc;
	if (rc == 0)
		problem(c, k, kn, "dangling: %s record missing",
		    store_db_name(db));
	else if (store_rec_expires(db, pv.mv_data, pv.mv_size, &rexp) == 0 &&
	    rexp != exp)
		problem(c, k, kn, "stale: the record expires at %llu",
		    (unsigned long long)rexp);
	return 0;
}

static int
check_meta(void *arg, const uint8_t *k, size_t kn, const uint8_t *v,
    size_t vn)
{
	struct ctx *c = arg;
	uint32_t ver;

	c->rep->records++;
	if (kn == 6 && memcmp(k, "schema", 6) == 0) {
		ver = vn == 4 ? (uint32_t)v[0] << 24 | (uint32_t)v[1] << 16 |
		    (uint32_t)v[2] << 8 | v[3] : 0;
		if (ver != STORE_SCHEMA_VERSION)
			problem(c, k, kn, "schema %u, this build reads %u",
			    (unsigned)ver, STORE_SCHEMA_VERSION);
	}
	return 0;
}

/* A key of the shared db that is none of an SE's, an SSD's or a key set's:
 * no typed walk sees its record. */
static int
check_shape(void *arg, const uint8_t *k, size_t kn, const uint8_t *v,
    size_t vn)
{
	struct ctx *c = arg;

	(void)v;
	(void)vn;
	if (!store_key_fits(STORE_DB_SE, k, kn) &&
	    !store_key_fits(STORE_DB_SSD, k, kn) &&
	    !store_key_fits(STORE_DB_KEYSET, k, kn)) {
		c->rep->records++;
		problem(c, k, kn, "no SE, SSD or key-set key (its count of '|' "
		    "fits none): no walk sees it");
	}
	return 0;
}

int
store_check(struct store *st, uint64_t now, FILE *out,
    struct store_check_report *rep)
{
	struct ctx c;
	store_raw_cb cb;
	MDB_txn *txn = NULL;
	MDB_val k = { 6, (void *)"schema" }, v;
	int rc;

	memset(rep, 0, sizeof(*rep));
	if ((rc = store_mdb_err(mdb_txn_begin(st->env, NULL, MDB_RDONLY,
	    &txn))) != 0)
		return rc;
	memset(&c, 0, sizeof(c));
	c.st = st;
	c.txn = txn;
	c.out = out;
	c.now = now;
	c.rep = rep;
	for (c.db = 0; c.db < STORE_DB_COUNT; c.db++) {
		if (c.db == STORE_DB_META)
			cb = check_meta;
		else if (c.db == STORE_DB_TASK_IDX)
			cb = check_task_idx;
		else if (c.db == STORE_DB_EXPIRY)
			cb = check_expiry_idx;
		else
			cb = check_record;
		if ((rc = store_walk(st, txn, c.db, NULL, 0, cb, &c)) != 0)
			goto out;
	}
	c.db = STORE_DB_SE;
	c.label = STORE_BY_SE;
	if ((rc = store_walk_phys(st, txn, c.db, NULL, 0, check_shape,
	    &c)) != 0)
		goto out;
	c.label = NULL;
	c.db = STORE_DB_META;
	if (mdb_get(txn, st->dbi[STORE_DB_META], &k, &v) != 0)
		problem(&c, k.mv_data, k.mv_size, "no schema record");
	rc = 0;
out:
	mdb_txn_abort(txn);
	return rc;
}

/* ---- dump --------------------------------------------------------------------- */

/* "len:N,sha256:<first 8 bytes>": enough to compare, nothing to reuse. */
static void
blob_text(const uint8_t *p, size_t n, char *out, size_t cap)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	char hx[17];

	if (EVP_Digest(p, n, md, &mdlen, EVP_sha256(), NULL) != 1 || mdlen < 8) {
		snprintf(out, cap, "len:%zu,sha256:?", n);
		return;
	}
	hex_encode(md, 8, hx);
	snprintf(out, cap, "len:%zu,sha256:%s", n, hx);
}

static const char *
mode_name(uint8_t m)
{
	return m == STORE_MODE_AMSD ? "AMSD" : m == STORE_MODE_DMSD ? "DMSD" :
	    "?";
}

struct dctx {
	FILE *out;
	int db;
};

static int
dump_record(void *arg, const uint8_t *k, size_t kn, const uint8_t *v,
    size_t vn)
{
	struct dctx *d = arg;
	char kt[2 * STORE_KEY_MAX + 8], b1[80], hx[2 * STORE_KEY_MAX + 8];
	FILE *o = d->out;
	size_t i;
	int rc = ERR_PARSE;

	key_text(k, kn, kt, sizeof(kt));
	fprintf(o, "%s %s", store_db_name(d->db), kt);
	switch (d->db) {
	case STORE_DB_META:
		if (kn == 6 && memcmp(k, "schema", 6) == 0 && vn == 4) {
			fprintf(o, " schema=%u", (unsigned)((uint32_t)v[0] << 24 |
			    (uint32_t)v[1] << 16 | (uint32_t)v[2] << 8 | v[3]));
			rc = 0;
		} else {
			blob_text(v, vn, b1, sizeof(b1));
			fprintf(o, " value=%s", b1);
			rc = 0;
		}
		break;
	case STORE_DB_TASK_IDX:
		rc = 0;
		break;
	case STORE_DB_EXPIRY:
		if (kn >= 10) {
			uint64_t exp = 0;
			int db = store_rec_type_db(k[0]);

			for (i = 1; i < 9; i++)
				exp = exp << 8 | k[i];
			key_text(k + 9, kn - 9, hx, sizeof(hx));
			fprintf(o, " for=%s expires=%llu key=%s",
			    db >= 0 ? store_db_name(db) : "?",
			    (unsigned long long)exp, hx);
			rc = 0;
		}
		break;
	case STORE_DB_SE: {
		struct store_se r;

		if ((rc = store_se_decode(v, vn, &r)) == 0)
			fprintf(o, " peer=%s state=%s created=%llu updated=%llu "
			    "last_seen=%llu", r.peer_id, r.state,
			    (unsigned long long)r.created,
			    (unsigned long long)r.updated,
			    (unsigned long long)r.last_seen);
		break;
	}
	case STORE_DB_SSD: {
		struct store_ssd r;

		if ((rc = store_ssd_decode(v, vn, &r)) == 0) {
			hex_encode_upper(r.priv, r.priv_len, hx);
			fprintf(o, " state=%s prev_state=%s mode=%s priv=%s "
			    "scp=%s kvn_active=%02X kvn_pending=%02X quota_nv=%u "
			    "quota_v=%u quota_apps=%u task=%s created=%llu "
			    "updated=%llu", r.state, r.prev_state,
			    mode_name(r.mode), hx, r.scp_config, r.kvn_active,
			    r.kvn_pending, (unsigned)r.quota_nv,
			    (unsigned)r.quota_v, (unsigned)r.quota_apps,
			    r.task_id, (unsigned long long)r.created,
			    (unsigned long long)r.updated);
		}
		break;
	}
	case STORE_DB_KEYSET: {
		struct store_keyset r;

		store_keyset_init(&r);
		if ((rc = store_keyset_decode(v, vn, &r)) == 0) {
			blob_text(r.blob.p, r.blob.len, b1, sizeof(b1));
			fprintf(o, " kvn=%02X alg=%u usage=%s source=%s "
			    "created=%llu blob=%s kcv=", r.kvn, r.alg, r.usage,
			    r.source, (unsigned long long)r.created, b1);
			for (i = 0; i < r.n_keys; i++) {
				hex_encode_upper(r.keys[i].kcv, r.keys[i].kcv_len,
				    hx);
				fprintf(o, "%s%u:%s", i ? "," : "",
				    r.keys[i].usage, hx);
			}
		}
		store_keyset_cleanup(&r);
		break;
	}
	case STORE_DB_PEER: {
		struct store_peer r;

		if ((rc = store_peer_decode(v, vn, &r)) == 0)
			fprintf(o, " tenant=%s url=%s wrap=%s kcv=%s kek=%s "
			    "mac_key_id=%s mac_key=%s state=%s created=%llu "
			    "updated=%llu", r.tenant_id, r.base_url, r.wrap,
			    r.kcv_method, r.kek_label, r.mac_key_id,
			    r.mac_key_label, r.state,
			    (unsigned long long)r.created,
			    (unsigned long long)r.updated);
		break;
	}
	case STORE_DB_TASK: {
		struct store_task r;

		store_task_init(&r);
		if ((rc = store_task_decode(v, vn, &r)) == 0) {
			blob_text(r.ctx.p ? r.ctx.p : (const uint8_t *)"",
			    r.ctx.len, b1, sizeof(b1));
			fprintf(o, " se=%s kind=%s state=%s step=%u last_err=%d "
			    "last_error=\"%s\" created=%llu updated=%llu ctx=%s "
			    "history=%zu", r.se_id, r.kind, r.state,
			    (unsigned)r.step, (int)r.last_err, r.last_error,
			    (unsigned long long)r.created,
			    (unsigned long long)r.updated, b1, r.n_hist);
			for (i = 0; i < r.n_hist; i++)
				fprintf(o, "\n  %llu %s step=%u \"%s\"",
				    (unsigned long long)r.hist[i].time,
				    r.hist[i].state, (unsigned)r.hist[i].step,
				    r.hist[i].note);
		}
		store_task_cleanup(&r);
		break;
	}
	case STORE_DB_IDEM: {
		struct store_idem r;

		store_idem_init(&r);
		if ((rc = store_idem_decode(v, vn, &r)) == 0) {
			blob_text(r.body.p ? r.body.p : (const uint8_t *)"",
			    r.body.len, b1, sizeof(b1));
			fprintf(o, " status=%u created=%llu expires=%llu body=%s",
			    r.status, (unsigned long long)r.created,
			    (unsigned long long)r.expires, b1);
		}
		store_idem_cleanup(&r);
		break;
	}
	case STORE_DB_NONCE: {
		struct store_nonce r;

		if ((rc = store_nonce_decode(v, vn, &r)) == 0)
			fprintf(o, " created=%llu expires=%llu",
			    (unsigned long long)r.created,
			    (unsigned long long)r.expires);
		break;
	}
	case STORE_DB_SDSTATUS: {
		struct store_sdstatus r;

		if ((rc = store_sdstatus_decode(v, vn, &r)) == 0)
			fprintf(o, " status=%s source=%s time=%llu",
			    r.status, r.source, (unsigned long long)r.time);
		break;
	}
	default: {
		json_t *j = NULL, *bl;
		struct buf raw;
		char *s;

		if ((rc = store_doc_decode(d->db, v, vn, &j)) == 0) {
			/* Archived key sets: the blob as length + digest,
			 * like a live key set's. */
			bl = json_object_get(j, "blob");
			if (d->db == STORE_DB_KEYARCH && json_is_string(bl)) {
				buf_init(&raw);
				if (hex_decode_buf(json_string_value(bl), &raw) == 0)
					blob_text(raw.p ? raw.p : (const uint8_t *)"",
					    raw.len, b1, sizeof(b1));
				else
					snprintf(b1, sizeof(b1), "not-hex");
				buf_free(&raw);
				json_object_set_new(j, "blob", json_string(b1));
			}
			s = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
			fprintf(o, " %s", s ? s : "?");
			free(s);
		}
		json_decref(j);
		break;
	}
	}
	if (rc != 0)
		fprintf(o, " UNDECODABLE len=%zu (%s)", vn, err_name(rc));
	fputc('\n', o);
	return 0;
}

/* A key of by_se that no typed walk shows (see check_shape). */
static int
dump_misfit(void *arg, const uint8_t *k, size_t kn, const uint8_t *v,
    size_t vn)
{
	struct dctx *d = arg;
	char kt[2 * STORE_KEY_MAX + 8];

	(void)v;
	if (store_key_fits(STORE_DB_SE, k, kn) ||
	    store_key_fits(STORE_DB_SSD, k, kn) ||
	    store_key_fits(STORE_DB_KEYSET, k, kn))
		return 0;
	key_text(k, kn, kt, sizeof(kt));
	fprintf(d->out, "%s %s UNDECODABLE len=%zu (a key of no record type)\n",
	    STORE_BY_SE, kt, vn);
	return 0;
}

int
store_dump(struct store *st, int db, FILE *out)
{
	struct dctx d = { out, 0 };
	MDB_txn *txn = NULL;
	int rc = 0;

	if (db < 0 || db > STORE_DB_COUNT)
		return ERR_INVAL;
	if ((rc = store_mdb_err(mdb_txn_begin(st->env, NULL, MDB_RDONLY,
	    &txn))) != 0)
		return rc;
	for (d.db = 0; d.db < STORE_DB_COUNT; d.db++) {
		if (db != STORE_DB_COUNT && d.db != db)
			continue;
		if ((rc = store_walk(st, txn, d.db, NULL, 0, dump_record,
		    &d)) != 0)
			break;
	}
	if (rc == 0 && db == STORE_DB_COUNT)
		rc = store_walk_phys(st, txn, STORE_DB_SE, NULL, 0, dump_misfit,
		    &d);
	mdb_txn_abort(txn);
	return rc;
}
