/*
 * gp.h - GlobalPlatform host engine used by tsmd: BER-TLV and APDU codec,
 * card content management command builders and response parsers, the
 * SCP03 host side and Delegated Management helpers. Holds no key bytes:
 * every cryptographic operation goes through a struct gp_backend on opaque
 * key references. Trusts nothing that comes back from a card.
 *
 * Byte layouts follow shared/docs/gp-reference.md (cited as "gpref §n") and
 * the GlobalPlatform Card Specification (GPC) with Amendment D (SCP03).
 *
 * Conventions for every function below:
 *  - Fallible functions return 0 or a negative error from kms/base.h.
 *  - `err` may be NULL; when given it receives the code and a message that
 *    names what was wrong ("IU response: wrong length 30 ...").
 *  - Builders replace the contents of their `struct buf *out` with one
 *    complete plain command APDU (CLA INS P1 P2 [Lc data] [Le]) on the basic
 *    logical channel; gp_scp03_wrap() moves it to the session's channel.
 *  - Parsers take response data without the status word unless stated.
 *    They never read past the given length and they copy what they keep.
 */
#ifndef SPTSM_GP_H
#define SPTSM_GP_H

#include <stddef.h>
#include <stdint.h>

#include "kms/base.h"

/* ======================================================================
 * Errors
 * ==================================================================== */

struct gp_err {
	int  code;		/* 0 or an ERR_* value */
	char msg[224];		/* human text, never contains key bytes */
};

void gp_err_clear(struct gp_err *e);

/* A borrowed byte string. */
struct gp_bytes {
	const uint8_t *p;
	size_t         n;
};

#define GP_AID_MIN 5
#define GP_AID_MAX 16

/* ======================================================================
 * Crypto backend: opaque key references (gpref §1.3)
 * ==================================================================== */

typedef uint32_t gp_keyref;            /* opaque; 0 = none */

/* What gp_backend.open gives (flags GP_OPEN_*). */
#define GP_OPEN_SENC  0x01
#define GP_OPEN_SRMAC 0x02
#define GP_OPEN_HOST  0x04
struct gp_open_out {
	gp_keyref s_enc, s_mac, s_rmac;	/* 0: not asked for */
	uint8_t   card_crypto[16];
	uint8_t   host_crypto[16];
	uint8_t   challenge[16];	/* when a challenge context was given */
};
enum gp_cipher_mode { GP_ECB = 1, GP_CBC = 2 };
struct gp_backend {
	void *ctx;
	/* SP 800-108 CMAC KDF, GP layout (gp-reference §1.3): session key from a static key; returns a new key ref */
	int (*derive)(void *ctx, gp_keyref base, uint8_t konst, const uint8_t *context, size_t clen, uint16_t lbits, gp_keyref *out);
	/* same KDF, bytes out, only consts 00/01/02 (cryptograms, challenge) */
	int (*kdf)(void *ctx, gp_keyref key, uint8_t konst, const uint8_t *context, size_t clen, uint16_t lbits, uint8_t *out);
	int (*cmac)(void *ctx, gp_keyref key, const uint8_t *data, size_t n, uint8_t mac[16]);
	int (*encrypt)(void *ctx, gp_keyref key, int mode, const uint8_t iv[16], const uint8_t *in, size_t n, uint8_t *out);   /* n multiple of 16 */
	int (*decrypt)(void *ctx, gp_keyref key, int mode, const uint8_t iv[16], const uint8_t *in, size_t n, uint8_t *out);
	/* AES-CBC zero-ICV wrap of `key` under `dek` (PUT KEY); *outlen in/out */
	int (*wrap)(void *ctx, gp_keyref dek, gp_keyref key, uint8_t *out, size_t *outlen);
	int (*kcv)(void *ctx, gp_keyref key, uint8_t kcv[3]);        /* GP method: AES(K, 01x16)[0..2] */
	int (*key_len)(void *ctx, gp_keyref key, size_t *len);       /* bytes: 16/24/32 */
	void (*release)(void *ctx, gp_keyref key);                   /* session keys at session end */
	/* Optional (NULL: derive and kdf are used): a session's opening in one
	 * call — the pseudo-random challenge when chal_ctx is given, S-MAC and
	 * as asked S-ENC/S-RMAC, the card and host cryptograms (cbits 64/128).
	 * Refs it returns are released like derive's. */
	int (*open)(void *ctx, gp_keyref enc, gp_keyref mac, unsigned flags,
	    const uint8_t *context, size_t clen, uint16_t cbits,
	    const uint8_t *chal_ctx, size_t chal_len, struct gp_open_out *out);
	/* Optional (NULL: wrap per key): wrap n keys under one DEK in one
	 * call, out[i]/outlen[i] as wrap's for keys[i]. */
	int (*wrap_n)(void *ctx, gp_keyref dek, const gp_keyref *keys,
	    size_t n, uint8_t (*out)[32], size_t *outlen);
	/* Optional (NULL: release per key): a session's keys in one call. */
	void (*release_n)(void *ctx, const gp_keyref *keys, size_t n);
};
/*
 * Contract details the engine relies on:
 *  - derive: konst 04 (S-ENC from static ENC), 06 (S-MAC) and 07 (S-RMAC,
 *    both from static MAC); lbits = 8 * length of the base key.
 *  - kdf: konst 00 card cryptogram, 01 host cryptogram (key = S-MAC),
 *    02 pseudo-random card challenge (key = static ENC); lbits 64 or 128.
 *  - encrypt/decrypt: AES; iv ignored (may be NULL) for GP_ECB; in and out
 *    may not overlap.
 *  - wrap: output is AES-CBC(dek, IV 0, key [padded with zeros to 32 bytes
 *    for a 24-byte key]); 16 or 32 bytes.
 *  - release: called exactly once for every ref that derive returned.
 */

