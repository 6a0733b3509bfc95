/*
 * kmsctl.c - the key custodians' tool: token initialisation with a Shamir
 * quorum over the PINs, unseal, keys from components with check values,
 * generated keys, inventory, SP 800-57 lifecycle, rotation, audit and
 * transcripts. Talks to the token directly; secrets stay in locked memory.
 * Trusts the token and its operator's terminal, not the files it reads.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <openssl/rand.h>

#include "kms/kmsctl.h"
#include "kms/proto.h"
#include "kms/shamir.h"

#define DESTROY_DELAY (7 * 24 * 3600)

static void __attribute__((format(printf, 1, 2)))
die_msg(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "kmsctl: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\n");
}

/* ---- terminal ---- */

int
ctl_interactive(void)
{
	return isatty(STDIN_FILENO);
}

int
ctl_prompt(const char *question, int secret, char *out, size_t cap)
{
	struct termios old, quiet;
	char iobuf[BUFSIZ];
	FILE *tty;
	size_t n;
	int restore = 0;

	tty = fopen("/dev/tty", "r+");
	if (tty == NULL)
		return ERR_IO;
	/* The answer (a key component) also passes through the stream's
	 * buffer: ours, so that it is wiped after fclose, not freed as is. */
	if (setvbuf(tty, iobuf, _IOLBF, sizeof(iobuf)) != 0) {
		fclose(tty);
		return ERR_IO;
	}
	/* Echo goes off before the prompt shows: typing ahead of it must not
	 * reach the screen either. */
	if (secret && tcgetattr(fileno(tty), &old) == 0) {
		quiet = old;
		quiet.c_lflag &= ~(tcflag_t)ECHO;
		restore = tcsetattr(fileno(tty), TCSAFLUSH, &quiet) == 0;
	}
	fprintf(tty, "%s", question);
	fflush(tty);
	if (fgets(out, (int)cap, tty) == NULL)
		out[0] = '\0';
	if (restore) {
		(void)tcsetattr(fileno(tty), TCSAFLUSH, &old);
		fprintf(tty, "\n");
	}
	fclose(tty);
	wipe(iobuf, sizeof(iobuf));
	n = strcspn(out, "\r\n");
	out[n] = '\0';
	return n > 0 ? 0 : ERR_INVAL;
}

/* ---- share files ---- */

struct share {
	char    serial[20];
	char    label[40];
	char    custodian[64];
	uint8_t set[8];
	uint8_t x;
	uint8_t threshold;
	uint8_t count;
	uint8_t user[CTL_PIN_RAW];
	uint8_t so[CTL_PIN_RAW];
	uint8_t check[8];
};

/* The serial in a share written before C_InitToken gave the token one. */

static void
share_digest(const struct share *s, uint8_t out[8])
{
	uint8_t d[32];
	EVP_MD_CTX *m = EVP_MD_CTX_new();
	unsigned int dl;

	if (m == NULL || EVP_DigestInit_ex(m, EVP_sha256(), NULL) != 1 ||
	    EVP_DigestUpdate(m, s->set, 8) != 1 ||
	    EVP_DigestUpdate(m, &s->x, 1) != 1 ||
	    EVP_DigestUpdate(m, s->user, sizeof(s->user)) != 1 ||
	    EVP_DigestUpdate(m, s->so, sizeof(s->so)) != 1 ||
	    EVP_DigestFinal_ex(m, d, &dl) != 1)
		memset(d, 0, sizeof(d));
	EVP_MD_CTX_free(m);
	memcpy(out, d, 8);
}

static int
share_write(const char *path, const struct share *s)
{
	char user[2 * CTL_PIN_RAW + 1], so[2 * CTL_PIN_RAW + 1], set[17],
	    chk[17], dig[17], *text = NULL;
	uint8_t d[8];
	int n, rc;

	hex_encode(s->user, sizeof(s->user), user);
	hex_encode(s->so, sizeof(s->so), so);
	hex_encode(s->set, 8, set);
	hex_encode(s->check, 8, chk);
	share_digest(s, d);
	hex_encode(d, 8, dig);
	n = asprintf(&text,
	    "# SP-TSM custodian share. Keep it offline and to yourself: any %u\n"
	    "# of the %u shares of this set rebuild the token PINs.\n"
	    "format=sptsm-share-1\ntoken-serial=%s\ntoken-label=%s\nset=%s\n"
	    "custodian=%s\nindex=%u\nthreshold=%u\ncount=%u\nuser-share=%s\n"
	    "so-share=%s\npin-check=%s\ndigest=%s\n", s->threshold, s->count,
	    s->serial, s->label, set, s->custodian, s->x, s->threshold, s->count,
	    user, so, chk, dig);
	wipe(user, sizeof(user));
	wipe(so, sizeof(so));
	if (n < 0)
		return ERR_NOMEM;
	rc = file_write_atomic(path, text, (size_t)n, 0400);
	wipe(text, (size_t)n);
	free(text);
	return rc;
}

static int
field_hex(const char *v, uint8_t *out, size_t want)
{
	size_t n;

	return hex_decode(v, strlen(v), out, want, &n) == 0 && n == want ? 0 :
	    ERR_PARSE;
}

static int
share_read(const char *path, struct share *s, char *why, size_t cap)
{
	struct buf b;
	char *line, *save = NULL, *text;
	uint8_t d[8];
	unsigned seen = 0;
	int rc;

	memset(s, 0, sizeof(*s));
	buf_init(&b);
	if ((rc = file_read_all(path, 4096, &b)) != 0) {
		snprintf(why, cap, "cannot read %s", path);
		return rc;
	}
	if (buf_put_u8(&b, 0) != 0) {
		buf_free(&b);
		return ERR_NOMEM;
	}
	text = (char *)b.p;
	rc = 0;
	for (line = strtok_r(text, "\n", &save); line && rc == 0;
	    line = strtok_r(NULL, "\n", &save)) {
		char *eq = strchr(line, '=');
		const char *k = line, *v;

		if (line[0] == '#' || eq == NULL)
			continue;
		*eq = '\0';
		v = eq + 1;
		if (strcmp(k, "format") == 0) {
			rc = strcmp(v, "sptsm-share-1") == 0 ? 0 : ERR_PARSE;
			seen |= 1;
		} else if (strcmp(k, "token-serial") == 0) {
			snprintf(s->serial, sizeof(s->serial), "%s", v);
			seen |= 2;
		} else if (strcmp(k, "token-label") == 0) {
			snprintf(s->label, sizeof(s->label), "%s", v);
		} else if (strcmp(k, "set") == 0) {
			rc = field_hex(v, s->set, 8);
			seen |= 4;
		} else if (strcmp(k, "custodian") == 0) {
			snprintf(s->custodian, sizeof(s->custodian), "%s", v);
		} else if (strcmp(k, "index") == 0) {
			s->x = (uint8_t)atoi(v);
			seen |= 8;
		} else if (strcmp(k, "threshold") == 0) {
			s->threshold = (uint8_t)atoi(v);
			seen |= 16;
		} else if (strcmp(k, "count") == 0) {
			s->count = (uint8_t)atoi(v);
		} else if (strcmp(k, "user-share") == 0) {
			rc = field_hex(v, s->user, sizeof(s->user));
			seen |= 32;
		} else if (strcmp(k, "so-share") == 0) {
			rc = field_hex(v, s->so, sizeof(s->so));
			seen |= 64;
		} else if (strcmp(k, "pin-check") == 0) {
			rc = field_hex(v, s->check, 8);
			seen |= 128;
		} else if (strcmp(k, "digest") == 0) {
			rc = field_hex(v, d, 8);
			seen |= 256;
		}
	}
	buf_free(&b);
	if (rc != 0 || seen != 511 || s->x == 0 || s->threshold == 0) {
		snprintf(why, cap, "%s is not a complete share file", path);
		wipe(s, sizeof(*s));
		return ERR_PARSE;
	}
	{
		uint8_t want[8];

		share_digest(s, want);
		if (!ct_equal(want, d, 8)) {
			snprintf(why, cap, "%s is damaged (digest mismatch)", path);
			wipe(s, sizeof(*s));
			return ERR_PARSE;
		}
	}
	return 0;
}

/* Rebuilds the user PIN (hex) from share files; checks set, token and
 * duplicates. `pinhex` must hold 2*CTL_PIN_RAW+1 bytes. */
static int
shares_combine(struct ctl *c, const char *serial, char *pinhex)
{
	struct share *sh;
	const uint8_t *ptrs[CTL_MAX_SHARES];
	uint8_t xs[CTL_MAX_SHARES], pin[CTL_PIN_RAW], chk[8];
	char why[256];
	int i, j, rc = 0;
	size_t off = 0;

	sh = secmem_alloc(sizeof(*sh) * CTL_MAX_SHARES);
	if (sh == NULL)
		return ERR_NOMEM;
	c->participants[0] = '\0';
	for (i = 0; i < c->nshares; i++) {
		if ((rc = share_read(c->share_files[i], &sh[i], why,
		    sizeof(why))) != 0) {
			die_msg("%s", why);
			goto out;
		}
		if (strcmp(sh[i].serial, KMS_SHARE_SERIAL_PENDING) == 0) {
			/* init wrote it before the token had a serial and could
			 * not rewrite it; the PIN check still binds it. */
			fprintf(stderr, "kmsctl: note: %s has token-serial=%s "
			    "(written during init); the PIN check decides\n",
			    c->share_files[i], KMS_SHARE_SERIAL_PENDING);
		} else if (!kms_share_for_token(sh[i].serial, serial)) {
			die_msg("%s is a share of token %s, not of this token (%s)",
			    c->share_files[i], sh[i].serial, serial);
			rc = ERR_AUTH;
			goto out;
		}
		for (j = 0; j < i; j++) {
			if (memcmp(sh[j].set, sh[i].set, 8) != 0) {
				die_msg("%s belongs to another share set",
				    c->share_files[i]);
				rc = ERR_AUTH;
				goto out;
			}
			if (sh[j].x == sh[i].x) {
				die_msg("share %u given twice (%s)", sh[i].x,
				    c->share_files[i]);
				rc = ERR_EXISTS;
				goto out;
			}
		}
		xs[i] = sh[i].x;
		ptrs[i] = sh[i].user;
		off += (size_t)snprintf(c->participants + off,
		    sizeof(c->participants) - off, "%s%s#%u", off ? "," : "",
		    sh[i].custodian, sh[i].x);
		if (off >= sizeof(c->participants))
			off = sizeof(c->participants) - 1;
	}
	if (c->nshares < sh[0].threshold) {
		die_msg("%d share(s) given, the quorum is %u", c->nshares,
		    sh[0].threshold);
		rc = ERR_DENIED;
		goto out;
	}
	if ((rc = shamir_combine(xs, ptrs, (unsigned)c->nshares, CTL_PIN_RAW,
	    pin)) != 0)
		goto out;
	shamir_pin_check(sh[0].set, pin, CTL_PIN_RAW, chk);
	if (!ct_equal(chk, sh[0].check, 8)) {
		die_msg("the shares do not rebuild the PIN");
		rc = ERR_AUTH;
		goto out;
	}
	hex_encode(pin, CTL_PIN_RAW, pinhex);
	c->quorum = 1;
out:
	wipe(pin, sizeof(pin));
	secmem_free(sh, sizeof(*sh) * CTL_MAX_SHARES);
	return rc;
}

