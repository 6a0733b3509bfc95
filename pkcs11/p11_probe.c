/*
 * p11_probe.c - finds out what the token can really do by trying each
 * mechanism once with throw-away session objects, against known answers
 * where one exists (modules list mechanisms in C_GetMechanismInfo that then
 * fail). Runs in kmsd and kmsctl at start-up.
 */
#include <stdio.h>
#include <string.h>

#include "pkcs11/p11_int.h"

static const struct {
	uint32_t bit;
	const char *name;
} cap_names[] = {
	{ P11_CAP_AES_GEN, "aes-keygen" },
	{ P11_CAP_AES_CMAC, "aes-cmac" },
	{ P11_CAP_AES_ECB, "aes-ecb" },
	{ P11_CAP_AES_CBC, "aes-cbc" },
	{ P11_CAP_AES_KW, "aes-kw" },
	{ P11_CAP_AES_KWP, "aes-kwp" },
	{ P11_CAP_AES_CBC_WRAP, "aes-cbc-wrap" },
	{ P11_CAP_ECB_DERIVE, "aes-ecb-encrypt-data" },
	{ P11_CAP_SP800_108, "sp800-108-counter-kdf" },
	{ P11_CAP_HMAC_SHA256, "hmac-sha256" },
	{ P11_CAP_EC_P256, "ec-p256" },
	{ P11_CAP_EC_P384, "ec-p384" },
	{ P11_CAP_ECDSA, "ecdsa" },
	{ P11_CAP_RSA_GEN, "rsa-keygen" },
	{ P11_CAP_RSA_OAEP_SHA1, "rsa-oaep-sha1" },
	{ P11_CAP_RSA_OAEP_SHA256, "rsa-oaep-sha256" },
	{ P11_CAP_AES_192, "aes-192" },
	{ P11_CAP_DES3_ECB, "des3-ecb" },
	{ P11_CAP_TRUSTED_WRAP, "user-trusted-kek" },
};

const char *
p11_cap_name(uint32_t bit)
{
	size_t i;

	for (i = 0; i < ARRAY_LEN(cap_names); i++)
		if (cap_names[i].bit == bit)
			return cap_names[i].name;
	return "?";
}

/* NIST SP 800-38A / RFC 4493 AES-128 key and first plaintext block. */
static const uint8_t kat_key[16] = { 0x2b, 0x7e, 0x15, 0x16, 0x28, 0xae, 0xd2,
	0xa6, 0xab, 0xf7, 0x15, 0x88, 0x09, 0xcf, 0x4f, 0x3c };
static const uint8_t kat_pt[16] = { 0x6b, 0xc1, 0xbe, 0xe2, 0x2e, 0x40, 0x9f,
	0x96, 0xe9, 0x3d, 0x7e, 0x11, 0x73, 0x93, 0x17, 0x2a };
static const uint8_t kat_cmac[16] = { 0x07, 0x0a, 0x16, 0xb4, 0x6b, 0x4d, 0x41,
	0x44, 0xf7, 0x9b, 0xdd, 0x9d, 0xd0, 0x4a, 0x28, 0x7c };
static const uint8_t kat_ecb[16] = { 0x3a, 0xd7, 0x7b, 0xb4, 0x0d, 0x7a, 0x36,
	0x60, 0xa8, 0x9e, 0xca, 0xf3, 0x24, 0x66, 0xef, 0x97 };
static const uint8_t kat_cbc[16] = { 0x76, 0x49, 0xab, 0xac, 0x81, 0x19, 0xb2,
	0x46, 0xce, 0xe9, 0x8e, 0x9b, 0x12, 0xe9, 0x19, 0x7d };
static const uint8_t kat_key192[24] = { 0x8e, 0x73, 0xb0, 0xf7, 0xda, 0x0e,
	0x64, 0x52, 0xc8, 0x10, 0xf3, 0x2b, 0x80, 0x90, 0x79, 0xe5, 0x62, 0xf8,
	0xea, 0xd2, 0x52, 0x2c, 0x6b, 0x7b };
