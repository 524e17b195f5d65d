/*
 * ticker: the default clock of caches whose entries expire, read with one
 * load instead of a clock_gettime call.
 *
 * Why. A hit on an entry that can expire must compare its expiry time with
 * the cache's clock. CLOCK_MONOTONIC_COARSE through the vDSO costs a call,
 * a seqlock read of the kernel's time page and a division: about 8 ns per
 * hit in the benchmark's get mix, 15-20% of a hit. memcached and moka
 * (quanta's "recent" clock) read a time that one thread refreshes instead;
 * so does purecache.
 *
 * Algorithm. One thread per process (the ticker), started by the first
 * cache that puts an entry with an expiry and uses the default clock,
 * stopped (and joined) when the last such cache is destroyed, so a
 * process whose caches never expire anything runs no thread, and none
 * outlives the caches that need it. Every period (the
 * resolution of CLOCK_MONOTONIC_COARSE, 4 ms at HZ = 250; 1 to 10 ms) it
 * reads CLOCK_MONOTONIC_COARSE and stores the time in ms (plus a
 * constant bias: the struct below) into a global that readers load. Its value
 * is a read of that same clock made up to a period (plus the ticker's
 * scheduling delay) before: the cache's clock runs a little late, never early,
 * and never goes backwards. Its lag L shortens, in real time, the life of an
 * entry put meanwhile to about ttl - L (the reads of that put and of later gets
 * are both L late, and the ticker's next tick catches up). The thread runs
 * under SCHED_OTHER on any CPU the process may use, whatever the starting
 * thread's policy and affinity, and wakes once a period while it runs (250
 * times a second at HZ = 250), busy or idle. "Per process" means per loaded
 * copy of the library: two copies (dlopen RTLD_LOCAL) run two.
 *
 * Which clock a cache reads is fixed for its life when it first uses an
 * expiry (pc__ticker_first_use, before any entry has an expiry time):
 * the ticker's global, or, if no ticker could be started, a direct read of
 * CLOCK_MONOTONIC_COARSE. So a cache never mixes two clocks, except in
 * one way that moves only forward:
 *
 * fork(). The child has no ticker thread. A pthread_atfork child handler
 * (registered when the library loads) sets `vis` to UINT64_MAX, so every cache
 * in the child reads CLOCK_MONOTONIC_COARSE directly from then on (a later read
 * of the same clock than the last value the ticker stored: forward only), and
 * the child never starts a ticker again (a new one would move its caches back
 * to a value read up to a period late). The prepare handler holds the lifecycle
 * lock across fork() so the child never sees a start or stop half done.
 *
 * Concurrency. `vis` is UINT64_MAX while no ticker runs
 * (before the first start, after the last stop, in a forked child):
 * readers then read the clock themselves. Otherwise it is written by the ticker
 * only (and by the thread that starts it, before creating it) and read with
 * relaxed loads: each reader sees it move forward (read-read coherence), and a
 * read that happens after another never sees an older value. It sits alone on a
 * line written once a period, so a reader misses on it at most once a
 * period. Starting and stopping the thread, and the
 * count of caches that use it, are under the lifecycle lock; stop wakes
 * the thread through a condition variable and joins it with no lock held
 * that the thread needs.
 */
#ifndef PC_TICKER_H
#define PC_TICKER_H

#include <stdbool.h>
#include <stdint.h>
#include <time.h>

/* What `vis` adds to the time (entry.h's PC__KV_VIS_BIAS: core.h checks
 * they agree). */
#define PC__TICKER_VIS_BIAS ((uint64_t)0xc0 << 32)

struct pc__ticker_clock {
    /* The ticker's last read of the clock, in ms, plus
     * PC__TICKER_VIS_BIAS; UINT64_MAX while no ticker runs (one load
     * tells both). Biased so that a reader compares an entry's near
     * expiry time with it in one comparison that also checks the entry's
     * flags (entry.h, pc__kv_vis; core.h, pc__core_visible); writers take
     * the bias off (pc__ticker_now). One variable, so every thread sees
     * one clock that never goes back. */
    uint64_t vis;
} __attribute__((aligned(64)));

extern struct pc__ticker_clock pc__ticker_clock;

/* CLOCK_MONOTONIC_COARSE in ms (a vDSO read, no syscall). */
static inline __attribute__((always_inline)) uint64_t pc__coarse_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* The clock of a cache that acquired the ticker: its global while a ticker
 * runs, else (a forked child) a direct read. Wait-free; any thread. */
static inline uint64_t pc__ticker_now(void)
{
    uint64_t vis = __atomic_load_n(&pc__ticker_clock.vis, __ATOMIC_RELAXED);

    return __builtin_expect(vis != UINT64_MAX, 1) ? vis - PC__TICKER_VIS_BIAS
                                                  : pc__coarse_ms();
}

/*
 * A cache's first expiry: if *used is still false, fixes the cache's clock
 * and then stores *used = true with release, all under a process-wide
 * lock, so concurrent first expiries agree. With want (the cache has no
 * clock of its own) it acquires the ticker, starting it if none runs, and
 * on success sets *ticking: the cache reads pc__ticker_now from then on
 * and must call pc__ticker_release once, when destroyed. Otherwise (no
 * thread could be started, or this is a forked child of a process whose
 * ticker ran) *ticking stays false: the cache reads pc__coarse_ms. Both
 * flags are accessed atomically. Blocking (may start a thread); any
 * thread, no lock held.
 */
void pc__ticker_first_use(bool *used, bool *ticking, bool want);
/* The cache no longer uses the ticker; the last one stops and joins it.
 * Blocking; any thread but the ticker. */
void pc__ticker_release(void);
/* Whether a ticker thread runs now (tests). */
bool pc__ticker_running(void);

#ifdef PC_DEBUG
/* Debug builds: when set, pc__ticker_first_use does not start the
 * thread, as if it could not be created (tests of the fallback). */
extern bool pc__debug_ticker_fail;
#endif

#endif
