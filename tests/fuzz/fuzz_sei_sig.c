/*
 * fuzz_sei_sig.c - libFuzzer target for the X-TSM-Signature header parser
 * (tsm/http/sig.c http_sig_parse), the first thing tsmd reads from an
 * SEI-TSM: an accepted header must have sane fields, format back to a
 * header that parses to the same fields, and give a signed string.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tsm/http/http.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct http_sig s, s2;
	char *hdr, again[400], sx[65];
	struct buf in;
	size_t i;

	if ((hdr = malloc(size + 1)) == NULL)
		abort();
	memcpy(hdr, data, size);
	hdr[size] = '\0';	/* MHD hands headers over NUL-terminated */
	if (http_sig_parse(hdr, &s) != 0) {
		free(hdr);
		return 0;
	}
	if (s.key_id[0] == '\0' || strlen(s.key_id) > 64 || s.ts < 0 ||
	    strlen(s.nonce) != 32)
		abort();
	for (i = 0; i < 32; i++)
		if (!((s.nonce[i] >= '0' && s.nonce[i] <= '9') ||
		    (s.nonce[i] >= 'a' && s.nonce[i] <= 'f')))
			abort();
	hex_encode(s.sig, 32, sx);
	snprintf(again, sizeof(again), "keyId=%s,ts=%lld,nonce=%s,sig=%s",
	    s.key_id, (long long)s.ts, s.nonce, sx);
	if (http_sig_parse(again, &s2) != 0 || strcmp(s.key_id, s2.key_id) != 0 ||
	    s.ts != s2.ts || strcmp(s.nonce, s2.nonce) != 0 ||
	    memcmp(s.sig, s2.sig, sizeof(s.sig)) != 0)
		abort();
	buf_init(&in);
	if (http_sig_input(&in, "POST", "/api/v1/sei/key-sync", s.ts, s.nonce,
	    data, size) != 0 || in.len < 64)
		abort();
	buf_free(&in);
	free(hdr);
	return 0;
}
