/*
 * rss: resident memory per byte of the bound, for byte-bounded purecache
 * caches full of 100-byte values (issue 12).
 */
#ifndef BENCH_RSS_H
#define BENCH_RSS_H

#include <stdio.h>

#include "opts.h"
#include "peer.h"

/* Measure every purecache peer in peers (nothing when o->rss_bytes is 0):
 * print the table, write rss.csv rows to csv, add figures "rss.<peer>"
 * (RSS growth / max_bytes) and "rss-overhead.<peer>" (bytes per entry
 * beyond key and value) to results. */
/* The CSV header of rss.csv. */
void rss_csv_header(FILE *csv);

void rss_run(const struct bench_opts *o, const struct bench_peer *peers,
             int npeers, FILE *csv);

#endif
