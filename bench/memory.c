/*
 * memory: per-entry overhead from jemalloc's stats.allocated.
 *
 * stats.allocated (after an "epoch" refresh and a flush of this thread's
 * tcache, so cached frees are returned) is read before creating a cache
 * and after filling it with C distinct keys; for purecache, after
 * pc_reclaim (the peer's quiesce), so retired garbage waiting for a grace
 * period is not counted. (delta - 16 C) / C is the cost per entry beyond
 * key and value. It includes everything the cache allocates (index,
 * shards, per-thread records), amortised over the entries. jemalloc
 * counts each allocation at its size class, so rounding up is included;
 * its own metadata and fragmentation are not.
 *
 * Every peer and both purecache libraries use the same libjemalloc (see
 * peer_purecache.c), so one counter sees all their allocations.
 */
#include <jemalloc/jemalloc.h>

#include "memory.h"
#include "util.h"
#include "workload.h"

size_t memory_allocated(void)
{
    uint64_t epoch = 1;
    size_t sz = sizeof epoch, allocated = 0;

    mallctl("thread.tcache.flush", NULL, NULL, NULL, 0);
    mallctl("epoch", &epoch, &sz, &epoch, sz);
    sz = sizeof allocated;
    if (mallctl("stats.allocated", &allocated, &sz, NULL, 0) != 0)
        return 0;
    return allocated;
}

int memory_per_entry(const struct bench_opts *o, const struct bench_peer *p,
                     double *bytes_per_entry)
{
    size_t before, after;
    void *h;

    bench_progress("memory: %s", p->name);
    before = memory_allocated();
    h = p->create(p->ctx, o->capacity);
    if (h == NULL)
        return -1;
    for (size_t r = 0; r < o->capacity; r++) {
        uint64_t k = key_of_rank(r), v;

        if (p->put != NULL)
            p->put(h, k, bench_value_of(k));
        else
            p->load(h, k, &v);
    }
    if (p->quiesce != NULL)
        p->quiesce(h);
    after = memory_allocated();
    p->destroy(h);
    *bytes_per_entry =
        ((double)after - (double)before - 16.0 * (double)o->capacity) /
        (double)o->capacity;
    bench_progress_done();
    return 0;
}
