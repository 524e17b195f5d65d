/*
 * Memoized functions (PC_MEMOIZE) and the memoizer's forget: several
 * functions over one memo keep their own results, a forgotten call
 * computes afresh, a load in flight when its key is forgotten keeps
 * nothing (nor does a store in progress, nor a flight its leader
 * abandoned), a failing function returns PC_ELOAD with its error to every
 * waiter of its one call and caches nothing, and a key that cannot be
 * encoded is PC_EINVAL before anything runs. (Split from test_memo.c.)
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>

#include "alloc.h"
#include "testlib.h"

#define CROWD 8 /* threads calling at once */

/* ---- memoized functions: one memo, several functions ---- */

static long twice_calls, square_calls;

static int64_t twice_of(int64_t x)
{
    __atomic_add_fetch(&twice_calls, 1, __ATOMIC_RELAXED);
    return 2 * x;
}

static int64_t square_of(int64_t x)
{
    __atomic_add_fetch(&square_calls, 1, __ATOMIC_RELAXED);
    return x * x;
}

static double half_of(int64_t x)
{
    return (double)x / 2;
}

PC_MEMOIZE(twice, int64_t, twice_of, (int64_t x), (x), PC_KEY_I64(x))
PC_MEMOIZE(square, int64_t, square_of, (int64_t x), (x), PC_KEY_I64(x))
PC_MEMOIZE(half, double, half_of, (int64_t x), (x), PC_KEY_I64(x))

Test(memo, two_memoized_functions_over_one_memo_keep_their_own_results)
{
    pc_memo *m = make_memo(64);
    int64_t v = 0;
    double d = 0;

    cr_assert_not_null(m);
    twice_calls = square_calls = 0;
    cr_assert_eq(twice(m, &v, 3), PC_OK);
    cr_assert_eq(v, 6);
    cr_assert_eq(square(m, &v, 3), PC_OK);
    cr_assert_eq(v, 9, "square(3) returned twice(3)'s result");
    cr_assert_eq(half(m, &d, 3), PC_OK, "a function of another type");
    cr_assert(d == 1.5);
    cr_assert_eq(twice(m, &v, 3), PC_OK);
    cr_assert_eq(v, 6);
    cr_assert_eq(square(m, &v, 3), PC_OK);
    cr_assert_eq(v, 9);
    cr_assert_eq(twice_calls, 1);
    cr_assert_eq(square_calls, 1);
    pc_memo_destroy(m);
}

/* The key is the function's name and the arguments, nothing else (not an
 * address): two memoizers over one shared store share results. */
/* ---- forgetting one call ---- */

Test(memo, forget_drops_one_call_and_the_next_call_recomputes)
{
    pc_memo *m = make_memo(64);
    int64_t v = 0;

    cr_assert_not_null(m);
    twice_calls = square_calls = 0;
    cr_assert_eq(twice(m, &v, 10), PC_OK);
    cr_assert_eq(twice(m, &v, 20), PC_OK);
    cr_assert_eq(square(m, &v, 10), PC_OK);
    cr_assert_eq(twice_forget(m, 10), PC_OK);
    cr_assert_eq(twice_forget(m, 10), PC_NOTFOUND, "forgotten already");
    cr_assert_eq(twice(m, &v, 10), PC_OK);
    cr_assert_eq(v, 20);
    cr_assert_eq(twice_calls, 3, "twice(10) ran again");
    cr_assert_eq(twice(m, &v, 20), PC_OK);
    cr_assert_eq(square(m, &v, 10), PC_OK);
    cr_assert_eq(twice_calls, 3, "twice(20) is still remembered");
    cr_assert_eq(square_calls, 1, "square(10) is another function's call");
    cr_assert_eq(pc_memo_forget(m, "nope", 4), PC_NOTFOUND);
    cr_assert_eq(pc_memo_forget(NULL, "k", 1), PC_EINVAL);
    cr_assert_eq(pc_memo_forget(m, NULL, 1), PC_EINVAL);
    cr_assert_eq(pc_memo_forget(m, "k", PC_KEY_MAX + 1), PC_EINVAL);
    pc_memo_destroy(m);
}

