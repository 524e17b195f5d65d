/*
 * entry: the immutable key/value record every policy publishes.
 *
 * Layout (16-byte header, then, if the entry's expiry time is far, that
 * time as 8 bytes, then the key bytes, then the value bytes):
 *
 *   vlen   u32  value length              } written once before publication,
 *   klen   u16  key length (<= PC_KEY_MAX)} read by any reader afterwards
 *   ref    u8   the policy's use mark (CLOCK's reference bit): set by
 *               readers with a plain relaxed byte store, and only when it
 *               changes; cleared by the writer
 *   flags  u8   PC__KV_LIVE: set when the entry is made, cleared when
 *               the writer unlinks it (lru.c; and any entry whose time is
 *               near, before w is reused: then it reads as "removed");
 *               PC__KV_NEAR: the entry has an expiry time, near, kept in
 *               bits 0..4 of flags (its bits 32..36) and w.live.hx;
 *               PC__KV_FAR: it has one, far, in the 8 bytes after the
 *               header (PC__KV_EXPIRES is either). Only LIVE changes
 *               after publication. Every access is atomic (plain moves
 *               on x86-64). The order of the bits makes a reader's check
 *               of a near time one comparison (pc__kv_vis).
 *   w           while the entry is published: `hx`, the low half of its
 *               key's hash (index.h finds its home chunk from it, so a
 *               removal or a table growth never rehashes a key), or, if its
 *               expiry time is near, that time's low 32 bits; and `slot`,
 *               the policy's position for it (a CLOCK ring slot). Once it
 *               has been unlinked, the link of a removal or retire list
 *               (write.c, retire.h).
 *
 * Near expiry times. An expiry time is `near` when it lies in the 2^37 ms
 * (4.3 years) after the cache's expiry origin (0 on the default clock,
 * whose ms count from boot; a user's clock's time at the cache's first
 * expiry: pc__core_expires): then it is kept as its offset from the
 * origin, 37 bits, in the header, where the key's hash was, and the entry
 * is exactly as large as one that never expires (with an 8-byte key and
 * value, jemalloc's 32-byte class instead of the 48-byte one: a hit reads
 * one line, not two, a cache holds a third more in the same memory, and
 * the benchmark's get mix ran 9-13% faster on the smaller entries). Any
 * other time (later, or earlier than the origin: a user's clock that went
 * back) is far and takes the 8 bytes after the header, as every expiry
 * time used to. The writer recomputes the hash of a near entry's key
 * where it needs it (pc__kv_hash: a removal, where the index's hint saves
 * the CLOCK policy's evictions a second hash; a growth; the frequency
 * policy's ghost; the expiry queue names index positions and hashes nothing).
 *
 * Readers read `hx` of a near entry, and the writer reuses w as a list
 * link once the entry is unlinked, while readers that found it earlier may
 * still be reading it. So before its first such write the writer clears
 * LIVE, then a release fence (pc__kv_unlinking), and every later write
 * of w is atomic; a reader loads `hx` with acquire, then the flags:
 * LIVE clear, and what it read may be a link, so it looks the key up
 * again (pc__kv_read_expiry). Set, and it read the expiry time (a link
 * stored after the fence would have come with LIVE clear).
 *
 * An entry is published (made reachable through the index) only after every
 * byte of it is written, by the index's release store of the pointer; a
 * reader loads that pointer with acquire. After that nothing but `ref` and
 * LIVE changes until it is unlinked; an update publishes a new entry. So
 * a reader that reached an entry inside an epoch section can copy its value
 * without any further synchronisation and never sees a torn value.
 */
#ifndef PC_ENTRY_H
#define PC_ENTRY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "hash.h"
#include "purecache.h"
#include "util.h"

struct pc__kv {
    uint32_t vlen;
    uint16_t klen;
    uint8_t ref;
    uint8_t flags;
    union {
        struct {
            uint32_t hx;   /* the key's hash, low half, or a near expiry */
            uint32_t slot; /* the policy's position for the entry */
        } live;
        struct pc__kv *retire_next;
    } w;
    unsigned char data[]; /* [expiry u64], key bytes, value bytes */
};

#define PC__KV_NEAR_HI 0x1fu /* flags bits 0..4: a near time's bits 32..36 */
#define PC__KV_FAR 0x20u
#define PC__KV_NEAR 0x40u
#define PC__KV_LIVE 0x80u
#define PC__KV_EXPIRES (PC__KV_NEAR | PC__KV_FAR) /* a mask: either */
#define PC__KV_NEAR_SPAN ((uint64_t)1 << 37)
/* What pc__kv_vis adds to a live near entry's offset (below). */
#define PC__KV_VIS_BIAS ((uint64_t)(PC__KV_LIVE | PC__KV_NEAR) << 32)

