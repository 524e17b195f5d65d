/*
 * The frequency policy's own behaviour (src/frequency.c), on one shard:
 * what separates it from CLOCK. Keys used twice on probation outlive a scan
 * longer than the cache, keys used once do not; a key that returns soon
 * after SMALL evicted it (a ghost hit) enters MAIN and outlives a scan,
 * while a key seen once does not; most keys returning after half a cache
 * of evictions still do (the ghost's buckets keep their newest 8 words).
 * The ghost checks run on a fresh cache and on one whose capacity was
 * lowered and raised again (the ghost rebuilt smaller, then grown back
 * with the entries), with many returning keys, so that several share a
 * ghost bucket and are taken from it out of order.
 *
 * Each test drives the cache to its steady state first (a full cache, then
 * 2x its capacity of one-time keys through SMALL), uses a fixed hash seed,
 * and checks presence only at the end (a get is a use).
 */
#include <criterion/criterion.h>

#include "testlib.h"

#define CAP 1000

/* Key spaces, disjoint. */
#define BASE 0u
#define FILLER 100000u
#define HOT 200000u
#define COLD 300000u
#define SCAN 400000u

static pc_cache *frequency_cache(void)
{
    pc_options o = test_opts(CAP);
    pc_cache *c = NULL;

    o.shards = 1;
    o.hash_seed = 0x5eed;
    cr_assert_eq(pc_create(&o, &c), PC_OK);
    cr_assert_str_eq(pc_cache_policy(c), "frequency");
    return c;
}

static void put_range(pc_cache *c, uint64_t from, uint64_t n)
{
    for (uint64_t k = from; k < from + n; k++)
        cr_assert_eq(put_u64(c, k, k * 3 + 1), PC_OK);
}

/* Full, then 2 * CAP one-time keys: SMALL at its target, MAIN holding the
 * first working set. */
static void settle(pc_cache *c)
{
    put_range(c, BASE, CAP);
    put_range(c, FILLER, 2 * CAP);
    cr_assert_eq(pc_len(c), CAP);
}

static size_t present(pc_cache *c, uint64_t from, uint64_t n)
{
    size_t hits = 0;
    uint64_t v;

    for (uint64_t k = from; k < from + n; k++)
        if (get_u64(c, k, &v) == PC_OK) {
            cr_assert_eq(v, k * 3 + 1);
            hits++;
        }
    return hits;
}

Test(frequency_policy, keys_used_twice_on_probation_outlive_a_scan)
{
    pc_cache *c = frequency_cache();
    uint64_t v;

    settle(c);
    for (uint64_t k = 0; k < 100; k++) { /* (SMALL holds about 50) */
        put_range(c, HOT + k, 1);
        put_range(c, COLD + k, 1);
        cr_assert_eq(get_u64(c, HOT + k, &v), PC_OK); /* two uses */
        cr_assert_eq(get_u64(c, HOT + k, &v), PC_OK);
        cr_assert_eq(get_u64(c, COLD + k, &v), PC_OK); /* one */
    }
    put_range(c, SCAN, 5 * CAP);
    /* CLOCK would have cleared their bits and evicted them all in the
     * scan's first pass; here they went to MAIN, which the scan's one-time
     * keys never reach. */
    cr_assert_eq(present(c, HOT, 100), 100);
    cr_assert_eq(present(c, COLD, 100), 0);
    cr_assert_eq(pc_len(c), CAP);
    pc_destroy(c);
}

/* 100 keys put once and evicted from SMALL (which holds about 5% of CAP);
 * put again (in reverse) after `gap` more one-time keys, they are ghost
 * hits and go to MAIN; 100 other keys put once stay on probation. Then a
 * scan of 5 * CAP one-time keys: at least `least` of the 100 outlive it. */
static void returning_keys_outlive_a_scan(pc_cache *c, uint64_t gap,
                                          size_t least)
{
    pc_stats st;
    uint64_t evicted;
    size_t kept;

    put_range(c, HOT, 100);
    put_range(c, SCAN, 60 + gap); /* SMALL's 50 or so: the hot keys gone */
    cr_assert_eq(present(c, HOT, 100), 0, "the hot keys were not evicted");
    cr_assert_eq(pc_stats_get(c, &st), PC_OK);
    evicted = st.evictions;
    /* Back, soon, newest first: of two sharing a ghost bucket, the newer
     * word is taken first and the older one moves down in its place. */
    for (uint64_t k = 100; k-- > 0;)
        put_range(c, HOT + k, 1);
    cr_assert_eq(pc_stats_get(c, &st), PC_OK);
    cr_assert_eq(st.evictions, evicted + 100);
    put_range(c, COLD, 100);
    put_range(c, SCAN + 60 + gap, 5 * CAP);
    kept = present(c, HOT, 100);
    cr_assert_geq(kept, least,
                  "of 100 keys that returned after eviction (ghost hits, to "
                  "MAIN), %zu outlived the scan",
                  kept);
    cr_assert_eq(present(c, COLD, 100), 0);
    cr_assert_eq(pc_len(c), CAP);
}

Test(frequency_policy, keys_that_return_soon_after_eviction_outlive_a_scan)
{
    pc_cache *c = frequency_cache();

    settle(c);
    returning_keys_outlive_a_scan(c, 0, 100);
    pc_destroy(c);
}

/* After CAP / 2 more evictions, about four newer words have entered each
 * ghost bucket (8 words, FIFO): most hot keys' words are still there, a
 * few fell out (measured: 89 of 100 outlive the scan, 99 after 300
 * evictions, 70 after 700; a ghost_put whose shift dropped a bucket's
 * fifth word kept 55). */
Test(frequency_policy,
     most_keys_that_return_after_half_a_cache_of_evictions_outlive_a_scan)
{
    pc_cache *c = frequency_cache();

    settle(c);
    returning_keys_outlive_a_scan(c, CAP / 2, 75);
    pc_destroy(c);
}

Test(frequency_policy, the_ghost_still_works_after_a_lowered_and_raised_limit)
{
    pc_cache *c = frequency_cache();

    settle(c);
    cr_assert_eq(pc_set_capacity(c, CAP / 10), PC_OK);
    cr_assert_eq(pc_len(c), CAP / 10);
    cr_assert_eq(pc_set_capacity(c, CAP), PC_OK);
    put_range(c, BASE, CAP);
    put_range(c, FILLER, 2 * CAP);
    returning_keys_outlive_a_scan(c, 0, 100);
    pc_destroy(c);
}
