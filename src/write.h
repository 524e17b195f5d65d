/*
 * write: what a write call (put, delete, clear, expire, a limit change)
 * carries through a policy: its request, the lease of a load, and the
 * entries it removed, which the removal listener must see.
 *
 * Removals. Without a listener a policy retires what it removes at once,
 * under its writer lock (retire.h). With one, it unlinks the entry from
 * everything readers can reach and queues it here instead, the queue
 * linked through the entry's writer-only link word (entry.h), each link
 * carrying the next entry's cause in its low bits. After every lock is
 * released, pc__removals_finish calls the listener for each queued entry, then
 * retires them all under one writer lock: until then nothing can free them, so
 * the listener reads their bytes with no further protection. A listener that
 * writes to the same cache from inside the callback queues its own removals
 * onto the notification already running on this thread (a per-thread list of
 * the caches being notified), so the loop in pc__removals_report reports them
 * in turn: no recursion, no lock held.
 *
 * (pc__removals_init, in core.h, starts a call's queue.)
 *
 * Leases. A load (load.c) that may store its value registers a lease on
 * its key's hash with the writer that owns the key (pc__policy_lease_begin)
 * before it looks the key up for the last time. Every put, delete or clear
 * that could change the key afterwards marks matching leases broken, under
 * the same writer lock; a put with a broken lease stores nothing. So once
 * a write of the key has returned, no load that began before it can store
 * over it. Matching is by the full 64-bit hash: a collision only makes a
 * load uncached, never wrong. Evictions and expiry break no lease.
 */
#ifndef PC_WRITE_H
#define PC_WRITE_H

#include <stdbool.h>
#include <stdint.h>

#include "entry.h"
#include "purecache.h"
#include "retire.h"

struct pc__writer;

struct pc__lease {
    struct pc__lease *next; /* in its writer's list (writer lock) */
    uint64_t h;
    bool broken;
    void *owner; /* the writer it is registered with (policy's business) */
};

struct pc__put_req {
    unsigned int flags;      /* 0, PC_PUT_IF_ABSENT or PC_PUT_IF_PRESENT */
    uint64_t expires;        /* absolute, on the cache's clock; 0: never */
    struct pc__lease *lease; /* a load's lease, or NULL; the put
                                unregisters it whatever its outcome */
    bool dropped;            /* out: the lease was broken, nothing stored */
};

/* Writer lock held, the key's present entry known (present): whether the
 * put must store nothing, and why: a broken lease (req->dropped, *st left
 * PC_OK), PC_EXISTS for PC_PUT_IF_ABSENT, PC_NOTFOUND for
 * PC_PUT_IF_PRESENT. One rule for every policy. */
static inline bool pc__put_refused(struct pc__put_req *req, bool present,
                                   pc_status *st)
{
    if (req->lease != NULL && req->lease->broken) {
        req->dropped = true; /* a write won: store nothing */
        return true;
    }
    if (present && (req->flags & PC_PUT_IF_ABSENT)) {
        *st = PC_EXISTS;
        return true;
    }
    if (!present && (req->flags & PC_PUT_IF_PRESENT)) {
        *st = PC_NOTFOUND;
        return true;
    }
    return false;
}

struct pc__removals {
    struct pc__kv *head, *tail;
    pc_removal_cause head_cause;
    pc_removal_fn *fn; /* the cache's listener, or NULL: retire at once */
    void *ctx;
};

/* pc__removed with a listener: queue kv for it (write.c). */
__attribute__((noinline)) void pc__removed_queue(struct pc__removals *rm,
                                                 struct pc__kv *kv,
                                                 pc_removal_cause cause);

/* Writer lock held: kv is unlinked from everything readers reach; retire it
 * to rc, or queue it for the listener. */
static inline void pc__removed(struct pc__removals *rm,
                               struct pc__reclaimer *rc, struct pc__kv *kv,
                               pc_removal_cause cause)
{
    /* Inline: without a listener, every eviction takes this branch. */
    if (rm->fn == NULL)
        pc__reclaimer_retire(rc, kv);
    else
        pc__removed_queue(rm, kv, cause);
}

/* pc__removals_finish with removals queued (write.c). */
__attribute__((noinline)) void
pc__removals_report(pc_cache *c, struct pc__removals *rm, struct pc__writer *w);

/* No lock held: report every queued removal to the listener, then retire
 * them under w's lock (any writer of the cache will do). */
static inline void pc__removals_finish(pc_cache *c, struct pc__removals *rm,
                                       struct pc__writer *w)
{
    /* Inline: without a listener (or removals) the queue is empty. */
    if (rm->head != NULL)
        pc__removals_report(c, rm, w);
}

/* Writer lock held: mark every lease in the list that matches h broken
 * (all of them if all is true). */
static inline void pc__leases_break(struct pc__lease *l, uint64_t h, bool all)
{
    for (; l != NULL; l = l->next)
        if (all || l->h == h)
            l->broken = true;
}

/* Writer lock held: take lease out of the list headed by *head. */
static inline void pc__lease_unlink(struct pc__lease **head,
                                    struct pc__lease *lease)
{
    while (*head != NULL && *head != lease)
        head = &(*head)->next;
    if (*head != NULL)
        *head = lease->next;
}

#endif
