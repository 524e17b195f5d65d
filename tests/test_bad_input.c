/*
 * Bad input and allocation failure: every invalid call returns its status,
 * touches none of its outputs and leaves the cache exactly as it was.
 */
#include <criterion/criterion.h>
#include <pthread.h>

#include "alloc.h"
#include "testlib.h"

#define N 32

static pc_cache *populated(void)
{
    pc_cache *c = make_cache(N);

    for (uint64_t k = 0; k < N; k++)
        put_u64(c, k, k * 10);
    return c;
}

/* The cache still holds exactly keys 0..N-1 with values k*10, and no call
 * beyond the ones counted in `puts` was recorded. */
static void assert_unchanged(pc_cache *c, uint64_t puts)
{
    pc_stats s;

    cr_assert_eq(pc_len(c), N);
    cr_assert_eq(pc_bytes(c), N * 16, "bytes changed: %llu",
                 (unsigned long long)pc_bytes(c));
    cr_assert_eq(pc_capacity(c), N);
    cr_assert_eq(pc_stats_get(c, &s), PC_OK);
    cr_assert_eq(s.puts, puts);
    cr_assert_eq(s.evictions, 0);
    cr_assert_eq(s.deletes, 0);
    for (uint64_t k = 0; k < N; k++) {
        uint64_t v = 0;

        cr_assert_eq(get_u64(c, k, &v), PC_OK);
        cr_assert_eq(v, k * 10);
    }
}

Test(bad_input, create_refuses_null_and_zero_capacity)
{
    pc_options o = test_opts(0);
    pc_cache *c = (pc_cache *)0x1;

    cr_assert_eq(pc_create(NULL, &c), PC_EINVAL);
    cr_assert_eq(c, (pc_cache *)0x1, "out must be untouched");
    cr_assert_eq(pc_create(&o, &c), PC_EINVAL);
    cr_assert_eq(c, (pc_cache *)0x1);
    o.capacity = 10;
    cr_assert_eq(pc_create(&o, NULL), PC_EINVAL);
    o.shards = 4097;
    cr_assert_eq(pc_create(&o, &c), PC_EINVAL);
    cr_assert_eq(c, (pc_cache *)0x1);
    o.shards = 0;
    o.capacity = PC_CAPACITY_MAX + 1;
    cr_assert_eq(pc_create(&o, &c), PC_EINVAL);
    o.capacity = SIZE_MAX;
    cr_assert_eq(pc_create(&o, &c), PC_EINVAL);
    cr_assert_eq(c, (pc_cache *)0x1);
}

/* pc_create: PC_EINVAL for "opts->shards > 4096": 4096 itself is the
 * largest explicit shard count, and a cache made with it works (a
 * mutation that refused 4096 passed every suite). */
Test(bad_input, create_accepts_the_largest_shard_count)
{
    pc_options o = test_opts(8192);
    pc_cache *c = NULL;
    uint64_t v = 0;

    o.shards = 4096;
    cr_assert_eq(pc_create(&o, &c), PC_OK);
    cr_assert_not_null(c);
    for (uint64_t k = 0; k < 100; k++)
        cr_assert_eq(put_u64(c, k, k + 1), PC_OK);
    cr_assert_eq(pc_len(c), 100);
    cr_assert_eq(get_u64(c, 7, &v), PC_OK);
    cr_assert_eq(v, 8);
    pc_destroy(c);
}

/* pc_create: "a capacity up to PC_CAPACITY_MAX entries", each shard's
 * share within a shard's limit: clock's 4096 shards share PC_CAPACITY_MAX
 * (2^28 entries each, under 2^32 - 3), while a frequency shard (2^26 - 1)
 * and the exact-LRU build (16 x 125,829,120) cannot hold their share; and
 * pc_set_capacity takes the same limit back (a mutation that refused a
 * capacity of exactly PC_CAPACITY_MAX at create passed every suite). A
 * byte bound keeps the shards' tables small (without one, each is first
 * sized for up to 65,536 entries: 5 GB). */
Test(bad_input, create_takes_a_capacity_of_exactly_capacity_max)
{
    pc_options o = test_opts(PC_CAPACITY_MAX);
    pc_cache *c = (pc_cache *)0x1;
    bool fits = !is_lru() && !is_frequency();

    o.shards = 4096;
    o.max_bytes = 1u << 20; /* index tables sized by the entries held */
    cr_assert_eq(pc_create(&o, &c), fits ? PC_OK : PC_EINVAL);
    if (!fits) {
        cr_assert_eq(c, (pc_cache *)0x1);
        return;
    }
    cr_assert_eq(pc_capacity(c), PC_CAPACITY_MAX);
    for (uint64_t k = 0; k < 100; k++)
        cr_assert_eq(put_u64(c, k, k), PC_OK);
    cr_assert_eq(pc_len(c), 100);
    cr_assert_eq(pc_set_capacity(c, 1000), PC_OK);
    cr_assert_eq(pc_set_capacity(c, PC_CAPACITY_MAX), PC_OK);
    cr_assert_eq(pc_capacity(c), PC_CAPACITY_MAX);
    cr_assert_eq(pc_len(c), 100);
    pc_destroy(c);
}

