/*
 * retire: batched retirement of removed entries, per writer lock.
 *
 * Records that read are never the ones that defer frees. Each writer lock
 * (a CLOCK shard, the LRU cache; core.h's struct pc__writer) owns a struct
 * pc__reclaimer: its own epoch record, never inside a read section, used
 * only by whoever holds that lock.
 *
 * Batches. A retired entry is recorded as (allocation, size) in the open
 * batch, a dense array, while the entry is still hot in the writer's cache.
 * A full batch (or one holding a megabyte) is deferred as one callback on
 * the record's ck_epoch bucket for the current epoch (so an entry needs no
 * 16-byte ck_epoch_entry of its own); once the grace period has passed
 * (grace.h: deferred at b, safe at b + 2) a poll hands the batch to the
 * writer, which frees its entries after unlocking, reading only the batch:
 * freeing never touches the cold entries themselves, and the allocator's
 * sized free needs no lookup. Batches are allocated as needed and reused:
 * a batch emptied under the lock goes on the writer's spare list, one
 * emptied by a free after unlocking (any thread) is pushed on the
 * reclaimer's `returned` stack (a release compare-and-swap), which the
 * writer takes whole (an acquire exchange) when its spares run out. Past
 * PC__SPARE_BATCHES free batches per reclaimer, an emptied one is freed
 * instead, so a burst of removals (a pc_clear, a lowered limit) leaves
 * no batches behind: taking a free batch is O(1), where a search of
 * every batch ever allocated made a removal of n entries under one lock
 * O((n / 128)^2) (an exact-LRU pc_clear of 4M entries: 5.2 s), and the
 * batches of a burst stayed allocated until pc_reclaim (20 MB after a
 * clear of 1M entries). If no batch can be allocated the entry is
 * spilled instead onto a chain linked through its own writer-only link
 * word, deferred the same way by one embedded carrier: retirement never
 * fails.
 *
 * Buckets never mix epochs: a bucket still holding callbacks from four
 * epochs ago (long safe) is set aside first, so every bucket runs as soon
 * as its own epoch allows, whatever epochs this writer happens to observe.
 * Because frees live on the writer's record and not on a reader's, a
 * thread that exits never strands garbage. Writes poll, so under a write
 * load garbage stays bounded by the writes of the last few epochs plus
 * what may wait to be freed (below); a shard that stops being written
 * keeps its last batches, and what waits, until later writes, pc_reclaim
 * or pc_destroy.
 *
 * Paced frees. Grace periods end for many batches at once (a paced step,
 * grace.c, comes about once a millisecond, and frees every shard's batches
 * of the epochs before), so handing a writer every batch that is safe would
 * make it free hundreds of entries after one put: such bursts were most of
 * CLOCK's slowest thousandth of operations. A poll hands over at most
 * `quota` (2) entries, copied out of their batch, which is free again once
 * all its entries are out: so the writes that follow a step share the
 * work, and a put or a delete, which retires one entry, frees up to two.
 * What waits is bounded: past `ready_max` (2048) entries or
 * PC__READY_MAX_BYTES (1 MiB) of them, whole batches go at once, as they
 * all did before (after a pc_clear, a shrink, or a put that evicted many,
 * and with large values). At 512, a busy shard went past it at every grace
 * period (a shard of a cache of 8 shards evicting 9 million keys a second
 * has about 1,100 entries made safe by each 1 ms step), and a put freed a
 * whole batch, 128 entries, every thousand or so puts: that was CLOCK's
 * single-thread p99.9 (uniform keys, 1 thread: cache-aside 2.4-2.9 us ->
 * 0.57-0.62, puts 1.2-1.6 -> 0.55-0.72, Zipf puts 1.0-1.5 -> 0.61-0.66;
 * frequency's likewise to 0.62-0.74; throughput unchanged, A/B in one
 * process twice; RSS after pc_reclaim unchanged). A cache's
 * garbage is bounded by its writes of the last few grace periods anyway
 * (above): what may wait here adds at most 2048 entries, or 1 MiB, per
 * writer lock. A reclaimer created with quota 0 hands over
 * whole batches (the LRU cache: every handover costs it a log catch-up).
 *
 * pc_reclaim drains in three steps, so that no writer lock is held while
 * waiting for readers (a pinned reader may itself be about to take that
 * lock): detach (lock held) defers the open batch and sets aside every
 * queued callback (batches, the spill carrier, deferred index tables) and
 * the open spill chain; a grace period on the whole domain (no lock);
 * finish (lock held again) runs the set-aside callbacks, which only touch
 * reclaimer state, and returns everything now safe to free. Callbacks
 * queued after the detach stay on the record for normal polling: they were
 * not covered by that grace period. Callers serialise whole pc_reclaim
 * calls (the set-aside state is per reclaimer).
 *
 * Concurrency: every function here runs with the owning writer lock held,
 * except pc__reclaimer_after_unlock and pc__reclaimer_free (after it is
 * released) and pc__reclaimer_pending (any thread). A batch handed out by a
 * poll belongs to the thread freeing it until that thread pushes it on the
 * reclaimer's `returned` stack (or frees it): the push's release pairs with
 * the exchange (acquire) by which the writer takes the stack.
 */
