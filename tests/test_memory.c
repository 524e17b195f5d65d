/*
 * Memory: garbage (replaced, evicted, deleted entries and old index tables)
 * is reclaimed, nothing leaks, and thread records of exited threads are
 * reused rather than accumulated.
 */
#include <criterion/criterion.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

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
 * The index removes entries in place (index.h): no tombstones, so no
 * rebuild however long a cache churns. Churn a small cache (every put
 * evicts or is deleted again), then count the allocations a hundred
 * deletes make: at most one retirement batch (128 entries each), never an
 * index table.
 */
Test(memory, deletes_never_rebuild_the_index_however_long_the_churn)
{
    pc_options o = test_opts(1000);

    o.shards = 1;
    pc_cache *c;
    long made;

    cr_assert_eq(pc_create(&o, &c), PC_OK);
    for (uint64_t k = 0; k < 1000; k++)
        put_u64(c, k, k);
    for (uint64_t k = 0; k < 50000; k++) {
        uint64_t d = 1000 + k;

        put_u64(c, d, k);
        if (k % 2)
            pc_delete(c, &d, sizeof d);
    }
    pc__alloc_fail_after(1L << 40); /* count, never fail */
    for (uint64_t k = 0; k < 50000; k += 500)
        pc_delete(c, &(uint64_t){1000 + k}, sizeof(uint64_t));
    made = pc__alloc_fail_after(-1);
    cr_assert_leq(made, 1, "100 deletes made %ld allocations", made);
    pc_destroy(c);
}

#ifdef PC_TEST_JEMALLOC
#include <jemalloc/jemalloc.h>

/* Bytes jemalloc has handed this thread, all time. */
static uint64_t thread_allocated(void)
{
    uint64_t v = 0;
    size_t len = sizeof v;

    if (mallctl("thread.allocated", &v, &len, NULL, 0) != 0)
        return UINT64_MAX / 2; /* fails the test's checks */
    return v;
}

/* Bytes allocated in the whole process, as of now. */
static size_t process_allocated(void)
{
    uint64_t epoch = 1;
    size_t v = 0, len = sizeof v;

    cr_assert_eq(mallctl("epoch", NULL, NULL, &epoch, sizeof epoch), 0);
    cr_assert_eq(mallctl("stats.allocated", &v, &len, NULL, 0), 0);
    return v;
}

/* A jemalloc statistic of one arena, as of now (SIZE_MAX if unreadable). */
static size_t arena_stat(int arena, const char *stat)
{
    uint64_t epoch = 1;
    size_t v = 0, len = sizeof v;
    char name[96];

    snprintf(name, sizeof name, "stats.arenas.%d.%s", arena, stat);
    if (mallctl("epoch", NULL, NULL, &epoch, sizeof epoch) != 0 ||
        mallctl(name, &v, &len, NULL, 0) != 0)
        return SIZE_MAX;
    return v;
}

/* A cache filling from empty replaces its rings (and the frequency
 * policy's ghost) by larger copies again and again: the copies it let go
 * are returned to the system at once, not kept as jemalloc's dirty pages,
 * while the arrays it holds come from that arena. */
Test(memory, arrays_a_growing_cache_replaced_do_not_stay_resident)
{
    pc_options o = test_opts(1u << 20);
    int arena = pc__alloc_array_arena();
    size_t held0, held;
    pc_cache *c;

    cr_assert_geq(arena, 0, "no arena for arrays");
    held0 = arena_stat(arena, "large.allocated");
    o.shards = 2; /* rings of 150k entries: past 64 KiB many times */
    c = make_cache_opts(&o);
    cr_assert_not_null(c);
    for (uint64_t k = 0; k < 300000; k++)
        put_u64(c, k, k);
    pc_reclaim(c);
    held = arena_stat(arena, "large.allocated");
    cr_assert(held != SIZE_MAX && held >= held0 + 300000 * sizeof(void *),
              "arrays held %zu bytes, %zu before", held, held0);
    cr_assert_eq(arena_stat(arena, "pdirty"), 0);
    cr_assert_eq(arena_stat(arena, "pmuzzy"), 0);
    pc_destroy(c);
    cr_assert_eq(arena_stat(arena, "pdirty"), 0);
}

#define MAG_TEST_BLOCKS 1000 /* of 40 bytes: 48,000 held, under 64 KiB */

