/*
 * retire: batched retirement and the pc_reclaim drain; the design is atop
 * retire.h, the grace-period rule in grace.c.
 */
#include "retire.h"

#include <string.h>

#include "alloc.h"
#include "grace.h"
#include "pin.h"

/* ---- callbacks and buckets ---- */

static ck_epoch_entry_t *entry_of(ck_stack_entry_t *cursor)
{
    return PC__CONTAINER_OF(cursor, ck_epoch_entry_t, stack_entry);
}

/* Run the callbacks of one chain. */
static void run_chain(struct pc__reclaimer *r, ck_stack_entry_t *cursor)
{
    ck_stack_entry_t *next;

    /* TSan: every callback here is past its grace period (tsan.h, 2); old
     * index tables have no acquire of their own (the batch and carrier
     * callbacks do, for ck_epoch_reclaim at destruction). */
    if (cursor != NULL)
        PC_TSAN_ACQUIRE(&r->dom->tsan_grace);
    for (; cursor != NULL; cursor = next) {
        next = CK_STACK_NEXT(cursor);
        entry_of(cursor)->function(entry_of(cursor));
        r->rec.n_pending--;
    }
}

static void run_stack(struct pc__reclaimer *r, ck_stack_t *s)
{
    ck_stack_entry_t *head = CK_STACK_FIRST(s);

    ck_stack_init(s);
    run_chain(r, head);
}

/* Bucket i holds callbacks from an epoch at least four behind: all safe.
 * Move them to `safe` so the bucket can take the current epoch's. */
static void bucket_set_aside(struct pc__reclaimer *r, unsigned int i)
{
    ck_stack_entry_t *cursor = CK_STACK_FIRST(&r->rec.pending[i]), *next;

    ck_stack_init(&r->rec.pending[i]);
    for (; cursor != NULL; cursor = next) {
        next = CK_STACK_NEXT(cursor);
        ck_stack_push_spnc(&r->safe, cursor);
    }
}

void pc__reclaimer_defer(struct pc__reclaimer *r, ck_epoch_entry_t *e,
                         ck_epoch_cb_t *fn)
{
    unsigned int epoch, i;

    ck_pr_fence_memory();
    epoch = __atomic_load_n(&r->dom->epoch.epoch, __ATOMIC_ACQUIRE);
    i = epoch & (CK_EPOCH_LENGTH - 1);
    if (__builtin_expect(!CK_STACK_ISEMPTY(&r->rec.pending[i]) &&
                             r->bucket_epoch[i] != epoch,
                         0))
        bucket_set_aside(r, i);
    PC__ASSERT(CK_STACK_ISEMPTY(&r->rec.pending[i]) ||
               r->bucket_epoch[i] == epoch);
    r->bucket_epoch[i] = epoch;
    r->rec.n_pending++;
    e->function = fn;
    ck_stack_push_spnc(&r->rec.pending[i], &e->stack_entry);
}

/* Run every callback past its grace period: those set aside, and every
 * bucket deferred at least two epochs ago (grace.h). */
static void dispatch(struct pc__reclaimer *r)
{
    unsigned int e = __atomic_load_n(&r->dom->epoch.epoch, __ATOMIC_ACQUIRE);

    /* A bucket becomes due only when the epoch moves, so a poll at the
     * same epoch as the last one has nothing to do unless defer set
     * something aside. */
    if (e == r->dispatched && CK_STACK_ISEMPTY(&r->safe))
        return;
    r->dispatched = e;
    run_stack(r, &r->safe);
    for (unsigned int i = 0; i < CK_EPOCH_LENGTH; i++) {
        if (!CK_STACK_ISEMPTY(&r->rec.pending[i]) &&
            e - r->bucket_epoch[i] >= 2u) /* e only grows: wrap-safe */
            run_stack(r, &r->rec.pending[i]);
    }
}

/* ---- batches and the spill chain ---- */

static void spill_append(struct pc__kv **head, struct pc__kv **tail,
                         struct pc__kv *chain, struct pc__kv *chain_tail)
{
    if (chain == NULL)
        return;
    if (*head == NULL)
        *head = chain;
    else
        pc__kv_set_link(*tail, chain); /* (entry.h: atomic) */
    *tail = chain_tail;
}

