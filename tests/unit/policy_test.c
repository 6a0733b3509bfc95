/*
 * policy_test.c - the policy parser (errors with line and column) and the
 * decision function, including the matrix of every role x every operation
 * of kmsd's dispatch table against the shipped policy/kms.policy.
 */
#include <string.h>

#include "kms/kmsd.h"
#include "policy/policy.h"
#include "tests/tap.h"

static const struct policy_vocab *V;

static struct policy *
parse(const char *text, struct policy_error *pe)
{
	struct policy *p = NULL;

	if (policy_parse(text, strlen(text), V, &p, pe) != 0)
		return NULL;
	return p;
}

static void
test_errors(void)
{
	static const struct {
		const char *text;
		unsigned line, col;
		const char *msg;
	} bad[] = {
		{ "allow tsm cmac class=sessoin\n", 1, 22, "unknown key class 'sessoin'" },
		{ "# ok\n\nallow tsm cmacc class=session\n", 3, 11,
		    "unknown operation 'cmacc'" },
		/* decided as its parts (kms/PROTOCOL.md), never by name */
		{ "allow tsm keyset.receive class=mac\n", 1, 11,
		    "unknown operation 'keyset.receive'" },
		{ "allow root cmac\n", 1, 7, "unknown role 'root'" },
		{ "permit tsm cmac\n", 1, 1, "unknown directive" },
		{ "allow tsm random len<=abc\n", 1, 23, "expected a decimal" },
		{ "allow tsm random size<=4\n", 1, 18, "unknown parameter 'size'" },
		{ "allow tsm random len\n", 1, 21, "expected '=', '<=' or '>='" },
		{ "identity uid=x roles=tsm\n", 1, 14, "expected a decimal" },
		{ "identity uid=5 roles=boss\n", 1, 16, "unknown role 'boss'" },
		{ "identity someone roles=tsm\n", 1, 10, "expected uid=, gid= or any" },
		{ "allow tsm cmac,* class=session\n", 1, 16, "'*' must stand alone" },
		{ "allow tsm *,cmac class=session\n", 1, 11, "'*' must stand alone" },
		{ "allow tsm cmac class=session,*\n", 1, 30, "'*' must stand alone" },
		{ "allow tsm cmac class=session class=keyset\n", 1, 30, "class given twice" },
		{ "allow tsm cmac class=session ; x\n", 1, 30, "expected parameter name" },
		{ "allow tsm cm*ac\n", 1, 11, "'*' must stand alone" },
	};
	struct policy_error pe;
	struct policy *p;
	size_t i;

	for (i = 0; i < ARRAY_LEN(bad); i++) {
		p = parse(bad[i].text, &pe);
		ok(p == NULL && pe.line == bad[i].line && pe.col == bad[i].col &&
		    strstr(pe.msg, bad[i].msg) != NULL,
		    "parse error at %u:%u \"%s\" (got %u:%u \"%s\")", bad[i].line,
		    bad[i].col, bad[i].msg, pe.line, pe.col, pe.msg);
		policy_free(p);
	}
	{
		const char t[] = "allow tsm random\nallow tsm p\0ing\n";

		ok(policy_parse(t, sizeof(t) - 1, V, &p, &pe) == ERR_PARSE &&
		    pe.line == 2 && strstr(pe.msg, "NUL") != NULL,
		    "NUL byte inside a line: error on line 2");
	}
	p = parse("", &pe);
	ok(p != NULL && policy_rule_count(p) == 0, "empty policy parses");
	{
		struct policy_caller c = { 0, 0, ROLE_TSM };
		struct policy_request r = { "random", NULL, NULL, 0 };

		ok(!policy_check(p, &c, &r).allow, "empty policy denies everything");
		ok(!policy_identity_allows(p, 0, 0, ROLE_TSM),
		    "empty policy admits no identity");
	}
	policy_free(p);
}

