/*
 * lru_nodes: where the exact-LRU build's recency list lives (lru.h, "The
 * recency list"): one array of 12-byte nodes named by 32-bit ids, and,
 * once the cache holds an expiring entry, a parallel array of heap
 * positions (lru_heap.c).
 *
 * Why not links in the entry: two pointers would add 16 bytes to every
 * entry, and an entry's allocation is rounded up to an allocator size
 * class (an 8-byte key with a 100-byte value: 124 bytes in the 128-byte
 * class as a bare entry, 140 in the 160-byte class with links). A node
 * costs 12 bytes whatever the class, names its entry through the index
 * (which already holds the pointer), and keeps the list's moves in one
 * dense array instead of three scattered entries.
 *
 * Ids. Freed ids go on a free list (LIFO, linked through next) and are
 * taken first; otherwise the next id never handed out (top). The arrays
 * double when top reaches their end, but never past the ids the capacity
 * needs (to the end of that size's allocation class), so a full cache's
 * nodes cost 12 bytes per entry, not up to 24 (a capacity raised later
 * lets them grow again): the ids below top are at most the most entries
 * ever held at once (a clear starts top again, and the arrays keep their
 * size), and the pages past top are never touched.
 * After a lowered limit, arrays four times larger than the entries the
 * limits allow need are replaced by smaller ones, the ids renumbered in
 * list order (pc__lru_nodes_trim). If memory is short the arrays stay,
 * and the next trim renumbers them to its own size, the capacity share,
 * where a cache whose first trim had memory would have kept the smaller
 * arrays and doubled them only as ids were taken: so more (ids never
 * taken since) or less (a doubling past the share) than that cache
 * holds, by up to 12 bytes per id of the share. The index and CLOCK's
 * ring emulate the cache whose trim had memory; these do not (that
 * needs the most ids held since the failed trim, tracked on every put).
 * Arrays of 64 KiB or more come from alloc.c's array arena, which returns
 * a replaced copy's pages at once.
 *
 * Positions. A node holds its entry's index position, which stays put
 * while its table stands (index.h). An index growth replaces a table:
 * pc__lru_relocate then walks the new table once and writes each entry's
 * position into its node, as the growth itself walked every entry.
 *
 * Everything here runs under the cache's writer lock; readers never look
 * at nodes.
 */
#include <string.h>

#include "alloc.h"
#include "lru.h"

#define ID_LIMIT ((uint64_t)UINT32_MAX) /* ids 0 .. ID_LIMIT - 1 */
#define FIRST_CAP 64u

/* Ids a cache of `entries` entries needs: the sentinel's, one per entry and
 * one to spare (a put inserts before it evicts), to the end of the nodes'
 * allocation class. */
uint64_t pc__lru_ids_for(uint64_t entries)
{
    return pc__alloc_usable_count(entries + 2, sizeof(struct lru_node));
}

bool pc__lru_nodes_grow(struct lru_cache *c)
{
    struct lru_nodes *n = &c->nodes;
    uint64_t ncap = n->cap ? 2 * n->cap : FIRST_CAP;
    uint64_t most =
        pc__lru_ids_for(__atomic_load_n(&c->base.capacity, __ATOMIC_RELAXED));
    struct lru_node *v;
    uint32_t *h = NULL;

    if (n->cap >= ID_LIMIT)
        return false;
    if (ncap > most && most > n->cap)
        ncap = most;
    if (ncap > ID_LIMIT)
        ncap = ID_LIMIT;
    v = pc__alloc_array(sizeof *v * ncap, 0);
    if (v == NULL)
        return false;
    if (n->hpos != NULL && (h = pc__alloc_array(sizeof *h * ncap, 0)) == NULL) {
        pc__free_array(v, sizeof *v * ncap, 0);
        return false;
    }
    if (n->v != NULL) {
        memcpy(v, n->v, sizeof *v * n->top);
        pc__free_array(n->v, sizeof *v * n->cap, 0);
    }
    if (n->hpos != NULL) {
        memcpy(h, n->hpos, sizeof *h * n->top);
        pc__free_array(n->hpos, sizeof *h * n->cap, 0);
    }
    n->v = v;
    n->hpos = h;
    n->cap = ncap;
    return true;
}

