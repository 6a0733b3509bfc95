/*
 * keystore.c - managed token keys: per-class attributes, versions, states
 * and check values, persisted as JSON in one private CKO_DATA object per
 * label. Runs in kmsd and kmsctl; trusts the token, validates the JSON it
 * reads back.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/sha.h>

#include "kms/keystore.h"

const char *const ks_class_names[] = { "storage-kek", "audit", "backup-kek",
	"transport-kek", "transport-rsa", "master", "mac", "ca", "keyset",
	"session", NULL };

const char *
ks_class_name(int cls)
{
	if (cls > KS_NONE && cls < KS_CLASS_COUNT)
		return ks_class_names[cls - 1];
	return "none";
}

int
ks_class_parse(const char *s)
{
	int i;

	for (i = 1; i < KS_CLASS_COUNT; i++)
		if (strcmp(s, ks_class_names[i - 1]) == 0)
			return i;
	return KS_NONE;
}

int
ks_class_backup_eligible(int cls)
{
	/* Only what cannot be recovered otherwise: without the storage KEK
	 * every blob is lost, without the masters every diversified key set,
	 * without the CA key its certificates, without the audit key the old
	 * log cannot be verified. Transport and MAC keys are re-entered from
	 * their custodians' components, the transport pair is regenerated and
	 * republished, and the backup KEK itself is never backed up. */
	return cls == KS_STORAGE_KEK || cls == KS_MASTER || cls == KS_CA ||
	    cls == KS_AUDIT;
}

/* Token attributes of each class (ARCHITECTURE.md "Key hierarchy"). */
struct class_spec {
	int      cls;
	int      default_alg;
	uint32_t usage;		/* secret key, or private key of a pair */
	uint32_t pub_usage;	/* public key of a pair */
};

static const struct class_spec class_specs[] = {
	{ KS_STORAGE_KEK, KMS_ALG_AES256, P11_WRAP | P11_UNWRAP, 0 },
	{ KS_AUDIT, KMS_ALG_HMAC, P11_SIGN | P11_VERIFY, 0 },
	{ KS_BACKUP_KEK, KMS_ALG_AES256, P11_WRAP | P11_UNWRAP, 0 },
	{ KS_TRANSPORT_KEK, KMS_ALG_AES128, P11_UNWRAP, 0 },
	{ KS_TRANSPORT_RSA, KMS_ALG_RSA, P11_UNWRAP | P11_DECRYPT,
	    P11_WRAP | P11_ENCRYPT },
	{ KS_MASTER, KMS_ALG_AES128, P11_DERIVE, 0 },
	{ KS_MAC, KMS_ALG_HMAC, P11_SIGN | P11_VERIFY, 0 },
	{ KS_CA, KMS_ALG_EC_P256, P11_SIGN, P11_VERIFY },
};

static const struct class_spec *
spec_of(int cls)
{
	size_t i;

	for (i = 0; i < ARRAY_LEN(class_specs); i++)
		if (class_specs[i].cls == cls)
			return &class_specs[i];
	return NULL;
}

static int
alg_fits(int cls, int alg)
{
	switch (cls) {
	case KS_STORAGE_KEK:
	case KS_BACKUP_KEK:
		return alg == KMS_ALG_AES256 || alg == KMS_ALG_AES128;
	case KS_TRANSPORT_KEK:
		return alg == KMS_ALG_AES128 || alg == KMS_ALG_AES192 ||
		    alg == KMS_ALG_AES256 || alg == KMS_ALG_DES3;
	case KS_MASTER:
		return alg == KMS_ALG_AES128 || alg == KMS_ALG_AES192 ||
		    alg == KMS_ALG_AES256;
	case KS_AUDIT:
	case KS_MAC:
		return alg == KMS_ALG_HMAC;
	case KS_TRANSPORT_RSA:
		return alg == KMS_ALG_RSA;
	case KS_CA:
		return alg == KMS_ALG_EC_P256 || alg == KMS_ALG_EC_P384;
	}
	return 0;
}

int
ks_state_allows(int state, int use)
{
	switch (state) {
	case KMS_ST_ACTIVE:
		return 1;
	case KMS_ST_DEACTIVATED:
		return use == KS_USE_PROCESS || use == KS_USE_INFO;
	case KMS_ST_PRE_ACTIVE:
	case KMS_ST_SUSPENDED:
	case KMS_ST_COMPROMISED:
	case KMS_ST_PENDING_DESTRUCTION:
	case KMS_ST_DESTROYED:
		return use == KS_USE_INFO;
	}
	return 0;
}

/* ---- KCV in software (for component bytes) ---- */

