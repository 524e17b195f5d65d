/*
 * shard: the CLOCK build's cache: shards that each run an eviction policy
 * (shard.h: CLOCK, or the frequency-aware policy), under one capacity and
 * one byte bound for the whole cache.
 *
 * Sharding. The key space is split into shards by the high half of the
 * key's hash. Each shard has its own index (index.h), writer lock and
 * policy state; create picks the count from the CPU count (SHARDS_PER_CPU
 * per CPU, at most 256), never letting a shard's share fall below
 * MIN_SHARD entries (small shards fill unevenly and their hit ratio drifts
 * from a single policy's), then takes the count, up to twice that, whose
 * tables round up least to their allocation size classes (index.h). A put
 * finds its shard's lock held by another writer with a
 * chance of up to (writers - 1) / shards, and then waits out that writer's
 * whole put (whose lines, last written by the other core, all move).
 *
 * One budget. The capacity and the byte bound belong to the cache, not to
 * the shards (core.h: pc__budget_take): a put of a new key claims one
 * entry and its bytes from the cache-wide counters with compare-and-swap
 * (with no byte bound, the entry only: the shard keeps the byte changes
 * of its puts; under a bound, bytes its puts freed are its credit for its
 * next ones, up to a cap: shard_state.h), and only if that fails evicts,
 * from its own shard in the policy's order (an expired entry first: from
 * the shard's expiry queue, exq.h, or wherever the policy meets one),
 * until the claim succeeds. So while fewer than capacity entries are
 * present nothing is evicted, whatever the shard count; at capacity one
 * new key evicts one entry; and pc_len and pc_bytes never pass their
 * limits. A shard may hold more or fewer entries than its share. If the
 * put's own shard has nothing left to evict, it releases its lock and
 * evicts from the other shards in turn (one lock at a time; the expired
 * entries of every shard first, a pass for them, then one for live
 * entries), then starts over. A lowered limit (pc__policy_shrink) removes
 * entries the same way, round robin, a few per lock. Under concurrent puts
 * that race for the last free places a put may evict one entry more than
 * it needed; the counters are touched only by writers.
 *
 * A put changes nothing before everything that can fail has succeeded: the
 * entry is allocated before the lock, the policy and the index reserve
 * their room before any eviction.
 *
 * Readers (pc_get) enter an epoch section, look the key up in the index
 * (wait-free: entries never move inside a table), treat an entry whose
 * expiry time has come as a miss, raise the entry's use mark with a plain
 * byte store if it is below the policy's max_ref, copy the value out, and
 * leave. They take no lock, perform no atomic read-modify-write, allocate
 * nothing, and write no shared line but that one byte. They look the key
 * up again only if the entry they found was removed meanwhile and its
 * header, which held its expiry time, reused (entry.h; lookup_again).
 *
 * Writers hold the shard's lock for every change to its index, policy
 * state and local counts. An entry is fully written before the index
 * publishes it and never changed afterwards but for its use mark (entry.h),
 * so readers never see a torn value. Removed entries go to the shard's
 * reclaimer (retire.h), or to the call's removal queue when the cache has a
 * listener (write.h); leases of loads are checked and broken under the
 * same lock.
 */
#include <limits.h>
#include <stddef.h>
#include <string.h>
#include <unistd.h>

#include "alloc.h"
#include "policy.h"
#include "shard_state.h"

#define MIN_SHARD 1024u
#define SHARDS_PER_CPU 4u
#define MAX_AUTO_SHARDS 256u
#define PRESIZE_MAX (1ul << 16) /* per shard; larger ones grow */

/* Entries the index of one of n shards is first sized for: its share of
 * the capacity with room for the keys' spread (pc__index_room), up to
 * PRESIZE_MAX, unless a byte bound may keep the count far below the
 * capacity (then it grows with the entries, and memory follows them). */
static size_t presize(const pc_options *opts, size_t share, uint32_t n)
{
    if (opts->max_bytes != 0)
        return share < 64 ? share : 64;
    share = pc__index_room(share, n);
    return share < PRESIZE_MAX ? share : PRESIZE_MAX;
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
 * share, room for the keys' spread, and the one entry a put inserts before
 * it evicts). */
static unsigned long table_chunks(size_t cap, unsigned long n)
{
    unsigned long per = (cap + n - 1) / n;

    return n * pc__index_chunks(pc__index_room(per, n) + 1);
}

static uint32_t choose_shards(size_t cap, unsigned int requested)
{
    unsigned long cpus, target, best, n;

    if (requested != 0)
        return (uint32_t)(requested < cap ? requested : cap);
    cpus = (unsigned long)sysconf(_SC_NPROCESSORS_ONLN);
    if (cpus < 1)
        cpus = 1;
    target = pow2_ceil(SHARDS_PER_CPU * cpus);
    if (target > MAX_AUTO_SHARDS)
        target = MAX_AUTO_SHARDS;
    while (target > 1 && cap / target < MIN_SHARD)
        target >>= 1;
    if (target == 1)
        return 1;
    best = target;
    for (n = target + 1;
         n < 2 * target && n <= MAX_AUTO_SHARDS && cap / n >= MIN_SHARD; n++)
        if (table_chunks(cap, n) < table_chunks(cap, best))
            best = n;
    return (uint32_t)best;
}

static inline struct shard *shard_of(struct shard_cache *sc, uint64_t h)
{
    return &sc->shards[((h >> 32) * sc->nshards) >> 32];
}

