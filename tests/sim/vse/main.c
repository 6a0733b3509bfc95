/*
 * main.c - the vse command: create a virtual SE card file (vse init), run
 * an APDU script against it (vse run) and print it (vse show). A test and
 * demo tool; runs as the invoking user and trusts its own arguments only
 * as far as their syntax checks go.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kms/base.h"
#include "tests/sim/vse/vse.h"

static void
usage_main(FILE *f)
{
	fprintf(f,
	    "usage: vse COMMAND [ARGS]   (virtual GlobalPlatform Secure Element)\n"
	    "\n"
	    "  init FILE [options]   create a card file\n"
	    "  run FILE SCRIPT       run an APDU script against the card ('-' = stdin)\n"
	    "  show FILE             print the card (identity, registry, keys as KCVs)\n"
	    "\n"
	    "'vse COMMAND --help' describes each command. Cards and demo keys are\n"
	    "for tests and demos only (see tests/sim/vse/README.md).\n");
}

static void
usage_init(FILE *f)
{
	fprintf(f,
	    "usage: vse init FILE [options]\n"
	    "Creates a new card file (refuses to overwrite one).\n"
	    "\n"
	    "  --se-id HEX        seId = CIN, 4..16 bytes (default 56530001 + random serial)\n"
	    "  --isd-aid HEX      ISD AID (default A000000151000000)\n"
	    "  --i HEX            SCP03 i parameter of the ISD (default 70; 71 = S16)\n"
	    "  --kdd HEX          key diversification data, 10 bytes (default from seId)\n"
	    "  --eid HEX          16-byte EID answered to GET EID (eUICC style)\n"
	    "  --mem-nv N         non-volatile memory in bytes (default 524288)\n"
	    "  --mem-v N          volatile memory in bytes (default 8192)\n"
	    "  --bare             no preloaded SD package (A0000001515350)\n"
	    "  --demo             DEMO ONLY keys: ISD KVN 30 from the demo masters,\n"
	    "                     demo DM token key at KVN 70, receipt key at KVN 71\n"
	    "  --keys ENC:MAC:DEK ISD SCP03 key set (hex, AES-128/192/256)\n"
	    "  --kvn HEX          key version for --keys (default 30)\n"
	    "  --token-key FILE   PEM public key for DM tokens at ISD KVN 70 KID 01\n"
	    "  --receipt-key HEX  AES receipt key at ISD KVN 71 KID 01\n"
	    "  --help\n");
}

static void
usage_run(FILE *f)
{
	fprintf(f,
	    "usage: vse run FILE SCRIPT\n"
	    "Runs SCRIPT (one hex APDU per line; '#' starts a comment; '-' = stdin)\n"
	    "against the card and prints each exchange. The card file is saved\n"
	    "after every command that changes it. Directives:\n"
	    "\n"
	    "  .auth [KVN [SL [ENC MAC DEK]]]  open SCP03 on channel 0 with the\n"
	    "        selected SD (default KVN 30, SL 03, the card's demo ISD keys);\n"
	    "        later APDUs are wrapped and their responses unwrapped\n"
	    "  .plain              stop wrapping (forget the host session)\n"
	    "  .putkey P1 KVN ENC MAC DEK   PUT KEY of an AES key set under the\n"
	    "        session DEK (P1 00 adds, P1 = KVN replaces)\n"
	    "  .expect SW          fail (exit 1) unless the last status word is SW\n"
	    "  .reset              power cycle (closes channels and sessions)\n"
	    "\n"
	    "Exit status: 0 all lines ran, 1 an .expect failed, 2 bad usage/script.\n");
}

static void
usage_show(FILE *f)
{
	fprintf(f,
	    "usage: vse show FILE\n"
	    "Prints the card: identity, memory, registry, key sets (KCVs only) and\n"
	    "the recorded STORE DATA blocks.\n");
}

static int
hex_arg(const char *s, uint8_t *out, size_t cap, size_t *n)
{
	return hex_decode(s, strlen(s), out, cap, n);
}

static int
cmd_init(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "se-id", required_argument, NULL, 's' },
		{ "isd-aid", required_argument, NULL, 'a' },
		{ "i", required_argument, NULL, 'i' },
		{ "kdd", required_argument, NULL, 'k' },
		{ "eid", required_argument, NULL, 'e' },
		{ "mem-nv", required_argument, NULL, 'N' },
		{ "mem-v", required_argument, NULL, 'V' },
		{ "bare", no_argument, NULL, 'b' },
		{ "demo", no_argument, NULL, 'd' },
		{ "keys", required_argument, NULL, 'K' },
		{ "kvn", required_argument, NULL, 'n' },
		{ "token-key", required_argument, NULL, 't' },
		{ "receipt-key", required_argument, NULL, 'r' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	struct vse_config cfg;
	struct vse *c = NULL;
	uint8_t isd[16], kdd[10], eid[16], one[1], keys[3][32], rk[32];
	size_t n, klen = 0, rklen = 0;
	const char *keyarg = NULL, *tokfile = NULL, *rkarg = NULL;
	uint8_t kvn = 0x30;
	int demo = 0, o, rc = 2;
	struct buf pem;
	char *end, tmp[3 * 64 + 3];

	vse_config_init(&cfg);
	buf_init(&pem);
	optind = 1;
	while ((o = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (o) {
		case 's': cfg.se_id = optarg; break;
		case 'a':
			if (hex_arg(optarg, isd, sizeof(isd), &n) != 0)
				goto bad;
			cfg.isd_aid = isd;
			cfg.isd_aid_len = n;
			break;
		case 'i':
			if (hex_arg(optarg, one, 1, &n) != 0 || n != 1)
				goto bad;
			cfg.isd_i = one[0];
			break;
		case 'k':
			if (hex_arg(optarg, kdd, sizeof(kdd), &n) != 0 ||
			    n != sizeof(kdd))
				goto bad;
			cfg.kdd = kdd;
			break;
		case 'e':
			if (hex_arg(optarg, eid, sizeof(eid), &n) != 0 ||
			    n != sizeof(eid))
				goto bad;
			cfg.eid = eid;
			break;
		case 'N':
		case 'V': {
			unsigned long v;

			errno = 0;
			v = strtoul(optarg, &end, 10);
			if (errno || *end || v == 0 || v > UINT32_MAX)
				goto bad;
			if (o == 'N')
				cfg.mem_nv = (uint32_t)v;
			else
				cfg.mem_v = (uint32_t)v;
			break;
		}
		case 'b': cfg.bare = 1; break;
		case 'd': demo = 1; break;
		case 'K': keyarg = optarg; break;
		case 'n':
			if (hex_arg(optarg, one, 1, &n) != 0 || n != 1)
				goto bad;
			kvn = one[0];
			break;
		case 't': tokfile = optarg; break;
		case 'r': rkarg = optarg; break;
		case 'h': usage_init(stdout); return 0;
		default: goto bad;
		}
	}
	if (optind != argc - 1)
		goto bad;
	if (keyarg != NULL) {
		char *p, *q;
		size_t i;

		if (strlen(keyarg) >= sizeof(tmp))
			goto bad;
		strcpy(tmp, keyarg);
		p = tmp;
		for (i = 0; i < 3; i++) {
			q = strchr(p, ':');
			if ((i < 2) != (q != NULL))
				goto bad;
			if (q != NULL)
				*q = 0;
			if (hex_arg(p, keys[i], sizeof(keys[i]), &n) != 0 ||
			    (i > 0 && n != klen))
				goto bad;
			klen = n;
			p = q ? q + 1 : p;
		}
	}
	if (rkarg != NULL && hex_arg(rkarg, rk, sizeof(rk), &rklen) != 0)
		goto bad;
	if (tokfile != NULL && (file_read_all(tokfile, 65536, &pem) != 0 ||
	    buf_put_u8(&pem, 0) != 0)) {
		fprintf(stderr, "vse init: cannot read %s\n", tokfile);
		rc = 1;
		goto cleanup;
	}
	/* Built in memory first: the file appears only once, complete. */
	if ((rc = vse_create(&c, NULL, &cfg)) != 0) {
		fprintf(stderr, "vse init: %s\n", err_str(rc));
		rc = 1;
		goto cleanup;
	}
	if (demo)
		rc = vse_demo_provision(c);
	if (rc == 0 && keyarg != NULL)
		rc = vse_keyset_put(c, NULL, 0, kvn, keys[0], keys[1], keys[2],
		    klen);
	if (rc == 0 && tokfile != NULL)
		rc = vse_key_put_pem(c, NULL, 0, 0x70, 0x01, (const char *)pem.p);
	if (rc == 0 && rkarg != NULL)
		rc = vse_key_put_aes(c, NULL, 0, 0x71, 0x01, rk, rklen);
	if (rc != 0) {
		fprintf(stderr, "vse init: keys: %s\n", err_str(rc));
		rc = 1;
		goto cleanup;
	}
	if ((rc = vse_save_as(c, argv[optind])) != 0) {
		fprintf(stderr, "vse init: %s: %s\n", argv[optind], err_str(rc));
		rc = 1;
		goto cleanup;
	}
	printf("created %s seId %s\n", argv[optind], vse_se_id(c));
	rc = 0;
	goto cleanup;
