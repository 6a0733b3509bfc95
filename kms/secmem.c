/*
 * secmem.c - locked, non-dumpable memory for key bytes, PINs and shares;
 * constant-time compare; process hardening. Runs in kmsd, kmsctl, tsmd.
 */
#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "base.h"

void
wipe(void *p, size_t n)
{
	if (p != NULL && n > 0)
		OPENSSL_cleanse(p, n);
}

int
ct_equal(const void *a, const void *b, size_t n)
{
	return CRYPTO_memcmp(a, b, n) == 0;
}

static size_t
page_round(size_t n)
{
	size_t pg = (size_t)sysconf(_SC_PAGESIZE);

	return (n + pg - 1) / pg * pg;
}

/*
 * Each allocation gets its own mapping: mlock'ed so it never reaches swap,
 * MADV_DONTDUMP so a core (if one is ever allowed) leaves it out. mlock
 * failing (RLIMIT_MEMLOCK) is logged once and tolerated: refusing to run
 * would push operators to worse workarounds.
 *
 * Freed one-page mappings are kept (wiped, still locked) for the next
 * allocation: kmsd takes one per session key it derives without the
 * token's SP 800-108 mechanism, and five system calls plus a TLB
 * shootdown on both CPUs each time cost more than the derivation.
 */
#define SECMEM_SPARE 8

static pthread_mutex_t spare_mu = PTHREAD_MUTEX_INITIALIZER;
static void *spare[SECMEM_SPARE];
static size_t nspare;

void *
secmem_alloc(size_t n)
{
	static int warned;
	size_t len;
	void *p = NULL;

	if (n == 0)
		n = 1;
	len = page_round(n);
	if (len == page_round(1)) {
		pthread_mutex_lock(&spare_mu);
		if (nspare > 0)
			p = spare[--nspare];
		pthread_mutex_unlock(&spare_mu);
		if (p != NULL)
			return p;
	}
	p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
	    -1, 0);
	if (p == MAP_FAILED)
		return NULL;
	if (mlock(p, len) != 0 && !warned) {
		warned = 1;
		log_msg(LOG_WARN, "event=mlock_failed errno=%d", errno);
	}
	(void)madvise(p, len, MADV_DONTDUMP);
	return p;
}

void
secmem_free(void *p, size_t n)
{
	size_t len;
	int kept = 0;

	if (p == NULL)
		return;
	if (n == 0)
		n = 1;
	len = page_round(n);
	wipe(p, len);
	if (len == page_round(1)) {
		pthread_mutex_lock(&spare_mu);
		if (nspare < SECMEM_SPARE) {
			spare[nspare++] = p;
			kept = 1;
		}
		pthread_mutex_unlock(&spare_mu);
	}
	if (kept)
		return;
	(void)munlock(p, len);
	(void)munmap(p, len);
}

int
process_harden(void)
{
	struct rlimit rl = { 0, 0 };

	if (setrlimit(RLIMIT_CORE, &rl) != 0)
		return ERR_IO;
	if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0)
		return ERR_IO;
	return 0;
}
