/*
 * core: what every policy's cache is made of, written once.
 *
 * struct pc_cache (the public opaque handle) is defined here and only here.
 * A policy's cache embeds it as its first member (clock.c's struct
 * clock_cache, lru.c's struct lru_cache) and adds its own fields, so the
 * policy converts with PC__CONTAINER_OF and the core never needs to know
 * the policy's layout.
 *
 * The core holds: the epoch domain (domain.h) every read section runs in,
 * the hash seed, the capacity, the single-flight table of get-or-load, and
 * the list of the cache's writer locks. A writer lock (struct pc__writer)
 * is a mutex plus the reclaimer its holder retires into (retire.h) plus the
 * write counters it guards; CLOCK has one per shard, exact LRU one for the
 * cache. Everything the policies used to repeat lives here:
 *  - taking and releasing a writer lock, with the reclamation poll before
 *    the unlock and the frees and grace-period step after it;
 *  - the read skeleton (pc__core_get, pc__core_pin): find this thread's
 *    record, hash, enter the section, let the policy look the key up and
 *    record the use, copy out and leave (or leave the section open for a
 *    pin). Only the lookup differs between policies, so each passes its own
 *    as a constant function pointer into these always-inlined helpers, and
 *    sharing the skeleton costs the read path no call;
 *  - pc_reclaim over every writer lock, never holding one while waiting;
 *  - statistics: per-thread counters plus every writer's counters;
 *  - creation and the destruction order (unlink the domain before any
 *    reclaimer's record is freed; free deferred tables before live ones).
 *
 * Concurrency: everything in struct pc_cache is immutable after creation
 * except what its own locks guard (the domain's registry and grace state,
 * each writer's fields, reclaim_lock).
 */
#ifndef PC_CORE_H
#define PC_CORE_H

#include <pthread.h>

#include "alloc.h"
#include "domain.h"
#include "entry.h"
#include "flight.h"
#include "hash.h"
#include "lock.h"
#include "pin.h"
#include "retire.h"
#include "ticker.h"
#include "write.h"

/* One writer lock and what its holder owns. */
struct pc__writer {
    pc__lock lock; /* a leaf (lock order: internal.h) */
    struct pc__reclaimer *rc;
    struct pc__lease *leases; /* loads that may store (write.h) */
    /* Written under `lock` (single writer), read by pc_stats_get. */
    uint64_t puts, evictions, deletes, expirations;
};

struct pc_cache {
    struct pc__domain dom;
    struct pc__hash_seed seed;
    const char *policy_name;
    uint64_t ttl_ms; /* default time to live; 0: none */
    uint64_t (*now_ms)(void *ctx);
    void *now_ctx;
    pc_removal_fn *on_removal;
    void *removal_ctx;
    bool ttl_used; /* the cache's clock is fixed (pc__core_expires; atomic) */
    bool ticking;  /* the cache's clock is the ticker's (ticker.h; atomic) */
    /* The expiry origin plus one (entry.h's near times count from it); 0
     * until the first expiry fixes it (pc__core_expires); atomic. The
     * origin is 0 on the default clock (its ms count from boot), else the
     * cache's clock at its first expiry. */
    uint64_t origin_p1;
    /* What readers compare near expiry times with (pc__core_visible): the
     * ticker's `vis` if the cache's clock is the ticker's, else a constant
     * UINT64_MAX (then they call pc__core_visible_slow); atomic. */
    const uint64_t *vis;
    /* Limits (pc_set_capacity, pc_set_max_bytes) and what they bound:
     * written by writers with atomics, each on its own line. */
    size_t capacity __attribute__((aligned(64)));
    uint64_t max_bytes; /* 0: none */
    /* pc_set_max_bytes calls setting a bound under way: while it is not 0,
     * no put leaves its byte change in its shard (shard_state.h, owed). */
    unsigned int settling;
    /* pc_set_max_bytes stores of the bound begun and finished (each call
     * counts its store's start just before it and its end just after;
     * atomic): a setter that sees another's store begun during its own
     * settling and store, or under way when it began, knows shards may
     * keep credit capped by that other bound (cache.c). */
    unsigned int stores_begun, stores_done;
    size_t count __attribute__((aligned(64))); /* entries present */
    /* Sum of klen + vlen, less what shards owe while no byte bound is set
     * (the CLOCK build's shards then keep their puts' byte changes to
     * themselves), plus their credit under a bound (bytes freed by a
     * shard's puts, kept for its next ones): shard_state.h;
     * pc__policy_bytes gives the sum. */
    uint64_t bytes;
    struct pc__flight_table *flights __attribute__((aligned(64)));
    pthread_mutex_t reclaim_lock; /* one pc_reclaim at a time; level 1 */
    struct pc__writer **writers;  /* every writer lock of the cache */
    unsigned int nwriters, writers_cap;
    /* Called with a writer lock held just before retired memory that has
     * passed its grace period is handed over to be freed (NULL: nothing
     * to do). lru.c drains its access logs there: no log record may name
     * an entry once it is freed. */
    void (*before_free)(struct pc_cache *c);
    struct pc__pin_table pins; /* pin.h */
};

