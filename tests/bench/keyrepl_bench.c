/*
 * keyrepl_bench.c - `make bench`: initial-key replacements end to end (vSE
 * cards key-synced before the clock starts, concurrent agents over HTTPS),
 * per second, and tsmd + kmsd CPU per card from /proc/<pid>/stat. Env:
 * KEYREPL_BENCH_CARDS (300), _AGENTS (8), _WORKERS (16), _KEEP (keep logs).
 */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <jansson.h>

#include "kms/kms.h"
#include "tests/kmsenv.h"
#include "tests/integration/sei_peer.h"
#include "tests/sim/vse/vse.h"

#define AID "A000000999500001"

static struct kmsenv E;
static struct sp_bench B;
static char addr[64], base[100];
static struct vse **cards;
static int ncards, nagents;
static volatile int next_card;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;

static void __attribute__((noreturn))
die(const char *what)
{
	fprintf(stderr, "keyrepl_bench: %s\n", what);
	exit(1);
}

/* ---- setup: a card with an SSD and its initial keys, key-synced ---------- */

static void
card_setup(CURL *h, int i)
{
	struct sp_keyset ks;
	struct vse_config cfg;
	struct sp_resp r;
	uint8_t aid[8], priv[3] = { 0x80, 0x40, 0x00 };
	char se[40], body[1200], sig[300], nonce[33];
	size_t an;
	int len;

	snprintf(se, sizeof(se), "56530002%08X", (unsigned)i);
	vse_config_init(&cfg);
	cfg.se_id = se;
	if (vse_create(&cards[i], NULL, &cfg) != 0)
		die("vse_create");
	if (hex_decode(AID, strlen(AID), aid, sizeof(aid), &an) != 0 ||
	    vse_test_registry_put(cards[i], 2, aid, an, 0x07, priv, NULL, 0) != 0)
		die("registry");
	if (sp_keyset_new(&ks, 16, kmsenv_kek128, 16, 0) != 0 ||
	    vse_keyset_put(cards[i], aid, an, 0x30, ks.key[0], ks.key[1],
	    ks.key[2], 16) != 0)
		die("keys");
	len = snprintf(body, sizeof(body), "{\"seiTsmId\":\"SEI-BENCH\","
	    "\"SsdAid\":\"" AID "\",\"encryptedKey\":[\"%s\",\"%s\",\"%s\"],"
	    "\"Alg\":\"AES-128\",\"Usage\":\"SCP03\",\"checkValue\":[\"%s\","
	    "\"%s\",\"%s\"],\"seId\":\"%s\"}", ks.wrapped[0], ks.wrapped[1],
	    ks.wrapped[2], ks.kcv[0], ks.kcv[1], ks.kcv[2], se);
	wipe(&ks, sizeof(ks));
	sp_nonce(nonce);
	sp_sign(kmsenv_mac, 32, "bench-mac", SP_KEYSYNC, (long long)wall_seconds(),
	    nonce, body, sig, sizeof(sig));
	if (sp_post(h, base, B.ca, SP_KEYSYNC, body, (size_t)len, sig, &r) != 0 ||
	    r.code != 200)
		die("key sync");
	sp_resp_free(&r);
}

/* ---- the agents ------------------------------------------------------------ */

struct agent {
	pthread_t t;
	CURL     *h;
	int       ok, failed;
	unsigned  requests;
};

static size_t
collect(char *p, size_t sz, size_t n, void *arg)
{
	return buf_put(arg, p, sz * n) == 0 ? sz * n : 0;
}

static json_t *
post(struct agent *a, const char *path, json_t *body)
{
	struct curl_slist *hd = NULL;
	char url[300], *txt = json_dumps(body, JSON_COMPACT);
	struct buf r;
	json_t *out = NULL;

	buf_init(&r);
	snprintf(url, sizeof(url), "%s%s", base, path);
	hd = curl_slist_append(hd, "Content-Type: application/json");
	curl_easy_setopt(a->h, CURLOPT_URL, url);
	curl_easy_setopt(a->h, CURLOPT_POSTFIELDS, txt);
	curl_easy_setopt(a->h, CURLOPT_HTTPHEADER, hd);
	curl_easy_setopt(a->h, CURLOPT_CAINFO, B.ca);
	curl_easy_setopt(a->h, CURLOPT_WRITEFUNCTION, collect);
	curl_easy_setopt(a->h, CURLOPT_WRITEDATA, &r);
	curl_easy_setopt(a->h, CURLOPT_TCP_NODELAY, 1L);
	if (curl_easy_perform(a->h) == CURLE_OK)
		out = json_loadb((const char *)r.p, r.len, 0, NULL);
	a->requests++;
	curl_slist_free_all(hd);
	free(txt);
	buf_free(&r);
	return out;
}