int
ks_kcv_bytes(int alg, int method, const uint8_t *key, size_t n, uint8_t *kcv,
    size_t *kcvlen)
{
	static const uint8_t ones[16] = { 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
		1, 1, 1 };
	static const uint8_t zeros[16];
	const EVP_CIPHER *c = NULL;
	EVP_CIPHER_CTX *ctx;
	uint8_t out[32];
	int ol = 0, rc = ERR_CRYPTO;

	if (alg == KMS_ALG_DES3) {
		if (n != 24 || method != KMS_KCV_GP)
			return ERR_INVAL;
		c = EVP_des_ede3_ecb();
	} else if (n == 16 || n == 24 || n == 32) {
		c = n == 16 ? EVP_aes_128_ecb() : n == 24 ? EVP_aes_192_ecb() :
		    EVP_aes_256_ecb();
	} else {
		return ERR_INVAL;
	}
	if (method == KMS_KCV_CMAC) {
		EVP_MAC *mac = EVP_MAC_fetch(NULL, "CMAC", NULL);
		EVP_MAC_CTX *mc = mac ? EVP_MAC_CTX_new(mac) : NULL;
		OSSL_PARAM params[2];
		size_t ml = 0;
		char name[16];

		snprintf(name, sizeof(name), "AES-%zu-CBC", n * 8);
		params[0] = OSSL_PARAM_construct_utf8_string("cipher", name, 0);
		params[1] = OSSL_PARAM_construct_end();
		if (mc != NULL && EVP_MAC_init(mc, key, n, params) == 1 &&
		    EVP_MAC_update(mc, zeros, 16) == 1 &&
		    EVP_MAC_final(mc, out, &ml, sizeof(out)) == 1 && ml == 16) {
			memcpy(kcv, out, 5);
			*kcvlen = 5;
			rc = 0;
		}
		EVP_MAC_CTX_free(mc);
		EVP_MAC_free(mac);
		wipe(out, sizeof(out));
		return rc;
	}
	if (method != KMS_KCV_GP)
		return ERR_INVAL;
	ctx = EVP_CIPHER_CTX_new();
	if (ctx == NULL)
		return ERR_NOMEM;
	if (EVP_EncryptInit_ex(ctx, c, NULL, key, NULL) == 1 &&
	    EVP_CIPHER_CTX_set_padding(ctx, 0) == 1 &&
	    EVP_EncryptUpdate(ctx, out, &ol, alg == KMS_ALG_DES3 ? zeros : ones,
	    alg == KMS_ALG_DES3 ? 8 : 16) == 1 && ol > 0) {
		memcpy(kcv, out, 3);
		*kcvlen = 3;
		rc = 0;
	}
	EVP_CIPHER_CTX_free(ctx);
	wipe(out, sizeof(out));
	return rc;
}

/* ---- metadata JSON ---- */

static json_t *
meta_to_json(const struct ks_key *k)
{
	json_t *o = json_object(), *vs = json_array();
	char kcv[16];
	size_t i;

	json_object_set_new(o, "format", json_integer(1));
	json_object_set_new(o, "label", json_string(k->label));
	json_object_set_new(o, "class", json_string(ks_class_name(k->cls)));
	json_object_set_new(o, "alg", json_string(kms_alg_name(k->alg)));
	json_object_set_new(o, "current", json_integer(k->current));
	json_object_set_new(o, "rev", json_integer((json_int_t)k->rev));
	for (i = 0; i < k->nvers; i++) {
		const struct ks_version *v = &k->vers[i];
		json_t *jv = json_object();

		hex_encode(v->kcv, v->kcvlen, kcv);
		json_object_set_new(jv, "version", json_integer(v->v));
		json_object_set_new(jv, "state", json_string(kms_state_name(v->state)));
		json_object_set_new(jv, "kcv", json_string(kcv));
		json_object_set_new(jv, "created", json_integer(v->created));
		json_object_set_new(jv, "changed", json_integer(v->changed));
		if (v->destroy_after)
			json_object_set_new(jv, "destroyAfter",
			    json_integer(v->destroy_after));
		if (v->prev_state)
			json_object_set_new(jv, "prevState",
			    json_string(kms_state_name(v->prev_state)));
		if (v->reason[0])
			json_object_set_new(jv, "reason", json_string(v->reason));
		json_array_append_new(vs, jv);
	}
	json_object_set_new(o, "versions", vs);
	return o;
}

static int
meta_from_json(const uint8_t *p, size_t n, struct ks_key *k)
{
	json_error_t je;
	json_t *o, *vs, *jv;
	const char *label = NULL, *cls = NULL, *alg = NULL;
	json_int_t cur = 0, rev = 0;
	size_t i;
	int rc = ERR_PARSE;

	memset(k, 0, sizeof(*k));
	o = json_loadb((const char *)p, n, JSON_REJECT_DUPLICATES, &je);
	if (o == NULL)
		return ERR_PARSE;
	if (json_unpack(o, "{s:s, s:s, s:s, s:I, s?I, s:o}", "label", &label,
	    "class", &cls, "alg", &alg, "current", &cur, "rev", &rev, "versions",
	    &vs) != 0 ||
	    !json_is_array(vs) || strlen(label) >= sizeof(k->label))
		goto out;
	snprintf(k->label, sizeof(k->label), "%s", label);
	k->cls = ks_class_parse(cls);
	k->alg = kms_alg_parse(alg);
	k->current = (uint32_t)cur;
	k->rev = (uint64_t)rev;
	if (k->cls == KS_NONE || k->alg == 0 || json_array_size(vs) > 10000)
		goto out;
	k->nvers = json_array_size(vs);
	k->vers = calloc(k->nvers ? k->nvers : 1, sizeof(*k->vers));
	if (k->vers == NULL) {
		rc = ERR_NOMEM;
		goto out;
	}
	json_array_foreach(vs, i, jv) {
		struct ks_version *v = &k->vers[i];
		const char *st = NULL, *kcv = "", *reason = NULL, *prev = NULL;
		json_int_t ver = 0, created = 0, changed = 0, da = 0;

		if (json_unpack(jv, "{s:I, s:s, s?s, s?I, s?I, s?I, s?s, s?s}",
		    "version", &ver, "state", &st, "kcv", &kcv, "created", &created,
		    "changed", &changed, "destroyAfter", &da, "reason", &reason,
		    "prevState", &prev) != 0)
			goto out;
		v->prev_state = prev ? kms_state_parse(prev) : 0;
		v->v = (uint32_t)ver;
		v->state = kms_state_parse(st);
		if (v->state == 0 || hex_decode(kcv, strlen(kcv), v->kcv,
		    sizeof(v->kcv), &v->kcvlen) != 0)
			goto out;
		v->created = created;
		v->changed = changed;
		v->destroy_after = da;
		if (reason)
			snprintf(v->reason, sizeof(v->reason), "%s", reason);
	}
	rc = 0;
out:
	if (rc != 0) {
		free(k->vers);
		k->vers = NULL;
		k->nvers = 0;
	}
	json_decref(o);
	return rc;
}

