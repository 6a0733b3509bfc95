/*
 * store.h - tsmd's persistent store (LMDB): typed, versioned records for SEs,
 * SSDs, wrapped key-set blobs, SEI-TSM peers, tasks, idempotency and nonce
 * records, sd-status events, and JSON documents; write batches made durable
 * through group commit. Runs in tsmd (read-write) and tsmctl (read-only).
 * Holds no secret in clear; trusts no byte it reads back. See STORE.md.
 */
#ifndef SPTSM_STORE_H
#define SPTSM_STORE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <jansson.h>

#include "kms/base.h"

/* Bumped when a record layout or key encoding changes; older stores are
 * upgraded at open, newer ones refused (STORE.md "Schema"). */
#define STORE_SCHEMA_VERSION 2
#define STORE_MAP_SIZE_DEFAULT (1ull << 30)

/* Field limits (characters, excluding the NUL). Encoders refuse longer
 * values with ERR_INVAL, decoders with ERR_PARSE. */
#define STORE_SEID_MAX   128	/* seId: uppercase hex, even length, >= 2 */
#define STORE_AID_MAX    32	/* AID: uppercase hex, 5..16 bytes */
#define STORE_ID_MAX     64	/* peer/task/label ids: printable ASCII, no '|' */
#define STORE_NAME_MAX   31	/* states, kinds, modes: [A-Za-z0-9_.-] */
#define STORE_TEXT_MAX   255	/* free text: no control characters */
#define STORE_NONCE_MAX  128	/* nonce: hex characters */
#define STORE_DIGEST_MAX 64	/* idempotency key bytes */
#define STORE_KCV_MAX    16
#define STORE_KEYSET_KEYS_MAX 8
#define STORE_BLOB_MAX   65536	/* key-set blob bytes */
#define STORE_CTX_MAX    65536	/* task context bytes */
#define STORE_HIST_MAX   64	/* task history entries kept (oldest dropped) */
#define STORE_BODY_MAX   (1u << 20)	/* idempotent response / document bytes */
#define STORE_KEY_MAX    511	/* LMDB's key limit */

struct store;		/* opaque: one LMDB environment + its writer thread */
struct store_batch;	/* opaque: ops and conditions applied atomically */

/* Named databases. The numbering is internal to a process (names are what
 * LMDB stores); STORE.md gives each one's key and value layout. */
enum store_db {
	STORE_DB_META = 0,	/* "schema" -> u32 */
	STORE_DB_SE,
	STORE_DB_SSD,
	STORE_DB_KEYSET,
	STORE_DB_PEER,
	STORE_DB_TASK,
	STORE_DB_TASK_IDX,	/* index, maintained by the store */
	STORE_DB_IDEM,
	STORE_DB_NONCE,
	STORE_DB_EXPIRY,	/* index, maintained by the store */
	STORE_DB_SDSTATUS,
	STORE_DB_PROVIDER,	/* JSON documents */
	STORE_DB_APP,
	STORE_DB_CERT,
	STORE_DB_NOTIFY,
	STORE_DB_KEYARCH,	/* JSON documents: archived key sets */
	STORE_DB_COUNT
};

/* "ssd", "task" ...; NULL for an out-of-range id. */
const char *store_db_name(enum store_db db);
/* The db with that name, or ERR_NOTFOUND. */
int store_db_by_name(const char *name) WUR;

struct store_opts {
	uint64_t map_size;	/* bytes; 0 = STORE_MAP_SIZE_DEFAULT */
	unsigned max_readers;	/* concurrent read txns; 0 = 126 */
	unsigned max_group;	/* batches per write txn; 0 = 1024 */
	int readonly;		/* no writer thread, writes refused (tsmctl) */
};

/*
 * Opens (creating it, mode 0700, unless readonly) the environment in dir,
 * checks the schema and, unless readonly, starts the writer thread.
 * opts may be NULL. Errors: ERR_VERSION (schema newer than this build, or a
 * non-empty store without a schema record), ERR_NOTFOUND (readonly and no
 * store), ERR_IO, ERR_NOMEM, ERR_LIMIT (map too small to initialise).
 */
