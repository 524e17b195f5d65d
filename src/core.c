/*
 * core: the machinery every policy shares (see core.h): cache set-up and
 * tear-down, writer locks, pc_reclaim and statistics.
 */
#include "core.h"

#include <string.h>

#include "alloc.h"
#include "grace.h"

bool pc__core_init(struct pc_cache *c, const pc_options *opts,
                   unsigned int nwriters)
{
    c->capacity = opts->capacity;
    pc__hash_seed_init(&c->seed, opts->hash_seed);
    c->nwriters = 0;
    c->writers_cap = nwriters;
    c->writers = pc__alloc(sizeof *c->writers * nwriters);
    if (c->writers == NULL)
        return false;
    c->flights = pc__flight_table_create();
    if (c->flights == NULL)
        goto fail_writers;
    if (!pc__domain_init(&c->dom))
        goto fail_flights;
    pthread_mutex_init(&c->reclaim_lock, NULL);
    return true;

fail_flights:
    pc__flight_table_destroy(c->flights);
fail_writers:
    pc__free(c->writers, sizeof *c->writers * nwriters);
    return false;
}

bool pc__core_add_writer(struct pc_cache *c, struct pc__writer *w,
                         size_t kv_offset)
{
    w->rc = pc__reclaimer_create(&c->dom, kv_offset);
    if (w->rc == NULL)
        return false;
    w->lock = (pc__lock)PC__LOCK_INIT;
    w->puts = w->evictions = w->deletes = 0;
    PC__ASSERT(c->nwriters < c->writers_cap);
    c->writers[c->nwriters++] = w;
    return true;
}

void pc__core_shutdown(struct pc_cache *c)
{
    pc__domain_unlink(&c->dom); /* before any reclaimer's record is freed */
    for (unsigned int i = 0; i < c->nwriters; i++) {
        pc__reclaimer_destroy(c->writers[i]->rc);
        c->writers[i]->rc = NULL;
    }
}

void pc__core_fini(struct pc_cache *c)
{
    pc__free(c->writers, sizeof *c->writers * c->writers_cap);
    pc__domain_fini(&c->dom);
    pc__flight_table_destroy(c->flights);
    pthread_mutex_destroy(&c->reclaim_lock);
}

void pc__writer_lock(struct pc__writer *w)
{
    pc__lock_acquire(&w->lock);
}

void pc__writer_unlock(struct pc_cache *c, struct pc__writer *w)
{
    bool step;
    struct pc__garbage ready = pc__reclaimer_poll(w->rc, &step);

    if (c->before_free != NULL &&
        (ready.batches != NULL || ready.spilled != NULL))
        c->before_free(c);
    pc__lock_release(&w->lock);
    pc__reclaimer_after_unlock(w->rc, ready, step);
}

void pc__core_reclaim(struct pc_cache *c)
{
    bool ok;

    /* No writer lock is held while waiting for readers: a pinned reader may
     * be about to take one (retire.h). */
    pthread_mutex_lock(&c->reclaim_lock);
    for (unsigned int i = 0; i < c->nwriters; i++) {
        struct pc__writer *w = c->writers[i];

        pc__lock_acquire(&w->lock);
        pc__reclaimer_drain_detach(w->rc);
        pc__lock_release(&w->lock);
    }
    ok = pc__grace_wait(&c->dom);
    for (unsigned int i = 0; i < c->nwriters; i++) {
        struct pc__writer *w = c->writers[i];
        struct pc__garbage chain = {NULL, NULL};

        pc__lock_acquire(&w->lock);
        if (ok) {
            chain = pc__reclaimer_drain_finish(w->rc);
            if (c->before_free != NULL)
                c->before_free(c);
        } else {
            pc__reclaimer_drain_abort(w->rc);
        }
        pc__lock_release(&w->lock);
        pc__reclaimer_free(w->rc, chain);
        pc__lock_acquire(&w->lock);
        pc__reclaimer_trim(w->rc);
        pc__lock_release(&w->lock);
    }
    pthread_mutex_unlock(&c->reclaim_lock);
}

void pc__core_stats(struct pc_cache *c, pc_stats *out)
{
    struct pc__record_stats ts = {0};

    memset(out, 0, sizeof *out);
    pc__domain_sum_stats(&c->dom, &ts);
    out->hits = ts.hits;
    out->misses = ts.misses;
    out->loader_calls = ts.loader_calls;
    out->loader_errors = ts.loader_errors;
    for (unsigned int i = 0; i < c->nwriters; i++) {
        out->puts += PC__COUNTER_READ(c->writers[i]->puts);
        out->evictions += PC__COUNTER_READ(c->writers[i]->evictions);
        out->deletes += PC__COUNTER_READ(c->writers[i]->deletes);
    }
}
