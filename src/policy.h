/*
 * policy: the interface an eviction policy (clock.c, lru.c) implements.
 *
 * Exactly one policy is linked into each library variant. cache.c owns the
 * public API and validates every argument first, so a policy function is
 * only ever called with a non-NULL cache and arguments that satisfy the
 * header's contract. What every policy shares (capacity, reclaim, stats,
 * get-or-load's flight table) lives in core.h and is called directly.
 */
#ifndef PC_POLICY_H
#define PC_POLICY_H

#include "purecache.h"

pc_status pc__policy_create(const pc_options *opts, pc_cache **out);
void pc__policy_destroy(pc_cache *c);
pc_status pc__policy_get(pc_cache *c, const void *key, size_t klen, void *buf,
                         size_t bufcap, size_t *vlen);
/* Look key up and pin its value (see pc_get_pinned). */
pc_status pc__policy_pin(pc_cache *c, const void *key, size_t klen,
                         pc_pin *pin);
pc_status pc__policy_put(pc_cache *c, const void *key, size_t klen,
                         const void *val, size_t vlen);
pc_status pc__policy_delete(pc_cache *c, const void *key, size_t klen);
size_t pc__policy_len(const pc_cache *c);
void pc__policy_clear(pc_cache *c);
const char *pc__policy_name(void);

#endif
