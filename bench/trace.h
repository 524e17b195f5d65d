/*
 * trace: replay real access traces through the purecache policies and a
 * reference LRU, check the policies' miss ratios, and set them beside
 * libCacheSim's for the same cells.
 */
#ifndef BENCH_TRACE_H
#define BENCH_TRACE_H

#include "opts.h"
#include "peer.h"

/* Replay the traces o->traces selects under o->trace_dir, print the table
 * and its summary, write traces.csv and the miss-ratio plots, add the
 * summary's figures ("trace.mean.<column>", "trace.worst.<policy>") to
 * results. freq may be NULL (a library without the frequency policy).
 * Returns the number of checks violated (a missing trace directory is not
 * a violation). */
int trace_run(const struct bench_opts *o, const struct bench_peer *clock,
              const struct bench_peer *freq, const struct bench_peer *lru,
              const struct bench_peer *ref);

#endif
