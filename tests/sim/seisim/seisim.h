/*
 * seisim.h - internals of the SEI-TSM simulator (tests/sim/seisim/): the
 * demo SEI peer's material, its own X-TSM-Signature code (independent of
 * tsm/http), the JSON state file, the §9.1/§9.2 SSD management tasks (ISD
 * SCP03 through the GP host engine with raw demo keys), §9.3 tokens, and
 * the §9.4/§9.5 calls towards the SP-TSM. SIMULATOR: demo keys in clear.
 * Trusts its material files; every request and response is outside input.
 */
#ifndef SPTSM_SEISIM_H
#define SPTSM_SEISIM_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>
#include <openssl/evp.h>

#include "kms/base.h"

#define SEISIM_STATE_FORMAT "sptsm-seisim/1"
#define SEISIM_SIG_WINDOW_S 300
#define SEISIM_BODY_MAX     (1u << 20)
#define SEISIM_KVN          0x30	/* the SSD's first key set (gpref §5) */
#define SEISIM_TASKS_KEPT   1000	/* finished tasks kept in the state */

/* --fault flags (tests) */
enum {
	SEISIM_FAULT_TIMEOUT = 0x01,	/* answer after --fault-delay-ms */
	SEISIM_FAULT_BAD_SIG = 0x02,	/* a wrong X-TSM-Signature on answers */
	SEISIM_FAULT_9999    = 0x04,	/* every §9.1-9.3 call: resultCode 9999 */
	SEISIM_FAULT_STRCODE = 0x08,	/* resultCode as a string: "0000" */
	SEISIM_FAULT_STALE   = 0x10,	/* answers signed with a ts 400 s old */
	SEISIM_FAULT_REPLAY  = 0x20,	/* each path: the first signed answer
					 * again, byte for byte (same nonce) */
};

/* resultCode values of the simulator's answers (README.md). */
enum {
	SEISIM_RC_OK          = 0,
	SEISIM_RC_BAD_REQUEST = 1000,	/* missing/ill-typed/ill-formed field */
	SEISIM_RC_TENANT      = 1001,	/* unknown tenantId */
	SEISIM_RC_TASK        = 1002,	/* unknown or finished taskId */
	SEISIM_RC_OPTTYPE     = 1003,	/* unsupported optType */
	SEISIM_RC_SCP         = 1004,	/* scpConfig the SE cannot do (SCP02) */
	SEISIM_RC_CONFLICT    = 1005,	/* SSD exists / SE busy with a task */
	SEISIM_RC_AUTH        = 1006,	/* X-TSM-Signature refused (HTTP 401) */
	SEISIM_RC_CARD        = 2001,	/* the SE refused a command (SW) */
	SEISIM_RC_CHANNEL     = 2002,	/* secure channel failed */
	SEISIM_RC_RESPONSE    = 2003,	/* malformed or unexpected response */
	SEISIM_RC_FAIL        = 9999,	/* anything else; --fault result-9999 */
};

/* The demo SEI peer (ARCHITECTURE.md "Demo material"): keys = XOR of the
 * components, checked against their KCVs. */
struct seisim_material {
	char     sei_tsm_id[65];
	char     tenant_id[65];
	char     wrap[24];		/* AES-KW, AES-KWP, RSA-OAEP-SHA1/256 */
	char     kcv_method[8];		/* GP or CMAC */
	uint8_t  kek[32];
	size_t   kek_len;
	char     mac_key_id[65];
	uint8_t  mac_key[64];
	size_t   mac_len;
	EVP_PKEY *sp_pub;		/* SP key-transport public key (RSA-OAEP) */
};

/* Loads and checks the material; sp_pub_path (may be NULL) overrides the
 * optional "spTransportPublicKey" member (a PEM file path, relative to the
 * material file). err gets a message that names the field. */
int  seisim_material_load(struct seisim_material *m, const char *path,
	    const char *sp_pub_path, char *err, size_t cap) WUR;
void seisim_material_cleanup(struct seisim_material *m);

/* ---- X-TSM-Signature (auth.c) ---- */

