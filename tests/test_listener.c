/*
 * The removal listener: called exactly once for every entry that leaves
 * the cache, for every cause, with the entry's own key and value, on the
 * thread whose call removed it, after that call has released its locks
 * (the listener can call the cache), never for pc_destroy, and never
 * recursively: a listener's own puts are reported by the same loop.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <unistd.h>

#include "core.h"
#include "testlib.h"

#define MAXLOG 4096

struct event {
    uint64_t key, val;
    pc_removal_cause cause;
};

struct log {
    pc_cache *c; /* set after create, for listeners that call the cache */
    struct event ev[MAXLOG];
    size_t n;
    int depth, max_depth;
    pthread_t thread;
    bool wrong_thread;
    int reput; /* re-put evicted keys this many times */
};

static void record(void *ctx, const void *key, size_t klen, const void *val,
                   size_t vlen, pc_removal_cause cause)
{
    struct log *l = ctx;
    struct event e = {0};

    cr_assert_eq(klen, 8);
    memcpy(&e.key, key, 8);
    if (vlen == 8)
        memcpy(&e.val, val, 8);
    e.cause = cause;
    if (l->n < MAXLOG)
        l->ev[l->n++] = e;
    if (!pthread_equal(l->thread, pthread_self()))
        l->wrong_thread = true;
}

static pc_cache *make_listened(size_t cap, struct log *l, uint64_t ttl)
{
    pc_options o = test_opts(cap);

    memset(l, 0, sizeof *l);
    l->thread = pthread_self();
    o.on_removal = record;
    o.removal_ctx = l;
    o.ttl_ms = ttl;
    o.now_ms = test_now;
    o.shards = 1;
    l->c = make_cache_opts(&o);
    return l->c;
}

static size_t count(const struct log *l, uint64_t key, pc_removal_cause cause)
{
    size_t n = 0;

    for (size_t i = 0; i < l->n; i++)
        n += l->ev[i].key == key && l->ev[i].cause == cause;
    return n;
}

Test(listener, every_cause_is_reported_once_with_the_entry)
{
    struct log l;
    pc_cache *c = make_listened(3, &l, 0);
    pc_put_args ttl = {.ttl_ms = 5};
    uint64_t k = 4, v = 40;

    put_u64(c, 1, 10);
    put_u64(c, 1, 11); /* replaces 10 */
    cr_assert_eq(count(&l, 1, PC_REMOVED_REPLACED), 1);
    cr_assert_eq(l.ev[0].val, 10, "the listener saw the new value");
    pc_delete(c, &(uint64_t){1}, 8);
    cr_assert_eq(count(&l, 1, PC_REMOVED_DELETED), 1);
    cr_assert_eq(l.ev[1].val, 11);
    pc_put_ex(c, &k, 8, &v, 8, &ttl);
    test_advance(5);
    cr_assert_eq(pc_expire(c), 1);
    cr_assert_eq(count(&l, 4, PC_REMOVED_EXPIRED), 1);
    for (uint64_t i = 10; i < 14; i++) /* 4 puts, capacity 3 */
        put_u64(c, i, i);
    cr_assert_eq(count(&l, 10, PC_REMOVED_EVICTED), 1, "no eviction seen");
    pc_clear(c);
    for (uint64_t i = 11; i < 14; i++)
        cr_assert_eq(count(&l, i, PC_REMOVED_CLEARED), 1);
    cr_assert_eq(l.n, 7);
    cr_assert_not(l.wrong_thread);
    put_u64(c, 99, 99);
    pc_destroy(c); /* never reported */
    cr_assert_eq(l.n, 7);
}

Test(listener, shrinking_a_limit_reports_evictions)
{
    struct log l;
    pc_cache *c = make_listened(10, &l, 0);

    for (uint64_t i = 0; i < 10; i++)
        put_u64(c, i, i);
    pc_set_capacity(c, 4);
    cr_assert_eq(l.n, 6);
    for (size_t i = 0; i < l.n; i++)
        cr_assert_eq(l.ev[i].cause, PC_REMOVED_EVICTED);
    pc_set_max_bytes(c, 16);
    cr_assert_eq(l.n, 9);
    pc_destroy(c);
}