/*
 * Set up the core of a new cache: seed, capacity, flight table, domain, and
 * room for nwriters writer locks (registered with pc__core_add_writer).
 * False on allocation failure, with nothing left to undo.
 */
bool pc__core_init(struct pc_cache *c, const pc_options *opts,
                   unsigned int nwriters);
/* Initialise w (its lock, and its reclaimer: retire.h) and register it as the
 * cache's next writer. False on allocation failure; pc__core_shutdown then
 * cleans up every writer added so far. */
bool pc__core_add_writer(struct pc_cache *c, struct pc__writer *w);
/*
 * Destruction, step 1: unlink the domain (no other thread's paced step or
 * thread exit looks at it any more), then destroy every writer's reclaimer,
 * freeing everything retired and every deferred index table. The policy
 * then frees its live entries and its index (deferred tables before live
 * ones: this order), then calls pc__core_fini.
 */
void pc__core_shutdown(struct pc_cache *c);
/* Destruction, step 2: release thread records, the flight table, locks. */
void pc__core_fini(struct pc_cache *c);

/* Take / release a writer lock of c. The release polls w's reclaimer under
 * the lock (calling c->before_free if that hands anything over), then
 * frees what became safe and runs any due grace-period step with no lock
 * held. */
void pc__writer_lock(struct pc__writer *w);
void pc__writer_unlock(struct pc_cache *c, struct pc__writer *w);

/* pc_reclaim, pc_stats_get (all but `bytes`: pc__policy_bytes). */
void pc__core_reclaim(struct pc_cache *c);
void pc__core_stats(struct pc_cache *c, pc_stats *out);

/* The cache's clock, in ms: pc_options.now_ms, else the ticker's global
 * (ticker.h: one load), else, if no ticker could be started for the cache,
 * CLOCK_MONOTONIC_COARSE (a vDSO read). Which one is fixed when the cache
 * first uses an expiry, before any entry has an expiry time. Inline: the
 * read path calls it for every hit of an entry that can expire. Call with
 * no lock held (a user's now_ms may do anything). */
static inline uint64_t pc__core_now(const struct pc_cache *c)
{
    if (__builtin_expect(__atomic_load_n(&c->ticking, __ATOMIC_RELAXED), 1))
        return pc__ticker_now();
    if (c->now_ms != NULL)
        return c->now_ms(c->now_ctx);
    return pc__coarse_ms();
}
/* pc__core_expires with a ttl (neither 0 nor PC_TTL_NEVER; core.c). */
__attribute__((noinline)) uint64_t pc__core_expires_slow(struct pc_cache *c,
                                                         uint64_t ttl_ms);

