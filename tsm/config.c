/*
 * config.c - tsmd's configuration: defaults < JSON file < command line,
 * validated field by field with messages that name the field. Runs in
 * tsmd at start and on SIGHUP; the file is trusted no more than a request.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "kms/kms.h"
#include "tsm/config.h"

#define CFG_MAX_FILE   (1024u * 1024u)
#define CFG_MAX_PATH   1023
#define CFG_MAX_PEERS  64

struct cerr {
	char  *buf;
	size_t cap;
};

static int __attribute__((format(printf, 4, 5)))
fail(struct cerr *e, int rc, const char *field, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (e->buf == NULL || e->cap == 0)
		return rc;
	n = snprintf(e->buf, e->cap, "%s: ", field);
	if (n < 0 || (size_t)n >= e->cap)
		return rc;
	va_start(ap, fmt);
	(void)vsnprintf(e->buf + n, e->cap - (size_t)n, fmt, ap);
	va_end(ap);
	return rc;
}

int
tsm_log_level_parse(const char *s)
{
	if (s == NULL)
		return -1;
	if (strcmp(s, "error") == 0) return LOG_ERR;
	if (strcmp(s, "warn") == 0) return LOG_WARN;
	if (strcmp(s, "info") == 0) return LOG_INFO;
	if (strcmp(s, "debug") == 0) return LOG_DEBUG;
	return -1;
}

int
tsm_host_is_loopback(const char *host)
{
	return strcmp(host, "localhost") == 0 || strcmp(host, "::1") == 0 ||
	    strncmp(host, "127.", 4) == 0;
}

/* ---- lifetime ---- */

static void
peer_clear(struct tsm_peer *p)
{
	free(p->sei_tsm_id);
	free(p->tenant_id);
	free(p->base_url);
	free(p->transport_kek);
	free(p->mac_key_id);
	free(p->mac_key);
	free(p->tls_ca);
}

static void
config_free(struct tsm_config *c)
{
	size_t i;

	if (c == NULL)
		return;
	free(c->path);
	free(c->listen);
	free(c->host);
	free(c->var_dir);
	free(c->kms_socket);
	free(c->tls_cert);
	free(c->tls_key);
	free(c->tls_client_ca);
	for (i = 0; i < c->npeers; i++)
		peer_clear(&c->peers[i]);
	free(c->peers);
	for (i = 0; i < c->flows.nssd_keys; i++) {
		free(c->flows.ssd_keys[i].aid);
		free(c->flows.ssd_keys[i].master);
	}
	free(c->flows.ssd_keys);
	free(c->flows.notify_mac_key);
	free(c->flows.notify_key_id);
	free(c);
}

struct tsm_config *
tsm_config_ref(struct tsm_config *c)
{
	__atomic_add_fetch(&c->refs, 1, __ATOMIC_RELAXED);
	return c;
}

void
tsm_config_unref(struct tsm_config *c)
{
	if (c != NULL && __atomic_sub_fetch(&c->refs, 1, __ATOMIC_ACQ_REL) == 0)
		config_free(c);
}

const struct tsm_peer *
tsm_config_peer(const struct tsm_config *c, const char *id)
{
	size_t i;

	for (i = 0; id != NULL && i < c->npeers; i++)
		if (strcmp(c->peers[i].sei_tsm_id, id) == 0)
			return &c->peers[i];
	return NULL;
}

const struct tsm_ssd_keys *
tsm_config_ssd_keys(const struct tsm_config *c, const char *sd_aid)
{
	const struct tsm_ssd_keys *def = NULL;
	size_t i;

	for (i = 0; i < c->flows.nssd_keys; i++) {
		if (sd_aid != NULL && strcmp(c->flows.ssd_keys[i].aid, sd_aid) == 0)
			return &c->flows.ssd_keys[i];
		if (strcmp(c->flows.ssd_keys[i].aid, "*") == 0)
			def = &c->flows.ssd_keys[i];
	}
	return def;
}

const struct tsm_peer *
tsm_config_peer_by_key_id(const struct tsm_config *c, const char *kid)
{
	size_t i;

	for (i = 0; kid != NULL && i < c->npeers; i++)
		if (strcmp(c->peers[i].mac_key_id, kid) == 0)
			return &c->peers[i];
	return NULL;
}

/* ---- field checks ---- */

static int
set_str(char **dst, const char *s)
{
	char *d = strdup(s);

	if (d == NULL)
		return ERR_NOMEM;
	free(*dst);
	*dst = d;
	return 0;
}

static int
printable(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || (unsigned char)*s == 0x7f)
			return 0;
	return 1;
}

/* Identifiers and kmsd labels: [A-Za-z0-9._:/-]{1,max}. */
int
tsm_ident_ok(const char *s, size_t n, size_t max, int slash)
{
	size_t i;

	if (n == 0 || n > max)
		return 0;
	for (i = 0; i < n; i++) {
		char ch = s[i];

		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		    (ch >= '0' && ch <= '9') || ch == '.' || ch == '_' ||
		    ch == ':' || ch == '-' || (slash && ch == '/')))
			return 0;
	}
	return 1;
}

