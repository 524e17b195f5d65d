/*
 * Get-or-load against concurrent writes (issue 11, item 1): once a put,
 * delete or clear of a key has returned, no load that began before it
 * stores its value over it; the loading callers still get their value.
 * Also: one hit or one miss per call (item 4), and the time to live of
 * loaded values (pc_get_or_load_ex, pc_memo_create_ex).
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <string.h>
#include <unistd.h>

#include "core.h"
#include "flight.h"
#include "purecache.h"
#include "testlib.h"

/* A loader held at a gate until the test lets it go, then loading value. */
struct gate {
    struct test_gate t;
    const char *value;
};

#define GATE_INIT(v)                                                           \
    {                                                                          \
        TEST_GATE_INIT, v                                                      \
    }

static int gated_load(void *ctx, const void *key, size_t klen, pc_sink *out)
{
    struct gate *g = ctx;

    (void)key;
    (void)klen;
    test_gate_pass(&g->t);
    return pc_sink_set(out, g->value, strlen(g->value)) == PC_OK ? 0 : 1;
}

struct loading {
    pc_cache *c;
    pc_memo *memo; /* or NULL: pc_get_or_load on c */
    struct gate *g;
    pc_status st;
    char got[32];
    size_t n;
};

static void *load_k(void *p)
{
    struct loading *l = p;

    if (l->memo != NULL)
        l->st = pc_memo_call(l->memo, "k", 1, gated_load, l->g, l->got,
                             sizeof l->got, &l->n, NULL);
    else
        l->st = pc_get_or_load(l->c, "k", 1, gated_load, l->g, l->got,
                               sizeof l->got, &l->n, NULL);
    return NULL;
}

enum write_kind { PUT, DELETE, CLEAR, PUT_OTHER, PUT_EX };

/* Start a load of "k", do the write while the loader runs, let it finish;
 * returns what pc_get then finds for "k" (into got/n). */
static pc_status race(pc_cache *c, pc_memo *memo, enum write_kind kind,
                      char *got, size_t *n)
{
    struct gate g = GATE_INIT("loaded");
    struct loading l = {.c = c, .memo = memo, .g = &g, .st = PC_EINVAL};
    pthread_t th;

    cr_assert_eq(pthread_create(&th, NULL, load_k, &l), 0);
    test_gate_wait(&g.t, 1);
    switch (kind) {
    case PUT:
        cr_assert_eq(pc_put(c, "k", 1, "fresh", 5), PC_OK);
        break;
    case PUT_EX: {
        pc_put_args a = {.ttl_ms = PC_TTL_NEVER};

        cr_assert_eq(pc_put_ex(c, "k", 1, "fresh", 5, &a), PC_OK);
        break;
    }
    case DELETE:
        cr_assert_eq(pc_delete(c, "k", 1), PC_NOTFOUND);
        break;
    case CLEAR:
        pc_clear(c);
        break;
    case PUT_OTHER:
        cr_assert_eq(pc_put(c, "other", 5, "x", 1), PC_OK);
        break;
    }
    test_gate_open(&g.t);
    pthread_join(th, NULL);
    /* The loading caller gets the loaded value whatever happened. */
    cr_assert_eq(l.st, PC_OK);
    cr_assert_eq(l.n, 6);
    cr_assert_eq(memcmp(l.got, "loaded", 6), 0);
    return pc_get(c, "k", 1, got, 32, n);
}

Test(load, a_put_during_a_load_wins)
{
    pc_cache *c = make_cache(16);
    char got[32];
    size_t n;

    cr_assert_eq(race(c, NULL, PUT, got, &n), PC_OK);
    cr_assert_eq(n, 5, "the load overwrote the newer put");
    cr_assert_eq(memcmp(got, "fresh", 5), 0);
    pc_delete(c, "k", 1);
    cr_assert_eq(race(c, NULL, PUT_EX, got, &n), PC_OK);
    cr_assert_eq(memcmp(got, "fresh", 5), 0);
    pc_destroy(c);
}

Test(load, a_delete_during_a_load_wins)
{
    pc_cache *c = make_cache(16);
    char got[32];
    size_t n;

    /* The key is absent throughout: the delete finds nothing, yet the value
     * the load read before it (say, from a database row the deleter just
     * changed) must not be cached after it. */
    cr_assert_eq(race(c, NULL, DELETE, got, &n), PC_NOTFOUND);
    pc_destroy(c);
}

