/*
 * http_config_test.c - tsmd's configuration (tsm/config.c): defaults, a
 * full file with peers, command-line precedence, and that every kind of
 * mistake is refused with a message naming the field.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kms/kms.h"
#include "tsm/config.h"
#include "tests/tap.h"

static const char *ca_file = "/etc/hostname";	/* any readable file */

static int
parse(const char *json, const struct tsm_config_args *a, struct tsm_config **c,
    char *err, size_t cap)
{
	static const struct tsm_config_args none = { 0 };

	err[0] = '\0';
	return tsm_config_parse(c, json, strlen(json), a ? a : &none, err, cap);
}

/* The document must be refused and the message must start with field. */
static void
refused(const char *json, const struct tsm_config_args *a, const char *field,
    const char *what)
{
	struct tsm_config *c = NULL;
	char err[512];
	int rc = parse(json, a, &c, err, sizeof(err));

	ok(rc != 0 && c == NULL && strncmp(err, field, strlen(field)) == 0,
	    "%s: refused naming %s (\"%s\")", what, field, err);
	tsm_config_unref(c);
}

static void
test_defaults(void)
{
	struct tsm_config_args a = { 0 };
	struct tsm_config *c;
	char err[256];

	is_int(parse("{}", NULL, &c, err, sizeof(err)), 0, "empty object is valid");
	ok(strcmp(c->host, "127.0.0.1") == 0 && c->port == 8443 && c->tls == 1,
	    "default listen 127.0.0.1:8443 with TLS");
	ok(strcmp(c->var_dir, "./var") == 0 &&
	    strcmp(c->kms_socket, "./var/run/kms.sock") == 0 &&
	    strcmp(c->tls_cert, "./var/tsm/tls/server.crt") == 0 &&
	    strcmp(c->tls_key, "./var/tsm/tls/server.key") == 0 &&
	    c->tls_client_ca == NULL, "default paths under ./var");
	ok(c->lim.max_body == 1048576 && c->lim.max_json_depth == 32 &&
	    c->lim.workers == 8 && c->npeers == 0, "default limits");
	tsm_config_unref(c);

	a.var = "/srv/tsm";
	a.listen = "[::1]:9443";
	a.log_level = "debug";
	a.no_tls = 1;
	is_int(parse("{\"listen\": \"127.0.0.1:1\", \"varDir\": \"/x\"}", &a, &c,
	    err, sizeof(err)), 0, "arguments over the file");
	ok(strcmp(c->var_dir, "/srv/tsm") == 0 && strcmp(c->host, "::1") == 0 &&
	    c->port == 9443 && c->log_level == LOG_DEBUG && c->tls == 0 &&
	    strcmp(c->kms_socket, "/srv/tsm/run/kms.sock") == 0,
	    "--var, --listen [v6], --log-level, --no-tls win; paths follow --var");
	tsm_config_unref(c);
}

