/*
 * lru: exact LRU over the whole cache, with lock-free lookups.
 *
 * Algorithm. Recency is a global logical clock. Every use of a key (a get
 * that finds it, a put of it) draws a fresh value from the clock and raises
 * the entry's `stamp` to it; the least recently used entry is therefore the
 * one with the smallest stamp. Writers keep a binary min-heap of entries
 * keyed by `heap_key`, the stamp an entry had when the writer last placed
 * it. Readers raise stamps without telling the heap, so heap_key <= stamp
 * always holds, and the heap is repaired lazily at eviction: pop the minimum;
 * if its stamp still equals its heap_key, no entry can have a smaller stamp
 * (every other stamp >= its heap_key >= this one), so it is the exact LRU
 * victim; otherwise re-key it with its current stamp, sift it down and look
 * again. Each read causes at most one such re-key, so eviction is amortised
 * O(log n) per operation. Single-threaded, this is op for op the textbook
 * LRU (an OrderedDict with move_to_end): same hits, same victims.
 *
 * Concurrency argument (all writers hold `lock`; readers take none).
 *  - Lookups go through the ck_hs index inside an epoch section, as in
 *    clock.c; retired entries and old tables are freed after a grace period.
 *  - A reader that finds entry e takes ts = ++clock and raises e->stamp to ts
 *    with a CAS loop. The writer claims a victim with CAS(stamp: heap_key ->
 *    STAMP_REMOVED), so a promotion and an eviction of the same entry are
 *    ordered by that one word: if the promotion lands first the CAS fails and
 *    the writer re-keys e (it is no longer the LRU); if the eviction lands
 *    first the reader sees STAMP_REMOVED and reports a miss, linearised just
 *    after the eviction. Deletes mark STAMP_REMOVED the same way.
 *  - Replacement publishes the new entry with ck_hs_set (one pointer store)
 *    and then marks the old one STAMP_REPLACED; a reader that reaches the
 *    old entry after that retries its lookup and finds the new one.
 *  - A put that evicts changes two keys (adds one, removes another), which
 *    readers must see happen at once. It runs inside a sequence-lock window:
 *    `seq` is odd while the new key is published and the victim unlinked,
 *    and readers whose lookup overlapped an odd or changed `seq` retry.
 * pc_clear uses the same window, so it is atomic too.
 *  - Recency order must agree with the linearisation order, or a later
 *    eviction picks a victim the reference LRU would not. A hit is
 *    linearised when it draws its stamp (its entry was reachable from its
 *    lookup until its CAS succeeds, so it was present then), and a put when
 *    it publishes; but a put draws its stamp before it publishes. So a put
 *    draws it by making the clock odd (a stamp window) and makes it even
 *    again only when its change is complete; a reader that draws an odd
 *    stamp retries after the window. No read stamp therefore falls between
 *    a put's stamp and its publication, and stamp order is linearisation
 *    order. (Without the window, a hit on A stamped between put B's stamp
 *    and its publication made A look more recent than B although it was
 *    linearised before B: the linearizability test found such histories.)
 * Linearisation points: get, when it draws its stamp (a miss: the lookup, or
 * the eviction or delete that beat its CAS); put, the ck_hs store of the new
 * entry; delete, the exchange that marks STAMP_REMOVED.
 *
 * Cost of strictness: one shared fetch-and-add and one CAS per hit, and a
 * reader that meets a put's stamp window or an evicting put's two-key window
 * waits for it to close (a few hundred nanoseconds under the lock), so a
 * reader can wait for a preempted writer. The benchmark measures it against a
 * plain mutex + list LRU.
 */
#include <pthread.h>
#include <stddef.h>
#include <string.h>

#include "alloc.h"
#include "epoch.h"
#include "flight.h"
#include "index.h"
#include "policy.h"
#include "readpath.h"

#define STAMP_REMOVED UINT64_MAX
#define STAMP_REPLACED (UINT64_MAX - 1)

