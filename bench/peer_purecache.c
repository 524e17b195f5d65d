/*
 * peer_purecache: the purecache policies (clock, frequency, lru) in one
 * benchmark binary, plain and in configured variants.
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
 * The frequency policy lives in the CLOCK build and is chosen per cache
 * (pc_options.policy = PC_POLICY_FREQUENCY); its peer loads the CLOCK
 * library too (dlopen hands back the same, reference-counted, handle).
 *
 * Cost: the harness calls pc_get/pc_put through a function pointer, which
 * is what it does for every other peer too; inside the library nothing
 * changes (same code, same inlining as the installed libpurecache.so).
 * We chose this over objcopy --prefix-symbols on an `ld -r` object because
 * it needs no build-time symbol surgery and measures the exact artifact a
 * user links.
 *
 * Keys are 8 bytes, passed by address; hash_seed is fixed so that shard
 * placement (and therefore CLOCK's miss ratio) is reproducible. Values are
 * 8 bytes, except in variants that ask for other sizes (peer_purecache.h):
 * there a key's value length is a fixed function of the key, uniform in
 * [vmin, vmax], its first 8 bytes the harness's value and the rest a
 * constant pattern, and gets copy into a PEER_PC_VALUE_MAX-byte buffer.
 * A variant with warm_ttl_ms gives the puts of its warm-up ttls drawn
 * uniformly from 1..warm_ttl_ms, so that the timed runs start from the
 * steady state of a cache whose entries have been put at random moments
 * over the last ttl: as many expire in each second as in the next.
 */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "peer.h"
#include "peer_purecache.h"
#include "purecache.h"
#include "util.h"

struct pc_lib {
    void *dl;
    pc_status (*create)(const pc_options *, pc_cache **);
    void (*destroy)(pc_cache *);
    pc_status (*get)(pc_cache *, const void *, size_t, void *, size_t,
                     size_t *);
    pc_status (*put)(pc_cache *, const void *, size_t, const void *, size_t);
    void (*reclaim)(pc_cache *);
    const char *(*policy)(void);
    /* Optional (older libraries lack them; variants need them). */
    pc_status (*stats)(pc_cache *, pc_stats *);
    pc_status (*put_ex)(pc_cache *, const void *, size_t, const void *, size_t,
                        const pc_put_args *);
    size_t (*expire)(pc_cache *);
    size_t (*len)(const pc_cache *);
    uint64_t (*bytes)(const pc_cache *);
    const char *(*cache_policy)(const pc_cache *);
};

/* One peer: the ctx of its vtable. */
struct pc_conf {
    struct pc_lib *lib;
    uint64_t hash_seed;
    unsigned policy; /* pc_options.policy */
    struct peer_pc_variant v;
    struct peer_pc_run last;
    char name[48];
    char what[192];
};

struct pc_handle {
    struct pc_conf *conf;
    pc_cache *cache;
    bool warming;      /* until warmed: staggered ttls (v.warm_ttl_ms) */
    uint64_t warm_seq; /* draws of those ttls */
    double t_warmed;
    pc_stats at_warmed;
};

static void *pcp_create(void *ctx, size_t capacity)
{
    struct pc_conf *c = ctx;
    struct pc_handle *h = calloc(1, sizeof *h);
    pc_options o = {.capacity = c->v.capacity ? c->v.capacity : capacity,
                    .hash_seed = c->hash_seed,
                    .policy = c->policy,
                    .ttl_ms = c->v.ttl_ms,
                    .max_bytes = c->v.max_bytes};

    if (h == NULL)
        return NULL;
    h->conf = c;
    h->warming = c->v.warm_ttl_ms > 0;
    if (c->lib->create(&o, &h->cache) != PC_OK) {
        free(h);
        return NULL;
    }
    return h;
}

