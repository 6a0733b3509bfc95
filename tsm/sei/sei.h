/*
 * sei.h - tsmd's SEI-TSM-facing interfaces (T/TAF 096-2021 §9.4 key sync,
 * §9.5 SD state sync): the resultCode table, the pure validators of both
 * request bodies, the receipt and master-set rules, route registration.
 * Runs in tsmd; everything in a request body is untrusted. See README.md.
 */
#ifndef SPTSM_SEI_H
#define SPTSM_SEI_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "kms/base.h"
#include "kms/kms.h"

struct http_router;
struct store;

/* ---- resultCode (README.md "resultCode table") -------------------------- */

enum sei_result {
	SEI_OK              = 0,
	SEI_MISSING_FIELD   = 1001,
	SEI_BAD_FORMAT      = 1002,
	SEI_UNKNOWN_PEER    = 1003,
	SEI_AUTH_FAILED     = 1004,
	SEI_REPLAY          = 1005,
	SEI_KCV_MISMATCH    = 1006,
	SEI_UNWRAP_FAILED   = 1007,
	SEI_STATE_CONFLICT  = 1008,
	SEI_TOO_LARGE       = 1009,
	SEI_UNAVAILABLE     = 1010,
	SEI_INTERNAL        = 9999,
};

/* "missing field", ...; "unknown" for a code not in the table. */
const char *sei_result_name(int code);
/* The HTTP status a code is answered with by default (README.md). */
int  sei_result_status(int code);
/* The resultCode for one of the framework's refusals (status and machine
 * code as tsm/http gives them, e.g. 401 "replay"). */
int  sei_result_from_http(int status, const char *code);
/* The resultCode for a kmsd/store error (ERR_KCV -> SEI_KCV_MISMATCH, ...)
 * seen while importing a key set. */
int  sei_result_from_err(int err);
/* http_error_fn for the SEI routes: {"resultCode":N,"resultMessage":msg}. */
json_t *sei_error_json(int status, const char *code, const char *msg);

/* ---- request validation (pure: no I/O, fuzzed) -------------------------- */

#define SEI_ID_MAX       64	/* seiTsmId: printable ASCII, no '|' */
#define SEI_AID_MIN      5	/* bytes */
#define SEI_AID_MAX      16
#define SEI_SEID_MIN     4
#define SEI_SEID_MAX     64
#define SEI_KEYS         3	/* SCP03: ENC, MAC, DEK */
#define SEI_WRAPPED_MAX  512	/* bytes of one encryptedKey (RSA-4096) */
#define SEI_STATUS_MAX   31
#define SEI_KVN_DEFAULT  0x30
#define SEI_MSG_MAX      256	/* resultMessage buffers */

/* A §9.4 request as validated; hex fields normalised to upper case. */
struct sei_keysync {
	char    sei_tsm_id[SEI_ID_MAX + 1];
	char    sd_aid[2 * SEI_AID_MAX + 1];
	char    se_id[2 * SEI_SEID_MAX + 1];	/* "" = the AID's master set */
	uint8_t kvn;				/* keyVersion, 0x01..0x7F */
	int     alg;				/* KMS_ALG_AES128/192/256 */
	char    usage[8];			/* "SCP03" */
	size_t  n;				/* keys (SEI_KEYS) */
	uint8_t usages[SEI_KEYS];		/* KMS_USE_ENC, _MAC, _DEK */
	uint8_t wrapped[SEI_KEYS][SEI_WRAPPED_MAX];
	size_t  wlen[SEI_KEYS];
	uint8_t kcv[SEI_KEYS][5];		/* expected, peer's method */
	size_t  kcvlen;				/* 3 (GP) or 5 (CMAC) */
};

/*
 * Validates a §9.4 body against the peer's wrapping (KMS_WRAP_*) and KCV
 * method (KMS_KCV_*). Returns SEI_OK and fills *out, or SEI_MISSING_FIELD,
 * SEI_BAD_FORMAT or SEI_UNWRAP_FAILED (an encryptedKey whose length cannot
 * be the wrapping of an Alg key) with a message naming the field in msg
 * (cap >= SEI_MSG_MAX recommended). body may be NULL (not JSON).
 */
