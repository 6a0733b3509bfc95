/*
 * kmsd.h - internals shared by the files of kmsd (the server loop in
 * kmsd.c, the operations in kmsd_ops.c, key-set blobs in blob.c). Not a
 * public header. kmsd is the only long-running process that loads PKCS#11.
 */
#ifndef SPTSM_KMSD_H
#define SPTSM_KMSD_H

#include <pthread.h>
#include <sys/types.h>

#include "kms/audit.h"
#include "kms/keystore.h"
#include "kms/proto.h"
#include "policy/policy.h"

/* Usages of handles (keyset members use KMS_USE_ENC/MAC/DEK). */
enum { H_SENC = 11, H_SMAC = 12, H_SRMAC = 13 };

struct handle {
	uint32_t id;		/* 0: free slot */
	p11_obj  obj;
	int      cls;		/* KS_KEYSET or KS_SESSION */
	int      usage;		/* KMS_USE_* or H_* */
	int      alg;
	int      exportable;
	int      derive_only;	/* member of a master set */
	uint8_t  kcv[3];
	uint8_t  kcv_cmac[5];
	uint64_t last_used_ms;
	uint64_t uses;
	uint32_t audited;	/* bit per op already audited on this handle */
};

struct conn {
	int            fd;
	int            role;
	uid_t          uid;
	gid_t          gid;
	pid_t          pid;
	int            hello;		/* handshake done */
	int            closing;		/* close after the output drains */
	uint32_t       events;		/* epoll events armed */
	int            dirty;		/* on the flush list */
	char           audited[8][200];	/* "op key" already audited (MAC ops) */
	unsigned       naudited;
	uint64_t       out_done;	/* output bytes written so far */
	struct {
		uint64_t gen;		/* audit sync it waits for */
		uint64_t at;		/* output from here (out_done scale) */
	}              hold[4];		/* oldest first, gens rising */
	unsigned       nhold;
	int            is_held;		/* on the held list */
	struct conn   *next_held;
	int            is_pending;	/* on the pending list */
	struct conn   *next_pending;
	struct buf     in;
	struct buf     out;
	struct handle *h;		/* slots */
	size_t         nh;
	struct conn   *next;		/* all connections */
	struct conn   *next_dirty;
};

struct kmsd_cfg {
	const char *var;		/* var dir */
	const char *run_dir;		/* sockets */
	const char *policy;
	const char *audit_path;
	const char *module;
	const char *token_uri;
	const char *pin_file;		/* --insecure-pin-file */
	const char *storage_kek;	/* label */
	const char *audit_key;		/* label */
	unsigned    idle_timeout_s;
	int         fd_limit;
};

struct kmsd {
	struct kmsd_cfg cfg;
	struct p11     *p;
	struct keystore ks;
	struct policy  *pol;
	struct audit   *audit;
	int             sealed;
	uint32_t        caps;
	int             epfd;
	int             lfd[ROLE_COUNT];	/* listening socket per role */
	int             sigfd;
	int             stop;
	struct conn    *conns;
	struct conn    *dirty;
	struct conn    *pending;	/* frames read, not yet served */
	uint64_t        next_sweep_ms;
	/* group commit off the event loop: a syncer thread fdatasyncs the
	 * audit log; replies that depend on durable records wait for it */
	pthread_t       syncer;
	pthread_mutex_t sync_mu;
	pthread_cond_t  sync_cv;
	int             sync_fd;	/* audit fd to sync */
	int             sync_evfd;	/* syncer -> loop: generation done */
	int             sync_stop;
	uint64_t        sync_req;	/* generations requested */
	uint64_t        sync_done;	/* generations on disk */
	int             sync_started;
	struct conn    *held;		/* connections waiting for a sync */
	/* quorum state (kmsctl unseal) */
	void           *unseal;
};

/* One request being served. */
struct req {
	struct kmsd         *d;
	struct conn         *c;
	const struct kms_hdr *h;
	struct rd            body;
	struct buf          *reply;
	char                 msg[200];	/* error detail for the client */
	char                 key[2 * KS_LABEL_MAX + 16]; /* key(s) named in the
						 * audit record */
	int                  audited;	/* the handler wrote the record */
	int                  skip_audit; /* repeat use of an audited handle */
};

/* The dispatch table (kmsd_ops.c). */
struct op_row {
	uint16_t    type;
	const char *name;
	int (*fn)(struct req *rq);
	unsigned    roles;		/* bit per role that may reach the handler */
	int         audit;		/* AUDIT_* */
	int         sealed_ok;		/* may run while sealed */
	int         parts;		/* the policy decides on the operations
					 * it is made of, not on its name */
};
enum { AUDIT_NONE = 0, AUDIT_EACH = 1, AUDIT_DURABLE = 2, AUDIT_FIRST_USE = 3 };

