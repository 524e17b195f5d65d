/*
 * memo: get-or-load with single flight, the backend interface, and the
 * memoizer (the C form of the seed's cache(func, backend) decorator).
 *
 * Algorithm (load_through, shared by pc_get_or_load and pc_memo_call):
 *   1. Look the key up in the backend. A hit, even of an empty value, is
 *      returned as is: unlike the seed, "nothing" is a value.
 *   2. On a miss, join or start the key's flight (flight.h). A follower waits
 *      and takes the leader's outcome.
 *   3. The leader looks the key up once more (a previous leader may have
 *      stored it and left the table in between); if it is there, the flight
 *      ends with FLIGHT_RETRY and followers look it up themselves.
 *   4. Otherwise it runs the loader with no lock held, stores the value in
 *      the backend on success (before the flight leaves the table, so a
 *      later miss finds it stored), then completes the flight for the
 *      waiters. A loader error is handed to the leader and every waiter and
 *      nothing is stored.
 *
 * Statistics: loader calls and errors (and, for a memoizer, its hits and
 * misses) go to per-thread counters (struct pc_thread_stats: the cache's own
 * epoch records, or a memoizer's private pc_domain), summed on read, so the
 * hit path writes no shared line.
 *
 * Concurrency: backends are called concurrently from any thread (their
 * contract); the flight table serialises only the miss path of each key.
 */
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "epoch.h"
#include "flight.h"
#include "policy.h"

struct pc_sink {
    unsigned char *data;
    size_t len, cap;
    int err;
    unsigned char inline_[128];
};

struct pc_memo {
    pc_backend be;
    struct pc_flights *flights;
    struct pc_domain dom; /* per-thread counters only */
};

static void sink_init(struct pc_sink *s)
{
    s->data = s->inline_;
    s->len = 0;
    s->cap = sizeof s->inline_;
    s->err = 0;
}

static void sink_free(struct pc_sink *s)
{
    if (s->data != s->inline_)
        pc_free(s->data, s->cap);
}

pc_status pc_sink_set(pc_sink *s, const void *val, size_t vlen)
{
    if (s == NULL || (val == NULL && vlen > 0) || vlen > PC_VALUE_MAX)
        return PC_EINVAL;
    if (vlen > s->cap) {
        unsigned char *p = pc_alloc(vlen);

        if (p == NULL) {
            s->err = 1;
            return PC_ENOMEM;
        }
        sink_free(s);
        s->data = p;
        s->cap = vlen;
    }
    if (vlen)
        memcpy(s->data, val, vlen);
    s->len = vlen;
    s->err = 0;
    return PC_OK;
}

static pc_status copy_out(const void *val, size_t n, void *buf, size_t bufcap,
                          size_t *vlen)
{
    if (vlen != NULL)
        *vlen = n;
    if (n > bufcap)
        return PC_ERANGE;
    if (n)
        memcpy(buf, val, n);
    return PC_OK;
}

/* What load_through works on. */
struct load_ctx {
    const pc_backend *be;
    struct pc_flights *flights;
    struct pc_thread_stats *stats;
    bool count_lookups; /* the backend does not count hits/misses itself */
};

/* Steps 1-3 above: PC_NOTFOUND with *lead set means "this thread loads". */
static pc_status lookup_or_lead(const struct load_ctx *lc, const void *key,
                                size_t klen, void *buf, size_t bufcap,
                                size_t *vlen, int *load_err,
                                struct sf_flight **lead)
{
    bool count = lc->count_lookups; /* one hit or miss per call */

    *lead = NULL;
    for (;;) {
        enum flight_role role;
        pc_status st, out = PC_OK;

        st = lc->be->ops->get(lc->be->self, key, klen, buf, bufcap, vlen);
        if (count && st != PC_NOTFOUND && st != PC_OK && st != PC_ERANGE)
            return st; /* the backend failed: not a lookup */
        if (count && st == PC_NOTFOUND)
            PC_COUNTER_INC(lc->stats->misses);
        else if (count)
            PC_COUNTER_INC(lc->stats->hits);
        count = false;
        if (st != PC_NOTFOUND)
            return st;
        st = flight_begin(lc->flights, key, klen, &role, lead, buf, bufcap,
                          vlen, load_err, &out);
        if (st != PC_OK)
            return st;
        if (role == FLIGHT_FOLLOWER)
            return out;
        if (role == FLIGHT_AGAIN)
            continue;
        st = lc->be->ops->get(lc->be->self, key, klen, buf, bufcap, vlen);
        if (st == PC_NOTFOUND)
            return PC_NOTFOUND; /* *lead is set: load it */
        flight_finish(lc->flights, *lead, FLIGHT_RETRY, 0, NULL, 0);
        *lead = NULL;
        return st;
    }
}

