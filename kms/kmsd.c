/*
 * kmsd.c - the key management daemon: one Unix socket per role, callers
 * identified by SO_PEERCRED, framed requests dispatched through one table
 * (kmsd_ops.c), every decision audited, session objects owned by the
 * connection that made them. Single-threaded event loop; the only
 * long-running process that loads PKCS#11. Trusts the token and the policy
 * file; nothing that arrives on a socket.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "kms/kmsd.h"

#define READ_CHUNK   65536
#define OUT_HIGH     (4u << 20)	/* stop reading a client that does not read */
#define MAX_HANDLES  (1u << 16)
#define HID_SLOT_BITS 16

static uint32_t hid_gen;

/* ---- audit ---- */

static int
audit_mac_cb(void *ctx, const uint8_t *d, size_t n, uint8_t mac[32])
{
	struct kmsd *k = ctx;
	struct ks_key *key = ks_find(&k->ks, k->cfg.audit_key);
	struct ks_version *v;
	p11_obj o;
	int rc;

	if (key == NULL || key->cls != KS_AUDIT)
		return ERR_NOKEY;
	if ((rc = ks_version(key, 0, &v)) != 0 ||
	    (rc = ks_object_fast(&k->ks, key, v, &o)) != 0)
		return rc;
	rc = p11_hmac_sha256(k->p, o, d, n, mac);
	if (rc == ERR_HANDLE) {
		ks_forget(&k->ks, key, v);
		if ((rc = ks_object_fast(&k->ks, key, v, &o)) == 0)
			rc = p11_hmac_sha256(k->p, o, d, n, mac);
	}
	return rc;
}

int
kmsd_audit(struct req *rq, const char *op, const char *key, const char *result,
    const char *detail, int durable)
{
	struct audit_rec r = {
		.uid = rq->c ? (uint32_t)rq->c->uid : (uint32_t)getuid(),
		.pid = rq->c ? (int32_t)rq->c->pid : (int32_t)getpid(),
		.role = rq->c ? policy_role_name(rq->c->role) : "kmsd",
		.op = op,
		.key = key,
		.params = rq->body.p,
		.nparams = rq->body.len,
		.result = result,
		.detail = detail,
	};
	int rc = audit_log(rq->d->audit, &r, durable);

	if (rc != 0)
		log_msg(LOG_ERR, "event=audit_write_failed op=%s err=%s", op,
		    err_name(rc));
	return rc;
}

/* ---- handles ---- */

struct handle *
kmsd_handle_get(struct conn *c, uint32_t id)
{
	size_t slot = id & ((1u << HID_SLOT_BITS) - 1);

	if (id == 0 || slot >= c->nh || c->h[slot].id != id)
		return NULL;
	return &c->h[slot];
}

int
kmsd_handle_new(struct conn *c, struct handle **out)
{
	size_t i;

	for (i = 1; i < c->nh; i++)
		if (c->h[i].id == 0)
			break;
	if (i >= c->nh) {
		size_t nn = c->nh ? c->nh * 2 : 16;
		struct handle *nh;

		if (nn > MAX_HANDLES)
			return ERR_LIMIT;
		nh = realloc(c->h, nn * sizeof(*nh));
		if (nh == NULL)
			return ERR_NOMEM;
		memset(nh + c->nh, 0, (nn - c->nh) * sizeof(*nh));
		c->h = nh;
		i = c->nh ? c->nh : 1;
		c->nh = nn;
	}
	/* Ids carry a generation, kmsd-wide, so a closed handle's id is not
	 * soon reused and one connection's ids rarely mean anything in
	 * another (where they would not be found anyway). */
	hid_gen = (hid_gen + 1) & 0xffff;
	if (hid_gen == 0)
		hid_gen = 1;
	memset(&c->h[i], 0, sizeof(c->h[i]));
	c->h[i].id = ((uint32_t)hid_gen << HID_SLOT_BITS) | (uint32_t)i;
	c->h[i].last_used_ms = now_ms();
	*out = &c->h[i];
	return 0;
}

