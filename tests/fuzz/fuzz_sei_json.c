/*
 * fuzz_sei_json.c - libFuzzer target for the validation of the SEI-TSM
 * request bodies (tsm/sei/validate.c): §9.4 key sync under each wrapping
 * and KCV method, and §9.5 SD state sync, as jansson parses them from the
 * network. The first byte picks the parser and the peer's parameters;
 * invariants of an accepted body are checked, and its receipt input built.
 */
#include <stdlib.h>
#include <string.h>

#include "tsm/sei/sei.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int
upper_hex(const char *s, size_t min, size_t max)
{
	size_t i, n = strlen(s);

	if (n % 2 != 0 || n < 2 * min || n > 2 * max)
		return 0;
	for (i = 0; i < n; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'A' && s[i] <= 'F')))
			return 0;
	return 1;
}

static void
check_keysync(const json_t *j, uint8_t sel)
{
	static const int wraps[] = { KMS_WRAP_AES_KW, KMS_WRAP_AES_KWP,
		KMS_WRAP_RSA_OAEP_SHA1, KMS_WRAP_RSA_OAEP_SHA256 };
	struct sei_keysync ks;
	char msg[SEI_MSG_MAX];
	int wrap = wraps[(sel >> 1) % 4];
	int method = (sel >> 3) & 1 ? KMS_KCV_CMAC : KMS_KCV_GP;
	struct buf b;
	size_t i;
	int rc;

	rc = sei_keysync_parse(j, wrap, method, &ks, msg, sizeof(msg));
	if (strnlen(msg, sizeof(msg)) == sizeof(msg))
		abort();
	if (rc != SEI_OK) {
		if ((rc != SEI_MISSING_FIELD && rc != SEI_BAD_FORMAT &&
		    rc != SEI_UNWRAP_FAILED) || msg[0] == '\0')
			abort();
		return;
	}
	if (ks.n != SEI_KEYS || ks.kcvlen != (method == KMS_KCV_CMAC ? 5u : 3u) ||
	    ks.kvn < 1 || ks.kvn > 0x7f || strcmp(ks.usage, "SCP03") != 0 ||
	    kms_alg_keylen(ks.alg) == 0 || ks.sei_tsm_id[0] == '\0' ||
	    !upper_hex(ks.sd_aid, SEI_AID_MIN, SEI_AID_MAX) ||
	    (ks.se_id[0] != '\0' && !upper_hex(ks.se_id, SEI_SEID_MIN,
	    SEI_SEID_MAX)) || (ks.se_id[0] == '\0' && ks.alg == KMS_ALG_AES192))
		abort();
	for (i = 0; i < ks.n; i++)
		if (ks.wlen[i] == 0 || ks.wlen[i] > SEI_WRAPPED_MAX ||
		    (wrap == KMS_WRAP_AES_KW &&
		    ks.wlen[i] != kms_alg_keylen(ks.alg) + 8))
			abort();
	buf_init(&b);
	if (sei_receipt_input(&b, ks.sei_tsm_id, ks.sd_aid, ks.se_id, ks.kvn,
	    (const uint8_t (*)[5])ks.kcv, ks.n, ks.kcvlen) != 0)
		abort();
	buf_free(&b);
}

static void
check_sdstatus(const json_t *j)
{
	struct sei_sdstatus st;
	char msg[SEI_MSG_MAX];
	size_t i;
	int rc;

	rc = sei_sdstatus_parse(j, &st, msg, sizeof(msg));
	if (rc != SEI_OK) {
		if ((rc != SEI_MISSING_FIELD && rc != SEI_BAD_FORMAT) ||
		    msg[0] == '\0')
			abort();
		return;
	}
	if (!upper_hex(st.sd_aid, SEI_AID_MIN, SEI_AID_MAX) ||
	    !upper_hex(st.se_id, SEI_SEID_MIN, SEI_SEID_MAX) ||
	    st.status[0] < 'A' || st.status[0] > 'Z')
		abort();
	for (i = 0; st.status[i]; i++)
		if (!((st.status[i] >= 'A' && st.status[i] <= 'Z') ||
		    (st.status[i] >= '0' && st.status[i] <= '9') ||
		    st.status[i] == '_'))
			abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	json_t *j;

	if (size < 1 || size > 65536)
		return 0;
	/* As tsmd reads bodies: duplicates refused. */
	j = json_loadb((const char *)data + 1, size - 1, JSON_REJECT_DUPLICATES,
	    NULL);
	if (data[0] & 1)
		check_sdstatus(j);
	else
		check_keysync(j, data[0]);
	json_decref(j);
	return 0;
}