static void
test_semantics(void)
{
	struct policy_error pe;
	struct policy *p = parse(
	    "identity uid=1000 roles=tsm\n"
	    "identity gid=50 roles=custodian,auditor\n"
	    "deny tsm cmac class=session usage=srmac   # explicit deny first\n"
	    "allow tsm cmac class=session\n"
	    "allow tsm random len<=64 len>=8\n"
	    "allow auditor key.info class=*\n"
	    "allow custodian * class=ca\n", &pe);
	struct policy_caller tsm = { 1000, 1000, ROLE_TSM };
	struct policy_caller aud = { 7, 50, ROLE_AUDITOR };
	struct policy_caller cus = { 7, 50, ROLE_CUSTODIAN };
	struct policy_param smac[] = { { "usage", "smac" } };
	struct policy_param srmac[] = { { "usage", "SRMAC" } };
	struct policy_param l4[] = { { "len", "4" } }, l16[] = { { "len", "16" } };
	struct policy_param l99[] = { { "len", "99" } }, lx[] = { { "len", "1e3" } };
	struct policy_request r;
	struct policy_decision d;

	if (p == NULL)
		bail("semantics policy: %u:%u %s", pe.line, pe.col, pe.msg);
	ok(policy_identity_allows(p, 1000, 1, ROLE_TSM), "uid identity");
	ok(!policy_identity_allows(p, 1000, 1, ROLE_AUDITOR), "uid limited to its roles");
	ok(policy_identity_allows(p, 3, 50, ROLE_AUDITOR), "gid identity");
	ok(!policy_identity_allows(p, 3, 51, ROLE_AUDITOR), "other gid refused");

	r = (struct policy_request){ "cmac", "session", smac, 1 };
	d = policy_check(p, &tsm, &r);
	ok(d.allow && d.line == 4, "allowed by the rule on line 4");
	r.params = srmac;
	d = policy_check(p, &tsm, &r);
	ok(!d.allow && d.line == 3, "explicit deny (values compare case-insensitively)");
	r.params = NULL;
	r.nparams = 0;
	ok(policy_check(p, &tsm, &r).allow, "rule without constraints matches");
	r.key_class = NULL;
	ok(!policy_check(p, &tsm, &r).allow, "a rule with class= never matches a "
	    "key-less request");
	r = (struct policy_request){ "random", NULL, l16, 1 };
	ok(policy_check(p, &tsm, &r).allow, "len within both bounds");
	r.params = l4;
	ok(!policy_check(p, &tsm, &r).allow, "len under the lower bound");
	r.params = l99;
	ok(!policy_check(p, &tsm, &r).allow, "len over the upper bound");
	r.params = lx;
	ok(!policy_check(p, &tsm, &r).allow, "non-decimal value never matches");
	r.nparams = 0;
	ok(!policy_check(p, &tsm, &r).allow, "constrained parameter missing: deny");
	r = (struct policy_request){ "random", "ca", l16, 1 };
	ok(!policy_check(p, &tsm, &r).allow, "key-less rule does not match a "
	    "request with a key");
	r = (struct policy_request){ "key.info", "backup-kek", NULL, 0 };
	ok(policy_check(p, &aud, &r).allow, "class=* matches any class");
	ok(!policy_check(p, &tsm, &r).allow, "but only for its role");
	r = (struct policy_request){ "sign", "ca", NULL, 0 };
	ok(policy_check(p, &cus, &r).allow, "operation * matches any operation");
	r.key_class = "storage-kek";
	ok(!policy_check(p, &cus, &r).allow, "within its class only");
	policy_free(p);
}

/*
 * The shipped policy: every role x every operation in kmsd's dispatch
 * table, with the request each operation makes in normal use.
 */
struct canon {
	const char *op;
	const char *cls;
	struct policy_param pp[3];
	size_t np;
	int allow[ROLE_COUNT];	/* indexed by role */
};