/* One agent session for card i: 1 when its KEY_REPLACE ended DONE. */
static int
session(struct agent *a, int i)
{
	struct vse *c = cards[i];
	uint8_t apdu[300], rsp[VSE_RSP_MAX];
	char path[100], hx[2 * VSE_RSP_MAX + 1];
	json_t *r, *body, *resps, *e, *t;
	size_t k, n, rl;
	int rounds, good = 0;
	uint16_t sw;

	body = json_pack("{s:s}", "seId", vse_se_id(c));
	r = post(a, "/api/v1/agent/sessions", body);
	json_decref(body);
	for (rounds = 0; r != NULL && rounds < 10; rounds++) {
		if (json_integer_value(json_object_get(r, "resultCode")) != 0)
			break;
		if (json_is_true(json_object_get(r, "done"))) {
			json_array_foreach(json_object_get(r, "tasks"), k, t)
				if (strcmp(json_string_value(json_object_get(t, "state")),
				    "DONE") == 0)
					good = 1;
			break;
		}
		resps = json_array();
		json_array_foreach(json_object_get(r, "apduList"), k, e) {
			const char *hs = json_string_value(e);

			if (hs == NULL || hex_decode(hs, strlen(hs), apdu,
			    sizeof(apdu), &n) != 0 ||
			    vse_transmit(c, apdu, n, rsp, sizeof(rsp), &rl) != 0)
				die("card");
			hex_encode_upper(rsp, rl, hx);
			json_array_append_new(resps, json_string(hx));
			sw = (uint16_t)(rsp[rl - 2] << 8 | rsp[rl - 1]);
			if (sw != 0x9000 && (sw >> 8) != 0x61 && (sw >> 8) != 0x62 &&
			    (sw >> 8) != 0x63)
				break;
		}
		snprintf(path, sizeof(path), "/api/v1/agent/sessions/%s",
		    json_string_value(json_object_get(r, "sessionId")));
		body = json_pack("{s:o}", "respList", resps);
		json_decref(r);
		r = post(a, path, body);
		json_decref(body);
	}
	json_decref(r);
	return good;
}

static void *
agent_run(void *arg)
{
	struct agent *a = arg;
	int i;

	for (;;) {
		pthread_mutex_lock(&mu);
		i = next_card < ncards ? next_card++ : -1;
		pthread_mutex_unlock(&mu);
		if (i < 0)
			break;
		if (session(a, i))
			a->ok++;
		else
			a->failed++;
	}
	return NULL;
}

int
main(void)
{
	int workers = testenv_env_int("KEYREPL_BENCH_WORKERS", 16);
	struct agent *ag;
	double t_cpu0, t_cpu1, k_cpu0, k_cpu1, el, rate, per;
	uint64_t t0;
	CURL *h;
	pid_t pid;
	int i, st, ok = 0, failed = 0;
	unsigned req = 0;

	ncards = testenv_env_int("KEYREPL_BENCH_CARDS", 300);
	nagents = testenv_env_int("KEYREPL_BENCH_AGENTS", 8);
	log_init("keyrepl_bench", LOG_ERR);
	curl_global_init(CURL_GLOBAL_DEFAULT);
	if (kmsenv_setup(&E, 0) != 0 || kmsenv_start(&E, NULL) != 0)
		die("kmsd fixture");
	if (sp_bench_config(E.dir, workers, 0, &B) != 0)
		die("config");
	pid = sp_tsmd_start(B.var, B.cfg, E.sock, B.log, "warn", addr,
	    sizeof(addr));
	if (pid < 0)
		die("tsmd did not start");
	snprintf(base, sizeof(base), "https://%s", addr);

	if ((cards = calloc((size_t)ncards, sizeof(*cards))) == NULL ||
	    (ag = calloc((size_t)nagents, sizeof(*ag))) == NULL)
		die("nomem");
	h = curl_easy_init();
	for (i = 0; i < ncards; i++)
		card_setup(h, i);
	curl_easy_cleanup(h);
	for (i = 0; i < nagents; i++)
		ag[i].h = curl_easy_init();

	t_cpu0 = testenv_cpu_ms(pid);
	k_cpu0 = testenv_cpu_ms(E.pid);
	t0 = now_us();
	for (i = 0; i < nagents; i++)
		pthread_create(&ag[i].t, NULL, agent_run, &ag[i]);
	for (i = 0; i < nagents; i++) {
		pthread_join(ag[i].t, NULL);
		ok += ag[i].ok;
		failed += ag[i].failed;
		req += ag[i].requests;
	}
	el = (double)(now_us() - t0) / 1e6;
	t_cpu1 = testenv_cpu_ms(pid);
	k_cpu1 = testenv_cpu_ms(E.pid);
	for (i = 0; i < nagents; i++)
		curl_easy_cleanup(ag[i].h);

	kill(pid, SIGTERM);
	waitpid(pid, &st, 0);
	kmsenv_stop(&E, 0);
	if (getenv("KEYREPL_BENCH_KEEP") == NULL)
		kmsenv_cleanup(&E);
	else
		fprintf(stderr, "keyrepl_bench: kept %s\n", E.dir);
	for (i = 0; i < ncards; i++)
		vse_free(cards[i]);
	free(cards);
	free(ag);
	curl_global_cleanup();

	rate = (double)ok / el;
	per = ok > 0 ? (t_cpu1 - t_cpu0 + k_cpu1 - k_cpu0) / ok : 0;
	printf("initial-key replacement end to end (%d cards, %d agents over "
	    "HTTPS keep-alive, tsmd %d workers; SL 33, durable; one run)\n",
	    ncards, nagents, workers);
	printf("%-44s %10s\n", "measure", "value");
	printf("%-44s %10.1f\n", "key replacements per second", rate);
	printf("%-44s %10.2f\n", "tsmd CPU ms per card", ok ? (t_cpu1 - t_cpu0) /
	    ok : 0);
	printf("%-44s %10.2f\n", "kmsd CPU ms per card", ok ? (k_cpu1 - k_cpu0) /
	    ok : 0);
	printf("%-44s %10.2f\n", "tsmd + kmsd CPU ms per card (goal <= 5)", per);
	printf("%-44s %10.1f\n", "agent requests per card", ok ? (double)req / ok :
	    0);
	printf("  replaced %d, failed %d, %.2f s\n", ok, failed, el);
	printf("RESULT keyrepl_per_s=%.1f cpu_ms_per_card=%.2f tsmd_cpu_ms=%.2f "
	    "kmsd_cpu_ms=%.2f\n", rate, per, ok ? (t_cpu1 - t_cpu0) / ok : 0,
	    ok ? (k_cpu1 - k_cpu0) / ok : 0);
	return failed > 0 ? 1 : 0;
}