/* ---- token, audit, transcripts ---- */

static int
mac_cb(void *ctx, const uint8_t *d, size_t n, uint8_t mac[32])
{
	struct ctl *c = ctx;
	struct ks_key *k = ks_find(&c->ks, "audit");
	struct ks_version *v;
	p11_obj o;
	int rc;

	if (k == NULL)
		return ERR_NOKEY;
	if ((rc = ks_version(k, 0, &v)) != 0 || (rc = ks_object(&c->ks, k, v, &o)) != 0)
		return rc;
	return p11_hmac_sha256(c->p, o, d, n, mac);
}

static int
open_audit(struct ctl *c)
{
	char dir[512], path[600];
	int rc;

	snprintf(dir, sizeof(dir), "%s/kms", c->var);
	if (mkdir_p(dir, 0700) != 0)
		return ERR_IO;
	snprintf(path, sizeof(path), "%s/audit.log", dir);
	if ((rc = audit_open(&c->audit, path)) != 0) {
		die_msg("audit log %s: %s", path, err_str(rc));
		return rc;
	}
	audit_set_mac(c->audit, mac_cb, c);
	return 0;
}

int
ctl_open(struct ctl *c)
{
	char pin[256];
	size_t pl = 0;
	uint32_t caps;
	int rc;

	if ((rc = p11_open(&c->p, c->module, c->token_uri)) != 0) {
		die_msg("no initialised token found (%s); run `kmsctl init`",
		    err_str(rc));
		return rc;
	}
	if (c->nshares > 0) {
		rc = shares_combine(c, p11_token_serial(c->p), pin);
		pl = 2 * CTL_PIN_RAW;
	} else if (c->pin_file != NULL) {
		struct buf b;
		struct stat st;

		buf_init(&b);
		if (stat(c->pin_file, &st) == 0 && (st.st_mode & 0077)) {
			die_msg("%s is readable by others; refusing", c->pin_file);
			ctl_close(c);
			return ERR_DENIED;
		}
		rc = file_read_all(c->pin_file, sizeof(pin) - 1, &b);
		if (rc == 0) {
			while (b.len && (b.p[b.len - 1] == '\n' || b.p[b.len - 1] == '\r'))
				b.len--;
			memcpy(pin, b.p, b.len);
			pl = b.len;
		} else {
			die_msg("cannot read PIN file %s", c->pin_file);
		}
		buf_free(&b);
	} else {
		die_msg("this needs the token: give the custodians' --share files "
		    "(a quorum) or --insecure-pin-file (demo/CI only)");
		ctl_close(c);
		return ERR_SEALED;
	}
	if (rc == 0 && (rc = p11_login(c->p, pin, pl)) != 0)
		die_msg("token login failed: %s", p11_last_error());
	wipe(pin, sizeof(pin));
	if (rc == 0 && ((rc = p11_probe(c->p, &caps, NULL, 0)) != 0 ||
	    (rc = ks_load(&c->ks, c->p)) != 0))
		die_msg("token not usable: %s", err_str(rc));
	if (rc == 0)
		rc = open_audit(c);
	if (rc != 0)
		ctl_close(c);
	return rc;
}

void
ctl_close(struct ctl *c)
{
	if (c->audit != NULL && audit_sync(c->audit) != 0)
		die_msg("audit sync failed");
	audit_close(c->audit);
	c->audit = NULL;
	ks_free(&c->ks);
	p11_close(c->p);
	c->p = NULL;
	json_decref(c->tr);
	c->tr = NULL;
}

void
ctl_audit(struct ctl *c, const char *op, const char *key, const char *result,
    const char *detail)
{
	char d[700];
	struct audit_rec r = { .uid = (uint32_t)getuid(), .pid = (int32_t)getpid(),
	    .role = "kmsctl", .op = op, .key = key, .result = result };
	int rc;

	snprintf(d, sizeof(d), "%s%s%s", detail ? detail : "",
	    c->participants[0] ? " participants=" : "", c->participants);
	r.detail = d;
	r.params = (const uint8_t *)d;
	r.nparams = strlen(d);
	if (c->audit == NULL)
		return;
	if ((rc = audit_log(c->audit, &r, 1)) != 0 ||
	    (rc = audit_sync(c->audit)) != 0)
		die_msg("audit write failed: %s", err_str(rc));
}

void
ctl_tr_begin(struct ctl *c, const char *ceremony)
{
	char ts[40];

	time_rfc3339(ts, sizeof(ts));
	json_decref(c->tr);
	c->tr = json_object();
	c->tr_events = json_array();
	json_object_set_new(c->tr, "format", json_string("sptsm-transcript-1"));
	json_object_set_new(c->tr, "ceremony", json_string(ceremony));
	json_object_set_new(c->tr, "started", json_string(ts));
	json_object_set_new(c->tr, "uid", json_integer(getuid()));
	json_object_set_new(c->tr, "participants", json_string(c->participants));
	if (c->p != NULL) {
		json_object_set_new(c->tr, "token", json_string(p11_token_label(c->p)));
		json_object_set_new(c->tr, "tokenSerial",
		    json_string(p11_token_serial(c->p)));
	}
	json_object_set_new(c->tr, "events", c->tr_events);
	c->tr_seq0 = c->audit ? audit_seq(c->audit) + 1 : 0;
}

void
ctl_tr_event(struct ctl *c, const char *what, const char *label,
    uint32_t version, const uint8_t *kcv, size_t kcvlen)
{
	char kh[16], ts[40];
	json_t *e;

	if (c->tr == NULL)
		return;
	hex_encode_upper(kcv, kcvlen, kh);
	time_rfc3339(ts, sizeof(ts));
	e = json_pack("{s:s, s:s, s:I, s:s, s:s}", "event", what, "label",
	    label ? label : "", "version", (json_int_t)version, "kcv", kh,
	    "time", ts);
	json_array_append_new(c->tr_events, e);
}

/* Canonical text of a MACed JSON document without its "mac" member
 * (transcripts, backups). */
char *
ctl_canonical(json_t *tr)
{
	json_t *copy = json_deep_copy(tr);
	char *s;

	json_object_del(copy, "mac");
	s = json_dumps(copy, JSON_COMPACT | JSON_SORT_KEYS);
	json_decref(copy);
	return s;
}

int
ctl_tr_end(struct ctl *c, const char *outcome)
{
	char dir[512], path[700], ts[40], name[40], machex[65];
	uint8_t mac[32];
	char *canon, *text;
	time_t now = time(NULL);
	struct tm tm;
	int rc;

	if (c->tr == NULL)
		return 0;
	time_rfc3339(ts, sizeof(ts));
	json_object_set_new(c->tr, "finished", json_string(ts));
	json_object_set_new(c->tr, "outcome", json_string(outcome));
	json_object_set_new(c->tr, "auditSeq", json_pack("[I,I]",
	    (json_int_t)c->tr_seq0, (json_int_t)(c->audit ? audit_seq(c->audit) :
	    0)));
	canon = ctl_canonical(c->tr);
	if (canon == NULL)
		return ERR_NOMEM;
	/* MACed with the audit key, so an auditor can check it through
	 * kmsd (auditor socket) or the token. */
	rc = mac_cb(c, (const uint8_t *)canon, strlen(canon), mac);
	free(canon);
	if (rc == 0) {
		hex_encode(mac, 32, machex);
		json_object_set_new(c->tr, "mac", json_string(machex));
	} else {
		json_object_set_new(c->tr, "mac", json_null());
	}
	snprintf(dir, sizeof(dir), "%s/kms/transcripts", c->var);
	if (mkdir_p(dir, 0700) != 0)
		return ERR_IO;
	gmtime_r(&now, &tm);
	strftime(name, sizeof(name), "%Y%m%dT%H%M%SZ", &tm);
	snprintf(path, sizeof(path), "%s/%s-%ld-%s.json", dir, name,
	    (long)getpid(), json_string_value(json_object_get(c->tr, "ceremony")));
	text = json_dumps(c->tr, JSON_INDENT(2) | JSON_SORT_KEYS);
	if (text == NULL)
		return ERR_NOMEM;
	rc = file_write_atomic(path, text, strlen(text), 0444);
	free(text);
	if (rc == 0)
		printf("transcript: %s\n", path);
	json_decref(c->tr);
	c->tr = NULL;
	return rc;
}

void
ctl_tr_abort(struct ctl *c, const char *outcome)
{
	if (ctl_tr_end(c, outcome) != 0)
		die_msg("transcript not written");
}

void
ctl_kmsd_reload(struct ctl *c)
{
	struct kms_client *k;
	char path[600];

	snprintf(path, sizeof(path), "%s/run/kms-custodian.sock", c->var);
	if (access(path, F_OK) != 0 || kms_connect(&k, path, "kmsctl") != 0)
		return;
	if (!kms_sealed(k) && kms_call(k, KMS_OP_RELOAD, NULL, NULL) != 0)
		die_msg("kmsd did not reload: %s", kms_last_error(k));
	kms_close(k);
}

/* ---- init ---- */

/* Custodian i's name: the i-th of the comma-separated names, or
 * "custodian<i+1>"; and its share file DIR/NAME.share (ERR_TOOBIG if the
 * path does not fit). */
static int
share_path(char *path, size_t cap, const char *dir, const char *names,
    unsigned i, char *nm, size_t nmcap)
{
	const char *p = names;
	unsigned k;
	int n;

	snprintf(nm, nmcap, "custodian%u", i + 1);
	for (k = 0; p != NULL && k < i; k++) {
		p = strchr(p, ',');
		if (p)
			p++;
	}
	if (p != NULL && *p && *p != ',')
		snprintf(nm, nmcap, "%.*s", (int)strcspn(p, ","), p);
	n = snprintf(path, cap, "%s/%s.share", dir, nm);
	return n < 0 || (size_t)n >= cap ? ERR_TOOBIG : 0;
}

