/*
 * load: get-or-load with single flight over any backend, shared by
 * pc_get_or_load (the cache itself as the backend) and the memoizer.
 *
 * Algorithm (pc__load_through):
 *   1. Look the key up in the backend. A hit, even of an empty value, is
 *      returned as is: unlike the Python original, "nothing" is a value.
 *   2. On a miss, join or start the key's flight (flight.h). A follower waits
 *      and takes the leader's outcome.
 *   3. The leader looks the key up once more (a previous leader may have
 *      stored it and left the table in between); if it is there, it
 *      abandons the flight and followers look the key up themselves. When
 *      the backend is one of our caches, the leader first registers a
 *      lease on the key (write.h): any put, delete or clear of the key
 *      after that point breaks it, and the store in step 4 then stores
 *      nothing, so a load never overwrites a write that returned while it
 *      ran (the stale-set race of cache-aside).
 *   4. Otherwise it runs the loader with no lock held, stores the value in
 *      the backend on success (before the flight leaves the table, so a
 *      later miss finds it stored), then completes the flight for the
 *      waiters. A loader error is handed to the leader and every waiter and
 *      nothing is stored.
 *
 * Statistics: each call counts one hit or one miss, its first lookup (the
 * cache's own counters for pc_get_or_load; the memoizer's for
 * pc_memo_call, and the cache's too if its backend is one). Every lookup
 * goes through the policy uncounted: a hit is counted at once, a miss as
 * the call joins its key's flight (a waiter is counted while it waits),
 * so a call that returns PC_ENOMEM before it has started or waited on a
 * load counts nothing; a later failure (the leader's second lookup
 * through a user's backend, a waiter's copy) has counted its miss. Loader calls
 * and errors (and, for a memoizer, its hits and misses) go to per-thread
 * counters (struct pc__record_stats: the cache's
 * own records, or a memoizer's private domain), summed on read, so the hit
 * path writes no shared line.
 *
 * Cancellation. The only cancellation point is the caller's loader. Every
 * step that leads or completes a flight runs with cancellation disabled
 * (the wait in flight.c, the leader's second lookup, the store and the
 * completion), since a leader stopped there would strand its waiters; a
 * backend whose operations may be cancellation points (a user's backend,
 * load_ctx.backend_cancels) also has its first lookup guarded. The loader
 * itself runs in the caller's cancellation state, under a cleanup handler
 * that completes the flight as failed (PC_ELOAD with ECANCELED for every
 * waiter, counted as a loader error) if the thread is cancelled inside it.
 * The leader of a two-step load (pc_memo_begin) holds the flight between
 * the calls: PC_MEMOIZE installs the same handler around its function.
 *
 * Concurrency: backends are called concurrently from any thread (their
 * contract); the flight table serialises only the miss path of each key.
 */
#ifndef PC_LOAD_H
#define PC_LOAD_H

#include <stdbool.h>

#include "domain.h"
#include "flight.h"

/* What a load works on. */
struct pc__load_ctx {
    const pc_backend *be;
    /* be is one of our caches (pc__backend_cache): leases, lookups through
     * the policy (one counted per call), stores through it. Else NULL. */
    pc_cache *cache;
    uint64_t ttl_ms; /* of stored values, as pc_put_args.ttl_ms */
    struct pc__flight_table *flights;
    struct pc__record_stats *stats;
    bool count_lookups;   /* the backend does not count hits/misses itself */
    bool backend_cancels; /* its operations may be cancellation points */
};

/* Steps 1-3: returns the outcome, or PC_NOTFOUND with *lead set, which
 * means "this thread loads" (and must finish with pc__load_finish). */
pc_status pc__load_lookup_or_lead(const struct pc__load_ctx *lc,
                                  const void *key, size_t klen, void *buf,
                                  size_t bufcap, size_t *vlen, int *load_err,
                                  struct pc__flight **lead);

/* Step 4 for a value the leader has (err == 0) or an error of its own:
 * PC_OK or PC_ELOAD. */
pc_status pc__load_finish(const struct pc__load_ctx *lc,
                          struct pc__flight *lead, const void *key, size_t klen,
                          int err, const void *val, size_t vlen);

/* All four steps with a loader callback. */
pc_status pc__load_through(const struct pc__load_ctx *lc, const void *key,
                           size_t klen, pc_loader_fn *load, void *ctx,
                           void *buf, size_t bufcap, size_t *vlen,
                           int *load_err);

#endif
