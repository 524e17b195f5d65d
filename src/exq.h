/*
 * exq: a shard's expiry queue (CLOCK and frequency builds): a binary
 * min-heap of times at which to look for an expired entry, so that a put
 * that needs room takes an expired entry before any live one, wherever the
 * policy's hand happens to be (lru keeps its own heap, lru_heap.c).
 *
 * An item names a position in the shard's index (chunk and slot, index.h's
 * pc__index_pos), not an entry, and covers whatever entry that can expire
 * sits there and expires no sooner than the item is due. The shard keeps
 * this invariant: every entry that can expire is covered by an item at its
 * position. The queue marks each position that an item names (a bit per
 * slot, a byte per chunk), and knows `max_at`, a time no item is due
 * after; so an entry that expires at max_at or later and lands on a marked
 * position is covered already, and pushes nothing. That is the common
 * case with one default TTL: a replacement keeps its predecessor's
 * position, and a new key that takes the slot some earlier entry left
 * (the index puts a key in the first free slot of its chunk, so a few
 * slots of each chunk serve in turn) inherits that entry's item: new
 * keys streaming through a full cache that evicts them before they
 * expire pushed one item per put, and now about one per twenty (an entry
 * that expires first takes its item with it: the next key there pushes
 * again). Any other entry that can expire pushes one item at its own
 * expiry time. When an item comes due the shard looks at the entry now at
 * its position: none, or one that cannot expire, and the item is dropped
 * (its mark cleared); one not yet expired (a later occupant, or a
 * replacement), and the item is pushed again at that entry's time;
 * expired, and the entry is taken. A mark is set only while an item names
 * the position (a pop clears it even if another item names the position
 * too: a mark missing costs at most a needless push). Positions hold only
 * while the index keeps its table: the queue records the index's
 * generation, and when a growth has changed it the shard rebuilds the
 * queue from the index before it uses a position. The marks are sized for
 * the table: the index grows a quarter or more at a time (or, after a trim
 * short of memory, to a smaller table: pc__shard_exq_room remakes or clears the
 * marks then), and the first put with a ttl after a growth makes new
 * marks, all clear, before it looks at one (shard_exq.c,
 * pc__shard_exq_room); a trim (a smaller table, after a lowered limit)
 * rebuilds the queue at once, marks included (shard.c, pc__policy_trim).
 * So no put trusts a mark of an old table: before a put with a ttl reads
 * a mark, pc__shard_exq_room brings a queue of another generation to
 * today's table (a rebuild, or, empty, its marks cleared), even one whose
 * marks array is already the table's size. (That is the case a trim that
 * cannot allocate smaller marks leads to: the old, larger array stays,
 * marked for the trimmed table's positions, and a regrowth to the old
 * size would keep it. A mark read there named another slot: the put
 * pushed no item, its entry was covered by none, and the next rebuild
 * appended more items than the array, sized by the items, could hold.)
 *
 * Items whose position no entry that can expire holds (keys evicted,
 * deleted, cleared, and not followed there) stay until they come due or a
 * rebuild drops them. A rebuild (a walk over the index's table: every
 * chunk's control word, every entry) is worth its walk once the
 * queue holds more than two items per entry of the shard that can expire,
 * plus one per eight entries in all and one per eight chunks of the table,
 * plus 64: a push that finds the array full then rebuilds it rather than
 * growing it, and any push rebuilds once the queue holds one more item
 * per entry that can expire than that. So each rebuild follows at least
 * as many pushes as an eighth of the chunks and entries it visits:
 * amortised O(1) per push, even in a table left large by a shrink. The
 * array grows (a quarter or more, pc__exq_grow) only when it is full of
 * items a rebuild would mostly keep, and shrinks after a rebuild only when
 * less than a sixth of it is in use (to three times what it holds): a
 * queue that refills between rebuilds keeps one array (a large array
 * freed and made again comes back from the system page by page, alloc.c).
 * A clear frees the array and the marks.
 *
 * Costs: 16 bytes per item, so 16 to 48 bytes per entry that can expire
 * (and 2 per entry that cannot and per chunk of the table: the slack), in
 * an array of room for up to six items per such entry, or four plus twice
 * the slack as it grows (32 items at least; more until the next rebuild
 * if entries that can expire leave), plus the marks, a byte per chunk (a
 * chunk per 2 to 4 entries at the table's load, more after a shrink). A
 * push of an item due no sooner than the others (one default TTL) is O(1)
 * and writes nothing but the array's end and a mark; otherwise O(log n)
 * within the array, as is a pop. Caches whose entries never expire never
 * push.
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
    uint32_t chunk; /* the position in the index it names */
    uint32_t slot;
};

