/*
 * Allocation-failure injection: every allocation an operation makes is made
 * to fail in turn, and each failure must leave the cache exactly as it was.
 *
 * How. For one operation and one starting state, iteration n builds two
 * identical caches A and B (same options, same fixed hash seed, same setup
 * calls), arms pc__alloc_fail_after(n) so that A's operation gets n
 * allocations and then none, and runs it on A only. Then:
 *   - if it returned PC_ENOMEM, A must be indistinguishable from B (which
 *     never saw the call): same pc_len, same statistics, same value for
 *     every key of the key space (read in the same order from both, so the
 *     reads' own promotions and reference bits stay in step);
 *   - if it succeeded (the refused allocation, if any, was optional, such
 *     as an index rebuild), B runs it too and they must be equal;
 *   - either way A must then work: the operation is repeated on both
 *     (injection off) and they are compared again, including which key the
 *     next evicting put throws out (so clock hands, reference bits and
 *     recency order must match too);
 *   - after both are destroyed, pc__alloc_live() is back at its baseline.
 * The loop ends at the first n for which no allocation was refused: by then
 * every allocation site the operation reaches has failed once.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdio.h>

#include "alloc.h"
#include "index.h"
#include "shard_state.h"
#include "testlib.h"

#define KEYS 24
#define SEED 0x5eed5eedULL

static size_t val_make(unsigned char *buf, uint64_t k, uint64_t ver)
{
    size_t n = (size_t)((k * 13 + ver * 7) % 60);

    for (size_t i = 0; i < n; i++)
        buf[i] = (unsigned char)(k * 31 + ver + i);
    return n;
}

static pc_status put_kv(pc_cache *c, uint64_t k, uint64_t ver)
{
    unsigned char v[64];

    return pc_put(c, &k, sizeof k, v, val_make(v, k, ver));
}

static pc_cache *cache_new(size_t cap, unsigned shards)
{
    pc_options o = test_opts(cap);

    o.shards = shards;
    o.hash_seed = SEED;
    pc_cache *c = NULL;

    cr_assert_eq(pc_create(&o, &c), PC_OK);
    return c;
}

/* A and B hold the same things, in the same recency/clock state. */
static void assert_same(pc_cache *a, pc_cache *b, const char *what, long n)
{
    pc_stats sa, sb;

    cr_assert_eq(pc_len(a), pc_len(b), "%s, n=%ld: len %zu vs %zu", what, n,
                 pc_len(a), pc_len(b));
    pc_stats_get(a, &sa);
    pc_stats_get(b, &sb);
    /* Garbage awaiting reclamation depends on grace periods, not on the
     * operations: the rest must match exactly. */
    sa.pending = sb.pending = sa.pending_bytes = sb.pending_bytes = 0;
    cr_assert(memcmp(&sa, &sb, sizeof sa) == 0, "%s, n=%ld: stats differ", what,
              n);
    for (uint64_t i = 0; i < 2 * KEYS; i++) {
        /* the setups' first keys, and those assert_same_victims puts */
        uint64_t k = i < KEYS ? i : 1000 + i - KEYS;
        unsigned char va[64], vb[64];
        size_t la = 0, lb = 0;
        pc_status x = pc_get(a, &k, sizeof k, va, sizeof va, &la);
        pc_status y = pc_get(b, &k, sizeof k, vb, sizeof vb, &lb);

        cr_assert_eq(x, y, "%s, n=%ld: key %lu: %d vs %d", what, n,
                     (unsigned long)k, x, y);
        if (x == PC_OK)
            cr_assert(la == lb && memcmp(va, vb, la) == 0,
                      "%s, n=%ld: key %lu has different values", what, n,
                      (unsigned long)k);
    }
}

/* The next evictions pick the same victims in A and B. */
static void assert_same_victims(pc_cache *a, pc_cache *b, const char *what,
                                long n)
{
    for (uint64_t k = 1000; k < 1000 + KEYS; k++) {
        cr_assert_eq(put_kv(a, k, 1), PC_OK);
        cr_assert_eq(put_kv(b, k, 1), PC_OK);
    }
    assert_same(a, b, what, n);
}

struct scenario {
    const char *name;
    size_t cap;
    unsigned shards;
    void (*setup)(pc_cache *c);
    pc_status (*op)(pc_cache *c);
    bool may_fail;  /* the operation can report PC_ENOMEM */
    long min_sites; /* allocation sites it must reach (sanity) */
};

/* Returns the number of allocation sites the operation reached. */
static long run_scenario(const struct scenario *sc)
{
    long base, n, made;

    pc__alloc_track(1);
    base = pc__alloc_live();
    for (n = 0;; n++) {
        pc_cache *a = cache_new(sc->cap, sc->shards);
        pc_cache *b = cache_new(sc->cap, sc->shards);
        pc_status st;

        sc->setup(a);
        sc->setup(b);
        pc__alloc_fail_after(n);
        st = sc->op(a);
        made = pc__alloc_fail_after(-1);
        if (st == PC_ENOMEM) {
            cr_assert(sc->may_fail, "%s, n=%ld: unexpected PC_ENOMEM", sc->name,
                      n);
            cr_assert_gt(made, n, "%s: PC_ENOMEM without a failure", sc->name);
            assert_same(a, b, sc->name, n);
            /* Usable afterwards: the same call now succeeds. */
            cr_assert_eq(sc->op(a), sc->op(b), "%s, n=%ld: retry", sc->name, n);
        } else {
            cr_assert(st >= 0, "%s, n=%ld: status %d", sc->name, n, st);
            cr_assert_eq(sc->op(b), st, "%s, n=%ld: A and B disagree", sc->name,
                         n);
        }
        assert_same(a, b, sc->name, n);
        assert_same_victims(a, b, sc->name, n);
        pc_reclaim(a);
        pc_destroy(a);
        pc_destroy(b);
        cr_assert_eq(pc__alloc_live(), base,
                     "%s, n=%ld: %ld allocations leaked", sc->name, n,
                     pc__alloc_live() - base);
        if (made <= n)
            break; /* nothing was refused: every site has been covered */
    }
    cr_assert_geq(n, sc->min_sites, "%s reached only %ld allocation sites",
                  sc->name, n);
    pc__alloc_track(0);
    return n;
}

/* ---- starting states ---- */

static void setup_half_full(pc_cache *c)
{
    for (uint64_t k = 0; k < pc_capacity(c) / 2; k++)
        put_kv(c, k, 0);
}

