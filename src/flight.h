/*
 * flight: single-flight coordination of loads, one table per cache or
 * memoizer.
 *
 * A flight is an in-progress load of one key. The first thread to miss on a
 * key becomes its leader and runs the loader outside any lock; threads that
 * miss on the same key meanwhile find the flight, wait on its condition
 * variable, and take the leader's outcome (value bytes, or error code) when
 * it lands. A flight leaves the table when it completes, after the leader
 * has stored the value in the backend, so a later miss either finds the
 * value there or starts a new flight; a new leader re-checks the backend
 * before loading (flight_begin's caller does), closing the window between
 * "store" and "leave the table".
 *
 * Deadlock detection. Each thread has a record of the flight it is waiting
 * for. Before waiting on flight F, a thread follows owner -> waiting_for ->
 * owner ... from F under the table lock; if the chain reaches itself, waiting
 * would never end (a loader asking for its own key, or a cycle through other
 * loaders), and the call fails with PC_EDEADLK instead. Chains cross tables
 * (a loader of cache A may wait on cache B), so the records and the chain
 * walk are guarded by one process-wide lock, taken only on the miss path.
 * The walk stops at a finished flight: a thread still recorded as waiting
 * for it has been woken and will move on, so no cycle runs through it.
 * That is also what keeps the walk safe. A record lives in its thread's
 * thread-local storage, which vanishes when the thread exits; the walk
 * reads a record only as the owner of a flight that is not done, and such
 * an owner is alive: every path out of a leader (return, error, or
 * cancellation inside the loader, load.c) finishes its flight first, and a
 * pc_memo_begin caller must finish before it exits (purecache.h).
 *
 * Cancellation. A waiter waits with cancellation disabled: pthread_cond_wait
 * is a cancellation point that re-takes its mutex before acting, which
 * would leave the process-wide lock held for ever. A cancellation that
 * arrives meanwhile is acted upon at the caller's next cancellation point.
 * Leaders are the loaders' business: load.c finishes a flight whose
 * leader is cancelled inside its loader.
 *
 * Concurrency: the table, every flight's fields and all thread records are
 * guarded by that lock; the loader runs without it. A flight is freed by the
 * last of its leader and waiters to let go (refcount under the lock).
 */
#ifndef PC_FLIGHT_H
#define PC_FLIGHT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "purecache.h"

struct pc__lease;

/* A cache's or memoizer's table of loads in progress. */
struct pc__flight_table;
/* One load in progress (one key). */
struct pc__flight;

/* NULL on allocation failure. */
struct pc__flight_table *pc__flight_table_create(void);
/* No flight may be in progress. NULL is a no-op. */
void pc__flight_table_destroy(struct pc__flight_table *fl);

enum pc__flight_role {
    PC__FLIGHT_LEADER,   /* this thread loads the key */
    PC__FLIGHT_FOLLOWER, /* another thread loaded it; outcome copied out */
    PC__FLIGHT_RETRY,    /* the leader found the key stored: look again */
};

/*
 * Join the flight for key, or start one. Returns PC_OK with *role:
 *  - PC__FLIGHT_LEADER: *f is a new flight this thread must complete with
 *    pc__flight_finish or pc__flight_abandon;
 *  - PC__FLIGHT_FOLLOWER: another thread's load finished; its outcome has
 *    been copied out as by pc_get (*out_status is PC_OK, PC_ERANGE or
 *    PC_ELOAD with *load_err set, or the leader's PC_ENOMEM);
 *  - PC__FLIGHT_RETRY: the leader found the key already stored; look it up
 *    again.
 * Or returns PC_EDEADLK (waiting would never end) or PC_ENOMEM.
 * join, if not NULL, is called once the call can no longer fail for
 * memory: as this thread becomes the leader, or before it waits (or finds
 * it would deadlock) as a follower; never on PC_ENOMEM. It runs under the
 * table's lock, so it must only do a little bookkeeping (get-or-load
 * counts its miss there: one that waits is counted while it waits).
 * Never acts on a cancellation request (it is disabled during the call).
 */
struct pc__flight_join {
    void (*fn)(void *arg);
    void *arg;
};

pc_status pc__flight_begin(struct pc__flight_table *fl, const void *key,
                           size_t klen, const struct pc__flight_join *join,
                           enum pc__flight_role *role, struct pc__flight **f,
                           void *buf, size_t bufcap, size_t *vlen,
                           int *load_err, pc_status *out_status);

/*
 * Complete a flight this thread leads: status PC_OK with the value (copied
 * for the waiters), PC_ELOAD with the loader's code, or PC_ENOMEM. Wakes
 * every waiter; the flight is gone afterwards.
 */
void pc__flight_finish(struct pc__flight_table *fl, struct pc__flight *f,
                       pc_status status, int load_err, const void *val,
                       size_t vlen);

/* Complete a flight without a load: the leader found the key stored after
 * all. Waiters (PC__FLIGHT_RETRY) look the key up again. */
void pc__flight_abandon(struct pc__flight_table *fl, struct pc__flight *f);

/*
 * Forgetting (pc_memo_forget). The leader brackets its store of the value
 * with pc__flight_store_begin, which returns false (store nothing) if the
 * flight has been forgotten, and pc__flight_store_end. pc__flight_forget
 * marks the key's flight, if one is in progress, as forgotten and takes
 * it out of the table (later callers start a new load; those already
 * waiting still get its outcome), then waits for a store in progress to
 * end, of that flight or of any flight of the key an earlier forget took
 * out (forgotten flights stay on a list of the table until they end, so a
 * second forget racing the first waits too). The caller deletes the key
 * from the backend after it returns, so the forgotten flight's value is
 * never left stored: either its leader saw the mark and stored nothing, or
 * its store ended before the delete.
 * Forget never acts on a cancellation request.
 */
bool pc__flight_store_begin(struct pc__flight *f);
void pc__flight_store_end(struct pc__flight *f);
void pc__flight_forget(struct pc__flight_table *fl, const void *key,
                       size_t klen);

/* A table's first member: how many flights are in it. */
struct pc__flight_count {
    unsigned linked; /* changed under the flights' lock */
};

/* Whether no flight is in the table (one load; acquire: a flight is in
 * the table before its lease is registered, so a write that could have
 * broken the lease and reads 0 here had nothing to detach). */
static inline bool pc__flight_none(const struct pc__flight_table *fl)
{
    return __atomic_load_n(&((const struct pc__flight_count *)fl)->linked,
                           __ATOMIC_ACQUIRE) == 0;
}

/* A put, delete or clear (all) of a cache's key: take its flight, if one
 * is in progress, out of the table, so that callers that begin after the
 * write start a new load instead of joining one that may have read the
 * source before the write's caller changed it (a put's too: its value may
 * be evicted before they begin, and they would get the one it replaced).
 * Those already waiting still get its outcome; whether its value is
 * stored is its lease's business (the same write broke it). Called after
 * the write, with no lock held; costs one load when no load is in flight
 * (pc__flight_none: puts check that inline, and call this only when some
 * flight is). Out of line: it takes a lock. */
__attribute__((noinline)) void pc__flight_detach(struct pc__flight_table *fl,
                                                 const void *key, size_t klen,
                                                 bool all);

/* Room for the lease of the flight's load (write.h), owned by its leader
 * until the flight completes. */
struct pc__lease *pc__flight_lease(struct pc__flight *f);

#endif
