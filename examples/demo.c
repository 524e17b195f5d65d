/*
 * demo: a few threads share one cache. Each looks up keys drawn from a skewed
 * distribution and, on a miss, "computes" the value and stores it (the
 * cache-aside pattern). Prints what each thread did and the cache's totals.
 *
 * Usage: purecache-demo [threads] [operations per thread]
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "purecache.h"

struct worker {
    pc_cache *cache;
    int id;
    long ops;
    long hits, misses, puts;
};

static uint64_t next_rand(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static void *work(void *p)
{
    struct worker *w = p;
    uint64_t rng = 0x9e3779b97f4a7c15ULL * (uint64_t)(w->id + 1);

    for (long i = 0; i < w->ops; i++) {
        /* Skewed keys: small numbers are far more popular. */
        uint64_t r = next_rand(&rng);
        uint64_t key = (r % 1000) * ((r >> 20) % 1000);
        char val[32];
        size_t n;

        if (pc_get(w->cache, &key, sizeof key, val, sizeof val, &n) == PC_OK) {
            w->hits++;
            continue;
        }
        w->misses++;
        n = (size_t)snprintf(val, sizeof val, "value-of-%llu",
                             (unsigned long long)key);
        if (pc_put(w->cache, &key, sizeof key, val, n) == PC_OK)
            w->puts++;
    }
    return NULL;
}

int main(int argc, char **argv)
{
    int threads = argc > 1 ? atoi(argv[1]) : 4;
    long ops = argc > 2 ? atol(argv[2]) : 1000000;
    pc_options opts = {.capacity = 10000};
    pc_cache *cache;
    pc_status st;
    struct timespec t0, t1;

    if (threads < 1 || threads > 1024 || ops < 1) {
        fprintf(stderr, "usage: %s [threads 1..1024] [ops per thread]\n",
                argv[0]);
        return 2;
    }
    st = pc_create(&opts, &cache);
    if (st != PC_OK) {
        fprintf(stderr, "pc_create: %s\n", pc_strerror(st));
        return 1;
    }
    struct worker *w = calloc((size_t)threads, sizeof *w);
    pthread_t *th = calloc((size_t)threads, sizeof *th);

    if (w == NULL || th == NULL) {
        fprintf(stderr, "out of memory\n");
        return 1;
    }
    printf("purecache demo: policy %s, capacity %zu, %d threads x %ld ops\n",
           pc_policy(), pc_capacity(cache), threads, ops);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int i = 0; i < threads; i++) {
        w[i] = (struct worker){.cache = cache, .id = i, .ops = ops};
        pthread_create(&th[i], NULL, work, &w[i]);
    }
    for (int i = 0; i < threads; i++)
        pthread_join(th[i], NULL);
    clock_gettime(CLOCK_MONOTONIC, &t1);

    double secs = (double)(t1.tv_sec - t0.tv_sec) +
                  (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    for (int i = 0; i < threads; i++)
        printf("  thread %d: %ld hits, %ld misses, %ld puts\n", i, w[i].hits,
               w[i].misses, w[i].puts);

    pc_stats s;
    pc_stats_get(cache, &s);
    printf("cache: %zu entries; hits %llu, misses %llu (hit ratio %.3f), "
           "puts %llu, evictions %llu\n",
           pc_len(cache), (unsigned long long)s.hits,
           (unsigned long long)s.misses,
           (double)s.hits / (double)(s.hits + s.misses),
           (unsigned long long)s.puts, (unsigned long long)s.evictions);
    printf("%.2f Mops/s over %.3f s\n",
           (double)threads * (double)ops / secs / 1e6, secs);
    pc_destroy(cache);
    free(w);
    free(th);
    return 0;
}
