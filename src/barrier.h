/*
 * barrier: the read fence and the heavy barrier that stands in for it.
 *
 * One concept, the "read fence": a reader's store to its epoch record must
 * be visible to a writer's grace-period scan before the reader loads
 * anything it might use (a store-load ordering; grace.c explains why). The
 * build option PURECACHE_READ_FENCE picks how:
 *
 *  - membarrier (default; PC_READ_FENCE_MEMBARRIER): on Linux x86-64 the
 *    read path executes no fence instruction, only a compiler barrier, and
 *    the fence is "elided". Writers pay instead: every grace-period scan is
 *    preceded by a heavy barrier, membarrier(MEMBARRIER_CMD_PRIVATE_
 *    EXPEDITED), which makes every CPU running one of our threads execute a
 *    full barrier (liburcu's "memb" flavour). Whether the fence is elided is
 *    decided once per process, before its first cache exists
 *    (pc__read_fence_setup): if the kernel refuses to register, readers
 *    fence (MFENCE) for the life of the process.
 *  - mfence: ck_pr_fence_memory on every read.
 *  - locked-add (PC_READ_FENCE_LOCKED_ADD): the full barrier Linux's smp_mb
 *    uses, a locked add of zero to the reader's own stack slot. A locked
 *    read-modify-write instruction, though on private memory, hence opt-in.
 *
 * The heavy barrier (pc__heavy_barrier) is process state, shared by every
 * cache: with an elided read fence it is membarrier, or, if membarrier
 * starts failing after the decision (a seccomp filter installed later),
 * an mprotect-induced TLB shootdown (barrier.c); otherwise it is a plain
 * full fence, since readers fence themselves.
 *
 * Concurrency: pc__read_fence_elided is written once, under pthread_once,
 * before any domain exists, and only read afterwards. The heavy barrier
 * serialises itself (its lock is a leaf; see the lock order in internal.h).
 */
#ifndef PC_BARRIER_H
#define PC_BARRIER_H

#include <ck_pr.h>
#include <stdbool.h>
#include <stdint.h>

#if defined(PC_READ_FENCE_MEMBARRIER) && defined(__linux__) &&                 \
    defined(__x86_64__)
#define PC__READ_FENCE_ELIDABLE 1
/* Set once, before the first domain exists (pc__read_fence_setup). */
extern bool pc__read_fence_elided;
#endif

/* The read fence of pc__read_enter (domain.h). */
static inline void pc__read_fence(void)
{
#if defined(PC__READ_FENCE_ELIDABLE)
    /* x86-64 keeps loads in order and stores in order; only store->load
     * needs the writer's heavy barrier, so a compiler barrier suffices. */
    if (__builtin_expect(pc__read_fence_elided, 1))
        ck_pr_barrier();
    else
        ck_pr_fence_memory();
#elif defined(PC_READ_FENCE_LOCKED_ADD) && defined(__x86_64__)
    __asm__ __volatile__("lock; addl $0,-8(%%rsp)" ::: "memory", "cc");
#else
    ck_pr_fence_memory();
#endif
}

/*
 * Decide, once per process, whether reads elide their fence; returns the
 * decision. Called by pc__domain_init before a domain exists. Test hook:
 * refuse = true on the process's first call makes it behave as if the
 * kernel had refused membarrier.
 */
bool pc__read_fence_setup(bool refuse);

/* pc_read_fence's answer (purecache.h). */
const char *pc__read_fence_name(void);

/* A stamp to pass to pc__heavy_barrier, taken after the epoch read the
 * barrier must follow. */
uint64_t pc__heavy_barrier_stamp(void);

/*
 * Make every CPU that runs one of our threads execute a full barrier at
 * some point during the call, after `stamp` was taken: a barrier that
 * another thread began after the stamp and completed meanwhile counts.
 * False when no heavy barrier can be had at all (membarrier refused after
 * start-up and no fallback on this CPU): the caller must then not assume
 * readers' stores are visible. Blocking (a system call, under a leaf lock).
 */
bool pc__heavy_barrier(uint64_t stamp);

#endif
