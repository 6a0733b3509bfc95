/*
 * seisim_contract_test.c - the §9.1/§9.2/§9.3 contract between tsmd's SEI
 * client (tsm/sei/client.c, signing and verifying in a real kmsd) and the
 * SEI-TSM simulator (real seisim processes): field names, answers, the
 * "0000" string resultCode, timeouts and which calls are retried, bad,
 * stale and replayed answer signatures, resultCode 9999, TLS trust, the
 * task history; then seisim's own request validation with raw requests
 * signed here (OpenSSL, independent of both).
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>

#include "tests/tap.h"
#include "tests/integration/seisim_fixture.h"
#include "tsm/sei/client.h"
#include "tsm/store/store.h"

static struct kmsenv E;
static struct kms_client *kc;
static struct store *st;
static char material[600];

/* ---- helpers ---- */

static struct sei_call
mkcall(const char *task, const struct sei_client_opts *o)
{
	struct sei_call c;

	memset(&c, 0, sizeof(c));
	c.kms = kc;
	c.store = st;
	c.task_id = task;
	c.opts = o;
	return c;
}

static void
task_new(const char *id)
{
	struct store_task t;
	struct store_batch *b;

	store_task_init(&t);
	snprintf(t.id, sizeof(t.id), "%s", id);
	snprintf(t.kind, sizeof(t.kind), "SSD_CREATE");
	snprintf(t.state, sizeof(t.state), "PENDING");
	t.created = t.updated = (uint64_t)wall_seconds();
	if (store_batch_new(&b) != 0 || store_batch_put_task(b, &t) != 0 ||
	    store_batch_commit(st, b) != 0)
		bail("task %s", id);
	store_batch_free(b);
	store_task_cleanup(&t);
}

/* The PSS token verifies under the demo DM token public key. */
static int
token_ok(const char *raw_hex, const char *tok_hex)
{
	char path[700];
	struct buf raw, tok;
	EVP_PKEY *k;
	EVP_MD_CTX *c = EVP_MD_CTX_new();
	EVP_PKEY_CTX *pc = NULL;
	FILE *f;
	int ok_ = 0;

	snprintf(path, sizeof(path), "%s/tests/sim/demo/dm-token-demo.pub.pem",
	    fx_top());
	if ((f = fopen(path, "r")) == NULL)
		return 0;
	k = PEM_read_PUBKEY(f, NULL, NULL, NULL);
	fclose(f);
	buf_init(&raw);
	buf_init(&tok);
	if (k != NULL && hex_decode_buf(raw_hex, &raw) == 0 &&
	    hex_decode_buf(tok_hex, &tok) == 0 && tok.len == 256 &&
	    EVP_DigestVerifyInit(c, &pc, EVP_sha256(), NULL, k) == 1 &&
	    EVP_PKEY_CTX_set_rsa_padding(pc, RSA_PKCS1_PSS_PADDING) == 1 &&
	    EVP_PKEY_CTX_set_rsa_mgf1_md(pc, EVP_sha256()) == 1 &&
	    EVP_PKEY_CTX_set_rsa_pss_saltlen(pc, 32) == 1)
		ok_ = EVP_DigestVerify(c, tok.p, tok.len, raw.p, raw.len) == 1;
	EVP_MD_CTX_free(c);
	EVP_PKEY_free(k);
	buf_free(&raw);
	buf_free(&tok);
	return ok_;
}

/* ---- contract: client <-> simulator ---- */

