/*
 * tsmd_test.c - drives the real tsmd binary over loopback HTTPS with
 * libcurl (no mocks, no kmsd): first-start files, TLS versions and cipher
 * suites, client certificates from test CAs made here, bearer keys, body
 * and JSON limits, 404/405, keep-alive, Prometheus metrics, SIGHUP reload,
 * configuration errors, plain HTTP for tests, and a draining SIGTERM.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "kms/base.h"
#include "tests/tap.h"
#include "tests/testenv.h"

static char dir[64], var[128], logpath[160], cfgf[160], addr[64];
static pid_t tsmd_pid;

/* ---- test certificates (OpenSSL API; TEST MATERIAL) ---- */

struct cred {
	EVP_PKEY *k;
	X509     *x;
};

static void
ext(X509 *x, X509 *issuer, int nid, const char *v)
{
	X509V3_CTX c;
	X509_EXTENSION *e;

	X509V3_set_ctx(&c, issuer, x, NULL, NULL, 0);
	e = X509V3_EXT_conf_nid(NULL, &c, nid, v);
	if (e == NULL || X509_add_ext(x, e, -1) != 1)
		bail("extension");
	X509_EXTENSION_free(e);
}

/* ca == NULL: a self-signed CA. from/to: days relative to now. */
static struct cred
make_cert(const struct cred *ca, const char *cn, long from, long to)
{
	static long serial = 1;
	struct cred c;
	X509_NAME *nm;

	c.k = EVP_EC_gen("P-256");
	c.x = X509_new();
	if (c.k == NULL || c.x == NULL)
		bail("keygen");
	X509_set_version(c.x, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(c.x), serial++);
	nm = X509_get_subject_name(c.x);
	X509_NAME_add_entry_by_txt(nm, "O", MBSTRING_UTF8,
	    (const unsigned char *)"sptsm test", -1, -1, 0);
	X509_NAME_add_entry_by_txt(nm, "CN", MBSTRING_UTF8,
	    (const unsigned char *)cn, -1, -1, 0);
	X509_set_issuer_name(c.x, ca ? X509_get_subject_name(ca->x) : nm);
	X509_gmtime_adj(X509_getm_notBefore(c.x), from * 86400L);
	X509_gmtime_adj(X509_getm_notAfter(c.x), to * 86400L);
	X509_set_pubkey(c.x, c.k);
	if (ca == NULL) {
		ext(c.x, c.x, NID_basic_constraints, "critical,CA:TRUE");
		ext(c.x, c.x, NID_key_usage, "critical,keyCertSign,cRLSign");
	} else {
		ext(c.x, ca->x, NID_basic_constraints, "critical,CA:FALSE");
		ext(c.x, ca->x, NID_key_usage, "critical,digitalSignature");
		ext(c.x, ca->x, NID_ext_key_usage, "clientAuth");
	}
	if (X509_sign(c.x, ca ? ca->k : c.k, EVP_sha256()) <= 0)
		bail("sign");
	return c;
}

static void
write_cred(const struct cred *c, const char *name)
{
	char p[256];
	FILE *f;

	snprintf(p, sizeof(p), "%s/%s.pem", dir, name);
	if ((f = fopen(p, "w")) == NULL || PEM_write_X509(f, c->x) != 1)
		bail("write cert");
	fclose(f);
	snprintf(p, sizeof(p), "%s/%s.key", dir, name);
	if ((f = fopen(p, "w")) == NULL ||
	    PEM_write_PrivateKey(f, c->k, NULL, NULL, 0, NULL, NULL) != 1)
		bail("write key");
	fclose(f);
}

static void
free_cred(struct cred *c)
{
	EVP_PKEY_free(c->k);
	X509_free(c->x);
}

/* ---- the tsmd process ---- */

static pid_t
spawn(const char *const *argv, const char *out)
{
	pid_t pid = fork();
	int fd;

	if (pid < 0)
		bail("fork");
	if (pid == 0) {
		fd = open(out, O_WRONLY | O_CREAT | O_APPEND, 0600);
		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
		}
		execv(argv[0], (char *const *)argv);
		_exit(127);
	}
	return pid;
}

/* Waits for the process; -1 on timeout. */
static int
reap(pid_t pid, int secs)
{
	int st, i;

	for (i = 0; i < secs * 100; i++) {
		if (waitpid(pid, &st, WNOHANG) == pid)
			return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
		usleep(10000);
	}
	kill(pid, SIGKILL);
	waitpid(pid, &st, 0);
	return -1;
}

/* Starts tsmd; waits for VAR/tsm/tsmd.addr. */
static pid_t
start_tsmd(const char *vardir, const char *const *extra, char *addr_out)
{
	const char *argv[24];
	char ap[200], ks[200];
	struct buf b;
	size_t n = 0, i;
	pid_t pid;

	snprintf(ap, sizeof(ap), "%s/tsm/tsmd.addr", vardir);
	snprintf(ks, sizeof(ks), "%s/no-kmsd.sock", dir);
	(void)unlink(ap);
	argv[n++] = testenv_bin("tsmd");
	argv[n++] = "--var";
	argv[n++] = vardir;
	argv[n++] = "--listen";
	argv[n++] = "127.0.0.1:0";
	argv[n++] = "--kms-socket";
	argv[n++] = ks;
	for (i = 0; extra && extra[i] && n < 22; i++)
		argv[n++] = extra[i];
	argv[n] = NULL;
	pid = spawn(argv, logpath);
	buf_init(&b);
	for (i = 0; i < 3000; i++) {
		if (file_read_all(ap, 100, &b) == 0 && b.len > 1) {
			memcpy(addr_out, b.p, b.len - 1);
			addr_out[b.len - 1] = '\0';
			buf_free(&b);
			return pid;
		}
		if (waitpid(pid, NULL, WNOHANG) == pid)
			bail("tsmd exited at start (log: %s)", logpath);
		usleep(10000);
	}
	bail("tsmd did not start (log: %s)", logpath);
}

