/*
 * gp_cmd_test.c - command builders (SELECT, GET STATUS, GET DATA, SET
 * STATUS, DELETE, INSTALL, LOAD, STORE DATA), response parsers (IU, GET
 * STATUS TLV and legacy, CPLC, key information, card data, counters, free
 * resources), privileges and life cycles, Delegated Management token data
 * (KAOH vectors) and receipts, each with its bad inputs.
 */
#include <stdlib.h>
#include <string.h>

#include "kms/base.h"
#include "tsm/gp/gp.h"
#include "tests/tap.h"

static void
hexb(const char *h, struct buf *b)
{
	if (hex_decode_buf(h, b) != 0)
		bail("bad hex in test data: %s", h);
}

static int
msg_has(const struct gp_err *e, const char *needle)
{
	return strstr(e->msg, needle) != NULL;
}

#define BYTES(b) ((struct gp_bytes){ (b).p, (b).len })

static void
test_simple_builders(void)
{
	struct buf o, aid;
	struct gp_err e;

	buf_init(&o);
	buf_init(&aid);
	hexb("A000000151000000", &aid);
	ok(gp_select_build(aid.p, aid.len, &o, &e) == 0, "SELECT built");
	is_hex(o.p, o.len, "00A4040008A00000015100000000", "SELECT by AID");
	ok(gp_select_build(NULL, 0, &o, &e) == 0, "SELECT default built");
	is_hex(o.p, o.len, "00A4040000", "SELECT without AID");
	ok(gp_select_build(aid.p, 17, &o, &e) == ERR_INVAL,
	    "SELECT with a 17-byte AID refused: %s", e.msg);

	ok(gp_get_status_build(GP_GS_ISD, 0, NULL, 0, NULL, 0, &o, &e) == 0,
	    "GET STATUS ISD built");
	is_hex(o.p, o.len, "80F28002024F0000", "GET STATUS ISD TLV = pySim plain");
	ok(gp_get_status_build(GP_GS_ELFS, 0, (const uint8_t *)"\x12\x34", 2,
	    (const uint8_t *)"\x4F\x9F\x70\xC5", 4, &o, &e) == 0,
	    "GET STATUS with search AID and tag list");
	is_hex(o.p, o.len, "80F220020A4F0212345C044F9F70C500",
	    "GET STATUS P1 20 4F 1234 5C tags");
	ok(gp_get_status_build(GP_GS_APPS, GP_GS_LEGACY, NULL, 0, NULL, 0, &o,
	    &e) == 0, "legacy GET STATUS");
	is_hex(o.p, o.len, "80F24000024F0000", "GET STATUS legacy P2 00");
	ok(gp_get_status_build(GP_GS_APPS, GP_GS_NEXT, NULL, 0, NULL, 0, &o,
	    &e) == 0, "GET STATUS next");
	is_hex(o.p, o.len, "80F24003024F0000", "GET STATUS next: P2 03");
	ok(gp_get_status_build(0x30, 0, NULL, 0, NULL, 0, &o, &e) == ERR_INVAL &&
	    msg_has(&e, "P1 30"), "GET STATUS P1 30 refused: %s", e.msg);
	ok(gp_get_status_build(GP_GS_APPS, GP_GS_LEGACY, NULL, 0,
	    (const uint8_t *)"\x4F", 1, &o, &e) == ERR_INVAL,
	    "tag list in legacy format refused: %s", e.msg);

	ok(gp_get_data_build(0x80, GP_TAG_CPLC, &o, &e) == 0, "GET DATA CPLC");
	is_hex(o.p, o.len, "80CA9F7F00", "GET DATA 9F7F");
	ok(gp_get_data_build(0x80, GP_TAG_CARD_DATA, &o, &e) == 0 &&
	    o.len == 5 && o.p[2] == 0x00 && o.p[3] == 0x66,
	    "GET DATA 0066 (= pySim plain 80ca006600)");
	ok(gp_get_data_build(0x00, GP_TAG_FREE_RES, &o, &e) == 0, "GET DATA FF21");
	is_hex(o.p, o.len, "00CAFF2100", "GET DATA FF21 with CLA 00");
	ok(gp_get_data_build(0x84, GP_TAG_KEY_INFO, &o, &e) == ERR_INVAL,
	    "GET DATA with CLA 84 refused");

	hexb("A0000001515350", &aid);
	ok(gp_set_status_build(GP_SS_APP, 0x80, aid.p, aid.len, &o, &e) == 0,
	    "SET STATUS lock");
	is_hex(o.p, o.len, "80F0408007A0000001515350", "SET STATUS lock app");
	ok(gp_set_status_build(GP_SS_SD_APPS, 0x00, aid.p, aid.len, &o, &e) == 0,
	    "SET STATUS SD+apps unlock");
	is_hex(o.p, o.len, "80F0600007A0000001515350", "SET STATUS P1 60 P2 00");
	ok(gp_set_status_build(GP_SS_APP, 0x0F, aid.p, aid.len, &o, &e) == 0 &&
	    o.p[3] == 0x0F, "SET STATUS SD PERSONALIZED P2 0F");
	ok(gp_set_status_build(GP_SS_ISD, 0x7F, NULL, 0, &o, &e) == 0,
	    "SET STATUS card locked");
	is_hex(o.p, o.len, "80F0807F", "SET STATUS ISD without AID");
	ok(gp_set_status_build(GP_SS_APP, 0x80, NULL, 0, &o, &e) == ERR_INVAL &&
	    msg_has(&e, "AID of 0 bytes"), "SET STATUS app without AID: %s",
	    e.msg);
	ok(gp_set_status_build(0x20, 0x80, aid.p, aid.len, &o, &e) == ERR_INVAL,
	    "SET STATUS P1 20 refused");

	ok(gp_delete_key_build(0x01, 0x30, &o, &e) == 0, "DELETE key built");
	is_hex(o.p, o.len, "80E4000006D00101D2013000", "DELETE key D0 / D2");
	ok(gp_delete_key_build(0, 0, &o, &e) == ERR_INVAL, "DELETE key nothing");
	buf_free(&o);
	buf_free(&aid);
}

