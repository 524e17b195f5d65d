/*
 * lru_heap: the exact-LRU build's expiry heap (lru.c, "Expiry"): entries
 * that can expire, in a min-heap on their expiry time, each entry's
 * position kept beside its node (nodes.hpos, lru_nodes.c) so it can be
 * removed in O(log n); 4-ary. Each slot holds the expiry time beside the entry
 * pointer, so a sift reads only the array and writes one position per level
 * (rather than reading two scattered entries per level). Writer lock held
 * throughout.
 */
#include <string.h>

#include "alloc.h"
#include "lru.h"

/* Where an expiring entry's heap position is kept (pc__lru_hpos_reserve
 * made the array). */
static inline uint32_t *hpos_of(struct lru_cache *c, const struct pc__kv *kv)
{
    return &c->nodes.hpos[node_of(kv)];
}

static void heap_set(struct lru_cache *c, size_t i, struct lru_heap_slot e)
{
    c->heap[i] = e;
    *hpos_of(c, e.kv) = (uint32_t)i;
}

/* A 4-ary heap: half the levels of a binary one, so half the scattered
 * position writes per sift; a node's four children are adjacent slots. */
#define ARITY 4

static void heap_up(struct lru_cache *c, size_t i)
{
    struct lru_heap_slot e = c->heap[i];

    while (i > 0 && c->heap[(i - 1) / ARITY].key > e.key) {
        heap_set(c, i, c->heap[(i - 1) / ARITY]);
        i = (i - 1) / ARITY;
    }
    heap_set(c, i, e);
    PC__ASSERT(i == 0 || c->heap[(i - 1) / ARITY].key <= e.key);
}

static void heap_down(struct lru_cache *c, size_t i)
{
    struct lru_heap_slot e = c->heap[i];

    for (;;) {
        size_t first = ARITY * i + 1, end = first + ARITY, m = i;
        uint64_t mk = e.key;

        if (end > c->heap_len)
            end = c->heap_len;
        for (size_t k = first; k < end; k++)
            if (c->heap[k].key < mk)
                m = k, mk = c->heap[k].key;
        if (m == i)
            break;
        heap_set(c, i, c->heap[m]);
        i = m;
    }
    heap_set(c, i, e);
    PC__ASSERT(i == 0 || c->heap[(i - 1) / ARITY].key <= e.key);
}

#define HEAP_FIRST 64 /* slots: the first array; each growth doubles it */

/* The most slots the heap needs: one per entry the capacity allows and one
 * to spare (a put inserts before it evicts), to the end of the array's
 * allocation class. Growth stops there (a capacity raised later lets it
 * grow again), so a full cache's heap costs 16 bytes per expiring entry,
 * not up to 32. */
static size_t heap_most(const struct lru_cache *c)
{
    size_t n = __atomic_load_n(&c->base.capacity, __ATOMIC_RELAXED) + 2;

    return pc__alloc_usable_count(n, sizeof(struct lru_heap_slot));
}

/* Move the heap to an array of ncap slots (>= heap_len); false on ENOMEM
 * (heap unchanged). Slots keep their indices, so positions hold. Out of
 * line: a growth is rare, and the flattened puts would copy it in. */
static __attribute__((noinline, cold)) bool heap_move(struct lru_cache *c,
                                                      size_t ncap)
{
    struct lru_heap_slot *h = pc__alloc_array(sizeof *h * ncap, 0);

    if (h == NULL)
        return false;
    if (c->heap_len)
        memcpy(h, c->heap, sizeof *h * c->heap_len);
    pc__free_array(c->heap, sizeof *h * c->heap_cap, 0);
    c->heap = h;
    c->heap_cap = ncap;
    return true;
}

/* Double the heap, up to heap_most (out of line, as heap_move). */
static __attribute__((noinline, cold)) bool heap_grow(struct lru_cache *c)
{
    size_t ncap = c->heap_cap ? 2 * c->heap_cap : HEAP_FIRST;
    size_t most = heap_most(c);

    if (ncap > most && most > c->heap_cap)
        ncap = most;
    return heap_move(c, ncap);
}

bool pc__lru_heap_reserve(struct lru_cache *c)
{
    return c->heap_len < c->heap_cap || heap_grow(c);
}

void pc__lru_heap_trim(struct lru_cache *c)
{
    size_t want = HEAP_FIRST, most = heap_most(c);

    while (want < c->heap_len)
        want *= 2;
    if (want > most && most >= c->heap_len)
        want = most; /* (as growth clamps it) */
    if (c->heap_cap >= 4 * want)
        (void)heap_move(c, want); /* (kept as it is if memory is short) */
}

void pc__lru_heap_push(struct lru_cache *c, struct pc__kv *kv)
{
    heap_set(
        c, c->heap_len++,
        (struct lru_heap_slot){
            .key = pc__kv_expires(kv, pc__core_origin(&c->base)), .kv = kv});
    heap_up(c, c->heap_len - 1);
}

void pc__lru_heap_remove(struct lru_cache *c, struct pc__kv *kv)
{
    size_t i = *hpos_of(c, kv);
    struct lru_heap_slot last = c->heap[--c->heap_len];

    PC__ASSERT(c->heap[i].kv == kv);
    if (last.kv == kv)
        return;
    heap_set(c, i, last);
    if (i > 0 && c->heap[(i - 1) / ARITY].key > last.key)
        heap_up(c, i);
    else
        heap_down(c, i);
}
