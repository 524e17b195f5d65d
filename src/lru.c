/*
 * lru: exact LRU over the whole cache: a recency list with O(1) eviction,
 * fed by per-thread access logs, and lookups that take no lock.
 *
 * Algorithm. Entries sit on one doubly linked list, most recently used at
 * the head (its nodes live beside the entries, not in them: lru.h and
 * lru_nodes.c). Every use of a key draws a stamp from a global counter (the
 * recency clock); a put positions its entry at the head under the writer
 * lock, and a hit does not touch the list at all: it appends (entry,
 * stamp) to its own thread's access log. Before the writer changes the
 * cache's contents it drains every log, merging them in stamp order and
 * moving each entry named to the head. Since the records it applies are
 * exactly the uses stamped before its own stamp, in stamp order, the list
 * is then exactly the recency order, and the least recently used entry is
 * the tail: eviction is O(1) and names the same victim as a textbook LRU
 * (an OrderedDict with move_to_end); single-threaded the two agree op for
 * op.
 *
 * The clock. Hits add 2 (even stamps). A writer that changes which keys
 * are present opens a window by adding 1 (its stamp P is odd) and closes it
 * by adding 1 when its change is complete; a reader that draws an odd
 * stamp has met an open window, and looks its key up again once it
 * closes. So no hit is stamped inside a window.
 *
 * How no use is drained late, and why draining never reads freed memory:
 * lru_log.c. The expiry heap: lru_heap.c. The list's nodes: lru_nodes.c.
 * Shared types: lru.h.
 *
 * Linearisation points. A hit: its stamp draw (its entry was found before,
 * and is checked for removal after: a writer marks an entry removed inside
 * a window, so a hit stamped after that window sees the mark and looks
 * again, and one stamped before it happened first). A miss: its index
 * lookup. A put: the moment its change is complete inside its window (an
 * evicting put publishes the new key before it unlinks the victim, so no
 * pair of lookups can see both or neither, and any hit on either waits for
 * the window). A delete: its removal from the index.
 *
 * Logs are best effort and bounded (LOG_RECORDS per thread per cache). A
 * reader whose log is full, or that has none (its first hit, or no memory
 * for one), takes the writer lock instead, drains every log behind a
 * stamp of its own and moves its entry to the head itself.
 *
 * Expiry. An entry that can expire is also in a min-heap on its expiry
 * time. Reads treat an expired entry as a miss. To make room a writer
 * evicts the entry with the earliest expiry time if that time has come,
 * else the least recently used: the reference model of an LRU with expiry
 * (tests/test_policy_lru.c), op for op. pc_expire pops the heap.
 *
 * Limits. The capacity and the byte bound are the cache's (core.h's
 * budget): a new key claims one entry and its bytes, and evicts only if
 * the claim fails, as many victims as it takes.
 *
 * Cost of strictness: a hit pays one shared fetch-and-add (the clock) and
 * writes only its own log; it waits only while a writer's window is open.
 * Writers pay the merge, one list move per logged hit, which a mutex LRU
 * pays inside every get.
 */
#include <stddef.h>
#include <string.h>

#include "alloc.h"
#include "lru.h"
#include "policy.h"

const char *pc__policy_name(void)
{
    return "lru";
}

static inline struct pc__index *index_of(struct lru_cache *c, uint64_t h)
{
    return &c->ix[((h >> 32) * c->ntables) >> 32];
}

/* Entries a table is given a share of at most: TABLE_ENTRY_LIMIT less a
 * sixteenth, as keys spread over the tables by hash, not exactly evenly.
 * So a cache of n tables takes a capacity up to n * SHARE_MAX. */
#define SHARE_MAX (TABLE_ENTRY_LIMIT / 16 * 15)

/* The table count (1..MAX_TABLES) whose tables, each sized for its share
 * of cap, take the fewest chunks (pc__index_chunks), among those whose
 * share is at most SHARE_MAX. */
