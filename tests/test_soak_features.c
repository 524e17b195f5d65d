/*
 * Every feature at once, under load: a bounded soak (PC_SOAK_SECONDS, as
 * test_soak) of one cache that has a capacity and a byte bound (both
 * lowered and raised while it runs), expiry on a clock the workers
 * advance, a removal listener, conditional puts, get-or-load with a
 * loader that sometimes fails, pinned reads whose key is replaced or
 * deleted under the pin, clears, pc_expire and pc_reclaim; the listener
 * and the loader read the cache now and then, as they may. test_soak
 * mixes the core operations; this suite mixes the features, where their
 * interactions (an expired entry met by a shrink, a pinned entry cleared,
 * a load stored under a lowered byte bound) hide.
 *
 * What must hold. Every value read, loaded, pinned or handed to the
 * listener is intact and the key's own (self-validating values,
 * testlib.h); a pinned value does not change while its key is replaced or
 * deleted. Sampled while it runs: pc_len within the larger capacity,
 * pc_bytes within the larger byte bound, every counter monotonic. Once
 * the workers are done (every listener call has returned): each cause the
 * listener saw agrees with its counter (evictions, expirations, deletes,
 * and deletes with what the workers counted), and every value stored
 * (stats.puts, loads' stores included) has either left through the
 * listener exactly once or is still there:
 *     puts = evicted + expired + replaced + deleted + cleared + pc_len.
 * Then, single-threaded: the lower limits are met once set; after the
 * clock passes every ttl and pc_expire, the keys found are pc_len and the
 * identity still holds; destroy frees everything the cache allocated.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>

#include "alloc.h"
#include "testlib.h"

#define CAUSES 6 /* pc_removal_cause 1..5 */

struct fsoak {
    pc_cache *c;
    uint64_t keys;
    double until;
    int stop;
    size_t cap_hi, cap_lo;
    uint64_t bytes_hi, bytes_lo;
    uint64_t torn, errors, over_cap, over_bytes, non_monotonic, samples;
    uint64_t deletes, loads_failed;
    uint64_t removed[CAUSES], listener_bad; /* the listener's */
};

static void on_removal(void *ctx, const void *key, size_t klen, const void *val,
                       size_t vlen, pc_removal_cause cause)
{
    struct fsoak *s = ctx;
    uint64_t k;

    if (klen != sizeof k || (int)cause < 1 || (int)cause >= CAUSES) {
        __atomic_add_fetch(&s->listener_bad, 1, __ATOMIC_RELAXED);
        return;
    }
    memcpy(&k, key, sizeof k);
    if (!sv_check(val, vlen, k))
        __atomic_add_fetch(&s->listener_bad, 1, __ATOMIC_RELAXED);
    /* Now and then it reads the cache (a listener may call it): what it
     * finds of that key, a later value, is intact too. */
    if (mix64(k ^ vlen) % 16 == 0) {
        unsigned char buf[SV_MAX];
        size_t n = 0;
        pc_status st = pc_get(s->c, &k, sizeof k, buf, sizeof buf, &n);

        if ((st != PC_OK && st != PC_NOTFOUND) ||
            (st == PC_OK && !sv_check(buf, n, k)))
            __atomic_add_fetch(&s->listener_bad, 1, __ATOMIC_RELAXED);
    }
    __atomic_add_fetch(&s->removed[cause], 1, __ATOMIC_RELAXED);
}

#define LOAD_FAILS 7 /* the loader's own error code */

