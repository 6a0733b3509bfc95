/*
 * pid.c - getpid() without a system call, for kmsd. SoftHSM2 calls getpid()
 * in each C_* function (its fork check) and OpenSSL in each DRBG call: about
 * 90 system calls per key replacement in kmsd, 0.7 ms of CPU per card on
 * the 2-core VM (make bench, keyrepl_bench), and most of an in-process CMAC.
 * A program that links this file (it calls p11_pid_cache) has its getpid
 * used by the module and libcrypto alike; until p11_pid_cache it is libc's.
 *
 * The cached pid must never outlive a fork. The cache only works once the
 * fork handlers are in place (p11_pid_cache); the prepare handler counts a fork in progress, and while the
 * count is not zero nobody reads or fills the cache, so the child -- even
 * another library's fork handler that runs before ours -- asks the kernel.
 * Both sides then clear the cache (the child also the count: it has only
 * the forking thread). vfork, clone and posix_spawn run no fork handlers:
 * such a child that asked for its pid before exec would get the parent's
 * (and a vfork child could fill the shared cache); kmsd has no such child.
 * Async-signal-safe: atomics and a system call only.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "pkcs11/p11.h"

static atomic_int pid_on;	/* the fork handlers are registered */
static atomic_int pid_forks;	/* forks in progress in this process */
static _Atomic pid_t pid_cached;

static void
pid_prepare(void)
{
	atomic_fetch_add(&pid_forks, 1);
}

static void
pid_parent(void)
{
	atomic_store(&pid_cached, 0);
	atomic_fetch_sub(&pid_forks, 1);
}

static void
pid_child(void)
{
	atomic_store(&pid_cached, 0);
	atomic_store(&pid_forks, 0);
}

static void
pid_register(void)
{
	if (pthread_atfork(pid_prepare, pid_parent, pid_child) == 0)
		atomic_store(&pid_on, 1);
}

void
p11_pid_cache(void)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;

	(void)pthread_once(&once, pid_register);
}

pid_t
getpid(void)
{
	pid_t p;

	if (atomic_load(&pid_on) && atomic_load(&pid_forks) == 0 &&
	    (p = atomic_load(&pid_cached)) != 0)
		return p;
	p = (pid_t)syscall(SYS_getpid);
	/* A fork that began meanwhile clears the cache after it anyway. */
	if (atomic_load(&pid_on) && atomic_load(&pid_forks) == 0)
		atomic_store(&pid_cached, p);
	return p;
}
