/*
 * p11_test.c - the PKCS#11 layer against a real SoftHSM2 token in a temp
 * directory: token selection by URI, login errors, the mechanism probe,
 * known answers (RFC 4493 CMAC, SP 800-38A ECB/CBC, RFC 3394 KW, RFC 4231
 * HMAC), ECDSA checked with OpenSSL, derivation, handle cache, threads,
 * the fork-safe getpid cache.
 */
#include <pthread.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/core_names.h>
#include <openssl/param_build.h>
#include <openssl/sha.h>

#include "kms/base.h"
#include "pkcs11/p11.h"
#include "tests/tap.h"
#include "tests/testenv.h"

static struct p11 *P;
#define DESTROY(o) do { if (p11_destroy(P, (o)) != 0) diag("destroy failed"); } while (0)

static void
unhex(const char *h, uint8_t *out, size_t *n)
{
	if (hex_decode(h, strlen(h), out, 256, n) != 0)
		bail("bad hex in test");
}

static void
test_open(void)
{
	struct p11 *q = NULL;
	uint32_t caps;
	char rep[512];

	if (p11_open_uninitialized(&q, NULL) != 0)
		bail("no free SoftHSM2 slot");
	{
		int inited = 0;

		ok(p11_init_token(q, "p11test", TEST_SO_PIN, TEST_USER_PIN,
		    &inited) == 0 && inited == 1, "token initialised (and says so)");
	}
	p11_close(q);

	ok(p11_open(&q, NULL, "pkcs11:token=nosuch") == ERR_NOTFOUND,
	    "URI naming another token: ERR_NOTFOUND");
	ok(p11_open(&q, NULL, "http://x") == ERR_PARSE, "non-pkcs11 URI: ERR_PARSE");
	ok(p11_open(&q, "/nonexistent/module.so", NULL) == ERR_NOTFOUND,
	    "missing module: ERR_NOTFOUND");
	ok(p11_open(&q, "no-such-registered-module", NULL) == ERR_NOTFOUND,
	    "unknown registered module name: ERR_NOTFOUND");
	if (p11_open(&P, NULL, "pkcs11:token=p11test") != 0)
		bail("open by URI");
	ok(strcmp(p11_token_label(P), "p11test") == 0, "selected by token label");
	ok(p11_login(P, "wrong-pin", 9) == ERR_P11_PIN, "wrong PIN: ERR_P11_PIN");
	ok(strstr(p11_last_error(), "CKR_PIN_INCORRECT") != NULL,
	    "last error names the CKR: %s", p11_last_error());
	ok(p11_probe(P, &caps, rep, sizeof(rep)) == ERR_SEALED,
	    "probe needs a login");
	if (p11_login(P, TEST_USER_PIN, strlen(TEST_USER_PIN)) != 0)
		bail("login");
	ok(p11_probe(P, &caps, rep, sizeof(rep)) == 0, "probe runs");
	diag("SoftHSM2 probe: %s", rep);
	ok((caps & P11_CAP_REQUIRED) == P11_CAP_REQUIRED,
	    "every required mechanism works");
	ok(caps & P11_CAP_AES_KWP, "AES-KWP works");
	ok(caps & P11_CAP_ECB_DERIVE, "ECB_ENCRYPT_DATA derivation works");
	ok(caps & P11_CAP_ECDSA, "ECDSA works");
	ok(caps & P11_CAP_RSA_OAEP_SHA1, "RSA-OAEP-SHA1 works");
	ok(!(caps & P11_CAP_RSA_OAEP_SHA256),
	    "RSA-OAEP-SHA256 reported missing (SoftHSM2 fact)");
	diag("AES-192 (ECB and CMAC known answers) %s on this token",
	    caps & P11_CAP_AES_192 ? "works" : "does not work");
	ok(!(caps & P11_CAP_SP800_108), "SP 800-108 KDF reported missing");
	ok(!(caps & P11_CAP_TRUSTED_WRAP), "user cannot set CKA_TRUSTED");
	ok(strstr(rep, "rsa-oaep-sha256") != NULL &&
	    strstr(rep, "sp800-108-counter-kdf") != NULL,
	    "report lists what is missing");
}

