/*
 * validate.c - checks the JSON bodies of §9.4 key sync and §9.5 SD state
 * sync field by field (presence, JSON type, hex, lengths, allowed values)
 * and normalises them. Pure: no I/O, no globals; runs in tsmd's workers
 * and in the fuzz target. Trusts nothing in the body.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "tsm/sei/sei.h"

/* A field of a body: the name printed in the standard and an alias. */
struct field {
	const char *name;
	const char *alias;	/* NULL: none */
};

static const struct field ks_fields[] = {
	{ "seiTsmId", NULL }, { "SsdAid", "ssdAid" }, { "encryptedKey", NULL },
	{ "Alg", "alg" }, { "Usage", "usage" }, { "checkValue", NULL },
	{ "seId", NULL }, { "keyVersion", NULL },
};
enum { KS_ID, KS_AID, KS_KEYS, KS_ALG, KS_USAGE, KS_KCV, KS_SEID, KS_KVN,
	KS_NFIELDS };
static const int ks_mandatory[] = { KS_ID, KS_AID, KS_KEYS, KS_ALG, KS_USAGE,
	KS_KCV };

static const struct field st_fields[] = {
	{ "seiTsmId", NULL }, { "ssidAid", "ssdAid" }, { "status", NULL },
	{ "seId", NULL },
};
enum { ST_ID, ST_AID, ST_STATUS, ST_SEID, ST_NFIELDS };

static int __attribute__((format(printf, 4, 5)))
fail(int code, char *msg, size_t cap, const char *fmt, ...)
{
	va_list ap;

	if (cap > 0) {
		va_start(ap, fmt);
		(void)vsnprintf(msg, cap, fmt, ap);
		va_end(ap);
	}
	return code;
}

/* A name from the body, made safe to echo: printable ASCII, the first
 * 32 characters (then "..."). out holds 36 bytes. */
static void
safe_name(const char *s, char out[36])
{
	size_t i;

	for (i = 0; s[i] != '\0' && i < 32; i++)
		out[i] = (s[i] >= 0x20 && s[i] < 0x7f && s[i] != '"' &&
		    s[i] != '\\') ? s[i] : '?';
	memcpy(out + i, s[i] != '\0' ? "..." : "", s[i] != '\0' ? 4 : 1);
}

/*
 * Resolves each field of the table to its value (name or alias), refusing
 * names outside the table and a field given under both names. vals[i] is
 * NULL for an absent field; used[i] the name the body used.
 */
static int
collect(const json_t *body, const struct field *f, size_t nf,
    const json_t **vals, const char **used, char *msg, size_t cap)
{
	const char *key;
	const json_t *v;
	char nm[36];
	size_t i;

	if (body == NULL || !json_is_object(body))
		return fail(SEI_BAD_FORMAT, msg, cap, "the body must be a JSON "
		    "object (Content-Type: application/json)");
	for (i = 0; i < nf; i++) {
		vals[i] = NULL;
		used[i] = f[i].name;
	}
	json_object_foreach((json_t *)body, key, v) {
		for (i = 0; i < nf; i++) {
			if (strcmp(key, f[i].name) == 0 ||
			    (f[i].alias != NULL && strcmp(key, f[i].alias) == 0))
				break;
		}
		if (i == nf) {
			safe_name(key, nm);
			return fail(SEI_BAD_FORMAT, msg, cap, "unknown field \"%s\"",
			    nm);
		}
		if (vals[i] != NULL)
			return fail(SEI_BAD_FORMAT, msg, cap, "%s and %s both given; "
			    "send one", f[i].name, f[i].alias);
		vals[i] = v;
		used[i] = strcmp(key, f[i].name) == 0 ? f[i].name : f[i].alias;
	}
	return SEI_OK;
}

static int
is_hex_digit(char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') ||
	    (c >= 'A' && c <= 'F');
}

/*
 * A hex string field: decodes into out (cap bytes) and, when upper is not
 * NULL, writes the upper-case hex (2 * cap + 1 bytes). Length limits in
 * bytes; rule (or NULL) says them in words for the message.
 */
