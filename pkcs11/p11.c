/*
 * p11.c - module loading through p11-kit, token selection by RFC 7512 URI,
 * one session per thread with reopen on session/device loss, the handle
 * cache, and the single CK_RV -> project error mapping.
 * Runs in kmsd and kmsctl. Trusts the PKCS#11 module.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <p11-kit/p11-kit.h>
#include <p11-kit/uri.h>

#include "pkcs11/p11_int.h"

static __thread char last_err[160];

/* ---- errors ---- */

const char *
p11_rv_name(CK_RV rv)
{
	switch (rv) {
#define R(x) case x: return #x;
	R(CKR_OK) R(CKR_CANCEL) R(CKR_HOST_MEMORY) R(CKR_SLOT_ID_INVALID)
	R(CKR_GENERAL_ERROR) R(CKR_FUNCTION_FAILED) R(CKR_ARGUMENTS_BAD)
	R(CKR_CANT_LOCK) R(CKR_ATTRIBUTE_READ_ONLY) R(CKR_ATTRIBUTE_SENSITIVE)
	R(CKR_ATTRIBUTE_TYPE_INVALID) R(CKR_ATTRIBUTE_VALUE_INVALID)
	R(CKR_ACTION_PROHIBITED) R(CKR_DATA_INVALID) R(CKR_DATA_LEN_RANGE)
	R(CKR_DEVICE_ERROR) R(CKR_DEVICE_MEMORY) R(CKR_DEVICE_REMOVED)
	R(CKR_ENCRYPTED_DATA_INVALID) R(CKR_ENCRYPTED_DATA_LEN_RANGE)
	R(CKR_FUNCTION_CANCELED) R(CKR_FUNCTION_NOT_SUPPORTED)
	R(CKR_KEY_HANDLE_INVALID) R(CKR_KEY_SIZE_RANGE)
	R(CKR_KEY_TYPE_INCONSISTENT) R(CKR_KEY_FUNCTION_NOT_PERMITTED)
	R(CKR_KEY_NOT_WRAPPABLE) R(CKR_KEY_UNEXTRACTABLE)
	R(CKR_MECHANISM_INVALID) R(CKR_MECHANISM_PARAM_INVALID)
	R(CKR_OBJECT_HANDLE_INVALID) R(CKR_OPERATION_ACTIVE)
	R(CKR_OPERATION_NOT_INITIALIZED) R(CKR_PIN_INCORRECT)
	R(CKR_PIN_INVALID) R(CKR_PIN_LEN_RANGE) R(CKR_PIN_EXPIRED)
	R(CKR_PIN_LOCKED) R(CKR_SESSION_CLOSED) R(CKR_SESSION_COUNT)
	R(CKR_SESSION_HANDLE_INVALID) R(CKR_SESSION_READ_ONLY)
	R(CKR_SESSION_EXISTS) R(CKR_SESSION_READ_WRITE_SO_EXISTS)
	R(CKR_SIGNATURE_INVALID) R(CKR_SIGNATURE_LEN_RANGE)
	R(CKR_TEMPLATE_INCOMPLETE) R(CKR_TEMPLATE_INCONSISTENT)
	R(CKR_TOKEN_NOT_PRESENT) R(CKR_TOKEN_NOT_RECOGNIZED)
	R(CKR_TOKEN_WRITE_PROTECTED) R(CKR_UNWRAPPING_KEY_HANDLE_INVALID)
	R(CKR_UNWRAPPING_KEY_SIZE_RANGE)
	R(CKR_UNWRAPPING_KEY_TYPE_INCONSISTENT) R(CKR_USER_ALREADY_LOGGED_IN)
	R(CKR_USER_NOT_LOGGED_IN) R(CKR_USER_PIN_NOT_INITIALIZED)
	R(CKR_USER_TYPE_INVALID) R(CKR_USER_ANOTHER_ALREADY_LOGGED_IN)
	R(CKR_WRAPPED_KEY_INVALID) R(CKR_WRAPPED_KEY_LEN_RANGE)
	R(CKR_WRAPPING_KEY_HANDLE_INVALID) R(CKR_WRAPPING_KEY_SIZE_RANGE)
	R(CKR_WRAPPING_KEY_TYPE_INCONSISTENT) R(CKR_RANDOM_NO_RNG)
	R(CKR_DOMAIN_PARAMS_INVALID) R(CKR_CURVE_NOT_SUPPORTED)
	R(CKR_BUFFER_TOO_SMALL) R(CKR_CRYPTOKI_NOT_INITIALIZED)
	R(CKR_CRYPTOKI_ALREADY_INITIALIZED) R(CKR_PIN_TOO_WEAK)
	R(CKR_PUBLIC_KEY_INVALID) R(CKR_FUNCTION_REJECTED)
#undef R
	}
	return "CKR_UNKNOWN";
}

