/*
 * core: the machinery every policy shares (see core.h): cache set-up and
 * tear-down, writer locks, pc_reclaim and statistics.
 */
#include "core.h"

#include <string.h>

#include "alloc.h"
#include "grace.h"

/* What readers compare with before a cache's clock is the ticker's (and
 * for good if it never is): above every pc__kv_vis, it sends them to
 * pc__core_visible_slow, which reads the cache's own clock. */
static const uint64_t no_tick = UINT64_MAX;

bool pc__core_init(struct pc_cache *c, const pc_options *opts,
                   unsigned int nwriters)
{
    c->vis = &no_tick;
    c->capacity = opts->capacity;
    c->max_bytes = opts->max_bytes;
    c->ttl_ms = opts->ttl_ms;
    c->now_ms = opts->now_ms;
    c->now_ctx = opts->now_ctx;
    c->on_removal = opts->on_removal;
    c->removal_ctx = opts->removal_ctx;
    pc__hash_seed_init(&c->seed, opts->hash_seed);
    pc__pins_init(&c->pins);
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

bool pc__core_add_writer(struct pc_cache *c, struct pc__writer *w)
{
    /* Paced frees, unless every handover costs the policy something
     * (before_free: the LRU's log catch-up). */
    w->rc = pc__reclaimer_create(&c->dom, &c->pins, c->before_free == NULL);
    if (w->rc == NULL)
        return false;
    w->lock = (pc__lock)PC__LOCK_INIT;
    w->leases = NULL;
    w->puts = w->evictions = w->deletes = w->expirations = 0;
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
    pc__pins_fini(&c->pins); /* after the reclaimers handed over theirs */
}

void pc__core_fini(struct pc_cache *c)
{
    if (c->ticking)
        pc__ticker_release();
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
    struct pc__handover h;
    bool garbage = pc__reclaimer_poll(w->rc, &h, &step);

    if (c->before_free != NULL && garbage)
        c->before_free(c);
    pc__lock_release(&w->lock);
    /* Most unlocks have nothing to free and no step to take. */
    if (garbage || step)
        pc__reclaimer_after_unlock(w->rc, &h, step);
}

void pc__core_reclaim(struct pc_cache *c)
{
    bool ok;

    /* No writer lock is held while waiting for readers (retire.h). */
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
        struct pc__writer *w = c->writers[i];

        out->puts += PC__COUNTER_READ(w->puts);
        out->evictions += PC__COUNTER_READ(w->evictions);
        out->deletes += PC__COUNTER_READ(w->deletes);
        out->expirations += PC__COUNTER_READ(w->expirations);
        pc__reclaimer_pending(w->rc, &out->pending, &out->pending_bytes);
    }
    pc__pins_pending(&c->pins, &out->pending, &out->pending_bytes);
}

int pc__core_visible_slow(const struct pc_cache *c, const struct pc__kv *kv,
                          unsigned int f, uint32_t lo)
{
    uint64_t at;

    if (!pc__kv_read_expiry(kv, f, lo, pc__core_origin(c), &at))
        return -1;
    return pc__core_now(c) < at;
}

/* pc__core_expires with a ttl (neither 0 nor PC_TTL_NEVER). */
uint64_t pc__core_expires_slow(struct pc_cache *c, uint64_t ttl_ms)
{
    uint64_t now;

    PC__ASSERT(ttl_ms != 0 && ttl_ms != PC_TTL_NEVER);
    if (!__atomic_load_n(&c->ttl_used, __ATOMIC_ACQUIRE)) {
        pc__ticker_first_use(&c->ttl_used, &c->ticking, c->now_ms == NULL);
        if (__atomic_load_n(&c->ticking, __ATOMIC_RELAXED))
            __atomic_store_n(&c->vis, &pc__ticker_clock.vis, __ATOMIC_RELAXED);
    }
    now = pc__core_now(c);
    if (__atomic_load_n(&c->origin_p1, __ATOMIC_ACQUIRE) == 0) {
        uint64_t unset = 0, origin = c->now_ms == NULL ? 0 : now;
        uint64_t p1 = (origin < UINT64_MAX ? origin : origin - 1) + 1;

        __atomic_compare_exchange_n(&c->origin_p1, &unset, p1, false,
                                    __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);
    }
    if (ttl_ms >= UINT64_MAX - now)
        return 0; /* saturates: never */
    return now + ttl_ms;
}

#ifdef PC_DEBUG
void (*pc__debug_budget_hook)(void);
void (*pc__debug_owe_hook)(void);
void (*pc__debug_settled_hook)(void);
void (*pc__debug_prelock_hook)(void);
#endif

bool pc__budget_take_within(struct pc_cache *c, bool one_more, uint64_t bytes,
                            uint64_t max)
{
    size_t cap = __atomic_load_n(&c->capacity, __ATOMIC_RELAXED);
    size_t n = __atomic_load_n(&c->count, __ATOMIC_RELAXED);
    uint64_t b;

#ifdef PC_DEBUG
    if (pc__debug_budget_hook != NULL) /* tests: a preemption, here */
        pc__debug_budget_hook();
#endif

    /* Sequentially consistent swaps: see pc__budget_room. A claim whose
     * bytes do not fit fails before it writes the count (a cache whose
     * byte bound binds before its capacity would write it twice on every
     * put, a claim and its undoing; the two share a line). */
    if (one_more && max != 0 &&
        (bytes > max ||
         __atomic_load_n(&c->bytes, __ATOMIC_RELAXED) > max - bytes))
        return false;
    if (one_more) {
        do {
            if (n >= cap)
                return false;
        } while (!__atomic_compare_exchange_n(
            &c->count, &n, n + 1, true, __ATOMIC_SEQ_CST, __ATOMIC_RELAXED));
    }
    if (bytes == 0 && max == 0)
        return true; /* (no byte claim to make: leave the line unwritten) */
    b = __atomic_load_n(&c->bytes, __ATOMIC_RELAXED);
    do {
        if (max != 0 && (bytes > max || b > max - bytes)) {
            if (one_more)
                __atomic_sub_fetch(&c->count, 1, __ATOMIC_RELAXED);
            return false;
        }
    } while (!__atomic_compare_exchange_n(&c->bytes, &b, b + bytes, true,
                                          __ATOMIC_SEQ_CST, __ATOMIC_RELAXED));
    return true;
}

bool pc__budget_room(const struct pc_cache *c, bool one_more, uint64_t bytes)
{
    /* Sequentially consistent loads, as the limit setters' stores and
     * pc__budget_take's swaps: a put that claimed room against an old
     * limit and then checks this after its insert, and a setter that
     * stores the new limit and then has its shrink check this, cannot
     * both miss the other (core.h). */
    size_t cap = __atomic_load_n(&c->capacity, __ATOMIC_SEQ_CST);
    uint64_t max = __atomic_load_n(&c->max_bytes, __ATOMIC_SEQ_CST);
    size_t n = __atomic_load_n(&c->count, __ATOMIC_SEQ_CST);
    uint64_t b = __atomic_load_n(&c->bytes, __ATOMIC_SEQ_CST);

    if (n + one_more > cap)
        return false;
    return max == 0 || (bytes <= max && b <= max - bytes);
}

void pc__budget_give(struct pc_cache *c, size_t entries, uint64_t bytes)
{
    if (entries != 0)
        __atomic_sub_fetch(&c->count, entries, __ATOMIC_RELAXED);
    if (bytes != 0)
        __atomic_sub_fetch(&c->bytes, bytes, __ATOMIC_RELAXED);
}
