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
 * word, a copy of the global epoch, and a store-load barrier, what
 * ck_epoch_begin does on non-TSO targets (with the barrier moved after the
 * epoch copy). (ck's TSO variant uses an atomic
 * exchange on the record instead; the read path of this library performs no
 * atomic read-modify-write, and by default no fence either: the barrier is
 * made asymmetric, with the writers' grace-period scans paying for it with
 * membarrier(2); see read_fence_store_load.) Nothing on this path writes a
 * line another thread writes.
 *
 * Writers. Records that read are never the ones that defer frees. Each writer
 * lock (a CLOCK shard, the LRU cache) owns a struct pc_reclaimer: its own
 * epoch record, never inside a read section, used only by whoever holds that
 * lock. Retired entries are chained through their writer-only link field into
 * an open batch; a poll defers the batch on the record's ck_epoch bucket for
 * the current epoch (one callback for many entries, so an entry needs no
 * 16-byte ck_epoch_entry of its own) and frees batches whose grace period
 * has passed. Grace periods are detected by epoch.c's own scan and advance
 * (domain_advance; why not ck_epoch_poll is explained there), which writers
 * run after releasing their lock. Because frees live on the writer's record
 * and not on a reader's, a thread that exits never strands garbage. Writes
 * poll, so under a write load garbage stays bounded by the writes of the
 * last few epochs (a few milliseconds' worth); a cache that stops writing
 * keeps its last batches until its next write, pc_reclaim or pc_destroy.
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
    pthread_mutex_t lock;    /* registry: threads list, registration */
    pthread_mutex_t gp_lock; /* serialises epoch advances (epoch.c) */
    bool tick_wanted;        /* a writer asked for a paced step */
    bool tick_held;          /* tick_all holds gp_lock (under live_lock) */
    unsigned int tick_epoch; /* the epoch tick_all read, gp_lock held */
    /* TSan's grace-period sync object (tsan.h, case 2). Not the epoch word:
     * TSan treats a release store to an atomic as overwriting that
     * address's sync clock, which would drop the readers' releases. */
    char tsan_grace;
    struct pc_thread *threads;
    struct pc_domain *live_next, *live_prev; /* global list of live domains */
    bool unlinked;                           /* off that list (under it) */
};

/* 0 on success, or PC_ENOMEM. */
int domain_init(struct pc_domain *d);
/* Take d off the process's list of live domains (idempotent): after this no
 * other thread's paced step (tick_all) or thread exit looks at it. Call it
 * before freeing anything registered in d, its reclaimers in particular. */
void domain_unlink(struct pc_domain *d);
/* Unlink d if still linked, then release every thread record. No thread may
 * be inside a read section, and every reclaimer of the domain must have been
 * finished first. */
void domain_fini(struct pc_domain *d);

struct pc_thread *domain_thread_slow(struct pc_domain *d);

/* One grace-period step on d (epoch.c): if no other thread is stepping, and
 * unless `paced` asks to skip a step too soon after the last one, scan the
 * records and advance the global epoch by one if every active reader has
 * observed it. Never waits for readers. True if this call advanced. */
bool domain_advance(struct pc_domain *d, bool paced);
/* Wait until every read section that was active on d when the call began
 * has ended. Must not be called inside a read section on d. Blocking.
 * False, without waiting for ever, only when no heavy barrier can be had
 * (epoch.c, "Failure"): nothing may then be freed. */
bool domain_synchronize(struct pc_domain *d);

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
 * The store-load fence of read_enter: a reader's store to `active` must be
 * visible to a writer's grace-period scan before the reader loads anything
 * it might use. Three ways to get that, chosen at build time
 * (PURECACHE_READ_FENCE):
 *
 *  - membarrier (default on Linux x86-64): no fence instruction on the read
 *    path at all, only a compiler barrier. The writer side pays instead:
 *    every grace-period scan (domain_advance, epoch.c) is preceded by
 *    membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED), which makes every CPU
 *    running one of our threads execute a full barrier, draining a
 *    reader's buffered `active` store before the scan reads it (liburcu's
 *    "memb" flavour; the argument is in epoch.c). If the kernel refuses to
 *    register (old kernel, seccomp), the process falls back, once and for
 *    all, before its first cache exists, to the MFENCE below: pc_asym_fence
 *    says which.
 *  - mfence: ck_pr_fence_memory, a fence and nothing else. On the AMD EPYC
 *    guests we measure on, MFENCE also waits for the misses in flight: a
 *    1-thread Zipf get costs ~120 ns with it.
 *  - locked-add: the full barrier Linux's smp_mb() uses, a locked add of
 *    zero to the thread's own stack slot (~45 ns). A locked read-modify-write
 *    instruction, though on private memory, so opt-in.
 */
