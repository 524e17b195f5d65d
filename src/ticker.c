/*
 * ticker: the ticker thread's life and loop (the algorithm and the
 * concurrency argument are atop ticker.h).
 *
 * Locks: first_lock (process) makes a cache's concurrent first expiries
 * agree on its clock; life_lock (process, taken under first_lock or
 * alone) guards users, running, forked_off and the thread handle; wait_lock
 * (process, taken under life_lock or by the thread alone) guards `stop` and is
 * the condition variable's mutex. The thread holds wait_lock except while it
 * waits, so a stop is seen at the latest when the wait it interrupts returns.
 */
#define _GNU_SOURCE
#include "ticker.h"

#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <unistd.h>

#include "util.h"

struct pc__ticker_clock pc__ticker_clock = {.vis = UINT64_MAX};

#ifdef PC_DEBUG
bool pc__debug_ticker_fail;
#endif

static pthread_once_t once = PTHREAD_ONCE_INIT;
static bool init_ok; /* the condition variable and fork handlers are set */
static uint64_t period_ns;

static pthread_mutex_t first_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t life_lock = PTHREAD_MUTEX_INITIALIZER;
static unsigned long users; /* caches that acquired the ticker */
static bool running;        /* a ticker thread exists (to be joined) */
static bool forked_off;     /* a child forked while a ticker ran */
static pthread_t thread;

static pthread_mutex_t wait_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wait_cond;
static bool stop;

/* The clock as the global holds it (ticker.h): biased, never UINT64_MAX
 * (which means "no ticker"). */
static uint64_t tick_vis(void)
{
    uint64_t ms = pc__coarse_ms();

    /* Never 0 ms either: writers take a time of 0 for "nothing can
     * expire" (core.h, pc__core_now_if_ttl). */
    if (ms == 0)
        ms = 1;
    if (ms > UINT64_MAX - 1 - PC__TICKER_VIS_BIAS)
        ms = UINT64_MAX - 1 - PC__TICKER_VIS_BIAS;
    return ms + PC__TICKER_VIS_BIAS;
}

static void set_vis(uint64_t vis)
{
    __atomic_store_n(&pc__ticker_clock.vis, vis, __ATOMIC_RELAXED);
}

static void *ticker_main(void *arg)
{
    struct timespec next;
    cpu_set_t cpus, mine;

    (void)arg;
    /* The CPUs of the thread that started it (inherited) and those of the
     * main thread: a starter pinned to a busy core would starve it alone.
     * Not every CPU: a pid names its main thread, whose mask stands for
     * the process's (taskset's), and a library must not widen that; nor
     * the main thread's alone, which an application may have pinned
     * (reviewed: a main thread on CPU 0 had pinned the ticker there). */
    if (sched_getaffinity(0, sizeof mine, &mine) == 0 &&
        sched_getaffinity(getpid(), sizeof cpus, &cpus) == 0) {
        CPU_OR(&cpus, &cpus, &mine);
        (void)sched_setaffinity(0, sizeof cpus, &cpus);
    }
    pthread_mutex_lock(&wait_lock);
    while (!stop) {
        set_vis(tick_vis());
        /* From now, not from the last deadline: a ticker that was late
         * does not run a burst of ticks to catch up. */
        clock_gettime(CLOCK_MONOTONIC, &next);
        next.tv_nsec += (long)period_ns;
        if (next.tv_nsec >= 1000000000L) {
            next.tv_sec++;
            next.tv_nsec -= 1000000000L;
        }
        (void)pthread_cond_timedwait(&wait_cond, &wait_lock, &next);
    }
    pthread_mutex_unlock(&wait_lock);
    return NULL;
}

/* Under life_lock, no thread running: start one. */
static bool start(void)
{
    pthread_attr_t attr;
    sigset_t all, old;
    int rc;

#ifdef PC_DEBUG
    if (pc__debug_ticker_fail)
        return false;
#endif
    /* The previous thread, if any, was joined: no race on `stop`. The
     * time is stored before the thread exists, so a cache that acquired
     * the ticker never finds no time there (and reads the clock itself)
     * before the thread's first tick, which could be older than such a
     * read. */
    stop = false;
    set_vis(tick_vis());
    if (pthread_attr_init(&attr) != 0) {
        set_vis(UINT64_MAX);
        return false;
    }
    (void)pthread_attr_setstacksize(&attr, 256 * 1024); /* a few frames */
    /* Normal scheduling whatever the starting thread's (a real-time
     * thread that never yields would otherwise starve it). */
    struct sched_param prio = {.sched_priority = 0};
    (void)pthread_attr_setinheritsched(&attr, PTHREAD_EXPLICIT_SCHED);
    (void)pthread_attr_setschedpolicy(&attr, SCHED_OTHER);
    (void)pthread_attr_setschedparam(&attr, &prio);
    /* Born with every signal blocked: it never takes the application's. */
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    rc = pthread_create(&thread, &attr, ticker_main, NULL);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    pthread_attr_destroy(&attr);
    if (rc != 0) {
        set_vis(UINT64_MAX);
        return false;
    }
    (void)pthread_setname_np(thread, "pc-ticker");
    return true;
}

