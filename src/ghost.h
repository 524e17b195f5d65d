/*
 * ghost: the frequency policy's memory of keys it recently evicted
 * (frequency.c), a table of 32-bit words addressed by the key's hash.
 *
 * Layout. nb buckets of PC__GHOST_GB (8) words, one 32-byte aligned probe
 * each: a key's bucket is its 32-bit hash scaled to nb (its high bits),
 * and its fingerprint the hash's low 20 bits (never 0; a word of 0 is an
 * empty place). A word: bit 31 the evicting queue (PC__GHOST_TAG_MAIN
 * or 0), bits 23..30 that queue's coarse eviction time, bits 20..22 the
 * key's recent miss count, bits 0..19 the fingerprint. Words in use come
 * first in their bucket, newest first: put shifts the bucket one place
 * (the oldest falls out: FIFO per bucket) and writes in front; take
 * removes the first word whose fingerprint matches and closes the gap.
 * Two keys of a bucket that share a fingerprint are one key to the ghost:
 * a hint, never an error.
 *
 * Size. The words are addressed by the bucket count, so a ghost of
 * another size cannot be re-addressed (the keys' hashes are gone): a
 * rebuild at another size forgets every word. The policy grows the ghost
 * with the entries its shard holds, to a word per entry (pc__ghost_want,
 * to the end of the allocator's size class), at most nb_max buckets; a
 * shrink that cannot allocate keeps the first nb buckets of the larger
 * allocation (nb_alloc), and pc__ghost_move later moves them, words kept.
 * Never an error: a ghost that cannot grow stays as it is.
 *
 * Costs: take and put are O(1), a bucket's two 16-byte halves (SSE2
 * compares for take's search); memory 4 bytes per word, nb * 32 bytes.
 *
 * Concurrency: the shard's writer owns the ghost. w and nb alone are also
 * read outside the shard's lock (the policy's prefetch of the bucket a
 * put will probe): they are stored and loaded atomically (relaxed), and
 * such a reader only computes an address to prefetch from them, which
 * may mix two sizes (a prefetch never faults).
 */
#ifndef PURECACHE_GHOST_H
#define PURECACHE_GHOST_H

#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#define PC__GHOST_GB 8
#define PC__GHOST_FP_MASK 0xfffffu
#define PC__GHOST_TAG_MAIN 0x80000000u

struct pc__ghost {
    uint32_t *w;
    uint32_t nb;       /* buckets in use */
    uint32_t nb_max;   /* the most buckets it may grow to (the policy's) */
    uint32_t nb_alloc; /* buckets allocated (more than nb only if memory
                        * was short when it shrank: pc__ghost_rebuild) */
};

/* Empty, at pc__ghost_want(0, g->nb_max) buckets (g->nb_max set by the
 * caller); false if memory is short (then nothing is allocated). */
bool pc__ghost_init(struct pc__ghost *g);
void pc__ghost_free(struct pc__ghost *g);

/* Buckets for a shard of n entries: a word per entry, to the end of the
 * allocator's size class (so growth is geometric), at most nb_max. */
uint32_t pc__ghost_want(uint64_t n, uint32_t nb_max);

/* Rebuild with nb buckets, forgetting every word. If memory is short, a
 * growth keeps the ghost as it is and a shrink uses the first nb buckets
 * of the old allocation, emptied. */
void pc__ghost_rebuild(struct pc__ghost *g, uint32_t nb);

/* Move the buckets, words and all, to an allocation of their own size
 * (after a shrink short of memory); kept as they are if memory is short. */
void pc__ghost_move(struct pc__ghost *g);

/* w and nb, as a reader outside the writer's lock may load them. */
static inline uint32_t *pc__ghost_words(const struct pc__ghost *g)
{
    return __atomic_load_n(&g->w, __ATOMIC_RELAXED);
}

static inline uint32_t pc__ghost_nb(const struct pc__ghost *g)
{
    return __atomic_load_n(&g->nb, __ATOMIC_RELAXED);
}

