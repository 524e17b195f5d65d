/*
 * frequency: the frequency-aware policy inside one shard (shard.h),
 * PC_POLICY_FREQUENCY: S3-FIFO with an adaptive probation queue and a gated
 * miss-count admission filter.
 *
 * Structures (per shard, nominal share `cap`):
 *   SMALL  a FIFO ring of entries on probation; new keys go here. Its
 *          target size cs adapts within [1%, 50%] of cap (starts at 5%),
 *          scaled down in a shard that holds under half its share
 *          (small_at_target).
 *   MAIN   a FIFO ring with reinsertion: a CLOCK whose per-entry count
 *          (the entry's ref byte, raised by readers up to 3) is spent one
 *          unit per pass of the hand.
 *   GHOST  up to cap 32-bit words in buckets of 8 (one 32-byte probe): keys
 *          recently evicted, each word holding which queue evicted it, that
 *          queue's coarse eviction time, the key's recent miss count (1..7)
 *          and a 20-bit fingerprint; FIFO per bucket, a hit removes it
 *          (ghost.h).
 *   Per entry, writer-only, in w.live.slot: ring slot (27 bits), queue
 *   (2 bits), miss count (3 bits). The key's hash (pc__kv_hash) feeds
 *   the ghost.
 *
 * Read path: exactly CLOCK's, with max_ref 3: `f = ref; if (f < 3) ref =
 * f + 1`, a plain relaxed store (lost increments between racing readers
 * only make the count a hint).
 *
 * Insert of a new key (shard lock held):
 *   evict:  (shard.c, as many as the budget needs) from SMALL if it is
 *           at its target, else MAIN. SMALL pops its oldest: read
 *           twice on probation (ref >= 2) moves it to MAIN with ref 0;
 *           the first that was not is the victim, remembered in the ghost
 *           as SMALL's. MAIN's hand spends one unit of a positive ref and
 *           sends the entry round again; ref 0 is the victim, remembered
 *           as MAIN's. After four revolutions' worth of steps the hand
 *           evicts where it stands. An expired entry is a victim at once.
 *   admit:  then probe the ghost; the key's miss count is one more than the
 *           ghost remembered (else 1). A ghost hit that is recent (within
 *           the last ~10% of cap evictions of the queue that evicted it)
 *           is a miss a slightly larger queue would have hit: SMALL's
 *           target grows by one if SMALL evicted it, shrinks if MAIN did.
 *           So the split settles where the two queues' marginal hit rates
 *           are equal (the shadow-queue idea of ARC and Cliffhanger, on
 *           recent hits only: counting every ghost hit pushes SMALL to its
 *           maximum on Zipf and scans). (After the evictions, so a
 *           split moved by this key's return counts from the next put:
 *           one hook, insert, does admit and place.)
 *   place:  to MAIN if SMALL recently evicted the key (reuse proven),
 *           unless, while cs < 3% of cap (a frequency-dominated workload,
 *           where such returns are mostly scans and loops), its miss count
 *           is not above that of MAIN's next victim (TinyLFU's admission
 *           test, on counts the writer sees anyway); to MAIN also when
 *           nothing was evicted and SMALL is at its target (an empty
 *           cache's first working set); to SMALL otherwise, including keys
 *           MAIN let go (their ghost words only measure MAIN).
 *
 * Why: S3-FIFO (Yang et al., SOSP 2023) removes one-hit wonders fast
 * without touching MAIN; its fixed 10% probation queue is its weak point on
 * recency-driven workloads, which the adaptation fixes; the gated filter
 * stops churn replacing churn where frequency dominates. Measured with
 * the shared traces (44 cells of >= 100 entries, this shard layout): mean
 * miss ratio 0.4977 against libCacheSim's S3-FIFO 0.5094 and W-TinyLFU
 * 0.5232, no cell more than 0.0094 worse than LRU; Zipf 0.99 at 10%: hit
 * ratio 0.815 (bench/trace.c reports these).
 *
 * A capacity change (resize) sets the share's parameters anew as create
 * would, SMALL's target at the fraction of the share it had reached; a
 * ghost over the new share's size is rebuilt empty at that size. A cache
 * grown tenfold after creation kept the small share's parameters before:
 * Zipf 0.99, 10k grown to 100k of 1M keys, hit ratio 0.801 against 0.823
 * when created at 100k; now 0.818 (2M operations after the change; the
 * ghost, rebuilt as it grows with the entries, fills again).
 *
 * Deletes and expiry leave a tombstone (NULL) in their ring, which the
 * queue drops when it reaches it; a ring full of tombstones is compacted
 * in place. Memory follows what the shard holds, not its share (a cache
 * bounded by bytes may hold far fewer entries than its capacity): rings
 * grow by an eighth or more, to the end of their allocation's size class
 * (every slot of a ring is written as its head goes round, so its whole
 * size is resident, and doubling would waste up to half), and the ghost
 * grows from 64 words to a word per entry held (and its size class), at most
 * the share's. A lowered limit moves rings and a ghost four times larger
 * than the shard may now hold to smaller storage (trim). Memory beyond
 * CLOCK's: the ghost (at most 4 bytes per entry of the share, unless
 * memory was short when a lowered limit shrank it) and SMALL's ring
 * (sized by SMALL's largest size so far).
 *
 * Concurrency: everything here is writer-only (the shard's lock), except
 * `ref`, which readers raise and the writer reads and writes with relaxed
 * byte accesses, as CLOCK's hand does.
 */