static void
test_contract(struct fx_sim *sim)
{
	struct tsm_peer p, bad;
	struct sei_result r;
	struct sei_call c = mkcall("T-CONTRACT", NULL);
	const char *raw[2] = { "00800A4F08A000000999000001",
	    "000C1A07A000000151535008A00000015153504108A000000999000002" };
	const char *resp[2] = { "9000", "6A88" };
	struct store_task t;
	size_t i;
	int rc, found = 0;

	fx_peer(&p, sim);
	task_new("T-CONTRACT");

	/* §9.1 CREATE_SSD: SELECT ISD + INITIALIZE UPDATE come back. */
	rc = sei_ssd_manage(&p, &c, "CREATE_SSD", "00112233AABBCC01",
	    "a000000999000001", "804000", "0370", &r);
	is_int(rc, 0, "9.1 CREATE_SSD: accepted (%s)", r.error);
	ok(r.result_code == 0 && r.task_id[0] != '\0' && r.apdus.n == 2 &&
	    !r.done, "9.1 answer: resultCode 0, taskId %s, 2 APDUs, not done",
	    r.task_id);
	ok(r.apdus.n == 2 && strcmp(r.apdus.v[0],
	    "00A4040008A00000015100000000") == 0 &&
	    strncmp(r.apdus.v[1], "8050300008", 10) == 0,
	    "batch 1 = SELECT ISD, INITIALIZE UPDATE KVN 30 (S8)");
	is_int(r.attempts, 1, "one attempt");
	is_int(r.http_status, 200, "HTTP 200");

	/* §9.2: the SE refused INITIALIZE UPDATE -> the task ends, 2001. */
	{
		char tid[65];

		snprintf(tid, sizeof(tid), "%s", r.task_id);
		sei_result_cleanup(&r);
		rc = sei_ssd_instructions(&p, &c, tid, "00112233AABBCC01", resp, 2,
		    &r);
		ok(rc == ERR_DENIED && r.result_code == 2001 &&
		    strstr(r.result_message, "6A88") != NULL && r.apdus.n == 0,
		    "9.2 with an error SW: ERR_DENIED, resultCode 2001, message "
		    "names the SW (%s)", r.result_message);
		ok(strcmp(r.task_id, tid) == 0, "refusal keeps the taskId");
		sei_result_cleanup(&r);
		rc = sei_ssd_instructions(&p, &c, tid, "00112233AABBCC01", resp, 2,
		    &r);
		ok(rc == ERR_DENIED && r.result_code == 2001,
		    "9.2 repeated with the same respList: the same answer (replay "
		    "tolerant)");
		sei_result_cleanup(&r);
		rc = sei_ssd_instructions(&p, &c, tid, "00112233AABBCC01", resp, 1,
		    &r);
		ok(rc == ERR_DENIED && r.result_code == 1002,
		    "9.2 after the end: 1002 task over (%s)", r.result_message);
	}
	sei_result_cleanup(&r);
	rc = sei_ssd_instructions(&p, &c, "SIM-999999", "00112233AABBCC01", resp,
	    2, &r);
	ok(rc == ERR_DENIED && r.result_code == 1002, "9.2 unknown taskId: 1002 "
	    "(%s)", r.result_message);
	sei_result_cleanup(&r);

	/* §9.1 SCP02: refused before any APDU. */
	rc = sei_ssd_manage(&p, &c, "CREATE_SSD", "00112233AABBCC02",
	    "A000000999000001", "804000", "0255", &r);
	ok(rc == ERR_DENIED && r.result_code == 1004 && r.apdus.n == 0 &&
	    strstr(r.result_message, "SCP02") != NULL, "9.1 scpConfig 0255: "
	    "1004, no APDU: %s", r.result_message);
	sei_result_cleanup(&r);
	rc = sei_ssd_manage(&p, &c, "LOCK_SSD", "00112233AABBCC03",
	    "A000000999000001", NULL, "", &r);
	ok(rc == 0 && r.apdus.n == 2, "9.1 LOCK_SSD (no expPrivilege): 2 APDUs");
	sei_result_cleanup(&r);

	/* §9.3 token */
	rc = sei_token(&p, &c, "00112233aabbcc01", raw, 2, &r);
	is_int(rc, 0, "9.3 CREATE_TOKEN: accepted (%s)", r.error);
	ok(r.tokens.n == 2 && strcasecmp(r.se_id, "00112233AABBCC01") == 0,
	    "9.3 answer: seId echoed, 2 tokens");
	ok(r.tokens.n == 2 && token_ok(raw[0], r.tokens.v[0]) &&
	    token_ok(raw[1], r.tokens.v[1]), "tokens verify: RSASSA-PSS SHA-256 "
	    "salt 32 under the demo DM token public key");
	ok(r.tokens.n == 2 && !token_ok(raw[1], r.tokens.v[0]),
	    "a token does not verify for other data");
	sei_result_cleanup(&r);

	/* Arguments are checked before anything is sent. */
	ok(sei_ssd_manage(&p, &c, "CREATE_SSD", "0011", "A000000999000001",
	    NULL, "0370", &r) == ERR_INVAL, "CREATE_SSD without expPrivilege: "
	    "ERR_INVAL");
	sei_result_cleanup(&r);
	ok(sei_ssd_manage(&p, &c, "MAKE_SSD", "0011", "A000000999000001",
	    "80", "0370", &r) == ERR_INVAL, "unknown optType: ERR_INVAL");
	sei_result_cleanup(&r);
	ok(sei_token(&p, &c, "0011", raw, 0, &r) == ERR_INVAL,
	    "no rawData: ERR_INVAL");
	sei_result_cleanup(&r);

	/* A tenantId the SEI does not know. */
	bad = p;
	bad.tenant_id = (char *)"SP-NOBODY";
	rc = sei_token(&bad, &c, "0011223344556677", raw, 1, &r);
	ok(rc == ERR_DENIED && r.result_code == 1001, "unknown tenantId: 1001");
	sei_result_cleanup(&r);

	/* TLS: another CA is not trusted; not retried (configuration). */
	bad = p;
	bad.tls_ca = (char *)"/etc/ssl/certs/ca-certificates.crt";
	rc = sei_token(&bad, &c, "0011223344556677", raw, 1, &r);
	ok(rc == ERR_IO && r.attempts == 1, "server certificate not from the "
	    "peer's tlsCa: ERR_IO, not retried (%s)", r.error);
	sei_result_cleanup(&r);

	/* Every call is on the task, without key material. */
	store_task_init(&t);
	rc = store_task_get(st, "T-CONTRACT", &t);
	ok(rc == 0 && t.n_hist == 10, "every call that was sent is recorded on "
	    "the task (%zu entries)", t.n_hist);
	for (i = 0; i < t.n_hist; i++) {
		if (strstr(t.hist[i].note, "sei 9.1 ssd/manage CREATE_SSD "
		    "seId=00112233AABBCC01") != NULL &&
		    strstr(t.hist[i].note, "resultCode 0 taskId=SIM-") != NULL &&
		    strstr(t.hist[i].note, "HTTP 200, 1 attempt") != NULL)
			found |= 1;
		if (strstr(t.hist[i].note, "sei 9.2 ssd/instructions") != NULL &&
		    strstr(t.hist[i].note, "resultCode 2001") != NULL)
			found |= 2;
		if (strstr(t.hist[i].note, "sei 9.3 token CREATE_TOKEN") != NULL &&
		    strstr(t.hist[i].note, "tokens=2") != NULL)
			found |= 4;
		if (strstr(t.hist[i].note, "peer/test") != NULL ||
		    strstr(t.hist[i].note, "5A5A5A") != NULL)
			found |= 8;
	}
	ok((found & 7) == 7, "history: request summary, result, HTTP status, "
	    "attempts, timing");
	ok(!(found & 8), "history holds no key labels or key bytes");
	store_task_cleanup(&t);
}

