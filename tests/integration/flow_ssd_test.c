/*
 * flow_ssd_test.c - the SSD life cycle end to end (kmsd, tsmd, seisim; the
 * test is the agent on a vSE): create, key sync, replacement (random,
 * diversified, from a master set), rotate, lock, unlock, delete with acks,
 * repair with a signed webhook, re-creation; card, simulator, store agree.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/tap.h"
#include "tests/integration/flow_fixture.h"
#include "tests/integration/sei_peer.h"

#define SEID "0011223344556677"
#define AID1 "A000000999100001"	/* AMSD, random keys */
#define AID2 "A000000999100002"	/* DMSD, diversified keys */
#define AID3 "A000000999100003"	/* repaired, then created again */
#define AID4 "A000000999100004"	/* initial keys from a master set */

static struct ff F;
static struct vse *card;
static char card_path[700];

/* ---- a webhook receiver: plain HTTP on loopback, one thread --------------- */

struct hook {
	int      fd;
	uint16_t port;
	int      fail_first;	/* answer 500 to the first N requests */
	int      seen;
	char     sig[300];	/* X-TSM-Signature of the last request */
	char     path[100];
	char     body[4000];
	pthread_mutex_t mu;
};
static struct hook H;

static void *
hook_main(void *arg)
{
	struct hook *h = arg;
	char req[16384], *p, *b;
	ssize_t n, got;
	int c, status;
	size_t clen;

	for (;;) {
		if ((c = accept(h->fd, NULL, NULL)) < 0)
			return NULL;
		got = 0;
		clen = 0;
		b = NULL;
		while (got < (ssize_t)sizeof(req) - 1 &&
		    (n = read(c, req + got, sizeof(req) - 1 - (size_t)got)) > 0) {
			got += n;
			req[got] = '\0';
			if (b == NULL && (b = strstr(req, "\r\n\r\n")) != NULL) {
				b += 4;
				p = strcasestr(req, "Content-Length:");
				clen = p ? strtoul(p + 15, NULL, 10) : 0;
			}
			if (b != NULL && (size_t)(req + got - b) >= clen)
				break;
		}
		pthread_mutex_lock(&h->mu);
		h->seen++;
		status = h->seen <= h->fail_first ? 500 : 200;
		if ((p = strcasestr(req, "X-TSM-Signature: ")) != NULL)
			sscanf(p + 17, "%299[^\r\n]", h->sig);
		sscanf(req, "POST %99s", h->path);
		if (b != NULL)
			snprintf(h->body, sizeof(h->body), "%.*s", (int)clen, b);
		pthread_mutex_unlock(&h->mu);
		snprintf(req, sizeof(req), "HTTP/1.1 %d X\r\nContent-Length: 0\r\n"
		    "Connection: close\r\n\r\n", status);
		if (write(c, req, strlen(req)) < 0)
			diag("hook write");
		close(c);
	}
}

static void
hook_start(struct hook *h)
{
	struct sockaddr_in a;
	socklen_t l = sizeof(a);
	pthread_t t;

	memset(&a, 0, sizeof(a));
	a.sin_family = AF_INET;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	pthread_mutex_init(&h->mu, NULL);
	if ((h->fd = socket(AF_INET, SOCK_STREAM, 0)) < 0 ||
	    bind(h->fd, (struct sockaddr *)&a, sizeof(a)) != 0 ||
	    listen(h->fd, 8) != 0 ||
	    getsockname(h->fd, (struct sockaddr *)&a, &l) != 0)
		bail("hook socket");
	h->port = ntohs(a.sin_port);
	if (pthread_create(&t, NULL, hook_main, h) != 0)
		bail("hook thread");
	pthread_detach(t);
}

/* The signature of the last webhook request, recomputed with the test MAC
 * key (notify.macKey is peer/test/mac in this test). */
static int
hook_sig_ok(struct hook *h)
{
	char keyid[70], nonce[40], sig[70], in[6000], hx[65], bh[65];
	unsigned char md[32], mac[32];
	unsigned int ml = 32;
	long long ts;
	int good;

	pthread_mutex_lock(&h->mu);
	good = sscanf(h->sig, "keyId=%69[^,],ts=%lld,nonce=%39[^,],sig=%69s", keyid,
	    &ts, nonce, sig) == 4 && strcmp(keyid, "test-notify") == 0;
	if (good) {
		EVP_Digest(h->body, strlen(h->body), md, NULL, EVP_sha256(), NULL);
		hex_encode(md, 32, bh);
		snprintf(in, sizeof(in), "POST\n%s\n%lld\n%s\n%s", h->path, ts,
		    nonce, bh);
		HMAC(EVP_sha256(), kmsenv_mac, 32, (unsigned char *)in, strlen(in),
		    mac, &ml);
		hex_encode(mac, 32, hx);
		good = strcmp(hx, sig) == 0 && llabs(ts - wall_seconds()) < 300;
	}
	pthread_mutex_unlock(&h->mu);
	return good;
}