/* Step 4 for a value the leader has (err == 0) or an error of its own. */
static pc_status finish_lead(const struct load_ctx *lc, struct sf_flight *lead,
                             const void *key, size_t klen, int err,
                             const void *val, size_t vlen)
{
    PC_COUNTER_INC(lc->stats->loader_calls);
    if (err != 0) {
        PC_COUNTER_INC(lc->stats->loader_errors);
        flight_finish(lc->flights, lead, PC_ELOAD, err, NULL, 0);
        return PC_ELOAD;
    }
    /* A failed store still gives everyone the value; it is just not kept. */
    (void)lc->be->ops->put(lc->be->self, key, klen, val, vlen);
    flight_finish(lc->flights, lead, PC_OK, 0, val, vlen);
    return PC_OK;
}

static pc_status load_through(const struct load_ctx *lc, const void *key,
                              size_t klen, pc_loader_fn *load, void *ctx,
                              void *buf, size_t bufcap, size_t *vlen,
                              int *load_err)
{
    struct sf_flight *lead;
    struct pc_sink sink;
    pc_status st;
    int err;

    st = lookup_or_lead(lc, key, klen, buf, bufcap, vlen, load_err, &lead);
    if (lead == NULL)
        return st;
    sink_init(&sink);
    err = load(ctx, key, klen, &sink);
    if (err == 0 && sink.err != 0) {
        /* The loader's value could not be copied; store nothing. */
        PC_COUNTER_INC(lc->stats->loader_calls);
        flight_finish(lc->flights, lead, PC_ENOMEM, 0, NULL, 0);
        sink_free(&sink);
        return PC_ENOMEM;
    }
    st = finish_lead(lc, lead, key, klen, err, sink.data, sink.len);
    if (st == PC_OK)
        st = copy_out(sink.data, sink.len, buf, bufcap, vlen);
    else if (load_err != NULL)
        *load_err = err;
    sink_free(&sink);
    return st;
}

/* ---- the built-in cache as a backend ---- */

static pc_status cache_get(void *self, const void *key, size_t klen, void *buf,
                           size_t bufcap, size_t *vlen)
{
    return pc_get(self, key, klen, buf, bufcap, vlen);
}

static pc_status cache_put(void *self, const void *key, size_t klen,
                           const void *val, size_t vlen)
{
    return pc_put(self, key, klen, val, vlen);
}

static pc_status cache_del(void *self, const void *key, size_t klen)
{
    return pc_delete(self, key, klen);
}

static size_t cache_len(void *self)
{
    return pc_len(self);
}

static void cache_destroy(void *self)
{
    pc_destroy(self);
}

static const pc_backend_ops cache_ops = {
    .size = sizeof(pc_backend_ops),
    .get = cache_get,
    .put = cache_put,
    .del = cache_del,
    .len = cache_len,
    .destroy = cache_destroy,
};

pc_status pc_backend_from_cache(pc_cache *cache, pc_backend *out)
{
    if (cache == NULL || out == NULL)
        return PC_EINVAL;
    out->ops = &cache_ops;
    out->self = cache;
    return PC_OK;
}

static int key_args_ok(const void *key, size_t klen, const void *buf,
                       size_t bufcap)
{
    return (key != NULL || klen == 0) && klen <= PC_KEY_MAX &&
           (buf != NULL || bufcap == 0);
}

pc_status pc_get_or_load(pc_cache *cache, const void *key, size_t klen,
                         pc_loader_fn *load, void *ctx, void *buf,
                         size_t bufcap, size_t *vlen, int *load_err)
{
    pc_backend be = {.ops = &cache_ops, .self = cache};
    struct pc_thread *t;
    struct load_ctx lc;

    if (cache == NULL || load == NULL || !key_args_ok(key, klen, buf, bufcap))
        return PC_EINVAL;
    t = policy_thread(cache);
    if (t == NULL)
        return PC_ENOMEM;
    lc = (struct load_ctx){.be = &be,
                           .flights = policy_flights(cache),
                           .stats = &t->stats,
                           .count_lookups = false};
    return load_through(&lc, key, klen, load, ctx, buf, bufcap, vlen, load_err);
}

/* ---- the memoizer ---- */

#define OPS_V1_SIZE (offsetof(pc_backend_ops, destroy) + sizeof(void (*)(void)))

