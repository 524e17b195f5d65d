/*
 * cache: the public API. Validates arguments, then hands the call to the
 * policy linked into this variant of the library (clock.c or lru.c).
 *
 * Every check happens before the policy sees the call, so a rejected call
 * cannot have changed anything. Nothing here locks or allocates.
 */
#include "epoch.h"
#include "policy.h"

static int key_ok(const void *key, size_t klen)
{
    return (key != NULL || klen == 0) && klen <= PC_KEY_MAX;
}

pc_status pc_create(const pc_options *opts, pc_cache **out)
{
    if (opts == NULL || out == NULL || opts->capacity == 0 ||
        opts->shards > 4096)
        return PC_EINVAL;
    return policy_create(opts, out);
}

void pc_destroy(pc_cache *cache)
{
    if (cache != NULL)
        policy_destroy(cache);
}

pc_status pc_get(pc_cache *cache, const void *key, size_t klen, void *buf,
                 size_t bufcap, size_t *vlen)
{
    if (cache == NULL || !key_ok(key, klen) || (buf == NULL && bufcap > 0))
        return PC_EINVAL;
    return policy_get(cache, key, klen, buf, bufcap, vlen);
}

pc_status pc_put(pc_cache *cache, const void *key, size_t klen, const void *val,
                 size_t vlen)
{
    if (cache == NULL || !key_ok(key, klen) || (val == NULL && vlen > 0) ||
        vlen > PC_VALUE_MAX)
        return PC_EINVAL;
    return policy_put(cache, key, klen, val, vlen);
}

pc_status pc_delete(pc_cache *cache, const void *key, size_t klen)
{
    if (cache == NULL || !key_ok(key, klen))
        return PC_EINVAL;
    return policy_delete(cache, key, klen);
}

size_t pc_len(const pc_cache *cache)
{
    return cache == NULL ? 0 : policy_len(cache);
}

size_t pc_capacity(const pc_cache *cache)
{
    return cache == NULL ? 0 : policy_capacity(cache);
}

void pc_clear(pc_cache *cache)
{
    if (cache != NULL)
        policy_clear(cache);
}

void pc_reclaim(pc_cache *cache)
{
    if (cache != NULL)
        policy_reclaim(cache);
}

pc_status pc_get_pinned(pc_cache *cache, const void *key, size_t klen,
                        pc_pin *pin)
{
    if (cache == NULL || pin == NULL || !key_ok(key, klen))
        return PC_EINVAL;
    return policy_pin(cache, key, klen, pin);
}

void pc_unpin(pc_pin *pin)
{
    if (pin == NULL || pin->internal_[0] == NULL)
        return;
    read_leave(pin->internal_[0]);
    pin->internal_[0] = NULL;
    pin->internal_[1] = NULL;
    pin->value = NULL;
    pin->len = 0;
}

pc_status pc_stats_get(pc_cache *cache, pc_stats *out)
{
    if (cache == NULL || out == NULL)
        return PC_EINVAL;
    policy_stats(cache, out);
    return PC_OK;
}

const char *pc_policy(void)
{
    return policy_name();
}

const char *pc_read_fence(void)
{
    return read_fence_name();
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
