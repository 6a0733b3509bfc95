/*
 * seisim_vse_test.c - the SEI-TSM simulator driving a virtual SE: this test
 * plays the device agent (takes apduList, runs each APDU on the vSE with
 * vse_transmit, stops at the first SW not 9000/61xx/62xx/63xx, returns
 * respList) while tsmd's SEI client talks to a real seisim, which talks
 * §9.4/§9.5 to a real tsmd, all keys in a real kmsd. CREATE_SSD (AM and
 * DM), LOCK/UNLOCK/DELETE, a refused command in respList, wrong ISD keys,
 * SCP02, the SSD's keys against the §9.4 KCVs and tsmd's store, a §9.3
 * token accepted by the vSE in a DM DELETE, and `seisim repair --card`.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <jansson.h>

#include "tests/tap.h"
#include "tests/integration/seisim_fixture.h"
#include "tests/integration/seisim_agent.h"
#include "tests/sim/vse/vse.h"
#include "tsm/gp/gp.h"
#include "tsm/sei/client.h"
#include "tsm/store/store.h"

#define SEID  "0011223344556677"
#define AM    "A000000999000011"
#define DM    "A000000999000022"
#define CLASH "A000000999000033"
#define APP   "A000000999000044"

static struct kmsenv E;
static struct kms_client *kc;
static struct fx_sim sim;
static struct tsm_peer peer;
static struct vse *card;
static char card_path[600], material[600], tsm_var[600], tsm_addr[64];
static int keysync_live;	/* tsmd has the §9.4 route */


/* ---- checks on the card ---- */

static struct vse_entry_info
entry(const char *aid, int *found)
{
	struct vse_entry_info e;
	struct buf a;

	buf_init(&a);
	hexb(aid, &a);
	memset(&e, 0, sizeof(e));
	*found = vse_entry_get(card, a.p, a.len, &e) == 0;
	buf_free(&a);
	return e;
}

/* Opens an SCP03 session on the SSD with the keys the simulator sent. */
static int
ssd_session(const char *aid, json_t *keys, struct vse_host **h)
{
	struct buf k[3], a;
	uint8_t sel[32], rsp[VSE_RSP_MAX];
	size_t rl;
	uint16_t sw = 0;
	int i, rc;

	buf_init(&a);
	for (i = 0; i < 3; i++)
		buf_init(&k[i]);
	hexb(json_string_value(json_object_get(keys, "enc")), &k[0]);
	hexb(json_string_value(json_object_get(keys, "mac")), &k[1]);
	hexb(json_string_value(json_object_get(keys, "dek")), &k[2]);
	hexb(aid, &a);
	sel[0] = 0x00; sel[1] = 0xA4; sel[2] = 0x04; sel[3] = 0x00;
	sel[4] = (uint8_t)a.len;
	memcpy(sel + 5, a.p, a.len);
	sel[5 + a.len] = 0;
	rc = vse_transmit(card, sel, 6 + a.len, rsp, sizeof(rsp), &rl);
	if (rc == 0 && (rl < 2 || rsp[rl - 2] != 0x90))
		rc = ERR_SW;
	if (rc == 0 && (rc = vse_host_new(h, k[0].p, k[1].p, k[2].p, 16)) == 0)
		rc = vse_host_open(*h, card, 0, 0x30, 0x03, 0, NULL, &sw);
	buf_free(&a);
	for (i = 0; i < 3; i++)
		buf_free(&k[i]);
	return rc;
}

/* The card's own view: "vse show" lists the SSD's keys by KCV. */
static int
card_shows_kcvs(const char *aid, json_t *kcvs)
{
	char *txt = NULL, *p;
	size_t n = 0, i;
	FILE *f = open_memstream(&txt, &n);
	int good = 1;

	if (f == NULL || vse_print(card, f) != 0)
		bail("vse_print");
	fclose(f);
	p = strstr(txt, aid);
	for (i = 0; p != NULL && i < 3; i++) {
		char want[40];

		snprintf(want, sizeof(want), "KID %02zu AES-128 KCV %s", i + 1,
		    json_string_value(json_array_get(kcvs, i)));
		if (strstr(p, want) == NULL)
			good = 0;
	}
	free(txt);
	return p != NULL && good;
}