/* Loads an intact value of the key; one load in eight fails. */
static int loader(void *ctx, const void *key, size_t klen, pc_sink *out)
{
    static __thread uint64_t seq;
    unsigned char v[SV_MAX];
    uint64_t k, r;

    if (klen != sizeof k)
        return 1;
    memcpy(&k, key, sizeof k);
    r = mix64(k ^ ++seq ^ (uint64_t)(uintptr_t)&seq);
    if (r % 8 == 0)
        return LOAD_FAILS;
    if (r % 8 == 1) { /* a loader may call the cache: another key */
        struct fsoak *s = ctx;
        uint64_t other = (k + 1) % s->keys;
        size_t n = 0;
        pc_status st = pc_get(s->c, &other, sizeof other, v, sizeof v, &n);

        if ((st != PC_OK && st != PC_NOTFOUND) ||
            (st == PC_OK && !sv_check(v, n, other)))
            return 1; /* (the caller counts it as an error) */
    }
    return pc_sink_set(out, v, sv_make(v, k, r)) == PC_OK ? 0 : 1;
}

/* Pin k's value, then replace or delete k under the pin: the pinned bytes
 * must stay the same. Returns how many torn values it saw. */
static uint64_t pinned_read(struct fsoak *s, uint64_t k, uint64_t r,
                            uint64_t *errors)
{
    unsigned char copy[SV_MAX], val[SV_MAX];
    pc_pin pin = {0};
    pc_status st = pc_get_pinned(s->c, &k, sizeof k, &pin);
    uint64_t torn = 0;
    size_t n;

    if (st != PC_OK) {
        *errors += st != PC_NOTFOUND;
        return 0;
    }
    n = pin.len;
    if (!sv_check(pin.value, n, k)) {
        pc_unpin(&pin);
        return 1;
    }
    memcpy(copy, pin.value, n);
    if (r & 1) {
        *errors += pc_put(s->c, &k, sizeof k, val, sv_make(val, k, r)) != PC_OK;
    } else {
        st = pc_delete(s->c, &k, sizeof k);
        *errors += st != PC_OK && st != PC_NOTFOUND;
        if (st == PC_OK)
            __atomic_add_fetch(&s->deletes, 1, __ATOMIC_RELAXED);
    }
    torn += memcmp(copy, pin.value, n) != 0;
    pc_unpin(&pin);
    return torn;
}

/* One conditional or timed put: the statuses its flags allow. */
static bool put_ex_ok(struct fsoak *s, uint64_t k, uint64_t r)
{
    static const unsigned flags[3] = {0, PC_PUT_IF_ABSENT, PC_PUT_IF_PRESENT};
    unsigned char val[SV_MAX];
    pc_put_args a = {.flags = flags[(r >> 8) % 3]};
    pc_status st;

    /* Half live until 1..50 ms of the test clock from now, half forever. */
    a.ttl_ms = (r >> 16) & 1 ? 1 + (r >> 20) % 50 : PC_TTL_NEVER;
    st = pc_put_ex(s->c, &k, sizeof k, val, sv_make(val, k, r), &a);
    return st == PC_OK || (st == PC_EXISTS && a.flags == PC_PUT_IF_ABSENT) ||
           (st == PC_NOTFOUND && a.flags == PC_PUT_IF_PRESENT);
}

