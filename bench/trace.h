/*
 * trace: replay real access traces through both purecache policies and a
 * reference LRU, and check the policies' miss ratios.
 */
#ifndef BENCH_TRACE_H
#define BENCH_TRACE_H

#include "opts.h"
#include "peer.h"

/* Replay the traces o->traces selects under o->trace_dir, print the table,
 * write traces.csv and the miss-ratio plots. Returns the number of checks
 * violated (a missing trace directory is not a violation). */
int trace_run(const struct bench_opts *o, const struct bench_peer *clock,
              const struct bench_peer *lru, const struct bench_peer *ref);

#endif
