/*
 * sei_keysync_test.c - tsmd's SEI routes end to end (real tsmd and kmsd, a
 * fresh SoftHSM2 token, HTTPS): every field and alias, receipts and answer
 * signatures checked with OpenSSL, idempotency, conflicts, master sets,
 * sd-status; each bad input refused with the store unchanged; replays too.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <jansson.h>

#include "kms/kms.h"
#include "tsm/sei/sei.h"
#include "tsm/store/store.h"
#include "tests/kmsenv.h"
#include "tests/tap.h"
#include "tests/integration/sei_peer.h"

#define AID  "A0000001515350"
#define SEID "0011223344556677"

static struct kmsenv E;
static char var[400], cfgf[400], logpath[400], addr[64], base[100], ca[500],
    storedir[500];
static pid_t tsmd_pid;
static CURL *H;

/* ---- tsmd ---- */

static void
start_tsmd(void)
{
	tsmd_pid = sp_tsmd_start(var, cfgf, E.sock, logpath, "info", addr,
	    sizeof(addr));
	if (tsmd_pid < 0)
		bail("tsmd did not start (%s)", logpath);
	snprintf(base, sizeof(base), "https://%s", addr);
}

static int
stop_tsmd(int sig)
{
	int st = 0;

	kill(tsmd_pid, sig);
	waitpid(tsmd_pid, &st, 0);
	return st;
}

/* ---- the store, read-only from this process ---- */

static struct store *
store_ro(void)
{
	struct store_opts o = { .readonly = 1 };
	struct store *st;

	if (store_open(&st, storedir, &o) != 0)
		bail("cannot open %s read-only", storedir);
	return st;
}

/* Every record of every db, one per line (blobs as length + digest). */
static char *
snapshot(void)
{
	struct store *st = store_ro();
	char *p = NULL;
	size_t n = 0;
	FILE *f = open_memstream(&p, &n);

	if (f == NULL || store_dump(st, STORE_DB_COUNT, f) != 0)
		bail("store_dump");
	fclose(f);
	store_close(st);
	return p;
}

/* Lines of a snapshot for the dbs that hold state (not nonces). */
static char *
state_lines(const char *snap)
{
	static const char *const keep[] = { "se ", "ssd ", "keyset ", "idem ",
		"sdstatus " };
	char *out = calloc(1, strlen(snap) + 1), *o = out;
	const char *l = snap, *e;
	size_t i;

	while (*l != '\0') {
		e = strchr(l, '\n');
		e = e ? e + 1 : l + strlen(l);
		for (i = 0; i < ARRAY_LEN(keep); i++)
			if (strncmp(l, keep[i], strlen(keep[i])) == 0) {
				memcpy(o, l, (size_t)(e - l));
				o += e - l;
			}
		l = e;
	}
	return out;
}

static int
check_clean(void)
{
	struct store *st = store_ro();
	struct store_check_report rep;
	int rc = store_check(st, (uint64_t)wall_seconds(), stderr, &rep);

	store_close(st);
	return rc == 0 && rep.problems == 0;
}

/* ---- requests ---- */

struct sent {
	char          body[8192];
	char          sig[300];
	struct sp_resp r;
	json_t       *j;
};

static void
sent_free(struct sent *s)
{
	sp_resp_free(&s->r);
	json_decref(s->j);
	s->j = NULL;
}

/* Signs (with key_id's key, the test MAC key for all test peers) and
 * posts; ts_off shifts the timestamp. */
static void
post_as(const char *key_id, const char *path, const char *body, long ts_off,
    struct sent *s)
{
	char nonce[33];

	snprintf(s->body, sizeof(s->body), "%s", body);
	sp_nonce(nonce);
	sp_sign(kmsenv_mac, 32, key_id, path, (long long)wall_seconds() + ts_off,
	    nonce, s->body, s->sig, sizeof(s->sig));
	if (sp_post(H, base, ca, path, s->body, strlen(s->body), s->sig,
	    &s->r) != 0)
		bail("no answer from tsmd");
	s->j = json_loadb((const char *)s->r.body.p, s->r.body.len, 0, NULL);
}

static void
post(const char *path, const char *body, struct sent *s)
{
	post_as("test-mac", path, body, 0, s);
}

/* tsmd's count of kmsd hmac calls (the framework signing an answer), from
 * /metrics; 0 before the first. */
static long
kms_hmacs(void)
{
	static const char series[] =
	    "tsmd_kms_call_duration_seconds_count{op=\"hmac\"} ";
	CURL *h = curl_easy_init();
	struct sp_resp r = { 0 };
	char url[300];
	const char *p;
	long n = 0;

	buf_init(&r.body);
	snprintf(url, sizeof(url), "%s/metrics", base);
	if (h == NULL)
		bail("curl");
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_CAINFO, ca);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, sp_on_body);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, &r);
	if (curl_easy_perform(h) != CURLE_OK || buf_put_u8(&r.body, 0) != 0)
		bail("GET /metrics");
	if ((p = strstr((const char *)r.body.p, series)) != NULL)
		n = strtol(p + strlen(series), NULL, 10);
	curl_easy_cleanup(h);
	sp_resp_free(&r);
	return n;
}

/* Posts body with a signature made over another body: the MAC does not
 * verify. */
static void
post_badsig(const char *body, struct sent *s)
{
	char nonce[33];

	snprintf(s->body, sizeof(s->body), "%s", body);
	sp_nonce(nonce);
	sp_sign(kmsenv_mac, 32, "test-mac", SP_KEYSYNC, (long long)wall_seconds(),
	    nonce, "{}", s->sig, sizeof(s->sig));
	if (sp_post(H, base, ca, SP_KEYSYNC, s->body, strlen(s->body), s->sig,
	    &s->r) != 0)
		bail("no answer from tsmd");
	s->j = json_loadb((const char *)s->r.body.p, s->r.body.len, 0, NULL);
}

/* keyset.receive records in kmsd's audit log so far that got as far as
 * the transport KEK (those refused for the MAC name only the MAC key) */
static int
unwraps(void)
{
	return kmsenv_count_lines(E.audit, "\"op\":\"keyset.receive\","
	    "\"key\":\"peer/test/kek ");
}

/* Sends the same bytes and signature again. */
static void
resend(struct sent *s)
{
	json_decref(s->j);
	sp_resp_free(&s->r);
	if (sp_post(H, base, ca, SP_KEYSYNC, s->body, strlen(s->body), s->sig,
	    &s->r) != 0)
		bail("no answer from tsmd");
	s->j = json_loadb((const char *)s->r.body.p, s->r.body.len, 0, NULL);
}

static long
rcode(const struct sent *s)
{
	json_t *c = json_object_get(s->j, "resultCode");

	return json_is_integer(c) ? (long)json_integer_value(c) : -1;
}

static const char *
rmsg(const struct sent *s)
{
	const char *m = json_string_value(json_object_get(s->j, "resultMessage"));

	return m ? m : "";
}

