/*
 * store_int.h - what the files of tsm/store/ share and nobody else sees:
 * the store and batch structures, the op kinds the writer applies, and
 * the key and index helpers. Runs in tsmd and tsmctl.
 */
#ifndef SPTSM_STORE_INT_H
#define SPTSM_STORE_INT_H

#include <pthread.h>
#include <semaphore.h>

#include <lmdb.h>

#include "tsm/store/store.h"

#define STORE_REC_VERSION 1	/* every record type is at format 1 today */
#define STORE_BATCH_OPS_MAX 4096
#define STORE_BATCH_BYTES_MAX (64u << 20)
/* Expired entries an OP_CLAIM removes on the way (keeps the tables small
 * without a caller having to schedule purges). */
#define STORE_CLAIM_PURGE 4

enum store_op_kind {
	OP_PUT = 1,
	OP_PUT_NEW,
	OP_DEL,
	OP_REQ_ABSENT,
	OP_REQ_PRESENT,
	OP_REQ_EQUAL,
	OP_CLAIM,	/* put unless an unexpired record holds the key */
	OP_PURGE	/* delete up to `max` expired records */
};

struct store_op {
	uint8_t  kind;
	uint8_t  db;
	uint32_t klen, vlen;
	size_t   koff, voff;	/* into batch->data */
	uint64_t now;		/* OP_CLAIM, OP_PURGE */
	uint32_t max;		/* OP_PURGE */
};

struct store_batch {
	struct store_op *ops;
	size_t   n, cap;
	struct buf data;	/* keys and values, back to back */
	int      err;		/* first failed add: poisons the commit */
};

/* A batch in the queue: a waiting caller's (on its stack), or one
 * queued by store_batch_commit_async (on the heap, freed by the writer
 * once fn returned). */
struct store_req {
	const struct store_batch *b;
	int      result;
	sem_t    done;		/* the caller sleeps here: posted once, after
				 * the writer's last touch of this request */
	store_done_fn fn;	/* async: called instead of posting done */
	void    *arg;
	uint32_t purged;
	struct store_req *next;
};

#define STORE_RTXN_KEEP 8	/* reset read txns kept for renewal */

struct store {
	MDB_env *env;
	MDB_dbi  dbi[STORE_DB_COUNT];
	int      readonly;
	unsigned max_group;
	size_t   upgrade_moved;	/* records an upgrade at open moved */

	pthread_mutex_t mu;	/* guards everything below */
	pthread_cond_t  wake;	/* writer: the queue has work or stop is set */
	struct store_req *head, *tail;
	int      stop;
	int      writer_started;
	pthread_t writer;
	struct store_stats stats;
	uint64_t ext_end;	/* writer: file bytes known written (preextend) */
	uint64_t ext_retry_ms;	/* writer: no zeros before (a write failed) */

	/* Read txns, reset and kept for renewal: a renewal keeps its reader
	 * slot, so a read costs neither a malloc nor the lock file's reader
	 * mutex. Kept at most STORE_RTXN_KEEP (each holds a reader slot). */
	pthread_mutex_t rmu;
	MDB_txn *rfree[STORE_RTXN_KEEP];
	unsigned nrfree;
};

/* A read-only txn (renewed from the kept ones when it can) and its end. */
int  store_rtxn_begin(struct store *st, MDB_txn **txn) WUR;
void store_rtxn_end(struct store *st, MDB_txn *txn);

/* The one place LMDB return codes become project errors. */
int store_mdb_err(int rc);

/* The record type a typed db holds; 0 for index and meta dbs. */
int store_db_rec_type(enum store_db db);
/* The db holding records of that type; ERR_NOTFOUND for none. */
int store_rec_type_db(int type);

/* Index maintenance (record.c). Task index key "SE|STATE|ID" ("*" for no
 * SE); expiry index key u8 record type | u64 expires | primary key (the
 * record type, not the db enum, because it is stored). */
int store_task_idx_key(const char *se_id, const char *state, const char *id,
    char *out) WUR;
/* The expires field of a nonce or idem value, without copying bodies. */
int store_rec_expires(enum store_db db, const void *p, size_t n,
    uint64_t *expires) WUR;
/* The sd-status key of r (r->seq as is). */
int store_key_sdstatus(char *out, const struct store_sdstatus *r) WUR;
/* Validity of caller-supplied keys of the document dbs. */
int store_key_doc_check(const char *key) WUR;
int store_key_doc_check_n(const void *key, size_t n) WUR;
/* Task id validity (the task db key). */
int store_key_task(char *out, const char *id) WUR;
int store_key_peer(char *out, const char *id) WUR;
/* The key a record of db must be stored under, derived from the decoded
 * value (out holds STORE_KEY_MAX + 1 bytes); ERR_PARSE if the value does
 * not decode (all of it is checked), ERR_NOTSUP without looking at it for
 * dbs whose key is not in the value (documents, index and meta dbs). */
int store_rec_key(enum store_db db, const void *p, size_t n, uint8_t *out,
    size_t *outlen) WUR;

/* The LMDB db that db's records live in (record.c): an SE's records (SE,
 * SSDs, key sets) share STORE_BY_SE, so that they sit together. */
#define STORE_BY_SE "by_se"
const char *store_db_phys(enum store_db db);
/* 1 if key could be one of db's: in STORE_BY_SE a key's count of '|'
 * tells its record type (SE 0, SSD 1, key set 2); 1 for other dbs. */
int store_key_fits(enum store_db db, const void *key, size_t n);

/* Calls cb for each key of db that starts with prefix, inside txn
 * (store.c); cb's return as for store_iter. store_walk_phys walks the
 * LMDB db db lives in, every key of it (a shared one's other types too). */
int store_walk(struct store *st, MDB_txn *txn, enum store_db db,
    const void *prefix, size_t plen, store_raw_cb cb, void *arg) WUR;
int store_walk_phys(struct store *st, MDB_txn *txn, enum store_db db,
    const void *prefix, size_t plen, store_raw_cb cb, void *arg) WUR;

/* The writer thread (commit.c), started by store_open. */
void *store_writer_main(void *arg);

/* Applies one batch inside txn (commit.c). */
int store_batch_apply(struct store *st, MDB_txn *txn,
    const struct store_batch *b, uint32_t *purged) WUR;

#endif