/* A load in flight when its key is forgotten hands its value to the
 * callers already waiting, stores nothing, and callers that come after
 * the forget start a load of their own. */
struct held_load {
    pthread_mutex_t m;
    pthread_cond_t cv;
    int entered, go;
    long calls;
};

static int load_held_first(void *ctx, const void *key, size_t klen,
                           pc_sink *out)
{
    struct held_load *h = ctx;
    long call;

    (void)key;
    (void)klen;
    pthread_mutex_lock(&h->m);
    call = ++h->calls;
    h->entered++;
    pthread_cond_broadcast(&h->cv);
    while (call == 1 && !h->go) /* only the first load is held */
        pthread_cond_wait(&h->cv, &h->m);
    pthread_mutex_unlock(&h->m);
    return pc_sink_set(out, &call, sizeof call) == PC_OK ? 0 : 1;
}

struct held_caller {
    pc_memo *m;
    struct held_load *h;
    pc_status st;
    long got;
};

static void *held_call(void *p)
{
    struct held_caller *c = p;

    c->st = pc_memo_call(c->m, "k", 1, load_held_first, c->h, &c->got,
                         sizeof c->got, NULL, NULL);
    return NULL;
}

Test(memo, a_load_in_flight_when_forgotten_keeps_nothing, .timeout = 30)
{
    struct held_load h = {.m = PTHREAD_MUTEX_INITIALIZER,
                          .cv = PTHREAD_COND_INITIALIZER};
    pc_memo *m = make_memo(64);
    struct held_caller lead = {m, &h, PC_EINVAL, 0}, early = lead, late = lead;
    pthread_t tl, te;
    long got = 0;

    cr_assert_not_null(m);
    cr_assert_eq(pthread_create(&tl, NULL, held_call, &lead), 0);
    pthread_mutex_lock(&h.m);
    while (h.entered == 0)
        pthread_cond_wait(&h.cv, &h.m);
    pthread_mutex_unlock(&h.m);
    cr_assert_eq(pthread_create(&te, NULL, held_call, &early), 0);
    for (pc_stats s = {0}; s.misses < 2; usleep(1000))
        pc_memo_stats(m, &s); /* early missed: it is at the flight */
    usleep(100000);           /* early waits for the first load */
    cr_assert_eq(pc_memo_forget(m, "k", 1), PC_NOTFOUND);
    held_call(&late); /* a new load, not the forgotten one */
    cr_assert_eq(late.st, PC_OK);
    cr_assert_eq(late.got, 2);
    pthread_mutex_lock(&h.m);
    h.go = 1;
    pthread_cond_broadcast(&h.cv);
    pthread_mutex_unlock(&h.m);
    pthread_join(tl, NULL);
    pthread_join(te, NULL);
    cr_assert_eq(lead.st, PC_OK);
    cr_assert_eq(lead.got, 1);
    cr_assert_eq(early.st, PC_OK);
    cr_assert_eq(early.got, 1, "a caller waiting before the forget");
    cr_assert_eq(pc_memo_call(m, "k", 1, load_held_first, &h, &got, sizeof got,
                              NULL, NULL),
                 PC_OK);
    cr_assert_eq(got, 2, "the forgotten load's value was stored");
    cr_assert_eq(h.calls, 2);
    pc_memo_destroy(m);
}

/* A backend over a cache whose put waits for a go (a store held open). */
struct held_store {
    pc_cache *c;
    pthread_mutex_t m;
    pthread_cond_t cv;
    int entered, go;
};

