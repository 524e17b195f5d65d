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
 *  - Lookups go through the index inside an epoch section, as in
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
 *    readers must see happen at once. It runs inside a sequence lock (the
 *    "two-key seqlock", seq_begin/seq_end): `seq` is odd while the new key
 *    is published and the victim unlinked, and readers whose lookup
 *    overlapped an odd or changed `seq` retry. pc_clear uses the same
 *    seqlock, so it is atomic too.
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
 * reader that meets a put's stamp window or an evicting put's two-key seqlock
 * waits for it to close (a few hundred nanoseconds under the lock), so a
 * reader can wait for a preempted writer. The benchmark measures it against a
 * plain mutex + list LRU.
 */
#include <stddef.h>
#include <string.h>

#include "alloc.h"
#include "core.h"
#include "index.h"
#include "policy.h"

#define STAMP_REMOVED UINT64_MAX
#define STAMP_REPLACED (UINT64_MAX - 1)

struct lru_entry {
    uint64_t stamp;    /* last use, or a STAMP_ sentinel; atomic */
    uint64_t heap_key; /* writer-only */
    uint32_t heap_idx; /* writer-only */
    uint32_t pad;
    struct pc__kv kv; /* last: key and value bytes follow */
};

struct lru_cache {
    struct pc_cache base;
    struct pc__writer w; /* the cache's one writer lock */
    struct pc__index ix;
    struct lru_entry **heap;
    size_t heap_len, heap_cap;
    size_t count;                                /* relaxed reads by pc_len */
    uint64_t seq __attribute__((aligned(64)));   /* odd: two-key change */
    uint64_t clock __attribute__((aligned(64))); /* recency clock */
} __attribute__((aligned(64)));

#define ENTRY_OF(kvp) PC__CONTAINER_OF(kvp, struct lru_entry, kv)

static inline struct lru_cache *lru_of(pc_cache *c)
{
    return PC__CONTAINER_OF(c, struct lru_cache, base);
}

const char *pc__policy_name(void)
{
    return "lru";
}

static void entry_free(struct pc__kv *kv)
{
    pc__free(ENTRY_OF(kv), sizeof(struct lru_entry) + kv->klen + kv->vlen);
}

/*
 * The recency clock. Readers draw even stamps (+2); a writer draws its odd
 * stamp by opening a stamp window (+1) before it publishes anything and
 * closes it (+1) once its change is complete. A reader that draws an odd
 * value has met an open window and retries after it (reader_tick).
 */
static inline uint64_t reader_tick(struct lru_cache *c)
{
    return __atomic_add_fetch(&c->clock, 2, __ATOMIC_ACQ_REL);
}

static inline uint64_t stamp_window_open(struct lru_cache *c)
{
    uint64_t ts = __atomic_add_fetch(&c->clock, 1, __ATOMIC_SEQ_CST);

    /* Nothing this put publishes may become visible before the odd clock
     * (ck_hs stores are plain stores). */
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    return ts;
}

static inline void stamp_window_close(struct lru_cache *c)
{
    __atomic_add_fetch(&c->clock, 1, __ATOMIC_RELEASE);
}

/* ---- min-heap on heap_key (writer-only) ---- */

static void heap_set(struct lru_cache *c, size_t i, struct lru_entry *e)
{
    c->heap[i] = e;
    e->heap_idx = (uint32_t)i;
}

static void heap_sift_up(struct lru_cache *c, size_t i)
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

static void heap_sift_down(struct lru_cache *c, size_t i)
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

static bool heap_reserve(struct lru_cache *c)
{
    struct lru_entry **h;
    size_t ncap;

    if (c->heap_len < c->heap_cap)
        return true;
    ncap = c->heap_cap ? c->heap_cap * 2 : 64;
    if (ncap > c->base.capacity)
        ncap = c->base.capacity;
    h = pc__alloc(sizeof *h * ncap);
    if (h == NULL)
        return false;
    if (c->heap_len)
        memcpy(h, c->heap, sizeof *h * c->heap_len);
    pc__free(c->heap, sizeof *h * c->heap_cap);
    c->heap = h;
    c->heap_cap = ncap;
    return true;
}