/* Destroys a handle's session object; `why` NULL: the caller audits (a
 * connection's close sums up all its handles in one record). */
void
kmsd_handle_free(struct kmsd *d, struct conn *c, struct handle *h,
    const char *why)
{
	char key[32], detail[96];
	struct req rq = { .d = d, .c = c };

	if (h->id == 0)
		return;
	if (h->obj != 0 && p11_destroy(d->p, h->obj) != 0)
		log_msg(LOG_WARN, "event=session_object_destroy_failed p11=\"%s\"",
		    p11_last_error());
	if (why != NULL) {
		snprintf(key, sizeof(key), "h:%u", h->id);
		snprintf(detail, sizeof(detail), "%s uses=%llu", why,
		    (unsigned long long)h->uses);
		(void)kmsd_audit(&rq, "handle.close", key, "ok", detail, 0);
	}
	memset(h, 0, sizeof(*h));
}

/* Destroys every handle of a closing connection; counts for its record. */
static void
handles_free_all(struct kmsd *d, struct conn *c, size_t *n, uint64_t *uses)
{
	size_t i;

	*n = 0;
	*uses = 0;
	for (i = 0; i < c->nh; i++) {
		if (c->h[i].id == 0)
			continue;
		(*n)++;
		*uses += c->h[i].uses;
		kmsd_handle_free(d, c, &c->h[i], NULL);
	}
	free(c->h);
	c->h = NULL;
	c->nh = 0;
}

/* ---- login ---- */

int
kmsd_login(struct kmsd *d, const char *pin, size_t pinlen)
{
	char rep[256];
	int rc;

	if ((rc = p11_login(d->p, pin, pinlen)) != 0)
		return rc;
	if ((rc = p11_probe(d->p, &d->caps, rep, sizeof(rep))) != 0)
		return rc;
	log_msg(LOG_INFO, "event=token_probe token=\"%s\" %s",
	    p11_token_label(d->p), rep);
	if ((d->caps & P11_CAP_REQUIRED) != P11_CAP_REQUIRED) {
		log_msg(LOG_ERR, "event=token_lacks_required_mechanisms %s", rep);
		return ERR_P11_MECH;
	}
	if ((rc = ks_load(&d->ks, d->p)) != 0)
		return rc;
	log_msg(LOG_INFO, "event=keystore_loaded keys=%zu", d->ks.n);
	d->sealed = 0;
	audit_set_mac(d->audit, audit_mac_cb, d);
	if (ks_find(&d->ks, d->cfg.audit_key) == NULL)
		log_msg(LOG_WARN, "event=no_audit_key label=%s note=\"audit records "
		    "wait in memory until the key exists\"", d->cfg.audit_key);
	else if ((rc = audit_flush_pending(d->audit)) != 0)
		log_msg(LOG_ERR, "event=audit_flush_failed err=%s", err_name(rc));
	return 0;
}

/* ---- connections ---- */

void
kmsd_conn_close(struct kmsd *d, struct conn *c)
{
	struct conn **pp;
	struct req rq = { .d = d, .c = c };
	char detail[96];
	uint64_t uses;
	size_t n;

	handles_free_all(d, c, &n, &uses);
	snprintf(detail, sizeof(detail), "connection closed: %zu handles "
	    "destroyed, %llu uses", n, (unsigned long long)uses);
	(void)kmsd_audit(&rq, "disconnect", NULL, "ok", detail, 0);
	for (pp = &d->conns; *pp != NULL; pp = &(*pp)->next) {
		if (*pp == c) {
			*pp = c->next;
			break;
		}
	}
	for (pp = &d->dirty; c->dirty && *pp != NULL; pp = &(*pp)->next_dirty) {
		if (*pp == c) {
			*pp = c->next_dirty;
			break;
		}
	}
	for (pp = &d->held; c->is_held && *pp != NULL; pp = &(*pp)->next_held) {
		if (*pp == c) {
			*pp = c->next_held;
			break;
		}
	}
	for (pp = &d->pending; c->is_pending && *pp != NULL; pp = &(*pp)->next_pending) {
		if (*pp == c) {
			*pp = c->next_pending;
			break;
		}
	}
	epoll_ctl(d->epfd, EPOLL_CTL_DEL, c->fd, NULL);
	close(c->fd);
	buf_free(&c->in);
	buf_free(&c->out);
	free(c);
}

