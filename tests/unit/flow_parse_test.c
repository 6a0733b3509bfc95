/*
 * flow_parse_test.c - the agent API body checks of tsm/flow/parse.c, field
 * by field with their refusals: the session opening, and respLists
 * against a batch (counts, where the agent may stop, hex, lengths, seId).
 */
#include <stdlib.h>
#include <string.h>

#include "tests/tap.h"
#include "tsm/flow/flow.h"

static int
open_rc(const char *json, char *se)
{
	char msg[200];
	json_t *j = json_loads(json, 0, NULL);
	int rc = flow_open_parse(j, se, 129, msg, sizeof(msg));

	json_decref(j);
	return rc;
}

/* resultCode of a respList against n_sent; *n gets the count taken. */
static int
resp_rc(const char *json, size_t n_sent, size_t *n, char *se, char *msg)
{
	struct flow_resp r;
	json_t *j = json_loads(json, 0, NULL);
	int rc;

	flow_resp_init(&r);
	rc = flow_resp_parse(j, n_sent, &r, se, 129, msg, 300);
	*n = r.n;
	if (rc == FLOW_AGENT_OK && r.n > 0 && r.sw[r.n - 1] == 0x9000 &&
	    strcmp(r.hex[r.n - 1] + strlen(r.hex[r.n - 1]) - 4, "9000") != 0)
		rc = -1;
	flow_resp_free(&r);
	json_decref(j);
	return rc;
}

int
main(void)
{
	char se[129], msg[300];
	size_t n;

	ok(open_rc("{\"seId\":\"0011223344556677\"}", se) == FLOW_AGENT_OK &&
	    strcmp(se, "0011223344556677") == 0, "open: seId");
	ok(open_rc("{\"seId\":\"abcdef0123\"}", se) == FLOW_AGENT_OK &&
	    strcmp(se, "ABCDEF0123") == 0, "open: seId normalised to upper case");
	is_int(open_rc("{}", se), FLOW_AGENT_BAD_REQUEST, "open: no seId");
	is_int(open_rc("[]", se), FLOW_AGENT_BAD_REQUEST, "open: not an object");
	is_int(open_rc("{\"seId\":\"001122\"}", se), FLOW_AGENT_BAD_REQUEST,
	    "open: 3 bytes (4 at least)");
	is_int(open_rc("{\"seId\":\"00112\"}", se), FLOW_AGENT_BAD_REQUEST,
	    "open: odd length");
	is_int(open_rc("{\"seId\":\"00112233zz\"}", se), FLOW_AGENT_BAD_REQUEST,
	    "open: not hex");
	is_int(open_rc("{\"seId\":12345678}", se), FLOW_AGENT_BAD_REQUEST,
	    "open: not a string");
	{
		char big[200] = "{\"seId\":\"";

		memset(big + 9, 'A', 130);
		strcpy(big + 139, "\"}");
		is_int(open_rc(big, se), FLOW_AGENT_BAD_REQUEST, "open: 65 bytes "
		    "(64 at most)");
	}
	is_int(open_rc("{\"seId\":\"0011223344556677\",\"x\":1}", se),
	    FLOW_AGENT_BAD_REQUEST, "open: unknown field");

	ok(resp_rc("{\"respList\":[\"9000\",\"AABB9000\"]}", 2, &n, se, msg) ==
	    FLOW_AGENT_OK && n == 2 && se[0] == '\0', "resp: two answers to two");
	ok(resp_rc("{\"respList\":[\"9000\",\"6A82\"]}", 3, &n, se, msg) ==
	    FLOW_AGENT_OK && n == 2, "resp: fewer, the last one stopping (6A82)");
	ok(resp_rc("{\"respList\":[\"6310\",\"6283\",\"6101\",\"9000\"]}", 4, &n,
	    se, msg) == FLOW_AGENT_OK && n == 4, "resp: 63xx/62xx/61xx go on");
	ok(resp_rc("{\"respList\":[\"aabb9000\"],\"seId\":\"0011223344556677\"}", 1,
	    &n, se, msg) == FLOW_AGENT_OK && strcmp(se, "0011223344556677") == 0,
	    "resp: lower-case hex and the optional seId");
	is_int(resp_rc("{\"respList\":[\"9000\",\"9000\"]}", 1, &n, se, msg),
	    FLOW_AGENT_BAD_RESP, "resp: more answers than APDUs");
	is_int(resp_rc("{\"respList\":[\"9000\"]}", 2, &n, se, msg),
	    FLOW_AGENT_BAD_RESP, "resp: fewer, the last one going on");
	is_int(resp_rc("{\"respList\":[]}", 1, &n, se, msg), FLOW_AGENT_BAD_RESP,
	    "resp: none");
	is_int(resp_rc("{\"respList\":[\"6A82\",\"9000\"]}", 2, &n, se, msg),
	    FLOW_AGENT_BAD_RESP, "resp: an answer after a stopping SW");
	is_int(resp_rc("{\"respList\":[\"90\"]}", 1, &n, se, msg),
	    FLOW_AGENT_BAD_RESP, "resp: one byte (no SW)");
	is_int(resp_rc("{\"respList\":[\"900\"]}", 1, &n, se, msg),
	    FLOW_AGENT_BAD_RESP, "resp: odd hex");
	is_int(resp_rc("{\"respList\":[\"90G0\"]}", 1, &n, se, msg),
	    FLOW_AGENT_BAD_RESP, "resp: not hex");
	is_int(resp_rc("{\"respList\":[9000]}", 1, &n, se, msg),
	    FLOW_AGENT_BAD_RESP, "resp: not a string");
	{
		char *big = malloc(2 * FLOW_RESP_MAX + 64);

		strcpy(big, "{\"respList\":[\"");
		memset(big + 14, 'A', 2 * FLOW_RESP_MAX + 2);
		strcpy(big + 14 + 2 * FLOW_RESP_MAX + 2, "\"]}");
		is_int(resp_rc(big, 1, &n, se, msg), FLOW_AGENT_BAD_RESP,
		    "resp: one byte over %d", FLOW_RESP_MAX);
		free(big);
	}
	is_int(resp_rc("{\"respList\":\"9000\"}", 1, &n, se, msg),
	    FLOW_AGENT_BAD_REQUEST, "resp: respList not an array");
	is_int(resp_rc("{}", 1, &n, se, msg), FLOW_AGENT_BAD_REQUEST,
	    "resp: no respList");
	is_int(resp_rc("{\"respList\":[\"9000\"],\"seId\":\"xx\"}", 1, &n, se, msg),
	    FLOW_AGENT_BAD_REQUEST, "resp: a bad seId");
	is_int(resp_rc("{\"respList\":[\"9000\"],\"more\":1}", 1, &n, se, msg),
	    FLOW_AGENT_BAD_REQUEST, "resp: unknown field");
	ok(strstr(msg, "more") != NULL, "resp: the message names it (%s)", msg);
	ok(flow_sw_goes_on(0x9000) && flow_sw_goes_on(0x6100) &&
	    flow_sw_goes_on(0x62FF) && flow_sw_goes_on(0x6310) &&
	    !flow_sw_goes_on(0x6A82) && !flow_sw_goes_on(0x6400) &&
	    !flow_sw_goes_on(0x9001), "the SWs after which the agent goes on");
	return done_testing();
}
