/*
 * sei_int.h - internals shared by the SEI-facing handlers of tsm/sei/
 * (routes.c, keysync.c, sdstatus.c): the route argument, answers, the
 * peer and durable-nonce checks. Runs in tsmd's workers. Not for others.
 */
#ifndef SPTSM_SEI_INT_H
#define SPTSM_SEI_INT_H

#include <stdint.h>

#include "tsm/http/http.h"
#include "tsm/sei/sei.h"
#include "tsm/store/store.h"

/* The argument of both routes. */
struct sei_app {
	struct store *st;
};

/* Tries of a store batch whose conditions lost a race with another
 * request on the same SE/SSD before the answer is 1010. */
#define SEI_BATCH_TRIES 5

/* {"resultCode":code,"resultMessage":...} with the code's HTTP status
 * (sei_result_status). Returns what http_resp_json returns. */
int  sei_reply(struct http_resp *rs, int code, const char *fmt, ...)
	    __attribute__((format(printf, 3, 4))) WUR;

/*
 * The checks every SEI handler makes after validating the body: seiTsmId
 * must be the signing peer (else SEI_UNKNOWN_PEER when it names no
 * configured peer, SEI_AUTH_FAILED when another one), and the signature's
 * nonce must not be claimed in the store already (SEI_REPLAY: a replay
 * across a restart, which the in-memory cache cannot see). SEI_OK or a
 * code with msg; SEI_UNAVAILABLE/SEI_INTERNAL when the store cannot say.
 * `sig` is http_req_sig(), or the pending one on a mac_in_handler route
 * (the answer then waits for the MAC check).
 */
int  sei_check_request(struct http_req *rq, const struct http_sig *sig,
	    struct store *st, const char *sei_tsm_id, char *msg, size_t cap) WUR;

/* 1 when (peer, nonce) is claimed in the store and not expired, 0 when
 * not, or a negative ERR_*. */
int  sei_nonce_claimed(struct store *st, const char *peer, const char *nonce,
	    uint64_t now) WUR;

/* Adds the durable claim of the request's nonce to b: until ts + 300 s
 * (the signature window), counted from now. */
int  sei_claim_nonce(struct store_batch *b, const struct tsm_peer *p,
	    const struct http_sig *sig, uint64_t now) WUR;

/* The answer to a store error: 1010 for a store that is full or busy or
 * for a batch that lost its race SEI_BATCH_TRIES times (ERR_EXISTS /
 * ERR_WRONGSTATE), else 9999 (logged). */
int  sei_store_failure(struct http_req *rq, struct http_resp *rs, int rc) WUR;

/* Adds the SE record to b when the store has none (state ACTIVE, issuer
 * p, with the condition that it is still absent at commit). */
int  sei_batch_add_se(struct store_batch *b, struct store *st,
	    const char *se_id, const struct tsm_peer *p, uint64_t now) WUR;

/* An SSD record first heard of from the SEI-TSM: in `state`, mode AMSD
 * until a flow learns otherwise. */
void sei_ssd_fresh(struct store_ssd *ssd, const char *se_id,
	    const char *sd_aid, const char *state, uint64_t now);
/* Puts ssd with the condition that its key is still absent at commit. */
int  sei_batch_put_new_ssd(struct store_batch *b,
	    const struct store_ssd *ssd) WUR;

int  sei_keysync_handle(struct http_req *rq, struct http_resp *rs,
	    void *arg);
int  sei_sdstatus_handle(struct http_req *rq, struct http_resp *rs,
	    void *arg);

#endif
