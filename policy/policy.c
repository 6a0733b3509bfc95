/*
 * policy.c - parser and decision function for the kmsd policy file.
 * Pure: no I/O, no globals. Trusts nothing in the text: every word is
 * checked against the vocabulary and every error carries line and column.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "policy/policy.h"

#define MAX_WORD 64
#define MAX_LIST 32
#define MAX_CONS 8

enum cons_kind { CONS_SET = 1, CONS_LE = 2, CONS_GE = 3 };

struct cons {
	char   name[MAX_WORD];
	int    kind;
	char   values[MAX_LIST][MAX_WORD];	/* CONS_SET */
	size_t nvalues;
	unsigned long long bound;		/* CONS_LE / CONS_GE */
};

struct rule {
	unsigned line;
	int      allow;
	int      role;
	int      any_op;
	char     ops[MAX_LIST][MAX_WORD];
	size_t   nops;
	int      has_class;		/* 0: matches key-less ops only */
	int      any_class;
	char     classes[MAX_LIST][MAX_WORD];
	size_t   nclasses;
	struct cons cons[MAX_CONS];
	size_t   ncons;
};

struct ident {
	int      any;
	int      by_gid;
	uint32_t id;
	unsigned roles;			/* bit per role */
};

struct policy {
	struct rule  *rules;
	size_t        nrules, caprules;
	struct ident *idents;
	size_t        nidents, capidents;
};

static const char *const role_names[ROLE_COUNT] = { "none", "tsm", "custodian",
	"auditor" };

const char *
policy_role_name(int role)
{
	return role > 0 && role < ROLE_COUNT ? role_names[role] : "none";
}

int
policy_role_parse(const char *name)
{
	int i;

	for (i = 1; i < ROLE_COUNT; i++)
		if (strcmp(name, role_names[i]) == 0)
			return i;
	return ROLE_NONE;
}

/* ---- lexer over one line ---- */

struct lx {
	const char *s;		/* the line */
	size_t      len;
	size_t      pos;
	unsigned    line;
	struct policy_error *err;
};

static int __attribute__((format(printf, 3, 4)))
fail(struct lx *l, size_t col0, const char *fmt, ...)
{
	va_list ap;

	l->err->line = l->line;
	l->err->col = (unsigned)col0 + 1;
	va_start(ap, fmt);
	vsnprintf(l->err->msg, sizeof(l->err->msg), fmt, ap);
	va_end(ap);
	return ERR_PARSE;
}

static void
skip_ws(struct lx *l)
{
	while (l->pos < l->len && (l->s[l->pos] == ' ' || l->s[l->pos] == '\t'))
		l->pos++;
}

static int
at_end(struct lx *l)
{
	skip_ws(l);
	return l->pos >= l->len || l->s[l->pos] == '#';
}

static int
word_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	    (c >= '0' && c <= '9') || c == '.' || c == '-' || c == '_' ||
	    c == '*';
}

/* Reads a run of word characters into out; *start gets its column. */
static int
word(struct lx *l, char *out, size_t *start, const char *what)
{
	size_t n = 0;

	skip_ws(l);
	*start = l->pos;
	while (l->pos < l->len && word_char(l->s[l->pos])) {
		if (n + 1 >= MAX_WORD)
			return fail(l, *start, "%s too long", what);
		out[n++] = l->s[l->pos++];
	}
	out[n] = '\0';
	if (n == 0)
		return fail(l, *start, "expected %s", what);
	return 0;
}

static int
in_list(const char *w, const char *const *list, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (strcmp(w, list[i]) == 0)
			return 1;
	return 0;
}

