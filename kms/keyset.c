/*
 * keyset.c - SSD key sets in kmsd: generation, import under a peer's
 * transport key with in-token KCV checks, and storage blobs (members
 * wrapped under the storage KEK, or a reference to master keys for
 * diversified sets). Members exist in the token only as session objects.
 * Runs in kmsd. Trusts the token; checks every blob byte it is given.
 */
#include <stdio.h>
#include <string.h>

#include "kms/kmsd.h"

static const uint8_t blob_magic[4] = { 'K', 'S', 'B', '1' };
static const uint8_t ones16[16] = { 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
	1, 1 };
static const uint8_t zeros16[16];

void
keyset_member_spec(int usage, unsigned flags, struct p11_keyspec *s)
{
	memset(s, 0, sizeof(*s));
	s->extractable = (flags & KMS_OPEN_EXPORTABLE) != 0;
	if (flags & KMS_OPEN_MASTER) {
		/* A master set's members feed only the per-SE derivation. */
		s->extractable = 0;
		s->usage = P11_DERIVE;
		return;
	}
	switch (usage) {
	case KMS_USE_ENC:	/* SCP03 KDF input: CMAC only */
	case KMS_USE_MAC:
		s->usage = P11_SIGN;
		break;
	case KMS_USE_DEK:	/* PUT KEY wrap, sensitive-data encryption */
		s->usage = P11_WRAP | P11_ENCRYPT | P11_DECRYPT;
		break;
	}
}

/* Temporary member used to compute check values (ECB for GP, CMAC). */
static void
kcv_spec(struct p11_keyspec *s, int extractable, int wwt)
{
	memset(s, 0, sizeof(*s));
	s->extractable = extractable;
	s->wrap_with_trusted = wwt;
	s->usage = P11_ENCRYPT | P11_SIGN;
}

static int
member_kcvs(struct kmsd *d, struct member *m)
{
	uint8_t out[16];
	int rc;

	if ((rc = p11_aes_encrypt(d->p, m->obj, P11_ECB, NULL, ones16, 16,
	    out)) != 0)
		return rc;
	memcpy(m->kcv, out, 3);
	if ((rc = p11_cmac(d->p, m->obj, zeros16, 16, out)) != 0)
		return rc;
	memcpy(m->kcv_cmac, out, 5);
	return 0;
}

static void
destroy_members(struct kmsd *d, struct member *m, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		if (m[i].obj != 0 && p11_destroy(d->p, m[i].obj) != 0)
			log_msg(LOG_WARN, "event=member_destroy_failed p11=\"%s\"",
			    p11_last_error());
		m[i].obj = 0;
	}
}

/* Looks up a token key of a class for a use; fills msg on failure. */
static int
token_key(struct kmsd *d, const char *label, uint32_t version, int cls,
    int use, struct ks_key **kout, struct ks_version **vout, p11_obj *o,
    char *msg, size_t cap)
{
	struct ks_key *k = ks_find(&d->ks, label);
	struct ks_version *v;
	int rc;

	if (k == NULL) {
		snprintf(msg, cap, "no key labelled '%s'", label);
		return ERR_NOKEY;
	}
	if (k->cls != cls) {
		snprintf(msg, cap, "key '%s' is a %s, not a %s", label,
		    ks_class_name(k->cls), ks_class_name(cls));
		return ERR_KEYCLASS;
	}
	if ((rc = ks_version(k, version, &v)) != 0) {
		snprintf(msg, cap, "key '%s' has no version %u", label, version);
		return rc;
	}
	if (!ks_state_allows(v->state, use)) {
		snprintf(msg, cap, "key '%s' v%u is %s", label, v->v,
		    kms_state_name(v->state));
		return ERR_KEYSTATE;
	}
	rc = ks_object_fast(&d->ks, k, v, o);
	if (rc == 0)
		;
	else if (rc == ERR_HANDLE) {
		ks_forget(&d->ks, k, v);
		rc = ks_object_fast(&d->ks, k, v, o);
	}
	if (rc != 0) {
		snprintf(msg, cap, "key '%s' v%u not found in the token", label,
		    v->v);
		return rc;
	}
	if (kout)
		*kout = k;
	if (vout)
		*vout = v;
	return 0;
}