static void setup_full_some_used(pc_cache *c)
{
    for (uint64_t k = 0; k < pc_capacity(c); k++)
        put_kv(c, k, 0);
    for (uint64_t k = 0; k < pc_capacity(c); k += 3)
        get_u64(c, k, NULL);
}

static void setup_empty(pc_cache *c)
{
    (void)c;
}

/* Churn: many put/delete pairs of fresh keys, then one more key put, which
 * op_delete_churned deletes. */
#define CHURN_PAIRS 3000

static void setup_churned(pc_cache *c)
{
    for (uint64_t j = 0; j < 20; j++)
        put_kv(c, j, 0);
    for (uint64_t i = 0; i < CHURN_PAIRS; i++) {
        uint64_t k = 5000 + i;

        put_kv(c, k, 0);
        pc_delete(c, &k, sizeof k);
    }
    put_kv(c, 4999, 0);
}

/* Just below the index's first growth: a shard presized for 65536 entries
 * (shard.c's PRESIZE_MAX; one shard leaves no room for a spread) holds 4
 * entries per chunk of its table (index.c's load limit; pc__index_chunks
 * sizes it, to its allocation's size class) before the next new key grows
 * it. */
#define GROWTH_CAP 200000
#define GROWTH_AT growth_at()

static uint64_t growth_at(void)
{
    return 4 * (uint64_t)pc__index_chunks(65536 + 1);
}

static void setup_before_growth(pc_cache *c)
{
    for (uint64_t k = 0; k < GROWTH_AT; k++)
        put_kv(c, 10000 + k, 0); /* op_put_new's key (7777) is new */
}

/* ---- operations ---- */

static pc_status op_put_new(pc_cache *c)
{
    return put_kv(c, 7777, 3);
}

/* A put with a ttl: clock and frequency queue it for expiry (exq.h), one
 * more allocation site. */
static pc_status op_put_new_ttl(pc_cache *c)
{
    uint64_t k = 7777, v = 3;
    pc_put_args a = {.ttl_ms = 3600000};

    return pc_put_ex(c, &k, sizeof k, &v, sizeof v, &a);
}

static pc_status op_put_existing(pc_cache *c)
{
    return put_kv(c, 1, 9);
}

static pc_status op_delete_churned(pc_cache *c)
{
    uint64_t k = 4999;

    return pc_delete(c, &k, sizeof k);
}

static pc_status op_delete_first(pc_cache *c)
{
    uint64_t k = 0;

    return pc_delete(c, &k, sizeof k);
}

static pc_status op_clear(pc_cache *c)
{
    pc_clear(c);
    return PC_OK;
}

static pc_status op_reclaim(pc_cache *c)
{
    pc_reclaim(c);
    return PC_OK;
}

/* Halve the capacity (a cache of KEYS, the key space assert_same
 * compares). */
static pc_status op_halve_capacity(pc_cache *c)
{
    return pc_set_capacity(c, KEYS / 2);
}

struct get_arg {
    pc_cache *c;
    pc_status st;
};

static void *get_on_new_thread(void *p)
{
    struct get_arg *g = p;
    uint64_t k = 1;
    unsigned char v[64];
    size_t n;

    g->st = pc_get(g->c, &k, sizeof k, v, sizeof v, &n);
    return NULL;
}

/* A thread's first call on a cache registers it (allocates). */
static pc_status op_first_get_on_thread(pc_cache *c)
{
    struct get_arg g = {.c = c};
    pthread_t th;

    cr_assert_eq(pthread_create(&th, NULL, get_on_new_thread, &g), 0);
    pthread_join(th, NULL);
    return g.st;
}

Test(faults, create_fails_cleanly_at_every_allocation)
{
    static const struct {
        size_t cap;
        unsigned shards;
    } shapes[] = {{1, 0}, {100, 0}, {5000, 4}, {100000, 0}};

    pc__alloc_track(1);
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        long base = pc__alloc_live(), n, made;

        for (n = 0;; n++) {
            pc_options o = test_opts(shapes[i].cap);

            o.shards = shapes[i].shards;
            pc_cache *c = (pc_cache *)&n; /* must stay untouched on failure */
            pc_status st;

            pc__alloc_fail_after(n);
            st = pc_create(&o, &c);
            made = pc__alloc_fail_after(-1);
            if (st == PC_OK) {
                cr_assert_eq(put_u64(c, 1, 2), PC_OK);
                pc_destroy(c);
            } else {
                cr_assert_eq(st, PC_ENOMEM, "n=%ld: status %d", n, st);
                cr_assert_eq(c, (pc_cache *)&n, "*out changed on failure");
            }
            cr_assert_eq(pc__alloc_live(), base,
                         "capacity %zu, n=%ld: %ld allocations leaked",
                         shapes[i].cap, n, pc__alloc_live() - base);
            if (made <= n)
                break;
        }
        cr_assert_geq(n, 2, "create made fewer allocations than expected");
    }
    pc__alloc_track(0);
}

Test(faults, first_get_on_a_new_thread_fails_cleanly_and_retries)
{
    struct scenario sc = {"first get on a thread", 16,   0, setup_half_full,
                          op_first_get_on_thread,  true, 1};

    run_scenario(&sc);
}

Test(faults, put_of_a_new_key_fails_cleanly)
{
    struct scenario sc = {"put new key", 16,   0, setup_half_full,
                          op_put_new,    true, 1};

    run_scenario(&sc);
}

Test(faults, put_of_a_new_key_into_an_empty_cache_fails_cleanly)
{
    /* The first put grows the clock ring / lru heap: one more site. */
    struct scenario sc = {
        "put into empty cache", 16, 0, setup_empty, op_put_new, true, 1};

    run_scenario(&sc);
}

Test(faults, put_at_capacity_fails_cleanly_and_evicts_nothing)
{
    struct scenario sc = {"put at capacity", 12,   0, setup_full_some_used,
                          op_put_new,        true, 1};

    run_scenario(&sc);
}

Test(faults, put_at_capacity_across_shards_fails_cleanly)
{
    struct scenario sc = {"put at capacity, 4 shards",
                          8,
                          4,
                          setup_full_some_used,
                          op_put_new,
                          true,
                          1};

    run_scenario(&sc);
}

Test(faults, put_with_a_ttl_at_capacity_fails_cleanly_and_evicts_nothing)
{
    struct scenario sc = {"put with a ttl at capacity",
                          12,
                          0,
                          setup_full_some_used,
                          op_put_new_ttl,
                          true,
                          1};

    run_scenario(&sc);
}

Test(faults, replace_fails_cleanly)
{
    struct scenario sc = {"replace",       12,   0, setup_full_some_used,
                          op_put_existing, true, 1};

    run_scenario(&sc);
}