/* The one place where CK_RV becomes a project error. */
int
p11_map_rv(CK_RV rv)
{
	switch (rv) {
	case CKR_OK:
		return 0;
	case CKR_HOST_MEMORY:
	case CKR_DEVICE_MEMORY:
		return ERR_NOMEM;
	case CKR_ARGUMENTS_BAD:
	case CKR_ATTRIBUTE_VALUE_INVALID:
	case CKR_TEMPLATE_INCOMPLETE:
	case CKR_TEMPLATE_INCONSISTENT:
	case CKR_DATA_LEN_RANGE:
	case CKR_KEY_SIZE_RANGE:
	case CKR_DATA_INVALID:
		return ERR_INVAL;
	case CKR_KEY_HANDLE_INVALID:
	case CKR_OBJECT_HANDLE_INVALID:
	case CKR_WRAPPING_KEY_HANDLE_INVALID:
	case CKR_UNWRAPPING_KEY_HANDLE_INVALID:
		return ERR_HANDLE;
	case CKR_KEY_TYPE_INCONSISTENT:
	case CKR_KEY_FUNCTION_NOT_PERMITTED:
	case CKR_WRAPPING_KEY_TYPE_INCONSISTENT:
	case CKR_UNWRAPPING_KEY_TYPE_INCONSISTENT:
	case CKR_KEY_NOT_WRAPPABLE:
	case CKR_KEY_UNEXTRACTABLE:
		return ERR_KEYCLASS;
	case CKR_WRAPPED_KEY_INVALID:
	case CKR_WRAPPED_KEY_LEN_RANGE:
	case CKR_ENCRYPTED_DATA_INVALID:
	case CKR_ENCRYPTED_DATA_LEN_RANGE:
		return ERR_UNWRAP;
	case CKR_SIGNATURE_INVALID:
	case CKR_SIGNATURE_LEN_RANGE:
		return ERR_AUTH;
	case CKR_MECHANISM_INVALID:
	case CKR_MECHANISM_PARAM_INVALID:
	case CKR_FUNCTION_NOT_SUPPORTED:
	case CKR_CURVE_NOT_SUPPORTED:
		return ERR_P11_MECH;
	case CKR_DEVICE_ERROR:
	case CKR_DEVICE_REMOVED:
	case CKR_TOKEN_NOT_PRESENT:
	case CKR_SESSION_HANDLE_INVALID:
	case CKR_SESSION_CLOSED:
		return ERR_P11_DEVICE;
	case CKR_PIN_INCORRECT:
	case CKR_PIN_INVALID:
	case CKR_PIN_LEN_RANGE:
	case CKR_PIN_EXPIRED:
	case CKR_PIN_LOCKED:
		return ERR_P11_PIN;
	case CKR_USER_NOT_LOGGED_IN:
		return ERR_SEALED;
	case CKR_BUFFER_TOO_SMALL:
		return ERR_TOOBIG;
	default:
		return ERR_P11;
	}
}

