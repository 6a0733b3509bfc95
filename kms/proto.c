/*
 * proto.c - names of the protocol's enums, the frame header codec and key
 * references. Shared by kmsd and its clients; the decoders trust nothing.
 */
#include <string.h>

#include "kms/proto.h"

const char *
kms_op_name(int op)
{
	switch (op) {
	case KMS_OP_HELLO: return "hello";
	case KMS_OP_PING: return "ping";
	case KMS_OP_RANDOM: return "random";
	case KMS_OP_KEY_INFO: return "key.info";
	case KMS_OP_KCV: return "kcv";
	case KMS_OP_KEYSET_GENERATE: return "keyset.generate";
	case KMS_OP_KEYSET_IMPORT: return "keyset.import";
	case KMS_OP_KEYSET_OPEN: return "keyset.open";
	case KMS_OP_KEYSET_RECEIVE: return "keyset.receive";
	case KMS_OP_HANDLE_CLOSE: return "handle.close";
	case KMS_OP_SCP03_DERIVE: return "scp03.derive";
	case KMS_OP_SCP03_KDF: return "scp03.kdf";
	case KMS_OP_SCP03_OPEN: return "scp03.open";
	case KMS_OP_CMAC: return "cmac";
	case KMS_OP_ENCRYPT: return "encrypt";
	case KMS_OP_DECRYPT: return "decrypt";
	case KMS_OP_WRAP: return "wrap";
	case KMS_OP_DIVERSIFY: return "diversify";
	case KMS_OP_SIGN: return "sign";
	case KMS_OP_HMAC: return "hmac";
	case KMS_OP_HMAC_VERIFY: return "hmac.verify";
	case KMS_OP_STATUS: return "status";
	case KMS_OP_UNSEAL: return "unseal";
	case KMS_OP_KEY_LIST: return "key.list";
	case KMS_OP_KEY_STATE: return "key.state";
	case KMS_OP_RELOAD: return "reload";
	}
	return "unknown";
}

static const char *const alg_names[] = { NULL, "AES-128", "AES-192",
	"AES-256", "DES3", "HMAC-SHA256", "EC-P256", "EC-P384", "RSA" };

const char *
kms_alg_name(int alg)
{
	if (alg > 0 && (size_t)alg < ARRAY_LEN(alg_names))
		return alg_names[alg];
	return "unknown";
}

int
kms_alg_parse(const char *s)
{
	size_t i;

	for (i = 1; i < ARRAY_LEN(alg_names); i++)
		if (strcasecmp(s, alg_names[i]) == 0)
			return (int)i;
	return 0;
}

size_t
kms_alg_keylen(int alg)
{
	switch (alg) {
	case KMS_ALG_AES128: return 16;
	case KMS_ALG_AES192: return 24;
	case KMS_ALG_AES256: return 32;
	case KMS_ALG_DES3: return 24;
	}
	return 0;
}

static const char *const state_names[] = { NULL, "PRE_ACTIVE", "ACTIVE",
	"SUSPENDED", "DEACTIVATED", "COMPROMISED", "DESTROYED",
	"PENDING_DESTRUCTION" };

const char *
kms_state_name(int st)
{
	if (st > 0 && (size_t)st < ARRAY_LEN(state_names))
		return state_names[st];
	return "UNKNOWN";
}

int
kms_state_parse(const char *s)
{
	size_t i;

	for (i = 1; i < ARRAY_LEN(state_names); i++)
		if (strcasecmp(s, state_names[i]) == 0)
			return (int)i;
	return 0;
}

const char *
kms_usage_name(int u)
{
	switch (u) {
	case KMS_USE_ENC: return "enc";
	case KMS_USE_MAC: return "mac";
	case KMS_USE_DEK: return "dek";
	}
	return "unknown";
}

static const char *const wrap_names[] = { NULL, "AES-KW", "AES-KWP",
	"AES-CBC0", "RSA-OAEP-SHA1", "RSA-OAEP-SHA256" };