#include <string.h>

#include "alloc.h"
#include "ghost.h"
#include "shard.h"

enum { Q_NONE = 0, Q_SMALL = 1, Q_MAIN = 2 };

#define REF_MAX 3
#define PROMOTE 2
#ifdef PC_TEST_FREQ_SLOT_BITS /* a test's small limit (test_shard_limit) */
#define SLOT_BITS PC_TEST_FREQ_SLOT_BITS
#else
#define SLOT_BITS 27
#endif
#define SLOT_LIMIT ((1u << SLOT_BITS) - 1)
/* The most entries a shard takes: as many as a ring of SLOT_LIMIT slots
 * holds (ring_want), about 1.9 times the largest share (max_share), so a
 * shard at its share still takes a new key, and one over it, as keys
 * spread by hash make some, has room to spare. */
#define ENTRY_LIMIT ((SLOT_LIMIT - 8) / 33 * 32)

/* w.live.slot: slot (27 bits) | queue (2 bits) | miss count (3 bits). */
static uint32_t slot_of(const struct pc__kv *e)
{
    return e->w.live.slot & SLOT_LIMIT;
}
static unsigned queue_of(const struct pc__kv *e)
{
    return (e->w.live.slot >> SLOT_BITS) & 3u;
}
static unsigned mc_of(const struct pc__kv *e)
{
    return e->w.live.slot >> (SLOT_BITS + 2);
}
static void set_state(struct pc__kv *e, uint32_t slot, unsigned q, unsigned mc)
{
    e->w.live.slot = slot | (q << SLOT_BITS) | (mc << (SLOT_BITS + 2));
}

static uint8_t ref_get(const struct pc__kv *e)
{
    return __atomic_load_n(&e->ref, __ATOMIC_RELAXED);
}
static void ref_set(struct pc__kv *e, uint8_t v)
{
    __atomic_store_n(&e->ref, v, __ATOMIC_RELAXED);
}

/* ---- FIFO rings of entries, with tombstones (NULL) ---- */

struct ring {
    struct pc__kv **s;
    uint32_t size; /* slots allocated (what the head goes round) */
    uint32_t cap;  /* slots usable: the size the ring would have had if
                    * every allocation had succeeded (less than size only
                    * after a trim short of memory); growth and trims
                    * decide on it, so they do what they would have done */
    uint32_t head; /* oldest slot */
    uint32_t used; /* slots in use from head, tombstones included */
    uint32_t live; /* entries */
};

static void ring_free(struct ring *r)
{
    pc__free_array(r->s, sizeof *r->s * r->size, 0);
}

/* Move the ring's contents to new storage of `size` slots (tombstones
 * squeezed out, oldest first from slot 0). */
static void ring_relayout(struct ring *r, struct pc__kv **to, uint32_t size)
{
    uint32_t k = 0;

    for (uint32_t i = 0; i < r->used; i++) {
        uint32_t from = r->head + i;
        struct pc__kv *e;

        if (from >= r->size)
            from -= r->size;
        e = r->s[from];
        if (e == NULL)
            continue;
        r->s[from] = NULL;
        PC__ASSERT(k < size);
        to[k] = e;
        set_state(e, k, queue_of(e), mc_of(e));
        k++;
    }
    r->head = 0;
    r->used = k;
    r->size = size;
    r->s = to;
}

/* Slots for `live` entries: the entries plus slack for tombstones. */
static uint64_t ring_want(uint32_t live)
{
    return (uint64_t)live + live / 32 + 8;
}
_Static_assert((uint64_t)ENTRY_LIMIT + ENTRY_LIMIT / 32 + 8 <= SLOT_LIMIT,
               "a ring of SLOT_LIMIT slots holds ENTRY_LIMIT entries");

/* The slots an allocation for `size` slots gives (to the end of the
 * allocator's size class, at most SLOT_LIMIT). */
static uint32_t ring_slots(uint64_t size)
{
    size = pc__alloc_usable_count(size, sizeof(struct pc__kv *));
    return size > SLOT_LIMIT ? SLOT_LIMIT : (uint32_t)size;
}

/* Move the ring to new storage of ring_slots(size) slots (enough for what
 * it holds), all of them usable; false on ENOMEM (ring unchanged). */
