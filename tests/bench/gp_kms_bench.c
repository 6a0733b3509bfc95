/*
 * gp_kms_bench.c - `make bench`: SCP03 APDUs wrapped per second at SL 33
 * through tsm/gp on three backends in one run: kmsd (gpkms), the same
 * PKCS#11 calls in-process (a backend on pkcs11/ written here) and OpenSSL
 * (gpossl). Not a test: it prints a table and a RESULT line.
 */
#include <pthread.h>
#include <ucontext.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "kms/kdf.h"
#include "kms/kms.h"
#include "tests/kmsenv.h"
#include "tests/testenv.h"
#include "tsm/gp/gp.h"
#include "tsm/gp/gp_kms.h"

/*
 * Workload: S8, AES-128, SL 33 (C-DEC + C-MAC on the command, R-MAC check +
 * R-ENC on the response); a STORE DATA-sized command (200 data bytes; 208
 * encrypted + 8 MAC on the wire) and a 64-byte answer (80 R-ENC + 8 R-MAC +
 * 9000). The card's answers are computed beforehand with OpenSSL and the
 * session keys of a reference session; every session uses the same
 * challenges (so the same keys and wire bytes), and every backend's output
 * is compared with them, so the timed loop is host work only.
 */
#define NAPDU     1000		/* APDUs per session */
#define CMD_LEN   200
#define RSP_LEN   64
#define ICV_AHEAD 32		/* as gp_kms.c */

static double secs = 1.0;
static struct kmsenv E;

static const uint8_t k_enc[16] = { 0x10, 0x21, 0x32, 0x43, 0x54, 0x65, 0x76,
	0x87, 0x98, 0xA9, 0xBA, 0xCB, 0xDC, 0xED, 0xFE, 0x0F };
static const uint8_t k_mac[16] = { 0x20, 0x31, 0x42, 0x53, 0x64, 0x75, 0x86,
	0x97, 0xA8, 0xB9, 0xCA, 0xDB, 0xEC, 0xFD, 0x0E, 0x1F };
static const uint8_t k_dek[16] = { 0x30, 0x41, 0x52, 0x63, 0x74, 0x85, 0x96,
	0xA7, 0xB8, 0xC9, 0xDA, 0xEB, 0xFC, 0x0D, 0x1E, 0x2F };
static const uint8_t host_ch[8] = { 1, 2, 3, 4, 5, 6, 7, 8 };
static const uint8_t card_ch[8] = { 0xC1, 0xC2, 0xC3, 0xC4, 0xC5, 0xC6, 0xC7,
	0xC8 };

/* The precomputed exchange. */
static struct buf iu_rsp;			/* data || 9000 */
static struct buf plain_cmd;
static struct buf wire_cmd[NAPDU], wire_rsp[NAPDU];
static uint8_t plain_rsp[RSP_LEN + 2];

static void
die(const char *what)
{
	fprintf(stderr, "gp_kms_bench: %s failed\n", what);
	exit(1);
}

static void
put(struct buf *b, const void *p, size_t n)
{
	if (buf_put(b, p, n) != 0)
		die("buf_put");
}

/* ---- PKCS#11 in-process backend (the calls kmsd makes, minus kmsd) ---- */

struct p11be {
	struct p11 *p;
	struct { p11_obj o; size_t len; int senc; struct { uint8_t base[16];
	    size_t n; uint8_t out[ICV_AHEAD][16]; } icv; } *k;
	size_t n, cap;
	int lookahead;		/* the R-ENC ICV look-ahead of gp_kms.c */
};

static int
p11be_add(struct p11be *b, p11_obj o, size_t len, gp_keyref *ref)
{
	if (b->n == b->cap) {
		size_t nc = b->cap ? 2 * b->cap : 64;
		void *nk = realloc(b->k, nc * sizeof(*b->k));

		if (nk == NULL)
			return ERR_NOMEM;
		b->k = nk;
		b->cap = nc;
	}
	memset(&b->k[b->n], 0, sizeof(b->k[b->n]));
	b->k[b->n].o = o;
	b->k[b->n].len = len;
	*ref = (gp_keyref)++b->n;
	return 0;
}

static int
p11be_get(struct p11be *b, gp_keyref r, size_t *i)
{
	if (r == 0 || r > b->n || b->k[r - 1].o == 0)
		return ERR_HANDLE;
	*i = r - 1;
	return 0;
}

struct prf { struct p11 *p; p11_obj o; };

static int
prf_cmac(void *ctx, const uint8_t *in, size_t n, uint8_t out[16])
{
	struct prf *f = ctx;

	return p11_cmac(f->p, f->o, in, n, out);
}