/* word[,word]* into arr; each checked against vocab (NULL = any word). */
static int
word_list(struct lx *l, char arr[][MAX_WORD], size_t *n,
    const char *const *vocab, size_t nvocab, const char *what, int allow_star)
{
	size_t col;
	int rc;

	*n = 0;
	for (;;) {
		if (*n >= MAX_LIST)
			return fail(l, l->pos, "too many %s values", what);
		if ((rc = word(l, arr[*n], &col, what)) != 0)
			return rc;
		if (strcmp(arr[*n], "*") == 0) {
			if (!allow_star)
				return fail(l, col, "'*' not allowed for %s", what);
			if (*n > 0 || (l->pos < l->len && l->s[l->pos] == ','))
				return fail(l, col, "'*' must stand alone");
		} else if (*n > 0 && strcmp(arr[0], "*") == 0) {
			return fail(l, col, "'*' must stand alone");
		} else if (strchr(arr[*n], '*') != NULL) {
			return fail(l, col, "'*' must stand alone");
		} else if (vocab != NULL && !in_list(arr[*n], vocab, nvocab)) {
			l->err->line = l->line;
			l->err->col = (unsigned)col + 1;
			snprintf(l->err->msg, sizeof(l->err->msg), "unknown %s '%s'",
			    what, arr[*n]);
			return ERR_PARSE;
		}
		(*n)++;
		if (l->pos < l->len && l->s[l->pos] == ',') {
			l->pos++;
			continue;
		}
		return 0;
	}
}

static int
parse_uint(struct lx *l, unsigned long long *v, const char *what)
{
	size_t start = l->pos;
	unsigned long long x = 0;

	if (l->pos >= l->len || l->s[l->pos] < '0' || l->s[l->pos] > '9')
		return fail(l, start, "expected a decimal %s", what);
	while (l->pos < l->len && l->s[l->pos] >= '0' && l->s[l->pos] <= '9') {
		if (x > (~0ull - 9) / 10)
			return fail(l, start, "%s out of range", what);
		x = x * 10 + (unsigned long long)(l->s[l->pos++] - '0');
	}
	if (l->pos < l->len && word_char(l->s[l->pos]))
		return fail(l, l->pos, "unexpected character in %s", what);
	*v = x;
	return 0;
}

/* "identity (uid=N | gid=N | any) roles=r1,r2" */
static int
parse_identity(struct lx *l, struct ident *id)
{
	char w[MAX_WORD], roles[MAX_LIST][MAX_WORD];
	unsigned long long v;
	size_t col, n, i;
	int rc;

	memset(id, 0, sizeof(*id));
	if ((rc = word(l, w, &col, "uid=, gid= or any")) != 0)
		return rc;
	if (strcmp(w, "any") == 0) {
		id->any = 1;
	} else if (strcmp(w, "uid") == 0 || strcmp(w, "gid") == 0) {
		id->by_gid = w[0] == 'g';
		if (l->pos >= l->len || l->s[l->pos] != '=')
			return fail(l, l->pos, "expected '='");
		l->pos++;
		if ((rc = parse_uint(l, &v, "id")) != 0)
			return rc;
		if (v > UINT32_MAX)
			return fail(l, col, "id out of range");
		id->id = (uint32_t)v;
	} else {
		return fail(l, col, "expected uid=, gid= or any, got '%s'", w);
	}
	if ((rc = word(l, w, &col, "roles=")) != 0)
		return rc;
	if (strcmp(w, "roles") != 0 || l->pos >= l->len || l->s[l->pos] != '=')
		return fail(l, col, "expected roles=");
	l->pos++;
	if ((rc = word_list(l, roles, &n, NULL, 0, "role", 0)) != 0)
		return rc;
	for (i = 0; i < n; i++) {
		int r = policy_role_parse(roles[i]);

		if (r == ROLE_NONE)
			return fail(l, col, "unknown role '%s'", roles[i]);
		id->roles |= 1u << r;
	}
	return 0;
}