unsigned int pc__policy_shard_of(const pc_cache *c, const void *key,
                                 size_t klen)
{
    struct shard_cache *sc = sc_of((pc_cache *)c);

    return (unsigned int)(shard_of(sc, pc__hash_key(&c->seed, key, klen)) -
                          sc->shards);
}

static void kv_free(struct pc__kv *kv)
{
    pc__free(kv, pc__kv_alloc_size(kv));
}

/* ---- life cycle ---- */

static void free_entry_cb(void *arg, struct pc__kv *kv)
{
    (void)arg;
    kv_free(kv);
}

/* Free the live entries, policy states and index tables of the first n
 * shards, after pc__core_shutdown (deferred tables before live ones). */
static void shards_free(struct shard_cache *sc, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++) {
        struct shard *s = &sc->shards[i];

        if (s->pol != NULL) {
            sc->pol->each(s->pol, free_entry_cb, NULL);
            sc->pol->destroy(s->pol);
        }
        pc__exq_free(&s->exq);
        pc__index_destroy(&s->ix);
    }
}

/* Shard i's share of cap among n shards (the first cap % n have one
 * more). */
static size_t share_of(size_t cap, uint32_t n, uint32_t i)
{
    return cap / n + (i < cap % n);
}

/* Whether every one of n shards' share of cap is within the policy's
 * limit for a shard. */
static bool share_ok(const struct pc__shard_policy *pol, size_t cap, uint32_t n)
{
    return cap / n + (cap % n != 0) <= pol->max_share;
}

bool pc__policy_capacity_ok(const pc_cache *c, size_t capacity)
{
    const struct shard_cache *sc =
        PC__CONTAINER_OF(c, const struct shard_cache, base);

    return share_ok(sc->pol, capacity, sc->nshards);
}

/* Each shard's share follows the capacity read under its lock: of calls
 * racing, the last to lock a shard read the newest capacity (each call
 * stored its own before), so every shard ends with its share of it. */
void pc__policy_resize(pc_cache *c)
{
    struct shard_cache *sc = sc_of(c);

    if (sc->pol->resize == NULL)
        return;
    for (uint32_t i = 0; i < sc->nshards; i++) {
        struct shard *s = &sc->shards[i];
        size_t cap;

        pc__writer_lock(&s->w);
        cap = __atomic_load_n(&c->capacity, __ATOMIC_RELAXED);
        sc->pol->resize(s->pol, share_of(cap, sc->nshards, i));
        pc__writer_unlock(c, &s->w);
    }
}

pc_status pc__policy_create(const pc_options *opts, pc_cache **out)
{
    const struct pc__shard_policy *pol;
    struct shard_cache *sc;
    uint32_t n, i;

    if (opts->policy > PC_POLICY_FREQUENCY)
        return PC_EINVAL;
    n = choose_shards(opts->capacity, opts->shards);
    pol = opts->policy == PC_POLICY_FREQUENCY ? &pc__frequency_policy
                                              : &pc__clock_policy;
    if (!share_ok(pol, opts->capacity, n))
        return PC_EINVAL;
    sc = pc__alloc_aligned(sizeof *sc, 64);
    if (sc == NULL)
        return PC_ENOMEM;
    memset(sc, 0, sizeof *sc);
    sc->nshards = n;
    /* A shard's credit is at most the bound >> credit_shift: the shards'
     * together, at most 1/PC__CREDIT_SHARE of it (shard_state.h). */
    sc->credit_shift = (uint8_t)(__builtin_ctz(PC__CREDIT_SHARE) +
                                 (n > 1 ? 32 - __builtin_clz(n - 1) : 0));
    sc->pol = pol;
    sc->max_ref = sc->pol->max_ref;
    if (!pc__core_init(&sc->base, opts, n)) {
        pc__free_aligned(sc, sizeof *sc, 64);
        return PC_ENOMEM;
    }
    sc->base.policy_name = sc->pol->name;
    sc->shards = pc__alloc_aligned(sizeof *sc->shards * n, 64);
    if (sc->shards == NULL)
        goto fail;
    memset(sc->shards, 0, sizeof *sc->shards * n);
    for (i = 0; i < n; i++) {
        struct shard *s = &sc->shards[i];
        size_t share = share_of(opts->capacity, n, i);

        s->pol = sc->pol->create(share, &sc->base.seed);
        if (s->pol == NULL ||
            !pc__index_init(&s->ix, presize(opts, share, n), UINT32_MAX,
                            &sc->base.seed) ||
            !pc__core_add_writer(&sc->base, &s->w)) {
            i++; /* this shard's parts are freed with the others */
            break;
        }
    }
    if (sc->base.nwriters < n) {
        pc__core_shutdown(&sc->base);
        shards_free(sc, i);
        goto fail;
    }
    *out = &sc->base;
    return PC_OK;

fail:
    pc__free_aligned(sc->shards, sizeof *sc->shards * n, 64);
    pc__core_fini(&sc->base);
    pc__free_aligned(sc, sizeof *sc, 64);
    return PC_ENOMEM;
}

void pc__policy_destroy(pc_cache *c)
{
    struct shard_cache *sc = sc_of(c);

    pc__core_shutdown(c);
    shards_free(sc, sc->nshards);
    pc__free_aligned(sc->shards, sizeof *sc->shards * sc->nshards, 64);
    pc__core_fini(c);
    pc__free_aligned(sc, sizeof *sc, 64);
}