/* Under life_lock, a thread running: stop it and wait for it. */
static void stop_and_join(void)
{
    pthread_mutex_lock(&wait_lock);
    stop = true;
    pthread_cond_signal(&wait_cond);
    pthread_mutex_unlock(&wait_lock);
    pthread_join(thread, NULL);
    set_vis(UINT64_MAX);
}

/* Across fork(): no first use, start or stop half done (both locks held,
 * in their order); the child has no ticker thread, so its caches read the
 * clock directly from then on. */
static void fork_prepare(void)
{
    pthread_mutex_lock(&first_lock);
    pthread_mutex_lock(&life_lock);
}

static void fork_parent(void)
{
    pthread_mutex_unlock(&life_lock);
    pthread_mutex_unlock(&first_lock);
}

static void fork_child(void)
{
    if (running) {
        set_vis(UINT64_MAX);
        running = false;
        forked_off = true;
    }
    pthread_mutex_unlock(&life_lock);
    pthread_mutex_unlock(&first_lock);
}

/* Registered when the library loads, before the application's handlers
 * (domain.c says how), so that an application prepare handler, which then runs
 * before ours, may put with a time to live, and its child handler, which
 * runs after ours, sees the ticker gone (domain.c registers its own the
 * same way; the two take no lock of each other's). */
static bool atfork_ok;

__attribute__((constructor(PC__CTOR_PRIORITY))) static void ticker_load(void)
{
    atfork_ok = pthread_atfork(fork_prepare, fork_parent, fork_child) == 0;
}

static void process_init(void)
{
    pthread_condattr_t ca;
    struct timespec res;

    /* The resolution of the clock it reads: ticking faster would store
     * the same value again. Between 1 and 10 ms. */
    period_ns = 4000000;
    if (clock_getres(CLOCK_MONOTONIC_COARSE, &res) == 0)
        period_ns = (uint64_t)res.tv_sec * 1000000000u + (uint64_t)res.tv_nsec;
    if (period_ns < 1000000)
        period_ns = 1000000;
    if (period_ns > 10000000)
        period_ns = 10000000;
    if (pthread_condattr_init(&ca) != 0)
        return;
    if (!atfork_ok) /* no memory at load: once more */
        atfork_ok = pthread_atfork(fork_prepare, fork_parent, fork_child) == 0;
    init_ok = atfork_ok &&
              pthread_condattr_setclock(&ca, CLOCK_MONOTONIC) == 0 &&
              pthread_cond_init(&wait_cond, &ca) == 0;
    pthread_condattr_destroy(&ca);
}

static bool acquire(void)
{
    bool ok;

    if (!init_ok)
        return false;
    pthread_mutex_lock(&life_lock);
    ok = !forked_off && (running || start());
    if (ok) {
        running = true;
        users++;
    }
    pthread_mutex_unlock(&life_lock);
    return ok;
}

void pc__ticker_first_use(bool *used, bool *ticking, bool want)
{
    pthread_once(&once, process_init);
    pthread_mutex_lock(&first_lock);
    if (!__atomic_load_n(used, __ATOMIC_RELAXED)) {
        if (want && acquire())
            __atomic_store_n(ticking, true, __ATOMIC_RELAXED);
        __atomic_store_n(used, true, __ATOMIC_RELEASE);
    }
    pthread_mutex_unlock(&first_lock);
}

void pc__ticker_release(void)
{
    int cs;

    /* pthread_join is a cancellation point; this runs in pc_destroy. */
    pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &cs);
    pthread_mutex_lock(&life_lock);
    if (--users == 0 && running) {
        stop_and_join();
        running = false;
    }
    pthread_mutex_unlock(&life_lock);
    pthread_setcancelstate(cs, NULL);
}

bool pc__ticker_running(void)
{
    bool r;

    pthread_mutex_lock(&life_lock);
    r = running;
    pthread_mutex_unlock(&life_lock);
    return r;
}