/* Runs tsmd expecting it to fail; returns exit status, stderr in *err. */
static int
run_fail(const char *const *extra, struct buf *err)
{
	const char *argv[16];
	char out[200];
	size_t n = 0, i;
	int st;

	snprintf(out, sizeof(out), "%s/fail.out", dir);
	(void)unlink(out);
	argv[n++] = testenv_bin("tsmd");
	for (i = 0; extra[i] && n < 15; i++)
		argv[n++] = extra[i];
	argv[n] = NULL;
	st = reap(spawn(argv, out), 20);
	buf_reset(err);
	if (file_read_all(out, 65536, err) != 0 || buf_put_u8(err, 0) != 0)
		bail("read stderr");
	return st;
}

/* ---- HTTP client ---- */

struct req {
	const char *method;
	const char *path;
	const char *body;
	size_t      blen;
	const char *ctype;
	const char *bearer;
	const char *cert;	/* name in dir: <cert>.pem/.key */
	long        tls_min, tls_max;
	const char *ciphers;
	const char *host;	/* default 127.0.0.1 */
	int         chunked;
	int         plain;	/* http:// */
	const char *at;		/* address, default addr */
};

struct resp {
	long       code;	/* 0: no HTTP answer (TLS refused...) */
	CURLcode   cc;
	struct buf body;
	char       hdrs[4096];
	size_t     hlen;
	json_t    *json;
	long       new_conns;
};

static size_t
on_body(char *p, size_t sz, size_t n, void *u)
{
	struct resp *r = u;

	return buf_put(&r->body, p, sz * n) == 0 ? sz * n : 0;
}

static size_t
on_hdr(char *p, size_t sz, size_t n, void *u)
{
	struct resp *r = u;
	size_t l = sz * n;

	if (r->hlen + l < sizeof(r->hdrs)) {
		memcpy(r->hdrs + r->hlen, p, l);
		r->hlen += l;
		r->hdrs[r->hlen] = '\0';
	}
	return l;
}

static void
resp_free(struct resp *r)
{
	buf_free(&r->body);
	json_decref(r->json);
	memset(r, 0, sizeof(*r));
}

static void
do_req(CURL *h, const struct req *q, struct resp *r)
{
	struct curl_slist *hl = NULL;
	char url[400], line[300], p1[256], p2[256], res[200];
	const char *host = q->host ? q->host : "127.0.0.1";
	const char *at = q->at ? q->at : addr;
	const char *port = strrchr(at, ':') + 1;

	memset(r, 0, sizeof(*r));
	buf_init(&r->body);
	snprintf(url, sizeof(url), "%s://%s:%s%s", q->plain ? "http" : "https",
	    host, port, q->path);
	snprintf(res, sizeof(res), "%s:%s:127.0.0.1", host, port);
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, q->method ? q->method : "GET");
	curl_easy_setopt(h, CURLOPT_NOBODY, q->method && strcmp(q->method,
	    "HEAD") == 0 ? 1L : 0L);
	snprintf(p1, sizeof(p1), "%s/ca.pem", var);
	curl_easy_setopt(h, CURLOPT_CAINFO, p1);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, r);
	curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_hdr);
	curl_easy_setopt(h, CURLOPT_HEADERDATA, r);
	curl_easy_setopt(h, CURLOPT_TIMEOUT, 20L);
	curl_easy_setopt(h, CURLOPT_SSLVERSION, q->tls_min | q->tls_max);
	curl_easy_setopt(h, CURLOPT_SSL_CIPHER_LIST, q->ciphers);
	if (q->cert) {
		snprintf(p1, sizeof(p1), "%s/%s.pem", dir, q->cert);
		snprintf(p2, sizeof(p2), "%s/%s.key", dir, q->cert);
		curl_easy_setopt(h, CURLOPT_SSLCERT, p1);
		curl_easy_setopt(h, CURLOPT_SSLKEY, p2);
	} else {
		curl_easy_setopt(h, CURLOPT_SSLCERT, NULL);
		curl_easy_setopt(h, CURLOPT_SSLKEY, NULL);
	}
	if (q->bearer) {
		snprintf(line, sizeof(line), "Authorization: Bearer %s", q->bearer);
		hl = curl_slist_append(hl, line);
	}
	if (q->ctype) {
		snprintf(line, sizeof(line), "Content-Type: %s", q->ctype);
		hl = curl_slist_append(hl, line);
	}
	if (q->chunked)
		hl = curl_slist_append(hl, "Transfer-Encoding: chunked");
	hl = curl_slist_append(hl, "Expect:");
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, hl);
	if (q->body) {
		curl_easy_setopt(h, CURLOPT_POSTFIELDS, q->body);
		curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE,
		    q->chunked ? (curl_off_t)-1 : (curl_off_t)q->blen);
	} else {
		curl_easy_setopt(h, CURLOPT_POSTFIELDS, NULL);
		curl_easy_setopt(h, CURLOPT_HTTPGET, q->method == NULL ||
		    strcmp(q->method, "GET") == 0 ? 1L : 0L);
		curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, q->method ? q->method :
		    "GET");
	}
	{
		struct curl_slist *rl = curl_slist_append(NULL, res);

		curl_easy_setopt(h, CURLOPT_RESOLVE, rl);
		r->cc = curl_easy_perform(h);
		curl_easy_setopt(h, CURLOPT_RESOLVE, NULL);
		curl_slist_free_all(rl);
	}
	curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &r->code);
	curl_easy_getinfo(h, CURLINFO_NUM_CONNECTS, &r->new_conns);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, NULL);
	curl_slist_free_all(hl);
	if (r->cc != CURLE_OK)
		r->code = 0;
	if (r->body.len)
		r->json = json_loadb((const char *)r->body.p, r->body.len, 0, NULL);
}