/* ======================================================================
 * BER-TLV (ISO/IEC 7816-4 §5.2, X.690 §8.1)
 *
 * Decoder policy (strict):
 *  - tags are 1..3 bytes; tag byte 00 is refused (no 00/FF padding between
 *    objects); a multi-byte tag whose first subsequent byte is 80 is refused;
 *  - lengths: short form 00..7F, long form 81 xx, 82 xxxx, 83 xxxxxx; the
 *    indefinite form 80 and 84+ are refused; a long form that could have
 *    been shorter (81 05, 82 00 90) is refused unless GP_TLV_LAX_LENGTH;
 *  - a length past the end of the buffer is refused (ERR_TRUNC);
 *  - input longer than GP_TLV_MAX_INPUT is refused (ERR_TOOBIG);
 *  - gp_tlv_check() recurses into constructed tags (tag byte b6 set) up to
 *    a depth limit and refuses deeper nesting (ERR_LIMIT).
 * The encoder always writes the minimal length form.
 * ==================================================================== */

#define GP_TLV_MAX_DEPTH  8
#define GP_TLV_MAX_INPUT  (1u << 20)
#define GP_TLV_LAX_LENGTH 0x01u

struct gp_tlv {
	uint32_t       tag;		/* the tag bytes as a big-endian number: 0x9F70 */
	int            constructed;
	const uint8_t *val;		/* points into the decoded buffer */
	size_t         len;
	const uint8_t *raw;		/* the whole object: tag, length, value */
	size_t         raw_len;
};

struct gp_tlv_iter {
	const uint8_t *p;
	size_t         len;
	size_t         off;
	unsigned       flags;
};

void gp_tlv_iter_init(struct gp_tlv_iter *it, const uint8_t *p, size_t n,
    unsigned flags);
/* Returns 1 with *t filled, 0 at the clean end, or a negative error. */
int  gp_tlv_next(struct gp_tlv_iter *it, struct gp_tlv *t,
    struct gp_err *err) WUR;
/* Exactly one TLV filling all n bytes. */
int  gp_tlv_decode(const uint8_t *p, size_t n, struct gp_tlv *t,
    struct gp_err *err) WUR;
/* The whole buffer is a sequence of well-formed TLVs, recursively. */
int  gp_tlv_check(const uint8_t *p, size_t n, unsigned max_depth,
    struct gp_err *err) WUR;
/* First top-level object with `tag`; ERR_NOTFOUND if absent. Every object
 * up to it must be well formed. */
int  gp_tlv_find(const uint8_t *p, size_t n, uint32_t tag, struct gp_tlv *t,
    struct gp_err *err) WUR;

int  gp_ber_len_put(struct buf *b, size_t n) WUR;	/* n <= 0xFFFFFF */
int  gp_tlv_tag_put(struct buf *b, uint32_t tag) WUR;	/* validates the tag */
int  gp_tlv_put(struct buf *b, uint32_t tag, const void *v, size_t n) WUR;
/* Constructed object of unknown length: open, append the content, close. */
int  gp_tlv_open(struct buf *b, uint32_t tag, size_t *mark) WUR;
int  gp_tlv_close(struct buf *b, size_t mark) WUR;

