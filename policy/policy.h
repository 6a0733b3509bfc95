/*
 * policy.h - who may do what to which key. Pure: parses a policy text and
 * decides (caller, operation, key class, parameters) -> allow/deny. No I/O,
 * no globals, so every role x operation can be tested exhaustively.
 * Used by kmsd. The file format is in policy/POLICY.md.
 */
#ifndef SPTSM_POLICY_H
#define SPTSM_POLICY_H

#include <stddef.h>
#include <stdint.h>

#include "kms/base.h"

enum policy_role {
	ROLE_NONE = 0,
	ROLE_TSM = 1,		/* tsmd: crypto by handle */
	ROLE_CUSTODIAN = 2,	/* key custodians: unseal, ceremonies */
	ROLE_AUDITOR = 3,	/* read-only: key info, audit verification */
	ROLE_COUNT = 4
};

const char *policy_role_name(int role);
/* ROLE_NONE when unknown. */
int         policy_role_parse(const char *name);

/* The words a policy may use; the caller (kmsd) supplies them, so a typo in
 * the file is a parse error instead of a rule that never matches. */
struct policy_vocab {
	const char *const *ops;
	size_t             nops;
	const char *const *classes;
	size_t             nclasses;
	const char *const *params;
	size_t             nparams;
};

struct policy_error {
	unsigned line;		/* 1-based */
	unsigned col;		/* 1-based */
	char     msg[160];
};

struct policy;

/*
 * Parses `text` (len bytes, need not be NUL-terminated). On error returns
 * ERR_PARSE and fills *err with the line, column and reason; nothing is
 * allocated then. ERR_NOMEM on allocation failure.
 */
int  policy_parse(const char *text, size_t len, const struct policy_vocab *v,
	    struct policy **out, struct policy_error *err) WUR;
void policy_free(struct policy *p);

/* 1 if an identity line lets (uid, gid) take `role`. */
int  policy_identity_allows(const struct policy *p, uint32_t uid, uint32_t gid,
	    int role);

struct policy_param {
	const char *name;
	const char *value;	/* decimal for <=, >= constraints */
};

struct policy_request {
	const char                *op;
	const char                *key_class;	/* NULL: the op uses no key */
	const struct policy_param *params;
	size_t                     nparams;
};

struct policy_caller {
	uint32_t uid;
	uint32_t gid;
	int      role;
};

struct policy_decision {
	int      allow;		/* 1 allow, 0 deny */
	unsigned line;		/* line of the deciding rule; 0 = default deny */
};

/* First matching rule decides; no match denies. */
struct policy_decision policy_check(const struct policy *p,
	    const struct policy_caller *c, const struct policy_request *r);

/* Number of rules (for reports). */
size_t policy_rule_count(const struct policy *p);

#endif
