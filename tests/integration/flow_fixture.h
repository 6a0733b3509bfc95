/*
 * flow_fixture.h - the flow tests' world: kmsd, seisim and tsmd on fixed
 * loopback ports (each can be killed and restarted), an HTTPS client, the
 * agent played in-process on a vSE with hooks between steps, store and
 * card checks. Header-only; include once per test, after tap.h.
 */
#ifndef SPTSM_FLOW_FIXTURE_H
#define SPTSM_FLOW_FIXTURE_H

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <curl/curl.h>
#include <jansson.h>
#include <openssl/hmac.h>

#include "tests/integration/seisim_fixture.h"
#include "tests/integration/seisim_agent.h"
#include "tests/sim/vse/vse.h"
#include "tsm/gp/gp.h"
#include "tsm/gp/gp_kms.h"
#include "tsm/store/store.h"

struct ff {
	struct kmsenv E;
	struct fx_sim sim;
	char     material[700];
	char     base[600];		/* E.dir */
	char     var[700];		/* tsmd's var dir */
	char     cfg[700];
	char     log[700];
	char     url[128];		/* https://127.0.0.1:port */
	char     ca[800];
	char     admin[128];		/* admin bearer key */
	char     extra_cfg[2000];	/* more top-level config members */
	uint16_t port, sim_port;
	pid_t    tsmd;
	CURL    *curl;
};

static uint16_t __attribute__((unused))
ff_free_port(void)
{
	struct sockaddr_in a;
	socklen_t l = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	uint16_t p = 0;

	memset(&a, 0, sizeof(a));
	a.sin_family = AF_INET;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
	    getsockname(fd, (struct sockaddr *)&a, &l) == 0)
		p = ntohs(a.sin_port);
	if (fd >= 0)
		close(fd);
	if (p == 0)
		bail("no free port");
	return p;
}

/* Writes tsmd's configuration: the seisim peer and ff->extra_cfg. */
static void
ff_write_cfg(struct ff *f)
{
	char doc[4000];

	snprintf(doc, sizeof(doc), "{\"peers\": [{\"seiTsmId\": \"" FX_SEI_ID "\","
	    " \"tenantId\": \"" FX_TENANT "\", \"baseUrl\": \"https://127.0.0.1:%u\","
	    " \"wrap\": \"AES-KW\", \"kcvMethod\": \"GP\", \"transportKek\": "
	    "\"peer/test/kek\", \"macKeyId\": \"" FX_KEY_ID "\", \"macKey\": "
	    "\"peer/test/mac\", \"tlsCa\": \"%s/sim/seisim/ca.pem\", "
	    "\"clientCertRequired\": false}]%s%s}", f->sim_port, f->base,
	    f->extra_cfg[0] ? ", " : "", f->extra_cfg);
	if (file_write_atomic(f->cfg, doc, strlen(doc), 0600) != 0)
		bail("tsmd config");
}

/* Starts tsmd on its port; crash: TSMD_TEST_CRASH for this run (or NULL). */
static void __attribute__((unused))
ff_tsmd_start(struct ff *f, const char *crash)
{
	char listen[64], ap[800];
	struct buf b;
	int i;

	snprintf(listen, sizeof(listen), "127.0.0.1:%u", f->port);
	snprintf(ap, sizeof(ap), "%s/tsm/tsmd.addr", f->var);
	(void)unlink(ap);
	if ((f->tsmd = fork()) == 0) {
		fx_child(f->log);
		if (crash != NULL)
			setenv("TSMD_TEST_CRASH", crash, 1);
		else
			unsetenv("TSMD_TEST_CRASH");
		execl(testenv_bin("tsmd"), "tsmd", "--var", f->var, "--config",
		    f->cfg, "--listen", listen, "--kms-socket", f->E.sock,
		    "--log-level", "info", (char *)NULL);
		_exit(127);
	}
	buf_init(&b);
	for (i = 0; i < 3000; i++) {
		if (file_read_all(ap, 100, &b) == 0 && b.len > 1) {
			buf_free(&b);
			return;
		}
		buf_reset(&b);
		if (waitpid(f->tsmd, NULL, WNOHANG) == f->tsmd)
			break;
		usleep(10000);
	}
	bail("tsmd did not start (%s)", f->log);
}