Test(faults, delete_after_heavy_churn_never_fails)
{
    struct scenario sc = {"delete after churn", 100,   0, setup_churned,
                          op_delete_churned,    false, 0};

    run_scenario(&sc);
}

Test(faults, put_that_grows_the_index_fails_cleanly)
{
    /* clock: the entry, then the doubled index table (lru presizes). */
    struct scenario sc = {"put that grows the index",
                          GROWTH_CAP,
                          1,
                          setup_before_growth,
                          op_put_new,
                          true,
                          is_lru() ? 1 : 2};

    run_scenario(&sc);
}

/* A replacement that adds no bytes takes the slot its lookup found and
 * reserves no room: at the growth point it must not grow the index, so it
 * reaches the entry's allocation and at most a retirement batch, and a
 * refusal of either changes nothing. */
static pc_status op_replace_same_size(pc_cache *c)
{
    return put_kv(c, 10000, 0); /* as setup_before_growth put it */
}

Test(faults, same_size_replacement_at_the_growth_point_fails_cleanly)
{
    struct scenario sc = {"same-size replacement at the growth point",
                          GROWTH_CAP,
                          1,
                          setup_before_growth,
                          op_replace_same_size,
                          true,
                          1};
    long sites = run_scenario(&sc);

    cr_assert_leq(sites, 2,
                  "a same-size replacement reached %ld allocation "
                  "sites (entry, retirement batch: no index growth)",
                  sites);
}

/* A replacement that adds bytes, at the growth point: it may evict, but
 * the shard will not hold one entry more, so it must not grow the index
 * either (a refused growth would fail a put that needed none). */
static pc_status op_replace_larger(pc_cache *c)
{
    return put_kv(c, 10000, 1); /* 47 bytes of value where 40 were */
}

Test(faults, larger_replacement_at_the_growth_point_fails_cleanly)
{
    struct scenario sc = {"larger replacement at the growth point",
                          GROWTH_CAP,
                          1,
                          setup_before_growth,
                          op_replace_larger,
                          true,
                          1};
    long sites = run_scenario(&sc);

    cr_assert_leq(sites, 2,
                  "a larger replacement reached %ld allocation sites "
                  "(entry, retirement batch: no index growth)",
                  sites);
}

/* Same-size replacements of every key of a shard at its growth point,
 * then the new keys that make it grow: every key keeps its latest value. */
Test(faults, same_size_replacements_survive_index_growth)
{
    pc_cache *c = cache_new(GROWTH_CAP, 1);

    setup_before_growth(c);
    for (uint64_t k = 0; k < GROWTH_AT; k++)
        cr_assert_eq(put_kv(c, 10000 + k, 60), PC_OK); /* same size: +60 */
    for (uint64_t k = 0; k < GROWTH_AT / 4; k++)
        cr_assert_eq(put_kv(c, 500000 + k, 1), PC_OK);
    cr_assert_eq(pc_len(c), GROWTH_AT + GROWTH_AT / 4);
    for (uint64_t k = 0; k < GROWTH_AT + GROWTH_AT / 4; k++) {
        uint64_t key = k < GROWTH_AT ? 10000 + k : 500000 + k - GROWTH_AT;
        uint64_t ver = k < GROWTH_AT ? 60 : 1;
        unsigned char want[64], got[64];
        size_t wn = val_make(want, key, ver), gn = 0;

        cr_assert_eq(pc_get(c, &key, sizeof key, got, sizeof got, &gn), PC_OK,
                     "key %lu lost", (unsigned long)key);
        cr_assert(gn == wn && memcmp(got, want, wn) == 0,
                  "key %lu: wrong value", (unsigned long)key);
    }
    pc_destroy(c);
}

/* A delete or clear may allocate a retirement batch, but never fails for
 * want of one (retire.h spills instead). */
Test(faults, delete_never_fails)
{
    struct scenario sc = {"delete",        12,    0, setup_full_some_used,
                          op_delete_first, false, 0};

    run_scenario(&sc);
}

Test(faults, clear_never_fails)
{
    struct scenario sc = {"clear",  12,    0, setup_full_some_used,
                          op_clear, false, 0};

    run_scenario(&sc);
}

/* Lower a 2000-entry cache's capacity to 100. */
static pc_status op_lower_capacity(pc_cache *c)
{
    return pc_set_capacity(c, 100);
}

/* Lowered, then raised (no trim, nothing allocated), then every key read
 * (a use each, so evictions reach past the entries kept): the victims
 * compared afterwards then include puts into free room, which go where
 * the trimmed (or untrimmed) structures put them. */
static pc_status op_lower_capacity_then_raise(pc_cache *c)
{
    pc_status st = pc_set_capacity(c, 100);

    if (st == PC_OK)
        st = pc_set_capacity(c, 100 + KEYS * 3 / 4);
    for (uint64_t k = 0; st == PC_OK && k < 2000; k++)
        get_u64(c, k, NULL);
    return st;
}

/* A capacity change never fails: what it may allocate is optional (the
 * frequency policy's ghost, rebuilt at the smaller share's size: kept as it
 * is if that fails). */
Test(faults, set_capacity_never_fails)
{
    struct scenario sc = {"set_capacity",
                          KEYS,
                          1,
                          setup_full_some_used,
                          op_halve_capacity,
                          false,
                          is_frequency() ? 1 : 0};

    run_scenario(&sc);
}

/* Nor when it leaves the index, the policy's arrays and the expiry queue
 * (some entries can expire) at least four times larger than the entries
 * need: their smaller copies are optional too (index.h, pc__index_trim),
 * and a copy that could not be made changes no victim, even of puts into
 * free room after a raise (clock packs its ring in place then, as the
 * copy would be packed; it once kept its free slots, which later puts
 * filled in another order). (The evictions reach 14 or 15 sites,
 * retirement batches mostly; the copies 3 or 4.) */
static void setup_full_some_expiring(pc_cache *c)
{
    setup_full_some_used(c);
    for (uint64_t k = 0; k < pc_capacity(c); k += 5) {
        uint64_t v = k;
        pc_put_args a = {.ttl_ms = 3600000};

        pc_put_ex(c, &k, sizeof k, &v, sizeof v, &a);
    }
    /* The replaced entries' retire batches, freed now: otherwise how many
     * of them a grace period has handed back for reuse by the time the
     * operation runs, and so how many batches it allocates, depends on
     * timing (a loaded machine once made a lowering reach 15 allocation
     * sites, not the 16 the test asks for). */
    pc_reclaim(c);
}

