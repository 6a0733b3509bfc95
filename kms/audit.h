/*
 * audit.h - the append-only audit log shared by kmsd and kmsctl: one JSON
 * line per decision and per key event, hash-chained (each line carries the
 * SHA-256 of the previous line) and MACed with the token's audit key
 * (HMAC-SHA256 computed in the token through a callback).
 * Writers serialise with flock, so kmsd and kmsctl can append to the same
 * file. The record format is in kms/PROTOCOL.md "Audit log".
 */
#ifndef SPTSM_AUDIT_H
#define SPTSM_AUDIT_H

#include "kms/base.h"

typedef int (*audit_mac_fn)(void *ctx, const uint8_t *d, size_t n,
    uint8_t mac[32]);
typedef int (*audit_verify_fn)(void *ctx, const uint8_t *d, size_t n,
    const uint8_t mac[32]);

struct audit;

struct audit_rec {
	uint32_t       uid;
	int32_t        pid;
	const char    *role;	/* "tsm", "custodian", "auditor", "kmsctl", "kmsd" */
	const char    *op;	/* operation or event name */
	const char    *key;	/* key label, "h:<n>" for a handle, or NULL */
	const uint8_t *params;	/* hashed into the record, never stored */
	size_t         nparams;
	const char    *result;	/* "allow", "deny", "ok", "error" */
	const char    *detail;	/* short reason, may be NULL */
};

/* Opens (creating, mode 0600) and recovers sequence and chain from the
 * last line. ERR_AUDIT when the last line does not parse. */
int  audit_open(struct audit **out, const char *path) WUR;
void audit_close(struct audit *a);
/* Until a MAC function is set, records wait in memory (at most 10,000). */
void audit_set_mac(struct audit *a, audit_mac_fn fn, void *ctx);
int  audit_flush_pending(struct audit *a) WUR;
/* The same, for the event loop: after a failed write the queue is tried
 * again 100 ms later at the soonest, doubling to a second while it fails
 * (ERR_BUSY until then). */
int  audit_flush_due(struct audit *a) WUR;
/* Deferred mode (kmsd): records are chained, MACed and written together
 * by audit_flush_pending, under one lock and in one write (the event loop
 * calls it before any reply leaves). A failed flush writes nothing and
 * keeps the records queued for the next one. */
void audit_set_deferred(struct audit *a, int on);
/* Appends one record. `durable`: audit_sync must fdatasync before the
 * caller acknowledges (group commit). */
int  audit_log(struct audit *a, const struct audit_rec *r, int durable) WUR;
/* fdatasync when a durable record was written since the last sync. */
int  audit_sync(struct audit *a) WUR;
/* For a syncer thread: 1 and the fd to fdatasync when a durable record was
 * written since the last call (the flag is cleared), else 0. Records
 * written before the call are covered by a sync started after it. */
int  audit_take_sync(struct audit *a, int *fd);
/* 1 when a durable record waits for a sync, written already or queued
 * in deferred mode for the next audit_flush_pending (0 while records wait
 * in memory for a MAC key: nothing to sync yet). */
int  audit_sync_pending(const struct audit *a);
/* 0 if audit_log can queue one more record (writing the queue out first
 * when it is full), else the error that record would get. */
int  audit_has_room(struct audit *a);
uint64_t audit_seq(const struct audit *a);

struct audit_report {
	uint64_t lines;
	uint64_t bad_line;	/* 1-based line of the first broken link; 0 = none */
	char     reason[160];
};
/* Verifies every line: sequence, chain, MAC (through vf). ERR_AUDIT with
 * rep->bad_line and reason at the first broken link. */
int  audit_verify_file(const char *path, audit_verify_fn vf, void *ctx,
	    struct audit_report *rep) WUR;

#endif
