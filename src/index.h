/*
 * index: the hash table every policy finds its entries in. One writer at a
 * time (the caller holds the owning writer lock around every mutating
 * call), any number of concurrent readers (pc__index_get inside an epoch
 * section), and reads that are wait-free: they never retry and never wait.
 *
 * Layout. n 64-byte chunks, n prime (or 1): as many as the allocation's
 * size class holds (pc__index_chunks), so a table costs what it is sized
 * for, at any size, where a power of two of chunks cost up to twice what
 * it needed, plus a quarter for the header that pushed it into the next
 * size class. A chunk holds seven entry pointers and one control word:
 * seven one-byte tags (0 = empty slot) and an eighth byte, the chunk's
 * overflow count. A key's hash h picks its home chunk (the low half of h
 * scaled to n: a multiply and a shift), its probe stride (bits 0..7
 * plus one, reduced below n; any stride visits every chunk of a prime n)
 * and its tag (bits 32..39, which neither the home chunk nor, within a
 * shard, the shard choice determines; 0 is remapped to 1). A key lives in the
 * first chunk of its probe sequence (home, home + stride, ...) that had a free
 * slot when it was inserted; every chunk it had to pass counts it in its
 * overflow count. This is the chunked, tag-filtered open addressing of
 * Swiss tables and folly's F14, with F14's overflow counts in place of
 * tombstones.
 *
 * Lookup (pc__index_get). Load the chunk's control word, compare all seven
 * tags at once (SSE2, or SWAR on one 64-bit word), and compare the key only
 * where the tag matches (a false match costs one entry dereference, 1 in 255
 * per occupied slot). A key that is not in the chunk can only be further on if
 * the chunk's overflow count is non-zero; otherwise the lookup ends. At the
 * load the table keeps (at most 4 of 7 slots per chunk on average) a
 * lookup, hit or miss, reads 1.1 to 1.3 chunks on average, even after
 * long churn: about one cache line of index per get, plus the entry.
 *
 * Removal. An entry is removed where it is: its tag byte is cleared, its
 * pointer nulled, and the overflow counts of the chunks between its home
 * and its chunk are decremented (a count saturates at 255 and then stays,
 * conservatively, until the table is rebuilt). Nothing ever moves inside a
 * table, so no tombstones accumulate, no rebuild is ever needed to clean
 * up, and a reader can never miss an entry because a writer moved it: the
 * reason ck_hs-style readers must retry on a generation counter. Removing
 * a victim needs no key comparison: the writer finds it by pointer, from
 * the home chunk given by the low half of its hash, which the entry keeps
 * (entry.h) so that nothing is rehashed (but an entry whose header holds
 * a near expiry time instead: pc__kv_hash hashes its key again, once per
 * eviction with the `hint` below).
 *
 * Growth. When an insert would pass the load limit the writer builds a
 * table a quarter larger or more, filled to the end of its size class (a
 * quarter larger than its usable size after a trim short of memory,
 * pc__index_trim: possibly smaller) from the old one (home chunks from
 * the entries' hashes, pc__kv_hash; tags copied), publishes it with one release
 * store, and retires the old table to its reclaimer (retire.h): readers still
 * probing the old one finish there safely. Growing allocates; if that fails the
 * insert fails with nothing changed. A trim, after a limit was lowered,
 * builds a smaller table the same way (pc__index_trim).
 *
 * Concurrency argument. Every word a reader loads is accessed atomically.
 * A writer publishes an entry by storing its pointer (release), then the
 * control word carrying its tag (release); a reader loads the control word
 * (acquire), then the pointer (acquire), then the entry, so a tag it sees
 * always comes with a pointer to a fully written entry (or, if the slot was
 * emptied or reused meanwhile, NULL or another entry, which the key
 * comparison rejects). An insert that passes full chunks raises their
 * overflow counts before it publishes the entry, so a reader that can see
 * the entry also sees the counts that lead to it. Replacing a key's entry
 * is one pointer store in its slot. Removal clears the tag before the
 * pointer. The table pointer is loaded with acquire; old tables are freed
 * only after a grace period. Entries removed from the index are retired by
 * the caller, likewise.
 *
 * Cost per table: 64 bytes per 7 slots, at between 2.5/7 (just grown) and
 * 4/7 load: 16 to 26 bytes per entry (16 to 20 in a table sized for its
 * share at creation: the share plus the spread's margin, pc__index_room,
 * in the size class that holds it), plus a 64-byte header.
 */
