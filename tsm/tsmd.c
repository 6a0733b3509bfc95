/*
 * tsmd.c - the SP-TSM daemon's entry point: options and configuration,
 * process hardening, first-start TLS certificate and admin key, the route
 * sets, the HTTPS server, signals (SIGTERM/SIGINT drain and stop, SIGHUP
 * reloads limits, peers and API keys). Holds no key bytes; kmsd does.
 */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tsm/config.h"
#include "tsm/flow/flow.h"
#include "tsm/http/http.h"
#include "tsm/sei/sei.h"
#include "tsm/store/store.h"

/* Process-wide state handed to route sets (the router's app pointer). */
struct tsmd {
	struct tsm_config   *cfg;	/* as at start; requests see the live
					 * one through http_req_config() */
	struct http_apikeys *keys;
	struct store        *store;	/* VAR/tsm/store, open while serving */
	struct flow         *flow;	/* tasks, agent sessions, flows */
};

typedef int (*tsmd_routes_fn)(struct http_router *r, struct tsmd *t);

static int
routes_builtin(struct http_router *r, struct tsmd *t)
{
	return http_builtin_register(r, t->keys);
}

static int
routes_sei(struct http_router *r, struct tsmd *t)
{
	return sei_routes_register(r, t->store);
}

static int
routes_flow(struct http_router *r, struct tsmd *t)
{
	return flow_routes_register(r, t->flow);
}

/*
 * The route sets, registered in this order. A component plugs in its
 * handlers by adding one line here (e.g. { "sei", sei_routes_register }
 * for the SEI-TSM endpoints of §9.4/9.5) - the framework does not change.
 */
static const struct {
	const char     *name;
	tsmd_routes_fn  fn;
} route_sets[] = {
	{ "builtin", routes_builtin },
	{ "sei", routes_sei },
	{ "flow", routes_flow },
};

static void
usage(FILE *f)
{
	fprintf(f,
	    "usage: tsmd [options]\n"
	    "The SP-TSM (T/TAF 096-2021): HTTPS API for operators, providers,\n"
	    "SEI-TSMs and device agents; keys stay in kmsd.\n\n"
	    "  --config FILE       JSON configuration (default VAR/tsm/tsmd.json\n"
	    "                      when it exists; see tsm/tsmd.conf.md)\n"
	    "  --listen HOST:PORT  listen address (default 127.0.0.1:8443)\n"
	    "  --var DIR           state directory (default ./var)\n"
	    "  --kms-socket PATH   kmsd socket (default VAR/run/kms.sock)\n"
	    "  --no-tls            plain HTTP on a loopback address: tests and\n"
	    "                      benchmarks only\n"
	    "  --log-level LEVEL   error|warn|info|debug (default info)\n"
	    "  -h, --help          this text\n\n"
	    "First start writes VAR/ca.pem (the self-signed server certificate\n"
	    "clients trust) and VAR/admin.key (the bootstrap admin API key).\n"
	    "SIGHUP reloads limits, peers, log level and API keys; SIGTERM stops\n"
	    "after in-flight requests finish.\n");
}

static int
var_path(char *out, size_t cap, const struct tsm_config *c, const char *rel)
{
	return snprintf(out, cap, "%s/%s", c->var_dir, rel) >= (int)cap ?
	    ERR_TOOBIG : 0;
}

static void
reload(struct http_server *srv, struct http_apikeys *keys,
    const struct tsm_config_args *a)
{
	struct tsm_config *c;
	char err[512];
	int rc;

	log_msg(LOG_INFO, "event=reload");
	if (tsm_config_load(&c, a, err, sizeof(err)) != 0) {
		log_msg(LOG_ERR, "event=reload_failed note=\"kept the running "
		    "configuration\" error=\"%s\"", err);
	} else {
		http_server_reload(srv, c);
		tsm_config_unref(c);
	}
	if ((rc = http_apikeys_reload(keys)) != 0)
		log_msg(LOG_ERR, "event=apikeys_reload_failed err=%s note=\"kept the "
		    "old keys\"", err_name(rc));
}