const char *
kms_wrap_name(int m)
{
	if (m > 0 && (size_t)m < ARRAY_LEN(wrap_names))
		return wrap_names[m];
	return "unknown";
}

int
kms_wrap_parse(const char *s)
{
	size_t i;

	for (i = 1; i < ARRAY_LEN(wrap_names); i++)
		if (strcasecmp(s, wrap_names[i]) == 0)
			return (int)i;
	return 0;
}

void
kms_hdr_encode(const struct kms_hdr *h, uint8_t o[KMS_HDR_LEN])
{
	o[0] = (uint8_t)(h->len >> 24);
	o[1] = (uint8_t)(h->len >> 16);
	o[2] = (uint8_t)(h->len >> 8);
	o[3] = (uint8_t)h->len;
	o[4] = (uint8_t)(h->type >> 8);
	o[5] = (uint8_t)h->type;
	o[6] = (uint8_t)(h->flags >> 8);
	o[7] = (uint8_t)h->flags;
	o[8] = (uint8_t)(h->id >> 24);
	o[9] = (uint8_t)(h->id >> 16);
	o[10] = (uint8_t)(h->id >> 8);
	o[11] = (uint8_t)h->id;
	o[12] = (uint8_t)((uint32_t)h->status >> 24);
	o[13] = (uint8_t)((uint32_t)h->status >> 16);
	o[14] = (uint8_t)((uint32_t)h->status >> 8);
	o[15] = (uint8_t)(uint32_t)h->status;
}

int
kms_hdr_decode(const uint8_t i[KMS_HDR_LEN], struct kms_hdr *h)
{
	h->len = ((uint32_t)i[0] << 24) | ((uint32_t)i[1] << 16) |
	    ((uint32_t)i[2] << 8) | i[3];
	h->type = (uint16_t)((i[4] << 8) | i[5]);
	h->flags = (uint16_t)((i[6] << 8) | i[7]);
	h->id = ((uint32_t)i[8] << 24) | ((uint32_t)i[9] << 16) |
	    ((uint32_t)i[10] << 8) | i[11];
	h->status = (int32_t)(((uint32_t)i[12] << 24) | ((uint32_t)i[13] << 16) |
	    ((uint32_t)i[14] << 8) | i[15]);
	if (h->len > KMS_MAX_FRAME)
		return ERR_TOOBIG;
	return 0;
}

int
kms_put_ref(struct buf *b, struct kms_ref r)
{
	int rc;

	if (r.label != NULL) {
		if ((rc = buf_put_u8(b, KMS_REF_LABEL)) != 0 ||
		    (rc = buf_put_str(b, r.label)) != 0)
			return rc;
		return buf_put_u32(b, r.version);
	}
	if ((rc = buf_put_u8(b, KMS_REF_HANDLE)) != 0)
		return rc;
	return buf_put_u32(b, r.handle);
}

int
kms_get_ref(struct rd *r, struct kms_wref *out)
{
	uint8_t kind;
	int rc;

	memset(out, 0, sizeof(*out));
	if ((rc = rd_u8(r, &kind)) != 0)
		return rc;
	out->kind = kind;
	switch (kind) {
	case KMS_REF_LABEL:
		if ((rc = rd_str(r, out->label, sizeof(out->label))) != 0)
			return rc;
		if (out->label[0] == '\0')
			return ERR_INVAL;
		return rd_u32(r, &out->version);
	case KMS_REF_HANDLE:
		if ((rc = rd_u32(r, &out->handle)) != 0)
			return rc;
		return out->handle == 0 ? ERR_INVAL : 0;
	}
	return ERR_PROTO;
}

int
kms_share_for_token(const char *share_serial, const char *token_serial)
{
	return strcmp(share_serial, KMS_SHARE_SERIAL_PENDING) == 0 ||
	    strcmp(share_serial, token_serial) == 0;
}