/* A listener that writes to its own cache: re-puts what was evicted,
 * a bounded number of times, and reads. */
static void reputting(void *ctx, const void *key, size_t klen, const void *val,
                      size_t vlen, pc_removal_cause cause)
{
    struct log *l = ctx;

    record(ctx, key, klen, val, vlen, cause);
    l->depth++;
    if (l->depth > l->max_depth)
        l->max_depth = l->depth;
    if (cause == PC_REMOVED_EVICTED && l->reput > 0) {
        uint64_t k;

        l->reput--;
        memcpy(&k, key, 8);
        cr_assert_eq(get_u64(l->c, k, NULL), PC_NOTFOUND);
        cr_assert_eq(pc_put(l->c, key, klen, val, vlen), PC_OK);
    }
    l->depth--;
}

Test(listener, a_listener_that_puts_neither_deadlocks_nor_recurses)
{
    struct log l;
    pc_options o = test_opts(2);

    memset(&l, 0, sizeof l);
    l.thread = pthread_self();
    l.reput = 50;
    o.on_removal = reputting;
    o.removal_ctx = &l;
    o.shards = 1;
    l.c = make_cache_opts(&o);
    put_u64(l.c, 1, 1);
    put_u64(l.c, 2, 2);
    put_u64(l.c, 3, 3); /* evicts one; the listener puts it back, ... */
    cr_assert_eq(l.max_depth, 1, "the listener was called recursively");
    cr_assert_eq(l.reput, 0);
    cr_assert_eq(l.n, 51, "%zu reports for 51 evictions", l.n);
    cr_assert_eq(pc_len(l.c), 2);
    pc_destroy(l.c);
}

/* A listener that writes to its own cache with other causes than
 * eviction: on key 1's eviction it replaces key 100, and on that
 * replacement's report it deletes key 101 and clears nothing else. */
static void rewriting(void *ctx, const void *key, size_t klen, const void *val,
                      size_t vlen, pc_removal_cause cause)
{
    struct log *l = ctx;
    uint64_t k;

    record(ctx, key, klen, val, vlen, cause);
    memcpy(&k, key, 8);
    if (k == 1 && cause == PC_REMOVED_EVICTED)
        cr_assert_eq(put_u64(l->c, 100, 1001), PC_OK);
    else if (k == 100 && cause == PC_REMOVED_REPLACED)
        cr_assert_eq(pc_delete(l->c, &(uint64_t){101}, 8), PC_OK);
}

/* pc_removal_fn: called "for every cause above" and PC_REMOVED_REPLACED /
 * PC_REMOVED_DELETED name "a put of the same key replaced its value" /
 * "pc_delete": the removals a listener's own writes cause, reported "after
 * this call returns, in a loop", keep their causes and values (a mutation
 * that reported the first of them, queued while the loop had nothing left,
 * as an eviction passed every suite). */