/* ---- helpers ------------------------------------------------------------------- */

static long
post(const char *path, const char *body, json_t **out)
{
	return ff_http(&F, "POST", path, body, F.admin, out);
}

static int
task_outcome(struct ff_sess *s, const char *kind, const char *state)
{
	json_t *t;
	size_t i;

	json_array_foreach(s->tasks, i, t)
		if (strcmp(js(t, "kind"), kind) == 0 &&
		    strcmp(js(t, "state"), state) == 0)
			return 1;
	return 0;
}

static const char *
sim_ssd_state(const char *aid, char *buf, size_t cap)
{
	json_t *root = sim_state(&F.sim);

	snprintf(buf, cap, "%s", js(sim_ssd(root, SEID, aid), "state"));
	json_decref(root);
	return buf;
}

static int
card_has(const char *aid, struct vse_entry_info *e)
{
	struct buf a;
	int found;

	buf_init(&a);
	hexb(aid, &a);
	found = vse_entry_get(card, a.p, a.len, e) == 0;
	buf_free(&a);
	return found;
}

static int
flow_like_exists(const char *state)
{
	return strcmp(state, "CREATED") == 0 || strcmp(state, "KEYS_RECEIVED") ==
	    0 || strcmp(state, "PERSONALIZED") == 0 || strcmp(state, "LOCKED") == 0;
}

/*
 * The card, the SEI simulator and tsmd's store agree about the SSD: an SSD
 * tsmd says is on the card is there (locked or not), holds exactly the
 * active key version, and that set opens it; the simulator has it CREATED
 * or LOCKED; an SSD tsmd says is gone is on neither.
 */
static void
agree(const char *aid, const char *what)
{
	struct store_ssd r;
	struct vse_entry_info e;
	uint8_t kv[8], which;
	char ss[40];
	int on_card, n, opening;

	memset(&e, 0, sizeof(e));
	if (ff_ssd(&F, SEID, aid, &r) != 0) {
		ok(0, "%s: agree: no record", what);
		return;
	}
	on_card = card_has(aid, &e);
	sim_ssd_state(aid, ss, sizeof(ss));
	if (flow_like_exists(r.state)) {
		n = ff_card_kvns(card, aid, kv, 8);
		opening = strcmp(r.state, "LOCKED") == 0 ? -1 :
		    ff_count_opening(&F, card, SEID, aid, &which);
		ok(on_card && n == 1 && kv[0] == r.kvn_active && r.kvn_pending == 0 &&
		    (opening == -1 || (opening == 1 && which == r.kvn_active)) &&
		    (strcmp(ss, "CREATED") == 0 || strcmp(ss, "LOCKED") == 0),
		    "%s: agree: card has %s with KVN %02X only (%d), it opens with "
		    "that stored set (%d), tsmd %s, simulator %s", what, aid,
		    r.kvn_active, n, opening, r.state, ss);
	} else {
		ok(!on_card && (strcmp(r.state, "GONE") == 0 ||
		    strcmp(r.state, "DELETED") == 0) && r.kvn_active == 0 &&
		    (strcmp(ss, "DELETED") == 0 || strcmp(ss, "RESETED") == 0),
		    "%s: agree: %s gone from the card, tsmd %s, simulator %s", what,
		    aid, r.state, ss);
	}
	ok(ff_store_problems(&F) == 0, "%s: tsmctl store check: clean", what);
}

/* ---- scenarios --------------------------------------------------------------- */

static void
test_nothing_pending(void)
{
	struct ff_sess s = ff_session(&F, card, NULL);

	ok(s.http == 200 && s.code == 0 && s.done && s.batches == 0 &&
	    json_array_size(s.tasks) == 0, "a session for an SE with nothing "
	    "pending: done at once, no tasks");
	ff_sess_clear(&s);
}