static void heap_push(struct lru_cache *c, struct lru_entry *e)
{
    heap_set(c, c->heap_len++, e);
    heap_sift_up(c, e->heap_idx);
}

static void heap_remove(struct lru_cache *c, struct lru_entry *e)
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
static struct lru_entry *claim_victim(struct lru_cache *c)
{
    for (;;) {
        struct lru_entry *e = c->heap[0];
        uint64_t cur = __atomic_load_n(&e->stamp, __ATOMIC_ACQUIRE);

        /* Readers only raise stamps; heap entries are never sentinels. */
        PC__ASSERT(e->heap_key <= cur && cur < STAMP_REPLACED);
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

/* The two-key seqlock (see the top comment). */
static void seq_begin(struct lru_cache *c)
{
    __atomic_store_n(&c->seq, c->seq + 1, __ATOMIC_RELAXED);
    __atomic_thread_fence(__ATOMIC_RELEASE);
}

static void seq_end(struct lru_cache *c)
{
    __atomic_store_n(&c->seq, c->seq + 1, __ATOMIC_RELEASE);
}

pc_status pc__policy_create(const pc_options *opts, pc_cache **out)
{
    struct lru_cache *c;
    size_t presize;

    if (opts->capacity > UINT32_MAX) /* heap positions are 32-bit */
        return PC_EINVAL;
    c = pc__alloc_aligned(sizeof *c, 64);
    if (c == NULL)
        return PC_ENOMEM;
    memset(c, 0, sizeof *c);
    if (!pc__core_init(&c->base, opts, 1)) {
        pc__free_aligned(c, sizeof *c, 64);
        return PC_ENOMEM;
    }
    presize = opts->capacity < (1ul << 20) ? opts->capacity : (1ul << 20);
    if (!pc__index_init(&c->ix, presize))
        goto fail;
    if (!pc__core_add_writer(&c->base, &c->w, offsetof(struct lru_entry, kv))) {
        pc__index_destroy(&c->ix);
        goto fail;
    }
    *out = &c->base;
    return PC_OK;

fail:
    pc__core_fini(&c->base);
    pc__free_aligned(c, sizeof *c, 64);
    return PC_ENOMEM;
}

void pc__policy_destroy(pc_cache *base)
{
    struct lru_cache *c = lru_of(base);

    pc__core_shutdown(base);
    for (size_t i = 0; i < c->heap_len; i++)
        entry_free(&c->heap[i]->kv);
    pc__free(c->heap, sizeof *c->heap * c->heap_cap);
    pc__index_destroy(&c->ix);
    pc__core_fini(base);
    pc__free_aligned(c, sizeof *c, 64);
}

/* Inside the caller's read section: find key and record the use (raise its
 * stamp); counts the lookup. NULL on a miss. */
static struct pc__kv *lru_lookup(pc_cache *base, struct pc__record *t,
                                 uint64_t h, const void *key, size_t klen)
{
    struct lru_cache *c = lru_of(base);
    struct pc__kv *found = NULL;

    for (;;) {
        uint64_t s1 = __atomic_load_n(&c->seq, __ATOMIC_ACQUIRE);
        struct pc__kv *kv;
        struct lru_entry *e;
        uint64_t ts, cur;

        if (s1 & 1) {
            ck_pr_stall();
            continue;
        }
        kv = pc__index_get(&c->ix, h, key, klen);
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
        PC__COUNTER_INC(t->stats.hits);
    else
        PC__COUNTER_INC(t->stats.misses);
    return found;
}

pc_status pc__policy_get(pc_cache *c, const void *key, size_t klen, void *buf,
                         size_t bufcap, size_t *vlen)
{
    return pc__core_get(c, lru_lookup, key, klen, buf, bufcap, vlen);
}

pc_status pc__policy_pin(pc_cache *c, const void *key, size_t klen, pc_pin *pin)
{
    return pc__core_pin(c, lru_lookup, key, klen, pin);
}

pc_status pc__policy_put(pc_cache *base, const void *key, size_t klen,
                         const void *val, size_t vlen)
{
    struct lru_cache *c = lru_of(base);
    uint64_t h = pc__hash_key(&base->seed, key, klen);
    struct lru_entry *e = pc__alloc(sizeof *e + klen + vlen);
    struct pc__kv *old;

    if (e == NULL)
        return PC_ENOMEM;
    pc__kv_fill(&e->kv, key, klen, val, vlen);
    pc__writer_lock(&c->w);
    old = pc__index_get(&c->ix, h, key, klen);
    if (old != NULL) {
        struct lru_entry *oe = ENTRY_OF(old);

        e->stamp = e->heap_key = stamp_window_open(c);
        /* present: a replacement, which cannot fail */
        pc__index_put(&c->ix, h, &e->kv, &old, c->w.rc);
        __atomic_exchange_n(&oe->stamp, STAMP_REPLACED, __ATOMIC_ACQ_REL);
        stamp_window_close(c);
        heap_set(c, oe->heap_idx, e);
        heap_sift_down(c, e->heap_idx);
        pc__reclaimer_retire(c->w.rc, old);
    } else if (c->count < base->capacity) {
        e->stamp = e->heap_key = stamp_window_open(c);
        if (!heap_reserve(c) ||
            !pc__index_put(&c->ix, h, &e->kv, &old, c->w.rc)) {
            stamp_window_close(c);
            goto nomem;
        }
        stamp_window_close(c);
        heap_push(c, e);
        __atomic_store_n(&c->count, c->count + 1, __ATOMIC_RELAXED);
    } else {
        struct lru_entry *victim;

        e->stamp = e->heap_key = stamp_window_open(c);
        seq_begin(c);
        if (!pc__index_put(&c->ix, h, &e->kv, &old, c->w.rc)) {
            seq_end(c);
            stamp_window_close(c);
            goto nomem;
        }
        victim = claim_victim(c);
        pc__index_erase(&c->ix, &victim->kv);
        seq_end(c);
        stamp_window_close(c);
        heap_push(c, e);
        pc__reclaimer_retire(c->w.rc, &victim->kv);
        PC__COUNTER_INC(c->w.evictions);
    }
    PC__ASSERT(c->count <= base->capacity && c->heap_len == c->count);
    PC__COUNTER_INC(c->w.puts);
    pc__writer_unlock(&c->w);
    return PC_OK;

nomem:
    pc__writer_unlock(&c->w);
    pc__free(e, sizeof *e + klen + vlen);
    return PC_ENOMEM;
}

pc_status pc__policy_delete(pc_cache *base, const void *key, size_t klen)
{
    struct lru_cache *c = lru_of(base);
    uint64_t h = pc__hash_key(&base->seed, key, klen);
    struct pc__kv *kv;

    pc__writer_lock(&c->w);
    kv = pc__index_get(&c->ix, h, key, klen);
    if (kv != NULL) {
        struct lru_entry *e = ENTRY_OF(kv);

        __atomic_exchange_n(&e->stamp, STAMP_REMOVED, __ATOMIC_ACQ_REL);
        pc__index_erase(&c->ix, kv);
        heap_remove(c, e);
        __atomic_store_n(&c->count, c->count - 1, __ATOMIC_RELAXED);
        pc__reclaimer_retire(c->w.rc, kv);
        PC__COUNTER_INC(c->w.deletes);
    }
    pc__writer_unlock(&c->w);
    return kv != NULL ? PC_OK : PC_NOTFOUND;
}

size_t pc__policy_len(const pc_cache *base)
{
    const struct lru_cache *c =
        PC__CONTAINER_OF(base, const struct lru_cache, base);

    return __atomic_load_n(&c->count, __ATOMIC_RELAXED);
}

void pc__policy_clear(pc_cache *base)
{
    struct lru_cache *c = lru_of(base);
    pc__writer_lock(&c->w);
    seq_begin(c);
    for (size_t i = 0; i < c->heap_len; i++) {
        struct lru_entry *e = c->heap[i];

        __atomic_exchange_n(&e->stamp, STAMP_REMOVED, __ATOMIC_ACQ_REL);
        pc__index_erase(&c->ix, &e->kv);
        pc__reclaimer_retire(c->w.rc, &e->kv);
    }
    c->heap_len = 0;
    __atomic_store_n(&c->count, 0, __ATOMIC_RELAXED);
    seq_end(c);
    pc__writer_unlock(&c->w);
}
