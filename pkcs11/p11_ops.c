/*
 * p11_ops.c - key creation and the mechanism wrappers (CMAC, AES-ECB/CBC,
 * key wrap/unwrap, ECDSA, HMAC, in-token derivation). Every secret key is
 * created sensitive; derived keys are never extractable.
 * Runs in kmsd and kmsctl. Trusts the PKCS#11 module.
 */
#include <string.h>

#include <openssl/evp.h>
#include <openssl/sha.h>

#include "pkcs11/p11_int.h"

static CK_BBOOL ck_true = CK_TRUE, ck_false = CK_FALSE;

struct tmpl {
	CK_ATTRIBUTE a[24];
	CK_ULONG     n;
};

static void
t_add(struct tmpl *t, CK_ATTRIBUTE_TYPE type, const void *v, size_t len)
{
	if (t->n < ARRAY_LEN(t->a))
		t->a[t->n++] = (CK_ATTRIBUTE){ type, (void *)(uintptr_t)v, len };
}

static void
t_bool(struct tmpl *t, CK_ATTRIBUTE_TYPE type, int v)
{
	t_add(t, type, v ? &ck_true : &ck_false, sizeof(CK_BBOOL));
}

static void
t_common(struct tmpl *t, const struct p11_keyspec *s)
{
	t_bool(t, CKA_TOKEN, s->token);
	if (s->label != NULL)
		t_add(t, CKA_LABEL, s->label, strlen(s->label));
	if (s->id != NULL)
		t_add(t, CKA_ID, s->id, s->idlen);
}

/* Private and sensitive, whatever the kind. Every usage flag is set
 * explicitly: module defaults (often TRUE) are not trusted. */
static void
t_sensitive(struct tmpl *t, const struct p11_keyspec *s)
{
	t_common(t, s);
	t_bool(t, CKA_PRIVATE, 1);
	t_bool(t, CKA_SENSITIVE, 1);
	t_bool(t, CKA_EXTRACTABLE, s->extractable);
	if (s->extractable)
		t_bool(t, CKA_WRAP_WITH_TRUSTED, s->wrap_with_trusted);
	t_bool(t, CKA_DECRYPT, !!(s->usage & P11_DECRYPT));
	t_bool(t, CKA_SIGN, !!(s->usage & P11_SIGN));
	t_bool(t, CKA_UNWRAP, !!(s->usage & P11_UNWRAP));
	t_bool(t, CKA_DERIVE, !!(s->usage & P11_DERIVE));
}

/* A secret key. */
static void
t_secret(struct tmpl *t, const struct p11_keyspec *s)
{
	t_sensitive(t, s);
	if (s->trusted)
		t_bool(t, CKA_TRUSTED, 1);
	t_bool(t, CKA_ENCRYPT, !!(s->usage & P11_ENCRYPT));
	t_bool(t, CKA_VERIFY, !!(s->usage & P11_VERIFY));
	t_bool(t, CKA_WRAP, !!(s->usage & P11_WRAP));
}

/* ---- creation ---- */

static int
gen_secret(struct p11 *p, CK_MECHANISM_TYPE mt, size_t len,
    const struct p11_keyspec *s, p11_obj *out)
{
	CK_MECHANISM m = { mt, NULL, 0 };
	CK_ULONG vlen = len;
	struct tmpl t = { .n = 0 };
	CK_SESSION_HANDLE h;
	CK_RV rv;

	if (mt != CKM_DES3_KEY_GEN)
		t_add(&t, CKA_VALUE_LEN, &vlen, sizeof(vlen));
	t_secret(&t, s);
	P11_RETRY(p, h, rv, rv = p->f->C_GenerateKey(h, &m, t.a, t.n, out));
	if (rv != CKR_OK)
		return p11_fail("C_GenerateKey", rv);
	return 0;
}

int
p11_aes_generate(struct p11 *p, size_t len, const struct p11_keyspec *s,
    p11_obj *out)
{
	if (len != 16 && len != 24 && len != 32)
		return ERR_INVAL;
	return gen_secret(p, CKM_AES_KEY_GEN, len, s, out);
}

