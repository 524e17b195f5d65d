/*
 * Expiry, on a clock the test drives (pc_options.now_ms): an entry is
 * visible strictly before its expiry time and never at or after it,
 * whether or not it has been removed; the default TTL, per-entry TTLs,
 * PC_TTL_NEVER and saturation; lazy removal (expired entries still count
 * until a write or pc_expire removes them) and pc_expire; expired entries
 * are the first victims, wherever the policy's order stands; conditional
 * puts and deletes treat an expired
 * entry as absent.
 *
 * The default clock (ticker.h): one ticker thread per process while some
 * cache that uses it lives, none otherwise; entries expire on it, on the
 * fallback when no ticker can start, and in a forked child (which has no
 * ticker thread).
 */
#define _GNU_SOURCE /* RTLD_NEXT, pthread_setname_np */
#include <criterion/criterion.h>
#include <dlfcn.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core.h"
#include "shard_state.h"
#include "testlib.h"
#include "ticker.h"

static pc_cache *make_timed(size_t cap, uint64_t ttl_ms)
{
    pc_options o = test_opts(cap);

    o.ttl_ms = ttl_ms;
    o.now_ms = test_now;
    o.shards = 1;
    return make_cache_opts(&o);
}

static pc_status put_ttl(pc_cache *c, uint64_t k, uint64_t ttl)
{
    pc_put_args a = {.ttl_ms = ttl};

    return pc_put_ex(c, &k, sizeof k, &k, sizeof k, &a);
}

/* The cache has counted these expirations and evictions so far. */
static void assert_removed(pc_cache *c, uint64_t expired, uint64_t evicted,
                           const char *when)
{
    pc_stats s;

    cr_assert_eq(pc_stats_get(c, &s), PC_OK);
    cr_assert_eq(s.expirations, expired, "%s: %lu expirations, not %lu", when,
                 (unsigned long)s.expirations, (unsigned long)expired);
    cr_assert_eq(s.evictions, evicted, "%s: %lu evictions, not %lu", when,
                 (unsigned long)s.evictions, (unsigned long)evicted);
}

Test(expiry, visible_strictly_before_the_expiry_time)
{
    pc_cache *c = make_timed(10, 100);

    put_u64(c, 1, 1); /* default ttl: 100 ms */
    test_advance(99);
    cr_assert_eq(get_u64(c, 1, NULL), PC_OK);
    test_advance(1);
    cr_assert_eq(get_u64(c, 1, NULL), PC_NOTFOUND, "visible at its expiry");
    test_advance(1000);
    cr_assert_eq(get_u64(c, 1, NULL), PC_NOTFOUND);
    pc_destroy(c);
}

Test(expiry, per_entry_ttl_overrides_the_default_and_never_means_never)
{
    pc_cache *c = make_timed(10, 100);

    cr_assert_eq(put_ttl(c, 1, 10), PC_OK);
    cr_assert_eq(put_ttl(c, 2, PC_TTL_NEVER), PC_OK);
    cr_assert_eq(put_ttl(c, 3, 0), PC_OK);              /* 0: the default */
    cr_assert_eq(put_ttl(c, 4, UINT64_MAX - 1), PC_OK); /* saturates */
    test_advance(10);
    cr_assert_eq(get_u64(c, 1, NULL), PC_NOTFOUND);
    cr_assert_eq(get_u64(c, 3, NULL), PC_OK);
    test_advance(90);
    cr_assert_eq(get_u64(c, 3, NULL), PC_NOTFOUND);
    test_advance(1000000000);
    cr_assert_eq(get_u64(c, 2, NULL), PC_OK);
    cr_assert_eq(get_u64(c, 4, NULL), PC_OK, "an overflowing ttl expired");
    pc_destroy(c);
}

Test(expiry, no_default_ttl_means_entries_never_expire)
{
    pc_cache *c = make_timed(10, 0);

    put_u64(c, 1, 1);
    test_advance(1000000);
    cr_assert_eq(get_u64(c, 1, NULL), PC_OK);
    pc_destroy(c);
}

Test(expiry, removal_is_lazy_and_pc_expire_removes_every_expired_entry)
{
    pc_cache *c = make_timed(100, 50);

    for (uint64_t k = 0; k < 10; k++)
        put_ttl(c, k, k < 6 ? 50 : PC_TTL_NEVER);
    test_advance(50);
    cr_assert_eq(pc_len(c), 10, "expired entries count until removed");
    cr_assert_eq(get_u64(c, 0, NULL), PC_NOTFOUND);
    cr_assert_eq(pc_expire(c), 6);
    cr_assert_eq(pc_len(c), 4);
    cr_assert_eq(pc_bytes(c), 4 * 16);
    cr_assert_eq(pc_expire(c), 0);
    cr_assert_eq(pc_expire(NULL), 0);
    assert_removed(c, 6, 0, "after the put");
    pc_destroy(c);
}

Test(expiry, an_expired_entry_is_the_first_victim)
{
    pc_cache *c = make_timed(4, 0);

    put_ttl(c, 1, 10);
    for (uint64_t k = 2; k <= 4; k++)
        put_u64(c, k, k);
    for (uint64_t k = 1; k <= 4; k++)
        get_u64(c, k, NULL); /* every entry used: none is a cold victim */
    test_advance(10);
    put_u64(c, 5, 5); /* at capacity: takes the expired one */
    for (uint64_t k = 2; k <= 5; k++)
        cr_assert_eq(get_u64(c, k, NULL), PC_OK, "key %lu evicted",
                     (unsigned long)k);
    assert_removed(c, 1, 0, "after the put");
    pc_destroy(c);
}

/* Lowering a limit removes the expired entries of every shard before any
 * live one: 8 live keys and 40 expired ones over 4 shards, the limit
 * lowered to what the live keys need (a shard's own expired entries would
 * not be enough: a round robin that took each shard's expired entries and
 * then its live ones evicted live keys). */
static void shrink_after_expiry(bool bytes)
{
    pc_options o = test_opts(64);
    pc_cache *c;

    o.now_ms = test_now;
    o.shards = 4;
    c = make_cache_opts(&o);
    cr_assert_not_null(c);
    for (uint64_t k = 0; k < 48; k++)
        put_ttl(c, k, k % 6 == 0 ? PC_TTL_NEVER : 10);
    test_advance(10);
    if (bytes)
        cr_assert_eq(pc_set_max_bytes(c, 8 * 16), PC_OK);
    else
        cr_assert_eq(pc_set_capacity(c, 8), PC_OK);
    assert_removed(c, 40, 0, bytes ? "max_bytes lowered" : "capacity lowered");
    cr_assert_eq(pc_len(c), 8);
    for (uint64_t k = 0; k < 48; k += 6)
        cr_assert_eq(get_u64(c, k, NULL), PC_OK, "live key %lu evicted",
                     (unsigned long)k);
    /* Lowered again, live entries go in policy order. */
    if (bytes)
        cr_assert_eq(pc_set_max_bytes(c, 4 * 16), PC_OK);
    else
        cr_assert_eq(pc_set_capacity(c, 4), PC_OK);
    assert_removed(c, 40, 4, "lowered again");
    cr_assert_eq(pc_len(c), 4);
    pc_destroy(c);
}

Test(expiry, lowering_the_capacity_removes_every_expired_entry_first)
{
    shrink_after_expiry(false);
}

Test(expiry, lowering_the_byte_bound_removes_every_expired_entry_first)
{
    shrink_after_expiry(true);
}

/* The shard of 4 that holds k (clock, frequency: shard.c's shard_of; the
 * exact-LRU build has none, and the test below holds for it as is). */
static unsigned shard_of_4(pc_cache *c, uint64_t k)
{
    uint64_t h = pc__hash_key(&c->seed, &k, sizeof k);

    return (unsigned)(((h >> 32) * 4) >> 32);
}

/* The first key from `from` on that shard_of_4 puts in shard `want`. */
static uint64_t key_in_shard(pc_cache *c, unsigned want, uint64_t from)
{
    while (shard_of_4(c, from) != want)
        from++;
    return from;
}

/* A put under a byte bound whose own shard is empty evicts in the others,
 * every shard's expired entries before a live one: 2 live entries in
 * shard 1, 8 expired ones in shards 2 and 3, and a new key of shard 0
 * that needs the room of 8 (a pass that evicted each shard to the end,
 * from shard 1 on, took the live ones). */
Test(expiry, a_put_that_evicts_in_other_shards_takes_expired_entries_first)
{
    pc_options o = test_opts(64);
    pc_cache *c;
    uint64_t live[2], k = 0, big = 0;
    unsigned char v[120] = {0};

    o.now_ms = test_now;
    o.shards = 4;
    o.max_bytes = 10 * 16;
    c = make_cache_opts(&o);
    cr_assert_not_null(c);
    for (int i = 0; i < 2; i++) {
        live[i] = k = key_in_shard(c, 1, k + 1);
        cr_assert_eq(put_ttl(c, k, PC_TTL_NEVER), PC_OK);
    }
    for (int i = 0; i < 8; i++) {
        k = key_in_shard(c, 2 + i % 2, k + 1);
        cr_assert_eq(put_ttl(c, k, 10), PC_OK);
    }
    cr_assert_eq(pc_bytes(c), 10 * 16);
    test_advance(10);
    big = key_in_shard(c, 0, k + 1);
    cr_assert_eq(pc_put(c, &big, sizeof big, v, sizeof v), PC_OK);
    assert_removed(c, 8, 0, "the put evicted a live entry");
    for (int i = 0; i < 2; i++)
        cr_assert_eq(get_u64(c, live[i], NULL), PC_OK, "live key %lu evicted",
                     (unsigned long)live[i]);
    cr_assert_eq(pc_bytes(c), 2 * 16 + 128);
    pc_destroy(c);
}