static struct pc__kv *chain_tail(struct pc__kv *kv)
{
    while (kv != NULL && kv->w.retire_next != NULL)
        kv = kv->w.retire_next;
    return kv;
}

/* A batch's grace period is over (run by dispatch, a drain, or
 * ck_epoch_reclaim at destruction): hand it to the next poll. */
static void batch_dispatch(ck_epoch_entry_t *ee)
{
    struct pc__retire_batch *b =
        PC__CONTAINER_OF(ee, struct pc__retire_batch, ee);
    struct pc__reclaimer *r = b->owner;

    /* TSan: the scans that advanced the epoch saw every reader that could
     * hold these entries leave, through relaxed loads; pairs with
     * pc__read_leave's release (tsan.h, 2). */
    PC_TSAN_ACQUIRE(&r->dom->tsan_grace);
    b->ready = r->ready.batches;
    r->ready.batches = b;
    r->ready_n += b->n; /* (done is 0: never handed over before) */
    r->ready_bytes += b->bytes;
}

static void carrier_dispatch(ck_epoch_entry_t *ee)
{
    struct pc__spill_carrier *c =
        PC__CONTAINER_OF(ee, struct pc__spill_carrier, ee);
    struct pc__reclaimer *r = c->owner;
    struct pc__kv *tail = chain_tail(r->ready.spilled);

    PC_TSAN_ACQUIRE(&r->dom->tsan_grace); /* as in batch_dispatch */
    spill_append(&r->ready.spilled, &tail, c->head, c->tail);
    c->head = c->tail = NULL;
    c->queued = false;
}

/* A batch emptied by its writer (lock held): a spare, or freed if there
 * are enough. */
static void batch_spare(struct pc__reclaimer *r, struct pc__retire_batch *b)
{
    if (__atomic_load_n(&r->nfree, __ATOMIC_RELAXED) >= PC__SPARE_BATCHES) {
        pc__free(b, sizeof *b);
        return;
    }
    b->next = r->spare;
    r->spare = b;
    __atomic_add_fetch(&r->nfree, 1, __ATOMIC_RELAXED);
}

/* A batch emptied after its writer unlocked (any thread, no lock): back
 * to the writer through `returned`, or freed if there are enough spares
 * (a count that races only makes the number kept a little off). */
static void batch_return(struct pc__reclaimer *r, struct pc__retire_batch *b)
{
    struct pc__retire_batch *head;

    if (__atomic_load_n(&r->nfree, __ATOMIC_RELAXED) >= PC__SPARE_BATCHES) {
        pc__free(b, sizeof *b);
        return;
    }
    __atomic_add_fetch(&r->nfree, 1, __ATOMIC_RELAXED);
    head = __atomic_load_n(&r->returned, __ATOMIC_RELAXED);
    do /* (one consumer, which takes the whole stack: no ABA) */
        b->next = head;
    while (!__atomic_compare_exchange_n(&r->returned, &head, b, true,
                                        __ATOMIC_RELEASE, __ATOMIC_RELAXED));
}

/* A free batch, reused or newly allocated; NULL if none can be had. */
static struct pc__retire_batch *batch_take(struct pc__reclaimer *r)
{
    struct pc__retire_batch *b = r->spare;

    if (b == NULL) /* the ones returned since (their frees happen before) */
        b = __atomic_exchange_n(&r->returned, NULL, __ATOMIC_ACQUIRE);
    if (b != NULL) {
        r->spare = b->next;
        __atomic_sub_fetch(&r->nfree, 1, __ATOMIC_RELAXED);
    } else {
        b = pc__alloc(sizeof *b);
        if (b == NULL)
            return NULL;
        b->owner = r;
    }
    b->n = 0;
    b->done = 0;
    b->bytes = 0;
    return b;
}

