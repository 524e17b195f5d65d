/*
 * workload: key streams for the synthetic runs.
 *
 * Keys are 8-byte integers (values 8 bytes too). A stream is Zipf
 * (exponent --skew, sampled by inverse CDF: a binary search of a uniform
 * draw in the cumulative distribution over the N ranks) or uniform over N
 * distinct keys; a rank becomes a key through a bijective 64-bit mix so
 * that hot keys are not neighbouring integers, which would flatter any
 * hash that clusters them.
 *
 * Every thread gets its own stream of --stream keys (and, for 90/10, its
 * own put/get flags), all generated before any timing, so the timed loop
 * only indexes an array. Each thread's stream has its own seed; the
 * warm-up stream has another. The generator is splitmix64, seeded with
 * fixed values: every run of the harness sees the same keys.
 *
 * A thread that reaches the end of its stream starts it again, so the
 * stream must be longer than anything a cache remembers, or the workload
 * is the stream's sample of the distribution, replayed, and a policy that
 * counts uses learns the sample. The default is 16 draws per key or more
 * (a power of two: 2^24 for N = 1M; cli.c). With 2^20 draws for N = 1M (the
 * default before session 45), a run replayed its stream several times, a sample
 * in which 37% of the keys never occur and others occur two or three times: the
 * frequency policy's timed cache-aside hit ratio was 86.4% on Zipf 0.99
 * (holding the C hottest keys of the true distribution hits 83.0%) and
 * 18.4% on uniform (10.0%); with 2^24 draws, 81.6% and 10.0%. CLOCK and
 * the LRU peers, which cannot learn it, measured the same either way.
 *
 * The warm-up must leave a bounded cache full, or the put mix would time
 * inserts into free room instead of puts that evict. It is full once at
 * least C distinct keys went in; CLOCK splits C over shards and a shard
 * fills only when its own share arrives, so the bar is 2C distinct keys
 * (or all N, if fewer). A warm-up stream short of that (a small --warm, a
 * steep --skew) gets the hottest keys it missed as fill keys, inserted
 * before it. With the default N, C and --warm neither distribution needs
 * any.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"
#include "workload.h"

const char *const mix_name[MIX_COUNT] = {"get", "90-10", "aside", "put"};
const char *const mix_desc[MIX_COUNT] = {
    "100% get after warm-up", "90% get / 10% put",
    "cache-aside: get, put on miss",
    "100% put of stream keys into a full cache"};

static inline uint64_t rng_next(uint64_t *s)
{
    return bench_mix64(*s += 0x9e3779b97f4a7c15ull);
}

static inline double rng_unit(uint64_t *s)
{
    return (double)(rng_next(s) >> 11) * 0x1.0p-53;
}

static uint64_t sample_rank(const struct workload *w,
                            const struct bench_opts *o, uint64_t *rng)
{
    double u = rng_unit(rng);
    size_t lo = 0, hi = o->keys - 1;

    if (w->cdf == NULL)
        return rng_next(rng) % o->keys;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;

        if (w->cdf[mid] < u)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static void fill_stream(const struct workload *w, const struct bench_opts *o,
                        uint64_t seed, uint64_t *keys, uint8_t *isput, size_t n)
{
    uint64_t rng = seed, prng = seed ^ 0xabcdef;

    for (size_t i = 0; i < n; i++) {
        keys[i] = key_of_rank(sample_rank(w, o, &rng));
        isput[i] = rng_unit(&prng) < 0.10;
    }
}

/* The warm-up stream (seed 999), and the fill keys it needs: see the top
 * comment. */
static void warm_init(struct workload *w, const struct bench_opts *o)
{
    size_t want = o->keys < 2 * o->capacity ? o->keys : 2 * o->capacity;
    uint8_t *seen = calloc(o->keys, 1);
    uint64_t rng = 999;
    size_t distinct = 0;

    if (seen == NULL)
        exit(1);
    w->warm = bench_xmalloc(o->warm_ops * sizeof *w->warm);
    for (size_t i = 0; i < o->warm_ops; i++) {
        uint64_t r = sample_rank(w, o, &rng);

        w->warm[i] = key_of_rank(r);
        distinct += !seen[r];
        seen[r] = 1;
    }
    if (distinct < want) {
        w->fill = bench_xmalloc((want - distinct) * sizeof *w->fill);
        for (size_t r = 0; distinct < want; r++) {
            if (seen[r])
                continue;
            w->fill[w->nfill++] = key_of_rank(r);
            distinct++;
        }
    }
    free(seen);
}

void workload_init(struct workload *w, const struct bench_opts *o,
                   const char *dist)
{
    unsigned nthr = o->max_threads;

    memset(w, 0, sizeof *w);
    w->dist = dist;
    if (strcmp(dist, "zipf") == 0) {
        double sum = 0;

        w->cdf = bench_xmalloc(o->keys * sizeof *w->cdf);
        for (size_t r = 0; r < o->keys; r++)
            w->cdf[r] = sum += pow((double)(r + 1), -o->skew);
        for (size_t r = 0; r < o->keys; r++)
            w->cdf[r] /= sum;
    }
    w->keys = bench_xmalloc(nthr * sizeof *w->keys);
    w->nthr = nthr;
    w->pos = calloc(nthr, sizeof *w->pos);
    if (w->pos == NULL)
        exit(1);
    w->isput = bench_xmalloc(nthr * sizeof *w->isput);
    for (unsigned t = 0; t < nthr; t++) {
        bench_progress("generating %s keys: thread %u/%u", dist, t + 1, nthr);
        w->keys[t] = bench_xmalloc(o->stream_len * sizeof(uint64_t));
        w->isput[t] = bench_xmalloc(o->stream_len);
        fill_stream(w, o, 1000 + t, w->keys[t], w->isput[t], o->stream_len);
    }
    warm_init(w, o);
}

void workload_fini(struct workload *w)
{
    for (unsigned t = 0; t < w->nthr; t++) {
        free(w->keys[t]);
        free(w->isput[t]);
    }
    free(w->keys);
    free(w->isput);
    free(w->pos);
    free(w->warm);
    free(w->fill);
    free(w->cdf);
}

void workload_sample(const struct workload *w, const struct bench_opts *o,
                     uint64_t seed, uint64_t *keys, size_t n)
{
    uint64_t rng = seed;

    for (size_t i = 0; i < n; i++)
        keys[i] = key_of_rank(sample_rank(w, o, &rng));
}

double workload_top_mass(const struct workload *w, const struct bench_opts *o,
                         size_t c)
{
    if (c == 0)
        return 0;
    if (c >= o->keys)
        return 1;
    return w->cdf != NULL ? w->cdf[c - 1] : (double)c / (double)o->keys;
}
