/*
 * refmiss: the reference miss ratios computed by libCacheSim, read from
 * the CSV the shared traces directory carries (see its README: columns
 * trace, requests, distinct, fraction, cache_size, then one miss ratio per
 * policy: LRU, Clock, SIEVE, S3-FIFO, W-TinyLFU, ARC, LIRS, FIFO, LFU).
 * The policy columns are taken from the header, whatever they are, so a
 * regenerated CSV with more policies needs no change here. Cache sizes
 * there are floor(fraction x distinct), every key costing 1: trace mode
 * sizes its caches the same way, so a row and a replayed cell are the
 * same experiment.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "refmiss.h"

/* Split line at commas in place; returns the number of fields. */
static int split(char *line, char **f, int max)
{
    int n = 0;
    char *p = line;

    line[strcspn(line, "\r\n")] = '\0';
    while (n < max) {
        f[n++] = p;
        p = strchr(p, ',');
        if (p == NULL)
            break;
        *p++ = '\0';
    }
    return n;
}

int refmiss_load(struct refmiss *r, const char *dir)
{
    char path[4096], line[1024], *f[5 + REFMISS_MAX_POLICIES];
    size_t cap = 0;
    FILE *in;
    int n;

    memset(r, 0, sizeof *r);
    snprintf(path, sizeof path, "%s/%s", dir, REFMISS_FILE);
    in = fopen(path, "r");
    if (in == NULL)
        return -1;
    if (fgets(line, sizeof line, in) == NULL ||
        (n = split(line, f, 5 + REFMISS_MAX_POLICIES)) < 6 ||
        strcmp(f[0], "trace") != 0 || strcmp(f[4], "cache_size") != 0) {
        fclose(in);
        return -1;
    }
    r->npolicies = n - 5;
    for (int i = 0; i < r->npolicies; i++)
        snprintf(r->policy[i], sizeof r->policy[i], "%s", f[5 + i]);
    while (fgets(line, sizeof line, in) != NULL) {
        struct refmiss_row *row;

        if (split(line, f, 5 + REFMISS_MAX_POLICIES) != 5 + r->npolicies)
            continue;
        if (r->nrows == cap) {
            cap = cap ? 2 * cap : 64;
            row = realloc(r->rows, cap * sizeof *r->rows);
            if (row == NULL) {
                fclose(in);
                refmiss_free(r);
                return -1;
            }
            r->rows = row;
        }
        row = &r->rows[r->nrows++];
        snprintf(row->trace, sizeof row->trace, "%s", f[0]);
        row->requests = strtoull(f[1], NULL, 10);
        row->distinct = strtoull(f[2], NULL, 10);
        row->fraction = atof(f[3]);
        row->size = strtoull(f[4], NULL, 10);
        for (int i = 0; i < r->npolicies; i++)
            row->miss[i] = atof(f[5 + i]);
    }
    fclose(in);
    return 0;
}

void refmiss_free(struct refmiss *r)
{
    free(r->rows);
    memset(r, 0, sizeof *r);
}

const struct refmiss_row *refmiss_find(const struct refmiss *r,
                                       const char *trace, double fraction)
{
    for (size_t i = 0; i < r->nrows; i++)
        if (strcmp(r->rows[i].trace, trace) == 0 &&
            fabs(r->rows[i].fraction - fraction) < 1e-9)
            return &r->rows[i];
    return NULL;
}

size_t refmiss_cells(const struct refmiss *r, size_t min_size)
{
    size_t n = 0;

    for (size_t i = 0; i < r->nrows; i++)
        n += r->rows[i].size >= min_size;
    return n;
}

int refmiss_best(const struct refmiss *r, const struct refmiss_row *row)
{
    int best = 0;

    for (int i = 1; i < r->npolicies; i++)
        if (row->miss[i] < row->miss[best])
            best = i;
    return best;
}