/* ---- tsmd's store ---- */

static struct store *
tsm_store(void)
{
	struct store_opts o = { .readonly = 1 };
	struct store *s = NULL;
	char d[700];

	snprintf(d, sizeof(d), "%s/tsm/store", tsm_var);
	return store_open(&s, d, &o) == 0 ? s : NULL;
}

static size_t
discard(char *p, size_t sz, size_t n, void *u)
{
	(void)p;
	(void)u;
	return sz * n;
}

/* 1 when tsmd routes POST /api/v1/sei/key-sync (an unsigned probe gets
 * 401 there, 404 where the route does not exist). */
static int
probe_keysync(void)
{
	CURL *h = curl_easy_init();
	char url[200], ca[700];
	long code = 0;

	snprintf(url, sizeof(url), "https://%s/api/v1/sei/key-sync", tsm_addr);
	snprintf(ca, sizeof(ca), "%s/ca.pem", tsm_var);
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_CAINFO, ca);
	curl_easy_setopt(h, CURLOPT_POSTFIELDS, "{}");
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, discard);
	curl_easy_setopt(h, CURLOPT_TIMEOUT, 10L);
	if (curl_easy_perform(h) == CURLE_OK)
		curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
	curl_easy_cleanup(h);
	return code != 404 && code != 0;
}

/* ---- the tests ---- */

static void
test_create(const char *aid, const char *priv, const char *what)
{
	struct vse_entry_info e;
	struct vse_host *h = NULL;
	struct run r;
	json_t *root = NULL, *ks, *ssd, *keys;
	const char *status;
	int found;

	r = drive(&peer, kc, card, "CREATE_SSD", SEID, aid, priv, "0370");
	ok(r.rc == 0 && r.done && r.exchanges == 3, "%s: CREATE_SSD done in 3 "
	    "exchanges (9.1 + 2x 9.2), task %s (%s)", what, r.task_id, r.message);
	e = entry(aid, &found);
	ok(found && e.kind == 2 && e.lcs == 0x07 && e.nkeysets == 1 &&
	    e.sd_len == 8, "%s: the SSD is on the card, SELECTABLE, one key set, "
	    "under the ISD", what);
	{
		struct buf pb;

		buf_init(&pb);
		hexb(priv, &pb);
		ok(found && memcmp(e.priv, pb.p, 3) == 0, "%s: privileges %s", what,
		    priv);
		buf_free(&pb);
	}
	ks = wait_keysync(&sim, SEID, aid, &root);
	ssd = sim_ssd(root, SEID, aid);
	keys = json_object_get(ssd, "keys");
	ok(ssd != NULL && strcmp(json_string_value(json_object_get(ssd,
	    "state")), "CREATED") == 0 && strcmp(json_string_value(
	    json_object_get(keys, "kvn")), "30") == 0, "%s: simulator state: SSD "
	    "CREATED, keys at KVN 30", what);
	ok(ssd_session(aid, keys, &h) == 0, "%s: an SCP03 session with the SSD "
	    "opens with the keys the simulator put (KVN 30, SL 03)", what);
	vse_host_free(h);
	status = json_string_value(json_object_get(ks, "status"));
	ok(ks != NULL && card_shows_kcvs(aid, json_object_get(ks, "checkValue")),
	    "%s: the card's KCVs are the checkValue sent in 9.4", what);
	if (!keysync_live) {
		skip("%s: 9.4 key sync not served by this tsmd (status %s)", what,
		    status ? status : "none");
		skip("%s: key set in tsmd's store", what);
	} else {
		struct store *ts = tsm_store();
		struct store_keyset k;
		struct store_ssd sd;
		size_t i;
		int same = 1;

		ok(status != NULL && strcmp(status, "OK") == 0 &&
		    json_is_true(json_object_get(ks, "receiptVerified")),
		    "%s: 9.4 accepted by tsmd, receipt verified by the simulator "
		    "(%s)", what, json_string_value(json_object_get(ks, "message")));
		store_keyset_init(&k);
		if (ts != NULL && store_keyset_get(ts, SEID, aid, 0x30, &k) == 0) {
			for (i = 0; i < 3; i++) {
				char h6[7];

				hex_encode_upper(k.keys[i].kcv, 3, h6);
				same &= k.n_keys == 3 && k.keys[i].kcv_len == 3 &&
				    strcasecmp(h6, json_string_value(json_array_get(
				    json_object_get(ks, "checkValue"), i))) == 0;
			}
		} else {
			same = 0;
		}
		ok(same && store_ssd_get(ts, SEID, aid, &sd) == 0,
		    "%s: the key set is in tsmd's store (SEID|AID|30) with the same "
		    "KCVs, SSD record %s", what, same ? sd.state : "-");
		store_keyset_cleanup(&k);
		store_close(ts);
	}
	json_decref(root);
}

