/*
 * http_sig_test.c - X-TSM-Signature header parsing and the signed string
 * (checked against an HMAC computed here with OpenSSL), the nonce replay
 * cache, and the bearer API key store (hash-only file, roles, revoke,
 * reload, first-run admin key).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "tsm/http/http_int.h"
#include "tests/tap.h"

#define NONCE "0123456789abcdef0123456789ABCDEF"
#define SIG64 "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"

static void
test_parse(void)
{
	struct http_sig s;
	static const char *const bad[] = {
		"",
		"keyId=k,ts=1,nonce=" NONCE,				/* no sig */
		"keyId=k,ts=1,nonce=" NONCE ",sig=" SIG64 ",",		/* trailing , */
		"keyId=k,keyId=k,ts=1,nonce=" NONCE ",sig=" SIG64,	/* twice */
		"keyId=k,ts=1,nonce=" NONCE ",sig=" SIG64 ",x=1",	/* unknown */
		"keyId=,ts=1,nonce=" NONCE ",sig=" SIG64,		/* empty id */
		"keyId=k k,ts=1,nonce=" NONCE ",sig=" SIG64,		/* space */
		"keyId=k,ts=-1,nonce=" NONCE ",sig=" SIG64,		/* sign */
		"keyId=k,ts=1234567890123,nonce=" NONCE ",sig=" SIG64,	/* long */
		"keyId=k,ts=1,nonce=0123,sig=" SIG64,			/* short */
		"keyId=k,ts=1,nonce=" NONCE ",sig=zz" SIG64,		/* hex */
		"keyId=k,ts=1,nonce=" NONCE ",sig=" SIG64 "00",		/* long */
		"keyId k,ts=1,nonce=" NONCE ",sig=" SIG64,		/* no = */
		"KEYID=k,ts=1,nonce=" NONCE ",sig=" SIG64,		/* case */
	};
	size_t i;

	is_int(http_sig_parse("keyId=sei1-mac,ts=1700000000,nonce=" NONCE ",sig="
	    SIG64, &s), 0, "well-formed header");
	ok(strcmp(s.key_id, "sei1-mac") == 0 && s.ts == 1700000000 &&
	    strcmp(s.nonce, "0123456789abcdef0123456789abcdef") == 0 &&
	    s.sig[0] == 0x00 && s.sig[31] == 0xff, "fields (nonce lowercased)");
	is_int(http_sig_parse("sig=" SIG64 ", nonce=" NONCE ",ts=5 ,keyId=a.b:c",
	    &s), 0, "any order, blanks around fields");
	ok(strcmp(s.key_id, "a.b:c") == 0 && s.ts == 5, "values");
	for (i = 0; i < ARRAY_LEN(bad); i++)
		is_int(http_sig_parse(bad[i], &s), ERR_PARSE, "refused #%zu", i);
	is_int(http_sig_parse(NULL, &s), ERR_PARSE, "NULL");
}