#ifndef PC_RETIRE_H
#define PC_RETIRE_H

#include <ck_epoch.h>
#include <stdbool.h>

#include "domain.h"
#include "entry.h"

struct pc__pin_table;

#define PC__RETIRE_BATCH_ITEMS 128
#define PC__RETIRE_BATCH_BYTES (1u << 20)
/* A grace-period step is requested when a batch is deferred, and every
 * PC__POLL_INTERVAL writes while anything is pending. Stepping on every
 * write would make every put bump the global epoch that every reader
 * loads. */
#define PC__POLL_INTERVAL 64
/* Paced frees (above): entries a poll hands over, and what may wait. */
#define PC__FREE_QUOTA 2
#define PC__READY_MAX (16 * PC__RETIRE_BATCH_ITEMS)
#define PC__READY_MAX_BYTES (1u << 20)

struct pc__reclaimer;

struct pc__retired {
    void *p;     /* the allocation */
    size_t size; /* its size, as allocated */
};

/* Free batches a reclaimer keeps for reuse (about 2.5 KB each). */
#define PC__SPARE_BATCHES 16

struct pc__retire_batch {
    ck_epoch_entry_t ee;
    struct pc__reclaimer *owner;
    struct pc__retire_batch *next;  /* next on a free list */
    struct pc__retire_batch *ready; /* next on a list handed to free */
    uint32_t n;
    uint32_t done; /* item[0..done) already handed over (paced frees) */
    size_t bytes;
    struct pc__retired item[PC__RETIRE_BATCH_ITEMS];
};

/* Spilled entries (no batch could be had), deferred by one carrier. */
struct pc__spill_carrier {
    ck_epoch_entry_t ee;
    struct pc__reclaimer *owner;
    struct pc__kv *head, *tail;
    bool queued;
};

/* What a drain (or a poll) hands over to be freed after unlocking. */
struct pc__garbage {
    struct pc__retire_batch *batches; /* linked through ->ready; each from
                                         its item[done] */
    struct pc__kv *spilled;           /* linked through w.retire_next */
};

/* What a poll hands over: up to a quota of entries, and whole batches only
 * past ready_max (see "Paced frees"). */
struct pc__handover {
    struct pc__garbage g;
    uint32_t n;
    struct pc__retired item[PC__FREE_QUOTA];
};

struct pc__reclaimer {
    ck_epoch_record_t rec;             /* first; cache-line aligned */
    struct pc__retire_batch *open;     /* being filled, or NULL */
    struct pc__retire_batch *spare;    /* free batches (writer lock) */
    struct pc__retire_batch *returned; /* free batches (atomic stack) */
    size_t nfree;                /* batches on spare and returned (atomic) */
    struct pc__garbage ready;    /* past their grace period */
    size_t ready_n, ready_bytes; /* left in ready.batches */
    uint32_t quota, ready_max;   /* paced frees; immutable */
    size_t ready_max_bytes;      /* same */
    struct pc__kv *spill, *spill_tail; /* spilled, not yet deferred */
    struct pc__spill_carrier carrier;
    unsigned int writes;
    /* Retired (writer lock; counted when a batch is deferred, or an entry
     * spilled), handed over a quota at a time (writer lock) and freed
     * otherwise (atomic adds, by whoever frees) entries and bytes, for
     * pc_stats's pending garbage. */
    uint64_t retired_n, retired_bytes, handed_n, handed_bytes;
    uint64_t freed_n, freed_bytes;
    struct pc__domain *dom;     /* immutable */
    struct pc__pin_table *pins; /* immutable; asked before every free */
    /* Every callback in rec.pending[i] was deferred at epoch
     * bucket_epoch[i]: a bucket never mixes epochs. */
    unsigned int bucket_epoch[CK_EPOCH_LENGTH];
    ck_stack_t safe;         /* past their grace period, not yet run */
    unsigned int dispatched; /* epoch of the last dispatch */
    /* pc_reclaim's set-aside state. */
    ck_stack_entry_t *drain_pending[CK_EPOCH_LENGTH];
    struct pc__kv *drain_spill, *drain_spill_tail;
};