/* gpref §6 KAOH token data vectors, and token placement. */
static void
test_dm(void)
{
	struct buf o, td, a1, a2, tok;
	struct gp_bytes aids[2];
	struct gp_install in;
	struct gp_err e;

	buf_init(&o);
	buf_init(&td);
	buf_init(&a1);
	buf_init(&a2);
	buf_init(&tok);

	/* KAT-3 DELETE command through the builder */
	hexb("A00100015141434C", &a1);
	aids[0] = BYTES(a1);
	ok(gp_delete_build(aids, 1, 1, NULL, &o, &td, &e) == 0, "DELETE built");
	is_hex(o.p, o.len, "80E400800A4F08A00100015141434C00",
	    "DELETE = KAT-3 plain command (with Le 00)");

	/* KAOH delete with two AIDs */
	hexb("D0D1D2D3D4D501", &a1);
	hexb("D0D1D2D3D4D50101", &a2);
	aids[0] = BYTES(a1);
	aids[1] = BYTES(a2);
	ok(gp_delete_build(aids, 2, 1, NULL, &o, &td, &e) == 0,
	    "DELETE 2 AIDs built");
	is_hex(td.p, td.len, "0080134F07D0D1D2D3D4D5014F08D0D1D2D3D4D50101",
	    "KAOH DM token data: delete of 2 AIDs");
	if (buf_reserve(&tok, 128) != 0)
		bail("nomem");
	memset(tok.p, 0x77, 128);
	tok.len = 128;
	{
		struct gp_bytes t = BYTES(tok);
		ok(gp_delete_build(aids, 2, 1, &t, &o, &td, &e) == 0,
		    "DELETE with a token built");
	}
	is_hex(td.p, td.len, "0080134F07D0D1D2D3D4D5014F08D0D1D2D3D4D50101",
	    "token data excludes the token");
	ok(o.len == 5 + 19 + 3 + 128 + 1, "DELETE with token: 150 data bytes");
	is_hex(o.p, 5, "80E4008096", "DELETE with token: Lc 96");
	is_hex(o.p + 5 + 19, 3, "9E8180", "token as 9E 81 80");

	/* KAOH extradition */
	memset(&in, 0, sizeof(in));
	in.kind = GP_INSTALL_EXTRADITION;
	hexb("D4D4D4D4D4010101", &a1);
	hexb("D0D1D2D3D4D50101", &a2);
	in.sd_aid = BYTES(a1);
	in.app_aid = BYTES(a2);
	ok(gp_install_build(&in, &o, &td, &e) == 0, "INSTALL extradition built");
	is_hex(td.p, td.len, "10001508D4D4D4D4D4010101" "00"
	    "08D0D1D2D3D4D50101" "00" "00",
	    "KAOH DM token data: extradition");
	is_hex(o.p, o.len, "80E610001608D4D4D4D4D4010101" "00"
	    "08D0D1D2D3D4D50101" "00" "00" "00" "00",
	    "INSTALL extradition: no token = single 00, then Le");
	in.token = BYTES(tok);
	ok(gp_install_build(&in, &o, &td, &e) == 0, "with a 128-byte token");
	is_hex(o.p + 5 + 21, 2, "8180", "token LV length 81 80");
	ok(o.len == 5 + 21 + 2 + 128 + 1, "INSTALL with token length");
	is_hex(td.p, 3, "100015", "token data Lc still 15");

	/* token data over 255 bytes: Lc 00 hh ll */
	{
		uint8_t big[300];
		memset(big, 1, sizeof(big));
		ok(gp_dm_token_data(0x02, 0x00, big, sizeof(big), &td, &e) == 0 &&
		    td.len == 305, "long token data");
		is_hex(td.p, 5, "020000012C", "token data Lc 00 01 2C");
	}

	/* receipts (confirmations) */
	{
		struct gp_confirmation c;
		struct buf r;

		buf_init(&r);
		/* outer L | 10 receipt | 02 0007 | 0A unique */
		hexb("1F" "10" "00112233445566778899AABBCCDDEEFF" "020007"
		    "0A" "42000000000000000001", &r);
		ok(gp_confirmation_parse(r.p, r.len, &c, &e) == 0 && c.present &&
		    c.outer_len && c.receipt_len == 16 && c.counter == 7 &&
		    c.sd_unique_len == 10 && !c.has_token_id && !c.has_digest,
		    "confirmation with outer length");
		is_hex(c.conf_data, c.conf_data_len, "0200070A42000000000000000001",
		    "confirmation data kept from the counter on");
		ok(gp_confirmation_parse(r.p + 1, r.len - 1, &c, &e) == 0 &&
		    c.present && !c.outer_len && c.counter == 7,
		    "confirmation without outer length");
		hexb("10" "00112233445566778899AABBCCDDEEFF" "020100" "0A"
		    "42000000000000000001" "0401020304" "08A1A2A3A4A5A6A7A8", &r);
		ok(gp_confirmation_parse(r.p, r.len, &c, &e) == 0 &&
		    c.has_token_id && c.token_id_len == 4 && c.has_digest &&
		    c.digest_len == 8 && c.counter == 0x100,
		    "confirmation with token id and digest");
		ok(gp_confirmation_parse((const uint8_t *)"\x00", 1, &c, &e) == 0 &&
		    !c.present, "single 00: no receipt");
		ok(gp_confirmation_parse(NULL, 0, &c, &e) == 0 && !c.present,
		    "empty: no receipt");
		hexb("10" "00112233445566778899AABBCCDDEEFF" "03000700" "0A"
		    "42000000000000000001", &r);
		ok(gp_confirmation_parse(r.p, r.len, &c, &e) == ERR_PARSE &&
		    msg_has(&e, "with or without the outer length") &&
		    msg_has(&e, "counter of 3 bytes") && !c.present,
		    "receipt with a 3-byte counter: %s", e.msg);
		hexb("10" "0011223344", &r);
		ok(gp_confirmation_parse(r.p, r.len, &c, &e) == ERR_TRUNC &&
		    msg_has(&e, "past the end"), "receipt cut short: %s", e.msg);
		hexb("10" "00112233445566778899AABBCCDDEEFF" "020007" "0A"
		    "42000000000000000001" "01AA" "01BB" "CC", &r);
		ok(gp_confirmation_parse(r.p, r.len, &c, &e) == ERR_TRAILING,
		    "receipt with trailing bytes: %s", e.msg);
		hexb("10" "00112233445566778899AABBCCDDEEFF" "020007" "80", &r);
		ok(gp_confirmation_parse(r.p, r.len, &c, &e) == ERR_PARSE &&
		    msg_has(&e, "indefinite"), "receipt with length 80: %s", e.msg);
		buf_free(&r);
	}
	buf_free(&o);
	buf_free(&td);
	buf_free(&a1);
	buf_free(&a2);
	buf_free(&tok);
}