static int
parse_constraint(struct lx *l, const struct policy_vocab *v, struct rule *r)
{
	struct cons *c;
	size_t col;
	int rc;

	if (r->ncons >= MAX_CONS)
		return fail(l, l->pos, "too many constraints");
	c = &r->cons[r->ncons];
	memset(c, 0, sizeof(*c));
	if ((rc = word(l, c->name, &col, "parameter name")) != 0)
		return rc;
	if (strcmp(c->name, "class") == 0) {
		if (r->has_class)
			return fail(l, col, "class given twice");
		if (l->pos >= l->len || l->s[l->pos] != '=')
			return fail(l, l->pos, "expected '=' after class");
		l->pos++;
		if ((rc = word_list(l, r->classes, &r->nclasses, v->classes,
		    v->nclasses, "key class", 1)) != 0)
			return rc;
		r->has_class = 1;
		r->any_class = strcmp(r->classes[0], "*") == 0;
		return 0;
	}
	if (!in_list(c->name, v->params, v->nparams))
		return fail(l, col, "unknown parameter '%s'", c->name);
	if (l->pos + 1 < l->len && l->s[l->pos] == '<' && l->s[l->pos + 1] == '=') {
		l->pos += 2;
		c->kind = CONS_LE;
		rc = parse_uint(l, &c->bound, "bound");
	} else if (l->pos + 1 < l->len && l->s[l->pos] == '>' &&
	    l->s[l->pos + 1] == '=') {
		l->pos += 2;
		c->kind = CONS_GE;
		rc = parse_uint(l, &c->bound, "bound");
	} else if (l->pos < l->len && l->s[l->pos] == '=') {
		l->pos++;
		c->kind = CONS_SET;
		rc = word_list(l, c->values, &c->nvalues, NULL, 0, "value", 0);
	} else {
		return fail(l, l->pos, "expected '=', '<=' or '>=' after '%s'",
		    c->name);
	}
	if (rc != 0)
		return rc;
	r->ncons++;
	return 0;
}

/* "(allow|deny) ROLE OPS [class=..] [constraint ...]" */
static int
parse_rule(struct lx *l, const struct policy_vocab *v, struct rule *r)
{
	char w[MAX_WORD];
	size_t col;
	int rc;

	if ((rc = word(l, w, &col, "role")) != 0)
		return rc;
	if ((r->role = policy_role_parse(w)) == ROLE_NONE)
		return fail(l, col, "unknown role '%s'", w);
	if ((rc = word_list(l, r->ops, &r->nops, v->ops, v->nops, "operation",
	    1)) != 0)
		return rc;
	r->any_op = strcmp(r->ops[0], "*") == 0;
	while (!at_end(l)) {
		if ((rc = parse_constraint(l, v, r)) != 0)
			return rc;
	}
	return 0;
}

static int
grow(void **arr, size_t *cap, size_t n, size_t elem)
{
	size_t nc;
	void *na;

	if (n < *cap)
		return 0;
	nc = *cap ? *cap * 2 : 16;
	na = realloc(*arr, nc * elem);
	if (na == NULL)
		return ERR_NOMEM;
	*arr = na;
	*cap = nc;
	return 0;
}

int
policy_parse(const char *text, size_t len, const struct policy_vocab *v,
    struct policy **out, struct policy_error *err)
{
	struct policy *p;
	struct lx l;
	size_t off = 0, eol, col;
	char w[MAX_WORD];
	unsigned line = 0;
	int rc = 0;

	memset(err, 0, sizeof(*err));
	*out = NULL;
	p = calloc(1, sizeof(*p));
	if (p == NULL)
		return ERR_NOMEM;
	while (off < len) {
		line++;
		eol = off;
		while (eol < len && text[eol] != '\n')
			eol++;
		l = (struct lx){ text + off, eol - off, 0, line, err };
		if (l.len > 0 && l.s[l.len - 1] == '\r')
			l.len--;
		off = eol + 1;
		if (memchr(l.s, '\0', l.len) != NULL) {
			rc = fail(&l, 0, "NUL byte in line");
			break;
		}
		if (at_end(&l))
			continue;
		if ((rc = word(&l, w, &col, "directive")) != 0)
			break;
		if (strcmp(w, "identity") == 0) {
			if ((rc = grow((void **)&p->idents, &p->capidents,
			    p->nidents, sizeof(*p->idents))) != 0)
				break;
			if ((rc = parse_identity(&l, &p->idents[p->nidents])) != 0)
				break;
			p->nidents++;
		} else if (strcmp(w, "allow") == 0 || strcmp(w, "deny") == 0) {
			struct rule *r;

			if ((rc = grow((void **)&p->rules, &p->caprules, p->nrules,
			    sizeof(*p->rules))) != 0)
				break;
			r = &p->rules[p->nrules];
			memset(r, 0, sizeof(*r));
			r->line = line;
			r->allow = w[0] == 'a';
			if ((rc = parse_rule(&l, v, r)) != 0)
				break;
			p->nrules++;
		} else {
			rc = fail(&l, col, "unknown directive '%s' (identity, "
			    "allow or deny)", w);
			break;
		}
		if (!at_end(&l)) {
			rc = fail(&l, l.pos, "unexpected text after the rule");
			break;
		}
	}
	if (rc != 0) {
		if (rc == ERR_NOMEM)
			snprintf(err->msg, sizeof(err->msg), "out of memory");
		policy_free(p);
		return rc;
	}
	*out = p;
	return 0;
}