static void *magazine_round_trip(void *arg)
{
    static void *blk[MAG_TEST_BLOCKS];
    uint64_t *jemalloc_bytes = arg;

    for (int round = 0; round < 2; round++) {
        uint64_t before = thread_allocated();

        /* Round 2 asks for another size of the same 16-byte class. */
        size_t n = round == 0 ? 40 : 48;

        for (int i = 0; i < MAG_TEST_BLOCKS; i++) {
            blk[i] = pc__alloc(n);
            if (blk[i] == NULL)
                return (void *)1;
            memset(blk[i], 0xab, n);
        }
        jemalloc_bytes[round] = thread_allocated() - before;
        for (int i = 0; i < MAG_TEST_BLOCKS; i++)
            pc__free(blk[i], n);
    }
    return NULL;
}

/* alloc.c's magazine: a thread's freed entry-sized blocks serve its next
 * allocations without jemalloc, and are returned when the thread exits. */
Test(memory, freed_small_blocks_are_reused_by_their_thread_and_released_at_exit)
{
    uint64_t jemalloc_bytes[2];
    size_t before = process_allocated();
    pthread_t t;
    void *failed;

    cr_assert_eq(pthread_create(&t, NULL, magazine_round_trip, jemalloc_bytes),
                 0);
    cr_assert_eq(pthread_join(t, &failed), 0);
    cr_assert_null(failed, "pc__alloc failed");
    cr_assert_geq(jemalloc_bytes[0], MAG_TEST_BLOCKS * 40);
    cr_assert_eq(jemalloc_bytes[1], 0,
                 "second round asked jemalloc for %lu bytes",
                 (unsigned long)jemalloc_bytes[1]);
    /* Held by the exited thread unless its destructor gave them back. */
    size_t after = process_allocated();
    cr_assert_lt(after, before + MAG_TEST_BLOCKS * 48 / 2,
                 "%zu bytes still allocated after the thread exited",
                 after - before);
}

/* Bytes jemalloc handed this thread and not taken back from it. */
static int64_t thread_net(void)
{
    uint64_t a = 0, d = 0;
    size_t len = sizeof a;

    if (mallctl("thread.allocated", &a, &len, NULL, 0) != 0 ||
        mallctl("thread.deallocated", &d, &len, NULL, 0) != 0)
        return INT64_MAX / 2;
    return (int64_t)(a - d);
}

static void *destroy_in_fresh_thread(void *arg)
{
    int64_t *net = arg;
    int64_t before = thread_net();
    pc_cache *c = make_cache(1000);

    for (uint64_t k = 0; k < 20000; k++) /* 19,000 evictions */
        put_u64(c, k, k);
    pc_reclaim(c);
    pc_destroy(c);
    *net = thread_net() - before;
    return NULL;
}

/* pc_destroy also returns what the destroying thread kept of the cache's
 * entries (up to 32 KiB of 32-byte entries here otherwise). */
Test(memory, pc_destroy_returns_the_blocks_its_thread_kept)
{
    int64_t net;
    pthread_t t;

    cr_assert_eq(pthread_create(&t, NULL, destroy_in_fresh_thread, &net), 0);
    cr_assert_eq(pthread_join(t, NULL), 0);
    cr_assert_lt(net, 8192,
                 "%lld bytes still held by the thread after pc_destroy",
                 (long long)net);
}

#define MAG_RELEASE_BLOCKS 2000 /* of 128 bytes: 256,000, under 256 KiB */

/* Allocate MAG_RELEASE_BLOCKS blocks of 128 bytes and free them again;
 * the bytes jemalloc handed the thread meanwhile (UINT64_MAX on ENOMEM). */
static uint64_t mag_fill_and_empty(void)
{
    static void *blk[MAG_RELEASE_BLOCKS];
    uint64_t before = thread_allocated(), made;

    for (int i = 0; i < MAG_RELEASE_BLOCKS; i++)
        if ((blk[i] = pc__alloc(128)) == NULL)
            return UINT64_MAX;
    made = thread_allocated() - before;
    for (int i = 0; i < MAG_RELEASE_BLOCKS; i++)
        pc__free(blk[i], 128);
    return made;
}

static void *magazine_after_release(void *arg)
{
    uint64_t *made = arg;

    made[0] = mag_fill_and_empty(); /* fills the magazine */
    pc__alloc_release_thread();     /* as pc_destroy does */
    made[1] = mag_fill_and_empty(); /* from jemalloc; fills it again */
    made[2] = mag_fill_and_empty(); /* from the magazine */
    return NULL;
}