/* ======================================================================
 * APDUs (ISO/IEC 7816-3 §12.1, 7816-4 §5.1) and status words
 * ==================================================================== */

struct gp_apdu {
	uint8_t        cla, ins, p1, p2;
	const uint8_t *data;		/* lc bytes; borrowed */
	size_t         lc;		/* 0..65535 */
	size_t         ne;		/* 0 = no Le field; else 1..65536 */
	int            ext;		/* decode: was extended; encode: force it */
};

/* Cases 1, 2S, 3S, 4S, 2E, 3E, 4E; anything else is ERR_PARSE. */
int gp_apdu_decode(const uint8_t *p, size_t n, struct gp_apdu *a,
    struct gp_err *err) WUR;
/* Short form unless lc > 255, ne > 256 or a->ext. */
int gp_apdu_encode(const struct gp_apdu *a, struct buf *out,
    struct gp_err *err) WUR;
/* Splits data || SW1 SW2; ERR_TRUNC under two bytes. */
int gp_resp_split(const uint8_t *p, size_t n, const uint8_t **data,
    size_t *dlen, uint16_t *sw, struct gp_err *err) WUR;
/* CLA of `base` (0x00 or 0x80) on logical channel 0..19. */
int gp_cla_channel(uint8_t base, unsigned channel, uint8_t *cla) WUR;

/* "referenced data not found"; generic text for unknown values. */
const char *gp_sw_text(uint16_t sw);
/* "SW_6A88 referenced data not found" into out; returns out. */
const char *gp_sw_str(uint16_t sw, char *out, size_t cap);
/* 9000, 62xx, 63xx: the card processed the command (gpref §1.7). */
int gp_sw_processed(uint16_t sw);

/* ======================================================================
 * Privileges and life cycle states (gpref §5)
 * ==================================================================== */

/* Formats the three bytes as "SecurityDomain|DelegatedManagement"
 * ("None" if zero; unknown bits as "RFU1.04"). ERR_TOOBIG if cap is small. */
int gp_priv_format(const uint8_t priv[3], char *out, size_t cap) WUR;
/* Parses names separated by '|' or ',' (case-insensitive) or six hex
 * digits; refuses unknown names. Does not check consistency. */
int gp_priv_parse(const char *s, uint8_t priv[3], struct gp_err *err) WUR;
/* Consistency: DAP/DM/Mandated-DAP/AM/Receipt need SecurityDomain, etc. */
int gp_priv_check(const uint8_t priv[3], struct gp_err *err) WUR;

enum gp_lcs_kind { GP_LCS_CARD, GP_LCS_SD, GP_LCS_APP, GP_LCS_ELF };
/* "SELECTABLE", "PERSONALIZED", "LOCKED", "OP_READY", ...; "UNKNOWN". */
const char *gp_lcs_name(enum gp_lcs_kind kind, uint8_t lcs);

/* ======================================================================
 * Command builders (gpref §4, §5)
 * ==================================================================== */

/* SELECT by AID: 00 A4 04 00 Lc AID 00 (aid_len 0 selects the default). */
int gp_select_build(const uint8_t *aid, size_t aid_len, struct buf *out,
    struct gp_err *err) WUR;

/* GET STATUS: 80 F2 P1 P2 Lc 4F <aid or empty> [5C tag list] 00. */
enum {
	GP_GS_ISD         = 0x80,
	GP_GS_APPS        = 0x40,	/* applications and SSDs */
	GP_GS_ELFS        = 0x20,
	GP_GS_ELF_MODULES = 0x10,
};
#define GP_GS_LEGACY 0x01u	/* P2 b2 clear: legacy (non-TLV) format */
#define GP_GS_NEXT   0x02u	/* P2 b1 set: next occurrence, after SW 6310 */
int gp_get_status_build(uint8_t p1, unsigned flags, const uint8_t *aid,
    size_t aid_len, const uint8_t *tags, size_t tags_len, struct buf *out,
    struct gp_err *err) WUR;

/* GET DATA: CLA CA P1P2 00 with P1P2 = tag (9F7F, 0066, 00E0, 00C1, ...);
 * cla is 0x80 or 0x00. */
