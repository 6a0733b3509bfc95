/*
 * proto.h - frame header codec and key-reference decoding shared by kmsd
 * and the client library (kms/PROTOCOL.md). Internal to kms/.
 */
#ifndef SPTSM_PROTO_H
#define SPTSM_PROTO_H

#include "kms/kms.h"

struct kms_hdr {
	uint32_t len;		/* body bytes, <= KMS_MAX_FRAME */
	uint16_t type;		/* enum kms_op */
	uint16_t flags;		/* KMS_FLAG_REPLY */
	uint32_t id;		/* request id, echoed in the reply */
	int32_t  status;	/* replies: 0 or a negative project error */
};

void kms_hdr_encode(const struct kms_hdr *h, uint8_t out[KMS_HDR_LEN]);
/* ERR_TOOBIG when len > KMS_MAX_FRAME (checked before any allocation). */
int  kms_hdr_decode(const uint8_t in[KMS_HDR_LEN], struct kms_hdr *h) WUR;

/* A decoded key reference; label points into the frame. */
struct kms_wref {
	int      kind;		/* KMS_REF_LABEL / KMS_REF_HANDLE */
	char     label[128];
	uint32_t version;
	uint32_t handle;
};
int  kms_get_ref(struct rd *r, struct kms_wref *out) WUR;

#endif
