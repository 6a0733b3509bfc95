/*
 * keysync.c - the simulator as the caller of the SP-TSM: §9.4 key sync of
 * a created SSD's first keys (wrapped per the peer's wrap, KCVs per its
 * kcvMethod, seId and keyVersion "30"), the receipt check (tsm/sei/
 * README.md "Receipt"), done by a worker thread after the task's last §9.2
 * answer; and `seisim repair` (§9.5 for every SSD created on an SE, and
 * their removal from a vSE card file). Runs in seisim; answers are outside
 * input. Outcomes go to the state file.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "tests/sim/seisim/seisim.h"
#include "tests/sim/vse/vse.h"

#define KEYSYNC_PATH   "/api/v1/sei/key-sync"
#define SDSTATUS_PATH  "/api/v1/sei/sd-status"
#define KEYSYNC_TRIES  3

struct seisim_job {
	struct seisim_job *next;
	struct seisim_keys k;
};

/* ---- the receipt ---- */

/* "SPTSM-RECEIPT-1\n" seiTsmId "\n" SsdAid "\n" seId "\n" keyVersion "\n"
 * kcv1 "\n" kcv2 "\n" kcv3, upper-case hex, lowercase-hex HMAC-SHA256 with
 * the peer MAC key. Written from the contract, not from tsm/sei. */
static int
receipt_mac(const struct seisim_material *m, const struct seisim_keys *k,
    char kcvh[3][11], char out[65])
{
	char in[512], kv[3];
	uint8_t mac[32];
	int n, rc;

	seisim_hexu(&k->kvn, 1, kv);
	n = snprintf(in, sizeof(in), "SPTSM-RECEIPT-1\n%s\n%s\n%s\n%s\n%s\n%s\n%s",
	    m->sei_tsm_id, k->sd_aid, k->se_id, kv, kcvh[0], kcvh[1], kcvh[2]);
	if (n < 0 || (size_t)n >= sizeof(in))
		return ERR_TOOBIG;
	if ((rc = seisim_hmac(m->mac_key, m->mac_len, in, (size_t)n, mac)) != 0)
		return rc;
	hex_encode(mac, 32, out);
	return 0;
}

/* The receipt lists the 3 KCVs (as tsmd computed them) then the MAC. */
static int
receipt_check(const struct seisim_material *m, const struct seisim_keys *k,
    char kcvh[3][11], json_t *receipt, const char **why)
{
	char want[65];
	uint8_t a[32], b[32];
	size_t i, n;

	*why = "no receipt list";
	if (!json_is_array(receipt) || json_array_size(receipt) != 4)
		return ERR_AUTH;
	*why = "a KCV in the receipt differs from the one sent";
	for (i = 0; i < 3; i++) {
		const char *v = json_string_value(json_array_get(receipt, i));

		if (v == NULL || strcasecmp(v, kcvh[i]) != 0)
			return ERR_AUTH;
	}
	*why = "receipt MAC does not verify";
	if (receipt_mac(m, k, kcvh, want) != 0 ||
	    seisim_hex(json_string_value(json_array_get(receipt, 3)), b,
	    sizeof(b), &n) != 0 || n != 32 ||
	    seisim_hex(want, a, sizeof(a), &n) != 0 || !ct_equal(a, b, 32))
		return ERR_AUTH;
	*why = NULL;
	return 0;
}

/* ---- §9.4 ---- */

