/*
 * entry: the immutable key/value record both policies publish.
 *
 * Layout (16-byte header, then the key bytes, then the value bytes):
 *
 *   vlen   u32  value length              } written once before publication,
 *   klen   u16  key length (<= PC_KEY_MAX)} read by any reader afterwards
 *   ref    u8   CLOCK reference bit: set by readers (only when clear), cleared
 *               by the clock hand; relaxed atomic byte accesses
 *   flags  u8   PC__KV_PROBE marks a lookup probe (see below), never an entry
 *   slot / retire_next
 *               writer-only: the CLOCK ring slot while the entry is
 *               published, then the link of the retire list once it has been
 *               unlinked. Readers never read it, so the two may share space.
 *
 * An entry is published (made reachable through the index) only after every
 * byte of it is written, by ck_hs's store of the pointer (a release on the
 * writer side, ck_hs_get's dependent load on the reader side). After that
 * nothing but `ref` changes until it is retired; an update publishes a new
 * entry. So a reader that reached an entry inside an epoch section can copy
 * its value without any further synchronisation and never sees a torn value.
 *
 * A probe is a header with PC__KV_PROBE set followed by a pointer to the
 * caller's key (and the key's hash tag, see index.h): ck_hs compares a stored
 * entry with either a probe (lookups) or another entry (ck_hs_set), and
 * kv_compare tells them apart by the flag.
 */
#ifndef PC_ENTRY_H
#define PC_ENTRY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "purecache.h"
#include "util.h"

#define PC__KV_PROBE 1u

struct pc__kv {
    uint32_t vlen;
    uint16_t klen;
    uint8_t ref;
    uint8_t flags;
    union {
        uint32_t slot;
        struct pc__kv *retire_next;
    } w;
    unsigned char data[]; /* key bytes, then value bytes */
};

_Static_assert(sizeof(struct pc__kv) == 16, "entry header is 16 bytes");
_Static_assert(PC_KEY_MAX <= UINT16_MAX, "klen is 16 bits");

struct pc__probe {
    struct pc__kv hdr;
    const void *key;
    uintptr_t tag; /* hash tag of the key, set by index.h (see there) */
};

static inline void pc__probe_init(struct pc__probe *p, const void *key,
                                  size_t klen)
{
    p->hdr.klen = (uint16_t)klen;
    p->hdr.flags = PC__KV_PROBE;
    p->key = key;
}

static inline const void *pc__kv_key(const struct pc__kv *kv)
{
    if (kv->flags & PC__KV_PROBE)
        return ((const struct pc__probe *)kv)->key;
    return kv->data;
}

static inline const unsigned char *pc__kv_value(const struct pc__kv *kv)
{
    return kv->data + kv->klen;
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