#ifndef PC_INDEX_H
#define PC_INDEX_H

#include <ck_epoch.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#if defined(__SSE2__) && defined(__x86_64__)
#include <emmintrin.h>
#endif

#include "entry.h"

#define PC__CHUNK_SLOTS 7

struct pc__chunk {
    /* Bytes 0..6: the slots' tags (0: empty); byte 7: overflow count.
     * Written only by the writer, as a whole word. */
    uint64_t ctrl;
    struct pc__kv *slot[PC__CHUNK_SLOTS];
};
_Static_assert(sizeof(struct pc__chunk) == 64, "a chunk is one cache line");

struct pc__table {
    ck_epoch_entry_t ee; /* for the deferred free of a replaced table */
    size_t n;            /* chunks: prime, or 1 */
    size_t max_load;     /* entries allowed before the table grows */
    struct pc__chunk chunks[] __attribute__((aligned(64)));
};

struct pc__index {
    struct pc__table *table; /* replaced by growth; readers load it */
    /* The table's chunk count, beside the pointer (stored after it at
     * growth): pc__index_prefetch_home computes a chunk's address from the
     * two without dereferencing a table that may be freed meanwhile. */
    size_t n;
    /* Writer-only, changed by every insert and erase: on a line of its
     * own, so that writes do not take the table pointer's line away from
     * readers on other cores (every lookup loads it). */
    size_t count __attribute__((aligned(64)));
    /* Immutable: the most chunks a table may have (pc__index_init). */
    size_t max_chunks;
    /* Writer-only: tables this index has had (growth adds one), so that a
     * position (pc__index_pos) recorded under one table is known not to
     * hold under another, even one at the same address. */
    uint64_t gen;
    /* The cache's hash seed: a growth or an erase recomputes the hash of
     * an entry whose header holds a near expiry time (entry.h). */
    const struct pc__hash_seed *seed;
    /* Writer-only: one such entry and its hash, computed for
     * pc__index_prefetch_entry (a policy's next victim), so that erasing
     * it does not hash its key a second time. Every removal from the
     * index (erase, remove, a replacement) forgets it if it names the
     * entry removed, so it never outlives the entry (whose memory may
     * later hold another). NULL: none. */
    const struct pc__kv *hint;
    uint32_t hint_hash;
};

/* Where an entry sits in the current table: chunk and slot. Nothing moves
 * within a table, and a replacement (pc__index_replace_at, or
 * pc__index_put of a present key) takes its predecessor's slot, so a
 * position stays the key's for as long as the key is present and the
 * table is not replaced (pc__index_gen unchanged). */
struct pc__index_pos {
    uint32_t chunk;
    uint8_t slot;
};

struct pc__reclaimer;

/* Chunks of a table sized for `entries` without growth: prime (or 1), and
 * as many as the allocation's size class holds. */
size_t pc__index_chunks(size_t entries);

/* Entries to size a table for whose share of a cache's keys is `share`
 * of the keys spread by hash over `parts` tables (shards): the share, plus
 * four standard deviations of the spread (about the share's square root)
 * if parts > 1, so that a full cache's tables seldom outgrow their first
 * size (a growth moves every entry). */
size_t pc__index_room(size_t share, size_t parts);

/* Set up an empty index sized for `expected` entries without growth, for
 * keys hashed with seed (which must outlive it), whose tables never have
 * more than max_chunks chunks (a caller that packs positions in fewer bits
 * than pc__index_pos; growth past it fails). false on allocation
 * failure. */
bool pc__index_init(struct pc__index *ix, size_t expected, size_t max_chunks,
                    const struct pc__hash_seed *seed);
/* Free the table (not the entries). No reader may be inside. */
void pc__index_destroy(struct pc__index *ix);

/* The home chunk of a hash's low half (pc__kv_hash) among n: its high
 * bits scaled to n (Lemire's multiply-shift, no division). */
