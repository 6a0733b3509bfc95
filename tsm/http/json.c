/*
 * json.c - the JSON pre-checker: one linear pass over a request body that
 * bounds its size and nesting before jansson (which recurses) parses it.
 * Pure; runs on the worker threads; the input is anything a client sends
 * (fuzzed by tests/fuzz/fuzz_http_json.c).
 */
#include "tsm/http/http_int.h"

int
http_json_precheck(const uint8_t *p, size_t n, size_t max_len,
    unsigned max_depth, size_t *where)
{
	/* One bit per open bracket: 1 for '{', 0 for '['. */
	uint64_t stack[(HTTP_JSON_DEPTH_MAX + 63) / 64] = { 0 };
	unsigned depth = 0;
	int in_str = 0, esc = 0;
	size_t i;

	*where = 0;
	if (max_depth > HTTP_JSON_DEPTH_MAX)
		max_depth = HTTP_JSON_DEPTH_MAX;
	if (n > max_len) {
		*where = max_len;
		return ERR_TOOBIG;
	}
	for (i = 0; i < n; i++) {
		uint8_t c = p[i];

		*where = i;
		if (c == 0)
			return ERR_PARSE;
		if (in_str) {
			if (esc)
				esc = 0;
			else if (c == '\\')
				esc = 1;
			else if (c == '"')
				in_str = 0;
			continue;
		}
		switch (c) {
		case '"':
			in_str = 1;
			break;
		case '{':
		case '[':
			if (depth >= max_depth)
				return ERR_LIMIT;
			if (c == '{')
				stack[depth / 64] |= 1ull << (depth % 64);
			else
				stack[depth / 64] &= ~(1ull << (depth % 64));
			depth++;
			break;
		case '}':
		case ']':
			if (depth == 0)
				return ERR_PARSE;
			depth--;
			if (((stack[depth / 64] >> (depth % 64)) & 1) != (c == '}'))
				return ERR_PARSE;
			break;
		default:
			break;
		}
	}
	*where = n;
	if (in_str || depth != 0)
		return ERR_PARSE;
	return 0;
}