static void
test_lock(void)
{
	struct vse_entry_info e;
	struct run r;
	json_t *root;
	int found;

	r = drive(&peer, kc, card, "LOCK_SSD", SEID, AM, NULL, "0370");
	e = entry(AM, &found);
	ok(r.rc == 0 && r.done && found && e.lcs == 0x83, "LOCK_SSD: done, the "
	    "SSD is LOCKED (83) on the card (%s)", r.message);
	root = sim_state(&sim);
	ok(strcmp(json_string_value(json_object_get(sim_ssd(root, SEID, AM),
	    "state")), "LOCKED") == 0, "simulator state: LOCKED");
	json_decref(root);
	r = drive(&peer, kc, card, "LOCK_SSD", SEID, AM, NULL, "0370");
	ok(r.rc == ERR_DENIED && r.result_code == 2001 && strstr(r.message,
	    "6985") != NULL, "LOCK_SSD twice: the card refuses (6985), resultCode "
	    "2001: %s", r.message);
	r = drive(&peer, kc, card, "UNLOCK_SSD", SEID, AM, NULL, "0370");
	e = entry(AM, &found);
	ok(r.rc == 0 && r.done && found && e.lcs == 0x07, "UNLOCK_SSD: back to "
	    "SELECTABLE (07)");
}