static const uint8_t kat_ecb192[16] = { 0xbd, 0x33, 0x4f, 0x1d, 0x6e, 0x45,
	0xf2, 0x5f, 0xf7, 0x12, 0xa2, 0x14, 0x57, 0x1f, 0xa5, 0xcc };
static const uint8_t kat_cmac192[16] = { 0x9e, 0x99, 0xa7, 0xbf, 0x31, 0xe7,
	0x10, 0x90, 0x06, 0x62, 0xf6, 0x5e, 0x61, 0x7c, 0x51, 0x84 };
static const uint8_t seq16[16] = { 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12,
	13, 14, 15 };
/* RFC 4231 test case 6: 131-byte key of 0xaa. */
static const char hmac_msg[] = "Test Using Larger Than Block-Size Key - Hash Key First";
static const uint8_t hmac_kat[32] = { 0x60, 0xe4, 0x31, 0x59, 0x1e, 0xe0, 0xb6,
	0x7f, 0x0d, 0x8a, 0x26, 0xaa, 0xcb, 0xf5, 0xb7, 0x7f, 0x8e, 0x0b, 0xc6,
	0x21, 0x37, 0x28, 0xc5, 0x14, 0x05, 0x46, 0x04, 0x0f, 0x0e, 0xe3, 0x7f,
	0x54 };

/* Two keys are equal when they CMAC the same message the same way. */
static int
same_key(struct p11 *p, p11_obj a, p11_obj b)
{
	uint8_t ma[16], mb[16];

	return p11_cmac(p, a, kat_pt, 16, ma) == 0 &&
	    p11_cmac(p, b, kat_pt, 16, mb) == 0 && memcmp(ma, mb, 16) == 0;
}

static void
drop(struct p11 *p, p11_obj *o)
{
	if (*o != CK_INVALID_HANDLE)
		if (p11_destroy(p, *o) != 0)
			log_msg(LOG_DEBUG, "event=probe_destroy_failed");
	*o = CK_INVALID_HANDLE;
}