/* pc_expire "removes every expired entry now", in every shard: two
 * expired keys and one live key in each of 4 shards (a mutation that
 * skipped the last shard passed every suite: the other pc_expire tests
 * use one shard). */
Test(expiry, pc_expire_removes_the_expired_entries_of_every_shard)
{
    pc_options o = test_opts(64);
    pc_cache *c;
    uint64_t k = 0, live[4];

    o.now_ms = test_now;
    o.ttl_ms = 10;
    o.shards = 4;
    c = make_cache_opts(&o);
    cr_assert_not_null(c);
    for (unsigned sh = 0; sh < 4; sh++) {
        for (int i = 0; i < 2; i++) {
            k = key_in_shard(c, sh, k + 1);
            cr_assert_eq(put_u64(c, k, k), PC_OK);
        }
        live[sh] = k = key_in_shard(c, sh, k + 1);
        cr_assert_eq(put_ttl(c, k, PC_TTL_NEVER), PC_OK);
    }
    test_advance(10);
    cr_assert_eq(pc_len(c), 12);
    cr_assert_eq(pc_expire(c), 8);
    cr_assert_eq(pc_len(c), 4, "an expired entry was left");
    cr_assert_eq(pc_bytes(c), 4 * 16);
    assert_removed(c, 8, 0, "after pc_expire");
    for (unsigned sh = 0; sh < 4; sh++)
        cr_assert_eq(get_u64(c, live[sh], NULL), PC_OK);
    cr_assert_eq(pc_expire(c), 0);
    pc_destroy(c);
}

/* A full cache of 64 keys, 0..63, one shard: key 40 with this ttl, the
 * others never expiring. */
static pc_cache *make_full_with_key_40(uint64_t ttl)
{
    pc_cache *c = make_timed(64, 0);

    for (uint64_t k = 0; k < 64; k++)
        put_ttl(c, k, k == 40 ? ttl : PC_TTL_NEVER);
    return c;
}

/* An expired entry is the first victim even where the policy's order has
 * not reached it (no entry used, the expired one in the middle): clock's
 * hand would take key 0, frequency's queues a new key. */
Test(expiry, an_expired_entry_goes_first_wherever_the_policy_stands)
{
    pc_cache *c = make_full_with_key_40(10);

    test_advance(10);
    put_u64(c, 1000, 1000);
    assert_removed(c, 1, 0, "the expired entry was not taken first");
    cr_assert_eq(get_u64(c, 0, NULL), PC_OK);
    for (uint64_t k = 1001; k < 1064; k++)
        put_u64(c, k, k);
    assert_removed(c, 1, 63, "after the put");
    cr_assert_eq(pc_len(c), 64);
    pc_destroy(c);
}

/* An entry replaced by one that expires later is not taken at the first
 * entry's time (it is live), and is taken at its own (clock and frequency
 * queue a key once, and look again when the item comes due). */
Test(expiry, a_replacement_that_expires_later_goes_first_at_its_own_time)
{
    pc_cache *c = make_full_with_key_40(10);

    for (int i = 0; i < 5; i++) { /* key 40 now expires at 15 */
        test_advance(1);
        put_ttl(c, 40, 10);
    }
    cr_assert_eq(get_u64(c, 40, NULL), PC_OK); /* used: no policy victim */
    test_advance(6); /* 11, past the first expiry time: key 40 is live */
    put_u64(c, 1000, 1000);
    assert_removed(c, 0, 1, "a live replacement was taken as expired");
    cr_assert_eq(get_u64(c, 40, NULL), PC_OK);
    test_advance(3); /* 14, one before the replacement's expiry time */
    put_u64(c, 1001, 1001);
    assert_removed(c, 0, 2, "after the put");
    test_advance(1);
    put_u64(c, 1002, 1002);
    assert_removed(c, 1, 2, "the expired replacement was not first");
    cr_assert_eq(get_u64(c, 40, NULL), PC_NOTFOUND);
    pc_destroy(c);
}

/* An entry replaced by one that expires sooner goes first at the sooner
 * time. */
Test(expiry, a_replacement_that_expires_sooner_goes_first_at_its_own_time)
{
    pc_cache *c = make_full_with_key_40(100);

    test_advance(1);
    put_ttl(c, 40, 5);
    test_advance(5);
    put_u64(c, 1000, 1000);
    assert_removed(c, 1, 0, "the expired replacement was not first");
    pc_destroy(c);
}

/* The expiry queue's rebuild bound (exq.h) for a shard with `expiring`
 * entries that can expire and `entries` entries in all: a push rebuilds
 * once the queue holds more than three items per entry that can expire,
 * plus an eighth of the entries and index chunks, plus 64 (and the push
 * that finds it there adds one). */
static void assert_queue_bounded(struct shard *s, size_t expiring,
                                 size_t entries, uint64_t at)
{
    size_t chunks = pc__index_chunk_count(&s->ix);

    cr_assert_leq(s->exq.n, 3 * expiring + (entries + chunks) / 8 + 64 + 1,
                  "put %lu: %u items for %zu entries (array of %u)",
                  (unsigned long)at, s->exq.n, entries, s->exq.cap);
}

/* The clock or frequency cache of make_timed(64, 0) and its one shard
 * (its expiry queue and count of entries that can expire). */
static pc_cache *timed_shard(struct shard **s)
{
    pc_cache *c = make_timed(64, 0);

    *s = &sc_of(c)->shards[0];
    return c;
}

/* The expiry queue stays within its rebuild bound (clock and frequency,
 * exq.h: a push rebuilds once the queue holds more than three items per
 * entry that can expire, plus an eighth of the entries and chunks, plus
 * 64) as entries that can expire leave by eviction, delete and pc_expire:
 * the shard's count of them follows. Every put expires sooner than the
 * last, so no item covers it and each pushes one. (A mutation that never
 * counted an entry's leaving let the queue grow by one item per put,
 * unbounded, and passed every suite.) */
Test(expiry, the_queue_stays_bounded_as_entries_that_can_expire_leave)
{
    pc_cache *c;
    struct shard *s;

    if (is_lru())
        return; /* (its expiry heap holds only entries present) */
    c = timed_shard(&s);
    for (uint64_t k = 0; k < 4000; k++) {
        size_t n = pc_len(c);

        cr_assert_eq(put_ttl(c, k, 1000000 - k), PC_OK);
        assert_queue_bounded(s, n, n, k);
        cr_assert_eq(s->expiring, pc_len(c), "put %lu: %zu expiring of %zu",
                     (unsigned long)k, s->expiring, pc_len(c));
    }
    for (uint64_t k = 3990; k < 4000; k++)
        pc_delete(c, &k, sizeof k);
    cr_assert_eq(s->expiring, pc_len(c), "after deletes: %zu of %zu",
                 s->expiring, pc_len(c));
    test_advance(1000000);
    cr_assert_gt(pc_expire(c), 0);
    cr_assert_eq(pc_len(c), 0);
    cr_assert_eq(s->expiring, 0, "after pc_expire: %zu", s->expiring);
    pc_destroy(c);
}

/* A push rebuilds the queue once it holds more than its bound (exq.h)
 * even when its array has room: a full shard's queue, its array grown by
 * pushes, loses most of its entries to deletes, and the next puts find it
 * mostly stale (a mutation that rebuilt only a full array passed every
 * suite: it kept up to the array's size in stale items). */
Test(expiry, a_push_rebuilds_a_stale_queue_that_has_room)
{
    pc_cache *c;
    struct shard *s;

    if (is_lru())
        return; /* (its expiry heap holds only entries present) */
    c = timed_shard(&s);
    for (uint64_t k = 0; k < 400; k++)
        cr_assert_eq(put_ttl(c, k, 1000000 - k), PC_OK);
    for (uint64_t k = 0; k < 400; k++)
        pc_delete(c, &k, sizeof k);
    cr_assert_eq(pc_len(c), 0);
    for (uint64_t k = 1000; k < 1004; k++) {
        size_t n = pc_len(c);

        cr_assert_eq(put_ttl(c, k, 1000 - k % 1000), PC_OK);
        assert_queue_bounded(s, n + 1, n + 1, k);
    }
    pc_destroy(c);
}

/* As above, for replacements (clock and frequency): 64 keys replaced
 * over and over, each time expiring sooner than before (so each pushes an
 * item), every fourth time by a value that never expires. (A mutation
 * that left the count as it was when a replacement took the place of an
 * entry that can expire passed every suite.) */
