/*
 * sig.c - X-TSM-Signature, the HMAC-SHA256 message authentication between
 * tsmd and SEI-TSMs (§8.3; ARCHITECTURE.md "External contracts"): header
 * parsing (outside input, fuzzed), the signed string, signing and
 * verification in kmsd (the key never leaves the token), and the nonce
 * replay cache. Runs in tsmd on the worker threads.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/rand.h>

#include "tsm/http/http_int.h"

static int
is_hex(const char *s, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f') ||
		    (s[i] >= 'A' && s[i] <= 'F')))
			return 0;
	return 1;
}

int
http_ident_ok(const char *s, size_t n)
{
	return tsm_ident_ok(s, n, HTTP_IDENT_MAX, 0);
}
int
http_sig_parse(const char *hdr, struct http_sig *out)
{
	const char *p = hdr, *eq, *end;
	unsigned seen = 0;
	size_t kl, vl, i, n;

	memset(out, 0, sizeof(*out));
	if (hdr == NULL || strnlen(hdr, 513) > 512)
		return ERR_PARSE;
	while (*p != '\0') {
		while (*p == ' ')
			p++;
		end = p + strcspn(p, ",");
		eq = memchr(p, '=', (size_t)(end - p));
		if (eq == NULL)
			return ERR_PARSE;
		kl = (size_t)(eq - p);
		vl = (size_t)(end - eq - 1);
		while (vl > 0 && eq[vl] == ' ')
			vl--;	/* trailing blanks before the comma */
		eq++;
		if (kl == 5 && memcmp(p, "keyId", 5) == 0 && !(seen & 1)) {
			if (!http_ident_ok(eq, vl))
				return ERR_PARSE;
			memcpy(out->key_id, eq, vl);
			out->key_id[vl] = '\0';
			seen |= 1;
		} else if (kl == 2 && memcmp(p, "ts", 2) == 0 && !(seen & 2)) {
			int64_t ts = 0;

			if (vl == 0 || vl > 12)
				return ERR_PARSE;
			for (i = 0; i < vl; i++) {
				if (eq[i] < '0' || eq[i] > '9')
					return ERR_PARSE;
				ts = ts * 10 + (eq[i] - '0');
			}
			out->ts = ts;
			seen |= 2;
		} else if (kl == 5 && memcmp(p, "nonce", 5) == 0 && !(seen & 4)) {
			if (vl != 32 || !is_hex(eq, vl))
				return ERR_PARSE;
			for (i = 0; i < 32; i++)
				out->nonce[i] = (char)(eq[i] >= 'A' && eq[i] <= 'F' ?
				    eq[i] - 'A' + 'a' : eq[i]);
			out->nonce[32] = '\0';
			seen |= 4;
		} else if (kl == 3 && memcmp(p, "sig", 3) == 0 && !(seen & 8)) {
			if (vl != 64 || hex_decode(eq, vl, out->sig, sizeof(out->sig),
			    &n) != 0 || n != 32)
				return ERR_PARSE;
			seen |= 8;
		} else
			return ERR_PARSE;
		p = *end == ',' ? end + 1 : end;
		if (*end == ',' && *p == '\0')
			return ERR_PARSE;	/* trailing comma */
	}
	return seen == 15 ? 0 : ERR_PARSE;
}

int
http_sig_head(struct buf *out, const char *method, const char *path,
    int64_t ts, const char *nonce)
{
	char tss[24];
	int rc;

	snprintf(tss, sizeof(tss), "%lld", (long long)ts);
	if ((rc = buf_put(out, method, strlen(method))) != 0 ||
	    (rc = buf_put(out, "\n", 1)) != 0 ||
	    (rc = buf_put(out, path, strlen(path))) != 0 ||
	    (rc = buf_put(out, "\n", 1)) != 0 ||
	    (rc = buf_put(out, tss, strlen(tss))) != 0 ||
	    (rc = buf_put(out, "\n", 1)) != 0 ||
	    (rc = buf_put(out, nonce, strlen(nonce))) != 0)
		return rc;
	return buf_put(out, "\n", 1);
}

#define NONCE_POOL 512

static __thread uint8_t nonce_pool[NONCE_POOL];
static __thread size_t nonce_left;

int
http_sig_nonce(char out[33])
{
	if (nonce_left < 16) {
		if (RAND_bytes(nonce_pool, sizeof(nonce_pool)) != 1)
			return ERR_CRYPTO;
		nonce_left = sizeof(nonce_pool);
	}
	hex_encode(nonce_pool + sizeof(nonce_pool) - nonce_left, 16, out);
	nonce_left -= 16;
	return 0;
}

int
http_sig_input(struct buf *out, const char *method, const char *path,
    int64_t ts, const char *nonce, const uint8_t *body, size_t n)
{
	uint8_t md[32];
	char hx[65];
	int rc;

	if ((rc = sha256_of(body != NULL ? body : (const uint8_t *)"", n,
	    md)) != 0)
		return rc;
	hex_encode(md, 32, hx);
	if ((rc = http_sig_head(out, method, path, ts, nonce)) != 0)
		return rc;
	return buf_put(out, hx, 64);
}

int
http_sig_header(char *hdr, size_t cap, const char *key_id, int64_t ts,
    const char *nonce, const uint8_t mac[32])
{
	char mhx[65];
	int len;

	hex_encode(mac, 32, mhx);
	len = snprintf(hdr, cap, "keyId=%s,ts=%lld,nonce=%s,sig=%s", key_id,
	    (long long)ts, nonce, mhx);
	return len < 0 || (size_t)len >= cap ? ERR_TOOBIG : 0;
}

