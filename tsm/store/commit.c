/*
 * commit.c - the write side of tsmd's store: write batches and group commit
 * (one writer thread applies every waiting batch, each in its own nested
 * txn of one write txn, commits once with a full sync, wakes the callers).
 * Runs in tsmd; values are checked to decode before they are queued.
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tsm/store/store_int.h"

/* ---- batches -------------------------------------------------------------- */

int
store_batch_new(struct store_batch **out)
{
	struct store_batch *b = calloc(1, sizeof(*b));

	*out = NULL;
	if (b == NULL)
		return ERR_NOMEM;
	buf_init(&b->data);
	*out = b;
	return 0;
}

void
store_batch_free(struct store_batch *b)
{
	if (b == NULL)
		return;
	buf_free(&b->data);
	free(b->ops);
	free(b);
}

void
store_batch_clear(struct store_batch *b)
{
	buf_reset(&b->data);
	b->n = 0;
	b->err = 0;
}

size_t
store_batch_len(const struct store_batch *b)
{
	return b->n;
}

/* Dbs a batch may name: the typed ones. Meta and the indexes are the
 * store's own. */
static int
db_writable(int db)
{
	return (unsigned)db < STORE_DB_COUNT && store_db_rec_type(db) != 0;
}

/* Appends one op; any failure poisons the batch. */
static int
batch_add(struct store_batch *b, uint8_t kind, int db, const void *key,
    size_t klen, const void *val, size_t vlen, uint64_t now, uint32_t max)
{
	struct store_op *op, *nops;
	size_t ncap;
	int rc;

	if (b->err != 0)
		return b->err;
	if (kind != OP_PURGE && (!db_writable(db) || key == NULL ||
	    klen == 0 || klen > STORE_KEY_MAX || (vlen > 0 && val == NULL) ||
	    !store_key_fits(db, key, klen))) {
		rc = ERR_INVAL;
		goto out;
	}
	/* data.len never passes the limit; a caller's vlen stays out of the
	 * sum so that a huge one cannot wrap it. */
	if (b->n >= STORE_BATCH_OPS_MAX ||
	    klen > STORE_BATCH_BYTES_MAX - b->data.len ||
	    vlen > STORE_BATCH_BYTES_MAX - b->data.len - klen) {
		rc = ERR_LIMIT;
		goto out;
	}
	if (b->n == b->cap) {
		ncap = b->cap ? 2 * b->cap : 8;
		nops = realloc(b->ops, ncap * sizeof(*nops));
		if (nops == NULL) {
			rc = ERR_NOMEM;
			goto out;
		}
		b->ops = nops;
		b->cap = ncap;
	}
	op = &b->ops[b->n];
	memset(op, 0, sizeof(*op));
	op->kind = kind;
	op->db = (uint8_t)db;
	op->klen = (uint32_t)klen;
	op->vlen = (uint32_t)vlen;
	op->now = now;
	op->max = max;
	op->koff = b->data.len;
	if ((rc = buf_put(&b->data, key, klen)) != 0)
		goto out;
	op->voff = b->data.len;
	if ((rc = buf_put(&b->data, val, vlen)) != 0)
		goto out;
	b->n++;
	return 0;
out:
	b->err = rc;
	return rc;
}

/* A raw value must decode for its db and belong under key. */
static int
raw_value_ok(int db, const void *key, size_t klen, const void *val,
    size_t vlen)
{
	uint8_t want[STORE_KEY_MAX + 1];
	size_t wn;
	int rc;

	if (!db_writable(db) || key == NULL || klen == 0 ||
	    klen > STORE_KEY_MAX)
		return ERR_INVAL;
	/* Deriving the key decodes the whole value. */
	rc = store_rec_key(db, val, vlen, want, &wn);
	if (rc == ERR_NOTSUP) {	/* documents: the caller names the key */
		if ((rc = store_value_check(db, val, vlen)) != 0)
			return rc;
		return store_key_doc_check_n(key, klen);
	}
	if (rc != 0)
		return rc;
	if (wn != klen || memcmp(want, key, klen) != 0)
		return ERR_INVAL;
	return 0;
}

static int
raw_put(struct store_batch *b, uint8_t kind, enum store_db db,
    const void *key, size_t klen, const void *val, size_t vlen)
{
	int rc;

	if (b->err != 0)
		return b->err;
	if ((rc = raw_value_ok(db, key, klen, val, vlen)) != 0) {
		b->err = rc;
		return rc;
	}
	return batch_add(b, kind, db, key, klen, val, vlen, 0, 0);
}

