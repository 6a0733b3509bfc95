/*
 * client.c - the kmsd client library: connect and handshake, one call per
 * operation, pipelined requests, reconnect for calls that are safe to
 * repeat. Runs in tsmd, kmsctl, tests and benchmarks; never sees key bytes.
 * Trusts kmsd's replies only after checking their framing and lengths.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include "kms/proto.h"

#define CALL_TIMEOUT_S 30

struct kms_client {
	int        fd;
	char       path[108];
	char       name[64];
	uint32_t   next_id;
	uint32_t   generation;
	int        sealed;
	int        role;
	struct buf out;		/* queued request bytes */
	struct buf in;		/* received bytes */
	size_t     consumed;	/* bytes of `in` already handed out */
	int        shared;	/* kms_share: another thread reads */
	char       err[256];
};

static int
set_err(struct kms_client *c, int rc, const char *msg)
{
	snprintf(c->err, sizeof(c->err), "%s", msg ? msg : err_str(rc));
	return rc;
}

const char *
kms_last_error(const struct kms_client *c)
{
	return c->err;
}

uint32_t
kms_generation(const struct kms_client *c)
{
	return c->generation;
}

int
kms_sealed(const struct kms_client *c)
{
	return c->sealed;
}

int
kms_fd(const struct kms_client *c)
{
	return c->fd;
}

/* ---- framing ---- */

static int
queue(struct kms_client *c, int op, const uint8_t *body, size_t len,
    uint32_t *id)
{
	struct kms_hdr h = { 0 };
	uint8_t hb[KMS_HDR_LEN];
	int rc;

	if (len > KMS_MAX_FRAME)
		return set_err(c, ERR_TOOBIG, "request larger than the frame limit");
	h.len = (uint32_t)len;
	h.type = (uint16_t)op;
	h.id = ++c->next_id;
	kms_hdr_encode(&h, hb);
	/* Room for the whole frame first: a half-queued frame would put the
	 * stream out of step. */
	if ((rc = buf_reserve(&c->out, sizeof(hb) + len)) != 0 ||
	    (rc = buf_put(&c->out, hb, sizeof(hb))) != 0 ||
	    (rc = buf_put(&c->out, body, len)) != 0)
		return rc;
	if (id != NULL)
		*id = h.id;
	return 0;
}

/* Writes the queued output. nowait: ERR_BUSY when the socket takes not a
 * byte (output cut back to mark); a partial write is out of step. */
static int
flush_out(struct kms_client *c, int nowait, size_t mark)
{
	size_t sent = 0;
	ssize_t n;
	int full;

	while (c->out.len > 0) {
		n = send(c->fd, c->out.p, c->out.len, MSG_NOSIGNAL |
		    (nowait ? MSG_DONTWAIT : 0));
		if (n < 0) {
			if (errno == EINTR)
				continue;
			full = errno == EAGAIN || errno == EWOULDBLOCK;
			if (nowait && full && sent == 0) {
				if (mark < c->out.len) {	/* unsent: dropped */
					wipe(c->out.p + mark, c->out.len - mark);
					c->out.len = mark;
				}
				return ERR_BUSY;
			}
			buf_reset(&c->out);
			return set_err(c, ERR_CLOSED, nowait && full ? "kmsd "
			    "connection full (part of a request written)" :
			    "kmsd connection lost (write)");
		}
		sent += (size_t)n;
		buf_consume(&c->out, (size_t)n);
	}
	return 0;
}

int
kms_flush(struct kms_client *c)
{
	return flush_out(c, 0, 0);
}

/* An error seen while reading: its text is kept unless another thread
 * submits on c (then the reader keeps none; they never write one field). */
static int
rx_err(struct kms_client *c, int rc, const char *msg)
{
	return c->shared ? rc : set_err(c, rc, msg);
}

/* Reads until `need` unconsumed bytes are buffered. */
static int
fill(struct kms_client *c, size_t need)
{
	ssize_t n;
	int rc;

	if (c->consumed > 0 && c->consumed == c->in.len) {
		buf_reset(&c->in);
		c->consumed = 0;
	}
	while (c->in.len - c->consumed < need) {
		if ((rc = buf_reserve(&c->in, 65536)) != 0)
			return rc;
		n = recv(c->fd, c->in.p + c->in.len, c->in.cap - c->in.len, 0);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK) {
				/* A late reply would answer the next request:
				 * this connection cannot be used any more (a
				 * shared one is the sharer's to drop). */
				if (!c->shared) {
					close(c->fd);
					c->fd = -1;
				}
				return rx_err(c, ERR_TIMEOUT, "kmsd did not answer "
				    "in time (connection dropped)");
			}
			return rx_err(c, ERR_CLOSED, "kmsd connection lost (read)");
		}
		if (n == 0)
			return rx_err(c, ERR_CLOSED, "kmsd closed the connection");
		c->in.len += (size_t)n;
	}
	return 0;
}

