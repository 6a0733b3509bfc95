/*
 * token.c - §9.3 token request: signs each rawData element (the DM token
 * data P1 | P2 | Lc | data the SP-TSM assembled, gpref §6) with the DEMO
 * DM token key, RSASSA-PSS SHA-256 / MGF1-SHA-256 / salt 32 as GP requires
 * for RSA above 1024 bits. The simulator signs whatever a peer with the
 * right tenantId and MAC sends: it is not an issuer's policy engine.
 * Runs in seisim; the request is outside input.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/sim/seisim/seisim.h"

#define RAW_MAX_ITEMS 64
#define RAW_MAX_BYTES (65535 + 5)	/* P1 P2 00 hh ll + extended data */

static void
fail(struct seisim_answer *a, const char *se_id, int rc, const char *msg)
{
	a->status = 200;
	a->body = json_pack("{s:i, s:s, s:s, s:[]}", "resultCode", rc,
	    "resultMessage", msg, "seId", se_id ? se_id : "", "token");
	log_msg(LOG_INFO, "event=token_refused result=%d message=\"%s\"", rc, msg);
}

void
seisim_token(struct seisim *s, json_t *b, struct seisim_answer *a)
{
	const char *tenant = json_string_value(json_object_get(b, "tenantId"));
	const char *op = json_string_value(json_object_get(b, "optType"));
	const char *se = json_string_value(json_object_get(b, "seId"));
	json_t *raw = json_object_get(b, "rawData"), *v, *tokens = NULL;
	struct seisim_state st;
	struct buf d;
	uint8_t sig[512], seb[64];
	char hx[1025], msg[200];
	size_t i, sl, n;

	buf_init(&d);
	if (tenant == NULL || op == NULL || se == NULL) {
		snprintf(msg, sizeof(msg), "missing or non-string field: %s",
		    tenant == NULL ? "tenantId" : op == NULL ? "optType" : "seId");
		fail(a, se, SEISIM_RC_BAD_REQUEST, msg);
		goto out;
	}
	if (strcmp(tenant, s->m.tenant_id) != 0) {
		fail(a, se, SEISIM_RC_TENANT, "unknown tenantId");
		goto out;
	}
	if (strcmp(op, "CREATE_TOKEN") != 0) {
		fail(a, se, SEISIM_RC_OPTTYPE, "unsupported optType (CREATE_TOKEN)");
		goto out;
	}
	if (seisim_hex(se, seb, sizeof(seb), &n) != 0 || n < 4) {
		fail(a, se, SEISIM_RC_BAD_REQUEST, "seId: hex of 4..64 bytes");
		goto out;
	}
	if (!json_is_array(raw) || json_array_size(raw) == 0 ||
	    json_array_size(raw) > RAW_MAX_ITEMS) {
		fail(a, se, SEISIM_RC_BAD_REQUEST, "rawData: a list of 1..64 hex "
		    "strings");
		goto out;
	}
	if (s->token_key == NULL) {
		fail(a, se, SEISIM_RC_FAIL, "no DM token key loaded");
		goto out;
	}
	tokens = json_array();
	json_array_foreach(raw, i, v) {
		const char *h = json_string_value(v);

		buf_reset(&d);
		/* at least P1 P2 Lc (gpref §6) */
		if (h == NULL || strlen(h) > 2 * RAW_MAX_BYTES ||
		    hex_decode_buf(h, &d) != 0 || d.len < 3) {
			snprintf(msg, sizeof(msg), "rawData[%zu]: hex of P1 P2 Lc data",
			    i);
			fail(a, se, SEISIM_RC_BAD_REQUEST, msg);
			goto out;
		}
		if (seisim_token_sign(s->token_key, d.p, d.len, sig, sizeof(sig),
		    &sl) != 0) {
			fail(a, se, SEISIM_RC_FAIL, "signing failed");
			goto out;
		}
		seisim_hexu(sig, sl, hx);
		json_array_append_new(tokens, json_string(hx));
	}
	a->status = 200;
	a->body = json_pack("{s:i, s:s, s:s, s:o}", "resultCode", 0,
	    "resultMessage", "OK", "seId", se, "token", tokens);
	tokens = NULL;
	log_msg(LOG_INFO, "event=token_issued seId=%s count=%zu", se,
	    json_array_size(raw));
	pthread_mutex_lock(&s->lock);
	if (seisim_state_open(&st, s->dir, s->m.sei_tsm_id) == 0) {
		json_t *t = json_object_get(st.root, "tokens");

		if (!json_is_object(t)) {
			t = json_object();
			json_object_set_new(st.root, "tokens", t);
		}
		json_object_set_new(t, "issued", json_integer(json_integer_value(
		    json_object_get(t, "issued")) + (json_int_t)json_array_size(raw)));
		json_object_set_new(t, "last", json_integer(wall_seconds()));
		if (seisim_state_commit(&st) != 0)
			log_msg(LOG_ERR, "event=state_write_failed");
		seisim_state_close(&st);
	}
	pthread_mutex_unlock(&s->lock);
out:
	json_decref(tokens);
	buf_free(&d);
}