/* Create, key sync, replacement; returns the create task's id. */
static void
create_and_replace(const char *aid, const char *mode, const char *what)
{
	struct ff_sess s;
	struct store_ssd r;
	json_t *o = NULL;
	char body[200], path[200], st[32], tid[80];
	long code;

	snprintf(path, sizeof(path), "/api/v1/ses/%s/ssds", SEID);
	snprintf(body, sizeof(body), "{\"sdAid\":\"%s\",\"mode\":\"%s\"}", aid,
	    mode);
	code = post(path, body, &o);
	snprintf(tid, sizeof(tid), "%s", js(o, "taskId"));
	ok(code == 202 && tid[0] == 'T', "%s: POST ssds -> 202, task %s", what,
	    tid);
	json_decref(o);
	ok(strcmp(ff_task_state(&F, tid, st, sizeof(st)), "PENDING") == 0,
	    "%s: the task is PENDING until the SE's next session", what);
	ok(ff_ssd(&F, SEID, aid, &r) == 0 && strcmp(r.state, "CREATING") == 0,
	    "%s: SSD record CREATING", what);

	s = ff_session(&F, card, NULL);
	ok(s.done && s.code == 0 && s.batches == 3 &&
	    task_outcome(&s, "SSD_CREATE", "DONE"), "%s: session 1: probe + 2 "
	    "SEI batches, SSD_CREATE DONE (batches %d, %s)", what, s.batches,
	    s.msg);
	ff_sess_clear(&s);
	ok(ff_wait_state(&F, SEID, aid, "KEYS_RECEIVED") && ff_ssd(&F, SEID,
	    aid, &r) == 0 && r.kvn_pending == 0x30 && r.kvn_active == 0,
	    "%s: the SEI's key sync arrived: KEYS_RECEIVED, initial keys KVN 30",
	    what);

	s = ff_session(&F, card, NULL);
	ok(s.done && s.code == 0 && s.batches == 3 &&
	    task_outcome(&s, "KEY_REPLACE", "DONE"), "%s: session 2: KEY_REPLACE "
	    "DONE in 3 batches (open, put key, verify) (%d, %s)", what, s.batches,
	    s.msg);
	ff_sess_clear(&s);
	ok(ff_ssd(&F, SEID, aid, &r) == 0 && strcmp(r.state, "PERSONALIZED") == 0 &&
	    r.kvn_active == 0x31 && r.kvn_pending == 0, "%s: SSD PERSONALIZED, "
	    "KVN 31 active, nothing pending", what);
	{
		struct ff_ks k;

		ff_keysets(&F, SEID, aid, &k);
		ok(k.n == 1 && k.kvn[0] == 0x31, "%s: tsmd holds KVN 31 only (the "
		    "initial set destroyed once the new one was proven)", what);
		ff_ks_free(&k);
	}
}

static void
test_create_replace(void)
{
	struct ff_sess s;
	json_t *o = NULL, *root, *keys;
	char path[200], body[200];
	struct vse_host *h = NULL;
	struct buf k[3], a;
	uint16_t sw = 0;
	uint8_t sel[32], rsp[VSE_RSP_MAX];
	size_t rl;
	int i;

	create_and_replace(AID1, "AMSD", "AMSD");
	agree(AID1, "AMSD");

	/* The initial keys (the simulator's, in clear) no longer open it. */
	root = sim_state(&F.sim);
	keys = json_object_get(sim_ssd(root, SEID, AID1), "keys");
	for (i = 0; i < 3; i++)
		buf_init(&k[i]);
	buf_init(&a);
	hexb(json_string_value(json_object_get(keys, "enc")), &k[0]);
	hexb(json_string_value(json_object_get(keys, "mac")), &k[1]);
	hexb(json_string_value(json_object_get(keys, "dek")), &k[2]);
	hexb(AID1, &a);
	sel[0] = 0; sel[1] = 0xA4; sel[2] = 4; sel[3] = 0; sel[4] = (uint8_t)a.len;
	memcpy(sel + 5, a.p, a.len);
	sel[5 + a.len] = 0;
	if (vse_transmit(card, sel, 6 + a.len, rsp, sizeof(rsp), &rl) != 0 ||
	    vse_host_new(&h, k[0].p, k[1].p, k[2].p, 16) != 0)
		bail("host");
	ok(vse_host_open(h, card, 0, 0x30, 0x03, 0, NULL, &sw) != 0 && sw ==
	    0x6A88, "the initial key set KVN 30 is gone from the card (6A88)");
	vse_host_free(h);
	for (i = 0; i < 3; i++)
		buf_free(&k[i]);
	buf_free(&a);
	json_decref(root);

	/* Creating it again: tsmd's record says it exists. */
	snprintf(path, sizeof(path), "/api/v1/ses/%s/ssds", SEID);
	snprintf(body, sizeof(body), "{\"sdAid\":\"%s\",\"mode\":\"AMSD\"}", AID1);
	ok(post(path, body, &o) == 200 && strstr(js(o, "message"),
	    "nothing was sent") != NULL, "create an existing SSD: 200, nothing "
	    "sent to the SEI-TSM");
	json_decref(o);
	s = ff_session(&F, card, NULL);
	ok(s.done && s.batches == 0, "and the next session has nothing to do");
	ff_sess_clear(&s);
}

/* GP KCV of AES-128 key k. */
static void
kcv_of(const uint8_t k[16], uint8_t out[3])
{
	EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
	uint8_t in[16], o[32];
	int l = 0;

	memset(in, 1, 16);
	EVP_EncryptInit_ex(c, EVP_aes_128_ecb(), NULL, k, NULL);
	EVP_CIPHER_CTX_set_padding(c, 0);
	EVP_EncryptUpdate(c, o, &l, in, 16);
	EVP_CIPHER_CTX_free(c);
	memcpy(out, o, 3);
}