/* Defer the open batch, if it holds anything. */
static bool close_open(struct pc__reclaimer *r)
{
    struct pc__retire_batch *b = r->open;

    if (b == NULL || b->n == 0)
        return false;
    r->open = NULL;
    /* Counted per batch, not per entry (pc__reclaimer_pending). */
    PC__COUNTER_ADD(r->retired_n, b->n);
    PC__COUNTER_ADD(r->retired_bytes, b->bytes);
    pc__reclaimer_defer(r, &b->ee, batch_dispatch);
    return true;
}

void pc__reclaimer_retire_slow(struct pc__reclaimer *r, struct pc__kv *kv)
{
    struct pc__retire_batch *b;

    close_open(r);
    b = r->open = batch_take(r);
    if (b == NULL) { /* out of memory: spill (retire.h) */
        PC__COUNTER_INC(r->retired_n);
        PC__COUNTER_ADD(r->retired_bytes, pc__kv_alloc_size(kv));
        pc__kv_unlinking(kv); /* before w is reused (entry.h) */
        pc__kv_set_link(kv, NULL);
        spill_append(&r->spill, &r->spill_tail, kv, kv);
        return;
    }
    pc__reclaimer_retire(r, kv);
}

/* Free one retired allocation, unless a pin keeps it (pinned: any pin was
 * held when its grace period ended). */
static void free_item(struct pc__reclaimer *r, const struct pc__retired *it,
                      bool pinned)
{
    if (!pinned || !pc__pins_keep(r->pins, it->p, it->size))
        pc__free(it->p, it->size);
}

/* Pins counted before the grace period that let these go are visible here
 * (pin.h); with none held at all, nothing needs asking. */
static bool any_pinned(const struct pc__reclaimer *r)
{
    return r->pins != NULL &&
           __atomic_load_n(&r->pins->active, __ATOMIC_ACQUIRE) != 0;
}

void pc__reclaimer_free(struct pc__reclaimer *r, struct pc__garbage g)
{
    struct pc__retire_batch *b, *next;
    struct pc__kv *kv, *knext;
    uint64_t n = 0, bytes = 0;
    bool pinned = any_pinned(r);

    for (b = g.batches; b != NULL; b = next) {
        next = b->ready;
        for (uint32_t i = b->done; i < b->n; i++) {
            free_item(r, &b->item[i], pinned);
            bytes += b->item[i].size;
        }
        n += b->n - b->done;
        batch_return(r, b);
    }
    for (kv = g.spilled; kv != NULL; kv = knext) {
        struct pc__retired it = {kv, pc__kv_alloc_size(kv)};

        knext = kv->w.retire_next;
        n++;
        bytes += it.size;
        free_item(r, &it, pinned);
    }
    if (n != 0) {
        __atomic_add_fetch(&r->freed_n, n, __ATOMIC_RELAXED);
        __atomic_add_fetch(&r->freed_bytes, bytes, __ATOMIC_RELAXED);
    }
}

void pc__reclaimer_pending(const struct pc__reclaimer *r, uint64_t *n,
                           uint64_t *bytes)
{
    uint64_t fn = __atomic_load_n(&r->freed_n, __ATOMIC_RELAXED) +
                  PC__COUNTER_READ(r->handed_n);
    uint64_t fb = __atomic_load_n(&r->freed_bytes, __ATOMIC_RELAXED) +
                  PC__COUNTER_READ(r->handed_bytes);
    uint64_t rn = PC__COUNTER_READ(r->retired_n);
    uint64_t rb = PC__COUNTER_READ(r->retired_bytes);

    *n += rn > fn ? rn - fn : 0;
    *bytes += rb > fb ? rb - fb : 0;
}

/* ---- life cycle ---- */

struct pc__reclaimer *pc__reclaimer_create(struct pc__domain *d,
                                           struct pc__pin_table *pins,
                                           bool paced)
{
    struct pc__reclaimer *r = pc__alloc_aligned(sizeof *r, CK_MD_CACHELINE);

    if (r == NULL)
        return NULL;
    memset(r, 0, sizeof *r);
    r->dom = d;
    r->pins = pins;
    r->quota = paced ? PC__FREE_QUOTA : 0;
    r->ready_max = paced ? PC__READY_MAX : 0;
    r->ready_max_bytes = paced ? PC__READY_MAX_BYTES : 0;
    r->carrier.owner = r;
    pc__domain_register_writer(d, &r->rec);
    return r;
}