static int
cmd_init(struct ctl *c, int argc, char **argv)
{
	static const struct option o[] = {
		{ "custodians", required_argument, NULL, 'n' },
		{ "threshold", required_argument, NULL, 'm' },
		{ "label", required_argument, NULL, 'l' },
		{ "names", required_argument, NULL, 'N' },
		{ "shares-dir", required_argument, NULL, 'd' },
		{ "insecure-pin-file", required_argument, NULL, 'P' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 } };
	const char *label = "sptsm", *names = NULL, *dir = NULL, *pinout = NULL;
	char sdir[512], path[CTL_MAX_SHARES][700], userhex[2 * CTL_PIN_RAW + 1],
	    sohex[2 * CTL_PIN_RAW + 1], nm[CTL_MAX_SHARES][64];
	uint8_t *sec, xs[CTL_MAX_SHARES], *ushares[CTL_MAX_SHARES],
	    *sshares[CTL_MAX_SHARES], set[8], chk[8];
	struct share *sh;
	const char *p;
	unsigned n = 0, m = 0, i;
	uint32_t v;
	size_t len;
	int opt, rc, pass, inited = 0;

	optind = 1;
	while ((opt = getopt_long(argc, argv, "h", o, NULL)) != -1) {
		switch (opt) {
		case 'n': n = (unsigned)atoi(optarg); break;
		case 'm': m = (unsigned)atoi(optarg); break;
		case 'l': label = optarg; break;
		case 'N': names = optarg; break;
		case 'd': dir = optarg; break;
		case 'P': pinout = optarg; break;
		case 'h':
			printf("usage: kmsctl init --custodians N --threshold M [--label L]\n"
			    "       [--names a,b,...] [--shares-dir DIR] [--insecure-pin-file F]\n"
			    "Initialises the token with random SO and user PINs that are never\n"
			    "shown: both are split into N Shamir shares, any M of which rebuild\n"
			    "them; each custodian's share goes to its own file (mode 0400,\n"
			    "default VAR/kms/shares/). Creates the audit key. With\n"
			    "--insecure-pin-file the user PIN is also written to F (demo/CI only).\n"
			    "Every share is written before the token is initialised (with\n"
			    "token-serial=pending, then rewritten with the serial): a share that\n"
			    "cannot be written leaves the token untouched. Existing share files\n"
			    "are never overwritten.\n");
			return 0;
		default: return 2;
		}
	}
	if (n < 1 || n > CTL_MAX_SHARES || m < 1 || m > n) {
		die_msg("need --custodians N (1-%d) and --threshold M (1..N)",
		    CTL_MAX_SHARES);
		return 2;
	}
	/* Each name becomes a file name under the shares directory. */
	for (p = names; p != NULL && *p; p += len + (p[len] == ',')) {
		len = strcspn(p, ",");
		if (len == 0 || len > 40 || p[0] == '.' ||
		    strspn(p, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
		    "0123456789._-") < len) {
			die_msg("custodian name '%.*s': 1-40 of A-Z a-z 0-9 . _ - "
			    "(not starting with a dot)", (int)(len > 60 ? 60 : len), p);
			return 2;
		}
	}
	if (dir == NULL) {
		snprintf(sdir, sizeof(sdir), "%s/kms/shares", c->var);
		dir = sdir;
	}
	if (mkdir_p(dir, 0700) != 0) {
		die_msg("cannot create %s", dir);
		return 1;
	}
	if ((rc = p11_open_uninitialized(&c->p, c->module)) != 0) {
		die_msg("no uninitialised token slot: the token exists already "
		    "(or no module): %s", err_str(rc));
		return 1;
	}
	sec = secmem_alloc(2 * CTL_PIN_RAW + 2 * CTL_MAX_SHARES * CTL_PIN_RAW);
	sh = secmem_alloc(sizeof(*sh));
	if (sec == NULL || sh == NULL) {
		rc = ERR_NOMEM;
		goto out;
	}
	for (i = 0; i < n; i++) {
		ushares[i] = sec + 2 * CTL_PIN_RAW + i * CTL_PIN_RAW;
		sshares[i] = sec + 2 * CTL_PIN_RAW + (CTL_MAX_SHARES + i) * CTL_PIN_RAW;
	}
	if (RAND_bytes(sec, 2 * CTL_PIN_RAW) != 1 || RAND_bytes(set, 8) != 1) {
		rc = ERR_CRYPTO;
		goto out;
	}
	hex_encode(sec, CTL_PIN_RAW, userhex);
	hex_encode(sec + CTL_PIN_RAW, CTL_PIN_RAW, sohex);
	if ((rc = shamir_split(sec, CTL_PIN_RAW, n, m, xs, ushares)) != 0 ||
	    (rc = shamir_split(sec + CTL_PIN_RAW, CTL_PIN_RAW, n, m, xs,
	    sshares)) != 0)
		goto out;
	shamir_pin_check(set, sec, CTL_PIN_RAW, chk);
	/* Two custodians with one name would share one file: the second
	 * share would replace the first. Nor does a share go over another
	 * token's (they may be all that opens it). */
	for (i = 0; i < n; i++) {
		unsigned k;

		if ((rc = share_path(path[i], sizeof(path[i]), dir, names, i,
		    nm[i], sizeof(nm[i]))) != 0) {
			die_msg("%s: path too long", dir);
			goto out;
		}
		for (k = 0; k < i; k++) {
			if (strcmp(nm[i], nm[k]) == 0) {
				die_msg("custodian name '%s' given twice (custodians "
				    "%u and %u); every share needs its own file",
				    nm[i], k + 1, i + 1);
				rc = ERR_EXISTS;
				goto out;
			}
		}
		if (access(path[i], F_OK) == 0 || errno != ENOENT) {
			die_msg("%s exists: kmsctl init never overwrites a share "
			    "file; move it away first (the token is untouched)",
			    path[i]);
			rc = ERR_EXISTS;
			goto out;
		}
	}
	/*
	 * Every share is on disk before the token is touched: a share that
	 * cannot be written leaves the token uninitialised, and a crash
	 * between the token's initialisation and the last share leaves only
	 * shares that rebuild its PINs. The token's serial exists only after
	 * C_InitToken, so the shares are first written with token-serial
	 * "pending" and then rewritten (each atomically) with the serial.
	 */
	for (pass = 0; pass < 2; pass++) {
		if (pass == 1 && (rc = p11_init_token(c->p, label, sohex,
		    userhex, &inited)) != 0) {
			if (inited) {
				/* The SO PIN is set: the pending shares are
				 * all that holds it. */
				die_msg("token initialisation failed after the token "
				    "took its SO PIN: %s; keep the shares in %s "
				    "(token-serial=pending): they rebuild its PINs",
				    p11_last_error(), dir);
				goto out;
			}
			die_msg("token initialisation failed: %s; the token is "
			    "untouched", p11_last_error());
			for (i = 0; i < n; i++)
				(void)unlink(path[i]);
			goto out;
		}
		for (i = 0; i < n; i++) {
			memset(sh, 0, sizeof(*sh));
			snprintf(sh->serial, sizeof(sh->serial), "%s", pass == 0 ?
			    KMS_SHARE_SERIAL_PENDING : p11_token_serial(c->p));
			snprintf(sh->label, sizeof(sh->label), "%s", label);
			snprintf(sh->custodian, sizeof(sh->custodian), "%s", nm[i]);
			memcpy(sh->set, set, 8);
			memcpy(sh->check, chk, 8);
			sh->x = xs[i];
			sh->threshold = (uint8_t)m;
			sh->count = (uint8_t)n;
			memcpy(sh->user, ushares[i], CTL_PIN_RAW);
			memcpy(sh->so, sshares[i], CTL_PIN_RAW);
			if ((rc = share_write(path[i], sh)) == 0)
				continue;
			if (pass == 0) {
				die_msg("cannot write %s: %s; the token is untouched",
				    path[i], err_str(rc));
				while (i-- > 0)
					(void)unlink(path[i]);
				goto out;
			}
			/* The pending version is still there and still
			 * rebuilds the PINs (unseal accepts it). */
			fprintf(stderr, "kmsctl: warning: cannot rewrite %s with the "
			    "token serial (%s); it keeps token-serial=%s and still "
			    "works\n", path[i], err_str(rc), KMS_SHARE_SERIAL_PENDING);
			rc = 0;
		}
	}
	for (i = 0; i < n; i++)
		printf("share %u of %u (quorum %u) for %s: %s\n", i + 1, n, m,
		    nm[i], path[i]);
	/* Replaces an older PIN file only once the new one is on disk. */
	if (pinout != NULL) {
		if ((rc = file_write_atomic(pinout, userhex, strlen(userhex),
		    0400)) != 0) {
			die_msg("cannot write %s", pinout);
			goto out;
		}
		printf("INSECURE: user PIN written to %s (demo/CI only)\n", pinout);
	}
	/* The audit key first, so every later record is MACed. */
	if ((rc = p11_login(c->p, userhex, strlen(userhex))) != 0 ||
	    (rc = p11_probe(c->p, &(uint32_t){ 0 }, NULL, 0)) != 0 ||
	    (rc = ks_load(&c->ks, c->p)) != 0 ||
	    (rc = ks_generate(&c->ks, "audit", KS_AUDIT, 0, 0, 0, &v)) != 0 ||
	    (rc = open_audit(c)) != 0) {
		die_msg("audit key creation failed: %s", p11_last_error());
		goto out;
	}
	snprintf(c->participants, sizeof(c->participants), "%u custodians, "
	    "quorum %u", n, m);
	ctl_tr_begin(c, "init");
	ctl_audit(c, "token.init", label, "ok", p11_token_serial(c->p));
	ctl_audit(c, "key.generate", "audit#1", "ok", "class=audit");
	ctl_tr_event(c, "token initialised", label, 0, NULL, 0);
	ctl_tr_event(c, "key generated (audit)", "audit", v, NULL, 0);
	rc = ctl_tr_end(c, "ok");
	printf("token '%s' (serial %s) initialised; PINs split %u-of-%u\n", label,
	    p11_token_serial(c->p), m, n);
out:
	wipe(userhex, sizeof(userhex));
	wipe(sohex, sizeof(sohex));
	secmem_free(sec, 2 * CTL_PIN_RAW + 2 * CTL_MAX_SHARES * CTL_PIN_RAW);
	secmem_free(sh, sizeof(*sh));
	ctl_close(c);
	return rc ? 1 : 0;
}

/* ---- unseal (through kmsd) ---- */