/* The expiry time of an entry put now with this ttl (0: the default;
 * PC_TTL_NEVER: none); 0 means "never". The first one fixes the cache's
 * clock (pc__core_now; may start the ticker, blocking briefly), notes that
 * expiry is in use, and fixes the expiry origin at the time it read (the
 * first of racing calls to store it wins). */
static inline uint64_t pc__core_expires(struct pc_cache *c, uint64_t ttl_ms)
{
    /* Inline: most puts have no ttl, and ttl_ms is fixed at create. */
    if (ttl_ms == 0)
        ttl_ms = c->ttl_ms;
    if (ttl_ms == 0 || ttl_ms == PC_TTL_NEVER)
        return 0;
    return pc__core_expires_slow(c, ttl_ms);
}
/* The expiry origin (entry.h), once an expiry has fixed it: read with no
 * lock by readers of an entry whose expiry time is near (the entry was
 * published after the origin was fixed, which never changes again). */
static inline uint64_t pc__core_origin(const struct pc_cache *c)
{
    return __atomic_load_n(&c->origin_p1, __ATOMIC_RELAXED) - 1;
}
/* Readers, inside a read section, of kv just found in the index: 1 if it
 * is visible now, 0 if it has expired (a miss), -1 if its writer unlinked
 * it meanwhile and may have reused the header that held its expiry time
 * (entry.h: look the key up again). pc__core_visible_slow is the rest:
 * a far time, an unlinked entry, a clock other than the running ticker,
 * and an entry that has expired. Out of line (not cold: a cache on its own
 * clock takes it for every entry that can expire), so that the flattened
 * pc_get does not carry it. */
__attribute__((noinline)) int pc__core_visible_slow(const struct pc_cache *c,
                                                    const struct pc__kv *kv,
                                                    unsigned int f,
                                                    uint32_t lo);
_Static_assert(PC__KV_VIS_BIAS == PC__TICKER_VIS_BIAS,
               "the ticker's vis and entries' pc__kv_vis agree");
static inline int pc__core_visible(const struct pc_cache *c,
                                   const struct pc__kv *kv)
{
    uint32_t lo = pc__kv_read_hx(kv); /* (before the flags: entry.h) */
    unsigned int f = pc__kv_flags(kv);

    if (__builtin_expect(!(f & PC__KV_EXPIRES), 1))
        return 1;
    /* The common case in one comparison: a live entry whose time is near
     * and not yet come, in a cache on the running ticker (origin 0; the
     * ticker's vis is its time plus the bias pc__kv_vis adds, and
     * UINT64_MAX for any other cache or while no ticker runs). */
    if (__builtin_expect(
            __atomic_load_n(__atomic_load_n(&c->vis, __ATOMIC_RELAXED),
                            __ATOMIC_RELAXED) < pc__kv_vis(f, lo),
            1))
        return 1;
    return pc__core_visible_slow(c, kv, f, lo);
}
/* A put's new entry (entry.h), filled, expiring at `expires` (0: never,
 * else a time pc__core_expires gave, which fixed the origin), with its
 * key's hash h in hx unless hx holds its near expiry time; NULL on
 * ENOMEM. The two cases are two functions, so that a put without an
 * expiry carries no expiry state through its body (21 instructions fewer
 * per evicting put, callgrind). */
