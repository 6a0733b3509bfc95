/*
 * state.c - the virtual SE's persistent state as one JSON document
 * (format "sptsm-vse/1", described in tests/sim/vse/README.md): encode
 * everything, decode with full validation (types, lengths, unique AIDs,
 * one ISD, associations that resolve to SDs, no cycles). Runs in the
 * process that opens a card file; the file is checked, not trusted.
 */
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "tests/sim/vse/vse_int.h"

#define FORMAT "sptsm-vse/1"

/* ---- encode ------------------------------------------------------------------ */

static int
set_hex(json_t *o, const char *key, const uint8_t *p, size_t n)
{
	char *h = malloc(2 * n + 1);
	int rc;

	if (h == NULL)
		return ERR_NOMEM;
	hex_encode_upper(p, n, h);
	rc = json_object_set_new(o, key, json_string(h)) == 0 ? 0 : ERR_NOMEM;
	wipe(h, 2 * n + 1);
	free(h);
	return rc;
}

static int
set_int(json_t *o, const char *key, json_int_t v)
{
	return json_object_set_new(o, key, json_integer(v)) == 0 ? 0 : ERR_NOMEM;
}

static int
append(json_t *arr, json_t *v)
{
	if (v == NULL)
		return ERR_NOMEM;
	return json_array_append_new(arr, v) == 0 ? 0 : ERR_NOMEM;
}

static json_t *
enc_key(const struct vse_key *k)
{
	json_t *o = json_object();

	if (o == NULL || set_int(o, "kid", k->kid) != 0 ||
	    set_int(o, "type", k->type) != 0 ||
	    set_hex(o, "value", k->val, k->len) != 0 ||
	    (k->type == VSE_KEY_RSA &&
	    set_hex(o, "exponent", k->exp, k->exp_len) != 0) ||
	    (k->type == VSE_KEY_EC && set_int(o, "curve", k->curve) != 0)) {
		json_decref(o);
		return NULL;
	}
	return o;
}

static json_t *
enc_keyset(const struct vse_keyset *ks)
{
	json_t *o = json_object(), *keys = json_array();
	size_t i;

	if (o == NULL || keys == NULL)
		goto fail;
	for (i = 0; i < ks->nkeys; i++)
		if (append(keys, enc_key(&ks->keys[i])) != 0)
			goto fail;
	if (set_int(o, "kvn", ks->kvn) != 0 || set_int(o, "seq", ks->seq) != 0 ||
	    json_object_set_new(o, "keys", keys) != 0) {
		keys = NULL;
		goto fail;
	}
	return o;
fail:
	json_decref(keys);
	json_decref(o);
	return NULL;
}

static const char *kinds[] = { "", "ISD", "SSD", "APP", "ELF" };