Test(load, a_clear_during_a_load_wins)
{
    pc_cache *c = make_cache(16);
    char got[32];
    size_t n;

    cr_assert_eq(race(c, NULL, CLEAR, got, &n), PC_NOTFOUND);
    pc_destroy(c);
}

static int fresh_load(void *ctx, const void *key, size_t klen, pc_sink *out)
{
    (void)ctx;
    (void)key;
    (void)klen;
    return pc_sink_set(out, "fresh", 5) == PC_OK ? 0 : 1;
}

struct late_call {
    pc_cache *c;
    pc_status st;
    char got[32];
    size_t n;
    int done;
};

static void *late_get_or_load(void *p)
{
    struct late_call *lc = p;

    lc->st = pc_get_or_load(lc->c, "k", 1, fresh_load, NULL, lc->got,
                            sizeof lc->got, &lc->n, NULL);
    __atomic_store_n(&lc->done, 1, __ATOMIC_RELEASE);
    return NULL;
}

/* Cache-aside invalidation: the source changes, then the key is deleted
 * (or the cache cleared). A get-or-load that begins after that must load
 * anew, not join a load that began before (and may have read the source
 * before it changed): it returns "fresh" while the old load is still
 * held. (Joining would block it until the gate opens: 10 s is the
 * failure detector, not a timing target.) PUT: an update instead, put
 * and then evicted (capacity 1, another key put) before the call begins
 * (helper-62: pc_put did not detach the older load, so the call joined it
 * and got the value the put replaced). */
static void load_after(enum write_kind kind)
{
    pc_cache *c = make_cache(kind == PUT ? 1 : 16);
    char got[32];
    size_t n;
    struct gate g = GATE_INIT("loaded");
    struct loading l = {.c = c, .g = &g, .st = PC_EINVAL};
    struct late_call lc = {.c = c, .st = PC_EINVAL};
    pthread_t old_load, late;
    int waited = 0;

    cr_assert_eq(pthread_create(&old_load, NULL, load_k, &l), 0);
    test_gate_wait(&g.t, 1);
    if (kind == DELETE) {
        cr_assert_eq(pc_delete(c, "k", 1), PC_NOTFOUND);
    } else if (kind == PUT) {
        cr_assert_eq(pc_put(c, "k", 1, "new", 3), PC_OK);
        cr_assert_eq(pc_put(c, "x", 1, "x", 1), PC_OK); /* evicts k */
        cr_assert_eq(pc_get(c, "k", 1, got, sizeof got, &n), PC_NOTFOUND);
    } else {
        pc_clear(c);
    }
    cr_assert_eq(pthread_create(&late, NULL, late_get_or_load, &lc), 0);
    while (!__atomic_load_n(&lc.done, __ATOMIC_ACQUIRE) && waited++ < 10000)
        usleep(1000);
    test_gate_open(&g.t);
    pthread_join(late, NULL);
    pthread_join(old_load, NULL);
    cr_assert_eq(lc.st, PC_OK);
    cr_assert_eq(lc.n, 5);
    cr_assert_eq(memcmp(lc.got, "fresh", 5), 0,
                 "a call begun after the write joined the load begun before");
    cr_assert_eq(l.st, PC_OK); /* the old load's caller still gets its own */
    cr_assert_eq(memcmp(l.got, "loaded", 6), 0);
    /* And the cache keeps the fresh value, not the old load's. */
    cr_assert_eq(pc_get(c, "k", 1, lc.got, sizeof lc.got, &lc.n), PC_OK);
    cr_assert_eq(memcmp(lc.got, "fresh", 5), 0);
    pc_destroy(c);
}

Test(load, a_get_or_load_after_a_delete_or_clear_loads_anew)
{
    load_after(DELETE);
    load_after(CLEAR);
}

/* A clear detaches every load in flight, not only one per chain of the
 * flight table: with more loads in flight than the table has chains
 * (64), two share one, and a get-or-load begun after the clear must load
 * anew for every key. (As in load_after, 10 s is the failure detector.) */
#define CLEAR_LOADS 65

struct key_loading {
    pc_cache *c;
    struct gate *g;
    uint64_t key;
    pc_status st;
};

static void *load_key(void *p)
{
    struct key_loading *l = p;
    char got[32];
    size_t n;

    l->st = pc_get_or_load(l->c, &l->key, sizeof l->key, gated_load, l->g, got,
                           sizeof got, &n, NULL);
    return NULL;
}