static int
get_hex(const json_t *v, const char *name, size_t min, size_t max,
    const char *rule, uint8_t *out, size_t cap, size_t *outlen, char *upper,
    char *msg, size_t mcap)
{
	const char *s;
	size_t n, i, got;

	if (!json_is_string(v))
		return fail(SEI_BAD_FORMAT, msg, mcap, "%s: must be a string of "
		    "hex digits", name);
	s = json_string_value(v);
	n = json_string_length(v);
	for (i = 0; i < n; i++)
		if (!is_hex_digit(s[i]))
			return fail(SEI_BAD_FORMAT, msg, mcap, "%s: not hex (character "
			    "%zu)", name, i + 1);
	if (n % 2 != 0)
		return fail(SEI_BAD_FORMAT, msg, mcap, "%s: odd number of hex "
		    "digits (%zu)", name, n);
	if (n / 2 < min || n / 2 > max) {
		if (rule != NULL)
			return fail(SEI_BAD_FORMAT, msg, mcap, "%s: %zu bytes; %s",
			    name, n / 2, rule);
		if (min == max)
			return fail(SEI_BAD_FORMAT, msg, mcap, "%s: %zu bytes; must "
			    "be %zu", name, n / 2, min);
		return fail(SEI_BAD_FORMAT, msg, mcap, "%s: %zu bytes; must be "
		    "%zu to %zu", name, n / 2, min, max);
	}
	if (n / 2 > cap || hex_decode(s, n, out, cap, &got) != 0)
		return fail(SEI_BAD_FORMAT, msg, mcap, "%s: bad hex", name);
	*outlen = got;
	if (upper != NULL)
		hex_encode_upper(out, got, upper);
	return SEI_OK;
}

/* seiTsmId: the store's id class (printable ASCII without '|', 1..64). */
static int
get_id(const json_t *v, const char *name, char *out, char *msg, size_t cap)
{
	const char *s;
	size_t n, i;

	if (!json_is_string(v))
		return fail(SEI_BAD_FORMAT, msg, cap, "%s: must be a string", name);
	s = json_string_value(v);
	n = json_string_length(v);
	if (n == 0 || n > SEI_ID_MAX)
		return fail(SEI_BAD_FORMAT, msg, cap, "%s: must be 1 to %d "
		    "characters", name, SEI_ID_MAX);
	for (i = 0; i < n; i++)
		if (s[i] < 0x21 || s[i] > 0x7e || s[i] == '|')
			return fail(SEI_BAD_FORMAT, msg, cap, "%s: only printable "
			    "ASCII without spaces or '|'", name);
	memcpy(out, s, n + 1);
	return SEI_OK;
}

static int
get_aid(const json_t *v, const char *name, char *upper, char *msg, size_t cap)
{
	uint8_t b[SEI_AID_MAX];
	size_t n;

	return get_hex(v, name, SEI_AID_MIN, SEI_AID_MAX, "an AID has 5 to 16",
	    b, sizeof(b), &n, upper, msg, cap);
}

static int
get_seid(const json_t *v, char *upper, char *msg, size_t cap)
{
	uint8_t b[SEI_SEID_MAX];
	size_t n;

	return get_hex(v, "seId", SEI_SEID_MIN, SEI_SEID_MAX, "a seId has 4 to "
	    "64", b, sizeof(b), &n, upper, msg, cap);
}

static int
get_list(const json_t *v, const char *name, size_t max, char *msg, size_t cap)
{
	size_t i;

	if (!json_is_array(v))
		return fail(SEI_BAD_FORMAT, msg, cap, "%s: must be a list of "
		    "strings", name);
	if (json_array_size(v) == 0 || json_array_size(v) > max)
		return fail(SEI_BAD_FORMAT, msg, cap, "%s: %zu elements; must be "
		    "1 to %zu", name, json_array_size(v), max);
	for (i = 0; i < json_array_size(v); i++)
		if (!json_is_string(json_array_get(v, i)))
			return fail(SEI_BAD_FORMAT, msg, cap, "%s[%zu]: must be a "
			    "string", name, i);
	return SEI_OK;
}

/* Bytes of the wrapping of a keylen-byte key, 0 when not fixed (RSA). */
static size_t
wrapped_len(int wrap, size_t keylen)
{
	switch (wrap) {
	case KMS_WRAP_AES_KW:
		return keylen + 8;			/* RFC 3394 §2.2.1 */
	case KMS_WRAP_AES_KWP:
		return ((keylen + 7) / 8) * 8 + 8;	/* RFC 5649 §4.1 */
	}
	return 0;
}

