/*
 * result.c - the resultCode table of tsmd's SEI-facing routes (README.md):
 * names, HTTP statuses, the mapping of the framework's refusals and of
 * kmsd/store errors to codes, and the JSON error body. Pure; runs in
 * tsmd's workers.
 */
#include <string.h>

#include "tsm/sei/sei.h"

static const struct {
	int         code;
	int         status;
	const char *name;
} results[] = {
	{ SEI_OK, 200, "success" },
	{ SEI_MISSING_FIELD, 400, "missing field" },
	{ SEI_BAD_FORMAT, 400, "bad format" },
	{ SEI_UNKNOWN_PEER, 403, "unknown peer" },
	{ SEI_AUTH_FAILED, 403, "authentication failed" },
	{ SEI_REPLAY, 401, "replay" },
	{ SEI_KCV_MISMATCH, 422, "KCV mismatch" },
	{ SEI_UNWRAP_FAILED, 422, "unwrap failed" },
	{ SEI_STATE_CONFLICT, 409, "SSD state conflict" },
	{ SEI_TOO_LARGE, 413, "body too large" },
	{ SEI_UNAVAILABLE, 503, "unavailable" },
	{ SEI_INTERNAL, 500, "internal error" },
};

const char *
sei_result_name(int code)
{
	size_t i;

	for (i = 0; i < ARRAY_LEN(results); i++)
		if (results[i].code == code)
			return results[i].name;
	return "unknown";
}

int
sei_result_status(int code)
{
	size_t i;

	for (i = 0; i < ARRAY_LEN(results); i++)
		if (results[i].code == code)
			return results[i].status;
	return 500;
}

/* The machine codes tsm/http answers with (server.c, README.md). */
static const struct {
	const char *code;
	int         result;
} framework[] = {
	{ "signature_missing", SEI_AUTH_FAILED },
	{ "signature_invalid", SEI_AUTH_FAILED },
	{ "client_cert_required", SEI_AUTH_FAILED },
	{ "client_cert_rejected", SEI_AUTH_FAILED },
	{ "client_cert_unavailable", SEI_AUTH_FAILED },
	{ "unauthorized", SEI_AUTH_FAILED },
	{ "forbidden", SEI_AUTH_FAILED },
	{ "unknown_key_id", SEI_UNKNOWN_PEER },
	{ "signature_expired", SEI_REPLAY },
	{ "replay", SEI_REPLAY },
	{ "payload_too_large", SEI_TOO_LARGE },
	{ "invalid_json", SEI_BAD_FORMAT },
	{ "json_too_deep", SEI_BAD_FORMAT },
	{ "bad_request", SEI_BAD_FORMAT },
	{ "conflict", SEI_STATE_CONFLICT },
	{ "kms_unavailable", SEI_UNAVAILABLE },
	{ "busy", SEI_UNAVAILABLE },
	{ "unavailable", SEI_UNAVAILABLE },
	{ "request_timeout", SEI_UNAVAILABLE },
	{ "timeout", SEI_UNAVAILABLE },
};

int
sei_result_from_http(int status, const char *code)
{
	size_t i;

	for (i = 0; code != NULL && i < ARRAY_LEN(framework); i++)
		if (strcmp(code, framework[i].code) == 0)
			return framework[i].result;
	switch (status) {
	case 400: return SEI_BAD_FORMAT;
	case 401: case 403: return SEI_AUTH_FAILED;
	case 409: return SEI_STATE_CONFLICT;
	case 413: return SEI_TOO_LARGE;
	case 408: case 503: case 504: return SEI_UNAVAILABLE;
	}
	return SEI_INTERNAL;
}

int
sei_result_from_err(int err)
{
	switch (err) {
	case 0:
		return SEI_OK;
	case ERR_KCV:
		return SEI_KCV_MISMATCH;
	case ERR_UNWRAP:
	case ERR_INVAL:		/* keyset.import: key length is not Alg's */
		return SEI_UNWRAP_FAILED;
	case ERR_P11_MECH:
	case ERR_NOTSUP:
		return SEI_BAD_FORMAT;	/* the token cannot do this Alg */
	case ERR_EXISTS:
	case ERR_WRONGSTATE:
		return SEI_STATE_CONFLICT;
	case ERR_SEALED:
	case ERR_IO:
	case ERR_CLOSED:
	case ERR_BUSY:
	case ERR_TIMEOUT:
	case ERR_LIMIT:
		return SEI_UNAVAILABLE;
	}
	return SEI_INTERNAL;
}

json_t *
sei_error_json(int status, const char *code, const char *msg)
{
	return json_pack("{s:i, s:s}", "resultCode", sei_result_from_http(status,
	    code), "resultMessage", msg != NULL ? msg : "");
}