struct late_keys {
    pc_cache *c;
    int fresh; /* how many keys loaded anew */
    int done;
};

static void *late_loads(void *p)
{
    struct late_keys *lk = p;

    for (uint64_t k = 0; k < CLEAR_LOADS; k++) {
        char got[32];
        size_t n = 0;

        if (pc_get_or_load(lk->c, &k, sizeof k, fresh_load, NULL, got,
                           sizeof got, &n, NULL) == PC_OK &&
            n == 5 && memcmp(got, "fresh", 5) == 0)
            lk->fresh++;
    }
    __atomic_store_n(&lk->done, 1, __ATOMIC_RELEASE);
    return NULL;
}

Test(load, a_clear_detaches_every_load_in_flight, .timeout = 60)
{
    pc_cache *c = make_cache(4 * CLEAR_LOADS);
    struct gate g = GATE_INIT("loaded");
    struct key_loading l[CLEAR_LOADS];
    pthread_t th[CLEAR_LOADS], late;
    struct late_keys lk = {.c = c};
    int waited = 0;

    cr_assert_not_null(c);
    for (int i = 0; i < CLEAR_LOADS; i++) {
        l[i] = (struct key_loading){
            .c = c, .g = &g, .key = (uint64_t)i, .st = PC_EINVAL};
        cr_assert_eq(pthread_create(&th[i], NULL, load_key, &l[i]), 0);
    }
    test_gate_wait(&g.t, CLEAR_LOADS);
    pc_clear(c);
    cr_assert_eq(pthread_create(&late, NULL, late_loads, &lk), 0);
    while (!__atomic_load_n(&lk.done, __ATOMIC_ACQUIRE) && waited++ < 10000)
        usleep(1000);
    test_gate_open(&g.t);
    pthread_join(late, NULL);
    for (int i = 0; i < CLEAR_LOADS; i++) {
        pthread_join(th[i], NULL);
        cr_assert_eq(l[i].st, PC_OK);
    }
    cr_assert_eq(lk.fresh, CLEAR_LOADS,
                 "%d of %d calls begun after the clear joined a load begun "
                 "before it",
                 CLEAR_LOADS - lk.fresh, CLEAR_LOADS);
    pc_destroy(c);
}

Test(load, writes_of_other_keys_do_not_stop_a_load_from_caching)
{
    pc_cache *c = make_cache(16);
    char got[32];
    size_t n;

    cr_assert_eq(race(c, NULL, PUT_OTHER, got, &n), PC_OK);
    cr_assert_eq(n, 6);
    cr_assert_eq(memcmp(got, "loaded", 6), 0);
    /* and a load with no write at all caches as before */
    pc_delete(c, "k", 1);
    struct gate open = GATE_INIT("again");
    open.t.go = 1;
    cr_assert_eq(
        pc_get_or_load(c, "k", 1, gated_load, &open, NULL, 0, NULL, NULL),
        PC_ERANGE);
    cr_assert_eq(pc_get(c, "k", 1, got, sizeof got, &n), PC_OK);
    cr_assert_eq(memcmp(got, "again", 5), 0);
    pc_destroy(c);
}

Test(load, the_memoizer_over_a_cache_loses_to_writes_too)
{
    pc_cache *c = make_cache(16);
    pc_backend be;
    pc_memo *m;
    char got[32];
    size_t n;

    cr_assert_eq(pc_backend_from_cache(c, &be), PC_OK);
    cr_assert_eq(pc_memo_create(&be, &m), PC_OK);
    cr_assert_eq(race(c, m, PUT, got, &n), PC_OK);
    cr_assert_eq(memcmp(got, "fresh", 5), 0);
    pc_delete(c, "k", 1);
    cr_assert_eq(race(c, m, DELETE, got, &n), PC_NOTFOUND);
    cr_assert_eq(race(c, m, PUT_OTHER, got, &n), PC_OK);
    cr_assert_eq(memcmp(got, "loaded", 6), 0);
    pc_memo_destroy(m); /* and the cache */
}

/* "Evictions and expiry break no lease" (purecache.h, pc_get_or_load): a
 * load in flight while pc_expire removes the key's expired entry, or
 * while a lowered capacity evicts other keys, still stores its value. */
