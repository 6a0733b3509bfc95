/*
 * seisim_wrap_test.c - §9.4 key sync from the simulator to a real tsmd for
 * every agreed way of carrying the keys: AES-KW and AES-KWP under a
 * transport KEK (AES-128 and AES-256), GP and CMAC check values, RSA-OAEP
 * to the SP-TSM's key-transport key exported from the token (SHA-1; SHA-256
 * is refused by SoftHSM2, which the simulator records). Each case creates
 * an SSD on a virtual SE through §9.1/§9.2, then checks the outcome the
 * simulator recorded (receipt verified) against tsmd's store.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>

#include "tests/tap.h"
#include "tests/integration/seisim_fixture.h"
#include "tests/integration/seisim_agent.h"
#include "kms/keystore.h"
#include "tsm/store/store.h"

static struct kmsenv E;
static struct kms_client *kc;
static char rsa_pem[600];

/* The token's "transport-rsa" public key as PEM, as kmsctl key
 * export-public writes it. */
static void
export_rsa(void)
{
	struct p11 *p = NULL;
	struct keystore ks;
	struct ks_key *k;
	struct ks_version *v;
	struct buf n, e;
	p11_obj po;
	OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
	OSSL_PARAM *params = NULL;
	EVP_PKEY_CTX *pc = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL);
	EVP_PKEY *pk = NULL;
	BIGNUM *bn = NULL, *be = NULL;
	FILE *f;

	buf_init(&n);
	buf_init(&e);
	if (kmsenv_open_token(&E, &p, &ks) != 0 ||
	    (k = ks_find(&ks, "transport-rsa")) == NULL ||
	    ks_version(k, 0, &v) != 0 || ks_public(&ks, k, v, &po) != 0 ||
	    p11_rsa_public(p, po, &n, &e) != 0)
		bail("transport-rsa public key");
	bn = BN_bin2bn(n.p, (int)n.len, NULL);
	be = BN_bin2bn(e.p, (int)e.len, NULL);
	OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, bn);
	OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, be);
	params = OSSL_PARAM_BLD_to_param(bld);
	snprintf(rsa_pem, sizeof(rsa_pem), "%s/sp-transport.pub.pem", E.dir);
	if (pc == NULL || EVP_PKEY_fromdata_init(pc) != 1 ||
	    EVP_PKEY_fromdata(pc, &pk, EVP_PKEY_PUBLIC_KEY, params) != 1 ||
	    (f = fopen(rsa_pem, "w")) == NULL)
		bail("PEM");
	if (PEM_write_PUBKEY(f, pk) != 1)
		bail("PEM write");
	fclose(f);
	diag("SP transport key: RSA-%d", EVP_PKEY_get_bits(pk));
	EVP_PKEY_free(pk);
	EVP_PKEY_CTX_free(pc);
	OSSL_PARAM_free(params);
	OSSL_PARAM_BLD_free(bld);
	BN_free(bn);
	BN_free(be);
	buf_free(&n);
	buf_free(&e);
	ks_free(&ks);
	p11_close(p);
}

struct variant {
	const char    *name;
	const char    *wrap;		/* both sides */
	const char    *kcv;		/* both sides */
	const uint8_t *kek;		/* the simulator's KEK (AES cases) */
	size_t         klen;
	const char    *tsm_kek;		/* tsmd's transportKek label */
	const char    *want;		/* keySync status expected */
	long           want_rc;		/* tsmd's resultCode when refused */
};

