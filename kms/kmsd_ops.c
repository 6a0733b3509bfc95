/*
 * kmsd_ops.c - kmsd's dispatch table and one handler per operation. Each
 * handler parses its body exactly (trailing bytes refused), resolves keys,
 * asks the policy, then acts. No handler ever returns secret key bytes.
 * Runs in kmsd; trusts nothing in the request.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "kms/kdf.h"
#include "kms/kmsd.h"
#include "kms/shamir.h"

#define ROLES_ALL ((1u << ROLE_TSM) | (1u << ROLE_CUSTODIAN) | (1u << ROLE_AUDITOR))
#define R_TSM (1u << ROLE_TSM)
#define R_CUS (1u << ROLE_CUSTODIAN)
#define R_AUD (1u << ROLE_AUDITOR)
#define MAX_RANDOM 4096

/* ---- helpers ---- */

static int
bad_request(struct req *rq, int rc, const char *what)
{
	snprintf(rq->msg, sizeof(rq->msg), "malformed %s request: %s (%s)",
	    kms_op_name(rq->h->type), what, err_str(rc));
	return rc == ERR_TRAILING || rc == ERR_TRUNC || rc == ERR_TOOBIG ||
	    rc == ERR_INVAL ? rc : ERR_PROTO;
}

/* Every request must be consumed exactly. */
static int
end_of_body(struct req *rq)
{
	int rc = rd_end(&rq->body);

	if (rc != 0)
		return bad_request(rq, rc, "trailing bytes after the last field");
	return 0;
}

static const char *
usage_param(int usage)
{
	switch (usage) {
	case KMS_USE_ENC: return "enc";
	case KMS_USE_MAC: return "mac";
	case KMS_USE_DEK: return "dek";
	case H_SENC: return "senc";
	case H_SMAC: return "smac";
	case H_SRMAC: return "srmac";
	}
	return "none";
}

/*
 * The policy decision. A denial is audited here; an allowed request is
 * audited once it has run, with its outcome (serve_frame).
 */
static int
authorize(struct req *rq, const char *op, int cls,
    const struct policy_param *pp, size_t np)
{
	struct policy_caller pc = { (uint32_t)rq->c->uid, (uint32_t)rq->c->gid,
	    rq->c->role };
	struct policy_request pr = { op, cls == KS_NONE ? NULL : ks_class_name(cls),
	    pp, np };
	struct policy_decision dec = policy_check(rq->d->pol, &pc, &pr);

	if (dec.allow)
		return 0;
	if (dec.line)
		snprintf(rq->msg, sizeof(rq->msg), "policy denies %s on a %s key "
		    "for role %s (rule at line %u)", op, pr.key_class ?
		    pr.key_class : "(no)", policy_role_name(rq->c->role), dec.line);
	else
		snprintf(rq->msg, sizeof(rq->msg), "policy denies %s on a %s key "
		    "for role %s (no rule allows it)", op, pr.key_class ?
		    pr.key_class : "(no)", policy_role_name(rq->c->role));
	(void)kmsd_audit(rq, op, rq->key, "deny", rq->msg, 0);
	rq->audited = 1;
	return ERR_DENIED;
}

/* An SCP03 derivation step (scp03.derive, scp03.kdf), decided as its own
 * request would be: on the key's class, with const and usage. */
static int
authorize_step(struct req *rq, const char *op, int cls, uint8_t konst,
    int usage)
{
	struct policy_param pp[2];
	char cs[4];

	snprintf(cs, sizeof(cs), "%02x", konst);
	pp[0] = (struct policy_param){ "const", cs };
	pp[1] = (struct policy_param){ "usage", usage_param(usage) };
	return authorize(rq, op, cls, pp, 2);
}

/* A handle of this connection; any other id is refused. */
static int
get_handle(struct req *rq, const struct kms_wref *ref, struct handle **out)
{
	struct handle *h = NULL;

	if (ref->kind != KMS_REF_HANDLE) {
		snprintf(rq->msg, sizeof(rq->msg), "%s needs a handle, not a label",
		    kms_op_name(rq->h->type));
		return ERR_KEYCLASS;
	}
	snprintf(rq->key, sizeof(rq->key), "h:%u", ref->handle);
	h = kmsd_handle_get(rq->c, ref->handle);
	if (h == NULL) {
		snprintf(rq->msg, sizeof(rq->msg), "handle %u is unknown or closed "
		    "(handles belong to the connection that opened them)",
		    ref->handle);
		return ERR_HANDLE;
	}
	h->last_used_ms = now_ms();
	h->uses++;
	*out = h;
	return 0;
}

/* A token key by label, with its state checked for `use`. */
static int
get_token_key(struct req *rq, const struct kms_wref *ref, int use,
    struct ks_key **kout, struct ks_version **vout, p11_obj *o)
{
	struct ks_key *k;
	struct ks_version *v;
	int rc;

	if (ref->kind != KMS_REF_LABEL) {
		snprintf(rq->msg, sizeof(rq->msg), "%s needs a token key label, not "
		    "a handle", kms_op_name(rq->h->type));
		return ERR_KEYCLASS;
	}
	snprintf(rq->key, sizeof(rq->key), "%s", ref->label);
	k = ks_find(&rq->d->ks, ref->label);
	if (k == NULL) {
		snprintf(rq->msg, sizeof(rq->msg), "no key labelled '%s'", ref->label);
		return ERR_NOKEY;
	}
	if ((rc = ks_version(k, ref->version, &v)) != 0) {
		snprintf(rq->msg, sizeof(rq->msg), "key '%s' has no version %u",
		    ref->label, ref->version);
		return rc;
	}
	snprintf(rq->key, sizeof(rq->key), "%s#%u", k->label, v->v);
	*kout = k;
	*vout = v;
	if (!ks_state_allows(v->state, use)) {
		snprintf(rq->msg, sizeof(rq->msg), "key '%s' v%u is %s", k->label,
		    v->v, kms_state_name(v->state));
		return ERR_KEYSTATE;
	}
	if (o == NULL)
		return 0;
	rc = ks_object_fast(&rq->d->ks, k, v, o);
	if (rc == ERR_HANDLE) {
		ks_forget(&rq->d->ks, k, v);
		rc = ks_object_fast(&rq->d->ks, k, v, o);
	}
	if (rc != 0)
		snprintf(rq->msg, sizeof(rq->msg), "key '%s' v%u is not in the token",
		    k->label, v->v);
	return rc;
}

/* Retries once with a fresh handle when a cached token handle went stale. */
#define TOKEN_OP(rq, k, v, o, rc, EXPR) do {				\
	rc = (EXPR);							\
	if (rc == ERR_HANDLE) {						\
		ks_forget(&(rq)->d->ks, (k), (v));			\
		if ((rc = ks_object_fast(&(rq)->d->ks, (k), (v), &(o))) == 0) \
			rc = (EXPR);					\
	}								\
} while (0)

static int
p11_msg(struct req *rq, int rc, const char *what)
{
	if (rc != 0 && rq->msg[0] == '\0')
		snprintf(rq->msg, sizeof(rq->msg), "%s failed: %s", what,
		    p11_last_error());
	return rc;
}

/* First use of a handle for an op is audited; repeats are counted only
 * (the count reaches the audit log when the handle closes). */
static void
first_use(struct req *rq, struct handle *h, int bit)
{
	if (h->audited & (1u << bit))
		rq->skip_audit = 1;
	else
		h->audited |= 1u << bit;
}

/* First use of a token key for an op on this connection; the 8 most
 * recent (op, key) pairs are remembered. */
static void
first_use_key(struct req *rq, const char *op, const char *key)
{
	struct conn *c = rq->c;
	char tag[200];
	unsigned i;

	/* A tag that does not fit is never remembered: audited each time. */
	if (snprintf(tag, sizeof(tag), "%s %s", op, key) >= (int)sizeof(tag))
		return;
	for (i = 0; i < c->naudited && i < ARRAY_LEN(c->audited); i++) {
		if (strcmp(c->audited[i], tag) == 0) {
			rq->skip_audit = 1;
			return;
		}
	}
	snprintf(c->audited[c->naudited % ARRAY_LEN(c->audited)],
	    sizeof(c->audited[0]), "%s", tag);
	c->naudited++;
}

/* Undoes the handles a failed request made (by id: the table may have
 * moved since they were made). */
static void
drop_handles(struct req *rq, const uint32_t *ids, size_t n)
{
	struct handle *h;
	size_t i;

	for (i = 0; i < n; i++)
		if ((h = kmsd_handle_get(rq->c, ids[i])) != NULL)
			kmsd_handle_free(rq->d, rq->c, h, NULL);
}

/* ---- hello, ping, status ---- */

static int
op_hello(struct req *rq)
{
	uint16_t lo, hi;
	char client[64], server[160];
	int rc;

	if ((rc = rd_u16(&rq->body, &lo)) != 0 ||
	    (rc = rd_u16(&rq->body, &hi)) != 0 ||
	    (rc = rd_str(&rq->body, client, sizeof(client))) != 0)
		return bad_request(rq, rc, "version range and client name");
	if ((rc = end_of_body(rq)) != 0)
		return rc;
	snprintf(rq->key, sizeof(rq->key), "client=%s", client);
	if (lo > KMS_PROTO_VERSION || hi < KMS_PROTO_VERSION) {
		snprintf(rq->msg, sizeof(rq->msg), "client speaks versions %u-%u, "
		    "kmsd speaks %u", lo, hi, KMS_PROTO_VERSION);
		return ERR_VERSION;
	}
	if (rq->c->hello) {
		snprintf(rq->msg, sizeof(rq->msg), "hello sent twice");
		return ERR_PROTO;
	}
	rq->c->hello = 1;
	snprintf(server, sizeof(server), "kmsd/%d token=%s", KMS_PROTO_VERSION,
	    p11_token_label(rq->d->p));
	if ((rc = buf_put_u16(rq->reply, KMS_PROTO_VERSION)) != 0 ||
	    (rc = buf_put_u8(rq->reply, (uint8_t)rq->c->role)) != 0 ||
	    (rc = buf_put_u8(rq->reply, (uint8_t)rq->d->sealed)) != 0 ||
	    (rc = buf_put_u32(rq->reply, KMS_MAX_FRAME)) != 0 ||
	    (rc = buf_put_str(rq->reply, server)) != 0)
		return rc;
	return 0;
}