int
p11_secret_generate(struct p11 *p, size_t len, const struct p11_keyspec *s,
    p11_obj *out)
{
	if (len < 16 || len > 64)
		return ERR_INVAL;
	return gen_secret(p, CKM_GENERIC_SECRET_KEY_GEN, len, s, out);
}

int
p11_des3_generate(struct p11 *p, const struct p11_keyspec *s, p11_obj *out)
{
	return gen_secret(p, CKM_DES3_KEY_GEN, 24, s, out);
}

/* DER OIDs of the named curves, as CKA_EC_PARAMS wants them. */
static const uint8_t oid_p256[] = { 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d,
	0x03, 0x01, 0x07 };
static const uint8_t oid_p384[] = { 0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22 };

static void
t_public(struct tmpl *t, const struct p11_keyspec *s)
{
	t_common(t, s);
	t_bool(t, CKA_PRIVATE, 0);
	t_bool(t, CKA_VERIFY, !!(s->usage & P11_VERIFY));
	t_bool(t, CKA_ENCRYPT, !!(s->usage & P11_ENCRYPT));
	t_bool(t, CKA_WRAP, !!(s->usage & P11_WRAP));
}

int
p11_ec_generate(struct p11 *p, unsigned bits, const struct p11_keyspec *pub,
    const struct p11_keyspec *priv, p11_obj *pubo, p11_obj *privo)
{
	CK_MECHANISM m = { CKM_EC_KEY_PAIR_GEN, NULL, 0 };
	struct tmpl tp = { .n = 0 }, tk = { .n = 0 };
	CK_SESSION_HANDLE h;
	CK_RV rv;

	if (bits == 256)
		t_add(&tp, CKA_EC_PARAMS, oid_p256, sizeof(oid_p256));
	else if (bits == 384)
		t_add(&tp, CKA_EC_PARAMS, oid_p384, sizeof(oid_p384));
	else
		return ERR_INVAL;
	t_public(&tp, pub);
	t_sensitive(&tk, priv);
	P11_RETRY(p, h, rv, rv = p->f->C_GenerateKeyPair(h, &m, tp.a, tp.n,
	    tk.a, tk.n, pubo, privo));
	if (rv != CKR_OK)
		return p11_fail("C_GenerateKeyPair", rv);
	return 0;
}

int
p11_rsa_generate(struct p11 *p, unsigned bits, const struct p11_keyspec *pub,
    const struct p11_keyspec *priv, p11_obj *pubo, p11_obj *privo)
{
	static const uint8_t e65537[] = { 0x01, 0x00, 0x01 };
	CK_MECHANISM m = { CKM_RSA_PKCS_KEY_PAIR_GEN, NULL, 0 };
	CK_ULONG mbits = bits;
	struct tmpl tp = { .n = 0 }, tk = { .n = 0 };
	CK_SESSION_HANDLE h;
	CK_RV rv;

	if (bits < 1024 || bits > 8192)
		return ERR_INVAL;
	t_add(&tp, CKA_MODULUS_BITS, &mbits, sizeof(mbits));
	t_add(&tp, CKA_PUBLIC_EXPONENT, e65537, sizeof(e65537));
	t_public(&tp, pub);
	t_sensitive(&tk, priv);
	P11_RETRY(p, h, rv, rv = p->f->C_GenerateKeyPair(h, &m, tp.a, tp.n,
	    tk.a, tk.n, pubo, privo));
	if (rv != CKR_OK)
		return p11_fail("C_GenerateKeyPair", rv);
	return 0;
}

