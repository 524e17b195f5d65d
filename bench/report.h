/*
 * report: everything a synthetic run prints on stdout (banner, one table
 * per mix, the memory table, the closing lines) and the CSV files it
 * writes into --out (runs.csv, throughput.csv, memory.csv).
 */
#ifndef BENCH_REPORT_H
#define BENCH_REPORT_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "memory.h"
#include "opts.h"
#include "peer.h"
#include "workload.h"

struct report_csv {
    FILE *runs;     /* runs.csv: every timed run */
    FILE *points;   /* throughput.csv: one row per point */
    FILE *memory;   /* memory.csv: one row per peer */
    FILE *hit;      /* hitratio.csv (rows: hitratio.c) */
    FILE *variants; /* variants.csv (rows: variants.c) */
    FILE *rss;      /* rss.csv (rows: rss.c) */
};

/* The settings line and the legend of the peers that will run. */
void report_banner(const struct bench_opts *o, long ncpu, uint32_t timer_ns,
                   const struct bench_peer *peers, int npeers);

/* Create the CSV files in o->out_dir, headers written (each by the module
 * that writes its rows); exits on failure. */
void report_open(const struct bench_opts *o, struct report_csv *csv);
void report_close(struct report_csv *csv);

/* A note when the workload's warm-up stream needed fill keys to leave the
 * caches full (nothing otherwise). */
void report_workload(const struct workload *wl);

/* A mix's table: the heading before its runs, then the rows (and CSV
 * rows) of results points [first, last), which runner_mix added. */
void report_mix_begin(const struct bench_opts *o, const char *dist, enum mix m);
void report_mix_end(struct report_csv *csv, size_t first, size_t last);

/* The memory table: heading, then one row per peer measured. */
void report_memory_begin(const struct bench_opts *o);
void report_memory_row(struct report_csv *csv, const char *peer,
                       size_t capacity, const struct memory_figure *m);

/* Where the files are and how many targets were missed. */
void report_footer(const struct bench_opts *o, int missed);

#endif