static int
op_ping(struct req *rq)
{
	return end_of_body(rq);
}

static int
op_status(struct req *rq)
{
	struct conn *c;
	uint32_t nconn = 0, nhandles = 0;
	size_t i;
	int rc;

	if ((rc = end_of_body(rq)) != 0)
		return rc;
	for (c = rq->d->conns; c != NULL; c = c->next) {
		nconn++;
		for (i = 0; i < c->nh; i++)
			nhandles += c->h[i].id != 0;
	}
	if ((rc = buf_put_u8(rq->reply, (uint8_t)rq->d->sealed)) != 0 ||
	    (rc = buf_put_str(rq->reply, p11_token_label(rq->d->p))) != 0 ||
	    (rc = buf_put_str(rq->reply, p11_token_serial(rq->d->p))) != 0 ||
	    (rc = buf_put_u32(rq->reply, rq->d->caps)) != 0 ||
	    (rc = buf_put_u32(rq->reply, (uint32_t)rq->d->ks.n)) != 0 ||
	    (rc = buf_put_u64(rq->reply, audit_seq(rq->d->audit))) != 0 ||
	    (rc = buf_put_u32(rq->reply, nconn)) != 0 ||
	    (rc = buf_put_u32(rq->reply, nhandles)) != 0)
		return rc;
	return 0;
}

/* ---- random, key.info, kcv ---- */

static int
op_random(struct req *rq)
{
	struct policy_param pp[1];
	uint32_t n;
	char lens[16];
	int rc;

	if ((rc = rd_u32(&rq->body, &n)) != 0)
		return bad_request(rq, rc, "length");
	if ((rc = end_of_body(rq)) != 0)
		return rc;
	snprintf(lens, sizeof(lens), "%u", n);
	pp[0] = (struct policy_param){ "len", lens };
	if ((rc = authorize(rq, "random", KS_NONE, pp, 1)) != 0)
		return rc;
	if (n == 0 || n > MAX_RANDOM) {
		snprintf(rq->msg, sizeof(rq->msg), "random length must be 1-%d",
		    MAX_RANDOM);
		return ERR_INVAL;
	}
	if ((rc = buf_reserve(rq->reply, n)) != 0)
		return rc;
	if ((rc = p11_random(rq->d->p, rq->reply->p, n)) != 0)
		return p11_msg(rq, rc, "C_GenerateRandom");
	rq->reply->len = n;
	return 0;
}

static int
put_info(struct buf *b, const char *label, const char *cls, int alg,
    uint32_t version, int state, const uint8_t *kcv, size_t kcvlen,
    int64_t created)
{
	int rc;

	if ((rc = buf_put_str(b, label)) != 0 ||
	    (rc = buf_put_str(b, cls)) != 0 ||
	    (rc = buf_put_u8(b, (uint8_t)alg)) != 0 ||
	    (rc = buf_put_u32(b, version)) != 0 ||
	    (rc = buf_put_u8(b, (uint8_t)state)) != 0 ||
	    (rc = buf_put_lv16(b, kcv, kcvlen)) != 0 ||
	    (rc = buf_put_u64(b, (uint64_t)created)) != 0)
		return rc;
	return 0;
}

static int
op_key_info(struct req *rq)
{
	struct kms_wref ref;
	struct handle *h = NULL;
	struct ks_key *k;
	struct ks_version *v;
	int rc;

	if ((rc = kms_get_ref(&rq->body, &ref)) != 0)
		return bad_request(rq, rc, "key reference");
	if ((rc = end_of_body(rq)) != 0)
		return rc;
	if (ref.kind == KMS_REF_HANDLE) {
		if ((rc = get_handle(rq, &ref, &h)) != 0)
			return rc;
		if ((rc = authorize(rq, "key.info", h->cls, NULL, 0)) != 0)
			return rc;
		return put_info(rq->reply, rq->key, ks_class_name(h->cls), h->alg, 0,
		    KMS_ST_ACTIVE, h->kcv, h->cls == KS_KEYSET ? 3 : 0, 0);
	}
	if ((rc = get_token_key(rq, &ref, KS_USE_INFO, &k, &v, NULL)) != 0)
		return rc;
	if ((rc = authorize(rq, "key.info", k->cls, NULL, 0)) != 0)
		return rc;
	return put_info(rq->reply, k->label, ks_class_name(k->cls), k->alg, v->v,
	    v->state, v->kcv, v->kcvlen, v->created);
}

static int
op_kcv(struct req *rq)
{
	struct policy_param pp[1];
	struct kms_wref ref;
	struct handle *h = NULL;
	struct ks_key *k;
	struct ks_version *v;
	uint8_t method;
	int rc;

	if ((rc = kms_get_ref(&rq->body, &ref)) != 0 ||
	    (rc = rd_u8(&rq->body, &method)) != 0)
		return bad_request(rq, rc, "key reference and method");
	if ((rc = end_of_body(rq)) != 0)
		return rc;
	if (method != KMS_KCV_GP && method != KMS_KCV_CMAC) {
		snprintf(rq->msg, sizeof(rq->msg), "unknown KCV method %u", method);
		return ERR_INVAL;
	}
	pp[0] = (struct policy_param){ "method", method == KMS_KCV_GP ? "gp" :
	    "cmac" };
	if (ref.kind == KMS_REF_HANDLE) {
		if ((rc = get_handle(rq, &ref, &h)) != 0)
			return rc;
		if ((rc = authorize(rq, "kcv", h->cls, pp, 1)) != 0)
			return rc;
		if (h->cls != KS_KEYSET) {
			snprintf(rq->msg, sizeof(rq->msg), "check values are kept for "
			    "key-set members only");
			return ERR_KEYCLASS;
		}
		return method == KMS_KCV_GP ? buf_put_lv16(rq->reply, h->kcv, 3) :
		    buf_put_lv16(rq->reply, h->kcv_cmac, 5);
	}
	if ((rc = get_token_key(rq, &ref, KS_USE_INFO, &k, &v, NULL)) != 0)
		return rc;
	if ((rc = authorize(rq, "kcv", k->cls, pp, 1)) != 0)
		return rc;
	if (method != KMS_KCV_GP || v->kcvlen == 0) {
		snprintf(rq->msg, sizeof(rq->msg), "no %s check value recorded for "
		    "'%s'", method == KMS_KCV_GP ? "GP" : "CMAC", k->label);
		return ERR_NOTSUP;
	}
	return buf_put_lv16(rq->reply, v->kcv, v->kcvlen);
}

/* ---- key sets ---- */

static int
put_kcvs(struct buf *b, const struct member *m, size_t n, int method)
{
	size_t i;
	int rc;

	if ((rc = buf_put_u8(b, (uint8_t)n)) != 0)
		return rc;
	for (i = 0; i < n; i++) {
		if ((rc = buf_put_u8(b, (uint8_t)m[i].usage)) != 0)
			return rc;
		rc = method == KMS_KCV_CMAC ? buf_put_lv16(b, m[i].kcv_cmac, 5) :
		    buf_put_lv16(b, m[i].kcv, 3);
		if (rc != 0)
			return rc;
	}
	return 0;
}

static int
op_keyset_generate(struct req *rq)
{
	struct policy_param pp[3];
	struct member m[3];
	struct buf blob;
	uint8_t alg, method, source;
	const uint8_t *div = NULL;
	size_t divlen = 0;
	char master[KS_LABEL_MAX] = "";
	int rc;

	if ((rc = rd_u8(&rq->body, &alg)) != 0 ||
	    (rc = rd_u8(&rq->body, &method)) != 0 ||
	    (rc = rd_u8(&rq->body, &source)) != 0)
		return bad_request(rq, rc, "alg, method, source");
	if (source == KMS_KEYSET_DIVERSIFIED &&
	    ((rc = rd_str(&rq->body, master, sizeof(master))) != 0 ||
	    (rc = rd_lv16(&rq->body, &div, &divlen)) != 0))
		return bad_request(rq, rc, "master label and diversification data");
	if ((rc = end_of_body(rq)) != 0)
		return rc;
	if (source != KMS_KEYSET_RANDOM && source != KMS_KEYSET_DIVERSIFIED) {
		snprintf(rq->msg, sizeof(rq->msg), "unknown key-set source %u", source);
		return ERR_INVAL;
	}
	if (method != KMS_KCV_GP && method != KMS_KCV_CMAC) {
		snprintf(rq->msg, sizeof(rq->msg), "unknown KCV method %u", method);
		return ERR_INVAL;
	}
	snprintf(rq->key, sizeof(rq->key), "%s", source == KMS_KEYSET_RANDOM ?
	    rq->d->cfg.storage_kek : master);
	pp[0] = (struct policy_param){ "alg", kms_alg_name(alg) };
	pp[1] = (struct policy_param){ "source", source == KMS_KEYSET_RANDOM ?
	    "random" : "diversified" };
	pp[2] = (struct policy_param){ "method", method == KMS_KCV_GP ? "gp" :
	    "cmac" };
	if ((rc = authorize(rq, "keyset.generate", source == KMS_KEYSET_RANDOM ?
	    KS_STORAGE_KEK : KS_MASTER, pp, 3)) != 0)
		return rc;
	buf_init(&blob);
	rc = keyset_generate(rq->d, alg, source == KMS_KEYSET_RANDOM ? NULL :
	    master, div, divlen, &blob, m, rq->msg, sizeof(rq->msg));
	if (rc == 0 && (rc = buf_put_lv32(rq->reply, blob.p, blob.len)) == 0)
		rc = put_kcvs(rq->reply, m, 3, method);
	buf_free(&blob);
	return rc;
}

