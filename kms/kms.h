/*
 * kms.h - the kmsd wire protocol constants and the client library tsmd (and
 * kmsctl, tests, benchmarks) use to talk to kmsd over its Unix sockets.
 * The client never sees key bytes: keys are named by label or by a handle
 * that lives in kmsd. Runs in the caller's process; trusts only kmsd.
 * The byte layout of every message is in kms/PROTOCOL.md.
 */
#ifndef SPTSM_KMS_H
#define SPTSM_KMS_H

#include <stddef.h>
#include <stdint.h>

#include "kms/base.h"

/* ---- wire constants (kms/PROTOCOL.md) ---------------------------------- */

#define KMS_PROTO_VERSION   3
#define KMS_HDR_LEN         16
#define KMS_MAX_FRAME       (256u * 1024u)	/* body bytes */
#define KMS_FLAG_REPLY      0x0001

enum kms_op {
	KMS_OP_HELLO            = 0x0001,
	KMS_OP_PING             = 0x0002,
	KMS_OP_RANDOM           = 0x0010,
	KMS_OP_KEY_INFO         = 0x0011,
	KMS_OP_KCV              = 0x0012,
	KMS_OP_KEYSET_GENERATE  = 0x0020,
	KMS_OP_KEYSET_IMPORT    = 0x0021,
	KMS_OP_KEYSET_OPEN      = 0x0022,
	KMS_OP_KEYSET_RECEIVE   = 0x0024,
	KMS_OP_HANDLE_CLOSE     = 0x0023,
	KMS_OP_SCP03_DERIVE     = 0x0030,
	KMS_OP_SCP03_KDF        = 0x0031,
	KMS_OP_SCP03_OPEN       = 0x0032,
	KMS_OP_CMAC             = 0x0040,
	KMS_OP_ENCRYPT          = 0x0041,
	KMS_OP_DECRYPT          = 0x0042,
	KMS_OP_WRAP             = 0x0043,
	KMS_OP_DIVERSIFY        = 0x0044,
	KMS_OP_SIGN             = 0x0050,
	KMS_OP_HMAC             = 0x0051,
	KMS_OP_HMAC_VERIFY      = 0x0052,
	KMS_OP_STATUS           = 0x0100,
	KMS_OP_UNSEAL           = 0x0101,
	KMS_OP_KEY_LIST         = 0x0102,
	KMS_OP_KEY_STATE        = 0x0103,
	KMS_OP_RELOAD           = 0x0104,
};

/* Key reference kinds. */
enum { KMS_REF_LABEL = 1, KMS_REF_HANDLE = 2 };

enum kms_alg {
	KMS_ALG_AES128 = 1, KMS_ALG_AES192 = 2, KMS_ALG_AES256 = 3,
	KMS_ALG_DES3 = 4, KMS_ALG_HMAC = 5, KMS_ALG_EC_P256 = 6,
	KMS_ALG_EC_P384 = 7, KMS_ALG_RSA = 8,
};
enum kms_kcv_method { KMS_KCV_GP = 1, KMS_KCV_CMAC = 2 };
/* Same values as pkcs11/p11.h enum p11_wrap_mech. */
enum kms_wrap {
	KMS_WRAP_AES_KW = 1, KMS_WRAP_AES_KWP = 2, KMS_WRAP_AES_CBC0 = 3,
	KMS_WRAP_RSA_OAEP_SHA1 = 4, KMS_WRAP_RSA_OAEP_SHA256 = 5,
};
enum kms_usage { KMS_USE_ENC = 1, KMS_USE_MAC = 2, KMS_USE_DEK = 3 };
enum kms_mode { KMS_ECB = 1, KMS_CBC = 2 };
enum kms_sign_mech { KMS_SIGN_ECDSA_SHA256 = 1, KMS_SIGN_ECDSA_SHA384 = 2 };
/* keyset.generate sources */
enum { KMS_KEYSET_RANDOM = 0, KMS_KEYSET_DIVERSIFIED = 1 };
/* keyset.open flags */
#define KMS_OPEN_EXPORTABLE 0x01	/* members may be wrapped (PUT KEY) */
#define KMS_OPEN_MASTER     0x02	/* members only derive (per-SE keys from a
					 * master set: kms_diversify on them) */

/* Key life-cycle states (NIST SP 800-57). */
enum kms_state {
	KMS_ST_PRE_ACTIVE = 1, KMS_ST_ACTIVE = 2, KMS_ST_SUSPENDED = 3,
	KMS_ST_DEACTIVATED = 4, KMS_ST_COMPROMISED = 5, KMS_ST_DESTROYED = 6,
	KMS_ST_PENDING_DESTRUCTION = 7,
};