/* Header value for (method, path, body), fresh ts and nonce. */
int  seisim_sig_make(const struct seisim_material *m, const char *method,
	    const char *path, const void *body, size_t n, char *hdr,
	    size_t cap) WUR;
/* The same with a given ts (--fault stale-signature). */
int  seisim_sig_make_ts(const struct seisim_material *m, int64_t ts,
	    const char *method, const char *path, const void *body, size_t n,
	    char *hdr, size_t cap) WUR;
/*
 * Checks a received header: syntax, keyId = ours, |ts - now| <= 300 s,
 * the HMAC, then the nonce (recorded only once the MAC verified). On
 * failure returns ERR_AUTH and *why names the reason (signature_missing,
 * signature_malformed, unknown_key_id, signature_expired,
 * signature_invalid, replay).
 */
int  seisim_sig_check(const struct seisim_material *m, const char *hdr,
	    const char *method, const char *path, const void *body, size_t n,
	    const char **why) WUR;

/* ---- small crypto helpers (crypto.c) ---- */

/* kcv_method "GP": AES(K, 01x16)[0..2]; "CMAC": AES-CMAC(K, 00x16)[0..4]. */
int  seisim_kcv(const char *method, const uint8_t *key, size_t n,
	    uint8_t kcv[5], size_t *kcvlen) WUR;
/* Wraps a key for §9.4 per the material's wrap (out cap >= 512). */
int  seisim_wrap_key(const struct seisim_material *m, const uint8_t *key,
	    size_t n, uint8_t *out, size_t cap, size_t *outlen) WUR;
/* RSASSA-PSS, SHA-256, MGF1-SHA-256, salt 32 (gpref §6): sig cap >= 512. */
int  seisim_token_sign(EVP_PKEY *k, const uint8_t *d, size_t n, uint8_t *sig,
	    size_t cap, size_t *siglen) WUR;
/* DEMO ONLY: the ISD ENC/MAC/DEK of a demo vSE (tests/sim/demo/README.md). */
int  seisim_demo_isd_keys(const char *se_id, uint8_t k[3][16]) WUR;
int  seisim_hmac(const uint8_t *key, size_t kl, const void *d, size_t n,
	    uint8_t out[32]) WUR;
/* Self-signed EC P-256 server certificate for host (+127.0.0.1,
 * localhost); PEM out. */
int  seisim_tls_make(const char *host, struct buf *cert, struct buf *key) WUR;

/* ---- the state file (state.c) ---- */

/*
 * VAR/seisim/state.json is the simulator's source of truth; the server
 * and `seisim repair` both change it under an exclusive flock on
 * VAR/seisim/state.lock: open (load), change, commit (atomic write),
 * close. Runtime SCP03 sessions are not in it.
 */
struct seisim_state {
	char    path[1100];
	char    lock_path[1100];
	int     lock_fd;
	json_t *root;
};

/* Locks and loads (a missing file starts an empty state). */
int  seisim_state_open(struct seisim_state *st, const char *dir,
	    const char *sei_tsm_id) WUR;
int  seisim_state_commit(struct seisim_state *st) WUR;
/* Unlocks and frees (without writing). */
void seisim_state_close(struct seisim_state *st);
/* Accessors; they create the arrays when missing. */
json_t *seisim_state_tasks(struct seisim_state *st);
json_t *seisim_state_ssds(struct seisim_state *st);
json_t *seisim_state_task(struct seisim_state *st, const char *task_id);
json_t *seisim_state_ssd(struct seisim_state *st, const char *se_id,
	    const char *sd_aid);
/* Next task id "SIM-000001", persisted. */
int  seisim_state_next_task_id(struct seisim_state *st, char *out,
	    size_t cap) WUR;
/* Drops the oldest finished tasks beyond SEISIM_TASKS_KEPT. */
void seisim_state_trim(struct seisim_state *st);

/* ---- the simulator ---- */

struct seisim_task;	/* runtime part of a §9.1 task (ssd.c) */
struct seisim_job;	/* queued §9.4 key sync (keysync.c) */

