/*
 * fuzz_gp_resp.c - libFuzzer target for the card response parsers of
 * tsm/gp (INITIALIZE UPDATE, GET STATUS TLV/legacy, CPLC, key information,
 * card data, counters, free resources, DM receipts, PUT KEY response).
 * The first byte picks the parser (>= 10: all of them), the second is the
 * GET STATUS P1; the rest is the response data.
 */
#include <stdlib.h>
#include <string.h>

#include "kms/base.h"
#include "tsm/gp/gp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Results the target does not judge go here (the functions are WUR). */
static volatile int sink;

static void
run(int which, uint8_t p1, const uint8_t *p, size_t n)
{
	static const uint8_t p1s[] = { GP_GS_ISD, GP_GS_APPS, GP_GS_ELFS,
	    GP_GS_ELF_MODULES };
	struct gp_err e;
	struct gp_iu_resp iu;
	struct gp_status_list l;
	struct gp_cplc c;
	struct gp_key_info ki[8];
	struct gp_card_data cd;
	struct gp_free_res fr;
	struct gp_put_key_expect pk;
	struct gp_confirmation *conf;
	uint32_t v;
	size_t cnt, i;
	char s[600];

	switch (which) {
	case 0:
		if (gp_iu_resp_parse(p, n, &iu, &e) == 0 && iu.clen != 8 &&
		    iu.clen != 16)
			abort();
		break;
	case 1:
	case 2:
		gp_status_list_init(&l);
		if (gp_status_parse(p, n, p1s[p1 % 4], which == 1, &l, &e) == 0)
			for (i = 0; i < l.n; i++)
				if (l.v[i].aid_len > GP_AID_MAX ||
				    l.v[i].nmodules > GP_STATUS_MAX_MODULES)
					abort();
		/* a continuation on top of what parsed */
		sink = gp_status_parse(p, n, p1s[p1 % 4], which == 1, &l, &e);
		gp_status_list_free(&l);
		break;
	case 3:
		if (gp_cplc_parse(p, n, &c, &e) == 0 &&
		    gp_cplc_format(&c, s, sizeof(s)) != 0)
			abort();
		break;
	case 4:
		sink = gp_key_info_parse(p, n, ki, ARRAY_LEN(ki), &cnt, &e);
		break;
	case 5:
		if ((conf = malloc(sizeof(*conf))) == NULL)
			abort();
		sink = gp_confirmation_parse(p, n, conf, &e);
		free(conf);
		break;
	case 6:
		memset(&pk, 0, sizeof(pk));
		pk.kvn = p1;
		sink = gp_put_key_resp_check(p, n, &pk, &e);
		break;
	case 7:
		sink = gp_card_data_parse(p, n, &cd, &e);
		break;
	case 8:
		sink = gp_counter_parse(p, n, 0xC1, &v, &e);
		sink = gp_counter_parse(p, n, 0xC2, &v, NULL);
		break;
	case 9:
		sink = gp_free_res_parse(p, n, &fr, &e);
		break;
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	int which, i;

	if (size < 2)
		return 0;
	which = data[0];
	if (which >= 10) {
		for (i = 0; i < 10; i++)
			run(i, data[1], data + 2, size - 2);
	} else {
		run(which, data[1], data + 2, size - 2);
	}
	return 0;
}
