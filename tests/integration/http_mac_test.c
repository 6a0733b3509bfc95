/*
 * http_mac_test.c - tsm/http's mac_in_handler routes against a real kmsd
 * (kmsenv fixture) and real HTTP over loopback: until the handler settles
 * the MAC, http_req_sig() is NULL; a handler that settles with kmsd's
 * verdict gets the usual refusals (bad MAC, replay); and an answer made by
 * a handler that never looked at the MAC leaves only if the MAC verifies.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <curl/curl.h>

#include "kms/kms.h"
#include "tsm/config.h"
#include "tsm/http/http.h"
#include "tests/kmsenv.h"
#include "tests/tap.h"
#include "tests/integration/sei_peer.h"

static struct kmsenv E;
static char base[64];
static CURL *H;

/* Verifies the pending MAC in kmsd itself, then settles with the verdict;
 * the body tells whether http_req_sig() was NULL before and set after. */
static int
h_settle(struct http_req *rq, struct http_resp *rs, void *arg)
{
	const struct http_sig *claimed;
	const struct tsm_peer *p = http_req_peer(rq);
	int before = http_req_sig(rq) != NULL, verdict, rc;
	struct kms_client *c = tsm_kms();
	char out[64];
	struct buf in;

	(void)arg;
	buf_init(&in);
	if (p == NULL || c == NULL ||
	    http_req_sig_pending(rq, &in, &claimed) != 0) {
		buf_free(&in);
		return ERR_INTERNAL;
	}
	verdict = kms_hmac_verify(c, KMS_LABEL(p->mac_key), in.p, in.len,
	    claimed->sig);
	buf_free(&in);
	if (http_req_sig_settle(rq, verdict) != 0)
		return 0;
	snprintf(out, sizeof(out), "before=%d after=%d pending=%d\n", before,
	    http_req_sig(rq) != NULL, http_req_sig_pending(rq, &in, &claimed) == 0);
	rc = http_resp_body(rs, 200, "text/plain", out, strlen(out));
	return rc;
}

/* Never looks at the MAC. */
static int
h_lazy(struct http_req *rq, struct http_resp *rs, void *arg)
{
	(void)rq;
	(void)arg;
	return http_resp_body(rs, 200, "text/plain", "lazy\n", 5);
}

/* Verifies in kmsd now (http_req_sig_require), then answers. */
static int
h_require(struct http_req *rq, struct http_resp *rs, void *arg)
{
	(void)arg;
	if (http_req_sig_require(rq) != 0)
		return 0;
	return http_resp_body(rs, 200, "text/plain", "required\n", 9);
}

/* POSTs body to path, signed over `signed_body` (NULL: body) with `nonce`
 * (NULL: a fresh one). The status; the answer in r. */
static long
post(const char *path, const char *body, const char *signed_body,
    const char *nonce, struct sp_resp *r)
{
	char sig[300], nb[33];

	if (nonce == NULL) {
		sp_nonce(nb);
		nonce = nb;
	}
	sp_sign(kmsenv_mac, 32, "test-mac", path, (long long)wall_seconds(), nonce,
	    signed_body != NULL ? signed_body : body, sig, sizeof(sig));
	sp_resp_free(r);
	if (sp_post(H, base, NULL, path, body, strlen(body), sig, r) != 0)
		return -1;
	return r->code;
}

static int
body_is(const struct sp_resp *r, const char *want)
{
	return r->body.len == strlen(want) && memcmp(r->body.p, want,
	    r->body.len) == 0;
}