/* A magazine given back to jemalloc (pc_destroy) starts afresh: the
 * thread keeps as many blocks afterwards as before (its byte count, left
 * as it was, let it keep 48 of the 2000). */
Test(memory, a_released_magazine_keeps_blocks_again)
{
    uint64_t made[3];
    pthread_t t;

    cr_assert_eq(pthread_create(&t, NULL, magazine_after_release, made), 0);
    cr_assert_eq(pthread_join(t, NULL), 0);
    cr_assert_geq(made[0], MAG_RELEASE_BLOCKS * 128);
    cr_assert_neq(made[1], UINT64_MAX);
    cr_assert_eq(made[2], 0,
                 "after a release the magazine served the same blocks "
                 "with %llu bytes from jemalloc",
                 (unsigned long long)made[2]);
}

static void *magazine_rounds(void *arg)
{
    uint64_t *made = arg;

    for (int round = 0; round < 4; round++)
        made[round] = mag_fill_and_empty();
    return NULL;
}

/* A magazine that keeps its thread's blocks keeps serving them round after
 * round: what a take hands out no longer counts against its bound, so the
 * same 250 KB fill and empty never go back to jemalloc. */
Test(memory, a_magazine_serves_the_same_blocks_round_after_round)
{
    uint64_t made[4];
    pthread_t t;

    cr_assert_eq(pthread_create(&t, NULL, magazine_rounds, made), 0);
    cr_assert_eq(pthread_join(t, NULL), 0);
    cr_assert_geq(made[0], MAG_RELEASE_BLOCKS * 128);
    for (int round = 1; round < 4; round++)
        cr_assert_eq(made[round], 0, "round %d asked jemalloc for %llu bytes",
                     round, (unsigned long long)made[round]);
}

#define MAG_CLASS_BLOCKS 10

/* Keep blocks of every magazine class, then give the magazine back; the
 * bytes jemalloc handed the thread meanwhile and did not get back. */
static void *magazine_every_class_released(void *arg)
{
    static void *blk[MAG_CLASS_BLOCKS];
    int64_t *net = arg, before;

    pc__free(pc__alloc(16), 16); /* arms the magazine: the key's value */
    pc__alloc_release_thread();
    before = thread_net();
    for (size_t c = 0; c < PC__MAG_CLASSES; c++) {
        size_t n = (c + 1) * 16;

        for (int i = 0; i < MAG_CLASS_BLOCKS; i++)
            if ((blk[i] = pc__alloc(n)) == NULL)
                return (void *)1;
        for (int i = 0; i < MAG_CLASS_BLOCKS; i++)
            pc__free(blk[i], n);
    }
    pc__alloc_release_thread(); /* as pc_destroy does, and thread exit */
    *net = thread_net() - before;
    return NULL;
}

/* A released magazine returns every block it kept, of every class, and
 * the arrays that held them: to the byte. */
Test(memory, a_released_magazine_returns_every_block_it_kept)
{
    int64_t net = -1;
    pthread_t t;
    void *failed;

    cr_assert_eq(pthread_create(&t, NULL, magazine_every_class_released, &net),
                 0);
    cr_assert_eq(pthread_join(t, &failed), 0);
    cr_assert_null(failed, "pc__alloc failed");
    cr_assert_eq(net, 0, "%lld bytes still held by the thread after release",
                 (long long)net);
}
#endif

#ifdef PC_TEST_JEMALLOC
/* The expiry queue (clock, frequency) holds items for entries that can
 * expire, not for the others: one key rewritten with a ttl, over and over,
 * in a shard of 50,000 entries that never expire, keeps it small (the
 * queue grew to 3 x 50,000 items, 6 MB, before it was compacted by what
 * can expire). */
Test(memory, the_expiry_queue_is_sized_by_the_entries_that_can_expire)
{
    pc_options o = test_opts(100000);
    pc_put_args a = {.ttl_ms = 3600000};
    uint64_t k = 1u << 20;
    int64_t before, net;
    pc_cache *c;

    o.shards = 1;
    c = make_cache_opts(&o);
    cr_assert_not_null(c);
    for (uint64_t i = 0; i < 50000; i++)
        put_u64(c, i, i);
    pc_reclaim(c);
    before = thread_net();
    for (uint64_t i = 0; i < 300000; i++)
        cr_assert_eq(pc_put_ex(c, &k, sizeof k, &i, sizeof i, &a), PC_OK);
    pc_reclaim(c);
    net = thread_net() - before;
    cr_assert_lt(net, 1 << 20, "%lld bytes more after 300,000 rewrites",
                 (long long)net);
    pc_destroy(c);
}