static void
test_diversified(void)
{
	uint8_t md[32], key[16], kcv[3];
	struct store_keyset ks;
	struct store *st;
	char in[80];
	int i, l = 0, good = 1;
	EVP_CIPHER_CTX *c;

	create_and_replace(AID2, "DMSD", "DMSD diversified");
	/* ssdKeys: master/test, D = SHA-256(seId ":" KVN)[0..15]. */
	snprintf(in, sizeof(in), "%s:31", SEID);
	EVP_Digest(in, strlen(in), md, NULL, EVP_sha256(), NULL);
	st = ff_store(&F);
	store_keyset_init(&ks);
	if (st == NULL || store_keyset_get(st, SEID, AID2, 0x31, &ks) != 0)
		good = 0;
	for (i = 0; good && i < 3; i++) {
		c = EVP_CIPHER_CTX_new();
		EVP_EncryptInit_ex(c, EVP_aes_128_ecb(), NULL, kmsenv_master[i], NULL);
		EVP_CIPHER_CTX_set_padding(c, 0);
		EVP_EncryptUpdate(c, key, &l, md, 16);
		EVP_CIPHER_CTX_free(c);
		kcv_of(key, kcv);
		good = ks.keys[i].kcv_len == 3 && memcmp(ks.keys[i].kcv, kcv, 3) == 0;
	}
	ok(good, "DMSD: the new keys are master/test diversified with "
	    "SHA-256(seId:KVN) (KCVs recomputed with OpenSSL)");
	store_keyset_cleanup(&ks);
	store_close(st);
	agree(AID2, "DMSD");
}

static void
test_rotate(void)
{
	struct ff_sess s;
	struct store_ssd r;
	json_t *o = NULL;
	char path[200];

	snprintf(path, sizeof(path), "/api/v1/ses/%s/ssds/%s/rotate-keys", SEID,
	    AID1);
	ok(post(path, NULL, &o) == 202, "rotate-keys: 202");
	json_decref(o);
	s = ff_session(&F, card, NULL);
	ok(s.done && s.batches == 3 && task_outcome(&s, "KEY_REPLACE", "DONE"),
	    "rotate-keys: one session, 3 batches, DONE");
	ff_sess_clear(&s);
	ok(ff_ssd(&F, SEID, AID1, &r) == 0 && r.kvn_active == 0x32 &&
	    strcmp(r.state, "PERSONALIZED") == 0, "rotate-keys: KVN 32 active");
	agree(AID1, "rotate-keys");
}

static void
test_lock_unlock(void)
{
	struct ff_sess s;
	struct store_ssd r;
	struct vse_entry_info e;
	json_t *o = NULL;
	char path[200], body[200];

	snprintf(path, sizeof(path), "/api/v1/ses/%s/ssds/%s/lock", SEID, AID1);
	ok(post(path, NULL, &o) == 202, "lock: 202");
	json_decref(o);
	s = ff_session(&F, card, NULL);
	ok(s.done && task_outcome(&s, "SSD_LOCK", "DONE") && s.batches == 2,
	    "lock: relayed through the SEI-TSM in one session (%d batches)",
	    s.batches);
	ff_sess_clear(&s);
	ok(ff_ssd(&F, SEID, AID1, &r) == 0 && strcmp(r.state, "LOCKED") == 0 &&
	    strcmp(r.prev_state, "PERSONALIZED") == 0, "lock: SSD LOCKED, "
	    "PERSONALIZED kept to restore");
	ok(card_has(AID1, &e) && e.lcs == 0x83, "lock: the card's SSD is LOCKED "
	    "(83)");
	agree(AID1, "lock");

	/* A locked SSD refuses everything through it. */
	snprintf(path, sizeof(path), "/api/v1/ses/%s/apps/A0000009991000AA/install",
	    SEID);
	snprintf(body, sizeof(body), "{\"sdAid\":\"%s\"}", AID1);
	ok(post(path, body, &o) == 409 && strcmp(js(o, "error"), "ssd_locked") ==
	    0 && strstr(js(o, "message"), "LOCKED") != NULL, "install into a "
	    "locked SSD: 409 ssd_locked");
	diag("  %s", js(o, "message"));
	json_decref(o);
	snprintf(path, sizeof(path), "/api/v1/ses/%s/ssds/%s/rotate-keys", SEID,
	    AID1);
	ok(post(path, NULL, &o) == 409 && strcmp(js(o, "error"), "ssd_locked") == 0,
	    "rotate-keys of a locked SSD: 409 ssd_locked");
	json_decref(o);
	snprintf(path, sizeof(path), "/api/v1/ses/%s/ssds/%s/lock", SEID, AID1);
	ok(post(path, NULL, &o) == 409, "lock twice: 409");
	json_decref(o);

	snprintf(path, sizeof(path), "/api/v1/ses/%s/ssds/%s/unlock", SEID, AID1);
	ok(post(path, NULL, &o) == 202, "unlock: 202");
	json_decref(o);
	s = ff_session(&F, card, NULL);
	ok(s.done && task_outcome(&s, "SSD_UNLOCK", "DONE"), "unlock: DONE");
	ff_sess_clear(&s);
	ok(ff_ssd(&F, SEID, AID1, &r) == 0 && strcmp(r.state, "PERSONALIZED") == 0,
	    "unlock: the state before the lock is back (PERSONALIZED)");
	ok(card_has(AID1, &e) && e.lcs != 0x83, "unlock: the card's SSD is "
	    "unlocked");
	ok(post(path, NULL, &o) == 409, "unlock an unlocked SSD: 409");
	json_decref(o);
	snprintf(path, sizeof(path), "/api/v1/ses/%s/apps/A0000009991000AA/install",
	    SEID);
	ok(post(path, body, &o) == 501 && strcmp(js(o, "error"),
	    "not_implemented") == 0, "install into the unlocked SSD: 501, a later "
	    "milestone");
	json_decref(o);
	agree(AID1, "unlock");
}

