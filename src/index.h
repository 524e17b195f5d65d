/*
 * index: a ck_hs hash set in SPMC mode holding struct pc_kv pointers.
 *
 * One writer at a time (the caller holds the owning writer lock around every
 * mutating call), any number of concurrent readers (index_get inside an epoch
 * section). ck_hs never frees a table a reader might be probing: when it
 * grows or rebuilds, it hands the old table to the allocator's free with
 * `defer` set, and index.c routes that free through ck_epoch_call on the
 * writer's reclaimer (see index_writer_begin), so the table outlives every
 * reader that could still be in it.
 *
 * Tombstones. Removing a key leaves a tombstone in its slot; inserts reuse
 * them, but lookups of absent keys probe past them. After removals the writer
 * calls index_maintain, which rebuilds the table in place (same size, no
 * tombstones; old table deferred as above) once live entries and tombstones
 * together fill three quarters of the slots. Rebuilding allocates; if that
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

struct pc_reclaimer;

struct pc_index {
    ck_hs_t hs;
    unsigned long slots; /* table size, mirrored from ck_hs's growth rule */
};

/* Set up an empty index sized for `expected` entries without growth
 * (`expected` may be 0: grow on demand). false on allocation failure. */
bool index_init(struct pc_index *ix, const struct pc_hash_seed *seed,
                unsigned long expected);
/* Free the table (not the entries). No reader may be inside. */
void index_destroy(struct pc_index *ix);

/* Route ck_hs's deferred frees made by this thread to r until
 * index_writer_end. Call with the writer lock held. */
void index_writer_begin(struct pc_reclaimer *r);
void index_writer_end(void);

/* Reader or writer: the entry whose key equals the probe's, or NULL. */
static inline struct pc_kv *index_get(struct pc_index *ix, uint64_t h,
                                      const struct pc_probe *probe)
{
    struct pc_kv *kv = ck_hs_get(&ix->hs, (unsigned long)h, probe);

    /* TSan: ck_hs_get's load of the published pointer is in uninstrumented
     * libck; pairs with the release in index_upsert (tsan.h, case 1). */
    if (kv != NULL)
        PC_TSAN_ACQUIRE(kv);
    return kv;
}

/* Writer: publish kv, replacing the entry with the same key if there is one
 * (returned in *prev, else NULL). One probe. Returns false, index unchanged,
 * if the table had to grow and could not (only possible when inserting). */
static inline bool index_upsert(struct pc_index *ix, uint64_t h,
                                struct pc_kv *kv, struct pc_kv **prev)
{
    void *old = NULL;

    /* ck_hs_set publishes with a plain pointer store and no fence of its
     * own: order the entry's bytes before it (a compiler barrier on TSO
     * targets such as x86-64, a real store fence elsewhere). */
    ck_pr_fence_store();
    /* TSan: ck_hs_set's pointer store is in uninstrumented libck; every
     * byte of kv was written before it (tsan.h, case 1). */
    PC_TSAN_RELEASE(kv);
    if (!ck_hs_set(&ix->hs, (unsigned long)h, kv, &old))
        return false;
    *prev = old;
    if (old == NULL && 2 * ck_hs_count(&ix->hs) > ix->slots)
        ix->slots *= 2; /* ck_hs_set grew the table (ck_hs's 50% rule) */
    return true;
}

/* Writer: unlink the entry matching key_or_kv; returns it or NULL. */
static inline struct pc_kv *index_remove(struct pc_index *ix, uint64_t h,
                                         const struct pc_kv *key_or_kv)
{
    return ck_hs_remove(&ix->hs, (unsigned long)h, key_or_kv);
}

/* Writer: hash of a stored entry (for removal by eviction). */
static inline uint64_t index_hash_of(const struct pc_index *ix,
                                     const struct pc_kv *kv)
{
    return pc_hash((const struct pc_hash_seed *)ix->hs.seed, kv->data,
                   kv->klen);
}

/* Writer: rebuild the table if tombstones have piled up. */
void index_maintain(struct pc_index *ix);

/* Writer: swap in an empty table of the same size (the old one is freed
 * after a grace period). false on allocation failure, index unchanged: the
 * caller then removes its entries one by one instead. */
bool index_reset(struct pc_index *ix);

#endif
