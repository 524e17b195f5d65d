/*
 * Limits: the capacity and the byte bound are the cache's, whatever the
 * shard count. A put evicts only when the cache is full (at capacity one
 * new key evicts exactly one entry), pc_len and pc_bytes never pass their
 * limits, even under concurrent puts, and the limits can change at run
 * time: shrinking evicts before returning, growing takes effect at once.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core.h"
#include "hash.h"
#include "testlib.h"

static pc_stats stats(pc_cache *c)
{
    pc_stats s;

    cr_assert_eq(pc_stats_get(c, &s), PC_OK);
    return s;
}

/* Distinct puts up to the capacity evict nothing, whatever the shards. */
static void fill_exactly(size_t cap, unsigned shards)
{
    pc_options o = test_opts(cap);
    pc_cache *c;

    o.shards = shards;
    cr_assert_eq(pc_create(&o, &c), PC_OK);
    for (uint64_t k = 0; k < cap; k++)
        cr_assert_eq(put_u64(c, k, k), PC_OK);
    cr_assert_eq(pc_len(c), cap, "cap %zu shards %u: len %zu", cap, shards,
                 pc_len(c));
    cr_assert_eq(stats(c).evictions, 0, "cap %zu shards %u: evicted early", cap,
                 shards);
    for (uint64_t k = 0; k < cap; k++)
        cr_assert_eq(get_u64(c, k, NULL), PC_OK, "key %lu lost",
                     (unsigned long)k);
    /* At capacity: one new key, one eviction. */
    cr_assert_eq(put_u64(c, cap, cap), PC_OK);
    cr_assert_eq(pc_len(c), cap);
    cr_assert_eq(stats(c).evictions, 1);
    pc_destroy(c);
}

Test(limits, no_eviction_before_the_cache_is_full)
{
    fill_exactly(100000, 0);
    fill_exactly(100, 64);
    fill_exactly(1000, 7);
    fill_exactly(1, 0);
}

/* Keys all in one shard (of 8, under a fixed seed): that shard comes to
 * hold many times its share, as the cache-wide budget allows. Its policy's
 * structures grow past the share they were sized for (the frequency
 * policy's rings stop doubling there while the share suffices), and
 * tombstones from deletes are reused on the way. */
Test(limits, one_shard_may_hold_the_whole_cache)
{
    enum { CAP = 8000, SHARDS = 8, FIRST = 6000, MORE = 3000 };
    pc_options o = test_opts(CAP);
    struct pc__hash_seed seed;
    static uint64_t keys[FIRST + MORE];
    pc_cache *c;

    o.shards = SHARDS;
    o.hash_seed = 0x5eedf00dULL;
    pc__hash_seed_init(&seed, o.hash_seed);
    for (uint64_t k = 0, n = 0; n < FIRST + MORE; k++)
        if (((pc__hash_key(&seed, &k, 8) >> 32) * SHARDS) >> 32 == 0)
            keys[n++] = k;
    cr_assert_eq(pc_create(&o, &c), PC_OK);
    for (size_t i = 0; i < FIRST; i++)
        cr_assert_eq(put_u64(c, keys[i], i), PC_OK);
    for (size_t i = 0; i < FIRST; i += 3)
        cr_assert_eq(pc_delete(c, &keys[i], 8), PC_OK);
    cr_assert_eq(pc_len(c), FIRST - FIRST / 3);
    for (size_t i = 0; i < FIRST; i += 3)
        cr_assert_eq(put_u64(c, keys[i], i), PC_OK);
    cr_assert_eq(pc_len(c), FIRST);
    cr_assert_eq(stats(c).evictions, 0);
    for (size_t i = 0; i < FIRST; i++) {
        uint64_t v = ~0ull;

        cr_assert_eq(get_u64(c, keys[i], &v), PC_OK, "key %zu lost", i);
        cr_assert_eq(v, i);
    }
    /* Up to the capacity in that one shard, still without evicting; then
     * each new key evicts one. */
    for (size_t i = FIRST; i < FIRST + MORE; i++)
        cr_assert_eq(put_u64(c, keys[i], i), PC_OK);
    cr_assert_eq(pc_len(c), CAP);
    cr_assert_eq(stats(c).evictions, FIRST + MORE - CAP);
    cr_assert_eq(get_u64(c, keys[FIRST + MORE - 1], NULL), PC_OK);
    pc_destroy(c);
}

struct racer {
    pc_cache *c;
    uint64_t base;
    size_t cap;
    int over;
};

static void *race_puts(void *p)
{
    struct racer *r = p;

    for (uint64_t i = 0; i < 30000; i++) {
        unsigned char v[64];

        memset(v, (int)i, sizeof v);
        pc_put(r->c, &(uint64_t){r->base + mix64(i) % 50000}, 8, v,
               1 + i % sizeof v);
        if (pc_len(r->c) > r->cap)
            __atomic_store_n(&r->over, 1, __ATOMIC_RELAXED);
    }
    return NULL;
}

Test(limits, len_and_bytes_never_pass_their_limits_under_concurrent_puts)
{
    pc_options o = test_opts(500);
    struct racer r[3];
    pthread_t th[3];
    pc_cache *c;

    o.max_bytes = 500 * 40;
    cr_assert_eq(pc_create(&o, &c), PC_OK);
    for (int i = 0; i < 3; i++) {
        r[i] = (struct racer){c, (uint64_t)i << 40, 500, 0};
        pthread_create(&th[i], NULL, race_puts, &r[i]);
    }
    for (int i = 0; i < 3; i++) {
        pthread_join(th[i], NULL);
        cr_assert_eq(r[i].over, 0, "pc_len passed the capacity");
    }
    cr_assert_leq(pc_len(c), 500);
    cr_assert_leq(pc_bytes(c), o.max_bytes);
    pc_destroy(c);
}

static pc_status put_bytes(pc_cache *c, uint64_t k, size_t vlen)
{
    unsigned char v[4096];

    memset(v, (int)k, vlen);
    return pc_put(c, &k, sizeof k, v, vlen);
}

Test(limits, byte_bound_evicts_until_a_put_fits)
{
    pc_options o = test_opts(1000);
    pc_cache *c;

    o.max_bytes = 1000;
    o.shards = 1;
    cr_assert_eq(pc_create(&o, &c), PC_OK);
    for (uint64_t k = 0; k < 9; k++)
        cr_assert_eq(put_bytes(c, k, 92), PC_OK); /* 100 bytes each */
    cr_assert_eq(pc_bytes(c), 900);
    cr_assert_eq(stats(c).evictions, 0);
    cr_assert_eq(put_bytes(c, 100, 492), PC_OK); /* needs 4 out */
    cr_assert_leq(pc_bytes(c), 1000);
    cr_assert_eq(stats(c).evictions, 4);
    cr_assert_eq(pc_bytes(c), 500 + 5 * 100);
    /* Larger than the bound by itself: refused, nothing changed. */
    cr_assert_eq(put_bytes(c, 200, 993), PC_EINVAL);
    cr_assert_eq(pc_bytes(c), 1000);
    cr_assert_eq(get_u64(c, 200, NULL), PC_NOTFOUND);
    /* Exactly the bound fits, alone. */
    cr_assert_eq(put_bytes(c, 300, 992), PC_OK);
    cr_assert_eq(pc_bytes(c), 1000);
    cr_assert_eq(pc_len(c), 1);
    pc_destroy(c);
}