void
kmsd_mark_dirty(struct kmsd *d, struct conn *c)
{
	if (!c->dirty) {
		c->dirty = 1;
		c->next_dirty = d->dirty;
		d->dirty = c;
	}
}

/* Re-arms epoll only when the wanted events change (a syscall saved per
 * reply on the hot path). out: output that may go is still unwritten. */
static void
update_events(struct kmsd *d, struct conn *c, int out)
{
	struct epoll_event ev = { 0 };

	ev.events = (c->out.len < OUT_HIGH && !c->closing ? EPOLLIN : 0) |
	    (out ? EPOLLOUT : 0);
	if (ev.events == c->events)
		return;
	ev.data.ptr = c;
	if (epoll_ctl(d->epfd, EPOLL_CTL_MOD, c->fd, &ev) == 0)
		c->events = ev.events;
}

static uint64_t sync_done_gen(struct kmsd *d);
static void hold(struct kmsd *d, struct conn *c);

/* The reply about to be appended, and all after it, wait for audit sync
 * gen. Gens only rise, so a reply behind one that waits as long needs no
 * mark of its own; with the marks full the last one waits longer. */
static void
conn_hold(struct conn *c, uint64_t gen)
{
	if (c->nhold > 0 && c->hold[c->nhold - 1].gen >= gen)
		return;
	if (c->nhold == ARRAY_LEN(c->hold)) {
		c->hold[c->nhold - 1].gen = gen;
		return;
	}
	c->hold[c->nhold].gen = gen;
	c->hold[c->nhold].at = c->out_done + c->out.len;
	c->nhold++;
}

/* Bytes at the front of c's output that may be written now that audit
 * sync `done` is on disk (marks it satisfies are dropped). */
static size_t
conn_writable(struct conn *c, uint64_t done)
{
	unsigned i = 0;

	while (i < c->nhold && c->hold[i].gen <= done)
		i++;
	if (i > 0) {
		memmove(&c->hold[0], &c->hold[i], (c->nhold - i) *
		    sizeof(c->hold[0]));
		c->nhold -= i;
	}
	if (c->nhold == 0)
		return c->out.len;
	return (size_t)(c->hold[0].at - c->out_done);
}

/* Appends a reply frame. */
static int
reply(struct conn *c, const struct kms_hdr *rh, int status, const struct buf *b)
{
	struct kms_hdr h = { 0 };
	uint8_t hb[KMS_HDR_LEN];
	int rc;

	h.len = (uint32_t)b->len;
	h.type = rh->type;
	h.flags = KMS_FLAG_REPLY;
	h.id = rh->id;
	h.status = status;
	kms_hdr_encode(&h, hb);
	if ((rc = buf_put(&c->out, hb, sizeof(hb))) != 0)
		return rc;
	return buf_put(&c->out, b->p, b->len);
}

static void
error_body(struct buf *b, int status, const char *msg)
{
	buf_reset(b);
	if (buf_put_str(b, msg && *msg ? msg : err_str(status)) != 0)
		buf_reset(b);
}