/* keyset.import's fields, as read from a request body. */
struct import_args {
	char              kek[KS_LABEL_MAX];
	uint8_t           mech, alg, method, n;
	struct wrapped_in in[KMS_KEYSET_MAX];
};

static int
import_read(struct req *rq, struct import_args *a)
{
	uint8_t i;
	int rc;

	if ((rc = rd_str(&rq->body, a->kek, sizeof(a->kek))) != 0 ||
	    (rc = rd_u8(&rq->body, &a->mech)) != 0 ||
	    (rc = rd_u8(&rq->body, &a->alg)) != 0 ||
	    (rc = rd_u8(&rq->body, &a->method)) != 0 ||
	    (rc = rd_u8(&rq->body, &a->n)) != 0)
		return bad_request(rq, rc, "kek, mech, alg, method, count");
	if (a->n == 0 || a->n > KMS_KEYSET_MAX) {
		snprintf(rq->msg, sizeof(rq->msg), "a key set has 1 to %d keys",
		    KMS_KEYSET_MAX);
		return ERR_INVAL;
	}
	for (i = 0; i < a->n; i++) {
		if ((rc = rd_u8(&rq->body, &a->in[i].usage)) != 0 ||
		    (rc = rd_lv16(&rq->body, &a->in[i].w,
		    &a->in[i].wlen)) != 0 ||
		    (rc = rd_lv16(&rq->body, &a->in[i].kcv,
		    &a->in[i].kcvlen)) != 0)
			return bad_request(rq, rc, "wrapped key list");
	}
	return 0;
}

/* Authorizes and runs an import; the blob and KCVs go to the reply. */
static int
import_run(struct req *rq, const struct import_args *a)
{
	struct policy_param pp[3];
	struct member m[KMS_KEYSET_MAX];
	struct ks_key *k;
	struct buf blob;
	int rc;

	snprintf(rq->key, sizeof(rq->key), "%s", a->kek);
	k = ks_find(&rq->d->ks, a->kek);
	pp[0] = (struct policy_param){ "mech", kms_wrap_name(a->mech) };
	pp[1] = (struct policy_param){ "alg", kms_alg_name(a->alg) };
	pp[2] = (struct policy_param){ "method", a->method == KMS_KCV_GP ? "gp" :
	    "cmac" };
	if ((rc = authorize(rq, "keyset.import", k ? k->cls : KS_TRANSPORT_KEK,
	    pp, 3)) != 0)
		return rc;
	buf_init(&blob);
	rc = keyset_import(rq->d, a->kek, a->mech, a->alg, a->method, a->in,
	    a->n, &blob, m, rq->msg, sizeof(rq->msg));
	if (rc == 0 && (rc = buf_put_lv32(rq->reply, blob.p, blob.len)) == 0)
		rc = put_kcvs(rq->reply, m, a->n, a->method);
	buf_free(&blob);
	return rc;
}

static int
op_keyset_import(struct req *rq)
{
	struct import_args a;
	int rc;

	if ((rc = import_read(rq, &a)) != 0 || (rc = end_of_body(rq)) != 0)
		return rc;
	return import_run(rq, &a);
}

static int
op_keyset_open(struct req *rq)
{
	struct policy_param pp[2];
	struct member m[KMS_KEYSET_MAX];
	struct blob_head bh;
	const uint8_t *blob;
	uint32_t ids[KMS_KEYSET_MAX];
	size_t bl, n = 0, i, made = 0;
	uint8_t flags;
	int alg = 0, rc;

	if ((rc = rd_lv32(&rq->body, KMS_MAX_FRAME, &blob, &bl)) != 0 ||
	    (rc = rd_u8(&rq->body, &flags)) != 0)
		return bad_request(rq, rc, "blob and flags");
	if ((rc = end_of_body(rq)) != 0)
		return rc;
	if ((rc = keyset_peek(blob, bl, &bh)) != 0) {
		snprintf(rq->msg, sizeof(rq->msg), "not a key-set blob");
		return rc;
	}
	snprintf(rq->key, sizeof(rq->key), "%s#%u", bh.key, bh.version);
	pp[0] = (struct policy_param){ "exportable",
	    (flags & KMS_OPEN_EXPORTABLE) ? "1" : "0" };
	pp[1] = (struct policy_param){ "master",
	    (flags & KMS_OPEN_MASTER) ? "1" : "0" };
	if ((rc = authorize(rq, "keyset.open", bh.type == BLOB_WRAPPED ?
	    KS_STORAGE_KEK : KS_MASTER, pp, 2)) != 0)
		return rc;
	if ((flags & ~(KMS_OPEN_EXPORTABLE | KMS_OPEN_MASTER)) ||
	    (flags == (KMS_OPEN_EXPORTABLE | KMS_OPEN_MASTER))) {
		snprintf(rq->msg, sizeof(rq->msg), "unknown or conflicting flags "
		    "0x%02x", flags);
		return ERR_INVAL;
	}
	if ((rc = keyset_open(rq->d, blob, bl, flags, m, &n, &alg, rq->msg,
	    sizeof(rq->msg))) != 0)
		return rc;
	if ((rc = buf_put_u8(rq->reply, (uint8_t)alg)) != 0 ||
	    (rc = buf_put_u8(rq->reply, (uint8_t)n)) != 0)
		goto fail;
	for (i = 0; i < n; i++) {
		struct handle *h = NULL;

		if ((rc = kmsd_handle_new(rq->c, &h)) != 0)
			goto fail;
		ids[made++] = h->id;
		h->obj = m[i].obj;
		m[i].obj = 0;
		h->cls = KS_KEYSET;
		h->usage = m[i].usage;
		h->alg = alg;
		h->exportable = (flags & KMS_OPEN_EXPORTABLE) != 0;
		h->derive_only = (flags & KMS_OPEN_MASTER) != 0;
		memcpy(h->kcv, m[i].kcv, 3);
		memcpy(h->kcv_cmac, m[i].kcv_cmac, 5);
		if ((rc = buf_put_u8(rq->reply, (uint8_t)h->usage)) != 0 ||
		    (rc = buf_put_u32(rq->reply, h->id)) != 0 ||
		    (rc = buf_put_lv16(rq->reply, h->kcv, 3)) != 0)
			goto fail;
	}
	return 0;
fail:
	/* The reply is dropped: handles made so far would be unknown to the
	 * client and live on until the connection ends. */
	drop_handles(rq, ids, made);
	for (i = 0; i < n; i++)
		if (m[i].obj != 0 && p11_destroy(rq->d->p, m[i].obj) != 0)
			log_msg(LOG_WARN, "event=member_destroy_failed");
	return rc;
}

/* 1..KMS_CLOSE_MAX handles; all are checked before any is closed, and
 * one audit record lists them with their use counts. */
static int
op_handle_close(struct req *rq)
{
	struct kms_wref ref = { .kind = KMS_REF_HANDLE };
	struct handle *h = NULL;
	uint32_t ids[KMS_CLOSE_MAX];
	char detail[KMS_CLOSE_MAX * 32 + 32];
	size_t n = 0, i, off;
	int rc;

	do {
		if (n == KMS_CLOSE_MAX) {
			snprintf(rq->msg, sizeof(rq->msg), "at most %d handles per "
			    "handle.close", KMS_CLOSE_MAX);
			return ERR_INVAL;
		}
		if ((rc = rd_u32(&rq->body, &ref.handle)) != 0)
			return bad_request(rq, rc, "handle");
		if ((rc = get_handle(rq, &ref, &h)) != 0)
			return rc;
		if ((rc = authorize(rq, "handle.close", h->cls, NULL, 0)) != 0)
			return rc;
		ids[n++] = ref.handle;
	} while (rd_left(&rq->body) > 0);
	off = (size_t)snprintf(detail, sizeof(detail), "closed by client:");
	for (i = 0; i < n; i++) {
		/* A handle named twice is closed once. */
		if ((h = kmsd_handle_get(rq->c, ids[i])) == NULL)
			continue;
		if (off < sizeof(detail))
			off += (size_t)snprintf(detail + off, sizeof(detail) - off,
			    " h:%u uses=%llu", ids[i], (unsigned long long)h->uses);
		kmsd_handle_free(rq->d, rq->c, h, NULL);
	}
	snprintf(rq->key, sizeof(rq->key), "h:%u", ids[0]);
	(void)kmsd_audit(rq, "handle.close", rq->key, "ok", detail, 0);
	rq->audited = 1;
	return 0;
}

/* ---- SCP03 ---- */

struct prf_ctx {
	struct p11 *p;
	p11_obj     key;
};

static int
prf_cmac(void *ctx, const uint8_t *in, size_t n, uint8_t out[16])
{
	struct prf_ctx *c = ctx;

	return p11_cmac(c->p, c->key, in, n, out);
}