/*
 * Tokens may refuse to change a data object's value (SoftHSM2 does), so a
 * save writes a new object with the next revision and then destroys the
 * old one. A crash in between leaves two; ks_load keeps the newer.
 */
int
ks_save(struct keystore *ks, struct ks_key *k)
{
	json_t *o;
	char *s;
	p11_obj nm = 0;
	int rc;

	k->rev++;
	o = meta_to_json(k);
	s = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
	json_decref(o);
	if (s == NULL) {
		k->rev--;
		return ERR_NOMEM;
	}
	rc = p11_data_create(ks->p, KS_APPLICATION, k->label, s, strlen(s), &nm);
	free(s);
	if (rc == 0) {
		if (k->meta != 0 && p11_destroy(ks->p, k->meta) != 0)
			log_msg(LOG_WARN, "event=keystore_old_metadata_kept label=%s",
			    k->label);
		k->meta = nm;
	} else {
		k->rev--;
	}
	if (rc != 0)
		log_msg(LOG_ERR, "event=keystore_save_failed label=%s err=%s p11=\"%s\"",
		    k->label, err_name(rc), p11_last_error());
	return rc;
}

/* ---- loading ---- */

static void
key_free_copies(struct keystore *ks, struct ks_key *k)
{
	size_t i;

	for (i = 0; i < k->nvers; i++) {
		if (k->vers[i].sobj != 0 && ks->p != NULL &&
		    p11_destroy(ks->p, k->vers[i].sobj) != 0)
			log_msg(LOG_DEBUG, "event=session_copy_destroy_failed");
		k->vers[i].sobj = 0;
	}
}

static void
key_free(struct ks_key *k)
{
	free(k->vers);
	k->vers = NULL;
	k->nvers = 0;
}

void
ks_free(struct keystore *ks)
{
	size_t i;

	for (i = 0; i < ks->n; i++) {
		key_free_copies(ks, &ks->keys[i]);
		key_free(&ks->keys[i]);
	}
	free(ks->keys);
	ks->keys = NULL;
	ks->n = ks->cap = 0;
}

static int
ks_append(struct keystore *ks, struct ks_key **out)
{
	if (ks->n == ks->cap) {
		size_t nc = ks->cap ? ks->cap * 2 : 16;
		struct ks_key *nk = realloc(ks->keys, nc * sizeof(*nk));

		if (nk == NULL)
			return ERR_NOMEM;
		ks->keys = nk;
		ks->cap = nc;
	}
	*out = &ks->keys[ks->n++];
	memset(*out, 0, sizeof(**out));
	return 0;
}

int
ks_load(struct keystore *ks, struct p11 *p)
{
	p11_obj *objs = NULL;
	struct buf app, val;
	struct ks_key k, *slot;
	size_t n = 0, i;
	int rc;

	ks_free(ks);
	ks->p = p;
	buf_init(&app);
	buf_init(&val);
	if ((rc = p11_find_all(p, CKO_DATA, &objs, &n)) != 0)
		return rc;
	for (i = 0; i < n; i++) {
		if (p11_attr_bytes(p, objs[i], CKA_APPLICATION, &app) != 0 ||
		    app.len != strlen(KS_APPLICATION) ||
		    memcmp(app.p, KS_APPLICATION, app.len) != 0)
			continue;
		if ((rc = p11_attr_bytes(p, objs[i], CKA_VALUE, &val)) != 0)
			goto out;
		if (meta_from_json(val.p, val.len, &k) != 0) {
			log_msg(LOG_ERR, "event=keystore_bad_metadata object=%lu",
			    (unsigned long)objs[i]);
			continue;
		}
		if ((slot = ks_find(ks, k.label)) != NULL) {
			/* An interrupted save: keep the newer revision. */
			struct ks_key *old = slot->rev > k.rev ? &k : slot;
			p11_obj stale = old == &k ? objs[i] : slot->meta;

			log_msg(LOG_WARN, "event=keystore_duplicate label=%s kept_rev=%llu",
			    k.label, (unsigned long long)(old == &k ? slot->rev : k.rev));
			if (p11_destroy(p, stale) != 0)
				log_msg(LOG_WARN, "event=keystore_stale_not_destroyed");
			if (old == slot) {
				key_free(slot);
				k.meta = objs[i];
				*slot = k;
			} else {
				key_free(&k);
			}
			continue;
		}
		k.meta = objs[i];
		if ((rc = ks_append(ks, &slot)) != 0) {
			key_free(&k);
			goto out;
		}
		*slot = k;
	}
	rc = 0;
out:
	free(objs);
	buf_free(&app);
	buf_free(&val);
	return rc;
}