static pc_status hs_get(void *self, const void *key, size_t klen, void *buf,
                        size_t bufcap, size_t *vlen)
{
    return pc_get(((struct held_store *)self)->c, key, klen, buf, bufcap, vlen);
}
static pc_status hs_put(void *self, const void *key, size_t klen,
                        const void *val, size_t vlen)
{
    struct held_store *h = self;

    pthread_mutex_lock(&h->m);
    h->entered++;
    pthread_cond_broadcast(&h->cv);
    while (!h->go)
        pthread_cond_wait(&h->cv, &h->m);
    pthread_mutex_unlock(&h->m);
    return pc_put(h->c, key, klen, val, vlen);
}
static pc_status hs_del(void *self, const void *key, size_t klen)
{
    return pc_delete(((struct held_store *)self)->c, key, klen);
}
static size_t hs_len(void *self)
{
    return pc_len(((struct held_store *)self)->c);
}
static const pc_backend_ops held_store_ops = {.size = sizeof(pc_backend_ops),
                                              .get = hs_get,
                                              .put = hs_put,
                                              .del = hs_del,
                                              .len = hs_len};

static int load_const(void *ctx, const void *key, size_t klen, pc_sink *out)
{
    long v = *(long *)ctx;

    (void)key;
    (void)klen;
    return pc_sink_set(out, &v, sizeof v) == PC_OK ? 0 : -1;
}

struct forgetter {
    pc_memo *m;
    int done; /* atomic */
};

static void *forget_k(void *p)
{
    struct forgetter *f = p;

    pc_memo_forget(f->m, "k", 1);
    __atomic_store_n(&f->done, 1, __ATOMIC_SEQ_CST);
    return NULL;
}

static long one = 1, two = 2;

static void *call_one(void *p)
{
    long got = 0;

    cr_assert_eq(
        pc_memo_call(p, "k", 1, load_const, &one, &got, sizeof got, NULL, NULL),
        PC_OK);
    cr_assert_eq(got, 1);
    return NULL;
}

/* Two forgets racing a store in progress: each returns only after the
 * store ended (the second used to find the flight gone from the table and
 * return at once, and the store then landed after it). */
Test(memo, a_second_forget_also_waits_for_the_store_in_progress, .timeout = 30)
{
    struct held_store h = {.m = PTHREAD_MUTEX_INITIALIZER,
                           .cv = PTHREAD_COND_INITIALIZER};
    pc_backend be = {&held_store_ops, &h};
    pc_memo *m;
    struct forgetter f1, f2;
    pthread_t tl, t1, t2;
    long got = 0;

    h.c = make_cache(64);
    cr_assert_not_null(h.c);
    cr_assert_eq(pc_memo_create(&be, &m), PC_OK);
    f1 = (struct forgetter){m, 0};
    f2 = f1;
    cr_assert_eq(pthread_create(&tl, NULL, call_one, m), 0);
    pthread_mutex_lock(&h.m);
    while (h.entered == 0) /* the load's store is in progress */
        pthread_cond_wait(&h.cv, &h.m);
    pthread_mutex_unlock(&h.m);
    cr_assert_eq(pthread_create(&t1, NULL, forget_k, &f1), 0);
    usleep(50000);
    cr_assert_eq(pthread_create(&t2, NULL, forget_k, &f2), 0);
    usleep(100000);
    cr_assert_not(__atomic_load_n(&f1.done, __ATOMIC_SEQ_CST) ||
                      __atomic_load_n(&f2.done, __ATOMIC_SEQ_CST),
                  "a forget returned while the store was in progress");
    pthread_mutex_lock(&h.m);
    h.go = 1;
    pthread_cond_broadcast(&h.cv);
    pthread_mutex_unlock(&h.m);
    pthread_join(tl, NULL);
    pthread_join(t1, NULL);
    pthread_join(t2, NULL);
    cr_assert_eq(
        pc_memo_call(m, "k", 1, load_const, &two, &got, sizeof got, NULL, NULL),
        PC_OK);
    cr_assert_eq(got, 2, "the forgotten load's value was kept");
    pc_memo_destroy(m); /* the backend has no destroy: the cache stays */
    pc_destroy(h.c);
}

/* ---- memoized functions that can fail ---- */

static long fetch_calls;
static int fetch_fails_with;

static int fetch_scaled(int64_t x, int64_t scale, int64_t *out)
{
    __atomic_add_fetch(&fetch_calls, 1, __ATOMIC_RELAXED);
    *out = -1; /* written even on failure: the wrapper must not pass it on */
    if (fetch_fails_with != 0)
        return fetch_fails_with;
    *out = x * scale;
    return 0;
}

