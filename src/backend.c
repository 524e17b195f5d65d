/*
 * backend: the cache itself as a pc_backend. Each operation is the public
 * call of the same name, so the backend inherits its thread-safety,
 * progress and statuses; destroying the backend destroys the cache.
 */
#include "backend.h"

static pc_status cache_get(void *self, const void *key, size_t klen, void *buf,
                           size_t bufcap, size_t *vlen)
{
    return pc_get(self, key, klen, buf, bufcap, vlen);
}

static pc_status cache_put(void *self, const void *key, size_t klen,
                           const void *val, size_t vlen)
{
    return pc_put(self, key, klen, val, vlen);
}

static pc_status cache_put_ex(void *self, const void *key, size_t klen,
                              const void *val, size_t vlen,
                              const pc_put_args *args)
{
    return pc_put_ex(self, key, klen, val, vlen, args);
}

static pc_status cache_del(void *self, const void *key, size_t klen)
{
    return pc_delete(self, key, klen);
}

static size_t cache_len(void *self)
{
    return pc_len(self);
}

static void cache_destroy(void *self)
{
    pc_destroy(self);
}

static const pc_backend_ops cache_ops = {
    .size = sizeof(pc_backend_ops),
    .get = cache_get,
    .put = cache_put,
    .del = cache_del,
    .len = cache_len,
    .destroy = cache_destroy,
    .put_ex = cache_put_ex,
};

void pc__backend_of_cache(pc_cache *cache, pc_backend *out)
{
    out->ops = &cache_ops;
    out->self = cache;
}

pc_cache *pc__backend_cache(const pc_backend *be)
{
    return be->ops == &cache_ops ? be->self : NULL;
}

pc_status pc_backend_from_cache(pc_cache *cache, pc_backend *out)
{
    if (cache == NULL || out == NULL)
        return PC_EINVAL;
    pc__backend_of_cache(cache, out);
    return PC_OK;
}
