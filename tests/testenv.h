/*
 * testenv.h - helpers shared by the C tests: a fresh SoftHSM2 token in a
 * temporary directory (real SoftHSM2, never a mock), paths of the built
 * binaries. Header-only; include once per test program.
 */
#ifndef SPTSM_TESTENV_H
#define SPTSM_TESTENV_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define TEST_SO_PIN "test-so-pin-0000"
#define TEST_USER_PIN "test-user-pin-0000"

/* Makes DIR=/tmp/sptsm-test-XXXXXX with a softhsm2.conf pointing at
 * DIR/tokens and exports SOFTHSM2_CONF. Call before loading the module. */
static int __attribute__((unused))
testenv_softhsm(char *dir, size_t cap)
{
	char path[512];
	FILE *f;

	snprintf(dir, cap, "/tmp/sptsm-test-XXXXXX");
	if (mkdtemp(dir) == NULL)
		return -1;
	snprintf(path, sizeof(path), "%s/tokens", dir);
	if (mkdir_p(path, 0700) != 0)
		return -1;
	snprintf(path, sizeof(path), "%s/softhsm2.conf", dir);
	f = fopen(path, "w");
	if (f == NULL)
		return -1;
	fprintf(f, "directories.tokendir = %s/tokens\nobjectstore.backend = file\n"
	    "log.level = ERROR\nslots.removable = false\n", dir);
	fclose(f);
	setenv("SOFTHSM2_CONF", path, 1);
	return 0;
}

static void __attribute__((unused))
testenv_cleanup(const char *dir)
{
	char cmd[600];

	if (getenv("KEEP_TEST_DIR") != NULL || strncmp(dir, "/tmp/sptsm-test-", 16))
		return;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	(void)!system(cmd);
}

/* Path of a built program: $SPTSM_BUILD/bin/<name>. */
static __attribute__((unused)) const char *
testenv_bin(const char *name)
{
	static char path[1024];
	const char *b = getenv("SPTSM_BUILD");

	snprintf(path, sizeof(path), "%s/bin/%s", b ? b : "build", name);
	return path;
}

#endif
