/*
 * domain: an epoch domain (one per cache or memoizer) and its registry of
 * thread records, and the read-side section every lookup runs in.
 *
 * Domain. Every cache owns one ck_epoch domain, so a long pinned read on one
 * cache never delays reclamation on another. Grace periods on it are
 * detected by grace.c; retired memory waits in retire.c's reclaimers.
 *
 * Records. A thread that calls a cache gets a record in the cache's domain
 * (struct pc__record: its ck_epoch record and its statistics counters). The
 * first call registers one (recycling a record an exited thread released,
 * else allocating); later calls find it in the thread's table of records,
 * so users never call a per-thread init. In front of the table sits a
 * one-entry thread-local cache (domain id -> record; initial-exec TLS, a
 * couple of instructions): a thread that keeps using one cache never
 * reaches the table. Domain ids come from a global counter and are never
 * reused, so an entry left behind by a destroyed cache can never match a
 * new one.
 *
 * The thread's table. One pthread key for the whole process (created once,
 * with the first domain; retried by the next if that fails) holds each
 * thread's table:
 * an open-addressing hash of domain id -> record, linear probing, grown
 * by doubling. So the number of caches is not bounded by PTHREAD_KEYS_MAX,
 * and the library takes one of the application's keys, not one per cache.
 * Entries of destroyed domains are not removed when the domain goes
 * (other threads' tables are theirs alone); a table that fills is rebuilt
 * without them first, checked against the process's map of live domain
 * ids, so a thread that touches a stream of short-lived caches keeps a
 * table sized by the caches alive. The thread that destroys a domain
 * removes its own entry at once (and frees its table when that leaves it
 * empty).
 *
 * Thread exit. The key's destructor releases every record in the exiting
 * thread's table, then frees the table. It may run while pc_destroy runs
 * on another thread, so it trusts no record pointer by itself: under the
 * live-domains lock it looks each entry's id up in the map of live
 * domains, and releases the record only if it is among that domain's
 * records and owned by this thread (the address may have been reused for
 * another thread's record). pc_destroy unlinks its domain from the list
 * and the map under the same lock (pc__domain_unlink) before it frees
 * anything, which also keeps other caches' paced grace-period steps
 * (grace.c) away from its records.
 *
 * fork(). A pthread_atfork child handler (registered when the library
 * loads, so before the application's handlers, which may then call the
 * caches from theirs) releases, in every live domain, every record the
 * forking thread does not own: those threads do not exist in the child,
 * and one that was inside a read section would otherwise block every
 * grace period there. It also starts the key's init_lock afresh.
 * The prepare handler holds the live lock and every registry lock across
 * fork(), so the child sees no list half-changed (domain.c).
 *
 * Read sections. pc__read_enter stores `active` and a copy of the global
 * epoch into the reader's own record, then the read fence (barrier.h);
 * pc__read_leave stores `active` back. That is all a read pays: no atomic
 * read-modify-write, no write to a line another thread writes (ck_epoch's
 * own TSO variant uses an atomic exchange on the record instead). Sections
 * nest (`active` counts them). A pin is not a section: it is an entry in
 * the cache's pin table (pin.h), which keeps a pinned entry's memory past
 * its grace period instead of holding the grace period back.
 *
 * Statistics. Per-thread counters live in the record, written only by the
 * owning thread (PC__COUNTER_INC), summed under the registry lock.
 */
#ifndef PC_DOMAIN_H
#define PC_DOMAIN_H

#include <ck_epoch.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "barrier.h"
#include "tsan.h"
#include "util.h"

struct pc__record_stats {
    uint64_t hits;
    uint64_t misses;
    uint64_t loader_calls;
    uint64_t loader_errors;
};

struct pc__domain;

/* A thread's record in one domain. */
struct pc__record {
    ck_epoch_record_t rec; /* first: recycled records are cast back */
    struct pc__record_stats stats;
    struct pc__domain *dom;
    struct pc__record *next; /* registry list, under dom->registry_lock */
    pthread_t owner;         /* the thread using it, under registry_lock */
    bool in_use;             /* owner holds it (not released); same lock */
    /* The policy's per-thread state (lru.c's access log), set by the
     * owning thread; it stays with the record when a thread exits and the
     * record is recycled, and the policy frees it with the cache. */
    void *policy_data;
};

