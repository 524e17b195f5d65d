/*
 * Exact LRU, differential: random sequences of get/put/delete/clear on a
 * small key space, checked op for op (status, value, length) against an
 * in-test reference LRU of the same capacity; the same on thousands of
 * keys under a byte bound, so that the index grows while the recency list
 * holds positions in it (lru_nodes.c); the same with several threads
 * taking strict turns, so that drains merge several threads' access logs;
 * then with expiry (per-entry TTLs on a clock the test drives, pc_expire)
 * against a reference LRU with TTL.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdio.h>
#include <stdlib.h>

#include "testlib.h"

#define KEYS 24
#define MAXCAP 16
#define BIGCAP 3000 /* the byte-bounded runs' entries */

/* Reference: keys in recency order, oldest first. */
struct ref_lru {
    size_t cap, n;
    uint64_t evicted; /* by ref_put */
    uint64_t key[BIGCAP], val[BIGCAP];
};

static int ref_find(struct ref_lru *r, uint64_t k)
{
    for (size_t i = 0; i < r->n; i++)
        if (r->key[i] == k)
            return (int)i;
    return -1;
}

static void ref_remove_at(struct ref_lru *r, size_t i)
{
    memmove(&r->key[i], &r->key[i + 1], (r->n - i - 1) * sizeof r->key[0]);
    memmove(&r->val[i], &r->val[i + 1], (r->n - i - 1) * sizeof r->val[0]);
    r->n--;
}

static void ref_append(struct ref_lru *r, uint64_t k, uint64_t v)
{
    r->key[r->n] = k;
    r->val[r->n] = v;
    r->n++;
}

static pc_status ref_get(struct ref_lru *r, uint64_t k, uint64_t *v)
{
    int i = ref_find(r, k);

    if (i < 0)
        return PC_NOTFOUND;
    *v = r->val[i];
    ref_remove_at(r, (size_t)i);
    ref_append(r, k, *v);
    return PC_OK;
}

static void ref_put(struct ref_lru *r, uint64_t k, uint64_t v)
{
    int i = ref_find(r, k);

    if (i >= 0)
        ref_remove_at(r, (size_t)i);
    else if (r->n == r->cap) {
        ref_remove_at(r, 0);
        r->evicted++;
    }
    ref_append(r, k, v);
}

static pc_status ref_delete(struct ref_lru *r, uint64_t k)
{
    int i = ref_find(r, k);

    if (i < 0)
        return PC_NOTFOUND;
    ref_remove_at(r, (size_t)i);
    return PC_OK;
}

/* The cache's get (status a, value got) against the model's (b, want). */
static void check_get(unsigned seed, int op, uint64_t k, pc_status a,
                      pc_status b, uint64_t got, uint64_t want)
{
    cr_assert_eq(a, b, "seed %u op %d: get(%lu) status %d, want %d", seed, op,
                 (unsigned long)k, a, b);
    if (a == PC_OK)
        cr_assert_eq(got, want, "seed %u op %d: get(%lu) value", seed, op,
                     (unsigned long)k);
}

/* ops random operations on keys 0..keys-1 against a reference LRU of cap
 * entries; c (destroyed here) must hold cap 16-byte entries, by capacity
 * or byte bound. One op in 100 clears, or with clear_in > 1 one in 100 *
 * clear_in. */
static uint64_t run_sequence_on(pc_cache *c, unsigned seed, size_t cap,
                                uint64_t keys, int ops, unsigned clear_in)
{
    static struct ref_lru ref;
    pc_stats st;

    cr_assert_not_null(c);
    cr_assert_leq(cap, BIGCAP);
    ref.cap = cap;
    ref.n = 0;
    ref.evicted = 0;
    srand(seed);
    for (int op = 0; op < ops; op++) {
        uint64_t k = (uint64_t)rand() % keys, got = 0, want = 0;
        int dice = rand() % 100;

        if (dice < 50) {
            pc_status a = get_u64(c, k, &got), b = ref_get(&ref, k, &want);

            check_get(seed, op, k, a, b, got, want);
        } else if (dice < 88) {
            uint64_t v = (uint64_t)rand();

            cr_assert_eq(put_u64(c, k, v), PC_OK);
            ref_put(&ref, k, v);
        } else if (dice < 99 ||
                   (clear_in > 1 && (unsigned)rand() % clear_in != 0)) {
            cr_assert_eq(pc_delete(c, &k, sizeof k), ref_delete(&ref, k),
                         "seed %u op %d: delete(%lu)", seed, op, k);
        } else {
            pc_clear(c);
            ref.n = 0;
        }
        cr_assert_eq(pc_len(c), ref.n, "seed %u op %d: len", seed, op);
    }
    /* Final state: exactly the reference's keys, with its values. */
    for (uint64_t k = 0; k < keys; k++) {
        int i = ref_find(&ref, k);
        uint64_t got;
        size_t n;

        cr_assert_eq(pc_get(c, &k, sizeof k, &got, sizeof got, &n),
                     i < 0 ? PC_NOTFOUND : PC_OK);
        if (i >= 0)
            cr_assert_eq(got, ref.val[i]);
    }
    /* Every eviction the reference made, and no other. */
    cr_assert_eq(pc_stats_get(c, &st), PC_OK);
    cr_assert_eq(st.evictions, ref.evicted, "seed %u: %lu evictions, want %lu",
                 seed, (unsigned long)st.evictions, (unsigned long)ref.evicted);
    pc_destroy(c);
    return ref.evicted;
}

