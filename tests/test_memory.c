/*
 * Memory: garbage (replaced, evicted, deleted entries and old index tables)
 * is reclaimed, nothing leaks, and thread records of exited threads are
 * reused rather than accumulated.
 */
#include <criterion/criterion.h>
#include <pthread.h>

#include "alloc.h"
#include "testlib.h"

static void churn(pc_cache *c, uint64_t base, uint64_t n)
{
    for (uint64_t i = 0; i < n; i++) {
        uint64_t k = base + mix64(i) % (4 * pc_capacity(c));

        put_u64(c, k, i);
        if (i % 7 == 0)
            pc_delete(c, &k, sizeof k);
        if (i % 3 == 0)
            get_u64(c, k, NULL);
    }
}

Test(memory, destroy_releases_everything_including_pending_garbage)
{
    pc__alloc_track(1);
    long before = pc__alloc_live();
    pc_cache *c = make_cache(3000);

    churn(c, 0, 50000); /* leaves retired entries waiting */
    pc_destroy(c);
    cr_assert_eq(pc_alloc_live_delta(before), 0);
    pc__alloc_track(0);
}

Test(memory, reclaim_returns_all_garbage_and_usage_does_not_grow)
{
    pc__alloc_track(1);
    pc_cache *c = make_cache(3000);
    long first, second;

    churn(c, 0, 50000);
    pc_clear(c);
    pc_reclaim(c);
    first = pc__alloc_live();
    churn(c, 1u << 20, 200000);
    pc_clear(c);
    pc_reclaim(c);
    second = pc__alloc_live();
    cr_assert_eq(second, first, "live allocations grew from %ld to %ld", first,
                 second);
    pc_destroy(c);
    pc__alloc_track(0);
}

Test(memory, live_entries_are_bounded_by_capacity_after_reclaim)
{
    pc__alloc_track(1);
    long before = pc__alloc_live();
    pc_cache *c = make_cache(500);
    long fixed;

    /* Fixed overhead: the cache with every structure grown, but empty. */
    churn(c, 0, 5000);
    pc_clear(c);
    pc_reclaim(c);
    fixed = pc__alloc_live() - before;
    churn(c, 0, 20000);
    pc_reclaim(c);
    cr_assert_eq(pc__alloc_live() - before, fixed + (long)pc_len(c),
                 "one allocation per live entry beyond the fixed overhead");
    pc_destroy(c);
    pc__alloc_track(0);
}

static void *short_lived(void *p)
{
    pc_cache *c = p;

    for (uint64_t k = 0; k < 100; k++) {
        put_u64(c, k, k);
        get_u64(c, k, NULL);
    }
    return NULL;
}

Test(memory, exited_threads_records_are_recycled)
{
    pc__alloc_track(1);
    pc_cache *c = make_cache(1000);
    long after_first;

    for (int round = 0; round < 200; round++) {
        pthread_t th;

        pthread_create(&th, NULL, short_lived, c);
        pthread_join(th, NULL);
        if (round == 0) {
            pc_reclaim(c);
            after_first = pc__alloc_live();
        }
    }
    pc_reclaim(c);
    /* 200 threads came and went; they shared one recycled record. */
    cr_assert_eq(pc__alloc_live(), after_first);
    pc_destroy(c);
    pc__alloc_track(0);
}

/*
 * ck_hs's table header (tombstone counter included) comes from our
 * allocator; ck 0.7.1 never initialises that counter. If the table memory
 * is reused, pc__index_maintain sees a huge tombstone count and rebuilds the
 * whole table on every delete or eviction (an O(capacity) allocation and
 * copy per write). Reuse the memory of a table that saw many removals, then
 * count the allocations a hundred deletes make: at most one rebuild.
 */
Test(memory, deletes_rebuild_the_index_only_after_many_removals)
{
    pc_options o = {.capacity = 1000, .shards = 1};
    pc_cache *c;
    long made;

    for (int round = 0; round < 2; round++) {
        cr_assert_eq(pc_create(&o, &c), PC_OK);
        for (uint64_t k = 0; k < 1000; k++)
            put_u64(c, k, k);
        pc__alloc_fail_after(1L << 40); /* count, never fail */
        for (uint64_t k = 0; k < 100; k++)
            pc_delete(c, &k, sizeof k);
        made = pc__alloc_fail_after(-1);
        cr_assert_leq(made, 1, "round %d: 100 deletes made %ld allocations",
                      round, made);
        for (uint64_t k = 0; k < 20000; k++) { /* dirty the table header */
            uint64_t d = 1000 + k;

            put_u64(c, d, k);
            pc_delete(c, &d, sizeof d);
        }
        pc_destroy(c);
    }
}