bad:
	usage_init(stderr);
	rc = 2;
cleanup:
	wipe(tmp, sizeof(tmp));
	wipe(keys, sizeof(keys));
	wipe(rk, sizeof(rk));
	buf_free(&pem);
	vse_free(c);
	return rc;
}

/* ---- vse run ----------------------------------------------------------------- */

struct runner {
	struct vse      *c;
	struct vse_host *h;
	uint16_t         last_sw;
	int              have_sw;
};

static void
print_hex_line(const char *pfx, const uint8_t *p, size_t n, const char *sfx)
{
	size_t i;

	fputs(pfx, stdout);
	for (i = 0; i < n; i++)
		printf("%02X", p[i]);
	fputs(sfx, stdout);
}

static uint16_t
sw_tail(const uint8_t *p, size_t n)
{
	return n >= 2 ? (uint16_t)((p[n - 2] << 8) | p[n - 1]) : 0;
}

static int
exchange(struct runner *ru, const uint8_t *apdu, size_t n)
{
	uint8_t rsp[VSE_RSP_MAX];
	size_t rl = 0;
	struct buf w, plain;
	int wrap, rc;

	buf_init(&w);
	buf_init(&plain);
	/* Only proprietary-class commands travel in the secure channel. */
	wrap = ru->h != NULL && vse_host_is_open(ru->h) && n >= 4 &&
	    (apdu[0] & 0x80) && apdu[1] != 0x50 && apdu[1] != 0x82;
	print_hex_line("> ", apdu, n, "\n");
	if (wrap) {
		if ((rc = vse_host_wrap(ru->h, apdu, n, &w)) != 0) {
			fprintf(stderr, "vse run: cannot wrap: %s\n", err_str(rc));
			goto cleanup;
		}
		print_hex_line("  wire > ", w.p, w.len, "\n");
		apdu = w.p;
		n = w.len;
	}
	if ((rc = vse_transmit(ru->c, apdu, n, rsp, sizeof(rsp), &rl)) != 0)
		goto cleanup;
	if (wrap) {
		print_hex_line("  wire < ", rsp, rl, "\n");
		if ((rc = vse_host_unwrap(ru->h, rsp, rl, &plain)) != 0) {
			fprintf(stderr, "vse run: response: %s\n", err_str(rc));
			goto cleanup;
		}
	} else if ((rc = buf_put(&plain, rsp, rl)) != 0)
		goto cleanup;
	ru->last_sw = sw_tail(plain.p, plain.len);
	ru->have_sw = 1;
	print_hex_line("< ", plain.p, plain.len, "");
	printf("  %s\n", vse_sw_str(ru->last_sw));
	/* SELECT ends the card's session. */
	if (ru->h != NULL && n >= 2 && apdu[1] == 0xA4)
		vse_host_close(ru->h);
cleanup:
	buf_free(&w);
	buf_free(&plain);
	return rc;
}

