/*
 * memory: bytes a peer's cache costs per entry beyond the 16 bytes of key
 * and value, measured with jemalloc's statistics.
 */
#ifndef BENCH_MEMORY_H
#define BENCH_MEMORY_H

#include "opts.h"
#include "peer.h"

/* jemalloc's stats.allocated now, after flushing this thread's cache (0 if
 * the statistics are unavailable). */
size_t memory_allocated(void);

/* A cache's cost per entry beyond key and value, (allocated - 16 C) / C:
 * once filled with C = o->capacity distinct keys, and, for a peer that
 * evicts, again after 2 C puts of keys it never saw (each evicts one: the
 * cost a cache in service settles at); NAN for a peer that does not. */
struct memory_figure {
    double filled;
    double churned;
};

/* Create a cache of o->capacity and measure *m. Returns 0, or -1 when the
 * peer could not create a cache. */
int memory_per_entry(const struct bench_opts *o, const struct bench_peer *p,
                     struct memory_figure *m);

/* The figure a memory target holds: the larger of the two. */
double memory_judged(const struct memory_figure *m);

#endif
