/*
 * retire: batched retirement of removed entries, per writer lock.
 *
 * Records that read are never the ones that defer frees. Each writer lock
 * (a CLOCK shard, the LRU cache; core.h's struct pc__writer) owns a struct
 * pc__reclaimer: its own epoch record, never inside a read section, used
 * only by whoever holds that lock. Retired entries are chained through
 * their writer-only link field into an open batch; a poll defers the batch
 * on the record's ck_epoch bucket for the current epoch (one callback for
 * many entries, so an entry needs no 16-byte ck_epoch_entry of its own) and
 * runs the buckets whose grace period has passed (grace.h: deferred at b,
 * safe at b + 2), which move their entries to a ready chain the writer frees
 * after unlocking. A bucket never mixes epochs: a bucket still holding
 * callbacks from four epochs ago (long safe) is moved aside first, so every
 * bucket runs as soon as its own epoch allows, whatever epochs this writer
 * happens to observe. Because frees live on the writer's record and not on
 * a reader's, a thread that exits never strands garbage. Writes poll, so
 * under a write load garbage stays bounded by the writes of the last few
 * epochs; a cache that stops writing keeps its last batches until its next
 * write, pc_reclaim or pc_destroy.
 *
 * pc_reclaim drains in three steps, so that no writer lock is held while
 * waiting for readers (a pinned reader may itself be about to take that
 * lock): detach (lock held) sets aside everything retired so far, the open
 * list and every queued callback (retired batches, deferred index tables);
 * a grace period on the whole domain (no lock); finish (lock held again)
 * runs the set-aside callbacks, which only touch reclaimer state, and hands
 * back every entry now safe to free. Callbacks queued after the detach stay
 * on the record for normal polling: they were not covered by that grace
 * period. Callers serialise whole pc_reclaim calls (the set-aside state is
 * per reclaimer).
 *
 * Concurrency: every function here except pc__reclaimer_free and
 * pc__reclaimer_after_unlock runs with the owning writer lock held.
 */
#ifndef PC_RETIRE_H
#define PC_RETIRE_H

#include <ck_epoch.h>
#include <stdbool.h>

#include "domain.h"
#include "entry.h"

#define PC__RETIRE_BATCHES 8
/* An open batch is deferred once it holds this many entries or bytes; a
 * grace-period step is requested when a batch is deferred and every
 * PC__POLL_INTERVAL writes while anything is pending. Stepping on every
 * write would make every put bump the global epoch that every reader
 * loads. */
#define PC__RETIRE_BATCH_ENTRIES 64
#define PC__RETIRE_BATCH_BYTES (1u << 20)
#define PC__POLL_INTERVAL 64

struct pc__reclaimer;

struct pc__retire_batch {
    ck_epoch_entry_t ee;
    struct pc__kv *head, *tail; /* tail: spliced onto `ready` in O(1) */
    struct pc__reclaimer *owner;
    bool queued;
};

/* How the owner frees one of its entries (it knows the allocation size). */
typedef void pc__kv_free_fn(struct pc__kv *kv);

struct pc__reclaimer {
    ck_epoch_record_t rec;     /* first; cache-line aligned */
    struct pc__kv *open;       /* retired, not yet handed to ck_epoch */
    struct pc__kv *open_tail;  /* its first-retired entry (valid if open) */
    struct pc__kv *ready;      /* past their grace period, not yet freed */
    struct pc__kv *drain_open; /* set aside by pc_reclaim */
    struct pc__kv *drain_tail; /* its last entry (valid if drain_open) */
    ck_stack_entry_t *drain_pending[CK_EPOCH_LENGTH];
    size_t n_open, open_bytes;
    unsigned int writes;
    pc__kv_free_fn *free_kv;
    struct pc__domain *dom; /* immutable */
    /* Every callback in rec.pending[i] was deferred at epoch
     * bucket_epoch[i]: a bucket never mixes epochs. */
    unsigned int bucket_epoch[CK_EPOCH_LENGTH];
    ck_stack_t safe;         /* past their grace period, not yet run */
    unsigned int dispatched; /* epoch of the last dispatch */
    struct pc__retire_batch batch[PC__RETIRE_BATCHES];
};

/* Allocate and register a reclaimer in d; NULL on allocation failure. */
struct pc__reclaimer *pc__reclaimer_create(struct pc__domain *d,
                                           pc__kv_free_fn *free_kv);
/* Free everything still retired, without waiting (no reader may be active),
 * then the reclaimer itself. NULL is a no-op. */
void pc__reclaimer_destroy(struct pc__reclaimer *r);

/* The entry is unreachable for new readers; free it once every current
 * reader has left. */
static inline void pc__reclaimer_retire(struct pc__reclaimer *r,
                                        struct pc__kv *kv)
{
    r->n_open++;
    r->open_bytes += sizeof *kv + kv->klen + kv->vlen;
    if (r->open == NULL)
        r->open_tail = kv;
    kv->w.retire_next = r->open;
    r->open = kv;
}

/* Run fn(e) once every reader that is now inside a section has left. The
 * caller's unlinks must be visible first: on x86 a store may still sit in
 * the store buffer while the epoch load completes, and a too-early epoch
 * would free one grace period early, so this fences (once per batch or
 * table swap, not per entry). ck_epoch_call, but with an atomic load that
 * TSan can see. */
void pc__reclaimer_defer(struct pc__reclaimer *r, ck_epoch_entry_t *e,
                         ck_epoch_cb_t *fn);

/* After every write: queue the open batch when it is full, and detach what
 * is safe to free. Sets *step when a grace-period step is due. After
 * releasing its lock the caller passes both to pc__reclaimer_after_unlock,
 * keeping the frees and the step (a heavy barrier, perhaps) out of the
 * critical section. */
struct pc__kv *pc__reclaimer_poll(struct pc__reclaimer *r, bool *step);
void pc__reclaimer_after_unlock(struct pc__reclaimer *r, struct pc__kv *chain,
                                bool step);
/* Free a chain of retired entries. Any thread, no lock needed. */
void pc__reclaimer_free(struct pc__reclaimer *r, struct pc__kv *chain);

/* pc_reclaim's steps (see the top comment): detach with the writer lock
 * held, wait with no lock held (pc__grace_wait), then finish with the lock
 * held again and free the returned chain after unlocking; or, if the wait
 * failed, abort (lock held) to put the set-aside garbage back. */
void pc__reclaimer_drain_detach(struct pc__reclaimer *r);
struct pc__kv *pc__reclaimer_drain_finish(struct pc__reclaimer *r);
void pc__reclaimer_drain_abort(struct pc__reclaimer *r);

#endif