static int
keysync_body(struct seisim *s, const struct seisim_keys *k, json_t **out,
    char kcvh[3][11])
{
	json_t *ek = json_array(), *cv = json_array();
	uint8_t w[512], kcv[5];
	char wh[1025], kv[3];
	size_t i, wl, kl;
	int rc;

	*out = NULL;
	if (ek == NULL || cv == NULL) {
		rc = ERR_NOMEM;
		goto fail;
	}
	for (i = 0; i < 3; i++) {
		if ((rc = seisim_wrap_key(&s->m, k->k[i], 16, w, sizeof(w),
		    &wl)) != 0 ||
		    (rc = seisim_kcv(s->m.kcv_method, k->k[i], 16, kcv, &kl)) != 0)
			goto fail;
		seisim_hexu(w, wl, wh);
		seisim_hexu(kcv, kl, kcvh[i]);
		json_array_append_new(ek, json_string(wh));
		json_array_append_new(cv, json_string(kcvh[i]));
	}
	seisim_hexu(&k->kvn, 1, kv);
	/* §9.4 names as printed; seId and keyVersion per standard.md "[project]
	 * gaps"; tsmd refuses unknown fields, so nothing else goes in. */
	*out = json_pack("{s:s, s:s, s:s, s:s, s:o, s:s, s:s, s:o}",
	    "seiTsmId", s->m.sei_tsm_id, "SsdAid", k->sd_aid, "seId", k->se_id,
	    "keyVersion", kv, "encryptedKey", ek, "Alg", "AES-128",
	    "Usage", "SCP03", "checkValue", cv);
	return *out != NULL ? 0 : ERR_NOMEM;
fail:
	json_decref(ek);
	json_decref(cv);
	return rc;
}

static void
record_keysync(struct seisim *s, const struct seisim_keys *k, const char *st,
    int attempts, long http, json_t *resp, json_t *checkvalues,
    const char *msg)
{
	struct seisim_state state;
	json_t *ssd, *ks;

	pthread_mutex_lock(&s->lock);
	if (seisim_state_open(&state, s->dir, s->m.sei_tsm_id) != 0)
		goto out;
	if ((ssd = seisim_state_ssd(&state, k->se_id, k->sd_aid)) != NULL) {
		ks = json_pack("{s:s, s:i, s:I, s:I, s:s, s:O?}", "status", st,
		    "attempts", attempts, "httpStatus", (json_int_t)http, "time",
		    (json_int_t)wall_seconds(), "message", msg, "checkValue",
		    checkvalues);
		if (ks != NULL && resp != NULL) {
			json_object_set(ks, "resultCode", json_object_get(resp,
			    "resultCode"));
			if (json_object_get(resp, "resultMessage") != NULL)
				json_object_set(ks, "resultMessage", json_object_get(resp,
				    "resultMessage"));
			if (json_object_get(resp, "receipt") != NULL)
				json_object_set(ks, "receipt", json_object_get(resp,
				    "receipt"));
		}
		if (ks != NULL) {
			json_object_set_new(ks, "receiptVerified", json_boolean(
			    strcmp(st, "OK") == 0));
			json_object_set_new(ssd, "keySync", ks);
		}
		if (seisim_state_commit(&state) != 0)
			log_msg(LOG_ERR, "event=state_write_failed");
	}
	seisim_state_close(&state);
out:
	pthread_mutex_unlock(&s->lock);
}