static void
test_full(void)
{
	char doc[2048], err[256];
	struct tsm_config *c;
	const struct tsm_peer *p;

	refused("{\"_comment\": \"ignored\", \"peers\": [{\"seiTsmId\": \"S\","
	    " \"tenantId\": \"SP 1\", \"baseUrl\": \"https://s\", \"wrap\": \"AES-KW\","
	    " \"kcvMethod\": \"GP\", \"transportKek\": \"k\", \"macKeyId\": \"m\","
	    " \"macKey\": \"mk\", \"clientCertRequired\": false}]}", NULL,
	    "peers[0].tenantId", "tenantId with a space");
	snprintf(doc, sizeof(doc),
	    "{\"listen\": \"0.0.0.0:443\", \"logLevel\": \"warn\","
	    " \"tls\": {\"clientCa\": \"%s\"},"
	    " \"limits\": {\"maxBodyBytes\": 65536, \"maxJsonDepth\": 16,"
	    " \"storeMapMiB\": 4096},"
	    " \"peers\": [{\"seiTsmId\": \"SEI-1\", \"tenantId\": \"SP-1\","
	    "  \"baseUrl\": \"https://sei.example/tsm/\", \"wrap\": \"AES-KWP\","
	    "  \"kcvMethod\": \"CMAC\", \"transportKek\": \"peer/sei1/kek\","
	    "  \"macKeyId\": \"sei1-mac\", \"macKey\": \"peer/sei1/mac\"},"
	    " {\"seiTsmId\": \"SEI-2\", \"tenantId\": \"SP-2\","
	    "  \"baseUrl\": \"http://127.0.0.1:9000\", \"wrap\": \"RSA-OAEP-SHA1\","
	    "  \"kcvMethod\": \"GP\", \"transportKek\": \"sp/transport\","
	    "  \"macKeyId\": \"sei2\", \"macKey\": \"peer/sei2/mac\","
	    "  \"tlsCa\": \"%s\", \"clientCertRequired\": false}]}", ca_file, ca_file);
	is_int(parse(doc, NULL, &c, err, sizeof(err)), 0, "full document (%s)", err);
	if (c == NULL)
		bail("config");
	ok(c->port == 443 && c->log_level == LOG_WARN && c->lim.max_body == 65536 &&
	    c->lim.max_json_depth == 16 && c->lim.store_map_mib == 4096 &&
	    c->npeers == 2, "values read");
	p = tsm_config_peer(c, "SEI-1");
	ok(p != NULL && p->wrap == KMS_WRAP_AES_KWP && p->kcv_method == KMS_KCV_CMAC &&
	    p->client_cert_required == 1 &&
	    strcmp(p->base_url, "https://sei.example/tsm") == 0,
	    "peer 1: wrap, kcv, clientCertRequired defaults to true, trailing / cut");
	p = tsm_config_peer_by_key_id(c, "sei2");
	ok(p != NULL && strcmp(p->sei_tsm_id, "SEI-2") == 0 &&
	    p->wrap == KMS_WRAP_RSA_OAEP_SHA1 && !p->client_cert_required,
	    "peer 2 by macKeyId");
	ok(tsm_config_peer(c, "nobody") == NULL &&
	    tsm_config_peer_by_key_id(c, NULL) == NULL, "unknown peer: NULL");
	tsm_config_ref(c);
	tsm_config_unref(c);
	ok(c->npeers == 2, "a reference keeps it alive");
	tsm_config_unref(c);
}

#define PEER(extra) "{\"peers\": [{\"seiTsmId\": \"S\", \"tenantId\": \"T\"," \
	" \"baseUrl\": \"https://s\", \"wrap\": \"AES-KW\", \"kcvMethod\": \"GP\"," \
	" \"transportKek\": \"k\", \"macKeyId\": \"m\", \"macKey\": \"mk\"," \
	" \"clientCertRequired\": false" extra "}]}"