static void
req1(const struct req *q, struct resp *r)
{
	CURL *h = curl_easy_init();

	if (h == NULL)
		bail("curl");
	do_req(h, q, r);
	curl_easy_cleanup(h);
}

static const char *
jstr(const struct resp *r, const char *k)
{
	json_t *v = r->json ? json_object_get(r->json, k) : NULL;

	return json_is_string(v) ? json_string_value(v) : "";
}

static long
get_code(const struct req *q)
{
	struct resp r;
	long c;

	req1(q, &r);
	c = r.code;
	resp_free(&r);
	return c;
}

/* ---- Prometheus text ---- */

static int
metric_line_ok(const char *l)
{
	const char *p = l;
	char *end;

	if (*p == '#')
		return strncmp(p, "# HELP ", 7) == 0 || strncmp(p, "# TYPE ", 7) == 0;
	if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || *p == '_'))
		return 0;
	while ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
	    (*p >= '0' && *p <= '9') || *p == '_' || *p == ':')
		p++;
	if (*p == '{') {
		p++;
		while (*p != '}') {
			while ((*p >= 'a' && *p <= 'z') || *p == '_')
				p++;
			if (*p++ != '=' || *p++ != '"')
				return 0;
			while (*p && *p != '"')
				p++;
			if (*p++ != '"')
				return 0;
			if (*p == ',')
				p++;
			else if (*p != '}')
				return 0;
		}
		p++;
	}
	if (*p++ != ' ')
		return 0;
	if (strcmp(p, "+Inf") == 0)
		return 1;
	(void)strtod(p, &end);
	return end != p && *end == '\0';
}

/* Checks every line; returns the value of `series` (exact text before the
 * space), or -1 when absent / the text does not parse. */
static double
metrics_get(const char *series, int *all_ok)
{
	struct resp r;
	struct req q = { .path = "/metrics" };
	double v = -1;
	char *s, *line, *save = NULL;

	req1(&q, &r);
	*all_ok = r.code == 200 && strstr(r.hdrs, "text/plain; version=0.0.4");
	if (buf_put_u8(&r.body, 0) != 0)
		bail("nomem");
	s = (char *)r.body.p;
	for (line = strtok_r(s, "\n", &save); line; line = strtok_r(NULL, "\n",
	    &save)) {
		size_t n = strlen(series);

		if (!metric_line_ok(line)) {
			diag("bad metrics line: %s", line);
			*all_ok = 0;
		}
		if (strncmp(line, series, n) == 0 && line[n] == ' ')
			v = strtod(line + n + 1, NULL);
	}
	resp_free(&r);
	return v;
}

/* ---- tests ---- */

static char admin_key[80];

static void
test_first_start(void)
{
	char p[200];
	struct stat st;
	struct buf b;

	buf_init(&b);
	snprintf(p, sizeof(p), "%s/ca.pem", var);
	ok(stat(p, &st) == 0 && st.st_size > 100, "VAR/ca.pem written");
	snprintf(p, sizeof(p), "%s/tsm/tls/server.key", var);
	ok(stat(p, &st) == 0 && (st.st_mode & 0777) == 0600,
	    "server key under VAR/tsm/tls, mode 0600");
	snprintf(p, sizeof(p), "%s/admin.key", var);
	ok(stat(p, &st) == 0 && (st.st_mode & 0777) == 0600, "VAR/admin.key mode 0600");
	if (file_read_all(p, 200, &b) != 0 || b.len != 70)
		bail("admin.key");
	memcpy(admin_key, b.p, 69);
	admin_key[69] = '\0';
	snprintf(p, sizeof(p), "%s/tsm/apikeys", var);
	if (file_read_all(p, 65536, &b) != 0)
		bail("apikeys");
	ok(memmem(b.p, b.len, admin_key + 5, 64) == NULL,
	    "VAR/tsm/apikeys keeps only the hash of the admin key");
	snprintf(p, sizeof(p), "%s/tsm/tls/server.crt", var);
	{
		FILE *f = fopen(p, "r");
		X509 *x = f ? PEM_read_X509(f, NULL, NULL, NULL) : NULL;
		EVP_PKEY *k = x ? X509_get0_pubkey(x) : NULL;
		int days = 0, secs = 0;

		ok(x != NULL && k != NULL && EVP_PKEY_is_a(k, "EC") &&
		    EVP_PKEY_get_bits(k) == 256, "bootstrap certificate is EC P-256");
		ok(x != NULL && X509_check_ip_asc(x, "127.0.0.1", 0) == 1 &&
		    X509_check_host(x, "localhost", 0, 0, NULL) == 1,
		    "SAN: 127.0.0.1 and localhost");
		if (x != NULL)
			ASN1_TIME_diff(&days, &secs, X509_get0_notBefore(x),
			    X509_get0_notAfter(x));
		ok(days >= 364 && days <= 366, "valid for one year (%d days)", days);
		X509_free(x);
		if (f)
			fclose(f);
	}
	buf_free(&b);
}