int
seisim_keysync_send(struct seisim *s, const struct seisim_keys *k)
{
	char kcvh[3][11], err[600];
	json_t *body = NULL, *resp = NULL, *cv;
	const char *why = NULL;
	long http = 0;
	int rc, attempt, code;

	if ((rc = keysync_body(s, k, &body, kcvh)) != 0) {
		record_keysync(s, k, "FAILED", 0, 0, NULL, NULL, err_str(rc));
		return rc;
	}
	cv = json_object_get(body, "checkValue");
	for (attempt = 1; attempt <= KEYSYNC_TRIES && !s->stopping; attempt++) {
		err[0] = '\0';
		rc = seisim_post(s, KEYSYNC_PATH, body, &resp, &http, err,
		    sizeof(err));
		/* Retry only what can be transient: no answer, or 503/504 (the
		 * key sync is idempotent on tsmd's side: same keys, same
		 * receipt). */
		if ((rc == ERR_IO || rc == ERR_TIMEOUT || (rc == 0 &&
		    (http == 503 || http == 504))) && attempt < KEYSYNC_TRIES) {
			log_msg(LOG_WARN, "event=keysync_retry seId=%s sdAid=%s "
			    "attempt=%d http=%ld err=\"%s\"", k->se_id, k->sd_aid,
			    attempt, http, err);
			json_decref(resp);
			resp = NULL;
			usleep(500000u << (attempt - 1));
			continue;
		}
		break;
	}
	if (attempt > KEYSYNC_TRIES)
		attempt = KEYSYNC_TRIES;
	if (rc != 0) {
		log_msg(LOG_ERR, "event=keysync_failed seId=%s sdAid=%s err=\"%s\"",
		    k->se_id, k->sd_aid, err);
		record_keysync(s, k, "FAILED", attempt, http, NULL, cv, err);
		goto out;
	}
	code = json_is_integer(json_object_get(resp, "resultCode")) ?
	    (int)json_integer_value(json_object_get(resp, "resultCode")) : -1;
	if (code != 0) {
		snprintf(err, sizeof(err), "HTTP %ld resultCode %d: %s", http, code,
		    json_string_value(json_object_get(resp, "resultMessage")) ?
		    json_string_value(json_object_get(resp, "resultMessage")) : "");
		log_msg(LOG_ERR, "event=keysync_refused seId=%s sdAid=%s detail=\"%s\"",
		    k->se_id, k->sd_aid, err);
		record_keysync(s, k, "REFUSED", attempt, http, resp, cv, err);
		rc = ERR_DENIED;
		goto out;
	}
	if ((rc = receipt_check(&s->m, k, kcvh, json_object_get(resp, "receipt"),
	    &why)) != 0) {
		log_msg(LOG_ERR, "event=keysync_receipt_bad seId=%s sdAid=%s "
		    "detail=\"%s\"", k->se_id, k->sd_aid, why);
		record_keysync(s, k, "RECEIPT_INVALID", attempt, http, resp, cv, why);
		goto out;
	}
	log_msg(LOG_INFO, "event=keysync_ok seId=%s sdAid=%s kvn=%02X "
	    "receipt=verified", k->se_id, k->sd_aid, k->kvn);
	record_keysync(s, k, "OK", attempt, http, resp, cv, "receipt verified");
out:
	json_decref(body);
	json_decref(resp);
	return rc;
}

/* ---- the worker ---- */

static void *
worker(void *arg)
{
	struct seisim *s = arg;
	struct seisim_job *j;

	pthread_mutex_lock(&s->jlock);
	for (;;) {
		while (s->jobs == NULL && !s->stopping)
			pthread_cond_wait(&s->jcond, &s->jlock);
		if (s->stopping)
			break;
		j = s->jobs;
		s->jobs = j->next;
		s->busy_jobs++;
		pthread_mutex_unlock(&s->jlock);
		if (seisim_keysync_send(s, &j->k) != 0)
			log_msg(LOG_DEBUG, "event=keysync_job_failed");
		wipe(j, sizeof(*j));
		free(j);
		pthread_mutex_lock(&s->jlock);
		s->busy_jobs--;
	}
	pthread_mutex_unlock(&s->jlock);
	return NULL;
}

int
seisim_keysync_queue(struct seisim *s, const struct seisim_keys *k)
{
	struct seisim_job *j = calloc(1, sizeof(*j)), **pp;

	if (j == NULL)
		return ERR_NOMEM;
	j->k = *k;
	pthread_mutex_lock(&s->jlock);
	for (pp = &s->jobs; *pp != NULL; pp = &(*pp)->next)
		;
	*pp = j;
	pthread_cond_signal(&s->jcond);
	pthread_mutex_unlock(&s->jlock);
	return 0;
}

int
seisim_keysync_start(struct seisim *s)
{
	if (pthread_create(&s->jthread, NULL, worker, s) != 0)
		return ERR_INTERNAL;
	s->jthread_started = 1;
	return 0;
}

void
seisim_keysync_stop(struct seisim *s)
{
	struct seisim_job *j;

	pthread_mutex_lock(&s->jlock);
	s->stopping = 1;
	pthread_cond_broadcast(&s->jcond);
	pthread_mutex_unlock(&s->jlock);
	if (s->jthread_started)
		pthread_join(s->jthread, NULL);
	s->jthread_started = 0;
	while ((j = s->jobs) != NULL) {
		s->jobs = j->next;
		log_msg(LOG_WARN, "event=keysync_dropped seId=%s sdAid=%s note=\"the "
		    "simulator stopped first\"", j->k.se_id, j->k.sd_aid);
		wipe(j, sizeof(*j));
		free(j);
	}
}