struct pc__domain {
    ck_epoch_t epoch;
    uint64_t id; /* unique per domain for the process's life, never 0 */
    pthread_mutex_t registry_lock; /* records, registration; level 4 */
    /* Grace-period state (grace.c). */
    pthread_mutex_t grace_lock; /* serialises epoch advances; level 4 */
    bool step_wanted;           /* a writer asked for a paced step */
    bool step_held;             /* a paced step holds grace_lock */
    unsigned int step_epoch;    /* the epoch that step read */
    /* TSan's grace-period sync object (tsan.h, case 2). Not the epoch word:
     * TSan treats a release store to an atomic as overwriting that
     * address's sync clock, which would drop the readers' releases. */
    char tsan_grace;
    struct pc__record *records;
    struct pc__domain *live_next, *live_prev; /* live domains, live lock */
    bool unlinked;                            /* off that list (under it) */
};

/* Set up d; false (nothing to undo) for lack of memory, or if the
 * process's one pthread key could not be had. */
bool pc__domain_init(struct pc__domain *d);
/* Take d off the process's list of live domains (idempotent): after this no
 * other thread's paced step or thread exit looks at it. Call it before
 * freeing anything registered in d, its reclaimers in particular. */
void pc__domain_unlink(struct pc__domain *d);
/* Unlink d if still linked, then release every thread record. No thread may
 * be inside a read section, and every reclaimer of the domain must have been
 * destroyed first. */
void pc__domain_fini(struct pc__domain *d);

/* The live-domains list, for grace.c's paced steps: walk it from
 * pc__domain_first_live() through live_next while holding the lock. */
void pc__domain_live_lock(void);
void pc__domain_live_unlock(void);
struct pc__domain *pc__domain_first_live(void);

/* Register a record that never reads (a reclaimer's) in d. */
void pc__domain_register_writer(struct pc__domain *d, ck_epoch_record_t *r);

/* Sum the per-thread counters of d into *out (adds to what it holds). */
void pc__domain_sum_stats(struct pc__domain *d, struct pc__record_stats *out);

/* pc__domain_record's first use of d on this thread (or after its front
 * cache named another domain): out of line, or the flattened pc_get would
 * carry its registration (locks, allocation) and their stack frame. */
__attribute__((noinline, cold)) struct pc__record *
pc__domain_record_slow(struct pc__domain *d);

/* Test hook: the number of slots of the calling thread's table (0 if it
 * has none). */
size_t pc__domain_thread_slots(void);

/* The thread-local front cache of pc__domain_record. */
struct pc__record_cache {
    uint64_t id;
    struct pc__record *rec;
};
extern __thread struct pc__record_cache pc__tls_record
    __attribute__((tls_model("initial-exec")));

/* This thread's record on d, registering it on first use; NULL only when
 * that registration fails for lack of memory. */
static inline struct pc__record *pc__domain_record(struct pc__domain *d)
{
    if (__builtin_expect(pc__tls_record.id == d->id, 1))
        return pc__tls_record.rec;
    return pc__domain_record_slow(d);
}

/* The record's words are accessed with relaxed atomics (plain moves on
 * x86-64): the grace-period scan reads them from another thread, and TSan
 * must see atomics on both sides. Only the owner writes them. */
static inline void pc__read_enter(struct pc__record *t)
{
    ck_epoch_record_t *r = &t->rec;

    if (r->active == 0) {
        __atomic_store_n(&r->active, 1, __ATOMIC_RELAXED);
        __atomic_store_n(&r->epoch,
                         __atomic_load_n(&r->global->epoch, __ATOMIC_ACQUIRE),
                         __ATOMIC_RELAXED);
        /* Both stores before every load of the section (the fence is also
         * a compiler barrier). Fencing after the epoch store, not between
         * the two stores as ck_epoch_begin does, means a scan that sees
         * `active` set while `epoch` is still an old value is looking at a
         * reader that has loaded nothing yet (grace.c relies on it). */
        pc__read_fence();
    } else {
        __atomic_store_n(&r->active, r->active + 1, __ATOMIC_RELAXED);
    }
}

static inline void pc__read_leave(struct pc__record *t)
{
    unsigned int active = t->rec.active - 1;

    PC__ASSERT(t->rec.active > 0);
    /* TSan: the writer learns that this section ended from a relaxed load
     * in its grace-period scan; pairs with the acquire before every
     * deferred free (tsan.h, case 2). Only the outermost leave releases:
     * an inner one must not order the enclosing section's reads, which
     * go on, before frees. */
    if (active == 0)
        PC_TSAN_RELEASE(&t->dom->tsan_grace);
    __atomic_store_n(&t->rec.active, active, __ATOMIC_RELEASE);
}

#endif
