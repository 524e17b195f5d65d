/*
 * Linearizability: concurrent histories of get/put/delete, checked against
 * sequential models by an exhaustive (memoised) search for a valid order.
 *
 * Histories. Each round, T threads start together (a barrier) and each runs
 * K random operations on a key space of KEYS keys. Every put writes a value
 * unique in the whole run, so a read names the write it saw. Each operation
 * records its invocation and response as ticks of one global atomic
 * counter, taken just before the call and just after it returns: if
 * a.resp < b.inv then a really finished before b began. The cache's state at
 * the start of a round is set by the main thread while nothing else runs,
 * so the model starts from a known state.
 *
 * Checker (Wing & Gong, with memoisation as in Lowe's refinement). A
 * history is linearizable iff some total order of its operations respects
 * real time (a before b whenever a.resp < b.inv) and replays through the
 * sequential model with the results observed. The search extends a prefix
 * one operation at a time; the operation may be any thread's next one whose
 * invocation precedes every pending operation's response; states already
 * refuted, (per-thread progress, model state), are remembered. T*K is small,
 * so the search is exhaustive.
 *
 * Models.
 *  - register: every key is an independent register (linearizability is
 *    local, so checking the product is checking each key): get returns the
 *    last value put, or NOTFOUND after a delete; delete reports whether a
 *    value was there. Used when the capacity exceeds the key space (no
 *    eviction can happen), for both policies.
 *  - register with eviction (CLOCK, capacity below the key space): as
 *    above, but the cache may evict a key at any moment, so a get or delete
 *    may answer NOTFOUND whatever the register holds, after which the
 *    register is empty. A get must still return the value of the latest
 *    write linearizable before it: never one overwritten or deleted before
 *    the get began, never one that vanished (was evicted or found missing)
 *    and was not written again.
 *  - exact LRU (capacity below the key space): the whole cache is one
 *    object, a reference LRU of the same capacity (a hit promotes; a put of
 *    a new key into a full cache evicts the least recently used), so the
 *    check covers evictions across keys in short windows.
 * Expiry (config.ttl): each round starts from a state in which some keys
 * have already expired (put with short TTLs on the test's clock, which
 * then moves past them and stays still during the round), others expire
 * later or never. An expired key is absent to every operation; in the LRU
 * model it is still present until a write removes it, and a put that needs
 * room evicts the expired entry with the earliest expiry time first (the
 * initial expiry times are distinct), else the least recently used.
 * A failing round prints its history.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#include "testlib.h"

#define T 3
#define K 8
#define MAXKEYS 4
#define MAXCAP 4

enum kind { GET, PUT, DEL };
enum model { REGISTER, REGISTER_EVICT, LRU };

struct op {
    enum kind kind;
    uint32_t key;
    uint32_t val;  /* put: written; get: read (when res == PC_OK) */
    pc_status res; /* get, delete: PC_OK or PC_NOTFOUND */
    uint64_t inv, resp;
};

struct mstate {
    uint32_t val[MAXKEYS]; /* register: value per key, 0 = absent */
    uint32_t key[MAXCAP];  /* lru: keys, least recent first */
    uint32_t lval[MAXCAP];
    uint32_t n;
    uint32_t exp[MAXCAP]; /* lru: expiry time of key[i], 0 = never */
};

struct config {
    enum model model;
    size_t cap;
    unsigned shards;
    uint32_t keys;
    long rounds;
    bool ttl; /* rounds start with expired keys (see the top) */
};

/* The test clock's time during the current round (it stands still). */
static uint32_t round_now;

static void lru_unlink(struct mstate *s, uint32_t i)
{
    memmove(&s->key[i], &s->key[i + 1], (s->n - i - 1) * 4);
    memmove(&s->lval[i], &s->lval[i + 1], (s->n - i - 1) * 4);
    memmove(&s->exp[i], &s->exp[i + 1], (s->n - i - 1) * 4);
    s->n--;
}

static bool lru_expired(const struct mstate *s, uint32_t i)
{
    return s->exp[i] != 0 && round_now >= s->exp[i];
}

