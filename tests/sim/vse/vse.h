/*
 * vse.h - the virtual Secure Element: a GlobalPlatform card (ISD, SSDs,
 * load files, applications, SCP03 card side, DM tokens, receipts, quotas)
 * kept in one JSON file per SE. Linked by the vse CLI, tests and the
 * simulators; it shares no SCP03 or TLV code with tsm/gp on purpose.
 * Card-side only trusts its own state file; every APDU is outside input.
 */
#ifndef SPTSM_VSE_H
#define SPTSM_VSE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "kms/base.h"

/* One card object is used by one thread at a time. */
struct vse;

/* Largest response vse_transmit produces: 256 data bytes + SW1 SW2. */
#define VSE_RSP_MAX 258

/* Defaults of a new card (see tests/sim/vse/README.md). */
struct vse_config {
	/* seId: 4..16 bytes as hex. It is the card's CIN (GET DATA 0045) and
	 * its last 4 bytes are the CPLC IC serial. NULL: 56530001 || random
	 * 4-byte IC serial. */
	const char    *se_id;
	const uint8_t *isd_aid;		/* NULL: A000000151000000 */
	size_t         isd_aid_len;
	uint8_t        isd_i;		/* SCP03 "i" of the ISD (default 70) */
	const uint8_t *kdd;		/* 10 bytes; NULL: seId right-aligned */
	const uint8_t *eid;		/* 16 bytes or NULL: eUICC-style EID */
	uint32_t       mem_nv, mem_v;	/* card memory (default 512 KiB / 8 KiB) */
	int            bare;		/* 1: no preloaded SD package */
};

void vse_config_init(struct vse_config *cfg);

/*
 * Creates a card. path NULL keeps it in memory only. Fails with
 * ERR_EXISTS when path exists, ERR_INVAL on a bad config.
 */
int  vse_create(struct vse **out, const char *path,
		const struct vse_config *cfg) WUR;
/* Opens a card file: ERR_NOTFOUND, ERR_IO, ERR_PARSE (bad or foreign file). */
int  vse_open(struct vse **out, const char *path) WUR;
/* Atomic replace of the card file (temp, fsync, rename). ERR_INVAL in memory. */
int  vse_save(struct vse *c) WUR;
/* Gives an in-memory card a file and writes it; ERR_EXISTS if path exists. */
int  vse_save_as(struct vse *c, const char *path) WUR;
/* File-backed cards save after every APDU that changed persistent state
 * (default on). A failed save answers that APDU with 6581. */
void vse_set_autosave(struct vse *c, int on);
void vse_free(struct vse *c);
/* Power cycle: closes logical channels and secure channel sessions. */
void vse_reset(struct vse *c);

/*
 * One command APDU in, one response (data || SW1 SW2) out; cap must be at
 * least VSE_RSP_MAX. Malformed commands get a status word, never an error
 * return: the return is negative only for bad arguments (ERR_INVAL).
 */
int  vse_transmit(struct vse *c, const uint8_t *apdu, size_t n,
		  uint8_t *rsp, size_t cap, size_t *rsplen) WUR;

const char *vse_se_id(const struct vse *c);
/* Short name of a status word ("SECURITY_NOT_SATISFIED"), never NULL. */
const char *vse_sw_str(uint16_t sw);

/* ---- provisioning (what a card manufacturer does before issuance) ------- */
/* These change the card in memory; vse_save (or the next APDU's autosave)
 * writes them. sd_aid NULL means the ISD. ERR_NOTFOUND: no such SD. */

/* Adds or replaces an AES SCP03 key set (KIDs 01 ENC, 02 MAC, 03 DEK). */
int  vse_keyset_put(struct vse *c, const uint8_t *sd_aid, size_t sd_len,
		    uint8_t kvn, const uint8_t *enc, const uint8_t *mac,
		    const uint8_t *dek, size_t keylen) WUR;
/* One AES key, e.g. the receipt key at KVN 71 KID 01. */
int  vse_key_put_aes(struct vse *c, const uint8_t *sd_aid, size_t sd_len,
		     uint8_t kvn, uint8_t kid, const uint8_t *key,
		     size_t keylen) WUR;
/* A public key from PEM (RSA, EC P-256/P-384), e.g. the DM token key at
 * KVN 70 KID 01. */
int  vse_key_put_pem(struct vse *c, const uint8_t *sd_aid, size_t sd_len,
		     uint8_t kvn, uint8_t kid, const char *pem) WUR;

/* ---- demo material (DEMO ONLY; rule in tests/sim/demo/README.md) -------- */

#define VSE_DEMO_ISD_KVN 0x30
/* Per-SE ISD keys: AES-128-ECB(master, SHA-256(seId)[0..15]). */
int  vse_demo_isd_keys(const char *se_id, uint8_t enc[16], uint8_t mac[16],
		       uint8_t dek[16]) WUR;
int  vse_demo_receipt_key(const char *se_id, uint8_t key[16]) WUR;
/* PEM of the demo DM token public key (RSA-2048). */
const char *vse_demo_token_pub_pem(void);
/* ISD KVN 30 keys, token key KVN 70, receipt key KVN 71. */
int  vse_demo_provision(struct vse *c) WUR;

/* ---- inspection ----------------------------------------------------------- */