static void
test_string_code(struct fx_sim *sim)
{
	struct tsm_peer p, bad;
	struct sei_result r;
	struct sei_call c = mkcall(NULL, NULL);
	const char *raw[1] = { "00800A4F08A000000999000001" };
	int rc;

	fx_peer(&p, sim);
	rc = sei_token(&p, &c, "0011223344556677", raw, 1, &r);
	ok(rc == 0 && r.result_code == 0 && r.tokens.n == 1,
	    "peer answering \"resultCode\":\"0000\": accepted as 0 (%s)", r.error);
	sei_result_cleanup(&r);
	rc = sei_ssd_manage(&p, &c, "CREATE_SSD", "0011223344556688",
	    "A000000999000001", "804000", "0370", &r);
	ok(rc == 0 && r.apdus.n == 2, "\"0000\" on 9.1 too");
	sei_result_cleanup(&r);
	bad = p;
	bad.tenant_id = (char *)"SP-NOBODY";
	rc = sei_token(&bad, &c, "0011223344556677", raw, 1, &r);
	ok(rc == ERR_DENIED && r.result_code == 1001,
	    "\"1001\" as a string: read as 1001");
	sei_result_cleanup(&r);
}

static void
test_9999(struct fx_sim *sim)
{
	struct tsm_peer p;
	struct sei_result r;
	struct sei_call c = mkcall(NULL, NULL);
	const char *raw[1] = { "00800A4F08A000000999000001" };
	int rc;

	fx_peer(&p, sim);
	rc = sei_ssd_manage(&p, &c, "CREATE_SSD", "0011223344556677",
	    "A000000999000001", "804000", "0370", &r);
	ok(rc == ERR_DENIED && r.result_code == 9999 &&
	    strstr(r.result_message, "simulated SEI-TSM failure") != NULL,
	    "9.1 resultCode 9999: ERR_DENIED with the peer's message (%s)",
	    r.result_message);
	is_int(r.attempts, 1, "9999 is an answer: not retried");
	ok(strstr(r.error, "9999") != NULL, "error text names the code: %s",
	    r.error);
	sei_result_cleanup(&r);
	rc = sei_token(&p, &c, "0011223344556677", raw, 1, &r);
	ok(rc == ERR_DENIED && r.result_code == 9999 && r.attempts == 1,
	    "9.3 resultCode 9999: surfaced, not retried");
	sei_result_cleanup(&r);
	rc = sei_ssd_instructions(&p, &c, "SIM-000001", "0011223344556677", NULL,
	    0, &r);
	ok(rc == ERR_DENIED && r.result_code == 9999, "9.2 resultCode 9999");
	sei_result_cleanup(&r);
}

