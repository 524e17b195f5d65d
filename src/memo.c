/*
 * memo: the memoizer, the C form of the Python library's
 * cache(func, backend) decorator: get-or-load (load.h) over any backend,
 * with its own flight table and per-thread counters, plus the two-step
 * pc_memo_begin / pc_memo_finish that PC_MEMOIZE expands to.
 *
 * Concurrency: the memoizer itself is immutable after creation; its flight
 * table and counters carry their own synchronisation (flight.h, domain.h),
 * and the backend is called concurrently, as its contract allows.
 */
#include <pthread.h>
#include <string.h>

#include "alloc.h"
#include "backend.h"
#include "domain.h"
#include "load.h"

struct pc_memo {
    pc_backend be;
    pc_cache *cache; /* the backend is one of our caches (pc__backend_cache) */
    uint64_t ttl_ms; /* pc_memo_options.ttl_ms */
    struct pc__flight_table *flights;
    struct pc__domain dom; /* per-thread counters only */
};

#define OPS_V1_SIZE (offsetof(pc_backend_ops, destroy) + sizeof(void (*)(void)))

pc_status pc_memo_create_ex(const pc_backend *backend,
                            const pc_memo_options *opts, pc_memo **out)
{
    const pc_backend_ops *ops;
    pc_memo *m;

    if (backend == NULL || out == NULL || backend->ops == NULL)
        return PC_EINVAL;
    ops = backend->ops;
    if (ops->size < OPS_V1_SIZE || ops->get == NULL || ops->put == NULL ||
        ops->del == NULL || ops->len == NULL)
        return PC_EINVAL;
    if (opts != NULL && opts->ttl_ms != 0 && !pc__backend_has_put_ex(ops))
        return PC_EINVAL;
    m = pc__alloc(sizeof *m);
    if (m == NULL)
        return PC_ENOMEM;
    memset(m, 0, sizeof *m);
    m->be = *backend;
    m->cache = pc__backend_cache(backend);
    m->ttl_ms = opts != NULL ? opts->ttl_ms : 0;
    m->flights = pc__flight_table_create();
    if (m->flights == NULL) {
        pc__free(m, sizeof *m);
        return PC_ENOMEM;
    }
    if (!pc__domain_init(&m->dom)) {
        pc__flight_table_destroy(m->flights);
        pc__free(m, sizeof *m);
        return PC_ENOMEM;
    }
    *out = m;
    return PC_OK;
}

pc_status pc_memo_create(const pc_backend *backend, pc_memo **out)
{
    return pc_memo_create_ex(backend, NULL, out);
}

void pc_memo_destroy(pc_memo *m)
{
    int cs;

    if (m == NULL)
        return;
    /* A backend's destroy may wait (join its threads): not a place to be
     * cancelled half-way (purecache.h, "Cancellation"). */
    pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &cs);
    if (m->be.ops->destroy != NULL)
        m->be.ops->destroy(m->be.self);
    pc__flight_table_destroy(m->flights);
    pc__domain_fini(&m->dom);
    pc__free(m, sizeof *m);
    pthread_setcancelstate(cs, NULL);
}

static pc_status memo_ctx(pc_memo *m, struct pc__load_ctx *lc)
{
    struct pc__record *t = pc__domain_record(&m->dom);

    if (t == NULL)
        return PC_ENOMEM;
    *lc = (struct pc__load_ctx){.be = &m->be,
                                .cache = m->cache,
                                .ttl_ms = m->ttl_ms,
                                .flights = m->flights,
                                .stats = &t->stats,
                                .count_lookups = true,
                                .backend_cancels = m->cache == NULL};
    return PC_OK;
}

pc_status pc_memo_call(pc_memo *m, const void *key, size_t klen,
                       pc_loader_fn *load, void *ctx, void *buf, size_t bufcap,
                       size_t *vlen, int *load_err)
{
    struct pc__load_ctx lc;
    pc_status st;

    if (m == NULL || load == NULL || !pc__key_ok(key, klen) ||
        !pc__bytes_ok(buf, bufcap))
        return PC_EINVAL;
    st = memo_ctx(m, &lc);
    if (st != PC_OK)
        return st;
    return pc__load_through(&lc, key, klen, load, ctx, buf, bufcap, vlen,
                            load_err);
}

/* The public handle of a flight led through pc_memo_begin: the flight and
 * the key pc_memo_finish stores the value under. */
struct pc_flight {
    struct pc__flight *flight;
    pc_memo *memo; /* the memoizer that began it */
    size_t klen;
    unsigned char key[];
};

pc_status pc_memo_begin(pc_memo *m, const void *key, size_t klen, void *buf,
                        size_t bufcap, size_t *vlen, int *load_err,
                        pc_flight **lead)
{
    pc_flight *l;
    struct pc__flight *f;
    struct pc__load_ctx lc;
    pc_status st;

    if (lead != NULL)
        *lead = NULL;
    if (m == NULL || lead == NULL || !pc__key_ok(key, klen) ||
        !pc__bytes_ok(buf, bufcap))
        return PC_EINVAL;
    st = memo_ctx(m, &lc);
    if (st != PC_OK)
        return st;
    /* The note that carries the key to pc_memo_finish is allocated first,
     * so that once this thread leads a flight nothing can fail. */
    l = pc__alloc(sizeof *l + klen);
    if (l == NULL)
        return PC_ENOMEM;
    st = pc__load_lookup_or_lead(&lc, key, klen, buf, bufcap, vlen, load_err,
                                 &f);
    if (f == NULL) {
        pc__free(l, sizeof *l + klen);
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
    struct pc__load_ctx lc;
    pc_status st;

    if (m == NULL || l == NULL || l->memo != m)
        return PC_EINVAL;
    if (err == 0 && !pc__value_ok(val, vlen))
        err = -1; /* an unusable value is a failed load, not a hang */
    if (memo_ctx(m, &lc) != PC_OK) {
        /* Cannot count it; still complete the flight for the waiters. */
        struct pc__record_stats scratch = {0};

        lc = (struct pc__load_ctx){.be = &m->be,
                                   .cache = m->cache,
                                   .ttl_ms = m->ttl_ms,
                                   .flights = m->flights,
                                   .stats = &scratch,
                                   .backend_cancels = m->cache == NULL};
    }
    st = pc__load_finish(&lc, l->flight, l->key, l->klen, err, val, vlen);
    pc__free(l, sizeof *l + l->klen);
    return st;
}

pc_status pc_memo_forget(pc_memo *m, const void *key, size_t klen)
{
    pc_status st;
    int cs;

    if (m == NULL || !pc__key_ok(key, klen))
        return PC_EINVAL;
    pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &cs);
    /* A load of this key in flight keeps nothing (flight.h,
     * "Forgetting"); then whatever is stored goes. */
    pc__flight_forget(m->flights, key, klen);
    st = m->be.ops->del(m->be.self, key, klen);
    pthread_setcancelstate(cs, NULL);
    return st;
}

pc_status pc_memo_stats(pc_memo *m, pc_stats *out)
{
    struct pc__record_stats ts = {0};

    if (m == NULL || out == NULL)
        return PC_EINVAL;
    pc__domain_sum_stats(&m->dom, &ts);
    memset(out, 0, sizeof *out);
    out->hits = ts.hits;
    out->misses = ts.misses;
    out->loader_calls = ts.loader_calls;
    out->loader_errors = ts.loader_errors;
    return PC_OK;
}
