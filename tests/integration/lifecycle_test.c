/*
 * lifecycle_test.c - kmsd enforces the NIST SP 800-57 key states on every
 * operation: for each state a key walks through (ACTIVE, SUSPENDED,
 * DEACTIVATED, COMPROMISED, PENDING_DESTRUCTION, DESTROYED, and a
 * PRE_ACTIVE key), every protecting operation (sign, hmac, keyset.generate
 * = wrap under the storage KEK) and processing operation (hmac.verify,
 * keyset.open = unwrap, keyset.import = unwrap under the transport KEK) is
 * tried through a real kmsd. States change in the token (as kmsctl does)
 * and kmsd is told to reload.
 */
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "kms/kms.h"
#include "tests/kmsenv.h"
#include "tests/tap.h"

static struct kmsenv E;
static struct kms_client *C, *CU;
static struct p11 *P;
static struct keystore KS;
static struct buf blob;
static struct kms_wrapped wr[3];
static uint8_t w[3][24], kcv[3][3];

static const char *const labels[] = { "ca", "peer/test/mac", "storage-kek",
	"peer/test/kek" };

static void
set_all(int state)
{
	size_t i;

	for (i = 0; i < ARRAY_LEN(labels); i++) {
		struct ks_key *k = ks_find(&KS, labels[i]);
		struct ks_version *v;
		int rc;

		if (k == NULL || ks_version(k, 0, &v) != 0)
			bail("key %s", labels[i]);
		if (state == KMS_ST_DESTROYED)
			rc = ks_destroy_version(&KS, k, v, "test");
		else
			rc = ks_set_state(&KS, k, v, state, "test", 0);
		if (rc != 0)
			bail("%s -> %s: %s", labels[i], kms_state_name(state),
			    err_name(rc));
	}
	if (kms_call(CU, KMS_OP_RELOAD, NULL, NULL) != 0)
		bail("reload: %s", kms_last_error(CU));
}

/* Results of the six operations in the current states. */
static void
try_all(int r[6])
{
	uint8_t sig[128], mac[32];
	size_t sl = sizeof(sig);
	struct buf nb;
	struct kms_keyset_kcvs kc;
	struct kms_keyset ks;
	unsigned int ml;

	buf_init(&nb);
	r[0] = kms_sign(C, KMS_LABEL("ca"), KMS_SIGN_ECDSA_SHA256, 0,
	    (const uint8_t *)"x", 1, sig, &sl);
	r[1] = kms_hmac(C, KMS_LABEL("peer/test/mac"), (const uint8_t *)"x", 1, mac);
	r[2] = kms_keyset_generate(C, KMS_ALG_AES128, KMS_KCV_GP, &nb, &kc);
	HMAC(EVP_sha256(), kmsenv_mac, 32, (const uint8_t *)"x", 1, mac, &ml);
	r[3] = kms_hmac_verify(C, KMS_LABEL("peer/test/mac"), (const uint8_t *)"x",
	    1, mac);
	r[4] = kms_keyset_open(C, blob.p, blob.len, 0, &ks);
	if (r[4] == 0)
		for (size_t i = 0; i < ks.n; i++)
			if (kms_handle_close(C, ks.handle[i]) != 0)
				diag("close");
	r[5] = kms_keyset_import(C, "peer/test/kek", KMS_WRAP_AES_KW, KMS_ALG_AES128,
	    KMS_KCV_GP, wr, 3, &nb, &kc);
	buf_free(&nb);
}

static const char *const opname[6] = { "sign", "hmac", "keyset.generate (wrap)",
	"hmac.verify", "keyset.open (unwrap)",
	"keyset.import (unwrap, then wrap under the storage KEK)" };

static void
check_state(int state, const int want_ok[6])
{
	int r[6], i;

	try_all(r);
	for (i = 0; i < 6; i++) {
		if (want_ok[i])
			ok(r[i] == 0, "%s: %s allowed", kms_state_name(state), opname[i]);
		else
			ok(r[i] == ERR_KEYSTATE || (state == KMS_ST_DESTROYED &&
			    r[i] == ERR_NOKEY), "%s: %s refused (%s)",
			    kms_state_name(state), opname[i], err_name(r[i]));
	}
}

