/*
 * results: what a synthetic run measured, kept for the end of the run.
 *
 * The runner adds one point per (distribution, mix, peer, thread count)
 * and the memory loop one figure per peer; the report, the plots and the
 * targets only read them. Keeping the store apart from its producers means
 * none of the readers depends on how the numbers were obtained.
 */
#ifndef BENCH_RESULTS_H
#define BENCH_RESULTS_H

#include <stdbool.h>
#include <stddef.h>

#include "opts.h"
#include "workload.h"

#define BENCH_MAX_PEERS 8

struct point {
    const char *dist; /* workload's dist (a static string) */
    enum mix mix;
    const char *peer; /* the peer's name (a static string) */
    unsigned threads;
    unsigned runs;
    double mops[BENCH_MAX_RUNS];    /* throughput of each timed run */
    double run_hit[BENCH_MAX_RUNS]; /* hit ratio of each timed run */
    double med, min, max;           /* over mops[] */
    double hit;                     /* mean over run_hit[] */
    double p50, p99, p999;          /* ns, from the separate latency run */
};

/* Append a zeroed point and return its index. Indices stay valid; the
 * pointers results_point returns do not survive the next add. */
size_t results_add_point(void);
struct point *results_point(size_t i);
size_t results_npoints(void);

/* The first point of this (dist, mix, peer, threads), or NULL. */
const struct point *results_find(const char *dist, enum mix m, const char *peer,
                                 unsigned threads);

/* Memory per entry beyond key and value, one figure per peer. */
void results_add_memory(const char *peer, double bytes_per_entry);
size_t results_nmemory(void);
const char *results_memory_peer(size_t i);
double results_memory(size_t i);

#endif