enum {
	GP_TAG_CPLC          = 0x9F7F,
	GP_TAG_CARD_DATA     = 0x0066,
	GP_TAG_CARD_CAPS     = 0x0067,
	GP_TAG_KEY_INFO      = 0x00E0,
	GP_TAG_KDD           = 0x00CF,
	GP_TAG_IIN           = 0x0042,
	GP_TAG_CIN           = 0x0045,
	GP_TAG_SEQ_COUNTER   = 0x00C1,
	GP_TAG_CONF_COUNTER  = 0x00C2,
	GP_TAG_FREE_RES      = 0xFF21,
};
int gp_get_data_build(uint8_t cla, uint16_t tag, struct buf *out,
    struct gp_err *err) WUR;

/* SET STATUS: 80 F0 P1 P2 [AID]. */
enum {
	GP_SS_ISD     = 0x80,	/* P2 = card state 01/07/0F/7F/FF */
	GP_SS_APP     = 0x40,	/* application or SD: P2 80 lock, 00 unlock, 0F personalized SD */
	GP_SS_SD_APPS = 0x60,	/* SD and its applications: P2 80 lock, 00 unlock */
};
int gp_set_status_build(uint8_t p1, uint8_t p2, const uint8_t *aid,
    size_t aid_len, struct buf *out, struct gp_err *err) WUR;

/* DELETE: 80 E4 00 P2 | {4F L AID}xN [9E L token] | 00 (gpref §5, §6).
 * P2 80 when `related`. token may be NULL or empty (no 9E). token_data,
 * if not NULL, receives the DM token data (P1 P2 Lc data-without-token). */
int gp_delete_build(const struct gp_bytes *aids, size_t naids, int related,
    const struct gp_bytes *token, struct buf *out, struct buf *token_data,
    struct gp_err *err) WUR;
/* DELETE key: D0 KID and/or D2 KVN (0 = leave that one out). */
int gp_delete_key_build(uint8_t kid, uint8_t kvn, struct buf *out,
    struct gp_err *err) WUR;

/* INSTALL: 80 E6 P1 00 Lc data 00 (gpref §5). */
enum gp_install_kind {
	GP_INSTALL_FOR_LOAD        = 0x02,
	GP_INSTALL_FOR_INSTALL     = 0x04,
	GP_INSTALL_MAKE_SELECTABLE = 0x08,
	GP_INSTALL_AND_SELECTABLE  = 0x0C,	/* for install and make selectable */
	GP_INSTALL_EXTRADITION     = 0x10,
	GP_INSTALL_PERSONALIZATION = 0x20,
	GP_INSTALL_REGISTRY_UPDATE = 0x40,
};
struct gp_install {
	enum gp_install_kind kind;
	int             more;		/* P1 b8: more INSTALL commands follow */
	struct gp_bytes elf_aid;	/* load, install */
	struct gp_bytes sd_aid;		/* load (may be empty), extradition, registry update */
	struct gp_bytes module_aid;	/* install */
	struct gp_bytes app_aid;	/* install, make selectable, personalization,
					 * registry update; extradition: app or ELF */
	struct gp_bytes priv;		/* 0, 1 or 3 bytes */
	struct gp_bytes hash;		/* load: LFDB hash (see gp_lfdb_hash) */
	struct gp_bytes params;		/* load params / install params (gp_install_params_build) */
	struct gp_bytes token;		/* DM token; empty = single 00 */
};
/* token_data (may be NULL) receives the DM token data (gpref §6). */
int gp_install_build(const struct gp_install *in, struct buf *out,
    struct buf *token_data, struct gp_err *err) WUR;

/* Install parameters: C9 {…} [EF {C7 volatile, C8 non-volatile}] with
 * lengths BER-encoded. For an SSD, C9 holds the SD parameters (GP UICC
 * Configuration §4.3.2, gpref §5); otherwise C9 holds app_specific. */
