/*
 * index: a ck_hs hash set in SPMC mode holding struct pc__kv pointers.
 *
 * One writer at a time (the caller holds the owning writer lock around every
 * mutating call), any number of concurrent readers (pc__index_get inside an
 * epoch section). ck_hs never frees a table a reader might be probing: when it
 * grows or rebuilds, it hands the old table to the allocator's free with
 * `defer` set, and index.c routes that free through pc__reclaimer_defer on the
 * writer's reclaimer (see pc__index_writer_begin), so the table outlives every
 * reader that could still be in it.
 *
 * Hash tags. Debian's libck is built with pointer packing disabled, so
 * ck_hs calls the compare callback for every occupied slot on a probe
 * sequence, and comparing means dereferencing the stored entry: a cache
 * miss per slot, most of them for entries that do not match. So this module
 * packs 15 bits of the key's hash (bits 32..46, which neither the slot
 * index nor, within a shard, the shard choice determines) plus a marker bit
 * into the unused top 16 bits of every pointer it hands ck_hs (x86-64 and
 * AArch64 user addresses fit in 48 bits), and the compare callback rejects
 * a slot whose tag differs from the key's without touching the entry: only
 * 1 in 32768 non-matching entries is still dereferenced. ck_hs treats the
 * stored words as opaque (it only compares them with NULL, its tombstone
 * ~0, which no tagged user pointer can equal, and with the key word), and
 * every pointer ck_hs returns is unpacked here before anyone sees it.
 * Unpacking is an AND, which keeps the address dependency readers rely on.
 * Elsewhere tags are 0 and every compare dereferences, as before.
 *
 * Probe bounds. The table is created in CK_HS_MODE_DELETE, which keeps a
 * one-byte probe bound per slot: a lookup of an absent key stops after the
 * longest insert that started at its slot, instead of after the longest
 * insert anywhere in the table (which, with the steady stream of evictions
 * a full cache makes, grows long between rebuilds). The bytes cost nothing
 * in practice: a table is a power of two of pointers plus a header, which
 * the allocator already rounds up to a size class with room for them.
 *
 * Tombstones. Removing a key leaves a tombstone in its slot; inserts reuse
 * them, but lookups of absent keys probe past them. After removals the writer
 * calls pc__index_maintain, which rebuilds the table in place (same size, no
 * tombstones; old table deferred as above) once live entries and tombstones
 * together reach seven eighths of the slots (see index.c for why that
 * count is an over-estimate, and why 7/8). Rebuilding allocates; if that
 * fails the table simply keeps its tombstones (lookups stay correct, only
 * slower).
 */
#ifndef PC_INDEX_H
#define PC_INDEX_H

#include <ck_hs.h>
#include <stdbool.h>

#include "entry.h"
#include "hash.h"
#include "tsan.h"

struct pc__reclaimer;

struct pc__index {
    ck_hs_t hs;
    unsigned long slots; /* table size, mirrored from ck_hs's growth rule */
};

/* Set up an empty index sized for `expected` entries without growth
 * (`expected` may be 0: grow on demand). false on allocation failure. */
bool pc__index_init(struct pc__index *ix, const struct pc__hash_seed *seed,
                    unsigned long expected);
/* Free the table (not the entries). No reader may be inside. */
void pc__index_destroy(struct pc__index *ix);

/* Route ck_hs's deferred frees made by this thread to r until
 * pc__index_writer_end. Call with the writer lock held. */
void pc__index_writer_begin(struct pc__reclaimer *r);
void pc__index_writer_end(void);

#if (defined(__x86_64__) || defined(__aarch64__)) && UINTPTR_MAX == UINT64_MAX
#define PC__INDEX_ADDR_MASK (((uintptr_t)1 << 48) - 1)
/* Marker bit 63 (so a tag is never 0) and hash bits 32..46. */
static inline uintptr_t pc__index_tag(uint64_t h)
{
    return (uintptr_t)((((h >> 32) & 0x7fff) | 0x8000) << 48);
}
#else
#define PC__INDEX_ADDR_MASK (~(uintptr_t)0)
static inline uintptr_t pc__index_tag(uint64_t h)
{
    (void)h;
    return 0;
}
#endif

/* The word ck_hs stores for kv (hash h), and back. */
static inline void *pc__index_pack(const struct pc__kv *kv, uint64_t h)
{
    return (void *)((uintptr_t)kv | pc__index_tag(h));
}

static inline struct pc__kv *pc__index_unpack(const void *word)
{
    return (struct pc__kv *)((uintptr_t)word & PC__INDEX_ADDR_MASK);
}

/* Reader or writer: the entry whose key equals the probe's, or NULL. */
static inline struct pc__kv *pc__index_get(struct pc__index *ix, uint64_t h,
                                           struct pc__probe *probe)
{
    struct pc__kv *kv;

    probe->tag = pc__index_tag(h);
    kv = pc__index_unpack(ck_hs_get(&ix->hs, (unsigned long)h, probe));
    /* TSan: ck_hs_get's load of the published pointer is in uninstrumented
     * libck; pairs with the release in pc__index_upsert (tsan.h, case 1). */
    if (kv != NULL)
        PC_TSAN_ACQUIRE(kv);
    return kv;
}

/* Writer: publish kv, replacing the entry with the same key if there is one
 * (returned in *prev, else NULL). One probe. Returns false, index unchanged,
 * if the table had to grow and could not (only possible when inserting). */
static inline bool pc__index_upsert(struct pc__index *ix, uint64_t h,
                                    struct pc__kv *kv, struct pc__kv **prev)
{
    void *old = NULL;

    /* ck_hs_set publishes with a plain pointer store and no fence of its
     * own: order the entry's bytes before it (a compiler barrier on TSO
     * targets such as x86-64, a real store fence elsewhere). */
    ck_pr_fence_store();
    /* TSan: ck_hs_set's pointer store is in uninstrumented libck; every
     * byte of kv was written before it (tsan.h, case 1). */
    PC_TSAN_RELEASE(kv);
    if (!ck_hs_set(&ix->hs, (unsigned long)h, pc__index_pack(kv, h), &old))
        return false;
    *prev = pc__index_unpack(old);
    if (old == NULL && 2 * ck_hs_count(&ix->hs) > ix->slots)
        ix->slots *= 2; /* ck_hs_set grew the table (ck_hs's 50% rule) */
    return true;
}

/* Writer: unlink the entry matching key_or_kv (a probe's header, or a
 * stored entry); returns it or NULL. */
static inline struct pc__kv *pc__index_remove(struct pc__index *ix, uint64_t h,
                                              struct pc__kv *key_or_kv)
{
    const void *key;

    if (key_or_kv->flags & PC__KV_PROBE) {
        ((struct pc__probe *)key_or_kv)->tag = pc__index_tag(h);
        key = key_or_kv;
    } else {
        key = pc__index_pack(key_or_kv, h);
    }
    return pc__index_unpack(ck_hs_remove(&ix->hs, (unsigned long)h, key));
}

/* Writer: hash of a stored entry (for removal by eviction). */
static inline uint64_t pc__index_hash_of(const struct pc__index *ix,
                                         const struct pc__kv *kv)
{
    return pc__hash((const struct pc__hash_seed *)ix->hs.seed, kv->data,
                    kv->klen);
}

/* Writer: rebuild the table if tombstones have piled up. */
void pc__index_maintain(struct pc__index *ix);

/* Writer: swap in an empty table of the same size (the old one is freed
 * after a grace period). false on allocation failure, index unchanged: the
 * caller then removes its entries one by one instead. */
bool pc__index_reset(struct pc__index *ix);

#endif