int
p11_fail(const char *fn, CK_RV rv)
{
	snprintf(last_err, sizeof(last_err), "%s: %s", fn, p11_rv_name(rv));
	if (rv != CKR_OK)
		log_msg(LOG_DEBUG, "event=p11_error call=%s rv=%s", fn,
		    p11_rv_name(rv));
	/* SoftHSM2 reports a failed AES-KW/KWP integrity check as a general
	 * error; in C_UnwrapKey that can only mean the wrapped key is bad. */
	if (strcmp(fn, "C_UnwrapKey") == 0 &&
	    (rv == CKR_GENERAL_ERROR || rv == CKR_FUNCTION_FAILED))
		return ERR_UNWRAP;
	return p11_map_rv(rv);
}

const char *
p11_last_error(void)
{
	return last_err[0] ? last_err : "none";
}

/* ---- sessions ---- */

struct p11_sess {
	struct p11         *p;
	CK_SESSION_HANDLE   h;
	struct p11_sess    *next;
};

static void
sess_destroy(void *arg)
{
	struct p11_sess *s = arg, **pp;
	struct p11 *p = s->p;

	pthread_mutex_lock(&p->mu);
	for (pp = &p->sessions; *pp != NULL; pp = &(*pp)->next) {
		if (*pp == s) {
			*pp = s->next;
			break;
		}
	}
	pthread_mutex_unlock(&p->mu);
	(void)p->f->C_CloseSession(s->h);
	free(s);
}

static CK_RV
sess_open(struct p11 *p, CK_SESSION_HANDLE *h)
{
	return p->f->C_OpenSession(p->slot, CKF_SERIAL_SESSION | CKF_RW_SESSION,
	    NULL, NULL, h);
}

/*
 * The calling thread's session, opened on first use. The anchor session
 * opened at p11_open keeps the login alive while per-thread sessions come
 * and go.
 */
int
p11_sess(struct p11 *p, CK_SESSION_HANDLE *h)
{
	struct p11_sess *s = pthread_getspecific(p->tkey);
	CK_RV rv;

	if (s != NULL) {
		*h = s->h;
		return 0;
	}
	s = calloc(1, sizeof(*s));
	if (s == NULL)
		return ERR_NOMEM;
	if ((rv = sess_open(p, &s->h)) != CKR_OK) {
		free(s);
		return p11_fail("C_OpenSession", rv);
	}
	s->p = p;
	pthread_mutex_lock(&p->mu);
	s->next = p->sessions;
	p->sessions = s;
	pthread_mutex_unlock(&p->mu);
	pthread_setspecific(p->tkey, s);
	*h = s->h;
	return 0;
}

int
p11_session_lost(CK_RV rv)
{
	return rv == CKR_SESSION_HANDLE_INVALID || rv == CKR_SESSION_CLOSED ||
	    rv == CKR_DEVICE_ERROR || rv == CKR_DEVICE_REMOVED;
}

/* Replaces the calling thread's session after a session or device error. */
void
p11_sess_reopen(struct p11 *p)
{
	struct p11_sess *s = pthread_getspecific(p->tkey);
	CK_SESSION_HANDLE nh;

	log_msg(LOG_WARN, "event=p11_session_reopen last=\"%s\"", p11_last_error());
	if (s == NULL)
		return;
	if (sess_open(p, &nh) == CKR_OK) {
		(void)p->f->C_CloseSession(s->h);
		s->h = nh;
	}
	/* Handles may be stale after a device error. */
	p11_cache_clear(p);
}

/* ---- loading ---- */

static void
fixed_str(char *out, const CK_UTF8CHAR *in, size_t n)
{
	while (n > 0 && (in[n - 1] == ' ' || in[n - 1] == '\0'))
		n--;
	memcpy(out, in, n);
	out[n] = '\0';
}