struct gp_sd_params {
	struct { uint8_t scp, i; } scp[4];	/* 81 02 scp i, repeated */
	size_t          nscp;
	struct gp_bytes accept_extradition_in;	/* 82, if n > 0 */
	struct gp_bytes accept_delete;		/* 83, if n > 0 */
	int             personalized;		/* 84 00 */
	struct gp_bytes casd_capability;	/* 86, if n > 0 */
	struct gp_bytes accept_extradition_out;	/* 87, if n > 0 */
};
struct gp_install_params {
	const struct gp_sd_params *sd;		/* NULL for an application */
	struct gp_bytes app_specific;		/* C9 value when sd == NULL */
	uint32_t        volatile_quota;		/* EF/C7 when has_volatile_quota */
	uint32_t        nv_quota;		/* EF/C8 when has_nv_quota */
	int             has_volatile_quota, has_nv_quota;
	struct gp_bytes extra_ef;		/* more EF content (e.g. CA TS 102 226 params) */
};
int gp_install_params_build(const struct gp_install_params *p,
    struct buf *out, struct gp_err *err) WUR;

/* Load File Data Block hash (gpref §6): over the LFDB (the C4 value). */
enum gp_hash_alg { GP_HASH_SHA1 = 1, GP_HASH_SHA256 = 2 };
int gp_lfdb_hash(enum gp_hash_alg alg, const uint8_t *lfdb, size_t n,
    uint8_t out[32], size_t *outlen, struct gp_err *err) WUR;

/* LOAD (gpref §5). The stream is [E2 {4F sd-aid, C3 dap}]… C4 <len> LFDB. */
struct gp_dap_block {
	struct gp_bytes sd_aid;
	struct gp_bytes signature;
};
int gp_load_stream_build(const uint8_t *lfdb, size_t n,
    const struct gp_dap_block *daps, size_t ndaps, struct buf *stream,
    struct gp_err *err) WUR;
/* Largest plain data field such that the SCP03-wrapped command still has
 * Lc <= 255 at security level `sl` (C-MAC 8 or 16 bytes, C-DEC padding). */
size_t gp_block_size(uint8_t sl, int s16);
/* Number of blocks for a stream (0 if the stream is empty). */
size_t gp_block_count(size_t stream_len, size_t block_size);
/* LOAD block `block_no`: 80 E8 P1 P2 Lc data 00, P1 80 on the last block,
 * P2 = block number. ERR_LIMIT past 256 blocks. *last set on the last. */
int gp_load_build(const uint8_t *stream, size_t n, size_t block_size,
    size_t block_no, struct buf *out, int *last, struct gp_err *err) WUR;

/* STORE DATA: 80 E2 P1 block Lc data [00 when GP_SD_RESPONSE]. */
#define GP_SD_LAST      0x80u
#define GP_SD_ENC_APP   0x20u	/* b7-b6 = 01: application-dependent encryption */
#define GP_SD_ENC_DATA  0x60u	/* b7-b6 = 11: encrypted data */
#define GP_SD_DGI       0x08u	/* b5-b4 = 01 */
#define GP_SD_BER       0x10u	/* b5-b4 = 10 */
#define GP_SD_RESPONSE  0x01u
int gp_store_data_build(uint8_t p1, uint8_t block_no, const uint8_t *data,
    size_t n, struct buf *out, struct gp_err *err) WUR;
/* Block `block_no` of a longer data stream: sets GP_SD_LAST on the last. */
int gp_store_data_block(uint8_t p1_flags, const uint8_t *stream, size_t n,
    size_t block_size, size_t block_no, struct buf *out, int *last,
    struct gp_err *err) WUR;

/* PUT KEY for an SCP03 AES key set (gpref §4):
 * 80 D8 P1 81 Lc newKVN {88 L keyLen E_DEK(key) 03 KCV}x3 00
 * P1 = KVN to replace or 00 to add. Always sends the keyLen byte. Each key
 * is wrapped by the backend under the static DEK; KCVs come from the backend. */
struct gp_put_key_expect {
	uint8_t kvn;
	uint8_t kcv[3][3];
};
int gp_put_key_scp03_build(const struct gp_backend *be, gp_keyref dek,
    uint8_t replace_kvn, uint8_t new_kvn, const gp_keyref keys[3],
    struct buf *out, struct gp_put_key_expect *expect,
    struct gp_err *err) WUR;
/* Response data KVN || KCV1 || KCV2 || KCV3, compared in constant time. */
int gp_put_key_resp_check(const uint8_t *data, size_t n,
    const struct gp_put_key_expect *expect, struct gp_err *err) WUR;

/* ======================================================================
 * Response parsers
 * ==================================================================== */

/* INITIALIZE UPDATE response data (gpref §1.2): 29/32 bytes (S8) or 45/48
 * (S16); the sequence counter is taken when present by length. */
