/*
 * fuzz_sei_client.c - libFuzzer target for tsmd's SEI client's answer
 * checks (tsm/sei/client.c): the §9.1/§9.2/§9.3 JSON an SEI-TSM answers.
 * The first byte picks the call and what was asked; the rest is the body.
 * Whatever parses must leave lists of bounded hex and ids within limits.
 */
#include <stdlib.h>
#include <string.h>

#include "tsm/sei/client.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
check_list(const struct sei_list *l)
{
	size_t i, k;

	if (l->n > SEI_CLIENT_LIST_MAX)
		abort();
	for (i = 0; i < l->n; i++) {
		k = strlen(l->v[i]);
		if (k < 2 || k % 2 || strspn(l->v[i], "0123456789ABCDEF") != k)
			abort();
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sei_result r;
	int call, rc;

	if (size < 1)
		return 0;
	call = 1 + data[0] % 3;
	sei_result_init(&r);
	rc = sei_client_answer_parse(call, data + 1, size - 1,
	    call == 2 && (data[0] & 0x10) ? "SIM-000001" : NULL,
	    "0011223344556677", 1 + (data[0] >> 6), &r);
	if (rc != 0 && rc != ERR_DENIED && rc != ERR_PROTO && rc != ERR_NOMEM)
		abort();
	if (rc == 0 && r.result_code != 0)
		abort();
	if (rc == ERR_DENIED && r.result_code == 0)
		abort();
	if (strlen(r.result_message) >= sizeof(r.result_message) ||
	    strlen(r.task_id) > 64)
		abort();
	check_list(&r.apdus);
	check_list(&r.tokens);
	if (rc == 0 && call == 3 && r.tokens.n != (size_t)(1 + (data[0] >> 6)))
		abort();
	if (rc == 0 && call != 3 && r.done != (r.apdus.n == 0))
		abort();
	sei_result_cleanup(&r);
	return 0;
}