static inline unsigned int pc__kv_flags(const struct pc__kv *kv)
{
    return __atomic_load_n(&kv->flags, __ATOMIC_RELAXED);
}

_Static_assert(sizeof(struct pc__kv) == 16, "entry header is 16 bytes");
_Static_assert(PC_KEY_MAX <= UINT16_MAX, "klen is 16 bits");

/* The flags of an entry that expires at `at` (0: never) in a cache whose
 * expiry origin is `origin`: 0, near (with the time's high bits) or far. */
static inline unsigned int pc__kv_expiry_flags(uint64_t at, uint64_t origin)
{
    uint64_t d = at - origin;

    if (at == 0)
        return 0;
    if (at < origin || d >= PC__KV_NEAR_SPAN)
        return PC__KV_FAR;
    return PC__KV_NEAR | (unsigned int)(d >> 32);
}

static inline bool pc__kv_near_flags(unsigned int flags)
{
    return flags & PC__KV_NEAR;
}

/* Whether flags say the writer has unlinked the entry (LIVE clear). */
static inline bool pc__kv_removed_flags(unsigned int flags)
{
    return !(flags & PC__KV_LIVE);
}

/* Whether kv's expiry time is in its header (so hx is not its hash). */
static inline bool pc__kv_near(const struct pc__kv *kv)
{
    return pc__kv_near_flags(pc__kv_flags(kv));
}

static inline size_t pc__kv_extra(unsigned int flags)
{
    return (flags & PC__KV_FAR) ? sizeof(uint64_t) : 0;
}

static inline const unsigned char *pc__kv_key(const struct pc__kv *kv)
{
    return kv->data + pc__kv_extra(pc__kv_flags(kv));
}

static inline const unsigned char *pc__kv_value(const struct pc__kv *kv)
{
    return pc__kv_key(kv) + kv->klen;
}

/* The low half of the hash of kv's key: kept in hx, or, if kv's expiry
 * time is near, computed again from the key (writers only). */
static __attribute__((noinline, cold, unused)) uint32_t
pc__kv_hash_again(const struct pc__kv *kv, const struct pc__hash_seed *seed)
{
    return (uint32_t)pc__hash_key(seed, pc__kv_key(kv), kv->klen);
}
static inline uint32_t pc__kv_hash(const struct pc__kv *kv,
                                   const struct pc__hash_seed *seed)
{
    /* Out of line: the writers' paths for entries that never expire
     * stay as they were. */
    if (__builtin_expect(pc__kv_near(kv), 0))
        return pc__kv_hash_again(kv, seed);
    return kv->w.live.hx;
}

/* A near expiry time's offset from the origin, from the entry's flags f
 * and its hx lo. */
static inline uint64_t pc__kv_near_offset(unsigned int f, uint32_t lo)
{
    return (uint64_t)(f & PC__KV_NEAR_HI) << 32 | lo;
}

/* The readers' one comparison: flags f and hx lo as one number, LIVE at
 * bit 39, NEAR at 38, FAR at 37, a near time's offset in bits 0..36. For
 * a live entry whose time is near it is PC__KV_VIS_BIAS + that offset;
 * for any other entry with an expiry it is below PC__KV_VIS_BIAS (LIVE or
 * NEAR clear). So for a key k >= PC__KV_VIS_BIAS (the ticker's time plus
 * the bias, ticker.h), k < pc__kv_vis(f, lo) says exactly "live, near,
 * and not yet expired at that time"; anything else needs a closer look. */
static inline uint64_t pc__kv_vis(unsigned int f, uint32_t lo)
{
    return (uint64_t)f << 32 | lo;
}

/* The expiry time that follows the header of an entry with PC__KV_FAR
 * (immutable: readers and writers alike). */
static inline uint64_t pc__kv_far_time(const struct pc__kv *kv)
{
    uint64_t t;

    memcpy(&t, kv->data, sizeof t);
    return t;
}

/* The expiry time (ms, the cache's clock) of an entry with
 * PC__KV_EXPIRES, for its writer, before the entry is unlinked. */
static inline uint64_t pc__kv_expires(const struct pc__kv *kv, uint64_t origin)
{
    unsigned int f = pc__kv_flags(kv);

    if (f & PC__KV_FAR)
        return pc__kv_far_time(kv);
    return origin + pc__kv_near_offset(f, kv->w.live.hx);
}

/* For readers: hx, loaded with acquire before the flags (entry.h's top
 * comment); then pc__kv_flags. */
static inline uint32_t pc__kv_read_hx(const struct pc__kv *kv)
{
    return __atomic_load_n(&kv->w.live.hx, __ATOMIC_ACQUIRE);
}

