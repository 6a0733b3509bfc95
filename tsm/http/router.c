/*
 * router.c - the route table of tsmd's HTTP server and the path matcher:
 * (method, "/literal/{param}") -> handler and auth kind. The matcher is
 * pure and sees raw request paths, so it checks every bound (fuzzed by
 * tests/fuzz/fuzz_http_json.c). Runs on every worker thread, read-only.
 */
#include <stdlib.h>
#include <string.h>

#include "tsm/http/http_int.h"

static const char *const methods[] = { "GET", "POST", "PUT", "DELETE", "PATCH" };

int
http_router_new(struct http_router **out, void *app)
{
	struct http_router *r = calloc(1, sizeof(*r));

	*out = NULL;
	if (r == NULL)
		return ERR_NOMEM;
	r->app = app;
	*out = r;
	return 0;
}

static void
route_clear(struct http_route *rt)
{
	size_t i;

	for (i = 0; i < rt->nseg; i++)
		free(rt->seg[i]);
	free(rt->pattern);
}

void
http_router_free(struct http_router *r)
{
	size_t i;

	if (r == NULL)
		return;
	for (i = 0; i < r->n; i++)
		route_clear(&r->r[i]);
	free(r->r);
	free(r);
}

static int
name_ok(const char *s, size_t n)
{
	size_t i;

	if (n == 0 || n > 32)
		return 0;
	for (i = 0; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
		    (s[i] >= '0' && s[i] <= '9') || s[i] == '_'))
			return 0;
	return 1;
}

/* Literal segments of patterns: unreserved URL characters only. */
static int
literal_ok(const char *s, size_t n)
{
	size_t i;

	if (n == 0)
		return 0;
	for (i = 0; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
		    (s[i] >= '0' && s[i] <= '9') || s[i] == '_' || s[i] == '-' ||
		    s[i] == '.' || s[i] == '~'))
			return 0;
	return 1;
}

static int
route_parse(struct http_route *rt, const char *pattern)
{
	const char *p = pattern, *e;
	size_t n, j;

	if (pattern[0] != '/' || strlen(pattern) > 512)
		return ERR_INVAL;
	if ((rt->pattern = strdup(pattern)) == NULL)
		return ERR_NOMEM;
	if (strcmp(pattern, "/") == 0)
		return 0;	/* the root: zero segments */
	while (*p == '/') {
		p++;
		e = strchr(p, '/');
		n = e ? (size_t)(e - p) : strlen(p);
		if (rt->nseg == HTTP_MAX_SEGS)
			return ERR_LIMIT;
		if (n >= 2 && p[0] == '{' && p[n - 1] == '}') {
			if (!name_ok(p + 1, n - 2) || rt->nparams == HTTP_MAX_PARAMS)
				return ERR_INVAL;
			rt->param[rt->nseg] = 1;
			rt->seg[rt->nseg] = strndup(p + 1, n - 2);
			for (j = 0; rt->seg[rt->nseg] != NULL && j < rt->nseg; j++)
				if (rt->param[j] && strcmp(rt->seg[j],
				    rt->seg[rt->nseg]) == 0) {
					free(rt->seg[rt->nseg]);
					return ERR_INVAL;	/* duplicate name */
				}
			rt->nparams++;
		} else {
			if (!literal_ok(p, n))
				return ERR_INVAL;
			rt->seg[rt->nseg] = strndup(p, n);
		}
		if (rt->seg[rt->nseg] == NULL)
			return ERR_NOMEM;
		rt->nseg++;
		p += n;
	}
	return *p == '\0' ? 0 : ERR_INVAL;
}

/* Same method and same shape (params count as equal). */
static int
route_same(const struct http_route *a, const struct http_route *b)
{
	size_t i;

	if (strcmp(a->method, b->method) != 0 || a->nseg != b->nseg)
		return 0;
	for (i = 0; i < a->nseg; i++) {
		if (a->param[i] != b->param[i])
			return 0;
		if (!a->param[i] && strcmp(a->seg[i], b->seg[i]) != 0)
			return 0;
	}
	return 1;
}

int
http_route_add(struct http_router *r, const char *method, const char *pattern,
    enum http_auth auth, http_handler_fn fn, void *arg)
{
	struct http_route rt;
	size_t i;
	int rc, known = 0;

	memset(&rt, 0, sizeof(rt));
	if (r == NULL || method == NULL || pattern == NULL || fn == NULL ||
	    auth > HTTP_AUTH_SEI_PEER)
		return ERR_INVAL;
	for (i = 0; i < ARRAY_LEN(methods); i++)
		known |= strcmp(method, methods[i]) == 0;
	if (!known)
		return ERR_INVAL;
	strcpy(rt.method, method);
	rt.auth = auth;
	rt.fn = fn;
	rt.arg = arg;
	if ((rc = route_parse(&rt, pattern)) != 0)
		goto fail;
	for (i = 0; i < r->n; i++)
		if (route_same(&r->r[i], &rt)) {
			rc = ERR_EXISTS;
			goto fail;
		}
	if (r->n == r->cap) {
		size_t ncap = r->cap ? r->cap * 2 : 16;
		struct http_route *nr = realloc(r->r, ncap * sizeof(*nr));

		if (nr == NULL) {
			rc = ERR_NOMEM;
			goto fail;
		}
		r->r = nr;
		r->cap = ncap;
	}
	r->r[r->n++] = rt;
	return 0;
fail:
	route_clear(&rt);
	return rc;
}