Test(limits, replacing_with_a_larger_value_evicts_others_first)
{
    pc_options o = test_opts(100);
    pc_cache *c;

    o.max_bytes = 400;
    o.shards = 1;
    cr_assert_eq(pc_create(&o, &c), PC_OK);
    for (uint64_t k = 0; k < 4; k++)
        cr_assert_eq(put_bytes(c, k, 92), PC_OK);
    cr_assert_eq(put_bytes(c, 3, 192), PC_OK); /* +100 bytes */
    cr_assert_leq(pc_bytes(c), 400);
    cr_assert_eq(get_u64(c, 3, NULL), PC_ERANGE, "the key itself was lost");
    cr_assert_eq(pc_len(c), 3);
    /* Shrinking a value returns its bytes. */
    cr_assert_eq(put_bytes(c, 3, 8), PC_OK);
    cr_assert_eq(pc_bytes(c), 2 * 100 + 16);
    pc_destroy(c);
}

/* Causes reported per key (keys 0..15). */
struct causes {
    unsigned n[16][PC_REMOVED_CLEARED + 1];
};

static void count_cause(void *ctx, const void *key, size_t klen,
                        const void *val, size_t vlen, pc_removal_cause cause)
{
    struct causes *cs = ctx;
    uint64_t k;

    (void)val;
    (void)vlen;
    cr_assert_eq(klen, 8);
    memcpy(&k, key, 8);
    if (k < 16)
        cs->n[k][cause]++;
}

/* The key a growing replacement keeps is the one every policy would evict
 * first (the oldest, never read): it must stay, reported REPLACED, while
 * another entry makes room; a PC_PUT_IF_PRESENT of it must succeed. */
static void grow_first_victim(unsigned flags)
{
    pc_options o = test_opts(100);
    struct causes cs = {0};
    unsigned char v[92];
    size_t vlen = 0;
    pc_put_args args = {.flags = flags};
    pc_cache *c;
    uint64_t k0 = 0;

    o.max_bytes = 100;
    o.shards = 1;
    o.on_removal = count_cause;
    o.removal_ctx = &cs;
    cr_assert_eq(pc_create(&o, &c), PC_OK);
    for (uint64_t k = 0; k < 10; k++)
        cr_assert_eq(put_bytes(c, k, 2), PC_OK); /* 10 bytes each: full */
    cr_assert_eq(pc_bytes(c), 100);
    memset(v, 7, sizeof v);
    cr_assert_eq(pc_put_ex(c, &k0, 8, v, 10, &args), PC_OK,
                 "flags %u: the key's own put refused", flags);
    cr_assert_eq(pc_get(c, &k0, 8, v, sizeof v, &vlen), PC_OK,
                 "flags %u: the key was evicted for its own value", flags);
    cr_assert_eq(vlen, 10);
    cr_assert_eq(cs.n[0][PC_REMOVED_REPLACED], 1);
    cr_assert_eq(cs.n[0][PC_REMOVED_EVICTED], 0);
    /* +8 bytes: exactly one other 10-byte entry evicted. */
    cr_assert_eq(stats(c).evictions, 1);
    cr_assert_eq(pc_len(c), 9);
    cr_assert_eq(pc_bytes(c), 98);
    /* Growing it again, past everything else: all others go, it stays. */
    cr_assert_eq(pc_put_ex(c, &k0, 8, v, 92, &args), PC_OK);
    cr_assert_eq(pc_len(c), 1);
    cr_assert_eq(pc_bytes(c), 100);
    cr_assert_eq(get_u64(c, 0, NULL), PC_ERANGE, "the key itself was lost");
    cr_assert_eq(cs.n[0][PC_REMOVED_EVICTED], 0);
    cr_assert_eq(cs.n[0][PC_REMOVED_REPLACED], 2);
    pc_destroy(c);
}

Test(limits, a_growing_replacement_never_evicts_its_own_key)
{
    grow_first_victim(0);
    grow_first_victim(PC_PUT_IF_PRESENT);
}

Test(limits, set_capacity_shrinks_now_and_grows_at_once)
{
    pc_cache *c = make_cache(100);

    for (uint64_t k = 0; k < 100; k++)
        put_u64(c, k, k);
    cr_assert_eq(pc_set_capacity(c, 0), PC_EINVAL);
    cr_assert_eq(pc_set_capacity(NULL, 5), PC_EINVAL);
    cr_assert_eq(pc_set_capacity(c, PC_CAPACITY_MAX + 1), PC_EINVAL);
    cr_assert_eq(pc_capacity(c), 100, "a refused call changed the capacity");
    cr_assert_eq(pc_set_capacity(c, 10), PC_OK);
    cr_assert_eq(pc_capacity(c), 10);
    cr_assert_eq(pc_len(c), 10);
    cr_assert_eq(stats(c).evictions, 90);
    cr_assert_eq(pc_set_capacity(c, 50), PC_OK);
    for (uint64_t k = 1000; k < 1040; k++)
        put_u64(c, k, k);
    cr_assert_eq(pc_len(c), 50);
    cr_assert_eq(stats(c).evictions, 90, "grown capacity evicted");
    pc_destroy(c);
}

#ifdef PC_DEBUG

/* A put stalled inside its budget claim, after it read the old limits,
 * while another thread lowers a limit (debug builds' hook): the shrink may
 * find nothing to do yet (clock: no lock of the put's), so the put must
 * check again once its entry is in. The stall ends when the shrink has
 * returned, or after 200 ms if it waits for the put's lock (lru; and
 * frequency when the capacity is lowered: its parameters follow it under
 * every shard's lock before the shrink; the put, which claimed against
 * the old limit, still checks again). */
static struct stall budget_stall; /* pc__debug_budget_hook's */

static void stall_hook(void)
{
    stall_at(&budget_stall);
}

struct lowering {
    pc_cache *c;
    bool bytes; /* lower max_bytes, not the capacity */
    int done;
    long tid; /* set_big_bound's thread, once it runs (atomic) */
};

static void *lower_limit(void *p)
{
    struct lowering *l = p;

    if (l->bytes)
        cr_assert_eq(pc_set_max_bytes(l->c, 50 * 16), PC_OK);
    else
        cr_assert_eq(pc_set_capacity(l->c, 50), PC_OK);
    __atomic_store_n(&l->done, 1, __ATOMIC_RELEASE);
    return NULL;
}

static uint64_t stalled_key;

static void *put_new_key(void *p)
{
    put_u64(p, stalled_key, 1);
    return NULL;
}