/* A refusal: HTTP status, resultCode, a word of the message, the SEI
 * shape (resultCode + resultMessage only) and an unchanged store. */
static void
refused(struct sent *s, const char *before, long http, long code,
    const char *needle, const char *what)
{
	char *after = snapshot();

	if (!ok(s->r.code == http && rcode(s) == code &&
	    strstr(rmsg(s), needle) != NULL && json_object_size(s->j) == 2,
	    "%s: %ld, resultCode %ld, \"%s\"", what, http, code, needle))
		diag("  got %ld %.*s", s->r.code, (int)s->r.body.len,
		    (const char *)s->r.body.p);
	if (!ok(strcmp(before, after) == 0, "%s: store unchanged", what))
		diag("before:\n%s\nafter:\n%s", before, after);
	free(after);
}

/* ---- bodies ---- */

/* A §9.4 body; NULL se/kv leave the field out; aliases use ssdAid, alg,
 * usage. */
static char *
ks_body(const char *peer, const char *aid, const char *se, const char *kv,
    const struct sp_keyset *s, const char *alg, int aliases)
{
	json_t *o = json_object(), *w = json_array(), *k = json_array();
	char *t;
	int i;

	for (i = 0; i < 3; i++) {
		json_array_append_new(w, json_string(s->wrapped[i]));
		json_array_append_new(k, json_string(s->kcv[i]));
	}
	json_object_set_new(o, "seiTsmId", json_string(peer));
	json_object_set_new(o, aliases ? "ssdAid" : "SsdAid", json_string(aid));
	json_object_set_new(o, "encryptedKey", w);
	json_object_set_new(o, aliases ? "alg" : "Alg", json_string(alg));
	json_object_set_new(o, aliases ? "usage" : "Usage", json_string("SCP03"));
	json_object_set_new(o, "checkValue", k);
	if (se != NULL)
		json_object_set_new(o, "seId", json_string(se));
	if (kv != NULL)
		json_object_set_new(o, "keyVersion", json_string(kv));
	t = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	return t;
}

static void
upper(const char *in, char *out)
{
	size_t i;

	for (i = 0; in[i]; i++)
		out[i] = (in[i] >= 'a' && in[i] <= 'f') ? (char)(in[i] - 32) : in[i];
	out[i] = '\0';
}

/* The receipt as README.md describes it, recomputed here. */
static int
receipt_ok(const struct sent *s, const char *peer, const char *aid,
    const char *se, const char *kv, const struct sp_keyset *ks)
{
	json_t *a = json_object_get(s->j, "receipt");
	char in[600], want[65], au[40], su[140], kvu[4];
	uint8_t mac[32];
	unsigned int ml;
	int i, n;

	if (json_array_size(a) != 4)
		return 0;
	upper(aid, au);
	upper(se ? se : "", su);
	upper(kv ? kv : "30", kvu);
	n = snprintf(in, sizeof(in), "SPTSM-RECEIPT-1\n%s\n%s\n%s\n%s\n%s\n%s\n%s",
	    peer, au, su, kvu, ks->kcv[0], ks->kcv[1], ks->kcv[2]);
	HMAC(EVP_sha256(), kmsenv_mac, 32, (const uint8_t *)in, (size_t)n, mac,
	    &ml);
	hex_encode(mac, 32, want);
	for (i = 0; i < 3; i++)
		if (strcmp(json_string_value(json_array_get(a, (size_t)i)),
		    ks->kcv[i]) != 0)
			return 0;
	return strcmp(json_string_value(json_array_get(a, 3)), want) == 0;
}

/* The stored blob opens in kmsd and its members have the keys' KCVs. */
static int
blob_opens(const char *se, const char *aid, uint8_t kvn,
    const struct sp_keyset *ks)
{
	struct store *st = store_ro();
	struct store_keyset r;
	struct kms_client *c = NULL;
	struct kms_keyset o;
	uint8_t kcv[3];
	size_t i;
	int good = 0;

	store_keyset_init(&r);
	if (store_keyset_get(st, se, aid, kvn, &r) == 0 &&
	    kms_connect(&c, E.sock, "sei-test") == 0 &&
	    kms_keyset_open(c, r.blob.p, r.blob.len, 0, &o) == 0) {
		good = o.n == 3 && r.n_keys == 3;
		for (i = 0; i < o.n; i++) {
			sp_kcv_gp(ks->key[i], ks->keylen, kcv);
			good &= memcmp(o.kcv[i], kcv, 3) == 0;
			(void)!kms_handle_close(c, o.handle[i]);
		}
	}
	kms_close(c);
	store_keyset_cleanup(&r);
	store_close(st);
	return good;
}

/* ---- tests ---- */