struct lru_entry {
    uint64_t stamp;    /* last use, or a STAMP_ sentinel; atomic */
    uint64_t heap_key; /* writer-only */
    uint32_t heap_idx; /* writer-only */
    uint32_t pad;
    struct pc_kv kv; /* last: key and value bytes follow */
};

struct pc_cache {
    struct pc_domain dom;
    struct pc_hash_seed seed;
    size_t capacity;
    pthread_mutex_t lock;
    struct pc_index ix;
    struct pc_reclaimer *rc;
    struct lru_entry **heap;
    size_t heap_len, heap_cap;
    size_t count; /* relaxed reads by pc_len */
    uint64_t puts, evictions, deletes;
    struct pc_flights *flights;
    pthread_mutex_t reclaim_lock;                /* one pc_reclaim at a time */
    uint64_t seq __attribute__((aligned(64)));   /* odd: two-key change */
    uint64_t clock __attribute__((aligned(64))); /* recency clock */
} __attribute__((aligned(64)));

#define ENTRY_OF(kvp)                                                          \
    ((struct lru_entry *)((char *)(kvp)-offsetof(struct lru_entry, kv)))

const char *policy_name(void)
{
    return "lru";
}

static void entry_free(struct pc_kv *kv)
{
    pc_free(ENTRY_OF(kv), sizeof(struct lru_entry) + kv->klen + kv->vlen);
}

/*
 * The recency clock. Readers draw even stamps (+2); a writer draws its odd
 * stamp by opening a stamp window (+1) before it publishes anything and
 * closes it (+1) once its change is complete. A reader that draws an odd
 * value has met an open window and retries after it (reader_tick).
 */
static inline uint64_t reader_tick(pc_cache *c)
{
    return __atomic_add_fetch(&c->clock, 2, __ATOMIC_ACQ_REL);
}

static inline uint64_t stamp_window_open(pc_cache *c)
{
    uint64_t ts = __atomic_add_fetch(&c->clock, 1, __ATOMIC_SEQ_CST);

    /* Nothing this put publishes may become visible before the odd clock
     * (ck_hs stores are plain stores). */
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    return ts;
}

static inline void stamp_window_close(pc_cache *c)
{
    __atomic_add_fetch(&c->clock, 1, __ATOMIC_RELEASE);
}

/* ---- min-heap on heap_key (writer-only) ---- */

static void heap_set(pc_cache *c, size_t i, struct lru_entry *e)
{
    c->heap[i] = e;
    e->heap_idx = (uint32_t)i;
}

static void heap_sift_up(pc_cache *c, size_t i)
{
    struct lru_entry *e = c->heap[i];

    while (i > 0) {
        size_t parent = (i - 1) / 2;

        if (c->heap[parent]->heap_key <= e->heap_key)
            break;
        heap_set(c, i, c->heap[parent]);
        i = parent;
    }
    heap_set(c, i, e);
}

static void heap_sift_down(pc_cache *c, size_t i)
{
    struct lru_entry *e = c->heap[i];

    for (;;) {
        size_t l = 2 * i + 1, m = i;
        uint64_t mk = e->heap_key;

        if (l < c->heap_len && c->heap[l]->heap_key < mk)
            m = l, mk = c->heap[l]->heap_key;
        if (l + 1 < c->heap_len && c->heap[l + 1]->heap_key < mk)
            m = l + 1;
        if (m == i)
            break;
        heap_set(c, i, c->heap[m]);
        i = m;
    }
    heap_set(c, i, e);
}

static bool heap_reserve(pc_cache *c)
{
    struct lru_entry **h;
    size_t ncap;

    if (c->heap_len < c->heap_cap)
        return true;
    ncap = c->heap_cap ? c->heap_cap * 2 : 64;
    if (ncap > c->capacity)
        ncap = c->capacity;
    h = pc_alloc(sizeof *h * ncap);
    if (h == NULL)
        return false;
    if (c->heap_len)
        memcpy(h, c->heap, sizeof *h * c->heap_len);
    pc_free(c->heap, sizeof *h * c->heap_cap);
    c->heap = h;
    c->heap_cap = ncap;
    return true;
}