static void race_lowered_limit(bool bytes)
{
    pc_options o = test_opts(100);
    struct lowering l = {NULL, bytes, 0, 0};
    pthread_t putter, setter;

    struct pc__hash_seed seed;

    if (bytes) {
        o.max_bytes = 100 * 16;
        o.capacity = 1000;
    }
    /* Four shards (clock, frequency), the stalled key not in the first,
     * where a shrink starts: it finds the cache within the new limit
     * without waiting for the put's lock. */
    o.shards = 4;
    o.hash_seed = 0xfeedULL;
    pc__hash_seed_init(&seed, o.hash_seed);
    stalled_key = 1000;
    while ((pc__hash_key(&seed, &stalled_key, 8) >> 32) * 4 >> 32 == 0)
        stalled_key++;
    cr_assert_eq(pc_create(&o, &l.c), PC_OK);
    for (uint64_t k = 0; k < 50; k++)
        put_u64(l.c, k, k);
    budget_stall.entered = budget_stall.release = 0;
    __atomic_store_n(&budget_stall.armed, 1, __ATOMIC_RELEASE);
    pc__debug_budget_hook = stall_hook;
    pthread_create(&putter, NULL, put_new_key, l.c);
    while (!__atomic_load_n(&budget_stall.entered, __ATOMIC_ACQUIRE))
        sched_yield();
    pthread_create(&setter, NULL, lower_limit, &l);
    for (int i = 0; i < 200 && !__atomic_load_n(&l.done, __ATOMIC_ACQUIRE); i++)
        usleep(1000);
    __atomic_store_n(&budget_stall.release, 1, __ATOMIC_RELEASE);
    pthread_join(putter, NULL);
    pthread_join(setter, NULL);
    pc__debug_budget_hook = NULL;
    if (bytes)
        cr_assert_leq(pc_bytes(l.c), 50 * 16, "bytes %lu over the bound",
                      (unsigned long)pc_bytes(l.c));
    else
        cr_assert_leq(pc_len(l.c), 50, "len %zu over the capacity",
                      pc_len(l.c));
    for (uint64_t k = 2000; k < 3000; k++)
        put_u64(l.c, k, k);
    cr_assert_leq(pc_len(l.c), bytes ? 50 : pc_capacity(l.c));
    cr_assert_leq(pc_bytes(l.c), 50 * 16);
    pc_destroy(l.c);
}

Test(limits, a_put_racing_a_lowered_limit_ends_within_it)
{
    race_lowered_limit(false);
    race_lowered_limit(true);
}

/* A bound set far above what the cache holds evicts nothing, even for the
 * puts that run while the setter makes the byte count exact (clock,
 * frequency: with no bound, shards keep their puts' byte changes, and the
 * count alone, which deletes lowered, read near 2^64; a put in a shard
 * already settled, with the bound already visible, then evicted its whole
 * shard and others: 22 of 102 entries). A put into shard 1 stalls in its
 * claim, holding that shard; the setter settles shard 0 and waits for
 * shard 1; a put into shard 0 runs meanwhile; then the stall ends. */
static unsigned shard4(const struct pc__hash_seed *seed, uint64_t k)
{
    return (unsigned)((pc__hash_key(seed, &k, 8) >> 32) * 4 >> 32);
}

static void *set_big_bound(void *p)
{
    struct lowering *l = p;

    __atomic_store_n(&l->tid, test_gettid(), __ATOMIC_RELEASE);
    cr_assert_eq(pc_set_max_bytes(l->c, 1u << 20), PC_OK);
    __atomic_store_n(&l->done, 1, __ATOMIC_RELEASE);
    return NULL;
}

/* A thread's put of `key` (1 as its value) into `c`, which must succeed. */
struct one_put {
    pc_cache *c;
    uint64_t key;
    int done; /* atomic */
};

static void *put_one(void *p)
{
    struct one_put *op = p;

    cr_assert_eq(put_u64(op->c, op->key, 1), PC_OK);
    __atomic_store_n(&op->done, 1, __ATOMIC_RELEASE);
    return NULL;
}

Test(limits, setting_a_roomy_bound_evicts_nothing_while_it_settles)
{
    pc_options o = test_opts(10000);
    struct lowering l = {NULL, true, 0, 0};
    struct pc__hash_seed seed;
    pthread_t putter, setter, p0;
    struct one_put p0_put = {0};
    int kept = 0;

    o.shards = 4;
    o.hash_seed = 0xfeedULL;
    pc__hash_seed_init(&seed, o.hash_seed);
    cr_assert_eq(pc_create(&o, &l.c), PC_OK);
    for (uint64_t k = 0; k < 2000; k++)
        cr_assert_eq(put_u64(l.c, k, k), PC_OK);
    for (uint64_t k = 0; k < 2000; k++) /* no bound: deletes go to c->bytes */
        if (k % 20 != 0)
            cr_assert_eq(pc_delete(l.c, &k, 8), PC_OK);
        else
            kept++;
    cr_assert_eq(pc_bytes(l.c), (uint64_t)kept * 16);
    for (stalled_key = 100000; shard4(&seed, stalled_key) != 1; stalled_key++)
        ;
    for (p0_put.key = 200000; shard4(&seed, p0_put.key) != 0; p0_put.key++)
        ;
    budget_stall.entered = budget_stall.release = 0;
    __atomic_store_n(&budget_stall.armed, 1, __ATOMIC_RELEASE);
    pc__debug_budget_hook = stall_hook;
    pthread_create(&putter, NULL, put_new_key,
                   l.c); /* stalls, shard 1 locked */
    while (!__atomic_load_n(&budget_stall.entered, __ATOMIC_ACQUIRE))
        sched_yield();
    pthread_create(&setter, NULL, set_big_bound,
                   &l); /* settles shard 0, waits */
    while (__atomic_load_n(&l.tid, __ATOMIC_ACQUIRE) == 0)
        sched_yield();
    cr_assert(test_thread_blocked(l.tid, 10000), "the setter never blocked");
    /* (on shard 1's lock) */
    p0_put.c = l.c;
    pthread_create(&p0, NULL, put_one, &p0_put); /* a put into shard 0 */
    /* It goes ahead while the setter waits (a deadlock breaker of 10 s:
     * were it to wait for the setter, the release below lets it go). */
    for (int i = 0;
         i < 10000 && !__atomic_load_n(&p0_put.done, __ATOMIC_ACQUIRE); i++)
        usleep(1000);
    __atomic_store_n(&budget_stall.release, 1, __ATOMIC_RELEASE);
    pthread_join(putter, NULL);
    pthread_join(setter, NULL);
    pthread_join(p0, NULL);
    pc__debug_budget_hook = NULL;
    cr_assert_eq(pc_bytes(l.c), (uint64_t)(kept + 2) * 16, "bytes %lu",
                 (unsigned long)pc_bytes(l.c));
    cr_assert_eq(stats(l.c).evictions, 0,
                 "%lu evicted under a bound of 1 MiB "
                 "with %d entries (%d bytes) held",
                 (unsigned long)stats(l.c).evictions, kept + 2,
                 (kept + 2) * 16);
    cr_assert_eq(pc_len(l.c), (size_t)kept + 2, "len %zu", pc_len(l.c));
    pc_destroy(l.c);
}

/* A put that runs while pc_set_max_bytes sets a bound owes nothing once
 * the bound is visible (helper-47: when the put read the bound first and
 * then whether a setter was settling, it could read "no bound" before the
 * setter stored it and "not settling" after the setter returned, and owe
 * its bytes to a shard already settled; the next put there failed the
 * assertion that no shard owes under a bound). The setter stalls after
 * settling, the put between its two loads, then the setter finishes. */
static struct stall owe_st, settled_st; /* the two hooks' */

static void owe_stall(void)
{
    stall_at(&owe_st);
}

static void settled_stall(void)
{
    stall_at(&settled_st);
}