static void
test_contract(void)
{
	struct sp_keyset ks, ks2, ks3;
	struct sent s, s2;
	struct store *st;
	struct store_ssd ssd;
	struct store_se se;
	struct store_keyset rec;
	char *body, *before, *b1, *b2;
	long hm;
	int r;

	/* the printed names, with seId: a per-SE set for an unknown SE/SSD */
	sp_keyset_new(&ks, 16, kmsenv_kek128, 16, 0);
	body = ks_body("SEI-TEST", AID, SEID, NULL, &ks, "AES-128", 0);
	post(SP_KEYSYNC, body, &s);
	free(body);
	if (!is_int(s.r.code, 200, "key sync, printed field names, seId: 200"))
		diag("%.*s", (int)s.r.body.len, (const char *)s.r.body.p);
	ok(rcode(&s) == 0 && strcmp(rmsg(&s), "key set received") == 0,
	    "resultCode 0, resultMessage");
	ok(receipt_ok(&s, "SEI-TEST", AID, SEID, NULL, &ks),
	    "receipt: the KCVs, then HMAC-SHA256 over the documented string "
	    "(recomputed with OpenSSL)");
	ok(sp_answer_signed(&s.r, kmsenv_mac, 32, "test-mac", SP_KEYSYNC),
	    "the answer's X-TSM-Signature verifies (OpenSSL)");
	ok(blob_opens(SEID, AID, 0x30, &ks), "the stored blob opens in kmsd "
	    "with the keys' KCVs");
	st = store_ro();
	store_keyset_init(&rec);
	ok(store_se_get(st, SEID, &se) == 0 && strcmp(se.peer_id, "SEI-TEST") == 0,
	    "unknown SE: record created");
	ok(store_ssd_get(st, SEID, AID, &ssd) == 0 &&
	    strcmp(ssd.state, "KEYS_RECEIVED") == 0 && ssd.kvn_pending == 0x30,
	    "unknown SSD: record created in KEYS_RECEIVED, kvn_pending 30");
	ok(store_keyset_get(st, SEID, AID, 0x30, &rec) == 0 &&
	    strcmp(rec.source, "SEI-TEST") == 0 && rec.alg == KMS_ALG_AES128 &&
	    strcmp(rec.usage, "SCP03") == 0 && rec.keys[0].kcv_len == 3,
	    "key-set record: source, Alg, Usage, KCVs");
	store_keyset_cleanup(&rec);
	store_close(st);

	/* the same set again (fresh nonce): the same bytes, nothing new */
	b1 = snapshot();
	hm = kms_hmacs();
	body = ks_body("SEI-TEST", AID, SEID, NULL, &ks, "AES-128", 0);
	post(SP_KEYSYNC, body, &s2);
	free(body);
	is_int(s2.r.code, 200, "the same key set again: 200");
	ok(sp_answer_signed(&s2.r, kmsenv_mac, 32, "test-mac", SP_KEYSYNC) &&
	    kms_hmacs() == hm, "its answer is signed with the MAC kmsd made in "
	    "keyset.receive (no kmsd hmac call of its own)");
	ok(s2.r.body.len == s.r.body.len && memcmp(s2.r.body.p, s.r.body.p,
	    s.r.body.len) == 0, "idempotent repeat: byte-identical answer "
	    "(same receipt)");
	b2 = snapshot();
	{
		char *x = state_lines(b1), *y = state_lines(b2);

		ok(strcmp(x, y) == 0, "repeat: SE, SSD and key-set records "
		    "unchanged");
		ok(strstr(y, "idem ") == NULL, "no idempotency record: the "
		    "repeat's answer is rebuilt (the bytes compared above)");
		free(x);
		free(y);
	}
	free(b1);
	free(b2);
	sent_free(&s2);

	/* a different set, same SE/SSD/version: conflict, nothing stored */
	before = snapshot();
	sp_keyset_new(&ks2, 16, kmsenv_kek128, 16, 0);
	body = ks_body("SEI-TEST", AID, SEID, NULL, &ks2, "AES-128", 0);
	post(SP_KEYSYNC, body, &s2);
	free(body);
	refused(&s2, before, 409, 1008, "another key set", "different KCVs, "
	    "same SE/SSD/version: SSD state conflict");
	sent_free(&s2);
	/* the MAC comes first: the conflict is not told to a bad signature */
	body = ks_body("SEI-TEST", AID, SEID, NULL, &ks2, "AES-128", 0);
	post_badsig(body, &s2);
	free(body);
	refused(&s2, before, 401, 1004, "does not verify", "a conflicting set "
	    "with a bad signature: the signature is refused");
	sent_free(&s2);
	free(before);

	/* a newer version of it: a new record */
	body = ks_body("SEI-TEST", AID, SEID, "31", &ks2, "AES-128", 0);
	post(SP_KEYSYNC, body, &s2);
	free(body);
	ok(s2.r.code == 200 && rcode(&s2) == 0 &&
	    receipt_ok(&s2, "SEI-TEST", AID, SEID, "31", &ks2),
	    "keyVersion 31: accepted, receipt over version 31");
	ok(blob_opens(SEID, AID, 0x31, &ks2) && blob_opens(SEID, AID, 0x30, &ks),
	    "both versions stored and open in kmsd");
	st = store_ro();
	ok(store_ssd_get(st, SEID, AID, &ssd) == 0 && ssd.kvn_pending == 0x31,
	    "SSD kvn_pending follows the newest version");
	store_close(st);
	sent_free(&s2);

	/* aliases, lower-case hex, AES-256 keys */
	sp_keyset_new(&ks3, 32, kmsenv_kek128, 16, 0);
	{
		int i;

		for (i = 0; i < 3; i++) {
			char *p;

			for (p = ks3.kcv[i]; *p; p++)
				if (*p >= 'A' && *p <= 'F')
					*p = (char)(*p + 32);
		}
	}
	body = ks_body("SEI-TEST", "a0000001515351", "aabbccdd", "3f", &ks3,
	    "aes-256", 1);
	post(SP_KEYSYNC, body, &s2);
	free(body);
	for (r = 0; r < 3; r++)
		upper(ks3.kcv[r], ks3.kcv[r]);
	ok(s2.r.code == 200 && receipt_ok(&s2, "SEI-TEST", "A0000001515351",
	    "AABBCCDD", "3F", &ks3), "aliases ssdAid/alg/usage, lower-case "
	    "hex, AES-256: 200, receipt in upper case");
	ok(blob_opens("AABBCCDD", "A0000001515351", 0x3f, &ks3),
	    "stored under the upper-case ids; opens in kmsd");
	sent_free(&s2);
	sent_free(&s);
}

/* ---- many at once ---- */

#define AT_ONCE 8

struct racer {
	pthread_t     t;
	char          body[2048];
	char          sig[300];
	struct sp_resp r;
	json_t       *j;
};

static pthread_barrier_t race_start;

static void *
race_run(void *arg)
{
	struct racer *x = arg;
	CURL *h = curl_easy_init();

	pthread_barrier_wait(&race_start);
	if (h != NULL && sp_post(h, base, ca, SP_KEYSYNC, x->body,
	    strlen(x->body), x->sig, &x->r) == 0)
		x->j = json_loadb((const char *)x->r.body.p, x->r.body.len, 0,
		    NULL);
	curl_easy_cleanup(h);
	return NULL;
}

/* Posts AT_ONCE requests together: bodies[i] (the last one for the
 * rest), each signed with a fresh nonce unless one_nonce. */
static void
race(struct racer *x, char *const *bodies, size_t nb, int one_nonce)
{
	char nonce[33];
	size_t i;

	pthread_barrier_init(&race_start, NULL, AT_ONCE);
	sp_nonce(nonce);
	for (i = 0; i < AT_ONCE; i++) {
		memset(&x[i].r, 0, sizeof(x[i].r));
		x[i].j = NULL;
		snprintf(x[i].body, sizeof(x[i].body), "%s",
		    bodies[i < nb ? i : nb - 1]);
		if (!one_nonce)
			sp_nonce(nonce);
		sp_sign(kmsenv_mac, 32, "test-mac", SP_KEYSYNC,
		    (long long)wall_seconds(), nonce, x[i].body, x[i].sig,
		    sizeof(x[i].sig));
		if (pthread_create(&x[i].t, NULL, race_run, &x[i]) != 0)
			bail("pthread_create");
	}
	for (i = 0; i < AT_ONCE; i++)
		pthread_join(x[i].t, NULL);
	pthread_barrier_destroy(&race_start);
}

static long
xcode(const struct racer *x)
{
	json_t *c = json_object_get(x->j, "resultCode");

	return json_is_integer(c) ? (long)json_integer_value(c) : -1;
}

/* A fresh set for aid, raced AT_ONCE times (one request, or fresh nonces). */
static void
race_set(struct racer *x, struct sp_keyset *ks, const char *aid,
    int one_nonce)
{
	char *body;

	sp_keyset_new(ks, 16, kmsenv_kek128, 16, 0);
	body = ks_body("SEI-TEST", aid, SEID, NULL, ks, "AES-128", 0);
	race(x, &body, 1, one_nonce);
	free(body);
}