struct gp_iu_resp {
	uint8_t kdd[10];
	uint8_t kvn, scp, i;
	int     s16;
	uint8_t card_challenge[16];
	uint8_t card_cryptogram[16];
	size_t  clen;			/* 8 or 16 */
	int     has_seq;
	uint8_t seq[3];
};
int gp_iu_resp_parse(const uint8_t *p, size_t n, struct gp_iu_resp *out,
    struct gp_err *err) WUR;

/* GET STATUS (gpref §5). Entries are appended, so the responses of a 6310
 * continuation accumulate into one list. */
#define GP_STATUS_MAX_MODULES 32
struct gp_status_entry {
	uint8_t  aid[GP_AID_MAX];
	size_t   aid_len;
	uint8_t  lcs;			/* 9F70 first byte */
	uint8_t  lcs2;			/* 9F70 second byte when lcs_len == 2 */
	size_t   lcs_len;
	uint8_t  priv[3];		/* C5, or legacy 1 byte in priv[0] */
	size_t   priv_len;
	uint8_t  elf_aid[GP_AID_MAX];	/* C4 */
	size_t   elf_aid_len;
	uint8_t  version[8];		/* CE */
	size_t   version_len;
	uint8_t  sd_aid[GP_AID_MAX];	/* CC */
	size_t   sd_aid_len;
	uint8_t  implicit[4];		/* CF */
	size_t   implicit_len;
	size_t   nmodules;		/* 84, repeated */
	struct { uint8_t aid[GP_AID_MAX]; size_t len; } modules[GP_STATUS_MAX_MODULES];
};
struct gp_status_list {
	struct gp_status_entry *v;
	size_t                  n, cap;
};
void gp_status_list_init(struct gp_status_list *l);
void gp_status_list_free(struct gp_status_list *l);
/* tlv: P2 02 format (E3 entries; unknown tags inside skipped); else the
 * legacy format for GET STATUS P1 `p1`. Nothing is appended on error. */
int gp_status_parse(const uint8_t *data, size_t n, uint8_t p1, int tlv,
    struct gp_status_list *l, struct gp_err *err) WUR;

/* CPLC (GET DATA 9F7F): 42 bytes, with or without the 9F7F 2A header. */
struct gp_cplc {
	uint16_t ic_fabricator, ic_type, os_id, os_release_date;
	uint16_t os_release_level, ic_fabrication_date;
	uint32_t ic_serial;
	uint16_t ic_batch_id, module_fabricator, module_packaging_date;
	uint16_t icc_manufacturer, ic_embedding_date, prepersonalizer;
	uint16_t prepersonalization_date;
	uint32_t prepersonalization_equipment;
	uint16_t personalizer, personalization_date;
	uint32_t personalization_equipment;
};
int gp_cplc_parse(const uint8_t *p, size_t n, struct gp_cplc *out,
    struct gp_err *err) WUR;
/* "ic_fabricator=4790 ic_type=5044 ..." (hex values). */
int gp_cplc_format(const struct gp_cplc *c, char *out, size_t cap) WUR;

/* Key information template (GET DATA 00E0): E0 { C0 L KID KVN {type len}… }.
 * Basic format only; the extended format (type FF) is ERR_NOTSUP. */
#define GP_KEYINFO_MAX_COMP 4
struct gp_key_info {
	uint8_t kid, kvn;
	size_t  ncomp;
	struct { uint8_t type; uint8_t len; } comp[GP_KEYINFO_MAX_COMP];
};
int gp_key_info_parse(const uint8_t *p, size_t n, struct gp_key_info *out,
    size_t cap, size_t *count, struct gp_err *err) WUR;

/* Card recognition data (GET DATA 0066): GP version (tag 60) and the SCPs
 * (tag 64) from 66 { 73 { … } }. */
struct gp_card_data {
	uint8_t gp_version[4];
	size_t  gp_version_len;
	struct { uint8_t scp, i; } scp[8];
	size_t  nscp;
};
int gp_card_data_parse(const uint8_t *p, size_t n, struct gp_card_data *out,
    struct gp_err *err) WUR;

/* Counters (GET DATA 00C1 / 00C2): tag C1 or C2 with a 1..4 byte value. */
int gp_counter_parse(const uint8_t *p, size_t n, uint8_t tag, uint32_t *value,
    struct gp_err *err) WUR;