Test(limits, a_put_racing_a_bound_being_set_owes_nothing_under_it)
{
    pc_options o = test_opts(1000);
    struct lowering l = {NULL, true, 0, 0};
    struct pc__hash_seed seed;
    struct one_put op;
    pthread_t putter, setter;

    if (strcmp(PC_TEST_POLICY, "lru") == 0)
        return; /* (no put owes in the exact-LRU build: no stall to meet) */

    /* A key not in shard 0, where the setter's shrink looks first (it
     * finds room there and returns without waiting for the put). */
    o.shards = 4;
    o.hash_seed = 0xfeedULL;
    pc__hash_seed_init(&seed, o.hash_seed);
    for (op.key = 7; shard4(&seed, op.key) == 0; op.key++)
        ;
    cr_assert_eq(pc_create(&o, &l.c), PC_OK);
    for (uint64_t k = 100; k < 110; k++)
        cr_assert_eq(put_u64(l.c, k, k), PC_OK);
    __atomic_store_n(&settled_st.armed, 1, __ATOMIC_RELEASE);
    pc__debug_settled_hook = settled_stall;
    pthread_create(&setter, NULL, set_big_bound, &l);
    while (!__atomic_load_n(&settled_st.entered,
                            __ATOMIC_ACQUIRE)) /* all settled */
        sched_yield();
    __atomic_store_n(&owe_st.armed, 1, __ATOMIC_RELEASE);
    pc__debug_owe_hook = owe_stall;
    op.c = l.c;
    pthread_create(&putter, NULL, put_one, &op);
    while (!__atomic_load_n(&owe_st.entered, __ATOMIC_ACQUIRE)) /* lock held */
        sched_yield();
    __atomic_store_n(&settled_st.release, 1,
                     __ATOMIC_RELEASE); /* store, unsettle */
    pthread_join(setter, NULL);
    __atomic_store_n(&owe_st.release, 1, __ATOMIC_RELEASE);
    pthread_join(putter, NULL);
    pc__debug_owe_hook = NULL;
    pc__debug_settled_hook = NULL;
    /* A second put into that shard, under the bound: PC__ASSERT(max ==
     * 0 || s->owed <= 0) in pc__policy_put. */
    cr_assert_eq(put_u64(l.c, op.key, 8), PC_OK);
    cr_assert_eq(pc_bytes(l.c), 11 * 16);
    pc_destroy(l.c);
}

/* Puts that free bytes while pc_set_max_bytes lowers the bound, after it
 * settled the shards and before it stores the new bound, keep credit
 * capped by the old bound (shard_state.h). The setter must take it back
 * once the new bound is stored (helper-48: it did not, so the shrink
 * evicted 20 entries of shard 0 to make room that the other shards'
 * credit held, and with shard 0 filled again 2104 of the new 8 KiB bound
 * stayed idle, against its cap of 64). Here shards 1-3 replace twelve
 * 1 KiB values with 1-byte ones in that window, and the cache then holds
 * 100 * 64 + 12 * 9 bytes, under the new bound: nothing is evicted, and
 * new keys fill it to within its cap and a put's size. */
static void *set_small_bound(void *p)
{
    cr_assert_eq(pc_set_max_bytes(p, 8 << 10), PC_OK);
    return NULL;
}

Test(limits, a_bound_lowered_while_puts_free_bytes_takes_their_credit_back)
{
    static const unsigned char val[1024];
    pc_options o = test_opts(100000);
    struct pc__hash_seed seed;
    uint64_t keys[12], k = 0;
    pthread_t setter;

    o.shards = 4;
    o.hash_seed = 0xfeedULL;
    o.max_bytes = 1 << 20;
    pc__hash_seed_init(&seed, o.hash_seed);
    pc_cache *c = make_cache_opts(&o);
    for (int i = 0; i < 12; i++) { /* four in each of shards 1-3 */
        keys[i] = 1000000 * (uint64_t)(i / 4 + 1) + (uint64_t)i;
        while (shard4(&seed, keys[i]) != (unsigned)(i / 4 + 1))
            keys[i] += 16;
        cr_assert_eq(pc_put(c, &keys[i], 8, val, 1024), PC_OK);
    }
    for (int i = 0; i < 100; i++, k++) { /* 100 in shard 0 */
        while (shard4(&seed, k) != 0)
            k++;
        cr_assert_eq(pc_put(c, &k, 8, val, 56), PC_OK);
    }
    settled_st = (struct stall){1, 0, 0};
    pc__debug_settled_hook = settled_stall;
    pthread_create(&setter, NULL, set_small_bound, c);
    while (!__atomic_load_n(&settled_st.entered, __ATOMIC_ACQUIRE))
        sched_yield();
    for (int i = 0; i < 12; i++) /* the old bound still visible */
        cr_assert_eq(pc_put(c, &keys[i], 8, val, 1), PC_OK);
    __atomic_store_n(&settled_st.release, 1, __ATOMIC_RELEASE);
    pthread_join(setter, NULL);
    pc__debug_settled_hook = NULL;
    cr_assert_eq(stats(c).evictions, 0, "the lower evicted %lu",
                 (unsigned long)stats(c).evictions);
    cr_assert_eq(pc_bytes(c), 100 * 64 + 12 * 9);
    for (int i = 0; i < 2000; i++, k++) {
        while (shard4(&seed, k) != 0)
            k++;
        cr_assert_eq(pc_put(c, &k, 8, val, 56), PC_OK);
    }
    cr_assert_leq(pc_bytes(c), 8 << 10);
    cr_assert_geq(pc_bytes(c), (8 << 10) - (8 << 10) / 128 - 64,
                  "%lu of %d bytes held", (unsigned long)pc_bytes(c), 8 << 10);
    pc_destroy(c);
}

/* pc_set_max_bytes takes back the credit puts kept
 * under the old bound only "if (max_bytes != 0 && was != 0 && max_bytes <
 * was)": `was` is whatever bound its exchange replaced. If another call
 * removed the bound (pc_set_max_bytes(c, 0), which neither settles nor
 * waits) between this setter's settling and its store, `was` reads 0 and
 * the credit kept under the old 1 MiB bound (up to 1 MiB >> 7 = 8 KiB for
 * one shard) stays with the shard under the new 8 KiB bound: here 6000
 * bytes freed by replacements while the setter stalled after settling.
 * Puts that need no more than their victims free never touch it, so the
 * cache then holds only about 2 KiB of its 8 KiB bound for good, against
 * the documented "at most 1/128 of the bound" kept as credit. */
static void *set_8k_bound(void *p)
{
    cr_assert_eq(pc_set_max_bytes(p, 8192), PC_OK);
    return NULL;
}

Test(limits, a_bound_removed_while_another_is_set_leaves_no_old_credit)
{
    static const unsigned char val[1000];
    pc_options o = test_opts(100000);
    pthread_t setter;
    uint64_t k;
    pc_cache *c;

    if (is_lru())
        return;
    o.shards = 1;
    o.max_bytes = 1 << 20;
    c = make_cache_opts(&o);
    cr_assert_not_null(c);
    for (k = 0; k < 100; k++)
        cr_assert_eq(put_u64(c, k, k), PC_OK); /* 16 bytes each */
    for (k = 500; k < 506; k++)
        cr_assert_eq(pc_put(c, &k, 8, val, sizeof val), PC_OK);
    settled_st = (struct stall){1, 0, 0};
    pc__debug_settled_hook = settled_stall;
    pthread_create(&setter, NULL, set_8k_bound, c);
    while (!__atomic_load_n(&settled_st.entered, __ATOMIC_ACQUIRE))
        sched_yield();
    for (k = 500; k < 506; k++) /* 6000 bytes freed: the shard's credit */
        cr_assert_eq(pc_put(c, &k, 8, val, 0), PC_OK);
    cr_assert_eq(pc_set_max_bytes(c, 0), PC_OK); /* another caller */
    __atomic_store_n(&settled_st.release, 1, __ATOMIC_RELEASE);
    pthread_join(setter, NULL);
    pc__debug_settled_hook = NULL;
    for (k = 1000; k < 3000; k++)
        cr_assert_eq(put_u64(c, k, k), PC_OK);
    cr_assert_leq(pc_bytes(c), 8192);
    cr_assert_geq(pc_bytes(c), 8192 - 8192 / 128 - 16,
                  "%lu of 8192 bytes held after 2000 puts of new keys",
                  (unsigned long)pc_bytes(c));
    pc_destroy(c);
}