static char prov_key[100];

static void
test_provider(void)
{
	json_t *o = NULL;
	char body[400];

	snprintf(body, sizeof(body), "{\"id\":\"acme\",\"name\":\"ACME Pay\","
	    "\"orgCode\":\"91310000-X\",\"contact\":\"ops@acme.example\","
	    "\"webhookUrl\":\"http://127.0.0.1:%u/tsm-hook\"}", H.port);
	ok(post("/api/v1/providers", body, &o) == 201 && strcmp(js(o, "id"),
	    "acme") == 0, "provider registered: 201");
	json_decref(o);
	ok(post("/api/v1/providers", body, &o) == 409, "the same id again: 409");
	json_decref(o);
	ok(post("/api/v1/providers", "{\"name\":\"x\",\"orgCode\":\"o\","
	    "\"contact\":\"c\",\"webhookUrl\":\"http://example.com/h\"}", &o) == 400,
	    "plain http to a non-loopback webhook: 400");
	json_decref(o);
	ok(post("/api/v1/providers", "{\"id\":\"beta:eu\",\"name\":\"Beta\","
	    "\"orgCode\":\"o\",\"contact\":\"c\",\"webhookUrl\":"
	    "\"http://[::1]:9/h\"}", &o) == 201, "a provider id with ':' (as API "
	    "keys allow) and a webhook on [::1]: 201");
	json_decref(o);
	ok(post("/api/v1/apikeys", "{\"role\":\"provider\",\"providerId\":"
	    "\"acme\"}", &o) / 100 == 2, "a provider key for acme");
	snprintf(prov_key, sizeof(prov_key), "%s", js(o, "key"));
	json_decref(o);
}

static void
register_app(const char *aid, const char *app)
{
	json_t *o = NULL;
	char path[200], body[200];

	snprintf(path, sizeof(path), "/api/v1/ses/%s/apps/%s/register", SEID, app);
	snprintf(body, sizeof(body), "{\"sdAid\":\"%s\",\"providerId\":\"acme\"}",
	    aid);
	ok(post(path, body, &o) == 201, "application %s of acme registered under "
	    "%s", app, aid);
	json_decref(o);
	ok(post(path, body, &o) == 409 && strstr(js(o, "message"), "already") !=
	    NULL, "registered again: 409, the record is not overwritten");
	json_decref(o);
}

