/*
 * kmsd_test.c - drives a real kmsd process over its sockets through the
 * client library, against a fresh SoftHSM2 token: every operation, the
 * public SCP03 known answers (gp-reference §2, all 17 cases where the token
 * supports the key size), every bad-input case of the KMS core issue, the
 * roles, a bit-flip/truncate loop on the wire, session objects of a dead
 * client, restart, and audit tamper detection.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/param_build.h>
#include <openssl/rsa.h>
#include <openssl/sha.h>

#include "kms/audit.h"
#include "kms/kms.h"
#include "kms/proto.h"
#include "tests/kmsenv.h"
#include "tests/tap.h"

static struct kmsenv E;
static struct kms_client *C;
static uint32_t token_caps;

/* ---- OpenSSL reference computations (independent of the token) ---- */

static void
ossl_cmac(const uint8_t *k, size_t kl, const uint8_t *d, size_t n, uint8_t out[16])
{
	EVP_MAC *mac = EVP_MAC_fetch(NULL, "CMAC", NULL);
	EVP_MAC_CTX *c = EVP_MAC_CTX_new(mac);
	OSSL_PARAM p[2];
	char name[16];
	size_t ol;

	snprintf(name, sizeof(name), "AES-%zu-CBC", kl * 8);
	p[0] = OSSL_PARAM_construct_utf8_string("cipher", name, 0);
	p[1] = OSSL_PARAM_construct_end();
	if (EVP_MAC_init(c, k, kl, p) != 1 || EVP_MAC_update(c, d, n) != 1 ||
	    EVP_MAC_final(c, out, &ol, 16) != 1)
		bail("OpenSSL CMAC");
	EVP_MAC_CTX_free(c);
	EVP_MAC_free(mac);
}

static void
ossl_ecb(const uint8_t *k, size_t kl, const uint8_t *in, size_t n, uint8_t *out)
{
	EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
	int ol;

	if (EVP_EncryptInit_ex(c, kl == 16 ? EVP_aes_128_ecb() : kl == 24 ?
	    EVP_aes_192_ecb() : EVP_aes_256_ecb(), NULL, k, NULL) != 1 ||
	    EVP_CIPHER_CTX_set_padding(c, 0) != 1 ||
	    EVP_EncryptUpdate(c, out, &ol, in, (int)n) != 1)
		bail("OpenSSL ECB");
	EVP_CIPHER_CTX_free(c);
}

/* RFC 3394 / 5649 wrap in software, as a peer would. */
static size_t
ossl_wrap(const uint8_t *kek, size_t kl, int pad, const uint8_t *key, size_t n,
    uint8_t *out)
{
	const EVP_CIPHER *ci = pad ? (kl == 16 ? EVP_aes_128_wrap_pad() :
	    EVP_aes_256_wrap_pad()) : (kl == 16 ? EVP_aes_128_wrap() :
	    EVP_aes_256_wrap());
	EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
	int l1 = 0, l2 = 0;

	EVP_CIPHER_CTX_set_flags(c, EVP_CIPHER_CTX_FLAG_WRAP_ALLOW);
	if (EVP_EncryptInit_ex(c, ci, NULL, kek, NULL) != 1 ||
	    EVP_EncryptUpdate(c, out, &l1, key, (int)n) != 1 ||
	    EVP_EncryptFinal_ex(c, out + l1, &l2) != 1)
		bail("OpenSSL wrap");
	EVP_CIPHER_CTX_free(c);
	return (size_t)(l1 + l2);
}

static size_t
unhex(const char *h, uint8_t *out, size_t cap)
{
	size_t n;

	if (hex_decode(h, strlen(h), out, cap, &n) != 0)
		bail("bad hex %s", h);
	return n;
}

static void
gp_kcv(const uint8_t *k, size_t kl, uint8_t kcv[3])
{
	static const uint8_t ones[16] = { 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
		1, 1, 1 };
	uint8_t out[16];

	ossl_ecb(k, kl, ones, 16, out);
	memcpy(kcv, out, 3);
}

/* Imports ENC/MAC/DEK (each kl bytes) under peer/test/kek256 with AES-KW. */
static int
import_set(const uint8_t keys[3][32], size_t kl, struct buf *blob,
    struct kms_keyset_kcvs *kc)
{
	struct kms_wrapped w[3];
	uint8_t wrapped[3][48], kcv[3][3];
	int i, alg = kl == 16 ? KMS_ALG_AES128 : kl == 24 ? KMS_ALG_AES192 :
	    KMS_ALG_AES256;

	for (i = 0; i < 3; i++) {
		w[i].usage = (uint8_t)(KMS_USE_ENC + i);
		w[i].wlen = ossl_wrap(kmsenv_kek256, 32, 0, keys[i], kl, wrapped[i]);
		w[i].wrapped = wrapped[i];
		gp_kcv(keys[i], kl, kcv[i]);
		w[i].kcv = kcv[i];
		w[i].kcvlen = 3;
	}
	return kms_keyset_import(C, "peer/test/kek256", KMS_WRAP_AES_KW, alg,
	    KMS_KCV_GP, w, 3, blob, kc);
}

/* ---- SCP03 known answers through kmsd ---- */

struct kat {
	const char *name;
	int s16;
	uint8_t keys[3][32];
	size_t kl;
	uint8_t host[16], card[16], cardcrypt[16], hostcrypt[16];
};

static int
load_kat(json_t *cs, struct kat *k)
{
	const char *enc, *mac, *dek = NULL, *hc, *iur, *ea, *name;
	uint8_t iu[64], eab[64];
	size_t iul, eal, cl;
	int s16;

	memset(k, 0, sizeof(*k));
	/* The Samsung cases carry no DEK; any key of the length will do. */
	if (json_unpack(cs, "{s:s, s:b, s:s, s:s, s?s, s:s, s:s, s:s}", "name",
	    &name, "s16", &s16, "enc", &enc, "mac", &mac, "dek", &dek,
	    "hostChallenge", &hc, "initUpdateResponse", &iur,
	    "externalAuthenticate", &ea) != 0)
		return -1;
	k->name = name;
	k->s16 = s16;
	k->kl = unhex(enc, k->keys[0], 32);
	unhex(mac, k->keys[1], 32);
	unhex(dek ? dek : enc, k->keys[2], 32);
	cl = s16 ? 16 : 8;
	unhex(hc, k->host, 16);
	iul = unhex(iur, iu, sizeof(iu));
	/* KDD(10) KVN SCP i | card challenge | card cryptogram | [seq] */
	if (iul < 13 + 2 * cl)
		return -1;
	memcpy(k->card, iu + 13, cl);
	memcpy(k->cardcrypt, iu + 13 + cl, cl);
	eal = unhex(ea, eab, sizeof(eab));
	if (eal < 5 + cl)
		return -1;
	memcpy(k->hostcrypt, eab + 5, cl);
	return 0;
}

static void
test_kat_file(void)
{
	char path[600];
	const char *top = getenv("SPTSM_TOP");
	json_error_t je;
	json_t *root, *cases, *cs;
	size_t i;
	int ran = 0;

	snprintf(path, sizeof(path), "%s/tests/vectors/scp03-kat.json",
	    top ? top : ".");
	root = json_load_file(path, 0, &je);
	if (root == NULL || !json_is_array(cases = json_object_get(root, "cases")))
		bail("cannot read %s", path);
	json_array_foreach(cases, i, cs) {
		struct kat k;
		struct buf blob;
		struct kms_keyset_kcvs kc;
		struct kms_keyset ks;
		uint8_t ctx[32], out[16];
		uint32_t smac;
		size_t cl;
		int rc;

		if (load_kat(cs, &k) != 0) {
			ok(0, "vector %zu parses", i);
			continue;
		}
		if (k.kl == 24 && !(token_caps & P11_CAP_AES_192)) {
			skip("%s %s: the token has no AES-192", json_string_value(
			    json_object_get(cs, "source")), k.name);
			continue;
		}
		cl = k.s16 ? 16 : 8;
		buf_init(&blob);
		rc = import_set((const uint8_t (*)[32])k.keys, k.kl, &blob, &kc);
		if (!ok(rc == 0, "%s %s: keys imported through keyset.import",
		    json_string_value(json_object_get(cs, "source")), k.name)) {
			diag("%s", kms_last_error(C));
			buf_free(&blob);
			continue;
		}
		if (kms_keyset_open(C, blob.p, blob.len, 0, &ks) != 0 ||
		    kms_scp03_derive(C, ks.handle[1], 0x06,
		    (memcpy(ctx, k.host, cl), memcpy(ctx + cl, k.card, cl), ctx),
		    2 * cl, (uint16_t)(k.kl * 8), &smac) != 0) {
			ok(0, "%s: open and derive S-MAC (%s)", k.name,
			    kms_last_error(C));
			buf_free(&blob);
			continue;
		}
		rc = kms_scp03_kdf(C, smac, 0x00, ctx, 2 * cl,
		    (uint16_t)(cl * 8), out);
		ok(rc == 0 && memcmp(out, k.cardcrypt, cl) == 0,
		    "%s: card cryptogram from kmsd equals the vector", k.name);
		rc = kms_scp03_kdf(C, smac, 0x01, ctx, 2 * cl,
		    (uint16_t)(cl * 8), out);
		ok(rc == 0 && memcmp(out, k.hostcrypt, cl) == 0,
		    "%s: host cryptogram from kmsd equals the vector", k.name);
		for (size_t j = 0; j < ks.n; j++)
			if (kms_handle_close(C, ks.handle[j]) != 0)
				diag("close failed");
		if (kms_handle_close(C, smac) != 0)
			diag("close failed");
		buf_free(&blob);
		ran++;
	}
	ok(ran >= 14, "%d of %zu vectors ran through kmsd", ran,
	    json_array_size(cases));
	json_decref(root);
}

/* scp03.open: the whole opening in one call gives KAT-1's values, and a
 * refused or malformed call leaves no handle behind. */
