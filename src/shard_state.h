/*
 * shard_state: the CLOCK build's shard and cache structures, shared by
 * shard.c (the cache: life cycle, reads, writes) and shard_exq.c (each
 * shard's expiry queue). Internal to those two files.
 *
 * Concurrency: readers touch only a shard's `ix` (index.h); every other
 * field is the shard's writer's (its lock, w.lock), but the counters that
 * pc_stats_get reads (core.h).
 */
#ifndef PC_SHARD_STATE_H
#define PC_SHARD_STATE_H

#include <stddef.h>
#include <stdint.h>

#include "core.h"
#include "exq.h"
#include "index.h"
#include "shard.h"

/* Readers touch only `ix` (its table pointer), which writers change only
 * when a table is replaced; it gets the first cache line to itself, and
 * everything writers dirty on every put starts on the next one, so a put
 * in a shard does not evict its index handle from the readers' caches.
 * A put writes two lines of the shard: the index's (its count, which is
 * also the shard's entry count, and its hint) and the lock's (the lock,
 * the put and eviction counts, what it owes). Each is a transfer
 * from the other core's cache when another thread wrote to the shard
 * last, so nothing a put writes goes on a third (purecache-sharing, two
 * threads' uniform puts into shared shards: +5-8% against three lines); the
 * fourth holds what a put only reads, or writes with expiry. */
struct shard {
    struct pc__index ix;
    struct pc__writer w __attribute__((aligned(64)));
    /* The klen + vlen of its entries that the cache's `bytes` does not
     * count (writer lock; read by any thread, atomically), so that puts of
     * values of different sizes do not all write the cache's one counter;
     * pc__policy_bytes adds the two up.
     *
     * With no byte bound, the change a put makes to the bytes held (a new
     * key's, less its victims'; a replacement's) stays here (two threads'
     * uniform puts of 8-15-byte values: 2.8-2.9 Mops/s when they wrote the
     * counter, 3.7-3.8 then); deletes, expiry and evictions for other
     * shards still change the counter, which may then read below 0
     * (wrapped), and pc_clear takes what it removes from here if the
     * shard owes. Before a bound is set, pc_set_max_bytes stops puts from
     * owing (c->settling) and settles every shard (pc__policy_settle).
     *
     * Under a bound it is never above 0: -owed is the shard's credit,
     * bytes the counter holds for it beyond its entries'. A put that needs
     * fewer bytes than its victims freed (or than the value it replaces)
     * keeps the difference as credit, up to the bound >> credit_shift (the
     * shards together, 1/PC__CREDIT_SHARE of the bound), and one that needs
     * more takes it from its credit before the counter; what passes the
     * cap goes back. So the entries never pass the bound (the counter
     * holds their bytes and the credit, within it), and hold all of it but
     * at most the credit. A limit being enforced takes a shard's credit
     * back first (shed), as do pc_clear and a lowered bound's setter.
     * (purecache-sharing, two threads' uniform puts of 8-15-byte values,
     * bounds of 1.5 MB (binding before the capacity) and 4 MB: 2.29-2.44
     * Mops/s without credit, 2.96-3.06 with it, 3.04-3.13 with no bound.) */
    int64_t owed;
    void *pol;          /* the policy's state */
    struct pc__exq exq; /* its entries that can expire (writer lock) */
    size_t expiring;    /* how many there are (writer lock) */
} __attribute__((aligned(64)));
_Static_assert(offsetof(struct shard, ix.count) == 64 &&
                   offsetof(struct shard, w) == 128 &&
                   offsetof(struct shard, owed) < 192 &&
                   offsetof(struct shard, pol) == 192,
               "a shard's index table pointer has its own cache line, and "
               "a put writes two more");

/* The entries s holds: its index's. */
static inline size_t pc__shard_count(const struct shard *s)
{
    return pc__index_count(&s->ix);
}
/* (A five-line shard, as the expiry queue's marks first made it, ran CLOCK
 * gets at 2 threads 2-6% slower than a four-line one in three A/B runs of
 * the zipf get mix: this machine's noise, but the same way each time.) */
_Static_assert(sizeof(struct shard) == 256, "a shard is four cache lines");

/* Under a byte bound the shards together keep at most 1/PC__CREDIT_SHARE
 * of it as credit (struct shard, owed). */
#define PC__CREDIT_SHARE 128u

struct shard_cache {
    struct pc_cache base;
    const struct pc__shard_policy *pol;
    uint8_t max_ref;
    uint32_t nshards;
    struct shard *shards;
    unsigned int cursor;  /* where evictions for other shards start */
    uint8_t credit_shift; /* a shard's credit: at most the bound >> this */
};

static inline struct shard_cache *sc_of(pc_cache *c)
{
    return PC__CONTAINER_OF(c, struct shard_cache, base);
}

/* The bytes kv counts against the byte bound. */
static inline uint64_t pc__shard_payload(const struct pc__kv *kv)
{
    return (uint64_t)kv->klen + kv->vlen;
}

/* ---- the expiry queue's glue (shard_exq.c; shard lock held) ---- */

/* Rebuild s's queue from its index. */
void pc__shard_exq_rebuild(struct shard_cache *sc, struct shard *s);

/* An entry of s expired at now, from its expiry queue, taken out of the
 * policy (not the index); NULL if none is due. Never `keep`. */
__attribute__((noinline)) struct pc__kv *
pc__shard_take_expired(struct shard_cache *sc, struct shard *s,
                       struct pc__now now, const struct pc__kv *keep);

/* Room in s's queue for one more push, and marks for every chunk of s's
 * table; false on ENOMEM, with nothing changed that the queue covers. */
__attribute__((noinline)) bool pc__shard_exq_room(struct shard_cache *sc,
                                                  struct shard *s);

/* kv, which expires at `at`, has entered s and is not covered: queue it
 * (room reserved by pc__shard_exq_room; pos its position, if known). */
__attribute__((noinline)) void
pc__shard_exq_note(struct shard_cache *sc, struct shard *s,
                   const struct pc__kv *kv, uint64_t at,
                   const struct pc__index_pos *pos);

#endif
