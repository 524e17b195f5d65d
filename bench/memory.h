/*
 * memory: bytes a peer's cache costs per entry beyond the 16 bytes of key
 * and value, measured with jemalloc's statistics.
 */
#ifndef BENCH_MEMORY_H
#define BENCH_MEMORY_H

#include "opts.h"
#include "peer.h"

/* Create a cache of o->capacity, fill it with that many distinct keys and
 * store (allocated - 16 C) / C in *bytes_per_entry. Returns 0, or -1 when
 * the peer could not create a cache. */
/* jemalloc's stats.allocated now, after flushing this thread's cache (0 if
 * the statistics are unavailable). */
size_t memory_allocated(void);

int memory_per_entry(const struct bench_opts *o, const struct bench_peer *p,
                     double *bytes_per_entry);

#endif
