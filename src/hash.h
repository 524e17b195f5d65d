/*
 * hash: the seeded 64-bit hash that places keys in shards and hash slots.
 *
 * Algorithm. A multiply-fold construction: the 128-bit product of two 64-bit
 * words, folded by XOR of its halves ("mum"), is the mixing step. Keys of up
 * to 16 bytes are read as two (possibly overlapping) words, each XORed with a
 * secret seed word before one mum; longer keys fold 16-byte blocks into an
 * accumulator the same way. A final mum with a third seed word, after the
 * length is mixed in, spreads every input bit over all 64 output bits, so the
 * low bits (the index's home chunk and probe stride) and the high bits (the
 * shard index and the index's tag) are all usable.
 *
 * Seeding. Every cache draws a 256-bit seed from getrandom(2) unless the
 * options fix one. Without the seed an attacker cannot predict which keys
 * share a probe sequence: every input word is XORed with secret material
 * before it is multiplied. This is flood resistance for a hash table, not a
 * cryptographic MAC: a caller who can observe timings for a long time could
 * in principle learn about the seed, as with any fast keyed table hash.
 *
 * Cost: two or three 64x64->128 multiplies and a handful of loads for keys
 * up to 16 bytes; about 20 instructions on x86-64.
 *
 * Concurrency: pure function of (seed, key); the seed is immutable after the
 * cache is created.
 */
#ifndef PC_HASH_H
#define PC_HASH_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

struct pc__hash_seed {
    uint64_t k[4];
};

/* Fill *seed from `fixed` (non-zero: deterministic expansion) or, when fixed
 * is 0, from the kernel's random source. Never fails. */
void pc__hash_seed_init(struct pc__hash_seed *seed, uint64_t fixed);

static inline uint64_t pc__hash_mum(uint64_t a, uint64_t b)
{
    __uint128_t r = (__uint128_t)a * b;

    return (uint64_t)r ^ (uint64_t)(r >> 64);
}

static inline uint64_t pc__hash_rd64(const unsigned char *p)
{
    uint64_t v;

    memcpy(&v, p, sizeof v);
    return v;
}

static inline uint64_t pc__hash_rd32(const unsigned char *p)
{
    uint32_t v;

    memcpy(&v, p, sizeof v);
    return v;
}

static inline uint64_t pc__hash(const struct pc__hash_seed *s, const void *key,
                                size_t n)
{
    const unsigned char *p = key;
    uint64_t a, b, acc = s->k[0];

    if (n <= 16) {
        if (n >= 8) {
            a = pc__hash_rd64(p);
            b = pc__hash_rd64(p + n - 8);
        } else if (n >= 4) {
            a = pc__hash_rd32(p);
            b = pc__hash_rd32(p + n - 4);
        } else if (n > 0) {
            a = ((uint64_t)p[0] << 16) | ((uint64_t)p[n >> 1] << 8) | p[n - 1];
            b = 0;
        } else {
            a = b = 0;
        }
    } else {
        size_t left = n;

        while (left > 16) {
            acc = pc__hash_mum(pc__hash_rd64(p) ^ s->k[1],
                               pc__hash_rd64(p + 8) ^ acc);
            p += 16;
            left -= 16;
        }
        a = pc__hash_rd64(p + left - 16);
        b = pc__hash_rd64(p + left - 8);
    }
    acc = pc__hash_mum(a ^ s->k[1], b ^ s->k[2] ^ acc);
    return pc__hash_mum(acc ^ (uint64_t)n ^ s->k[3], 0x9e3779b97f4a7c15ULL);
}

/* pc__hash with the common 8-byte key as its own constant-folded path:
 * the length tests disappear and the two reads become one. */
static inline uint64_t pc__hash_key(const struct pc__hash_seed *s,
                                    const void *key, size_t n)
{
    return n == 8 ? pc__hash(s, key, 8) : pc__hash(s, key, n);
}

#endif