static void
test_dm_token(void)
{
	struct sei_call call = { kc, NULL, NULL, NULL, 0 };
	struct sei_result r;
	struct vse_host *h = NULL;
	struct gp_bytes aid;
	struct gp_err e;
	struct buf a, cmd, td, rsp;
	json_t *root;
	const char *raw[1];
	char *tdh;
	int found;
	uint16_t sw;

	buf_init(&a);
	buf_init(&cmd);
	buf_init(&td);
	buf_init(&rsp);
	hexb(APP, &a);
	{
		struct buf dm;
		const uint8_t none[3] = { 0, 0, 0 };

		buf_init(&dm);
		hexb(DM, &dm);
		if (vse_test_registry_put(card, 3, a.p, a.len, 0x07, none, dm.p,
		    dm.len) != 0)
			bail("registry_put");
		buf_free(&dm);
	}
	root = sim_state(&sim);
	if (ssd_session(DM, json_object_get(sim_ssd(root, SEID, DM), "keys"),
	    &h) != 0)
		bail("DM SSD session");
	json_decref(root);
	aid.p = a.p;
	aid.n = a.len;
	gp_err_clear(&e);
	if (gp_delete_build(&aid, 1, 0, NULL, &cmd, &td, &e) != 0)
		bail("delete build: %s", e.msg);
	if (vse_host_transmit(h, card, cmd.p, cmd.len, &rsp) != 0)
		bail("transmit");
	sw = (uint16_t)(rsp.p[rsp.len - 2] << 8 | rsp.p[rsp.len - 1]);
	is_int(sw, 0x6982, "DM SSD: DELETE without a token is refused (6982)");
	tdh = malloc(2 * td.len + 1);
	hex_encode_upper(td.p, td.len, tdh);
	raw[0] = tdh;
	ok(sei_token(&peer, &call, SEID, raw, 1, &r) == 0 && r.tokens.n == 1,
	    "9.3: token for the DELETE's token data (P1 P2 Lc data)");
	if (r.tokens.n == 1) {
		struct buf tok;
		struct gp_bytes tb;

		buf_init(&tok);
		hexb(r.tokens.v[0], &tok);
		tb.p = tok.p;
		tb.n = tok.len;
		tok.p[0] ^= 0x01;
		if (gp_delete_build(&aid, 1, 0, &tb, &cmd, NULL, &e) != 0 ||
		    vse_host_transmit(h, card, cmd.p, cmd.len, &rsp) != 0)
			bail("delete");
		sw = (uint16_t)(rsp.p[rsp.len - 2] << 8 | rsp.p[rsp.len - 1]);
		is_int(sw, 0x6982, "a damaged token is refused by the card (6982)");
		tok.p[0] ^= 0x01;
		if (gp_delete_build(&aid, 1, 0, &tb, &cmd, NULL, &e) != 0 ||
		    vse_host_transmit(h, card, cmd.p, cmd.len, &rsp) != 0)
			bail("delete");
		sw = (uint16_t)(rsp.p[rsp.len - 2] << 8 | rsp.p[rsp.len - 1]);
		is_int(sw, 0x9000, "DELETE with the simulator's token: accepted by "
		    "the vSE (token checked with the ISD's KVN 70 key)");
		ok(rsp.len > 3, "the card answers with a DM receipt (%zu bytes)",
		    rsp.len - 2);
		entry(APP, &found);
		ok(!found, "the application is gone");
		buf_free(&tok);
	} else {
		skip("no token");
		skip("no token");
		skip("no token");
		skip("no token");
	}
	sei_result_cleanup(&r);
	free(tdh);
	vse_host_free(h);
	buf_free(&a);
	buf_free(&cmd);
	buf_free(&td);
	buf_free(&rsp);
}

static void
test_errors(void)
{
	struct vse_entry_info e;
	struct run r;
	struct buf a;
	json_t *root, *t, *v;
	const uint8_t priv[3] = { 0x80, 0x00, 0x00 };
	size_t i;
	int found, failed = 0;

	/* An SSD the simulator does not know is already on the card: the
	 * INSTALL is refused, the agent stops there, the task fails. */
	buf_init(&a);
	hexb(CLASH, &a);
	if (vse_test_registry_put(card, 2, a.p, a.len, 0x07, priv, NULL, 0) != 0)
		bail("registry_put");
	buf_free(&a);
	r = drive(&peer, kc, card, "CREATE_SSD", SEID, CLASH, "804000", "0370");
	ok(r.rc == ERR_DENIED && r.result_code == 2001 &&
	    strstr(r.message, "INSTALL") != NULL && strstr(r.message, "6985") !=
	    NULL, "respList ending in 6985: task ends with resultCode 2001 "
	    "naming the command (%s)", r.message);
	root = sim_state(&sim);
	json_array_foreach(json_object_get(root, "tasks"), i, v)
		if (strcmp(json_string_value(json_object_get(v, "taskId")),
		    r.task_id) == 0)
			t = v, failed = strcmp(json_string_value(json_object_get(t,
			    "state")), "FAILED") == 0 && json_integer_value(
			    json_object_get(t, "resultCode")) == 2001;
	ok(failed, "simulator state: task %s FAILED 2001", r.task_id);
	json_decref(root);

	/* SCP02 is refused before any APDU. */
	r = drive(&peer, kc, card, "CREATE_SSD", SEID, "A000000999000055", "804000",
	    "0255");
	e = entry("A000000999000055", &found);
	ok(r.rc == ERR_DENIED && r.result_code == 1004 && r.exchanges == 1 &&
	    !found, "scpConfig 0255: resultCode 1004 at once, nothing on the "
	    "card (%s)", r.message);
	(void)e;
}