static inline struct pc__kv *pc__core_entry_plain(uint64_t h, const void *key,
                                                  size_t klen, const void *val,
                                                  size_t vlen)
{
    struct pc__kv *kv = pc__alloc(pc__kv_size(klen, vlen, 0));

    if (kv != NULL)
        pc__kv_fill(kv, h, key, klen, val, vlen, 0, 0, 0);
    return kv;
}
static __attribute__((noinline, unused)) struct pc__kv *
pc__core_entry_expiring(const struct pc_cache *c, uint64_t h, const void *key,
                        size_t klen, const void *val, size_t vlen,
                        uint64_t expires)
{
    uint64_t origin = pc__core_origin(c);
    unsigned int xflags = pc__kv_expiry_flags(expires, origin);
    struct pc__kv *kv = pc__alloc(pc__kv_size(klen, vlen, xflags));

    if (kv != NULL)
        pc__kv_fill(kv, h, key, klen, val, vlen, expires, xflags, origin);
    return kv;
}
static inline struct pc__kv *pc__core_entry_new(const struct pc_cache *c,
                                                uint64_t h, const void *key,
                                                size_t klen, const void *val,
                                                size_t vlen, uint64_t expires)
{
    if (__builtin_expect(expires == 0, 1))
        return pc__core_entry_plain(h, key, klen, val, vlen);
    return pc__core_entry_expiring(c, h, key, klen, val, vlen, expires);
}
/* Now, if any entry may expire, else 0 (then nothing is ever expired),
 * with the expiry origin. The origin is fixed before any entry has an
 * expiry time, so it is what tells. Writers read it under their lock:
 * an operation's time then follows the order of the locks it takes (a
 * put that read the clock before waiting for its lock judged expiry by a
 * time older than writes that came before it, and could evict a live
 * entry where an expired one was due: helper-61). */
static inline struct pc__now pc__core_now_if_ttl(const struct pc_cache *c)
{
    uint64_t p1 = __atomic_load_n(&c->origin_p1, __ATOMIC_ACQUIRE);
    struct pc__now now = {0, 0};

    if (p1 != 0) {
        now.ms = pc__core_now(c);
        now.origin = p1 - 1;
    }
    return now;
}

/*
 * The cache-wide budgets. pc__budget_take claims room for one more entry
 * (if one_more) and `bytes` more bytes, all or nothing, with atomic
 * compare-and-swap, and fails if either would pass its limit: the caller
 * then evicts and tries again. pc__budget_give returns room (entries
 * removed, bytes freed). pc__budget_room says whether a take would succeed
 * now, and whether the cache is within its limits at all (which a shrink
 * of a limit can break until the shrink has evicted).
 *
 * A limit lowered while a put is under way: the put claimed room against
 * the old limit, and the setter's shrink may already have passed the put's
 * shard. So every put that claimed room checks the limits again once its
 * entry is in, under its lock, and evicts in its shard until the cache is
 * within them (only a put that claimed room needs to: one that took over
 * its victims' room added nothing). The setter's store and its shrink's
 * first look at the counts, and the put's claim and its check, are
 * sequentially consistent
 * operations: either the put's check sees the new limit, or the shrink
 * sees the claim (and then finds the entry, or takes the put's lock after
 * it).
 */
/* pc__budget_take against a byte bound the caller read (0: none), not the
 * current one: a put that checked its entry against that bound claims
 * within it, so evicting everything else always makes room (lru.c). */
bool pc__budget_take_within(struct pc_cache *c, bool one_more, uint64_t bytes,
                            uint64_t max);

static inline bool pc__budget_take(struct pc_cache *c, bool one_more,
                                   uint64_t bytes)
{
    return pc__budget_take_within(
        c, one_more, bytes, __atomic_load_n(&c->max_bytes, __ATOMIC_RELAXED));
}
#ifdef PC_DEBUG
/* Debug builds: called by every take after it read the limits (tests
 * stall a put there to race a limit change against it). */
extern void (*pc__debug_budget_hook)(void);
/* Debug builds: called by a put between its loads of c->settling and of
 * the bound (shard.c, may_owe), and by pc_set_max_bytes after it settled
 * the shards and before it stores the bound (tests stall both there). */
extern void (*pc__debug_owe_hook)(void);
extern void (*pc__debug_settled_hook)(void);
/* Debug builds: called by a put just before it takes its writer lock
 * (tests stall a put there, as if preempted). */
