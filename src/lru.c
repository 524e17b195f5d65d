/*
 * lru: exact LRU over the whole cache: a recency list with O(1) eviction,
 * fed by per-thread access logs, and lookups that take no lock.
 *
 * Algorithm. Entries sit on one doubly linked list, most recently used at
 * the head. Every use of a key draws a stamp from a global counter (the
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
 * No late records. A reader announces itself in its log (`inflight`)
 * before it draws its stamp and withdraws after it has published its
 * record. The writer draws P, then waits until no log is in flight, then
 * drains. Both draws are read-modify-writes of the clock with
 * acquire-release order, so if a reader's stamp is below P its
 * announcement happens before the writer's scan, which therefore waits for
 * its record; and a reader that draws after P gets an odd stamp and
 * retries. Every record below P is applied before the writer changes
 * anything, and every record applied later is above P: the list never
 * needs an entry placed anywhere but the head. (A reader in flight is a
 * few instructions from done: the writer's wait is bounded by them, unless
 * the reader is preempted there; the exact-LRU build is the one that may
 * pay for strictness.)
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
 * Memory safety of log records. A record names an entry that may since
 * have been removed; draining skips removed entries, but must never read a
 * freed one. Retired entries are freed only after a grace period, which
 * every reader that found one has left, having published its record
 * first; and before retired memory is handed over to be freed the writer
 * drains all logs (lru_before_free, called by core.c with the lock held).
 * A record published after that drain was stamped after the writer's
 * cutoff, by a reader that began after the grace period: it cannot name
 * that memory.
 *
 * Cost of strictness: a hit pays one shared fetch-and-add (the clock) and
 * writes only its own log; it waits only while a writer's window is open.
 * Writers pay the merge, one list move per logged hit, which a mutex LRU
 * pays inside every get.
 */
#include <stddef.h>
#include <string.h>

#include "alloc.h"
#include "core.h"
#include "index.h"
#include "policy.h"

#define LOG_RECORDS 256u
#define REMOVED 1u /* pc__kv.flags bit: the writer unlinked the entry */

struct lru_entry {
    struct lru_entry *prev, *next; /* recency list; writer-only */
    struct pc__kv kv;              /* last: key and value bytes follow */
};

struct lru_record {
    struct pc__kv *kv;
    uint64_t stamp;
};

/* One thread's access log on one cache: a ring its owner appends to. */
struct lru_log {
    uint32_t inflight;    /* owner: between announcing and publishing */
    uint64_t tail;        /* owner: records published (release) */
    struct lru_log *next; /* the cache's list of logs; writer lock */
    uint64_t head __attribute__((aligned(64))); /* writer: records applied */
    struct lru_record rec[LOG_RECORDS];
};

/* The index is split into up to MAX_TABLES tables by the hash's high bits,
 * as many as make their power-of-two sizes add up to the least memory
 * (choose_tables): one lock and one list, several tables. */
#define MAX_TABLES 16

