/*
 * targets: the project's performance targets, checked against the results
 * of the same run and printed as a table.
 */
#ifndef BENCH_TARGETS_H
#define BENCH_TARGETS_H

#include "opts.h"

/* Print the targets table; returns how many targets were missed. */
int targets_check(const struct bench_opts *o);

#endif