static void
test_kat(void)
{
	struct p11_keyspec s = { .usage = P11_SIGN | P11_ENCRYPT | P11_DECRYPT |
	    P11_WRAP | P11_UNWRAP };
	struct p11_keyspec ext = { .extractable = 1, .usage = P11_ENCRYPT |
	    P11_SIGN };
	uint8_t key[64], in[64], out[64], iv[16];
	size_t kl, il, ol;
	p11_obj k, u, h;

	unhex("2b7e151628aed2a6abf7158809cf4f3c", key, &kl);
	ok(p11_secret_import(P, CKK_AES, key, kl, &s, &k) == 0, "import AES key");
	ok(p11_cmac(P, k, NULL, 0, out) == 0, "CMAC empty");
	is_hex(out, 16, "bb1d6929e95937287fa37d129b756746", "RFC 4493 example 1");
	unhex("6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e51"
	    "30c81c46a35ce411", in, &il);
	ok(p11_cmac(P, k, in, il, out) == 0, "CMAC 40 bytes");
	is_hex(out, 16, "dfa66747de9ae63030ca32611497c827", "RFC 4493 example 3");
	ok(p11_aes_encrypt(P, k, P11_ECB, NULL, in, 32, out) == 0, "ECB");
	is_hex(out, 32, "3ad77bb40d7a3660a89ecaf32466ef97f5d3d58503b9699de785895a96fdbaaf",
	    "SP 800-38A F.1.1 ECB-AES128");
	unhex("000102030405060708090a0b0c0d0e0f", iv, &ol);
	ok(p11_aes_encrypt(P, k, P11_CBC, iv, in, 32, out) == 0, "CBC");
	is_hex(out, 32, "7649abac8119b246cee98e9b12e9197d5086cb9b507219ee95db113a917678b2",
	    "SP 800-38A F.2.1 CBC-AES128");
	ok(p11_aes_decrypt(P, k, P11_CBC, iv, out, 32, out) == 0 &&
	    memcmp(out, in, 32) == 0, "CBC decrypt round trip in place");
	ok(p11_aes_encrypt(P, k, P11_CBC, iv, in, 15, out) == ERR_INVAL,
	    "non-block length refused");
	ok(p11_destroy(P, k) == 0, "destroy");
	ok(p11_cmac(P, k, in, 16, out) == ERR_HANDLE, "destroyed key: ERR_HANDLE");

	/* RFC 3394 §4.1: 128-bit KEK, 128-bit key. */
	unhex("000102030405060708090a0b0c0d0e0f", key, &kl);
	ok(p11_secret_import(P, CKK_AES, key, kl, &s, &k) == 0, "import KEK");
	unhex("1fa68b0a8112b447aef34bd8fb5a7b829d3e862371d2cfe5", in, &il);
	ok(p11_unwrap(P, P11_WRAP_AES_KW, k, in, il, CKK_AES, 16, &ext, &u) == 0,
	    "RFC 3394 unwrap");
	memset(iv, 0, 16);
	ok(p11_aes_encrypt(P, u, P11_ECB, NULL, iv, 16, out) == 0, "use unwrapped key");
	/* AES(00112233445566778899aabbccddeeff, 0^16) */
	is_hex(out, 16, "fde4fbae4a09e020eff722969f83832b",
	    "unwrapped key has the RFC 3394 value");
	ol = sizeof(out);
	ok(p11_wrap(P, P11_WRAP_AES_KW, k, u, out, &ol) == 0 && ol == 24,
	    "re-wrap");
	is_hex(out, 24, "1fa68b0a8112b447aef34bd8fb5a7b829d3e862371d2cfe5",
	    "RFC 3394 wrap output");
	in[5] ^= 1;
	{
		int rc = p11_unwrap(P, P11_WRAP_AES_KW, k, in, il, CKK_AES, 16, &ext, &h);
		ok(rc == ERR_UNWRAP, "tampered wrapped key: ERR_UNWRAP (%s, %s)", err_name(rc), p11_last_error());
	}
	ok(p11_unwrap(P, P11_WRAP_AES_KW, k, in, 7, CKK_AES, 16, &ext, &h) != 0,
	    "short wrapped key refused");
	ol = sizeof(out);
	ok(p11_wrap(P, P11_WRAP_AES_KWP, k, u, out, &ol) == 0 &&
	    p11_unwrap(P, P11_WRAP_AES_KWP, k, out, ol, CKK_AES, 16, &ext, &h) == 0,
	    "KWP round trip");
	DESTROY(h);
	DESTROY(u);
	DESTROY(k);

	/* RFC 4231 test case 7 (131-byte key). */
	{
		struct p11_keyspec hs = { .usage = P11_SIGN | P11_VERIFY };
		static const char msg[] = "This is a test using a larger than "
		    "block-size key and a larger than block-size data. The key "
		    "needs to be hashed before being used by the HMAC algorithm.";
		uint8_t hk[131];

		memset(hk, 0xaa, sizeof(hk));
		ok(p11_secret_import(P, CKK_GENERIC_SECRET, hk, sizeof(hk), &hs,
		    &h) == 0, "import HMAC key");
		ok(p11_hmac_sha256(P, h, (const uint8_t *)msg, strlen(msg), out) == 0,
		    "HMAC");
		is_hex(out, 32, "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2",
		    "RFC 4231 test case 7");
		ok(p11_hmac_sha256_verify(P, h, (const uint8_t *)msg, strlen(msg),
		    out) == 0, "HMAC verify");
		out[0] ^= 1;
		ok(p11_hmac_sha256_verify(P, h, (const uint8_t *)msg, strlen(msg),
		    out) == ERR_AUTH, "wrong HMAC: ERR_AUTH");
		DESTROY(h);
	}
}