static bool ring_move(struct ring *r, uint64_t size)
{
    struct pc__kv **s, **old = r->s;
    uint32_t old_size = r->size, slots = ring_slots(size);

    s = pc__alloc_array(sizeof *s * slots, 0);
    if (s == NULL)
        return false;
    memset(s, 0, sizeof *s * slots);
    ring_relayout(r, s, slots);
    r->cap = slots;
    pc__free_array(old, sizeof *old * old_size, 0);
    return true;
}

/* Grow to `want` usable slots or more; false on ENOMEM (ring unchanged).
 * The ring grows by an eighth at least (geometric, so a push's relayout
 * cost stays amortised O(1)), then to the end of the allocator's size
 * class; within an allocation a trim short of memory kept, only its usable
 * size grows (the entries stay where they are: a FIFO's order does not
 * depend on how far its head goes round). Not by
 * doubling: every slot of a ring is written as its head goes round, so a
 * ring's whole size is resident memory, and a doubling just past what the
 * queue holds would waste up to half of it. */
static __attribute__((noinline, cold)) bool ring_grow(struct ring *r,
                                                      uint64_t want)
{
    uint64_t size;

    if (want > SLOT_LIMIT)
        return false;
    size = (uint64_t)r->cap + r->cap / 8;
    if (size < want)
        size = want < 64 ? 64 : want;
    if (ring_slots(size) <= r->size) {
        r->cap = ring_slots(size);
        return true;
    }
    return ring_move(r, size);
}

/* Room for `live` entries; false on ENOMEM (ring unchanged). */
static bool ring_reserve(struct ring *r, uint32_t live)
{
    uint64_t want = ring_want(live);

    return want <= r->cap || ring_grow(r, want);
}

/* The most entries a ring of `size` slots has room for without growing
 * (the largest n with ring_want(n) <= size; 0 if none). */
static uint32_t ring_room(uint32_t size)
{
    uint64_t n = size < 8 ? 0 : (uint64_t)(size - 8) * 32 / 33;

    while (ring_want(n + 1) <= size)
        n++;
    while (n > 0 && ring_want(n) > size)
        n--;
    return (uint32_t)n;
}

/* Squeeze tombstones out, in place and in order (when they fill the
 * slack). */
static __attribute__((noinline, cold)) void ring_compact(struct ring *r)
{
    uint32_t k = 0;

    for (uint32_t i = 0; i < r->used; i++) {
        uint32_t from = r->head + i, to = r->head + k;
        struct pc__kv *e;

        if (from >= r->size)
            from -= r->size;
        if (to >= r->size)
            to -= r->size;
        e = r->s[from];
        if (e == NULL)
            continue;
        r->s[from] = NULL;
        r->s[to] = e;
        set_state(e, to, queue_of(e), mc_of(e));
        k++;
    }
    r->used = k;
}

/* Append e at the tail (a free slot). */
static inline __attribute__((always_inline)) void
ring_append(struct ring *r, struct pc__kv *e, unsigned q, unsigned mc)
{
    uint32_t j;

    PC__ASSERT(r->used < r->size);
    j = r->head + r->used;
    if (j >= r->size)
        j -= r->size;
    r->s[j] = e;
    set_state(e, j, q, mc);
    r->used++;
    r->live++;
}

/* ring_push when tombstones fill the slack: compact, then append. */
static __attribute__((noinline, cold)) void
ring_push_compacting(struct ring *r, struct pc__kv *e, unsigned q, unsigned mc)
{
    ring_compact(r);
    ring_append(r, e, q, mc);
}

/* The compaction is a tail call: the common push saves no registers for
 * it (it is inlined into insert's and victim's fast paths). */
static inline void ring_push(struct ring *r, struct pc__kv *e, unsigned q,
                             unsigned mc)
{
    if (__builtin_expect(r->used == r->size, 0)) {
        ring_push_compacting(r, e, q, mc);
        return;
    }
    ring_append(r, e, q, mc);
}

/* The oldest entry, dropping tombstones at the head; NULL if empty. */
static struct pc__kv *ring_peek(struct ring *r)
{
    while (r->used) {
        struct pc__kv *e = r->s[r->head];

        if (e != NULL)
            return e;
        if (++r->head == r->size)
            r->head = 0;
        r->used--;
    }
    return NULL;
}

static void ring_pop(struct ring *r) /* after ring_peek found one */
{
    r->s[r->head] = NULL;
    if (++r->head == r->size)
        r->head = 0;
    r->used--;
    r->live--;
}

/* ---- the shard's state ---- */

struct freq {
    struct ring small, main;
    struct pc__ghost ghost;
    uint32_t cap;
    uint32_t cs, cs_min, cs_max; /* SMALL's target and its bounds */
    uint32_t cs_frac;         /* cs / cap at the last resize (create: 1/20) */
    uint32_t filter_below;    /* admission filter on while cs < this */
    uint32_t unit;            /* evictions per ghost time unit */
    uint32_t marginal;        /* the recent window, in units */
    uint32_t t_small, t_main; /* ghost clocks: evictions / unit */
    uint32_t left_small, left_main; /* evictions until they tick */
    /* reserve(n) has nothing to do for n <= quiet while SMALL holds fewer
     * entries than small_quiet (note_room) */
    uint32_t quiet, small_quiet;
    const struct pc__hash_seed *seed; /* the cache's (pc__kv_hash) */
} __attribute__((aligned(64)));

