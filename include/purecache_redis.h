/*
 * purecache_redis: a Redis tier for purecache (optional library
 * `purecache_redis`, pkg-config `purecache-redis`, CMake
 * `purecache::purecache_redis`).
 *
 * pc_redis_backend() returns a pc_backend (include/purecache.h) over a
 * Redis server, spoken to through hiredis's protocol reader and command
 * formatter over the library's own sockets. It is safe from any number of
 * threads: requests take a connection from a pool (a connection is taken
 * with one compare-and-swap; a pool-wide lock is taken only while every
 * connection is busy, by the requests that wait and by whatever releases
 * a connection meanwhile, briefly, never across I/O), and every request
 * has a deadline. Requests that find every connection busy wait in
 * arrival order, each for the first connection freed after those ahead
 * of it are served, until its deadline.
 *
 * With near_capacity > 0 the backend is also a NEAR CACHE: reads are served
 * from an in-process purecache (nanoseconds) when the key is there, and
 * the near copy is kept coherent with every other client's writes by
 * Redis's server-assisted client-side caching: each pooled connection runs
 * `CLIENT TRACKING on REDIRECT <id>` to a subscriber connection that a
 * background thread keeps SUBSCRIBEd to `__redis__:invalidate` (RESP2, so
 * hiredis 0.14 works); or, with tracking = PC_REDIS_TRACK_BCAST, the
 * subscriber itself tracks `BCAST PREFIX key_prefix`. When any client
 * writes, deletes, expires, evicts or flushes a key this process has read,
 * Redis sends its name and the near copy is dropped. Guarantees
 * (src/redis/near.c argues them):
 *
 *   - A value read from Redis is stored in the near tier only if no
 *     invalidation of its key (nor a flush) was received between sending
 *     the GET and storing the reply: a fill that races an invalidation
 *     never resurrects the old value.
 *   - A write or delete through this backend drops the near copy in this
 *     process before it returns: a thread reads its own writes.
 *   - After another client's write is acknowledged to it, this process may
 *     serve the old value for at most the INVALIDATION DELAY: the time the
 *     server takes to push the key's name to the subscriber plus the time
 *     the subscriber thread takes to read it (sub-millisecond on loopback;
 *     purecache-redis-bench measures median and p99). Readers never wait
 *     for it.
 *   - A near copy never outlives its value's expiry in Redis: the fill
 *     asks PTTL alongside GET and the near copy carries the deadline.
 *   - When the invalidation connection is lost (server down, connection
 *     killed, no answer to a heartbeat PING within timeout_ms), the near
 *     tier is flushed and bypassed: reads go to Redis (and fail with
 *     PC_EIO while it is unreachable) until the subscriber has
 *     reconnected, resubscribed, and tracking is re-enabled (lazily, per
 *     connection, before that connection's next fill). When a pooled
 *     connection that may have filled the near tier is dropped (its
 *     tracking state dies with it on the server; noticed at its next use,
 *     or within 100 ms while it sits idle), the near tier is flushed (the
 *     subscriber still stands: no bypass), and that connection tracks
 *     again before its next fill. Never a stale near value, with one window
 *     stated exactly: between the loss and its detection the near tier
 *     still serves what it holds: a closed subscriber connection is seen
 *     at once (within the invalidation delay), a pooled one closed by the
 *     server while idle within 100 ms (writes by others meanwhile may go
 *     unseen that long), and a subscriber connection that stops carrying
 *     anything without closing after 1 s of silence plus timeout_ms: if
 *     the server itself stopped, nobody can write through it meanwhile;
 *     if only that connection's path stalled (a NAT or load-balancer
 *     entry dropped, a proxy that stops relaying one flow), other clients'
 *     writes in that window go unseen until it ends (measured: a value
 *     replaced 1.95 s before, at timeout_ms 1000).
 *
 * In broadcast mode this process's own writes come back as invalidations
 * too: a read right after a write may fill the near tier only for the echo
 * to empty it again (one extra miss, never a stale value).
 *
 * Not seen: a change for which Redis sends no invalidation. SWAPDB
 * replaces database 0's values without naming their keys (measured,
 * both tracking modes): near copies read before it stay until their key
 * is next written or deleted, expires, or the tier is flushed. Do not
 * SWAPDB under a near tier (or create a new backend after it).
 *
 * Redis semantics: keys are stored as key_prefix + key (binary safe),
 * values as Redis strings, written with SET (and `PX ttl_ms` when ttl_ms is
 * set); DEL deletes. Database 0; no AUTH; TCP only.
 *
 * Memoizing: pc_memo_create() over this backend works. Its single flight
 * is PER PROCESS: concurrent misses of one key in one process run the
 * loader once, but two processes (two servers sharing the Redis) that miss
 * the same key at the same time each run it once, and the last SET wins.
 *
 * fork(): a child must not use a backend created before the fork (its
 * subscriber thread does not exist in the child and its sockets are
 * shared with the parent); create a new backend in the child.
 *
 * CONVENTIONS are those of purecache.h: a failing call changes nothing
 * observable (a put that failed with PC_EIO may still have reached the
 * server: the outcome of a timed-out request is unknown, as with any
 * remote store, and the near copy is dropped either way); nothing aborts,
 * asserts or prints; every function may be called from any thread
 * concurrently with every other except the backend's destroy; and none
 * acts on a pthread_cancel request while it runs: the backend's
 * operations (called directly or through a memoizer) and
 * pc_redis_wait_near run with cancellation disabled, and a request that
 * arrives meanwhile is acted upon at the caller's next cancellation point
 * after the call returns (a request cancelled in its wait used to keep
 * its pooled connection for ever).
 */