static void
test_open_kat1(const struct kms_keyset *ks, const uint8_t ctx[16])
{
	struct kms_scp03_open o;
	struct kms_status st0, st1;
	uint8_t blk[32], out[16], exp[16], chal[8];
	uint8_t smac_k[16], srmac_k[16];
	const uint8_t aid[] = { 0xa0, 0x00, 0x00, 0x01, 0x51, 0x00, 0x00, 0x00 };
	int rc;

	unhex("59b76ddff91dba0515a9644de3a48863", smac_k, 16);
	unhex("5942bf778c5942f17037da8278f9330d", srmac_k, 16);
		ok(kms_scp03_open(C, ks->handle[0], ks->handle[1], SCP03_OPEN_SENC |
	    SCP03_OPEN_SRMAC | SCP03_OPEN_HOST, ctx, 16, 64, aid, sizeof(aid),
	    &o) == 0, "scp03.open: three session keys in one round trip");
	ok(o.s_enc != 0 && o.s_mac != 0 && o.s_rmac != 0 && o.clen == 8,
	    "three handles, 8-byte cryptograms");
	is_hex(o.card_crypto, 8, "95065fe5ead8a9d7", "scp03.open card cryptogram");
	is_hex(o.host_crypto, 8, "fd4721a14d9b0700", "scp03.open host cryptogram");
	ok(o.has_challenge && kms_scp03_kdf(C, ks->handle[0], 0x02, aid,
	    sizeof(aid), 64, chal) == 0 && memcmp(chal, o.challenge, 8) == 0,
	    "its card challenge equals scp03.kdf 02 over the same context");
	memset(blk, 0, 32);
	blk[15] = 1;
	ok(kms_cmac(C, o.s_mac, blk, 32, out) == 0, "CMAC with its S-MAC");
	ossl_cmac(smac_k, 16, blk, 32, exp);
	ok(memcmp(out, exp, 16) == 0, "its S-MAC is KAT-1's");
	ok(kms_cmac(C, o.s_rmac, blk, 32, out) == 0, "CMAC with its S-RMAC");
	ossl_cmac(srmac_k, 16, blk, 32, exp);
	ok(memcmp(out, exp, 16) == 0, "its S-RMAC is KAT-1's");
	unhex("bf3e035c015a80000000000000000000", blk + 16, 16);
	ok(kms_encrypt(C, o.s_enc, KMS_CBC, NULL, blk, 32, blk) == 0,
	    "encrypt with its S-ENC");
	is_hex(blk + 16, 16, "ca9c00f6713d79bc8baa642bdff51c3f",
	    "its S-ENC gives KAT-1's C-DEC data");
	ok(kms_handle_close(C, o.s_enc) == 0 && kms_handle_close(C, o.s_mac) ==
	    0 && kms_handle_close(C, o.s_rmac) == 0, "its handles close");

	ok(kms_scp03_open(C, ks->handle[0], ks->handle[1], 0, ctx, 16, 128,
	    NULL, 0, &o) == 0 && o.s_mac != 0 && o.s_enc == 0 &&
	    o.s_rmac == 0 && !o.has_challenge && o.clen == 16,
	    "flags 0: S-MAC only, no challenge, 16-byte cryptogram");
	ok(kms_handle_close(C, o.s_mac) == 0, "and it closes");

	rc = kms_status(C, &st0);
	ok(rc == 0 && st0.handles >= 3, "status before refused calls (%u live)",
	    st0.handles);
	ok(kms_scp03_open(C, ks->handle[1], ks->handle[0], SCP03_OPEN_SENC,
	    ctx, 16, 64, NULL, 0, &o) == ERR_DENIED,
	    "ENC and MAC swapped: denied");
	ok(kms_scp03_open(C, ks->handle[0], ks->handle[2], SCP03_OPEN_SENC,
	    ctx, 16, 64, NULL, 0, &o) == ERR_KEYCLASS,
	    "the DEK as MAC: ERR_KEYCLASS");
	ok(kms_scp03_open(C, ks->handle[0], ks->handle[1], 0x80, ctx, 16, 64,
	    NULL, 0, &o) == ERR_INVAL, "unknown flag: ERR_INVAL");
	ok(kms_scp03_open(C, ks->handle[0], ks->handle[1], 0, ctx, 15, 64,
	    NULL, 0, &o) == ERR_INVAL, "15-byte context: ERR_INVAL");
	ok(kms_scp03_open(C, ks->handle[0], 0x7fff0001, 0, ctx, 16, 64,
	    NULL, 0, &o) == ERR_HANDLE, "unknown MAC handle: ERR_HANDLE");
	rc = kms_status(C, &st1);
	ok(rc == 0 && st1.handles == st0.handles,
	    "refused calls leave no handle behind (%u live)", st1.handles);
}

/* KAT-1 in full: session keys, cryptograms, C-MAC, C-DEC, R-MAC keys. */
static void
test_kat1(void)
{
	uint8_t keys[3][32], ctx[16], out[64], exp[64], blk[64];
	struct kms_keyset_kcvs kc;
	struct kms_keyset ks;
	struct buf blob;
	uint32_t senc, smac, srmac, bogus;
	uint8_t senc_k[16], smac_k[16], srmac_k[16];

	unhex("000102030405060708090a0b0c0d0e0f", keys[0], 32);
	unhex("101112131415161718191a1b1c1d1e1f", keys[1], 32);
	unhex("202122232425262728292a2b2c2d2e2f", keys[2], 32);
	buf_init(&blob);
	ok(import_set((const uint8_t (*)[32])keys, 16, &blob, &kc) == 0 &&
	    kc.n == 3, "KAT-1 key set imported");
	is_hex(kc.kcv[0], 3, "c35280", "ENC KCV computed in the token (GP)");
	is_hex(kc.kcv[1], 3, "013808", "MAC KCV");
	is_hex(kc.kcv[2], 3, "840de5", "DEK KCV");
	ok(kms_keyset_open(C, blob.p, blob.len, 0, &ks) == 0 && ks.n == 3 &&
	    ks.alg == KMS_ALG_AES128, "blob opens into three handles");
	is_hex(ks.kcv[0], 3, "c35280", "blob keeps the KCVs");

	unhex("8e1552d0513c60f3", ctx, 8);
	unhex("30760cd2c47c1dd3", ctx + 8, 8);
	ok(kms_scp03_derive(C, ks.handle[0], 0x04, ctx, 16, 128, &senc) == 0,
	    "derive S-ENC");
	ok(kms_scp03_derive(C, ks.handle[1], 0x06, ctx, 16, 128, &smac) == 0,
	    "derive S-MAC");
	ok(kms_scp03_derive(C, ks.handle[1], 0x07, ctx, 16, 128, &srmac) == 0,
	    "derive S-RMAC");
	unhex("ee54985e150155e021725489f717d645", senc_k, 16);
	unhex("59b76ddff91dba0515a9644de3a48863", smac_k, 16);
	unhex("5942bf778c5942f17037da8278f9330d", srmac_k, 16);

	ok(kms_scp03_kdf(C, smac, 0x00, ctx, 16, 64, out) == 0, "card cryptogram");
	is_hex(out, 8, "95065fe5ead8a9d7", "KAT-1 card cryptogram");
	ok(kms_scp03_kdf(C, smac, 0x01, ctx, 16, 64, out) == 0, "host cryptogram");
	is_hex(out, 8, "fd4721a14d9b0700", "KAT-1 host cryptogram");

	/* EXTERNAL AUTHENTICATE C-MAC: chain 0^16 | 84 82 03 00 10 | crypto */
	memset(blk, 0, 16);
	unhex("8482030010fd4721a14d9b0700", blk + 16, 13);
	ok(kms_cmac(C, smac, blk, 29, out) == 0, "C-MAC through kmsd");
	is_hex(out, 8, "3c451d2f8ae6bb21", "KAT-1 EXTERNAL AUTHENTICATE MAC");
	ossl_cmac(smac_k, 16, blk, 29, exp);
	ok(memcmp(out, exp, 16) == 0, "full C-MAC equals OpenSSL with the "
	    "published S-MAC");

	/* C-DEC of the first command (counter 1) in one call: CBC with IV 0
	 * over counter||data gives E(counter) then the ciphertext. */
	memset(blk, 0, 32);
	blk[15] = 1;
	unhex("bf3e035c015a80000000000000000000", blk + 16, 16);
	ok(kms_encrypt(C, senc, KMS_CBC, NULL, blk, 32, out) == 0,
	    "CBC encrypt counter||data");
	is_hex(out + 16, 16, "ca9c00f6713d79bc8baa642bdff51c3f",
	    "KAT-1 first command's C-DEC data");
	ok(kms_encrypt(C, senc, KMS_ECB, NULL, blk, 16, out) == 0, "ECB");
	ossl_ecb(senc_k, 16, blk, 16, exp);
	ok(memcmp(out, exp, 16) == 0, "S-ENC equals the published value");
	ok(kms_decrypt(C, senc, KMS_ECB, NULL, out, 16, out) == 0 &&
	    memcmp(out, blk, 16) == 0, "ECB decrypt round trip");
	ok(kms_cmac(C, srmac, blk, 32, out) == 0, "R-MAC key CMAC");
	ossl_cmac(srmac_k, 16, blk, 32, exp);
	ok(memcmp(out, exp, 16) == 0, "S-RMAC equals the published value");

	/* Policy and class refusals on these handles. */
	ok(kms_cmac(C, ks.handle[0], blk, 16, out) == ERR_DENIED,
	    "cmac with the static ENC key: denied (would leak session keys)");
	ok(kms_scp03_kdf(C, smac, 0x04, ctx, 16, 128, out) == ERR_DENIED,
	    "scp03.kdf constant 04: denied (session keys never as bytes)");
	ok(kms_scp03_kdf(C, smac, 0x06, ctx, 16, 128, out) == ERR_DENIED,
	    "scp03.kdf constant 06: denied");
	ok(kms_scp03_derive(C, ks.handle[1], 0x04, ctx, 16, 128, &bogus) ==
	    ERR_DENIED, "S-ENC from the MAC key: denied");
	ok(kms_scp03_derive(C, ks.handle[0], 0x02, ctx, 16, 128, &bogus) ==
	    ERR_DENIED, "scp03.derive constant 02: denied");
	ok(kms_encrypt(C, smac, KMS_ECB, NULL, blk, 16, out) == ERR_DENIED,
	    "encrypt with S-MAC: denied");
	ok(kms_scp03_kdf(C, ks.handle[0], 0x02, ctx, 16, 64, out) == 0,
	    "card challenge KDF (02) with the static ENC key");
	ok(kms_encrypt(C, senc, KMS_CBC, NULL, blk, 15, out) == ERR_INVAL,
	    "partial block: ERR_INVAL");
	ok(kms_wrap(C, ks.handle[2], ks.handle[0], out, &(size_t){ 64 }) ==
	    ERR_KEYCLASS, "wrap of a member not opened exportable: ERR_KEYCLASS");
	ok(kms_handle_close(C, senc) == 0, "close S-ENC");
	ok(kms_encrypt(C, senc, KMS_ECB, NULL, blk, 16, out) == ERR_HANDLE,
	    "closed handle: ERR_HANDLE");
	ok(kms_cmac(C, 0x7fff0001, blk, 16, out) == ERR_HANDLE,
	    "never-issued handle: ERR_HANDLE");
	test_open_kat1(&ks, ctx);
	buf_free(&blob);
}

