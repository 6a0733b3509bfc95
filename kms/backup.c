/*
 * backup.c - kmsctl backup and restore: every backup-eligible token key
 * wrapped under the backup KEK with AES-KWP into one JSON file, with a
 * manifest (labels, classes, versions, states, KCVs) and a MAC by a fresh
 * HMAC key that travels wrapped under the same backup KEK. Restore goes
 * into a fresh token whose backup KEK was re-entered from components.
 * Runs in kmsctl; trusts nothing in the file until its MAC verifies.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kms/kmsctl.h"

static json_t *
hexstr(const uint8_t *p, size_t n)
{
	char *h = malloc(2 * n + 1);
	json_t *j;

	if (h == NULL)
		return NULL;
	hex_encode(p, n, h);
	j = json_string(h);
	free(h);
	return j;
}

static int
get_kek(struct ctl *c, const char *label, int use, struct ks_key **k,
    struct ks_version **v, p11_obj *o)
{
	*k = ks_find(&c->ks, label);
	if (*k == NULL || (*k)->cls != KS_BACKUP_KEK) {
		fprintf(stderr, "kmsctl: no backup KEK '%s' on this token (enter it "
		    "from its components: key import-components --class backup-kek)\n",
		    label);
		return ERR_NOKEY;
	}
	if (ks_version(*k, 0, v) != 0 || !ks_state_allows((*v)->state, use) ||
	    ks_object(&c->ks, *k, *v, o) != 0) {
		fprintf(stderr, "kmsctl: backup KEK '%s' is not usable\n", label);
		return ERR_KEYSTATE;
	}
	return 0;
}

int
cmd_backup(struct ctl *c, int argc, char **argv)
{
	static const struct option o[] = {
		{ "to", required_argument, NULL, 't' },
		{ "backup-kek", required_argument, NULL, 'b' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 } };
	struct p11_keyspec ms = { .extractable = 1, .usage = P11_SIGN | P11_VERIFY };
	const char *to = NULL, *kek_label = "backup-kek";
	json_t *doc = NULL, *keys, *skipped;
	struct ks_key *bk;
	struct ks_version *bv;
	struct buf w, pub;
	uint8_t out[256], mac[32], check[8];
	size_t ol = sizeof(out), i, j, nkeys = 0;
	p11_obj kek, mk = 0;
	char ts[40], *canon = NULL, *text = NULL, det[96];
	int opt, rc = 1;

	optind = 1;
	while ((opt = getopt_long(argc, argv, "h", o, NULL)) != -1) {
		switch (opt) {
		case 't': to = optarg; break;
		case 'b': kek_label = optarg; break;
		case 'h':
			printf("usage: kmsctl --share F... backup --to FILE "
			    "[--backup-kek LABEL]\n"
			    "Wraps every backup-eligible key (storage KEK, masters, CA, audit)\n"
			    "under the backup KEK with AES-KWP into FILE, with a manifest\n"
			    "(labels, classes, versions, states, KCVs) and a MAC. Transport\n"
			    "and MAC keys are re-entered from components instead; the backup\n"
			    "KEK itself is never in a backup.\n");
			return 0;
		default: return 2;
		}
	}
	if (to == NULL) {
		fprintf(stderr, "kmsctl: need --to FILE\n");
		return 2;
	}
	if (ctl_open(c) != 0)
		return 1;
	buf_init(&w);
	buf_init(&pub);
	ctl_tr_begin(c, "backup");
	if (get_kek(c, kek_label, KS_USE_PROTECT, &bk, &bv, &kek) != 0)
		goto out;
	/* The MAC key: fresh, and only ever outside the token wrapped under
	 * the backup KEK. */
	if (p11_secret_generate(c->p, 32, &ms, &mk) != 0 ||
	    p11_wrap(c->p, P11_WRAP_AES_KWP, kek, mk, out, &ol) != 0) {
		fprintf(stderr, "kmsctl: MAC key: %s\n", p11_last_error());
		goto out;
	}
	time_rfc3339(ts, sizeof(ts));
	doc = json_object();
	keys = json_array();
	skipped = json_array();
	json_object_set_new(doc, "format", json_string("sptsm-backup-1"));
	json_object_set_new(doc, "created", json_string(ts));
	json_object_set_new(doc, "token", json_pack("{s:s, s:s}", "label",
	    p11_token_label(c->p), "serial", p11_token_serial(c->p)));
	json_object_set_new(doc, "backupKek", json_pack("{s:s, s:I, s:o}", "label",
	    kek_label, "version", (json_int_t)bv->v, "kcv", hexstr(bv->kcv,
	    bv->kcvlen)));
	json_object_set_new(doc, "macKey", hexstr(out, ol));
	for (i = 0; i < c->ks.n; i++) {
		struct ks_key *k = &c->ks.keys[i];
		json_t *jk, *vers;

		if (!ks_class_backup_eligible(k->cls)) {
			json_array_append_new(skipped, json_pack("{s:s, s:s}", "label",
			    k->label, "class", ks_class_name(k->cls)));
			continue;
		}
		vers = json_array();
		for (j = 0; j < k->nvers; j++) {
			struct ks_version *v = &k->vers[j];

			if (v->state == KMS_ST_DESTROYED)
				continue;
			if (ks_wrap_version(&c->ks, k, v, kek, &w, &pub, check) != 0) {
				fprintf(stderr, "kmsctl: cannot wrap '%s' v%u: %s\n",
				    k->label, v->v, p11_last_error());
				json_decref(vers);
				goto out;
			}
			json_array_append_new(vers, json_pack(
			    "{s:I, s:s, s:s, s:o, s:I, s:I, s:I, s:s, s:o, s:o, s:o}",
			    "version", (json_int_t)v->v, "state",
			    kms_state_name(v->state), "prevState",
			    v->prev_state ? kms_state_name(v->prev_state) : "",
			    "kcv", hexstr(v->kcv, v->kcvlen), "created",
			    (json_int_t)v->created, "changed", (json_int_t)v->changed,
			    "destroyAfter", (json_int_t)v->destroy_after, "reason",
			    v->reason, "wrapped", hexstr(w.p, w.len), "public",
			    hexstr(pub.p, pub.len), "check", hexstr(check, 8)));
			ctl_tr_event(c, "key backed up", k->label, v->v, v->kcv,
			    v->kcvlen);
			nkeys++;
		}
		jk = json_pack("{s:s, s:s, s:s, s:I, s:o}", "label", k->label,
		    "class", ks_class_name(k->cls), "alg", kms_alg_name(k->alg),
		    "current", (json_int_t)k->current, "versions", vers);
		json_array_append_new(keys, jk);
	}
	json_object_set_new(doc, "keys", keys);
	json_object_set_new(doc, "notIncluded", skipped);
	canon = ctl_canonical(doc);
	if (canon == NULL || p11_hmac_sha256(c->p, mk, (const uint8_t *)canon,
	    strlen(canon), mac) != 0)
		goto out;
	json_object_set_new(doc, "mac", hexstr(mac, 32));
	text = json_dumps(doc, JSON_INDENT(1) | JSON_SORT_KEYS);
	/* Replaces an older backup only once the new one is on disk. */
	if (text == NULL || file_write_atomic(to, text, strlen(text), 0400) != 0) {
		fprintf(stderr, "kmsctl: cannot write %s\n", to);
		goto out;
	}
	snprintf(det, sizeof(det), "%zu key versions to %s", nkeys, to);
	ctl_audit(c, "backup", kek_label, "ok", det);
	printf("backup: %zu key versions under '%s' v%u written to %s\n", nkeys,
	    kek_label, bv->v, to);
	rc = 0;