Test(load, expiry_and_evictions_during_a_load_break_no_lease)
{
    for (int how = 0; how < 2; how++) {
        pc_options o = test_opts(4);
        struct gate g = GATE_INIT("loaded");
        struct loading l = {.g = &g, .st = PC_EINVAL};
        pthread_t th;
        char got[32];
        size_t n = 0;

        o.now_ms = test_now;
        l.c = make_cache_opts(&o);
        cr_assert_not_null(l.c);
        if (how == 0) { /* k's entry expired: the load's miss */
            pc_put_args a = {.ttl_ms = 10};

            cr_assert_eq(pc_put_ex(l.c, "k", 1, "old", 3, &a), PC_OK);
            test_advance(10);
        } else {
            for (uint64_t k = 0; k < 4; k++)
                cr_assert_eq(put_u64(l.c, k, k), PC_OK);
        }
        cr_assert_eq(pthread_create(&th, NULL, load_k, &l), 0);
        test_gate_wait(&g.t, 1);
        if (how == 0)
            cr_assert_eq(pc_expire(l.c), 1);
        else
            cr_assert_eq(pc_set_capacity(l.c, 2), PC_OK);
        test_gate_open(&g.t);
        pthread_join(th, NULL);
        cr_assert_eq(l.st, PC_OK);
        cr_assert_eq(pc_get(l.c, "k", 1, got, sizeof got, &n), PC_OK,
                     "%s broke the load's lease: nothing cached",
                     how == 0 ? "pc_expire" : "a lowered capacity");
        cr_assert_eq(n, 6);
        cr_assert_eq(memcmp(got, "loaded", 6), 0);
        pc_destroy(l.c);
    }
}

/* Many loads and writes of a few keys at once: each key's final value is
 * the last write's unless a load that began after that write stored. With
 * distinct values per write and per load, "stale" means: a value from a
 * load that began before the last completed write. Checked by version
 * numbers: writes store even versions, loads odd ones read from a
 * "database" counter they sample when they begin. */
#define KEYS 4
#define ROUNDS 3000

struct db {
    uint64_t version[KEYS]; /* the source of truth (atomic) */
    pc_cache *c;
    int stop;
};

struct db_load {
    struct db *db;
    int key;
};

static int db_loader(void *ctx, const void *key, size_t klen, pc_sink *out)
{
    struct db_load *dl = ctx;
    uint64_t v = __atomic_load_n(&dl->db->version[dl->key], __ATOMIC_ACQUIRE);

    (void)key;
    (void)klen;
    if (v % 7 == 0)
        usleep(50); /* widen the window now and then */
    return pc_sink_set(out, &v, sizeof v) == PC_OK ? 0 : 1;
}

static void *db_reader(void *p)
{
    struct db *db = p;
    unsigned seed = 1;

    while (!__atomic_load_n(&db->stop, __ATOMIC_ACQUIRE)) {
        int k = (int)(rand_r(&seed) % KEYS);
        struct db_load dl = {db, k};
        uint64_t v;

        pc_get_or_load(db->c, &k, sizeof k, db_loader, &dl, &v, sizeof v, NULL,
                       NULL);
    }
    return NULL;
}

Test(load, cache_aside_with_invalidation_never_ends_stale, .timeout = 120)
{
    struct db db = {.c = make_cache(64)};
    pthread_t r[2];

    for (int i = 0; i < 2; i++)
        cr_assert_eq(pthread_create(&r[i], NULL, db_reader, &db), 0);
    for (int round = 0; round < ROUNDS; round++) {
        int k = round % KEYS;

        /* Update the source, then invalidate (delete) the cached copy. */
        __atomic_add_fetch(&db.version[k], 1, __ATOMIC_RELEASE);
        pc_delete(db.c, &k, sizeof k);
        if (round % 64 == 0)
            usleep(100);
    }
    __atomic_store_n(&db.stop, 1, __ATOMIC_RELEASE);
    for (int i = 0; i < 2; i++)
        pthread_join(r[i], NULL);
    /* Every value still cached is the current version: a load that read an
     * older one began before the delete that followed its version. */
    for (int k = 0; k < KEYS; k++) {
        uint64_t v;

        if (pc_get(db.c, &k, sizeof k, &v, sizeof v, NULL) == PC_OK)
            cr_assert_eq(
                v, db.version[k], "key %d: cached version %llu, source %llu", k,
                (unsigned long long)v, (unsigned long long)db.version[k]);
    }
    pc_destroy(db.c);
}

/* ---- statistics: one hit or one miss per call ---- */

