/*
 * notify.c - provider notifications (queued with the change they report,
 * POSTed signed with X-TSM-Signature, retried with backoff, removed
 * notify.retentionDays after they finished) and the flow worker
 * (deliveries, idle agent sessions, archived key sets past their
 * retention). Runs on tsmd's flow worker thread.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>

#include "tsm/flow/flow_int.h"

#define DUE_MAX      16		/* deliveries per round */
#define PURGE_MAX    256	/* documents removed per batch */
#define PURGE_BATCHES 64	/* batches per purge (once a minute) */
#define BACKOFF_CAP  3600000u	/* ms */

int
flow_notify_add(struct store_batch *b, const char *id, const char *provider,
    json_t *payload, uint64_t now)
{
	json_t *doc;
	int rc;

	doc = json_pack("{s:s, s:s, s:O, s:s, s:i, s:I, s:I, s:I}", "id", id,
	    "providerId", provider, "payload", payload, "state", "PENDING",
	    "attempts", 0, "created", (json_int_t)now, "updated", (json_int_t)now,
	    "nextAttemptMs", (json_int_t)(now * 1000u));
	if (doc == NULL)
		return ERR_NOMEM;
	if ((rc = store_batch_require_absent(b, STORE_DB_NOTIFY, id,
	    strlen(id))) == 0)
		rc = store_batch_put_doc(b, STORE_DB_NOTIFY, id, doc);
	json_decref(doc);
	return rc;
}

void
flow_kick(struct flow *f)
{
	pthread_mutex_lock(&f->mu);
	f->kick = 1;
	pthread_cond_signal(&f->cv);
	pthread_mutex_unlock(&f->mu);
}

/* ---- deliveries ------------------------------------------------------------ */

struct due {
	char       key[STORE_KEY_MAX + 1];
	struct buf raw;
};

struct due_acc {
	struct due v[DUE_MAX];
	size_t     n;
	uint64_t   now_ms;
	uint64_t   next_ms;	/* earliest attempt not due yet (0 none) */
	int        more;	/* due ones left for the next round */
};

static int
due_each(void *arg, const uint8_t *k, size_t kn, const uint8_t *v, size_t vn)
{
	struct due_acc *a = arg;
	json_t *doc = NULL;
	const char *st;
	json_int_t next;
	int take;

	if (kn > STORE_KEY_MAX || store_doc_decode(STORE_DB_NOTIFY, v, vn,
	    &doc) != 0)
		return 0;
	st = json_string_value(json_object_get(doc, "state"));
	next = json_integer_value(json_object_get(doc, "nextAttemptMs"));
	take = st != NULL && strcmp(st, "PENDING") == 0;
	json_decref(doc);
	if (!take)
		return 0;
	if ((uint64_t)next > a->now_ms) {
		if (a->next_ms == 0 || (uint64_t)next < a->next_ms)
			a->next_ms = (uint64_t)next;
		return 0;
	}
	if (a->n >= DUE_MAX) {
		a->more = 1;
		return 1;
	}
	memcpy(a->v[a->n].key, k, kn);
	a->v[a->n].key[kn] = '\0';
	buf_init(&a->v[a->n].raw);
	if (buf_put(&a->v[a->n].raw, v, vn) != 0)
		return ERR_NOMEM;
	a->n++;
	return 0;
}

static size_t
discard(char *p, size_t sz, size_t n, void *u)
{
	(void)p;
	(void)u;
	return sz * n;
}

/* The path of an http(s) URL (for the signature), "/" when none. */
static const char *
url_path(const char *url)
{
	const char *p = strstr(url, "://");

	p = p != NULL ? strchr(p + 3, '/') : NULL;
	return p != NULL ? p : "/";
}