Test(listener, a_listeners_own_writes_are_reported_with_their_causes)
{
    struct log l;
    pc_options o = test_opts(3);

    memset(&l, 0, sizeof l);
    l.thread = pthread_self();
    o.on_removal = rewriting;
    o.removal_ctx = &l;
    o.shards = 1;
    l.c = make_cache_opts(&o);
    put_u64(l.c, 100, 1000);
    put_u64(l.c, 101, 1010);
    /* LRU: make 1 the least recently used; CLOCK: 100 and 101 referenced
     * (frequency: used twice, past probation) so that 1 is the victim. */
    put_u64(l.c, 1, 10);
    for (int i = 0; i < 2; i++) {
        cr_assert_eq(get_u64(l.c, 100, NULL), PC_OK);
        cr_assert_eq(get_u64(l.c, 101, NULL), PC_OK);
    }
    put_u64(l.c, 2, 20); /* evicts 1 */
    cr_assert_eq(l.n, 3, "%zu reports", l.n);
    cr_assert_eq(l.ev[0].key, 1);
    cr_assert_eq(l.ev[0].cause, PC_REMOVED_EVICTED);
    cr_assert_eq(l.ev[0].val, 10);
    cr_assert_eq(l.ev[1].key, 100);
    cr_assert_eq(l.ev[1].cause, PC_REMOVED_REPLACED, "cause %d",
                 (int)l.ev[1].cause);
    cr_assert_eq(l.ev[1].val, 1000);
    cr_assert_eq(l.ev[2].key, 101);
    cr_assert_eq(l.ev[2].cause, PC_REMOVED_DELETED, "cause %d",
                 (int)l.ev[2].cause);
    cr_assert_eq(l.ev[2].val, 1010);
    cr_assert_not(l.wrong_thread);
    pc_destroy(l.c);
}

/* A listener that, on the first report of a pc_clear, puts key 100 three
 * times: two replacements, queued while the clear's other removals still
 * wait to be reported. */
static void clear_then_replacing(void *ctx, const void *key, size_t klen,
                                 const void *val, size_t vlen,
                                 pc_removal_cause cause)
{
    struct log *l = ctx;

    record(ctx, key, klen, val, vlen, cause);
    if (l->n == 1 && cause == PC_REMOVED_CLEARED)
        for (uint64_t v = 1000; v < 1003; v++)
            cr_assert_eq(put_u64(l->c, 100, v), PC_OK);
}

/* write.h: a listener's own writes append their removals to the report
 * running on the thread, which the loop reports "in turn": after the
 * removals already queued, in the order the writes made them (a mutation
 * that put them at the head of the queue, reporting them before the
 * clear's other entries and the two replacements in reverse, passed
 * every suite). */
Test(listener, a_listeners_own_removals_are_reported_after_those_queued)
{
    struct log l;
    pc_options o = test_opts(8);

    memset(&l, 0, sizeof l);
    l.thread = pthread_self();
    o.on_removal = clear_then_replacing;
    o.removal_ctx = &l;
    o.shards = 1;
    l.c = make_cache_opts(&o);
    for (uint64_t k = 1; k <= 4; k++)
        put_u64(l.c, k, k * 10);
    pc_clear(l.c);
    cr_assert_eq(l.n, 6, "%zu reports", l.n);
    for (size_t i = 0; i < 4; i++) {
        cr_assert_eq(l.ev[i].cause, PC_REMOVED_CLEARED, "report %zu: cause %d",
                     i, (int)l.ev[i].cause);
        cr_assert(l.ev[i].key >= 1 && l.ev[i].key <= 4);
        cr_assert_eq(l.ev[i].val, l.ev[i].key * 10);
    }
    for (size_t i = 4; i < 6; i++) {
        cr_assert_eq(l.ev[i].cause, PC_REMOVED_REPLACED, "report %zu: cause %d",
                     i, (int)l.ev[i].cause);
        cr_assert_eq(l.ev[i].key, 100);
        cr_assert_eq(l.ev[i].val, 1000 + (i - 4), "report %zu: value %llu", i,
                     (unsigned long long)l.ev[i].val);
    }
    cr_assert_eq(pc_len(l.c), 1);
    cr_assert_not(l.wrong_thread);
    pc_destroy(l.c);
}

/* A listener of one cache that writes to another: on each of its first two
 * reports it puts the removed key into other_cache, whose own listener
 * (record) must see what leaves other_cache. */
static pc_cache *other_cache;

static void forwarding(void *ctx, const void *key, size_t klen, const void *val,
                       size_t vlen, pc_removal_cause cause)
{
    struct log *l = ctx;

    record(ctx, key, klen, val, vlen, cause);
    if (l->n <= 2) /* (bounded: a wrong report could loop) */
        cr_assert_eq(pc_put(other_cache, key, klen, val, vlen), PC_OK);
}