static int quick_load(void *ctx, const void *key, size_t klen, pc_sink *out)
{
    (void)ctx;
    return pc_sink_set(out, key, klen) == PC_OK ? 0 : 1;
}

Test(load, each_call_counts_one_hit_or_one_miss)
{
    pc_cache *c = make_cache(16);
    pc_stats s;

    cr_assert_eq(
        pc_get_or_load(c, "a", 1, quick_load, NULL, NULL, 0, NULL, NULL),
        PC_ERANGE);
    pc_stats_get(c, &s);
    cr_assert_eq(s.misses, 1, "the loading call counted %llu misses",
                 (unsigned long long)s.misses);
    cr_assert_eq(s.hits, 0);
    cr_assert_eq(s.loader_calls, 1);
    cr_assert_eq(
        pc_get_or_load(c, "a", 1, quick_load, NULL, NULL, 0, NULL, NULL),
        PC_ERANGE);
    pc_stats_get(c, &s);
    cr_assert_eq(s.misses, 1);
    cr_assert_eq(s.hits, 1);
    cr_assert_eq(s.loader_calls, 1);
    pc_destroy(c);
}

#define CROWD 8

struct crowd {
    pc_cache *c;
    struct gate *g;
    pthread_barrier_t start;
};

static void *crowd_member(void *p)
{
    struct crowd *cr = p;
    char buf[16];

    pthread_barrier_wait(&cr->start);
    pc_get_or_load(cr->c, "k", 1, gated_load, cr->g, buf, sizeof buf, NULL,
                   NULL);
    return NULL;
}

Test(load, waiters_and_the_loader_count_one_miss_each, .timeout = 60)
{
    struct gate g = GATE_INIT("v");
    struct crowd cr = {.c = make_cache(16), .g = &g};
    pthread_t th[CROWD];
    pc_stats s;

    pthread_barrier_init(&cr.start, NULL, CROWD + 1);
    for (int i = 0; i < CROWD; i++)
        cr_assert_eq(pthread_create(&th[i], NULL, crowd_member, &cr), 0);
    pthread_barrier_wait(&cr.start);
    test_gate_wait(&g.t, 1);
    usleep(50000); /* let the others reach the flight (or not: either way) */
    test_gate_open(&g.t);
    for (int i = 0; i < CROWD; i++)
        pthread_join(th[i], NULL);
    pc_stats_get(cr.c, &s);
    cr_assert_eq(s.hits + s.misses, CROWD, "%llu hits + %llu misses",
                 (unsigned long long)s.hits, (unsigned long long)s.misses);
    cr_assert_geq(s.misses, 1);
    cr_assert_eq(s.loader_calls, 1);
    pthread_barrier_destroy(&cr.start);
    pc_destroy(cr.c);
}

/* ---- time to live of loaded values ---- */

Test(load, get_or_load_ex_stores_with_its_ttl)
{
    pc_options o = test_opts(16);
    pc_load_args a = {.ttl_ms = 100};
    pc_cache *c;

    o.now_ms = test_now;
    o.ttl_ms = 1000; /* the default, for the call without args */
    c = make_cache_opts(&o);
    cr_assert_not_null(c);
    cr_assert_eq(
        pc_get_or_load_ex(c, "a", 1, quick_load, NULL, NULL, 0, NULL, NULL, &a),
        PC_ERANGE);
    cr_assert_eq(pc_get_or_load_ex(c, "b", 1, quick_load, NULL, NULL, 0, NULL,
                                   NULL, NULL),
                 PC_ERANGE);
    a.ttl_ms = PC_TTL_NEVER;
    cr_assert_eq(
        pc_get_or_load_ex(c, "n", 1, quick_load, NULL, NULL, 0, NULL, NULL, &a),
        PC_ERANGE);
    test_advance(99);
    cr_assert_eq(pc_get(c, "a", 1, NULL, 0, NULL), PC_ERANGE);
    test_advance(1);
    cr_assert_eq(pc_get(c, "a", 1, NULL, 0, NULL), PC_NOTFOUND, "a expired");
    cr_assert_eq(pc_get(c, "b", 1, NULL, 0, NULL), PC_ERANGE);
    test_advance(900);
    cr_assert_eq(pc_get(c, "b", 1, NULL, 0, NULL), PC_NOTFOUND, "b expired");
    cr_assert_eq(pc_get(c, "n", 1, NULL, 0, NULL), PC_ERANGE, "n never does");
    pc_destroy(c);
}