static void
test_delete(void)
{
	struct ff_sess s;
	struct store_ssd r;
	struct vse_entry_info e;
	json_t *o = NULL;
	char path[200];
	int i, got;

	register_app(AID2, "A0000009991000B1");
	snprintf(path, sizeof(path), "/api/v1/ses/%s/ssds/%s/delete", SEID, AID2);
	ok(post(path, NULL, &o) == 409 && json_array_size(json_object_get(o,
	    "pending")) == 1, "delete an SSD with an application: 409 until acme "
	    "acknowledges");
	json_decref(o);
	ok(post(path, "{\"force\":true}", &o) == 400, "force without a reason: "
	    "400");
	json_decref(o);
	snprintf(path, sizeof(path), "/api/v1/ses/%s/ssds/%s/delete-ack", SEID,
	    AID2);
	ok(ff_http(&F, "POST", path, NULL, F.admin, &o) == 403, "delete-ack with "
	    "an admin key: 403 (it is the provider's)");
	json_decref(o);
	ok(ff_http(&F, "POST", path, NULL, prov_key, &o) == 200 &&
	    json_array_size(json_object_get(o, "apps")) == 1, "delete-ack by acme: "
	    "200");
	json_decref(o);
	pthread_mutex_lock(&H.mu);
	H.seen = 0;
	H.fail_first = 0;
	pthread_mutex_unlock(&H.mu);
	snprintf(path, sizeof(path), "/api/v1/ses/%s/ssds/%s/delete", SEID, AID2);
	ok(post(path, NULL, &o) == 202, "delete after the acknowledgement: 202");
	json_decref(o);
	s = ff_session(&F, card, NULL);
	ok(s.done && task_outcome(&s, "SSD_DELETE", "DONE"), "delete: DONE (%s)",
	    s.msg);
	ff_sess_clear(&s);
	ok(ff_ssd(&F, SEID, AID2, &r) == 0 && strcmp(r.state, "DELETED") == 0 &&
	    r.kvn_active == 0, "delete: SSD DELETED");
	ok(!card_has(AID2, &e), "delete: gone from the card");
	{
		struct ff_ks k;
		struct store *st = ff_store(&F);
		json_t *app = NULL;
		char key[100];

		ff_keysets(&F, SEID, AID2, &k);
		snprintf(key, sizeof(key), "%s|A0000009991000B1", SEID);
		ok(k.n == 0 && st != NULL && store_doc_get(st, STORE_DB_APP, key,
		    &app) == 0 && strcmp(js(app, "state"), "DELETED") == 0,
		    "delete: no live key set left (archived), the application "
		    "DELETED");
		json_decref(app);
		store_close(st);
		ff_ks_free(&k);
	}
	for (i = 0, got = 0; i < 100 && !got; i++) {
		pthread_mutex_lock(&H.mu);
		got = H.seen > 0;
		pthread_mutex_unlock(&H.mu);
		usleep(50000);
	}
	ok(got && hook_sig_ok(&H) && strstr(H.body, "SSD_DELETED") != NULL,
	    "acme's webhook got SSD_DELETED, signed (X-TSM-Signature verified)");
	agree(AID2, "delete");
}

static void
test_repair(void)
{
	struct ff_sess s;
	struct store_ssd r;
	json_t *o = NULL, *n, *e;
	char path[200], cmd[5000], rot[80], st[32];
	size_t i;
	int k, delivered = 0;

	create_and_replace(AID3, "AMSD", "repair");
	register_app(AID3, "A0000009991000C1");
	/* A task queued on it, which the state sync must cancel. */
	snprintf(path, sizeof(path), "/api/v1/ses/%s/ssds/%s/rotate-keys", SEID,
	    AID3);
	ok(post(path, NULL, &o) == 202, "rotate-keys queued before the repair");
	snprintf(rot, sizeof(rot), "%s", js(o, "taskId"));
	json_decref(o);

	pthread_mutex_lock(&H.mu);
	H.seen = 0;
	H.fail_first = 1;	/* the first delivery fails: retried */
	pthread_mutex_unlock(&H.mu);
	/* The repair shop wipes the SSDs; the SEI-TSM reports it (§9.5). The
	 * card file must not be open elsewhere while seisim changes it. */
	vse_free(card);
	snprintf(cmd, sizeof(cmd), "%s repair %s --card %s --var %s --material %s "
	    "--tsm-url %s --tsm-ca %s/ca.pem >>%s/repair.log 2>&1",
	    testenv_bin("seisim"), SEID, card_path, F.sim.var, F.material, F.url,
	    F.var, F.base);
	ok(system(cmd) == 0, "seisim repair --card: every 9.5 accepted");
	if (vse_open(&card, card_path) != 0)
		bail("card");
	ok(ff_ssd(&F, SEID, AID3, &r) == 0 && strcmp(r.state, "GONE") == 0 &&
	    strcmp(r.prev_state, "DELETED") == 0 && r.kvn_active == 0,
	    "state sync: SSD GONE (reported DELETED), no key version");
	ok(strcmp(ff_task_state(&F, rot, st, sizeof(st)), "CANCELLED") == 0,
	    "state sync: the queued rotate-keys task CANCELLED");
	{
		struct ff_ks kk;

		ff_keysets(&F, SEID, AID3, &kk);
		ok(kk.n == 0, "state sync: the key sets archived (none live)");
		ff_ks_free(&kk);
	}
	for (k = 0; k < 100 && !delivered; k++) {
		usleep(100000);
		o = NULL;
		if (ff_http(&F, "GET", "/api/v1/notifications", NULL, prov_key,
		    &o) != 200)
			continue;
		n = json_object_get(o, "notifications");
		json_array_foreach(n, i, e)
			if (strstr(js(e, "id"), "acme") != NULL &&
			    strcmp(js(json_object_get(e, "payload"), "sdAid"), AID3) ==
			    0 && strcmp(js(e, "state"), "DELIVERED") == 0 &&
			    json_integer_value(json_object_get(e, "attempts")) == 2)
				delivered = 1;
		json_decref(o);
	}
	ok(delivered, "state sync: acme notified, DELIVERED on the 2nd attempt "
	    "(the first got HTTP 500), listed by GET /api/v1/notifications");
	ok(hook_sig_ok(&H) && strstr(H.body, "SSD_GONE") != NULL &&
	    strstr(H.body, "A0000009991000C1") != NULL, "the webhook: SSD_GONE with "
	    "the application, signed");
	agree(AID3, "repair");
	agree(AID1, "repair (AID1 gone too)");

	/* From scratch. */
	create_and_replace(AID3, "AMSD", "re-created after the repair");
	agree(AID3, "re-created");
	s = ff_session(&F, card, NULL);
	ok(s.done && s.batches == 0, "nothing left pending");
	ff_sess_clear(&s);
}