static json_t *
enc_entry(const struct vse_entry *e)
{
	json_t *o = json_object(), *a;
	size_t i;

	if (o == NULL)
		return NULL;
	if (json_object_set_new(o, "kind", json_string(kinds[e->kind])) != 0 ||
	    set_hex(o, "aid", e->aid.b, e->aid.len) != 0 ||
	    set_int(o, "lcs", e->lcs) != 0 ||
	    set_int(o, "lcsPrev", e->lcs_prev) != 0 ||
	    set_hex(o, "privileges", e->priv, 3) != 0 ||
	    (e->sd.len && set_hex(o, "sd", e->sd.b, e->sd.len) != 0) ||
	    (e->elf.len && set_hex(o, "elf", e->elf.b, e->elf.len) != 0) ||
	    (e->module.len && set_hex(o, "module", e->module.b,
	    e->module.len) != 0) ||
	    set_int(o, "useNv", e->use_nv) != 0 ||
	    set_int(o, "useV", e->use_v) != 0 ||
	    (e->has_quota_nv && set_int(o, "quotaNv", e->quota_nv) != 0) ||
	    (e->has_quota_v && set_int(o, "quotaV", e->quota_v) != 0) ||
	    (e->params_len && set_hex(o, "params", e->params,
	    e->params_len) != 0))
		goto fail;
	if (vse_reg_is_sd(e) && (set_int(o, "scpI", e->scp_i) != 0 ||
	    set_int(o, "sdFlags", e->sd_flags) != 0))
		goto fail;
	if (e->nmodules > 0) {
		if ((a = json_array()) == NULL ||
		    json_object_set_new(o, "modules", a) != 0)
			goto fail;
		for (i = 0; i < e->nmodules; i++) {
			json_t *s = json_object();

			if (s == NULL || set_hex(s, "aid", e->modules[i].b,
			    e->modules[i].len) != 0 || append(a, s) != 0) {
				json_decref(s);
				goto fail;
			}
		}
	}
	if (e->nkeysets > 0) {
		if ((a = json_array()) == NULL ||
		    json_object_set_new(o, "keySets", a) != 0)
			goto fail;
		for (i = 0; i < e->nkeysets; i++)
			if (append(a, enc_keyset(&e->keysets[i])) != 0)
				goto fail;
	}
	if (e->nrecs > 0) {
		if ((a = json_array()) == NULL ||
		    json_object_set_new(o, "storeData", a) != 0)
			goto fail;
		for (i = 0; i < e->nrecs; i++) {
			json_t *r = json_object();

			if (r == NULL || set_int(r, "p1", e->recs[i].p1) != 0 ||
			    set_int(r, "p2", e->recs[i].p2) != 0 ||
			    json_object_set_new(r, "decrypted",
			    json_boolean(e->recs[i].decrypted)) != 0 ||
			    set_hex(r, "data", e->recs[i].data,
			    e->recs[i].len) != 0 || append(a, r) != 0) {
				json_decref(r);
				goto fail;
			}
		}
	}
	return o;
fail:
	json_decref(o);
	return NULL;
}

int
vse_state_encode(const struct vse *c, char **out)
{
	json_t *root = json_object(), *reg = json_array();
	size_t i;
	int rc = ERR_NOMEM;

	*out = NULL;
	if (root == NULL || reg == NULL)
		goto cleanup;
	if (json_object_set_new(root, "format", json_string(FORMAT)) != 0 ||
	    json_object_set_new(root, "note", json_string("virtual Secure "
	    "Element for tests and demos; keys are stored in clear")) != 0 ||
	    json_object_set_new(root, "seId", json_string(c->se_id)) != 0 ||
	    set_hex(root, "cplc", c->cplc, sizeof(c->cplc)) != 0 ||
	    set_hex(root, "iin", c->iin, c->iin_len) != 0 ||
	    set_hex(root, "cin", c->cin, c->cin_len) != 0 ||
	    set_hex(root, "kdd", c->kdd, sizeof(c->kdd)) != 0 ||
	    (c->has_eid && set_hex(root, "eid", c->eid, sizeof(c->eid)) != 0) ||
	    set_int(root, "memNv", c->mem_nv) != 0 ||
	    set_int(root, "memV", c->mem_v) != 0 ||
	    set_int(root, "confirmationCounter", c->conf_counter) != 0)
		goto cleanup;
	for (i = 0; i < c->nents; i++)
		if (append(reg, enc_entry(c->ents[i])) != 0)
			goto cleanup;
	if (json_object_set_new(root, "registry", reg) != 0) {
		reg = NULL;
		goto cleanup;
	}
	reg = NULL;
	if ((*out = json_dumps(root, JSON_INDENT(1) | JSON_PRESERVE_ORDER)) == NULL)
		goto cleanup;
	rc = 0;
cleanup:
	json_decref(reg);
	json_decref(root);
	return rc;
}

/* ---- decode ------------------------------------------------------------------ */

static int
get_hex(json_t *o, const char *key, int required, uint8_t *out, size_t min,
    size_t max, size_t *len)
{
	json_t *v = json_object_get(o, key);
	const char *s;
	size_t n;

	*len = 0;
	if (v == NULL)
		return required ? ERR_PARSE : 0;
	if (!json_is_string(v))
		return ERR_PARSE;
	s = json_string_value(v);
	n = strlen(s);
	if (n % 2 != 0 || n / 2 < min || n / 2 > max ||
	    hex_decode(s, n, out, max, len) != 0)
		return ERR_PARSE;
	return 0;
}