static int
load_module(struct p11 *p, const char *module)
{
	CK_C_INITIALIZE_ARGS args;
	CK_RV rv;

	if (module == NULL || module[0] == '\0')
		module = P11_DEFAULT_MODULE;
	if (strchr(module, '/') != NULL) {
		p->f = p11_kit_module_load(module, P11_KIT_MODULE_UNMANAGED);
		if (p->f == NULL) {
			log_msg(LOG_ERR, "event=p11_load_failed module=%s msg=\"%s\"",
			    module, p11_kit_message() ? p11_kit_message() : "");
			return ERR_NOTFOUND;
		}
		p->single = 1;
	} else {
		p->all = p11_kit_modules_load(NULL, P11_KIT_MODULE_UNMANAGED);
		if (p->all != NULL)
			p->f = p11_kit_module_for_name(p->all, module);
		if (p->f == NULL) {
			log_msg(LOG_ERR, "event=p11_module_unknown name=%s", module);
			return ERR_NOTFOUND;
		}
	}
	snprintf(p->modname, sizeof(p->modname), "%s", module);
	/* Not p11_kit_module_initialize: in unmanaged mode it passes NULL
	 * args, which turns the module's own locking off. */
	memset(&args, 0, sizeof(args));
	args.flags = CKF_OS_LOCKING_OK;
	rv = p->f->C_Initialize(&args);
	if (rv != CKR_OK && rv != CKR_CRYPTOKI_ALREADY_INITIALIZED)
		return p11_fail("C_Initialize", rv);
	p->initialized = 1;
	return 0;
}

/* Picks the slot: `want_init` 1 = an initialised token matching uri,
 * 0 = the first slot whose token is not initialised. */
static int
select_slot(struct p11 *p, P11KitUri *uri, int want_init)
{
	CK_SLOT_ID *slots = NULL;
	CK_ULONG n = 0, i;
	CK_TOKEN_INFO ti;
	CK_RV rv;
	int rc = ERR_NOTFOUND;

	if ((rv = p->f->C_GetSlotList(CK_TRUE, NULL, &n)) != CKR_OK)
		return p11_fail("C_GetSlotList", rv);
	if (n == 0)
		return ERR_NOTFOUND;
	slots = calloc(n, sizeof(*slots));
	if (slots == NULL)
		return ERR_NOMEM;
	if ((rv = p->f->C_GetSlotList(CK_TRUE, slots, &n)) != CKR_OK) {
		free(slots);
		return p11_fail("C_GetSlotList", rv);
	}
	for (i = 0; i < n; i++) {
		if (p->f->C_GetTokenInfo(slots[i], &ti) != CKR_OK)
			continue;
		if (!!(ti.flags & CKF_TOKEN_INITIALIZED) != want_init)
			continue;
		if (want_init && uri != NULL &&
		    !p11_kit_uri_match_token_info(uri, &ti))
			continue;
		p->slot = slots[i];
		fixed_str(p->label, ti.label, sizeof(ti.label));
		fixed_str(p->serial, ti.serialNumber, sizeof(ti.serialNumber));
		rc = 0;
		break;
	}
	free(slots);
	return rc;
}

static int
p11_new(struct p11 **out)
{
	struct p11 *p;

	p = calloc(1, sizeof(*p));
	if (p == NULL)
		return ERR_NOMEM;
	if (pthread_key_create(&p->tkey, sess_destroy) != 0) {
		free(p);
		return ERR_NOMEM;
	}
	pthread_mutex_init(&p->mu, NULL);
	p->anchor = CK_INVALID_HANDLE;
	*out = p;
	return 0;
}

