/*
 * Limits: the capacity and the byte bound are the cache's, whatever the
 * shard count. A put evicts only when the cache is full (at capacity one
 * new key evicts exactly one entry), pc_len and pc_bytes never pass their
 * limits, even under concurrent puts, and the limits can change at run
 * time: shrinking evicts before returning, growing takes effect at once.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdlib.h>

#include "hash.h"
#include "testlib.h"

static pc_stats stats(pc_cache *c)
{
    pc_stats s;

    cr_assert_eq(pc_stats_get(c, &s), PC_OK);
    return s;
}

/* Distinct puts up to the capacity evict nothing, whatever the shards. */
static void fill_exactly(size_t cap, unsigned shards)
{
    pc_options o = test_opts(cap);
    pc_cache *c;

    o.shards = shards;
    cr_assert_eq(pc_create(&o, &c), PC_OK);
    for (uint64_t k = 0; k < cap; k++)
        cr_assert_eq(put_u64(c, k, k), PC_OK);
    cr_assert_eq(pc_len(c), cap, "cap %zu shards %u: len %zu", cap, shards,
                 pc_len(c));
    cr_assert_eq(stats(c).evictions, 0, "cap %zu shards %u: evicted early", cap,
                 shards);
    for (uint64_t k = 0; k < cap; k++)
        cr_assert_eq(get_u64(c, k, NULL), PC_OK, "key %lu lost",
                     (unsigned long)k);
    /* At capacity: one new key, one eviction. */
    cr_assert_eq(put_u64(c, cap, cap), PC_OK);
    cr_assert_eq(pc_len(c), cap);
    cr_assert_eq(stats(c).evictions, 1);
    pc_destroy(c);
}

Test(limits, no_eviction_before_the_cache_is_full)
{
    fill_exactly(100000, 0);
    fill_exactly(100, 64);
    fill_exactly(1000, 7);
    fill_exactly(1, 0);
}

/* Keys all in one shard (of 8, under a fixed seed): that shard comes to
 * hold many times its share, as the cache-wide budget allows. Its policy's
 * structures grow past the share they were sized for (the frequency
 * policy's rings stop doubling there while the share suffices), and
 * tombstones from deletes are reused on the way. */
Test(limits, one_shard_may_hold_the_whole_cache)
{
    enum { CAP = 8000, SHARDS = 8, FIRST = 6000, MORE = 3000 };
    pc_options o = test_opts(CAP);
    struct pc__hash_seed seed;
    static uint64_t keys[FIRST + MORE];
    pc_cache *c;

    o.shards = SHARDS;
    o.hash_seed = 0x5eedf00dULL;
    pc__hash_seed_init(&seed, o.hash_seed);
    for (uint64_t k = 0, n = 0; n < FIRST + MORE; k++)
        if (((pc__hash_key(&seed, &k, 8) >> 32) * SHARDS) >> 32 == 0)
            keys[n++] = k;
    cr_assert_eq(pc_create(&o, &c), PC_OK);
    for (size_t i = 0; i < FIRST; i++)
        cr_assert_eq(put_u64(c, keys[i], i), PC_OK);
    for (size_t i = 0; i < FIRST; i += 3)
        cr_assert_eq(pc_delete(c, &keys[i], 8), PC_OK);
    cr_assert_eq(pc_len(c), FIRST - FIRST / 3);
    for (size_t i = 0; i < FIRST; i += 3)
        cr_assert_eq(put_u64(c, keys[i], i), PC_OK);
    cr_assert_eq(pc_len(c), FIRST);
    cr_assert_eq(stats(c).evictions, 0);
    for (size_t i = 0; i < FIRST; i++) {
        uint64_t v = ~0ull;

        cr_assert_eq(get_u64(c, keys[i], &v), PC_OK, "key %zu lost", i);
        cr_assert_eq(v, i);
    }
    /* Up to the capacity in that one shard, still without evicting; then
     * each new key evicts one. */
    for (size_t i = FIRST; i < FIRST + MORE; i++)
        cr_assert_eq(put_u64(c, keys[i], i), PC_OK);
    cr_assert_eq(pc_len(c), CAP);
    cr_assert_eq(stats(c).evictions, FIRST + MORE - CAP);
    cr_assert_eq(get_u64(c, keys[FIRST + MORE - 1], NULL), PC_OK);
    pc_destroy(c);
}

struct racer {
    pc_cache *c;
    uint64_t base;
    size_t cap;
    int over;
};

static void *race_puts(void *p)
{
    struct racer *r = p;

    for (uint64_t i = 0; i < 30000; i++) {
        unsigned char v[64];

        memset(v, (int)i, sizeof v);
        pc_put(r->c, &(uint64_t){r->base + mix64(i) % 50000}, 8, v,
               1 + i % sizeof v);
        if (pc_len(r->c) > r->cap)
            __atomic_store_n(&r->over, 1, __ATOMIC_RELAXED);
    }
    return NULL;
}

Test(limits, len_and_bytes_never_pass_their_limits_under_concurrent_puts)
{
    pc_options o = test_opts(500);
    struct racer r[3];
    pthread_t th[3];
    pc_cache *c;

    o.max_bytes = 500 * 40;
    cr_assert_eq(pc_create(&o, &c), PC_OK);
    for (int i = 0; i < 3; i++) {
        r[i] = (struct racer){c, (uint64_t)i << 40, 500, 0};
        pthread_create(&th[i], NULL, race_puts, &r[i]);
    }
    for (int i = 0; i < 3; i++) {
        pthread_join(th[i], NULL);
        cr_assert_eq(r[i].over, 0, "pc_len passed the capacity");
    }
    cr_assert_leq(pc_len(c), 500);
    cr_assert_leq(pc_bytes(c), o.max_bytes);
    pc_destroy(c);
}