#if defined(PC_READ_FENCE_MEMBARRIER) && defined(__linux__) &&                 \
    defined(__x86_64__)
#define PC_ASYM_FENCE 1
/* Set once, before the first domain exists (domain_init), never changed. */
extern bool pc_asym_fence;
#endif

static inline void read_fence_store_load(void)
{
#if defined(PC_ASYM_FENCE)
    /* x86-64 keeps loads in order and stores in order; only store->load
     * needs the writer's membarrier, so a compiler barrier suffices. */
    if (__builtin_expect(pc_asym_fence, 1))
        ck_pr_barrier();
    else
        ck_pr_fence_memory();
#elif defined(PC_READ_FENCE_LOCKED_ADD) && defined(__x86_64__)
    __asm__ __volatile__("lock; addl $0,-8(%%rsp)" ::: "memory", "cc");
#else
    ck_pr_fence_memory();
#endif
}

/* The record's words are accessed with relaxed atomics (plain moves on
 * x86-64): the grace-period scan (epoch.c) reads them from another thread,
 * and TSan must see atomics on both sides. Only the owner writes them. */
static inline void read_enter(struct pc_thread *t)
{
    ck_epoch_record_t *r = &t->rec;

    if (r->active == 0) {
        __atomic_store_n(&r->active, 1, __ATOMIC_RELAXED);
        __atomic_store_n(&r->epoch,
                         __atomic_load_n(&r->global->epoch, __ATOMIC_ACQUIRE),
                         __ATOMIC_RELAXED);
        /* Both stores before every load of the section (the barrier is
         * also a compiler barrier). Fencing after the epoch store, not
         * between the two stores as ck_epoch_begin does, means a scan that
         * sees `active` set while `epoch` is still an old value is looking
         * at a reader that has loaded nothing yet (epoch.c relies on it). */
        read_fence_store_load();
    } else {
        __atomic_store_n(&r->active, r->active + 1, __ATOMIC_RELAXED);
    }
}

static inline void read_leave(struct pc_thread *t)
{
    unsigned int active = t->rec.active - 1;

    /* TSan: the writer learns that this section ended from a relaxed load
     * in its grace-period scan; pairs with the acquire before every
     * deferred free (tsan.h, case 2). Only the outermost leave releases:
     * an inner one must not order a pinned section's reads before frees. */
    if (active == 0)
        PC_TSAN_RELEASE(&t->dom->tsan_grace);
    __atomic_store_n(&t->rec.active, active, __ATOMIC_RELEASE);
}

/* Test hook: whether reads elide their store-load fence (membarrier mode
 * with kernel support). refuse = true, called before the process's first
 * cache, makes the process behave as if the kernel had refused. */
bool pc__read_fence_elided(bool refuse);
/* pc_read_fence's answer (purecache.h). */
const char *read_fence_name(void);

/* Sum the per-thread counters of d into *out (adds to what *out holds). */
void domain_sum_stats(struct pc_domain *d, struct pc_thread_stats *out);

/* Writer locks spin briefly before sleeping: critical sections are a few
 * hundred nanoseconds, far shorter than a futex sleep and wake-up. */
void writer_mutex_init(pthread_mutex_t *m);

#define PC_RETIRE_BATCHES 8

struct pc_reclaimer;

struct pc_retire_batch {
    ck_epoch_entry_t ee;
    struct pc_kv *head, *tail; /* tail: spliced onto `ready` in O(1) */
    struct pc_reclaimer *owner;
    bool queued;
};

typedef void pc_kv_free_fn(struct pc_kv *kv);

/* An open batch is deferred once it holds this many entries or bytes; a
 * grace-period step (domain_advance) is requested when a batch is deferred
 * and every PC_POLL_INTERVAL writes while anything is pending. Advancing on
 * every write would make every put bump the global epoch that every reader
 * loads (and, in membarrier mode, steps are paced further; epoch.c). */
