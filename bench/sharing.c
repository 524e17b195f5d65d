/*
 * purecache-sharing: what two threads' puts into one cache lose to each
 * other, and why (a diagnostic for the write path's scaling, issue 10).
 *
 * One workload, four arrangements, each run interleaved with the others:
 *   1 thread    one thread puts into a cache of capacity C.
 *   shared      two threads put into one cache of capacity C, each from its
 *               own stream of keys spread over every shard (the harness's
 *               put mix).
 *   split       the same cache, but each thread's keys fall in its own half
 *               of the shards (pc__policy_shard_of, the library's own
 *               mapping): the threads share the cache's global state (the
 *               budgets, the epoch domain, the allocator) but no shard, so
 *               no index chunk, entry, ring slot, lock or retirement batch.
 *   separate    two caches of C/2, one per thread: nothing shared at all.
 * Keys are uniform over N (8 bytes; values of 8 bytes, or of A..B bytes
 * with --vlen A-B, each key's length fixed by the key, so that a put and
 * its victim differ in size as in a real cache; --max-bytes bounds the
 * cache's bytes, halved for each cache of `separate`); each cache is first
 * filled by cache-aside puts over its thread's stream, so the timed puts
 * of keys not held evict. Prints Mops/s (total over the threads), the
 * median of --runs runs of --ops puts per thread.
 *
 * If split runs near separate and both far above shared, the threads'
 * cost is the lines of shard state and data they pass between their
 * caches (every line a put writes was last written by the other thread
 * about half the time), not a global counter or lock: no layout of a
 * shard's header can remove the index chunks and entries a uniform
 * stream spreads over both threads.
 *
 * To size that cost, it also times the machine's cache-line transfer: two
 * threads pinned to CPUs 0 and 1 pass one line back and forth (each waits
 * for the other's store, then stores), and the time per pass is one
 * transfer; the median of --runs such measurements, interleaved with the
 * arrangements. Each arrangement's time per put (per thread) is printed
 * beside its rate, so that the extra time per put of shared over split
 * reads as a number of transfers.
 *
 * usage: purecache-sharing [--policy clock|frequency] [--keys N]
 *        [--capacity C] [--ops N] [--runs R] [--vlen A-B] [--max-bytes B]
 * Links the CLOCK build's static library (pc__policy_shard_of is internal).
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "policy.h"
#include "purecache.h"

#define SHARDS 8u /* explicit: the split needs both halves non-empty */
#define THREADS 2

enum arrangement { ONE, SHARED, SPLIT, SEPARATE, NARR };
#define PASSES 200000 /* line transfers per measurement */
static const char *const arr_name[NARR] = {"1 thread", "shared", "split",
                                           "separate"};

struct conf {
    unsigned int policy;
    uint64_t keys, capacity;
    long ops, runs;
    unsigned vmin, vmax; /* value lengths, 1..VMAX */
    uint64_t max_bytes;  /* 0: none */
};

#define VMAX 4096
static const unsigned char value_bytes[VMAX]; /* what every value holds */
static const struct conf *conf;               /* for work's value lengths */

/* Key k's value length. */
static size_t vlen_of(uint64_t k)
{
    return conf->vmin + (size_t)((k >> 17) % (conf->vmax - conf->vmin + 1));
}

struct worker {
    pc_cache *cache;
    const uint64_t *keys; /* ops + fill keys */
    long n;
    int cpu;
    pthread_barrier_t *start;
};

