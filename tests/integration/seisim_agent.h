/*
 * seisim_agent.h - the device-agent half of the seisim tests: runs an
 * apduList on a virtual SE the way ARCHITECTURE.md's agent does (in order,
 * stopping after the first SW other than 9000/61xx/62xx/63xx), drives a
 * §9.1 operation through §9.2 until the SEI-TSM says done, and reads the
 * simulator's state file. Header-only; include after seisim_fixture.h.
 */
#ifndef SPTSM_SEISIM_AGENT_H
#define SPTSM_SEISIM_AGENT_H

#include <strings.h>

#include <jansson.h>

#include "tests/sim/vse/vse.h"
#include "tsm/sei/client.h"

static void __attribute__((unused))
hexb(const char *h, struct buf *b)
{
	buf_reset(b);
	if (h == NULL || hex_decode_buf(h, b) != 0)
		bail("hex %s", h ? h : "(null)");
}

static int
ag_sw_goes_on(uint16_t sw)
{
	uint8_t s1 = (uint8_t)(sw >> 8);

	return sw == 0x9000 || s1 == 0x61 || s1 == 0x62 || s1 == 0x63;
}

/* Runs the batch on the card; *out gets the responses (hex), *n their
 * count. */
static void
agent(struct vse *c, const struct sei_list *apdus, char ***out, size_t *n)
{
	uint8_t rsp[VSE_RSP_MAX];
	struct buf a;
	size_t i, rl;
	uint16_t sw;

	buf_init(&a);
	if ((*out = calloc(apdus->n + 1, sizeof(**out))) == NULL)
		bail("nomem");
	*n = 0;
	for (i = 0; i < apdus->n; i++) {
		hexb(apdus->v[i], &a);
		if (vse_transmit(c, a.p, a.len, rsp, sizeof(rsp), &rl) != 0 || rl < 2)
			bail("vse_transmit");
		if (((*out)[i] = malloc(2 * rl + 1)) == NULL)
			bail("nomem");
		hex_encode_upper(rsp, rl, (*out)[i]);
		*n = i + 1;
		sw = (uint16_t)(rsp[rl - 2] << 8 | rsp[rl - 1]);
		if (!ag_sw_goes_on(sw))
			break;
	}
	buf_free(&a);
}

static void
ag_strs_free(char **v, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

struct run {
	int   rc;
	long  result_code;
	char  message[400];
	char  task_id[65];
	int   exchanges;
	int   done;
};

/* §9.1, then §9.2 with the agent's responses until the SEI says done. */
static struct run __attribute__((unused))
drive(const struct tsm_peer *peer, struct kms_client *kc, struct vse *c,
    const char *op, const char *se, const char *aid, const char *priv,
    const char *scp)
{
	struct sei_call call = { kc, NULL, NULL, NULL, 0 };
	struct sei_result r;
	struct run out;
	char **resp;
	size_t n;

	memset(&out, 0, sizeof(out));
	out.rc = sei_ssd_manage(peer, &call, op, se, aid, priv, scp, &r);
	out.exchanges = 1;
	while (out.rc == 0 && !r.done && out.exchanges < 10) {
		snprintf(out.task_id, sizeof(out.task_id), "%s", r.task_id);
		agent(c, &r.apdus, &resp, &n);
		sei_result_cleanup(&r);
		out.rc = sei_ssd_instructions(peer, &call, out.task_id, se,
		    (const char *const *)resp, n, &r);
		ag_strs_free(resp, n);
		out.exchanges++;
	}
	out.result_code = r.result_code;
	out.done = r.done;
	snprintf(out.message, sizeof(out.message), "%s", r.result_message[0] ?
	    r.result_message : r.error);
	if (r.task_id[0])
		snprintf(out.task_id, sizeof(out.task_id), "%s", r.task_id);
	sei_result_cleanup(&r);
	return out;
}

/* The simulator's state file (NULL if unreadable). */
static json_t *
sim_state(const struct fx_sim *s)
{
	char p[1200];

	snprintf(p, sizeof(p), "%s/seisim/state.json", s->var);
	return json_load_file(p, 0, NULL);
}

static json_t *
sim_ssd(json_t *st, const char *se, const char *aid)
{
	const char *a, *b;
	json_t *v;
	size_t i;

	json_array_foreach(json_object_get(st, "ssds"), i, v) {
		a = json_string_value(json_object_get(v, "seId"));
		b = json_string_value(json_object_get(v, "sdAid"));
		if (a != NULL && b != NULL && strcasecmp(a, se) == 0 &&
		    strcasecmp(b, aid) == 0)
			return v;
	}
	return NULL;
}

/* Waits (10 s at most) until the simulator recorded the outcome of the
 * SSD's §9.4; *root holds the state the result points into. */
static __attribute__((unused)) json_t *
wait_keysync(const struct fx_sim *s, const char *se, const char *aid,
    json_t **root)
{
	const char *st;
	json_t *ks;
	int i;

	for (i = 0; i < 200; i++) {
		*root = sim_state(s);
		ks = json_object_get(sim_ssd(*root, se, aid), "keySync");
		st = json_string_value(json_object_get(ks, "status"));
		if (st != NULL && strcmp(st, "PENDING") != 0)
			return ks;
		json_decref(*root);
		*root = NULL;
		usleep(50000);
	}
	return NULL;
}

/* A file-backed demo vSE (DEMO ISD keys of se_id). */
static struct vse * __attribute__((unused))
demo_card(const char *path, const char *se_id)
{
	struct vse_config cfg;
	struct vse *c = NULL;

	vse_config_init(&cfg);
	cfg.se_id = se_id;
	if (vse_create(&c, path, &cfg) != 0 || vse_demo_provision(c) != 0 ||
	    vse_save(c) != 0)
		bail("card %s", path);
	return c;
}

#endif