static int
ident_ok(const char *s, size_t max, int slash)
{
	return tsm_ident_ok(s, strlen(s), max, slash);
}

/* The object's members must all be in `known` (or start with '_', which
 * is how the file carries comments). */
static int
check_keys(struct cerr *e, json_t *obj, const char *prefix,
    const char *const *known)
{
	const char *k;
	json_t *v;
	size_t i;
	char f[160];

	json_object_foreach(obj, k, v) {
		int found = k[0] == '_';

		for (i = 0; !found && known[i] != NULL; i++)
			found = strcmp(k, known[i]) == 0;
		if (!found) {
			snprintf(f, sizeof(f), "%s%s", prefix, k);
			return fail(e, ERR_INVAL, f, "unknown field");
		}
	}
	return 0;
}

/* Optional string member; *out untouched when absent. */
static int
get_str(struct cerr *e, json_t *obj, const char *key, const char *field,
    size_t max, char **out)
{
	json_t *v = json_object_get(obj, key);
	const char *s;

	if (v == NULL)
		return 0;
	if (!json_is_string(v))
		return fail(e, ERR_INVAL, field, "must be a string");
	s = json_string_value(v);
	if (s[0] == '\0')
		return fail(e, ERR_INVAL, field, "must not be empty");
	if (strlen(s) > max)
		return fail(e, ERR_INVAL, field, "longer than %zu characters", max);
	if (!printable(s))
		return fail(e, ERR_INVAL, field, "contains control characters");
	if (set_str(out, s) != 0)
		return fail(e, ERR_NOMEM, field, "out of memory");
	return 0;
}

static int
get_uint(struct cerr *e, json_t *obj, const char *key, const char *field,
    uint64_t min, uint64_t max, uint64_t *out)
{
	json_t *v = json_object_get(obj, key);
	json_int_t x;

	if (v == NULL)
		return 0;
	if (!json_is_integer(v))
		return fail(e, ERR_INVAL, field, "must be an integer");
	x = json_integer_value(v);
	if (x < 0 || (uint64_t)x < min || (uint64_t)x > max)
		return fail(e, ERR_INVAL, field, "must be between %llu and %llu",
		    (unsigned long long)min, (unsigned long long)max);
	*out = (uint64_t)x;
	return 0;
}

static int
get_bool(struct cerr *e, json_t *obj, const char *key, const char *field,
    int *out)
{
	json_t *v = json_object_get(obj, key);

	if (v == NULL)
		return 0;
	if (!json_is_boolean(v))
		return fail(e, ERR_INVAL, field, "must be true or false");
	*out = json_is_true(v);
	return 0;
}

/* "host:port", "[v6]:port". */
static int
parse_listen(struct cerr *e, struct tsm_config *c, const char *field,
    const char *s)
{
	const char *colon, *h, *he;
	char host[256], *end;
	unsigned long port;
	size_t hl, i;

	if (s[0] == '[') {
		he = strchr(s, ']');
		if (he == NULL || he[1] != ':')
			return fail(e, ERR_INVAL, field, "expected [ipv6]:port");
		h = s + 1;
		colon = he + 1;
	} else {
		colon = strrchr(s, ':');
		if (colon == NULL)
			return fail(e, ERR_INVAL, field, "expected host:port");
		h = s;
		he = colon;
	}
	hl = (size_t)(he - h);
	if (hl == 0 || hl >= sizeof(host))
		return fail(e, ERR_INVAL, field, "bad host");
	memcpy(host, h, hl);
	host[hl] = '\0';
	for (i = 0; i < hl; i++) {
		char ch = host[i];

		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		    (ch >= '0' && ch <= '9') || ch == '.' || ch == '-' ||
		    (s[0] == '[' && ch == ':')))
			return fail(e, ERR_INVAL, field, "bad host \"%s\"", host);
	}
	if (colon[1] < '0' || colon[1] > '9')
		return fail(e, ERR_INVAL, field, "bad port");
	port = strtoul(colon + 1, &end, 10);
	if (*end != '\0' || port > 65535 || end - (colon + 1) > 5)
		return fail(e, ERR_INVAL, field, "bad port");
	if (set_str(&c->listen, s) != 0 || set_str(&c->host, host) != 0)
		return fail(e, ERR_NOMEM, field, "out of memory");
	c->port = (uint16_t)port;
	return 0;
}

static int
readable(const char *path)
{
	return access(path, R_OK) == 0;
}

/* ---- sections ---- */