extern void (*pc__debug_prelock_hook)(void);
#endif
/* Debug builds: pc__debug_prelock_hook, if set; nothing otherwise. */
static inline void pc__debug_prelock(void)
{
#ifdef PC_DEBUG
    if (pc__debug_prelock_hook != NULL)
        pc__debug_prelock_hook();
#endif
}
void pc__budget_give(struct pc_cache *c, size_t entries, uint64_t bytes);
bool pc__budget_room(const struct pc_cache *c, bool one_more, uint64_t bytes);

/* Whether an entry of `size` bytes fits the byte bound by itself now (a
 * bound lowered meanwhile may refuse a put already under way). */
static inline bool pc__budget_fits(const struct pc_cache *c, uint64_t size)
{
    uint64_t max = __atomic_load_n(&c->max_bytes, __ATOMIC_RELAXED);

    return max == 0 || size <= max;
}

static inline void pc__removals_init(struct pc__removals *rm,
                                     const struct pc_cache *c)
{
    rm->head = rm->tail = NULL;
    rm->fn = c->on_removal;
    rm->ctx = c->removal_ctx;
}

/* The calling thread's record on c, registering it; NULL on ENOMEM. */
static inline struct pc__record *pc__core_record(struct pc_cache *c)
{
    return pc__domain_record(&c->dom);
}

/* A policy's lookup, run inside the caller's read section: find the key
 * and record the use; NULL on a miss. */
typedef struct pc__kv *pc__lookup_fn(struct pc_cache *c, struct pc__record *t,
                                     uint64_t h, const void *key, size_t klen);

/* count: add the lookup to t's hits or misses (every pc_get counts exactly
 * one; get-or-load's later looks count none). */
static inline __attribute__((always_inline)) pc_status
pc__core_get(struct pc_cache *c, pc__lookup_fn *lookup, const void *key,
             size_t klen, void *buf, size_t bufcap, size_t *vlen, bool count)
{
    struct pc__record *t = pc__core_record(c);
    struct pc__kv *kv;
    pc_status st;
    uint64_t h;

    if (__builtin_expect(t == NULL, 0))
        return PC_ENOMEM;
    h = pc__hash_key(&c->seed, key, klen);
    pc__read_enter(t);
    kv = lookup(c, t, h, key, klen);
    st = kv != NULL
             ? pc__copy_out(pc__kv_value(kv), kv->vlen, buf, bufcap, vlen)
             : PC_NOTFOUND;
    pc__read_leave(t);
    if (count) {
        if (kv != NULL)
            PC__COUNTER_INC(t->stats.hits);
        else
            PC__COUNTER_INC(t->stats.misses);
    }
    return st;
}

static inline __attribute__((always_inline)) pc_status
pc__core_pin(struct pc_cache *c, pc__lookup_fn *lookup, const void *key,
             size_t klen, pc_pin *pin)
{
    struct pc__record *t = pc__core_record(c);
    struct pc__pin_prep prep;
    struct pc__kv *kv;
    uint64_t h, id;

    if (t == NULL || !pc__pins_prepare(&prep))
        return PC_ENOMEM; /* before the lookup records a use */
    h = pc__hash_key(&c->seed, key, klen);
    pc__read_enter(t);
    kv = lookup(c, t, h, key, klen);
    if (kv == NULL) {
        pc__read_leave(t);
        pc__pins_unprepare(&prep);
        PC__COUNTER_INC(t->stats.misses);
        return PC_NOTFOUND;
    }
    id = pc__pins_take(&c->pins, kv, &prep); /* inside the section: pin.h */
    pc__read_leave(t);
    pc__pins_unprepare(&prep); /* what take left */
    pc__pins_grow(&c->pins);
    PC__COUNTER_INC(t->stats.hits);
    pin->value = pc__kv_value(kv);
    pin->len = kv->vlen;
    pin->internal_[0] = &c->pins;
    pin->internal_[1] = (void *)(uintptr_t)id;
    return PC_OK;
}

#endif