/* The GP SCP03 KDF (gp-reference §1.3) with the CMAC computed in the token. */
static int
scp03_kdf_bytes(struct kmsd *d, p11_obj key, uint8_t konst,
    const uint8_t *ctx, size_t clen, uint16_t lbits, uint8_t *out)
{
	struct prf_ctx pc = { d->p, key };

	return kdf_scp03(prf_cmac, &pc, konst, ctx, clen, lbits, out);
}

/*
 * A session key from a static key, as a new handle of this connection
 * (gp-reference §1.3). The caller has checked base, konst, context and L.
 * The base pointer must not be used after: the handle table may move.
 */
static int
derive_session(struct req *rq, struct handle *base, uint8_t konst,
    const uint8_t *ctx, size_t clen, uint32_t *id)
{
	struct p11_keyspec s;
	struct handle *nh;
	size_t klen = kms_alg_keylen(base->alg);
	uint16_t lbits = (uint16_t)(klen * 8);
	uint8_t *kb;
	p11_obj o = 0;
	int usage, alg = base->alg, rc;

	usage = konst == 0x04 ? H_SENC : konst == 0x06 ? H_SMAC : H_SRMAC;
	memset(&s, 0, sizeof(s));
	s.usage = usage == H_SENC ? (P11_ENCRYPT | P11_DECRYPT) : P11_SIGN;
	if (rq->d->caps & P11_CAP_SP800_108) {
		rc = p11_derive_scp03(rq->d->p, base->obj, konst, ctx, clen, lbits, &s,
		    &o);
	} else {
		/* The token has no SP 800-108 mechanism: the KDF output is
		 * computed here from in-token CMACs and imported as a session
		 * object; the bytes live in locked memory and are wiped. */
		kb = secmem_alloc(32);
		if (kb == NULL)
			return ERR_NOMEM;
		rc = scp03_kdf_bytes(rq->d, base->obj, konst, ctx, clen, lbits, kb);
		if (rc == 0)
			rc = p11_secret_import(rq->d->p, CKK_AES, kb, klen, &s, &o);
		secmem_free(kb, 32);
	}
	if (rc != 0)
		return p11_msg(rq, rc, "session key derivation");
	if ((rc = kmsd_handle_new(rq->c, &nh)) != 0) {
		if (p11_destroy(rq->d->p, o) != 0)
			log_msg(LOG_WARN, "event=session_key_destroy_failed");
		return rc;
	}
	nh->obj = o;
	nh->cls = KS_SESSION;
	nh->usage = usage;
	nh->alg = alg;
	*id = nh->id;
	return 0;
}

/* A static key fit for a derivation constant; msg set otherwise. */
static int
static_key_for(struct req *rq, const struct handle *h, int want, uint8_t konst)
{
	if (h->cls != KS_KEYSET || h->usage != want || h->derive_only) {
		snprintf(rq->msg, sizeof(rq->msg), "constant %02x needs the static "
		    "%s key (master-set members only derive per-SE keys)", konst,
		    kms_usage_name(want));
		return ERR_KEYCLASS;
	}
	return 0;
}

static int
op_scp03_derive(struct req *rq)
{
	struct kms_wref ref;
	struct handle *base = NULL;
	const uint8_t *ctx;
	size_t clen, klen;
	uint8_t konst;
	uint16_t lbits;
	uint32_t id;
	int want, rc;

	if ((rc = kms_get_ref(&rq->body, &ref)) != 0 ||
	    (rc = rd_u8(&rq->body, &konst)) != 0 ||
	    (rc = rd_lv16(&rq->body, &ctx, &clen)) != 0 ||
	    (rc = rd_u16(&rq->body, &lbits)) != 0)
		return bad_request(rq, rc, "base, const, context, L");
	if ((rc = end_of_body(rq)) != 0)
		return rc;
	if ((rc = get_handle(rq, &ref, &base)) != 0)
		return rc;
	if ((rc = authorize_step(rq, "scp03.derive", base->cls, konst,
	    base->usage)) != 0)
		return rc;
	/* Session keys only, from the right static key (gp-reference §1.3). */
	switch (konst) {
	case 0x04: want = KMS_USE_ENC; break;
	case 0x06:
	case 0x07: want = KMS_USE_MAC; break;
	default:
		snprintf(rq->msg, sizeof(rq->msg), "scp03.derive makes session keys "
		    "only (constants 04, 06, 07), not %02x", konst);
		return ERR_INVAL;
	}
	if ((rc = static_key_for(rq, base, want, konst)) != 0)
		return rc;
	klen = kms_alg_keylen(base->alg);
	if (lbits != klen * 8 || (clen != 16 && clen != 32)) {
		snprintf(rq->msg, sizeof(rq->msg), "L must be the key length in bits "
		    "(%zu) and the context 16 or 32 bytes", klen * 8);
		return ERR_INVAL;
	}
	if ((rc = derive_session(rq, base, konst, ctx, clen, &id)) != 0)
		return rc;
	return buf_put_u32(rq->reply, id);
}

/*
 * The opening of an SCP03 session in one round trip (what scp03.derive and
 * scp03.kdf do in six): the pseudo-random card challenge (when a challenge
 * context is given), S-MAC and, as asked, S-ENC and S-RMAC as handles, and
 * the card and host cryptograms (gp-reference §1.2-1.3). The caller compares
 * the challenge and the card cryptogram with the card's.
 */
static int
op_scp03_open(struct req *rq)
{
	struct policy_param pp[1];
	struct kms_wref eref, mref;
	struct handle *enc = NULL, *mac = NULL, *sm;
	const uint8_t *ctx, *chal;
	size_t clen, chlen;
	uint8_t flags, crypto[2][16], challenge[16];
	uint16_t cbits;
	uint32_t senc = 0, smac = 0, srmac = 0, made[3];
	p11_obj encobj;
	size_t nmade = 0;
	int rc;

	if ((rc = kms_get_ref(&rq->body, &eref)) != 0 ||
	    (rc = kms_get_ref(&rq->body, &mref)) != 0 ||
	    (rc = rd_u8(&rq->body, &flags)) != 0 ||
	    (rc = rd_lv16(&rq->body, &ctx, &clen)) != 0 ||
	    (rc = rd_u16(&rq->body, &cbits)) != 0 ||
	    (rc = rd_lv16(&rq->body, &chal, &chlen)) != 0)
		return bad_request(rq, rc, "ENC, MAC, flags, context, L, "
		    "challenge context");
	if ((rc = end_of_body(rq)) != 0)
		return rc;
	if ((rc = get_handle(rq, &eref, &enc)) != 0 ||
	    (rc = get_handle(rq, &mref, &mac)) != 0)
		return rc;
	pp[0] = (struct policy_param){ "usage", usage_param(enc->usage) };
	if ((rc = authorize(rq, "scp03.open", enc->cls, pp, 1)) != 0)
		return rc;
	if ((rc = static_key_for(rq, enc, KMS_USE_ENC, 0x04)) != 0 ||
	    (rc = static_key_for(rq, mac, KMS_USE_MAC, 0x06)) != 0)
		return rc;
	if (mac->alg != enc->alg || (clen != 16 && clen != 32) ||
	    (cbits != 64 && cbits != 128) || chlen > 64 ||
	    (flags & ~(SCP03_OPEN_SENC | SCP03_OPEN_SRMAC | SCP03_OPEN_HOST))) {
		snprintf(rq->msg, sizeof(rq->msg), "ENC and MAC of one key set, a "
		    "16- or 32-byte context, L 64 or 128, known flags");
		return ERR_INVAL;
	}
	/* and each step, as the requests it saves would be */
	if ((rc = authorize_step(rq, "scp03.derive", mac->cls, 0x06,
	    mac->usage)) != 0 || ((flags & SCP03_OPEN_SRMAC) &&
	    (rc = authorize_step(rq, "scp03.derive", mac->cls, 0x07,
	    mac->usage)) != 0) || ((flags & SCP03_OPEN_SENC) &&
	    (rc = authorize_step(rq, "scp03.derive", enc->cls, 0x04,
	    enc->usage)) != 0) || (chlen > 0 &&
	    (rc = authorize_step(rq, "scp03.kdf", enc->cls, 0x02,
	    enc->usage)) != 0) ||
	    (rc = authorize_step(rq, "scp03.kdf", KS_SESSION, 0x00,
	    H_SMAC)) != 0 || ((flags & SCP03_OPEN_HOST) &&
	    (rc = authorize_step(rq, "scp03.kdf", KS_SESSION, 0x01,
	    H_SMAC)) != 0))
		return rc;
	memset(challenge, 0, sizeof(challenge));
	memset(crypto, 0, sizeof(crypto));
	encobj = enc->obj;
	if (chlen > 0 && (rc = scp03_kdf_bytes(rq->d, encobj, 0x02, chal, chlen,
	    cbits, challenge)) != 0)
		return p11_msg(rq, rc, "card challenge");
	/* Handles are made last-to-first safe: enc/mac are re-fetched after
	 * each new handle, the table may have moved. */
	if ((rc = derive_session(rq, mac, 0x06, ctx, clen, &smac)) != 0)
		goto fail;
	made[nmade++] = smac;
	if ((flags & SCP03_OPEN_SRMAC) &&
	    ((mac = kmsd_handle_get(rq->c, mref.handle)) == NULL ||
	    (rc = derive_session(rq, mac, 0x07, ctx, clen, &srmac)) != 0))
		goto fail;
	if (srmac)
		made[nmade++] = srmac;
	if ((flags & SCP03_OPEN_SENC) &&
	    ((enc = kmsd_handle_get(rq->c, eref.handle)) == NULL ||
	    (rc = derive_session(rq, enc, 0x04, ctx, clen, &senc)) != 0))
		goto fail;
	if (senc)
		made[nmade++] = senc;
	sm = kmsd_handle_get(rq->c, smac);
	if (sm == NULL || (rc = scp03_kdf_bytes(rq->d, sm->obj, 0x00, ctx, clen,
	    cbits, crypto[0])) != 0 || ((flags & SCP03_OPEN_HOST) &&
	    (rc = scp03_kdf_bytes(rq->d, sm->obj, 0x01, ctx, clen, cbits,
	    crypto[1])) != 0)) {
		rc = rc ? p11_msg(rq, rc, "cryptograms") : ERR_INTERNAL;
		goto fail;
	}
	if ((rc = buf_put_u32(rq->reply, senc)) != 0 ||
	    (rc = buf_put_u32(rq->reply, smac)) != 0 ||
	    (rc = buf_put_u32(rq->reply, srmac)) != 0 ||
	    (rc = buf_put(rq->reply, crypto[0], cbits / 8)) != 0 ||
	    (rc = buf_put(rq->reply, crypto[1], cbits / 8)) != 0 ||
	    (rc = buf_put_lv16(rq->reply, challenge, chlen ? cbits / 8 : 0)) != 0)
		goto fail;
	return 0;
fail:
	if (rc == 0)
		rc = ERR_HANDLE;
	drop_handles(rq, made, nmade);
	buf_reset(rq->reply);
	return rc;
}