/* pc_clear forgets the expiry bookkeeping of the entries it removes: a
 * cache cleared and refilled with entries that expire ever sooner (each
 * one an item of the expiry queue) costs what one fill costs, not what
 * every fill since creation did. */
Test(memory, clearing_forgets_the_expiry_queue_of_the_cleared_entries)
{
    pc_options o = test_opts(1000);
    int64_t before = 0, net;
    pc_cache *c;

    o.shards = 1;
    o.now_ms = test_now;
    c = make_cache_opts(&o);
    cr_assert_not_null(c);
    for (uint64_t round = 0; round < 200; round++) {
        pc_put_args a = {.ttl_ms = 10000000 - round * 2000};

        for (uint64_t i = 0; i < 1000; i++) {
            uint64_t k = round * 1000 + i;

            a.ttl_ms--;
            cr_assert_eq(pc_put_ex(c, &k, sizeof k, &k, sizeof k, &a), PC_OK);
        }
        pc_clear(c);
        pc_reclaim(c);
        if (round == 9)
            before = thread_net();
    }
    net = thread_net() - before;
    cr_assert_lt(net, 256 << 10,
                 "%lld bytes more after 190 more fills and clears",
                 (long long)net);
    pc_destroy(c);
}

/* A byte-bounded cache holding far fewer entries than its capacity pays
 * for the entries it holds, not for its capacity: every structure sized
 * per entry (index, rings, the frequency policy's ghost) grows with what
 * the shards hold. */
Test(memory, a_byte_bounded_cache_below_its_capacity_costs_what_it_holds)
{
    enum { HELD = 4000 };
    pc_options o = test_opts(1u << 22);
    int64_t before = thread_net(), net;
    pc_cache *c;

    o.max_bytes = 1u << 30;
    c = make_cache_opts(&o);

    cr_assert_not_null(c);
    for (uint64_t k = 0; k < HELD; k++)
        put_u64(c, k, k);
    pc_reclaim(c);
    net = thread_net() - before;
    /* About 70-80 bytes (entry, index, policy, the cache's own fixed
     * parts amortised); a ghost sized by the capacity was 4,800. */
    cr_assert_lt(net, 160 * HELD, "%.1f bytes per held entry",
                 (double)net / HELD);
    pc_destroy(c);
}
/* Bytes this thread holds for a 2-shard cache of capacity `cap` through
 * which 1.5 * `full` keys were put (with `ttl`, each with an hour to
 * live), then limited to `cap2` entries (if not 0: by its capacity, or
 * with `bytes` by a byte bound of that many 16-byte entries); checks that
 * the cache then holds exactly that many keys, each with its value. */
static int64_t cache_net(size_t cap, size_t full, size_t cap2, bool bytes,
                         bool ttl)
{
    pc_put_args args = {.ttl_ms = ttl ? 3600000 : 0};
    pc_options o = test_opts(cap);
    int64_t before = thread_net(), net;
    size_t found = 0, held = cap2 != 0 ? cap2 : cap;
    pc_cache *c;

    o.shards = 2;
    c = make_cache_opts(&o);
    cr_assert_not_null(c);
    for (uint64_t k = 0; k < full + full / 2; k++)
        cr_assert_eq(pc_put_ex(c, &k, sizeof k, &k, sizeof k, &args), PC_OK);
    if (cap2 != 0 && bytes)
        cr_assert_eq(pc_set_max_bytes(c, 16 * cap2), PC_OK);
    else if (cap2 != 0)
        cr_assert_eq(pc_set_capacity(c, cap2), PC_OK);
    pc_reclaim(c);
    net = thread_net() - before;
    cr_assert_eq(pc_len(c), held);
    for (uint64_t k = 0, v; k < full + full / 2; k++) {
        if (get_u64(c, k, &v) == PC_OK) {
            cr_assert_eq(v, k);
            found++;
        }
    }
    cr_assert_eq(found, held, "%zu keys found", found);
    pc_destroy(c);
    return net;
}

/* A cache whose capacity (or byte bound) is lowered far pays for what it
 * may hold now, not for what it held: the index tables and the policy's
 * arrays (clock's ring, frequency's rings and ghost, lru's nodes), and
 * for entries that can expire the expiry queue (lru: heap), sized for what
 * it held are replaced by smaller ones. They stayed: 5,400 to 6,200 bytes
 * per entry held here; now what a cache made at that size holds, 150 to
 * 160 (lru with a ttl: its heap stayed, 4,350). */
