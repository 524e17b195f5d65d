/*
 * load: the loader's sink, get-or-load over a backend (algorithm in
 * load.h), and pc_get_or_load on the cache itself.
 */
#include "load.h"

#include <errno.h>
#include <pthread.h>
#include <string.h>

#include "alloc.h"
#include "backend.h"
#include "core.h"
#include "policy.h"

/* The loader's value so far. A failing pc_sink_set leaves it as it was:
 * the loader, told PC_ENOMEM, decides whether to fail the load or to go on
 * with the value it set before. */
struct pc_sink {
    unsigned char *data;
    size_t len, cap;
    unsigned char inline_[128];
};

static void sink_init(struct pc_sink *s)
{
    s->data = s->inline_;
    s->len = 0;
    s->cap = sizeof s->inline_;
}

static void sink_free(struct pc_sink *s)
{
    if (s->data != s->inline_)
        pc__free(s->data, s->cap);
}

pc_status pc_sink_set(pc_sink *s, const void *val, size_t vlen)
{
    if (s == NULL || !pc__value_ok(val, vlen))
        return PC_EINVAL;
    if (vlen > s->cap) {
        unsigned char *p = pc__alloc(vlen);

        if (p == NULL)
            return PC_ENOMEM; /* the previous value stays */
        sink_free(s);
        s->data = p;
        s->cap = vlen;
    }
    if (vlen)
        memcpy(s->data, val, vlen);
    s->len = vlen;
    return PC_OK;
}

/* Cancellation off for a step that must not stop half-way (load.h). */
static int cancel_off(void)
{
    int old;

    pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &old);
    return old;
}

static void cancel_restore(int old)
{
    pthread_setcancelstate(old, NULL);
}

/* Look key up: through the backend's get, or, in one of our caches,
 * through the policy, uncounted (count_first counts the call's first). */
static pc_status backend_get(const struct pc__load_ctx *lc, const void *key,
                             size_t klen, void *buf, size_t bufcap,
                             size_t *vlen)
{
    if (lc->cache != NULL)
        return pc__policy_get(lc->cache, key, klen, buf, bufcap, vlen, false);
    return lc->be->ops->get(lc->be->self, key, klen, buf, bufcap, vlen);
}

/* The call's first lookup, counted once as one pc_get would count it: in
 * the memoizer's counters (count_lookups) and in those of the cache it
 * went through (cache: that thread's record, found before the flight is
 * joined, so the count under the flight table's lock only increments). A
 * miss is counted once the call can no longer fail for memory before it
 * reaches a load (as its flight is joined: flight.h), so a call that
 * returns PC_ENOMEM without having started or waited on a load counts
 * nothing. */
struct first_lookup {
    const struct pc__load_ctx *lc;
    struct pc__record_stats *cache;
    bool counted;
};

static void count_first(struct first_lookup *fl, bool hit)
{
    const struct pc__load_ctx *lc = fl->lc;

    if (fl->counted)
        return;
    fl->counted = true;
    if (lc->count_lookups) {
        if (hit)
            PC__COUNTER_INC(lc->stats->hits);
        else
            PC__COUNTER_INC(lc->stats->misses);
    }
    if (fl->cache != NULL) {
        if (hit)
            PC__COUNTER_INC(fl->cache->hits);
        else
            PC__COUNTER_INC(fl->cache->misses);
    }
}

static void count_first_miss(void *fl)
{
    count_first(fl, false);
}

static void lease_end(const struct pc__load_ctx *lc, struct pc__flight *lead)
{
    if (lc->cache != NULL)
        pc__policy_lease_end(lc->cache, pc__flight_lease(lead));
}

/* This thread leads the flight: look once more, with nothing to cancel
 * between the flight's start and the loader's call or the abandon. In one
 * of our caches the lease is taken first (write.h): a write of the key
 * from here on keeps the loaded value out of the cache. */
static pc_status recheck_as_leader(const struct pc__load_ctx *lc,
                                   const void *key, size_t klen, void *buf,
                                   size_t bufcap, size_t *vlen,
                                   struct pc__flight **lead)
{
    int cs = cancel_off();
    pc_status st;