struct vse_entry_info {
	int      kind;		/* 1 ISD, 2 SSD, 3 APP, 4 ELF */
	uint8_t  lcs;
	uint8_t  priv[3];
	uint8_t  sd[16];
	size_t   sd_len;
	uint32_t use_nv, use_v;
	int      has_quota_nv, has_quota_v;
	uint32_t quota_nv, quota_v;
	uint64_t free_nv, free_v;	/* SDs: memory left under their quotas */
	size_t   nkeysets;
	size_t   nrecords;		/* STORE DATA blocks recorded */
	size_t   nmodules;
};

/* ERR_NOTFOUND when no entry has that AID. */
int  vse_entry_get(const struct vse *c, const uint8_t *aid, size_t n,
		   struct vse_entry_info *out) WUR;
/* The idx-th STORE DATA block recorded for an entry. */
int  vse_record_get(const struct vse *c, const uint8_t *aid, size_t n,
		    size_t idx, uint8_t *p1, uint8_t *p2, const uint8_t **data,
		    size_t *len) WUR;
/* Sequence counter (last value used) of a key set. */
int  vse_seq_get(const struct vse *c, const uint8_t *sd_aid, size_t sd_len,
		 uint8_t kvn, uint32_t *seq) WUR;
uint32_t vse_confirmation_counter(const struct vse *c);
/* Human-readable summary for `vse show` (no key values, KCVs only). */
int  vse_print(const struct vse *c, FILE *f) WUR;

/* ---- test hooks ------------------------------------------------------------ */

/* The next INITIALIZE UPDATE answers with this card challenge (8 or 16). */
int  vse_test_force_challenge(struct vse *c, const uint8_t *ch, size_t n) WUR;
/* The next INITIALIZE UPDATE on the key set uses sequence counter `next`
 * (1..FFFFFF). */
int  vse_test_set_seq(struct vse *c, const uint8_t *sd_aid, size_t sd_len,
		      uint8_t kvn, uint32_t next) WUR;
/* The next R-ENC response pads its plaintext (80 00..) to at least n
 * bytes, as some cards do; replays the Samsung vectors byte for byte. */
int  vse_test_force_renc_pad(struct vse *c, size_t n) WUR;
/* The last command as processed after secure messaging was removed. */
int  vse_test_last_command(const struct vse *c, const uint8_t **p,
			   size_t *n) WUR;
/* Adds (or updates) a registry entry directly, bypassing INSTALL/LOAD:
 * kind 2 SSD, 3 APP, 4 ELF; sd_aid NULL = the ISD. An ISD entry (kind 1)
 * can only be updated (lcs, privileges). */
int  vse_test_registry_put(struct vse *c, int kind, const uint8_t *aid,
			   size_t n, uint8_t lcs, const uint8_t priv[3],
			   const uint8_t *sd_aid, size_t sd_len) WUR;

/* ---- host side for tests, scripts and fuzzing ------------------------------ */

/*
 * A minimal SCP03 host written with the card's own primitives. It is not
 * the product's host code (tsm/gp); tests check it against the public
 * vectors as well.
 */
struct vse_host;

int  vse_host_new(struct vse_host **out, const uint8_t *enc,
		  const uint8_t *mac, const uint8_t *dek, size_t keylen) WUR;
void vse_host_free(struct vse_host *h);
/* INITIALIZE UPDATE + EXTERNAL AUTHENTICATE on `channel` with the SD that
 * is selected there. host_challenge NULL = random. ERR_SW when the card
 * refuses (*sw tells why), ERR_CRYPTOGRAM on a wrong card cryptogram. */
int  vse_host_open(struct vse_host *h, struct vse *c, uint8_t channel,
		   uint8_t kvn, uint8_t sl, int s16,
		   const uint8_t *host_challenge, uint16_t *sw) WUR;
/* Builds the INITIALIZE UPDATE / checks its response and builds EXTERNAL
 * AUTHENTICATE (for callers that carry APDUs themselves). */
int  vse_host_iu(struct vse_host *h, uint8_t channel, uint8_t kvn, int s16,
		 const uint8_t *host_challenge, struct buf *apdu) WUR;
int  vse_host_ea(struct vse_host *h, const uint8_t *iu_rsp, size_t n,
		 uint8_t sl, struct buf *apdu) WUR;
int  vse_host_is_open(const struct vse_host *h);
void vse_host_close(struct vse_host *h);
int  vse_host_dek(const struct vse_host *h, const uint8_t **dek, size_t *n) WUR;
/* Wraps a plain command (C-MAC, C-ENC per the session level). */
int  vse_host_wrap(struct vse_host *h, const uint8_t *apdu, size_t n,
		   struct buf *out) WUR;
/* Checks R-MAC / removes R-ENC; out = plain data || SW. ERR_RMAC. */
int  vse_host_unwrap(struct vse_host *h, const uint8_t *rsp, size_t n,
		     struct buf *out) WUR;
/* wrap, vse_transmit, unwrap. */
int  vse_host_transmit(struct vse_host *h, struct vse *c, const uint8_t *apdu,
		       size_t n, struct buf *rsp) WUR;
/* PUT KEY data block for one AES key under the session's static DEK
 * (gp-reference §4): 88 L [keyLen] E(key) 03 KCV. */
int  vse_host_key_block(const struct vse_host *h, const uint8_t *key,
			size_t keylen, int with_len, struct buf *out) WUR;

#endif