static int
op_scp03_kdf(struct req *rq)
{
	struct kms_wref ref;
	struct handle *h = NULL;
	const uint8_t *ctx;
	size_t clen;
	uint8_t konst, out[16];
	uint16_t lbits;
	int rc;

	if ((rc = kms_get_ref(&rq->body, &ref)) != 0 ||
	    (rc = rd_u8(&rq->body, &konst)) != 0 ||
	    (rc = rd_lv16(&rq->body, &ctx, &clen)) != 0 ||
	    (rc = rd_u16(&rq->body, &lbits)) != 0)
		return bad_request(rq, rc, "key, const, context, L");
	if ((rc = end_of_body(rq)) != 0)
		return rc;
	if ((rc = get_handle(rq, &ref, &h)) != 0)
		return rc;
	if ((rc = authorize_step(rq, "scp03.kdf", h->cls, konst,
	    h->usage)) != 0)
		return rc;
	/* Bytes out only for cryptograms (00, 01 with S-MAC) and the
	 * pseudo-random card challenge (02 with the static ENC key). */
	if (!((konst == 0x00 || konst == 0x01) && h->cls == KS_SESSION &&
	    h->usage == H_SMAC) &&
	    !(konst == 0x02 && h->cls == KS_KEYSET && h->usage == KMS_USE_ENC)) {
		snprintf(rq->msg, sizeof(rq->msg), "scp03.kdf gives bytes only for "
		    "constants 00/01 (S-MAC) and 02 (static ENC)");
		return ERR_DENIED;
	}
	if ((lbits != 64 && lbits != 128) || clen > 64) {
		snprintf(rq->msg, sizeof(rq->msg), "L must be 64 or 128, the context "
		    "at most 64 bytes");
		return ERR_INVAL;
	}
	first_use(rq, h, 1);
	if ((rc = scp03_kdf_bytes(rq->d, h->obj, konst, ctx, clen, lbits, out)) != 0)
		return p11_msg(rq, rc, "KDF");
	return buf_put(rq->reply, out, lbits / 8);
}

static int
op_cmac(struct req *rq)
{
	struct policy_param pp[1];
	struct kms_wref ref;
	struct handle *h = NULL;
	const uint8_t *d;
	size_t n;
	uint8_t mac[16];
	int rc;

	if ((rc = kms_get_ref(&rq->body, &ref)) != 0 ||
	    (rc = rd_lv32(&rq->body, KMS_MAX_FRAME, &d, &n)) != 0)
		return bad_request(rq, rc, "key and data");
	if ((rc = end_of_body(rq)) != 0)
		return rc;
	if ((rc = get_handle(rq, &ref, &h)) != 0)
		return rc;
	pp[0] = (struct policy_param){ "usage", usage_param(h->usage) };
	if ((rc = authorize(rq, "cmac", h->cls, pp, 1)) != 0)
		return rc;
	/* Never with a static key: CMAC over a KDF block would hand out a
	 * session key. */
	if (h->cls != KS_SESSION || (h->usage != H_SMAC && h->usage != H_SRMAC)) {
		snprintf(rq->msg, sizeof(rq->msg), "cmac needs an S-MAC or S-RMAC "
		    "session key");
		return ERR_KEYCLASS;
	}
	first_use(rq, h, 2);
	if ((rc = p11_cmac(rq->d->p, h->obj, d, n, mac)) != 0)
		return p11_msg(rq, rc, "CMAC");
	return buf_put(rq->reply, mac, 16);
}

static int
crypt_op(struct req *rq, int enc)
{
	const char *op = enc ? "encrypt" : "decrypt";
	struct policy_param pp[2];
	struct kms_wref ref;
	struct handle *h = NULL;
	const uint8_t *iv, *d;
	size_t n;
	uint8_t mode;
	int rc;

	if ((rc = kms_get_ref(&rq->body, &ref)) != 0 ||
	    (rc = rd_u8(&rq->body, &mode)) != 0 ||
	    (rc = rd_bytes(&rq->body, 16, &iv)) != 0 ||
	    (rc = rd_lv32(&rq->body, KMS_MAX_FRAME, &d, &n)) != 0)
		return bad_request(rq, rc, "key, mode, iv, data");
	if ((rc = end_of_body(rq)) != 0)
		return rc;
	if ((rc = get_handle(rq, &ref, &h)) != 0)
		return rc;
	pp[0] = (struct policy_param){ "mode", mode == KMS_ECB ? "ecb" :
	    mode == KMS_CBC ? "cbc" : "unknown" };
	pp[1] = (struct policy_param){ "usage", usage_param(h->usage) };
	if ((rc = authorize(rq, op, h->cls, pp, 2)) != 0)
		return rc;
	if (!((h->cls == KS_SESSION && h->usage == H_SENC) ||
	    (h->cls == KS_KEYSET && h->usage == KMS_USE_DEK))) {
		snprintf(rq->msg, sizeof(rq->msg), "%s needs S-ENC or a DEK", op);
		return ERR_KEYCLASS;
	}
	if ((mode != KMS_ECB && mode != KMS_CBC) || n == 0 || n % 16 != 0) {
		snprintf(rq->msg, sizeof(rq->msg), "mode must be ECB or CBC and the "
		    "data a non-empty multiple of 16 bytes");
		return ERR_INVAL;
	}
	first_use(rq, h, enc ? 3 : 4);
	if ((rc = buf_put_u32(rq->reply, (uint32_t)n)) != 0 ||
	    (rc = buf_reserve(rq->reply, n)) != 0)
		return rc;
	rc = (enc ? p11_aes_encrypt : p11_aes_decrypt)(rq->d->p, h->obj,
	    mode == KMS_ECB ? P11_ECB : P11_CBC, iv, d, n,
	    rq->reply->p + rq->reply->len);
	if (rc != 0)
		return p11_msg(rq, rc, op);
	rq->reply->len += n;
	return 0;
}

static int op_encrypt(struct req *rq) { return crypt_op(rq, 1); }
static int op_decrypt(struct req *rq) { return crypt_op(rq, 0); }

/* DEK, then 1..KMS_WRAP_MAX keys: one lv16 per key, in order. PUT KEY of
 * a key set is one call. */
static int
op_wrap(struct req *rq)
{
	struct policy_param pp[1];
	struct kms_wref dref, kref;
	struct handle *dek = NULL, *key = NULL;
	uint8_t out[64];
	size_t ol, n = 0;
	p11_obj dobj;
	int rc;

	if ((rc = kms_get_ref(&rq->body, &dref)) != 0)
		return bad_request(rq, rc, "DEK and key");
	if ((rc = get_handle(rq, &dref, &dek)) != 0)
		return rc;
	pp[0] = (struct policy_param){ "usage", usage_param(dek->usage) };
	if ((rc = authorize(rq, "wrap", dek->cls, pp, 1)) != 0)
		return rc;
	if (dek->cls != KS_KEYSET || dek->usage != KMS_USE_DEK) {
		snprintf(rq->msg, sizeof(rq->msg), "wrap needs a key-set DEK");
		return ERR_KEYCLASS;
	}
	dobj = dek->obj;
	do {
		if (n == KMS_WRAP_MAX) {
			snprintf(rq->msg, sizeof(rq->msg), "at most %d keys per "
			    "wrap", KMS_WRAP_MAX);
			return ERR_INVAL;
		}
		if ((rc = kms_get_ref(&rq->body, &kref)) != 0)
			return bad_request(rq, rc, "DEK and key");
		if ((rc = get_handle(rq, &kref, &key)) != 0)
			return rc;
		if (key->cls != KS_KEYSET || !key->exportable) {
			snprintf(rq->msg, sizeof(rq->msg), "only key-set members "
			    "opened exportable can be wrapped (handle %u)",
			    kref.handle);
			return ERR_KEYCLASS;
		}
		ol = sizeof(out);
		rc = p11_wrap(rq->d->p, P11_WRAP_AES_CBC0, dobj, key->obj, out,
		    &ol);
		if (rc == 0)
			rc = buf_put_lv16(rq->reply, out, ol);
		wipe(out, sizeof(out));
		if (rc != 0)
			return p11_msg(rq, rc, "AES-CBC wrap");
		n++;
	} while (rd_left(&rq->body) > 0);
	snprintf(rq->key, sizeof(rq->key), "h:%u", dref.handle);
	return 0;
}

