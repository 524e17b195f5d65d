/*
 * results: the in-memory store of a run's points, memory figures and named
 * figures (see results.h). Single-threaded: only the main thread adds or
 * reads.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "results.h"

static struct point *points;
static size_t npoints, points_cap;

struct mem_result {
    const char *peer;
    double per_entry;
};

static struct mem_result mems[BENCH_MAX_PEERS];
static size_t nmems;

size_t results_add_point(void)
{
    if (npoints == points_cap) {
        points_cap = points_cap ? 2 * points_cap : 64;
        points = realloc(points, points_cap * sizeof *points);
        if (points == NULL)
            exit(1);
    }
    memset(&points[npoints], 0, sizeof *points);
    return npoints++;
}

struct point *results_point(size_t i)
{
    return &points[i];
}

size_t results_npoints(void)
{
    return npoints;
}

static bool same_set(const char *a, const char *b)
{
    return a == NULL || b == NULL ? a == b : strcmp(a, b) == 0;
}

const struct point *results_find_in(const char *set, const char *dist,
                                    enum mix m, const char *peer,
                                    unsigned threads)
{
    for (size_t i = 0; i < npoints; i++)
        if (same_set(points[i].set, set) && strcmp(points[i].dist, dist) == 0 &&
            points[i].mix == m && strcmp(points[i].peer, peer) == 0 &&
            points[i].threads == threads)
            return &points[i];
    return NULL;
}

const struct point *results_find(const char *dist, enum mix m, const char *peer,
                                 unsigned threads)
{
    return results_find_in(NULL, dist, m, peer, threads);
}

static int cmp_double(const void *x, const void *y)
{
    double a = *(const double *)x, b = *(const double *)y;

    return (a > b) - (a < b);
}

unsigned results_ratio(const struct point *a, const struct point *b,
                       double *med, double *lo, double *hi)
{
    double r[BENCH_MAX_RUNS];
    unsigned n = 0;

    if (a == NULL || b == NULL)
        return 0;
    for (unsigned i = 0; i < a->runs && i < b->runs; i++)
        if (b->mops[i] > 0)
            r[n++] = a->mops[i] / b->mops[i];
    if (n == 0)
        return 0;
    qsort(r, n, sizeof *r, cmp_double);
    *med = n % 2 ? r[n / 2] : (r[n / 2 - 1] + r[n / 2]) / 2;
    *lo = r[0];
    *hi = r[n - 1];
    return n;
}

void results_add_memory(const char *peer, double bytes_per_entry)
{
    if (nmems == BENCH_MAX_PEERS)
        return;
    mems[nmems].peer = peer;
    mems[nmems++].per_entry = bytes_per_entry;
}

size_t results_nmemory(void)
{
    return nmems;
}

const char *results_memory_peer(size_t i)
{
    return mems[i].peer;
}

double results_memory(size_t i)
{
    return mems[i].per_entry;
}

#define MAX_FIGURES 64

static struct figure figures[MAX_FIGURES];
static size_t nfigures;

void results_add_figure(const char *name, double value, const char *note,
                        bool partial)
{
    struct figure *f = NULL;

    for (size_t i = 0; i < nfigures && f == NULL; i++)
        if (strcmp(figures[i].name, name) == 0)
            f = &figures[i];
    if (f == NULL) {
        if (nfigures == MAX_FIGURES)
            return;
        f = &figures[nfigures++];
    }
    snprintf(f->name, sizeof f->name, "%s", name);
    snprintf(f->note, sizeof f->note, "%s", note ? note : "");
    f->value = value;
    f->partial = partial;
}

const struct figure *results_figure(const char *name)
{
    for (size_t i = 0; i < nfigures; i++)
        if (strcmp(figures[i].name, name) == 0)
            return &figures[i];
    return NULL;
}
