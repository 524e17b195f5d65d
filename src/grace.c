/*
 * grace: detecting grace periods on an epoch domain.
 *
 * ck_epoch supplies the records, their registration and the per-record
 * deferral lists; detecting grace periods is done here, by one rule that
 * holds in every read-fence mode (barrier.h):
 *
 *   the global epoch moves from e to e+1 only under the domain's
 *   grace_lock, after a heavy barrier that follows the read of e, and only
 *   if every record that is active has observed e.
 *
 * Claim: something deferred at epoch b (its unlink made visible by a full
 * fence before the epoch was read; retire.c) is unreachable by every reader
 * once the epoch is b+2. Consider the advance b+1 -> b+2. Its writer read
 * b+1, and the epoch became b+1 after the deferral read b, so the unlink
 * precedes that read, which precedes the heavy barrier. Take a reader R that
 * still holds the entry. R loaded it before the unlink was visible to R. The
 * heavy barrier makes R's CPU execute a full barrier at some point p during
 * the call: if p came before R's load of the entry, that load follows the
 * unlink and cannot see the entry, a contradiction; so p follows the load,
 * and therefore also R's earlier stores to `active` and `epoch`, which p
 * drains. The scan then reads R active with the epoch R observed, which R
 * read before its load of the entry, hence before the epoch became b+1: at
 * most b, so the advance is refused until R leaves. (With reader fences the
 * same argument holds with R's own fence, which follows both of its stores,
 * in place of p.) A reader seen active with an older `epoch` value than the
 * one it is about to store has not passed its fence yet, so it has loaded
 * nothing; a reader that left and came back finds the entry unlinked.
 *
 * Serialising advances under grace_lock is what makes "the heavy barrier
 * follows the read of e" enforceable: nobody else can move the epoch between
 * the read and the scan. ck's own ck_epoch_poll and ck_epoch_synchronize
 * rely on readers' fences (poll frees bucket e-2 on the strength of earlier
 * scans, synchronize advances twice per call), so they are not used.
 *
 * Pacing. With an elided read fence the heavy barrier is membarrier(2): it
 * interrupts every CPU running one of our threads, a cost that falls on the
 * whole process, so steps are shared and paced process-wide. A writer that
 * wants a step flags its domain; at most once per PACE_NS one of them runs
 * a paced step (step_all): it reads the epoch of every flagged domain,
 * issues one heavy barrier for all of them, then scans and advances each.
 * No writer lock is held meanwhile. Garbage waits two or three paces;
 * pc_reclaim (pc__grace_wait) does not wait for the pace.
 *
 * Failure. When no heavy barrier can be had (barrier.c), advances are
 * refused: garbage waits (it is freed by pc_destroy), nothing is freed
 * early, and pc__grace_wait gives up after a few tries instead of waiting
 * for ever. A fork child inherits these locks in the state they were in:
 * like every purecache lock, the child may use its caches only if no other
 * thread was inside a purecache call at fork time (purecache.h).
 */
#include "grace.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <time.h>

#define PACE_NS 1000000u

/* Level 2 of the lock order (internal.h). */
static pthread_mutex_t pace_lock = PTHREAD_MUTEX_INITIALIZER;
static uint64_t pace_last_ns; /* when the last paced step began */

/* grace_lock held, a heavy barrier completed after e was read: advance from
 * e if every active record has observed it. */
static bool scan_and_advance(struct pc__domain *d, unsigned int e)
{
    ck_stack_entry_t *cursor;

    /* Records are only ever pushed (registration); a record pushed after
     * this walk read the head was pushed with a locked instruction after
     * the barrier, so its reader's later loads see every earlier unlink.
     * Unregistered records have active == 0. */
    for (cursor = ck_pr_load_ptr(&d->epoch.records.head); cursor != NULL;
         cursor = ck_pr_load_ptr(&cursor->next)) {
        ck_epoch_record_t *r =
            PC__CONTAINER_OF(cursor, ck_epoch_record_t, record_next);

        PC_TSAN_ACQUIRE(r); /* published by ck_epoch_register (tsan.h, 4) */
        if (__atomic_load_n(&r->active, __ATOMIC_ACQUIRE) != 0 &&
            __atomic_load_n(&r->epoch, __ATOMIC_RELAXED) != e)
            return false;
    }
    __atomic_store_n(&d->epoch.epoch, e + 1, __ATOMIC_RELEASE);
    return true;
}

/* grace_lock held. */
enum advance { ADVANCED, BLOCKED, NO_BARRIER };

static enum advance advance_locked(struct pc__domain *d)
{
    unsigned int e = __atomic_load_n(&d->epoch.epoch, __ATOMIC_ACQUIRE);

    if (!pc__heavy_barrier(pc__heavy_barrier_stamp()))
        return NO_BARRIER;
    return scan_and_advance(d, e) ? ADVANCED : BLOCKED;
}

