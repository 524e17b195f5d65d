/*
 * Expiry, on a clock the test drives (pc_options.now_ms): an entry is
 * visible strictly before its expiry time and never at or after it,
 * whether or not it has been removed; the default TTL, per-entry TTLs,
 * PC_TTL_NEVER and saturation; lazy removal (expired entries still count
 * until a write or pc_expire removes them) and pc_expire; expired entries
 * are the first victims; conditional puts and deletes treat an expired
 * entry as absent.
 */
#include <criterion/criterion.h>

#include "testlib.h"

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
    pc_stats s;

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
    pc_stats_get(c, &s);
    cr_assert_eq(s.expirations, 6);
    cr_assert_eq(s.evictions, 0);
    pc_destroy(c);
}

Test(expiry, an_expired_entry_is_the_first_victim)
{
    pc_cache *c = make_timed(4, 0);
    pc_stats s;

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
    pc_stats_get(c, &s);
    cr_assert_eq(s.expirations, 1);
    cr_assert_eq(s.evictions, 0);
    pc_destroy(c);
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

Test(expiry, the_default_clock_expires_entries_too)
{
    pc_options o = test_opts(10);
    pc_cache *c;

    o.ttl_ms = 30;
    cr_assert_eq(pc_create(&o, &c), PC_OK);
    put_u64(c, 1, 1);
    cr_assert_eq(get_u64(c, 1, NULL), PC_OK);
    /* CLOCK_MONOTONIC_COARSE: a few ms of resolution. */
    struct timespec ts = {0, 80 * 1000000};
    nanosleep(&ts, NULL);
    cr_assert_eq(get_u64(c, 1, NULL), PC_NOTFOUND);
    pc_destroy(c);
}