/* One POST; 0 with *status, or an error with msg. */
static int
post(const struct tsm_config *cfg, const char *url, const char *body,
    const char *sig, const char *id, long *status, char *msg, size_t cap)
{
	struct curl_slist *h = NULL;
	char hs[300], hid[STORE_KEY_MAX + 40];
	CURLcode cc;
	CURL *c;
	int rc = 0;

	*status = 0;
	if ((c = curl_easy_init()) == NULL)
		return ERR_NOMEM;
	snprintf(hs, sizeof(hs), "X-TSM-Signature: %s", sig);
	snprintf(hid, sizeof(hid), "X-TSM-Notification-Id: %s", id);
	h = curl_slist_append(h, "Content-Type: application/json");
	h = curl_slist_append(h, hs);
	h = curl_slist_append(h, hid);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard);
	curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)cfg->flows.notify_timeout_ms);
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS,
	    (long)cfg->flows.notify_timeout_ms);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(c, CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2);
	if ((cc = curl_easy_perform(c)) != CURLE_OK) {
		snprintf(msg, cap, "%s", curl_easy_strerror(cc));
		rc = cc == CURLE_OPERATION_TIMEDOUT ? ERR_TIMEOUT : ERR_IO;
	} else {
		curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, status);
	}
	curl_slist_free_all(h);
	curl_easy_cleanup(c);
	return rc;
}

/* Delivers one notification and records the outcome (CAS on its bytes). */
static void
deliver(struct flow *f, const struct tsm_config *cfg, struct due *d)
{
	struct kms_client *kc = tsm_kms();
	struct store_batch *b = NULL;
	json_t *doc = NULL, *prov = NULL, *body = NULL;
	const char *pid, *url = NULL;
	char sig[256], msg[256], *text = NULL;
	uint64_t now = (wall_us() / 1000u), delay;
	long status = 0;
	int rc, attempts, ok = 0;

	msg[0] = '\0';
	if (store_doc_decode(STORE_DB_NOTIFY, d->raw.p, d->raw.len, &doc) != 0)
		return;
	pid = json_string_value(json_object_get(doc, "providerId"));
	attempts = (int)json_integer_value(json_object_get(doc, "attempts")) + 1;
	if (pid == NULL || store_doc_get(f->st, STORE_DB_PROVIDER, pid,
	    &prov) != 0)
		snprintf(msg, sizeof(msg), "provider %s is not registered",
		    pid ? pid : "?");
	else if ((url = json_string_value(json_object_get(prov,
	    "webhookUrl"))) == NULL)
		snprintf(msg, sizeof(msg), "provider %s has no webhookUrl", pid);
	if (url != NULL) {
		body = json_deep_copy(json_object_get(doc, "payload"));
		if (body != NULL) {
			json_object_set_new(body, "notificationId", json_string(d->key));
			text = json_dumps(body, JSON_COMPACT | JSON_SORT_KEYS);
		}
		if (text == NULL)
			snprintf(msg, sizeof(msg), "out of memory");
		else if (kc == NULL || (rc = http_sig_make(kc,
		    cfg->flows.notify_mac_key, cfg->flows.notify_key_id, "POST",
		    url_path(url), (const uint8_t *)text, strlen(text), sig,
		    sizeof(sig))) != 0)
			snprintf(msg, sizeof(msg), "cannot sign with kmsd key %s (%s)",
			    cfg->flows.notify_mac_key, kc ? err_name(rc) :
			    "kmsd unreachable");
		else if ((rc = post(cfg, url, text, sig, d->key, &status, msg,
		    sizeof(msg))) == 0) {
			ok = status >= 200 && status < 300;
			if (!ok)
				snprintf(msg, sizeof(msg), "HTTP %ld", status);
		}
	}
	json_object_set_new(doc, "attempts", json_integer(attempts));
	json_object_set_new(doc, "updated", json_integer((json_int_t)(now / 1000)));
	json_object_set_new(doc, "lastHttpStatus", json_integer(status));
	if (ok) {
		json_object_set_new(doc, "state", json_string("DELIVERED"));
		json_object_set_new(doc, "deliveredAt",
		    json_integer((json_int_t)(now / 1000)));
		json_object_del(doc, "lastError");
	} else {
		json_object_set_new(doc, "lastError", json_string(msg));
		if ((unsigned)attempts >= cfg->flows.notify_max_attempts) {
			json_object_set_new(doc, "state", json_string("FAILED"));
		} else {
			delay = (uint64_t)cfg->flows.notify_backoff_ms <<
			    (attempts - 1 < 20 ? attempts - 1 : 20);
			if (delay > BACKOFF_CAP)
				delay = BACKOFF_CAP;
			json_object_set_new(doc, "nextAttemptMs",
			    json_integer((json_int_t)(now + delay)));
		}
	}
	if (store_batch_new(&b) == 0 &&
	    store_batch_require_equal(b, STORE_DB_NOTIFY, d->key, strlen(d->key),
	    d->raw.p, d->raw.len) == 0 &&
	    store_batch_put_doc(b, STORE_DB_NOTIFY, d->key, doc) == 0 &&
	    (rc = store_batch_commit(f->st, b)) != 0)
		log_msg(LOG_WARN, "event=flow_notify_record_failed id=%s err=%s",
		    d->key, err_name(rc));
	log_msg(ok ? LOG_INFO : LOG_WARN, "event=flow_notify id=%s provider=%s "
	    "attempt=%d http=%ld result=%s%s%s%s", d->key, pid ? pid : "?",
	    attempts, status, ok ? "delivered" : "failed", ok ? "" : " error=\"",
	    ok ? "" : msg, ok ? "" : "\"");
	store_batch_free(b);
	free(text);
	json_decref(body);
	json_decref(prov);
	json_decref(doc);
}