static int
cmd_unseal(struct ctl *c, int argc, char **argv)
{
	struct kms_client *k;
	struct share *sh;
	char path[600], why[256], sethex[17], fn[512];
	struct buf b, rep;
	int i, rc = 0, total;

	if (argc > 1 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
		printf("usage: kmsctl [--share FILE]... unseal\n"
		    "Each custodian submits a share to the sealed kmsd over the custodian\n"
		    "socket; kmsd shows the progress (k of M) and, at the quorum, rebuilds\n"
		    "the PIN in locked memory, logs in, and wipes the PIN and the shares.\n"
		    "Without --share, the share file paths are asked for on the terminal.\n");
		return 0;
	}
	snprintf(path, sizeof(path), "%s/run/kms-custodian.sock", c->var);
	if ((rc = kms_connect(&k, path, "kmsctl-unseal")) != 0) {
		die_msg("cannot reach kmsd at %s", path);
		return 1;
	}
	if (!kms_sealed(k)) {
		printf("kmsd is not sealed\n");
		kms_close(k);
		return 0;
	}
	sh = secmem_alloc(sizeof(*sh));
	if (sh == NULL) {
		kms_close(k);
		return 1;
	}
	buf_init(&b);
	buf_init(&rep);
	total = c->nshares > 0 ? c->nshares : CTL_MAX_SHARES;
	for (i = 0; i < total; i++) {
		const char *file;

		if (c->nshares > 0) {
			file = c->share_files[i];
		} else {
			if (ctl_prompt("share file (empty to stop): ", 0, fn,
			    sizeof(fn)) != 0)
				break;
			file = fn;
		}
		if ((rc = share_read(file, sh, why, sizeof(why))) != 0) {
			die_msg("%s", why);
			break;
		}
		hex_encode(sh->set, 8, sethex);
		buf_reset(&b);
		if (buf_put_str(&b, sethex) || buf_put_str(&b, sh->serial) ||
		    buf_put_u8(&b, sh->threshold) || buf_put_u8(&b, sh->x) ||
		    buf_put_lv16(&b, sh->user, CTL_PIN_RAW) ||
		    buf_put(&b, sh->check, 8)) {
			rc = ERR_NOMEM;
			break;
		}
		rc = kms_call(k, KMS_OP_UNSEAL, &b, &rep);
		buf_reset(&b);
		if (rc != 0) {
			die_msg("share %u (%s) refused: %s", sh->x, sh->custodian,
			    kms_last_error(k));
			break;
		}
		if (rep.len == 3) {
			printf("share %u (%s) accepted: %u of %u%s\n", sh->x,
			    sh->custodian, rep.p[0], rep.p[1],
			    rep.p[2] ? "" : " - kmsd is unsealed");
			if (rep.p[2] == 0)
				break;
		}
	}
	secmem_free(sh, sizeof(*sh));
	buf_free(&b);
	buf_free(&rep);
	kms_close(k);
	if (rc == 0 && kms_connect(&k, path, "kmsctl-unseal") == 0) {
		rc = kms_sealed(k) ? ERR_SEALED : 0;
		if (rc)
			die_msg("kmsd is still sealed: fewer shares than the quorum");
		kms_close(k);
	}
	return rc ? 1 : 0;
}

static int
cmd_status(struct ctl *c)
{
	struct kms_client *k;
	struct kms_status st;
	char path[600];

	snprintf(path, sizeof(path), "%s/run/kms-custodian.sock", c->var);
	if (kms_connect(&k, path, "kmsctl") != 0 || kms_status(k, &st) != 0) {
		die_msg("kmsd not reachable at %s", path);
		return 1;
	}
	if (c->json)
		printf("{\"sealed\":%s,\"token\":\"%s\",\"serial\":\"%s\",\"keys\":%u,"
		    "\"auditSeq\":%llu,\"connections\":%u,\"handles\":%u}\n",
		    st.sealed ? "true" : "false", st.token, st.serial, st.keys,
		    (unsigned long long)st.audit_seq, st.connections, st.handles);
	else
		printf("kmsd: %s, token %s (serial %s), %u keys, audit seq %llu, "
		    "%u connections, %u handles\n", st.sealed ? "SEALED" : "unsealed",
		    st.token, st.serial, st.keys, (unsigned long long)st.audit_seq,
		    st.connections, st.handles);
	kms_close(k);
	return 0;
}

/* ---- keys ---- */

struct comp_type {
	const char *name;
	int alg;
	size_t len;
};

static const struct comp_type comp_types[] = {
	{ "aes128", KMS_ALG_AES128, 16 },
	{ "aes256", KMS_ALG_AES256, 32 },
	{ "des3", KMS_ALG_DES3, 24 },
	{ "hmac", KMS_ALG_HMAC, 32 },
};

/* KCV of a component or key: GP method; HMAC keys are checked as if they
 * were AES keys of their length (how their custodians compute it). */
static int
comp_kcv(int alg, const uint8_t *k, size_t n, uint8_t kcv[3])
{
	size_t kl;

	return ks_kcv_bytes(alg == KMS_ALG_HMAC ? KMS_ALG_AES256 : alg, KMS_KCV_GP,
	    k, n, kcv, &kl);
}

/* "component=HEX" and optional "kcv=HEX" lines. */
static int
comp_file(const char *path, uint8_t *out, size_t want, uint8_t kcv[3],
    int *has_kcv)
{
	struct buf b;
	char *line, *save = NULL;
	size_t n;
	int rc, got = 0;

	*has_kcv = 0;
	buf_init(&b);
	if ((rc = file_read_all(path, 4096, &b)) != 0 || buf_put_u8(&b, 0) != 0) {
		buf_free(&b);
		return rc ? rc : ERR_NOMEM;
	}
	for (line = strtok_r((char *)b.p, "\n", &save); line;
	    line = strtok_r(NULL, "\n", &save)) {
		line[strcspn(line, "\r")] = '\0';
		if (strncmp(line, "component=", 10) == 0) {
			if (hex_decode(line + 10, strlen(line + 10), out, want, &n) != 0 ||
			    n != want) {
				rc = ERR_PARSE;
				break;
			}
			got = 1;
		} else if (strncmp(line, "kcv=", 4) == 0) {
			if (hex_decode(line + 4, strlen(line + 4), kcv, 3, &n) != 0 ||
			    n != 3) {
				rc = ERR_PARSE;
				break;
			}
			*has_kcv = 1;
		}
	}
	buf_free(&b);
	return rc ? rc : got ? 0 : ERR_PARSE;
}

static int
cmd_import_components(struct ctl *c, int argc, char **argv)
{
	static const struct option o[] = {
		{ "label", required_argument, NULL, 'l' },
		{ "type", required_argument, NULL, 't' },
		{ "class", required_argument, NULL, 'c' },
		{ "components", required_argument, NULL, 'n' },
		{ "component-file", required_argument, NULL, 'f' },
		{ "confirm-kcv", required_argument, NULL, 'k' },
		{ "rotate", no_argument, NULL, 'r' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 } };
	const char *label = NULL, *type = NULL, *cls = NULL, *confirm = NULL,
	    *files[16];
	const struct comp_type *ct = NULL;
	uint8_t *key, *comp, kcv[3], want[3];
	char line[256], kh[8];
	int nf = 0, ncomp = 0, opt, rc = 0, i, cl, rotate = 0, has;
	uint32_t v;
	size_t j, n;

	optind = 1;
	while ((opt = getopt_long(argc, argv, "h", o, NULL)) != -1) {
		switch (opt) {
		case 'l': label = optarg; break;
		case 't': type = optarg; break;
		case 'c': cls = optarg; break;
		case 'n': ncomp = atoi(optarg); break;
		case 'f':
			if (nf < 16)
				files[nf++] = optarg;
			break;
		case 'k': confirm = optarg; break;
		case 'r': rotate = 1; break;
		case 'h':
			printf("usage: kmsctl --share F... key import-components --label L\n"
			    "       --type aes128|aes256|des3|hmac --class C --components N\n"
			    "       [--component-file F]... [--confirm-kcv KCV] [--rotate]\n"
			    "Each custodian enters a key component and its check value (input\n"
			    "is not echoed); each component is checked against its KCV, the\n"
			    "components are XORed in locked memory, and the combined KCV must\n"
			    "be confirmed before the key is created in the token. Classes:\n"
			    "transport-kek, mac, backup-kek, master. For automation, components\n"
			    "come from files ('component=HEX' and 'kcv=HEX' lines) and the\n"
			    "combined KCV from --confirm-kcv. KCVs: AES(K, 01x16) first 3 bytes;\n"
			    "3DES(K, 00x8); HMAC keys as AES-256 keys.\n");
			return 0;
		default: return 2;
		}
	}
	for (j = 0; type && j < ARRAY_LEN(comp_types); j++)
		if (strcmp(type, comp_types[j].name) == 0)
			ct = &comp_types[j];
	cl = cls ? ks_class_parse(cls) : KS_NONE;
	if (label == NULL || ct == NULL || ncomp < 2 || ncomp > 16 ||
	    (cl != KS_TRANSPORT_KEK && cl != KS_MAC && cl != KS_BACKUP_KEK &&
	    cl != KS_MASTER) || (nf > 0 && nf != ncomp) ||
	    ((cl == KS_MAC) != (ct->alg == KMS_ALG_HMAC))) {
		die_msg("need --label, --type aes128|aes256|des3|hmac, --class "
		    "transport-kek|mac|backup-kek|master (mac with hmac), and "
		    "--components N (2-16; as many --component-file as N if given)");
		return 2;
	}
	if (nf == 0 && !ctl_interactive()) {
		die_msg("components are entered on a terminal, or given with "
		    "--component-file");
		return 2;
	}
	if (ctl_open(c) != 0)
		return 1;
	key = secmem_alloc(ct->len);
	comp = secmem_alloc(ct->len);
	if (key == NULL || comp == NULL) {
		rc = ERR_NOMEM;
		goto out;
	}
	ctl_tr_begin(c, "import-components");
	for (i = 0; i < ncomp; i++) {
		if (nf > 0) {
			if ((rc = comp_file(files[i], comp, ct->len, want, &has)) != 0) {
				die_msg("%s: not a component file of %zu bytes", files[i],
				    ct->len);
				goto fail;
			}
		} else {
			char q[96];

			snprintf(q, sizeof(q), "custodian %d, component (hex, hidden): ",
			    i + 1);
			if (ctl_prompt(q, 1, line, sizeof(line)) != 0 ||
			    hex_decode(line, strlen(line), comp, ct->len, &n) != 0 ||
			    n != ct->len) {
				wipe(line, sizeof(line));
				die_msg("component %d: %zu hex digits expected", i + 1,
				    2 * ct->len);
				rc = ERR_PARSE;
				goto fail;
			}
			wipe(line, sizeof(line));
			snprintf(q, sizeof(q), "custodian %d, component KCV: ", i + 1);
			has = ctl_prompt(q, 0, line, sizeof(line)) == 0 &&
			    hex_decode(line, strlen(line), want, 3, &n) == 0 && n == 3;
			if (!has) {
				die_msg("component %d: a 6-digit KCV is required", i + 1);
				rc = ERR_PARSE;
				goto fail;
			}
		}
		if ((rc = comp_kcv(ct->alg, comp, ct->len, kcv)) != 0)
			goto fail;
		hex_encode_upper(kcv, 3, kh);
		if (!has || !ct_equal(kcv, want, 3)) {
			die_msg("component %d: its KCV is %s, %s", i + 1, kh,
			    has ? "not the one given: nothing created" :
			    "but none was given");
			ctl_audit(c, "key.component", label, "error", "KCV mismatch");
			rc = ERR_KCV;
			goto fail;
		}
		printf("component %d accepted (KCV %s)\n", i + 1, kh);
		for (j = 0; j < ct->len; j++)
			key[j] ^= comp[j];
		wipe(comp, ct->len);
		ctl_tr_event(c, "component accepted", label, (uint32_t)(i + 1), kcv, 3);
	}
	if ((rc = comp_kcv(ct->alg, key, ct->len, kcv)) != 0)
		goto fail;
	hex_encode_upper(kcv, 3, kh);
	printf("combined key KCV: %s\n", kh);
	if (confirm == NULL) {
		if (!ctl_interactive() || ctl_prompt("type the combined KCV to "
		    "confirm: ", 0, line, sizeof(line)) != 0)
			line[0] = '\0';
		confirm = line;
	}
	if (hex_decode(confirm, strlen(confirm), want, 3, &n) != 0 || n != 3 ||
	    !ct_equal(want, kcv, 3)) {
		die_msg("combined KCV not confirmed: nothing created");
		ctl_audit(c, "key.import-components", label, "error",
		    "combined KCV not confirmed");
		rc = ERR_KCV;
		goto fail;
	}
	rc = ks_import_secret(&c->ks, label, cl, ct->alg, key, ct->len, kcv, rotate,
	    &v);
	if (rc != 0) {
		die_msg("key creation failed: %s (%s)", err_str(rc), p11_last_error());
		goto fail;
	}
	{
		char kl[KS_LABEL_MAX + 16], det[96];

		snprintf(kl, sizeof(kl), "%s#%u", label, v);
		snprintf(det, sizeof(det), "class=%s components=%d kcv=%s", cls,
		    ncomp, kh);
		ctl_audit(c, "key.import-components", kl, "ok", det);
	}
	ctl_tr_event(c, "key created from components", label, v, kcv, 3);
	printf("key '%s' version %u created (class %s, KCV %s)\n", label, v, cls, kh);
	rc = ctl_tr_end(c, "ok");
	ctl_kmsd_reload(c);
	goto out;
fail:
	ctl_tr_abort(c, "failed");
out:
	secmem_free(key, ct->len);
	secmem_free(comp, ct->len);
	ctl_close(c);
	return rc ? 1 : 0;
}