static uint32_t
probe_aes(struct p11 *p)
{
	struct p11_keyspec all = { .usage = P11_ENCRYPT | P11_DECRYPT |
	    P11_SIGN | P11_VERIFY | P11_WRAP | P11_UNWRAP | P11_DERIVE };
	struct p11_keyspec ext = { .extractable = 1, .usage = P11_SIGN |
	    P11_ENCRYPT };
	struct p11_keyspec tr = { .trusted = 1, .usage = P11_WRAP };
	p11_obj k = CK_INVALID_HANDLE, g = CK_INVALID_HANDLE;
	p11_obj u = CK_INVALID_HANDLE, v = CK_INVALID_HANDLE;
	p11_obj d = CK_INVALID_HANDLE, x = CK_INVALID_HANDLE;
	uint8_t out[64], exp[16], blk[32];
	size_t ol;
	uint32_t caps = 0;

	if (p11_secret_import(p, CKK_AES, kat_key, 16, &all, &k) != 0)
		return 0;
	if (p11_cmac(p, k, kat_pt, 16, out) == 0 && memcmp(out, kat_cmac, 16) == 0)
		caps |= P11_CAP_AES_CMAC;
	if (p11_aes_encrypt(p, k, P11_ECB, NULL, kat_pt, 16, out) == 0 &&
	    memcmp(out, kat_ecb, 16) == 0)
		caps |= P11_CAP_AES_ECB;
	if (p11_aes_encrypt(p, k, P11_CBC, seq16, kat_pt, 16, out) == 0 &&
	    memcmp(out, kat_cbc, 16) == 0)
		caps |= P11_CAP_AES_CBC;
	if (p11_aes_generate(p, 16, &ext, &g) == 0)
		caps |= P11_CAP_AES_GEN;
	if (g != CK_INVALID_HANDLE) {
		ol = sizeof(out);
		if (p11_wrap(p, P11_WRAP_AES_KW, k, g, out, &ol) == 0 && ol == 24 &&
		    p11_unwrap(p, P11_WRAP_AES_KW, k, out, ol, CKK_AES, 16, &ext,
		    &u) == 0 && same_key(p, g, u))
			caps |= P11_CAP_AES_KW;
		drop(p, &u);
		ol = sizeof(out);
		if (p11_wrap(p, P11_WRAP_AES_KWP, k, g, out, &ol) == 0 &&
		    p11_unwrap(p, P11_WRAP_AES_KWP, k, out, ol, CKK_AES, 16, &ext,
		    &u) == 0 && same_key(p, g, u))
			caps |= P11_CAP_AES_KWP;
		drop(p, &u);
	}
	/* CBC wrap of a known key must equal ECB of its value. */
	if ((caps & P11_CAP_AES_ECB) &&
	    p11_secret_import(p, CKK_AES, seq16, 16, &ext, &v) == 0) {
		ol = sizeof(out);
		if (p11_aes_encrypt(p, k, P11_ECB, NULL, seq16, 16, exp) == 0 &&
		    p11_wrap(p, P11_WRAP_AES_CBC0, k, v, out, &ol) == 0 &&
		    ol == 16 && memcmp(out, exp, 16) == 0)
			caps |= P11_CAP_AES_CBC_WRAP;
		/* ECB_ENCRYPT_DATA derivation gives the key E(K, data). */
		if (p11_derive_ecb(p, k, seq16, 16, &ext, &d) == 0 &&
		    p11_secret_import(p, CKK_AES, exp, 16, &ext, &x) == 0 &&
		    same_key(p, d, x))
			caps |= P11_CAP_ECB_DERIVE;
		drop(p, &d);
		drop(p, &x);
	}
	/* SP 800-108 with the GP layout against the CMAC computed here. */
	if (caps & P11_CAP_AES_CMAC) {
		memset(blk, 0, sizeof(blk));
		blk[11] = 0x04;
		blk[13] = 0x00;
		blk[14] = 0x80;
		blk[15] = 0x01;
		if (p11_derive_scp03(p, k, 0x04, seq16, 16, 128, &ext, &d) == 0 &&
		    (memcpy(blk + 16, seq16, 16), 1) &&
		    p11_cmac(p, k, blk, 32, exp) == 0 &&
		    p11_secret_import(p, CKK_AES, exp, 16, &ext, &x) == 0 &&
		    same_key(p, d, x))
			caps |= P11_CAP_SP800_108;
		drop(p, &d);
		drop(p, &x);
	}
	/* AES-192: SP 800-38A F.1.3 ECB and SP 800-38B D.2 CMAC. */
	if (p11_secret_import(p, CKK_AES, kat_key192, 24, &all, &x) == 0 &&
	    p11_aes_encrypt(p, x, P11_ECB, NULL, kat_pt, 16, out) == 0 &&
	    memcmp(out, kat_ecb192, 16) == 0 &&
	    p11_cmac(p, x, kat_pt, 16, out) == 0 &&
	    memcmp(out, kat_cmac192, 16) == 0)
		caps |= P11_CAP_AES_192;
	drop(p, &x);
	if (p11_aes_generate(p, 16, &tr, &x) == 0)
		caps |= P11_CAP_TRUSTED_WRAP;
	drop(p, &x);
	drop(p, &v);
	drop(p, &g);
	drop(p, &k);
	wipe(exp, sizeof(exp));
	return caps;
}

