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
