/*
 * domain: epoch domains, the registry of thread records and thread-exit
 * cleanup. The design and the thread-exit argument are in domain.h.
 */
#include "domain.h"

#include <string.h>

#include "alloc.h"

/* The live lock: level 3 of the lock order (internal.h). */
static pthread_mutex_t live_lock = PTHREAD_MUTEX_INITIALIZER;
static struct pc__domain *live_domains; /* under live_lock */
static uint64_t next_domain_id = 1;

__thread struct pc__record_cache pc__tls_record
    __attribute__((tls_model("initial-exec")));

void pc__domain_live_lock(void)
{
    pthread_mutex_lock(&live_lock);
}

void pc__domain_live_unlock(void)
{
    pthread_mutex_unlock(&live_lock);
}

struct pc__domain *pc__domain_first_live(void)
{
    return live_domains;
}

/* The domain key's destructor, on the exiting thread (see domain.h). */
static void thread_exit(void *value)
{
    struct pc__domain *d;

    /* A later call on this cache (from another key's destructor) must
     * register afresh, not reuse the record. */
    if (pc__tls_record.rec == value) {
        pc__tls_record.id = 0;
        pc__tls_record.rec = NULL;
    }

    pthread_mutex_lock(&live_lock);
    for (d = live_domains; d != NULL; d = d->live_next) {
        struct pc__record *t;

        pthread_mutex_lock(&d->registry_lock);
        for (t = d->records; t != NULL; t = t->next) {
            /* The owner check matters when this thread's cache was
             * destroyed meanwhile and another cache reuses the address for
             * a live thread's record: never release someone else's. */
            if (t == value && pthread_equal(t->owner, pthread_self())) {
                ck_epoch_unregister(&t->rec);
                break;
            }
        }
        pthread_mutex_unlock(&d->registry_lock);
        if (t != NULL)
            break;
    }
    pthread_mutex_unlock(&live_lock);
}

bool pc__domain_init(struct pc__domain *d)
{
    memset(d, 0, sizeof *d);
    ck_epoch_init(&d->epoch);
    d->id = __atomic_fetch_add(&next_domain_id, 1, __ATOMIC_RELAXED);
    (void)pc__read_fence_setup(false); /* before the first domain exists */
    if (pthread_key_create(&d->key, thread_exit) != 0)
        return false;
    pthread_mutex_init(&d->registry_lock, NULL);
    pthread_mutex_init(&d->grace_lock, NULL);
    pthread_mutex_lock(&live_lock);
    d->live_next = live_domains;
    if (live_domains != NULL)
        live_domains->live_prev = d;
    live_domains = d;
    pthread_mutex_unlock(&live_lock);
    return true;
}

void pc__domain_unlink(struct pc__domain *d)
{
    pthread_mutex_lock(&live_lock);
    if (d->unlinked) {
        pthread_mutex_unlock(&live_lock);
        return;
    }
    d->unlinked = true;
    if (d->live_prev != NULL)
        d->live_prev->live_next = d->live_next;
    else
        live_domains = d->live_next;
    if (d->live_next != NULL)
        d->live_next->live_prev = d->live_prev;
    pthread_key_delete(d->key);
    pthread_mutex_unlock(&live_lock);
}

void pc__domain_fini(struct pc__domain *d)
{
    struct pc__record *t, *next;

    pc__domain_unlink(d);
    for (t = d->records; t != NULL; t = next) {
        next = t->next;
        pc__free_aligned(t, sizeof *t, CK_MD_CACHELINE);
    }
    pthread_mutex_destroy(&d->registry_lock);
    pthread_mutex_destroy(&d->grace_lock);
}

void pc__domain_register_writer(struct pc__domain *d, ck_epoch_record_t *r)
{
    /* Under the registry lock so the list stays consistent for
     * pc__domain_record_slow's recycling; never unregistered, never
     * active, so never recycled as a thread record. */
    pthread_mutex_lock(&d->registry_lock);
    PC_TSAN_RELEASE(r); /* tsan.h, case 4 */
    ck_epoch_register(&d->epoch, r, NULL);
    pthread_mutex_unlock(&d->registry_lock);
}

struct pc__record *pc__domain_record_slow(struct pc__domain *d)
{
    struct pc__record *t = pthread_getspecific(d->key);
    ck_epoch_record_t *r;

    if (t != NULL)
        goto cache;
    pthread_mutex_lock(&d->registry_lock);
    /* Only thread records are ever unregistered, so a recycled record is
     * always the first member of a struct pc__record. */
    r = ck_epoch_recycle(&d->epoch, NULL);
    if (r != NULL) {
        t = (struct pc__record *)r;
        t->owner = pthread_self();
    } else {
        t = pc__alloc_aligned(sizeof *t, CK_MD_CACHELINE);
        if (t == NULL) {
            pthread_mutex_unlock(&d->registry_lock);
            return NULL;
        }
        memset(t, 0, sizeof *t);
        t->dom = d;
        t->owner = pthread_self();
        PC_TSAN_RELEASE(&t->rec); /* tsan.h, case 4 */
        ck_epoch_register(&d->epoch, &t->rec, NULL);
        t->next = d->records;
        d->records = t;
    }
    pthread_mutex_unlock(&d->registry_lock);
    if (pthread_setspecific(d->key, t) != 0) {
        ck_epoch_unregister(&t->rec);
        return NULL;
    }
cache:
    pc__tls_record.id = d->id;
    pc__tls_record.rec = t;
    return t;
}

void pc__domain_sum_stats(struct pc__domain *d, struct pc__record_stats *out)
{
    pthread_mutex_lock(&d->registry_lock);
    for (struct pc__record *t = d->records; t != NULL; t = t->next) {
        out->hits += PC__COUNTER_READ(t->stats.hits);
        out->misses += PC__COUNTER_READ(t->stats.misses);
        out->loader_calls += PC__COUNTER_READ(t->stats.loader_calls);
        out->loader_errors += PC__COUNTER_READ(t->stats.loader_errors);
    }
    pthread_mutex_unlock(&d->registry_lock);
}
