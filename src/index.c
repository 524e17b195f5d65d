/*
 * index: the writer side of the chunked hash table (design and concurrency
 * argument in index.h): insertion with overflow counts, removal in place,
 * growth (and a trim after a lowered limit) into a new table with the old
 * one retired.
 *
 * Every function here runs with the owning writer lock held, so plain
 * loads of the table's words are race-free; stores that readers may
 * observe are atomic, in the order index.h's argument requires.
 */
#include "index.h"

#include <stdint.h>

#include "alloc.h"
#include "retire.h"

/* The load limit: 4 of every 7 slots on average. Probing visits chunks in
 * a hash-derived stride (index.h), and with churn (every insert paired
 * with a removal) the overflow counts settle where a lookup reads about
 * 1.3 chunks at this load; at 6/7 it would read 17. */
#define MAX_LOAD_NUM 4
/* Growth: a table for a quarter more entries than the old one allowed, to
 * the end of its size class (pc__index_chunks): 1.25 to 1.6 times the
 * chunks, so that a table that grows with its entries (a byte-bounded
 * cache's) is 0.6 to 1.0 of its load limit after its last growth, and each
 * entry is moved about three times while it fills. (An eighth, the next
 * size class every time, measured the same resident memory for the
 * harness's byte-bounded caches, with half again as many rebuilds.) */
#define GROW_DIV 4

#define OVERFLOW_SHIFT 56
#define OVERFLOW_SATURATED 255u

static size_t table_bytes(size_t nchunks)
{
    return sizeof(struct pc__table) + nchunks * sizeof(struct pc__chunk);
}

static struct pc__table *table_new(size_t nchunks)
{
    struct pc__table *t = pc__alloc_array(table_bytes(nchunks), 64);

    if (t == NULL)
        return NULL;
    memset(t, 0, table_bytes(nchunks));
    t->n = nchunks;
    t->max_load = nchunks * MAX_LOAD_NUM;
    return t;
}

static void table_free(struct pc__table *t)
{
    pc__free_array(t, table_bytes(t->n), 64);
}

static void table_free_deferred(ck_epoch_entry_t *ee)
{
    table_free(PC__CONTAINER_OF(ee, struct pc__table, ee));
}

/* Whether a table of n chunks may be probed in any stride (index.h): n
 * is prime, or 1. Trial division: this runs when a table is made. */
static bool chunks_ok(size_t n)
{
    if (n < 4)
        return n != 0;
    if (n % 2 == 0 || n % 3 == 0)
        return false;
    for (size_t d = 5; d * d <= n; d += 6)
        if (n % d == 0 || n % (d + 2) == 0)
            return false;
    return true;
}

/* The largest count of chunks a table may have (chunks_ok) that is at
 * most x, or x if none is (x < 1). */
static size_t chunks_at_most(size_t x)
{
    size_t n = x;

    while (n > 1 && !chunks_ok(n))
        n--;
    return n >= 1 ? n : x;
}

/* The smallest prime n of chunks holding `entries` at the load limit,
 * then the largest prime whose table still fits that table's allocation
 * size class: the size class is paid for, so its room goes to the table
 * (a lower load), and a table grows a size class or more at a time. */
size_t pc__index_chunks(size_t entries)
{
    size_t need = (entries + MAX_LOAD_NUM - 1) / MAX_LOAD_NUM, n, fit;

    for (n = need > 1 ? need : 1; !chunks_ok(n); n++)
        ;
    fit = (pc__alloc_usable_aligned(table_bytes(n), 64) -
           sizeof(struct pc__table)) /
          sizeof(struct pc__chunk);
    return fit > n ? chunks_at_most(fit) : n;
}

/* pc__index_chunks, at most max (the largest prime up to it, if more). */
static size_t chunks_within(size_t entries, size_t max)
{
    size_t n = pc__index_chunks(entries);

    return n > max ? chunks_at_most(max) : n;
}

size_t pc__index_room(size_t share, size_t parts)
{
    size_t r = 0;

    if (parts <= 1)
        return share;
    while ((r + 1) * (r + 1) <= share) /* (once per table made) */
        r++;
    return share + 4 * r;
}

bool pc__index_init(struct pc__index *ix, size_t expected, size_t max_chunks,
                    const struct pc__hash_seed *seed)
{
    ix->seed = seed;
    ix->max_chunks = max_chunks > 0 ? max_chunks : 1;
    ix->hint = NULL;
    ix->count = 0;
    ix->gen = 0;
    ix->table = table_new(chunks_within(expected + 1, ix->max_chunks));
    ix->n = ix->table != NULL ? ix->table->n : 0;
    return ix->table != NULL;
}

