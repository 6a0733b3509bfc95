/*
 * http_router_test.c - the route table and path matcher of tsm/http/
 * (registration rules, literal-over-param precedence, 404/405, HEAD, every
 * malformed path), and the JSON size/depth pre-checker.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tsm/http/http_int.h"
#include "tests/tap.h"

static int
h_dummy(struct http_req *rq, struct http_resp *rs, void *arg)
{
	return 0;
}

static int tag[8];

static struct http_router *
make_router(void)
{
	struct http_router *r;

	if (http_router_new(&r, NULL) != 0)
		bail("router");
	if (http_route_add(r, "GET", "/healthz", HTTP_AUTH_NONE, h_dummy, &tag[0]) ||
	    http_route_add(r, "GET", "/api/v1/ses/{seId}", HTTP_AUTH_PROVIDER,
	    h_dummy, &tag[1]) ||
	    http_route_add(r, "POST", "/api/v1/ses/{seId}/ssds/{sdAid}/{op}",
	    HTTP_AUTH_PROVIDER, h_dummy, &tag[2]) ||
	    http_route_add(r, "GET", "/api/v1/certs/{serial}", HTTP_AUTH_ADMIN,
	    h_dummy, &tag[3]) ||
	    http_route_add(r, "GET", "/api/v1/certs/crl", HTTP_AUTH_NONE, h_dummy,
	    &tag[4]) ||
	    http_route_add(r, "POST", "/api/v1/sei/key-sync", HTTP_AUTH_SEI_PEER,
	    h_dummy, &tag[5]) ||
	    http_route_add(r, "DELETE", "/api/v1/ses/{seId}", HTTP_AUTH_ADMIN,
	    h_dummy, &tag[6]) ||
	    http_route_add(r, "GET", "/", HTTP_AUTH_NONE, h_dummy, &tag[7]))
		bail("route_add");
	return r;
}

static void
test_register(void)
{
	struct http_router *r = make_router();
	static const char *const bad[] = { "", "healthz", "/a//b", "/a/", "/{}",
		"/{a b}", "/{a}/{a}", "/a/{b", "/a b", "/a/%2F", "//" };
	size_t i;

	for (i = 0; i < ARRAY_LEN(bad); i++)
		is_int(http_route_add(r, "GET", bad[i], HTTP_AUTH_NONE, h_dummy, NULL),
		    ERR_INVAL, "pattern \"%s\" refused", bad[i]);
	is_int(http_route_add(r, "FETCH", "/x", HTTP_AUTH_NONE, h_dummy, NULL),
	    ERR_INVAL, "unknown method refused");
	is_int(http_route_add(r, "GET", "/x", (enum http_auth)99, h_dummy, NULL),
	    ERR_INVAL, "unknown auth kind refused");
	is_int(http_route_add(r, "GET", "/x", HTTP_AUTH_NONE, NULL, NULL),
	    ERR_INVAL, "NULL handler refused");
	is_int(http_route_add(r, "GET", "/api/v1/ses/{other}", HTTP_AUTH_NONE,
	    h_dummy, NULL), ERR_EXISTS, "same method and shape refused "
	    "(param names do not matter)");
	is_int(http_route_add(r, "POST", "/api/v1/ses/{seId}", HTTP_AUTH_NONE,
	    h_dummy, NULL), 0, "same shape, other method accepted");
	is_int(http_route_add(r, "GET", "/a/{p1}/{p2}/{p3}/{p4}/{p5}/{p6}/{p7}/{p8}/{p9}",
	    HTTP_AUTH_NONE, h_dummy, NULL), ERR_INVAL, "more than %d params refused",
	    HTTP_MAX_PARAMS);
	http_router_free(r);
}

static void
test_match(void)
{
	struct http_router *r = make_router();
	struct http_match *m = malloc(sizeof(*m));
	char longp[HTTP_MAX_PATH + 16];
	static const char *const nomatch[] = { "/healthz/", "healthz", "",
		"/api/v1/ses/", "/api/v1/ses//ssds/a/lock", "/api/v1/ses/x/y",
		"/HEALTHZ", "/healthz\n", "/api/v1/ses/a\tb", "//healthz" };
	size_t i;

	if (m == NULL)
		bail("malloc");
	is_int(http_router_match(r, "GET", "/healthz", m), HTTP_MATCH_OK,
	    "literal route");
	ok(r->r[m->route].arg == &tag[0] && m->nparams == 0, "right route, no params");
	is_int(http_router_match(r, "HEAD", "/healthz", m), HTTP_MATCH_OK,
	    "HEAD served by the GET route");
	is_int(http_router_match(r, "GET", "/", m), HTTP_MATCH_OK, "root route");
	ok(r->r[m->route].arg == &tag[7], "root is its own route");

	is_int(http_router_match(r, "POST", "/api/v1/ses/SE01/ssds/A0000001/lock",
	    m), HTTP_MATCH_OK, "three params");
	ok(m->nparams == 3 && strcmp(m->name[0], "seId") == 0 &&
	    strcmp(m->value[0], "SE01") == 0 && strcmp(m->name[1], "sdAid") == 0 &&
	    strcmp(m->value[1], "A0000001") == 0 && strcmp(m->value[2], "lock") == 0,
	    "param names and values");

	is_int(http_router_match(r, "GET", "/api/v1/certs/crl", m), HTTP_MATCH_OK,
	    "literal vs param");
	ok(r->r[m->route].arg == &tag[4], "the literal segment wins");
	is_int(http_router_match(r, "GET", "/api/v1/certs/0a1b", m), HTTP_MATCH_OK,
	    "param route still reachable");
	ok(r->r[m->route].arg == &tag[3] && strcmp(m->value[0], "0a1b") == 0,
	    "serial param");

	is_int(http_router_match(r, "PUT", "/healthz", m), HTTP_MATCH_NOMETHOD,
	    "wrong method -> 405");
	ok(strcmp(m->allow, "GET, HEAD") == 0, "Allow: %s", m->allow);
	is_int(http_router_match(r, "PATCH", "/api/v1/ses/x", m),
	    HTTP_MATCH_NOMETHOD, "wrong method on a param route");
	ok(strstr(m->allow, "GET") && strstr(m->allow, "DELETE"), "Allow lists "
	    "both: %s", m->allow);

	for (i = 0; i < ARRAY_LEN(nomatch); i++)
		is_int(http_router_match(r, "GET", nomatch[i], m), HTTP_MATCH_NOPATH,
		    "no match for path #%zu", i);
	memset(longp, 'a', sizeof(longp) - 1);
	longp[0] = '/';
	longp[sizeof(longp) - 1] = '\0';
	is_int(http_router_match(r, "GET", longp, m), HTTP_MATCH_NOPATH,
	    "path longer than %d", HTTP_MAX_PATH);
	for (i = 0; i + 1 < 2 * HTTP_MAX_SEGS + 4; i++)
		longp[i] = i % 2 ? 'x' : '/';
	longp[i] = '\0';
	is_int(http_router_match(r, "GET", longp, m), HTTP_MATCH_NOPATH,
	    "more than %d segments", HTTP_MAX_SEGS);
	is_int(http_router_match(r, NULL, "/healthz", m), HTTP_MATCH_NOPATH,
	    "NULL method");
	is_int(http_router_match(NULL, "GET", "/healthz", m), HTTP_MATCH_NOPATH,
	    "NULL router");
	free(m);
	http_router_free(r);
}

static int
pre(const char *s, unsigned depth, size_t *where)
{
	return http_json_precheck((const uint8_t *)s, strlen(s), 1024, depth, where);
}

static void
test_json(void)
{
	char deep[600];
	size_t w, i;

	is_int(pre("{\"a\":[1,{\"b\":2}]}", 3, &w), 0, "depth 3 within 3");
	is_int(pre("{\"a\":[1,{\"b\":2}]}", 2, &w), ERR_LIMIT, "depth 3 over 2");
	ok(w == 8, "offset of the first too-deep bracket (%zu)", w);
	is_int(pre("{\"a\":\"[[[[[[[[[[\"}", 1, &w), 0, "brackets in strings "
	    "do not count");
	is_int(pre("{\"a\":\"\\\"[[[[\"}", 1, &w), 0, "escaped quote keeps the "
	    "string open");
	is_int(pre("{\"a\":\"\\\\\"}", 1, &w), 0, "escaped backslash closes it");
	is_int(pre("[}", 4, &w), ERR_PARSE, "mismatched brackets");
	is_int(pre("]", 4, &w), ERR_PARSE, "close without open");
	is_int(pre("{\"a\":1", 4, &w), ERR_PARSE, "unclosed object");
	is_int(pre("{\"a", 4, &w), ERR_PARSE, "unterminated string");
	is_int(http_json_precheck((const uint8_t *)"{\"a\0\":1}", 8, 1024, 4, &w),
	    ERR_PARSE, "NUL byte");
	is_int(http_json_precheck((const uint8_t *)"{}", 2, 1, 4, &w), ERR_TOOBIG,
	    "over the size limit");
	is_int(pre("", 4, &w), 0, "empty is not its business");
	for (i = 0; i < 300; i++) {
		deep[i] = '[';
		deep[300 + i] = ']';
	}
	is_int(http_json_precheck((const uint8_t *)deep, 600, 1024, 300, &w),
	    ERR_LIMIT, "depth capped at %d whatever the limit asks",
	    HTTP_JSON_DEPTH_MAX);
	is_int(http_json_precheck((const uint8_t *)deep + 300 - 256, 512, 1024,
	    1000, &w), 0, "exactly %d levels pass", HTTP_JSON_DEPTH_MAX);
	{	/* crosses a 64-bit word of the bracket stack */
		char s[400];
		size_t n = 0;

		for (i = 0; i < 70; i++) {
			s[n++] = '[';
		}
		s[n++] = '{';
		s[n++] = '}';
		for (i = 0; i < 70; i++)
			s[n++] = ']';
		is_int(http_json_precheck((const uint8_t *)s, n, 1024, 100, &w), 0,
		    "71 levels across words balance");
		s[n - 70] = '}';
		is_int(http_json_precheck((const uint8_t *)s, n, 1024, 100, &w),
		    ERR_PARSE, "a wrong closer deep down is caught");
	}
}

int
main(void)
{
	test_register();
	test_match();
	test_json();
	return done_testing();
}