Test(expiry, the_queue_stays_bounded_as_replacements_come_and_go)
{
    pc_cache *c;
    struct shard *s;
    size_t live = 0;

    if (is_lru())
        return; /* (its expiry heap holds only entries present) */
    c = timed_shard(&s);
    for (uint64_t k = 0; k < 64; k++)
        cr_assert_eq(put_ttl(c, k, PC_TTL_NEVER), PC_OK);
    for (uint64_t i = 0; i < 4000; i++) {
        uint64_t k = i % 64;

        cr_assert_eq(put_ttl(c, k, i % 4 == 3 ? PC_TTL_NEVER : 1000000 - i),
                     PC_OK);
        assert_queue_bounded(s, 64, 64, i);
    }
    cr_assert_eq(pc_len(c), 64);
    for (uint64_t k = 0; k < 64; k++)
        live += k % 4 == 3; /* (i % 64 % 4 is i % 4) */
    cr_assert_eq(s->expiring, 64 - live, "%zu expiring, not %zu", s->expiring,
                 64 - live);
    test_advance(1000000);
    cr_assert_eq(pc_expire(c), 64 - live);
    cr_assert_eq(s->expiring, 0, "after pc_expire: %zu", s->expiring);
    pc_destroy(c);
}

/* How many of keys [from, to) the cache holds (a get of each). */
static uint64_t held(pc_cache *c, uint64_t from, uint64_t to)
{
    uint64_t n = 0;

    for (uint64_t k = from; k < to; k++)
        n += get_u64(c, k, NULL) == PC_OK;
    return n;
}

/* A one-shard cache of 64 entries: keys 0..63 put with ttl1 at time t,
 * then, at t + 1, keys 100..163 with ttl2, each evicting one. */
static pc_cache *two_generations(uint64_t ttl1, uint64_t ttl2)
{
    pc_cache *c = make_timed(64, 0);

    for (uint64_t k = 0; k < 64; k++)
        put_ttl(c, k, ttl1);
    test_advance(1);
    for (uint64_t k = 100; k < 164; k++)
        put_ttl(c, k, ttl2);
    assert_removed(c, 0, 64, "64 keys added, not 64 evicted");
    return c;
}

/* New keys that take the index slots evicted keys left (whose queue items
 * then cover them, clock and frequency: exq.h) still go first once they
 * expire: 64 keys expiring at 10, then 64 keys expiring at 100, each
 * evicting one (clock evicts the first keys; frequency mostly new keys
 * from probation); at 10 the first keys' items come due (those left go
 * first, and the rest cover the new keys there again); at 100 every new
 * key left goes before any live key. */
Test(expiry, new_keys_on_slots_evicted_keys_left_expire_first)
{
    pc_cache *c = two_generations(10, 99); /* expiring at 10, then 100 */
    uint64_t first, second, live = 1000;

    first = held(c, 0, 64);
    second = held(c, 100, 164);
    cr_assert_eq(first + second, 64);
    cr_assert(is_frequency() || first == 0, "clock kept %lu first keys",
              (unsigned long)first);
    test_advance(9); /* 10: the first keys expire, their items come due */
    for (uint64_t i = 0; i <= first; i++)
        put_ttl(c, live++, PC_TTL_NEVER);
    assert_removed(c, first, 65, "at 10: not exactly the first keys first");
    second = held(c, 100, 164);
    test_advance(90); /* 100: the second keys expire */
    for (uint64_t i = 0; i < second; i++)
        put_ttl(c, live++, PC_TTL_NEVER);
    assert_removed(c, first + second, 65,
                   "at 100: not exactly the second keys first");
    cr_assert_eq(held(c, 1000, live), live - 1000, "a live key was evicted");
    pc_destroy(c);
}

/* A new key that expires sooner than every item of the queue is not
 * covered by the item of the slot it takes (exq.h: max_at): 64 keys
 * expiring at 100, then 64 expiring at 20, each evicting one; at 20 every
 * second key left goes before any live key. */
Test(expiry, new_keys_that_expire_sooner_than_the_slots_item_still_go_first)
{
    pc_cache *c = two_generations(100, 19); /* expiring at 100, then 20 */
    uint64_t second, live = 1000;

    second = held(c, 100, 164);
    cr_assert(is_frequency() || second == 64, "clock kept %lu second keys",
              (unsigned long)second);
    test_advance(19); /* 20 */
    for (uint64_t i = 0; i < second; i++)
        put_ttl(c, live++, PC_TTL_NEVER);
    assert_removed(c, second, 64, "at 20: not exactly the second keys first");
    pc_destroy(c);
}

/* Expired entries still go first after the index has grown (clock and
 * frequency: positions recorded in the old table are not used in the new
 * one): 40 keys that expire, put before the growth (a few replaced after
 * it, expiring later), then entries that never expire (so the queue sees
 * no push, while the table grows), and optionally one more that expires,
 * put after the last growth (the queue's first push since). */
static void grown_run(bool push_after)
{
    pc_options o = test_opts(2000);
    pc_cache *c;
    uint64_t n = push_after ? 41 : 40;

    o.now_ms = test_now;
    o.shards = 1;
    o.max_bytes = 1u << 30; /* (an index presized small, then grown) */
    cr_assert_eq(pc_create(&o, &c), PC_OK);
    for (uint64_t k = 0; k < 40; k++)
        put_ttl(c, k, 10);
    for (uint64_t k = 100; k < 2000 + 100 - n; k++) /* last growth: 1025 */
        put_ttl(c, k, PC_TTL_NEVER);
    test_advance(1);
    for (uint64_t k = 0; k < 40; k += 8)
        put_ttl(c, k, 10); /* expires at 11, not 10 */
    if (push_after)
        put_ttl(c, 50, 9); /* expires at 10 */
    cr_assert_eq(pc_len(c), 2000);
    test_advance(9); /* 10: all but the five replaced have expired */
    for (uint64_t i = 0; i < n - 5; i++)
        put_u64(c, 5000 + i, 0);
    assert_removed(c, n - 5, 0, "not every expired key went first");
    cr_assert_eq(get_u64(c, 8, NULL), PC_OK, "a live replacement was taken");
    test_advance(1);
    for (uint64_t i = 0; i < 5; i++)
        put_u64(c, 6000 + i, 0);
    assert_removed(c, n, 0, "the replaced keys did not go first");
    pc_destroy(c);
}

Test(expiry, expired_entries_go_first_after_the_index_grows)
{
    grown_run(false);
}

Test(expiry, expired_entries_go_first_after_a_push_that_follows_a_growth)
{
    grown_run(true);
}

/* A model of one shard under churn: which keys are present, and when
 * each expires (0: never). Values are the expiry times. */
#define CHURN_KEYS 200
static struct {
    bool present[CHURN_KEYS];
    uint64_t at[CHURN_KEYS];
    unsigned long expired, evicted;
} churn;

static void churn_listener(void *ctx, const void *key, size_t klen,
                           const void *val, size_t vlen, pc_removal_cause cause)
{
    uint64_t k, at, now = test_now(NULL);

    (void)ctx;
    cr_assert_eq(klen, 8);
    cr_assert_eq(vlen, 8);
    memcpy(&k, key, 8);
    memcpy(&at, val, 8);
    if (cause == PC_REMOVED_EXPIRED) {
        cr_assert(at != 0 && at <= now, "key %lu expiring at %lu taken at %lu",
                  (unsigned long)k, (unsigned long)at, (unsigned long)now);
        churn.expired++;
    } else if (cause == PC_REMOVED_EVICTED) {
        for (uint64_t j = 0; j < CHURN_KEYS; j++)
            cr_assert(!churn.present[j] || j == k || churn.at[j] == 0 ||
                          churn.at[j] > now,
                      "key %lu evicted while key %lu had expired",
                      (unsigned long)k, (unsigned long)j);
        churn.evicted++;
    }
    if (cause == PC_REMOVED_EXPIRED || cause == PC_REMOVED_EVICTED)
        churn.present[k] = false;
}

/* Puts with mixed ttls, replacements, deletes, clears and pc_expire over a
 * driven clock: every expiration is of an expired entry, and no eviction
 * happens while an expired entry is present (the expiry queue's stale
 * items, left by every other way out, are never taken; under ASan, never
 * dereferenced once freed). With `resize`, the capacity also goes up to
 * 256 (more than the keys: the index grows) and back down to 64 (the
 * shrink evicts, leaving a table larger than the entries). */