Test(memory, a_lowered_capacity_costs_what_it_may_hold)
{
    enum { FULL = 1 << 18, HELD = 2000 };

    for (int ttl = 0; ttl < 2; ttl++) {
        int64_t made = cache_net(HELD, FULL, 0, false, ttl);

        for (int bytes = 0; bytes < 2; bytes++) {
            int64_t lowered = cache_net(FULL, FULL, HELD, bytes, ttl);

            cr_assert_lt(lowered, made + made / 4,
                         "%s lowered%s: %.1f bytes per entry held, %.1f in a "
                         "cache made at %d",
                         bytes ? "byte bound" : "capacity", ttl ? " (ttl)" : "",
                         (double)lowered / HELD, (double)made / HELD, HELD);
        }
    }
}

/* A one-shard cache of 65536 entries, filled with half as many more keys
 * (*before: the thread's net allocated bytes before it was made). */
static pc_cache *full_one_shard(int64_t *before)
{
    enum { FULL = 1 << 16 };
    pc_options o = test_opts(FULL);
    pc_cache *c;

    *before = thread_net();
    o.shards = 1;
    /* One seed for every cache compared: which keys each exact-LRU table
     * (or shard) gets decides which tables outgrow their share, and tables
     * grow in size-class steps, so two seeds differ by a table or two. */
    o.hash_seed = 0x5eed;
    c = make_cache_opts(&o);
    cr_assert_not_null(c);
    for (uint64_t k = 0; k < FULL + FULL / 2; k++)
        put_u64(c, k, k);
    return c;
}

/* What c costs now that it holds `len` entries; destroys it. */
static int64_t net_of(pc_cache *c, int64_t before, size_t len)
{
    int64_t net;

    pc_reclaim(c);
    net = thread_net() - before;
    cr_assert_eq(pc_len(c), len);
    pc_destroy(c);
    return net;
}

/* A lowered limit whose smaller copies could not be allocated keeps the
 * larger structures (the frequency ghost: its old allocation's first
 * buckets); the next lowered limit makes them again, and the cache then
 * costs what one lowered at once does. */
static int64_t lowered_net(bool short_first)
{
    int64_t before;
    pc_cache *c = full_one_shard(&before);

    if (short_first) {
        pc__alloc_fail_after(0); /* every allocation fails */
        cr_assert_eq(pc_set_capacity(c, 1000), PC_OK);
        pc__alloc_fail_after(-1);
    }
    cr_assert_eq(pc_set_capacity(c, 999), PC_OK);
    return net_of(c, before, 999);
}

/* The same through a byte bound: bound to 50 entries (its trim short of
 * memory, or not), unbound (no trim), then a capacity of 4000: a trim to
 * a share larger than what the failed trim's ghost kept in use, which it
 * once took for a growth the old allocation held, keeping the 256 KiB
 * ghost (frequency: 555,816 bytes in all, against 171,128 for a cache
 * whose first trim had its memory). The index and the rings now decide
 * their trims on the size they would have had (the failed trim leaves its
 * load limit, or usable size, behind), and cost the same bytes as the
 * other cache's; they once made their retried trim for the 4000-entry
 * share (80 KB more for clock, 123 KB for frequency). lru's recency-list
 * nodes still do: 48 KB more (lru_nodes.c). */
static int64_t bound_then_lowered_net(bool short_first)
{
    int64_t before;
    pc_cache *c = full_one_shard(&before);

    if (short_first)
        pc__alloc_fail_after(0);
    cr_assert_eq(pc_set_max_bytes(c, 16 * 50), PC_OK);
    pc__alloc_fail_after(-1);
    cr_assert_eq(pc_set_max_bytes(c, 0), PC_OK);
    cr_assert_eq(pc_set_capacity(c, 4000), PC_OK);
    return net_of(c, before, 50);
}

/* lru_nodes.c's array size, in ids, for a cache of n entries: the
 * sentinel, n and one to spare, to the end of the 12-byte nodes'
 * allocation class. */
static uint64_t ids_for(uint64_t n)
{
    return pc__alloc_usable(12 * (n + 2)) / 12;
}

/* Lowered to `low` (16384 entries, a quarter; its trim short of memory,
 * or not), raised to `high` (30000) and filled, then lowered a little (to
 * 29000: a trim with nothing to do for a cache whose first trim had its
 * memory). A trim that
 * failed once left the index table and the frequency policy's rings at
 * their old size, and later growths and trims decided on that size: none
 * of them grew, and the last trim kept them (frequency: 407,552 bytes
 * more; lru, whose tables are smaller than a shard's and were trimmed in
 * the first lowering: 737,280). The next trim now makes what the failed
 * one did not, and the caches cost the same. */