static int
cmd_generate(struct ctl *c, int argc, char **argv)
{
	static const struct option o[] = {
		{ "label", required_argument, NULL, 'l' },
		{ "class", required_argument, NULL, 'c' },
		{ "alg", required_argument, NULL, 'a' },
		{ "pre-active", no_argument, NULL, 'p' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 } };
	const char *label = NULL, *cls = NULL;
	char kh[8], kl[KS_LABEL_MAX + 16];
	struct ks_key *k;
	struct ks_version *ver;
	int opt, alg = 0, pre = 0, cl, rc;
	uint32_t v;

	optind = 1;
	while ((opt = getopt_long(argc, argv, "h", o, NULL)) != -1) {
		switch (opt) {
		case 'l': label = optarg; break;
		case 'c': cls = optarg; break;
		case 'a': alg = kms_alg_parse(optarg);
			if (alg == 0) {
				die_msg("unknown --alg %s", optarg);
				return 2;
			}
			break;
		case 'p': pre = 1; break;
		case 'h':
			printf("usage: kmsctl key generate --label L --class C [--alg A] "
			    "[--pre-active]\n"
			    "Classes and their token attributes (ARCHITECTURE.md):\n"
			    "  storage-kek   AES-256, wrap/unwrap, backup-eligible\n"
			    "  audit         HMAC-SHA256 key, sign/verify, backup-eligible\n"
			    "  backup-kek    AES-256, wrap/unwrap, never extractable\n"
			    "  master        AES-128 (--alg AES-256), derive only, backup-eligible\n"
			    "  ca            EC P-256 (--alg EC-P384), sign, backup-eligible\n"
			    "  transport-rsa RSA-3072 pair, unwrap, never extractable\n"
			    "  mac           HMAC-SHA256 key, sign/verify, never extractable\n"
			    "  transport-kek AES-128 (AES-256), unwrap only\n"
			    "All secret keys are sensitive; versions start at 1.\n");
			return 0;
		default: return 2;
		}
	}
	cl = cls ? ks_class_parse(cls) : KS_NONE;
	if (label == NULL || cl == KS_NONE || cl == KS_KEYSET || cl == KS_SESSION) {
		die_msg("need --label and --class (see --help)");
		return 2;
	}
	if (ctl_open(c) != 0)
		return 1;
	ctl_tr_begin(c, "generate");
	rc = ks_generate(&c->ks, label, cl, alg, 0, pre, &v);
	if (rc != 0) {
		die_msg("cannot generate '%s': %s%s", label, err_str(rc),
		    rc == ERR_EXISTS ? " (use `key rotate` for a new version)" : "");
		ctl_audit(c, "key.generate", label, "error", err_str(rc));
		ctl_tr_abort(c, "failed");
		ctl_close(c);
		return 1;
	}
	k = ks_find(&c->ks, label);
	if (k == NULL || ks_version(k, v, &ver) != 0) {
		ctl_close(c);
		return 1;
	}
	hex_encode_upper(ver->kcv, ver->kcvlen, kh);
	snprintf(kl, sizeof(kl), "%s#%u", label, v);
	ctl_audit(c, "key.generate", kl, "ok", cls);
	ctl_tr_event(c, "key generated", label, v, ver->kcv, ver->kcvlen);
	printf("key '%s' version %u generated (%s, %s%s%s)\n", label, v, cls,
	    kms_alg_name(k->alg), ver->kcvlen ? ", KCV " : "", kh);
	rc = ctl_tr_end(c, "ok");
	ctl_kmsd_reload(c);
	ctl_close(c);
	return rc ? 1 : 0;
}

static int
cmd_rotate(struct ctl *c, int argc, char **argv)
{
	struct ks_key *k;
	struct ks_version *ver;
	char kl[KS_LABEL_MAX + 16], kh[8];
	uint32_t v;
	int rc;

	if (argc < 3 || strcmp(argv[1], "--label") != 0) {
		printf("usage: kmsctl key rotate --label L\n"
		    "Creates version N+1 of a generated key and makes it the one used\n"
		    "for new work; older versions stay usable for what they protect\n"
		    "until archived (for the storage KEK, `kmsctl rewrap` does that).\n");
		return argc >= 2 && strcmp(argv[1], "--help") == 0 ? 0 : 2;
	}
	if (ctl_open(c) != 0)
		return 1;
	k = ks_find(&c->ks, argv[2]);
	if (k == NULL) {
		die_msg("no key labelled '%s'", argv[2]);
		ctl_close(c);
		return 1;
	}
	ctl_tr_begin(c, "rotate");
	rc = ks_generate(&c->ks, argv[2], k->cls, k->alg, 1, 0, &v);
	if (rc == 0 && (k = ks_find(&c->ks, argv[2])) != NULL &&
	    ks_version(k, v, &ver) == 0) {
		hex_encode_upper(ver->kcv, ver->kcvlen, kh);
		snprintf(kl, sizeof(kl), "%s#%u", argv[2], v);
		ctl_audit(c, "key.rotate", kl, "ok", NULL);
		ctl_tr_event(c, "key rotated", argv[2], v, ver->kcv, ver->kcvlen);
		printf("key '%s' now at version %u (KCV %s)\n", argv[2], v, kh);
		rc = ctl_tr_end(c, "ok");
		ctl_kmsd_reload(c);
	} else {
		die_msg("rotation failed: %s", err_str(rc));
		ctl_audit(c, "key.rotate", argv[2], "error", err_str(rc));
		ctl_tr_abort(c, "failed");
	}
	ctl_close(c);
	return rc ? 1 : 0;
}

