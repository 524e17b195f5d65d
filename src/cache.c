/*
 * cache: the public cache API. Validates arguments, then hands the call to
 * the policy linked into this variant of the library (clock.c or lru.c) or
 * to the machinery every policy shares (core.h).
 *
 * Every check happens before the policy sees the call, so a rejected call
 * cannot have changed anything. Nothing here locks or allocates.
 */
#include "core.h"
#include "policy.h"

pc_status pc_create(const pc_options *opts, pc_cache **out)
{
    if (opts == NULL || out == NULL || opts->capacity == 0 ||
        opts->capacity > PC_CAPACITY_MAX || opts->shards > 4096)
        return PC_EINVAL;
    return pc__policy_create(opts, out);
}

void pc_destroy(pc_cache *cache)
{
    if (cache != NULL)
        pc__policy_destroy(cache);
}

pc_status pc_get(pc_cache *cache, const void *key, size_t klen, void *buf,
                 size_t bufcap, size_t *vlen)
{
    if (cache == NULL || !pc__key_ok(key, klen) || !pc__bytes_ok(buf, bufcap))
        return PC_EINVAL;
    return pc__policy_get(cache, key, klen, buf, bufcap, vlen);
}

pc_status pc_put(pc_cache *cache, const void *key, size_t klen, const void *val,
                 size_t vlen)
{
    if (cache == NULL || !pc__key_ok(key, klen) || !pc__value_ok(val, vlen))
        return PC_EINVAL;
    return pc__policy_put(cache, key, klen, val, vlen);
}

pc_status pc_delete(pc_cache *cache, const void *key, size_t klen)
{
    if (cache == NULL || !pc__key_ok(key, klen))
        return PC_EINVAL;
    return pc__policy_delete(cache, key, klen);
}

size_t pc_len(const pc_cache *cache)
{
    return cache == NULL ? 0 : pc__policy_len(cache);
}

size_t pc_capacity(const pc_cache *cache)
{
    return cache == NULL ? 0 : cache->capacity;
}

void pc_clear(pc_cache *cache)
{
    if (cache != NULL)
        pc__policy_clear(cache);
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
    pc__read_leave(pin->internal_[0]);
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
    return PC_OK;
}

const char *pc_policy(void)
{
    return pc__policy_name();
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