static uint32_t
probe_other(struct p11 *p)
{
	struct p11_keyspec hm = { .usage = P11_SIGN | P11_VERIFY };
	struct p11_keyspec pubs = { .usage = P11_VERIFY | P11_WRAP | P11_ENCRYPT };
	struct p11_keyspec privs = { .usage = P11_SIGN | P11_UNWRAP | P11_DECRYPT };
	struct p11_keyspec ext = { .extractable = 1, .usage = P11_SIGN };
	struct p11_keyspec enc = { .usage = P11_ENCRYPT };
	p11_obj k = CK_INVALID_HANDLE, pub = CK_INVALID_HANDLE;
	p11_obj priv = CK_INVALID_HANDLE, g = CK_INVALID_HANDLE;
	p11_obj u = CK_INVALID_HANDLE;
	uint8_t key[131], out[512];
	size_t ol;
	uint32_t caps = 0;
	int m;

	memset(key, 0xaa, sizeof(key));
	if (p11_secret_import(p, CKK_GENERIC_SECRET, key, sizeof(key), &hm,
	    &k) == 0 && p11_hmac_sha256(p, k, (const uint8_t *)hmac_msg,
	    strlen(hmac_msg), out) == 0 && memcmp(out, hmac_kat, 32) == 0 &&
	    p11_hmac_sha256_verify(p, k, (const uint8_t *)hmac_msg,
	    strlen(hmac_msg), hmac_kat) == 0)
		caps |= P11_CAP_HMAC_SHA256;
	drop(p, &k);

	if (p11_ec_generate(p, 256, &pubs, &privs, &pub, &priv) == 0) {
		caps |= P11_CAP_EC_P256;
		ol = sizeof(out);
		if (p11_ecdsa_sign(p, priv, 256, kat_pt, 16, out, &ol) == 0 &&
		    ol == 64)
			caps |= P11_CAP_ECDSA;
	}
	drop(p, &pub);
	drop(p, &priv);
	if (p11_ec_generate(p, 384, &pubs, &privs, &pub, &priv) == 0)
		caps |= P11_CAP_EC_P384;
	drop(p, &pub);
	drop(p, &priv);

	if (p11_rsa_generate(p, 1024, &pubs, &privs, &pub, &priv) == 0) {
		caps |= P11_CAP_RSA_GEN;
		if (p11_aes_generate(p, 16, &ext, &g) == 0) {
			for (m = P11_WRAP_RSA_OAEP_SHA1; m <= P11_WRAP_RSA_OAEP_SHA256;
			    m++) {
				ol = sizeof(out);
				if (p11_wrap(p, m, pub, g, out, &ol) == 0 &&
				    p11_unwrap(p, m, priv, out, ol, CKK_AES, 16,
				    &ext, &u) == 0 && same_key(p, g, u))
					caps |= m == P11_WRAP_RSA_OAEP_SHA1 ?
					    P11_CAP_RSA_OAEP_SHA1 :
					    P11_CAP_RSA_OAEP_SHA256;
				drop(p, &u);
			}
		}
		drop(p, &g);
	}
	drop(p, &pub);
	drop(p, &priv);

	if (p11_des3_generate(p, &enc, &k) == 0 &&
	    p11_des3_encrypt(p, k, key, 8, out) == 0)
		caps |= P11_CAP_DES3_ECB;
	drop(p, &k);
	return caps;
}

int
p11_probe(struct p11 *p, uint32_t *caps, char *report, size_t cap)
{
	size_t i, off = 0;
	uint32_t c;

	if (!p11_logged_in(p))
		return ERR_SEALED;
	c = probe_aes(p) | probe_other(p);
	p->caps = c;
	*caps = c;
	if (report != NULL && cap > 0) {
		report[0] = '\0';
		off = (size_t)snprintf(report, cap, "missing=");
		for (i = 0; i < ARRAY_LEN(cap_names) && off < cap; i++) {
			if (c & cap_names[i].bit)
				continue;
			off += (size_t)snprintf(report + off, cap - off, "%s%s",
			    report[off - 1] == '=' ? "" : ",", cap_names[i].name);
		}
		if (off < cap && report[off - 1] == '=')
			snprintf(report + off, cap - off, "none");
	}
	return 0;
}
