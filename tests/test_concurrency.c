/*
 * Multi-threaded stress: several threads run get/put/delete on a shared key
 * space for a bounded time. Values are self-validating (testlib.h), so a torn
 * or misdirected read is caught; a monitor thread checks that pc_len never
 * exceeds the capacity; afterwards the cache must be consistent and, once
 * destroyed, must have released every allocation it made.
 */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "alloc.h"
#include "grace.h"
#include "lock.h"
#include "retire.h"
#include "testlib.h"
#include "ticker.h"

#define WORKERS 4

struct stress {
    pc_cache *c;
    uint64_t keys;
    double until;
    int put_pct, del_pct;
    /* results, written by each worker once at the end */
    uint64_t ops[WORKERS], torn[WORKERS], errors[WORKERS];
    uint64_t over_capacity;
    int stop_monitor;
    size_t cap;
    size_t resize_to; /* not 0: a thread moves the capacity to it and back */
    uint64_t resizes;
};

/* With a resizer, the workers run for their time and at least until it
 * has lowered and raised the capacity this often (a count, not a time:
 * a loaded machine stretches the run instead of thinning the test). */
#define MIN_RESIZES 11

struct worker_arg {
    struct stress *s;
    int id;
};

static void *worker(void *p)
{
    struct worker_arg *a = p;
    struct stress *s = a->s;
    unsigned char buf[SV_MAX], val[SV_MAX];
    uint64_t x = (uint64_t)a->id * 7919 + 1, ops = 0, torn = 0, errors = 0;

    while ((ops & 255) != 0 || now_s() < s->until ||
           (s->resize_to != 0 &&
            __atomic_load_n(&s->resizes, __ATOMIC_RELAXED) < MIN_RESIZES)) {
        uint64_t r = mix64(x++);
        uint64_t k = r % s->keys;
        int dice = (int)((r >> 32) % 100);

        if (dice < s->put_pct) {
            size_t n = sv_make(val, k, r);

            errors += pc_put(s->c, &k, sizeof k, val, n) != PC_OK;
        } else if (dice < s->put_pct + s->del_pct) {
            pc_status st = pc_delete(s->c, &k, sizeof k);

            errors += st != PC_OK && st != PC_NOTFOUND;
        } else {
            size_t n = 0;
            pc_status st = pc_get(s->c, &k, sizeof k, buf, sizeof buf, &n);

            if (st == PC_OK)
                torn += !sv_check(buf, n, k);
            else
                errors += st != PC_NOTFOUND;
        }
        ops++;
    }
    s->ops[a->id] = ops;
    s->torn[a->id] = torn;
    s->errors[a->id] = errors;
    return NULL;
}

static void *monitor(void *p)
{
    struct stress *s = p;
    size_t cap = s->cap; /* (the largest, if a resizer changes it) */

    while (!__atomic_load_n(&s->stop_monitor, __ATOMIC_ACQUIRE))
        if (pc_len(s->c) > cap)
            __atomic_add_fetch(&s->over_capacity, 1, __ATOMIC_RELAXED);
    return NULL;
}

/* Lower the capacity to s->resize_to and raise it back, again and again
 * (every lowering by 4 or more rebuilds the index tables and the policy's
 * arrays smaller: pc__index_trim), until the workers are done. */
static void *resizer(void *p)
{
    struct stress *s = p;
    size_t cap = s->cap;

    while (!__atomic_load_n(&s->stop_monitor, __ATOMIC_ACQUIRE)) {
        cr_assert_eq(pc_set_capacity(s->c, s->resize_to), PC_OK);
        usleep(2000);
        cr_assert_eq(pc_set_capacity(s->c, cap), PC_OK);
        usleep(2000);
        __atomic_add_fetch(&s->resizes, 1, __ATOMIC_RELAXED);
    }
    return NULL;
}

