/*
 * epoch: safe memory reclamation for the read path (ck_epoch), lazy
 * per-thread registration, and batched retirement of entries.
 *
 * Domain. Every cache owns one ck_epoch domain, so a long pinned read on one
 * cache never delays reclamation on another.
 *
 * Readers. A thread gets its record (struct pc_thread) from a pthread key
 * owned by the domain: the first call on a cache registers one (recycling a
 * record an exited thread released, else allocating); later calls are one
 * pthread_getspecific. The key's destructor releases the record when the
 * thread exits, so users never call a per-thread init. In front of the key
 * sits a one-entry thread-local cache (domain id -> record; initial-exec
 * TLS, so reading it is a couple of instructions instead of a call): a
 * thread that keeps using one cache never reaches pthread_getspecific.
 * Domain ids come from a global counter and are never reused, so an entry
 * left behind by a destroyed cache can never match a new one; the key's
 * destructor clears the entry when it releases the record. A reader brackets
 * its lookup with read_enter/read_leave: a store to its own record's `active`
 * word, one full fence, and a copy of the global epoch, exactly what
 * ck_epoch_begin does on non-TSO targets. (ck's TSO variant uses an atomic
 * exchange on the record instead of the fence; the read path of this
 * library performs no atomic read-modify-write on shared memory, so it takes
 * the fence, in its cheapest form: see read_fence_store_load.) Nothing on this
 * path writes a line another thread writes.
 *
 * Writers. Records that read are never the ones that defer frees. Each writer
 * lock (a CLOCK shard, the LRU cache) owns a struct pc_reclaimer: its own
 * epoch record, never inside a read section, used only by whoever holds that
 * lock. Retired entries are chained through their writer-only link field into
 * an open batch; a poll hands the batch to ck_epoch_call (one callback for
 * many entries, so an entry needs no 16-byte ck_epoch_entry of its own) and
 * runs ck_epoch_poll, which frees batches whose grace period has passed.
 * Because frees live on the writer's record and not on a reader's, a thread
 * that exits never strands garbage, and every write polls, so garbage stays
 * bounded by the writes of the last few epochs.
 *
 * Statistics. Per-thread counters (hits, misses) live in struct pc_thread,
 * written only by the owning thread with relaxed stores (no read-modify-
 * write), and summed under the registry lock by pc_stats_get.
 */
#ifndef PC_EPOCH_H
#define PC_EPOCH_H

#include <ck_epoch.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "entry.h"
#include "tsan.h"

/* Single-writer counter bump: no atomic RMW, but a race-free relaxed store
 * that any thread may read. */
#define PC_COUNTER_INC(field)                                                  \
    __atomic_store_n(&(field),                                                 \
                     __atomic_load_n(&(field), __ATOMIC_RELAXED) + 1,          \
                     __ATOMIC_RELAXED)
#define PC_COUNTER_ADD(field, n)                                               \
    __atomic_store_n(&(field),                                                 \
                     __atomic_load_n(&(field), __ATOMIC_RELAXED) + (n),        \
                     __ATOMIC_RELAXED)
#define PC_COUNTER_READ(field) __atomic_load_n(&(field), __ATOMIC_RELAXED)

struct pc_thread_stats {
    uint64_t hits;
    uint64_t misses;
    uint64_t loader_calls;
    uint64_t loader_errors;
};

struct pc_domain;

struct pc_thread {
    ck_epoch_record_t rec; /* first: recycled records are cast back */
    struct pc_thread_stats stats;
    struct pc_domain *dom;
    struct pc_thread *next; /* registry list, under dom->lock */
    pthread_t owner;        /* the thread using it, under dom->lock */
};

struct pc_domain {
    ck_epoch_t epoch;
    uint64_t id; /* unique per domain for the process's life, never 0 */
    pthread_key_t key;
    pthread_mutex_t lock; /* registry: threads list, registration */
    struct pc_thread *threads;
    struct pc_domain *live_next, *live_prev; /* global list of live domains */
};

/* 0 on success, or PC_ENOMEM. */
int domain_init(struct pc_domain *d);
/* Release every thread record. No thread may be inside a read section, and
 * every reclaimer of the domain must have been finished first. */
void domain_fini(struct pc_domain *d);

struct pc_thread *domain_thread_slow(struct pc_domain *d);

/* The thread-local front cache of domain_thread (see the top comment). */
struct pc_thread_cache {
    uint64_t id;
    struct pc_thread *t;
};
extern __thread struct pc_thread_cache pc_tls_thread
    __attribute__((tls_model("initial-exec")));

/* This thread's record on d, registering it on first use; NULL only when
 * that registration fails for lack of memory. */
static inline struct pc_thread *domain_thread(struct pc_domain *d)
{
    if (__builtin_expect(pc_tls_thread.id == d->id, 1))
        return pc_tls_thread.t;
    return domain_thread_slow(d);
}

