/*
 * peer: the one interface every cache in the benchmark is driven through.
 *
 * The harness compares purecache (both policies) with independent
 * implementations in the same run. Each is wrapped behind this small C
 * vtable so that the timed loops are identical for all of them: one
 * indirect call per operation, 8-byte integer keys, 8-byte values.
 *
 * Capabilities differ, and the harness only runs a peer on the mixes it can
 * express (see runner_can_run in runner.c):
 *   PEER_GET    get(key) reports hit/miss without side effects beyond recency
 *   PEER_PUT    put(key, value) inserts or replaces
 *   PEER_LOAD   load(key): get, computing and inserting the value on a miss
 *               in one call (oneTBB's concurrent_lru_cache can only do this)
 *   PEER_EVICTS the peer is bounded by its capacity; peers without it (raw
 *               ck_hs, libcuckoo) are unbounded ceilings and are pre-filled
 *               with the C hottest keys instead of warmed up
 *
 * Thread-safety: every function except create/destroy may be called from
 * any number of threads at once. quiesce (optional) returns retired memory
 * before a memory measurement (purecache: pc_reclaim). warmed (optional)
 * is called once the harness has warmed a cache up, before it is timed
 * (purecache variants with a time to live switch their puts from the
 * warm-up's staggered ttls to the cache's own).
 */
#ifndef BENCH_PEER_H
#define BENCH_PEER_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

enum {
    PEER_GET = 1u << 0,
    PEER_PUT = 1u << 1,
    PEER_LOAD = 1u << 2,
    PEER_EVICTS = 1u << 3,
};

struct bench_peer {
    const char *name; /* short, for tables and CSV: "clock", "mutex-lru" */
    const char *what; /* one line for the legend */
    unsigned caps;
    void *ctx; /* passed to create */
    void *(*create)(void *ctx, size_t capacity);
    void (*destroy)(void *h);
    /* 1 on a hit (value in *val), 0 on a miss. */
    int (*get)(void *h, uint64_t key, uint64_t *val);
    void (*put)(void *h, uint64_t key, uint64_t val);
    /* 1 on a hit, 0 when the value had to be computed (a miss). */
    int (*load)(void *h, uint64_t key, uint64_t *val);
    void (*quiesce)(void *h);
    void (*warmed)(void *h);
};

/* The value every peer stores for key (computed on a miss). */
static inline uint64_t bench_value_of(uint64_t key)
{
    return key ^ 0x5bd1e9955bd1e995ull;
}

/* A cheap, well-mixed 64-bit hash for the peers' own tables. */
static inline uint64_t bench_hash64(uint64_t k)
{
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdull;
    k ^= k >> 33;
    k *= 0xc4ceb9fe1a85ec53ull;
    k ^= k >> 33;
    return k;
}

/* Peer constructors; each returns 0 and fills *p, or -1 (message on
 * stderr) when the peer is unavailable. peer_purecache's policy is
 * "clock" or "frequency" (lib_path: the CLOCK build) or "lru" (the
 * exact-LRU build). */
int peer_purecache(struct bench_peer *p, const char *policy,
                   const char *lib_path, uint64_t hash_seed);
/* The policy a purecache library was built with ("clock" or "lru"), or
 * NULL (message on stderr) if it cannot be loaded. */
const char *peer_purecache_lib_policy(const char *lib_path);
/* The same, named `name` (--lib-b: a second build of a policy, "clock-b",
 * run beside the first for an A/B comparison in one process). */
int peer_purecache_as(struct bench_peer *p, const char *policy,
                      const char *lib_path, uint64_t hash_seed,
                      const char *name);
int peer_ckhs(struct bench_peer *p);
int peer_mutex_lru(struct bench_peer *p);
int peer_striped_lru(struct bench_peer *p);
int peer_tbb_lru(struct bench_peer *p);
int peer_cuckoo(struct bench_peer *p);

/* For --callgrind-get: the CLOCK library's own pc_get, and the pc_cache
 * behind a purecache peer's handle. */
void *peer_purecache_get_fn(const struct bench_peer *p);
void *peer_purecache_cache(void *handle);
/* For --callgrind-miss: the evictions a purecache peer's cache counted
 * (pc_stats_get). Returns 0, or -1 when the library lacks it. */
int peer_purecache_evictions(void *handle, uint64_t *evictions);

#ifdef __cplusplus
}
#endif

#endif