static unsigned int choose_tables(size_t cap)
{
    unsigned int best = 0;
    size_t best_chunks = SIZE_MAX;

    for (unsigned int n = 1; n <= MAX_TABLES; n++) {
        size_t share = (cap + n - 1) / n, chunks;

        if (n > 1 && cap / n < 1024)
            break;
        if (share > SHARE_MAX)
            continue;
        chunks = n * pc__index_chunks(pc__index_room(share, n) + 1);
        if (chunks < best_chunks) {
            best = n;
            best_chunks = chunks;
        }
    }
    return best;
}

static void entry_free(struct pc__kv *kv)
{
    pc__free(kv, pc__kv_alloc_size(kv));
}

static uint64_t kv_payload(const struct pc__kv *kv)
{
    return (uint64_t)kv->klen + kv->vlen;
}

/* ---- life cycle ---- */

bool pc__policy_capacity_ok(const pc_cache *c, size_t capacity)
{
    /* The tables chosen at creation must hold it (choose_tables). */
    const struct lru_cache *lc =
        PC__CONTAINER_OF(c, const struct lru_cache, base);

    return capacity <= (size_t)lc->ntables * SHARE_MAX;
}

uint64_t pc__policy_bytes(const pc_cache *c)
{
    return __atomic_load_n(&c->bytes, __ATOMIC_RELAXED);
}

void pc__policy_settle(pc_cache *c)
{
    (void)c; /* (c->bytes is exact: every put claims its bytes) */
}

void pc__policy_resize(pc_cache *c)
{
    (void)c; /* exact LRU has no parameter that follows the capacity */
}

pc_status pc__policy_create(const pc_options *opts, pc_cache **out)
{
    struct lru_cache *c;
    size_t presize;
    unsigned int i;

    if (opts->policy != PC_POLICY_DEFAULT ||
        opts->capacity > (size_t)MAX_TABLES * SHARE_MAX)
        return PC_EINVAL; /* the frequency policy is the CLOCK build's */
    c = pc__alloc_aligned(sizeof *c, 64);
    if (c == NULL)
        return PC_ENOMEM;
    memset(c, 0, sizeof *c);
    if (!pc__core_init(&c->base, opts, 1)) {
        pc__free_aligned(c, sizeof *c, 64);
        return PC_ENOMEM;
    }
    c->base.before_free = pc__lru_before_free;
    c->base.policy_name = "lru";
    c->ntables = choose_tables(opts->capacity);
    presize = pc__index_room((opts->capacity + c->ntables - 1) / c->ntables,
                             c->ntables);
    if (presize > (1ul << 20))
        presize = 1ul << 20; /* larger ones grow */
    if (opts->max_bytes != 0 && presize > 64)
        presize = 64; /* the count may stay far below capacity: grow */
    for (i = 0; i < c->ntables; i++)
        if (!pc__index_init(&c->ix[i], presize, POS_CHUNK_LIMIT - 1,
                            &c->base.seed))
            goto fail;
    if (!pc__lru_nodes_init(c) || !pc__core_add_writer(&c->base, &c->w))
        goto fail;
    *out = &c->base;
    return PC_OK;

fail:
    pc__lru_nodes_fini(c);
    for (i = 0; i < c->ntables; i++)
        pc__index_destroy(&c->ix[i]);
    pc__core_fini(&c->base);
    pc__free_aligned(c, sizeof *c, 64);
    return PC_ENOMEM;
}

void pc__policy_destroy(pc_cache *base)
{
    struct lru_cache *c = lru_of(base);
    struct lru_log *l, *lnext;

    pc__core_shutdown(base);
    for (uint32_t id = node(c, SENTINEL)->next; id != SENTINEL;) {
        struct pc__kv *kv = kv_of(c, id);

        id = node(c, id)->next;
        entry_free(kv);
    }
    pc__lru_nodes_fini(c);
    for (l = c->logs; l != NULL; l = lnext) {
        lnext = l->next;
        pc__free_aligned(l, sizeof *l, 64);
    }
    pc__free(c->merge, sizeof *c->merge * c->merge_cap);
    for (unsigned int i = 0; i < c->ntables; i++)
        pc__index_destroy(&c->ix[i]);
    pc__free_array(c->heap, sizeof *c->heap * c->heap_cap, 0);
    pc__core_fini(base);
    pc__free_aligned(c, sizeof *c, 64);
}