static void run_stress_ex(size_t cap, uint64_t keys, int put_pct, int del_pct,
                          double seconds, size_t resize_to)
{
    struct stress s = {.keys = keys,
                       .cap = cap,
                       .put_pct = put_pct,
                       .del_pct = del_pct,
                       .resize_to = resize_to};
    struct worker_arg args[WORKERS];
    pthread_t th[WORKERS], mon, rs;
    long live_before;
    uint64_t total = 0;

    pc__alloc_track(1);
    live_before = pc__alloc_live();
    s.c = make_cache(cap);
    cr_assert_not_null(s.c);
    s.until = now_s() + seconds;
    pthread_create(&mon, NULL, monitor, &s);
    if (resize_to != 0)
        pthread_create(&rs, NULL, resizer, &s);
    for (int i = 0; i < WORKERS; i++) {
        args[i] = (struct worker_arg){.s = &s, .id = i};
        pthread_create(&th[i], NULL, worker, &args[i]);
    }
    for (int i = 0; i < WORKERS; i++)
        pthread_join(th[i], NULL);
    __atomic_store_n(&s.stop_monitor, 1, __ATOMIC_RELEASE);
    pthread_join(mon, NULL);
    if (resize_to != 0) {
        pthread_join(rs, NULL);
        cr_assert_geq(s.resizes, MIN_RESIZES, "%lu resizes",
                      (unsigned long)s.resizes);
        cr_assert_eq(pc_capacity(s.c), cap);
    }

    for (int i = 0; i < WORKERS; i++) {
        cr_assert_eq(s.torn[i], 0, "worker %d saw %lu torn values", i,
                     s.torn[i]);
        cr_assert_eq(s.errors[i], 0, "worker %d got %lu errors", i,
                     s.errors[i]);
        total += s.ops[i];
    }
    cr_assert_gt(total, 1000);
    cr_assert_eq(s.over_capacity, 0, "pc_len exceeded capacity %lu times",
                 s.over_capacity);

    /* Quiescent: pc_len is exact and every stored value validates. */
    size_t present = 0;
    for (uint64_t k = 0; k < keys; k++) {
        unsigned char buf[SV_MAX];
        size_t n;

        if (pc_get(s.c, &k, sizeof k, buf, sizeof buf, &n) == PC_OK) {
            present++;
            cr_assert(sv_check(buf, n, k));
        }
    }
    cr_assert_eq(pc_len(s.c), present);
    cr_assert_leq(present, cap);
    pc_destroy(s.c);
    cr_assert_eq(pc_alloc_live_delta(live_before), 0,
                 "allocations leaked by the cache");
    pc__alloc_track(0);
}

static void run_stress(size_t cap, uint64_t keys, int put_pct, int del_pct,
                       double seconds)
{
    run_stress_ex(cap, keys, put_pct, del_pct, seconds, 0);
}

Test(concurrency, mixed_get_put_delete_small_cache)
{
    run_stress(64, 256, 30, 10, 1.5);
}

Test(concurrency, mixed_get_put_delete_sharded_cache)
{
    run_stress(20000, 60000, 20, 5, 1.5);
}

Test(concurrency, read_mostly_with_replacements)
{
    run_stress(1000, 1000, 5, 0, 1.0);
}

Test(concurrency, write_heavy_constant_eviction)
{
    run_stress(100, 100000, 90, 0, 1.0);
}

/* Readers and writers while the capacity drops eightfold and comes back
 * every few milliseconds: every drop rebuilds each shard's index table
 * (readers still in the old one finish there) and the policy's arrays
 * smaller, every rise grows them again. */
Test(concurrency, capacity_lowered_and_raised_while_threads_run)
{
    run_stress_ex(20000, 60000, 20, 5, 1.5, 2500);
}

/* The read path's fallback: a kernel without membarrier(2) (or a seccomp
 * filter refusing it) makes the process fence every read instead. Criterion
 * runs each test in a fresh process, so the hook decides before any cache
 * exists; the TSan shim runs every test in one process, where the decision
 * was taken by an earlier test and only the stress itself runs. */
Test(concurrency, stress_with_fenced_reads_when_membarrier_is_refused)
{
    bool elided = pc__read_fence_setup(true);
#ifndef PC_TSAN_CRITERION_SHIM_H
    cr_assert_not(elided, "the hook ran after the fence mode was decided");
    cr_assert_str_neq(pc_read_fence(), "membarrier");
#else
    (void)elided;
#endif
    run_stress(20000, 60000, 20, 5, 1.0);
    run_stress(100, 100000, 90, 0, 0.5);
}

struct hammer {
    pc_cache *c;
    double until;
    uint64_t torn;
};

