/*
 * registry.c - the GlobalPlatform registry of the virtual SE: entries
 * (ISD, SSDs, load files, applications), SD hierarchy, lock inheritance,
 * memory quotas and key sets. Runs in the card; it trusts its own
 * invariants (no association cycles: checked when a card file is read).
 */
#include <stdlib.h>
#include <string.h>

#include "tests/sim/vse/vse_int.h"

/* gp-reference §5: the SD package most cards carry. */
const struct vse_aid vse_sd_elf_aid = { 7,
    { 0xA0, 0x00, 0x00, 0x01, 0x51, 0x53, 0x50 } };
const struct vse_aid vse_sd_module_aid = { 8,
    { 0xA0, 0x00, 0x00, 0x01, 0x51, 0x53, 0x50, 0x41 } };

int
vse_aid_set(struct vse_aid *a, const uint8_t *p, size_t n)
{
	/* ISO 7816-5: an AID is 5 to 16 bytes. */
	if (n < 5 || n > 16)
		return ERR_INVAL;
	memcpy(a->b, p, n);
	a->len = (uint8_t)n;
	return 0;
}

int
vse_aid_eq(const struct vse_aid *a, const struct vse_aid *b)
{
	return a->len == b->len && memcmp(a->b, b->b, a->len) == 0;
}

struct vse_entry *
vse_reg_find(const struct vse *c, const struct vse_aid *aid)
{
	size_t i;

	if (aid->len == 0)
		return NULL;
	for (i = 0; i < c->nents; i++)
		if (vse_aid_eq(&c->ents[i]->aid, aid))
			return c->ents[i];
	return NULL;
}

struct vse_entry *
vse_reg_isd(const struct vse *c)
{
	size_t i;

	for (i = 0; i < c->nents; i++)
		if (c->ents[i]->kind == VSE_KIND_ISD)
			return c->ents[i];
	return NULL;
}

struct vse_entry *
vse_reg_parent(const struct vse *c, const struct vse_entry *e)
{
	if (e->kind == VSE_KIND_ISD)
		return NULL;
	return vse_reg_find(c, &e->sd);
}

int
vse_reg_is_sd(const struct vse_entry *e)
{
	return e != NULL && (e->kind == VSE_KIND_ISD || e->kind == VSE_KIND_SSD);
}

int
vse_reg_in_scope(const struct vse *c, const struct vse_entry *actor,
    const struct vse_entry *target)
{
	const struct vse_entry *p = target;
	size_t depth = 0;

	if (actor == NULL || target == NULL || actor == target)
		return 0;
	if (actor->kind == VSE_KIND_ISD)
		return target->kind != VSE_KIND_ISD;
	while ((p = vse_reg_parent(c, p)) != NULL && depth++ <= c->nents)
		if (p == actor)
			return 1;
	return 0;
}

int
vse_reg_entry_locked(const struct vse_entry *e)
{
	if (e->kind == VSE_KIND_ISD)
		return e->lcs == VSE_CARD_LOCKED || e->lcs == VSE_CARD_TERMINATED;
	if (e->kind == VSE_KIND_ELF)
		return 0;
	/* GPC §5.3: LOCKED is b8 set (apps) or 83 (SDs). */
	return (e->lcs & 0x80) != 0;
}

int
vse_reg_locked(const struct vse *c, const struct vse_entry *e)
{
	const struct vse_entry *p = e;
	size_t depth = 0;

	if (e->kind != VSE_KIND_ISD && vse_reg_entry_locked(e))
		return 1;
	while ((p = vse_reg_parent(c, p)) != NULL && depth++ <= c->nents)
		if (p->kind == VSE_KIND_SSD && vse_reg_entry_locked(p))
			return 1;
	return 0;
}

struct vse_entry *
vse_entry_new(enum vse_kind kind, const struct vse_aid *aid)
{
	struct vse_entry *e = calloc(1, sizeof(*e));

	if (e == NULL)
		return NULL;
	e->kind = kind;
	e->aid = *aid;
	e->scp_i = 0x70;
	return e;
}

void
vse_entry_free(struct vse_entry *e)
{
	size_t i;

	if (e == NULL)
		return;
	for (i = 0; i < e->nrecs; i++) {
		if (e->recs[i].data != NULL)
			wipe(e->recs[i].data, e->recs[i].len);
		free(e->recs[i].data);
	}
	free(e->recs);
	if (e->params != NULL)
		wipe(e->params, e->params_len);
	free(e->params);
	wipe(e, sizeof(*e));
	free(e);
}

int
vse_reg_add(struct vse *c, struct vse_entry *e)
{
	struct vse_entry **n;
	size_t ncap;

	if (c->nents >= VSE_MAX_ENTRIES)
		return ERR_LIMIT;
	if (c->nents == c->cap) {
		ncap = c->cap ? c->cap * 2 : 16;
		/* Only pointers move: no key bytes live in this array. */
		if ((n = realloc(c->ents, ncap * sizeof(*n))) == NULL)
			return ERR_NOMEM;
		c->ents = n;
		c->cap = ncap;
	}
	c->ents[c->nents++] = e;
	return 0;
}

void
vse_reg_remove(struct vse *c, struct vse_entry *e)
{
	size_t i;

	for (i = 0; i < c->nents; i++) {
		if (c->ents[i] != e)
			continue;
		vse_card_forget(c, e);
		memmove(&c->ents[i], &c->ents[i + 1],
		    (c->nents - i - 1) * sizeof(c->ents[0]));
		c->nents--;
		vse_entry_free(e);
		return;
	}
}