static void pcp_warmed(void *p)
{
    struct pc_handle *h = p;
    struct pc_lib *lib = h->conf->lib;

    h->warming = false;
    h->t_warmed = bench_now();
    if (lib->stats == NULL || lib->stats(h->cache, &h->at_warmed) != PC_OK)
        memset(&h->at_warmed, 0, sizeof h->at_warmed);
}

static void pcp_destroy(void *p)
{
    struct pc_handle *h = p;
    struct pc_conf *c = h->conf;
    struct pc_lib *lib = c->lib;
    pc_stats st;

    /* A variant's figures: the entries whose ttl ran out after warm-up,
     * removed or not yet (pc_expire removes and counts the rest). */
    if (h->t_warmed > 0 && lib->stats != NULL && lib->len != NULL &&
        lib->bytes != NULL && lib->expire != NULL) {
        c->last.seconds = bench_now() - h->t_warmed;
        c->last.len = lib->len(h->cache);
        c->last.bytes = lib->bytes(h->cache);
        lib->expire(h->cache);
        if (lib->stats(h->cache, &st) == PC_OK) {
            c->last.expirations = st.expirations - h->at_warmed.expirations;
            c->last.evictions = st.evictions - h->at_warmed.evictions;
            c->last.valid = true;
        }
    }
    lib->destroy(h->cache);
    free(h);
}

static int pcp_get(void *p, uint64_t key, uint64_t *val)
{
    struct pc_handle *h = p;

    return h->conf->lib->get(h->cache, &key, sizeof key, val, sizeof *val,
                             NULL) == PC_OK;
}

static void pcp_put(void *p, uint64_t key, uint64_t val)
{
    struct pc_handle *h = p;

    h->conf->lib->put(h->cache, &key, sizeof key, &val, sizeof val);
}

/* ---- variants: other value sizes, staggered warm-up ttls ---- */

static size_t value_len(const struct pc_conf *c, uint64_t key)
{
    if (c->v.vmax == 0)
        return sizeof(uint64_t);
    return c->v.vmin + (size_t)(bench_hash64(key ^ 0x76616c7565ull) %
                                (c->v.vmax - c->v.vmin + 1));
}

static int pcv_get(void *p, uint64_t key, uint64_t *val)
{
    struct pc_handle *h = p;
    unsigned char buf[PEER_PC_VALUE_MAX];
    size_t n = 0;

    if (h->conf->lib->get(h->cache, &key, sizeof key, buf, sizeof buf, &n) !=
        PC_OK)
        return 0;
    *val = 0;
    memcpy(val, buf, n < sizeof *val ? n : sizeof *val);
    return 1;
}

static void pcv_put(void *p, uint64_t key, uint64_t val)
{
    static __thread unsigned char buf[PEER_PC_VALUE_MAX];
    static __thread bool filled;
    struct pc_handle *h = p;
    struct pc_conf *c = h->conf;
    size_t n = value_len(c, key);

    if (!filled) {
        for (size_t i = 0; i < sizeof buf; i++)
            buf[i] = (unsigned char)(i * 131u + 7u);
        filled = true;
    }
    memcpy(buf, &val, n < sizeof val ? n : sizeof val);
    if (h->warming) {
        pc_put_args a = {.ttl_ms = 1 + bench_hash64(key ^ ++h->warm_seq) %
                                           c->v.warm_ttl_ms};

        c->lib->put_ex(h->cache, &key, sizeof key, buf, n, &a);
        return;
    }
    c->lib->put(h->cache, &key, sizeof key, buf, n);
}

