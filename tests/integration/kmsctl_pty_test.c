/*
 * kmsctl_pty_test.c - kmsctl's interactive mode through a pseudo-terminal:
 * two custodians type their components (which must not be echoed) and
 * KCVs, then confirm the combined KCV; a wrong confirmation creates
 * nothing. Uses a real kmsctl binary on a real SoftHSM2 token.
 */
#include <poll.h>
#include <pty.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kms/keystore.h"
#include "tests/tap.h"
#include "tests/testenv.h"

static char dir[256], out[16384];
static size_t outlen;

/* Reads from the pty until `want` appears (or 10 s pass). */
static int
expect(int fd, const char *want)
{
	struct pollfd p = { fd, POLLIN, 0 };
	ssize_t n;
	int waited = 0;

	while (strstr(out, want) == NULL) {
		if (poll(&p, 1, 100) <= 0) {
			if (++waited > 100)
				return 0;
			continue;
		}
		n = read(fd, out + outlen, sizeof(out) - outlen - 1);
		if (n <= 0)
			return strstr(out, want) != NULL;
		outlen += (size_t)n;
		out[outlen] = '\0';
	}
	return 1;
}

static void
say(int fd, const char *line)
{
	if (write(fd, line, strlen(line)) < 0 || write(fd, "\n", 1) < 0)
		diag("pty write");
}

static int
ceremony(const char *label, const char *confirm, int *status)
{
	char var[300], pin[300];
	int fd;
	pid_t pid;

	outlen = 0;
	out[0] = '\0';
	snprintf(var, sizeof(var), "%s/var", dir);
	snprintf(pin, sizeof(pin), "%s/pin", dir);
	pid = forkpty(&fd, NULL, NULL, NULL);
	if (pid < 0)
		bail("forkpty");
	if (pid == 0) {
		execl(testenv_bin("kmsctl"), "kmsctl", "--var", var,
		    "--insecure-pin-file", pin, "key", "import-components",
		    "--label", label, "--type", "aes128", "--class", "transport-kek",
		    "--components", "2", (char *)NULL);
		_exit(127);
	}
	/* components 0011..ff and 0f1e..f0; KCVs by OpenSSL offline */
	if (!expect(fd, "custodian 1, component (hex, hidden): "))
		goto fail;
	say(fd, "00112233445566778899aabbccddeeff");
	if (!expect(fd, "custodian 1, component KCV: "))
		goto fail;
	say(fd, "3544e0");
	if (!expect(fd, "custodian 2, component (hex, hidden): "))
		goto fail;
	say(fd, "0f1e2d3c4b5a69788796a5b4c3d2e1f0");
	if (!expect(fd, "custodian 2, component KCV: "))
		goto fail;
	say(fd, "8f93d8");
	if (!expect(fd, "type the combined KCV to confirm: "))
		goto fail;
	say(fd, confirm);
	expect(fd, "\001never");	/* drain until exit */
	waitpid(pid, status, 0);
	close(fd);
	return 1;
fail:
	kill(pid, SIGKILL);
	waitpid(pid, status, 0);
	close(fd);
	diag("pty transcript:\n%s", out);
	return 0;
}

int
main(void)
{
	char cmd[1200];
	int st = 0;

	if (testenv_softhsm(dir, sizeof(dir)) != 0)
		bail("temp dir");
	snprintf(cmd, sizeof(cmd), "%s --var %s/var init --custodians 1 "
	    "--threshold 1 --insecure-pin-file %s/pin >/dev/null 2>&1",
	    testenv_bin("kmsctl"), dir, dir);
	if (system(cmd) != 0)
		bail("kmsctl init");

	ok(ceremony("peer/pty/bad", "000000", &st), "interactive ceremony runs "
	    "to the confirmation");
	ok(WIFEXITED(st) && WEXITSTATUS(st) != 0, "a wrong combined KCV fails");
	ok(strstr(out, "not confirmed: nothing created") != NULL,
	    "and says nothing was created");

	ok(ceremony("peer/pty/kek", "53c16f", &st), "second ceremony runs");
	ok(strstr(out, "component 1 accepted (KCV 3544E0)") != NULL &&
	    strstr(out, "component 2 accepted (KCV 8F93D8)") != NULL,
	    "each component is checked against its KCV");
	ok(strstr(out, "combined key KCV: 53C16F") != NULL,
	    "the combined KCV is shown");
	ok(strstr(out, "00112233445566778899aabbccddeeff") == NULL &&
	    strstr(out, "0f1e2d3c4b5a69788796a5b4c3d2e1f0") == NULL,
	    "components are never echoed");
	ok(WIFEXITED(st) && WEXITSTATUS(st) == 0 &&
	    strstr(out, "key 'peer/pty/kek' version 1 created") != NULL,
	    "the confirmed key is created");
	snprintf(cmd, sizeof(cmd), "%s --var %s/var --insecure-pin-file %s/pin "
	    "key list | grep -q peer/pty/bad", testenv_bin("kmsctl"), dir, dir);
	ok(system(cmd) != 0, "the refused key does not exist");
	testenv_cleanup(dir);
	return done_testing();
}