const char *kms_op_name(int op);
const char *kms_alg_name(int alg);
int         kms_alg_parse(const char *s);	/* 0 when unknown */
size_t      kms_alg_keylen(int alg);		/* AES/DES3 bytes, else 0 */
const char *kms_state_name(int st);
int         kms_state_parse(const char *s);
const char *kms_usage_name(int u);
const char *kms_wrap_name(int m);
int         kms_wrap_parse(const char *s);

/* ---- client ----------------------------------------------------------- */

struct kms_client;

/* A key by token label (version 0 = the current one) or by handle. */
struct kms_ref {
	const char *label;
	uint32_t    version;
	uint32_t    handle;
};
#define KMS_LABEL(l)  ((struct kms_ref){ (l), 0, 0 })
#define KMS_HANDLE(h) ((struct kms_ref){ NULL, 0, (h) })

/*
 * Connects to kmsd at `path` and performs the version handshake. The role
 * is the socket's (kms.sock = tsm, kms-custodian.sock, kms-auditor.sock).
 * Errors: ERR_IO (cannot connect), ERR_VERSION, ERR_DENIED (identity not
 * allowed that role), ERR_PROTO.
 */
int  kms_connect(struct kms_client **out, const char *path,
	    const char *client_name) WUR;
void kms_close(struct kms_client *c);
/* Incremented on every reconnect: handles from an older generation are
 * gone (they lived in the old connection). */
uint32_t kms_generation(const struct kms_client *c);
/* kmsd's message for the last failed call ("" when none). */
const char *kms_last_error(const struct kms_client *c);
/* 1 when kmsd reported itself sealed at the last handshake/status. */
int  kms_sealed(const struct kms_client *c);
int  kms_fd(const struct kms_client *c);

int  kms_ping(struct kms_client *c) WUR;

struct kms_status {
	int      sealed;
	char     token[33];
	char     serial[17];
	uint32_t caps;		/* P11_CAP_* bits the token passed */
	uint32_t keys;
	uint64_t audit_seq;
	uint32_t connections;
	uint32_t handles;	/* live session-object handles, all connections */
};
int  kms_status(struct kms_client *c, struct kms_status *out) WUR;
int  kms_random(struct kms_client *c, uint8_t *out, size_t n) WUR;

struct kms_key_info {
	char     label[128];
	char     cls[32];
	int      alg;
	uint32_t version;
	int      state;
	uint8_t  kcv[5];
	size_t   kcvlen;
	int64_t  created;
};
int  kms_key_info(struct kms_client *c, struct kms_ref ref,
	    struct kms_key_info *out) WUR;
/* kcv: 3 bytes (GP) or 5 (CMAC); *len gets the length. */
int  kms_kcv(struct kms_client *c, struct kms_ref ref, int method,
	    uint8_t kcv[5], size_t *len) WUR;

#define KMS_KEYSET_MAX 8
struct kms_keyset_kcvs {
	size_t  n;
	uint8_t usage[KMS_KEYSET_MAX];
	uint8_t kcv[KMS_KEYSET_MAX][5];
	size_t  kcvlen;
};
struct kms_wrapped {
	uint8_t        usage;		/* KMS_USE_* */
	const uint8_t *wrapped;
	size_t         wlen;
	const uint8_t *kcv;		/* expected, in the peer's method */
	size_t         kcvlen;
};
/* A new random key set (ENC, MAC, DEK) as a storage blob plus KCVs. */
int  kms_keyset_generate(struct kms_client *c, int alg, int kcv_method,
	    struct buf *blob, struct kms_keyset_kcvs *kcvs) WUR;
/* A key set diversified from the master set `master` (token keys
 * <master>/enc, /mac, /dek): key_i = AES-ECB(master_i, div), div 16 bytes. */
int  kms_keyset_derive(struct kms_client *c, const char *master,
	    const uint8_t *div, size_t divlen, int kcv_method, struct buf *blob,
	    struct kms_keyset_kcvs *kcvs) WUR;
/* Unwraps keys under the transport KEK `kek`, checks every KCV in the
 * token, rewraps under the storage KEK. ERR_KCV / ERR_UNWRAP: no blob. */
int  kms_keyset_import(struct kms_client *c, const char *kek, int mech,
	    int alg, int kcv_method, const struct kms_wrapped *keys, size_t n,
	    struct buf *blob, struct kms_keyset_kcvs *kcvs) WUR;