/* ---- reads ---- */

/* shard_lookup's rare path: the entry found was unlinked meanwhile and
 * its header reused (entry.h): look again, as often as that happens. */
static __attribute__((noinline, cold)) struct pc__kv *
lookup_again(pc_cache *c, uint64_t h, const void *key, size_t klen)
{
    struct shard_cache *sc = sc_of(c);
    const struct pc__index *ix = &shard_of(sc, h)->ix;

    for (;;) {
        struct pc__kv *kv = pc__index_get(ix, h, key, klen);
        int visible = kv != NULL ? pc__core_visible(c, kv) : 0;

        if (visible > 0) {
            pc__kv_touch(kv, sc->max_ref);
            return kv;
        }
        if (visible == 0)
            return NULL;
    }
}

/* Inside the caller's read section: find key and mark the use. NULL on a
 * miss (an expired entry is one). */
static inline struct pc__kv *shard_lookup(pc_cache *c, struct pc__record *t,
                                          uint64_t h, const void *key,
                                          size_t klen)
{
    struct shard_cache *sc = sc_of(c);
    struct pc__kv *kv = pc__index_get(&shard_of(sc, h)->ix, h, key, klen);
    int visible;

    (void)t;
    if (kv == NULL)
        return NULL;
    visible = pc__core_visible(c, kv);
    if (__builtin_expect(visible <= 0, 0))
        return visible == 0 ? NULL : lookup_again(c, h, key, klen);
    pc__kv_touch(kv, sc->max_ref);
    return kv;
}

pc_status pc__policy_get(pc_cache *c, const void *key, size_t klen, void *buf,
                         size_t bufcap, size_t *vlen, bool count)
{
    return pc__core_get(c, shard_lookup, key, klen, buf, bufcap, vlen, count);
}

pc_status pc__policy_pin(pc_cache *c, const void *key, size_t klen, pc_pin *pin)
{
    return pc__core_pin(c, shard_lookup, key, klen, pin);
}

/* ---- bytes a shard owes, or holds as credit (shard lock held;
 * shard_state.h) ---- */

/* s's entries hold `delta` bytes more (fewer if negative) than the cache's
 * count has been told. */
static inline void owe(struct shard *s, int64_t delta)
{
    __atomic_store_n(&s->owed, s->owed + delta, __ATOMIC_RELAXED);
}

/* Bytes the cache's count holds for s beyond its entries' (its credit). */
static inline uint64_t credit_of(const struct shard *s)
{
    return s->owed < 0 ? (uint64_t)-s->owed : 0;
}

/* Under a bound (a put that may not owe): `bytes` that a put into s no
 * longer needs (a smaller replacement's, its victims' beyond its own)
 * become s's credit, up to the bound >> credit_shift; the rest goes back
 * to the cache's count. */
static inline void give_bytes(struct shard_cache *sc, struct shard *s,
                              uint64_t bytes)
{
    int64_t least = -(int64_t)(__atomic_load_n(&sc->base.max_bytes,
                                               __ATOMIC_RELAXED) >>
                               sc->credit_shift),
            owed = s->owed - (int64_t)bytes;

    if (owed < least) {
        pc__budget_give(&sc->base, 0, (uint64_t)(least - owed));
        owed = least;
    }
    __atomic_store_n(&s->owed, owed, __ATOMIC_RELAXED);
}

/* Under a bound: claim `bytes` for a put into s from its credit, the rest
 * from the cache's count (then *claimed is set); false, nothing claimed,
 * if that would pass the bound. */
static __attribute__((noinline)) bool take_bytes(pc_cache *c, struct shard *s,
                                                 uint64_t bytes, bool *claimed)
{
    uint64_t credit = credit_of(s);

    if (credit < bytes) {
        if (!pc__budget_take(c, false, bytes - credit))
            return false;
        *claimed = true;
        bytes = credit;
    }
    owe(s, (int64_t)bytes);
    return true;
}

/* Under a bound, s's credit back to the cache's count: a limit being
 * enforced (shed) counts what the entries hold, and a put that finds no
 * room anywhere must not be kept out by credit (evict_elsewhere sheds
 * every other shard; the put's own takes its shard's credit first). */
static __attribute__((noinline, cold)) void return_credit(pc_cache *c,
                                                          struct shard *s)
{
    if (s->owed < 0 && __atomic_load_n(&c->max_bytes, __ATOMIC_RELAXED) != 0) {
        pc__budget_give(c, 0, credit_of(s));
        owe(s, -s->owed);
    }
}

/* Whether a put into a shard, under its lock, may leave its byte change
 * there (and the bound it then checks, *max): no bound, and no
 * pc_set_max_bytes settling the shards to set one. A put that locks a
 * shard after a setter settled it sees the setter's raise (the lock orders
 * them); if it reads the raise undone, it synchronizes with the lowering
 * (acquire, release), so reads the setter's bound or a later one. Hence
 * settling first: a bound read first could be older than the setter's
 * store, and the lowering then read after it. */
static inline bool may_owe(const pc_cache *c, uint64_t *max)
{
    unsigned int settling = __atomic_load_n(&c->settling, __ATOMIC_ACQUIRE);

#ifdef PC_DEBUG
    if (pc__debug_owe_hook != NULL)
        pc__debug_owe_hook();
#endif
    *max = __atomic_load_n(&c->max_bytes, __ATOMIC_RELAXED);
    return *max == 0 && settling == 0;
}

