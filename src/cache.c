/*
 * cache: the public cache API. Validates arguments, then hands the call to
 * the cache variant linked into this library (shard.c or lru.c) or to the
 * machinery every variant shares (core.h), and reports the call's removals
 * to the listener once the variant has released its locks (write.h).
 *
 * Every check happens before the variant sees the call, so a rejected call
 * cannot have changed anything. Nothing here locks or allocates.
 *
 * pc_get, pc_put and pc_put_ex are flattened: the compiler inlines every
 * call in them, all the way down, but for functions declared noinline
 * (across files in GCC's link-time optimised shared libraries; clang's
 * ThinLTO stops at the file's edge, at pc__policy_get and _put). The
 * noinline ones are the slow and cold paths (a contended lock, a grace-period
 * step, a batch full, an index growth, expiry bookkeeping, a listener's queue,
 * eviction in other shards), kept as calls so that what is inlined is the
 * common path, not every rare one. A put's common path is then one
 * function: no call passing nine arguments, three on the stack, to the
 * variant, nor calls from it to unlock, reclaim and unlink, each saving
 * and restoring the registers the caller keeps live. Policy hooks remain
 * indirect calls. pc_put has its own copy, with no arguments to honour,
 * rather than a call to the exported pc_put_ex (through the PLT).
 */
#include "alloc.h"
#include "core.h"
#include "flight.h"
#include "policy.h"

pc_status pc_create(const pc_options *opts, pc_cache **out)
{
    if (opts == NULL || out == NULL || opts->capacity == 0 ||
        opts->capacity > PC_CAPACITY_MAX || opts->shards > 4096 ||
        opts->policy > PC_POLICY_FREQUENCY)
        return PC_EINVAL;
    return pc__policy_create(opts, out);
}

void pc_destroy(pc_cache *cache)
{
    if (cache != NULL) {
        pc__policy_destroy(cache);
        pc__alloc_release_thread();
    }
}

__attribute__((flatten)) pc_status pc_get(pc_cache *cache, const void *key,
                                          size_t klen, void *buf, size_t bufcap,
                                          size_t *vlen)
{
    if (cache == NULL || !pc__key_ok(key, klen) || !pc__bytes_ok(buf, bufcap))
        return PC_EINVAL;
    return pc__policy_get(cache, key, klen, buf, bufcap, vlen, true);
}

/* pc_put_ex's work, inlined into it and into pc_put (args NULL: the
 * compiler drops what the arguments would have asked for). */
static inline __attribute__((always_inline)) pc_status
put(pc_cache *cache, const void *key, size_t klen, const void *val, size_t vlen,
    const pc_put_args *args)
{
    struct pc__put_req req = {0};
    struct pc__removals rm;
    struct pc__writer *w = NULL; /* (set by the policy unless ENOMEM) */
    pc_status st;
    uint64_t max;

    if (cache == NULL || !pc__key_ok(key, klen) || !pc__value_ok(val, vlen))
        return PC_EINVAL;
    if (args != NULL) {
        if ((args->flags & ~(PC_PUT_IF_ABSENT | PC_PUT_IF_PRESENT)) != 0 ||
            args->flags == (PC_PUT_IF_ABSENT | PC_PUT_IF_PRESENT))
            return PC_EINVAL;
        req.flags = args->flags;
    }
    /* Refused before anything is allocated (so as PC_EINVAL even short of
     * memory); checked again under the lock against a bound lowered since. */
    max = __atomic_load_n(&cache->max_bytes, __ATOMIC_RELAXED);
    if (max != 0 && (uint64_t)klen + vlen > max)
        return PC_EINVAL;
    req.expires = pc__core_expires(cache, args != NULL ? args->ttl_ms : 0);
    pc__removals_init(&rm, cache);
    st = pc__policy_put(cache, pc__hash_key(&cache->seed, key, klen), key, klen,
                        val, vlen, &req, &rm, &w);
    pc__removals_finish(cache, &rm, w);
    if (st == PC_OK && !pc__flight_none(cache->flights))
        pc__flight_detach(cache->flights, key, klen, false);
    return st;
}