static uint64_t monotonic_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* One paced step for every domain that asked (see "Pacing"). */
static void step_all(void)
{
    struct pc__domain *d;
    uint64_t now, stamp;
    unsigned int held = 0;
    bool ok;

    if (pthread_mutex_trylock(&pace_lock) != 0)
        return;
    /* Read under pace_lock: a time read before it may be older than the
     * last step's, and the unsigned difference below would then wrap and
     * let a second step (a second barrier) follow at once. */
    now = monotonic_ns();
    if (now - __atomic_load_n(&pace_last_ns, __ATOMIC_RELAXED) < PACE_NS) {
        pthread_mutex_unlock(&pace_lock);
        return;
    }
    __atomic_store_n(&pace_last_ns, now, __ATOMIC_RELAXED);
    pc__domain_live_lock();
    for (d = pc__domain_first_live(); d != NULL; d = d->live_next) {
        d->step_held = false;
        if (!__atomic_load_n(&d->step_wanted, __ATOMIC_RELAXED) ||
            pthread_mutex_trylock(&d->grace_lock) != 0)
            continue;
        __atomic_store_n(&d->step_wanted, false, __ATOMIC_RELAXED);
        d->step_epoch = __atomic_load_n(&d->epoch.epoch, __ATOMIC_ACQUIRE);
        d->step_held = true;
        held++;
    }
    if (held > 0) { /* nothing to advance: no barrier */
        stamp = pc__heavy_barrier_stamp();
        ok = pc__heavy_barrier(stamp);
        for (d = pc__domain_first_live(); d != NULL; d = d->live_next) {
            if (!d->step_held)
                continue;
            if (ok)
                scan_and_advance(d, d->step_epoch);
            d->step_held = false;
            pthread_mutex_unlock(&d->grace_lock);
        }
    }
    pc__domain_live_unlock();
    pthread_mutex_unlock(&pace_lock);
}

bool pc__grace_step(struct pc__domain *d, bool paced)
{
    bool advanced;

#ifdef PC__READ_FENCE_ELIDABLE
    if (paced && pc__read_fence_elided) {
        /* (Stored only if clear: writers on every core ask, and a store
         * of what the line already holds still takes it from them.) */
        if (!__atomic_load_n(&d->step_wanted, __ATOMIC_RELAXED))
            __atomic_store_n(&d->step_wanted, true, __ATOMIC_RELAXED);
        if (monotonic_ns() - __atomic_load_n(&pace_last_ns, __ATOMIC_RELAXED) >=
            PACE_NS)
            step_all();
        return false;
    }
#else
    (void)paced;
    (void)step_all;
#endif
    if (pthread_mutex_trylock(&d->grace_lock) != 0)
        return false; /* someone else is advancing */
    advanced = advance_locked(d) == ADVANCED;
    pthread_mutex_unlock(&d->grace_lock);
    return advanced;
}

bool pc__grace_wait(struct pc__domain *d)
{
    unsigned int goal;
    long wait_ns = 0;
    int failures = 0, cancel_state;

    /* nanosleep is a cancellation point, and the caller holds its cache's
     * reclaim_lock: acting on a cancellation here would keep it held for
     * ever. The wait runs with cancellation disabled (a request that
     * arrives meanwhile is acted upon after the call, at the caller's next
     * cancellation point). */
    pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &cancel_state);
    /* The caller's unlinks are visible before the epoch they wait on. */
    ck_pr_fence_memory();
    goal = __atomic_load_n(&d->epoch.epoch, __ATOMIC_ACQUIRE) + 2;
    for (;;) {
        enum advance a = BLOCKED;
        bool done;

        pthread_mutex_lock(&d->grace_lock);
        done = (int)(__atomic_load_n(&d->epoch.epoch, __ATOMIC_ACQUIRE) -
                     goal) >= 0;
        if (!done) {
            a = advance_locked(d);
            done = (int)(__atomic_load_n(&d->epoch.epoch, __ATOMIC_RELAXED) -
                         goal) >= 0;
        }
        pthread_mutex_unlock(&d->grace_lock);
        if (done) {
            pthread_setcancelstate(cancel_state, NULL);
            return true;
        }
        if (a == ADVANCED) {
            wait_ns = 0;
            failures = 0; /* "a few tries": in a row */
            continue;
        }
        /* No barrier to be had (see "Failure"): give up rather than wait
         * for ever; the caller keeps its garbage. A few tries first, in
         * case the failure was transient. */
        if (a == NO_BARRIER && ++failures >= 8) {
            pthread_setcancelstate(cancel_state, NULL);
            return false;
        }
        if (wait_ns == 0) {
            wait_ns = 1000; /* a reader is inside: let it finish */
            sched_yield();
            continue;
        }
        /* A long section (a pin): back off, up to 1 ms between scans, so a
         * waiting pc_reclaim does not flood the other CPUs with barriers. */
        struct timespec ts = {0, wait_ns};
        while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
            ;
        if (wait_ns < 1000000)
            wait_ns *= 2;
    }
}
