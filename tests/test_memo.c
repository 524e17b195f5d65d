/*
 * Get-or-load, the memoizer and backends: single flight under contention,
 * error propagation, empty values, recursive-load detection, parallel
 * loads of different keys, a custom backend, memoizers sharing one, the
 * sink, and statistics adding up. The key builder is tested in
 * test_key.c, memoized functions (PC_MEMOIZE) and forget in
 * test_memoize.c, pinned reads in test_pin.c.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "alloc.h"
#include "testlib.h"

/* ---- helpers ---- */

struct slow_loader {
    long calls;       /* atomic */
    int fail_with;    /* 0: succeed */
    unsigned usleeps; /* how long a load takes */
    uint64_t value;
    /* If set, a load first waits until *arrived reaches `crowd` (every
     * caller of a crowd is at its pc_get_or_load), then takes usleeps. */
    int *arrived;
    int crowd;
};

static int slow_load(void *ctx, const void *key, size_t klen, pc_sink *out)
{
    struct slow_loader *l = ctx;

    (void)key;
    (void)klen;
    __atomic_add_fetch(&l->calls, 1, __ATOMIC_SEQ_CST);
    while (l->arrived != NULL &&
           __atomic_load_n(l->arrived, __ATOMIC_ACQUIRE) < l->crowd)
        usleep(1000);
    usleep(l->usleeps);
    if (l->fail_with)
        return l->fail_with;
    return pc_sink_set(out, &l->value, sizeof l->value) == PC_OK ? 0 : -1;
}

#define CROWD 8

struct crowd {
    pc_cache *c;
    struct slow_loader *l;
    pthread_barrier_t start;
    int arrived; /* members at their call (atomic) */
    pc_status st[CROWD];
    uint64_t got[CROWD];
    int err[CROWD];
};

struct crowd_arg {
    struct crowd *cr;
    int i;
};

static void *crowd_member(void *p)
{
    struct crowd_arg *a = p;
    struct crowd *cr = a->cr;
    size_t n = 0;

    pthread_barrier_wait(&cr->start);
    __atomic_add_fetch(&cr->arrived, 1, __ATOMIC_RELEASE);
    cr->st[a->i] =
        pc_get_or_load(cr->c, "hot", 3, slow_load, cr->l, &cr->got[a->i],
                       sizeof cr->got[a->i], &n, &cr->err[a->i]);
    return NULL;
}

static void run_crowd(struct crowd *cr)
{
    pthread_t th[CROWD];
    struct crowd_arg args[CROWD];

    pthread_barrier_init(&cr->start, NULL, CROWD);
    for (int i = 0; i < CROWD; i++) {
        args[i] = (struct crowd_arg){cr, i};
        pthread_create(&th[i], NULL, crowd_member, &args[i]);
    }
    for (int i = 0; i < CROWD; i++)
        pthread_join(th[i], NULL);
    pthread_barrier_destroy(&cr->start);
}

/* ---- single flight ---- */

Test(memo, concurrent_misses_on_one_key_run_the_loader_once)
{
    struct slow_loader l = {.usleeps = 100000, .value = 4242};
    struct crowd cr = {.c = make_cache(16), .l = &l};
    pc_stats s;

    run_crowd(&cr);
    cr_assert_eq(l.calls, 1, "loader ran %ld times", l.calls);
    for (int i = 0; i < CROWD; i++) {
        cr_assert_eq(cr.st[i], PC_OK);
        cr_assert_eq(cr.got[i], 4242);
    }
    pc_stats_get(cr.c, &s);
    cr_assert_eq(s.loader_calls, 1);
    cr_assert_eq(s.loader_errors, 0);
    pc_destroy(cr.c);
}

Test(memo, loader_error_reaches_every_waiter_and_nothing_is_cached)
{
    struct slow_loader l = {.usleeps = 100000, .fail_with = 42};
    struct crowd cr = {.c = make_cache(16), .l = &l};
    pc_stats s;
    uint64_t v;
    int err = 0;

    /* A failed load caches nothing, so a member that reached its call
     * only after the flight ended would load again (it did once, on a
     * loaded CI machine, 100 ms after the barrier): the load waits until
     * every member is at its call, then 100 ms more for them to join. */
    l.arrived = &cr.arrived;
    l.crowd = CROWD;

    run_crowd(&cr);
    cr_assert_eq(l.calls, 1);
    for (int i = 0; i < CROWD; i++) {
        cr_assert_eq(cr.st[i], PC_ELOAD);
        cr_assert_eq(cr.err[i], 42);
    }
    cr_assert_eq(pc_get(cr.c, "hot", 3, &v, sizeof v, NULL), PC_NOTFOUND);
    l.fail_with = 0;
    l.usleeps = 0;
    l.value = 7;
    cr_assert_eq(
        pc_get_or_load(cr.c, "hot", 3, slow_load, &l, &v, sizeof v, NULL, &err),
        PC_OK);
    cr_assert_eq(v, 7);
    cr_assert_eq(l.calls, 2, "a failed load must not be remembered");
    pc_stats_get(cr.c, &s);
    cr_assert_eq(s.loader_calls, 2);
    cr_assert_eq(s.loader_errors, 1);
    pc_destroy(cr.c);
}

static int load_nothing(void *ctx, const void *key, size_t klen, pc_sink *out)
{
    (void)key;
    (void)klen;
    (void)out;
    ++*(int *)ctx;
    return 0;
}

Test(memo, empty_loaded_value_is_cached_and_is_a_hit)
{
    pc_cache *c = make_cache(4);
    int calls = 0;
    size_t n = 99;

    cr_assert_eq(
        pc_get_or_load(c, "k", 1, load_nothing, &calls, NULL, 0, &n, NULL),
        PC_OK);
    cr_assert_eq(n, 0);
    cr_assert_eq(pc_get(c, "k", 1, NULL, 0, &n), PC_OK);
    cr_assert_eq(
        pc_get_or_load(c, "k", 1, load_nothing, &calls, NULL, 0, &n, NULL),
        PC_OK);
    cr_assert_eq(calls, 1);
    pc_destroy(c);
}