static void
test_input(void)
{
	static const uint8_t key[32] = { 1, 2, 3 };
	const char *body = "{\"a\":1}";
	uint8_t md[32], mac[32];
	unsigned int ml;
	char hx[65], want[400];
	struct buf b;

	buf_init(&b);
	EVP_Digest(body, strlen(body), md, &ml, EVP_sha256(), NULL);
	hex_encode(md, 32, hx);
	snprintf(want, sizeof(want), "POST\n/api/v1/sei/key-sync\n1700000000\n%s\n%s",
	    "00112233445566778899aabbccddeeff", hx);
	if (http_sig_input(&b, "POST", "/api/v1/sei/key-sync", 1700000000,
	    "00112233445566778899aabbccddeeff", (const uint8_t *)body,
	    strlen(body)) != 0)
		bail("sig_input");
	ok(b.len == strlen(want) && memcmp(b.p, want, b.len) == 0,
	    "signed string: METHOD\\nPATH\\nts\\nnonce\\nhex(SHA-256(body))");
	HMAC(EVP_sha256(), key, sizeof(key), b.p, b.len, mac, &ml);
	ok(ml == 32, "HMAC-SHA256 over it is what a peer computes");
	buf_reset(&b);
	if (http_sig_input(&b, "GET", "/x", 1, "n", NULL, 0) != 0)
		bail("sig_input empty");
	ok(b.len > 64 && memcmp(b.p + b.len - 64,
	    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", 64)
	    == 0, "empty body hashes as SHA-256(\"\")");
	buf_free(&b);
}

/* SHA-256 with the digest fetched once (FIPS 180-2 "abc"), and nonces from
 * the per-thread pool across its refills. */
static void
test_sha_nonce(void)
{
	static const char abc[] = "ba7816bf8f01cfea414140de5dae2223"
	    "b00361a396177a9cb410ff61f20015ad";
	char n[100][33], hx[65];
	uint8_t md[32];
	int i, j, bad = 0, same = 0;

	if (sha256_of("abc", 3, md) != 0)
		bail("sha256");
	hex_encode(md, 32, hx);
	ok(strcmp(hx, abc) == 0, "http_sha256: the FIPS 180-2 \"abc\" vector");
	for (i = 0; i < 100; i++) {
		if (http_sig_nonce(n[i]) != 0)
			bail("nonce");
		bad += strlen(n[i]) != 32 ||
		    strspn(n[i], "0123456789abcdef") != 32;
	}
	for (i = 0; i < 100; i++)
		for (j = i + 1; j < 100; j++)
			same += strcmp(n[i], n[j]) == 0;
	is_int(bad, 0, "100 nonces (three pool refills): 32 lowercase hex each");
	is_int(same, 0, "no two alike");
}

static void
test_nonce(void)
{
	int64_t now = 1700000000;
	char n[40];
	int i, rc = 0;

	is_int(http_nonce_check("k1", NONCE, now, now), 0, "new nonce");
	is_int(http_nonce_check("k1", NONCE, now, now + 10), ERR_EXISTS,
	    "replayed nonce");
	is_int(http_nonce_check("k2", NONCE, now, now), 0,
	    "same nonce under another keyId is new");
	is_int(http_nonce_check("k1", NONCE, now, now + HTTP_SIG_WINDOW_S + 1), 0,
	    "forgotten after the window (the ts check refuses it by then)");
	for (i = 0; i < 5000 && rc == 0; i++) {
		snprintf(n, sizeof(n), "%032x", i);
		rc = http_nonce_check("bulk", n, now, now);
	}
	is_int(rc, 0, "5000 distinct nonces stored");
	snprintf(n, sizeof(n), "%032x", 4321);
	is_int(http_nonce_check("bulk", n, now, now + 1), ERR_EXISTS,
	    "and each is still remembered");
	http_nonce_cleanup();
}

static void
test_apikeys(void)
{
	char dir[] = "/tmp/sptsm-test-XXXXXX", path[200], adm[200], key[80];
	char pkey[80], pid[24];
	struct http_apikeys *ak, *ak2;
	struct http_identity who;
	struct buf b;
	struct stat st;
	int created;

	if (mkdtemp(dir) == NULL)
		bail("mkdtemp");
	snprintf(path, sizeof(path), "%s/apikeys", dir);
	snprintf(adm, sizeof(adm), "%s/admin.key", dir);
	is_int(http_apikeys_open(&ak, path), 0, "missing key file: empty set");
	is_int(http_apikeys_bootstrap(ak, adm, &created), 0, "bootstrap");
	ok(created == 1, "first run creates an admin key");
	ok(stat(adm, &st) == 0 && (st.st_mode & 0777) == 0600, "admin.key mode 0600");
	ok(stat(path, &st) == 0 && (st.st_mode & 0777) == 0600, "key file mode 0600");
	buf_init(&b);
	if (file_read_all(adm, 200, &b) != 0 || b.len != 70 || b.p[69] != '\n')
		bail("admin.key content");
	memcpy(key, b.p, 69);
	key[69] = '\0';
	ok(strncmp(key, "tsmk_", 5) == 0, "one line: tsmk_ + 64 hex");
	if (file_read_all(path, 4096, &b) != 0)
		bail("key file");
	ok(memmem(b.p, b.len, key + 5, 64) == NULL, "the key file holds no key");
	is_int(http_apikeys_check(ak, key, &who), 0, "admin key accepted");
	ok(who.role == HTTP_ROLE_ADMIN && who.key_id[0] == 'k', "role admin");
	is_int(http_apikeys_bootstrap(ak, adm, &created), 0, "second bootstrap");
	ok(created == 0, "does nothing once the key file exists");

	is_int(http_apikeys_create(ak, HTTP_ROLE_PROVIDER, "acme", pkey,
	    sizeof(pkey), pid, sizeof(pid)), 0, "provider key created");
	is_int(http_apikeys_check(ak, pkey, &who), 0, "provider key accepted");
	ok(who.role == HTTP_ROLE_PROVIDER && strcmp(who.provider, "acme") == 0 &&
	    strcmp(who.key_id, pid) == 0, "role provider, provider id, key id");
	is_int(http_apikeys_create(ak, HTTP_ROLE_PROVIDER, "bad id", pkey,
	    sizeof(pkey), pid, sizeof(pid)), ERR_INVAL, "bad provider id refused");
	is_int(http_apikeys_create(ak, HTTP_ROLE_PROVIDER, NULL, pkey, sizeof(pkey),
	    pid, sizeof(pid)), ERR_INVAL, "provider without id refused");
	is_int(http_apikeys_check(ak, "tsmk_0000", &who), ERR_AUTH, "unknown key");
	is_int(http_apikeys_check(ak, "", &who), ERR_AUTH, "empty key");
	key[10] ^= 1;
	is_int(http_apikeys_check(ak, key, &who), ERR_AUTH, "one character off");
	key[10] ^= 1;

	is_int(http_apikeys_open(&ak2, path), 0, "file reopened");
	is_int(http_apikeys_check(ak2, pkey, &who), 0, "keys persisted");
	is_int(http_apikeys_revoke(ak, who.key_id), 0, "revoke");
	is_int(http_apikeys_check(ak, pkey, &who), ERR_AUTH, "revoked key refused");
	is_int(http_apikeys_revoke(ak, "knope"), ERR_NOTFOUND, "unknown id");
	is_int(http_apikeys_reload(ak2), 0, "reload");
	is_int(http_apikeys_check(ak2, pkey, &who), ERR_AUTH,
	    "reload sees the revocation");
	is_int(http_apikeys_check(ak2, key, &who), 0, "and keeps the admin key");
	if (file_write_atomic(path, "garbage line\n", 13, 0600) != 0)
		bail("write");
	ok(http_apikeys_reload(ak2) != 0, "a broken file is refused");
	is_int(http_apikeys_check(ak2, key, &who), 0, "the old set stays");
	http_apikeys_free(ak);
	ok(http_apikeys_open(&ak, path) == ERR_PARSE, "opening a broken file fails");
	http_apikeys_free(ak2);
	buf_free(&b);
	ok(http_role_parse("admin") == HTTP_ROLE_ADMIN &&
	    http_role_parse("root") == HTTP_ROLE_NONE &&
	    strcmp(http_role_name(HTTP_ROLE_PROVIDER), "provider") == 0, "role names");
	snprintf(path, sizeof(path), "rm -rf %s", dir);
	(void)!system(path);
}

int
main(void)
{
	log_set_level(-1);	/* the broken-file cases log errors on purpose */
	test_parse();
	test_input();
	test_sha_nonce();
	test_nonce();
	test_apikeys();
	return done_testing();
}
