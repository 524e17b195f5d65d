/*
 * Conditional puts: PC_PUT_IF_ABSENT inserts only (PC_EXISTS, nothing
 * changed, when the key is present), PC_PUT_IF_PRESENT replaces only
 * (PC_NOTFOUND when absent); bad flags are refused; pc_put_ex with NULL
 * arguments is pc_put; and an insert-only put is atomic per key: of many
 * threads racing to insert one key, exactly one succeeds.
 */
#include <criterion/criterion.h>
#include <pthread.h>

#include "alloc.h" /* pc__alloc_fail_after */
#include "testlib.h"

static pc_status put_flags(pc_cache *c, uint64_t k, uint64_t v, unsigned flags)
{
    pc_put_args a = {.flags = flags};

    return pc_put_ex(c, &k, sizeof k, &v, sizeof v, &a);
}

Test(conditional, if_absent_inserts_only)
{
    pc_cache *c = make_cache(10);
    uint64_t v = 0;
    pc_stats s;

    cr_assert_eq(put_flags(c, 1, 10, PC_PUT_IF_ABSENT), PC_OK);
    cr_assert_eq(put_flags(c, 1, 11, PC_PUT_IF_ABSENT), PC_EXISTS);
    cr_assert_eq(get_u64(c, 1, &v), PC_OK);
    cr_assert_eq(v, 10, "PC_EXISTS changed the value");
    pc_stats_get(c, &s);
    cr_assert_eq(s.puts, 1);
    pc_destroy(c);
}

Test(conditional, if_present_replaces_only)
{
    pc_cache *c = make_cache(10);
    uint64_t v = 0;

    cr_assert_eq(put_flags(c, 1, 10, PC_PUT_IF_PRESENT), PC_NOTFOUND);
    cr_assert_eq(get_u64(c, 1, NULL), PC_NOTFOUND);
    cr_assert_eq(pc_len(c), 0);
    put_u64(c, 1, 10);
    cr_assert_eq(put_flags(c, 1, 12, PC_PUT_IF_PRESENT), PC_OK);
    cr_assert_eq(get_u64(c, 1, &v), PC_OK);
    cr_assert_eq(v, 12);
    pc_destroy(c);
}

Test(conditional, bad_flags_and_null_args)
{
    pc_cache *c = make_cache(10);
    uint64_t k = 1, v = 2;
    pc_put_args a = {0};

    cr_assert_eq(put_flags(c, 1, 1, PC_PUT_IF_ABSENT | PC_PUT_IF_PRESENT),
                 PC_EINVAL);
    cr_assert_eq(put_flags(c, 1, 1, 4), PC_EINVAL);
    cr_assert_eq(put_flags(c, 1, 1, ~0u), PC_EINVAL);
    cr_assert_eq(pc_len(c), 0, "a refused put changed the cache");
    cr_assert_eq(pc_put_ex(NULL, &k, 8, &v, 8, &a), PC_EINVAL);
    cr_assert_eq(pc_put_ex(c, NULL, 8, &v, 8, &a), PC_EINVAL);
    cr_assert_eq(pc_put_ex(c, &k, 8, NULL, 8, &a), PC_EINVAL);
    cr_assert_eq(pc_put_ex(c, &k, PC_KEY_MAX + 1, &v, 8, &a), PC_EINVAL);
    cr_assert_eq(pc_len(c), 0);
    cr_assert_eq(pc_put_ex(c, &k, 8, &v, 8, NULL), PC_OK); /* = pc_put */
    cr_assert_eq(pc_put_ex(c, &k, 8, &v, 8, NULL), PC_OK); /* replaces */
    cr_assert_eq(pc_len(c), 1);
    cr_assert_str_eq(pc_strerror(PC_EXISTS),
                     "the key is present; nothing changed");
    pc_destroy(c);
}

struct race {
    pc_cache *c;
    uint64_t key;
    int wins;
    pthread_barrier_t go;
};

static void *insert_once(void *p)
{
    struct race *r = p;

    pthread_barrier_wait(&r->go);
    for (uint64_t round = 0; round < 200; round++) {
        uint64_t k = r->key + round;

        if (put_flags(r->c, k, (uint64_t)pthread_self(), PC_PUT_IF_ABSENT) ==
            PC_OK)
            __atomic_add_fetch(&r->wins, 1, __ATOMIC_RELAXED);
    }
    return NULL;
}