Test(bad_input, null_cache_is_refused_or_a_no_op)
{
    size_t n = 5;
    pc_stats s;

    cr_assert_eq(pc_get(NULL, "k", 1, NULL, 0, &n), PC_EINVAL);
    cr_assert_eq(n, 5);
    cr_assert_eq(pc_put(NULL, "k", 1, "v", 1), PC_EINVAL);
    cr_assert_eq(pc_delete(NULL, "k", 1), PC_EINVAL);
    cr_assert_eq(pc_len(NULL), 0);
    cr_assert_eq(pc_capacity(NULL), 0);
    cr_assert_eq(pc_stats_get(NULL, &s), PC_EINVAL);
    pc_clear(NULL);
    pc_reclaim(NULL);
    pc_destroy(NULL);
}

Test(bad_input, bad_get_arguments_change_nothing)
{
    pc_cache *c = populated();
    char big[PC_KEY_MAX + 1] = {0};
    size_t n = 77;

    cr_assert_eq(pc_get(c, NULL, 8, NULL, 0, &n), PC_EINVAL);
    cr_assert_eq(pc_get(c, big, PC_KEY_MAX + 1, NULL, 0, &n), PC_EINVAL);
    cr_assert_eq(pc_get(c, &(uint64_t){1}, 8, NULL, 8, &n), PC_EINVAL);
    cr_assert_eq(n, 77, "vlen must be untouched on EINVAL");
    assert_unchanged(c, N);
    pc_destroy(c);
}

Test(bad_input, bad_put_arguments_change_nothing)
{
    pc_cache *c = populated();
    static char big[PC_KEY_MAX + 1];

    cr_assert_eq(pc_put(c, NULL, 8, "v", 1), PC_EINVAL);
    cr_assert_eq(pc_put(c, big, PC_KEY_MAX + 1, "v", 1), PC_EINVAL);
    cr_assert_eq(pc_put(c, &(uint64_t){1}, 8, NULL, 8), PC_EINVAL);
    cr_assert_eq(pc_put(c, &(uint64_t){1000}, 8, NULL, 8), PC_EINVAL);
    cr_assert_eq(pc_put(c, &(uint64_t){1000}, 8, "v", PC_VALUE_MAX + 1),
                 PC_EINVAL);
    assert_unchanged(c, N);
    pc_destroy(c);
}

Test(bad_input, bad_delete_arguments_change_nothing)
{
    pc_cache *c = populated();
    static char big[PC_KEY_MAX + 1];

    cr_assert_eq(pc_delete(c, NULL, 8), PC_EINVAL);
    cr_assert_eq(pc_delete(c, big, PC_KEY_MAX + 1), PC_EINVAL);
    assert_unchanged(c, N);
    pc_destroy(c);
}

Test(bad_input, stats_refuses_null_output)
{
    pc_cache *c = populated();

    cr_assert_eq(pc_stats_get(c, NULL), PC_EINVAL);
    pc_destroy(c);
}

Test(bad_input, key_of_exactly_key_max_is_accepted)
{
    pc_cache *c = make_cache(2);
    static char key[PC_KEY_MAX];

    cr_assert_eq(pc_put(c, key, PC_KEY_MAX, "v", 1), PC_OK);
    cr_assert_eq(pc_get(c, key, PC_KEY_MAX, NULL, 0, NULL), PC_ERANGE);
    pc_destroy(c);
}

/* A built key of exactly PC_KEY_MAX bytes is a key (finish PC_OK, and a
 * cache takes it); one byte more is PC_EINVAL. One byte string of n bytes
 * (n >= 128) encodes as tag, 2 length bytes, n bytes, '#', count. */
Test(bad_input, built_key_of_exactly_key_max_is_accepted)
{
    static char arg[PC_KEY_MAX];
    pc_cache *c = make_cache(2);
    pc_key k;

    pc_key_init(&k);
    pc_key_add_bytes(&k, arg, PC_KEY_MAX - 5);
    cr_assert_eq(pc_key_finish(&k), PC_OK);
    cr_assert_eq(pc_key_len(&k), PC_KEY_MAX);
    cr_assert_eq(pc_put(c, pc_key_data(&k), pc_key_len(&k), "v", 1), PC_OK);
    pc_key_free(&k);

    pc_key_init(&k);
    pc_key_add_bytes(&k, arg, PC_KEY_MAX - 4);
    cr_assert_eq(pc_key_finish(&k), PC_EINVAL);
    pc_key_free(&k);
    pc_destroy(c);
}

Test(bad_input, failed_allocation_in_put_returns_enomem_and_changes_nothing)
{
    pc_cache *c = populated();

    get_u64(c, 0, NULL); /* register this thread before injecting */
    /* New key at capacity (would evict) and replacement of a present key. */
    pc__alloc_fail_after(0);
    cr_assert_eq(put_u64(c, 5000, 1), PC_ENOMEM);
    cr_assert_eq(put_u64(c, 3, 1), PC_ENOMEM);
    pc__alloc_fail_after(-1);
    assert_unchanged(c, N);
    pc_destroy(c);
}

/* An entry larger than the byte bound is refused as such, short of memory
 * too (the bound is checked before anything is allocated). */
Test(bad_input, oversized_put_is_einval_even_short_of_memory)
{
    pc_options o = test_opts(100);
    pc_cache *c;
    uint64_t k = 1;
    unsigned char big[64] = {0};

    o.max_bytes = 32;
    c = make_cache_opts(&o);
    cr_assert_not_null(c);
    cr_assert_eq(put_u64(c, 2, 2), PC_OK); /* registers this thread */
    pc__alloc_fail_after(0);
    cr_assert_eq(pc_put(c, &k, sizeof k, big, sizeof big), PC_EINVAL);
    cr_assert_eq(pc_put_ex(c, &k, sizeof k, big, 25, NULL), PC_EINVAL);
    pc__alloc_fail_after(-1);
    cr_assert_eq(pc_len(c), 1);
    cr_assert_eq(pc_bytes(c), 16);
    cr_assert_eq(pc_put(c, &k, sizeof k, big, 24), PC_OK); /* exactly fits */
    pc_destroy(c);
}