int
main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "listen", required_argument, NULL, 'L' },
		{ "var", required_argument, NULL, 'v' },
		{ "kms-socket", required_argument, NULL, 'k' },
		{ "no-tls", no_argument, NULL, 'N' },
		{ "log-level", required_argument, NULL, 'l' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct tsm_config_args a = { 0 };
	struct tsm_config *cfg = NULL;
	struct http_apikeys *keys = NULL;
	struct http_router *router = NULL;
	struct http_server *srv = NULL;
	struct tsmd app = { 0 };
	struct store_opts sopts = { 0 };
	char err[512], path[1200], ca[1200], addr[300], addr_path[1200];
	sigset_t mask;
	size_t i;
	int o, rc, sig, created, ret = 1;

	log_init("tsmd", LOG_INFO);
	/* Signals are taken synchronously by the main thread (sigwait below).
	 * Blocked before any thread exists - the store's writer starts in
	 * store_open - so that every thread inherits the mask: a thread with
	 * SIGHUP/SIGTERM unblocked would take one sent while the main thread
	 * is busy (a second SIGHUP during a reload) and die of its default
	 * action, taking the process with it. */
	sigemptyset(&mask);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &mask, NULL);
	signal(SIGPIPE, SIG_IGN);
	while ((o = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (o) {
		case 'c': a.config = optarg; break;
		case 'L': a.listen = optarg; break;
		case 'v': a.var = optarg; break;
		case 'k': a.kms_socket = optarg; break;
		case 'N': a.no_tls = 1; break;
		case 'l': a.log_level = optarg; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind != argc) {
		usage(stderr);
		return 2;
	}
	if (tsm_config_load(&cfg, &a, err, sizeof(err)) != 0) {
		fprintf(stderr, "tsmd: configuration error: %s\n", err);
		log_msg(LOG_ERR, "event=config_error error=\"%s\"", err);
		return 2;
	}
	log_set_level(cfg->log_level);
	if (process_harden() != 0)
		log_msg(LOG_WARN, "event=harden_failed");
	if (var_path(path, sizeof(path), cfg, "tsm") != 0 ||
	    mkdir_p(path, 0700) != 0) {
		log_msg(LOG_ERR, "event=mkdir_failed path=%s", path);
		goto out;
	}

	/* First start: server certificate (and VAR/ca.pem), admin key. */
	if (cfg->tls) {
		if (var_path(ca, sizeof(ca), cfg, "ca.pem") != 0 ||
		    (rc = http_tls_bootstrap(cfg->tls_cert, cfg->tls_key, ca,
		    cfg->host, &created)) != 0) {
			log_msg(LOG_ERR, "event=tls_bootstrap_failed");
			goto out;
		}
	}
	if (var_path(path, sizeof(path), cfg, "tsm/apikeys") != 0 ||
	    (rc = http_apikeys_open(&keys, path)) != 0) {
		log_msg(LOG_ERR, "event=apikeys_open_failed path=%s", path);
		goto out;
	}
	if (var_path(path, sizeof(path), cfg, "admin.key") != 0 ||
	    (rc = http_apikeys_bootstrap(keys, path, &created)) != 0) {
		log_msg(LOG_ERR, "event=admin_key_failed path=%s err=%s", path,
		    err_name(rc));
		goto out;
	}
	if ((rc = tsm_kms_init(cfg->kms_socket)) != 0) {
		log_msg(LOG_ERR, "event=kms_socket_invalid path=%s", cfg->kms_socket);
		goto out;
	}
	/* The first kmsd probe, here: /healthz answers from memory. */
	(void)tsm_kms_health();

	sopts.map_size = cfg->lim.store_map_mib << 20;
	if ((rc = var_path(path, sizeof(path), cfg, "tsm/store")) != 0 ||
	    (rc = store_open(&app.store, path, &sopts)) != 0) {
		log_msg(LOG_ERR, "event=store_open_failed path=%s err=%s", path,
		    err_name(rc));
		goto out;
	}

	/* The flows (they start the SEI client: before any thread), and
	 * their §9.5 reaction hooked into the SEI handlers. */
	if ((rc = flow_new(&app.flow, app.store, cfg)) != 0) {
		log_msg(LOG_ERR, "event=flow_init_failed err=%s", err_name(rc));
		goto out;
	}
	{
		struct sei_sdstatus_hook h;

		flow_sdstatus_hook(app.flow, &h);
		sei_sdstatus_set_hook(&h);
	}

	app.cfg = cfg;
	app.keys = keys;
	if (http_router_new(&router, &app) != 0)
		goto out;
	for (i = 0; i < ARRAY_LEN(route_sets); i++)
		if ((rc = route_sets[i].fn(router, &app)) != 0) {
			log_msg(LOG_ERR, "event=routes_failed set=%s err=%s",
			    route_sets[i].name, err_name(rc));
			goto out;
		}

	if ((rc = http_server_start(&srv, cfg, router, keys)) != 0) {
		log_msg(LOG_ERR, "event=start_failed err=%s", err_name(rc));
		goto out;
	}
	if ((rc = flow_start(app.flow)) != 0) {
		log_msg(LOG_ERR, "event=flow_start_failed err=%s", err_name(rc));
		goto out;
	}
	/* Where we listen (port 0 picks one): for scripts and tests. */
	snprintf(addr, sizeof(addr), "%s%s%s:%u\n", strchr(cfg->host, ':') ?
	    "[" : "", cfg->host, strchr(cfg->host, ':') ? "]" : "",
	    http_server_port(srv));
	if (var_path(addr_path, sizeof(addr_path), cfg, "tsm/tsmd.addr") != 0 ||
	    file_write_atomic(addr_path, addr, strlen(addr), 0644) != 0)
		log_msg(LOG_WARN, "event=addr_file_failed path=%s", addr_path);
	log_msg(LOG_INFO, "event=ready url=%s://%.*s kms_socket=%s peers=%zu",
	    cfg->tls ? "https" : "http", (int)strlen(addr) - 1, addr,
	    cfg->kms_socket, cfg->npeers);

	for (;;) {
		if (sigwait(&mask, &sig) != 0)
			continue;
		if (sig == SIGHUP) {
			reload(srv, keys, &a);
			continue;
		}
		log_msg(LOG_INFO, "event=stopping signal=%d in_flight=%ld", sig,
		    http_server_inflight(srv));
		break;
	}
	http_server_stop(srv, cfg->lim.drain_timeout_ms);
	srv = NULL;
	(void)unlink(addr_path);
	log_msg(LOG_INFO, "event=stopped");
	ret = 0;
out:
	if (srv != NULL)
		http_server_stop(srv, 0);
	/* Every request on the shared kmsd pipe belongs to a handed-off
	 * request, which the stop waited for: nothing is pending now. */
	tsm_kms_pipe_stop();
	sei_sdstatus_set_hook(NULL);
	flow_free(app.flow);	/* after the server: no handler runs now */
	/* The replay cache serves the server and the flows' SEI client. */
	http_nonce_cleanup();
	store_close(app.store);
	tsm_kms_cleanup();
	http_router_free(router);
	http_apikeys_free(keys);
	tsm_config_unref(cfg);
	return ret;
}
