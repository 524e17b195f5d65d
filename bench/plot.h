/*
 * plot: gnuplot data files, scripts and (when gnuplot is installed and
 * plotting is on) PNGs in --out.
 */
#ifndef BENCH_PLOT_H
#define BENCH_PLOT_H

#include "opts.h"
#include "peer.h"
#include "workload.h"

/* tput-<dist>-<mix>.{dat,gp,png}: median Mops/s against threads, a line
 * per peer that has points of (dist, m) in results. */
void plot_throughput(const struct bench_opts *o, const char *dist, enum mix m,
                     const struct bench_peer *peers, int npeers);

/* miss-<trace>.{dat,gp,png}: miss ratio against cache size; rows[i] is
 * {size, clock, frequency, lru, reference lru} (NAN: not replayed).
 * Nothing when nrows is 0. */
void plot_trace(const struct bench_opts *o, const char *trace,
                const double rows[][5], int nrows);

#endif