static void
test_errors(void)
{
	struct tsm_config_args a = { 0 };

	refused("{\"listen\": 8443}", NULL, "listen", "listen not a string");
	refused("{\"listen\": \"127.0.0.1\"}", NULL, "listen", "listen without port");
	refused("{\"listen\": \"127.0.0.1:99999\"}", NULL, "listen", "port too big");
	refused("{\"listen\": \"bad host:1\"}", NULL, "listen", "bad host");
	refused("{\"listn\": \"x\"}", NULL, "listn", "unknown top-level field");
	refused("{\"limits\": {\"maxBody\": 1}}", NULL, "limits.maxBody",
	    "unknown limits field");
	refused("{\"limits\": {\"maxBodyBytes\": 10}}", NULL, "limits.maxBodyBytes",
	    "body limit below minimum");
	refused("{\"limits\": {\"maxJsonDepth\": 1000}}", NULL,
	    "limits.maxJsonDepth", "depth above ceiling");
	refused("{\"limits\": {\"workers\": \"4\"}}", NULL, "limits.workers",
	    "workers not an integer");
	refused("{\"limits\": {\"storeMapMiB\": 8}}", NULL, "limits.storeMapMiB",
	    "store map below 16 MiB");
	refused("{\"limits\": []}", NULL, "limits", "limits not an object");
	refused("{\"logLevel\": \"loud\"}", NULL, "logLevel", "bad log level");
	refused("{\"tls\": {\"enabled\": \"no\"}}", NULL, "tls.enabled",
	    "enabled not a boolean");
	refused("{\"tls\": {\"clientCa\": \"/nonexistent/ca.pem\"}}", NULL,
	    "tls.clientCa", "unreadable client CA");
	refused("{\"listen\": \"10.0.0.1:80\", \"tls\": {\"enabled\": false}}", NULL,
	    "tls.enabled", "plain HTTP off loopback");
	a.no_tls = 1;
	a.listen = "0.0.0.0:8080";
	refused("{}", &a, "--no-tls", "--no-tls with a non-loopback --listen");
	a.listen = "192.168.1.1:8080";
	refused("{}", &a, "--no-tls", "--no-tls with a non-loopback address");
	a.listen = NULL;
	a.no_tls = 0;
	a.log_level = "verbose";
	refused("{}", &a, "--log-level", "bad --log-level");
	refused("{\"peers\": {}}", NULL, "peers", "peers not an array");
	refused("{\"peers\": [1]}", NULL, "peers[0]", "peer not an object");
	refused(PEER(", \"wrap\": \"DES\""), NULL, "config",
	    "a duplicate key is a syntax error");
	refused("{\"peers\": [{\"seiTsmId\": \"S\"}]}", NULL, "peers[0].tenantId",
	    "missing field");
	refused(PEER(", \"extra\": 1"), NULL, "peers[0].extra", "unknown peer field");
	refused("{\"peers\": [{\"seiTsmId\": \"S\", \"tenantId\": \"T\","
	    " \"baseUrl\": \"https://s\", \"wrap\": \"AES-CBC\", \"kcvMethod\": \"GP\","
	    " \"transportKek\": \"k\", \"macKeyId\": \"m\", \"macKey\": \"mk\"}]}",
	    NULL, "peers[0].wrap", "unknown wrap");
	refused("{\"peers\": [{\"seiTsmId\": \"S\", \"tenantId\": \"T\","
	    " \"baseUrl\": \"https://s\", \"wrap\": \"AES-KW\", \"kcvMethod\": \"KCV\","
	    " \"transportKek\": \"k\", \"macKeyId\": \"m\", \"macKey\": \"mk\"}]}",
	    NULL, "peers[0].kcvMethod", "unknown kcvMethod");
	refused("{\"peers\": [{\"seiTsmId\": \"S\", \"tenantId\": \"T\","
	    " \"baseUrl\": \"http://sei.example\", \"wrap\": \"AES-KW\","
	    " \"kcvMethod\": \"GP\", \"transportKek\": \"k\", \"macKeyId\": \"m\","
	    " \"macKey\": \"mk\"}]}", NULL, "peers[0].baseUrl",
	    "plain http to a remote peer");
	refused("{\"peers\": [{\"seiTsmId\": \"S\", \"tenantId\": \"T\","
	    " \"baseUrl\": \"https://s\", \"wrap\": \"AES-KW\", \"kcvMethod\": \"GP\","
	    " \"transportKek\": \"k\", \"macKeyId\": \"m\", \"macKey\": \"mk\"}]}",
	    NULL, "peers[0].clientCertRequired",
	    "client certs required (default) without tls.clientCa");
	refused("{\"peers\": [{\"seiTsmId\": \"S S\", \"tenantId\": \"T\","
	    " \"baseUrl\": \"https://s\", \"wrap\": \"AES-KW\", \"kcvMethod\": \"GP\","
	    " \"transportKek\": \"k\", \"macKeyId\": \"m\", \"macKey\": \"mk\"}]}",
	    NULL, "peers[0].seiTsmId", "seiTsmId with a space");
	refused("{\"peers\": [{\"seiTsmId\": \"S\", \"tenantId\": \"T\","
	    " \"baseUrl\": \"https://s\", \"wrap\": \"AES-KW\", \"kcvMethod\": \"GP\","
	    " \"transportKek\": \"k\", \"macKeyId\": \"m\", \"macKey\": \"mk\","
	    " \"tlsCa\": \"/nonexistent\", \"clientCertRequired\": false}]}",
	    NULL, "peers[0].tlsCa", "unreadable peer CA");
	refused("{\"peers\": [" "{\"seiTsmId\": \"S\", \"tenantId\": \"T\","
	    " \"baseUrl\": \"https://s\", \"wrap\": \"AES-KW\", \"kcvMethod\": \"GP\","
	    " \"transportKek\": \"k\", \"macKeyId\": \"m\", \"macKey\": \"mk\","
	    " \"clientCertRequired\": false},"
	    "{\"seiTsmId\": \"S\", \"tenantId\": \"T\","
	    " \"baseUrl\": \"https://s\", \"wrap\": \"AES-KW\", \"kcvMethod\": \"GP\","
	    " \"transportKek\": \"k\", \"macKeyId\": \"m2\", \"macKey\": \"mk\","
	    " \"clientCertRequired\": false}]}", NULL, "peers[1].seiTsmId",
	    "duplicate seiTsmId");
	refused("{\"a\": 1,}", NULL, "config", "syntax error");
	refused("[]", NULL, "(top level)", "not an object");
	{
		struct tsm_config *c;
		char err[256];

		is_int(parse(PEER(""), NULL, &c, err, sizeof(err)), 0,
		    "the minimal peer is valid (%s)", err);
		tsm_config_unref(c);
	}
}

