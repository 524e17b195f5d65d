/*
 * clock: the CLOCK policy, a sharded approximation of LRU with wait-free
 * reads.
 *
 * Algorithm. The key space is split into shards by the high half of the
 * key's hash. Each shard has a ck_hs index (SPMC), a writer lock, and a ring
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
 * shard's table is just under ck_hs's 50% growth threshold: that keeps the
 * index at about 16 bytes per entry instead of up to 32.
 *
 * Concurrency argument.
 *  - Readers (pc_get) enter an epoch section, look the key up with ck_hs_get
 *    (which retries only if a writer relocated an entry in the same probe
 *    sequence), set the reference bit with a relaxed byte store if it was
 *    clear, copy the value out, and leave. They take no lock, perform no
 *    atomic read-modify-write, allocate nothing, and write no shared line
 *    except that one bit.
 *  - Writers hold the shard lock for every change to the shard's index,
 *    ring, hand and count. An entry is fully written before ck_hs publishes
 *    it and never changed afterwards except for its reference bit (entry.h),
 *    so readers never see a torn value.
 *  - A removed, replaced or evicted entry is retired to the shard's
 *    reclaimer, which frees it only after every reader that might hold it
 *    has left its epoch section; old index tables go the same way.
 *  - The ring is writer-only memory, so it can be reallocated under the lock.
 *  - `count` is written under the lock and read with relaxed loads by
 *    pc_len; each shard's count never exceeds its capacity, and the shard
 *    capacities add up to the cache's, so pc_len never exceeds capacity.
 */
#include <pthread.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "alloc.h"
#include "epoch.h"
#include "flight.h"
#include "index.h"
#include "policy.h"
#include "readpath.h"

#define CLOCK_MIN_SHARD 1024u
#define CLOCK_MAX_AUTO_SHARDS 256u
#define CLOCK_PRESIZE_MAX (1ul << 16) /* per shard; larger ones grow */
#define SLOT_NONE UINT32_MAX

/* A free ring slot holds (next free index << 1) | 1 instead of a pointer. */
#define SLOT_IS_FREE(p) (((uintptr_t)(p)) & 1u)
#define SLOT_FREE_LINK(next) ((struct pc_kv *)(((uintptr_t)(next) << 1) | 1u))
#define SLOT_FREE_NEXT(p) ((uint32_t)(((uintptr_t)(p)) >> 1))

/* Readers touch only `ix` (its ck_hs_t: map pointer, seed, callbacks),
 * which writers change only when a table is replaced; it gets the first
 * cache line to itself, and everything writers dirty on every put (lock,
 * ring, hand, count, counters) starts on the next one, so a put in a shard
 * does not evict its index handle from the readers' caches. */
struct clock_shard {
    struct pc_index ix;
    pthread_mutex_t lock __attribute__((aligned(64)));
    struct pc_reclaimer *rc;
    struct pc_kv **ring;
    uint32_t ring_cap;  /* slots allocated */
    uint32_t used;      /* slots ever handed out (high-water mark) */
    uint32_t hand;      /* next slot the clock hand examines */
    uint32_t free_head; /* free-slot list through the ring, or SLOT_NONE */
    uint32_t cap;       /* entries this shard may hold */
    uint32_t count;     /* entries it holds; relaxed reads by pc_len */
    uint64_t puts, evictions, deletes;
} __attribute__((aligned(64)));
_Static_assert(offsetof(struct clock_shard, lock) == 64,
               "a shard's index handle has its own cache line");

struct pc_cache {
    struct pc_domain dom;
    struct pc_hash_seed seed;
    size_t capacity;
    uint32_t nshards;
    struct clock_shard *shards;
    struct pc_flights *flights;
    pthread_mutex_t reclaim_lock; /* one pc_reclaim at a time */
};

const char *policy_name(void)
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

/* Index slots needed by n shards sharing `cap` (see index_init). */
static unsigned long table_slots(size_t cap, unsigned long n)
{
    unsigned long per = (cap + n - 1) / n;

    return n * pow2_ceil(2 * (per + 1));
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
        if (table_slots(cap, n) < table_slots(cap, best))
            best = n;
    return (uint32_t)best;
}

