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
 * still alive, and only then unregisters it. pc_destroy unlinks its domain
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
            if (t == value) {
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
    } else {
        t = pc_alloc_aligned(sizeof *t, CK_MD_CACHELINE);
        if (t == NULL) {
            pthread_mutex_unlock(&d->lock);
            return NULL;
        }
        memset(t, 0, sizeof *t);
        t->dom = d;
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
    free_chain(r, r->ready);
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

void reclaimer_drain(struct pc_reclaimer *r)
{
    struct pc_kv *open = r->open;

    r->open = NULL;
    r->n_open = r->open_bytes = 0;
    /* Everything retired so far (queued batches and the open list) was
     * unreachable before this grace period began. */
    ck_epoch_synchronize(&r->rec);
    ck_epoch_reclaim(&r->rec);
    PC_TSAN_ACQUIRE(r->grace); /* as in batch_dispatch (tsan.h, case 2) */
    free_chain(r, r->ready);
    r->ready = NULL;
    free_chain(r, open);
}
