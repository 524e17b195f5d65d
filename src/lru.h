/*
 * lru.h: the exact-LRU build's cache (algorithm atop lru.c): its types,
 * the recency list's O(1) operations, and the functions lru_log.c (access
 * logs and windows) and lru_heap.c (the expiry heap) provide to lru.c.
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

struct lru_entry {
    struct lru_entry *prev, *next; /* recency list; writer-only */
    struct pc__kv kv;              /* last: key and value bytes follow */
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

/* One thread's access log on one cache: a ring its owner appends to. */
struct lru_log {
    uint32_t inflight;    /* owner: between announcing and publishing */
    uint64_t tail;        /* owner: records published (release) */
    struct lru_log *next; /* the cache's list of logs; writer lock */
    uint64_t head __attribute__((aligned(64))); /* writer: records applied */
    struct lru_record rec[LOG_RECORDS];
};

/* The index is split into up to MAX_TABLES tables by the hash's high bits,
 * as many as make their power-of-two sizes add up to the least memory
 * (choose_tables): one lock and one list, several tables. */
#define MAX_TABLES 16

struct lru_cache {
    struct pc_cache base;
    struct pc__writer w; /* the cache's one writer lock */
    unsigned int ntables;
    struct pc__index ix[MAX_TABLES];
    struct lru_entry list; /* sentinel: list.next most, list.prev least */
    struct lru_log *logs;  /* writer lock */
    /* Entries that can expire, in a min-heap on expiry time (writer lock);
     * an entry's heap position is its w.live.slot, its index table its
     * ref byte (which no lru reader writes). */
    struct lru_heap_slot *heap;
    size_t heap_len, heap_cap;
    uint64_t clock __attribute__((aligned(64))); /* recency clock */
} __attribute__((aligned(64)));

#define ENTRY_OF(kvp) PC__CONTAINER_OF(kvp, struct lru_entry, kv)

static inline struct lru_cache *lru_of(pc_cache *c)
{
    return PC__CONTAINER_OF(c, struct lru_cache, base);
}

static inline bool is_removed(const struct pc__kv *kv)
{
    return __atomic_load_n(&kv->flags, __ATOMIC_ACQUIRE) & PC__KV_REMOVED;
}

/* The recency list. */

static inline void list_unlink(struct lru_entry *e)
{
    e->prev->next = e->next;
    e->next->prev = e->prev;
}

static inline void list_push_head(struct lru_cache *c, struct lru_entry *e)
{
    e->prev = &c->list;
    e->next = c->list.next;
    c->list.next->prev = e;
    c->list.next = e;
}

static inline void list_move_head(struct lru_cache *c, struct lru_entry *e)
{
    if (c->list.next == e)
        return;
    list_unlink(e);
    list_push_head(c, e);
}

/* Mark kv removed (readers that stamp after the current window see it). */
static inline void mark_removed(struct pc__kv *kv)
{
    __atomic_store_n(&kv->flags, (uint8_t)(pc__kv_flags(kv) | PC__KV_REMOVED),
                     __ATOMIC_RELEASE);
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

/* lru_heap.c: entries that can expire, in a min-heap on expiry time; an
 * entry's heap position is its w.live.slot (writer lock held). */
/* Room for one more entry; false on ENOMEM. */
bool pc__lru_heap_reserve(struct lru_cache *c);
void pc__lru_heap_push(struct lru_cache *c, struct pc__kv *kv);
void pc__lru_heap_remove(struct lru_cache *c, struct pc__kv *kv);

#endif