void
policy_free(struct policy *p)
{
	if (p == NULL)
		return;
	free(p->rules);
	free(p->idents);
	free(p);
}

size_t
policy_rule_count(const struct policy *p)
{
	return p->nrules;
}

int
policy_identity_allows(const struct policy *p, uint32_t uid, uint32_t gid,
    int role)
{
	size_t i;

	if (role <= ROLE_NONE || role >= ROLE_COUNT)
		return 0;
	for (i = 0; i < p->nidents; i++) {
		const struct ident *id = &p->idents[i];

		if (!(id->roles & (1u << role)))
			continue;
		if (id->any || (id->by_gid && id->id == gid) ||
		    (!id->by_gid && id->id == uid))
			return 1;
	}
	return 0;
}

static const char *
param_value(const struct policy_request *r, const char *name)
{
	size_t i;

	for (i = 0; i < r->nparams; i++)
		if (strcmp(r->params[i].name, name) == 0)
			return r->params[i].value;
	return NULL;
}

static int
parse_dec(const char *s, unsigned long long *v)
{
	unsigned long long x = 0;

	if (*s == '\0')
		return 0;
	for (; *s; s++) {
		if (*s < '0' || *s > '9' || x > (~0ull - 9) / 10)
			return 0;
		x = x * 10 + (unsigned long long)(*s - '0');
	}
	*v = x;
	return 1;
}

static int
cons_match(const struct cons *c, const struct policy_request *r)
{
	const char *val = param_value(r, c->name);
	unsigned long long x;
	size_t i;

	if (val == NULL)
		return 0;	/* a constrained parameter must be present */
	switch (c->kind) {
	case CONS_SET:
		for (i = 0; i < c->nvalues; i++)
			if (strcasecmp(c->values[i], val) == 0)
				return 1;
		return 0;
	case CONS_LE:
		return parse_dec(val, &x) && x <= c->bound;
	case CONS_GE:
		return parse_dec(val, &x) && x >= c->bound;
	}
	return 0;
}

static int
rule_match(const struct rule *ru, const struct policy_caller *c,
    const struct policy_request *r)
{
	size_t i;
	int hit;

	if (ru->role != c->role)
		return 0;
	if (!ru->any_op) {
		for (hit = 0, i = 0; i < ru->nops && !hit; i++)
			hit = strcmp(ru->ops[i], r->op) == 0;
		if (!hit)
			return 0;
	}
	if (r->key_class == NULL) {
		if (ru->has_class)
			return 0;
	} else {
		if (!ru->has_class)
			return 0;
		if (!ru->any_class) {
			for (hit = 0, i = 0; i < ru->nclasses && !hit; i++)
				hit = strcmp(ru->classes[i], r->key_class) == 0;
			if (!hit)
				return 0;
		}
	}
	for (i = 0; i < ru->ncons; i++)
		if (!cons_match(&ru->cons[i], r))
			return 0;
	return 1;
}

struct policy_decision
policy_check(const struct policy *p, const struct policy_caller *c,
    const struct policy_request *r)
{
	struct policy_decision d = { 0, 0 };
	size_t i;

	if (p == NULL || c == NULL || r == NULL || r->op == NULL)
		return d;
	for (i = 0; i < p->nrules; i++) {
		if (rule_match(&p->rules[i], c, r)) {
			d.allow = p->rules[i].allow;
			d.line = p->rules[i].line;
			return d;
		}
	}
	return d;
}