static void churn_run(bool resize)
{
    pc_options o = test_opts(64);
    pc_cache *c;

    o.now_ms = test_now;
    o.shards = 1;
    o.on_removal = churn_listener;
    if (resize)
        o.max_bytes = 1u << 20; /* (an index presized small: it grows) */
    cr_assert_eq(pc_create(&o, &c), PC_OK);
    memset(&churn, 0, sizeof churn);
    for (uint64_t i = 0; i < 40000; i++) {
        uint64_t r = mix64(i), k = r % CHURN_KEYS, op = (r >> 16) % 100;

        if (resize && i % 4000 == 2000)
            cr_assert_eq(pc_set_capacity(c, (i / 4000) % 2 ? 64 : 256), PC_OK);
        if (op < 60) {
            uint64_t ttl =
                (r >> 24) % 5 == 0 ? PC_TTL_NEVER : 1 + (r >> 32) % 50;
            uint64_t at = ttl == PC_TTL_NEVER ? 0 : test_now(NULL) + ttl;
            pc_put_args a = {.ttl_ms = ttl};

            cr_assert_eq(pc_put_ex(c, &k, 8, &at, 8, &a), PC_OK);
            churn.present[k] = true;
            churn.at[k] = at;
        } else if (op < 70) {
            pc_delete(c, &k, 8);
            churn.present[k] = false;
        } else if (op < 90) {
            get_u64(c, k, NULL);
        } else if (op < 98) {
            test_advance(1 + (r >> 40) % 5);
        } else if (op < 99 || (r >> 48) % 50 != 0) {
            pc_expire(c);
        } else {
            pc_clear(c);
            memset(churn.present, 0, sizeof churn.present);
        }
        cr_assert_leq(pc_len(c), pc_capacity(c));
    }
    cr_assert_gt(churn.expired, 1000, "only %lu expirations", churn.expired);
    cr_assert_gt(churn.evicted, 1000, "only %lu evictions", churn.evicted);
    pc_destroy(c);
}

Test(expiry, under_churn_evictions_never_pass_an_expired_entry)
{
    churn_run(false);
}

Test(expiry, under_churn_and_resizing_evictions_never_pass_an_expired_entry)
{
    churn_run(true);
}

Test(expiry, conditional_puts_and_deletes_see_an_expired_entry_as_absent)
{
    pc_cache *c = make_timed(10, 10);
    pc_put_args absent = {.flags = PC_PUT_IF_ABSENT};
    pc_put_args present = {.flags = PC_PUT_IF_PRESENT};
    uint64_t k = 1, v = 2, got;

    put_u64(c, 1, 1);
    test_advance(10);
    cr_assert_eq(pc_put_ex(c, &k, 8, &v, 8, &present), PC_NOTFOUND);
    cr_assert_eq(pc_put_ex(c, &k, 8, &v, 8, &absent), PC_OK);
    cr_assert_eq(get_u64(c, 1, &got), PC_OK);
    cr_assert_eq(got, 2);
    test_advance(10);
    cr_assert_eq(pc_delete(c, &k, 8), PC_NOTFOUND);
    cr_assert_eq(pc_len(c), 0, "the delete did not remove the expired entry");
    pc_destroy(c);
}

/* pc_put_args.ttl_ms applies to conditional puts as to any: "the entry is
 * visible strictly before now + ttl (args->ttl_ms, else the cache's
 * ttl_ms; none if both are 0 or args->ttl_ms is PC_TTL_NEVER)" (a mutation
 * that gave conditional puts the cache's default passed every suite). */
Test(expiry, conditional_puts_take_their_own_ttl)
{
    pc_cache *never = make_timed(10, 0), *timed = make_timed(10, 10);
    pc_put_args absent5 = {.ttl_ms = 5, .flags = PC_PUT_IF_ABSENT};
    pc_put_args present5 = {.ttl_ms = 5, .flags = PC_PUT_IF_PRESENT};
    pc_put_args absent_never = {.ttl_ms = PC_TTL_NEVER,
                                .flags = PC_PUT_IF_ABSENT};
    pc_put_args present_never = {.ttl_ms = PC_TTL_NEVER,
                                 .flags = PC_PUT_IF_PRESENT};
    uint64_t v = 7;

    cr_assert_eq(pc_put_ex(never, &(uint64_t){1}, 8, &v, 8, &absent5), PC_OK);
    put_u64(never, 2, 2);
    cr_assert_eq(pc_put_ex(never, &(uint64_t){2}, 8, &v, 8, &present5), PC_OK);
    cr_assert_eq(pc_put_ex(timed, &(uint64_t){1}, 8, &v, 8, &absent_never),
                 PC_OK);
    put_u64(timed, 2, 2);
    cr_assert_eq(pc_put_ex(timed, &(uint64_t){2}, 8, &v, 8, &present_never),
                 PC_OK);
    test_advance(4);
    cr_assert_eq(get_u64(never, 1, NULL), PC_OK);
    cr_assert_eq(get_u64(never, 2, NULL), PC_OK);
    test_advance(1);
    cr_assert_eq(get_u64(never, 1, NULL), PC_NOTFOUND, "IF_ABSENT's ttl");
    cr_assert_eq(get_u64(never, 2, NULL), PC_NOTFOUND, "IF_PRESENT's ttl");
    test_advance(100);
    cr_assert_eq(get_u64(timed, 1, NULL), PC_OK, "IF_ABSENT's PC_TTL_NEVER");
    cr_assert_eq(get_u64(timed, 2, NULL), PC_OK, "IF_PRESENT's PC_TTL_NEVER");
    cr_assert_eq(pc_expire(never), 2);
    cr_assert_eq(pc_expire(timed), 0);
    pc_destroy(never);
    pc_destroy(timed);
}

/* A listener for the tests below: counts each cause. */
static void count_causes(void *ctx, const void *key, size_t klen,
                         const void *val, size_t vlen, pc_removal_cause cause)
{
    size_t *by_cause = ctx;

    (void)key, (void)klen, (void)val, (void)vlen;
    if (cause >= PC_REMOVED_EVICTED && cause <= PC_REMOVED_CLEARED)
        by_cause[cause]++;
}

static pc_cache *make_timed_listened(size_t cap, uint64_t ttl_ms,
                                     size_t *by_cause)
{
    pc_options o = test_opts(cap);

    o.ttl_ms = ttl_ms;
    o.now_ms = test_now;
    o.shards = 1;
    o.on_removal = count_causes;
    o.removal_ctx = by_cause;
    return make_cache_opts(&o);
}

/* pc_put_ex: "A put that finds the key's entry expired removes it even if
 * PC_PUT_IF_PRESENT then refuses the put (PC_NOTFOUND): the key was absent
 * either way, but pc_len, pc_bytes, the expirations count and the listener
 * (PC_REMOVED_EXPIRED) see the removal." (Mutations that left the expired
 * entry in place, clock and frequency, or reported it as deleted, lru,
 * passed every suite.) */
Test(expiry, a_refused_put_removes_the_keys_expired_entry_and_says_so)
{
    size_t by_cause[PC_REMOVED_CLEARED + 1] = {0};
    pc_cache *c = make_timed_listened(10, 10, by_cause);
    pc_put_args present = {.flags = PC_PUT_IF_PRESENT};
    uint64_t k = 1, v = 2;
    pc_stats s;

    put_u64(c, 1, 1);
    put_u64(c, 2, 2); /* never expires: PC_TTL_NEVER below */
    cr_assert_eq(pc_put_ex(c, &(uint64_t){2}, 8, &v, 8,
                           &(pc_put_args){.ttl_ms = PC_TTL_NEVER}),
                 PC_OK);
    cr_assert_eq(by_cause[PC_REMOVED_REPLACED], 1);
    test_advance(10);
    cr_assert_eq(pc_put_ex(c, &k, 8, &v, 8, &present), PC_NOTFOUND);
    cr_assert_eq(pc_len(c), 1, "the refused put left the expired entry");
    cr_assert_eq(pc_bytes(c), 16);
    cr_assert_eq(by_cause[PC_REMOVED_EXPIRED], 1, "not reported as expired");
    cr_assert_eq(by_cause[PC_REMOVED_DELETED], 0);
    cr_assert_eq(by_cause[PC_REMOVED_EVICTED], 0);
    assert_removed(c, 1, 0, "after the refused put");
    cr_assert_eq(pc_stats_get(c, &s), PC_OK);
    cr_assert_eq(s.deletes, 0);
    cr_assert_eq(s.puts, 3, "a refused put stored nothing");
    cr_assert_eq(pc_expire(c), 0, "nothing left to expire");
    pc_destroy(c);
}

/* pc_put_ex: an expired entry still present "is reported as
 * PC_REMOVED_EXPIRED when a put replaces it": an expiration, not a
 * replacement (a mutation that let the put replace it, clock and
 * frequency, passed every suite). */
Test(expiry, a_put_over_an_expired_entry_reports_it_expired_not_replaced)
{
    size_t by_cause[PC_REMOVED_CLEARED + 1] = {0};
    pc_cache *c = make_timed_listened(10, 10, by_cause);
    uint64_t got;

    put_u64(c, 1, 1);
    test_advance(10);
    put_u64(c, 1, 2); /* expires at 20 */
    cr_assert_eq(by_cause[PC_REMOVED_EXPIRED], 1, "not reported as expired");
    cr_assert_eq(by_cause[PC_REMOVED_REPLACED], 0, "reported as replaced");
    assert_removed(c, 1, 0, "after the put");
    cr_assert_eq(pc_len(c), 1);
    cr_assert_eq(get_u64(c, 1, &got), PC_OK);
    cr_assert_eq(got, 2);
    cr_assert_eq(pc_expire(c), 0, "the new entry expired with the old");
    test_advance(10);
    cr_assert_eq(pc_expire(c), 1);
    cr_assert_eq(by_cause[PC_REMOVED_EXPIRED], 2);
    pc_destroy(c);
}

/* pc_stats.deletes counts "successful pc_delete calls", and pc_delete of
 * an expired entry reports it "as PC_REMOVED_EXPIRED, and then it was not
 * present: PC_NOTFOUND": an expiration, not a delete (a mutation that
 * counted it as a delete, clock and frequency, passed every suite). */