static int
get_uint(json_t *o, const char *key, int required, uint64_t max, uint64_t *v)
{
	json_t *j = json_object_get(o, key);
	json_int_t x;

	*v = 0;
	if (j == NULL)
		return required ? ERR_PARSE : 0;
	if (!json_is_integer(j))
		return ERR_PARSE;
	x = json_integer_value(j);
	if (x < 0 || (uint64_t)x > max)
		return ERR_PARSE;
	*v = (uint64_t)x;
	return 0;
}

static int
get_aid(json_t *o, const char *key, int required, struct vse_aid *a)
{
	size_t n;
	int rc;

	memset(a, 0, sizeof(*a));
	if ((rc = get_hex(o, key, required, a->b, 5, 16, &n)) != 0)
		return rc;
	a->len = (uint8_t)n;
	return 0;
}

static int
dec_key(json_t *o, struct vse_key *k)
{
	uint64_t v;
	size_t n;

	memset(k, 0, sizeof(*k));
	if (!json_is_object(o) || get_uint(o, "kid", 1, 0x7F, &v) != 0 || v == 0)
		return ERR_PARSE;
	k->kid = (uint8_t)v;
	if (get_uint(o, "type", 1, 0xFF, &v) != 0)
		return ERR_PARSE;
	k->type = (uint8_t)v;
	if (get_hex(o, "value", 1, k->val, 1, VSE_KEY_MAX, &n) != 0)
		return ERR_PARSE;
	k->len = (uint16_t)n;
	switch (k->type) {
	case VSE_KEY_AES:
		return vse_aes_keylen_ok(n) ? 0 : ERR_PARSE;
	case VSE_KEY_RSA:
		if (get_hex(o, "exponent", 1, k->exp, 1, VSE_EXP_MAX, &n) != 0)
			return ERR_PARSE;
		k->exp_len = (uint16_t)n;
		return 0;
	case VSE_KEY_EC:
		if (get_uint(o, "curve", 1, 1, &v) != 0)
			return ERR_PARSE;
		k->curve = (uint8_t)v;
		return k->len == (k->curve == 0 ? 65 : 97) ? 0 : ERR_PARSE;
	}
	return ERR_PARSE;
}

static int
dec_keysets(json_t *arr, struct vse_entry *e)
{
	json_t *ks, *keys;
	uint64_t v;
	size_t i, j;
	int rc;

	if (arr == NULL)
		return 0;
	if (!json_is_array(arr) || json_array_size(arr) > VSE_MAX_KEYSETS)
		return ERR_PARSE;
	json_array_foreach(arr, i, ks) {
		struct vse_keyset *s = &e->keysets[i];

		if (!json_is_object(ks) || get_uint(ks, "kvn", 1, 0x7F, &v) != 0 ||
		    v == 0)
			return ERR_PARSE;
		s->kvn = (uint8_t)v;
		for (j = 0; j < i; j++)
			if (e->keysets[j].kvn == s->kvn)
				return ERR_PARSE;
		if (get_uint(ks, "seq", 1, 0xFFFFFF, &v) != 0)
			return ERR_PARSE;
		s->seq = (uint32_t)v;
		keys = json_object_get(ks, "keys");
		if (!json_is_array(keys) || json_array_size(keys) > VSE_MAX_KEYS)
			return ERR_PARSE;
		for (j = 0; j < json_array_size(keys); j++) {
			if ((rc = dec_key(json_array_get(keys, j), &s->keys[j])) != 0)
				return rc;
			s->nkeys++;
		}
		e->nkeysets++;
	}
	return 0;
}

