/*
 * seisim_fixture.h - test fixture for the SEI-TSM simulator: a peer
 * material file made from the kmsenv fixture's known test keys (TEST
 * MATERIAL), seisim processes on free ports, tsmd peers pointing at them,
 * and tsmd itself with such a peer. Header-only; include once per test.
 */
#ifndef SPTSM_SEISIM_FIXTURE_H
#define SPTSM_SEISIM_FIXTURE_H

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "kms/base.h"
#include "tests/kmsenv.h"
#include "tests/testenv.h"
#include "tsm/config.h"

#define FX_SEI_ID  "SEI-TEST"
#define FX_TENANT  "SP-TEST-0001"
#define FX_KEY_ID  "test-mac"

struct fx_sim {
	char  var[1024];
	char  ca[1100];
	char  url[128];
	char  addr[64];
	char  log[1100];
	pid_t pid;
};

static const char * __attribute__((unused))
fx_top(void)
{
	const char *t = getenv("SPTSM_TOP");

	return t != NULL ? t : ".";
}

/* In a forked child before exec: stdout and stderr to the log (a test
 * harness waits for EOF on the test's stdout, which a surviving child
 * would hold open), and SIGTERM when the test process dies. */
static void __attribute__((unused))
fx_child(const char *log)
{
	int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0600);

	if (fd >= 0) {
		dup2(fd, 1);
		dup2(fd, 2);
		close(fd);
	}
	(void)prctl(PR_SET_PDEATHSIG, SIGTERM);
}

/* GP KCV (AES(K, 01x16)[0..2]) as lowercase hex. */
static void __attribute__((unused))
fx_kcv(const uint8_t *k, size_t n, char out[7])
{
	uint8_t in[16], o[32];
	int l = 0;
	EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();

	memset(in, 1, sizeof(in));
	EVP_EncryptInit_ex(c, n == 32 ? EVP_aes_256_ecb() : n == 24 ?
	    EVP_aes_192_ecb() : EVP_aes_128_ecb(), NULL, k, NULL);
	EVP_CIPHER_CTX_set_padding(c, 0);
	EVP_EncryptUpdate(c, o, &l, in, 16);
	EVP_CIPHER_CTX_free(c);
	hex_encode(o, 3, out);
}

/* A peer material file with the kmsenv keys (transport KEK kek/klen, e.g.
 * "peer/test/kek" AES-128, and "peer/test/mac"), each as two XOR
 * components; extra is spliced into the object (e.g.
 * "\"spTransportPublicKey\": \"x.pem\"," ) or "". */
static void __attribute__((unused))
fx_material_kek(const char *path, const char *wrap, const char *kcv_method,
    const char *extra, const uint8_t *kek, size_t klen)
{
	uint8_t c1[32], c2[32];
	char h1[65], h2[65], m1[65], m2[65], kk[7], mk[7], doc[2000];
	size_t i;

	for (i = 0; i < 32; i++)
		c1[i] = (uint8_t)(0x11 * (i + 1));
	for (i = 0; i < klen; i++)
		c2[i] = kek[i] ^ c1[i];
	hex_encode(c1, klen, h1);
	hex_encode(c2, klen, h2);
	for (i = 0; i < 32; i++)
		c2[i] = kmsenv_mac[i] ^ c1[i];
	hex_encode(c1, 32, m1);
	hex_encode(c2, 32, m2);
	fx_kcv(kek, klen, kk);
	fx_kcv(kmsenv_mac, 32, mk);
	snprintf(doc, sizeof(doc), "{\"_comment\": \"TEST MATERIAL (kmsenv keys)\","
	    " \"seiTsmId\": \"" FX_SEI_ID "\", \"tenantId\": \"" FX_TENANT "\","
	    " \"wrap\": \"%s\", \"kcvMethod\": \"%s\", %s"
	    " \"transportKek\": {\"components\": [\"%s\", \"%s\"], \"kcv\": \"%s\"},"
	    " \"macKey\": {\"keyId\": \"" FX_KEY_ID "\", \"components\": [\"%s\","
	    " \"%s\"], \"kcv\": \"%s\"}}", wrap, kcv_method, extra, h1, h2, kk, m1,
	    m2, mk);
	if (file_write_atomic(path, doc, strlen(doc), 0600) != 0)
		bail("material %s", path);
}

static void __attribute__((unused))
fx_material(const char *path, const char *wrap, const char *kcv_method,
    const char *extra)
{
	fx_material_kek(path, wrap, kcv_method, extra, kmsenv_kek128, 16);
}

/* Starts seisim with its own var dir under base; extra: NULL-terminated
 * more arguments. Waits for VAR/seisim/seisim.addr. */