int store_open(struct store **out, const char *dir,
    const struct store_opts *opts) WUR;
/* Stops the writer after it has applied every queued batch; closes. The
 * caller guarantees no other thread still uses st. NULL is fine. */
void store_close(struct store *st);

struct store_stats {
	uint64_t batches;	/* batches applied (successful or not) */
	uint64_t failed;	/* batches that returned an error */
	uint64_t commits;	/* durable write transactions */
	uint64_t max_group;	/* most batches in one write transaction */
	uint64_t ext_failed;	/* writes of zeros ahead of the data that fell
				 * short (a full disk; retried after 1 s) */
};
void store_stats_get(struct store *st, struct store_stats *out);

/* ---- keys (STORE.md "Keys"): hex is normalised to uppercase ------------ */

/* Each writes a NUL-terminated key into out (STORE_KEY_MAX + 1 bytes) and
 * returns ERR_INVAL for a malformed id. */
int store_key_se(char *out, const char *se_id) WUR;
int store_key_ssd(char *out, const char *se_id, const char *sd_aid) WUR;
/* se_id NULL or "" names the SSD AID's master set ("*|AID|KV"). */
int store_key_keyset(char *out, const char *se_id, const char *sd_aid,
    uint8_t kvn) WUR;
int store_key_nonce(char *out, const char *peer, const char *nonce_hex) WUR;

/* ---- records ------------------------------------------------------------ */

/* Every value starts with u8 type, u8 format version (STORE.md). */
enum store_rec_type {
	STORE_REC_SE = 1,
	STORE_REC_SSD = 2,
	STORE_REC_KEYSET = 3,
	STORE_REC_PEER = 4,
	STORE_REC_TASK = 5,
	STORE_REC_IDEM = 6,
	STORE_REC_NONCE = 7,
	STORE_REC_SDSTATUS = 8,
	STORE_REC_PROVIDER = 9,
	STORE_REC_APP = 10,
	STORE_REC_CERT = 11,
	STORE_REC_NOTIFY = 12,
	STORE_REC_KEYARCH = 13
};

struct store_se {
	char     se_id[STORE_SEID_MAX + 1];
	char     peer_id[STORE_ID_MAX + 1];	/* issuing SEI-TSM; "" unknown */
	char     state[STORE_NAME_MAX + 1];	/* e.g. "ACTIVE" */
	uint64_t created, updated, last_seen;	/* unix seconds */
};

enum store_sd_mode { STORE_MODE_AMSD = 1, STORE_MODE_DMSD = 2 };

struct store_ssd {
	char     se_id[STORE_SEID_MAX + 1];
	char     sd_aid[STORE_AID_MAX + 1];
	char     state[STORE_NAME_MAX + 1];	/* e.g. "CREATED", "LOCKED" */
	char     prev_state[STORE_NAME_MAX + 1];	/* what unlock restores */
	uint8_t  mode;				/* enum store_sd_mode */
	uint8_t  priv_len;			/* 0..3 */
	uint8_t  priv[3];			/* GP privileges */
	char     scp_config[17];		/* hex, e.g. "0255"; may be "" */
	uint8_t  kvn_active, kvn_pending;	/* key versions; 0 = none */
	uint32_t quota_nv, quota_v, quota_apps;	/* 0 = no quota */
	char     task_id[STORE_ID_MAX + 1];	/* running task; "" none */
	uint64_t created, updated;
};

struct store_keyset_key {
	uint8_t usage;			/* as kmsd reports it */
	uint8_t kcv_len;		/* 1..STORE_KCV_MAX */
	uint8_t kcv[STORE_KCV_MAX];
};

