/*
 * kdf_test.c - the SP 800-108 counter KDF (counter between two fixed parts)
 * with its CMAC computed in a real SoftHSM2 token: the NIST CAVP vector
 * (CMAC-AES128, counter in the middle, 8-bit counter, as copied in
 * BouncyCastle's KdfCounterTest) and the GP SCP03 layout of gp-reference
 * §1.3 (KAT-1 session keys and KAT-5 card challenge).
 */
#include <string.h>

#include "kms/kdf.h"
#include "pkcs11/p11.h"
#include "tests/tap.h"
#include "tests/testenv.h"

struct prf {
	struct p11 *p;
	p11_obj     k;
};

static int
prf(void *ctx, const uint8_t *in, size_t n, uint8_t out[16])
{
	struct prf *c = ctx;

	return p11_cmac(c->p, c->k, in, n, out);
}

static struct prf
key(struct p11 *p, const char *hex)
{
	struct p11_keyspec s = { .usage = P11_SIGN };
	struct prf r = { p, 0 };
	uint8_t k[32];
	size_t n;

	if (hex_decode(hex, strlen(hex), k, sizeof(k), &n) != 0 ||
	    p11_secret_import(p, CKK_AES, k, n, &s, &r.k) != 0)
		bail("import %s", hex);
	return r;
}

int
main(void)
{
	char dir[256];
	struct p11 *p = NULL;
	uint8_t before[64], after[16], out[32];
	size_t bl, al;
	struct prf k;

	if (testenv_softhsm(dir, sizeof(dir)) != 0 ||
	    p11_open_uninitialized(&p, NULL) != 0 ||
	    p11_init_token(p, "kdf", TEST_SO_PIN, TEST_USER_PIN,
	    &(int){ 0 }) != 0)
		bail("token");
	p11_close(p);
	if (p11_open(&p, NULL, "pkcs11:token=kdf") != 0 ||
	    p11_login(p, TEST_USER_PIN, strlen(TEST_USER_PIN)) != 0)
		bail("login");

	k = key(p, "b6e04abd1651f8794d4326f4c684e631");
	if (hex_decode("93612f7256c46a3d856d3e951e32dbf15fe11159d0b389ad38d603850fee"
	    "6d18d22031435ed36ee20da76745fbea4b10fe1e", 100, before,
	    sizeof(before), &bl) != 0 ||
	    hex_decode("99322aae605a5f01e32b", 20, after, sizeof(after), &al) != 0)
		bail("vector hex");
	ok(kdf_counter_cmac(prf, &k, before, bl, after, al, out, 16) == 0,
	    "KBKDF counter-in-the-middle");
	is_hex(out, 16, "dcb1db87a68762c6b3354779fa590bef",
	    "NIST CAVP CMAC-AES128 MIDDLE_FIXED 8-bit vector");

	/* KAT-1: S-ENC from ENC 0001..0f, context host||card challenge. */
	k = key(p, "000102030405060708090a0b0c0d0e0f");
	if (hex_decode("8e1552d0513c60f330760cd2c47c1dd3", 32, after, 16, &al) != 0)
		bail("ctx");
	ok(kdf_scp03(prf, &k, 0x04, after, 16, 128, out) == 0, "GP layout, const 04");
	is_hex(out, 16, "ee54985e150155e021725489f717d645", "KAT-1 S-ENC");
	k = key(p, "101112131415161718191a1b1c1d1e1f");
	ok(kdf_scp03(prf, &k, 0x07, after, 16, 128, out) == 0, "const 07");
	is_hex(out, 16, "5942bf778c5942f17037da8278f9330d", "KAT-1 S-RMAC");

	/* KAT-5 (asterix): pseudo-random card challenge = KDF(ENC, 02,
	 * seq(3) || SD AID, 64). */
	k = key(p, "404142434445464748494a4b4c4d4e4f");
	{
		uint8_t ctx[32];
		size_t cl;

		if (hex_decode("00002aa000000018434d08090a0b0c000000", 36, ctx,
		    sizeof(ctx), &cl) != 0)
			bail("ctx");
		ok(kdf_scp03(prf, &k, 0x02, ctx, cl, 64, out) == 0, "const 02");
		is_hex(out, 8, "a3f5f144d19be66e", "KAT-5 pseudo-random card challenge");
	}
	ok(kdf_scp03(prf, &k, 0x04, after, 16, 256, out) == 0,
	    "two PRF blocks for L=256");
	ok(kdf_scp03(prf, &k, 0x04, after, 16, 12, out) == ERR_INVAL,
	    "L not a multiple of 8: ERR_INVAL");
	p11_close(p);
	testenv_cleanup(dir);
	return done_testing();
}
