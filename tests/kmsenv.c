/*
 * kmsenv.c - the kmsd test fixture (see kmsenv.h). Provisions keys through
 * the same keystore code kmsctl uses, then runs the real kmsd binary.
 * Everything here is TEST MATERIAL.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tests/kmsenv.h"

#define PIN "kmsenv-test-pin-0000"
#define SO_PIN "kmsenv-test-so-pin-0000"

const uint8_t kmsenv_kek128[16] = { 0x40, 0x41, 0x42, 0x43, 0x44, 0x45, 0x46,
	0x47, 0x48, 0x49, 0x4a, 0x4b, 0x4c, 0x4d, 0x4e, 0x4f };
const uint8_t kmsenv_kek256[32] = { 0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06,
	0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f, 0x10, 0x11, 0x12,
	0x13, 0x14, 0x15, 0x16, 0x17, 0x18, 0x19, 0x1a, 0x1b, 0x1c, 0x1d, 0x1e,
	0x1f };
const uint8_t kmsenv_mac[32] = { 0x5a, 0x5a, 0x5a, 0x5a, 0x5a, 0x5a, 0x5a, 0x5a,
	0x5a, 0x5a, 0x5a, 0x5a, 0x5a, 0x5a, 0x5a, 0x5a, 0xa5, 0xa5, 0xa5, 0xa5,
	0xa5, 0xa5, 0xa5, 0xa5, 0xa5, 0xa5, 0xa5, 0xa5, 0xa5, 0xa5, 0xa5, 0xa5 };
const uint8_t kmsenv_master[3][16] = {
	{ 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11,
	  0x11, 0x11, 0x11, 0x11 },
	{ 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22,
	  0x22, 0x22, 0x22, 0x22 },
	{ 0x33, 0x33, 0x33, 0x33, 0x33, 0x33, 0x33, 0x33, 0x33, 0x33, 0x33, 0x33,
	  0x33, 0x33, 0x33, 0x33 },
};

int
kmsenv_open_token(struct kmsenv *e, struct p11 **p, struct keystore *ks)
{
	(void)e;
	memset(ks, 0, sizeof(*ks));
	if (p11_open(p, NULL, "pkcs11:token=kmsenv") != 0)
		return -1;
	if (p11_login(*p, PIN, strlen(PIN)) != 0 || ks_load(ks, *p) != 0) {
		p11_close(*p);
		return -1;
	}
	return 0;
}

int
kmsenv_setup(struct kmsenv *e, unsigned flags)
{
	static const char *const mnames[3] = { "master/test/enc",
		"master/test/mac", "master/test/dek" };
	struct p11 *p = NULL;
	struct keystore ks;
	char path[512];
	uint32_t v;
	FILE *f;
	int i;

	memset(e, 0, sizeof(*e));
	snprintf(e->dir, sizeof(e->dir), "/tmp/sptsm-kms-XXXXXX");
	if (mkdtemp(e->dir) == NULL)
		return -1;
	snprintf(e->var, sizeof(e->var), "%s/var", e->dir);
	snprintf(path, sizeof(path), "%s/tokens", e->dir);
	if (mkdir_p(path, 0700) != 0 || mkdir_p(e->var, 0700) != 0)
		return -1;
	snprintf(path, sizeof(path), "%s/softhsm2.conf", e->dir);
	f = fopen(path, "w");
	if (f == NULL)
		return -1;
	fprintf(f, "directories.tokendir = %s/tokens\nobjectstore.backend = file\n"
	    "log.level = ERROR\nslots.removable = false\n", e->dir);
	fclose(f);
	setenv("SOFTHSM2_CONF", path, 1);
	snprintf(e->sock, sizeof(e->sock), "%s/run/kms.sock", e->var);
	snprintf(e->csock, sizeof(e->csock), "%s/run/kms-custodian.sock", e->var);
	snprintf(e->asock, sizeof(e->asock), "%s/run/kms-auditor.sock", e->var);
	snprintf(e->audit, sizeof(e->audit), "%s/kms/audit.log", e->var);
	snprintf(e->pinfile, sizeof(e->pinfile), "%s/pin", e->dir);
	snprintf(e->log, sizeof(e->log), "%s/kmsd.log", e->dir);
	if (file_write_atomic(e->pinfile, PIN, strlen(PIN), 0400) != 0)
		return -1;

	if (p11_open_uninitialized(&p, NULL) != 0 ||
	    p11_init_token(p, "kmsenv", SO_PIN, PIN, &(int){ 0 }) != 0)
		return -1;
	p11_close(p);
	if (kmsenv_open_token(e, &p, &ks) != 0)
		return -1;
	if (ks_generate(&ks, "storage-kek", KS_STORAGE_KEK, 0, 0, 0, &v) != 0 ||
	    (!(flags & KMSENV_NO_AUDIT_KEY) &&
	    ks_generate(&ks, "audit", KS_AUDIT, 0, 0, 0, &v) != 0) ||
	    ks_import_secret(&ks, "peer/test/kek", KS_TRANSPORT_KEK,
	    KMS_ALG_AES128, kmsenv_kek128, 16, NULL, 0, &v) != 0 ||
	    ks_import_secret(&ks, "peer/test/kek256", KS_TRANSPORT_KEK,
	    KMS_ALG_AES256, kmsenv_kek256, 32, NULL, 0, &v) != 0 ||
	    ks_import_secret(&ks, "peer/test/mac", KS_MAC, KMS_ALG_HMAC,
	    kmsenv_mac, 32, NULL, 0, &v) != 0 ||
	    ks_generate(&ks, "ca", KS_CA, KMS_ALG_EC_P256, 0, 0, &v) != 0)
		goto fail;
	for (i = 0; i < 3; i++)
		if (ks_import_secret(&ks, mnames[i], KS_MASTER, KMS_ALG_AES128,
		    kmsenv_master[i], 16, NULL, 0, &v) != 0)
			goto fail;
	if ((flags & KMSENV_RSA) &&
	    ks_generate(&ks, "transport-rsa", KS_TRANSPORT_RSA, 0, 0, 0, &v) != 0)
		goto fail;
	ks_free(&ks);
	p11_close(p);
	return 0;
fail:
	fprintf(stderr, "kmsenv: provisioning failed: %s\n", p11_last_error());
	ks_free(&ks);
	p11_close(p);
	return -1;
}

static int
sock_ready(const char *path)
{
	struct sockaddr_un sa;
	int fd, ok;

	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	fd = socket(AF_UNIX, SOCK_STREAM, 0);
	if (fd < 0)
		return 0;
	ok = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
	close(fd);
	return ok;
}

int
kmsenv_start(struct kmsenv *e, const char *const *extra)
{
	const char *argv[32];
	char bin[512], policy[512];
	const char *b = getenv("SPTSM_BUILD"), *top = getenv("SPTSM_TOP");
	struct timespec ts = { 0, 20 * 1000 * 1000 };
	int n = 0, i, fd;

	snprintf(bin, sizeof(bin), "%s/bin/kmsd", b ? b : "build");
	snprintf(policy, sizeof(policy), "%s/policy/kms.policy", top ? top : ".");
	argv[n++] = bin;
	argv[n++] = "--var";
	argv[n++] = e->var;
	argv[n++] = "--insecure-pin-file";
	argv[n++] = e->pinfile;
	argv[n++] = "--policy";
	argv[n++] = policy;
	for (i = 0; extra != NULL && extra[i] != NULL && n < 30; i++)
		argv[n++] = extra[i];
	argv[n] = NULL;
	e->pid = fork();
	if (e->pid < 0)
		return -1;
	if (e->pid == 0) {
		/* Both stdout and stderr to the log: a test's TAP pipe must not
		 * stay open in kmsd (prove would wait for it); and kmsd goes
		 * when the test dies. */
		fd = open(e->log, O_WRONLY | O_CREAT | O_APPEND, 0600);
		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
			close(fd);
		}
		(void)prctl(PR_SET_PDEATHSIG, SIGKILL);
		execv(bin, (char *const *)argv);
		_exit(127);
	}
	for (i = 0; i < 500; i++) {
		int st;

		if (sock_ready(e->sock) && sock_ready(e->csock) &&
		    sock_ready(e->asock))
			return 0;
		if (waitpid(e->pid, &st, WNOHANG) == e->pid) {
			e->pid = 0;
			return -1;
		}
		nanosleep(&ts, NULL);
	}
	return -1;
}

int
kmsenv_stop(struct kmsenv *e, int kill9)
{
	int st = 0;

	if (e->pid <= 0)
		return -1;
	kill(e->pid, kill9 ? SIGKILL : SIGTERM);
	while (waitpid(e->pid, &st, 0) < 0 && errno == EINTR)
		;
	e->pid = 0;
	return st;
}

void
kmsenv_cleanup(struct kmsenv *e)
{
	char cmd[600];

	if (e->pid > 0)
		(void)kmsenv_stop(e, 1);
	if (getenv("KEEP_TEST_DIR") != NULL) {
		fprintf(stderr, "kmsenv: kept %s\n", e->dir);
		return;
	}
	if (strncmp(e->dir, "/tmp/sptsm-kms-", 15) == 0) {
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", e->dir);
		(void)!system(cmd);
	}
}

int
kmsenv_count_lines(const char *path, const char *needle)
{
	char line[8192];
	FILE *f = fopen(path, "r");
	int n = 0;

	if (f == NULL)
		return -1;
	while (fgets(line, sizeof(line), f) != NULL)
		n += needle == NULL || strstr(line, needle) != NULL;
	fclose(f);
	return n;
}