/* A kmsd key-set blob (wrapped under the storage KEK) and its KCVs. */
struct store_keyset {
	char     se_id[STORE_SEID_MAX + 1];	/* "" = master set of sd_aid */
	char     sd_aid[STORE_AID_MAX + 1];
	uint8_t  kvn;				/* 1..255 */
	uint8_t  alg;				/* kmsd's alg code */
	char     usage[STORE_NAME_MAX + 1];	/* "SCP03" */
	char     source[STORE_ID_MAX + 1];	/* delivering peer; "" generated */
	uint8_t  n_keys;			/* 1..STORE_KEYSET_KEYS_MAX */
	struct store_keyset_key keys[STORE_KEYSET_KEYS_MAX];
	struct buf blob;			/* 1..STORE_BLOB_MAX bytes */
	uint64_t created;
};
void store_keyset_init(struct store_keyset *k);
void store_keyset_cleanup(struct store_keyset *k);

/* An SEI-TSM peer: keys are named by kmsd label, never held. */
struct store_peer {
	char     id[STORE_ID_MAX + 1];		/* seiTsmId */
	char     tenant_id[STORE_ID_MAX + 1];	/* our id at that peer */
	char     base_url[STORE_TEXT_MAX + 1];
	char     wrap[STORE_NAME_MAX + 1];	/* "AES-KW", "RSA-OAEP-SHA1" ... */
	char     kcv_method[STORE_NAME_MAX + 1];	/* "GP" | "CMAC" */
	char     kek_label[STORE_ID_MAX + 1];	/* kmsd transport KEK */
	char     mac_key_id[STORE_ID_MAX + 1];	/* keyId in X-TSM-Signature */
	char     mac_key_label[STORE_ID_MAX + 1];	/* kmsd HMAC key */
	char     state[STORE_NAME_MAX + 1];	/* e.g. "ENABLED" */
	uint64_t created, updated;
};

struct store_task_hist {
	uint64_t time;
	char     state[STORE_NAME_MAX + 1];
	uint32_t step;
	char     note[STORE_TEXT_MAX + 1];
};

/* A persistent state machine run by tsmd's flows. */
struct store_task {
	char     id[STORE_ID_MAX + 1];
	char     se_id[STORE_SEID_MAX + 1];	/* "" when not tied to an SE */
	char     kind[STORE_NAME_MAX + 1];	/* e.g. "SSD_CREATE" */
	char     state[STORE_NAME_MAX + 1];	/* e.g. "PENDING", "DONE" */
	uint32_t step;
	int32_t  last_err;			/* ERR_* or 0 */
	char     last_error[STORE_TEXT_MAX + 1];
	uint64_t created, updated;
	struct buf ctx;			/* flow data (e.g. JSON), opaque here */
	size_t   n_hist;			/* oldest first, <= STORE_HIST_MAX */
	struct store_task_hist *hist;
};
void store_task_init(struct store_task *t);
void store_task_cleanup(struct store_task *t);
/* Appends (time, t->state, t->step, note) to the history, dropping the
 * oldest entry beyond STORE_HIST_MAX. note may be NULL. */
int store_task_hist_add(struct store_task *t, uint64_t time,
    const char *note) WUR;

/* A stored response for an idempotent request, keyed by its digest. */
struct store_idem {
	uint8_t  key[STORE_DIGEST_MAX];	/* request digest */
	size_t   key_len;		/* 1..STORE_DIGEST_MAX */
	uint16_t status;		/* HTTP status of the response */
	uint64_t created, expires;	/* unix seconds */
	struct buf body;		/* response body, <= STORE_BODY_MAX */
};
void store_idem_init(struct store_idem *r);
void store_idem_cleanup(struct store_idem *r);

struct store_nonce {
	char     peer[STORE_ID_MAX + 1];
	char     nonce[STORE_NONCE_MAX + 1];	/* uppercase hex */
	uint64_t created, expires;
};

/* A §9.5 SD state-sync event as received. */
struct store_sdstatus {
	char     se_id[STORE_SEID_MAX + 1];
	char     sd_aid[STORE_AID_MAX + 1];
	char     status[STORE_NAME_MAX + 1];	/* "DELETED", "RESETED" ... */
	char     source[STORE_ID_MAX + 1];	/* seiTsmId */
	uint64_t time;				/* unix seconds */
	uint32_t seq;				/* key tie-breaker; see put */
};