static int
p11_derive(void *ctx, gp_keyref base, uint8_t konst, const uint8_t *c,
    size_t clen, uint16_t lbits, gp_keyref *out)
{
	struct p11be *b = ctx;
	struct p11_keyspec s = { .usage = konst == 0x04 ?
	    (P11_ENCRYPT | P11_DECRYPT) : P11_SIGN };
	struct prf f;
	uint8_t kb[32];
	p11_obj o;
	size_t i;
	int rc;

	if ((rc = p11be_get(b, base, &i)) != 0)
		return rc;
	f.p = b->p;
	f.o = b->k[i].o;
	/* As kmsd without SP 800-108 in the token: CMACs in the token, the
	 * result imported as a session object. */
	if ((rc = kdf_scp03(prf_cmac, &f, konst, c, clen, lbits, kb)) == 0 &&
	    (rc = p11_secret_import(b->p, CKK_AES, kb, lbits / 8, &s, &o)) == 0 &&
	    (rc = p11be_add(b, o, lbits / 8, out)) == 0)
		b->k[*out - 1].senc = konst == 0x04;
	wipe(kb, sizeof(kb));
	return rc;
}

static int
p11_kdf(void *ctx, gp_keyref key, uint8_t konst, const uint8_t *c, size_t clen,
    uint16_t lbits, uint8_t *out)
{
	struct p11be *b = ctx;
	struct prf f;
	size_t i;
	int rc;

	if ((rc = p11be_get(b, key, &i)) != 0)
		return rc;
	f.p = b->p;
	f.o = b->k[i].o;
	return kdf_scp03(prf_cmac, &f, konst, c, clen, lbits, out);
}

static int
p11_mac(void *ctx, gp_keyref key, const uint8_t *d, size_t n, uint8_t mac[16])
{
	struct p11be *b = ctx;
	size_t i;
	int rc;

	if ((rc = p11be_get(b, key, &i)) != 0)
		return rc;
	return p11_cmac(b->p, b->k[i].o, d, n, mac);
}

static int
p11_enc(void *ctx, gp_keyref key, int mode, const uint8_t iv[16],
    const uint8_t *in, size_t n, uint8_t *out)
{
	struct p11be *b = ctx;
	uint8_t blk[ICV_AHEAD][16];
	size_t i, m;
	int rc, j;

	if ((rc = p11be_get(b, key, &i)) != 0)
		return rc;
	if (b->lookahead && b->k[i].senc && mode == GP_ECB && n == 16 &&
	    in[0] == 0x80) {
		/* Same look-ahead as gp_kms.c, so both make the same calls. */
		unsigned d = (unsigned)(in[14] << 8 | in[15]) -
		    (unsigned)(b->k[i].icv.base[14] << 8 | b->k[i].icv.base[15]);

		if (b->k[i].icv.n > 0 && memcmp(in, b->k[i].icv.base, 14) == 0 &&
		    d < b->k[i].icv.n) {
			memcpy(out, b->k[i].icv.out[d], 16);
			return 0;
		}
		for (m = 0; m < ICV_AHEAD; m++) {
			memcpy(blk[m], m ? blk[m - 1] : in, 16);
			for (j = 15; m > 0 && j >= 1 && ++blk[m][j] == 0; j--)
				;
		}
		if ((rc = p11_aes_encrypt(b->p, b->k[i].o, P11_ECB, NULL, &blk[0][0],
		    sizeof(blk), &b->k[i].icv.out[0][0])) != 0)
			return rc;
		memcpy(b->k[i].icv.base, in, 16);
		b->k[i].icv.n = ICV_AHEAD;
		memcpy(out, b->k[i].icv.out[0], 16);
		return 0;
	}
	return p11_aes_encrypt(b->p, b->k[i].o, mode == GP_ECB ? P11_ECB : P11_CBC,
	    iv, in, n, out);
}

static int
p11_dec(void *ctx, gp_keyref key, int mode, const uint8_t iv[16],
    const uint8_t *in, size_t n, uint8_t *out)
{
	struct p11be *b = ctx;
	size_t i;
	int rc;

	if ((rc = p11be_get(b, key, &i)) != 0)
		return rc;
	return p11_aes_decrypt(b->p, b->k[i].o, mode == GP_ECB ? P11_ECB : P11_CBC,
	    iv, in, n, out);
}

static int
p11_wrapkey(void *ctx, gp_keyref dek, gp_keyref key, uint8_t *out,
    size_t *outlen)
{
	struct p11be *b = ctx;
	size_t i, j;
	int rc;

	if ((rc = p11be_get(b, dek, &i)) != 0 || (rc = p11be_get(b, key, &j)) != 0)
		return rc;
	return p11_wrap(b->p, P11_WRAP_AES_CBC0, b->k[i].o, b->k[j].o, out, outlen);
}

static int
p11_kcvf(void *ctx, gp_keyref key, uint8_t kcv[3])
{
	static const uint8_t ones[16] = { 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
		1, 1, 1 };
	struct p11be *b = ctx;
	uint8_t out[16];
	size_t i;
	int rc;

	if ((rc = p11be_get(b, key, &i)) != 0 ||
	    (rc = p11_aes_encrypt(b->p, b->k[i].o, P11_ECB, NULL, ones, 16,
	    out)) != 0)
		return rc;
	memcpy(kcv, out, 3);
	return 0;
}

