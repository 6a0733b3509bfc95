/*
 * vse_int.h - internal structures of the virtual Secure Element: the
 * registry, key sets, per-channel secure-channel sessions and the helpers
 * the command handlers share. Runs inside whatever process links libvse
 * (the vse CLI, tests, simulators); trusts nothing that arrives in an APDU.
 */
#ifndef SPTSM_VSE_INT_H
#define SPTSM_VSE_INT_H

#include <stddef.h>
#include <stdint.h>

#include "kms/base.h"
#include "tests/sim/vse/vse.h"

/* ---- limits (all refusals beyond them are 6A84 or 6700) ---------------- */
#define VSE_CHANNELS      4	/* basic logical channels 0..3 (ISO 7816-4 §5.1.1) */
#define VSE_MAX_ENTRIES   256
#define VSE_MAX_KEYSETS   6	/* per SD; keeps GET DATA 00E0 under one response */
#define VSE_MAX_KEYS      4	/* per key set */
#define VSE_KEY_MAX       512	/* RSA-4096 modulus */
#define VSE_EXP_MAX       16
#define VSE_MAX_MODULES   8
#define VSE_MAX_RECORDS   64	/* STORE DATA blocks kept per entry */
#define VSE_RECORD_MAX    4096
#define VSE_LOAD_MAX      (1024u * 1024u)
#define VSE_PARAMS_MAX    1024
#define VSE_RSP_DATA_MAX  256	/* short Le: one response carries <= 256 bytes */

/* ---- registry ------------------------------------------------------------ */

enum vse_kind { VSE_KIND_ISD = 1, VSE_KIND_SSD, VSE_KIND_APP, VSE_KIND_ELF };

struct vse_aid {
	uint8_t len;
	uint8_t b[16];
};

/* Key types as they appear in PUT KEY (GPC §11.8.2.3, gp-reference §4). */
#define VSE_KEY_AES  0x88
#define VSE_KEY_RSA  0xA1	/* public: modulus (A1) + exponent (A0) */
#define VSE_KEY_EC   0xB0	/* public: uncompressed point, curve F0 */

/* Well-known key versions (gp-reference §6: UICC key map). */
#define VSE_KVN_TOKEN   0x70
#define VSE_KVN_RECEIPT 0x71

struct vse_key {
	uint8_t  kid;
	uint8_t  type;
	uint8_t  curve;		/* EC: 00 P-256, 01 P-384 (GP curve reference) */
	uint16_t len;
	uint8_t  val[VSE_KEY_MAX];
	uint16_t exp_len;
	uint8_t  exp[VSE_EXP_MAX];
};

struct vse_keyset {
	uint8_t  kvn;
	uint32_t seq;		/* SCP03 sequence counter: last value used */
	uint8_t  nkeys;
	struct vse_key keys[VSE_MAX_KEYS];
};

struct vse_record {		/* one STORE DATA block as personalised */
	uint8_t  p1, p2;
	uint8_t  decrypted;	/* 1 when the card removed the DEK encryption */
	uint8_t *data;
	size_t   len;
};

/* SD install parameters seen in C9 (gp-reference §5 "Creating an SSD"). */
#define VSE_SDF_EXTRAD_IN   0x01	/* 82 */
#define VSE_SDF_DELETE      0x02	/* 83 */
#define VSE_SDF_PERSO       0x04	/* 84: go straight to PERSONALIZED */
#define VSE_SDF_CASD        0x08	/* 86 */
#define VSE_SDF_EXTRAD_OUT  0x10	/* 87 */

struct vse_entry {
	enum vse_kind  kind;
	struct vse_aid aid;
	uint8_t        lcs;		/* ISD: the card life cycle state */
	uint8_t        lcs_prev;	/* state to restore on unlock */
	uint8_t        priv[3];
	struct vse_aid sd;		/* associated SD; empty for the ISD */
	struct vse_aid elf, module;	/* APP/SSD: where it was instantiated from */
	/* ELF */
	uint8_t        nmodules;
	struct vse_aid modules[VSE_MAX_MODULES];
	/* memory this entry itself uses (ELF code, app quotas) */
	uint32_t       use_nv, use_v;
	/* SD quotas from EF{C7,C8}; 0 flags = no quota in that dimension */
	uint8_t        has_quota_nv, has_quota_v;
	uint32_t       quota_nv, quota_v;
	/* SD */
	uint8_t        scp_i;
	uint8_t        sd_flags;
	uint8_t        nkeysets;
	struct vse_keyset keysets[VSE_MAX_KEYSETS];
	/* install parameters as received (C9..., for reference) */
	uint8_t       *params;
	size_t         params_len;
	/* STORE DATA */
	size_t         nrecs;
	struct vse_record *recs;
};

/* ---- secure channel session (one per logical channel) ------------------- */