static pc_status put_bytes(pc_cache *c, uint64_t k, size_t vlen)
{
    unsigned char v[4096];

    memset(v, (int)k, vlen);
    return pc_put(c, &k, sizeof k, v, vlen);
}

Test(limits, byte_bound_evicts_until_a_put_fits)
{
    pc_options o = test_opts(1000);
    pc_cache *c;

    o.max_bytes = 1000;
    o.shards = 1;
    cr_assert_eq(pc_create(&o, &c), PC_OK);
    for (uint64_t k = 0; k < 9; k++)
        cr_assert_eq(put_bytes(c, k, 92), PC_OK); /* 100 bytes each */
    cr_assert_eq(pc_bytes(c), 900);
    cr_assert_eq(stats(c).evictions, 0);
    cr_assert_eq(put_bytes(c, 100, 492), PC_OK); /* needs 4 out */
    cr_assert_leq(pc_bytes(c), 1000);
    cr_assert_eq(stats(c).evictions, 4);
    cr_assert_eq(pc_bytes(c), 500 + 5 * 100);
    /* Larger than the bound by itself: refused, nothing changed. */
    cr_assert_eq(put_bytes(c, 200, 993), PC_EINVAL);
    cr_assert_eq(pc_bytes(c), 1000);
    cr_assert_eq(get_u64(c, 200, NULL), PC_NOTFOUND);
    /* Exactly the bound fits, alone. */
    cr_assert_eq(put_bytes(c, 300, 992), PC_OK);
    cr_assert_eq(pc_bytes(c), 1000);
    cr_assert_eq(pc_len(c), 1);
    pc_destroy(c);
}

Test(limits, replacing_with_a_larger_value_evicts_others_first)
{
    pc_options o = test_opts(100);
    pc_cache *c;

    o.max_bytes = 400;
    o.shards = 1;
    cr_assert_eq(pc_create(&o, &c), PC_OK);
    for (uint64_t k = 0; k < 4; k++)
        cr_assert_eq(put_bytes(c, k, 92), PC_OK);
    cr_assert_eq(put_bytes(c, 3, 192), PC_OK); /* +100 bytes */
    cr_assert_leq(pc_bytes(c), 400);
    cr_assert_eq(get_u64(c, 3, NULL), PC_ERANGE, "the key itself was lost");
    cr_assert_eq(pc_len(c), 3);
    /* Shrinking a value returns its bytes. */
    cr_assert_eq(put_bytes(c, 3, 8), PC_OK);
    cr_assert_eq(pc_bytes(c), 2 * 100 + 16);
    pc_destroy(c);
}

Test(limits, set_capacity_shrinks_now_and_grows_at_once)
{
    pc_cache *c = make_cache(100);

    for (uint64_t k = 0; k < 100; k++)
        put_u64(c, k, k);
    cr_assert_eq(pc_set_capacity(c, 0), PC_EINVAL);
    cr_assert_eq(pc_set_capacity(NULL, 5), PC_EINVAL);
    cr_assert_eq(pc_set_capacity(c, PC_CAPACITY_MAX + 1), PC_EINVAL);
    cr_assert_eq(pc_capacity(c), 100, "a refused call changed the capacity");
    cr_assert_eq(pc_set_capacity(c, 10), PC_OK);
    cr_assert_eq(pc_capacity(c), 10);
    cr_assert_eq(pc_len(c), 10);
    cr_assert_eq(stats(c).evictions, 90);
    cr_assert_eq(pc_set_capacity(c, 50), PC_OK);
    for (uint64_t k = 1000; k < 1040; k++)
        put_u64(c, k, k);
    cr_assert_eq(pc_len(c), 50);
    cr_assert_eq(stats(c).evictions, 90, "grown capacity evicted");
    pc_destroy(c);
}

Test(limits, set_max_bytes_shrinks_and_zero_removes_the_bound)
{
    pc_cache *c = make_cache(100);

    for (uint64_t k = 0; k < 20; k++)
        put_bytes(c, k, 92);
    cr_assert_eq(pc_bytes(c), 2000);
    cr_assert_eq(pc_set_max_bytes(NULL, 5), PC_EINVAL);
    cr_assert_eq(pc_set_max_bytes(c, 1000), PC_OK);
    cr_assert_leq(pc_bytes(c), 1000);
    cr_assert_eq(pc_len(c), 10);
    cr_assert_eq(pc_set_max_bytes(c, 0), PC_OK);
    for (uint64_t k = 100; k < 150; k++)
        put_bytes(c, k, 92);
    cr_assert_eq(pc_len(c), 60, "the bound was not removed");
    /* A bound below every entry's size evicts everything. */
    cr_assert_eq(pc_set_max_bytes(c, 10), PC_OK);
    cr_assert_eq(pc_len(c), 0);
    cr_assert_eq(pc_bytes(c), 0);
    pc_destroy(c);
}

Test(limits, bytes_track_every_kind_of_change)
{
    pc_cache *c = make_cache(10);

    cr_assert_eq(pc_bytes(NULL), 0);
    put_bytes(c, 1, 10);
    put_bytes(c, 2, 20);
    cr_assert_eq(pc_bytes(c), 8 + 10 + 8 + 20);
    put_bytes(c, 2, 5);
    cr_assert_eq(pc_bytes(c), 8 + 10 + 8 + 5);
    pc_delete(c, &(uint64_t){1}, 8);
    cr_assert_eq(pc_bytes(c), 8 + 5);
    pc_clear(c);
    cr_assert_eq(pc_bytes(c), 0);
    pc_stats s = stats(c);
    cr_assert_eq(s.bytes, 0);
    pc_destroy(c);
}
