/*
 * entry: the immutable key/value record every policy publishes.
 *
 * Layout (16-byte header, then, if the entry can expire, its expiry time
 * as 8 bytes, then the key bytes, then the value bytes):
 *
 *   vlen   u32  value length              } written once before publication,
 *   klen   u16  key length (<= PC_KEY_MAX)} read by any reader afterwards
 *   ref    u8   the policy's use mark (CLOCK's reference bit): set by
 *               readers with a plain relaxed byte store, and only when it
 *               changes; cleared by the writer
 *   flags  u8   PC__KV_EXPIRES: an expiry time follows the header
 *               (immutable); PC__KV_REMOVED: the writer unlinked the entry
 *               (lru.c; written with release, read with acquire). Every
 *               access is atomic (plain moves on x86-64).
 *   w           writer-only, never read by readers, so these may share
 *               space: while the entry is published, the low half of its
 *               key's hash (index.h finds its home chunk from it, so a
 *               removal or a table growth never rehashes a key) and the
 *               policy's position for it (a CLOCK ring slot); once it has
 *               been unlinked, the link of the retire list (retire.h).
 *
 * An entry is published (made reachable through the index) only after every
 * byte of it is written, by the index's release store of the pointer; a
 * reader loads that pointer with acquire. After that nothing but `ref`
 * changes until it is retired; an update publishes a new entry. So a reader
 * that reached an entry inside an epoch section can copy its value without
 * any further synchronisation and never sees a torn value.
 */
#ifndef PC_ENTRY_H
#define PC_ENTRY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "purecache.h"
#include "util.h"

struct pc__kv {
    uint32_t vlen;
    uint16_t klen;
    uint8_t ref;
    uint8_t flags;
    union {
        struct {
            uint32_t hash; /* low half of the key's hash (index.h) */
            uint32_t slot; /* the policy's position for the entry */
        } live;
        struct pc__kv *retire_next;
    } w;
    unsigned char data[]; /* [expiry u64], key bytes, value bytes */
};

#define PC__KV_EXPIRES 0x01u
#define PC__KV_REMOVED 0x02u

static inline unsigned int pc__kv_flags(const struct pc__kv *kv)
{
    return __atomic_load_n(&kv->flags, __ATOMIC_RELAXED);
}

_Static_assert(sizeof(struct pc__kv) == 16, "entry header is 16 bytes");
_Static_assert(PC_KEY_MAX <= UINT16_MAX, "klen is 16 bits");

static inline size_t pc__kv_extra(unsigned int flags)
{
    return (flags & PC__KV_EXPIRES) ? sizeof(uint64_t) : 0;
}

static inline const unsigned char *pc__kv_key(const struct pc__kv *kv)
{
    return kv->data + pc__kv_extra(pc__kv_flags(kv));
}

static inline const unsigned char *pc__kv_value(const struct pc__kv *kv)
{
    return pc__kv_key(kv) + kv->klen;
}

/* The expiry time (ms, the cache's clock) of an entry with PC__KV_EXPIRES. */
static inline uint64_t pc__kv_expires(const struct pc__kv *kv)
{
    uint64_t t;

    memcpy(&t, kv->data, sizeof t);
    return t;
}

/* Bytes of the allocation holding an entry of this key and value, with an
 * expiry time or not. */
static inline size_t pc__kv_size(size_t klen, size_t vlen, bool expires)
{
    return sizeof(struct pc__kv) + (expires ? sizeof(uint64_t) : 0) + klen +
           vlen;
}

static inline size_t pc__kv_alloc_size(const struct pc__kv *kv)
{
    return pc__kv_size(kv->klen, kv->vlen, pc__kv_flags(kv) & PC__KV_EXPIRES);
}

/* Fill an already-allocated entry (header at kv); expires 0: it never
 * expires. */
static inline void pc__kv_fill(struct pc__kv *kv, const void *key, size_t klen,
                               const void *val, size_t vlen, uint64_t expires)
{
    unsigned char *p = kv->data;

    kv->vlen = (uint32_t)vlen;
    kv->klen = (uint16_t)klen;
    kv->ref = 0;
    kv->flags = expires != 0 ? PC__KV_EXPIRES : 0;
    kv->w.retire_next = NULL;
    if (expires != 0) {
        memcpy(p, &expires, sizeof expires);
        p += sizeof expires;
    }
    if (klen == 8 && vlen == 8) { /* the common case, without memcpy calls */
        memcpy(p, key, 8);
        memcpy(p + 8, val, 8);
        return;
    }
    if (klen)
        memcpy(p, key, klen);
    if (vlen)
        memcpy(p + klen, val, vlen);
}

/* Whether the entry is expired at `now` (visible strictly before its
 * expiry time). */
static inline bool pc__kv_expired(const struct pc__kv *kv, uint64_t now)
{
    return (pc__kv_flags(kv) & PC__KV_EXPIRES) && now >= pc__kv_expires(kv);
}

/* A use: raise the use mark, saturating at max (CLOCK's reference bit: 1;
 * the frequency policy's counter: 3). Only when it changes, so a hot entry
 * costs one shared-line write per pass of the policy, not one per read; a
 * plain relaxed store, not a read-modify-write (a lost increment between
 * two racing readers only makes the count approximate). */
static inline void pc__kv_touch(struct pc__kv *kv, uint8_t max)
{
    uint8_t f = __atomic_load_n(&kv->ref, __ATOMIC_RELAXED);

    if (f < max)
        __atomic_store_n(&kv->ref, (uint8_t)(f + 1), __ATOMIC_RELAXED);
}

#endif
