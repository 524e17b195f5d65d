/*
 * results: the in-memory store of a run's points and memory figures (see
 * results.h). Single-threaded: only the main thread adds or reads.
 */
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

const struct point *results_find(const char *dist, enum mix m, const char *peer,
                                 unsigned threads)
{
    for (size_t i = 0; i < npoints; i++)
        if (strcmp(points[i].dist, dist) == 0 && points[i].mix == m &&
            strcmp(points[i].peer, peer) == 0 && points[i].threads == threads)
            return &points[i];
    return NULL;
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