static void *fsoak_worker(void *p)
{
    struct fsoak *s = p;
    unsigned char buf[SV_MAX], val[SV_MAX];
    uint64_t x = mix64((uint64_t)(uintptr_t)&buf), ops = 0;
    uint64_t torn = 0, errors = 0, failed = 0;

    while ((ops & 1023) != 0 || now_s() < s->until) {
        uint64_t r = mix64(x++), k = r % s->keys;
        unsigned dice = (unsigned)((r >> 40) % 10000);
        pc_status st;
        size_t n = 0;
        int err = 0;

        ops++;
        if (dice < 1500) {
            errors +=
                pc_put(s->c, &k, sizeof k, val, sv_make(val, k, r)) != PC_OK;
        } else if (dice < 3000) {
            errors += !put_ex_ok(s, k, r);
        } else if (dice < 3500) {
            st = pc_delete(s->c, &k, sizeof k);
            errors += st != PC_OK && st != PC_NOTFOUND;
            if (st == PC_OK)
                __atomic_add_fetch(&s->deletes, 1, __ATOMIC_RELAXED);
        } else if (dice < 4500) {
            pc_load_args la = {.ttl_ms = (r & 1) ? 1 + (r >> 20) % 50 : 0};

            st = pc_get_or_load_ex(s->c, &k, sizeof k, loader, s, buf,
                                   sizeof buf, &n, &err, &la);
            if (st == PC_OK)
                torn += !sv_check(buf, n, k);
            else if (st == PC_ELOAD && err == LOAD_FAILS)
                failed++;
            else
                errors++;
        } else if (dice < 5000) {
            torn += pinned_read(s, k, r, &errors);
        } else if (dice < 5040) {
            test_advance(1);
        } else if (dice < 5042) {
            size_t cap = pc_capacity(s->c);

            errors +=
                pc_set_capacity(s->c, cap == s->cap_hi ? s->cap_lo
                                                       : s->cap_hi) != PC_OK;
        } else if (dice < 5044) {
            errors += pc_set_max_bytes(s->c, (r & 1) ? s->bytes_lo
                                                     : s->bytes_hi) != PC_OK;
        } else if (dice < 5045) {
            pc_clear(s->c);
        } else if (dice < 5050) {
            pc_expire(s->c);
        } else if (dice < 5052) {
            pc_reclaim(s->c);
        } else {
            st = pc_get(s->c, &k, sizeof k, buf, sizeof buf, &n);
            if (st == PC_OK)
                torn += !sv_check(buf, n, k);
            else
                errors += st != PC_NOTFOUND;
        }
    }
    __atomic_add_fetch(&s->torn, torn, __ATOMIC_RELAXED);
    __atomic_add_fetch(&s->errors, errors, __ATOMIC_RELAXED);
    __atomic_add_fetch(&s->loads_failed, failed, __ATOMIC_RELAXED);
    return NULL;
}

static bool stats_monotonic(const pc_stats *a, const pc_stats *b)
{
    return b->hits >= a->hits && b->misses >= a->misses && b->puts >= a->puts &&
           b->evictions >= a->evictions && b->deletes >= a->deletes &&
           b->loader_calls >= a->loader_calls &&
           b->loader_errors >= a->loader_errors &&
           b->expirations >= a->expirations;
}

static void *fsoak_monitor(void *p)
{
    struct fsoak *s = p;
    pc_stats prev = {0}, cur;

    while (!__atomic_load_n(&s->stop, __ATOMIC_RELAXED)) {
        s->over_cap += pc_len(s->c) > s->cap_hi;
        s->over_bytes += pc_bytes(s->c) > s->bytes_hi;
        pc_stats_get(s->c, &cur);
        s->non_monotonic += !stats_monotonic(&prev, &cur);
        prev = cur;
        s->samples++;
        usleep(200);
    }
    return NULL;
}

/* puts = every cause the listener saw + pc_len (the cache quiescent), and
 * each counted cause as its counter. */
static void assert_accounted(const struct fsoak *s, const char *when)
{
    uint64_t left = 0;
    pc_stats st;

    cr_assert_eq(pc_stats_get(s->c, &st), PC_OK);
    for (int i = 1; i < CAUSES; i++)
        left += s->removed[i];
    cr_assert_eq(s->removed[PC_REMOVED_EVICTED], st.evictions,
                 "%s: evicted %lu reported, %lu counted", when,
                 (unsigned long)s->removed[PC_REMOVED_EVICTED],
                 (unsigned long)st.evictions);
    cr_assert_eq(s->removed[PC_REMOVED_EXPIRED], st.expirations,
                 "%s: expired %lu reported, %lu counted", when,
                 (unsigned long)s->removed[PC_REMOVED_EXPIRED],
                 (unsigned long)st.expirations);
    cr_assert_eq(s->removed[PC_REMOVED_DELETED], st.deletes,
                 "%s: deleted %lu reported, %lu counted", when,
                 (unsigned long)s->removed[PC_REMOVED_DELETED],
                 (unsigned long)st.deletes);
    cr_assert_eq(st.deletes, s->deletes, "%s: deletes %lu, callers saw %lu",
                 when, (unsigned long)st.deletes, (unsigned long)s->deletes);
    cr_assert_eq(st.puts, left + pc_len(s->c),
                 "%s: %lu stored, %lu removed, %zu present", when,
                 (unsigned long)st.puts, (unsigned long)left, pc_len(s->c));
    /* A failed load fails its waiters too: each caller counted it. */
    cr_assert_gt(st.loader_errors, 0);
    cr_assert_leq(st.loader_errors, s->loads_failed,
                  "%s: %lu failed loads, %lu callers saw one fail", when,
                  (unsigned long)st.loader_errors,
                  (unsigned long)s->loads_failed);
}

