/*
 * clock: the CLOCK policy inside one shard (shard.h), a close
 * approximation of LRU whose hits write at most one byte.
 *
 * Algorithm. The shard's entries sit in a ring with a clock hand. A read
 * that finds its key sets the entry's reference bit if it is clear (the
 * use mark, max_ref 1). To make room, the hand sweeps the ring: an entry
 * whose bit is set has it cleared and is passed over ("second chance");
 * the first entry found with a clear bit is the victim, and a new entry
 * inserted to replace it takes its ring slot, just behind the hand, so it
 * gets a full revolution to be read before it can be evicted (a victim
 * taken out of turn, expired, leaves its slot wherever it was: the new
 * key takes it with its bit set, which buys that revolution). Entries read
 * at least once per revolution therefore stay; entries not read since the
 * hand last passed go, oldest position first, which is why CLOCK tracks
 * LRU closely on real traces at a fraction of LRU's cost: a hit writes at
 * most one byte, once per revolution, instead of relinking a list. An
 * entry whose expiry time has come is taken as soon as the hand reaches
 * it, whatever its bit. If readers keep setting bits faster than the hand
 * clears them, the sweep stops after two revolutions and evicts where it
 * stands, bounding a put.
 *
 * Slots. A removed entry's slot goes on a free list threaded through the
 * ring (a free slot holds (next << 1) | 1 instead of a pointer); a new
 * entry that evicted nothing takes the last slot freed, else a never-used
 * one. The ring grows as the shard fills, by an eighth or more, to the end
 * of the allocator's size class (so a ring costs about what it holds,
 * where doubling cost up to twice that), and is packed into a smaller one
 * when a lowered limit leaves it four times larger than its entries need
 * (trim).
 *
 * Concurrency: the ring, the hand and the free list are writer-only (the
 * shard's writer lock); readers only set reference bits, with relaxed
 * byte stores that the hand reads and clears with relaxed accesses.
 */
#include <string.h>

#include "alloc.h"
#include "shard.h"

#define SLOT_NONE UINT32_MAX
#define SLOT_MAX (UINT32_MAX - 1)

/* A free ring slot holds (next free index << 1) | 1 instead of a pointer. */
#define SLOT_IS_FREE(p) (((uintptr_t)(p)) & 1u)
#define SLOT_FREE_LINK(next) ((struct pc__kv *)(((uintptr_t)(next) << 1) | 1u))
#define SLOT_FREE_NEXT(p) ((uint32_t)(((uintptr_t)(p)) >> 1))

/* How far ahead of the hand the sweep prefetches entries. The hand reads
 * each entry's reference bit, a cache miss per entry (entries are scattered
 * over the heap; the ring itself is sequential and prefetched by the CPU).
 * Prefetching a few entries ahead overlaps those misses within a sweep, and
 * the last prefetches of one eviction warm the entries the next one on this
 * shard will examine. */
#define SWEEP_PREFETCH 4

struct clock_ring {
    struct pc__kv **ring;
    uint32_t ring_cap;    /* slots usable: the size the ring would have had
                           * had every allocation succeeded */
    uint32_t ring_alloc;  /* slots allocated (more than ring_cap only after
                           * a trim that could not allocate: clock_trim) */
    uint32_t used;        /* slots ever handed out (high-water mark) */
    uint32_t hand;        /* next slot the clock hand examines */
    uint32_t free_head;   /* free-slot list through the ring, or SLOT_NONE */
    uint32_t last_victim; /* the slot the last victim left, or SLOT_NONE */
} __attribute__((aligned(64)));

static void *clock_create(size_t share, const struct pc__hash_seed *seed)
{
    struct clock_ring *r = pc__alloc_aligned(sizeof *r, 64);

    (void)share; /* the ring grows on demand */
    (void)seed;
    if (r != NULL) {
        memset(r, 0, sizeof *r);
        r->free_head = SLOT_NONE;
        r->last_victim = SLOT_NONE;
    }
    return r;
}

static void clock_destroy(void *st)
{
    struct clock_ring *r = st;

    if (r == NULL)
        return;
    pc__free_array(r->ring, sizeof *r->ring * r->ring_alloc, 0);
    pc__free_aligned(r, sizeof *r, 64);
}

/* The slots an allocation for at least `n` (and 64) slots holds: to the end
 * of its size class, at most SLOT_MAX. */
static uint32_t ring_slots(uint64_t n)
{
    if (n < 64)
        n = 64;
    n = pc__alloc_usable_count(n, sizeof(struct pc__kv *));
    return n > SLOT_MAX ? SLOT_MAX : (uint32_t)n;
}