static int
dir_auth(struct runner *ru, char **arg, int nargs)
{
	uint8_t keys[3][32], one[1];
	uint8_t kvn = 0x30, sl = 0x03;
	size_t n, klen = 16, i;
	uint16_t sw = 0;
	int rc;

	if (nargs != 0 && nargs != 1 && nargs != 2 && nargs != 5)
		return 2;
	if (nargs >= 1) {
		if (hex_arg(arg[0], one, 1, &n) != 0 || n != 1)
			return 2;
		kvn = one[0];
	}
	if (nargs >= 2) {
		if (hex_arg(arg[1], one, 1, &n) != 0 || n != 1)
			return 2;
		sl = one[0];
	}
	if (nargs == 5) {
		for (i = 0; i < 3; i++) {
			if (hex_arg(arg[2 + i], keys[i], sizeof(keys[i]), &n) != 0)
				return 2;
			if (i == 0)
				klen = n;
			else if (n != klen)
				return 2;
		}
	} else if (vse_demo_isd_keys(vse_se_id(ru->c), keys[0], keys[1],
	    keys[2]) != 0)
		return 2;
	vse_host_free(ru->h);
	ru->h = NULL;
	rc = vse_host_new(&ru->h, keys[0], keys[1], keys[2], klen);
	wipe(keys, sizeof(keys));
	if (rc != 0)
		return 2;
	rc = vse_host_open(ru->h, ru->c, 0, kvn, sl, 0, NULL, &sw);
	if (rc == ERR_SW && sw == 0x6700)	/* S8 refused: try S16 (§1.8) */
		rc = vse_host_open(ru->h, ru->c, 0, kvn, sl, 1, NULL, &sw);
	ru->last_sw = sw;
	ru->have_sw = sw != 0;
	if (rc != 0) {
		printf("# secure channel failed: %s (SW %04X %s)\n", err_str(rc),
		    sw, vse_sw_str(sw));
		return 1;
	}
	printf("# secure channel open: KVN %02X SL %02X\n", kvn, sl);
	return 0;
}

