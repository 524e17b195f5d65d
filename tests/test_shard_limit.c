/*
 * A shard at its largest share, in a build whose frequency policy has a
 * 12-bit slot field (tests/CMakeLists.txt): a share limit of 2047 entries
 * instead of 2^26 - 1, the same code otherwise. A put asks its policy for
 * room for one entry more before it evicts; a shard holding its limit
 * must still take new keys (it refused every one with PC_ENOMEM once),
 * and a cache may hold its whole capacity in one shard.
 */
#include <criterion/criterion.h>

#include "testlib.h"

#define SHARE_LIMIT 2047u /* 2^(12 - 1) - 1: frequency.c, max_share */

Test(shard_limit, the_largest_share_is_accepted_and_one_more_refused)
{
    pc_options o = test_opts(SHARE_LIMIT + 1);
    pc_cache *c = NULL;

    o.shards = 1;
    cr_assert_eq(pc_create(&o, &c), PC_EINVAL);
    cr_assert_null(c);
    o.capacity = SHARE_LIMIT;
    cr_assert_eq(pc_create(&o, &c), PC_OK);
    cr_assert_eq(pc_set_capacity(c, SHARE_LIMIT + 1), PC_EINVAL);
    cr_assert_eq(pc_capacity(c), SHARE_LIMIT);
    pc_destroy(c);
}

Test(shard_limit, a_shard_at_its_largest_share_takes_new_keys)
{
    pc_options o = test_opts(SHARE_LIMIT);
    pc_cache *c;
    pc_stats s;

    o.shards = 1;
    cr_assert_eq(pc_create(&o, &c), PC_OK);
    for (uint64_t k = 0; k < SHARE_LIMIT; k++)
        cr_assert_eq(put_u64(c, k, k), PC_OK);
    cr_assert_eq(pc_len(c), SHARE_LIMIT);
    for (uint64_t k = SHARE_LIMIT; k < 3 * SHARE_LIMIT; k++) {
        cr_assert_eq(put_u64(c, k, k), PC_OK, "new key %lu at capacity",
                     (unsigned long)k);
        cr_assert_eq(pc_len(c), SHARE_LIMIT);
        cr_assert_eq(get_u64(c, k, NULL), PC_OK);
    }
    cr_assert_eq(pc_stats_get(c, &s), PC_OK);
    cr_assert_eq(s.evictions, 2 * SHARE_LIMIT);
    pc_destroy(c);
}

/* pc_create's limits: a shard may hold more than its share, and only a new
 * key that would take it "past what it can hold at all" (frequency:
 * what a ring of 2^SLOT_BITS - 1 slots holds, 3,936 entries here) fails
 * with PC_ENOMEM. A shard holding exactly that many in a full cache loses
 * one of them to a new key of its own and still holds as many: that put
 * is not past the limit, and at capacity one new key evicts one entry. */
unsigned int pc__policy_shard_of(const pc_cache *c, const void *key,
                                 size_t klen);

#define ENTRY_LIMIT_12 3936u /* ((2^12 - 1) - 8) / 33 * 32: frequency.c */

Test(shard_limit, a_shard_holding_its_most_takes_a_new_key_at_capacity)
{
    pc_options o = test_opts(2 * SHARE_LIMIT);
    pc_cache *c;
    pc_stats s;
    uint64_t k = 0, in0 = 0;

    o.shards = 2;
    o.hash_seed = 0x5eed;
    cr_assert_eq(pc_create(&o, &c), PC_OK);
    /* Shard 0 filled to what it can hold, shard 1 to the capacity. */
    for (; in0 < ENTRY_LIMIT_12; k++)
        if (pc__policy_shard_of(c, &k, sizeof k) == 0) {
            cr_assert_eq(put_u64(c, k, k), PC_OK, "key %lu of shard 0",
                         (unsigned long)in0);
            in0++;
        }
    for (; pc_len(c) < 2 * SHARE_LIMIT; k++)
        if (pc__policy_shard_of(c, &k, sizeof k) == 1)
            cr_assert_eq(put_u64(c, k, k), PC_OK);
    cr_assert_eq(pc_stats_get(c, &s), PC_OK);
    cr_assert_eq(s.evictions, 0);
    /* A new key of shard 0, at capacity: it evicts one of shard 0's. */
    while (pc__policy_shard_of(c, &k, sizeof k) != 0)
        k++;
    cr_assert_eq(put_u64(c, k, k), PC_OK,
                 "a full shard at its limit refused a new key at capacity");
    cr_assert_eq(pc_len(c), 2 * SHARE_LIMIT);
    cr_assert_eq(pc_stats_get(c, &s), PC_OK);
    cr_assert_eq(s.evictions, 1);
    pc_destroy(c);
}