static int64_t lowered_raised_net(bool short_first, size_t low, size_t high)
{
    int64_t before;
    pc_cache *c = full_one_shard(&before);

    if (short_first)
        pc__alloc_fail_after(0);
    cr_assert_eq(pc_set_capacity(c, low), PC_OK);
    pc__alloc_fail_after(-1);
    cr_assert_eq(pc_set_capacity(c, high), PC_OK);
    for (uint64_t k = 1u << 20; k < (1u << 20) + high + high / 3; k++)
        put_u64(c, k, k);
    cr_assert_eq(pc_set_capacity(c, high - high / 30), PC_OK);
    return net_of(c, before, high - high / 30);
}

Test(memory, a_trim_short_of_memory_is_made_by_the_next_one)
{
    int64_t direct = lowered_net(false), retried = lowered_net(true);

    cr_assert_lt(retried, direct + 16384,
                 "lowered after a trim short of memory: %lld bytes, at once: "
                 "%lld",
                 (long long)retried, (long long)direct);
    direct = bound_then_lowered_net(false);
    retried = bound_then_lowered_net(true);
    cr_assert_lt(retried, direct + 64 * 1024,
                 "bound, unbound, lowered after a bound short of memory: "
                 "%lld bytes, the bound at once: %lld",
                 (long long)retried, (long long)direct);
    /* Then lowered far (to 1000: the index table is trimmed too) and
     * raised past what the failed trim left room for (to 40000): the kept
     * table and rings grow as the smaller ones would have, not from their
     * old size, and not more slowly either (neither more nor less memory:
     * a ring whose usable size lagged its entries would be moved to an
     * allocation too small for them). */
    for (int far = 0; far < 2; far++) {
        size_t low = far ? 1000 : 16384, high = far ? 40000 : 30000;

        direct = lowered_raised_net(false, low, high);
        retried = lowered_raised_net(true, low, high);
        /* lru's recency-list nodes: the direct cache's first trim makes
         * them smaller if the ids the full cache of 65536 needed are four
         * times what `low` needs or more (lru_nodes.c: a power of two, or
         * less to the end of an allocation class), and they grow back to
         * what `high` needs; the retried cache keeps its old array (the
         * retried trim decides on the capacity share, within four times
         * the array). 12 bytes per id of the difference. */
        uint64_t full = ids_for(1u << 16), want = 64;

        while (want < low + 2)
            want *= 2;
        if (want > ids_for(low))
            want = ids_for(low);
        int64_t nodes = is_lru() && full >= 4 * want
                            ? (int64_t)(full - ids_for(high)) * 12
                            : 0;

        cr_assert_lt(llabs(retried - direct - nodes), 16384,
                     "lowered to %zu short of memory, raised to %zu, refilled, "
                     "lowered a little: %lld bytes, the first lowering with "
                     "memory: %lld",
                     low, high, (long long)retried, (long long)direct);
    }
}

/* Memory per entry does not depend on where the capacity falls between
 * two powers of two: index tables end where their allocation's size class
 * does, CLOCK's ring grows by an eighth, the LRU's nodes stop at the ids
 * the capacity needs (README, "Byte bound"). With tables of a power of two
 * of chunks and arrays that doubled, 8 shards of 7,500 keys (C = 60,000)
 * had tables of 2,048 chunks, 17 bytes per entry, and 8 of 8,500 (C =
 * 68,000) tables of 4,096, 31 bytes; the LRU's nodes 13 and 23 bytes. */
Test(memory, the_cost_per_entry_does_not_depend_on_the_capacity)
{
    static const size_t caps[] = {60000, 68000, 100000, 140000};
    double lo = 1e9, hi = 0, bound = is_lru() || is_frequency() ? 56 : 48;

    for (size_t i = 0; i < sizeof caps / sizeof caps[0]; i++) {
        pc_options o = test_opts(caps[i]);
        int64_t before = thread_net();
        double per;
        pc_cache *c;

        o.shards = 8;
        c = make_cache_opts(&o);
        cr_assert_not_null(c);
        for (uint64_t k = 0; k < caps[i]; k++)
            cr_assert_eq(put_u64(c, k, k), PC_OK);
        pc_reclaim(c);
        /* Beyond the 16 bytes of key and value, as the benchmark counts. */
        per = (double)(thread_net() - before - 16 * (int64_t)caps[i]) /
              (double)caps[i];
        pc_destroy(c);
        cr_assert_lt(per, bound, "C = %zu: %.1f bytes per entry", caps[i], per);
        lo = per < lo ? per : lo;
        hi = per > hi ? per : hi;
    }
    cr_assert_lt(hi - lo, 6.0, "%.1f to %.1f bytes per entry", lo, hi);
}