/* For readers: the expiry time of kv, whose flags f (loaded after hx, lo)
 * have PC__KV_EXPIRES, into *at; false if the writer has unlinked kv and
 * may have reused hx (look the key up again: the top comment). */
static inline bool pc__kv_read_expiry(const struct pc__kv *kv, unsigned int f,
                                      uint32_t lo, uint64_t origin,
                                      uint64_t *at)
{
    if (f & PC__KV_FAR) {
        *at = pc__kv_far_time(kv);
        return true;
    }
    if (pc__kv_removed_flags(f))
        return false;
    *at = origin + pc__kv_near_offset(f, lo);
    return true;
}

/* The writer: mark kv removed (clear LIVE), with memory order `mo`. */
static inline void pc__kv_mark_removed(struct pc__kv *kv, int mo)
{
    __atomic_store_n(&kv->flags, (uint8_t)(pc__kv_flags(kv) & ~PC__KV_LIVE),
                     mo);
}

/* The writer, before it first writes w of an unlinked entry that readers
 * may still reach: if hx holds a near expiry time, mark the entry removed,
 * then fence, so a reader that reads what comes after sees the mark. */
static inline void pc__kv_unlinking(struct pc__kv *kv)
{
    unsigned int f = pc__kv_flags(kv);

    if (pc__kv_near_flags(f)) {
        if (!pc__kv_removed_flags(f))
            pc__kv_mark_removed(kv, __ATOMIC_RELAXED);
        __atomic_thread_fence(__ATOMIC_RELEASE);
    }
}

/* A list link in w of an unlinked entry (after pc__kv_unlinking), stored
 * as its two halves with 32-bit atomic stores: readers load hx, the first
 * half, with a 32-bit atomic load, and the fence-to-acquire pairing of
 * pc__kv_unlinking holds between accesses to the same object. (The
 * writers that follow the list read retire_next whole, ordered after
 * these stores by their own thread or by a lock.) */
static inline void pc__kv_set_link(struct pc__kv *kv, struct pc__kv *next)
{
    uint32_t half[2];

    _Static_assert(offsetof(struct pc__kv, w.live.hx) ==
                           offsetof(struct pc__kv, w.retire_next) &&
                       offsetof(struct pc__kv, w.live.slot) ==
                           offsetof(struct pc__kv, w.retire_next) + 4,
                   "hx and slot are the link's two halves");
    memcpy(half, &next, sizeof half);
    __atomic_store_n(&kv->w.live.hx, half[0], __ATOMIC_RELAXED);
    __atomic_store_n(&kv->w.live.slot, half[1], __ATOMIC_RELAXED);
}

/* Bytes of the allocation holding an entry of this key and value, with
 * these expiry flags (pc__kv_expiry_flags). */
static inline size_t pc__kv_size(size_t klen, size_t vlen, unsigned int xflags)
{
    return sizeof(struct pc__kv) + pc__kv_extra(xflags) + klen + vlen;
}

static inline __attribute__((always_inline)) size_t
pc__kv_alloc_size(const struct pc__kv *kv)
{
    return pc__kv_size(kv->klen, kv->vlen, pc__kv_flags(kv));
}

/* Fill an already-allocated entry (header at kv) for a key of hash h
 * that expires at `at` (0: never), with xflags = pc__kv_expiry_flags(at,
 * origin); it is live, and hx holds h's low half unless it holds the
 * near expiry time. */
static inline void pc__kv_fill(struct pc__kv *kv, uint64_t h, const void *key,
                               size_t klen, const void *val, size_t vlen,
                               uint64_t at, unsigned int xflags,
                               uint64_t origin)
{
    unsigned char *p = kv->data;

    kv->vlen = (uint32_t)vlen;
    kv->klen = (uint16_t)klen;
    kv->ref = 0;
    kv->flags = (uint8_t)(xflags | PC__KV_LIVE);
    kv->w.live.slot = 0;
    if (xflags & PC__KV_NEAR) {
        kv->w.live.hx = (uint32_t)(at - origin);
    } else {
        kv->w.live.hx = (uint32_t)h;
        if (xflags & PC__KV_FAR) {
            memcpy(p, &at, sizeof at);
            p += sizeof at;
        }
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

/* A writer's reading of the cache's clock: the time `ms` (0 while no
 * entry of the cache can expire: then none has) and the expiry origin
 * that near expiry times count from. */
struct pc__now {
    uint64_t ms;
    uint64_t origin;
};

/* Whether the entry is expired at `now` (visible strictly before its
 * expiry time), for its writer. */
static inline bool pc__kv_expired(const struct pc__kv *kv, struct pc__now now)
{
    return (pc__kv_flags(kv) & PC__KV_EXPIRES) && now.ms != 0 &&
           now.ms >= pc__kv_expires(kv, now.origin);
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