Test(bad_input, failed_allocation_in_create_returns_enomem_without_leaks)
{
    pc_options o = test_opts(100000);

    pc__alloc_track(1);
    long before = pc__alloc_live();
    for (long k = 0;; k++) {
        pc_cache *c = (pc_cache *)0x1;

        pc__alloc_fail_after(k);
        pc_status st = pc_create(&o, &c);
        pc__alloc_fail_after(-1);
        if (st == PC_OK) {
            cr_assert_gt(k, 0);
            pc_destroy(c);
            break;
        }
        cr_assert_eq(st, PC_ENOMEM);
        cr_assert_eq(c, (pc_cache *)0x1);
        cr_assert_eq(pc__alloc_live(), before, "leak after failing alloc %ld",
                     k);
    }
    cr_assert_eq(pc__alloc_live(), before);
    pc__alloc_track(0);
}

struct first_get {
    pc_cache *c;
    pc_status st;
};

static void *first_get_run(void *arg)
{
    struct first_get *fg = arg;

    fg->st = get_u64(fg->c, 1, NULL);
    return NULL;
}

Test(bad_input, failed_first_registration_returns_enomem)
{
    pc_cache *c = populated(); /* the main thread registered while filling */
    struct first_get fg = {.c = c, .st = PC_OK};
    pthread_t th;
    pc_status st;

    /* A new thread's first get must register a record, which allocates. */
    pc__alloc_fail_after(0);
    pthread_create(&th, NULL, first_get_run, &fg);
    pthread_join(th, NULL);
    pc__alloc_fail_after(-1);
    st = fg.st;
    cr_assert_eq(st, PC_ENOMEM);
    assert_unchanged(c, N);
    pc_destroy(c);
}

/* ---- calls the tests above do not make (API audit) ---- */

/* Counters that a refused call must not move (a refused get, pinned read,
 * get-or-load or memo call counts no hit, miss or load). */
struct counts {
    uint64_t hits, misses, loader_calls, loader_errors;
};

static struct counts counts_of(pc_cache *c)
{
    pc_stats s;

    cr_assert_eq(pc_stats_get(c, &s), PC_OK);
    return (struct counts){s.hits, s.misses, s.loader_calls, s.loader_errors};
}

static void assert_counts(pc_cache *c, struct counts want)
{
    struct counts got = counts_of(c);

    cr_assert_eq(got.hits, want.hits, "hits moved");
    cr_assert_eq(got.misses, want.misses, "misses moved");
    cr_assert_eq(got.loader_calls, want.loader_calls, "loader_calls moved");
    cr_assert_eq(got.loader_errors, want.loader_errors, "loader_errors moved");
}

static int loads;

static int count_load(void *ctx, const void *key, size_t klen, pc_sink *out)
{
    (void)ctx;
    (void)key;
    (void)klen;
    loads++;
    return pc_sink_set(out, "abc", 3) == PC_OK ? 0 : 99;
}

Test(bad_input, create_refuses_bad_policy_and_oversized_shares)
{
    pc_options o = test_opts(10);
    pc_cache *c = (pc_cache *)0x1;

    o.policy = PC_POLICY_FREQUENCY + 1;
    cr_assert_eq(pc_create(&o, &c), PC_EINVAL);
    o.policy = UINT32_MAX;
    cr_assert_eq(pc_create(&o, &c), PC_EINVAL);
    cr_assert_eq(c, (pc_cache *)0x1);
    o = test_opts(10);
    if (is_lru()) {
        o.policy = PC_POLICY_FREQUENCY; /* the CLOCK build's policy */
        cr_assert_eq(pc_create(&o, &c), PC_EINVAL);
        /* 16 index tables of 125,829,120 entries at most */
        o = test_opts((size_t)16 * 125829120 + 1);
    } else {
        /* One shard cannot hold 2^32 - 2 (clock) or 2^26 (frequency). */
        o = test_opts(is_frequency() ? (size_t)1 << 26 : ((size_t)1 << 32) - 2);
        o.shards = 1;
    }
    cr_assert_eq(pc_create(&o, &c), PC_EINVAL);
    cr_assert_eq(c, (pc_cache *)0x1, "out must be untouched");
}