enum { VSE_SESS_NONE = 0, VSE_SESS_INIT, VSE_SESS_AUTH };

/* Security level bits (gp-reference §1.4). */
#define VSE_SL_CMAC 0x01
#define VSE_SL_CDEC 0x02
#define VSE_SL_RMAC 0x10
#define VSE_SL_RENC 0x20

struct vse_sess {
	int            state;
	struct vse_aid sd;
	uint8_t        kvn;
	uint8_t        i;
	uint8_t        sl;
	size_t         keylen;
	size_t         blen;		/* challenge/cryptogram/MAC length: 8 or 16 */
	uint8_t        hc[16], cc[16];
	uint8_t        senc[32], smac[32], srmac[32], dek[32];
	uint8_t        chain[16];
	uint8_t        ctr[16];
};

struct vse_load {			/* INSTALL [for load] then LOAD blocks */
	int            active;
	struct vse_aid elf, sd, actor;
	uint8_t        hash[64];
	size_t         hash_len;
	uint32_t       c6, c7, c8;
	int            dm;		/* receipt due at the last block */
	unsigned       next_block;
	struct buf     stream;
};

struct vse_gs {				/* GET STATUS continuation (6310) */
	int            active;
	uint8_t        p1, fmt;
	struct vse_aid crit;
	uint8_t        crit_len;
	uint32_t       tags[16];
	size_t         ntags;
	size_t         next;
};

struct vse_chan {
	int            open;
	struct vse_aid sel;		/* selected application, len 0 = none */
	struct vse_sess s;
	struct vse_load load;
	int            perso;		/* INSTALL [for personalization] target set */
	struct vse_aid perso_aid;
	unsigned       sd_next_block;	/* expected STORE DATA block number */
	struct vse_gs  gs;
};

struct vse {
	char          *path;
	int            autosave;
	int            dirty;
	char           se_id[2 * 16 + 1];
	uint8_t        cplc[42];
	uint8_t        iin[16], iin_len;
	uint8_t        cin[16], cin_len;
	uint8_t        kdd[10];
	uint8_t        eid[16];
	int            has_eid;
	uint32_t       mem_nv, mem_v;
	uint32_t       conf_counter;
	struct vse_entry **ents;
	size_t         nents, cap;
	struct vse_chan ch[VSE_CHANNELS];
	uint8_t        forced[16];
	size_t         forced_len;
	size_t         renc_pad;	/* test hook: next R-ENC padded length */
	struct buf     last_plain;	/* last command after SM removal (tests) */
};

/* ---- crypto.c ------------------------------------------------------------ */

struct vse_iov {
	const uint8_t *p;
	size_t         n;
};

int  vse_aes_cmac(const uint8_t *key, size_t keylen, const struct vse_iov *v,
		  size_t nv, uint8_t mac[16]) WUR;
int  vse_aes_ecb(const uint8_t *key, size_t keylen, const uint8_t in[16],
		 uint8_t out[16]) WUR;
/* n must be a multiple of 16; no padding is added or removed. */
int  vse_aes_cbc(const uint8_t *key, size_t keylen, const uint8_t iv[16],
		 const uint8_t *in, size_t n, uint8_t *out, int encrypt) WUR;
int  vse_kcv_aes(const uint8_t *key, size_t keylen, uint8_t kcv[3]) WUR;
/* Hash chosen by output length: 20 SHA-1, 32 SHA-256, 48 SHA-384, 64 SHA-512. */
int  vse_hash(size_t outlen, const uint8_t *p, size_t n, uint8_t *out) WUR;
int  vse_rand(uint8_t *p, size_t n) WUR;
/* DM token check (gp-reference §6): 0 valid, ERR_AUTH invalid. */
int  vse_sig_verify(const struct vse_key *k, const uint8_t *msg, size_t n,
		    const uint8_t *sig, size_t siglen) WUR;
int  vse_key_from_pem(const char *pem, struct vse_key *out) WUR;
int  vse_key_check(const struct vse_key *k) WUR;
static inline int vse_aes_keylen_ok(size_t n) { return n == 16 || n == 24 || n == 32; }

/* ---- scp03.c ------------------------------------------------------------- */

int  vse_scp03_kdf(const uint8_t *key, size_t keylen, uint8_t konst,
		   const uint8_t *ctx, size_t ctxlen, size_t outbits,
		   uint8_t *out) WUR;
/* Session keys and cryptograms from s->hc/s->cc (Amd D §6.2.1). */
int  vse_scp03_session_keys(struct vse_sess *s, const uint8_t *enc,
			    const uint8_t *mac, size_t keylen) WUR;
int  vse_scp03_cryptogram(const struct vse_sess *s, uint8_t konst,
			  uint8_t *out) WUR;