/* Serves one complete frame. Returns -1 when the connection must close. */
static int
serve_frame(struct kmsd *d, struct conn *c, const struct kms_hdr *h,
    const uint8_t *body)
{
	const struct op_row *row;
	struct buf out;
	struct req rq;
	int status;

	buf_init(&out);
	memset(&rq, 0, sizeof(rq));
	rq.d = d;
	rq.c = c;
	rq.h = h;
	rd_init(&rq.body, body, h->len);
	rq.reply = &out;

	row = kmsd_op_find(h->type);
	if (h->flags & KMS_FLAG_REPLY) {
		status = ERR_PROTO;
		snprintf(rq.msg, sizeof(rq.msg), "reply flag set on a request");
	} else if (row == NULL) {
		status = ERR_UNKNOWN_OP;
		snprintf(rq.msg, sizeof(rq.msg), "unknown operation 0x%04x",
		    h->type);
		(void)kmsd_audit(&rq, "unknown", NULL, "deny", rq.msg, 0);
	} else if (!c->hello && h->type != KMS_OP_HELLO) {
		status = ERR_PROTO;
		snprintf(rq.msg, sizeof(rq.msg), "hello must come first");
	} else if (!(row->roles & (1u << c->role))) {
		status = ERR_DENIED;
		snprintf(rq.msg, sizeof(rq.msg), "%s is not available to role %s",
		    row->name, policy_role_name(c->role));
		(void)kmsd_audit(&rq, row->name, NULL, "deny", rq.msg, 0);
	} else if (d->sealed && !row->sealed_ok) {
		status = ERR_SEALED;
		snprintf(rq.msg, sizeof(rq.msg), "kmsd is sealed: custodians must "
		    "unseal it first");
	} else if (row->audit == AUDIT_DURABLE &&
	    (status = audit_has_room(d->audit)) != 0) {
		/* Its record could not be queued: not run at all (an unseal or
		 * reload done without a record, answered as failed, would be
		 * worse). */
		log_msg(LOG_ERR, "event=audit_write_failed op=%s err=%s "
		    "msg=\"not run\"", row->name, err_name(status));
		status = ERR_IO;
		snprintf(rq.msg, sizeof(rq.msg), "%s: the audit log cannot take "
		    "its record (records wait unwritten); not run", row->name);
	} else {
		status = row->fn(&rq);
		/* One record per decision, with the outcome; repeat uses of a
		 * handle already audited for this operation are only counted. */
		if (row->audit != AUDIT_NONE && !rq.audited &&
		    !(rq.skip_audit && status == 0)) {
			char detail[256];

			int durable = row->audit == AUDIT_DURABLE && status == 0;

			snprintf(detail, sizeof(detail), "%s: %s", err_name(status),
			    rq.msg[0] ? rq.msg : err_str(status));
			if (kmsd_audit(&rq, row->name, rq.key[0] ? rq.key : NULL,
			    status == 0 ? "ok" : "error", status == 0 ? NULL : detail,
			    durable) != 0 && durable) {
				/* No record, no result: it is withheld (the
				 * queue of unwritten records is full, e.g. a
				 * disk full for long). */
				status = ERR_IO;
				snprintf(rq.msg, sizeof(rq.msg), "%s: the audit "
				    "record could not be queued; result withheld",
				    row->name);
			}
			/* This reply (and those after it on the connection)
			 * leaves only once the record is on disk; those
			 * before it need not wait. */
			if (durable && status == 0 &&
			    audit_sync_pending(d->audit))
				conn_hold(c, d->sync_req + 1);
		}
	}
	if (status != 0)
		error_body(&out, status, rq.msg);
	if (reply(c, h, status, &out) != 0) {
		buf_free(&out);
		return -1;
	}
	buf_free(&out);
	kmsd_mark_dirty(d, c);
	/* A malformed frame ends the conversation: the stream cannot be
	 * trusted to be in step any more. */
	if (status == ERR_PROTO || (status == ERR_VERSION && !c->hello))
		c->closing = 1;
	return 0;
}