static void __attribute__((unused))
fx_sim_start(struct fx_sim *s, const char *base, const char *name,
    const char *material, const char *const *extra)
{
	const char *argv[48];
	char ap[1100], tok[600];
	struct buf b;
	int i, n = 0;

	memset(s, 0, sizeof(*s));
	snprintf(s->var, sizeof(s->var), "%s/%s", base, name);
	snprintf(s->ca, sizeof(s->ca), "%s/seisim/ca.pem", s->var);
	snprintf(s->log, sizeof(s->log), "%s/seisim.log", s->var);
	snprintf(ap, sizeof(ap), "%s/seisim/seisim.addr", s->var);
	snprintf(tok, sizeof(tok), "%s/tests/sim/demo/dm-token-demo.key.pem",
	    fx_top());
	if (mkdir_p(s->var, 0700) != 0)
		bail("mkdir %s", s->var);
	(void)unlink(ap);
	argv[n++] = testenv_bin("seisim");
	argv[n++] = "--var";
	argv[n++] = s->var;
	argv[n++] = "--listen";
	argv[n++] = "127.0.0.1:0";
	argv[n++] = "--material";
	argv[n++] = material;
	argv[n++] = "--token-key";
	argv[n++] = tok;
	for (i = 0; extra != NULL && extra[i] != NULL && n < 46; i++)
		argv[n++] = extra[i];
	argv[n] = NULL;
	if ((s->pid = fork()) == 0) {
		fx_child(s->log);
		execv(argv[0], (char *const *)argv);
		_exit(127);
	}
	buf_init(&b);
	for (i = 0; i < 1000; i++) {
		if (file_read_all(ap, 100, &b) == 0 && b.len > 1) {
			snprintf(s->addr, sizeof(s->addr), "%.*s", (int)b.len - 1,
			    (const char *)b.p);
			snprintf(s->url, sizeof(s->url), "https://%s", s->addr);
			buf_free(&b);
			return;
		}
		buf_reset(&b);
		if (waitpid(s->pid, NULL, WNOHANG) == s->pid)
			break;
		usleep(10000);
	}
	bail("seisim %s did not start (%s)", name, s->log);
}

/* SIGTERM and reap; returns the exit status (-1 if it did not exit). */
static int __attribute__((unused))
fx_sim_stop(struct fx_sim *s)
{
	int st = 0, i;

	if (s->pid <= 0)
		return -1;
	kill(s->pid, SIGTERM);
	for (i = 0; i < 500; i++) {
		if (waitpid(s->pid, &st, WNOHANG) == s->pid) {
			s->pid = 0;
			return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
		}
		usleep(10000);
	}
	kill(s->pid, SIGKILL);
	waitpid(s->pid, &st, 0);
	s->pid = 0;
	return -1;
}

/* tsmd's view of the simulator: a tsm_peer with the kmsenv labels. */
static void __attribute__((unused))
fx_peer(struct tsm_peer *p, struct fx_sim *s)
{
	memset(p, 0, sizeof(*p));
	p->sei_tsm_id = (char *)FX_SEI_ID;
	p->tenant_id = (char *)FX_TENANT;
	p->base_url = s->url;
	p->wrap = KMS_WRAP_AES_KW;
	p->kcv_method = KMS_KCV_GP;
	p->transport_kek = (char *)"peer/test/kek";
	p->mac_key_id = (char *)FX_KEY_ID;
	p->mac_key = (char *)"peer/test/mac";
	p->tls_ca = s->ca;
	p->client_cert_required = 0;
}

/* tsmd with one peer (the simulator at sim_url), its own var dir under
 * base; addr gets host:port. */
static pid_t __attribute__((unused))
fx_tsmd_start(const char *base, const char *kms_sock, const char *sim_url,
    const char *sim_ca, const char *wrap, const char *kcv, const char *kek,
    char *var, size_t vcap, char *addr, size_t acap)
{
	char cfg[1100], log[1100], ap[1100], doc[3000];
	const char *argv[12];
	struct buf b;
	pid_t pid;
	int i;

	snprintf(var, vcap, "%s/tsmvar", base);
	snprintf(cfg, sizeof(cfg), "%s/tsmd.json", base);
	snprintf(log, sizeof(log), "%s/tsmd.log", base);
	snprintf(ap, sizeof(ap), "%s/tsm/tsmd.addr", var);
	snprintf(doc, sizeof(doc), "{\"peers\": [{\"seiTsmId\": \"" FX_SEI_ID "\","
	    " \"tenantId\": \"" FX_TENANT "\", \"baseUrl\": \"%s\", \"wrap\": "
	    "\"%s\", \"kcvMethod\": \"%s\", \"transportKek\": \"%s\", "
	    "\"macKeyId\": \"" FX_KEY_ID "\", \"macKey\": \"peer/test/mac\", "
	    "\"tlsCa\": \"%s\", \"clientCertRequired\": false}]}", sim_url, wrap,
	    kcv, kek, sim_ca);
	if (mkdir_p(var, 0700) != 0 ||
	    file_write_atomic(cfg, doc, strlen(doc), 0600) != 0)
		bail("tsmd config");
	(void)unlink(ap);
	argv[0] = testenv_bin("tsmd");
	argv[1] = "--var";
	argv[2] = var;
	argv[3] = "--config";
	argv[4] = cfg;
	argv[5] = "--listen";
	argv[6] = "127.0.0.1:0";
	argv[7] = "--kms-socket";
	argv[8] = kms_sock;
	argv[9] = NULL;
	if ((pid = fork()) == 0) {
		fx_child(log);
		execv(argv[0], (char *const *)argv);
		_exit(127);
	}
	buf_init(&b);
	for (i = 0; i < 3000; i++) {
		if (file_read_all(ap, 100, &b) == 0 && b.len > 1) {
			snprintf(addr, acap, "%.*s", (int)b.len - 1, (const char *)b.p);
			buf_free(&b);
			return pid;
		}
		buf_reset(&b);
		if (waitpid(pid, NULL, WNOHANG) == pid)
			break;
		usleep(10000);
	}
	bail("tsmd did not start (%s)", log);
}

#endif