PC_MEMOIZE_ERR(scaled, int64_t, fetch_scaled, (int64_t x, int64_t scale),
               (x, scale), PC_KEY_I64(x), PC_KEY_I64(scale))

/* A backend over a cache whose get, once armed, first forgets the key
 * through the memoizer and then finds a value stored meanwhile (another
 * process's, say): the leader's second look, after its flight began. */
struct forget_in_get {
    pc_cache *c;
    pc_memo *m;
    int gets, forget_at;
};

static pc_status fg_get(void *self, const void *key, size_t klen, void *buf,
                        size_t bufcap, size_t *vlen)
{
    struct forget_in_get *f = self;
    long v = 7;

    if (++f->gets == f->forget_at) {
        cr_assert_eq(pc_memo_forget(f->m, key, klen), PC_NOTFOUND);
        cr_assert_eq(pc_put(f->c, key, klen, &v, sizeof v), PC_OK);
    }
    return pc_get(f->c, key, klen, buf, bufcap, vlen);
}
static pc_status fg_put(void *self, const void *key, size_t klen,
                        const void *val, size_t vlen)
{
    return pc_put(((struct forget_in_get *)self)->c, key, klen, val, vlen);
}
static pc_status fg_del(void *self, const void *key, size_t klen)
{
    return pc_delete(((struct forget_in_get *)self)->c, key, klen);
}
static size_t fg_len(void *self)
{
    return pc_len(((struct forget_in_get *)self)->c);
}
static void fg_destroy(void *self)
{
    pc_destroy(((struct forget_in_get *)self)->c);
}
static const pc_backend_ops fg_ops = {
    .size = sizeof(pc_backend_ops),
    .get = fg_get,
    .put = fg_put,
    .del = fg_del,
    .len = fg_len,
    .destroy = fg_destroy,
};

static int load_eight(void *ctx, const void *key, size_t klen, pc_sink *out)
{
    long v = 8;

    (void)ctx, (void)key, (void)klen;
    return pc_sink_set(out, &v, sizeof v) == PC_OK ? 0 : -1;
}

/* A flight forgotten between its start and the leader's second look, which
 * then finds the key and abandons it: the forgotten flight ends, so later
 * forgets and loads of the key see no trace of it (it stayed on the
 * forgotten list once freed: the next flight of the key, at the same
 * address, made that list a cycle, and a forget looped for ever). */
Test(memo, a_forgotten_flight_abandoned_by_its_leader_leaves_no_trace,
     .timeout = 20)
{
    struct forget_in_get f = {.forget_at = 2};
    pc_backend be = {.ops = &fg_ops, .self = &f};
    pc_options o = {.capacity = 64};
    pc_flight *lead;
    long got = 0;
    size_t n = 0;

    cr_assert_eq(pc_create(&o, &f.c), PC_OK);
    cr_assert_eq(pc_memo_create(&be, &f.m), PC_OK);
    /* First look misses, the flight begins, the second look (forget, then
     * a value appears) hits: the leader abandons the forgotten flight. */
    cr_assert_eq(
        pc_memo_call(f.m, "k", 1, load_eight, NULL, &got, sizeof got, &n, NULL),
        PC_OK);
    cr_assert_eq(got, 7);
    for (int round = 0; round < 3; round++) {
        cr_assert_eq(pc_memo_forget(f.m, "k", 1), PC_OK, "round %d", round);
        cr_assert_eq(
            pc_memo_begin(f.m, "k", 1, &got, sizeof got, &n, NULL, &lead),
            PC_NOTFOUND);
        /* A forget while this thread leads: nothing is storing, so it
         * returns at once. */
        cr_assert_eq(pc_memo_forget(f.m, "k", 1), PC_NOTFOUND);
        got = 9;
        cr_assert_eq(pc_memo_finish(f.m, lead, 0, &got, sizeof got), PC_OK);
        cr_assert_eq(pc_memo_call(f.m, "k", 1, load_eight, NULL, &got,
                                  sizeof got, &n, NULL),
                     PC_OK);
        cr_assert_eq(got, 8, "the forgotten lead stored its value");
    }
    pc_memo_destroy(f.m);
}