int
sei_keysync_parse(const json_t *body, int wrap, int kcv_method,
    struct sei_keysync *out, char *msg, size_t cap)
{
	static const uint8_t scp03[SEI_KEYS] = { KMS_USE_ENC, KMS_USE_MAC,
		KMS_USE_DEK };
	const json_t *v[KS_NFIELDS], *keys, *kcvs;
	const char *u[KS_NFIELDS], *s;
	size_t i, n, want, keylen, kcvlen;
	char nm[32], rule[48];
	int rc;

	memset(out, 0, sizeof(*out));
	if (cap > 0)
		msg[0] = '\0';
	if ((rc = collect(body, ks_fields, KS_NFIELDS, v, u, msg, cap)) != 0)
		return rc;
	for (i = 0; i < ARRAY_LEN(ks_mandatory); i++)
		if (v[ks_mandatory[i]] == NULL)
			return fail(SEI_MISSING_FIELD, msg, cap, "missing field: %s",
			    ks_fields[ks_mandatory[i]].name);

	if ((rc = get_id(v[KS_ID], u[KS_ID], out->sei_tsm_id, msg, cap)) != 0 ||
	    (rc = get_aid(v[KS_AID], u[KS_AID], out->sd_aid, msg, cap)) != 0)
		return rc;

	if (!json_is_string(v[KS_ALG]))
		return fail(SEI_BAD_FORMAT, msg, cap, "%s: must be a string",
		    u[KS_ALG]);
	s = json_string_value(v[KS_ALG]);
	if (strcasecmp(s, "AES-128") == 0)
		out->alg = KMS_ALG_AES128;
	else if (strcasecmp(s, "AES-192") == 0)
		out->alg = KMS_ALG_AES192;
	else if (strcasecmp(s, "AES-256") == 0)
		out->alg = KMS_ALG_AES256;
	else
		return fail(SEI_BAD_FORMAT, msg, cap, "%s: must be AES-128, "
		    "AES-192 or AES-256", u[KS_ALG]);
	if (json_string_length(v[KS_ALG]) != 7)	/* no embedded NUL */
		return fail(SEI_BAD_FORMAT, msg, cap, "%s: must be AES-128, "
		    "AES-192 or AES-256", u[KS_ALG]);
	keylen = kms_alg_keylen(out->alg);

	if (!json_is_string(v[KS_USAGE]))
		return fail(SEI_BAD_FORMAT, msg, cap, "%s: must be a string",
		    u[KS_USAGE]);
	if (strcasecmp(json_string_value(v[KS_USAGE]), "SCP03") != 0 ||
	    json_string_length(v[KS_USAGE]) != 5)
		return fail(SEI_BAD_FORMAT, msg, cap, "%s: must be SCP03",
		    u[KS_USAGE]);
	memcpy(out->usage, "SCP03", 6);
	want = SEI_KEYS;

	keys = v[KS_KEYS];
	kcvs = v[KS_KCV];
	if ((rc = get_list(keys, "encryptedKey", 8, msg, cap)) != 0 ||
	    (rc = get_list(kcvs, "checkValue", 8, msg, cap)) != 0)
		return rc;
	n = json_array_size(keys);
	if (n != want)
		return fail(SEI_BAD_FORMAT, msg, cap, "encryptedKey: %zu keys; "
		    "Usage SCP03 needs %zu (ENC, MAC, DEK)", n, want);
	if (json_array_size(kcvs) != n)
		return fail(SEI_BAD_FORMAT, msg, cap, "checkValue: %zu values for "
		    "%zu keys in encryptedKey", json_array_size(kcvs), n);