static int
open_common(struct p11 **out, const char *module, const char *token_uri,
    int want_init)
{
	P11KitUri *uri = NULL;
	struct p11 *p = NULL;
	CK_RV rv;
	int rc;

	*out = NULL;
	if ((rc = p11_new(&p)) != 0)
		return rc;
	if (token_uri != NULL && token_uri[0] != '\0') {
		uri = p11_kit_uri_new();
		if (uri == NULL) {
			rc = ERR_NOMEM;
			goto out;
		}
		if (p11_kit_uri_parse(token_uri, P11_KIT_URI_FOR_TOKEN, uri) !=
		    P11_KIT_URI_OK) {
			log_msg(LOG_ERR, "event=p11_uri_invalid uri=\"%s\"", token_uri);
			rc = ERR_PARSE;
			goto out;
		}
	}
	if ((rc = load_module(p, module)) != 0)
		goto out;
	if ((rc = select_slot(p, uri, want_init)) != 0) {
		log_msg(LOG_INFO, "event=p11_no_token uri=\"%s\" initialized=%d",
		    token_uri ? token_uri : "pkcs11:", want_init);
		goto out;
	}
	if (want_init && (rv = sess_open(p, &p->anchor)) != CKR_OK) {
		rc = p11_fail("C_OpenSession", rv);
		goto out;
	}
	*out = p;
	p = NULL;
out:
	if (uri != NULL)
		p11_kit_uri_free(uri);
	if (p != NULL)
		p11_close(p);
	return rc;
}

int
p11_open(struct p11 **out, const char *module, const char *token_uri)
{
	return open_common(out, module, token_uri, 1);
}

int
p11_open_uninitialized(struct p11 **out, const char *module)
{
	return open_common(out, module, NULL, 0);
}

void
p11_close(struct p11 *p)
{
	struct p11_sess *s, *next;

	if (p == NULL)
		return;
	if (p->f != NULL && p->initialized) {
		for (s = p->sessions; s != NULL; s = next) {
			next = s->next;
			(void)p->f->C_CloseSession(s->h);
			free(s);
		}
		p->sessions = NULL;
		/* The calling thread's key must not run the destructor on the
		 * freed session later. */
		pthread_setspecific(p->tkey, NULL);
		if (p->anchor != CK_INVALID_HANDLE)
			(void)p->f->C_CloseSession(p->anchor);
		(void)p->f->C_Finalize(NULL);
	}
	if (p->all != NULL)
		p11_kit_modules_release(p->all);
	else if (p->single && p->f != NULL)
		p11_kit_module_release(p->f);
	pthread_key_delete(p->tkey);
	pthread_mutex_destroy(&p->mu);
	free(p->cache);
	free(p);
}

const char *p11_token_label(const struct p11 *p) { return p->label; }
const char *p11_token_serial(const struct p11 *p) { return p->serial; }
const char *p11_module_name(const struct p11 *p) { return p->modname; }
CK_SLOT_ID p11_slot(const struct p11 *p) { return p->slot; }
CK_FUNCTION_LIST *p11_functions(const struct p11 *p) { return p->f; }
uint32_t p11_caps(const struct p11 *p) { return p->caps; }

/* ---- login ---- */

static int
login_as(struct p11 *p, CK_USER_TYPE who, const char *pin, size_t pinlen)
{
	CK_RV rv;

	if (p->anchor == CK_INVALID_HANDLE &&
	    (rv = sess_open(p, &p->anchor)) != CKR_OK)
		return p11_fail("C_OpenSession", rv);
	rv = p->f->C_Login(p->anchor, who, (CK_UTF8CHAR *)(uintptr_t)pin,
	    (CK_ULONG)pinlen);
	if (rv == CKR_USER_ALREADY_LOGGED_IN)
		rv = CKR_OK;
	if (rv != CKR_OK)
		return p11_fail("C_Login", rv);
	p->logged_in = who == CKU_USER ? 1 : 2;
	return 0;
}

int
p11_login(struct p11 *p, const char *pin, size_t pinlen)
{
	return login_as(p, CKU_USER, pin, pinlen);
}

int
p11_login_so(struct p11 *p, const char *pin, size_t pinlen)
{
	return login_as(p, CKU_SO, pin, pinlen);
}

int
p11_logout(struct p11 *p)
{
	CK_RV rv;

	if (p->anchor == CK_INVALID_HANDLE)
		return 0;
	rv = p->f->C_Logout(p->anchor);
	p->logged_in = 0;
	p11_cache_clear(p);
	if (rv != CKR_OK && rv != CKR_USER_NOT_LOGGED_IN)
		return p11_fail("C_Logout", rv);
	return 0;
}