struct ks_key *
ks_find(struct keystore *ks, const char *label)
{
	size_t i;

	for (i = 0; i < ks->n; i++)
		if (strcmp(ks->keys[i].label, label) == 0)
			return &ks->keys[i];
	return NULL;
}

int
ks_version(struct ks_key *k, uint32_t v, struct ks_version **out)
{
	size_t i;

	if (v == 0)
		v = k->current;
	for (i = 0; i < k->nvers; i++) {
		if (k->vers[i].v == v) {
			*out = &k->vers[i];
			return 0;
		}
	}
	return ERR_NOKEY;
}

static void
ver_id(uint32_t v, uint8_t id[4])
{
	id[0] = (uint8_t)(v >> 24);
	id[1] = (uint8_t)(v >> 16);
	id[2] = (uint8_t)(v >> 8);
	id[3] = (uint8_t)v;
}

static int
is_pair(int cls)
{
	return cls == KS_TRANSPORT_RSA || cls == KS_CA;
}

/* A version's token object of class oc, found by label and CKA_ID once
 * and then kept in *cache. */
static int
find_object(struct keystore *ks, struct ks_key *k, struct ks_version *ver,
    CK_OBJECT_CLASS oc, p11_obj *cache, p11_obj *out)
{
	uint8_t id[4];
	int rc;

	if (*cache == 0) {
		ver_id(ver->v, id);
		rc = p11_find(ks->p, oc, k->label, id, 4, cache);
		if (rc != 0)
			return rc == ERR_NOTFOUND ? ERR_NOKEY : rc;
	}
	*out = *cache;
	return 0;
}

int
ks_object(struct keystore *ks, struct ks_key *k, struct ks_version *ver,
    p11_obj *out)
{
	if (ver->state == KMS_ST_DESTROYED)
		return ERR_NOKEY;
	return find_object(ks, k, ver, is_pair(k->cls) ? CKO_PRIVATE_KEY :
	    CKO_SECRET_KEY, &ver->obj, out);
}

int
ks_public(struct keystore *ks, struct ks_key *k, struct ks_version *ver,
    p11_obj *out)
{
	if (!is_pair(k->cls) || ver->state == KMS_ST_DESTROYED)
		return ERR_KEYCLASS;
	return find_object(ks, k, ver, CKO_PUBLIC_KEY, &ver->pub, out);
}

int
ks_object_fast(struct keystore *ks, struct ks_key *k, struct ks_version *ver,
    p11_obj *out)
{
	p11_obj o;
	int rc;

	if (ver->sobj != 0 && ver->state != KMS_ST_DESTROYED) {
		*out = ver->sobj;
		return 0;
	}
	if ((rc = ks_object(ks, k, ver, &o)) != 0)
		return rc;
	if (p11_copy_to_session(ks->p, o, &ver->sobj) != 0) {
		ver->sobj = 0;
		*out = o;
		return 0;
	}
	*out = ver->sobj;
	return 0;
}

void
ks_forget(struct keystore *ks, struct ks_key *k, struct ks_version *ver)
{
	uint8_t id[4];

	if (ver->sobj != 0 && p11_destroy(ks->p, ver->sobj) != 0)
		log_msg(LOG_DEBUG, "event=session_copy_destroy_failed");
	ver->sobj = 0;

	ver_id(ver->v, id);
	p11_cache_drop(ks->p, is_pair(k->cls) ? CKO_PRIVATE_KEY : CKO_SECRET_KEY,
	    k->label, id, 4);
	if (is_pair(k->cls))
		p11_cache_drop(ks->p, CKO_PUBLIC_KEY, k->label, id, 4);
	ver->obj = ver->pub = 0;
}

/* ---- creation ---- */

/* Finds or makes the record for label and appends a new version. */
static int
new_version(struct keystore *ks, const char *label, int cls, int alg,
    int rotate, struct ks_key **kout, struct ks_version **vout)
{
	struct ks_key *k = ks_find(ks, label);
	struct ks_version *nv;
	uint32_t next = 1;
	size_t i;
	int rc;

	if (strlen(label) == 0 || strlen(label) >= KS_LABEL_MAX)
		return ERR_INVAL;
	if (k != NULL) {
		if (!rotate)
			return ERR_EXISTS;
		if (k->cls != cls || k->alg != alg)
			return ERR_KEYCLASS;
		for (i = 0; i < k->nvers; i++)
			if (k->vers[i].v >= next)
				next = k->vers[i].v + 1;
	} else {
		if ((rc = ks_append(ks, &k)) != 0)
			return rc;
		snprintf(k->label, sizeof(k->label), "%s", label);
		k->cls = cls;
		k->alg = alg;
	}
	nv = realloc(k->vers, (k->nvers + 1) * sizeof(*nv));
	if (nv == NULL)
		return ERR_NOMEM;
	k->vers = nv;
	*vout = &k->vers[k->nvers];
	memset(*vout, 0, sizeof(**vout));
	(*vout)->v = next;
	(*vout)->created = (*vout)->changed = wall_seconds();
	*kout = k;
	return 0;
}