/* A master set by key sync without seId (TEST MATERIAL keys), the SSD put
 * on the card with the per-SE keys of the documented rule, created (the
 * probe finds it), then its keys replaced from the master-derived ones. */
static void
test_master(void)
{
	static const uint8_t m[3][16] = {
		{ 0x4D, 0x41, 0x53, 0x54, 0x45, 0x52, 0x2D, 0x45, 0x4E, 0x43, 1, 2, 3,
		  4, 5, 6 },
		{ 0x4D, 0x41, 0x53, 0x54, 0x45, 0x52, 0x2D, 0x4D, 0x41, 0x43, 1, 2, 3,
		  4, 5, 6 },
		{ 0x4D, 0x41, 0x53, 0x54, 0x45, 0x52, 0x2D, 0x44, 0x45, 0x4B, 1, 2, 3,
		  4, 5, 6 },
	};
	char w[3][81], k[3][7], body[1200], sig[300], nonce[33], path[200];
	uint8_t wr[48], kc[3], d[32], key[3][16], aid[8], priv[3] = { 0x80, 0x40,
		0x00 };
	struct sp_resp r;
	struct ff_sess s;
	struct store_ssd rec;
	json_t *o = NULL;
	size_t wl, an, i;
	uint8_t which;
	CURL *h;
	int l = 0;
	EVP_CIPHER_CTX *c;

	for (i = 0; i < 3; i++) {
		if (sp_aes_kw(kmsenv_kek128, 16, m[i], 16, wr, &wl) != 0 ||
		    sp_kcv_gp(m[i], 16, kc) != 0)
			bail("wrap");
		hex_encode(wr, wl, w[i]);
		hex_encode_upper(kc, 3, k[i]);
	}
	snprintf(body, sizeof(body), "{\"seiTsmId\":\"" FX_SEI_ID "\",\"SsdAid\":"
	    "\"" AID4 "\",\"encryptedKey\":[\"%s\",\"%s\",\"%s\"],\"Alg\":"
	    "\"AES-128\",\"Usage\":\"SCP03\",\"checkValue\":[\"%s\",\"%s\","
	    "\"%s\"]}", w[0], w[1], w[2], k[0], k[1], k[2]);
	sp_nonce(nonce);
	sp_sign(kmsenv_mac, 32, FX_KEY_ID, SP_KEYSYNC, (long long)wall_seconds(),
	    nonce, body, sig, sizeof(sig));
	h = curl_easy_init();
	ok(sp_post(h, F.url, F.ca, SP_KEYSYNC, body, strlen(body), sig, &r) == 0 &&
	    r.code == 200, "master set: key sync without seId accepted");
	sp_resp_free(&r);
	curl_easy_cleanup(h);

	/* The card: the SSD with key_i = AES-ECB(M_i, SHA-256(seId)[0..15]). */
	EVP_Digest(SEID, strlen(SEID), d, NULL, EVP_sha256(), NULL);
	for (i = 0; i < 3; i++) {
		c = EVP_CIPHER_CTX_new();
		EVP_EncryptInit_ex(c, EVP_aes_128_ecb(), NULL, m[i], NULL);
		EVP_CIPHER_CTX_set_padding(c, 0);
		EVP_EncryptUpdate(c, key[i], &l, d, 16);
		EVP_CIPHER_CTX_free(c);
	}
	if (hex_decode(AID4, strlen(AID4), aid, sizeof(aid), &an) != 0 ||
	    vse_test_registry_put(card, 2, aid, an, 0x07, priv, NULL, 0) != 0 ||
	    vse_keyset_put(card, aid, an, 0x30, key[0], key[1], key[2], 16) != 0 ||
	    vse_save(card) != 0)
		bail("card SSD");
	snprintf(path, sizeof(path), "/api/v1/ses/%s/ssds", SEID);
	ok(post(path, "{\"sdAid\":\"" AID4 "\",\"mode\":\"AMSD\"}", &o) == 202,
	    "master set: create queued");
	json_decref(o);
	s = ff_session(&F, card, NULL);
	ok(s.done && s.batches == 1 && task_outcome(&s, "SSD_CREATE", "DONE"),
	    "master set: the probe finds the SSD on the card: CREATED, nothing "
	    "sent to the SEI-TSM");
	ff_sess_clear(&s);
	s = ff_session(&F, card, NULL);
	ok(s.done && task_outcome(&s, "KEY_REPLACE", "DONE"), "master set: the "
	    "next session replaces the per-SE keys derived from it");
	ff_sess_clear(&s);
	ok(ff_ssd(&F, SEID, AID4, &rec) == 0 && rec.kvn_active == 0x31 &&
	    strcmp(rec.state, "PERSONALIZED") == 0 && ff_count_opening(&F, card,
	    SEID, AID4, &which) == 1 && which == 0x31, "master set: KVN 31 "
	    "active and the one that opens it");
	wipe(key, sizeof(key));
}

