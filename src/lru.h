/*
 * lru.h: the exact-LRU build's cache (algorithm atop lru.c): its types,
 * the recency list's O(1) operations, and the functions lru_log.c (access
 * logs and windows), lru_heap.c (the expiry heap) and lru_nodes.c (the
 * list's nodes) provide to lru.c.
 * Everything here runs with the cache's writer lock held, except
 * is_removed, which readers call.
 */
#ifndef PC_LRU_H
#define PC_LRU_H

#include <stdbool.h>
#include <stdint.h>

#include "core.h"
#include "index.h"

#define LOG_RECORDS 256u

/*
 * The recency list lives outside the entries, in an array of 12-byte nodes
 * named by 32-bit ids (lru_nodes.c). An entry's node id
 * is its w.live.slot; a node names its entry by the entry's position in
 * the index (table, chunk and slot, packed: pos_pack), which does not move
 * while the table stands: an index growth renews the positions of its
 * table's entries (pc__lru_relocate). So the entry itself is the same
 * allocation as in the CLOCK build (header, key, value), and a list move
 * touches only nodes, which are dense. Node 0 is the list's sentinel:
 * its next is the most recently used entry's node, its prev the least's.
 * Writer lock held for every node access.
 */
struct lru_node {
    uint32_t prev, next; /* node ids; on the free list, next links it */
    uint32_t pos;        /* the entry's packed index position */
};

#define SENTINEL 0u

/* Positions: chunk (25 bits), table (4 bits), slot (3 bits). */
#define POS_TABLE_BITS 4u
#define POS_CHUNK_LIMIT (1u << 25)
/* Entries per table: 4 per chunk (index.c's load limit) of
 * POS_CHUNK_LIMIT chunks. The largest table (pc__index_init's max_chunks,
 * POS_CHUNK_LIMIT - 1: the largest prime below it) holds a few less; a
 * put that would need more fails with PC_ENOMEM (the reserve fails). */
#define TABLE_ENTRY_LIMIT ((size_t)POS_CHUNK_LIMIT * 4u)

struct lru_nodes {
    struct lru_node *v; /* cap nodes */
    uint32_t *hpos;     /* cap heap positions (made for the first
                         * expiring entry), or NULL */
    uint64_t cap;       /* ids below cap have room */
    uint64_t top;       /* ids below top have been handed out */
    uint32_t free;      /* free list (SENTINEL: empty), through next */
};

/* A slot of the expiry heap: the entry's expiry time beside it, so that
 * sifting compares keys in the array, not in scattered entries. */
struct lru_heap_slot {
    uint64_t key; /* pc__kv_expires(kv) */
    struct pc__kv *kv;
};

struct lru_record {
    struct pc__kv *kv;
    uint64_t stamp;
};

/* A slot of drain_below's merge heap: a log and its oldest record's
 * stamp. */
struct lru_merge {
    uint64_t stamp;
    struct lru_log *l;
};

/* One thread's access log on one cache: a ring its owner appends to. */
struct lru_log {
    uint32_t inflight;    /* owner: between announcing and publishing */
    uint64_t tail;        /* owner: records published (release) */
    struct lru_log *next; /* the cache's list of logs; writer lock */
    uint64_t head __attribute__((aligned(64))); /* writer: records applied */
    struct lru_record rec[LOG_RECORDS];
};

/* The index is split into up to MAX_TABLES tables by the hash's high bits,
 * as many as make their sizes, each rounded up to its allocation's size
 * class, add up to the least memory (choose_tables): one lock and one
 * list, several tables. */
#define MAX_TABLES 16