static int
storage_kek(struct kmsd *d, uint32_t version, int use, struct ks_version **v,
    p11_obj *o, char *msg, size_t cap)
{
	return token_key(d, d->cfg.storage_kek, version, KS_STORAGE_KEK, use,
	    NULL, v, o, msg, cap);
}

/* Wraps members under the storage KEK into a BLOB_WRAPPED blob. */
static int
wrap_blob(struct kmsd *d, int alg, const struct member *m, size_t n,
    struct buf *blob, char *msg, size_t cap)
{
	struct ks_version *kv;
	uint8_t w[64];
	size_t wl, i;
	p11_obj kek;
	int rc;

	if ((rc = storage_kek(d, 0, KS_USE_PROTECT, &kv, &kek, msg, cap)) != 0)
		return rc;
	buf_reset(blob);
	if ((rc = buf_put(blob, blob_magic, 4)) != 0 ||
	    (rc = buf_put_u8(blob, BLOB_WRAPPED)) != 0 ||
	    (rc = buf_put_u8(blob, (uint8_t)alg)) != 0 ||
	    (rc = buf_put_u8(blob, (uint8_t)n)) != 0 ||
	    (rc = buf_put_str(blob, d->cfg.storage_kek)) != 0 ||
	    (rc = buf_put_u32(blob, kv->v)) != 0 ||
	    (rc = buf_put_u8(blob, KMS_WRAP_AES_KW)) != 0)
		return rc;
	for (i = 0; i < n; i++) {
		wl = sizeof(w);
		if ((rc = p11_wrap(d->p, P11_WRAP_AES_KW, kek, m[i].obj, w,
		    &wl)) != 0) {
			snprintf(msg, cap, "wrap under the storage KEK failed: %s",
			    p11_last_error());
			return rc;
		}
		/* RFC 3394 adds 8 bytes: this is where a key whose length does
		 * not match Alg shows (the token does not report it). */
		if (wl != kms_alg_keylen(alg) + 8) {
			snprintf(msg, cap, "encryptedKey[%zu] holds a %zu-byte key, "
			    "Alg says %zu", i, wl - 8, kms_alg_keylen(alg));
			return ERR_INVAL;
		}
		if ((rc = buf_put_u8(blob, (uint8_t)m[i].usage)) != 0 ||
		    (rc = buf_put_lv16(blob, w, wl)) != 0 ||
		    (rc = buf_put(blob, m[i].kcv, 3)) != 0 ||
		    (rc = buf_put(blob, m[i].kcv_cmac, 5)) != 0)
			return rc;
	}
	return 0;
}

/* A member's usage: ENC, MAC or DEK, each at most once in a set (seen
 * holds the ones met so far). */
static int
member_usage_ok(int usage, unsigned *seen)
{
	if (usage < KMS_USE_ENC || usage > KMS_USE_DEK ||
	    (*seen & (1u << usage)))
		return 0;
	*seen |= 1u << usage;
	return 1;
}

static const int set_usages[3] = { KMS_USE_ENC, KMS_USE_MAC, KMS_USE_DEK };

static void
master_label(char *out, size_t cap, const char *master, int usage)
{
	snprintf(out, cap, "%s/%s", master, kms_usage_name(usage));
}

