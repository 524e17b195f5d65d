/*
 * memory: per-entry overhead from jemalloc's stats.allocated.
 *
 * stats.allocated (after an "epoch" refresh and a flush of this thread's
 * tcache, so cached frees are returned) is read before creating a cache
 * and after filling it with C distinct keys, then, for a cache that
 * evicts, after 2 C more puts of keys it never saw, each of which evicts
 * one: what a cache costs once it has churned (a policy's queues, ghost
 * and free slots settle only then; a cache measured only as it first
 * fills shows what its growth reached, not what service costs). For
 * purecache, each reading follows pc_reclaim (the peer's quiesce), so
 * retired garbage waiting for a grace period is not counted. (delta -
 * 16 C) / C is the cost per entry beyond key and value. It includes
 * everything the cache allocates (index, shards, per-thread records),
 * amortised over the entries. jemalloc counts each allocation at its size
 * class, so rounding up is included; its own metadata and fragmentation
 * are not.
 *
 * Every peer and both purecache libraries use the same libjemalloc (see
 * peer_purecache.c), so one counter sees all their allocations.
 */
#include <jemalloc/jemalloc.h>
#include <math.h>

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

static double per_entry(size_t before, size_t after, size_t c)
{
    return ((double)after - (double)before - 16.0 * (double)c) / (double)c;
}

/* Keys of ranks [from, to) into h: put, or load for a peer without put. */
static void fill(const struct bench_peer *p, void *h, size_t from, size_t to)
{
    for (size_t r = from; r < to; r++) {
        uint64_t k = key_of_rank(r), v;

        if (p->put != NULL)
            p->put(h, k, bench_value_of(k));
        else
            p->load(h, k, &v);
    }
    if (p->quiesce != NULL)
        p->quiesce(h);
}

int memory_per_entry(const struct bench_opts *o, const struct bench_peer *p,
                     struct memory_figure *m)
{
    size_t before, c = o->capacity;
    void *h;

    bench_progress("memory: %s", p->name);
    before = memory_allocated();
    h = p->create(p->ctx, c);
    if (h == NULL)
        return -1;
    fill(p, h, 0, c);
    m->filled = per_entry(before, memory_allocated(), c);
    m->churned = NAN;
    if (p->caps & PEER_EVICTS) {
        fill(p, h, c, 3 * c);
        m->churned = per_entry(before, memory_allocated(), c);
    }
    p->destroy(h);
    bench_progress_done();
    return 0;
}

double memory_judged(const struct memory_figure *m)
{
    return isnan(m->churned) || m->filled > m->churned ? m->filled : m->churned;
}