/* Parses and serves the complete frames in c->in, a pass's worth. */
int
kmsd_serve_input(struct kmsd *d, struct conn *c)
{
	struct kms_hdr h;
	size_t off = 0;
	int served = 0, more = 0;

	while (!c->closing && c->in.len - off >= KMS_HDR_LEN) {
		if (kms_hdr_decode(c->in.p + off, &h) != 0) {
			/* Length over the maximum: answer once, then close,
			 * without reading (or allocating for) the body. */
			struct buf eb;
			struct kms_hdr rh = h;

			buf_init(&eb);
			error_body(&eb, ERR_TOOBIG, "frame larger than the maximum");
			if (reply(c, &rh, ERR_TOOBIG, &eb) != 0) {
				buf_free(&eb);
				return -1;
			}
			buf_free(&eb);
			kmsd_mark_dirty(d, c);
			c->closing = 1;
			break;
		}
		if (c->in.len - off - KMS_HDR_LEN < h.len)
			break;
		/* One busy connection does not keep the loop from the others,
		 * nor its own finished replies from leaving. */
		if (served == KMSD_FRAMES_PASS) {
			more = 1;
			break;
		}
		if (serve_frame(d, c, &h, c->in.p + off + KMS_HDR_LEN) != 0)
			return -1;
		off += KMS_HDR_LEN + h.len;
		served++;
	}
	buf_consume(&c->in, off);
	return more;
}

static void
mark_pending(struct kmsd *d, struct conn *c)
{
	if (c->is_pending)
		return;
	c->is_pending = 1;
	c->next_pending = d->pending;
	d->pending = c;
}

void
kmsd_serve_pending(struct kmsd *d)
{
	struct conn *c, *next;
	int rc;

	for (c = d->pending, d->pending = NULL; c != NULL; c = next) {
		next = c->next_pending;
		c->next_pending = NULL;
		c->is_pending = 0;
		if ((rc = kmsd_serve_input(d, c)) < 0)
			kmsd_conn_close(d, c);
		else if (rc > 0)
			mark_pending(d, c);
	}
}

/*
 * Reads one chunk; the complete frames in it are served by
 * kmsd_serve_pending, the one place that serves, at most KMSD_FRAMES_PASS
 * a pass. Nothing is read while served frames wait, so c->in holds at
 * most an incomplete frame (its header passed the size check) and a chunk.
 */
void
kmsd_conn_read(struct kmsd *d, struct conn *c, int hup)
{
	ssize_t n;

	if (c->closing || c->out.len >= OUT_HIGH) {
		/* Not reading now; a peer that hung up can take nothing more
		 * and would raise EPOLLHUP on every wait (a spin while a
		 * durable reply is held): closed now. */
		if (hup)
			kmsd_conn_close(d, c);
		return;
	}
	if (c->is_pending)
		return;		/* epoll reports the socket again */
	if (buf_reserve(&c->in, READ_CHUNK) != 0) {
		kmsd_conn_close(d, c);
		return;
	}
	do
		n = read(c->fd, c->in.p + c->in.len, READ_CHUNK);
	while (n < 0 && errno == EINTR);
	if (n < 0 && errno == EAGAIN)
		return;
	if (n <= 0) {
		kmsd_conn_close(d, c);
		return;
	}
	c->in.len += (size_t)n;
	mark_pending(d, c);
}

/* Returns -1 when the connection was closed. */
int
kmsd_conn_flush(struct kmsd *d, struct conn *c)
{
	size_t lim = c->nhold > 0 ? conn_writable(c, sync_done_gen(d)) :
	    c->out.len;
	ssize_t n;

	while (lim > 0) {
		n = write(c->fd, c->out.p, lim);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN)
				break;
			kmsd_conn_close(d, c);
			return -1;
		}
		buf_consume(&c->out, (size_t)n);
		c->out_done += (uint64_t)n;
		lim -= (size_t)n;
	}
	if (c->out.len == 0 && c->closing) {
		kmsd_conn_close(d, c);
		return -1;
	}
	/* The rest waits for a sync: flushed again when it is done. */
	if (c->nhold > 0)
		hold(d, c);
	update_events(d, c, lim > 0);
	return 0;
}

