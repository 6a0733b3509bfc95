/*
 * auth.c - X-TSM-Signature for the simulator, written from the contract in
 * ARCHITECTURE.md ("External contracts") with OpenSSL alone, on purpose
 * independent of tsm/http/sig.c so that each implementation checks the
 * other: sig = HMAC-SHA256(key, METHOD "\n" PATH "\n" ts "\n" nonce "\n"
 * hex(SHA-256(body))), lowercase hex; |ts - now| <= 300 s; nonces are
 * remembered for the window. Runs in seisim; headers are outside input.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/rand.h>

#include "tests/sim/seisim/seisim.h"

/* Seen nonces: (keyId|nonce) digests with the time they may be forgotten.
 * A simulator sees few requests; a pruned array is enough. */
struct seen {
	uint8_t h[16];
	int64_t until;
};
static struct seen *seen;
static size_t nseen, capseen;
static pthread_mutex_t seen_lock = PTHREAD_MUTEX_INITIALIZER;

static int
signed_string(const char *method, const char *path, const char *ts,
    const char *nonce, const void *body, size_t n, struct buf *out)
{
	uint8_t md[32];
	char hx[65];
	unsigned int ml = 0;

	if (EVP_Digest(body != NULL ? body : "", n, md, &ml, EVP_sha256(),
	    NULL) != 1)
		return ERR_CRYPTO;
	hex_encode(md, 32, hx);
	buf_reset(out);
	if (buf_put(out, method, strlen(method)) || buf_put(out, "\n", 1) ||
	    buf_put(out, path, strlen(path)) || buf_put(out, "\n", 1) ||
	    buf_put(out, ts, strlen(ts)) || buf_put(out, "\n", 1) ||
	    buf_put(out, nonce, strlen(nonce)) || buf_put(out, "\n", 1) ||
	    buf_put(out, hx, 64))
		return ERR_NOMEM;
	return 0;
}

static int
mac_of(const struct seisim_material *m, const char *method, const char *path,
    const char *ts, const char *nonce, const void *body, size_t n,
    uint8_t mac[32])
{
	struct buf in;
	int rc;

	buf_init(&in);
	if ((rc = signed_string(method, path, ts, nonce, body, n, &in)) == 0)
		rc = seisim_hmac(m->mac_key, m->mac_len, in.p, in.len, mac);
	buf_free(&in);
	return rc;
}

int
seisim_sig_make(const struct seisim_material *m, const char *method,
    const char *path, const void *body, size_t n, char *hdr, size_t cap)
{
	return seisim_sig_make_ts(m, wall_seconds(), method, path, body, n, hdr,
	    cap);
}

int
seisim_sig_make_ts(const struct seisim_material *m, int64_t t,
    const char *method, const char *path, const void *body, size_t n,
    char *hdr, size_t cap)
{
	uint8_t nb[16], mac[32];
	char nonce[33], ts[24], mh[65];
	int rc, len;

	if (RAND_bytes(nb, sizeof(nb)) != 1)
		return ERR_CRYPTO;
	hex_encode(nb, sizeof(nb), nonce);
	snprintf(ts, sizeof(ts), "%lld", (long long)t);
	if ((rc = mac_of(m, method, path, ts, nonce, body, n, mac)) != 0)
		return rc;
	hex_encode(mac, 32, mh);
	len = snprintf(hdr, cap, "keyId=%s,ts=%s,nonce=%s,sig=%s", m->mac_key_id,
	    ts, nonce, mh);
	return len < 0 || (size_t)len >= cap ? ERR_TOOBIG : 0;
}

/* Copies the value of `name=` from a comma-separated header; 0 if absent,
 * given twice, or longer than cap - 1. */
static int
field(const char *hdr, const char *name, char *out, size_t cap)
{
	size_t nl = strlen(name);
	const char *p = hdr, *e;
	int found = 0;

	while (*p != '\0') {
		while (*p == ' ')
			p++;
		e = p + strcspn(p, ",");
		if ((size_t)(e - p) > nl && strncmp(p, name, nl) == 0 &&
		    p[nl] == '=') {
			size_t vl = (size_t)(e - p) - nl - 1;

			if (found || vl == 0 || vl >= cap)
				return 0;
			memcpy(out, p + nl + 1, vl);
			out[vl] = '\0';
			found = 1;
		}
		p = *e == ',' ? e + 1 : e;
	}
	return found;
}

