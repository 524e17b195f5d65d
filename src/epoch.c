/*
 * epoch: per-cache ck_epoch domains, lazily registered thread records, and
 * batched retirement. The design and its concurrency argument are in
 * epoch.h; this file adds the thread-exit protocol:
 *
 * A thread's record is released by the domain key's destructor when the
 * thread exits. pc_destroy may run at the same moment (POSIX leaves a key
 * deleted during another thread's destructor pass undefined), so the
 * destructor never trusts the record pointer it is given: under the global
 * registry lock it looks the pointer up among the records of the domains
 * still alive, and only then unregisters it, and only if the record's owner
 * is this thread (the address may have been reused for another thread's
 * record by then). pc_destroy unlinks its domain
 * from that list under the same lock before it frees anything.
 */
#include "epoch.h"

#include <string.h>

#include "alloc.h"

static pthread_mutex_t live_lock = PTHREAD_MUTEX_INITIALIZER;
static struct pc_domain *live_domains;
static uint64_t next_domain_id = 1;

__thread struct pc_thread_cache pc_tls_thread
    __attribute__((tls_model("initial-exec")));

static void thread_exit(void *value)
{
    struct pc_domain *d;

    /* Runs on the exiting thread: a later call on this cache (from another
     * key's destructor) must register afresh, not reuse the record. */
    if (pc_tls_thread.t == value) {
        pc_tls_thread.id = 0;
        pc_tls_thread.t = NULL;
    }

    pthread_mutex_lock(&live_lock);
    for (d = live_domains; d != NULL; d = d->live_next) {
        struct pc_thread *t;

        pthread_mutex_lock(&d->lock);
        for (t = d->threads; t != NULL; t = t->next) {
            /* The owner check matters when this thread's cache was
             * destroyed meanwhile and another cache reuses the address for
             * a live thread's record: never release someone else's. */
            if (t == value && pthread_equal(t->owner, pthread_self())) {
                ck_epoch_unregister(&t->rec);
                break;
            }
        }
        pthread_mutex_unlock(&d->lock);
        if (t != NULL)
            break;
    }
    pthread_mutex_unlock(&live_lock);
}

int domain_init(struct pc_domain *d)
{
    memset(d, 0, sizeof *d);
    ck_epoch_init(&d->epoch);
    d->id = __atomic_fetch_add(&next_domain_id, 1, __ATOMIC_RELAXED);
    if (pthread_key_create(&d->key, thread_exit) != 0)
        return PC_ENOMEM;
    pthread_mutex_init(&d->lock, NULL);
    pthread_mutex_lock(&live_lock);
    d->live_next = live_domains;
    if (live_domains != NULL)
        live_domains->live_prev = d;
    live_domains = d;
    pthread_mutex_unlock(&live_lock);
    return 0;
}

void domain_fini(struct pc_domain *d)
{
    struct pc_thread *t, *next;

    pthread_mutex_lock(&live_lock);
    if (d->live_prev != NULL)
        d->live_prev->live_next = d->live_next;
    else
        live_domains = d->live_next;
    if (d->live_next != NULL)
        d->live_next->live_prev = d->live_prev;
    pthread_key_delete(d->key);
    pthread_mutex_unlock(&live_lock);

    for (t = d->threads; t != NULL; t = next) {
        next = t->next;
        pc_free(t, sizeof *t);
    }
    pthread_mutex_destroy(&d->lock);
}

struct pc_thread *domain_thread_slow(struct pc_domain *d)
{
    struct pc_thread *t = pthread_getspecific(d->key);
    ck_epoch_record_t *r;