/* ---- lookups ---- */

/* A hit the reader's log cannot take (no log yet, or full): under the
 * writer lock, catch up and move the entry to the head directly (the hit
 * is linearised at the catch-up's stamp). Creates the thread's log on its
 * first use. False if the entry was removed meanwhile: look again. Out of
 * line (one hit in a log's length, or fewer): the flattened pc_get would
 * otherwise carry the lock, the unlock's reclamation and the frees. */
static __attribute__((noinline)) bool
locked_hit(struct lru_cache *c, struct pc__record *t, struct pc__kv *kv)
{
    bool present;

    pc__writer_lock(&c->w);
    if (t->policy_data == NULL) {
        struct lru_log *l = pc__alloc_aligned(sizeof *l, 64);

        /* Room in the merge heap for one more log first (else every hit
         * takes this path: slower, exact). */
        if (l != NULL && c->nlogs == c->merge_cap) {
            size_t ncap = c->merge_cap ? 2 * c->merge_cap : 8;
            struct lru_merge *m = pc__alloc(sizeof *m * ncap);

            if (m == NULL) {
                pc__free_aligned(l, sizeof *l, 64);
                l = NULL;
            } else {
                pc__free(c->merge, sizeof *m * c->merge_cap);
                c->merge = m;
                c->merge_cap = ncap;
            }
        }
        if (l != NULL) {
            memset(l, 0, sizeof *l);
            l->next = c->logs;
            c->logs = l;
            c->nlogs++;
            t->policy_data = l;
        }
    }
    pc__lru_catch_up(c);
    present = !pc__kv_removed_flags(pc__kv_flags(kv));
    if (present)
        list_move_head(c, node_of(kv));
    pc__writer_unlock(&c->base, &c->w);
    return present;
}

/* Inside the caller's read section: find key and record the use. NULL on a
 * miss (an expired entry is one). Always inlined into pc__core_get (and
 * pc__core_pin), as CLOCK's lookup is, rather than called through the
 * pointer they are given on every get. */
static inline __attribute__((always_inline)) struct pc__kv *
lru_lookup(pc_cache *base, struct pc__record *t, uint64_t h, const void *key,
           size_t klen)
{
    struct lru_cache *c = lru_of(base);
    struct pc__kv *found = NULL;

    for (;;) {
        struct pc__kv *kv = pc__index_get(index_of(c, h), h, key, klen);
        struct lru_log *l = t->policy_data;
        uint64_t ts, tail;
        int visible;

        if (kv == NULL)
            break;
        visible = pc__core_visible(base, kv);
        if (__builtin_expect(visible < 0, 0))
            continue; /* unlinked meanwhile: look again */
        if (!visible)
            break;
        /* Acquire: the writer's release of head comes after it read the
         * record we may now overwrite. */
        if (l == NULL ||
            (tail = l->tail) - __atomic_load_n(&l->head, __ATOMIC_ACQUIRE) ==
                LOG_RECORDS) {
            if (!locked_hit(c, t, kv))
                continue;
            found = kv;
            break;
        }
        __atomic_store_n(&l->inflight, 1, __ATOMIC_RELAXED);
        ts = __atomic_add_fetch(&c->clock, 2, __ATOMIC_ACQ_REL);
        if ((ts & 1) || is_removed(kv)) {
            __atomic_store_n(&l->inflight, 0, __ATOMIC_RELEASE);
            /* A window is open (wait for it), or the entry went: look
             * again. */
            while (__atomic_load_n(&c->clock, __ATOMIC_ACQUIRE) & 1)
                ck_pr_stall();
            continue;
        }
        l->rec[tail % LOG_RECORDS].kv = kv;
        l->rec[tail % LOG_RECORDS].stamp = ts;
        __atomic_store_n(&l->tail, tail + 1, __ATOMIC_RELEASE);
        __atomic_store_n(&l->inflight, 0, __ATOMIC_RELEASE);
        found = kv;
        break;
    }
    return found;
}

