/*
 * apikeys.c - bearer API keys of the operator/provider API: only SHA-256
 * hashes are kept (in memory and in VAR/tsm/apikeys), keys are 256 random
 * bits so a plain hash is enough. Runs in tsmd on the worker threads (check)
 * and from admin handlers (create/revoke); the key file is rewritten
 * atomically. Presented keys are outside input.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/rand.h>

#include "tsm/http/http_int.h"

#define KEY_PREFIX   "tsmk_"
#define KEY_MAX_LEN  256
#define KEYS_MAX     4096
#define LINE_MAX_LEN 512
#define KEYS_HEADER  "# tsmd API keys: id role provider sha256(key) created " \
	"(tsm/http/README.md)\n"

struct key_ent {
	char     id[24];
	int      role;
	char     provider[65];
	uint8_t  hash[32];
	int64_t  created;
};

struct http_apikeys {
	pthread_rwlock_t lock;
	char            *path;
	struct key_ent  *k;
	size_t           n;
};

int
http_role_parse(const char *s)
{
	if (s != NULL && strcmp(s, "admin") == 0)
		return HTTP_ROLE_ADMIN;
	if (s != NULL && strcmp(s, "provider") == 0)
		return HTTP_ROLE_PROVIDER;
	return HTTP_ROLE_NONE;
}

const char *
http_role_name(int role)
{
	return role == HTTP_ROLE_ADMIN ? "admin" :
	    role == HTTP_ROLE_PROVIDER ? "provider" : "none";
}

/* ---- file ---- */

static int
parse_line(char *line, struct key_ent *e)
{
	char *f[6], *save = NULL, *end;
	size_t n = 0, hl;
	long long created;

	for (char *t = strtok_r(line, " ", &save); t != NULL;
	    t = strtok_r(NULL, " ", &save)) {
		if (n == ARRAY_LEN(f))
			return ERR_PARSE;
		f[n++] = t;
	}
	if (n != 5)
		return ERR_PARSE;
	memset(e, 0, sizeof(*e));
	if (strlen(f[0]) >= sizeof(e->id) ||
	    !http_ident_ok(f[0], strlen(f[0])))
		return ERR_PARSE;
	strcpy(e->id, f[0]);
	if ((e->role = http_role_parse(f[1])) == HTTP_ROLE_NONE)
		return ERR_PARSE;
	if (e->role == HTTP_ROLE_PROVIDER) {
		if (!http_ident_ok(f[2], strlen(f[2])))
			return ERR_PARSE;
		strcpy(e->provider, f[2]);
	} else if (strcmp(f[2], "-") != 0)
		return ERR_PARSE;
	if (hex_decode(f[3], strlen(f[3]), e->hash, sizeof(e->hash), &hl) != 0 ||
	    hl != 32)
		return ERR_PARSE;
	errno = 0;
	created = strtoll(f[4], &end, 10);
	if (errno != 0 || *end != '\0' || created < 0)
		return ERR_PARSE;
	e->created = created;
	return 0;
}

static int
keys_read(const char *path, struct key_ent **out, size_t *nout)
{
	struct key_ent *k = NULL;
	size_t n = 0, lineno = 0, off = 0;
	struct buf b;
	int rc;

	*out = NULL;
	*nout = 0;
	buf_init(&b);
	if ((rc = file_read_all(path, (size_t)KEYS_MAX * LINE_MAX_LEN, &b)) != 0)
		goto out;
	if ((k = calloc(KEYS_MAX, sizeof(*k))) == NULL) {
		rc = ERR_NOMEM;
		goto out;
	}
	while (off < b.len) {
		char line[LINE_MAX_LEN + 1];
		size_t ll = 0;

		lineno++;
		while (off + ll < b.len && b.p[off + ll] != '\n')
			ll++;
		if (ll > LINE_MAX_LEN || memchr(b.p + off, '\0', ll) != NULL) {
			rc = ERR_PARSE;
			break;
		}
		memcpy(line, b.p + off, ll);
		line[ll] = '\0';
		off += ll + 1;
		if (ll == 0 || line[0] == '#')
			continue;
		if (n == KEYS_MAX) {
			rc = ERR_LIMIT;
			break;
		}
		if ((rc = parse_line(line, &k[n])) != 0)
			break;
		n++;
	}
	if (rc != 0)
		log_msg(LOG_ERR, "event=apikeys_bad_file path=%s line=%zu err=%s",
		    path, lineno, err_name(rc));
out:
	buf_free(&b);
	if (rc != 0) {
		free(k);
		return rc;
	}
	*out = k;
	*nout = n;
	return 0;
}

