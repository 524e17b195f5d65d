/*
 * opts: the harness's configuration, one struct every module reads.
 *
 * cli.c fills it from the command line (the defaults live there) and
 * nothing writes it afterwards. It is data only, so that a module which
 * needs a setting depends on this header and not on the parser.
 */
#ifndef BENCH_OPTS_H
#define BENCH_OPTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define BENCH_MAX_THREADS 64 /* entries in --threads */
#define BENCH_MAX_RUNS 64    /* --runs */
/* Defaults that targets are about: a measurement on less is PARTIAL. */
#define BENCH_HIT_OPS 4000000u      /* --hit-ops */
#define BENCH_RSS_BYTES (64u << 20) /* --rss-bytes */
#define BENCH_MEM_CAPACITY 100000u  /* --capacity, for bytes per entry */

struct bench_opts {
    const char *dists;                   /* "zipf,uniform" */
    double skew;                         /* Zipf exponent */
    size_t keys;                         /* N distinct keys */
    size_t capacity;                     /* C */
    const char *mixes;                   /* "get,90-10,aside,put" */
    unsigned threads[BENCH_MAX_THREADS]; /* thread counts to measure */
    unsigned nthreads;
    unsigned max_threads; /* the largest of threads[] */
    unsigned runs;        /* timed runs per point (median reported) */
    double duration;      /* seconds per timed run */
    size_t warm_ops;      /* cache-aside ops before the first run */
    size_t stream_len;    /* pre-generated keys per thread (power of two) */
    unsigned lat_every;   /* latency run: time one op in this many */
    unsigned lat_runs;    /* latency runs per point, samples pooled */
    const char *peers;    /* "all" or a list of names */
    const char *traces;   /* "all", "small", "none" or a list of names */
    const char *trace_dir;
    const char *out_dir;
    const char *lib_clock, *lib_lru;
    const char *lib_b; /* --lib-b: a second build, as peers "<policy>-b" */
    uint64_t hash_seed;
    size_t hit_ops;        /* hit-ratio report: ops measured (0: skip) */
    const char *hit_dists; /* its distributions: "zipf" */
    const char *var_dists; /* expiry/byte-bound variants: "zipf", "none" */
    const char *var_mixes; /* their mixes: "get,aside,put" */
    double var_duration;   /* their seconds per timed run */
    unsigned var_runs;     /* their timed runs per point */
    uint64_t ttl_ms;       /* the expiry variant's ttl */
    uint64_t var_bytes;    /* the byte-bound variant's max_bytes */
    uint64_t rss_bytes;    /* RSS / max_bytes measurement's bound (0: skip) */
    long callgrind_get;    /* > 0: callgrind get mode, this many ops */
    long callgrind_miss;   /* > 0: callgrind miss mode, this many */
    const char *callgrind_peer; /* callgrind mode on this peer */
    bool pin, plot, synth, quick;
};

#endif
