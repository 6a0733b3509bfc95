/*
 * rewrap.c - kmsctl rewrap: after `key rotate --label storage-kek`, every
 * key-set blob tsmd keeps in its store is rewrapped under the new storage
 * KEK version, in batches, each an atomic conditional store write (a
 * record tsmd changed meanwhile is read again, never overwritten). A crash
 * loses nothing: blobs already rewrapped are skipped on the next run. When
 * no blob needs an old version any more, the old versions are archived.
 * Runs in kmsctl (token and store opened directly; kmsd may be running).
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kms/kmsctl.h"
#include "kms/kmsd.h"
#include "tsm/store/store.h"

#define BATCH 64

struct item {
	uint8_t *key;
	size_t   klen;
	uint8_t *val;
	size_t   vlen;
};

struct scan {
	struct kmsd  *d;
	uint32_t      current;
	struct item  *items;
	size_t        n, cap;
	size_t        total;	/* key-set records seen */
	int           rc;
};

/* Collects the records whose blob is not under the current version. */
static int
scan_cb(void *arg, const uint8_t *key, size_t klen, const uint8_t *val,
    size_t vlen)
{
	struct scan *s = arg;
	struct store_keyset ks;
	struct blob_head h;
	struct item *it;

	s->total++;
	store_keyset_init(&ks);
	if (store_keyset_decode(val, vlen, &ks) != 0 ||
	    keyset_peek(ks.blob.p, ks.blob.len, &h) != 0) {
		fprintf(stderr, "kmsctl: a key-set record does not decode; run "
		    "`tsmctl store check`\n");
		store_keyset_cleanup(&ks);
		s->rc = ERR_PARSE;
		return 1;
	}
	store_keyset_cleanup(&ks);
	if (h.type != BLOB_WRAPPED || h.version == s->current)
		return 0;
	if (s->n == s->cap) {
		size_t nc = s->cap ? s->cap * 2 : 256;
		struct item *ni = realloc(s->items, nc * sizeof(*ni));

		if (ni == NULL) {
			s->rc = ERR_NOMEM;
			return 1;
		}
		s->items = ni;
		s->cap = nc;
	}
	it = &s->items[s->n];
	it->key = malloc(klen);
	it->val = malloc(vlen);
	if (it->key == NULL || it->val == NULL) {
		free(it->key);
		free(it->val);
		s->rc = ERR_NOMEM;
		return 1;
	}
	memcpy(it->key, key, klen);
	memcpy(it->val, val, vlen);
	it->klen = klen;
	it->vlen = vlen;
	s->n++;
	return 0;
}

static void
scan_free(struct scan *s)
{
	size_t i;

	for (i = 0; i < s->n; i++) {
		free(s->items[i].key);
		free(s->items[i].val);
	}
	free(s->items);
	s->items = NULL;
	s->n = s->cap = 0;
}

static int
scan(struct store *st, struct scan *s)
{
	int rc;

	scan_free(s);
	s->total = 0;
	s->rc = 0;
	rc = store_iter(st, STORE_DB_KEYSET, NULL, 0, scan_cb, s);
	return s->rc ? s->rc : rc;
}

static void
progress(size_t done, size_t total)
{
	char bar[41];
	size_t fill = total ? done * 40 / total : 40;

	memset(bar, '#', fill);
	memset(bar + fill, '.', 40 - fill);
	bar[40] = '\0';
	fprintf(stderr, "\rrewrap [%s] %zu/%zu", bar, done, total);
	if (done == total)
		fprintf(stderr, "\n");
}

/* One pass over what the scan found. Returns how many were written. */
static int
pass(struct kmsd *d, struct store *st, struct scan *s, size_t *written,
    size_t *retry)
{
	struct store_batch *b = NULL;
	struct store_keyset ks;
	struct buf nb;
	char msg[256];
	size_t i, j, inbatch;
	int changed, rc;

	*written = *retry = 0;
	buf_init(&nb);
	if ((rc = store_batch_new(&b)) != 0)
		return rc;
	for (i = 0; i < s->n; i += BATCH) {
		store_batch_clear(b);
		inbatch = 0;
		for (j = i; j < s->n && j < i + BATCH; j++) {
			store_keyset_init(&ks);
			rc = store_keyset_decode(s->items[j].val, s->items[j].vlen, &ks);
			if (rc == 0)
				rc = keyset_rewrap(d, ks.blob.p, ks.blob.len, &nb,
				    &changed, msg, sizeof(msg));
			if (rc != 0) {
				fprintf(stderr, "\nkmsctl: record %zu: %s (%s)\n", j,
				    err_str(rc), msg);
				store_keyset_cleanup(&ks);
				goto out;
			}
			if (changed) {
				buf_reset(&ks.blob);
				if ((rc = buf_put(&ks.blob, nb.p, nb.len)) != 0 ||
				    (rc = store_batch_require_equal(b, STORE_DB_KEYSET,
				    s->items[j].key, s->items[j].klen, s->items[j].val,
				    s->items[j].vlen)) != 0 ||
				    (rc = store_batch_put_keyset(b, &ks)) != 0) {
					store_keyset_cleanup(&ks);
					goto out;
				}
				inbatch++;
			}
			store_keyset_cleanup(&ks);
		}
		if (inbatch == 0)
			continue;
		rc = store_batch_commit(st, b);
		if (rc == ERR_WRONGSTATE) {
			/* tsmd changed a record of this batch: the next scan
			 * reads it again; nothing here was written. */
			*retry += inbatch;
			rc = 0;
		} else if (rc != 0) {
			fprintf(stderr, "\nkmsctl: store write failed: %s\n",
			    err_str(rc));
			goto out;
		} else {
			*written += inbatch;
		}
		progress(j, s->n);
	}
	rc = 0;
out:
	buf_free(&nb);
	store_batch_free(b);
	return rc;
}

