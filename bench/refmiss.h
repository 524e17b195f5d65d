/*
 * refmiss: libCacheSim's reference miss ratios for the shared traces
 * (libcachesim-miss-ratios.csv beside them), looked up by trace and cache
 * size fraction.
 */
#ifndef BENCH_REFMISS_H
#define BENCH_REFMISS_H

#include <stddef.h>

#define REFMISS_MAX_POLICIES 16
#define REFMISS_FILE "libcachesim-miss-ratios.csv"

struct refmiss_row {
    char trace[64];
    size_t requests, distinct;
    double fraction;
    size_t size; /* floor(fraction x distinct) */
    double miss[REFMISS_MAX_POLICIES];
};

struct refmiss {
    int npolicies;
    char policy[REFMISS_MAX_POLICIES][24]; /* column names: "LRU", ... */
    struct refmiss_row *rows;
    size_t nrows;
};

/* Read dir/REFMISS_FILE into *r. Returns 0, or -1 when it is missing or
 * malformed (then *r is empty: npolicies 0, no rows). */
int refmiss_load(struct refmiss *r, const char *dir);
void refmiss_free(struct refmiss *r);

/* The row of (trace, fraction), or NULL. */
const struct refmiss_row *refmiss_find(const struct refmiss *r,
                                       const char *trace, double fraction);

/* Rows of at least min_size entries: the cells policies are compared on. */
size_t refmiss_cells(const struct refmiss *r, size_t min_size);

/* The lowest miss ratio of a row and its policy's index. */
int refmiss_best(const struct refmiss *r, const struct refmiss_row *row);

#endif