/*
 * Codecs. Encoders validate and normalise (uppercase hex) and append the
 * value, header included, to out; ERR_INVAL for a field out of its limits.
 * Decoders take untrusted bytes: ERR_PARSE for a wrong type, an unknown
 * version, a truncated or over-long field, a bad character or trailing
 * bytes. Decoders that fill a struct with a buf or history need the struct
 * initialised (_init) and leave it to be cleaned up by the caller.
 */
int store_se_encode(const struct store_se *r, struct buf *out) WUR;
int store_se_decode(const void *p, size_t n, struct store_se *r) WUR;
int store_ssd_encode(const struct store_ssd *r, struct buf *out) WUR;
int store_ssd_decode(const void *p, size_t n, struct store_ssd *r) WUR;
int store_keyset_encode(const struct store_keyset *r, struct buf *out) WUR;
int store_keyset_decode(const void *p, size_t n, struct store_keyset *r) WUR;
int store_peer_encode(const struct store_peer *r, struct buf *out) WUR;
int store_peer_decode(const void *p, size_t n, struct store_peer *r) WUR;
int store_task_encode(const struct store_task *r, struct buf *out) WUR;
int store_task_decode(const void *p, size_t n, struct store_task *r) WUR;
int store_idem_encode(const struct store_idem *r, struct buf *out) WUR;
int store_idem_decode(const void *p, size_t n, struct store_idem *r) WUR;
int store_nonce_encode(const struct store_nonce *r, struct buf *out) WUR;
int store_nonce_decode(const void *p, size_t n, struct store_nonce *r) WUR;
int store_sdstatus_encode(const struct store_sdstatus *r, struct buf *out) WUR;
int store_sdstatus_decode(const void *p, size_t n,
    struct store_sdstatus *r) WUR;
/* JSON documents (provider, app, cert, notify, keyarch dbs): a JSON
 * object. */
int store_doc_encode(enum store_db db, const json_t *doc, struct buf *out) WUR;
int store_doc_decode(enum store_db db, const void *p, size_t n,
    json_t **out) WUR;
/* Decodes a value of any typed db just to check it (0 or ERR_PARSE);
 * ERR_INVAL for an index or meta db. */
int store_value_check(enum store_db db, const void *p, size_t n) WUR;

/* ---- reads: each runs in its own read-only txn, from any thread -------- */
/* Structs with a buf or a history (keyset, task, idem) must have been
 * initialised with their _init before they are passed as out. */

/* ERR_NOTFOUND when absent, ERR_PARSE when the stored bytes are bad,
 * ERR_INVAL for a malformed id. */
int store_se_get(struct store *st, const char *se_id, struct store_se *out) WUR;
int store_ssd_get(struct store *st, const char *se_id, const char *sd_aid,
    struct store_ssd *out) WUR;
/* se_id NULL or "" reads the master set. out initialised by the caller. */
int store_keyset_get(struct store *st, const char *se_id, const char *sd_aid,
    uint8_t kvn, struct store_keyset *out) WUR;
int store_peer_get(struct store *st, const char *id,
    struct store_peer *out) WUR;
int store_task_get(struct store *st, const char *id,
    struct store_task *out) WUR;
/* ERR_NOTFOUND also when the record expired (expires <= now). */
int store_idem_get(struct store *st, const void *key, size_t key_len,
    uint64_t now, struct store_idem *out) WUR;
int store_doc_get(struct store *st, enum store_db db, const char *key,
    json_t **out) WUR;
/* Raw value bytes (copied). */
int store_raw_get(struct store *st, enum store_db db, const void *key,
    size_t key_len, struct buf *out) WUR;

/*
 * Iteration in key order over the keys that start with prefix (plen 0:
 * all), inside one read txn. The callback's pointers live only for the
 * call. A callback returns 0 to go on, > 0 to stop (iteration returns 0),
 * < 0 to stop with that error. Typed iterators return ERR_PARSE at the
 * first record that does not decode.
 */
typedef int (*store_raw_cb)(void *arg, const uint8_t *key, size_t klen,
    const uint8_t *val, size_t vlen);
int store_iter(struct store *st, enum store_db db, const void *prefix,
    size_t plen, store_raw_cb cb, void *arg) WUR;

