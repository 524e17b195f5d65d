/*
 * backend: purecache's own cache seen through the backend interface
 * (pc_backend_ops), for pc_backend_from_cache and pc_get_or_load.
 */
#ifndef PC_BACKEND_H
#define PC_BACKEND_H

#include "purecache.h"

/* Fill *out with cache as a backend (cannot fail; cache not NULL). */
void pc__backend_of_cache(pc_cache *cache, pc_backend *out);

#endif