/* h's bucket among nb and its fingerprint. h is the low half of the
 * cache's keyed hash (its bits are already mixed), so the bucket is h's
 * high bits scaled to nb and the fingerprint its low 20: independent of
 * each other while nb <= 2^12, and sharing log2(nb) - 12 bits beyond
 * (which only makes a larger ghost's fingerprint shorter among keys of
 * one bucket, 17 bits at nb = 2^15: still a hint). Remixing h first cost
 * two instructions more on each of the four times an eviction computes
 * a bucket. */
static inline size_t pc__ghost_bucket_of(uint32_t h, uint32_t nb, uint32_t *fp)
{
    uint32_t f = h & PC__GHOST_FP_MASK;

    *fp = f ? f : 1;
    return (size_t)(((uint64_t)h * nb) >> 32);
}

/* h's bucket (writer only). */
static inline uint32_t *pc__ghost_bucket(const struct pc__ghost *g, uint32_t h,
                                         uint32_t *fp)
{
    return g->w + pc__ghost_bucket_of(h, g->nb, fp) * PC__GHOST_GB;
}

/* The position of fp among a bucket's 8 words, or -1. Words in use come
 * first and a word's fingerprint is never 0, so the first match among all
 * 8 is the first among those in use: with SSE2, two compares and no
 * branch per word. */
static inline int pc__ghost_find(const uint32_t *b, uint32_t fp)
{
#if defined(__SSE2__)
    const __m128i mask = _mm_set1_epi32((int)PC__GHOST_FP_MASK);
    const __m128i want = _mm_set1_epi32((int)fp);
    __m128i lo = _mm_load_si128((const __m128i *)b); /* 32-byte aligned */
    __m128i hi = _mm_load_si128((const __m128i *)(b + 4));
    unsigned m =
        (unsigned)_mm_movemask_ps(
            _mm_castsi128_ps(_mm_cmpeq_epi32(_mm_and_si128(lo, mask), want))) |
        (unsigned)_mm_movemask_ps(
            _mm_castsi128_ps(_mm_cmpeq_epi32(_mm_and_si128(hi, mask), want)))
            << 4;

    return m != 0 ? __builtin_ctz(m) : -1;
#else
    for (int i = 0; i < PC__GHOST_GB && b[i]; i++)
        if ((b[i] & PC__GHOST_FP_MASK) == fp)
            return i;
    return -1;
#endif
}

/* Remove bucket b's word i (pc__ghost_find's) and return it. */
static inline uint32_t pc__ghost_take_at(uint32_t *b, int i)
{
    uint32_t w = b[i];

    for (; i < PC__GHOST_GB - 1; i++)
        b[i] = b[i + 1];
    b[PC__GHOST_GB - 1] = 0;
    return w;
}

/* Remove h's word if present and return it (0 if absent). */
static inline uint32_t pc__ghost_take(struct pc__ghost *g, uint32_t h)
{
    uint32_t fp, *b = pc__ghost_bucket(g, h, &fp);
    int i = pc__ghost_find(b, fp);

    return i < 0 ? 0 : pc__ghost_take_at(b, i);
}

/* Remember h: shift its bucket's words one place (the last falls out) and
 * put h's in front, with the evicting queue's tag, its time t (mod 256)
 * and the miss count mc (mod 8): two 16-byte loads and stores, both loads
 * first, in place of an overlapping memmove's library call. */
static inline void pc__ghost_put(struct pc__ghost *g, uint32_t h, uint32_t tag,
                                 uint32_t t, uint32_t mc)
{
    uint32_t fp, *b = pc__ghost_bucket(g, h, &fp), lo[4], hi[4];

    memcpy(lo, b, sizeof lo);     /* words 0..3 */
    memcpy(hi, b + 3, sizeof hi); /* words 3..6 */
    memcpy(b + 4, hi, sizeof hi); /* to 4..7 */
    memcpy(b + 1, lo, sizeof lo); /* to 1..4 */
    b[0] = tag | ((t & 255u) << 23) | ((mc & 7u) << 20) | fp;
}

#endif