Test(memo, small_buffer_gives_erange_but_the_value_is_cached)
{
    pc_cache *c = make_cache(4);
    struct slow_loader l = {.value = 99};
    uint64_t v = 0;
    size_t n = 0;

    cr_assert_eq(pc_get_or_load(c, "k", 1, slow_load, &l, NULL, 0, &n, NULL),
                 PC_ERANGE);
    cr_assert_eq(n, sizeof(uint64_t));
    cr_assert_eq(pc_get(c, "k", 1, &v, sizeof v, &n), PC_OK);
    cr_assert_eq(v, 99);
    cr_assert_eq(l.calls, 1);
    pc_destroy(c);
}

/* ---- recursion and cycles ---- */

struct recursive {
    pc_cache *c;
    pc_status inner;
};

static int load_self(void *ctx, const void *key, size_t klen, pc_sink *out)
{
    struct recursive *r = ctx;
    char buf[8];

    (void)out;
    r->inner = pc_get_or_load(r->c, key, klen, load_self, r, buf, sizeof buf,
                              NULL, NULL);
    return 1;
}

Test(memo, loader_asking_for_its_own_key_gets_edeadlk, .timeout = 20)
{
    struct recursive r = {.c = make_cache(4), .inner = PC_OK};
    int err = 0;

    cr_assert_eq(
        pc_get_or_load(r.c, "k", 1, load_self, &r, NULL, 0, NULL, &err),
        PC_ELOAD);
    cr_assert_eq(r.inner, PC_EDEADLK);
    cr_assert_eq(err, 1);
    pc_destroy(r.c);
}

/* A call that gets PC_EDEADLK has looked the key up and missed: it counts
 * its one miss like any other call (purecache.h, pc_get_or_load; only
 * PC_ENOMEM before a load counts nothing), in the cache's counters and in
 * a memoizer's. */
static pc_memo *self_memo;
static pc_status self_memo_inner;

static int memo_self(void *ctx, const void *key, size_t klen, pc_sink *out)
{
    char buf[8];

    (void)ctx;
    (void)out;
    self_memo_inner = pc_memo_call(self_memo, key, klen, memo_self, NULL, buf,
                                   sizeof buf, NULL, NULL);
    return 1;
}

Test(memo, a_call_that_would_deadlock_counts_its_miss, .timeout = 20)
{
    struct recursive r = {.c = make_cache(4), .inner = PC_OK};
    pc_backend be;
    pc_stats s;

    cr_assert_eq(
        pc_get_or_load(r.c, "k", 1, load_self, &r, NULL, 0, NULL, NULL),
        PC_ELOAD);
    cr_assert_eq(r.inner, PC_EDEADLK);
    cr_assert_eq(pc_stats_get(r.c, &s), PC_OK);
    cr_assert_eq(s.hits, 0);
    cr_assert_eq(s.misses, 2, "%llu misses for two calls that missed",
                 (unsigned long long)s.misses);
    cr_assert_eq(s.loader_calls, 1);
    cr_assert_eq(s.loader_errors, 1);

    /* The same through a memoizer (over the cache). */
    cr_assert_eq(pc_backend_from_cache(r.c, &be), PC_OK);
    cr_assert_eq(pc_memo_create(&be, &self_memo), PC_OK);
    self_memo_inner = PC_OK;
    cr_assert_eq(
        pc_memo_call(self_memo, "m", 1, memo_self, NULL, NULL, 0, NULL, NULL),
        PC_ELOAD);
    cr_assert_eq(self_memo_inner, PC_EDEADLK);
    cr_assert_eq(pc_memo_stats(self_memo, &s), PC_OK);
    cr_assert_eq(s.hits, 0);
    cr_assert_eq(s.misses, 2, "%llu memoizer misses for two calls that missed",
                 (unsigned long long)s.misses);
    cr_assert_eq(s.loader_calls, 1);
    pc_memo_destroy(self_memo); /* and the cache */
}

struct cycle {
    pc_cache *c;
    pthread_barrier_t both_loading;
    pc_status inner[2];
    pc_status outer[2];
};

struct cycle_arg {
    struct cycle *cy;
    int i;
};

static int load_other(void *ctx, const void *key, size_t klen, pc_sink *out)
{
    struct cycle_arg *a = ctx;
    const char *other = a->i == 0 ? "B" : "A";
    char buf[8];

    (void)key;
    (void)klen;
    (void)out;
    pthread_barrier_wait(&a->cy->both_loading);
    a->cy->inner[a->i] = pc_get_or_load(a->cy->c, other, 1, load_other, a, buf,
                                        sizeof buf, NULL, NULL);
    return a->cy->inner[a->i] == PC_OK ? 0 : 2;
}

static void *cycle_member(void *p)
{
    struct cycle_arg *a = p;
    char buf[8];

    a->cy->outer[a->i] =
        pc_get_or_load(a->cy->c, a->i == 0 ? "A" : "B", 1, load_other, a, buf,
                       sizeof buf, NULL, NULL);
    return NULL;
}

Test(memo, cycle_of_loaders_across_threads_is_detected, .timeout = 20)
{
    struct cycle cy = {.c = make_cache(4)};
    struct cycle_arg args[2] = {{&cy, 0}, {&cy, 1}};
    pthread_t th[2];

    pthread_barrier_init(&cy.both_loading, NULL, 2);
    for (int i = 0; i < 2; i++)
        pthread_create(&th[i], NULL, cycle_member, &args[i]);
    for (int i = 0; i < 2; i++)
        pthread_join(th[i], NULL);
    /* One loader saw the cycle; the other then failed through it. */
    cr_assert(cy.inner[0] == PC_EDEADLK || cy.inner[1] == PC_EDEADLK);
    cr_assert_eq(cy.outer[0], PC_ELOAD);
    cr_assert_eq(cy.outer[1], PC_ELOAD);
    pthread_barrier_destroy(&cy.both_loading);
    pc_destroy(cy.c);
}