int
p11_logged_in(struct p11 *p)
{
	return p->logged_in == 1;
}

int
p11_init_token(struct p11 *p, const char *label, const char *so_pin,
    const char *user_pin, int *initialised)
{
	CK_UTF8CHAR lab[32];
	CK_SESSION_HANDLE h;
	CK_RV rv;
	size_t n = strlen(label);
	int rc;

	*initialised = 0;
	if (n > sizeof(lab))
		return ERR_INVAL;
	memset(lab, ' ', sizeof(lab));
	memcpy(lab, label, n);
	if (p->anchor != CK_INVALID_HANDLE) {
		(void)p->f->C_CloseSession(p->anchor);
		p->anchor = CK_INVALID_HANDLE;
	}
	rv = p->f->C_InitToken(p->slot, (CK_UTF8CHAR *)(uintptr_t)so_pin,
	    strlen(so_pin), lab);
	if (rv != CKR_OK)
		return p11_fail("C_InitToken", rv);
	*initialised = 1;
	/* SoftHSM2 moves the token to a new slot id; find it again by label. */
	{
		P11KitUri *uri = p11_kit_uri_new();
		CK_TOKEN_INFO *ti;

		if (uri == NULL)
			return ERR_NOMEM;
		ti = p11_kit_uri_get_token_info(uri);
		memcpy(ti->label, lab, sizeof(lab));
		rc = select_slot(p, uri, 1);
		p11_kit_uri_free(uri);
		if (rc != 0)
			return rc;
	}
	if ((rv = sess_open(p, &h)) != CKR_OK)
		return p11_fail("C_OpenSession", rv);
	rv = p->f->C_Login(h, CKU_SO, (CK_UTF8CHAR *)(uintptr_t)so_pin,
	    strlen(so_pin));
	if (rv == CKR_OK)
		rv = p->f->C_InitPIN(h, (CK_UTF8CHAR *)(uintptr_t)user_pin,
		    strlen(user_pin));
	(void)p->f->C_Logout(h);
	(void)p->f->C_CloseSession(h);
	if (rv != CKR_OK)
		return p11_fail("C_InitPIN", rv);
	return 0;
}

/* ---- handle cache ---- */

static int
cache_match(const struct p11_cent *e, CK_OBJECT_CLASS cls, const char *label,
    const uint8_t *id, size_t idlen)
{
	return e->cls == cls && strcmp(e->label, label) == 0 &&
	    e->idlen == idlen && (idlen == 0 || memcmp(e->id, id, idlen) == 0);
}

void
p11_cache_drop(struct p11 *p, CK_OBJECT_CLASS cls, const char *label,
    const uint8_t *id, size_t idlen)
{
	size_t i;

	pthread_mutex_lock(&p->mu);
	for (i = 0; i < p->ncache; i++) {
		if (cache_match(&p->cache[i], cls, label, id, idlen)) {
			p->cache[i] = p->cache[--p->ncache];
			break;
		}
	}
	pthread_mutex_unlock(&p->mu);
}

void
p11_cache_clear(struct p11 *p)
{
	pthread_mutex_lock(&p->mu);
	p->ncache = 0;
	pthread_mutex_unlock(&p->mu);
}

