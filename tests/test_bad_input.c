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