/* Called with the write lock held. */
static int
keys_write(struct http_apikeys *ak, const struct key_ent *k, size_t n)
{
	struct buf b;
	char hx[65], line[LINE_MAX_LEN];
	size_t i;
	int rc = 0, len;

	buf_init(&b);
	if ((rc = buf_put(&b, KEYS_HEADER, strlen(KEYS_HEADER))) != 0)
		goto out;
	for (i = 0; i < n; i++) {
		hex_encode(k[i].hash, 32, hx);
		len = snprintf(line, sizeof(line), "%s %s %s %s %lld\n", k[i].id,
		    http_role_name(k[i].role), k[i].provider[0] ? k[i].provider :
		    "-", hx, (long long)k[i].created);
		if (len < 0 || (size_t)len >= sizeof(line) ||
		    (rc = buf_put(&b, line, (size_t)len)) != 0) {
			rc = rc ? rc : ERR_INTERNAL;
			goto out;
		}
	}
	rc = file_write_atomic(ak->path, b.p, b.len, 0600);
out:
	buf_free(&b);
	return rc;
}

int
http_apikeys_open(struct http_apikeys **out, const char *path)
{
	struct http_apikeys *ak = calloc(1, sizeof(*ak));
	int rc;

	*out = NULL;
	if (ak == NULL || (ak->path = strdup(path)) == NULL) {
		free(ak);
		return ERR_NOMEM;
	}
	pthread_rwlock_init(&ak->lock, NULL);
	rc = keys_read(path, &ak->k, &ak->n);
	if (rc == ERR_NOTFOUND)
		rc = 0;		/* no file yet: first run */
	if (rc != 0) {
		http_apikeys_free(ak);
		return rc;
	}
	*out = ak;
	return 0;
}

void
http_apikeys_free(struct http_apikeys *ak)
{
	if (ak == NULL)
		return;
	pthread_rwlock_destroy(&ak->lock);
	free(ak->k);
	free(ak->path);
	free(ak);
}

int
http_apikeys_reload(struct http_apikeys *ak)
{
	struct key_ent *k, *old;
	size_t n;
	int rc;

	if ((rc = keys_read(ak->path, &k, &n)) != 0)
		return rc;
	pthread_rwlock_wrlock(&ak->lock);
	old = ak->k;
	ak->k = k;
	ak->n = n;
	pthread_rwlock_unlock(&ak->lock);
	free(old);
	return 0;
}

int
http_apikeys_check(struct http_apikeys *ak, const char *key,
    struct http_identity *id)
{
	uint8_t h[32];
	size_t i, n = strnlen(key, KEY_MAX_LEN + 1);
	int rc = ERR_AUTH, hit = 0;

	memset(id, 0, sizeof(*id));
	if (n == 0 || n > KEY_MAX_LEN || sha256_of(key, n, h) != 0)
		return ERR_AUTH;
	pthread_rwlock_rdlock(&ak->lock);
	/* Every entry is compared so the time does not depend on where the
	 * key sits. */
	for (i = 0; i < ak->n; i++) {
		int eq = ct_equal(h, ak->k[i].hash, 32);

		if (eq && !hit) {
			hit = 1;
			id->role = ak->k[i].role;
			memcpy(id->key_id, ak->k[i].id, sizeof(id->key_id));
			memcpy(id->provider, ak->k[i].provider, sizeof(id->provider));
			rc = 0;
		}
	}
	pthread_rwlock_unlock(&ak->lock);
	wipe(h, sizeof(h));
	return rc;
}

/* Makes a key and its entry. key_out gets "tsmk_" + 64 hex. */
static int
key_make(int role, const char *provider, struct key_ent *e, char *key_out,
    size_t cap)
{
	uint8_t raw[32], idb[6];
	char hx[65];
	int rc;

	if (cap < sizeof(KEY_PREFIX) + 64)
		return ERR_INVAL;
	memset(e, 0, sizeof(*e));
	if (RAND_bytes(raw, sizeof(raw)) != 1 || RAND_bytes(idb, sizeof(idb)) != 1)
		return ERR_CRYPTO;
	hex_encode(raw, sizeof(raw), hx);
	snprintf(key_out, cap, "%s%s", KEY_PREFIX, hx);
	wipe(raw, sizeof(raw));
	wipe(hx, sizeof(hx));
	e->id[0] = 'k';
	hex_encode(idb, sizeof(idb), e->id + 1);
	e->role = role;
	if (provider != NULL)
		snprintf(e->provider, sizeof(e->provider), "%s", provider);
	e->created = wall_seconds();
	if ((rc = sha256_of(key_out, strlen(key_out), e->hash)) != 0)
		wipe(key_out, cap);
	return rc;
}