static int
p11_klen(void *ctx, gp_keyref key, size_t *len)
{
	struct p11be *b = ctx;
	size_t i;
	int rc;

	if ((rc = p11be_get(b, key, &i)) != 0)
		return rc;
	*len = b->k[i].len;
	return 0;
}

static void
p11_release(void *ctx, gp_keyref key)
{
	struct p11be *b = ctx;
	size_t i;

	if (p11be_get(b, key, &i) == 0) {
		if (p11_destroy(b->p, b->k[i].o) != 0)
			die("p11_destroy");
		memset(&b->k[i], 0, sizeof(b->k[i]));
	}
}

static void
p11be_init(struct p11be *b, struct p11 *p, int lookahead, struct gp_backend *be,
    gp_keyref *enc, gp_keyref *mac)
{
	struct p11_keyspec s = { .usage = P11_SIGN };
	p11_obj o;

	memset(b, 0, sizeof(*b));
	b->p = p;
	b->lookahead = lookahead;
	if (p11_secret_import(p, CKK_AES, k_enc, 16, &s, &o) != 0 ||
	    p11be_add(b, o, 16, enc) != 0 ||
	    p11_secret_import(p, CKK_AES, k_mac, 16, &s, &o) != 0 ||
	    p11be_add(b, o, 16, mac) != 0)
		die("p11 static keys");
	memset(be, 0, sizeof(*be));
	be->ctx = b;
	be->derive = p11_derive;
	be->kdf = p11_kdf;
	be->cmac = p11_mac;
	be->encrypt = p11_enc;
	be->decrypt = p11_dec;
	be->wrap = p11_wrapkey;
	be->kcv = p11_kcvf;
	be->key_len = p11_klen;
	be->release = p11_release;
}

static void
p11be_cleanup(struct p11be *b)
{
	size_t i;

	for (i = 0; i < b->n; i++)
		if (b->k[i].o != 0 && p11_destroy(b->p, b->k[i].o) != 0)
			die("p11_destroy");
	wipe(b->k, b->cap * sizeof(*b->k));
	free(b->k);
}

/* ---- the card's answers, computed once ---------------------------------- */

/* Card-side C-MAC chain over a wire command (gpref §1.5): CMAC(S-MAC,
 * chain || header Lc || data without the MAC). */
static void
card_chain(const struct gp_backend *be, gp_keyref smac, uint8_t chain[16],
    const struct buf *w)
{
	struct buf m;

	buf_init(&m);
	put(&m, chain, 16);
	put(&m, w->p, 5);
	put(&m, w->p + 5, w->p[4] - 8u);
	if (be->cmac(be->ctx, smac, m.p, m.len, chain) != 0)
		die("card cmac");
	if (memcmp(chain, w->p + 5 + w->p[4] - 8, 8) != 0)
		die("card: C-MAC of the reference host");
	buf_free(&m);
}

