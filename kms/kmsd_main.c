/*
 * kmsd_main.c - kmsd's entry point: options, the token login (PIN file) or
 * sealed start, one listening socket per role, signals, the event loop.
 * The serving logic is in kmsd.c and kmsd_ops.c.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "kms/kmsd.h"

static const char *const sock_names[ROLE_COUNT] = { NULL, "kms.sock",
	"kms-custodian.sock", "kms-auditor.sock" };

/* ---- sockets ---- */

static int
listen_role(struct kmsd *d, int role)
{
	struct sockaddr_un sa;
	struct epoll_event ev = { 0 };
	mode_t old;
	int fd;

	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	if (snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/%s", d->cfg.run_dir,
	    sock_names[role]) >= (int)sizeof(sa.sun_path))
		return ERR_TOOBIG;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return ERR_IO;
	(void)unlink(sa.sun_path);
	/* mode 0660: created under a umask that leaves nothing for others */
	old = umask(0117);
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
	    chmod(sa.sun_path, 0660) != 0 || listen(fd, 128) != 0) {
		umask(old);
		log_msg(LOG_ERR, "event=listen_failed path=%s errno=%d", sa.sun_path,
		    errno);
		close(fd);
		return ERR_IO;
	}
	umask(old);
	ev.events = EPOLLIN;
	ev.data.u64 = (uint64_t)role;	/* small integers: listening sockets */
	if (epoll_ctl(d->epfd, EPOLL_CTL_ADD, fd, &ev) != 0) {
		close(fd);
		return ERR_IO;
	}
	d->lfd[role] = fd;
	log_msg(LOG_INFO, "event=listening role=%s path=%s",
	    policy_role_name(role), sa.sun_path);
	return 0;
}

static int
read_pin_file(const char *path, char *pin, size_t cap, size_t *len)
{
	struct stat st;
	struct buf b;
	int rc;

	if (stat(path, &st) != 0)
		return ERR_NOTFOUND;
	if ((st.st_mode & 0077) != 0) {
		log_msg(LOG_ERR, "event=pin_file_mode path=%s mode=%o note=\"must "
		    "not be readable by group or others\"", path,
		    (unsigned)(st.st_mode & 0777));
		return ERR_DENIED;
	}
	buf_init(&b);
	if ((rc = file_read_all(path, cap - 1, &b)) != 0)
		return rc;
	while (b.len > 0 && (b.p[b.len - 1] == '\n' || b.p[b.len - 1] == '\r'))
		b.len--;
	memcpy(pin, b.p, b.len);
	pin[b.len] = '\0';
	*len = b.len;
	buf_free(&b);
	return 0;
}

/* ---- main ---- */

static void
usage(FILE *f)
{
	fprintf(f,
	    "usage: kmsd [options]\n"
	    "Serves policy-checked crypto on keys held in a PKCS#11 token, over\n"
	    "one Unix socket per role (kms.sock: tsm, kms-custodian.sock,\n"
	    "kms-auditor.sock). Starts sealed unless --insecure-pin-file is given;\n"
	    "custodians unseal it with `kmsctl unseal`.\n\n"
	    "  --var DIR               state directory (default ./var)\n"
	    "  --run-dir DIR           socket directory (default VAR/run)\n"
	    "  --policy FILE           policy file (default VAR/kms/kms.policy,\n"
	    "                          else policy/kms.policy)\n"
	    "  --audit FILE            audit log (default VAR/kms/audit.log)\n"
	    "  --module PATH|NAME      PKCS#11 module (default SoftHSM2)\n"
	    "  --token URI             RFC 7512 token URI (default: first token)\n"
	    "  --insecure-pin-file F   log in with the PIN in F (mode 0400/0600;\n"
	    "                          demo and CI only)\n"
	    "  --storage-kek LABEL     storage KEK label (default storage-kek)\n"
	    "  --audit-key LABEL       audit HMAC key label (default audit)\n"
	    "  --idle-timeout SEC      destroy handles unused this long (default 600)\n"
	    "  --log-level LEVEL       error|warn|info|debug (default info)\n"
	    "  -h, --help              this text\n");
}

static int
parse_level(const char *s)
{
	if (strcmp(s, "error") == 0) return LOG_ERR;
	if (strcmp(s, "warn") == 0) return LOG_WARN;
	if (strcmp(s, "debug") == 0) return LOG_DEBUG;
	return LOG_INFO;
}