struct pc__exq {
    struct pc__exq_item *a;
    uint32_t n, cap;
    uint64_t max_at; /* no item is due later (0 when empty) */
    /* marks[c] bit s: an item names chunk c's slot s (nmarks chunks; a
     * chunk beyond them is never marked: nothing but a push is lost). */
    uint8_t *marks;
    /* The index generation its positions refer to (a growth or a trim
     * adds one). 32 bits never wrap: the table only grows (a quarter or
     * more each time, so at most about a hundred times) between trims,
     * and every trim rebuilds the queue at once. 40 bytes in all,
     * so that a shard keeps to four cache lines (shard.c). */
    uint32_t gen;
    uint32_t nmarks;
};

/* Grow the array by a quarter or more (pc__exq_reserve's slow path); false
 * on ENOMEM. */
__attribute__((noinline, cold)) bool pc__exq_grow(struct pc__exq *q);
/* Room for one more push (may allocate); false on ENOMEM, nothing
 * changed. */
static inline bool pc__exq_reserve(struct pc__exq *q)
{
    return q->n < q->cap || pc__exq_grow(q);
}
/* Marks for a table of `chunks` chunks, all clear (marks lost cost only
 * needless pushes); false on ENOMEM, nothing changed. */
bool pc__exq_mark_room(struct pc__exq *q, size_t chunks);
/* Push an item due at `at` for the entry at pos, after a reserve (or a
 * pop), and mark pos. */
void pc__exq_push(struct pc__exq *q, uint64_t at, struct pc__index_pos pos);
/* The index position an item names. */
static inline struct pc__index_pos pc__exq_pos(struct pc__exq_item it)
{
    return (struct pc__index_pos){it.chunk, (uint8_t)it.slot};
}
/* Whether an entry at pos that expires at `at` is covered by an item
 * already (the marks are sized for today's table: pc__exq_mark_room). */
static inline bool pc__exq_covered(const struct pc__exq *q,
                                   struct pc__index_pos pos, uint64_t at)
{
    return at >= q->max_at && pos.chunk < q->nmarks &&
           (q->marks[pos.chunk] >> pos.slot & 1u);
}
/* Forget pos's mark (its item has left the queue). */
static inline void pc__exq_unmark(struct pc__exq *q, struct pc__index_pos pos)
{
    if (pos.chunk < q->nmarks)
        q->marks[pos.chunk] &= (uint8_t) ~(1u << pos.slot);
}
/* Whether the earliest item is due at now (now 0: never). */
static inline bool pc__exq_due(const struct pc__exq *q, uint64_t now)
{
    return q->n != 0 && q->a[0].at <= now;
}
/* Remove and return the earliest item (the queue is not empty); its mark
 * stays until the caller pushes it again or unmarks it. */
struct pc__exq_item pc__exq_pop(struct pc__exq *q);
/* Rebuilding: empty the queue and clear its marks (its positions now refer
 * to index generation gen), append items (no allocation: no more than it
 * held, plus the one push reserved), then restore the heap order (and give
 * back memory the queue no longer needs). */
void pc__exq_reset(struct pc__exq *q, uint32_t gen);
void pc__exq_append(struct pc__exq *q, uint64_t at, struct pc__index_pos pos);
void pc__exq_heapify(struct pc__exq *q);
void pc__exq_free(struct pc__exq *q);

#endif