/* kill -9 (sig 9) or SIGTERM, and reap. Returns the wait status. */
static int __attribute__((unused))
ff_tsmd_stop(struct ff *f, int sig)
{
	int st = 0;

	if (f->tsmd <= 0)
		return -1;
	kill(f->tsmd, sig);
	waitpid(f->tsmd, &st, 0);
	f->tsmd = 0;
	return st;
}

/* Waits (10 s at most) for tsmd to exit by itself (a crash point). */
static int __attribute__((unused))
ff_tsmd_wait_exit(struct ff *f)
{
	int st = 0, i;

	for (i = 0; i < 1000 && f->tsmd > 0; i++) {
		if (waitpid(f->tsmd, &st, WNOHANG) == f->tsmd) {
			f->tsmd = 0;
			return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
		}
		usleep(10000);
	}
	return -2;
}

static void __attribute__((unused))
ff_sim_start(struct ff *f, const char *const *faults)
{
	const char *extra[24];
	char listen[64], tsm_ca[800];
	int n = 0, i;

	snprintf(listen, sizeof(listen), "127.0.0.1:%u", f->sim_port);
	snprintf(tsm_ca, sizeof(tsm_ca), "%s/ca.pem", f->var);
	extra[n++] = "--tsm-url";
	extra[n++] = f->url;
	extra[n++] = "--tsm-ca";
	extra[n++] = tsm_ca;
	extra[n++] = "--listen";
	extra[n++] = listen;
	for (i = 0; faults != NULL && faults[i] != NULL && n < 22; i++)
		extra[n++] = faults[i];
	extra[n] = NULL;
	/* fx_sim_start puts --listen 127.0.0.1:0 first; ours comes later
	 * and wins (getopt: the last one). */
	fx_sim_start(&f->sim, f->base, "sim", f->material, extra);
}

/* The whole world. extra_cfg: more tsmd config members ("" none). */
static void __attribute__((unused))
ff_setup(struct ff *f, const char *extra_cfg, const char *const *sim_faults)
{
	struct buf b;

	memset(f, 0, sizeof(*f));
	if (sei_client_init() != 0)
		bail("curl");
	if (kmsenv_setup(&f->E, 0) != 0)
		bail("kmsenv_setup");
	if (kmsenv_start(&f->E, NULL) != 0)
		bail("kmsd did not start (%s)", f->E.log);
	snprintf(f->base, sizeof(f->base), "%s", f->E.dir);
	snprintf(f->var, sizeof(f->var), "%s/tsmvar", f->base);
	snprintf(f->cfg, sizeof(f->cfg), "%s/tsmd.json", f->base);
	snprintf(f->log, sizeof(f->log), "%s/tsmd.log", f->base);
	snprintf(f->material, sizeof(f->material), "%s/sei-test.json", f->base);
	snprintf(f->extra_cfg, sizeof(f->extra_cfg), "%s", extra_cfg);
	if (mkdir_p(f->var, 0700) != 0)
		bail("mkdir");
	fx_material(f->material, "AES-KW", "GP", "");
	f->port = ff_free_port();
	f->sim_port = ff_free_port();
	snprintf(f->url, sizeof(f->url), "https://127.0.0.1:%u", f->port);
	snprintf(f->ca, sizeof(f->ca), "%s/ca.pem", f->var);
	ff_sim_start(f, sim_faults);
	ff_write_cfg(f);
	ff_tsmd_start(f, NULL);
	buf_init(&b);
	{
		char ap[800];

		snprintf(ap, sizeof(ap), "%s/admin.key", f->var);
		if (file_read_all(ap, 100, &b) != 0 || b.len < 10)
			bail("admin key");
	}
	if (b.len < 10)
		bail("admin key");
	snprintf(f->admin, sizeof(f->admin), "%.*s", (int)b.len - 1,
	    (const char *)b.p);
	buf_free(&b);
	f->curl = curl_easy_init();
}