/* write.h: only a listener's writes to the cache being reported join that
 * report; a write to another cache from inside a listener is reported by
 * that cache's own listener, with its own causes (a mutation that let
 * every write inside a listener join the running report, so that the
 * first cache's listener was called for the second cache's removals,
 * which were retired to the first cache's reclaimer, passed every
 * suite). */
Test(listener, a_listeners_writes_to_another_cache_go_to_its_listener)
{
    struct log la, lb;
    pc_options o = test_opts(1);
    pc_cache *a;

    other_cache = make_listened(1, &lb, 0);
    memset(&la, 0, sizeof la);
    la.thread = pthread_self();
    o.on_removal = forwarding;
    o.removal_ctx = &la;
    o.shards = 1;
    a = make_cache_opts(&o);
    put_u64(other_cache, 7, 70);
    put_u64(a, 1, 10);
    put_u64(a, 2, 20); /* evicts 1 from a; a's listener puts 1 into b,
                          evicting 7 from b */
    cr_assert_eq(la.n, 1, "a's listener: %zu reports", la.n);
    cr_assert_eq(la.ev[0].key, 1);
    cr_assert_eq(la.ev[0].cause, PC_REMOVED_EVICTED);
    cr_assert_eq(lb.n, 1, "b's listener: %zu reports", lb.n);
    cr_assert_eq(lb.ev[0].key, 7);
    cr_assert_eq(lb.ev[0].val, 70);
    cr_assert_eq(lb.ev[0].cause, PC_REMOVED_EVICTED);
    pc_delete(a, &(uint64_t){2}, 8); /* a: 2 deleted; b: 1 replaced */
    cr_assert_eq(la.n, 2);
    cr_assert_eq(la.ev[1].key, 2);
    cr_assert_eq(la.ev[1].cause, PC_REMOVED_DELETED);
    cr_assert_eq(lb.n, 2);
    cr_assert_eq(lb.ev[1].key, 1);
    cr_assert_eq(lb.ev[1].cause, PC_REMOVED_EVICTED);
    cr_assert_not(la.wrong_thread);
    cr_assert_not(lb.wrong_thread);
    pc_destroy(a);
    pc_destroy(other_cache);
}

/* Concurrent writers: every entry that leaves is reported exactly once,
 * so puts of new keys = reports of evictions/deletes/... + what is left. */
struct tally {
    uint64_t removed;
};

static void tally(void *ctx, const void *key, size_t klen, const void *val,
                  size_t vlen, pc_removal_cause cause)
{
    struct tally *t = ctx;

    (void)key, (void)klen, (void)val, (void)vlen, (void)cause;
    __atomic_add_fetch(&t->removed, 1, __ATOMIC_RELAXED);
}

struct writer {
    pc_cache *c;
    uint64_t base;
};

static void *write_keys(void *p)
{
    struct writer *w = p;

    for (uint64_t i = 0; i < 20000; i++) {
        uint64_t k = w->base + i;

        put_u64(w->c, k, k);
        if (i % 5 == 0)
            pc_delete(w->c, &k, 8);
    }
    return NULL;
}

Test(listener, concurrent_removals_are_each_reported_once)
{
    struct tally t = {0};
    pc_options o = test_opts(300);
    struct writer w[3];
    pthread_t th[3];

    pc_cache *c;

    o.on_removal = tally;
    o.removal_ctx = &t;
    c = make_cache_opts(&o);
    for (int i = 0; i < 3; i++)
        w[i] = (struct writer){c, (uint64_t)i << 32};
    for (int i = 0; i < 3; i++)
        pthread_create(&th[i], NULL, write_keys, &w[i]);
    for (int i = 0; i < 3; i++)
        pthread_join(th[i], NULL);
    /* 60000 distinct keys put; what is not in the cache was reported. */
    cr_assert_eq(t.removed + pc_len(c), 60000, "%lu + %zu != 60000",
                 (unsigned long)t.removed, pc_len(c));
    pc_destroy(c);
}

