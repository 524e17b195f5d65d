/*
 * peer_cuckoo: libcuckoo's cuckoohash_map, an unbounded concurrent map.
 *
 * Fine-grained bucket locks (striped spinlocks), cuckoo displacement on
 * insert, no eviction and no recency: a concurrent-map ceiling for the
 * mixes with writes, not a cache. Like raw ck_hs it is pre-filled with the
 * C hottest keys; in the 90/10 and cache-aside mixes its puts only add keys,
 * so it holds more than C entries (and hits more) as the run goes on.
 */
#include <libcuckoo/cuckoohash_map.hh>

#include <new>

#include "peer.h"

namespace
{

struct mix_hash {
    size_t operator()(uint64_t k) const
    {
        return static_cast<size_t>(bench_hash64(k));
    }
};

using map_type = libcuckoo::cuckoohash_map<uint64_t, uint64_t, mix_hash>;

void *cuckoo_create(void *, size_t capacity)
{
    return new (std::nothrow) map_type(capacity);
}

void cuckoo_destroy(void *h)
{
    delete static_cast<map_type *>(h);
}

int cuckoo_get(void *h, uint64_t key, uint64_t *val)
{
    return static_cast<map_type *>(h)->find(key, *val) ? 1 : 0;
}

void cuckoo_put(void *h, uint64_t key, uint64_t val)
{
    static_cast<map_type *>(h)->insert_or_assign(key, val);
}

} // namespace

extern "C" int peer_cuckoo(struct bench_peer *p)
{
    *p = bench_peer{};
    p->name = "cuckoo";
    p->what = "libcuckoo cuckoohash_map, unbounded (concurrent-map ceiling)";
    p->caps = PEER_GET | PEER_PUT;
    p->create = cuckoo_create;
    p->destroy = cuckoo_destroy;
    p->get = cuckoo_get;
    p->put = cuckoo_put;
    return 0;
}