int
store_batch_put(struct store_batch *b, enum store_db db, const void *key,
    size_t klen, const void *val, size_t vlen)
{
	return raw_put(b, OP_PUT, db, key, klen, val, vlen);
}

int
store_batch_put_new(struct store_batch *b, enum store_db db, const void *key,
    size_t klen, const void *val, size_t vlen)
{
	return raw_put(b, OP_PUT_NEW, db, key, klen, val, vlen);
}

int
store_batch_del(struct store_batch *b, enum store_db db, const void *key,
    size_t klen)
{
	return batch_add(b, OP_DEL, db, key, klen, NULL, 0, 0, 0);
}

int
store_batch_require_absent(struct store_batch *b, enum store_db db,
    const void *key, size_t klen)
{
	return batch_add(b, OP_REQ_ABSENT, db, key, klen, NULL, 0, 0, 0);
}

int
store_batch_require_present(struct store_batch *b, enum store_db db,
    const void *key, size_t klen)
{
	return batch_add(b, OP_REQ_PRESENT, db, key, klen, NULL, 0, 0, 0);
}

int
store_batch_require_equal(struct store_batch *b, enum store_db db,
    const void *key, size_t klen, const void *val, size_t vlen)
{
	return batch_add(b, OP_REQ_EQUAL, db, key, klen, val, vlen, 0, 0);
}

/* ---- typed ops ------------------------------------------------------------------ */

/* Encodes r with enc into a scratch buffer, derives the key, adds op. */
#define TYPED_OP(b, kind, db, enc, keyexpr) do { \
	char k_[STORE_KEY_MAX + 1]; \
	struct buf v_; \
	int rc_; \
	if ((b)->err != 0) \
		return (b)->err; \
	buf_init(&v_); \
	if ((rc_ = (keyexpr)) == 0 && (rc_ = (enc)) == 0) \
		rc_ = batch_add((b), (kind), (db), k_, strlen(k_), v_.p, \
		    v_.len, 0, 0); \
	else \
		(b)->err = rc_; \
	buf_free(&v_); \
	return rc_; \
} while (0)

int
store_batch_put_se(struct store_batch *b, const struct store_se *r)
{
	TYPED_OP(b, OP_PUT, STORE_DB_SE, store_se_encode(r, &v_),
	    store_key_se(k_, r->se_id));
}

int
store_batch_put_ssd(struct store_batch *b, const struct store_ssd *r)
{
	TYPED_OP(b, OP_PUT, STORE_DB_SSD, store_ssd_encode(r, &v_),
	    store_key_ssd(k_, r->se_id, r->sd_aid));
}

int
store_batch_put_keyset(struct store_batch *b, const struct store_keyset *r)
{
	TYPED_OP(b, OP_PUT, STORE_DB_KEYSET, store_keyset_encode(r, &v_),
	    store_key_keyset(k_, r->se_id, r->sd_aid, r->kvn));
}

int
store_batch_put_peer(struct store_batch *b, const struct store_peer *r)
{
	TYPED_OP(b, OP_PUT, STORE_DB_PEER, store_peer_encode(r, &v_),
	    store_key_peer(k_, r->id));
}

int
store_batch_put_task(struct store_batch *b, const struct store_task *r)
{
	TYPED_OP(b, OP_PUT, STORE_DB_TASK, store_task_encode(r, &v_),
	    store_key_task(k_, r->id));
}

int
store_batch_require_ssd(struct store_batch *b, const struct store_ssd *r)
{
	TYPED_OP(b, OP_REQ_EQUAL, STORE_DB_SSD, store_ssd_encode(r, &v_),
	    store_key_ssd(k_, r->se_id, r->sd_aid));
}

int
store_batch_require_task(struct store_batch *b, const struct store_task *r)
{
	TYPED_OP(b, OP_REQ_EQUAL, STORE_DB_TASK, store_task_encode(r, &v_),
	    store_key_task(k_, r->id));
}

int
store_batch_put_idem(struct store_batch *b, const struct store_idem *r,
    uint64_t now)
{
	struct buf v;
	int rc;

	if (b->err != 0)
		return b->err;
	buf_init(&v);
	if ((rc = store_idem_encode(r, &v)) == 0)
		rc = batch_add(b, OP_CLAIM, STORE_DB_IDEM, r->key, r->key_len,
		    v.p, v.len, now, 0);
	else
		b->err = rc;
	buf_free(&v);
	return rc;
}