/* PUT KEY wrap (gp-reference §4) through kmsd. */
static void
test_wrap(void)
{
	uint8_t keys[3][32], out[64], multi[9][32];
	size_t mlen[9];
	struct kms_keyset_kcvs kc;
	struct kms_keyset ks, plain;
	struct kms_status st0, st1;
	int rc;
	struct buf blob;
	size_t ol = sizeof(out);
	int i;

	for (i = 0; i < 3; i++)
		unhex("404142434445464748494a4b4c4d4e4f", keys[i], 32);
	buf_init(&blob);
	ok(import_set((const uint8_t (*)[32])keys, 16, &blob, &kc) == 0,
	    "import 4041..4F as ENC/MAC/DEK");
	is_hex(kc.kcv[0], 3, "504a77", "gp-reference §3 KCV of 4041..4F");
	ok(kms_keyset_open(C, blob.p, blob.len, KMS_OPEN_EXPORTABLE, &ks) == 0,
	    "open exportable (for PUT KEY)");
	ok(kms_wrap(C, ks.handle[2], ks.handle[0], out, &ol) == 0 && ol == 16,
	    "wrap ENC under DEK (AES-CBC, zero ICV)");
	is_hex(out, 16, "80d2a5b08fa0ee51143b459e638106df",
	    "gp-reference §4 PUT KEY block example");
	ol = sizeof(out);
	ok(kms_wrap(C, ks.handle[0], ks.handle[1], out, &ol) == ERR_DENIED,
	    "wrap under ENC (not a DEK): denied");

	/* The whole key set in one call (PUT KEY): each block as above. */
	memset(multi, 0xee, sizeof(multi));
	ok(kms_wrap_n(C, ks.handle[2], ks.handle, 3, multi, mlen) == 0 &&
	    mlen[0] == 16 && mlen[1] == 16 && mlen[2] == 16,
	    "wrap ENC, MAC and DEK in one call");
	for (i = 0; i < 3; i++)
		is_hex(multi[i], 16, "80d2a5b08fa0ee51143b459e638106df",
		    "block %d of the one-call wrap", i);
	ok(kms_wrap_n(C, ks.handle[2], ks.handle, 0, multi, mlen) == ERR_INVAL,
	    "no key to wrap: ERR_INVAL");
	ok(kms_wrap_n(C, ks.handle[2], (const uint32_t[9]){ ks.handle[0],
	    ks.handle[0], ks.handle[0], ks.handle[0], ks.handle[0],
	    ks.handle[0], ks.handle[0], ks.handle[0], ks.handle[0] }, 9, multi,
	    mlen) == ERR_INVAL, "nine keys: ERR_INVAL");
	ok(kms_keyset_open(C, blob.p, blob.len, 0, &plain) == 0,
	    "the same set opened again, not exportable");
	ok(kms_wrap_n(C, ks.handle[2], (const uint32_t[2]){ ks.handle[0],
	    plain.handle[0] }, 2, multi, mlen) == ERR_KEYCLASS,
	    "a non-exportable member among the keys: ERR_KEYCLASS, nothing "
	    "returned");
	ok(kms_wrap_n(C, ks.handle[2], (const uint32_t[2]){ ks.handle[0],
	    0x7fff0002 }, 2, multi, mlen) == ERR_HANDLE,
	    "an unknown handle among the keys: ERR_HANDLE");

	/* handle.close of several: all checked first, then all closed. */
	rc = kms_status(C, &st0);
	ok(kms_handle_close_n(C, (const uint32_t[4]){ plain.handle[0],
	    plain.handle[1], 0x7fff0003, plain.handle[2] }, 4) == ERR_HANDLE,
	    "close of four with one unknown: ERR_HANDLE");
	rc |= kms_status(C, &st1);
	ok(rc == 0 && st1.handles == st0.handles,
	    "... and none of the others closed (%u live)", st1.handles);
	ok(kms_handle_close_n(C, (const uint32_t[4]){ plain.handle[0],
	    plain.handle[1], plain.handle[2], plain.handle[0] }, 4) == 0,
	    "close of a key set's three handles (one named twice) in one call");
	rc = kms_status(C, &st1);
	ok(rc == 0 && st1.handles + 3 == st0.handles,
	    "three fewer live handles (%u -> %u)", st0.handles, st1.handles);
	ok(kms_cmac(C, plain.handle[1], keys[0], 16, out) == ERR_HANDLE,
	    "a closed member: ERR_HANDLE");
	ok(kms_handle_close_n(C, ks.handle, 0) == ERR_INVAL,
	    "close of no handle: ERR_INVAL");
	ok(kms_handle_close_n(C, ks.handle, 3) == 0, "close the exportable set");
	buf_free(&blob);
}

/* Three AES-128 keys (byte `fill` everywhere but key[0] = member index)
 * wrapped under the 128-bit test KEK with AES-KW, with their GP KCVs. */
static void
aes128_set(uint8_t fill, struct kms_wrapped wr[3], uint8_t w[3][48],
    uint8_t kcv[3][5])
{
	uint8_t key[16];
	size_t i;

	memset(key, fill, sizeof(key));
	for (i = 0; i < 3; i++) {
		key[0] = (uint8_t)i;
		wr[i].usage = (uint8_t)(KMS_USE_ENC + i);
		wr[i].wlen = ossl_wrap(kmsenv_kek128, 16, 0, key, 16, w[i]);
		wr[i].wrapped = w[i];
		gp_kcv(key, 16, kcv[i]);
		wr[i].kcv = kcv[i];
		wr[i].kcvlen = 3;
	}
}

static void
test_keysets(void)
{
	uint8_t key[32], w[3][48], kcv[3][5], out[16], exp[16], div[16];
	struct kms_keyset_kcvs kc;
	struct kms_keyset ks;
	struct kms_wrapped wr[3];
	struct buf blob, blob2;
	size_t i;
	int rc;

	buf_init(&blob);
	buf_init(&blob2);
	ok(kms_keyset_generate(C, KMS_ALG_AES128, KMS_KCV_GP, &blob, &kc) == 0 &&
	    kc.n == 3 && kc.kcvlen == 3, "random key set generated");
	ok(kms_keyset_open(C, blob.p, blob.len, 0, &ks) == 0 &&
	    memcmp(ks.kcv[0], kc.kcv[0], 3) == 0, "opens with the same KCVs");
	for (i = 0; i < ks.n; i++)
		if (kms_handle_close(C, ks.handle[i]) != 0)
			diag("close");
	ok(kms_keyset_generate(C, KMS_ALG_AES256, KMS_KCV_CMAC, &blob2, &kc) == 0 &&
	    kc.kcvlen == 5, "AES-256 set with CMAC-method KCVs");

	/* Bad blobs. */
	blob.p[blob.len - 12] ^= 0x01;
	rc = kms_keyset_open(C, blob.p, blob.len, 0, &ks);
	ok(rc == ERR_BLOB, "tampered blob: ERR_BLOB (%s)", kms_last_error(C));
	blob.p[blob.len - 12] ^= 0x01;
	ok(kms_keyset_open(C, blob.p, blob.len - 1, 0, &ks) == ERR_BLOB,
	    "truncated blob: ERR_BLOB");
	if (buf_put_u8(&blob, 0) != 0)
		bail("buf");
	ok(kms_keyset_open(C, blob.p, blob.len, 0, &ks) == ERR_BLOB,
	    "blob with trailing byte: ERR_BLOB");
	ok(kms_keyset_open(C, (const uint8_t *)"junk", 4, 0, &ks) == ERR_BLOB,
	    "garbage blob: ERR_BLOB");

	/* Import: KCV mismatch, wrong KEK, truncated, KWP, CMAC method. */
	memset(key, 0x77, sizeof(key));
	aes128_set(0x77, wr, w, kcv);
	buf_reset(&blob);
	ok(kms_keyset_import(C, "peer/test/kek", KMS_WRAP_AES_KW, KMS_ALG_AES128,
	    KMS_KCV_GP, wr, 3, &blob, &kc) == 0 && blob.len > 0,
	    "import under the AES-128 transport KEK");
	kcv[1][2] ^= 1;
	buf_reset(&blob);
	rc = kms_keyset_import(C, "peer/test/kek", KMS_WRAP_AES_KW, KMS_ALG_AES128,
	    KMS_KCV_GP, wr, 3, &blob, &kc);
	ok(rc == ERR_KCV && blob.len == 0, "KCV mismatch: ERR_KCV, no blob (%s)",
	    kms_last_error(C));
	ok(strstr(kms_last_error(C), "checkValue[1]") != NULL,
	    "the error names the key");
	kcv[1][2] ^= 1;
	rc = kms_keyset_import(C, "peer/test/kek256", KMS_WRAP_AES_KW,
	    KMS_ALG_AES128, KMS_KCV_GP, wr, 3, &blob, &kc);
	ok(rc == ERR_UNWRAP && blob.len == 0, "unwrap under the wrong KEK: "
	    "ERR_UNWRAP, no blob");
	wr[2].wlen -= 8;
	rc = kms_keyset_import(C, "peer/test/kek", KMS_WRAP_AES_KW, KMS_ALG_AES128,
	    KMS_KCV_GP, wr, 3, &blob, &kc);
	ok(rc == ERR_UNWRAP, "truncated encryptedKey: ERR_UNWRAP");
	wr[2].wlen += 8;
	rc = kms_keyset_import(C, "peer/test/kek", KMS_WRAP_AES_KW, KMS_ALG_AES256,
	    KMS_KCV_GP, wr, 3, &blob, &kc);
	ok(rc == ERR_INVAL, "key length not matching Alg: ERR_INVAL");
	rc = kms_keyset_import(C, "no/such/kek", KMS_WRAP_AES_KW, KMS_ALG_AES128,
	    KMS_KCV_GP, wr, 3, &blob, &kc);
	ok(rc == ERR_NOKEY, "unknown transport KEK: ERR_NOKEY");
	rc = kms_keyset_import(C, "peer/test/mac", KMS_WRAP_AES_KW, KMS_ALG_AES128,
	    KMS_KCV_GP, wr, 3, &blob, &kc);
	ok(rc == ERR_DENIED, "MAC key as a transport KEK: denied");
	for (i = 0; i < 3; i++) {
		key[0] = (uint8_t)i;
		wr[i].wlen = ossl_wrap(kmsenv_kek256, 32, 1, key, 16, w[i]);
		ossl_cmac(key, 16, (const uint8_t[16]){ 0 }, 16, exp);
		memcpy(kcv[i], exp, 5);
		wr[i].kcvlen = 5;
	}
	rc = kms_keyset_import(C, "peer/test/kek256", KMS_WRAP_AES_KWP,
	    KMS_ALG_AES128, KMS_KCV_CMAC, wr, 3, &blob, &kc);
	ok(rc == 0 && kc.kcvlen == 5 && memcmp(kc.kcv[2], kcv[2], 5) == 0,
	    "AES-KWP import with CMAC-method KCVs");

	/* Diversified set: key_i = AES(master_i, div), checked with OpenSSL. */
	memset(div, 0x0d, sizeof(div));
	buf_reset(&blob);
	ok(kms_keyset_derive(C, "master/test", div, 16, KMS_KCV_GP, &blob, &kc) == 0,
	    "diversified key set");
	for (i = 0; i < 3; i++) {
		ossl_ecb(kmsenv_master[i], 16, div, 16, key);
		gp_kcv(key, 16, out);
		ok(memcmp(kc.kcv[i], out, 3) == 0, "diversified member %zu has the "
		    "expected KCV", i);
	}
	ok(kms_keyset_open(C, blob.p, blob.len, KMS_OPEN_EXPORTABLE, &ks) == 0 &&
	    memcmp(ks.kcv[1], kc.kcv[1], 3) == 0, "diversified blob opens");
	for (i = 0; i < ks.n; i++)
		if (kms_handle_close(C, ks.handle[i]) != 0)
			diag("close");
	{
		uint32_t h;
		uint8_t ctx[16] = { 1 }, got[8], blk[32];

		ok(kms_diversify(C, KMS_LABEL("master/test/enc"), div, 16,
		    KMS_USE_ENC, &h) == 0, "diversify to a handle");
		ok(kms_scp03_kdf(C, h, 0x02, ctx, 16, 64, got) == 0,
		    "use it (card challenge KDF)");
		ossl_ecb(kmsenv_master[0], 16, div, 16, key);
		memset(blk, 0, 16);
		blk[11] = 0x02;
		blk[14] = 0x40;
		blk[15] = 0x01;
		memcpy(blk + 16, ctx, 16);
		ossl_cmac(key, 16, blk, 32, exp);
		ok(memcmp(got, exp, 8) == 0, "diversified key has the expected value");
		ok(kms_diversify(C, KMS_LABEL("storage-kek"), div, 16, KMS_USE_ENC,
		    &h) == ERR_DENIED, "diversify from the storage KEK: denied");
	}
	/* A master set delivered as a blob (key sync without seId): opened
	 * derive-only, per-SE keys diversified from its members. */
	{
		uint8_t mk[3][32], got[16], ctx[16] = { 7 }, blk[32];
		struct kms_keyset_kcvs mkc;
		struct kms_keyset ms;
		uint32_t h, h2;

		for (i = 0; i < 3; i++)
			memset(mk[i], 0x61 + (int)i, 16);
		buf_reset(&blob);
		ok(import_set((const uint8_t (*)[32])mk, 16, &blob, &mkc) == 0 &&
		    kms_keyset_open(C, blob.p, blob.len, KMS_OPEN_MASTER, &ms) == 0,
		    "master set opened derive-only");
		ok(kms_keyset_open(C, blob.p, blob.len, KMS_OPEN_MASTER |
		    KMS_OPEN_EXPORTABLE, &(struct kms_keyset){ 0 }) == ERR_INVAL,
		    "master and exportable together: ERR_INVAL");
		ok(kms_cmac(C, ms.handle[0], blk, 16, got) == ERR_DENIED,
		    "a master member cannot MAC");
		ok(kms_scp03_derive(C, ms.handle[0], 0x04, ctx, 16, 128, &h2) ==
		    ERR_KEYCLASS, "a master member is no SCP03 key: ERR_KEYCLASS");
		ok(kms_diversify(C, KMS_HANDLE(ms.handle[0]), div, 16, KMS_USE_ENC,
		    &h) == 0, "per-SE ENC diversified from the master member");
		ok(kms_scp03_kdf(C, h, 0x02, ctx, 16, 64, got) == 0, "and used");
		ossl_ecb(mk[0], 16, div, 16, key);
		memset(blk, 0, 16);
		blk[11] = 0x02;
		blk[14] = 0x40;
		blk[15] = 0x01;
		memcpy(blk + 16, ctx, 16);
		ossl_cmac(key, 16, blk, 32, exp);
		ok(memcmp(got, exp, 8) == 0, "it is AES-ECB(master, D)");
		ok(kms_diversify(C, KMS_HANDLE(h), div, 16, KMS_USE_ENC, &h2) ==
		    ERR_KEYCLASS, "diversify from an ordinary member: ERR_KEYCLASS");
	}
	buf_free(&blob);
	buf_free(&blob2);
}