int
p11_secret_import(struct p11 *p, CK_KEY_TYPE kt, const uint8_t *val, size_t n,
    const struct p11_keyspec *s, p11_obj *out)
{
	CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
	struct tmpl t = { .n = 0 };
	CK_SESSION_HANDLE h;
	CK_RV rv;

	t_add(&t, CKA_CLASS, &cls, sizeof(cls));
	t_add(&t, CKA_KEY_TYPE, &kt, sizeof(kt));
	t_add(&t, CKA_VALUE, val, n);
	t_secret(&t, s);
	P11_RETRY(p, h, rv, rv = p->f->C_CreateObject(h, t.a, t.n, out));
	if (rv != CKR_OK)
		return p11_fail("C_CreateObject", rv);
	return 0;
}

/* ---- operations ---- */

int
p11_random(struct p11 *p, uint8_t *out, size_t n)
{
	CK_SESSION_HANDLE h;
	CK_RV rv;

	P11_RETRY(p, h, rv, rv = p->f->C_GenerateRandom(h, out, n));
	if (rv != CKR_OK)
		return p11_fail("C_GenerateRandom", rv);
	return 0;
}

static int
sign_once(struct p11 *p, CK_MECHANISM *m, p11_obj key, const uint8_t *d,
    size_t n, uint8_t *out, CK_ULONG *outlen)
{
	CK_ULONG cap = *outlen;
	CK_SESSION_HANDLE h;
	CK_RV rv;
	static const uint8_t none;

	/* Some modules refuse a NULL data pointer even for zero bytes, and
	 * leave the operation active when they do. */
	if (n == 0)
		d = &none;
	P11_RETRY(p, h, rv,
	    *outlen = cap;
	    rv = p->f->C_SignInit(h, m, key);
	    if (rv == CKR_OK)
		    rv = p->f->C_Sign(h, (CK_BYTE *)(uintptr_t)d, n, out, outlen));
	if (rv != CKR_OK)
		return p11_fail("C_Sign", rv);
	return 0;
}

int
p11_cmac(struct p11 *p, p11_obj key, const uint8_t *d, size_t n,
    uint8_t mac[16])
{
	CK_MECHANISM m = { CKM_AES_CMAC, NULL, 0 };
	CK_ULONG len = 16;

	return sign_once(p, &m, key, d, n, mac, &len);
}

int
p11_hmac_sha256(struct p11 *p, p11_obj key, const uint8_t *d, size_t n,
    uint8_t out[32])
{
	CK_MECHANISM m = { CKM_SHA256_HMAC, NULL, 0 };
	CK_ULONG len = 32;

	return sign_once(p, &m, key, d, n, out, &len);
}

int
p11_hmac_sha256_verify(struct p11 *p, p11_obj key, const uint8_t *d, size_t n,
    const uint8_t mac[32])
{
	CK_MECHANISM m = { CKM_SHA256_HMAC, NULL, 0 };
	CK_SESSION_HANDLE h;
	CK_RV rv;

	P11_RETRY(p, h, rv,
	    rv = p->f->C_VerifyInit(h, &m, key);
	    if (rv == CKR_OK)
		    rv = p->f->C_Verify(h, (CK_BYTE *)(uintptr_t)d, n,
			(CK_BYTE *)(uintptr_t)mac, 32));
	if (rv != CKR_OK)
		return p11_fail("C_Verify", rv);
	return 0;
}

int
p11_ecdsa_sign(struct p11 *p, p11_obj key, unsigned bits, const uint8_t *d,
    size_t n, uint8_t *sig, size_t *siglen)
{
	CK_MECHANISM m = { CKM_ECDSA, NULL, 0 };
	uint8_t dig[SHA384_DIGEST_LENGTH];
	size_t dlen;
	CK_ULONG sl = *siglen;
	int rc;

	/* The digest is computed here, so the token signs a fixed-size
	 * value and any length of data costs one token call. */
	if (bits == 256) {
		SHA256(d, n, dig);
		dlen = SHA256_DIGEST_LENGTH;
	} else if (bits == 384) {
		SHA384(d, n, dig);
		dlen = SHA384_DIGEST_LENGTH;
	} else {
		return ERR_INVAL;
	}
	if (sl < 2 * ((bits + 7) / 8))
		return ERR_TOOBIG;
	rc = sign_once(p, &m, key, dig, dlen, sig, &sl);
	if (rc == 0)
		*siglen = sl;
	return rc;
}