__attribute__((flatten)) pc_status pc_put_ex(pc_cache *cache, const void *key,
                                             size_t klen, const void *val,
                                             size_t vlen,
                                             const pc_put_args *args)
{
    return put(cache, key, klen, val, vlen, args);
}

__attribute__((flatten)) pc_status pc_put(pc_cache *cache, const void *key,
                                          size_t klen, const void *val,
                                          size_t vlen)
{
    return put(cache, key, klen, val, vlen, NULL);
}

pc_status pc_delete(pc_cache *cache, const void *key, size_t klen)
{
    struct pc__removals rm;
    struct pc__writer *w;
    pc_status st;

    if (cache == NULL || !pc__key_ok(key, klen))
        return PC_EINVAL;
    pc__removals_init(&rm, cache);
    st = pc__policy_delete(cache, key, klen, &rm, &w);
    pc__removals_finish(cache, &rm, w);
    pc__flight_detach(cache->flights, key, klen, false);
    return st;
}

size_t pc_expire(pc_cache *cache)
{
    struct pc__removals rm;
    struct pc__writer *w;
    size_t n;

    if (cache == NULL)
        return 0;
    pc__removals_init(&rm, cache);
    n = pc__policy_expire(cache, &rm, &w);
    pc__removals_finish(cache, &rm, w);
    return n;
}

size_t pc_len(const pc_cache *cache)
{
    return cache == NULL ? 0 : __atomic_load_n(&cache->count, __ATOMIC_RELAXED);
}

size_t pc_capacity(const pc_cache *cache)
{
    return cache == NULL ? 0
                         : __atomic_load_n(&cache->capacity, __ATOMIC_RELAXED);
}

uint64_t pc_bytes(const pc_cache *cache)
{
    return cache == NULL ? 0 : pc__policy_bytes(cache);
}

/* After a limit changed: evict down to it and report the evictions; if it
 * was lowered, give back the memory the structures no longer need (not
 * after a raise: a shard holding few entries for another reason, deletes,
 * keeps its tables). */
static void shrink(pc_cache *cache, bool lowered)
{
    struct pc__removals rm;
    struct pc__writer *w = NULL;

    pc__removals_init(&rm, cache);
    pc__policy_shrink(cache, &rm, &w);
    if (lowered)
        pc__policy_trim(cache);
    if (w != NULL)
        pc__removals_finish(cache, &rm, w);
}

pc_status pc_set_capacity(pc_cache *cache, size_t capacity)
{
    size_t was;

    if (cache == NULL || capacity == 0 || capacity > PC_CAPACITY_MAX ||
        !pc__policy_capacity_ok(cache, capacity))
        return PC_EINVAL;
    /* Sequentially consistent, as pc__budget_take's check of it: a put
     * racing this store either sees it or is seen by the shrink. */
    was = __atomic_exchange_n(&cache->capacity, capacity, __ATOMIC_SEQ_CST);
    pc__policy_resize(cache);
    shrink(cache, capacity < was);
    return PC_OK;
}