struct seisim {
	char      var[1024];
	char      dir[1100];		/* VAR/seisim */
	char      listen[300];
	char      base_path[256];	/* "" or "/prefix" */
	char      tsm_url[512];
	char      tsm_ca[1100];
	char      token_key_path[1100];
	int       no_tls;
	unsigned  faults;
	unsigned  fault_delay_ms;
	unsigned  task_ttl_s;
	unsigned  http_timeout_ms;
	uint8_t   sl;			/* ISD session security level */
	uint8_t   isd_aid[16];
	size_t    isd_aid_len;
	uint8_t   sd_elf[16], sd_mod[16];	/* the card's SD package */
	size_t    sd_elf_len, sd_mod_len;
	struct seisim_material m;
	EVP_PKEY *token_key;		/* DEMO DM token private key */

	pthread_mutex_t rlock;		/* --fault replay-answer cache */
	struct seisim_replay {
		char  path[64];
		int   status;
		char *text;
		char  hdr[300];
	} replay[4];

	pthread_mutex_t lock;		/* tasks and the state file */
	struct seisim_task *tasks;
	_Atomic int stopping;		/* set once by the main thread */

	pthread_mutex_t jlock;		/* key sync queue */
	pthread_cond_t  jcond;
	struct seisim_job *jobs;
	pthread_t  jthread;
	int        jthread_started;
	unsigned   busy_jobs;
};

/* A handler's answer: HTTP status and JSON body (resultCode etc.). */
struct seisim_answer {
	int     status;
	json_t *body;
};

/* §9.1 / §9.2 (ssd.c); body is the parsed request. Called with s->lock
 * not held. */
void seisim_ssd_manage(struct seisim *s, json_t *body, struct seisim_answer *a);
void seisim_ssd_instructions(struct seisim *s, json_t *body,
	    struct seisim_answer *a);
/* Frees every runtime task (at exit). */
void seisim_tasks_free(struct seisim *s);
/* §9.3 (token.c) */
void seisim_token(struct seisim *s, json_t *body, struct seisim_answer *a);

/* Builds {"resultCode": rc, "resultMessage": msg, ...}: the common error
 * answer; extra members for the operation are added by the caller. */
json_t *seisim_result(int rc, const char *fmt, ...)
	    __attribute__((format(printf, 2, 3)));

/* ---- towards the SP-TSM (peer.c, keysync.c) ---- */

/*
 * POSTs a signed JSON body to s->tsm_url + path, verifies the answer's
 * X-TSM-Signature (same rules as requests, with the request's METHOD and
 * PATH) and parses it. *http gets the status (0: no answer). ERR_IO /
 * ERR_TIMEOUT (transport), ERR_AUTH (answer unsigned or badly signed),
 * ERR_PARSE (not JSON). err gets a message.
 */
int  seisim_post(struct seisim *s, const char *path, json_t *body,
	    json_t **resp, long *http, char *err, size_t cap) WUR;

struct seisim_keys {
	char    se_id[130];
	char    sd_aid[33];
	uint8_t kvn;
	uint8_t k[3][16];		/* ENC, MAC, DEK */
};
/* Queues a §9.4 key sync of a created SSD (the worker sends it); the
 * caller has recorded it as PENDING. May be called with s->lock held. */
int  seisim_keysync_queue(struct seisim *s, const struct seisim_keys *k) WUR;
/* Sends one §9.4 key sync now, verifies the receipt, records the outcome
 * under the SSD in the state. */
int  seisim_keysync_send(struct seisim *s, const struct seisim_keys *k) WUR;
int  seisim_keysync_start(struct seisim *s) WUR;
/* Stops the worker (queued jobs are dropped and logged). */
void seisim_keysync_stop(struct seisim *s);

/* `seisim repair`: §9.5 for every SSD created on se_id (and optionally
 * their removal from a vSE card file). Returns a process exit status. */
int  seisim_repair(struct seisim *s, const char *se_id, const char *status,
	    const char *card) WUR;

/* ---- hex helpers (state.c) ---- */

/* Strict hex of 1..cap bytes, either case. */
int  seisim_hex(const char *s, uint8_t *out, size_t cap, size_t *n) WUR;
/* Upper-case hex string of n bytes into out (2n+1). */
void seisim_hexu(const uint8_t *p, size_t n, char *out);

#endif