#define P(n, v) { n, v }
static const struct canon matrix[] = {
	/* op               class          params                               tsm cus aud */
	{ "hello", NULL, { { 0 } }, 0, { 0, 0, 0, 0 } },
	{ "ping", NULL, { { 0 } }, 0, { 0, 0, 0, 0 } },
	{ "status", NULL, { { 0 } }, 0, { 0, 0, 0, 0 } },
	{ "random", NULL, { P("len", "32") }, 1, { 0, 1, 0, 0 } },
	{ "key.info", "storage-kek", { { 0 } }, 0, { 0, 1, 1, 1 } },
	{ "kcv", "keyset", { P("method", "gp") }, 1, { 0, 1, 1, 0 } },
	{ "keyset.generate", "storage-kek", { P("source", "random"),
	    P("alg", "AES-128"), P("method", "gp") }, 3, { 0, 1, 0, 0 } },
	{ "keyset.import", "transport-kek", { P("mech", "AES-KW"),
	    P("alg", "AES-128"), P("method", "gp") }, 3, { 0, 1, 0, 0 } },
	{ "keyset.open", "storage-kek", { P("exportable", "0") }, 1, { 0, 1, 0, 0 } },
	{ "handle.close", "session", { { 0 } }, 0, { 0, 1, 0, 0 } },
	{ "scp03.derive", "keyset", { P("const", "04"), P("usage", "enc") }, 2,
	    { 0, 1, 0, 0 } },
	{ "scp03.kdf", "session", { P("const", "00"), P("usage", "smac") }, 2,
	    { 0, 1, 0, 0 } },
	{ "scp03.open", "keyset", { P("usage", "enc") }, 1, { 0, 1, 0, 0 } },
	{ "cmac", "session", { P("usage", "smac") }, 1, { 0, 1, 0, 0 } },
	{ "encrypt", "session", { P("mode", "cbc"), P("usage", "senc") }, 2,
	    { 0, 1, 0, 0 } },
	{ "decrypt", "session", { P("mode", "cbc"), P("usage", "senc") }, 2,
	    { 0, 1, 0, 0 } },
	{ "wrap", "keyset", { P("usage", "dek") }, 1, { 0, 1, 0, 0 } },
	{ "diversify", "master", { P("usage", "enc") }, 1, { 0, 1, 0, 0 } },
	{ "sign", "ca", { P("mech", "ecdsa-sha256"), P("profile", "0") }, 2,
	    { 0, 1, 0, 0 } },
	{ "hmac", "mac", { { 0 } }, 0, { 0, 1, 0, 0 } },
	{ "hmac.verify", "mac", { { 0 } }, 0, { 0, 1, 0, 0 } },
	{ "key.list", NULL, { { 0 } }, 0, { 0, 0, 1, 1 } },
	{ "reload", NULL, { { 0 } }, 0, { 0, 0, 1, 0 } },
	{ "unseal", NULL, { { 0 } }, 0, { 0, 0, 1, 0 } },
	{ "key.state", "storage-kek", { { 0 } }, 0, { 0, 0, 1, 0 } },
};