static bool step(const struct config *cf, struct mstate *s, const struct op *o)
{
    if (cf->model != LRU) {
        uint32_t *v = &s->val[o->key];

        switch (o->kind) {
        case PUT:
            *v = o->val;
            return true;
        case GET:
            if (o->res == PC_NOTFOUND) {
                if (*v != 0 && cf->model != REGISTER_EVICT)
                    return false;
                *v = 0;
                return true;
            }
            return *v != 0 && *v == o->val;
        case DEL:
            if (o->res == PC_NOTFOUND) {
                if (*v != 0 && cf->model != REGISTER_EVICT)
                    return false;
            } else if (*v == 0) {
                return false;
            }
            *v = 0;
            return true;
        }
        return false;
    }
    uint32_t i;

    for (i = 0; i < s->n && s->key[i] != o->key; i++)
        ;
    bool found = i < s->n;

    if (found && lru_expired(s, i)) { /* absent to all; a get changes nothing */
        if (o->kind == GET)
            return o->res == PC_NOTFOUND;
        if (o->kind == DEL && o->res != PC_NOTFOUND)
            return false;
        lru_unlink(s, i); /* a write removes it */
        found = false;
        if (o->kind == DEL)
            return true;
    }
    if (o->kind == GET && !found)
        return o->res == PC_NOTFOUND;
    if (o->kind == GET && (o->res != PC_OK || s->lval[i] != o->val))
        return false;
    if (o->kind == DEL && (o->res == PC_OK) != found)
        return false;
    if (found) { /* unlink i */
        uint32_t v = s->lval[i], e = s->exp[i];

        lru_unlink(s, i);
        if (o->kind == GET) { /* promote */
            s->key[s->n] = o->key;
            s->exp[s->n] = e;
            s->lval[s->n++] = v;
        }
    }
    if (o->kind == PUT) {
        if (s->n == cf->cap) { /* evict: expired first, else the LRU */
            uint32_t victim = 0;

            for (uint32_t j = 0; j < s->n; j++)
                if (lru_expired(s, j) &&
                    (!lru_expired(s, victim) || s->exp[j] < s->exp[victim]))
                    victim = j;
            lru_unlink(s, victim);
        }
        s->key[s->n] = o->key;
        s->exp[s->n] = 0; /* the rounds' puts never expire */
        s->lval[s->n++] = o->val;
    }
    return true;
}

/* ---- memoised search ---- */

struct memo_key {
    uint8_t pos[T];
    uint8_t pad;
    struct mstate s;
};

#define MEMO_SIZE (1u << 14)
static struct {
    uint32_t gen;
    struct memo_key k;
} memo[MEMO_SIZE];
static uint32_t memo_gen, memo_used;

static struct op hist[T][K];

/* true if (pos, s) was already explored (and refuted); records it if not */
static bool memo_seen(const struct memo_key *k)
{
    uint64_t h = 1469598103934665603ULL;
    const unsigned char *p = (const unsigned char *)k;

    for (size_t i = 0; i < sizeof *k; i++)
        h = (h ^ p[i]) * 1099511628211ULL;
    if (memo_used >= MEMO_SIZE / 2)
        return false; /* full: search on unmemoised (slower, still exact) */
    for (uint32_t i = (uint32_t)h & (MEMO_SIZE - 1);;
         i = (i + 1) & (MEMO_SIZE - 1)) {
        if (memo[i].gen != memo_gen) {
            memo_used++;
            memo[i].gen = memo_gen;
            memo[i].k = *k;
            return false;
        }
        if (memcmp(&memo[i].k, k, sizeof *k) == 0)
            return true;
    }
}

static bool search(const struct config *cf, struct memo_key *k, int left)
{
    uint64_t min_resp = UINT64_MAX;

    if (left == 0)
        return true;
    if (memo_seen(k))
        return false;
    for (int t = 0; t < T; t++)
        if (k->pos[t] < K && hist[t][k->pos[t]].resp < min_resp)
            min_resp = hist[t][k->pos[t]].resp;
    for (int t = 0; t < T; t++) {
        struct memo_key next;
        const struct op *o;

        if (k->pos[t] == K)
            continue;
        o = &hist[t][k->pos[t]];
        if (o->inv > min_resp)
            continue; /* some pending op finished before this one began */
        next = *k;
        if (!step(cf, &next.s, o))
            continue;
        next.pos[t]++;
        if (search(cf, &next, left - 1))
            return true;
    }
    return false;
}

static bool linearizable(const struct config *cf, const struct mstate *init)
{
    struct memo_key k;

    memset(&k, 0, sizeof k);
    k.s = *init;
    memo_used = 0;
    if (++memo_gen == 0) {
        memset(memo, 0, sizeof memo);
        memo_gen = 1;
    }
    return search(cf, &k, T * K);
}

/* ---- running rounds ---- */

struct run {
    const struct config *cf;
    pc_cache *c;
    pthread_barrier_t start, done;
    uint64_t clock;
    long round;
    int stop;
};

struct worker {
    struct run *r;
    int id;
};