void pc__policy_settle(pc_cache *c)
{
    struct shard_cache *sc = sc_of(c);

    for (uint32_t i = 0; i < sc->nshards; i++) {
        struct shard *s = &sc->shards[i];

        pc__writer_lock(&s->w);
        if (s->owed != 0) {
            __atomic_add_fetch(&c->bytes, (uint64_t)s->owed, __ATOMIC_SEQ_CST);
            owe(s, -s->owed);
        }
        pc__writer_unlock(c, &s->w);
    }
}

/* pc__budget_take for a put into s: with no byte bound (owes), only the
 * entry is claimed from the counters, and the bytes are owed. Under a
 * bound, a replacement's bytes come from s's credit first; a new key's
 * claim is all from the counters, as an entry must be (else its victim's
 * room, passed to it, covers both without a shared write). */
static inline bool take_room(pc_cache *c, struct shard *s, bool owes,
                             bool one_more, uint64_t bytes)
{
    bool counted = false; /* (the caller treats any success as claimed) */

    if (!owes && !one_more && credit_of(s) != 0)
        return take_bytes(c, s, bytes, &counted);
    if (!owes)
        return pc__budget_take(c, one_more, bytes);
    if (!pc__budget_take_within(c, one_more, 0, 0))
        return false;
    owe(s, (int64_t)bytes);
    return true;
}

uint64_t pc__policy_bytes(const pc_cache *c)
{
    const struct shard_cache *sc =
        (const struct shard_cache *)((const char *)c -
                                     offsetof(struct shard_cache, base));
    uint64_t sum = __atomic_load_n(&c->bytes, __ATOMIC_RELAXED);

    /* (Each term may be "negative": with no bound, removals other than
     * evictions for a put take from the count, additions go to owed. The
     * whole, read while writes run, may miss one in flight: if it reads
     * below 0, it is read as 0.) */
    for (uint32_t i = 0; i < sc->nshards; i++)
        sum += (uint64_t)__atomic_load_n(&sc->shards[i].owed, __ATOMIC_RELAXED);
    return (int64_t)sum < 0 ? 0 : sum;
}

/* ---- removal helpers (shard lock held) ---- */

/* kv is out of the index and the policy: account for it and dispose.
 * Always inlined, as claim_here is: both are on every evicting put. */
static inline __attribute__((always_inline)) void gone(struct shard *s,
                                                       struct pc__kv *kv,
                                                       pc_removal_cause cause,
                                                       struct pc__removals *rm)
{
    if (pc__kv_flags(kv) & PC__KV_EXPIRES)
        s->expiring--;
    if (cause == PC_REMOVED_EVICTED)
        PC__COUNTER_INC(s->w.evictions);
    else if (cause == PC_REMOVED_EXPIRED)
        PC__COUNTER_INC(s->w.expirations);
    pc__removed(rm, s->w.rc, kv, cause);
}

/* The next victim of s (which holds an entry other than keep): an expired
 * entry if its queue has one, else the policy's choice, unlinked from the
 * policy either way. The policy may return keep (claim_here). */
static struct pc__kv *next_victim(struct shard_cache *sc, struct shard *s,
                                  struct pc__now now, const struct pc__kv *keep)
{
    struct pc__kv *v = pc__exq_due(&s->exq, now.ms)
                           ? pc__shard_take_expired(sc, s, now, keep)
                           : NULL;

    return v != NULL ? v : sc->pol->victim(s->pol, now);
}

/* v, out of s's policy, leaves the index; its room returns to the
 * cache-wide budget. */
static void evicted(struct shard_cache *sc, struct shard *s, struct pc__kv *v,
                    struct pc__now now, struct pc__removals *rm)
{
    pc__index_erase(&s->ix, v);
    pc__budget_give(&sc->base, 1, pc__shard_payload(v));
    gone(s, v, pc__kv_expired(v, now) ? PC_REMOVED_EXPIRED : PC_REMOVED_EVICTED,
         rm);
}

/* Remove entries from s (lock held) until the budget has room for one
 * more entry (if need_entry) and `bytes` more bytes, or `max` have gone:
 * only entries its queue finds expired (!live: it stops when none is
 * due), or the policy's victims (expired ones first); under a bound, s's
 * credit goes back first. A put's room (whole: its entry's size, 0 for
 * none) stops the shedding once a bound lowered meanwhile is below it:
 * that room would never come, and the setter's own shrink keeps what fits
 * (without this, a put refused that way emptied every other shard).
 * Returns how many went. */
static __attribute__((noinline)) int
shed(struct shard_cache *sc, struct shard *s, bool live, bool need_entry,
     uint64_t bytes, uint64_t whole, int max, struct pc__now now,
     struct pc__removals *rm)
{
    struct pc__kv *v;
    int n = 0;

    if (s->owed < 0 && !pc__budget_room(&sc->base, need_entry, bytes))
        return_credit(&sc->base, s); /* before any entry goes */
    while (n < max && pc__shard_count(s) > 0 &&
           !pc__budget_room(&sc->base, need_entry, bytes) &&
           (whole == 0 || pc__budget_fits(&sc->base, whole))) {
        if (live)
            v = next_victim(sc, s, now, NULL);
        else if ((v = pc__shard_take_expired(sc, s, now, NULL)) == NULL)
            break;
        evicted(sc, s, v, now, rm);
        n++;
    }
    return n;
}