/* Move the ring to an allocation of `size` slots (at least `used`), its
 * layout kept; ring_cap becomes `size`. false on ENOMEM (nothing
 * changed). */
static bool ring_move(struct clock_ring *r, uint32_t size)
{
    struct pc__kv **ring = pc__alloc_array(sizeof *ring * size, 0);

    if (ring == NULL)
        return false;
    if (r->used)
        memcpy(ring, r->ring, sizeof *ring * r->used);
    pc__free_array(r->ring, sizeof *ring * r->ring_alloc, 0);
    r->ring = ring;
    r->ring_cap = r->ring_alloc = size;
    return true;
}

static bool clock_reserve(void *st, size_t n)
{
    struct clock_ring *r = st;
    uint64_t ncap;

    (void)n;
    if (r->free_head != SLOT_NONE || r->last_victim != SLOT_NONE ||
        r->used < r->ring_cap)
        return true;
    if (r->ring_cap == SLOT_MAX)
        return false; /* a shard holds at most 2^32 - 2 entries */
    /* 64-bit arithmetic, clamped (ring_slots): growth must not wrap. */
    ncap = ring_slots((uint64_t)r->ring_cap + r->ring_cap / 8 + 1);
    if (ncap <= r->ring_alloc) { /* the allocation holds it already */
        r->ring_cap = (uint32_t)ncap;
        return true;
    }
    return ring_move(r, (uint32_t)ncap);
}

static void reverse(struct pc__kv **a, uint32_t from, uint32_t to)
{
    while (from + 1 < to) {
        struct pc__kv *t = a[from];

        a[from++] = a[--to];
        a[to] = t;
    }
}

/* After a limit was lowered: a ring at least four times the size `n`
 * entries need (ring_slots, as reserve grows it) moves to
 * one of that size, its entries packed in the hand's order from the hand
 * on (the sweep meets them as before; the free slots, threaded between
 * them, are gone). If memory is short, the entries are packed so in place
 * (squeezed, then rotated by three reversals) and the ring's usable size
 * becomes that size while its allocation stays: later puts, growths and
 * trims then do what they would after a trim that could allocate (same
 * slots, same victims), and the next trim moves the allocation to the
 * usable size, the layout kept. */
static void clock_trim(void *st, size_t n)
{
    struct clock_ring *r = st;
    uint64_t want = ring_slots((uint64_t)n + 1);
    struct pc__kv **ring;
    uint32_t k = 0, before = 0, h = r->hand < r->used ? r->hand : 0;

    if ((uint64_t)r->ring_cap < 4 * want) {
        if (r->ring_alloc > r->ring_cap) /* left by one short of memory */
            ring_move(r, r->ring_cap);   /* (kept if memory is short) */
        return;
    }
    ring = pc__alloc_array(sizeof *ring * want, 0);
    if (ring != NULL) {
        for (uint32_t i = 0; i < r->used; i++) {
            uint32_t j = h + i < r->used ? h + i : h + i - r->used;

            if (!SLOT_IS_FREE(r->ring[j])) {
                PC__ASSERT(k < want);
                ring[k++] = r->ring[j];
            }
        }
        pc__free_array(r->ring, sizeof *ring * r->ring_alloc, 0);
        r->ring = ring;
        r->ring_cap = r->ring_alloc = (uint32_t)want;
    } else {
        for (uint32_t i = 0; i < r->used; i++) {
            if (SLOT_IS_FREE(r->ring[i]))
                continue;
            before += i < h;
            r->ring[k++] = r->ring[i];
        }
        reverse(r->ring, 0, before);
        reverse(r->ring, before, k);
        reverse(r->ring, 0, k);
        r->ring_cap = (uint32_t)want;
    }
    for (uint32_t i = 0; i < k; i++)
        r->ring[i]->w.live.slot = i;
    r->used = k;
    r->hand = 0;
    r->free_head = SLOT_NONE;
    r->last_victim = SLOT_NONE;
}

static void release_slot(struct clock_ring *r, uint32_t slot)
{
    r->ring[slot] = SLOT_FREE_LINK(r->free_head);
    r->free_head = slot;
}

static struct pc__kv *clock_victim(void *st, struct pc__now now)
{
    struct clock_ring *r = st;
    uint64_t steps, limit = 2ull * r->used + 1;