int
kms_next(struct kms_client *c, uint32_t *id, int *status, struct rd *body)
{
	struct kms_hdr h;
	int rc;

	/* Compact once everything handed out before is no longer needed. */
	if (c->consumed > 65536) {
		buf_consume(&c->in, c->consumed);
		c->consumed = 0;
	}
	if ((rc = fill(c, KMS_HDR_LEN)) != 0)
		return rc;
	if (kms_hdr_decode(c->in.p + c->consumed, &h) != 0 ||
	    !(h.flags & KMS_FLAG_REPLY))
		return rx_err(c, ERR_PROTO, "malformed reply from kmsd");
	if ((rc = fill(c, KMS_HDR_LEN + h.len)) != 0)
		return rc;
	rd_init(body, c->in.p + c->consumed + KMS_HDR_LEN, h.len);
	c->consumed += KMS_HDR_LEN + h.len;
	*id = h.id;
	*status = h.status;
	if (h.status > 0 || h.status < ERR_MIN - 100)
		return rx_err(c, ERR_PROTO, "reply status out of range");
	if (h.status != 0 && !c->shared) {
		char msg[200];
		struct rd r = *body;

		if (rd_str(&r, msg, sizeof(msg)) == 0)
			set_err(c, h.status, msg);
		else
			set_err(c, h.status, NULL);
	}
	return 0;
}

int
kms_submit(struct kms_client *c, int op, const struct buf *body, uint32_t *id)
{
	return queue(c, op, body ? body->p : NULL, body ? body->len : 0, id);
}

void
kms_share(struct kms_client *c)
{
	c->shared = 1;
}

size_t
kms_out_len(const struct kms_client *c)
{
	return c->out.len;
}

int
kms_flush_nowait(struct kms_client *c, size_t mark)
{
	return flush_out(c, 1, mark);
}

int
kms_buffered(const struct kms_client *c)
{
	size_t avail = c->in.len - c->consumed;
	struct kms_hdr h;

	if (avail < KMS_HDR_LEN)
		return 0;
	/* a header kms_next refuses is an answer at once too */
	if (kms_hdr_decode(c->in.p + c->consumed, &h) != 0)
		return 1;
	return avail - KMS_HDR_LEN >= h.len;
}

/* ---- connection ---- */

static int
hello(struct kms_client *c)
{
	struct buf b;
	struct rd r;
	uint32_t id, maxf;
	uint16_t ver;
	uint8_t role, sealed;
	int status, rc;

	buf_init(&b);
	if ((rc = buf_put_u16(&b, KMS_PROTO_VERSION)) != 0 ||
	    (rc = buf_put_u16(&b, KMS_PROTO_VERSION)) != 0 ||
	    (rc = buf_put_str(&b, c->name)) != 0 ||
	    (rc = queue(c, KMS_OP_HELLO, b.p, b.len, NULL)) != 0) {
		buf_free(&b);
		return rc;
	}
	buf_free(&b);
	if ((rc = kms_flush(c)) != 0 || (rc = kms_next(c, &id, &status, &r)) != 0)
		return rc;
	if (status != 0)
		return status;
	if (rd_u16(&r, &ver) != 0 || rd_u8(&r, &role) != 0 ||
	    rd_u8(&r, &sealed) != 0 || rd_u32(&r, &maxf) != 0)
		return set_err(c, ERR_PROTO, "malformed hello reply");
	if (ver != KMS_PROTO_VERSION)
		return set_err(c, ERR_VERSION, "kmsd chose another version");
	c->role = role;
	c->sealed = sealed;
	return 0;
}

static int
dial(struct kms_client *c)
{
	struct sockaddr_un sa;
	struct timeval tv = { CALL_TIMEOUT_S, 0 };
	int rc;

	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", c->path);
	c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (c->fd < 0)
		return set_err(c, ERR_IO, "socket");
	if (connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
		close(c->fd);
		c->fd = -1;
		snprintf(c->err, sizeof(c->err), "cannot connect to %s: %s", c->path,
		    strerror(errno));
		return ERR_IO;
	}
	(void)setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	buf_reset(&c->in);
	buf_reset(&c->out);
	c->consumed = 0;
	if ((rc = hello(c)) != 0) {
		close(c->fd);
		c->fd = -1;
		return rc;
	}
	return 0;
}