int
http_sig_make(struct kms_client *c, const char *key_label, const char *key_id,
    const char *method, const char *path, const uint8_t *body, size_t n,
    char *hdr, size_t cap)
{
	uint8_t mac[32];
	char nonce[33];
	int64_t ts = wall_seconds();
	struct buf in;
	uint64_t t0;
	int rc;

	if (c == NULL)
		return ERR_IO;
	if ((rc = http_sig_nonce(nonce)) != 0)
		return rc;
	buf_init(&in);
	if ((rc = http_sig_input(&in, method, path, ts, nonce, body, n)) != 0)
		goto out;
	t0 = now_us();
	rc = kms_hmac(c, KMS_LABEL(key_label), in.p, in.len, mac);
	tsm_kms_observe(KMS_OP_HMAC, (double)(now_us() - t0) / 1e6, rc);
	if (rc != 0)
		goto out;
	rc = http_sig_header(hdr, cap, key_id, ts, nonce, mac);
out:
	buf_free(&in);
	return rc;
}

int
http_sig_verify(struct kms_client *c, const char *key_label,
    const struct http_sig *s, const char *method, const char *path,
    const uint8_t *body, size_t n)
{
	struct buf in;
	uint64_t t0;
	int rc;

	if (c == NULL)
		return ERR_IO;
	buf_init(&in);
	if ((rc = http_sig_input(&in, method, path, s->ts, s->nonce, body, n)) != 0)
		goto out;
	t0 = now_us();
	rc = kms_hmac_verify(c, KMS_LABEL(key_label), in.p, in.len, s->sig);
	tsm_kms_observe(KMS_OP_HMAC_VERIFY, (double)(now_us() - t0) / 1e6, rc);
out:
	buf_free(&in);
	return rc;
}

/* ---- nonce replay cache ----
 * Open addressing over 2^17 slots, each a 128-bit digest of (keyId, nonce)
 * and the time it may be forgotten (ts + window: after that the timestamp
 * check refuses the message anyway). Probing is bounded so every insert
 * and lookup is O(1); a full neighbourhood refuses (ERR_LIMIT -> 503)
 * rather than forget a live nonce. */

#define NONCE_SLOTS (1u << 17)
#define NONCE_PROBE 64

struct nonce_slot {
	uint64_t h[2];
	int64_t  until;		/* 0: never used */
};

static struct nonce_slot *nonces;
static pthread_mutex_t nonce_lock = PTHREAD_MUTEX_INITIALIZER;

/* Looks (key_id, nonce) up; records it when `record` and it is new. */
static int
nonce_op(const char *key_id, const char *nonce, int64_t ts, int64_t now,
    int record)
{
	/* keyId NUL nonce: at most the sizes of struct http_sig's fields */
	uint8_t in[sizeof(((struct http_sig *)0)->key_id) +
	    sizeof(((struct http_sig *)0)->nonce)], md[32];
	size_t kl = strlen(key_id), nl = strlen(nonce), i, idx,
	    freeslot = (size_t)-1;
	uint64_t h[2];
	int rc;

	if (kl + 1 + nl > sizeof(in))
		return ERR_INVAL;
	memcpy(in, key_id, kl + 1);
	memcpy(in + kl + 1, nonce, nl);
	if ((rc = sha256_of(in, kl + 1 + nl, md)) != 0)
		return rc;
	memcpy(h, md, sizeof(h));
	pthread_mutex_lock(&nonce_lock);
	if (nonces == NULL &&
	    (nonces = calloc(NONCE_SLOTS, sizeof(*nonces))) == NULL) {
		rc = ERR_NOMEM;
		goto unlock;
	}
	idx = (size_t)(h[0] & (NONCE_SLOTS - 1));
	for (i = 0; i < NONCE_PROBE; i++) {
		struct nonce_slot *s = &nonces[(idx + i) & (NONCE_SLOTS - 1)];

		if (s->until == 0 || s->until < now) {
			if (freeslot == (size_t)-1)
				freeslot = (idx + i) & (NONCE_SLOTS - 1);
			if (s->until == 0)
				break;	/* nothing was ever stored beyond */
			continue;
		}
		if (s->h[0] == h[0] && s->h[1] == h[1]) {
			rc = ERR_EXISTS;
			goto unlock;
		}
	}
	if (!record) {
		rc = 0;
		goto unlock;
	}
	if (freeslot == (size_t)-1) {
		rc = ERR_LIMIT;
		goto unlock;
	}
	nonces[freeslot].h[0] = h[0];
	nonces[freeslot].h[1] = h[1];
	nonces[freeslot].until = (ts > now ? ts : now) + HTTP_SIG_WINDOW_S;
	rc = 0;
unlock:
	pthread_mutex_unlock(&nonce_lock);
	return rc;
}

int
http_nonce_check(const char *key_id, const char *nonce, int64_t ts,
    int64_t now)
{
	return nonce_op(key_id, nonce, ts, now, 1);
}

int
http_nonce_seen(const char *key_id, const char *nonce, int64_t now)
{
	return nonce_op(key_id, nonce, 0, now, 0) == ERR_EXISTS;
}

void
http_nonce_cleanup(void)
{
	pthread_mutex_lock(&nonce_lock);
	free(nonces);
	nonces = NULL;
	pthread_mutex_unlock(&nonce_lock);
}
