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

/* Keys put once and read twice while on probation: each goes to MAIN with
 * no units when SMALL is evicted from, and every put of them evicts one
 * entry from MAIN (SMALL below its target while it refills). */
static void evict_from_main(pc_cache *c, uint64_t from, uint64_t n)
{
    uint64_t v;

    for (uint64_t k = from; k < from + n; k++) {
        cr_assert_eq(put_u64(c, k, k * 3 + 1), PC_OK);
        cr_assert_eq(get_u64(c, k, &v), PC_OK);
        cr_assert_eq(get_u64(c, k, &v), PC_OK);
    }
}

/* "MAIN's hand spends one unit of a positive ref and sends the entry round
 * again; ref 0 is the victim" (src/frequency.c): a MAIN entry read three
 * times outlives three passes of the hand, one read once only one. Filling
 * an empty cache puts keys past SMALL's 5% straight into MAIN; then
 * 1.5 * CAP evictions from MAIN take every other first key (MAIN has about
 * 950, so the hand passes the read ones twice). */
Test(frequency_policy, mains_hand_spends_one_unit_per_pass)
{
    pc_cache *c = frequency_cache();
    uint64_t v;

    put_range(c, BASE, CAP); /* BASE + 50.. in MAIN, in order */
    for (uint64_t k = 100; k < 200; k++)
        for (int i = 0; i < 3; i++)
            cr_assert_eq(get_u64(c, BASE + k, &v), PC_OK);
    for (uint64_t k = 200; k < 300; k++)
        cr_assert_eq(get_u64(c, BASE + k, &v), PC_OK);
    evict_from_main(c, HOT, CAP * 3 / 2);
    cr_assert_eq(present(c, BASE + 200, 100), 0, "one unit: two passes");
    cr_assert_eq(present(c, BASE + 100, 100), 100,
                 "three units outlive two passes of MAIN's hand");
    cr_assert_eq(pc_len(c), CAP);
    pc_destroy(c);
}

/* "to SMALL otherwise, including keys MAIN let go (their ghost words only
 * measure MAIN)" (src/frequency.c): keys MAIN evicted that come back soon
 * are ghost hits, but go on probation, and a scan takes them. */
Test(frequency_policy, keys_main_let_go_return_on_probation)
{
    pc_cache *c = frequency_cache();

    put_range(c, BASE, CAP);
    evict_from_main(c, HOT, 300); /* BASE + 50.. leave MAIN, oldest first */
    cr_assert_eq(present(c, BASE + 50, 100), 0); /* (misses: no uses) */
    put_range(c, BASE + 50, 100);
    put_range(c, SCAN, 5 * CAP);
    cr_assert_eq(present(c, BASE + 50, 100), 0,
                 "keys MAIN let go went back to MAIN, not to SMALL");
    cr_assert_eq(pc_len(c), CAP);
    pc_destroy(c);
}

/* "A replacement counts as a use" (include/purecache.h, pc_put_ex): on
 * probation, a put of the key again and one read are two uses, and the key
 * goes to MAIN and outlives a scan, as one read twice does. */
Test(frequency_policy, a_replacement_is_a_use_on_probation)
{
    pc_cache *c = frequency_cache();
    uint64_t v;

    settle(c);
    for (uint64_t k = 0; k < 100; k++) {
        put_range(c, HOT + k, 1);
        put_range(c, HOT + k, 1);                     /* a use */
        cr_assert_eq(get_u64(c, HOT + k, &v), PC_OK); /* a second */
        put_range(c, COLD + k, 1);
        put_range(c, COLD + k, 1); /* one use only */
    }
    put_range(c, SCAN, 5 * CAP);
    cr_assert_eq(present(c, HOT, 100), 100);
    cr_assert_eq(present(c, COLD, 100), 0);
    pc_destroy(c);
}

#define RET 500000u  /* keys back from MAIN's ghost, to shrink SMALL */
#define MC2 600000u  /* keys that enter MAIN on their second miss */
#define LATE 700000u /* keys that return to a MAIN whose victim has as many */
#define ONCE 800000u

/* "unless, while cs < 3% of cap (...), its miss count is not above that of
 * MAIN's next victim (TinyLFU's admission test ...)" (src/frequency.c).
 * SMALL's target is driven to its minimum by keys MAIN let go coming back
 * soon; keys SMALL evicted long ago come back (miss count 2) and enter
 * MAIN past victims with a count of 1; every other entry is read, so that
 * MAIN's hand stops at one of them; then keys with a miss count of 2 too
 * come back and stay on probation, where a scan takes them. */