/* Readers of one key that a writer keeps replacing under a listener, each
 * entry expiring in 11.6 days (a near time, in the entry's header,
 * entry.h): the listener's queue reuses the header of every replaced entry
 * while readers may still be reading it. A reader that meets one must look
 * the key up again: it never misses the key and always reads one of the
 * values put. The writer starts once every reader has read (readers that
 * get no CPU until the last put would otherwise read nothing at all). */
#define READERS 2

struct replacing {
    pc_cache *c;
    uint64_t puts;
    bool stop;
    unsigned int ready; /* readers that have read once */
    uint64_t misses, wrong, reads, failed_puts;
};

static void *replace_one_key(void *p)
{
    struct replacing *r = p;
    pc_put_args a = {.ttl_ms = 1000000000}; /* 11.6 days: near (entry.h) */
    uint64_t k = 7;

    while (__atomic_load_n(&r->ready, __ATOMIC_ACQUIRE) < READERS)
        sched_yield();
    for (uint64_t i = 1; i <= r->puts; i++)
        if (pc_put_ex(r->c, &k, sizeof k, &i, sizeof i, &a) != PC_OK)
            r->failed_puts++; /* (asserted by the test's thread) */
    __atomic_store_n(&r->stop, true, __ATOMIC_RELEASE);
    return NULL;
}

static void *read_one_key(void *p)
{
    struct replacing *r = p;
    uint64_t misses = 0, wrong = 0, reads = 0;

    while (!__atomic_load_n(&r->stop, __ATOMIC_ACQUIRE)) {
        uint64_t v = 0;

        if (get_u64(r->c, 7, &v) != PC_OK)
            misses++;
        else if (v == 0 || v > r->puts)
            wrong++;
        if (reads++ == 0)
            __atomic_add_fetch(&r->ready, 1, __ATOMIC_RELEASE);
    }
    __atomic_add_fetch(&r->misses, misses, __ATOMIC_RELAXED);
    __atomic_add_fetch(&r->wrong, wrong, __ATOMIC_RELAXED);
    __atomic_add_fetch(&r->reads, reads, __ATOMIC_RELAXED);
    return NULL;
}

static void replaced_under_readers(bool own_clock)
{
    struct tally t = {0};
    struct replacing r = {.puts = 200000};
    pc_options o = test_opts(64);
    pthread_t th[1 + READERS];
    uint64_t k = 7, first = r.puts; /* a value the readers accept */
    pc_put_args a = {.ttl_ms = 1000000000};

    o.on_removal = tally;
    o.removal_ctx = &t;
    if (own_clock)
        o.now_ms = test_now; /* (else the default clock: the ticker's) */
    r.c = make_cache_opts(&o);
    cr_assert_eq(pc_put_ex(r.c, &k, sizeof k, &first, sizeof first, &a), PC_OK);
    /* Readers on the default clock take the ticker's time (core.h's
     * shortcut), the others call the cache's clock. */
    cr_assert_eq(r.c->vis == &pc__ticker_clock.vis, !own_clock);
    for (int i = 1; i <= READERS; i++)
        cr_assert_eq(pthread_create(&th[i], NULL, read_one_key, &r), 0);
    cr_assert_eq(pthread_create(&th[0], NULL, replace_one_key, &r), 0);
    for (int i = 0; i <= READERS; i++)
        pthread_join(th[i], NULL);
    cr_assert_eq(r.failed_puts, 0);
    cr_assert_eq(r.misses, 0, "%lu of %lu reads missed a present key",
                 (unsigned long)r.misses, (unsigned long)r.reads);
    cr_assert_eq(r.wrong, 0, "%lu reads saw a value never put",
                 (unsigned long)r.wrong);
    cr_assert_eq(t.removed, r.puts, "every replaced entry reported once");
    cr_assert(r.reads >= READERS); /* (the writer waited for them) */
    pc_destroy(r.c);
}

