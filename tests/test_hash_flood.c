/*
 * Hash flooding: keys chosen to collide under one seed must not collide
 * under the seeds real caches use.
 *
 * How. Under a fixed seed (as an attacker who knew it would), brute force
 * thousands of keys that all share one index home chunk (of 1024, chosen
 * as index.h chooses it), or one CLOCK shard (of 256), for short 8-byte keys
 * and for long string keys (hash.h's block loop). Then, for several seeds drawn
 * as pc_create draws them (getrandom), those same keys must spread over the
 * slots / shards like random keys: a chi-square statistic within 8 standard
 * deviations of its mean and no bucket holding more than a small multiple of
 * the average. Both bounds fail by orders of magnitude if the seed does not
 * reach every input bit (the flooded keys would all stay in one bucket).
 * Finally a real cache with a random seed stores and finds every flooded key.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>

#include "hash.h"
#include "testlib.h"

#define NKEYS 4096
#define SLOTS 1024u
#define SHARDS 256u
#define FIXED_SEED 0xa77ac4e2ULL
#define TRIAL_SEEDS 12

struct key {
    unsigned char b[40];
    size_t n;
};

static struct key keys[NKEYS];

static void key_make(struct key *k, uint64_t i, bool long_key)
{
    if (long_key)
        k->n = (size_t)snprintf((char *)k->b, sizeof k->b,
                                "session:tenant-0042:user-%014lu",
                                (unsigned long)i);
    else {
        memcpy(k->b, &i, 8);
        k->n = 8;
    }
}

static unsigned slot_of(uint64_t h)
{
    /* index.h's home chunk: the low half of h scaled to the chunks */
    return (unsigned)(((h & 0xffffffffu) * SLOTS) >> 32);
}

static unsigned shard_of(uint64_t h)
{
    /* shard.c's choice of shard: the high half of h scaled */
    return (unsigned)(((h >> 32) * SHARDS) >> 32);
}

/* Fill keys[] with NKEYS keys that all land in bucket 0 under FIXED_SEED. */
static void flood(bool long_key, unsigned (*bucket)(uint64_t))
{
    struct pc__hash_seed s;
    size_t got = 0;

    pc__hash_seed_init(&s, FIXED_SEED);
    for (uint64_t i = 0; got < NKEYS; i++) {
        key_make(&keys[got], i, long_key);
        if (bucket(pc__hash(&s, keys[got].b, keys[got].n)) == 0)
            got++;
    }
}

static void assert_spread(unsigned (*bucket)(uint64_t), unsigned nb,
                          const char *what)
{
    static unsigned count[SLOTS];
    double expect = (double)NKEYS / nb;
    double chi_limit = (nb - 1) + 8 * sqrt(2.0 * (nb - 1));

    for (int t = 0; t < TRIAL_SEEDS; t++) {
        struct pc__hash_seed s;
        unsigned maxc = 0;
        double chi = 0;

        pc__hash_seed_init(&s, 0); /* random, as pc_create does */
        memset(count, 0, sizeof count);
        for (size_t i = 0; i < NKEYS; i++)
            count[bucket(pc__hash(&s, keys[i].b, keys[i].n))]++;
        for (unsigned b = 0; b < nb; b++) {
            chi += (count[b] - expect) * (count[b] - expect) / expect;
            if (count[b] > maxc)
                maxc = count[b];
        }
        cr_assert_lt(chi, chi_limit, "%s: chi-square %.0f (limit %.0f)", what,
                     chi, chi_limit);
        cr_assert_leq(maxc, (unsigned)(4 * expect + 12),
                      "%s: a bucket holds %u keys (average %.1f)", what, maxc,
                      expect);
    }
}

Test(hash_flood, short_keys_colliding_in_one_slot_spread_under_random_seeds)
{
    flood(false, slot_of);
    assert_spread(slot_of, SLOTS, "8-byte keys, slots");
}

Test(hash_flood, long_keys_colliding_in_one_slot_spread_under_random_seeds)
{
    flood(true, slot_of);
    assert_spread(slot_of, SLOTS, "long keys, slots");
}

Test(hash_flood, keys_colliding_in_one_shard_spread_under_random_seeds)
{
    flood(false, shard_of);
    assert_spread(shard_of, SHARDS, "8-byte keys, shards");
    flood(true, shard_of);
    assert_spread(shard_of, SHARDS, "long keys, shards");
}