static void run_sequence(unsigned seed, size_t cap, int ops)
{
    run_sequence_on(make_cache(cap), seed, cap, KEYS, ops, 1);
}

Test(lru_exact, matches_reference_lru_on_random_sequences)
{
    for (unsigned seed = 1; seed <= 300; seed++)
        run_sequence(seed, 1 + seed % MAXCAP, 2000);
}

Test(lru_exact, capacity_one_keeps_only_the_last_key)
{
    run_sequence(4242, 1, 5000);
}

/*
 * Several threads taking strict turns: each hit is logged in its own
 * thread's access log, so a writer's drain merges records from several
 * logs (lru_log.c), which one thread alone never makes it do. The turns
 * still order every operation, so the reference LRU applies op for op:
 * each get's status and value, each put's victim (through the removal
 * listener), the length, and at the end the keys held. Long bursts fill a
 * thread's log (256 records) and make it drain under the lock too. Workers
 * record the first mismatch; the test asserts after joining them.
 */
#define TURN_THREADS 3

struct turns {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int turn; /* the thread that may run; -1: stop */
    pc_cache *c;
    struct ref_lru *ref;
    uint64_t rng, keys;
    long ops_left, done;
    uint64_t victim; /* the listener's last eviction, or UINT64_MAX */
    char fail[200];
};

static uint64_t turns_next(struct turns *t)
{
    t->rng ^= t->rng << 13;
    t->rng ^= t->rng >> 7;
    t->rng ^= t->rng << 17;
    return t->rng;
}

static void turns_listener(void *ctx, const void *key, size_t klen,
                           const void *val, size_t vlen, pc_removal_cause cause)
{
    struct turns *t = ctx;

    (void)val;
    (void)vlen;
    if (cause == PC_REMOVED_EVICTED && klen == sizeof(uint64_t))
        memcpy(&t->victim, key, sizeof t->victim);
}

/* One operation of the turn's owner; false (and t->fail set) on a
 * mismatch with the reference. */
static bool turns_op(struct turns *t)
{
    uint64_t k = turns_next(t) % t->keys, got = 0, want = 0;
    unsigned dice = (unsigned)(turns_next(t) % 100);

    if (dice < 80) {
        pc_status a = get_u64(t->c, k, &got), b = ref_get(t->ref, k, &want);

        if (a != b || (a == PC_OK && got != want)) {
            snprintf(t->fail, sizeof t->fail,
                     "get(%lu): status %d value %lu, want %d value %lu",
                     (unsigned long)k, a, (unsigned long)got, b,
                     (unsigned long)want);
            return false;
        }
    } else if (dice < 97) {
        uint64_t v = turns_next(t), evicted = t->ref->evicted;
        uint64_t expect = t->ref->n == t->ref->cap && ref_find(t->ref, k) < 0
                              ? t->ref->key[0]
                              : UINT64_MAX;

        t->victim = UINT64_MAX;
        if (put_u64(t->c, k, v) != PC_OK) {
            snprintf(t->fail, sizeof t->fail, "put(%lu) failed",
                     (unsigned long)k);
            return false;
        }
        ref_put(t->ref, k, v);
        if (t->victim != expect ||
            (t->ref->evicted != evicted) != (expect != UINT64_MAX)) {
            snprintf(t->fail, sizeof t->fail, "put(%lu) evicted %lu, want %lu",
                     (unsigned long)k, (unsigned long)t->victim,
                     (unsigned long)expect);
            return false;
        }
    } else if (pc_delete(t->c, &k, sizeof k) != ref_delete(t->ref, k)) {
        snprintf(t->fail, sizeof t->fail, "delete(%lu)", (unsigned long)k);
        return false;
    }
    if (pc_len(t->c) != t->ref->n) {
        snprintf(t->fail, sizeof t->fail, "len %zu, want %zu", pc_len(t->c),
                 t->ref->n);
        return false;
    }
    return true;
}