static inline struct clock_shard *shard_of(pc_cache *c, uint64_t h)
{
    return &c->shards[((h >> 32) * c->nshards) >> 32];
}

static void kv_free(struct pc_kv *kv)
{
    pc_free(kv, sizeof *kv + kv->klen + kv->vlen);
}

static struct pc_kv *kv_new(const void *key, size_t klen, const void *val,
                            size_t vlen)
{
    struct pc_kv *kv = pc_alloc(sizeof *kv + klen + vlen);

    if (kv != NULL)
        kv_fill(kv, key, klen, val, vlen);
    return kv;
}

static void shard_lock(struct clock_shard *s)
{
    pthread_mutex_lock(&s->lock);
    index_writer_begin(s->rc);
}

static void shard_unlock(struct clock_shard *s)
{
    bool advance;
    struct pc_kv *ready = reclaimer_poll(s->rc, &advance);

    index_writer_end();
    pthread_mutex_unlock(&s->lock);
    reclaimer_after_unlock(s->rc, ready, advance);
}

/* Make sure a never-used slot exists if the free list is empty. */
static bool shard_reserve_slot(struct clock_shard *s)
{
    struct pc_kv **ring;
    uint32_t ncap;

    if (s->free_head != SLOT_NONE || s->used < s->ring_cap)
        return true;
    ncap = s->ring_cap ? s->ring_cap * 2 : 64;
    if (ncap > s->cap)
        ncap = s->cap;
    ring = pc_alloc(sizeof *ring * ncap);
    if (ring == NULL)
        return false;
    if (s->used)
        memcpy(ring, s->ring, sizeof *ring * s->used);
    pc_free(s->ring, sizeof *ring * s->ring_cap);
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
static struct pc_kv *shard_pick_victim(struct clock_shard *s)
{
    uint64_t steps, limit = 2ull * s->used + 1;

    for (steps = 0;; steps++) {
        struct pc_kv *kv, *next;
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
        return kv;
    }
}

static void shard_clear_locked(struct clock_shard *s)
{
    bool fresh = index_reset(&s->ix);

    for (uint32_t i = 0; i < s->used; i++) {
        struct pc_kv *kv = s->ring[i];

        if (SLOT_IS_FREE(kv))
            continue;
        if (!fresh)
            index_remove(&s->ix, index_hash_of(&s->ix, kv), kv);
        reclaimer_retire(s->rc, kv);
    }
    s->used = 0;
    s->hand = 0;
    s->free_head = SLOT_NONE;
    __atomic_store_n(&s->count, 0, __ATOMIC_RELAXED);
    if (!fresh)
        index_maintain(&s->ix);
}

static void shards_free(pc_cache *c, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++) {
        struct clock_shard *s = &c->shards[i];

        for (uint32_t j = 0; j < s->used; j++)
            if (!SLOT_IS_FREE(s->ring[j]))
                kv_free(s->ring[j]);
        pc_free(s->ring, sizeof *s->ring * s->ring_cap);
        /* Deferred tables and entries first, then the live table. */
        reclaimer_destroy(s->rc);
        index_destroy(&s->ix);
        pthread_mutex_destroy(&s->lock);
    }
}