/* No lock held: evict from shards other than `avoid`, one lock at a time,
 * until the budget has room for one more entry (if need_entry) and `bytes`
 * more bytes, or nothing is left to evict, or the put's entry (`whole`
 * bytes) no longer fits the bound at all: every shard's expired entries
 * before any live one (a pass over the shards for each, the first only
 * when entries can expire). */
static __attribute__((noinline, cold)) void
evict_elsewhere(struct shard_cache *sc, struct shard *avoid, bool need_entry,
                uint64_t bytes, uint64_t whole, struct pc__now now,
                struct pc__removals *rm, struct pc__writer **w)
{
    unsigned int start =
        __atomic_fetch_add(&sc->cursor, 1, __ATOMIC_RELAXED) % sc->nshards;

    for (int live = now.ms == 0; live < 2; live++) {
        for (uint32_t k = 0; k < sc->nshards; k++) {
            struct shard *s = &sc->shards[(start + k) % sc->nshards];
            bool room;

            if (s == avoid)
                continue;
            pc__writer_lock(&s->w);
            now = pc__core_now_if_ttl(&sc->base);
            shed(sc, s, live, need_entry, bytes, whole, INT_MAX, now, rm);
            room = pc__budget_room(&sc->base, need_entry, bytes) ||
                   !pc__budget_fits(&sc->base, whole);
            pc__writer_unlock(&sc->base, &s->w);
            *w = &s->w;
            if (room)
                return; /* the retried put claims it (or evicts again) */
        }
    }
}

/* ---- writes ---- */

/* After an eviction (shard lock held): prefetch the index line the
 * shard's next eviction will erase from, as the policy foresees it
 * (shard.h, upcoming). Asked once the put has placed its entry, for a
 * new key: where the next eviction starts may depend on where insert put
 * it. */
static inline __attribute__((always_inline)) void
prefetch_upcoming(const struct shard_cache *sc, struct shard *s)
{
    if (sc->pol->upcoming != NULL) {
        const struct pc__kv *next = sc->pol->upcoming(s->pol);

        if (next != NULL)
            pc__index_prefetch_entry(&s->ix, next);
    }
}

/* Shard lock held: make room in the cache-wide budget for one more entry
 * (if one_more) and `bytes` more bytes, evicting s's policy victims, but
 * never `keep` (a key being replaced: if the policy offers it, it is put
 * back as just used once the claim is done): claim what is free, else take
 * the victims' own room in their place (their entry and bytes pass to the
 * put without touching the shared counters when they cover it, the common
 * case of a full cache; *claimed is set when room was taken from the
 * counters instead). False, nothing claimed, if s ran out of victims
 * first. With no byte bound (owes), the bytes are owed (shard_state.h):
 * only an entry is claimed or passed on. Always inlined into its two calls
 * in pc__policy_put: every evicting put runs it, and as a call it took
 * many arguments and returned two flags through memory. */
static inline __attribute__((always_inline)) bool
claim_here(struct shard_cache *sc, struct shard *s, struct pc__kv *keep,
           bool owes, bool one_more, uint64_t bytes, struct pc__now now,
           struct pc__removals *rm, bool *evicted, bool *claimed)
{
    pc_cache *c = &sc->base;
    uint64_t owned = 0; /* victims' bytes passed to us */
    bool have_entry = !one_more, ok = false;
    struct pc__kv *held = NULL; /* keep, taken out by the policy */

    if (owes && !one_more) { /* nothing to claim */
        owe(s, (int64_t)bytes);
        return true;
    }
    if (take_room(c, s, owes, one_more, bytes))
        return *claimed = true;
    /* While s holds an entry other than keep (keep, once held, is not in
     * the policy, so the policy still has one), and the whole entry can
     * fit at all (a bound lowered meanwhile: the retry refuses the put). */
    while (pc__shard_count(s) > (keep != NULL) &&
           pc__budget_fits(c, keep != NULL ? bytes + pc__shard_payload(keep)
                                           : bytes)) {
        struct pc__kv *v = next_victim(sc, s, now, keep);
        bool expired;

        if (v == keep) {
            held = keep;
            continue;
        }
        expired = pc__kv_expired(v, now);
        pc__index_erase(&s->ix, v);
        owned += pc__shard_payload(v);
        if (have_entry)
            pc__budget_give(c, 1, 0); /* one entry more than needed */
        have_entry = true;
        gone(s, v, expired ? PC_REMOVED_EXPIRED : PC_REMOVED_EVICTED, rm);
        *evicted = true;
        if (owned >= bytes || owes) {
            if (owes)
                owe(s, (int64_t)(bytes - owned)); /* (wraps to < 0) */
            else if (owned > bytes)
                give_bytes(sc, s, owned - bytes);
            ok = true;
            break;
        }
        if (take_bytes(c, s, bytes - owned, claimed)) {
            ok = true;
            break;
        }
    }
    if (held != NULL)
        sc->pol->keep(s->pol, held);
    if (*evicted && !one_more) /* (a new key's put asks after insert) */
        prefetch_upcoming(sc, s);
    if (!ok) /* give back what was passed to us */
        pc__budget_give(c, have_entry && one_more ? 1 : 0, owes ? 0 : owned);
    if (!ok && owes)
        owe(s, -(int64_t)owned);
    return ok;
}