static void
test_bad_sig(struct fx_sim *sim, const char *what)
{
	struct tsm_peer p;
	struct sei_result r;
	struct sei_call c = mkcall(NULL, NULL);
	const char *raw[1] = { "00800A4F08A000000999000001" };
	int rc;

	fx_peer(&p, sim);
	rc = sei_ssd_manage(&p, &c, "CREATE_SSD", "0011223344556677",
	    "A000000999000001", "804000", "0370", &r);
	ok(rc == ERR_AUTH && r.apdus.n == 0 && r.result_code == -1,
	    "%s on 9.1: refused, nothing of the answer used (%s)", what, r.error);
	sei_result_cleanup(&r);
	rc = sei_token(&p, &c, "0011223344556677", raw, 1, &r);
	ok(rc == ERR_AUTH && r.attempts == 1 && r.tokens.n == 0,
	    "%s on 9.3: refused, not retried", what);
	sei_result_cleanup(&r);
}

static void
test_replayed_answer(struct fx_sim *sim)
{
	struct tsm_peer p;
	struct sei_result r;
	struct sei_call c = mkcall(NULL, NULL);
	const char *raw[1] = { "00800A4F08A000000999000001" };
	int rc;

	fx_peer(&p, sim);
	rc = sei_token(&p, &c, "0011223344556677", raw, 1, &r);
	ok(rc == 0 && r.tokens.n == 1, "first answer accepted");
	sei_result_cleanup(&r);
	rc = sei_token(&p, &c, "0011223344556677", raw, 1, &r);
	ok(rc == ERR_AUTH && strstr(r.error, "replayed") != NULL,
	    "the same signed answer again: refused as a replay (%s)", r.error);
	sei_result_cleanup(&r);
}

static void
test_timeout(struct fx_sim *sim)
{
	struct tsm_peer p, closed;
	struct sei_client_opts o;
	struct sei_result r;
	struct sei_call c;
	const char *raw[1] = { "00800A4F08A000000999000001" };
	const char *resp[1] = { "9000" };
	int rc;

	sei_client_opts_default(&o);
	o.timeout_ms = 600;
	o.backoff_ms = 50;
	c = mkcall(NULL, &o);
	fx_peer(&p, sim);
	rc = sei_ssd_manage(&p, &c, "CREATE_SSD", "0011223344556699",
	    "A000000999000001", "804000", "0370", &r);
	ok(rc == ERR_TIMEOUT && r.attempts == 1 && r.elapsed_ms < 2000,
	    "9.1 times out: ERR_TIMEOUT after 1 attempt (CREATE is not repeated), "
	    "%llu ms", (unsigned long long)r.elapsed_ms);
	sei_result_cleanup(&r);
	rc = sei_ssd_instructions(&p, &c, "SIM-000001", "0011223344556699", resp,
	    1, &r);
	ok(rc == ERR_TIMEOUT && r.attempts == 1, "9.2 times out: 1 attempt");
	sei_result_cleanup(&r);
	rc = sei_token(&p, &c, "0011223344556699", raw, 1, &r);
	ok(rc == ERR_TIMEOUT && r.attempts == 3 && r.elapsed_ms < 4000,
	    "9.3 times out: retried, 3 attempts, gives up cleanly (%llu ms)",
	    (unsigned long long)r.elapsed_ms);
	sei_result_cleanup(&r);
	c.peer_idempotent = 1;
	rc = sei_ssd_instructions(&p, &c, "SIM-000001", "0011223344556699", resp,
	    1, &r);
	ok(rc == ERR_TIMEOUT && r.attempts == 3,
	    "9.2 to a peer declared idempotent: retried (3 attempts)");
	sei_result_cleanup(&r);
	c.peer_idempotent = 0;
	o.deadline_us = now_us() + 900000;
	rc = sei_token(&p, &c, "0011223344556699", raw, 1, &r);
	ok(rc == ERR_TIMEOUT && r.attempts < 3 && r.elapsed_ms < 1500,
	    "a deadline bounds the retries (%u attempts, %llu ms)", r.attempts,
	    (unsigned long long)r.elapsed_ms);
	sei_result_cleanup(&r);
	o.deadline_us = 0;

	/* Nothing listening: the request never left, so even 9.1 is retried. */
	closed = p;
	closed.base_url = (char *)"https://127.0.0.1:9";
	rc = sei_ssd_manage(&closed, &c, "CREATE_SSD", "0011223344556699",
	    "A000000999000001", "804000", "0370", &r);
	ok(rc == ERR_IO && r.attempts == 3, "connection refused: 9.1 retried "
	    "(request never sent), then ERR_IO: %s", r.error);
	sei_result_cleanup(&r);
}