int
store_batch_claim_nonce(struct store_batch *b, const char *peer,
    const char *nonce_hex, uint64_t now, uint64_t window)
{
	struct store_nonce r;
	char k[STORE_KEY_MAX + 1];
	struct buf v;
	int rc;

	if (b->err != 0)
		return b->err;
	buf_init(&v);
	memset(&r, 0, sizeof(r));
	if ((rc = store_key_nonce(k, peer, nonce_hex)) != 0 ||
	    window > UINT64_MAX - now)
		goto fail;
	/* store_key_nonce has validated both lengths. */
	snprintf(r.peer, sizeof(r.peer), "%s", peer);
	snprintf(r.nonce, sizeof(r.nonce), "%s", nonce_hex);
	r.created = now;
	r.expires = now + window;
	if ((rc = store_nonce_encode(&r, &v)) != 0)
		goto fail;
	rc = batch_add(b, OP_CLAIM, STORE_DB_NONCE, k, strlen(k), v.p, v.len,
	    now, 0);
	buf_free(&v);
	return rc;
fail:
	buf_free(&v);
	b->err = rc ? rc : ERR_INVAL;
	return b->err;
}

/* Tie-breaker for events of one SSD in one second: a process-wide counter
 * seeded from the clock, so a restart is unlikely to reuse (time, seq). A
 * reuse would fail the batch with ERR_EXISTS, never overwrite. */
static _Atomic uint32_t sdstatus_seq;

int
store_batch_put_sdstatus(struct store_batch *b, struct store_sdstatus *r)
{
	uint32_t cur, s;

	if (r->seq == 0) {
		cur = atomic_load(&sdstatus_seq);
		if (cur == 0)
			(void)atomic_compare_exchange_strong(&sdstatus_seq, &cur,
			    (uint32_t)now_us() | 1);
		while ((s = atomic_fetch_add(&sdstatus_seq, 1)) == 0)
			;	/* 0 means "assign one" */
		r->seq = s;
	}
	TYPED_OP(b, OP_PUT_NEW, STORE_DB_SDSTATUS, store_sdstatus_encode(r, &v_),
	    store_key_sdstatus(k_, r));
}

int
store_batch_put_doc(struct store_batch *b, enum store_db db, const char *key,
    const json_t *doc)
{
	TYPED_OP(b, OP_PUT, db, store_doc_encode(db, doc, &v_),
	    (store_key_doc_check(key) == 0 &&
	    snprintf(k_, sizeof(k_), "%s", key) > 0) ? 0 : ERR_INVAL);
}

#define TYPED_DEL(b, db, keyexpr) do { \
	char k_[STORE_KEY_MAX + 1]; \
	int rc_; \
	if ((b)->err != 0) \
		return (b)->err; \
	if ((rc_ = (keyexpr)) != 0) { \
		(b)->err = rc_; \
		return rc_; \
	} \
	return batch_add((b), OP_DEL, (db), k_, strlen(k_), NULL, 0, 0, 0); \
} while (0)

int
store_batch_del_se(struct store_batch *b, const char *se_id)
{
	TYPED_DEL(b, STORE_DB_SE, store_key_se(k_, se_id));
}

int
store_batch_del_ssd(struct store_batch *b, const char *se_id,
    const char *sd_aid)
{
	TYPED_DEL(b, STORE_DB_SSD, store_key_ssd(k_, se_id, sd_aid));
}

int
store_batch_del_keyset(struct store_batch *b, const char *se_id,
    const char *sd_aid, uint8_t kvn)
{
	TYPED_DEL(b, STORE_DB_KEYSET, store_key_keyset(k_, se_id, sd_aid, kvn));
}

int
store_batch_del_task(struct store_batch *b, const char *id)
{
	TYPED_DEL(b, STORE_DB_TASK, store_key_task(k_, id));
}

int
store_batch_purge(struct store_batch *b, uint64_t now, uint32_t max)
{
	return batch_add(b, OP_PURGE, 0, NULL, 0, NULL, 0, now, max);
}

/* ---- applying a batch (writer thread only) ---------------------------------- */

static int
has_index(int db)
{
	return db == STORE_DB_TASK || db == STORE_DB_NONCE ||
	    db == STORE_DB_IDEM;
}

/* The index entry a value of db implies: u8 record type | u64 expires |
 * key for the expiring dbs, "SE|STATE|ID" for tasks. */