Test(bad_input, null_cache_is_refused_by_every_entry_point)
{
    pc_put_args a = {0};
    pc_pin pin = {0}, keep;
    pc_backend be = {NULL, (void *)0x2};
    char buf[8];
    size_t n = 5;
    int le = 7;

    memset(&pin, 0x5a, sizeof pin);
    keep = pin;
    cr_assert_eq(pc_put_ex(NULL, "k", 1, "v", 1, &a), PC_EINVAL);
    cr_assert_eq(pc_put_ex(NULL, "k", 1, "v", 1, NULL), PC_EINVAL);
    cr_assert_eq(pc_get_pinned(NULL, "k", 1, &pin), PC_EINVAL);
    cr_assert(memcmp(&pin, &keep, sizeof pin) == 0, "pin must be untouched");
    cr_assert_eq(pc_get_or_load(NULL, "k", 1, count_load, NULL, buf, sizeof buf,
                                &n, &le),
                 PC_EINVAL);
    cr_assert_eq(pc_get_or_load_ex(NULL, "k", 1, count_load, NULL, buf,
                                   sizeof buf, &n, &le, NULL),
                 PC_EINVAL);
    cr_assert_eq(loads, 0, "the loader ran");
    cr_assert_eq(n, 5);
    cr_assert_eq(le, 7);
    cr_assert_eq(pc_set_capacity(NULL, 10), PC_EINVAL);
    cr_assert_eq(pc_set_max_bytes(NULL, 10), PC_EINVAL);
    cr_assert_eq(pc_expire(NULL), 0);
    cr_assert_eq(pc_bytes(NULL), 0);
    cr_assert_null(pc_cache_policy(NULL));
    cr_assert_eq(pc_backend_from_cache(NULL, &be), PC_EINVAL);
    cr_assert(be.ops == NULL && be.self == (void *)0x2);
    cr_assert_str_eq(pc_strerror((pc_status)42), "unknown status");
    cr_assert_str_eq(pc_strerror((pc_status)-42), "unknown status");
}

Test(bad_input, lengths_that_overflow_are_refused)
{
    pc_cache *c = populated();
    struct counts before = counts_of(c);
    size_t n = 77;

    cr_assert_eq(pc_get(c, "k", SIZE_MAX, NULL, 0, &n), PC_EINVAL);
    cr_assert_eq(pc_put(c, "k", SIZE_MAX, "v", 1), PC_EINVAL);
    cr_assert_eq(pc_put(c, "k", 1, "v", SIZE_MAX), PC_EINVAL);
    cr_assert_eq(pc_put_ex(c, "k", 1, NULL, SIZE_MAX, NULL), PC_EINVAL);
    cr_assert_eq(pc_delete(c, "k", SIZE_MAX), PC_EINVAL);
    cr_assert_eq(n, 77);
    assert_counts(c, before);
    assert_unchanged(c, N);
    pc_destroy(c);
}

Test(bad_input, refused_gets_count_no_hit_or_miss)
{
    pc_cache *c = populated();
    struct counts before = counts_of(c);
    static char big[PC_KEY_MAX + 1];
    char buf[8];
    size_t n = 77;

    cr_assert_eq(pc_get(c, NULL, 8, buf, sizeof buf, &n), PC_EINVAL);
    cr_assert_eq(pc_get(c, big, sizeof big, buf, sizeof buf, &n), PC_EINVAL);
    cr_assert_eq(pc_get(c, &(uint64_t){1}, 8, NULL, 8, &n), PC_EINVAL);
    cr_assert_eq(n, 77);
    assert_counts(c, before);
    pc_destroy(c);
}

Test(bad_input, bad_put_ex_flags_and_refused_conditions_change_nothing)
{
    pc_cache *c = populated();
    static const unsigned int bad[] = {PC_PUT_IF_ABSENT | PC_PUT_IF_PRESENT,
                                       4,
                                       PC_PUT_IF_ABSENT | 8,
                                       PC_PUT_IF_PRESENT | 0x100,
                                       0x80000000u,
                                       UINT32_MAX};
    static char big[PC_KEY_MAX + 1];
    uint64_t present = 1, absent = 1000, v = 5;

    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        pc_put_args a = {.ttl_ms = 10, .flags = bad[i]};

        cr_assert_eq(pc_put_ex(c, &present, 8, &v, 8, &a), PC_EINVAL,
                     "flags %#x", bad[i]);
        cr_assert_eq(pc_put_ex(c, &absent, 8, &v, 8, &a), PC_EINVAL,
                     "flags %#x", bad[i]);
    }
    {
        pc_put_args a = {.flags = PC_PUT_IF_ABSENT};

        cr_assert_eq(pc_put_ex(c, &present, 8, &v, 8, &a), PC_EXISTS);
        a.flags = PC_PUT_IF_PRESENT;
        cr_assert_eq(pc_put_ex(c, &absent, 8, &v, 8, &a), PC_NOTFOUND);
        a.flags = 0;
        cr_assert_eq(pc_put_ex(c, NULL, 8, &v, 8, &a), PC_EINVAL);
        cr_assert_eq(pc_put_ex(c, big, sizeof big, &v, 8, &a), PC_EINVAL);
        cr_assert_eq(pc_put_ex(c, &present, 8, NULL, 8, &a), PC_EINVAL);
        cr_assert_eq(pc_put_ex(c, &absent, 8, &v, PC_VALUE_MAX + 1, &a),
                     PC_EINVAL);
    }
    assert_unchanged(c, N);
    pc_destroy(c);
}

/* pc_options.now_ms: the ticker "starts with the first put or load with a
 * time to live in a cache on the default clock (... stored or refused by
 * its conditions alike ...)": a put refused as invalid (PC_EINVAL) is
 * neither, and starts none; one refused by its condition does (a mutation
 * that fixed the cache's clock before checking the flags, starting the
 * ticker for an invalid put, passed every suite; and one that did so
 * between the flags' check and the byte bound's). The ticker names its
 * thread before pc_put_ex returns (ticker.c). */
