/*
 * kmsenv.h - test fixture: a fresh SoftHSM2 token in a temporary directory
 * provisioned with the KMS key classes (TEST MATERIAL, never production),
 * and a real kmsd process serving it. Used by integration tests and
 * benchmarks.
 */
#ifndef SPTSM_KMSENV_H
#define SPTSM_KMSENV_H

#include <sys/types.h>

#include "kms/keystore.h"

/* Known test keys (public test material). */
extern const uint8_t kmsenv_kek128[16];	/* "peer/test/kek" AES-128 */
extern const uint8_t kmsenv_kek256[32];	/* "peer/test/kek256" AES-256 */
extern const uint8_t kmsenv_mac[32];	/* "peer/test/mac" HMAC */
extern const uint8_t kmsenv_master[3][16]; /* "master/test/{enc,mac,dek}" */

enum {
	KMSENV_RSA = 1,		/* also an RSA-3072 transport pair (slow) */
	KMSENV_NO_AUDIT_KEY = 2,
};

struct kmsenv {
	char  dir[256];
	char  var[300];
	char  sock[400];	/* tsm */
	char  csock[400];	/* custodian */
	char  asock[400];	/* auditor */
	char  audit[400];
	char  pinfile[400];
	char  log[400];
	pid_t pid;
};

/* Temp dir, token, keys. Leaves the token logged out and closed. */
int  kmsenv_setup(struct kmsenv *e, unsigned flags);
/* Opens the fixture's token logged in (for checks from the test). */
int  kmsenv_open_token(struct kmsenv *e, struct p11 **p, struct keystore *ks);
/* Starts kmsd (extra: NULL-terminated extra arguments) and waits until
 * its sockets answer. */
int  kmsenv_start(struct kmsenv *e, const char *const *extra);
/* SIGTERM (graceful) or SIGKILL, then reaps. Returns the exit status. */
int  kmsenv_stop(struct kmsenv *e, int kill9);
void kmsenv_cleanup(struct kmsenv *e);
/* Lines of the file at path holding needle (NULL: all lines); -1 if it
 * cannot be read. For counting audit records. */
int  kmsenv_count_lines(const char *path, const char *needle);

#endif