const struct op_row *kmsd_op_find(uint16_t type);
/* Every operation name (policy vocabulary), NULL-terminated. */
const char *const *kmsd_op_names(void);
extern const char *const kmsd_param_names[];
const struct policy_vocab *kmsd_vocab(void);

/* kmsd.c services used by the operations */
int  kmsd_audit(struct req *rq, const char *op, const char *key,
	    const char *result, const char *detail, int durable);
struct handle *kmsd_handle_get(struct conn *c, uint32_t id);
int  kmsd_handle_new(struct conn *c, struct handle **out);
void kmsd_handle_free(struct kmsd *d, struct conn *c, struct handle *h,
	    const char *why);
int  kmsd_login(struct kmsd *d, const char *pin, size_t pinlen) WUR;
int  kmsd_load_policy(struct kmsd *d) WUR;

/* kmsd.c: connections (the loop in kmsd_main.c drives them) */
void kmsd_accept(struct kmsd *d, int role);
/* hup: epoll reported EPOLLHUP or EPOLLERR. */
void kmsd_conn_read(struct kmsd *d, struct conn *c, int hup);
void kmsd_conn_close(struct kmsd *d, struct conn *c);
int  kmsd_conn_flush(struct kmsd *d, struct conn *c);
void kmsd_mark_dirty(struct kmsd *d, struct conn *c);
void kmsd_flush_dirty(struct kmsd *d);
/* The audit syncer thread (kmsd_main); without it syncs are inline. */
int  kmsd_syncer_start(struct kmsd *d) WUR;
void kmsd_syncer_stop(struct kmsd *d);
/* Called when the syncer signals: releases held connections. */
void kmsd_sync_done(struct kmsd *d);
void kmsd_sweep(struct kmsd *d);
/* 16: the audit records of a pass are synced, and its durable replies
 * released, only after the pass, so a long pass holds the replies of its
 * first frames (64 left the CPUs idle a fifth of the time in
 * keysync_bench); 8 costs more syncs and wake-ups than it saves. */
#define KMSD_FRAMES_PASS 16
/* Serves the complete frames buffered in c->in, at most KMSD_FRAMES_PASS
 * of them, replies into c->out; no I/O (the fuzz target calls it
 * directly). 0: all served; 1: more complete frames wait; -1: close the
 * connection. */
int  kmsd_serve_input(struct kmsd *d, struct conn *c);
/* Serves connections with frames left over by the last pass (the loop
 * does not wait in epoll while there are any). */
void kmsd_serve_pending(struct kmsd *d);

/* ---- key sets (keyset.c): blobs and their members ---- */

/* A member as a session object in the token. */
struct member {
	int      usage;		/* KMS_USE_ENC/MAC/DEK */
	p11_obj  obj;
	uint8_t  kcv[3];	/* GP */
	uint8_t  kcv_cmac[5];
};

#define BLOB_WRAPPED 1		/* members wrapped under the storage KEK */
#define BLOB_DERIVED 2		/* members re-derived from master keys */

/* What policy needs to know before anything is unwrapped. */
struct blob_head {
	int      type;
	int      alg;
	size_t   n;
	char     key[KS_LABEL_MAX];	/* storage KEK, or first master label */
	uint32_t version;
};
int  keyset_peek(const uint8_t *blob, size_t n, struct blob_head *h) WUR;

/* New random key set wrapped under the storage KEK (master == NULL), or a
 * set diversified from <master>/enc|mac|dek with div. KCVs in out[]. */
int  keyset_generate(struct kmsd *d, int alg, const char *master,
	    const uint8_t *div, size_t divlen, struct buf *blob,
	    struct member out[3], char *msg, size_t msgcap) WUR;

struct wrapped_in {
	uint8_t        usage;
	const uint8_t *w;
	size_t         wlen;
	const uint8_t *kcv;
	size_t         kcvlen;
};
int  keyset_import(struct kmsd *d, const char *kek, int mech, int alg,
	    int kcv_method, const struct wrapped_in *in, size_t n,
	    struct buf *blob, struct member out[], char *msg, size_t msgcap) WUR;

/* Members as session objects, usable for their role; exportable ones may
 * be wrapped under a DEK (PUT KEY). The caller owns out[i].obj. */
int  keyset_open(struct kmsd *d, const uint8_t *blob, size_t n, unsigned flags,
	    struct member out[KMS_KEYSET_MAX], size_t *nout, int *alg, char *msg,
	    size_t msgcap) WUR;
/* Rewraps a BLOB_WRAPPED blob under the current storage KEK version,
 * checking every member's KCV on the way. *changed = 0 (and out empty)
 * when the blob already uses the current version or is diversified. */
int  keyset_rewrap(struct kmsd *d, const uint8_t *blob, size_t n,
	    struct buf *out, int *changed, char *msg, size_t msgcap) WUR;
/* Session-object template of a member's role; flags KMS_OPEN_*. */
void keyset_member_spec(int usage, unsigned flags, struct p11_keyspec *s);

#endif