Test(bad_input, an_invalid_put_with_a_time_to_live_starts_no_ticker)
{
    pc_cache *c = make_cache(8); /* the default clock */
    pc_put_args a = {.ttl_ms = 60000};
    uint64_t k = 1, v = 1;
    static const unsigned int bad[] = {PC_PUT_IF_ABSENT | PC_PUT_IF_PRESENT, 4,
                                       UINT32_MAX};

    cr_assert_eq(test_ticker_threads(NULL), 0);
    cr_assert_eq(put_u64(c, 1, 10), PC_OK); /* no time to live: no ticker */
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        a.flags = bad[i];
        cr_assert_eq(pc_put_ex(c, &k, sizeof k, &v, sizeof v, &a), PC_EINVAL);
    }
    cr_assert_eq(test_ticker_threads(NULL), 0,
                 "an invalid put started the ticker");
    {
        pc_options o = test_opts(8);
        pc_cache *b;
        static char big[100];

        o.max_bytes = 64;
        b = make_cache_opts(&o);
        a.flags = 0;
        cr_assert_eq(pc_put_ex(b, &k, sizeof k, big, sizeof big, &a),
                     PC_EINVAL); /* larger than the bound by itself */
        cr_assert_eq(test_ticker_threads(NULL), 0,
                     "a put larger than the byte bound started the ticker");
        pc_destroy(b);
    }
    a.flags = PC_PUT_IF_ABSENT; /* key 1 is present */
    cr_assert_eq(pc_put_ex(c, &k, sizeof k, &v, sizeof v, &a), PC_EXISTS);
    cr_assert_eq(test_ticker_threads(NULL), 1);
    pc_destroy(c);
}

Test(bad_input, bad_capacity_changes_nothing)
{
    pc_cache *c = populated();

    cr_assert_eq(pc_set_capacity(c, 0), PC_EINVAL);
    cr_assert_eq(pc_set_capacity(c, PC_CAPACITY_MAX + 1), PC_EINVAL);
    cr_assert_eq(pc_set_capacity(c, SIZE_MAX), PC_EINVAL);
    /* Within PC_CAPACITY_MAX but beyond what this cache's one shard (clock:
     * 2^32 - 3, frequency: 2^26 - 1) or one index table (lru, created
     * below about 2,000 entries: 125,829,120) can hold. */
    cr_assert_eq(pc_set_capacity(c, (size_t)1 << 33), PC_EINVAL);
    assert_unchanged(c, N);
    pc_destroy(c);
}

Test(bad_input, bad_pinned_reads_pin_nothing_and_change_nothing)
{
    pc_cache *c = populated();
    static char big[PC_KEY_MAX + 1];
    pc_pin pin, keep, held, copy, zero = {0};
    struct counts before;
    pc_stats s;

    memset(&pin, 0x5a, sizeof pin);
    keep = pin;
    before = counts_of(c);
    cr_assert_eq(pc_get_pinned(c, "k", 1, NULL), PC_EINVAL);
    cr_assert_eq(pc_get_pinned(c, NULL, 8, &pin), PC_EINVAL);
    cr_assert_eq(pc_get_pinned(c, big, sizeof big, &pin), PC_EINVAL);
    cr_assert(memcmp(&pin, &keep, sizeof pin) == 0, "pin must be untouched");
    assert_counts(c, before);
    cr_assert_eq(pc_get_pinned(c, &(uint64_t){1000}, 8, &pin), PC_NOTFOUND);
    cr_assert(memcmp(&pin, &keep, sizeof pin) == 0, "pin must be untouched");
    before.misses++;
    assert_counts(c, before);

    /* NULL, a zeroed pin, a released pin and a copy of one: no-ops. */
    pc_unpin(NULL);
    pc_unpin(&zero);
    cr_assert_eq(pc_get_pinned(c, &(uint64_t){3}, 8, &held), PC_OK);
    copy = held;
    pc_unpin(&held);
    cr_assert_null(held.value);
    pc_unpin(&held);
    pc_unpin(&copy);
    cr_assert_eq(pc_stats_get(c, &s), PC_OK);
    cr_assert_eq(s.pending, 0);
    assert_unchanged(c, N);
    pc_destroy(c);
}

Test(bad_input, bad_get_or_load_arguments_run_no_loader_and_change_nothing)
{
    pc_cache *c = populated();
    static char big[PC_KEY_MAX + 1];
    pc_load_args la = {.ttl_ms = 5};
    struct counts before = counts_of(c);
    char buf[8];
    size_t n = 77;
    int le = 7;

    loads = 0;
    cr_assert_eq(
        pc_get_or_load(c, "k", 1, NULL, NULL, buf, sizeof buf, &n, &le),
        PC_EINVAL);
    cr_assert_eq(
        pc_get_or_load(c, NULL, 1, count_load, NULL, buf, sizeof buf, &n, &le),
        PC_EINVAL);
    cr_assert_eq(pc_get_or_load(c, big, sizeof big, count_load, NULL, buf,
                                sizeof buf, &n, &le),
                 PC_EINVAL);
    cr_assert_eq(pc_get_or_load(c, "k", 1, count_load, NULL, NULL, 8, &n, &le),
                 PC_EINVAL);
    cr_assert_eq(
        pc_get_or_load_ex(c, "k", 1, NULL, NULL, buf, sizeof buf, &n, &le, &la),
        PC_EINVAL);
    cr_assert_eq(pc_get_or_load_ex(c, "k", SIZE_MAX, count_load, NULL, buf,
                                   sizeof buf, &n, &le, &la),
                 PC_EINVAL);
    cr_assert_eq(loads, 0, "the loader ran");
    cr_assert_eq(n, 77);
    cr_assert_eq(le, 7);
    assert_counts(c, before);
    assert_unchanged(c, N);
    pc_destroy(c);
}