static void heap_push(pc_cache *c, struct lru_entry *e)
{
    heap_set(c, c->heap_len++, e);
    heap_sift_up(c, e->heap_idx);
}

static void heap_remove(pc_cache *c, struct lru_entry *e)
{
    size_t i = e->heap_idx;
    struct lru_entry *last = c->heap[--c->heap_len];

    if (last == e)
        return;
    heap_set(c, i, last);
    if (i > 0 && c->heap[(i - 1) / 2]->heap_key > last->heap_key)
        heap_sift_up(c, i);
    else
        heap_sift_down(c, i);
}

/* Claim the exact LRU entry (heap non-empty); it is marked STAMP_REMOVED
 * and out of the heap on return, still in the index. */
static struct lru_entry *claim_victim(pc_cache *c)
{
    for (;;) {
        struct lru_entry *e = c->heap[0];
        uint64_t cur = __atomic_load_n(&e->stamp, __ATOMIC_ACQUIRE);

        if (cur != e->heap_key) {
            e->heap_key = cur;
            heap_sift_down(c, 0);
            continue;
        }
        if (__atomic_compare_exchange_n(&e->stamp, &cur, STAMP_REMOVED, false,
                                        __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
            heap_remove(c, e);
            return e;
        }
    }
}

static void writer_lock(pc_cache *c)
{
    pthread_mutex_lock(&c->lock);
    index_writer_begin(c->rc);
}

static void writer_unlock(pc_cache *c)
{
    bool advance;
    struct pc_kv *ready = reclaimer_poll(c->rc, &advance);

    index_writer_end();
    pthread_mutex_unlock(&c->lock);
    reclaimer_after_unlock(c->rc, ready, advance);
}

static void window_open(pc_cache *c)
{
    __atomic_store_n(&c->seq, c->seq + 1, __ATOMIC_RELAXED);
    __atomic_thread_fence(__ATOMIC_RELEASE);
}

static void window_close(pc_cache *c)
{
    __atomic_store_n(&c->seq, c->seq + 1, __ATOMIC_RELEASE);
}

pc_status policy_create(const pc_options *opts, pc_cache **out)
{
    pc_cache *c;
    size_t presize;

    if (opts->capacity > UINT32_MAX) /* heap positions are 32-bit */
        return PC_EINVAL;
    c = pc_alloc_aligned(sizeof *c, 64);
    if (c == NULL)
        return PC_ENOMEM;
    memset(c, 0, sizeof *c);
    c->capacity = opts->capacity;
    pthread_mutex_init(&c->reclaim_lock, NULL);
    pc_hash_seed_init(&c->seed, opts->hash_seed);
    c->flights = flights_create();
    if (c->flights == NULL)
        goto fail;
    if (domain_init(&c->dom) != 0)
        goto fail_flights;
    c->rc = reclaimer_create(&c->dom, entry_free);
    if (c->rc == NULL)
        goto fail_domain;
    presize = opts->capacity < (1ul << 20) ? opts->capacity : (1ul << 20);
    if (!index_init(&c->ix, &c->seed, presize))
        goto fail_rc;
    writer_mutex_init(&c->lock);
    *out = c;
    return PC_OK;

fail_rc:
    domain_unlink(&c->dom); /* before the reclaimer's record is freed */
    reclaimer_destroy(c->rc);
fail_domain:
    domain_fini(&c->dom);
fail_flights:
    flights_destroy(c->flights);
fail:
    pc_free(c, sizeof *c);
    return PC_ENOMEM;
}

void policy_destroy(pc_cache *c)
{
    domain_unlink(&c->dom); /* before the reclaimer's record is freed */
    for (size_t i = 0; i < c->heap_len; i++)
        entry_free(&c->heap[i]->kv);
    pc_free(c->heap, sizeof *c->heap * c->heap_cap);
    reclaimer_destroy(c->rc);
    index_destroy(&c->ix);
    pthread_mutex_destroy(&c->lock);
    domain_fini(&c->dom);
    flights_destroy(c->flights);
    pthread_mutex_destroy(&c->reclaim_lock);
    pc_free(c, sizeof *c);
}

/* Inside the caller's read section: find key and record the use (raise its
 * stamp); counts the lookup. NULL on a miss. */
static struct pc_kv *lru_lookup(pc_cache *c, struct pc_thread *t, uint64_t h,
                                const void *key, size_t klen)
{
    struct pc_probe probe;
    struct pc_kv *found = NULL;

    pc_probe_init(&probe, key, klen);
    for (;;) {
        uint64_t s1 = __atomic_load_n(&c->seq, __ATOMIC_ACQUIRE);
        struct pc_kv *kv;
        struct lru_entry *e;
        uint64_t ts, cur;

        if (s1 & 1) {
            ck_pr_stall();
            continue;
        }
        kv = index_get(&c->ix, h, &probe);
        __atomic_thread_fence(__ATOMIC_ACQUIRE);
        if (__atomic_load_n(&c->seq, __ATOMIC_RELAXED) != s1)
            continue;
        if (kv == NULL)
            break;
        e = ENTRY_OF(kv);
        ts = reader_tick(c);
        if (ts & 1) {
            /* A put is between drawing its stamp and completing: this use
             * must order after it, so look again once it is done. */
            while (__atomic_load_n(&c->clock, __ATOMIC_ACQUIRE) & 1)
                ck_pr_stall();
            continue;
        }
        cur = __atomic_load_n(&e->stamp, __ATOMIC_ACQUIRE);
        while (cur < ts) { /* sentinels are larger than any stamp */
            if (__atomic_compare_exchange_n(&e->stamp, &cur, ts, false,
                                            __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
                break;
        }
        if (cur == STAMP_REPLACED)
            continue;
        if (cur != STAMP_REMOVED)
            found = kv;
        break;
    }
    if (found != NULL)
        PC_COUNTER_INC(t->stats.hits);
    else
        PC_COUNTER_INC(t->stats.misses);
    return found;
}

pc_status policy_get(pc_cache *c, const void *key, size_t klen, void *buf,
                     size_t bufcap, size_t *vlen)
{
    return readpath_get(c, &c->dom, &c->seed, lru_lookup, key, klen, buf,
                        bufcap, vlen);
}

pc_status policy_pin(pc_cache *c, const void *key, size_t klen, pc_pin *pin)
{
    return readpath_pin(c, &c->dom, &c->seed, lru_lookup, key, klen, pin);
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
    struct lru_entry *e = pc_alloc(sizeof *e + klen + vlen);
    struct pc_probe probe;
    struct pc_kv *old;

    if (e == NULL)
        return PC_ENOMEM;
    kv_fill(&e->kv, key, klen, val, vlen);
    pc_probe_init(&probe, key, klen);
    writer_lock(c);
    old = index_get(&c->ix, h, &probe);
    if (old != NULL) {
        struct lru_entry *oe = ENTRY_OF(old);

        e->stamp = e->heap_key = stamp_window_open(c);
        index_upsert(&c->ix, h, &e->kv, &old); /* present: cannot fail */
        __atomic_exchange_n(&oe->stamp, STAMP_REPLACED, __ATOMIC_ACQ_REL);
        stamp_window_close(c);
        heap_set(c, oe->heap_idx, e);
        heap_sift_down(c, e->heap_idx);
        reclaimer_retire(c->rc, old);
    } else if (c->count < c->capacity) {
        e->stamp = e->heap_key = stamp_window_open(c);
        if (!heap_reserve(c) || !index_upsert(&c->ix, h, &e->kv, &old)) {
            stamp_window_close(c);
            goto nomem;
        }
        stamp_window_close(c);
        heap_push(c, e);
        __atomic_store_n(&c->count, c->count + 1, __ATOMIC_RELAXED);
    } else {
        struct lru_entry *victim;

        e->stamp = e->heap_key = stamp_window_open(c);
        window_open(c);
        if (!index_upsert(&c->ix, h, &e->kv, &old)) {
            window_close(c);
            stamp_window_close(c);
            goto nomem;
        }
        victim = claim_victim(c);
        index_remove(&c->ix, index_hash_of(&c->ix, &victim->kv), &victim->kv);
        window_close(c);
        stamp_window_close(c);
        heap_push(c, e);
        reclaimer_retire(c->rc, &victim->kv);
        PC_COUNTER_INC(c->evictions);
        index_maintain(&c->ix);
    }
    PC_COUNTER_INC(c->puts);
    writer_unlock(c);
    return PC_OK;

nomem:
    writer_unlock(c);
    pc_free(e, sizeof *e + klen + vlen);
    return PC_ENOMEM;
}

pc_status policy_delete(pc_cache *c, const void *key, size_t klen)
{
    uint64_t h = pc_hash_key(&c->seed, key, klen);
    struct pc_probe probe;
    struct pc_kv *kv;

    pc_probe_init(&probe, key, klen);
    writer_lock(c);
    kv = index_get(&c->ix, h, &probe);
    if (kv != NULL) {
        struct lru_entry *e = ENTRY_OF(kv);

        __atomic_exchange_n(&e->stamp, STAMP_REMOVED, __ATOMIC_ACQ_REL);
        index_remove(&c->ix, h, kv);
        heap_remove(c, e);
        __atomic_store_n(&c->count, c->count - 1, __ATOMIC_RELAXED);
        reclaimer_retire(c->rc, kv);
        PC_COUNTER_INC(c->deletes);
        index_maintain(&c->ix);
    }
    writer_unlock(c);
    return kv != NULL ? PC_OK : PC_NOTFOUND;
}

size_t policy_len(const pc_cache *c)
{
    return __atomic_load_n(&c->count, __ATOMIC_RELAXED);
}

size_t policy_capacity(const pc_cache *c)
{
    return c->capacity;
}

void policy_clear(pc_cache *c)
{
    bool fresh;

    writer_lock(c);
    window_open(c);
    fresh = index_reset(&c->ix);
    for (size_t i = 0; i < c->heap_len; i++) {
        struct lru_entry *e = c->heap[i];

        __atomic_exchange_n(&e->stamp, STAMP_REMOVED, __ATOMIC_ACQ_REL);
        if (!fresh)
            index_remove(&c->ix, index_hash_of(&c->ix, &e->kv), &e->kv);
        reclaimer_retire(c->rc, &e->kv);
    }
    c->heap_len = 0;
    __atomic_store_n(&c->count, 0, __ATOMIC_RELAXED);
    window_close(c);
    if (!fresh)
        index_maintain(&c->ix);
    writer_unlock(c);
}

void policy_reclaim(pc_cache *c)
{
    struct pc_kv *chain = NULL;
    bool ok;

    /* The writer lock is not held while waiting for readers: a pinned
     * reader may be about to take it (epoch.c, drain). */
    pthread_mutex_lock(&c->reclaim_lock);
    pthread_mutex_lock(&c->lock);
    reclaimer_drain_detach(c->rc);
    pthread_mutex_unlock(&c->lock);
    ok = reclaimer_drain_wait(&c->dom);
    pthread_mutex_lock(&c->lock);
    if (ok)
        chain = reclaimer_drain_finish(c->rc);
    else
        reclaimer_drain_abort(c->rc);
    pthread_mutex_unlock(&c->lock);
    reclaimer_free(c->rc, chain);
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
    out->puts = PC_COUNTER_READ(c->puts);
    out->evictions = PC_COUNTER_READ(c->evictions);
    out->deletes = PC_COUNTER_READ(c->deletes);
}