static void
test_rsa_transport(struct p11 *p, struct keystore *ks)
{
	struct ks_key *k = ks_find(ks, "transport-rsa");
	struct ks_version *v;
	struct buf mod, ex, blob;
	p11_obj pub;
	uint8_t key[16], w[3][512], kcv[3][3];
	struct kms_wrapped wr[3];
	struct kms_keyset_kcvs kc;
	EVP_PKEY *pk = NULL;
	EVP_PKEY_CTX *pc;
	OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
	OSSL_PARAM *params;
	BIGNUM *n, *e;
	size_t i;
	int rc;

	buf_init(&mod);
	buf_init(&ex);
	buf_init(&blob);
	if (k == NULL || ks_version(k, 0, &v) != 0 || ks_public(ks, k, v, &pub) != 0 ||
	    p11_rsa_public(p, pub, &mod, &ex) != 0)
		bail("transport RSA public key");
	n = BN_bin2bn(mod.p, (int)mod.len, NULL);
	e = BN_bin2bn(ex.p, (int)ex.len, NULL);
	OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, n);
	OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, e);
	params = OSSL_PARAM_BLD_to_param(bld);
	pc = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL);
	if (EVP_PKEY_fromdata_init(pc) != 1 ||
	    EVP_PKEY_fromdata(pc, &pk, EVP_PKEY_PUBLIC_KEY, params) != 1)
		bail("RSA public key into OpenSSL");
	EVP_PKEY_CTX_free(pc);
	ok(mod.len == 384, "transport key is RSA-3072");
	for (i = 0; i < 3; i++) {
		size_t wl = sizeof(w[i]);

		memset(key, (int)(0x30 + i), sizeof(key));
		pc = EVP_PKEY_CTX_new(pk, NULL);
		if (EVP_PKEY_encrypt_init(pc) != 1 ||
		    EVP_PKEY_CTX_set_rsa_padding(pc, RSA_PKCS1_OAEP_PADDING) != 1 ||
		    EVP_PKEY_CTX_set_rsa_oaep_md(pc, EVP_sha1()) != 1 ||
		    EVP_PKEY_encrypt(pc, w[i], &wl, key, 16) != 1)
			bail("OAEP encrypt");
		EVP_PKEY_CTX_free(pc);
		wr[i].usage = (uint8_t)(KMS_USE_ENC + i);
		wr[i].wrapped = w[i];
		wr[i].wlen = wl;
		gp_kcv(key, 16, kcv[i]);
		wr[i].kcv = kcv[i];
		wr[i].kcvlen = 3;
	}
	rc = kms_keyset_import(C, "transport-rsa", KMS_WRAP_RSA_OAEP_SHA1,
	    KMS_ALG_AES128, KMS_KCV_GP, wr, 3, &blob, &kc);
	ok(rc == 0, "import with RSA-OAEP-SHA1 to our transport key (%s)",
	    kms_last_error(C));
	rc = kms_keyset_import(C, "transport-rsa", KMS_WRAP_RSA_OAEP_SHA256,
	    KMS_ALG_AES128, KMS_KCV_GP, wr, 3, &blob, &kc);
	ok(rc != 0, "OAEP-SHA1 data under OAEP-SHA256 refused (%s)",
	    err_name(rc));
	EVP_PKEY_free(pk);
	OSSL_PARAM_free(params);
	OSSL_PARAM_BLD_free(bld);
	BN_free(n);
	BN_free(e);
	buf_free(&mod);
	buf_free(&ex);
	buf_free(&blob);
}

/*
 * keyset.receive with the answer: its MAC is OpenSSL's HMAC-SHA256 over
 * head || hex(SHA-256(prefix || hex(receipt MAC) || suffix)), lowercase.
 */
static void
test_receive_answer(struct kms_receive *in)
{
	static const char head[] = "POST\n/api/v1/sei/key-sync\n1700000001\n"
	    "ffeeddccbbaa99887766554433221100\n";
	static const char pre[] = "{\"resultCode\":0,\"receipt\":[\"";
	static const char suf[] = "\"]}";
	uint8_t rmac[32], amac[32], md[32], exp[32];
	char rhx[65], dhx[65], body[200], sin[300];
	struct kms_keyset_kcvs kc;
	struct buf blob;
	int rc, n;

	buf_init(&blob);
	in->ans_head = (const uint8_t *)head;
	in->ans_hlen = strlen(head);
	in->ans_pre = (const uint8_t *)pre;
	in->ans_plen = strlen(pre);
	in->ans_suf = (const uint8_t *)suf;
	in->ans_slen = strlen(suf);
	memset(amac, 0, sizeof(amac));
	rc = kms_keyset_receive(C, in, &blob, &kc, rmac, amac);
	ok(rc == 0 && blob.len > 0, "keyset.receive with the answer (%s)",
	    rc ? kms_last_error(C) : "ok");
	hex_encode(rmac, 32, rhx);
	n = snprintf(body, sizeof(body), "%s%s%s", pre, rhx, suf);
	SHA256((const uint8_t *)body, (size_t)n, md);
	hex_encode(md, 32, dhx);
	n = snprintf(sin, sizeof(sin), "%s%s", head, dhx);
	HMAC(EVP_sha256(), kmsenv_mac, 32, (const uint8_t *)sin, (size_t)n, exp,
	    NULL);
	ok(rc == 0 && memcmp(amac, exp, 32) == 0, "the answer MAC is OpenSSL's "
	    "over the signed string of the completed body");
	ok(kms_keyset_receive(C, in, &blob, &kc, rmac, NULL) == ERR_INVAL,
	    "an answer asked for with nowhere to put its MAC: ERR_INVAL");
	in->ans_head = in->ans_pre = in->ans_suf = NULL;
	in->ans_hlen = in->ans_plen = in->ans_slen = 0;
	buf_free(&blob);
}

/*
 * keyset.receive: the peer's MAC is checked before anything is unwrapped,
 * the import is keyset.import's, and the receipt MAC is OpenSSL's
 * HMAC-SHA256 under the test MAC key.
 */