void
kmsd_accept(struct kmsd *d, int role)
{
	struct ucred cred;
	socklen_t cl = sizeof(cred);
	struct epoll_event ev = { 0 };
	struct conn *c;
	struct req rq = { .d = d };
	char detail[96];
	int fd;

	fd = accept4(d->lfd[role], NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	if (fd < 0)
		return;
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &cl) != 0) {
		close(fd);
		return;
	}
	c = calloc(1, sizeof(*c));
	if (c == NULL) {
		close(fd);
		return;
	}
	c->fd = fd;
	c->role = role;
	c->uid = cred.uid;
	c->gid = cred.gid;
	c->pid = cred.pid;
	buf_init(&c->in);
	buf_init(&c->out);
	rq.c = c;
	/* The socket gives the role; the policy's identity lines say whether
	 * this uid/gid may hold it. */
	if (!policy_identity_allows(d->pol, cred.uid, cred.gid, role)) {
		snprintf(detail, sizeof(detail), "uid %u gid %u may not act as %s",
		    cred.uid, cred.gid, policy_role_name(role));
		(void)kmsd_audit(&rq, "connect", NULL, "deny", detail, 0);
		log_msg(LOG_WARN, "event=connect_denied uid=%u gid=%u role=%s",
		    cred.uid, cred.gid, policy_role_name(role));
		close(fd);
		free(c);
		return;
	}
	ev.events = EPOLLIN;
	ev.data.ptr = c;
	c->events = EPOLLIN;
	if (epoll_ctl(d->epfd, EPOLL_CTL_ADD, fd, &ev) != 0) {
		close(fd);
		free(c);
		return;
	}
	c->next = d->conns;
	d->conns = c;
	(void)kmsd_audit(&rq, "connect", NULL, "allow", NULL, 0);
}

/* Destroys handles idle longer than the timeout. */
void
kmsd_sweep(struct kmsd *d)
{
	uint64_t now = now_ms(), limit = (uint64_t)d->cfg.idle_timeout_s * 1000;
	struct conn *c;
	size_t i;

	for (c = d->conns; c != NULL; c = c->next)
		for (i = 0; i < c->nh; i++)
			if (c->h[i].id != 0 && now - c->h[i].last_used_ms > limit)
				kmsd_handle_free(d, c, &c->h[i], "idle timeout");
}

/* ---- group commit ---- */

static void *
syncer_main(void *arg)
{
	struct kmsd *d = arg;
	uint64_t want, one = 1;
	int fd;

	(void)pthread_setname_np(pthread_self(), "audit-sync");
	pthread_mutex_lock(&d->sync_mu);
	for (;;) {
		while (!d->sync_stop && d->sync_done == d->sync_req)
			pthread_cond_wait(&d->sync_cv, &d->sync_mu);
		if (d->sync_done == d->sync_req && d->sync_stop)
			break;
		want = d->sync_req;
		fd = d->sync_fd;
		pthread_mutex_unlock(&d->sync_mu);
		if (fdatasync(fd) != 0)
			log_msg(LOG_ERR, "event=audit_sync_failed");
		pthread_mutex_lock(&d->sync_mu);
		d->sync_done = want;
		if (write(d->sync_evfd, &one, sizeof(one)) != sizeof(one))
			log_msg(LOG_ERR, "event=sync_signal_failed");
	}
	pthread_mutex_unlock(&d->sync_mu);
	return NULL;
}

int
kmsd_syncer_start(struct kmsd *d)
{
	pthread_mutex_init(&d->sync_mu, NULL);
	pthread_cond_init(&d->sync_cv, NULL);
	if (pthread_create(&d->syncer, NULL, syncer_main, d) != 0)
		return ERR_NOMEM;
	d->sync_started = 1;
	return 0;
}