int
p11_find(struct p11 *p, CK_OBJECT_CLASS cls, const char *label,
    const uint8_t *id, size_t idlen, p11_obj *out)
{
	CK_ATTRIBUTE tmpl[3];
	CK_OBJECT_HANDLE found[2];
	CK_ULONG nf = 0, nt = 0;
	CK_SESSION_HANDLE h;
	CK_RV rv;
	size_t i;

	if (strlen(label) >= sizeof(p->cache[0].label) ||
	    idlen > sizeof(p->cache[0].id))
		return ERR_INVAL;
	pthread_mutex_lock(&p->mu);
	for (i = 0; i < p->ncache; i++) {
		if (cache_match(&p->cache[i], cls, label, id, idlen)) {
			*out = p->cache[i].h;
			pthread_mutex_unlock(&p->mu);
			return 0;
		}
	}
	pthread_mutex_unlock(&p->mu);

	tmpl[nt++] = (CK_ATTRIBUTE){ CKA_CLASS, &cls, sizeof(cls) };
	tmpl[nt++] = (CK_ATTRIBUTE){ CKA_LABEL, (void *)(uintptr_t)label,
	    strlen(label) };
	if (id != NULL)
		tmpl[nt++] = (CK_ATTRIBUTE){ CKA_ID, (void *)(uintptr_t)id, idlen };
	P11_RETRY(p, h, rv, rv = p->f->C_FindObjectsInit(h, tmpl, nt));
	if (rv != CKR_OK)
		return p11_fail("C_FindObjectsInit", rv);
	rv = p->f->C_FindObjects(h, found, 2, &nf);
	(void)p->f->C_FindObjectsFinal(h);
	if (rv != CKR_OK)
		return p11_fail("C_FindObjects", rv);
	if (nf == 0)
		return ERR_NOTFOUND;
	if (nf > 1)
		return ERR_EXISTS;
	*out = found[0];

	pthread_mutex_lock(&p->mu);
	if (p->ncache == p->capcache) {
		size_t nc = p->capcache ? p->capcache * 2 : 32;
		struct p11_cent *ne = realloc(p->cache, nc * sizeof(*ne));

		if (ne != NULL) {
			p->cache = ne;
			p->capcache = nc;
		}
	}
	if (p->ncache < p->capcache) {
		struct p11_cent *e = &p->cache[p->ncache++];

		e->cls = cls;
		snprintf(e->label, sizeof(e->label), "%s", label);
		e->idlen = id ? idlen : 0;
		if (id != NULL && idlen)
			memcpy(e->id, id, idlen);
		e->h = found[0];
	}
	pthread_mutex_unlock(&p->mu);
	return 0;
}

int
p11_find_all(struct p11 *p, CK_OBJECT_CLASS cls, p11_obj **out, size_t *n)
{
	CK_ATTRIBUTE tmpl[] = { { CKA_CLASS, &cls, sizeof(cls) } };
	CK_OBJECT_HANDLE chunk[64];
	CK_ULONG got;
	CK_SESSION_HANDLE h;
	p11_obj *all = NULL, *na;
	size_t cnt = 0;
	CK_RV rv;

	*out = NULL;
	*n = 0;
	P11_RETRY(p, h, rv, rv = p->f->C_FindObjectsInit(h, tmpl, 1));
	if (rv != CKR_OK)
		return p11_fail("C_FindObjectsInit", rv);
	for (;;) {
		rv = p->f->C_FindObjects(h, chunk, ARRAY_LEN(chunk), &got);
		if (rv != CKR_OK || got == 0)
			break;
		na = realloc(all, (cnt + got) * sizeof(*all));
		if (na == NULL) {
			rv = CKR_HOST_MEMORY;
			break;
		}
		all = na;
		memcpy(all + cnt, chunk, got * sizeof(*all));
		cnt += got;
	}
	(void)p->f->C_FindObjectsFinal(h);
	if (rv != CKR_OK) {
		free(all);
		return p11_fail("C_FindObjects", rv);
	}
	*out = all;
	*n = cnt;
	return 0;
}

int
p11_destroy(struct p11 *p, p11_obj o)
{
	CK_SESSION_HANDLE h;
	CK_RV rv;

	P11_RETRY(p, h, rv, rv = p->f->C_DestroyObject(h, o));
	if (rv != CKR_OK)
		return p11_fail("C_DestroyObject", rv);
	return 0;
}