/* Free a list of free batches (linked through next). */
static void batches_free(struct pc__retire_batch *b)
{
    struct pc__retire_batch *next;

    for (; b != NULL; b = next) {
        next = b->next;
        pc__free(b, sizeof *b);
    }
}

void pc__reclaimer_destroy(struct pc__reclaimer *r)
{
    if (r == NULL)
        return;
    ck_epoch_reclaim(&r->rec); /* every deferred callback, now */
    run_stack(r, &r->safe);
    pc__reclaimer_free(r, pc__reclaimer_drain_finish(r));
    if (r->open != NULL) {
        struct pc__garbage g = {.batches = r->open};

        r->open->ready = NULL;
        pc__reclaimer_free(r, g);
    }
    pc__reclaimer_free(r, (struct pc__garbage){.spilled = r->spill});
    /* Every batch is free now (a free list, or the allocator's). */
    batches_free(r->spare);
    batches_free(r->returned);
    pc__free_aligned(r, sizeof *r, CK_MD_CACHELINE);
}

/* ---- the poll after every write ---- */

/* Hand over up to the quota of entries, then whole batches while more
 * than ready_max entries, or ready_max_bytes, would wait (see "Paced
 * frees"). */
static void hand_over(struct pc__reclaimer *r, struct pc__handover *h)
{
    struct pc__retire_batch *b;
    uint64_t bytes = 0;

    while (h->n < r->quota && (b = r->ready.batches) != NULL) {
        const struct pc__retired *it = &b->item[b->done++];

        h->item[h->n++] = *it;
        bytes += it->size;
        if (b->done == b->n) { /* emptied: back to the writer */
            r->ready.batches = b->ready;
            batch_spare(r, b);
        }
    }
    r->ready_n -= h->n;
    r->ready_bytes -= bytes;
    PC__COUNTER_ADD(r->handed_n, h->n);
    PC__COUNTER_ADD(r->handed_bytes, bytes);
    while ((r->ready_n > r->ready_max || r->ready_bytes > r->ready_max_bytes) &&
           (b = r->ready.batches) != NULL) {
        size_t left = b->bytes;

        for (uint32_t i = 0; i < b->done; i++)
            left -= b->item[i].size;
        r->ready.batches = b->ready;
        r->ready_n -= b->n - b->done;
        r->ready_bytes -= left;
        b->ready = h->g.batches;
        h->g.batches = b;
    }
}

bool pc__reclaimer_poll(struct pc__reclaimer *r, struct pc__handover *h,
                        bool *step)
{
    bool queued = false;

    if (r->open != NULL && (r->open->n == PC__RETIRE_BATCH_ITEMS ||
                            r->open->bytes >= PC__RETIRE_BATCH_BYTES))
        queued = close_open(r);
    if (__builtin_expect(r->spill != NULL && !r->carrier.queued, 0)) {
        r->carrier.head = r->spill;
        r->carrier.tail = r->spill_tail;
        r->carrier.queued = true;
        r->spill = r->spill_tail = NULL;
        pc__reclaimer_defer(r, &r->carrier.ee, carrier_dispatch);
        queued = true;
    }
    if (r->rec.n_pending > 0)
        dispatch(r);
    *step = r->rec.n_pending > 0 &&
            (queued || ++r->writes % PC__POLL_INTERVAL == 0);
    h->n = 0;
    h->g.batches = NULL;
    h->g.spilled = r->ready.spilled;
    r->ready.spilled = NULL;
    if (r->ready.batches != NULL)
        hand_over(r, h);
    return h->n != 0 || h->g.batches != NULL || h->g.spilled != NULL;
}

