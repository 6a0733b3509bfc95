/*
 * receipt.c - the key-sync receipt's MAC input (README.md "Receipt") and
 * the master-set rule (README.md "Master sets"): the diversification data
 * of an SE and the derivation of its key set in kmsd. Runs in tsmd (and
 * in tests); key bytes stay in kmsd.
 */
#include <string.h>

#include <openssl/evp.h>

#include "tsm/sei/sei.h"

#define RECEIPT_TAG "SPTSM-RECEIPT-1"

static int
put_line(struct buf *out, const char *s)
{
	int rc;

	if ((rc = buf_put(out, "\n", 1)) != 0)
		return rc;
	return buf_put(out, s, strlen(s));
}

/* Upper-case hex of an id already validated as hex (either case). */
static int
upper_hex(const char *in, char *out, size_t cap)
{
	size_t i, n = strlen(in);

	if (n >= cap)
		return ERR_INVAL;
	for (i = 0; i < n; i++) {
		char c = in[i];

		if (c >= 'a' && c <= 'f')
			c = (char)(c - 'a' + 'A');
		else if (!((c >= '0' && c <= '9') || (c >= 'A' && c <= 'F')))
			return ERR_INVAL;
		out[i] = c;
	}
	out[n] = '\0';
	return 0;
}

int
sei_receipt_input(struct buf *out, const char *sei_tsm_id, const char *sd_aid,
    const char *se_id, uint8_t kvn, const uint8_t kcv[][5], size_t n,
    size_t kcvlen)
{
	char aid[2 * SEI_AID_MAX + 1], se[2 * SEI_SEID_MAX + 1], kv[3], hx[11];
	size_t i;
	int rc;

	if (n == 0 || n > SEI_KEYS || (kcvlen != 3 && kcvlen != 5) ||
	    sei_tsm_id == NULL || sd_aid == NULL)
		return ERR_INVAL;
	if ((rc = upper_hex(sd_aid, aid, sizeof(aid))) != 0 ||
	    (rc = upper_hex(se_id != NULL ? se_id : "", se, sizeof(se))) != 0)
		return rc;
	hex_encode_upper(&kvn, 1, kv);
	if ((rc = buf_put(out, RECEIPT_TAG, strlen(RECEIPT_TAG))) != 0 ||
	    (rc = put_line(out, sei_tsm_id)) != 0 ||
	    (rc = put_line(out, aid)) != 0 ||
	    (rc = put_line(out, se)) != 0 ||
	    (rc = put_line(out, kv)) != 0)
		return rc;
	for (i = 0; i < n; i++) {
		hex_encode_upper(kcv[i], kcvlen, hx);
		if ((rc = put_line(out, hx)) != 0)
			return rc;
	}
	return 0;
}

int
sei_master_div(const char *se_id, size_t keylen, uint8_t d[32])
{
	char se[2 * SEI_SEID_MAX + 1];
	uint8_t md[32];
	unsigned int ml = 0;
	size_t n;

	if (se_id == NULL || (keylen != 16 && keylen != 32))
		return ERR_INVAL;
	n = strlen(se_id);
	if (n < 2 * SEI_SEID_MIN || n > 2 * SEI_SEID_MAX || n % 2 != 0 ||
	    upper_hex(se_id, se, sizeof(se)) != 0)
		return ERR_INVAL;
	if (EVP_Digest(se, n, md, &ml, EVP_sha256(), NULL) != 1)
		return ERR_CRYPTO;
	memcpy(d, md, keylen);
	return 0;
}

int
sei_master_open_se(struct kms_client *c, const uint8_t *blob, size_t n,
    const char *se_id, struct kms_keyset *out)
{
	struct kms_keyset m;
	uint8_t d[32];
	size_t i, keylen, made = 0;
	int rc, opened = 0;

	memset(out, 0, sizeof(*out));
	if ((rc = kms_keyset_open(c, blob, n, KMS_OPEN_MASTER, &m)) != 0)
		goto out;
	opened = 1;
	keylen = kms_alg_keylen(m.alg);
	if ((rc = sei_master_div(se_id, keylen, d)) != 0)
		goto out;
	out->alg = m.alg;
	for (made = 0; made < m.n; made++) {
		if ((rc = kms_diversify(c, KMS_HANDLE(m.handle[made]), d, keylen,
		    m.usage[made], &out->handle[made])) != 0)
			goto out;
		out->usage[made] = m.usage[made];
	}
	out->n = m.n;
	rc = 0;
out:
	wipe(d, sizeof(d));
	if (rc != 0)
		for (i = 0; i < made; i++)
			(void)!kms_handle_close(c, out->handle[i]);
	if (opened)
		for (i = 0; i < m.n; i++)
			(void)!kms_handle_close(c, m.handle[i]);
	if (rc != 0)
		memset(out, 0, sizeof(*out));
	return rc;
}