Test(hash_flood, the_same_fixed_seed_reproduces_the_collisions)
{
    struct pc__hash_seed s;

    /* Guards the test itself: the flood is real under the seed it used. */
    flood(false, slot_of);
    pc__hash_seed_init(&s, FIXED_SEED);
    for (size_t i = 0; i < NKEYS; i++)
        cr_assert_eq(slot_of(pc__hash(&s, keys[i].b, keys[i].n)), 0u);
}

Test(hash_flood, random_seeds_differ_between_caches)
{
    struct pc__hash_seed a, b;

    pc__hash_seed_init(&a, 0);
    pc__hash_seed_init(&b, 0);
    cr_assert(memcmp(&a, &b, sizeof a) != 0);
}

Test(hash_flood, a_cache_stores_and_finds_every_flooded_key)
{
    pc_cache *c = make_cache(2 * NKEYS);

    cr_assert_not_null(c);
    flood(true, slot_of);
    for (size_t i = 0; i < NKEYS; i++)
        cr_assert_eq(pc_put(c, keys[i].b, keys[i].n, &i, sizeof i), PC_OK);
    cr_assert_eq(pc_len(c), NKEYS);
    for (size_t i = 0; i < NKEYS; i++) {
        size_t v = 0, n = 0;

        cr_assert_eq(pc_get(c, keys[i].b, keys[i].n, &v, sizeof v, &n), PC_OK);
        cr_assert_eq(v, i);
    }
    pc_destroy(c);
}

/* "a count saturates at 255 and then stays" (src/index.h): 263 keys that
 * share one home chunk (the low half of their hash below 2^20: chunk 0 of
 * any table of up to 4096 chunks), under a fixed seed: the home holds 7,
 * and 256 pass it. Every key is still found, and so is each after the
 * others are deleted one by one. */
Test(hash_flood, a_home_chunk_passed_256_times_still_leads_to_every_key)
{
    enum { N = 7 + 256 };
    struct pc__hash_seed s;
    uint64_t k[N], v;
    pc_options o = test_opts(2000);
    pc_cache *c;
    size_t got = 0;

    pc__hash_seed_init(&s, FIXED_SEED);
    for (uint64_t i = 0; got < N; i++)
        if ((uint32_t)pc__hash(&s, &i, sizeof i) < (1u << 20))
            k[got++] = i;
    o.shards = 1;
    o.hash_seed = FIXED_SEED;
    c = make_cache_opts(&o);
    cr_assert_not_null(c);
    for (size_t i = 0; i < N; i++)
        cr_assert_eq(put_u64(c, k[i], k[i]), PC_OK);
    cr_assert_eq(pc_len(c), N);
    for (size_t i = 0; i < N; i++) {
        cr_assert_eq(get_u64(c, k[i], &v), PC_OK, "key %zu of %d lost", i,
                     (int)N);
        cr_assert_eq(v, k[i]);
    }
    for (size_t i = 0; i < N; i++) {
        cr_assert_eq(pc_delete(c, &k[i], sizeof k[i]), PC_OK,
                     "key %zu of %d lost", i, (int)N);
        for (size_t j = i + 1; j < N; j += 16)
            cr_assert_eq(get_u64(c, k[j], &v), PC_OK, "key %zu of %d lost", j,
                         (int)N);
    }
    cr_assert_eq(pc_len(c), 0);
    pc_destroy(c);
}

/* Keys that differ only past their first word (the first 4 or 8 bytes all
 * zero, a counter after them): every word is XORed with the seed before it
 * is multiplied (hash.h), so they spread like any keys. A word left
 * unseeded would be 0 in all of them, and a multiply by 0 is 0 whatever
 * the other factor: every such key would share one hash under every seed,
 * a flood no seed prevents. Lengths 7 (4 + 3 bytes), 12 and 16 (8 + 4, 8 +
 * 8). */
Test(hash_flood, keys_alike_but_for_their_tail_spread_under_random_seeds)
{
    static const size_t lens[] = {7, 12, 16};

    for (size_t l = 0; l < sizeof lens / sizeof lens[0]; l++) {
        size_t n = lens[l], head = n >= 8 ? 8 : 4;

        for (uint64_t i = 0; i < NKEYS; i++) {
            memset(keys[i].b, 0, sizeof keys[i].b);
            memcpy(keys[i].b + head, &i, n - head < 8 ? n - head : 8);
            keys[i].n = n;
        }
        assert_spread(slot_of, SLOTS, "keys alike but for a tail, slots");
        assert_spread(shard_of, SHARDS, "keys alike but for a tail, shards");
    }
}