static void
test_receive(void)
{
	static const uint8_t msg[] = "POST\n/api/v1/sei/key-sync\n1700000000\n"
	    "00112233445566778899aabbccddeeff\nbody-digest";
	static const uint8_t rin[] = "receipt input";
	uint8_t w[3][48], kcv[3][5], mac[32], rmac[32], exp[32];
	struct kms_keyset_kcvs kc;
	struct kms_wrapped wr[3];
	struct kms_keyset ks;
	struct kms_receive in;
	struct buf blob;
	size_t i;
	int rc;

	buf_init(&blob);
	aes128_set(0x31, wr, w, kcv);
	HMAC(EVP_sha256(), kmsenv_mac, 32, msg, sizeof(msg) - 1, mac, NULL);
	in = (struct kms_receive){ .mac_key = "peer/test/mac", .msg = msg,
	    .msglen = sizeof(msg) - 1, .mac = mac, .kek = "peer/test/kek",
	    .mech = KMS_WRAP_AES_KW, .alg = KMS_ALG_AES128,
	    .kcv_method = KMS_KCV_GP, .keys = wr, .n = 3, .receipt = rin,
	    .rlen = sizeof(rin) - 1 };
	rc = kms_keyset_receive(C, &in, &blob, &kc, rmac, NULL);
	ok(rc == 0 && kc.n == 3 && kc.kcvlen == 3 &&
	    memcmp(kc.kcv[2], kcv[2], 3) == 0, "keyset.receive imports the set "
	    "(%s)", rc ? kms_last_error(C) : "ok");
	HMAC(EVP_sha256(), kmsenv_mac, 32, rin, sizeof(rin) - 1, exp, NULL);
	ok(rc == 0 && memcmp(rmac, exp, 32) == 0,
	    "its receipt MAC is OpenSSL's HMAC-SHA256 under the peer key");
	ok(rc == 0 && kms_keyset_open(C, blob.p, blob.len, 0, &ks) == 0 &&
	    memcmp(ks.kcv[1], kcv[1], 3) == 0, "the blob opens with the KCVs");
	for (i = 0; rc == 0 && i < ks.n; i++)
		if (kms_handle_close(C, ks.handle[i]) != 0)
			diag("close");

	mac[0] ^= 1;
	buf_reset(&blob);
	rc = kms_keyset_receive(C, &in, &blob, &kc, rmac, NULL);
	ok(rc == ERR_AUTH && blob.len == 0 &&
	    strstr(kms_last_error(C), "does not verify") != NULL,
	    "a wrong peer MAC: ERR_AUTH, no blob (%s)", kms_last_error(C));
	kcv[0][0] ^= 1;
	rc = kms_keyset_receive(C, &in, &blob, &kc, rmac, NULL);
	ok(rc == ERR_AUTH, "the MAC is checked first: a wrong MAC and a wrong "
	    "KCV is ERR_AUTH");
	mac[0] ^= 1;
	rc = kms_keyset_receive(C, &in, &blob, &kc, rmac, NULL);
	ok(rc == ERR_KCV && blob.len == 0, "a good MAC and a wrong KCV: ERR_KCV "
	    "(%s)", kms_last_error(C));
	kcv[0][0] ^= 1;
	in.msglen--;
	ok(kms_keyset_receive(C, &in, &blob, &kc, rmac, NULL) == ERR_AUTH,
	    "a message one byte short: ERR_AUTH");
	in.msglen++;
	in.mac_key = "peer/test/kek";
	ok(kms_keyset_receive(C, &in, &blob, &kc, rmac, NULL) == ERR_DENIED,
	    "a transport KEK as the MAC key: denied");
	in.mac_key = "audit";
	ok(kms_keyset_receive(C, &in, &blob, &kc, rmac, NULL) == ERR_DENIED,
	    "the audit key as the MAC key: denied");
	in.mac_key = "peer/test/mac";
	in.kek = "peer/test/mac";
	ok(kms_keyset_receive(C, &in, &blob, &kc, rmac, NULL) == ERR_DENIED,
	    "the MAC key as the transport KEK: denied");
	in.kek = "peer/test/kek";
	buf_reset(&blob);
	ok(kms_keyset_receive(C, &in, &blob, &kc, rmac, NULL) == 0 && blob.len > 0,
	    "the same set again: imported again");
	buf_free(&blob);
	test_receive_answer(&in);
}

static void
test_sign_hmac(struct p11 *p, struct keystore *ks)
{
	struct ks_key *k = ks_find(ks, "ca");
	struct ks_version *v;
	uint8_t sig[128], mac[32], exp[32];
	size_t sl = sizeof(sig);
	unsigned int ml = 0;
	unsigned bits;
	struct buf pt;
	p11_obj pub;
	int good = 0;

	buf_init(&pt);
	ok(kms_sign(C, KMS_LABEL("ca"), KMS_SIGN_ECDSA_SHA256, 0,
	    (const uint8_t *)"tbs", 3, sig, &sl) == 0 && sl == 64, "ECDSA P-256");
	if (k != NULL && ks_version(k, 0, &v) == 0 && ks_public(ks, k, v, &pub) == 0 &&
	    p11_ec_public(p, pub, &bits, &pt) == 0) {
		EVP_PKEY_CTX *pc = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
		OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
		OSSL_PARAM *params;
		EVP_PKEY *pk = NULL;
		EVP_MD_CTX *md = EVP_MD_CTX_new();
		ECDSA_SIG *es = ECDSA_SIG_new();
		unsigned char *der = NULL;
		int dl;

		OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME,
		    "prime256v1", 0);
		OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, pt.p,
		    pt.len);
		params = OSSL_PARAM_BLD_to_param(bld);
		ECDSA_SIG_set0(es, BN_bin2bn(sig, 32, NULL), BN_bin2bn(sig + 32, 32,
		    NULL));
		dl = i2d_ECDSA_SIG(es, &der);
		if (EVP_PKEY_fromdata_init(pc) == 1 &&
		    EVP_PKEY_fromdata(pc, &pk, EVP_PKEY_PUBLIC_KEY, params) == 1 &&
		    EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, pk) == 1)
			good = EVP_DigestVerify(md, der, (size_t)dl,
			    (const uint8_t *)"tbs", 3) == 1;
		OPENSSL_free(der);
		ECDSA_SIG_free(es);
		EVP_MD_CTX_free(md);
		EVP_PKEY_free(pk);
		OSSL_PARAM_free(params);
		OSSL_PARAM_BLD_free(bld);
		EVP_PKEY_CTX_free(pc);
	}
	ok(good, "OpenSSL verifies kmsd's signature with the CA public key");
	sl = sizeof(sig);
	ok(kms_sign(C, KMS_LABEL("ca"), KMS_SIGN_ECDSA_SHA384, 0,
	    (const uint8_t *)"tbs", 3, sig, &sl) == ERR_KEYCLASS,
	    "SHA-384 mechanism on a P-256 key: ERR_KEYCLASS");
	sl = sizeof(sig);
	ok(kms_sign(C, KMS_LABEL("ca"), KMS_SIGN_ECDSA_SHA256, 7,
	    (const uint8_t *)"tbs", 3, sig, &sl) == ERR_DENIED,
	    "unknown issuing profile: denied by policy");
	sl = sizeof(sig);
	ok(kms_sign(C, KMS_LABEL("peer/test/mac"), KMS_SIGN_ECDSA_SHA256, 0,
	    (const uint8_t *)"tbs", 3, sig, &sl) == ERR_DENIED,
	    "sign with a MAC key: denied");
	ok(kms_sign(C, KMS_LABEL("nokey"), KMS_SIGN_ECDSA_SHA256, 0,
	    (const uint8_t *)"tbs", 3, sig, &sl) == ERR_NOKEY,
	    "unknown key label: ERR_NOKEY");

	ok(kms_hmac(C, KMS_LABEL("peer/test/mac"), (const uint8_t *)"msg", 3,
	    mac) == 0, "HMAC with the peer key");
	HMAC(EVP_sha256(), kmsenv_mac, 32, (const uint8_t *)"msg", 3, exp, &ml);
	ok(memcmp(mac, exp, 32) == 0, "equals OpenSSL HMAC-SHA256");
	ok(kms_hmac_verify(C, KMS_LABEL("peer/test/mac"), (const uint8_t *)"msg",
	    3, mac) == 0, "hmac.verify accepts it");
	mac[31] ^= 1;
	ok(kms_hmac_verify(C, KMS_LABEL("peer/test/mac"), (const uint8_t *)"msg",
	    3, mac) == ERR_AUTH, "hmac.verify rejects a changed MAC: ERR_AUTH");
	ok(kms_hmac(C, KMS_LABEL("ca"), (const uint8_t *)"msg", 3, mac) ==
	    ERR_DENIED, "HMAC with the CA key: denied");
	ok(kms_hmac(C, KMS_LABEL("audit"), (const uint8_t *)"msg", 3, mac) ==
	    ERR_DENIED, "tsmd may not MAC with the audit key");
	buf_free(&pt);
}

static void
test_info_random(void)
{
	struct kms_key_info ki;
	uint8_t r[64] = { 0 }, z[64] = { 0 }, kcv[5];
	size_t kl;

	ok(kms_random(C, r, sizeof(r)) == 0 && memcmp(r, z, 64) != 0, "random");
	ok(kms_random(C, r, 0) == ERR_DENIED || kms_random(C, r, 0) == ERR_INVAL,
	    "zero-length random refused");
	{
		uint8_t *big = malloc(5000);

		ok(kms_random(C, big, 5000) == ERR_DENIED, "5000 random bytes: "
		    "denied by the len<=4096 rule");
		free(big);
	}
	ok(kms_key_info(C, KMS_LABEL("storage-kek"), &ki) == 0 &&
	    strcmp(ki.cls, "storage-kek") == 0 && ki.alg == KMS_ALG_AES256 &&
	    ki.version == 1 && ki.state == KMS_ST_ACTIVE && ki.kcvlen == 3,
	    "key.info of the storage KEK");
	ok(kms_key_info(C, KMS_LABEL("nothing"), &ki) == ERR_NOKEY,
	    "key.info unknown: ERR_NOKEY");
	ok(kms_key_info(C, (struct kms_ref){ "storage-kek", 9, 0 }, &ki) ==
	    ERR_NOKEY, "key.info of a version that does not exist: ERR_NOKEY");
	ok(kms_key_info(C, KMS_LABEL("audit"), &ki) == ERR_DENIED,
	    "tsm may not inspect the audit key");
	ok(kms_kcv(C, KMS_LABEL("peer/test/kek"), KMS_KCV_GP, kcv, &kl) == 0 &&
	    kl == 3, "kcv of the transport KEK");
	is_hex(kcv, 3, "504a77", "gp-reference §3: KCV of 4041..4F is 504A77");
}

/* ---- raw wire ---- */

static int
raw_connect(const char *path)
{
	struct sockaddr_un sa;
	struct timeval tv = { 5, 0 };
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);

	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	if (strlen(path) >= sizeof(sa.sun_path))
		bail("socket path too long");
	memcpy(sa.sun_path, path, strlen(path) + 1);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0)
		bail("raw connect");
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	return fd;
}

