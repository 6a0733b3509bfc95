/*
 * types.c - names for GlobalPlatform privileges (3 bytes) and life cycle
 * states, both ways. Pure; runs in tsmd. Input strings and bytes come
 * from operators, providers and cards and are checked, never trusted.
 */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "tsm/gp/gp_int.h"

/* GPC §11.1.2 privileges, one bit each (gpref §5). Multi-bit values in the
 * spec (A0 = SD + DM, C0 = SD + DAP, C1 = SD + DAP + mandated DAP) are
 * the OR of these bits. */
static const struct {
	uint8_t byte, bit;
	const char *name;
} privs[] = {
	{ 0, 0x80, "SecurityDomain" },
	{ 0, 0x40, "DAPVerification" },
	{ 0, 0x20, "DelegatedManagement" },
	{ 0, 0x10, "CardLock" },
	{ 0, 0x08, "CardTerminate" },
	{ 0, 0x04, "CardReset" },
	{ 0, 0x02, "CVMManagement" },
	{ 0, 0x01, "MandatedDAPVerification" },
	{ 1, 0x80, "TrustedPath" },
	{ 1, 0x40, "AuthorizedManagement" },
	{ 1, 0x20, "TokenVerification" },
	{ 1, 0x10, "GlobalDelete" },
	{ 1, 0x08, "GlobalLock" },
	{ 1, 0x04, "GlobalRegistry" },
	{ 1, 0x02, "FinalApplication" },
	{ 1, 0x01, "GlobalService" },
	{ 2, 0x80, "ReceiptGeneration" },
	{ 2, 0x40, "CipheredLoadFileDataBlock" },
	{ 2, 0x20, "ContactlessActivation" },
	{ 2, 0x10, "ContactlessSelfActivation" },
	{ 2, 0x08, "PrivacyTrusted" },
};

static int
out_add(char *out, size_t cap, size_t *o, const char *s)
{
	size_t n = strlen(s), sep = *o > 0;

	if (*o + sep + n + 1 > cap)
		return ERR_TOOBIG;
	if (sep)
		out[(*o)++] = '|';
	memcpy(out + *o, s, n);
	*o += n;
	out[*o] = '\0';
	return 0;
}

int
gp_priv_format(const uint8_t priv[3], char *out, size_t cap)
{
	uint8_t left[3] = { priv[0], priv[1], priv[2] };
	char rfu[16];
	size_t i, o = 0;
	int b, rc;

	if (cap == 0)
		return ERR_TOOBIG;
	out[0] = '\0';
	for (i = 0; i < ARRAY_LEN(privs); i++) {
		if (!(priv[privs[i].byte] & privs[i].bit))
			continue;
		left[privs[i].byte] &= (uint8_t)~privs[i].bit;
		if ((rc = out_add(out, cap, &o, privs[i].name)) != 0)
			return rc;
	}
	for (i = 0; i < 3; i++)
		for (b = 7; b >= 0; b--)
			if (left[i] & (1u << b)) {
				snprintf(rfu, sizeof(rfu), "RFU%zu.%02X", i + 1,
				    1u << b);
				if ((rc = out_add(out, cap, &o, rfu)) != 0)
					return rc;
			}
	if (o == 0)
		return out_add(out, cap, &o, "None");
	return 0;
}

int
gp_priv_parse(const char *s, uint8_t priv[3], struct gp_err *err)
{
	char name[40];
	const char *p = s, *e;
	size_t n, i, hl = strlen(s);
	uint8_t v[3] = { 0, 0, 0 }, hx[3];
	int found;

	/* Six hex digits are the three bytes themselves. */
	if (hl == 6 && hex_decode(s, 6, hx, sizeof(hx), &n) == 0) {
		memcpy(priv, hx, 3);
		return 0;
	}
	for (;;) {
		while (*p == ' ')
			p++;
		e = p + strcspn(p, "|,");
		n = (size_t)(e - p);
		while (n > 0 && p[n - 1] == ' ')
			n--;
		if (n == 0 || n >= sizeof(name))
			return gp_fail(err, ERR_PARSE,
			    "privileges: empty or over-long name in \"%.64s\"", s);
		memcpy(name, p, n);
		name[n] = '\0';
		found = 0;
		if (strcasecmp(name, "None") == 0)
			found = 1;
		for (i = 0; !found && i < ARRAY_LEN(privs); i++)
			if (strcasecmp(name, privs[i].name) == 0) {
				v[privs[i].byte] |= privs[i].bit;
				found = 1;
			}
		if (!found)
			return gp_fail(err, ERR_PARSE,
			    "privileges: unknown name \"%s\"", name);
		if (*e == '\0')
			break;
		p = e + 1;
	}
	memcpy(priv, v, 3);
	return 0;
}

int
gp_priv_check(const uint8_t priv[3], struct gp_err *err)
{
	int sd = (priv[0] & 0x80) != 0;

	if ((priv[2] & 0x07) != 0)
		return gp_fail(err, ERR_INVAL, "privileges: RFU bits %02X set in "
		    "byte 3", priv[2] & 0x07);
	if (!sd && (priv[0] & 0x61))
		return gp_fail(err, ERR_INVAL, "privileges: DAP Verification, "
		    "Delegated Management and Mandated DAP need Security Domain");
	if ((priv[0] & 0x01) && !(priv[0] & 0x40))
		return gp_fail(err, ERR_INVAL, "privileges: Mandated DAP "
		    "Verification needs DAP Verification");
	if (!sd && (priv[1] & 0x60))
		return gp_fail(err, ERR_INVAL, "privileges: Authorized Management "
		    "and Token Verification need Security Domain");
	if (!sd && (priv[2] & 0xC0))
		return gp_fail(err, ERR_INVAL, "privileges: Receipt Generation and "
		    "Ciphered LFDB need Security Domain");
	return 0;
}

/* GPC §5.1 life cycle coding (gpref §5). */
const char *
gp_lcs_name(enum gp_lcs_kind kind, uint8_t lcs)
{
	switch (kind) {
	case GP_LCS_CARD:
		switch (lcs) {
		case 0x01: return "OP_READY";
		case 0x07: return "INITIALIZED";
		case 0x0F: return "SECURED";
		case 0x7F: return "CARD_LOCKED";
		case 0xFF: return "TERMINATED";
		}
		break;
	case GP_LCS_SD:
		if (lcs & 0x80)
			return (lcs & 0x03) == 0x03 ? "LOCKED" : "UNKNOWN";
		switch (lcs) {
		case 0x03: return "INSTALLED";
		case 0x07: return "SELECTABLE";
		case 0x0F: return "PERSONALIZED";
		}
		break;
	case GP_LCS_APP:
		if (lcs & 0x80)
			return (lcs & 0x03) == 0x03 ? "LOCKED" : "UNKNOWN";
		if (lcs == 0x03)
			return "INSTALLED";
		if (lcs == 0x07)
			return "SELECTABLE";
		if ((lcs & 0x07) == 0x07)
			return "APPLICATION_SPECIFIC";
		break;
	case GP_LCS_ELF:
		if (lcs == 0x01)
			return "LOADED";
		break;
	}
	return "UNKNOWN";
}