Test(faults, lowering_the_capacity_far_never_fails)
{
    struct scenario sc = {"lower capacity",  2000,  1, setup_full_some_expiring,
                          op_lower_capacity, false, 16};
    struct scenario raised = {
        "lower capacity, then raise it", 2000,  1, setup_full_some_expiring,
        op_lower_capacity_then_raise,    false, 16};

    run_scenario(&sc);
    run_scenario(&raised);
}

/* Caches A and B of 4096 entries, one shard, filled, every third key read;
 * A's next call (`lower`) has no memory at all, B's has; then both get the
 * same calls (`then`). Every key either may hold must then be in both or
 * in neither. */
static void same_after_a_short_lowering(void (*lower)(pc_cache *c),
                                        void (*then)(pc_cache *c),
                                        const char *what)
{
    pc_cache *a = cache_new(4096, 1), *b = cache_new(4096, 1);
    uint64_t v;

    for (uint64_t k = 0; k < 4096; k++) {
        put_u64(a, k, k);
        put_u64(b, k, k);
    }
    for (uint64_t k = 0; k < 4096; k += 3) {
        get_u64(a, k, &v);
        get_u64(b, k, &v);
    }
    pc__alloc_fail_after(0);
    lower(a);
    pc__alloc_fail_after(-1);
    lower(b);
    then(a);
    then(b);
    cr_assert_eq(pc_len(a), pc_len(b), "%s: len %zu vs %zu", what, pc_len(a),
                 pc_len(b));
    for (uint64_t k = 0; k < 20000; k++)
        cr_assert_eq(get_u64(a, k, &v) == PC_OK, get_u64(b, k, &v) == PC_OK,
                     "%s: key %lu in one cache only", what, (unsigned long)k);
    pc_destroy(a);
    pc_destroy(b);
}

static void capacity_600(pc_cache *c)
{
    cr_assert_eq(pc_set_capacity(c, 600), PC_OK);
}

/* Lowered again, a little (a trim that could allocate the first time has
 * nothing to do now), raised, every key read (a use each), then 400 new
 * keys: 300 into free room, 100 evicting. clock, once, packed its ring a
 * second time (the allocation it had kept, not the ring's size, decided):
 * the new keys took other slots, and 100 other keys were evicted. */
static void capacity_300_then_600_then_puts(pc_cache *c)
{
    cr_assert_eq(pc_set_capacity(c, 300), PC_OK);
    cr_assert_eq(pc_set_capacity(c, 600), PC_OK);
    for (uint64_t k = 0; k < 4096; k++)
        get_u64(c, k, NULL);
    for (uint64_t k = 10000; k < 10400; k++)
        cr_assert_eq(put_u64(c, k, k), PC_OK);
}

static void bytes_100_entries(pc_cache *c)
{
    cr_assert_eq(pc_set_max_bytes(c, 16 * 100), PC_OK);
}

/* Churned, lowered again (to 50 entries), then keys the frequency policy's
 * ghost remembers come back: it once forgot its ghost in the second
 * lowering (decided by the allocation it had kept), where a cache whose
 * first lowering had memory kept it, and 24 keys differed. */
static void churn_bytes_50_entries_then_returns(pc_cache *c)
{
    for (uint64_t k = 10000; k < 10600; k++)
        cr_assert_eq(put_u64(c, k, k), PC_OK);
    cr_assert_eq(pc_set_max_bytes(c, 16 * 50), PC_OK);
    for (int r = 0; r < 3; r++)
        for (uint64_t k = 10400; k < 10600; k++)
            cr_assert_eq(put_u64(c, k, k), PC_OK);
}

Test(faults, a_limit_lowered_short_of_memory_evicts_as_if_it_had_not_been)
{
    same_after_a_short_lowering(capacity_600, capacity_300_then_600_then_puts,
                                "capacity");
    same_after_a_short_lowering(bytes_100_entries,
                                churn_bytes_50_entries_then_returns, "bytes");
}

static uint64_t fault_now_ms;

static uint64_t fault_now(void *ctx)
{
    (void)ctx;
    return fault_now_ms;
}

/* A cache of 4096 entries, one shard, on the clock above: every even key
 * expires at 1100 ms, the odd ones never; every third key read. */
static pc_cache *cache_half_expiring(void)
{
    pc_options o = test_opts(4096);
    pc_cache *c = NULL;

    o.shards = 1;
    o.hash_seed = SEED;
    o.now_ms = fault_now;
    cr_assert_eq(pc_create(&o, &c), PC_OK);
    fault_now_ms = 1000;
    for (uint64_t k = 0; k < 4096; k++) {
        pc_put_args a = {.ttl_ms = k % 2 == 0 ? 100 : 0};

        cr_assert_eq(pc_put_ex(c, &k, sizeof k, &k, sizeof k, &a), PC_OK);
    }
    for (uint64_t k = 0; k < 4096; k += 3)
        get_u64(c, k, NULL);
    return c;
}

/* How many of the keys that never expire c holds (a use of each). */
static size_t live_held(pc_cache *c)
{
    size_t n = 0;

    for (uint64_t k = 1; k < 4096; k += 2)
        n += get_u64(c, k, NULL) == PC_OK;
    return n;
}

/* What every key reads in a and in b is the same. */
static void reads_alike(pc_cache *a, pc_cache *b, const char *when)
{
    for (uint64_t k = 0; k < 20000; k++)
        cr_assert_eq(get_u64(a, k, NULL), get_u64(b, k, NULL),
                     "%s: key %lu reads differently", when, (unsigned long)k);
}

/* With entries that can expire, a trim short of memory keeps the index
 * table, and with it the expiry queue's order among entries due at the
 * same time (a trim that could allocate rebuilds the queue). Which of
 * several expired entries a put takes first may then differ, and with it
 * where CLOCK places the new key: what no read can tell apart, until
 * live entries are evicted (pc_set_capacity's comment). What must hold:
 * expired entries still go before every live one, and reads agree while
 * only expired entries go. */
