/*
 * parse.c - the pure checks of the agent API bodies: the session opening
 * and the respList of a batch (counts against what was sent, hex, lengths,
 * where the agent may stop). No I/O; fuzzed (tests/fuzz/fuzz_flow_agent.c).
 * Runs in tsmd's workers on bodies from devices: nothing here is trusted.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tsm/flow/flow.h"

void
flow_resp_init(struct flow_resp *r)
{
	size_t i;

	memset(r, 0, sizeof(*r));
	for (i = 0; i < FLOW_BATCH_MAX; i++)
		buf_init(&r->v[i]);
}

void
flow_resp_free(struct flow_resp *r)
{
	size_t i;

	for (i = 0; i < FLOW_BATCH_MAX; i++) {
		buf_free(&r->v[i]);
		free(r->hex[i]);
		r->hex[i] = NULL;
	}
	r->n = 0;
}

int
flow_sw_goes_on(uint16_t sw)
{
	uint8_t s1 = (uint8_t)(sw >> 8);

	return sw == 0x9000 || s1 == 0x61 || s1 == 0x62 || s1 == 0x63;
}

/*
 * Upper-case hex of min..max bytes into out (cap); here, not in engine.c,
 * so that the pure parsers (and their fuzzer) need nothing else.
 */
int
flow_hex_norm(const char *s, size_t min, size_t max, char *out, size_t cap)
{
	size_t n, i;

	if (s == NULL)
		return -1;
	n = strlen(s);
	if (n % 2 != 0 || n < 2 * min || n > 2 * max || n >= cap)
		return -1;
	for (i = 0; i < n; i++) {
		char c = s[i];

		if (c >= 'a' && c <= 'f')
			c = (char)(c - 'a' + 'A');
		if (!((c >= '0' && c <= '9') || (c >= 'A' && c <= 'F')))
			return -1;
		out[i] = c;
	}
	out[n] = '\0';
	return 0;
}

/* Only the named members (and nothing else) may be present. */
static int
only_fields(const json_t *o, const char *const *known, char *msg, size_t mcap)
{
	const char *k;
	json_t *v;
	size_t i;

	json_object_foreach((json_t *)o, k, v) {
		int found = 0;

		for (i = 0; known[i] != NULL && !found; i++)
			found = strcmp(k, known[i]) == 0;
		if (!found) {
			snprintf(msg, mcap, "%.64s: unknown field", k);
			return -1;
		}
	}
	return 0;
}

int
flow_open_parse(const json_t *body, char *se_id, size_t cap, char *msg,
    size_t mcap)
{
	static const char *const known[] = { "seId", NULL };
	const json_t *v;

	msg[0] = '\0';
	if (!json_is_object(body)) {
		snprintf(msg, mcap, "expected a JSON object {\"seId\": \"<hex>\"}");
		return FLOW_AGENT_BAD_REQUEST;
	}
	if (only_fields(body, known, msg, mcap) != 0)
		return FLOW_AGENT_BAD_REQUEST;
	v = json_object_get(body, "seId");
	if (v == NULL) {
		snprintf(msg, mcap, "seId: missing");
		return FLOW_AGENT_BAD_REQUEST;
	}
	if (!json_is_string(v) || flow_hex_norm(json_string_value(v), FLOW_SEID_MIN,
	    FLOW_SEID_MAX, se_id, cap) != 0) {
		snprintf(msg, mcap, "seId: must be hex, %d to %d bytes",
		    FLOW_SEID_MIN, FLOW_SEID_MAX);
		return FLOW_AGENT_BAD_REQUEST;
	}
	return FLOW_AGENT_OK;
}

int
flow_resp_parse(const json_t *body, size_t n_sent, struct flow_resp *out,
    char *se_id, size_t cap, char *msg, size_t mcap)
{
	static const char *const known[] = { "respList", "seId", NULL };
	const json_t *list, *v;
	const char *h;
	struct flow_resp r;
	size_t i, n, hl;
	int rc = FLOW_AGENT_BAD_RESP;

	msg[0] = '\0';
	se_id[0] = '\0';
	if (!json_is_object(body)) {
		snprintf(msg, mcap, "expected a JSON object {\"respList\": [...]}");
		return FLOW_AGENT_BAD_REQUEST;
	}
	if (only_fields(body, known, msg, mcap) != 0)
		return FLOW_AGENT_BAD_REQUEST;
	v = json_object_get(body, "seId");
	if (v != NULL && (!json_is_string(v) || flow_hex_norm(json_string_value(v),
	    FLOW_SEID_MIN, FLOW_SEID_MAX, se_id, cap) != 0)) {
		snprintf(msg, mcap, "seId: must be hex, %d to %d bytes",
		    FLOW_SEID_MIN, FLOW_SEID_MAX);
		se_id[0] = '\0';
		return FLOW_AGENT_BAD_REQUEST;
	}
	list = json_object_get(body, "respList");
	if (list == NULL) {
		snprintf(msg, mcap, "respList: missing");
		return FLOW_AGENT_BAD_REQUEST;
	}
	if (!json_is_array(list)) {
		snprintf(msg, mcap, "respList: must be an array of hex strings");
		return FLOW_AGENT_BAD_REQUEST;
	}
	n = json_array_size(list);
	if (n > n_sent || n > FLOW_BATCH_MAX) {
		snprintf(msg, mcap, "respList: %zu responses to a batch of %zu "
		    "APDUs", n, n_sent);
		return FLOW_AGENT_BAD_RESP;
	}
	flow_resp_init(&r);
	for (i = 0; i < n; i++) {
		v = json_array_get(list, i);
		h = json_string_value(v);
		hl = h != NULL ? strlen(h) : 0;
		if (h == NULL || hl % 2 != 0 || hl < 4 || hl > 2 * FLOW_RESP_MAX ||
		    hex_decode_buf(h, &r.v[i]) != 0) {
			snprintf(msg, mcap, "respList[%zu]: must be hex of data || "
			    "SW1 SW2, 2 to %d bytes", i, FLOW_RESP_MAX);
			goto out;
		}
		if ((r.hex[i] = malloc(hl + 1)) == NULL) {
			snprintf(msg, mcap, "out of memory");
			rc = FLOW_AGENT_INTERNAL;
			goto out;
		}
		hex_encode_upper(r.v[i].p, r.v[i].len, r.hex[i]);
		r.sw[i] = (uint16_t)(r.v[i].p[r.v[i].len - 2] << 8 |
		    r.v[i].p[r.v[i].len - 1]);
		r.n = i + 1;
		/* The agent stops after the first SW it must not go past. */
		if (!flow_sw_goes_on(r.sw[i]) && i + 1 < n) {
			snprintf(msg, mcap, "respList[%zu]: SW %04X stops the batch, "
			    "yet %zu more responses follow", i, r.sw[i], n - i - 1);
			goto out;
		}
	}
	if (n < n_sent && (n == 0 || flow_sw_goes_on(r.sw[n - 1]))) {
		snprintf(msg, mcap, "respList: %zu responses to a batch of %zu "
		    "APDUs, and the last one did not stop it", n, n_sent);
		goto out;
	}
	*out = r;
	return FLOW_AGENT_OK;
out:
	flow_resp_free(&r);
	return rc;
}