Test(memo, a_failing_memoized_function_returns_eload_and_caches_nothing)
{
    pc_memo *m = make_memo(64);
    int64_t v = 77;
    int err = 0;

    cr_assert_not_null(m);
    fetch_calls = 0;
    fetch_fails_with = 42;
    cr_assert_eq(scaled(m, &v, &err, 6, 7), PC_ELOAD);
    cr_assert_eq(err, 42);
    cr_assert_eq(v, 77, "*out is written only on success");
    cr_assert_eq(scaled(m, &v, NULL, 6, 7), PC_ELOAD, "err may be NULL");
    cr_assert_eq(fetch_calls, 2, "a failure is not remembered");
    fetch_fails_with = 0;
    err = 0;
    cr_assert_eq(scaled(m, &v, &err, 6, 7), PC_OK);
    cr_assert_eq(v, 42);
    cr_assert_eq(scaled(m, &v, &err, 6, 7), PC_OK);
    cr_assert_eq(fetch_calls, 3, "a success is");
    cr_assert_eq(scaled_forget(m, 6, 7), PC_OK);
    cr_assert_eq(scaled(m, &v, &err, 6, 7), PC_OK);
    cr_assert_eq(fetch_calls, 4);
    pc_memo_destroy(m);
}

/* Callers waiting for a failing call get the same PC_ELOAD and code. */
static int fetch_slowly_failing(int64_t x, int64_t *out)
{
    __atomic_add_fetch(&fetch_calls, 1, __ATOMIC_RELAXED);
    usleep(100000);
    (void)x;
    (void)out;
    return 17;
}

PC_MEMOIZE_ERR(slow_fail, int64_t, fetch_slowly_failing, (int64_t x), (x),
               PC_KEY_I64(x))

struct fail_crowd {
    pc_memo *m;
    pthread_barrier_t start;
    pc_status st[CROWD];
    int err[CROWD];
};

struct fail_crowd_arg {
    struct fail_crowd *fc;
    int i;
};

static void *fail_crowd_member(void *p)
{
    struct fail_crowd_arg *a = p;
    int64_t v;

    pthread_barrier_wait(&a->fc->start);
    a->fc->st[a->i] = slow_fail(a->fc->m, &v, &a->fc->err[a->i], 5);
    return NULL;
}

Test(memo, waiters_of_a_failing_memoized_call_get_its_error)
{
    struct fail_crowd fc = {.m = make_memo(64)};
    struct fail_crowd_arg args[CROWD];
    pthread_t th[CROWD];

    cr_assert_not_null(fc.m);
    fetch_calls = 0;
    pthread_barrier_init(&fc.start, NULL, CROWD);
    for (int i = 0; i < CROWD; i++) {
        args[i] = (struct fail_crowd_arg){&fc, i};
        pthread_create(&th[i], NULL, fail_crowd_member, &args[i]);
    }
    for (int i = 0; i < CROWD; i++)
        pthread_join(th[i], NULL);
    for (int i = 0; i < CROWD; i++) {
        cr_assert_eq(fc.st[i], PC_ELOAD);
        cr_assert_eq(fc.err[i], 17);
    }
    /* All overlapped the first (100 ms) call, unless the machine stalled
     * a thread that long; then it ran the function itself. */
    cr_assert_leq(fetch_calls, CROWD);
    cr_assert_geq(fetch_calls, 1);
    pthread_barrier_destroy(&fc.start);
    pc_memo_destroy(fc.m);
}

/* The same, with every member certainly a waiter: the failing function
 * returns only once each member's miss is counted (a member's miss is
 * counted under the flights lock as it joins the flight, load.c), so all
 * but one wait for it and it runs once. (The test above cannot tell: its
 * bound, fetch_calls <= CROWD, holds with no single flight at all.) */