static void
precompute(void)
{
	struct gp_ossl *o = gp_ossl_new();
	struct gp_backend be;
	struct gp_scp03_cfg cfg;
	struct gp_scp03 *s;
	struct gp_scp03_info info;
	struct gp_err err;
	struct buf w, out, m;
	gp_keyref enc, mac, smac;
	uint8_t ctx[16], crypt[8], chain[16], ctr[16], icv[16], pad[80], ct[80],
	    rmac[16];
	size_t k;

	buf_init(&w);
	buf_init(&out);
	buf_init(&m);
	if (o == NULL || gp_ossl_key_add(o, k_enc, 16, &enc) != 0 ||
	    gp_ossl_key_add(o, k_mac, 16, &mac) != 0)
		die("gpossl");
	gp_ossl_backend(o, &be);
	/* IU response: KDD | KVN 30 | 03 | i 60 | card challenge | card
	 * cryptogram (random challenge, R-MAC and R-ENC offered). */
	memcpy(ctx, host_ch, 8);
	memcpy(ctx + 8, card_ch, 8);
	if (be.derive(be.ctx, mac, 0x06, ctx, 16, 128, &smac) != 0 ||
	    be.kdf(be.ctx, smac, 0x00, ctx, 16, 64, crypt) != 0)
		die("card cryptogram");
	be.release(be.ctx, smac);
	put(&iu_rsp, "\x00\x00\x00\x00\x56\x53\x00\x01\x00\x01\x30\x03\x60", 13);
	put(&iu_rsp, card_ch, 8);
	put(&iu_rsp, crypt, 8);
	put(&iu_rsp, "\x90\x00", 2);
	/* STORE DATA, 200 bytes */
	put(&plain_cmd, "\x80\xE2\x00\x00\xC8", 5);
	for (k = 0; k < CMD_LEN; k++)
		if (buf_put_u8(&plain_cmd, (uint8_t)(k * 7 + 3)) != 0)
			die("nomem");
	for (k = 0; k < RSP_LEN; k++)
		plain_rsp[k] = (uint8_t)(0xE3 ^ k);
	plain_rsp[RSP_LEN] = 0x90;
	plain_rsp[RSP_LEN + 1] = 0x00;

	memset(&cfg, 0, sizeof(cfg));
	cfg.be = &be;
	cfg.enc = enc;
	cfg.mac = mac;
	cfg.kvn = 0x30;
	cfg.sl = 0x33;
	if (gp_scp03_new(&cfg, &s, &err) != 0 ||
	    gp_scp03_begin(s, host_ch, &out, &err) != 0 ||
	    gp_scp03_auth(s, iu_rsp.p, iu_rsp.len, &w, &err) != 0 ||
	    gp_scp03_confirm(s, (const uint8_t *)"\x90\x00", 2, &err) != 0)
		die("reference session");
	gp_scp03_get_info(s, &info);
	memset(chain, 0, 16);
	card_chain(&be, info.s_mac, chain, &w);
	memset(ctr, 0, 16);
	for (k = 0; k < NAPDU; k++) {
		buf_init(&wire_cmd[k]);
		buf_init(&wire_rsp[k]);
		if (gp_scp03_wrap(s, plain_cmd.p, plain_cmd.len, &wire_cmd[k],
		    &err) != 0)
			die("reference wrap");
		card_chain(&be, info.s_mac, chain, &wire_cmd[k]);
		/* gpref §1.7: R-ENC with ICV E(S-ENC, 80 || counter[1..15]),
		 * then R-MAC over chain || ciphertext || SW. */
		ctr[15] = (uint8_t)(k + 1);
		ctr[14] = (uint8_t)((k + 1) >> 8);
		memcpy(icv, ctr, 16);
		icv[0] = 0x80;
		memset(pad, 0, sizeof(pad));
		memcpy(pad, plain_rsp, RSP_LEN);
		pad[RSP_LEN] = 0x80;
		if (be.encrypt(be.ctx, info.s_enc, GP_ECB, NULL, icv, 16, icv) != 0 ||
		    be.encrypt(be.ctx, info.s_enc, GP_CBC, icv, pad, sizeof(pad),
		    ct) != 0)
			die("card R-ENC");
		buf_reset(&m);
		put(&m, chain, 16);
		put(&m, ct, sizeof(ct));
		put(&m, "\x90\x00", 2);
		if (be.cmac(be.ctx, info.s_rmac, m.p, m.len, rmac) != 0)
			die("card R-MAC");
		put(&wire_rsp[k], ct, sizeof(ct));
		put(&wire_rsp[k], rmac, 8);
		put(&wire_rsp[k], "\x90\x00", 2);
		if (gp_scp03_unwrap(s, wire_rsp[k].p, wire_rsp[k].len, &out,
		    &err) != 0 || out.len != sizeof(plain_rsp) ||
		    memcmp(out.p, plain_rsp, out.len) != 0)
			die("reference unwrap of the card's answer");
	}
	gp_scp03_free(s);
	gp_ossl_free(o);
	buf_free(&w);
	buf_free(&out);
	buf_free(&m);
}

/* ---- the timed loop ---------------------------------------------------- */

struct run {
	const struct gp_backend *be;
	gp_keyref enc, mac;
	uint64_t  start_us, end_us;	/* shared start, deadline */
	long      apdus;
	double    busy;			/* seconds spent in the APDU loops */
	int       bad;
};

/* Sessions of NAPDU exchanges until the deadline; only the exchanges are
 * timed (session set-up is 5 requests per 1000 APDUs). Every wrapped
 * command and unwrapped response is compared with the reference. */
static void *
run_sessions(void *arg)
{
	struct run *r = arg;
	struct gp_scp03_cfg cfg;
	struct gp_scp03 *s;
	struct gp_err err;
	struct buf out;
	uint64_t t0;
	size_t k;

	buf_init(&out);
	memset(&cfg, 0, sizeof(cfg));
	cfg.be = r->be;
	cfg.enc = r->enc;
	cfg.mac = r->mac;
	cfg.kvn = 0x30;
	cfg.sl = 0x33;
	while (now_us() < r->start_us)
		;
	while (now_us() < r->end_us && !r->bad) {
		if (gp_scp03_new(&cfg, &s, &err) != 0 ||
		    gp_scp03_begin(s, host_ch, &out, &err) != 0 ||
		    gp_scp03_auth(s, iu_rsp.p, iu_rsp.len, &out, &err) != 0 ||
		    gp_scp03_confirm(s, (const uint8_t *)"\x90\x00", 2, &err) != 0) {
			fprintf(stderr, "session: %s\n", err.msg);
			r->bad = 1;
			break;
		}
		t0 = now_us();
		for (k = 0; k < NAPDU && now_us() < r->end_us; k++) {
			if (gp_scp03_wrap(s, plain_cmd.p, plain_cmd.len, &out,
			    &err) != 0 || out.len != wire_cmd[k].len ||
			    memcmp(out.p, wire_cmd[k].p, out.len) != 0 ||
			    gp_scp03_unwrap(s, wire_rsp[k].p, wire_rsp[k].len, &out,
			    &err) != 0 || out.len != sizeof(plain_rsp) ||
			    memcmp(out.p, plain_rsp, out.len) != 0) {
				fprintf(stderr, "APDU %zu: %s\n", k, err.msg);
				r->bad = 1;
				break;
			}
			r->apdus++;
		}
		r->busy += (double)(now_us() - t0) / 1e6;
		gp_scp03_free(s);
	}
	buf_free(&out);
	return NULL;
}