static void
test_tls(void)
{
	struct req q = { .path = "/healthz" };
	struct resp r;

	req1(&q, &r);
	is_int(r.code, 503, "GET /healthz over HTTPS trusting VAR/ca.pem: 503 "
	    "without kmsd");
	ok(strcmp(jstr(&r, "status"), "unavailable") == 0 &&
	    strcmp(jstr(&r, "kms"), "unreachable") == 0, "body says kmsd unreachable");
	ok(strstr(r.hdrs, "X-Request-Id: ") != NULL, "X-Request-Id header");
	resp_free(&r);
	q.host = "localhost";
	is_int(get_code(&q), 503, "name localhost verifies too");
	q.host = NULL;

	q.tls_min = CURL_SSLVERSION_TLSv1_2;
	q.tls_max = CURL_SSLVERSION_MAX_TLSv1_2;
	is_int(get_code(&q), 503, "TLS 1.2 accepted");
	q.tls_min = CURL_SSLVERSION_TLSv1_3;
	q.tls_max = 0;
	is_int(get_code(&q), 503, "TLS 1.3 accepted");
	/* The client offers TLS 1.1 only, with its own floor lowered, so the
	 * refusal is the server's. */
	q.tls_min = CURL_SSLVERSION_TLSv1_1;
	q.tls_max = CURL_SSLVERSION_MAX_TLSv1_1;
	q.ciphers = "DEFAULT:@SECLEVEL=0";
	is_int(get_code(&q), 0, "TLS 1.1 refused");
	q.tls_min = CURL_SSLVERSION_TLSv1;
	q.tls_max = CURL_SSLVERSION_MAX_TLSv1_0;
	is_int(get_code(&q), 0, "TLS 1.0 refused");
	q.tls_min = CURL_SSLVERSION_TLSv1_2;
	q.tls_max = CURL_SSLVERSION_MAX_TLSv1_2;
	q.ciphers = "ECDHE-ECDSA-AES128-SHA:@SECLEVEL=0";
	is_int(get_code(&q), 0, "CBC-SHA1 suite refused");
	q.ciphers = "ECDHE-ECDSA-AES256-SHA384";
	is_int(get_code(&q), 0, "CBC-SHA384 suite refused");
	q.ciphers = "AES128-GCM-SHA256";
	is_int(get_code(&q), 0, "static RSA key exchange refused");
	q.ciphers = "DHE-RSA-AES128-GCM-SHA256:@SECLEVEL=0";
	is_int(get_code(&q), 0, "finite-field DHE refused");
	q.ciphers = "ECDHE-ECDSA-AES128-GCM-SHA256";
	is_int(get_code(&q), 503, "ECDHE-ECDSA-AES128-GCM accepted");
	q.ciphers = "ECDHE-ECDSA-CHACHA20-POLY1305";
	is_int(get_code(&q), 503, "ECDHE-ECDSA-CHACHA20-POLY1305 accepted");
	q.ciphers = NULL;
	q.tls_min = q.tls_max = 0;
	q.plain = 1;
	is_int(get_code(&q), 0, "plain HTTP to the TLS port gets no HTTP answer");
}

static void
test_keepalive(void)
{
	struct req q = { .path = "/healthz" };
	struct resp r;
	CURL *h = curl_easy_init();
	int i, reused = 1;

	for (i = 0; i < 5; i++) {
		do_req(h, &q, &r);
		if (i > 0 && r.new_conns != 0)
			reused = 0;
		resp_free(&r);
	}
	ok(reused, "keep-alive: 5 requests, one connection");
	q.path = "/no/such/thing";
	do_req(h, &q, &r);
	q.path = "/healthz";
	resp_free(&r);
	do_req(h, &q, &r);
	is_int(r.new_conns, 0, "a 404 does not close the connection");
	resp_free(&r);
	curl_easy_cleanup(h);
}

static void
test_routes(void)
{
	struct req q = { .path = "/api/v1/nope" };
	struct resp r;

	req1(&q, &r);
	is_int(r.code, 404, "unknown route: 404");
	ok(strcmp(jstr(&r, "error"), "not_found") == 0 &&
	    strstr(r.hdrs, "application/json") != NULL, "JSON error body");
	resp_free(&r);
	q.path = "/healthz";
	q.method = "DELETE";
	req1(&q, &r);
	is_int(r.code, 405, "wrong method: 405");
	ok(strstr(r.hdrs, "Allow: GET, HEAD") != NULL &&
	    strcmp(jstr(&r, "error"), "method_not_allowed") == 0,
	    "Allow header and JSON error");
	resp_free(&r);
	q.method = "HEAD";
	is_int(get_code(&q), 503, "HEAD served by the GET route");
	q.method = NULL;
	q.path = "/healthz/";
	is_int(get_code(&q), 404, "trailing slash is another path");
}