int
keyset_generate(struct kmsd *d, int alg, const char *master,
    const uint8_t *div, size_t divlen, struct buf *blob, struct member out[3],
    char *msg, size_t cap)
{
	struct p11_keyspec s;
	struct ks_version *mv[3];
	char lab[KS_LABEL_MAX + 8];
	p11_obj mo[3];
	size_t len = kms_alg_keylen(alg), i;
	int rc;

	memset(out, 0, 3 * sizeof(*out));
	if (alg != KMS_ALG_AES128 && alg != KMS_ALG_AES192 &&
	    alg != KMS_ALG_AES256) {
		snprintf(msg, cap, "key sets are AES-128, AES-192 or AES-256");
		return ERR_INVAL;
	}
	if (master == NULL) {
		kcv_spec(&s, 1, (d->caps & P11_CAP_TRUSTED_WRAP) != 0);
		for (i = 0; i < 3; i++) {
			out[i].usage = set_usages[i];
			if ((rc = p11_aes_generate(d->p, len, &s, &out[i].obj)) != 0 ||
			    (rc = member_kcvs(d, &out[i])) != 0) {
				snprintf(msg, cap, "key generation failed: %s",
				    p11_last_error());
				goto out;
			}
		}
		rc = wrap_blob(d, alg, out, 3, blob, msg, cap);
		goto out;
	}

	/* Diversified: key_i = AES-ECB(master_i, div). The blob records the
	 * masters and div; the keys are derived again at every open. */
	if (divlen != 16) {
		snprintf(msg, cap, "diversification data must be 16 bytes");
		return ERR_INVAL;
	}
	if (len != 16) {
		snprintf(msg, cap, "diversified key sets are AES-128 (one "
		    "ECB block of diversification data)");
		return ERR_INVAL;
	}
	kcv_spec(&s, 0, 0);
	for (i = 0; i < 3; i++) {
		out[i].usage = set_usages[i];
		master_label(lab, sizeof(lab), master, set_usages[i]);
		if ((rc = token_key(d, lab, 0, KS_MASTER, KS_USE_PROTECT, NULL,
		    &mv[i], &mo[i], msg, cap)) != 0)
			goto out;
		if ((rc = p11_derive_ecb(d->p, mo[i], div, 16, &s, &out[i].obj)) != 0 ||
		    (rc = member_kcvs(d, &out[i])) != 0) {
			snprintf(msg, cap, "derivation from '%s' failed: %s", lab,
			    p11_last_error());
			goto out;
		}
	}
	buf_reset(blob);
	if ((rc = buf_put(blob, blob_magic, 4)) != 0 ||
	    (rc = buf_put_u8(blob, BLOB_DERIVED)) != 0 ||
	    (rc = buf_put_u8(blob, (uint8_t)alg)) != 0 ||
	    (rc = buf_put_u8(blob, 3)) != 0 ||
	    (rc = buf_put_lv16(blob, div, divlen)) != 0)
		goto out;
	for (i = 0; i < 3; i++) {
		master_label(lab, sizeof(lab), master, set_usages[i]);
		if ((rc = buf_put_u8(blob, (uint8_t)out[i].usage)) != 0 ||
		    (rc = buf_put_str(blob, lab)) != 0 ||
		    (rc = buf_put_u32(blob, mv[i]->v)) != 0 ||
		    (rc = buf_put(blob, out[i].kcv, 3)) != 0 ||
		    (rc = buf_put(blob, out[i].kcv_cmac, 5)) != 0)
			goto out;
	}
out:
	destroy_members(d, out, 3);
	if (rc != 0)
		buf_reset(blob);
	return rc;
}

int
keyset_import(struct kmsd *d, const char *kek, int mech, int alg,
    int kcv_method, const struct wrapped_in *in, size_t n, struct buf *blob,
    struct member out[], char *msg, size_t cap)
{
	struct p11_keyspec s;
	struct ks_key *kk;
	p11_obj ko;
	size_t len = kms_alg_keylen(alg), i;
	unsigned seen = 0;
	int cls, rc;