static pc_status nothing_get(void *self, const void *key, size_t klen,
                             void *buf, size_t bufcap, size_t *vlen)
{
    (void)self, (void)key, (void)klen, (void)buf, (void)bufcap, (void)vlen;
    return PC_NOTFOUND;
}

static pc_status nothing_put(void *self, const void *key, size_t klen,
                             const void *val, size_t vlen)
{
    (void)self, (void)key, (void)klen, (void)val, (void)vlen;
    return PC_OK;
}

static pc_status nothing_del(void *self, const void *key, size_t klen)
{
    (void)self, (void)key, (void)klen;
    return PC_NOTFOUND;
}

static size_t nothing_len(void *self)
{
    (void)self;
    return 0;
}

Test(load, memoizer_passes_its_ttl_to_the_backend)
{
    pc_options o = test_opts(16);
    pc_memo_options mo = {.ttl_ms = 50};
    pc_backend be;
    pc_memo *m;
    pc_cache *c;
    char buf[8];

    o.now_ms = test_now;
    c = make_cache_opts(&o);
    cr_assert_eq(pc_backend_from_cache(c, &be), PC_OK);
    cr_assert_eq(pc_memo_create_ex(&be, &mo, &m), PC_OK);
    cr_assert_eq(
        pc_memo_call(m, "a", 1, quick_load, NULL, buf, sizeof buf, NULL, NULL),
        PC_OK);
    cr_assert_eq(pc_get(c, "a", 1, NULL, 0, NULL), PC_ERANGE);
    test_advance(50);
    cr_assert_eq(pc_get(c, "a", 1, NULL, 0, NULL), PC_NOTFOUND);
    pc_memo_destroy(m);

    /* A backend without put_ex cannot honour a ttl: refused up front. */
    static const pc_backend_ops v1 = {
        .size = offsetof(pc_backend_ops, put_ex),
        .get = nothing_get,
        .put = nothing_put,
        .del = nothing_del,
        .len = nothing_len,
    };
    pc_backend plain = {.ops = &v1, .self = NULL};
    m = (pc_memo *)0x1;
    cr_assert_eq(pc_memo_create_ex(&plain, &mo, &m), PC_EINVAL);
    cr_assert_eq(m, (pc_memo *)0x1, "nothing created");
    mo.ttl_ms = 0;
    cr_assert_eq(pc_memo_create_ex(&plain, &mo, &m), PC_OK);
    pc_memo_destroy(m);
}

/* A loader that must never run: the call was refused first. */
static int counting_load(void *ctx, const void *key, size_t klen, pc_sink *out)
{
    ++*(int *)ctx;
    return pc_sink_set(out, key, klen) == PC_OK ? 0 : 1;
}

Test(load, bad_arguments_of_the_ex_calls_are_refused_and_change_nothing)
{
    pc_cache *c = make_cache(16);
    char big[PC_KEY_MAX + 1] = {0}, buf[8];
    pc_load_args a = {.ttl_ms = 100};
    int runs = 0;
    pc_backend be, no_ops = {.ops = NULL, .self = NULL};
    pc_memo *m = (pc_memo *)0x1;
    pc_memo_options mo = {.ttl_ms = 10};

    cr_assert_not_null(c);
    cr_assert_eq(put_u64(c, 1, 1), PC_OK);
    cr_assert_eq(pc_get_or_load_ex(NULL, "k", 1, counting_load, &runs, buf,
                                   sizeof buf, NULL, NULL, &a),
                 PC_EINVAL);
    cr_assert_eq(pc_get_or_load_ex(c, "k", 1, NULL, &runs, buf, sizeof buf,
                                   NULL, NULL, &a),
                 PC_EINVAL);
    cr_assert_eq(pc_get_or_load_ex(c, NULL, 1, counting_load, &runs, buf,
                                   sizeof buf, NULL, NULL, &a),
                 PC_EINVAL);
    cr_assert_eq(pc_get_or_load_ex(c, big, sizeof big, counting_load, &runs,
                                   buf, sizeof buf, NULL, NULL, &a),
                 PC_EINVAL);
    cr_assert_eq(pc_get_or_load_ex(c, "k", 1, counting_load, &runs, NULL, 8,
                                   NULL, NULL, &a),
                 PC_EINVAL);
    cr_assert_eq(runs, 0, "a refused call ran its loader");
    cr_assert_eq(pc_len(c), 1u, "a refused call changed the cache");
    cr_assert_eq(pc_get(c, "k", 1, NULL, 0, NULL), PC_NOTFOUND);

    cr_assert_eq(pc_memo_create_ex(NULL, &mo, &m), PC_EINVAL);
    cr_assert_eq(pc_memo_create_ex(&no_ops, &mo, &m), PC_EINVAL);
    cr_assert_eq(m, (pc_memo *)0x1, "nothing created");
    cr_assert_eq(pc_backend_from_cache(c, &be), PC_OK);
    cr_assert_eq(pc_memo_create_ex(&be, &mo, NULL), PC_EINVAL);
    cr_assert_eq(pc_len(c), 1u);
    pc_destroy(c);
}