    if (lc->cache != NULL)
        pc__policy_lease_begin(lc->cache,
                               pc__hash_key(&lc->cache->seed, key, klen),
                               pc__flight_lease(*lead));
    st = backend_get(lc, key, klen, buf, bufcap, vlen);
    if (st != PC_NOTFOUND) {
        lease_end(lc, *lead);
        pc__flight_abandon(lc->flights, *lead);
        *lead = NULL;
    }
    cancel_restore(cs);
    return st; /* PC_NOTFOUND with *lead set: load it */
}

static pc_status lookup_or_lead(const struct pc__load_ctx *lc, const void *key,
                                size_t klen, void *buf, size_t bufcap,
                                size_t *vlen, int *load_err,
                                struct pc__flight **lead)
{
    struct first_lookup first = {lc, NULL, false};
    struct pc__flight_join join = {count_first_miss, &first};

    *lead = NULL;
    if (lc->cache != NULL) {
        struct pc__record *t = pc__core_record(lc->cache);

        if (t == NULL)
            return PC_ENOMEM; /* (the lookup would fail the same way) */
        first.cache = &t->stats;
    }
    for (;;) {
        enum pc__flight_role role;
        pc_status st, out = PC_OK;

        st = backend_get(lc, key, klen, buf, bufcap, vlen);
        if (st != PC_NOTFOUND) {
            /* A failed lookup (the backend's, or no memory for this
             * thread's record) is not counted. */
            if (st == PC_OK || st == PC_ERANGE)
                count_first(&first, true);
            return st;
        }
        st = pc__flight_begin(lc->flights, key, klen, &join, &role, lead, buf,
                              bufcap, vlen, load_err, &out);
        if (st != PC_OK)
            return st;
        if (role == PC__FLIGHT_FOLLOWER)
            return out;
        if (role == PC__FLIGHT_RETRY)
            continue;
        return recheck_as_leader(lc, key, klen, buf, bufcap, vlen, lead);
    }
}

pc_status pc__load_lookup_or_lead(const struct pc__load_ctx *lc,
                                  const void *key, size_t klen, void *buf,
                                  size_t bufcap, size_t *vlen, int *load_err,
                                  struct pc__flight **lead)
{
    pc_status st;
    int cs;

    if (!lc->backend_cancels)
        return lookup_or_lead(lc, key, klen, buf, bufcap, vlen, load_err, lead);
    cs = cancel_off();
    st = lookup_or_lead(lc, key, klen, buf, bufcap, vlen, load_err, lead);
    cancel_restore(cs);
    return st;
}

/* Store the loaded value: in one of our caches under the flight's lease
 * (a put that stores nothing if a write of the key broke it, and that
 * unregisters it whatever happens), its removals left in *rm and *w for
 * the caller to report (true); else through the backend, with the load's
 * time to live if the backend takes one (false). */
static bool store(const struct pc__load_ctx *lc, struct pc__flight *lead,
                  const void *key, size_t klen, const void *val, size_t vlen,
                  struct pc__removals *rm, struct pc__writer **w)
{
    const pc_backend *be = lc->be;

    if (lc->cache != NULL) {
        pc_cache *c = lc->cache;
        struct pc__put_req req = {.expires = pc__core_expires(c, lc->ttl_ms),
                                  .lease = pc__flight_lease(lead)};

        pc__removals_init(rm, c);
        *w = NULL;
        (void)pc__policy_put(c, pc__hash_key(&c->seed, key, klen), key, klen,
                             val, vlen, &req, rm, w);
        return true;
    } else if (lc->ttl_ms != 0 && pc__backend_has_put_ex(be->ops)) {
        pc_put_args args = {.ttl_ms = lc->ttl_ms};

        (void)be->ops->put_ex(be->self, key, klen, val, vlen, &args);
    } else {
        (void)be->ops->put(be->self, key, klen, val, vlen);
    }
    return false;
}

