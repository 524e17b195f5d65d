/*
 * barrier: choosing the read fence, and the heavy barrier writers issue in
 * its place (see barrier.h for the modes).
 *
 * Decision. Once per process (pthread_once), before its first domain:
 * readers may skip their fence only if every later grace-period scan can run
 * membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED), so the process registers for
 * it then, and elides the fence only if that succeeds.
 *
 * Failure. If membarrier starts failing after the decision (a seccomp filter
 * installed later, a fork child on a kernel that does not carry the
 * registration), readers cannot be told to fence again without a barrier,
 * so the process degrades, for good, to the classic fallback (as in folly's
 * asymmetric heavy barrier): changing the protection of a dirty page forces
 * a TLB shootdown, an interrupt on every CPU running this address space,
 * which serialises each of them as membarrier does. Not on CPUs that
 * invalidate remote TLBs without an interrupt (AMD INVLPGB, which recent
 * Linux kernels use): there the fallback is never set up, and without any
 * barrier pc__heavy_barrier returns false (grace.c then refuses to advance:
 * garbage waits, nothing is freed early). Only EPERM, ENOSYS or EINVAL from
 * membarrier degrade; a transient error fails one barrier.
 *
 * Sharing. A barrier interrupts every CPU running one of our threads, a
 * cost that falls on the whole process, so concurrent callers share one:
 * barriers are numbered under barrier_lock, and a caller whose stamp
 * predates a barrier that completed meanwhile needs no barrier of its own.
 */
#include "barrier.h"

#ifdef PC__READ_FENCE_ELIDABLE
#include <errno.h>
#include <linux/membarrier.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

bool pc__read_fence_elided;
static bool refused_for_test; /* pc__read_fence_setup(true) */
static pthread_once_t setup_once = PTHREAD_ONCE_INIT;

/* Level 5 of the lock order (internal.h). */
static pthread_mutex_t barrier_lock = PTHREAD_MUTEX_INITIALIZER;
static uint64_t barrier_started;     /* barriers begun; under barrier_lock */
static uint64_t barrier_done;        /* the last that succeeded; barrier_lock */
static bool degraded;                /* membarrier failed later: mprotect */
static unsigned char *fallback_page; /* mlocked page, or NULL */

static long membarrier(int cmd)
{
    return syscall(__NR_membarrier, cmd, 0, 0);
}

/* Whether the CPU can invalidate other CPUs' TLBs without interrupting them
 * (AMD's INVLPGB): then a shootdown is no barrier. */
static bool broadcast_tlb_flush(void)
{
    FILE *f = fopen("/proc/cpuinfo", "r");
    char line[4096];
    bool found = false;

    if (f == NULL)
        return true; /* cannot tell: do not rely on shootdowns */
    while (!found && fgets(line, sizeof line, f) != NULL)
        if (strncmp(line, "flags", 5) == 0)
            found = strstr(line, " invlpgb") != NULL;
    fclose(f);
    return found;
}

static void fallback_page_init(void)
{
    long size = sysconf(_SC_PAGESIZE);
    void *p;

    if (broadcast_tlb_flush())
        return;
    p = mmap(NULL, (size_t)size, PROT_READ | PROT_WRITE,
             MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return;
    /* Best effort: mprotect_barrier dirties the page right before the
     * protection change anyway, so it is mapped then. */
    (void)mlock(p, (size_t)size);
    fallback_page = p;
}

static void setup(void)
{
    long cmds = membarrier(MEMBARRIER_CMD_QUERY);

    if (refused_for_test || cmds < 0 ||
        !(cmds & MEMBARRIER_CMD_PRIVATE_EXPEDITED) ||
        membarrier(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED) != 0)
        return;
    fallback_page_init();
    pc__read_fence_elided = true;
}

bool pc__read_fence_setup(bool refuse)
{
    int cs;

    if (refuse)
        refused_for_test = true;
    /* setup reads /proc/cpuinfo (cancellation points): no purecache call
     * is one (purecache.h, "Cancellation"). */
    pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &cs);
    pthread_once(&setup_once, setup);
    pthread_setcancelstate(cs, NULL);
    return pc__read_fence_elided;
}

const char *pc__read_fence_name(void)
{
    if (!pc__read_fence_setup(false))
        return "mfence (membarrier refused)";
    return __atomic_load_n(&degraded, __ATOMIC_RELAXED)
               ? "membarrier (failed later; mprotect fallback)"
               : "membarrier";
}

static bool mprotect_barrier(void)
{
    size_t size = (size_t)sysconf(_SC_PAGESIZE);

    if (fallback_page == NULL ||
        mprotect(fallback_page, size, PROT_READ | PROT_WRITE))
        return false;
    /* Dirty it, so every CPU that may cache the translation must drop it. */
    __atomic_add_fetch(fallback_page, 1, __ATOMIC_SEQ_CST);
    return mprotect(fallback_page, size, PROT_READ) == 0;
}

/* barrier_lock held: one process-wide heavy barrier. */
static bool barrier_now(void)
{
    if (!degraded) {
        if (membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED) == 0)
            return true;
        /* Not registered (a fork child): register and try once more. */
        if (membarrier(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED) == 0 &&
            membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED) == 0)
            return true;
        /* A transient failure (ENOMEM) only fails this barrier. */
        if (errno != EPERM && errno != ENOSYS && errno != EINVAL)
            return false;
        __atomic_store_n(&degraded, true, __ATOMIC_RELAXED);
    }
    return mprotect_barrier();
}

uint64_t pc__heavy_barrier_stamp(void)
{
    return __atomic_load_n(&barrier_started, __ATOMIC_ACQUIRE);
}

bool pc__heavy_barrier(uint64_t stamp)
{
    bool ok = true;

    if (!pc__read_fence_elided) {
        ck_pr_fence_memory(); /* readers fence themselves */
        return true;
    }
    pthread_mutex_lock(&barrier_lock);
    if (barrier_done <= stamp) {
        uint64_t n = barrier_started + 1;

        __atomic_store_n(&barrier_started, n, __ATOMIC_RELEASE);
        ok = barrier_now();
        if (ok)
            barrier_done = n;
    }
    pthread_mutex_unlock(&barrier_lock);
    return ok;
}

#else /* readers always fence: the heavy barrier is an ordinary fence */

bool pc__read_fence_setup(bool refuse)
{
    (void)refuse;
    return false;
}

const char *pc__read_fence_name(void)
{
#if defined(PC_READ_FENCE_LOCKED_ADD) && defined(__x86_64__)
    return "locked-add";
#else
    return "mfence";
#endif
}

uint64_t pc__heavy_barrier_stamp(void)
{
    return 0;
}

bool pc__heavy_barrier(uint64_t stamp)
{
    (void)stamp;
    ck_pr_fence_memory();
    return true;
}
#endif