int
kms_connect(struct kms_client **out, const char *path, const char *client_name)
{
	struct kms_client *c;
	int rc;

	*out = NULL;
	if (strlen(path) >= sizeof(c->path))
		return ERR_TOOBIG;
	c = calloc(1, sizeof(*c));
	if (c == NULL)
		return ERR_NOMEM;
	snprintf(c->path, sizeof(c->path), "%s", path);
	snprintf(c->name, sizeof(c->name), "%s", client_name ? client_name :
	    "client");
	c->fd = -1;
	buf_init(&c->in);
	buf_init(&c->out);
	if ((rc = dial(c)) != 0) {
		log_msg(LOG_DEBUG, "event=kms_connect_failed path=%s err=%s msg=\"%s\"",
		    path, err_name(rc), c->err);
		buf_free(&c->in);
		buf_free(&c->out);
		free(c);
		return rc;
	}
	*out = c;
	return 0;
}

void
kms_close(struct kms_client *c)
{
	if (c == NULL)
		return;
	if (c->fd >= 0)
		close(c->fd);
	buf_free(&c->in);
	buf_free(&c->out);
	free(c);
}

static int
reconnect(struct kms_client *c)
{
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	c->generation++;
	return dial(c);
}

/* Operations that may run twice without harm (their results are new
 * objects or pure functions); handle operations are not among them since
 * handles die with the connection. */
static int
repeatable(int op)
{
	switch (op) {
	case KMS_OP_PING:
	case KMS_OP_RANDOM:
	case KMS_OP_KEY_INFO:
	case KMS_OP_KCV:
	case KMS_OP_KEYSET_GENERATE:
	case KMS_OP_KEYSET_IMPORT:
	case KMS_OP_KEYSET_RECEIVE:
	case KMS_OP_KEYSET_OPEN:
	case KMS_OP_SIGN:
	case KMS_OP_HMAC:
	case KMS_OP_HMAC_VERIFY:
	case KMS_OP_STATUS:
	case KMS_OP_KEY_LIST:
		return 1;
	}
	return 0;
}

/* One synchronous request; *r points at the reply body until next call. */
static int
call(struct kms_client *c, int op, const struct buf *body, struct rd *r)
{
	uint32_t id, gid;
	int status, rc, tries;

	c->err[0] = '\0';
	for (tries = 0; tries < 2; tries++) {
		if (c->fd < 0 && (rc = reconnect(c)) != 0)
			return rc;
		if ((rc = queue(c, op, body ? body->p : NULL, body ? body->len : 0,
		    &id)) != 0)
			return rc;
		if ((rc = kms_flush(c)) == 0 &&
		    (rc = kms_next(c, &gid, &status, r)) == 0) {
			if (gid != id)
				rc = set_err(c, ERR_PROTO, "reply to another "
				    "request");
			else if (status != ERR_PROTO)
				return status;
			else
				rc = status;	/* kmsd closes this connection */
		}
		if (rc == ERR_PROTO) {
			/* Out of step (e.g. a pipelined reply left unread), or
			 * kmsd found the stream malformed and hangs up: the
			 * next call starts on a fresh connection. */
			close(c->fd);
			c->fd = -1;
			return rc;
		}
		if (rc != ERR_CLOSED)
			return rc;
		close(c->fd);
		c->fd = -1;
		if (!repeatable(op)) {
			/* Reconnect now so the next call works; this one's
			 * handles are gone. */
			if (reconnect(c) == 0)
				set_err(c, ERR_CLOSED, "kmsd connection lost; "
				    "reconnected, handles are gone");
			return ERR_CLOSED;
		}
		log_msg(LOG_WARN, "event=kms_reconnect op=%s", kms_op_name(op));
	}
	return rc;
}

int
kms_call(struct kms_client *c, int op, const struct buf *body,
    struct buf *reply)
{
	struct rd r;
	int rc = call(c, op, body, &r);

	if (rc == 0 && reply != NULL) {
		buf_reset(reply);
		rc = buf_put(reply, r.p, r.len);
	}
	return rc;
}

/* ---- operations ---- */