static void *turns_worker(void *arg)
{
    struct turns *t = ((void **)arg)[0];
    int me = (int)(intptr_t)((void **)arg)[1];

    pthread_mutex_lock(&t->mu);
    for (;;) {
        while (t->turn != me && t->turn != -1)
            pthread_cond_wait(&t->cv, &t->mu);
        if (t->turn == -1)
            break;
        /* Our turn: the others wait on the condition variable. Mostly a
         * few operations, often no put among them, so that a log holds
         * records older and newer than another log's when a put drains;
         * one turn in four up to 600, which fills a log. */
        long burst = turns_next(t) % 4 == 0 ? 1 + (long)(turns_next(t) % 600)
                                            : 1 + (long)(turns_next(t) % 3);

        for (; burst > 0 && t->ops_left > 0;
             burst--, t->ops_left--, t->done++) {
            if (!turns_op(t)) {
                t->ops_left = 0;
                break;
            }
        }
        t->turn = t->ops_left > 0 ? (int)(turns_next(t) % TURN_THREADS) : -1;
        pthread_cond_broadcast(&t->cv);
    }
    pthread_mutex_unlock(&t->mu);
    return NULL;
}

static void run_turns(uint64_t seed, size_t cap, uint64_t keys, long ops)
{
    static struct ref_lru ref;
    struct turns t = {.turn = 0, .rng = seed, .keys = keys, .ops_left = ops};
    pc_options o = test_opts(cap);
    pthread_t th[TURN_THREADS];
    void *args[TURN_THREADS][2];
    pc_stats st;

    pthread_mutex_init(&t.mu, NULL);
    pthread_cond_init(&t.cv, NULL);
    o.on_removal = turns_listener;
    o.removal_ctx = &t;
    t.c = make_cache_opts(&o);
    cr_assert_not_null(t.c);
    ref.cap = cap;
    ref.n = 0;
    ref.evicted = 0;
    t.ref = &ref;
    for (int i = 0; i < TURN_THREADS; i++) {
        args[i][0] = &t;
        args[i][1] = (void *)(intptr_t)i;
        cr_assert_eq(pthread_create(&th[i], NULL, turns_worker, args[i]), 0);
    }
    for (int i = 0; i < TURN_THREADS; i++)
        pthread_join(th[i], NULL);
    cr_assert_eq(t.fail[0], '\0', "seed %lu, op %ld: %s", (unsigned long)seed,
                 t.done, t.fail);
    for (uint64_t k = 0; k < keys; k++) {
        int i = ref_find(&ref, k);
        uint64_t got = 0;

        cr_assert_eq(get_u64(t.c, k, &got), i < 0 ? PC_NOTFOUND : PC_OK);
        if (i >= 0)
            cr_assert_eq(got, ref.val[i]);
    }
    cr_assert_eq(pc_stats_get(t.c, &st), PC_OK);
    cr_assert_eq(st.evictions, ref.evicted);
    pc_destroy(t.c);
    pthread_cond_destroy(&t.cv);
    pthread_mutex_destroy(&t.mu);
}

Test(lru_exact, matches_reference_lru_when_threads_take_turns)
{
    for (uint64_t seed = 1; seed <= 4; seed++) {
        run_turns(seed * 0x9e3779b97f4a7c15ull, 64, 200, 150000);
        run_turns(seed * 0xbf58476d1ce4e5b9ull, 8, 20, 50000);
    }
}

/* A byte bound of cap 16-byte entries and a capacity far above it: the
 * index starts small and grows many times (each growth renews the
 * positions the recency list holds), and evictions by bytes follow the
 * reference LRU of cap entries. */