static void
test_install(void)
{
	struct buf o, td, elf, mod, app, priv, params, lfdb, exp;
	struct gp_install in;
	struct gp_install_params ip;
	struct gp_sd_params sd;
	struct gp_err e;
	uint8_t hash[32];
	size_t hl;

	buf_init(&o);
	buf_init(&td);
	buf_init(&elf);
	buf_init(&mod);
	buf_init(&app);
	buf_init(&priv);
	buf_init(&params);
	buf_init(&lfdb);
	buf_init(&exp);

	/* SSD parameters: the KAOH vector (gpref §5) + quotas */
	memset(&sd, 0, sizeof(sd));
	sd.scp[0].scp = 0x02;
	sd.scp[0].i = 0x15;
	sd.nscp = 1;
	sd.accept_extradition_in = (struct gp_bytes){ (const uint8_t *)"\x80", 1 };
	sd.accept_delete = (struct gp_bytes){ (const uint8_t *)"\x80", 1 };
	sd.personalized = 1;
	sd.casd_capability = (struct gp_bytes){ (const uint8_t *)"\x01\x02", 2 };
	sd.accept_extradition_out = (struct gp_bytes){ (const uint8_t *)"\x80\x00", 2 };
	memset(&ip, 0, sizeof(ip));
	ip.sd = &sd;
	ip.has_volatile_quota = ip.has_nv_quota = 1;
	ip.volatile_quota = 0x100;
	ip.nv_quota = 0x100;
	ok(gp_install_params_build(&ip, &params, &e) == 0, "SD params built");
	is_hex(params.p, params.len, "C914" "8102021582018083018084008602010287028000"
	    "EF08C7020100C8020100", "SD params = KAOH vector, quotas in EF");
	ip.nv_quota = 0x12345;
	ip.has_volatile_quota = 0;
	sd.nscp = 2;
	sd.scp[1].scp = 0x03;
	sd.scp[1].i = 0x70;
	ok(gp_install_params_build(&ip, &o, &e) == 0, "SD params with 2 SCPs");
	is_hex(o.p, o.len, "C918" "81020215" "81020370" "82018083018084008602010287028000"
	    "EF06C80400012345", "scpConfig repeated, 4-byte quota");
	sd.nscp = 0;
	{
		struct gp_install_params ap;
		uint8_t big[200];

		memset(&ap, 0, sizeof(ap));
		memset(big, 0xAB, sizeof(big));
		ap.app_specific = (struct gp_bytes){ big, sizeof(big) };
		ok(gp_install_params_build(&ap, &o, &e) == 0 && o.len == 203,
		    "app params of 200 bytes");
		is_hex(o.p, 3, "C981C8", "C9 81 C8");
		memset(&ap, 0, sizeof(ap));
		ok(gp_install_params_build(&ap, &o, &e) == 0, "empty params");
		is_hex(o.p, o.len, "C900", "empty C9");
	}

	/* INSTALL for install and make selectable of an SSD */
	hexb("A0000001515350", &elf);
	hexb("A000000151535041", &mod);
	hexb("D2760000850101", &app);
	hexb("A00000", &priv);
	memset(&in, 0, sizeof(in));
	in.kind = GP_INSTALL_AND_SELECTABLE;
	in.elf_aid = BYTES(elf);
	in.module_aid = BYTES(mod);
	in.app_aid = BYTES(app);
	in.priv = BYTES(priv);
	in.params = BYTES(params);
	ok(gp_install_build(&in, &o, &td, &e) == 0, "INSTALL for install built");
	is_hex(o.p, o.len, "80E60C003F" "07A0000001515350" "08A000000151535041"
	    "07D2760000850101" "03A00000" "20" "C914"
	    "8102021582018083018084008602010287028000" "EF08C7020100C8020100"
	    "00" "00", "INSTALL [install+selectable] SSD");
	is_hex(td.p, 3, "0C003E", "its token data: P1 0C P2 00 Lc 3E");
	in.params = (struct gp_bytes){ NULL, 0 };
	in.kind = GP_INSTALL_FOR_INSTALL;
	in.more = 1;
	ok(gp_install_build(&in, &o, NULL, &e) == 0, "INSTALL without params");
	is_hex(o.p + 2, 1, "84", "P1 84: for install, more commands follow");
	is_hex(o.p + o.len - 5, 5, "02C9000000",
	    "missing params become C9 00; then token 00 and Le");
	in.more = 0;
	in.priv = (struct gp_bytes){ priv.p, 2 };
	ok(gp_install_build(&in, &o, NULL, &e) == ERR_INVAL &&
	    msg_has(&e, "privileges of 2 bytes"), "2-byte privileges: %s", e.msg);
	in.priv = BYTES(priv);
	in.params = (struct gp_bytes){ (const uint8_t *)"\xEF\x00", 2 };
	ok(gp_install_build(&in, &o, NULL, &e) == ERR_INVAL &&
	    msg_has(&e, "lack C9"), "params without C9: %s", e.msg);
	in.params = (struct gp_bytes){ (const uint8_t *)"\xC9\x05", 2 };
	ok(gp_install_build(&in, &o, NULL, &e) == ERR_TRUNC,
	    "malformed params: %s", e.msg);
	in.params = (struct gp_bytes){ NULL, 0 };
	in.module_aid = (struct gp_bytes){ mod.p, 4 };
	ok(gp_install_build(&in, &o, NULL, &e) == ERR_INVAL &&
	    msg_has(&e, "module: AID of 4 bytes"), "4-byte module AID: %s",
	    e.msg);
	in.module_aid = BYTES(mod);

	/* make selectable, personalization, registry update */
	memset(&in, 0, sizeof(in));
	in.kind = GP_INSTALL_MAKE_SELECTABLE;
	in.app_aid = BYTES(app);
	in.priv = (struct gp_bytes){ (const uint8_t *)"\x00", 1 };
	ok(gp_install_build(&in, &o, NULL, &e) == 0, "make selectable built");
	is_hex(o.p, o.len, "80E608000E000007D2760000850101010000" "0000",
	    "INSTALL [make selectable]");
	in.kind = GP_INSTALL_PERSONALIZATION;
	in.priv = (struct gp_bytes){ NULL, 0 };
	ok(gp_install_build(&in, &o, NULL, &e) == 0, "personalization built");
	is_hex(o.p, o.len, "80E620000D000007D2760000850101000000" "00",
	    "INSTALL [for personalization]");
	in.token = (struct gp_bytes){ (const uint8_t *)"\x01", 1 };
	ok(gp_install_build(&in, &o, NULL, &e) == ERR_INVAL,
	    "personalization with a token refused");
	memset(&in, 0, sizeof(in));
	in.kind = GP_INSTALL_REGISTRY_UPDATE;
	in.sd_aid = BYTES(mod);
	in.app_aid = BYTES(app);
	in.priv = BYTES(priv);
	ok(gp_install_build(&in, &o, &td, &e) == 0, "registry update built");
	is_hex(o.p, o.len, "80E640001808A000000151535041" "00" "07D2760000850101"
	    "03A00000" "00" "00" "00", "INSTALL [registry update]");
	in.kind = (enum gp_install_kind)0x01;
	ok(gp_install_build(&in, &o, NULL, &e) == ERR_INVAL &&
	    msg_has(&e, "unknown kind"), "unknown INSTALL kind refused");

	/* INSTALL for load with the LFDB hash */
	hexb("01000FDECAFFED010204000105A0000001515350", &lfdb);
	ok(gp_lfdb_hash(GP_HASH_SHA256, (const uint8_t *)"abc", 3, hash, &hl,
	    &e) == 0 && hl == 32, "SHA-256");
	is_hex(hash, hl, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61"
	    "f20015ad", "SHA-256(abc)");
	ok(gp_lfdb_hash(GP_HASH_SHA1, (const uint8_t *)"abc", 3, hash, &hl,
	    &e) == 0 && hl == 20, "SHA-1");
	is_hex(hash, hl, "a9993e364706816aba3e25717850c26c9cd0d89d", "SHA-1(abc)");
	ok(gp_lfdb_hash((enum gp_hash_alg)9, lfdb.p, lfdb.len, hash, &hl, &e) ==
	    ERR_INVAL, "unknown hash refused");
	if (gp_lfdb_hash(GP_HASH_SHA256, lfdb.p, lfdb.len, hash, &hl, &e) != 0)
		bail("hash");
	memset(&in, 0, sizeof(in));
	in.kind = GP_INSTALL_FOR_LOAD;
	in.elf_aid = BYTES(elf);
	in.token = (struct gp_bytes){ (const uint8_t *)"\x01\x02", 2 };
	ok(gp_install_build(&in, &o, NULL, &e) == ERR_INVAL &&
	    msg_has(&e, "needs the load file data block hash"),
	    "token without LFDB hash refused: %s", e.msg);
	in.hash = (struct gp_bytes){ hash, hl };
	in.params = (struct gp_bytes){ (const uint8_t *)"\xEF\x04\xC6\x02\x10\x00", 6 };
	ok(gp_install_build(&in, &o, &td, &e) == 0, "INSTALL for load built");
	buf_reset(&exp);
	hexb("80E602003407A0000001515350" "00" "20", &exp);
	if (buf_put(&exp, hash, 32) != 0 ||
	    buf_put(&exp, "\x06\xEF\x04\xC6\x02\x10\x00\x02\x01\x02\x00", 11) != 0)
		bail("nomem");
	ok(o.len == exp.len && memcmp(o.p, exp.p, exp.len) == 0,
	    "INSTALL [for load]: ELF, empty SD, hash, params, token");
	is_hex(td.p, 3, "020031", "token data for load: Lc 31 (without the token LV)");
	in.hash = (struct gp_bytes){ hash, 19 };
	ok(gp_install_build(&in, &o, NULL, &e) == ERR_INVAL,
	    "19-byte hash refused: %s", e.msg);

	buf_free(&o);
	buf_free(&td);
	buf_free(&elf);
	buf_free(&mod);
	buf_free(&app);
	buf_free(&priv);
	buf_free(&params);
	buf_free(&lfdb);
	buf_free(&exp);
}