static int
op_diversify(struct req *rq)
{
	struct policy_param pp[1];
	struct kms_wref ref;
	struct ks_key *k = NULL;
	struct ks_version *v = NULL;
	struct handle *nh, *mh = NULL;
	struct p11_keyspec s;
	const uint8_t *d;
	size_t n;
	uint8_t usage;
	p11_obj mo, o = 0;
	int rc, cls, alg;

	if ((rc = kms_get_ref(&rq->body, &ref)) != 0 ||
	    (rc = rd_lv16(&rq->body, &d, &n)) != 0 ||
	    (rc = rd_u8(&rq->body, &usage)) != 0)
		return bad_request(rq, rc, "master, data, usage");
	if ((rc = end_of_body(rq)) != 0)
		return rc;
	if (ref.kind == KMS_REF_HANDLE) {
		if ((rc = get_handle(rq, &ref, &mh)) != 0)
			return rc;
		cls = mh->cls;
		alg = mh->alg;
		mo = mh->obj;
	} else {
		if ((rc = get_token_key(rq, &ref, KS_USE_PROCESS, &k, &v, &mo)) != 0)
			return rc;
		cls = k->cls;
		alg = k->alg;
	}
	pp[0] = (struct policy_param){ "usage", usage_param(usage) };
	if ((rc = authorize(rq, "diversify", cls, pp, 1)) != 0)
		return rc;
	if (mh != NULL ? !(mh->cls == KS_KEYSET && mh->derive_only) :
	    cls != KS_MASTER) {
		snprintf(rq->msg, sizeof(rq->msg), "diversify needs a master key or "
		    "a member of a key set opened as a master set");
		return ERR_KEYCLASS;
	}
	if (usage < KMS_USE_ENC || usage > KMS_USE_DEK ||
	    n != kms_alg_keylen(alg) || (n != 16 && n != 32)) {
		snprintf(rq->msg, sizeof(rq->msg), "usage must be enc/mac/dek and the "
		    "data as long as the master key");
		return ERR_INVAL;
	}
	keyset_member_spec(usage, 0, &s);
	if (mh != NULL)
		rc = p11_derive_ecb(rq->d->p, mo, d, n, &s, &o);
	else
		TOKEN_OP(rq, k, v, mo, rc, p11_derive_ecb(rq->d->p, mo, d, n, &s,
		    &o));
	if (rc != 0)
		return p11_msg(rq, rc, "derivation");
	if ((rc = kmsd_handle_new(rq->c, &nh)) != 0) {
		if (p11_destroy(rq->d->p, o) != 0)
			log_msg(LOG_WARN, "event=derived_key_destroy_failed");
		return rc;
	}
	nh->obj = o;
	nh->cls = KS_KEYSET;
	nh->usage = usage;
	nh->alg = alg;
	return buf_put_u32(rq->reply, nh->id);
}

/* ---- signatures and MACs ---- */

/*
 * Issuing-profile hook: before the CA key signs, the to-be-signed data must
 * satisfy the profile named by the caller. Profile 0 is "raw" (no check);
 * the policy decides who may use it. The certificate issue adds profiles.
 */
static int
sign_profile_check(uint8_t profile, const uint8_t *tbs, size_t n, char *msg,
    size_t cap)
{
	(void)tbs;
	(void)n;
	if (profile == 0)
		return 0;
	snprintf(msg, cap, "unknown issuing profile %u", profile);
	return ERR_INVAL;
}

static int
op_sign(struct req *rq)
{
	struct policy_param pp[2];
	struct kms_wref ref;
	struct ks_key *k;
	struct ks_version *v;
	const uint8_t *d;
	size_t n, sl;
	uint8_t mech, profile, sig[132];
	char ps[8];
	p11_obj o;
	int rc;

	if ((rc = kms_get_ref(&rq->body, &ref)) != 0 ||
	    (rc = rd_u8(&rq->body, &mech)) != 0 ||
	    (rc = rd_u8(&rq->body, &profile)) != 0 ||
	    (rc = rd_lv32(&rq->body, KMS_MAX_FRAME, &d, &n)) != 0)
		return bad_request(rq, rc, "key, mech, profile, data");
	if ((rc = end_of_body(rq)) != 0)
		return rc;
	if ((rc = get_token_key(rq, &ref, KS_USE_PROTECT, &k, &v, &o)) != 0)
		return rc;
	snprintf(ps, sizeof(ps), "%u", profile);
	pp[0] = (struct policy_param){ "mech", mech == KMS_SIGN_ECDSA_SHA256 ?
	    "ecdsa-sha256" : mech == KMS_SIGN_ECDSA_SHA384 ? "ecdsa-sha384" :
	    "unknown" };
	pp[1] = (struct policy_param){ "profile", ps };
	if ((rc = authorize(rq, "sign", k->cls, pp, 2)) != 0)
		return rc;
	if (k->cls != KS_CA ||
	    !((mech == KMS_SIGN_ECDSA_SHA256 && k->alg == KMS_ALG_EC_P256) ||
	    (mech == KMS_SIGN_ECDSA_SHA384 && k->alg == KMS_ALG_EC_P384))) {
		snprintf(rq->msg, sizeof(rq->msg), "mechanism does not fit key '%s' "
		    "(%s)", k->label, kms_alg_name(k->alg));
		return ERR_KEYCLASS;
	}
	if ((rc = sign_profile_check(profile, d, n, rq->msg, sizeof(rq->msg))) != 0)
		return rc;
	sl = sizeof(sig);
	TOKEN_OP(rq, k, v, o, rc, p11_ecdsa_sign(rq->d->p, o,
	    k->alg == KMS_ALG_EC_P256 ? 256 : 384, d, n, sig, &sl));
	if (rc != 0)
		return p11_msg(rq, rc, "ECDSA");
	return buf_put_lv16(rq->reply, sig, sl);
}

/* The token MAC key `ref` names, in a state that allows `use`, as the
 * policy allows `op` on it. */
static int
mac_key(struct req *rq, const struct kms_wref *ref, const char *op, int use,
    struct ks_key **k, struct ks_version **v, p11_obj *o)
{
	int rc;

	if ((rc = get_token_key(rq, ref, use, k, v, o)) != 0 ||
	    (rc = authorize(rq, op, (*k)->cls, NULL, 0)) != 0)
		return rc;
	if ((*k)->cls != KS_MAC && (*k)->cls != KS_AUDIT) {
		snprintf(rq->msg, sizeof(rq->msg), "%s needs a MAC key", op);
		return ERR_KEYCLASS;
	}
	return 0;
}

static int
hmac_op(struct req *rq, int verify)
{
	const char *op = verify ? "hmac.verify" : "hmac";
	struct kms_wref ref;
	struct ks_key *k;
	struct ks_version *v;
	const uint8_t *d, *mac = NULL;
	size_t n;
	uint8_t out[32];
	p11_obj o;
	int rc;

	if ((rc = kms_get_ref(&rq->body, &ref)) != 0 ||
	    (rc = rd_lv32(&rq->body, KMS_MAX_FRAME, &d, &n)) != 0)
		return bad_request(rq, rc, "key and data");
	if (verify && (rc = rd_bytes(&rq->body, 32, &mac)) != 0)
		return bad_request(rq, rc, "MAC");
	if ((rc = end_of_body(rq)) != 0)
		return rc;
	if ((rc = mac_key(rq, &ref, op, verify ? KS_USE_PROCESS : KS_USE_PROTECT,
	    &k, &v, &o)) != 0)
		return rc;
	/* Message authentication runs on every SEI request, and verifying the
	 * audit log runs once per line: the first use of a key for the op on
	 * a connection is recorded, later ones only counted (like handles). */
	first_use_key(rq, op, rq->key);
	if (verify) {
		TOKEN_OP(rq, k, v, o, rc, p11_hmac_sha256_verify(rq->d->p, o, d, n,
		    mac));
		if (rc == ERR_AUTH)
			snprintf(rq->msg, sizeof(rq->msg), "MAC does not verify");
		return rc == ERR_AUTH ? rc : p11_msg(rq, rc, "HMAC verify");
	}
	TOKEN_OP(rq, k, v, o, rc, p11_hmac_sha256(rq->d->p, o, d, n, out));
	if (rc != 0)
		return p11_msg(rq, rc, "HMAC");
	return buf_put(rq->reply, out, 32);
}

static int op_hmac(struct req *rq) { return hmac_op(rq, 0); }
static int op_hmac_verify(struct req *rq) { return hmac_op(rq, 1); }

/* keyset.receive's answer: head, then body prefix and suffix around the
 * receipt MAC's lowercase hex (see answer_input). */
struct receive_answer {
	int            on;
	const uint8_t *head, *pre, *suf;
	size_t         hn, pn, sn;
};

/*
 * The string the answer's MAC covers: head || hex(SHA-256(pre ||
 * hex(receipt MAC) || suf)), lowercase hex both times - tsmd's
 * X-TSM-Signature input (ARCHITECTURE.md) for an answer whose body holds
 * the receipt MAC, which is known only here.
 */
static int
answer_input(const struct receive_answer *an, const uint8_t mac[32],
    struct buf *out)
{
	char mhx[65], dhx[65];
	uint8_t md[32];
	EVP_MD_CTX *x;
	int ok;