static void
race_free(struct racer *x)
{
	size_t i;

	for (i = 0; i < AT_ONCE; i++) {
		sp_resp_free(&x[i].r);
		json_decref(x[i].j);
	}
}

/*
 * Key syncs that race each other: their commits meet in the store (one
 * group, or one after another) and every loser must still get the answer
 * it would have got alone.
 */
static void
test_at_once(void)
{
	struct racer x[AT_ONCE];
	struct sp_keyset ks, other[AT_ONCE];
	struct sent s;
	char *bodies[AT_ONCE];
	size_t i, good, replays, conflicts, same;
	long winner = -1;

	/* the same set, fresh nonces: all stored-or-repeat, one receipt */
	race_set(x, &ks, "A0000001515400", 0);
	for (i = good = same = 0; i < AT_ONCE; i++) {
		struct sent t;

		good += x[i].r.code == 200 && xcode(&x[i]) == 0 &&
		    sp_answer_signed(&x[i].r, kmsenv_mac, 32, "test-mac",
		    SP_KEYSYNC);
		same += x[i].r.body.len == x[0].r.body.len && memcmp(
		    x[i].r.body.p, x[0].r.body.p, x[0].r.body.len) == 0;
		if (i == 0) {
			t.j = x[0].j;
			ok(receipt_ok(&t, "SEI-TEST", "A0000001515400", SEID,
			    NULL, &ks), "the same set %d times at once: the "
			    "receipt verifies", AT_ONCE);
		}
	}
	if (!ok(good == AT_ONCE, "the same set %d times at once (fresh nonces): "
	    "every one 200, resultCode 0, answer signed", AT_ONCE))
		diag("%zu good; first: %ld %.*s", good, x[0].r.code,
		    (int)x[0].r.body.len, (const char *)x[0].r.body.p);
	ok(same == AT_ONCE, "... and byte-identical answers (one receipt)");
	ok(blob_opens(SEID, "A0000001515400", 0x30, &ks), "... one set stored; "
	    "opens in kmsd");
	race_free(x);

	/* one request replayed at once: one stored, the others replays */
	race_set(x, &ks, "A0000001515401", 1);
	for (i = good = replays = 0; i < AT_ONCE; i++) {
		good += x[i].r.code == 200 && xcode(&x[i]) == 0;
		replays += x[i].r.code == 401 && xcode(&x[i]) == SEI_REPLAY;
	}
	if (!ok(good == 1 && replays == AT_ONCE - 1, "one request %d times at "
	    "once (one nonce): 1 accepted, %d refused as replays", AT_ONCE,
	    AT_ONCE - 1))
		diag("%zu accepted, %zu replays", good, replays);
	ok(blob_opens(SEID, "A0000001515401", 0x30, &ks), "... its set is "
	    "stored");
	race_free(x);

	/* different sets under one name at once: one wins, the rest are
	 * conflicts, and the stored set is the winner's */
	for (i = 0; i < AT_ONCE; i++) {
		sp_keyset_new(&other[i], 16, kmsenv_kek128, 16, 0);
		bodies[i] = ks_body("SEI-TEST", "A0000001515402", SEID, NULL,
		    &other[i], "AES-128", 0);
	}
	race(x, bodies, AT_ONCE, 0);
	for (i = good = conflicts = 0; i < AT_ONCE; i++) {
		free(bodies[i]);
		if (x[i].r.code == 200 && xcode(&x[i]) == 0) {
			good++;
			winner = (long)i;
		}
		conflicts += x[i].r.code == 409 &&
		    xcode(&x[i]) == SEI_STATE_CONFLICT;
	}
	if (!ok(good == 1 && conflicts == AT_ONCE - 1, "%d different sets for "
	    "one SE/SSD/version at once: 1 accepted, %d conflicts", AT_ONCE,
	    AT_ONCE - 1))
		diag("%zu accepted, %zu conflicts", good, conflicts);
	ok(winner >= 0 && blob_opens(SEID, "A0000001515402", 0x30,
	    &other[winner]), "... the stored set is the accepted one's");
	race_free(x);

	/* and the server is still whole: a plain key sync goes through */
	sp_keyset_new(&ks, 16, kmsenv_kek128, 16, 0);
	bodies[0] = ks_body("SEI-TEST", "A0000001515403", SEID, NULL, &ks,
	    "AES-128", 0);
	post(SP_KEYSYNC, bodies[0], &s);
	free(bodies[0]);
	ok(s.r.code == 200 && rcode(&s) == 0, "afterwards: a key sync is "
	    "accepted");
	sent_free(&s);
}