static int
parse_tls(struct cerr *e, struct tsm_config *c, json_t *t)
{
	static const char *const known[] = { "enabled", "cert", "key",
		"clientCa", NULL };
	int rc;

	if (!json_is_object(t))
		return fail(e, ERR_INVAL, "tls", "must be an object");
	if ((rc = check_keys(e, t, "tls.", known)) != 0 ||
	    (rc = get_bool(e, t, "enabled", "tls.enabled", &c->tls)) != 0 ||
	    (rc = get_str(e, t, "cert", "tls.cert", CFG_MAX_PATH,
	    &c->tls_cert)) != 0 ||
	    (rc = get_str(e, t, "key", "tls.key", CFG_MAX_PATH, &c->tls_key)) != 0 ||
	    (rc = get_str(e, t, "clientCa", "tls.clientCa", CFG_MAX_PATH,
	    &c->tls_client_ca)) != 0)
		return rc;
	if (c->tls_client_ca != NULL && !readable(c->tls_client_ca))
		return fail(e, ERR_IO, "tls.clientCa", "cannot read %s",
		    c->tls_client_ca);
	return 0;
}

static int
parse_limits(struct cerr *e, struct tsm_config *c, json_t *l)
{
	static const char *const known[] = { "maxBodyBytes", "maxJsonDepth",
		"maxConnections", "connectionTimeoutS", "requestTimeoutMs",
		"workers", "drainTimeoutMs", "storeMapMiB", NULL };
	uint64_t v;
	int rc;

	if (!json_is_object(l))
		return fail(e, ERR_INVAL, "limits", "must be an object");
	if ((rc = check_keys(e, l, "limits.", known)) != 0)
		return rc;
	v = c->lim.max_body;
	if ((rc = get_uint(e, l, "maxBodyBytes", "limits.maxBodyBytes", 1024,
	    64u * 1024 * 1024, &v)) != 0)
		return rc;
	c->lim.max_body = (size_t)v;
	v = c->lim.max_json_depth;
	if ((rc = get_uint(e, l, "maxJsonDepth", "limits.maxJsonDepth", 2,
	    TSM_JSON_DEPTH_MAX, &v)) != 0)
		return rc;
	c->lim.max_json_depth = (unsigned)v;
	v = c->lim.max_connections;
	if ((rc = get_uint(e, l, "maxConnections", "limits.maxConnections", 1,
	    60000, &v)) != 0)
		return rc;
	c->lim.max_connections = (unsigned)v;
	v = c->lim.conn_timeout_s;
	if ((rc = get_uint(e, l, "connectionTimeoutS",
	    "limits.connectionTimeoutS", 1, 3600, &v)) != 0)
		return rc;
	c->lim.conn_timeout_s = (unsigned)v;
	v = c->lim.request_timeout_ms;
	if ((rc = get_uint(e, l, "requestTimeoutMs", "limits.requestTimeoutMs",
	    100, 600000, &v)) != 0)
		return rc;
	c->lim.request_timeout_ms = (unsigned)v;
	v = c->lim.workers;
	if ((rc = get_uint(e, l, "workers", "limits.workers", 1, 256, &v)) != 0)
		return rc;
	c->lim.workers = (unsigned)v;
	v = c->lim.drain_timeout_ms;
	if ((rc = get_uint(e, l, "drainTimeoutMs", "limits.drainTimeoutMs", 0,
	    600000, &v)) != 0)
		return rc;
	c->lim.drain_timeout_ms = (unsigned)v;
	v = c->lim.store_map_mib;
	if ((rc = get_uint(e, l, "storeMapMiB", "limits.storeMapMiB", 16,
	    1024u * 1024u, &v)) != 0)
		return rc;
	c->lim.store_map_mib = v;
	return 0;
}

/* The host of an http:// URL ("[::1]" unbracketed) is a loopback one. */
static int
url_host_is_loopback(const char *url)
{
	const char *h = url + 7;	/* after "http://" */
	char host[256];
	size_t n = strcspn(h, ":/");

	if (h[0] == '[') {
		n = strcspn(h, "]");
		if (n >= sizeof(host) || h[n] != ']')
			return 0;
		memcpy(host, h + 1, n - 1);
		host[n - 1] = '\0';
		return tsm_host_is_loopback(host);
	}
	if (n == 0 || n >= sizeof(host))
		return 0;
	memcpy(host, h, n);
	host[n] = '\0';
	return tsm_host_is_loopback(host);
}

int
tsm_url_ok(const char *url)
{
	if (strpbrk(url, " \t\"'<>\\") != NULL)
		return 0;
	if (strncmp(url, "https://", 8) == 0)
		return strlen(url) > 8;
	return strncmp(url, "http://", 7) == 0 && url_host_is_loopback(url);
}