#define BODY_BEGIN struct buf b; struct rd r; int rc; buf_init(&b)
#define SEND(op) do {							\
	if (rc == 0)							\
		rc = call(c, (op), &b, &r);				\
	buf_free(&b);							\
	if (rc != 0)							\
		return rc;						\
} while (0)
#define BAD_REPLY() bad_reply(c)

/* A reply that does not decode (c may be NULL: no client to tell). */
static int
bad_reply(struct kms_client *c)
{
	return c != NULL ? set_err(c, ERR_PROTO, "malformed reply from kmsd") :
	    ERR_PROTO;
}

int
kms_ping(struct kms_client *c)
{
	struct rd r;

	return call(c, KMS_OP_PING, NULL, &r);
}

int
kms_status(struct kms_client *c, struct kms_status *o)
{
	struct rd r;
	uint8_t sealed;
	int rc;

	if ((rc = call(c, KMS_OP_STATUS, NULL, &r)) != 0)
		return rc;
	memset(o, 0, sizeof(*o));
	if (rd_u8(&r, &sealed) != 0 || rd_str(&r, o->token, sizeof(o->token)) != 0 ||
	    rd_str(&r, o->serial, sizeof(o->serial)) != 0 ||
	    rd_u32(&r, &o->caps) != 0 || rd_u32(&r, &o->keys) != 0 ||
	    rd_u64(&r, &o->audit_seq) != 0 || rd_u32(&r, &o->connections) != 0 ||
	    rd_u32(&r, &o->handles) != 0 || rd_end(&r) != 0)
		return BAD_REPLY();
	o->sealed = sealed;
	c->sealed = sealed;
	return 0;
}

int
kms_random(struct kms_client *c, uint8_t *out, size_t n)
{
	const uint8_t *p;
	BODY_BEGIN;

	rc = buf_put_u32(&b, (uint32_t)n);
	SEND(KMS_OP_RANDOM);
	if (rd_bytes(&r, n, &p) != 0 || rd_end(&r) != 0)
		return BAD_REPLY();
	memcpy(out, p, n);
	return 0;
}

static int
get_info(struct kms_client *c, struct rd *r, struct kms_key_info *o)
{
	const uint8_t *kcv;
	uint8_t alg, st;
	uint64_t created;
	size_t kl;

	memset(o, 0, sizeof(*o));
	if (rd_str(r, o->label, sizeof(o->label)) != 0 ||
	    rd_str(r, o->cls, sizeof(o->cls)) != 0 || rd_u8(r, &alg) != 0 ||
	    rd_u32(r, &o->version) != 0 || rd_u8(r, &st) != 0 ||
	    rd_lv16(r, &kcv, &kl) != 0 || kl > sizeof(o->kcv) ||
	    rd_u64(r, &created) != 0 || rd_end(r) != 0)
		return BAD_REPLY();
	o->alg = alg;
	o->state = st;
	memcpy(o->kcv, kcv, kl);
	o->kcvlen = kl;
	o->created = (int64_t)created;
	return 0;
}

int
kms_key_info(struct kms_client *c, struct kms_ref ref, struct kms_key_info *out)
{
	BODY_BEGIN;

	rc = kms_put_ref(&b, ref);
	SEND(KMS_OP_KEY_INFO);
	return get_info(c, &r, out);
}

int
kms_kcv(struct kms_client *c, struct kms_ref ref, int method, uint8_t kcv[5],
    size_t *len)
{
	const uint8_t *p;
	size_t n;
	BODY_BEGIN;

	if ((rc = kms_put_ref(&b, ref)) == 0)
		rc = buf_put_u8(&b, (uint8_t)method);
	SEND(KMS_OP_KCV);
	if (rd_lv16(&r, &p, &n) != 0 || n > 5 || rd_end(&r) != 0)
		return BAD_REPLY();
	memcpy(kcv, p, n);
	*len = n;
	return 0;
}

/* blob (lv32) then u8 n, n x (u8 usage, lv16 kcv); more may follow */
static int
get_blob_kcvs_part(struct kms_client *c, struct rd *r, struct buf *blob,
    struct kms_keyset_kcvs *k)
{
	const uint8_t *p;
	size_t n, i, kl;
	uint8_t cnt;
	int rc;

