/*
 * token_attrs_test.c - asks OpenSC's pkcs11-tool (not our own code) to
 * list the objects of a provisioned token and fails if any secret or
 * private key is readable (not sensitive) or extractable outside the rule:
 * only backup-eligible classes (storage KEK, masters, CA, audit) may be
 * wrapped out, everything else is never extractable. Key-set members and
 * session keys must never appear on the token at all. A deliberately bad
 * key proves the check can fail.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kms/kms.h"
#include "tests/kmsenv.h"
#include "tests/tap.h"

struct finding {
	int keys;
	int bad;
	char why[512];
};

/* Runs pkcs11-tool and applies the rule to every key it lists. */
static void
inspect(struct keystore *ks, struct finding *f)
{
	char cmd[1024], line[512], label[256] = "", kind[64] = "";
	FILE *pp;

	memset(f, 0, sizeof(*f));
	snprintf(cmd, sizeof(cmd), "pkcs11-tool --module %s --token-label kmsenv "
	    "--login --pin kmsenv-test-pin-0000 --list-objects 2>/dev/null",
	    P11_DEFAULT_MODULE);
	pp = popen(cmd, "r");
	if (pp == NULL)
		bail("pkcs11-tool");
	while (fgets(line, sizeof(line), pp) != NULL) {
		char *p;

		if (strncmp(line, "Secret Key Object", 17) == 0 ||
		    strncmp(line, "Private Key Object", 18) == 0) {
			snprintf(kind, sizeof(kind), "%.20s", line);
			label[0] = '\0';
			continue;
		}
		if (strncmp(line, "Public Key Object", 17) == 0 ||
		    strncmp(line, "Data object", 11) == 0) {
			kind[0] = '\0';
			continue;
		}
		if (kind[0] && (p = strstr(line, "label:")) != NULL) {
			p += 6;
			while (*p == ' ')
				p++;
			snprintf(label, sizeof(label), "%s", p);
			label[strcspn(label, "\r\n")] = '\0';
			continue;
		}
		if (kind[0] && (p = strstr(line, "Access:")) != NULL) {
			struct ks_key *k = ks_find(ks, label);
			int sensitive = strstr(p, "sensitive") != NULL &&
			    strstr(p, "insensitive") == NULL;
			int extractable = strstr(p, " extractable") != NULL &&
			    strstr(p, "never extractable") == NULL;

			f->keys++;
			if (!sensitive) {
				f->bad++;
				snprintf(f->why + strlen(f->why), sizeof(f->why) -
				    strlen(f->why), "[%s readable] ", label);
			} else if (extractable && (k == NULL ||
			    !ks_class_backup_eligible(k->cls))) {
				f->bad++;
				snprintf(f->why + strlen(f->why), sizeof(f->why) -
				    strlen(f->why), "[%s extractable, class %s] ", label,
				    k ? ks_class_name(k->cls) : "unmanaged");
			}
			kind[0] = '\0';
		}
	}
	pclose(pp);
}

int
main(void)
{
	struct kmsenv e;
	struct kms_client *c;
	struct kms_keyset_kcvs kc;
	struct kms_keyset kso;
	struct p11 *p;
	struct keystore ks;
	struct finding f;
	struct buf blob;

	if (kmsenv_setup(&e, KMSENV_RSA) != 0 || kmsenv_start(&e, NULL) != 0 ||
	    kms_connect(&c, e.sock, "attrs") != 0)
		bail("fixture");
	/* Key sets in use while we look: they must not show on the token. */
	buf_init(&blob);
	if (kms_keyset_generate(c, KMS_ALG_AES128, KMS_KCV_GP, &blob, &kc) != 0 ||
	    kms_keyset_open(c, blob.p, blob.len, KMS_OPEN_EXPORTABLE, &kso) != 0)
		bail("key set");
	if (kmsenv_open_token(&e, &p, &ks) != 0)
		bail("token");
	inspect(&ks, &f);
	ok(f.keys >= 10, "pkcs11-tool lists %d keys", f.keys);
	ok(f.bad == 0, "no key readable, none extractable outside the backup "
	    "classes %s", f.why);

	/* Control: a readable, extractable key must be caught. */
	{
		CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
		CK_KEY_TYPE kt = CKK_AES;
		CK_BBOOL t = CK_TRUE, fl = CK_FALSE;
		uint8_t v[16] = { 9 };
		CK_ATTRIBUTE a[] = {
			{ CKA_CLASS, &cls, sizeof(cls) }, { CKA_KEY_TYPE, &kt, sizeof(kt) },
			{ CKA_TOKEN, &t, 1 }, { CKA_PRIVATE, &t, 1 },
			{ CKA_SENSITIVE, &fl, 1 }, { CKA_EXTRACTABLE, &t, 1 },
			{ CKA_LABEL, "planted", 7 }, { CKA_VALUE, v, 16 },
		};
		CK_SESSION_HANDLE s;
		CK_OBJECT_HANDLE o;
		CK_FUNCTION_LIST *fn = p11_functions(p);

		if (fn->C_OpenSession(p11_slot(p), CKF_SERIAL_SESSION | CKF_RW_SESSION,
		    NULL, NULL, &s) != CKR_OK ||
		    fn->C_CreateObject(s, a, ARRAY_LEN(a), &o) != CKR_OK)
			bail("plant bad key");
		inspect(&ks, &f);
		ok(f.bad == 1 && strstr(f.why, "planted") != NULL,
		    "a planted readable key is reported: %s", f.why);
		if (fn->C_DestroyObject(s, o) != CKR_OK)
			diag("destroy planted");
		fn->C_CloseSession(s);
	}
	ks_free(&ks);
	p11_close(p);
	kms_close(c);
	buf_free(&blob);
	kmsenv_cleanup(&e);
	return done_testing();
}