pc_status pc_set_max_bytes(pc_cache *cache, uint64_t max_bytes)
{
    uint64_t was, held, before;
    unsigned int done, begun, now_begun;

    if (cache == NULL)
        return PC_EINVAL;
    /* A bound is checked against the cache's byte count, which must then
     * be exact before any put can see the bound: first stop puts from
     * owing bytes to their shards, then settle every shard. */
    done = __atomic_load_n(&cache->stores_done, __ATOMIC_SEQ_CST);
    begun = __atomic_load_n(&cache->stores_begun, __ATOMIC_SEQ_CST);
    before = __atomic_load_n(&cache->max_bytes, __ATOMIC_SEQ_CST);
    if (max_bytes != 0) {
        __atomic_add_fetch(&cache->settling, 1, __ATOMIC_SEQ_CST);
        pc__policy_settle(cache);
    }
    held = pc__policy_bytes(cache);
#ifdef PC_DEBUG
    if (max_bytes != 0 && pc__debug_settled_hook != NULL)
        pc__debug_settled_hook();
#endif
    now_begun = __atomic_add_fetch(&cache->stores_begun, 1, __ATOMIC_SEQ_CST);
    was = __atomic_exchange_n(&cache->max_bytes, max_bytes,
                              __ATOMIC_SEQ_CST); /* idem */
    __atomic_add_fetch(&cache->stores_done, 1, __ATOMIC_SEQ_CST);
    /* Puts between the settling above and the store kept credit capped
     * by the bound they read (clock, frequency: shard_state.h); take it
     * back if that bound may be larger than this one, so that the shrink
     * counts only what the entries hold and credit from here on is capped
     * by this bound: a lower old bound; a bound in force when this call
     * began that another call removed meanwhile (was 0); or any bound
     * another call stored between this call's first look and its store
     * (with two other calls, one setting a bound and one removing it, in
     * that window, the credit kept under the first stayed with its shard
     * for good, and a cache held 2240 of its 8192 bytes: review-lim-56).
     * Such a store had begun when this call looked (begun != done), or
     * began after (another count before this call's own): every store
     * is counted before and after it is made, all sequentially
     * consistent. */
    if (max_bytes != 0 && ((was != 0 ? max_bytes < was : before != 0) ||
                           begun != done || now_begun != begun + 1))
        pc__policy_settle(cache);
    /* Trim only under a bound that binds: under a byte bound the tables
     * are sized by the entries held, and a cache that holds few (after
     * deletes) below a new bound would rebuild them only to grow them
     * again. */
    shrink(cache,
           max_bytes != 0 && (was == 0 || max_bytes < was) && max_bytes < held);
    if (max_bytes != 0)
        __atomic_sub_fetch(&cache->settling, 1, __ATOMIC_RELEASE);
    return PC_OK;
}

void pc_clear(pc_cache *cache)
{
    struct pc__removals rm;
    struct pc__writer *w;

    if (cache == NULL)
        return;
    pc__removals_init(&rm, cache);
    pc__policy_clear(cache, &rm, &w);
    pc__removals_finish(cache, &rm, w);
    pc__flight_detach(cache->flights, NULL, 0, true);
}

void pc_reclaim(pc_cache *cache)
{
    if (cache != NULL)
        pc__core_reclaim(cache);
}

pc_status pc_get_pinned(pc_cache *cache, const void *key, size_t klen,
                        pc_pin *pin)
{
    if (cache == NULL || pin == NULL || !pc__key_ok(key, klen))
        return PC_EINVAL;
    return pc__policy_pin(cache, key, klen, pin);
}

void pc_unpin(pc_pin *pin)
{
    if (pin == NULL || pin->internal_[0] == NULL)
        return;
    pc__pins_release(pin->internal_[0], (uint64_t)(uintptr_t)pin->internal_[1]);
    pin->internal_[0] = NULL;
    pin->internal_[1] = NULL;
    pin->value = NULL;
    pin->len = 0;
}

pc_status pc_stats_get(pc_cache *cache, pc_stats *out)
{
    if (cache == NULL || out == NULL)
        return PC_EINVAL;
    pc__core_stats(cache, out);
    out->bytes = pc__policy_bytes(cache); /* (a shard may owe some: shard.c) */
    return PC_OK;
}

const char *pc_policy(void)
{
    return pc__policy_name();
}

const char *pc_cache_policy(const pc_cache *cache)
{
    return cache == NULL ? NULL : cache->policy_name;
}

const char *pc_read_fence(void)
{
    return pc__read_fence_name();
}

const char *pc_strerror(pc_status status)
{
    switch (status) {
    case PC_OK:
        return "success";
    case PC_NOTFOUND:
        return "key not found";
    case PC_EXISTS:
        return "the key is present; nothing changed";
    case PC_EINVAL:
        return "invalid argument";
    case PC_ENOMEM:
        return "out of memory; the cache is unchanged";
    case PC_ERANGE:
        return "value longer than the buffer; its length was returned";
    case PC_ELOAD:
        return "the loader failed; its error code was passed on";
    case PC_EDEADLK:
        return "a loader waited, directly or not, on its own load";
    case PC_EIO:
        return "a remote backend could not be reached or failed";
    }
    return "unknown status";
}