static int
parse_peer(struct cerr *e, struct tsm_config *c, json_t *o, size_t idx,
    struct tsm_peer *p)
{
	static const char *const known[] = { "seiTsmId", "tenantId", "baseUrl",
		"wrap", "kcvMethod", "transportKek", "macKeyId", "macKey",
		"tlsCa", "clientCertRequired", NULL };
	static const char *const required[] = { "seiTsmId", "tenantId",
		"baseUrl", "wrap", "kcvMethod", "transportKek", "macKeyId",
		"macKey", NULL };
	char pre[40], f[80];
	char *wrap = NULL, *kcv = NULL;
	size_t i, n;
	int rc;

#define FIELD(name) (snprintf(f, sizeof(f), "%s%s", pre, (name)), f)
	snprintf(pre, sizeof(pre), "peers[%zu].", idx);
	if (!json_is_object(o))
		return fail(e, ERR_INVAL, (snprintf(f, sizeof(f), "peers[%zu]",
		    idx), f), "must be an object");
	if ((rc = check_keys(e, o, pre, known)) != 0)
		return rc;
	for (i = 0; required[i] != NULL; i++)
		if (json_object_get(o, required[i]) == NULL)
			return fail(e, ERR_INVAL, FIELD(required[i]), "missing");
	p->client_cert_required = 1;
	if ((rc = get_str(e, o, "seiTsmId", FIELD("seiTsmId"), 64,
	    &p->sei_tsm_id)) != 0 ||
	    (rc = get_str(e, o, "tenantId", FIELD("tenantId"), 64,
	    &p->tenant_id)) != 0 ||
	    (rc = get_str(e, o, "baseUrl", FIELD("baseUrl"), 512,
	    &p->base_url)) != 0 ||
	    (rc = get_str(e, o, "wrap", FIELD("wrap"), 32, &wrap)) != 0 ||
	    (rc = get_str(e, o, "kcvMethod", FIELD("kcvMethod"), 8, &kcv)) != 0 ||
	    (rc = get_str(e, o, "transportKek", FIELD("transportKek"), 127,
	    &p->transport_kek)) != 0 ||
	    (rc = get_str(e, o, "macKeyId", FIELD("macKeyId"), 64,
	    &p->mac_key_id)) != 0 ||
	    (rc = get_str(e, o, "macKey", FIELD("macKey"), 127, &p->mac_key)) != 0 ||
	    (rc = get_str(e, o, "tlsCa", FIELD("tlsCa"), CFG_MAX_PATH,
	    &p->tls_ca)) != 0 ||
	    (rc = get_bool(e, o, "clientCertRequired",
	    FIELD("clientCertRequired"), &p->client_cert_required)) != 0)
		goto out;
	rc = ERR_INVAL;
	if (!ident_ok(p->sei_tsm_id, 64, 0)) {
		fail(e, rc, FIELD("seiTsmId"), "only letters, digits and ._:-");
		goto out;
	}
	if (strchr(p->tenant_id, ' ') != NULL) {
		fail(e, rc, FIELD("tenantId"), "must not contain spaces");
		goto out;
	}
	if (!ident_ok(p->mac_key_id, 64, 0)) {
		fail(e, rc, FIELD("macKeyId"), "only letters, digits and ._:-");
		goto out;
	}
	if (!ident_ok(p->transport_kek, 127, 1)) {
		fail(e, rc, FIELD("transportKek"), "not a kmsd key label");
		goto out;
	}
	if (!ident_ok(p->mac_key, 127, 1)) {
		fail(e, rc, FIELD("macKey"), "not a kmsd key label");
		goto out;
	}
	if (!tsm_url_ok(p->base_url)) {
		fail(e, rc, FIELD("baseUrl"), "must be https:// (plain http:// "
		    "only to a loopback address, for tests), without blanks, "
		    "quotes or angle brackets");
		goto out;
	}
	n = strlen(p->base_url);
	while (n > 8 && p->base_url[n - 1] == '/')
		p->base_url[--n] = '\0';
	if (strcmp(wrap, "AES-KW") == 0)
		p->wrap = KMS_WRAP_AES_KW;
	else if (strcmp(wrap, "AES-KWP") == 0)
		p->wrap = KMS_WRAP_AES_KWP;
	else if (strcmp(wrap, "RSA-OAEP-SHA1") == 0)
		p->wrap = KMS_WRAP_RSA_OAEP_SHA1;
	else if (strcmp(wrap, "RSA-OAEP-SHA256") == 0)
		p->wrap = KMS_WRAP_RSA_OAEP_SHA256;
	else {
		fail(e, rc, FIELD("wrap"), "must be one of AES-KW, AES-KWP, "
		    "RSA-OAEP-SHA1, RSA-OAEP-SHA256");
		goto out;
	}
	if (strcmp(kcv, "GP") == 0)
		p->kcv_method = KMS_KCV_GP;
	else if (strcmp(kcv, "CMAC") == 0)
		p->kcv_method = KMS_KCV_CMAC;
	else {
		fail(e, rc, FIELD("kcvMethod"), "must be GP or CMAC");
		goto out;
	}
	if (p->tls_ca != NULL && !readable(p->tls_ca)) {
		fail(e, ERR_IO, FIELD("tlsCa"), "cannot read %s", p->tls_ca);
		rc = ERR_IO;
		goto out;
	}
	(void)c;
	rc = 0;
out:
	free(wrap);
	free(kcv);
	return rc;
#undef FIELD
}