static pc_memo *gated_fail_memo;

static int fetch_failing_once_all_wait(int64_t x, int64_t *out)
{
    __atomic_add_fetch(&fetch_calls, 1, __ATOMIC_RELAXED);
    (void)x;
    (void)out;
    (void)TEST_WAIT_MISSES(pc_memo_stats, gated_fail_memo, CROWD);
    return 17;
}

PC_MEMOIZE_ERR(gated_fail, int64_t, fetch_failing_once_all_wait, (int64_t x),
               (x), PC_KEY_I64(x))

static void *gated_fail_member(void *p)
{
    struct fail_crowd_arg *a = p;
    int64_t v;

    pthread_barrier_wait(&a->fc->start);
    a->fc->st[a->i] = gated_fail(a->fc->m, &v, &a->fc->err[a->i], 5);
    return NULL;
}

Test(memo, waiters_of_a_failing_memoized_call_share_its_one_call)
{
    struct fail_crowd fc = {.m = make_memo(64)};
    struct fail_crowd_arg args[CROWD];
    pthread_t th[CROWD];

    cr_assert_not_null(fc.m);
    fetch_calls = 0;
    gated_fail_memo = fc.m;
    pthread_barrier_init(&fc.start, NULL, CROWD);
    for (int i = 0; i < CROWD; i++) {
        args[i] = (struct fail_crowd_arg){&fc, i};
        pthread_create(&th[i], NULL, gated_fail_member, &args[i]);
    }
    for (int i = 0; i < CROWD; i++)
        pthread_join(th[i], NULL);
    for (int i = 0; i < CROWD; i++) {
        cr_assert_eq(fc.st[i], PC_ELOAD);
        cr_assert_eq(fc.err[i], 17);
    }
    cr_assert_eq(fetch_calls, 1, "the function ran %ld times", fetch_calls);
    pthread_barrier_destroy(&fc.start);
    pc_memo_destroy(fc.m);
}

/* Key arguments that cannot be encoded make the wrapper return PC_EINVAL
 * (documented with PC_MEMOIZE), without calling func or storing anything;
 * so does a NULL memo. */
static int long_name_calls;
static double long_name_fn(const char *s)
{
    long_name_calls++;
    return (double)strlen(s);
}
PC_MEMOIZE(long_name, double, long_name_fn, (const char *s), (s), PC_KEY_STR(s))

Test(memo, a_key_that_cannot_be_encoded_is_einval)
{
    static char big[PC_KEY_MAX + 2];
    pc_memo *m = make_memo(16);
    double out = -1;

    cr_assert_not_null(m);
    memset(big, 'x', sizeof big - 1);
    cr_assert_eq(long_name(m, &out, big), PC_EINVAL);
    cr_assert_eq(long_name(NULL, &out, "x"), PC_EINVAL);
    cr_assert_eq(out, -1);
    cr_assert_eq(long_name_calls, 0, "func ran for a call that failed");
    cr_assert_eq(long_name(m, &out, "abc"), PC_OK);
    cr_assert_eq(out, 3);
    cr_assert_eq(long_name_calls, 1);
    pc_memo_destroy(m);
}

/* A memoized call whose key outgrows the key builder's inline buffer (a
 * long string argument) frees it on every path: a miss, a hit, a failure
 * of func, a refused call (NULL memo), and the _forget of a remembered and
 * of an unknown call. Allocations are counted from before the memo is made
 * to after it is destroyed. (A mutation that dropped the wrapper's
 * pc_key_free survived: no memoized function had a key that grew.) */
static long long_key_calls;
static int64_t long_key_len(const char *s)
{
    long_key_calls++;
    return (int64_t)strlen(s);
}
static int long_key_fails(const char *s, int64_t *out)
{
    (void)s;
    (void)out;
    return 5;
}
PC_MEMOIZE(long_key, int64_t, long_key_len, (const char *s), (s), PC_KEY_STR(s))
PC_MEMOIZE_ERR(long_key_err, int64_t, long_key_fails, (const char *s), (s),
               PC_KEY_STR(s))