/* The same with TWO other calls, both between the setter's settling and
 * its store: one sets a large bound (1 MiB: a shard may keep 8 KiB of
 * credit under it), replacements free 6000 bytes as credit, the other
 * removes the bound. The setter began with no bound in force (before ==
 * 0) and its store replaces none (was == 0), so it did not settle again,
 * and the credit kept under the 1 MiB bound stayed under its 8 KiB one:
 * the cache then holds about 2 KiB of it for good (review-lim-56). */
static void *set_1m_bound(void *p)
{
    cr_assert_eq(pc_set_max_bytes(p, 1 << 20), PC_OK);
    return NULL;
}

Test(limits, a_bound_set_and_removed_while_another_is_set_leaves_no_credit)
{
    static const unsigned char val[1000];
    pc_options o = test_opts(100000);
    pthread_t setter, other;
    uint64_t k;
    pc_cache *c;

    if (is_lru())
        return;
    o.shards = 1;
    c = make_cache_opts(&o); /* no bound */
    cr_assert_not_null(c);
    for (k = 0; k < 100; k++)
        cr_assert_eq(put_u64(c, k, k), PC_OK); /* 16 bytes each */
    for (k = 500; k < 506; k++)
        cr_assert_eq(pc_put(c, &k, 8, val, sizeof val), PC_OK);
    settled_st = (struct stall){1, 0, 0};
    pc__debug_settled_hook = settled_stall;
    pthread_create(&setter, NULL, set_8k_bound, c);
    while (!__atomic_load_n(&settled_st.entered, __ATOMIC_ACQUIRE))
        sched_yield();
    pthread_create(&other, NULL, set_1m_bound, c); /* another caller */
    pthread_join(other, NULL);
    for (k = 500; k < 506; k++) /* 6000 bytes freed: the shard's credit */
        cr_assert_eq(pc_put(c, &k, 8, val, 0), PC_OK);
    cr_assert_eq(pc_set_max_bytes(c, 0), PC_OK); /* a third caller */
    __atomic_store_n(&settled_st.release, 1, __ATOMIC_RELEASE);
    pthread_join(setter, NULL);
    pc__debug_settled_hook = NULL;
    for (k = 1000; k < 3000; k++)
        cr_assert_eq(put_u64(c, k, k), PC_OK);
    cr_assert_leq(pc_bytes(c), 8192);
    cr_assert_geq(pc_bytes(c), 8192 - 8192 / 128 - 16,
                  "%lu of 8192 bytes held after 2000 puts of new keys",
                  (unsigned long)pc_bytes(c));
    pc_destroy(c);
}

/* a put whose own shard is empty evicts in the
 * other shards (evict_elsewhere) until the budget has room for its whole
 * entry. If pc_set_max_bytes lowers the bound below the put's size while
 * it does, that room can never come (pc__budget_room(need_entry, bytes)
 * with bytes > max), and shed() has no pc__budget_fits check (claim_here
 * has one): the put evicts EVERY entry of every other shard, then is
 * refused (PC_EINVAL). The setter's own shrink would have kept what fits
 * the new bound. Here shard 1 holds 60000 16-byte entries (the bound
 * exactly); a 480 KB put into empty shard 0 must evict about half of them
 * under the old bound; the setter, stalled after settling, stores a bound
 * of 480000 bytes (below the put's 480008) once the put's evictions have
 * begun. What is left (about 30000 entries, 480000 bytes) fits the new
 * bound: nothing more needs to go, but the cache ends empty. */
static struct stall lower_st;
static pc_cache *lower_c;

static void lower_when_shedding(void)
{
    /* The put's shed in shard 1 has begun: its evictions lower pc_len. */
    for (int i = 0; i < 2000000 && pc_len(lower_c) > 60000 - 50; i++)
        sched_yield();
}

static void *set_bound_480k(void *p)
{
    cr_assert_eq(pc_set_max_bytes(p, 480000), PC_OK);
    return NULL;
}

Test(limits, a_bound_lowered_during_evict_elsewhere_keeps_what_fits)
{
    static unsigned char big[480000];
    pc_options o = test_opts(1000000);
    struct pc__hash_seed seed;
    pthread_t setter;
    uint64_t k, pk;
    pc_status st;
    size_t n = 0;

    if (is_lru())
        return;
    (void)lower_st;
    o.shards = 2;
    o.hash_seed = 0xabcdULL;
    o.max_bytes = 60000 * 16;
    pc__hash_seed_init(&seed, o.hash_seed);
    cr_assert_eq(pc_create(&o, &lower_c), PC_OK);
    for (k = 0; n < 60000; k++)
        if ((pc__hash_key(&seed, &k, 8) >> 32) * 2 >> 32 == 1) {
            cr_assert_eq(put_u64(lower_c, k, k), PC_OK);
            n++;
        }
    cr_assert_eq(pc_len(lower_c), 60000);
    for (pk = k; (pc__hash_key(&seed, &pk, 8) >> 32) * 2 >> 32 != 0; pk++)
        ;
    pc__debug_settled_hook = lower_when_shedding;
    pthread_create(&setter, NULL, set_bound_480k, lower_c);
    usleep(20000); /* the setter has settled both shards and waits */
    st = pc_put(lower_c, &pk, 8, big, sizeof big);
    pthread_join(setter, NULL);
    pc__debug_settled_hook = NULL;
    cr_assert_leq(pc_bytes(lower_c), 480000);
    /* The put is refused (PC_EINVAL) if the bound was lowered before its
     * retry, else stored (PC_OK); either way, at least the entries that fit the
     * new bound once the put had what it needed under the old one (60000 -
     * 30001 of 16 bytes) remain. */
    cr_assert_geq(pc_len(lower_c), 29000,
                  "the put (status %d) evicted all but %zu entries (%lu "
                  "bytes) of a cache within the new bound",
                  (int)st, pc_len(lower_c), (unsigned long)pc_bytes(lower_c));
    pc_destroy(lower_c);
}
#endif

/* A shrink of a cache holding a few entries, each used twice since it
 * came in (frequency: all on probation, all due for promotion, nothing yet
 * in MAIN; its victim choice once came back empty-handed). */
