/*
 * fuzz_flow_agent.c - libFuzzer target for the device agent API bodies as
 * tsmd checks them (tsm/flow/parse.c): the session opening and a respList
 * against a batch of 1..FLOW_BATCH_MAX APDUs. The first byte picks the
 * parser and the batch size; an accepted respList's invariants are
 * checked (counts, SWs, hex round trip, where the agent may stop).
 */
#include <stdlib.h>
#include <string.h>

#include "tsm/flow/flow.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
check_open(const json_t *j)
{
	char se[129], msg[200];
	size_t i, n;
	int rc;

	rc = flow_open_parse(j, se, sizeof(se), msg, sizeof(msg));
	if (strnlen(msg, sizeof(msg)) == sizeof(msg))
		abort();
	if (rc != FLOW_AGENT_OK) {
		if (rc != FLOW_AGENT_BAD_REQUEST || msg[0] == '\0')
			abort();
		return;
	}
	n = strlen(se);
	if (n % 2 != 0 || n < 2 * FLOW_SEID_MIN || n > 2 * FLOW_SEID_MAX)
		abort();
	for (i = 0; i < n; i++)
		if (!((se[i] >= '0' && se[i] <= '9') || (se[i] >= 'A' && se[i] <= 'F')))
			abort();
}

static void
check_resp(const json_t *j, size_t n_sent)
{
	struct flow_resp r;
	char se[129], msg[300], hx[2 * FLOW_RESP_MAX + 1];
	size_t i;
	int rc;

	flow_resp_init(&r);
	rc = flow_resp_parse(j, n_sent, &r, se, sizeof(se), msg, sizeof(msg));
	if (strnlen(msg, sizeof(msg)) == sizeof(msg))
		abort();
	if (rc != FLOW_AGENT_OK) {
		if ((rc != FLOW_AGENT_BAD_REQUEST && rc != FLOW_AGENT_BAD_RESP) ||
		    msg[0] == '\0' || r.n != 0)
			abort();
		flow_resp_free(&r);
		return;
	}
	if (r.n == 0 || r.n > n_sent)
		abort();
	if (r.n < n_sent && flow_sw_goes_on(r.sw[r.n - 1]))
		abort();
	for (i = 0; i < r.n; i++) {
		if (r.v[i].len < 2 || r.v[i].len > FLOW_RESP_MAX ||
		    r.sw[i] != (uint16_t)(r.v[i].p[r.v[i].len - 2] << 8 |
		    r.v[i].p[r.v[i].len - 1]))
			abort();
		if (i + 1 < r.n && !flow_sw_goes_on(r.sw[i]))
			abort();
		hex_encode_upper(r.v[i].p, r.v[i].len, hx);
		if (strcmp(hx, r.hex[i]) != 0)
			abort();
	}
	flow_resp_free(&r);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	json_error_t je;
	json_t *j;
	uint8_t sel;

	if (size < 1)
		return 0;
	sel = data[0];
	j = json_loadb((const char *)data + 1, size - 1, JSON_REJECT_DUPLICATES,
	    &je);
	if (sel & 1)
		check_open(j);
	else
		check_resp(j, 1 + (size_t)(sel >> 1) % FLOW_BATCH_MAX);
	json_decref(j);
	return 0;
}