int  vse_scp03_challenge(const uint8_t *enc, size_t keylen, uint32_t seq,
			 const struct vse_aid *sd, size_t blen, uint8_t *out) WUR;
/* C-MAC over chain || hdr || data (hdr = CLA' INS P1 P2 Lc'). */
int  vse_scp03_cmac(const struct vse_sess *s, const uint8_t *hdr, size_t hlen,
		    const uint8_t *data, size_t n, uint8_t mac[16]) WUR;
void vse_scp03_ctr_inc(uint8_t ctr[16]);
/* C-DECRYPTION: decrypt and strip 80 00.. padding (Amd D §6.2.6). */
int  vse_scp03_decrypt(const struct vse_sess *s, const uint8_t *in, size_t n,
		       struct buf *out) WUR;
/* Host side of C-ENC (used by the host helper). */
int  vse_scp03_encrypt(const struct vse_sess *s, const uint8_t *in, size_t n,
		       struct buf *out) WUR;
/* R-ENC / R-MAC of a response (Amd D §6.2.7/6.2.5): appends to out.
 * min_pad > 0 pads the R-ENC plaintext to at least that many bytes. */
int  vse_scp03_wrap_rsp(const struct vse_sess *s, const uint8_t *data, size_t n,
			uint16_t sw, size_t min_pad, struct buf *out) WUR;
/* Host side: verify R-MAC and remove R-ENC. */
int  vse_scp03_unwrap_rsp(const struct vse_sess *s, const uint8_t *data,
			  size_t n, uint16_t sw, struct buf *out) WUR;
void vse_sess_clear(struct vse_sess *s);

/* ---- tlv.c --------------------------------------------------------------- */

int  vse_ber_len(struct rd *r, size_t *len) WUR;
int  vse_ber_tag(struct rd *r, uint32_t *tag) WUR;
int  vse_tlv_next(struct rd *r, uint32_t *tag, const uint8_t **v, size_t *n) WUR;
/* First top-level occurrence; ERR_NOTFOUND if absent, ERR_PARSE if malformed. */
int  vse_tlv_find(const uint8_t *p, size_t n, uint32_t tag, const uint8_t **v,
		  size_t *vn) WUR;
/* Checks that p..n is a well-formed sequence of BER-TLVs. */
int  vse_tlv_check(const uint8_t *p, size_t n) WUR;
/* LV with a BER length (INSTALL fields, gp-reference §5). */
int  vse_lv_next(struct rd *r, const uint8_t **v, size_t *n) WUR;
int  vse_put_ber_len(struct buf *b, size_t n) WUR;
int  vse_put_tag(struct buf *b, uint32_t tag) WUR;
int  vse_put_tlv(struct buf *b, uint32_t tag, const void *v, size_t n) WUR;
int  vse_put_lv(struct buf *b, const void *v, size_t n) WUR;
/* 2- or 4-byte big-endian quota values (EF{C7,C8}). */
int  vse_get_uint(const uint8_t *p, size_t n, uint32_t *v) WUR;

/* ---- registry.c ---------------------------------------------------------- */

int  vse_aid_set(struct vse_aid *a, const uint8_t *p, size_t n) WUR;
int  vse_aid_eq(const struct vse_aid *a, const struct vse_aid *b);
struct vse_entry *vse_reg_find(const struct vse *c, const struct vse_aid *aid);
struct vse_entry *vse_reg_isd(const struct vse *c);
struct vse_entry *vse_reg_parent(const struct vse *c, const struct vse_entry *e);
int  vse_reg_is_sd(const struct vse_entry *e);
/* 1 when target is associated with actor directly or through SSDs under it. */
int  vse_reg_in_scope(const struct vse *c, const struct vse_entry *actor,
		      const struct vse_entry *target);
/* 1 when e or an SD it hangs under is LOCKED. */
int  vse_reg_locked(const struct vse *c, const struct vse_entry *e);
int  vse_reg_entry_locked(const struct vse_entry *e);
int  vse_reg_add(struct vse *c, struct vse_entry *e) WUR;
/* Removes and frees (wiping keys). */
void vse_reg_remove(struct vse *c, struct vse_entry *e);
void vse_entry_free(struct vse_entry *e);
struct vse_entry *vse_entry_new(enum vse_kind kind, const struct vse_aid *aid);
/* ERR_LIMIT when a quota or the card's memory would be exceeded. */
int  vse_reg_check_quota(const struct vse *c) WUR;
/* Free memory as seen from an SD (its own and its ancestors' quotas). */
void vse_reg_free_mem(const struct vse *c, const struct vse_entry *sd,
		      uint64_t *nv, uint64_t *v);