#define CS_FRAC_BITS 24 /* cs_frac's fixed point (cs <= cap / 2 < 2^31) */

/* One eviction more on a ghost clock, whose time is evictions / unit;
 * returns the time. */
static uint32_t ghost_tick(uint32_t *t, uint32_t *left, uint32_t unit)
{
    if (--*left == 0) {
        *left = unit;
        ++*t;
    }
    return *t;
}

/* The parameters that follow from the share (`cap`): SMALL's bounds, the
 * filter's threshold, the ghost's clock unit and recent window, and the
 * ghost's largest size. SMALL's target is the caller's. */
static void set_share(struct freq *f, size_t share)
{
    uint32_t cap = share > SLOT_LIMIT / 2 ? SLOT_LIMIT / 2 : (uint32_t)share;

    if (cap == 0)
        cap = 1;
    f->cap = cap;
    f->cs_min = cap / 100 ? cap / 100 : 1;
    f->cs_max = cap / 2 > f->cs_min ? cap / 2 : f->cs_min;
    f->unit = cap / 64 ? cap / 64 : 1;
    f->marginal = cap / 10 / f->unit;
    if (f->marginal < 1)
        f->marginal = 1;
    f->filter_below = cap * 3 / 100;
    f->ghost.nb_max = (cap + PC__GHOST_GB - 1) / PC__GHOST_GB;
}

static void *freq_create(size_t share, const struct pc__hash_seed *seed)
{
    struct freq *f = pc__alloc_aligned(sizeof *f, 64);

    if (f == NULL)
        return NULL;
    memset(f, 0, sizeof *f);
    set_share(f, share);
    f->seed = seed;
    f->cs = f->cap / 20 > f->cs_min ? f->cap / 20 : f->cs_min;
    f->cs_frac = (1u << CS_FRAC_BITS) / 20;
    f->left_small = f->left_main = f->unit;
    if (!pc__ghost_init(&f->ghost)) {
        pc__free_aligned(f, sizeof *f, 64);
        return NULL;
    }
    return f;
}

static void freq_destroy(void *st)
{
    struct freq *f = st;

    if (f == NULL)
        return;
    ring_free(&f->small);
    ring_free(&f->main);
    pc__ghost_free(&f->ghost);
    pc__free_aligned(f, sizeof *f, 64);
}

/* Below which sizes freq_reserve has nothing to do (it is called for
 * every put, and usually finds room), from the rings' and the ghost's
 * sizes: recomputed whenever it has grown any of them. */
static void note_room(struct freq *f)
{
    uint32_t q = ring_room(f->main.cap);

    if (f->ghost.nb < f->ghost.nb_max &&
        (uint64_t)f->ghost.nb * PC__GHOST_GB < q)
        q = f->ghost.nb * PC__GHOST_GB;
    f->quiet = q < ENTRY_LIMIT ? q : ENTRY_LIMIT;
    f->small_quiet = ring_room(f->small.cap);
}

/* freq_reserve when it may have to grow something. */
static __attribute__((noinline)) bool reserve_grow(struct freq *f, size_t n)
{
    bool ok;

    /* MAIN may come to hold every entry of the shard (n, this put's
     * included); SMALL gains at most this put's entry (evictions only take
     * from it, promotions go to MAIN). */
    if (n > ENTRY_LIMIT)
        return false;
    /* The ghost remembers about as many keys as the shard holds: sized by
     * the share from the start, a cache bounded by bytes below its
     * capacity would pay for words it never fills. It grows by an eighth
     * at least, as the rings do: jemalloc's size classes are that coarse
     * anyway, but an allocator whose sizes are exact (the sanitizer
     * builds' malloc) had it rebuilt, memset and all, every eight puts of
     * a filling shard, a quadratic fill (131k entries: 100 s under ASan,
     * against 1 s for CLOCK). Grown only once both rings have room: a
     * rebuild forgets every word, and a reserve that fails changes
     * nothing the policy holds (shard.h; a ring grown is only room). */
    ok = ring_reserve(&f->main, (uint32_t)n) &&
         ring_reserve(&f->small, f->small.live + 1);
    if (ok && n > (uint64_t)f->ghost.nb * PC__GHOST_GB &&
        f->ghost.nb < f->ghost.nb_max) {
        uint64_t least = (uint64_t)f->ghost.nb * PC__GHOST_GB * 9 / 8 + 1;
        uint32_t nb = pc__ghost_want(n > least ? n : least, f->ghost.nb_max);

        if (nb > f->ghost.nb)
            pc__ghost_rebuild(&f->ghost, nb);
    }
    note_room(f);
    return ok;
}

static bool freq_reserve(void *st, size_t n)
{
    struct freq *f = st;

    return (n <= f->quiet && f->small.live < f->small_quiet) ||
           reserve_grow(f, n);
}