static int load_via_other_keys(void *ctx, const void *key, size_t klen,
                               pc_sink *out)
{
    pc_cache *c = ctx;
    int calls = 0;
    uint64_t v = 5;

    (void)key;
    (void)klen;
    if (pc_put(c, "side", 4, &v, sizeof v) != PC_OK)
        return 1;
    if (pc_get_or_load(c, "dep", 3, load_nothing, &calls, NULL, 0, NULL,
                       NULL) != PC_OK)
        return 2;
    return pc_sink_set(out, "done", 4) == PC_OK ? 0 : 3;
}

Test(memo, loader_may_use_the_cache_for_other_keys, .timeout = 20)
{
    pc_cache *c = make_cache(8);
    char buf[8];
    size_t n;

    cr_assert_eq(pc_get_or_load(c, "main", 4, load_via_other_keys, c, buf,
                                sizeof buf, &n, NULL),
                 PC_OK);
    cr_assert_eq(n, 4);
    cr_assert_eq(memcmp(buf, "done", 4), 0);
    cr_assert_eq(pc_get(c, "side", 4, buf, sizeof buf, &n), PC_OK);
    cr_assert_eq(pc_get(c, "dep", 3, NULL, 0, &n), PC_OK);
    pc_destroy(c);
}

/* Two loads of different keys must be able to be inside their loaders at
 * the same time: each waits (bounded) until the other has started. */
struct parallel {
    pc_cache *c;
    pthread_mutex_t m;
    pthread_cond_t cv;
    int inside;
    int saw_other[2];
};

struct parallel_arg {
    struct parallel *p;
    int i;
};

static int load_meeting(void *ctx, const void *key, size_t klen, pc_sink *out)
{
    struct parallel_arg *a = ctx;
    struct parallel *p = a->p;
    struct timespec until;

    (void)key;
    (void)klen;
    (void)out;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 10;
    pthread_mutex_lock(&p->m);
    p->inside++;
    pthread_cond_broadcast(&p->cv);
    while (p->inside < 2)
        if (pthread_cond_timedwait(&p->cv, &p->m, &until) == ETIMEDOUT)
            break;
    p->saw_other[a->i] = p->inside == 2;
    pthread_mutex_unlock(&p->m);
    return 0;
}

static void *parallel_member(void *v)
{
    struct parallel_arg *a = v;

    pc_get_or_load(a->p->c, a->i ? "y" : "x", 1, load_meeting, a, NULL, 0, NULL,
                   NULL);
    return NULL;
}

Test(memo, loads_of_different_keys_run_in_parallel, .timeout = 30)
{
    struct parallel p = {.c = make_cache(8)};
    struct parallel_arg args[2] = {{&p, 0}, {&p, 1}};
    pthread_t th[2];

    pthread_mutex_init(&p.m, NULL);
    pthread_cond_init(&p.cv, NULL);
    for (int i = 0; i < 2; i++)
        pthread_create(&th[i], NULL, parallel_member, &args[i]);
    for (int i = 0; i < 2; i++)
        pthread_join(th[i], NULL);
    cr_assert(p.saw_other[0] && p.saw_other[1],
              "the two loaders never overlapped");
    pc_destroy(p.c);
}

/* ---- custom backend and the memoizer ---- */

#define TINY 64

struct tiny_store {
    pthread_mutex_t m;
    int destroyed;
    size_t n;
    char key[TINY][32];
    size_t klen[TINY];
    uint64_t val[TINY];
};

static int tiny_find(struct tiny_store *t, const void *key, size_t klen)
{
    for (size_t i = 0; i < t->n; i++)
        if (t->klen[i] == klen && memcmp(t->key[i], key, klen) == 0)
            return (int)i;
    return -1;
}

static pc_status tiny_get(void *self, const void *key, size_t klen, void *buf,
                          size_t bufcap, size_t *vlen)
{
    struct tiny_store *t = self;
    pc_status st = PC_NOTFOUND;
    int i;

    pthread_mutex_lock(&t->m);
    i = tiny_find(t, key, klen);
    if (i >= 0) {
        if (vlen)
            *vlen = 8;
        st = bufcap < 8 ? PC_ERANGE : PC_OK;
        if (st == PC_OK)
            memcpy(buf, &t->val[i], 8);
    }
    pthread_mutex_unlock(&t->m);
    return st;
}

static pc_status tiny_put(void *self, const void *key, size_t klen,
                          const void *val, size_t vlen)
{
    struct tiny_store *t = self;
    int i;

    if (klen > 32 || vlen != 8)
        return PC_EINVAL;
    pthread_mutex_lock(&t->m);
    i = tiny_find(t, key, klen);
    if (i < 0 && t->n < TINY)
        i = (int)t->n++;
    if (i >= 0) {
        memcpy(t->key[i], key, klen);
        t->klen[i] = klen;
        memcpy(&t->val[i], val, 8);
    }
    pthread_mutex_unlock(&t->m);
    return i >= 0 ? PC_OK : PC_ENOMEM;
}

static pc_status tiny_del(void *self, const void *key, size_t klen)
{
    (void)self, (void)key, (void)klen;
    return PC_NOTFOUND;
}

static size_t tiny_len(void *self)
{
    return ((struct tiny_store *)self)->n;
}

static void tiny_destroy(void *self)
{
    ((struct tiny_store *)self)->destroyed = 1;
}

