/*
 * callgrind: loops for counting instructions per operation.
 *
 * `valgrind --tool=callgrind --toggle-collect=bench_get_loop` counts only
 * what runs inside that function. So each mode sets its cache up outside
 * the loop (create, insert the key, one get to register the thread with
 * the cache), then runs the loop, and the count divided by the number of
 * iterations is the cost of one operation plus the loop's own few
 * instructions (counter, argument set-up, the indirect call), which
 * bench/callgrind-get.sh reports separately from the loop's self cost.
 *
 * The loop functions have external linkage and are never inlined, so
 * their symbol names, which the scripts pass to valgrind, are stable.
 *
 * The miss mode counts the write path a cache-aside user pays on a miss:
 * get (miss), then put of that key into a full cache, which evicts. Every
 * peer runs it through its vtable (one indirect call per operation, as in
 * the timed runs), on the same keys: a cache of capacity C is filled with
 * 2C distinct keys (a CLOCK cache is full only after about 2C, its shards
 * filling unevenly), then C more miss-and-put rounds bring it to a steady
 * state (the CLOCK hand has gone round, retired entries are being
 * reclaimed, allocator caches are warm), and only then does the counted
 * loop run on N keys never seen before. A purecache peer also reports its
 * evictions across the loop (pc_stats), which must equal N.
 */
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "peer_purecache.h"
#include "workload.h"

#include "callgrind.h"

/* Not static: see the top comment. */
uint64_t bench_get_loop(int (*get)(void *, const void *, size_t, void *, size_t,
                                   size_t *),
                        void *cache, uint64_t key, long n);
uint64_t bench_peer_get_loop(const struct bench_peer *p, void *h, uint64_t key,
                             long n);
uint64_t bench_miss_loop(const struct bench_peer *p, void *h,
                         const uint64_t *keys, long n);

/* n CLOCK gets of one present 8-byte key, each a call through the pc_get
 * pointer the library exported. */
__attribute__((noinline)) uint64_t bench_get_loop(
    int (*get)(void *, const void *, size_t, void *, size_t, size_t *),
    void *cache, uint64_t key, long n)
{
    uint64_t v = 0, sum = 0;

    for (long i = 0; i < n; i++) {
        get(cache, &key, sizeof key, &v, sizeof v, NULL);
        sum += v;
    }
    return sum;
}

/* The same for any peer, through its vtable (one more indirect call). */
__attribute__((noinline)) uint64_t
bench_peer_get_loop(const struct bench_peer *p, void *h, uint64_t key, long n)
{
    uint64_t v = 0, sum = 0;

    for (long i = 0; i < n; i++) {
        p->get(h, key, &v);
        sum += v;
    }
    return sum;
}

int callgrind_peer(const struct bench_peer *p, const struct bench_opts *o,
                   long n)
{
    void *h = p->create(p->ctx, o->capacity);
    uint64_t key = 42, v;

    if (h == NULL || p->get == NULL || p->put == NULL)
        return 1;
    p->put(h, key, bench_value_of(key));
    p->get(h, key, &v);
    v = bench_peer_get_loop(p, h, key, n);
    printf("callgrind-peer: %ld %s gets of a present 8-byte key (checksum "
           "%llu)\n",
           n, p->name, (unsigned long long)v);
    p->destroy(h);
    return 0;
}

int callgrind_get(const struct bench_peer *pc, const struct bench_opts *o,
                  long n)
{
    void *h = pc->create(pc->ctx, o->capacity);
    uint64_t key = 42, v;
    int (*get)(void *, const void *, size_t, void *, size_t, size_t *);

    if (h == NULL)
        return 1;
    pc->put(h, key, bench_value_of(key));
    pc->get(h, key, &v); /* registers this thread outside the count */
    *(void **)&get = peer_purecache_get_fn(pc);
    v = bench_get_loop(get, peer_purecache_cache(h), key, n);
    printf("callgrind-get: %ld %s gets of a present 8-byte key (checksum "
           "%llu)\n",
           n, pc->name, (unsigned long long)v);
    pc->destroy(h);
    return 0;
}

/* Get each key; on a miss (every time, here) put it. Returns the hits. */
static inline uint64_t miss_put(const struct bench_peer *p, void *h,
                                uint64_t key)
{
    uint64_t v;

    if (p->get(h, key, &v))
        return 1;
    p->put(h, key, bench_value_of(key));
    return 0;
}

/* The counted loop of --callgrind-miss: n keys the cache does not hold. */
__attribute__((noinline)) uint64_t bench_miss_loop(const struct bench_peer *p,
                                                   void *h,
                                                   const uint64_t *keys, long n)
{
    uint64_t hits = 0;

    for (long i = 0; i < n; i++)
        hits += miss_put(p, h, keys[i]);
    return hits;
}

int callgrind_miss(const struct bench_peer *p, const struct bench_opts *o,
                   long n)
{
    const unsigned need = PEER_GET | PEER_PUT | PEER_EVICTS;
    uint64_t c = o->capacity, hits, ev0 = 0, ev1 = 0, *keys;
    bool evictions;
    void *h;

    if ((p->caps & need) != need) {
        fprintf(stderr,
                "purecache-bench: %s cannot run --callgrind-miss (needs "
                "get, put and eviction)\n",
                p->name);
        return 2;
    }
    h = p->create(p->ctx, o->capacity);
    keys = malloc((size_t)n * sizeof *keys);
    if (h == NULL || keys == NULL)
        return 1;
    /* Ranks [0, 3C) fill and settle the cache; [3C, 3C + n) are counted. */
    for (uint64_t r = 0; r < 3 * c; r++)
        miss_put(p, h, key_of_rank(r));
    for (long i = 0; i < n; i++)
        keys[i] = key_of_rank(3 * c + (uint64_t)i);
    evictions = peer_purecache_is(p);
    if (evictions)
        evictions = peer_purecache_evictions(h, &ev0) == 0;
    hits = bench_miss_loop(p, h, keys, n);
    if (evictions)
        evictions = peer_purecache_evictions(h, &ev1) == 0;
    printf("callgrind-miss: %ld %s gets of keys not cached, each followed "
           "by a put into a full cache of %zu: %" PRIu64 " hits, ",
           n, p->name, o->capacity, hits);
    if (evictions)
        printf("%" PRIu64 " evictions\n", ev1 - ev0);
    else
        printf("evictions not counted by this peer (full, new keys: "
               "each put evicts)\n");
    p->destroy(h);
    free(keys);
    if (hits != 0 || (evictions && ev1 - ev0 != (uint64_t)n)) {
        fprintf(stderr, "purecache-bench: --callgrind-miss did not count "
                        "the miss-then-evicting-put path\n");
        return 1;
    }
    return 0;
}
