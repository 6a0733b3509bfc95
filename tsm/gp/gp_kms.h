/*
 * gp_kms.h - the GP engine's crypto backend over kmsd (library gpkms): a
 * struct gp_backend whose key references are kmsd handles of one connection.
 * Runs in tsmd; never holds key bytes. Sessions on several threads (or
 * coroutines) share the connection with their requests pipelined.
 */
#ifndef SPTSM_GP_KMS_H
#define SPTSM_GP_KMS_H

#include <stddef.h>
#include <stdint.h>

#include "kms/kms.h"
#include "tsm/gp/gp.h"

struct gp_kms;

/*
 * Takes over `c` (a connected kmsd client with the tsm role): from now on
 * the connection is used only through `g`, and gp_kms_free() closes it.
 * Key-set handles opened on `c` before this call may be registered with
 * gp_kms_keyset_add(). Errors: ERR_NOMEM (c is then not taken).
 */
int  gp_kms_new(struct kms_client *c, struct gp_kms **out) WUR;
/* Closes the connection: kmsd destroys every handle of it. No other
 * thread may be using g or a backend filled from it. */
void gp_kms_free(struct gp_kms *g);
/*
 * Closes the connection now (kmsd destroys every handle of it at once)
 * while g stays allocated: from then on calls fail with ERR_CLOSED and
 * releases and key-set closes send nothing, so a caller about to drop all
 * its handles frees its sessions without a handle.close per key. Only
 * with nothing in flight and no other thread using g; then gp_kms_free.
 */
void gp_kms_close(struct gp_kms *g);
/*
 * Fills a backend whose ctx is g; valid until gp_kms_free(). Each callback
 * is one kmsd request (kms/PROTOCOL.md), with kmsd's status as its result
 * and kmsd's message in gp_kms_last_error():
 *  derive  scp03.derive; the new handle is recorded with the base's length
 *  kdf     scp03.kdf (kmsd gives bytes only for 00/01 with S-MAC, 02 with ENC)
 *  cmac, encrypt, decrypt   the same-named operations. encrypt of one block
 *          80 || counter with S-ENC (the R-ENC ICV, gpref §1.7) computes the
 *          next 32 counters' ICVs in the same request and serves them later
 *  wrap    wrap (the key must be opened exportable); an AES-192 key that the
 *          token cannot CBC-wrap (SoftHSM2) is ERR_NOTSUP
 *  kcv     the GP check value kmsd reported for a key-set member when
 *          the set was opened (no request); kcv for one it did not report
 *  key_len from the registration, no request
 *  release handle.close of a derived session key (key-set members stay
 *          until gp_kms_keyset_close); nothing is sent on a dead connection
 * A key reference that is not registered is ERR_HANDLE before any request.
 */
void gp_kms_backend(struct gp_kms *g, struct gp_backend *be);

/*
 * Registers the handles of a key set opened on this connection, so the
 * backend accepts them as key references and knows their length (from
 * ks->alg). Only registered key-set members and the session keys derived
 * from them are accepted as key references (anything else: ERR_HANDLE).
 * Errors: ERR_INVAL (alg without an AES length, handle 0), ERR_EXISTS
 * (a handle already registered), ERR_NOMEM. Nothing is registered on error.
 */
int  gp_kms_keyset_add(struct gp_kms *g, const struct kms_keyset *ks) WUR;
/*
 * keyset.open through this connection (safe while other threads use g),
 * then gp_kms_keyset_add(). flags: KMS_OPEN_EXPORTABLE for the members of
 * a new key set that PUT KEY will wrap. Errors: those of keyset.open
 * (ERR_BLOB, ERR_DENIED, ERR_SEALED, ...), ERR_CLOSED, and those above.
 */
int  gp_kms_keyset_open(struct gp_kms *g, const uint8_t *blob, size_t n,
	    unsigned flags, struct kms_keyset *out) WUR;
/*
 * The key set diversified from a master set on this connection: keyset.open
 * of the master blob with KMS_OPEN_MASTER, then `diversify` of each member
 * with data d (as long as the master keys: key_i = AES-ECB(master_i, d), in
 * the token), registered like gp_kms_keyset_open's. For the per-SE keys of
 * a master set received by key sync without seId (tsm/sei/README.md, d =
 * sei_master_div()). The master handles are closed before returning;
 * out->kcv stays zero (kmsd records no check value for derived keys). On
 * error no handle is left open.
 */
int  gp_kms_keyset_diversify(struct gp_kms *g, const uint8_t *blob, size_t n,
	    const uint8_t *d, size_t dn, struct kms_keyset *out) WUR;
/* Unregisters and closes the key set's handles (every one is tried);
 * returns the first error. */
int  gp_kms_keyset_close(struct gp_kms *g, const struct kms_keyset *ks) WUR;
/* The member with usage KMS_USE_ENC/MAC/DEK; ERR_NOTFOUND if absent. */
int  gp_kms_keyset_ref(const struct kms_keyset *ks, int usage,
	    gp_keyref *out) WUR;

/*
 * Cooperative mode, for a caller that runs many sessions as coroutines on
 * one thread: a call that has to wait for kmsd calls yield(ctx) (which
 * switches to the caller's scheduler) instead of blocking, and looks again
 * when it returns. The scheduler calls gp_kms_pump() while sessions wait:
 * it sends every queued request in one write and reads one reply (replies
 * come in request order, so resuming waiters in the order they yielded
 * resumes the one just answered). Set it before the sessions start; while
 * it is set every call on g must come from a coroutine that yield can switch
 * away from, all on one thread. yield NULL goes back to blocking mode.
 */
void gp_kms_set_yield(struct gp_kms *g, void (*yield)(void *ctx), void *ctx);
/* 0 after one reply was handed out; ERR_NOTFOUND when nothing is queued
 * or in flight; ERR_CLOSED when the connection failed (every waiting call
 * then fails); ERR_BUSY when a caller is using the connection. */
int  gp_kms_pump(struct gp_kms *g) WUR;

/*
 * 1 while the connection works. After a transport failure (kmsd died or
 * closed the connection, a reply out of order, a 30 s timeout) every call
 * fails with ERR_CLOSED: the handles are gone with the connection. The
 * caller lets the sessions on g fail, frees g and starts again with a new
 * connection (gp_kms_new) and key sets re-opened from their blobs.
 */
int  gp_kms_alive(struct gp_kms *g);
/* The last failure of any call on g, with kmsd's message ("" if none). */
const char *gp_kms_last_error(struct gp_kms *g, char *out, size_t cap);

struct gp_kms_stats {
	uint64_t requests;	/* kmsd requests sent */
	uint64_t writes;	/* flushes that carried at least one request */
	uint64_t icv_hits;	/* R-ENC ICVs served from the look-ahead */
	size_t   max_in_flight;
	size_t   live_refs;	/* registered handles plus live session keys */
};
void gp_kms_stats(struct gp_kms *g, struct gp_kms_stats *st);

#endif
