/*
 * peer_purecache: both purecache policies in one benchmark binary.
 *
 * The CLOCK and exact-LRU builds of the library export the same pc_*
 * symbols, so the two static libraries cannot be linked into one
 * executable. Instead the harness loads each policy's shared library
 * (libpurecache_clock.so, libpurecache_lru.so, built by this same CMake
 * tree) with dlopen(RTLD_NOW | RTLD_LOCAL): RTLD_LOCAL keeps each
 * library's symbols out of the global namespace, so the two sets never
 * interpose on each other, and dlsym on each handle returns that library's
 * own functions. Both libraries link the same libjemalloc.so as the
 * harness, so one allocator (and one stats.allocated) serves all of them.
 *
 * Cost: the harness calls pc_get/pc_put through a function pointer, which
 * is what it does for every other peer too; inside the library nothing
 * changes (same code, same inlining as the installed libpurecache.so).
 * We chose this over objcopy --prefix-symbols on an `ld -r` object because
 * it needs no build-time symbol surgery and measures the exact artifact a
 * user links.
 *
 * Keys and values are 8 bytes, passed by address; hash_seed is fixed so
 * that shard placement (and therefore CLOCK's miss ratio) is reproducible.
 */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "peer.h"
#include "purecache.h"

struct pc_lib {
    void *dl;
    uint64_t hash_seed;
    pc_status (*create)(const pc_options *, pc_cache **);
    void (*destroy)(pc_cache *);
    pc_status (*get)(pc_cache *, const void *, size_t, void *, size_t,
                     size_t *);
    pc_status (*put)(pc_cache *, const void *, size_t, const void *, size_t);
    void (*reclaim)(pc_cache *);
    const char *(*policy)(void);
    pc_status (*stats)(pc_cache *, pc_stats *); /* optional */
    char what[128];
};

struct pc_handle {
    struct pc_lib *lib;
    pc_cache *cache;
};

static void *pcp_create(void *ctx, size_t capacity)
{
    struct pc_lib *lib = ctx;
    struct pc_handle *h = malloc(sizeof *h);
    pc_options o = {.capacity = capacity, .hash_seed = lib->hash_seed};

    if (h == NULL)
        return NULL;
    h->lib = lib;
    if (lib->create(&o, &h->cache) != PC_OK) {
        free(h);
        return NULL;
    }
    return h;
}

static void pcp_destroy(void *p)
{
    struct pc_handle *h = p;

    h->lib->destroy(h->cache);
    free(h);
}

static int pcp_get(void *p, uint64_t key, uint64_t *val)
{
    struct pc_handle *h = p;

    return h->lib->get(h->cache, &key, sizeof key, val, sizeof *val, NULL) ==
           PC_OK;
}

static void pcp_put(void *p, uint64_t key, uint64_t val)
{
    struct pc_handle *h = p;

    h->lib->put(h->cache, &key, sizeof key, &val, sizeof val);
}

static void pcp_quiesce(void *p)
{
    struct pc_handle *h = p;

    h->lib->reclaim(h->cache);
}

#define LOAD_SYM(lib, field, name)                                             \
    do {                                                                       \
        *(void **)&(lib)->field = dlsym((lib)->dl, name);                      \
        if ((lib)->field == NULL) {                                            \
            fprintf(stderr, "purecache-bench: %s: no symbol %s\n", path,       \
                    name);                                                     \
            goto fail;                                                         \
        }                                                                      \
    } while (0)

int peer_purecache(struct bench_peer *p, const char *policy, const char *path,
                   uint64_t hash_seed)
{
    struct pc_lib *lib = calloc(1, sizeof *lib);

    if (lib == NULL)
        return -1;
    lib->dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (lib->dl == NULL) {
        fprintf(stderr, "purecache-bench: %s\n", dlerror());
        free(lib);
        return -1;
    }
    lib->hash_seed = hash_seed;
    LOAD_SYM(lib, create, "pc_create");
    LOAD_SYM(lib, destroy, "pc_destroy");
    LOAD_SYM(lib, get, "pc_get");
    LOAD_SYM(lib, put, "pc_put");
    LOAD_SYM(lib, reclaim, "pc_reclaim");
    LOAD_SYM(lib, policy, "pc_policy");
    *(void **)&lib->stats = dlsym(lib->dl, "pc_stats_get");
    if (strcmp(lib->policy(), policy) != 0) {
        fprintf(stderr, "purecache-bench: %s is policy %s, not %s\n", path,
                lib->policy(), policy);
        goto fail;
    }
    memset(p, 0, sizeof *p);
    p->name = strcmp(policy, "clock") == 0 ? "clock" : "lru";
    {
        /* Optional: libraries older than pc_read_fence lack it. */
        const char *(*fence)(void) =
            (const char *(*)(void))dlsym(lib->dl, "pc_read_fence");

        snprintf(lib->what, sizeof lib->what, "%s; read fence: %s",
                 strcmp(policy, "clock") == 0
                     ? "purecache CLOCK (sharded, wait-free reads)"
                     : "purecache exact LRU",
                 fence != NULL ? fence() : "unknown");
        p->what = lib->what;
    }
    p->caps = PEER_GET | PEER_PUT | PEER_EVICTS;
    p->ctx = lib;
    p->create = pcp_create;
    p->destroy = pcp_destroy;
    p->get = pcp_get;
    p->put = pcp_put;
    p->quiesce = pcp_quiesce;
    return 0;

fail:
    dlclose(lib->dl);
    free(lib);
    return -1;
}

/* For --callgrind-get: the raw pc_get of the CLOCK library. */
void *peer_purecache_get_fn(const struct bench_peer *p)
{
    return (void *)((struct pc_lib *)p->ctx)->get;
}

void *peer_purecache_cache(void *handle)
{
    return ((struct pc_handle *)handle)->cache;
}

int peer_purecache_evictions(void *handle, uint64_t *evictions)
{
    struct pc_handle *h = handle;
    pc_stats st;

    if (h->lib->stats == NULL || h->lib->stats(h->cache, &st) != PC_OK)
        return -1;
    *evictions = st.evictions;
    return 0;
}