/* Readers take two paths to an expiry time: the default clock's (the
 * ticker's time, no call) and any other clock's. */
Test(listener, readers_of_a_key_replaced_under_a_listener_never_miss_it)
{
    replaced_under_readers(true);
}

Test(listener, the_same_on_the_default_clock)
{
    replaced_under_readers(false);
}

/* A listener is not a cancellation point of the library's (purecache.h,
 * "Cancellation"): a listener that reaches one (here usleep, as a logging
 * call might) while a cancellation is pending must not end the thread
 * inside the write. The put returns and its evicted entry is reported and
 * retired. Before the fix the thread ended inside the listener: the put
 * never returned and the entries still queued for the listener were never
 * retired (a leak, and pc_set_max_bytes left its settling count raised).
 * After the put the thread disables cancellation and returns, leaving the
 * request unacted upon: acting on it (pthread_testcancel) unwinds the
 * thread, which ASan then misreports as a stack overflow in its own
 * sigaltstack at thread exit. */
struct cancelled_put {
    pc_cache *c;
    int calls;
    bool returned;
    pc_status st;
};

static void sleepy_listener(void *ctx, const void *key, size_t klen,
                            const void *val, size_t vlen,
                            pc_removal_cause cause)
{
    struct cancelled_put *p = ctx;

    (void)key, (void)klen, (void)val, (void)vlen, (void)cause;
    p->calls++;
    usleep(1); /* a cancellation point */
}

static void *put_with_cancel_pending(void *arg)
{
    struct cancelled_put *p = arg;

    pthread_cancel(pthread_self()); /* pending (deferred cancellation) */
    p->st = put_u64(p->c, 2, 2);    /* evicts key 1: the listener runs */
    p->returned = true;
    pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, NULL);
    return NULL;
}

Test(listener, a_listener_is_not_a_cancellation_point)
{
    struct cancelled_put p = {0};
    pc_options o = test_opts(1);
    pthread_t th;
    void *ret;
    uint64_t v = 0;
    pc_stats s;

    o.on_removal = sleepy_listener;
    o.removal_ctx = &p;
    cr_assert_eq(pc_create(&o, &p.c), PC_OK);
    cr_assert_eq(put_u64(p.c, 1, 1), PC_OK);
    cr_assert_eq(pthread_create(&th, NULL, put_with_cancel_pending, &p), 0);
    cr_assert_eq(pthread_join(th, &ret), 0);
    cr_assert(p.returned, "the thread ended inside pc_put's listener");
    cr_assert_null(ret);
    cr_assert_eq(p.st, PC_OK);
    cr_assert_eq(p.calls, 1);
    cr_assert_eq(get_u64(p.c, 2, &v), PC_OK);
    cr_assert_eq(v, 2);
    cr_assert_eq(pc_len(p.c), 1);
    pc_reclaim(p.c); /* the evicted entry was retired: now freed */
    pc_stats_get(p.c, &s);
    cr_assert_eq(s.pending, 0);
    pc_destroy(p.c);
}

/* The cancellation state a listener ran with: disabled (the state is
 * queried by setting it to what it already is). */
static int listener_cancel_state = -1;

static void state_listener(void *ctx, const void *key, size_t klen,
                           const void *val, size_t vlen, pc_removal_cause cause)
{
    (void)ctx, (void)key, (void)klen, (void)val, (void)vlen, (void)cause;
    pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &listener_cancel_state);
}

/* purecache.h, "Cancellation": a request that arrives during a call "is
 * acted upon at the caller's next cancellation point after the call
 * returns": the listener runs with cancellation disabled, and the caller
 * gets back its own state afterwards, enabled or disabled (a mutation that
 * left cancellation disabled after the report, so that a pending request
 * was never acted upon, passed every suite). No thread is cancelled. */