/* ---- seisim repair (§9.5) ---- */

/* DELETE (P2 80) of the SSD through an ISD session with the demo keys:
 * what a repair shop's reset does to the SE. 0, or a message in err. */
static int
card_wipe(struct seisim *s, struct vse *c, const char *se_id,
    const char *aid_hex, char *err, size_t cap)
{
	struct vse_host *h = NULL;
	struct buf rsp;
	uint8_t k[3][16], aid[16], apdu[40], r[VSE_RSP_MAX];
	uint16_t sw = 0;
	size_t al, rl;
	int rc;

	buf_init(&rsp);
	if ((rc = seisim_hex(aid_hex, aid, sizeof(aid), &al)) != 0 ||
	    (rc = seisim_demo_isd_keys(se_id, k)) != 0 ||
	    (rc = vse_host_new(&h, k[0], k[1], k[2], 16)) != 0) {
		snprintf(err, cap, "setup: %s", err_str(rc));
		goto out;
	}
	/* SELECT ISD: 00 A4 04 00 Lc AID 00 */
	memcpy(apdu, "\x00\xA4\x04\x00", 4);
	apdu[4] = (uint8_t)s->isd_aid_len;
	memcpy(apdu + 5, s->isd_aid, s->isd_aid_len);
	apdu[5 + s->isd_aid_len] = 0x00;
	if ((rc = vse_transmit(c, apdu, 6 + s->isd_aid_len, r, sizeof(r),
	    &rl)) != 0 || rl < 2 || r[rl - 2] != 0x90 || r[rl - 1] != 0x00) {
		snprintf(err, cap, "SELECT ISD failed");
		rc = rc ? rc : ERR_SW;
		goto out;
	}
	if ((rc = vse_host_open(h, c, 0, SEISIM_KVN, 0x03, 0, NULL, &sw)) != 0) {
		snprintf(err, cap, "ISD session: %s (SW %04X)", err_str(rc), sw);
		goto out;
	}
	/* DELETE related objects (gpref §5): 80 E4 00 80 Lc 4F L AID 00 */
	memcpy(apdu, "\x80\xE4\x00\x80", 4);
	apdu[4] = (uint8_t)(al + 2);
	apdu[5] = 0x4F;
	apdu[6] = (uint8_t)al;
	memcpy(apdu + 7, aid, al);
	apdu[7 + al] = 0x00;
	if ((rc = vse_host_transmit(h, c, apdu, 8 + al, &rsp)) != 0 ||
	    rsp.len < 2) {
		snprintf(err, cap, "DELETE: %s", err_str(rc ? rc : ERR_TRUNC));
		rc = rc ? rc : ERR_TRUNC;
		goto out;
	}
	sw = (uint16_t)(rsp.p[rsp.len - 2] << 8 | rsp.p[rsp.len - 1]);
	if (sw != 0x9000 && sw != 0x6A88) {	/* 6A88: already gone */
		snprintf(err, cap, "DELETE: SW %04X (%s)", sw, vse_sw_str(sw));
		rc = ERR_SW;
		goto out;
	}
	rc = 0;
out:
	wipe(k, sizeof(k));
	vse_host_free(h);
	buf_free(&rsp);
	return rc;
}