static const pc_backend_ops tiny_ops = {
    .size = sizeof(pc_backend_ops),
    .get = tiny_get,
    .put = tiny_put,
    .del = tiny_del,
    .len = tiny_len,
    .destroy = tiny_destroy,
};

static long fib_calls;

static uint64_t slow_fib(uint64_t n)
{
    __atomic_add_fetch(&fib_calls, 1, __ATOMIC_SEQ_CST);
    uint64_t a = 0, b = 1;
    for (uint64_t i = 0; i < n; i++) {
        uint64_t t = a + b;
        a = b;
        b = t;
    }
    return a;
}

PC_MEMOIZE(memo_fib, uint64_t, slow_fib, (uint64_t n), (n), PC_KEY_U64(n))

Test(memo, custom_backend_serves_the_memoizer)
{
    struct tiny_store store = {.m = PTHREAD_MUTEX_INITIALIZER};
    pc_backend be = {.ops = &tiny_ops, .self = &store};
    pc_memo *m;
    pc_stats s;
    uint64_t v;

    fib_calls = 0;
    cr_assert_eq(pc_memo_create(&be, &m), PC_OK);
    cr_assert_eq(memo_fib(m, &v, 50), PC_OK);
    cr_assert_eq(v, 12586269025ULL);
    cr_assert_eq(memo_fib(m, &v, 50), PC_OK);
    cr_assert_eq(v, 12586269025ULL);
    cr_assert_eq(memo_fib(m, &v, 10), PC_OK);
    cr_assert_eq(v, 55);
    cr_assert_eq(fib_calls, 2, "memoized function ran %ld times", fib_calls);
    cr_assert_eq(store.n, 2, "results live in the custom backend");
    cr_assert_eq(pc_memo_stats(m, &s), PC_OK);
    cr_assert_eq(s.hits, 1);
    cr_assert_eq(s.misses, 2);
    cr_assert_eq(s.loader_calls, 2);
    pc_memo_destroy(m);
    cr_assert_eq(store.destroyed, 1, "destroy must reach the backend");
}

struct memo_crowd {
    pc_memo *m;
    pthread_barrier_t start;
    uint64_t got[CROWD];
};

struct memo_crowd_arg {
    struct memo_crowd *mc;
    int i;
};

static void *memo_crowd_member(void *p)
{
    struct memo_crowd_arg *a = p;

    pthread_barrier_wait(&a->mc->start);
    memo_fib(a->mc->m, &a->mc->got[a->i], 90);
    return NULL;
}

/* A backend whose key appears after its first lookup, as if another
 * caller stored it between the memoizer's miss and its flight: the
 * leader's second lookup finds it. */
struct appearing {
    int gets, puts;
};

static pc_status appearing_get(void *self, const void *key, size_t klen,
                               void *buf, size_t bufcap, size_t *vlen)
{
    struct appearing *a = self;

    (void)key;
    (void)klen;
    if (a->gets++ == 0)
        return PC_NOTFOUND;
    if (vlen != NULL)
        *vlen = 8;
    if (bufcap < 8)
        return PC_ERANGE;
    memcpy(buf, "appeared", 8);
    return PC_OK;
}

static pc_status appearing_put(void *self, const void *key, size_t klen,
                               const void *val, size_t vlen)
{
    (void)key, (void)klen, (void)val, (void)vlen;
    ((struct appearing *)self)->puts++;
    return PC_OK;
}

static pc_status appearing_del(void *self, const void *key, size_t klen)
{
    (void)self, (void)key, (void)klen;
    return PC_NOTFOUND;
}

static size_t appearing_len(void *self)
{
    (void)self;
    return 0;
}

static const pc_backend_ops appearing_ops = {
    .size = sizeof(pc_backend_ops),
    .get = appearing_get,
    .put = appearing_put,
    .del = appearing_del,
    .len = appearing_len,
};

static int count_load(void *ctx, const void *key, size_t klen, pc_sink *out)
{
    (void)key;
    (void)klen;
    ++*(int *)ctx;
    return pc_sink_set(out, "computed", 8) == PC_OK ? 0 : 1;
}

/* The leader looks the key up once more before it loads (load.h, step 3):
 * a value found then, even one too large for the caller's buffer, is the
 * outcome (PC_ERANGE and its length); the function does not run and
 * nothing is stored over it. */
Test(memo, a_leader_that_finds_the_key_too_large_for_its_buffer_loads_nothing)
{
    struct appearing a = {0};
    pc_backend be = {.ops = &appearing_ops, .self = &a};
    pc_memo *m;
    pc_stats s;
    char small[4];
    size_t n = 0;
    int calls = 0;

    cr_assert_eq(pc_memo_create(&be, &m), PC_OK);
    cr_assert_eq(pc_memo_call(m, "k", 1, count_load, &calls, small,
                              sizeof small, &n, NULL),
                 PC_ERANGE);
    cr_assert_eq(n, 8);
    cr_assert_eq(calls, 0, "the leader loaded a key it found stored");
    cr_assert_eq(a.puts, 0);
    cr_assert_eq(a.gets, 2);
    cr_assert_eq(pc_memo_stats(m, &s), PC_OK);
    cr_assert_eq(s.loader_calls, 0);
    cr_assert_eq(s.hits + s.misses, 1);
    pc_memo_destroy(m);
}

/* A backend whose second lookup (the leader's, before it loads) is held
 * until the test lets it go, and finds the key stored by then, as if
 * another writer had stored it meanwhile. */
struct stored_meanwhile {
    struct test_gate gate; /* the second lookup's */
    int gets, stored;      /* atomic */
};