Test(listener, a_report_restores_the_callers_cancellation_state)
{
    pc_options o = test_opts(1);
    pc_cache *c;
    int old = -1;

    o.on_removal = state_listener;
    c = make_cache_opts(&o);
    for (int disabled = 0; disabled < 2; disabled++) {
        int mine = disabled ? PTHREAD_CANCEL_DISABLE : PTHREAD_CANCEL_ENABLE;

        cr_assert_eq(pthread_setcancelstate(mine, NULL), 0);
        listener_cancel_state = -1;
        cr_assert_eq(put_u64(c, (uint64_t)disabled + 1, 1), PC_OK);
        cr_assert_eq(put_u64(c, (uint64_t)disabled + 10, 1), PC_OK);
        cr_assert_eq(listener_cancel_state, PTHREAD_CANCEL_DISABLE,
                     "the listener ran with cancellation enabled");
        cr_assert_eq(pthread_setcancelstate(PTHREAD_CANCEL_ENABLE, &old), 0);
        cr_assert_eq(old, mine, "the caller's state was %s, then %s",
                     disabled ? "disabled" : "enabled",
                     old == PTHREAD_CANCEL_DISABLE ? "disabled" : "enabled");
    }
    pc_destroy(c);
}

/* A listener "may call the cache", pc_get_or_load included, also when the
 * removal it hears of comes from a get-or-load's store. Capacity 1: the
 * load of 2 evicts 1; the listener re-loads 1 (its store evicts 2,
 * reported in turn), and that listener re-loads 2. The removals used to
 * be reported before the load's flight ended: the second re-load joined
 * its own thread's flight for 2 and got PC_EDEADLK (found by helper-65). */
struct refresher {
    pc_cache *c;
    int reloads;
    pc_status worst;
};

static int key_loader(void *ctx, const void *key, size_t klen, pc_sink *out)
{
    (void)ctx;
    return pc_sink_set(out, key, klen) == PC_OK ? 0 : 1;
}

static void refreshing_listener(void *ctx, const void *key, size_t klen,
                                const void *val, size_t vlen,
                                pc_removal_cause cause)
{
    struct refresher *r = ctx;
    char buf[8];
    size_t n;
    pc_status st;

    (void)val, (void)vlen;
    if (cause != PC_REMOVED_EVICTED || r->reloads >= 2)
        return;
    r->reloads++;
    st = pc_get_or_load(r->c, key, klen, key_loader, NULL, buf, sizeof buf, &n,
                        NULL);
    if (st != PC_OK)
        r->worst = st;
}

Test(listener, a_listener_may_reload_what_a_load_evicted)
{
    struct refresher r = {0};
    pc_options o = test_opts(1);
    uint64_t k = 2;
    char buf[8];
    size_t n;

    o.on_removal = refreshing_listener;
    o.removal_ctx = &r;
    r.c = make_cache_opts(&o);
    cr_assert_eq(put_u64(r.c, 1, 1), PC_OK);
    cr_assert_eq(
        pc_get_or_load(r.c, &k, 8, key_loader, NULL, buf, sizeof buf, &n, NULL),
        PC_OK);
    cr_assert_eq(r.reloads, 2);
    cr_assert_eq(r.worst, PC_OK, "a listener's pc_get_or_load returned %s",
                 pc_strerror(r.worst));
    pc_destroy(r.c);
}

/* A get-or-load waits for another thread's loader of the same key "for as
 * long as it runs" (purecache.h), not for that thread's removal listener:
 * here the listener of the removal the load's store makes waits until the
 * waiter has returned (5 s at most, a deadlock breaker, not a timing
 * target). The waiters used to be woken after the listener returned: it
 * waited the 5 s in vain (found by helper-65). The loader returns once the
 * waiter has missed, and a little later, so that it has joined the flight
 * (had it not, it would find the value stored and pass either way). */