static void *hammer_reader(void *p)
{
    struct hammer *h = p;
    uint64_t k = 7, torn = 0, i = 0;
    unsigned char buf[SV_MAX];

    while ((i++ & 255) != 0 || now_s() < h->until) {
        size_t n;

        if (pc_get(h->c, &k, sizeof k, buf, sizeof buf, &n) == PC_OK)
            torn += !sv_check(buf, n, k);
    }
    __atomic_add_fetch(&h->torn, torn, __ATOMIC_RELAXED);
    return NULL;
}

Test(concurrency, one_hot_key_replaced_while_read)
{
    struct hammer h = {.c = make_cache(4)};
    pthread_t th[2];
    unsigned char val[SV_MAX];
    uint64_t k = 7, ver = 0;

    h.until = now_s() + 1.0;
    put_u64(h.c, 1, 1);
    pc_put(h.c, &k, 8, val, sv_make(val, k, ver));
    for (int i = 0; i < 2; i++)
        pthread_create(&th[i], NULL, hammer_reader, &h);
    while (now_s() < h.until) {
        ver++;
        cr_assert_eq(pc_put(h.c, &k, 8, val, sv_make(val, k, ver)), PC_OK);
        if (ver % 64 == 0)
            put_u64(h.c, 1000 + ver, ver); /* evictions too */
    }
    for (int i = 0; i < 2; i++)
        pthread_join(th[i], NULL);
    cr_assert_eq(h.torn, 0);
    pc_destroy(h.c);
}

/* ---- expiry on the default clock (the ticker thread, ticker.h) ---- */

struct ttl_stress {
    pc_cache *c;
    double until;
    uint64_t torn, errors;
};

static void *ttl_worker(void *p)
{
    struct ttl_stress *s = p;
    unsigned char val[SV_MAX], buf[SV_MAX];
    uint64_t x = (uint64_t)pthread_self(), ops = 0, torn = 0, errors = 0;

    while ((ops & 255) != 0 || now_s() < s->until) {
        uint64_t r = mix64(x++), k = r % 512;

        if ((r >> 32) % 4 == 0) {
            pc_put_args a = {.ttl_ms = 1 + (r >> 40) % 20};

            errors +=
                pc_put_ex(s->c, &k, 8, val, sv_make(val, k, r), &a) != PC_OK;
        } else {
            size_t n = 0;
            pc_status st = pc_get(s->c, &k, 8, buf, sizeof buf, &n);

            if (st == PC_OK)
                torn += !sv_check(buf, n, k);
            else
                errors += st != PC_NOTFOUND;
        }
        ops++;
    }
    __atomic_add_fetch(&s->torn, torn, __ATOMIC_RELAXED);
    __atomic_add_fetch(&s->errors, errors, __ATOMIC_RELAXED);
    return NULL;
}

/* Readers and writers of entries that live 1 to 20 ms, on the clock the
 * ticker refreshes; then, once the clock has passed every expiry, nothing
 * is visible and pc_expire removes everything. */
Test(concurrency, entries_expire_on_the_default_clock_while_threads_run)
{
    pc_options o = test_opts(256);
    struct ttl_stress s = {0};
    pthread_t th[WORKERS];
    struct timespec pause = {0, 100 * 1000000};
    size_t left;

    s.c = make_cache_opts(&o);
    s.until = now_s() + 1.0;
    for (int i = 0; i < WORKERS; i++)
        pthread_create(&th[i], NULL, ttl_worker, &s);
    for (int i = 0; i < WORKERS; i++)
        pthread_join(th[i], NULL);
    cr_assert_eq(s.torn, 0);
    cr_assert_eq(s.errors, 0);
    /* Every ttl has run out 20 ms on; the ticker may wait for a CPU. */
    for (int tries = 0;; tries++) {
        uint64_t k = 0;

        while (k < 512 && get_u64(s.c, k, NULL) == PC_NOTFOUND)
            k++;
        if (k == 512)
            break;
        cr_assert_lt(tries, 100, "key %lu still visible after 10 s", k);
        while (nanosleep(&pause, &pause) != 0)
            ;
        pause = (struct timespec){0, 100 * 1000000};
    }
    left = pc_len(s.c);
    cr_assert_eq(pc_expire(s.c), left);
    cr_assert_eq(pc_len(s.c), 0);
    pc_destroy(s.c);
}