static void
test_master(void)
{
	struct sp_keyset ks;
	struct sent s;
	struct store *st;
	struct store_keyset rec;
	struct kms_client *c = NULL;
	struct kms_keyset o;
	uint8_t d[32], kcv[3], w[64];
	char *body;
	size_t i;
	int good = 0, rc;

	sp_keyset_new(&ks, 16, kmsenv_kek128, 16, 0);
	body = ks_body("SEI-TEST", "A0000001515352", NULL, NULL, &ks, "AES-128",
	    0);
	post(SP_KEYSYNC, body, &s);
	free(body);
	ok(s.r.code == 200 && receipt_ok(&s, "SEI-TEST", "A0000001515352", NULL,
	    NULL, &ks), "no seId: master set accepted, receipt with an empty "
	    "seId line");
	st = store_ro();
	store_keyset_init(&rec);
	ok(store_keyset_get(st, NULL, "A0000001515352", 0x30, &rec) == 0 &&
	    rec.se_id[0] == '\0', "stored as the AID's master set (*|AID|30)");
	/* per-SE keys: AES-ECB(master_i, SHA-256("0011223344556677")[0:16]),
	 * checked by using them in kmsd: ENC through the card-challenge KDF,
	 * MAC through S-MAC and the card cryptogram, DEK by encryption. */
	{
		int krc = kms_connect(&c, E.sock, "sei-test");

		if (krc != 0)
			bail("kms_connect: %s (errno %d; kmsd log %s)",
			    err_name(krc), errno, E.log);
	}
	if ((rc = sei_master_open_se(c, rec.blob.p, rec.blob.len, SEID, &o)) != 0)
		diag("sei_master_open_se: %s (%s)", err_name(rc),
		    kms_last_error(c));
	else {
		static const uint8_t ctx[16] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10,
			11, 12, 13, 14, 15, 16 };
		uint8_t k[3][16], x[16], y[16], sm[16], ones[16];
		uint32_t smac;

		EVP_Digest(SEID, strlen(SEID), d, NULL, EVP_sha256(), NULL);
		for (i = 0; i < 3; i++)
			sp_ecb(ks.key[i], 16, d, 16, k[i]);
		memset(ones, 1, sizeof(ones));
		ok(o.n == 3 && o.usage[0] == KMS_USE_ENC && o.usage[1] ==
		    KMS_USE_MAC && o.usage[2] == KMS_USE_DEK, "master set opened "
		    "and diversified for an SE: ENC, MAC, DEK");
		rc = kms_scp03_kdf(c, o.handle[0], 0x02, ctx, 8, 64, x);
		ok(rc == 0 && sp_scp03_kdf(k[0], 16, 0x02, ctx, 8, 64, y) == 0 &&
		    memcmp(x, y, 8) == 0, "derived ENC = AES-ECB(ENC master, D): "
		    "card challenge KDF matches OpenSSL");
		if (rc != 0)
			diag("%s: %s", err_name(rc), kms_last_error(c));
		rc = kms_scp03_derive(c, o.handle[1], 0x06, ctx, 16, 128, &smac);
		if (rc == 0)
			rc = kms_scp03_kdf(c, smac, 0x00, ctx, 16, 64, x);
		ok(rc == 0 && sp_scp03_kdf(k[1], 16, 0x06, ctx, 16, 128, sm) == 0 &&
		    sp_scp03_kdf(sm, 16, 0x00, ctx, 16, 64, y) == 0 &&
		    memcmp(x, y, 8) == 0, "derived MAC = AES-ECB(MAC master, D): "
		    "S-MAC and card cryptogram match OpenSSL");
		if (rc != 0)
			diag("%s: %s", err_name(rc), kms_last_error(c));
		rc = kms_encrypt(c, o.handle[2], KMS_ECB, NULL, ones, 16, x);
		ok(rc == 0 && sp_kcv_gp(k[2], 16, kcv) == 0 &&
		    memcmp(x, kcv, 3) == 0, "derived DEK = AES-ECB(DEK master, D): "
		    "its GP KCV matches OpenSSL");
		if (rc != 0)
			diag("%s: %s", err_name(rc), kms_last_error(c));
		good = 1;
		for (i = 0; i < 3; i++)
			(void)!kms_handle_close(c, o.handle[i]);
	}
	kms_close(c);
	c = NULL;
	if (!good)
		ok(0, "per-SE keys derived from the master set");
	ok(kms_connect(&c, E.sock, "sei-test") == 0 &&
	    kms_keyset_open(c, rec.blob.p, rec.blob.len, KMS_OPEN_MASTER, &o) == 0 &&
	    (i = sizeof(w), kms_wrap(c, o.handle[2], o.handle[0], w, &i)) != 0,
	    "master members only derive (wrap refused)");
	kms_close(c);
	store_keyset_cleanup(&rec);
	store_close(st);
	sent_free(&s);
}

static void
test_cmac_peer(void)
{
	struct sp_keyset ks;
	struct sent s;
	char *body;

	sp_keyset_new(&ks, 16, kmsenv_kek256, 32, 1);
	body = ks_body("SEI-CMAC", "A0000001515353", SEID, NULL, &ks, "AES-128", 0);
	post_as("cmac-mac", SP_KEYSYNC, body, 0, &s);
	free(body);
	ok(s.r.code == 200 && strlen(ks.kcv[0]) == 10 &&
	    receipt_ok(&s, "SEI-CMAC", "A0000001515353", SEID, NULL, &ks),
	    "CMAC peer (AES-256 KEK): 5-byte KCVs in the receipt");
	ok(sp_answer_signed(&s.r, kmsenv_mac, 32, "cmac-mac", SP_KEYSYNC),
	    "signed with that peer's keyId");
	sent_free(&s);
}

/* Bodies with one thing wrong; each must leave the store unchanged. */
static void
test_refusals(void)
{
	struct sp_keyset ks;
	struct sent s;
	char *before, *body, big[6000], hdr[300], nonce[33];
	json_t *o;
	uint8_t w[24];
	size_t n;
	static const char *const mand[] = { "seiTsmId", "SsdAid", "encryptedKey",
		"Alg", "Usage", "checkValue" };
	size_t i;

	before = snapshot();
	sp_keyset_new(&ks, 16, kmsenv_kek128, 16, 0);
	body = ks_body("SEI-TEST", "A0000001515360", SEID, NULL, &ks, "AES-128",
	    0);

	for (i = 0; i < ARRAY_LEN(mand); i++) {
		char want[64], *t;

		o = json_loads(body, 0, NULL);
		json_object_del(o, mand[i]);
		t = json_dumps(o, JSON_COMPACT);
		snprintf(want, sizeof(want), "missing field: %s", mand[i]);
		post(SP_KEYSYNC, t, &s);
		refused(&s, before, 400, 1001, want, want);
		sent_free(&s);
		free(t);
		json_decref(o);
	}

#define BAD(field, value, http, code, needle, what) do {		\
	char *t_;							\
	o = json_loads(body, 0, NULL);					\
	json_object_set_new(o, field, value);				\
	t_ = json_dumps(o, JSON_COMPACT);				\
	post(SP_KEYSYNC, t_, &s);					\
	refused(&s, before, http, code, needle, what);			\
	sent_free(&s);							\
	free(t_);							\
	json_decref(o);							\
} while (0)
	BAD("SsdAid", json_integer(5), 400, 1002, "SsdAid: must be a string",
	    "wrong type (SsdAid a number)");
	BAD("checkValue", json_string("AABBCC"), 400, 1002, "checkValue: must be "
	    "a list", "wrong type (checkValue not a list)");
	BAD("SsdAid", json_string("A00000015153GG"), 400, 1002, "SsdAid: not hex",
	    "bad hex");
	BAD("seId", json_string("00112233445566778"), 400, 1002, "seId: odd",
	    "odd-length hex");
	BAD("SsdAid", json_string("A0000001"), 400, 1002, "an AID has 5 to 16",
	    "AID of 4 bytes");
	BAD("SsdAid", json_string("A0000001515350A0000001515350A000000151"), 400,
	    1002, "an AID has 5 to 16", "AID of 19 bytes");
	BAD("seiTsmId", json_string("SEI-NOBODY"), 403, 1003, "not a configured "
	    "peer", "unknown seiTsmId");
	BAD("seiTsmId", json_string("SEI-OTHER"), 403, 1004, "not the peer that "
	    "signed", "seiTsmId of another peer than the signer");
	BAD("Alg", json_string("DES3"), 400, 1002, "Alg: must be", "unknown Alg");
	BAD("Usage", json_string("SCP02"), 400, 1002, "Usage: must be SCP03",
	    "unknown Usage");
	BAD("encryptedKey", json_pack("[s,s,s]", ks.wrapped[0], ks.wrapped[1],
	    "00112233445566778899aabbccddeeff"), 422, 1007, "encryptedKey[2]: 16 "
	    "bytes", "truncated encryptedKey");
	{
		char g[sizeof(ks.wrapped[1])];

		snprintf(g, sizeof(g), "%s", ks.wrapped[1]);
		g[10] = g[10] == '0' ? '1' : '0';
		BAD("encryptedKey", json_pack("[s,s,s]", ks.wrapped[0], g,
		    ks.wrapped[2]), 422, 1007, "cannot unwrap", "garbled "
		    "encryptedKey");
	}
	/* wrapped under the other KEK: unwraps to nothing usable */
	if (sp_aes_kw(kmsenv_kek256, 32, ks.key[0], 16, w, &n) == 0) {
		char hx[49];

		hex_encode(w, n, hx);
		BAD("encryptedKey", json_pack("[s,s,s]", hx, ks.wrapped[1],
		    ks.wrapped[2]), 422, 1007, "cannot unwrap", "wrapped under "
		    "another KEK");
	}
	BAD("checkValue", json_pack("[s,s,s]", ks.kcv[0], "000000", ks.kcv[2]),
	    422, 1006, "check value", "KCV mismatch");
	BAD("checkValue", json_pack("[s,s]", ks.kcv[0], ks.kcv[1]), 400, 1002,
	    "checkValue: 2 values for 3 keys", "list length mismatch");
	BAD("seid", json_string(SEID), 400, 1002, "unknown field", "misspelt "
	    "seId");
	/* The key-sync route checks the MAC in the same kmsd request as the
	 * import: a bad body with a bad signature is still refused for its
	 * signature first, and kmsd unwraps nothing. */
