/*
 * exq: a shard's expiry queue (CLOCK build): a binary min-heap, by expiry
 * time, of the shard's entries that can expire, so that a put that needs
 * room takes an expired entry before any live one, wherever the policy's
 * hand happens to be (lru keeps its own heap, lru_heap.c).
 *
 * Items are (expiry time, entry pointer, low half of the key's hash),
 * pushed when an entry that can expire enters the shard. Entries leave in
 * many other ways (evicted, replaced, deleted, cleared) without touching
 * the queue: their items stay, stale, and are recognised when they reach
 * the top. The shard takes an item's entry only if its index still holds
 * that very pointer (found by pointer from the stored hash, never
 * dereferencing it: a stale pointer may have been freed) and the entry
 * there has expired. A freed pointer reused by another entry that the
 * index holds passes the first test; the second then judges that entry by
 * its own expiry time, so whatever is taken has expired. Stale items are
 * bounded: when the queue holds more than three items per entry of the
 * shard that can expire, plus one per eight entries in all, plus 64, the
 * shard rebuilds it from its live entries (a walk over all of them), so
 * each rebuild follows at least as many pushes as a quarter of the entries
 * it visits: amortised O(1) per push. The array shrinks after a rebuild
 * when a quarter of it is in use, and a clear frees it. (Rebuilding past
 * twice the entries cost about 15% of a TTL put in the benchmark; past
 * four times, 8%; compacting the items in place instead, checking each
 * through the index, cost more than either.)
 *
 * Costs: 24 bytes per item, so 24 to 72 bytes per entry that can expire
 * (144 with the array's doubling, just before a rebuild), plus at most 3
 * bytes per entry that cannot. A push of an entry that expires no sooner
 * than the others (one default TTL) is O(1) and reads nothing but the
 * array's end; otherwise O(log n) within the array, as is a pop. Caches
 * whose entries never expire never push.
 *
 * Concurrency: writer-only, under the shard's lock.
 */
#ifndef PC_EXQ_H
#define PC_EXQ_H

#include <stdbool.h>
#include <stdint.h>

#include "entry.h"

struct pc__exq_item {
    uint64_t at;       /* the entry's expiry time */
    struct pc__kv *kv; /* not to be dereferenced before the index has it */
    uint32_t hash;     /* kv->w.live.hash, to find it in the index */
};

struct pc__exq {
    struct pc__exq_item *a;
    uint32_t n, cap;
    uint64_t max_at; /* no item expires later (0 when empty) */
};

/* Room for one more push (may allocate); false on ENOMEM, nothing
 * changed. */
bool pc__exq_reserve(struct pc__exq *q);
/* Push kv (an entry with an expiry time, its hash set), after a reserve. */
void pc__exq_push(struct pc__exq *q, struct pc__kv *kv);
/* Whether the earliest item is due at now (now 0: never). */
static inline bool pc__exq_due(const struct pc__exq *q, uint64_t now)
{
    return q->n != 0 && q->a[0].at <= now;
}
/* Remove and return the earliest item (the queue is not empty). */
struct pc__exq_item pc__exq_pop(struct pc__exq *q);
/* Rebuilding: empty the queue, append entries (no allocation: at most as
 * many as it held), then restore the heap order (and give back memory the
 * queue no longer needs). */
void pc__exq_reset(struct pc__exq *q);
void pc__exq_append(struct pc__exq *q, struct pc__kv *kv);
void pc__exq_heapify(struct pc__exq *q);
void pc__exq_free(struct pc__exq *q);

#endif