out:
	if (rc != 0)
		ctl_audit(c, "backup", kek_label, "error", to);
	if (ctl_tr_end(c, rc ? "failed" : "ok") != 0)
		rc = 1;
	if (mk != 0 && p11_destroy(c->p, mk) != 0)
		fprintf(stderr, "kmsctl: MAC key not destroyed\n");
	free(canon);
	free(text);
	json_decref(doc);
	buf_free(&w);
	buf_free(&pub);
	ctl_close(c);
	return rc;
}

static int
unhex_field(json_t *o, const char *name, struct buf *out)
{
	const char *s = json_string_value(json_object_get(o, name));

	if (s == NULL)
		return ERR_PARSE;
	return hex_decode_buf(s, out);
}

int
cmd_restore(struct ctl *c, int argc, char **argv)
{
	static const struct option o[] = {
		{ "from", required_argument, NULL, 'f' },
		{ "backup-kek", required_argument, NULL, 'b' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 } };
	struct p11_keyspec ms = { .usage = P11_SIGN | P11_VERIFY };
	const char *from = NULL, *kek_label = "backup-kek", *kh;
	json_error_t je;
	json_t *doc = NULL, *jk, *jv;
	struct ks_key *bk;
	struct ks_version *bv;
	struct buf mw, w, pub, kcv, chk, mac;
	p11_obj kek, mk = 0;
	size_t i, j, n = 0;
	char *canon = NULL, det[160];
	int opt, rc = 1;

	optind = 1;
	while ((opt = getopt_long(argc, argv, "h", o, NULL)) != -1) {
		switch (opt) {
		case 'f': from = optarg; break;
		case 'b': kek_label = optarg; break;
		case 'h':
			printf("usage: kmsctl --share F... restore --from FILE "
			    "[--backup-kek LABEL]\n"
			    "Restores a backup into this token, whose backup KEK must have\n"
			    "been entered from the same components. Checks the file's MAC\n"
			    "first; refuses a truncated or altered file, or one made under\n"
			    "another backup KEK; proves every restored key equal to the\n"
			    "original (KCV, HMAC check, or an EC signature).\n");
			return 0;
		default: return 2;
		}
	}
	if (from == NULL) {
		fprintf(stderr, "kmsctl: need --from FILE\n");
		return 2;
	}
	doc = json_load_file(from, JSON_REJECT_DUPLICATES, &je);
	if (doc == NULL || strcmp(json_string_value(json_object_get(doc,
	    "format")) ? json_string_value(json_object_get(doc, "format")) : "",
	    "sptsm-backup-1") != 0) {
		fprintf(stderr, "kmsctl: %s is not a readable backup (%s)\n", from,
		    doc ? "unknown format" : je.text);
		json_decref(doc);
		return 1;
	}
	if (ctl_open(c) != 0) {
		json_decref(doc);
		return 1;
	}
	buf_init(&mw);
	buf_init(&w);
	buf_init(&pub);
	buf_init(&kcv);
	buf_init(&chk);
	buf_init(&mac);
	ctl_tr_begin(c, "restore");
	if (get_kek(c, kek_label, KS_USE_PROCESS, &bk, &bv, &kek) != 0)
		goto out;
	kh = json_string_value(json_object_get(json_object_get(doc, "backupKek"),
	    "kcv"));
	if (kh != NULL && hex_decode_buf(kh, &kcv) == 0 &&
	    (kcv.len != bv->kcvlen || !ct_equal(kcv.p, bv->kcv, kcv.len))) {
		char mine[8];

		hex_encode_upper(bv->kcv, bv->kcvlen, mine);
		fprintf(stderr, "kmsctl: the backup was made under a backup KEK with "
		    "KCV %s; this token's has %s\n", kh, mine);
		goto out;
	}
	if (unhex_field(doc, "macKey", &mw) != 0 || unhex_field(doc, "mac",
	    &mac) != 0 || mac.len != 32) {
		fprintf(stderr, "kmsctl: backup lacks its MAC\n");
		goto out;
	}
	if (p11_unwrap(c->p, P11_WRAP_AES_KWP, kek, mw.p, mw.len,
	    CKK_GENERIC_SECRET, 0, &ms, &mk) != 0) {
		fprintf(stderr, "kmsctl: the backup's MAC key does not unwrap: made "
		    "under another backup KEK, or damaged\n");
		goto out;
	}
	canon = ctl_canonical(doc);
	if (canon == NULL || p11_hmac_sha256_verify(c->p, mk,
	    (const uint8_t *)canon, strlen(canon), mac.p) != 0) {
		fprintf(stderr, "kmsctl: the backup's MAC does not verify: the file "
		    "was altered; nothing restored\n");
		ctl_audit(c, "restore", from, "error", "MAC does not verify");
		goto out;
	}
	json_array_foreach(json_object_get(doc, "keys"), i, jk) {
		const char *label = json_string_value(json_object_get(jk, "label"));
		char renamed[KS_LABEL_MAX];
		int cls = ks_class_parse(json_string_value(json_object_get(jk,
		    "class")) ? json_string_value(json_object_get(jk, "class")) : "");
		int alg = kms_alg_parse(json_string_value(json_object_get(jk, "alg")) ?
		    json_string_value(json_object_get(jk, "alg")) : "");

		/* A fresh token has its own audit key (kmsctl init makes it
		 * first). The backed-up one still verifies the old log, so it
		 * comes back beside it as audit@<old serial>. */
		if (label != NULL && cls == KS_AUDIT && ks_find(&c->ks, label) != NULL) {
			const char *os = json_string_value(json_object_get(
			    json_object_get(doc, "token"), "serial"));

			snprintf(renamed, sizeof(renamed), "%s@%s", label, os ? os : "old");
			printf("'%s' exists on this token: the backed-up audit key is "
			    "restored as '%s' (audit verify --key %s checks the old log)\n",
			    label, renamed, renamed);
			label = renamed;
		}

		json_array_foreach(json_object_get(jk, "versions"), j, jv) {
			struct ks_version meta;
			const char *st, *ps, *reason;
			json_int_t ver = 0, cr = 0, chg = 0, da = 0;

			memset(&meta, 0, sizeof(meta));
			if (label == NULL || json_unpack(jv, "{s:I, s:s, s:s, s:I, s:I, "
			    "s:I, s:s}", "version", &ver, "state", &st, "prevState", &ps,
			    "created", &cr, "changed", &chg, "destroyAfter", &da,
			    "reason", &reason) != 0 ||
			    unhex_field(jv, "kcv", &kcv) != 0 || kcv.len > 3 ||
			    unhex_field(jv, "wrapped", &w) != 0 ||
			    unhex_field(jv, "public", &pub) != 0 ||
			    unhex_field(jv, "check", &chk) != 0 || chk.len != 8) {
				fprintf(stderr, "kmsctl: malformed key entry %zu\n", i);
				goto out;
			}
			meta.v = (uint32_t)ver;
			meta.state = kms_state_parse(st);
			meta.prev_state = kms_state_parse(ps);
			meta.created = cr;
			meta.changed = chg;
			meta.destroy_after = da;
			snprintf(meta.reason, sizeof(meta.reason), "%s", reason);
			memcpy(meta.kcv, kcv.p, kcv.len);
			meta.kcvlen = kcv.len;
			rc = ks_unwrap_version(&c->ks, label, cls, alg, &meta, kek, w.p,
			    w.len, pub.p, pub.len, chk.p);
			if (rc != 0) {
				fprintf(stderr, "kmsctl: '%s' v%u not restored: %s%s\n",
				    label, meta.v, err_str(rc), rc == ERR_EXISTS ?
				    " (restore into a fresh token)" : "");
				rc = 1;
				goto out;
			}
			ctl_tr_event(c, "key restored", label, meta.v, meta.kcv,
			    meta.kcvlen);
			printf("restored '%s' v%u (%s, %s)\n", label, meta.v,
			    ks_class_name(cls), kms_state_name(meta.state));
			n++;
		}
	}
	snprintf(det, sizeof(det), "%zu key versions from %s", n, from);
	ctl_audit(c, "restore", kek_label, "ok", det);
	printf("restore: %zu key versions, each proven equal to the original\n", n);
	rc = 0;
out:
	if (ctl_tr_end(c, rc ? "failed" : "ok") != 0)
		rc = 1;
	if (mk != 0 && p11_destroy(c->p, mk) != 0)
		fprintf(stderr, "kmsctl: MAC key not destroyed\n");
	free(canon);
	json_decref(doc);
	buf_free(&mw);
	buf_free(&w);
	buf_free(&pub);
	buf_free(&kcv);
	buf_free(&chk);
	buf_free(&mac);
	ctl_kmsd_reload(c);
	ctl_close(c);
	return rc;
}
