/*
 * builtin.c - the routes every tsmd serves whatever else is plugged in:
 * health, Prometheus metrics, API-key management for admins, "who am I",
 * and connectivity checks for SEI-TSM peers (client certificate, then
 * signature). Runs in tsmd on the worker threads.
 */
#include <stdio.h>
#include <string.h>

#include "tsm/http/http_int.h"

static int
h_healthz(struct http_req *rq, struct http_resp *rs, void *arg)
{
	int st = tsm_kms_health();
	const char *kms = st == 0 ? "ok" : st == ERR_SEALED ? "sealed" :
	    st == ERR_TIMEOUT ? "unresponsive" : "unreachable";

	return http_resp_json(rs, st == 0 ? 200 : 503, json_pack("{s:s, s:s}",
	    "status", st == 0 ? "ok" : "unavailable", "kms", kms));
}

static int
h_metrics(struct http_req *rq, struct http_resp *rs, void *arg)
{
	struct buf b;
	int rc;

	buf_init(&b);
	if ((rc = http_metrics_render(&b)) == 0)
		rc = http_resp_body(rs, 200, "text/plain; version=0.0.4; "
		    "charset=utf-8", b.p, b.len);
	buf_free(&b);
	return rc;
}

static int
h_whoami(struct http_req *rq, struct http_resp *rs, void *arg)
{
	const struct http_identity *id = http_req_identity(rq);

	if (id == NULL)
		return ERR_AUTH;
	return http_resp_json(rs, 200, json_pack("{s:s, s:s, s:s?}", "keyId",
	    id->key_id, "role", http_role_name(id->role), "providerId",
	    id->provider[0] ? id->provider : NULL));
}

static int
h_keys_list(struct http_req *rq, struct http_resp *rs, void *arg)
{
	json_t *a;
	int rc;

	if ((rc = http_apikeys_list(arg, &a)) != 0)
		return rc;
	return http_resp_json(rs, 200, json_pack("{s:o}", "keys", a));
}

/* {"role": "admin"|"provider", "providerId": "..."} -> the new key, shown
 * once. */
static int
h_keys_create(struct http_req *rq, struct http_resp *rs, void *arg)
{
	json_t *j = http_req_json(rq), *v;
	const char *role_s, *prov = NULL;
	char key[80], id[24], body[256];
	int role, rc, n;

	if (!json_is_object(j))
		return http_resp_error(rs, 400, "bad_request",
		    "expected a JSON object with role (and providerId)");
	v = json_object_get(j, "role");
	role_s = json_is_string(v) ? json_string_value(v) : NULL;
	if ((role = http_role_parse(role_s)) == HTTP_ROLE_NONE)
		return http_resp_error(rs, 400, "bad_request",
		    "role: must be admin or provider");
	v = json_object_get(j, "providerId");
	if (role == HTTP_ROLE_PROVIDER) {
		if (!json_is_string(v))
			return http_resp_error(rs, 400, "bad_request",
			    "providerId: required for role provider");
		prov = json_string_value(v);
	} else if (v != NULL)
		return http_resp_error(rs, 400, "bad_request",
		    "providerId: only for role provider");
	rc = http_apikeys_create(arg, role, prov, key, sizeof(key), id, sizeof(id));
	if (rc == ERR_INVAL)
		return http_resp_error(rs, 400, "bad_request",
		    "providerId: 1-64 letters, digits or ._:-");
	if (rc != 0)
		return rc;
	log_msg(LOG_INFO, "event=apikey_created rid=%s by=%s key_id=%s role=%s",
	    http_req_id(rq), http_req_identity(rq)->key_id, id,
	    http_role_name(role));
	/* Written by hand rather than through jansson, whose copy of the key
	 * would be freed unwiped; every field is [A-Za-z0-9._:-] (checked
	 * by http_apikeys_create), so nothing needs escaping. */
	n = snprintf(body, sizeof(body), "{\"id\":\"%s\",\"key\":\"%s\","
	    "\"role\":\"%s\"%s%s%s}", id, key, http_role_name(role),
	    prov ? ",\"providerId\":\"" : "", prov ? prov : "",
	    prov ? "\"" : "");
	rc = n > 0 && (size_t)n < sizeof(body) ? http_resp_body(rs, 201,
	    "application/json", body, (size_t)n) : ERR_INTERNAL;
	wipe(key, sizeof(key));
	wipe(body, sizeof(body));
	return rc;
}