#endif

/* Frees are paced (retire.h): the hundreds of entries one grace period
 * makes safe are freed two per write by the writes that follow, not all by
 * one call. (The LRU cache hands over whole batches: each handover costs it
 * a log catch-up.) */
Test(memory, a_write_frees_at_most_two_removed_entries_while_few_wait)
{
    pc_options o = test_opts(2000);
    pc_stats st;
    uint64_t before, most = 0, freed = 0, k = 0;
    pc_cache *c;

    o.shards = 1; /* one reclaimer: every write polls the same one */
    c = make_cache_opts(&o);
    cr_assert_not_null(c);
    /* 500 evictions: at most four batches of 128 become safe at once,
     * fewer than may wait (PC__READY_MAX). */
    for (; k < 2500; k++)
        put_u64(c, k, k);
    pc_stats_get(c, &st);
    before = st.pending;
    /* Writes step grace periods (paced to one a millisecond), so within
     * some milliseconds of writes the batches become safe and are freed. */
    for (int i = 0; i < 4000 && freed < 400; i++, k++) {
        struct timespec ms = {0, 200000};

        put_u64(c, k, k);
        pc_stats_get(c, &st);
        if (st.pending < before) {
            freed += before - st.pending;
            if (before - st.pending > most)
                most = before - st.pending;
        }
        before = st.pending;
        nanosleep(&ms, NULL);
    }
    cr_assert_geq(freed, 400, "only %llu freed", (unsigned long long)freed);
    if (is_lru())
        cr_assert_geq(most, 128, "lru freed %llu at most",
                      (unsigned long long)most);
    else
        cr_assert_leq(most, 2, "one write freed %llu",
                      (unsigned long long)most);
    pc_destroy(c);
}

/* A filling shard grows its structures (index table, policy arrays,
 * frequency's ghost) geometrically, whatever the allocator's size classes:
 * a fill allocates each entry once and rebuilds a structure a logarithmic
 * number of times. (The ghost once grew to the end of jemalloc's size
 * class, which is geometric; with the sanitizer builds' exact-size malloc
 * it was rebuilt every eight puts, a quadratic fill. So that old code
 * fails here only in the sanitizer builds, which the test command runs
 * too: 18,854 allocations under ASan.) Without and with a byte bound,
 * which makes the index start small too. */
Test(memory, a_filling_shard_rebuilds_its_structures_a_few_times)
{
    enum { N = 150000 };

    for (int bytes = 0; bytes < 2; bytes++) {
        pc_options o = test_opts(N);
        pc_cache *c;
        long made;

        o.shards = 1;
        o.max_bytes = bytes ? (uint64_t)N * 64 : 0;
        c = make_cache_opts(&o);
        cr_assert_not_null(c);
        pc__alloc_fail_after(LONG_MAX); /* count, never fail */
        for (uint64_t k = 0; k < N; k++)
            cr_assert_eq(put_u64(c, k, k), PC_OK);
        made = pc__alloc_fail_after(-1);
        cr_assert_eq(pc_len(c), N);
        cr_assert_leq(made - N, 300,
                      "%s: %ld allocations beside the %d entries' own",
                      bytes ? "byte bound" : "capacity", made - N, N);
        pc_destroy(c);
    }
}

/* A byte bound that evicts nothing rebuilds nothing: the tables of a
 * cache holding few entries after deletes stay as they are (rebuilt for
 * those few, they would only grow back by doubling), while one that evicts
 * trims them (a_lowered_capacity_costs_what_it_may_hold). */
