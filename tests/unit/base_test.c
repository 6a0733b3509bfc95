/* base_test.c - buffers, readers, hex, constant-time compare, atomic files. */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kms/base.h"
#include "tests/tap.h"

static void
test_reader(void)
{
	struct buf b;
	struct rd r;
	uint8_t u8;
	uint16_t u16;
	uint32_t u32;
	uint64_t u64;
	const uint8_t *p;
	size_t n;
	char s[8];

	buf_init(&b);
	if (buf_put_u8(&b, 0xab) || buf_put_u16(&b, 0x1234) ||
	    buf_put_u32(&b, 0xdeadbeef) || buf_put_u64(&b, 0x0102030405060708ull) ||
	    buf_put_lv32(&b, "xyz", 3) || buf_put_str(&b, "abc"))
		bail("buf_put");
	is_hex(b.p, 7, "ab1234deadbeef", "big-endian encoding");
	rd_init(&r, b.p, b.len);
	ok(rd_u8(&r, &u8) == 0 && u8 == 0xab, "rd_u8");
	ok(rd_u16(&r, &u16) == 0 && u16 == 0x1234, "rd_u16");
	ok(rd_u32(&r, &u32) == 0 && u32 == 0xdeadbeef, "rd_u32");
	ok(rd_u64(&r, &u64) == 0 && u64 == 0x0102030405060708ull, "rd_u64");
	ok(rd_lv32(&r, 2, &p, &n) == ERR_TOOBIG, "lv32 over max refused");
	ok(rd_lv32(&r, 16, &p, &n) == 0 && n == 3 && memcmp(p, "xyz", 3) == 0,
	    "lv32 read after refusal (offset restored)");
	ok(rd_str(&r, s, 3) == ERR_TOOBIG, "string over cap refused");
	ok(rd_str(&r, s, sizeof(s)) == 0 && strcmp(s, "abc") == 0, "rd_str");
	ok(rd_end(&r) == 0, "all consumed");
	ok(rd_u8(&r, &u8) == ERR_TRUNC, "read past end is ERR_TRUNC");

	rd_init(&r, b.p, b.len - 1);
	r.off = b.len - 6;
	ok(rd_str(&r, s, sizeof(s)) == ERR_TRUNC, "truncated lv16 refused");
	rd_init(&r, b.p, 2);
	ok(rd_u8(&r, &u8) == 0 && rd_end(&r) == ERR_TRAILING, "trailing detected");
	buf_free(&b);

	uint8_t nul[] = { 0, 3, 'a', 0, 'b' };
	rd_init(&r, nul, sizeof(nul));
	ok(rd_str(&r, s, sizeof(s)) == ERR_INVAL, "embedded NUL refused");
}

static void
test_hex(void)
{
	uint8_t out[8];
	char h[17];
	size_t n;

	ok(hex_decode("00fFa1", 6, out, sizeof(out), &n) == 0 && n == 3 &&
	    out[1] == 0xff && out[2] == 0xa1, "hex both cases");
	ok(hex_decode("abc", 3, out, sizeof(out), &n) == ERR_PARSE, "odd length refused");
	ok(hex_decode("zz", 2, out, sizeof(out), &n) == ERR_PARSE, "non-hex refused");
	ok(hex_decode("001122334455667788", 18, out, sizeof(out), &n) == ERR_TOOBIG,
	    "over capacity refused");
	hex_encode((const uint8_t *)"\x01\xab", 2, h);
	ok(strcmp(h, "01ab") == 0, "hex encode lowercase");
	hex_encode_upper((const uint8_t *)"\x01\xab", 2, h);
	ok(strcmp(h, "01AB") == 0, "hex encode uppercase");
}

static void
test_misc(void)
{
	char tmpl[] = "/tmp/base_testXXXXXX", path[256];
	struct buf b;
	struct stat st;
	void *p;

	ok(ct_equal("abcd", "abcd", 4) && !ct_equal("abcd", "abce", 4), "ct_equal");
	p = secmem_alloc(100);
	ok(p != NULL && ((uint8_t *)p)[99] == 0, "secmem_alloc zeroed");
	secmem_free(p, 100);
	ok(strcmp(err_name(ERR_KCV), "ERR_KCV") == 0 &&
	    strcmp(err_str(ERR_KCV), "key check value mismatch") == 0, "error table");
	if (mkdtemp(tmpl) == NULL)
		bail("mkdtemp");
	snprintf(path, sizeof(path), "%s/a/b/c", tmpl);
	ok(mkdir_p(path, 0700) == 0 && stat(path, &st) == 0, "mkdir_p");
	snprintf(path, sizeof(path), "%s/f", tmpl);
	ok(file_write_atomic(path, "hello", 5, 0400) == 0, "atomic write");
	ok(stat(path, &st) == 0 && (st.st_mode & 0777) == 0400, "mode kept");
	buf_init(&b);
	ok(file_read_all(path, 5, &b) == 0 && b.len == 5, "read back");
	ok(file_read_all(path, 4, &b) == ERR_TOOBIG, "read over max refused");
	buf_free(&b);
	unlink(path);
	(void)!system("rm -rf /tmp/base_test??????");
}

int
main(void)
{
	test_reader();
	test_hex();
	test_misc();
	return done_testing();
}