Test(load, a_get_or_load_begun_after_a_put_never_returns_what_it_replaced,
     .timeout = 60)
{
    load_after(PUT);
}

/* A memoizer over a cache with a removal
 * listener: the listener, on an entry's expiry, forgets that call in the
 * memoizer (the listener may call anything but pc_destroy, purecache.h).
 * A load's store replaces the key's own expired entry, and the listener
 * hears of it (helper-62: it ran inside that store, between
 * pc__flight_store_begin and _end, so pc_memo_forget waited for the store
 * in progress of its own thread for ever; Criterion's timeout fails a
 * hang). */
static pc_memo *expiry_memo;

static void forget_on_expiry(void *ctx, const void *key, size_t klen,
                             const void *val, size_t vlen,
                             pc_removal_cause cause)
{
    (void)ctx;
    (void)val;
    (void)vlen;
    if (cause == PC_REMOVED_EXPIRED && expiry_memo != NULL)
        (void)pc_memo_forget(expiry_memo, key, klen);
}

Test(load, a_listener_may_forget_the_memoized_call_whose_store_reports_it,
     .timeout = 10)
{
    pc_options o = test_opts(16);
    pc_memo_options mo = {.ttl_ms = 100};
    pc_backend be;
    pc_cache *c;
    char got[32];
    size_t n;

    o.now_ms = test_now;
    o.on_removal = forget_on_expiry;
    c = make_cache_opts(&o);
    cr_assert_not_null(c);
    cr_assert_eq(pc_backend_from_cache(c, &be), PC_OK);
    cr_assert_eq(pc_memo_create_ex(&be, &mo, &expiry_memo), PC_OK);
    cr_assert_eq(pc_memo_call(expiry_memo, "k", 1, fresh_load, NULL, got,
                              sizeof got, &n, NULL),
                 PC_OK);
    test_advance(200); /* "k" expires, still present */
    /* Misses, loads, stores over the expired entry: the listener runs
     * inside the store and forgets "k". */
    cr_assert_eq(pc_memo_call(expiry_memo, "k", 1, fresh_load, NULL, got,
                              sizeof got, &n, NULL),
                 PC_OK);
    pc_memo_destroy(expiry_memo);
    expiry_memo = NULL;
}

static int failing_load(void *ctx, const void *key, size_t klen, pc_sink *out)
{
    (void)ctx;
    (void)key;
    (void)klen;
    (void)out;
    return 42;
}

static int ok_load(void *ctx, const void *key, size_t klen, pc_sink *out)
{
    (void)key;
    (void)klen;
    return pc_sink_set(out, ctx, strlen(ctx)) == PC_OK ? 0 : 1;
}

/* A failed load ends its lease like a successful one: loads, failed or
 * not, and writes of the key alternate, and each successful load caches
 * its value (a failed load's lease left registered with the shard was
 * the freed flight's memory, which the next flight of the key reused and
 * registered again: a list that looped into itself). */
Test(load, a_failed_load_leaves_no_lease_behind, .timeout = 20)
{
    pc_cache *c = make_cache(64);
    char got[32];
    size_t n;
    int err;

    for (int i = 0; i < 200; i++) {
        err = 0;
        cr_assert_eq(pc_get_or_load(c, "k", 1, failing_load, NULL, got,
                                    sizeof got, &n, &err),
                     PC_ELOAD);
        cr_assert_eq(err, 42);
        cr_assert_eq(pc_get(c, "k", 1, got, sizeof got, &n), PC_NOTFOUND);
        cr_assert_eq(pc_get_or_load(c, "k", 1, ok_load, "loaded", got,
                                    sizeof got, &n, NULL),
                     PC_OK);
        cr_assert_eq(pc_get(c, "k", 1, got, sizeof got, &n), PC_OK,
                     "round %d: the successful load was cached", i);
        cr_assert_eq(n, 6);
        cr_assert_eq(memcmp(got, "loaded", 6), 0);
        cr_assert_eq(pc_put(c, "k", 1, "put", 3), PC_OK);
        cr_assert_eq(pc_delete(c, "k", 1), PC_OK);
    }
    pc_stats s;
    cr_assert_eq(pc_stats_get(c, &s), PC_OK);
    cr_assert_eq(s.loader_errors, 200);
    pc_destroy(c);
}

