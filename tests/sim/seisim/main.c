/*
 * main.c - the seisim command: the SEI-TSM simulator's options, first-start
 * TLS material under VAR/seisim/, the server and key-sync worker, signals,
 * and the `repair` subcommand (§9.5). SIMULATOR: plays the card issuer
 * with published demo keys; never point it at anything real.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <curl/curl.h>
#include <openssl/pem.h>

#include "tests/sim/seisim/seisim.h"
#include "tests/sim/seisim/server.h"

static void
usage(FILE *f)
{
	fprintf(f,
	    "usage: seisim [options]                  serve the SEI-TSM endpoints\n"
	    "       seisim repair SEID [--status DELETED|RESETED] [--card FILE]\n"
	    "                     [options]           9.5 for the SE's SSDs\n"
	    "       seisim --help\n\n"
	    "SEI-TSM SIMULATOR (DEMO ONLY): the card issuer's TSM of T/TAF 096-2021\n"
	    "for tests and make run. Serves POST {base}/ssd/manage (9.1),\n"
	    "{base}/ssd/instructions (9.2), {base}/token (9.3); runs the ISD SCP03\n"
	    "session with the demo ISD keys; pushes a created SSD's keys to the\n"
	    "SP-TSM (POST {tsm}/api/v1/sei/key-sync, 9.4) and checks the receipt.\n\n"
	    "  --var DIR              state directory (default ./var); seisim uses\n"
	    "                         VAR/seisim/ (state.json, TLS, seisim.addr)\n"
	    "  --listen HOST:PORT     default 127.0.0.1:9443 (port 0: any; the\n"
	    "                         address is written to VAR/seisim/seisim.addr)\n"
	    "  --material FILE        the SEI peer (default tests/sim/demo/sei-demo.json)\n"
	    "  --token-key FILE       DM token private key (default dm-token-demo.key.pem\n"
	    "                         beside the material)\n"
	    "  --sp-transport-pub F   SP-TSM RSA key-transport public key (PEM) for\n"
	    "                         wrap RSA-OAEP-SHA1/SHA256\n"
	    "  --tsm-url URL          SP-TSM for 9.4/9.5 (default https://127.0.0.1:8443)\n"
	    "  --tsm-ca FILE          CA file for the SP-TSM's TLS (default VAR/ca.pem)\n"
	    "  --base-path PREFIX     path prefix of the endpoints (default none)\n"
	    "  --isd-aid HEX          the SE's ISD (default A000000151000000)\n"
	    "  --sl 03|13|33          ISD session security level (default 33)\n"
	    "  --task-ttl SECONDS     a task idle this long expires (default 600)\n"
	    "  --http-timeout-ms N    9.4/9.5 call timeout (default 10000)\n"
	    "  --no-tls               plain HTTP on a loopback address (tests only)\n"
	    "  --fault KIND           tests: timeout, bad-signature, result-9999,\n"
	    "                         string-resultcode, stale-signature,\n"
	    "                         replay-answer (may be repeated)\n"
	    "  --fault-delay-ms N     delay of --fault timeout (default 5000)\n"
	    "  --log-level LEVEL      error|warn|info|debug (default info)\n"
	    "  -h, --help             this text\n\n"
	    "repair: for every SSD the simulator created on SEID, removes it from\n"
	    "the vSE card file given with --card (DELETE through an ISD session)\n"
	    "and sends POST {tsm}/api/v1/sei/sd-status with status DELETED (or\n"
	    "--status RESETED). Works on VAR/seisim/state.json, with or without a\n"
	    "running simulator. Exit 0 when every notification was accepted.\n");
}

static int
level_parse(const char *s)
{
	return strcmp(s, "error") == 0 ? LOG_ERR : strcmp(s, "warn") == 0 ?
	    LOG_WARN : strcmp(s, "info") == 0 ? LOG_INFO : strcmp(s, "debug") ==
	    0 ? LOG_DEBUG : -1;
}

static int
fault_parse(const char *s)
{
	return strcmp(s, "timeout") == 0 ? SEISIM_FAULT_TIMEOUT :
	    strcmp(s, "bad-signature") == 0 ? SEISIM_FAULT_BAD_SIG :
	    strcmp(s, "result-9999") == 0 ? SEISIM_FAULT_9999 :
	    strcmp(s, "string-resultcode") == 0 ? SEISIM_FAULT_STRCODE :
	    strcmp(s, "stale-signature") == 0 ? SEISIM_FAULT_STALE :
	    strcmp(s, "replay-answer") == 0 ? SEISIM_FAULT_REPLAY : 0;
}

static int
copy_opt(char *dst, size_t cap, const char *v, const char *name)
{
	if (strlen(v) >= cap) {
		fprintf(stderr, "seisim: %s: too long\n", name);
		return -1;
	}
	memcpy(dst, v, strlen(v) + 1);
	return 0;
}

/* VAR/seisim/tls.{crt,key}: loaded, or made at first start (then also
 * VAR/seisim/ca.pem, the file an SP-TSM's peer config trusts). */