/* A card whose ISD keys are not the demo keys of its seId. */
static void
test_wrong_keys(void)
{
	struct vse_config cfg;
	struct vse *other;
	struct run r;
	uint8_t k[16];

	vse_config_init(&cfg);
	cfg.se_id = "00112233445566AA";
	memset(k, 0x5C, sizeof(k));
	if (vse_create(&other, NULL, &cfg) != 0 ||
	    vse_keyset_put(other, NULL, 0, 0x30, k, k, k, 16) != 0)
		bail("other card");
	r = drive(&peer, kc, other, "CREATE_SSD", "00112233445566AA", AM, "804000", "0370");
	ok(r.rc == ERR_DENIED && r.result_code == 2002, "ISD keys that are not "
	    "the demo keys: card cryptogram refused, resultCode 2002 (%s)",
	    r.message);
	vse_free(other);
}

static void
test_delete(void)
{
	struct run r;
	json_t *root;
	int found;

	r = drive(&peer, kc, card, "DELETE_SSD", SEID, AM, NULL, "0370");
	entry(AM, &found);
	ok(r.rc == 0 && r.done && !found, "DELETE_SSD: done, the SSD is gone "
	    "from the card (%s)", r.message);
	root = sim_state(&sim);
	ok(strcmp(json_string_value(json_object_get(sim_ssd(root, SEID, AM),
	    "state")), "DELETED") == 0, "simulator state: DELETED");
	json_decref(root);
}

