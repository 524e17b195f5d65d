/*
 * clock: the CLOCK policy, a sharded approximation of LRU with wait-free
 * reads.
 *
 * Algorithm. The key space is split into shards by the high half of the
 * key's hash. Each shard has an index (index.h), a writer lock, and a ring
 * of its entries with a clock hand. A read that finds its key sets the
 * entry's reference bit, if it is clear. When a new key arrives at a full
 * shard the hand sweeps the ring: an entry whose bit is set has it cleared
 * and is passed over ("second chance"); the first entry found with a clear
 * bit is evicted and the new entry takes its ring slot, just behind the
 * hand, so it gets a full revolution to be read before it can be evicted.
 * Entries read at least once per revolution therefore stay; entries not read
 * since the hand last passed go, oldest position first, which is why CLOCK
 * tracks LRU closely on real traces at a fraction of LRU's cost: a hit
 * writes at most one byte, once per revolution, instead of relinking a list.
 * If readers keep setting bits faster than the hand clears them, the sweep
 * stops after two revolutions and evicts where it stands, bounding a put.
 *
 * Sharding. Shards are independent CLOCKs over disjoint key subsets. Any
 * count works (a multiply maps the hash's high half onto [0, n)); create
 * picks one from the CPU count (4 per CPU, at most 256), never letting a
 * shard hold fewer than CLOCK_MIN_SHARD entries (small shards fill unevenly
 * and their hit ratio drifts from a single CLOCK's), then nudges it so each
 * shard's table is as full as its load limit allows: the index costs 64
 * bytes per power-of-two chunk, so a count that just crosses a power of two
 * would double it.
 *
 * Concurrency argument.
 *  - Readers (pc_get) enter an epoch section, look the key up in the index
 *    (wait-free: entries never move inside a table), set the reference bit
 *    with a relaxed byte store if it was clear, copy the value out, and
 *    leave. They take no lock, perform no atomic read-modify-write,
 *    allocate nothing, and write no shared line except that one bit.
 *  - Writers hold the shard lock for every change to the shard's index,
 *    ring, hand and count. An entry is fully written before the index
 *    publishes it and never changed afterwards except for its reference
 *    bit (entry.h), so readers never see a torn value.
 *  - A removed, replaced or evicted entry is retired to the shard's
 *    reclaimer (retire.h), which frees it only after every reader that
 *    might hold it has left its epoch section; old index tables go the
 *    same way.
 *  - The ring is writer-only memory, so it can be reallocated under the lock.
 *  - `count` is written under the lock and read with relaxed loads by
 *    pc_len; each shard's count never exceeds its capacity, and the shard
 *    capacities add up to the cache's, so pc_len never exceeds capacity.
 */
#include <stddef.h>
#include <string.h>
#include <unistd.h>

#include "alloc.h"
#include "core.h"
#include "index.h"
#include "policy.h"

#define CLOCK_MIN_SHARD 1024u
#define CLOCK_MAX_AUTO_SHARDS 256u
#define CLOCK_PRESIZE_MAX (1ul << 16) /* per shard; larger ones grow */
#define SLOT_NONE UINT32_MAX

/* A free ring slot holds (next free index << 1) | 1 instead of a pointer. */
#define SLOT_IS_FREE(p) (((uintptr_t)(p)) & 1u)
#define SLOT_FREE_LINK(next) ((struct pc__kv *)(((uintptr_t)(next) << 1) | 1u))
#define SLOT_FREE_NEXT(p) ((uint32_t)(((uintptr_t)(p)) >> 1))

/* Readers touch only `ix` (its table pointer), which writers change only
 * when a table is replaced; it gets the first
 * cache line to itself, and everything writers dirty on every put (lock,
 * ring, hand, count, counters) starts on the next one, so a put in a shard
 * does not evict its index handle from the readers' caches. */
struct clock_shard {
    struct pc__index ix;
    struct pc__writer w __attribute__((aligned(64)));
    struct pc__kv **ring;
    uint32_t ring_cap;  /* slots allocated */
    uint32_t used;      /* slots ever handed out (high-water mark) */
    uint32_t hand;      /* next slot the clock hand examines */
    uint32_t free_head; /* free-slot list through the ring, or SLOT_NONE */
    uint32_t cap;       /* entries this shard may hold */
    uint32_t count;     /* entries it holds; relaxed reads by pc_len */
} __attribute__((aligned(64)));
_Static_assert(offsetof(struct clock_shard, w) == 64,
               "a shard's index handle has its own cache line");