    if (t != NULL)
        goto cache;
    pthread_mutex_lock(&d->lock);
    /* Only thread records are ever unregistered, so a recycled record is
     * always the first member of a struct pc_thread. */
    r = ck_epoch_recycle(&d->epoch, NULL);
    if (r != NULL) {
        t = (struct pc_thread *)r;
        t->owner = pthread_self();
    } else {
        t = pc_alloc_aligned(sizeof *t, CK_MD_CACHELINE);
        if (t == NULL) {
            pthread_mutex_unlock(&d->lock);
            return NULL;
        }
        memset(t, 0, sizeof *t);
        t->dom = d;
        t->owner = pthread_self();
        ck_epoch_register(&d->epoch, &t->rec, NULL);
        t->next = d->threads;
        d->threads = t;
    }
    pthread_mutex_unlock(&d->lock);
    if (pthread_setspecific(d->key, t) != 0) {
        ck_epoch_unregister(&t->rec);
        return NULL;
    }
cache:
    pc_tls_thread.id = d->id;
    pc_tls_thread.t = t;
    return t;
}

void domain_sum_stats(struct pc_domain *d, struct pc_thread_stats *out)
{
    pthread_mutex_lock(&d->lock);
    for (struct pc_thread *t = d->threads; t != NULL; t = t->next) {
        out->hits += PC_COUNTER_READ(t->stats.hits);
        out->misses += PC_COUNTER_READ(t->stats.misses);
        out->loader_calls += PC_COUNTER_READ(t->stats.loader_calls);
        out->loader_errors += PC_COUNTER_READ(t->stats.loader_errors);
    }
    pthread_mutex_unlock(&d->lock);
}

void writer_mutex_init(pthread_mutex_t *m)
{
    pthread_mutexattr_t a;

    pthread_mutexattr_init(&a);
    pthread_mutexattr_settype(&a, PTHREAD_MUTEX_ADAPTIVE_NP);
    pthread_mutex_init(m, &a);
    pthread_mutexattr_destroy(&a);
}

static void free_chain(struct pc_reclaimer *r, struct pc_kv *kv)
{
    while (kv != NULL) {
        struct pc_kv *next = kv->w.retire_next;

        r->free_kv(kv);
        kv = next;
    }
}

void reclaimer_free(struct pc_reclaimer *r, struct pc_kv *chain)
{
    free_chain(r, chain);
}

/* Runs inside ck_epoch_poll/reclaim on the writer's record: the batch's
 * grace period is over. Its entries move to the ready chain (freed by the
 * writer after it unlocks) and the batch becomes reusable. */
static void batch_dispatch(ck_epoch_entry_t *ee)
{
    struct pc_retire_batch *b = (struct pc_retire_batch *)ee;
    struct pc_reclaimer *r = b->owner;
    struct pc_kv *tail = b->head;

    /* TSan: ck_epoch_poll (uninstrumented) saw every reader that could hold
     * these entries leave; pairs with read_leave's release (tsan.h, 2). The
     * writer frees them after unlocking, on this thread. */
    PC_TSAN_ACQUIRE(r->grace);
    if (tail != NULL) {
        while (tail->w.retire_next != NULL)
            tail = tail->w.retire_next;
        tail->w.retire_next = r->ready;
        r->ready = b->head;
    }
    b->head = NULL;
    b->queued = false;
}

struct pc_reclaimer *reclaimer_create(struct pc_domain *d,
                                      pc_kv_free_fn *free_kv)
{
    struct pc_reclaimer *r = pc_alloc_aligned(sizeof *r, CK_MD_CACHELINE);

    if (r == NULL)
        return NULL;
    memset(r, 0, sizeof *r);
    r->free_kv = free_kv;
    r->grace = &d->epoch;
    for (int i = 0; i < PC_RETIRE_BATCHES; i++)
        r->batch[i].owner = r;
    /* Registered under the registry lock so the list stays consistent for
     * domain_thread_slow's recycling; never unregistered, never active. */
    pthread_mutex_lock(&d->lock);
    ck_epoch_register(&d->epoch, &r->rec, NULL);
    pthread_mutex_unlock(&d->lock);
    return r;
}