struct waited {
    pc_cache *c;
    int loader_in, waiter_done, listener_saw_it;
};

static void waiting_listener(void *ctx, const void *key, size_t klen,
                             const void *val, size_t vlen,
                             pc_removal_cause cause)
{
    struct waited *wt = ctx;

    (void)key, (void)klen, (void)val, (void)vlen, (void)cause;
    for (int i = 0; i < 5000; i++) {
        if (__atomic_load_n(&wt->waiter_done, __ATOMIC_ACQUIRE)) {
            wt->listener_saw_it = 1;
            return;
        }
        usleep(1000);
    }
}

static int joined_loader(void *ctx, const void *key, size_t klen, pc_sink *out)
{
    struct waited *wt = ctx;
    pc_stats s;

    (void)key, (void)klen;
    __atomic_store_n(&wt->loader_in, 1, __ATOMIC_RELEASE);
    do { /* the leader's miss and the waiter's */
        sched_yield();
        cr_assert_eq(pc_stats_get(wt->c, &s), PC_OK);
    } while (s.misses < 2);
    usleep(20000);
    return pc_sink_set(out, "v", 1) == PC_OK ? 0 : 1;
}

static void *wait_for_load(void *p)
{
    struct waited *wt = p;
    uint64_t k = 2;
    char buf[8];
    size_t n;

    while (!__atomic_load_n(&wt->loader_in, __ATOMIC_ACQUIRE))
        sched_yield();
    cr_assert_eq(pc_get_or_load(wt->c, &k, 8, joined_loader, wt, buf,
                                sizeof buf, &n, NULL),
                 PC_OK);
    __atomic_store_n(&wt->waiter_done, 1, __ATOMIC_RELEASE);
    return NULL;
}

Test(listener, a_load_waiter_does_not_wait_for_the_leaders_listener,
     .timeout = 60)
{
    struct waited wt = {0};
    pc_options o = test_opts(1);
    uint64_t k = 2;
    char buf[8];
    size_t n;
    pthread_t th;

    o.on_removal = waiting_listener;
    o.removal_ctx = &wt;
    wt.c = make_cache_opts(&o);
    cr_assert_eq(put_u64(wt.c, 1, 1), PC_OK); /* the load's store evicts it */
    /* This thread leads; the waiter begins once the loader runs. */
    cr_assert_eq(pthread_create(&th, NULL, wait_for_load, &wt), 0);
    cr_assert_eq(pc_get_or_load(wt.c, &k, 8, joined_loader, &wt, buf,
                                sizeof buf, &n, NULL),
                 PC_OK);
    pthread_join(th, NULL);
    cr_assert(wt.listener_saw_it,
              "the waiter returned only after the leader's listener");
    pc_destroy(wt.c);
}

/* Every entry a report hands the listener is freed afterwards, however
 * many one call removes: a clear, a lowered capacity, evicting puts, and
 * nothing the cache allocated is left once it is destroyed. */
Test(listener, every_reported_entry_is_freed)
{
    struct log l;
    pc_cache *c;
    long before;

    pc__alloc_track(1);
    before = pc__alloc_live();
    c = make_listened(100, &l, 0);
    for (uint64_t k = 0; k < 150; k++) /* 50 evictions */
        put_u64(c, k, k);
    cr_assert_eq(pc_set_capacity(c, 20), PC_OK); /* 80 in one report */
    pc_clear(c);                                 /* 20 in one report */
    cr_assert_eq(l.n, 150);
    pc_reclaim(c);
    pc_stats s;
    cr_assert_eq(pc_stats_get(c, &s), PC_OK);
    cr_assert_eq(s.pending, 0);
    pc_destroy(c);
    cr_assert_eq(pc_alloc_live_delta(before), 0, "%ld blocks leaked",
                 pc_alloc_live_delta(before));
    pc__alloc_track(0);
}