pc_status pc__policy_get(pc_cache *c, const void *key, size_t klen, void *buf,
                         size_t bufcap, size_t *vlen, bool count)
{
    return pc__core_get(c, lru_lookup, key, klen, buf, bufcap, vlen, count);
}

pc_status pc__policy_pin(pc_cache *c, const void *key, size_t klen, pc_pin *pin)
{
    return pc__core_pin(c, lru_lookup, key, klen, pin);
}

/* ---- writes (writer lock held) ---- */

static bool empty(const struct lru_cache *c)
{
    return list_tail(c) == SENTINEL;
}

/* kv is out of the index: take it off the list and the heap, dispose of
 * it; its room goes back to the budget unless the caller takes it over.
 * Always inlined, as claim is: both are on every evicting put. */
static inline __attribute__((always_inline)) void
unlinked_keep_room(struct lru_cache *c, struct pc__kv *kv,
                   pc_removal_cause cause, struct pc__removals *rm)
{
    mark_removed(kv);
    list_unlink(c, node_of(kv));
    if (pc__kv_flags(kv) & PC__KV_EXPIRES)
        pc__lru_heap_remove(c, kv);
    node_give(c, node_of(kv)); /* before rm reuses w */
    if (cause == PC_REMOVED_EVICTED)
        PC__COUNTER_INC(c->w.evictions);
    else if (cause == PC_REMOVED_EXPIRED)
        PC__COUNTER_INC(c->w.expirations);
    else if (cause == PC_REMOVED_DELETED)
        PC__COUNTER_INC(c->w.deletes);
    pc__removed(rm, c->w.rc, kv, cause);
}

static void unlinked(struct lru_cache *c, struct pc__kv *kv,
                     pc_removal_cause cause, struct pc__removals *rm)
{
    pc__budget_give(&c->base, 1, kv_payload(kv));
    unlinked_keep_room(c, kv, cause, rm);
}

/* Inside a window: the next victim (the entry with the earliest expiry
 * time if it has come, else the least recently used), out of the index
 * and disposed of, its room NOT returned. The cache holds an entry. */
static struct pc__kv *take_victim(struct lru_cache *c, struct pc__now now,
                                  struct pc__removals *rm)
{
    struct pc__kv *v;
    bool expired = c->heap_len > 0 && now.ms >= c->heap[0].key;

    if (expired) {
        v = c->heap[0].kv;
    } else {
        uint32_t t = list_tail(c);

        v = kv_of(c, t);
        prefetch_victims(c, t);
    }
    pc__index_erase(&c->ix[v->ref], v);
    unlinked_keep_room(c, v, expired ? PC_REMOVED_EXPIRED : PC_REMOVED_EVICTED,
                       rm);
    return v;
}

static void evict_one(struct lru_cache *c, struct pc__now now,
                      struct pc__removals *rm)
{
    struct pc__kv *v = take_victim(c, now, rm);

    pc__budget_give(&c->base, 1, kv_payload(v));
}

/* Inside a window: make room in the budget for one more entry (if
 * one_more) and `bytes` more bytes, evicting victims as needed and taking
 * their room in their place (no shared counter touched when a victim's
 * room covers the put, the common case of a full cache). Claims within
 * the byte bound `max` the put was checked against under this lock, not
 * the current one (pc_set_max_bytes does not take the lock; its shrink
 * does, after this put): the put fits it by itself, and a victim is never
 * the key being replaced (moved to the head first), so evicting every
 * other entry makes room, and the claim never fails. */
static inline __attribute__((always_inline)) void
claim(struct lru_cache *c, bool one_more, uint64_t bytes, uint64_t max,
      struct pc__now now, struct pc__removals *rm)
{
    uint64_t owned = 0;
    bool have_entry = !one_more;