static pc_status sink_st[5];

static int bad_sink_load(void *ctx, const void *key, size_t klen, pc_sink *out)
{
    (void)ctx;
    (void)key;
    (void)klen;
    sink_st[0] = pc_sink_set(out, "good", 4);
    sink_st[1] = pc_sink_set(NULL, "x", 1);
    sink_st[2] = pc_sink_set(out, NULL, 1);
    sink_st[3] = pc_sink_set(out, "x", PC_VALUE_MAX + 1);
    sink_st[4] = pc_sink_set(out, "x", SIZE_MAX);
    return 0;
}

/* A refused pc_sink_set keeps the value the sink held. */
Test(bad_input, bad_sink_set_keeps_the_value)
{
    pc_cache *c = make_cache(4);
    char buf[8] = {0};
    size_t n = 0;

    cr_assert_eq(pc_get_or_load(c, "k", 1, bad_sink_load, NULL, buf, sizeof buf,
                                &n, NULL),
                 PC_OK);
    cr_assert_eq(sink_st[0], PC_OK);
    for (int i = 1; i < 5; i++)
        cr_assert_eq(sink_st[i], PC_EINVAL, "call %d", i);
    cr_assert_eq(n, 4);
    cr_assert(memcmp(buf, "good", 4) == 0);
    memset(buf, 0, sizeof buf);
    cr_assert_eq(pc_get(c, "k", 1, buf, sizeof buf, &n), PC_OK);
    cr_assert(memcmp(buf, "good", 4) == 0);
    pc_destroy(c);
}

/* pc_memo_create refusals take nothing over (the cache stays usable and
 * unchanged) and leave *out untouched. */
Test(bad_input, bad_memo_create_takes_nothing_over)
{
    pc_cache *c = populated();
    pc_backend cb, be;
    pc_backend_ops ops;
    pc_memo_options mo = {.ttl_ms = 5};
    pc_memo *m = (pc_memo *)0x1;

    cr_assert_eq(pc_backend_from_cache(c, NULL), PC_EINVAL);
    cr_assert_eq(pc_backend_from_cache(c, &cb), PC_OK);
    cr_assert_eq(pc_memo_create(NULL, &m), PC_EINVAL);
    cr_assert_eq(pc_memo_create(&cb, NULL), PC_EINVAL);
    cr_assert_eq(pc_memo_create_ex(&cb, &mo, NULL), PC_EINVAL);
    be = (pc_backend){NULL, c};
    cr_assert_eq(pc_memo_create(&be, &m), PC_EINVAL);
    ops = *cb.ops;
    be.ops = &ops;
    ops.size = offsetof(pc_backend_ops, destroy); /* before the first version */
    cr_assert_eq(pc_memo_create(&be, &m), PC_EINVAL);
    ops = *cb.ops;
    ops.get = NULL;
    cr_assert_eq(pc_memo_create(&be, &m), PC_EINVAL);
    ops = *cb.ops;
    ops.put = NULL;
    cr_assert_eq(pc_memo_create(&be, &m), PC_EINVAL);
    ops = *cb.ops;
    ops.del = NULL;
    cr_assert_eq(pc_memo_create(&be, &m), PC_EINVAL);
    ops = *cb.ops;
    ops.len = NULL;
    cr_assert_eq(pc_memo_create(&be, &m), PC_EINVAL);
    /* A ttl needs put_ex: absent, or not covered by size. */
    ops = *cb.ops;
    ops.put_ex = NULL;
    cr_assert_eq(pc_memo_create_ex(&be, &mo, &m), PC_EINVAL);
    ops = *cb.ops;
    ops.size = offsetof(pc_backend_ops, put_ex);
    cr_assert_eq(pc_memo_create_ex(&be, &mo, &m), PC_EINVAL);
    cr_assert_eq(m, (pc_memo *)0x1, "out must be untouched");
    assert_unchanged(c, N);
    pc_destroy(c);
}