/* A forgotten load (pc_memo_forget while its leader holds the flight)
 * stores nothing and ends its lease all the same: forgotten loads,
 * successful loads and writes of the key alternate through a memoizer over
 * the cache, and each successful load caches its value. */
Test(load, a_forgotten_load_leaves_no_lease_behind, .timeout = 20)
{
    pc_cache *c = make_cache(64);
    pc_backend be;
    pc_memo *m;
    char got[32];
    size_t n;

    cr_assert_eq(pc_backend_from_cache(c, &be), PC_OK);
    cr_assert_eq(pc_memo_create(&be, &m), PC_OK);
    for (int i = 0; i < 200; i++) {
        pc_flight *lead = NULL;

        cr_assert_eq(pc_memo_begin(m, "k", 1, got, sizeof got, &n, NULL, &lead),
                     PC_NOTFOUND);
        cr_assert_not_null(lead);
        cr_assert_eq(pc_memo_forget(m, "k", 1), PC_NOTFOUND);
        cr_assert_eq(pc_memo_finish(m, lead, 0, "forgotten", 9), PC_OK);
        cr_assert_eq(pc_get(c, "k", 1, got, sizeof got, &n), PC_NOTFOUND,
                     "round %d: a forgotten load was cached", i);
        cr_assert_eq(pc_memo_call(m, "k", 1, ok_load, "loaded", got, sizeof got,
                                  &n, NULL),
                     PC_OK);
        cr_assert_eq(pc_get(c, "k", 1, got, sizeof got, &n), PC_OK,
                     "round %d: the successful load was cached", i);
        cr_assert_eq(n, 6);
        cr_assert_eq(memcmp(got, "loaded", 6), 0);
        cr_assert_eq(pc_put(c, "k", 1, "put", 3), PC_OK);
        cr_assert_eq(pc_delete(c, "k", 1), PC_OK);
    }
    pc_memo_destroy(m); /* and the cache */
}

/* Every flight unlinks when its load ends. Puts and deletes read the flight
 * table's count of linked flights to skip its lock (pc__flight_none,
 * cache.c): counted while a load runs, the count must be back to none once
 * every load has ended, whether it succeeded, failed, or had its key
 * written meanwhile. (A mutation that left the count raised by each
 * unlink survived: every later put then took the process-wide flights
 * lock, a cost no result shows.) */
Test(load, the_flight_table_counts_no_flight_once_loads_end, .timeout = 20)
{
    pc_cache *c = make_cache(64);
    struct gate g = GATE_INIT("loaded");
    struct loading l = {.c = c, .g = &g, .st = PC_EINVAL};
    char got[32];
    size_t n;
    int err = 0;
    pthread_t th;

    cr_assert(pc__flight_none(c->flights));
    cr_assert_eq(pthread_create(&th, NULL, load_k, &l), 0);
    test_gate_wait(&g.t, 1);
    cr_assert_not(pc__flight_none(c->flights), "a load in flight uncounted");
    cr_assert_eq(pc_put(c, "k", 1, "fresh", 5), PC_OK); /* breaks its lease */
    test_gate_open(&g.t);
    pthread_join(th, NULL);
    cr_assert_eq(l.st, PC_OK);
    cr_assert(pc__flight_none(c->flights), "a written-over load left a count");
    cr_assert_eq(pc_get_or_load(c, "f", 1, failing_load, NULL, got, sizeof got,
                                &n, &err),
                 PC_ELOAD);
    cr_assert(pc__flight_none(c->flights), "a failed load left a count");
    cr_assert_eq(
        pc_get_or_load(c, "o", 1, ok_load, "loaded", got, sizeof got, &n, NULL),
        PC_OK);
    cr_assert(pc__flight_none(c->flights), "a load left a count");
    pc_destroy(c);
}