/* The share is now `share` (pc_set_capacity). The parameters follow it,
 * and SMALL's target keeps the fraction of the share it had (what the
 * adaptation learned; kept as it was when the old share was too small to
 * say, under 100 entries, and rounded, so repeated small changes do not
 * wear it down). A ghost larger than the new share's worth is rebuilt at
 * that size, forgetting its words (its buckets cannot be re-addressed
 * without the keys' hashes): every shrink of a full shard does that. A
 * ghost kept has its words' times read in the new unit, a hint off for
 * a while (a word may count as a recent miss or not wrongly until
 * evictions replace it); a smaller one grows with the entries, as
 * before (reserve). */
static void freq_resize(void *st, size_t share)
{
    struct freq *f = st;
    uint32_t was_cap = f->cap;
    uint64_t cs;

    if (was_cap >= 100)
        f->cs_frac = (uint32_t)(((uint64_t)f->cs << CS_FRAC_BITS) / was_cap);
    set_share(f, share);
    cs = ((uint64_t)f->cs_frac * f->cap + (1u << (CS_FRAC_BITS - 1))) >>
         CS_FRAC_BITS;
    f->cs = cs < f->cs_min   ? f->cs_min
            : cs > f->cs_max ? f->cs_max
                             : (uint32_t)cs;
    if (f->left_small > f->unit)
        f->left_small = f->unit;
    if (f->left_main > f->unit)
        f->left_main = f->unit;
    if (f->ghost.nb > f->ghost.nb_max)
        pc__ghost_rebuild(&f->ghost,
                          pc__ghost_want((uint64_t)f->small.live + f->main.live,
                                         f->ghost.nb_max));
    note_room(f);
}

/* Move ring r to storage of about `live` entries' worth (ring_want, to the
 * end of its size class) if its usable size is at least four times that.
 * If memory is short the allocation stays and only the usable size drops,
 * so that later growths and trims decide as they would have; the next
 * trim that has nothing else to do moves the allocation to the usable
 * size. */
static void ring_trim(struct ring *r, uint32_t live)
{
    uint64_t want = ring_want(live);

    if (r->cap >= 4 * want) {
        if (!ring_move(r, want))
            r->cap = ring_slots(want);
    } else if (r->size > r->cap) {
        ring_move(r, r->cap); /* (kept if memory is short) */
    }
}

/* After a limit was lowered: rings and ghost four times larger than n
 * entries need (MAIN may come to hold them all, SMALL its target for a
 * shard of n) move to smaller storage, the ghost forgetting its words. */
static void freq_trim(void *st, size_t n)
{
    struct freq *f = st;
    uint32_t held = f->small.live + f->main.live, nb;
    uint64_t small;

    if (n < held)
        n = held;
    if (n > ENTRY_LIMIT)
        n = ENTRY_LIMIT;
    /* SMALL's target, scaled as small_at_target scales it for a shard
     * holding n entries. */
    small = n >= f->cap ? f->cs : (uint64_t)f->cs * n / f->cap;
    ring_trim(&f->main, (uint32_t)n);
    ring_trim(&f->small,
              f->small.live > small ? f->small.live : (uint32_t)small);
    nb = pc__ghost_want(n, f->ghost.nb_max);
    /* Decided on the buckets in use, as a ghost whose every allocation
     * succeeded decides, so that the words it forgets are the same; an
     * allocation left larger by a shrink short of memory moves to their
     * size, words kept. */
    if (f->ghost.nb >= 4 * (uint64_t)nb)
        pc__ghost_rebuild(&f->ghost, nb);
    else if (f->ghost.nb_alloc > f->ghost.nb)
        pc__ghost_move(&f->ghost);
    note_room(f);
}

/* How far ahead of a queue's head evictions (SMALL's) and the hand's steps
 * (MAIN's) prefetch entries, as CLOCK's sweep does: a victim's use count
 * and hash are a cache miss each time, entries being scattered over the
 * heap while the ring is sequential. Always inlined: GCC (12, -O3) finds
 * a helper that only loads and prefetches free of side effects and deletes
 * a call to it that it does not inline, prefetch and all (so an earlier
 * measurement of MAIN's hand with it measured nothing). */
#define QUEUE_PREFETCH 4

static inline __attribute__((always_inline)) void
prefetch_ahead(const struct ring *r)
{
    uint32_t j;
    struct pc__kv *e;

    if (r->used <= QUEUE_PREFETCH)
        return;
    j = r->head + QUEUE_PREFETCH;
    if (j >= r->size)
        j -= r->size;
    e = r->s[j];
    if (e != NULL)
        __builtin_prefetch(e, 1);
}

/* MAIN's hand (MAIN not empty): spend units until the entry under the hand
 * has none (or has expired), and return it, still in MAIN. */
static struct pc__kv *main_hand(struct freq *f, struct pc__now now)
{
    uint64_t steps = 0, limit = 4ull * f->main.live + 4;