Test(faults, a_lowering_short_of_memory_still_takes_expired_entries_first)
{
    pc_cache *a = cache_half_expiring(), *b = cache_half_expiring();
    size_t live = 0, len;

    pc__alloc_fail_after(0);
    cr_assert_eq(pc_set_capacity(a, 1000), PC_OK);
    pc__alloc_fail_after(-1);
    cr_assert_eq(pc_set_capacity(b, 1000), PC_OK);
    reads_alike(a, b, "lowered");
    fault_now_ms = 2000; /* the even keys have expired */
    live = live_held(a);
    cr_assert_eq(live_held(b), live);
    len = pc_len(a);
    cr_assert_gt(len - live, 100, "%zu expired entries held", len - live);
    /* As many new keys as there are expired entries: only those go. */
    for (uint64_t k = 0; k < len - live; k++) {
        cr_assert_eq(put_u64(a, 10000 + k, k), PC_OK);
        cr_assert_eq(put_u64(b, 10000 + k, k), PC_OK);
    }
    reads_alike(a, b, "expired entries replaced");
    cr_assert_eq(live_held(a), live,
                 "live entries evicted before expired ones");
    cr_assert_eq(live_held(b), live,
                 "live entries evicted before expired ones");
    for (uint64_t k = 0; k < 400; k++) {
        cr_assert_eq(put_u64(a, 15000 + k, k), PC_OK);
        cr_assert_eq(put_u64(b, 15000 + k, k), PC_OK);
    }
    cr_assert_eq(pc_len(a), 1000); /* (which live keys went may differ) */
    cr_assert_eq(pc_len(b), 1000);
    pc_destroy(a);
    pc_destroy(b);
}

/* The expiry queue's marks after a trim short of memory (clock, frequency;
 * exq.h). The trim shrinks the index but cannot make smaller marks: the
 * old array stays, marked for the trimmed table's positions. Puts with no
 * ttl then regrow the index to exactly its old size, so the array is the
 * table's size but its marks name slots of the trimmed table. A put with
 * a ttl that lands on such a slot once trusted the mark and pushed no
 * item: its entry was covered by none, and the next rebuild appended more
 * items than the array held (a heap overflow in release builds). Now
 * every entry that can expire keeps an item. Table sizes follow the
 * allocator's size classes, so the test looks for a capacity, and a
 * point in the lowering's allocations, that reach that state. */
static struct shard *exq_shard(pc_cache *c)
{
    return &sc_of(c)->shards[0];
}

/* Whether key k, put now into c's one shard, lands on a marked slot. */
static bool lands_on_a_mark(pc_cache *c, uint64_t k)
{
    struct shard *s = exq_shard(c);
    uint64_t h = pc__hash_key(&c->seed, &k, sizeof k);
    const struct pc__table *t = s->ix.table;
    size_t home = pc__index_home((uint32_t)h, t->n);
    uint32_t free_slots = pc__index_match(t->chunks[home].ctrl, 0);

    return free_slots != 0 && home < s->exq.nmarks &&
           (s->exq.marks[home] >> __builtin_ctz(free_slots) & 1u);
}

Test(faults, marks_a_short_trim_left_never_skip_a_push_after_a_regrowth)
{
    pc_put_args ttl = {.ttl_ms = 1000000};
    bool reached = false;

    if (is_lru())
        return; /* (its expiry heap has no marks) */
    for (size_t cap = 4096; cap < 12000 && !reached; cap += 97) {
        for (long n = 0; n < 60 && !reached; n++) {
            pc_options o = test_opts(cap);
            pc_cache *c;
            struct shard *s;
            size_t chunks;
            uint64_t k = 0, p = 1u << 20, q = 1u << 24;
            int on_marks = 0;

            o.shards = 1;
            o.hash_seed = SEED;
            o.now_ms = test_now;
            cr_assert_eq(pc_create(&o, &c), PC_OK);
            s = exq_shard(c);
            /* Keys with a ttl until the queue has room for one item more. */
            do {
                cr_assert_eq(pc_put_ex(c, &k, sizeof k, &k, sizeof k, &ttl),
                             PC_OK);
                k++;
            } while (s->exq.n + 1 != s->exq.cap || s->exq.n < 40);
            chunks = pc__index_chunk_count(&s->ix);
            pc_reclaim(c);
            pc__alloc_fail_after(n);
            pc_set_capacity(c, s->exq.n); /* evicts nothing; trims */
            pc__alloc_fail_after(-1);
            if (pc__index_chunk_count(&s->ix) >= chunks ||
                s->exq.nmarks != chunks) {
                pc_destroy(c);
                continue;
            }
            cr_assert_eq(pc_set_capacity(c, cap), PC_OK);
            while (pc__index_chunk_count(&s->ix) < chunks) {
                cr_assert_eq(pc_put(c, &p, sizeof p, &p, sizeof p), PC_OK);
                p++;
            }
            if (pc__index_chunk_count(&s->ix) != chunks) {
                pc_destroy(c);
                break; /* regrown to another size: next capacity */
            }
            reached = true;
            test_advance(10); /* due after every item queued */
            for (; on_marks < 2 && q < (1u << 24) + 1000000; q++) {
                if (!lands_on_a_mark(c, q))
                    continue;
                cr_assert_eq(pc_put_ex(c, &q, sizeof q, &q, sizeof q, &ttl),
                             PC_OK);
                on_marks++;
                cr_assert_geq(s->exq.n, s->expiring,
                              "%zu entries can expire, %u items cover them",
                              s->expiring, s->exq.n);
            }
            cr_assert_geq(on_marks, 1); /* (a rebuild clears them) */
            for (q = 1u << 26; lands_on_a_mark(c, q); q++)
                ;
            cr_assert_eq(pc_put_ex(c, &q, sizeof q, &q, sizeof q, &ttl), PC_OK);
            cr_assert_geq(s->exq.n, s->expiring);
            pc_destroy(c);
        }
    }
    cr_assert(reached, "no capacity led to a regrowth to the marks' size");
}

/* Random puts (half with a ttl), reads, deletes, and lowered limits whose
 * smaller structures cannot be allocated, then raised ones: the expiry
 * queue must cover every entry that can expire through every table the
 * index keeps or builds. A growth after a trim short of memory can build a
 * table smaller than the one kept, and marks left from the larger one
 * named other positions: puts skipped pushes, and the next rebuild of the
 * queue wrote past its array (the debug build's invariant check, and
 * ASan, stop there; about one seed in twenty did). Afterwards, with every
 * entry that can expire past its time, puts of new keys take only those:
 * no entry that never expires goes while one that expired is held. */
#define RND_KEYS 12000

static uint64_t rnd_state;

static uint64_t rnd(void)
{
    rnd_state ^= rnd_state << 13;
    rnd_state ^= rnd_state >> 7;
    rnd_state ^= rnd_state << 17;
    return rnd_state;
}

/* How many of the keys below RND_KEYS that never expire (the odd ones) c
 * holds (a use of each). */
static size_t odd_held(pc_cache *c)
{
    size_t n = 0, len;
    char buf[64];

    for (uint64_t k = 1; k < RND_KEYS; k += 2)
        n += pc_get(c, &k, sizeof k, buf, sizeof buf, &len) == PC_OK;
    return n;
}

