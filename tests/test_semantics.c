/*
 * The seed's semantics (DESIGN.md), held by both policies: capacity, misses,
 * hits as uses, replacement without eviction, eviction of exactly one entry,
 * empty values as hits, buffer handling, delete, clear, statistics.
 */
#include <criterion/criterion.h>
#include <stdlib.h>

#include "testlib.h"

Test(semantics, policy_name_matches_build)
{
    pc_cache *c = make_cache(4);

    cr_assert_str_eq(pc_policy(), is_frequency() ? "clock" : PC_TEST_POLICY);
    cr_assert_str_eq(pc_cache_policy(c), PC_TEST_POLICY);
    cr_assert_null(pc_cache_policy(NULL));
    pc_destroy(c);
}

Test(semantics, frequency_policy_is_the_clock_builds_only)
{
    pc_options o = test_opts(4);
    pc_cache *c = (pc_cache *)0x1;

    o.policy = PC_POLICY_FREQUENCY;
    if (is_lru()) {
        cr_assert_eq(pc_create(&o, &c), PC_EINVAL);
        cr_assert_eq(c, (pc_cache *)0x1);
    } else {
        cr_assert_eq(pc_create(&o, &c), PC_OK);
        pc_destroy(c);
    }
    o.policy = 2;
    cr_assert_eq(pc_create(&o, &c), PC_EINVAL);
}

Test(semantics, read_fence_is_named_and_stable)
{
    const char *f = pc_read_fence();
    static const char *known[] = {"membarrier", "mfence", "locked-add",
                                  "mfence (membarrier refused)"};
    bool ok = false;

    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
        ok |= strcmp(f, known[i]) == 0;
    cr_assert(ok, "unknown read fence \"%s\"", f);
    pc_cache *c = make_cache(4);
    cr_assert_str_eq(pc_read_fence(), f, "the mode changed after pc_create");
    pc_destroy(c);
}

Test(semantics, capacity_is_reported_and_len_starts_at_zero)
{
    pc_cache *c = make_cache(7);

    cr_assert_not_null(c);
    cr_assert_eq(pc_capacity(c), 7);
    cr_assert_eq(pc_len(c), 0);
    pc_destroy(c);
}

Test(semantics, get_of_missing_key_is_a_miss)
{
    pc_cache *c = make_cache(4);
    uint64_t v = 12345;

    cr_assert_eq(get_u64(c, 1, &v), PC_NOTFOUND);
    cr_assert_eq(v, 12345, "a miss must not touch the buffer");
    pc_destroy(c);
}

Test(semantics, put_then_get_returns_the_value)
{
    pc_cache *c = make_cache(4);
    uint64_t v = 0;

    cr_assert_eq(put_u64(c, 1, 100), PC_OK);
    cr_assert_eq(get_u64(c, 1, &v), PC_OK);
    cr_assert_eq(v, 100);
    cr_assert_eq(pc_len(c), 1);
    pc_destroy(c);
}

Test(semantics, empty_value_is_a_hit_not_a_miss)
{
    pc_cache *c = make_cache(4);
    size_t n = 99;

    cr_assert_eq(pc_put(c, "k", 1, NULL, 0), PC_OK);
    cr_assert_eq(pc_get(c, "k", 1, NULL, 0, &n), PC_OK);
    cr_assert_eq(n, 0);
    pc_destroy(c);
}

Test(semantics, empty_key_is_a_valid_key)
{
    pc_cache *c = make_cache(4);
    char buf[8];
    size_t n = 0;

    cr_assert_eq(pc_put(c, NULL, 0, "v", 1), PC_OK);
    cr_assert_eq(pc_get(c, "", 0, buf, sizeof buf, &n), PC_OK);
    cr_assert_eq(n, 1);
    cr_assert_eq(buf[0], 'v');
    cr_assert_eq(pc_delete(c, NULL, 0), PC_OK);
    cr_assert_eq(pc_get(c, NULL, 0, buf, sizeof buf, &n), PC_NOTFOUND);
    pc_destroy(c);
}

Test(semantics, keys_are_compared_as_bytes_with_their_length)
{
    pc_cache *c = make_cache(8);
    char buf[4];
    size_t n;

    cr_assert_eq(pc_put(c, "a", 1, "1", 1), PC_OK);
    cr_assert_eq(pc_put(c, "a\0", 2, "2", 1), PC_OK);
    cr_assert_eq(pc_put(c, "ab", 2, "3", 1), PC_OK);
    cr_assert_eq(pc_get(c, "a", 1, buf, sizeof buf, &n), PC_OK);
    cr_assert_eq(buf[0], '1');
    cr_assert_eq(pc_get(c, "a\0", 2, buf, sizeof buf, &n), PC_OK);
    cr_assert_eq(buf[0], '2');
    cr_assert_eq(pc_get(c, "ab", 2, buf, sizeof buf, &n), PC_OK);
    cr_assert_eq(buf[0], '3');
    cr_assert_eq(pc_len(c), 3);
    pc_destroy(c);
}