	memset(out, 0, n * sizeof(*out));
	buf_reset(blob);
	if (alg != KMS_ALG_AES128 && alg != KMS_ALG_AES192 &&
	    alg != KMS_ALG_AES256) {
		snprintf(msg, cap, "unknown or unsupported Alg");
		return ERR_INVAL;
	}
	if (n == 0 || n > KMS_KEYSET_MAX) {
		snprintf(msg, cap, "a key set has 1 to %d keys", KMS_KEYSET_MAX);
		return ERR_INVAL;
	}
	switch (mech) {
	case KMS_WRAP_AES_KW:
	case KMS_WRAP_AES_KWP:
		cls = KS_TRANSPORT_KEK;
		break;
	case KMS_WRAP_RSA_OAEP_SHA1:
	case KMS_WRAP_RSA_OAEP_SHA256:
		cls = KS_TRANSPORT_RSA;
		break;
	default:
		snprintf(msg, cap, "unknown wrap mechanism %d", mech);
		return ERR_INVAL;
	}
	if (kcv_method != KMS_KCV_GP && kcv_method != KMS_KCV_CMAC) {
		snprintf(msg, cap, "unknown KCV method %d", kcv_method);
		return ERR_INVAL;
	}
	/* Unwrapping stays possible with a deactivated transport key. */
	if ((rc = token_key(d, kek, 0, cls, KS_USE_PROCESS, &kk, NULL, &ko, msg,
	    cap)) != 0)
		return rc;
	kcv_spec(&s, 1, (d->caps & P11_CAP_TRUSTED_WRAP) != 0);
	for (i = 0; i < n; i++) {
		const uint8_t *got;
		size_t want = kcv_method == KMS_KCV_GP ? 3 : 5;

		out[i].usage = in[i].usage;
		if (!member_usage_ok(in[i].usage, &seen)) {
			snprintf(msg, cap, "key %zu: bad or repeated usage", i);
			rc = ERR_INVAL;
			goto out;
		}
		if ((rc = p11_unwrap(d->p, mech, ko, in[i].w, in[i].wlen, CKK_AES,
		    len, &s, &out[i].obj)) != 0) {
			snprintf(msg, cap, "encryptedKey[%zu] does not unwrap under "
			    "'%s' (%s)", i, kek, p11_last_error());
			if (rc != ERR_NOMEM && rc != ERR_P11_DEVICE)
				rc = ERR_UNWRAP;
			goto out;
		}
		if ((rc = member_kcvs(d, &out[i])) != 0)
			goto out;
		got = kcv_method == KMS_KCV_GP ? out[i].kcv : out[i].kcv_cmac;
		if (in[i].kcvlen != want || !ct_equal(got, in[i].kcv, want)) {
			snprintf(msg, cap, "checkValue[%zu] does not match the key",
			    i);
			rc = ERR_KCV;
			goto out;
		}
	}
	rc = wrap_blob(d, alg, out, n, blob, msg, cap);
out:
	destroy_members(d, out, n);
	if (rc != 0)
		buf_reset(blob);
	return rc;
}

/* ---- parsing ---- */

int
keyset_peek(const uint8_t *blob, size_t n, struct blob_head *h)
{
	struct rd r;
	const uint8_t *p;
	uint8_t type, alg, cnt;
	size_t l;
	int rc;

	memset(h, 0, sizeof(*h));
	rd_init(&r, blob, n);
	if ((rc = rd_bytes(&r, 4, &p)) != 0 || memcmp(p, blob_magic, 4) != 0 ||
	    (rc = rd_u8(&r, &type)) != 0 || (rc = rd_u8(&r, &alg)) != 0 ||
	    (rc = rd_u8(&r, &cnt)) != 0)
		return ERR_BLOB;
	if ((type != BLOB_WRAPPED && type != BLOB_DERIVED) || cnt == 0 ||
	    cnt > KMS_KEYSET_MAX || kms_alg_keylen(alg) == 0 ||
	    alg == KMS_ALG_DES3)
		return ERR_BLOB;
	h->type = type;
	h->alg = alg;
	h->n = cnt;
	if (type == BLOB_WRAPPED) {
		if (rd_str(&r, h->key, sizeof(h->key)) != 0 ||
		    rd_u32(&r, &h->version) != 0)
			return ERR_BLOB;
	} else {
		uint8_t u;

		if (rd_lv16(&r, &p, &l) != 0 || rd_u8(&r, &u) != 0 ||
		    rd_str(&r, h->key, sizeof(h->key)) != 0 ||
		    rd_u32(&r, &h->version) != 0)
			return ERR_BLOB;
	}
	return 0;
}