static void random_limits_short_of_memory(unsigned seed)
{
    pc_options o = test_opts(0);
    pc_cache *c = NULL;
    char val[64] = {0};

    rnd_state = seed * 2654435761u + 1;
    o.capacity = 64 + rnd() % 8192;
    o.shards = 1;
    o.hash_seed = SEED;
    o.now_ms = fault_now;
    fault_now_ms = 1000;
    cr_assert_eq(pc_create(&o, &c), PC_OK);
    for (int i = 0; i < 2000; i++) {
        unsigned op = rnd() % 1000;
        uint64_t k = rnd() % RND_KEYS;

        if (op < 600) {
            pc_put_args a = {.ttl_ms = k % 2 == 0 ? 2000 : 0};

            /* (injection is off here; every entry fits the byte bound) */
            cr_assert_eq(pc_put_ex(c, &k, sizeof k, val, 1 + rnd() % 40, &a),
                         PC_OK);
            fault_now_ms++;
        } else if (op < 850) {
            get_u64(c, k, NULL);
        } else if (op < 950) {
            pc_delete(c, &k, sizeof k);
        } else if (op < 980) {
            size_t to = 1 + k % 8192;
            bool lower = to < pc_capacity(c);

            pc__alloc_fail_after(lower ? 0 : -1);
            cr_assert_eq(pc_set_capacity(c, to), PC_OK);
            pc__alloc_fail_after(-1);
        } else {
            pc__alloc_fail_after(0);
            cr_assert_eq(pc_set_max_bytes(c, k % 3 == 0 ? 0 : 64 + k * 32),
                         PC_OK);
            pc__alloc_fail_after(-1);
        }
    }
    cr_assert_eq(pc_set_max_bytes(c, 0), PC_OK);
    fault_now_ms += 10000; /* every entry that can expire has */
    size_t held = pc_len(c), room = pc_capacity(c) - held;
    size_t live = odd_held(c);
    for (uint64_t k = 0; k < room + (held - live); k++)
        cr_assert_eq(put_u64(c, RND_KEYS + k, k), PC_OK);
    size_t after = odd_held(c);

    cr_assert_eq(pc_len(c), pc_capacity(c), "seed %u", seed);
    cr_assert_eq(after, live,
                 "seed %u: %zu entries that never expire evicted while "
                 "expired ones were held",
                 seed, live - after);
    pc_destroy(c);
}

Test(faults, random_limits_lowered_short_of_memory_keep_every_expiry_queued)
{
    for (unsigned seed = 1; seed <= 64; seed++)
        random_limits_short_of_memory(seed);
}

static int rm_reports;

static void count_removal(void *ctx, const void *key, size_t klen,
                          const void *val, size_t vlen, pc_removal_cause cause)
{
    (void)ctx, (void)key, (void)klen, (void)val, (void)vlen, (void)cause;
    rm_reports++;
}

/* A put with a ttl over its key's own expired entry, refused for memory
 * at some allocation after the entry's (the expiry queue's room, found by
 * trying m other expiring entries and n allocations), changes nothing:
 * the expired entry stays until a put commits (helper-34: it had gone,
 * reported, counted and its room given back). */
Test(faults, a_put_over_its_expired_entry_that_fails_removes_nothing)
{
    long refused = 0;

    for (int m = 0; m < 64; m++) {
        for (long n = 0; n < 4; n++) {
            pc_options o = test_opts(64);
            pc_cache *c = NULL;
            pc_stats a, b;
            pc_put_args ttl = {.ttl_ms = 5}, later = {.ttl_ms = 1000};

            o.shards = 1;
            o.hash_seed = 7;
            o.now_ms = fault_now;
            o.on_removal = count_removal;
            fault_now_ms = 1000;
            rm_reports = 0;
            cr_assert_eq(pc_create(&o, &c), PC_OK);
            for (int i = 0; i < m; i++) {
                char k[16];
                pc_put_args t = {.ttl_ms = 1000 + (uint64_t)i};

                snprintf(k, sizeof k, "k%d", i);
                cr_assert_eq(pc_put_ex(c, k, strlen(k), "v", 1, &t), PC_OK);
            }
            cr_assert_eq(pc_put_ex(c, "key", 3, "old-value", 9, &ttl), PC_OK);
            fault_now_ms += 10; /* "key" has expired, still held */
            pc_stats_get(c, &a);
            size_t len = pc_len(c);
            uint64_t bytes = pc_bytes(c);

            pc__alloc_fail_after(n);
            pc_status st = pc_put_ex(c, "key", 3, "new", 3, &later);
            pc__alloc_fail_after(-1);
            pc_stats_get(c, &b);
            if (st == PC_ENOMEM) {
                refused++;
                cr_assert_eq(pc_len(c), len, "m=%d n=%ld", m, n);
                cr_assert_eq(pc_bytes(c), bytes, "m=%d n=%ld", m, n);
                cr_assert_eq(b.expirations, a.expirations, "m=%d n=%ld", m, n);
                cr_assert_eq(rm_reports, 0, "m=%d n=%ld", m, n);
            } else {
                cr_assert_eq(st, PC_OK);
            }
            /* and the put then works */
            cr_assert_eq(pc_put_ex(c, "key", 3, "new", 3, &later), PC_OK);
            char buf[16];
            size_t vlen = 0;

            cr_assert_eq(pc_get(c, "key", 3, buf, sizeof buf, &vlen), PC_OK);
            cr_assert_eq(vlen, 3);
            pc_destroy(c);
        }
    }
    cr_assert_gt(refused, 0, "no put was refused: the search found nothing");
}

Test(faults, reclaim_is_unaffected_by_allocation_failure)
{
    struct scenario sc = {"reclaim",  12,    0, setup_full_some_used,
                          op_reclaim, false, 0};

    run_scenario(&sc);
}

/* A pinned read whose pin cannot be allocated records no use: the next
 * eviction picks the victim it would have picked without the call (lru:
 * the key stays least recent; clock: its reference bit stays clear). */