int
main(void)
{
	static const struct http_route_ext defer = { .mac_in_handler = 1 };
	struct tsm_config_args args = { .no_tls = 1 };
	struct tsm_config *cfg = NULL;
	struct http_router *r = NULL;
	struct http_server *srv = NULL;
	struct sp_resp a;
	char conf[1200], err[300], nonce[33];

	log_init("http_mac_test", LOG_ERR);
	curl_global_init(CURL_GLOBAL_DEFAULT);
	if (kmsenv_setup(&E, 0) != 0 || kmsenv_start(&E, NULL) != 0)
		bail("kmsd fixture");
	args.kms_socket = E.sock;
	snprintf(conf, sizeof(conf), "{\"listen\": \"127.0.0.1:0\", \"limits\": "
	    "{\"workers\": 2}, \"peers\": [{\"seiTsmId\": \"SEI-TEST\", "
	    "\"tenantId\": \"SP-1\", \"baseUrl\": \"http://127.0.0.1:9\", "
	    "\"wrap\": \"AES-KW\", \"kcvMethod\": \"GP\", \"transportKek\": "
	    "\"peer/test/kek\", \"macKeyId\": \"test-mac\", \"macKey\": "
	    "\"peer/test/mac\", \"clientCertRequired\": false}]}");
	if (tsm_config_parse(&cfg, conf, strlen(conf), &args, err,
	    sizeof(err)) != 0)
		bail("config: %s", err);
	if (tsm_kms_init(E.sock) != 0)
		bail("kms socket");
	if (http_router_new(&r, NULL) != 0 ||
	    http_route_add(r, "POST", "/settle", HTTP_AUTH_SEI_PEER, h_settle,
	    NULL) != 0 ||
	    http_route_add(r, "POST", "/lazy", HTTP_AUTH_SEI_PEER, h_lazy,
	    NULL) != 0 ||
	    http_route_add(r, "POST", "/require", HTTP_AUTH_SEI_PEER, h_require,
	    NULL) != 0 ||
	    http_route_add(r, "POST", "/plain", HTTP_AUTH_NONE, h_lazy,
	    NULL) != 0 ||
	    http_route_extend(r, "POST", "/settle", &defer) != 0 ||
	    http_route_extend(r, "POST", "/lazy", &defer) != 0 ||
	    http_route_extend(r, "POST", "/require", &defer) != 0)
		bail("router");
	is_int(http_route_extend(r, "POST", "/plain", &defer), ERR_INVAL,
	    "mac_in_handler on a route without SEI-TSM peers: ERR_INVAL");
	is_int(http_route_extend(r, "POST", "/lazy", &(struct http_route_ext){
	    .mac_in_handler = 1, .inline_ok = 1 }), ERR_INVAL,
	    "mac_in_handler with inline_ok (kmsd is a wait): ERR_INVAL");
	is_int(http_server_start(&srv, cfg, r, NULL), 0,
	    "server on 127.0.0.1 (plain HTTP, test only) with a kmsd");
	if (srv == NULL)
		bail("no server");
	snprintf(base, sizeof(base), "http://127.0.0.1:%u",
	    http_server_port(srv));
	if ((H = curl_easy_init()) == NULL)
		bail("curl");
	memset(&a, 0, sizeof(a));
	buf_init(&a.body);

	ok(post("/settle", "{}", NULL, NULL, &a) == 200 &&
	    body_is(&a, "before=0 after=1 pending=0\n"), "settled with kmsd's "
	    "verdict: no signature before, the signature after, nothing pending");
	ok(post("/settle", "{}", "{\"other\":1}", NULL, &a) == 401 &&
	    strstr((const char *)a.body.p, "signature_invalid") != NULL,
	    "settled with ERR_AUTH: 401 signature_invalid");
	sp_nonce(nonce);
	ok(post("/settle", "{}", NULL, nonce, &a) == 200, "a fresh nonce: 200");
	ok(post("/settle", "{}", NULL, nonce, &a) == 401 &&
	    strstr((const char *)a.body.p, "replay") != NULL,
	    "the same nonce again, the MAC good: 401 replay when settled");
	ok(post("/lazy", "{}", NULL, NULL, &a) == 200 && body_is(&a, "lazy\n"),
	    "a handler that never settles: its answer leaves when the MAC "
	    "verifies");
	ok(post("/lazy", "{}", "{\"other\":1}", NULL, &a) == 401 &&
	    !body_is(&a, "lazy\n"), "and is replaced by 401 when it does not");
	sp_nonce(nonce);
	ok(post("/lazy", "{}", NULL, nonce, &a) == 200 &&
	    post("/lazy", "{}", NULL, nonce, &a) == 401, "and by 401 for a "
	    "replayed nonce");
	ok(post("/require", "{}", NULL, NULL, &a) == 200 &&
	    body_is(&a, "required\n"), "http_req_sig_require: a good MAC goes on");
	ok(post("/require", "{}", "{\"x\":2}", NULL, &a) == 401,
	    "http_req_sig_require: a bad MAC is 401");

	sp_resp_free(&a);
	curl_easy_cleanup(H);
	http_server_stop(srv, 2000);
	http_router_free(r);
	tsm_config_unref(cfg);
	tsm_kms_cleanup();
	kmsenv_stop(&E, 0);
	kmsenv_cleanup(&E);
	curl_global_cleanup();
	return done_testing();
}