static void
raw_send(int fd, uint16_t type, uint16_t flags, uint32_t len_field,
    const void *body, size_t blen)
{
	struct kms_hdr h = { len_field, type, flags, 77, 0 };
	uint8_t hb[KMS_HDR_LEN];

	kms_hdr_encode(&h, hb);
	if (send(fd, hb, sizeof(hb), MSG_NOSIGNAL) < 0 ||
	    (blen && send(fd, body, blen, MSG_NOSIGNAL) < 0))
		diag("raw send failed");
}

/* Reads one reply; returns its status, or 1 when the peer closed. */
static int
raw_reply(int fd)
{
	uint8_t hb[KMS_HDR_LEN], body[4096];
	struct kms_hdr h;
	ssize_t n;
	size_t got = 0;

	while (got < sizeof(hb)) {
		n = recv(fd, hb + got, sizeof(hb) - got, 0);
		if (n <= 0)
			return 1;
		got += (size_t)n;
	}
	if (kms_hdr_decode(hb, &h) != 0 || h.len > sizeof(body))
		return 2;
	got = 0;
	while (got < h.len) {
		n = recv(fd, body + got, h.len - got, 0);
		if (n <= 0)
			return 1;
		got += (size_t)n;
	}
	return h.status;
}

static int
peer_closed(int fd)
{
	uint8_t b;

	return recv(fd, &b, 1, 0) == 0;
}

static void
raw_hello(int fd)
{
	struct buf b;

	buf_init(&b);
	if (buf_put_u16(&b, KMS_PROTO_VERSION) ||
	    buf_put_u16(&b, KMS_PROTO_VERSION) || buf_put_str(&b, "raw"))
		bail("buf");
	raw_send(fd, KMS_OP_HELLO, 0, (uint32_t)b.len, b.p, b.len);
	if (raw_reply(fd) != 0)
		bail("raw hello");
	buf_free(&b);
}

/*
 * A client that pipelines more than kmsd buffers for it (4 MiB of replies)
 * and hangs up without reading. kmsd has stopped reading it; the hang-up
 * must still close the connection (it used to stay, with EPOLLHUP on every
 * epoll_wait: a core busy for ever and the connection leaked).
 */
static void
test_hup_unread(void)
{
	static uint8_t frames[KMS_HDR_LEN * 4096];
	struct kms_hdr h = { 0, KMS_OP_STATUS, 0, 1, 0 };
	struct kms_status st0, st1;
	size_t sent = 0;
	ssize_t n;
	int fd, i, stalls = 0;

	if (kms_status(C, &st0) != 0)
		bail("status");
	fd = raw_connect(E.sock);
	raw_hello(fd);
	for (i = 0; i < 4096; i++)
		kms_hdr_encode(&h, frames + (size_t)i * KMS_HDR_LEN);
	/* About 68 bytes of reply per 16-byte request: 2 MB of requests is
	 * well past the 4 MiB kmsd keeps for a client that does not read. */
	while (sent < (2u << 20) && stalls < 50) {
		n = send(fd, frames, sizeof(frames), MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n > 0) {
			sent += (size_t)n;
			stalls = 0;
		} else {
			stalls++;
			usleep(20000);
		}
	}
	close(fd);
	memset(&st1, 0, sizeof(st1));
	for (i = 0; i < 150; i++) {
		if (kms_status(C, &st1) == 0 && st1.connections == st0.connections)
			break;
		usleep(20000);
	}
	ok(sent > (1u << 20) && st1.connections == st0.connections,
	    "a client that sent %zu bytes of requests and hung up without "
	    "reading is closed (%u connections, %u before)", sent,
	    st1.connections, st0.connections);
}

static void
test_wire(void)
{
	struct buf b;
	int fd, i, alive;
	uint8_t frame[64];

	fd = raw_connect(E.sock);
	raw_send(fd, KMS_OP_PING, 0, 0, NULL, 0);
	ok(raw_reply(fd) == ERR_PROTO && peer_closed(fd),
	    "request before hello: ERR_PROTO, connection closed");
	close(fd);

	fd = raw_connect(E.sock);
	buf_init(&b);
	if (buf_put_u16(&b, 7) || buf_put_u16(&b, 9) || buf_put_str(&b, "future"))
		bail("buf");
	raw_send(fd, KMS_OP_HELLO, 0, (uint32_t)b.len, b.p, b.len);
	ok(raw_reply(fd) == ERR_VERSION && peer_closed(fd),
	    "hello with versions 7-9 only: ERR_VERSION, closed");
	close(fd);
	fd = raw_connect(E.sock);
	buf_reset(&b);
	if (buf_put_u16(&b, 1) || buf_put_u16(&b, 1) || buf_put_str(&b, "v1"))
		bail("buf");
	raw_send(fd, KMS_OP_HELLO, 0, (uint32_t)b.len, b.p, b.len);
	ok(raw_reply(fd) == ERR_VERSION && peer_closed(fd),
	    "a version-1 client (before scp03.open, keyset.receive): "
	    "ERR_VERSION, closed");
	close(fd);

	fd = raw_connect(E.sock);
	raw_hello(fd);
	raw_send(fd, 0x0777, 0, 0, NULL, 0);
	ok(raw_reply(fd) == ERR_UNKNOWN_OP, "unknown type: ERR_UNKNOWN_OP");
	raw_send(fd, KMS_OP_PING, 0, 0, NULL, 0);
	ok(raw_reply(fd) == 0, "connection still usable after an unknown type");
	raw_send(fd, KMS_OP_RANDOM, 0, 5, "\0\0\0\x10X", 5);
	ok(raw_reply(fd) == ERR_TRAILING, "trailing byte: ERR_TRAILING");
	raw_send(fd, KMS_OP_RANDOM, 0, 2, "\0\0", 2);
	ok(raw_reply(fd) == ERR_TRUNC, "short body: ERR_TRUNC");
	raw_send(fd, KMS_OP_PING, KMS_FLAG_REPLY, 0, NULL, 0);
	ok(raw_reply(fd) == ERR_PROTO && peer_closed(fd),
	    "reply flag on a request: ERR_PROTO, closed");
	close(fd);

	fd = raw_connect(E.sock);
	raw_hello(fd);
	raw_send(fd, KMS_OP_CMAC, 0, KMS_MAX_FRAME + 1, NULL, 0);
	ok(raw_reply(fd) == ERR_TOOBIG && peer_closed(fd),
	    "length over the maximum: ERR_TOOBIG before any allocation, closed");
	close(fd);

	fd = raw_connect(E.sock);
	raw_hello(fd);
	raw_send(fd, KMS_OP_CMAC, 0, 1000, "abc", 3);
	close(fd);	/* truncated frame, then gone */

	/* Deterministic bit-flip / truncate loop over valid frames. */
	{
		uint64_t x = 0x2545f4914f6cdd1dull;
		static const uint8_t seeds[][24] = {
			{ 0, 0, 0, 4, 0x00, 0x10, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 16 },
			{ 0, 0, 0, 8, 0x00, 0x40, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 2, 0, 1, 0, 1,
			  0, 0, 0 },
			{ 0, 0, 0, 5, 0x00, 0x23, 0, 0, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 1, 0, 1 },
		};
		static const size_t seedlen[] = { 20, 24, 21 };

		for (i = 0; i < 600; i++) {
			size_t s = (size_t)i % 3, len = seedlen[s];

			fd = raw_connect(E.sock);
			raw_hello(fd);
			memcpy(frame, seeds[s], len);
			x ^= x << 13;
			x ^= x >> 7;
			x ^= x << 17;
			if (x & 1)
				frame[x % len] ^= (uint8_t)(1u << ((x >> 8) % 8));
			else
				len = (size_t)(x >> 8) % len;
			if (send(fd, frame, len, MSG_NOSIGNAL) < 0)
				diag("send");
			shutdown(fd, SHUT_WR);
			while (raw_reply(fd) <= 0)
				;
			close(fd);
		}
		alive = kill(E.pid, 0) == 0;
		ok(alive && kms_ping(C) == 0,
		    "600 mutated frames: kmsd still serves");
	}
	buf_free(&b);
}

static void
test_roles(void)
{
	struct kms_client *cu = NULL, *au = NULL;
	struct buf body, rep;
	uint8_t out[16];

	buf_init(&body);
	buf_init(&rep);
	ok(kms_connect(&cu, E.csock, "custodian-test") == 0, "custodian socket");
	ok(kms_connect(&au, E.asock, "auditor-test") == 0, "auditor socket");
	if (cu == NULL || au == NULL)
		bail("role sockets");
	ok(kms_call(cu, KMS_OP_KEY_LIST, NULL, &rep) == 0 && rep.len > 4,
	    "custodian: key.list");
	ok(kms_cmac(cu, 1, (const uint8_t *)"x", 1, out) == ERR_DENIED,
	    "custodian: cmac not available");
	ok(kms_random(au, out, 8) == ERR_DENIED, "auditor: random not available");
	ok(kms_call(au, KMS_OP_KEY_LIST, NULL, &rep) == 0, "auditor: key.list");
	ok(kms_hmac_verify(au, KMS_LABEL("audit"), (const uint8_t *)"x", 1,
	    (const uint8_t[32]){ 0 }) == ERR_AUTH,
	    "auditor: hmac.verify with the audit key runs (and fails for a bad MAC)");
	ok(kms_hmac_verify(au, KMS_LABEL("peer/test/mac"), (const uint8_t *)"x", 1,
	    (const uint8_t[32]){ 0 }) == ERR_DENIED,
	    "auditor: peer MAC key not available");
	ok(kms_call(C, KMS_OP_KEY_LIST, NULL, &rep) == ERR_DENIED,
	    "tsm: key.list not available");
	kms_close(cu);
	kms_close(au);
	buf_free(&body);
	buf_free(&rep);
}