static void
test_load_store(void)
{
	struct buf s, o, aid, sig;
	struct gp_dap_block dap;
	struct gp_err e;
	uint8_t lfdb[600];
	size_t i;
	int last;

	buf_init(&s);
	buf_init(&o);
	buf_init(&aid);
	buf_init(&sig);
	for (i = 0; i < sizeof(lfdb); i++)
		lfdb[i] = (uint8_t)i;
	hexb("A000000151000000", &aid);
	hexb("0102030405060708", &sig);
	dap.sd_aid = BYTES(aid);
	dap.signature = BYTES(sig);
	ok(gp_load_stream_build(lfdb, sizeof(lfdb), &dap, 1, &s, &e) == 0,
	    "LOAD stream with a DAP block");
	is_hex(s.p, 24, "E2144F08A000000151000000C3080102030405060708C482",
	    "E2 {4F, C3} then C4 82 ...");
	is_hex(s.p + 24, 2, "0258", "C4 length 600");
	ok(s.len == 22 + 4 + 600, "stream length");
	ok(gp_load_build(s.p, s.len, 239, 0, &o, &last, &e) == 0 && !last &&
	    o.len == 5 + 239 + 1, "first LOAD block");
	is_hex(o.p, 5, "80E80000EF", "LOAD P1 00 P2 00 Lc EF");
	ok(gp_load_build(s.p, s.len, 239, 2, &o, &last, &e) == 0 && last &&
	    o.len == 5 + (626 - 478) + 1, "last LOAD block");
	is_hex(o.p, 5, "80E8800294", "LOAD P1 80 P2 02 Lc 94");
	ok(gp_load_build(s.p, s.len, 239, 3, &o, &last, &e) == ERR_INVAL,
	    "block past the end refused: %s", e.msg);
	ok(gp_load_build(s.p, 257 * 10, 10, 0, &o, &last, &e) == ERR_LIMIT &&
	    msg_has(&e, "more than 256"), "257 blocks refused: %s", e.msg);
	ok(gp_load_build(s.p, s.len, 256, 0, &o, &last, &e) == ERR_INVAL,
	    "block size 256 refused");
	is_int((long)gp_block_count(626, 239), 3, "block count");
	ok(gp_load_stream_build(lfdb, 10, NULL, 0, &s, &e) == 0, "plain stream");
	is_hex(s.p, 2, "C40A", "stream without DAP");

	ok(gp_store_data_build(GP_SD_LAST | GP_SD_BER, 0, (const uint8_t *)"\x01",
	    1, &o, &e) == 0, "STORE DATA built");
	is_hex(o.p, o.len, "80E290000101", "STORE DATA P1 90 (last, BER-TLV)");
	ok(gp_store_data_build(GP_SD_DGI | GP_SD_ENC_DATA | GP_SD_RESPONSE, 3,
	    (const uint8_t *)"\x01", 1, &o, &e) == 0, "STORE DATA DGI encrypted");
	is_hex(o.p, o.len, "80E269030101" "00", "P1 69 (DGI, encrypted, response) + Le");
	ok(gp_store_data_build(0x40, 0, NULL, 0, &o, &e) == ERR_INVAL,
	    "STORE DATA RFU encryption coding refused: %s", e.msg);
	ok(gp_store_data_build(0x18, 0, NULL, 0, &o, &e) == ERR_INVAL,
	    "STORE DATA RFU structure coding refused");
	ok(gp_store_data_block(GP_SD_BER | GP_SD_LAST, lfdb, 300, 200, 0, &o,
	    &last, &e) == 0 && !last && o.p[2] == 0x10 && o.p[3] == 0,
	    "STORE DATA block 0 of 2 has no last bit");
	ok(gp_store_data_block(GP_SD_BER, lfdb, 300, 200, 1, &o, &last, &e) == 0 &&
	    last && o.p[2] == 0x90 && o.p[3] == 1 && o.p[4] == 100,
	    "STORE DATA block 1 is last");
	buf_free(&s);
	buf_free(&o);
	buf_free(&aid);
	buf_free(&sig);
}