Test(bad_input, bad_memo_arguments_change_nothing)
{
    pc_cache *c = populated(), *c2 = make_cache(2);
    static char big[PC_KEY_MAX + 1];
    pc_backend cb, cb2;
    pc_memo *m, *m2;
    pc_flight *lead = (pc_flight *)0x1;
    pc_stats ms;
    char buf[8];
    size_t n = 77;
    int le = 7;

    cr_assert_eq(pc_backend_from_cache(c, &cb), PC_OK);
    cr_assert_eq(pc_memo_create(&cb, &m), PC_OK);
    cr_assert_eq(pc_backend_from_cache(c2, &cb2), PC_OK);
    cr_assert_eq(pc_memo_create(&cb2, &m2), PC_OK);
    loads = 0;
    cr_assert_eq(
        pc_memo_call(NULL, "k", 1, count_load, NULL, buf, sizeof buf, &n, &le),
        PC_EINVAL);
    cr_assert_eq(pc_memo_call(m, "k", 1, NULL, NULL, buf, sizeof buf, &n, &le),
                 PC_EINVAL);
    cr_assert_eq(
        pc_memo_call(m, NULL, 1, count_load, NULL, buf, sizeof buf, &n, &le),
        PC_EINVAL);
    cr_assert_eq(pc_memo_call(m, big, sizeof big, count_load, NULL, buf,
                              sizeof buf, &n, &le),
                 PC_EINVAL);
    cr_assert_eq(pc_memo_call(m, "k", 1, count_load, NULL, NULL, 8, &n, &le),
                 PC_EINVAL);
    cr_assert_eq(pc_memo_begin(NULL, "k", 1, buf, sizeof buf, &n, &le, &lead),
                 PC_EINVAL);
    cr_assert_null(lead, "a refused begin leads nothing");
    cr_assert_eq(pc_memo_begin(m, "k", 1, buf, sizeof buf, &n, &le, NULL),
                 PC_EINVAL);
    cr_assert_eq(pc_memo_begin(m, NULL, 1, buf, sizeof buf, &n, &le, &lead),
                 PC_EINVAL);
    cr_assert_eq(
        pc_memo_begin(m, big, sizeof big, buf, sizeof buf, &n, &le, &lead),
        PC_EINVAL);
    cr_assert_eq(pc_memo_begin(m, "k", 1, NULL, 8, &n, &le, &lead), PC_EINVAL);
    cr_assert_null(lead);
    cr_assert_eq(pc_memo_finish(NULL, NULL, 0, "v", 1), PC_EINVAL);
    cr_assert_eq(pc_memo_finish(m, NULL, 0, "v", 1), PC_EINVAL);
    cr_assert_eq(pc_memo_forget(NULL, "k", 1), PC_EINVAL);
    cr_assert_eq(pc_memo_forget(m, NULL, 1), PC_EINVAL);
    cr_assert_eq(pc_memo_forget(m, big, sizeof big), PC_EINVAL);
    cr_assert_eq(pc_memo_stats(NULL, &ms), PC_EINVAL);
    cr_assert_eq(pc_memo_stats(m, NULL), PC_EINVAL);
    cr_assert_eq(loads, 0, "the loader ran");
    cr_assert_eq(n, 77);
    cr_assert_eq(le, 7);
    cr_assert_eq(pc_memo_stats(m, &ms), PC_OK);
    cr_assert(ms.hits == 0 && ms.misses == 0 && ms.loader_calls == 0,
              "a refused call was counted");

    /* A lead finished through another memoizer: refused, completes
     * nothing; its own memoizer then finishes it. */
    cr_assert_eq(pc_memo_begin(m, "r", 1, buf, sizeof buf, &n, &le, &lead),
                 PC_NOTFOUND);
    cr_assert_not_null(lead);
    cr_assert_eq(pc_memo_finish(m2, lead, 0, "v", 1), PC_EINVAL);
    cr_assert_eq(pc_len(c2), 0, "stored through the wrong memoizer");
    cr_assert_eq(pc_memo_finish(m, lead, 0, "v", 1), PC_OK);
    cr_assert_eq(pc_len(c), N, "stored in the cache of the memoizer");
    cr_assert_eq(pc_get(c, "r", 1, buf, sizeof buf, &n), PC_OK);
    cr_assert_eq(pc_delete(c, "r", 1), PC_OK);

    /* A lead finished as a success with an unusable value (NULL with a
     * length, or longer than PC_VALUE_MAX) fails the load: it stores
     * nothing and hangs nobody. */
    cr_assert_eq(pc_memo_begin(m, "s", 1, buf, sizeof buf, &n, &le, &lead),
                 PC_NOTFOUND);
    cr_assert_eq(pc_memo_finish(m, lead, 0, NULL, 5), PC_ELOAD);
    cr_assert_eq(pc_memo_begin(m, "s", 1, buf, sizeof buf, &n, &le, &lead),
                 PC_NOTFOUND);
    cr_assert_eq(pc_memo_finish(m, lead, 0, "v", PC_VALUE_MAX + 1), PC_ELOAD);
    cr_assert_eq(pc_get(c, "s", 1, NULL, 0, NULL), PC_NOTFOUND);
    pc_memo_destroy(m2);
    pc_memo_destroy(m); /* destroys c */
}

Test(bad_input, bad_key_builder_arguments_are_sticky_errors)
{
    static char big[PC_KEY_MAX + 1];
    char name[PC_KEY_MAX + 2];
    pc_key k;

    /* NULL keys: no-ops, and finish refuses. */
    pc_key_init(NULL);
    pc_key_init_fn(NULL, "f");
    pc_key_add_i64(NULL, 1);
    pc_key_add_u64(NULL, 1);
    pc_key_add_f64(NULL, 1.0);
    pc_key_add_str(NULL, "s");
    pc_key_add_str(NULL, NULL);
    pc_key_add_bytes(NULL, "b", 1);
    pc_key_free(NULL);
    cr_assert_eq(pc_key_finish(NULL), PC_EINVAL);
    cr_assert_null(pc_key_data(NULL));
    cr_assert_eq(pc_key_len(NULL), 0);

    pc_key_init_fn(&k, NULL);
    pc_key_add_u64(&k, 1);
    cr_assert_eq(pc_key_finish(&k), PC_EINVAL);
    pc_key_free(&k);

    memset(name, 'n', sizeof name - 1);
    name[sizeof name - 1] = '\0';
    pc_key_init_fn(&k, name);
    cr_assert_eq(pc_key_finish(&k), PC_EINVAL);
    pc_key_free(&k);

    pc_key_init(&k);
    pc_key_add_bytes(&k, NULL, 3);
    pc_key_add_u64(&k, 1); /* the first error sticks */
    cr_assert_eq(pc_key_finish(&k), PC_EINVAL);
    pc_key_free(&k);

    pc_key_init(&k);
    pc_key_add_bytes(&k, big, sizeof big);
    cr_assert_eq(pc_key_finish(&k), PC_EINVAL);
    pc_key_free(&k);

    pc_key_init(&k);
    pc_key_add_str(&k, name);
    cr_assert_eq(pc_key_finish(&k), PC_EINVAL);
    pc_key_free(&k);

    /* Many small arguments past PC_KEY_MAX (heap-grown, then refused). */
    pc_key_init(&k);
    for (int i = 0; i < 600; i++)
        pc_key_add_u64(&k, (uint64_t)i);
    cr_assert_eq(pc_key_finish(&k), PC_EINVAL);
    pc_key_free(&k);

    /* NULL bytes with length 0 are fine. */
    pc_key_init(&k);
    pc_key_add_bytes(&k, NULL, 0);
    cr_assert_eq(pc_key_finish(&k), PC_OK);
    cr_assert_gt(pc_key_len(&k), 0);
    cr_assert_leq(pc_key_len(&k), PC_KEY_MAX);
    pc_key_free(&k);
}