/* The put of a new key into s, whose policy has no room for one entry
 * more (s holds all it can: a frequency shard, 130,150,496 entries), when
 * it must evict anyway (the budget has no room): its victim goes first,
 * from s, so that s needs room for no more than it holds, as in a full
 * cache a new key evicts one entry. False, nothing changed, if the put
 * would not evict or the policy cannot hold even that. Shard lock held,
 * after every reserve that can fail. */
static __attribute__((noinline, cold)) bool
evict_at_limit(struct shard_cache *sc, struct shard *s, bool owes,
               uint64_t size, struct pc__now now, struct pc__removals *rm)
{
    if (pc__shard_count(s) == 0 ||
        pc__budget_room(&sc->base, true, owes ? 0 : size) ||
        !sc->pol->reserve(s->pol, pc__shard_count(s)))
        return false;
    evicted(sc, s, next_victim(sc, s, now, NULL), now, rm);
    return true;
}

/* Remove kv, an entry of s found expired at now, still in the policy
 * (shard lock held): a put's old entry, or pc_expire's. */
static __attribute__((noinline)) void
drop_expired(struct shard_cache *sc, struct shard *s, struct pc__kv *kv,
             struct pc__now now, struct pc__removals *rm)
{
    sc->pol->remove(s->pol, kv);
    evicted(sc, s, kv, now, rm); /* (reported as expired) */
}

pc_status pc__policy_put(pc_cache *c, uint64_t h, const void *key, size_t klen,
                         const void *val, size_t vlen, struct pc__put_req *req,
                         struct pc__removals *rm, struct pc__writer **w)
{
    struct shard_cache *sc = sc_of(c);
    const struct pc__shard_policy *pol = sc->pol;
    struct shard *s = shard_of(sc, h);
    uint64_t size = (uint64_t)klen + vlen, max;
    struct pc__now now;
    struct pc__kv *kv, *old, **old_slot;
    pc_status st = PC_OK;

    /* The lookup under the lock starts with a cache miss on the key's home
     * chunk: start it now, to overlap the entry's allocation and copy. */
    pc__index_prefetch_home(&s->ix, h);
    kv = pc__core_entry_new(c, h, key, klen, val, vlen, req->expires);
    if (kv == NULL) {
        if (req->lease != NULL)
            pc__policy_lease_end(c, req->lease);
        return PC_ENOMEM;
    }
    if (pol->prefetch != NULL)
        pol->prefetch(s->pol, (uint32_t)h);
    *w = &s->w;
    for (;;) {
        bool evicted = false, claimed = false, covered = false, stale, owes;
        struct pc__index_pos pos, *at = NULL; /* kv's, if known */
        uint64_t was;

        pc__debug_prelock();
        pc__writer_lock(&s->w);
        now = pc__core_now_if_ttl(c); /* under the lock (core.h) */
        owes = may_owe(c, &max);
        if (max != 0 && size > max) {
            st = PC_EINVAL;
            goto refused;
        }
        /* (Under a bound no shard owes, it may hold credit: pc_set_max_bytes
         * settled them all before it set it.) */
        PC__ASSERT(max == 0 || s->owed <= 0);
        old = pc__index_find(&s->ix, h, key, klen, &old_slot);
        /* An expired old goes as the put commits (or is refused by its
         * conditions): the put is then a new key's, which must first
         * reserve as one, with nothing yet removed if that fails. */
        stale = old != NULL && pc__kv_expired(old, now);
        /* The lease stays registered until this put commits or refuses:
         * the lock is released between tries, and a write meanwhile must
         * still break it. */
        if (pc__put_refused(req, old != NULL && !stale, &st)) {
            if (stale)
                drop_expired(sc, s, old, now, rm);
            goto refused;
        }
        /* What can fail, before anything changes. A replacement takes
         * old's place in the index and the policy, and the shard will not
         * hold more entries than now, even if it evicts others to make
         * room for its bytes (the policy then hands old back, keep): it
         * needs no room in either (and the index cannot grow under
         * old_slot; a growth for an entry that never comes could only
         * fail the put). The policy's reserve comes last: it may change
         * what the policy remembers (the frequency policy's ghost, rebuilt
         * larger, forgets its words), so nothing after it may fail. */
        if (((old == NULL || stale) &&
             !pc__index_reserve(&s->ix, pc__shard_count(s) + 1, s->w.rc)) ||
            (req->expires != 0 && !pc__shard_exq_room(sc, s))) {
            st = PC_ENOMEM;
            goto refused;
        }
        if ((old == NULL || stale) &&
            !pol->reserve(s->pol, pc__shard_count(s) + 1)) {
            if (stale || !evict_at_limit(sc, s, owes, size, now, rm)) {
                st = PC_ENOMEM;
                goto refused;
            }
            evicted = true;
        }
        if (stale) {
            drop_expired(sc, s, old, now, rm);
            old = NULL;
        }
        was = old != NULL ? pc__shard_payload(old) : 0;
        if (old != NULL) {
            /* A replacement needs room only for the bytes it adds. */
            if (size <= was) {
                if (size < was && owes)
                    owe(s, -(int64_t)(was - size));
                else if (size < was)
                    give_bytes(sc, s, was - size);
                pc__index_replace_at(&s->ix, old_slot, kv);
            } else if (claim_here(sc, s, old, owes, false, size - was, now, rm,
                                  &evicted, &claimed)) {
                pc__index_put(&s->ix, h, kv, &old, s->w.rc); /* no growth */
            } else {
                /* Nothing left here to evict but the key itself. */
                pc__writer_unlock(c, &s->w);
                if (pc__budget_fits(c, size))
                    evict_elsewhere(sc, s, false, size - was, size, now, rm, w);
                continue; /* old is still there, or gone meanwhile */
            }
            pol->replace(s->pol, old, kv);
            if (pc__kv_flags(old) & PC__KV_EXPIRES) {
                s->expiring--;
                /* kv took old's position: old's item covers it too if
                 * it is due no later than kv expires (exq.h). */
                covered =
                    pc__kv_expires(old, pc__core_origin(c)) <= req->expires;
            }
            pc__removed(rm, s->w.rc, old, PC_REMOVED_REPLACED);
        } else {
            if (pc__shard_count(s) == 0 && !owes && s->owed < 0)
                return_credit(c, s); /* no victim here to use it */
            if (pc__shard_count(s) == 0 &&
                !(claimed = take_room(c, s, owes, true, size))) {
                pc__writer_unlock(c, &s->w);
                if (pc__budget_fits(c, size))
                    evict_elsewhere(sc, s, true, size, size, now, rm, w);
                continue;
            }
            /* (With no entry held, the claim above succeeded.) */
            if (pc__shard_count(s) != 0) {
                if (!claim_here(sc, s, NULL, owes, true, size, now, rm,
                                &evicted, &claimed)) {
                    /* The shard emptied and the bytes still do not fit. */
                    pc__writer_unlock(c, &s->w);
                    if (pc__budget_fits(c, size))
                        evict_elsewhere(sc, s, true, size, size, now, rm, w);
                    continue;
                }
            }
            pos = pc__index_insert(&s->ix, h, kv); /* room reserved */
            at = &pos;
            pol->insert(s->pol, kv, (uint32_t)h, evicted);
            if (evicted)
                prefetch_upcoming(sc, s);
        }
        if (req->expires != 0) {
            s->expiring++;
            /* A new key is covered by an item for an earlier occupant of
             * its position if the item is due no later than kv expires
             * (exq.h; pc__shard_exq_room sized the marks for today's table). */
            if (!covered &&
                (at == NULL || !pc__exq_covered(&s->exq, pos, req->expires)))
                pc__shard_exq_note(sc, s, kv, req->expires, at);
        }
        /* A limit lowered while this put claimed against the old one: the
         * shrink may have passed this shard already (core.h). */
        if (claimed)
            shed(sc, s, true, false, 0, 0, INT_MAX, now, rm);
        if (req->lease != NULL)
            pc__lease_unlink(&s->w.leases, req->lease);
        pc__leases_break(s->w.leases, h, false);
        PC__COUNTER_INC(s->w.puts);
        pc__writer_unlock(c, &s->w);
        return PC_OK;
    }

refused:
    if (req->lease != NULL)
        pc__lease_unlink(&s->w.leases, req->lease);
    pc__writer_unlock(c, &s->w);
    pc__free(kv, pc__kv_alloc_size(kv));
    return st;
}

