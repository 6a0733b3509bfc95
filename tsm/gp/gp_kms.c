/*
 * gp_kms.c - struct gp_backend over kmsd (library gpkms): key references are
 * kmsd handles of one connection. Runs in tsmd; holds no key bytes (only IVs
 * and R-ENC ICVs). Trusts kmsd's replies after length checks; accepts only
 * handles it registered or derived itself.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kms/kms.h"
#include "tsm/gp/gp_kms.h"

/*
 * Sharing the connection. A call queues its request and waits. Blocking
 * mode (threads): a caller that finds nobody driving the connection becomes
 * the leader: it sends everything queued in one write, reads replies (they
 * come in request order) and hands each to its caller until its own has
 * come, then wakes a waiting caller to lead on. Cooperative mode (one
 * thread, sessions as coroutines): the caller's scheduler drives the
 * connection with gp_kms_pump() while the sessions yield. Either way N
 * sessions keep up to N requests in flight and many travel per write, which
 * is where kmsd's throughput is (kms/PROTOCOL.md: "a few connections, each
 * keeping several requests in flight"); one session alone pays a round trip
 * per operation.
 */

/* Queued requests are held back while at least SEND_LOW, and more than
 * are queued, are in flight, until SEND_BATCH are queued. */
#define SEND_LOW   2
#define SEND_BATCH 8

/* R-ENC ICVs computed per request: E(S-ENC, 80 || counter + k). */
#define ICV_AHEAD 32

enum ref_kind { REF_STATIC = 1, REF_SENC, REF_SMAC, REF_SRMAC };

struct icv_cache {
	uint8_t base[16];		/* 80 || counter of the first block */
	size_t  n;
	uint8_t out[ICV_AHEAD][16];
};

struct ref {
	uint32_t          h;		/* kmsd handle = gp_keyref; 0 = empty slot */
	uint8_t           len;		/* key bytes: 16/24/32 */
	uint8_t           kind;		/* enum ref_kind */
	uint8_t           has_kcv;	/* kcv: the GP KCV keyset.open reported */
	uint8_t           kcv[3];
	struct icv_cache *icv;		/* S-ENC only, when used */
};

/* Open addressing, linear probing, at most half full. */
struct refmap {
	struct ref *v;
	size_t      cap, n;
};

/* One request; lives on its caller's stack until done. */
struct call {
	int             op;
	struct buf      body;
	uint32_t        id;
	int             done;
	int             status;
	struct buf      reply;		/* body of a successful reply */
	char            msg[160];	/* kmsd's message of a failed one */
	pthread_cond_t  cv;
	struct call    *next;
};

struct gp_kms {
	pthread_mutex_t    mu;		/* everything below */
	struct kms_client *c;		/* touched by the leader only */
	int                dead;	/* 0, or the error that ended the connection */
	int                leading;
	void             (*yield)(void *);	/* cooperative mode */
	void              *yield_ctx;
	struct call       *qh, *qt;	/* queued, not yet sent */
	struct call       *fh, *ft;	/* sent, replies come in this order */
	size_t             nflight;
	struct refmap      map;
	char               err[256];
	struct gp_kms_stats st;
};

/* ---- handle map ------------------------------------------------------ */

static size_t
slot_of(uint32_t h, size_t cap)
{
	/* Fibonacci hashing: kmsd handles are (generation << 16 | slot). */
	return (size_t)((h * 2654435761u) & (uint32_t)(cap - 1));
}

static struct ref *
map_find(struct refmap *m, uint32_t h)
{
	size_t i;

	if (m->cap == 0 || h == 0)
		return NULL;
	for (i = slot_of(h, m->cap); m->v[i].h != 0; i = (i + 1) & (m->cap - 1))
		if (m->v[i].h == h)
			return &m->v[i];
	return NULL;
}

static void
icv_free(struct icv_cache *ic)
{
	if (ic != NULL) {
		wipe(ic, sizeof(*ic));
		free(ic);
	}
}

static int
map_grow(struct refmap *m)
{
	struct refmap nm;
	size_t i, j;

	nm.cap = m->cap ? 2 * m->cap : 64;
	nm.n = m->n;
	if ((nm.v = calloc(nm.cap, sizeof(*nm.v))) == NULL)
		return ERR_NOMEM;
	for (i = 0; i < m->cap; i++) {
		if (m->v[i].h == 0)
			continue;
		for (j = slot_of(m->v[i].h, nm.cap); nm.v[j].h != 0;
		    j = (j + 1) & (nm.cap - 1))
			;
		nm.v[j] = m->v[i];
	}
	free(m->v);
	*m = nm;
	return 0;
}

static int
map_add(struct refmap *m, uint32_t h, size_t len, int kind)
{
	size_t i;
	int rc;

	if (h == 0)
		return ERR_INVAL;
	if (map_find(m, h) != NULL)
		return ERR_EXISTS;
	if (2 * (m->n + 1) > m->cap && (rc = map_grow(m)) != 0)
		return rc;
	for (i = slot_of(h, m->cap); m->v[i].h != 0; i = (i + 1) & (m->cap - 1))
		;
	m->v[i].h = h;
	m->v[i].len = (uint8_t)len;
	m->v[i].kind = (uint8_t)kind;
	m->v[i].has_kcv = 0;
	m->v[i].icv = NULL;
	m->n++;
	return 0;
}