static inline size_t pc__index_home(uint32_t hash, size_t n)
{
    return (size_t)(((uint64_t)hash * n) >> 32);
}

/* The probe stride, from the hash's low byte (which the home, from the
 * high bits, does not depend on below 2^24 chunks): 1..256, reduced below
 * n in a table of fewer chunks; n is prime, so every chunk is visited.
 * Strides that differ from key to key, among keys of one home and of
 * neighbouring homes, avoid the clustering of linear probing. (A table of
 * one chunk has no second: 0.) */
static inline size_t pc__index_step(uint32_t hash, size_t n)
{
    size_t s = (size_t)(hash & 0xffu) + 1;

    if (__builtin_expect(s >= n, 0))
        s = n > 1 ? 1 + (s - 1) % (n - 1) : 0;
    return s;
}

/* The chunk after i on a probe of stride step (< n). */
static inline size_t pc__index_next(size_t i, size_t step, size_t n)
{
    i += step;
    return i >= n ? i - n : i;
}

static inline uint8_t pc__index_tag(uint64_t h)
{
    uint8_t t = (uint8_t)(h >> 32);

    return t != 0 ? t : 1;
}

/* The slots of ctrl whose tag byte equals tag: bit j for slot j (bits 0..6;
 * the overflow byte is never matched). On x86-64 (SSE2) one byte compare and a
 * byte mask; else exact zero-byte detection on one word (no false
 * positives across bytes), each byte's top bit gathered to bit j by a
 * multiply (the bits never collide, so no carries). */
static inline uint32_t pc__index_match(uint64_t ctrl, uint8_t tag)
{
    const uint64_t ones = 0x0101010101010101ull;
#if defined(__SSE2__) && defined(__x86_64__)
    __m128i eq = _mm_cmpeq_epi8(_mm_cvtsi64_si128((long long)ctrl),
                                _mm_cvtsi64_si128((long long)(ones * tag)));

    return (uint32_t)_mm_movemask_epi8(eq) & 0x7fu;
#else
    const uint64_t highs = ones << 7;
    uint64_t x = ctrl ^ (ones * tag);
    uint64_t z = ~(((x & ~highs) + ~highs) | x | ~highs) & (highs >> 8);

    return (uint32_t)(((z >> 7) * 0x0102040810204080ull) >> 56);
#endif
}

static inline bool pc__kv_key_equals(const struct pc__kv *kv, const void *key,
                                     size_t klen)
{
    if (kv->klen != klen)
        return false;
    if (klen == 8) {
        uint64_t a, b;

        memcpy(&a, pc__kv_key(kv), 8);
        memcpy(&b, key, 8);
        return a == b;
    }
    /* An empty key may be passed as NULL: memcmp must not see it. */
    return klen == 0 || memcmp(pc__kv_key(kv), key, klen) == 0;
}

/* The entry of chunk c (whose control word is ctrl) whose key equals key,
 * and in *slot the slot holding it; NULL if none. */
static inline __attribute__((always_inline)) struct pc__kv *
pc__index_scan(struct pc__chunk *c, uint64_t ctrl, uint8_t tag, const void *key,
               size_t klen, struct pc__kv ***slot)
{
    for (uint32_t m = pc__index_match(ctrl, tag); m != 0; m &= m - 1) {
        struct pc__kv **at = &c->slot[__builtin_ctz(m)];
        struct pc__kv *kv = __atomic_load_n(at, __ATOMIC_ACQUIRE);

        if (kv != NULL && pc__kv_key_equals(kv, key, klen)) {
            *slot = at;
            return kv;
        }
    }
    return NULL;
}

/* The lookup: the entry whose key equals key and the slot holding it, or
 * NULL (and *slot NULL). The entry is the one loaded from the slot and
 * compared: a reader must not load the slot again. The home chunk first,
 * on its own: the stride is needed only when it overflowed. */
static inline struct pc__kv *pc__index_lookup(const struct pc__index *ix,
                                              uint64_t h, const void *key,
                                              size_t klen,
                                              struct pc__kv ***slot)
{
    struct pc__table *t = __atomic_load_n(&ix->table, __ATOMIC_ACQUIRE);
    uint8_t tag = pc__index_tag(h);
    size_t n = t->n, i = pc__index_home((uint32_t)h, n), step;
    struct pc__chunk *c = &t->chunks[i];
    uint64_t ctrl = __atomic_load_n(&c->ctrl, __ATOMIC_ACQUIRE);
    struct pc__kv *kv = pc__index_scan(c, ctrl, tag, key, klen, slot);