int
seisim_repair(struct seisim *s, const char *se_id, const char *status,
    const char *card)
{
	struct seisim_state st;
	struct vse *c = NULL;
	json_t *ssds, *r, *resp = NULL, *body, *ev;
	char err[600], se[130];
	uint8_t seb[64];
	size_t i, n, count = 0;
	long http;
	int rc, failed = 0;

	if (seisim_hex(se_id, seb, sizeof(seb), &n) != 0 || n < 4) {
		fprintf(stderr, "seisim repair: SEID must be hex of 4..64 bytes\n");
		return 2;
	}
	seisim_hexu(seb, n, se);
	if (card != NULL && (rc = vse_open(&c, card)) != 0) {
		fprintf(stderr, "seisim repair: card %s: %s\n", card, err_str(rc));
		return 1;
	}
	if (c != NULL && strcasecmp(vse_se_id(c), se) != 0) {
		fprintf(stderr, "seisim repair: card %s is SE %s, not %s\n", card,
		    vse_se_id(c), se);
		vse_free(c);
		return 1;
	}
	if ((rc = seisim_state_open(&st, s->dir, s->m.sei_tsm_id)) != 0) {
		fprintf(stderr, "seisim repair: state %s/state.json: %s\n", s->dir,
		    err_str(rc));
		vse_free(c);
		return 1;
	}
	ssds = seisim_state_ssds(&st);
	json_array_foreach(ssds, i, r) {
		const char *rse = json_string_value(json_object_get(r, "seId"));
		const char *aid = json_string_value(json_object_get(r, "sdAid"));
		const char *state = json_string_value(json_object_get(r, "state"));

		if (rse == NULL || aid == NULL || strcasecmp(rse, se) != 0 ||
		    state == NULL || strcmp(state, "DELETED") == 0 ||
		    strcmp(state, "RESETED") == 0)
			continue;
		count++;
		if (c != NULL) {
			if (card_wipe(s, c, se, aid, err, sizeof(err)) != 0) {
				fprintf(stderr, "seisim repair: card: SSD %s: %s\n", aid,
				    err);
				failed = 1;
				continue;
			}
			printf("card: SSD %s removed from %s\n", aid, card);
		}
		/* §9.5 names as printed ("ssidAid"), seId per standard.md gaps */
		body = json_pack("{s:s, s:s, s:s, s:s}", "seiTsmId",
		    s->m.sei_tsm_id, "ssidAid", aid, "status", status, "seId", se);
		err[0] = '\0';
		rc = seisim_post(s, SDSTATUS_PATH, body, &resp, &http, err,
		    sizeof(err));
		json_decref(body);
		ev = json_pack("{s:s, s:I, s:I}", "status", status, "time",
		    (json_int_t)wall_seconds(), "httpStatus", (json_int_t)http);
		if (rc == 0 && json_integer_value(json_object_get(resp,
		    "resultCode")) == 0 && json_is_integer(json_object_get(resp,
		    "resultCode"))) {
			printf("sd-status: SSD %s on SE %s -> %s: accepted\n", aid, se,
			    status);
			json_object_set_new(ev, "result", json_string("OK"));
			json_object_set_new(r, "state", json_string(status));
			json_object_set_new(r, "updated", json_integer(wall_seconds()));
		} else {
			if (rc == 0)
				snprintf(err, sizeof(err), "resultCode %lld: %s",
				    (long long)json_integer_value(json_object_get(resp,
				    "resultCode")), json_string_value(json_object_get(
				    resp, "resultMessage")) ? json_string_value(
				    json_object_get(resp, "resultMessage")) : "");
			fprintf(stderr, "sd-status: SSD %s on SE %s -> %s: FAILED: %s\n",
			    aid, se, status, err);
			json_object_set_new(ev, "result", json_string("FAILED"));
			json_object_set_new(ev, "message", json_string(err));
			if (c != NULL) {	/* the card was wiped all the same */
				json_object_set_new(r, "state", json_string(status));
				json_object_set_new(r, "updated",
				    json_integer(wall_seconds()));
			}
			failed = 1;
		}
		if (!json_is_array(json_object_get(r, "sdStatus")))
			json_object_set_new(r, "sdStatus", json_array());
		json_array_append_new(json_object_get(r, "sdStatus"), ev);
		json_decref(resp);
		resp = NULL;
	}
	if (seisim_state_commit(&st) != 0)
		failed = 1;
	seisim_state_close(&st);
	vse_free(c);
	if (count == 0)
		printf("no SSD created by the simulator is left on SE %s\n", se);
	return failed ? 1 : 0;
}