/* Removes h (backward-shift deletion keeps every probe chain intact). */
static void
map_del(struct refmap *m, uint32_t h)
{
	struct ref *r = map_find(m, h);
	size_t i, j, home;

	if (r == NULL)
		return;
	icv_free(r->icv);
	i = (size_t)(r - m->v);
	m->v[i].h = 0;
	m->v[i].icv = NULL;
	m->n--;
	for (j = (i + 1) & (m->cap - 1); m->v[j].h != 0; j = (j + 1) & (m->cap - 1)) {
		home = slot_of(m->v[j].h, m->cap);
		/* Move j back to i when i lies on j's probe path home..j. */
		if ((j > i && (home <= i || home > j)) ||
		    (j < i && (home <= i && home > j))) {
			m->v[i] = m->v[j];
			m->v[j].h = 0;
			m->v[j].icv = NULL;
			i = j;
		}
	}
}

static void
map_free(struct refmap *m)
{
	size_t i;

	for (i = 0; i < m->cap; i++)
		icv_free(m->v[i].icv);
	free(m->v);
	memset(m, 0, sizeof(*m));
}

/* ---- requests --------------------------------------------------------- */

static void
call_init(struct call *c, int op)
{
	memset(c, 0, sizeof(*c));
	c->op = op;
	buf_init(&c->body);
	buf_init(&c->reply);
	pthread_cond_init(&c->cv, NULL);
}

static void
call_cleanup(struct call *c)
{
	buf_free(&c->body);	/* wipes: bodies carry data to be MACed */
	buf_free(&c->reply);	/* wipes: replies carry plaintext */
	pthread_cond_destroy(&c->cv);
}

static void
set_err(struct gp_kms *g, int rc, const char *what, const char *msg)
{
	snprintf(g->err, sizeof(g->err), "%s: %s%s%s", what, err_str(rc),
	    msg[0] ? ": " : "", msg);
}

static void
finish(struct call *c, int status, const char *msg)
{
	c->status = status;
	snprintf(c->msg, sizeof(c->msg), "%s", msg);
	c->done = 1;
	pthread_cond_signal(&c->cv);
}

/* The connection cannot be trusted any more: every request fails. */
static void
conn_fail(struct gp_kms *g, int rc, const char *why)
{
	struct call *x;

	g->dead = ERR_CLOSED;
	log_msg(LOG_ERR, "event=gp_kms_connection_lost err=%s msg=\"%s\"",
	    err_name(rc), why);
	while ((x = g->fh) != NULL) {
		g->fh = x->next;
		finish(x, ERR_CLOSED, "kmsd connection lost; its handles are gone");
	}
	g->ft = NULL;
	g->nflight = 0;
	while ((x = g->qh) != NULL) {
		g->qh = x->next;
		finish(x, ERR_CLOSED, "kmsd connection lost; its handles are gone");
	}
	g->qt = NULL;
}

/* One turn at the connection: sends everything queued (requests of
 * several callers in one write), then reads one reply and hands it to its
 * caller. Called and returns with g->mu held, by the leader only; drops
 * the lock around the socket I/O, during which only the leader touches
 * g->c and the sent list (others only append to the queue). */
static void
pump_once(struct gp_kms *g)
{
	struct call *x;
	struct rd r;
	uint32_t id;
	int status, rc, sent = 0, hold;
	size_t nq = 0;

	/* While kmsd has more requests in hand than wait here, queued ones
	 * wait to travel in bigger writes: fewer syscalls on both sides, and
	 * kmsd (single-threaded, the bottleneck) reads many per read. */
	for (x = g->qh; x != NULL && nq < SEND_BATCH; x = x->next)
		nq++;
	hold = nq < SEND_BATCH && g->nflight > nq && g->nflight >= SEND_LOW;
	while (!hold && (x = g->qh) != NULL) {
		g->qh = x->next;
		if (g->qh == NULL)
			g->qt = NULL;
		x->next = NULL;
		if ((rc = kms_submit(g->c, x->op, &x->body, &x->id)) != 0) {
			/* ERR_TOOBIG is refused before anything is queued;
			 * after any other failure the outgoing stream may hold
			 * half a frame. */
			finish(x, rc, "request not sent");
			if (rc != ERR_TOOBIG) {
				conn_fail(g, rc, "request could not be queued");
				return;
			}
			continue;
		}
		if (g->ft != NULL)
			g->ft->next = x;
		else
			g->fh = x;
		g->ft = x;
		g->nflight++;
		sent++;
	}
	if (sent > 0) {
		g->st.requests += (uint64_t)sent;
		g->st.writes++;
		if (g->nflight > g->st.max_in_flight)
			g->st.max_in_flight = g->nflight;
	}
	if (g->nflight == 0)
		return;
	pthread_mutex_unlock(&g->mu);
	rc = sent > 0 ? kms_flush(g->c) : 0;
	if (rc == 0)
		rc = kms_next(g->c, &id, &status, &r);
	pthread_mutex_lock(&g->mu);
	if (rc != 0) {
		conn_fail(g, rc, kms_last_error(g->c));
		return;
	}
	x = g->fh;
	if (x->id != id) {
		conn_fail(g, ERR_PROTO, "kmsd replied out of order");
		return;
	}
	g->fh = x->next;
	if (g->fh == NULL)
		g->ft = NULL;
	g->nflight--;
	if (status == 0) {
		rc = buf_put(&x->reply, r.p, r.len);
		finish(x, rc, rc ? "reply does not fit in memory" : "");
	} else {
		char msg[sizeof(x->msg)];

		if (rd_str(&r, msg, sizeof(msg)) != 0)
			msg[0] = '\0';
		finish(x, status, msg);
	}
}