    if (kv != NULL)
        return kv;
    if (__builtin_expect((ctrl >> 56) != 0, 0)) {
        step = pc__index_step((uint32_t)h, n);
        for (size_t k = 1; k < n; k++) {
            i = pc__index_next(i, step, n);
            c = &t->chunks[i];
            ctrl = __atomic_load_n(&c->ctrl, __ATOMIC_ACQUIRE);
            kv = pc__index_scan(c, ctrl, tag, key, klen, slot);
            if (kv != NULL)
                return kv;
            if ((ctrl >> 56) == 0)
                break;
        }
    }
    *slot = NULL;
    return NULL;
}

/* Reader (inside an epoch section) or writer: the entry whose key equals
 * key, or NULL. Wait-free. */
static inline struct pc__kv *pc__index_get(const struct pc__index *ix,
                                           uint64_t h, const void *key,
                                           size_t klen)
{
    struct pc__kv **slot;

    return pc__index_lookup(ix, h, key, klen, &slot);
}

/* Writer: the entry whose key equals key, or NULL, and in *slot where the
 * index holds it, for pc__index_replace_at. */
static inline struct pc__kv *pc__index_find(struct pc__index *ix, uint64_t h,
                                            const void *key, size_t klen,
                                            struct pc__kv ***slot)
{
    return pc__index_lookup(ix, h, key, klen, slot);
}

/* Writer: publish kv (same key, its hash already recorded in it) in place
 * of the entry in `slot`, which pc__index_find returned, while that entry
 * is still there and the index has not grown since (nothing moves within
 * a table; growth replaces the table). One release store: a reader that
 * loads the slot finds the old entry or the new one, each complete. */
static inline void pc__index_replace_at(struct pc__index *ix,
                                        struct pc__kv **slot, struct pc__kv *kv)
{
    if (*slot == ix->hint)
        ix->hint = NULL;
    __atomic_store_n(slot, kv, __ATOMIC_RELEASE);
}

/*
 * Writer: publish kv under hash h, replacing the entry with the same key
 * if there is one (returned in *old, else NULL); kv already carries h as
 * its hash (pc__kv_hash: pc__core_entry_new keeps it). May grow the table,
 * retiring the old one to rc; returns false, index unchanged, if that
 * allocation failed (only when inserting).
 */
__attribute__((noinline)) bool pc__index_put(struct pc__index *ix, uint64_t h,
                                             struct pc__kv *kv,
                                             struct pc__kv **old,
                                             struct pc__reclaimer *rc);

/* Writer: publish kv under hash h (which kv carries, as for
 * pc__index_put), its key known to be absent, in a table with room
 * (pc__index_reserve); returns its position. */
struct pc__index_pos pc__index_insert(struct pc__index *ix, uint64_t h,
                                      struct pc__kv *kv);

/* pc__index_reserve's growth: the table grown (the old one retired to rc)
 * until it has room for n entries; false on ENOMEM, index unchanged. */
__attribute__((noinline, cold)) bool
pc__index_grow(struct pc__index *ix, size_t n, struct pc__reclaimer *rc);

/* Writer: make room for `n` entries in all, growing the table (the old one
 * retired to rc) if needed, so that the puts that follow do not grow it.
 * false on ENOMEM, index unchanged. Inline: every put of a new key asks,
 * and the table almost always has room already. */
static inline bool pc__index_reserve(struct pc__index *ix, size_t n,
                                     struct pc__reclaimer *rc)
{
    return n <= ix->table->max_load || pc__index_grow(ix, n, rc);
}

/* Writer: after a limit was lowered, rebuild the table smaller (the old one
 * retired to rc) if it is at least four times the size that `n` entries,
 * or those present if more, need (a margin: a cache that changes its limit
 * a little rebuilds nothing). true if it did: positions recorded under the
 * old table no longer hold (pc__index_gen counts it). false if there was
 * nothing to do or no memory for the smaller table: then the table stays
 * (nothing else changes),
 * positions and all, but takes the smaller table's load limit, so that
 * later growths and trims decide as they would have (a growth past that
 * limit builds the table the smaller one would have grown to; the next
 * trim with nothing else to do builds the smaller table itself). */