static void
test_file(void)
{
	struct tsm_config_args a = { 0 };
	struct tsm_config *c = NULL;
	char err[256];

	a.config = "/nonexistent/tsmd.json";
	ok(tsm_config_load(&c, &a, err, sizeof(err)) != 0 &&
	    strncmp(err, "--config", 8) == 0, "missing --config file named (%s)", err);
	a.config = NULL;
	a.var = "/nonexistent-var";
	is_int(tsm_config_load(&c, &a, err, sizeof(err)), 0,
	    "no --config and no VAR/tsm/tsmd.json: defaults");
	tsm_config_unref(c);
	{
		char ex[600];
		const char *top = getenv("SPTSM_TOP");

		snprintf(ex, sizeof(ex), "%s/tsm/tsmd.conf.example.json",
		    top ? top : ".");
		a.config = ex;
		a.var = NULL;
		is_int(tsm_config_load(&c, &a, err, sizeof(err)), 0,
		    "tsm/tsmd.conf.example.json is valid (%s)", err);
		ok(c != NULL && c->npeers == 1 &&
		    tsm_config_peer(c, "SEI-DEMO") != NULL, "and has its demo peer");
		tsm_config_unref(c);
	}
	ok(tsm_log_level_parse("warn") == LOG_WARN && tsm_log_level_parse("x") == -1,
	    "log level names");
	ok(tsm_host_is_loopback("127.0.0.2") && tsm_host_is_loopback("::1") &&
	    tsm_host_is_loopback("localhost") && !tsm_host_is_loopback("0.0.0.0") &&
	    !tsm_host_is_loopback("10.1.1.1"), "loopback detection");
}