/* Undo of new_version when creation failed. */
static void
drop_version(struct keystore *ks, struct ks_key *k)
{
	if (k->nvers == 0 && k->meta == 0) {
		/* a fresh record: remove it entirely */
		size_t idx = (size_t)(k - ks->keys);

		key_free(k);
		ks->keys[idx] = ks->keys[--ks->n];
	}
}

/* GP KCV of a token AES key created with CKA_ENCRYPT, which is then turned
 * off when the class does not need it. */
static int
kcv_then_restrict(struct keystore *ks, p11_obj o, uint32_t usage,
    struct ks_version *v)
{
	static const uint8_t ones[16] = { 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
		1, 1, 1 };
	CK_BBOOL off = CK_FALSE;
	uint8_t out[16];
	int rc;

	if ((rc = p11_aes_encrypt(ks->p, o, P11_ECB, NULL, ones, 16, out)) != 0)
		return rc;
	memcpy(v->kcv, out, 3);
	v->kcvlen = 3;
	if (usage & P11_ENCRYPT)
		return 0;
	return p11_set_bytes(ks->p, o, CKA_ENCRYPT, &off, sizeof(off));
}

static void
spec_for(struct p11_keyspec *s, const char *label, const uint8_t id[4], int cls,
    uint32_t usage)
{
	memset(s, 0, sizeof(*s));
	s->label = label;
	s->id = id;
	s->idlen = 4;
	s->token = 1;
	s->extractable = ks_class_backup_eligible(cls);
	s->usage = usage;
}

/* Extractable keys are marked wrap-with-trusted where the token lets a
 * trusted backup KEK exist (not SoftHSM2, whose SO cannot make private
 * keys); they are then wrappable only by such a KEK. */
static void
spec_trusted(struct keystore *ks, struct p11_keyspec *s)
{
	if (s->extractable && (p11_caps(ks->p) & P11_CAP_TRUSTED_WRAP))
		s->wrap_with_trusted = 1;
}

int
ks_generate(struct keystore *ks, const char *label, int cls, int alg,
    int rotate, int pre_active, uint32_t *version)
{
	const struct class_spec *cs = spec_of(cls);
	struct p11_keyspec s, ps;
	struct ks_key *k;
	struct ks_version *v;
	uint8_t id[4];
	p11_obj o = 0, pub = 0;
	int rc;

	if (cs == NULL)
		return ERR_KEYCLASS;
	if (alg == 0)
		alg = cs->default_alg;
	if (!alg_fits(cls, alg))
		return ERR_INVAL;
	if ((rc = new_version(ks, label, cls, alg, rotate, &k, &v)) != 0)
		return rc;
	ver_id(v->v, id);
	spec_for(&s, label, id, cls, cs->usage);
	spec_trusted(ks, &s);
	switch (alg) {
	case KMS_ALG_AES128:
	case KMS_ALG_AES192:
	case KMS_ALG_AES256:
		s.usage |= P11_ENCRYPT;	/* for the KCV, removed below */
		rc = p11_aes_generate(ks->p, kms_alg_keylen(alg), &s, &o);
		if (rc == 0)
			rc = kcv_then_restrict(ks, o, cs->usage, v);
		break;
	case KMS_ALG_HMAC:
		rc = p11_secret_generate(ks->p, 32, &s, &o);
		break;
	case KMS_ALG_EC_P256:
	case KMS_ALG_EC_P384:
		spec_for(&ps, label, id, cls, cs->pub_usage);
		ps.extractable = 0;
		rc = p11_ec_generate(ks->p, alg == KMS_ALG_EC_P256 ? 256 : 384,
		    &ps, &s, &pub, &o);
		break;
	case KMS_ALG_RSA:
		spec_for(&ps, label, id, cls, cs->pub_usage);
		ps.extractable = 0;
		rc = p11_rsa_generate(ks->p, 3072, &ps, &s, &pub, &o);
		break;
	default:
		rc = ERR_INVAL;
	}
	if (rc != 0)
		goto fail;
	v->state = pre_active ? KMS_ST_PRE_ACTIVE : KMS_ST_ACTIVE;
	v->obj = o;
	v->pub = pub;
	k->nvers++;
	if (!pre_active || k->current == 0)
		k->current = v->v;
	if ((rc = ks_save(ks, k)) != 0) {
		k->nvers--;
		goto fail;
	}
	*version = v->v;
	return 0;
fail:
	log_msg(LOG_ERR, "event=keygen_failed label=%s class=%s err=%s p11=\"%s\"",
	    label, ks_class_name(cls), err_name(rc), p11_last_error());
	if (o != 0 && p11_destroy(ks->p, o) != 0)
		log_msg(LOG_WARN, "event=keygen_cleanup_failed label=%s", label);
	if (pub != 0 && p11_destroy(ks->p, pub) != 0)
		log_msg(LOG_WARN, "event=keygen_cleanup_failed label=%s", label);
	drop_version(ks, k);
	return rc;
}