int
keyset_open(struct kmsd *d, const uint8_t *blob, size_t n, unsigned flags,
    struct member out[KMS_KEYSET_MAX], size_t *nout, int *alg, char *msg,
    size_t cap)
{
	struct blob_head h;
	struct p11_keyspec s;
	struct rd r;
	const uint8_t *p, *w, *div = NULL;
	size_t wl, divlen = 0, i;
	uint8_t mech, usage;
	p11_obj kek = 0, mo;
	char lab[KS_LABEL_MAX];
	uint32_t mver;
	unsigned seen = 0;
	int rc;

	*nout = 0;
	memset(out, 0, KMS_KEYSET_MAX * sizeof(*out));
	if ((rc = keyset_peek(blob, n, &h)) != 0) {
		snprintf(msg, cap, "not a key-set blob");
		return rc;
	}
	rd_init(&r, blob, n);
	if (rd_bytes(&r, 7, &p) != 0)
		return ERR_BLOB;
	if (h.type == BLOB_WRAPPED) {
		if (rd_str(&r, lab, sizeof(lab)) != 0 || rd_u32(&r, &mver) != 0 ||
		    rd_u8(&r, &mech) != 0 || mech != KMS_WRAP_AES_KW)
			return ERR_BLOB;
		if (strcmp(lab, d->cfg.storage_kek) != 0) {
			snprintf(msg, cap, "blob wrapped under '%s', not the storage "
			    "KEK", lab);
			return ERR_BLOB;
		}
		if ((rc = storage_kek(d, h.version, KS_USE_PROCESS, NULL, &kek, msg,
		    cap)) != 0)
			return rc;
	} else {
		if (rd_lv16(&r, &div, &divlen) != 0 || divlen != 16)
			return ERR_BLOB;
	}
	for (i = 0; i < h.n; i++) {
		if (rd_u8(&r, &usage) != 0 || !member_usage_ok(usage, &seen)) {
			rc = ERR_BLOB;
			goto fail;
		}
		out[i].usage = usage;
		keyset_member_spec(usage, flags, &s);
		if (h.type == BLOB_WRAPPED) {
			if (rd_lv16(&r, &w, &wl) != 0) {
				rc = ERR_BLOB;
				goto fail;
			}
			rc = p11_unwrap(d->p, P11_WRAP_AES_KW, kek, w, wl, CKK_AES,
			    kms_alg_keylen(h.alg), &s, &out[i].obj);
			if (rc != 0) {
				snprintf(msg, cap, "blob member %zu does not unwrap "
				    "under the storage KEK v%u (%s)", i, h.version,
				    p11_last_error());
				if (rc == ERR_UNWRAP || rc == ERR_INVAL)
					rc = ERR_BLOB;
				goto fail;
			}
		} else {
			if (rd_str(&r, lab, sizeof(lab)) != 0 ||
			    rd_u32(&r, &mver) != 0) {
				rc = ERR_BLOB;
				goto fail;
			}
			if ((rc = token_key(d, lab, mver, KS_MASTER, KS_USE_PROCESS,
			    NULL, NULL, &mo, msg, cap)) != 0)
				goto fail;
			if ((rc = p11_derive_ecb(d->p, mo, div, 16, &s,
			    &out[i].obj)) != 0) {
				snprintf(msg, cap, "derivation from '%s' failed: %s",
				    lab, p11_last_error());
				goto fail;
			}
		}
		if (rd_bytes(&r, 3, &p) != 0) {
			rc = ERR_BLOB;
			goto fail;
		}
		memcpy(out[i].kcv, p, 3);
		if (rd_bytes(&r, 5, &p) != 0) {
			rc = ERR_BLOB;
			goto fail;
		}
		memcpy(out[i].kcv_cmac, p, 5);
		(*nout)++;
	}
	if (rd_end(&r) != 0) {
		rc = ERR_BLOB;
		goto fail;
	}
	*alg = h.alg;
	return 0;
fail:
	if (msg[0] == '\0')
		snprintf(msg, cap, "key-set blob is damaged");
	destroy_members(d, out, KMS_KEYSET_MAX);
	*nout = 0;
	return rc;
}

