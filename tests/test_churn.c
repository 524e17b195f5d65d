/*
 * Thread churn: hundreds of short-lived threads register with a cache, use
 * it and exit, while long-lived readers keep reading.
 *
 * How. A record is allocated the first time a thread calls into a cache and
 * handed back when it exits, for the next new thread to recycle. So with at
 * most W churning threads alive at once, plus the readers and the main
 * thread, the records allocated must stay bounded by that number however
 * many threads come and go: after WAVES x W threads, the live allocations
 * beyond the primed, empty cache are at most W + READERS + 1 records plus
 * what the entries account for. Reclamation must not stall while readers
 * stay busy: pc_reclaim (which waits for a grace period) is called by
 * churning threads and, with the readers still running, by the main thread,
 * after which the only live entries are the cache's own. Every read checks
 * its value (testlib.h's self-validating values). After destroy, allocations
 * return to the baseline. A missed record release, a leaked entry or a
 * grace period that never ends fails an assertion (or hits ctest's timeout).
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <unistd.h>

#include "alloc.h"
#include "testlib.h"

#define W 4 /* churning threads alive at once */
#define WAVES 100
#define READERS 2
#define KEYS 512
#define CAP 256

struct churn {
    pc_cache *c;
    int stop;
    int reading; /* readers that have made their first read */
    uint64_t reads, bad;
};

static void *reader(void *p)
{
    struct churn *ch = p;
    unsigned char buf[SV_MAX];
    uint64_t x = (uint64_t)(uintptr_t)&buf, reads = 0, bad = 0;

    while (!__atomic_load_n(&ch->stop, __ATOMIC_RELAXED)) {
        uint64_t k = mix64(x++) % KEYS;
        size_t n = 0;

        if (pc_get(ch->c, &k, sizeof k, buf, sizeof buf, &n) == PC_OK)
            bad += !sv_check(buf, n, k);
        if (reads++ == 0)
            __atomic_fetch_add(&ch->reading, 1, __ATOMIC_RELEASE);
    }
    __atomic_fetch_add(&ch->reads, reads, __ATOMIC_RELAXED);
    __atomic_fetch_add(&ch->bad, bad, __ATOMIC_RELAXED);
    return NULL;
}

struct churner_arg {
    struct churn *ch;
    uint64_t id;
};

static void *churner(void *p)
{
    struct churner_arg *a = p;
    pc_cache *c = a->ch->c;
    unsigned char buf[SV_MAX];
    uint64_t bad = 0;

    for (uint64_t i = 0; i < 16; i++) {
        uint64_t k = mix64(a->id * 16 + i) % KEYS;
        size_t n = sv_make(buf, k, a->id * 16 + i);

        pc_put(c, &k, sizeof k, buf, n);
        k = mix64(k) % KEYS;
        if (pc_get(c, &k, sizeof k, buf, sizeof buf, &n) == PC_OK)
            bad += !sv_check(buf, n, k);
        if (i % 5 == 0)
            pc_delete(c, &k, sizeof k);
    }
    if (a->id % 16 == 0)
        pc_reclaim(c);
    __atomic_fetch_add(&a->ch->bad, bad, __ATOMIC_RELAXED);
    return NULL;
}

static void fill(pc_cache *c)
{
    unsigned char buf[SV_MAX];

    for (uint64_t k = 0; k < KEYS; k++) {
        size_t n = sv_make(buf, k, 0);

        pc_put(c, &k, sizeof k, buf, n);
    }
}

Test(churn, exiting_threads_recycle_records_while_readers_run)
{
    struct churn ch = {0};
    pthread_t rd[READERS];
    long base, primed, after;

    pc__alloc_track(1);
    base = pc__alloc_live();
    ch.c = make_cache(CAP);
    cr_assert_not_null(ch.c);
    /* Prime: grow every structure once, register the main thread. */
    fill(ch.c);
    pc_clear(ch.c);
    pc_reclaim(ch.c);
    primed = pc__alloc_live();

    for (int i = 0; i < READERS; i++)
        pthread_create(&rd[i], NULL, reader, &ch);
    /* The churn must overlap running readers: on a loaded machine the waves
     * can otherwise end before a reader is first scheduled. */
    for (int spins = 0;
         __atomic_load_n(&ch.reading, __ATOMIC_ACQUIRE) < READERS; spins++) {
        cr_assert_lt(spins, 100000, "readers never started");
        usleep(100);
    }
    for (uint64_t wave = 0; wave < WAVES; wave++) {
        pthread_t th[W];
        struct churner_arg args[W];

        for (int i = 0; i < W; i++) {
            args[i] = (struct churner_arg){&ch, wave * W + (uint64_t)i};
            cr_assert_eq(pthread_create(&th[i], NULL, churner, &args[i]), 0);
        }
        for (int i = 0; i < W; i++)
            pthread_join(th[i], NULL);
    }

    /* Readers still running: a grace period must still end. */
    pc_clear(ch.c);
    pc_reclaim(ch.c);
    after = pc__alloc_live();
    /* Per thread record: the record, and for exact LRU its access log;
     * and for exact LRU one block more, the merge heap of the logs (one
     * slot a log, regrown as they grow: one block live at a time). */
    long per = is_lru() ? 2 : 1, most = per * (W + READERS) + is_lru();

    cr_assert_leq(after - primed, most,
                  "%ld allocations beyond the primed cache after %d threads "
                  "(at most %ld records, with their logs, may be new)",
                  after - primed, WAVES * W, most);

    __atomic_store_n(&ch.stop, 1, __ATOMIC_RELAXED);
    for (int i = 0; i < READERS; i++)
        pthread_join(rd[i], NULL);
    cr_assert_eq(ch.bad, 0, "%lu reads returned a wrong value",
                 (unsigned long)ch.bad);
    cr_assert_gt(ch.reads, 0);
    pc_destroy(ch.c);
    cr_assert_eq(pc__alloc_live(), base, "%ld allocations leaked",
                 pc__alloc_live() - base);
    pc__alloc_track(0);
}

static void *use_two_caches(void *p)
{
    pc_cache **cs = p;

    for (uint64_t k = 0; k < 8; k++) {
        put_u64(cs[0], k, k);
        get_u64(cs[1], k, NULL);
    }
    return NULL;
}

Test(churn, threads_using_several_caches_release_every_record)
{
    pc_cache *cs[2];
    long base;

    pc__alloc_track(1);
    base = pc__alloc_live();
    cs[0] = make_cache(64);
    cs[1] = make_cache(64);
    for (int i = 0; i < 200; i++) {
        pthread_t th;

        pthread_create(&th, NULL, use_two_caches, cs);
        pthread_join(th, NULL);
        if (i == 100) { /* replace a cache between two threads' lives */
            pc_destroy(cs[1]);
            cs[1] = make_cache(64);
        }
    }
    pc_destroy(cs[0]);
    pc_destroy(cs[1]);
    cr_assert_eq(pc__alloc_live(), base);
    pc__alloc_track(0);
}