/* Free resources (GET DATA FF21, ETSI TS 102 226): FF21 {81 apps, 82 free
 * non-volatile, 83 free volatile}, each 1..4 bytes. */
struct gp_free_res {
	uint32_t apps, nvm, vm;
	int      has_apps, has_nvm, has_vm;
};
int gp_free_res_parse(const uint8_t *p, size_t n, struct gp_free_res *out,
    struct gp_err *err) WUR;

/* ======================================================================
 * Delegated Management (gpref §6)
 * ==================================================================== */

/* Token data = P1 P2 Lc data, Lc 1 byte or 00 hh ll over 255. */
int gp_dm_token_data(uint8_t p1, uint8_t p2, const uint8_t *data, size_t n,
    struct buf *out, struct gp_err *err) WUR;

/* Confirmation returned with a DM command: [outer L] Lr receipt 02 counter
 * Lu sd-unique [Lt token-id] [Ld digest]; a single 00 (or nothing) means
 * no receipt. Both forms (with/without outer length) are accepted; when
 * both readings parse, the one with the outer length wins. */
struct gp_confirmation {
	int      present;
	int      outer_len;		/* which form was seen */
	uint8_t  receipt[512];
	size_t   receipt_len;
	uint16_t counter;
	uint8_t  sd_unique[128];
	size_t   sd_unique_len;
	int      has_token_id;
	uint8_t  token_id[128];
	size_t   token_id_len;
	int      has_digest;
	uint8_t  digest[64];
	size_t   digest_len;
	/* The bytes the card MACs before the command data: everything from the
	 * counter length byte on (gpref §6), kept for the issuer's check. */
	uint8_t  conf_data[512];
	size_t   conf_data_len;
};
int gp_confirmation_parse(const uint8_t *p, size_t n,
    struct gp_confirmation *out, struct gp_err *err) WUR;

/* ======================================================================
 * SCP03 host side (GPC Amendment D; gpref §1)
 * ==================================================================== */

#define GP_SL_CMAC 0x01u
#define GP_SL_CDEC 0x02u
#define GP_SL_RMAC 0x10u
#define GP_SL_RENC 0x20u
/* gpref §1.4: R-ENC implies C-DEC and R-MAC; C-DEC or R-MAC imply C-MAC.
 * Result is one of 00 01 03 11 13 33; other bits are ERR_INVAL. */
int gp_sl_normalize(uint8_t req, uint8_t *out, struct gp_err *err) WUR;

/* Skip the pseudo-random card challenge check (only for a card whose SD
 * AID is unknown, e.g. published vectors that do not state it). */
#define GP_SCP03_NO_CHALLENGE_CHECK 0x01u

struct gp_scp03_cfg {
	const struct gp_backend *be;	/* copied */
	gp_keyref enc, mac;		/* static keys; dek is only for PUT KEY */
	uint8_t   kvn;			/* INITIALIZE UPDATE P1; 0 = card default */
	uint8_t   sl;			/* requested level, normalised */
	int       s16;			/* 16-byte challenges/cryptograms/MACs */
	unsigned  channel;		/* logical channel 0..19 */
	const uint8_t *sd_aid;		/* AID of the selected SD (challenge check) */
	size_t    sd_aid_len;
	unsigned  flags;
};

struct gp_scp03;	/* opaque */

enum gp_scp03_state {
	GP_SCP03_NEW = 0,	/* before INITIALIZE UPDATE */
	GP_SCP03_IU_SENT,	/* waiting for the IU response */
	GP_SCP03_EA_SENT,	/* waiting for the EA response */
	GP_SCP03_OPEN,		/* wrap/unwrap allowed */
	GP_SCP03_BROKEN,	/* failed; every call refuses (ERR_WRONGSTATE) */
};

struct gp_scp03_info {
	enum gp_scp03_state state;
	uint8_t  sl, kvn, i;
	int      s16;
	int      has_seq;
	uint8_t  seq[3];
	uint8_t  kdd[10];
	gp_keyref s_enc, s_mac, s_rmac;	/* session key refs (0 before auth) */
	size_t   in_flight;		/* commands wrapped, responses not yet unwrapped */
};

int  gp_scp03_new(const struct gp_scp03_cfg *cfg, struct gp_scp03 **out,
    struct gp_err *err) WUR;
/* Releases the session keys through the backend and wipes the state. */
void gp_scp03_free(struct gp_scp03 *s);
/* INITIALIZE UPDATE: 80|ch 50 KVN 00 Lc host-challenge 00. host_challenge
 * (8 or 16 bytes by mode) is for tests; NULL draws it from getrandom(). */