static int
ossl_verify_p256(const struct buf *point, const uint8_t *msg, size_t n,
    const uint8_t *sig)
{
	EVP_PKEY_CTX *pc = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
	OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
	OSSL_PARAM *params;
	EVP_PKEY *pk = NULL;
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	ECDSA_SIG *es = ECDSA_SIG_new();
	unsigned char *der = NULL;
	int dl, r = 0;

	OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME,
	    "prime256v1", 0);
	OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, point->p,
	    point->len);
	params = OSSL_PARAM_BLD_to_param(bld);
	if (EVP_PKEY_fromdata_init(pc) == 1 &&
	    EVP_PKEY_fromdata(pc, &pk, EVP_PKEY_PUBLIC_KEY, params) == 1) {
		ECDSA_SIG_set0(es, BN_bin2bn(sig, 32, NULL),
		    BN_bin2bn(sig + 32, 32, NULL));
		dl = i2d_ECDSA_SIG(es, &der);
		if (EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, pk) == 1)
			r = EVP_DigestVerify(md, der, (size_t)dl, msg, n) == 1;
	}
	OPENSSL_free(der);
	ECDSA_SIG_free(es);
	EVP_MD_CTX_free(md);
	EVP_PKEY_free(pk);
	OSSL_PARAM_free(params);
	OSSL_PARAM_BLD_free(bld);
	EVP_PKEY_CTX_free(pc);
	return r;
}