	if (rd_lv32(r, KMS_MAX_FRAME, &p, &n) != 0)
		return BAD_REPLY();
	buf_reset(blob);
	if ((rc = buf_put(blob, p, n)) != 0)
		return rc;
	memset(k, 0, sizeof(*k));
	if (rd_u8(r, &cnt) != 0 || cnt > KMS_KEYSET_MAX)
		return BAD_REPLY();
	k->n = cnt;
	for (i = 0; i < cnt; i++) {
		if (rd_u8(r, &k->usage[i]) != 0 || rd_lv16(r, &p, &kl) != 0 ||
		    kl > 5)
			return BAD_REPLY();
		memcpy(k->kcv[i], p, kl);
		k->kcvlen = kl;
	}
	return 0;
}

static int
get_blob_kcvs(struct kms_client *c, struct rd *r, struct buf *blob,
    struct kms_keyset_kcvs *k)
{
	int rc;

	if ((rc = get_blob_kcvs_part(c, r, blob, k)) != 0)
		return rc;
	return rd_end(r) == 0 ? 0 : BAD_REPLY();
}

int
kms_keyset_generate(struct kms_client *c, int alg, int kcv_method,
    struct buf *blob, struct kms_keyset_kcvs *kcvs)
{
	BODY_BEGIN;

	if ((rc = buf_put_u8(&b, (uint8_t)alg)) == 0 &&
	    (rc = buf_put_u8(&b, (uint8_t)kcv_method)) == 0)
		rc = buf_put_u8(&b, KMS_KEYSET_RANDOM);
	SEND(KMS_OP_KEYSET_GENERATE);
	return get_blob_kcvs(c, &r, blob, kcvs);
}

int
kms_keyset_derive(struct kms_client *c, const char *master, const uint8_t *div,
    size_t divlen, int kcv_method, struct buf *blob,
    struct kms_keyset_kcvs *kcvs)
{
	BODY_BEGIN;

	if ((rc = buf_put_u8(&b, KMS_ALG_AES128)) == 0 &&
	    (rc = buf_put_u8(&b, (uint8_t)kcv_method)) == 0 &&
	    (rc = buf_put_u8(&b, KMS_KEYSET_DIVERSIFIED)) == 0 &&
	    (rc = buf_put_str(&b, master)) == 0)
		rc = buf_put_lv16(&b, div, divlen);
	SEND(KMS_OP_KEYSET_GENERATE);
	return get_blob_kcvs(c, &r, blob, kcvs);
}

/* keyset.import's fields (also the middle of keyset.receive's). */
static int
put_import(struct buf *b, const char *kek, int mech, int alg, int kcv_method,
    const struct kms_wrapped *keys, size_t n)
{
	size_t i;
	int rc;

	if (n == 0 || n > KMS_KEYSET_MAX)
		return ERR_INVAL;
	if ((rc = buf_put_str(b, kek)) != 0 ||
	    (rc = buf_put_u8(b, (uint8_t)mech)) != 0 ||
	    (rc = buf_put_u8(b, (uint8_t)alg)) != 0 ||
	    (rc = buf_put_u8(b, (uint8_t)kcv_method)) != 0 ||
	    (rc = buf_put_u8(b, (uint8_t)n)) != 0)
		return rc;
	for (i = 0; i < n; i++)
		if ((rc = buf_put_u8(b, keys[i].usage)) != 0 ||
		    (rc = buf_put_lv16(b, keys[i].wrapped, keys[i].wlen)) != 0 ||
		    (rc = buf_put_lv16(b, keys[i].kcv, keys[i].kcvlen)) != 0)
			return rc;
	return 0;
}

int
kms_keyset_import(struct kms_client *c, const char *kek, int mech, int alg,
    int kcv_method, const struct kms_wrapped *keys, size_t n, struct buf *blob,
    struct kms_keyset_kcvs *kcvs)
{
	BODY_BEGIN;

	rc = put_import(&b, kek, mech, alg, kcv_method, keys, n);
	SEND(KMS_OP_KEYSET_IMPORT);
	return get_blob_kcvs(c, &r, blob, kcvs);
}

static int
receive_body(struct buf *b, const struct kms_receive *in)
{
	int rc;

	if ((rc = kms_put_ref(b, KMS_LABEL(in->mac_key))) != 0 ||
	    (rc = buf_put_lv32(b, in->msg, in->msglen)) != 0 ||
	    (rc = buf_put(b, in->mac, 32)) != 0 ||
	    (rc = put_import(b, in->kek, in->mech, in->alg, in->kcv_method,
	    in->keys, in->n)) != 0 ||
	    (rc = buf_put_lv32(b, in->receipt, in->rlen)) != 0 ||
	    (rc = buf_put_u8(b, in->ans_head != NULL)) != 0 ||
	    in->ans_head == NULL)
		return rc;
	if ((rc = buf_put_lv32(b, in->ans_head, in->ans_hlen)) != 0 ||
	    (rc = buf_put_lv32(b, in->ans_pre, in->ans_plen)) != 0)
		return rc;
	return buf_put_lv32(b, in->ans_suf, in->ans_slen);
}

