/*
 * peer_mutex_lru: the seed's design in C, and the same striped over 64 locks.
 *
 * mutex-lru: one pthread mutex around a chained hash table plus a doubly
 * linked recency list (the C equivalent of the Python seed's OrderedDict
 * under an asyncio lock). get: lock, find, move to the front, copy, unlock.
 * put: lock; replace and move to front if present (a use, never an
 * eviction), else unlink the tail (the least recently used) when full and
 * reuse its node, else allocate one; link at the front; unlock. This is the
 * textbook exact LRU, so single-threaded it is also the reference model the
 * trace mode compares purecache's exact-LRU policy against, op for op.
 *
 * striped-lru: 64 independent mutex-lru instances, each of capacity C/64
 * (the remainder spread over the first stripes), a key's stripe chosen by
 * its hash's high bits. It trades exactness (LRU per stripe, not global)
 * for 64x less lock contention: the usual "just shard it" answer.
 *
 * Concurrency: everything of an instance is under its mutex; nodes are
 * reused or freed only under it, and no pointer into an instance escapes a
 * call. Instances are cache-line aligned so stripes do not false-share.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "peer.h"

#define STRIPES 64

struct lru_node {
    uint64_t key, val;
    struct lru_node *prev, *next; /* recency list, most recent first */
    struct lru_node *hnext;       /* hash chain */
};

struct mlru {
    pthread_mutex_t lock;
    size_t cap, count, mask;
    struct lru_node **bucket;
    struct lru_node head; /* sentinel: head.next most, head.prev least */
} __attribute__((aligned(64)));

struct striped {
    struct mlru *s;
    unsigned n;
};

static int mlru_init(struct mlru *m, size_t cap)
{
    size_t nb = 16;

    while (nb < cap + cap / 2)
        nb <<= 1;
    memset(m, 0, sizeof *m);
    m->bucket = calloc(nb, sizeof *m->bucket);
    if (m->bucket == NULL)
        return -1;
    m->mask = nb - 1;
    m->cap = cap ? cap : 1;
    m->head.next = m->head.prev = &m->head;
    pthread_mutex_init(&m->lock, NULL);
    return 0;
}

static void mlru_fini(struct mlru *m)
{
    struct lru_node *n = m->head.next;

    while (n != &m->head) {
        struct lru_node *next = n->next;

        free(n);
        n = next;
    }
    free(m->bucket);
    pthread_mutex_destroy(&m->lock);
}

static inline void list_unlink(struct lru_node *n)
{
    n->prev->next = n->next;
    n->next->prev = n->prev;
}

static inline void list_push_front(struct mlru *m, struct lru_node *n)
{
    n->prev = &m->head;
    n->next = m->head.next;
    m->head.next->prev = n;
    m->head.next = n;
}

static inline struct lru_node **chain_of(struct mlru *m, uint64_t h)
{
    return &m->bucket[h & m->mask];
}

static struct lru_node *mlru_find(struct mlru *m, uint64_t h, uint64_t key)
{
    struct lru_node *n = *chain_of(m, h);

    while (n != NULL && n->key != key)
        n = n->hnext;
    return n;
}

static int mlru_get(struct mlru *m, uint64_t h, uint64_t key, uint64_t *val)
{
    struct lru_node *n;

    pthread_mutex_lock(&m->lock);
    n = mlru_find(m, h, key);
    if (n != NULL) {
        if (m->head.next != n) {
            list_unlink(n);
            list_push_front(m, n);
        }
        *val = n->val;
    }
    pthread_mutex_unlock(&m->lock);
    return n != NULL;
}

static void chain_remove(struct mlru *m, struct lru_node *victim)
{
    struct lru_node **pp = chain_of(m, bench_hash64(victim->key));

    while (*pp != victim)
        pp = &(*pp)->hnext;
    *pp = victim->hnext;
}

static void mlru_put(struct mlru *m, uint64_t h, uint64_t key, uint64_t val)
{
    struct lru_node *n;

    pthread_mutex_lock(&m->lock);
    n = mlru_find(m, h, key);
    if (n != NULL) {
        n->val = val;
        list_unlink(n);
    } else {
        if (m->count == m->cap) {
            n = m->head.prev;
            list_unlink(n);
            chain_remove(m, n);
        } else {
            n = malloc(sizeof *n);
            if (n == NULL) {
                pthread_mutex_unlock(&m->lock);
                return;
            }
            m->count++;
        }
        n->key = key;
        n->val = val;
        n->hnext = *chain_of(m, h);
        *chain_of(m, h) = n;
    }
    list_push_front(m, n);
    pthread_mutex_unlock(&m->lock);
}

/* ---- one lock ---- */

static void *one_create(void *ctx, size_t cap)
{
    struct mlru *m = aligned_alloc(64, sizeof *m);

    (void)ctx;
    if (m == NULL || mlru_init(m, cap) != 0) {
        free(m);
        return NULL;
    }
    return m;
}

static void one_destroy(void *h)
{
    mlru_fini(h);
    free(h);
}

static int one_get(void *h, uint64_t key, uint64_t *val)
{
    return mlru_get(h, bench_hash64(key), key, val);
}

static void one_put(void *h, uint64_t key, uint64_t val)
{
    mlru_put(h, bench_hash64(key), key, val);
}

int peer_mutex_lru(struct bench_peer *p)
{
    *p = (struct bench_peer){
        .name = "mutex-lru",
        .what = "mutex + hash + doubly linked list exact LRU (the seed's "
                "design)",
        .caps = PEER_GET | PEER_PUT | PEER_EVICTS,
        .create = one_create,
        .destroy = one_destroy,
        .get = one_get,
        .put = one_put,
    };
    return 0;
}

/* ---- 64 stripes ---- */

static void *striped_create(void *ctx, size_t cap)
{
    struct striped *s = malloc(sizeof *s);
    unsigned n = cap >= STRIPES ? STRIPES : (unsigned)cap;

    (void)ctx;
    if (s == NULL)
        return NULL;
    s->n = n;
    s->s = aligned_alloc(64, sizeof *s->s * n);
    if (s->s == NULL) {
        free(s);
        return NULL;
    }
    for (unsigned i = 0; i < n; i++)
        if (mlru_init(&s->s[i], cap / n + (i < cap % n)) != 0)
            abort();
    return s;
}

static void striped_destroy(void *h)
{
    struct striped *s = h;

    for (unsigned i = 0; i < s->n; i++)
        mlru_fini(&s->s[i]);
    free(s->s);
    free(s);
}

static inline struct mlru *stripe_of(struct striped *s, uint64_t h)
{
    return &s->s[((h >> 32) * s->n) >> 32];
}

static int striped_get(void *p, uint64_t key, uint64_t *val)
{
    uint64_t h = bench_hash64(key);

    return mlru_get(stripe_of(p, h), h, key, val);
}

static void striped_put(void *p, uint64_t key, uint64_t val)
{
    uint64_t h = bench_hash64(key);

    mlru_put(stripe_of(p, h), h, key, val);
}

int peer_striped_lru(struct bench_peer *p)
{
    *p = (struct bench_peer){
        .name = "striped-lru",
        .what = "64 x mutex-lru, capacity C/64 each (per-stripe LRU)",
        .caps = PEER_GET | PEER_PUT | PEER_EVICTS,
        .create = striped_create,
        .destroy = striped_destroy,
        .get = striped_get,
        .put = striped_put,
    };
    return 0;
}
