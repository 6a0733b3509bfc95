/*
 * client.h - tsmd's client of an SEI-TSM (T/TAF 096-2021 §9.1 SSD
 * management, §9.2 get instructions, §9.3 token request) over HTTPS with
 * libcurl: JSON with the field names printed in the standard, requests
 * signed and answers verified in kmsd (X-TSM-Signature), timeouts, retries
 * only where a repeat is harmless, every call recorded on its task. Runs in
 * tsmd on any thread; every answer is untrusted. See client.md.
 */
#ifndef SPTSM_SEI_CLIENT_H
#define SPTSM_SEI_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#include "kms/base.h"
#include "kms/kms.h"
#include "tsm/config.h"

struct store;

#define SEI_CLIENT_LIST_MAX 256		/* apduList / token / respList entries */
#define SEI_CLIENT_BODY_MAX (1u << 20)	/* answer bytes */

/* Timeouts and retries; sei_client_opts_default() gives the defaults. */
struct sei_client_opts {
	unsigned connect_timeout_ms;	/* TCP + TLS handshake; 5000 */
	unsigned timeout_ms;		/* one attempt, whole exchange; 30000 */
	unsigned max_attempts;		/* retryable calls, 1..10; 3 */
	unsigned backoff_ms;		/* before the 2nd attempt, then doubled,
					 * +-25 % jitter; 250 */
	uint64_t deadline_us;		/* now_us() by which every attempt must
					 * be over (e.g. http_req_deadline()); 0
					 * none */
};

/* What a call runs with. */
struct sei_call {
	struct kms_client *kms;		/* the calling thread's kmsd connection
					 * (tsm_kms()): signs and verifies */
	struct store      *store;	/* NULL: the call is not recorded */
	const char        *task_id;	/* our task it belongs to; NULL: none */
	const struct sei_client_opts *opts;	/* NULL: defaults */
	int                peer_idempotent;	/* 1: this peer documents that a
						 * repeated §9.1/§9.2 request is
						 * answered without acting twice,
						 * so they may be retried too */
};

struct sei_list {
	char  **v;		/* upper-case hex strings */
	size_t  n;
};

/* The outcome of one call (filled as far as the exchange got). */
struct sei_result {
	long     result_code;		/* the peer's resultCode: an integer or
					 * a digit string ("0000") */
	char     result_message[256];	/* the peer's text, control characters
					 * replaced; "" when absent */
	char     task_id[65];		/* §9.1/§9.2 taskId */
	char     se_id[129];		/* §9.3 seId */
	struct sei_list apdus;		/* §9.1/§9.2 apduList */
	struct sei_list tokens;		/* §9.3 token, one per rawData */
	int      done;			/* resultCode 0 and an empty apduList: the
					 * SEI-TSM has nothing more for the SE */
	long     http_status;		/* of the last attempt; 0 = none */
	unsigned attempts;
	uint64_t elapsed_ms;
	char     error[320];		/* why the call failed ("" on success);
					 * never key bytes */
};

void sei_result_init(struct sei_result *r);
void sei_result_cleanup(struct sei_result *r);

/* curl_global_init: once per process, before any thread calls the
 * client. ERR_INTERNAL if libcurl cannot start. */
int  sei_client_init(void) WUR;
void sei_client_cleanup(void);
void sei_client_opts_default(struct sei_client_opts *o);

/*
 * Every call: builds the body from its arguments (hex is sent upper case),
 * POSTs it to peer->base_url + the endpoint, signed with kms_hmac on
 * peer->mac_key (keyId = peer->mac_key_id), TLS verified against
 * peer->tls_ca (system trust when NULL). The answer must carry a valid
 * X-TSM-Signature of the same key over the request's METHOD and PATH, a ts
 * within 300 s and an unseen nonce; then its JSON is checked (types, hex,
 * list sizes, taskId/seId echo) into *res.
 *
 * Returns:
 *   0           the peer answered resultCode 0
 *   ERR_DENIED  the peer answered with another resultCode: res->result_code
 *               and res->result_message say why (never retried)
 *   ERR_INVAL   bad arguments (nothing sent)
 *   ERR_IO      no answer (connection, TLS handshake, HTTP 5xx/429 without
 *               a signed body); ERR_TIMEOUT: the attempt or the deadline ran
 *               out - after the retries the call allows
 *   ERR_AUTH    the answer's signature is missing, wrong, stale or replayed,
 *               or the peer refused ours (HTTP 401/403)
 *   ERR_PROTO   the answer is not the documented JSON
 *   ERR_NOMEM, ERR_CRYPTO, ERR_SEALED... from kmsd while signing
 * res->error explains every failure. Retries (client.md): §9.3 on ERR_IO /
 * ERR_TIMEOUT; §9.1/§9.2 only when the request cannot have reached the
 * peer (connection refused, DNS, TLS handshake), unless
 * call->peer_idempotent.
 */
/* §9.1: opt_type CREATE_SSD | LOCK_SSD | UNLOCK_SSD | DELETE_SSD;
 * exp_privilege (GP privileges hex, 1 or 3 bytes) is required with
 * CREATE_SSD and left out otherwise when NULL; scp_config e.g. "0370". */
int  sei_ssd_manage(const struct tsm_peer *peer, const struct sei_call *call,
	    const char *opt_type, const char *se_id, const char *sd_aid,
	    const char *exp_privilege, const char *scp_config,
	    struct sei_result *res) WUR;
/* §9.2: resp_list = the previous batch's responses (data || SW, hex), as
 * the SE gave them (n may be 0). res->done when the task is over. */
int  sei_ssd_instructions(const struct tsm_peer *peer,
	    const struct sei_call *call, const char *task_id, const char *se_id,
	    const char *const *resp_list, size_t n, struct sei_result *res) WUR;
/* §9.3 (optType CREATE_TOKEN): raw_data = DM token data (P1 P2 Lc data,
 * hex), n >= 1; on success res->tokens has n tokens, in order. */
int  sei_token(const struct tsm_peer *peer, const struct sei_call *call,
	    const char *se_id, const char *const *raw_data, size_t n,
	    struct sei_result *res) WUR;

/*
 * The checks a call applies to an answer body once its signature verified
 * (exported for the fuzz target and tests): call 1 = §9.1, 2 = §9.2,
 * 3 = §9.3; task_id (§9.2, else NULL), se_id and nraw (§9.3) as asked.
 * Returns 0, ERR_DENIED (resultCode not 0) or ERR_PROTO, filling *res,
 * which the caller initialised and cleans up.
 */
int  sei_client_answer_parse(int call, const uint8_t *body, size_t n,
	    const char *task_id, const char *se_id, size_t nraw,
	    struct sei_result *res) WUR;

#endif
