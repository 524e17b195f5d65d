/*
 * shard: the interface between the sharded cache (shard.c, the CLOCK
 * build's cache) and the eviction policies that run inside each shard
 * (clock.c: CLOCK; frequency.c: the frequency-aware policy).
 *
 * shard.c owns everything that is the same for every policy: the index,
 * the writer lock, the cache-wide capacity and byte budgets, expiry,
 * conditional puts, leases, the removal listener, the read path. A policy
 * owns only the order in which a shard's entries leave: its per-shard
 * state, created for a nominal share of the capacity, and the callbacks
 * below, all called with the shard's writer lock held. A policy never
 * touches the index or the reclaimer, and never frees an entry.
 *
 * Readers see a policy only through `max_ref`: a hit raises the entry's
 * `ref` byte up to it (entry.h, pc__kv_touch), with a plain store. The
 * policy reads `ref` with relaxed loads and may write it (under the lock);
 * it keeps its own writer-only state in the entry's w.live.slot word
 * (w.live.hx belongs to the index and expiry; pc__kv_hash gives the key's
 * hash).
 */
#ifndef PC_SHARD_H
#define PC_SHARD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "entry.h"

struct pc__shard_policy {
    const char *name; /* pc_cache_policy's answer */
    uint8_t max_ref;  /* readers raise ref up to this */
    /* The largest share of the capacity a shard may be given (pc_create
     * and pc_set_capacity refuse more). */
    size_t max_share;
    /* Per-shard state for a nominal share of `share` entries, for keys
     * hashed with `seed` (the cache's, for its life); NULL on ENOMEM.
     * (A shard may come to hold more or fewer entries than its share:
     * the capacity is the cache's.) */
    void *(*create)(size_t share, const struct pc__hash_seed *seed);
    void (*destroy)(void *st);
    /* Room in the policy's structures for `n` entries (may allocate);
     * false on ENOMEM, nothing changed. Called before any change by a
     * put of a new key, after everything else that put reserves (true
     * may come with a change of what the policy remembers, such as the
     * frequency policy's ghost rebuilt larger, so nothing may fail after
     * it); a replacement does not call it, so replace(), and
     * keep() of a key whose victim() it follows, must never need room. */
    bool (*reserve)(void *st, size_t n);
    /* Optional (NULL: none): the shard's nominal share is now `share`
     * (pc_set_capacity; at most max_share), before any eviction the
     * change needs. Cannot fail: what it would allocate is a hint's. */
    void (*resize)(void *st, size_t share);
    /* Optional (NULL: none): after a limit was lowered and the shard's
     * entries evicted down to it, give back memory beyond what `n`
     * entries (at least those present) need. Cannot fail: if memory for a
     * smaller copy is short, keeps what it has. */
    void (*trim)(void *st, size_t n);
    /* Optional (NULL: none), called WITHOUT the lock, before a put takes
     * it: prefetch what insert will read for a key of this hash. May read
     * only state that never changes after create, or that writers change
     * with atomic stores and it reads with atomic loads (a prefetch of a
     * stale address is harmless). */
    void (*prefetch)(const void *st, uint32_t h);
    /* Unlink and return the next victim (the shard holds an entry). An
     * entry expired at `now` is the cheapest victim, if the policy meets
     * one on its way (the shard has already taken those its expiry queue
     * knows of, exq.h, but an entry may expire while it waits). */
    struct pc__kv *(*victim)(void *st, struct pc__now now);
    /* Optional (NULL: none): the entry the next victim() will examine
     * first, if the policy knows it and its header is likely in cache
     * (NULL otherwise; the policy may prefetch that header instead). A
     * hint: the shard prefetches the index line that evicting it would
     * erase from, so that the next eviction does not wait for it, and the
     * index keeps its hash (index.h, `hint`). It must be an entry in the
     * shard's index (placed by insert). Asked after an evicting put's
     * evictions: a new key's once insert has placed it (it may be the
     * answer), a growing replacement's before replace. */
    const struct pc__kv *(*upcoming)(const void *st);
    /* Place a new key, of hash h (low half), after the evictions made for
     * it and its insertion into the index; `evicted`: an entry of this
     * shard was evicted to make room for it. */
    void (*insert)(void *st, struct pc__kv *kv, uint32_t h, bool evicted);
    /* Put back kv, which victim() has just returned, as just used: the key
     * a growing replacement keeps is never evicted for its own new value.
     * It takes the room victim() freed; nothing else changed meanwhile but
     * other victims taken. */
    void (*keep)(void *st, struct pc__kv *kv);
    /* kv replaces old (same key), taking its place; a use. */
    void (*replace)(void *st, struct pc__kv *old, struct pc__kv *kv);
    /* Unlink an entry (delete, expiry). */
    void (*remove)(void *st, struct pc__kv *kv);
    /* Call fn for every entry. fn may remove() the entry it is given
     * (pc_expire does), and must change the policy's state no other way:
     * each must not skip or repeat an entry because of that removal. */
    void (*each)(void *st, void (*fn)(void *arg, struct pc__kv *kv), void *arg);
    /* Forget every entry (clear); the entries themselves are the
     * caller's. */
    void (*reset)(void *st);
};

extern const struct pc__shard_policy pc__clock_policy;
extern const struct pc__shard_policy pc__frequency_policy;

#endif