void pc__index_destroy(struct pc__index *ix)
{
    if (ix->table != NULL)
        table_free(ix->table);
    ix->table = NULL;
}

static unsigned overflow_of(uint64_t ctrl)
{
    return (unsigned)(ctrl >> OVERFLOW_SHIFT);
}

static void ctrl_store(struct pc__chunk *c, uint64_t ctrl)
{
    __atomic_store_n(&c->ctrl, ctrl, __ATOMIC_RELEASE);
}

static void overflow_add(struct pc__chunk *c, int delta)
{
    uint64_t ctrl = c->ctrl;
    unsigned n = overflow_of(ctrl);

    if (n == OVERFLOW_SATURATED)
        return; /* stays until the table is rebuilt by growth */
    PC__ASSERT(delta > 0 || n > 0);
    n = (unsigned)((int)n + delta);
    ctrl_store(c, (ctrl & ~(0xffull << OVERFLOW_SHIFT)) |
                      ((uint64_t)n << OVERFLOW_SHIFT));
}

/* The first empty slot of a chunk, or -1. */
static int free_slot(uint64_t ctrl)
{
    uint32_t m = pc__index_match(ctrl, 0);

    return m != 0 ? __builtin_ctz(m) : -1;
}

/* Publish kv (tag) in free slot j of chunk i: the pointer, then the tag
 * (index.h); return the position. */
static struct pc__index_pos publish(struct pc__table *t, size_t i, int j,
                                    uint8_t tag, struct pc__kv *kv)
{
    struct pc__chunk *c = &t->chunks[i];

    __atomic_store_n(&c->slot[j], kv, __ATOMIC_RELEASE);
    ctrl_store(c, c->ctrl | ((uint64_t)tag << (8 * j)));
    return (struct pc__index_pos){(uint32_t)i, (uint8_t)j};
}

/* Place kv (tag) in the first chunk with room from its home on, raising
 * the overflow counts of the full chunks it passes (before publishing it:
 * index.h), and return where. The table has room (count < max_load). */
static struct pc__index_pos place(struct pc__table *t, uint32_t hash,
                                  uint8_t tag, struct pc__kv *kv)
{
    size_t i = pc__index_home(hash, t->n), step = pc__index_step(hash, t->n);
    int j;

    while ((j = free_slot(t->chunks[i].ctrl)) < 0) {
        overflow_add(&t->chunks[i], +1);
        i = pc__index_next(i, step, t->n);
    }
    return publish(t, i, j, tag, kv);
}

/* A table of `nchunks` chunks holding every entry of old (which it has
 * room for); NULL on ENOMEM. */
static struct pc__table *rebuilt(const struct pc__table *old, size_t nchunks,
                                 const struct pc__hash_seed *seed)
{
    struct pc__table *t = table_new(nchunks);

    if (t == NULL)
        return NULL;
    for (size_t i = 0; i < old->n; i++) {
        const struct pc__chunk *c = &old->chunks[i];

        for (int j = 0; j < PC__CHUNK_SLOTS; j++) {
            uint8_t tag = (uint8_t)(c->ctrl >> (8 * j));

            if (tag != 0)
                place(t, pc__kv_hash(c->slot[j], seed), tag, c->slot[j]);
        }
    }
    return t;
}

/* Publish t in place of ix's table, which goes to rc (readers still in it
 * finish there), and count a generation. */
static void table_replace(struct pc__index *ix, struct pc__table *t,
                          struct pc__reclaimer *rc)
{
    struct pc__table *old = ix->table;

    __atomic_store_n(&ix->table, t, __ATOMIC_RELEASE);
    __atomic_store_n(&ix->n, t->n, __ATOMIC_RELAXED);
    ix->gen++;
    pc__reclaimer_defer(rc, &old->ee, table_free_deferred);
}

bool pc__index_put(struct pc__index *ix, uint64_t h, struct pc__kv *kv,
                   struct pc__kv **old, struct pc__reclaimer *rc)
{
    struct pc__table *t = ix->table;
    uint8_t tag = pc__index_tag(h);
    size_t i = pc__index_home((uint32_t)h, t->n);
    size_t step = pc__index_step((uint32_t)h, t->n);
    size_t home = i, room = SIZE_MAX; /* first chunk seen with a free slot */