Test(frequency_policy, the_admission_filter_keeps_equal_miss_counts_out_of_main)
{
    pc_cache *c = frequency_cache();
    uint64_t v;

    put_range(c, BASE, CAP);
    evict_from_main(c, HOT, 200);
    put_range(c, BASE + 150, 100); /* recent MAIN ghost hits: SMALL shrinks */
    put_range(c, MC2, 20);
    put_range(c, ONCE, 300); /* MC2 leaves SMALL, long ago */
    put_range(c, MC2, 20);   /* miss count 2 > MAIN's victim's: to MAIN */
    for (uint64_t k = 0; k < CAP; k++) /* all but MC2 (misses: no uses) */
        (void)get_u64(c, BASE + k, &v);
    for (uint64_t k = 0; k < 200; k++)
        (void)get_u64(c, HOT + k, &v);
    put_range(c, LATE, 20);
    put_range(c, ONCE + 300, 300); /* LATE leaves SMALL, long ago */
    put_range(c, LATE, 20);        /* miss count 2, not above MC2's: SMALL */
    put_range(c, SCAN, 5 * CAP);
    cr_assert_eq(present(c, LATE, 20), 0,
                 "keys whose miss count was not above MAIN's next victim's "
                 "entered MAIN");
    cr_assert_eq(pc_len(c), CAP);
    pc_destroy(c);
}

/* "take removes the first word whose fingerprint matches" (src/ghost.h): a
 * ghost hit spends the key's word. 100 keys evicted from SMALL return (ghost
 * hits, to MAIN), are deleted, and, once 100 other keys have taken their
 * room, come back again, each evicting one: no word is left for them, so
 * they go on probation, and a scan takes them. */
Test(frequency_policy, a_ghost_hit_spends_the_keys_word)
{
    pc_cache *c = frequency_cache();

    settle(c);
    put_range(c, HOT, 100);
    put_range(c, SCAN, 60); /* SMALL's 50 or so: the hot keys gone */
    cr_assert_eq(present(c, HOT, 100), 0, "the hot keys were not evicted");
    put_range(c, HOT, 100); /* ghost hits: to MAIN */
    for (uint64_t k = HOT; k < HOT + 100; k++)
        cr_assert_eq(pc_delete(c, &k, sizeof k), PC_OK);
    put_range(c, COLD, 100); /* the room the deletes left */
    cr_assert_eq(pc_len(c), CAP);
    put_range(c, HOT, 100); /* each evicts one; no ghost word: SMALL */
    put_range(c, SCAN + 60, 5 * CAP);
    cr_assert_eq(present(c, HOT, 100), 0,
                 "keys whose ghost word a hit had spent entered MAIN again");
    cr_assert_eq(pc_len(c), CAP);
    pc_destroy(c);
}

/* "SMALL's target grows by one if SMALL evicted it" (src/frequency.c, a
 * recent ghost hit): 100 keys SMALL let go return soon, and SMALL, about
 * 50 entries before, then holds more than 100 of the one-time keys that
 * follow (MAIN, which they never reach, keeps the rest). */
Test(frequency_policy, recent_returns_to_small_grow_its_target)
{
    pc_cache *c = frequency_cache();
    size_t kept;

    settle(c);
    put_range(c, SCAN, 300);
    kept = present(c, SCAN, 300);
    cr_assert_lt(kept, 70, "SMALL held %zu of 300 one-time keys at first",
                 kept);
    put_range(c, HOT, 100);
    put_range(c, SCAN + 300, 60); /* SMALL's 50 or so: the hot keys gone */
    cr_assert_eq(present(c, HOT, 100), 0, "the hot keys were not evicted");
    put_range(c, HOT, 100); /* recent ghost hits of SMALL's */
    put_range(c, ONCE, 300);
    kept = present(c, ONCE, 300);
    cr_assert_gt(kept, 100, "SMALL held %zu of 300 one-time keys", kept);
    pc_destroy(c);
}

