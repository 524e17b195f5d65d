/*
 * workload: what the threads of a synthetic run do. A key distribution
 * (Zipf or uniform over N keys) turned into one pre-generated key stream
 * per thread, a warm-up stream, and the mix of operations applied to the
 * stream (get only, 90/10 get/put, cache-aside, put only).
 */
#ifndef BENCH_WORKLOAD_H
#define BENCH_WORKLOAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "opts.h"

enum mix { MIX_GET, MIX_9010, MIX_ASIDE, MIX_PUT, MIX_COUNT };

extern const char *const mix_name[MIX_COUNT]; /* "get", ..., "put" */
extern const char *const mix_desc[MIX_COUNT]; /* one line each, for tables */

/* Whether mix m does gets (and so has a hit ratio). */
static inline bool mix_has_gets(enum mix m)
{
    return m != MIX_PUT;
}

/* splitmix64's finalizer: the generator of every stream, and a bijection
 * from ranks to keys. */
static inline uint64_t bench_mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* The key of popularity rank r (0 = hottest): mixed, so that hot keys are
 * not neighbouring integers. */
static inline uint64_t key_of_rank(uint64_t rank)
{
    return bench_mix64(rank);
}

struct workload {
    const char *dist; /* "zipf" or "uniform" (a static string) */
    double *cdf;      /* Zipf only: cdf[r] = P(rank <= r) */
    uint64_t **keys;  /* keys[t][i]: thread t's stream, stream_len keys */
    uint8_t **isput;  /* isput[t][i]: 90/10 mix, whether op i is a put */
    size_t *pos;      /* where each thread's next run continues its stream */
    unsigned nthr;    /* streams generated (the largest thread count) */
    uint64_t *warm;   /* warm_ops keys for the single-threaded warm-up */
    uint64_t *fill;   /* keys to insert before warm[] so that the cache is */
    size_t nfill;     /* full after warm-up (usually none; see workload.c) */
};

/* Generate every stream of distribution dist ("zipf" or "uniform") for up
 * to o->max_threads threads; exits when out of memory. */
void workload_init(struct workload *w, const struct bench_opts *o,
                   const char *dist);
void workload_fini(struct workload *w);

/* n more keys of w's distribution, from the generator seeded with seed (a
 * stream of its own, for measurements outside the timed runs). */
void workload_sample(const struct workload *w, const struct bench_opts *o,
                     uint64_t seed, uint64_t *keys, size_t n);

/* The probability that a key of w's distribution is one of its c hottest:
 * the hit ratio of a cache that statically holds those c keys (the best
 * any cache of c entries can do on independent requests). */
double workload_top_mass(const struct workload *w, const struct bench_opts *o,
                         size_t c);

#endif