int
p11_copy_to_session(struct p11 *p, p11_obj o, p11_obj *out)
{
	CK_BBOOL f = CK_FALSE;
	CK_ATTRIBUTE t = { CKA_TOKEN, &f, sizeof(f) };
	CK_SESSION_HANDLE h;
	CK_RV rv;

	P11_RETRY(p, h, rv, rv = p->f->C_CopyObject(h, o, &t, 1, out));
	if (rv != CKR_OK)
		return p11_fail("C_CopyObject", rv);
	return 0;
}

/* ---- attributes ---- */

static int
get_attr(struct p11 *p, p11_obj o, CK_ATTRIBUTE *a, const char *what)
{
	CK_SESSION_HANDLE h;
	CK_RV rv;

	P11_RETRY(p, h, rv, rv = p->f->C_GetAttributeValue(h, o, a, 1));
	if (rv != CKR_OK)
		return p11_fail(what, rv);
	return 0;
}

int
p11_attr_bool(struct p11 *p, p11_obj o, CK_ATTRIBUTE_TYPE t, int *v)
{
	CK_BBOOL b = CK_FALSE;
	CK_ATTRIBUTE a = { t, &b, sizeof(b) };
	int rc;

	if ((rc = get_attr(p, o, &a, "C_GetAttributeValue")) != 0)
		return rc;
	*v = b == CK_TRUE;
	return 0;
}

int
p11_attr_ulong(struct p11 *p, p11_obj o, CK_ATTRIBUTE_TYPE t, CK_ULONG *v)
{
	CK_ATTRIBUTE a = { t, v, sizeof(*v) };

	return get_attr(p, o, &a, "C_GetAttributeValue");
}

int
p11_attr_bytes(struct p11 *p, p11_obj o, CK_ATTRIBUTE_TYPE t, struct buf *out)
{
	CK_ATTRIBUTE a = { t, NULL, 0 };
	int rc;

	buf_reset(out);
	if ((rc = get_attr(p, o, &a, "C_GetAttributeValue")) != 0)
		return rc;
	if (a.ulValueLen == CK_UNAVAILABLE_INFORMATION)
		return ERR_NOTFOUND;
	if ((rc = buf_reserve(out, a.ulValueLen + 1)) != 0)
		return rc;
	a.pValue = out->p;
	if ((rc = get_attr(p, o, &a, "C_GetAttributeValue")) != 0)
		return rc;
	out->len = a.ulValueLen;
	return 0;
}

int
p11_set_bytes(struct p11 *p, p11_obj o, CK_ATTRIBUTE_TYPE t, const void *v,
    size_t n)
{
	CK_ATTRIBUTE a = { t, (void *)(uintptr_t)v, n };
	CK_SESSION_HANDLE h;
	CK_RV rv;

	P11_RETRY(p, h, rv, rv = p->f->C_SetAttributeValue(h, o, &a, 1));
	if (rv != CKR_OK)
		return p11_fail("C_SetAttributeValue", rv);
	return 0;
}

int
p11_data_create(struct p11 *p, const char *application, const char *label,
    const void *value, size_t n, p11_obj *out)
{
	CK_OBJECT_CLASS cls = CKO_DATA;
	CK_BBOOL t = CK_TRUE;
	CK_ATTRIBUTE tmpl[] = {
		{ CKA_CLASS, &cls, sizeof(cls) },
		{ CKA_TOKEN, &t, sizeof(t) },
		{ CKA_PRIVATE, &t, sizeof(t) },
		{ CKA_MODIFIABLE, &t, sizeof(t) },
		{ CKA_APPLICATION, (void *)(uintptr_t)application,
		    strlen(application) },
		{ CKA_LABEL, (void *)(uintptr_t)label, strlen(label) },
		{ CKA_VALUE, (void *)(uintptr_t)value, n },
	};
	CK_SESSION_HANDLE h;
	CK_RV rv;

	P11_RETRY(p, h, rv, rv = p->f->C_CreateObject(h, tmpl, ARRAY_LEN(tmpl),
	    out));
	if (rv != CKR_OK)
		return p11_fail("C_CreateObject", rv);
	return 0;
}