static pc_status meanwhile_get(void *self, const void *key, size_t klen,
                               void *buf, size_t bufcap, size_t *vlen)
{
    struct stored_meanwhile *h = self;

    (void)key;
    (void)klen;
    if (__atomic_add_fetch(&h->gets, 1, __ATOMIC_SEQ_CST) == 2) {
        test_gate_pass(&h->gate);
        __atomic_store_n(&h->stored, 1, __ATOMIC_SEQ_CST);
    }
    if (!__atomic_load_n(&h->stored, __ATOMIC_SEQ_CST))
        return PC_NOTFOUND;
    if (vlen != NULL)
        *vlen = 8;
    if (bufcap < 8)
        return PC_ERANGE;
    memcpy(buf, "appeared", 8);
    return PC_OK;
}

static const pc_backend_ops meanwhile_ops = {
    .size = sizeof(pc_backend_ops),
    .get = meanwhile_get,
    .put = appearing_put,
    .del = appearing_del,
    .len = appearing_len,
};

struct meanwhile_call {
    pc_memo *m;
    int calls;
    pc_status st;
    char got[16];
    size_t n;
};

static void *meanwhile_call_main(void *p)
{
    struct meanwhile_call *hc = p;

    hc->st = pc_memo_call(hc->m, "k", 1, count_load, &hc->calls, hc->got,
                          sizeof hc->got, &hc->n, NULL);
    return NULL;
}

/* A leader that finds the key stored at its second lookup abandons its
 * flight; a caller waiting on that flight looks the key up again and
 * returns the stored value (load.h, step 3), and nobody loads. */
Test(memo, waiters_of_an_abandoned_flight_look_the_key_up_again, .timeout = 30)
{
    struct stored_meanwhile h = {TEST_GATE_INIT, 0, 0};
    pc_backend be = {.ops = &meanwhile_ops, .self = &h};
    struct meanwhile_call lead = {.st = PC_EINVAL}, wait = {.st = PC_EINVAL};
    pthread_t tl, tw;

    cr_assert_eq(pc_memo_create(&be, &lead.m), PC_OK);
    wait.m = lead.m;
    cr_assert_eq(pthread_create(&tl, NULL, meanwhile_call_main, &lead), 0);
    test_gate_wait(&h.gate, 1);
    /* The leader is in its second lookup: a second caller misses and
     * waits on its flight. */
    cr_assert_eq(pthread_create(&tw, NULL, meanwhile_call_main, &wait), 0);
    cr_assert_eq(TEST_WAIT_MISSES(pc_memo_stats, lead.m, 2), 2);
    test_gate_open(&h.gate);
    pthread_join(tl, NULL);
    pthread_join(tw, NULL);
    cr_assert_eq(lead.st, PC_OK);
    cr_assert_eq(lead.n, 8);
    cr_assert_eq(memcmp(lead.got, "appeared", 8), 0);
    cr_assert_eq(wait.st, PC_OK);
    cr_assert_eq(wait.n, 8, "the waiter got %zu bytes", wait.n);
    cr_assert_eq(memcmp(wait.got, "appeared", 8), 0);
    cr_assert_eq(lead.calls + wait.calls, 0, "a caller loaded a stored key");
    cr_assert_eq(h.gets, 4, "%d lookups", h.gets);
    pc_memo_destroy(lead.m);
}

/* The cache as a backend (pc_backend_from_cache): each operation is the
 * public call of the same name, with its statuses: get (PC_NOTFOUND,
 * PC_ERANGE with the length), put, put_ex with its time to live and its
 * conditions, del and len; destroy destroys the cache. */
Test(memo, the_cache_as_a_backend_dispatches_each_operation)
{
    pc_options o = test_opts(16);
    pc_put_args a = {.ttl_ms = 50};
    pc_backend be;
    pc_cache *c;
    char got[16];
    size_t n = 0;

    o.now_ms = test_now;
    c = make_cache_opts(&o);
    cr_assert_not_null(c);
    cr_assert_eq(pc_backend_from_cache(c, &be), PC_OK);
    cr_assert_eq(be.self, (void *)c);
    cr_assert_eq(be.ops->size, sizeof(pc_backend_ops));
    cr_assert_not_null(be.ops->put_ex);

    cr_assert_eq(be.ops->get(be.self, "a", 1, got, sizeof got, &n),
                 PC_NOTFOUND);
    cr_assert_eq(be.ops->put(be.self, "a", 1, "alpha", 5), PC_OK);
    cr_assert_eq(be.ops->get(be.self, "a", 1, got, sizeof got, &n), PC_OK);
    cr_assert(n == 5 && memcmp(got, "alpha", 5) == 0);
    n = 0;
    cr_assert_eq(be.ops->get(be.self, "a", 1, got, 2, &n), PC_ERANGE);
    cr_assert_eq(n, 5);
    cr_assert_eq(be.ops->len(be.self), 1);

    /* put_ex: the time to live and the conditions reach the cache. */
    cr_assert_eq(be.ops->put_ex(be.self, "b", 1, "beta", 4, &a), PC_OK);
    cr_assert_eq(pc_get(c, "b", 1, got, sizeof got, &n), PC_OK);
    cr_assert_eq(be.ops->len(be.self), 2);
    a.ttl_ms = 0;
    a.flags = PC_PUT_IF_ABSENT;
    cr_assert_eq(be.ops->put_ex(be.self, "a", 1, "other", 5, &a), PC_EXISTS);
    a.flags = PC_PUT_IF_PRESENT;
    cr_assert_eq(be.ops->put_ex(be.self, "c", 1, "gamma", 5, &a), PC_NOTFOUND);
    cr_assert_eq(pc_get(c, "c", 1, got, sizeof got, &n), PC_NOTFOUND);
    cr_assert_eq(pc_get(c, "a", 1, got, sizeof got, &n), PC_OK);
    cr_assert(n == 5 && memcmp(got, "alpha", 5) == 0);
    a.flags = PC_PUT_IF_ABSENT | PC_PUT_IF_PRESENT;
    cr_assert_eq(be.ops->put_ex(be.self, "d", 1, "delta", 5, &a), PC_EINVAL);
    test_advance(50);
    cr_assert_eq(pc_get(c, "b", 1, got, sizeof got, &n), PC_NOTFOUND,
                 "put_ex's time to live was not applied");
    cr_assert_eq(pc_get(c, "a", 1, got, sizeof got, &n), PC_OK);

    cr_assert_eq(be.ops->del(be.self, "a", 1), PC_OK);
    cr_assert_eq(be.ops->del(be.self, "a", 1), PC_NOTFOUND);
    cr_assert_eq(pc_get(c, "a", 1, got, sizeof got, &n), PC_NOTFOUND);
    cr_assert_eq(be.ops->len(be.self), pc_len(c));
    cr_assert_not_null(be.ops->destroy);
    be.ops->destroy(be.self); /* the cache */
}