static int
dir_putkey(struct runner *ru, char **arg, int nargs)
{
	uint8_t p1, kvn, key[32], one[1];
	size_t n, klen = 0, i;
	struct buf data, apdu;
	int rc = 2;

	if (nargs != 5 || ru->h == NULL || !vse_host_is_open(ru->h))
		return 2;
	if (hex_arg(arg[0], one, 1, &n) != 0 || n != 1)
		return 2;
	p1 = one[0];
	if (hex_arg(arg[1], one, 1, &n) != 0 || n != 1)
		return 2;
	kvn = one[0];
	buf_init(&data);
	buf_init(&apdu);
	if (buf_put_u8(&data, kvn) != 0)
		goto cleanup;
	for (i = 0; i < 3; i++) {
		if (hex_arg(arg[2 + i], key, sizeof(key), &n) != 0 ||
		    (i > 0 && n != klen))
			goto cleanup;
		klen = n;
		if (vse_host_key_block(ru->h, key, n, 1, &data) != 0)
			goto cleanup;
	}
	/* 80 D8 P1 81 Lc KVN blocks 00 (gp-reference §4). */
	if (buf_put_u8(&apdu, 0x80) != 0 || buf_put_u8(&apdu, 0xD8) != 0 ||
	    buf_put_u8(&apdu, p1) != 0 || buf_put_u8(&apdu, 0x81) != 0 ||
	    buf_put_u8(&apdu, (uint8_t)data.len) != 0 ||
	    buf_put(&apdu, data.p, data.len) != 0 || buf_put_u8(&apdu, 0) != 0)
		goto cleanup;
	rc = exchange(ru, apdu.p, apdu.len) == 0 ? 0 : 2;
cleanup:
	wipe(key, sizeof(key));
	buf_free(&data);
	buf_free(&apdu);
	return rc;
}