static int
parse_peers(struct cerr *e, struct tsm_config *c, json_t *a)
{
	size_t i, j, n;
	int rc;

	if (!json_is_array(a))
		return fail(e, ERR_INVAL, "peers", "must be an array");
	n = json_array_size(a);
	if (n > CFG_MAX_PEERS)
		return fail(e, ERR_INVAL, "peers", "at most %d peers", CFG_MAX_PEERS);
	if (n == 0)
		return 0;
	c->peers = calloc(n, sizeof(*c->peers));
	if (c->peers == NULL)
		return fail(e, ERR_NOMEM, "peers", "out of memory");
	for (i = 0; i < n; i++) {
		c->npeers = i + 1;
		if ((rc = parse_peer(e, c, json_array_get(a, i), i,
		    &c->peers[i])) != 0)
			return rc;
		for (j = 0; j < i; j++) {
			char f[64];

			if (strcmp(c->peers[j].sei_tsm_id, c->peers[i].sei_tsm_id) == 0) {
				snprintf(f, sizeof(f), "peers[%zu].seiTsmId", i);
				return fail(e, ERR_INVAL, f, "duplicate of peers[%zu]", j);
			}
			if (strcmp(c->peers[j].mac_key_id, c->peers[i].mac_key_id) == 0) {
				snprintf(f, sizeof(f), "peers[%zu].macKeyId", i);
				return fail(e, ERR_INVAL, f, "duplicate of peers[%zu]", j);
			}
		}
	}
	return 0;
}

/* AID: hex, 5..16 bytes, stored upper case. */
static int
aid_norm(const char *s, char *out, size_t cap)
{
	size_t n = strlen(s), i;

	if (n % 2 != 0 || n < 10 || n > 32 || n >= cap)
		return ERR_INVAL;
	for (i = 0; i < n; i++) {
		char ch = s[i];

		if (ch >= 'a' && ch <= 'f')
			ch = (char)(ch - 'a' + 'A');
		if (!((ch >= '0' && ch <= '9') || (ch >= 'A' && ch <= 'F')))
			return ERR_INVAL;
		out[i] = ch;
	}
	out[n] = '\0';
	return 0;
}

/* "ssdKeys": {"<AID>|*": "random" | "diversified" |
 *             {"source": "random"|"diversified", "master": "<label>"}} */
static int
parse_ssd_keys(struct cerr *e, struct tsm_config *c, json_t *o)
{
	static const char *const known[] = { "source", "master", NULL };
	struct tsm_ssd_keys *k;
	const char *aid, *src;
	char f[96], norm[40], *master = NULL;
	json_t *v, *sv;
	size_t n = 0;
	int rc;

	if (!json_is_object(o))
		return fail(e, ERR_INVAL, "ssdKeys", "must be an object");
	if (json_object_size(o) > 256)
		return fail(e, ERR_INVAL, "ssdKeys", "at most 256 entries");
	if (json_object_size(o) == 0)
		return 0;
	c->flows.ssd_keys = calloc(json_object_size(o), sizeof(*k));
	if (c->flows.ssd_keys == NULL)
		return fail(e, ERR_NOMEM, "ssdKeys", "out of memory");
	json_object_foreach(o, aid, v) {
		if (aid[0] == '_')
			continue;
		snprintf(f, sizeof(f), "ssdKeys.%.40s", aid);
		if (strcmp(aid, "*") == 0)
			snprintf(norm, sizeof(norm), "*");
		else if (aid_norm(aid, norm, sizeof(norm)) != 0)
			return fail(e, ERR_INVAL, f, "the key must be an SSD AID "
			    "(5 to 16 bytes of hex) or \"*\"");
		k = &c->flows.ssd_keys[n];
		c->flows.nssd_keys = ++n;
		if (set_str(&k->aid, norm) != 0)
			return fail(e, ERR_NOMEM, f, "out of memory");
		sv = v;
		if (json_is_object(v)) {
			if ((rc = check_keys(e, v, "ssdKeys.<aid>.", known)) != 0)
				return rc;
			sv = json_object_get(v, "source");
			if ((rc = get_str(e, v, "master", f, 120, &master)) != 0)
				return rc;
			k->master = master;
			master = NULL;
		}
		src = json_is_string(sv) ? json_string_value(sv) : NULL;
		if (src != NULL && strcmp(src, "random") == 0)
			k->source = TSM_KEYS_RANDOM;
		else if (src != NULL && strcmp(src, "diversified") == 0)
			k->source = TSM_KEYS_DIVERSIFIED;
		else
			return fail(e, ERR_INVAL, f, "must be \"random\", "
			    "\"diversified\" or {\"source\": ..., \"master\": "
			    "\"<kmsd label prefix>\"}");
		if (k->master != NULL && !ident_ok(k->master, 120, 1))
			return fail(e, ERR_INVAL, f, "master: not a kmsd key label");
		if (k->source == TSM_KEYS_DIVERSIFIED && k->master == NULL &&
		    strcmp(norm, "*") == 0)
			return fail(e, ERR_INVAL, f, "master: required for \"*\" "
			    "(the default label is master/<AID>)");
		if (k->source == TSM_KEYS_DIVERSIFIED && k->master == NULL) {
			char lab[64];

			snprintf(lab, sizeof(lab), "master/%s", norm);
			if (set_str(&k->master, lab) != 0)
				return fail(e, ERR_NOMEM, f, "out of memory");
		}
	}
	return 0;
}