#define PC_RETIRE_BATCH_ENTRIES 64
#define PC_RETIRE_BATCH_BYTES (1u << 20)
#define PC_POLL_INTERVAL 64

struct pc_reclaimer {
    ck_epoch_record_t rec;    /* first; cache-line aligned */
    struct pc_kv *open;       /* retired, not yet handed to ck_epoch */
    struct pc_kv *open_tail;  /* its first-retired entry (valid if open) */
    struct pc_kv *ready;      /* past their grace period, not yet freed */
    struct pc_kv *drain_open; /* set aside by pc_reclaim (epoch.c) */
    struct pc_kv *drain_tail; /* its last entry (valid if drain_open) */
    ck_stack_entry_t *drain_pending[CK_EPOCH_LENGTH];
    size_t n_open, open_bytes;
    unsigned int writes;
    pc_kv_free_fn *free_kv;
    struct pc_domain *dom; /* immutable */
    /* Every callback in rec.pending[i] was deferred at epoch
     * bucket_epoch[i]: a bucket never mixes epochs (see reclaimer_defer). */
    unsigned int bucket_epoch[CK_EPOCH_LENGTH];
    ck_stack_t safe;         /* past their grace period, not yet run */
    unsigned int dispatched; /* epoch of the last reclaimer_dispatch */
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
    if (r->open == NULL)
        r->open_tail = kv;
    kv->w.retire_next = r->open;
    r->open = kv;
}

/* Writer (lock held): run fn(entry) once every reader that is now inside a
 * section has left. The caller's unlinks must be visible first: on x86 a
 * store may still sit in the store buffer while the epoch load below
 * completes, and a too-early epoch would free one grace period early, so
 * this fences (once per batch or table swap, not per entry). ck_epoch_call,
 * but with an atomic load that TSan can see (epoch.c advances with atomic
 * stores). */
void reclaimer_bucket_reuse(struct pc_reclaimer *r, unsigned int i);

static inline void reclaimer_defer(struct pc_reclaimer *r, ck_epoch_entry_t *e,
                                   ck_epoch_cb_t *fn)
{
    unsigned int epoch, i;

    ck_pr_fence_memory();
    epoch = __atomic_load_n(&r->dom->epoch.epoch, __ATOMIC_ACQUIRE);
    i = epoch & (CK_EPOCH_LENGTH - 1);
    /* The bucket still holds callbacks from epoch - 4k (k >= 1), long past
     * their grace period: move them out rather than mix epochs. */
    if (__builtin_expect(!CK_STACK_ISEMPTY(&r->rec.pending[i]) &&
                             r->bucket_epoch[i] != epoch,
                         0))
        reclaimer_bucket_reuse(r, i);
    r->bucket_epoch[i] = epoch;
    r->rec.n_pending++;
    e->function = fn;
    ck_stack_push_spnc(&r->rec.pending[i], &e->stack_entry);
}

/* Writer (lock held), after every write: queue the open batch when it is
 * full, and detach what is safe to free (see PC_RETIRE_BATCH_ENTRIES). Sets
 * *advance when a grace-period step is due. After releasing its lock the
 * caller passes both to reclaimer_after_unlock, keeping the free()s and the
 * step (a membarrier, in the default build) out of the critical section. */
struct pc_kv *reclaimer_poll(struct pc_reclaimer *r, bool *advance);
void reclaimer_after_unlock(struct pc_reclaimer *r, struct pc_kv *chain,
                            bool advance);
/* Free a chain of retired entries. Any thread, no lock needed. */
void reclaimer_free(struct pc_reclaimer *r, struct pc_kv *chain);
/* pc_reclaim's three steps (see epoch.c): detach with the writer lock held,
 * wait with no lock held, finish with the lock held again; free the chain
 * finish returns after unlocking. One pc_reclaim at a time per cache. */
void reclaimer_drain_detach(struct pc_reclaimer *r);
bool reclaimer_drain_wait(struct pc_domain *d);
/* Instead of drain_finish, when drain_wait failed (lock held): put the
 * set-aside garbage back, to be freed by later grace periods. */
void reclaimer_drain_abort(struct pc_reclaimer *r);
struct pc_kv *reclaimer_drain_finish(struct pc_reclaimer *r);

#endif