static uint64_t tick(struct run *r)
{
    return __atomic_fetch_add(&r->clock, 1, __ATOMIC_SEQ_CST);
}

static void *worker(void *p)
{
    struct worker *w = p;
    struct run *r = w->r;

    for (;;) {
        pthread_barrier_wait(&r->start);
        if (__atomic_load_n(&r->stop, __ATOMIC_RELAXED))
            return NULL;
        uint64_t x = mix64((uint64_t)r->round * 977 + (uint64_t)w->id);

        for (int i = 0; i < K; i++) {
            struct op *o = &hist[w->id][i];
            uint64_t rnd = mix64(x + (uint64_t)i), k;
            unsigned dice = (unsigned)(rnd % 10);

            o->key = (uint32_t)((rnd >> 8) % r->cf->keys);
            k = o->key;
            o->val = 0;
            if (dice < 4) {
                uint32_t v;
                size_t n = 0;

                o->kind = GET;
                o->inv = tick(r);
                o->res = pc_get(r->c, &k, sizeof k, &v, sizeof v, &n);
                o->resp = tick(r);
                if (o->res == PC_OK)
                    o->val = v;
            } else if (dice < 8) {
                /* unique, non-zero, never an initial value (bit 31) */
                uint32_t v =
                    (uint32_t)(r->round * T * K + w->id * K + i) % 0x7fffffffu +
                    1;

                o->kind = PUT;
                o->val = v;
                o->inv = tick(r);
                o->res = pc_put(r->c, &k, sizeof k, &v, sizeof v);
                o->resp = tick(r);
            } else {
                o->kind = DEL;
                o->inv = tick(r);
                o->res = pc_delete(r->c, &k, sizeof k);
                o->resp = tick(r);
            }
        }
        pthread_barrier_wait(&r->done);
    }
}

static void print_history(const struct config *cf, const struct mstate *init)
{
    static const char *names[] = {"get", "put", "del"};

    fprintf(stderr, "non-linearizable round; initial state:");
    if (cf->model == LRU)
        for (uint32_t i = 0; i < init->n; i++)
            fprintf(stderr, " k%u=%#x", init->key[i], init->lval[i]);
    else
        for (uint32_t k = 0; k < cf->keys; k++)
            fprintf(stderr, " k%u=%#x", k, init->val[k]);
    fprintf(stderr, "\n");
    for (int t = 0; t < T; t++)
        for (int i = 0; i < K; i++) {
            const struct op *o = &hist[t][i];

            fprintf(stderr, "  T%d [%4lu,%4lu] %s k%u", t,
                    (unsigned long)o->inv, (unsigned long)o->resp,
                    names[o->kind], o->key);
            if (o->kind == PUT)
                fprintf(stderr, " %#x\n", o->val);
            else if (o->kind == GET && o->res == PC_OK)
                fprintf(stderr, " -> %#x\n", o->val);
            else
                fprintf(stderr, " -> %s\n", pc_strerror(o->res));
        }
}

/* Quiescent set-up of the round's initial state, mirrored in *s. */
static void round_setup(struct run *r, struct mstate *s)
{
    const struct config *cf = r->cf;
    uint64_t x = mix64((uint64_t)r->round ^ 0xabcdef);

    memset(s, 0, sizeof *s);
    /* With expiry: put at t0, key k with ttl 1 + (its order of insertion)
     * or never; the round runs at t0 + 2, so the first two inserted with a
     * ttl have expired, the others not. */
    uint64_t t0 = test_now(NULL);

    round_now = (uint32_t)(t0 + 2);
    if (cf->model == LRU) {
        pc_clear(r->c);
        for (uint64_t k = 0; k < cf->keys && s->n < cf->cap; k++) {
            uint32_t v = 0x80000000u | (uint32_t)(r->round << 4) | (uint32_t)k;
            uint64_t key = (k + x) % cf->keys;
            pc_put_args a = {.ttl_ms = PC_TTL_NEVER};

            if (mix64(x + k) & 1)
                continue;
            if (cf->ttl && (mix64(x ^ k) & 2))
                a.ttl_ms = 1 + s->n;
            cr_assert_eq(pc_put_ex(r->c, &key, sizeof key, &v, sizeof v, &a),
                         PC_OK);
            for (uint32_t i = 0; i < s->n; i++)
                cr_assert_neq(s->key[i], (uint32_t)key);
            s->key[s->n] = (uint32_t)key;
            s->exp[s->n] =
                a.ttl_ms == PC_TTL_NEVER ? 0 : (uint32_t)(t0 + a.ttl_ms);
            s->lval[s->n++] = v;
        }
    } else {
        for (uint64_t k = 0; k < cf->keys; k++) {
            uint32_t v = 0x80000000u | (uint32_t)(r->round << 4) | (uint32_t)k;
            pc_put_args a = {.ttl_ms = PC_TTL_NEVER};

            if (mix64(x + k) & 1) {
                pc_delete(r->c, &k, sizeof k);
                continue;
            }
            if (cf->ttl && (mix64(x ^ k) & 2))
                a.ttl_ms = 1 + k % 4; /* expired if 1 or 2 */
            cr_assert_eq(pc_put_ex(r->c, &k, sizeof k, &v, sizeof v, &a),
                         PC_OK);
            if (a.ttl_ms == PC_TTL_NEVER || t0 + a.ttl_ms > round_now)
                s->val[k] = v;
        }
    }
    if (cf->ttl)
        test_advance(2);
}