int
ks_import_secret(struct keystore *ks, const char *label, int cls, int alg,
    const uint8_t *val, size_t n, const uint8_t *kcv, int rotate,
    uint32_t *version)
{
	const struct class_spec *cs = spec_of(cls);
	struct p11_keyspec s;
	struct ks_key *k;
	struct ks_version *v;
	uint8_t id[4];
	CK_KEY_TYPE kt;
	p11_obj o = 0;
	int rc;

	if (cs == NULL || cls == KS_TRANSPORT_RSA || cls == KS_CA)
		return ERR_KEYCLASS;
	if (alg == 0)
		alg = cs->default_alg;
	if (!alg_fits(cls, alg))
		return ERR_INVAL;
	if (alg == KMS_ALG_HMAC) {
		kt = CKK_GENERIC_SECRET;
		if (n < 16 || n > 64)
			return ERR_INVAL;
	} else {
		kt = alg == KMS_ALG_DES3 ? CKK_DES3 : CKK_AES;
		if (n != kms_alg_keylen(alg))
			return ERR_INVAL;
	}
	if ((rc = new_version(ks, label, cls, alg, rotate, &k, &v)) != 0)
		return rc;
	if (kcv != NULL) {
		memcpy(v->kcv, kcv, 3);
		v->kcvlen = 3;
	} else if (ks_kcv_bytes(alg == KMS_ALG_HMAC ? KMS_ALG_AES128 : alg,
	    KMS_KCV_GP, val, n, v->kcv, &v->kcvlen) != 0) {
		v->kcvlen = 0;	/* no AES-style KCV for this length */
	}
	ver_id(v->v, id);
	spec_for(&s, label, id, cls, cs->usage);
	spec_trusted(ks, &s);
	if ((rc = p11_secret_import(ks->p, kt, val, n, &s, &o)) != 0)
		goto fail;
	v->state = KMS_ST_ACTIVE;
	v->obj = o;
	k->nvers++;
	k->current = v->v;
	if ((rc = ks_save(ks, k)) != 0) {
		k->nvers--;
		goto fail;
	}
	*version = v->v;
	return 0;
fail:
	if (o != 0 && p11_destroy(ks->p, o) != 0)
		log_msg(LOG_WARN, "event=import_cleanup_failed label=%s", label);
	drop_version(ks, k);
	return rc;
}

int
ks_record(struct keystore *ks, const char *label, int cls, int alg,
    uint32_t version, int state, const uint8_t *kcv, size_t kcvlen)
{
	struct ks_key *k = ks_find(ks, label);
	struct ks_version *v, *nv;
	int rc;

	if (kcvlen > 3)
		return ERR_INVAL;
	if (k == NULL) {
		if ((rc = ks_append(ks, &k)) != 0)
			return rc;
		snprintf(k->label, sizeof(k->label), "%s", label);
		k->cls = cls;
		k->alg = alg;
	} else if (k->cls != cls || k->alg != alg) {
		return ERR_KEYCLASS;
	}
	if (ks_version(k, version, &v) != 0) {
		nv = realloc(k->vers, (k->nvers + 1) * sizeof(*nv));
		if (nv == NULL)
			return ERR_NOMEM;
		k->vers = nv;
		v = &k->vers[k->nvers++];
		memset(v, 0, sizeof(*v));
		v->v = version;
		v->created = wall_seconds();
	}
	v->state = state;
	v->changed = wall_seconds();
	memcpy(v->kcv, kcv, kcvlen);
	v->kcvlen = kcvlen;
	if (state == KMS_ST_ACTIVE && version > k->current)
		k->current = version;
	return ks_save(ks, k);
}

/* SP 800-57 transitions; DESTROYED only through ks_destroy_version. */
static int
transition_ok(int from, int to)
{
	switch (to) {
	case KMS_ST_ACTIVE:
		return from == KMS_ST_PRE_ACTIVE || from == KMS_ST_SUSPENDED;
	case KMS_ST_SUSPENDED:
		return from == KMS_ST_ACTIVE;
	case KMS_ST_DEACTIVATED:
		return from == KMS_ST_ACTIVE || from == KMS_ST_SUSPENDED ||
		    from == KMS_ST_PRE_ACTIVE;
	case KMS_ST_COMPROMISED:
		return from != KMS_ST_DESTROYED && from != KMS_ST_COMPROMISED;
	case KMS_ST_PENDING_DESTRUCTION:
		return from == KMS_ST_DEACTIVATED || from == KMS_ST_COMPROMISED ||
		    from == KMS_ST_PRE_ACTIVE;
	}
	return 0;
}