#define BADSIG(field, value, what) do {					\
	char *t_;							\
	int n0_ = unwraps();						\
	o = json_loads(body, 0, NULL);					\
	if (field != NULL)						\
		json_object_set_new(o, field, value);			\
	t_ = json_dumps(o, JSON_COMPACT);				\
	post_badsig(t_, &s);						\
	refused(&s, before, 401, 1004, "does not verify", what);	\
	ok(unwraps() == n0_, "%s: kmsd unwrapped nothing", what);	\
	sent_free(&s);							\
	free(t_);							\
	json_decref(o);							\
} while (0)
	BADSIG("SsdAid", json_integer(5), "wrong type and a bad signature");
	BADSIG("seiTsmId", json_string("SEI-NOBODY"), "unknown seiTsmId and a "
	    "bad signature");
	BADSIG("checkValue", json_pack("[s,s,s]", ks.kcv[0], "000000",
	    ks.kcv[2]), "KCV mismatch and a bad signature");
	BADSIG(NULL, NULL, "a good body with a bad signature");
#undef BADSIG
#undef BAD

	/* the framework's refusals, in the SEI shape */
	if (sp_post(H, base, ca, SP_KEYSYNC, body, strlen(body), NULL, &s.r) != 0)
		bail("no answer");
	s.j = json_loadb((const char *)s.r.body.p, s.r.body.len, 0, NULL);
	refused(&s, before, 401, 1004, "X-TSM-Signature", "absent signature");
	sent_free(&s);
	sp_nonce(nonce);
	sp_sign(kmsenv_mac, 32, "test-mac", SP_KEYSYNC, (long long)wall_seconds(),
	    nonce, "{}", hdr, sizeof(hdr));
	if (sp_post(H, base, ca, SP_KEYSYNC, body, strlen(body), hdr, &s.r) != 0)
		bail("no answer");
	s.j = json_loadb((const char *)s.r.body.p, s.r.body.len, 0, NULL);
	refused(&s, before, 401, 1004, "does not verify", "bad signature (over "
	    "another body)");
	sent_free(&s);
	post_as("nobody-mac", SP_KEYSYNC, body, 0, &s);
	refused(&s, before, 401, 1003, "keyId", "unknown keyId");
	sent_free(&s);
	post_as("test-mac", SP_KEYSYNC, body, -400, &s);
	refused(&s, before, 401, 1005, "", "stale ts (400 s old)");
	sent_free(&s);
	memset(big, ' ', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	memcpy(big, body, strlen(body));
	post(SP_KEYSYNC, big, &s);
	refused(&s, before, 413, 1009, "body larger", "body over the limit");
	sent_free(&s);
	post(SP_KEYSYNC, "{\"seiTsmId\":", &s);
	refused(&s, before, 400, 1002, "invalid JSON", "invalid JSON");
	sent_free(&s);

	/* §9.5 without seId */
	post(SP_SDSTATUS, "{\"seiTsmId\":\"SEI-TEST\",\"ssidAid\":\"" AID "\","
	    "\"status\":\"DELETED\"}", &s);
	refused(&s, before, 400, 1001, "seId", "sd-status without seId");
	sent_free(&s);
	post(SP_SDSTATUS, "{\"seiTsmId\":\"SEI-TEST\",\"ssidAid\":\"" AID "\","
	    "\"status\":\"deleted\",\"seId\":\"" SEID "\"}", &s);
	refused(&s, before, 400, 1002, "status", "sd-status with a lower-case "
	    "status");
	sent_free(&s);
	free(body);
	free(before);
}

static void
test_sdstatus(void)
{
	struct sent s;
	struct store *st;
	struct store_ssd ssd;
	char *before;

	post(SP_SDSTATUS, "{\"seiTsmId\":\"SEI-TEST\",\"ssidAid\":\"" AID "\","
	    "\"status\":\"LOCKED\",\"seId\":\"" SEID "\"}", &s);
	ok(s.r.code == 200 && rcode(&s) == 0 && json_object_size(s.j) == 2,
	    "sd-status LOCKED: 200, resultCode 0");
	ok(sp_answer_signed(&s.r, kmsenv_mac, 32, "test-mac", SP_SDSTATUS),
	    "sd-status answer signed");
	st = store_ro();
	ok(store_ssd_get(st, SEID, AID, &ssd) == 0 &&
	    strcmp(ssd.state, "LOCKED") == 0 &&
	    strcmp(ssd.prev_state, "KEYS_RECEIVED") == 0,
	    "SSD marked LOCKED, previous state kept for unlock");
	store_close(st);
	sent_free(&s);

	post(SP_SDSTATUS, "{\"seiTsmId\":\"SEI-TEST\",\"ssdAid\":\"a0000001515370\","
	    "\"status\":\"RESETED\",\"seId\":\"cafebabe\"}", &s);
	ok(s.r.code == 200 && rcode(&s) == 0, "alias ssdAid, unknown SE/SSD: 200");
	st = store_ro();
	/* tsm/flow's state sync marks it GONE, the reported status kept. */
	ok(store_ssd_get(st, "CAFEBABE", "A0000001515370", &ssd) == 0 &&
	    strcmp(ssd.state, "GONE") == 0 &&
	    strcmp(ssd.prev_state, "RESETED") == 0,
	    "unknown SSD recorded as GONE (reported RESETED)");
	store_close(st);

	/* replay of the sd-status */
	before = snapshot();
	json_decref(s.j);
	sp_resp_free(&s.r);
	if (sp_post(H, base, ca, SP_SDSTATUS, s.body, strlen(s.body), s.sig,
	    &s.r) != 0)
		bail("no answer");
	s.j = json_loadb((const char *)s.r.body.p, s.r.body.len, 0, NULL);
	refused(&s, before, 401, 1005, "nonce", "sd-status replayed");
	sent_free(&s);
	free(before);
}

