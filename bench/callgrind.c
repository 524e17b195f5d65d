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
 * their symbol names, which the script passes to valgrind, are stable.
 */
#include <stdio.h>

#include "callgrind.h"

/* Not static: see the top comment. */
uint64_t bench_get_loop(int (*get)(void *, const void *, size_t, void *, size_t,
                                   size_t *),
                        void *cache, uint64_t key, long n);
uint64_t bench_peer_get_loop(const struct bench_peer *p, void *h, uint64_t key,
                             long n);

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

int callgrind_get(const struct bench_peer *clock, const struct bench_opts *o,
                  long n)
{
    void *h = clock->create(clock->ctx, o->capacity);
    uint64_t key = 42, v;
    int (*get)(void *, const void *, size_t, void *, size_t, size_t *);

    if (h == NULL)
        return 1;
    clock->put(h, key, bench_value_of(key));
    clock->get(h, key, &v); /* registers this thread outside the count */
    *(void **)&get = peer_purecache_get_fn(clock);
    v = bench_get_loop(get, peer_purecache_cache(h), key, n);
    printf("callgrind-get: %ld gets of a present 8-byte key (checksum %llu)\n",
           n, (unsigned long long)v);
    clock->destroy(h);
    return 0;
}
