/*
 * purecache: a concurrent, in-process key -> value cache.
 *
 * A bounded cache of byte-string keys and values, safe to call from any number
 * of OS threads. Two eviction policies exist; one is chosen when the library
 * is built and pc_policy() names it:
 *
 *   "clock"  (default, -DPURECACHE_EXACT_LRU=OFF) a sharded CLOCK
 *            approximation of LRU. Reads take no lock, perform no atomic
 *            read-modify-write and allocate nothing (after a thread's first
 *            call on a cache); they write no shared cache line unless they
 *            set an entry's reference bit, which happens at most once per
 *            entry between two passes of the clock hand.
 *   "lru"    (-DPURECACHE_EXACT_LRU=ON) exact LRU over the whole cache:
 *            single-threaded it behaves op for op like a textbook LRU of the
 *            same capacity, and every operation is linearizable. Reads
 *            take no lock; they pay one shared atomic increment and one
 *            compare-and-swap to record their place in the recency order,
 *            and wait out a put that is publishing (see pc_get).
 *
 * CONVENTIONS (apply to every function below unless it says otherwise)
 *
 *   Ownership   Keys and values are copied in by pc_put and copied out by
 *               pc_get; the cache never keeps a pointer the caller passed.
 *               The cache owns its memory; pc_destroy releases all of it.
 *   Errors      Every failing call returns a negative pc_status and changes
 *               nothing observable. No call aborts, asserts or prints.
 *   Threads     Every function may be called concurrently with every other on
 *               the same cache, except pc_destroy, which must not overlap any
 *               other call on that cache. A thread is registered with a cache
 *               lazily on its first call (no per-thread init), and released
 *               when the thread exits. A thread's first call on a cache may
 *               therefore allocate, and may fail with PC_ENOMEM.
 *   Progress    "wait-free": finishes in a bounded number of its own steps.
 *               "lock-free": may retry, but only because another thread made
 *               progress. "blocking": may wait for a lock held by another
 *               thread.
 */
#ifndef PURECACHE_H
#define PURECACHE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define PURECACHE_VERSION_MAJOR 0
#define PURECACHE_VERSION_MINOR 1
#define PURECACHE_VERSION_PATCH 0
/* MAJOR * 10000 + MINOR * 100 + PATCH */
#define PURECACHE_VERSION 100

#if defined(__GNUC__)
#define PC_API __attribute__((visibility("default")))
#else
#define PC_API
#endif

/* Longest key accepted, in bytes. */
#define PC_KEY_MAX 4096
/* Longest value accepted, in bytes. */
#define PC_VALUE_MAX ((size_t)UINT32_MAX)

typedef enum pc_status {
    PC_OK = 0,
    PC_NOTFOUND = 1, /* key absent (get, delete) */
    PC_EINVAL = -1,  /* bad argument: NULL where not allowed, capacity 0,
                        key too long */
    PC_ENOMEM = -2,  /* allocation failed; the cache is unchanged */
    PC_ERANGE = -3,  /* value longer than the caller's buffer; *vlen holds
                        its length */
} pc_status;

typedef struct pc_cache pc_cache; /* opaque */

/*
 * Options for pc_create. Zero-initialise, then set what you need; a field
 * left 0 always means "the default".
 */
typedef struct pc_options {
    /* Maximum number of entries, >= 1. Required (0 is refused). */
    size_t capacity;
    /*
     * CLOCK only: number of shards (each an independent hash set, writer
     * lock and clock hand). 0 picks one from the capacity and the number of
     * online CPUs, never letting a shard's share fall below 1024 entries
     * (which keeps the hit ratio close to one unsharded CLOCK). Values above
     * 4096 are refused with PC_EINVAL. Ignored by the exact-LRU policy, and
     * clamped to the capacity.
     */
    unsigned int shards;
    /*
     * Seed of the keyed hash. 0 draws a fresh random seed for every cache
     * (from getrandom(2)), so an attacker cannot choose keys that collide.
     * Non-zero fixes the seed, for reproducible benchmarks and tests only.
     */
    uint64_t hash_seed;
} pc_options;

/* Counters summed over all threads and shards; see pc_stats_get. */
typedef struct pc_stats {
    uint64_t hits;          /* pc_get (and loads) that found the key */
    uint64_t misses;        /* pc_get that did not */
    uint64_t puts;          /* successful pc_put calls */
    uint64_t evictions;     /* entries evicted to make room */
    uint64_t deletes;       /* successful pc_delete calls */
    uint64_t loader_calls;  /* loader invocations (get-or-load) */
    uint64_t loader_errors; /* loader invocations that failed */
} pc_stats;

/*
 * Create a cache. On success *out owns a new cache; release it with
 * pc_destroy.
 * Thread-safety: any thread. Progress: blocking (allocates).
 * Returns PC_OK; PC_EINVAL if opts or out is NULL, opts->capacity is 0, or
 * opts->shards > 4096; PC_ENOMEM if memory (or a thread-specific data key,
 * of which the process has PTHREAD_KEYS_MAX) could not be had. On failure
 * *out is left untouched.
 */