static pc_status failing_get(void *self, const void *key, size_t klen,
                             void *buf, size_t bufcap, size_t *vlen)
{
    (void)key, (void)klen, (void)buf, (void)bufcap, (void)vlen;
    ((struct appearing *)self)->gets++;
    return PC_EIO;
}

static const pc_backend_ops failing_ops = {
    .size = sizeof(pc_backend_ops),
    .get = failing_get,
    .put = appearing_put,
    .del = appearing_del,
    .len = appearing_len,
};

/* A call whose first lookup fails with the backend's error returns that
 * error, loads nothing, and counts neither a hit nor a miss
 * (pc_memo_stats); pc_memo_begin the same, and leads nothing. */
Test(memo, a_failed_backend_lookup_is_returned_and_counts_nothing)
{
    struct appearing a = {0};
    pc_backend be = {.ops = &failing_ops, .self = &a};
    pc_flight *lead = (pc_flight *)0x1;
    pc_memo *m;
    pc_stats s;
    char buf[16];
    size_t n = 0;
    int calls = 0;

    cr_assert_eq(pc_memo_create(&be, &m), PC_OK);
    cr_assert_eq(
        pc_memo_call(m, "k", 1, count_load, &calls, buf, sizeof buf, &n, NULL),
        PC_EIO);
    cr_assert_eq(pc_memo_begin(m, "k", 1, buf, sizeof buf, &n, NULL, &lead),
                 PC_EIO);
    cr_assert_null(lead);
    cr_assert_eq(calls, 0);
    cr_assert_eq(a.gets, 2);
    cr_assert_eq(a.puts, 0);
    cr_assert_eq(pc_memo_stats(m, &s), PC_OK);
    cr_assert_eq(s.hits, 0, "a failed lookup counted %llu hits",
                 (unsigned long long)s.hits);
    cr_assert_eq(s.misses, 0);
    cr_assert_eq(s.loader_calls, 0);
    pc_memo_destroy(m);
}

Test(memo, memoized_function_over_the_cache_runs_once_per_key)
{
    pc_backend be;
    struct memo_crowd mc;
    struct memo_crowd_arg args[CROWD];
    pthread_t th[CROWD];
    pc_cache *c = make_cache(100);
    pc_stats s;

    fib_calls = 0;
    cr_assert_eq(pc_backend_from_cache(c, &be), PC_OK);
    cr_assert_eq(pc_memo_create(&be, &mc.m), PC_OK);
    pthread_barrier_init(&mc.start, NULL, CROWD);
    for (int i = 0; i < CROWD; i++) {
        args[i] = (struct memo_crowd_arg){&mc, i};
        pthread_create(&th[i], NULL, memo_crowd_member, &args[i]);
    }
    for (int i = 0; i < CROWD; i++)
        pthread_join(th[i], NULL);
    for (int i = 0; i < CROWD; i++)
        cr_assert_eq(mc.got[i], 2880067194370816120ULL);
    /* Either one call computed and the rest waited or hit: at most one run
     * per key in flight, and here every call overlapped or followed it. */
    cr_assert_eq(fib_calls, 1);
    cr_assert_eq(pc_len(c), 1);
    pc_memo_stats(mc.m, &s);
    cr_assert_eq(s.loader_calls, 1);
    cr_assert_eq(s.hits + s.misses, CROWD);
    pthread_barrier_destroy(&mc.start);
    pc_memo_destroy(mc.m); /* destroys the cache too */
}

Test(memo, bad_arguments_are_refused)
{
    pc_cache *c = make_cache(4);
    pc_backend be = {0};
    pc_backend_ops short_ops = tiny_ops;
    pc_memo *m = (pc_memo *)0x1;
    pc_flight *lead = (pc_flight *)0x1;

    cr_assert_eq(pc_get_or_load(c, "k", 1, NULL, NULL, NULL, 0, NULL, NULL),
                 PC_EINVAL);
    cr_assert_eq(
        pc_get_or_load(NULL, "k", 1, slow_load, NULL, NULL, 0, NULL, NULL),
        PC_EINVAL);
    cr_assert_eq(
        pc_get_or_load(c, NULL, 1, slow_load, NULL, NULL, 0, NULL, NULL),
        PC_EINVAL);
    cr_assert_eq(pc_memo_create(&be, &m), PC_EINVAL);
    cr_assert_eq(pc_memo_create(NULL, &m), PC_EINVAL);
    short_ops.size = 8;
    be = (pc_backend){.ops = &short_ops};
    cr_assert_eq(pc_memo_create(&be, &m), PC_EINVAL);
    cr_assert_eq(m, (pc_memo *)0x1);
    cr_assert_eq(pc_backend_from_cache(NULL, &be), PC_EINVAL);
    cr_assert_eq(pc_sink_set(NULL, "x", 1), PC_EINVAL);
    cr_assert_eq(pc_memo_begin(NULL, "k", 1, NULL, 0, NULL, NULL, &lead),
                 PC_EINVAL);
    cr_assert_null(lead);
    cr_assert_eq(pc_memo_finish(NULL, NULL, 0, NULL, 0), PC_EINVAL);
    cr_assert_eq(
        pc_memo_call(NULL, "k", 1, slow_load, NULL, NULL, 0, NULL, NULL),
        PC_EINVAL);
    cr_assert_eq(pc_memo_stats(NULL, NULL), PC_EINVAL);
    pc_memo_destroy(NULL);
    cr_assert_eq(pc_len(c), 0, "nothing may have been stored");
    pc_destroy(c);
}