int  gp_scp03_begin(struct gp_scp03 *s, const uint8_t *host_challenge,
    struct buf *iu_apdu, struct gp_err *err) WUR;
/* Takes the IU response (data || SW), checks SW, length, SCP id, i, KVN,
 * the pseudo-random challenge (i b5) and the card cryptogram, derives the
 * session keys and builds EXTERNAL AUTHENTICATE (C-MAC, chain = 0). */
int  gp_scp03_auth(struct gp_scp03 *s, const uint8_t *resp, size_t n,
    struct buf *ea_apdu, struct gp_err *err) WUR;
/* Like gp_scp03_auth, but only proves that the card holds the static keys
 * (the IU checks, the pseudo-random challenge with ENC, the card
 * cryptogram with S-MAC) without opening a session: S-MAC alone is
 * derived and released at once, no EXTERNAL AUTHENTICATE is built. The
 * session is over afterwards (BROKEN), whatever the result. For a caller
 * that needs the proof only, e.g. after replacing the keys. */
int  gp_scp03_check(struct gp_scp03 *s, const uint8_t *resp, size_t n,
    struct gp_err *err) WUR;
/* Takes the EA response (SW 9000 only) and opens the session. */
int  gp_scp03_confirm(struct gp_scp03 *s, const uint8_t *resp, size_t n,
    struct gp_err *err) WUR;
/* Protects one plain command APDU at the session level: counter +1,
 * C-DEC, C-MAC (CLA' per gpref §1.5), wire CLA on the session channel.
 * The plain CLA must carry no secure messaging bits and be on channel 0 or
 * the session's channel. Extended APDUs use a 3-byte Lc in the MAC input. */
int  gp_scp03_wrap(struct gp_scp03 *s, const uint8_t *apdu, size_t n,
    struct buf *out, struct gp_err *err) WUR;
/* Checks and strips R-MAC, decrypts R-ENC. Responses are taken in the
 * order their commands were wrapped, so a batch may be wrapped first and
 * its responses unwrapped afterwards (up to 4096 in flight). Output is
 * plain data || SW. Any integrity failure breaks the session for good. A
 * response whose SW is not 9000/62xx/63xx has no R-MAC (gpref §1.7) and is
 * returned as is. A wrapped command that never reaches the card leaves the
 * card's MAC chain behind ours: close the session after a cut batch. */
int  gp_scp03_unwrap(struct gp_scp03 *s, const uint8_t *resp, size_t n,
    struct buf *out, struct gp_err *err) WUR;
void gp_scp03_get_info(const struct gp_scp03 *s, struct gp_scp03_info *info);
/* gp_block_size() for this session's level and mode. */
size_t gp_scp03_block_size(const struct gp_scp03 *s);

/* ======================================================================
 * Reference backend (library gpossl, tsm/gp/gp_ossl.c): OpenSSL with raw
 * keys in process memory. For unit tests and benchmarks; tsmd never links
 * or uses it. Not thread-safe.
 * ==================================================================== */

struct gp_ossl;
struct gp_ossl *gp_ossl_new(void);
void gp_ossl_free(struct gp_ossl *o);
/* Registers a raw AES key (16/24/32 bytes) and returns its ref. */
int  gp_ossl_key_add(struct gp_ossl *o, const uint8_t *key, size_t len,
    gp_keyref *ref) WUR;
/* Copies a key's bytes out (tests compare derived session keys with
 * published intermediates). */
int  gp_ossl_key_export(struct gp_ossl *o, gp_keyref ref, uint8_t *out,
    size_t cap, size_t *len) WUR;
/* Number of live keys (to check that sessions release theirs). */
size_t gp_ossl_key_count(const struct gp_ossl *o);
/* Fills a backend whose ctx is o. */
void gp_ossl_backend(struct gp_ossl *o, struct gp_backend *be);
/* The KBKDF primitive itself: SP 800-108 counter mode, CMAC-AES, 8-bit
 * counter between `before` and `after` (gpref §1.3; NIST CAVP layout). */
int  gp_ossl_kbkdf(const uint8_t *key, size_t klen, const uint8_t *before,
    size_t blen, const uint8_t *after, size_t alen, uint8_t *out,
    size_t outlen) WUR;

#endif