Test(memo, a_memoized_call_with_a_long_key_frees_it_on_every_path)
{
    static char s[400], other[400];
    int64_t v = 0;
    int err = 0;
    long before;
    pc_memo *m;

    memset(s, 'k', sizeof s - 1);
    memset(other, 'o', sizeof other - 1);
    long_key_calls = 0;
    pc__alloc_track(1);
    before = pc__alloc_live();
    m = make_memo(16);
    cr_assert_not_null(m);
    cr_assert_eq(long_key(m, &v, s), PC_OK); /* miss: func runs */
    cr_assert_eq(v, (int64_t)sizeof s - 1);
    for (int i = 0; i < 10; i++)
        cr_assert_eq(long_key(m, &v, s), PC_OK); /* hits */
    cr_assert_eq(long_key_calls, 1);
    cr_assert_eq(long_key_err(m, &v, &err, s), PC_ELOAD);
    cr_assert_eq(err, 5);
    cr_assert_eq(long_key(NULL, &v, s), PC_EINVAL);
    cr_assert_eq(long_key_forget(m, s), PC_OK);
    cr_assert_eq(long_key_forget(m, other), PC_NOTFOUND);
    cr_assert_eq(long_key_forget(NULL, s), PC_EINVAL);
    pc_memo_destroy(m);
    cr_assert_eq(pc__alloc_live(), before, "%ld allocations leaked",
                 pc__alloc_live() - before);
    pc__alloc_track(0);
}

/* The cleanup handler a PC_MEMOIZE wrapper runs when its thread is
 * cancelled inside func (pc_memo_cancelled_, purecache.h) fails the lead
 * with ECANCELED, caching nothing, and frees the wrapper's key, which may
 * have outgrown its inline buffer. Called here directly, on a lead begun
 * as the wrapper begins it, so that the test does not depend on a
 * cancelled thread unwinding (which ASan misreports). (A mutation that
 * dropped the handler's pc_key_free survived: the cancellation tests'
 * keys never grew.) */
Test(memo, the_cancellation_handler_fails_the_lead_and_frees_a_long_key)
{
    static char s[400];
    struct pc_memo_lead_ l;
    pc_flight *lead = NULL;
    pc_stats st;
    int64_t v = 0;
    size_t n = 0;
    long before;
    pc_key k;
    pc_memo *m;

    memset(s, 'c', sizeof s - 1);
    pc__alloc_track(1);
    before = pc__alloc_live();
    m = make_memo(16);
    cr_assert_not_null(m);
    for (int round = 0; round < 2; round++) {
        pc_key_init_fn(&k, "long_key_len");
        pc_key_add_str(&k, s);
        cr_assert_eq(pc_key_finish(&k), PC_OK);
        cr_assert_gt(pc_key_len(&k), 256, "the key grew");
        cr_assert_eq(pc_memo_begin(m, pc_key_data(&k), pc_key_len(&k), &v,
                                   sizeof v, &n, NULL, &lead),
                     PC_NOTFOUND, "round %d: nothing was cached", round);
        cr_assert_not_null(lead);
        l = (struct pc_memo_lead_){m, lead, &k};
        pc_memo_cancelled_(&l); /* finishes the lead, frees the key */
        cr_assert_eq(pc_key_len(&k), 0, "the handler freed the key");
    }
    cr_assert_eq(pc_memo_stats(m, &st), PC_OK);
    cr_assert_eq(st.loader_errors, 2, "each cancelled lead failed");
    long_key_calls = 0;
    cr_assert_eq(long_key(m, &v, s), PC_OK, "the next call runs func");
    cr_assert_eq(v, (int64_t)sizeof s - 1);
    cr_assert_eq(long_key_calls, 1);
    pc_memo_destroy(m);
    cr_assert_eq(pc__alloc_live(), before, "%ld allocations leaked",
                 pc__alloc_live() - before);
    pc__alloc_track(0);
}