static void __attribute__((unused))
ff_teardown(struct ff *f, int keep)
{
	int st;

	if (f->curl != NULL)
		curl_easy_cleanup(f->curl);
	fx_sim_stop(&f->sim);
	/* A clean stop: exit 0 (under the sanitizers: no leak, no report). */
	st = ff_tsmd_stop(f, SIGTERM);
	if (!ok(WIFEXITED(st) && WEXITSTATUS(st) == 0, "tsmd stopped cleanly "
	    "(status %d)", st))
		keep = 1;
	kmsenv_stop(&f->E, 0);
	if (!keep)
		kmsenv_cleanup(&f->E);
	else
		diag("kept %s", f->E.dir);
	sei_client_cleanup();
}

/* ---- HTTP ------------------------------------------------------------------ */

static size_t
ff_collect(char *p, size_t sz, size_t n, void *arg)
{
	return buf_put(arg, p, sz * n) == 0 ? sz * n : 0;
}

/* method path [body] with bearer key (NULL: none) -> status, *out (JSON
 * or NULL; caller decrefs). */
static long __attribute__((unused))
ff_http(struct ff *f, const char *method, const char *path, const char *body,
    const char *key, json_t **out)
{
	struct curl_slist *h = NULL;
	char url[1200], auth[200];
	struct buf r;
	long code = 0;

	buf_init(&r);
	if (out != NULL)
		*out = NULL;
	snprintf(url, sizeof(url), "%s%s", f->url, path);
	curl_easy_reset(f->curl);
	curl_easy_setopt(f->curl, CURLOPT_URL, url);
	curl_easy_setopt(f->curl, CURLOPT_CAINFO, f->ca);
	curl_easy_setopt(f->curl, CURLOPT_CUSTOMREQUEST, method);
	curl_easy_setopt(f->curl, CURLOPT_TIMEOUT, 60L);
	curl_easy_setopt(f->curl, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(f->curl, CURLOPT_WRITEFUNCTION, ff_collect);
	curl_easy_setopt(f->curl, CURLOPT_WRITEDATA, &r);
	if (body != NULL) {
		h = curl_slist_append(h, "Content-Type: application/json");
		curl_easy_setopt(f->curl, CURLOPT_POSTFIELDS, body);
	}
	if (key != NULL) {
		snprintf(auth, sizeof(auth), "Authorization: Bearer %s", key);
		h = curl_slist_append(h, auth);
	}
	curl_easy_setopt(f->curl, CURLOPT_HTTPHEADER, h);
	if (curl_easy_perform(f->curl) == CURLE_OK)
		curl_easy_getinfo(f->curl, CURLINFO_RESPONSE_CODE, &code);
	curl_slist_free_all(h);
	if (out != NULL && r.len > 0)
		*out = json_loadb((const char *)r.p, r.len, 0, NULL);
	buf_free(&r);
	return code;
}

static __attribute__((unused)) const char *
js(json_t *o, const char *k)
{
	const char *s = json_string_value(json_object_get(o, k));

	return s != NULL ? s : "";
}

/* ---- the agent -------------------------------------------------------------- */

/* Between the steps of a session: return 0 to go on, 1 to stop the
 * session there (nothing more is sent). batch = 1, 2, ... */
struct ff_hooks {
	/* before the batch runs on the card */
	int  (*before)(void *arg, int batch, json_t *apdus);
	/* after it ran: resps may be changed (hex strings, upper case) */
	int  (*after)(void *arg, int batch, json_t *apdus, json_t *resps);
	void *arg;
};

struct ff_sess {
	long    http;		/* status of the last answer */
	int     code;		/* its resultCode (-1 none) */
	int     done;
	int     batches;
	int     stopped;	/* a hook stopped it */
	char    sid[64];
	char    msg[400];
	json_t *tasks;		/* outcomes when done */
};

static void __attribute__((unused))
ff_sess_clear(struct ff_sess *s)
{
	json_decref(s->tasks);
	memset(s, 0, sizeof(*s));
}

static int
ff_goes_on(uint16_t sw)
{
	uint8_t s1 = (uint8_t)(sw >> 8);

	return sw == 0x9000 || s1 == 0x61 || s1 == 0x62 || s1 == 0x63;
}

/* Runs apdus on the card as the agent must. */
static json_t *
ff_run_batch(struct vse *card, json_t *apdus)
{
	uint8_t rsp[VSE_RSP_MAX];
	char hx[2 * VSE_RSP_MAX + 1];
	json_t *out = json_array(), *e;
	struct buf a;
	size_t i, rl;
	uint16_t sw;

	buf_init(&a);
	json_array_foreach(apdus, i, e) {
		hexb(json_string_value(e), &a);
		if (vse_transmit(card, a.p, a.len, rsp, sizeof(rsp), &rl) != 0 ||
		    rl < 2)
			bail("vse_transmit");
		hex_encode_upper(rsp, rl, hx);
		json_array_append_new(out, json_string(hx));
		sw = (uint16_t)(rsp[rl - 2] << 8 | rsp[rl - 1]);
		if (!ff_goes_on(sw))
			break;
	}
	buf_free(&a);
	return out;
}

static void
ff_take(struct ff_sess *s, long http, json_t *r)
{
	json_t *c = json_object_get(r, "resultCode");

	s->http = http;
	s->code = json_is_integer(c) ? (int)json_integer_value(c) : -1;
	snprintf(s->msg, sizeof(s->msg), "%s", js(r, "resultMessage"));
	if (json_string_value(json_object_get(r, "sessionId")) != NULL)
		snprintf(s->sid, sizeof(s->sid), "%s", js(r, "sessionId"));
	s->done = json_is_true(json_object_get(r, "done"));
	if (s->done || json_object_get(r, "tasks") != NULL) {
		json_decref(s->tasks);
		s->tasks = json_incref(json_object_get(r, "tasks"));
	}
}

/* One agent session for the card's SE, start to end (or a hook's stop). */
static struct ff_sess __attribute__((unused))
ff_session(struct ff *f, struct vse *card, const struct ff_hooks *h)
{
	struct ff_sess s;
	json_t *r = NULL, *apdus, *resps, *body;
	char path[200], *txt;
	long code;

	memset(&s, 0, sizeof(s));
	body = json_pack("{s:s}", "seId", vse_se_id(card));
	txt = json_dumps(body, JSON_COMPACT);
	code = ff_http(f, "POST", "/api/v1/agent/sessions", txt, NULL, &r);
	free(txt);
	json_decref(body);
	ff_take(&s, code, r);
	while (code == 200 && s.code == 0 && !s.done && s.batches < 100) {
		s.batches++;
		apdus = json_incref(json_object_get(r, "apduList"));
		if (h != NULL && h->before != NULL && h->before(h->arg, s.batches,
		    apdus)) {
			json_decref(apdus);
			s.stopped = 1;
			break;
		}
		resps = ff_run_batch(card, apdus);
		if (h != NULL && h->after != NULL && h->after(h->arg, s.batches,
		    apdus, resps)) {
			json_decref(apdus);
			json_decref(resps);
			s.stopped = 1;
			break;
		}
		json_decref(apdus);
		body = json_pack("{s:o}", "respList", resps);
		txt = json_dumps(body, JSON_COMPACT);
		json_decref(body);
		json_decref(r);
		r = NULL;
		snprintf(path, sizeof(path), "/api/v1/agent/sessions/%s", s.sid);
		code = ff_http(f, "POST", path, txt, NULL, &r);
		free(txt);
		ff_take(&s, code, r);
	}
	json_decref(r);
	return s;
}

/* ---- store (read-only) ----------------------------------------------------------- */

static __attribute__((unused)) struct store *
ff_store(struct ff *f)
{
	struct store_opts o = { .readonly = 1 };
	struct store *s = NULL;
	char d[800];

	snprintf(d, sizeof(d), "%s/tsm/store", f->var);
	return store_open(&s, d, &o) == 0 ? s : NULL;
}

static int __attribute__((unused))
ff_ssd(struct ff *f, const char *se, const char *aid, struct store_ssd *out)
{
	struct store *st = ff_store(f);
	int rc = st != NULL ? store_ssd_get(st, se, aid, out) : ERR_IO;

	store_close(st);
	if (rc != 0)
		memset(out, 0, sizeof(*out));
	return rc;
}

/* The task's state ("" when unknown); *t gets the JSON when wanted. */
/* Waits (10 s) until tsmd's record of the SSD is in state. */
static int __attribute__((unused))
ff_wait_state(struct ff *f, const char *se, const char *aid, const char *state)
{
	struct store_ssd r;
	int i;

	for (i = 0; i < 200; i++) {
		if (ff_ssd(f, se, aid, &r) == 0 && strcmp(r.state, state) == 0)
			return 1;
		usleep(50000);
	}
	return 0;
}

static __attribute__((unused)) const char *
ff_task_state(struct ff *f, const char *id, char *buf, size_t cap)
{
	json_t *r = NULL;
	char path[200];

	snprintf(path, sizeof(path), "/api/v1/tasks/%s", id);
	buf[0] = '\0';
	if (ff_http(f, "GET", path, NULL, f->admin, &r) == 200)
		snprintf(buf, cap, "%s", js(r, "state"));
	json_decref(r);
	return buf;
}

/* store_check of tsmd's store: the number of problems. */
static long __attribute__((unused))
ff_store_problems(struct ff *f)
{
	struct store *st = ff_store(f);
	struct store_check_report rep;
	FILE *n = fopen("/dev/null", "w");
	long p = -1;

	if (st != NULL && n != NULL && store_check(st, (uint64_t)wall_seconds(),
	    n, &rep) == 0)
		p = (long)rep.problems;
	if (n != NULL)
		fclose(n);
	store_close(st);
	return p;
}

/* ---- opening an SSD with the key sets tsmd holds --------------------------------- */

struct ff_ks {
	uint8_t    kvn[8];
	struct buf blob[8];
	size_t     n;
};

static int
ff_ks_each(void *arg, const struct store_keyset *r)
{
	struct ff_ks *k = arg;

	if (k->n >= 8)
		return 1;
	k->kvn[k->n] = r->kvn;
	buf_init(&k->blob[k->n]);
	if (buf_put(&k->blob[k->n], r->blob.p, r->blob.len) != 0)
		return ERR_NOMEM;
	k->n++;
	return 0;
}

static void __attribute__((unused))
ff_ks_free(struct ff_ks *k)
{
	size_t i;

	for (i = 0; i < k->n; i++)
		buf_free(&k->blob[i]);
	k->n = 0;
}

/* The SSD's key sets in tsmd's store. */
static void __attribute__((unused))
ff_keysets(struct ff *f, const char *se, const char *aid, struct ff_ks *out)
{
	struct store *st = ff_store(f);

	memset(out, 0, sizeof(*out));
	if (st == NULL || store_keyset_iter(st, se, aid, ff_ks_each, out) != 0)
		bail("keyset iter");
	store_close(st);
}

/* 1 when an SCP03 session (SL 03) on the SSD opens with the blob's keys
 * (kmsd handles on the test's own connection), as a check of the card. */
static int __attribute__((unused))
ff_opens(struct ff *f, struct vse *card, const char *aid, uint8_t kvn,
    const struct buf *blob)
{
	struct kms_client *c = NULL;
	struct gp_kms *g = NULL;
	struct gp_backend be;
	struct kms_keyset ks;
	struct gp_scp03_cfg cfg;
	struct gp_scp03 *s = NULL;
	struct gp_err e;
	uint8_t rsp[VSE_RSP_MAX];
	struct buf a, sel;
	size_t rl;
	int good = 0;

	buf_init(&a);
	buf_init(&sel);
	{
		int krc = kms_connect(&c, f->E.sock, "flow-test");

		if (krc != 0 || gp_kms_new(c, &g) != 0)
			bail("kms: %s (errno %d; kmsd log %s)", err_name(krc), errno,
			    f->E.log);
	}
	gp_kms_backend(g, &be);
	if (gp_kms_keyset_open(g, blob->p, blob->len, 0, &ks) != 0)
		goto out;
	hexb(aid, &sel);
	if (gp_select_build(sel.p, sel.len, &a, &e) != 0 ||
	    vse_transmit(card, a.p, a.len, rsp, sizeof(rsp), &rl) != 0 || rl < 2 ||
	    rsp[rl - 2] != 0x90)
		goto out;
	memset(&cfg, 0, sizeof(cfg));
	cfg.be = &be;
	if (gp_kms_keyset_ref(&ks, KMS_USE_ENC, &cfg.enc) != 0 ||
	    gp_kms_keyset_ref(&ks, KMS_USE_MAC, &cfg.mac) != 0)
		goto out;
	cfg.kvn = kvn;
	cfg.sl = 0x03;
	cfg.sd_aid = sel.p;
	cfg.sd_aid_len = sel.len;
	if (gp_scp03_new(&cfg, &s, &e) != 0 || gp_scp03_begin(s, NULL, &a, &e) != 0)
		goto out;
	if (vse_transmit(card, a.p, a.len, rsp, sizeof(rsp), &rl) != 0 ||
	    gp_scp03_auth(s, rsp, rl, &a, &e) != 0)
		goto out;
	if (vse_transmit(card, a.p, a.len, rsp, sizeof(rsp), &rl) != 0 ||
	    gp_scp03_confirm(s, rsp, rl, &e) != 0)
		goto out;
	good = 1;
out:
	gp_scp03_free(s);
	gp_kms_free(g);
	buf_free(&a);
	buf_free(&sel);
	return good;
}

/* How many of the SSD's stored key sets open it; *which gets the last. */
static int __attribute__((unused))
ff_count_opening(struct ff *f, struct vse *card, const char *se,
    const char *aid, uint8_t *which)
{
	struct ff_ks k;
	size_t i;
	int n = 0;

	*which = 0;
	ff_keysets(f, se, aid, &k);
	for (i = 0; i < k.n; i++)
		if (ff_opens(f, card, aid, k.kvn[i], &k.blob[i])) {
			n++;
			*which = k.kvn[i];
		}
	ff_ks_free(&k);
	return n;
}

/* The card's key versions of an SSD (from vse_print), into kvns; count. */
static int __attribute__((unused))
ff_card_kvns(struct vse *card, const char *aid, uint8_t *kvns, int cap)
{
	char *txt = NULL, *p, *end;
	size_t n = 0;
	unsigned v;
	int k = 0;
	FILE *f = open_memstream(&txt, &n);

	if (f == NULL || vse_print(card, f) != 0)
		bail("vse_print");
	fclose(f);
	p = strstr(txt, aid);
	/* The entry ends where the next one starts ("\n  X", X not a space). */
	for (end = p; end != NULL; end++) {
		end = strstr(end, "\n  ");
		if (end == NULL || end[3] != ' ')
			break;
	}
	while (p != NULL && (p = strstr(p, "KVN ")) != NULL && k < cap) {
		if (end != NULL && p > end)
			break;
		if (sscanf(p, "KVN %x", &v) == 1)
			kvns[k++] = (uint8_t)v;
		p += 4;
	}
	free(txt);
	return k;
}

#endif