/* Allocate and register a reclaimer in d for entries (each its own
 * allocation of pc__kv_alloc_size bytes); an entry that pins holds
 * when its grace period ends is handed to them instead of freed (pin.h).
 * paced: polls hand over PC__FREE_QUOTA entries at a time (see "Paced
 * frees"), else whole batches. NULL on ENOMEM. */
struct pc__reclaimer *pc__reclaimer_create(struct pc__domain *d,
                                           struct pc__pin_table *pins,
                                           bool paced);
/* Free everything still retired, without waiting (no reader may be active),
 * then the reclaimer itself. NULL is a no-op. */
void pc__reclaimer_destroy(struct pc__reclaimer *r);

__attribute__((noinline, cold)) void
pc__reclaimer_retire_slow(struct pc__reclaimer *r, struct pc__kv *kv);

/* The entry is unreachable for new readers; free it once every current
 * reader has left. Never fails. */
static inline __attribute__((always_inline)) void
pc__reclaimer_retire(struct pc__reclaimer *r, struct pc__kv *kv)
{
    struct pc__retire_batch *b = r->open;
    size_t size;

    if (__builtin_expect(b == NULL || b->n == PC__RETIRE_BATCH_ITEMS, 0)) {
        pc__reclaimer_retire_slow(r, kv);
        return;
    }
    size = pc__kv_alloc_size(kv);
    b->item[b->n].p = kv;
    b->item[b->n].size = size;
    b->bytes += size;
    b->n++;
}

/* Run fn(e) once every reader that is now inside a section has left. The
 * caller's unlinks must be visible first: on x86 a store may still sit in
 * the store buffer while the epoch load completes, and a too-early epoch
 * would free one grace period early, so this fences (once per batch or
 * table swap, not per entry). ck_epoch_call, but with an atomic load that
 * TSan can see. */
void pc__reclaimer_defer(struct pc__reclaimer *r, ck_epoch_entry_t *e,
                         ck_epoch_cb_t *fn);

/* After every write: defer the open batch when it is full, and hand over
 * (into *h) what is safe to free, paced. Sets *step when a grace-period
 * step is due. Returns whether *h holds anything. After releasing its lock
 * the caller passes both to pc__reclaimer_after_unlock, keeping the frees
 * and the step (a heavy barrier, perhaps) out of the critical section. */
bool pc__reclaimer_poll(struct pc__reclaimer *r, struct pc__handover *h,
                        bool *step);
void pc__reclaimer_after_unlock(struct pc__reclaimer *r,
                                const struct pc__handover *h, bool step);
/* Free garbage handed over by a drain (or a poll's whole batches). Any
 * thread, no lock. */
__attribute__((noinline)) void pc__reclaimer_free(struct pc__reclaimer *r,
                                                  struct pc__garbage g);

/* pc_reclaim's steps (see the top comment): detach with the writer lock
 * held, wait with no lock held (pc__grace_wait), then finish with the lock
 * held again and free what it returns after unlocking; or, if the wait
 * failed, abort (lock held) to put the set-aside garbage back. */
void pc__reclaimer_drain_detach(struct pc__reclaimer *r);
struct pc__garbage pc__reclaimer_drain_finish(struct pc__reclaimer *r);
void pc__reclaimer_drain_abort(struct pc__reclaimer *r);
/* Add the entries and bytes retired but not yet freed to *n and *bytes
 * (any thread; a snapshot). */
void pc__reclaimer_pending(const struct pc__reclaimer *r, uint64_t *n,
                           uint64_t *bytes);

/* Free every idle batch (lock held): after a drain, the batches grown for
 * a burst of writes go back to the allocator. */
void pc__reclaimer_trim(struct pc__reclaimer *r);

#endif