/* A value of another length stored under a memoized call's key (something
 * else wrote there) is PC_ERANGE, whether shorter, empty or longer than
 * ret_type: *out is not written and func does not run. (A mutation that
 * took a shorter value as PC_OK, *out partly filled, survived: no test
 * stored a value of another length under a wrapper's key.) */
static int load_n_bytes(void *ctx, const void *key, size_t klen, pc_sink *out)
{
    static const unsigned char bytes[16] = {1, 2,  3,  4,  5,  6,  7,  8,
                                            9, 10, 11, 12, 13, 14, 15, 16};

    (void)key;
    (void)klen;
    return pc_sink_set(out, bytes, *(size_t *)ctx) == PC_OK ? 0 : 1;
}

Test(memo, a_value_of_another_length_under_a_memoized_key_is_erange)
{
    static const size_t lens[] = {4, 0, 7, 9, 16};
    pc_memo *m = make_memo(64);

    cr_assert_not_null(m);
    for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
        unsigned char buf[16];
        size_t n = lens[i], got = 0;
        int64_t v = -5;
        pc_key k;

        pc_key_init_fn(&k, "twice_of"); /* twice(100)'s key */
        pc_key_add_i64(&k, 100);
        cr_assert_eq(pc_key_finish(&k), PC_OK);
        cr_assert_eq(pc_memo_call(m, pc_key_data(&k), pc_key_len(&k),
                                  load_n_bytes, &n, buf, sizeof buf, &got,
                                  NULL),
                     PC_OK);
        cr_assert_eq(got, n);
        twice_calls = 0;
        cr_assert_eq(twice(m, &v, 100), PC_ERANGE, "a %zu-byte value", n);
        cr_assert_eq(v, -5, "*out is written only on PC_OK");
        cr_assert_eq(twice_calls, 0, "a stored value is not recomputed");
        cr_assert_eq(twice_forget(m, 100), PC_OK);
        cr_assert_eq(twice(m, &v, 100), PC_OK);
        cr_assert_eq(v, 200);
        cr_assert_eq(twice_forget(m, 100), PC_OK);
        pc_key_free(&k);
    }
    pc_memo_destroy(m);
}

/* The _forget of a call whose key-args cannot be encoded is PC_EINVAL,
 * as the call itself is, and forgets nothing. (A mutation that passed the
 * key that failed to encode to pc_memo_forget anyway survived: it
 * returned PC_NOTFOUND, having asked the backend to delete bytes whose
 * value is unspecified after an error.) */
static double blob_len(const void *p, size_t n)
{
    (void)p;
    return (double)n;
}
PC_MEMOIZE(blob, double, blob_len, (const void *p, size_t n), (p, n),
           PC_KEY_BYTES(p, n))

Test(memo, forgetting_a_call_whose_key_cannot_be_encoded_is_einval)
{
    static char big[PC_KEY_MAX + 2];
    pc_memo *m = make_memo(16);
    pc_stats before, after;
    double out = -1;

    cr_assert_not_null(m);
    memset(big, 'x', sizeof big - 1);
    long_name_calls = 0;
    cr_assert_eq(long_name(m, &out, "abc"), PC_OK);
    cr_assert_eq(blob(m, &out, "", 0), PC_OK);
    cr_assert_eq(pc_memo_stats(m, &before), PC_OK);
    cr_assert_eq(long_name_forget(m, big), PC_EINVAL, "a key over the limit");
    cr_assert_eq(blob_forget(m, NULL, 3), PC_EINVAL, "NULL bytes, length 3");
    cr_assert_eq(long_name_forget(NULL, "abc"), PC_EINVAL, "a NULL memo");
    cr_assert_eq(pc_memo_stats(m, &after), PC_OK);
    cr_assert_eq(after.hits, before.hits);
    cr_assert_eq(after.misses, before.misses);
    cr_assert_eq(long_name(m, &out, "abc"), PC_OK);
    cr_assert_eq(out, 3);
    cr_assert_eq(blob(m, &out, "", 0), PC_OK);
    cr_assert_eq(out, 0);
    cr_assert_eq(long_name_calls, 1, "the remembered results are still there");
    pc_memo_destroy(m);
}