struct clock_cache {
    struct pc_cache base;
    uint32_t nshards;
    struct clock_shard *shards;
};

static inline struct clock_cache *clock_of(pc_cache *c)
{
    return PC__CONTAINER_OF(c, struct clock_cache, base);
}

const char *pc__policy_name(void)
{
    return "clock";
}

static unsigned long pow2_ceil(unsigned long v)
{
    unsigned long p = 1;

    while (p < v)
        p <<= 1;
    return p;
}

/* Index chunks needed by n shards sharing `cap` (a shard's table holds its
 * capacity plus the one entry a put inserts before it evicts). */
static unsigned long table_chunks(size_t cap, unsigned long n)
{
    unsigned long per = (cap + n - 1) / n;

    return n * pc__index_chunks(per + 1);
}

static uint32_t choose_shards(size_t cap, unsigned int requested)
{
    unsigned long cpus, target, best, n;

    if (requested != 0)
        return (uint32_t)(requested < cap ? requested : cap);
    cpus = (unsigned long)sysconf(_SC_NPROCESSORS_ONLN);
    if (cpus < 1)
        cpus = 1;
    target = pow2_ceil(4 * cpus);
    if (target > CLOCK_MAX_AUTO_SHARDS)
        target = CLOCK_MAX_AUTO_SHARDS;
    while (target > 1 && cap / target < CLOCK_MIN_SHARD)
        target >>= 1;
    if (target == 1)
        return 1;
    best = target;
    for (n = target + 1; n < 2 * target && cap / n >= CLOCK_MIN_SHARD; n++)
        if (table_chunks(cap, n) < table_chunks(cap, best))
            best = n;
    return (uint32_t)best;
}

static inline struct clock_shard *shard_of(struct clock_cache *cc, uint64_t h)
{
    return &cc->shards[((h >> 32) * cc->nshards) >> 32];
}

static void kv_free(struct pc__kv *kv)
{
    pc__free(kv, pc__kv_size(kv->klen, kv->vlen));
}

static struct pc__kv *kv_new(const void *key, size_t klen, const void *val,
                             size_t vlen)
{
    struct pc__kv *kv = pc__alloc(pc__kv_size(klen, vlen));

    if (kv != NULL)
        pc__kv_fill(kv, key, klen, val, vlen);
    return kv;
}

/* Make sure a never-used slot exists if the free list is empty. */
static bool shard_reserve_slot(struct clock_shard *s)
{
    struct pc__kv **ring;
    uint32_t ncap;

    if (s->free_head != SLOT_NONE || s->used < s->ring_cap)
        return true;
    ncap = s->ring_cap ? s->ring_cap * 2 : 64;
    if (ncap > s->cap)
        ncap = s->cap;
    ring = pc__alloc(sizeof *ring * ncap);
    if (ring == NULL)
        return false;
    if (s->used)
        memcpy(ring, s->ring, sizeof *ring * s->used);
    pc__free(s->ring, sizeof *ring * s->ring_cap);
    s->ring = ring;
    s->ring_cap = ncap;
    return true;
}

static uint32_t shard_take_slot(struct clock_shard *s)
{
    uint32_t slot = s->free_head;

    if (slot != SLOT_NONE)
        s->free_head = SLOT_FREE_NEXT(s->ring[slot]);
    else
        slot = s->used++;
    return slot;
}

static void shard_release_slot(struct clock_shard *s, uint32_t slot)
{
    s->ring[slot] = SLOT_FREE_LINK(s->free_head);
    s->free_head = slot;
}

/* How far ahead of the hand the sweep prefetches entries. The hand reads
 * each entry's reference bit, a cache miss per entry (entries are scattered
 * over the heap; the ring itself is sequential and prefetched by the CPU).
 * Prefetching a few entries ahead overlaps those misses within a sweep, and
 * the last prefetches of one eviction warm the entries the next one on this
 * shard will examine. */
#define CLOCK_SWEEP_PREFETCH 4

/* The clock hand: the entry to evict. The shard is full (count == cap >= 1). */
static struct pc__kv *shard_pick_victim(struct clock_shard *s)
{
    uint64_t steps, limit = 2ull * s->used + 1;