struct lru_cache {
    struct pc_cache base;
    struct pc__writer w; /* the cache's one writer lock */
    unsigned int ntables;
    struct pc__index ix[MAX_TABLES];
    struct lru_entry list; /* sentinel: list.next most, list.prev least */
    size_t count;          /* relaxed reads by pc_len */
    struct lru_log *logs;  /* writer lock */
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

static inline struct pc__index *index_of(struct lru_cache *c, uint64_t h)
{
    return &c->ix[((h >> 32) * c->ntables) >> 32];
}

/* The table count (1..MAX_TABLES) whose tables, each sized for its share
 * of cap, take the fewest chunks (pc__index_chunks). */
static unsigned int choose_tables(size_t cap)
{
    unsigned int best = 1;
    size_t best_chunks = pc__index_chunks(cap + 1);

    for (unsigned int n = 2; n <= MAX_TABLES && cap / n >= 1024; n++) {
        size_t chunks = n * pc__index_chunks((cap + n - 1) / n + 1);

        if (chunks < best_chunks) {
            best = n;
            best_chunks = chunks;
        }
    }
    return best;
}

static void entry_free(struct lru_entry *e)
{
    pc__free(e, sizeof *e + e->kv.klen + e->kv.vlen);
}

static bool is_removed(const struct pc__kv *kv)
{
    return __atomic_load_n(&kv->flags, __ATOMIC_ACQUIRE) & REMOVED;
}

/* ---- the recency list (writer lock held) ---- */

static void list_unlink(struct lru_entry *e)
{
    e->prev->next = e->next;
    e->next->prev = e->prev;
}

static void list_push_head(struct lru_cache *c, struct lru_entry *e)
{
    e->prev = &c->list;
    e->next = c->list.next;
    c->list.next->prev = e;
    c->list.next = e;
}

static void list_move_head(struct lru_cache *c, struct lru_entry *e)
{
    if (c->list.next == e)
        return;
    list_unlink(e);
    list_push_head(c, e);
}

/* Mark kv removed (readers that stamp after the current window see it). */
static void mark_removed(struct pc__kv *kv)
{
    __atomic_store_n(&kv->flags, kv->flags | REMOVED, __ATOMIC_RELEASE);
}

/* ---- logs (writer lock held) ---- */

/* Wait until no reader is between announcing itself and publishing. */
static void wait_inflight(struct lru_cache *c)
{
    for (struct lru_log *l = c->logs; l != NULL; l = l->next)
        while (__atomic_load_n(&l->inflight, __ATOMIC_ACQUIRE))
            ck_pr_stall();
}

/* Apply, in stamp order, every logged use stamped below cutoff. */
static void drain_below(struct lru_cache *c, uint64_t cutoff)
{
    for (;;) {
        struct lru_log *best = NULL;
        uint64_t best_stamp = cutoff;

        for (struct lru_log *l = c->logs; l != NULL; l = l->next) {
            uint64_t tail = __atomic_load_n(&l->tail, __ATOMIC_ACQUIRE);
            struct lru_record *r;

            if (l->head == tail)
                continue;
            r = &l->rec[l->head % LOG_RECORDS];
            if (r->stamp < best_stamp) {
                best_stamp = r->stamp;
                best = l;
            }
        }
        if (best == NULL)
            return;
        struct pc__kv *kv = best->rec[best->head % LOG_RECORDS].kv;

        __atomic_store_n(&best->head, best->head + 1, __ATOMIC_RELEASE);
        if (!(kv->flags & REMOVED))
            list_move_head(c, ENTRY_OF(kv));
    }
}

/* Make the list the exact recency order as of a stamp drawn now (even:
 * no window opens); returns that stamp. */
static uint64_t catch_up(struct lru_cache *c)
{
    uint64_t cutoff = __atomic_add_fetch(&c->clock, 2, __ATOMIC_ACQ_REL);

    wait_inflight(c);
    drain_below(c, cutoff);
    return cutoff;
}

/* Open a window (odd stamp) and apply every use stamped before it. */
static void window_open(struct lru_cache *c)
{
    uint64_t p = __atomic_add_fetch(&c->clock, 1, __ATOMIC_ACQ_REL);

    PC__ASSERT(p & 1);
    wait_inflight(c);
    drain_below(c, p);
}

static void window_close(struct lru_cache *c)
{
    __atomic_add_fetch(&c->clock, 1, __ATOMIC_RELEASE);
}

/* core.h's before_free hook: no record may name memory about to be freed. */
static void lru_before_free(pc_cache *base)
{
    catch_up(lru_of(base));
}

/* ---- life cycle ---- */

pc_status pc__policy_create(const pc_options *opts, pc_cache **out)
{
    struct lru_cache *c;
    size_t presize;
    unsigned int i;

    c = pc__alloc_aligned(sizeof *c, 64);
    if (c == NULL)
        return PC_ENOMEM;
    memset(c, 0, sizeof *c);
    if (!pc__core_init(&c->base, opts, 1)) {
        pc__free_aligned(c, sizeof *c, 64);
        return PC_ENOMEM;
    }
    c->base.before_free = lru_before_free;
    c->list.next = c->list.prev = &c->list;
    c->ntables = choose_tables(opts->capacity);
    presize = (opts->capacity + c->ntables - 1) / c->ntables;
    if (presize > (1ul << 20))
        presize = 1ul << 20; /* larger ones grow */
    for (i = 0; i < c->ntables; i++)
        if (!pc__index_init(&c->ix[i], presize))
            goto fail;
    if (!pc__core_add_writer(&c->base, &c->w, offsetof(struct lru_entry, kv)))
        goto fail;
    *out = &c->base;
    return PC_OK;

fail:
    for (i = 0; i < c->ntables; i++)
        pc__index_destroy(&c->ix[i]);
    pc__core_fini(&c->base);
    pc__free_aligned(c, sizeof *c, 64);
    return PC_ENOMEM;
}

void pc__policy_destroy(pc_cache *base)
{
    struct lru_cache *c = lru_of(base);
    struct lru_entry *e, *next;
    struct lru_log *l, *lnext;

    pc__core_shutdown(base);
    for (e = c->list.next; e != &c->list; e = next) {
        next = e->next;
        entry_free(e);
    }
    for (l = c->logs; l != NULL; l = lnext) {
        lnext = l->next;
        pc__free_aligned(l, sizeof *l, 64);
    }
    for (unsigned int i = 0; i < c->ntables; i++)
        pc__index_destroy(&c->ix[i]);
    pc__core_fini(base);
    pc__free_aligned(c, sizeof *c, 64);
}

/* ---- lookups ---- */

/* A hit the reader's log cannot take (no log yet, or full): under the
 * writer lock, catch up and move the entry to the head directly (the hit
 * is linearised at the catch-up's stamp). Creates the thread's log on its
 * first use. False if the entry was removed meanwhile: look again. */
static bool locked_hit(struct lru_cache *c, struct pc__record *t,
                       struct pc__kv *kv)
{
    bool present;

