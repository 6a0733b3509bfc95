/*
 * fuzz_vse_state.c - libFuzzer target for the virtual SE's card file
 * parser (state.c, format sptsm-vse/1). An accepted document must give a
 * card that answers APDUs and whose own encoding reads back again.
 * Trusts nothing in the input.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kms/base.h"
#include "tests/sim/vse/vse.h"
#include "tests/sim/vse/vse_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *probe[] = {
	"00A4040000", "80CA9F7F00", "80CA00E000", "80CAFF2100", "80CA00C100",
	"8050000008010203040506070800", "00A4040007A000000151535000",
};

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct vse *c = NULL, *again = NULL;
	uint8_t apdu[64], r[VSE_RSP_MAX];
	size_t i, n, rl;
	char *json = NULL;

	if (vse_card_from_json(&c, data, size) != 0)
		return 0;
	for (i = 0; i < ARRAY_LEN(probe); i++) {
		if (hex_decode(probe[i], strlen(probe[i]), apdu, sizeof(apdu),
		    &n) != 0 || vse_transmit(c, apdu, n, r, sizeof(r), &rl) != 0)
			abort();
	}
	if (vse_state_encode(c, &json) != 0 ||
	    vse_card_from_json(&again, (const uint8_t *)json,
	    strlen(json)) != 0)
		abort();
	free(json);
	vse_free(again);
	vse_free(c);
	return 0;
}