/* Several threads at once, each with its own kmsd connection (as tsmd's
 * workers have) and the process-wide nonce replay cache. */
#define THREADS 6
#define CALLS   4

struct worker {
	struct fx_sim *sim;
	int            good;
};

static void *
worker(void *arg)
{
	struct worker *w = arg;
	struct kms_client *k = NULL;
	struct tsm_peer p;
	struct sei_call c;
	struct sei_result r;
	const char *raw[1] = { "00800A4F08A000000999000001" };
	int i;

	if (kms_connect(&k, E.sock, "seisim-contract-thread") != 0)
		return NULL;
	fx_peer(&p, w->sim);
	memset(&c, 0, sizeof(c));
	c.kms = k;
	for (i = 0; i < CALLS; i++) {
		if (sei_token(&p, &c, "0011223344556677", raw, 1, &r) == 0 &&
		    r.tokens.n == 1 && token_ok(raw[0], r.tokens.v[0]))
			w->good++;
		sei_result_cleanup(&r);
	}
	kms_close(k);
	return NULL;
}

static void
test_threads(struct fx_sim *sim)
{
	pthread_t t[THREADS];
	struct worker w[THREADS];
	int i, good = 0;

	for (i = 0; i < THREADS; i++) {
		w[i].sim = sim;
		w[i].good = 0;
		if (pthread_create(&t[i], NULL, worker, &w[i]) != 0)
			bail("pthread_create");
	}
	for (i = 0; i < THREADS; i++) {
		pthread_join(t[i], NULL);
		good += w[i].good;
	}
	is_int(good, THREADS * CALLS, "%d threads x %d calls at once: every "
	    "token good", THREADS, CALLS);
}

/* ---- seisim's own validation, with raw signed requests ---- */

struct raw {
	long       code;
	struct buf body;
	char       sig[400];
	json_t    *json;
};

static size_t
raw_body(char *p, size_t sz, size_t n, void *u)
{
	struct raw *r = u;

	return buf_put(&r->body, p, sz * n) == 0 ? sz * n : 0;
}

static size_t
raw_hdr(char *p, size_t sz, size_t n, void *u)
{
	struct raw *r = u;
	size_t l = sz * n;

	if (l > 17 && strncasecmp(p, "X-TSM-Signature: ", 17) == 0)
		snprintf(r->sig, sizeof(r->sig), "%.*s", (int)(l - 19), p + 17);
	return l;
}

/* HMAC-SHA256(test MAC key, METHOD\nPATH\nts\nnonce\nhex(SHA-256(body))) */
static void
mac_hex(const char *method, const char *path, long long ts, const char *nonce,
    const void *body, size_t n, char hex[65])
{
	uint8_t md[32], mac[32];
	unsigned int ml;
	char bh[65], msg[800];
	int len;

	EVP_Digest(body, n, md, &ml, EVP_sha256(), NULL);
	hex_encode(md, 32, bh);
	len = snprintf(msg, sizeof(msg), "%s\n%s\n%lld\n%s\n%s", method, path, ts,
	    nonce, bh);
	HMAC(EVP_sha256(), kmsenv_mac, 32, (const uint8_t *)msg, (size_t)len, mac,
	    &ml);
	hex_encode(mac, 32, hex);
}

enum { S_GOOD = 0, S_NONE, S_FLIP, S_STALE, S_KEYID, S_REPLAY };

static void
raw_post(struct fx_sim *sim, const char *method, const char *path,
    const char *body, int how, struct raw *r)
{
	static char last_nonce[33];
	CURL *h = curl_easy_init();
	struct curl_slist *hl = NULL;
	char url[300], hx[65], nonce[33], line[400];
	uint8_t nb[16];
	long long ts = (long long)wall_seconds() - (how == S_STALE ? 301 : 0);

	memset(r, 0, sizeof(*r));
	buf_init(&r->body);
	if (how == S_REPLAY) {
		memcpy(nonce, last_nonce, sizeof(nonce));
	} else {
		if (RAND_bytes(nb, 16) != 1)
			bail("rand");
		hex_encode(nb, 16, nonce);
		memcpy(last_nonce, nonce, sizeof(nonce));
	}
	mac_hex(method, path, ts, nonce, body, strlen(body), hx);
	if (how == S_FLIP)
		hx[0] = hx[0] == 'a' ? 'b' : 'a';
	snprintf(line, sizeof(line), "X-TSM-Signature: keyId=%s,ts=%lld,nonce=%s,"
	    "sig=%s", how == S_KEYID ? "other-key" : FX_KEY_ID, ts, nonce, hx);
	if (how != S_NONE)
		hl = curl_slist_append(hl, line);
	hl = curl_slist_append(hl, "Content-Type: application/json");
	snprintf(url, sizeof(url), "%s%s", sim->url, path);
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_CAINFO, sim->ca);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, hl);
	curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
	if (strcmp(method, "POST") == 0)
		curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, raw_body);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, r);
	curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, raw_hdr);
	curl_easy_setopt(h, CURLOPT_HEADERDATA, r);
	curl_easy_setopt(h, CURLOPT_TIMEOUT, 10L);
	if (curl_easy_perform(h) == CURLE_OK)
		curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &r->code);
	curl_slist_free_all(hl);
	curl_easy_cleanup(h);
	r->json = json_loadb((const char *)r->body.p, r->body.len, 0, NULL);
}

