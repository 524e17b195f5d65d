/*
 * util: the few helpers every part of the harness uses: a monotonic
 * clock, the progress line on stderr, output files, comma-separated
 * lists, an allocator that exits instead of returning NULL (a benchmark
 * that ran out of memory has no result worth continuing for), and
 * interned names.
 */
#ifndef BENCH_UTIL_H
#define BENCH_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

/* Seconds on CLOCK_MONOTONIC. */
double bench_now(void);

/* Progress on stderr: one updating line on a terminal, a line every few
 * seconds in a log. bench_progress_init decides which (call it first);
 * bench_progress_done clears the line before a table row is printed. */
void bench_progress_init(void);
void bench_progress(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void bench_progress_done(void);

/* Open dir/name for writing; exits on failure. */
FILE *bench_open_out(const char *dir, const char *name);

/* Whether the comma-separated list holds item ("all" holds everything). */
bool bench_list_has(const char *list, const char *item);

/* malloc and realloc that exit on failure. */
void *bench_xmalloc(size_t n);
void *bench_xrealloc(void *p, size_t n);

/* A copy of s that lives until exit, the same pointer for equal strings:
 * for names that results keep after their owner is gone. */
const char *bench_intern(const char *s);

#endif