static int
parse_flows(struct cerr *e, struct tsm_config *c, json_t *agent, json_t *fl,
    json_t *nt)
{
	static const char *const kagent[] = { "auth", "sessionTimeoutS", NULL };
	static const char *const kflows[] = { "seiTimeoutMs", "keyArchiveDays",
		NULL };
	static const char *const knotify[] = { "macKey", "keyId",
		"maxAttempts", "backoffMs", "timeoutMs", "retentionDays", NULL };
	struct tsm_flows *w = &c->flows;
	char *auth = NULL;
	uint64_t v;
	int rc = 0;

	if (agent != NULL) {
		if (!json_is_object(agent))
			return fail(e, ERR_INVAL, "agent", "must be an object");
		if ((rc = check_keys(e, agent, "agent.", kagent)) != 0 ||
		    (rc = get_str(e, agent, "auth", "agent.auth", 16, &auth)) != 0)
			goto out;
		if (auth != NULL && strcmp(auth, "none") == 0)
			w->agent_auth = TSM_AGENT_AUTH_NONE;
		else if (auth != NULL && strcmp(auth, "clientCert") == 0)
			w->agent_auth = TSM_AGENT_AUTH_CLIENT_CERT;
		else if (auth != NULL) {
			rc = fail(e, ERR_INVAL, "agent.auth", "must be none or "
			    "clientCert");
			goto out;
		}
		v = w->session_timeout_s;
		if ((rc = get_uint(e, agent, "sessionTimeoutS",
		    "agent.sessionTimeoutS", 1, 3600, &v)) != 0)
			goto out;
		w->session_timeout_s = (unsigned)v;
	}
	if (fl != NULL) {
		if (!json_is_object(fl))
			return fail(e, ERR_INVAL, "flows", "must be an object");
		if ((rc = check_keys(e, fl, "flows.", kflows)) != 0)
			goto out;
		v = w->sei_timeout_ms;
		if ((rc = get_uint(e, fl, "seiTimeoutMs", "flows.seiTimeoutMs", 100,
		    120000, &v)) != 0)
			goto out;
		w->sei_timeout_ms = (unsigned)v;
		v = w->key_archive_days;
		if ((rc = get_uint(e, fl, "keyArchiveDays", "flows.keyArchiveDays",
		    0, 3660, &v)) != 0)
			goto out;
		w->key_archive_days = (unsigned)v;
	}
	if (nt != NULL) {
		if (!json_is_object(nt))
			return fail(e, ERR_INVAL, "notify", "must be an object");
		if ((rc = check_keys(e, nt, "notify.", knotify)) != 0 ||
		    (rc = get_str(e, nt, "macKey", "notify.macKey", 127,
		    &w->notify_mac_key)) != 0 ||
		    (rc = get_str(e, nt, "keyId", "notify.keyId", 64,
		    &w->notify_key_id)) != 0)
			goto out;
		if (!ident_ok(w->notify_mac_key, 127, 1)) {
			rc = fail(e, ERR_INVAL, "notify.macKey", "not a kmsd key label");
			goto out;
		}
		if (!ident_ok(w->notify_key_id, 64, 0)) {
			rc = fail(e, ERR_INVAL, "notify.keyId", "only letters, digits "
			    "and ._:-");
			goto out;
		}
		v = w->notify_max_attempts;
		if ((rc = get_uint(e, nt, "maxAttempts", "notify.maxAttempts", 1,
		    100, &v)) != 0)
			goto out;
		w->notify_max_attempts = (unsigned)v;
		v = w->notify_backoff_ms;
		if ((rc = get_uint(e, nt, "backoffMs", "notify.backoffMs", 10,
		    3600000, &v)) != 0)
			goto out;
		w->notify_backoff_ms = (unsigned)v;
		v = w->notify_timeout_ms;
		if ((rc = get_uint(e, nt, "timeoutMs", "notify.timeoutMs", 100,
		    120000, &v)) != 0)
			goto out;
		w->notify_timeout_ms = (unsigned)v;
		v = w->notify_retention_days;
		if ((rc = get_uint(e, nt, "retentionDays", "notify.retentionDays",
		    0, 3660, &v)) != 0)
			goto out;
		w->notify_retention_days = (unsigned)v;
	}
out:
	free(auth);
	return rc;
}