static void *ticker_cycler(void *p)
{
    uint64_t *failures = p;

    for (int i = 0; i < 40; i++) {
        pc_options o = test_opts(16);
        pc_cache *c;

        o.ttl_ms = 60000;
        if (pc_create(&o, &c) != PC_OK) {
            (*failures)++;
            continue;
        }
        /* The first expiry starts (or joins) the ticker; destroy stops it
         * when this was its last user. */
        *failures += put_u64(c, 1, 1) != PC_OK || get_u64(c, 1, NULL) != PC_OK;
        pc_destroy(c);
    }
    return NULL;
}

struct starter {
    cpu_set_t cpus;
    pc_cache *c;
    int ok;
};

/* On every CPU the process may use, the first put with a ttl: it starts
 * the ticker. */
static void *start_ticker(void *p)
{
    struct starter *st = p;

    st->ok = sched_setaffinity(0, sizeof st->cpus, &st->cpus) == 0 &&
             put_u64(st->c, 1, 1) == PC_OK;
    return NULL;
}

/* An application that pins its main thread to one CPU must not pin the
 * ticker there too when another thread, free to run anywhere, started it
 * (a review found the ticker taking the main thread's mask alone). */
Test(concurrency, the_ticker_may_run_wherever_its_starter_may)
{
    struct starter st = {0};
    cpu_set_t one, seen;
    pc_options o = test_opts(16);
    pthread_t th;
    pid_t tid = -1;
    int a = -1, b = -1;

    cr_assert_eq(sched_getaffinity(getpid(), sizeof st.cpus, &st.cpus), 0);
    for (int i = 0; i < CPU_SETSIZE && b < 0; i++)
        if (CPU_ISSET(i, &st.cpus)) {
            if (a < 0)
                a = i;
            else
                b = i;
        }
    if (b < 0)
        return; /* one CPU: nothing to tell apart */
    cr_assert_not(pc__ticker_running(), "a ticker from elsewhere");
    o.ttl_ms = 60000;
    cr_assert_eq(pc_create(&o, &st.c), PC_OK);
    CPU_ZERO(&one);
    CPU_SET(a, &one);
    cr_assert_eq(sched_setaffinity(getpid(), sizeof one, &one), 0);
    cr_assert_eq(pthread_create(&th, NULL, start_ticker, &st), 0);
    pthread_join(th, NULL);
    cr_assert(st.ok);
    /* The ticker sets its mask as it starts: wait for it to be seen. */
    for (int i = 0; i < 2000; i++) {
        if (test_ticker_threads(&tid) > 0 &&
            sched_getaffinity(tid, sizeof seen, &seen) == 0 &&
            CPU_ISSET(b, &seen))
            break;
        usleep(1000);
    }
    sched_setaffinity(getpid(), sizeof st.cpus, &st.cpus);
    cr_assert_gt(tid, 0, "no pc-ticker thread");
    cr_assert_eq(sched_getaffinity(tid, sizeof seen, &seen), 0);
    cr_assert(CPU_ISSET(b, &seen),
              "the ticker is kept to the main thread's "
              "CPU %d",
              a);
    pc_destroy(st.c);
}

/* Threads that start and stop the ticker at once, over and over. */
Test(concurrency, the_ticker_starts_and_stops_under_concurrent_caches)
{
    pthread_t th[3];
    uint64_t failures[3] = {0};
    long live_before;

    pc__alloc_track(1);
    live_before = pc__alloc_live();
    for (int i = 0; i < 3; i++)
        pthread_create(&th[i], NULL, ticker_cycler, &failures[i]);
    for (int i = 0; i < 3; i++)
        pthread_join(th[i], NULL);
    for (int i = 0; i < 3; i++)
        cr_assert_eq(failures[i], 0);
    cr_assert(!pc__ticker_running(), "the last cache stopped it");
    cr_assert_eq(pc_alloc_live_delta(live_before), 0);
    pc__alloc_track(0);
}

/* ---- the writer lock (lock.h) ---- */

/* A thread that takes l once, after telling its kernel id. */
struct lock_waiter {
    pc__lock *l;
    long tid;
    int ready, done;
    uint64_t *count;
};