	hex_encode(mac, 32, mhx);
	if ((x = EVP_MD_CTX_new()) == NULL)
		return ERR_NOMEM;
	ok = EVP_DigestInit_ex(x, sha256_evp(), NULL) == 1 &&
	    EVP_DigestUpdate(x, an->pre, an->pn) == 1 &&
	    EVP_DigestUpdate(x, mhx, 64) == 1 &&
	    EVP_DigestUpdate(x, an->suf, an->sn) == 1 &&
	    EVP_DigestFinal_ex(x, md, NULL) == 1;
	EVP_MD_CTX_free(x);
	if (!ok)
		return ERR_CRYPTO;
	hex_encode(md, 32, dhx);
	if (buf_put(out, an->head, an->hn) != 0 || buf_put(out, dhx, 64) != 0)
		return ERR_NOMEM;
	return 0;
}

static int
read_answer(struct req *rq, struct receive_answer *an)
{
	uint8_t on;
	int rc;

	memset(an, 0, sizeof(*an));
	if ((rc = rd_u8(&rq->body, &on)) != 0 || on > 1)
		return bad_request(rq, rc != 0 ? rc : ERR_INVAL, "answer flag");
	an->on = on;
	if (on && ((rc = rd_lv32(&rq->body, KMS_MAX_FRAME, &an->head,
	    &an->hn)) != 0 || (rc = rd_lv32(&rq->body, KMS_MAX_FRAME, &an->pre,
	    &an->pn)) != 0 || (rc = rd_lv32(&rq->body, KMS_MAX_FRAME, &an->suf,
	    &an->sn)) != 0))
		return bad_request(rq, rc, "answer head, prefix and suffix");
	return 0;
}

/*
 * keyset.receive: a key set a peer sent, in one durable step. The peer's
 * MAC over its message is verified first (nothing is unwrapped when it
 * does not verify), then the keys are imported exactly as keyset.import
 * does, then the receipt is MACed with the same key, and, when asked, the
 * answer that carries it. The policy decides as for the separate
 * requests: hmac.verify and hmac on the MAC key, keyset.import on the
 * transport key.
 */
static int
op_keyset_receive(struct req *rq)
{
	struct import_args a;
	struct receive_answer an;
	struct kms_wref ref;
	struct ks_key *k;
	struct ks_version *v;
	const uint8_t *m, *mac, *rin;
	char mkey[KS_LABEL_MAX + 16];
	size_t mn, rn;
	uint8_t out[32], aout[32];
	struct buf ain;
	p11_obj o;
	int rc;

	if ((rc = kms_get_ref(&rq->body, &ref)) != 0 ||
	    (rc = rd_lv32(&rq->body, KMS_MAX_FRAME, &m, &mn)) != 0 ||
	    (rc = rd_bytes(&rq->body, 32, &mac)) != 0)
		return bad_request(rq, rc, "MAC key, message and MAC");
	if ((rc = import_read(rq, &a)) != 0)
		return rc;
	if ((rc = rd_lv32(&rq->body, KMS_MAX_FRAME, &rin, &rn)) != 0)
		return bad_request(rq, rc, "receipt");
	if ((rc = read_answer(rq, &an)) != 0 || (rc = end_of_body(rq)) != 0)
		return rc;
	if ((rc = mac_key(rq, &ref, "hmac.verify", KS_USE_PROCESS, &k, &v,
	    &o)) != 0)
		return rc;
	if (k->cls != KS_MAC) {
		snprintf(rq->msg, sizeof(rq->msg), "keyset.receive needs a "
		    "peer's MAC key, not the %s key", ks_class_name(k->cls));
		return ERR_KEYCLASS;
	}
	/* The receipt needs the key too: refused before any token work. */
	if (!ks_state_allows(v->state, KS_USE_PROTECT)) {
		snprintf(rq->msg, sizeof(rq->msg), "key '%s' v%u is %s: it "
		    "verifies but makes no receipt", k->label, v->v,
		    kms_state_name(v->state));
		return ERR_KEYSTATE;
	}
	if ((rc = authorize(rq, "hmac", k->cls, NULL, 0)) != 0)
		return rc;
	if (snprintf(mkey, sizeof(mkey), "%s", rq->key) >= (int)sizeof(mkey))
		return ERR_INTERNAL;	/* "label#version" always fits */
	TOKEN_OP(rq, k, v, o, rc, p11_hmac_sha256_verify(rq->d->p, o, m, mn,
	    mac));
	if (rc == ERR_AUTH) {
		snprintf(rq->msg, sizeof(rq->msg), "the peer's MAC does not "
		    "verify under %s", mkey);
		return rc;
	}
	if (rc != 0)
		return p11_msg(rq, rc, "HMAC verify");
	rc = import_run(rq, &a);
	/* The record names both keys: transport KEK, then MAC key (rq->key
	 * holds two labels of at most KS_LABEL_MAX and a version). */
	if (snprintf(rq->key + strlen(rq->key), sizeof(rq->key) -
	    strlen(rq->key), " %s", mkey) < 0)
		return ERR_INTERNAL;
	if (rc != 0)
		return rc;
	TOKEN_OP(rq, k, v, o, rc, p11_hmac_sha256(rq->d->p, o, rin, rn, out));
	if (rc != 0)
		return p11_msg(rq, rc, "receipt HMAC");
	if (!an.on)
		return buf_put(rq->reply, out, 32);
	buf_init(&ain);
	if ((rc = answer_input(&an, out, &ain)) == 0) {
		TOKEN_OP(rq, k, v, o, rc, p11_hmac_sha256(rq->d->p, o, ain.p,
		    ain.len, aout));
		if (rc != 0)
			rc = p11_msg(rq, rc, "answer HMAC");
	}
	buf_free(&ain);
	if (rc != 0)
		return rc;
	if ((rc = buf_put(rq->reply, out, 32)) != 0)
		return rc;
	return buf_put(rq->reply, aout, 32);
}

/* ---- custodian/auditor views ---- */

static int
op_key_list(struct req *rq)
{
	struct keystore *ks = &rq->d->ks;
	size_t i, j;
	int rc;

	if ((rc = end_of_body(rq)) != 0)
		return rc;
	if ((rc = authorize(rq, "key.list", KS_NONE, NULL, 0)) != 0)
		return rc;
	if ((rc = buf_put_u32(rq->reply, (uint32_t)ks->n)) != 0)
		return rc;
	for (i = 0; i < ks->n; i++) {
		const struct ks_key *k = &ks->keys[i];

		if ((rc = buf_put_str(rq->reply, k->label)) != 0 ||
		    (rc = buf_put_str(rq->reply, ks_class_name(k->cls))) != 0 ||
		    (rc = buf_put_u8(rq->reply, (uint8_t)k->alg)) != 0 ||
		    (rc = buf_put_u32(rq->reply, k->current)) != 0 ||
		    (rc = buf_put_u32(rq->reply, (uint32_t)k->nvers)) != 0)
			return rc;
		for (j = 0; j < k->nvers; j++) {
			const struct ks_version *v = &k->vers[j];

			if ((rc = buf_put_u32(rq->reply, v->v)) != 0 ||
			    (rc = buf_put_u8(rq->reply, (uint8_t)v->state)) != 0 ||
			    (rc = buf_put_lv16(rq->reply, v->kcv, v->kcvlen)) != 0 ||
			    (rc = buf_put_u64(rq->reply, (uint64_t)v->created)) != 0 ||
			    (rc = buf_put_u64(rq->reply, (uint64_t)v->changed)) != 0 ||
			    (rc = buf_put_u64(rq->reply,
			    (uint64_t)v->destroy_after)) != 0 ||
			    (rc = buf_put_str(rq->reply, v->reason)) != 0)
				return rc;
		}
	}
	return 0;
}

static int
op_reload(struct req *rq)
{
	int rc;

	if ((rc = end_of_body(rq)) != 0)
		return rc;
	if ((rc = authorize(rq, "reload", KS_NONE, NULL, 0)) != 0)
		return rc;
	if ((rc = ks_load(&rq->d->ks, rq->d->p)) != 0)
		snprintf(rq->msg, sizeof(rq->msg), "reloading key metadata failed");
	return rc;
}

/* ---- quorum unseal ---- */

#define PIN_RAW 32
#define UNSEAL_STALE_MS (15u * 60u * 1000u)

struct unseal {
	uint8_t  set[8];
	uint8_t  threshold;
	uint8_t  have;
	uint8_t  check[8];
	uint8_t  xs[SHAMIR_MAX];
	uint8_t *shares;	/* secmem: SHAMIR_MAX x PIN_RAW */
	uint64_t started_ms;
};

static void
unseal_reset(struct kmsd *d)
{
	struct unseal *u = d->unseal;

	if (u == NULL)
		return;
	secmem_free(u->shares, SHAMIR_MAX * PIN_RAW);
	wipe(u, sizeof(*u));
	free(u);
	d->unseal = NULL;
}

/*
 * One custodian's share: str set (16 hex), str token serial, u8 threshold,
 * u8 x, lv16 share (32 bytes), bytes(8) PIN verifier. When the threshold
 * is reached the PIN is rebuilt in locked memory, checked against the
 * verifier, used to log in, and wiped with every share.
 */