int
ks_set_state(struct keystore *ks, struct ks_key *k, struct ks_version *ver,
    int state, const char *reason, int64_t destroy_after)
{
	struct ks_version save = *ver;
	int rc;

	/* Cancelling a pending destruction returns to the state it came
	 * from, and only to that one. */
	if (ver->state == KMS_ST_PENDING_DESTRUCTION) {
		if (state != ver->prev_state)
			return ERR_WRONGSTATE;
		ver->prev_state = 0;
	} else if (!transition_ok(ver->state, state)) {
		return ERR_WRONGSTATE;
	} else if (state == KMS_ST_PENDING_DESTRUCTION) {
		ver->prev_state = ver->state;
	}
	ver->state = state;
	ver->changed = wall_seconds();
	ver->destroy_after = destroy_after;
	if (reason != NULL)
		snprintf(ver->reason, sizeof(ver->reason), "%s", reason);
	if ((rc = ks_save(ks, k)) != 0)
		*ver = save;
	return rc;
}

int
ks_destroy_version(struct keystore *ks, struct ks_key *k,
    struct ks_version *ver, const char *reason)
{
	p11_obj o;
	int rc;

	if (ver->state != KMS_ST_PENDING_DESTRUCTION)
		return ERR_WRONGSTATE;
	if ((rc = ks_object(ks, k, ver, &o)) == 0)
		rc = p11_destroy(ks->p, o);
	if (rc != 0 && rc != ERR_NOKEY && rc != ERR_HANDLE)
		return rc;
	if (is_pair(k->cls) && ks_public(ks, k, ver, &o) == 0 &&
	    p11_destroy(ks->p, o) != 0)
		log_msg(LOG_WARN, "event=destroy_public_failed label=%s", k->label);
	ks_forget(ks, k, ver);
	ver->state = KMS_ST_DESTROYED;
	ver->changed = wall_seconds();
	ver->destroy_after = 0;
	if (reason != NULL)
		snprintf(ver->reason, sizeof(ver->reason), "%s", reason);
	return ks_save(ks, k);
}

int
ks_set_current(struct keystore *ks, struct ks_key *k, uint32_t v)
{
	struct ks_version *ver;
	uint32_t old = k->current;
	int rc;

	if ((rc = ks_version(k, v, &ver)) != 0)
		return rc;
	if (ver->state != KMS_ST_ACTIVE)
		return ERR_WRONGSTATE;
	k->current = v;
	if ((rc = ks_save(ks, k)) != 0)
		k->current = old;
	return rc;
}

/* ---- backup and restore ---- */

static const char backup_check_msg[] = "sptsm-backup-check";

int
ks_wrap_version(struct keystore *ks, struct ks_key *k, struct ks_version *v,
    p11_obj kek, struct buf *wrapped, struct buf *pub, uint8_t check[8])
{
	uint8_t out[4096], mac[32];
	size_t ol = sizeof(out);
	unsigned bits;
	p11_obj o, po;
	int rc;

	buf_reset(wrapped);
	buf_reset(pub);
	memset(check, 0, 8);
	if ((rc = ks_object(ks, k, v, &o)) != 0)
		return rc;
	if ((rc = p11_wrap(ks->p, P11_WRAP_AES_KWP, kek, o, out, &ol)) != 0)
		return rc;
	if ((rc = buf_put(wrapped, out, ol)) != 0)
		return rc;
	if (k->alg == KMS_ALG_HMAC) {
		if ((rc = p11_hmac_sha256(ks->p, o, (const uint8_t *)backup_check_msg,
		    sizeof(backup_check_msg) - 1, mac)) != 0)
			return rc;
		memcpy(check, mac, 8);
	}
	if (is_pair(k->cls)) {
		if ((rc = ks_public(ks, k, v, &po)) != 0 ||
		    (rc = p11_ec_public(ks->p, po, &bits, pub)) != 0)
			return rc;
	}
	return 0;
}

/* The restored EC pair signs, and the signature checks out under the
 * backed-up public key, in software. */
static int
ec_pair_check(struct keystore *ks, p11_obj priv, unsigned bits,
    const uint8_t *pub, size_t pl)
{
	uint8_t sig[132], dig[48];
	size_t sl = sizeof(sig), half;
	EVP_PKEY *pk = NULL;
	EVP_PKEY_CTX *pc = NULL;
	OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
	OSSL_PARAM *params = NULL;
	ECDSA_SIG *es = NULL;
	unsigned char *der = NULL;
	int dl, rc = ERR_KCV;

	if (bld == NULL ||
	    p11_ecdsa_sign(ks->p, priv, bits, (const uint8_t *)backup_check_msg,
	    sizeof(backup_check_msg) - 1, sig, &sl) != 0)
		goto out;
	half = sl / 2;
	OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME,
	    bits == 256 ? "prime256v1" : "secp384r1", 0);
	OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, pub, pl);
	params = OSSL_PARAM_BLD_to_param(bld);
	pc = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
	if (pc == NULL || EVP_PKEY_fromdata_init(pc) != 1 ||
	    EVP_PKEY_fromdata(pc, &pk, EVP_PKEY_PUBLIC_KEY, params) != 1)
		goto out;
	EVP_PKEY_CTX_free(pc);
	pc = EVP_PKEY_CTX_new(pk, NULL);
	es = ECDSA_SIG_new();
	if (es == NULL || ECDSA_SIG_set0(es, BN_bin2bn(sig, (int)half, NULL),
	    BN_bin2bn(sig + half, (int)half, NULL)) != 1)
		goto out;
	dl = i2d_ECDSA_SIG(es, &der);
	if (bits == 256)
		SHA256((const uint8_t *)backup_check_msg,
		    sizeof(backup_check_msg) - 1, dig);
	else
		SHA384((const uint8_t *)backup_check_msg,
		    sizeof(backup_check_msg) - 1, dig);
	if (dl > 0 && pc != NULL && EVP_PKEY_verify_init(pc) == 1 &&
	    EVP_PKEY_verify(pc, der, (size_t)dl, dig, bits / 8) == 1)
		rc = 0;