bool pc__lru_nodes_init(struct lru_cache *c)
{
    if (!pc__lru_nodes_grow(c))
        return false;
    pc__lru_nodes_reset(c);
    return true;
}

void pc__lru_nodes_fini(struct lru_cache *c)
{
    struct lru_nodes *n = &c->nodes;

    if (n->v != NULL)
        pc__free_array(n->v, sizeof *n->v * n->cap, 0);
    if (n->hpos != NULL)
        pc__free_array(n->hpos, sizeof *n->hpos * n->cap, 0);
    memset(n, 0, sizeof *n);
}

void pc__lru_nodes_reset(struct lru_cache *c)
{
    struct lru_node *s = node(c, SENTINEL);

    s->prev = s->next = SENTINEL;
    c->nodes.top = SENTINEL + 1;
    c->nodes.free = SENTINEL;
}

/* The first expiring entry's allocation of the positions (out of line:
 * once per cache, and the flattened puts would copy it in). */
static __attribute__((noinline, cold)) bool hpos_alloc(struct lru_nodes *n)
{
    n->hpos = pc__alloc_array(sizeof *n->hpos * n->cap, 0);
    return n->hpos != NULL;
}

bool pc__lru_hpos_reserve(struct lru_cache *c)
{
    struct lru_nodes *n = &c->nodes;

    return n->hpos != NULL || hpos_alloc(n);
}
void pc__lru_nodes_trim(struct lru_cache *c, size_t n)
{
    struct lru_nodes *ns = &c->nodes;
    uint64_t cap = FIRST_CAP;
    struct lru_node *v;
    uint32_t *h = NULL, k = SENTINEL + 1;

    while (cap < (uint64_t)n + 2) /* (the sentinel's id, one to spare) */
        cap *= 2;
    if (cap > pc__lru_ids_for(n)) /* (as growth clamps it) */
        cap = pc__lru_ids_for(n);
    if (ns->cap < 4 * cap)
        return;
    v = pc__alloc_array(sizeof *v * cap, 0);
    if (v == NULL)
        return;
    if (ns->hpos != NULL && (h = pc__alloc_array(sizeof *h * cap, 0)) == NULL) {
        pc__free_array(v, sizeof *v * cap, 0);
        return;
    }
    /* Ids 1, 2, ... in list order, most recent first. */
    for (uint32_t id = node(c, SENTINEL)->next; id != SENTINEL;
         id = node(c, id)->next, k++) {
        PC__ASSERT(k < cap);
        kv_of(c, id)->w.live.slot = k;
        v[k] = (struct lru_node){k - 1, k + 1, node(c, id)->pos};
        if (h != NULL)
            h[k] = ns->hpos[id];
    }
    v[SENTINEL] =
        (struct lru_node){k - 1, k > SENTINEL + 1 ? SENTINEL + 1 : SENTINEL, 0};
    v[k - 1].next = SENTINEL;
    pc__free_array(ns->v, sizeof *v * ns->cap, 0);
    if (ns->hpos != NULL)
        pc__free_array(ns->hpos, sizeof *h * ns->cap, 0);
    ns->v = v;
    ns->hpos = h;
    ns->cap = cap;
    ns->top = k;
    ns->free = SENTINEL;
}

struct relocation {
    struct lru_cache *c;
    unsigned int t;
};

static void relocate_one(void *arg, struct pc__kv *kv, struct pc__index_pos p)
{
    struct relocation *r = arg;

    node(r->c, node_of(kv))->pos = pos_pack(r->t, p);
}

void pc__lru_relocate(struct lru_cache *c, unsigned int t)
{
    struct relocation r = {c, t};

    pc__index_each(&c->ix[t], relocate_one, &r);
}