Test(semantics, put_of_existing_key_replaces_and_never_evicts)
{
    pc_cache *c = make_cache(4);
    uint64_t v;

    for (uint64_t k = 0; k < 4; k++)
        cr_assert_eq(put_u64(c, k, k), PC_OK);
    for (int round = 0; round < 10; round++)
        cr_assert_eq(put_u64(c, 2, 1000 + round), PC_OK);
    cr_assert_eq(pc_len(c), 4);
    for (uint64_t k = 0; k < 4; k++) {
        cr_assert_eq(get_u64(c, k, &v), PC_OK, "key %lu evicted", k);
        cr_assert_eq(v, k == 2 ? 1009 : k);
    }
    pc_destroy(c);
}

Test(semantics, put_of_new_key_at_capacity_evicts_exactly_one)
{
    pc_cache *c = make_cache(16);
    int present = 0;

    for (uint64_t k = 0; k < 16; k++)
        put_u64(c, k, k);
    cr_assert_eq(put_u64(c, 100, 100), PC_OK);
    cr_assert_eq(pc_len(c), 16);
    cr_assert_eq(get_u64(c, 100, NULL), PC_OK);
    for (uint64_t k = 0; k < 16; k++)
        present += get_u64(c, k, NULL) == PC_OK;
    cr_assert_eq(present, 15);
    pc_destroy(c);
}

Test(semantics, len_never_exceeds_capacity)
{
    pc_cache *c = make_cache(100);

    for (uint64_t k = 0; k < 10000; k++) {
        put_u64(c, mix64(k), k);
        cr_assert_leq(pc_len(c), 100);
    }
    cr_assert_eq(pc_len(c), 100);
    pc_destroy(c);
}

Test(semantics, sharded_cache_holds_exactly_its_capacity)
{
    pc_options o = test_opts(50000);
    pc_cache *c;
    size_t present = 0;

    cr_assert_eq(pc_create(&o, &c), PC_OK);
    for (uint64_t k = 0; k < 200000; k++)
        put_u64(c, k, k);
    cr_assert_eq(pc_len(c), 50000);
    for (uint64_t k = 0; k < 200000; k++)
        present += get_u64(c, k, NULL) == PC_OK;
    cr_assert_eq(present, 50000);
    pc_destroy(c);
}

Test(semantics, lru_evicts_the_least_recently_used)
{
    pc_cache *c = make_cache(3);

    if (!is_lru()) {
        /* CLOCK's equivalent: a read sets the reference bit, which saves the
         * entry from the next sweep; the first clear bit is evicted. (The
         * frequency policy keeps a key on probation unless it is read
         * twice there.) */
        put_u64(c, 1, 1);
        put_u64(c, 2, 2);
        put_u64(c, 3, 3);
        get_u64(c, 1, NULL);
        if (is_frequency())
            get_u64(c, 1, NULL);
        put_u64(c, 4, 4);
        cr_assert_eq(get_u64(c, 1, NULL), PC_OK);
        cr_assert_eq(get_u64(c, 2, NULL), PC_NOTFOUND);
        pc_destroy(c);
        return;
    }
    put_u64(c, 1, 1);
    put_u64(c, 2, 2);
    put_u64(c, 3, 3);
    get_u64(c, 1, NULL); /* order, oldest first: 2 3 1 */
    put_u64(c, 4, 4);    /* evicts 2 */
    cr_assert_eq(get_u64(c, 2, NULL), PC_NOTFOUND);
    put_u64(c, 3, 33); /* replace promotes: 1 4 3 */
    put_u64(c, 5, 5);  /* evicts 1 */
    cr_assert_eq(get_u64(c, 1, NULL), PC_NOTFOUND);
    cr_assert_eq(get_u64(c, 4, NULL), PC_OK);
    cr_assert_eq(get_u64(c, 3, NULL), PC_OK);
    cr_assert_eq(get_u64(c, 5, NULL), PC_OK);
    pc_destroy(c);
}

Test(semantics, small_buffer_gives_erange_length_and_untouched_buffer)
{
    pc_cache *c = make_cache(4);
    char buf[4] = {'x', 'x', 'x', 'x'};
    size_t n = 0;

    pc_put(c, "k", 1, "hello", 5);
    cr_assert_eq(pc_get(c, "k", 1, buf, sizeof buf, &n), PC_ERANGE);
    cr_assert_eq(n, 5);
    cr_assert_eq(memcmp(buf, "xxxx", 4), 0);
    cr_assert_eq(pc_get(c, "k", 1, NULL, 0, &n), PC_ERANGE);
    cr_assert_eq(n, 5);
    pc_destroy(c);
}

