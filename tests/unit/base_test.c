/* base_test.c - buffers, readers, hex, constant-time compare, atomic files,
 * the audit writer's group commit and failure handling. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/sha.h>

#include "kms/audit.h"
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
	/* A freed page is kept for reuse: it must come back wiped. */
	if (p != NULL)
		memset(p, 0xA5, 100);
	secmem_free(p, 100);
	{
		uint8_t *q = secmem_alloc(32), zero[4096] = { 0 };
		long pg = sysconf(_SC_PAGESIZE);

		ok(q != NULL && pg > 0 && pg <= 4096 &&
		    memcmp(q, zero, (size_t)pg) == 0,
		    "secmem_alloc after a free: the whole page zeroed");
		secmem_free(q, 32);
	}
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

/* A stand-in for the token's HMAC: SHA-256 of the line, or a failure. */
static int mac_fail;

static int
fake_mac(void *ctx, const uint8_t *d, size_t n, uint8_t mac[32])
{
	(void)ctx;
	if (mac_fail)
		return ERR_P11;
	SHA256(d, n, mac);
	return 0;
}

static int
fake_verify(void *ctx, const uint8_t *d, size_t n, const uint8_t mac[32])
{
	uint8_t m[32];

	(void)ctx;
	SHA256(d, n, m);
	return ct_equal(m, mac, 32) ? 0 : ERR_AUTH;
}

static int
rec(struct audit *a, const char *op, int durable)
{
	struct audit_rec r = { .role = "tsm", .op = op, .result = "ok",
	    .detail = "a detail long enough to span several short writes, so "
	    "that a small file size limit cuts a line in the middle" };

	return audit_log(a, &r, durable);
}

static void
test_audit(void)
{
	char dir[] = "/tmp/base_auditXXXXXX", path[256];
	struct audit_report rep;
	struct audit *a;
	struct rlimit old, lim;
	struct stat st;

	if (mkdtemp(dir) == NULL)
		bail("mkdtemp");
	snprintf(path, sizeof(path), "%s/audit.log", dir);
	if (audit_open(&a, path) != 0)
		bail("audit_open");
	audit_set_deferred(a, 1);

	/* Sealed: no MAC yet, records wait in memory, nothing to sync. */
	ok(rec(a, "sealed.op", 1) == 0 && !audit_sync_pending(a),
	    "without a MAC key a durable record needs no sync yet");
	audit_set_mac(a, fake_mac, NULL);
	/* Regression: kmsd holds a durable reply only when this says so, and
	 * in deferred mode the record is still queued when it asks. */
	ok(audit_sync_pending(a), "queued durable record reported as needing a "
	    "sync before the flush");
	ok(audit_flush_pending(a) == 0 && audit_seq(a) == 1 &&
	    audit_sync_pending(a), "flushed; sync still pending");
	ok(audit_sync(a) == 0 && !audit_sync_pending(a), "synced");
	ok(rec(a, "plain", 0) == 0 && !audit_sync_pending(a),
	    "a non-durable record asks for no sync");

	/* A failing MAC writes nothing and loses nothing. */
	mac_fail = 1;
	ok(audit_flush_pending(a) != 0 && audit_seq(a) == 1,
	    "MAC failure: flush fails, nothing written");
	mac_fail = 0;
	ok(audit_flush_pending(a) == 0 && audit_seq(a) == 2,
	    "the kept record is written by the next flush");

	/* A write cut short (file size limit) leaves no torn line. */
	if (stat(path, &st) != 0 || getrlimit(RLIMIT_FSIZE, &old) != 0)
		bail("stat/getrlimit");
	signal(SIGXFSZ, SIG_IGN);
	lim = old;
	lim.rlim_cur = (rlim_t)st.st_size + 100;
	if (setrlimit(RLIMIT_FSIZE, &lim) != 0)
		bail("setrlimit");
	ok(rec(a, "big", 1) == 0 && audit_flush_pending(a) != 0 &&
	    audit_seq(a) == 2, "short write fails");
	if (setrlimit(RLIMIT_FSIZE, &old) != 0)
		bail("setrlimit");
	ok(stat(path, &st) == 0 && audit_verify_file(path, fake_verify, NULL,
	    &rep) == 0 && rep.lines == 2, "the partial line was cut off again");
	ok(audit_flush_pending(a) == 0 && audit_seq(a) == 3,
	    "the record goes out once the disk takes it");
	audit_close(a);
	ok(audit_verify_file(path, fake_verify, NULL, &rep) == 0 &&
	    rep.lines == 3, "chain and MACs verify");
	ok(audit_open(&a, path) == 0 && audit_seq(a) == 3, "reopens at seq 3");
	audit_close(a);
	unlink(path);
	rmdir(dir);
}

int
main(void)
{
	test_reader();
	test_hex();
	test_misc();
	test_audit();
	return done_testing();
}
