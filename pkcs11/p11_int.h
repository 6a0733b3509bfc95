/*
 * p11_int.h - internals shared by the files of pkcs11/ (not a public
 * header). Runs in kmsd and kmsctl.
 */
#ifndef SPTSM_P11_INT_H
#define SPTSM_P11_INT_H

#include <pthread.h>

#include "pkcs11/p11.h"

struct p11_cent {
	CK_OBJECT_CLASS  cls;
	char             label[128];
	uint8_t          id[32];
	size_t           idlen;
	CK_OBJECT_HANDLE h;
};

struct p11_sess;

struct p11 {
	CK_FUNCTION_LIST   *f;
	CK_FUNCTION_LIST  **all;	/* when loaded by registered name */
	int                 single;	/* loaded by path */
	int                 initialized;
	CK_SLOT_ID          slot;
	char                label[33];
	char                serial[17];
	char                modname[256];
	pthread_key_t       tkey;	/* the calling thread's p11_sess */
	pthread_mutex_t     mu;		/* sessions list and cache */
	struct p11_sess    *sessions;
	CK_SESSION_HANDLE   anchor;	/* keeps the login alive */
	int                 logged_in;	/* 1 user, 2 SO */
	uint32_t            caps;
	struct p11_cent    *cache;
	size_t              ncache, capcache;
};

int  p11_sess(struct p11 *p, CK_SESSION_HANDLE *h);
int  p11_session_lost(CK_RV rv);
void p11_sess_reopen(struct p11 *p);
/* Records "fn: CKR_x" for p11_last_error and maps rv. */
int  p11_fail(const char *fn, CK_RV rv);

/*
 * Runs EXPR (which sets `rv` using session `h`) once more on a fresh
 * session when the first try lost its session or device.
 */
#define P11_RETRY(p, h, rv, EXPR) do {					\
	int rc_ = p11_sess((p), &(h));					\
	if (rc_ != 0)							\
		return rc_;						\
	EXPR;								\
	if (p11_session_lost(rv)) {					\
		p11_sess_reopen(p);					\
		if ((rc_ = p11_sess((p), &(h))) != 0)			\
			return rc_;					\
		EXPR;							\
	}								\
} while (0)

#endif
