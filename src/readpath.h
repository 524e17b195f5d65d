/*
 * readpath: the get and pin skeletons that both policies share.
 *
 * A read is: find this thread's record (registering it on first use), hash
 * the key, enter the epoch read section, let the policy look the key up and
 * record the use, then copy the value out and leave (get), or leave the
 * section open for the caller (pin; pc_unpin closes it). Only the lookup
 * differs between CLOCK and exact LRU, so each policy passes its own as a
 * constant function pointer; these helpers are always inlined, so the
 * policy's lookup is inlined too and sharing the skeleton costs the read path
 * no call.
 *
 * Concurrency: see epoch.h (read sections) and each policy's lookup; a
 * pinned entry stays allocated because its reader never left the section.
 */
#ifndef PC_READPATH_H
#define PC_READPATH_H

#include "epoch.h"
#include "hash.h"

typedef struct pc_kv *readpath_lookup_fn(pc_cache *c, struct pc_thread *t,
                                         uint64_t h, const void *key,
                                         size_t klen);

static inline __attribute__((always_inline)) pc_status
readpath_get(pc_cache *c, struct pc_domain *dom,
             const struct pc_hash_seed *seed, readpath_lookup_fn *lookup,
             const void *key, size_t klen, void *buf, size_t bufcap,
             size_t *vlen)
{
    struct pc_thread *t = domain_thread(dom);
    struct pc_kv *kv;
    pc_status st;
    uint64_t h;

    if (__builtin_expect(t == NULL, 0))
        return PC_ENOMEM;
    h = pc_hash_key(seed, key, klen);
    read_enter(t);
    kv = lookup(c, t, h, key, klen);
    st = kv != NULL ? kv_copy_out(kv, buf, bufcap, vlen) : PC_NOTFOUND;
    read_leave(t);
    return st;
}

static inline __attribute__((always_inline)) pc_status
readpath_pin(pc_cache *c, struct pc_domain *dom,
             const struct pc_hash_seed *seed, readpath_lookup_fn *lookup,
             const void *key, size_t klen, pc_pin *pin)
{
    struct pc_thread *t = domain_thread(dom);
    struct pc_kv *kv;
    uint64_t h;

    if (t == NULL)
        return PC_ENOMEM;
    h = pc_hash_key(seed, key, klen);
    read_enter(t);
    kv = lookup(c, t, h, key, klen);
    if (kv == NULL) {
        read_leave(t);
        return PC_NOTFOUND;
    }
    pin->value = kv_value(kv);
    pin->len = kv->vlen;
    pin->internal_[0] = t; /* the read section stays open until pc_unpin */
    pin->internal_[1] = c;
    return PC_OK;
}

#endif
