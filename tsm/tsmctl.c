/*
 * tsmctl.c - the operator's tool for tsmd's state. Today: `store check`
 * (fsck of the LMDB store) and `store dump`. Opens the store read-only,
 * so it can run beside a live tsmd; prints no secret (the store has none,
 * and blobs are shown as length + SHA-256 prefix only).
 */
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kms/base.h"
#include "tsm/store/store.h"

/* Exit codes: 0 clean, 1 problems found, 2 usage or operational error. */
enum { EXIT_CLEAN = 0, EXIT_PROBLEMS = 1, EXIT_ERROR = 2 };

static const char usage_main[] =
"usage: tsmctl <command> [options]\n"
"\n"
"commands:\n"
"  store check [--var DIR]            verify every record and reference\n"
"  store dump [--var DIR] [--db NAME] print the store's records\n"
"\n"
"Run `tsmctl <command> [<subcommand>] --help` for details.\n";

static const char usage_store[] =
"usage: tsmctl store <check|dump> [options]\n"
"\n"
"  check   verify the store (exit 0 clean, 1 problems, 2 error)\n"
"  dump    print records for humans\n"
"\n"
"The store lives in VAR/tsm/store; VAR is --var DIR, else $VAR, else ./var.\n";

static const char usage_check[] =
"usage: tsmctl store check [--var DIR]\n"
"\n"
"Checks, in one read snapshot of VAR/tsm/store: every record decodes and\n"
"sits under its own key; SSD -> SE and -> running task, key set -> SE and\n"
"SSD, task -> SE, sd-status event -> SSD; the task and expiry indexes\n"
"match their records; nonce and idempotency expiries are sane; the\n"
"schema is the one this build reads. Prints one line per problem and a\n"
"summary. Safe beside a running tsmd (read-only).\n"
"\n"
"Exit status: 0 clean, 1 problems found, 2 the check could not run.\n";

static const char usage_dump[] =
"usage: tsmctl store dump [--var DIR] [--db NAME]\n"
"\n"
"Prints every record (or those of one db), one per line: key then fields.\n"
"Key-set blobs, response bodies and task contexts appear only as\n"
"len:N,sha256:<first 8 bytes>.\n"
"\n"
"dbs: meta se ssd keyset peer task task_by_se idem nonce expiry sdstatus\n"
"     provider app cert notification\n";

struct args {
	const char *var;
	const char *db;
	int help;
};

/* Parses --var, --db (when db_ok) and --help after the subcommand. */
static int
parse(int argc, char **argv, int db_ok, struct args *a)
{
	static const struct option opts[] = {
		{ "var", required_argument, NULL, 'v' },
		{ "db", required_argument, NULL, 'd' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	int c;

	memset(a, 0, sizeof(*a));
	optind = 1;
	opterr = 1;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'v':
			a->var = optarg;
			break;
		case 'd':
			if (!db_ok)
				return -1;
			a->db = optarg;
			break;
		case 'h':
			a->help = 1;
			break;
		default:
			return -1;
		}
	}
	return optind == argc ? 0 : -1;
}

static int
open_store(const struct args *a, struct store **st)
{
	struct store_opts o = { .readonly = 1 };
	const char *var = a->var;
	char dir[PATH_MAX];
	int rc;

	if (var == NULL)
		var = getenv("VAR");
	if (var == NULL || var[0] == '\0')
		var = "./var";
	if (snprintf(dir, sizeof(dir), "%s/tsm/store", var) >= (int)sizeof(dir)) {
		fprintf(stderr, "tsmctl: path too long\n");
		return -1;
	}
	if ((rc = store_open(st, dir, &o)) != 0) {
		fprintf(stderr, "tsmctl: cannot open the store in %s: %s\n", dir,
		    err_str(rc));
		return -1;
	}
	return 0;
}

static int
cmd_check(int argc, char **argv)
{
	struct store_check_report rep;
	struct store *st = NULL;
	struct args a;
	int rc;

	if (parse(argc, argv, 0, &a) != 0) {
		fputs(usage_check, stderr);
		return EXIT_ERROR;
	}
	if (a.help) {
		fputs(usage_check, stdout);
		return EXIT_CLEAN;
	}
	if (open_store(&a, &st) != 0)
		return EXIT_ERROR;
	rc = store_check(st, (uint64_t)wall_seconds(), stdout, &rep);
	store_close(st);
	if (rc != 0) {
		fprintf(stderr, "tsmctl: check failed: %s\n", err_str(rc));
		return EXIT_ERROR;
	}
	printf("summary: %llu records, %llu problems, %llu expired awaiting "
	    "purge\n", (unsigned long long)rep.records,
	    (unsigned long long)rep.problems, (unsigned long long)rep.expired);
	return rep.problems ? EXIT_PROBLEMS : EXIT_CLEAN;
}

static int
cmd_dump(int argc, char **argv)
{
	struct store *st = NULL;
	struct args a;
	int rc, db = STORE_DB_COUNT;

	if (parse(argc, argv, 1, &a) != 0) {
		fputs(usage_dump, stderr);
		return EXIT_ERROR;
	}
	if (a.help) {
		fputs(usage_dump, stdout);
		return EXIT_CLEAN;
	}
	if (a.db != NULL && (db = store_db_by_name(a.db)) < 0) {
		fprintf(stderr, "tsmctl: unknown db \"%s\"\n", a.db);
		fputs(usage_dump, stderr);
		return EXIT_ERROR;
	}
	if (open_store(&a, &st) != 0)
		return EXIT_ERROR;
	rc = store_dump(st, db, stdout);
	store_close(st);
	if (rc != 0) {
		fprintf(stderr, "tsmctl: dump failed: %s\n", err_str(rc));
		return EXIT_ERROR;
	}
	return EXIT_CLEAN;
}

static int
cmd_store(int argc, char **argv)
{
	if (argc < 2) {
		fputs(usage_store, stderr);
		return EXIT_ERROR;
	}
	if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
		fputs(usage_store, stdout);
		return EXIT_CLEAN;
	}
	if (strcmp(argv[1], "check") == 0)
		return cmd_check(argc - 1, argv + 1);
	if (strcmp(argv[1], "dump") == 0)
		return cmd_dump(argc - 1, argv + 1);
	fprintf(stderr, "tsmctl: unknown store command \"%s\"\n", argv[1]);
	fputs(usage_store, stderr);
	return EXIT_ERROR;
}

int
main(int argc, char **argv)
{
	log_init("tsmctl", LOG_WARN);
	if (argc < 2) {
		fputs(usage_main, stderr);
		return EXIT_ERROR;
	}
	if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
	    strcmp(argv[1], "help") == 0) {
		fputs(usage_main, stdout);
		return EXIT_CLEAN;
	}
	if (strcmp(argv[1], "store") == 0)
		return cmd_store(argc - 1, argv + 1);
	fprintf(stderr, "tsmctl: unknown command \"%s\"\n", argv[1]);
	fputs(usage_main, stderr);
	return EXIT_ERROR;
}