struct vse_keyset *vse_keyset_find(struct vse_entry *sd, uint8_t kvn);
struct vse_key *vse_keyset_key(struct vse_keyset *ks, uint8_t kid);
/* Default SCP03 key set: the lowest KVN below 0x70 with KIDs 1-3. */
struct vse_keyset *vse_keyset_default(struct vse_entry *sd);
int  vse_keyset_is_scp03(const struct vse_keyset *ks);
int  vse_record_add(struct vse_entry *e, uint8_t p1, uint8_t p2, int decrypted,
		    const uint8_t *p, size_t n) WUR;
/* Closes sessions and contexts that refer to an entry about to go away. */
void vse_card_forget(struct vse *c, const struct vse_entry *e);

/* ---- commands ------------------------------------------------------------ */

struct vse_apdu {
	uint8_t        cla, ins, p1, p2;
	const uint8_t *data;
	size_t         lc;
	int            has_le;
	size_t         le;
	int            ext;		/* extended length coding */
};

/* ISO 7816-3 §12.1 cases 1-4, short and extended; data is never NULL.
 * ERR_TRUNC (under 4 bytes) or ERR_PROTO (lengths that do not add up). */
int  vse_apdu_parse(const uint8_t *p, size_t n, struct vse_apdu *a) WUR;

struct vse_req {
	struct vse        *c;
	int                chn;
	struct vse_chan   *ch;
	const struct vse_apdu *a;
	int                wrapped;	/* arrived with secure messaging */
	struct vse_entry  *sel;		/* selected entry on the channel */
	struct buf        *out;		/* response data */
	size_t             out_max;
};

/* Status words used by the card (GPC §11.1.3, ISO 7816-4 §5.1.3). */
#define SW_OK              0x9000
#define SW_MORE_DATA       0x6310
#define SW_AUTH_FAILED     0x6300
#define SW_MEMORY_FAILURE  0x6581
#define SW_WRONG_LENGTH    0x6700
#define SW_CHAN_NOT_SUPP   0x6881
#define SW_SM_NOT_SUPP     0x6882
#define SW_CHAIN_NOT_SUPP  0x6884
#define SW_SECURITY        0x6982
#define SW_CONDITIONS      0x6985
#define SW_WRONG_DATA      0x6A80
#define SW_FUNC_NOT_SUPP   0x6A81
#define SW_NOT_FOUND       0x6A82
#define SW_NO_MEMORY       0x6A84
#define SW_WRONG_P1P2      0x6A86
#define SW_REF_NOT_FOUND   0x6A88
#define SW_INS_NOT_SUPP    0x6D00
#define SW_CLA_NOT_SUPP    0x6E00
#define SW_UNKNOWN         0x6F00
#define SW_ALG_NOT_SUPP    0x9484
#define SW_BAD_KCV         0x9485

/* Card life cycle states (GPC §5.1.1). */
#define VSE_CARD_OP_READY    0x01
#define VSE_CARD_INITIALIZED 0x07
#define VSE_CARD_SECURED     0x0F
#define VSE_CARD_LOCKED      0x7F
#define VSE_CARD_TERMINATED  0xFF

/* Well-known SD package (preloaded; gp-reference §5). */
extern const struct vse_aid vse_sd_elf_aid, vse_sd_module_aid;

uint16_t vse_cmd_select(struct vse_req *r);
uint16_t vse_cmd_manage_channel(struct vse_req *r);
uint16_t vse_cmd_get_data(struct vse_req *r);
uint16_t vse_cmd_initialize_update(struct vse_req *r);
uint16_t vse_cmd_external_authenticate(struct vse_req *r);
uint16_t vse_cmd_put_key(struct vse_req *r);
uint16_t vse_cmd_install(struct vse_req *r);
uint16_t vse_cmd_load(struct vse_req *r);
uint16_t vse_cmd_delete(struct vse_req *r);
uint16_t vse_cmd_set_status(struct vse_req *r);
uint16_t vse_cmd_get_status(struct vse_req *r);
uint16_t vse_cmd_store_data(struct vse_req *r);

/* Card recognition data (GET DATA 0066 / FCI), tag 73 included. */
int  vse_card_recognition(const struct vse *c, const struct vse_entry *sd,
			  struct buf *out) WUR;
/* The SD whose session is open on the channel, if authenticated. */
struct vse_entry *vse_sess_sd(struct vse_req *r);
void vse_chan_reset(struct vse_chan *ch);
/* DM receipt (gp-reference §6) appended to r->out; "00" if none is due. */
int  vse_receipt_append(struct vse_req *r, int due, const uint8_t *cmd_data,
			size_t n) WUR;

/* ---- state.c ------------------------------------------------------------- */

int  vse_state_encode(const struct vse *c, char **json) WUR;
int  vse_state_decode(struct vse *c, const uint8_t *p, size_t n) WUR;
/* A card (no file attached) from a JSON document; ERR_PARSE if invalid. */
int  vse_card_from_json(struct vse **out, const uint8_t *p, size_t n) WUR;

#endif