static int
op_unseal(struct req *rq)
{
	struct kmsd *d = rq->d;
	struct unseal *u;
	char sethex[32], serial[40], pinhex[2 * PIN_RAW + 1];
	const uint8_t *share, *check;
	uint8_t thr, x, set[8], chk[8], *pin = NULL;
	const uint8_t *ptrs[SHAMIR_MAX];
	size_t sl, n;
	int rc, i;

	if ((rc = rd_str(&rq->body, sethex, sizeof(sethex))) != 0 ||
	    (rc = rd_str(&rq->body, serial, sizeof(serial))) != 0 ||
	    (rc = rd_u8(&rq->body, &thr)) != 0 ||
	    (rc = rd_u8(&rq->body, &x)) != 0 ||
	    (rc = rd_lv16(&rq->body, &share, &sl)) != 0 ||
	    (rc = rd_bytes(&rq->body, 8, &check)) != 0)
		return bad_request(rq, rc, "set, serial, threshold, index, share, check");
	if ((rc = end_of_body(rq)) != 0)
		return rc;
	snprintf(rq->key, sizeof(rq->key), "share x=%u set=%s", x, sethex);
	if ((rc = authorize(rq, "unseal", KS_NONE, NULL, 0)) != 0)
		return rc;
	if (!d->sealed) {
		snprintf(rq->msg, sizeof(rq->msg), "kmsd is already unsealed");
		return ERR_WRONGSTATE;
	}
	if (hex_decode(sethex, strlen(sethex), set, sizeof(set), &n) != 0 ||
	    n != 8 || sl != PIN_RAW || x == 0 || thr == 0 || thr > SHAMIR_MAX) {
		snprintf(rq->msg, sizeof(rq->msg), "malformed share");
		return ERR_INVAL;
	}
	if (!kms_share_for_token(serial, p11_token_serial(d->p))) {
		snprintf(rq->msg, sizeof(rq->msg), "share is for token %s, kmsd "
		    "holds token %s", serial, p11_token_serial(d->p));
		return ERR_AUTH;
	}
	u = d->unseal;
	if (u != NULL && now_ms() - u->started_ms > UNSEAL_STALE_MS) {
		unseal_reset(d);	/* a half-finished quorum goes stale */
		u = NULL;
	}
	if (u != NULL && (memcmp(u->set, set, 8) != 0 || u->threshold != thr ||
	    !ct_equal(u->check, check, 8))) {
		snprintf(rq->msg, sizeof(rq->msg), "share belongs to another share "
		    "set than the ones already given");
		return ERR_AUTH;
	}
	if (u == NULL) {
		u = calloc(1, sizeof(*u));
		if (u == NULL || (u->shares = secmem_alloc(SHAMIR_MAX *
		    PIN_RAW)) == NULL) {
			free(u);
			return ERR_NOMEM;
		}
		memcpy(u->set, set, 8);
		memcpy(u->check, check, 8);
		u->threshold = thr;
		u->started_ms = now_ms();
		d->unseal = u;
	}
	for (i = 0; i < u->have; i++) {
		if (u->xs[i] == x) {
			snprintf(rq->msg, sizeof(rq->msg), "share %u was already given",
			    x);
			return ERR_EXISTS;
		}
	}
	u->xs[u->have] = x;
	memcpy(u->shares + (size_t)u->have * PIN_RAW, share, PIN_RAW);
	u->have++;
	if (u->have < u->threshold) {
		log_msg(LOG_INFO, "event=unseal_progress have=%u need=%u", u->have,
		    u->threshold);
		goto reply;
	}
	/* Quorum: rebuild, check, log in, wipe. */
	pin = secmem_alloc(PIN_RAW);
	if (pin == NULL) {
		unseal_reset(d);
		return ERR_NOMEM;
	}
	for (i = 0; i < u->have; i++)
		ptrs[i] = u->shares + (size_t)i * PIN_RAW;
	rc = shamir_combine(u->xs, ptrs, u->have, PIN_RAW, pin);
	if (rc == 0) {
		shamir_pin_check(u->set, pin, PIN_RAW, chk);
		if (!ct_equal(chk, u->check, 8)) {
			snprintf(rq->msg, sizeof(rq->msg), "the shares do not rebuild "
			    "the PIN (a share is damaged or from another set); start "
			    "again");
			rc = ERR_AUTH;
		}
	}
	if (rc == 0) {
		hex_encode(pin, PIN_RAW, pinhex);
		rc = kmsd_login(d, pinhex, 2 * PIN_RAW);
		wipe(pinhex, sizeof(pinhex));
		if (rc != 0)
			snprintf(rq->msg, sizeof(rq->msg), "token login failed: %s",
			    p11_last_error());
	}
	secmem_free(pin, PIN_RAW);
	thr = u->threshold;
	unseal_reset(d);
	if (rc != 0)
		return rc;
	log_msg(LOG_INFO, "event=unsealed");
	return buf_put_u8(rq->reply, thr) || buf_put_u8(rq->reply, thr) ||
	    buf_put_u8(rq->reply, 0) ? ERR_NOMEM : 0;
reply:
	if ((rc = buf_put_u8(rq->reply, u->have)) != 0 ||
	    (rc = buf_put_u8(rq->reply, u->threshold)) != 0 ||
	    (rc = buf_put_u8(rq->reply, 1)) != 0)
		return rc;
	return 0;
}

/* ---- the table ---- */

static const struct op_row ops[] = {
	{ KMS_OP_HELLO, "hello", op_hello, ROLES_ALL, AUDIT_EACH, 1, 0 },
	{ KMS_OP_PING, "ping", op_ping, ROLES_ALL, AUDIT_NONE, 1, 0 },
	{ KMS_OP_STATUS, "status", op_status, ROLES_ALL, AUDIT_NONE, 1, 0 },
	{ KMS_OP_RANDOM, "random", op_random, R_TSM | R_CUS, AUDIT_EACH, 0, 0 },
	{ KMS_OP_KEY_INFO, "key.info", op_key_info, ROLES_ALL, AUDIT_EACH, 0,
	    0 },
	{ KMS_OP_KCV, "kcv", op_kcv, ROLES_ALL, AUDIT_EACH, 0, 0 },
	{ KMS_OP_KEYSET_GENERATE, "keyset.generate", op_keyset_generate, R_TSM,
	    AUDIT_DURABLE, 0, 0 },
	{ KMS_OP_KEYSET_IMPORT, "keyset.import", op_keyset_import, R_TSM,
	    AUDIT_DURABLE, 0, 0 },
	{ KMS_OP_KEYSET_RECEIVE, "keyset.receive", op_keyset_receive, R_TSM,
	    AUDIT_DURABLE, 0, 1 },
	{ KMS_OP_KEYSET_OPEN, "keyset.open", op_keyset_open, R_TSM, AUDIT_EACH,
	    0, 0 },
	{ KMS_OP_HANDLE_CLOSE, "handle.close", op_handle_close, R_TSM,
	    AUDIT_EACH, 0, 0 },
	{ KMS_OP_SCP03_DERIVE, "scp03.derive", op_scp03_derive, R_TSM,
	    AUDIT_EACH, 0, 0 },
	{ KMS_OP_SCP03_KDF, "scp03.kdf", op_scp03_kdf, R_TSM, AUDIT_FIRST_USE,
	    0, 0 },
	{ KMS_OP_SCP03_OPEN, "scp03.open", op_scp03_open, R_TSM, AUDIT_EACH, 0,
	    0 },
	{ KMS_OP_CMAC, "cmac", op_cmac, R_TSM, AUDIT_FIRST_USE, 0, 0 },
	{ KMS_OP_ENCRYPT, "encrypt", op_encrypt, R_TSM, AUDIT_FIRST_USE, 0, 0 },
	{ KMS_OP_DECRYPT, "decrypt", op_decrypt, R_TSM, AUDIT_FIRST_USE, 0, 0 },
	{ KMS_OP_WRAP, "wrap", op_wrap, R_TSM, AUDIT_EACH, 0, 0 },
	{ KMS_OP_DIVERSIFY, "diversify", op_diversify, R_TSM, AUDIT_EACH, 0, 0 },
	{ KMS_OP_SIGN, "sign", op_sign, R_TSM, AUDIT_EACH, 0, 0 },
	{ KMS_OP_HMAC, "hmac", op_hmac, R_TSM, AUDIT_EACH, 0, 0 },
	{ KMS_OP_HMAC_VERIFY, "hmac.verify", op_hmac_verify, R_TSM | R_AUD,
	    AUDIT_EACH, 0, 0 },
	{ KMS_OP_KEY_LIST, "key.list", op_key_list, R_CUS | R_AUD, AUDIT_EACH,
	    0, 0 },
	{ KMS_OP_RELOAD, "reload", op_reload, R_CUS, AUDIT_DURABLE, 0, 0 },
	{ KMS_OP_UNSEAL, "unseal", op_unseal, R_CUS, AUDIT_DURABLE, 1, 0 },
};

const struct op_row *
kmsd_op_find(uint16_t type)
{
	size_t i;

	for (i = 0; i < ARRAY_LEN(ops); i++)
		if (ops[i].type == type)
			return &ops[i];
	return NULL;
}

/* Operation names the policy may use: every table row but those decided
 * as their parts, plus those served by the ceremonies (kmsctl) that policy
 * files already mention. */
static const char *op_names[ARRAY_LEN(ops) + 2];

const char *const *
kmsd_op_names(void)
{
	size_t i, n = 0;

	if (op_names[0] == NULL) {
		for (i = 0; i < ARRAY_LEN(ops); i++)
			if (!ops[i].parts)
				op_names[n++] = ops[i].name;
		op_names[n++] = "key.state";
		op_names[n] = NULL;
	}
	return (const char *const *)op_names;
}

const char *const kmsd_param_names[] = { "len", "const", "usage", "mode",
	"mech", "alg", "method", "source", "exportable", "master", "profile",
	NULL };

static size_t
count(const char *const *l)
{
	size_t n = 0;

	while (l[n] != NULL)
		n++;
	return n;
}

const struct policy_vocab *
kmsd_vocab(void)
{
	static struct policy_vocab v;

	v.ops = kmsd_op_names();
	v.nops = count(v.ops);
	v.classes = ks_class_names;
	v.nclasses = count(ks_class_names);
	v.params = kmsd_param_names;
	v.nparams = count(kmsd_param_names);
	return &v;
}