static int
dec_records(json_t *arr, struct vse_entry *e)
{
	json_t *r, *d;
	uint64_t p1, p2;
	uint8_t *buf;
	size_t i, n;
	int rc;

	if (arr == NULL)
		return 0;
	if (!json_is_array(arr) || json_array_size(arr) > VSE_MAX_RECORDS)
		return ERR_PARSE;
	if ((buf = malloc(VSE_RECORD_MAX)) == NULL)
		return ERR_NOMEM;
	rc = 0;
	json_array_foreach(arr, i, r) {
		d = json_is_object(r) ? json_object_get(r, "decrypted") : NULL;
		if (d == NULL || !json_is_boolean(d) ||
		    get_uint(r, "p1", 1, 0xFF, &p1) != 0 ||
		    get_uint(r, "p2", 1, 0xFF, &p2) != 0 ||
		    get_hex(r, "data", 1, buf, 0, VSE_RECORD_MAX, &n) != 0) {
			rc = ERR_PARSE;
			break;
		}
		if ((rc = vse_record_add(e, (uint8_t)p1, (uint8_t)p2,
		    json_is_true(d), buf, n)) != 0)
			break;
	}
	wipe(buf, VSE_RECORD_MAX);
	free(buf);
	return rc;
}

static int
dec_entry(json_t *o, struct vse_entry **out)
{
	struct vse_entry *e = NULL;
	struct vse_aid aid;
	json_t *k, *mods;
	const char *ks;
	uint64_t v;
	size_t n, i;
	int kind = 0, rc = ERR_PARSE;
	uint8_t params[VSE_PARAMS_MAX];

	*out = NULL;
	if (!json_is_object(o) || !json_is_string(k = json_object_get(o, "kind")))
		return ERR_PARSE;
	ks = json_string_value(k);
	for (i = 1; i < ARRAY_LEN(kinds); i++)
		if (strcmp(ks, kinds[i]) == 0)
			kind = (int)i;
	if (kind == 0 || get_aid(o, "aid", 1, &aid) != 0)
		return ERR_PARSE;
	if ((e = vse_entry_new((enum vse_kind)kind, &aid)) == NULL)
		return ERR_NOMEM;
	if (get_uint(o, "lcs", 1, 0xFF, &v) != 0)
		goto fail;
	e->lcs = (uint8_t)v;
	if (get_uint(o, "lcsPrev", 0, 0xFF, &v) != 0)
		goto fail;
	e->lcs_prev = (uint8_t)v;
	if (get_hex(o, "privileges", 1, e->priv, 3, 3, &n) != 0 ||
	    get_aid(o, "sd", kind != VSE_KIND_ISD, &e->sd) != 0 ||
	    get_aid(o, "elf", 0, &e->elf) != 0 ||
	    get_aid(o, "module", 0, &e->module) != 0)
		goto fail;
	if (kind == VSE_KIND_ISD && e->sd.len != 0)
		goto fail;
	if (get_uint(o, "useNv", 0, UINT32_MAX, &v) != 0)
		goto fail;
	e->use_nv = (uint32_t)v;
	if (get_uint(o, "useV", 0, UINT32_MAX, &v) != 0)
		goto fail;
	e->use_v = (uint32_t)v;
	if (json_object_get(o, "quotaNv") != NULL) {
		if (get_uint(o, "quotaNv", 1, UINT32_MAX, &v) != 0)
			goto fail;
		e->has_quota_nv = 1;
		e->quota_nv = (uint32_t)v;
	}
	if (json_object_get(o, "quotaV") != NULL) {
		if (get_uint(o, "quotaV", 1, UINT32_MAX, &v) != 0)
			goto fail;
		e->has_quota_v = 1;
		e->quota_v = (uint32_t)v;
	}
	if (get_uint(o, "scpI", 0, 0xFF, &v) != 0)
		goto fail;
	e->scp_i = json_object_get(o, "scpI") ? (uint8_t)v : 0x70;
	if ((e->scp_i & 0x8E) || ((e->scp_i & 0x40) && !(e->scp_i & 0x20)))
		goto fail;
	if (get_uint(o, "sdFlags", 0, 0x1F, &v) != 0)
		goto fail;
	e->sd_flags = (uint8_t)v;
	if (get_hex(o, "params", 0, params, 0, sizeof(params), &n) != 0)
		goto fail;
	if (n > 0) {
		if ((e->params = malloc(n)) == NULL) {
			rc = ERR_NOMEM;
			goto fail;
		}
		memcpy(e->params, params, n);
		e->params_len = n;
	}
	mods = json_object_get(o, "modules");
	if (mods != NULL) {
		if (!json_is_array(mods) || json_array_size(mods) > VSE_MAX_MODULES)
			goto fail;
		for (i = 0; i < json_array_size(mods); i++)
			if (get_aid(json_array_get(mods, i), "aid", 1,
			    &e->modules[i]) != 0)
				goto fail;
		e->nmodules = (uint8_t)json_array_size(mods);
	}
	if (!vse_reg_is_sd(e) && json_object_get(o, "keySets") != NULL)
		goto fail;
	if ((rc = dec_keysets(json_object_get(o, "keySets"), e)) != 0 ||
	    (rc = dec_records(json_object_get(o, "storeData"), e)) != 0)
		goto fail;
	*out = e;
	return 0;
fail:
	vse_entry_free(e);
	return rc ? rc : ERR_PARSE;
}