/* 0 ok, 1 expectation/auth failed, 2 bad line. */
static int
run_line(struct runner *ru, char *line)
{
	char *args[8], *tok, *save = NULL, *hash;
	uint8_t *apdu = NULL;
	size_t n = 0, i, j, len;
	int nargs = 0, rc;

	if ((hash = strchr(line, '#')) != NULL)
		*hash = 0;
	for (tok = strtok_r(line, " \t\r\n", &save); tok != NULL && nargs < 8;
	    tok = strtok_r(NULL, " \t\r\n", &save))
		args[nargs++] = tok;
	if (nargs == 0)
		return 0;
	if (args[0][0] == '.') {
		if (strcmp(args[0], ".auth") == 0)
			return dir_auth(ru, args + 1, nargs - 1);
		if (strcmp(args[0], ".putkey") == 0)
			return dir_putkey(ru, args + 1, nargs - 1);
		if (strcmp(args[0], ".plain") == 0 && nargs == 1) {
			if (ru->h != NULL)
				vse_host_close(ru->h);
			return 0;
		}
		if (strcmp(args[0], ".reset") == 0 && nargs == 1) {
			vse_reset(ru->c);
			if (ru->h != NULL)
				vse_host_close(ru->h);
			printf("# reset\n");
			return 0;
		}
		if (strcmp(args[0], ".expect") == 0 && nargs == 2) {
			uint8_t sw[2];

			if (hex_arg(args[1], sw, 2, &n) != 0 || n != 2)
				return 2;
			if (!ru->have_sw || ru->last_sw != ((sw[0] << 8) | sw[1])) {
				printf("# expected %s, got %04X\n", args[1],
				    ru->last_sw);
				return 1;
			}
			return 0;
		}
		return 2;
	}
	/* An APDU: hex, spaces between bytes allowed. */
	for (i = 0, len = 0; i < (size_t)nargs; i++)
		len += strlen(args[i]);
	if (len % 2 != 0 || len / 2 > 65544)
		return 2;
	if ((apdu = malloc(len / 2 + 1)) == NULL)
		return 2;
	for (i = 0, j = 0; i < (size_t)nargs; i++) {
		if (hex_arg(args[i], apdu + j, len / 2 - j, &n) != 0) {
			free(apdu);
			return 2;
		}
		j += n;
	}
	rc = exchange(ru, apdu, j) == 0 ? 0 : 2;
	free(apdu);
	return rc;
}

static int
cmd_run(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	struct runner ru;
	FILE *f = NULL;
	char *line = NULL;
	size_t cap = 0;
	ssize_t got;
	int o, rc, status = 0;
	unsigned long lineno = 0;

	memset(&ru, 0, sizeof(ru));
	optind = 1;
	while ((o = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		if (o == 'h') {
			usage_run(stdout);
			return 0;
		}
		usage_run(stderr);
		return 2;
	}
	if (optind != argc - 2) {
		usage_run(stderr);
		return 2;
	}
	if ((rc = vse_open(&ru.c, argv[optind])) != 0) {
		fprintf(stderr, "vse run: %s: %s\n", argv[optind], err_str(rc));
		return 2;
	}
	f = strcmp(argv[optind + 1], "-") == 0 ? stdin :
	    fopen(argv[optind + 1], "r");
	if (f == NULL) {
		fprintf(stderr, "vse run: %s: %s\n", argv[optind + 1],
		    strerror(errno));
		vse_free(ru.c);
		return 2;
	}
	while ((got = getline(&line, &cap, f)) != -1) {
		lineno++;
		rc = run_line(&ru, line);
		if (rc == 2) {
			fprintf(stderr, "vse run: %s:%lu: bad line\n",
			    argv[optind + 1], lineno);
			status = 2;
			break;
		}
		if (rc == 1) {
			status = 1;
			break;
		}
	}
	if (status == 0 && vse_save(ru.c) != 0) {
		fprintf(stderr, "vse run: cannot save %s\n", argv[optind]);
		status = 2;
	}
	free(line);
	if (f != stdin)
		fclose(f);
	vse_host_free(ru.h);
	vse_free(ru.c);
	return status;
}

/* ---- vse show ----------------------------------------------------------------- */

static int
cmd_show(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	struct vse *c = NULL;
	int o, rc;

	optind = 1;
	while ((o = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		if (o == 'h') {
			usage_show(stdout);
			return 0;
		}
		usage_show(stderr);
		return 2;
	}
	if (optind != argc - 1) {
		usage_show(stderr);
		return 2;
	}
	if ((rc = vse_open(&c, argv[optind])) != 0) {
		fprintf(stderr, "vse show: %s: %s\n", argv[optind], err_str(rc));
		return 2;
	}
	rc = vse_print(c, stdout) == 0 ? 0 : 2;
	vse_free(c);
	return rc;
}

int
main(int argc, char **argv)
{
	if (argc < 2) {
		usage_main(stderr);
		return 2;
	}
	if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
	    strcmp(argv[1], "help") == 0) {
		usage_main(stdout);
		return 0;
	}
	if (strcmp(argv[1], "init") == 0)
		return cmd_init(argc - 1, argv + 1);
	if (strcmp(argv[1], "run") == 0)
		return cmd_run(argc - 1, argv + 1);
	if (strcmp(argv[1], "show") == 0)
		return cmd_show(argc - 1, argv + 1);
	fprintf(stderr, "vse: unknown command '%s'\n", argv[1]);
	usage_main(stderr);
	return 2;
}