static int
tls_material(struct seisim *s, const char *host, struct buf *cert,
    struct buf *key)
{
	char cp[1200], kp[1200], ca[1200];
	int hc, hk, rc;
	struct stat sb;

	snprintf(cp, sizeof(cp), "%s/tls.crt", s->dir);
	snprintf(kp, sizeof(kp), "%s/tls.key", s->dir);
	snprintf(ca, sizeof(ca), "%s/ca.pem", s->dir);
	hc = stat(cp, &sb) == 0;
	hk = stat(kp, &sb) == 0;
	if (hc != hk) {
		fprintf(stderr, "seisim: only one of %s and %s exists; remove it or "
		    "add the other\n", cp, kp);
		return ERR_INVAL;
	}
	if (!hc) {
		if ((rc = seisim_tls_make(host, cert, key)) != 0 ||
		    (rc = file_write_atomic(kp, key->p, key->len, 0600)) != 0 ||
		    (rc = file_write_atomic(cp, cert->p, cert->len, 0644)) != 0 ||
		    (rc = file_write_atomic(ca, cert->p, cert->len, 0644)) != 0)
			return rc;
		log_msg(LOG_INFO, "event=tls_generated cert=%s ca=%s", cp, ca);
	} else if ((rc = file_read_all(cp, 256 * 1024, cert)) != 0 ||
	    (rc = file_read_all(kp, 256 * 1024, key)) != 0) {
		return rc;
	}
	/* NUL-terminated for MHD */
	if ((rc = buf_put_u8(cert, 0)) != 0 || (rc = buf_put_u8(key, 0)) != 0)
		return rc;
	return 0;
}

static int
load_token_key(struct seisim *s, const char *material)
{
	const char *slash;
	FILE *f;

	if (s->token_key_path[0] == '\0') {	/* beside the material */
		slash = strrchr(material, '/');
		snprintf(s->token_key_path, sizeof(s->token_key_path),
		    "%.*sdm-token-demo.key.pem", slash ? (int)(slash - material + 1) :
		    0, material);
	}
	if ((f = fopen(s->token_key_path, "r")) == NULL) {
		log_msg(LOG_WARN, "event=token_key_missing path=%s note=\"9.3 answers "
		    "9999\"", s->token_key_path);
		return 0;
	}
	s->token_key = PEM_read_PrivateKey(f, NULL, NULL, NULL);
	fclose(f);
	if (s->token_key == NULL || EVP_PKEY_get_base_id(s->token_key) !=
	    EVP_PKEY_RSA) {
		fprintf(stderr, "seisim: %s: not an RSA private key\n",
		    s->token_key_path);
		return -1;
	}
	return 0;
}

static int
serve(struct seisim *s, const char *material)
{
	struct seisim_server *sv = NULL;
	struct buf cert, key;
	char host[256], addr[300], ap[1200];
	const char *colon;
	sigset_t mask;
	int sig, ret = 1;

	buf_init(&cert);
	buf_init(&key);
	if (load_token_key(s, material) != 0)
		goto out;
	colon = strrchr(s->listen, ':');
	snprintf(host, sizeof(host), "%.*s", colon ? (int)(colon - s->listen) :
	    0, s->listen);
	if (host[0] == '[') {
		memmove(host, host + 1, strlen(host));
		host[strcspn(host, "]")] = '\0';
	}
	if (!s->no_tls && tls_material(s, host[0] ? host : "127.0.0.1", &cert,
	    &key) != 0) {
		fprintf(stderr, "seisim: TLS material under %s unusable\n", s->dir);
		goto out;
	}
	sigemptyset(&mask);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &mask, NULL);
	signal(SIGPIPE, SIG_IGN);
	if (seisim_keysync_start(s) != 0)
		goto out;
	if (seisim_server_start(s, &sv, (const char *)cert.p,
	    (const char *)key.p) != 0) {
		fprintf(stderr, "seisim: cannot listen on %s\n", s->listen);
		goto out;
	}
	snprintf(addr, sizeof(addr), "%s%s%s:%u\n", strchr(host, ':') ? "[" : "",
	    host, strchr(host, ':') ? "]" : "", seisim_server_port(sv));
	snprintf(ap, sizeof(ap), "%s/seisim.addr", s->dir);
	if (file_write_atomic(ap, addr, strlen(addr), 0644) != 0)
		log_msg(LOG_WARN, "event=addr_file_failed path=%s", ap);
	log_msg(LOG_INFO, "event=ready url=%s://%.*s%s seiTsmId=%s tenantId=%s "
	    "tsm=%s faults=0x%x note=\"SIMULATOR, demo keys\"",
	    s->no_tls ? "http" : "https", (int)strlen(addr) - 1, addr,
	    s->base_path, s->m.sei_tsm_id, s->m.tenant_id, s->tsm_url, s->faults);
	while (sigwait(&mask, &sig) != 0)
		;
	log_msg(LOG_INFO, "event=stopping signal=%d", sig);
	s->stopping = 1;
	seisim_server_stop(sv);
	sv = NULL;
	(void)unlink(ap);
	ret = 0;