static int
index_key(int db, const MDB_val *k, const MDB_val *v, uint8_t *out,
    size_t *outlen, int *idx_db)
{
	struct store_task t;
	uint64_t exp;
	int rc, i;

	if (db == STORE_DB_TASK) {
		store_task_init(&t);
		rc = store_task_decode(v->mv_data, v->mv_size, &t);
		if (rc == 0)
			rc = store_task_idx_key(t.se_id, t.state, t.id,
			    (char *)out);
		store_task_cleanup(&t);
		if (rc != 0)
			return rc;
		*outlen = strlen((char *)out);
		*idx_db = STORE_DB_TASK_IDX;
		return 0;
	}
	if ((rc = store_rec_expires(db, v->mv_data, v->mv_size, &exp)) != 0)
		return rc;
	if (k->mv_size + 9 > STORE_KEY_MAX)
		return ERR_INVAL;
	out[0] = (uint8_t)store_db_rec_type(db);
	for (i = 0; i < 8; i++)
		out[1 + i] = (uint8_t)(exp >> (56 - 8 * i));
	memcpy(out + 9, k->mv_data, k->mv_size);
	*outlen = 9 + k->mv_size;
	*idx_db = STORE_DB_EXPIRY;
	return 0;
}

/* Removes the index entry of an old value (one that does not decode has
 * none we could name: check reports what is left). */
static int
index_del(struct store *st, MDB_txn *txn, int db, const MDB_val *k,
    const MDB_val *old)
{
	uint8_t ik[STORE_KEY_MAX + 1];
	MDB_val ikv;
	size_t iklen;
	int idb, mrc;

	if (index_key(db, k, old, ik, &iklen, &idb) != 0) {
		log_msg(LOG_WARN, "event=store_bad_record db=%s msg=\"replacing "
		    "a record that does not decode\"", store_db_name(db));
		return 0;
	}
	ikv.mv_data = ik;
	ikv.mv_size = iklen;
	mrc = mdb_del(txn, st->dbi[idb], &ikv, NULL);
	return mrc == MDB_NOTFOUND ? 0 : store_mdb_err(mrc);
}

static int
index_put(struct store *st, MDB_txn *txn, int db, const MDB_val *k,
    const MDB_val *v)
{
	uint8_t ik[STORE_KEY_MAX + 1];
	MDB_val ikv, empty = { 0, (void *)"" };
	size_t iklen;
	int idb, rc;

	if ((rc = index_key(db, k, v, ik, &iklen, &idb)) != 0)
		return rc;
	ikv.mv_data = ik;
	ikv.mv_size = iklen;
	return store_mdb_err(mdb_put(txn, st->dbi[idb], &ikv, &empty, 0));
}

static int
apply_put(struct store *st, MDB_txn *txn, int db, MDB_val *k, MDB_val *v,
    unsigned flags)
{
	MDB_val old;
	int mrc, rc;

	if (has_index(db)) {
		mrc = mdb_get(txn, st->dbi[db], k, &old);
		if (mrc == 0) {
			if (flags & MDB_NOOVERWRITE)
				return ERR_EXISTS;
			if ((rc = index_del(st, txn, db, k, &old)) != 0)
				return rc;
		} else if (mrc != MDB_NOTFOUND)
			return store_mdb_err(mrc);
		if ((rc = index_put(st, txn, db, k, v)) != 0)
			return rc;
	}
	return store_mdb_err(mdb_put(txn, st->dbi[db], k, v, flags));
}

static int
apply_del(struct store *st, MDB_txn *txn, int db, MDB_val *k)
{
	MDB_val old;
	int mrc, rc;

	if (has_index(db)) {
		mrc = mdb_get(txn, st->dbi[db], k, &old);
		if (mrc == MDB_NOTFOUND)
			return 0;
		if (mrc != 0)
			return store_mdb_err(mrc);
		if ((rc = index_del(st, txn, db, k, &old)) != 0)
			return rc;
	}
	mrc = mdb_del(txn, st->dbi[db], k, NULL);
	return mrc == MDB_NOTFOUND ? 0 : store_mdb_err(mrc);
}

/* Deletes up to max records of the expiring dbs whose expiry <= now, oldest
 * first, through the expiry index. */