static int
receive_reply(struct kms_client *c, struct rd *r, struct buf *blob,
    struct kms_keyset_kcvs *kcvs, uint8_t receipt_mac[32],
    uint8_t answer_mac[32])
{
	const uint8_t *p, *a = NULL;
	int rc;

	if ((rc = get_blob_kcvs_part(c, r, blob, kcvs)) != 0)
		return rc;
	if (rd_bytes(r, 32, &p) != 0 || (answer_mac != NULL &&
	    rd_bytes(r, 32, &a) != 0) || rd_end(r) != 0)
		return BAD_REPLY();
	memcpy(receipt_mac, p, 32);
	if (answer_mac != NULL)
		memcpy(answer_mac, a, 32);
	return 0;
}

int
kms_keyset_receive(struct kms_client *c, const struct kms_receive *in,
    struct buf *blob, struct kms_keyset_kcvs *kcvs, uint8_t receipt_mac[32],
    uint8_t answer_mac[32])
{
	BODY_BEGIN;

	if ((in->ans_head != NULL) != (answer_mac != NULL))
		rc = ERR_INVAL;
	else
		rc = receive_body(&b, in);
	SEND(KMS_OP_KEYSET_RECEIVE);
	return receive_reply(c, &r, blob, kcvs, receipt_mac, answer_mac);
}

int
kms_keyset_receive_encode(struct buf *b, const struct kms_receive *in)
{
	return receive_body(b, in);
}

int
kms_keyset_receive_decode(struct rd *r, int with_answer, struct buf *blob,
    struct kms_keyset_kcvs *kcvs, uint8_t receipt_mac[32],
    uint8_t answer_mac[32])
{
	return receive_reply(NULL, r, blob, kcvs, receipt_mac, with_answer ?
	    answer_mac : NULL);
}

int
kms_keyset_open(struct kms_client *c, const uint8_t *blob, size_t n,
    unsigned flags, struct kms_keyset *out)
{
	const uint8_t *p;
	uint8_t alg, cnt;
	size_t i, kl;
	BODY_BEGIN;

	if ((rc = buf_put_lv32(&b, blob, n)) == 0)
		rc = buf_put_u8(&b, (uint8_t)flags);
	SEND(KMS_OP_KEYSET_OPEN);
	memset(out, 0, sizeof(*out));
	if (rd_u8(&r, &alg) != 0 || rd_u8(&r, &cnt) != 0 || cnt > KMS_KEYSET_MAX)
		return BAD_REPLY();
	out->alg = alg;
	out->n = cnt;
	for (i = 0; i < cnt; i++) {
		if (rd_u8(&r, &out->usage[i]) != 0 ||
		    rd_u32(&r, &out->handle[i]) != 0 ||
		    rd_lv16(&r, &p, &kl) != 0 || kl != 3)
			return BAD_REPLY();
		memcpy(out->kcv[i], p, 3);
	}
	return rd_end(&r) == 0 ? 0 : BAD_REPLY();
}

int
kms_handle_close(struct kms_client *c, uint32_t h)
{
	return kms_handle_close_n(c, &h, 1);
}

int
kms_handle_close_n(struct kms_client *c, const uint32_t *h, size_t n)
{
	size_t i;
	BODY_BEGIN;

	rc = n == 0 || n > KMS_CLOSE_MAX ? ERR_INVAL : 0;
	for (i = 0; rc == 0 && i < n; i++)
		rc = buf_put_u32(&b, h[i]);
	SEND(KMS_OP_HANDLE_CLOSE);
	return rd_end(&r) == 0 ? 0 : BAD_REPLY();
}