/*
 * A key set a peer sent (keyset.receive), in one durable kmsd request:
 * kmsd verifies the peer's `mac` (32 bytes) over `msg` under the token MAC
 * key `mac_key` first (ERR_AUTH: nothing is unwrapped), imports the keys
 * as kms_keyset_import does, then MACs `receipt` with the same key. With
 * `ans_head` set it also MACs the answer that carries the receipt MAC:
 * HMAC(ans_head || hex(SHA-256(ans_pre || hex(receipt_mac) || ans_suf)))
 * into answer_mac (lowercase hex; tsmd's X-TSM-Signature input).
 */
struct kms_receive {
	const char               *mac_key;
	const uint8_t            *msg;
	size_t                    msglen;
	const uint8_t            *mac;
	const char               *kek;
	int                       mech, alg, kcv_method;
	const struct kms_wrapped *keys;
	size_t                    n;
	const uint8_t            *receipt;
	size_t                    rlen;
	const uint8_t            *ans_head, *ans_pre, *ans_suf;	/* or NULL */
	size_t                    ans_hlen, ans_plen, ans_slen;
};
int  kms_keyset_receive(struct kms_client *c, const struct kms_receive *in,
	    struct buf *blob, struct kms_keyset_kcvs *kcvs,
	    uint8_t receipt_mac[32], uint8_t answer_mac[32]) WUR;
/* The same in two halves, for pipelined use (kms_submit): the request
 * body appended to b, and the reply body decoded (answer_mac filled when
 * with_answer, i.e. in->ans_head was set). ERR_PROTO: malformed. */
int  kms_keyset_receive_encode(struct buf *b, const struct kms_receive *in)
	    WUR;
int  kms_keyset_receive_decode(struct rd *r, int with_answer,
	    struct buf *blob, struct kms_keyset_kcvs *kcvs,
	    uint8_t receipt_mac[32], uint8_t answer_mac[32]) WUR;

/* A custodian share names its token by serial; "pending" (kmsctl init
 * writes it before the token has one) goes with any token, and the PIN
 * check decides. 1 when the share may be offered to this token. */
#define KMS_SHARE_SERIAL_PENDING "pending"
int  kms_share_for_token(const char *share_serial, const char *token_serial);

struct kms_keyset {
	size_t   n;
	int      alg;
	uint8_t  usage[KMS_KEYSET_MAX];
	uint32_t handle[KMS_KEYSET_MAX];
	uint8_t  kcv[KMS_KEYSET_MAX][3];	/* GP method */
};
int  kms_keyset_open(struct kms_client *c, const uint8_t *blob, size_t n,
	    unsigned flags, struct kms_keyset *out) WUR;
int  kms_handle_close(struct kms_client *c, uint32_t h) WUR;
/* Several handles in one round trip; all are checked before any closes. */
#define KMS_CLOSE_MAX 16
int  kms_handle_close_n(struct kms_client *c, const uint32_t *h, size_t n) WUR;

/* GP SCP03 KDF (gp-reference §1.3). derive: consts 04/06/07, new handle;
 * kdf: consts 00/01/02, bytes out (lbits/8). */
int  kms_scp03_derive(struct kms_client *c, uint32_t base, uint8_t konst,
	    const uint8_t *ctx, size_t clen, uint16_t lbits, uint32_t *out) WUR;
int  kms_scp03_kdf(struct kms_client *c, uint32_t key, uint8_t konst,
	    const uint8_t *ctx, size_t clen, uint16_t lbits, uint8_t *out) WUR;
/* An SCP03 session's opening in one round trip: S-MAC, S-ENC and S-RMAC
 * as asked (flags), the card and (SCP03_OPEN_HOST) host cryptograms over
 * `ctx`, and the pseudo-random card challenge when chal_ctx is given. */
#define SCP03_OPEN_SENC  0x01
#define SCP03_OPEN_SRMAC 0x02
#define SCP03_OPEN_HOST  0x04
struct kms_scp03_open {
	uint32_t s_enc, s_mac, s_rmac;	/* 0: not made */
	uint8_t  card_crypto[16];
	uint8_t  host_crypto[16];
	uint8_t  challenge[16];
	size_t   clen;			/* cryptogram/challenge bytes */
	int      has_challenge;
};
int  kms_scp03_open(struct kms_client *c, uint32_t enc, uint32_t mac,
	    unsigned flags, const uint8_t *ctx, size_t clen, uint16_t cbits,
	    const uint8_t *chal_ctx, size_t chal_len,
	    struct kms_scp03_open *out) WUR;