int
main(void)
{
	static const int all[6] = { 1, 1, 1, 1, 1, 1 };
	static const int none[6] = { 0, 0, 0, 0, 0, 0 };
	/* import also rewraps under the (deactivated) storage KEK */
	static const int process[6] = { 0, 0, 0, 1, 1, 0 };
	struct kms_keyset_kcvs kc;
	struct kms_key_info ki;
	uint8_t key[16];
	int i;

	if (kmsenv_setup(&E, 0) != 0 || kmsenv_start(&E, NULL) != 0 ||
	    kms_connect(&C, E.sock, "lifecycle") != 0 ||
	    kms_connect(&CU, E.csock, "lifecycle-custodian") != 0 ||
	    kmsenv_open_token(&E, &P, &KS) != 0)
		bail("fixture");
	buf_init(&blob);
	for (i = 0; i < 3; i++) {
		EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
		int l1 = 0, l2 = 0;

		memset(key, 0x40 + i, sizeof(key));
		EVP_CIPHER_CTX_set_flags(c, EVP_CIPHER_CTX_FLAG_WRAP_ALLOW);
		if (EVP_EncryptInit_ex(c, EVP_aes_128_wrap(), NULL, kmsenv_kek128,
		    NULL) != 1 || EVP_EncryptUpdate(c, w[i], &l1, key, 16) != 1 ||
		    EVP_EncryptFinal_ex(c, w[i] + l1, &l2) != 1)
			bail("wrap");
		EVP_CIPHER_CTX_free(c);
		if (ks_kcv_bytes(KMS_ALG_AES128, KMS_KCV_GP, key, 16, kcv[i],
		    &(size_t){ 0 }) != 0)
			bail("kcv");
		wr[i] = (struct kms_wrapped){ (uint8_t)(KMS_USE_ENC + i), w[i], 24,
		    kcv[i], 3 };
	}
	if (kms_keyset_generate(C, KMS_ALG_AES128, KMS_KCV_GP, &blob, &kc) != 0)
		bail("blob");

	check_state(KMS_ST_ACTIVE, all);

	/* An archived transport KEK still unwraps (the storage KEK active). */
	{
		struct ks_key *k = ks_find(&KS, "peer/test/kek256");
		struct ks_version *v;
		struct kms_wrapped w2[3];
		uint8_t ww[3][24];
		struct buf nb;

		buf_init(&nb);
		for (i = 0; i < 3; i++) {
			EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
			int l1 = 0, l2 = 0;

			memset(key, 0x40 + i, sizeof(key));
			EVP_CIPHER_CTX_set_flags(c, EVP_CIPHER_CTX_FLAG_WRAP_ALLOW);
			if (EVP_EncryptInit_ex(c, EVP_aes_256_wrap(), NULL,
			    kmsenv_kek256, NULL) != 1 ||
			    EVP_EncryptUpdate(c, ww[i], &l1, key, 16) != 1 ||
			    EVP_EncryptFinal_ex(c, ww[i] + l1, &l2) != 1)
				bail("wrap");
			EVP_CIPHER_CTX_free(c);
			w2[i] = (struct kms_wrapped){ (uint8_t)(KMS_USE_ENC + i), ww[i],
			    24, kcv[i], 3 };
		}
		if (k == NULL || ks_version(k, 0, &v) != 0 ||
		    ks_set_state(&KS, k, v, KMS_ST_DEACTIVATED, "test", 0) != 0 ||
		    kms_call(CU, KMS_OP_RELOAD, NULL, NULL) != 0)
			bail("archive kek256");
		ok(kms_keyset_import(C, "peer/test/kek256", KMS_WRAP_AES_KW,
		    KMS_ALG_AES128, KMS_KCV_GP, w2, 3, &nb, &kc) == 0,
		    "DEACTIVATED transport KEK: keyset.import still unwraps");
		buf_free(&nb);
	}
	set_all(KMS_ST_SUSPENDED);
	check_state(KMS_ST_SUSPENDED, none);
	set_all(KMS_ST_ACTIVE);
	check_state(KMS_ST_ACTIVE, all);
	set_all(KMS_ST_DEACTIVATED);
	check_state(KMS_ST_DEACTIVATED, process);
	set_all(KMS_ST_COMPROMISED);
	check_state(KMS_ST_COMPROMISED, none);
	set_all(KMS_ST_PENDING_DESTRUCTION);
	check_state(KMS_ST_PENDING_DESTRUCTION, none);
	set_all(KMS_ST_DESTROYED);
	check_state(KMS_ST_DESTROYED, none);
	ok(kms_key_info(C, KMS_LABEL("ca"), &ki) == 0 &&
	    ki.state == KMS_ST_DESTROYED, "a destroyed key's record remains");

	/* A PRE_ACTIVE key: nothing until activated. */
	{
		uint32_t v;
		uint8_t sig[128];
		size_t sl = sizeof(sig);
		struct ks_key *k;
		struct ks_version *ver;

		if (ks_generate(&KS, "ca2", KS_CA, KMS_ALG_EC_P256, 0, 1, &v) != 0 ||
		    kms_call(CU, KMS_OP_RELOAD, NULL, NULL) != 0)
			bail("pre-active key");
		ok(kms_sign(C, KMS_LABEL("ca2"), KMS_SIGN_ECDSA_SHA256, 0,
		    (const uint8_t *)"x", 1, sig, &sl) == ERR_KEYSTATE,
		    "PRE_ACTIVE: sign refused");
		k = ks_find(&KS, "ca2");
		if (k == NULL || ks_version(k, v, &ver) != 0 ||
		    ks_set_state(&KS, k, ver, KMS_ST_ACTIVE, NULL, 0) != 0 ||
		    kms_call(CU, KMS_OP_RELOAD, NULL, NULL) != 0)
			bail("activate");
		sl = sizeof(sig);
		ok(kms_sign(C, KMS_LABEL("ca2"), KMS_SIGN_ECDSA_SHA256, 0,
		    (const uint8_t *)"x", 1, sig, &sl) == 0,
		    "after activation: sign allowed");
	}
	/* Restart: the states come back from the token. */
	kms_close(C);
	kms_close(CU);
	(void)kmsenv_stop(&E, 0);
	if (kmsenv_start(&E, NULL) != 0 || kms_connect(&C, E.sock, "again") != 0)
		bail("restart");
	ok(kms_key_info(C, KMS_LABEL("storage-kek"), &ki) == 0 &&
	    ki.state == KMS_ST_DESTROYED, "state survives a restart");
	ok(kms_keyset_open(C, blob.p, blob.len, 0, &(struct kms_keyset){ 0 }) ==
	    ERR_KEYSTATE, "and is still enforced");
	kms_close(C);
	ks_free(&KS);
	p11_close(P);
	buf_free(&blob);
	kmsenv_cleanup(&E);
	return done_testing();
}