static void pcp_quiesce(void *p)
{
    struct pc_handle *h = p;

    h->conf->lib->reclaim(h->cache);
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
#define LOAD_OPT(lib, field, name)                                             \
    (*(void **)&(lib)->field = dlsym((lib)->dl, name))

/* Whether this library creates caches of `policy` (the frequency policy
 * may be missing from an older CLOCK library). */
static bool creates_policy(struct pc_lib *lib, unsigned policy,
                           const char *name)
{
    pc_options o = {.capacity = 16, .hash_seed = 1, .policy = policy};
    pc_cache *c;
    bool ok;

    if (lib->create(&o, &c) != PC_OK)
        return false;
    ok = lib->cache_policy == NULL || strcmp(lib->cache_policy(c), name) == 0;
    lib->destroy(c);
    return ok;
}

const char *peer_purecache_lib_policy(const char *path)
{
    void *dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    const char *(*policy)(void);
    const char *name = NULL;

    if (dl == NULL) {
        fprintf(stderr, "purecache-bench: %s\n", dlerror());
        return NULL;
    }
    policy = (const char *(*)(void))dlsym(dl, "pc_policy");
    if (policy == NULL)
        fprintf(stderr, "purecache-bench: %s: no pc_policy\n", path);
    else if (strcmp(policy(), "lru") == 0)
        name = "lru";
    else if (strcmp(policy(), "clock") == 0)
        name = "clock";
    else
        fprintf(stderr, "purecache-bench: %s: unknown policy %s\n", path,
                policy());
    dlclose(dl);
    return name;
}

int peer_purecache(struct bench_peer *p, const char *policy, const char *path,
                   uint64_t hash_seed)
{
    return peer_purecache_as(p, policy, path, hash_seed, policy);
}

int peer_purecache_as(struct bench_peer *p, const char *policy,
                      const char *path, uint64_t hash_seed, const char *name)
{
    bool freq = strcmp(policy, "frequency") == 0;
    const char *build = freq ? "clock" : policy;
    struct pc_lib *lib = calloc(1, sizeof *lib);
    struct pc_conf *c = calloc(1, sizeof *c);

    if (lib == NULL || c == NULL) {
        free(lib);
        free(c);
        return -1;
    }
    lib->dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (lib->dl == NULL) {
        fprintf(stderr, "purecache-bench: %s\n", dlerror());
        free(lib);
        free(c);
        return -1;
    }
    LOAD_SYM(lib, create, "pc_create");
    LOAD_SYM(lib, destroy, "pc_destroy");
    LOAD_SYM(lib, get, "pc_get");
    LOAD_SYM(lib, put, "pc_put");
    LOAD_SYM(lib, reclaim, "pc_reclaim");
    LOAD_SYM(lib, policy, "pc_policy");
    LOAD_OPT(lib, stats, "pc_stats_get");
    LOAD_OPT(lib, put_ex, "pc_put_ex");
    LOAD_OPT(lib, expire, "pc_expire");
    LOAD_OPT(lib, len, "pc_len");
    LOAD_OPT(lib, bytes, "pc_bytes");
    LOAD_OPT(lib, cache_policy, "pc_cache_policy");
    if (strcmp(lib->policy(), build) != 0) {
        fprintf(stderr, "purecache-bench: %s is policy %s, not %s\n", path,
                lib->policy(), build);
        goto fail;
    }
    c->lib = lib;
    c->hash_seed = hash_seed;
    c->policy = freq ? PC_POLICY_FREQUENCY : PC_POLICY_DEFAULT;
    if (freq && !creates_policy(lib, c->policy, policy)) {
        fprintf(stderr, "purecache-bench: %s has no frequency policy\n", path);
        goto fail;
    }
    snprintf(c->name, sizeof c->name, "%s", name);
    {
        /* Optional: libraries older than pc_read_fence lack it. */
        const char *(*fence)(void) =
            (const char *(*)(void))dlsym(lib->dl, "pc_read_fence");

        snprintf(c->what, sizeof c->what, "%s; read fence: %s%s%s",
                 freq ? "purecache frequency (S3-FIFO-like, CLOCK build)"
                 : strcmp(policy, "clock") == 0
                     ? "purecache CLOCK (sharded, wait-free reads)"
                     : "purecache exact LRU",
                 fence != NULL ? fence() : "unknown",
                 strcmp(name, policy) != 0 ? "; from " : "",
                 strcmp(name, policy) != 0 ? path : "");
    }
    memset(p, 0, sizeof *p);
    p->name = c->name;
    p->what = c->what;
    p->caps = PEER_GET | PEER_PUT | PEER_EVICTS;
    p->ctx = c;
    p->create = pcp_create;
    p->destroy = pcp_destroy;
    p->get = pcp_get;
    p->put = pcp_put;
    p->quiesce = pcp_quiesce;
    return 0;

fail:
    dlclose(lib->dl);
    free(lib);
    free(c);
    return -1;
}

bool peer_purecache_is(const struct bench_peer *p)
{
    return p->create == pcp_create;
}

int peer_purecache_variant(struct bench_peer *out,
                           const struct bench_peer *base,
                           const struct peer_pc_variant *v)
{
    const struct pc_conf *b = base->ctx;
    struct pc_lib *lib = b->lib;
    struct pc_conf *c;

    if (!peer_purecache_is(base))
        return -1;
    if (lib->put_ex == NULL || lib->stats == NULL || lib->len == NULL ||
        lib->bytes == NULL || lib->expire == NULL) {
        fprintf(stderr,
                "purecache-bench: %s: the library lacks pc_put_ex, "
                "pc_expire, pc_len or pc_bytes (no variants)\n",
                base->name);
        return -1;
    }
    if (v->vmax > PEER_PC_VALUE_MAX || v->vmin > v->vmax) {
        fprintf(stderr, "purecache-bench: bad value sizes %u..%u\n", v->vmin,
                v->vmax);
        return -1;
    }
    c = calloc(1, sizeof *c);
    if (c == NULL)
        return -1;
    *c = *b;
    c->v = *v;
    memset(&c->last, 0, sizeof c->last);
    snprintf(c->name, sizeof c->name, "%s%s", b->name,
             v->suffix ? v->suffix : "");
    if (v->what != NULL)
        snprintf(c->what, sizeof c->what, "%s", v->what);
    else
        snprintf(c->what, sizeof c->what,
                 "%s: ttl %llu ms, max_bytes %llu, capacity %zu, values "
                 "%u..%u bytes",
                 b->name, (unsigned long long)v->ttl_ms,
                 (unsigned long long)v->max_bytes, v->capacity,
                 v->vmax ? v->vmin : 8, v->vmax ? v->vmax : 8);
    *out = *base;
    out->name = bench_intern(c->name); /* results keep it after the free */
    out->what = c->what;
    out->ctx = c;
    out->warmed = pcp_warmed;
    if (v->vmax > 0 || v->warm_ttl_ms > 0) {
        out->get = pcv_get;
        out->put = pcv_put;
    }
    return 0;
}

void peer_purecache_variant_free(struct bench_peer *p)
{
    free(p->ctx);
    p->ctx = NULL;
}

struct peer_pc_run peer_purecache_last_run(const struct bench_peer *p)
{
    return ((const struct pc_conf *)p->ctx)->last;
}

size_t peer_purecache_len(void *handle)
{
    struct pc_handle *h = handle;

    return h->conf->lib->len != NULL ? h->conf->lib->len(h->cache) : 0;
}

uint64_t peer_purecache_bytes(void *handle)
{
    struct pc_handle *h = handle;

    return h->conf->lib->bytes != NULL ? h->conf->lib->bytes(h->cache) : 0;
}

/* For --callgrind-get: the raw pc_get of the peer's library. */
void *peer_purecache_get_fn(const struct bench_peer *p)
{
    return (void *)((struct pc_conf *)p->ctx)->lib->get;
}

void *peer_purecache_cache(void *handle)
{
    return ((struct pc_handle *)handle)->cache;
}

int peer_purecache_evictions(void *handle, uint64_t *evictions)
{
    struct pc_handle *h = handle;
    pc_stats st;

    if (h->conf->lib->stats == NULL ||
        h->conf->lib->stats(h->cache, &st) != PC_OK)
        return -1;
    *evictions = st.evictions;
    return 0;
}