Test(faults, pinned_read_that_fails_records_no_use)
{
    pc_cache *c = cache_new(2, 1);
    uint64_t a = 1, b = 2, x = 3;
    pc_pin pin;

    cr_assert_eq(put_kv(c, a, 0), PC_OK);
    cr_assert_eq(put_kv(c, b, 0), PC_OK);
    cr_assert_eq(pc_get(c, &x, sizeof x, NULL, 0, NULL), PC_NOTFOUND);
    pc__alloc_fail_after(0);
    cr_assert_eq(pc_get_pinned(c, &a, sizeof a, &pin), PC_ENOMEM);
    cr_assert_gt(pc__alloc_fail_after(-1), 0);
    cr_assert_eq(put_kv(c, x, 0), PC_OK); /* evicts one */
    if (!is_frequency()) { /* (one use does not move a probation entry) */
        cr_assert_eq(pc_get(c, &a, sizeof a, NULL, 0, NULL), PC_NOTFOUND,
                     "the failed pinned read counted as a use");
        cr_assert_neq(pc_get(c, &b, sizeof b, NULL, 0, NULL), PC_NOTFOUND);
    }
    cr_assert_eq(pc_get_pinned(c, &x, sizeof x, &pin), PC_OK);
    pc_unpin(&pin);
    pc_destroy(c);
}

static int load_small(void *ctx, const void *key, size_t klen, pc_sink *out)
{
    (void)ctx;
    return pc_sink_set(out, key, klen) == PC_OK ? 0 : 1;
}

/* pc_get_or_load or pc_memo_call of a missing key, given n allocations:
 * one that fails with PC_ENOMEM changes nothing, its statistics included
 * (it counts no miss); one that succeeds counts one miss and one loader
 * call (a store short of memory does not fail it). */
static void get_or_load_short_of_memory(bool memo)
{
    for (long n = 0;; n++) {
        pc_cache *c = cache_new(KEYS, 2);
        pc_backend be;
        pc_memo *m = NULL;
        pc_stats before, after, cbefore, cafter;
        uint64_t k = 7777;
        unsigned char v[16];
        size_t len = 0;
        pc_status st;
        long made;

        setup_half_full(c);
        if (memo) {
            cr_assert_eq(pc_backend_from_cache(c, &be), PC_OK);
            cr_assert_eq(pc_memo_create(&be, &m), PC_OK);
            st = pc_memo_call(m, "warm", 4, load_small, NULL, v, sizeof v, &len,
                              NULL); /* registers this thread */
            cr_assert_eq(st, PC_OK);
            cr_assert_eq(pc_memo_stats(m, &before), PC_OK);
        } else {
            cr_assert_eq(get_u64(c, 0, NULL), PC_OK); /* registers it */
            cr_assert_eq(pc_stats_get(c, &before), PC_OK);
        }
        size_t len0 = pc_len(c);

        cr_assert_eq(pc_stats_get(c, &cbefore), PC_OK);
        pc__alloc_fail_after(n);
        st = memo ? pc_memo_call(m, &k, sizeof k, load_small, NULL, v, sizeof v,
                                 &len, NULL)
                  : pc_get_or_load(c, &k, sizeof k, load_small, NULL, v,
                                   sizeof v, &len, NULL);
        made = pc__alloc_fail_after(-1);
        cr_assert_eq(memo ? pc_memo_stats(m, &after) : pc_stats_get(c, &after),
                     PC_OK);
        /* A memoizer over a cache counts in both (the cache's as pc_get). */
        cr_assert_eq(pc_stats_get(c, &cafter), PC_OK);
        cr_assert_eq(cafter.misses - cbefore.misses,
                     after.misses - before.misses, "n=%ld: cache misses", n);
        cr_assert_eq(cafter.hits, cbefore.hits, "n=%ld: cache hits", n);
        if (st == PC_ENOMEM) {
            cr_assert_eq(after.misses, before.misses,
                         "n=%ld: a failed call counted a miss", n);
            cr_assert_eq(after.hits, before.hits);
            cr_assert_eq(after.loader_calls, before.loader_calls);
            cr_assert_eq(pc_len(c), len0, "n=%ld: a failed call stored", n);
        } else {
            cr_assert_eq(st, PC_OK, "n=%ld: status %d", n, st);
            cr_assert(len == sizeof k && memcmp(v, &k, len) == 0);
            cr_assert_eq(after.misses, before.misses + 1, "n=%ld", n);
            cr_assert_eq(after.hits, before.hits, "n=%ld", n);
            cr_assert_eq(after.loader_calls, before.loader_calls + 1);
        }
        if (memo)
            pc_memo_destroy(m); /* and its backend, c */
        else
            pc_destroy(c);
        if (made <= n) {
            cr_assert_gt(n, 0, "the call allocated nothing");
            break;
        }
    }
}

Test(faults, get_or_load_short_of_memory_counts_nothing)
{
    get_or_load_short_of_memory(false);
}

Test(faults, memo_call_short_of_memory_counts_nothing)
{
    get_or_load_short_of_memory(true);
}

/* a put of a new key asks the policy for room
 * first (shard.h: reserve, "false on ENOMEM, nothing changed"), then the
 * index and the expiry queue. The frequency policy's reserve may rebuild
 * its ghost larger, forgetting every word (ghost.h); if a later step of
 * the same put then fails (the expiry queue's first allocation here), the
 * put returns PC_ENOMEM but the ghost has lost what it remembered, so
 * keys returning after the failed put are placed differently (SMALL
 * instead of MAIN) and different keys are evicted than in a cache that
 * never saw the call. Setup: a 64-entry shard churned (its 8-bucket ghost,
 * its largest at that share, full of SMALL's victims), then the capacity
 * raised to 4096: the next new key grows the ghost. A and B must stay
 * indistinguishable after A's failed put. */
static bool has_key(pc_cache *c, uint64_t k)
{
    unsigned char v[64];
    size_t n;

    return pc_get(c, &k, sizeof k, v, sizeof v, &n) == PC_OK;
}

static void setup_ghost_then_raise(pc_cache *c)
{
    for (uint64_t k = 0; k < 400; k++)
        put_kv(c, k, 0);
    cr_assert_eq(pc_set_capacity(c, 4096), PC_OK);
}

/* After the failed put: the capacity back to 64, one entry deleted, so
 * that the next new key grows nothing, and SMALL's last victim returns:
 * the ghost remembers it (B), so it goes to MAIN, and outlives the new
 * keys that follow; a ghost that forgot it (A) puts it on probation in
 * SMALL, where the next new keys evict it. */
static void replay_and_shrink(pc_cache *c)
{
    uint64_t k = 10;

    cr_assert_eq(pc_set_capacity(c, 64), PC_OK);
    cr_assert_eq(pc_delete(c, &k, sizeof k), PC_OK);
    put_kv(c, 396, 1);
    for (k = 2000; k < 2010; k++)
        put_kv(c, k, 1);
}