static void
handle_signal(struct kmsd *d)
{
	struct signalfd_siginfo si;

	while (read(d->sigfd, &si, sizeof(si)) == sizeof(si)) {
		if (si.ssi_signo == SIGHUP) {
			log_msg(LOG_INFO, "event=reload");
			if (kmsd_load_policy(d) != 0)
				log_msg(LOG_ERR, "event=reload_kept_old_policy");
			if (!d->sealed && ks_load(&d->ks, d->p) != 0)
				log_msg(LOG_ERR, "event=reload_keystore_failed");
		} else {
			log_msg(LOG_INFO, "event=stopping signal=%u", si.ssi_signo);
			d->stop = 1;
		}
	}
}

static void
loop(struct kmsd *d)
{
	struct epoll_event ev[64];
	struct conn *c;
	int n, i, timeout, synced;

	while (!d->stop) {
		timeout = d->pending != NULL ? 0 : 1000;
		n = epoll_wait(d->epfd, ev, (int)ARRAY_LEN(ev), timeout);
		if (n < 0 && errno != EINTR)
			break;
		synced = 0;
		for (i = 0; i < n; i++) {
			uint64_t tag = ev[i].data.u64;

			if (tag < ROLE_COUNT) {
				kmsd_accept(d, (int)tag);
				continue;
			}
			if (tag == ROLE_COUNT) {
				handle_signal(d);
				continue;
			}
			if (tag == ROLE_COUNT + 1) {
				uint64_t v;

				if (read(d->sync_evfd, &v, sizeof(v)) < 0)
					log_msg(LOG_DEBUG, "event=sync_event_read");
				/* Not now: releasing held replies may close a
				 * connection whose event is later in ev[]. */
				synced = 1;
				continue;
			}
			c = ev[i].data.ptr;
			if (ev[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR))
				kmsd_conn_read(d, c, (ev[i].events &
				    (EPOLLHUP | EPOLLERR)) != 0);
			else if (ev[i].events & EPOLLOUT)
				kmsd_mark_dirty(d, c);
		}
		kmsd_serve_pending(d);
		if (synced)
			kmsd_sync_done(d);
		kmsd_flush_dirty(d);
		if (now_ms() >= d->next_sweep_ms) {
			kmsd_sweep(d);
			d->next_sweep_ms = now_ms() + 1000;
		}
	}
}