static void *lock_waiter(void *p)
{
    struct lock_waiter *w = p;

    __atomic_store_n(&w->tid, test_gettid(), __ATOMIC_RELAXED);
    __atomic_store_n(&w->ready, 1, __ATOMIC_RELEASE);
    pc__lock_acquire(w->l); /* no system call before it sleeps here */
    (*w->count)++;
    pc__lock_release(w->l);
    __atomic_store_n(&w->done, 1, __ATOMIC_RELEASE);
    return NULL;
}

#define LOCK_SLEEPERS 3

/* Three threads asleep on a held lock (past their spin: the word says
 * "held, maybe waiters" and each is blocked in the kernel) all get it in
 * turn once it is released: each unlock that saw sleepers wakes one, and
 * a woken thread takes the lock still marked as having sleepers, so its
 * own unlock wakes the next. A lost wake-up leaves one asleep for ever:
 * the bounded wait fails (10 s, a deadlock breaker, not a timing). */
Test(concurrency, every_thread_asleep_on_the_writer_lock_gets_it, .timeout = 60)
{
    pc__lock l = PC__LOCK_INIT;
    struct lock_waiter w[LOCK_SLEEPERS];
    pthread_t th[LOCK_SLEEPERS];
    uint64_t count = 0;
    int done = 0;
    bool asleep = false;

    cr_assert(pc__lock_try(&l), "a free lock is not taken");
    cr_assert_not(pc__lock_try(&l), "a held lock is not taken again");
    for (int i = 0; i < LOCK_SLEEPERS; i++) {
        w[i] = (struct lock_waiter){.l = &l, .count = &count};
        cr_assert_eq(pthread_create(&th[i], NULL, lock_waiter, &w[i]), 0);
    }
    for (int i = 0; i < LOCK_SLEEPERS; i++)
        while (!__atomic_load_n(&w[i].ready, __ATOMIC_ACQUIRE))
            sched_yield();
    /* All asleep in the kernel, the word saying so (polled for 10 s at
     * most: a deadlock breaker). */
    for (int ms = 0; !asleep && ms < 10000; ms++) {
        asleep = __atomic_load_n(&l.word, __ATOMIC_RELAXED) == 2;
        for (int i = 0; asleep && i < LOCK_SLEEPERS; i++)
            asleep = test_thread_blocked(
                __atomic_load_n(&w[i].tid, __ATOMIC_RELAXED), 1);
        if (!asleep)
            usleep(1000);
    }
    cr_assert(asleep, "the waiters never slept on a lock marked as having "
                      "sleepers");
    cr_assert_not(pc__lock_try(&l), "a lock with sleepers is not taken");
    pc__lock_release(&l);
    for (int ms = 0; ms < 10000 && done < LOCK_SLEEPERS; ms++) {
        done = 0;
        for (int i = 0; i < LOCK_SLEEPERS; i++)
            done += __atomic_load_n(&w[i].done, __ATOMIC_ACQUIRE);
        if (done < LOCK_SLEEPERS)
            usleep(1000);
    }
    cr_assert_eq(done, LOCK_SLEEPERS, "a sleeper was never woken");
    for (int i = 0; i < LOCK_SLEEPERS; i++)
        pthread_join(th[i], NULL);
    cr_assert_eq(count, LOCK_SLEEPERS);
    cr_assert_eq(l.word, 0, "the lock is left held");
}

struct lock_counter {
    pc__lock l;
    uint64_t count; /* under l, plain */
};

static void *lock_adder(void *p)
{
    struct lock_counter *lc = p;

    for (int i = 0; i < 1000000; i++) {
        pc__lock_acquire(&lc->l);
        lc->count++;
        pc__lock_release(&lc->l);
    }
    return NULL;
}

/* Threads that take one lock over and over (through its spin and its
 * sleep) never hold it at once: no increment made under it is lost (and
 * ThreadSanitizer sees each holder's writes ordered before the next's). */
Test(concurrency, the_writer_lock_has_one_holder_at_a_time, .timeout = 120)
{
    struct lock_counter lc = {PC__LOCK_INIT, 0};
    pthread_t th[WORKERS];

    for (int i = 0; i < WORKERS; i++)
        cr_assert_eq(pthread_create(&th[i], NULL, lock_adder, &lc), 0);
    for (int i = 0; i < WORKERS; i++)
        pthread_join(th[i], NULL);
    cr_assert_eq(lc.count, (uint64_t)WORKERS * 1000000);
    cr_assert_eq(lc.l.word, 0, "the lock is left held");
}