out:
	seisim_server_stop(sv);
	seisim_keysync_stop(s);
	pthread_mutex_lock(&s->lock);
	seisim_tasks_free(s);
	pthread_mutex_unlock(&s->lock);
	buf_free(&cert);
	buf_free(&key);
	return ret;
}

int
main(int argc, char **argv)
{
	enum { O_VAR = 256, O_LISTEN, O_MATERIAL, O_TOKEN, O_SPPUB, O_TSMURL,
	    O_TSMCA, O_BASE, O_ISD, O_SL, O_TTL, O_HTO, O_NOTLS, O_FAULT,
	    O_DELAY, O_LOG, O_STATUS, O_CARD };
	static const struct option opts[] = {
		{ "var", required_argument, NULL, O_VAR },
		{ "listen", required_argument, NULL, O_LISTEN },
		{ "material", required_argument, NULL, O_MATERIAL },
		{ "token-key", required_argument, NULL, O_TOKEN },
		{ "sp-transport-pub", required_argument, NULL, O_SPPUB },
		{ "tsm-url", required_argument, NULL, O_TSMURL },
		{ "tsm-ca", required_argument, NULL, O_TSMCA },
		{ "base-path", required_argument, NULL, O_BASE },
		{ "isd-aid", required_argument, NULL, O_ISD },
		{ "sl", required_argument, NULL, O_SL },
		{ "task-ttl", required_argument, NULL, O_TTL },
		{ "http-timeout-ms", required_argument, NULL, O_HTO },
		{ "no-tls", no_argument, NULL, O_NOTLS },
		{ "fault", required_argument, NULL, O_FAULT },
		{ "fault-delay-ms", required_argument, NULL, O_DELAY },
		{ "log-level", required_argument, NULL, O_LOG },
		{ "status", required_argument, NULL, O_STATUS },
		{ "card", required_argument, NULL, O_CARD },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	static struct seisim s;
	const char *material = "tests/sim/demo/sei-demo.json", *sp_pub = NULL;
	const char *status = "DELETED", *card = NULL, *cmd = NULL, *se = NULL;
	char err[600];
	int o, lvl = LOG_INFO, f, ret;
	unsigned long v;
	char *end;
	size_t n;

	memset(&s, 0, sizeof(s));
	snprintf(s.var, sizeof(s.var), "./var");
	snprintf(s.listen, sizeof(s.listen), "127.0.0.1:9443");
	snprintf(s.tsm_url, sizeof(s.tsm_url), "https://127.0.0.1:8443");
	memcpy(s.isd_aid, "\xA0\x00\x00\x01\x51\x00\x00\x00", 8);
	s.isd_aid_len = 8;
	memcpy(s.sd_elf, "\xA0\x00\x00\x01\x51\x53\x50", 7);
	s.sd_elf_len = 7;
	memcpy(s.sd_mod, "\xA0\x00\x00\x01\x51\x53\x50\x41", 8);
	s.sd_mod_len = 8;
	s.sl = 0x33;
	s.task_ttl_s = 600;
	s.http_timeout_ms = 10000;
	s.fault_delay_ms = 5000;
	pthread_mutex_init(&s.lock, NULL);
	pthread_mutex_init(&s.rlock, NULL);
	pthread_mutex_init(&s.jlock, NULL);
	pthread_cond_init(&s.jcond, NULL);

	if (argc > 1 && argv[1][0] != '-') {
		cmd = argv[1];
		if (strcmp(cmd, "repair") != 0) {
			fprintf(stderr, "seisim: unknown command '%s'\n", cmd);
			usage(stderr);
			return 2;
		}
		argv++;
		argc--;
	}
	while ((o = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (o) {
		case O_VAR:
			if (copy_opt(s.var, sizeof(s.var), optarg, "--var"))
				return 2;
			break;
		case O_LISTEN:
			if (copy_opt(s.listen, sizeof(s.listen), optarg, "--listen"))
				return 2;
			break;
		case O_MATERIAL: material = optarg; break;
		case O_TOKEN:
			if (copy_opt(s.token_key_path, sizeof(s.token_key_path),
			    optarg, "--token-key"))
				return 2;
			break;
		case O_SPPUB: sp_pub = optarg; break;
		case O_TSMURL:
			if (copy_opt(s.tsm_url, sizeof(s.tsm_url), optarg, "--tsm-url"))
				return 2;
			break;
		case O_TSMCA:
			if (copy_opt(s.tsm_ca, sizeof(s.tsm_ca), optarg, "--tsm-ca"))
				return 2;
			break;
		case O_BASE:
			if (copy_opt(s.base_path, sizeof(s.base_path), optarg,
			    "--base-path"))
				return 2;
			n = strlen(s.base_path);
			while (n > 0 && s.base_path[n - 1] == '/')
				s.base_path[--n] = '\0';
			if (n > 0 && s.base_path[0] != '/') {
				fprintf(stderr, "seisim: --base-path must start with /\n");
				return 2;
			}
			break;
		case O_ISD:
			if (seisim_hex(optarg, s.isd_aid, sizeof(s.isd_aid),
			    &s.isd_aid_len) != 0 || s.isd_aid_len < 5) {
				fprintf(stderr, "seisim: --isd-aid: 5..16 bytes of hex\n");
				return 2;
			}
			break;
		case O_SL:
			v = strtoul(optarg, &end, 16);
			if (*end || (v != 0x03 && v != 0x13 && v != 0x33)) {
				fprintf(stderr, "seisim: --sl: 03, 13 or 33\n");
				return 2;
			}
			s.sl = (uint8_t)v;
			break;
		case O_TTL:
		case O_HTO:
		case O_DELAY:
			v = strtoul(optarg, &end, 10);
			if (*end || *optarg == '\0' || v == 0 || v > 86400000UL) {
				fprintf(stderr, "seisim: %s: a positive number\n",
				    argv[optind - 1]);
				return 2;
			}
			if (o == O_TTL)
				s.task_ttl_s = (unsigned)v;
			else if (o == O_HTO)
				s.http_timeout_ms = (unsigned)v;
			else
				s.fault_delay_ms = (unsigned)v;
			break;
		case O_NOTLS: s.no_tls = 1; break;
		case O_FAULT:
			if ((f = fault_parse(optarg)) == 0) {
				fprintf(stderr, "seisim: --fault: timeout, bad-signature, "
				    "result-9999, string-resultcode, stale-signature or "
				    "replay-answer\n");
				return 2;
			}
			s.faults |= (unsigned)f;
			break;
		case O_LOG:
			if ((lvl = level_parse(optarg)) < 0) {
				fprintf(stderr, "seisim: --log-level: error, warn, info, "
				    "debug\n");
				return 2;
			}
			break;
		case O_STATUS: status = optarg; break;
		case O_CARD: card = optarg; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (cmd != NULL) {
		if (optind != argc - 1) {
			fprintf(stderr, "seisim repair: give exactly one SEID\n");
			return 2;
		}
		se = argv[optind];
		if (strcmp(status, "DELETED") != 0 && strcmp(status, "RESETED") != 0) {
			fprintf(stderr, "seisim repair: --status DELETED or RESETED\n");
			return 2;
		}
	} else if (optind != argc || card != NULL) {
		usage(stderr);
		return 2;
	}
	log_init("seisim", lvl);
	if (s.no_tls && strncmp(s.listen, "127.", 4) != 0 &&
	    strncmp(s.listen, "[::1]", 5) != 0 &&
	    strncmp(s.listen, "localhost:", 10) != 0) {
		fprintf(stderr, "seisim: --no-tls only on a loopback address\n");
		return 2;
	}
	snprintf(s.dir, sizeof(s.dir), "%s/seisim", s.var);
	if (s.tsm_ca[0] == '\0')
		snprintf(s.tsm_ca, sizeof(s.tsm_ca), "%s/ca.pem", s.var);
	if (mkdir_p(s.dir, 0700) != 0) {
		fprintf(stderr, "seisim: cannot create %s: %s\n", s.dir,
		    strerror(errno));
		return 1;
	}
	if (seisim_material_load(&s.m, material, sp_pub, err, sizeof(err)) != 0) {
		fprintf(stderr, "seisim: material: %s\n", err);
		return 2;
	}
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != 0) {
		fprintf(stderr, "seisim: libcurl init failed\n");
		return 1;
	}
	if (cmd != NULL)
		ret = seisim_repair(&s, se, status, card);
	else
		ret = serve(&s, material);
	EVP_PKEY_free(s.token_key);
	for (n = 0; n < ARRAY_LEN(s.replay); n++)
		free(s.replay[n].text);
	seisim_material_cleanup(&s.m);
	curl_global_cleanup();
	return ret;
}