Test(semantics, erange_still_counts_as_a_use)
{
    pc_cache *c = make_cache(2);
    size_t n;

    put_u64(c, 1, 1);
    put_u64(c, 2, 2);
    /* A too-small read of key 1 must promote it (LRU) or set its bit
     * (CLOCK), so the next insert evicts key 2, not key 1. */
    cr_assert_eq(pc_get(c, &(uint64_t){1}, 8, NULL, 0, &n), PC_ERANGE);
    if (is_frequency()) /* probation: a second use promotes */
        cr_assert_eq(pc_get(c, &(uint64_t){1}, 8, NULL, 0, &n), PC_ERANGE);
    put_u64(c, 3, 3);
    cr_assert_eq(get_u64(c, 1, NULL), PC_OK);
    cr_assert_eq(get_u64(c, 2, NULL), PC_NOTFOUND);
    pc_destroy(c);
}

/* pc_get: "If the value is longer than bufcap, returns PC_ERANGE ...; this
 * still counts as a use", and pc_stats.hits counts the gets "that found the
 * key": a too-small read is one hit, never a miss (a mutation that counted
 * it as a miss passed every suite). */
Test(semantics, erange_counts_a_hit_not_a_miss)
{
    pc_cache *c = make_cache(4);
    pc_stats s;
    size_t n;

    put_u64(c, 1, 1);
    cr_assert_eq(pc_get(c, &(uint64_t){1}, 8, NULL, 0, &n), PC_ERANGE);
    cr_assert_eq(pc_get(c, &(uint64_t){1}, 8, (char[4]){0}, 4, &n), PC_ERANGE);
    cr_assert_eq(pc_stats_get(c, &s), PC_OK);
    cr_assert_eq(s.hits, 2, "%lu hits", (unsigned long)s.hits);
    cr_assert_eq(s.misses, 0, "%lu misses", (unsigned long)s.misses);
    pc_destroy(c);
}

Test(semantics, vlen_may_be_null)
{
    pc_cache *c = make_cache(2);
    uint64_t v = 0;

    put_u64(c, 1, 7);
    cr_assert_eq(pc_get(c, &(uint64_t){1}, 8, &v, sizeof v, NULL), PC_OK);
    cr_assert_eq(v, 7);
    pc_destroy(c);
}

Test(semantics, delete_removes_present_and_reports_absent)
{
    pc_cache *c = make_cache(4);

    put_u64(c, 1, 1);
    put_u64(c, 2, 2);
    cr_assert_eq(pc_delete(c, &(uint64_t){1}, 8), PC_OK);
    cr_assert_eq(pc_delete(c, &(uint64_t){1}, 8), PC_NOTFOUND);
    cr_assert_eq(get_u64(c, 1, NULL), PC_NOTFOUND);
    cr_assert_eq(get_u64(c, 2, NULL), PC_OK);
    cr_assert_eq(pc_len(c), 1);
    pc_destroy(c);
}

Test(semantics, delete_frees_room_without_eviction)
{
    pc_cache *c = make_cache(3);

    for (uint64_t k = 1; k <= 3; k++)
        put_u64(c, k, k);
    pc_delete(c, &(uint64_t){2}, 8);
    put_u64(c, 4, 4);
    cr_assert_eq(pc_len(c), 3);
    cr_assert_eq(get_u64(c, 1, NULL), PC_OK);
    cr_assert_eq(get_u64(c, 3, NULL), PC_OK);
    cr_assert_eq(get_u64(c, 4, NULL), PC_OK);
    pc_destroy(c);
}

Test(semantics, clear_empties_and_cache_stays_usable)
{
    pc_cache *c = make_cache(5000);

    for (uint64_t k = 0; k < 5000; k++)
        put_u64(c, k, k);
    pc_clear(c);
    cr_assert_eq(pc_len(c), 0);
    for (uint64_t k = 0; k < 5000; k++)
        cr_assert_eq(get_u64(c, k, NULL), PC_NOTFOUND);
    for (uint64_t k = 0; k < 100; k++)
        cr_assert_eq(put_u64(c, k, k + 1), PC_OK);
    cr_assert_eq(pc_len(c), 100);
    pc_destroy(c);
}

