/*
 * cli: the command line. Fills struct bench_opts (defaults, options,
 * --quick, derived settings) and prints --help.
 */
#ifndef BENCH_CLI_H
#define BENCH_CLI_H

#include "opts.h"

/* Parse argv into *o. Returns -1 when the harness should run, else the
 * status main should exit with: 0 after --help, 2 for a bad command line
 * (with a message and the usage on stderr). */
int cli_parse(int argc, char **argv, struct bench_opts *o);

#endif