    if (pc__budget_take_within(&c->base, one_more, bytes, max))
        return;
    for (;;) {
        struct pc__kv *v;

        PC__ASSERT(!empty(c));
        if (__builtin_expect(empty(c), 0)) {
            /* Unreachable (above); were it not, take the room over the
             * limit rather than evict the list's sentinel. */
            __atomic_add_fetch(&c->base.count, have_entry ? 0 : 1,
                               __ATOMIC_RELAXED);
            __atomic_add_fetch(&c->base.bytes, bytes - owned, __ATOMIC_RELAXED);
            return;
        }
        v = take_victim(c, now, rm);
        owned += kv_payload(v);
        if (have_entry)
            pc__budget_give(&c->base, 1, 0);
        have_entry = true;
        if (owned >= bytes) {
            if (owned > bytes)
                pc__budget_give(&c->base, 0, owned - bytes);
            return;
        }
        if (pc__budget_take_within(&c->base, false, bytes - owned, max))
            return;
    }
}

pc_status pc__policy_put(pc_cache *base, uint64_t h, const void *key,
                         size_t klen, const void *val, size_t vlen,
                         struct pc__put_req *req, struct pc__removals *rm,
                         struct pc__writer **w)
{
    struct lru_cache *c = lru_of(base);
    struct pc__index *ix = index_of(c, h);
    uint64_t size = (uint64_t)klen + vlen;
    struct pc__now now;
    unsigned int t = (unsigned int)(ix - c->ix);
    uint64_t max, was = 0;
    struct pc__kv *e, *old, **old_slot;
    pc_status st = PC_OK;
    bool expires = req->expires != 0;
    uint32_t id;

