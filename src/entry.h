/*
 * entry: the immutable key/value record every policy publishes.
 *
 * Layout (16-byte header, then the key bytes, then the value bytes):
 *
 *   vlen   u32  value length              } written once before publication,
 *   klen   u16  key length (<= PC_KEY_MAX)} read by any reader afterwards
 *   ref    u8   the policy's use mark (CLOCK's reference bit): set by
 *               readers with a plain relaxed byte store, and only when it
 *               changes; cleared by the writer
 *   flags  u8   reserved, 0
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
    unsigned char data[]; /* key bytes, then value bytes */
};

_Static_assert(sizeof(struct pc__kv) == 16, "entry header is 16 bytes");
_Static_assert(PC_KEY_MAX <= UINT16_MAX, "klen is 16 bits");

static inline const unsigned char *pc__kv_value(const struct pc__kv *kv)
{
    return kv->data + kv->klen;
}

/* Bytes of the allocation holding an entry of this key and value. */
static inline size_t pc__kv_size(size_t klen, size_t vlen)
{
    return sizeof(struct pc__kv) + klen + vlen;
}

/* Fill an already-allocated entry (header at kv). */
static inline void pc__kv_fill(struct pc__kv *kv, const void *key, size_t klen,
                               const void *val, size_t vlen)
{
    kv->vlen = (uint32_t)vlen;
    kv->klen = (uint16_t)klen;
    kv->ref = 0;
    kv->flags = 0;
    kv->w.retire_next = NULL;
    if (klen == 8 && vlen == 8) { /* the common case, without memcpy calls */
        memcpy(kv->data, key, 8);
        memcpy(kv->data + 8, val, 8);
        return;
    }
    if (klen)
        memcpy(kv->data, key, klen);
    if (vlen)
        memcpy(kv->data + klen, val, vlen);
}

/* CLOCK reference bit: readers set it only when it is clear, so a hot entry
 * costs one shared-line write per pass of the hand, not one per read. */
static inline void pc__kv_touch(struct pc__kv *kv)
{
    if (!__atomic_load_n(&kv->ref, __ATOMIC_RELAXED))
        __atomic_store_n(&kv->ref, 1, __ATOMIC_RELAXED);
}

#endif