Test(limits, shrinking_evicts_entries_used_twice_on_probation)
{
    pc_cache *c = make_cache(1000);

    for (uint64_t k = 0; k < 3; k++) {
        put_u64(c, k, k);
        put_u64(c, k, k + 1); /* a use */
        put_u64(c, k, k + 2); /* and another */
    }
    cr_assert_eq(pc_len(c), 3);
    cr_assert_eq(pc_set_max_bytes(c, 16), PC_OK);
    cr_assert_eq(pc_len(c), 1);
    cr_assert_eq(pc_set_capacity(c, 1), PC_OK);
    cr_assert_eq(pc_set_max_bytes(c, 1), PC_OK);
    cr_assert_eq(pc_len(c), 0);
    cr_assert_eq(pc_bytes(c), 0);
    pc_destroy(c);
}

/* Puts racing pc_set_max_bytes flipping between a bound smaller than the
 * entries and none: new keys and growing replacements of one key. A put
 * checked against one bound claims within it, whatever the setter does
 * meanwhile (lru: before, a claim could evict the whole cache and then its
 * sentinel, or the entry being replaced); at rest the cache is within the
 * last bound set and every count adds up. */
struct flipper {
    pc_cache *c;
    uint64_t low;
    int stop;
};

static void *flip_max_bytes(void *p)
{
    struct flipper *f = p;

    while (!__atomic_load_n(&f->stop, __ATOMIC_ACQUIRE)) {
        pc_set_max_bytes(f->c, f->low);
        pc_set_max_bytes(f->c, 0);
    }
    return NULL;
}

Test(limits, puts_racing_a_flipping_byte_bound_stay_consistent)
{
    pc_options o = test_opts(1000);
    unsigned char small[40] = {0}, big[100] = {0};
    struct flipper f = {NULL, 60, 0};
    pthread_t t;

    cr_assert_eq(pc_create(&o, &f.c), PC_OK);
    pthread_create(&t, NULL, flip_max_bytes, &f);
    for (uint64_t i = 0; i < 100000; i++) {
        pc_status st = pc_put(f.c, &i, 8, big, sizeof big);

        cr_assert(st == PC_OK || st == PC_EINVAL, "put: %d", st);
    }
    for (int i = 0; i < 50000; i++) {
        pc_put(f.c, "K", 1, small, sizeof small);
        pc_put(f.c, "K", 1, big, sizeof big);
    }
    __atomic_store_n(&f.stop, 1, __ATOMIC_RELEASE);
    pthread_join(t, NULL);
    cr_assert_eq(pc_set_max_bytes(f.c, 1000), PC_OK);
    cr_assert_leq(pc_bytes(f.c), 1000);
    cr_assert_leq(pc_len(f.c), 1000);
    cr_assert_eq(pc_put(f.c, "K", 1, big, sizeof big), PC_OK);
    cr_assert_eq(pc_get(f.c, "K", 1, NULL, 0, NULL), PC_ERANGE);
    pc_clear(f.c);
    cr_assert_eq(pc_len(f.c), 0);
    cr_assert_eq(pc_bytes(f.c), 0, "bytes %lu after clear: accounting drifted",
                 (unsigned long)pc_bytes(f.c));
    pc_destroy(f.c);
}

/* Bytes that shards keep to themselves while no bound is set (the CLOCK
 * build's, shard_state.h) add up. Two writers put values of 1..64 bytes
 * (new keys, which evict, and replacements that grow or shrink) and
 * delete, while a third thread sets and removes a bound; at rest pc_bytes
 * and pc_stats's bytes are what the puts added less what the removal
 * listener reported, and again after a last bound, which the cache is
 * then within, and after puts with no bound. */
struct byte_model {
    pc_cache *c;
    uint64_t added, removed; /* klen + vlen, atomic */
    unsigned int seed;
    int stop;
};

static void count_removed(void *ctx, const void *key, size_t klen,
                          const void *val, size_t vlen, pc_removal_cause cause)
{
    struct byte_model *m = ctx;

    (void)key, (void)val, (void)cause;
    __atomic_add_fetch(&m->removed, klen + vlen, __ATOMIC_RELAXED);
}

static void model_puts(struct byte_model *m, unsigned int seed, int n)
{
    unsigned char val[64] = {0};

    for (int i = 0; i < n; i++) {
        uint64_t key = (uint64_t)rand_r(&seed) % 2000;
        size_t vlen = 1 + (size_t)rand_r(&seed) % sizeof val;

        if (i % 16 == 15) {
            (void)pc_delete(m->c, &key, sizeof key);
            continue;
        }
        cr_assert_eq(pc_put(m->c, &key, sizeof key, val, vlen), PC_OK);
        __atomic_add_fetch(&m->added, sizeof key + vlen, __ATOMIC_RELAXED);
    }
}

static void *model_writer(void *p)
{
    struct byte_model *m = p;

    model_puts(m, __atomic_add_fetch(&m->seed, 1, __ATOMIC_RELAXED), 100000);
    return NULL;
}

static void *model_flipper(void *p)
{
    struct byte_model *m = p;

    while (!__atomic_load_n(&m->stop, __ATOMIC_ACQUIRE)) {
        pc_set_max_bytes(m->c, 8000);
        sched_yield();
        pc_set_max_bytes(m->c, 0);
        sched_yield();
    }
    return NULL;
}

static void assert_bytes_add_up(struct byte_model *m, const char *when)
{
    uint64_t want = m->added - m->removed;

    cr_assert_eq(pc_bytes(m->c), want,
                 "%s: pc_bytes %lu, puts less removals %lu", when,
                 (unsigned long)pc_bytes(m->c), (unsigned long)want);
    cr_assert_eq(stats(m->c).bytes, want, "%s: stats bytes %lu, want %lu", when,
                 (unsigned long)stats(m->c).bytes, (unsigned long)want);
}

Test(limits, bytes_add_up_with_values_of_many_sizes_and_a_flipping_bound)
{
    struct byte_model m = {NULL, 0, 0, 1, 0};
    pc_options o = test_opts(500);
    pthread_t w[2], f;

    o.on_removal = count_removed;
    o.removal_ctx = &m;
    cr_assert_eq(pc_create(&o, &m.c), PC_OK);
    model_puts(&m, 99, 5000); /* no bound: full, every shard owing */
    assert_bytes_add_up(&m, "unbounded");
    pthread_create(&f, NULL, model_flipper, &m);
    for (int i = 0; i < 2; i++)
        pthread_create(&w[i], NULL, model_writer, &m);
    for (int i = 0; i < 2; i++)
        pthread_join(w[i], NULL);
    __atomic_store_n(&m.stop, 1, __ATOMIC_RELEASE);
    pthread_join(f, NULL);
    assert_bytes_add_up(&m, "after the race");
    cr_assert_eq(pc_set_max_bytes(m.c, 3000), PC_OK);
    cr_assert_leq(pc_bytes(m.c), 3000);
    assert_bytes_add_up(&m, "bounded");
    model_puts(&m, 7, 5000);
    cr_assert_leq(pc_bytes(m.c), 3000);
    assert_bytes_add_up(&m, "puts under the bound");
    cr_assert_eq(pc_set_max_bytes(m.c, 0), PC_OK);
    model_puts(&m, 8, 5000);
    assert_bytes_add_up(&m, "unbounded again");
    pc_clear(m.c);
    cr_assert_eq(pc_bytes(m.c), 0);
    cr_assert_eq(m.removed, m.added);
    pc_destroy(m.c);
}