static void fsoak(size_t cap, unsigned shards)
{
    pc_options o = test_opts(cap);
    /* Entries of 8 + 16..255 bytes, about 144 on average: the higher byte
     * bound holds about 0.8 cap of them, the lower about 0.4 cap, so
     * either limit may be the one that binds. */
    struct fsoak s = {.keys = 4 * cap,
                      .cap_hi = cap,
                      .cap_lo = cap / 4,
                      .bytes_hi = cap * 120,
                      .bytes_lo = cap * 60};
    uint64_t found = 0;
    long base;

    o.shards = shards;
    o.max_bytes = s.bytes_hi;
    o.now_ms = test_now;
    o.on_removal = on_removal;
    o.removal_ctx = &s;
    pc__alloc_track(1);
    base = pc__alloc_live();
    cr_assert_eq(pc_create(&o, &s.c), PC_OK);
    s.until = now_s() + soak_seconds() / 2;
    soak_run(fsoak_worker, fsoak_monitor, &s, &s.stop);

    cr_assert_eq(s.torn, 0, "%lu torn or misdirected values",
                 (unsigned long)s.torn);
    cr_assert_eq(s.errors, 0, "%lu unexpected statuses",
                 (unsigned long)s.errors);
    cr_assert_eq(s.listener_bad, 0, "%lu bad removal reports",
                 (unsigned long)s.listener_bad);
    cr_assert_eq(s.over_cap, 0, "pc_len exceeded the capacity %lu times",
                 (unsigned long)s.over_cap);
    cr_assert_eq(s.over_bytes, 0, "pc_bytes exceeded the bound %lu times",
                 (unsigned long)s.over_bytes);
    cr_assert_eq(s.non_monotonic, 0, "a counter went backwards");
    cr_assert_gt(s.samples, 0);
    /* Every feature was exercised. */
    cr_assert_gt(s.removed[PC_REMOVED_EVICTED], 0);
    cr_assert_gt(s.removed[PC_REMOVED_EXPIRED], 0);
    cr_assert_gt(s.removed[PC_REMOVED_REPLACED], 0);
    cr_assert_gt(s.removed[PC_REMOVED_DELETED], 0);
    cr_assert_gt(s.loads_failed, 0);
    assert_accounted(&s, "after the run");

    /* The lower limits, met once set. */
    cr_assert_eq(pc_set_capacity(s.c, s.cap_lo), PC_OK);
    cr_assert_eq(pc_set_max_bytes(s.c, s.bytes_lo), PC_OK);
    cr_assert_leq(pc_len(s.c), s.cap_lo);
    cr_assert_leq(pc_bytes(s.c), s.bytes_lo);
    assert_accounted(&s, "after the lower limits");

    /* Past every ttl: what is left never expires, and is found. */
    test_advance(1000);
    pc_expire(s.c);
    for (uint64_t k = 0; k < s.keys; k++)
        found += get_u64(s.c, k, NULL) != PC_NOTFOUND;
    cr_assert_eq(found, pc_len(s.c), "quiescent pc_len %zu, keys found %lu",
                 pc_len(s.c), (unsigned long)found);
    assert_accounted(&s, "after expiry");
    pc_destroy(s.c);
    cr_assert_eq(pc__alloc_live(), base);
    pc__alloc_track(0);
}

Test(soak_features, every_feature_at_once_keeps_every_promise, .timeout = 300)
{
    fsoak(2048, 4);
}