/* Every association resolves to an SD and leads up to the ISD. */
static int
check_registry(const struct vse *c)
{
	const struct vse_entry *e, *p;
	size_t i, j, nisd = 0, depth;

	for (i = 0; i < c->nents; i++) {
		e = c->ents[i];
		if (e->kind == VSE_KIND_ISD)
			nisd++;
		for (j = 0; j < i; j++)
			if (vse_aid_eq(&c->ents[j]->aid, &e->aid))
				return ERR_PARSE;
		if (e->kind == VSE_KIND_ISD)
			continue;
		p = e;
		depth = 0;
		while (p->kind != VSE_KIND_ISD) {
			p = vse_reg_parent(c, p);
			if (p == NULL || !vse_reg_is_sd(p) || ++depth > c->nents)
				return ERR_PARSE;
		}
	}
	return nisd == 1 ? 0 : ERR_PARSE;
}

int
vse_state_decode(struct vse *c, const uint8_t *p, size_t n)
{
	json_t *root = NULL, *reg, *f, *ent;
	json_error_t err;
	struct vse_entry *e;
	uint64_t v;
	size_t len, i;
	int rc = ERR_PARSE;

	root = json_loadb((const char *)p, n, JSON_REJECT_DUPLICATES, &err);
	if (root == NULL || !json_is_object(root))
		goto cleanup;
	f = json_object_get(root, "format");
	if (!json_is_string(f) || strcmp(json_string_value(f), FORMAT) != 0)
		goto cleanup;
	if (get_hex(root, "cin", 1, c->cin, 4, 16, &len) != 0)
		goto cleanup;
	c->cin_len = (uint8_t)len;
	hex_encode_upper(c->cin, c->cin_len, c->se_id);
	if (get_hex(root, "cplc", 1, c->cplc, 42, 42, &len) != 0 ||
	    get_hex(root, "kdd", 1, c->kdd, 10, 10, &len) != 0 ||
	    get_hex(root, "iin", 1, c->iin, 0, 16, &len) != 0)
		goto cleanup;
	c->iin_len = (uint8_t)len;
	if (get_hex(root, "eid", 0, c->eid, 16, 16, &len) != 0)
		goto cleanup;
	c->has_eid = len == 16;
	if (get_uint(root, "memNv", 1, UINT32_MAX, &v) != 0)
		goto cleanup;
	c->mem_nv = (uint32_t)v;
	if (get_uint(root, "memV", 1, UINT32_MAX, &v) != 0)
		goto cleanup;
	c->mem_v = (uint32_t)v;
	if (get_uint(root, "confirmationCounter", 1, 0xFFFF, &v) != 0)
		goto cleanup;
	c->conf_counter = (uint32_t)v;
	reg = json_object_get(root, "registry");
	if (!json_is_array(reg) || json_array_size(reg) > VSE_MAX_ENTRIES)
		goto cleanup;
	json_array_foreach(reg, i, ent) {
		if ((rc = dec_entry(ent, &e)) != 0)
			goto cleanup;
		if ((rc = vse_reg_add(c, e)) != 0) {
			vse_entry_free(e);
			goto cleanup;
		}
	}
	rc = check_registry(c);
cleanup:
	json_decref(root);
	return rc;
}