static void
raw_free(struct raw *r)
{
	buf_free(&r->body);
	json_decref(r->json);
}

static long
rcode(const struct raw *r)
{
	json_t *v = json_object_get(r->json, "resultCode");

	return json_is_integer(v) ? (long)json_integer_value(v) : -1;
}

static const char *
rmsg(const struct raw *r)
{
	const char *m = json_string_value(json_object_get(r->json,
	    "resultMessage"));

	return m ? m : "";
}

/* The answer's signature, checked here over the request's method/path. */
static int
answer_signed(const struct raw *r, const char *path)
{
	char kid[80], nonce[40], sig[80], want[65];
	long long ts;

	if (sscanf(r->sig, "keyId=%79[^,],ts=%lld,nonce=%39[^,],sig=%79[0-9a-f]",
	    kid, &ts, nonce, sig) != 4)
		return 0;
	mac_hex("POST", path, ts, nonce, r->body.p, r->body.len, want);
	return strcmp(kid, FX_KEY_ID) == 0 && strcmp(sig, want) == 0;
}

static void
check(struct fx_sim *sim, const char *path, const char *body, int how,
    long want_http, long want_rc, const char *msg_has, const char *what)
{
	struct raw r;

	raw_post(sim, "POST", path, body, how, &r);
	ok(r.code == want_http && rcode(&r) == want_rc &&
	    (msg_has == NULL || strstr(rmsg(&r), msg_has) != NULL),
	    "%s: HTTP %ld resultCode %ld (%s)", what, r.code, rcode(&r), rmsg(&r));
	if (want_http == 401)
		ok(r.sig[0] == '\0', "%s: refusal is not signed", what);
	else
		ok(answer_signed(&r, path), "%s: answer signed", what);
	raw_free(&r);
}