static int
count_events(void *arg, const struct store_sdstatus *r)
{
	(*(int *)arg)++;
	return 0;
}

/* A replay of an accepted key sync, before and after a restart. */
static void
test_replay_restart(void)
{
	struct sp_keyset ks;
	struct sent s;
	struct store *st;
	char *body, *before;
	int n = 0, status;

	sp_keyset_new(&ks, 16, kmsenv_kek128, 16, 0);
	body = ks_body("SEI-TEST", "A0000001515380", SEID, NULL, &ks, "AES-128",
	    0);
	post(SP_KEYSYNC, body, &s);
	free(body);
	is_int(s.r.code, 200, "a key sync to replay: 200");
	before = snapshot();
	n = unwraps();
	resend(&s);
	refused(&s, before, 401, 1005, "nonce", "replayed nonce (same process)");
	ok(n > 0 && unwraps() == n, "the replay reached no key-set import in "
	    "kmsd");

	status = stop_tsmd(SIGTERM);
	ok(WIFEXITED(status) && WEXITSTATUS(status) == 0, "tsmd stops cleanly");
	start_tsmd();
	resend(&s);
	refused(&s, before, 401, 1005, "nonce already used", "replayed nonce "
	    "after a tsmd restart (claimed in the store)");
	ok(unwraps() == n, "nor after the restart");
	sent_free(&s);
	free(before);
	n = 0;

	st = store_ro();
	ok(store_sdstatus_iter(st, SEID, AID, count_events, &n) == 0 && n == 1,
	    "the sd-status event is recorded once");
	store_close(st);
}

/* kmsd down: 503/1010 and nothing stored; back: key syncs work again. */
static void
test_kmsd_down(void)
{
	struct sp_keyset ks;
	struct sent s;
	char *body, *before;
	int i;

	sp_keyset_new(&ks, 16, kmsenv_kek128, 16, 0);
	body = ks_body("SEI-TEST", "A0000001515390", SEID, NULL, &ks, "AES-128",
	    0);
	before = snapshot();
	kmsenv_stop(&E, 0);
	post(SP_KEYSYNC, body, &s);
	refused(&s, before, 503, 1010, "", "kmsd stopped");
	sent_free(&s);
	if (kmsenv_start(&E, NULL) != 0)
		bail("kmsd restart");
	for (i = 0; i < 30; i++) {	/* tsmd reconnects at most once a second */
		post(SP_KEYSYNC, body, &s);
		if (s.r.code == 200)
			break;
		sent_free(&s);
		usleep(200000);
	}
	ok(s.r.code == 200 && receipt_ok(&s, "SEI-TEST", "A0000001515390", SEID,
	    NULL, &ks), "kmsd restarted: the key sync goes through");
	sent_free(&s);
	free(before);
	free(body);

	/* Restarted again with nothing sent in between: every kmsd
	 * connection tsmd holds is stale, yet the first key sync goes
	 * through (keyset.receive is retried on a fresh connection). The
	 * shared connection is made first (tsmd tries it at most once a
	 * second after a failure). */
	usleep(1100 * 1000);
	sp_keyset_new(&ks, 16, kmsenv_kek128, 16, 0);
	body = ks_body("SEI-TEST", "A0000001515392", SEID, NULL, &ks, "AES-128",
	    0);
	post(SP_KEYSYNC, body, &s);
	ok(s.r.code == 200, "a second after: the next key sync goes through");
	sent_free(&s);
	free(body);
	kmsenv_stop(&E, 0);
	if (kmsenv_start(&E, NULL) != 0)
		bail("kmsd restart");
	sp_keyset_new(&ks, 16, kmsenv_kek128, 16, 0);
	body = ks_body("SEI-TEST", "A0000001515391", SEID, NULL, &ks, "AES-128",
	    0);
	post(SP_KEYSYNC, body, &s);
	if (!ok(s.r.code == 200 && receipt_ok(&s, "SEI-TEST", "A0000001515391",
	    SEID, NULL, &ks), "kmsd restarted quietly: the next key sync goes "
	    "through at the first try"))
		diag("got %ld %.*s", s.r.code, (int)s.r.body.len,
		    (const char *)s.r.body.p);
	ok(kmsenv_count_lines(logpath, "event=kms_pipe_dropped") > 0,
	    "... after tsmd found its shared kmsd connection lost (logged)");
	sent_free(&s);
	free(body);
}

/*
 * An SSD whose keys tsmd has replaced (as a key replacement leaves it:
 * PERSONALIZED, kvn_active 31, the initial set 30 deleted): the initial
 * set again (a late retry) is refused, nothing stored, and so is another
 * version; once §9.5 reports the SSD deleted, a set is taken again.
 */
static void
test_retired(void)
{
	static const char aid[] = "A0000001515394";
	struct store_opts rw = { 0 };
	struct sp_keyset ks, ks2;
	struct store_batch *b = NULL;
	struct store_ssd ssd;
	struct store *st;
	struct sent s;
	char *body, *body2, *before;
	int i;

	sp_keyset_new(&ks, 16, kmsenv_kek128, 16, 0);
	body = ks_body("SEI-TEST", aid, SEID, NULL, &ks, "AES-128", 0);
	post(SP_KEYSYNC, body, &s);
	is_int(s.r.code, 200, "retired: the initial set 30 stored");
	sent_free(&s);
	(void)stop_tsmd(SIGTERM);
	if (store_open(&st, storedir, &rw) != 0 || store_batch_new(&b) != 0 ||
	    store_ssd_get(st, SEID, aid, &ssd) != 0)
		bail("store");
	if (store_batch_require_ssd(b, &ssd) != 0)
		bail("batch");
	snprintf(ssd.state, sizeof(ssd.state), "PERSONALIZED");
	ssd.kvn_active = 0x31;
	ssd.kvn_pending = 0;
	if (store_batch_put_ssd(b, &ssd) != 0 ||
	    store_batch_del_keyset(b, SEID, aid, 0x30) != 0 ||
	    store_batch_commit(st, b) != 0)
		bail("commit");
	store_batch_free(b);
	store_close(st);
	start_tsmd();

	sp_keyset_new(&ks2, 16, kmsenv_kek128, 16, 0);
	body2 = ks_body("SEI-TEST", aid, SEID, "32", &ks2, "AES-128", 0);
	for (i = 0; i < 2; i++) {
		before = snapshot();
		post(SP_KEYSYNC, i == 0 ? body : body2, &s);
		refused(&s, before, 409, 1008, "replaced this SSD's keys", i == 0 ?
		    "the initial set again after tsmd replaced the keys" :
		    "another version (32) for it");
		sent_free(&s);
		free(before);
	}
	post(SP_SDSTATUS, "{\"seiTsmId\":\"SEI-TEST\",\"ssdAid\":\"A0000001515394\","
	    "\"status\":\"DELETED\",\"seId\":\"" SEID "\"}", &s);
	is_int(s.r.code, 200, "sd-status DELETED for it");
	sent_free(&s);
	post(SP_KEYSYNC, body2, &s);
	ok(s.r.code == 200 && receipt_ok(&s, "SEI-TEST", aid, SEID, "32", &ks2),
	    "then a key set is taken again");
	sent_free(&s);
	free(body);
	free(body2);
}

