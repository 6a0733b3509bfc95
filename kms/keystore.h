/*
 * keystore.h - the token's managed keys: class, algorithm, versions and
 * life-cycle state, kept in the token itself as one private CKO_DATA
 * object per key label (application "sptsm-kms"), so state and version
 * survive restarts and travel with the token. Creates keys of each class
 * with exactly the attributes the design gives it.
 * Runs in kmsd and kmsctl (both link pkcs11/).
 */
#ifndef SPTSM_KEYSTORE_H
#define SPTSM_KEYSTORE_H

#include "kms/kms.h"
#include "pkcs11/p11.h"

#define KS_APPLICATION "sptsm-kms"
#define KS_LABEL_MAX 128

enum ks_class {
	KS_NONE = 0,
	KS_STORAGE_KEK,		/* AES-256, wrap/unwrap key-set blobs */
	KS_AUDIT,		/* HMAC-SHA256 over audit records */
	KS_BACKUP_KEK,		/* AES-256 from components, wraps backups */
	KS_TRANSPORT_KEK,	/* AES per SEI peer, unwrap-only */
	KS_TRANSPORT_RSA,	/* RSA-3072 key-transport pair */
	KS_MASTER,		/* SP master keys, derive-only */
	KS_MAC,			/* peer message-auth HMAC keys */
	KS_CA,			/* EC CA signing key */
	KS_KEYSET,		/* SSD key-set member (session object only) */
	KS_SESSION,		/* SCP03 session key (session object only) */
	KS_CLASS_COUNT
};

const char *ks_class_name(int cls);
int         ks_class_parse(const char *s);		/* KS_NONE if unknown */
/* Token classes that may be wrapped under the backup KEK. */
int         ks_class_backup_eligible(int cls);
/* The class names policy files may use (all of them, NULL-terminated). */
extern const char *const ks_class_names[];

struct ks_version {
	uint32_t v;
	int      state;			/* enum kms_state */
	uint8_t  kcv[3];		/* GP method; kcvlen 0 for asym/HMAC */
	size_t   kcvlen;
	int64_t  created;
	int64_t  changed;
	int64_t  destroy_after;		/* PENDING_DESTRUCTION deadline */
	int      prev_state;		/* state before PENDING_DESTRUCTION */
	char     reason[128];
	p11_obj  obj;			/* secret or private key; 0 = unknown */
	p11_obj  pub;			/* public key of a pair */
	p11_obj  sobj;			/* session copy (kmsd hot path) */
};

struct ks_key {
	char               label[KS_LABEL_MAX];
	int                cls;
	int                alg;
	uint32_t           current;	/* version used for new work */
	struct ks_version *vers;
	size_t             nvers;
	p11_obj            meta;	/* the CKO_DATA object */
	uint64_t           rev;		/* metadata revision */
};

struct keystore {
	struct p11    *p;
	struct ks_key *keys;
	size_t         n, cap;
};

/* Reads every metadata object of the token (needs a user login). */
int  ks_load(struct keystore *ks, struct p11 *p) WUR;
void ks_free(struct keystore *ks);

struct ks_key *ks_find(struct keystore *ks, const char *label);
/* v = 0: the current version. ERR_NOKEY when absent. */
int  ks_version(struct ks_key *k, uint32_t v, struct ks_version **out) WUR;
/* Token object of a version (private key for pairs), looked up by label
 * and CKA_ID through the p11 handle cache. */
int  ks_object(struct keystore *ks, struct ks_key *k, struct ks_version *ver,
	    p11_obj *out) WUR;
int  ks_public(struct keystore *ks, struct ks_key *k, struct ks_version *ver,
	    p11_obj *out) WUR;
/* The key's session-object copy, made on first use (kmsd: token objects
 * are several times slower to use on SoftHSM2); falls back to the token
 * object when the token refuses to copy. */
int  ks_object_fast(struct keystore *ks, struct ks_key *k, struct ks_version *ver,
	    p11_obj *out) WUR;
/* Drop cached handles of a version (after ERR_HANDLE). */
void ks_forget(struct keystore *ks, struct ks_key *k, struct ks_version *ver);

/*
 * Generates a new key (version 1, or current+1 when the label exists and
 * `rotate` is set) with the class's attributes and records it ACTIVE (or
 * PRE_ACTIVE when pre_active). alg 0 = the class default. Returns the
 * version in *version.
 */
int  ks_generate(struct keystore *ks, const char *label, int cls, int alg,
	    int rotate, int pre_active, uint32_t *version) WUR;
/* Creates a secret token key from bytes (custodian components, restore).
 * kcv (3 bytes GP) is recorded; NULL = computed when possible. */
int  ks_import_secret(struct keystore *ks, const char *label, int cls,
	    int alg, const uint8_t *val, size_t n, const uint8_t *kcv,
	    int rotate, uint32_t *version) WUR;
/* Records a key created elsewhere (restore of pairs): creates or updates
 * the metadata for (label, version). */
int  ks_record(struct keystore *ks, const char *label, int cls, int alg,
	    uint32_t version, int state, const uint8_t *kcv, size_t kcvlen) WUR;

/* State change with the SP 800-57 transition rules; ERR_WRONGSTATE when the
 * transition is not allowed. Persists the metadata. */
int  ks_set_state(struct keystore *ks, struct ks_key *k, struct ks_version *ver,
	    int state, const char *reason, int64_t destroy_after) WUR;
/* Destroys the token object(s) and records DESTROYED. */
int  ks_destroy_version(struct keystore *ks, struct ks_key *k,
	    struct ks_version *ver, const char *reason) WUR;
/* Makes `v` the version for new work. */
int  ks_set_current(struct keystore *ks, struct ks_key *k, uint32_t v) WUR;
int  ks_save(struct keystore *ks, struct ks_key *k) WUR;

/* ---- backup and restore (kmsctl) ---- */

/* Wraps a version's key under kek with AES-KWP (private key for a pair).
 * pub gets the EC point of a pair (else empty); check gets 8 bytes that
 * prove the key's value at restore where no KCV exists (HMAC keys:
 * HMAC(K, "sptsm-backup-check")). */
int  ks_wrap_version(struct keystore *ks, struct ks_key *k,
	    struct ks_version *v, p11_obj kek, struct buf *wrapped,
	    struct buf *pub, uint8_t check[8]) WUR;
/* Recreates the key object(s) of (label, version) from a backup and
 * records the metadata `meta` (state, KCV, dates, reason). The restored
 * value is proven equal by KCV (AES), check (HMAC) or a signature that
 * verifies under the backed-up public key (EC). ERR_KCV when it differs. */
int  ks_unwrap_version(struct keystore *ks, const char *label, int cls,
	    int alg, const struct ks_version *meta, p11_obj kek,
	    const uint8_t *w, size_t wl, const uint8_t *pub, size_t pl,
	    const uint8_t check[8]) WUR;

/* Which operation kinds a state allows (SP 800-57: a deactivated key may
 * still unwrap, verify and decrypt; nothing else). */
enum ks_use { KS_USE_PROTECT = 1, KS_USE_PROCESS = 2, KS_USE_INFO = 3 };
int  ks_state_allows(int state, int use);

/* KCV of AES key bytes (GP: AES(K, 01x16)[0..2]; CMAC: CMAC(K, 0x16)[0..4])
 * or 3DES (first 3 bytes of 3DES(K, 00x8)), in software, for components. */
int  ks_kcv_bytes(int alg, int method, const uint8_t *key, size_t n,
	    uint8_t *kcv, size_t *kcvlen) WUR;

#endif