/* Under a byte bound a shard of the CLOCK build keeps the bytes its puts
 * free (victims' beyond the new entry's, a smaller replacement's) as credit
 * for its next puts, so that puts of values of different sizes do not all
 * write the cache's byte count; the shards together keep at most 1/128 of
 * the bound (shard_state.h). So a cache filled under a bound, by two
 * writers of 1..64-byte values with deletes, then by new keys, holds all
 * of it but that and one put's size (the exact LRU, which keeps no credit:
 * all but one put's size), also after new keys of small values that
 * each evict a larger entry; its bytes add up; a put of the whole bound
 * evicts everything else and fits (credit that other shards held must not
 * keep it out); a clear leaves the cache's count at 0, credit included;
 * and a lowered bound evicts down to it, not further by the credit shards
 * held. */
static void fill_new_keys(struct byte_model *m, uint64_t from, int n,
                          size_t vlen)
{
    unsigned char val[64] = {0};

    for (uint64_t k = from; k < from + (uint64_t)n; k++) {
        cr_assert_eq(pc_put(m->c, &k, sizeof k, val, vlen), PC_OK);
        __atomic_add_fetch(&m->added, sizeof k + vlen, __ATOMIC_RELAXED);
    }
}

Test(limits, a_byte_bound_is_used_but_for_the_credit_its_shards_keep,
     .timeout = 60)
{
    enum { MAX = 64 << 10, PUT = 8 + 64 };
    const uint64_t slack = MAX / 128 + PUT;
    struct byte_model m = {NULL, 0, 0, 1, 0};
    pc_options o = test_opts(100000); /* the bound binds, not the count */
    static unsigned char whole[MAX - 8];
    uint64_t k = UINT64_MAX;
    pthread_t w[2];

    o.max_bytes = MAX;
    o.on_removal = count_removed;
    o.removal_ctx = &m;
    cr_assert_eq(pc_create(&o, &m.c), PC_OK);
    for (int i = 0; i < 2; i++)
        pthread_create(&w[i], NULL, model_writer, &m);
    for (int i = 0; i < 2; i++)
        pthread_join(w[i], NULL);
    /* New keys of 64-byte values, then of 1-byte values: each of those
     * evicts a larger entry, and its shard has bytes to spare. */
    fill_new_keys(&m, 1u << 20, 2000, 64);
    fill_new_keys(&m, 4u << 20, 2000, 1);
    assert_bytes_add_up(&m, "filled");
    cr_assert_leq(pc_bytes(m.c), MAX);
    cr_assert_geq(pc_bytes(m.c), MAX - slack, "%lu of %d bytes used",
                  (unsigned long)pc_bytes(m.c), MAX);

    cr_assert_eq(pc_put(m.c, &k, sizeof k, whole, sizeof whole), PC_OK);
    __atomic_add_fetch(&m.added, (uint64_t)MAX, __ATOMIC_RELAXED);
    cr_assert_eq(pc_len(m.c), 1);
    cr_assert_eq(pc_bytes(m.c), MAX);
    assert_bytes_add_up(&m, "the whole bound put");

    model_puts(&m, 5, 20000);
    fill_new_keys(&m, 2u << 20, 2000, 1);
    pc_clear(m.c);
    cr_assert_eq(pc_bytes(m.c), 0);
    cr_assert_eq(__atomic_load_n(&m.c->bytes, __ATOMIC_RELAXED), 0,
                 "the cache's count holds %lu bytes after a clear",
                 (unsigned long)m.c->bytes);
    cr_assert_eq(m.removed, m.added);

    model_puts(&m, 6, 20000);
    fill_new_keys(&m, 3u << 20, 2000, 1);
    cr_assert_eq(pc_set_max_bytes(m.c, MAX / 2), PC_OK);
    cr_assert_leq(pc_bytes(m.c), MAX / 2);
    cr_assert_geq(pc_bytes(m.c), MAX / 2 - PUT, "%lu bytes left under %d",
                  (unsigned long)pc_bytes(m.c), MAX / 2);
    assert_bytes_add_up(&m, "shrunk");
    pc_destroy(m.c);
}

/* A capacity whose share per shard passes a shard's limit is refused by
 * pc_set_capacity as by pc_create (clock: 2^32 - 3 entries a shard;
 * frequency: 2^26 - 1), with nothing changed. lru: a capacity past what
 * the index tables chosen at creation hold (125,829,120 entries a table;
 * a cache of capacity 100 has one), and pc_create one past 16 tables'. */
Test(limits, set_capacity_refuses_a_share_past_a_shards_limit)
{
    const size_t lru_table = ((size_t)1 << 27) / 16 * 15;
    pc_options o = test_opts(100);
    size_t over = is_lru()         ? lru_table + 1
                  : is_frequency() ? (size_t)1 << 26
                                   : (size_t)UINT32_MAX - 1;
    pc_cache *c;

    o.shards = 1;
    cr_assert_eq(pc_create(&o, &c), PC_OK);
    put_u64(c, 1, 1);
    cr_assert_eq(pc_set_capacity(c, over), PC_EINVAL);
    cr_assert_eq(pc_capacity(c), 100, "a refused call changed it");
    cr_assert_eq(pc_set_capacity(c, over - 1), PC_OK);
    cr_assert_eq(pc_capacity(c), over - 1);
    o.capacity = is_lru() ? 16 * lru_table + 1 : over;
    cr_assert_eq(pc_create(&o, &(pc_cache *){NULL}), PC_EINVAL);
    cr_assert_eq(get_u64(c, 1, NULL), PC_OK);
    pc_destroy(c);
}

Test(limits, set_max_bytes_shrinks_and_zero_removes_the_bound)
{
    pc_cache *c = make_cache(100);

    for (uint64_t k = 0; k < 20; k++)
        put_bytes(c, k, 92);
    cr_assert_eq(pc_bytes(c), 2000);
    cr_assert_eq(pc_set_max_bytes(NULL, 5), PC_EINVAL);
    cr_assert_eq(pc_set_max_bytes(c, 1000), PC_OK);
    cr_assert_leq(pc_bytes(c), 1000);
    cr_assert_eq(pc_len(c), 10);
    cr_assert_eq(pc_set_max_bytes(c, 0), PC_OK);
    for (uint64_t k = 100; k < 150; k++)
        put_bytes(c, k, 92);
    cr_assert_eq(pc_len(c), 60, "the bound was not removed");
    /* A bound below every entry's size evicts everything. */
    cr_assert_eq(pc_set_max_bytes(c, 10), PC_OK);
    cr_assert_eq(pc_len(c), 0);
    cr_assert_eq(pc_bytes(c), 0);
    pc_destroy(c);
}

Test(limits, bytes_track_every_kind_of_change)
{
    pc_cache *c = make_cache(10);

    cr_assert_eq(pc_bytes(NULL), 0);
    put_bytes(c, 1, 10);
    put_bytes(c, 2, 20);
    cr_assert_eq(pc_bytes(c), 8 + 10 + 8 + 20);
    put_bytes(c, 2, 5);
    cr_assert_eq(pc_bytes(c), 8 + 10 + 8 + 5);
    pc_delete(c, &(uint64_t){1}, 8);
    cr_assert_eq(pc_bytes(c), 8 + 5);
    pc_clear(c);
    cr_assert_eq(pc_bytes(c), 0);
    pc_stats s = stats(c);
    cr_assert_eq(s.bytes, 0);
    pc_destroy(c);
}

