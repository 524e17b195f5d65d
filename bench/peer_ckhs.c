/*
 * peer_ckhs: raw Concurrency Kit ck_hs lookups, the ceiling for purecache's
 * read path.
 *
 * A ck_hs in SPMC + OBJECT mode (the mode purecache's index uses) holding
 * pointers to 16-byte {key, value} records. It never evicts and does no
 * recency bookkeeping. The harness pre-fills it with the C hottest keys of
 * the workload (the content an ideal cache of capacity C would hold), so its
 * hit ratio and table size match a full cache of the same capacity, and it
 * runs only the read-only mix: get = hash, ck_hs_get, compare through the
 * callback, copy the value.
 *
 * No epoch section: nothing is ever removed or freed while readers run (the
 * table is filled before the timed region and destroyed after it), so the
 * section would protect nothing. Leaving it out makes this the true ceiling:
 * the difference to purecache's CLOCK get is exactly what purecache adds
 * (public API checks, thread record lookup, epoch section, reference bit,
 * keyed hash, statistics).
 *
 * put exists only so the harness can pre-fill it: it takes a global mutex
 * (single writer, as SPMC requires) and must not run concurrently with
 * readers that could see a table being freed; the harness never does that.
 */
#include <ck_hs.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>

#include "peer.h"

struct kvrec {
    uint64_t key, val;
};

struct ckhs_peer {
    ck_hs_t hs;
    pthread_mutex_t lock;
};

static void *hs_malloc(size_t n)
{
    return malloc(n);
}

static void hs_free(void *p, size_t n, bool defer)
{
    (void)n;
    (void)defer; /* no reader runs while the table changes (see top) */
    free(p);
}

static struct ck_malloc hs_alloc = {.malloc = hs_malloc, .free = hs_free};

static unsigned long rec_hash(const void *obj, unsigned long seed)
{
    return (unsigned long)bench_hash64(((const struct kvrec *)obj)->key ^ seed);
}

static bool rec_compare(const void *a, const void *b)
{
    return ((const struct kvrec *)a)->key == ((const struct kvrec *)b)->key;
}

static void *ckhs_create(void *ctx, size_t capacity)
{
    struct ckhs_peer *p = malloc(sizeof *p);

    (void)ctx;
    if (p == NULL)
        return NULL;
    if (!ck_hs_init(&p->hs, CK_HS_MODE_SPMC | CK_HS_MODE_OBJECT, rec_hash,
                    rec_compare, &hs_alloc, 2 * capacity + 2, 0)) {
        free(p);
        return NULL;
    }
    pthread_mutex_init(&p->lock, NULL);
    return p;
}

static void ckhs_destroy(void *h)
{
    struct ckhs_peer *p = h;
    ck_hs_iterator_t it = CK_HS_ITERATOR_INITIALIZER;
    void *obj;

    while (ck_hs_next(&p->hs, &it, &obj))
        free(obj);
    ck_hs_destroy(&p->hs);
    pthread_mutex_destroy(&p->lock);
    free(p);
}

static int ckhs_get(void *h, uint64_t key, uint64_t *val)
{
    struct ckhs_peer *p = h;
    struct kvrec probe = {.key = key};
    const struct kvrec *r;

    r = ck_hs_get(&p->hs, CK_HS_HASH(&p->hs, rec_hash, &probe), &probe);
    if (r == NULL)
        return 0;
    *val = r->val;
    return 1;
}

static void ckhs_put(void *h, uint64_t key, uint64_t val)
{
    struct ckhs_peer *p = h;
    struct kvrec *r = malloc(sizeof *r);
    void *old = NULL;

    if (r == NULL)
        return;
    r->key = key;
    r->val = val;
    pthread_mutex_lock(&p->lock);
    if (!ck_hs_set(&p->hs, CK_HS_HASH(&p->hs, rec_hash, r), r, &old))
        old = r;
    pthread_mutex_unlock(&p->lock);
    free(old);
}

int peer_ckhs(struct bench_peer *p)
{
    *p = (struct bench_peer){
        .name = "ck_hs",
        .what = "raw ck_hs SPMC lookups, C hottest keys, no eviction "
                "(read-path ceiling)",
        .caps = PEER_GET, /* put: pre-fill only, never concurrent */
        .create = ckhs_create,
        .destroy = ckhs_destroy,
        .get = ckhs_get,
        .put = ckhs_put,
    };
    return 0;
}
