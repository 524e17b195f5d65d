/*
 * memo_pool: memoize an expensive function called from a pool of worker
 * threads. Workers ask for the "price" of items whose ids follow a skewed
 * distribution; the first request for an id computes it (slowly), every
 * concurrent request for the same id waits for that one computation, and
 * later requests are served from the cache. Prints hits, misses and how
 * many times the expensive function really ran.
 *
 * Usage: purecache-memo-pool [threads] [requests per thread]
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "purecache.h"

static long computations; /* how often the expensive function ran */

/* The function being memoized: slow, deterministic. */
static double price_of(int64_t item, const char *currency)
{
    struct timespec nap = {0, 200000}; /* 0.2 ms of "work" */
    double rate = currency[0] == 'E' ? 0.92 : 1.0;

    __atomic_add_fetch(&computations, 1, __ATOMIC_RELAXED);
    nanosleep(&nap, NULL);
    return (double)(item % 977) * 1.25 * rate;
}

/* Defines: static pc_status price(pc_memo *, double *out, int64_t, const
 * char *), the cached form of price_of. */
PC_MEMOIZE(price, double, price_of, (int64_t item, const char *currency),
           (item, currency), PC_KEY_I64(item), PC_KEY_STR(currency))

struct worker {
    pc_memo *memo;
    int id;
    long requests;
    long failures;
    double total;
};

static void *work(void *p)
{
    struct worker *w = p;
    uint64_t x = 0x9e3779b97f4a7c15ULL * (uint64_t)(w->id + 1);

    for (long i = 0; i < w->requests; i++) {
        double v;

        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        /* Skewed: item = r1 * r2 favours small ids. */
        int64_t item = (int64_t)((x % 100) * ((x >> 20) % 100));
        const char *cur = (x >> 40) & 1 ? "EUR" : "USD";

        if (price(w->memo, &v, item, cur) == PC_OK)
            w->total += v;
        else
            w->failures++;
    }
    return NULL;
}

int main(int argc, char **argv)
{
    int threads = argc > 1 ? atoi(argv[1]) : 8;
    long requests = argc > 2 ? atol(argv[2]) : 20000;
    pc_options opts = {.capacity = 16384};
    pc_cache *cache;
    pc_backend backend;
    pc_memo *memo;
    pc_stats ms, cs;
    pc_status st;

    if (threads < 1 || threads > 256 || requests < 1) {
        fprintf(stderr, "usage: %s [threads 1..256] [requests]\n", argv[0]);
        return 2;
    }
    if ((st = pc_create(&opts, &cache)) != PC_OK ||
        (st = pc_backend_from_cache(cache, &backend)) != PC_OK ||
        (st = pc_memo_create(&backend, &memo)) != PC_OK) {
        fprintf(stderr, "setup: %s\n", pc_strerror(st));
        return 1;
    }
    struct worker *w = calloc((size_t)threads, sizeof *w);
    pthread_t *th = calloc((size_t)threads, sizeof *th);

    if (w == NULL || th == NULL)
        return 1;
    for (int i = 0; i < threads; i++) {
        w[i] = (struct worker){.memo = memo, .id = i, .requests = requests};
        pthread_create(&th[i], NULL, work, &w[i]);
    }
    long failures = 0;
    for (int i = 0; i < threads; i++) {
        pthread_join(th[i], NULL);
        failures += w[i].failures;
    }
    pc_memo_stats(memo, &ms);
    pc_stats_get(cache, &cs);
    printf("memo_pool (%s policy): %d threads x %ld requests\n", pc_policy(),
           threads, requests);
    printf("  memo hits %llu, misses %llu, loader calls %llu, errors %llu\n",
           (unsigned long long)ms.hits, (unsigned long long)ms.misses,
           (unsigned long long)ms.loader_calls,
           (unsigned long long)ms.loader_errors);
    printf("  expensive function ran %ld times for %ld requests "
           "(%ld failed); cache holds %zu results, %llu evictions\n",
           computations, (long)threads * requests, failures, pc_len(cache),
           (unsigned long long)cs.evictions);
    pc_memo_destroy(memo); /* also destroys the cache */
    free(w);
    free(th);
    return failures != 0;
}
