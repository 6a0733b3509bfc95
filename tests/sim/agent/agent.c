/*
 * agent.c - the device agent simulator: the SP-Agent of a phone, bridging
 * tsmd's agent API (ARCHITECTURE.md "External contracts") to a virtual SE
 * card file. It opens a session for the card's seId, runs each APDU batch
 * on the card in order, stops after the first status word that is not
 * 9000/61xx/62xx/63xx, returns the responses, and repeats until tsmd says
 * done; every exchange is printed. Trusts nothing tsmd sends (hex checked).
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>

#include "kms/base.h"
#include "tests/sim/vse/vse.h"

#define MAX_ROUNDS 500

struct agent {
	const char *tsm;
	const char *ca;
	const char *card_path;
	const char *se_id;
	int         quiet;
	int         json;
	long        timeout_s;
	struct vse *card;
	CURL       *curl;
	unsigned    apdus;
	unsigned    rounds;
};

static size_t
collect(char *p, size_t sz, size_t n, void *arg)
{
	return buf_put(arg, p, sz * n) == 0 ? sz * n : 0;
}

/* POSTs body to url; *out gets the parsed JSON answer. */
static int
post(struct agent *a, const char *url, json_t *body, json_t **out)
{
	struct curl_slist *h = NULL;
	struct buf resp;
	json_error_t je;
	char *text = json_dumps(body, JSON_COMPACT);
	long status = 0;
	CURLcode cc;

	*out = NULL;
	if (text == NULL)
		return ERR_NOMEM;
	buf_init(&resp);
	h = curl_slist_append(h, "Content-Type: application/json");
	curl_easy_reset(a->curl);
	curl_easy_setopt(a->curl, CURLOPT_URL, url);
	curl_easy_setopt(a->curl, CURLOPT_POSTFIELDS, text);
	curl_easy_setopt(a->curl, CURLOPT_HTTPHEADER, h);
	curl_easy_setopt(a->curl, CURLOPT_WRITEFUNCTION, collect);
	curl_easy_setopt(a->curl, CURLOPT_WRITEDATA, &resp);
	curl_easy_setopt(a->curl, CURLOPT_TIMEOUT, a->timeout_s);
	curl_easy_setopt(a->curl, CURLOPT_NOSIGNAL, 1L);
	if (a->ca != NULL)
		curl_easy_setopt(a->curl, CURLOPT_CAINFO, a->ca);
	cc = curl_easy_perform(a->curl);
	curl_easy_getinfo(a->curl, CURLINFO_RESPONSE_CODE, &status);
	curl_slist_free_all(h);
	free(text);
	if (cc != CURLE_OK) {
		fprintf(stderr, "agent: %s: %s\n", url, curl_easy_strerror(cc));
		buf_free(&resp);
		return ERR_IO;
	}
	*out = json_loadb((const char *)resp.p, resp.len, 0, &je);
	buf_free(&resp);
	if (*out == NULL) {
		fprintf(stderr, "agent: %s: HTTP %ld, not JSON\n", url, status);
		return ERR_PROTO;
	}
	return 0;
}

static int
processed(uint16_t sw)
{
	uint8_t s1 = (uint8_t)(sw >> 8);

	return sw == 0x9000 || s1 == 0x61 || s1 == 0x62 || s1 == 0x63;
}

/* Runs apduList on the card; fills respList. */
static int
run_batch(struct agent *a, json_t *list, json_t *resps)
{
	uint8_t apdu[65544], rsp[VSE_RSP_MAX];
	char hex[2 * VSE_RSP_MAX + 1];
	size_t i, n, rl;
	json_t *e;
	int rc;

	json_array_foreach(list, i, e) {
		const char *h = json_string_value(e);
		uint16_t sw;

		if (h == NULL || hex_decode(h, strlen(h), apdu, sizeof(apdu), &n) != 0 ||
		    n < 4) {
			fprintf(stderr, "agent: apduList[%zu] is not an APDU in hex\n", i);
			return ERR_PARSE;
		}
		if ((rc = vse_transmit(a->card, apdu, n, rsp, sizeof(rsp), &rl)) != 0 ||
		    rl < 2) {
			fprintf(stderr, "agent: the card failed: %s\n", err_str(rc));
			return rc ? rc : ERR_IO;
		}
		a->apdus++;
		hex_encode_upper(rsp, rl, hex);
		if (!a->quiet)
			printf("  -> %s\n  <- %s\n", h, hex);
		json_array_append_new(resps, json_string(hex));
		sw = (uint16_t)((rsp[rl - 2] << 8) | rsp[rl - 1]);
		if (!processed(sw)) {
			if (!a->quiet)
				printf("  (stopped: %s)\n", vse_sw_str(sw));
			break;
		}
	}
	return 0;
}

static void
print_outcome(json_t *r)
{
	json_t *tasks = json_object_get(r, "tasks"), *t;
	size_t i;

	json_array_foreach(tasks, i, t)
		printf("  task %s %s: %s%s%s\n",
		    json_string_value(json_object_get(t, "taskId")) ?
		    json_string_value(json_object_get(t, "taskId")) : "?",
		    json_string_value(json_object_get(t, "kind")) ?
		    json_string_value(json_object_get(t, "kind")) : "",
		    json_string_value(json_object_get(t, "state")) ?
		    json_string_value(json_object_get(t, "state")) : "?",
		    json_string_value(json_object_get(t, "error")) ? " - " : "",
		    json_string_value(json_object_get(t, "error")) ?
		    json_string_value(json_object_get(t, "error")) : "");
}