/* Delivers what is due. Returns when to look again (wall ms; 0: only
 * when kicked - nothing is pending). */
static uint64_t
deliveries(struct flow *f, const struct tsm_config *cfg)
{
	struct due_acc a;
	size_t i;

	memset(&a, 0, sizeof(a));
	a.now_ms = (wall_us() / 1000u);
	if (store_iter(f->st, STORE_DB_NOTIFY, NULL, 0, due_each, &a) < 0) {
		log_msg(LOG_WARN, "event=flow_notify_scan_failed");
		return a.now_ms + 1000;
	}
	for (i = 0; i < a.n; i++) {
		deliver(f, cfg, &a.v[i]);
		buf_free(&a.v[i].raw);
	}
	/* Just delivered (or failed and rescheduled), or more due: soon. */
	if (a.n > 0 || a.more)
		return a.now_ms;
	return a.next_ms;
}

/* ---- records past their retention ------------------------------------------ */

/* 1 when a document of the db is past its retention (cutoff: unix s). */
typedef int (*expired_fn)(json_t *doc, uint64_t cutoff);

struct purge_acc {
	struct store_batch *b;
	enum store_db db;
	expired_fn expired;
	uint64_t cutoff;
	size_t n;
};

static int
purge_each(void *arg, const uint8_t *k, size_t kn, const uint8_t *v, size_t vn)
{
	struct purge_acc *a = arg;
	json_t *doc = NULL;
	int rc, gone;

	if (a->n >= PURGE_MAX)
		return 1;
	if (store_doc_decode(a->db, v, vn, &doc) != 0)
		return 0;
	gone = a->expired(doc, a->cutoff);
	json_decref(doc);
	if (!gone)
		return 0;
	/* Unchanged since read, or left alone (a change that raced it). */
	if ((rc = store_batch_require_equal(a->b, a->db, k, kn, v, vn)) != 0 ||
	    (rc = store_batch_del(a->b, a->db, k, kn)) != 0)
		return rc;
	a->n++;
	return 0;
}

/* Removes the expired documents of db, PURGE_MAX per batch and up to
 * PURGE_BATCHES batches (the rest at the next purge); logs event with
 * note per batch. */