/* "victim() remembered it in the ghost: it is not gone after all"
 * (src/frequency.c, keep): a key replaced by a larger value while it is
 * SMALL's next victim, under a byte bound, is offered as a victim, kept,
 * and its ghost word taken back. Deleted, and back once other keys have
 * taken its room, it is a new key the ghost does not hold: on probation,
 * where a scan takes it. */
Test(frequency_policy, a_kept_victim_leaves_no_ghost_word)
{
    pc_options o = test_opts(CAP);
    pc_cache *c = NULL;
    uint64_t k, v, big[2] = {1, 2};
    pc_stats st;
    uint64_t evicted;

    o.shards = 1;
    o.hash_seed = 0x5eed;
    o.max_bytes = CAP * 16;
    cr_assert_eq(pc_create(&o, &c), PC_OK);
    settle(c);
    /* SMALL's oldest key: the first one-time key still present. */
    for (k = FILLER; get_u64(c, k, &v) != PC_OK; k++)
        cr_assert_lt(k, FILLER + 2 * CAP);
    cr_assert_eq(pc_stats_get(c, &st), PC_OK);
    evicted = st.evictions;
    cr_assert_eq(pc_put(c, &k, sizeof k, big, sizeof big), PC_OK);
    cr_assert_eq(pc_stats_get(c, &st), PC_OK);
    cr_assert_eq(st.evictions, evicted + 1, "the larger value evicted %lu",
                 (unsigned long)(st.evictions - evicted));
    cr_assert_eq(pc_delete(c, &k, sizeof k), PC_OK);
    for (uint64_t j = COLD;; j++) { /* the room the delete left */
        evicted = st.evictions;
        put_range(c, j, 1);
        cr_assert_eq(pc_stats_get(c, &st), PC_OK);
        if (st.evictions != evicted)
            break;
    }
    evicted = st.evictions;
    cr_assert_eq(put_u64(c, k, k * 3 + 1), PC_OK);
    cr_assert_eq(pc_stats_get(c, &st), PC_OK);
    cr_assert_eq(st.evictions, evicted + 1, "the key's return evicted none");
    put_range(c, SCAN, 5 * CAP);
    cr_assert_eq(present(c, k, 1), 0,
                 "a kept key's ghost word sent it back to MAIN");
    pc_destroy(c);
}

/* The key whose eviction until_evicted waits for, and whether it went. */
static uint64_t watched;
static bool watched_gone;

static void watch_listener(void *ctx, const void *key, size_t klen,
                           const void *val, size_t vlen, pc_removal_cause cause)
{
    uint64_t k;

    (void)ctx, (void)val, (void)vlen;
    memcpy(&k, key, sizeof k);
    if (klen == sizeof k && k == watched && cause == PC_REMOVED_EVICTED)
        watched_gone = true;
}

/* Put new keys from *next (each read twice if `twice`: they go to MAIN,
 * and every put evicts from MAIN) until key x is evicted; then put x
 * again, evicting one (a ghost hit). */
static void evict_and_return(pc_cache *c, uint64_t x, bool twice,
                             uint64_t *next)
{
    uint64_t v;

    watched = x;
    watched_gone = false;
    for (int n = 0; !watched_gone; n++, (*next)++) {
        cr_assert_lt(n, 10 * CAP, "key %lu never evicted", (unsigned long)x);
        cr_assert_eq(put_u64(c, *next, *next * 3 + 1), PC_OK);
        for (int i = 0; twice && i < 2; i++)
            cr_assert_eq(get_u64(c, *next, &v), PC_OK);
    }
    cr_assert_eq(put_u64(c, x, x * 3 + 1), PC_OK);
}

/* "the key's recent miss count (1..7)" (src/ghost.h): a count that has
 * reached 7 stays 7. A key put into an empty cache (MAIN, count 1) is
 * evicted from MAIN and returns (to SMALL, 2), is evicted from SMALL and
 * returns (to MAIN, 3), and so on, until MAIN evicts it with a count of 7:
 * back once more, it goes on probation, as every key MAIN let go, and a
 * scan takes it. */