static void
test_asym_derive(void)
{
	struct p11_keyspec pubs = { .label = "ec-test", .token = 1,
	    .usage = P11_VERIFY };
	struct p11_keyspec privs = { .label = "ec-test", .token = 1,
	    .usage = P11_SIGN };
	struct p11_keyspec der = { .usage = P11_DERIVE };
	struct p11_keyspec dk = { .extractable = 1, .usage = P11_ENCRYPT };
	p11_obj pub, priv, m, d, f1, f2;
	uint8_t sig[128], out[16], data[16];
	size_t sl = sizeof(sig);
	unsigned bits = 0;
	struct buf pt;
	int v;

	buf_init(&pt);
	ok(p11_ec_generate(P, 256, &pubs, &privs, &pub, &priv) == 0,
	    "P-256 token key pair");
	ok(p11_ec_public(P, pub, &bits, &pt) == 0 && bits == 256 && pt.len == 65,
	    "public point exported");
	ok(p11_ecdsa_sign(P, priv, 256, (const uint8_t *)"hello", 5, sig, &sl) == 0 &&
	    sl == 64, "ECDSA sign");
	ok(ossl_verify_p256(&pt, (const uint8_t *)"hello", 5, sig),
	    "OpenSSL verifies the token's signature");
	ok(!ossl_verify_p256(&pt, (const uint8_t *)"hellO", 5, sig),
	    "and rejects it for other data");
	ok(p11_attr_bool(P, priv, CKA_SENSITIVE, &v) == 0 && v == 1,
	    "private key sensitive");
	ok(p11_attr_bool(P, priv, CKA_EXTRACTABLE, &v) == 0 && v == 0,
	    "private key not extractable");
	{
		struct p11_keyspec ps = { .usage = P11_VERIFY };
		struct buf pt2;
		p11_obj po = 0;

		buf_init(&pt2);
		ok(p11_ec_public_create(P, 256, pt.p, pt.len, &ps, &po) == 0 &&
		    p11_ec_public(P, po, &bits, &pt2) == 0 && bits == 256 &&
		    pt2.len == pt.len && memcmp(pt2.p, pt.p, pt.len) == 0,
		    "public point imported and read back");
		DESTROY(po);
		/* A point of another curve's length would get a wrong DER
		 * length; refused before the token sees it. */
		ok(p11_ec_public_create(P, 384, pt.p, pt.len, &ps, &po) ==
		    ERR_INVAL && p11_ec_public_create(P, 256, pt.p, 64, &ps,
		    &po) == ERR_INVAL, "point of the wrong length: ERR_INVAL");
		buf_free(&pt2);
	}

	/* Handle cache: find, drop, find again. */
	ok(p11_find(P, CKO_PRIVATE_KEY, "ec-test", NULL, 0, &f1) == 0 && f1 == priv,
	    "find by label");
	ok(p11_find(P, CKO_PRIVATE_KEY, "ec-test", NULL, 0, &f2) == 0 && f2 == f1,
	    "cached");
	ok(p11_find(P, CKO_PRIVATE_KEY, "nope", NULL, 0, &f2) == ERR_NOTFOUND,
	    "unknown label: ERR_NOTFOUND");
	ok(p11_destroy(P, priv) == 0, "destroy token key");
	p11_cache_drop(P, CKO_PRIVATE_KEY, "ec-test", NULL, 0);
	ok(p11_find(P, CKO_PRIVATE_KEY, "ec-test", NULL, 0, &f2) == ERR_NOTFOUND,
	    "gone after drop");
	DESTROY(pub);
	buf_free(&pt);

	/* Derivation: in-token only, derived keys never extractable. */
	ok(p11_aes_generate(P, 16, &der, &m) == 0, "derive-only master key");
	memset(data, 0x11, sizeof(data));
	ok(p11_derive_ecb(P, m, data, 16, &dk, &d) == 0, "ECB_ENCRYPT_DATA derive");
	ok(p11_attr_bool(P, d, CKA_SENSITIVE, &v) == 0 && v == 1,
	    "derived key sensitive");
	{
		struct buf val;

		buf_init(&val);
		ok(p11_attr_bytes(P, d, CKA_VALUE, &val) != 0,
		    "derived key value cannot be read");
		buf_free(&val);
	}
	ok(p11_aes_encrypt(P, d, P11_ECB, NULL, data, 16, out) == 0,
	    "derived key usable");
	{
		struct p11_keyspec noder = { .usage = P11_ENCRYPT };
		p11_obj nd, x;

		ok(p11_aes_generate(P, 16, &noder, &nd) == 0 &&
		    p11_derive_ecb(P, nd, data, 16, &dk, &x) == ERR_KEYCLASS,
		    "derive from a key without CKA_DERIVE refused");
		DESTROY(nd);
	}
	DESTROY(d);
	DESTROY(m);
}