    for (;;) {
        struct pc__kv *e = ring_peek(&f->main);
        uint8_t r = ref_get(e);

        if (r == 0 || ++steps >= limit || pc__kv_expired(e, now))
            return e;
        prefetch_ahead(&f->main);
        ring_pop(&f->main); /* second chance: one unit, to the tail */
        ref_set(e, (uint8_t)(r - 1));
        ring_push(&f->main, e, Q_MAIN, mc_of(e));
    }
}

/* MAIN's victim leaves, remembered in the ghost as MAIN's. The entry
 * QUEUE_PREFETCH ahead is prefetched here too, not only as the hand
 * passes entries: a hand that takes its head at once passes none. */
static struct pc__kv *evict_main(struct freq *f, struct pc__now now)
{
    struct pc__kv *e = main_hand(f, now);

    prefetch_ahead(&f->main);
    ring_pop(&f->main);
    pc__ghost_put(&f->ghost, pc__kv_hash(e, f->seed), PC__GHOST_TAG_MAIN,
                  ghost_tick(&f->t_main, &f->left_main, f->unit), mc_of(e));
    return e;
}

/* e's hash, from its header when plain (small_victim's). */
static inline __attribute__((always_inline)) uint32_t
small_hash(const struct freq *f, const struct pc__kv *e, bool plain)
{
    return plain ? e->w.live.hx : pc__kv_hash(e, f->seed);
}

/* SMALL's head e, which is its victim (not read twice on probation, or
 * expired: evict_small's test), leaves: remembered in the ghost as
 * SMALL's. plain: e's header holds its hash (no near expiry time:
 * freq_victim's fast path checked), so that this path calls nothing
 * (pc__kv_hash hashes the key again, out of line). The ghost bucket of
 * the next victim is warmed by freq_upcoming, after the put's insert. */
static inline __attribute__((always_inline)) struct pc__kv *
small_victim(struct freq *f, struct pc__kv *e, bool plain)
{
    prefetch_ahead(&f->small);
    ring_pop(&f->small);
    pc__ghost_put(&f->ghost, small_hash(f, e, plain), 0,
                  ghost_tick(&f->t_small, &f->left_small, f->unit), mc_of(e));
    return e;
}

/* Promote entries read twice on probation; evict the first that was not.
 * NULL if promotions alone emptied SMALL. */
static struct pc__kv *evict_small(struct freq *f, struct pc__now now)
{
    struct pc__kv *e;

    while ((e = ring_peek(&f->small)) != NULL) {
        if (ref_get(e) >= PROMOTE && !pc__kv_expired(e, now)) {
            prefetch_ahead(&f->small);
            ring_pop(&f->small);
            ref_set(e, 0);
            ring_push(&f->main, e, Q_MAIN, mc_of(e));
            continue;
        }
        return small_victim(f, e, false);
    }
    return NULL;
}

/* Whether SMALL is at its target once it holds `extra` entries more
 * (and the shard with it): cs, or, in a shard that holds less than half
 * its share, cs of every cap entries it holds. A shard that a byte bound
 * or a lowered capacity keeps far under its share, if SMALL had to reach
 * cs first, would take its victims from MAIN, the entries that proved
 * reuse, while one-time keys waited in SMALL (Zipf at 0.5% of the share:
 * hit ratio 0.37 against CLOCK's 0.43, and 0.53 at a capacity of that
 * size). Above half its share, as shards are in a full cache, the
 * target stays cs, where scaling there too cost every eviction two
 * multiplications for a difference of a few entries. */
static bool small_at_target(const struct freq *f, uint32_t extra)
{
    uint64_t small = (uint64_t)f->small.live + extra;
    uint64_t held;

    /* At cs, SMALL is at the target either way (the scaled target, cs
     * of every cap entries held, is at most cs): the full cache's steady
     * state decides on one compare. */
    if (__builtin_expect(small >= f->cs, 1))
        return true;
    held = small + f->main.live;
    if (held >= f->cap / 2)
        return false;
    return small * f->cap >= (uint64_t)f->cs * held;
}

/* freq_victim's general case: SMALL (promoting what was read twice)
 * if it is at its target, or if MAIN is empty; else MAIN. evict_small
 * returns NULL when it promoted all of SMALL to MAIN (a shrink, or a
 * shard holding few entries): MAIN has them now. */
static __attribute__((noinline)) struct pc__kv *victim_any(struct freq *f,
                                                           struct pc__now now)
{
    struct pc__kv *v = NULL;

    if ((f->small.live > 0 && small_at_target(f, 0)) || f->main.live == 0)
        v = evict_small(f, now);
    if (v == NULL)
        v = evict_main(f, now);
    PC__ASSERT(v != NULL);
    set_state(v, 0, Q_NONE, mc_of(v));
    return v;
}

/* The common case inline (SMALL at its target, its head the victim, its
 * header holding its hash: a full cache's steady state); the rest in
 * victim_any, a tail call, so that the fast path saves no registers. The
 * same choice either way. */