/* A replacement that needs more bytes than its shard can free but for the
 * key itself evicts from the other shards (evict_elsewhere), never the key
 * it replaces: one eviction per replacement, whichever shard the round
 * robin starts at. */
static unsigned shard2(const struct pc__hash_seed *seed, uint64_t k)
{
    return (unsigned)((pc__hash_key(seed, &k, 8) >> 32) * 2 >> 32);
}

Test(limits, a_replacement_short_of_bytes_evicts_elsewhere_never_itself)
{
    static const unsigned char val[100];
    pc_options o = test_opts(1000);
    struct pc__hash_seed seed;
    uint64_t a = 1, k = 1000;
    size_t vlen = 0;

    o.shards = 2;
    o.hash_seed = 0xfeedULL;
    o.max_bytes = 1000;
    pc__hash_seed_init(&seed, o.hash_seed);
    while (shard2(&seed, a) != 0)
        a++;
    pc_cache *c = make_cache_opts(&o);
    cr_assert_eq(pc_put(c, &a, 8, val, 8), PC_OK); /* shard 0 holds only a */
    for (int round = 1; round <= 2; round++) {
        while (pc_bytes(c) + 108 <= o.max_bytes) { /* the rest in shard 1 */
            while (shard2(&seed, k) != 1)
                k++;
            cr_assert_eq(pc_put(c, &k, 8, val, 100), PC_OK);
            k++;
        }
        cr_assert_eq(stats(c).evictions, (uint64_t)round - 1);
        /* 92 bytes more than the bound leaves: not in shard 0 but a. */
        cr_assert_eq(pc_put(c, &a, 8, val, 100), PC_OK);
        cr_assert_eq(stats(c).evictions, (uint64_t)round,
                     "round %d: %lu evictions", round,
                     (unsigned long)stats(c).evictions);
        cr_assert_eq(pc_get(c, &a, 8, NULL, 0, &vlen), PC_ERANGE);
        cr_assert_eq(vlen, 100);
        cr_assert_leq(pc_bytes(c), o.max_bytes);
        cr_assert_eq(pc_put(c, &a, 8, val, 8), PC_OK);
    }
    pc_destroy(c);
}

/* ---- a cache held far below its capacity keeps its policy's hit ratio ---- */

#define ZIPF_KEYS 20000
static double zipf_cdf[ZIPF_KEYS];

/* Key i+1 of ZIPF_KEYS with probability proportional to 1/(i+1), from a
 * xorshift state. */
static uint64_t zipf_next(uint64_t *x)
{
    double u;
    size_t lo = 0, hi = ZIPF_KEYS - 1;

    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    u = (double)(*x >> 11) * (1.0 / 9007199254740992.0);
    while (lo < hi) {
        size_t m = (lo + hi) / 2;

        if (zipf_cdf[m] < u)
            lo = m + 1;
        else
            hi = m;
    }
    return lo;
}

/* Cache-aside over `ops` Zipf keys (from state *x); returns the hits. */
static long zipf_run(pc_cache *c, uint64_t *x, long ops)
{
    long hits = 0;

    for (long i = 0; i < ops; i++) {
        uint64_t k = zipf_next(x);

        if (get_u64(c, k, NULL) == PC_OK)
            hits++;
        else
            cr_assert_eq(put_u64(c, k, k), PC_OK);
    }
    return hits;
}

static pc_cache *zipf_cache(size_t cap, uint64_t max_bytes)
{
    pc_options o = test_opts(cap);
    pc_cache *c;

    o.shards = 1;
    o.max_bytes = max_bytes;
    cr_assert_eq(pc_create(&o, &c), PC_OK);
    return c;
}

/* Cache-aside over `ops` Zipf keys, then the hit ratio of `ops` more. */
static double zipf_hit_ratio(size_t cap, uint64_t max_bytes, long ops)
{
    pc_cache *c = zipf_cache(cap, max_bytes);
    uint64_t x = 42;
    long hits;

    zipf_run(c, &x, ops);
    hits = zipf_run(c, &x, ops);
    pc_destroy(c);
    return (double)hits / (double)ops;
}

static void zipf_init(void)
{
    double s = 0;

    for (size_t i = 0; i < ZIPF_KEYS; i++)
        zipf_cdf[i] = s += 1.0 / (double)(i + 1);
    for (size_t i = 0; i < ZIPF_KEYS; i++)
        zipf_cdf[i] /= s;
}

/* A byte bound that keeps a cache at 1% of its capacity: its hit ratio is
 * close to that of a cache whose capacity is what it holds (the frequency
 * policy once sized SMALL's target by the capacity: SMALL never reached it,
 * and MAIN's proven entries went first, 0.37 against 0.55). */
Test(limits, a_cache_held_below_its_capacity_keeps_its_hit_ratio)
{
    const size_t held = 200;
    double bounded, sized;

    zipf_init();
    sized = zipf_hit_ratio(held, 0, 150000);
    bounded = zipf_hit_ratio(ZIPF_KEYS, held * 16, 150000); /* 8 + 8 B */
    cr_assert_gt(sized, 0.3, "a cache of %zu hit %.4f", held, sized);
    cr_assert_geq(bounded, 0.9 * sized,
                  "bounded to %zu entries: hit %.4f; capacity %zu: %.4f", held,
                  bounded, held, sized);
}

/* A cache whose capacity changes keeps the hit ratio of a cache created at
 * the new capacity, once it has run as long at it as one that was. The
 * frequency policy once kept the parameters of the capacity it was created
 * with, SMALL's target and the ghost's size among them: grown from 50 to
 * 2000 it hit 0.748 against 0.765, shrunk from 2000 to 200 0.531 against
 * 0.544. Then, scaling SMALL's target on each change, a shrink to 2
 * entries clamped it to its floor, and the way back made that the largest
 * target, half the cache: 2000 to 2 and back hit 0.754 against 0.765. */
static double zipf_resized_hit_ratio(const size_t *caps, size_t n, long ops)
{
    pc_cache *c = zipf_cache(caps[0], 0);
    uint64_t x = 42;
    long hits;

    zipf_run(c, &x, ops);
    for (size_t i = 1; i < n; i++) {
        cr_assert_eq(pc_set_capacity(c, caps[i]), PC_OK);
        cr_assert_eq(pc_capacity(c), caps[i]);
        zipf_run(c, &x, ops / 10);
    }
    zipf_run(c, &x, ops);
    hits = zipf_run(c, &x, ops);
    cr_assert_leq(pc_len(c), caps[n - 1]);
    pc_destroy(c);
    return (double)hits / (double)ops;
}

Test(limits, a_resized_cache_hits_as_one_created_at_its_size)
{
    const long ops = 200000;
    static const size_t runs[][3] = {{50, 2000}, {2000, 200}, {2000, 2, 2000}};
    static const size_t len[] = {2, 2, 3};

    zipf_init();
    for (size_t i = 0; i < 3; i++) {
        size_t to = runs[i][len[i] - 1];
        double made = zipf_hit_ratio(to, 0, 2 * ops);
        double resized = zipf_resized_hit_ratio(runs[i], len[i], ops);

        cr_assert_gt(made, 0.3, "a cache of %zu hit %.4f", to, made);
        cr_assert_geq(resized, made - 0.005,
                      "%zu resized (%zu steps) to %zu: hit %.4f; created at "
                      "%zu: %.4f",
                      runs[i][0], len[i] - 1, to, resized, to, made);
    }
}