pc_status pc__policy_delete(pc_cache *c, const void *key, size_t klen,
                            struct pc__removals *rm, struct pc__writer **w)
{
    struct shard_cache *sc = sc_of(c);
    uint64_t h = pc__hash_key(&c->seed, key, klen);
    struct shard *s = shard_of(sc, h);
    struct pc__now now;
    struct pc__kv *kv;
    bool expired = false;

    *w = &s->w;
    pc__writer_lock(&s->w);
    now = pc__core_now_if_ttl(c);
    kv = pc__index_remove(&s->ix, h, key, klen);
    if (kv != NULL) {
        expired = pc__kv_expired(kv, now);
        sc->pol->remove(s->pol, kv);
        pc__budget_give(c, 1, pc__shard_payload(kv));
        if (!expired)
            PC__COUNTER_INC(s->w.deletes);
        gone(s, kv, expired ? PC_REMOVED_EXPIRED : PC_REMOVED_DELETED, rm);
    }
    pc__leases_break(s->w.leases, h, false);
    pc__writer_unlock(c, &s->w);
    return kv != NULL && !expired ? PC_OK : PC_NOTFOUND;
}

/* each() callbacks: argument for removing what they are given. */
struct sweep {
    struct shard_cache *sc;
    struct shard *s;
    struct pc__removals *rm;
    struct pc__now now;
    size_t removed;
    uint64_t bytes; /* their klen + vlen (clear_cb) */
};

static void clear_cb(void *arg, struct pc__kv *kv)
{
    struct sweep *sw = arg;

    pc__index_erase(&sw->s->ix, kv);
    sw->removed++;
    sw->bytes += pc__shard_payload(kv);
    pc__removed(sw->rm, sw->s->w.rc, kv, PC_REMOVED_CLEARED);
}

void pc__policy_clear(pc_cache *c, struct pc__removals *rm,
                      struct pc__writer **w)
{
    struct shard_cache *sc = sc_of(c);