Test(faults, a_failed_put_leaves_the_frequency_ghost_as_it_was)
{
    int differing = -1;

    if (!is_frequency())
        return;
    for (long n = 0; n < 64; n++) {
        pc_cache *a = cache_new(64, 1), *b = cache_new(64, 1);
        pc_status st;
        long made;

        setup_ghost_then_raise(a);
        setup_ghost_then_raise(b);
        pc__alloc_fail_after(n);
        st = op_put_new_ttl(a);
        made = pc__alloc_fail_after(-1);
        if (st == PC_ENOMEM) {
            replay_and_shrink(a);
            replay_and_shrink(b);
            for (uint64_t k = 0; k < 2100 && differing < 0; k++)
                if (has_key(a, k) != has_key(b, k))
                    differing = (int)n;
        }
        pc_destroy(a);
        pc_destroy(b);
        if (differing >= 0 || made <= n)
            break;
    }
    cr_assert_lt(differing, 0,
                 "after a put that failed with PC_ENOMEM (the first %d "
                 "allocations of the call succeeded), the cache keeps other "
                 "keys than one that never saw the call",
                 differing);
}

/* The frequency policy's ghost, shrunk short of memory (ghost.h: the first
 * buckets of the larger allocation, emptied), forgets what it held as a
 * ghost that could allocate does: grown back within that allocation as the
 * shard refills, it remembers none of the keys evicted before. 100 keys
 * leave SMALL; the capacity goes from 1000 to 100 with no memory, and back;
 * 1000 new keys refill the cache, then the 100 come back, each evicting
 * one: none is a ghost hit (to MAIN), so a scan takes every one. (CLOCK and
 * lru have no ghost: they keep none of them either.) */
Test(faults, a_ghost_shrunk_short_of_memory_forgets_its_words)
{
    pc_cache *c = cache_new(1000, 1);
    uint64_t v;
    size_t kept = 0;

    for (uint64_t k = 0; k < 3000; k++) /* full; SMALL at its target */
        put_u64(c, 100000 + k, k);
    for (uint64_t k = 0; k < 100; k++) /* then evicted from SMALL */
        put_u64(c, k, k);
    for (uint64_t k = 0; k < 100; k++)
        put_u64(c, 200000 + k, k);
    pc__alloc_fail_after(0);
    cr_assert_eq(pc_set_capacity(c, 100), PC_OK);
    pc__alloc_fail_after(-1);
    cr_assert_eq(pc_set_capacity(c, 1000), PC_OK);
    for (uint64_t k = 0; k < 1000; k++) /* refilled: the ghost grows */
        put_u64(c, 300000 + k, k);
    cr_assert_eq(pc_len(c), 1000);
    for (uint64_t k = 0; k < 100; k++)
        put_u64(c, k, k);
    for (uint64_t k = 0; k < 5000; k++)
        put_u64(c, 400000 + k, k);
    for (uint64_t k = 0; k < 100; k++)
        kept += get_u64(c, k, &v) == PC_OK;
    cr_assert_eq(kept, 0,
                 "%zu keys evicted before the lowering outlived a "
                 "scan (ghost hits, to MAIN)",
                 kept);
    pc_destroy(c);
}

/* A trim short of memory keeps its table but takes the smaller table's
 * load limit (index.h, pc__index_trim), so that the next growth builds the
 * table the smaller one would have grown to: cache A, whose trim could not
 * allocate, and cache B, whose trim could, grow to the same table at the
 * same put. (Otherwise A kept its large table's limit, and a cache lowered
 * and raised again never sized its index from its entries.) */
Test(faults, a_trim_short_of_memory_regrows_as_the_trimmed_table_would)
{
    bool reached = false;

    if (is_lru())
        return; /* (shard_state.h is the CLOCK build's) */
    for (long n = 0; n < 60 && !reached; n++) {
        pc_cache *a = cache_new(20000, 1), *b = cache_new(20000, 1);
        struct pc__index *ia = &exq_shard(a)->ix, *ib = &exq_shard(b)->ix;
        size_t chunks, small;
        pc_status st;

        for (uint64_t k = 0; k < 10000; k++) {
            cr_assert_eq(put_u64(a, k, k), PC_OK);
            cr_assert_eq(put_u64(b, k, k), PC_OK);
        }
        for (uint64_t k = 100; k < 10000; k++) {
            cr_assert_eq(pc_delete(a, &k, sizeof k), PC_OK);
            cr_assert_eq(pc_delete(b, &k, sizeof k), PC_OK);
        }
        chunks = pc__index_chunk_count(ia);
        pc_reclaim(a);
        pc_reclaim(b);
        pc__alloc_fail_after(n);
        st = pc_set_capacity(a, 100);
        pc__alloc_fail_after(-1);
        cr_assert_eq(pc_set_capacity(b, 100), PC_OK);
        if (st != PC_OK || pc__index_chunk_count(ia) != chunks ||
            pc__index_chunk_count(ib) >= chunks) {
            pc_destroy(a);
            pc_destroy(b);
            continue; /* not a trim (alone) short of memory */
        }
        reached = true;
        cr_assert_eq(pc_set_capacity(a, 20000), PC_OK);
        cr_assert_eq(pc_set_capacity(b, 20000), PC_OK);
        small = pc__index_chunk_count(ib);
        for (uint64_t k = 50000; pc__index_chunk_count(ib) == small; k++) {
            cr_assert_eq(put_u64(a, k, k), PC_OK);
            cr_assert_eq(put_u64(b, k, k), PC_OK);
        }
        cr_assert_eq(pc__index_chunk_count(ia), pc__index_chunk_count(ib),
                     "grew to %zu chunks, not %zu (from %zu, trimmed %zu)",
                     pc__index_chunk_count(ia), pc__index_chunk_count(ib),
                     chunks, small);
        cr_assert_eq(pc_len(a), pc_len(b));
        pc_destroy(a);
        pc_destroy(b);
    }
    cr_assert(reached, "no allocation refused the trim alone");
}

static bool is_prime(size_t n)
{
    if (n < 2)
        return false;
    for (size_t d = 2; d * d <= n; d++)
        if (n % d == 0)
            return false;
    return true;
}

/* Every table's chunk count is prime (or 1), so that every probe stride
 * visits every chunk (index.h): a table of 25 chunks probed in strides of
 * 5 would cycle through 5 of them, and an insert whose 5 were full would
 * never end. Sizes are fitted to allocation size classes (pc__index_chunks),
 * squares of primes among them; and each holds what it was sized for. */
Test(faults, index_tables_have_a_prime_count_of_chunks)
{
    for (size_t e = 0; e < 300000; e += e < 4096 ? 1 : 61) {
        size_t n = pc__index_chunks(e);

        cr_assert(n == 1 || is_prime(n), "%zu chunks for %zu entries", n, e);
        cr_assert_geq(4 * n, e);
    }
}