    pc__index_prefetch_home(ix, h); /* as shard.c's put does */
    e = pc__core_entry_new(base, h, key, klen, val, vlen, req->expires);
    if (e == NULL) {
        if (req->lease != NULL)
            pc__policy_lease_end(base, req->lease);
        return PC_ENOMEM;
    }
    e->ref = (uint8_t)t; /* its table */
    *w = &c->w;
    pc__debug_prelock();
    pc__writer_lock(&c->w);
    now = pc__core_now_if_ttl(base);
    /* What can fail, before the window opens (readers that meet a window
     * wait for it to close, and none of this changes which keys are
     * present): the size, then room for the key if it is new (nobody but
     * this writer changes the index meanwhile, and now is fixed): in the
     * index, whose growth and the relocation after it walk every entry of
     * the table, and a node id; room in the heap. A replacement takes its
     * predecessor's index slot and node, so the index does not grow under
     * old_slot. */
    max = __atomic_load_n(&base->max_bytes, __ATOMIC_RELAXED);
    if (max != 0 && size > max) {
        st = PC_EINVAL;
        goto refused_early;
    }
    old = pc__index_find(ix, h, key, klen, &old_slot);
    /* The put's conditions before any reserve, as shard.c's put: a put
     * they refuse needs no room, and must not fail for want of it (it
     * returned PC_ENOMEM where CLOCK returns PC_EXISTS or PC_NOTFOUND,
     * and grew the heap or the index for nothing; found by helper-68). An
     * expired old counts as absent, and goes either way. */
    if (pc__put_refused(req, old != NULL && !pc__kv_expired(old, now), &st)) {
        if (old == NULL || !pc__kv_expired(old, now))
            goto refused_early;
        pc__lru_window_open(c);
        pc__index_erase(ix, old);
        unlinked(c, old, PC_REMOVED_EXPIRED, rm);
        goto refused;
    }
    if (old == NULL || pc__kv_expired(old, now)) {
        uint64_t gen = pc__index_gen(ix);
        bool room = pc__index_count(ix) < TABLE_ENTRY_LIMIT &&
                    pc__index_reserve(ix, pc__index_count(ix) + 1, c->w.rc);

        if (pc__index_gen(ix) != gen) {
            pc__lru_relocate(c, t); /* (even if a second growth failed) */
            old = pc__index_find(ix, h, key, klen, &old_slot);
        }
        if (!room || !node_room(c)) {
            st = PC_ENOMEM;
            goto refused_early;
        }
    }
    if (expires && (!pc__lru_heap_reserve(c) || !pc__lru_hpos_reserve(c))) {
        st = PC_ENOMEM;
        goto refused_early;
    }
    pc__lru_window_open(c);
    if (old != NULL && pc__kv_expired(old, now)) {
        pc__index_erase(ix, old);
        unlinked(c, old, PC_REMOVED_EXPIRED, rm);
        old = NULL;
    }
    if (req->lease != NULL)
        pc__lease_unlink(&c->w.leases, req->lease);
    was = old != NULL ? kv_payload(old) : 0;
    id = old != NULL ? node_of(old) : node_take(c); /* (room made above) */
    e->w.live.slot = id;
    if (old != NULL) {
        /* Replacement: a use, so the key is the most recent before
         * anything is evicted for the bytes it adds (then it is never the
         * victim: alone, it fits); the new entry takes its index slot and
         * its node, at the head. */
        list_move_head(c, id);
        if (size < was)
            pc__budget_give(base, 0, was - size);
        else if (size > was) /* evicts others: nothing moves in the index */
            claim(c, false, size - was, max, now, rm);
        pc__index_replace_at(ix, old_slot, e); /* (e carries h: core.h) */
        if (pc__kv_flags(old) & PC__KV_EXPIRES)
            pc__lru_heap_remove(c, old);
        mark_removed(old);
        pc__removed(rm, c->w.rc, old, PC_REMOVED_REPLACED);
    } else {
        /* Published before any victim is unlinked (top comment): the
         * index was reserved for one more, and the budget is claimed
         * once the victims are gone. */
        node(c, id)->pos = pos_pack(t, pc__index_insert(ix, h, e));
        list_push_head(c, id);
        claim(c, true, size, max, now, rm);
    }
    if (expires)
        pc__lru_heap_push(c, e);
    pc__leases_break(c->w.leases, h, false);
    pc__lru_window_close(c);
    PC__COUNTER_INC(c->w.puts);
    pc__writer_unlock(base, &c->w);
    return PC_OK;

refused:
    pc__lru_window_close(c);
refused_early:
    if (req->lease != NULL) /* (unless unlinked above) */
        pc__lease_unlink(&c->w.leases, req->lease);
    pc__writer_unlock(base, &c->w);
    pc__free(e, pc__kv_alloc_size(e));
    return st;
}

pc_status pc__policy_delete(pc_cache *base, const void *key, size_t klen,
                            struct pc__removals *rm, struct pc__writer **w)
{
    struct lru_cache *c = lru_of(base);
    uint64_t h = pc__hash_key(&base->seed, key, klen);
    struct pc__now now;
    struct pc__kv *kv;
    bool expired = false;

    *w = &c->w;
    pc__writer_lock(&c->w);
    now = pc__core_now_if_ttl(base);
    kv = pc__index_remove(index_of(c, h), h, key, klen);
    if (kv != NULL) {
        expired = pc__kv_expired(kv, now);
        unlinked(c, kv, expired ? PC_REMOVED_EXPIRED : PC_REMOVED_DELETED, rm);
    }
    pc__leases_break(c->w.leases, h, false);
    pc__writer_unlock(base, &c->w);
    return kv != NULL && !expired ? PC_OK : PC_NOTFOUND;
}

void pc__policy_clear(pc_cache *base, struct pc__removals *rm,
                      struct pc__writer **w)
{
    struct lru_cache *c = lru_of(base);
    size_t n = 0;
    uint64_t bytes = 0;