static int
all_of(const char *s, const char *set)
{
	return *s != '\0' && strspn(s, set) == strlen(s);
}

/* 0 fresh (now recorded), ERR_EXISTS replay. */
static int
nonce_claim(const char *key_id, const char *nonce, int64_t ts, int64_t now)
{
	uint8_t md[32];
	unsigned int ml = 0;
	char in[160];
	size_t i, j;
	int rc = 0;

	snprintf(in, sizeof(in), "%s|%s", key_id, nonce);
	for (i = 0; in[i]; i++)		/* nonces compare case-insensitively */
		if (in[i] >= 'A' && in[i] <= 'F')
			in[i] = (char)(in[i] - 'A' + 'a');
	if (EVP_Digest(in, strlen(in), md, &ml, EVP_sha256(), NULL) != 1)
		return ERR_CRYPTO;
	pthread_mutex_lock(&seen_lock);
	for (i = j = 0; i < nseen; i++)	/* prune the expired */
		if (seen[i].until >= now)
			seen[j++] = seen[i];
	nseen = j;
	for (i = 0; i < nseen; i++)
		if (memcmp(seen[i].h, md, 16) == 0) {
			rc = ERR_EXISTS;
			goto out;
		}
	if (nseen == capseen) {
		size_t nc = capseen ? capseen * 2 : 256;
		struct seen *ns = realloc(seen, nc * sizeof(*ns));

		if (ns == NULL) {
			rc = ERR_NOMEM;
			goto out;
		}
		seen = ns;
		capseen = nc;
	}
	memcpy(seen[nseen].h, md, 16);
	seen[nseen].until = (ts > now ? ts : now) + SEISIM_SIG_WINDOW_S;
	nseen++;
out:
	pthread_mutex_unlock(&seen_lock);
	return rc;
}

int
seisim_sig_check(const struct seisim_material *m, const char *hdr,
    const char *method, const char *path, const void *body, size_t n,
    const char **why)
{
	char kid[80], ts[24], nonce[40], sig[80];
	uint8_t want[32], got[32];
	size_t gl;
	int64_t t, now = wall_seconds();
	int rc;

	*why = "signature_missing";
	if (hdr == NULL || *hdr == '\0')
		return ERR_AUTH;
	*why = "signature_malformed";
	if (strlen(hdr) > 512 || !field(hdr, "keyId", kid, sizeof(kid)) ||
	    !field(hdr, "ts", ts, sizeof(ts)) ||
	    !field(hdr, "nonce", nonce, sizeof(nonce)) ||
	    !field(hdr, "sig", sig, sizeof(sig)) || strlen(ts) > 12 ||
	    !all_of(ts, "0123456789") || strlen(nonce) != 32 ||
	    !all_of(nonce, "0123456789abcdefABCDEF") || strlen(sig) != 64 ||
	    seisim_hex(sig, got, sizeof(got), &gl) != 0 || gl != 32)
		return ERR_AUTH;
	*why = "unknown_key_id";
	if (strcmp(kid, m->mac_key_id) != 0)
		return ERR_AUTH;
	*why = "signature_expired";
	t = strtoll(ts, NULL, 10);
	if (t > now + SEISIM_SIG_WINDOW_S || t < now - SEISIM_SIG_WINDOW_S)
		return ERR_AUTH;
	*why = "signature_invalid";
	if ((rc = mac_of(m, method, path, ts, nonce, body, n, want)) != 0)
		return rc;
	if (!ct_equal(want, got, 32))
		return ERR_AUTH;
	*why = "replay";
	if ((rc = nonce_claim(kid, nonce, t, now)) != 0)
		return rc == ERR_EXISTS ? ERR_AUTH : rc;
	*why = NULL;
	return 0;
}