static void
fmt_time(int64_t t, char *out, size_t cap)
{
	time_t tt = (time_t)t;
	struct tm tm;

	if (t == 0) {
		snprintf(out, cap, "-");
		return;
	}
	gmtime_r(&tt, &tm);
	strftime(out, cap, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static int
cmd_list(struct ctl *c, int argc, char **argv)
{
	json_t *arr;
	size_t i, j;

	if (argc > 1 && strcmp(argv[1], "--json") == 0)
		c->json = 1;
	else if (argc > 1) {
		printf("usage: kmsctl key list [--json]\n"
		    "Label, class, algorithm, version, state, KCV, dates, and the\n"
		    "token's own attributes of each version.\n");
		return strcmp(argv[1], "--help") == 0 ? 0 : 2;
	}
	if (ctl_open(c) != 0)
		return 1;
	arr = json_array();
	if (!c->json)
		printf("%-26s %-13s %-11s %3s %-19s %-6s %-20s %s\n", "LABEL", "CLASS",
		    "ALG", "VER", "STATE", "KCV", "CREATED", "TOKEN ATTRIBUTES");
	for (i = 0; i < c->ks.n; i++) {
		struct ks_key *k = &c->ks.keys[i];

		for (j = 0; j < k->nvers; j++) {
			struct ks_version *v = &k->vers[j];
			int sens = 0, asens = 0, nex = 0, local = 0, ext = 0;
			char kh[16], cr[32], ch[32], attrs[96] = "-";
			p11_obj o;

			hex_encode_upper(v->kcv, v->kcvlen, kh);
			fmt_time(v->created, cr, sizeof(cr));
			fmt_time(v->changed, ch, sizeof(ch));
			if (v->state != KMS_ST_DESTROYED &&
			    ks_object(&c->ks, k, v, &o) == 0 &&
			    p11_attr_bool(c->p, o, CKA_SENSITIVE, &sens) == 0 &&
			    p11_attr_bool(c->p, o, CKA_ALWAYS_SENSITIVE, &asens) == 0 &&
			    p11_attr_bool(c->p, o, CKA_NEVER_EXTRACTABLE, &nex) == 0 &&
			    p11_attr_bool(c->p, o, CKA_EXTRACTABLE, &ext) == 0 &&
			    p11_attr_bool(c->p, o, CKA_LOCAL, &local) == 0)
				snprintf(attrs, sizeof(attrs), "%s%s%s%s%s",
				    sens ? "sensitive " : "READABLE ",
				    asens ? "always-sensitive " : "",
				    ext ? "extractable " : "",
				    nex ? "never-extractable " : "",
				    local ? "local" : "");
			if (c->json) {
				json_array_append_new(arr, json_pack(
				    "{s:s, s:s, s:s, s:I, s:b, s:s, s:s, s:s, s:s, s:s, "
				    "s:{s:b, s:b, s:b, s:b, s:b}}",
				    "label", k->label, "class", ks_class_name(k->cls),
				    "alg", kms_alg_name(k->alg), "version",
				    (json_int_t)v->v, "current", v->v == k->current,
				    "state", kms_state_name(v->state), "kcv", kh,
				    "created", cr, "changed", ch, "reason", v->reason,
				    "token", "sensitive", sens, "alwaysSensitive", asens,
				    "extractable", ext, "neverExtractable", nex,
				    "local", local));
			} else {
				printf("%-26s %-13s %-11s %3u%s %-19s %-6s %-20s %s\n",
				    k->label, ks_class_name(k->cls), kms_alg_name(k->alg),
				    v->v, v->v == k->current ? "*" : " ",
				    kms_state_name(v->state), kh, cr, attrs);
			}
		}
	}
	if (c->json) {
		char *s = json_dumps(arr, JSON_INDENT(2));

		printf("%s\n", s ? s : "[]");
		free(s);
	}
	json_decref(arr);
	ctl_close(c);
	return 0;
}

static int
cmd_export_public(struct ctl *c, int argc, char **argv)
{
	static const struct option o[] = {
		{ "label", required_argument, NULL, 'l' },
		{ "version", required_argument, NULL, 'v' },
		{ "out", required_argument, NULL, 'o' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 } };
	const char *label = NULL, *out = NULL;
	struct ks_key *k;
	struct ks_version *v;
	struct buf a, b;
	EVP_PKEY *pk = NULL;
	EVP_PKEY_CTX *pc = NULL;
	OSSL_PARAM_BLD *bld = NULL;
	OSSL_PARAM *params = NULL;
	BIGNUM *n = NULL, *e = NULL;
	uint32_t ver = 0;
	p11_obj po;
	unsigned bits;
	int opt, rc = 1;
	FILE *f = stdout;

	optind = 1;
	while ((opt = getopt_long(argc, argv, "h", o, NULL)) != -1) {
		switch (opt) {
		case 'l': label = optarg; break;
		case 'v': ver = (uint32_t)atoi(optarg); break;
		case 'o': out = optarg; break;
		case 'h':
			printf("usage: kmsctl key export-public --label L [--version V] "
			    "[--out FILE]\nWrites the public key of a CA or transport-RSA "
			    "key as PEM (SubjectPublicKeyInfo).\n");
			return 0;
		default: return 2;
		}
	}
	if (label == NULL) {
		die_msg("need --label");
		return 2;
	}
	if (ctl_open(c) != 0)
		return 1;
	buf_init(&a);
	buf_init(&b);
	k = ks_find(&c->ks, label);
	if (k == NULL || ks_version(k, ver, &v) != 0 ||
	    ks_public(&c->ks, k, v, &po) != 0) {
		die_msg("no public key for '%s'", label);
		goto out;
	}
	bld = OSSL_PARAM_BLD_new();
	if (k->cls == KS_CA) {
		if (p11_ec_public(c->p, po, &bits, &a) != 0)
			goto out;
		OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME,
		    bits == 256 ? "prime256v1" : "secp384r1", 0);
		OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, a.p,
		    a.len);
		pc = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
	} else {
		if (p11_rsa_public(c->p, po, &a, &b) != 0)
			goto out;
		n = BN_bin2bn(a.p, (int)a.len, NULL);
		e = BN_bin2bn(b.p, (int)b.len, NULL);
		OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, n);
		OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, e);
		pc = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL);
	}
	params = OSSL_PARAM_BLD_to_param(bld);
	if (pc == NULL || EVP_PKEY_fromdata_init(pc) != 1 ||
	    EVP_PKEY_fromdata(pc, &pk, EVP_PKEY_PUBLIC_KEY, params) != 1)
		goto out;
	if (out != NULL && (f = fopen(out, "w")) == NULL) {
		die_msg("cannot write %s", out);
		goto out;
	}
	if (PEM_write_PUBKEY(f, pk) == 1)
		rc = 0;
	if (out != NULL)
		fclose(f);
	ctl_audit(c, "key.export-public", label, rc ? "error" : "ok", out);
out:
	EVP_PKEY_free(pk);
	EVP_PKEY_CTX_free(pc);
	OSSL_PARAM_free(params);
	OSSL_PARAM_BLD_free(bld);
	BN_free(n);
	BN_free(e);
	buf_free(&a);
	buf_free(&b);
	ctl_close(c);
	return rc;
}

/* activate | suspend | archive | revoke | destroy | cancel-destroy */
static int
cmd_lifecycle(struct ctl *c, const char *verb, int argc, char **argv)
{
	static const struct option o[] = {
		{ "label", required_argument, NULL, 'l' },
		{ "version", required_argument, NULL, 'v' },
		{ "reason", required_argument, NULL, 'r' },
		{ "now", no_argument, NULL, 'n' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 } };
	const char *label = NULL, *reason = NULL;
	struct ks_key *k;
	struct ks_version *v;
	char kl[KS_LABEL_MAX + 16], det[200];
	uint32_t ver = 0;
	int opt, now = 0, rc, to = 0;

	optind = 1;
	while ((opt = getopt_long(argc, argv, "h", o, NULL)) != -1) {
		switch (opt) {
		case 'l': label = optarg; break;
		case 'v': ver = (uint32_t)atoi(optarg); break;
		case 'r': reason = optarg; break;
		case 'n': now = 1; break;
		case 'h':
			printf("usage: kmsctl key %s --label L [--version V]%s%s\n"
			    "States (NIST SP 800-57): PRE_ACTIVE -> ACTIVE <-> SUSPENDED ->\n"
			    "DEACTIVATED (archived: unwrap/verify/decrypt only) -> COMPROMISED\n"
			    "(revoked) -> DESTROYED. `destroy` needs the custodians' quorum\n"
			    "(--share files) and starts a 7-day pending destruction that\n"
			    "`cancel-destroy` ends; running `destroy` again after the period\n"
			    "(or with --now, for tests) destroys the key object. kmsd enforces\n"
			    "the states on every operation.\n", verb,
			    strcmp(verb, "revoke") == 0 ? " --reason R" : "",
			    strcmp(verb, "destroy") == 0 ? " [--now]" : "");
			return 0;
		default: return 2;
		}
	}
	if (label == NULL || (strcmp(verb, "revoke") == 0 && reason == NULL)) {
		die_msg("need --label%s", strcmp(verb, "revoke") == 0 ?
		    " and --reason" : "");
		return 2;
	}
	if (strcmp(verb, "destroy") == 0 && c->nshares == 0 && c->pin_file == NULL) {
		die_msg("destroy needs the custodians' quorum: give --share files");
		return 2;
	}
	if (ctl_open(c) != 0)
		return 1;
	if (strcmp(verb, "destroy") == 0 && !c->quorum)
		fprintf(stderr, "kmsctl: WARNING: destroy authorised by the "
		    "insecure PIN file, not a custodian quorum (demo/CI only)\n");
	k = ks_find(&c->ks, label);
	if (k == NULL || ks_version(k, ver, &v) != 0) {
		die_msg("no key '%s' version %u", label, ver);
		ctl_close(c);
		return 1;
	}
	snprintf(kl, sizeof(kl), "%s#%u", label, v->v);
	ctl_tr_begin(c, verb);
	if (strcmp(verb, "activate") == 0)
		to = KMS_ST_ACTIVE;
	else if (strcmp(verb, "suspend") == 0)
		to = KMS_ST_SUSPENDED;
	else if (strcmp(verb, "archive") == 0)
		to = KMS_ST_DEACTIVATED;
	else if (strcmp(verb, "revoke") == 0)
		to = KMS_ST_COMPROMISED;
	else if (strcmp(verb, "cancel-destroy") == 0)
		to = v->prev_state;
	if (strcmp(verb, "destroy") == 0) {
		if (v->state == KMS_ST_PENDING_DESTRUCTION &&
		    (now || wall_seconds() >= v->destroy_after)) {
			rc = ks_destroy_version(&c->ks, k, v, reason);
			snprintf(det, sizeof(det), "destroyed");
		} else if (v->state == KMS_ST_PENDING_DESTRUCTION) {
			fmt_time(v->destroy_after, det, sizeof(det));
			die_msg("'%s' v%u is pending destruction until %s "
			    "(`cancel-destroy` to keep it)", label, v->v, det);
			rc = ERR_WRONGSTATE;
		} else {
			rc = ks_set_state(&c->ks, k, v, KMS_ST_PENDING_DESTRUCTION,
			    reason, wall_seconds() + (now ? 0 : DESTROY_DELAY));
			if (rc == 0 && now)
				rc = ks_destroy_version(&c->ks, k, v, reason);
			fmt_time(v->destroy_after, det, sizeof(det));
		}
	} else if (v->state == KMS_ST_DESTROYED) {
		rc = ERR_WRONGSTATE;
	} else {
		rc = ks_set_state(&c->ks, k, v, to, reason, 0);
		snprintf(det, sizeof(det), "to %s", kms_state_name(to));
	}
	if (rc != 0) {
		if (rc == ERR_WRONGSTATE)
			die_msg("'%s' v%u is %s: `%s` is not allowed from there%s",
			    label, v->v, kms_state_name(v->state), verb,
			    strcmp(verb, "destroy") == 0 && v->state == KMS_ST_ACTIVE ?
			    " (archive it first)" : "");
		else
			die_msg("%s failed: %s", verb, err_str(rc));
		ctl_audit(c, verb, kl, "error", err_str(rc));
		ctl_tr_abort(c, "refused");
		ctl_close(c);
		return 1;
	}
	ctl_audit(c, verb, kl, "ok", reason ? reason : det);
	ctl_tr_event(c, kms_state_name(v->state), label, v->v, v->kcv, v->kcvlen);
	printf("key '%s' v%u: %s%s%s\n", label, v->v, kms_state_name(v->state),
	    v->state == KMS_ST_PENDING_DESTRUCTION ? " until " : "",
	    v->state == KMS_ST_PENDING_DESTRUCTION ? det : "");
	rc = ctl_tr_end(c, "ok");
	ctl_kmsd_reload(c);
	ctl_close(c);
	return rc ? 1 : 0;
}

/* ---- audit ---- */

struct vctx {
	struct ctl        *c;
	struct kms_client *k;
	const char        *label;
	p11_obj            key;
};

static int
verify_cb(void *ctx, const uint8_t *d, size_t n, const uint8_t mac[32])
{
	struct vctx *v = ctx;

	if (v->k != NULL)
		return kms_hmac_verify(v->k, KMS_LABEL(v->label), d, n, mac);
	return p11_hmac_sha256_verify(v->c->p, v->key, d, n, mac);
}

