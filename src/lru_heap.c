/*
 * lru_heap: the exact-LRU build's expiry heap (lru.c, "Expiry"): entries
 * that can expire, in a binary min-heap on their expiry time, each
 * entry's position kept in its w.live.slot so it can be removed in
 * O(log n). Writer lock held throughout.
 */
#include <string.h>

#include "alloc.h"
#include "lru.h"

static uint64_t heap_key(const struct pc__kv *kv)
{
    return pc__kv_expires(kv);
}

static void heap_set(struct lru_cache *c, size_t i, struct pc__kv *kv)
{
    c->heap[i] = kv;
    kv->w.live.slot = (uint32_t)i;
}

static void heap_up(struct lru_cache *c, size_t i)
{
    struct pc__kv *kv = c->heap[i];

    while (i > 0 && heap_key(c->heap[(i - 1) / 2]) > heap_key(kv)) {
        heap_set(c, i, c->heap[(i - 1) / 2]);
        i = (i - 1) / 2;
    }
    heap_set(c, i, kv);
}

static void heap_down(struct lru_cache *c, size_t i)
{
    struct pc__kv *kv = c->heap[i];

    for (;;) {
        size_t l = 2 * i + 1, m = i;
        uint64_t mk = heap_key(kv);

        if (l < c->heap_len && heap_key(c->heap[l]) < mk)
            m = l, mk = heap_key(c->heap[l]);
        if (l + 1 < c->heap_len && heap_key(c->heap[l + 1]) < mk)
            m = l + 1;
        if (m == i)
            break;
        heap_set(c, i, c->heap[m]);
        i = m;
    }
    heap_set(c, i, kv);
}

bool pc__lru_heap_reserve(struct lru_cache *c)
{
    struct pc__kv **h;
    size_t ncap;

    if (c->heap_len < c->heap_cap)
        return true;
    ncap = c->heap_cap ? 2 * c->heap_cap : 64;
    h = pc__alloc(sizeof *h * ncap);
    if (h == NULL)
        return false;
    if (c->heap_len)
        memcpy(h, c->heap, sizeof *h * c->heap_len);
    pc__free(c->heap, sizeof *h * c->heap_cap);
    c->heap = h;
    c->heap_cap = ncap;
    return true;
}

void pc__lru_heap_push(struct lru_cache *c, struct pc__kv *kv)
{
    heap_set(c, c->heap_len++, kv);
    heap_up(c, c->heap_len - 1);
}

void pc__lru_heap_remove(struct lru_cache *c, struct pc__kv *kv)
{
    size_t i = kv->w.live.slot;
    struct pc__kv *last = c->heap[--c->heap_len];

    PC__ASSERT(c->heap[i] == kv);
    if (last == kv)
        return;
    heap_set(c, i, last);
    if (i > 0 && heap_key(c->heap[(i - 1) / 2]) > heap_key(last))
        heap_up(c, i);
    else
        heap_down(c, i);
}
