/*
 * kmsctl.h - internals shared by the files of kmsctl, the key custodians'
 * tool (ceremonies, quorum, lifecycle, backup/restore, audit). kmsctl
 * talks to the token directly, so ceremonies run with kmsd stopped, and
 * leaves every act in the same audit log as kmsd.
 */
#ifndef SPTSM_KMSCTL_H
#define SPTSM_KMSCTL_H

#include <jansson.h>

#include "kms/audit.h"
#include "kms/keystore.h"
#include "kms/kms.h"

#define CTL_MAX_SHARES 32
#define CTL_PIN_RAW 32

struct ctl {
	/* options */
	const char *var;
	const char *module;
	const char *token_uri;
	const char *pin_file;
	const char *share_files[CTL_MAX_SHARES];
	int         nshares;
	int         json;
	int         yes;		/* confirmations answered by options */
	/* state */
	struct p11     *p;
	struct keystore ks;
	struct audit   *audit;
	int             quorum;		/* logged in with a full share quorum */
	char            participants[512];
	json_t         *tr;		/* the current ceremony's transcript */
	json_t         *tr_events;
	uint64_t        tr_seq0;
};

/* Opens the token and logs in (PIN file, or the share files rebuilt in
 * locked memory). Also opens the audit log. */
int  ctl_open(struct ctl *c) WUR;
void ctl_close(struct ctl *c);
/* Audit record for a ceremony step (durable). */
void ctl_audit(struct ctl *c, const char *op, const char *key,
	    const char *result, const char *detail);
/* Transcript of the current ceremony. */
void ctl_tr_begin(struct ctl *c, const char *ceremony);
void ctl_tr_event(struct ctl *c, const char *what, const char *label,
	    uint32_t version, const uint8_t *kcv, size_t kcvlen);
int  ctl_tr_end(struct ctl *c, const char *outcome) WUR;
/* Ends a transcript on a failure path (errors already reported). */
void ctl_tr_abort(struct ctl *c, const char *outcome);
/* Asks kmsd (if running) to re-read the key metadata. */
void ctl_kmsd_reload(struct ctl *c);
/* Reads a line from the terminal; echo off when secret. */
int  ctl_prompt(const char *question, int secret, char *out, size_t cap) WUR;
int  ctl_interactive(void);

/* Compact, key-sorted JSON without the "mac" member: what MACs cover. */
char *ctl_canonical(json_t *doc);

int  cmd_backup(struct ctl *c, int argc, char **argv);
int  cmd_restore(struct ctl *c, int argc, char **argv);
int  cmd_rewrap(struct ctl *c, int argc, char **argv);

#endif