/* One measurement cell. */
struct cell {
	double rate;		/* APDUs/s */
	long   apdus;
	double req_apdu;	/* kmsd requests per APDU (0: not kmsd) */
	double req_write;	/* kmsd requests per write */
	double kmsd_cpu;	/* kmsd CPU seconds per second */
};

/* kmsd's CPU time so far (utime + stime), seconds. */
static double
kmsd_cpu(void)
{
	char path[64];
	unsigned long ut = 0, st = 0;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)E.pid);
	if ((f = fopen(path, "r")) == NULL)
		return 0;
	/* fields 14 and 15; the comm field (2) has no spaces here */
	if (fscanf(f, "%*d %*s %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu "
	    "%lu", &ut, &st) != 2)
		ut = st = 0;
	fclose(f);
	return (double)(ut + st) / 100.0;
}

/* One session on the calling thread. */
static struct cell
rate_single(const struct gp_backend *be, gp_keyref enc, gp_keyref mac)
{
	struct run r = { be, enc, mac, now_us(), 0, 0, 0, 0 };
	struct cell c = { 0, 0, 0, 0, 0 };

	r.end_us = r.start_us + (uint64_t)(secs * 1e6);
	run_sessions(&r);
	if (r.bad)
		die("single-session run (output differs from the reference)");
	c.rate = r.apdus / r.busy;
	c.apdus = r.apdus;
	return c;
}

/* A kmsd connection with the key set opened on it. */
struct kconn {
	struct gp_kms *g;
	struct gp_backend be;
	struct kms_keyset ks;
	gp_keyref enc, mac;
	struct gp_kms_stats st0;
	double cpu0;
};

static void
kconn_open(struct kconn *k, const struct buf *blob)
{
	struct kms_client *c;

	if (kms_connect(&c, E.sock, "gp_kms_bench") != 0 ||
	    gp_kms_new(c, &k->g) != 0)
		die("kmsd connection");
	gp_kms_backend(k->g, &k->be);
	if (gp_kms_keyset_open(k->g, blob->p, blob->len, 0, &k->ks) != 0 ||
	    gp_kms_keyset_ref(&k->ks, KMS_USE_ENC, &k->enc) != 0 ||
	    gp_kms_keyset_ref(&k->ks, KMS_USE_MAC, &k->mac) != 0)
		die("keyset.open");
	gp_kms_stats(k->g, &k->st0);
	k->cpu0 = kmsd_cpu();
}

/* Adds the connection's request counts to *c and closes it. */
static void
kconn_close(struct kconn *k, double *reqs, double *writes)
{
	struct gp_kms_stats st;

	gp_kms_stats(k->g, &st);
	*reqs += (double)(st.requests - k->st0.requests);
	*writes += (double)(st.writes - k->st0.writes);
	if (gp_kms_keyset_close(k->g, &k->ks) != 0)
		die("keyset close");
	gp_kms_free(k->g);
}

static struct cell
rate_kmsd_single(const struct buf *blob)
{
	struct kconn k;
	struct cell c;
	double reqs = 0, writes = 0, cpu;

	kconn_open(&k, blob);
	c = rate_single(&k.be, k.enc, k.mac);
	cpu = kmsd_cpu() - k.cpu0;
	kconn_close(&k, &reqs, &writes);
	c.req_apdu = reqs / (double)c.apdus;
	c.req_write = reqs / writes;
	c.kmsd_cpu = cpu / ((double)c.apdus / c.rate);
	return c;
}