int
cmd_rewrap(struct ctl *c, int argc, char **argv)
{
	static const struct option o[] = {
		{ "store", required_argument, NULL, 's' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 } };
	char sdir[600], det[160];
	const char *sd = NULL;
	struct store *st = NULL;
	struct kmsd d;
	struct scan s;
	struct ks_key *k;
	size_t written, retry, total = 0, i;
	int opt, rc = 1, round;

	optind = 1;
	while ((opt = getopt_long(argc, argv, "h", o, NULL)) != -1) {
		switch (opt) {
		case 's': sd = optarg; break;
		case 'h':
			printf("usage: kmsctl --share F... rewrap [--store DIR]\n"
			    "After `key rotate --label storage-kek`: rewraps every key-set\n"
			    "blob in tsmd's store (default VAR/tsm/store) under the current\n"
			    "storage KEK version, in batches, showing progress. Each batch\n"
			    "is one atomic store write that refuses to overwrite a record\n"
			    "tsmd changed meanwhile; after a crash, run it again: nothing is\n"
			    "lost and finished blobs are skipped. When no blob uses an old\n"
			    "version any more, the old versions are archived.\n");
			return 0;
		default: return 2;
		}
	}
	if (sd == NULL) {
		snprintf(sdir, sizeof(sdir), "%s/tsm/store", c->var);
		sd = sdir;
	}
	memset(&s, 0, sizeof(s));
	if (ctl_open(c) != 0)
		return 1;
	k = ks_find(&c->ks, "storage-kek");
	if (k == NULL) {
		fprintf(stderr, "kmsctl: no storage KEK\n");
		ctl_close(c);
		return 1;
	}
	if ((rc = store_open(&st, sd, NULL)) != 0) {
		fprintf(stderr, "kmsctl: cannot open the store %s: %s\n", sd,
		    err_str(rc));
		ctl_close(c);
		return 1;
	}
	memset(&d, 0, sizeof(d));
	d.p = c->p;
	d.ks = c->ks;
	d.caps = p11_caps(c->p);
	d.cfg.storage_kek = "storage-kek";
	s.d = &d;
	s.current = k->current;
	ctl_tr_begin(c, "rewrap");
	rc = 1;
	for (round = 0; round < 20; round++) {
		if (scan(st, &s) != 0)
			goto out;
		if (round == 0)
			printf("rewrap: %zu of %zu key sets to move to storage-kek v%u\n",
			    s.n, s.total, s.current);
		if (s.n == 0)
			break;
		if (pass(&d, st, &s, &written, &retry) != 0)
			goto out;
		total += written;
		if (retry)
			fprintf(stderr, "kmsctl: %zu record(s) changed meanwhile; "
			    "reading them again\n", retry);
	}
	if (s.n != 0) {
		fprintf(stderr, "kmsctl: key sets keep changing; run rewrap again\n");
		goto out;
	}
	/* Nothing refers to an older version now: archive them. */
	for (i = 0; i < k->nvers; i++) {
		struct ks_version *v = &k->vers[i];
		char kl[64];

		if (v->v == k->current || v->state != KMS_ST_ACTIVE)
			continue;
		if (ks_set_state(&c->ks, k, v, KMS_ST_DEACTIVATED,
		    "rewrap finished", 0) != 0) {
			fprintf(stderr, "kmsctl: cannot archive storage-kek v%u\n", v->v);
			goto out;
		}
		snprintf(kl, sizeof(kl), "storage-kek#%u", v->v);
		ctl_audit(c, "archive", kl, "ok", "rewrap finished");
		ctl_tr_event(c, "archived after rewrap", "storage-kek", v->v, v->kcv,
		    v->kcvlen);
		printf("rewrap: storage-kek v%u archived\n", v->v);
	}
	snprintf(det, sizeof(det), "%zu key sets rewrapped to v%u", total,
	    s.current);
	ctl_audit(c, "rewrap", "storage-kek", "ok", det);
	printf("rewrap: done, %zu key sets rewrapped, none left on an old version\n",
	    total);
	rc = 0;
out:
	if (rc != 0)
		ctl_audit(c, "rewrap", "storage-kek", "error", "interrupted");
	if (ctl_tr_end(c, rc ? "failed" : "ok") != 0)
		rc = 1;
	scan_free(&s);
	store_close(st);
	c->ks = d.ks;
	ctl_kmsd_reload(c);
	ctl_close(c);
	return rc;
}