Test(memory, a_byte_bound_that_evicts_nothing_rebuilds_nothing)
{
    enum { FULL = 1 << 16, KEPT = 500 };
    pc_options o = test_opts(FULL);
    pc_cache *c;
    long made;

    o.shards = 2;
    c = make_cache_opts(&o);
    cr_assert_not_null(c);
    for (uint64_t k = 0; k < FULL; k++)
        cr_assert_eq(put_u64(c, k, k), PC_OK);
    for (uint64_t k = KEPT; k < FULL; k++)
        cr_assert_eq(pc_delete(c, &k, sizeof k), PC_OK);
    pc_reclaim(c);
    for (int step = 0; step < 2; step++) { /* from none, then lower */
        pc__alloc_fail_after(LONG_MAX);    /* count, never fail */
        cr_assert_eq(pc_set_max_bytes(c, step ? 1u << 24 : 1u << 30), PC_OK);
        made = pc__alloc_fail_after(-1);
        cr_assert_eq(made, 0,
                     "setting a bound above what is held made %ld "
                     "allocations",
                     made);
    }
    cr_assert_eq(pc_len(c), KEPT);
#ifdef PC_TEST_JEMALLOC /* (thread_net) */
    /* A bound that evicts does trim: smaller tables, megabytes freed. */
    int64_t before = thread_net();

    cr_assert_eq(pc_set_max_bytes(c, 16 * KEPT / 2), PC_OK);
    pc_reclaim(c);
    cr_assert_leq(pc_len(c), KEPT / 2);
    cr_assert_lt(thread_net(), before - (1 << 20),
                 "a bound that evicted freed %lld bytes",
                 (long long)(before - thread_net()));
#endif
    pc_destroy(c);
}

/* How many more pthread keys this process can create. */
static int keys_left(void)
{
    static pthread_key_t k[PTHREAD_KEYS_MAX];
    int n = 0;

    while (n < PTHREAD_KEYS_MAX && pthread_key_create(&k[n], NULL) == 0)
        n++;
    for (int i = 0; i < n; i++)
        pthread_key_delete(k[i]);
    return n;
}

/* The library takes at most two pthread keys whatever the number of
 * caches (pc_create's doc): the threads' records' and, on jemalloc, the
 * free-block magazine's, which the doc used to leave out (found by
 * helper-66). Twenty caches, each freeing entries on this thread. */
Test(memory, the_library_uses_at_most_two_pthread_keys_whatever_the_caches)
{
    int before = keys_left();
    pc_cache *c[20];

    for (int i = 0; i < 20; i++) {
        c[i] = make_cache(1000);
        for (uint64_t k = 0; k < 300; k++)
            put_u64(c[i], k, k);
        for (uint64_t k = 0; k < 300; k++)
            pc_delete(c[i], &k, sizeof k);
        pc_reclaim(c[i]); /* frees the deleted entries on this thread */
    }
    cr_assert_leq(before - keys_left(), 2, "the library holds %d keys",
                  before - keys_left());
    for (int i = 0; i < 20; i++)
        pc_destroy(c[i]);
}

/* Memory follows a lowered limit once later writes have freed what the
 * lowering removed (README, "Memory follows a lowered limit"): the
 * retirement batches of that burst (~2.5 KB per 128 entries) stayed
 * allocated until pc_reclaim, 20 MB in the exact-LRU build for a capacity
 * lowered from 1M to 10k (found by helper-66; retire.h). */
Test(memory,
     memory_follows_a_lowered_capacity_once_later_writes_free_the_removed,
     .timeout = 120)
{
#ifdef PC_TEST_JEMALLOC
    const size_t n = 1000000;
    pc_cache *c = make_cache(n);
    pc_stats st;
    size_t before, after;
    uint64_t i = 0;
    int rounds = 0;

    for (uint64_t k = 0; k < n; k++)
        put_u64(c, k, k);
    cr_assert_eq(pc_set_capacity(c, 10000), PC_OK);
    do { /* later writes (each retiring at most one entry, while grace
          * periods pass), until what the lowering removed is freed: at
          * least 100 rounds, as the index tables it replaced (not counted
          * in pending) go a grace period after its last entries */
        for (int j = 0; j < 1000; j++, i++) {
            uint64_t k = n + i;

            put_u64(c, k, k);
            pc_delete(c, &k, sizeof k);
        }
        usleep(1000);
        cr_assert_eq(pc_stats_get(c, &st), PC_OK);
    } while ((st.pending > 4096 || rounds < 100) && ++rounds < 5000);
    cr_assert_leq(st.pending, 4096, "later writes did not free the removed");
    before = process_allocated();
    pc_reclaim(c);
    after = process_allocated();
    cr_assert_lt(before - after, (size_t)2 << 20,
                 "%.1f MB that later writes never free (pending %lu entries)",
                 (before - after) / 1e6, (unsigned long)st.pending);
    pc_destroy(c);
#endif
}