    for (steps = 0;; steps++) {
        struct pc__kv *kv, *next;
        uint32_t ahead;

        if (s->hand >= s->used)
            s->hand = 0;
        ahead = s->hand + CLOCK_SWEEP_PREFETCH;
        if (ahead >= s->used)
            ahead %= s->used;
        next = s->ring[ahead];
        if (next != NULL && !SLOT_IS_FREE(next))
            __builtin_prefetch(&next->ref, 1);
        kv = s->ring[s->hand++];
        if (SLOT_IS_FREE(kv))
            continue;
        if (steps < limit && __atomic_load_n(&kv->ref, __ATOMIC_RELAXED)) {
            __atomic_store_n(&kv->ref, 0, __ATOMIC_RELAXED);
            continue;
        }
        PC__ASSERT(s->ring[kv->w.live.slot] == kv);
        return kv;
    }
}

static void shard_clear_locked(struct clock_shard *s)
{
    for (uint32_t i = 0; i < s->used; i++) {
        struct pc__kv *kv = s->ring[i];

        if (SLOT_IS_FREE(kv))
            continue;
        pc__index_erase(&s->ix, kv);
        pc__reclaimer_retire(s->w.rc, kv);
    }
    s->used = 0;
    s->hand = 0;
    s->free_head = SLOT_NONE;
    __atomic_store_n(&s->count, 0, __ATOMIC_RELAXED);
}

/* Free the live entries, rings and index tables of the first n shards,
 * after pc__core_shutdown (deferred tables before live ones). */
static void shards_free(struct clock_cache *cc, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++) {
        struct clock_shard *s = &cc->shards[i];

        for (uint32_t j = 0; j < s->used; j++)
            if (!SLOT_IS_FREE(s->ring[j]))
                kv_free(s->ring[j]);
        pc__free(s->ring, sizeof *s->ring * s->ring_cap);
        pc__index_destroy(&s->ix);
    }
}

pc_status pc__policy_create(const pc_options *opts, pc_cache **out)
{
    struct clock_cache *cc;
    uint32_t n, i;

    _Static_assert(PC_CAPACITY_MAX <=
                       (size_t)UINT32_MAX * CLOCK_MAX_AUTO_SHARDS,
                   "every capacity fits 256 automatic shards");
    n = choose_shards(opts->capacity, opts->shards);
    if (opts->capacity / n > UINT32_MAX - 1)
        return PC_EINVAL;
    cc = pc__alloc(sizeof *cc);
    if (cc == NULL)
        return PC_ENOMEM;
    memset(cc, 0, sizeof *cc);
    cc->nshards = n;
    if (!pc__core_init(&cc->base, opts, n)) {
        pc__free(cc, sizeof *cc);
        return PC_ENOMEM;
    }
    cc->shards = pc__alloc_aligned(sizeof *cc->shards * n, 64);
    if (cc->shards == NULL)
        goto fail;
    memset(cc->shards, 0, sizeof *cc->shards * n);
    for (i = 0; i < n; i++) {
        struct clock_shard *s = &cc->shards[i];
        size_t cap = opts->capacity / n + (i < opts->capacity % n);

        s->cap = (uint32_t)cap;
        s->free_head = SLOT_NONE;
        if (!pc__index_init(&s->ix,
                            cap < CLOCK_PRESIZE_MAX ? cap : CLOCK_PRESIZE_MAX))
            break;
        if (!pc__core_add_writer(&cc->base, &s->w, 0)) {
            pc__index_destroy(&s->ix);
            break;
        }
    }
    if (i < n) {
        pc__core_shutdown(&cc->base);
        shards_free(cc, i);
        goto fail;
    }
    *out = &cc->base;
    return PC_OK;

fail:
    pc__free_aligned(cc->shards, sizeof *cc->shards * n, 64);
    pc__core_fini(&cc->base);
    pc__free(cc, sizeof *cc);
    return PC_ENOMEM;
}

void pc__policy_destroy(pc_cache *c)
{
    struct clock_cache *cc = clock_of(c);

    pc__core_shutdown(c);
    shards_free(cc, cc->nshards);
    pc__free_aligned(cc->shards, sizeof *cc->shards * cc->nshards, 64);
    pc__core_fini(c);
    pc__free(cc, sizeof *cc);
}

/* Inside the caller's read section: find key, count the lookup, and mark
 * the use (reference bit). */