static p11_obj thread_key;

static void *
worker(void *arg)
{
	uint8_t mac[16], exp[16];
	long bad = 0;
	int i;

	(void)arg;
	if (p11_cmac(P, thread_key, (const uint8_t *)"x", 1, exp) != 0)
		return (void *)1;
	for (i = 0; i < 2000; i++) {
		if (p11_cmac(P, thread_key, (const uint8_t *)"x", 1, mac) != 0 ||
		    memcmp(mac, exp, 16) != 0)
			bad++;
	}
	return (void *)bad;
}

static void
test_threads(void)
{
	struct p11_keyspec s = { .usage = P11_SIGN };
	pthread_t t[4];
	void *r;
	long bad = 0;
	int i;

	if (p11_aes_generate(P, 16, &s, &thread_key) != 0)
		bail("keygen");
	for (i = 0; i < 4; i++)
		pthread_create(&t[i], NULL, worker, NULL);
	for (i = 0; i < 4; i++) {
		pthread_join(t[i], &r);
		bad += (long)r;
	}
	ok(bad == 0, "4 threads x 2000 CMACs, each on its own session, no error");
}

/* ---- the cached getpid (pkcs11/pid.c) ---- */

static volatile int pid_stop;

static void *
pid_spinner(void *arg)
{
	long bad = 0;

	(void)arg;
	while (!pid_stop)
		bad += getpid() != (pid_t)syscall(SYS_getpid);
	return (void *)bad;
}

/*
 * With p11_pid_cache getpid() is cached; a child must still see its own
 * pid, also while another thread keeps filling the cache across the forks,
 * and the parent its own afterwards. A stale pid in a child would let
 * SoftHSM2 and OpenSSL's DRBG miss the fork.
 */
static void
test_pid_cache(void)
{
	pid_t parent = (pid_t)syscall(SYS_getpid), c;
	pthread_t t;
	void *r;
	int i, st, bad_child = 0;

	p11_pid_cache();
	ok(getpid() == parent && getpid() == parent, "getpid, cached");
	pthread_create(&t, NULL, pid_spinner, NULL);
	for (i = 0; i < 200; i++) {
		c = fork();
		if (c < 0)
			bail("fork");
		if (c == 0) {
			pid_t a = getpid(), k = (pid_t)syscall(SYS_getpid);

			_exit(a == k && a != parent && getpid() == k ? 0 : 1);
		}
		if (waitpid(c, &st, 0) != c || !WIFEXITED(st) ||
		    WEXITSTATUS(st) != 0)
			bad_child++;
	}
	pid_stop = 1;
	pthread_join(t, &r);
	is_int(bad_child, 0, "200 forks: each child's getpid is its own");
	ok((long)r == 0, "a thread reading getpid across the forks: always right");
	ok(getpid() == parent, "the parent's getpid after the forks");
}

int
main(void)
{
	char dir[256];
	uint8_t rnd[32], zero[32] = { 0 };

	if (testenv_softhsm(dir, sizeof(dir)) != 0)
		bail("temp token dir");
	test_open();
	ok(p11_random(P, rnd, sizeof(rnd)) == 0 && memcmp(rnd, zero, 32) != 0,
	    "random");
	test_kat();
	test_asym_derive();
	test_threads();
	test_pid_cache();
	ok(strcmp(p11_rv_name(CKR_WRAPPED_KEY_INVALID), "CKR_WRAPPED_KEY_INVALID") == 0 &&
	    p11_map_rv(CKR_WRAPPED_KEY_INVALID) == ERR_UNWRAP &&
	    p11_map_rv(CKR_KEY_HANDLE_INVALID) == ERR_HANDLE &&
	    p11_map_rv(CKR_PIN_LOCKED) == ERR_P11_PIN &&
	    p11_map_rv(CKR_DEVICE_REMOVED) == ERR_P11_DEVICE, "CK_RV mapping");
	p11_close(P);
	testenv_cleanup(dir);
	return done_testing();
}
