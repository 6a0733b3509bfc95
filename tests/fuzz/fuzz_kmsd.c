/*
 * fuzz_kmsd.c - libFuzzer target for kmsd's request path: frame parsing,
 * dispatch, every handler's body parser and the policy, against a real
 * SoftHSM2 token (provisioned once with the test fixture). Input: first
 * byte picks the role and whether a valid hello is sent first; the rest is
 * raw bytes on the socket. Like p11-kit's RPC fuzzer, it drives the real
 * dispatcher, not a copy.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kms/kmsd.h"
#include "tests/kmsenv.h"

static struct kmsd D;
static struct kmsenv E;

static void
cleanup(void)
{
	kmsenv_cleanup(&E);
}

int LLVMFuzzerInitialize(int *argc, char ***argv);

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	static char policy[512];
	const char *top = getenv("SPTSM_TOP");
	FILE *f;
	char pin[64];
	size_t n;

	(void)argc;
	(void)argv;
	log_init("fuzz_kmsd", LOG_ERR);
	if (kmsenv_setup(&E, 0) != 0)
		abort();
	atexit(cleanup);
	snprintf(policy, sizeof(policy), "%s/policy/kms.policy", top ? top : ".");
	D.cfg.policy = policy;
	D.cfg.storage_kek = "storage-kek";
	D.cfg.audit_key = "audit";
	D.cfg.idle_timeout_s = 600;
	D.epfd = -1;
	D.sealed = 1;
	if (kmsd_load_policy(&D) != 0 || audit_open(&D.audit, "/dev/null") != 0 ||
	    p11_open(&D.p, NULL, "pkcs11:token=kmsenv") != 0)
		abort();
	f = fopen(E.pinfile, "r");
	if (f == NULL || (n = fread(pin, 1, sizeof(pin), f)) == 0)
		abort();
	fclose(f);
	if (kmsd_login(&D, pin, n) != 0)
		abort();
	return 0;
}

static void
put_hello(struct buf *b)
{
	/* versions 1..KMS_PROTO_VERSION, client "fuz" */
	static const uint8_t hello[] = {
		0, 0, 0, 9, 0x00, 0x01, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0,
		0, 1, 0, KMS_PROTO_VERSION, 0, 3, 'f', 'u', 'z' };

	if (buf_put(b, hello, sizeof(hello)) != 0)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct conn *c;

	if (size == 0)
		return 0;
	c = calloc(1, sizeof(*c));
	if (c == NULL)
		abort();
	c->fd = -1;
	c->role = 1 + (data[0] & 3) % 3;
	c->uid = getuid();
	c->gid = getgid();
	c->pid = getpid();
	buf_init(&c->in);
	buf_init(&c->out);
	c->next = D.conns;
	D.conns = c;
	if (data[0] & 0x80)
		put_hello(&c->in);
	if (buf_put(&c->in, data + 1, size - 1) != 0)
		abort();
	while (kmsd_serve_input(&D, c) > 0)
		continue;
	kmsd_conn_close(&D, c);
	return 0;
}
