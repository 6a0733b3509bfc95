/*
 * routes.c - registers tsmd's SEI-facing routes (§9.4, §9.5) with their
 * error shape, and what both handlers share: answers, the signing peer
 * against seiTsmId, the durable nonce, the SE/SSD records they create.
 * Runs in tsmd's workers; the framework has authenticated the peer, the
 * body is still untrusted.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "tsm/sei/sei_int.h"

int
sei_reply(struct http_resp *rs, int code, const char *fmt, ...)
{
	char msg[SEI_MSG_MAX];
	va_list ap;

	va_start(ap, fmt);
	(void)vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return http_resp_json(rs, sei_result_status(code), json_pack("{s:i, s:s}",
	    "resultCode", code, "resultMessage", msg));
}

int
sei_store_failure(struct http_req *rq, struct http_resp *rs, int rc)
{
	if (rc == ERR_EXISTS || rc == ERR_WRONGSTATE)
		return sei_reply(rs, SEI_UNAVAILABLE, "the SSD record changed "
		    "under this request too often; retry later");
	log_msg(LOG_ERR, "event=sei_store_failed rid=%s err=%s", http_req_id(rq),
	    err_name(rc));
	if (rc == ERR_LIMIT || rc == ERR_BUSY)
		return sei_reply(rs, SEI_UNAVAILABLE, "the store cannot take this "
		    "now; retry later");
	return sei_reply(rs, SEI_INTERNAL, "internal error");
}

int
sei_batch_add_se(struct store_batch *b, struct store *st, const char *se_id,
    const struct tsm_peer *p, uint64_t now)
{
	char key[STORE_KEY_MAX + 1];
	struct store_se se;
	int rc;

	rc = store_se_get(st, se_id, &se);
	if (rc != ERR_NOTFOUND)
		return rc;
	memset(&se, 0, sizeof(se));
	snprintf(se.se_id, sizeof(se.se_id), "%s", se_id);
	snprintf(se.peer_id, sizeof(se.peer_id), "%s", p->sei_tsm_id);
	snprintf(se.state, sizeof(se.state), "ACTIVE");
	se.created = se.updated = se.last_seen = now;
	if ((rc = store_key_se(key, se_id)) != 0 ||
	    (rc = store_batch_require_absent(b, STORE_DB_SE, key,
	    strlen(key))) != 0)
		return rc;
	return store_batch_put_se(b, &se);
}

void
sei_ssd_fresh(struct store_ssd *ssd, const char *se_id, const char *sd_aid,
    const char *state, uint64_t now)
{
	memset(ssd, 0, sizeof(*ssd));
	snprintf(ssd->se_id, sizeof(ssd->se_id), "%s", se_id);
	snprintf(ssd->sd_aid, sizeof(ssd->sd_aid), "%s", sd_aid);
	snprintf(ssd->state, sizeof(ssd->state), "%s", state);
	ssd->mode = STORE_MODE_AMSD;
	ssd->created = ssd->updated = now;
}

int
sei_batch_put_new_ssd(struct store_batch *b, const struct store_ssd *ssd)
{
	char key[STORE_KEY_MAX + 1];
	int rc;

	if ((rc = store_key_ssd(key, ssd->se_id, ssd->sd_aid)) != 0 ||
	    (rc = store_batch_require_absent(b, STORE_DB_SSD, key,
	    strlen(key))) != 0)
		return rc;
	return store_batch_put_ssd(b, ssd);
}

int
sei_nonce_claimed(struct store *st, const char *peer, const char *nonce,
    uint64_t now)
{
	char key[STORE_KEY_MAX + 1];
	struct store_nonce r;
	struct buf v;
	int rc;

	if ((rc = store_key_nonce(key, peer, nonce)) != 0)
		return rc;
	buf_init(&v);
	rc = store_raw_get(st, STORE_DB_NONCE, key, strlen(key), &v);
	if (rc == ERR_NOTFOUND) {
		rc = 0;
	} else if (rc == 0) {
		rc = store_nonce_decode(v.p, v.len, &r);
		if (rc == 0)
			rc = r.expires > now ? 1 : 0;
	}
	buf_free(&v);
	return rc;
}

int
sei_claim_nonce(struct store_batch *b, const struct tsm_peer *p,
    const struct http_sig *sig, uint64_t now)
{
	int64_t until = (sig->ts > (int64_t)now ? sig->ts : (int64_t)now) +
	    HTTP_SIG_WINDOW_S;

	return store_batch_claim_nonce(b, p->sei_tsm_id, sig->nonce, now,
	    (uint64_t)until - now);
}

int
sei_check_request(struct http_req *rq, const struct http_sig *sig,
    struct store *st, const char *sei_tsm_id, char *msg, size_t cap)
{
	const struct tsm_peer *p = http_req_peer(rq);
	int rc;

	if (p == NULL || sig == NULL) {
		snprintf(msg, cap, "internal error");
		return SEI_INTERNAL;	/* the route is not HTTP_AUTH_SEI_PEER */
	}
	if (strcmp(sei_tsm_id, p->sei_tsm_id) != 0) {
		if (tsm_config_peer(http_req_config(rq), sei_tsm_id) == NULL) {
			snprintf(msg, cap, "seiTsmId: %s is not a configured peer",
			    sei_tsm_id);
			return SEI_UNKNOWN_PEER;
		}
		snprintf(msg, cap, "seiTsmId: %s is not the peer that signed the "
		    "request", sei_tsm_id);
		return SEI_AUTH_FAILED;
	}
	rc = sei_nonce_claimed(st, p->sei_tsm_id, sig->nonce,
	    (uint64_t)wall_seconds());
	if (rc == 1) {
		snprintf(msg, cap, "nonce already used");
		return SEI_REPLAY;
	}
	if (rc != 0) {
		log_msg(LOG_WARN, "event=sei_nonce_read_failed rid=%s err=%s",
		    http_req_id(rq), err_name(rc));
		snprintf(msg, cap, "cannot check the nonce now; retry later");
		return SEI_UNAVAILABLE;
	}
	return SEI_OK;
}

int
sei_routes_register(struct http_router *r, struct store *st)
{
	static const struct {
		const char     *path;
		http_handler_fn fn;
		int             mac_in_handler;
	} routes[] = {
		/* key sync: the MAC is verified in the same kmsd request as
		 * the import (keyset.receive) */
		{ "/api/v1/sei/key-sync", sei_keysync_handle, 1 },
		{ "/api/v1/sei/sd-status", sei_sdstatus_handle, 0 },
	};
	/* tsmd serves one store per process, for as long as the router. */
	static struct sei_app the_app;
	struct http_route_ext ext = { .error = sei_error_json,
	    .nonce_durable = 1 };
	struct sei_app *app = &the_app;
	size_t i;
	int rc;

	if (r == NULL || st == NULL)
		return ERR_INVAL;
	app->st = st;
	for (i = 0; i < ARRAY_LEN(routes); i++) {
		ext.mac_in_handler = routes[i].mac_in_handler;
		/* the key sync starts on MHD's thread and hands itself off
		 * to kmsd's pipe: no worker in its usual path */
		ext.starts_on_io = routes[i].mac_in_handler;
		if ((rc = http_route_add(r, "POST", routes[i].path,
		    HTTP_AUTH_SEI_PEER, routes[i].fn, app)) != 0 ||
		    (rc = http_route_extend(r, "POST", routes[i].path, &ext)) != 0)
			return rc;
	}
	return 0;
}