PC_API pc_status pc_create(const pc_options *opts, pc_cache **out);

/*
 * Destroy a cache and release everything it owns, including entries still
 * waiting for their grace period. NULL is a no-op.
 * Thread-safety: must not overlap any other call on this cache (join or
 * otherwise quiesce its users first). Threads that used the cache may keep
 * running and may exit at any time. Progress: blocking.
 */
PC_API void pc_destroy(pc_cache *cache);

/*
 * Look up key. On a hit with a large enough buffer, copies the value into
 * buf, sets *vlen (when vlen is not NULL) and returns PC_OK; an empty value
 * is a hit. If the value is longer than bufcap, returns PC_ERANGE, leaves buf
 * untouched and sets *vlen to the value's length; this still counts as a
 * use. A hit is a use: it promotes the key (lru) or sets its reference bit
 * (clock). buf may be NULL when bufcap is 0; key may be NULL when klen is 0.
 * Thread-safety: any thread, concurrently with anything but pc_destroy.
 * Progress: clock: lock-free, and wait-free unless a writer concurrently
 * relocates an entry in this key's probe sequence (ck_hs generation retry);
 * never waits for a lock holder. lru: takes no lock, retries once per
 * concurrent recency update or replacement of the same key, and waits
 * while a put holds the cache's stamp or eviction window open (a few
 * hundred nanoseconds inside the writer lock), so it is blocking in the
 * strict sense: a writer preempted inside that window delays it.
 * Returns PC_OK, PC_NOTFOUND, PC_ERANGE; PC_EINVAL if cache is NULL, key is
 * NULL with klen > 0, klen > PC_KEY_MAX, or buf is NULL with bufcap > 0;
 * PC_ENOMEM only on this thread's first call on this cache.
 */
PC_API pc_status pc_get(pc_cache *cache, const void *key, size_t klen,
                        void *buf, size_t bufcap, size_t *vlen);

/*
 * Insert or replace key -> val. Replacing an existing key never evicts
 * another entry and counts as a use; inserting a new key into a full cache
 * (clock: a full shard) evicts exactly one entry first. Readers see the old
 * or the new value, never a mix. val may be NULL when vlen is 0.
 * Thread-safety: any thread. Progress: blocking (the shard's writer lock,
 * clock; the cache's writer lock, lru).
 * Returns PC_OK; PC_EINVAL if cache is NULL, key is NULL with klen > 0,
 * klen > PC_KEY_MAX, val is NULL with vlen > 0, or vlen > PC_VALUE_MAX;
 * PC_ENOMEM if the entry could not be allocated (nothing changed).
 */
PC_API pc_status pc_put(pc_cache *cache, const void *key, size_t klen,
                        const void *val, size_t vlen);

/*
 * Remove key. Returns PC_OK if it was present, PC_NOTFOUND if not; PC_EINVAL
 * for a NULL cache, NULL key with klen > 0, or klen > PC_KEY_MAX.
 * Thread-safety: any thread. Progress: blocking (writer lock).
 */
PC_API pc_status pc_delete(pc_cache *cache, const void *key, size_t klen);

/*
 * Number of entries. Never exceeds pc_capacity. Under concurrent writes it
 * may lag by the writes in flight; exact when the cache is quiescent. 0 for a
 * NULL cache. Thread-safety: any thread. Progress: wait-free.
 */
PC_API size_t pc_len(const pc_cache *cache);

/* The capacity given at creation; 0 for a NULL cache. Wait-free. */
PC_API size_t pc_capacity(const pc_cache *cache);

/*
 * Remove every entry. Clock clears shard by shard: a put to another shard
 * concurrent with pc_clear may survive it. lru clears atomically.
 * NULL is a no-op. Thread-safety: any thread. Progress: blocking.
 */
PC_API void pc_clear(pc_cache *cache);

/*
 * Free the memory of entries already removed, waiting for every reader that
 * could still see them to leave (a grace period). Removed entries are
 * otherwise freed incrementally by later writes; call this to return memory
 * promptly after a burst of writes, or before measuring memory.
 * Must not be called while the calling thread holds a pinned reference on
 * this cache (it would wait for itself). NULL is a no-op.
 * Thread-safety: any thread. Progress: blocking (waits for readers).
 */
PC_API void pc_reclaim(pc_cache *cache);

/*
 * Fill *out with counters summed over every thread and shard. Each counter is
 * exact when the cache is quiescent; under load the sum is a snapshot that
 * may miss operations in flight.
 * Thread-safety: any thread. Progress: blocking (briefly takes the registry
 * lock that thread registration takes; never a writer lock).
 * Returns PC_OK; PC_EINVAL if cache or out is NULL.
 */
PC_API pc_status pc_stats_get(pc_cache *cache, pc_stats *out);

/* "clock" or "lru": the policy this library was built with. Wait-free. */
PC_API const char *pc_policy(void);

/*
 * A static, human-readable description of status (never NULL; unknown codes
 * give "unknown status"). Wait-free.
 */
PC_API const char *pc_strerror(pc_status status);

#ifdef __cplusplus
}
#endif

#endif /* PURECACHE_H */