int
http_route_extend(struct http_router *r, const char *method,
    const char *pattern, const struct http_route_ext *x)
{
	size_t i;

	if (r == NULL || method == NULL || pattern == NULL || x == NULL)
		return ERR_INVAL;
	for (i = 0; i < r->n; i++)
		if (strcmp(r->r[i].method, method) == 0 &&
		    strcmp(r->r[i].pattern, pattern) == 0) {
			if ((x->nonce_durable || x->mac_in_handler) &&
			    r->r[i].auth != HTTP_AUTH_SEI_PEER)
				return ERR_INVAL;
			if (x->mac_in_handler && x->inline_ok)
				return ERR_INVAL;	/* kmsd is a wait */
			if (x->starts_on_io && !x->mac_in_handler)
				return ERR_INVAL;
			r->r[i].ext = *x;
			return 0;
		}
	return ERR_NOTFOUND;
}

/* ---- matching ---- */

/* Splits the path (copied into m->buf) into NUL-terminated segments.
 * Returns the count, or -1 when the path cannot match any route. */
static int
split(const char *path, struct http_match *m, char **seg)
{
	size_t n = 0, len, i;
	char *p;

	len = strnlen(path, HTTP_MAX_PATH + 1);
	if (len == 0 || len > HTTP_MAX_PATH || path[0] != '/')
		return -1;
	for (i = 0; i < len; i++)
		if ((unsigned char)path[i] < 0x20 || path[i] == 0x7f)
			return -1;
	memcpy(m->buf, path, len + 1);
	if (len == 1)
		return 0;
	p = m->buf;
	while (*p == '/') {
		*p++ = '\0';
		if (n == HTTP_MAX_SEGS)
			return -1;
		seg[n++] = p;
		p += strcspn(p, "/");
	}
	return (int)n;
}

/* Higher is more specific: a literal beats a param, earlier places weigh
 * more. */
static uint32_t
route_score(const struct http_route *rt)
{
	uint32_t s = 0;
	size_t i;

	for (i = 0; i < rt->nseg; i++)
		if (!rt->param[i])
			s |= 1u << (31 - i);
	return s;
}

static int
seg_match(const struct http_route *rt, char *const *seg, size_t nseg)
{
	size_t i;

	if (rt->nseg != nseg)
		return 0;
	for (i = 0; i < nseg; i++) {
		if (rt->param[i]) {
			if (seg[i][0] == '\0')
				return 0;
		} else if (strcmp(rt->seg[i], seg[i]) != 0)
			return 0;
	}
	return 1;
}

static void
allow_add(struct http_match *m, const char *method)
{
	size_t used = strlen(m->allow);

	if (strstr(m->allow, method) != NULL)
		return;
	if (used + strlen(method) + 3 > sizeof(m->allow))
		return;
	if (used)
		strcat(m->allow, ", ");
	strcat(m->allow, method);
	if (strcmp(method, "GET") == 0 && used + 12 < sizeof(m->allow))
		strcat(m->allow, ", HEAD");
}

int
http_router_match(const struct http_router *r, const char *method,
    const char *path, struct http_match *m)
{
	char *seg[HTTP_MAX_SEGS];
	const char *want;
	uint32_t best = 0, sc;
	size_t i, j, found = (size_t)-1;
	int nseg, any = 0;

	m->nparams = 0;
	m->allow[0] = '\0';
	m->route = (size_t)-1;
	if (r == NULL || method == NULL || path == NULL)
		return HTTP_MATCH_NOPATH;
	if ((nseg = split(path, m, seg)) < 0)
		return HTTP_MATCH_NOPATH;
	want = strcmp(method, "HEAD") == 0 ? "GET" : method;
	for (i = 0; i < r->n; i++) {
		const struct http_route *rt = &r->r[i];

		if (!seg_match(rt, seg, (size_t)nseg))
			continue;
		any = 1;
		if (strcmp(rt->method, want) != 0) {
			allow_add(m, rt->method);
			continue;
		}
		sc = route_score(rt);
		if (found == (size_t)-1 || sc > best) {
			found = i;
			best = sc;
		}
	}
	if (found == (size_t)-1)
		return any ? HTTP_MATCH_NOMETHOD : HTTP_MATCH_NOPATH;
	m->route = found;
	for (j = 0; j < r->r[found].nseg; j++) {
		if (!r->r[found].param[j])
			continue;
		m->name[m->nparams] = r->r[found].seg[j];
		m->value[m->nparams] = seg[j];
		m->nparams++;
	}
	return HTTP_MATCH_OK;
}
