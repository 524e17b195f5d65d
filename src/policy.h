/*
 * policy: the interface each library variant's cache implements: shard.c
 * (the CLOCK build: sharded, with the CLOCK or frequency policy inside its
 * shards) or lru.c (the exact-LRU build).
 *
 * cache.c owns the public API and validates every argument first, so these
 * are only ever called with a non-NULL cache and arguments that satisfy
 * the header's contract. What every variant shares (reclaim, stats, the
 * clock, the budgets, the removal listener's reporting) lives in core.h
 * and write.h.
 *
 * Write calls take the call's removal queue (write.h) and set *w to a
 * writer lock of the cache, which the caller hands to pc__removals_finish
 * once the call has returned (no lock is held on return).
 */
#ifndef PC_POLICY_H
#define PC_POLICY_H

#include <stdbool.h>

#include "purecache.h"
#include "write.h"

struct pc__writer;

pc_status pc__policy_create(const pc_options *opts, pc_cache **out);
/* Whether the cache could hold `capacity` entries (pc_set_capacity): every
 * shard's share within a shard's limit. */
bool pc__policy_capacity_ok(const pc_cache *c, size_t capacity);
/* The capacity has just changed (pc_set_capacity, before its shrink):
 * let the policy's parameters follow. */
void pc__policy_resize(pc_cache *c);
/* A limit was lowered and the cache evicted down to it: give back the
 * memory its structures (index tables, policy arrays) hold beyond what
 * the entries the limits allow need. */
void pc__policy_trim(pc_cache *c);
void pc__policy_destroy(pc_cache *c);
/* The CLOCK build only: the shard that holds key (a diagnostic's hook,
 * bench/sharing.c, which gives each thread keys of its own shards). */
unsigned int pc__policy_shard_of(const pc_cache *c, const void *key,
                                 size_t klen);
/* The name of the build's policy ("clock" or "lru"). */
const char *pc__policy_name(void);
/* pc_bytes: the sum of klen + vlen over the entries present (any thread;
 * exact when no write is under way). */
uint64_t pc__policy_bytes(const pc_cache *c);
/* With c->settling raised: make the cache's byte count exact, before a
 * byte bound is set (CLOCK build: what every shard owes; no-op in the
 * exact-LRU build, whose count always is). */
void pc__policy_settle(pc_cache *c);

/* pc_get; count: add one hit or miss to the statistics (get-or-load's
 * second looks do not). */
pc_status pc__policy_get(pc_cache *c, const void *key, size_t klen, void *buf,
                         size_t bufcap, size_t *vlen, bool count);
/* Look key up and pin its value (see pc_get_pinned). */
pc_status pc__policy_pin(pc_cache *c, const void *key, size_t klen,
                         pc_pin *pin);
/* Store key -> val under hash h as req says (write.h); PC_OK (check
 * req->dropped), PC_EXISTS, PC_NOTFOUND, PC_EINVAL (larger than the byte
 * bound), PC_ENOMEM. */
pc_status pc__policy_put(pc_cache *c, uint64_t h, const void *key, size_t klen,
                         const void *val, size_t vlen, struct pc__put_req *req,
                         struct pc__removals *rm, struct pc__writer **w);
pc_status pc__policy_delete(pc_cache *c, const void *key, size_t klen,
                            struct pc__removals *rm, struct pc__writer **w);
void pc__policy_clear(pc_cache *c, struct pc__removals *rm,
                      struct pc__writer **w);
/* Remove every expired entry; returns how many. */
size_t pc__policy_expire(pc_cache *c, struct pc__removals *rm,
                         struct pc__writer **w);
/* Evict until the cache is within its capacity and byte bound. */
void pc__policy_shrink(pc_cache *c, struct pc__removals *rm,
                       struct pc__writer **w);
/* Register / unregister a load's lease on hash h (write.h). */
void pc__policy_lease_begin(pc_cache *c, uint64_t h, struct pc__lease *l);
__attribute__((noinline)) void pc__policy_lease_end(pc_cache *c,
                                                    struct pc__lease *l);

#endif