/* C_EncryptInit/C_Encrypt and C_DecryptInit/C_Decrypt have the same
 * signatures: one path for both directions. */
static int
crypt(struct p11 *p, int enc, CK_MECHANISM_TYPE mt, p11_obj key,
    const uint8_t *iv, const uint8_t *in, size_t n, uint8_t *out)
{
	CK_C_EncryptInit init = enc ? p->f->C_EncryptInit : p->f->C_DecryptInit;
	CK_C_Encrypt op = enc ? p->f->C_Encrypt : p->f->C_Decrypt;
	uint8_t ivc[16];
	CK_MECHANISM m = { mt, NULL, 0 };
	CK_ULONG olen;
	CK_SESSION_HANDLE h;
	CK_RV rv;

	if (mt == CKM_AES_CBC) {
		memcpy(ivc, iv, 16);
		m.pParameter = ivc;
		m.ulParameterLen = 16;
	}
	P11_RETRY(p, h, rv,
	    olen = n;
	    rv = init(h, &m, key);
	    if (rv == CKR_OK)
		    rv = op(h, (CK_BYTE *)(uintptr_t)in, n, out, &olen));
	if (rv != CKR_OK)
		return p11_fail(enc ? "C_Encrypt" : "C_Decrypt", rv);
	return olen == n ? 0 : ERR_P11;
}

static int
aes_crypt(struct p11 *p, int enc, p11_obj key, int mode, const uint8_t *iv,
    const uint8_t *in, size_t n, uint8_t *out)
{
	if (n == 0 || n % 16 != 0 || (mode != P11_ECB && mode != P11_CBC) ||
	    (mode == P11_CBC && iv == NULL))
		return ERR_INVAL;
	return crypt(p, enc, mode == P11_ECB ? CKM_AES_ECB : CKM_AES_CBC, key,
	    iv, in, n, out);
}

int
p11_aes_encrypt(struct p11 *p, p11_obj key, int mode, const uint8_t *iv,
    const uint8_t *in, size_t n, uint8_t *out)
{
	return aes_crypt(p, 1, key, mode, iv, in, n, out);
}

int
p11_aes_decrypt(struct p11 *p, p11_obj key, int mode, const uint8_t *iv,
    const uint8_t *in, size_t n, uint8_t *out)
{
	return aes_crypt(p, 0, key, mode, iv, in, n, out);
}

int
p11_des3_encrypt(struct p11 *p, p11_obj key, const uint8_t *in, size_t n,
    uint8_t *out)
{
	if (n == 0 || n % 8 != 0)
		return ERR_INVAL;
	return crypt(p, 1, CKM_DES3_ECB, key, NULL, in, n, out);
}

/* Fills a mechanism for a wrap/unwrap method; iv and oaep are storage. */
static int
wrap_mech(int mech, CK_MECHANISM *m, uint8_t iv[16],
    CK_RSA_PKCS_OAEP_PARAMS *oaep)
{
	memset(m, 0, sizeof(*m));
	switch (mech) {
	case P11_WRAP_AES_KW:
		m->mechanism = CKM_AES_KEY_WRAP;
		return 0;
	case P11_WRAP_AES_KWP:
		m->mechanism = CKM_AES_KEY_WRAP_PAD;
		return 0;
	case P11_WRAP_AES_CBC0:
		/* GP PUT KEY: AES-CBC under the static DEK, ICV zero. */
		memset(iv, 0, 16);
		m->mechanism = CKM_AES_CBC;
		m->pParameter = iv;
		m->ulParameterLen = 16;
		return 0;
	case P11_WRAP_RSA_OAEP_SHA1:
	case P11_WRAP_RSA_OAEP_SHA256:
		memset(oaep, 0, sizeof(*oaep));
		oaep->hashAlg = mech == P11_WRAP_RSA_OAEP_SHA1 ? CKM_SHA_1 :
		    CKM_SHA256;
		oaep->mgf = mech == P11_WRAP_RSA_OAEP_SHA1 ? CKG_MGF1_SHA1 :
		    CKG_MGF1_SHA256;
		oaep->source = CKZ_DATA_SPECIFIED;
		m->mechanism = CKM_RSA_PKCS_OAEP;
		m->pParameter = oaep;
		m->ulParameterLen = sizeof(*oaep);
		return 0;
	}
	return ERR_INVAL;
}