/* The audit key through kmsd's auditor socket, or the token itself. */
static int
verifier(struct ctl *c, struct vctx *v, const char *label)
{
	char path[600];
	struct ks_key *k;
	struct ks_version *ver;

	memset(v, 0, sizeof(*v));
	v->c = c;
	v->label = label;
	snprintf(path, sizeof(path), "%s/run/kms-auditor.sock", c->var);
	if (c->nshares == 0 && c->pin_file == NULL &&
	    kms_connect(&v->k, path, "kmsctl-audit") == 0 && !kms_sealed(v->k))
		return 0;
	if (v->k != NULL)
		kms_close(v->k);
	v->k = NULL;
	if (ctl_open(c) != 0)
		return ERR_SEALED;
	k = ks_find(&c->ks, label);
	if (k == NULL || ks_version(k, 0, &ver) != 0 ||
	    ks_object(&c->ks, k, ver, &v->key) != 0)
		return ERR_NOKEY;
	return 0;
}

static int
cmd_audit_verify(struct ctl *c, int argc, char **argv)
{
	static const struct option o[] = {
		{ "file", required_argument, NULL, 'f' },
		{ "key", required_argument, NULL, 'k' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 } };
	struct audit_report rep;
	struct vctx v;
	char path[600];
	const char *file = NULL, *key = "audit";
	int rc, opt;

	optind = 1;
	while ((opt = getopt_long(argc, argv, "h", o, NULL)) != -1) {
		switch (opt) {
		case 'f': file = optarg; break;
		case 'k': key = optarg; break;
		default:
		printf("usage: kmsctl audit verify [--file F] [--key LABEL]\n"
		    "Checks every line of the audit log (default VAR/kms/audit.log):\n"
		    "sequence, hash chain and the token-computed MAC, through kmsd's\n"
		    "auditor socket when kmsd runs unsealed, else through the token\n"
		    "(--share or --insecure-pin-file). Reports the first broken link.\n"
		    "--key names another audit key (e.g. one restored from a backup).\n");
			return opt == 'h' ? 0 : 2;
		}
	}
	if (file == NULL) {
		snprintf(path, sizeof(path), "%s/kms/audit.log", c->var);
		file = path;
	}
	if (verifier(c, &v, key) != 0) {
		die_msg("no way to check the MACs: kmsd not running unsealed and no "
		    "token login");
		return 1;
	}
	rc = audit_verify_file(file, verify_cb, &v, &rep);
	if (v.k != NULL)
		kms_close(v.k);
	if (rc == 0)
		printf("audit log %s: %llu records, chain and MACs verified\n", file,
		    (unsigned long long)rep.lines);
	else if (rc == ERR_AUDIT)
		printf("audit log %s: BROKEN at line %llu: %s\n", file,
		    (unsigned long long)rep.bad_line, rep.reason);
	else
		die_msg("cannot read %s: %s", file, err_str(rc));
	if (c->p != NULL)
		ctl_close(c);
	return rc ? 1 : 0;
}

static int
cmd_audit_show(struct ctl *c, int argc, char **argv)
{
	static const struct option o[] = {
		{ "key", required_argument, NULL, 'k' },
		{ "actor", required_argument, NULL, 'a' },
		{ "op", required_argument, NULL, 'o' },
		{ "since", required_argument, NULL, 's' },
		{ "until", required_argument, NULL, 'u' },
		{ "file", required_argument, NULL, 'f' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 } };
	const char *key = NULL, *actor = NULL, *op = NULL, *since = NULL,
	    *until = NULL, *file = NULL;
	char path[600], *line = NULL;
	size_t cap = 0;
	ssize_t len;
	FILE *f;
	int opt, shown = 0;

	optind = 1;
	while ((opt = getopt_long(argc, argv, "h", o, NULL)) != -1) {
		switch (opt) {
		case 'k': key = optarg; break;
		case 'a': actor = optarg; break;
		case 'o': op = optarg; break;
		case 's': since = optarg; break;
		case 'u': until = optarg; break;
		case 'f': file = optarg; break;
		case 'h':
			printf("usage: kmsctl audit show [--key LABEL] [--actor ROLE|UID]\n"
			    "       [--op OP] [--since TIME] [--until TIME] [--file F]\n"
			    "Prints matching records (TIME: RFC 3339 prefix, e.g. 2026-11-27T05).\n"
			    "Run `audit verify` to check them.\n");
			return 0;
		default: return 2;
		}
	}
	if (file == NULL) {
		snprintf(path, sizeof(path), "%s/kms/audit.log", c->var);
		file = path;
	}
	f = fopen(file, "r");
	if (f == NULL) {
		die_msg("cannot read %s", file);
		return 1;
	}
	while ((len = getline(&line, &cap, f)) > 0) {
		json_t *r = json_loadb(line, (size_t)len, 0, NULL);
		const char *rk = "", *rr = "", *ro = "", *rt = "";
		json_int_t uid = -1;
		char uids[24];

		if (r == NULL)
			continue;
		(void)json_unpack(r, "{s?s, s?s, s?s, s?s, s?I}", "key", &rk, "role",
		    &rr, "op", &ro, "time", &rt, "uid", &uid);
		snprintf(uids, sizeof(uids), "%lld", (long long)uid);
		if ((key == NULL || strncmp(rk, key, strlen(key)) == 0) &&
		    (actor == NULL || strcmp(rr, actor) == 0 ||
		    strcmp(uids, actor) == 0) &&
		    (op == NULL || strcmp(ro, op) == 0) &&
		    (since == NULL || strcmp(rt, since) >= 0) &&
		    (until == NULL || strncmp(rt, until, strlen(until)) <= 0)) {
			json_t *res = json_object_get(r, "result");
			json_t *det = json_object_get(r, "detail");

			printf("%6lld %s %-9s uid=%-5s %-22s %-28s %-6s %s\n",
			    (long long)json_integer_value(json_object_get(r, "seq")),
			    rt, rr, uids, ro, rk, json_string_value(res) ?
			    json_string_value(res) : "", json_string_value(det) ?
			    json_string_value(det) : "");
			shown++;
		}
		json_decref(r);
	}
	free(line);
	fclose(f);
	fprintf(stderr, "%d record(s)\n", shown);
	return 0;
}

static int
cmd_transcript_verify(struct ctl *c, int argc, char **argv)
{
	json_error_t je;
	json_t *tr;
	struct vctx v;
	const char *mh;
	uint8_t mac[32];
	size_t ml;
	char *canon;
	int rc;

	if (argc < 2 || strcmp(argv[1], "--help") == 0) {
		printf("usage: kmsctl transcript verify FILE\n"
		    "Checks a ceremony transcript's MAC (audit key, via kmsd's auditor\n"
		    "socket or the token) and prints who took part, what was created\n"
		    "with which KCVs, and when.\n");
		return argc < 2 ? 2 : 0;
	}
	tr = json_load_file(argv[1], 0, &je);
	if (tr == NULL) {
		die_msg("%s: %s", argv[1], je.text);
		return 1;
	}
	mh = json_string_value(json_object_get(tr, "mac"));
	if (mh == NULL || hex_decode(mh, strlen(mh), mac, 32, &ml) != 0 || ml != 32) {
		die_msg("%s carries no MAC", argv[1]);
		json_decref(tr);
		return 1;
	}
	if (verifier(c, &v, "audit") != 0) {
		die_msg("no way to check the MAC");
		json_decref(tr);
		return 1;
	}
	canon = ctl_canonical(tr);
	rc = canon ? verify_cb(&v, (const uint8_t *)canon, strlen(canon), mac) :
	    ERR_NOMEM;
	free(canon);
	if (v.k != NULL)
		kms_close(v.k);
	if (rc == 0) {
		json_t *e;
		size_t i;

		printf("transcript %s verified: ceremony %s, %s .. %s, participants: "
		    "%s, outcome %s\n", argv[1],
		    json_string_value(json_object_get(tr, "ceremony")),
		    json_string_value(json_object_get(tr, "started")),
		    json_string_value(json_object_get(tr, "finished")),
		    json_string_value(json_object_get(tr, "participants")),
		    json_string_value(json_object_get(tr, "outcome")));
		json_array_foreach(json_object_get(tr, "events"), i, e)
			printf("  %s %s v%lld KCV %s\n",
			    json_string_value(json_object_get(e, "event")),
			    json_string_value(json_object_get(e, "label")),
			    (long long)json_integer_value(json_object_get(e, "version")),
			    json_string_value(json_object_get(e, "kcv")));
	} else {
		printf("transcript %s: MAC does NOT verify (%s)\n", argv[1],
		    err_str(rc));
	}
	json_decref(tr);
	if (c->p != NULL)
		ctl_close(c);
	return rc ? 1 : 0;
}

/* ---- the demo ceremony (make run) ---- */

/* XOR of hex components into key (n bytes), KCV checked. */
static int
demo_combine(json_t *obj, int alg, uint8_t *key, size_t *n, uint8_t kcv[3])
{
	json_t *comps = json_object_get(obj, "components"), *jc;
	const char *want = json_string_value(json_object_get(obj, "kcv"));
	uint8_t comp[64], w[3];
	size_t i, j, cl, wl;
	int rc = 0;

	*n = 0;
	if (!json_is_array(comps) || json_array_size(comps) < 1 || want == NULL ||
	    hex_decode(want, strlen(want), w, 3, &wl) != 0 || wl != 3)
		return ERR_PARSE;
	memset(key, 0, 64);
	json_array_foreach(comps, i, jc) {
		const char *h = json_string_value(jc);

		if (h == NULL || hex_decode(h, strlen(h), comp, sizeof(comp), &cl) != 0 ||
		    (i > 0 && cl != *n)) {
			rc = ERR_PARSE;
			break;
		}
		*n = cl;
		for (j = 0; j < cl; j++)
			key[j] ^= comp[j];
	}
	wipe(comp, sizeof(comp));
	if (rc == 0 && comp_kcv(alg, key, *n, kcv) != 0)
		rc = ERR_PARSE;
	if (rc == 0 && !ct_equal(kcv, w, 3))
		rc = ERR_KCV;
	return rc;
}

static int
demo_key(struct ctl *c, const char *label, int cls, int alg)
{
	struct ks_key *k;
	struct ks_version *v;
	uint32_t ver;
	int rc;

	if (ks_find(&c->ks, label) != NULL)
		return 0;
	if ((rc = ks_generate(&c->ks, label, cls, alg, 0, 0, &ver)) != 0) {
		die_msg("demo key %s: %s", label, err_str(rc));
		return rc;
	}
	k = ks_find(&c->ks, label);
	if (k != NULL && ks_version(k, ver, &v) == 0)
		ctl_tr_event(c, "demo key generated", label, ver, v->kcv, v->kcvlen);
	ctl_audit(c, "key.generate", label, "ok", "DEMO");
	printf("demo: generated %s (%s)\n", label, ks_class_name(cls));
	return 0;
}