/* GET STATUS: the Samsung legacy plain responses, TLV entries. */
static void
test_status(void)
{
	struct gp_status_list l;
	struct gp_status_entry *x;
	struct buf b;
	struct gp_err e;

	buf_init(&b);
	gp_status_list_init(&l);
	hexb("08a00000015141434c0100" "10a00000022020030101010000000000060100"
	    "10a00000022020030101010000000000110100" "05a0000002480100", &b);
	ok(gp_status_parse(b.p, b.len, GP_GS_ELFS, 0, &l, &e) == 0 && l.n == 4,
	    "legacy ELFs (Samsung): 4 entries");
	ok(l.v[0].aid_len == 8 && l.v[0].lcs == 0x01 && l.v[3].aid_len == 5,
	    "first ELF LOADED, last AID 5 bytes");
	ok(strcmp(gp_lcs_name(GP_LCS_ELF, l.v[0].lcs), "LOADED") == 0,
	    "ELF LCS name LOADED");
	gp_status_list_free(&l);

	hexb("0aa9a8a7a6a5a4a3a2a1a00f80" "0aa0a1a2a3a4a5a6a7a8a90700"
	    "09a00000015141434c000700" "10a000000220200301030100000000001107"
	    "00" "07a00000024804000700", &b);
	ok(gp_status_parse(b.p, b.len, GP_GS_APPS, 0, &l, &e) == 0 && l.n == 5,
	    "legacy apps (Samsung): 5 entries");
	ok(l.v[0].lcs == 0x0F && l.v[0].priv[0] == 0x80 &&
	    strcmp(gp_lcs_name(GP_LCS_SD, l.v[0].lcs), "PERSONALIZED") == 0,
	    "SSD PERSONALIZED with SD privilege");
	ok(l.v[1].lcs == 0x07 &&
	    strcmp(gp_lcs_name(GP_LCS_APP, l.v[1].lcs), "SELECTABLE") == 0,
	    "app SELECTABLE");
	/* a 6310 continuation appends */
	hexb("08a0000001510000000f9e", &b);
	ok(gp_status_parse(b.p, b.len, GP_GS_ISD, 0, &l, &e) == 0 && l.n == 6 &&
	    l.v[5].lcs == 0x0F, "continuation appends: ISD SECURED");
	hexb("08a0000001510000000f", &b);
	ok(gp_status_parse(b.p, b.len, GP_GS_ISD, 0, &l, &e) == ERR_TRUNC &&
	    l.n == 6, "truncated legacy entry refused, nothing appended: %s",
	    e.msg);
	hexb("03a000000f9e", &b);
	ok(gp_status_parse(b.p, b.len, GP_GS_ISD, 0, &l, &e) == ERR_PARSE &&
	    msg_has(&e, "AID of 3 bytes"), "3-byte AID refused: %s", e.msg);
	gp_status_list_free(&l);

	/* legacy ELF + modules */
	hexb("07A0000001515350" "0100" "02" "08A000000151535041"
	    "08A000000151535042", &b);
	ok(gp_status_parse(b.p, b.len, GP_GS_ELF_MODULES, 0, &l, &e) == 0 &&
	    l.n == 1 && l.v[0].nmodules == 2, "legacy ELF with 2 modules");
	gp_status_list_free(&l);

	/* TLV format */
	hexb("E329" "4F08A000000151000000" "9F70010F" "C5039EFE80" "EA03800101"
	    "CC08A000000151000000" "CE020100" "CF0100"
	    "E32B" "4F07A0000001515350" "9F70020100" "C407A0000001515350"
	    "8408A000000151535041" "8408A000000151535042", &b);
	ok(gp_status_parse(b.p, b.len, GP_GS_APPS, 1, &l, &e) == 0 && l.n == 2,
	    "TLV: 2 entries: %s", e.msg);
	x = &l.v[0];
	ok(x->aid_len == 8 && x->lcs == 0x0F && x->priv_len == 3 &&
	    x->priv[0] == 0x9E && x->sd_aid_len == 8 && x->version_len == 2 &&
	    x->implicit_len == 1, "TLV entry 1: AID, LCS, C5, CC, CE, CF; EA "
	    "skipped");
	x = &l.v[1];
	ok(x->lcs == 0x01 && x->lcs_len == 2 && x->elf_aid_len == 7 &&
	    x->nmodules == 2 && x->modules[1].aid[7] == 0x42,
	    "TLV entry 2: 2-byte 9F70, C4, repeated 84");
	gp_status_list_free(&l);

	hexb("E3039F7001", &b);
	ok(gp_status_parse(b.p, b.len, GP_GS_APPS, 1, &l, &e) == ERR_TRUNC,
	    "truncated E3 refused: %s", e.msg);
	hexb("E3049F70010F", &b);
	ok(gp_status_parse(b.p, b.len, GP_GS_APPS, 1, &l, &e) == ERR_PARSE &&
	    msg_has(&e, "without AID"), "E3 without 4F refused: %s", e.msg);
	hexb("E3104F08A0000001510000009F7003010203", &b);
	ok(gp_status_parse(b.p, b.len, GP_GS_APPS, 1, &l, &e) == ERR_PARSE &&
	    msg_has(&e, "life cycle state of 3 bytes"), "3-byte 9F70: %s", e.msg);
	hexb("E20A4F08A000000151000000", &b);
	ok(gp_status_parse(b.p, b.len, GP_GS_APPS, 1, &l, &e) == ERR_PARSE &&
	    msg_has(&e, "E2 where E3"), "top-level E2 refused: %s", e.msg);
	hexb("E3144F08A0000001510000004F08A000000151000000", &b);
	ok(gp_status_parse(b.p, b.len, GP_GS_APPS, 1, &l, &e) == ERR_PARSE &&
	    msg_has(&e, "repeated"), "repeated 4F refused: %s", e.msg);
	ok(l.n == 0, "nothing kept from refused responses");
	gp_status_list_free(&l);
	buf_free(&b);
}