#ifndef PURECACHE_REDIS_H
#define PURECACHE_REDIS_H

#include <purecache.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Longest key_prefix accepted, in bytes. */
#define PC_REDIS_PREFIX_MAX 256
/* Longest host name accepted, in bytes. */
#define PC_REDIS_HOST_MAX 255
/* Most pooled connections accepted. */
#define PC_REDIS_CONNECTIONS_MAX 1024
/* Largest ttl_ms accepted (about 8900 years). */
#define PC_REDIS_TTL_MAX ((uint64_t)1 << 48)
/* Largest value a put accepts, in bytes: a Redis string's limit (512 MiB,
 * proto-max-bulk-len's default; a server configured lower answers a put
 * over its own limit with an error: PC_EIO). */
#define PC_REDIS_VALUE_MAX ((size_t)512 << 20)
/* The defaults of the fields left 0. */
#define PC_REDIS_DEFAULT_PORT 6379
#define PC_REDIS_DEFAULT_CONNECTIONS 8
#define PC_REDIS_DEFAULT_TIMEOUT_MS 1000

typedef struct pc_redis_options { /* zero-initialise */
    /* Server address (name or numeric); NULL = "127.0.0.1". At most
     * PC_REDIS_HOST_MAX bytes. A name is resolved at every (re)connect,
     * with getaddrinfo(3), whose own time is not bounded by timeout_ms. */
    const char *host;
    /* TCP port; 0 = 6379; negative or above 65535 is refused. */
    int port;
    /* Prepended to every key in Redis; NULL = "". At most
     * PC_REDIS_PREFIX_MAX bytes. Copied: need not outlive the call. */
    const char *key_prefix;
    /* Expiry of values written to Redis (SET ... PX ttl_ms); 0 = none. */
    uint64_t ttl_ms;
    /* Entries of the in-process near tier; 0 = no near tier. */
    size_t near_capacity;
    /* Pool size; 0 = PC_REDIS_DEFAULT_CONNECTIONS. Connections are opened
     * lazily, on first use. */
    unsigned int connections;
    /* Bound on one request (waiting for a pooled connection, connect,
     * send, receive), in ms; 0 = PC_REDIS_DEFAULT_TIMEOUT_MS. A request
     * that gets its connection with less time left than the pool's recent
     * round trips (a low estimate of the successful ones, at most half
     * this bound) fails with PC_EIO without being sent: its reply would
     * come too late, and a connection whose reply is not awaited is
     * closed. Also the heartbeat deadline of the invalidation
     * connection. */
    unsigned int timeout_ms;
    /* How the server keeps the near tier coherent (ignored without one):
     * PC_REDIS_TRACK_KEYS (0, default): per-key tracking; each pooled
     * connection redirects invalidations of the keys it read. Messages
     * only for keys this process holds, but losing a pooled connection
     * flushes the near tier. PC_REDIS_TRACK_BCAST: the subscriber
     * connection itself tracks `BCAST PREFIX key_prefix`: a message for
     * every write under the prefix by anyone (all keys if the prefix is
     * empty), pooled connections irrelevant. Other values are refused. */
    unsigned int tracking;
} pc_redis_options;

#define PC_REDIS_TRACK_KEYS 0u
#define PC_REDIS_TRACK_BCAST 1u