Test(expiry, deleting_an_expired_entry_counts_an_expiration_not_a_delete)
{
    size_t by_cause[PC_REMOVED_CLEARED + 1] = {0};
    pc_cache *c = make_timed_listened(10, 10, by_cause);
    uint64_t k = 1;
    pc_stats s;

    put_u64(c, 1, 1);
    test_advance(10);
    cr_assert_eq(pc_delete(c, &k, 8), PC_NOTFOUND);
    cr_assert_eq(pc_len(c), 0);
    cr_assert_eq(by_cause[PC_REMOVED_EXPIRED], 1);
    cr_assert_eq(by_cause[PC_REMOVED_DELETED], 0);
    cr_assert_eq(pc_stats_get(c, &s), PC_OK);
    cr_assert_eq(s.deletes, 0, "%lu deletes", (unsigned long)s.deletes);
    cr_assert_eq(s.expirations, 1);
    put_u64(c, 1, 1);
    cr_assert_eq(pc_delete(c, &k, 8), PC_OK);
    cr_assert_eq(pc_stats_get(c, &s), PC_OK);
    cr_assert_eq(s.deletes, 1);
    cr_assert_eq(by_cause[PC_REMOVED_DELETED], 1);
    pc_destroy(c);
}

/* entry.h's layouts: an expiry time within 2^37 ms after the cache's
 * origin is near (kept in the header: the entry is no larger than one that
 * never expires), any other is far (8 bytes after the header); both read
 * back exactly, for the writer and for readers, and the key's hash is the
 * one the index computed. */
Test(expiry, near_and_far_expiry_times_round_trip)
{
    const uint64_t o = 5000, span = (uint64_t)1 << 37;
    const uint64_t near[] = {o, o + 1, o + UINT32_MAX, o + ((uint64_t)1 << 32),
                             o + span - 1};
    const uint64_t far[] = {o + span, o - 1, 1, UINT64_MAX};
    struct pc__hash_seed seed;
    uint64_t key = 0x1122334455667788u, val = 42;

    pc__hash_seed_init(&seed, 7);
    cr_assert_eq(pc__kv_expiry_flags(0, o), 0u, "never: no expiry flags");
    for (size_t i = 0; i < 9; i++) {
        bool is_near = i < 5;
        uint64_t at = is_near ? near[i] : far[i - 5], got = 0, h;
        unsigned int xf = pc__kv_expiry_flags(at, o);
        struct pc__kv *kv;

        cr_assert_eq(pc__kv_near_flags(xf), is_near, "%lu: near %d",
                     (unsigned long)at, is_near);
        cr_assert_eq(pc__kv_size(8, 8, xf),
                     pc__kv_size(8, 8, 0) + (is_near ? 0 : 8));
        kv = calloc(1, pc__kv_size(8, 8, xf));
        cr_assert_not_null(kv);
        h = pc__hash_key(&seed, &key, 8);
        pc__kv_fill(kv, h, &key, 8, &val, 8, at, xf, o);
        cr_assert_eq(pc__kv_expires(kv, o), at, "%lu read back as %lu",
                     (unsigned long)at, (unsigned long)pc__kv_expires(kv, o));
        cr_assert(pc__kv_read_expiry(kv, pc__kv_flags(kv), pc__kv_read_hx(kv),
                                     o, &got));
        cr_assert_eq(got, at);
        cr_assert_eq(pc__kv_hash(kv, &seed), (uint32_t)h);
        /* The readers' comparison: bias + offset on a live near entry,
         * below the bias (so never taken for visible) on a far one. */
        if (is_near)
            cr_assert_eq(pc__kv_vis(pc__kv_flags(kv), pc__kv_read_hx(kv)),
                         PC__KV_VIS_BIAS + (at - o));
        else
            cr_assert_lt(pc__kv_vis(pc__kv_flags(kv), pc__kv_read_hx(kv)),
                         PC__KV_VIS_BIAS);
        cr_assert_eq(memcmp(pc__kv_key(kv), &key, 8), 0);
        cr_assert_eq(memcmp(pc__kv_value(kv), &val, 8), 0);
        cr_assert(!pc__kv_expired(kv, (struct pc__now){at - 1, o}) || at == 1);
        cr_assert(pc__kv_expired(kv, (struct pc__now){at, o}));
        cr_assert(!pc__kv_expired(kv, (struct pc__now){0, 0}), "now 0");
        /* Unlinked and its header reused: readers look again. */
        pc__kv_unlinking(kv);
        pc__kv_set_link(kv, (struct pc__kv *)&seed);
        cr_assert_eq(pc__kv_read_expiry(kv, pc__kv_flags(kv),
                                        pc__kv_read_hx(kv), o, &got),
                     !is_near, "a reused header read as an expiry time");
        free(kv);
    }
}

/* The readers' check (core.h, pc__core_visible) on entries made by hand
 * in a cache whose clock is made to look like the ticker's (origin 0): the
 * shortcut for near times, the slow path (no ticker time) and far times
 * agree, each visible strictly before its time; once the writer has
 * marked an entry unlinked and reused its header, both paths say "look
 * again" rather than read a link as a time. */
static void set_clock_ms(uint64_t ms)
{
    __atomic_store_n(&test_clock_ms, ms, __ATOMIC_RELAXED);
}

Test(expiry, the_readers_check_reads_near_and_far_times_and_sees_reuse)
{
    const uint64_t ats[] = {5000, ((uint64_t)1 << 33) + 7,
                            ((uint64_t)1 << 37) - 1, (uint64_t)1 << 37};
    pc_cache *c = make_timed(10, 0);
    uint64_t tick = 0, key = 1, val = 2;
    const uint64_t *saved = c->vis;

    c->vis = &tick;
    __atomic_store_n(&c->origin_p1, 1, __ATOMIC_RELAXED); /* origin 0 */
    for (size_t i = 0; i < 4; i++) {
        uint64_t at = ats[i];
        unsigned int xf = pc__kv_expiry_flags(at, 0);
        struct pc__kv *kv = calloc(1, pc__kv_size(8, 8, xf));

        cr_assert_not_null(kv);
        cr_assert_eq(pc__kv_near_flags(xf), i < 3);
        pc__kv_fill(kv, 0x12345678u, &key, 8, &val, 8, at, xf, 0);
        for (uint64_t now = at - 2; now <= at + 1; now++) {
            /* the shortcut (the slow path for a far time) */
            tick = PC__KV_VIS_BIAS + now;
            set_clock_ms(now);
            cr_assert_eq(pc__core_visible(c, kv), now < at, "at %lu, now %lu",
                         (unsigned long)at, (unsigned long)now);
            if (now < at) {
                /* Only the shortcut trusts the ticker's time: with the
                 * cache's own clock past the time, a near entry is still
                 * visible (the shortcut took it), a far one is not. */
                set_clock_ms(at + 1000);
                cr_assert_eq(pc__core_visible(c, kv), i < 3);
                set_clock_ms(now);
            }
            tick = UINT64_MAX; /* no ticker time: the cache's own clock */
            cr_assert_eq(pc__core_visible(c, kv), now < at);
        }
        /* A ticker time past every near time (a machine up for more
         * than 2^37 ms): expired, whatever the comparison makes of it. */
        tick = PC__KV_VIS_BIAS + PC__KV_NEAR_SPAN + 5;
        set_clock_ms(PC__KV_NEAR_SPAN + 5);
        cr_assert_eq(pc__core_visible(c, kv), 0);
        tick = PC__KV_VIS_BIAS + at - 1;
        set_clock_ms(at - 1);
        pc__kv_unlinking(kv);
        pc__kv_set_link(kv, (struct pc__kv *)&tick);
        cr_assert_eq(pc__core_visible(c, kv), i < 3 ? -1 : 1,
                     "%zu: a reused header read as a time", i);
        tick = UINT64_MAX;
        cr_assert_eq(pc__core_visible(c, kv), i < 3 ? -1 : 1);
        free(kv);
    }
    c->vis = saved;
    pc_destroy(c);
}

/* Through the API, on every policy: the last near time, the first far
 * one, a far one, and one before the origin (a clock that went back), each
 * visible strictly before its time and not at it. */
Test(expiry, times_near_and_far_from_the_origin_expire_exactly)
{
    const uint64_t span = (uint64_t)1 << 37, t0 = 1000;
    pc_cache *c = make_timed(10, 0);

    set_clock_ms(t0);
    cr_assert_eq(put_ttl(c, 0, 5), PC_OK); /* fixes the origin at t0 */
    cr_assert_eq(put_ttl(c, 1, span - 1), PC_OK);
    cr_assert_eq(put_ttl(c, 2, span), PC_OK);
    cr_assert_eq(put_ttl(c, 3, span * 8), PC_OK);
    set_clock_ms(t0 + span - 2);
    cr_assert_eq(get_u64(c, 1, NULL), PC_OK);
    cr_assert_eq(get_u64(c, 2, NULL), PC_OK);
    test_advance(1);
    cr_assert_eq(get_u64(c, 1, NULL), PC_NOTFOUND, "near: visible at its time");
    cr_assert_eq(get_u64(c, 2, NULL), PC_OK);
    test_advance(1);
    cr_assert_eq(get_u64(c, 2, NULL), PC_NOTFOUND, "far: visible at its time");
    cr_assert_eq(get_u64(c, 3, NULL), PC_OK);
    cr_assert_eq(pc_expire(c), 3); /* 0, 1, 2 */
    set_clock_ms(t0 - 1000);       /* back before the origin */
    cr_assert_eq(put_ttl(c, 4, 500), PC_OK);
    test_advance(499);
    cr_assert_eq(get_u64(c, 4, NULL), PC_OK);
    test_advance(1);
    cr_assert_eq(get_u64(c, 4, NULL), PC_NOTFOUND, "before the origin");
    cr_assert_eq(pc_expire(c), 1);
    cr_assert_eq(get_u64(c, 3, NULL), PC_OK);
    cr_assert_eq(pc_len(c), 1);
    pc_destroy(c);
}