int
kms_scp03_derive(struct kms_client *c, uint32_t base, uint8_t konst,
    const uint8_t *ctx, size_t clen, uint16_t lbits, uint32_t *out)
{
	BODY_BEGIN;

	if ((rc = kms_put_ref(&b, KMS_HANDLE(base))) == 0 &&
	    (rc = buf_put_u8(&b, konst)) == 0 &&
	    (rc = buf_put_lv16(&b, ctx, clen)) == 0)
		rc = buf_put_u16(&b, lbits);
	SEND(KMS_OP_SCP03_DERIVE);
	if (rd_u32(&r, out) != 0 || rd_end(&r) != 0)
		return BAD_REPLY();
	return 0;
}

int
kms_scp03_kdf(struct kms_client *c, uint32_t key, uint8_t konst,
    const uint8_t *ctx, size_t clen, uint16_t lbits, uint8_t *out)
{
	const uint8_t *p;
	BODY_BEGIN;

	if ((rc = kms_put_ref(&b, KMS_HANDLE(key))) == 0 &&
	    (rc = buf_put_u8(&b, konst)) == 0 &&
	    (rc = buf_put_lv16(&b, ctx, clen)) == 0)
		rc = buf_put_u16(&b, lbits);
	SEND(KMS_OP_SCP03_KDF);
	if (rd_bytes(&r, lbits / 8, &p) != 0 || rd_end(&r) != 0)
		return BAD_REPLY();
	memcpy(out, p, lbits / 8);
	return 0;
}

int
kms_scp03_open(struct kms_client *c, uint32_t enc, uint32_t mac,
    unsigned flags, const uint8_t *ctx, size_t clen, uint16_t cbits,
    const uint8_t *chal_ctx, size_t chal_len, struct kms_scp03_open *o)
{
	const uint8_t *p;
	size_t n, cl = cbits / 8;
	BODY_BEGIN;

	memset(o, 0, sizeof(*o));
	if (cbits != 64 && cbits != 128)
		rc = ERR_INVAL;
	else if ((rc = kms_put_ref(&b, KMS_HANDLE(enc))) == 0 &&
	    (rc = kms_put_ref(&b, KMS_HANDLE(mac))) == 0 &&
	    (rc = buf_put_u8(&b, (uint8_t)flags)) == 0 &&
	    (rc = buf_put_lv16(&b, ctx, clen)) == 0 &&
	    (rc = buf_put_u16(&b, cbits)) == 0)
		rc = buf_put_lv16(&b, chal_ctx, chal_len);
	SEND(KMS_OP_SCP03_OPEN);
	if (rd_u32(&r, &o->s_enc) != 0 || rd_u32(&r, &o->s_mac) != 0 ||
	    rd_u32(&r, &o->s_rmac) != 0 || rd_bytes(&r, cl, &p) != 0)
		return BAD_REPLY();
	memcpy(o->card_crypto, p, cl);
	if (rd_bytes(&r, cl, &p) != 0)
		return BAD_REPLY();
	memcpy(o->host_crypto, p, cl);
	if (rd_lv16(&r, &p, &n) != 0 || (n != 0 && n != cl) || rd_end(&r) != 0)
		return BAD_REPLY();
	memcpy(o->challenge, p, n);
	o->has_challenge = n != 0;
	o->clen = cl;
	return 0;
}

int
kms_cmac(struct kms_client *c, uint32_t h, const uint8_t *d, size_t n,
    uint8_t mac[16])
{
	const uint8_t *p;
	BODY_BEGIN;

	if ((rc = kms_put_ref(&b, KMS_HANDLE(h))) == 0)
		rc = buf_put_lv32(&b, d, n);
	SEND(KMS_OP_CMAC);
	if (rd_bytes(&r, 16, &p) != 0 || rd_end(&r) != 0)
		return BAD_REPLY();
	memcpy(mac, p, 16);
	return 0;
}

static int
crypt_call(struct kms_client *c, int op, uint32_t h, int mode,
    const uint8_t iv[16], const uint8_t *in, size_t n, uint8_t *out)
{
	static const uint8_t zero[16];
	const uint8_t *p;
	size_t ol;
	BODY_BEGIN;

	if ((rc = kms_put_ref(&b, KMS_HANDLE(h))) == 0 &&
	    (rc = buf_put_u8(&b, (uint8_t)mode)) == 0 &&
	    (rc = buf_put(&b, iv ? iv : zero, 16)) == 0)
		rc = buf_put_lv32(&b, in, n);
	SEND(op);
	if (rd_lv32(&r, KMS_MAX_FRAME, &p, &ol) != 0 || ol != n ||
	    rd_end(&r) != 0)
		return BAD_REPLY();
	memcpy(out, p, n);
	return 0;
}