struct lru_cache {
    struct pc_cache base;
    struct pc__writer w; /* the cache's one writer lock */
    unsigned int ntables;
    struct pc__index ix[MAX_TABLES];
    struct lru_nodes nodes; /* the recency list (node 0: sentinel) */
    struct lru_log *logs;   /* writer lock */
    /* drain_below's merge heap: room for one slot per log (writer lock;
     * grown before a log is added, lru.c's locked_hit). */
    struct lru_merge *merge;
    size_t nlogs, merge_cap;
    /* Entries that can expire, in a min-heap on expiry time (writer lock);
     * an entry's heap position is nodes.hpos[its node id], its index
     * table its ref byte (which no lru reader writes). */
    struct lru_heap_slot *heap;
    size_t heap_len, heap_cap;
    uint64_t clock __attribute__((aligned(64))); /* recency clock */
} __attribute__((aligned(64)));

static inline struct lru_cache *lru_of(pc_cache *c)
{
    return PC__CONTAINER_OF(c, struct lru_cache, base);
}

static inline bool is_removed(const struct pc__kv *kv)
{
    return pc__kv_removed_flags(__atomic_load_n(&kv->flags, __ATOMIC_ACQUIRE));
}

/* The recency list. */

static inline struct lru_node *node(const struct lru_cache *c, uint32_t id)
{
    return &c->nodes.v[id];
}

/* The node id of an entry in the index. */
static inline uint32_t node_of(const struct pc__kv *kv)
{
    return kv->w.live.slot;
}

static inline uint32_t pos_pack(unsigned int table, struct pc__index_pos p)
{
    return p.chunk << (POS_TABLE_BITS + 3) | table << 3 | p.slot;
}

/* Where the index holds the entry a node names. */
static inline struct pc__kv *const *slot_of(const struct lru_cache *c,
                                            uint32_t id)
{
    uint32_t p = node(c, id)->pos;

    return pc__index_slot(
        &c->ix[(p >> 3) & ((1u << POS_TABLE_BITS) - 1)],
        (struct pc__index_pos){p >> (POS_TABLE_BITS + 3), (uint8_t)(p & 7)});
}

/* The entry a node names. */
static inline struct pc__kv *kv_of(const struct lru_cache *c, uint32_t id)
{
    struct pc__kv *kv = *slot_of(c, id);

    PC__ASSERT(kv != NULL && node_of(kv) == id);
    return kv;
}

/* Evicting the entry of node t: start the loads the next evictions will
 * wait for, a step further for each (the list's tail changes little
 * between puts, and a wrong guess costs a wasted prefetch): the entry of
 * the next victim (its chunk prefetched one eviction ago), the chunk of
 * the one after (its node prefetched one eviction ago), the node of the
 * third. Each is a dependent miss otherwise: node, then chunk, then
 * entry. Always inlined: GCC deletes a call to a static function that
 * only loads and prefetches. */
static inline __attribute__((always_inline)) void
prefetch_victims(const struct lru_cache *c, uint32_t t)
{
    uint32_t p1 = node(c, t)->prev, p2, p3;

    if (p1 == SENTINEL)
        return;
    __builtin_prefetch(*slot_of(c, p1), 1);
    if ((p2 = node(c, p1)->prev) == SENTINEL)
        return;
    __builtin_prefetch(slot_of(c, p2), 1);
    if ((p3 = node(c, p2)->prev) != SENTINEL)
        __builtin_prefetch(node(c, p3), 1);
}

static inline void list_unlink(struct lru_cache *c, uint32_t id)
{
    struct lru_node *n = node(c, id);

    node(c, n->prev)->next = n->next;
    node(c, n->next)->prev = n->prev;
}

static inline void list_push_head(struct lru_cache *c, uint32_t id)
{
    struct lru_node *n = node(c, id), *s = node(c, SENTINEL);

    n->prev = SENTINEL;
    n->next = s->next;
    node(c, s->next)->prev = id;
    s->next = id;
}

static inline void list_move_head(struct lru_cache *c, uint32_t id)
{
    if (node(c, SENTINEL)->next == id)
        return;
    list_unlink(c, id);
    list_push_head(c, id);
}

/* The least recently used entry's node (SENTINEL: the list is empty). */
static inline uint32_t list_tail(const struct lru_cache *c)
{
    return node(c, SENTINEL)->prev;
}