static int
demo_peer_key(struct ctl *c, json_t *obj, const char *label, int cls)
{
	uint8_t *key, kcv[3];
	size_t n;
	uint32_t ver;
	int rc, alg;

	if (ks_find(&c->ks, label) != NULL)
		return 0;
	key = secmem_alloc(64);
	if (key == NULL)
		return ERR_NOMEM;
	alg = cls == KS_MAC ? KMS_ALG_HMAC : KMS_ALG_AES128;
	rc = demo_combine(obj, alg, key, &n, kcv);
	if (rc == 0 && cls == KS_TRANSPORT_KEK)
		alg = n == 16 ? KMS_ALG_AES128 : n == 24 ? KMS_ALG_AES192 :
		    n == 32 ? KMS_ALG_AES256 : 0;
	if (rc == 0 && alg != 0 && cls == KS_TRANSPORT_KEK)
		rc = comp_kcv(alg, key, n, kcv) == 0 ? 0 : ERR_PARSE;
	if (rc == 0)
		rc = ks_import_secret(&c->ks, label, cls, alg, key, n, kcv, 0, &ver);
	secmem_free(key, 64);
	if (rc != 0) {
		die_msg("demo peer key %s: %s", label, err_str(rc));
		return rc;
	}
	ctl_tr_event(c, "demo key from components", label, ver, kcv, 3);
	ctl_audit(c, "key.import-components", label, "ok", "DEMO material");
	printf("demo: %s from its components (KCV %02X%02X%02X)\n", label, kcv[0],
	    kcv[1], kcv[2]);
	return 0;
}

static int
cmd_demo(struct ctl *c, int argc, char **argv)
{
	char pin[600], label[KS_LABEL_MAX], sdir[600];
	const char *material = "tests/sim/demo/sei-demo.json", *id;
	json_error_t je;
	json_t *m;
	struct p11 *probe = NULL;
	int rc = 1;

	if (argc > 2 && strcmp(argv[1], "--material") == 0)
		material = argv[2];
	else if (argc > 1) {
		printf("usage: kmsctl --var DIR demo-ceremony [--material FILE]\n"
		    "DEMO ONLY. Runs the demo key ceremony non-interactively: initialises\n"
		    "the token if needed (3 demo custodians, quorum 2, the user PIN also\n"
		    "in VAR/kms/demo-user.pin), generates the storage KEK, the CA key,\n"
		    "the transport RSA pair and tsmd's webhook HMAC key (notify), and\n"
		    "enters the demo SEI peer's transport KEK and message-auth key from\n"
		    "the components in FILE (default tests/sim/demo/sei-demo.json).\n"
		    "Re-running it adds what is missing and changes nothing else.\n");
		return strcmp(argv[1], "--help") == 0 ? 0 : 2;
	}
	m = json_load_file(material, 0, &je);
	if (m == NULL || (id = json_string_value(json_object_get(m,
	    "seiTsmId"))) == NULL) {
		die_msg("%s: not the demo material (%s)", material, m ? "no seiTsmId" :
		    je.text);
		json_decref(m);
		return 1;
	}
	snprintf(pin, sizeof(pin), "%s/kms/demo-user.pin", c->var);
	if (p11_open(&probe, c->module, c->token_uri) != 0) {
		char *iargv[] = { "init", "--custodians", "3", "--threshold", "2",
		    "--label", "sptsm-demo", "--names",
		    "demo-custodian-1,demo-custodian-2,demo-custodian-3",
		    "--shares-dir", sdir, "--insecure-pin-file", pin, NULL };

		snprintf(sdir, sizeof(sdir), "%s/kms/shares", c->var);
		printf("demo: initialising the token (DEMO custodians, PIN file %s)\n",
		    pin);
		if (cmd_init(c, 13, iargv) != 0) {
			json_decref(m);
			return 1;
		}
		ctl_close(c);
		c->participants[0] = '\0';
	} else {
		p11_close(probe);
	}
	c->pin_file = pin;
	if (ctl_open(c) != 0) {
		json_decref(m);
		return 1;
	}
	snprintf(c->participants, sizeof(c->participants), "DEMO ceremony (no "
	    "custodians: insecure PIN file)");
	ctl_tr_begin(c, "demo-ceremony");
	/* notify: tsmd's HMAC key for signed provider webhooks
	 * (tsm/flow/README.md, notify.macKey). */
	if (demo_key(c, "storage-kek", KS_STORAGE_KEK, 0) != 0 ||
	    demo_key(c, "ca", KS_CA, KMS_ALG_EC_P256) != 0 ||
	    demo_key(c, "transport-rsa", KS_TRANSPORT_RSA, 0) != 0 ||
	    demo_key(c, "notify", KS_MAC, KMS_ALG_HMAC) != 0)
		goto out;
	snprintf(label, sizeof(label), "peer/%s/kek", id);
	if (demo_peer_key(c, json_object_get(m, "transportKek"), label,
	    KS_TRANSPORT_KEK) != 0)
		goto out;
	snprintf(label, sizeof(label), "peer/%s/mac", id);
	if (demo_peer_key(c, json_object_get(m, "macKey"), label, KS_MAC) != 0)
		goto out;
	rc = 0;
out:
	if (ctl_tr_end(c, rc ? "failed" : "ok") != 0)
		rc = 1;
	ctl_kmsd_reload(c);
	ctl_close(c);
	json_decref(m);
	return rc;
}

/* ---- main ---- */

static void
usage(FILE *f)
{
	fprintf(f,
	    "usage: kmsctl [options] COMMAND [args]  (COMMAND --help for details)\n"
	    "Key custodians' tool for the SP-TSM KMS.\n\n"
	    "options:\n"
	    "  --var DIR                state directory (default ./var)\n"
	    "  --module PATH|NAME       PKCS#11 module (default SoftHSM2)\n"
	    "  --token URI              RFC 7512 token URI\n"
	    "  --share FILE             a custodian's share (repeat up to the quorum)\n"
	    "  --insecure-pin-file F    log in with a PIN file (demo/CI only)\n"
	    "  --json                   JSON output where offered\n\n"
	    "commands:\n"
	    "  init                     initialise the token, split the PINs N-of-M\n"
	    "  unseal                   submit shares to a sealed kmsd\n"
	    "  status                   kmsd status\n"
	    "  key generate             new key of a class\n"
	    "  key import-components    key from custodian components with KCVs\n"
	    "  key list                 inventory (--json)\n"
	    "  key export-public        public key as PEM\n"
	    "  key activate|suspend|archive|revoke|destroy|cancel-destroy\n"
	    "  key rotate               new version for new work\n"
	    "  rewrap                   move tsmd's key-set blobs to the new storage KEK\n"
	    "  backup --to FILE         wrap backup-eligible keys under the backup KEK\n"
	    "  restore --from FILE      restore into a fresh token\n"
	    "  audit verify | audit show\n"
	    "  transcript verify FILE\n"
	    "  demo-ceremony            DEMO: the make-run ceremony, non-interactive\n");
}

int
main(int argc, char **argv)
{
	static const struct option o[] = {
		{ "var", required_argument, NULL, 'v' },
		{ "module", required_argument, NULL, 'm' },
		{ "token", required_argument, NULL, 't' },
		{ "share", required_argument, NULL, 's' },
		{ "insecure-pin-file", required_argument, NULL, 'P' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 } };
	struct ctl c;
	const char *cmd;
	int opt;

	memset(&c, 0, sizeof(c));
	c.var = "./var";
	log_init("kmsctl", LOG_WARN);
	if (process_harden() != 0)
		fprintf(stderr, "kmsctl: warning: cannot disable core dumps\n");
	while ((opt = getopt_long(argc, argv, "+h", o, NULL)) != -1) {
		switch (opt) {
		case 'v': c.var = optarg; break;
		case 'm': c.module = optarg; break;
		case 't': c.token_uri = optarg; break;
		case 's':
			if (c.nshares >= CTL_MAX_SHARES) {
				die_msg("too many shares");
				return 2;
			}
			c.share_files[c.nshares++] = optarg;
			break;
		case 'P': c.pin_file = optarg; break;
		case 'j': c.json = 1; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind >= argc) {
		usage(stderr);
		return 2;
	}
	cmd = argv[optind];
	argc -= optind;
	argv += optind;
	if (strcmp(cmd, "init") == 0)
		return cmd_init(&c, argc, argv);
	if (strcmp(cmd, "unseal") == 0)
		return cmd_unseal(&c, argc, argv);
	if (strcmp(cmd, "status") == 0) {
		if (argc > 1) {
			printf("usage: kmsctl [--json] status\n"
			    "kmsd's state over the custodian socket: sealed or not, the\n"
			    "token, key count, audit sequence, connections, live handles.\n");
			return strcmp(argv[1], "--help") == 0 ? 0 : 2;
		}
		return cmd_status(&c);
	}
	if (strcmp(cmd, "demo-ceremony") == 0)
		return cmd_demo(&c, argc, argv);
	if (strcmp(cmd, "backup") == 0)
		return cmd_backup(&c, argc, argv);
	if (strcmp(cmd, "restore") == 0)
		return cmd_restore(&c, argc, argv);
	if (strcmp(cmd, "rewrap") == 0)
		return cmd_rewrap(&c, argc, argv);
	if (strcmp(cmd, "transcript") == 0 && argc > 1 &&
	    strcmp(argv[1], "verify") == 0)
		return cmd_transcript_verify(&c, argc - 1, argv + 1);
	if (strcmp(cmd, "audit") == 0 && argc > 1) {
		if (strcmp(argv[1], "verify") == 0)
			return cmd_audit_verify(&c, argc - 1, argv + 1);
		if (strcmp(argv[1], "show") == 0)
			return cmd_audit_show(&c, argc - 1, argv + 1);
	}
	if (strcmp(cmd, "key") == 0 && argc > 1) {
		const char *sub = argv[1];

		argc--;
		argv++;
		if (strcmp(sub, "generate") == 0)
			return cmd_generate(&c, argc, argv);
		if (strcmp(sub, "import-components") == 0)
			return cmd_import_components(&c, argc, argv);
		if (strcmp(sub, "list") == 0)
			return cmd_list(&c, argc, argv);
		if (strcmp(sub, "export-public") == 0)
			return cmd_export_public(&c, argc, argv);
		if (strcmp(sub, "rotate") == 0)
			return cmd_rotate(&c, argc, argv);
		if (strcmp(sub, "activate") == 0 || strcmp(sub, "suspend") == 0 ||
		    strcmp(sub, "archive") == 0 || strcmp(sub, "revoke") == 0 ||
		    strcmp(sub, "destroy") == 0 || strcmp(sub, "cancel-destroy") == 0)
			return cmd_lifecycle(&c, sub, argc, argv);
	}
	if ((strcmp(cmd, "key") == 0 || strcmp(cmd, "audit") == 0 ||
	    strcmp(cmd, "transcript") == 0) && (argc < 2 ||
	    strcmp(argv[argc - 1], "--help") == 0)) {
		usage(stdout);
		return argc < 2 ? 2 : 0;
	}
	die_msg("unknown command '%s' (kmsctl --help)", cmd);
	return 2;
}