/* pc_key_finish is the key's last step: a second finish returns the first
 * one's status and appends nothing (it appended a second trailer, so the
 * key changed under a call that reported PC_OK), and an add after it is
 * refused (sticky PC_EINVAL) without touching the bytes. */
Test(bad_input, finishing_a_key_twice_or_adding_after_finish_changes_nothing)
{
    pc_key k, ref;
    unsigned char bytes[64];
    size_t len;

    pc_key_init(&ref);
    pc_key_add_u64(&ref, 1);
    cr_assert_eq(pc_key_finish(&ref), PC_OK);
    len = pc_key_len(&ref);
    cr_assert_leq(len, sizeof bytes);
    memcpy(bytes, pc_key_data(&ref), len);

    pc_key_init(&k);
    pc_key_add_u64(&k, 1);
    cr_assert_eq(pc_key_finish(&k), PC_OK);
    cr_assert_eq(pc_key_finish(&k), PC_OK);
    cr_assert_eq(pc_key_len(&k), len, "a second finish changed the key");
    cr_assert(memcmp(pc_key_data(&k), bytes, len) == 0);

    pc_key_add_u64(&k, 2);
    pc_key_add_str(&k, "s");
    pc_key_add_str(&k, NULL);
    pc_key_add_bytes(&k, "b", 1);
    cr_assert_eq(pc_key_len(&k), len, "an add after finish changed the key");
    cr_assert(memcmp(pc_key_data(&k), bytes, len) == 0);
    cr_assert_eq(pc_key_finish(&k), PC_EINVAL);
    cr_assert_eq(pc_key_len(&k), len);
    pc_key_free(&k);

    /* A finish that failed stays failed. */
    pc_key_init(&k);
    pc_key_add_bytes(&k, NULL, 1);
    cr_assert_eq(pc_key_finish(&k), PC_EINVAL);
    cr_assert_eq(pc_key_finish(&k), PC_EINVAL);
    pc_key_free(&k);
    pc_key_free(&ref);
}

/* The first error of a key sticks: a key whose growth failed (PC_ENOMEM)
 * still reports PC_ENOMEM after later bad arguments (NULL bytes with a
 * length, an argument over PC_KEY_MAX), not their PC_EINVAL. (A mutation
 * that let NULL bytes overwrite an earlier error survived: every test of
 * stickiness began with the PC_EINVAL it then expected.) */
Test(bad_input, a_key_whose_growth_failed_stays_enomem)
{
    static char big[PC_KEY_MAX + 1], arg[300];
    pc_key k;

    for (int later = 0; later < 3; later++) {
        pc_key_init(&k);
        pc_key_add_i64(&k, 1);
        pc__alloc_fail_after(0);
        pc_key_add_bytes(&k, arg, sizeof arg); /* must grow: fails */
        pc__alloc_fail_after(-1);
        switch (later) {
        case 0:
            pc_key_add_bytes(&k, NULL, 3);
            break;
        case 1:
            pc_key_add_bytes(&k, big, sizeof big);
            break;
        default:
            pc_key_add_u64(&k, 2);
        }
        cr_assert_eq(pc_key_finish(&k), PC_ENOMEM, "later bad argument %d",
                     later);
        cr_assert_eq(pc_key_finish(&k), PC_ENOMEM);
        pc_key_free(&k);
    }
}

/* A byte-string length near SIZE_MAX is refused as too long (sticky
 * PC_EINVAL), never read: the key's room check adds the length to the
 * bytes so far, and a length that wraps that sum must not pass it. (A
 * mutation that left such lengths to the room check alone survived: no
 * test passed a length that overflows.) */
Test(bad_input, key_builder_lengths_that_overflow_are_refused)
{
    static const size_t lens[] = {SIZE_MAX, SIZE_MAX - 5, SIZE_MAX - 10,
                                  SIZE_MAX - 11, SIZE_MAX / 2 + 1};
    const char arg[4] = "abc";

    for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
        pc_key k;

        pc_key_init(&k);
        pc_key_add_i64(&k, 1);
        pc_key_add_bytes(&k, arg, lens[i]);
        cr_assert_eq(pc_key_finish(&k), PC_EINVAL, "length SIZE_MAX - %zu",
                     SIZE_MAX - lens[i]);
        pc_key_free(&k);
    }
}
