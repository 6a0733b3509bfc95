/*
 * flow.h - tsmd's flows (§6.2.1, §6.2.2, §6.2.4, §7.1, §7.3): persistent
 * tasks run through device agent sessions, SSD life cycle through the
 * SEI-TSM, key replacement, state sync, notifications, operator API.
 * Runs in tsmd; agent, card and SEI-TSM input is outside input.
 */
#ifndef SPTSM_FLOW_H
#define SPTSM_FLOW_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "kms/base.h"

struct flow;
struct http_router;
struct store;
struct tsm_config;
struct sei_sdstatus_hook;

/*
 * The flows of one tsmd: st stays open and cfg referenced until
 * flow_free. Reads TSMD_TEST_CRASH (test only, README.md "Crash points").
 * Errors: ERR_NOMEM, ERR_INVAL.
 */
int  flow_new(struct flow **out, struct store *st, struct tsm_config *cfg) WUR;
/* Starts the background worker (notification delivery with retries,
 * expired agent sessions, destruction of archived key sets past their
 * retention). */
int  flow_start(struct flow *f) WUR;
/* Stops the worker, ends every agent session (their tasks stay as
 * recorded), frees. The HTTP server must be stopped first. NULL is fine. */
void flow_free(struct flow *f);

/* The agent API, the operator API (SEs, SSDs, tasks, applications,
 * providers, notifications): README.md lists them with their auth. */
int  flow_routes_register(struct http_router *r, struct flow *f) WUR;

/* The reaction to §9.5 events, for sei_sdstatus_set_hook(). */
void flow_sdstatus_hook(struct flow *f, struct sei_sdstatus_hook *out);

/* ---- agent API wire (pure parsers, fuzzed) -------------------------------- */

/* resultCode of the agent API (README.md "Agent API"). */
enum flow_agent_code {
	FLOW_AGENT_OK          = 0,
	FLOW_AGENT_BAD_REQUEST = 2000,	/* 400: body not as documented */
	FLOW_AGENT_BUSY        = 2001,	/* 409: the SE or the session is busy */
	FLOW_AGENT_NO_SESSION  = 2002,	/* 404: unknown, ended or expired */
	FLOW_AGENT_BAD_RESP    = 2003,	/* 400: respList refused; session ended */
	FLOW_AGENT_UNAVAILABLE = 2004,	/* 503: kmsd / SEI-TSM / store; retry */
	FLOW_AGENT_FORBIDDEN   = 2005,	/* 403: the device certificate is not
					 * this SE's */
	FLOW_AGENT_INTERNAL    = 9999,
};

#define FLOW_BATCH_MAX   64		/* APDUs in one batch */
#define FLOW_SESSIONS_MAX 4096		/* agent sessions open at once */
#define FLOW_RESP_MAX    65538		/* bytes of one response (data || SW) */
#define FLOW_SEID_MIN    4		/* bytes */
#define FLOW_SEID_MAX    64

/* A respList as checked: n responses, each data || SW1 SW2. */
struct flow_resp {
	size_t      n;
	struct buf  v[FLOW_BATCH_MAX];	/* bytes */
	char       *hex[FLOW_BATCH_MAX];	/* upper-case hex of each */
	uint16_t    sw[FLOW_BATCH_MAX];
};
void flow_resp_init(struct flow_resp *r);
void flow_resp_free(struct flow_resp *r);

/* 1 for 9000, 61xx, 62xx, 63xx: the agent goes on after it. */
int  flow_sw_goes_on(uint16_t sw);

/* Upper-case hex of min..max bytes into out (cap); -1 when not. */
int  flow_hex_norm(const char *s, size_t min, size_t max, char *out,
	    size_t cap);

/*
 * POST /api/v1/agent/sessions body {"seId": hex 4..64 bytes}: se_id gets
 * it upper case (cap >= 129). FLOW_AGENT_OK or FLOW_AGENT_BAD_REQUEST with
 * msg naming the field.
 */
int  flow_open_parse(const json_t *body, char *se_id, size_t cap, char *msg,
	    size_t mcap) WUR;
/*
 * POST /api/v1/agent/sessions/{id} body {"respList": [hex...], "seId"?}
 * against a batch of n_sent APDUs: every element hex of 2..FLOW_RESP_MAX
 * bytes; never more than n_sent; fewer only when the last one's SW stops
 * the agent (not 9000/61xx/62xx/63xx). se_id (cap >= 129) gets the
 * optional seId ("" when absent). FLOW_AGENT_OK, FLOW_AGENT_BAD_REQUEST
 * (not the documented shape) or FLOW_AGENT_BAD_RESP, with msg. out must
 * be initialised; it is filled only on success.
 */
int  flow_resp_parse(const json_t *body, size_t n_sent, struct flow_resp *out,
	    char *se_id, size_t cap, char *msg, size_t mcap) WUR;

#endif