static int
parse_doc(struct cerr *e, struct tsm_config *c, json_t *root)
{
	static const char *const known[] = { "listen", "varDir", "kmsSocket",
		"logLevel", "tls", "limits", "peers", "agent", "flows", "notify",
		"ssdKeys", NULL };
	char *listen = NULL, *level = NULL;
	json_t *v;
	int rc;

	if (!json_is_object(root))
		return fail(e, ERR_INVAL, "(top level)", "must be a JSON object");
	if ((rc = check_keys(e, root, "", known)) != 0 ||
	    (rc = get_str(e, root, "listen", "listen", 300, &listen)) != 0 ||
	    (rc = get_str(e, root, "varDir", "varDir", CFG_MAX_PATH,
	    &c->var_dir)) != 0 ||
	    (rc = get_str(e, root, "kmsSocket", "kmsSocket", 107,
	    &c->kms_socket)) != 0 ||
	    (rc = get_str(e, root, "logLevel", "logLevel", 16, &level)) != 0)
		goto out;
	if (listen != NULL && (rc = parse_listen(e, c, "listen", listen)) != 0)
		goto out;
	if (level != NULL) {
		if ((c->log_level = tsm_log_level_parse(level)) < 0) {
			rc = fail(e, ERR_INVAL, "logLevel",
			    "must be error, warn, info or debug");
			goto out;
		}
	}
	if ((v = json_object_get(root, "tls")) != NULL &&
	    (rc = parse_tls(e, c, v)) != 0)
		goto out;
	if ((v = json_object_get(root, "limits")) != NULL &&
	    (rc = parse_limits(e, c, v)) != 0)
		goto out;
	if ((v = json_object_get(root, "peers")) != NULL &&
	    (rc = parse_peers(e, c, v)) != 0)
		goto out;
	if ((rc = parse_flows(e, c, json_object_get(root, "agent"),
	    json_object_get(root, "flows"), json_object_get(root, "notify"))) != 0)
		goto out;
	if ((v = json_object_get(root, "ssdKeys")) != NULL &&
	    (rc = parse_ssd_keys(e, c, v)) != 0)
		goto out;
	rc = 0;
out:
	free(listen);
	free(level);
	return rc;
}

/* ---- assembly ---- */

static struct tsm_config *
config_defaults(void)
{
	struct tsm_config *c = calloc(1, sizeof(*c));

	if (c == NULL)
		return NULL;
	c->refs = 1;
	c->tls = 1;
	c->port = 8443;
	c->log_level = LOG_INFO;
	c->lim.max_body = 1024 * 1024;
	c->lim.max_json_depth = 32;
	c->lim.max_connections = 256;
	c->lim.conn_timeout_s = 30;
	c->lim.request_timeout_ms = 30000;
	c->lim.workers = 8;
	c->lim.drain_timeout_ms = 10000;
	c->lim.store_map_mib = 1024;		/* the store's default, 1 GiB */
	c->flows.agent_auth = TSM_AGENT_AUTH_NONE;
	c->flows.session_timeout_s = 120;
	c->flows.sei_timeout_ms = 10000;
	c->flows.key_archive_days = 30;
	c->flows.notify_max_attempts = 8;
	c->flows.notify_retention_days = 30;
	c->flows.notify_backoff_ms = 1000;
	c->flows.notify_timeout_ms = 5000;
	if (set_str(&c->listen, "127.0.0.1:8443") != 0 ||
	    set_str(&c->host, "127.0.0.1") != 0 ||
	    set_str(&c->flows.notify_mac_key, "notify") != 0 ||
	    set_str(&c->flows.notify_key_id, "sptsm-notify") != 0) {
		config_free(c);
		return NULL;
	}
	return c;
}

static int
set_path(char **dst, const char *var, const char *rel)
{
	char p[CFG_MAX_PATH + 64];

	if (snprintf(p, sizeof(p), "%s/%s", var, rel) >= (int)sizeof(p))
		return ERR_TOOBIG;
	return set_str(dst, p);
}