struct late {
	pthread_t      t;
	unsigned       delay_ms;
	char          *body;
	struct sent    s;
};

static void *
late_run(void *arg)
{
	struct late *l = arg;
	char nonce[33];
	CURL *h = curl_easy_init();

	usleep(l->delay_ms * 1000);
	snprintf(l->s.body, sizeof(l->s.body), "%s", l->body);
	sp_nonce(nonce);
	sp_sign(kmsenv_mac, 32, "test-mac", SP_KEYSYNC, (long long)wall_seconds(),
	    nonce, l->s.body, l->s.sig, sizeof(l->s.sig));
	if (h != NULL && sp_post(h, base, ca, SP_KEYSYNC, l->s.body,
	    strlen(l->s.body), l->s.sig, &l->s.r) == 0)
		l->s.j = json_loadb((const char *)l->s.r.body.p, l->s.r.body.len,
		    0, NULL);
	curl_easy_cleanup(h);
	return NULL;
}

static void write_config(const char *limits);
#define LIMITS "\"maxBodyBytes\": 4096"	/* the tests' */

/*
 * A repeat starts on MHD's thread and runs again from the start on a
 * worker. One that waited for the worker past its deadline is answered
 * 408 there, not run: tsmd with one worker and a 400 ms deadline, kmsd
 * stopped while the worker runs the first repeat, the second queued
 * behind it for 800 ms.
 */
static void
test_late_rerun(void)
{
	struct late a = { .delay_ms = 0 }, b = { .delay_ms = 150 };
	struct sp_keyset ks;
	struct sent s;
	char *body;
	int before;

	write_config(LIMITS ", \"workers\": 1, \"requestTimeoutMs\": 400");
	(void)stop_tsmd(SIGTERM);
	start_tsmd();
	sp_keyset_new(&ks, 16, kmsenv_kek128, 16, 0);
	body = ks_body("SEI-TEST", "A0000001515393", SEID, NULL, &ks, "AES-128",
	    0);
	post(SP_KEYSYNC, body, &s);
	is_int(s.r.code, 200, "one worker, 400 ms deadline: a key set stored");
	sent_free(&s);
	before = unwraps();
	a.body = b.body = body;
	kill(E.pid, SIGSTOP);
	if (pthread_create(&a.t, NULL, late_run, &a) != 0 ||
	    pthread_create(&b.t, NULL, late_run, &b) != 0)
		bail("pthread_create");
	usleep(800 * 1000);
	kill(E.pid, SIGCONT);
	pthread_join(a.t, NULL);
	pthread_join(b.t, NULL);
	ok(a.s.r.code == 200 && rcode(&a.s) == 0, "the repeat on the worker "
	    "while kmsd was stopped: answered when it went on (%ld)",
	    a.s.r.code);
	if (!ok(b.s.r.code == 408 && b.s.r.body.p != NULL &&
	    memmem(b.s.r.body.p, b.s.r.body.len, "longer than 400 ms", 18) !=
	    NULL, "the repeat that waited for the "
	    "worker past its deadline: 408, not run (%ld)", b.s.r.code))
		diag("got %.*s", (int)b.s.r.body.len, (const char *)b.s.r.body.p);
	is_int(unwraps(), before + 1, "kmsd unwrapped for the first repeat "
	    "only");
	sent_free(&a.s);
	sent_free(&b.s);
	free(body);

	write_config(LIMITS);
	(void)stop_tsmd(SIGTERM);
	start_tsmd();
}

/* tsmd's config: the test peers, and limits (a JSON object's members). */
static void
write_config(const char *limits)
{
	char doc[2000];

#define PEER(id, kek, kcv, kid) "{\"seiTsmId\": \"" id "\", \"tenantId\": " \
	"\"SP-1\", \"baseUrl\": \"http://127.0.0.1:9\", \"wrap\": \"AES-KW\", " \
	"\"kcvMethod\": \"" kcv "\", \"transportKek\": \"" kek "\", " \
	"\"macKeyId\": \"" kid "\", \"macKey\": \"peer/test/mac\", " \
	"\"clientCertRequired\": false}"
	snprintf(doc, sizeof(doc), "{\"limits\": {%s}, "
	    "\"peers\": [" PEER("SEI-TEST", "peer/test/kek", "GP", "test-mac") ", "
	    PEER("SEI-CMAC", "peer/test/kek256", "CMAC", "cmac-mac") ", "
	    PEER("SEI-OTHER", "peer/test/kek", "GP", "other-mac") "]}", limits);
#undef PEER
	if (file_write_atomic(cfgf, doc, strlen(doc), 0600) != 0)
		bail("config");
}

int
main(void)
{
	int st;

	curl_global_init(CURL_GLOBAL_DEFAULT);
	if (kmsenv_setup(&E, 0) != 0)
		bail("kmsenv_setup");
	if (kmsenv_start(&E, NULL) != 0)
		bail("kmsd did not start (%s)", E.log);
	snprintf(var, sizeof(var), "%s/tsmvar", E.dir);
	snprintf(cfgf, sizeof(cfgf), "%s/tsmd.json", E.dir);
	snprintf(logpath, sizeof(logpath), "%s/tsmd.log", E.dir);
	snprintf(ca, sizeof(ca), "%s/ca.pem", var);
	snprintf(storedir, sizeof(storedir), "%s/tsm/store", var);
	write_config(LIMITS);
	start_tsmd();
	if ((H = curl_easy_init()) == NULL)
		bail("curl");

	test_contract();
	test_at_once();
	test_master();
	test_cmac_peer();
	test_refusals();
	test_sdstatus();
	test_replay_restart();
	test_kmsd_down();
	test_retired();
	test_late_rerun();
	ok(check_clean(), "store_check: no problems");

	curl_easy_cleanup(H);
	st = stop_tsmd(SIGTERM);
	ok(WIFEXITED(st) && WEXITSTATUS(st) == 0, "SIGTERM: tsmd exits 0");
	kmsenv_stop(&E, 0);
	if (tap_failed == 0)
		kmsenv_cleanup(&E);
	else
		diag("kept %s", E.dir);
	curl_global_cleanup();
	return done_testing();
}