    *w = &c->w;
    pc__writer_lock(&c->w);
    pc__lru_window_open(c); /* every key goes at once */
    for (uint32_t id = node(c, SENTINEL)->next; id != SENTINEL;) {
        struct pc__kv *kv = kv_of(c, id);

        id = node(c, id)->next;
        mark_removed(kv);
        pc__index_erase(&c->ix[kv->ref], kv);
        n++;
        bytes += kv_payload(kv);
        pc__removed(rm, c->w.rc, kv, PC_REMOVED_CLEARED);
    }
    pc__lru_nodes_reset(c);
    c->heap_len = 0;
    pc__budget_give(base, n, bytes);
    pc__leases_break(c->w.leases, 0, true);
    pc__lru_window_close(c);
    pc__writer_unlock(base, &c->w);
}

size_t pc__policy_expire(pc_cache *base, struct pc__removals *rm,
                         struct pc__writer **w)
{
    struct lru_cache *c = lru_of(base);
    struct pc__now now;
    size_t n = 0;

    *w = &c->w;
    pc__writer_lock(&c->w);
    now = pc__core_now_if_ttl(base);
    if (c->heap_len > 0 && now.ms >= c->heap[0].key) {
        pc__lru_window_open(c);
        while (c->heap_len > 0 && now.ms >= c->heap[0].key) {
            struct pc__kv *kv = c->heap[0].kv;

            pc__index_erase(&c->ix[kv->ref], kv);
            unlinked(c, kv, PC_REMOVED_EXPIRED, rm);
            n++;
        }
        pc__lru_window_close(c);
    }
    pc__writer_unlock(base, &c->w);
    return n;
}

void pc__policy_shrink(pc_cache *base, struct pc__removals *rm,
                       struct pc__writer **w)
{
    struct lru_cache *c = lru_of(base);
    struct pc__now now;

    *w = &c->w;
    pc__writer_lock(&c->w);
    now = pc__core_now_if_ttl(base);
    pc__lru_window_open(c);
    while (!empty(c) && !pc__budget_room(base, false, 0))
        evict_one(c, now, rm);
    pc__lru_window_close(c);
    pc__writer_unlock(base, &c->w);
}

/* Each index table is sized for what the limits let it hold: its share of
 * the capacity, or, under a byte bound, what it holds now (at least); a
 * smaller table moves every entry, whose nodes then learn their new
 * positions; the recency list's nodes are renumbered into smaller arrays
 * likewise (lru_nodes.c), and the expiry heap moves to one sized by the
 * entries that can expire (lru_heap.c). */
void pc__policy_trim(pc_cache *base)
{
    struct lru_cache *c = lru_of(base);
    size_t cap = __atomic_load_n(&base->capacity, __ATOMIC_RELAXED);
    bool bounded = __atomic_load_n(&base->max_bytes, __ATOMIC_RELAXED) != 0;

    size_t held = 0;

    pc__writer_lock(&c->w);
    for (unsigned int t = 0; t < c->ntables; t++) {
        /* Each table's share with room for the keys' spread, as at
         * creation. */
        size_t n = bounded ? 0
                           : pc__index_room((cap + c->ntables - 1) / c->ntables,
                                            c->ntables);

        if (pc__index_trim(&c->ix[t], n, c->w.rc))
            pc__lru_relocate(c, t);
        held += pc__index_count(&c->ix[t]);
    }
    pc__lru_nodes_trim(c, bounded || held > cap ? held : cap);
    pc__lru_heap_trim(c);
    pc__writer_unlock(base, &c->w);
}

void pc__policy_lease_begin(pc_cache *base, uint64_t h, struct pc__lease *l)
{
    struct lru_cache *c = lru_of(base);

    l->h = h;
    l->broken = false;
    l->owner = &c->w;
    pc__writer_lock(&c->w);
    l->next = c->w.leases;
    c->w.leases = l;
    pc__writer_unlock(base, &c->w);
}

void pc__policy_lease_end(pc_cache *base, struct pc__lease *l)
{
    struct lru_cache *c = lru_of(base);

    pc__writer_lock(&c->w);
    pc__lease_unlink(&c->w.leases, l);
    pc__writer_unlock(base, &c->w);
}