Test(frequency_policy, a_miss_count_of_seven_stays_seven)
{
    pc_options o = test_opts(CAP);
    pc_cache *c = NULL;
    uint64_t x = BASE + 500, next = HOT;

    o.shards = 1;
    o.hash_seed = 0x5eed;
    o.on_removal = watch_listener;
    cr_assert_eq(pc_create(&o, &c), PC_OK);
    put_range(c, BASE, CAP); /* x in MAIN, count 1 */
    for (int i = 0; i < 3; i++) {
        evict_and_return(c, x, true, &next);  /* MAIN's: to SMALL */
        evict_and_return(c, x, false, &next); /* SMALL's: to MAIN */
    }
    evict_and_return(c, x, true, &next); /* MAIN's, count 7: to SMALL */
    put_range(c, SCAN, 5 * CAP);
    cr_assert_eq(present(c, x, 1), 0,
                 "a key MAIN let go with a miss count of 7 went back to MAIN");
    pc_destroy(c);
}

/* "A capacity change (resize) sets the share's parameters anew as create
 * would, SMALL's target at the fraction of the share it had reached"
 * (src/frequency.c): SMALL's target grown past 10% of the share (recent
 * returns, as above), the capacity doubled, SMALL holds more than 180 of
 * the one-time keys that follow (at 5%, the start, it would hold 100). */
Test(frequency_policy, a_resize_keeps_the_share_small_had_reached)
{
    pc_cache *c = frequency_cache();
    size_t kept;

    settle(c);
    put_range(c, HOT, 100);
    put_range(c, SCAN, 60); /* SMALL's 50 or so: the hot keys gone */
    cr_assert_eq(present(c, HOT, 100), 0, "the hot keys were not evicted");
    put_range(c, HOT, 100); /* recent ghost hits of SMALL's */
    cr_assert_eq(pc_set_capacity(c, 2 * CAP), PC_OK);
    put_range(c, FILLER + 2 * CAP, CAP); /* into free room */
    cr_assert_eq(pc_len(c), 2 * CAP);
    put_range(c, ONCE, 600);
    kept = present(c, ONCE, 600);
    cr_assert_gt(kept, 180, "SMALL held %zu of 600 one-time keys", kept);
    pc_destroy(c);
}

/* The key the last eviction took (evicted_listener). */
static uint64_t last_evicted;

static void evicted_listener(void *ctx, const void *key, size_t klen,
                             const void *val, size_t vlen,
                             pc_removal_cause cause)
{
    (void)ctx, (void)val, (void)vlen;
    if (klen == sizeof last_evicted && cause == PC_REMOVED_EVICTED)
        memcpy(&last_evicted, key, sizeof last_evicted);
}

/* The mirror of a_resize_keeps_the_share_small_had_reached: SMALL's target
 * shrunk to its minimum (1%) by recent returns of keys MAIN let go, a
 * resize to the same capacity keeps it there, and SMALL holds about 10 of
 * the one-time keys that follow (reset to 5%, it would hold 50). SMALL's
 * entries all read twice, every eviction SMALL offers moves them to MAIN,
 * so MAIN evicts; each key it evicts is back at once (read twice too). */
Test(frequency_policy, a_resize_keeps_the_share_main_had_reached)
{
    pc_options o = test_opts(CAP);
    pc_cache *c = NULL;
    uint64_t v;
    size_t kept;

    o.shards = 1;
    o.hash_seed = 0x5eed;
    o.on_removal = evicted_listener;
    cr_assert_eq(pc_create(&o, &c), PC_OK);
    settle(c);
    for (uint64_t k = FILLER; k < FILLER + 2 * CAP; k++)
        if (get_u64(c, k, &v) == PC_OK)
            cr_assert_eq(get_u64(c, k, &v), PC_OK);
    put_range(c, HOT, 1);
    for (int i = 0; i < 100; i++) { /* recent ghost hits of MAIN's */
        uint64_t k = last_evicted;

        put_range(c, k, 1);
        cr_assert_eq(get_u64(c, k, &v), PC_OK);
        cr_assert_eq(get_u64(c, k, &v), PC_OK);
    }
    put_range(c, SCAN, 2 * CAP);
    put_range(c, COLD, 300);
    kept = present(c, COLD, 300);
    cr_assert_lt(kept, 20, "SMALL held %zu of 300 one-time keys", kept);
    cr_assert_eq(pc_set_capacity(c, CAP), PC_OK);
    put_range(c, ONCE, 300);
    kept = present(c, ONCE, 300);
    cr_assert_lt(kept, 20, "SMALL held %zu of 300 one-time keys", kept);
    cr_assert_eq(pc_len(c), CAP);
    pc_destroy(c);
}