int
keyset_rewrap(struct kmsd *d, const uint8_t *blob, size_t n, struct buf *out,
    int *changed, char *msg, size_t cap)
{
	struct member m[KMS_KEYSET_MAX];
	struct blob_head h;
	struct ks_version *cur;
	struct p11_keyspec s;
	struct member chk;
	struct rd r;
	const uint8_t *p, *w;
	size_t wl, i;
	uint8_t mech, usage;
	char lab[KS_LABEL_MAX];
	uint32_t ver;
	unsigned seen = 0;
	p11_obj kek, ck;
	int rc;

	*changed = 0;
	buf_reset(out);
	memset(m, 0, sizeof(m));
	if ((rc = keyset_peek(blob, n, &h)) != 0) {
		snprintf(msg, cap, "not a key-set blob");
		return rc;
	}
	if (h.type != BLOB_WRAPPED)
		return 0;
	if ((rc = storage_kek(d, 0, KS_USE_PROTECT, &cur, &ck, msg, cap)) != 0)
		return rc;
	if (h.version == cur->v)
		return 0;
	rd_init(&r, blob, n);
	if (rd_bytes(&r, 7, &p) != 0 || rd_str(&r, lab, sizeof(lab)) != 0 ||
	    rd_u32(&r, &ver) != 0 || rd_u8(&r, &mech) != 0 ||
	    mech != KMS_WRAP_AES_KW || strcmp(lab, d->cfg.storage_kek) != 0)
		return ERR_BLOB;
	if ((rc = storage_kek(d, ver, KS_USE_PROCESS, NULL, &kek, msg, cap)) != 0)
		return rc;
	kcv_spec(&s, 1, (d->caps & P11_CAP_TRUSTED_WRAP) != 0);
	for (i = 0; i < h.n; i++) {
		/* The same member checks as keyset_open: a usage out of range
		 * or given twice is never carried into a new blob. */
		if (rd_u8(&r, &usage) != 0 || !member_usage_ok(usage, &seen) ||
		    rd_lv16(&r, &w, &wl) != 0) {
			snprintf(msg, cap, "member %zu: bad usage or length", i);
			rc = ERR_BLOB;
			goto out;
		}
		m[i].usage = usage;
		if ((rc = p11_unwrap(d->p, P11_WRAP_AES_KW, kek, w, wl, CKK_AES,
		    kms_alg_keylen(h.alg), &s, &m[i].obj)) != 0) {
			snprintf(msg, cap, "member %zu does not unwrap under the "
			    "storage KEK v%u", i, ver);
			rc = ERR_BLOB;
			goto out;
		}
		chk = m[i];
		if ((rc = member_kcvs(d, &chk)) != 0)
			goto out;
		if (rd_bytes(&r, 3, &p) != 0 || !ct_equal(p, chk.kcv, 3) ||
		    rd_bytes(&r, 5, &p) != 0 || !ct_equal(p, chk.kcv_cmac, 5)) {
			snprintf(msg, cap, "member %zu does not match its recorded KCV",
			    i);
			rc = ERR_KCV;
			goto out;
		}
		memcpy(m[i].kcv, chk.kcv, 3);
		memcpy(m[i].kcv_cmac, chk.kcv_cmac, 5);
	}
	if (rd_end(&r) != 0) {
		rc = ERR_BLOB;
		goto out;
	}
	if ((rc = wrap_blob(d, h.alg, m, h.n, out, msg, cap)) == 0)
		*changed = 1;
out:
	destroy_members(d, m, KMS_KEYSET_MAX);
	if (rc != 0)
		buf_reset(out);
	return rc;
}