static void
test_get_data_parsers(void)
{
	struct buf b;
	struct gp_err e;
	struct gp_cplc c;
	struct gp_key_info ki[4];
	struct gp_card_data cd;
	struct gp_free_res fr;
	struct gp_iu_resp iu;
	uint32_t v;
	size_t n;
	char s[600];

	buf_init(&b);
	hexb("9F7F2A" "4790" "5044" "4791" "2345" "0102" "6001" "12345678" "0001"
	    "4812" "6002" "1234" "6003" "0000" "0000" "00000000" "0000" "0000"
	    "ABCDEF01", &b);
	ok(gp_cplc_parse(b.p, b.len, &c, &e) == 0, "CPLC with 9F7F header");
	ok(c.ic_fabricator == 0x4790 && c.ic_type == 0x5044 &&
	    c.os_id == 0x4791 && c.ic_serial == 0x12345678 &&
	    c.ic_batch_id == 0x0001 && c.icc_manufacturer == 0x1234 &&
	    c.personalization_equipment == 0xABCDEF01, "CPLC named fields");
	ok(gp_cplc_format(&c, s, sizeof(s)) == 0 &&
	    strstr(s, "ic_serial=12345678") != NULL, "CPLC formatted: %.60s...", s);
	ok(gp_cplc_format(&c, s, 20) == ERR_TOOBIG, "CPLC format needs room");
	ok(gp_cplc_parse(b.p + 3, 42, &c, &e) == 0 && c.ic_serial == 0x12345678,
	    "bare 42-byte CPLC");
	ok(gp_cplc_parse(b.p + 3, 41, &c, &e) == ERR_TRUNC &&
	    msg_has(&e, "41 bytes"), "41-byte CPLC refused: %s", e.msg);

	hexb("E012C00401308810C00402308810C00403308810", &b);
	ok(gp_key_info_parse(b.p, b.len, ki, 4, &n, &e) == 0 && n == 3 &&
	    ki[2].kid == 3 && ki[2].kvn == 0x30 && ki[0].comp[0].type == 0x88 &&
	    ki[0].comp[0].len == 16, "key information: 3 AES-128 keys, KVN 30");
	hexb("E006C00401018820", &b);
	ok(gp_key_info_parse(b.p, b.len, ki, 4, &n, &e) == 0 && n == 1 &&
	    ki[0].comp[0].len == 32, "key information gpref example (AES-256)");
	hexb("C00401018820", &b);
	ok(gp_key_info_parse(b.p, b.len, ki, 4, &n, &e) == 0 && n == 1,
	    "key information without E0");
	hexb("E008C0060101FF880010", &b);
	ok(gp_key_info_parse(b.p, b.len, ki, 4, &n, &e) == ERR_NOTSUP,
	    "extended key information: %s", e.msg);
	hexb("E005C003010188", &b);
	ok(gp_key_info_parse(b.p, b.len, ki, 4, &n, &e) == ERR_PARSE,
	    "C0 of 3 bytes refused: %s", e.msg);
	hexb("E012C00401308810C00402308810C00403308810", &b);
	ok(gp_key_info_parse(b.p, b.len, ki, 2, &n, &e) == ERR_LIMIT,
	    "more keys than room: %s", e.msg);

	hexb("663F733D06072A864886FC6B01600C060A2A864886FC6B02020301"
	    "630906072A864886FC6B03640B06092A864886FC6B040370"
	    "640B06092A864886FC6B040215" "6503800100", &b);
	b.p[1] = (uint8_t)(b.len - 2);
	b.p[3] = (uint8_t)(b.len - 4);
	ok(gp_card_data_parse(b.p, b.len, &cd, &e) == 0, "card data: %s", e.msg);
	ok(cd.gp_version_len == 3 && cd.gp_version[0] == 2 &&
	    cd.gp_version[1] == 3 && cd.nscp == 2 && cd.scp[0].scp == 3 &&
	    cd.scp[0].i == 0x70 && cd.scp[1].scp == 2,
	    "card data: GP 2.3.1, SCP03 i=70 and SCP02 i=15");
	hexb("66057303640106", &b);
	ok(gp_card_data_parse(b.p, b.len, &cd, &e) == ERR_TRUNC,
	    "card data with a broken 64: %s", e.msg);
	hexb("66027400", &b);
	ok(gp_card_data_parse(b.p, b.len, &cd, &e) == ERR_PARSE,
	    "card data without 73: %s", e.msg);

	ok(gp_counter_parse((const uint8_t *)"\xC1\x02\x00\x2A", 4, 0xC1, &v,
	    &e) == 0 && v == 42, "sequence counter C1 = 42");
	ok(gp_counter_parse((const uint8_t *)"\xC2\x03\x01\x00\x00", 5, 0xC2, &v,
	    &e) == 0 && v == 0x10000, "confirmation counter C2");
	ok(gp_counter_parse((const uint8_t *)"\xC2\x01\x01", 3, 0xC1, &v, &e) ==
	    ERR_PARSE, "counter with the wrong tag: %s", e.msg);
	ok(gp_counter_parse((const uint8_t *)"\xC1\x05\x01\x02\x03\x04\x05", 7,
	    0xC1, &v, &e) == ERR_PARSE, "5-byte counter refused");

	hexb("FF210D8102000582030100008302080000", &b);
	b.len--;
	ok(gp_free_res_parse(b.p, b.len, &fr, &e) == 0 && fr.has_apps &&
	    fr.apps == 5 && fr.nvm == 0x10000 && fr.vm == 0x800,
	    "free resources FF21: %s", e.msg);
	hexb("FF2106810100810101", &b);
	ok(gp_free_res_parse(b.p, b.len, &fr, &e) == ERR_PARSE &&
	    msg_has(&e, "repeated"), "repeated 81 refused: %s", e.msg);
	hexb("FF2105820301000000", &b);
	ok(gp_free_res_parse(b.p, b.len, &fr, &e) == ERR_TRAILING,
	    "FF21 with trailing bytes: %s", e.msg);

	/* IU response parser directly: S16 (Samsung), S8 without counter */
	hexb("a1a012430585513120853003710617a2c34d50b562f7decfc3dbf58a649ef7"
	    "33b7486d813c92e4ca61e5102f9100082a", &b);
	ok(gp_iu_resp_parse(b.p, b.len, &iu, &e) == 0 && iu.s16 &&
	    iu.has_seq && iu.clen == 16 && iu.i == 0x71 && iu.seq[2] == 0x2a,
	    "IU response S16 with counter");
	hexb("00000000000000000000300300" "1122334455667788" "99AABBCCDDEEFF00", &b);
	ok(gp_iu_resp_parse(b.p, b.len, &iu, &e) == 0 && !iu.s16 && !iu.has_seq,
	    "IU response S8 without counter (29 bytes)");
	hexb("00000000000000000000300360" "1122334455667788" "99AABBCCDDEEFF00", &b);
	ok(gp_iu_resp_parse(b.p, b.len, &iu, &e) == 0 && iu.i == 0x60,
	    "i=60 accepted");
	hexb("00000000000000000000300340" "1122334455667788" "99AABBCCDDEEFF00", &b);
	ok(gp_iu_resp_parse(b.p, b.len, &iu, &e) == ERR_PROTO &&
	    msg_has(&e, "R-ENC without R-MAC"), "i=40 refused: %s", e.msg);
	buf_free(&b);
}