Test(memo, finish_refuses_a_lead_begun_by_another_memoizer)
{
    pc_backend b1, b2;
    pc_memo *m1, *m2;
    pc_flight *lead = NULL;
    uint64_t v = 1;

    pc_backend_from_cache(make_cache(4), &b1);
    pc_backend_from_cache(make_cache(4), &b2);
    cr_assert_eq(pc_memo_create(&b1, &m1), PC_OK);
    cr_assert_eq(pc_memo_create(&b2, &m2), PC_OK);
    cr_assert_eq(pc_memo_begin(m1, "k", 1, NULL, 0, NULL, NULL, &lead),
                 PC_NOTFOUND);
    cr_assert_not_null(lead);
    cr_assert_eq(pc_memo_finish(m2, lead, 0, &v, sizeof v), PC_EINVAL);
    cr_assert_eq(pc_memo_finish(m1, lead, 0, &v, sizeof v), PC_OK);
    cr_assert_eq(
        pc_memo_call(m1, "k", 1, slow_load, NULL, &v, sizeof v, NULL, NULL),
        PC_OK, "the finished value must be cached");
    pc_memo_destroy(m1);
    pc_memo_destroy(m2);
}

struct sink_probe {
    pc_status null_with_len, ok_set;
};

static int load_checking_sink(void *ctx, const void *key, size_t klen,
                              pc_sink *out)
{
    struct sink_probe *sp = ctx;

    (void)key;
    (void)klen;
    sp->null_with_len = pc_sink_set(out, NULL, 5);
    sp->ok_set = pc_sink_set(out, "ok", 2);
    return 0;
}

Test(memo, oversized_keys_and_bad_sink_arguments_are_refused)
{
    static char big[PC_KEY_MAX + 1];
    pc_cache *c = make_cache(4);
    pc_backend be;
    pc_memo *m;
    struct sink_probe sp = {PC_OK, PC_EINVAL};
    pc_flight *lead = (pc_flight *)0x1;
    char buf[4];
    size_t n = 0;

    cr_assert_eq(pc_get_or_load(c, big, sizeof big, slow_load, NULL, NULL, 0,
                                NULL, NULL),
                 PC_EINVAL);
    cr_assert_eq(pc_get_pinned(c, big, sizeof big, &(pc_pin){0}), PC_EINVAL);
    cr_assert_eq(
        pc_get_or_load(c, "k", 1, slow_load, NULL, NULL, 4, NULL, NULL),
        PC_EINVAL, "NULL buffer with a capacity");
    cr_assert_eq(pc_len(c), 0);

    pc_backend_from_cache(c, &be);
    cr_assert_eq(pc_memo_create(&be, NULL), PC_EINVAL);
    cr_assert_eq(pc_memo_create(&be, &m), PC_OK);
    cr_assert_eq(
        pc_memo_call(m, big, sizeof big, slow_load, NULL, NULL, 0, NULL, NULL),
        PC_EINVAL);
    cr_assert_eq(pc_memo_begin(m, big, sizeof big, NULL, 0, NULL, NULL, &lead),
                 PC_EINVAL);
    cr_assert_null(lead);
    cr_assert_eq(pc_len(c), 0, "refused calls stored nothing");

    /* Inside a loader: a bad pc_sink_set is refused, a good one wins. */
    cr_assert_eq(pc_memo_call(m, "k", 1, load_checking_sink, &sp, buf,
                              sizeof buf, &n, NULL),
                 PC_OK);
    cr_assert_eq(sp.null_with_len, PC_EINVAL);
    cr_assert_eq(sp.ok_set, PC_OK);
    cr_assert_eq(n, 2);
    cr_assert_eq(memcmp(buf, "ok", 2), 0);

    /* Key builder calls on NULL are no-ops, not crashes. */
    pc_key_init(NULL);
    pc_key_add_i64(NULL, 1);
    pc_key_add_str(NULL, "x");
    pc_key_add_bytes(NULL, "x", 1);
    pc_key_free(NULL);
    cr_assert_null(pc_key_data(NULL));
    cr_assert_eq(pc_key_len(NULL), 0);
    pc_memo_destroy(m);
}

/* ---- the sink: a failing pc_sink_set changes nothing ---- */

struct two_sets {
    size_t first, second; /* lengths of the two values the loader sets */
    pc_status second_st;
};

static int load_two_sets(void *ctx, const void *key, size_t klen, pc_sink *out)
{
    struct two_sets *ts = ctx;
    static unsigned char big[4096];

    (void)key;
    (void)klen;
    memset(big, 'a', ts->first);
    if (pc_sink_set(out, big, ts->first) != PC_OK)
        return 1;
    memset(big, 'b', ts->second);
    pc__alloc_fail_after(0); /* the larger value cannot be copied */
    ts->second_st = pc_sink_set(out, big, ts->second);
    pc__alloc_fail_after(-1);
    return 0; /* keeps going with what the sink holds */
}

/* A loader whose second, larger pc_sink_set fails with PC_ENOMEM still
 * succeeds with its first value: inline (small) or already on the heap. */