/*
 * The store-load fence of read_enter. Default: MFENCE on x86-64
 * (ck_pr_fence_memory), a fence and nothing else, as the read path promises
 * no atomic read-modify-write. On the AMD EPYC guests we measure on, MFENCE
 * also waits for the misses in flight: a 1-thread Zipf get costs ~120 ns
 * with it, against ~45 ns with the cheaper full barrier Linux's smp_mb()
 * uses, a locked add of zero to the thread's own stack slot. That one is a
 * locked read-modify-write instruction (on private memory: no shared line,
 * no value change), so it is opt-in: -DPURECACHE_READ_FENCE=locked-add
 * (PC_READ_FENCE_LOCKED_ADD). A fence-free read path (membarrier(2) before
 * writers' grace scans, as in liburcu's memb flavour) would be faster still
 * (23.8 Mops/s measured), but not on top of ck_epoch as it is: ck 0.7.1's
 * poll frees bucket e-2 on the strength of earlier scans, and
 * synchronize_wait advances the epoch twice per call, so a reader whose
 * `active` store is still unpublished can be missed by two advances even
 * with a membarrier before each ck call. It needs a grace-period loop of
 * our own (one advance per membarrier-preceded scan, serialised per
 * domain); until then it is not offered.
 */
static inline void read_fence_store_load(void)
{
#if defined(PC_READ_FENCE_LOCKED_ADD) && defined(__x86_64__)
    __asm__ __volatile__("lock; addl $0,-8(%%rsp)" ::: "memory", "cc");
#else
    ck_pr_fence_memory();
#endif
}

static inline void read_enter(struct pc_thread *t)
{
    ck_epoch_record_t *r = &t->rec;

    if (r->active == 0) {
        ck_pr_store_uint(&r->active, 1);
        read_fence_store_load();
        ck_pr_store_uint(&r->epoch, ck_pr_load_uint(&r->global->epoch));
    } else {
        ck_pr_store_uint(&r->active, r->active + 1);
    }
}

static inline void read_leave(struct pc_thread *t)
{
    /* TSan: the writer learns that this section ended inside ck_epoch_poll
     * or ck_epoch_synchronize (uninstrumented); pairs with the acquire
     * before every deferred free (tsan.h, case 2). */
    PC_TSAN_RELEASE(&t->dom->epoch);
    ck_pr_fence_release();
    ck_pr_store_uint(&t->rec.active, t->rec.active - 1);
}

/* Sum the per-thread counters of d into *out (adds to what *out holds). */
void domain_sum_stats(struct pc_domain *d, struct pc_thread_stats *out);

/* Writer locks spin briefly before sleeping: critical sections are a few
 * hundred nanoseconds, far shorter than a futex sleep and wake-up. */
void writer_mutex_init(pthread_mutex_t *m);

#define PC_RETIRE_BATCHES 8

struct pc_reclaimer;

struct pc_retire_batch {
    ck_epoch_entry_t ee;
    struct pc_kv *head;
    struct pc_reclaimer *owner;
    bool queued;
};

typedef void pc_kv_free_fn(struct pc_kv *kv);

/* An open batch is handed to ck_epoch once it holds this many entries or
 * bytes; ck_epoch_poll runs when a batch is queued and every
 * PC_POLL_INTERVAL writes while anything is pending. Polling on every write
 * would make every put bump the global epoch that every reader loads. */
#define PC_RETIRE_BATCH_ENTRIES 64
#define PC_RETIRE_BATCH_BYTES (1u << 20)
#define PC_POLL_INTERVAL 64

struct pc_reclaimer {
    ck_epoch_record_t rec;    /* first; cache-line aligned */
    struct pc_kv *open;       /* retired, not yet handed to ck_epoch */
    struct pc_kv *ready;      /* past their grace period, not yet freed */
    struct pc_kv *drain_open; /* set aside by pc_reclaim (epoch.c) */
    ck_stack_entry_t *drain_pending[CK_EPOCH_LENGTH];
    size_t n_open, open_bytes;
    unsigned int writes;
    pc_kv_free_fn *free_kv;
    void *grace; /* the domain's epoch: TSan grace-period sync object */
    struct pc_retire_batch batch[PC_RETIRE_BATCHES];
};

/* Allocate and register a reclaimer in d; NULL on allocation failure. */
struct pc_reclaimer *reclaimer_create(struct pc_domain *d,
                                      pc_kv_free_fn *free_kv);
/* Free everything still retired, without waiting (no reader may be active),
 * then the reclaimer itself. NULL is a no-op. */
void reclaimer_destroy(struct pc_reclaimer *r);

/* Writer (lock held): the entry is unreachable for new readers; free it once
 * every current reader has left. */
static inline void reclaimer_retire(struct pc_reclaimer *r, struct pc_kv *kv)
{
    r->n_open++;
    r->open_bytes += sizeof *kv + kv->klen + kv->vlen;
    kv->w.retire_next = r->open;
    r->open = kv;
}

/* Writer (lock held), after every write: queue the open batch when it is
 * full, and detach what is safe to free (see PC_RETIRE_BATCH_ENTRIES). The
 * caller frees the returned chain with reclaimer_free after it has released
 * its lock, keeping the free()s out of the critical section. */
struct pc_kv *reclaimer_poll(struct pc_reclaimer *r);
/* Free a chain returned by reclaimer_poll. Any thread, no lock needed. */
void reclaimer_free(struct pc_reclaimer *r, struct pc_kv *chain);
/* pc_reclaim's three steps (see epoch.c): detach with the writer lock held,
 * wait with no lock held, finish with the lock held again; free the chain
 * finish returns after unlocking. One pc_reclaim at a time per cache. */
void reclaimer_drain_detach(struct pc_reclaimer *r);
void reclaimer_drain_wait(struct pc_domain *d);
struct pc_kv *reclaimer_drain_finish(struct pc_reclaimer *r);

#endif