static void check(const struct config *cf)
{
    const char *env = getenv("PC_LIN_SCALE");
    long rounds = cf->rounds * (env ? atol(env) : 1);
    pc_options o = test_opts(cf->cap);

    o.shards = cf->shards;
    if (cf->ttl)
        o.now_ms = test_now;
    struct run r = {.cf = cf};
    struct worker w[T];
    pthread_t th[T];
    long bad = -1;

    cr_assert_eq(pc_create(&o, &r.c), PC_OK);
    pthread_barrier_init(&r.start, NULL, T + 1);
    pthread_barrier_init(&r.done, NULL, T + 1);
    for (int i = 0; i < T; i++) {
        w[i] = (struct worker){&r, i};
        pthread_create(&th[i], NULL, worker, &w[i]);
    }
    for (r.round = 0; r.round < rounds && bad < 0; r.round++) {
        struct mstate init;

        round_setup(&r, &init);
        pthread_barrier_wait(&r.start);
        pthread_barrier_wait(&r.done);
        if (!linearizable(cf, &init)) {
            print_history(cf, &init);
            bad = r.round;
        }
    }
    __atomic_store_n(&r.stop, 1, __ATOMIC_RELAXED);
    pthread_barrier_wait(&r.start);
    for (int i = 0; i < T; i++)
        pthread_join(th[i], NULL);
    pc_destroy(r.c);
    cr_assert_eq(bad, -1, "round %ld of %ld is not linearizable (see above)",
                 bad, rounds);
}

/* Self-test of the checker: it must reject a history that is not. */
Test(linearizability, checker_rejects_a_stale_read)
{
    struct config cf = {REGISTER, 8, 0, 1, 0, false};
    struct mstate init;

    memset(&init, 0, sizeof init);
    memset(hist, 0, sizeof hist);
    /* T0 puts 1 then 2; T1, strictly afterwards, reads 1; the rest are
     * gets on T2 that overlap everything and see nothing wrong. */
    for (int t = 0; t < T; t++)
        for (int i = 0; i < K; i++)
            hist[t][i] = (struct op){GET, 0, 2, PC_OK, 100 + i, 200 + i};
    hist[0][0] = (struct op){PUT, 0, 1, PC_OK, 1, 2};
    hist[0][1] = (struct op){PUT, 0, 2, PC_OK, 3, 4};
    hist[1][0] = (struct op){GET, 0, 1, PC_OK, 5, 6};
    cr_assert(!linearizable(&cf, &init));
    hist[1][0].inv = 2; /* now it overlaps the second put: fine */
    hist[1][0].resp = 4;
    hist[1][0].kind = GET;
    cr_assert(linearizable(&cf, &init));
}

Test(linearizability, register_without_eviction_one_shard)
{
    struct config cf = {REGISTER, 8, 1, 3, 40000, false};

    check(&cf);
}

Test(linearizability, register_without_eviction_two_shards)
{
    struct config cf = {REGISTER, 8, 2, 4, 20000, false};

    check(&cf);
}

Test(linearizability, with_eviction_against_the_policy_model)
{
    /* clock: register that may lose keys; lru: exact reference LRU. */
    struct config cf = {is_lru() ? LRU : REGISTER_EVICT, 2, 1, 3, 40000, false};

    check(&cf);
}

Test(linearizability, with_expired_keys_and_eviction)
{
    /* lru: the reference LRU with TTL; clock and frequency: registers in
     * which expired keys are absent, and any key may be evicted. */
    struct config cf = {is_lru() ? LRU : REGISTER_EVICT, 3, 1, 4, 20000, true};

    check(&cf);
}

Test(linearizability, with_expired_keys_without_eviction)
{
    struct config cf = {REGISTER, 8, 2, 4, 10000, true};

    check(&cf);
}