Test(conditional, insert_only_is_atomic_per_key)
{
    struct race r = {.c = make_cache(1000), .key = 7};
    pthread_t th[4];

    pthread_barrier_init(&r.go, NULL, 4);
    for (int i = 0; i < 4; i++)
        pthread_create(&th[i], NULL, insert_once, &r);
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
    cr_assert_eq(r.wins, 200, "%d wins for 200 keys", r.wins);
    pthread_barrier_destroy(&r.go);
    pc_destroy(r.c);
}

/* A conditional put is refused for its condition, whatever memory it would
 * have needed had it stored: PC_PUT_IF_ABSENT of a present key with a time
 * to live returns PC_EXISTS, though nothing more can be allocated once its
 * entry is (the exact-LRU build reserved its expiry heap first and
 * returned PC_ENOMEM; found by helper-68). */
Test(conditional, refused_for_its_condition_not_for_memory_it_never_needs)
{
    pc_options o = test_opts(10);
    pc_cache *c;
    pc_put_args a = {.ttl_ms = 1000, .flags = PC_PUT_IF_ABSENT};
    uint64_t k = 1, v = 2, got = 0;
    pc_status st;

    o.now_ms = test_now;
    c = make_cache_opts(&o);
    cr_assert_eq(put_u64(c, 1, 10), PC_OK);   /* nothing expiring yet */
    cr_assert_eq(get_u64(c, 1, NULL), PC_OK); /* this thread registered */
    pc__alloc_fail_after(1); /* the entry may be allocated, nothing more */
    st = pc_put_ex(c, &k, sizeof k, &v, sizeof v, &a);
    pc__alloc_fail_after(-1);
    cr_assert_eq(st, PC_EXISTS, "PC_PUT_IF_ABSENT of a present key: %s",
                 pc_strerror(st));
    cr_assert_eq(get_u64(c, 1, &got), PC_OK);
    cr_assert_eq(got, 10);
    pc_destroy(c);
}

/* The same for PC_PUT_IF_PRESENT of an absent key, whose index would have
 * to grow for a new key (a byte bound sizes it by the entries held): it is
 * PC_NOTFOUND, never PC_ENOMEM (26 of 2000 were, in the exact-LRU build). */
Test(conditional, if_present_of_an_absent_key_is_notfound_short_of_memory)
{
    pc_options o = test_opts(4096);
    pc_cache *c;
    pc_put_args a = {.flags = PC_PUT_IF_PRESENT};

    o.max_bytes = 1u << 20; /* tables grow with the entries */
    o.shards = 1;
    c = make_cache_opts(&o);
    cr_assert_eq(get_u64(c, 0, NULL), PC_NOTFOUND); /* registered */
    for (uint64_t k = 0; k < 2000; k++) {
        uint64_t v = k;
        pc_status st;

        pc__alloc_fail_after(1); /* the entry may be allocated, nothing more */
        st = pc_put_ex(c, &k, sizeof k, &v, sizeof v, &a);
        pc__alloc_fail_after(-1);
        cr_assert_eq(st, PC_NOTFOUND, "key %llu: %s", (unsigned long long)k,
                     pc_strerror(st));
        cr_assert_eq(put_u64(c, k, k), PC_OK);
    }
    cr_assert_eq(pc_len(c), 2000);
    pc_destroy(c);
}

/* pc_put_ex: "PC_EXISTS (PC_PUT_IF_ABSENT, key present) or PC_NOTFOUND
 * (PC_PUT_IF_PRESENT, key absent), nothing changed": a refused put is not
 * a use, so it changes no eviction order. Two caches see the same writes
 * and reads, one of them also refused puts; the same keys survive the
 * evictions that follow (a mutation under which lru's PC_EXISTS promoted
 * the key passed every suite). */
static pc_cache *order_cache(void)
{
    pc_options o = test_opts(64);

    o.shards = 1;
    o.hash_seed = 12345;
    return make_cache_opts(&o);
}