pc_status policy_create(const pc_options *opts, pc_cache **out)
{
    pc_cache *c;
    uint32_t n, i;

    if (opts->capacity > (size_t)UINT32_MAX * CLOCK_MAX_AUTO_SHARDS)
        return PC_EINVAL;
    c = pc_alloc(sizeof *c);
    if (c == NULL)
        return PC_ENOMEM;
    memset(c, 0, sizeof *c);
    c->capacity = opts->capacity;
    pc_hash_seed_init(&c->seed, opts->hash_seed);
    n = choose_shards(opts->capacity, opts->shards);
    if (opts->capacity / n > UINT32_MAX - 1) {
        pc_free(c, sizeof *c);
        return PC_EINVAL;
    }
    c->nshards = n;
    pthread_mutex_init(&c->reclaim_lock, NULL);
    c->flights = flights_create();
    if (c->flights == NULL) {
        pc_free(c, sizeof *c);
        return PC_ENOMEM;
    }
    if (domain_init(&c->dom) != 0) {
        flights_destroy(c->flights);
        pc_free(c, sizeof *c);
        return PC_ENOMEM;
    }
    c->shards = pc_alloc_aligned(sizeof *c->shards * n, 64);
    if (c->shards == NULL)
        goto fail_domain;
    memset(c->shards, 0, sizeof *c->shards * n);
    for (i = 0; i < n; i++) {
        struct clock_shard *s = &c->shards[i];
        size_t cap = opts->capacity / n + (i < opts->capacity % n);

        s->cap = (uint32_t)cap;
        s->free_head = SLOT_NONE;
        s->rc = reclaimer_create(&c->dom, kv_free);
        if (s->rc == NULL)
            goto fail_shards;
        if (!index_init(&s->ix, &c->seed,
                        cap < CLOCK_PRESIZE_MAX ? cap : CLOCK_PRESIZE_MAX)) {
            domain_unlink(&c->dom);
            reclaimer_destroy(s->rc);
            goto fail_shards;
        }
        writer_mutex_init(&s->lock);
    }
    *out = c;
    return PC_OK;

fail_shards:
    domain_unlink(&c->dom); /* before its reclaimers' records are freed */
    shards_free(c, i);
    pc_free(c->shards, sizeof *c->shards * n);
fail_domain:
    domain_fini(&c->dom);
    flights_destroy(c->flights);
    pc_free(c, sizeof *c);
    return PC_ENOMEM;
}

void policy_destroy(pc_cache *c)
{
    domain_unlink(&c->dom); /* before its reclaimers' records are freed */
    shards_free(c, c->nshards);
    pc_free(c->shards, sizeof *c->shards * c->nshards);
    domain_fini(&c->dom);
    flights_destroy(c->flights);
    pthread_mutex_destroy(&c->reclaim_lock);
    pc_free(c, sizeof *c);
}

/* Inside the caller's read section: find key, count the lookup, and mark
 * the use (reference bit). */
static inline struct pc_kv *clock_lookup(pc_cache *c, struct pc_thread *t,
                                         uint64_t h, const void *key,
                                         size_t klen)
{
    struct pc_probe probe;
    struct pc_kv *kv;

    pc_probe_init(&probe, key, klen);
    kv = index_get(&shard_of(c, h)->ix, h, &probe);
    if (kv != NULL) {
        kv_touch(kv);
        PC_COUNTER_INC(t->stats.hits);
    } else {
        PC_COUNTER_INC(t->stats.misses);
    }
    return kv;
}

pc_status policy_get(pc_cache *c, const void *key, size_t klen, void *buf,
                     size_t bufcap, size_t *vlen)
{
    return readpath_get(c, &c->dom, &c->seed, clock_lookup, key, klen, buf,
                        bufcap, vlen);
}

pc_status policy_pin(pc_cache *c, const void *key, size_t klen, pc_pin *pin)
{
    return readpath_pin(c, &c->dom, &c->seed, clock_lookup, key, klen, pin);
}

struct pc_thread *policy_thread(pc_cache *c)
{
    return domain_thread(&c->dom);
}

struct pc_flights *policy_flights(pc_cache *c)
{
    return c->flights;
}

