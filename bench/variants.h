/*
 * variants: the purecache policies with a time to live and with a byte
 * bound, timed beside their plain forms (issue 12).
 */
#ifndef BENCH_VARIANTS_H
#define BENCH_VARIANTS_H

#include <stdio.h>

#include "opts.h"
#include "peer.h"
#include "workload.h"

/* Run the variants of every purecache peer in peers on workload wl, for
 * each mix of o->var_mixes: print a table per mix and block, write rows to
 * csv (variants.csv), add the points to results under set "variants". */
void variants_run(const struct bench_opts *o, struct workload *wl,
                  const struct bench_peer *peers, int npeers, FILE *csv);

/* The CSV header of variants.csv. */
void variants_csv_header(FILE *csv);

#endif