static void
test_bearer(void)
{
	struct req q = { .path = "/api/v1/whoami" };
	struct resp r;
	char pkey[80] = "", pid[40] = "";

	req1(&q, &r);
	is_int(r.code, 401, "no Authorization: 401");
	ok(strstr(r.hdrs, "WWW-Authenticate: Bearer") != NULL, "WWW-Authenticate");
	resp_free(&r);
	q.bearer = admin_key;
	req1(&q, &r);
	is_int(r.code, 200, "admin key from VAR/admin.key works");
	ok(strcmp(jstr(&r, "role"), "admin") == 0, "role admin");
	resp_free(&r);
	q.bearer = "tsmk_0000000000000000000000000000000000000000000000000000000000000000";
	is_int(get_code(&q), 401, "wrong key: 401");
	q.bearer = "";
	is_int(get_code(&q), 401, "empty key: 401");

	q.path = "/api/v1/apikeys";
	q.method = "POST";
	q.bearer = admin_key;
	q.ctype = "application/json";
	q.body = "{\"role\":\"provider\",\"providerId\":\"acme\"}";
	q.blen = strlen(q.body);
	req1(&q, &r);
	is_int(r.code, 201, "admin creates a provider key");
	ok(strcmp(jstr(&r, "role"), "provider") == 0 &&
	    strcmp(jstr(&r, "providerId"), "acme") == 0 &&
	    strncmp(jstr(&r, "key"), "tsmk_", 5) == 0 &&
	    strlen(jstr(&r, "key")) == 69 && jstr(&r, "id")[0] == 'k',
	    "the new key's answer: id, key, role, providerId");
	snprintf(pkey, sizeof(pkey), "%s", jstr(&r, "key"));
	snprintf(pid, sizeof(pid), "%s", jstr(&r, "id"));
	resp_free(&r);
	q.bearer = pkey;
	is_int(get_code(&q), 403, "provider key on an admin route: 403");
	q.method = NULL;
	q.body = NULL;
	q.ctype = NULL;
	q.path = "/api/v1/whoami";
	req1(&q, &r);
	ok(r.code == 200 && strcmp(jstr(&r, "role"), "provider") == 0 &&
	    strcmp(jstr(&r, "providerId"), "acme") == 0, "provider key: role and id");
	resp_free(&r);
	q.bearer = admin_key;
	q.path = "/api/v1/apikeys";
	req1(&q, &r);
	ok(r.code == 200 && strstr((const char *)r.body.p, pid) != NULL &&
	    memmem(r.body.p, r.body.len, pkey + 5, 20) == NULL,
	    "admin lists keys: ids, never keys");
	resp_free(&r);
	{
		char path[80];

		snprintf(path, sizeof(path), "/api/v1/apikeys/%s", pid);
		q.path = path;
		q.method = "DELETE";
		is_int(get_code(&q), 200, "admin revokes the provider key");
		is_int(get_code(&q), 404, "revoking again: 404");
	}
	q.method = NULL;
	q.path = "/api/v1/whoami";
	q.bearer = pkey;
	is_int(get_code(&q), 401, "revoked key: 401");
}

static void
test_limits(void)
{
	struct req q = { .path = "/api/v1/apikeys", .method = "POST",
		.bearer = NULL, .ctype = "application/json" };
	struct resp r;
	char *big = malloc(8192), deep[64];
	size_t i;

	q.bearer = admin_key;
	memset(big, ' ', 8191);
	big[0] = '{';
	big[8190] = '}';
	big[8191] = '\0';
	q.body = big;
	q.blen = 8191;
	req1(&q, &r);
	is_int(r.code, 413, "body over limits.maxBodyBytes (4096): 413");
	ok(strcmp(jstr(&r, "error"), "payload_too_large") == 0, "JSON error");
	resp_free(&r);
	q.chunked = 1;
	is_int(get_code(&q), 413, "chunked body over the limit: 413");
	q.chunked = 0;
	q.bearer = NULL;
	is_int(get_code(&q), 401, "authentication is checked before the body");
	q.bearer = admin_key;

	for (i = 0; i < 9; i++) {
		deep[i] = '[';
		deep[9 + i] = ']';
	}
	deep[18] = '\0';
	q.body = deep;
	q.blen = 18;
	req1(&q, &r);
	is_int(r.code, 400, "JSON 9 deep over maxJsonDepth 8: 400");
	ok(strcmp(jstr(&r, "error"), "json_too_deep") == 0, "says too deep");
	resp_free(&r);
	q.body = deep + 1;
	q.blen = 16;
	req1(&q, &r);
	ok(r.code == 400 && strcmp(jstr(&r, "error"), "bad_request") == 0,
	    "8 deep reaches the handler (which wants an object)");
	resp_free(&r);
	q.body = "{\"role\": admin}";
	q.blen = strlen(q.body);
	req1(&q, &r);
	is_int(r.code, 400, "bad JSON: 400");
	ok(strcmp(jstr(&r, "error"), "invalid_json") == 0 &&
	    strstr(jstr(&r, "message"), "line 1") != NULL,
	    "with a message (%s)", jstr(&r, "message"));
	resp_free(&r);
	q.body = "{\"role\":\"admin\",\"role\":\"provider\"}";
	q.blen = strlen(q.body);
	is_int(get_code(&q), 400, "duplicate JSON keys: 400");
	q.body = "{\"role\":\"auditor\"}";
	q.blen = strlen(q.body);
	req1(&q, &r);
	ok(r.code == 400 && strstr(jstr(&r, "message"), "role") != NULL,
	    "handler errors name the field");
	resp_free(&r);
	free(big);
}

