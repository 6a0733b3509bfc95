/*
 * fuzz_http_json.c - libFuzzer target for what tsmd's HTTP framework reads
 * from the network before any handler runs: the JSON size/depth
 * pre-checker (and jansson behind it), the router's path matcher and the
 * X-TSM-Signature header parser. The first byte picks the parser.
 */
#include <stdlib.h>
#include <string.h>

#include "tsm/http/http_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct http_router *router;

static int
h_none(struct http_req *rq, struct http_resp *rs, void *arg)
{
	return 0;
}

static void
router_init(void)
{
	static const char *const pat[] = { "/healthz", "/metrics",
		"/api/v1/ses/{seId}", "/api/v1/ses/{seId}/ssds",
		"/api/v1/ses/{seId}/ssds/{sdAid}/{op}", "/api/v1/certs/{serial}",
		"/api/v1/certs/crl", "/api/v1/sei/key-sync", "/", "/a/{b}/c/{d}/e" };
	size_t i;

	if (http_router_new(&router, NULL) != 0)
		abort();
	for (i = 0; i < ARRAY_LEN(pat); i++)
		if (http_route_add(router, i % 3 ? "GET" : "POST", pat[i],
		    HTTP_AUTH_NONE, h_none, NULL) != 0)
			abort();
}

static void
check_match(const char *method, const char *path)
{
	struct http_match m;
	size_t i;
	int rc = http_router_match(router, method, path, &m);

	if (rc == HTTP_MATCH_OK) {
		if (m.route >= router->n || m.nparams > HTTP_MAX_PARAMS)
			abort();
		for (i = 0; i < m.nparams; i++)
			if (m.value[i] < m.buf || m.value[i] >= m.buf + sizeof(m.buf) ||
			    m.value[i][0] == '\0' || strchr(m.value[i], '/') != NULL)
				abort();
	} else if (rc == HTTP_MATCH_NOMETHOD) {
		if (strnlen(m.allow, sizeof(m.allow)) == sizeof(m.allow) ||
		    m.allow[0] == '\0')
			abort();
	} else if (rc != HTTP_MATCH_NOPATH)
		abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const methods[] = { "GET", "POST", "HEAD", "PUT" };
	char *s;
	size_t where;
	int rc;

	if (router == NULL)
		router_init();
	if (size < 2)
		return 0;
	switch (data[0] % 3) {
	case 0: {
		unsigned depth = 1 + data[1] % 40;
		json_t *j;

		rc = http_json_precheck(data + 2, size - 2, 4096, depth, &where);
		if (where > size - 2)
			abort();
		if (rc == 0 && size > 2) {
			/* What passed the pre-check cannot nest deeper. */
			j = json_loadb((const char *)data + 2, size - 2, 0, NULL);
			json_decref(j);
		}
		break;
	}
	case 1:
	case 2:
		if ((s = malloc(size - 1)) == NULL)
			abort();
		memcpy(s, data + 2, size - 2);
		s[size - 2] = '\0';
		if (data[0] % 3 == 1)
			check_match(methods[data[1] % 4], s);
		else {
			struct http_sig sig;

			if (http_sig_parse(s, &sig) == 0 &&
			    (sig.key_id[0] == '\0' || strlen(sig.nonce) != 32 ||
			    sig.ts < 0))
				abort();
		}
		free(s);
		break;
	}
	return 0;
}