/* Blocking mode: `nthr` sessions on threads over `nconn` connections. */
static struct cell
rate_threads(const struct buf *blob, int nconn, int nthr)
{
	struct kconn k[4];
	struct run r[64];
	pthread_t t[64];
	struct cell c = { 0, 0, 0, 0, 0 };
	uint64_t t0;
	long apdus = 0;
	double busy = 0, reqs = 0, writes = 0, cpu0;
	int i;

	for (i = 0; i < nconn; i++)
		kconn_open(&k[i], blob);
	cpu0 = kmsd_cpu();
	t0 = now_us() + 20000;
	for (i = 0; i < nthr; i++) {
		struct kconn *kc = &k[i % nconn];

		r[i] = (struct run){ &kc->be, kc->enc, kc->mac, t0,
		    t0 + (uint64_t)(secs * 1e6), 0, 0, 0 };
		if (pthread_create(&t[i], NULL, run_sessions, &r[i]) != 0)
			die("pthread_create");
	}
	for (i = 0; i < nthr; i++) {
		pthread_join(t[i], NULL);
		if (r[i].bad)
			die("threaded run (output differs from the reference)");
		apdus += r[i].apdus;
		if (r[i].busy > busy)
			busy = r[i].busy;
	}
	c.kmsd_cpu = (kmsd_cpu() - cpu0) / busy;
	for (i = 0; i < nconn; i++)
		kconn_close(&k[i], &reqs, &writes);
	/* The slowest thread's exchange time (set-up left out, as above). */
	c.rate = apdus / busy;
	c.req_apdu = reqs / (double)apdus;
	c.req_write = reqs / writes;
	return c;
}

/* Cooperative mode: `nco` sessions as coroutines on this thread over one
 * connection (gp_kms_set_yield / gp_kms_pump), as an event-driven tsmd
 * would run them. */
struct co {
	ucontext_t uc;
	struct run r;
	int        finished;
	char      *stack;
};

static ucontext_t sched_uc;
static struct co *co_cur;

static void
co_yield(void *ctx)
{
	(void)ctx;
	if (swapcontext(&co_cur->uc, &sched_uc) != 0)
		die("swapcontext");
}

static void
co_main(void)
{
	run_sessions(&co_cur->r);
	co_cur->finished = 1;
}

static struct cell
rate_coop(const struct buf *blob, int nco)
{
	enum { STACK = 256 * 1024 };
	struct kconn k;
	struct co *co = calloc((size_t)nco, sizeof(*co));
	struct cell c = { 0, 0, 0, 0, 0 };
	uint64_t t0;
	/* volatile: live across swapcontext (-Wclobbered) */
	volatile long apdus = 0;
	volatile double busy = 0;
	double reqs = 0, writes = 0, cpu0;
	volatile int left = nco;
	int i, pass, rc;

	if (co == NULL)
		die("nomem");
	kconn_open(&k, blob);
	gp_kms_set_yield(k.g, co_yield, NULL);
	t0 = now_us();
	for (i = 0; i < nco; i++) {
		co[i].r = (struct run){ &k.be, k.enc, k.mac, t0,
		    t0 + (uint64_t)(secs * 1e6), 0, 0, 0 };
		if ((co[i].stack = malloc(STACK)) == NULL ||
		    getcontext(&co[i].uc) != 0)
			die("coroutine");
		co[i].uc.uc_stack.ss_sp = co[i].stack;
		co[i].uc.uc_stack.ss_size = STACK;
		co[i].uc.uc_link = &sched_uc;
		makecontext(&co[i].uc, co_main, 0);
	}
	cpu0 = kmsd_cpu();
	/* Round robin: a session runs until it waits for kmsd. Once every
	 * session has queued its first request, one pump (send what is
	 * queued, read one reply) before each turn: replies come in request
	 * order, so the session in turn is the one just answered. */
	for (pass = 0; left > 0; pass++) {
		for (i = 0; i < nco; i++) {
			if (co[i].finished)
				continue;
			if (pass > 0 && (rc = gp_kms_pump(k.g)) != 0 &&
			    rc != ERR_NOTFOUND)
				die("gp_kms_pump");
			co_cur = &co[i];
			if (swapcontext(&sched_uc, &co[i].uc) != 0)
				die("swapcontext");
			if (co[i].finished)
				left--;
		}
	}
	for (i = 0; i < nco; i++) {
		if (co[i].r.bad)
			die("cooperative run (output differs from the reference)");
		apdus += co[i].r.apdus;
		if (co[i].r.busy > busy)
			busy = co[i].r.busy;
		free(co[i].stack);
	}
	c.kmsd_cpu = (kmsd_cpu() - cpu0) / busy;
	gp_kms_set_yield(k.g, NULL, NULL);
	kconn_close(&k, &reqs, &writes);
	c.rate = apdus / busy;
	c.req_apdu = reqs / (double)apdus;
	c.req_write = reqs / writes;
	free(co);
	return c;
}