/* One agent session, start to done. */
static int
session(struct agent *a)
{
	char url[1024], sid[128];
	json_t *body, *r = NULL, *resps;
	int done = 0, rc = 0;

	snprintf(url, sizeof(url), "%s/api/v1/agent/sessions", a->tsm);
	body = json_pack("{s:s}", "seId", a->se_id);
	rc = post(a, url, body, &r);
	json_decref(body);
	if (rc != 0)
		return rc;
	for (a->rounds = 0; a->rounds < MAX_ROUNDS; a->rounds++) {
		json_t *code = json_object_get(r, "resultCode");
		const char *s = json_string_value(json_object_get(r, "sessionId"));

		if (!json_is_integer(code) || json_integer_value(code) != 0) {
			fprintf(stderr, "agent: tsmd refused: resultCode %lld %s\n",
			    (long long)json_integer_value(code),
			    json_string_value(json_object_get(r, "resultMessage")) ?
			    json_string_value(json_object_get(r, "resultMessage")) : "");
			rc = ERR_WRONGSTATE;
			break;
		}
		if (s != NULL)
			snprintf(sid, sizeof(sid), "%s", s);
		done = json_is_true(json_object_get(r, "done"));
		if (done) {
			if (!a->quiet)
				print_outcome(r);
			break;
		}
		if (!a->quiet)
			printf("session %s, batch %u (%zu APDUs)\n", sid, a->rounds + 1,
			    json_array_size(json_object_get(r, "apduList")));
		resps = json_array();
		if ((rc = run_batch(a, json_object_get(r, "apduList"), resps)) != 0) {
			json_decref(resps);
			break;
		}
		snprintf(url, sizeof(url), "%s/api/v1/agent/sessions/%s", a->tsm, sid);
		body = json_pack("{s:o}", "respList", resps);
		json_decref(r);
		r = NULL;
		rc = post(a, url, body, &r);
		json_decref(body);
		if (rc != 0)
			break;
	}
	if (rc == 0 && !done) {
		fprintf(stderr, "agent: no end after %d rounds\n", MAX_ROUNDS);
		rc = ERR_LIMIT;
	}
	if (rc == 0 && a->json) {
		char *t = json_dumps(r, JSON_COMPACT);

		printf("%s\n", t ? t : "{}");
		free(t);
	}
	json_decref(r);
	return rc;
}

static void
usage(FILE *f)
{
	fprintf(f,
	    "usage: agent --card FILE [--tsm URL] [--ca FILE] [--se-id ID]\n"
	    "             [--quiet] [--json] [--timeout SEC]\n"
	    "The device agent simulator: runs one agent session of tsmd for the\n"
	    "virtual SE in FILE (seId from the card unless --se-id), executing each\n"
	    "APDU batch on the card and printing every exchange, until tsmd answers\n"
	    "done (then each task's outcome). The card file is saved as it changes.\n"
	    "  --tsm URL    tsmd base URL (default https://127.0.0.1:8443)\n"
	    "  --ca FILE    CA certificate to trust (default ./var/ca.pem)\n"
	    "Exit status: 0 session done, 1 error.\n");
}

int
main(int argc, char **argv)
{
	static const struct option o[] = {
		{ "card", required_argument, NULL, 'c' },
		{ "tsm", required_argument, NULL, 't' },
		{ "ca", required_argument, NULL, 'a' },
		{ "se-id", required_argument, NULL, 's' },
		{ "quiet", no_argument, NULL, 'q' },
		{ "json", no_argument, NULL, 'j' },
		{ "timeout", required_argument, NULL, 'T' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 } };
	struct agent a;
	int opt, rc;

	memset(&a, 0, sizeof(a));
	a.tsm = "https://127.0.0.1:8443";
	a.ca = "./var/ca.pem";
	a.timeout_s = 60;
	while ((opt = getopt_long(argc, argv, "h", o, NULL)) != -1) {
		switch (opt) {
		case 'c': a.card_path = optarg; break;
		case 't': a.tsm = optarg; break;
		case 'a': a.ca = optarg; break;
		case 's': a.se_id = optarg; break;
		case 'q': a.quiet = 1; break;
		case 'j': a.json = 1; break;
		case 'T': a.timeout_s = atol(optarg); break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (a.card_path == NULL) {
		usage(stderr);
		return 2;
	}
	if (access(a.ca, R_OK) != 0)
		a.ca = NULL;	/* plain HTTP (tests) or the system store */
	if ((rc = vse_open(&a.card, a.card_path)) != 0) {
		fprintf(stderr, "agent: cannot open card %s: %s\n", a.card_path,
		    err_str(rc));
		return 1;
	}
	if (a.se_id == NULL)
		a.se_id = vse_se_id(a.card);
	curl_global_init(CURL_GLOBAL_DEFAULT);
	a.curl = curl_easy_init();
	if (!a.quiet)
		printf("agent: card %s, seId %s, tsmd %s\n", a.card_path, a.se_id,
		    a.tsm);
	rc = session(&a);
	if (!a.quiet)
		printf("agent: %s after %u APDUs in %u batches\n", rc ? "FAILED" :
		    "done", a.apdus, a.rounds);
	curl_easy_cleanup(a.curl);
	curl_global_cleanup();
	vse_free(a.card);
	return rc ? 1 : 0;
}