/*
 * Create a Redis backend. On success *out is a backend that owns
 * everything it created (the pool, the near tier, the subscriber thread);
 * release it with out->ops->destroy(out->self), or hand it to
 * pc_memo_create, which then owns it.
 *
 * No connection is made here: the first request connects, and the near
 * tier's subscriber connects in the background (pc_redis_wait_near waits
 * for it). While the server is unreachable requests fail with PC_EIO; the
 * backend reconnects by itself once it is back (the subscriber with
 * backoff from 10 ms to 500 ms, pooled connections at their next request).
 *
 * The backend's operations follow pc_get / pc_put / pc_delete / pc_len:
 *   get  PC_OK, PC_NOTFOUND, PC_ERANGE (*vlen set, buffer untouched),
 *        PC_EINVAL (as pc_get), PC_EIO (unreachable, timed out, or an
 *        error reply such as WRONGTYPE), PC_ENOMEM (the reply could not
 *        be decoded for lack of memory is PC_EIO, and drops the
 *        connection). A near hit is served without I/O, as pc_get on the
 *        near cache: in the CLOCK build, no allocation, no shared write,
 *        and no lock for a value of up to 1 KiB, after the thread's first
 *        read (which registers it) (a longer one is read through a pin,
 *        which takes the near cache's pin-table lock, as pc_get_pinned);
 *        in the exact-LRU build, as its pc_get.
 *   put  PC_OK, PC_EINVAL (as pc_put, and for a value longer than
 *        PC_REDIS_VALUE_MAX), PC_EIO, PC_ENOMEM.
 *   put_ex  as put, as one SET: args->ttl_ms as PX (0: the backend's
 *        ttl_ms; PC_TTL_NEVER: none; longer than PC_REDIS_TTL_MAX: that),
 *        PC_PUT_IF_ABSENT as NX (PC_EXISTS when the key is in Redis),
 *        PC_PUT_IF_PRESENT as XX (PC_NOTFOUND when it is not); PC_EINVAL
 *        for other flags, as pc_put_ex. NULL args: put. So a memoizer with
 *        a ttl_ms (pc_memo_create_ex) works over the backend.
 *   del  PC_OK (the key existed in Redis), PC_NOTFOUND, PC_EINVAL, PC_EIO,
 *        PC_ENOMEM (the command could not be built).
 *   A put_ex with a condition and a del report what the server found, so
 *   they are never sent twice: where a get or a plain put retries (below),
 *   they fail with PC_EIO, outcome unknown (an old connection the server
 *   closed while it sat idle is found before sending, and replaced).
 *   len  the near tier's entry count (as pc_len); 0 without a near tier,
 *        or for a NULL self.
 *   destroy  NULL self is a no-op. Blocking: it joins the subscriber
 *        thread, which may first finish a connection attempt (up to
 *        timeout_ms, and a host name's resolution, which no deadline
 *        bounds).
 * Progress: a get served by the near tier progresses as pc_get_pinned
 * (see purecache.h); every other path is blocking: it waits for a
 * pooled connection (at most until its deadline) and a network round trip,
 * bounded by about timeout_ms, signals or not (a get or plain put that
 * finds its connection closed by the server retries once on a fresh one
 * within the same deadline).
 * Thread-safety: any thread, concurrently with anything but destroy, which
 * must not overlap any other call (it stops and joins the subscriber).
 *
 * o->host and o->key_prefix are copied (o is read during the call only).
 * Returns PC_OK; PC_EINVAL if o or out is NULL, port < 0 or > 65535, the
 * host is empty, the host or key_prefix is longer than its maximum, connections
 * exceeds PC_REDIS_CONNECTIONS_MAX, ttl_ms exceeds PC_REDIS_TTL_MAX, tracking
 * is not one of PC_REDIS_TRACK_*, or near_capacity is beyond what pc_create
 * accepts; PC_ENOMEM if memory or the subscriber thread could not be had. On
 * failure *out is untouched. Blocking.
 */
PC_API pc_status pc_redis_backend(const pc_redis_options *o, pc_backend *out);

/* Counters of a Redis backend, and the near tier's state. */
typedef struct pc_redis_stats {
    uint64_t requests;      /* round trips attempted (GET, SET, DEL, ...) */
    uint64_t errors;        /* requests that ended in PC_EIO */
    uint64_t connects;      /* pooled connections established */
    uint64_t near_fills;    /* values stored in the near tier */
    uint64_t fills_dropped; /* fills discarded: an invalidation or flush
                               came between their start and their store */
    uint64_t invalidations; /* key names received from the server */
    uint64_t flushes;       /* whole near tier dropped (FLUSHALL, channel
                               lost, pooled connection lost; a channel
                               regained empties it again, counted in
                               sessions) */
    uint64_t sessions;      /* invalidation channel (re)established */
    int near_active;        /* 1 while the near tier serves reads */
} pc_redis_stats;

/*
 * Fill *out with backend be's counters (each exact when quiescent).
 * Thread-safety: any thread. Progress: wait-free.
 * Returns PC_OK; PC_EINVAL if be or out is NULL or be is not a Redis
 * backend.
 */
PC_API pc_status pc_redis_stats_get(const pc_backend *be, pc_redis_stats *out);

/*
 * Look key up in the near tier only: never touches the network, never
 * fills. PC_OK / PC_ERANGE as pc_get when a live near copy exists;
 * PC_NOTFOUND otherwise (absent, expired, no near tier, or the near tier
 * is bypassed because the invalidation channel is down).
 * Thread-safety: any thread. Progress: as pc_get_pinned.
 * Returns also PC_EINVAL as pc_get, or if be is not a Redis backend.
 */
PC_API pc_status pc_redis_near_get(const pc_backend *be, const void *key,
                                   size_t klen, void *buf, size_t bufcap,
                                   size_t *vlen);

/*
 * Wait until the near tier serves reads (the invalidation channel is
 * subscribed), at most timeout_ms. Useful right after creation or after
 * an outage.
 * Thread-safety: any thread. Progress: blocking (sleeps in 1 ms steps).
 * Returns PC_OK; PC_EIO if it is still down after timeout_ms; PC_EINVAL if
 * be is NULL, not a Redis backend, or has no near tier.
 */
PC_API pc_status pc_redis_wait_near(const pc_backend *be,
                                    unsigned int timeout_ms);

#ifdef __cplusplus
}
#endif

#endif /* PURECACHE_REDIS_H */