int
main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "var", required_argument, NULL, 'v' },
		{ "run-dir", required_argument, NULL, 'r' },
		{ "policy", required_argument, NULL, 'p' },
		{ "audit", required_argument, NULL, 'a' },
		{ "module", required_argument, NULL, 'm' },
		{ "token", required_argument, NULL, 't' },
		{ "insecure-pin-file", required_argument, NULL, 'P' },
		{ "storage-kek", required_argument, NULL, 'S' },
		{ "audit-key", required_argument, NULL, 'A' },
		{ "idle-timeout", required_argument, NULL, 'i' },
		{ "log-level", required_argument, NULL, 'l' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	static char run_dir[600], policy[600], audit_path[600], kmsdir[512];
	struct kmsd d;
	struct epoll_event ev = { 0 };
	sigset_t mask;
	int o, rc, role;

	memset(&d, 0, sizeof(d));
	d.cfg.var = "./var";
	d.cfg.storage_kek = "storage-kek";
	d.cfg.audit_key = "audit";
	d.cfg.idle_timeout_s = 600;
	d.sealed = 1;
	log_init("kmsd", LOG_INFO);
	while ((o = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (o) {
		case 'v': d.cfg.var = optarg; break;
		case 'r': d.cfg.run_dir = optarg; break;
		case 'p': d.cfg.policy = optarg; break;
		case 'a': d.cfg.audit_path = optarg; break;
		case 'm': d.cfg.module = optarg; break;
		case 't': d.cfg.token_uri = optarg; break;
		case 'P': d.cfg.pin_file = optarg; break;
		case 'S': d.cfg.storage_kek = optarg; break;
		case 'A': d.cfg.audit_key = optarg; break;
		case 'i': d.cfg.idle_timeout_s = (unsigned)strtoul(optarg, NULL, 10);
			if (d.cfg.idle_timeout_s == 0)
				d.cfg.idle_timeout_s = 1;
			break;
		case 'l': log_set_level(parse_level(optarg)); break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind != argc) {
		usage(stderr);
		return 2;
	}
	if (process_harden() != 0)
		log_msg(LOG_WARN, "event=harden_failed");
	snprintf(kmsdir, sizeof(kmsdir), "%s/kms", d.cfg.var);
	if (d.cfg.run_dir == NULL) {
		snprintf(run_dir, sizeof(run_dir), "%s/run", d.cfg.var);
		d.cfg.run_dir = run_dir;
	}
	if (d.cfg.audit_path == NULL) {
		snprintf(audit_path, sizeof(audit_path), "%s/audit.log", kmsdir);
		d.cfg.audit_path = audit_path;
	}
	if (d.cfg.policy == NULL) {
		snprintf(policy, sizeof(policy), "%s/kms.policy", kmsdir);
		d.cfg.policy = access(policy, R_OK) == 0 ? policy :
		    "policy/kms.policy";
	}
	if (mkdir_p(d.cfg.run_dir, 0750) != 0 || mkdir_p(kmsdir, 0700) != 0) {
		log_msg(LOG_ERR, "event=mkdir_failed var=%s", d.cfg.var);
		return 1;
	}
	if (kmsd_load_policy(&d) != 0)
		return 1;
	if ((rc = audit_open(&d.audit, d.cfg.audit_path)) != 0) {
		log_msg(LOG_ERR, "event=audit_open_failed path=%s err=%s note=\"%s\"",
		    d.cfg.audit_path, err_name(rc), rc == ERR_AUDIT ?
		    "last line torn or not an audit record; run kmsctl audit verify" :
		    "");
		return 1;
	}
	/* The module and libcrypto ask for the pid on every call. */
	p11_pid_cache();
	if ((rc = p11_open(&d.p, d.cfg.module, d.cfg.token_uri)) != 0) {
		log_msg(LOG_ERR, "event=token_open_failed err=%s", err_name(rc));
		return 1;
	}
	if (d.cfg.pin_file != NULL) {
		char pin[256];
		size_t pl = 0;

		log_msg(LOG_WARN, "event=insecure_pin_file path=%s note=\"demo/CI "
		    "only; production unseals with custodian shares\"",
		    d.cfg.pin_file);
		rc = read_pin_file(d.cfg.pin_file, pin, sizeof(pin), &pl);
		if (rc == 0)
			rc = kmsd_login(&d, pin, pl);
		wipe(pin, sizeof(pin));
		if (rc != 0) {
			log_msg(LOG_ERR, "event=login_failed err=%s p11=\"%s\"",
			    err_name(rc), p11_last_error());
			return 1;
		}
	} else {
		log_msg(LOG_INFO, "event=sealed note=\"waiting for kmsctl unseal\"");
	}

	d.epfd = epoll_create1(EPOLL_CLOEXEC);
	sigemptyset(&mask);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGHUP);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	signal(SIGPIPE, SIG_IGN);
	/* A file-size limit makes an audit write fail (EFBIG: the records
	 * stay queued and durable replies wait), not kill kmsd. */
	signal(SIGXFSZ, SIG_IGN);
	d.sigfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
	ev.events = EPOLLIN;
	ev.data.u64 = ROLE_COUNT;
	if (d.epfd < 0 || d.sigfd < 0 ||
	    epoll_ctl(d.epfd, EPOLL_CTL_ADD, d.sigfd, &ev) != 0)
		return 1;
	for (role = 1; role < ROLE_COUNT; role++)
		if (listen_role(&d, role) != 0)
			return 1;
	/* Audit group commits run on their own thread (kmsd_flush_dirty). */
	d.sync_evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	ev.events = EPOLLIN;
	ev.data.u64 = ROLE_COUNT + 1;
	if (d.sync_evfd < 0 || epoll_ctl(d.epfd, EPOLL_CTL_ADD, d.sync_evfd,
	    &ev) != 0 || kmsd_syncer_start(&d) != 0)
		return 1;
	/* Records of a loop iteration are written together at its end. */
	audit_set_deferred(d.audit, 1);
	{
		struct req rq = { .d = &d };

		(void)kmsd_audit(&rq, "kmsd.start", NULL, "ok", d.sealed ? "sealed" :
		    "unsealed", 1);
		if (audit_flush_pending(d.audit) != 0)
			log_msg(LOG_ERR, "event=audit_write_failed");
		if (audit_sync(d.audit) != 0)
			log_msg(LOG_ERR, "event=audit_sync_failed");
	}
	log_msg(LOG_INFO, "event=ready sealed=%d", d.sealed);
	loop(&d);

	kmsd_syncer_stop(&d);
	while (d.conns != NULL)
		kmsd_conn_close(&d, d.conns);
	{
		struct req rq = { .d = &d };

		(void)kmsd_audit(&rq, "kmsd.stop", NULL, "ok", NULL, 1);
		if (audit_flush_pending(d.audit) != 0)
			log_msg(LOG_ERR, "event=audit_write_failed");
		if (audit_sync(d.audit) != 0)
			log_msg(LOG_ERR, "event=audit_sync_failed");
	}
	for (role = 1; role < ROLE_COUNT; role++) {
		char path[600];

		snprintf(path, sizeof(path), "%s/%s", d.cfg.run_dir, sock_names[role]);
		(void)unlink(path);
		close(d.lfd[role]);
	}
	ks_free(&d.ks);
	p11_close(d.p);
	audit_close(d.audit);
	policy_free(d.pol);
	log_msg(LOG_INFO, "event=stopped");
	return 0;
}