out:
	OPENSSL_free(der);
	ECDSA_SIG_free(es);
	EVP_PKEY_free(pk);
	EVP_PKEY_CTX_free(pc);
	OSSL_PARAM_free(params);
	OSSL_PARAM_BLD_free(bld);
	return rc;
}

int
ks_unwrap_version(struct keystore *ks, const char *label, int cls, int alg,
    const struct ks_version *meta, p11_obj kek, const uint8_t *w, size_t wl,
    const uint8_t *pub, size_t pl, const uint8_t check[8])
{
	const struct class_spec *cs = spec_of(cls);
	struct p11_keyspec s, ps;
	struct ks_version tmp;
	uint8_t id[4], mac[32];
	p11_obj o = 0, po = 0;
	int rc;

	if (cs == NULL || !alg_fits(cls, alg) || !ks_class_backup_eligible(cls))
		return ERR_KEYCLASS;
	if (ks_find(ks, label) != NULL) {
		struct ks_version *ex;

		if (ks_version(ks_find(ks, label), meta->v, &ex) == 0)
			return ERR_EXISTS;
	}
	ver_id(meta->v, id);
	spec_for(&s, label, id, cls, cs->usage);
	spec_trusted(ks, &s);
	memset(&tmp, 0, sizeof(tmp));
	switch (alg) {
	case KMS_ALG_AES128:
	case KMS_ALG_AES192:
	case KMS_ALG_AES256:
		s.usage |= P11_ENCRYPT;	/* for the KCV check, removed below */
		if ((rc = p11_unwrap(ks->p, P11_WRAP_AES_KWP, kek, w, wl, CKK_AES,
		    kms_alg_keylen(alg), &s, &o)) != 0 ||
		    (rc = kcv_then_restrict(ks, o, cs->usage, &tmp)) != 0)
			goto fail;
		if (meta->kcvlen != 3 || !ct_equal(tmp.kcv, meta->kcv, 3)) {
			rc = ERR_KCV;
			goto fail;
		}
		break;
	case KMS_ALG_HMAC:
		if ((rc = p11_unwrap(ks->p, P11_WRAP_AES_KWP, kek, w, wl,
		    CKK_GENERIC_SECRET, 0, &s, &o)) != 0 ||
		    (rc = p11_hmac_sha256(ks->p, o, (const uint8_t *)backup_check_msg,
		    sizeof(backup_check_msg) - 1, mac)) != 0)
			goto fail;
		if (!ct_equal(mac, check, 8)) {
			rc = ERR_KCV;
			goto fail;
		}
		break;
	case KMS_ALG_EC_P256:
	case KMS_ALG_EC_P384:
		spec_for(&ps, label, id, cls, cs->pub_usage);
		ps.extractable = 0;
		if ((rc = p11_unwrap_private(ks->p, P11_WRAP_AES_KWP, kek, w, wl,
		    CKK_EC, &s, &o)) != 0 ||
		    (rc = p11_ec_public_create(ks->p, alg == KMS_ALG_EC_P256 ? 256 :
		    384, pub, pl, &ps, &po)) != 0)
			goto fail;
		if ((rc = ec_pair_check(ks, o, alg == KMS_ALG_EC_P256 ? 256 : 384,
		    pub, pl)) != 0)
			goto fail;
		break;
	default:
		return ERR_NOTSUP;
	}
	if ((rc = ks_record(ks, label, cls, alg, meta->v, meta->state, meta->kcv,
	    meta->kcvlen)) != 0)
		goto fail;
	{
		struct ks_key *k = ks_find(ks, label);
		struct ks_version *v;

		if (k != NULL && ks_version(k, meta->v, &v) == 0) {
			v->created = meta->created;
			v->changed = meta->changed;
			v->prev_state = meta->prev_state;
			v->destroy_after = meta->destroy_after;
			memcpy(v->reason, meta->reason, sizeof(v->reason));
			v->obj = o;
			v->pub = po;
			if (meta->state == KMS_ST_ACTIVE && meta->v >= k->current)
				k->current = meta->v;
			rc = ks_save(ks, k);
		}
	}
	return rc;
fail:
	if (o != 0 && p11_destroy(ks->p, o) != 0)
		log_msg(LOG_WARN, "event=restore_cleanup_failed label=%s", label);
	if (po != 0 && p11_destroy(ks->p, po) != 0)
		log_msg(LOG_WARN, "event=restore_cleanup_failed label=%s", label);
	return rc;
}