/* Requests that must be refused even for the role that has the op. */
static const struct canon refusals[] = {
	{ "random", NULL, { P("len", "5000") }, 1, { 0, 0, 0, 0 } },
	{ "scp03.kdf", "session", { P("const", "04"), P("usage", "smac") }, 2,
	    { 0, 0, 0, 0 } },
	{ "scp03.kdf", "keyset", { P("const", "00"), P("usage", "enc") }, 2,
	    { 0, 0, 0, 0 } },
	{ "scp03.derive", "keyset", { P("const", "04"), P("usage", "mac") }, 2,
	    { 0, 0, 0, 0 } },
	{ "cmac", "keyset", { P("usage", "enc") }, 1, { 0, 0, 0, 0 } },
	{ "encrypt", "session", { P("mode", "cbc"), P("usage", "smac") }, 2,
	    { 0, 0, 0, 0 } },
	{ "keyset.import", "transport-rsa", { P("mech", "AES-KW"),
	    P("alg", "AES-128"), P("method", "gp") }, 3, { 0, 0, 0, 0 } },
	{ "keyset.import", "mac", { P("mech", "AES-KW"), P("alg", "AES-128"),
	    P("method", "gp") }, 3, { 0, 0, 0, 0 } },
	{ "keyset.generate", "master", { P("source", "diversified"),
	    P("alg", "AES-256"), P("method", "gp") }, 3, { 0, 0, 0, 0 } },
	{ "sign", "ca", { P("mech", "ecdsa-sha256"), P("profile", "9") }, 2,
	    { 0, 0, 0, 0 } },
	{ "sign", "mac", { P("mech", "ecdsa-sha256"), P("profile", "0") }, 2,
	    { 0, 0, 0, 0 } },
	{ "hmac", "audit", { { 0 } }, 0, { 0, 0, 0, 0 } },
	{ "wrap", "keyset", { P("usage", "enc") }, 1, { 0, 0, 0, 0 } },
	{ "key.info", "audit", { { 0 } }, 0, { 0, 0, 1, 1 } },
	{ "hmac.verify", "audit", { { 0 } }, 0, { 0, 0, 0, 1 } },
};

static int
check_row(const struct policy *p, const struct canon *c, int role)
{
	struct policy_caller caller = { 0, 0, role };
	struct policy_request r = { c->op, c->cls, c->pp, c->np };

	return policy_check(p, &caller, &r).allow;
}

static void
test_matrix(void)
{
	const char *top = getenv("SPTSM_TOP");
	const char *const *ops = kmsd_op_names();
	char path[512];
	struct policy_error pe;
	struct policy *p = NULL;
	struct buf b;
	size_t i, j, missing = 0;
	int role, bad = 0, n = 0;

	snprintf(path, sizeof(path), "%s/policy/kms.policy", top ? top : ".");
	buf_init(&b);
	if (file_read_all(path, 1 << 20, &b) != 0)
		bail("read %s", path);
	ok(policy_parse((const char *)b.p, b.len, V, &p, &pe) == 0,
	    "policy/kms.policy parses (%u:%u %s)", pe.line, pe.col, pe.msg);
	buf_free(&b);
	if (p == NULL)
		return;
	for (i = 0; ops[i] != NULL; i++) {
		for (j = 0; j < ARRAY_LEN(matrix); j++)
			if (strcmp(matrix[j].op, ops[i]) == 0)
				break;
		if (j == ARRAY_LEN(matrix)) {
			diag("operation %s has no row in the matrix", ops[i]);
			missing++;
		}
	}
	ok(missing == 0, "every operation of the dispatch table is in the matrix");
	for (j = 0; j < ARRAY_LEN(matrix); j++) {
		for (role = 1; role < ROLE_COUNT; role++) {
			int got = check_row(p, &matrix[j], role);

			n++;
			if (got != matrix[j].allow[role]) {
				bad++;
				diag("%s as %s: policy says %s, expected %s",
				    matrix[j].op, policy_role_name(role),
				    got ? "allow" : "deny",
				    matrix[j].allow[role] ? "allow" : "deny");
			}
		}
	}
	ok(bad == 0, "role x operation matrix: %d decisions as expected", n - bad);
	for (j = 0; j < ARRAY_LEN(refusals); j++)
		for (role = 1; role < ROLE_COUNT; role++)
			ok(check_row(p, &refusals[j], role) ==
			    refusals[j].allow[role], "%s on %s (%s %s) as %s: %s",
			    refusals[j].op, refusals[j].cls ? refusals[j].cls : "-",
			    refusals[j].np ? refusals[j].pp[0].name : "",
			    refusals[j].np ? refusals[j].pp[0].value : "",
			    policy_role_name(role),
			    refusals[j].allow[role] ? "allowed" : "denied");
	policy_free(p);
}

int
main(void)
{
	V = kmsd_vocab();
	test_errors();
	test_semantics();
	test_matrix();
	return done_testing();
}