	kcvlen = kcv_method == KMS_KCV_CMAC ? 5 : 3;
	snprintf(rule, sizeof(rule), "kcvMethod %s check values have %zu",
	    kcv_method == KMS_KCV_CMAC ? "CMAC" : "GP", kcvlen);
	for (i = 0; i < n; i++) {
		size_t wl, got;

		snprintf(nm, sizeof(nm), "encryptedKey[%zu]", i);
		if ((rc = get_hex(json_array_get(keys, i), nm, 0, SEI_WRAPPED_MAX,
		    NULL, out->wrapped[i], SEI_WRAPPED_MAX, &out->wlen[i], NULL,
		    msg, cap)) != 0)
			return rc;
		wl = wrapped_len(wrap, keylen);
		if (wl != 0 && out->wlen[i] != wl)
			return fail(SEI_UNWRAP_FAILED, msg, cap, "%s: %zu bytes; %s "
			    "of an %s key is %zu", nm, out->wlen[i],
			    wrap == KMS_WRAP_AES_KW ? "AES-KW" : "AES-KWP",
			    kms_alg_name(out->alg), wl);
		if (wl == 0 && out->wlen[i] == 0)
			return fail(SEI_UNWRAP_FAILED, msg, cap, "%s: empty", nm);
		snprintf(nm, sizeof(nm), "checkValue[%zu]", i);
		if ((rc = get_hex(json_array_get(kcvs, i), nm, kcvlen, kcvlen,
		    rule, out->kcv[i], sizeof(out->kcv[i]), &got, NULL, msg,
		    cap)) != 0)
			return rc;
		out->usages[i] = scp03[i];
	}
	out->n = n;
	out->kcvlen = kcvlen;

	if (v[KS_SEID] != NULL &&
	    (rc = get_seid(v[KS_SEID], out->se_id, msg, cap)) != 0)
		return rc;
	/* kmsd diversifies 16- and 32-byte masters only (README.md). */
	if (out->se_id[0] == '\0' && out->alg == KMS_ALG_AES192)
		return fail(SEI_BAD_FORMAT, msg, cap, "%s: AES-192 master sets "
		    "(no seId) are not supported; send AES-128 or AES-256, or "
		    "per-SE sets with seId", u[KS_ALG]);
	out->kvn = SEI_KVN_DEFAULT;
	if (v[KS_KVN] != NULL) {
		uint8_t k;
		size_t got;

		if ((rc = get_hex(v[KS_KVN], "keyVersion", 1, 1, "one byte, 01 "
		    "to 7F", &k, 1, &got, NULL, msg, cap)) != 0)
			return rc;
		/* GPCS §11.1.8: key version numbers '01' to '7F'. */
		if (k < 0x01 || k > 0x7f)
			return fail(SEI_BAD_FORMAT, msg, cap, "keyVersion: %02X is "
			    "outside 01 to 7F", k);
		out->kvn = k;
	}
	return SEI_OK;
}

int
sei_sdstatus_parse(const json_t *body, struct sei_sdstatus *out, char *msg,
    size_t cap)
{
	const json_t *v[ST_NFIELDS];
	const char *u[ST_NFIELDS], *s;
	size_t i, n;
	int rc;

	memset(out, 0, sizeof(*out));
	if (cap > 0)
		msg[0] = '\0';
	if ((rc = collect(body, st_fields, ST_NFIELDS, v, u, msg, cap)) != 0)
		return rc;
	for (i = 0; i < ST_SEID; i++)
		if (v[i] == NULL)
			return fail(SEI_MISSING_FIELD, msg, cap, "missing field: %s",
			    st_fields[i].name);
	if (v[ST_SEID] == NULL)
		return fail(SEI_MISSING_FIELD, msg, cap, "missing field: seId (a "
		    "state sync without seId cannot be attributed to an SE; send "
		    "the SE's seId)");
	if ((rc = get_id(v[ST_ID], u[ST_ID], out->sei_tsm_id, msg, cap)) != 0 ||
	    (rc = get_aid(v[ST_AID], u[ST_AID], out->sd_aid, msg, cap)) != 0)
		return rc;
	if (!json_is_string(v[ST_STATUS]))
		return fail(SEI_BAD_FORMAT, msg, cap, "status: must be a string");
	s = json_string_value(v[ST_STATUS]);
	n = json_string_length(v[ST_STATUS]);
	if (n == 0 || n > SEI_STATUS_MAX || s[0] < 'A' || s[0] > 'Z')
		return fail(SEI_BAD_FORMAT, msg, cap, "status: one upper-case word "
		    "of 1 to %d characters, e.g. DELETED", SEI_STATUS_MAX);
	for (i = 0; i < n; i++)
		if (!((s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= '0' && s[i] <= '9') ||
		    s[i] == '_'))
			return fail(SEI_BAD_FORMAT, msg, cap, "status: only A-Z, 0-9 "
			    "and _ (character %zu)", i + 1);
	memcpy(out->status, s, n + 1);
	return get_seid(v[ST_SEID], out->se_id, msg, cap);
}