/*
 * Memory charged to an SD: what its associated entries use, where a
 * sub-SD with a quota counts for its whole quota (reserved) and one
 * without counts for what it holds itself.
 */
static uint64_t
charge(const struct vse *c, const struct vse_entry *sd, int nv, size_t depth)
{
	const struct vse_entry *e;
	uint64_t sum = 0;
	size_t i;

	if (depth > c->nents)
		return UINT32_MAX;
	for (i = 0; i < c->nents; i++) {
		e = c->ents[i];
		if (e == sd || !vse_aid_eq(&e->sd, &sd->aid))
			continue;
		if (e->kind == VSE_KIND_SSD) {
			if (nv && e->has_quota_nv)
				sum += e->quota_nv;
			else if (!nv && e->has_quota_v)
				sum += e->quota_v;
			else
				sum += charge(c, e, nv, depth + 1);
		}
		sum += nv ? e->use_nv : e->use_v;
	}
	return sum;
}

int
vse_reg_check_quota(const struct vse *c)
{
	const struct vse_entry *e, *isd = vse_reg_isd(c);
	size_t i;

	if (isd == NULL)
		return ERR_INTERNAL;
	for (i = 0; i < c->nents; i++) {
		e = c->ents[i];
		if (!vse_reg_is_sd(e))
			continue;
		if (e->has_quota_nv && charge(c, e, 1, 0) > e->quota_nv)
			return ERR_LIMIT;
		if (e->has_quota_v && charge(c, e, 0, 0) > e->quota_v)
			return ERR_LIMIT;
	}
	if (charge(c, isd, 1, 0) + isd->use_nv > c->mem_nv ||
	    charge(c, isd, 0, 0) + isd->use_v > c->mem_v)
		return ERR_LIMIT;
	return 0;
}

static uint64_t
left(uint64_t cap, uint64_t used)
{
	return used >= cap ? 0 : cap - used;
}

void
vse_reg_free_mem(const struct vse *c, const struct vse_entry *sd,
    uint64_t *nv, uint64_t *v)
{
	const struct vse_entry *p = sd, *isd = vse_reg_isd(c);
	uint64_t fnv, fv, x;
	size_t depth = 0;

	if (isd == NULL) {
		*nv = *v = 0;
		return;
	}
	fnv = left(c->mem_nv, charge(c, isd, 1, 0) + isd->use_nv);
	fv = left(c->mem_v, charge(c, isd, 0, 0) + isd->use_v);
	for (; p != NULL && depth++ <= c->nents; p = vse_reg_parent(c, p)) {
		if (p->has_quota_nv) {
			x = left(p->quota_nv, charge(c, p, 1, 0));
			fnv = x < fnv ? x : fnv;
		}
		if (p->has_quota_v) {
			x = left(p->quota_v, charge(c, p, 0, 0));
			fv = x < fv ? x : fv;
		}
	}
	*nv = fnv;
	*v = fv;
}

struct vse_keyset *
vse_keyset_find(struct vse_entry *sd, uint8_t kvn)
{
	size_t i;

	for (i = 0; i < sd->nkeysets; i++)
		if (sd->keysets[i].kvn == kvn)
			return &sd->keysets[i];
	return NULL;
}

struct vse_key *
vse_keyset_key(struct vse_keyset *ks, uint8_t kid)
{
	size_t i;

	for (i = 0; i < ks->nkeys; i++)
		if (ks->keys[i].kid == kid)
			return &ks->keys[i];
	return NULL;
}

int
vse_keyset_is_scp03(const struct vse_keyset *ks)
{
	const struct vse_key *k[3] = { NULL, NULL, NULL };
	size_t i;

	if (ks->kvn == 0 || ks->kvn >= VSE_KVN_TOKEN)
		return 0;
	for (i = 0; i < ks->nkeys; i++)
		if (ks->keys[i].kid >= 1 && ks->keys[i].kid <= 3)
			k[ks->keys[i].kid - 1] = &ks->keys[i];
	for (i = 0; i < 3; i++)
		if (k[i] == NULL || k[i]->type != VSE_KEY_AES ||
		    !vse_aes_keylen_ok(k[i]->len) || k[i]->len != k[0]->len)
			return 0;
	return 1;
}

struct vse_keyset *
vse_keyset_default(struct vse_entry *sd)
{
	struct vse_keyset *best = NULL;
	size_t i;

	for (i = 0; i < sd->nkeysets; i++)
		if (vse_keyset_is_scp03(&sd->keysets[i]) &&
		    (best == NULL || sd->keysets[i].kvn < best->kvn))
			best = &sd->keysets[i];
	return best;
}

int
vse_record_add(struct vse_entry *e, uint8_t p1, uint8_t p2, int decrypted,
    const uint8_t *p, size_t n)
{
	struct vse_record *nr;

	if (e->nrecs >= VSE_MAX_RECORDS || n > VSE_RECORD_MAX)
		return ERR_LIMIT;
	nr = realloc(e->recs, (e->nrecs + 1) * sizeof(*nr));
	if (nr == NULL)
		return ERR_NOMEM;
	e->recs = nr;
	nr = &e->recs[e->nrecs];
	memset(nr, 0, sizeof(*nr));
	nr->data = malloc(n ? n : 1);
	if (nr->data == NULL)
		return ERR_NOMEM;
	if (n > 0)
		memcpy(nr->data, p, n);
	nr->len = n;
	nr->p1 = p1;
	nr->p2 = p2;
	nr->decrypted = (uint8_t)(decrypted != 0);
	e->nrecs++;
	return 0;
}