int
kms_encrypt(struct kms_client *c, uint32_t h, int mode, const uint8_t iv[16],
    const uint8_t *in, size_t n, uint8_t *out)
{
	return crypt_call(c, KMS_OP_ENCRYPT, h, mode, iv, in, n, out);
}

int
kms_decrypt(struct kms_client *c, uint32_t h, int mode, const uint8_t iv[16],
    const uint8_t *in, size_t n, uint8_t *out)
{
	return crypt_call(c, KMS_OP_DECRYPT, h, mode, iv, in, n, out);
}

int
kms_wrap(struct kms_client *c, uint32_t dek, uint32_t key, uint8_t *out,
    size_t *outlen)
{
	uint8_t ct[1][32];
	size_t n;
	int rc;

	if ((rc = kms_wrap_n(c, dek, &key, 1, ct, &n)) != 0)
		return rc;
	if (n > *outlen)
		return set_err(c, ERR_TOOBIG, "wrapped key longer than the buffer");
	memcpy(out, ct[0], n);
	*outlen = n;
	return 0;
}

int
kms_wrap_n(struct kms_client *c, uint32_t dek, const uint32_t *keys,
    size_t nkeys, uint8_t (*out)[32], size_t *outlen)
{
	const uint8_t *p;
	size_t i, n;
	BODY_BEGIN;

	if (nkeys == 0 || nkeys > KMS_WRAP_MAX)
		rc = ERR_INVAL;
	else
		rc = kms_put_ref(&b, KMS_HANDLE(dek));
	for (i = 0; rc == 0 && i < nkeys; i++)
		rc = kms_put_ref(&b, KMS_HANDLE(keys[i]));
	SEND(KMS_OP_WRAP);
	for (i = 0; i < nkeys; i++) {
		if (rd_lv16(&r, &p, &n) != 0 || n > 32)
			return BAD_REPLY();
		memcpy(out[i], p, n);
		outlen[i] = n;
	}
	if (rd_end(&r) != 0)
		return BAD_REPLY();
	return 0;
}

int
kms_diversify(struct kms_client *c, struct kms_ref master, const uint8_t *data,
    size_t n, int usage, uint32_t *out)
{
	BODY_BEGIN;

	if ((rc = kms_put_ref(&b, master)) == 0 &&
	    (rc = buf_put_lv16(&b, data, n)) == 0)
		rc = buf_put_u8(&b, (uint8_t)usage);
	SEND(KMS_OP_DIVERSIFY);
	if (rd_u32(&r, out) != 0 || rd_end(&r) != 0)
		return BAD_REPLY();
	return 0;
}

int
kms_sign(struct kms_client *c, struct kms_ref key, int mech, uint8_t profile,
    const uint8_t *d, size_t n, uint8_t *sig, size_t *siglen)
{
	const uint8_t *p;
	size_t sl;
	BODY_BEGIN;

	if ((rc = kms_put_ref(&b, key)) == 0 &&
	    (rc = buf_put_u8(&b, (uint8_t)mech)) == 0 &&
	    (rc = buf_put_u8(&b, profile)) == 0)
		rc = buf_put_lv32(&b, d, n);
	SEND(KMS_OP_SIGN);
	if (rd_lv16(&r, &p, &sl) != 0 || sl > *siglen || rd_end(&r) != 0)
		return BAD_REPLY();
	memcpy(sig, p, sl);
	*siglen = sl;
	return 0;
}

int
kms_hmac(struct kms_client *c, struct kms_ref key, const uint8_t *d, size_t n,
    uint8_t out[32])
{
	const uint8_t *p;
	BODY_BEGIN;

	if ((rc = kms_put_ref(&b, key)) == 0)
		rc = buf_put_lv32(&b, d, n);
	SEND(KMS_OP_HMAC);
	if (rd_bytes(&r, 32, &p) != 0 || rd_end(&r) != 0)
		return BAD_REPLY();
	memcpy(out, p, 32);
	return 0;
}

int
kms_hmac_verify(struct kms_client *c, struct kms_ref key, const uint8_t *d,
    size_t n, const uint8_t mac[32])
{
	BODY_BEGIN;

	if ((rc = kms_put_ref(&b, key)) == 0 &&
	    (rc = buf_put_lv32(&b, d, n)) == 0)
		rc = buf_put(&b, mac, 32);
	SEND(KMS_OP_HMAC_VERIFY);
	return rd_end(&r) == 0 ? 0 : BAD_REPLY();
}
