/*
 * p11.h - the only code in the project that speaks PKCS#11. Loads a module
 * through p11-kit, selects a token by RFC 7512 URI, keeps one session per
 * thread, caches object handles by label, and wraps the mechanisms the KMS
 * needs. Linked only into kmsd and kmsctl. Trusts the module, nothing else.
 */
#ifndef SPTSM_P11_H
#define SPTSM_P11_H

#include <stddef.h>
#include <stdint.h>

#include <p11-kit/pkcs11.h>

#include "kms/base.h"

struct p11;
typedef CK_OBJECT_HANDLE p11_obj;

/* SoftHSM2, the default module. */
#define P11_DEFAULT_MODULE "/usr/lib/softhsm/libsofthsm2.so"

/*
 * Loads `module` (a path if it contains '/', else the name of a module
 * registered with p11-kit; NULL = SoftHSM2) and selects the one token that
 * matches `token_uri` (an RFC 7512 "pkcs11:" URI; NULL or "pkcs11:" = the
 * first initialised token). C_Initialize is called with CKF_OS_LOCKING_OK so
 * the module keeps its own locking: the layer is thread-safe.
 * Errors: ERR_NOTFOUND (no module / no matching token), ERR_PARSE (URI),
 * ERR_P11 (module failure).
 */
int  p11_open(struct p11 **out, const char *module, const char *token_uri) WUR;
/* Like p11_open, but selects the first slot whose token is not yet
 * initialised (for kmsctl init). */
int  p11_open_uninitialized(struct p11 **out, const char *module) WUR;
/* Destroys every session (and so every session object) and finalizes. */
void p11_close(struct p11 *p);
/*
 * From here on this process's getpid() answers from a cache that forks
 * clear (pid.c). SoftHSM2 and OpenSSL ask for the pid on every call; kmsd
 * turns this on at start. Other programs keep libc's getpid.
 */
void p11_pid_cache(void);

/* Token-level facts for reports. */
const char *p11_token_label(const struct p11 *p);
const char *p11_token_serial(const struct p11 *p);
const char *p11_module_name(const struct p11 *p);
CK_SLOT_ID  p11_slot(const struct p11 *p);
CK_FUNCTION_LIST *p11_functions(const struct p11 *p);

/* User login; the PIN is not kept. ERR_P11_PIN on a wrong/locked PIN. */
int  p11_login(struct p11 *p, const char *pin, size_t pinlen) WUR;
/* SO login (token administration by kmsctl only). */
int  p11_login_so(struct p11 *p, const char *pin, size_t pinlen) WUR;
int  p11_logout(struct p11 *p) WUR;
int  p11_logged_in(struct p11 *p);

/*
 * Initialises the token in the selected slot (kmsctl init): sets label, SO
 * PIN and user PIN. Destroys everything on it. *initialised becomes 1 once
 * C_InitToken has succeeded, also when a later step (finding the token
 * again, the SO login, C_InitPIN) fails: the SO PIN is set then.
 */
int  p11_init_token(struct p11 *p, const char *label, const char *so_pin,
	    const char *user_pin, int *initialised) WUR;

/* ---- errors ----------------------------------------------------------- */

/* The single CK_RV -> project error mapping. */
int         p11_map_rv(CK_RV rv);
const char *p11_rv_name(CK_RV rv);
/* "C_UnwrapKey: CKR_WRAPPED_KEY_INVALID" of the calling thread's last
 * failure, for logs and error messages. */
const char *p11_last_error(void);

/* ---- capabilities, probed by trying each operation once ------------- */

enum p11_cap {
	P11_CAP_AES_GEN       = 1u << 0,
	P11_CAP_AES_CMAC      = 1u << 1,
	P11_CAP_AES_ECB       = 1u << 2,
	P11_CAP_AES_CBC       = 1u << 3,
	P11_CAP_AES_KW        = 1u << 4,
	P11_CAP_AES_KWP       = 1u << 5,
	P11_CAP_AES_CBC_WRAP  = 1u << 6,
	P11_CAP_ECB_DERIVE    = 1u << 7,
	P11_CAP_SP800_108     = 1u << 8,
	P11_CAP_HMAC_SHA256   = 1u << 9,
	P11_CAP_EC_P256       = 1u << 10,
	P11_CAP_EC_P384       = 1u << 11,
	P11_CAP_ECDSA         = 1u << 12,
	P11_CAP_RSA_GEN       = 1u << 13,
	P11_CAP_RSA_OAEP_SHA1 = 1u << 14,
	P11_CAP_RSA_OAEP_SHA256 = 1u << 15,
	P11_CAP_AES_192       = 1u << 16,
	P11_CAP_DES3_ECB      = 1u << 17,
	P11_CAP_TRUSTED_WRAP  = 1u << 18,
};
#define P11_CAP_REQUIRED (P11_CAP_AES_GEN | P11_CAP_AES_CMAC | P11_CAP_AES_ECB | \
	P11_CAP_AES_CBC | P11_CAP_AES_KW | P11_CAP_AES_CBC_WRAP | P11_CAP_HMAC_SHA256)