int  kms_cmac(struct kms_client *c, uint32_t h, const uint8_t *d, size_t n,
	    uint8_t mac[16]) WUR;
int  kms_encrypt(struct kms_client *c, uint32_t h, int mode,
	    const uint8_t iv[16], const uint8_t *in, size_t n, uint8_t *out) WUR;
int  kms_decrypt(struct kms_client *c, uint32_t h, int mode,
	    const uint8_t iv[16], const uint8_t *in, size_t n, uint8_t *out) WUR;
/* AES-CBC zero-ICV wrap of key under dek (both handles); *outlen in/out. */
int  kms_wrap(struct kms_client *c, uint32_t dek, uint32_t key, uint8_t *out,
	    size_t *outlen) WUR;
/* The same for n (1..KMS_WRAP_MAX) keys in one round trip: out[i] (32
 * bytes each) and outlen[i] for keys[i]. */
#define KMS_WRAP_MAX 8
int  kms_wrap_n(struct kms_client *c, uint32_t dek, const uint32_t *keys,
	    size_t n, uint8_t (*out)[32], size_t *outlen) WUR;
/* New handle of a key-set member with `usage` (KMS_USE_*): the key
 * AES-ECB(master, data), derived in the token; data as long as the key.
 * `master` is a token master key (label) or a member of a key set opened
 * with KMS_OPEN_MASTER (handle). */
int  kms_diversify(struct kms_client *c, struct kms_ref master,
	    const uint8_t *data, size_t n, int usage, uint32_t *out) WUR;
/* ECDSA; sig gets raw r||s. `profile` names the issuing profile the
 * to-be-signed data must satisfy (0: none; see PROTOCOL.md). */
int  kms_sign(struct kms_client *c, struct kms_ref key, int mech,
	    uint8_t profile, const uint8_t *d, size_t n, uint8_t *sig,
	    size_t *siglen) WUR;
int  kms_hmac(struct kms_client *c, struct kms_ref key, const uint8_t *d,
	    size_t n, uint8_t out[32]) WUR;
int  kms_hmac_verify(struct kms_client *c, struct kms_ref key,
	    const uint8_t *d, size_t n, const uint8_t mac[32]) WUR;

/*
 * Pipelining: several requests in flight on one connection. kms_submit
 * queues a request (body already encoded) and returns its id; kms_flush
 * writes what is queued; kms_next reads the next reply (replies come in
 * request order). The synchronous calls above must not be mixed with
 * outstanding pipelined requests: a synchronous call that reads a reply to
 * another request fails with ERR_PROTO and drops the connection (the next
 * call reconnects, kms_generation changes).
 */
int  kms_submit(struct kms_client *c, int op, const struct buf *body,
	    uint32_t *id) WUR;
int  kms_flush(struct kms_client *c) WUR;
/* *status: the operation's result; *body points into the client's buffer
 * until the next call. */
int  kms_next(struct kms_client *c, uint32_t *id, int *status,
	    struct rd *body) WUR;
/*
 * One connection, two threads: after kms_share(c), one thread may read
 * replies with kms_next while another (the callers serialize themselves)
 * submits and flushes. kms_next then keeps no error text and never closes
 * the socket, even on ERR_TIMEOUT (the 30 s receive timeout on a partial
 * reply): the sharer drops the connection. kms_buffered: 1 when a whole
 * received frame waits to be handed out (kms_next needs no new data).
 */
void kms_share(struct kms_client *c);
int  kms_buffered(const struct kms_client *c);
/* kms_flush for a caller that must not wait: 0 when everything queued
 * went out; ERR_BUSY when the socket took not a byte (the output is cut
 * back to mark, a kms_out_len taken before the last kms_submit: those
 * requests were never sent); ERR_CLOSED when the connection failed or
 * took only part (out of step: drop it). */
size_t kms_out_len(const struct kms_client *c);
int  kms_flush_nowait(struct kms_client *c, size_t mark) WUR;

/* Low-level call used by kmsctl for the custodian/auditor operations:
 * sends op with body, waits for the reply, returns its status; reply body
 * copied to `reply` (may be NULL). */
int  kms_call(struct kms_client *c, int op, const struct buf *body,
	    struct buf *reply) WUR;

/* Encoders shared with kmsd (proto.c). */
int  kms_put_ref(struct buf *b, struct kms_ref r) WUR;

#endif