Test(lru_exact, matches_reference_lru_under_a_byte_bound_while_the_index_grows)
{
    for (unsigned seed = 1; seed <= 6; seed++) {
        size_t cap = 250 * seed;
        pc_options o = test_opts((size_t)1 << 20);
        uint64_t evicted;

        o.max_bytes = 16 * cap;
        evicted = run_sequence_on(make_cache_opts(&o), seed, cap, 4 * cap,
                                  30000, 100);
        cr_assert_gt(evicted, 1000, "seed %u: %lu evictions, too few", seed,
                     (unsigned long)evicted);
    }
}

/* ---- with expiry ----
 *
 * The reference LRU with TTL: an entry is visible strictly before its
 * expiry time; expired entries stay (and count in len) until a write
 * removes them: a put or delete of their key, pc_expire, or eviction,
 * which takes the expired entry with the earliest expiry time first and
 * otherwise the least recently used. A get of an expired entry is a miss
 * and changes nothing. Expiry times are kept distinct among the entries
 * present, so "the earliest" is never a tie.
 */
struct ref_ttl {
    struct ref_lru lru;
    uint64_t exp[KEYS]; /* by key; 0: never */
};

static bool ref_expired(const struct ref_ttl *r, uint64_t k, uint64_t now)
{
    return r->exp[k] != 0 && now >= r->exp[k];
}

static void ref_ttl_remove(struct ref_ttl *r, uint64_t k)
{
    int i = ref_find(&r->lru, k);

    if (i >= 0)
        ref_remove_at(&r->lru, (size_t)i);
    r->exp[k] = 0;
}

static pc_status ref_ttl_get(struct ref_ttl *r, uint64_t k, uint64_t now,
                             uint64_t *v)
{
    if (ref_find(&r->lru, k) < 0 || ref_expired(r, k, now))
        return PC_NOTFOUND;
    return ref_get(&r->lru, k, v);
}

static void ref_ttl_put(struct ref_ttl *r, uint64_t k, uint64_t v, uint64_t exp,
                        uint64_t now)
{
    int i = ref_find(&r->lru, k);

    if (i >= 0 && ref_expired(r, k, now)) {
        ref_ttl_remove(r, k);
        i = -1;
    }
    if (i < 0 && r->lru.n == r->lru.cap) {
        uint64_t victim = r->lru.key[0], best = 0;

        for (size_t j = 0; j < r->lru.n; j++) {
            uint64_t kj = r->lru.key[j];

            if (ref_expired(r, kj, now) && (best == 0 || r->exp[kj] < best)) {
                best = r->exp[kj];
                victim = kj;
            }
        }
        ref_ttl_remove(r, victim);
    }
    if (i >= 0)
        ref_remove_at(&r->lru, (size_t)i);
    ref_append(&r->lru, k, v);
    r->exp[k] = exp;
}

static pc_status ref_ttl_delete(struct ref_ttl *r, uint64_t k, uint64_t now)
{
    bool live = ref_find(&r->lru, k) >= 0 && !ref_expired(r, k, now);

    ref_ttl_remove(r, k);
    return live ? PC_OK : PC_NOTFOUND;
}

static size_t ref_ttl_expire(struct ref_ttl *r, uint64_t now)
{
    size_t n = 0;

    for (uint64_t k = 0; k < KEYS; k++)
        if (ref_find(&r->lru, k) >= 0 && ref_expired(r, k, now)) {
            ref_ttl_remove(r, k);
            n++;
        }
    return n;
}

/* A ttl whose expiry time no entry present has (PC_TTL_NEVER if none). */
static uint64_t fresh_ttl(const struct ref_ttl *r, uint64_t now)
{
    for (int tries = 0; tries < 8; tries++) {
        uint64_t ttl = 1 + (uint64_t)(rand() % 40), clash = 0;

        for (size_t j = 0; j < r->lru.n; j++)
            clash |= r->exp[r->lru.key[j]] == now + ttl;
        if (!clash)
            return ttl;
    }
    return PC_TTL_NEVER;
}