int
p11_wrap(struct p11 *p, int mech, p11_obj kek, p11_obj key, uint8_t *out,
    size_t *outlen)
{
	CK_MECHANISM m;
	CK_RSA_PKCS_OAEP_PARAMS oaep;
	uint8_t iv[16];
	CK_ULONG ol = *outlen;
	CK_SESSION_HANDLE h;
	CK_RV rv;
	int rc;

	if ((rc = wrap_mech(mech, &m, iv, &oaep)) != 0)
		return rc;
	P11_RETRY(p, h, rv, ol = *outlen;
	    rv = p->f->C_WrapKey(h, &m, kek, key, out, &ol));
	if (rv != CKR_OK)
		return p11_fail("C_WrapKey", rv);
	*outlen = ol;
	return 0;
}

/* A new key object of class cls (secret or private) from wrapped bytes. */
static int
unwrap_as(struct p11 *p, int mech, p11_obj kek, const uint8_t *in, size_t n,
    CK_OBJECT_CLASS cls, CK_KEY_TYPE kt, const struct p11_keyspec *s,
    p11_obj *out)
{
	CK_MECHANISM m;
	CK_RSA_PKCS_OAEP_PARAMS oaep;
	uint8_t iv[16];
	struct tmpl t = { .n = 0 };
	CK_SESSION_HANDLE h;
	CK_RV rv;
	int rc;

	if ((rc = wrap_mech(mech, &m, iv, &oaep)) != 0)
		return rc;
	t_add(&t, CKA_CLASS, &cls, sizeof(cls));
	t_add(&t, CKA_KEY_TYPE, &kt, sizeof(kt));
	if (cls == CKO_SECRET_KEY)
		t_secret(&t, s);
	else
		t_sensitive(&t, s);
	P11_RETRY(p, h, rv, rv = p->f->C_UnwrapKey(h, &m, kek,
	    (CK_BYTE *)(uintptr_t)in, n, t.a, t.n, out));
	if (rv != CKR_OK)
		return p11_fail("C_UnwrapKey", rv);
	return 0;
}

int
p11_unwrap(struct p11 *p, int mech, p11_obj kek, const uint8_t *in, size_t n,
    CK_KEY_TYPE kt, size_t keylen, const struct p11_keyspec *s, p11_obj *out)
{
	/* No CKA_VALUE_LEN in the template: SoftHSM2 refuses it on unwrap
	 * (and leaves it 0 on the new key); the caller checks the length. */
	(void)keylen;
	return unwrap_as(p, mech, kek, in, n, CKO_SECRET_KEY, kt, s, out);
}

int
p11_unwrap_private(struct p11 *p, int mech, p11_obj kek, const uint8_t *in,
    size_t n, CK_KEY_TYPE kt, const struct p11_keyspec *s, p11_obj *out)
{
	return unwrap_as(p, mech, kek, in, n, CKO_PRIVATE_KEY, kt, s, out);
}