static void
test_client_certs(void)
{
	struct req q = { .path = "/api/v1/sei/ping" };
	struct resp r;

	req1(&q, &r);
	is_int(r.code, 401, "client-cert route without a certificate: 401");
	ok(strcmp(jstr(&r, "error"), "client_cert_required") == 0, "says why");
	resp_free(&r);
	q.cert = "other";
	req1(&q, &r);
	is_int(r.code, 403, "certificate from another CA: 403");
	ok(strcmp(jstr(&r, "error"), "client_cert_rejected") == 0, "says why");
	resp_free(&r);
	q.cert = "expired";
	is_int(get_code(&q), 403, "expired certificate from the right CA: 403");
	q.cert = "notyet";
	is_int(get_code(&q), 403, "not-yet-valid certificate: 403");
	q.cert = "good";
	req1(&q, &r);
	is_int(r.code, 200, "certificate from the configured CA: 200");
	{
		json_t *cc = r.json ? json_object_get(r.json, "clientCert") : NULL;
		json_t *sub = cc ? json_object_get(cc, "subject") : NULL;
		json_t *fp = cc ? json_object_get(cc, "sha256") : NULL;

		ok(json_is_string(sub) && strstr(json_string_value(sub),
		    "CN=sei-client") != NULL, "handler sees the verified subject");
		ok(json_is_string(fp) && strlen(json_string_value(fp)) == 64,
		    "and the SHA-256 fingerprint");
	}
	resp_free(&r);
	q.cert = "other";
	q.path = "/healthz";
	is_int(get_code(&q), 503, "routes without client auth ignore the cert");
	q.path = "/api/v1/sei/ping";
	q.method = "POST";
	q.ctype = "application/json";
	q.body = "{}";
	q.blen = 2;
	q.cert = "good";
	req1(&q, &r);
	ok(r.code == 401 && json_integer_value(json_object_get(r.json,
	    "resultCode")) == 9999, "signed SEI route without X-TSM-Signature: "
	    "401 with resultCode 9999");
	resp_free(&r);
}

/* agent.auth clientCert: a device certificate speaks for the SE named by
 * its subject CN only. */
static void
test_agent_cert(void)
{
	struct req q = { .method = "POST", .path = "/api/v1/agent/sessions",
		.ctype = "application/json",
		.body = "{\"seId\":\"0011223344556677\"}" };
	struct resp r;

	q.blen = strlen(q.body);
	is_int(get_code(&q), 401, "agent API (agent.auth clientCert) without a "
	    "certificate: 401");
	q.cert = "devx";
	req1(&q, &r);
	ok(r.code == 403 && json_integer_value(json_object_get(r.json,
	    "resultCode")) == 2005, "a device certificate of another SE (CN): "
	    "403, 2005");
	resp_free(&r);
	q.cert = "good";
	is_int(get_code(&q), 403, "a certificate of the right CA without the "
	    "seId as CN: 403");
	q.cert = "dev";
	is_int(get_code(&q), 200, "the SE's own device certificate: 200");
}

static void
test_metrics(void)
{
	const char *s = "tsmd_http_requests_total{method=\"GET\",route=\"/healthz\","
	    "class=\"5xx\"}";
	struct req q = { .path = "/healthz" };
	double before, after, nf;
	int okp, i;

	before = metrics_get(s, &okp);
	ok(okp, "/metrics parses as Prometheus text");
	for (i = 0; i < 3; i++)
		(void)get_code(&q);
	after = metrics_get(s, &okp);
	ok(after - before == 3, "counts the 3 requests just made (%.0f -> %.0f)",
	    before, after);
	nf = metrics_get("tsmd_http_requests_total{method=\"-\",route=\"(unmatched)\","
	    "class=\"4xx\"}", &okp);
	ok(nf >= 2, "unmatched requests counted (%.0f)", nf);
	ok(metrics_get("tsmd_http_request_duration_seconds_count{method=\"GET\","
	    "route=\"/healthz\"}", &okp) >= after, "latency histogram count");
	ok(metrics_get("tsmd_http_requests_in_flight", &okp) == 1,
	    "in-flight gauge (the /metrics request itself)");
	ok(metrics_get("tsmd_kms_up", &okp) == 0, "kmsd down: tsmd_kms_up 0");
	ok(metrics_get("tsmd_kms_call_errors_total{op=\"hello\"}", &okp) >= 1,
	    "failed kmsd connects counted");
}

static void
write_config(unsigned max_body)
{
	char doc[1024];

	snprintf(doc, sizeof(doc), "{\"tls\": {\"clientCa\": \"%s/ca1.pem\"},\n"
	    " \"agent\": {\"auth\": \"clientCert\"},\n"
	    " \"limits\": {\"maxBodyBytes\": %u, \"maxJsonDepth\": 8,"
	    " \"requestTimeoutMs\": 10000, \"drainTimeoutMs\": 10000, \"workers\": 4}}\n",
	    dir, max_body);
	if (file_write_atomic(cfgf, doc, strlen(doc), 0600) != 0)
		bail("config");
}

