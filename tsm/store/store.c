/*
 * store.c - the LMDB environment of tsmd's store: open (schema check,
 * initialisation, upgrade hook), close, the error mapping, and the read
 * side (getters and prefix iteration in read-only txns, MDB_NOTLS so any
 * thread reads). Runs in tsmd and tsmctl; decodes every value it returns.
 */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tsm/store/store_int.h"

#define META_SCHEMA "schema"

int
store_mdb_err(int rc)
{
	switch (rc) {
	case 0:
		return 0;
	case MDB_NOTFOUND:
		return ERR_NOTFOUND;
	case MDB_KEYEXIST:
		return ERR_EXISTS;
	case MDB_MAP_FULL:
	case MDB_TXN_FULL:
	case MDB_READERS_FULL:
	case MDB_DBS_FULL:
	case MDB_CURSOR_FULL:
	case MDB_TLS_FULL:
		return ERR_LIMIT;
	case MDB_BAD_VALSIZE:
		return ERR_INVAL;
	case MDB_VERSION_MISMATCH:
	case MDB_INVALID:
	case MDB_INCOMPATIBLE:
		return ERR_VERSION;
	case ENOMEM:
		return ERR_NOMEM;
	case ENOENT:
		return ERR_NOTFOUND;
	case MDB_PAGE_FULL:
	case MDB_BAD_RSLOT:
	case MDB_BAD_TXN:
	case MDB_BAD_DBI:
	case EINVAL:
		log_msg(LOG_ERR, "event=store_internal mdb=\"%s\"",
		    mdb_strerror(rc));
		return ERR_INTERNAL;
	default:
		/* EIO, ENOSPC, EACCES, MDB_CORRUPTED, MDB_PANIC, ... */
		log_msg(LOG_ERR, "event=store_io mdb=\"%s\"", mdb_strerror(rc));
		return ERR_IO;
	}
}

/* ---- schema ---------------------------------------------------------------- */

/*
 * Upgrade hook: upgrades[i] turns schema `from` into from + 1 inside the
 * opening write txn (rewriting records, opening new dbs).
 */
struct upgrade {
	uint32_t from;
	int (*fn)(struct store *st, MDB_txn *txn);
};

/* Schema 1 kept SEs, SSDs and key sets in three dbs ("se", "ssd",
 * "keyset"); 2 keeps them in one (STORE_BY_SE), under the same keys. */
/* The hint of an upgrade that ran out of map. */
#define MOVE_ROOM ": the move needs free map space of about the size of the " \
	"data (raise the map size once)"

static const enum store_db v1_dbs[] = { STORE_DB_SE, STORE_DB_SSD,
	STORE_DB_KEYSET };

/* mdb_reader_list's lines: "pid thread txnid"; counts other processes'. */
static int
other_reader(const char *msg, void *ctx)
{
	int pid;

	if (sscanf(msg, "%d", &pid) == 1 && pid != (int)getpid() && pid > 0)
		++*(int *)ctx;
	return 0;
}

/* 1 if schema 1's dbs exist and hold records (data whose schema record is
 * gone). */
static int
v1_data(MDB_txn *txn)
{
	MDB_stat ms;
	MDB_dbi d;
	size_t i;

	for (i = 0; i < ARRAY_LEN(v1_dbs); i++)
		if (mdb_dbi_open(txn, store_db_name(v1_dbs[i]), 0, &d) == 0 &&
		    mdb_stat(txn, d, &ms) == 0 && ms.ms_entries > 0)
			return 1;
	return 0;
}