static uint64_t mix64(uint64_t z)
{
    z += 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static double now_s(void)
{
    struct timespec t;

    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void pin(int cpu)
{
    cpu_set_t s;

    CPU_ZERO(&s);
    CPU_SET(cpu, &s);
    (void)pthread_setaffinity_np(pthread_self(), sizeof s, &s);
}

static void *work(void *arg)
{
    struct worker *w = arg;

    pin(w->cpu);
    pthread_barrier_wait(w->start);
    for (long i = 0; i < w->n; i++)
        (void)pc_put(w->cache, &w->keys[i], 8, value_bytes,
                     vlen_of(w->keys[i]));
    return NULL;
}

static pc_cache *cache_new(const struct conf *cf, uint64_t capacity,
                           uint64_t max_bytes)
{
    pc_options o = {.capacity = capacity,
                    .max_bytes = max_bytes,
                    .policy = cf->policy,
                    .shards = SHARDS};
    pc_cache *c = NULL;

    return pc_create(&o, &c) == PC_OK ? c : NULL;
}

/* Stream of n keys for thread t: uniform over the key space, restricted to
 * shards [lo, hi) of c (all shards: lo 0, hi SHARDS). Each thread counts
 * from its own start, 2^40 apart (adjacent starts made thread 1's keys
 * thread 0's, one step later). */
static uint64_t *stream(const struct conf *cf, pc_cache *c, int t, long n,
                        unsigned lo, unsigned hi)
{
    uint64_t *k = malloc((size_t)n * sizeof *k),
             x = 0x5eed + ((uint64_t)t << 40);

    for (long i = 0; k != NULL && i < n;) {
        uint64_t key = mix64(mix64(x++) % cf->keys);
        unsigned s = pc__policy_shard_of(c, &key, sizeof key);

        if (s >= lo && s < hi)
            k[i++] = key;
    }
    return k;
}

/* One run of arrangement a: Mops/s, or a negative number on failure. */
static double run(const struct conf *cf, enum arrangement a)
{
    int nt = a == ONE ? 1 : THREADS;
    long fill = (long)(2 * cf->capacity), n = fill + cf->ops;
    pc_cache *c[THREADS] = {NULL, NULL};
    uint64_t *keys[THREADS] = {NULL, NULL};
    struct worker w[THREADS];
    pthread_t tid[THREADS];
    pthread_barrier_t start;
    double t0, mops = -1;

    c[0] = a == SEPARATE ? cache_new(cf, cf->capacity / 2, cf->max_bytes / 2)
                         : cache_new(cf, cf->capacity, cf->max_bytes);
    c[1] = a == SEPARATE ? cache_new(cf, cf->capacity / 2, cf->max_bytes / 2)
                         : c[0];
    if (c[0] == NULL || c[1] == NULL)
        goto out;
    for (int t = 0; t < nt; t++) {
        unsigned half = SHARDS / 2;

        keys[t] = a == SPLIT ? stream(cf, c[t], t, n, t * half, t * half + half)
                             : stream(cf, c[t], t, n, 0, SHARDS);
        if (keys[t] == NULL)
            goto out;
        for (long i = 0; i < fill; i++) /* fill: the timed puts evict */
            (void)pc_put(c[t], &keys[t][i], 8, value_bytes,
                         vlen_of(keys[t][i]));
    }
    pthread_barrier_init(&start, NULL, (unsigned)nt + 1);
    for (int t = 0; t < nt; t++) {
        w[t] = (struct worker){c[t], keys[t] + fill, cf->ops, t, &start};
        pthread_create(&tid[t], NULL, work, &w[t]);
    }
    pthread_barrier_wait(&start);
    t0 = now_s();
    for (int t = 0; t < nt; t++)
        pthread_join(tid[t], NULL);
    mops = (double)nt * (double)cf->ops / (now_s() - t0) / 1e6;
    pthread_barrier_destroy(&start);
out:
    for (int t = 0; t < THREADS; t++)
        free(keys[t]);
    if (c[1] != c[0])
        pc_destroy(c[1]);
    pc_destroy(c[0]);
    return mops;
}

/* The line two threads pass to each other: pass i is the store of i. */
static struct {
    uint64_t v;
} __attribute__((aligned(64))) baton;

static void *pass_odd(void *arg)
{
    pthread_barrier_t *start = arg;

    pin(1);
    pthread_barrier_wait(start);
    for (uint64_t i = 1; i <= PASSES; i += 2) {
        while (__atomic_load_n(&baton.v, __ATOMIC_ACQUIRE) != i - 1)
            ;
        __atomic_store_n(&baton.v, i, __ATOMIC_RELEASE);
    }
    return NULL;
}

/* One measurement: nanoseconds per transfer of a line from one CPU's cache
 * to the other's, or a negative number if the thread could not start. */
static double transfer_ns(void)
{
    pthread_barrier_t start;
    pthread_t t;
    double t0, t1;

    __atomic_store_n(&baton.v, 0, __ATOMIC_RELAXED);
    pthread_barrier_init(&start, NULL, 2);
    if (pthread_create(&t, NULL, pass_odd, &start) != 0) {
        pthread_barrier_destroy(&start);
        return -1;
    }
    pin(0);
    pthread_barrier_wait(&start);
    t0 = now_s();
    for (uint64_t i = 2; i <= PASSES; i += 2) {
        while (__atomic_load_n(&baton.v, __ATOMIC_ACQUIRE) != i - 1)
            ;
        __atomic_store_n(&baton.v, i, __ATOMIC_RELEASE);
    }
    t1 = now_s();
    pthread_join(t, NULL);
    pthread_barrier_destroy(&start);
    return (t1 - t0) * 1e9 / PASSES;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return (x > y) - (x < y);
}

/* The median of n sorted values (an even count: the middle two's mean). */
static double median_sorted(const double *s, int n)
{
    return n % 2 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
}

static bool parse(int argc, char **argv, struct conf *cf)
{
    for (int i = 1; i < argc; i += 2) { /* option, value */
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;

        if (v == NULL)
            return false;
        if (strcmp(argv[i], "--policy") == 0 && strcmp(v, "clock") == 0)
            cf->policy = PC_POLICY_DEFAULT;
        else if (strcmp(argv[i], "--policy") == 0 &&
                 strcmp(v, "frequency") == 0)
            cf->policy = PC_POLICY_FREQUENCY;
        else if (strcmp(argv[i], "--keys") == 0)
            cf->keys = strtoull(v, NULL, 10);
        else if (strcmp(argv[i], "--capacity") == 0)
            cf->capacity = strtoull(v, NULL, 10);
        else if (strcmp(argv[i], "--ops") == 0)
            cf->ops = strtol(v, NULL, 10);
        else if (strcmp(argv[i], "--runs") == 0)
            cf->runs = strtol(v, NULL, 10);
        else if (strcmp(argv[i], "--vlen") == 0 &&
                 sscanf(v, "%u-%u", &cf->vmin, &cf->vmax) != 2)
            return false;
        else if (strcmp(argv[i], "--vlen") == 0)
            continue;
        else if (strcmp(argv[i], "--max-bytes") == 0)
            cf->max_bytes = strtoull(v, NULL, 10);
        else
            return false;
    }
    return cf->keys > cf->capacity && cf->capacity >= 2 * SHARDS &&
           cf->ops > 0 && cf->runs > 0 && cf->runs <= 99 && cf->vmin >= 1 &&
           cf->vmin <= cf->vmax && cf->vmax <= VMAX;
}

int main(int argc, char **argv)
{
    struct conf cf = {PC_POLICY_DEFAULT, 1000000, 100000, 2000000, 3, 8, 8, 0};
    double m[NARR][99], xfer[99];

    if (!parse(argc, argv, &cf)) {
        fprintf(stderr, "usage: purecache-sharing [--policy clock|frequency] "
                        "[--keys N] [--capacity C] [--ops N] [--runs R] "
                        "[--vlen A-B (1..4096)] [--max-bytes B]\n");
        return 2;
    }
    conf = &cf;
    printf("purecache-sharing: %s, uniform puts of %llu keys, values of "
           "%u..%u bytes, capacity %llu, max_bytes %llu, %u shards, %ld puts "
           "per thread, median of %ld runs\n",
           cf.policy == PC_POLICY_FREQUENCY ? "frequency" : "clock",
           (unsigned long long)cf.keys, cf.vmin, cf.vmax,
           (unsigned long long)cf.capacity, (unsigned long long)cf.max_bytes,
           SHARDS, cf.ops, cf.runs);
    for (long r = 0; r < cf.runs; r++) { /* interleaved, order alternating */
        xfer[r] = transfer_ns();
        if (xfer[r] < 0) {
            fprintf(stderr, "purecache-sharing: cannot start a thread\n");
            return 1;
        }
        for (int k = 0; k < NARR; k++) {
            int a = r % 2 ? NARR - 1 - k : k;

            m[a][r] = run(&cf, (enum arrangement)a);
            if (m[a][r] < 0) {
                fprintf(stderr, "purecache-sharing: out of memory\n");
                return 1;
            }
        }
    }
    for (int a = 0; a < NARR; a++) {
        double med;

        qsort(m[a], (size_t)cf.runs, sizeof m[a][0], cmp_double);
        med = median_sorted(m[a], cf.runs);
        printf("  %-9s %7.2f Mops/s  (%.2f..%.2f)  %6.0f ns per put\n",
               arr_name[a], med, m[a][0], m[a][cf.runs - 1],
               (a == ONE ? 1 : THREADS) * 1e3 / med);
    }
    qsort(xfer, (size_t)cf.runs, sizeof xfer[0], cmp_double);
    printf("  line transfer, CPU 0 <-> 1: %.0f ns  (%.0f..%.0f)\n",
           median_sorted(xfer, cf.runs), xfer[0], xfer[cf.runs - 1]);
    return 0;
}