int  sei_keysync_parse(const json_t *body, int wrap, int kcv_method,
	    struct sei_keysync *out, char *msg, size_t cap) WUR;

/* A §9.5 request as validated. */
struct sei_sdstatus {
	char sei_tsm_id[SEI_ID_MAX + 1];
	char sd_aid[2 * SEI_AID_MAX + 1];
	char se_id[2 * SEI_SEID_MAX + 1];
	char status[SEI_STATUS_MAX + 1];
};

/* Validates a §9.5 body: SEI_OK, SEI_MISSING_FIELD (also for an absent
 * seId, which this project requires) or SEI_BAD_FORMAT, with msg. */
int  sei_sdstatus_parse(const json_t *body, struct sei_sdstatus *out,
	    char *msg, size_t cap) WUR;

/* ---- receipt and master sets (receipt.c) --------------------------------- */

/*
 * Appends the receipt MAC input to out: "SPTSM-RECEIPT-1\n" seiTsmId "\n"
 * SsdAid "\n" seId "\n" keyVersion "\n" kcv1 "\n" ... kcvN, hex upper
 * case, no trailing newline (README.md "Receipt"). se_id "" for a master
 * set. ERR_INVAL for n == 0 or n > SEI_KEYS, kcvlen not 3 or 5.
 */
int  sei_receipt_input(struct buf *out, const char *sei_tsm_id,
	    const char *sd_aid, const char *se_id, uint8_t kvn,
	    const uint8_t kcv[][5], size_t n, size_t kcvlen) WUR;

/*
 * The master-set diversification data of an SE: the first keylen bytes of
 * SHA-256(seId as upper-case hex ASCII); keylen 16 or 32 (the master
 * key's length). se_id is normalised to upper case first. ERR_INVAL for a
 * malformed seId or another keylen.
 */
int  sei_master_div(const char *se_id, size_t keylen, uint8_t d[32]) WUR;

/*
 * Opens a master-set blob (from a key sync without seId) in kmsd with
 * KMS_OPEN_MASTER and derives the SE's key set from it: out->handle[i] =
 * AES-ECB(master_i, D) in the token (usable as that key-set member).
 * out->kcv stays zero: kmsd records check values only for members it
 * imported or generated. The master handles are closed before returning;
 * on error no handle is left open.
 */
int  sei_master_open_se(struct kms_client *c, const uint8_t *blob, size_t n,
	    const char *se_id, struct kms_keyset *out) WUR;

/* ---- §9.5 reaction hook ------------------------------------------------------ */

struct store_batch;
struct store_ssd;
struct store_sdstatus;

/*
 * Lets the flows react to a §9.5 event in the same durable batch as the
 * event itself (README.md "§9.5 SD state sync"). amend runs while the
 * batch is built - after the event was added, before the SSD record is:
 * `old` is the SSD record as read (NULL when the SSD was unknown), `ssd`
 * the record about to be written (state = status, prev_state = the old
 * state), which amend may change further; it may add ops and conditions
 * to b (compare-and-swap on what it read). A non-zero return fails the
 * request (ERR_WRONGSTATE / ERR_EXISTS: the batch is rebuilt, as for any
 * lost race). committed runs after the batch is on disk. Both run on the
 * request's worker thread and must not block for long. Set once, before
 * the server starts; NULL clears it.
 */
struct sei_sdstatus_hook {
	int  (*amend)(void *arg, struct store *st, struct store_batch *b,
		    const struct store_ssd *old, struct store_ssd *ssd,
		    const struct store_sdstatus *ev, uint64_t now);
	void (*committed)(void *arg, const struct store_sdstatus *ev);
	void  *arg;
};
void sei_sdstatus_set_hook(const struct sei_sdstatus_hook *h);

/* ---- routes --------------------------------------------------------------- */

/* POST /api/v1/sei/key-sync and POST /api/v1/sei/sd-status, both
 * HTTP_AUTH_SEI_PEER, with the SEI error shape; st stays open while the
 * server runs. */
int  sei_routes_register(struct http_router *r, struct store *st) WUR;

#endif