/*
 * Tries every mechanism once with throw-away session objects (a module's
 * C_GetMechanismInfo is not trusted) and returns the P11_CAP_* bits that
 * work. The SP 800-108 KDF is accepted only if it reproduces the GP SCP03
 * known answer. `report` (may be NULL) receives "missing=a,b,...".
 * Needs a logged-in user.
 */
int  p11_probe(struct p11 *p, uint32_t *caps, char *report, size_t cap) WUR;
uint32_t p11_caps(const struct p11 *p);
const char *p11_cap_name(uint32_t bit);

/* ---- objects ---------------------------------------------------------- */

enum p11_usage {
	P11_ENCRYPT = 1u << 0, P11_DECRYPT = 1u << 1, P11_SIGN = 1u << 2,
	P11_VERIFY = 1u << 3, P11_WRAP = 1u << 4, P11_UNWRAP = 1u << 5,
	P11_DERIVE = 1u << 6,
};

/* How a new key object is made. Secret keys are always CKA_SENSITIVE. */
struct p11_keyspec {
	const char    *label;		/* NULL: none */
	const uint8_t *id;		/* CKA_ID; NULL: none */
	size_t         idlen;
	int            token;		/* 1 token object, 0 session object */
	int            extractable;
	int            wrap_with_trusted;
	int            trusted;		/* CKA_TRUSTED (needs SO on most tokens) */
	uint32_t       usage;		/* P11_* */
};

/* Cached by (class, label, id); ERR_NOTFOUND when absent; ERR_EXISTS when
 * several objects match. */
int  p11_find(struct p11 *p, CK_OBJECT_CLASS cls, const char *label,
	    const uint8_t *id, size_t idlen, p11_obj *out) WUR;
/* Drops one cached handle (after ERR_HANDLE: the object went away). */
void p11_cache_drop(struct p11 *p, CK_OBJECT_CLASS cls, const char *label,
	    const uint8_t *id, size_t idlen);
void p11_cache_clear(struct p11 *p);
/* Every object of a class (and application label prefix); caller frees. */
int  p11_find_all(struct p11 *p, CK_OBJECT_CLASS cls, p11_obj **out,
	    size_t *n) WUR;
int  p11_destroy(struct p11 *p, p11_obj o) WUR;
/* A session-object copy of a token object (same attributes, CKA_TOKEN
 * false): hot keys are used this way, several times faster on SoftHSM2. */
int  p11_copy_to_session(struct p11 *p, p11_obj o, p11_obj *out) WUR;

/* Attribute reads. */
int  p11_attr_bool(struct p11 *p, p11_obj o, CK_ATTRIBUTE_TYPE t, int *v) WUR;
int  p11_attr_ulong(struct p11 *p, p11_obj o, CK_ATTRIBUTE_TYPE t,
	    CK_ULONG *v) WUR;
/* Variable-length attribute into a fresh buffer. */
int  p11_attr_bytes(struct p11 *p, p11_obj o, CK_ATTRIBUTE_TYPE t,
	    struct buf *out) WUR;
int  p11_set_bytes(struct p11 *p, p11_obj o, CK_ATTRIBUTE_TYPE t,
	    const void *v, size_t n) WUR;

/* A token data object (CKO_DATA, private) holding `value`. */
int  p11_data_create(struct p11 *p, const char *application,
	    const char *label, const void *value, size_t n, p11_obj *out) WUR;

/* ---- key creation ----------------------------------------------------- */

/* AES key of len 16/24/32 bytes. */
int  p11_aes_generate(struct p11 *p, size_t len, const struct p11_keyspec *s,
	    p11_obj *out) WUR;
/* 3DES (24-byte) key. */
int  p11_des3_generate(struct p11 *p, const struct p11_keyspec *s,
	    p11_obj *out) WUR;
/* Generic secret (HMAC key) of len bytes. */
int  p11_secret_generate(struct p11 *p, size_t len,
	    const struct p11_keyspec *s, p11_obj *out) WUR;
/* EC key pair on P-256 (bits 256) or P-384 (bits 384). */
int  p11_ec_generate(struct p11 *p, unsigned bits, const struct p11_keyspec *pub,
	    const struct p11_keyspec *priv, p11_obj *pubo, p11_obj *privo) WUR;
/* RSA key pair, e = 65537. */
int  p11_rsa_generate(struct p11 *p, unsigned bits, const struct p11_keyspec *pub,
	    const struct p11_keyspec *priv, p11_obj *pubo, p11_obj *privo) WUR;
/* A secret key object from bytes (CKK_AES, CKK_DES3, CKK_GENERIC_SECRET).
 * The caller wipes `val`. */
int  p11_secret_import(struct p11 *p, CK_KEY_TYPE kt, const uint8_t *val,
	    size_t n, const struct p11_keyspec *s, p11_obj *out) WUR;