/* A client that dies holding handles: its session objects go. */
static void
test_dead_client(void)
{
	struct kms_status st0, st1;
	struct buf blob;
	struct kms_keyset_kcvs kc;
	pid_t pid;
	int status, i;

	buf_init(&blob);
	if (kms_keyset_generate(C, KMS_ALG_AES128, KMS_KCV_GP, &blob, &kc) != 0 ||
	    kms_status(C, &st0) != 0)
		bail("setup dead client");
	pid = fork();
	if (pid == 0) {
		struct kms_client *c2;
		struct kms_keyset ks;

		if (kms_connect(&c2, E.sock, "doomed") != 0 ||
		    kms_keyset_open(c2, blob.p, blob.len, 0, &ks) != 0)
			_exit(1);
		_exit(ks.n == 3 ? 0 : 1);	/* no close, no goodbye */
	}
	waitpid(pid, &status, 0);
	ok(WIFEXITED(status) && WEXITSTATUS(status) == 0,
	    "a child opened a key set and died");
	for (i = 0; i < 100; i++) {
		if (kms_status(C, &st1) == 0 && st1.handles == st0.handles)
			break;
		usleep(20000);
	}
	ok(st1.handles == st0.handles, "its handles are gone (%u live, as before)",
	    st1.handles);
	{
		struct kms_client *c3;
		struct kms_keyset ks;
		uint32_t h;

		if (kms_connect(&c3, E.sock, "other") != 0 ||
		    kms_keyset_open(c3, blob.p, blob.len, 0, &ks) != 0)
			bail("second client");
		ok(kms_scp03_derive(C, ks.handle[0], 0x04, (const uint8_t[16]){ 0 },
		    16, 128, &h) == ERR_HANDLE,
		    "another connection's handle: ERR_HANDLE");
		kms_close(c3);
	}
	buf_free(&blob);
}

/* A connection named name and a keyset.generate request (a durable
 * reply: it waits for its audit record's sync). */
static struct kms_client *
generate_setup(const char *name, struct buf *req)
{
	struct kms_client *c;

	buf_init(req);
	if (kms_connect(&c, E.sock, name) != 0 ||
	    buf_put_u8(req, KMS_ALG_AES128) != 0 ||
	    buf_put_u8(req, KMS_KCV_GP) != 0 ||
	    buf_put_u8(req, KMS_KEYSET_RANDOM) != 0)
		bail("%s setup", name);
	return c;
}

/* The audit log cannot grow any more (a file-size limit on kmsd, as a
 * full disk would do); *old is the limit to put back with audit_room. */
static void
audit_full(struct rlimit *old)
{
	struct rlimit lim;
	struct stat sb;

	if (stat(E.audit, &sb) != 0 || prlimit(E.pid, RLIMIT_FSIZE, NULL,
	    old) != 0)
		bail("audit log size");
	lim = *old;
	lim.rlim_cur = (rlim_t)sb.st_size;
	if (prlimit(E.pid, RLIMIT_FSIZE, &lim, NULL) != 0)
		bail("prlimit");
}

static void
audit_room(const struct rlimit *old)
{
	if (prlimit(E.pid, RLIMIT_FSIZE, old, NULL) != 0)
		bail("prlimit back");
}

/*
 * Clients that send a durable request (keyset.generate: its reply waits for
 * the audit sync) and hang up at once. kmsd then closes such a connection
 * while flushing held replies when the sync completes, which may happen in
 * the middle of an epoll batch that still holds that connection's hang-up
 * event: the connection must not be used after it is freed (it was, and
 * kmsd died of heap corruption under sei_crash_test's kill -9 of tsmd).
 */
/* The audit log cannot grow (a file-size limit on kmsd, as a full disk
 * would do): a durable reply waits for its record, and leaves once the
 * record is written and synced (before, it left at once, unrecorded). */
static void
test_audit_full(void)
{
	struct rlimit old;
	struct kms_client *c;
	struct pollfd pf;
	struct buf req;
	struct rd r;
	uint32_t id, rid;
	int status = -1, n0, waited;

	c = generate_setup("audit-full", &req);
	n0 = kmsenv_count_lines(E.audit, "\"op\":\"keyset.generate\"");
	audit_full(&old);
	if (kms_submit(c, KMS_OP_KEYSET_GENERATE, &req, &id) != 0 ||
	    kms_flush(c) != 0)
		bail("audit-full submit");
	pf.fd = kms_fd(c);
	pf.events = POLLIN;
	waited = poll(&pf, 1, 2500);
	ok(waited == 0, "audit log full: the durable reply is held (%s)",
	    waited == 0 ? "none in 2.5 s" : "a reply came");
	audit_room(&old);
	ok(kms_next(c, &rid, &status, &r) == 0 && rid == id && status == 0,
	    "room again: the reply comes, ok");
	ok(kmsenv_count_lines(E.audit, "\"op\":\"keyset.generate\"") ==
	    n0 + 1, "and its record is in the log");
	buf_free(&req);
	kms_close(c);
}

/* The audit log stays full while more durable requests come than kmsd
 * queues records for (10,000): those beyond get an error, and every "ok"
 * has its record (before, they were answered "ok" with no record). */
static void
test_audit_queue_full(void)
{
	enum { N = 10100 };
	struct rlimit old;
	struct kms_client *c;
	struct buf req;
	struct rd r;
	uint32_t id, rid;
	int status, n0, i, good = 0, withheld = 0, other = 0;

	c = generate_setup("audit-queue", &req);
	n0 = kmsenv_count_lines(E.audit, "\"op\":\"keyset.generate\"");
	audit_full(&old);
	for (i = 0; i < N; i++)
		if (kms_submit(c, KMS_OP_KEYSET_GENERATE, &req, &id) != 0)
			bail("audit-queue submit");
	if (kms_flush(c) != 0)
		bail("audit-queue flush");
	/* all of them read by kmsd (the last reply is queued behind the
	 * held ones) before the log has room again */
	for (i = 0; kmsenv_count_lines(E.log, "event=audit_write_failed "
	    "op=keyset.generate") == 0; i++) {
		if (i == 9000)	/* 3 minutes: sanitizer builds are slow */
			bail("audit-queue: the queue never filled");
		usleep(20000);
	}
	usleep(300000);
	audit_room(&old);
	for (i = 0; i < N; i++) {
		if (kms_next(c, &rid, &status, &r) != 0)
			bail("audit-queue reply %d", i);
		good += status == 0;
		withheld += status == ERR_IO;
		other += status != 0 && status != ERR_IO;
	}
	ok(withheld > 0 && other == 0, "audit records queued to the limit: %d "
	    "ok, %d withheld (ERR_IO), %d other", good, withheld, other);
	is_int(kmsenv_count_lines(E.audit, "\"op\":\"keyset.generate\"") - n0,
	    good, "every ok reply has its record in the log");
	buf_free(&req);
	kms_close(c);
}

/* On one connection, replies ahead of a held durable reply leave at once
 * (before, the whole connection's output waited for the sync); those
 * behind it keep their place. The audit log is kept full as above. */
static void
test_hold_order(void)
{
	struct rlimit old;
	struct kms_client *c;
	struct pollfd pf;
	struct buf req;
	struct rd r;
	uint32_t id[3], rid;
	int status = -1, first, more, i, good = 1;

	c = generate_setup("hold-order", &req);
	audit_full(&old);
	if (kms_submit(c, KMS_OP_PING, NULL, &id[0]) != 0 ||
	    kms_submit(c, KMS_OP_KEYSET_GENERATE, &req, &id[1]) != 0 ||
	    kms_submit(c, KMS_OP_PING, NULL, &id[2]) != 0 || kms_flush(c) != 0)
		bail("hold-order submit");
	pf.fd = kms_fd(c);
	pf.events = POLLIN;
	first = poll(&pf, 1, 5000) == 1 && kms_next(c, &rid, &status, &r) == 0 &&
	    rid == id[0] && status == 0;
	ok(first, "a ping ahead of a held durable reply is answered at once");
	more = kms_buffered(c) || poll(&pf, 1, 1500) != 0;
	ok(!more, "the durable reply and the ping behind it wait for the sync");
	audit_room(&old);
	for (i = 1; i < 3; i++)
		good &= kms_next(c, &rid, &status, &r) == 0 && rid == id[i] &&
		    status == 0;
	ok(good, "room again: the durable reply, then the ping, in order");
	buf_free(&req);
	kms_close(c);
}

/* More frames in one read than kmsd serves in a pass (KMSD_FRAMES_PASS,
 * 16): the rest are served in the next passes, all answered, in order. */
static void
test_many_frames(void)
{
	enum { N = 320 };
	struct kms_client *c;
	struct rd r;
	uint32_t id0 = 0, id, rid;
	int status, i, good = 1;

	if (kms_connect(&c, E.sock, "many-frames") != 0)
		bail("many-frames connect");
	for (i = 0; i < N; i++) {
		if (kms_submit(c, KMS_OP_PING, NULL, &id) != 0)
			bail("many-frames submit");
		if (i == 0)
			id0 = id;
	}
	if (kms_flush(c) != 0)
		bail("many-frames flush");
	for (i = 0; i < N && good; i++)
		good &= kms_next(c, &rid, &status, &r) == 0 &&
		    rid == id0 + (uint32_t)i && status == 0;
	ok(good, "%d pings sent at once on one connection: all answered, in "
	    "order", N);
	kms_close(c);
}

/* kmsd answers a malformed request ERR_PROTO and hangs up: the client
 * drops that connection at once, so the next call, even one that cannot
 * be repeated, runs on a fresh one (before: ERR_CLOSED). */
static void
test_proto_status(void)
{
	struct kms_client *c;
	struct buf body;
	uint8_t mac[16];

	buf_init(&body);
	if (kms_connect(&c, E.sock, "proto-status") != 0 ||
	    buf_put_u8(&body, 0xEE) != 0)
		bail("proto-status setup");
	is_int(kms_call(c, KMS_OP_HMAC, &body, NULL), ERR_PROTO,
	    "a key reference of an unknown kind: ERR_PROTO from kmsd");
	is_int(kms_cmac(c, 12345, (const uint8_t *)"x", 1, mac), ERR_HANDLE,
	    "the next call (cmac, not repeatable) runs on a fresh connection");
	buf_free(&body);
	kms_close(c);
}

static void
test_abandoned_durable(void)
{
	enum { CONNS = 48, ROUNDS = 25 };
	struct kms_client *c[CONNS];
	struct kms_status st;
	struct buf req;
	uint32_t id;
	int r, i, sent = 0;

	buf_init(&req);
	if (buf_put_u8(&req, KMS_ALG_AES128) != 0 ||
	    buf_put_u8(&req, KMS_KCV_GP) != 0 ||
	    buf_put_u8(&req, KMS_KEYSET_RANDOM) != 0)
		bail("request");
	for (r = 0; r < ROUNDS; r++) {
		for (i = 0; i < CONNS; i++) {
			c[i] = NULL;
			if (kms_connect(&c[i], E.sock, "hangs-up") != 0)
				continue;
			if (kms_submit(c[i], KMS_OP_KEYSET_GENERATE, &req, &id) == 0 &&
			    kms_flush(c[i]) == 0)
				sent++;
		}
		for (i = 0; i < CONNS; i++)
			kms_close(c[i]);	/* without reading the reply */
	}
	buf_free(&req);
	ok(sent == CONNS * ROUNDS, "%d durable requests sent, every client hung "
	    "up before its reply", sent);
	memset(&st, 0, sizeof(st));
	r = kms_status(C, &st);
	ok(r == 0 && kill(E.pid, 0) == 0, "kmsd still serves (%u connections "
	    "now)", st.connections);
}