Test(conditional, a_refused_put_changes_no_eviction_order)
{
    pc_cache *a = order_cache(), *b = order_cache();

    for (uint64_t k = 0; k < 64; k++) {
        put_u64(a, k, k);
        put_u64(b, k, k);
    }
    for (uint64_t k = 32; k < 64; k++) { /* the newer half: used */
        cr_assert_eq(get_u64(a, k, NULL), PC_OK);
        cr_assert_eq(get_u64(b, k, NULL), PC_OK);
    }
    for (uint64_t k = 0; k < 32; k++) { /* the older half: refused twice */
        for (int i = 0; i < 2; i++) {
            cr_assert_eq(put_flags(b, k, 0, PC_PUT_IF_ABSENT), PC_EXISTS);
            cr_assert_eq(put_flags(b, 1000 + k, 0, PC_PUT_IF_PRESENT),
                         PC_NOTFOUND);
        }
    }
    for (uint64_t k = 100; k < 132; k++) { /* 32 evictions each */
        put_u64(a, k, k);
        put_u64(b, k, k);
    }
    for (uint64_t k = 0; k < 132; k++) {
        cr_assert_eq(get_u64(b, k, NULL), get_u64(a, k, NULL),
                     "key %lu: the refused puts changed what was evicted",
                     (unsigned long)k);
    }
    cr_assert_eq(pc_len(a), 64);
    cr_assert_eq(pc_len(b), 64);
    pc_destroy(a);
    pc_destroy(b);
}

/* A loader held at a gate until the test opens it. */
static struct test_gate load_gate = TEST_GATE_INIT;

static int held_loader(void *ctx, const void *key, size_t klen, pc_sink *out)
{
    (void)ctx, (void)key, (void)klen;
    test_gate_pass(&load_gate);
    return pc_sink_set(out, "loaded", 6) == PC_OK ? 0 : 1;
}

struct loading {
    pc_cache *c;
    pc_status st;
    char got[16];
    size_t n;
};

static void *get_or_load_k(void *p)
{
    struct loading *l = p;

    l->st = pc_get_or_load(l->c, "k", 1, held_loader, NULL, l->got,
                           sizeof l->got, &l->n, NULL);
    return NULL;
}

/* pc_put_ex: a refused put changes nothing, and only "a pc_get_or_load of
 * key that begins after the put returned PC_OK" must not join a load in
 * flight: after a PC_PUT_IF_PRESENT refused while a load of its key is in
 * flight, a later pc_get_or_load still joins that load (one loader call)
 * and the load's value is cached (a mutation that took the flight out of
 * the table after a put whatever its status, so that the later caller
 * loaded again, passed every suite). */
Test(conditional, a_refused_put_leaves_a_load_in_flight_to_be_joined)
{
    pc_cache *c = make_cache(16);
    struct loading l[2] = {{.c = c}, {.c = c}};
    pc_put_args a = {.flags = PC_PUT_IF_PRESENT};
    pc_stats s;
    pthread_t th[2];
    char got[16];
    size_t n = 0;

    cr_assert_eq(pthread_create(&th[0], NULL, get_or_load_k, &l[0]), 0);
    test_gate_wait(&load_gate, 1); /* the leader's loader runs */
    cr_assert_eq(pc_put_ex(c, "k", 1, "v", 1, &a), PC_NOTFOUND);
    cr_assert_eq(pthread_create(&th[1], NULL, get_or_load_k, &l[1]), 0);
    cr_assert_geq(TEST_WAIT_MISSES(pc_stats_get, c, 2), 2);
    test_gate_open(&load_gate);
    for (int i = 0; i < 2; i++) {
        cr_assert_eq(pthread_join(th[i], NULL), 0);
        cr_assert_eq(l[i].st, PC_OK);
        cr_assert_eq(l[i].n, 6);
        cr_assert_eq(memcmp(l[i].got, "loaded", 6), 0);
    }
    cr_assert_eq(pc_stats_get(c, &s), PC_OK);
    cr_assert_eq(s.loader_calls, 1, "the later caller loaded again: %llu calls",
                 (unsigned long long)s.loader_calls);
    cr_assert_eq(pc_get(c, "k", 1, got, sizeof got, &n), PC_OK,
                 "the refused put kept the load from storing");
    cr_assert_eq(n, 6);
    cr_assert_eq(memcmp(got, "loaded", 6), 0);
    pc_destroy(c);
}
