/*
 * policy: the interface each eviction policy (clock.c, lru.c) implements.
 *
 * cache.c owns the public API: it validates every argument, so a policy
 * function is only ever called with a non-NULL cache and arguments that
 * satisfy the header's contract. Exactly one policy is linked into each
 * library variant.
 */
#ifndef PC_POLICY_H
#define PC_POLICY_H

#include "purecache.h"

pc_status policy_create(const pc_options *opts, pc_cache **out);
void policy_destroy(pc_cache *c);
pc_status policy_get(pc_cache *c, const void *key, size_t klen, void *buf,
                     size_t bufcap, size_t *vlen);
pc_status policy_put(pc_cache *c, const void *key, size_t klen, const void *val,
                     size_t vlen);
pc_status policy_delete(pc_cache *c, const void *key, size_t klen);
size_t policy_len(const pc_cache *c);
size_t policy_capacity(const pc_cache *c);
void policy_clear(pc_cache *c);
void policy_reclaim(pc_cache *c);
void policy_stats(pc_cache *c, pc_stats *out);
const char *policy_name(void);

/* Look key up and pin its value (see pc_get_pinned). */
pc_status policy_pin(pc_cache *c, const void *key, size_t klen, pc_pin *pin);
/* The calling thread's record on c (registering it), or NULL on ENOMEM. */
struct pc_thread *policy_thread(pc_cache *c);
/* The cache's single-flight table (memo.c). */
struct pc_flights *policy_flights(pc_cache *c);

#endif
