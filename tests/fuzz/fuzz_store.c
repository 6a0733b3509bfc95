/*
 * fuzz_store.c - libFuzzer target for the record decoders of tsmd's store
 * (bytes as read back from LMDB). Whatever the input: no crash, no read
 * past it; whatever a decoder accepts re-encodes to the very same bytes
 * (the decoders take canonical input only), documents to equal JSON, and
 * the key derived from an accepted record is well formed.
 */
#include <stdlib.h>
#include <string.h>

#include "kms/base.h"
#include "tsm/store/store.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
same(const struct buf *b, const uint8_t *data, size_t size)
{
	if (b->len != size || (size && memcmp(b->p, data, size) != 0))
		abort();
}

static void
reencode(int rc_dec, int rc_enc, struct buf *b, const uint8_t *d, size_t n)
{
	if (rc_dec != 0)
		return;
	if (rc_enc != 0)
		abort();	/* accepted but not encodable: codecs disagree */
	same(b, d, n);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const enum store_db docs[] = { STORE_DB_PROVIDER, STORE_DB_APP,
	    STORE_DB_CERT, STORE_DB_NOTIFY, STORE_DB_KEYARCH };
	struct store_se se;
	struct store_ssd ssd;
	struct store_keyset ks;
	struct store_peer peer;
	struct store_task task;
	struct store_idem idem;
	struct store_nonce nonce;
	struct store_sdstatus ev;
	char key[STORE_KEY_MAX + 1];
	struct buf b;
	size_t i;
	int rc;

	buf_init(&b);

	rc = store_se_decode(data, size, &se);
	reencode(rc, rc ? 0 : store_se_encode(&se, &b), &b, data, size);
	if (rc == 0 && store_key_se(key, se.se_id) != 0)
		abort();

	buf_reset(&b);
	rc = store_ssd_decode(data, size, &ssd);
	reencode(rc, rc ? 0 : store_ssd_encode(&ssd, &b), &b, data, size);
	if (rc == 0 && store_key_ssd(key, ssd.se_id, ssd.sd_aid) != 0)
		abort();

	buf_reset(&b);
	store_keyset_init(&ks);
	rc = store_keyset_decode(data, size, &ks);
	reencode(rc, rc ? 0 : store_keyset_encode(&ks, &b), &b, data, size);
	if (rc == 0 && store_key_keyset(key, ks.se_id, ks.sd_aid, ks.kvn) != 0)
		abort();
	store_keyset_cleanup(&ks);

	buf_reset(&b);
	rc = store_peer_decode(data, size, &peer);
	reencode(rc, rc ? 0 : store_peer_encode(&peer, &b), &b, data, size);

	buf_reset(&b);
	store_task_init(&task);
	rc = store_task_decode(data, size, &task);
	reencode(rc, rc ? 0 : store_task_encode(&task, &b), &b, data, size);
	if (rc == 0 && task.n_hist > STORE_HIST_MAX)
		abort();
	store_task_cleanup(&task);

	buf_reset(&b);
	store_idem_init(&idem);
	rc = store_idem_decode(data, size, &idem);
	reencode(rc, rc ? 0 : store_idem_encode(&idem, &b), &b, data, size);
	store_idem_cleanup(&idem);

	buf_reset(&b);
	rc = store_nonce_decode(data, size, &nonce);
	reencode(rc, rc ? 0 : store_nonce_encode(&nonce, &b), &b, data, size);
	if (rc == 0 && store_key_nonce(key, nonce.peer, nonce.nonce) != 0)
		abort();

	buf_reset(&b);
	rc = store_sdstatus_decode(data, size, &ev);
	reencode(rc, rc ? 0 : store_sdstatus_encode(&ev, &b), &b, data, size);

	for (i = 0; i < ARRAY_LEN(docs); i++) {
		json_t *j = NULL, *j2 = NULL;

		buf_reset(&b);
		if (store_doc_decode(docs[i], data, size, &j) != 0)
			continue;
		if (store_doc_encode(docs[i], j, &b) != 0 ||
		    store_doc_decode(docs[i], b.p, b.len, &j2) != 0 ||
		    !json_equal(j, j2))
			abort();
		json_decref(j);
		json_decref(j2);
	}

	/* The generic check agrees with the typed decoders on every db. */
	for (i = 0; i < STORE_DB_COUNT; i++)
		(void)!store_value_check((enum store_db)i, data, size);
	buf_free(&b);
	return 0;
}