void
kmsd_syncer_stop(struct kmsd *d)
{
	if (!d->sync_started)
		return;
	pthread_mutex_lock(&d->sync_mu);
	d->sync_stop = 1;
	pthread_cond_signal(&d->sync_cv);
	pthread_mutex_unlock(&d->sync_mu);
	pthread_join(d->syncer, NULL);
	d->sync_started = 0;
}

static uint64_t
sync_done_gen(struct kmsd *d)
{
	uint64_t g;

	if (!d->sync_started)
		return d->sync_done;
	pthread_mutex_lock(&d->sync_mu);
	g = d->sync_done;
	pthread_mutex_unlock(&d->sync_mu);
	return g;
}

static void
hold(struct kmsd *d, struct conn *c)
{
	if (c->is_held)
		return;
	c->is_held = 1;
	c->next_held = d->held;
	d->held = c;
}

/* A sync finished: every held connection writes what may go now (those
 * still waiting for a later sync go back on the list). */
void
kmsd_sync_done(struct kmsd *d)
{
	struct conn *c, *next;

	for (c = d->held, d->held = NULL; c != NULL; c = next) {
		next = c->next_held;
		c->next_held = NULL;
		c->is_held = 0;
		(void)kmsd_conn_flush(d, c);	/* may close and free c */
	}
}

/*
 * End of a loop iteration. Durable audit records must reach the disk before
 * a reply that depends on them leaves (group commit): a sync of everything
 * written so far is requested from the syncer thread, and the connections
 * holding such replies wait for it while the loop goes on serving. Others
 * are flushed at once.
 */
void
kmsd_flush_dirty(struct kmsd *d)
{
	struct conn *c, *next;
	int fd, rc;

	/* This iteration's records, chained and written in one go. */
	if ((rc = audit_flush_due(d->audit)) != 0 && rc != ERR_BUSY)
		log_msg(LOG_ERR, "event=audit_write_failed err=%s",
		    err_name(rc));
	if (audit_take_sync(d->audit, &fd)) {
		if (d->sync_started) {
			pthread_mutex_lock(&d->sync_mu);
			d->sync_req++;
			d->sync_fd = fd;
			pthread_cond_signal(&d->sync_cv);
			pthread_mutex_unlock(&d->sync_mu);
		} else {
			if (fdatasync(fd) != 0)
				log_msg(LOG_ERR, "event=audit_sync_failed");
			d->sync_req++;
			d->sync_done = d->sync_req;
		}
	}
	/* A durable reply whose record is not written yet (the write failed:
	 * logged, retried at every loop pass, at least once a second) waits
	 * for the sync after the write that succeeds. */
	for (c = d->dirty, d->dirty = NULL; c != NULL; c = next) {
		next = c->next_dirty;
		c->dirty = 0;
		c->next_dirty = NULL;
		(void)kmsd_conn_flush(d, c);	/* writes what may go */
	}
}

int
kmsd_load_policy(struct kmsd *d)
{
	struct policy_error pe;
	struct policy *np;
	struct buf b;
	int rc;

	buf_init(&b);
	if ((rc = file_read_all(d->cfg.policy, 1u << 20, &b)) != 0) {
		log_msg(LOG_ERR, "event=policy_unreadable path=%s err=%s",
		    d->cfg.policy, err_name(rc));
		return rc;
	}
	rc = policy_parse((const char *)b.p, b.len, kmsd_vocab(), &np, &pe);
	buf_free(&b);
	if (rc != 0) {
		log_msg(LOG_ERR, "event=policy_invalid path=%s line=%u col=%u "
		    "msg=\"%s\"", d->cfg.policy, pe.line, pe.col, pe.msg);
		fprintf(stderr, "kmsd: %s:%u:%u: %s\n", d->cfg.policy, pe.line,
		    pe.col, pe.msg);
		return rc;
	}
	policy_free(d->pol);
	d->pol = np;
	log_msg(LOG_INFO, "event=policy_loaded path=%s rules=%zu", d->cfg.policy,
	    policy_rule_count(np));
	return 0;
}