void pc__reclaimer_after_unlock(struct pc__reclaimer *r,
                                const struct pc__handover *h, bool step)
{
    bool pinned = h->n != 0 && any_pinned(r);

    /* (Counted as handed over by the poll, under the lock: no atomic
     * read-modify-write per write.) */
    for (uint32_t i = 0; i < h->n; i++)
        free_item(r, &h->item[i], pinned);
    if (__builtin_expect(h->g.batches != NULL || h->g.spilled != NULL, 0))
        pc__reclaimer_free(r, h->g);
    if (step)
        pc__grace_step(r->dom, true);
}

/* ---- pc_reclaim's drain ---- */

void pc__reclaimer_drain_detach(struct pc__reclaimer *r)
{
    /* The open batch first: deferring it may set an old bucket aside onto
     * `safe` (pc__reclaimer_defer), which this drain must run too; run
     * before it, a shard that saw no write while the epoch moved on by a
     * multiple of four kept that bucket after pc_reclaim (a whole
     * pc_clear's worth: test_grace). */
    close_open(r);
    run_stack(r, &r->safe); /* already past their grace period */
    spill_append(&r->drain_spill, &r->drain_spill_tail, r->spill,
                 r->spill_tail);
    r->spill = r->spill_tail = NULL;
    for (int i = 0; i < CK_EPOCH_LENGTH; i++) {
        ck_stack_entry_t *head = CK_STACK_FIRST(&r->rec.pending[i]);

        if (head == NULL)
            continue;
        /* Keep any earlier set-aside callbacks: append them. */
        ck_stack_entry_t *t = head;
        while (CK_STACK_NEXT(t) != NULL)
            t = CK_STACK_NEXT(t);
        t->next = r->drain_pending[i];
        r->drain_pending[i] = head;
        ck_stack_init(&r->rec.pending[i]);
    }
}

void pc__reclaimer_drain_abort(struct pc__reclaimer *r)
{
    /* Callbacks go back to the buckets as if deferred now (later than they
     * were: safe); spilled entries back to the spill chain. */
    spill_append(&r->drain_spill, &r->drain_spill_tail, r->spill,
                 r->spill_tail);
    r->spill = r->drain_spill;
    r->spill_tail = r->drain_spill_tail;
    r->drain_spill = r->drain_spill_tail = NULL;
    for (int i = 0; i < CK_EPOCH_LENGTH; i++) {
        ck_stack_entry_t *cursor = r->drain_pending[i], *nx;

        for (; cursor != NULL; cursor = nx) {
            ck_epoch_entry_t *e = entry_of(cursor);

            nx = CK_STACK_NEXT(cursor);
            r->rec.n_pending--; /* defer counts it again */
            pc__reclaimer_defer(r, e, e->function);
        }
        r->drain_pending[i] = NULL;
    }
}

struct pc__garbage pc__reclaimer_drain_finish(struct pc__reclaimer *r)
{
    struct pc__garbage g;
    struct pc__kv *tail;

    PC_TSAN_ACQUIRE(&r->dom->tsan_grace); /* as in batch_dispatch */
    for (int i = 0; i < CK_EPOCH_LENGTH; i++) {
        run_chain(r, r->drain_pending[i]);
        r->drain_pending[i] = NULL;
    }
    tail = chain_tail(r->ready.spilled);
    spill_append(&r->ready.spilled, &tail, r->drain_spill, r->drain_spill_tail);
    r->drain_spill = r->drain_spill_tail = NULL;
    g = r->ready;
    r->ready = (struct pc__garbage){NULL, NULL};
    r->ready_n = r->ready_bytes = 0;
    return g;
}

void pc__reclaimer_trim(struct pc__reclaimer *r)
{
    struct pc__retire_batch *b = r->spare, *ret;
    size_t n = 0;

    ret = __atomic_exchange_n(&r->returned, NULL, __ATOMIC_ACQUIRE);
    r->spare = NULL;
    for (struct pc__retire_batch *l = b; l != NULL; l = l->next)
        n++;
    for (struct pc__retire_batch *l = ret; l != NULL; l = l->next)
        n++;
    __atomic_sub_fetch(&r->nfree, n, __ATOMIC_RELAXED);
    batches_free(b);
    batches_free(ret);
}
