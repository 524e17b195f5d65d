/*
 * Bounded soak: every operation, at full speed on every core, for a fixed
 * time (PC_SOAK_SECONDS, default 10 per policy; sanitizer builds use less).
 *
 * How. One worker per online CPU mixes get, put (new keys and replacements,
 * so the cache evicts constantly), delete, and now and then clear, reclaim
 * and a statistics snapshot, over a key space four times the capacity.
 * Values are self-validating (testlib.h): every hit is checked for the right
 * key and an untorn body. A monitor thread samples pc_len (must never exceed
 * the capacity) and the statistics (every counter must be monotonic between
 * snapshots, since counters only grow). At the end, with the cache
 * quiescent, pc_len equals the number of keys that are found, and the
 * totals of puts and deletes match what the workers counted.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>

#include "alloc.h"
#include "testlib.h"

struct soak {
    pc_cache *c;
    uint64_t keys;
    double until;
    int stop;
    uint64_t torn, errors, over_cap, non_monotonic, puts, deletes, samples;
};

static void *soak_worker(void *p)
{
    struct soak *s = p;
    unsigned char buf[SV_MAX], val[SV_MAX];
    uint64_t x = mix64((uint64_t)(uintptr_t)&buf), ops = 0;
    uint64_t torn = 0, errors = 0, puts = 0, deletes = 0;

    while ((ops & 1023) != 0 || now_s() < s->until) {
        uint64_t r = mix64(x++), k = r % s->keys;
        unsigned dice = (unsigned)((r >> 40) % 10000);

        ops++;
        if (dice < 3000) {
            size_t n = sv_make(val, k, r);
            pc_status st = pc_put(s->c, &k, sizeof k, val, n);

            errors += st != PC_OK;
            puts += st == PC_OK;
        } else if (dice < 3800) {
            pc_status st = pc_delete(s->c, &k, sizeof k);

            errors += st != PC_OK && st != PC_NOTFOUND;
            deletes += st == PC_OK;
        } else if (dice < 3802) {
            pc_clear(s->c);
        } else if (dice < 3804) {
            pc_reclaim(s->c);
        } else if (dice < 3810) {
            pc_stats st;

            errors += pc_stats_get(s->c, &st) != PC_OK;
        } else if (dice < 3900) {
            size_t n = 0; /* too small a buffer: ERANGE with the length */
            pc_status st = pc_get(s->c, &k, sizeof k, buf, 8, &n);

            errors += st != PC_NOTFOUND && !(st == PC_ERANGE && n >= 16);
        } else {
            size_t n = 0;
            pc_status st = pc_get(s->c, &k, sizeof k, buf, sizeof buf, &n);

            if (st == PC_OK)
                torn += !sv_check(buf, n, k);
            else
                errors += st != PC_NOTFOUND;
        }
    }
    __atomic_fetch_add(&s->torn, torn, __ATOMIC_RELAXED);
    __atomic_fetch_add(&s->errors, errors, __ATOMIC_RELAXED);
    __atomic_fetch_add(&s->puts, puts, __ATOMIC_RELAXED);
    __atomic_fetch_add(&s->deletes, deletes, __ATOMIC_RELAXED);
    return NULL;
}

static void *soak_monitor(void *p)
{
    struct soak *s = p;
    pc_stats prev = {0}, cur;

    while (!__atomic_load_n(&s->stop, __ATOMIC_RELAXED)) {
        s->over_cap += pc_len(s->c) > pc_capacity(s->c);
        pc_stats_get(s->c, &cur);
        s->non_monotonic += cur.hits < prev.hits || cur.misses < prev.misses ||
                            cur.puts < prev.puts ||
                            cur.evictions < prev.evictions ||
                            cur.deletes < prev.deletes;
        prev = cur;
        s->samples++;
        usleep(200);
    }
    return NULL;
}

static void soak(size_t cap, unsigned shards)
{
    pc_options o = test_opts(cap);
    struct soak s = {.keys = 4 * cap};
    uint64_t found = 0;
    pc_stats st;
    long base;

    o.shards = shards;
    pc__alloc_track(1);
    base = pc__alloc_live();
    cr_assert_eq(pc_create(&o, &s.c), PC_OK);
    /* two configurations per policy */
    s.until = now_s() + soak_seconds() / 2;
    soak_run(soak_worker, soak_monitor, &s, &s.stop);

    cr_assert_eq(s.torn, 0, "%lu torn or misdirected values",
                 (unsigned long)s.torn);
    cr_assert_eq(s.errors, 0, "%lu unexpected statuses",
                 (unsigned long)s.errors);
    cr_assert_eq(s.over_cap, 0, "pc_len exceeded the capacity %lu times",
                 (unsigned long)s.over_cap);
    cr_assert_eq(s.non_monotonic, 0, "a counter went backwards");
    cr_assert_gt(s.samples, 0);
    pc_stats_get(s.c, &st);
    cr_assert_eq(st.puts, s.puts);
    cr_assert_eq(st.deletes, s.deletes);
    for (uint64_t k = 0; k < s.keys; k++)
        found += get_u64(s.c, k, NULL) != PC_NOTFOUND;
    cr_assert_eq(found, pc_len(s.c), "quiescent pc_len %zu, keys found %lu",
                 pc_len(s.c), (unsigned long)found);
    pc_destroy(s.c);
    cr_assert_eq(pc__alloc_live(), base);
    pc__alloc_track(0);
}

Test(soak, all_operations_small_cache_stay_within_capacity_and_intact)
{
    soak(64, 0);
}

Test(soak, all_operations_sharded_cache_stay_within_capacity_and_intact)
{
    soak(4096, 4);
}
