/*
 * hitratio: the steady-state hit ratio of every bounded peer on one key
 * distribution, measured single-threaded (so deterministic), beside the
 * static optimum: the hit ratio of a cache holding the C hottest keys.
 */
#ifndef BENCH_HITRATIO_H
#define BENCH_HITRATIO_H

#include <stdio.h>

#include "opts.h"
#include "peer.h"
#include "workload.h"

/* Print the table for workload wl, add a hitratio.csv row per peer to csv
 * and a figure "hit.<dist>.<peer>" per peer to results. Nothing when
 * o->hit_ops is 0. */
/* The CSV header of hitratio.csv. */
void hitratio_csv_header(FILE *csv);

void hitratio_run(const struct bench_opts *o, const struct workload *wl,
                  const struct bench_peer *peers, int npeers, FILE *csv);

#endif