    *w = &sc->shards[0].w; /* (set for the compiler: the loop sets it) */
    for (uint32_t i = 0; i < sc->nshards; i++) {
        struct shard *s = &sc->shards[i];
        struct sweep sw = {sc, s, rm, {0, 0}, 0, 0};
        bool absorb;

        pc__writer_lock(&s->w);
        sc->pol->each(s->pol, clear_cb, &sw);
        sc->pol->reset(s->pol);
        pc__exq_free(&s->exq);
        s->expiring = 0;
        /* With no bound, what s owes absorbs the bytes removed, if it owes
         * any, so that nothing moves between it and the cache's count (a
         * concurrent pc_bytes would miss what moved). Under a bound they
         * go back to the count, and its credit with them. */
        absorb = s->owed != 0 &&
                 __atomic_load_n(&c->max_bytes, __ATOMIC_RELAXED) == 0;
        pc__budget_give(c, sw.removed, absorb ? 0 : sw.bytes);
        if (absorb)
            owe(s, -(int64_t)sw.bytes);
        else
            return_credit(c, s);
        pc__leases_break(s->w.leases, 0, true);
        pc__writer_unlock(c, &s->w);
        *w = &s->w;
    }
}

static void expire_cb(void *arg, struct pc__kv *kv)
{
    struct sweep *sw = arg;

    if (!pc__kv_expired(kv, sw->now))
        return;
    drop_expired(sw->sc, sw->s, kv, sw->now, sw->rm);
    sw->removed++;
}

size_t pc__policy_expire(pc_cache *c, struct pc__removals *rm,
                         struct pc__writer **w)
{
    struct shard_cache *sc = sc_of(c);
    struct sweep sw = {sc, NULL, rm, {0, 0}, 0, 0};

    *w = &sc->shards[0].w; /* (set for the compiler: the loop sets it) */
    for (uint32_t i = 0; i < sc->nshards; i++) {
        struct shard *s = &sc->shards[i];

        sw.s = s;
        pc__writer_lock(&s->w);
        sw.now = pc__core_now_if_ttl(c);
        if (sw.now.ms != 0)
            sc->pol->each(s->pol, expire_cb, &sw);
        pc__writer_unlock(c, &s->w);
        *w = &s->w;
    }
    return sw.removed;
}

void pc__policy_shrink(pc_cache *c, struct pc__removals *rm,
                       struct pc__writer **w)
{
    struct shard_cache *sc = sc_of(c);
    struct pc__now now = pc__core_now_if_ttl(c);

    *w = &sc->shards[0].w; /* (set for the compiler: the loop sets it) */
    /* Round robin, a few entries per lock, until within both limits: the
     * expired entries of every shard first, then the policies' victims. */
    for (int live = now.ms == 0; live < 2; live++) {
        for (uint32_t k = 0, idle = 0; idle < sc->nshards; k++) {
            struct shard *s = &sc->shards[k % sc->nshards];
            int n;

            pc__writer_lock(&s->w);
            now = pc__core_now_if_ttl(c);
            n = shed(sc, s, live, false, 0, 0, 16, now, rm);
            pc__writer_unlock(c, &s->w);
            *w = &s->w;
            if (pc__budget_room(c, false, 0))
                return;
            idle = n == 0 ? idle + 1 : 0;
        }
    }
}

/* Each shard is sized for what the limits let it hold: its share of the
 * capacity, or, under a byte bound, what it holds now (at least). A
 * smaller index table moves every entry: the expiry queue's positions and
 * marks are of the old table, so the queue is rebuilt at once (exq.h),
 * its marks made anew at the new table's size if memory allows (else the
 * rebuild clears the old ones, a few bytes too many). */
void pc__policy_trim(pc_cache *c)
{
    struct shard_cache *sc = sc_of(c);

    for (uint32_t i = 0; i < sc->nshards; i++) {
        struct shard *s = &sc->shards[i];
        size_t n, room;

        pc__writer_lock(&s->w);
        n = room = pc__shard_count(s);
        if (__atomic_load_n(&c->max_bytes, __ATOMIC_RELAXED) == 0) {
            size_t share =
                share_of(__atomic_load_n(&c->capacity, __ATOMIC_RELAXED),
                         sc->nshards, i);

            n = n > share ? n : share;
            /* The table with room for the keys' spread, as at creation. */
            room = pc__index_room(share, sc->nshards);
            room = room > n ? room : n;
        }
        if (pc__index_trim(&s->ix, room, s->w.rc)) {
            size_t chunks = pc__index_chunk_count(&s->ix);

            if (s->exq.nmarks > chunks)
                pc__exq_mark_room(&s->exq, chunks);
            pc__shard_exq_rebuild(sc, s);
        }
        if (sc->pol->trim != NULL)
            sc->pol->trim(s->pol, n);
        pc__writer_unlock(c, &s->w);
    }
}

/* ---- leases ---- */

void pc__policy_lease_begin(pc_cache *c, uint64_t h, struct pc__lease *l)
{
    struct shard *s = shard_of(sc_of(c), h);

    l->h = h;
    l->broken = false;
    l->owner = s;
    pc__writer_lock(&s->w);
    l->next = s->w.leases;
    s->w.leases = l;
    pc__writer_unlock(c, &s->w);
}

void pc__policy_lease_end(pc_cache *c, struct pc__lease *l)
{
    struct shard *s = l->owner;

    pc__writer_lock(&s->w);
    pc__lease_unlink(&s->w.leases, l);
    pc__writer_unlock(c, &s->w);
}
