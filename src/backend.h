/*
 * backend: purecache's own cache seen through the backend interface
 * (pc_backend_ops), for pc_backend_from_cache and pc_get_or_load.
 */
#ifndef PC_BACKEND_H
#define PC_BACKEND_H

#include <stdbool.h>
#include <stddef.h>

#include "purecache.h"

/* Fill *out with cache as a backend (cannot fail; cache not NULL). */
void pc__backend_of_cache(pc_cache *cache, pc_backend *out);

/* The cache behind be if be is one of this library's caches
 * (pc_backend_from_cache), else NULL: loads over it take leases and store
 * through the policy directly (load.c). */
pc_cache *pc__backend_cache(const pc_backend *be);

/* Whether the backend has put_ex (its size covers it, and it is set). */
static inline bool pc__backend_has_put_ex(const pc_backend_ops *ops)
{
    return ops->size >= offsetof(pc_backend_ops, put_ex) + sizeof ops->put_ex &&
           ops->put_ex != NULL;
}

#endif