static void
test_views(void)
{
	json_t *o = NULL;
	char path[200];

	snprintf(path, sizeof(path), "/api/v1/ses/%s", SEID);
	ok(ff_http(&F, "GET", path, NULL, F.admin, &o) == 200 &&
	    json_array_size(json_object_get(o, "ssds")) == 4 &&
	    json_array_size(json_object_get(o, "tasks")) > 5,
	    "GET /api/v1/ses/{seId}: its SSDs and tasks");
	json_decref(o);
	ok(ff_http(&F, "GET", path, NULL, prov_key, &o) == 403, "a provider key "
	    "may not read an SE: 403");
	json_decref(o);
	ok(ff_http(&F, "GET", "/api/v1/ses/00112233445566FF", NULL, F.admin,
	    &o) == 404, "unknown SE: 404");
	json_decref(o);
	ok(ff_http(&F, "GET", "/api/v1/tasks/T-none", NULL, F.admin, &o) == 404,
	    "unknown task: 404");
	json_decref(o);
}

/* The notifications the admin sees: all, and those DELIVERED or FAILED. */
static int
count_notes(size_t *all, size_t *finished)
{
	json_t *o = NULL, *n, *e;
	size_t i;
	const char *st;

	*all = *finished = 0;
	if (ff_http(&F, "GET", "/api/v1/notifications?limit=1000", NULL, F.admin,
	    &o) != 200) {
		json_decref(o);
		return -1;
	}
	n = json_object_get(o, "notifications");
	json_array_foreach(n, i, e) {
		st = js(e, "state");
		(*all)++;
		*finished += strcmp(st, "DELIVERED") == 0 ||
		    strcmp(st, "FAILED") == 0;
	}
	json_decref(o);
	return 0;
}

/* notify.retentionDays 0: after a restart the flow worker's first purge
 * removes the finished notifications, and only those. */
static void
test_notify_retention(void)
{
	size_t all0, fin0, all1 = 0, fin1 = 0;
	char *p;
	int i;

	if (count_notes(&all0, &fin0) != 0)
		bail("notifications");
	ok(fin0 > 0, "%zu of %zu notifications finished (delivered or failed), "
	    "kept with the default retention of 30 days", fin0, all0);
	ff_tsmd_stop(&F, SIGTERM);
	if ((p = strstr(F.extra_cfg, "\"maxAttempts\": 4}")) == NULL)
		bail("extra config");
	snprintf(p, sizeof(F.extra_cfg) - (size_t)(p - F.extra_cfg),
	    "\"maxAttempts\": 4, \"retentionDays\": 0}");
	ff_write_cfg(&F);
	ff_tsmd_start(&F, NULL);
	for (i = 0; i < 100; i++) {
		if (count_notes(&all1, &fin1) == 0 && fin1 == 0)
			break;
		usleep(100000);
	}
	ok(fin1 == 0 && all1 == all0 - fin0, "notify.retentionDays 0: after a "
	    "restart the finished ones are removed, the others kept (%zu left)",
	    all1);
}

int
main(void)
{
	char extra[600];

	log_init("flow_ssd_test", LOG_ERR);
	hook_start(&H);
	snprintf(extra, sizeof(extra), "\"ssdKeys\": {\"" AID2 "\": {\"source\": "
	    "\"diversified\", \"master\": \"master/test\"}}, \"notify\": "
	    "{\"macKey\": \"peer/test/mac\", \"keyId\": \"test-notify\", "
	    "\"backoffMs\": 200, \"maxAttempts\": 4}");
	ff_setup(&F, extra, NULL);
	snprintf(card_path, sizeof(card_path), "%s/card.json", F.base);
	card = demo_card(card_path, SEID);

	test_nothing_pending();
	test_create_replace();
	test_diversified();
	test_rotate();
	test_lock_unlock();
	test_provider();
	test_delete();
	test_master();
	test_repair();
	test_views();
	test_notify_retention();

	vse_free(card);
	ff_teardown(&F, tap_failed != 0);
	return done_testing();
}