pc_status policy_put(pc_cache *c, const void *key, size_t klen, const void *val,
                     size_t vlen)
{
    uint64_t h = pc_hash_key(&c->seed, key, klen);
    struct clock_shard *s = shard_of(c, h);
    struct pc_kv *kv = kv_new(key, klen, val, vlen), *old;

    if (kv == NULL)
        return PC_ENOMEM;
    shard_lock(s);
    /* Reserve a ring slot first: it changes nothing visible, and with the
     * index's own growth it is the only step of a put that can fail. */
    if ((s->count < s->cap && !shard_reserve_slot(s)) ||
        !index_upsert(&s->ix, h, kv, &old)) {
        shard_unlock(s);
        kv_free(kv);
        return PC_ENOMEM;
    }
    if (old != NULL) {
        /* Replacement: same slot, counts as a use, evicts nothing. */
        kv->w.slot = old->w.slot;
        __atomic_store_n(&kv->ref, 1, __ATOMIC_RELAXED);
        reclaimer_retire(s->rc, old);
    } else if (s->count == s->cap) {
        /* The new key is already published; the victim goes next (the
         * shard briefly holds cap + 1 keys, which the table is sized for;
         * `count`, and so pc_len, never shows it). */
        struct pc_kv *victim = shard_pick_victim(s);

        index_remove(&s->ix, index_hash_of(&s->ix, victim), victim);
        kv->w.slot = victim->w.slot;
        reclaimer_retire(s->rc, victim);
        PC_COUNTER_INC(s->evictions);
        index_maintain(&s->ix);
    } else {
        kv->w.slot = shard_take_slot(s);
        __atomic_store_n(&s->count, s->count + 1, __ATOMIC_RELAXED);
    }
    s->ring[kv->w.slot] = kv;
    PC_COUNTER_INC(s->puts);
    shard_unlock(s);
    return PC_OK;
}

pc_status policy_delete(pc_cache *c, const void *key, size_t klen)
{
    uint64_t h = pc_hash_key(&c->seed, key, klen);
    struct clock_shard *s = shard_of(c, h);
    struct pc_probe probe;
    struct pc_kv *kv;

    pc_probe_init(&probe, key, klen);
    shard_lock(s);
    kv = index_remove(&s->ix, h, &probe.hdr);
    if (kv != NULL) {
        shard_release_slot(s, kv->w.slot);
        __atomic_store_n(&s->count, s->count - 1, __ATOMIC_RELAXED);
        reclaimer_retire(s->rc, kv);
        PC_COUNTER_INC(s->deletes);
        index_maintain(&s->ix);
    }
    shard_unlock(s);
    return kv != NULL ? PC_OK : PC_NOTFOUND;
}

size_t policy_len(const pc_cache *c)
{
    size_t n = 0;

    for (uint32_t i = 0; i < c->nshards; i++)
        n += __atomic_load_n(&c->shards[i].count, __ATOMIC_RELAXED);
    return n;
}

size_t policy_capacity(const pc_cache *c)
{
    return c->capacity;
}

void policy_clear(pc_cache *c)
{
    for (uint32_t i = 0; i < c->nshards; i++) {
        struct clock_shard *s = &c->shards[i];

        shard_lock(s);
        shard_clear_locked(s);
        shard_unlock(s);
    }
}

void policy_reclaim(pc_cache *c)
{
    bool ok;

    /* No shard lock is held while waiting for readers: a pinned reader may
     * be about to take one (epoch.c, drain). */
    pthread_mutex_lock(&c->reclaim_lock);
    for (uint32_t i = 0; i < c->nshards; i++) {
        struct clock_shard *s = &c->shards[i];

        pthread_mutex_lock(&s->lock);
        reclaimer_drain_detach(s->rc);
        pthread_mutex_unlock(&s->lock);
    }
    ok = reclaimer_drain_wait(&c->dom);
    for (uint32_t i = 0; i < c->nshards; i++) {
        struct clock_shard *s = &c->shards[i];
        struct pc_kv *chain = NULL;

        pthread_mutex_lock(&s->lock);
        if (ok)
            chain = reclaimer_drain_finish(s->rc);
        else
            reclaimer_drain_abort(s->rc);
        pthread_mutex_unlock(&s->lock);
        reclaimer_free(s->rc, chain);
    }
    pthread_mutex_unlock(&c->reclaim_lock);
}

void policy_stats(pc_cache *c, pc_stats *out)
{
    struct pc_thread_stats ts = {0};

    memset(out, 0, sizeof *out);
    domain_sum_stats(&c->dom, &ts);
    out->hits = ts.hits;
    out->misses = ts.misses;
    out->loader_calls = ts.loader_calls;
    out->loader_errors = ts.loader_errors;
    for (uint32_t i = 0; i < c->nshards; i++) {
        out->puts += PC_COUNTER_READ(c->shards[i].puts);
        out->evictions += PC_COUNTER_READ(c->shards[i].evictions);
        out->deletes += PC_COUNTER_READ(c->shards[i].deletes);
    }
}