void reclaimer_destroy(struct pc_reclaimer *r)
{
    if (r == NULL)
        return;
    ck_epoch_reclaim(&r->rec);
    reclaimer_free(r, reclaimer_drain_finish(r)); /* set-aside, if any */
    free_chain(r, r->open);
    pc_free(r, sizeof *r);
}

struct pc_kv *reclaimer_poll(struct pc_reclaimer *r)
{
    struct pc_kv *ready;
    bool queued = false;

    if (r->n_open >= PC_RETIRE_BATCH_ENTRIES ||
        r->open_bytes >= PC_RETIRE_BATCH_BYTES) {
        for (int i = 0; i < PC_RETIRE_BATCHES; i++) {
            struct pc_retire_batch *b = &r->batch[i];

            if (!b->queued) {
                b->head = r->open;
                b->queued = true;
                r->open = NULL;
                r->n_open = r->open_bytes = 0;
                /* The unlinks of these entries must be visible before
                 * ck_epoch_call reads the global epoch that picks their
                 * bucket: on x86 a store may still sit in the store buffer
                 * while a later load completes, and a too-early epoch would
                 * free them one grace period early. Once per batch. */
                ck_pr_fence_memory();
                ck_epoch_call(&r->rec, &b->ee, batch_dispatch);
                queued = true;
                break;
            }
        }
        /* All batches still waiting: the open list keeps growing until a
         * grace period frees one, which the poll below may bring about. */
    }
    if (r->rec.n_pending > 0 && (queued || ++r->writes % PC_POLL_INTERVAL == 0))
        ck_epoch_poll(&r->rec);
    ready = r->ready;
    r->ready = NULL;
    return ready;
}

/*
 * pc_reclaim in three steps, so that no writer lock is held while waiting for
 * readers (a pinned reader may itself be about to take that lock):
 *  1. drain_detach (lock held): set aside everything retired so far, the
 *     open list and every callback queued on the record (retired batches,
 *     deferred index tables), exactly as ck_epoch_reclaim would take them;
 *  2. drain_wait (no lock): one grace period on the whole domain;
 *  3. drain_finish (lock held again): run the set-aside callbacks, which
 *     only touch reclaimer state (hence the lock), and hand back every entry
 *     now safe to free. Callbacks queued after step 1 stay on the record for
 *     normal polling: they were not covered by the grace period.
 * Callers serialise whole pc_reclaim calls (the set-aside state is per
 * reclaimer).
 */
void reclaimer_drain_detach(struct pc_reclaimer *r)
{
    struct pc_kv *tail = r->open;

    if (tail != NULL) {
        while (tail->w.retire_next != NULL)
            tail = tail->w.retire_next;
        tail->w.retire_next = r->drain_open;
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

void reclaimer_drain_wait(struct pc_domain *d)
{
    ck_epoch_synchronize_wait(&d->epoch, NULL, NULL);
}

struct pc_kv *reclaimer_drain_finish(struct pc_reclaimer *r)
{
    struct pc_kv *chain = r->drain_open, *tail;
    unsigned int ran = 0;

    PC_TSAN_ACQUIRE(r->grace); /* as in batch_dispatch (tsan.h, case 2) */
    for (int i = 0; i < CK_EPOCH_LENGTH; i++) {
        ck_stack_entry_t *cursor = r->drain_pending[i], *next;

        for (; cursor != NULL; cursor = next) {
            ck_epoch_entry_t *e =
                (ck_epoch_entry_t *)((char *)cursor -
                                     offsetof(ck_epoch_entry_t, stack_entry));

            next = CK_STACK_NEXT(cursor);
            e->function(e);
            ran++;
        }
        r->drain_pending[i] = NULL;
    }
    r->rec.n_pending -= ran;
    r->drain_open = NULL;
    /* The callbacks moved their entries to the ready chain. */
    if (chain == NULL)
        chain = r->ready;
    else {
        for (tail = chain; tail->w.retire_next != NULL;)
            tail = tail->w.retire_next;
        tail->w.retire_next = r->ready;
    }
    r->ready = NULL;
    return chain;
}