static void
run_variant(const struct variant *v, int idx)
{
	char dir[600], mat[700], extra_m[800], var[700], addr[64], url[128],
	    ca[800], se[17], cp[700];
	const char *xa[8];
	struct fx_sim sim;
	struct tsm_peer peer;
	struct vse *card;
	struct run r;
	json_t *root = NULL, *ks;
	const char *st;
	pid_t tsmd;

	snprintf(dir, sizeof(dir), "%s/v%d", E.dir, idx);
	if (mkdir_p(dir, 0700) != 0)
		bail("mkdir");
	snprintf(mat, sizeof(mat), "%s/material.json", dir);
	extra_m[0] = '\0';
	if (strncmp(v->wrap, "RSA", 3) == 0)
		snprintf(extra_m, sizeof(extra_m), "\"spTransportPublicKey\": "
		    "\"%s\",", rsa_pem);
	fx_material_kek(mat, v->wrap, v->kcv, extra_m, v->kek, v->klen);
	tsmd = fx_tsmd_start(dir, E.sock, "https://127.0.0.1:9", "/dev/null",
	    v->wrap, v->kcv, v->tsm_kek, var, sizeof(var), addr, sizeof(addr));
	snprintf(url, sizeof(url), "https://%s", addr);
	snprintf(ca, sizeof(ca), "%s/ca.pem", var);
	xa[0] = "--tsm-url";
	xa[1] = url;
	xa[2] = "--tsm-ca";
	xa[3] = ca;
	xa[4] = NULL;
	fx_sim_start(&sim, dir, "sim", mat, xa);
	fx_peer(&peer, &sim);
	snprintf(se, sizeof(se), "00112233445566%02X", idx);
	snprintf(cp, sizeof(cp), "%s/card.json", dir);
	card = demo_card(cp, se);

	r = drive(&peer, kc, card, "CREATE_SSD", se, "A000000999000011",
	    "804000", "0370");
	ok(r.rc == 0 && r.done, "%s: SSD created through 9.1/9.2 (%s)", v->name,
	    r.message);
	ks = wait_keysync(&sim, se, "A000000999000011", &root);
	st = json_string_value(json_object_get(ks, "status"));
	ok(st != NULL && strcmp(st, v->want) == 0, "%s: key sync %s (%s)",
	    v->name, st ? st : "not recorded", json_string_value(
	    json_object_get(ks, "message")));
	if (strcmp(v->want, "OK") == 0) {
		struct store_opts o = { .readonly = 1 };
		struct store *ts = NULL;
		struct store_keyset k;
		char sd[800], h[11];
		size_t i;
		int same = 0;

		ok(json_is_true(json_object_get(ks, "receiptVerified")),
		    "%s: receipt verified by the simulator", v->name);
		snprintf(sd, sizeof(sd), "%s/tsm/store", var);
		store_keyset_init(&k);
		if (store_open(&ts, sd, &o) == 0 &&
		    store_keyset_get(ts, se, "A000000999000011", 0x30, &k) == 0) {
			same = k.n_keys == 3;
			for (i = 0; same && i < 3; i++) {
				hex_encode_upper(k.keys[i].kcv, k.keys[i].kcv_len, h);
				same = strcasecmp(h, json_string_value(json_array_get(
				    json_object_get(ks, "checkValue"), i))) == 0;
			}
		}
		ok(same, "%s: tsmd stored the set with the KCVs sent (%s)", v->name,
		    strcmp(v->kcv, "CMAC") == 0 ? "5-byte CMAC" : "3-byte GP");
		store_keyset_cleanup(&k);
		store_close(ts);
	} else {
		ok(json_integer_value(json_object_get(ks, "resultCode")) ==
		    v->want_rc && !json_is_true(json_object_get(ks,
		    "receiptVerified")), "%s: tsmd's resultCode %ld recorded, no "
		    "receipt", v->name, v->want_rc);
	}
	json_decref(root);
	vse_free(card);
	fx_sim_stop(&sim);
	kill(tsmd, SIGTERM);
	waitpid(tsmd, NULL, 0);
}

int
main(void)
{
	const struct variant vs[] = {
		{ "AES-KWP, AES-128 KEK", "AES-KWP", "GP", kmsenv_kek128, 16,
		  "peer/test/kek", "OK", 0 },
		{ "AES-KW, CMAC check values", "AES-KW", "CMAC", kmsenv_kek128,
		  16, "peer/test/kek", "OK", 0 },
		{ "AES-KWP, AES-256 KEK", "AES-KWP", "GP", kmsenv_kek256, 32,
		  "peer/test/kek256", "OK", 0 },
		{ "RSA-OAEP-SHA1 to the SP transport key", "RSA-OAEP-SHA1", "GP",
		  kmsenv_kek128, 16, "transport-rsa", "OK", 0 },
		{ "RSA-OAEP-SHA256 (SoftHSM2 cannot unwrap it)", "RSA-OAEP-SHA256",
		  "GP", kmsenv_kek128, 16, "transport-rsa", "REFUSED", 1007 },
		{ "AES-KW under another KEK than tsmd's", "AES-KW", "GP",
		  kmsenv_kek128, 16, "peer/test/kek256", "REFUSED", 1007 },
	};
	size_t i;

	log_init("seisim_wrap_test", LOG_ERR);
	if (sei_client_init() != 0)
		bail("curl");
	if (kmsenv_setup(&E, KMSENV_RSA) != 0)
		bail("kmsenv_setup");
	export_rsa();
	if (kmsenv_start(&E, NULL) != 0)
		bail("kmsd did not start (%s)", E.log);
	if (kms_connect(&kc, E.sock, "seisim-wrap-test") != 0)
		bail("kms_connect");
	for (i = 0; i < ARRAY_LEN(vs); i++)
		run_variant(&vs[i], (int)i + 1);
	kms_close(kc);
	kmsenv_stop(&E, 0);
	if (tap_failed == 0)
		kmsenv_cleanup(&E);
	else
		diag("kept %s", E.dir);
	sei_client_cleanup();
	return done_testing();
}