/* The index remembers the hash of the next victim whose time is near,
 * computed for its prefetch, for the erase that follows (index.h, `hint`).
 * Replacements, deletes, reclamation (which frees the memory a later entry
 * reuses) and evictions in any order: the index and the counts must still
 * agree on every key, and no entry may be erased with another key's hash
 * (the debug build checks each hint it uses; ASan sees a freed entry left
 * in the index). */
Test(expiry, the_next_victims_remembered_hash_never_outlives_it)
{
    pc_cache *c = make_timed(8, 3600000);
    uint64_t x = 0x9e3779b97f4a7c15u;
    unsigned char val[64] = {0}, buf[64];

    set_clock_ms(1000);
    for (int op = 0; op < 20000; op++) {
        uint64_t k, present = 0;
        size_t n;

        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        k = (x >> 8) % 16;
        switch (x % 4) {
        case 0:
        case 1: /* insert or replace (a near time either way), with a
                 * value of 8 or 64 bytes: a replacement that grows the
                 * entry claims room (and may evict) before it replaces */
            cr_assert_eq(pc_put_ex(c, &k, sizeof k, val,
                                   (x >> 20) & 1 ? sizeof val : 8, NULL),
                         PC_OK);
            break;
        case 2:
            (void)pc_delete(c, &k, sizeof k);
            break;
        default:
            pc_reclaim(c);
        }
        for (uint64_t j = 0; j < 16; j++)
            present += pc_get(c, &j, sizeof j, buf, sizeof buf, &n) == PC_OK;
        cr_assert_eq(present, pc_len(c), "op %d: %lu keys found, len %zu", op,
                     (unsigned long)present, pc_len(c));
    }
    pc_destroy(c);
}

Test(expiry, the_default_clock_expires_entries_too)
{
    pc_options o = test_opts(10);
    pc_cache *c;
    struct timespec t0, t1, ts = {0, 5 * 1000000};
    int64_t ms;
    pc_status st;

    o.ttl_ms = 300;
    cr_assert_eq(pc_create(&o, &c), PC_OK);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    put_u64(c, 1, 1);
    st = get_u64(c, 1, NULL);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    ms = (int64_t)(t1.tv_sec - t0.tv_sec) * 1000 +
         (t1.tv_nsec - t0.tv_nsec) / 1000000;
    if (ms < 250) /* (a put and get straddling the ttl: a stalled thread) */
        cr_assert_eq(st, PC_OK, "gone %lld ms after the put", (long long)ms);
    /* The ticker trails CLOCK_MONOTONIC_COARSE by a tick or two, more
     * while it waits for a CPU: the wait for the expiry is a deadlock
     * breaker (10 s), not a timing target. */
    do {
        nanosleep(&ts, NULL);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        ms = (int64_t)(t1.tv_sec - t0.tv_sec) * 1000 +
             (t1.tv_nsec - t0.tv_nsec) / 1000000;
        st = get_u64(c, 1, NULL);
    } while (st == PC_OK && ms < 10000);
    cr_assert_eq(st, PC_NOTFOUND, "still there %lld ms after the put",
                 (long long)ms);
    pc_destroy(c);
}

/* ---- the default clock: the ticker ---- */

/* Ttls here are long enough that a put and the get right after it never
 * straddle one on a loaded machine; the checks that an entry expired wait
 * for it (up to EXPIRY_WAIT_MS: the ticker may wait for a CPU). */
#define TTL_MS 300
#define EXPIRY_WAIT_MS 10000

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000};

    while (nanosleep(&ts, &ts) != 0)
        ;
}

/* Threads of this process named as the ticker names its thread (one
 * joined a moment ago may linger in /proc: callers that expect fewer
 * poll, wait_ticker_threads). */
static int ticker_threads(void)
{
    int n = test_ticker_threads(NULL);

    cr_assert_geq(n, 0, "/proc/self/task unreadable");
    return n;
}

/* Whether the count of ticker threads becomes n within 2 s. */
static bool wait_ticker_threads(int n)
{
    for (int i = 0; i < 200; i++) {
        if (ticker_threads() == n)
            return true;
        sleep_ms(10);
    }
    return false;
}

/* Whether key k of c stops being visible within EXPIRY_WAIT_MS. */
static bool expires_soon(pc_cache *c, uint64_t k)
{
    for (int waited = 0; waited < EXPIRY_WAIT_MS; waited += 10) {
        if (get_u64(c, k, NULL) == PC_NOTFOUND)
            return true;
        sleep_ms(10);
    }
    return false;
}

static pc_cache *make_default_clock(uint64_t ttl_ms)
{
    pc_options o = test_opts(16);

    o.ttl_ms = ttl_ms;
    return make_cache_opts(&o);
}

Test(expiry, one_ticker_runs_while_a_cache_on_the_default_clock_expires_entries)
{
    cr_assert_eq(ticker_threads(), 0);
    pc_cache *plain = make_default_clock(0);
    pc_cache *a = make_default_clock(60000);
    pc_cache *b = make_default_clock(60000);
    pc_cache *own = make_timed(16, 1000); /* its own clock: no ticker */

    put_u64(plain, 1, 1); /* no expiry: no clock at all */
    put_u64(own, 1, 1);
    cr_assert(!pc__ticker_running());
    cr_assert(!a->ticking && !own->ticking && !plain->ticking);
    cr_assert_eq(ticker_threads(), 0);
    put_u64(a, 1, 1); /* the first expiry on the default clock */
    cr_assert(pc__ticker_running());
    cr_assert(a->ticking);
    cr_assert_eq(ticker_threads(), 1);
    put_u64(b, 1, 1);
    cr_assert(b->ticking);
    cr_assert_eq(ticker_threads(), 1, "one ticker for the process");
    pc_destroy(a);
    cr_assert(pc__ticker_running(), "b still uses it");
    cr_assert_eq(get_u64(b, 1, NULL), PC_OK);
    pc_destroy(b);
    cr_assert(!pc__ticker_running(), "the last user stopped it");
    cr_assert(wait_ticker_threads(0), "and its thread ended");
    /* A new user starts a new one, and it ticks. */
    a = make_default_clock(TTL_MS);
    put_u64(a, 2, 2);
    cr_assert(pc__ticker_running());
    cr_assert_eq(get_u64(a, 2, NULL), PC_OK);
    cr_assert(expires_soon(a, 2), "the new ticker ticks");
    pc_destroy(a);
    cr_assert(!pc__ticker_running());
    cr_assert(wait_ticker_threads(0));
    pc_destroy(own);
    pc_destroy(plain);
}

/* What a forked child checks (0: all well). */
static int child_expires(pc_cache *inherited)
{
    pc_cache *fresh;

    if (pc__ticker_running() || ticker_threads() != 0)
        return 1; /* the child has no ticker thread */
    if (!expires_soon(inherited, 1))
        return 2; /* its clock stood still */
    if (put_u64(inherited, 2, 2) != PC_OK ||
        get_u64(inherited, 2, NULL) != PC_OK)
        return 3;
    fresh = make_default_clock(TTL_MS);
    put_u64(fresh, 3, 3);
    if (get_u64(fresh, 3, NULL) != PC_OK || pc__ticker_running() ||
        fresh->ticking)
        return 4; /* never a ticker again in this child */
    if (!expires_soon(inherited, 2) || !expires_soon(fresh, 3))
        return 5;
    pc_destroy(fresh);
    pc_destroy(inherited);
    return 0;
}

/* Fork with c's ticker running; the child runs child(c) under an alarm
 * of `secs` and must exit with 0; the parent's ticker runs on. */
static void in_forked_child(pc_cache *c, int (*child)(pc_cache *),
                            unsigned secs)
{
    int status;
    pid_t pid;

    cr_assert(pc__ticker_running());
    pid = fork();
    cr_assert_neq(pid, -1);
    if (pid == 0) {
        alarm(secs);
        _exit(child(c));
    }
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child %s %d",
              WIFEXITED(status) ? "exited with" : "killed by",
              WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
    cr_assert(pc__ticker_running(), "the parent's ticker runs on");
}

Test(expiry, a_forked_child_reads_the_clock_itself)
{
    pc_cache *c = make_default_clock(TTL_MS);

    put_u64(c, 1, 1);
    in_forked_child(c, child_expires, 60);
    cr_assert(expires_soon(c, 1));
    pc_destroy(c);
    cr_assert(!pc__ticker_running());
}