Test(semantics, large_keys_and_values_round_trip)
{
    pc_cache *c = make_cache(4);
    size_t vn = 1 << 20, n = 0;
    unsigned char *key = malloc(PC_KEY_MAX), *val = malloc(vn),
                  *out = malloc(vn);

    for (size_t i = 0; i < PC_KEY_MAX; i++)
        key[i] = (unsigned char)(i * 7);
    for (size_t i = 0; i < vn; i++)
        val[i] = (unsigned char)(i * 13);
    cr_assert_eq(pc_put(c, key, PC_KEY_MAX, val, vn), PC_OK);
    cr_assert_eq(pc_get(c, key, PC_KEY_MAX, out, vn, &n), PC_OK);
    cr_assert_eq(n, vn);
    cr_assert_eq(memcmp(out, val, vn), 0);
    key[PC_KEY_MAX - 1] ^= 1;
    cr_assert_eq(pc_get(c, key, PC_KEY_MAX, out, vn, &n), PC_NOTFOUND);
    free(key);
    free(val);
    free(out);
    pc_destroy(c);
}

Test(semantics, statistics_add_up)
{
    pc_cache *c = make_cache(2);
    pc_stats s;

    put_u64(c, 1, 1);
    put_u64(c, 2, 2);
    put_u64(c, 2, 3);                 /* replace */
    get_u64(c, 1, NULL);              /* hit */
    get_u64(c, 9, NULL);              /* miss */
    put_u64(c, 3, 3);                 /* evicts one */
    pc_delete(c, &(uint64_t){3}, 8);  /* delete */
    pc_delete(c, &(uint64_t){42}, 8); /* absent: not counted */
    cr_assert_eq(pc_stats_get(c, &s), PC_OK);
    cr_assert_eq(s.hits, 1);
    cr_assert_eq(s.misses, 1);
    cr_assert_eq(s.puts, 4);
    cr_assert_eq(s.evictions, 1);
    cr_assert_eq(s.deletes, 1);
    cr_assert_eq(s.loader_calls, 0);
    pc_destroy(c);
}

Test(semantics, fixed_seed_and_explicit_shards_are_accepted)
{
    pc_options o = test_opts(10000);

    o.shards = 3;
    o.hash_seed = 42;
    pc_cache *c;

    cr_assert_eq(pc_create(&o, &c), PC_OK);
    for (uint64_t k = 0; k < 20000; k++)
        put_u64(c, k, k);
    cr_assert_eq(pc_len(c), 10000);
    pc_destroy(c);
}

Test(semantics, strerror_names_every_status)
{
    pc_status all[] = {PC_OK, PC_NOTFOUND, PC_EINVAL, PC_ENOMEM, PC_ERANGE};

    for (size_t i = 0; i < 5; i++) {
        cr_assert_not_null(pc_strerror(all[i]));
        for (size_t j = 0; j < i; j++)
            cr_assert_str_neq(pc_strerror(all[i]), pc_strerror(all[j]));
    }
    cr_assert_str_eq(pc_strerror((pc_status)77), "unknown status");
}

/* A key is its bytes and its length: a stored key is never found by a
 * lookup of its own prefix, nor a prefix by a lookup of a longer key. In a
 * cache of one shard and a capacity of three, the index has one chunk, so
 * every pair below shares its home and one pair in 255 shares its tag too:
 * only the key comparison (its lengths) tells them apart. Lengths 8 (the
 * 8-byte fast path) and others, each way round. */
Test(semantics, a_key_never_matches_its_prefix_or_an_extension)
{
    static const size_t lens[] = {1, 3, 7, 8, 15, 40};
    pc_options o = test_opts(3);
    unsigned char k[48], v[8] = {0};
    size_t vn;
    pc_cache *c;

    o.shards = 1;
    o.hash_seed = 0x5eed;
    cr_assert_eq(pc_create(&o, &c), PC_OK);
    for (size_t l = 0; l < sizeof lens / sizeof lens[0]; l++) {
        size_t n = lens[l];

        for (uint32_t i = 0; i < 3000; i++) {
            memset(k, 'k', sizeof k);
            memcpy(k, &i, n < sizeof i ? n : sizeof i);
            k[n] = (unsigned char)(i * 7 + 1);
            /* The longer key stored, its prefix looked up, and back. */
            cr_assert_eq(pc_put(c, k, n + 1, "L", 1), PC_OK);
            cr_assert_eq(pc_get(c, k, n, v, sizeof v, &vn), PC_NOTFOUND,
                         "a %zu-byte prefix (i %u) found its extension", n, i);
            cr_assert_eq(pc_delete(c, k, n + 1), PC_OK);
            cr_assert_eq(pc_put(c, k, n, "S", 1), PC_OK);
            cr_assert_eq(pc_get(c, k, n + 1, v, sizeof v, &vn), PC_NOTFOUND,
                         "a %zu-byte extension (i %u) found its prefix", n + 1,
                         i);
            cr_assert_eq(pc_delete(c, k, n), PC_OK);
        }
    }
    cr_assert_eq(pc_len(c), 0);
    pc_destroy(c);
}