static inline struct pc__kv *clock_lookup(pc_cache *c, struct pc__record *t,
                                          uint64_t h, const void *key,
                                          size_t klen)
{
    struct pc__kv *kv =
        pc__index_get(&shard_of(clock_of(c), h)->ix, h, key, klen);

    if (kv != NULL) {
        pc__kv_touch(kv);
        PC__COUNTER_INC(t->stats.hits);
    } else {
        PC__COUNTER_INC(t->stats.misses);
    }
    return kv;
}

pc_status pc__policy_get(pc_cache *c, const void *key, size_t klen, void *buf,
                         size_t bufcap, size_t *vlen)
{
    return pc__core_get(c, clock_lookup, key, klen, buf, bufcap, vlen);
}

pc_status pc__policy_pin(pc_cache *c, const void *key, size_t klen, pc_pin *pin)
{
    return pc__core_pin(c, clock_lookup, key, klen, pin);
}

pc_status pc__policy_put(pc_cache *c, const void *key, size_t klen,
                         const void *val, size_t vlen)
{
    uint64_t h = pc__hash_key(&c->seed, key, klen);
    struct clock_shard *s = shard_of(clock_of(c), h);
    struct pc__kv *kv = kv_new(key, klen, val, vlen), *old;

    if (kv == NULL)
        return PC_ENOMEM;
    pc__writer_lock(&s->w);
    /* Reserve a ring slot first: it changes nothing visible, and with the
     * index's own growth it is the only step of a put that can fail. */
    if ((s->count < s->cap && !shard_reserve_slot(s)) ||
        !pc__index_put(&s->ix, h, kv, &old, s->w.rc)) {
        pc__writer_unlock(c, &s->w);
        kv_free(kv);
        return PC_ENOMEM;
    }
    if (old != NULL) {
        /* Replacement: same slot, counts as a use, evicts nothing. */
        kv->w.live.slot = old->w.live.slot;
        __atomic_store_n(&kv->ref, 1, __ATOMIC_RELAXED);
        pc__reclaimer_retire(s->w.rc, old);
    } else if (s->count == s->cap) {
        /* The new key is already published; the victim goes next (the
         * shard briefly holds cap + 1 keys, which the table is sized for;
         * `count`, and so pc_len, never shows it). */
        struct pc__kv *victim = shard_pick_victim(s);

        pc__index_erase(&s->ix, victim);
        kv->w.live.slot = victim->w.live.slot;
        pc__reclaimer_retire(s->w.rc, victim);
        PC__COUNTER_INC(s->w.evictions);
    } else {
        kv->w.live.slot = shard_take_slot(s);
        __atomic_store_n(&s->count, s->count + 1, __ATOMIC_RELAXED);
    }
    PC__ASSERT(s->count <= s->cap);
    s->ring[kv->w.live.slot] = kv;
    PC__COUNTER_INC(s->w.puts);
    pc__writer_unlock(c, &s->w);
    return PC_OK;
}

pc_status pc__policy_delete(pc_cache *c, const void *key, size_t klen)
{
    uint64_t h = pc__hash_key(&c->seed, key, klen);
    struct clock_shard *s = shard_of(clock_of(c), h);
    struct pc__kv *kv;

    pc__writer_lock(&s->w);
    kv = pc__index_remove(&s->ix, h, key, klen);
    if (kv != NULL) {
        PC__ASSERT(s->ring[kv->w.live.slot] == kv && s->count > 0);
        shard_release_slot(s, kv->w.live.slot);
        __atomic_store_n(&s->count, s->count - 1, __ATOMIC_RELAXED);
        pc__reclaimer_retire(s->w.rc, kv);
        PC__COUNTER_INC(s->w.deletes);
    }
    pc__writer_unlock(c, &s->w);
    return kv != NULL ? PC_OK : PC_NOTFOUND;
}

size_t pc__policy_len(const pc_cache *c)
{
    const struct clock_cache *cc =
        PC__CONTAINER_OF(c, const struct clock_cache, base);
    size_t n = 0;

    for (uint32_t i = 0; i < cc->nshards; i++)
        n += __atomic_load_n(&cc->shards[i].count, __ATOMIC_RELAXED);
    return n;
}

void pc__policy_clear(pc_cache *c)
{
    struct clock_cache *cc = clock_of(c);

    for (uint32_t i = 0; i < cc->nshards; i++) {
        struct clock_shard *s = &cc->shards[i];

        pc__writer_lock(&s->w);
        shard_clear_locked(s);
        pc__writer_unlock(c, &s->w);
    }
}
