/*
 * material.c - loads the demo SEI peer's material (sei-demo.json, format in
 * ARCHITECTURE.md "Demo material"): ids, wrap and KCV method, the transport
 * KEK and the message-auth key as XOR of components, each checked against
 * its KCV. Runs in seisim; the file is trusted demo material but still
 * checked field by field.
 */
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <openssl/pem.h>

#include "tests/sim/seisim/seisim.h"

static int __attribute__((format(printf, 3, 4)))
fail(char *err, size_t cap, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, cap, fmt, ap);
	va_end(ap);
	return ERR_PARSE;
}

static int
id_ok(const char *s)
{
	size_t i, n = s ? strlen(s) : 0;

	if (n == 0 || n > 64)
		return 0;
	for (i = 0; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
		    (s[i] >= '0' && s[i] <= '9') || strchr("._:-", s[i]) != NULL))
			return 0;
	return 1;
}

/* key = XOR of obj.components; KCV of the result (GP method; a 32-byte
 * HMAC key is taken as an AES-256 key for its KCV) must be obj.kcv. */
static int
combine(json_t *obj, const char *name, uint8_t *key, size_t cap, size_t *n,
    char *err, size_t ecap)
{
	json_t *comps = json_object_get(obj, "components"), *c;
	const char *want = json_string_value(json_object_get(obj, "kcv"));
	uint8_t comp[64], w[3], kcv[5];
	size_t i, j, cl, wl, kl;

	*n = 0;
	if (!json_is_array(comps) || json_array_size(comps) < 1)
		return fail(err, ecap, "%s.components: a non-empty array of hex", name);
	memset(key, 0, cap);
	json_array_foreach(comps, i, c) {
		const char *h = json_string_value(c);

		if (h == NULL || seisim_hex(h, comp, sizeof(comp), &cl) != 0 ||
		    cl > cap || (i > 0 && cl != *n)) {
			wipe(comp, sizeof(comp));
			return fail(err, ecap, "%s.components: hex strings of one "
			    "length", name);
		}
		*n = cl;
		for (j = 0; j < cl; j++)
			key[j] ^= comp[j];
	}
	wipe(comp, sizeof(comp));
	if (*n != 16 && *n != 24 && *n != 32)
		return fail(err, ecap, "%s: the key must be 16, 24 or 32 bytes", name);
	if (want == NULL || seisim_hex(want, w, sizeof(w), &wl) != 0 || wl != 3)
		return fail(err, ecap, "%s.kcv: 3 bytes of hex", name);
	if (seisim_kcv("GP", key, *n, kcv, &kl) != 0 || !ct_equal(kcv, w, 3))
		return fail(err, ecap, "%s: the combined key does not match its kcv",
		    name);
	return 0;
}

static int
load_pub(struct seisim_material *m, const char *path, const char *base,
    char *err, size_t cap)
{
	char full[PATH_MAX];
	const char *slash = strrchr(base, '/');
	FILE *f;

	if (path[0] != '/' && slash != NULL)
		snprintf(full, sizeof(full), "%.*s/%s", (int)(slash - base), base, path);
	else
		snprintf(full, sizeof(full), "%s", path);
	if ((f = fopen(full, "r")) == NULL)
		return fail(err, cap, "spTransportPublicKey: cannot open %s", full);
	m->sp_pub = PEM_read_PUBKEY(f, NULL, NULL, NULL);
	fclose(f);
	if (m->sp_pub == NULL || EVP_PKEY_get_base_id(m->sp_pub) != EVP_PKEY_RSA)
		return fail(err, cap, "spTransportPublicKey: %s is not an RSA "
		    "public key (PEM)", full);
	return 0;
}

int
seisim_material_load(struct seisim_material *m, const char *path,
    const char *sp_pub_path, char *err, size_t cap)
{
	json_error_t je;
	json_t *j, *mk;
	const char *s, *pub;
	int rc = ERR_PARSE;

	memset(m, 0, sizeof(*m));
	if ((j = json_load_file(path, JSON_REJECT_DUPLICATES, &je)) == NULL) {
		snprintf(err, cap, "%s: %s (line %d)", path, je.text, je.line);
		return ERR_PARSE;
	}
	if (!id_ok(s = json_string_value(json_object_get(j, "seiTsmId")))) {
		fail(err, cap, "%s: seiTsmId: letters, digits, ._:- (1..64)", path);
		goto out;
	}
	snprintf(m->sei_tsm_id, sizeof(m->sei_tsm_id), "%s", s);
	if ((s = json_string_value(json_object_get(j, "tenantId"))) == NULL ||
	    strlen(s) == 0 || strlen(s) > 64) {
		fail(err, cap, "%s: tenantId: a string of 1..64", path);
		goto out;
	}
	snprintf(m->tenant_id, sizeof(m->tenant_id), "%s", s);
	s = json_string_value(json_object_get(j, "wrap"));
	if (s == NULL || (strcmp(s, "AES-KW") && strcmp(s, "AES-KWP") &&
	    strcmp(s, "RSA-OAEP-SHA1") && strcmp(s, "RSA-OAEP-SHA256"))) {
		fail(err, cap, "%s: wrap: AES-KW, AES-KWP, RSA-OAEP-SHA1 or "
		    "RSA-OAEP-SHA256", path);
		goto out;
	}
	snprintf(m->wrap, sizeof(m->wrap), "%s", s);
	s = json_string_value(json_object_get(j, "kcvMethod"));
	if (s == NULL || (strcmp(s, "GP") && strcmp(s, "CMAC"))) {
		fail(err, cap, "%s: kcvMethod: GP or CMAC", path);
		goto out;
	}
	snprintf(m->kcv_method, sizeof(m->kcv_method), "%s", s);
	if ((rc = combine(json_object_get(j, "transportKek"), "transportKek",
	    m->kek, sizeof(m->kek), &m->kek_len, err, cap)) != 0)
		goto out;
	mk = json_object_get(j, "macKey");
	if (!id_ok(s = json_string_value(json_object_get(mk, "keyId")))) {
		rc = fail(err, cap, "%s: macKey.keyId: letters, digits, ._:- "
		    "(1..64)", path);
		goto out;
	}
	snprintf(m->mac_key_id, sizeof(m->mac_key_id), "%s", s);
	if ((rc = combine(mk, "macKey", m->mac_key, sizeof(m->mac_key),
	    &m->mac_len, err, cap)) != 0)
		goto out;
	pub = sp_pub_path != NULL ? sp_pub_path :
	    json_string_value(json_object_get(j, "spTransportPublicKey"));
	if (pub != NULL && (rc = load_pub(m, pub, sp_pub_path ? "" : path, err,
	    cap)) != 0)
		goto out;
	if (strncmp(m->wrap, "RSA", 3) == 0 && m->sp_pub == NULL) {
		snprintf(err, cap, "wrap %s needs the SP transport public key "
		    "(spTransportPublicKey or --sp-transport-pub)", m->wrap);
		rc = ERR_PARSE;
		goto out;
	}
	rc = 0;
out:
	json_decref(j);
	if (rc != 0)
		seisim_material_cleanup(m);
	return rc;
}

void
seisim_material_cleanup(struct seisim_material *m)
{
	EVP_PKEY_free(m->sp_pub);
	wipe(m, sizeof(*m));
}