static void
test_validation(struct fx_sim *sim)
{
	const char *good = "{\"tenantId\":\"" FX_TENANT "\",\"optType\":"
	    "\"CREATE_SSD\",\"seId\":\"0011223344550001\",\"sdAid\":"
	    "\"A000000999000001\",\"expPrivilege\":\"804000\",\"scpConfig\":"
	    "\"0370\"}";
	struct raw r;

	check(sim, "/ssd/manage", good, S_NONE, 401, 1006, "signature_missing",
	    "no X-TSM-Signature");
	check(sim, "/ssd/manage", good, S_FLIP, 401, 1006, "signature_invalid",
	    "a wrong MAC");
	check(sim, "/ssd/manage", good, S_STALE, 401, 1006, "signature_expired",
	    "ts 301 s old");
	check(sim, "/ssd/manage", good, S_KEYID, 401, 1006, "unknown_key_id",
	    "another keyId");
	check(sim, "/ssd/manage", good, S_GOOD, 200, 0, "OK", "a good request");
	check(sim, "/ssd/manage", good, S_REPLAY, 401, 1006, "replay",
	    "the same nonce again");
	check(sim, "/ssd/manage", "{\"tenantId\":", S_GOOD, 400, 1000, "JSON",
	    "body not JSON");
	check(sim, "/ssd/manage", "{\"tenantId\":\"" FX_TENANT "\",\"optType\":"
	    "\"CREATE_SSD\",\"sdAid\":\"A000000999000001\",\"expPrivilege\":"
	    "\"804000\",\"scpConfig\":\"0370\"}", S_GOOD, 200, 1000, "seId",
	    "missing seId");
	check(sim, "/ssd/manage", "{\"tenantId\":\"SP-OTHER\",\"optType\":"
	    "\"CREATE_SSD\",\"seId\":\"0011223344550002\",\"sdAid\":"
	    "\"A000000999000001\",\"expPrivilege\":\"804000\",\"scpConfig\":"
	    "\"0370\"}", S_GOOD, 200, 1001, "tenantId", "unknown tenantId");
	check(sim, "/ssd/manage", "{\"seId\":\"0011223344550002\"}", S_GOOD, 200,
	    1000, "tenantId", "missing tenantId");
	check(sim, "/ssd/manage", "{\"tenantId\":\"" FX_TENANT "\",\"optType\":"
	    "\"MOVE_SSD\",\"seId\":\"0011223344550002\",\"sdAid\":"
	    "\"A000000999000001\",\"scpConfig\":\"0370\"}", S_GOOD, 200, 1003,
	    "optType", "unknown optType");
	check(sim, "/ssd/manage", "{\"tenantId\":\"" FX_TENANT "\",\"optType\":"
	    "\"CREATE_SSD\",\"seId\":\"0011223344550002\",\"sdAid\":\"A0000009\","
	    "\"expPrivilege\":\"804000\",\"scpConfig\":\"0370\"}", S_GOOD, 200,
	    1000, "sdAid", "sdAid of 4 bytes");
	check(sim, "/ssd/manage", "{\"tenantId\":\"" FX_TENANT "\",\"optType\":"
	    "\"CREATE_SSD\",\"seId\":\"0011223344550002\",\"sdAid\":"
	    "\"A000000999000001\",\"scpConfig\":\"0370\"}", S_GOOD, 200, 1000,
	    "expPrivilege", "CREATE_SSD without expPrivilege");
	check(sim, "/ssd/manage", "{\"tenantId\":\"" FX_TENANT "\",\"optType\":"
	    "\"CREATE_SSD\",\"seId\":\"0011223344550002\",\"sdAid\":"
	    "\"A000000999000001\",\"expPrivilege\":\"004000\",\"scpConfig\":"
	    "\"0370\"}", S_GOOD, 200, 1000, "Security Domain",
	    "expPrivilege without the SD privilege");
	check(sim, "/ssd/manage", "{\"tenantId\":\"" FX_TENANT "\",\"optType\":"
	    "\"CREATE_SSD\",\"seId\":\"0011223344550002\",\"sdAid\":"
	    "\"A000000999000001\",\"expPrivilege\":\"804000\"}", S_GOOD, 200, 1000,
	    "scpConfig", "missing scpConfig");
	check(sim, "/ssd/manage", "{\"tenantId\":\"" FX_TENANT "\",\"optType\":"
	    "\"CREATE_SSD\",\"seId\":\"0011223344550002\",\"sdAid\":"
	    "\"A000000999000001\",\"expPrivilege\":\"804000\",\"scpConfig\":"
	    "\"0399\"}", S_GOOD, 200, 1004, "unsupported", "SCP03 with i=99");
	check(sim, "/ssd/manage", "{\"tenantId\":\"" FX_TENANT "\",\"optType\":"
	    "\"CREATE_SSD\",\"seId\":\"0011223344550001\",\"sdAid\":"
	    "\"A000000999000002\",\"expPrivilege\":\"804000\",\"scpConfig\":"
	    "\"0370\"}", S_GOOD, 200, 1005, "busy",
	    "a second task on an SE with a running one");
	check(sim, "/ssd/instructions", "{\"tenantId\":\"" FX_TENANT "\","
	    "\"taskId\":\"SIM-777777\",\"seId\":\"0011223344550001\","
	    "\"respList\":[\"9000\"]}", S_GOOD, 200, 1002, "unknown taskId",
	    "unknown taskId");
	check(sim, "/ssd/instructions", "{\"tenantId\":\"" FX_TENANT "\","
	    "\"taskId\":\"SIM-777777\",\"seId\":\"0011223344550001\"}", S_GOOD,
	    200, 1000, "respList", "missing respList");
	check(sim, "/ssd/instructions", "{\"tenantId\":\"" FX_TENANT "\","
	    "\"taskId\":\"SIM-777777\",\"seId\":\"0011223344550001\","
	    "\"respList\":[\"90G0\"]}", S_GOOD, 200, 1000, "respList[0]",
	    "respList element not hex");
	check(sim, "/ssd/instructions", "{\"tenantId\":\"SP-OTHER\","
	    "\"taskId\":\"SIM-000001\",\"seId\":\"0011223344550001\","
	    "\"respList\":[]}", S_GOOD, 200, 1001, "tenantId",
	    "9.2 unknown tenantId");
	check(sim, "/token", "{\"tenantId\":\"" FX_TENANT "\",\"optType\":"
	    "\"CREATE_TOKEN\",\"seId\":\"0011223344550001\"}", S_GOOD, 200, 1000,
	    "rawData", "9.3 without rawData");
	check(sim, "/token", "{\"tenantId\":\"" FX_TENANT "\",\"optType\":"
	    "\"SIGN\",\"seId\":\"0011223344550001\",\"rawData\":[\"008000\"]}",
	    S_GOOD, 200, 1003, "optType", "9.3 unknown optType");
	check(sim, "/token", "{\"tenantId\":\"" FX_TENANT "\",\"optType\":"
	    "\"CREATE_TOKEN\",\"seId\":\"0011223344550001\",\"rawData\":[\"00\"]}",
	    S_GOOD, 200, 1000, "rawData[0]", "9.3 rawData shorter than P1 P2 Lc");
	check(sim, "/token", "{\"tenantId\":\"" FX_TENANT "\",\"optType\":"
	    "\"CREATE_TOKEN\",\"seId\":\"0011223344550001\",\"rawData\":"
	    "[\"008000\"]}", S_GOOD, 200, 0, "OK", "9.3 good request");
	raw_post(sim, "GET", "/ssd/manage", "", S_GOOD, &r);
	is_int(r.code, 405, "GET on a POST endpoint: 405");
	raw_free(&r);
	raw_post(sim, "POST", "/ssd/other", "{}", S_GOOD, &r);
	is_int(r.code, 404, "unknown endpoint: 404");
	raw_free(&r);
	raw_post(sim, "GET", "/healthz", "", S_NONE, &r);
	ok(r.code == 200 && json_is_object(r.json), "/healthz: 200");
	raw_free(&r);
}