    *old = NULL;
    PC__ASSERT(pc__kv_hash(kv, ix->seed) == (uint32_t)h);
    for (size_t k = 0; k < t->n; k++, i = pc__index_next(i, step, t->n)) {
        struct pc__chunk *c = &t->chunks[i];

        for (uint32_t m = pc__index_match(c->ctrl, tag); m != 0; m &= m - 1) {
            int j = __builtin_ctz(m);
            struct pc__kv *cur = c->slot[j];

            if (pc__kv_key_equals(cur, pc__kv_key(kv), kv->klen)) {
                pc__index_replace_at(ix, &c->slot[j], kv);
                *old = cur;
                return true;
            }
        }
        if (room == SIZE_MAX && free_slot(c->ctrl) >= 0)
            room = i;
        if (overflow_of(c->ctrl) == 0)
            break;
    }
    if (ix->count + 1 > t->max_load) {
        if (!pc__index_reserve(ix, ix->count + 1, rc))
            return false;
        place(ix->table, (uint32_t)h, tag, kv);
    } else if (room == home) { /* the common case: room at home */
        publish(t, home, free_slot(t->chunks[home].ctrl), tag, kv);
    } else {
        place(t, (uint32_t)h, tag, kv);
    }
    ix->count++;
    return true;
}

struct pc__index_pos pc__index_insert(struct pc__index *ix, uint64_t h,
                                      struct pc__kv *kv)
{
    struct pc__table *t = ix->table;
    size_t home = pc__index_home((uint32_t)h, t->n);
    int j = free_slot(t->chunks[home].ctrl);

    PC__ASSERT(ix->count + 1 <= t->max_load);
    PC__ASSERT(pc__kv_hash(kv, ix->seed) == (uint32_t)h);
    ix->count++;
    if (__builtin_expect(j >= 0, 1)) /* room at home */
        return publish(t, home, j, pc__index_tag(h), kv);
    return place(t, (uint32_t)h, pc__index_tag(h), kv);
}

/* The chunks a table's load limit allows for: all of them, but for a table
 * a trim short of memory kept (pc__index_trim), the chunks of the table
 * the trim would have made. Growth and trims decide on this, so that they
 * do what they would have done after a trim that could allocate. */
static size_t usable_chunks(const struct pc__table *t)
{
    return t->max_load / MAX_LOAD_NUM;
}

bool pc__index_grow(struct pc__index *ix, size_t n, struct pc__reclaimer *rc)
{
    struct pc__table *bigger;
    size_t want, to;

    PC__ASSERT(n > ix->table->max_load);
    want = usable_chunks(ix->table) * MAX_LOAD_NUM;
    want += want / GROW_DIV;
    to = chunks_within(n > want ? n : want, ix->max_chunks);
    if (to * MAX_LOAD_NUM < n || to * MAX_LOAD_NUM <= ix->table->max_load)
        return false; /* past max_chunks: nothing changed */
    bigger = rebuilt(ix->table, to, ix->seed);
    if (bigger == NULL)
        return false;
    table_replace(ix, bigger, rc);
    return true;
}

bool pc__index_trim(struct pc__index *ix, size_t n, struct pc__reclaimer *rc)
{
    struct pc__table *t = ix->table, *smaller;
    size_t want =
        chunks_within((n > ix->count ? n : ix->count) + 1, ix->max_chunks);
    size_t usable = usable_chunks(t);

    if (usable >= 4 * want) {
        usable = want;
    } else if (usable == t->n) {
        return false; /* nothing to do */
    }
    smaller = rebuilt(t, usable, ix->seed);
    if (smaller == NULL) { /* the table stays, with the smaller one's limit */
        t->max_load = usable * MAX_LOAD_NUM;
        return false;
    }
    table_replace(ix, smaller, rc);
    return true;
}

/* Unlink the entry in chunk i, slot j, found by probing from `home` in
 * strides of `step`: the chunks passed on the way lose one overflow. */
static void erase_at(struct pc__index *ix, size_t home, size_t step, size_t i,
                     int j)
{
    struct pc__table *t = ix->table;
    struct pc__chunk *c = &t->chunks[i];

    ctrl_store(c, c->ctrl & ~(0xffull << (8 * j)));
    __atomic_store_n(&c->slot[j], NULL, __ATOMIC_RELAXED);
    for (size_t k = home; k != i; k = pc__index_next(k, step, t->n))
        overflow_add(&t->chunks[k], -1);
    ix->count--;
}