static void run_sequence_ttl(unsigned seed, size_t cap, int ops)
{
    struct ref_ttl ref = {.lru = {.cap = cap}};
    pc_options o = test_opts(cap);
    pc_cache *c;

    o.now_ms = test_now;
    c = make_cache_opts(&o);
    cr_assert_not_null(c);
    srand(seed);
    for (int op = 0; op < ops; op++) {
        uint64_t k = (uint64_t)(rand() % KEYS), got = 0, want = 0;
        uint64_t now = test_now(NULL);
        int dice = rand() % 100;

        if (dice < 40) {
            pc_status a = get_u64(c, k, &got);
            pc_status b = ref_ttl_get(&ref, k, now, &want);

            check_get(seed, op, k, a, b, got, want);
        } else if (dice < 75) {
            uint64_t v = (uint64_t)rand();
            pc_put_args a = {.ttl_ms = rand() % 4 == 0 ? PC_TTL_NEVER
                                                       : fresh_ttl(&ref, now)};

            cr_assert_eq(pc_put_ex(c, &k, sizeof k, &v, sizeof v, &a), PC_OK);
            ref_ttl_put(&ref, k, v,
                        a.ttl_ms == PC_TTL_NEVER ? 0 : now + a.ttl_ms, now);
        } else if (dice < 85) {
            cr_assert_eq(pc_delete(c, &k, sizeof k),
                         ref_ttl_delete(&ref, k, now),
                         "seed %u op %d: delete(%lu)", seed, op, k);
        } else if (dice < 88) {
            cr_assert_eq(pc_expire(c), ref_ttl_expire(&ref, now),
                         "seed %u op %d: expire", seed, op);
        } else if (dice < 89) {
            pc_clear(c);
            ref.lru.n = 0;
            memset(ref.exp, 0, sizeof ref.exp);
        } else {
            test_advance(1 + (uint64_t)(rand() % 6));
        }
        cr_assert_eq(pc_len(c), ref.lru.n, "seed %u op %d: len", seed, op);
    }
    pc_destroy(c);
}

Test(lru_exact, matches_reference_lru_with_ttl_on_random_sequences)
{
    for (unsigned seed = 1; seed <= 300; seed++)
        run_sequence_ttl(seed, 1 + seed % MAXCAP, 2000);
}

/* ---- single-threaded edges the random sequences rarely reach ---- */

/* A thread's access log holds LOG_RECORDS (256) hits; the random sequences
 * above put too often to fill it. n hits of key 3 (with no write between)
 * before key 1's, or after it: whether the log filled (the hit that finds
 * it full drains it under the lock), filled exactly with key 1's as its
 * first or last record, or wrapped, key 1's use must not be lost, so key 2
 * is the least recently used and the next new key evicts it. */
Test(lru_exact, a_full_access_log_loses_no_use)
{
    static const int hits[] = {1, 254, 255, 256, 257, 258, 511, 512, 513, 700};

    for (int after = 0; after < 2; after++) {
        for (size_t i = 0; i < sizeof hits / sizeof hits[0]; i++) {
            pc_cache *c = make_cache(3);
            int n = hits[i];

            cr_assert_not_null(c);
            put_u64(c, 1, 1);
            put_u64(c, 2, 2);
            put_u64(c, 3, 3);
            cr_assert_eq(get_u64(c, 3, NULL), PC_OK); /* (makes the log) */
            for (int h = 0; h < (after ? 0 : n); h++)
                cr_assert_eq(get_u64(c, 3, NULL), PC_OK);
            cr_assert_eq(get_u64(c, 1, NULL), PC_OK); /* order: 2 3 1 */
            for (int h = 0; h < (after ? n : 0); h++)
                cr_assert_eq(get_u64(c, 3, NULL), PC_OK); /* order: 2 1 3 */
            cr_assert_eq(put_u64(c, 4, 4), PC_OK);        /* evicts 2 */
            cr_assert_eq(get_u64(c, 2, NULL), PC_NOTFOUND,
                         "%d hits %s key 1's: key 2 not evicted", n,
                         after ? "after" : "before");
            cr_assert_eq(get_u64(c, 1, NULL), PC_OK,
                         "%d hits %s key 1's: key 1's use was lost", n,
                         after ? "after" : "before");
            cr_assert_eq(get_u64(c, 3, NULL), PC_OK);
            pc_destroy(c);
        }
    }
}

static void *get_key_2(void *c)
{
    return (void *)(intptr_t)get_u64(c, 2, NULL);
}

/* A hit that takes the writer lock (its thread's log full, or no log yet:
 * the thread's first hit on the cache) is stamped after every hit logged
 * before it, so it must apply them before it moves its own entry: here key
 * 1's logged hit comes before key 2's locked one, so 1 is older than 2. */