static int
run_repair(const char *status)
{
	char tsm_url[128], tsm_ca[700], out[1200];
	const char *argv[20];
	pid_t pid;
	int st;

	snprintf(tsm_url, sizeof(tsm_url), "https://%s", tsm_addr);
	snprintf(tsm_ca, sizeof(tsm_ca), "%s/ca.pem", tsm_var);
	snprintf(out, sizeof(out), "%s/repair.out", sim.var);
	argv[0] = testenv_bin("seisim");
	argv[1] = "repair";
	argv[2] = SEID;
	argv[3] = "--var";
	argv[4] = sim.var;
	argv[5] = "--material";
	argv[6] = material;
	argv[7] = "--tsm-url";
	argv[8] = tsm_url;
	argv[9] = "--tsm-ca";
	argv[10] = tsm_ca;
	argv[11] = "--card";
	argv[12] = card_path;
	argv[13] = "--status";
	argv[14] = status;
	argv[15] = NULL;
	if ((pid = fork()) == 0) {
		fx_child(out);
		execv(argv[0], (char *const *)argv);
		_exit(127);
	}
	waitpid(pid, &st, 0);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void
test_repair(void)
{
	json_t *root, *ssd;
	int found, rc;

	vse_free(card);		/* the file is up to date (autosave) */
	card = NULL;
	rc = run_repair("DELETED");
	if (keysync_live)
		is_int(rc, 0, "seisim repair --card: exit 0 (every 9.5 accepted)");
	else
		skip("seisim repair exit status: 9.5 not served by this tsmd "
		    "(exit %d)", rc);
	if (vse_open(&card, card_path) != 0)
		bail("reopen card");
	entry(DM, &found);
	ok(!found, "repair removed the DM SSD from the card file");
	entry(CLASH, &found);
	ok(found, "an SSD the simulator did not create is left alone");
	root = sim_state(&sim);
	ssd = sim_ssd(root, SEID, DM);
	ok(strcmp(json_string_value(json_object_get(ssd, "state")), "DELETED") ==
	    0 && json_array_size(json_object_get(ssd, "sdStatus")) == 1,
	    "simulator state: DM SSD DELETED, one sdStatus event");
	if (keysync_live) {
		struct store *ts = tsm_store();
		struct store_ssd sd;

		ok(strcmp(json_string_value(json_object_get(json_array_get(
		    json_object_get(ssd, "sdStatus"), 0), "result")), "OK") == 0,
		    "the 9.5 event was accepted");
		/* tsm/flow's state sync: GONE, the reported status kept. */
		ok(ts != NULL && store_ssd_get(ts, SEID, DM, &sd) == 0 &&
		    strcmp(sd.state, "GONE") == 0 &&
		    strcmp(sd.prev_state, "DELETED") == 0,
		    "tsmd's SSD record: GONE (reported DELETED)");
		store_close(ts);
	} else {
		skip("9.5 not served by this tsmd");
		skip("9.5 not served by this tsmd");
	}
	json_decref(root);
	vse_free(card);
	card = NULL;
	rc = run_repair("RESETED");
	is_int(rc, 0, "a second repair: nothing left to report, exit 0");
	if (vse_open(&card, card_path) != 0)
		bail("reopen card");
}

int
main(void)
{
	char tsm_url[128], tsm_ca[700];
	const char *extra[8];
	pid_t tsmd;

	log_init("seisim_vse_test", LOG_ERR);
	if (sei_client_init() != 0)
		bail("curl");
	if (kmsenv_setup(&E, 0) != 0)
		bail("kmsenv_setup");
	if (kmsenv_start(&E, NULL) != 0)
		bail("kmsd did not start (%s)", E.log);
	{
		int krc = kms_connect(&kc, E.sock, "seisim-vse-test");

		if (krc != 0)
			bail("kms_connect: %s (errno %d; kmsd log %s)",
			    err_name(krc), errno, E.log);
	}
	snprintf(material, sizeof(material), "%s/sei-test.json", E.dir);
	fx_material(material, "AES-KW", "GP", "");

	/* tsmd first (it does not call the SEI here), then the simulator
	 * pointed at it. */
	tsmd = fx_tsmd_start(E.dir, E.sock, "https://127.0.0.1:9", "/dev/null",
	    "AES-KW", "GP", "peer/test/kek", tsm_var, sizeof(tsm_var), tsm_addr,
	    sizeof(tsm_addr));
	snprintf(tsm_url, sizeof(tsm_url), "https://%s", tsm_addr);
	snprintf(tsm_ca, sizeof(tsm_ca), "%s/ca.pem", tsm_var);
	extra[0] = "--tsm-url";
	extra[1] = tsm_url;
	extra[2] = "--tsm-ca";
	extra[3] = tsm_ca;
	extra[4] = NULL;
	fx_sim_start(&sim, E.dir, "sim", material, extra);
	fx_peer(&peer, &sim);

	snprintf(card_path, sizeof(card_path), "%s/card.json", E.dir);
	card = demo_card(card_path, SEID);

	/* §9.4/§9.5 are written alongside (tsm/sei): probe for the route. */
	keysync_live = probe_keysync();
	if (!keysync_live)
		diag("tsmd at %s has no /api/v1/sei/key-sync: 9.4/9.5 checks are "
		    "skipped", tsm_addr);

	test_create(AM, "804000", "AM SSD");
	test_lock();
	test_create(DM, "A00000", "DM SSD");
	test_dm_token();
	test_errors();
	test_wrong_keys();
	test_delete();
	test_repair();

	vse_free(card);
	is_int(fx_sim_stop(&sim), 0, "seisim: SIGTERM, exit 0");
	kill(tsmd, SIGTERM);
	waitpid(tsmd, NULL, 0);
	kms_close(kc);
	kmsenv_stop(&E, 0);
	if (tap_failed == 0)
		kmsenv_cleanup(&E);
	else
		diag("kept %s", E.dir);
	sei_client_cleanup();
	return done_testing();
}