static struct pc__kv *freq_victim(void *st, struct pc__now now)
{
    struct freq *f = st;
    struct pc__kv *v = f->small.used != 0 ? f->small.s[f->small.head] : NULL;

    if (v == NULL || ref_get(v) >= PROMOTE || !small_at_target(f, 0) ||
        pc__kv_near(v))
        return victim_any(f, now);
    small_victim(f, v, true);
    set_state(v, 0, Q_NONE, mc_of(v));
    return v;
}

/* The head of the queue where the next eviction starts (the shard
 * prefetches its index slot): its header was prefetched (prefetch_ahead)
 * evictions ago, SMALL's by small_victim, MAIN's by evict_main and the
 * hand. Asked once the new key is placed (shard.h), so the queue is
 * known: SMALL below its target after a ghost hit went to MAIN makes the
 * next victim MAIN's. Its ghost bucket is warmed here too, in either
 * queue (SMALL's used to be warmed by small_victim, which loaded the new
 * head again: 12 instructions more per eviction). Asked before insert,
 * as it was, it guessed SMALL for those and the next eviction missed on
 * MAIN's index slot and ghost bucket. Asked after, callgrind counts 927.3
 * instructions for a miss and an evicting put, 935.3 before (clock 831.2,
 * 840.9: the shard's evicting path holds fewer values across the call);
 * uniform keys, 1 thread, against CLOCK in the same process (medians of
 * 3 processes, alternated with the code before, twice): cache-aside
 * 0.89 -> 0.92 and 0.88 -> 0.91, puts 0.89 -> 0.90 and 0.88 -> 0.90
 * (Zipf: 0.91 -> 0.95, 0.91 -> 0.90). Small, but each comparison moved
 * the same way on uniform keys.
 * MAIN's head used to be left out, its header thought cold:
 * evict_main did not prefetch ahead when the hand took its head at once,
 * as it does where ghost hits are not reuse (uniform keys), and every
 * eviction from MAIN missed on the victim's header and its index slot.
 * With both: uniform cache-aside 1 thread 0.81 -> 0.92 of CLOCK, puts
 * 0.86 -> 1.00 (A/B, 7 interleaved runs; Zipf 0.99 -> 1.03, 0.92 ->
 * 0.98). Also warming the bucket of the entry behind the head, a whole
 * put before its eviction, measured 0.97-1.11x with the A/B run in both
 * orders (the frequency policy can run several percent faster as
 * `--lib-b` with the same code), for 19 instructions more: not kept
 * (README, "What the frequency policy's ghost costs"). */
static const struct pc__kv *freq_upcoming(const void *st)
{
    const struct freq *f = st;
    const struct ring *r = &f->small;
    const struct pc__kv *e;
    uint32_t fp;

    if (!small_at_target(f, 0) || r->used == 0)
        r = &f->main;
    e = r->used != 0 ? r->s[r->head] : NULL; /* (NULL: a tombstone) */
    if (e != NULL && !pc__kv_near(e))
        __builtin_prefetch(pc__ghost_bucket(&f->ghost, e->w.live.hx, &fp), 1);
    return e;
}

/* Before the shard's lock: warm the ghost bucket insert will probe. The
 * ghost may grow or shrink meanwhile: its two fields are read atomically, but
 * may come from different sizes, so the address is computed as an integer (a
 * prefetch never faults, whatever it points at). */
static void freq_prefetch(const void *st, uint32_t h)
{
    const struct freq *f = st;
    uint32_t fp;
    uintptr_t b = (uintptr_t)pc__ghost_words(&f->ghost) +
                  pc__ghost_bucket_of(h, pc__ghost_nb(&f->ghost), &fp) *
                      PC__GHOST_GB * sizeof(uint32_t);

    __builtin_prefetch((const void *)b, 1);
}

#define TO_MAIN 8u /* above a miss count (1..7): the key goes to MAIN */

/* Where a key the ghost remembered (its word w) goes, and with what miss
 * count: the count, plus TO_MAIN if MAIN; the split moves if the ghost hit
 * is recent. */
static unsigned returning(struct freq *f, uint32_t w)
{
    bool from_main = (w & PC__GHOST_TAG_MAIN) != 0;
    uint32_t now = from_main ? f->t_main : f->t_small;
    uint32_t age = (now - (w >> 23)) & 255u;
    unsigned was = (w >> 20) & 7u, mc = was < 7 ? was + 1 : 7;

    if (age <= f->marginal) { /* a recent ghost hit: move the split */
        if (from_main) {
            if (f->cs > f->cs_min)
                f->cs--;
        } else if (f->cs < f->cs_max) {
            f->cs++;
        }
    }
    /* Keys MAIN let go go back to SMALL: their ghost words only measure
     * MAIN. The filter, in the frequency regime only (SMALL kept tiny by
     * the adaptation): a returning key enters MAIN only if it has missed
     * more often lately than MAIN's next victim. Finding that victim moves
     * the hand as an eviction would (spending the units of the entries it
     * passes) but evicts nothing; now 0: no entry counts as expired. The
     * measured hit ratios include this. */
    if (from_main || (f->cs < f->filter_below && f->main.live &&
                      mc <= mc_of(main_hand(f, (struct pc__now){0, 0}))))
        return mc;
    return mc | TO_MAIN;
}