static int
upgrade_1_to_2(struct store *st, MDB_txn *txn)
{
	char kt[2 * 32 + 1];
	MDB_cursor *c;
	MDB_dbi old[ARRAY_LEN(v1_dbs)];
	int has[ARRAY_LEN(v1_dbs)] = { 0 };
	size_t i, n[ARRAY_LEN(v1_dbs)] = { 0 };
	MDB_val k, v;
	const char *why;
	int rc, mrc, others = 0;

	/* A process that has the store open (an older tsmd or kmsctl)
	 * would keep using the dbs this drops: refused while one does. */
	(void)mdb_reader_list(st->env, other_reader, &others);
	if (others > 0) {
		log_msg(LOG_ERR, "event=store_upgrade_refused from=1 to=2 "
		    "msg=\"%d reader slot(s) of other processes: stop tsmd "
		    "and kmsctl of the older build first\"", others);
		return ERR_BUSY;
	}
	for (i = 0; i < ARRAY_LEN(v1_dbs); i++) {
		mrc = mdb_dbi_open(txn, store_db_name(v1_dbs[i]), 0, &old[i]);
		if (mrc == MDB_NOTFOUND)
			continue;
		if ((rc = store_mdb_err(mrc)) != 0 ||
		    (rc = store_mdb_err(mdb_cursor_open(txn, old[i], &c))) != 0)
			return rc;
		has[i] = 1;
		why = NULL;
		for (mrc = mdb_cursor_get(c, &k, &v, MDB_FIRST); mrc == 0;
		    mrc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
			/* a key of another shape would read as another
			 * record type: refused, nothing changed */
			if (!store_key_fits(v1_dbs[i], k.mv_data, k.mv_size))
				why = "a key of another record type's shape";
			else if ((mrc = mdb_put(txn, st->dbi[v1_dbs[i]], &k, &v,
			    MDB_NOOVERWRITE)) == MDB_KEYEXIST)
				why = "a key that " STORE_BY_SE " holds already";
			if (why != NULL || mrc != 0)
				break;
			n[i]++;
		}
		mdb_cursor_close(c);
		if (why != NULL) {
			hex_encode(k.mv_data, k.mv_size < 32 ? k.mv_size : 32, kt);
			log_msg(LOG_ERR, "event=store_upgrade_failed from=1 to=2 "
			    "db=%s key=%s msg=\"%s: nothing changed, the store "
			    "stays at schema 1\"", store_db_name(v1_dbs[i]), kt, why);
			return ERR_VERSION;
		}
		if (mrc != MDB_NOTFOUND) {
			log_msg(LOG_ERR, "event=store_upgrade_failed from=1 to=2 "
			    "db=%s msg=\"%s%s\"", store_db_name(v1_dbs[i]),
			    mdb_strerror(mrc), mrc == MDB_MAP_FULL ? MOVE_ROOM : "");
			return store_mdb_err(mrc);
		}
	}
	for (i = 0; i < ARRAY_LEN(v1_dbs); i++) {
		if (has[i] && (rc = store_mdb_err(mdb_drop(txn, old[i], 1))) != 0)
			return rc;
		st->upgrade_moved += n[i];	/* logged once committed */
	}
	return 0;
}

static const struct upgrade upgrades[] = {
	{ 1, upgrade_1_to_2 },
	{ 0, NULL }
};

static int
schema_upgrade(struct store *st, MDB_txn *txn, uint32_t ver)
{
	size_t i;
	int rc;

	while (ver < STORE_SCHEMA_VERSION) {
		for (i = 0; upgrades[i].fn != NULL; i++)
			if (upgrades[i].from == ver)
				break;
		if (upgrades[i].fn == NULL) {
			log_msg(LOG_ERR, "event=store_schema_old schema=%u "
			    "supported=%u msg=\"no upgrade path\"", (unsigned)ver,
			    STORE_SCHEMA_VERSION);
			return ERR_VERSION;
		}
		if ((rc = upgrades[i].fn(st, txn)) != 0)
			return rc;
		ver++;
	}
	return 0;
}