pc_status pc_memo_create(const pc_backend *backend, pc_memo **out)
{
    const pc_backend_ops *ops;
    pc_memo *m;

    if (backend == NULL || out == NULL || backend->ops == NULL)
        return PC_EINVAL;
    ops = backend->ops;
    if (ops->size < OPS_V1_SIZE || ops->get == NULL || ops->put == NULL ||
        ops->del == NULL || ops->len == NULL)
        return PC_EINVAL;
    m = pc_alloc(sizeof *m);
    if (m == NULL)
        return PC_ENOMEM;
    memset(m, 0, sizeof *m);
    m->be = *backend;
    m->flights = flights_create();
    if (m->flights == NULL) {
        pc_free(m, sizeof *m);
        return PC_ENOMEM;
    }
    if (domain_init(&m->dom) != 0) {
        flights_destroy(m->flights);
        pc_free(m, sizeof *m);
        return PC_ENOMEM;
    }
    *out = m;
    return PC_OK;
}

void pc_memo_destroy(pc_memo *m)
{
    if (m == NULL)
        return;
    if (m->be.ops->destroy != NULL)
        m->be.ops->destroy(m->be.self);
    flights_destroy(m->flights);
    domain_fini(&m->dom);
    pc_free(m, sizeof *m);
}

static pc_status memo_ctx(pc_memo *m, struct load_ctx *lc)
{
    struct pc_thread *t = domain_thread(&m->dom);

    if (t == NULL)
        return PC_ENOMEM;
    *lc = (struct load_ctx){.be = &m->be,
                            .flights = m->flights,
                            .stats = &t->stats,
                            .count_lookups = true};
    return PC_OK;
}

pc_status pc_memo_call(pc_memo *m, const void *key, size_t klen,
                       pc_loader_fn *load, void *ctx, void *buf, size_t bufcap,
                       size_t *vlen, int *load_err)
{
    struct load_ctx lc;
    pc_status st;

    if (m == NULL || load == NULL || !key_args_ok(key, klen, buf, bufcap))
        return PC_EINVAL;
    st = memo_ctx(m, &lc);
    if (st != PC_OK)
        return st;
    return load_through(&lc, key, klen, load, ctx, buf, bufcap, vlen, load_err);
}

/* The public handle of a flight led through pc_memo_begin: the flight and
 * the key pc_memo_finish stores the value under. */
struct pc_flight {
    struct sf_flight *flight;
    pc_memo *memo; /* the memoizer that began it */
    size_t klen;
    unsigned char key[];
};

pc_status pc_memo_begin(pc_memo *m, const void *key, size_t klen, void *buf,
                        size_t bufcap, size_t *vlen, int *load_err,
                        pc_flight **lead)
{
    pc_flight *l;
    struct sf_flight *f;
    struct load_ctx lc;
    pc_status st;

    if (lead != NULL)
        *lead = NULL;
    if (m == NULL || lead == NULL || !key_args_ok(key, klen, buf, bufcap))
        return PC_EINVAL;
    st = memo_ctx(m, &lc);
    if (st != PC_OK)
        return st;
    /* The note that carries the key to pc_memo_finish is allocated first,
     * so that once this thread leads a flight nothing can fail. */
    l = pc_alloc(sizeof *l + klen);
    if (l == NULL)
        return PC_ENOMEM;
    st = lookup_or_lead(&lc, key, klen, buf, bufcap, vlen, load_err, &f);
    if (f == NULL) {
        pc_free(l, sizeof *l + klen);
        return st;
    }
    l->flight = f;
    l->memo = m;
    l->klen = klen;
    if (klen)
        memcpy(l->key, key, klen);
    *lead = l;
    return PC_NOTFOUND;
}

pc_status pc_memo_finish(pc_memo *m, pc_flight *lead, int err, const void *val,
                         size_t vlen)
{
    pc_flight *l = lead;
    struct load_ctx lc;
    pc_status st;

    if (m == NULL || l == NULL || l->memo != m)
        return PC_EINVAL;
    if (err == 0 && ((val == NULL && vlen > 0) || vlen > PC_VALUE_MAX))
        err = -1; /* an unusable value is a failed load, not a hang */
    if (memo_ctx(m, &lc) != PC_OK) {
        /* Cannot count it; still complete the flight for the waiters. */
        struct pc_thread_stats scratch = {0};

        lc = (struct load_ctx){
            .be = &m->be, .flights = m->flights, .stats = &scratch};
    }
    st = finish_lead(&lc, l->flight, l->key, l->klen, err, val, vlen);
    pc_free(l, sizeof *l + l->klen);
    return st;
}

pc_status pc_memo_stats(pc_memo *m, pc_stats *out)
{
    struct pc_thread_stats ts = {0};

    if (m == NULL || out == NULL)
        return PC_EINVAL;
    domain_sum_stats(&m->dom, &ts);
    memset(out, 0, sizeof *out);
    out->hits = ts.hits;
    out->misses = ts.misses;
    out->loader_calls = ts.loader_calls;
    out->loader_errors = ts.loader_errors;
    return PC_OK;
}