/* Where the pointer kv is (chunk *ci, slot *cj), searching from the home
 * chunk of its hash along its probe sequence while the chunks passed count
 * overflows (an entry lies past a chunk only if that chunk counts it);
 * false if it is not there. Never dereferences kv. */
static bool find_ptr(const struct pc__table *t, uint32_t hash,
                     const struct pc__kv *kv, size_t *ci, int *cj)
{
    size_t n = t->n, i = pc__index_home(hash, n);
    size_t step = pc__index_step(hash, n);

    for (size_t k = 0; k < n; k++, i = pc__index_next(i, step, n)) {
        const struct pc__chunk *c = &t->chunks[i];

        for (int j = 0; j < PC__CHUNK_SLOTS; j++) {
            if (c->slot[j] == kv) {
                *ci = i;
                *cj = j;
                return true;
            }
        }
        if (overflow_of(c->ctrl) == 0)
            return false;
    }
    return false;
}

static inline __attribute__((always_inline)) void
erase_hashed(struct pc__index *ix, struct pc__kv *kv, uint32_t hash)
{
    struct pc__table *t = ix->table;
    size_t i;
    int j;

    if (find_ptr(t, hash, kv, &i, &j))
        erase_at(ix, pc__index_home(hash, t->n), pc__index_step(hash, t->n), i,
                 j);
    else
        PC__ASSERT(!"pc__index_erase: entry not in the index");
}

uint32_t pc__index_hint(struct pc__index *ix, const struct pc__kv *kv)
{
#ifdef PC_DEBUG
    size_t i;
    int j;

    PC__ASSERT(
        find_ptr(ix->table, pc__kv_hash_again(kv, ix->seed), kv, &i, &j));
#endif
    if (kv != ix->hint) {
        ix->hint_hash = pc__kv_hash_again(kv, ix->seed);
        ix->hint = kv;
    }
    return ix->hint_hash;
}

/* An entry whose header holds a near expiry time: its hash from the hint,
 * or its key hashed again (out of line, so the common erase saves no
 * registers for the call). */
static __attribute__((noinline, cold)) void erase_near(struct pc__index *ix,
                                                       struct pc__kv *kv)
{
    uint32_t hash;

    if (kv == ix->hint) {
        hash = ix->hint_hash;
        ix->hint = NULL;
        PC__ASSERT(hash == pc__kv_hash_again(kv, ix->seed));
    } else {
        hash = pc__kv_hash_again(kv, ix->seed);
    }
    erase_hashed(ix, kv, hash);
}

void pc__index_erase(struct pc__index *ix, struct pc__kv *kv)
{
    if (__builtin_expect(pc__kv_near(kv), 0))
        erase_near(ix, kv);
    else
        erase_hashed(ix, kv, kv->w.live.hx);
}

struct pc__index_pos pc__index_locate(const struct pc__index *ix,
                                      const struct pc__kv *kv)
{
    size_t i = 0;
    int j = 0;
    bool found = find_ptr(ix->table, pc__kv_hash(kv, ix->seed), kv, &i, &j);

    PC__ASSERT(found);
    (void)found;
    return (struct pc__index_pos){(uint32_t)i, (uint8_t)j};
}

void pc__index_each(const struct pc__index *ix,
                    void (*fn)(void *arg, struct pc__kv *kv,
                               struct pc__index_pos pos),
                    void *arg)
{
    const struct pc__table *t = ix->table;

    for (size_t i = 0; i < t->n; i++) {
        const struct pc__chunk *c = &t->chunks[i];
        uint32_t used = ~pc__index_match(c->ctrl, 0) & 0x7fu;

        for (; used != 0; used &= used - 1) {
            int j = __builtin_ctz(used);

            fn(arg, c->slot[j],
               (struct pc__index_pos){(uint32_t)i, (uint8_t)j});
        }
    }
}

struct pc__kv *pc__index_remove(struct pc__index *ix, uint64_t h,
                                const void *key, size_t klen)
{
    struct pc__table *t = ix->table;
    struct pc__kv **slot;
    struct pc__kv *cur = pc__index_lookup(ix, h, key, klen, &slot);

    if (cur != NULL) { /* its chunk and slot, from where the slot lies */
        size_t i = (size_t)((char *)slot - (char *)t->chunks) /
                   sizeof(struct pc__chunk);

        if (cur == ix->hint)
            ix->hint = NULL;
        erase_at(ix, pc__index_home((uint32_t)h, t->n),
                 pc__index_step((uint32_t)h, t->n), i,
                 (int)(slot - t->chunks[i].slot));
    }
    return cur;
}
