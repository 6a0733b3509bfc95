/*
 * config.h - tsmd's configuration: defaults, the JSON config file
 * (tsm/tsmd.conf.md documents every field), command-line overrides, and
 * validation that names the offending field. Runs in tsmd; the file is
 * operator input and is checked as strictly as network input.
 */
#ifndef SPTSM_TSM_CONFIG_H
#define SPTSM_TSM_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include "kms/base.h"

#define TSM_JSON_DEPTH_MAX 256	/* ceiling for limits.maxJsonDepth */

/* An SEI-TSM peer (ARCHITECTURE.md, §9). Key fields are kmsd labels. */
struct tsm_peer {
	char *sei_tsm_id;	/* the peer's id (seiTsmId in 9.4/9.5) */
	char *tenant_id;	/* our id at that SEI-TSM (tenantId in 9.1-9.3) */
	char *base_url;		/* https://host[:port]/prefix, no trailing '/' */
	int   wrap;		/* KMS_WRAP_AES_KW, _AES_KWP, _RSA_OAEP_SHA1/256 */
	int   kcv_method;	/* KMS_KCV_GP or KMS_KCV_CMAC */
	char *transport_kek;	/* kmsd label of the transport KEK / RSA key */
	char *mac_key_id;	/* keyId in X-TSM-Signature */
	char *mac_key;		/* kmsd label of the HMAC key */
	char *tls_ca;		/* CA file for the peer's server cert, or NULL
				 * (system trust) */
	int   client_cert_required;	/* its calls must carry a verified
					 * TLS client certificate */
};

struct tsm_limits {
	size_t   max_body;		/* bytes; 413 beyond */
	unsigned max_json_depth;	/* nesting; 400 beyond */
	unsigned max_connections;
	unsigned conn_timeout_s;	/* idle connection */
	unsigned request_timeout_ms;	/* per request, first byte to answer */
	unsigned workers;		/* worker threads */
	unsigned drain_timeout_ms;	/* on SIGTERM */
	uint64_t store_map_mib;		/* the store's LMDB map (restart) */
};

/* How tsmd makes the new key set of an SSD (ssdKeys, tsm/tsmd.conf.md). */
enum tsm_ssd_key_source { TSM_KEYS_RANDOM = 0, TSM_KEYS_DIVERSIFIED = 1 };
struct tsm_ssd_keys {
	char *aid;		/* upper-case hex; "*" = every other AID */
	int   source;		/* enum tsm_ssd_key_source */
	char *master;		/* diversified: kmsd label prefix of the master
				 * keys (<master>/enc, /mac, /dek) */
};

/* Agent sessions, SEI calls from the flows, key archive, notifications
 * (tsm/flow/, tsm/tsmd.conf.md). */
enum tsm_agent_auth { TSM_AGENT_AUTH_NONE = 0, TSM_AGENT_AUTH_CLIENT_CERT = 1 };
struct tsm_flows {
	int      agent_auth;		/* enum tsm_agent_auth (needs a restart) */
	unsigned session_timeout_s;	/* agent.sessionTimeoutS */
	unsigned sei_timeout_ms;	/* flows.seiTimeoutMs */
	unsigned key_archive_days;	/* flows.keyArchiveDays */
	char    *notify_mac_key;	/* notify.macKey: kmsd HMAC label */
	char    *notify_key_id;		/* notify.keyId: keyId of X-TSM-Signature */
	unsigned notify_max_attempts;	/* notify.maxAttempts */
	unsigned notify_backoff_ms;	/* notify.backoffMs: first retry delay */
	unsigned notify_timeout_ms;	/* notify.timeoutMs: one delivery */
	unsigned notify_retention_days;	/* notify.retentionDays: finished
					 * ones kept this long */
	struct tsm_ssd_keys *ssd_keys;	/* ssdKeys */
	size_t   nssd_keys;
};

struct tsm_config {
	char    *path;		/* the config file read, or NULL */
	char    *listen;	/* "host:port" as given */
	char    *host;		/* without brackets */
	uint16_t port;
	char    *var_dir;
	char    *kms_socket;
	int      tls;		/* 0 only with --no-tls / "tls": {"enabled":
				 * false}, and only on loopback */
	char    *tls_cert;
	char    *tls_key;
	char    *tls_client_ca;	/* NULL: client certificates not requested */
	struct tsm_limits lim;
	int      log_level;	/* LOG_* */
	struct tsm_peer *peers;
	size_t   npeers;
	struct tsm_flows flows;
	int      refs;		/* atomically updated */
};

/* Command-line values; NULL / -1 when not given. They win over the file. */
struct tsm_config_args {
	const char *config;	/* --config */
	const char *listen;	/* --listen */
	const char *var;	/* --var */
	const char *kms_socket;	/* --kms-socket */
	const char *log_level;	/* --log-level */
	int         no_tls;	/* --no-tls: 1, else 0 */
};

/*
 * Builds a configuration: defaults, then the file (args->config, else
 * VAR/tsm/tsmd.json when it exists), then the arguments. On error returns
 * ERR_PARSE / ERR_INVAL / ERR_IO and writes to err a message that names
 * the field ("peers[1].wrap: must be one of ...").
 */
int  tsm_config_load(struct tsm_config **out, const struct tsm_config_args *a,
	    char *err, size_t errcap) WUR;
/* Parses a config document from memory on top of the defaults (tests). */
int  tsm_config_parse(struct tsm_config **out, const char *json, size_t n,
	    const struct tsm_config_args *a, char *err, size_t errcap) WUR;
struct tsm_config *tsm_config_ref(struct tsm_config *c);
void tsm_config_unref(struct tsm_config *c);

/* Peer lookup; NULL when unknown. */
const struct tsm_peer *tsm_config_peer(const struct tsm_config *c,
	    const char *sei_tsm_id);
const struct tsm_peer *tsm_config_peer_by_key_id(const struct tsm_config *c,
	    const char *mac_key_id);

/* The ssdKeys entry for an SSD AID (upper-case hex): its own, else "*",
 * else NULL (random). */
const struct tsm_ssd_keys *tsm_config_ssd_keys(const struct tsm_config *c,
	    const char *sd_aid);

/* "error"|"warn"|"info"|"debug" -> LOG_*; -1 when unknown. */
int  tsm_log_level_parse(const char *s);
/* 1 when host is 127.0.0.0/8, ::1 or localhost. */
int  tsm_host_is_loopback(const char *host);
/* A URL tsmd may call: https://, or plain http:// to a loopback host
 * (tests, the demo), without blanks, quotes or angle brackets. */
int  tsm_url_ok(const char *url);
/* An identifier (peer ids, keyIds, provider ids, kmsd labels with slash):
 * 1..max of [A-Za-z0-9._:-], and '/' when slash. s need not end in NUL. */
int  tsm_ident_ok(const char *s, size_t n, size_t max, int slash);

#endif