/* ---- operations ------------------------------------------------------- */

int  p11_random(struct p11 *p, uint8_t *out, size_t n) WUR;
/* AES-CMAC (16 bytes out). */
int  p11_cmac(struct p11 *p, p11_obj key, const uint8_t *d, size_t n,
	    uint8_t mac[16]) WUR;
enum { P11_ECB = 1, P11_CBC = 2 };
/* AES-ECB or AES-CBC without padding; n a multiple of 16; out may == in. */
int  p11_aes_encrypt(struct p11 *p, p11_obj key, int mode, const uint8_t *iv,
	    const uint8_t *in, size_t n, uint8_t *out) WUR;
int  p11_aes_decrypt(struct p11 *p, p11_obj key, int mode, const uint8_t *iv,
	    const uint8_t *in, size_t n, uint8_t *out) WUR;
/* 3DES-ECB encrypt (KCVs of DES3 keys). */
int  p11_des3_encrypt(struct p11 *p, p11_obj key, const uint8_t *in, size_t n,
	    uint8_t *out) WUR;

enum p11_wrap_mech {
	P11_WRAP_AES_KW = 1,		/* RFC 3394 */
	P11_WRAP_AES_KWP = 2,		/* RFC 5649 */
	P11_WRAP_AES_CBC0 = 3,		/* AES-CBC, zero ICV (GP PUT KEY) */
	P11_WRAP_RSA_OAEP_SHA1 = 4,
	P11_WRAP_RSA_OAEP_SHA256 = 5,
};
/* *outlen: capacity in, length out. */
int  p11_wrap(struct p11 *p, int mech, p11_obj kek, p11_obj key, uint8_t *out,
	    size_t *outlen) WUR;
/* Unwraps into a new secret key object of type kt. The wrapped data fixes
 * the length: the caller checks it is keylen (SoftHSM2 reports
 * CKA_VALUE_LEN 0 for unwrapped keys, so wrap it again and look). */
int  p11_unwrap(struct p11 *p, int mech, p11_obj kek, const uint8_t *in,
	    size_t n, CK_KEY_TYPE kt, size_t keylen, const struct p11_keyspec *s,
	    p11_obj *out) WUR;

/* Unwraps a private key (PKCS#8 inside, e.g. AES-KWP) of type kt
 * (CKK_EC, CKK_RSA) with the spec's attributes. */
int  p11_unwrap_private(struct p11 *p, int mech, p11_obj kek,
	    const uint8_t *in, size_t n, CK_KEY_TYPE kt,
	    const struct p11_keyspec *s, p11_obj *out) WUR;
/* An EC public key object from an uncompressed point on P-256/P-384. */
int  p11_ec_public_create(struct p11 *p, unsigned bits, const uint8_t *point,
	    size_t n, const struct p11_keyspec *s, p11_obj *out) WUR;

/* ECDSA: the digest (SHA-256 for P-256, SHA-384 for P-384: `bits`) is
 * computed in software and signed in the token; sig gets raw r||s
 * (*siglen: capacity in, length out). */
int  p11_ecdsa_sign(struct p11 *p, p11_obj key, unsigned bits,
	    const uint8_t *d, size_t n, uint8_t *sig, size_t *siglen) WUR;
int  p11_hmac_sha256(struct p11 *p, p11_obj key, const uint8_t *d, size_t n,
	    uint8_t out[32]) WUR;
/* ERR_AUTH when the MAC does not verify. */
int  p11_hmac_sha256_verify(struct p11 *p, p11_obj key, const uint8_t *d,
	    size_t n, const uint8_t mac[32]) WUR;

/* CKM_AES_ECB_ENCRYPT_DATA: new AES key = AES-ECB(master, data); data is
 * 16 or 32 bytes and gives a key of that length. The new key is always
 * sensitive, whatever the spec says: derivation must not be a way to read
 * a key (any session could otherwise derive a readable copy). The template
 * is built here from the spec; a caller's template never passes through. */
int  p11_derive_ecb(struct p11 *p, p11_obj master, const uint8_t *data,
	    size_t n, const struct p11_keyspec *s, p11_obj *out) WUR;
/* CKM_SP800_108_COUNTER_KDF with the GP SCP03 layout (00x11|const|00|L|i|
 * context); only when P11_CAP_SP800_108. Returns an AES key of lbits/8. */
int  p11_derive_scp03(struct p11 *p, p11_obj base, uint8_t konst,
	    const uint8_t *context, size_t clen, uint16_t lbits,
	    const struct p11_keyspec *s, p11_obj *out) WUR;

/* Public key export: EC point (uncompressed 04||X||Y) and curve bits, or
 * RSA modulus and exponent. */
int  p11_ec_public(struct p11 *p, p11_obj pub, unsigned *bits, struct buf *point) WUR;
int  p11_rsa_public(struct p11 *p, p11_obj pub, struct buf *mod, struct buf *exp) WUR;

#endif