/* A pipelined reply left unread puts a connection out of step: the next
 * synchronous call fails once and the one after works on a new connection
 * (before, every later call got the reply before its own). */
static void
test_out_of_step(void)
{
	struct kms_client *c;
	uint32_t id, gen;

	if (kms_connect(&c, E.sock, "out-of-step") != 0)
		bail("connect");
	gen = kms_generation(c);
	ok(kms_submit(c, KMS_OP_PING, NULL, &id) == 0, "ping queued, its "
	    "reply never read");
	ok(kms_ping(c) == ERR_PROTO, "the next call reads that reply: ERR_PROTO");
	ok(kms_ping(c) == 0 && kms_ping(c) == 0 && kms_generation(c) != gen,
	    "later calls work on a new connection");
	kms_close(c);
}

/* ---- audit ---- */

struct vctx {
	struct p11 *p;
	p11_obj key;
};

static int
verify_cb(void *ctx, const uint8_t *d, size_t n, const uint8_t mac[32])
{
	struct vctx *v = ctx;

	return p11_hmac_sha256_verify(v->p, v->key, d, n, mac);
}

static void
tamper_copy(const char *src, const char *dst, int mode)
{
	char *lines[20000];
	char buf[8192];
	FILE *in = fopen(src, "r"), *out = fopen(dst, "w");
	int n = 0, i;

	if (in == NULL || out == NULL)
		bail("tamper copy");
	while (n < 20000 && fgets(buf, sizeof(buf), in) != NULL)
		lines[n++] = strdup(buf);
	for (i = 0; i < n; i++) {
		if (mode == 1 && i == n / 2) {	/* edit a detail */
			char *p = strstr(lines[i], "\"result\":\"");

			if (p != NULL)
				p[10] = p[10] == 'o' ? 'x' : 'o';
		}
		if (mode == 2 && i == n / 2)	/* delete */
			continue;
		if (mode == 3 && i == n / 2) {	/* swap with the next */
			fputs(lines[i + 1], out);
			fputs(lines[i], out);
			i++;
			continue;
		}
		fputs(lines[i], out);
	}
	for (i = 0; i < n; i++)
		free(lines[i]);
	fclose(in);
	fclose(out);
}

static void
test_audit(struct p11 *p, struct keystore *ks)
{
	struct ks_key *k = ks_find(ks, "audit");
	struct ks_version *v;
	struct audit_report rep;
	struct vctx vc = { p, 0 };
	char copy[600];
	int rc, lines;

	if (k == NULL || ks_version(k, 0, &v) != 0 || ks_object(ks, k, v, &vc.key) != 0)
		bail("audit key");
	rc = audit_verify_file(E.audit, verify_cb, &vc, &rep);
	lines = kmsenv_count_lines(E.audit, NULL);
	ok(rc == 0 && rep.lines == (uint64_t)lines && lines > 50,
	    "audit log verifies: %d lines, chain and token MACs", lines);
	ok(kmsenv_count_lines(E.audit, "\"op\":\"cmac\",\"key\":\"h:") > 0 &&
	    kmsenv_count_lines(E.audit, "\"result\":\"deny\"") >= 10,
	    "denials and first uses are recorded");
	ok(kmsenv_count_lines(E.audit, "\"op\":\"keyset.import\"") > 5,
	    "every key-set import is recorded");
	ok(kmsenv_count_lines(E.audit, "\"op\":\"keyset.receive\",\"key\":"
	    "\"peer/test/kek peer/test/mac#1\"") >= 2 &&
	    kmsenv_count_lines(E.audit, "the peer's MAC does not verify") >= 2,
	    "keyset.receive is recorded with both keys, refusals too");
	ok(kmsenv_count_lines(E.audit, "connection closed") > 0,
	    "the dead client's handles are recorded as closed");
	snprintf(copy, sizeof(copy), "%s/audit.copy", E.dir);
	tamper_copy(E.audit, copy, 1);
	rc = audit_verify_file(copy, verify_cb, &vc, &rep);
	ok(rc == ERR_AUDIT && rep.bad_line == (uint64_t)lines / 2 + 1,
	    "edited line detected at line %llu: %s",
	    (unsigned long long)rep.bad_line, rep.reason);
	tamper_copy(E.audit, copy, 2);
	rc = audit_verify_file(copy, verify_cb, &vc, &rep);
	ok(rc == ERR_AUDIT && rep.bad_line == (uint64_t)lines / 2 + 1,
	    "deleted line detected: %s", rep.reason);
	tamper_copy(E.audit, copy, 3);
	rc = audit_verify_file(copy, verify_cb, &vc, &rep);
	ok(rc == ERR_AUDIT && rep.bad_line == (uint64_t)lines / 2 + 1,
	    "reordered lines detected: %s", rep.reason);
	tamper_copy(E.audit, copy, 0);
	ok(audit_verify_file(copy, verify_cb, &vc, &rep) == 0,
	    "an untouched copy verifies");
}

/* scp03.open is decided step by step too: a policy without the host
 * cryptogram (scp03.kdf const 01) refuses an open that asks for it. */
static void
test_policy_steps(void)
{
	const char *top = getenv("SPTSM_TOP");
	char pol[300], src[300], line[400];
	const char *extra[] = { "--policy", pol, NULL };
	struct kms_scp03_open o;
	struct kms_keyset_kcvs kc;
	struct kms_keyset ks;
	struct kms_client *c = NULL;
	uint8_t ctx[16] = { 7 };
	struct buf blob;
	FILE *in, *out;

	snprintf(src, sizeof(src), "%.200s/policy/kms.policy", top ? top : ".");
	snprintf(pol, sizeof(pol), "%.200s/steps.policy", E.dir);
	if ((in = fopen(src, "r")) == NULL || (out = fopen(pol, "w")) == NULL)
		bail("policy files");
	while (fgets(line, sizeof(line), in) != NULL)
		fputs(strstr(line, "scp03.kdf class=session const=00,01") ?
		    "allow tsm scp03.kdf class=session const=00 usage=smac\n" :
		    line, out);
	fclose(in);
	fclose(out);
	buf_init(&blob);
	if (kmsenv_start(&E, extra) != 0 || kms_connect(&c, E.sock, "steps") != 0 ||
	    kms_keyset_generate(c, KMS_ALG_AES128, KMS_KCV_GP, &blob, &kc) != 0 ||
	    kms_keyset_open(c, blob.p, blob.len, 0, &ks) != 0)
		bail("kmsd with the steps policy");
	is_int(kms_scp03_open(c, ks.handle[0], ks.handle[1], SCP03_OPEN_HOST,
	    ctx, 16, 64, NULL, 0, &o), ERR_DENIED, "scp03.open asking for the "
	    "host cryptogram, which the policy does not allow: denied");
	is_int(kms_scp03_open(c, ks.handle[0], ks.handle[1], 0, ctx, 16, 64,
	    NULL, 0, &o), 0, "without it: opened");
	kms_close(c);
	buf_free(&blob);
	(void)kmsenv_stop(&E, 0);
}

static void
test_identity(void)
{
	char pol[300];
	const char *extra[] = { "--policy", pol, NULL };
	struct kms_client *c = NULL;
	FILE *f;
	int rc;

	snprintf(pol, sizeof(pol), "%.200s/strict.policy", E.dir);
	f = fopen(pol, "w");
	if (f == NULL)
		bail("policy file");
	fprintf(f, "identity uid=%u roles=auditor\nallow auditor key.list\n",
	    (unsigned)getuid());
	fclose(f);
	if (kmsenv_start(&E, extra) != 0)
		bail("kmsd with strict policy");
	rc = kms_connect(&c, E.sock, "not-tsm");
	ok(rc != 0, "uid not allowed the tsm role: connection refused (%s)",
	    err_name(rc));
	kms_close(c);
	ok(kms_connect(&c, E.asock, "auditor") == 0, "auditor role allowed");
	kms_close(c);
	(void)kmsenv_stop(&E, 0);

	f = fopen(pol, "w");
	fprintf(f, "allow tsm cmac class=sessoin\n");
	fclose(f);
	ok(kmsenv_start(&E, extra) != 0, "policy with an unknown class: kmsd "
	    "refuses to start");
	ok(kmsenv_count_lines(E.log, "strict.policy:1:") > 0,
	    "and says where (file:line:col)");
}

int
main(void)
{
	struct p11 *p;
	struct keystore ks;
	struct kms_status st;
	struct buf blob;
	struct kms_keyset_kcvs kc;
	struct kms_keyset kso;

	if (kmsenv_setup(&E, KMSENV_RSA) != 0)
		bail("fixture");
	if (kmsenv_start(&E, NULL) != 0)
		bail("kmsd did not start (see %s)", E.log);
	if (kms_connect(&C, E.sock, "kmsd_test") != 0)
		bail("connect");
	ok(kms_status(C, &st) == 0 && !st.sealed, "kmsd unsealed with the PIN file");
	token_caps = st.caps;
	diag("token caps 0x%x (AES-192 %s)", token_caps,
	    token_caps & P11_CAP_AES_192 ? "yes" : "no");
	if (kmsenv_open_token(&E, &p, &ks) != 0)
		bail("token for checks");

	test_info_random();
	test_kat1();
	test_kat_file();
	test_wrap();
	test_keysets();
	test_receive();
	test_rsa_transport(p, &ks);
	test_sign_hmac(p, &ks);
	test_roles();
	test_dead_client();
	test_abandoned_durable();
	test_hold_order();
	test_many_frames();
	test_audit_full();
	test_audit_queue_full();
	test_proto_status();
	test_out_of_step();
	test_hup_unread();
	test_wire();

	/* Restart: keys, versions and blobs survive. */
	buf_init(&blob);
	ok(kms_keyset_generate(C, KMS_ALG_AES128, KMS_KCV_GP, &blob, &kc) == 0,
	    "blob before restart");
	kms_close(C);
	ok(kmsenv_stop(&E, 0) == 0, "kmsd stops cleanly on SIGTERM");
	ok(access(E.sock, F_OK) != 0, "and removes its sockets");
	if (kmsenv_start(&E, NULL) != 0 || kms_connect(&C, E.sock, "again") != 0)
		bail("restart");
	ok(kms_keyset_open(C, blob.p, blob.len, 0, &kso) == 0 &&
	    memcmp(kso.kcv[0], kc.kcv[0], 3) == 0, "the blob opens after restart");
	kms_close(C);
	(void)kmsenv_stop(&E, 0);
	buf_free(&blob);

	test_audit(p, &ks);
	ks_free(&ks);
	p11_close(p);
	test_policy_steps();
	test_identity();
	kmsenv_cleanup(&E);
	return done_testing();
}