/* A thread of the forked child: waits until the child writes to its
 * pipe. */
static void *child_waiter(void *p)
{
    char b;

    while (read(*(int *)p, &b, 1) < 0)
        ;
    return NULL;
}

/* The child destroys the cache it inherited, the last user of a ticker
 * it has not got, while threads of its own run, one with the ticker's
 * stack size (glibc hands it the stack, and so the handle, of the
 * parent's ticker that fork() left behind): 0 if it returns. */
static int child_destroys(pc_cache *inherited)
{
    pthread_t th[2];
    pthread_attr_t attr;
    int fds[2];

    if (pipe(fds) != 0 || pthread_attr_init(&attr) != 0 ||
        pthread_attr_setstacksize(&attr, 256 * 1024) != 0 ||
        pthread_create(&th[0], &attr, child_waiter, &fds[0]) != 0 ||
        pthread_create(&th[1], NULL, child_waiter, &fds[0]) != 0)
        return 1;
    pc_destroy(inherited); /* a hang here: SIGALRM */
    if (write(fds[1], "gg", 2) != 2)
        return 2;
    for (int i = 0; i < 2; i++)
        pthread_join(th[i], NULL);
    return 0;
}

/* A forked child's last cache on the default clock stops no ticker: the
 * one it counted ran in the parent, and fork() left the child none to
 * signal or join (joining its stale handle waited for a thread of the
 * child's own, or for ever). */
Test(expiry, a_forked_childs_last_cache_joins_no_ticker, .timeout = 60)
{
    pc_cache *c = make_default_clock(60000);

    put_u64(c, 1, 1);
    in_forked_child(c, child_destroys, 20);
    pc_destroy(c);
    cr_assert(!pc__ticker_running());
}

/* Racing first expiries of one cache acquire the ticker once: the one
 * that fixes the cache's clock (under the process's first-use lock);
 * the other, which found none fixed before it waited for that lock,
 * finds it fixed after. pthread_setname_np, which the ticker's start
 * calls with that lock held, is interposed to hold the first put there
 * until the second is asleep on the lock. Acquired twice, the ticker
 * outlived the cache's destroy. */
static sem_t start_in, start_go;
static int start_armed;

int pthread_setname_np(pthread_t t, const char *name)
{
    int (*real)(pthread_t, const char *) =
        (int (*)(pthread_t, const char *))dlsym(RTLD_NEXT,
                                                "pthread_setname_np");

    if (__atomic_exchange_n(&start_armed, 0, __ATOMIC_ACQ_REL)) {
        sem_post(&start_in);
        while (sem_wait(&start_go) != 0)
            ;
    }
    return real(t, name);
}

struct first_put {
    pc_cache *c;
    uint64_t k;
    long tid;
    int ready, ok;
};

static void *first_put(void *p)
{
    struct first_put *f = p;

    __atomic_store_n(&f->tid, test_gettid(), __ATOMIC_RELAXED);
    __atomic_store_n(&f->ready, 1, __ATOMIC_RELEASE);
    f->ok = put_u64(f->c, f->k, f->k) == PC_OK;
    return NULL;
}

Test(expiry, racing_first_expiries_of_a_cache_acquire_the_ticker_once,
     .timeout = 60)
{
    pc_cache *c = make_default_clock(60000);
    struct first_put a = {.c = c, .k = 1}, b = {.c = c, .k = 2};
    pthread_t ta, tb;

    cr_assert_not(pc__ticker_running());
    sem_init(&start_in, 0, 0);
    sem_init(&start_go, 0, 0);
    __atomic_store_n(&start_armed, 1, __ATOMIC_RELEASE);
    cr_assert_eq(pthread_create(&ta, NULL, first_put, &a), 0);
    while (sem_wait(&start_in) != 0)
        ; /* a starts the ticker for c's first expiry */
    cr_assert_eq(pthread_create(&tb, NULL, first_put, &b), 0);
    while (!__atomic_load_n(&b.ready, __ATOMIC_ACQUIRE))
        sched_yield();
    cr_assert(
        test_thread_blocked(__atomic_load_n(&b.tid, __ATOMIC_RELAXED), 10000),
        "the second first expiry never waited");
    sem_post(&start_go);
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    cr_assert(a.ok && b.ok);
    cr_assert(pc__ticker_running());
    cr_assert(c->ticking);
    pc_destroy(c);
    cr_assert_not(pc__ticker_running(),
                  "the ticker outlived its only cache: acquired twice");
}

/* A cache that acquired the ticker finds a time in its global from its
 * first expiry on, before the thread's first tick (start() stores one
 * before it creates the thread): a reader that found none would read the
 * clock itself, later than the tick the thread stores next.
 * sched_getaffinity, the ticker thread's first call, is interposed to
 * hold the thread before its first tick. */
static sem_t tick_in, tick_go;
static int tick_armed;

int sched_getaffinity(pid_t pid, size_t size, cpu_set_t *set)
{
    int (*real)(pid_t, size_t, cpu_set_t *) =
        (int (*)(pid_t, size_t, cpu_set_t *))dlsym(RTLD_NEXT,
                                                   "sched_getaffinity");

    if (__atomic_exchange_n(&tick_armed, 0, __ATOMIC_ACQ_REL)) {
        sem_post(&tick_in);
        while (sem_wait(&tick_go) != 0)
            ;
    }
    return real(pid, size, set);
}

Test(expiry, the_ticker_time_is_there_before_the_first_tick, .timeout = 60)
{
    pc_cache *c = make_default_clock(60000);
    uint64_t vis;

    cr_assert_not(pc__ticker_running());
    sem_init(&tick_in, 0, 0);
    sem_init(&tick_go, 0, 0);
    __atomic_store_n(&tick_armed, 1, __ATOMIC_RELEASE);
    cr_assert_eq(put_u64(c, 1, 1), PC_OK); /* starts the ticker */
    while (sem_wait(&tick_in) != 0)
        ; /* the thread is held before its first tick */
    cr_assert(c->ticking);
    vis = __atomic_load_n(&pc__ticker_clock.vis, __ATOMIC_RELAXED);
    sem_post(&tick_go);
    cr_assert_neq(vis, UINT64_MAX, "no time before the ticker's first tick");
    cr_assert_eq(get_u64(c, 1, NULL), PC_OK);
    pc_destroy(c);
    cr_assert_not(pc__ticker_running());
}

#ifdef PC_DEBUG
Test(expiry, without_a_ticker_the_default_clock_is_read_directly)
{
    pc_cache *c;

    pc__debug_ticker_fail = true;
    c = make_default_clock(TTL_MS);
    put_u64(c, 1, 1);
    cr_assert(!pc__ticker_running());
    cr_assert(!c->ticking, "the cache reads the clock itself");
    cr_assert_eq(get_u64(c, 1, NULL), PC_OK);
    pc__debug_ticker_fail = false; /* the cache keeps its direct clock */
    cr_assert(expires_soon(c, 1));
    cr_assert(!pc__ticker_running());
    cr_assert(!c->ticking);
    pc_destroy(c);
}
#endif

#ifdef PC_DEBUG
/* ---- a put judges expiry by a time no older than the writes before it ----
 * (helper-61: a put read the clock before it waited for its writer lock.)
 * Keys: 0 = Y (never expires, the first to go by the policy: put first,
 * never read), 1 = W (expires at 1050), 2 = Z, 3 = K; capacity 3, one
 * shard. K's put stalls just before its writer lock (as if preempted);
 * meanwhile the clock passes W's expiry and Z fills the cache. Then K's
 * put takes the lock and, having to evict, must take the expired W
 * (pc_put_ex: "an expired entry if there is one"): its put comes after
 * Z's (it evicts because Z filled the cache), and Z's ran at 1100, when W
 * had expired. It evicted the live Y, judging by the 1000 it had read
 * before the lock. */
static struct stall prelock_st; /* pc__debug_prelock_hook's */
static uint64_t prelock_evicted[4], prelock_expired[4];

static void prelock_stall(void)
{
    stall_at(&prelock_st);
}

static void prelock_listener(void *ctx, const void *key, size_t klen,
                             const void *val, size_t vlen,
                             pc_removal_cause cause)
{
    uint64_t k;

    (void)ctx, (void)val, (void)vlen;
    if (klen != sizeof k)
        return;
    memcpy(&k, key, sizeof k);
    if (k < 4 && cause == PC_REMOVED_EVICTED)
        __atomic_add_fetch(&prelock_evicted[k], 1, __ATOMIC_RELAXED);
    else if (k < 4 && cause == PC_REMOVED_EXPIRED)
        __atomic_add_fetch(&prelock_expired[k], 1, __ATOMIC_RELAXED);
}

static void *prelock_put_k(void *arg)
{
    cr_assert_eq(put_u64(arg, 3, 33), PC_OK);
    return NULL;
}