/* A new key, with what returning decided (1 for a key the ghost does not
 * hold), goes to its queue. */
static inline __attribute__((always_inline)) void
place(struct freq *f, struct pc__kv *kv, unsigned how, bool evicted)
{
    if (!evicted && f->small.live >= f->cs)
        how |= TO_MAIN; /* free room, SMALL at target: no probation */
    ref_set(kv, 0);
    if (how & TO_MAIN)
        ring_push(&f->main, kv, Q_MAIN, how & 7u);
    else
        ring_push(&f->small, kv, Q_SMALL, how);
}

/* freq_insert for a key whose ghost word is bucket b's word i. Out of
 * line, a tail call: a put of a key the ghost does not hold, the common
 * case, saves no registers for it. */
static __attribute__((noinline)) void insert_returning(struct freq *f,
                                                       struct pc__kv *kv,
                                                       uint32_t *b, int i,
                                                       bool evicted)
{
    place(f, kv, returning(f, pc__ghost_take_at(b, i)), evicted);
}

static void freq_insert(void *st, struct pc__kv *kv, uint32_t h, bool evicted)
{
    struct freq *f = st;
    uint32_t fp, *b = pc__ghost_bucket(&f->ghost, h, &fp);
    int i = pc__ghost_find(b, fp);

    if (i >= 0) {
        insert_returning(f, kv, b, i, evicted);
        return;
    }
    place(f, kv, 1, evicted);
}

static void freq_keep(void *st, struct pc__kv *kv)
{
    struct freq *f = st;

    /* victim() remembered it in the ghost: it is not gone after all.
     * (Taken by fingerprint, newest first: should later victims of the
     * same claim share its bucket and 20-bit fingerprint, or push it out
     * of its 8 words, a ghost word is lost or stays, a hint either way.)
     * It returns to MAIN (a use), into room that reserve kept for every
     * entry of the shard. */
    pc__ghost_take(&f->ghost, pc__kv_hash(kv, f->seed));
    ring_push(&f->main, kv, Q_MAIN, mc_of(kv));
}

static struct ring *ring_of(struct freq *f, const struct pc__kv *e)
{
    return queue_of(e) == Q_MAIN ? &f->main : &f->small;
}

static void freq_replace(void *st, struct pc__kv *old, struct pc__kv *kv)
{
    struct freq *f = st;
    struct ring *r = ring_of(f, old);
    uint8_t u = ref_get(old);

    ref_set(kv, u < REF_MAX ? (uint8_t)(u + 1) : REF_MAX); /* a use */
    kv->w.live.slot = old->w.live.slot; /* slot, queue, miss count */
    r->s[slot_of(old)] = kv;
}

static void freq_remove(void *st, struct pc__kv *kv)
{
    struct freq *f = st;
    struct ring *r = ring_of(f, kv);

    PC__ASSERT(r->s[slot_of(kv)] == kv);
    r->s[slot_of(kv)] = NULL;
    r->live--;
}

static void ring_each(struct ring *r, void (*fn)(void *, struct pc__kv *),
                      void *arg)
{
    for (uint32_t i = 0; i < r->used; i++) {
        uint32_t j = r->head + i;

        if (j >= r->size)
            j -= r->size;
        if (r->s[j] != NULL)
            fn(arg, r->s[j]);
    }
}

static void freq_each(void *st, void (*fn)(void *arg, struct pc__kv *kv),
                      void *arg)
{
    struct freq *f = st;

    ring_each(&f->small, fn, arg);
    ring_each(&f->main, fn, arg);
}

static void freq_reset(void *st)
{
    struct freq *f = st;

    if (f->small.s != NULL) /* (a ring never grown has no array) */
        memset(f->small.s, 0, sizeof *f->small.s * f->small.size);
    if (f->main.s != NULL)
        memset(f->main.s, 0, sizeof *f->main.s * f->main.size);
    f->small.head = f->small.used = f->small.live = 0;
    f->main.head = f->main.used = f->main.live = 0;
}

const struct pc__shard_policy pc__frequency_policy = {
    .name = "frequency",
    .max_ref = REF_MAX,
    .max_share = SLOT_LIMIT / 2,
    .create = freq_create,
    .destroy = freq_destroy,
    .reserve = freq_reserve,
    .resize = freq_resize,
    .trim = freq_trim,
    .prefetch = freq_prefetch,
    .victim = freq_victim,
    .upcoming = freq_upcoming,
    .insert = freq_insert,
    .keep = freq_keep,
    .replace = freq_replace,
    .remove = freq_remove,
    .each = freq_each,
    .reset = freq_reset,
};
