/*
 * peer.c - the simulator's calls to the SP-TSM (§9.4 key sync, §9.5 state
 * sync): one libcurl easy handle per call, TLS verified against --tsm-ca,
 * the request signed and the answer's X-TSM-Signature checked with the
 * simulator's own code (auth.c). Runs in seisim (its key-sync worker) and
 * in `seisim repair`; every answer is outside input.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>

#include "tests/sim/seisim/seisim.h"

struct reply {
	struct buf body;
	char       sig[600];
	int        too_big;
};

static size_t
on_body(char *p, size_t sz, size_t n, void *u)
{
	struct reply *r = u;

	if (r->body.len + sz * n > SEISIM_BODY_MAX) {
		r->too_big = 1;
		return 0;
	}
	return buf_put(&r->body, p, sz * n) == 0 ? sz * n : 0;
}

static size_t
on_header(char *p, size_t sz, size_t n, void *u)
{
	struct reply *r = u;
	size_t l = sz * n, hl = strlen("X-TSM-Signature:");

	if (l > hl && strncasecmp(p, "X-TSM-Signature:", hl) == 0) {
		const char *v = p + hl;
		size_t vl = l - hl;

		while (vl > 0 && (*v == ' ' || *v == '\t')) {
			v++;
			vl--;
		}
		while (vl > 0 && (v[vl - 1] == '\r' || v[vl - 1] == '\n' ||
		    v[vl - 1] == ' '))
			vl--;
		if (vl < sizeof(r->sig) && r->sig[0] == '\0') {
			memcpy(r->sig, v, vl);
			r->sig[vl] = '\0';
		} else {
			strcpy(r->sig, "duplicate-or-oversized");
		}
	}
	return l;
}

/* The path part of url + path, as the receiver sees it (no query). */
static void
url_path(const char *base, const char *path, char *out, size_t cap)
{
	const char *p = strstr(base, "://");
	const char *slash = p ? strchr(p + 3, '/') : NULL;

	snprintf(out, cap, "%s%s", slash ? slash : "", path);
}

int
seisim_post(struct seisim *s, const char *path, json_t *body, json_t **resp,
    long *http, char *err, size_t cap)
{
	CURL *h = NULL;
	struct curl_slist *hl = NULL;
	struct reply r;
	char url[1024], spath[1024], sig[300], line[400];
	const char *why;
	char *b = NULL;
	size_t base_len = strlen(s->tsm_url);
	json_error_t je;
	CURLcode cc;
	int rc;

	*resp = NULL;
	*http = 0;
	memset(&r, 0, sizeof(r));
	buf_init(&r.body);
	while (base_len > 0 && s->tsm_url[base_len - 1] == '/')
		base_len--;
	snprintf(url, sizeof(url), "%.*s%s", (int)base_len, s->tsm_url, path);
	url_path(url, "", spath, sizeof(spath));
	if ((b = json_dumps(body, JSON_COMPACT)) == NULL) {
		rc = ERR_NOMEM;
		goto out;
	}
	if ((rc = seisim_sig_make(&s->m, "POST", spath, b, strlen(b), sig,
	    sizeof(sig))) != 0)
		goto out;
	if ((h = curl_easy_init()) == NULL) {
		rc = ERR_NOMEM;
		goto out;
	}
	snprintf(line, sizeof(line), "X-TSM-Signature: %s", sig);
	hl = curl_slist_append(hl, line);
	hl = curl_slist_append(hl, "Content-Type: application/json");
	hl = curl_slist_append(hl, "Expect:");
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, hl);
	curl_easy_setopt(h, CURLOPT_POSTFIELDS, b);
	curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)strlen(b));
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, &r);
	curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(h, CURLOPT_HEADERDATA, &r);
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
	curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)s->http_timeout_ms);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "https,http");
	curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L);
	curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 2L);
	if (s->tsm_ca[0] != '\0')
		curl_easy_setopt(h, CURLOPT_CAINFO, s->tsm_ca);
	cc = curl_easy_perform(h);
	if (cc != CURLE_OK) {
		snprintf(err, cap, "%s: %s", url, curl_easy_strerror(cc));
		rc = cc == CURLE_OPERATION_TIMEDOUT ? ERR_TIMEOUT : ERR_IO;
		goto out;
	}
	curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, http);
	if (seisim_sig_check(&s->m, r.sig[0] ? r.sig : NULL, "POST", spath,
	    r.body.p, r.body.len, &why) != 0) {
		char ex[161];
		size_t i, k = 0;

		/* The body is unauthenticated: shown for diagnosis only. */
		for (i = 0; i < r.body.len && k < sizeof(ex) - 1; i++)
			ex[k++] = r.body.p[i] >= 0x20 && r.body.p[i] < 0x7F ?
			    (char)r.body.p[i] : '.';
		ex[k] = '\0';
		snprintf(err, cap, "HTTP %ld from %s: answer not accepted (%s); "
		    "unauthenticated body: %s", *http, url, why ? why : "error", ex);
		rc = ERR_AUTH;
		goto out;
	}
	*resp = json_loadb((const char *)r.body.p, r.body.len, 0, &je);
	if (!json_is_object(*resp)) {
		json_decref(*resp);
		*resp = NULL;
		snprintf(err, cap, "HTTP %ld from %s: not a JSON object", *http, url);
		rc = ERR_PARSE;
		goto out;
	}
	rc = 0;
out:
	if (rc != 0 && rc != ERR_AUTH && rc != ERR_PARSE && rc != ERR_IO &&
	    rc != ERR_TIMEOUT)
		snprintf(err, cap, "%s: %s", url, err_str(rc));
	curl_slist_free_all(hl);
	if (h != NULL)
		curl_easy_cleanup(h);
	free(b);
	buf_free(&r.body);
	return rc;
}