bool pc__index_trim(struct pc__index *ix, size_t n, struct pc__reclaimer *rc);

/* Writer: unlink kv, which must be in the index. Wait-free. */
void pc__index_erase(struct pc__index *ix, struct pc__kv *kv);
/* Writer: the position of kv, which must be in the index (found by
 * pointer, probing from the home chunk of its hash, pc__kv_hash). */
struct pc__index_pos pc__index_locate(const struct pc__index *ix,
                                      const struct pc__kv *kv);

/* Writer: where the current table holds the entry at pos, which must lie
 * in it (recorded while pc__index_gen had today's value): to prefetch its
 * chunk, or to load the entry (pc__index_at). */
static inline struct pc__kv *const *pc__index_slot(const struct pc__index *ix,
                                                   struct pc__index_pos pos)
{
    return &ix->table->chunks[pos.chunk].slot[pos.slot];
}

/* Writer: the entry at pos (NULL if the slot is empty), as above. */
static inline struct pc__kv *pc__index_at(const struct pc__index *ix,
                                          struct pc__index_pos pos)
{
    return *pc__index_slot(ix, pos);
}

/* Chunks in the current table (writer). */
static inline size_t pc__index_chunk_count(const struct pc__index *ix)
{
    return ix->table->n;
}

/* The current table's generation (writer). */
static inline uint64_t pc__index_gen(const struct pc__index *ix)
{
    return ix->gen;
}

/* Writer: call fn on every entry with its position, in table order (the
 * chunks sequentially, each entry dereferenced only by fn). */
void pc__index_each(const struct pc__index *ix,
                    void (*fn)(void *arg, struct pc__kv *kv,
                               struct pc__index_pos pos),
                    void *arg);

/* Writer: unlink and return the entry whose key equals key, or NULL. */
struct pc__kv *pc__index_remove(struct pc__index *ix, uint64_t h,
                                const void *key, size_t klen);

/* Writer: prefetch, for writing, the chunk where kv (in the index) most
 * likely sits, its home: ahead of its erase. If kv's header holds a near
 * expiry time, its key is hashed here (pc__index_hint, which returns the
 * hash), and the hash kept for the erase (`hint`). */
uint32_t pc__index_hint(struct pc__index *ix, const struct pc__kv *kv);
static inline void pc__index_prefetch_entry(struct pc__index *ix,
                                            const struct pc__kv *kv)
{
    const struct pc__table *t = ix->table;
    uint32_t hash = __builtin_expect(pc__kv_near(kv), 0)
                        ? pc__index_hint(ix, kv)
                        : kv->w.live.hx;

    __builtin_prefetch(&t->chunks[pc__index_home(hash, t->n)], 1);
}

/* Any thread, no lock needed, no epoch section: prefetch, for writing,
 * the home chunk of hash h, ahead of a writer's lookup (a put's, before
 * its lock). Loads the table pointer and the chunk count atomically but not
 * together: across a growth they may come from different tables, and the
 * address computed from them is then wrong, but a prefetch never faults
 * (so it is computed as an integer and never dereferenced). Always
 * inlined: a helper that only loads and prefetches may be deleted, prefetch
 * and all, where it is not (README, "Prefetches must reach the binary"). */
static inline __attribute__((always_inline)) void
pc__index_prefetch_home(const struct pc__index *ix, uint64_t h)
{
    uintptr_t t = (uintptr_t)__atomic_load_n(&ix->table, __ATOMIC_RELAXED);
    size_t n = __atomic_load_n(&ix->n, __ATOMIC_RELAXED);

    __builtin_prefetch((const void *)(t + offsetof(struct pc__table, chunks) +
                                      pc__index_home((uint32_t)h, n) *
                                          sizeof(struct pc__chunk)),
                       1);
}

/* Entries in the index (writer only: a plain read of a field the writer
 * changes). */
static inline size_t pc__index_count(const struct pc__index *ix)
{
    return ix->count;
}

#endif