int
p11_ec_public_create(struct p11 *p, unsigned bits, const uint8_t *point,
    size_t n, const struct p11_keyspec *s, p11_obj *out)
{
	CK_OBJECT_CLASS cls = CKO_PUBLIC_KEY;
	CK_KEY_TYPE kt = CKK_EC;
	uint8_t der[2 + 97];
	struct tmpl t = { .n = 0 };
	CK_SESSION_HANDLE h;
	CK_RV rv;

	/* Uncompressed 04||X||Y of the curve: 65 or 97 bytes, so the DER
	 * length below fits its short form. */
	if ((bits != 256 && bits != 384) || n != 1 + 2 * (bits / 8) ||
	    point[0] != 0x04)
		return ERR_INVAL;
	/* CKA_EC_POINT is the DER OCTET STRING around the point. */
	der[0] = 0x04;
	der[1] = (uint8_t)n;
	memcpy(der + 2, point, n);
	t_add(&t, CKA_CLASS, &cls, sizeof(cls));
	t_add(&t, CKA_KEY_TYPE, &kt, sizeof(kt));
	if (bits == 256)
		t_add(&t, CKA_EC_PARAMS, oid_p256, sizeof(oid_p256));
	else
		t_add(&t, CKA_EC_PARAMS, oid_p384, sizeof(oid_p384));
	t_add(&t, CKA_EC_POINT, der, n + 2);
	t_public(&t, s);
	P11_RETRY(p, h, rv, rv = p->f->C_CreateObject(h, t.a, t.n, out));
	if (rv != CKR_OK)
		return p11_fail("C_CreateObject", rv);
	return 0;
}

int
p11_derive_ecb(struct p11 *p, p11_obj master, const uint8_t *data, size_t n,
    const struct p11_keyspec *s, p11_obj *out)
{
	CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
	CK_KEY_TYPE kt = CKK_AES;
	CK_ULONG vlen = n;
	CK_KEY_DERIVATION_STRING_DATA dd = { (CK_BYTE *)(uintptr_t)data, n };
	CK_MECHANISM m = { CKM_AES_ECB_ENCRYPT_DATA, &dd, sizeof(dd) };
	struct tmpl t = { .n = 0 };
	CK_SESSION_HANDLE h;
	CK_RV rv;

	if (n != 16 && n != 32)
		return ERR_INVAL;
	/* t_secret makes the new key sensitive whatever the caller passes:
	 * derivation must never produce a readable key. */
	t_add(&t, CKA_CLASS, &cls, sizeof(cls));
	t_add(&t, CKA_KEY_TYPE, &kt, sizeof(kt));
	t_add(&t, CKA_VALUE_LEN, &vlen, sizeof(vlen));
	t_secret(&t, s);
	P11_RETRY(p, h, rv, rv = p->f->C_DeriveKey(h, &m, master, t.a, t.n, out));
	if (rv != CKR_OK)
		return p11_fail("C_DeriveKey", rv);
	return 0;
}

/*
 * PKCS#11 3.0 SP 800-108 definitions, absent from the p11-kit 0.24 header.
 * Used only when the probe has shown the token computes the GP known answer
 * with them.
 */
#define SP_CKM_SP800_108_COUNTER_KDF	0x3acUL
#define SP_ITERATION_VARIABLE		0x1UL
#define SP_DKM_LENGTH			0x3UL
#define SP_BYTE_ARRAY			0x4UL
#define SP_DKM_SUM_OF_KEYS		0x2UL
struct sp_counter_format { CK_BBOOL little_endian; CK_ULONG width_bits; };
struct sp_dkm_format { CK_BBOOL little_endian; CK_ULONG method; CK_ULONG width_bits; };
struct sp_data_param { CK_ULONG type; CK_VOID_PTR value; CK_ULONG len; };
struct sp_kdf_params {
	CK_MECHANISM_TYPE prf;
	CK_ULONG n;
	struct sp_data_param *params;
	CK_ULONG nadditional;
	CK_VOID_PTR additional;
};

