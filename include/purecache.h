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
 *            same capacity, and every operation is linearizable. Reads take
 *            no lock; they pay one shared atomic increment (fetch-and-add)
 *            and a record in their own access log to keep their place in
 *            the recency order, and wait out a put that is publishing
 *            (see pc_get).
 *
 * CONVENTIONS (apply to every function below unless it says otherwise)
 *
 *   Ownership   Keys and values are copied in by pc_put and copied out by
 *               pc_get; the cache never keeps a pointer the caller passed.
 *               The cache owns its memory; pc_destroy releases all of it,
 *               except that each thread that freed entries may keep up to
 *               256 KiB of freed blocks for its next ones, and 32 KiB of
 *               pointers to them per block size (returned when the thread
 *               exits, or by pc_destroy on that thread).
 *   Errors      Every failing call returns a negative pc_status and changes
 *               nothing observable (it may still free memory that earlier
 *               removals left for reclamation, as any call that takes a
 *               writer lock may: pc_stats pending). No call aborts, asserts
 *               or prints.
 *   Threads     Every function may be called concurrently with every other on
 *               the same cache, except pc_destroy, which must not overlap any
 *               other call on that cache. A thread is registered with a cache
 *               lazily on its first read (pc_get, pc_get_pinned, a
 *               get-or-load; no per-thread init), and released when the
 *               thread exits (by a pthread key destructor; a read made
 *               from another key's destructor in the system's last round
 *               of destructors, PTHREAD_DESTRUCTOR_ITERATIONS, registers
 *               the thread again too late to be released: its record is
 *               not recycled until the cache is destroyed, and its table
 *               of records, a few dozen bytes, is never freed; a call
 *               that frees an entry there, on jemalloc, keeps the
 *               thread's magazine of freed blocks, up to 256 KiB, and
 *               32 KiB of pointers per size class it used, for the
 *               process's life). A
 *               thread's first read of a cache may
 *               therefore allocate, and may fail with PC_ENOMEM (writes,
 *               deletes and the rest never register).
 *   Progress    "wait-free": finishes in a bounded number of its own steps.
 *               "lock-free": may retry, but only because another thread made
 *               progress. "blocking": may wait for a lock held by another
 *               thread.
 *   Cancellation
 *               No purecache function acts on a pthread_cancel request
 *               while it runs its own code: its waits (for another
 *               thread's load, for readers in pc_reclaim) and a memoizer's
 *               calls into its backend run with cancellation disabled, and
 *               a request that arrives meanwhile is acted upon at the
 *               caller's next cancellation point after the call returns.
 *               The only cancellation points are the caller's own code
 *               that a call runs: the loader of pc_get_or_load and
 *               pc_memo_call, and the function a PC_MEMOIZE wrapper
 *               computes. A thread cancelled there completes its load as
 *               failed: every thread waiting for that key returns PC_ELOAD
 *               with *load_err = ECANCELED, nothing is cached, and the next
 *               call loads again. Do not enable asynchronous cancellation
 *               around purecache calls.
 *   Signals     No purecache function is async-signal-safe: do not call
 *               one from a signal handler (one that interrupted a call on
 *               the same thread could find that thread's read record or
 *               access log half written, or wait for itself).
 *   fork()      The child has only the thread that called fork(). A
 *               pthread_atfork handler releases the parent's other threads'
 *               records in every cache, so read sections they were in do
 *               not hold up pc_reclaim or writers in the child (pins never
 *               do: a pin pins one entry, see "Pinned reads"). The
 *               child may go on using the parent's caches if, when fork()
 *               ran, no other thread was inside a purecache call (holding
 *               a pin between calls is fine): a call in progress may hold
 *               an internal lock, which the child inherits held, and a
 *               load in progress in another thread never completes there
 *               (a miss on its key would wait for ever). purecache
 *               registers its pthread_atfork handlers when it is loaded
 *               (shared: before the program's constructors; static:
 *               from constructors of priority 101, before the program's
 *               unprioritised ones), so an application's handlers
 *               registered after that may call the caches (its prepare
 *               handlers run before purecache's, its child handlers
 *               after); handlers registered earlier must not.
 *
 * WHAT MAY WAIT ON WHAT
 *
 *   A call ...                      may wait for ...
 *   pc_get                          nothing (clock); lru: a put's publishing
 *                                   window (see pc_get)
 *   pc_get_pinned, pc_unpin         as pc_get, and the cache's pin-table
 *                                   lock (held for a few instructions; a
 *                                   resize of the table, as the pins held
 *                                   double or fall eightfold, moves every
 *                                   pin under it: amortised O(1) a pin)
 *   pc_put, pc_delete, pc_clear     the writer lock of the shard (clock) or
 *                                   cache (lru): other writers, briefly;
 *                                   never a read in progress (lru: but a
 *                                   reader between taking its stamp and
 *                                   publishing its record, a few
 *                                   instructions unless it is
 *                                   descheduled there), never a
 *                                   held pin; but, freeing what it
 *                                   retired, the pin-table lock (above)
 *                                   and the process-wide lock of live
 *                                   caches, which a thread's exit or
 *                                   first read of a cache holds briefly
 *   pc_get_or_load, pc_memo_call,   another thread's loader of the same key
 *   a PC_MEMOIZE wrapper            (single flight), for as long as it runs;
 *                                   on a miss, the process-wide lock of
 *                                   loads in flight (briefly, to join or
 *                                   start one) and, to take and to end
 *                                   the load's lease and to store its
 *                                   value, the writer lock as pc_put
 *   pc_reclaim                      every read section of this cache open
 *                                   when it began (each a single get's
 *                                   lookup, in lru possibly a hit that
 *                                   takes the writer lock; never a pin);
 *                                   each writer lock in turn, and what
 *                                   freeing waits for, as pc_put; another
 *                                   pc_reclaim of this cache
 *   pc_memo_forget                  a store of that key in progress (one
 *                                   backend put)
 *   pc_stats_get, a thread's        registration of other threads on this
 *   first read of a cache           cache, briefly
 *   a cache's first put or load     the start of the ticker thread, or
 *   with an expiry (default clock)  another cache's pc_destroy joining it
 *                                   (pc_options.now_ms), briefly
 *   pc_destroy                      as above: the ticker's end
 *
 * No library lock is held while the caller's code runs (a loader, a
 * memoized function, a backend's operations), nor while pc_reclaim waits
 * for readers, and a get-or-load that would wait, directly or through
 * other loaders, for its own load returns PC_EDEADLK instead. So waits
 * close into a cycle only through the misuses below. (The internal lock
 * order behind this is in src/internal.h.)
 *
 *   Code running ...          may call                 must not call
 *   in a loader or a          anything on any cache    pc_destroy or
 *   memoized function         or memoizer, including   pc_memo_destroy of the
 *                             pc_get_or_load and       cache or memoizer it
 *                             pc_memo_call of other    loads for (calls are
 *                             keys (its own: EDEADLK), in flight on it)
 *                             pc_memo_forget and
 *                             pc_reclaim
 *   in a backend operation    its own store            the memoizer it serves
 *   (pc_backend_ops)                                   (pc_memo_forget of the
 *                                                      key being stored would
 *                                                      wait for itself)
 *   while holding a pin       anything on any cache    pc_destroy of the
 *                             (get-or-load and         pinned cache (it frees
 *                             pc_reclaim included)     the pinned entry)
 *   anywhere                  -                        pc_destroy or
 *                                                      pc_memo_destroy while
 *                                                      another call on it is
 *                                                      in progress
 */
#ifndef PURECACHE_H
#define PURECACHE_H

#include <errno.h>   /* ECANCELED (PC_MEMOIZE) */
#include <pthread.h> /* pthread_cleanup_push (PC_MEMOIZE) */
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define PURECACHE_VERSION_MAJOR 0
#define PURECACHE_VERSION_MINOR 2
#define PURECACHE_VERSION_PATCH 0
/* MAJOR * 10000 + MINOR * 100 + PATCH */
#define PURECACHE_VERSION 200

#if defined(__GNUC__)
#define PC_API __attribute__((visibility("default")))
#else
#define PC_API
#endif

/* Longest key accepted, in bytes. */
#define PC_KEY_MAX 4096
/* Longest value accepted, in bytes. */
#define PC_VALUE_MAX ((size_t)UINT32_MAX)
/* Largest capacity accepted (entries): 256 shards of 2^32 - 1. */
#define PC_CAPACITY_MAX ((size_t)UINT32_MAX * 256)

typedef enum pc_status {
    PC_OK = 0,
    PC_NOTFOUND = 1, /* key absent (get, delete, PC_PUT_IF_PRESENT) */
    PC_EXISTS = 2,   /* PC_PUT_IF_ABSENT: the key is present; nothing
                        changed */
    PC_EINVAL = -1,  /* bad argument: NULL where not allowed, capacity 0,
                        key too long */
    PC_ENOMEM = -2,  /* allocation failed; the cache is unchanged */
    PC_ERANGE = -3,  /* value longer than the caller's buffer; *vlen holds
                        its length */
    PC_ELOAD = -4,   /* a loader failed; its own error code is passed on */
    PC_EDEADLK = -5, /* a loader asked (directly or through other loaders)
                        for a key whose load is waiting on it */
    PC_EIO = -6,     /* a remote backend (purecache_redis.h) could not be
                        reached, timed out or replied with an error */
} pc_status;

typedef struct pc_cache pc_cache; /* opaque */

/* Why an entry left the cache (the removal listener's cause argument). */
typedef enum pc_removal_cause {
    PC_REMOVED_EVICTED = 1, /* to make room (capacity, byte bound, or a
                               pc_set_capacity / pc_set_max_bytes shrink) */
    PC_REMOVED_EXPIRED,     /* its time to live ran out */
    PC_REMOVED_REPLACED,    /* a put of the same key replaced its value */
    PC_REMOVED_DELETED,     /* pc_delete */
    PC_REMOVED_CLEARED,     /* pc_clear */
} pc_removal_cause;

/*
 * A removal listener: called once for every entry that leaves the cache,
 * for every cause above, and never for the entries pc_destroy releases.
 * It runs on the thread whose call removed the entry, after that call has
 * released every lock it took and before it returns. key and val are the
 * entry's bytes, valid only during the call. It may call the cache,
 * including pc_put (the removals that causes are reported after this call
 * returns, in a loop, not by recursion), but not pc_destroy. It runs with
 * cancellation disabled: a pthread_cancel request that arrives before or
 * during it is acted upon at the caller's next cancellation point after
 * the purecache call returns (a listener is not one of the library's
 * cancellation points; see "Cancellation" above).
 */
typedef void pc_removal_fn(void *ctx, const void *key, size_t klen,
                           const void *val, size_t vlen,
                           pc_removal_cause cause);

/* pc_options.policy */
#define PC_POLICY_DEFAULT 0u   /* the build's policy: clock or exact LRU */
#define PC_POLICY_FREQUENCY 1u /* scan- and one-hit-resistant (CLOCK build) */

/*
 * Options for pc_create. Zero-initialise, then set what you need; a field
 * left 0 always means "the default".
 */
typedef struct pc_options {
    /* Maximum number of entries, >= 1. Required (0 is refused). */
    size_t capacity;
    /*
     * CLOCK and frequency policies: number of shards (each an independent
     * index, writer lock and eviction order; the capacity and the byte
     * bound are shared by all of them). 0 picks one from the capacity and
     * the number of online CPUs, never letting a shard's share fall below
     * 1024 entries (which keeps the hit ratio close to one unsharded
     * policy). Values above 4096 are refused with PC_EINVAL. Ignored by
     * the exact-LRU policy, and clamped to the capacity.
     */
    unsigned int shards;
    /*
     * Seed of the keyed hash. 0 draws a fresh random seed for every cache
     * (from getrandom(2)), so an attacker cannot choose keys that collide.
     * Non-zero fixes the seed, for reproducible benchmarks and tests only.
     */
    uint64_t hash_seed;
    /* Bound on the sum of klen + vlen over the entries present; 0 = none.
     * Per entry the cache also spends a fixed overhead (README, "Byte bound"),
     * which this bound does not count. */
    uint64_t max_bytes;
    /* Default time to live of entries, in ms of the cache's clock; 0 =
     * entries never expire (unless a put says otherwise). */
    uint64_t ttl_ms;
    /* The cache's clock, in ms (any origin, never decreasing). Called on
     * the calling thread by any call that needs the time (a get of an
     * entry that expires: every such hit, with no lock held; writes
     * while they hold a writer lock, a shard's or the exact-LRU cache's,
     * so that each judges expiry by a time no older than the writes
     * before it); must be thread-safe, must not call the cache, must not
     * wait for anything a thread may hold while it calls the cache, and
     * must not reach a cancellation point (it runs with the caller's
     * cancellation state, in the middle of a call that may hold memory
     * it has not yet published).
     * NULL = the default clock: CLOCK_MONOTONIC_COARSE as read by one
     * thread per process (the "ticker", named pc-ticker) every few ms (the
     * clock's resolution, 4 ms at HZ = 250), so that a hit reads the time
     * with one load. It is a tick or two behind CLOCK_MONOTONIC_COARSE
     * (more while the ticker waits for a CPU), never ahead, never
     * decreasing; expiry is exact on it (an entry put while it lags L ms
     * lives about ttl - L ms of real time). The ticker wakes once a tick
     * while it runs, idle or not. The ticker starts with the first put
     * or load with a time to live in a cache on the default clock (the
     * put reads the time before it takes a lock, stored or refused by
     * its conditions alike, and blocks while the ticker starts) and
     * stops when the last such cache is destroyed (pc_destroy joins it);
     * caches never given a time to live start none. If it cannot start, or in a
     * process forked while it ran (the child has no ticker), caches read
     * CLOCK_MONOTONIC_COARSE directly on each check instead. */
    uint64_t (*now_ms)(void *ctx);
    void *now_ctx;
    /* Removal listener (see pc_removal_fn); NULL = none. */
    pc_removal_fn *on_removal;
    void *removal_ctx;
    /* PC_POLICY_DEFAULT or PC_POLICY_FREQUENCY; anything else, or
     * PC_POLICY_FREQUENCY in the exact-LRU build, is refused (PC_EINVAL). */
    unsigned int policy;
} pc_options;

/* Counters summed over all threads and shards; see pc_stats_get. */
typedef struct pc_stats {
    uint64_t hits;          /* pc_get (and loads) that found the key */
    uint64_t misses;        /* pc_get that did not */
    uint64_t puts;          /* puts that stored a value */
    uint64_t evictions;     /* entries evicted to make room */
    uint64_t deletes;       /* successful pc_delete calls */
    uint64_t loader_calls;  /* loader invocations (get-or-load) */
    uint64_t loader_errors; /* loader invocations that failed */
    uint64_t expirations;   /* entries removed because their TTL ran out */
    uint64_t bytes;         /* as pc_bytes */
    uint64_t pending;       /* removed entries not yet freed (waiting for
                               readers, for later writes to free them, or
                               pinned); any call that takes a writer lock,
                               a failing one too, may free some. Counted
                               a batch at a time: each writer lock's (a
                               CLOCK or frequency shard's, the exact-LRU
                               cache's) last removals, up to 127 entries
                               or 1 MiB, are not counted until their
                               batch closes (a later removal, or
                               pc_reclaim, which frees them) */
    uint64_t pending_bytes; /* their allocated bytes */
} pc_stats;

/*
 * Create a cache. On success *out owns a new cache; release it with
 * pc_destroy.
 * Thread-safety: any thread. Progress: blocking (allocates).
 * Limits: a capacity up to PC_CAPACITY_MAX entries; clock and frequency
 * also need every shard's share of it within a shard's limit, 2^32 - 3
 * entries (clock) or 2^26 - 1 (frequency), which an explicit opts->shards,
 * or a frequency cache of over 2^29 entries on a machine of few CPUs, can
 * break. (So with the default shard count, chosen from the CPUs and the
 * capacity, a clock cache's largest capacity is that count times 2^32 - 3,
 * far below PC_CAPACITY_MAX on a machine of few CPUs: an explicit
 * opts->shards, up to 4096, raises it.) (A shard may come to hold more than its
 * share, as keys spread by hash; past what it can hold at all, 2^32 - 2 entries
 * (clock) or 130,150,496 (frequency), a put of a new key to it fails with
 * PC_ENOMEM.) The exact-LRU build
 * takes a capacity up to 16 x 125,829,120 (its index tables: 1 to 16,
 * chosen from the capacity, each for at most 125,829,120 entries; a table
 * that came to hold 2^27, its hard limit, would refuse a new key with
 * PC_ENOMEM, which keys spread by hash make all but impossible).
 * Any number of caches may exist at once. The library uses at most two
 * thread-specific data keys for the whole process, whatever the number of
 * caches: one for each thread's read records (created with the first cache
 * or memoizer), and, in a build on jemalloc, one for each thread's cache of
 * freed blocks (created with the first free; without it, frees go to
 * jemalloc directly).
 * Returns PC_OK; PC_EINVAL if opts or out is NULL, opts->capacity is 0 or
 * beyond those limits, opts->shards > 4096, or opts->policy names no
 * policy of this build (PC_POLICY_FREQUENCY in the exact-LRU build);
 * PC_ENOMEM if memory (or, for
 * the process's first cache, that one key) could not be had; a later call
 * tries again for the key. On failure *out is left untouched.
 */
PC_API pc_status pc_create(const pc_options *opts, pc_cache **out);

/*
 * Destroy a cache and release everything it owns, including entries still
 * waiting for their grace period and entries still pinned: pins on the
 * cache that were not released dangle (see "Pinned reads"). NULL is a no-op.
 * Thread-safety: must not overlap any other call on this cache (join or
 * otherwise quiesce its users first). Threads that used the cache may keep
 * running and may exit at any time. Progress: blocking (the last cache on
 * the default clock that expired entries also stops and joins the ticker
 * thread: see pc_options.now_ms).
 */
PC_API void pc_destroy(pc_cache *cache);

/*
 * Look up key. On a hit with a large enough buffer, copies the value into
 * buf, sets *vlen (when vlen is not NULL) and returns PC_OK; an empty value
 * is a hit. If the value is longer than bufcap, returns PC_ERANGE, leaves buf
 * untouched and sets *vlen to the value's length; this still counts as a
 * use. A hit is a use: it promotes the key (lru), sets its reference bit
 * (clock) or raises its use count (frequency). An entry whose expiry time
 * has come (on the cache's clock) is a miss, whether or not it has been
 * removed yet. buf may be NULL when bufcap is 0; key may be NULL when klen
 * is 0. Counts exactly one hit or one miss (pc_stats_get).
 * Thread-safety: any thread, concurrently with anything but pc_destroy.
 * Progress: clock, frequency: wait-free (no lock, no atomic
 * read-modify-write; an entry with an expiry time also reads the clock:
 * one load on the default clock, see pc_options.now_ms), with one
 * exception that makes them lock-free: a get that finds an entry whose
 * expiry time lies in its header (any time within 4.3 years of the
 * cache's origin: boot on the default clock, else the user clock's reading
 * at the cache's first expiry) just as a write removes that entry and reuses
 * the header (only with a removal listener, or when the write could not
 * allocate) looks the key up again; each retry means another write
 * removed that key meanwhile.
 * lru: takes no lock on most hits (one shared atomic increment, and a
 * record in this thread's access log); it waits while a writer's window is
 * open (inside the writer lock, while the writer applies the hits logged
 * since the last write: O(h log t) for h hits over t threads' logs, up
 * to 256 a log; about 2 ms for 50,000 hits over 200 logs), and takes the
 * writer lock itself once per few hundred hits if no writer drains its log
 * meanwhile: blocking.
 * Returns PC_OK, PC_NOTFOUND, PC_ERANGE; PC_EINVAL if cache is NULL, key is
 * NULL with klen > 0, klen > PC_KEY_MAX, or buf is NULL with bufcap > 0;
 * PC_ENOMEM only on this thread's first read of this cache (see Threads).
 */
PC_API pc_status pc_get(pc_cache *cache, const void *key, size_t klen,
                        void *buf, size_t bufcap, size_t *vlen);

/*
 * Insert or replace key -> val (the cache's default time to live applies).
 * Exactly pc_put_ex(cache, key, klen, val, vlen, NULL); see there.
 */
PC_API pc_status pc_put(pc_cache *cache, const void *key, size_t klen,
                        const void *val, size_t vlen);

/* pc_put_args.ttl_ms: the entry never expires, whatever the default. */
#define PC_TTL_NEVER UINT64_MAX
/* pc_put_args.flags */
#define PC_PUT_IF_ABSENT 1u  /* insert only: PC_EXISTS if the key is present */
#define PC_PUT_IF_PRESENT 2u /* replace only: PC_NOTFOUND if it is absent */

typedef struct pc_put_args { /* zero-initialise */
    uint64_t ttl_ms;         /* 0: the cache's ttl_ms; PC_TTL_NEVER: none */
    unsigned int flags;      /* 0, PC_PUT_IF_ABSENT or PC_PUT_IF_PRESENT */
} pc_put_args;

/*
 * Insert or replace key -> val, copying both. args may be NULL (all
 * defaults).
 *  - A replacement counts as a use and evicts nothing to make room for
 *    the key itself; the old value is reported to the removal listener as
 *    PC_REMOVED_REPLACED.
 *  - A new key is stored without evicting anything while fewer than
 *    capacity entries are present; at capacity it evicts exactly one entry
 *    first: an expired entry if there is one, else lru's least recently
 *    used, clock's first entry with a clear reference bit under its
 *    shard's hand, frequency's choice (see pc_create). clock and frequency
 *    evict in the shard the key belongs to (each shard finds its expired
 *    entries through a queue of expiry times, not necessarily the earliest
 *    expired first: a replacement that lives longer keeps its
 *    predecessor's earlier place), so there "an expired entry" means one
 *    of that shard's; an expired entry of another shard goes when a put
 *    evicts there, when a limit is lowered, or at pc_expire. (Under
 *    concurrent puts that race for the last free places, a put may evict
 *    one entry more than it needed; pc_len never exceeds the capacity.)
 *  - With a byte bound (pc_options.max_bytes), entries are evicted in
 *    policy order until klen + vlen fits (clock and frequency: in the
 *    key's shard; if it has nothing left to evict, in the others, the
 *    expired entries of every shard first); an entry larger than the bound
 *    by itself is refused (PC_EINVAL, nothing changed). pc_bytes never
 *    exceeds the bound. (clock and frequency: a shard keeps bytes its puts
 *    freed for its next puts, at most 1/128 of the bound over all shards,
 *    so a put may evict while that much of the bound is unused: README.)
 *  - Expiry: the entry is visible strictly before now + ttl (args->ttl_ms,
 *    else the cache's ttl_ms; none if both are 0 or args->ttl_ms is
 *    PC_TTL_NEVER), on the cache's clock; a ttl that overflows saturates
 *    to "never". An expired entry still present counts as absent for the
 *    conditional flags, and is reported as PC_REMOVED_EXPIRED when a put
 *    replaces it. A put that finds the key's entry expired removes it
 *    even if PC_PUT_IF_PRESENT then refuses the put (PC_NOTFOUND): the key
 *    was absent either way, but pc_len, pc_bytes, the expirations count
 *    and the listener (PC_REMOVED_EXPIRED) see the removal.
 *  - Conditional puts are atomic per key against concurrent puts, deletes
 *    and loads of the same key.
 *  - A put of key makes any load of key that began before it return its
 *    value without caching it (pc_get_or_load), and a pc_get_or_load of
 *    key that begins after the put returned PC_OK never joins a load that
 *    may have read the source before the put (as for pc_delete: even
 *    once the put's value has been evicted, it cannot get the value the
 *    put replaced from such a load).
 * Readers see the old or the new value, never a mix. val may be NULL when
 * vlen is 0. Evicted and replaced entries are reported to the removal
 * listener before the call returns.
 * Thread-safety: any thread. Progress: blocking (a writer lock: one per
 * shard, or the cache's, lru; while a get-or-load of the cache is in
 * flight, also the loads' table lock after a put that stored). Now and then (at
 * most about once per millisecond per cache in the default build) a put or
 * delete also runs one step of memory reclamation after releasing its lock;
 * with the default "membarrier" read fence (pc_read_fence) that step is one
 * membarrier(2) system call, a few microseconds, the price of reads that
 * execute no fence. A cache's first put with an expiry time on the
 * default clock may start the ticker thread (pc_options.now_ms), also if
 * its conditions refuse it.
 * Returns PC_OK; PC_EXISTS (PC_PUT_IF_ABSENT, key present) or PC_NOTFOUND
 * (PC_PUT_IF_PRESENT, key absent), nothing changed (but the removal of
 * the key's expired entry, above, and the ticker's start); PC_EINVAL if cache
 * is NULL, key is NULL with klen > 0, klen > PC_KEY_MAX, val is NULL with vlen
 * > 0, vlen > PC_VALUE_MAX, args->flags has a bit other than the two or both of
 * them, or klen + vlen exceeds a byte bound; PC_ENOMEM if the entry could not
 * be allocated (nothing changed). One exception to "nothing changed" (clock,
 * frequency): a put whose own shard had nothing left to evict makes room in
 * other shards, one lock at a time, then looks again; if a concurrent write or
 * delete of the key, or a limit lowered meanwhile, now refuses it (PC_EXISTS,
 * PC_NOTFOUND, PC_EINVAL, or PC_ENOMEM if its retry must grow a table and
 * cannot), the entries it evicted stay evicted, in its own shard and elsewhere
 * (they were reported as PC_REMOVED_EVICTED).
 */
PC_API pc_status pc_put_ex(pc_cache *cache, const void *key, size_t klen,
                           const void *val, size_t vlen,
                           const pc_put_args *args);

/*
 * Remove key (reported to the listener as PC_REMOVED_DELETED; an expired
 * entry as PC_REMOVED_EXPIRED, and then it was not present: PC_NOTFOUND).
 * A delete of key makes any load of key that began before it return its
 * value without caching it (pc_get_or_load), and a pc_get_or_load of key
 * that begins after pc_delete returned never joins a load that may have
 * read the source before the delete (it starts its own, or joins one that
 * looked the key up after the delete). (A memoizer over this cache keeps
 * its own loads: invalidate through pc_memo_forget, which does the same
 * for pc_memo_call.)
 * Returns PC_OK if it was present, PC_NOTFOUND if not; PC_EINVAL for a NULL
 * cache, NULL key with klen > 0, or klen > PC_KEY_MAX.
 * Thread-safety: any thread. Progress: blocking (writer lock; while a
 * get-or-load of the cache is in flight, also the loads' table lock; and
 * see pc_put on the occasional reclamation step).
 */
PC_API pc_status pc_delete(pc_cache *cache, const void *key, size_t klen);

/*
 * Remove every entry whose expiry time has come (reported as
 * PC_REMOVED_EXPIRED) and return how many. Expired entries are otherwise
 * removed lazily: a put that needs room takes them first (clock, frequency:
 * those of the shard it evicts in; see pc_put_ex), and a write that meets
 * one removes it; until then they are invisible to
 * reads but still count in pc_len and pc_bytes. 0 for a NULL cache.
 * Thread-safety: any thread. Progress: blocking (every writer lock in turn;
 * O(entries)).
 */
PC_API size_t pc_expire(pc_cache *cache);

/*
 * Number of entries present (expired ones not yet removed included). Never
 * exceeds pc_capacity, except while a pc_set_capacity that lowers it runs
 * (the new capacity is published first, then entries are evicted down to
 * it before that call returns), and while a put that took its room under
 * the old capacity, before the lowering, runs (it evicts down to the new
 * one before it returns, even after pc_set_capacity has returned). Under
 * concurrent writes it may lag by the writes in flight; exact when the cache is
 * quiescent. 0 for a NULL cache. Thread-safety: any thread. Progress:
 * wait-free.
 */
PC_API size_t pc_len(const pc_cache *cache);

/* The capacity (as created, or as last set); 0 for a NULL cache.
 * Thread-safety: any thread. Wait-free. */
PC_API size_t pc_capacity(const pc_cache *cache);

/* Sum of klen + vlen over the entries present (expired ones not yet removed
 * included); never above a non-zero byte bound, except while a
 * pc_set_max_bytes that lowers it runs, or a put that took its room under
 * the old bound runs (as pc_len). Under concurrent writes it
 * may lag by the writes in flight; exact when the cache is quiescent. 0 for
 * a NULL cache. Thread-safety: any thread. Progress: wait-free (clock,
 * frequency: O(shards), the cache's count plus what each shard keeps to
 * itself while no byte bound is set). */
PC_API uint64_t pc_bytes(const pc_cache *cache);

/*
 * Change the capacity. Growing takes effect at once; shrinking removes
 * entries until pc_len is within the new capacity before returning:
 * expired entries first, from every shard (reported as
 * PC_REMOVED_EXPIRED), then live ones in policy order (as
 * PC_REMOVED_EVICTED). Puts concurrent with a shrink may be evicted by it.
 * A put that claimed room against the old capacity while it changed
 * checks again once its entry is in and evicts for it, so when both calls
 * have returned pc_len is within the capacity.
 * The frequency policy's parameters follow the new capacity, as if the
 * cache had been created with it, except the split it has learned between
 * new and proven entries, which is kept (a lowered capacity may make it
 * forget the keys it remembered evicting). After a shrink, structures
 * sized per entry (index tables, the policy's arrays) that are four times
 * larger than what the new limit lets the cache hold are rebuilt smaller,
 * under the lock that guards them (a pass over their entries; readers
 * carry on), so memory follows the limit (the old tables are freed as
 * removed entries are: pc_reclaim). If memory for a smaller structure
 * cannot be allocated, the larger one stays (the call still succeeds: the
 * limit holds) and the next lowering makes it; until then the cache evicts
 * what it would have evicted, with one exception: several expired
 * entries may go in another order (still before any live one), and clock
 * (frequency, under a byte bound) may then place new keys, and evict live
 * ones later, differently.
 * Returns PC_OK; PC_EINVAL for a NULL cache, a capacity of 0 or above
 * PC_CAPACITY_MAX, or one whose share per shard would pass a shard's limit
 * (clock, frequency: see pc_create), or, in the exact-LRU build, one past
 * 125,829,120 entries per index table it was created with (one table
 * below a creation capacity of about 2,000), with nothing changed.
 * Thread-safety: any thread. Progress: blocking.
 */
PC_API pc_status pc_set_capacity(pc_cache *cache, size_t capacity);

/*
 * Change the byte bound (0 removes it). Shrinking removes entries until
 * pc_bytes is within the new bound before returning, in the order
 * pc_set_capacity removes them (expired entries first, from every shard);
 * a bound below every entry's size evicts everything.
 * If the new bound is below the bytes held (it evicts), structures then
 * four times larger than the entries left need are rebuilt smaller, as
 * for pc_set_capacity; a bound that evicts nothing rebuilds nothing, even
 * structures larger than the entries held need (say, after deletes, in a
 * cache that had no bound: the puts to come would grow them again).
 * Returns PC_OK; PC_EINVAL for a NULL cache. Thread-safety: any thread.
 * Progress: blocking.
 */
PC_API pc_status pc_set_max_bytes(pc_cache *cache, uint64_t max_bytes);

/*
 * Remove every entry (each reported as PC_REMOVED_CLEARED, expired ones
 * too, which do not count as expirations). Clock and
 * frequency clear shard by shard: a put to another shard concurrent with
 * pc_clear may survive it. lru clears atomically. A clear makes every
 * load that began before it return its value without caching it, and
 * get-or-loads that begin after it start loads of their own (pc_delete).
 * NULL is a no-op. Thread-safety: any thread. Progress: blocking.
 */
PC_API void pc_clear(pc_cache *cache);

/*
 * Free the memory of entries already removed, waiting for every reader that
 * could still see them to leave (a grace period). Removed entries are
 * otherwise freed incrementally by later writes to their shard (in the
 * default build, two per write while more wait, so that the many a grace
 * period frees at once do not all fall on one call; a shard lets at most
 * 512 entries or 1 MiB of them wait so, past which a write frees whole
 * batches of up to 128); call this to return memory promptly after a burst
 * of writes, or before measuring memory.
 * It waits only for reads in progress (each a few instructions long), not
 * for pins, and holds no writer lock meanwhile (writers and readers carry
 * on); an entry still pinned is freed by its last pc_unpin instead.
 * Concurrent pc_reclaim calls on one cache take turns.
 * In the one case where the process can no longer run grace periods at all
 * (the default "membarrier" build, membarrier(2) refused after start-up and
 * no fallback barrier on this CPU; see pc_read_fence), it returns after a
 * few tries without freeing anything: removed entries stay allocated until
 * pc_destroy.
 * NULL is a no-op.
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

/* ------------------------------------------------------------------------
 * Pinned (zero-copy) reads
 *
 * pc_get_pinned finds a key and, instead of copying its value, hands back a
 * pointer to the cache's own immutable copy, valid until pc_unpin. The pin
 * is a reference count on that one entry: if the entry is replaced, deleted,
 * evicted or expired meanwhile, readers that look the key up afterwards see
 * the new state, and the pinned bytes stay as they were until the last pin
 * on them is released, which frees them. A pin holds nothing else: other
 * removed entries are freed as usual, pc_reclaim never waits for pins, and
 * pc_stats counts a removed-but-pinned entry in `pending`.
 *
 * Rules:
 *  - The value is read-only; do not write through it or keep the pointer
 *    after pc_unpin.
 *  - Release every pin exactly once, from any thread, before pc_destroy
 *    of its cache. Releasing an already released pin, or a copy of one,
 *    does nothing (a pin has a unique id, which the release looks up).
 *  - pc_destroy frees pinned entries too: a pin still held then dangles,
 *    and neither its value nor pc_unpin may be used afterwards.
 *  - While holding a pin a thread may call any function on any cache,
 *    including pc_reclaim and pc_get_or_load: a pin waits for nothing and
 *    nothing waits for a pin.
 *  - A pin survives fork(): the child may use and release it; the parent's
 *    copy is separate.
 * ---------------------------------------------------------------------- */
typedef struct pc_pin {
    const void *value; /* the value's bytes (not NUL-terminated) */
    size_t len;        /* its length; may be 0 */
    void *internal_[2];
} pc_pin;

/*
 * Look up key and pin its value. On PC_OK, pin->value/len describe it until
 * pc_unpin(pin); a pinned read counts as a use, like pc_get. On any other
 * status *pin is left as it was and nothing is pinned.
 * Thread-safety: any thread. Progress: blocking, briefly: unlike pc_get it
 * allocates a small record and takes the cache's pin-table lock (a leaf
 * lock held for a few instructions, but for a resize of the table, which
 * moves every pin held: amortised O(1) per pin, whatever the pins held),
 * so it is the read to use for large values, not the fastest read.
 * Returns PC_OK, PC_NOTFOUND; PC_EINVAL for a NULL cache or pin, NULL key
 * with klen > 0, klen > PC_KEY_MAX; PC_ENOMEM if this thread's first read of
 * the cache, or the pin's record, could not be allocated (nothing pinned,
 * and the key's use not recorded: the policy's order is unchanged).
 */
PC_API pc_status pc_get_pinned(pc_cache *cache, const void *key, size_t klen,
                               pc_pin *pin);

/* Release a pin (from any thread) and clear *pin. NULL, a zeroed pc_pin, a
 * released pin or a copy of a released pin is a no-op. Frees the entry if it
 * was removed and this was its last pin. Thread-safety: any thread, while
 * the cache lives; two copies of one pin released at once release it once
 * (pins are found by id under the pin-table lock). Progress: blocking,
 * briefly (the pin-table lock; now and then, as the pins held fall
 * eightfold, it allocates smaller bucket arrays and moves the pins held
 * under it: amortised O(1)). pc_get_pinned likewise grows the table as
 * they double. */
PC_API void pc_unpin(pc_pin *pin);

/* ------------------------------------------------------------------------
 * Get-or-load with single flight
 * ---------------------------------------------------------------------- */

/* Where a loader puts the value it produced. */
typedef struct pc_sink pc_sink;

/*
 * Set the loaded value (copied). May be called more than once; the last
 * successful call wins. A failing call changes nothing: the sink keeps the
 * value it held, and the loader decides whether to return an error of its
 * own or to succeed with that value. A loader that returns success without
 * a successful call produces an empty value, which is cached and is a hit
 * like any other.
 * A sink is valid only while the loader it was passed to runs, and only
 * on that loader's thread. Thread-safety: that thread only. Progress:
 * blocking (copies the value; may allocate).
 * Returns PC_OK; PC_EINVAL if sink is NULL, val is NULL with vlen > 0, or
 * vlen > PC_VALUE_MAX; PC_ENOMEM if the value could not be copied.
 */
PC_API pc_status pc_sink_set(pc_sink *sink, const void *val, size_t vlen);

/*
 * A loader computes the value of key. It returns 0 on success (after
 * pc_sink_set, or not for an empty value) and any non-zero code of its own
 * on failure, which the library hands to every caller waiting for this key
 * and never caches. It runs on the calling thread with no library lock
 * held: it may call the cache (get, put, even pc_get_or_load of other keys).
 */
typedef int pc_loader_fn(void *ctx, const void *key, size_t klen, pc_sink *out);

/*
 * Return key's value, loading it on a miss. Of all threads that miss on the
 * same key at the same time exactly one runs the loader; the others wait for
 * it and receive the same outcome (single flight). Loads of different keys
 * run in parallel. On success the value is stored in the cache (a failure to
 * store it, e.g. PC_ENOMEM, does not fail the call: the caller still gets the
 * value) and copied out as by pc_get (PC_OK, or PC_ERANGE with *vlen set).
 * If the loader fails, returns PC_ELOAD and, when load_err is not NULL, sets
 * *load_err to the loader's code; nothing is cached and the next call loads
 * again. A loader that, directly or through loaders it waits on, asks for a
 * key whose load is waiting on it gets PC_EDEADLK instead of hanging.
 * Writes win over loads: once a pc_put, pc_put_ex, pc_delete or pc_clear
 * that changes key has returned, no load of key that began before it
 * stores its value over it. The callers of such a load still receive the
 * loaded value; it is just not cached. (A load registers a lease on its
 * key before its last lookup; such a write breaks it. As in memcached's
 * leases, matching is by the key's 64-bit hash, so a rare collision only
 * leaves a load uncached.) Evictions and expiry break no lease, nor
 * does a conditional put that is refused (PC_EXISTS, PC_NOTFOUND): to
 * refresh a key whose source changed, whether or not it is cached, use
 * pc_put or pc_delete, not pc_put_ex(PC_PUT_IF_PRESENT), which a load of
 * the old source in flight outlives.
 * Statistics: each call counts exactly one hit or one miss, as one pc_get
 * would (a thread that waits for another's load counts its own miss),
 * plus loader_calls and loader_errors for the thread that loads; a call
 * that returns PC_ENOMEM before it has started or waited on a load counts
 * nothing (a waiter whose value could not be copied for it has counted
 * its miss).
 * Cancellation: a cancellation point only while it runs load (see the
 * conventions: cancelled there, its waiters get PC_ELOAD and ECANCELED).
 * Thread-safety: any thread. Progress: blocking (waits for the loader).
 * Returns PC_OK, PC_ERANGE, PC_ELOAD, PC_EDEADLK; PC_EINVAL as pc_get, or if
 * load is NULL; PC_ENOMEM.
 */
PC_API pc_status pc_get_or_load(pc_cache *cache, const void *key, size_t klen,
                                pc_loader_fn *load, void *ctx, void *buf,
                                size_t bufcap, size_t *vlen, int *load_err);

typedef struct pc_load_args { /* zero-initialise */
    uint64_t ttl_ms;          /* for the stored value, as pc_put_args.ttl_ms */
} pc_load_args;

/*
 * pc_get_or_load, storing the loaded value as pc_put_ex(args) would: with
 * args->ttl_ms as its time to live (0: the cache's ttl_ms; PC_TTL_NEVER:
 * none). args may be NULL (exactly pc_get_or_load). Of the calls that
 * share one load (single flight), the one that runs the loader decides:
 * its ttl applies, not the waiters'. Same statuses,
 * thread-safety and progress (blocking).
 */
PC_API pc_status pc_get_or_load_ex(pc_cache *cache, const void *key,
                                   size_t klen, pc_loader_fn *load, void *ctx,
                                   void *buf, size_t bufcap, size_t *vlen,
                                   int *load_err, const pc_load_args *args);

/* ------------------------------------------------------------------------
 * Backends: the operations a memoizer needs from a store
 *
 * A backend is a pair (ops, self). purecache's own cache is one
 * (pc_backend_from_cache); a user plugs in another store by filling a
 * pc_backend_ops with functions that follow the same contracts as pc_get,
 * pc_put, pc_delete and pc_len, and are safe to call from any thread.
 * `size` must be sizeof(pc_backend_ops): later versions may append
 * operations, and the library reads only what a backend's size covers.
 * ---------------------------------------------------------------------- */
typedef struct pc_backend_ops {
    size_t size; /* sizeof(pc_backend_ops) */
    pc_status (*get)(void *self, const void *key, size_t klen, void *buf,
                     size_t bufcap, size_t *vlen);
    pc_status (*put)(void *self, const void *key, size_t klen, const void *val,
                     size_t vlen);
    pc_status (*del)(void *self, const void *key, size_t klen);
    size_t (*len)(void *self);
    void (*destroy)(void *self); /* may be NULL: nothing to release */
    /* Since 0.2, optional (NULL, or not covered by size): put with a time
     * to live, args as pc_put_ex's (the memoizer passes its ttl_ms here;
     * without put_ex it calls put, and values never expire). */
    pc_status (*put_ex)(void *self, const void *key, size_t klen,
                        const void *val, size_t vlen, const pc_put_args *args);
} pc_backend_ops;

typedef struct pc_backend {
    const pc_backend_ops *ops;
    void *self;
} pc_backend;

/*
 * Wrap cache as a backend; destroying the backend destroys the cache. Once
 * the backend is handed to pc_memo_create, the memoizer owns the cache:
 * destroy it through pc_memo_destroy, never pc_destroy (the cache itself
 * may still be used meanwhile, from any thread).
 * Thread-safety: any thread. Wait-free.
 * Returns PC_OK; PC_EINVAL if cache or out is NULL.
 */
PC_API pc_status pc_backend_from_cache(pc_cache *cache, pc_backend *out);

/* ------------------------------------------------------------------------
 * Memoizer: memoize a function of typed arguments over any backend
 * ---------------------------------------------------------------------- */
typedef struct pc_memo pc_memo;

/*
 * Create a memoizer over backend, which it takes over: pc_memo_destroy
 * destroys it (through ops->destroy). *backend (the pair) is copied; the
 * ops table it points to must outlive the memoizer. On failure nothing is
 * taken over and *out is untouched.
 * Thread-safety: any thread. Progress: blocking (allocates).
 * Returns PC_OK; PC_EINVAL if out or backend is NULL, its ops or one of
 * get/put/del/len is NULL, or ops->size is smaller than the first
 * version's; PC_ENOMEM.
 */
PC_API pc_status pc_memo_create(const pc_backend *backend, pc_memo **out);

typedef struct pc_memo_options { /* zero-initialise */
    /* Time to live of every stored result, as pc_put_args.ttl_ms (0: the
     * backend's default; PC_TTL_NEVER: none). Needs a backend with put_ex
     * (the cache's and the Redis backend have it); else PC_EINVAL. */
    uint64_t ttl_ms;
} pc_memo_options;

/* pc_memo_create with options (NULL: as pc_memo_create; read during the
 * call only). Same thread-safety, progress and statuses, and PC_EINVAL for
 * a ttl_ms the backend cannot honour (no put_ex). */
PC_API pc_status pc_memo_create_ex(const pc_backend *backend,
                                   const pc_memo_options *opts, pc_memo **out);

/* Destroy the memoizer and its backend. NULL is a no-op. No call may be in
 * flight on it. Blocking. */
PC_API void pc_memo_destroy(pc_memo *memo);

/*
 * pc_get_or_load over the memoizer's backend: same single-flight, error,
 * deadlock and cancellation semantics (a cancellation point only while it
 * runs load; the backend is called with cancellation disabled).
 * Thread-safety: any thread. Progress: blocking.
 * Returns as pc_get_or_load (PC_EINVAL also for a NULL memo), and the
 * backend's error (PC_EIO for a remote one) if a lookup fails: the first
 * (nothing counted), or a later one, the leader's look again before it
 * loads or a waiter's after a load it waited for was abandoned (its miss
 * counted). A failing store of the loaded value fails no call.
 */
PC_API pc_status pc_memo_call(pc_memo *memo, const void *key, size_t klen,
                              pc_loader_fn *load, void *ctx, void *buf,
                              size_t bufcap, size_t *vlen, int *load_err);

/*
 * Forget the remembered result of one call: delete key from the backend,
 * so the next call for it computes afresh. A load of key in flight when
 * pc_memo_forget runs still hands its result to the calls already waiting
 * for it, but keeps nothing: it stores no value, or its store ends before
 * the delete. Calls that begin after pc_memo_forget returns start a new
 * load (or find a value a load begun after the forget stored). The
 * wrapper##_forget function of PC_MEMOIZE builds the key for you.
 * Thread-safety: any thread. Progress: blocking (waits for a store of this
 * key in progress, then the backend's del).
 * Returns PC_OK if a result was remembered, PC_NOTFOUND if none was;
 * PC_EINVAL for a NULL memo, NULL key with klen > 0 or klen > PC_KEY_MAX;
 * or the backend's error (PC_EIO for a remote one).
 */
PC_API pc_status pc_memo_forget(pc_memo *memo, const void *key, size_t klen);

/*
 * Counters of the memoizer: one hit or miss per call (pc_memo_call,
 * pc_memo_begin; none for a call whose first lookup fails with the
 * backend's error, nor for one that returns PC_ENOMEM before it has
 * started or waited on a load), loader calls and loader errors (puts, evictions
 * and deletes are the backend's business and stay 0 here). Thread-safety:
 * any thread. Progress: blocking (registration of other threads, briefly,
 * as pc_stats_get). Returns PC_OK; PC_EINVAL for NULL arguments (nothing
 * written).
 */
PC_API pc_status pc_memo_stats(pc_memo *memo, pc_stats *out);

/*
 * Two-step form of pc_memo_call, for code that computes the value inline
 * (PC_MEMOIZE uses it). pc_memo_begin returns the cached value (PC_OK or
 * PC_ERANGE) or the outcome of another thread's load; or it returns
 * PC_NOTFOUND and sets *lead: the caller now owns the load of this key, and
 * MUST call pc_memo_finish(memo, *lead, err, val, vlen) exactly once, on
 * the same thread and before that thread exits (err 0 on success, non-zero
 * for a failure of its own), or every other caller of this key waits
 * forever (deadlock detection follows the thread that began the load). If
 * the code between the two calls may be cancelled, finish from a cleanup
 * handler (pthread_cleanup_push), with err ECANCELED, as PC_MEMOIZE does.
 * pc_memo_begin: thread-safety any thread; progress blocking (may wait
 * for another thread's load, as pc_memo_call). Returns PC_OK, PC_ERANGE,
 * PC_NOTFOUND (this caller leads), another thread's outcome (PC_ELOAD with
 * *load_err, PC_EDEADLK), PC_ENOMEM, the backend's error from its lookup
 * (PC_EIO for a remote one), or PC_EINVAL for a NULL memo or lead, NULL
 * key with klen > 0, klen > PC_KEY_MAX, or NULL buf with bufcap > 0. On
 * every return but PC_NOTFOUND, *lead (if lead is not NULL) is set to NULL.
 * pc_memo_finish: the thread that began the load; progress blocking (the
 * store, then waking the waiters). It copies val (the caller keeps it),
 * stores it on success and returns PC_OK, or PC_ELOAD when err is
 * non-zero. A value that cannot be stored as given (NULL with vlen > 0,
 * or vlen > PC_VALUE_MAX) with err 0 makes the load a failure: PC_ELOAD,
 * and the waiters get PC_ELOAD with *load_err -1. It returns PC_EINVAL,
 * completing nothing, for a NULL memo or lead, or a lead that another
 * memoizer began: such a lead is still owned, and its waiters keep
 * waiting until it is finished through its own memoizer. Finishing a lead
 * twice is undefined.
 */
typedef struct pc_flight pc_flight;
PC_API pc_status pc_memo_begin(pc_memo *memo, const void *key, size_t klen,
                               void *buf, size_t bufcap, size_t *vlen,
                               int *load_err, pc_flight **lead);
PC_API pc_status pc_memo_finish(pc_memo *memo, pc_flight *lead, int err,
                                const void *val, size_t vlen);

/* ------------------------------------------------------------------------
 * Key builder: a typed, unambiguous encoding of a call's arguments
 *
 * Each argument is written as a type tag followed by a fixed-width payload
 * (integers, doubles by their bit pattern) or a length-prefixed one (strings,
 * byte strings), and pc_key_finish appends the argument count, so distinct
 * argument lists always give distinct keys: f(1, "ab") != f(1, "a", "b"),
 * f("1") != f(1), f(0.0) != f(-0.0). Errors are sticky: add arguments
 * freely and check pc_key_finish's status once.
 * ---------------------------------------------------------------------- */
typedef struct pc_key {
    unsigned char *data_; /* NULL while the bytes are inline_ */
    size_t len_, cap_, count_;
    int err_;
    unsigned char inline_[256];
} pc_key;

/*
 * A key is the caller's value (e.g. on its stack): one thread builds it;
 * nothing in it is shared. The adds and pc_key_finish may allocate once the
 * key outgrows its inline buffer (256 bytes), and pc_key_free must then
 * release it, whatever the status (a key that never grew needs no free).
 * A key that never grew may be copied (returned by value, assigned): the
 * copy holds its own bytes. A copy of one that grew shares its memory:
 * free exactly one of them, and use none of them after.
 * A NULL k is a no-op for every function but pc_key_finish (PC_EINVAL),
 * pc_key_data (NULL) and pc_key_len (0). pc_key_data and pc_key_len give
 * the key's bytes so far; after a successful pc_key_finish, the key to
 * pass to pc_memo_call or a cache, valid until pc_key_free or the key's
 * end, unchanged by any later call. After an error they are unspecified.
 * All of these are wait-free but for an add that allocates (blocking).
 */
PC_API void pc_key_init(pc_key *k);
/*
 * Begin the key of a call of the function called name (NUL-terminated;
 * NULL is an error reported by pc_key_finish). The name opens the key but
 * is not an argument: keys of different names never collide, and a named
 * key never equals an unnamed one (pc_key_init). PC_MEMOIZE uses it.
 */
PC_API void pc_key_init_fn(pc_key *k, const char *name);
PC_API void pc_key_add_i64(pc_key *k, int64_t v);
PC_API void pc_key_add_u64(pc_key *k, uint64_t v);
PC_API void pc_key_add_f64(pc_key *k, double v);
/* A NUL-terminated string; NULL is encoded as a distinct "no string". */
PC_API void pc_key_add_str(pc_key *k, const char *s);
/* n bytes at p; p NULL with n > 0 is an error reported by pc_key_finish. */
PC_API void pc_key_add_bytes(pc_key *k, const void *p, size_t n);
/* Returns PC_OK, PC_EINVAL (NULL k, bad argument, or key longer than
 * PC_KEY_MAX) or PC_ENOMEM, from the first error of any add. The key's
 * last step: a second call returns the first one's status and changes
 * nothing, and an add after it changes no byte but is an error (a later
 * pc_key_finish returns PC_EINVAL). */
PC_API pc_status pc_key_finish(pc_key *k);
PC_API const void *pc_key_data(const pc_key *k);
PC_API size_t pc_key_len(const pc_key *k);
/* Release memory of a key that outgrew its inline buffer (blocking: it
 * frees). NULL is a no-op. The key is left empty (pc_key_len 0), and a
 * second pc_key_free of it is a no-op; build it again from pc_key_init.
 * Of copies of a key that grew, free only one (see above). */
PC_API void pc_key_free(pc_key *k);

/*
 * PC_MEMOIZE(wrapper, ret_type, func, params, args, key-args...)
 *
 * Defines `static pc_status wrapper(pc_memo *memo, ret_type *out, params)`,
 * the memoized form of `ret_type func params`: it builds a key from func's
 * name and the key-args (PC_KEY_I64(x), PC_KEY_U64(x), PC_KEY_F64(x),
 * PC_KEY_STR(s), PC_KEY_BYTES(p, n), separated by commas), returns the
 * cached result or, once per key across all threads, calls func and caches
 * the result. ret_type must be a plain value type (its bytes are cached).
 * params must declare at least one parameter. *out is written only on
 * PC_OK. Example:
 *
 *     static double slow_price(int64_t id, const char *currency);
 *     PC_MEMOIZE(price, double, slow_price,
 *                (int64_t id, const char *currency), (id, currency),
 *                PC_KEY_I64(id), PC_KEY_STR(currency))
 *     ...  double p; pc_status st = price(memo, &p, 42, "EUR");
 *          price_forget(memo, 42, "EUR");   (the next call recomputes)
 *
 * Function identity. The key opens with func's name as written in the
 * macro call ("slow_price"; pc_key_init_fn), so any number of memoized
 * functions share one memo without sharing results, even with the same
 * argument types. It is the name and not the address, so that it is the
 * same in every process and every build: memoizers over a shared backend
 * (the Redis tier, purecache_redis.h) share results across processes.
 * The flip side: two functions of the same name memoized over one backend
 * (static functions in different files, or two programs) share results;
 * give them distinct names, or distinct backends or key prefixes, and
 * rename a function (or change its prefix) when its meaning changes while
 * old results may still be stored. func must be a plain identifier.
 *
 * Also defines `static pc_status wrapper##_forget(pc_memo *memo, params)`,
 * which builds the same key and calls pc_memo_forget (unused is fine).
 *
 * Returns PC_OK; PC_ERANGE if the stored value is not sizeof(ret_type)
 * long (something else wrote under this key); PC_ENOMEM, PC_EDEADLK (func
 * asked, directly or not, for its own call) or the backend's error;
 * PC_ELOAD if func failed (PC_MEMOIZE_ERR) or the thread running it for
 * this call was cancelled; PC_EINVAL, func not called, for a NULL memo or
 * key-args that cannot be encoded (pc_key_finish's PC_EINVAL: a key over
 * PC_KEY_MAX, or PC_KEY_BYTES(NULL, n) with n > 0).
 *
 * Cancellation: func runs in the caller's state, under a cleanup handler:
 * a thread cancelled inside func fails the call for every thread waiting
 * for it (PC_ELOAD, ECANCELED; see the conventions).
 *
 * PC_MEMOIZE_ERR(wrapper, ret_type, func, params, args, key-args...)
 *
 * The same for a function that can fail: `int func(params..., ret_type
 * *result)` returns 0 after writing *result, or a non-zero error code of
 * its own. Defines `static pc_status wrapper(pc_memo *memo, ret_type *out,
 * int *err, params)`: a failure of func (in this thread, or in the thread
 * that ran it for this one) is returned as PC_ELOAD with its code in *err
 * (when err is not NULL); nothing is cached, so the next call runs func
 * again. Also defines wrapper##_forget. Example:
 *
 *     static int fetch_rate(const char *from, const char *to, double *out);
 *     PC_MEMOIZE_ERR(rate, double, fetch_rate,
 *                    (const char *from, const char *to), (from, to),
 *                    PC_KEY_STR(from), PC_KEY_STR(to))
 *     ...  double r; int e; if (rate(memo, &r, &e, "EUR", "USD") == PC_ELOAD)
 *                               log_error(e);
 */
#define PC_KEY_I64(x) pc_key_add_i64(&pc_key_, (int64_t)(x))
#define PC_KEY_U64(x) pc_key_add_u64(&pc_key_, (uint64_t)(x))
#define PC_KEY_F64(x) pc_key_add_f64(&pc_key_, (double)(x))
#define PC_KEY_STR(s) pc_key_add_str(&pc_key_, (s))
#define PC_KEY_BYTES(p, n) pc_key_add_bytes(&pc_key_, (p), (n))
#define PC_MEMO_UNPAREN_(...) __VA_ARGS__
#if defined(__GNUC__)
#define PC_MEMO_UNUSED_ __attribute__((unused))
#else
#define PC_MEMO_UNUSED_
#endif

/* Internals of PC_MEMOIZE: the lead a cleanup handler must finish if the
 * thread is cancelled inside func. */
struct pc_memo_lead_ {
    pc_memo *memo;
    pc_flight *lead;
    pc_key *key;
};

static inline void pc_memo_cancelled_(void *p)
{
    struct pc_memo_lead_ *l = (struct pc_memo_lead_ *)p;

    (void)pc_memo_finish(l->memo, l->lead, ECANCELED, NULL, 0);
    pc_key_free(l->key);
}

/* Build func's key from the key-args into pc_key_; its status into pc_st_. */
#define PC_MEMO_KEY_(func, ...)                                                \
    pc_key_init_fn(&pc_key_, #func);                                           \
    __VA_ARGS__;                                                               \
    pc_st_ = pc_key_finish(&pc_key_)

/* clang-format off */
#define PC_MEMO_FORGET_(wrapper, func, params, ...)                            \
    PC_MEMO_UNUSED_ static pc_status wrapper##_forget(                         \
        pc_memo *pc_memo_, PC_MEMO_UNPAREN_ params)                            \
    {                                                                          \
        pc_key pc_key_;                                                        \
        pc_status pc_st_;                                                      \
        PC_MEMO_KEY_(func, __VA_ARGS__);                                       \
        if (pc_st_ == PC_OK)                                                   \
            pc_st_ = pc_memo_forget(pc_memo_, pc_key_data(&pc_key_),           \
                                    pc_key_len(&pc_key_));                     \
        pc_key_free(&pc_key_);                                                 \
        return pc_st_;                                                         \
    }
/* clang-format on */

/* The body both wrappers share: look up or lead, run `compute` (which sets
 * pc_e_ and pc_v_) under the cancellation handler, finish, copy out. */
#define PC_MEMO_BODY_(func, ret_type, pc_err_, compute, ...)                   \
    pc_key pc_key_;                                                            \
    pc_flight *pc_lead_ = NULL;                                                \
    ret_type pc_v_;                                                            \
    size_t pc_n_ = 0;                                                          \
    int pc_e_ = 0;                                                             \
    pc_status pc_st_;                                                          \
    PC_MEMO_KEY_(func, __VA_ARGS__);                                           \
    if (pc_st_ == PC_OK)                                                       \
        pc_st_ = pc_memo_begin(pc_memo_, pc_key_data(&pc_key_),                \
                               pc_key_len(&pc_key_), &pc_v_, sizeof pc_v_,     \
                               &pc_n_, pc_err_, &pc_lead_);                    \
    if (pc_lead_ != NULL) {                                                    \
        struct pc_memo_lead_ pc_l_ = {pc_memo_, pc_lead_, &pc_key_};           \
        pthread_cleanup_push(pc_memo_cancelled_, &pc_l_);                      \
        compute;                                                               \
        pthread_cleanup_pop(0);                                                \
        pc_st_ =                                                               \
            pc_memo_finish(pc_memo_, pc_lead_, pc_e_, &pc_v_, sizeof pc_v_);   \
        if (pc_st_ == PC_ELOAD && (pc_err_) != NULL)                           \
            *(pc_err_) = pc_e_;                                                \
    } else if (pc_st_ == PC_OK && pc_n_ != sizeof pc_v_) {                     \
        pc_st_ = PC_ERANGE; /* another type stored under this key */           \
    }                                                                          \
    if (pc_st_ == PC_OK)                                                       \
        *pc_out_ = pc_v_;                                                      \
    pc_key_free(&pc_key_);                                                     \
    return pc_st_;

/* clang-format off */
#define PC_MEMOIZE(wrapper, ret_type, func, params, args, ...)                 \
    static pc_status wrapper(pc_memo *pc_memo_, ret_type *pc_out_,             \
                             PC_MEMO_UNPAREN_ params)                          \
    {                                                                          \
        PC_MEMO_BODY_(func, ret_type, (int *)NULL, pc_v_ = func args,          \
                      __VA_ARGS__)                                             \
    }                                                                          \
    PC_MEMO_FORGET_(wrapper, func, params, __VA_ARGS__)

#define PC_MEMOIZE_ERR(wrapper, ret_type, func, params, args, ...)             \
    static pc_status wrapper(pc_memo *pc_memo_, ret_type *pc_out_,             \
                             int *pc_err_, PC_MEMO_UNPAREN_ params)            \
    {                                                                          \
        PC_MEMO_BODY_(func, ret_type, pc_err_,                                 \
                      pc_e_ = func(PC_MEMO_UNPAREN_ args, &pc_v_),             \
                      __VA_ARGS__)                                             \
    }                                                                          \
    PC_MEMO_FORGET_(wrapper, func, params, __VA_ARGS__)
/* clang-format on */

/* "clock" or "lru": the policy this library was built with (a static
 * string). Thread-safety: any thread. Wait-free. */
PC_API const char *pc_policy(void);

/* The policy of this cache: "clock", "lru" or "frequency" (a static
 * string); NULL for a NULL cache. Thread-safety: any thread. Wait-free. */
PC_API const char *pc_cache_policy(const pc_cache *cache);

/*
 * How this process orders a read's epoch announcement before its loads
 * (build option PURECACHE_READ_FENCE; README, "Build options"):
 * "membarrier" (reads execute no fence; writers' grace-period steps call
 * membarrier(2) instead), "mfence", "locked-add", "mfence (membarrier
 * refused)" when built for membarrier on a kernel that refused it, or
 * "membarrier (failed later; mprotect fallback)" once membarrier has
 * failed after the mode was chosen (a seccomp filter installed later):
 * reads stay fence-free and writers use a slower page-protection barrier
 * instead (see pc_reclaim for the case where none is available). Decided
 * once per process, at the first cache or memoizer creation or at the
 * first call of this function, whichever comes first; never changes
 * afterwards.
 * Thread-safety: any thread. Progress: the first call may run that one-time
 * decision (two system calls); later calls are wait-free. Never NULL.
 */
PC_API const char *pc_read_fence(void);

/*
 * A static, human-readable description of status (never NULL; unknown codes
 * give "unknown status"). Thread-safety: any thread. Wait-free.
 */
PC_API const char *pc_strerror(pc_status status);

#ifdef __cplusplus
}
#endif

#endif /* PURECACHE_H */