static int
schema_read(struct store *st, MDB_txn *txn, uint32_t *ver)
{
	MDB_val k = { strlen(META_SCHEMA), META_SCHEMA }, v;
	const uint8_t *p;
	int mrc;

	mrc = mdb_get(txn, st->dbi[STORE_DB_META], &k, &v);
	if (mrc != 0)
		return store_mdb_err(mrc);
	if (v.mv_size != 4)
		return ERR_VERSION;
	p = v.mv_data;
	*ver = (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	    (uint32_t)p[2] << 8 | p[3];
	return 0;
}

static int
schema_write(struct store *st, MDB_txn *txn, uint32_t ver)
{
	uint8_t b[4] = { (uint8_t)(ver >> 24), (uint8_t)(ver >> 16),
	    (uint8_t)(ver >> 8), (uint8_t)ver };
	MDB_val k = { strlen(META_SCHEMA), META_SCHEMA }, v = { 4, b };

	return store_mdb_err(mdb_put(txn, st->dbi[STORE_DB_META], &k, &v, 0));
}

/* Opens the dbs and settles the schema: initialise an empty store, upgrade
 * an older one, refuse a newer one. */
static int
schema_setup(struct store *st, const char *dir)
{
	MDB_txn *txn = NULL;
	MDB_stat ms;
	uint32_t ver = 0;
	int i, rc, mrc;
	unsigned flags = st->readonly ? MDB_RDONLY : 0;

	if ((rc = store_mdb_err(mdb_txn_begin(st->env, NULL, flags, &txn))) != 0)
		goto out;
	for (i = 0; i < STORE_DB_COUNT; i++) {
		mrc = mdb_dbi_open(txn, store_db_phys(i),
		    st->readonly ? 0 : MDB_CREATE, &st->dbi[i]);
		if (mrc == MDB_NOTFOUND) {
			/* (meta, the first, is there: its schema says why) */
			if (i > STORE_DB_META && schema_read(st, txn, &ver) == 0 &&
			    ver < STORE_SCHEMA_VERSION)
				log_msg(LOG_ERR, "event=store_open dir=%s schema=%u "
				    "msg=\"older schema: open it read-write to "
				    "upgrade\"", dir, (unsigned)ver);
			else
				log_msg(LOG_ERR, "event=store_open dir=%s msg=\"db "
				    "%s missing: not a store of this version\"",
				    dir, store_db_phys(i));
			rc = ERR_VERSION;
			goto out;
		}
		if ((rc = store_mdb_err(mrc)) != 0)
			goto out;
	}
	rc = schema_read(st, txn, &ver);
	if (rc == ERR_NOTFOUND && !st->readonly) {
		/* Initialise, but only a store that holds nothing (schema
		 * 1's dbs included). */
		if (v1_data(txn)) {
			log_msg(LOG_ERR, "event=store_open dir=%s msg=\"data "
			    "without a schema record: refusing\"", dir);
			rc = ERR_VERSION;
			goto out;
		}
		for (i = 1; i < STORE_DB_COUNT; i++) {
			if ((rc = store_mdb_err(mdb_stat(txn, st->dbi[i], &ms))) != 0)
				goto out;
			if (ms.ms_entries != 0) {
				log_msg(LOG_ERR, "event=store_open dir=%s msg=\"data "
				    "without a schema record: refusing\"", dir);
				rc = ERR_VERSION;
				goto out;
			}
		}
		if ((rc = schema_write(st, txn, STORE_SCHEMA_VERSION)) != 0)
			goto out;
		log_msg(LOG_INFO, "event=store_init dir=%s schema=%u", dir,
		    STORE_SCHEMA_VERSION);
		ver = STORE_SCHEMA_VERSION;
	} else if (rc != 0) {
		if (rc == ERR_NOTFOUND || rc == ERR_VERSION)
			log_msg(LOG_ERR, "event=store_open dir=%s msg=\"no valid "
			    "schema record\"", dir);
		rc = rc == ERR_NOTFOUND ? ERR_VERSION : rc;
		goto out;
	}
	if (ver == 0) {
		log_msg(LOG_ERR, "event=store_open dir=%s msg=\"invalid schema "
		    "record 0\"", dir);
		rc = ERR_VERSION;
		goto out;
	}
	if (ver > STORE_SCHEMA_VERSION) {
		log_msg(LOG_ERR, "event=store_open dir=%s schema=%u supported=%u "
		    "msg=\"store schema is newer than this build: refusing\"",
		    dir, (unsigned)ver, STORE_SCHEMA_VERSION);
		rc = ERR_VERSION;
		goto out;
	}
	if (ver < STORE_SCHEMA_VERSION) {
		if (st->readonly) {
			log_msg(LOG_ERR, "event=store_open dir=%s schema=%u "
			    "msg=\"older schema: open it read-write to upgrade\"",
			    dir, (unsigned)ver);
			rc = ERR_VERSION;
			goto out;
		}
		if ((rc = schema_upgrade(st, txn, ver)) != 0 ||
		    (rc = schema_write(st, txn, STORE_SCHEMA_VERSION)) != 0)
			goto out;
	}
	/* Commit even a read-only txn: that keeps the db handles open. */
	mrc = mdb_txn_commit(txn);
	txn = NULL;
	rc = store_mdb_err(mrc);
	if (ver < STORE_SCHEMA_VERSION && !st->readonly) {
		if (rc == 0)
			log_msg(LOG_INFO, "event=store_upgraded dir=%s from=%u to=%u "
			    "moved=%zu", dir, (unsigned)ver, STORE_SCHEMA_VERSION,
			    st->upgrade_moved);
		else
			log_msg(LOG_ERR, "event=store_upgrade_failed dir=%s from=%u "
			    "to=%u msg=\"commit: %s%s\"", dir, (unsigned)ver,
			    STORE_SCHEMA_VERSION, mdb_strerror(mrc), mrc ==
			    MDB_MAP_FULL ? MOVE_ROOM : "");
	}
out:
	if (txn != NULL)
		mdb_txn_abort(txn);
	return rc;
}

/* ---- open / close ---------------------------------------------------------- */

int
store_open(struct store **out, const char *dir, const struct store_opts *opts)
{
	struct store_opts o = { 0 };
	struct store *st = NULL;
	char path[PATH_MAX];
	struct stat sb;
	int rc, mrc, dead = 0, locks = 0, have;

	*out = NULL;
	if (opts != NULL)
		o = *opts;
	if (dir == NULL || dir[0] == '\0')
		return ERR_INVAL;
	if (snprintf(path, sizeof(path), "%s/data.mdb", dir) >=
	    (int)sizeof(path))
		return ERR_INVAL;
	have = stat(path, &sb) == 0;
	/* No size given (kmsctl, tsmctl): an existing store keeps the one
	 * LMDB recorded (tsmd's limits.storeMapMiB), a new or empty one (a
	 * process killed as it created it) gets the default. */
	if (o.map_size == 0 && (!have || sb.st_size == 0))
		o.map_size = STORE_MAP_SIZE_DEFAULT;
	if (o.max_readers == 0)
		o.max_readers = 126;
	if (o.max_group == 0)
		o.max_group = 1024;
	st = calloc(1, sizeof(*st));
	if (st == NULL)
		return ERR_NOMEM;
	st->readonly = o.readonly != 0;
	st->max_group = o.max_group;
	if (st->readonly) {
		if (!have) {
			log_msg(LOG_ERR, "event=store_open dir=%s msg=\"no store "
			    "here\"", dir);
			rc = ERR_NOTFOUND;
			goto out;
		}
	} else if ((rc = mkdir_p(dir, 0700)) != 0) {
		log_msg(LOG_ERR, "event=store_open dir=%s msg=\"cannot create "
		    "directory\"", dir);
		goto out;
	}
	if ((rc = store_mdb_err(mdb_env_create(&st->env))) != 0)
		goto out;
	/* (an upgrade also opens the dbs it empties) */
	if ((rc = store_mdb_err(mdb_env_set_maxdbs(st->env,
	    STORE_DB_COUNT + ARRAY_LEN(v1_dbs)))) != 0 ||
	    (o.map_size != 0 && (rc = store_mdb_err(mdb_env_set_mapsize(st->env,
	    (size_t)o.map_size))) != 0) ||
	    (rc = store_mdb_err(mdb_env_set_maxreaders(st->env,
	    o.max_readers))) != 0)
		goto out;
	/* Full sync on every commit: no MDB_NOSYNC / MDB_NOMETASYNC. */
	mrc = mdb_env_open(st->env, dir,
	    MDB_NOTLS | (st->readonly ? MDB_RDONLY : 0), 0600);
	if (mrc != 0) {
		log_msg(LOG_ERR, "event=store_open dir=%s mdb=\"%s\"", dir,
		    mdb_strerror(mrc));
		rc = store_mdb_err(mrc);
		goto out;
	}
	/* Reader slots of processes killed while reading (kill -9) would
	 * keep old pages alive for ever. */
	(void)mdb_reader_check(st->env, &dead);
	if (dead > 0)
		log_msg(LOG_INFO, "event=store_stale_readers cleared=%d", dead);
	if ((rc = schema_setup(st, dir)) != 0)
		goto out;
	if (pthread_mutex_init(&st->mu, NULL) != 0) {
		rc = ERR_NOMEM;
		goto out;
	}
	locks = 1;
	if (pthread_cond_init(&st->wake, NULL) != 0) {
		rc = ERR_NOMEM;
		goto out;
	}
	locks = 2;
	if (pthread_mutex_init(&st->rmu, NULL) != 0) {
		rc = ERR_NOMEM;
		goto out;
	}
	locks = 3;
	if (!st->readonly) {
		if (pthread_create(&st->writer, NULL, store_writer_main, st) != 0) {
			rc = ERR_NOMEM;
			goto out;
		}
		st->writer_started = 1;
	}
	*out = st;
	st = NULL;
	rc = 0;
out:
	if (st != NULL) {
		if (locks >= 3)
			pthread_mutex_destroy(&st->rmu);
		if (locks >= 2)
			pthread_cond_destroy(&st->wake);
		if (locks >= 1)
			pthread_mutex_destroy(&st->mu);
		if (st->env != NULL)
			mdb_env_close(st->env);
		free(st);
	}
	return rc;
}

void
store_close(struct store *st)
{
	if (st == NULL)
		return;
	if (st->writer_started) {
		pthread_mutex_lock(&st->mu);
		st->stop = 1;
		pthread_cond_signal(&st->wake);
		pthread_mutex_unlock(&st->mu);
		pthread_join(st->writer, NULL);
	}
	while (st->nrfree > 0)
		mdb_txn_abort(st->rfree[--st->nrfree]);
	pthread_cond_destroy(&st->wake);
	pthread_mutex_destroy(&st->mu);
	pthread_mutex_destroy(&st->rmu);
	mdb_env_close(st->env);
	free(st);
}

void
store_stats_get(struct store *st, struct store_stats *out)
{
	pthread_mutex_lock(&st->mu);
	*out = st->stats;
	pthread_mutex_unlock(&st->mu);
}

/* ---- reads ------------------------------------------------------------------ */

int
store_rtxn_begin(struct store *st, MDB_txn **txn)
{
	MDB_txn *t = NULL;

	pthread_mutex_lock(&st->rmu);
	if (st->nrfree > 0)
		t = st->rfree[--st->nrfree];
	pthread_mutex_unlock(&st->rmu);
	if (t != NULL) {
		if (mdb_txn_renew(t) == 0) {
			*txn = t;
			return 0;
		}
		mdb_txn_abort(t);
	}
	return store_mdb_err(mdb_txn_begin(st->env, NULL, MDB_RDONLY, txn));
}

void
store_rtxn_end(struct store *st, MDB_txn *txn)
{
	mdb_txn_reset(txn);
	pthread_mutex_lock(&st->rmu);
	if (st->nrfree < STORE_RTXN_KEEP) {
		st->rfree[st->nrfree++] = txn;
		txn = NULL;
	}
	pthread_mutex_unlock(&st->rmu);
	if (txn != NULL)
		mdb_txn_abort(txn);
}

typedef int (*val_fn)(void *arg, const void *p, size_t n);

/* Looks key up in a fresh read txn and hands the value to fn while the txn
 * is open. */
static int
read_one(struct store *st, enum store_db db, const void *key, size_t klen,
    val_fn fn, void *arg)
{
	MDB_txn *txn = NULL;
	MDB_val k = { klen, (void *)key }, v;
	int rc;

	if ((unsigned)db >= STORE_DB_COUNT || klen == 0 || klen > STORE_KEY_MAX ||
	    !store_key_fits(db, key, klen))
		return ERR_INVAL;
	if ((rc = store_rtxn_begin(st, &txn)) != 0)
		return rc;
	if ((rc = store_mdb_err(mdb_get(txn, st->dbi[db], &k, &v))) != 0)
		goto out;
	rc = fn(arg, v.mv_data, v.mv_size);
out:
	store_rtxn_end(st, txn);
	return rc;
}

static int
dec_se(void *a, const void *p, size_t n)
{
	return store_se_decode(p, n, a);
}

static int
dec_ssd(void *a, const void *p, size_t n)
{
	return store_ssd_decode(p, n, a);
}

static int
dec_keyset(void *a, const void *p, size_t n)
{
	return store_keyset_decode(p, n, a);
}

static int
dec_peer(void *a, const void *p, size_t n)
{
	return store_peer_decode(p, n, a);
}

static int
dec_task(void *a, const void *p, size_t n)
{
	return store_task_decode(p, n, a);
}

static int
dec_idem(void *a, const void *p, size_t n)
{
	return store_idem_decode(p, n, a);
}

static int
copy_raw(void *a, const void *p, size_t n)
{
	struct buf *b = a;

	buf_reset(b);
	return buf_put(b, p, n);
}

int
store_se_get(struct store *st, const char *se_id, struct store_se *out)
{
	char k[STORE_KEY_MAX + 1];
	int rc;

	if ((rc = store_key_se(k, se_id)) != 0)
		return rc;
	return read_one(st, STORE_DB_SE, k, strlen(k), dec_se, out);
}

int
store_ssd_get(struct store *st, const char *se_id, const char *sd_aid,
    struct store_ssd *out)
{
	char k[STORE_KEY_MAX + 1];
	int rc;

	if ((rc = store_key_ssd(k, se_id, sd_aid)) != 0)
		return rc;
	return read_one(st, STORE_DB_SSD, k, strlen(k), dec_ssd, out);
}

int
store_keyset_get(struct store *st, const char *se_id, const char *sd_aid,
    uint8_t kvn, struct store_keyset *out)
{
	char k[STORE_KEY_MAX + 1];
	int rc;

	if ((rc = store_key_keyset(k, se_id, sd_aid, kvn)) != 0)
		return rc;
	return read_one(st, STORE_DB_KEYSET, k, strlen(k), dec_keyset, out);
}

int
store_peer_get(struct store *st, const char *id, struct store_peer *out)
{
	char k[STORE_KEY_MAX + 1];
	int rc;

	if ((rc = store_key_peer(k, id)) != 0)
		return rc;
	return read_one(st, STORE_DB_PEER, k, strlen(k), dec_peer, out);
}

int
store_task_get(struct store *st, const char *id, struct store_task *out)
{
	char k[STORE_KEY_MAX + 1];
	int rc;

	if ((rc = store_key_task(k, id)) != 0)
		return rc;
	return read_one(st, STORE_DB_TASK, k, strlen(k), dec_task, out);
}

int
store_idem_get(struct store *st, const void *key, size_t key_len,
    uint64_t now, struct store_idem *out)
{
	int rc;

	if (key_len == 0 || key_len > STORE_DIGEST_MAX)
		return ERR_INVAL;
	rc = read_one(st, STORE_DB_IDEM, key, key_len, dec_idem, out);
	if (rc == 0 && out->expires <= now) {
		store_idem_cleanup(out);
		rc = ERR_NOTFOUND;
	}
	return rc;
}

struct doc_arg {
	enum store_db db;
	json_t **out;
};

static int
dec_doc(void *a, const void *p, size_t n)
{
	struct doc_arg *d = a;

	return store_doc_decode(d->db, p, n, d->out);
}

int
store_doc_get(struct store *st, enum store_db db, const char *key,
    json_t **out)
{
	struct doc_arg d = { db, out };
	int rc;

	*out = NULL;
	if (store_db_rec_type(db) < STORE_REC_PROVIDER)
		return ERR_INVAL;
	if ((rc = store_key_doc_check(key)) != 0)
		return rc;
	return read_one(st, db, key, strlen(key), dec_doc, &d);
}

int
store_raw_get(struct store *st, enum store_db db, const void *key,
    size_t key_len, struct buf *out)
{
	return read_one(st, db, key, key_len, copy_raw, out);
}

/* ---- iteration ----------------------------------------------------------------- */

/* Walks the keys starting with prefix of the LMDB db that db lives in,
 * inside txn; only db's own when mine. */
static int
walk(struct store *st, MDB_txn *txn, enum store_db db, const void *prefix,
    size_t plen, int mine, store_raw_cb cb, void *arg)
{
	MDB_cursor *c = NULL;
	MDB_val k = { plen, (void *)prefix }, v;
	int rc, mrc;

	if ((rc = store_mdb_err(mdb_cursor_open(txn, st->dbi[db], &c))) != 0)
		return rc;
	mrc = mdb_cursor_get(c, &k, &v, plen ? MDB_SET_RANGE : MDB_FIRST);
	while (mrc == 0) {
		if (plen > 0 && (k.mv_size < plen ||
		    memcmp(k.mv_data, prefix, plen) != 0))
			break;
		if (!mine || store_key_fits(db, k.mv_data, k.mv_size)) {
			rc = cb(arg, k.mv_data, k.mv_size, v.mv_data, v.mv_size);
			if (rc != 0) {
				rc = rc > 0 ? 0 : rc;
				goto out;
			}
		}
		mrc = mdb_cursor_get(c, &k, &v, MDB_NEXT);
	}
	rc = mrc == MDB_NOTFOUND || mrc == 0 ? 0 : store_mdb_err(mrc);
out:
	mdb_cursor_close(c);
	return rc;
}

int
store_walk(struct store *st, MDB_txn *txn, enum store_db db, const void *prefix,
    size_t plen, store_raw_cb cb, void *arg)
{
	return walk(st, txn, db, prefix, plen, 1, cb, arg);
}

int
store_walk_phys(struct store *st, MDB_txn *txn, enum store_db db,
    const void *prefix, size_t plen, store_raw_cb cb, void *arg)
{
	return walk(st, txn, db, prefix, plen, 0, cb, arg);
}

int
store_iter(struct store *st, enum store_db db, const void *prefix,
    size_t plen, store_raw_cb cb, void *arg)
{
	MDB_txn *txn = NULL;
	int rc;

	if ((unsigned)db >= STORE_DB_COUNT || plen > STORE_KEY_MAX ||
	    (plen > 0 && prefix == NULL))
		return ERR_INVAL;
	if ((rc = store_rtxn_begin(st, &txn)) != 0)
		return rc;
	rc = store_walk(st, txn, db, prefix, plen, cb, arg);
	store_rtxn_end(st, txn);
	return rc;
}

struct typed_arg {
	union {
		store_ssd_cb ssd;
		store_keyset_cb keyset;
		store_task_cb task;
		store_sdstatus_cb ev;
	} cb;
	void *arg;
	const char *state;	/* task filter */
	struct store *st;
	MDB_txn *txn;
};

static int
ssd_each(void *a, const uint8_t *k, size_t kn, const uint8_t *v, size_t vn)
{
	struct typed_arg *t = a;
	struct store_ssd r;

	if (store_ssd_decode(v, vn, &r) != 0)
		return ERR_PARSE;
	return t->cb.ssd(t->arg, &r);
}

int
store_ssd_iter(struct store *st, const char *se_id, store_ssd_cb cb, void *arg)
{
	struct typed_arg t = { .cb.ssd = cb, .arg = arg, .st = st };
	char p[STORE_KEY_MAX + 1];
	size_t pl = 0;
	int rc;

	if (se_id != NULL) {
		if ((rc = store_key_se(p, se_id)) != 0)
			return rc;
		pl = strlen(p);
		p[pl++] = '|';
	}
	return store_iter(st, STORE_DB_SSD, p, pl, ssd_each, &t);
}

static int
keyset_each(void *a, const uint8_t *k, size_t kn, const uint8_t *v, size_t vn)
{
	struct typed_arg *t = a;
	struct store_keyset r;
	int rc;

	store_keyset_init(&r);
	if (store_keyset_decode(v, vn, &r) != 0)
		rc = ERR_PARSE;
	else
		rc = t->cb.keyset(t->arg, &r);
	store_keyset_cleanup(&r);
	return rc;
}

int
store_keyset_iter(struct store *st, const char *se_id, const char *sd_aid,
    store_keyset_cb cb, void *arg)
{
	struct typed_arg t = { .cb.keyset = cb, .arg = arg, .st = st };
	char p[STORE_KEY_MAX + 1];
	size_t pl;
	int rc;

	/* The key of kvn 1 minus its last two characters is the prefix. */
	if ((rc = store_key_keyset(p, se_id, sd_aid, 1)) != 0)
		return rc;
	pl = strlen(p) - 2;
	return store_iter(st, STORE_DB_KEYSET, p, pl, keyset_each, &t);
}

static int
task_each(void *a, const uint8_t *k, size_t kn, const uint8_t *v, size_t vn)
{
	struct typed_arg *t = a;
	struct store_task r;
	int rc;

	store_task_init(&r);
	if (store_task_decode(v, vn, &r) != 0)
		rc = ERR_PARSE;
	else if (t->state != NULL && strcmp(r.state, t->state) != 0)
		rc = 0;
	else
		rc = t->cb.task(t->arg, &r);
	store_task_cleanup(&r);
	return rc;
}

/* An index entry "SE|STATE|ID": look the task up in the same txn. */
static int
task_idx_each(void *a, const uint8_t *k, size_t kn, const uint8_t *v,
    size_t vn)
{
	struct typed_arg *t = a;
	const uint8_t *bar = NULL;
	MDB_val key, val;
	size_t i;
	int mrc;

	for (i = kn; i > 0; i--)
		if (k[i - 1] == '|') {
			bar = k + i;
			break;
		}
	if (bar == NULL || bar == k + kn)
		return ERR_PARSE;
	key.mv_data = (void *)bar;
	key.mv_size = (size_t)(k + kn - bar);
	mrc = mdb_get(t->txn, t->st->dbi[STORE_DB_TASK], &key, &val);
	if (mrc == MDB_NOTFOUND) {
		log_msg(LOG_WARN, "event=store_dangling_index db=task_by_se "
		    "msg=\"run tsmctl store check\"");
		return 0;
	}
	if (mrc != 0)
		return store_mdb_err(mrc);
	return task_each(a, key.mv_data, key.mv_size, val.mv_data, val.mv_size);
}

int
store_task_iter(struct store *st, const char *se_id, const char *state,
    store_task_cb cb, void *arg)
{
	struct typed_arg t = { .cb.task = cb, .arg = arg, .state = state,
	    .st = st };
	char p[STORE_KEY_MAX + 1];
	size_t pl;
	int rc;

	if (se_id == NULL)
		return store_iter(st, STORE_DB_TASK, NULL, 0, task_each, &t);
	/* Build "SE|STATE|x" and cut the id (or the state) off. */
	if ((rc = store_task_idx_key(se_id, state ? state : "x", "x", p)) != 0)
		return rc;
	pl = strlen(p) - 1;
	if (state == NULL)
		pl -= 2;
	if ((rc = store_rtxn_begin(st, &t.txn)) != 0)
		return rc;
	rc = store_walk(st, t.txn, STORE_DB_TASK_IDX, p, pl, task_idx_each, &t);
	store_rtxn_end(st, t.txn);
	return rc;
}

static int
sdstatus_each(void *a, const uint8_t *k, size_t kn, const uint8_t *v,
    size_t vn)
{
	struct typed_arg *t = a;
	struct store_sdstatus r;

	if (store_sdstatus_decode(v, vn, &r) != 0)
		return ERR_PARSE;
	return t->cb.ev(t->arg, &r);
}

int
store_sdstatus_iter(struct store *st, const char *se_id, const char *sd_aid,
    store_sdstatus_cb cb, void *arg)
{
	struct typed_arg t = { .cb.ev = cb, .arg = arg, .st = st };
	char p[STORE_KEY_MAX + 1];
	size_t pl;
	int rc;

	if (sd_aid != NULL)
		rc = store_key_ssd(p, se_id, sd_aid);
	else
		rc = store_key_se(p, se_id);
	if (rc != 0)
		return rc;
	pl = strlen(p);
	p[pl++] = '|';
	return store_iter(st, STORE_DB_SDSTATUS, p, pl, sdstatus_each, &t);
}