static int
purge(struct store *st, MDB_txn *txn, uint64_t now, uint32_t max,
    uint32_t *count)
{
	static const int dbs[] = { STORE_DB_NONCE, STORE_DB_IDEM };
	MDB_cursor *c = NULL;
	MDB_val k, v, pk, pv;
	uint8_t first[1], ik[STORE_KEY_MAX + 1];
	uint64_t exp, rexp;
	size_t d, i, iklen;
	int rc = 0, mrc;

	if ((rc = store_mdb_err(mdb_cursor_open(txn, st->dbi[STORE_DB_EXPIRY],
	    &c))) != 0)
		return rc;
	for (d = 0; d < ARRAY_LEN(dbs); d++) {
		first[0] = (uint8_t)store_db_rec_type(dbs[d]);
		while (*count < max) {
			k.mv_data = first;
			k.mv_size = 1;
			mrc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE);
			if (mrc == MDB_NOTFOUND)
				break;
			if ((rc = store_mdb_err(mrc)) != 0)
				goto out;
			if (k.mv_size < 1 || ((const uint8_t *)k.mv_data)[0] !=
			    first[0])
				break;
			if (k.mv_size < 10) {	/* not ours: drop it */
				if ((rc = store_mdb_err(mdb_cursor_del(c, 0))) != 0)
					goto out;
				continue;
			}
			for (exp = 0, i = 1; i < 9; i++)
				exp = exp << 8 | ((const uint8_t *)k.mv_data)[i];
			if (exp > now)
				break;
			iklen = k.mv_size;
			memcpy(ik, k.mv_data, iklen);
			pk.mv_data = ik + 9;
			pk.mv_size = iklen - 9;
			mrc = mdb_get(txn, st->dbi[dbs[d]], &pk, &pv);
			if (mrc == 0 && store_rec_expires(dbs[d], pv.mv_data,
			    pv.mv_size, &rexp) == 0 && rexp == exp) {
				mrc = mdb_del(txn, st->dbi[dbs[d]], &pk, NULL);
				if ((rc = store_mdb_err(mrc)) != 0)
					goto out;
				(*count)++;
			} else if (mrc != 0 && mrc != MDB_NOTFOUND) {
				rc = store_mdb_err(mrc);
				goto out;
			}
			k.mv_data = ik;
			k.mv_size = iklen;
			mrc = mdb_del(txn, st->dbi[STORE_DB_EXPIRY], &k, NULL);
			if (mrc != 0 && mrc != MDB_NOTFOUND) {
				rc = store_mdb_err(mrc);
				goto out;
			}
		}
	}
	rc = 0;
out:
	mdb_cursor_close(c);
	return rc;
}

int
store_batch_apply(struct store *st, MDB_txn *txn, const struct store_batch *b,
    uint32_t *purged)
{
	const struct store_op *op;
	MDB_val k, v, cur;
	uint64_t exp;
	uint32_t scratch;
	size_t i;
	int rc = 0, mrc;

	for (i = 0; i < b->n && rc == 0; i++) {
		op = &b->ops[i];
		k.mv_data = op->klen ? b->data.p + op->koff : (void *)"";
		k.mv_size = op->klen;
		v.mv_data = op->vlen ? b->data.p + op->voff : (void *)"";
		v.mv_size = op->vlen;
		switch (op->kind) {
		case OP_PUT:
			rc = apply_put(st, txn, op->db, &k, &v, 0);
			break;
		case OP_PUT_NEW:
			rc = apply_put(st, txn, op->db, &k, &v, MDB_NOOVERWRITE);
			break;
		case OP_DEL:
			rc = apply_del(st, txn, op->db, &k);
			break;
		case OP_REQ_ABSENT:
		case OP_REQ_PRESENT:
		case OP_REQ_EQUAL:
			mrc = mdb_get(txn, st->dbi[op->db], &k, &cur);
			if (mrc != 0 && mrc != MDB_NOTFOUND) {
				rc = store_mdb_err(mrc);
				break;
			}
			if (op->kind == OP_REQ_ABSENT)
				rc = mrc == 0 ? ERR_EXISTS : 0;
			else if (op->kind == OP_REQ_PRESENT)
				rc = mrc == 0 ? 0 : ERR_WRONGSTATE;
			else
				rc = mrc == 0 && cur.mv_size == v.mv_size &&
				    memcmp(cur.mv_data, v.mv_data, v.mv_size) == 0 ?
				    0 : ERR_WRONGSTATE;
			break;
		case OP_CLAIM:
			mrc = mdb_get(txn, st->dbi[op->db], &k, &cur);
			if (mrc == 0 && store_rec_expires(op->db, cur.mv_data,
			    cur.mv_size, &exp) == 0 && exp > op->now) {
				rc = ERR_EXISTS;
				break;
			}
			if (mrc != 0 && mrc != MDB_NOTFOUND) {
				rc = store_mdb_err(mrc);
				break;
			}
			if ((rc = apply_put(st, txn, op->db, &k, &v, 0)) != 0)
				break;
			scratch = 0;
			rc = purge(st, txn, op->now, STORE_CLAIM_PURGE, &scratch);
			break;
		case OP_PURGE:
			rc = purge(st, txn, op->now, op->max, purged);
			break;
		default:
			rc = ERR_INTERNAL;
		}
	}
	return rc;
}