/* In-process PKCS#11 on `nthr` threads (each its own session objects). */
static struct cell
rate_p11_threads(struct p11 *p, int nthr, int lookahead)
{
	struct p11be b[4];
	struct gp_backend be[4];
	struct run r[4];
	pthread_t t[4];
	struct cell c = { 0, 0, 0, 0, 0 };
	gp_keyref enc, mac;
	uint64_t t0 = now_us() + 20000;
	long apdus = 0;
	double busy = 0;
	int i;

	for (i = 0; i < nthr; i++) {
		p11be_init(&b[i], p, lookahead, &be[i], &enc, &mac);
		r[i] = (struct run){ &be[i], enc, mac, t0,
		    t0 + (uint64_t)(secs * 1e6), 0, 0, 0 };
		if (pthread_create(&t[i], NULL, run_sessions, &r[i]) != 0)
			die("pthread_create");
	}
	for (i = 0; i < nthr; i++) {
		pthread_join(t[i], NULL);
		if (r[i].bad)
			die("p11 run");
		apdus += r[i].apdus;
		if (r[i].busy > busy)
			busy = r[i].busy;
		p11be_cleanup(&b[i]);
	}
	c.rate = apdus / busy;
	return c;
}

static struct cell
rate_p11(struct p11 *p, int lookahead)
{
	struct p11be b;
	struct gp_backend be;
	struct cell c;
	gp_keyref enc, mac;

	p11be_init(&b, p, lookahead, &be, &enc, &mac);
	c = rate_single(&be, enc, mac);
	p11be_cleanup(&b);
	return c;
}

/* The key set with known values, through keyset.import (AES-KW). */
static struct buf
import_keys(struct kms_client *c)
{
	const uint8_t *keys[3] = { k_enc, k_mac, k_dek };
	struct kms_wrapped w[3];
	struct kms_keyset_kcvs kc;
	uint8_t wrapped[3][24], kcv[3][3];
	struct buf blob;
	size_t kl;
	int i;

	for (i = 0; i < 3; i++) {
		EVP_CIPHER_CTX *x = EVP_CIPHER_CTX_new();
		int l1 = 0, l2 = 0;

		EVP_CIPHER_CTX_set_flags(x, EVP_CIPHER_CTX_FLAG_WRAP_ALLOW);
		if (EVP_EncryptInit_ex(x, EVP_aes_256_wrap(), NULL, kmsenv_kek256,
		    NULL) != 1 || EVP_EncryptUpdate(x, wrapped[i], &l1, keys[i],
		    16) != 1 || EVP_EncryptFinal_ex(x, wrapped[i] + l1, &l2) != 1)
			die("AES-KW");
		EVP_CIPHER_CTX_free(x);
		if (ks_kcv_bytes(KMS_ALG_AES128, KMS_KCV_GP, keys[i], 16, kcv[i],
		    &kl) != 0)
			die("kcv");
		w[i] = (struct kms_wrapped){ (uint8_t)(KMS_USE_ENC + i), wrapped[i],
		    (size_t)(l1 + l2), kcv[i], 3 };
	}
	buf_init(&blob);
	if (kms_keyset_import(c, "peer/test/kek256", KMS_WRAP_AES_KW,
	    KMS_ALG_AES128, KMS_KCV_GP, w, 3, &blob, &kc) != 0)
		die("keyset.import");
	return blob;
}

static void
keep_max(struct cell *best, struct cell c)
{
	if (c.rate > best->rate)
		*best = c;
}

static void
row(const char *name, struct cell c)
{
	if (c.req_apdu > 0)
		printf("%-50s %9.0f %8.2f %9.1f %8.0f%%\n", name, c.rate, c.req_apdu,
		    c.req_write, 100 * c.kmsd_cpu);
	else
		printf("%-50s %9.0f %8s %9s %9s\n", name, c.rate, "-", "-", "-");
}