    for (steps = 0;; steps++) {
        struct pc__kv *kv, *next;
        uint32_t ahead;

        if (r->hand >= r->used)
            r->hand = 0;
        ahead = r->hand + SWEEP_PREFETCH;
        if (ahead >= r->used)
            ahead %= r->used;
        next = r->ring[ahead];
        if (!SLOT_IS_FREE(next))
            __builtin_prefetch(&next->ref, 1);
        kv = r->ring[r->hand++];
        if (SLOT_IS_FREE(kv))
            continue;
        if (steps < limit && __atomic_load_n(&kv->ref, __ATOMIC_RELAXED) &&
            !pc__kv_expired(kv, now)) {
            __atomic_store_n(&kv->ref, 0, __ATOMIC_RELAXED);
            continue;
        }
        PC__ASSERT(r->ring[kv->w.live.slot] == kv);
        /* The slot stays taken, for the entry inserted next (if any). */
        if (r->last_victim != SLOT_NONE)
            release_slot(r, r->last_victim);
        r->last_victim = kv->w.live.slot;
        r->ring[kv->w.live.slot] = SLOT_FREE_LINK(SLOT_NONE);
        return kv;
    }
}

/* The entry under the hand: the sweep prefetched it SWEEP_PREFETCH steps
 * ago. */
static const struct pc__kv *clock_upcoming(const void *st)
{
    const struct clock_ring *r = st;
    const struct pc__kv *kv;

    if (r->used == 0)
        return NULL;
    kv = r->ring[r->hand < r->used ? r->hand : 0];
    return SLOT_IS_FREE(kv) ? NULL : kv;
}

static void clock_insert(void *st, struct pc__kv *kv, uint32_t h, bool evicted)
{
    struct clock_ring *r = st;
    uint32_t slot;

    (void)h; /* (frequency's probes its ghost with it) */
    if (evicted && r->last_victim != SLOT_NONE) {
        slot = r->last_victim; /* just behind the hand */
        r->last_victim = SLOT_NONE;
    } else if (r->free_head != SLOT_NONE) {
        slot = r->free_head;
        r->free_head = SLOT_FREE_NEXT(r->ring[slot]);
        /* Evicted out of turn (an expired entry, taken from the expiry
         * queue), its victim left a slot anywhere, perhaps under the
         * hand: the bit buys the new key the revolution a slot behind
         * the hand would have (a review found the next put evicting it
         * ahead of older keys never read). */
        if (evicted)
            __atomic_store_n(&kv->ref, 1, __ATOMIC_RELAXED);
    } else if (r->used < r->ring_cap) {
        slot = r->used++;
    } else { /* reserve kept the last victim's slot for us */
        slot = r->last_victim;
        r->last_victim = SLOT_NONE;
    }
    kv->w.live.slot = slot;
    r->ring[slot] = kv;
}

static void clock_keep(void *st, struct pc__kv *kv)
{
    clock_insert(st, kv, 0, true);                   /* a slot victim() freed */
    __atomic_store_n(&kv->ref, 1, __ATOMIC_RELAXED); /* a use */
}

static void clock_replace(void *st, struct pc__kv *old, struct pc__kv *kv)
{
    struct clock_ring *r = st;

    kv->w.live.slot = old->w.live.slot;
    __atomic_store_n(&kv->ref, 1, __ATOMIC_RELAXED); /* a use */
    r->ring[kv->w.live.slot] = kv;
}

static void clock_remove(void *st, struct pc__kv *kv)
{
    struct clock_ring *r = st;

    PC__ASSERT(r->ring[kv->w.live.slot] == kv);
    release_slot(r, kv->w.live.slot);
}

static void clock_each(void *st, void (*fn)(void *arg, struct pc__kv *kv),
                       void *arg)
{
    struct clock_ring *r = st;

    for (uint32_t i = 0; i < r->used; i++)
        if (!SLOT_IS_FREE(r->ring[i]))
            fn(arg, r->ring[i]);
}

static void clock_reset(void *st)
{
    struct clock_ring *r = st;

    r->used = 0;
    r->hand = 0;
    r->free_head = SLOT_NONE;
    r->last_victim = SLOT_NONE;
}

const struct pc__shard_policy pc__clock_policy = {
    .name = "clock",
    .max_ref = 1,
    /* One less than a ring holds: a shard at its share still takes the
     * new key it evicts for (reserve asks for room before evicting). */
    .max_share = SLOT_MAX - 1,
    .create = clock_create,
    .destroy = clock_destroy,
    .reserve = clock_reserve,
    .trim = clock_trim,
    .victim = clock_victim,
    .upcoming = clock_upcoming,
    .insert = clock_insert,
    .keep = clock_keep,
    .replace = clock_replace,
    .remove = clock_remove,
    .each = clock_each,
    .reset = clock_reset,
};
