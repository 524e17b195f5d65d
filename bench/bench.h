/*
 * bench: declarations shared by the harness's translation units (bench.c:
 * options, synthetic workloads, timing, tables; trace.c: trace replay;
 * plot.c: gnuplot output).
 */
#ifndef BENCH_H
#define BENCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "peer.h"

struct bench_opts {
    const char *dists;    /* "zipf,uniform" */
    double skew;          /* Zipf exponent */
    size_t keys;          /* N distinct keys */
    size_t capacity;      /* C */
    const char *mixes;    /* "get,90-10,aside" */
    unsigned threads[64]; /* thread counts to measure */
    unsigned nthreads;
    unsigned runs;      /* timed runs per point (median reported) */
    double duration;    /* seconds per timed run */
    size_t warm_ops;    /* cache-aside ops before the first run */
    size_t stream_len;  /* pre-generated keys per thread (power of two) */
    unsigned lat_every; /* latency run: time one op in this many */
    const char *peers;  /* "all" or a list of names */
    const char *traces; /* "default", "all", "none" or a list of names */
    const char *trace_dir;
    const char *out_dir;
    const char *lib_clock, *lib_lru;
    uint64_t hash_seed;
    bool pin, plot, synth;
};

double bench_now(void);
/* Progress on stderr (one updating line on a terminal). */
void bench_progress(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void bench_progress_done(void);
/* Open out_dir/name for writing; exits on failure. */
FILE *bench_open_out(const struct bench_opts *o, const char *name);
bool bench_list_has(const char *list, const char *item);

/* Trace mode: returns the number of target violations found. */
int trace_run(const struct bench_opts *o, const struct bench_peer *clock,
              const struct bench_peer *lru, const struct bench_peer *ref);

/* gnuplot: render `script` (a file in out_dir) if gnuplot exists. */
void bench_gnuplot(const struct bench_opts *o, const char *script);

#endif