static void
test_reload(void)
{
	struct req q = { .path = "/api/v1/apikeys", .method = "POST",
		.ctype = "application/json" };
	char *body = malloc(6001);

	q.bearer = admin_key;
	memset(body, ' ', 6000);
	memcpy(body, "{\"role\":\"x\"", 11);
	body[5999] = '}';
	body[6000] = '\0';
	q.body = body;
	q.blen = 6000;
	is_int(get_code(&q), 413, "6000 bytes over the 4096 limit");
	write_config(8192);
	kill(tsmd_pid, SIGHUP);
	usleep(300000);
	is_int(get_code(&q), 400, "after SIGHUP with maxBodyBytes 8192: reaches "
	    "the handler");
	write_config(4096);
	{
		FILE *f = fopen(cfgf, "a");	/* now broken */

		fputs("garbage", f);
		fclose(f);
	}
	kill(tsmd_pid, SIGHUP);
	usleep(300000);
	is_int(get_code(&q), 400, "a broken file on SIGHUP keeps the running "
	    "configuration");
	q.method = NULL;
	q.body = NULL;
	q.path = "/healthz";
	is_int(get_code(&q), 503, "and the server keeps serving");
	write_config(4096);
	free(body);
}

/* A burst of SIGHUPs: one arriving while the main thread is busy with the
 * previous reload must wait for it, not kill a thread that left the
 * signal unblocked (the store's writer was started before the mask). */
static void
test_reload_burst(void)
{
	struct req q = { .path = "/healthz" };
	int i, alive = 1;

	for (i = 0; i < 50000 && alive; i++)
		alive = kill(tsmd_pid, SIGHUP) == 0 &&
		    waitpid(tsmd_pid, NULL, WNOHANG) == 0;
	usleep(300000);
	ok(alive && waitpid(tsmd_pid, NULL, WNOHANG) == 0, "a burst of 50000 "
	    "SIGHUPs leaves tsmd running");
	is_int(get_code(&q), 503, "and serving");
}

static void
put(const char *path, const char *s)
{
	if (file_write_atomic(path, s, strlen(s), 0600) != 0)
		bail("write %s", path);
}

static void
test_config_errors(void)
{
	struct buf err;
	char bad[200], vd[200];
	const char *a1[] = { "--config", bad, "--var", vd, NULL };
	const char *a2[] = { "--var", vd, "--no-tls", "--listen", "10.1.2.3:80", NULL };
	const char *a3[] = { "--bogus", NULL };
	const char *a4[] = { "--var", vd, "--log-level", "chatty", NULL };

	buf_init(&err);
	snprintf(bad, sizeof(bad), "%s/bad.json", dir);
	snprintf(vd, sizeof(vd), "%s/var-bad", dir);
	put(bad, "{\"peers\": [{\"seiTsmId\": \"S\", \"tenantId\":"
	    " \"T\", \"baseUrl\": \"https://s\", \"wrap\": \"AES-ECB\", \"kcvMethod\":"
	    " \"GP\", \"transportKek\": \"k\", \"macKeyId\": \"m\", \"macKey\": \"mk\","
	    " \"clientCertRequired\": false}]}");
	is_int(run_fail(a1, &err), 2, "bad peer wrap: exit 2");
	ok(strstr((char *)err.p, "peers[0].wrap") != NULL, "error names "
	    "peers[0].wrap");
	put(bad, "{\"limits\": {\"maxJsonDepth\": 0}}");
	is_int(run_fail(a1, &err), 2, "bad limit: exit 2");
	ok(strstr((char *)err.p, "limits.maxJsonDepth") != NULL,
	    "error names limits.maxJsonDepth");
	put(bad, "{\"listen\": \"127.0.0.1:8443\",\n \"tls\": }");
	is_int(run_fail(a1, &err), 2, "syntax error: exit 2");
	ok(strstr((char *)err.p, "line 2") != NULL, "error gives the line");
	is_int(run_fail(a2, &err), 2, "--no-tls off loopback: exit 2");
	ok(strstr((char *)err.p, "--no-tls") != NULL, "error names --no-tls");
	is_int(run_fail(a4, &err), 2, "bad --log-level: exit 2");
	is_int(run_fail(a3, &err), 2, "unknown option: exit 2");
	buf_free(&err);
}

/* Plain HTTP instance: loudly logged; a request in flight at SIGTERM is
 * answered before tsmd exits 0. */