/* Runs one request; returns its status (0 = reply in c->reply). */
static int
call_run(struct gp_kms *g, struct call *c, const char *what)
{
	pthread_mutex_lock(&g->mu);
	if (g->dead) {
		finish(c, g->dead, "kmsd connection lost earlier; its handles are "
		    "gone");
	} else {
		if (g->qt != NULL)
			g->qt->next = c;
		else
			g->qh = c;
		g->qt = c;
	}
	while (!c->done) {
		if (g->yield != NULL) {
			/* Cooperative: the caller's scheduler runs other
			 * sessions and calls gp_kms_pump(). */
			pthread_mutex_unlock(&g->mu);
			g->yield(g->yield_ctx);
			pthread_mutex_lock(&g->mu);
		} else if (!g->leading) {
			g->leading = 1;
			while (!c->done && (g->qh != NULL || g->nflight > 0))
				pump_once(g);
			g->leading = 0;
			/* Somebody else's reply may still be on its way:
			 * its caller drives the connection from here. */
			if (g->fh != NULL)
				pthread_cond_signal(&g->fh->cv);
			else if (g->qh != NULL)
				pthread_cond_signal(&g->qh->cv);
		} else {
			pthread_cond_wait(&c->cv, &g->mu);
		}
	}
	if (c->status != 0)
		set_err(g, c->status, what, c->msg);
	pthread_mutex_unlock(&g->mu);
	if (c->status != 0)
		log_msg(LOG_DEBUG, "event=gp_kms_failed op=%s err=%s msg=\"%s\"",
		    what, err_name(c->status), c->msg);
	return c->status;
}

/* A reply that does not have the promised layout: kmsd and we disagree
 * about the protocol (and a handle may exist that we do not know of), so
 * the connection is not used further. */
static int
bad_reply(struct gp_kms *g, const char *what)
{
	pthread_mutex_lock(&g->mu);
	if (!g->dead)
		conn_fail(g, ERR_PROTO, what);
	snprintf(g->err, sizeof(g->err), "%s: malformed reply from kmsd", what);
	pthread_mutex_unlock(&g->mu);
	return ERR_PROTO;
}

/* Runs c; its reply is exactly n bytes, copied to out. */
static int
call_bytes(struct gp_kms *g, struct call *c, const char *what, uint8_t *out,
    size_t n)
{
	int rc;

	if ((rc = call_run(g, c, what)) != 0)
		return rc;
	if (c->reply.len != n)
		return bad_reply(g, what);
	memcpy(out, c->reply.p, n);
	return 0;
}