/* Arguments, derived defaults, cross-field rules. */
static int
finish(struct cerr *e, struct tsm_config *c, const struct tsm_config_args *a)
{
	int rc, lvl;
	size_t i;

	if (a->var != NULL && set_str(&c->var_dir, a->var) != 0)
		return fail(e, ERR_NOMEM, "--var", "out of memory");
	if (c->var_dir == NULL && set_str(&c->var_dir, "./var") != 0)
		return fail(e, ERR_NOMEM, "varDir", "out of memory");
	if (strlen(c->var_dir) > CFG_MAX_PATH - 64)
		return fail(e, ERR_INVAL, a->var ? "--var" : "varDir", "too long");
	if (a->listen != NULL && (rc = parse_listen(e, c, "--listen",
	    a->listen)) != 0)
		return rc;
	if (a->kms_socket != NULL && set_str(&c->kms_socket, a->kms_socket) != 0)
		return fail(e, ERR_NOMEM, "--kms-socket", "out of memory");
	if (a->log_level != NULL) {
		if ((lvl = tsm_log_level_parse(a->log_level)) < 0)
			return fail(e, ERR_INVAL, "--log-level",
			    "must be error, warn, info or debug");
		c->log_level = lvl;
	}
	if (a->no_tls)
		c->tls = 0;
	if ((c->kms_socket == NULL && set_path(&c->kms_socket, c->var_dir,
	    "run/kms.sock") != 0) ||
	    (c->tls_cert == NULL && set_path(&c->tls_cert, c->var_dir,
	    "tsm/tls/server.crt") != 0) ||
	    (c->tls_key == NULL && set_path(&c->tls_key, c->var_dir,
	    "tsm/tls/server.key") != 0))
		return fail(e, ERR_NOMEM, "varDir", "out of memory");
	if (strlen(c->kms_socket) > 107)
		return fail(e, ERR_INVAL, a->kms_socket ? "--kms-socket" :
		    "kmsSocket", "longer than a Unix socket path may be");
	if (!c->tls && !tsm_host_is_loopback(c->host))
		return fail(e, ERR_INVAL, a->no_tls ? "--no-tls" : "tls.enabled",
		    "plain HTTP is allowed only on a loopback address, not %s",
		    c->host);
	if (!c->tls && c->tls_client_ca != NULL)
		return fail(e, ERR_INVAL, "tls.clientCa",
		    "client certificates need TLS");
	if (c->flows.agent_auth == TSM_AGENT_AUTH_CLIENT_CERT &&
	    c->tls_client_ca == NULL)
		return fail(e, ERR_INVAL, "agent.auth", "clientCert needs "
		    "tls.clientCa");
	for (i = 0; i < c->npeers; i++) {
		char f[64];

		if (c->peers[i].client_cert_required && c->tls_client_ca == NULL) {
			snprintf(f, sizeof(f), "peers[%zu].clientCertRequired", i);
			return fail(e, ERR_INVAL, f, "needs tls.clientCa (or set "
			    "it to false)");
		}
	}
	return 0;
}

static int
load_doc(struct tsm_config **out, json_t *root, const char *path,
    const struct tsm_config_args *a, struct cerr *e)
{
	struct tsm_config *c = config_defaults();
	int rc;

	*out = NULL;
	if (c == NULL)
		return fail(e, ERR_NOMEM, "config", "out of memory");
	if (root != NULL && (rc = parse_doc(e, c, root)) != 0)
		goto fail;
	if (path != NULL && set_str(&c->path, path) != 0) {
		rc = fail(e, ERR_NOMEM, "config", "out of memory");
		goto fail;
	}
	if ((rc = finish(e, c, a)) != 0)
		goto fail;
	*out = c;
	return 0;
fail:
	config_free(c);
	return rc;
}

int
tsm_config_parse(struct tsm_config **out, const char *json, size_t n,
    const struct tsm_config_args *a, char *err, size_t errcap)
{
	struct cerr e = { err, errcap };
	json_error_t je;
	json_t *root;
	int rc;

	root = json_loadb(json, n, JSON_REJECT_DUPLICATES, &je);
	if (root == NULL)
		return fail(&e, ERR_PARSE, "config", "line %d column %d: %s",
		    je.line, je.column, je.text);
	rc = load_doc(out, root, NULL, a, &e);
	json_decref(root);
	return rc;
}

int
tsm_config_load(struct tsm_config **out, const struct tsm_config_args *a,
    char *err, size_t errcap)
{
	struct cerr e = { err, errcap };
	char defpath[CFG_MAX_PATH + 64];
	const char *path = a->config;
	json_error_t je;
	json_t *root = NULL;
	struct buf b;
	int rc;

	*out = NULL;
	if (path == NULL) {
		snprintf(defpath, sizeof(defpath), "%s/tsm/tsmd.json",
		    a->var ? a->var : "./var");
		if (access(defpath, F_OK) == 0)
			path = defpath;
	}
	if (path == NULL)
		return load_doc(out, NULL, NULL, a, &e);
	buf_init(&b);
	if ((rc = file_read_all(path, CFG_MAX_FILE, &b)) != 0) {
		fail(&e, rc, "--config", "cannot read %s: %s", path, err_str(rc));
		goto out;
	}
	root = json_loadb((const char *)b.p, b.len, JSON_REJECT_DUPLICATES, &je);
	if (root == NULL) {
		rc = fail(&e, ERR_PARSE, path, "line %d column %d: %s", je.line,
		    je.column, je.text);
		goto out;
	}
	rc = load_doc(out, root, path, a, &e);
out:
	json_decref(root);
	buf_free(&b);
	return rc;
}