static void
purge_db(struct flow *f, enum store_db db, expired_fn expired,
    uint64_t cutoff, const char *event, const char *note)
{
	struct purge_acc a = { NULL, db, expired, cutoff, 0 };
	int rc, i;

	if (store_batch_new(&a.b) != 0)
		return;
	for (i = 0; i < PURGE_BATCHES; i++) {
		store_batch_clear(a.b);
		a.n = 0;
		if ((rc = store_iter(f->st, db, NULL, 0, purge_each, &a)) != 0 ||
		    a.n == 0)
			break;
		rc = store_batch_commit(f->st, a.b);
		log_msg(rc == 0 ? LOG_INFO : LOG_WARN, "event=%s count=%zu "
		    "result=%s note=\"%s\"", event, a.n, err_name(rc), note);
		if (rc != 0 || a.n < PURGE_MAX)
			break;
	}
	store_batch_free(a.b);
}

/* Archived key sets whose destroyAfter has come. */
static int
keyset_expired(json_t *doc, uint64_t now)
{
	json_int_t until = json_integer_value(json_object_get(doc,
	    "destroyAfter"));

	return until >= 0 && (uint64_t)until <= now;
}

/* Delivered and failed notifications last tried at or before cutoff:
 * the list and every delivery scan stay as long as the recent ones. */
static int
note_expired(json_t *doc, uint64_t cutoff)
{
	const char *st = json_string_value(json_object_get(doc, "state"));
	json_int_t upd = json_integer_value(json_object_get(doc, "updated"));

	return st != NULL && (strcmp(st, "DELIVERED") == 0 ||
	    strcmp(st, "FAILED") == 0) && upd >= 0 && (uint64_t)upd <= cutoff;
}

static void
purge_all(struct flow *f)
{
	struct tsm_config *cfg = flow_cfg_get(f);
	uint64_t now = flow_now(), keep;

	keep = (uint64_t)cfg->flows.notify_retention_days * 86400u;
	tsm_config_unref(cfg);
	purge_db(f, STORE_DB_KEYARCH, keyset_expired, now,
	    "flow_keyset_destroyed", "archived key sets past their retention "
	    "(flows.keyArchiveDays)");
	purge_db(f, STORE_DB_NOTIFY, note_expired, now > keep ? now - keep : 0,
	    "flow_notify_purged", "finished notifications past "
	    "notify.retentionDays");
}

/* ---- the worker ------------------------------------------------------------- */

/* One round: idle sessions, and the notifications when due (or kicked).
 * *next_ms: when deliveries are due next (0: nothing pending). */
static void
worker_round(struct flow *f, int kicked, uint64_t *next_ms)
{
	struct tsm_config *cfg = flow_cfg_get(f);

	flow_sessions_reap(f, cfg->flows.session_timeout_s);
	if (kicked || (*next_ms != 0 && (wall_us() / 1000u) >= *next_ms))
		*next_ms = deliveries(f, cfg);
	tsm_config_unref(cfg);
}

void *
flow_worker_main(void *arg)
{
	struct flow *f = arg;
	struct timespec ts;
	uint64_t last_purge = 0, next_ms = 1;	/* a first scan at start */
	int kicked;

	(void)pthread_setname_np(pthread_self(), "flow-worker");
	for (;;) {
		pthread_mutex_lock(&f->mu);
		if (!f->stop && !f->kick) {
			clock_gettime(CLOCK_REALTIME, &ts);
			ts.tv_nsec += 250 * 1000000L;
			if (ts.tv_nsec >= 1000000000L) {
				ts.tv_sec++;
				ts.tv_nsec -= 1000000000L;
			}
			(void)pthread_cond_timedwait(&f->cv, &f->mu, &ts);
		}
		kicked = f->kick;
		f->kick = 0;
		if (f->stop) {
			pthread_mutex_unlock(&f->mu);
			break;
		}
		pthread_mutex_unlock(&f->mu);
		worker_round(f, kicked, &next_ms);
		if (now_ms() - last_purge > 60000 || last_purge == 0) {
			purge_all(f);
			last_purge = now_ms();
		}
	}
	tsm_kms_cleanup();
	return NULL;
}