static int
fail_local(struct gp_kms *g, int rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int
fail_local(struct gp_kms *g, int rc, const char *fmt, ...)
{
	va_list ap;

	pthread_mutex_lock(&g->mu);
	va_start(ap, fmt);
	vsnprintf(g->err, sizeof(g->err), fmt, ap);
	va_end(ap);
	pthread_mutex_unlock(&g->mu);
	return rc;
}

/* Copies the registered entry of `ref` (ERR_HANDLE when unknown). */
static int
ref_get(struct gp_kms *g, gp_keyref ref, struct ref *out)
{
	struct ref *r;

	pthread_mutex_lock(&g->mu);
	r = map_find(&g->map, ref);
	if (r != NULL)
		*out = *r;
	pthread_mutex_unlock(&g->mu);
	if (r == NULL)
		return fail_local(g, ERR_HANDLE, "key reference %u is not a "
		    "registered key-set member or a live session key of this "
		    "kmsd connection", ref);
	return 0;
}

/* kmsd handle.close of up to KMS_CLOSE_MAX handles in one request. */
static int
handles_close_n(struct gp_kms *g, const uint32_t *h, size_t n)
{
	struct call c;
	int rc;
	size_t i;

	if (n == 0)
		return 0;
	call_init(&c, KMS_OP_HANDLE_CLOSE);
	for (i = 0, rc = 0; rc == 0 && i < n; i++)
		rc = buf_put_u32(&c.body, h[i]);
	if (rc == 0 && (rc = call_run(g, &c, "handle.close")) == 0 &&
	    c.reply.len != 0)
		rc = bad_reply(g, "handle.close");
	call_cleanup(&c);
	/* kmsd closes none when one is unknown (reaped after idling, say):
	 * close the others one by one, report the first failure. */
	if (rc == ERR_HANDLE && n > 1) {
		int r1, first = 0;

		for (i = 0; i < n; i++)
			if ((r1 = handles_close_n(g, &h[i], 1)) != 0 && first == 0)
				first = r1;
		rc = first;
	}
	return rc;
}

/* Best effort for handles nobody will use again: the non-zero ones of
 * h[0..n) in one request, a failure logged; nothing is sent on a dead
 * connection (kmsd dropped every handle of it). */
static void
handles_close(struct gp_kms *g, const uint32_t *h, size_t n)
{
	uint32_t live[KMS_CLOSE_MAX];
	size_t i, m = 0;
	int dead;

	for (i = 0; i < n && m < KMS_CLOSE_MAX; i++)
		if (h[i] != 0)
			live[m++] = h[i];
	pthread_mutex_lock(&g->mu);
	dead = g->dead;
	pthread_mutex_unlock(&g->mu);
	if (m > 0 && !dead && handles_close_n(g, live, m) != 0)
		log_msg(LOG_WARN, "event=gp_kms_close_failed handles=%zu first=%u",
		    m, live[0]);
}

/* ---- the backend ---------------------------------------------------- */

static int
be_derive(void *ctx, gp_keyref base, uint8_t konst, const uint8_t *context,
    size_t clen, uint16_t lbits, gp_keyref *out)
{
	struct gp_kms *g = ctx;
	struct ref b;
	struct call c;
	struct rd r;
	uint32_t h = 0;
	int kind, rc;

	*out = 0;
	if ((rc = ref_get(g, base, &b)) != 0)
		return rc;
	kind = konst == 0x04 ? REF_SENC : konst == 0x06 ? REF_SMAC :
	    konst == 0x07 ? REF_SRMAC : 0;
	if (kind == 0 || b.kind != REF_STATIC || lbits != 8u * b.len)
		return fail_local(g, ERR_INVAL, "scp03.derive: constant %02X, "
		    "L %u on a %u-byte %s key", konst, lbits, b.len,
		    b.kind == REF_STATIC ? "static" : "session");
	call_init(&c, KMS_OP_SCP03_DERIVE);
	if ((rc = kms_put_ref(&c.body, KMS_HANDLE(base))) != 0 ||
	    (rc = buf_put_u8(&c.body, konst)) != 0 ||
	    (rc = buf_put_lv16(&c.body, context, clen)) != 0 ||
	    (rc = buf_put_u16(&c.body, lbits)) != 0 ||
	    (rc = call_run(g, &c, "scp03.derive")) != 0)
		goto out;
	rd_init(&r, c.reply.p, c.reply.len);
	if (rd_u32(&r, &h) != 0 || rd_end(&r) != 0 || h == 0) {
		rc = bad_reply(g, "scp03.derive");
		goto out;
	}
	pthread_mutex_lock(&g->mu);
	rc = map_add(&g->map, h, lbits / 8, kind);
	pthread_mutex_unlock(&g->mu);
	if (rc != 0) {
		/* Unusable without an entry: give it back at once. */
		(void)fail_local(g, rc, "scp03.derive: handle %u not recorded: %s",
		    h, err_str(rc));
		handles_close(g, &h, 1);
		goto out;
	}
	*out = h;
out:
	call_cleanup(&c);
	return rc;
}

/* scp03.open: the session's opening in one kmsd request (GP_OPEN_* flags
 * map one to one onto SCP03_OPEN_*). */
static int
be_open(void *ctx, gp_keyref enc, gp_keyref mac, unsigned flags,
    const uint8_t *context, size_t clen, uint16_t cbits,
    const uint8_t *chal_ctx, size_t chal_len, struct gp_open_out *out)
{
	struct gp_kms *g = ctx;
	struct ref e, m;
	struct call c;
	struct rd r;
	const uint8_t *p;
	uint32_t h[3] = { 0, 0, 0 };
	static const int kinds[3] = { REF_SENC, REF_SMAC, REF_SRMAC };
	size_t n, cl = cbits / 8u;
	unsigned added = 0;
	int rc, i;

	memset(out, 0, sizeof(*out));
	if ((rc = ref_get(g, enc, &e)) != 0 || (rc = ref_get(g, mac, &m)) != 0)
		return rc;
	if (e.kind != REF_STATIC || m.kind != REF_STATIC || e.len != m.len ||
	    (cbits != 64 && cbits != 128))
		return fail_local(g, ERR_INVAL, "scp03.open: static ENC and MAC of "
		    "one length and L 64 or 128 needed");
	call_init(&c, KMS_OP_SCP03_OPEN);
	if ((rc = kms_put_ref(&c.body, KMS_HANDLE(enc))) != 0 ||
	    (rc = kms_put_ref(&c.body, KMS_HANDLE(mac))) != 0 ||
	    (rc = buf_put_u8(&c.body, (uint8_t)flags)) != 0 ||
	    (rc = buf_put_lv16(&c.body, context, clen)) != 0 ||
	    (rc = buf_put_u16(&c.body, cbits)) != 0 ||
	    (rc = buf_put_lv16(&c.body, chal_ctx, chal_len)) != 0 ||
	    (rc = call_run(g, &c, "scp03.open")) != 0)
		goto out;
	/* Exactly the handles asked for (S-MAC always), the challenge only
	 * when a context was given: anything else is a protocol mismatch. */
	rd_init(&r, c.reply.p, c.reply.len);
	if (rd_u32(&r, &h[0]) != 0 || rd_u32(&r, &h[1]) != 0 ||
	    rd_u32(&r, &h[2]) != 0 || h[1] == 0 ||
	    (h[0] != 0) != ((flags & GP_OPEN_SENC) != 0) ||
	    (h[2] != 0) != ((flags & GP_OPEN_SRMAC) != 0) ||
	    rd_bytes(&r, cl, &p) != 0) {
		rc = bad_reply(g, "scp03.open");
		goto out;
	}
	memcpy(out->card_crypto, p, cl);
	if (rd_bytes(&r, cl, &p) != 0) {
		rc = bad_reply(g, "scp03.open");
		goto out;
	}
	memcpy(out->host_crypto, p, cl);
	if (rd_lv16(&r, &p, &n) != 0 || n != (chal_len > 0 ? cl : 0) ||
	    rd_end(&r) != 0) {
		rc = bad_reply(g, "scp03.open");
		goto out;
	}
	memcpy(out->challenge, p, n);
	pthread_mutex_lock(&g->mu);
	for (i = 0; i < 3 && rc == 0; i++)
		if (h[i] != 0 && (rc = map_add(&g->map, h[i], e.len,
		    kinds[i])) == 0)
			added |= 1u << i;
	for (i = 0; rc != 0 && i < 3; i++)	/* only what this call added */
		if (added & (1u << i))
			map_del(&g->map, h[i]);
	pthread_mutex_unlock(&g->mu);
	if (rc != 0) {
		(void)fail_local(g, rc, "scp03.open: handles not recorded: %s",
		    err_str(rc));
		handles_close(g, h, 3);
		memset(out, 0, sizeof(*out));
		goto out;
	}
	out->s_enc = h[0];
	out->s_mac = h[1];
	out->s_rmac = h[2];
out:
	call_cleanup(&c);
	return rc;
}

static int
be_kdf(void *ctx, gp_keyref key, uint8_t konst, const uint8_t *context,
    size_t clen, uint16_t lbits, uint8_t *out)
{
	struct gp_kms *g = ctx;
	struct ref k;
	struct call c;
	int rc;

	if ((rc = ref_get(g, key, &k)) != 0)
		return rc;
	if (lbits != 64 && lbits != 128)
		return fail_local(g, ERR_INVAL, "scp03.kdf: L %u", lbits);
	call_init(&c, KMS_OP_SCP03_KDF);
	if ((rc = kms_put_ref(&c.body, KMS_HANDLE(key))) == 0 &&
	    (rc = buf_put_u8(&c.body, konst)) == 0 &&
	    (rc = buf_put_lv16(&c.body, context, clen)) == 0 &&
	    (rc = buf_put_u16(&c.body, lbits)) == 0)
		rc = call_bytes(g, &c, "scp03.kdf", out, lbits / 8u);
	call_cleanup(&c);
	return rc;
}

static int
be_cmac(void *ctx, gp_keyref key, const uint8_t *data, size_t n,
    uint8_t mac[16])
{
	struct gp_kms *g = ctx;
	struct ref k;
	struct call c;
	int rc;

	if ((rc = ref_get(g, key, &k)) != 0)
		return rc;
	call_init(&c, KMS_OP_CMAC);
	if ((rc = kms_put_ref(&c.body, KMS_HANDLE(key))) == 0 &&
	    (rc = buf_put_lv32(&c.body, data, n)) == 0)
		rc = call_bytes(g, &c, "cmac", mac, 16);
	call_cleanup(&c);
	return rc;
}

static int
aes_call(struct gp_kms *g, int op, gp_keyref key, int mode,
    const uint8_t iv[16], const uint8_t *in, size_t n, uint8_t *out)
{
	static const uint8_t zero[16];
	const char *what = op == KMS_OP_ENCRYPT ? "encrypt" : "decrypt";
	struct call c;
	struct rd r;
	const uint8_t *p;
	size_t ol;
	int rc;

	if ((mode != GP_ECB && mode != GP_CBC) || n == 0 || n % 16 != 0)
		return fail_local(g, ERR_INVAL, "%s: mode %d over %zu bytes", what,
		    mode, n);
	call_init(&c, op);
	if ((rc = kms_put_ref(&c.body, KMS_HANDLE(key))) != 0 ||
	    (rc = buf_put_u8(&c.body, mode == GP_ECB ? KMS_ECB : KMS_CBC)) != 0 ||
	    (rc = buf_put(&c.body, mode == GP_CBC && iv ? iv : zero, 16)) != 0 ||
	    (rc = buf_put_lv32(&c.body, in, n)) != 0 ||
	    (rc = call_run(g, &c, what)) != 0)
		goto out;
	rd_init(&r, c.reply.p, c.reply.len);
	if (rd_lv32(&r, KMS_MAX_FRAME, &p, &ol) != 0 || ol != n ||
	    rd_end(&r) != 0) {
		rc = bad_reply(g, what);
		goto out;
	}
	memcpy(out, p, n);
out:
	call_cleanup(&c);
	return rc;
}

/* 15-byte big-endian difference blk[1..15] - base[1..15] when it is below
 * ICV_AHEAD, else -1. */
static int
icv_index(const uint8_t base[16], const uint8_t blk[16])
{
	unsigned borrow = 0, d;
	uint8_t diff[16];
	int i;

	if (blk[0] != base[0])
		return -1;
	for (i = 15; i >= 1; i--) {
		d = (unsigned)blk[i] - base[i] - borrow;
		borrow = d > 0xFFu;
		diff[i] = (uint8_t)d;
	}
	if (borrow)
		return -1;
	for (i = 1; i < 15; i++)
		if (diff[i] != 0)
			return -1;
	return diff[15] < ICV_AHEAD ? diff[15] : -1;
}

/*
 * R-ENC ICV (gpref §1.7): E(S-ENC, 80 || counter[1..15]). The counter
 * moves by one per command, so the ICVs of the next ICV_AHEAD commands are
 * computed in the same ECB request and kept with the S-ENC entry: one kmsd
 * request per ICV_AHEAD responses instead of one per response. These are
 * IVs, not key material; they go when the key is released.
 */
static int
icv_encrypt(struct gp_kms *g, gp_keyref key, const uint8_t in[16],
    uint8_t out[16])
{
	struct icv_cache *ic = NULL;
	struct ref *r;
	uint8_t blocks[ICV_AHEAD][16];
	size_t n, i;
	int idx, j, rc;

	pthread_mutex_lock(&g->mu);
	r = map_find(&g->map, key);
	if (r != NULL && r->icv != NULL &&
	    (idx = icv_index(r->icv->base, in)) >= 0 && (size_t)idx < r->icv->n) {
		memcpy(out, r->icv->out[idx], 16);
		g->st.icv_hits++;
		pthread_mutex_unlock(&g->mu);
		return 0;
	}
	pthread_mutex_unlock(&g->mu);
	/* blocks[i] = in + i over bytes 1..15; stop before wrapping. */
	memcpy(blocks[0], in, 16);
	for (n = 1; n < ICV_AHEAD; n++) {
		memcpy(blocks[n], blocks[n - 1], 16);
		for (j = 15; j >= 1 && ++blocks[n][j] == 0; j--)
			;
		if (j == 0)
			break;
	}
	if ((ic = calloc(1, sizeof(*ic))) == NULL)
		return fail_local(g, ERR_NOMEM, "encrypt: out of memory");
	if ((rc = aes_call(g, KMS_OP_ENCRYPT, key, GP_ECB, NULL, &blocks[0][0],
	    16 * n, &ic->out[0][0])) != 0)
		goto out;
	memcpy(ic->base, in, 16);
	ic->n = n;
	memcpy(out, ic->out[0], 16);
	pthread_mutex_lock(&g->mu);
	if ((r = map_find(&g->map, key)) != NULL) {
		icv_free(r->icv);
		r->icv = ic;
		ic = NULL;
	}
	pthread_mutex_unlock(&g->mu);
out:
	for (i = 0; i < ICV_AHEAD; i++)
		wipe(blocks[i], 16);
	icv_free(ic);
	return rc;
}

static int
be_encrypt(void *ctx, gp_keyref key, int mode, const uint8_t iv[16],
    const uint8_t *in, size_t n, uint8_t *out)
{
	struct gp_kms *g = ctx;
	struct ref k;
	int rc;

	if ((rc = ref_get(g, key, &k)) != 0)
		return rc;
	if (k.kind == REF_SENC && mode == GP_ECB && n == 16 && in[0] == 0x80)
		return icv_encrypt(g, key, in, out);
	return aes_call(g, KMS_OP_ENCRYPT, key, mode, iv, in, n, out);
}

static int
be_decrypt(void *ctx, gp_keyref key, int mode, const uint8_t iv[16],
    const uint8_t *in, size_t n, uint8_t *out)
{
	struct gp_kms *g = ctx;
	struct ref k;
	int rc;

	if ((rc = ref_get(g, key, &k)) != 0)
		return rc;
	return aes_call(g, KMS_OP_DECRYPT, key, mode, iv, in, n, out);
}

static int
be_wrap_n(void *ctx, gp_keyref dek, const gp_keyref *keys, size_t nk,
    uint8_t (*out)[32], size_t *outlen)
{
	struct gp_kms *g = ctx;
	struct ref d, k[KMS_WRAP_MAX];
	struct call c;
	struct rd r;
	const uint8_t *p;
	size_t n, i;
	int rc, has192 = 0;

	if (nk == 0 || nk > KMS_WRAP_MAX)
		return fail_local(g, ERR_INVAL, "wrap: %zu keys (1..%d)", nk,
		    KMS_WRAP_MAX);
	if ((rc = ref_get(g, dek, &d)) != 0)
		return rc;
	for (i = 0; i < nk; i++) {
		if ((rc = ref_get(g, keys[i], &k[i])) != 0)
			return rc;
		has192 |= k[i].len == 24;
	}
	call_init(&c, KMS_OP_WRAP);
	rc = kms_put_ref(&c.body, KMS_HANDLE(dek));
	for (i = 0; rc == 0 && i < nk; i++)
		rc = kms_put_ref(&c.body, KMS_HANDLE(keys[i]));
	if (rc != 0)
		goto out;
	if ((rc = call_run(g, &c, "wrap")) != 0) {
		/* gpref §4 pads an AES-192 key to 32 bytes before encryption.
		 * PKCS#11 CKM_AES_CBC wrap should zero-pad, but SoftHSM2
		 * refuses any key that is not a multiple of 16 bytes. */
		if (has192 && (rc == ERR_P11 || rc == ERR_P11_MECH ||
		    rc == ERR_INVAL || rc == ERR_NOTSUP))
			rc = fail_local(g, ERR_NOTSUP, "wrap: the token cannot "
			    "AES-CBC-wrap a 24-byte key (AES-192 PUT KEY needs it "
			    "zero-padded to 32 bytes; SoftHSM2 wraps only "
			    "multiples of 16); AES-192 key sets cannot be put on "
			    "cards through this token (kmsd: %s: %s)",
			    err_name(rc), c.msg);
		goto out;
	}
	rd_init(&r, c.reply.p, c.reply.len);
	for (i = 0; i < nk; i++) {
		if (rd_lv16(&r, &p, &n) != 0 ||
		    n != (k[i].len == 16 ? 16u : 32u)) {
			rc = bad_reply(g, "wrap");
			goto out;
		}
		memcpy(out[i], p, n);
		outlen[i] = n;
	}
	if (rd_end(&r) != 0)
		rc = bad_reply(g, "wrap");
out:
	call_cleanup(&c);
	return rc;
}

static int
be_wrap(void *ctx, gp_keyref dek, gp_keyref key, uint8_t *out, size_t *outlen)
{
	uint8_t ct[1][32];
	size_t n;
	int rc;

	if ((rc = be_wrap_n(ctx, dek, &key, 1, ct, &n)) != 0)
		return rc;
	if (n > *outlen)
		return fail_local(ctx, ERR_TOOBIG, "wrap: %zu bytes for a "
		    "%zu-byte buffer", n, *outlen);
	memcpy(out, ct[0], n);
	*outlen = n;
	return 0;
}

static int
be_kcv(void *ctx, gp_keyref key, uint8_t kcv[3])
{
	struct gp_kms *g = ctx;
	struct ref k;
	struct call c;
	struct rd r;
	const uint8_t *p;
	size_t n;
	int rc;

	if ((rc = ref_get(g, key, &k)) != 0)
		return rc;
	/* Known from keyset.open (kmsd's own record): no round trip. */
	if (k.has_kcv) {
		memcpy(kcv, k.kcv, 3);
		return 0;
	}
	call_init(&c, KMS_OP_KCV);
	if ((rc = kms_put_ref(&c.body, KMS_HANDLE(key))) != 0 ||
	    (rc = buf_put_u8(&c.body, KMS_KCV_GP)) != 0 ||
	    (rc = call_run(g, &c, "kcv")) != 0)
		goto out;
	rd_init(&r, c.reply.p, c.reply.len);
	if (rd_lv16(&r, &p, &n) != 0 || rd_end(&r) != 0 || n != 3) {
		rc = bad_reply(g, "kcv");
		goto out;
	}
	memcpy(kcv, p, 3);
out:
	call_cleanup(&c);
	return rc;
}

static int
be_key_len(void *ctx, gp_keyref key, size_t *len)
{
	struct gp_kms *g = ctx;
	struct ref k;
	int rc;

	if ((rc = ref_get(g, key, &k)) != 0)
		return rc;
	*len = k.len;
	return 0;
}

/* Session keys at a session's end: one kmsd request for all of them.
 * Key-set members stay (they go with gp_kms_keyset_close). */
static void
be_release_n(void *ctx, const gp_keyref *keys, size_t n)
{
	struct gp_kms *g = ctx;
	struct ref *r;
	uint32_t h[KMS_CLOSE_MAX];
	size_t i, m = 0;

	pthread_mutex_lock(&g->mu);
	for (i = 0; i < n && m < KMS_CLOSE_MAX; i++) {
		r = map_find(&g->map, keys[i]);
		if (r == NULL || r->kind == REF_STATIC)
			continue;
		map_del(&g->map, keys[i]);
		h[m++] = keys[i];
	}
	pthread_mutex_unlock(&g->mu);
	handles_close(g, h, m);
}

static void
be_release(void *ctx, gp_keyref key)
{
	be_release_n(ctx, &key, 1);
}

/* ---- public ----------------------------------------------------------- */

int
gp_kms_new(struct kms_client *c, struct gp_kms **out)
{
	struct gp_kms *g;

	*out = NULL;
	if (c == NULL)
		return ERR_INVAL;
	if ((g = calloc(1, sizeof(*g))) == NULL)
		return ERR_NOMEM;
	if (pthread_mutex_init(&g->mu, NULL) != 0) {
		free(g);
		return ERR_NOMEM;
	}
	g->c = c;
	*out = g;
	return 0;
}

void
gp_kms_free(struct gp_kms *g)
{
	if (g == NULL)
		return;
	kms_close(g->c);
	map_free(&g->map);
	pthread_mutex_destroy(&g->mu);
	wipe(g, sizeof(*g));
	free(g);
}

void
gp_kms_close(struct gp_kms *g)
{
	pthread_mutex_lock(&g->mu);
	if (!g->dead && !g->leading && g->fh == NULL && g->qh == NULL) {
		kms_close(g->c);
		g->c = NULL;
		g->dead = ERR_CLOSED;
		snprintf(g->err, sizeof(g->err), "connection closed by its owner");
	}
	pthread_mutex_unlock(&g->mu);
}

void
gp_kms_backend(struct gp_kms *g, struct gp_backend *be)
{
	memset(be, 0, sizeof(*be));
	be->ctx = g;
	be->derive = be_derive;
	be->kdf = be_kdf;
	be->open = be_open;
	be->cmac = be_cmac;
	be->encrypt = be_encrypt;
	be->decrypt = be_decrypt;
	be->wrap = be_wrap;
	be->wrap_n = be_wrap_n;
	be->kcv = be_kcv;
	be->key_len = be_key_len;
	be->release = be_release;
	be->release_n = be_release_n;
}

int
gp_kms_keyset_add(struct gp_kms *g, const struct kms_keyset *ks)
{
	size_t len = kms_alg_keylen(ks->alg), i;
	int rc = 0;

	if ((len != 16 && len != 24 && len != 32) || ks->alg == KMS_ALG_DES3 ||
	    ks->n == 0 || ks->n > KMS_KEYSET_MAX)
		return fail_local(g, ERR_INVAL, "key set of %zu %s keys cannot be "
		    "used for SCP03", ks->n, kms_alg_name(ks->alg));
	pthread_mutex_lock(&g->mu);
	for (i = 0; i < ks->n && rc == 0; i++) {
		/* map_add refuses 0 and a handle already known (one named
		 * twice in ks included): all or none are registered. */
		if ((rc = map_add(&g->map, ks->handle[i], len, REF_STATIC)) != 0) {
			while (i-- > 0)		/* only what this call added */
				map_del(&g->map, ks->handle[i]);
			break;
		}
		/* kmsd reports a member's KCV when it knows it (imported or
		 * generated); a derived member's stays zero (asked then). */
		if (ks->kcv[i][0] | ks->kcv[i][1] | ks->kcv[i][2]) {
			struct ref *r = map_find(&g->map, ks->handle[i]);

			if (r != NULL) {
				memcpy(r->kcv, ks->kcv[i], 3);
				r->has_kcv = 1;
			}
		}
	}
	pthread_mutex_unlock(&g->mu);
	if (rc != 0)
		return fail_local(g, rc, "key set handles not registered: %s",
		    err_str(rc));
	return 0;
}

/* keyset.open on this connection; the handles are not registered. */
static int
keyset_open_raw(struct gp_kms *g, const uint8_t *blob, size_t n,
    unsigned flags, struct kms_keyset *out)
{
	struct call c;
	struct rd r;
	const uint8_t *p;
	uint8_t alg, cnt;
	size_t i, kl;
	int rc;

	memset(out, 0, sizeof(*out));
	call_init(&c, KMS_OP_KEYSET_OPEN);
	if ((rc = buf_put_lv32(&c.body, blob, n)) != 0 ||
	    (rc = buf_put_u8(&c.body, (uint8_t)flags)) != 0 ||
	    (rc = call_run(g, &c, "keyset.open")) != 0)
		goto out;
	rd_init(&r, c.reply.p, c.reply.len);
	if (rd_u8(&r, &alg) != 0 || rd_u8(&r, &cnt) != 0 || cnt == 0 ||
	    cnt > KMS_KEYSET_MAX)
		goto bad;
	out->alg = alg;
	for (i = 0; i < cnt; i++) {
		if (rd_u8(&r, &out->usage[i]) != 0 ||
		    rd_u32(&r, &out->handle[i]) != 0 ||
		    rd_lv16(&r, &p, &kl) != 0 || kl != 3)
			goto bad;
		memcpy(out->kcv[i], p, 3);
		out->n = i + 1;
	}
	if (rd_end(&r) != 0)
		goto bad;
	goto out;
bad:
	/* The connection is dropped, and with it any handle kmsd made. */
	rc = bad_reply(g, "keyset.open");
	memset(out, 0, sizeof(*out));
out:
	call_cleanup(&c);
	return rc;
}

int
gp_kms_keyset_open(struct gp_kms *g, const uint8_t *blob, size_t n,
    unsigned flags, struct kms_keyset *out)
{
	int rc;

	if ((rc = keyset_open_raw(g, blob, n, flags, out)) != 0)
		return rc;
	if ((rc = gp_kms_keyset_add(g, out)) != 0) {
		handles_close(g, out->handle, out->n);
		memset(out, 0, sizeof(*out));
	}
	return rc;
}

int
gp_kms_keyset_diversify(struct gp_kms *g, const uint8_t *blob, size_t n,
    const uint8_t *d, size_t dn, struct kms_keyset *out)
{
	struct kms_keyset m;
	struct call c;
	struct rd r;
	size_t i;
	int rc;

	memset(out, 0, sizeof(*out));
	if ((rc = keyset_open_raw(g, blob, n, KMS_OPEN_MASTER, &m)) != 0)
		return rc;
	out->alg = m.alg;
	for (i = 0; i < m.n; i++) {
		call_init(&c, KMS_OP_DIVERSIFY);
		if ((rc = kms_put_ref(&c.body, KMS_HANDLE(m.handle[i]))) == 0 &&
		    (rc = buf_put_lv16(&c.body, d, dn)) == 0 &&
		    (rc = buf_put_u8(&c.body, m.usage[i])) == 0 &&
		    (rc = call_run(g, &c, "diversify")) == 0) {
			rd_init(&r, c.reply.p, c.reply.len);
			if (rd_u32(&r, &out->handle[i]) != 0 || rd_end(&r) != 0 ||
			    out->handle[i] == 0)
				rc = bad_reply(g, "diversify");
		}
		call_cleanup(&c);
		if (rc != 0)
			break;
		out->usage[i] = m.usage[i];
		out->n = i + 1;	/* KCVs stay zero: kmsd knows none of these */
	}
	handles_close(g, m.handle, m.n);
	if (rc == 0 && (rc = gp_kms_keyset_add(g, out)) == 0)
		return 0;
	handles_close(g, out->handle, out->n);
	memset(out, 0, sizeof(*out));
	return rc;
}

int
gp_kms_keyset_close(struct gp_kms *g, const struct kms_keyset *ks)
{
	size_t i, n = ks->n < KMS_KEYSET_MAX ? ks->n : KMS_KEYSET_MAX;
	int dead;

	pthread_mutex_lock(&g->mu);
	for (i = 0; i < n; i++)
		map_del(&g->map, ks->handle[i]);
	dead = g->dead;
	pthread_mutex_unlock(&g->mu);
	return dead ? 0 : handles_close_n(g, ks->handle, n);
}

int
gp_kms_keyset_ref(const struct kms_keyset *ks, int usage, gp_keyref *out)
{
	size_t i;

	*out = 0;
	for (i = 0; i < ks->n && i < KMS_KEYSET_MAX; i++)
		if (ks->usage[i] == usage) {
			*out = ks->handle[i];
			return 0;
		}
	return ERR_NOTFOUND;
}

void
gp_kms_set_yield(struct gp_kms *g, void (*yield)(void *ctx), void *ctx)
{
	pthread_mutex_lock(&g->mu);
	g->yield = yield;
	g->yield_ctx = ctx;
	pthread_mutex_unlock(&g->mu);
}

int
gp_kms_pump(struct gp_kms *g)
{
	int rc;

	pthread_mutex_lock(&g->mu);
	if (g->leading) {
		rc = ERR_BUSY;
	} else if (g->qh == NULL && g->nflight == 0) {
		rc = g->dead ? ERR_CLOSED : ERR_NOTFOUND;
	} else {
		g->leading = 1;
		pump_once(g);
		g->leading = 0;
		rc = g->dead ? ERR_CLOSED : 0;
	}
	pthread_mutex_unlock(&g->mu);
	return rc;
}

int
gp_kms_alive(struct gp_kms *g)
{
	int dead;

	pthread_mutex_lock(&g->mu);
	dead = g->dead;
	pthread_mutex_unlock(&g->mu);
	return dead == 0;
}

const char *
gp_kms_last_error(struct gp_kms *g, char *out, size_t cap)
{
	pthread_mutex_lock(&g->mu);
	snprintf(out, cap, "%s", g->err);
	pthread_mutex_unlock(&g->mu);
	return out;
}

void
gp_kms_stats(struct gp_kms *g, struct gp_kms_stats *st)
{
	pthread_mutex_lock(&g->mu);
	*st = g->st;
	st->live_refs = g->map.n;
	pthread_mutex_unlock(&g->mu);
}