/* The flows' fields (tsm/flow/): agent, flows, notify, ssdKeys. */
static void
test_flows(void)
{
	const struct tsm_ssd_keys *k;
	struct tsm_config *c = NULL;
	char err[512];

	is_int(parse("{}", NULL, &c, err, sizeof(err)), 0, "flows: defaults");
	ok(c != NULL && c->flows.agent_auth == TSM_AGENT_AUTH_NONE &&
	    c->flows.session_timeout_s == 120 && c->flows.sei_timeout_ms == 10000 &&
	    c->flows.key_archive_days == 30 &&
	    strcmp(c->flows.notify_mac_key, "notify") == 0 &&
	    strcmp(c->flows.notify_key_id, "sptsm-notify") == 0 &&
	    c->flows.notify_max_attempts == 8 &&
	    c->flows.notify_retention_days == 30 && c->flows.nssd_keys == 0 &&
	    tsm_config_ssd_keys(c, "A0000001515350") == NULL,
	    "flows: default values (agent auth none, 120 s, random keys)");
	tsm_config_unref(c);
	c = NULL;
	is_int(parse("{\"ssdKeys\": {\"a000000151535001\": \"diversified\", "
	    "\"A000000151535002\": {\"source\": \"diversified\", \"master\": "
	    "\"master/x\"}, \"*\": \"random\"}, \"agent\": {\"sessionTimeoutS\": "
	    "5}, \"flows\": {\"seiTimeoutMs\": 1500, \"keyArchiveDays\": 0}, "
	    "\"notify\": {\"macKey\": \"peer/x/mac\", \"keyId\": \"n1\", "
	    "\"backoffMs\": 50, \"retentionDays\": 0}}", NULL, &c, err,
	    sizeof(err)), 0, "flows: all "
	    "fields (%s)", err);
	k = c != NULL ? tsm_config_ssd_keys(c, "A000000151535001") : NULL;
	ok(k != NULL && k->source == TSM_KEYS_DIVERSIFIED &&
	    strcmp(k->master, "master/A000000151535001") == 0, "ssdKeys: an AID "
	    "(either case), diversified from master/<AID> by default");
	k = c != NULL ? tsm_config_ssd_keys(c, "A000000151535002") : NULL;
	ok(k != NULL && strcmp(k->master, "master/x") == 0, "ssdKeys: an AID "
	    "with its own master label");
	k = c != NULL ? tsm_config_ssd_keys(c, "A0000001515350FF") : NULL;
	ok(k != NULL && k->source == TSM_KEYS_RANDOM && strcmp(k->aid, "*") == 0,
	    "ssdKeys: \"*\" for the others");
	ok(c != NULL && c->flows.session_timeout_s == 5 &&
	    c->flows.sei_timeout_ms == 1500 && c->flows.key_archive_days == 0 &&
	    strcmp(c->flows.notify_mac_key, "peer/x/mac") == 0 &&
	    c->flows.notify_backoff_ms == 50 &&
	    c->flows.notify_retention_days == 0, "flows: the values taken");
	tsm_config_unref(c);
	refused("{\"ssdKeys\": {\"A0\": \"random\"}}", NULL, "ssdKeys.A0",
	    "ssdKeys: not an AID");
	refused("{\"ssdKeys\": {\"A000000151535001\": \"derived\"}}", NULL,
	    "ssdKeys.A000000151535001", "ssdKeys: unknown source");
	refused("{\"ssdKeys\": {\"*\": \"diversified\"}}", NULL, "ssdKeys.*",
	    "ssdKeys: * diversified without a master");
	refused("{\"ssdKeys\": {\"A000000151535001\": {\"source\": "
	    "\"diversified\", \"master\": \"bad label!\"}}}", NULL,
	    "ssdKeys.A000000151535001", "ssdKeys: bad master label");
	refused("{\"agent\": {\"auth\": \"basic\"}}", NULL, "agent.auth",
	    "agent.auth: unknown");
	refused("{\"agent\": {\"auth\": \"clientCert\"}}", NULL, "agent.auth",
	    "agent.auth clientCert without tls.clientCa");
	refused("{\"agent\": {\"sessionTimeoutS\": 0}}", NULL,
	    "agent.sessionTimeoutS", "agent.sessionTimeoutS: 0");
	refused("{\"flows\": {\"seiTimeoutMs\": 5}}", NULL, "flows.seiTimeoutMs",
	    "flows.seiTimeoutMs: too small");
	refused("{\"notify\": {\"macKey\": \"a b\"}}", NULL, "notify.macKey",
	    "notify.macKey: not a label");
	refused("{\"notify\": {\"retries\": 3}}", NULL, "notify.retries",
	    "notify: unknown field");
}

int
main(void)
{
	test_defaults();
	test_full();
	test_errors();
	test_file();
	test_flows();
	return done_testing();
}