    pc__writer_lock(&c->w);
    if (t->policy_data == NULL) {
        struct lru_log *l = pc__alloc_aligned(sizeof *l, 64);

        if (l != NULL) { /* else every hit takes this path: slower, exact */
            memset(l, 0, sizeof *l);
            l->next = c->logs;
            c->logs = l;
            t->policy_data = l;
        }
    }
    catch_up(c);
    present = !(kv->flags & REMOVED);
    if (present)
        list_move_head(c, ENTRY_OF(kv));
    pc__writer_unlock(&c->base, &c->w);
    return present;
}

/* Inside the caller's read section: find key and record the use; counts
 * the lookup. NULL on a miss. */
static struct pc__kv *lru_lookup(pc_cache *base, struct pc__record *t,
                                 uint64_t h, const void *key, size_t klen)
{
    struct lru_cache *c = lru_of(base);
    struct pc__kv *found = NULL;

    for (;;) {
        struct pc__kv *kv = pc__index_get(index_of(c, h), h, key, klen);
        struct lru_log *l = t->policy_data;
        uint64_t ts, tail;

        if (kv == NULL)
            break;
        if (l == NULL ||
            (tail = l->tail) - __atomic_load_n(&l->head, __ATOMIC_RELAXED) ==
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

/* ---- writes ---- */

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
    e->kv.w.live.slot = (uint32_t)(index_of(c, h) - c->ix); /* its table */
    pc__writer_lock(&c->w);
    window_open(c);
    /* Growing the index is the one step that can fail: first. */
    if (!pc__index_put(index_of(c, h), h, &e->kv, &old, c->w.rc)) {
        window_close(c);
        pc__writer_unlock(base, &c->w);
        pc__free(e, sizeof *e + klen + vlen);
        return PC_ENOMEM;
    }
    if (old != NULL) {
        /* Replacement: the new entry takes the key's place as its most
         * recent use; evicts nothing. */
        mark_removed(old);
        list_unlink(ENTRY_OF(old));
        pc__reclaimer_retire(c->w.rc, old);
    } else if (c->count == base->capacity) {
        /* Published first, victim unlinked second (see the top comment). */
        struct lru_entry *victim = c->list.prev;

        mark_removed(&victim->kv);
        pc__index_erase(&c->ix[victim->kv.w.live.slot], &victim->kv);
        list_unlink(victim);
        pc__reclaimer_retire(c->w.rc, &victim->kv);
        PC__COUNTER_INC(c->w.evictions);
    } else {
        __atomic_store_n(&c->count, c->count + 1, __ATOMIC_RELAXED);
    }
    list_push_head(c, e);
    window_close(c);
    PC__ASSERT(c->count <= base->capacity);
    PC__COUNTER_INC(c->w.puts);
    pc__writer_unlock(base, &c->w);
    return PC_OK;
}

pc_status pc__policy_delete(pc_cache *base, const void *key, size_t klen)
{
    struct lru_cache *c = lru_of(base);
    uint64_t h = pc__hash_key(&base->seed, key, klen);
    struct pc__kv *kv;

    pc__writer_lock(&c->w);
    kv = pc__index_remove(index_of(c, h), h, key, klen);
    if (kv != NULL) {
        mark_removed(kv);
        list_unlink(ENTRY_OF(kv));
        __atomic_store_n(&c->count, c->count - 1, __ATOMIC_RELAXED);
        pc__reclaimer_retire(c->w.rc, kv);
        PC__COUNTER_INC(c->w.deletes);
    }
    pc__writer_unlock(base, &c->w);
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
    struct lru_entry *e, *next;

    pc__writer_lock(&c->w);
    window_open(c); /* every key goes at once */
    for (e = c->list.next; e != &c->list; e = next) {
        next = e->next;
        mark_removed(&e->kv);
        pc__index_erase(&c->ix[e->kv.w.live.slot], &e->kv);
        pc__reclaimer_retire(c->w.rc, &e->kv);
    }
    c->list.next = c->list.prev = &c->list;
    __atomic_store_n(&c->count, 0, __ATOMIC_RELAXED);
    window_close(c);
    pc__writer_unlock(base, &c->w);
}