Test(memo, failed_sink_set_keeps_the_previous_value)
{
    static const struct two_sets shapes[] = {{8, 1000, PC_OK},
                                             {500, 3000, PC_OK}};
    static unsigned char got[4096];

    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        pc_cache *c = make_cache(4);
        struct two_sets ts = shapes[i];
        size_t n = 0;

        cr_assert_eq(pc_get_or_load(c, "k", 1, load_two_sets, &ts, got,
                                    sizeof got, &n, NULL),
                     PC_OK, "shape %zu: the load must keep its first value", i);
        cr_assert_eq(ts.second_st, PC_ENOMEM);
        cr_assert_eq(n, ts.first);
        for (size_t j = 0; j < n; j++)
            cr_assert_eq(got[j], 'a', "shape %zu: byte %zu", i, j);
        n = 0;
        cr_assert_eq(pc_get(c, "k", 1, got, sizeof got, &n), PC_OK);
        cr_assert_eq(n, ts.first, "the first value is the one cached");
        pc_destroy(c);
    }
}

static int load_then_empty(void *ctx, const void *key, size_t klen,
                           pc_sink *out)
{
    static unsigned char big[1000];
    size_t first = *(size_t *)ctx;

    (void)key;
    (void)klen;
    memset(big, 'a', first);
    if (pc_sink_set(out, big, first) != PC_OK)
        return 1;
    return pc_sink_set(out, NULL, 0) == PC_OK ? 0 : 2;
}

/* The last successful pc_sink_set wins, an empty value too: a loader that
 * sets a value (inline or on the heap) and then the empty one loads the
 * empty value, and that is what is cached. */
Test(memo, an_empty_sink_set_replaces_the_value_before_it)
{
    static const size_t firsts[] = {8, 1000};

    for (size_t i = 0; i < sizeof firsts / sizeof firsts[0]; i++) {
        pc_cache *c = make_cache(4);
        size_t first = firsts[i];
        char got[16];
        size_t n = 99;

        cr_assert_eq(pc_get_or_load(c, "k", 1, load_then_empty, &first, got,
                                    sizeof got, &n, NULL),
                     PC_OK);
        cr_assert_eq(n, 0, "loaded %zu bytes after setting the empty value", n);
        n = 99;
        cr_assert_eq(pc_get(c, "k", 1, got, sizeof got, &n), PC_OK);
        cr_assert_eq(n, 0, "cached %zu bytes after setting the empty value", n);
        pc_destroy(c);
    }
}

/* The leader copies its value for its waiters; if that copy cannot be
 * made, the waiters get PC_ENOMEM (having counted their miss), while the
 * leader still returns its value. */
static int load_then_starve(void *ctx, const void *key, size_t klen,
                            pc_sink *out)
{
    (void)key;
    (void)klen;
    test_gate_pass(ctx);
    if (pc_sink_set(out, "starving", 8) != PC_OK)
        return 1;
    pc__alloc_fail_after(0); /* the store and the waiters' copy fail */
    return 0;
}

struct starving_call {
    pc_cache *c;
    struct test_gate *g;
    pc_status st;
    char got[16];
    size_t n;
};

static void *starving_call_main(void *p)
{
    struct starving_call *sc = p;

    sc->st = pc_get_or_load(sc->c, "k", 1, load_then_starve, sc->g, sc->got,
                            sizeof sc->got, &sc->n, NULL);
    return NULL;
}

Test(memo, a_waiter_whose_copy_of_the_value_fails_gets_enomem, .timeout = 30)
{
    struct test_gate g = TEST_GATE_INIT;
    pc_cache *c = make_cache(16);
    struct starving_call lead = {c, &g, PC_EINVAL, {0}, 0}, wait = lead;
    pthread_t tl, tw;
    pc_stats s = {0};

    cr_assert_eq(get_u64(c, 0, NULL), PC_NOTFOUND); /* registers this thread */
    cr_assert_eq(pthread_create(&tl, NULL, starving_call_main, &lead), 0);
    test_gate_wait(&g, 1);
    cr_assert_eq(pthread_create(&tw, NULL, starving_call_main, &wait), 0);
    cr_assert_eq(TEST_WAIT_MISSES(pc_stats_get, c, 3), 3);
    test_gate_open(&g);
    pthread_join(tl, NULL);
    pthread_join(tw, NULL);
    pc__alloc_fail_after(-1);
    cr_assert_eq(lead.st, PC_OK);
    cr_assert_eq(lead.n, 8);
    cr_assert_eq(memcmp(lead.got, "starving", 8), 0);
    cr_assert_eq(wait.st, PC_ENOMEM, "the waiter got %d", wait.st);
    cr_assert_eq(pc_stats_get(c, &s), PC_OK);
    cr_assert_eq(s.misses, 3);
    cr_assert_eq(s.loader_calls, 1);
    pc_destroy(c);
}

Test(memo, memoizers_over_a_shared_backend_share_results_by_function_name)
{
    struct tiny_store store = {.m = PTHREAD_MUTEX_INITIALIZER};
    pc_backend be = {.ops = &tiny_ops, .self = &store};
    pc_memo *a, *b;
    uint64_t v = 0;
    pc_key k;

    fib_calls = 0;
    cr_assert_eq(pc_memo_create(&be, &a), PC_OK);
    cr_assert_eq(pc_memo_create(&be, &b), PC_OK);
    cr_assert_eq(memo_fib(a, &v, 30), PC_OK);
    cr_assert_eq(memo_fib(b, &v, 30), PC_OK);
    cr_assert_eq(v, 832040);
    cr_assert_eq(fib_calls, 1, "the second memoizer found the first's result");
    /* What another process would build for the same call. */
    pc_key_init_fn(&k, "slow_fib");
    pc_key_add_u64(&k, 30);
    cr_assert_eq(pc_key_finish(&k), PC_OK);
    cr_assert_eq(store.n, 1);
    cr_assert_eq(store.klen[0], pc_key_len(&k));
    cr_assert_eq(memcmp(store.key[0], pc_key_data(&k), pc_key_len(&k)), 0);
    pc_key_free(&k);
    pc_memo_destroy(a);
    pc_memo_destroy(b);
}