Test(lru_exact, a_locked_hit_comes_after_the_hits_logged_before_it)
{
    for (int full = 1; full >= 0; full--) {
        pc_cache *c = make_cache(4);
        pthread_t th;
        void *st;

        cr_assert_not_null(c);
        for (uint64_t k = 1; k <= 4; k++)
            put_u64(c, k, k);
        cr_assert_eq(get_u64(c, 4, NULL), PC_OK); /* (makes the log) */
        cr_assert_eq(get_u64(c, 1, NULL), PC_OK); /* logged */
        if (full) {
            /* This thread's log fills (1, 254 hits of 2, 1), and the next
             * hit, key 2's, finds it full and takes the lock. */
            for (int h = 0; h < 254; h++)
                cr_assert_eq(get_u64(c, 2, NULL), PC_OK);
            cr_assert_eq(get_u64(c, 1, NULL), PC_OK); /* the 256th */
            cr_assert_eq(get_u64(c, 2, NULL), PC_OK); /* locked */
        } else {
            /* Another thread's first hit: it has no log yet. */
            cr_assert_eq(pthread_create(&th, NULL, get_key_2, c), 0);
            pthread_join(th, &st);
            cr_assert_eq((pc_status)(intptr_t)st, PC_OK);
        }
        /* Order, oldest first: 3 4 1 2. Three new keys evict 3, 4, 1. */
        for (uint64_t k = 5; k <= 7; k++)
            cr_assert_eq(put_u64(c, k, k), PC_OK);
        cr_assert_eq(get_u64(c, 1, NULL), PC_NOTFOUND, "%s: key 1 kept",
                     full ? "full log" : "new thread");
        cr_assert_eq(get_u64(c, 2, NULL), PC_OK, "%s: key 2 evicted",
                     full ? "full log" : "new thread");
        pc_destroy(c);
    }
}

/* Victims in the order the removal listener reports them. */
struct victims {
    size_t n;
    uint64_t key[1100];
};

static void victims_listener(void *ctx, const void *key, size_t klen,
                             const void *val, size_t vlen,
                             pc_removal_cause cause)
{
    struct victims *v = ctx;

    (void)val;
    (void)vlen;
    if (cause == PC_REMOVED_EVICTED && klen == sizeof(uint64_t) && v->n < 1100)
        memcpy(&v->key[v->n++], key, sizeof(uint64_t));
}

/* Lowering the capacity (or the byte bound) evicts in LRU order, oldest
 * first, and the entries left keep their order: a lowering this far also
 * rebuilds the recency list's node array smaller, renumbering its nodes
 * (lru_nodes.c), after which new keys evict the rest, still oldest first. */
Test(lru_exact, a_lowered_limit_evicts_oldest_first_and_keeps_the_order)
{
    enum { N = 1000, LEFT = 10 };

    for (int bytes = 0; bytes < 2; bytes++) {
        static struct victims v;
        pc_options o = test_opts(N);
        uint64_t order[N];
        pc_cache *c;

        v.n = 0;
        o.on_removal = victims_listener;
        o.removal_ctx = &v;
        c = make_cache_opts(&o);
        cr_assert_not_null(c);
        for (uint64_t k = 0; k < N; k++)
            cr_assert_eq(put_u64(c, k, k), PC_OK);
        for (uint64_t i = 0; i < N; i++) { /* recency: a permutation */
            order[i] = i * 7919 % N;
            cr_assert_eq(get_u64(c, order[i], NULL), PC_OK);
        }
        if (bytes)
            cr_assert_eq(pc_set_max_bytes(c, 16 * LEFT), PC_OK);
        else
            cr_assert_eq(pc_set_capacity(c, LEFT), PC_OK);
        cr_assert_eq(pc_len(c), LEFT);
        cr_assert_eq(v.n, N - LEFT);
        for (size_t i = 0; i < N - LEFT; i++)
            cr_assert_eq(v.key[i], order[i],
                         "%s lowered: victim %zu is %lu, want %lu",
                         bytes ? "bound" : "capacity", i,
                         (unsigned long)v.key[i], (unsigned long)order[i]);
        for (uint64_t k = N; k < N + LEFT; k++) {
            size_t i = N - LEFT + (size_t)(k - N);

            cr_assert_eq(put_u64(c, k, k), PC_OK);
            cr_assert_eq(v.n, i + 1);
            cr_assert_eq(v.key[i], order[i],
                         "after the lowering: victim %lu, want %lu",
                         (unsigned long)v.key[i], (unsigned long)order[i]);
        }
        pc_destroy(c);
    }
}

/* ---- a drain of many logs whose records interleave ---- */