int
main(void)
{
	static const char *const f_str[] = { "--fault", "string-resultcode", NULL };
	static const char *const f_9999[] = { "--fault", "result-9999", NULL };
	static const char *const f_bad[] = { "--fault", "bad-signature", NULL };
	static const char *const f_stale[] = { "--fault", "stale-signature", NULL };
	static const char *const f_rep[] = { "--fault", "replay-answer", NULL };
	static const char *const f_slow[] = { "--fault", "timeout",
		"--fault-delay-ms", "3000", NULL };
	struct fx_sim sim, s_str, s_9999, s_bad, s_stale, s_rep, s_slow;
	char sdir[600];

	log_init("seisim_contract_test", LOG_ERR);
	if (sei_client_init() != 0)
		bail("curl");
	if (kmsenv_setup(&E, 0) != 0)
		bail("kmsenv_setup");
	if (kmsenv_start(&E, NULL) != 0)
		bail("kmsd did not start (%s)", E.log);
	if (kms_connect(&kc, E.sock, "seisim-contract-test") != 0)
		bail("kms_connect");
	snprintf(sdir, sizeof(sdir), "%s/store", E.dir);
	if (store_open(&st, sdir, NULL) != 0)
		bail("store_open");
	snprintf(material, sizeof(material), "%s/sei-test.json", E.dir);
	fx_material(material, "AES-KW", "GP", "");
	fx_sim_start(&sim, E.dir, "sim", material, NULL);
	fx_sim_start(&s_str, E.dir, "sim-str", material, f_str);
	fx_sim_start(&s_9999, E.dir, "sim-9999", material, f_9999);
	fx_sim_start(&s_bad, E.dir, "sim-bad", material, f_bad);
	fx_sim_start(&s_stale, E.dir, "sim-stale", material, f_stale);
	fx_sim_start(&s_rep, E.dir, "sim-rep", material, f_rep);
	fx_sim_start(&s_slow, E.dir, "sim-slow", material, f_slow);

	test_contract(&sim);
	test_threads(&sim);
	test_string_code(&s_str);
	test_9999(&s_9999);
	test_bad_sig(&s_bad, "a wrong answer signature");
	test_bad_sig(&s_stale, "an answer signed 400 s ago");
	test_replayed_answer(&s_rep);
	test_timeout(&s_slow);
	test_validation(&sim);

	is_int(fx_sim_stop(&sim), 0, "seisim: SIGTERM, exit 0");
	fx_sim_stop(&s_str);
	fx_sim_stop(&s_9999);
	fx_sim_stop(&s_bad);
	fx_sim_stop(&s_stale);
	fx_sim_stop(&s_rep);
	is_int(fx_sim_stop(&s_slow), 0, "a seisim in a slow answer stops promptly");
	store_close(st);
	kms_close(kc);
	kmsenv_stop(&E, 0);
	if (tap_failed == 0)
		kmsenv_cleanup(&E);
	else
		diag("kept %s", E.dir);
	sei_client_cleanup();
	return done_testing();
}
