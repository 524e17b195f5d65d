/*
 * exq: a shard's expiry queue (CLOCK and frequency builds): a binary
 * min-heap of times at which to look for an expired entry, so that a put
 * that needs room takes an expired entry before any live one, wherever the
 * policy's hand happens to be (lru keeps its own heap, lru_heap.c).
 *
 * An item names a key's position in the shard's index (chunk and slot,
 * index.h's pc__index_pos) and the key's tag there (8 bits of its hash,
 * which the index keeps in the chunk beside the slot: pc__index_tag_at),
 * not an entry: a replacement takes its predecessor's slot and tag, so one
 * item covers a key through any number of replacements. The shard keeps
 * this invariant: every entry that can expire is covered by an item (same
 * position, same tag) due no later than the entry expires. A put that replaces
 * an entry with one that expires no sooner pushes nothing (the common case: one
 * default TTL); any other entry that can expire pushes one item at its own
 * expiry time. When an item comes due the shard looks at the entry now at its
 * position: gone, or another key's (the tag differs), and the item is
 * stale and dropped; the same key's, not yet expired (it was replaced),
 * and the item is pushed again at that entry's time; expired, and it is
 * taken. Positions hold only while the index keeps its table: the queue
 * records the index's generation, and when a growth has changed it the
 * shard rebuilds the queue from the index before it uses a position.
 *
 * Stale items (keys evicted, deleted, cleared) stay until they come due
 * or a rebuild drops them: when the queue holds more than three items per
 * entry of the shard that can expire, plus one per eight entries in all
 * and one per eight chunks of the index's table, plus 64, the shard
 * rebuilds it with one item per entry that can expire (a walk over the
 * table: every chunk's control word, every entry), so each rebuild follows
 * at least as many pushes as an eighth of the chunks and entries it
 * visits: amortised O(1) per push, even in a table left large by a
 * shrink. The array shrinks after a rebuild when a quarter of it is in
 * use, and a clear frees it.
 *
 * Costs: 16 bytes per item, so 16 to 48 bytes per entry that can expire
 * (96 with the array's doubling, just before a rebuild), plus at most 2
 * bytes per entry that cannot and per chunk of the table (a chunk per 2
 * to 4 entries at the table's load, more after a shrink). A push of an item due
 * no sooner than the others (one default TTL) is O(1) and writes nothing but
 * the array's end; otherwise O(log n) within the array, as is a pop. Caches
 * whose entries never expire never push.
 *
 * Concurrency: writer-only, under the shard's lock.
 */
#ifndef PC_EXQ_H
#define PC_EXQ_H

#include <stdbool.h>
#include <stdint.h>

#include "entry.h"
#include "index.h"

struct pc__exq_item {
    uint64_t at;    /* due: no later than the covered entry expires */
    uint32_t chunk; /* the key's position in the index: its chunk, */
    uint32_t key;   /* and in bits 0..2 its slot; bits 3..10: the key's
                       tag (pc__index_tag) */
};

struct pc__exq {
    struct pc__exq_item *a;
    uint32_t n, cap;
    uint64_t max_at; /* no item is due later (0 when empty) */
    uint64_t gen;    /* the index generation its positions refer to */
};

/* Double the array (pc__exq_reserve's slow path); false on ENOMEM. */
bool pc__exq_grow(struct pc__exq *q);
/* Room for one more push (may allocate); false on ENOMEM, nothing
 * changed. */
static inline bool pc__exq_reserve(struct pc__exq *q)
{
    return q->n < q->cap || pc__exq_grow(q);
}
/* Push an item due at `at` for the entry at pos whose key's tag is `tag`
 * (pc__index_tag), after a reserve (or a pop). */
void pc__exq_push(struct pc__exq *q, uint64_t at, uint8_t tag,
                  struct pc__index_pos pos);
/* The index position an item names. */
static inline struct pc__index_pos pc__exq_pos(struct pc__exq_item it)
{
    return (struct pc__index_pos){it.chunk, (uint8_t)(it.key & 7u)};
}
/* The key's tag an item carries. */
static inline uint8_t pc__exq_tag(struct pc__exq_item it)
{
    return (uint8_t)(it.key >> 3);
}
/* Whether the item covers kv, the entry at its position, whose tag there
 * is `tag`: an entry that can expire, of the item's key (the tags agree; a
 * false match, 1 in 255, is another key whose entry the shard then judges
 * by its own expiry time, so it costs at most a needless push). No key is
 * hashed: a near expiry time keeps the hash out of the entry (entry.h). */
static inline bool pc__exq_covers(struct pc__exq_item it,
                                  const struct pc__kv *kv, uint8_t tag)
{
    return (pc__kv_flags(kv) & PC__KV_EXPIRES) && tag == pc__exq_tag(it);
}
/* Whether the earliest item is due at now (now 0: never). */
static inline bool pc__exq_due(const struct pc__exq *q, uint64_t now)
{
    return q->n != 0 && q->a[0].at <= now;
}
/* Remove and return the earliest item (the queue is not empty). */
struct pc__exq_item pc__exq_pop(struct pc__exq *q);
/* Rebuilding: empty the queue (its positions now refer to index generation
 * gen), append items (no allocation: no more than it held, plus the one
 * push reserved), then restore the heap order (and give back memory the
 * queue no longer needs). */
void pc__exq_reset(struct pc__exq *q, uint64_t gen);
void pc__exq_append(struct pc__exq *q, uint64_t at, uint8_t tag,
                    struct pc__index_pos pos);
void pc__exq_heapify(struct pc__exq *q);
void pc__exq_free(struct pc__exq *q);

#endif
