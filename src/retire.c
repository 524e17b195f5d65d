/*
 * retire: batched retirement and the pc_reclaim drain; the design is atop
 * retire.h, the grace-period rule in grace.c.
 */
#include "retire.h"

#include <string.h>

#include "alloc.h"
#include "grace.h"

static void free_chain(struct pc__reclaimer *r, struct pc__kv *kv)
{
    while (kv != NULL) {
        struct pc__kv *next = kv->w.retire_next;

        r->free_kv(kv);
        kv = next;
    }
}

void pc__reclaimer_free(struct pc__reclaimer *r, struct pc__kv *chain)
{
    free_chain(r, chain);
}

/* A batch's grace period is over (run by dispatch, or by ck_epoch_reclaim
 * at destruction): its entries move to the ready chain, freed by the writer
 * after it unlocks, and the batch becomes reusable. */
static void batch_dispatch(ck_epoch_entry_t *ee)
{
    struct pc__retire_batch *b =
        PC__CONTAINER_OF(ee, struct pc__retire_batch, ee);
    struct pc__reclaimer *r = b->owner;

    /* TSan: the scans that advanced the epoch saw every reader that could
     * hold these entries leave, through relaxed loads; pairs with
     * pc__read_leave's release (tsan.h, 2). */
    PC_TSAN_ACQUIRE(&r->dom->tsan_grace);
    if (b->head != NULL) {
        b->tail->w.retire_next = r->ready;
        r->ready = b->head;
    }
    b->head = b->tail = NULL;
    b->queued = false;
}

static ck_epoch_entry_t *entry_of(ck_stack_entry_t *cursor)
{
    return PC__CONTAINER_OF(cursor, ck_epoch_entry_t, stack_entry);
}

/* Run the callbacks of one chain. */
static void run_chain(struct pc__reclaimer *r, ck_stack_entry_t *cursor)
{
    ck_stack_entry_t *next;

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

struct pc__reclaimer *pc__reclaimer_create(struct pc__domain *d,
                                           pc__kv_free_fn *free_kv)
{
    struct pc__reclaimer *r = pc__alloc_aligned(sizeof *r, CK_MD_CACHELINE);

    if (r == NULL)
        return NULL;
    memset(r, 0, sizeof *r);
    r->free_kv = free_kv;
    r->dom = d;
    for (int i = 0; i < PC__RETIRE_BATCHES; i++)
        r->batch[i].owner = r;
    pc__domain_register_writer(d, &r->rec);
    return r;
}

void pc__reclaimer_destroy(struct pc__reclaimer *r)
{
    if (r == NULL)
        return;
    ck_epoch_reclaim(&r->rec);
    run_stack(r, &r->safe);
    free_chain(r, pc__reclaimer_drain_finish(r)); /* set-aside, if any */
    free_chain(r, r->open);
    pc__free(r, sizeof *r);
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

struct pc__kv *pc__reclaimer_poll(struct pc__reclaimer *r, bool *step)
{
    struct pc__kv *ready;
    bool queued = false;

    if (r->n_open >= PC__RETIRE_BATCH_ENTRIES ||
        r->open_bytes >= PC__RETIRE_BATCH_BYTES) {
        for (int i = 0; i < PC__RETIRE_BATCHES; i++) {
            struct pc__retire_batch *b = &r->batch[i];

            if (!b->queued) {
                b->head = r->open;
                b->tail = r->open_tail;
                b->queued = true;
                r->open = NULL;
                r->n_open = r->open_bytes = 0;
                pc__reclaimer_defer(r, &b->ee, batch_dispatch);
                queued = true;
                break;
            }
        }
        /* All batches still waiting: the open list keeps growing until a
         * grace period frees one. */
    }
    if (r->rec.n_pending > 0)
        dispatch(r);
    *step = r->rec.n_pending > 0 &&
            (queued || ++r->writes % PC__POLL_INTERVAL == 0);
    ready = r->ready;
    r->ready = NULL;
    return ready;
}

void pc__reclaimer_after_unlock(struct pc__reclaimer *r, struct pc__kv *chain,
                                bool step)
{
    free_chain(r, chain);
    if (step)
        pc__grace_step(r->dom, true);
}

void pc__reclaimer_drain_detach(struct pc__reclaimer *r)
{
    run_stack(r, &r->safe); /* already past their grace period */
    if (r->open != NULL) {
        if (r->drain_open == NULL)
            r->drain_tail = r->open_tail;
        r->open_tail->w.retire_next = r->drain_open;
        r->drain_open = r->open;
    }
    r->open = NULL;
    r->n_open = r->open_bytes = 0;
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
    struct pc__kv *kv = r->drain_open, *next;

    /* Entries go back to the open list, callbacks back to the buckets as
     * if deferred now (later than they were: safe). */
    for (; kv != NULL; kv = next) {
        next = kv->w.retire_next;
        pc__reclaimer_retire(r, kv);
    }
    r->drain_open = NULL;
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

struct pc__kv *pc__reclaimer_drain_finish(struct pc__reclaimer *r)
{
    struct pc__kv *chain = r->drain_open;

    PC_TSAN_ACQUIRE(&r->dom->tsan_grace); /* as in batch_dispatch */
    for (int i = 0; i < CK_EPOCH_LENGTH; i++) {
        run_chain(r, r->drain_pending[i]);
        r->drain_pending[i] = NULL;
    }
    r->drain_open = NULL;
    /* The callbacks moved their entries to the ready chain. */
    if (chain == NULL)
        chain = r->ready;
    else
        r->drain_tail->w.retire_next = r->ready;
    r->ready = NULL;
    return chain;
}