/* ---- group commit ------------------------------------------------------------- */

/* Each batch alone in its own durable txn: the fallback when a group's
 * commit fails, so one batch cannot take the others down. */
static void
group_one_by_one(struct store *st, struct store_req **reqs, size_t n,
    uint64_t *commits)
{
	MDB_txn *txn;
	size_t i;
	int rc;

	for (i = 0; i < n; i++) {
		reqs[i]->purged = 0;
		if (reqs[i]->b->err != 0) {
			reqs[i]->result = reqs[i]->b->err;
			continue;
		}
		rc = store_mdb_err(mdb_txn_begin(st->env, NULL, 0, &txn));
		if (rc == 0) {
			rc = store_batch_apply(st, txn, reqs[i]->b,
			    &reqs[i]->purged);
			if (rc == 0) {
				rc = store_mdb_err(mdb_txn_commit(txn));
				if (rc == 0)
					(*commits)++;
			} else
				mdb_txn_abort(txn);
		}
		reqs[i]->result = rc;
	}
}

static void
group_apply(struct store *st, struct store_req **reqs, size_t n,
    uint64_t *commits)
{
	MDB_txn *txn = NULL, *child;
	size_t i;
	int rc, mrc;

	if (n == 1) {	/* alone: its own txn is all the isolation it needs */
		group_one_by_one(st, reqs, n, commits);
		return;
	}
	if ((rc = store_mdb_err(mdb_txn_begin(st->env, NULL, 0, &txn))) != 0) {
		for (i = 0; i < n; i++)
			reqs[i]->result = rc;
		return;
	}
	for (i = 0; i < n; i++) {
		reqs[i]->purged = 0;
		if (reqs[i]->b->err != 0) {
			reqs[i]->result = reqs[i]->b->err;
			continue;
		}
		/* The nested txn is what keeps a failing batch (condition,
		 * map full) from leaving half its ops in the group. */
		mrc = mdb_txn_begin(st->env, txn, 0, &child);
		if (mrc != 0) {
			mdb_txn_abort(txn);
			group_one_by_one(st, reqs, n, commits);
			return;
		}
		rc = store_batch_apply(st, child, reqs[i]->b, &reqs[i]->purged);
		if (rc == 0)
			rc = store_mdb_err(mdb_txn_commit(child));
		else
			mdb_txn_abort(child);
		reqs[i]->result = rc;
		if (rc == ERR_LIMIT)
			log_msg(LOG_WARN, "event=store_map_full msg=\"batch "
			    "refused: raise the store map size\"");
	}
	mrc = mdb_txn_commit(txn);
	if (mrc == 0) {
		for (i = 0; i < n; i++)
			if (reqs[i]->result == 0) {
				(*commits)++;	/* a durable commit, not a no-op */
				break;
			}
		return;
	}
	rc = store_mdb_err(mrc);
	log_msg(LOG_WARN, "event=store_group_commit_failed batches=%zu err=%s "
	    "msg=\"retrying one by one\"", n, err_name(rc));
	group_one_by_one(st, reqs, n, commits);
}

/*
 * Keeps written zeros ahead of the last page LMDB uses. A commit that puts
 * pages past the end of the file grows it, and then each of its syncs also
 * allocates blocks and writes the inode: on this VM twice the CPU of
 * overwriting blocks that exist (143 vs 70 us per 12 KiB write +
 * fdatasync), most of it virtio notifications. About a quarter of the
 * commits in a key-replacement run grew the file. LMDB writes pages at
 * their offsets and never reads past its last page, so zeros there are
 * invisible to it. In this process only this thread writes the file, and
 * only between commits; against other processes (kmsctl rewrap) it holds
 * LMDB's writer lock while it does. The zeros run at most a quarter of the
 * used size ahead (from 256 KiB, at most 16 MiB, never past the map size).
 * Best effort: a failure only means the next commits grow the file
 * themselves (and the zeros are not tried again for a second).
 */