typedef int (*store_ssd_cb)(void *arg, const struct store_ssd *r);
/* All SSDs of se_id (NULL: of every SE). */
int store_ssd_iter(struct store *st, const char *se_id, store_ssd_cb cb,
    void *arg) WUR;
typedef int (*store_keyset_cb)(void *arg, const struct store_keyset *r);
/* Key sets of one SSD (se_id NULL/"": master sets of sd_aid), by kvn. */
int store_keyset_iter(struct store *st, const char *se_id, const char *sd_aid,
    store_keyset_cb cb, void *arg) WUR;
typedef int (*store_task_cb)(void *arg, const struct store_task *r);
/* Tasks of se_id ("" : tasks without an SE) in state (NULL: any), in
 * task-id order within a state. se_id NULL: every task, by id. */
int store_task_iter(struct store *st, const char *se_id, const char *state,
    store_task_cb cb, void *arg) WUR;
typedef int (*store_sdstatus_cb)(void *arg, const struct store_sdstatus *r);
/* Events of one SSD (sd_aid NULL: of every SSD of se_id), oldest first. */
int store_sdstatus_iter(struct store *st, const char *se_id,
    const char *sd_aid, store_sdstatus_cb cb, void *arg) WUR;

/* ---- writes: batches through group commit -------------------------------- */

int  store_batch_new(struct store_batch **out) WUR;
void store_batch_free(struct store_batch *b);
/* Empties b for reuse. */
void store_batch_clear(struct store_batch *b);
/* Number of ops and conditions in b. */
size_t store_batch_len(const struct store_batch *b);

/*
 * Adding to a batch validates the op (key size, value decodes for the
 * db, db writable) and returns ERR_INVAL / ERR_PARSE / ERR_NOMEM /
 * ERR_LIMIT (more than 4096 ops or 64 MiB). A failed add also poisons the
 * batch: its commit returns the same error and writes nothing.
 * Index and meta dbs cannot be written directly.
 */
int store_batch_put(struct store_batch *b, enum store_db db, const void *key,
    size_t klen, const void *val, size_t vlen) WUR;
/* Put that fails the batch with ERR_EXISTS if the key is present. */
int store_batch_put_new(struct store_batch *b, enum store_db db,
    const void *key, size_t klen, const void *val, size_t vlen) WUR;
/* Delete; an absent key is not an error. */
int store_batch_del(struct store_batch *b, enum store_db db, const void *key,
    size_t klen) WUR;
/* Conditions, checked in order with the ops, against the state the batch
 * has built so far: absent (else ERR_EXISTS), present (else
 * ERR_WRONGSTATE), equal to val byte for byte (else ERR_WRONGSTATE). */
int store_batch_require_absent(struct store_batch *b, enum store_db db,
    const void *key, size_t klen) WUR;
int store_batch_require_present(struct store_batch *b, enum store_db db,
    const void *key, size_t klen) WUR;
int store_batch_require_equal(struct store_batch *b, enum store_db db,
    const void *key, size_t klen, const void *val, size_t vlen) WUR;

/* Typed puts (key derived from the record) and deletes. */
int store_batch_put_se(struct store_batch *b, const struct store_se *r) WUR;
int store_batch_put_ssd(struct store_batch *b, const struct store_ssd *r) WUR;
int store_batch_put_keyset(struct store_batch *b,
    const struct store_keyset *r) WUR;
int store_batch_put_peer(struct store_batch *b, const struct store_peer *r) WUR;
int store_batch_put_task(struct store_batch *b, const struct store_task *r) WUR;
/* Fails the batch with ERR_EXISTS if an unexpired record (expires > now)
 * holds the key; an expired one is replaced. */
int store_batch_put_idem(struct store_batch *b, const struct store_idem *r,
    uint64_t now) WUR;
/* Appends an event: sets r->seq (process-wide counter) when it is 0;
 * ERR_EXISTS at commit on the (unlikely) same time+seq. */
int store_batch_put_sdstatus(struct store_batch *b,
    struct store_sdstatus *r) WUR;
int store_batch_put_doc(struct store_batch *b, enum store_db db,
    const char *key, const json_t *doc) WUR;