int
main(void)
{
	enum { MAXR = 9 };
	const char *s = getenv("BENCH_SECONDS"), *rs = getenv("BENCH_ROUNDS");
	struct gp_ossl *o;
	struct gp_backend obe;
	struct p11 *p;
	struct keystore ks;
	struct kms_client *mc;
	struct buf blob;
	gp_keyref enc, mac;
	struct cell ossl, p11e = { 0 }, p11s = { 0 }, p11x2, p11c, k1 = { 0 },
	    thr16 = { 0 }, coop16 = { 0 }, coop32 = { 0 }, thr8, thr32, thr2x16,
	    coop8, coop64, best;
	double ratio[MAXR];
	int rounds = 3, r;

	if (s != NULL && atof(s) > 0)
		secs = atof(s);
	if (rs != NULL && atoi(rs) > 0)
		rounds = atoi(rs) > MAXR ? MAXR : atoi(rs);
	log_init("gp_kms_bench", LOG_ERR);
	precompute();

	/* (c) OpenSSL in-process */
	if ((o = gp_ossl_new()) == NULL || gp_ossl_key_add(o, k_enc, 16, &enc) != 0 ||
	    gp_ossl_key_add(o, k_mac, 16, &mac) != 0)
		die("gpossl");
	gp_ossl_backend(o, &obe);
	ossl = rate_single(&obe, enc, mac);
	gp_ossl_free(o);

	if (kmsenv_setup(&E, 0) != 0 || kmsenv_start(&E, NULL) != 0)
		die("fixture");
	if (kmsenv_open_token(&E, &p, &ks) != 0)
		die("token");
	if (kms_connect(&mc, E.sock, "gp_kms_bench-mgmt") != 0)
		die("connect");
	blob = import_keys(mc);

	/* The cells the ratio is made of, in alternating rounds: this VM's
	 * neighbours move single cells by tens of percent. Best of each. */
	for (r = 0; r < rounds; r++) {
		struct cell a = rate_p11(p, 1), b = rate_coop(&blob, 16),
		    c = rate_coop(&blob, 32);

		keep_max(&p11s, a);
		keep_max(&coop16, b);
		keep_max(&coop32, c);
		ratio[r] = (b.rate > c.rate ? b.rate : c.rate) / a.rate;
		keep_max(&p11e, rate_p11(p, 0));
		keep_max(&k1, rate_kmsd_single(&blob));
		keep_max(&thr16, rate_threads(&blob, 1, 16));
	}
	p11x2 = rate_p11_threads(p, 2, 1);
	thr8 = rate_threads(&blob, 1, 8);
	thr32 = rate_threads(&blob, 1, 32);
	thr2x16 = rate_threads(&blob, 2, 16);
	coop8 = rate_coop(&blob, 8);
	coop64 = rate_coop(&blob, 64);
	/* The same calls with the getpid cache kmsd runs with (pid.c). */
	p11_pid_cache();
	p11c = rate_p11(p, 1);
	ks_free(&ks);
	p11_close(p);
	buf_free(&blob);
	kms_close(mc);
	(void)kmsenv_stop(&E, 0);
	kmsenv_cleanup(&E);

	best = coop16;
	keep_max(&best, coop32);
	qsort(ratio, (size_t)rounds, sizeof(ratio[0]), testenv_cmp_double);
	printf("SCP03 SL 33 APDUs/s: S8, AES-128, STORE DATA of 200 bytes (216 "
	    "wrapped), 64-byte answer (90 on the wire); C-DEC + C-MAC + R-MAC + "
	    "R-ENC.\nSoftHSM2 token; %.1f s per cell; cells marked * best of %d "
	    "alternating rounds.\n", secs, rounds);
	printf("%-50s %9s %8s %9s %9s\n", "backend", "APDUs/s", "req/APDU",
	    "req/write", "kmsd CPU");
	row("OpenSSL in-process (gpossl)", ossl);
	row("PKCS#11 in-process, the engine's 5 calls *", p11e);
	row("PKCS#11 in-process, same calls as kmsd (4.03) *", p11s);
	row("PKCS#11 in-process, 2 threads, same calls", p11x2);
	row("PKCS#11 in-process, same calls, kmsd's getpid cache", p11c);
	row("kmsd, 1 session *", k1);
	row("kmsd, blocking: 8 threads, 1 connection", thr8);
	row("kmsd, blocking: 16 threads, 1 connection *", thr16);
	row("kmsd, blocking: 32 threads, 1 connection", thr32);
	row("kmsd, blocking: 16 threads, 2 connections", thr2x16);
	row("kmsd, cooperative: 8 sessions, 1 thread", coop8);
	row("kmsd, cooperative: 16 sessions, 1 thread *", coop16);
	row("kmsd, cooperative: 32 sessions, 1 thread *", coop32);
	row("kmsd, cooperative: 64 sessions, 1 thread", coop64);
	printf("\nratios (goal: kmsd >= 0.67 of the same PKCS#11 calls in-process)\n");
	printf("  kmsd cooperative best / PKCS#11 same calls: %.3f (per round: "
	    "min %.3f, median %.3f, max %.3f)\n", best.rate / p11s.rate, ratio[0],
	    ratio[rounds / 2], ratio[rounds - 1]);
	printf("  kmsd cooperative best / PKCS#11 engine's 5 calls: %.3f\n",
	    best.rate / p11e.rate);
	printf("  kmsd blocking 16 threads / PKCS#11 same calls: %.3f\n",
	    thr16.rate / p11s.rate);
	printf("  kmsd 1 session / PKCS#11 same calls: %.3f\n", k1.rate / p11s.rate);
	printf("  kmsd cooperative best / PKCS#11 same calls with kmsd's getpid "
	    "cache: %.3f\n", best.rate / p11c.rate);
	printf("  PKCS#11 same calls / OpenSSL: %.3f\n", p11s.rate / ossl.rate);
	printf("RESULT gp_sl33 kmsd_per_s=%.0f p11_per_s=%.0f openssl_per_s=%.0f "
	    "ratio_kmsd_p11=%.3f kmsd_1session_per_s=%.0f "
	    "kmsd_blocking16_per_s=%.0f p11_engine_calls_per_s=%.0f "
	    "ratio_median=%.3f ratio_kmsd_p11_pidcache=%.3f\n", best.rate,
	    p11s.rate, ossl.rate, best.rate / p11s.rate, k1.rate, thr16.rate,
	    p11e.rate, ratio[rounds / 2], best.rate / p11c.rate);
	return 0;
}