#define EXT_MIN (256u << 10)
#define EXT_MAX (16u << 20)

static void
preextend(struct store *st)
{
	static const uint8_t zero[64 << 10];
	MDB_txn *txn;
	MDB_envinfo ei;
	MDB_stat ms;
	struct stat sb;
	uint64_t used, ahead, want, off;
	ssize_t w;
	size_t n;
	int fd;

	if (mdb_env_info(st->env, &ei) != 0 || mdb_env_stat(st->env, &ms) != 0)
		return;
	used = ((uint64_t)ei.me_last_pgno + 1) * ms.ms_psize;
	ahead = used / 4 < EXT_MIN ? EXT_MIN : used / 4 > EXT_MAX ? EXT_MAX :
	    used / 4;
	if (used + ahead / 2 <= st->ext_end || now_ms() < st->ext_retry_ms)
		return;
	/* Another process may write this store too (kmsctl rewrap): the
	 * zeros go in under LMDB's writer lock, past the pages committed by
	 * then, so they can never land on a page another writer just put. */
	if (mdb_txn_begin(st->env, NULL, 0, &txn) != 0)
		return;
	if (mdb_env_info(st->env, &ei) != 0 ||
	    mdb_env_get_fd(st->env, &fd) != 0 || fstat(fd, &sb) != 0)
		goto out;
	used = ((uint64_t)ei.me_last_pgno + 1) * ms.ms_psize;
	want = used + ahead;
	if (want > ei.me_mapsize)
		want = ei.me_mapsize;
	off = (uint64_t)sb.st_size;
	if (off < used)		/* cannot be: LMDB wrote its pages */
		goto out;
	while (off < want) {
		n = want - off < sizeof(zero) ? (size_t)(want - off) : sizeof(zero);
		w = pwrite(fd, zero, n, (off_t)off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			break;
		off += (uint64_t)w;
	}
	if (off > (uint64_t)sb.st_size && fdatasync(fd) != 0)
		log_msg(LOG_WARN, "event=store_preextend_sync_failed errno=%d",
		    errno);
	st->ext_end = off;	/* what is written; short of want: tried again */
	if (off < want && st->ext_retry_ms == 0)	/* a streak begins */
		log_msg(LOG_WARN, "event=store_preextend_short want=%llu "
		    "written=%llu note=\"commits grow the file meanwhile; "
		    "tried again once a second\"", (unsigned long long)want,
		    (unsigned long long)off);
	/* A full disk fails every write: not again at every group. */
	st->ext_retry_ms = off < want ? now_ms() + 1000 : 0;
	if (off < want) {
		pthread_mutex_lock(&st->mu);
		st->stats.ext_failed++;
		pthread_mutex_unlock(&st->mu);
	}
out:
	mdb_txn_abort(txn);
}

/* The end of r's wait: its caller wakes, or its callback runs. */
static void
req_finished(struct store_req *r)
{
	if (r->fn == NULL) {
		sem_post(&r->done);
		return;
	}
	r->fn(r->result, r->arg);
	free(r);
}

void *
store_writer_main(void *arg)
{
	struct store *st = arg;
	struct store_req **grp;
	uint64_t commits;
	size_t n, i, failed;

	(void)pthread_setname_np(pthread_self(), "store-writer");
	grp = calloc(st->max_group, sizeof(*grp));
	pthread_mutex_lock(&st->mu);
	for (;;) {
		while (st->head == NULL && !st->stop)
			pthread_cond_wait(&st->wake, &st->mu);
		if (st->head == NULL)
			break;
		n = 0;
		if (grp == NULL) {	/* no memory for a group: one at a time */
			struct store_req *one = st->head;

			st->head = one->next;
			if (st->head == NULL)
				st->tail = NULL;
			pthread_mutex_unlock(&st->mu);
			commits = 0;
			group_one_by_one(st, &one, 1, &commits);
			pthread_mutex_lock(&st->mu);
			st->stats.batches++;
			st->stats.failed += one->result != 0;
			st->stats.commits += commits;
			pthread_mutex_unlock(&st->mu);
			req_finished(one);
			pthread_mutex_lock(&st->mu);
			continue;
		}
		while (st->head != NULL && n < st->max_group) {
			grp[n++] = st->head;
			st->head = st->head->next;
		}
		if (st->head == NULL)
			st->tail = NULL;
		pthread_mutex_unlock(&st->mu);

		commits = 0;
		group_apply(st, grp, n, &commits);

		for (i = failed = 0; i < n; i++)
			failed += grp[i]->result != 0;
		pthread_mutex_lock(&st->mu);
		st->stats.batches += n;
		st->stats.failed += failed;
		st->stats.commits += commits;
		if (n > st->stats.max_group)
			st->stats.max_group = n;
		pthread_mutex_unlock(&st->mu);
		/* Each finished caller wakes on its own semaphore, outside the
		 * lock (a woken caller no longer queues for it behind the
		 * writer and the submitters); grp[i] may vanish once posted. */
		for (i = 0; i < n; i++)
			req_finished(grp[i]);
		preextend(st);
		pthread_mutex_lock(&st->mu);
	}
	pthread_mutex_unlock(&st->mu);
	free(grp);
	return NULL;
}

/* Puts r at the end of the writer's queue: 0, or ERR_CLOSED. */
static int
enqueue(struct store *st, struct store_req *r)
{
	pthread_mutex_lock(&st->mu);
	if (st->stop) {
		pthread_mutex_unlock(&st->mu);
		return ERR_CLOSED;
	}
	if (st->tail != NULL)
		st->tail->next = r;
	else
		st->head = r;
	st->tail = r;
	pthread_cond_signal(&st->wake);
	pthread_mutex_unlock(&st->mu);
	return 0;
}

/* Whether b may go to the writer: 0, or why not. */
static int
committable(const struct store *st, const struct store_batch *b)
{
	return st->readonly ? ERR_NOTSUP : b->err;
}

/* Queues b and waits until the writer has made it durable (or failed it). */
static int
submit(struct store *st, const struct store_batch *b, uint32_t *purged)
{
	struct store_req r;
	int rc;

	if ((rc = committable(st, b)) != 0 || b->n == 0)
		return rc;
	memset(&r, 0, sizeof(r));
	r.b = b;
	if (sem_init(&r.done, 0, 0) != 0)
		return ERR_NOMEM;
	if ((rc = enqueue(st, &r)) != 0) {
		sem_destroy(&r.done);
		return rc;
	}
	/* Only EINTR can fail it (r.done is valid); r stays queued until
	 * the writer posts, so there is no leaving before. */
	while (sem_wait(&r.done) != 0)
		continue;
	sem_destroy(&r.done);
	if (purged != NULL)
		*purged = r.purged;
	return r.result;
}

int
store_batch_commit(struct store *st, const struct store_batch *b)
{
	return submit(st, b, NULL);
}

int
store_batch_commit_async(struct store *st, const struct store_batch *b,
    store_done_fn fn, void *arg)
{
	struct store_req *r;
	int rc;

	if ((rc = committable(st, b)) != 0)
		return rc;
	if (fn == NULL || b->n == 0)
		return ERR_INVAL;
	if ((r = calloc(1, sizeof(*r))) == NULL)
		return ERR_NOMEM;
	r->b = b;
	r->fn = fn;
	r->arg = arg;
	if ((rc = enqueue(st, r)) != 0)
		free(r);
	return rc;
}

int
store_nonce_check_and_put(struct store *st, const char *peer,
    const char *nonce_hex, uint64_t now, uint64_t window)
{
	struct store_batch *b = NULL;
	int rc;

	if ((rc = store_batch_new(&b)) != 0)
		return rc;
	if ((rc = store_batch_claim_nonce(b, peer, nonce_hex, now, window)) == 0)
		rc = submit(st, b, NULL);
	store_batch_free(b);
	return rc;
}

int
store_idem_put(struct store *st, const struct store_idem *r, uint64_t now)
{
	struct store_batch *b = NULL;
	int rc;

	if ((rc = store_batch_new(&b)) != 0)
		return rc;
	if ((rc = store_batch_put_idem(b, r, now)) == 0)
		rc = submit(st, b, NULL);
	store_batch_free(b);
	return rc;
}

int
store_purge_expired(struct store *st, uint64_t now, uint32_t max,
    uint32_t *purged)
{
	struct store_batch *b = NULL;
	uint32_t n = 0;
	int rc;

	if ((rc = store_batch_new(&b)) != 0)
		return rc;
	if ((rc = store_batch_purge(b, now, max)) == 0)
		rc = submit(st, b, &n);
	store_batch_free(b);
	if (purged != NULL)
		*purged = n;
	return rc;
}