/* Mark kv removed (readers that stamp after the current window see it). */
static inline void mark_removed(struct pc__kv *kv)
{
    pc__kv_mark_removed(kv, __ATOMIC_RELEASE);
}

/* lru_log.c: windows and draining (writer lock held). */
/* Open a window (odd stamp) and apply every use stamped before it. */
void pc__lru_window_open(struct lru_cache *c);
void pc__lru_window_close(struct lru_cache *c);
/* Make the list the exact recency order as of a stamp drawn now (even:
 * no window opens); returns that stamp. */
uint64_t pc__lru_catch_up(struct lru_cache *c);
/* core.h's before_free hook: no record may name memory about to be freed. */
void pc__lru_before_free(pc_cache *base);

/* lru_nodes.c: node storage (writer lock held). */
/* Set up the sentinel's block; false on ENOMEM. */
bool pc__lru_nodes_init(struct lru_cache *c);
void pc__lru_nodes_fini(struct lru_cache *c);
/* Every id free again (the list emptied by the caller). */
void pc__lru_nodes_reset(struct lru_cache *c);
/* Room for ids up to top (doubling the arrays, up to the ids the capacity
 * needs: pc__lru_ids_for); false on ENOMEM or once 2^32 - 1 ids are in use. Out
 * of line: rare, and the flattened puts would copy it in. */
__attribute__((noinline, cold)) bool pc__lru_nodes_grow(struct lru_cache *c);
/* The ids (node array size) a cache of `entries` entries needs. */
uint64_t pc__lru_ids_for(uint64_t entries);
/* After a limit was lowered: arrays at least four times larger than `n`
 * entries (at least those present) need move to smaller ones, every entry
 * renumbered in list order (its w.live.slot). Kept if memory is short. */
void pc__lru_nodes_trim(struct lru_cache *c, size_t n);
/* Room for heap positions (the cache's first expiring entry); false on
 * ENOMEM. */
bool pc__lru_hpos_reserve(struct lru_cache *c);
/* After table `t` was replaced (pc__index_gen changed): renew the
 * positions its entries' nodes hold. */
void pc__lru_relocate(struct lru_cache *c, unsigned int t);

/* Room for one more id: the next node_take cannot fail. False on ENOMEM
 * or once 2^32 - 1 ids are in use. */
static inline bool node_room(struct lru_cache *c)
{
    struct lru_nodes *n = &c->nodes;

    return n->free != SENTINEL || n->top < n->cap || pc__lru_nodes_grow(c);
}

/* A free id (node_room made sure there is one): the free list's first, or
 * the next never handed out. */
static inline uint32_t node_take(struct lru_cache *c)
{
    struct lru_nodes *n = &c->nodes;
    uint32_t id = n->free;

    if (id != SENTINEL) {
        n->free = node(c, id)->next;
    } else {
        PC__ASSERT(n->top < n->cap);
        id = (uint32_t)n->top++;
    }
    return id;
}

/* id back to the free list (its entry gone from the list and heap). */
static inline void node_give(struct lru_cache *c, uint32_t id)
{
    node(c, id)->next = c->nodes.free;
    c->nodes.free = id;
}
/* lru_heap.c: entries that can expire, in a min-heap on expiry time; an
 * entry's heap position is kept beside its node (writer lock held). */
/* Room for one more entry; false on ENOMEM. */
bool pc__lru_heap_reserve(struct lru_cache *c);
void pc__lru_heap_push(struct lru_cache *c, struct pc__kv *kv);
void pc__lru_heap_remove(struct lru_cache *c, struct pc__kv *kv);
/* After a limit was lowered: an array four times larger than its entries
 * need (and than its first size) moves to a smaller one; kept if memory is
 * short. */
void pc__lru_heap_trim(struct lru_cache *c);

#ifdef PC_DEBUG
/* Debug builds: the logs visited and heap levels passed by drains (a
 * test's measure of their cost). */
extern uint64_t pc__debug_drain_steps;
#endif

#endif
