/*
 * peer_tbb: oneTBB's concurrent_lru_cache (a preview feature of libtbb-dev).
 *
 * It is a value-function cache: operator[](key) returns a handle to the
 * cached value, calling the function given at construction to compute it
 * on a miss, and every operation goes through one aggregator (a combining
 * lock: one thread applies the queued operations of all). It cannot look a
 * key up without loading it, and has no put, so it expresses exactly one of
 * the harness's mixes, cache-aside (get, put on miss), as load(). The
 * read-only and 90/10 mixes do not run it.
 *
 * Capacity: its constructor's argument bounds the LRU history of unused
 * entries; with handles released immediately (as here) that is the number
 * of cached entries.
 *
 * Misses are counted by the value function in a thread-local flag, which
 * load() reads back after operator[] returns.
 */
#define TBB_PREVIEW_CONCURRENT_LRU_CACHE 1
#include <tbb/concurrent_lru_cache.h>

#include <new>

#include "peer.h"

namespace
{

thread_local bool computed;

uint64_t compute_value(uint64_t key)
{
    computed = true;
    return bench_value_of(key);
}

using lru_cache = tbb::concurrent_lru_cache<uint64_t, uint64_t>;

void *tbb_create(void *, size_t capacity)
{
    return new (std::nothrow) lru_cache(compute_value, capacity);
}

void tbb_destroy(void *h)
{
    delete static_cast<lru_cache *>(h);
}

int tbb_load(void *h, uint64_t key, uint64_t *val)
{
    computed = false;
    {
        lru_cache::handle hd = (*static_cast<lru_cache *>(h))[key];
        *val = hd.value();
    }
    return computed ? 0 : 1;
}

} // namespace

extern "C" int peer_tbb_lru(struct bench_peer *p)
{
    *p = bench_peer{};
    p->name = "tbb-lru";
    p->what = "oneTBB concurrent_lru_cache (cache-aside only: value function)";
    p->caps = PEER_LOAD | PEER_EVICTS;
    p->create = tbb_create;
    p->destroy = tbb_destroy;
    p->load = tbb_load;
    return 0;
}