Test(expiry, a_put_that_waited_for_its_lock_evicts_what_expired_meanwhile)
{
    pc_options o = test_opts(3);
    pc_put_args w_args = {.ttl_ms = 50};
    uint64_t k = 1, v = 11, got;
    pthread_t t;
    pc_cache *c;

    o.shards = 1;
    o.now_ms = test_now;
    o.on_removal = prelock_listener;
    __atomic_store_n(&test_clock_ms, 1000, __ATOMIC_RELAXED);
    c = make_cache_opts(&o);
    cr_assert_not_null(c);
    cr_assert_eq(put_u64(c, 0, 10), PC_OK); /* Y */
    cr_assert_eq(pc_put_ex(c, &k, sizeof k, &v, sizeof v, &w_args), PC_OK);
    __atomic_store_n(&prelock_st.armed, 1, __ATOMIC_RELEASE);
    pc__debug_prelock_hook = prelock_stall;
    cr_assert_eq(pthread_create(&t, NULL, prelock_put_k, c), 0);
    while (!__atomic_load_n(&prelock_st.entered, __ATOMIC_ACQUIRE))
        sched_yield();
    /* K's put is on its way to its lock, holding none. */
    test_advance(100);
    cr_assert_eq(put_u64(c, 2, 22), PC_OK);         /* Z fills the cache */
    cr_assert_eq(get_u64(c, 1, &got), PC_NOTFOUND); /* W has expired */
    __atomic_store_n(&prelock_st.release, 1, __ATOMIC_RELEASE);
    pthread_join(t, NULL);
    pc__debug_prelock_hook = NULL;
    cr_expect_eq(prelock_evicted[0], 0,
                 "the live entry Y was evicted while W had expired");
    cr_expect_eq(prelock_expired[1], 1, "W was not removed as expired");
    cr_expect_eq(get_u64(c, 0, &got), PC_OK, "Y is gone");
    cr_expect_eq(get_u64(c, 3, &got), PC_OK);
    pc_destroy(c);
}
#endif

/* Entries that expire keep no hash in their header: the index hashes the
 * key of the victim a put prefetches and keeps that hash beside the
 * entry's address (`hint`, src/index.h) for its erase. A delete of that
 * entry must forget the hint ("Writer: unlink and return the entry whose
 * key equals key", pc__index_remove): its memory, freed, comes back as the
 * next entry of the same size, and an erase of that one with the deleted
 * key's hash does not find it (debug builds assert; others leave a freed
 * entry in the index). Every round: a put that evicts (hint: the entry
 * under the hand), a delete of that entry, puts into its memory. */
Test(expiry, a_deleted_entry_leaves_no_hint_for_the_next_at_its_address)
{
    pc_options o = test_opts(4);
    pc_cache *c;
    uint64_t v, next = 0;

    o.shards = 1;
    o.ttl_ms = 3600 * 1000;
    c = make_cache_opts(&o);
    cr_assert_not_null(c);
    for (int round = 0; round < 200; round++) {
        uint64_t first = next;

        for (; next < first + 5; next++) /* the last evicts one */
            cr_assert_eq(put_u64(c, next, next), PC_OK);
        for (uint64_t k = first, end = next; k < end; k++) /* those there */
            if (get_u64(c, k, &v) == PC_OK) {
                cr_assert_eq(pc_delete(c, &k, sizeof k), PC_OK);
                pc_reclaim(c);
                for (int i = 0; i < 2; i++, next++)
                    cr_assert_eq(put_u64(c, next, next), PC_OK);
            }
        pc_clear(c);
    }
    cr_assert_eq(pc_len(c), 0);
    pc_destroy(c);
}

/* After a rebuild of the expiry queue (here the trim of a lowered
 * capacity, clock and frequency), the queue still knows the latest time an
 * item is due (exq.h, max_at): a new key that takes the position of a
 * deleted key whose item is due later is not covered by that item, and
 * goes first once it expires. Key 3 never expires, key 1 expires at 100:
 * alone in the one-chunk table the trim leaves; key 1 deleted, its
 * position goes to key 2, which expires at 5, then key 4, which never
 * expires (clock's hand stands at key 3, first in its ring and never
 * read). At 5 a put takes key 2, not a live key. */
Test(expiry, a_new_key_on_a_slot_whose_item_is_due_later_goes_first)
{
    pc_cache *c = make_timed(64, 0);

    cr_assert_eq(put_ttl(c, 3, PC_TTL_NEVER), PC_OK);
    cr_assert_eq(put_ttl(c, 1, 100), PC_OK);
    cr_assert_eq(pc_set_capacity(c, 2), PC_OK); /* the queue rebuilt */
    cr_assert_eq(pc_set_capacity(c, 3), PC_OK);
    cr_assert_eq(pc_delete(c, &(uint64_t){1}, 8), PC_OK);
    cr_assert_eq(put_ttl(c, 2, 5), PC_OK);
    cr_assert_eq(put_ttl(c, 4, PC_TTL_NEVER), PC_OK);
    test_advance(5);
    cr_assert_eq(put_ttl(c, 5, PC_TTL_NEVER), PC_OK);
    assert_removed(c, 1, 0, "at 5: the expired key 2 was not first");
    cr_assert_eq(get_u64(c, 3, NULL), PC_OK);
    cr_assert_eq(get_u64(c, 4, NULL), PC_OK);
    pc_destroy(c);
}

/* The queue keeps its order as items leave (clock and frequency: exq.c's
 * heap; lru: its own): keys expiring at 10, 20 and 30, and one that never
 * expires, first in clock's ring and never read; at 10 a put takes the
 * first, and at 20 the next put takes the second, not a live key. */
Test(expiry, expired_entries_go_first_in_turn_as_the_queue_empties)
{
    pc_cache *c = make_timed(4, 0);

    cr_assert_eq(put_ttl(c, 4, PC_TTL_NEVER), PC_OK);
    for (uint64_t k = 1; k <= 3; k++)
        cr_assert_eq(put_ttl(c, k, 10 * k), PC_OK);
    test_advance(10);
    cr_assert_eq(put_ttl(c, 5, PC_TTL_NEVER), PC_OK);
    assert_removed(c, 1, 0, "at 10: key 1 was not taken first");
    test_advance(10);
    cr_assert_eq(put_ttl(c, 6, PC_TTL_NEVER), PC_OK);
    assert_removed(c, 2, 0, "at 20: key 2 was not taken first");
    cr_assert_eq(get_u64(c, 3, NULL), PC_OK);
    cr_assert_eq(get_u64(c, 4, NULL), PC_OK);
    pc_destroy(c);
}

/* As grown_run, with no put that can expire after the growths (clock and
 * frequency: the first use of the queue's positions since is an eviction's,
 * which must not read them in the new table): 960 keys that never expire
 * (the policies' first victims), 40 that expire at 10, then more that
 * never expire, while the index grows, until the cache is full; at 10 the
 * next 40 puts take exactly the 40 expired keys. */
Test(expiry, expired_entries_go_first_after_growths_with_no_push_since)
{
    pc_options o = test_opts(2000);
    pc_cache *c;

    o.now_ms = test_now;
    o.shards = 1;
    o.max_bytes = 1u << 30; /* (an index presized small, then grown) */
    cr_assert_eq(pc_create(&o, &c), PC_OK);
    for (uint64_t k = 100; k < 1060; k++) /* first under clock's hand */
        cr_assert_eq(put_ttl(c, k, PC_TTL_NEVER), PC_OK);
    for (uint64_t k = 0; k < 40; k++)
        cr_assert_eq(put_ttl(c, k, 10), PC_OK);
    for (uint64_t k = 1060; k < 2060; k++) /* last growth: 1025 */
        cr_assert_eq(put_ttl(c, k, PC_TTL_NEVER), PC_OK);
    cr_assert_eq(pc_len(c), 2000);
    test_advance(10);
    for (uint64_t k = 5000; k < 5040; k++)
        cr_assert_eq(put_ttl(c, k, PC_TTL_NEVER), PC_OK);
    assert_removed(c, 40, 0, "not every expired key went first");
    cr_assert_eq(held(c, 100, 2060), 1960, "a live key was evicted");
    pc_destroy(c);
}

/* A rebuild of the queue (here a trim's, clock and frequency) keeps the
 * entries whose expiry time is far (entry.h: 2^37 ms or more past the
 * origin) as well as the near ones: key 1 expires 2^37 + 10 ms on, key 3
 * never (first in clock's ring, never read); once key 1 has expired, a
 * put takes it, not key 3. */
Test(expiry, a_rebuilt_queue_keeps_entries_whose_time_is_far)
{
    pc_cache *c = make_timed(64, 0);
    uint64_t far = ((uint64_t)1 << 37) + 10;

    cr_assert_eq(put_ttl(c, 3, PC_TTL_NEVER), PC_OK);
    cr_assert_eq(put_ttl(c, 1, far), PC_OK);
    cr_assert_eq(pc_set_capacity(c, 2), PC_OK); /* the queue rebuilt */
    cr_assert_eq(pc_set_capacity(c, 3), PC_OK);
    cr_assert_eq(put_ttl(c, 4, PC_TTL_NEVER), PC_OK);
    test_advance(far);
    cr_assert_eq(put_ttl(c, 5, PC_TTL_NEVER), PC_OK);
    assert_removed(c, 1, 0, "the expired key 1 was not first");
    cr_assert_eq(get_u64(c, 3, NULL), PC_OK);
    cr_assert_eq(get_u64(c, 4, NULL), PC_OK);
    pc_destroy(c);
}