int
p11_derive_scp03(struct p11 *p, p11_obj base, uint8_t konst,
    const uint8_t *context, size_t clen, uint16_t lbits,
    const struct p11_keyspec *s, p11_obj *out)
{
	/* GPC Amd D §6.2.2 (gp-reference §1.3): 00x11 | const | 00 | L | i |
	 * context - the counter sits between L and the context. */
	uint8_t label[13] = { 0 };
	struct sp_counter_format ctr = { CK_FALSE, 8 };
	struct sp_dkm_format dkm = { CK_FALSE, SP_DKM_SUM_OF_KEYS, 16 };
	struct sp_data_param dp[4] = {
		{ SP_BYTE_ARRAY, label, sizeof(label) },
		{ SP_DKM_LENGTH, &dkm, sizeof(dkm) },
		{ SP_ITERATION_VARIABLE, &ctr, sizeof(ctr) },
		{ SP_BYTE_ARRAY, (void *)(uintptr_t)context, clen },
	};
	struct sp_kdf_params kp = { CKM_AES_CMAC, 4, dp, 0, NULL };
	CK_MECHANISM m = { SP_CKM_SP800_108_COUNTER_KDF, &kp, sizeof(kp) };
	CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
	CK_KEY_TYPE kt = CKK_AES;
	CK_ULONG vlen = lbits / 8;
	struct p11_keyspec safe = *s;
	struct tmpl t = { .n = 0 };
	CK_SESSION_HANDLE h;
	CK_RV rv;

	if (lbits != 128 && lbits != 192 && lbits != 256)
		return ERR_INVAL;
	label[11] = konst;
	safe.extractable = 0;
	t_add(&t, CKA_CLASS, &cls, sizeof(cls));
	t_add(&t, CKA_KEY_TYPE, &kt, sizeof(kt));
	t_add(&t, CKA_VALUE_LEN, &vlen, sizeof(vlen));
	t_secret(&t, &safe);
	P11_RETRY(p, h, rv, rv = p->f->C_DeriveKey(h, &m, base, t.a, t.n, out));
	if (rv != CKR_OK)
		return p11_fail("C_DeriveKey", rv);
	return 0;
}

/* ---- public keys ---- */

int
p11_ec_public(struct p11 *p, p11_obj pub, unsigned *bits, struct buf *point)
{
	struct buf params, raw;
	struct rd r;
	const uint8_t *q;
	uint8_t tag, l1;
	size_t len;
	int rc;

	buf_init(&params);
	buf_init(&raw);
	if ((rc = p11_attr_bytes(p, pub, CKA_EC_PARAMS, &params)) != 0)
		goto out;
	if (params.len == sizeof(oid_p256) &&
	    memcmp(params.p, oid_p256, params.len) == 0)
		*bits = 256;
	else if (params.len == sizeof(oid_p384) &&
	    memcmp(params.p, oid_p384, params.len) == 0)
		*bits = 384;
	else {
		rc = ERR_NOTSUP;
		goto out;
	}
	if ((rc = p11_attr_bytes(p, pub, CKA_EC_POINT, &raw)) != 0)
		goto out;
	/* CKA_EC_POINT is a DER OCTET STRING around 04||X||Y. */
	rd_init(&r, raw.p, raw.len);
	if ((rc = rd_u8(&r, &tag)) != 0 || (rc = rd_u8(&r, &l1)) != 0)
		goto out;
	if (tag != 0x04) {
		rc = ERR_PARSE;
		goto out;
	}
	/* Short form, or one length byte (0x81): the points are < 256. */
	if (l1 == 0x80 || l1 > 0x81) {
		rc = ERR_PARSE;
		goto out;
	}
	if (l1 == 0x81 && (rc = rd_u8(&r, &l1)) != 0)
		goto out;
	len = l1;
	if ((rc = rd_bytes(&r, len, &q)) != 0 || (rc = rd_end(&r)) != 0)
		goto out;
	buf_reset(point);
	rc = buf_put(point, q, len);
out:
	buf_free(&params);
	buf_free(&raw);
	return rc;
}

int
p11_rsa_public(struct p11 *p, p11_obj pub, struct buf *mod, struct buf *exp)
{
	int rc;

	if ((rc = p11_attr_bytes(p, pub, CKA_MODULUS, mod)) != 0)
		return rc;
	return p11_attr_bytes(p, pub, CKA_PUBLIC_EXPONENT, exp);
}