/* Appends e and persists; on failure the set is unchanged. */
static int
keys_append(struct http_apikeys *ak, const struct key_ent *e)
{
	struct key_ent *nk;
	int rc;

	pthread_rwlock_wrlock(&ak->lock);
	if (ak->n >= KEYS_MAX) {
		rc = ERR_LIMIT;
		goto out;
	}
	if ((nk = malloc((ak->n + 1) * sizeof(*nk))) == NULL) {
		rc = ERR_NOMEM;
		goto out;
	}
	if (ak->n)
		memcpy(nk, ak->k, ak->n * sizeof(*nk));
	nk[ak->n] = *e;
	if ((rc = keys_write(ak, nk, ak->n + 1)) != 0) {
		free(nk);
		goto out;
	}
	free(ak->k);
	ak->k = nk;
	ak->n++;
out:
	pthread_rwlock_unlock(&ak->lock);
	return rc;
}

int
http_apikeys_create(struct http_apikeys *ak, int role, const char *provider,
    char *key_out, size_t cap, char *id_out, size_t idcap)
{
	struct key_ent e;
	int rc;

	if (idcap < sizeof(e.id))
		return ERR_INVAL;
	if (role == HTTP_ROLE_PROVIDER) {
		if (provider == NULL ||
		    !http_ident_ok(provider, strlen(provider)))
			return ERR_INVAL;
	} else if (role == HTTP_ROLE_ADMIN)
		provider = NULL;
	else
		return ERR_INVAL;
	if ((rc = key_make(role, provider, &e, key_out, cap)) != 0)
		return rc;
	if ((rc = keys_append(ak, &e)) != 0) {
		wipe(key_out, cap);
		return rc;
	}
	snprintf(id_out, idcap, "%s", e.id);
	return 0;
}

int
http_apikeys_revoke(struct http_apikeys *ak, const char *id)
{
	struct key_ent *nk = NULL;
	size_t i, j = 0;
	int rc = ERR_NOTFOUND;

	pthread_rwlock_wrlock(&ak->lock);
	for (i = 0; i < ak->n; i++)
		if (strcmp(ak->k[i].id, id) == 0)
			break;
	if (i == ak->n)
		goto out;
	if (ak->n > 1 && (nk = malloc((ak->n - 1) * sizeof(*nk))) == NULL) {
		rc = ERR_NOMEM;
		goto out;
	}
	for (i = 0; i < ak->n; i++)
		if (strcmp(ak->k[i].id, id) != 0)
			nk[j++] = ak->k[i];
	if ((rc = keys_write(ak, nk, j)) != 0) {
		free(nk);
		goto out;
	}
	free(ak->k);
	ak->k = nk;
	ak->n = j;
out:
	pthread_rwlock_unlock(&ak->lock);
	return rc;
}

int
http_apikeys_list(struct http_apikeys *ak, json_t **out)
{
	json_t *a = json_array();
	size_t i;
	int rc = 0;

	*out = NULL;
	if (a == NULL)
		return ERR_NOMEM;
	pthread_rwlock_rdlock(&ak->lock);
	for (i = 0; i < ak->n && rc == 0; i++) {
		json_t *o = json_pack("{s:s, s:s, s:s?, s:I}", "id", ak->k[i].id,
		    "role", http_role_name(ak->k[i].role), "providerId",
		    ak->k[i].provider[0] ? ak->k[i].provider : NULL, "created",
		    (json_int_t)ak->k[i].created);

		if (o == NULL || json_array_append_new(a, o) != 0)
			rc = ERR_NOMEM;
	}
	pthread_rwlock_unlock(&ak->lock);
	if (rc != 0) {
		json_decref(a);
		return rc;
	}
	*out = a;
	return 0;
}

int
http_apikeys_bootstrap(struct http_apikeys *ak, const char *admin_key_path,
    int *created)
{
	char key[80], line[82], id[24];
	struct stat st;
	int rc;

	*created = 0;
	if (stat(ak->path, &st) == 0)
		return 0;	/* not the first run */
	if ((rc = http_apikeys_create(ak, HTTP_ROLE_ADMIN, NULL, key, sizeof(key),
	    id, sizeof(id))) != 0)
		return rc;
	snprintf(line, sizeof(line), "%s\n", key);
	rc = file_write_atomic(admin_key_path, line, strlen(line), 0600);
	wipe(key, sizeof(key));
	wipe(line, sizeof(line));
	if (rc != 0) {
		/* Without the file nobody could use the key: take it back so
		 * the next start tries again. */
		(void)!http_apikeys_revoke(ak, id);
		(void)unlink(ak->path);
		return rc;
	}
	log_msg(LOG_INFO, "event=admin_key_created key_id=%s path=%s", id,
	    admin_key_path);
	*created = 1;
	return 0;
}