pc_status pc__load_finish(const struct pc__load_ctx *lc,
                          struct pc__flight *lead, const void *key, size_t klen,
                          int err, const void *val, size_t vlen)
{
    int cs = cancel_off();
    struct pc__removals rm;
    struct pc__writer *w = NULL;
    bool report = false;

    PC__COUNTER_INC(lc->stats->loader_calls);
    if (err != 0) {
        PC__COUNTER_INC(lc->stats->loader_errors);
        lease_end(lc, lead);
        pc__flight_finish(lc->flights, lead, PC_ELOAD, err, NULL, 0);
        cancel_restore(cs);
        return PC_ELOAD;
    }
    /* A failed store still gives everyone the value; it is just not kept.
     * A forgotten flight (pc_memo_forget) hands it over, stores nothing. */
    if (pc__flight_store_begin(lead)) {
        report = store(lc, lead, key, klen, val, vlen, &rm, &w);
        pc__flight_store_end(lead);
    } else {
        lease_end(lc, lead);
    }
    pc__flight_finish(lc->flights, lead, PC_OK, 0, val, vlen);
    /* The listener hears of the store's removals once the load has ended
     * (store, then flight): it may call pc_memo_forget of the key, which
     * waits for stores of it to end, or pc_get_or_load of a key this
     * load's store evicted, or of this key, which joined this thread's own
     * flight (PC_EDEADLK; inside the store, forget waited for ever); and
     * the load's waiters do not wait for the listener (they did, though
     * the header says a waiter waits for the loader only). */
    if (report)
        pc__removals_finish(lc->cache, &rm, w);
    cancel_restore(cs);
    return PC_OK;
}

/* What the cleanup handler of a running loader needs. */
struct loading {
    const struct pc__load_ctx *lc;
    struct pc__flight *lead;
    struct pc_sink *sink;
};

/* The leader was cancelled inside its loader: fail the flight for its
 * waiters (they must not wait for ever), as a loader error ECANCELED. */
static void loader_cancelled(void *p)
{
    struct loading *l = p;

    pc__load_finish(l->lc, l->lead, NULL, 0, ECANCELED, NULL, 0);
    sink_free(l->sink);
}

pc_status pc__load_through(const struct pc__load_ctx *lc, const void *key,
                           size_t klen, pc_loader_fn *load, void *ctx,
                           void *buf, size_t bufcap, size_t *vlen,
                           int *load_err)
{
    struct pc__flight *lead;
    struct pc_sink sink;
    struct loading loading;
    pc_status st;
    int err;

    st = pc__load_lookup_or_lead(lc, key, klen, buf, bufcap, vlen, load_err,
                                 &lead);
    if (lead == NULL)
        return st;
    sink_init(&sink);
    loading = (struct loading){lc, lead, &sink};
    pthread_cleanup_push(loader_cancelled, &loading);
    err = load(ctx, key, klen, &sink);
    pthread_cleanup_pop(0);
    st = pc__load_finish(lc, lead, key, klen, err, sink.data, sink.len);
    if (st == PC_OK)
        st = pc__copy_out(sink.data, sink.len, buf, bufcap, vlen);
    else if (load_err != NULL)
        *load_err = err;
    sink_free(&sink);
    return st;
}

pc_status pc_get_or_load_ex(pc_cache *cache, const void *key, size_t klen,
                            pc_loader_fn *load, void *ctx, void *buf,
                            size_t bufcap, size_t *vlen, int *load_err,
                            const pc_load_args *args)
{
    pc_backend be;
    struct pc__record *t;
    struct pc__load_ctx lc;

    if (cache == NULL || load == NULL || !pc__key_ok(key, klen) ||
        !pc__bytes_ok(buf, bufcap))
        return PC_EINVAL;
    t = pc__core_record(cache);
    if (t == NULL)
        return PC_ENOMEM;
    pc__backend_of_cache(cache, &be);
    lc = (struct pc__load_ctx){.be = &be,
                               .cache = cache,
                               .ttl_ms = args != NULL ? args->ttl_ms : 0,
                               .flights = cache->flights,
                               .stats = &t->stats,
                               .count_lookups = false};
    return pc__load_through(&lc, key, klen, load, ctx, buf, bufcap, vlen,
                            load_err);
}

pc_status pc_get_or_load(pc_cache *cache, const void *key, size_t klen,
                         pc_loader_fn *load, void *ctx, void *buf,
                         size_t bufcap, size_t *vlen, int *load_err)
{
    return pc_get_or_load_ex(cache, key, klen, load, ctx, buf, bufcap, vlen,
                             load_err, NULL);
}