static void
test_plain_and_drain(void)
{
	const char *extra[] = { "--no-tls", NULL };
	char vd[200], paddr[64], hdr[600], resp[1024];
	struct sockaddr_in sa;
	struct req q = { .path = "/healthz", .plain = 1 };
	struct buf lg;
	pid_t pid;
	int fd, st;
	ssize_t n;
	size_t got = 0;

	snprintf(vd, sizeof(vd), "%s/var-plain", dir);
	pid = start_tsmd(vd, extra, paddr);
	q.at = paddr;
	is_int(get_code(&q), 503, "--no-tls: plain HTTP on loopback");
	buf_init(&lg);
	if (file_read_all(logpath, 1 << 20, &lg) != 0 || buf_put_u8(&lg, 0) != 0)
		bail("log");
	ok(strstr((char *)lg.p, "event=insecure_plain_http") != NULL,
	    "and says so loudly in the log");
	buf_free(&lg);

	fd = socket(AF_INET, SOCK_STREAM, 0);
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_port = htons((uint16_t)atoi(strrchr(paddr, ':') + 1));
	inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0)
		bail("connect");
	{
		char kp[300];
		struct buf k;

		buf_init(&k);
		snprintf(kp, sizeof(kp), "%s/admin.key", vd);
		if (file_read_all(kp, 100, &k) != 0 || k.len != 70)
			bail("plain admin.key");
		snprintf(hdr, sizeof(hdr), "POST /api/v1/apikeys HTTP/1.1\r\n"
		    "Host: 127.0.0.1\r\nAuthorization: Bearer %.69s\r\n"
		    "Content-Type: application/json\r\nContent-Length: 16\r\n\r\n"
		    "{\"role\":", (const char *)k.p);
		buf_free(&k);
	}
	if (write(fd, hdr, strlen(hdr)) != (ssize_t)strlen(hdr))
		bail("write");
	usleep(300000);
	kill(pid, SIGTERM);
	usleep(300000);
	ok(waitpid(pid, &st, WNOHANG) == 0, "SIGTERM: still running while a "
	    "request is in flight");
	if (write(fd, "\"admin\"}", 8) != 8)
		bail("write rest");
	while (got < sizeof(resp) - 1 && (n = read(fd, resp + got,
	    sizeof(resp) - 1 - got)) > 0)
		got += (size_t)n;
	resp[got] = '\0';
	close(fd);
	ok(strncmp(resp, "HTTP/1.1 201", 12) == 0, "the in-flight request is "
	    "answered (%.12s)", resp);
	is_int(reap(pid, 20), 0, "then tsmd exits 0");
}

int
main(void)
{
	const char *extra[] = { "--config", cfgf, NULL };
	struct cred ca1, ca2, good, other, expired, notyet, dev, devx;
	char ap[200];

	curl_global_init(CURL_GLOBAL_DEFAULT);
	snprintf(dir, sizeof(dir), "/tmp/sptsm-test-XXXXXX");
	if (mkdtemp(dir) == NULL)
		bail("mkdtemp");
	snprintf(var, sizeof(var), "%s/var", dir);
	snprintf(logpath, sizeof(logpath), "%s/tsmd.log", dir);
	snprintf(cfgf, sizeof(cfgf), "%s/tsmd.json", dir);

	ca1 = make_cert(NULL, "test CA 1", -1, 30);
	ca2 = make_cert(NULL, "test CA 2", -1, 30);
	good = make_cert(&ca1, "sei-client", -1, 30);
	other = make_cert(&ca2, "sei-client", -1, 30);
	expired = make_cert(&ca1, "sei-client", -10, -1);
	notyet = make_cert(&ca1, "sei-client", 2, 30);
	dev = make_cert(&ca1, "0011223344556677", -1, 30);
	devx = make_cert(&ca1, "00112233445566AA", -1, 30);
	write_cred(&ca1, "ca1");
	write_cred(&good, "good");
	write_cred(&other, "other");
	write_cred(&expired, "expired");
	write_cred(&notyet, "notyet");
	write_cred(&dev, "dev");
	write_cred(&devx, "devx");
	write_config(4096);

	tsmd_pid = start_tsmd(var, extra, addr);
	diag("tsmd at %s, var %s", addr, var);
	test_first_start();
	test_tls();
	test_keepalive();
	test_routes();
	test_bearer();
	test_limits();
	test_client_certs();
	test_agent_cert();
	test_metrics();
	test_reload();
	test_reload_burst();

	kill(tsmd_pid, SIGTERM);
	is_int(reap(tsmd_pid, 30), 0, "SIGTERM: tsmd stops cleanly with exit 0");
	snprintf(ap, sizeof(ap), "%s/tsm/tsmd.addr", var);
	ok(access(ap, F_OK) != 0, "and removes VAR/tsm/tsmd.addr");

	tsmd_pid = start_tsmd(var, extra, addr);
	{
		char p[200];
		struct buf b;

		buf_init(&b);
		snprintf(p, sizeof(p), "%s/admin.key", var);
		ok(file_read_all(p, 200, &b) == 0 && b.len == 70 &&
		    memcmp(b.p, admin_key, 69) == 0, "restart keeps the admin key");
		buf_free(&b);
	}
	{
		struct req q = { .path = "/api/v1/whoami", .bearer = admin_key };

		is_int(get_code(&q), 200, "restart keeps the certificate and keys");
	}
	kill(tsmd_pid, SIGTERM);
	is_int(reap(tsmd_pid, 30), 0, "second stop clean");

	test_config_errors();
	test_plain_and_drain();

	free_cred(&ca1);
	free_cred(&ca2);
	free_cred(&good);
	free_cred(&other);
	free_cred(&expired);
	free_cred(&notyet);
	free_cred(&dev);
	free_cred(&devx);
	curl_global_cleanup();
	if (tap_failed == 0)
		testenv_cleanup(dir);
	else
		diag("kept %s", dir);
	return done_testing();
}
