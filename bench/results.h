/*
 * results: what a synthetic run measured, kept for the end of the run.
 *
 * The runner adds one point per (distribution, mix, peer, thread count)
 * and the memory loop one figure per peer; the other measurements (hit
 * ratios, traces, the RSS of a byte-bounded cache) add named figures. The
 * report, the plots and the targets only read them. Keeping the store apart
 * from its producers means none of the readers depends on how the numbers were
 * obtained.
 */
#ifndef BENCH_RESULTS_H
#define BENCH_RESULTS_H

#include <stdbool.h>
#include <stddef.h>

#include "opts.h"
#include "workload.h"

#define BENCH_MAX_PEERS 16

struct point {
    const char *set;  /* NULL: the main mix tables; else the block's name
                         ("variants"), so that a peer measured again there
                         is not confused with its main-table point */
    const char *dist; /* workload's dist (a static string) */
    enum mix mix;
    const char *peer; /* the peer's name (a static string) */
    unsigned threads;
    unsigned runs;
    double mops[BENCH_MAX_RUNS];    /* throughput of each timed run */
    double run_hit[BENCH_MAX_RUNS]; /* hit ratio of each timed run */
    double med, min, max;           /* over mops[] */
    double hit;                     /* mean over run_hit[] */
    double p50, p99, p999;          /* ns, from the separate latency runs
                                       (NAN when there was none) */
    size_t nlat;                    /* the samples they pooled */
};

/* Append a zeroed point and return its index. Indices stay valid; the
 * pointers results_point returns do not survive the next add. */
size_t results_add_point(void);
struct point *results_point(size_t i);
size_t results_npoints(void);

/* The first point of this (dist, mix, peer, threads) in the main tables,
 * or NULL; results_find_in looks in the points of `set` instead. */
const struct point *results_find(const char *dist, enum mix m, const char *peer,
                                 unsigned threads);
const struct point *results_find_in(const char *set, const char *dist,
                                    enum mix m, const char *peer,
                                    unsigned threads);

/* The per-run ratios a->mops[i] / b->mops[i] of two interleaved points:
 * their median in *med and range in *lo..*hi. Returns how many runs were
 * paired (0: none, or a or b NULL; nothing is stored then). */
unsigned results_ratio(const struct point *a, const struct point *b,
                       double *med, double *lo, double *hi);

/* Memory per entry beyond key and value, one figure per peer. */
void results_add_memory(const char *peer, double bytes_per_entry);
size_t results_nmemory(void);
const char *results_memory_peer(size_t i);
double results_memory(size_t i);

/* Named figures ("hit.zipf.frequency", "trace.mean.frequency", ...): a
 * value, a short note for the targets table, and whether it is partial
 * (measured on less than the target asks for, e.g. a subset of the trace
 * cells). Adding a name again replaces it. */
struct figure {
    char name[64];
    double value;
    char note[64];
    bool partial;
};
void results_add_figure(const char *name, double value, const char *note,
                        bool partial);
const struct figure *results_figure(const char *name); /* or NULL */

#endif
