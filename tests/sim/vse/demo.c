/*
 * demo.c - DEMO ONLY material of the virtual SE: the per-SE ISD and
 * receipt keys derived from published demo master keys, and the public
 * half of the demo DM token key (tests/sim/demo/). Runs wherever a card is
 * initialised with --demo; nothing here is secret, by design.
 */
#include <ctype.h>
#include <string.h>

#include "tests/sim/vse/vse_int.h"

/* DEMO ONLY master keys: the ASCII bytes of these 16-character labels. */
static const char demo_enc[16] = "DEMOONLY-ISD-ENC";
static const char demo_mac[16] = "DEMOONLY-ISD-MAC";
static const char demo_dek[16] = "DEMOONLY-ISD-DEK";
static const char demo_rcpt[16] = "DEMOONLY-RECEIPT";

/* DEMO ONLY: public key of tests/sim/demo/dm-token-demo.key.pem. */
static const char demo_token_pub[] =
	"-----BEGIN PUBLIC KEY-----\n"
	"MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAymkwRr6KoH16NxukNoTw\n"
	"JWXe9BnM1G14d0zj70s4DRI+ZpSxgr1pbtEzeCs73yd2JSXkguyKdkBkdu0AqqQB\n"
	"LEn6oo4HqJBWch20oUo25lB+3zSPDZyQxbAMKCjNQ5i7jSEbE3J1KoK5kI3DBQkI\n"
	"Ke5AixLgfG2nHcmIiLu/S06Izewv46JCey/3NKWjfv9+Qs+5ydFtWpKYgEKYUT02\n"
	"zNcWfub+NWeZzRaNi+NxF7m5twYaWjrIJ5aAsBKa58UczT7oB9m/jXKBUKQ2jfXo\n"
	"VyVMpuw72R3vQoRpKM4+d+dq8jYglsvJVMnFzI5BylJR5gOreAvTLsmKlJYpdyNp\n"
	"qQIDAQAB\n"
	"-----END PUBLIC KEY-----\n";

const char *
vse_demo_token_pub_pem(void)
{
	return demo_token_pub;
}

/* D = SHA-256(seId as upper-case hex text)[0..15]; K = AES-128-ECB(M, D). */
static int
diversify(const char *se_id, const char master[16], uint8_t out[16])
{
	char up[2 * 16 + 1];
	uint8_t h[32];
	size_t i, n;
	int rc;

	if (se_id == NULL || (n = strlen(se_id)) == 0 || n >= sizeof(up))
		return ERR_INVAL;
	for (i = 0; i < n; i++)
		up[i] = (char)toupper((unsigned char)se_id[i]);
	up[n] = 0;
	if ((rc = vse_hash(32, (const uint8_t *)up, n, h)) != 0)
		return rc;
	rc = vse_aes_ecb((const uint8_t *)master, 16, h, out);
	wipe(h, sizeof(h));
	return rc;
}

int
vse_demo_isd_keys(const char *se_id, uint8_t enc[16], uint8_t mac[16],
    uint8_t dek[16])
{
	int rc;

	if ((rc = diversify(se_id, demo_enc, enc)) != 0 ||
	    (rc = diversify(se_id, demo_mac, mac)) != 0 ||
	    (rc = diversify(se_id, demo_dek, dek)) != 0)
		return rc;
	return 0;
}

int
vse_demo_receipt_key(const char *se_id, uint8_t key[16])
{
	return diversify(se_id, demo_rcpt, key);
}

int
vse_demo_provision(struct vse *c)
{
	struct vse_entry *isd = vse_reg_isd(c);
	uint8_t enc[16], mac[16], dek[16], rk[16];
	int rc;

	if (isd == NULL)
		return ERR_INVAL;
	if ((rc = vse_demo_isd_keys(c->se_id, enc, mac, dek)) != 0 ||
	    (rc = vse_demo_receipt_key(c->se_id, rk)) != 0)
		goto cleanup;
	if ((rc = vse_keyset_put(c, isd->aid.b, isd->aid.len, VSE_DEMO_ISD_KVN,
	    enc, mac, dek, 16)) != 0 ||
	    (rc = vse_key_put_pem(c, isd->aid.b, isd->aid.len, VSE_KVN_TOKEN,
	    0x01, demo_token_pub)) != 0 ||
	    (rc = vse_key_put_aes(c, isd->aid.b, isd->aid.len, VSE_KVN_RECEIPT,
	    0x01, rk, 16)) != 0)
		goto cleanup;
cleanup:
	wipe(enc, sizeof(enc));
	wipe(mac, sizeof(mac));
	wipe(dek, sizeof(dek));
	wipe(rk, sizeof(rk));
	return rc;
}