/* L threads take turns, one hit each, so that every log holds records
 * that interleave with every other's (stamps i, i + L, i + 2L, ...). The
 * put that follows drains them all inside its window, where every reader
 * of the cache waits: a merge that scanned every log for each run of
 * records took O(records * L), 68 ms with 200 logs of 250 records (5.8 ms
 * with 64) in a release build (helper-99's review). It must take
 * O(records * log L), about 2 ms: checked by counting its steps (debug
 * builds: logs visited and heap levels passed), not by timing it; and the
 * victims must still come in exactly the order of the hits. */
#ifdef PC_DEBUG
extern uint64_t pc__debug_drain_steps; /* src/lru.h (debug builds) */
#endif

#define DRAIN_LOGS 200
#define DRAIN_ROUNDS 250 /* below LOG_RECORDS: every hit is logged */

static struct {
    pc_cache *c;
    sem_t go[DRAIN_LOGS]; /* thread i's turn */
    uint64_t victim[4];
    int nvictims;
} dr;

static void drain_listener(void *ctx, const void *key, size_t klen,
                           const void *val, size_t vlen, pc_removal_cause cause)
{
    (void)ctx, (void)val, (void)vlen;
    if (cause == PC_REMOVED_EVICTED && klen == 8 && dr.nvictims < 4)
        memcpy(&dr.victim[dr.nvictims++], key, 8);
}

static void *drain_worker(void *arg)
{
    int me = (int)(intptr_t)arg;

    for (int r = 0; r < DRAIN_ROUNDS; r++) {
        uint64_t k = 2 * (uint64_t)me + (uint64_t)(r % 2);

        while (sem_wait(&dr.go[me]) != 0)
            ;
        cr_assert_eq(get_u64(dr.c, k, NULL), PC_OK);
        sem_post(&dr.go[(me + 1) % DRAIN_LOGS]);
    }
    return NULL;
}

Test(lru_exact, a_drain_of_many_interleaved_logs_is_not_quadratic,
     .timeout = 120)
{
    pc_options o = test_opts(2 * DRAIN_LOGS);
    pthread_t th[DRAIN_LOGS];
#ifdef PC_DEBUG
    uint64_t steps, records = (uint64_t)DRAIN_LOGS * DRAIN_ROUNDS;
    unsigned levels = 0;

    while ((1u << levels) < DRAIN_LOGS)
        levels++;
#endif

    o.on_removal = drain_listener;
    dr.c = make_cache_opts(&o);
    cr_assert_not_null(dr.c);
    for (uint64_t k = 0; k < 2 * DRAIN_LOGS; k++)
        cr_assert_eq(put_u64(dr.c, k, k), PC_OK);
    for (int i = 0; i < DRAIN_LOGS; i++)
        sem_init(&dr.go[i], 0, i == 0);
    for (int i = 0; i < DRAIN_LOGS; i++)
        cr_assert_eq(
            pthread_create(&th[i], NULL, drain_worker, (void *)(intptr_t)i), 0);
    for (int i = 0; i < DRAIN_LOGS; i++)
        pthread_join(th[i], NULL);
        /* Recency, oldest first: the even keys (hit in the last round but
         * one), then the odd ones. */
#ifdef PC_DEBUG
    steps = __atomic_load_n(&pc__debug_drain_steps, __ATOMIC_RELAXED);
#endif
    cr_assert_eq(put_u64(dr.c, 1000000, 0), PC_OK);
#ifdef PC_DEBUG
    /* Each record's run costs one pass down the heap at most (levels + 1
     * steps); the old scan cost DRAIN_LOGS a run, 200 here. */
    steps = __atomic_load_n(&pc__debug_drain_steps, __ATOMIC_RELAXED) - steps;
    cr_assert_leq(steps, records * (levels + 1) + 2 * DRAIN_LOGS,
                  "a drain of %d interleaved logs of %d records took %llu "
                  "steps",
                  DRAIN_LOGS, DRAIN_ROUNDS, (unsigned long long)steps);
#endif
    cr_assert_eq(put_u64(dr.c, 1000001, 0), PC_OK);
    cr_assert_eq(put_u64(dr.c, 1000002, 0), PC_OK);
    cr_assert_eq(dr.nvictims, 3);
    cr_assert_eq(dr.victim[0], 0);
    cr_assert_eq(dr.victim[1], 2);
    cr_assert_eq(dr.victim[2], 4);
    pc_destroy(dr.c);
}