static void
test_priv(void)
{
	uint8_t p[3];
	char s[300];
	struct gp_err e;

	p[0] = 0xA0; p[1] = 0; p[2] = 0;
	ok(gp_priv_format(p, s, sizeof(s)) == 0 &&
	    strcmp(s, "SecurityDomain|DelegatedManagement") == 0, "A00000: %s", s);
	p[0] = 0x82; p[1] = 0xFC; p[2] = 0x80;
	ok(gp_priv_format(p, s, sizeof(s)) == 0 &&
	    strcmp(s, "SecurityDomain|CVMManagement|TrustedPath|"
	    "AuthorizedManagement|TokenVerification|GlobalDelete|GlobalLock|"
	    "GlobalRegistry|ReceiptGeneration") == 0, "82FC80 (KAOH ISD): %s", s);
	p[0] = 0; p[1] = 0; p[2] = 0x04;
	ok(gp_priv_format(p, s, sizeof(s)) == 0 && strcmp(s, "RFU3.04") == 0,
	    "RFU bit named: %s", s);
	p[2] = 0;
	ok(gp_priv_format(p, s, sizeof(s)) == 0 && strcmp(s, "None") == 0,
	    "000000: None");
	p[0] = 0xFF; p[1] = 0xFF; p[2] = 0xFF;
	ok(gp_priv_format(p, s, 16) == ERR_TOOBIG, "format refuses a short buffer");

	ok(gp_priv_parse("SecurityDomain|AuthorizedManagement", p, &e) == 0 &&
	    p[0] == 0x80 && p[1] == 0x40 && p[2] == 0, "parse names -> 804000");
	ok(gp_priv_parse("securitydomain, delegatedmanagement , receiptgeneration",
	    p, &e) == 0 && p[0] == 0xA0 && p[2] == 0x80,
	    "parse is case-insensitive, commas and spaces");
	ok(gp_priv_parse("80C000", p, &e) == 0 && p[0] == 0x80 && p[1] == 0xC0,
	    "parse hex");
	ok(gp_priv_parse("SecurityDomain|Superuser", p, &e) == ERR_PARSE &&
	    msg_has(&e, "Superuser"), "unknown name refused: %s", e.msg);
	ok(gp_priv_parse("SecurityDomain||CardLock", p, &e) == ERR_PARSE,
	    "empty name refused");
	p[0] = 0x20; p[1] = 0; p[2] = 0;
	ok(gp_priv_check(p, &e) == ERR_INVAL && msg_has(&e, "Security Domain"),
	    "DM without SD refused: %s", e.msg);
	p[0] = 0x81;
	ok(gp_priv_check(p, &e) == ERR_INVAL && msg_has(&e, "Mandated"),
	    "Mandated DAP without DAP refused: %s", e.msg);
	p[0] = 0xC1;
	ok(gp_priv_check(p, &e) == 0, "C1 (mandated DAP) is consistent");
	p[0] = 0x00; p[1] = 0x40;
	ok(gp_priv_check(p, &e) == ERR_INVAL, "AM without SD refused");

	ok(strcmp(gp_lcs_name(GP_LCS_APP, 0x83), "LOCKED") == 0, "app 83 LOCKED");
	ok(strcmp(gp_lcs_name(GP_LCS_APP, 0x0F), "APPLICATION_SPECIFIC") == 0,
	    "app 0F application specific");
	ok(strcmp(gp_lcs_name(GP_LCS_SD, 0x83), "LOCKED") == 0, "SD 83 LOCKED");
	ok(strcmp(gp_lcs_name(GP_LCS_SD, 0x03), "INSTALLED") == 0,
	    "SD 03 INSTALLED");
	ok(strcmp(gp_lcs_name(GP_LCS_CARD, 0x0F), "SECURED") == 0,
	    "card 0F SECURED");
	ok(strcmp(gp_lcs_name(GP_LCS_CARD, 0x7F), "CARD_LOCKED") == 0,
	    "card 7F CARD_LOCKED");
	ok(strcmp(gp_lcs_name(GP_LCS_CARD, 0x02), "UNKNOWN") == 0, "card 02");
	ok(strcmp(gp_lcs_name(GP_LCS_ELF, 0x07), "UNKNOWN") == 0, "ELF 07");
}

int
main(void)
{
	test_simple_builders();
	test_dm();
	test_install();
	test_load_store();
	test_status();
	test_get_data_parsers();
	test_priv();
	return done_testing();
}