/* Claims (peer, nonce) until now + window: ERR_EXISTS at commit when it
 * was claimed and has not expired (a replay). */
int store_batch_claim_nonce(struct store_batch *b, const char *peer,
    const char *nonce_hex, uint64_t now, uint64_t window) WUR;
int store_batch_del_se(struct store_batch *b, const char *se_id) WUR;
int store_batch_del_ssd(struct store_batch *b, const char *se_id,
    const char *sd_aid) WUR;
int store_batch_del_keyset(struct store_batch *b, const char *se_id,
    const char *sd_aid, uint8_t kvn) WUR;
int store_batch_del_task(struct store_batch *b, const char *id) WUR;
/* Compare-and-swap helpers: the stored record must encode exactly as r. */
int store_batch_require_ssd(struct store_batch *b,
    const struct store_ssd *r) WUR;
int store_batch_require_task(struct store_batch *b,
    const struct store_task *r) WUR;
/* Deletes up to max expired nonce and idempotency records (expires <= now);
 * the number deleted is reported through store_purge_expired. */
int store_batch_purge(struct store_batch *b, uint64_t now, uint32_t max) WUR;

/*
 * Applies b atomically and durably: queued for the writer thread, which
 * applies every waiting batch in one write txn (each in its own nested
 * txn) and commits with a full sync; returns once that commit is on disk.
 * b is not modified and may be reused. Returns 0, ERR_EXISTS or
 * ERR_WRONGSTATE (a condition failed: nothing of b was written),
 * ERR_LIMIT (map full), ERR_IO, ERR_NOMEM, ERR_NOTSUP (readonly store), or
 * the error that poisoned b. Other batches are never affected by b's
 * failure. Thread-safe; blocks.
 */
int store_batch_commit(struct store *st, const struct store_batch *b) WUR;

/*
 * The same without waiting: b is queued and fn(rc, arg) is called once
 * with what store_batch_commit would have returned, on the writer thread
 * after the group's commit, outside the store's lock. fn holds up every
 * later commit while it runs: it must be short and must not block, and
 * above all must not commit (the writer would wait for itself). b must
 * stay untouched until fn runs. Returns 0 (fn will run), or ERR_INVAL
 * (no fn, or b is empty), ERR_NOMEM, ERR_CLOSED, ERR_NOTSUP or b's poison
 * (fn will not run). Thread-safe.
 */
typedef void (*store_done_fn)(int rc, void *arg);
int store_batch_commit_async(struct store *st, const struct store_batch *b,
    store_done_fn fn, void *arg) WUR;

/* One-op conveniences (each one durable commit). */
/* 0 if (peer, nonce) was fresh and is now recorded until now + window;
 * ERR_EXISTS for a replay. Atomic: of two callers, exactly one gets 0. */
int store_nonce_check_and_put(struct store *st, const char *peer,
    const char *nonce_hex, uint64_t now, uint64_t window) WUR;
int store_idem_put(struct store *st, const struct store_idem *r,
    uint64_t now) WUR;
/* Deletes expired nonce/idempotency records, at most max; *purged gets the
 * count (may be NULL). */
int store_purge_expired(struct store *st, uint64_t now, uint32_t max,
    uint32_t *purged) WUR;

/* ---- maintenance (tsmctl store check / dump) ----------------------------- */

struct store_check_report {
	uint64_t records;	/* records examined */
	uint64_t problems;	/* problems printed */
	uint64_t expired;	/* expired nonce/idem records awaiting purge */
};
/*
 * Verifies every record decodes, matches its key, and that every reference
 * resolves (STORE.md "Check"), as of one read snapshot. Prints one line per
 * problem to out. Returns 0 (problems are counted, not errors) or an error
 * that prevented the check.
 */
int store_check(struct store *st, uint64_t now, FILE *out,
    struct store_check_report *rep) WUR;
/* Prints every record of db (STORE_DB_COUNT: all dbs) one per line; blobs,
 * bodies and task contexts as length + SHA-256 prefix. */
int store_dump(struct store *st, int db, FILE *out) WUR;

#endif