static int
h_keys_delete(struct http_req *rq, struct http_resp *rs, void *arg)
{
	const char *id = http_req_param(rq, "id");
	size_t i, n = strlen(id);
	int rc;

	for (i = 0; i < n; i++)
		if (!((id[i] >= 'a' && id[i] <= 'z') || (id[i] >= '0' && id[i] <= '9')))
			break;
	if (n == 0 || n > 23 || i != n)
		return http_resp_error(rs, 404, "not_found", "no such key");
	if (strcmp(id, http_req_identity(rq)->key_id) == 0)
		return http_resp_error(rs, 409, "conflict",
		    "a key cannot revoke itself");
	if ((rc = http_apikeys_revoke(arg, id)) == ERR_NOTFOUND)
		return http_resp_error(rs, 404, "not_found", "no such key");
	if (rc != 0)
		return rc;
	log_msg(LOG_INFO, "event=apikey_revoked rid=%s by=%s key_id=%s",
	    http_req_id(rq), http_req_identity(rq)->key_id, id);
	return http_resp_json(rs, 200, json_pack("{s:s, s:b}", "id", id,
	    "revoked", 1));
}

static json_t *
cert_json(const struct http_client_cert *c)
{
	if (c == NULL)
		return json_null();
	return json_pack("{s:s, s:s, s:s, s:I}", "subject", c->subject, "issuer",
	    c->issuer, "sha256", c->sha256, "notAfter", (json_int_t)c->not_after);
}

/* GET: the TLS client certificate as we verified it. */
static int
h_sei_ping_cert(struct http_req *rq, struct http_resp *rs, void *arg)
{
	return http_resp_json(rs, 200, json_pack("{s:i, s:o}", "resultCode", 0,
	    "clientCert", cert_json(http_req_cert(rq))));
}

/* POST: a signed request came through; the answer is signed too. */
static int
h_sei_ping_signed(struct http_req *rq, struct http_resp *rs, void *arg)
{
	const struct tsm_peer *p = http_req_peer(rq);

	return http_resp_json(rs, 200, json_pack("{s:i, s:s, s:s, s:o}",
	    "resultCode", 0, "seiTsmId", p->sei_tsm_id, "tenantId", p->tenant_id,
	    "clientCert", cert_json(http_req_cert(rq))));
}

int
http_builtin_register(struct http_router *r, struct http_apikeys *ak)
{
	int rc;

	if ((rc = http_route_add(r, "GET", "/healthz", HTTP_AUTH_NONE, h_healthz,
	    NULL)) != 0 ||
	    (rc = http_route_add(r, "GET", "/metrics", HTTP_AUTH_NONE, h_metrics,
	    NULL)) != 0 ||
	    (rc = http_route_add(r, "GET", "/api/v1/whoami", HTTP_AUTH_PROVIDER,
	    h_whoami, NULL)) != 0 ||
	    (rc = http_route_add(r, "GET", "/api/v1/apikeys", HTTP_AUTH_ADMIN,
	    h_keys_list, ak)) != 0 ||
	    (rc = http_route_add(r, "POST", "/api/v1/apikeys", HTTP_AUTH_ADMIN,
	    h_keys_create, ak)) != 0 ||
	    (rc = http_route_add(r, "DELETE", "/api/v1/apikeys/{id}",
	    HTTP_AUTH_ADMIN, h_keys_delete, ak)) != 0 ||
	    (rc = http_route_add(r, "GET", "/api/v1/sei/ping",
	    HTTP_AUTH_CLIENT_CERT, h_sei_ping_cert, NULL)) != 0 ||
	    (rc = http_route_add(r, "POST", "/api/v1/sei/ping", HTTP_AUTH_SEI_PEER,
	    h_sei_ping_signed, NULL)) != 0)
		return rc;
	/* Probes answer from memory (kmsd's state is refreshed by a thread
	 * of its own, tsm_kms_health): no hand-off to a worker. */
	if ((rc = http_route_extend(r, "GET", "/healthz",
	    &(struct http_route_ext){ .inline_ok = 1 })) != 0 ||
	    (rc = http_route_extend(r, "GET", "/metrics",
	    &(struct http_route_ext){ .inline_ok = 1 })) != 0)
		return rc;
	return 0;
}
