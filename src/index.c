/*
 * index: ck_hs glue. Hash and compare callbacks over struct pc__kv, and the
 * ck_malloc whose deferred free goes through the epoch reclaimer of the
 * writer that caused it (see index.h for the argument).
 *
 * ck_malloc's callbacks carry no context, so the writer names its reclaimer
 * in a thread-local variable for the duration of its critical section
 * (pc__index_writer_begin/end). ck_hs calls free(defer=true) only from inside a
 * mutating call made by that same thread, so the variable is always the
 * right one. A table is allocated with a small header holding the
 * ck_epoch_entry its deferred free needs, so deferring never allocates.
 */
#include "index.h"

#include <stdalign.h>

#include "alloc.h"
#include "retire.h"

struct table_hdr {
    ck_epoch_entry_t ee;
    struct pc__reclaimer *rc; /* whose grace period frees it (if deferred) */
    size_t size;
    alignas(16) unsigned char mem[];
};

static _Thread_local struct pc__reclaimer *writer_reclaimer;

void pc__index_writer_begin(struct pc__reclaimer *r)
{
    writer_reclaimer = r;
}

void pc__index_writer_end(void)
{
    writer_reclaimer = NULL;
}

static void *table_malloc(size_t size)
{
    struct table_hdr *h = pc__alloc(sizeof *h + size);

    if (h == NULL)
        return NULL;
    h->size = size;
    /* ck 0.7.1's ck_hs_map_create never initialises the table header's
     * tombstone counter, which pc__index_maintain reads through ck_hs_stat:
     * reused (dirty) memory made it rebuild the table on every removal.
     * Zeroing costs about what ck's own memset of the slots costs, once
     * per table. */
    memset(h->mem, 0, size);
    return h->mem;
}

static void table_free_now(struct table_hdr *h)
{
    pc__free(h, sizeof *h + h->size);
}

static void table_free_deferred(ck_epoch_entry_t *ee)
{
    struct table_hdr *h = (struct table_hdr *)ee;

    /* TSan: readers that probed this table have left (the grace-period scan
     * saw it with relaxed loads); pairs with read_leave's release (tsan.h,
     * case 2). */
    PC_TSAN_ACQUIRE(&h->rc->dom->tsan_grace);
    table_free_now(h);
}

static void table_free(void *p, size_t size, bool defer)
{
    struct table_hdr *h;

    (void)size;
    if (p == NULL)
        return;
    h = (struct table_hdr *)((unsigned char *)p -
                             offsetof(struct table_hdr, mem));
    if (defer && writer_reclaimer != NULL) {
        h->rc = writer_reclaimer;
        pc__reclaimer_defer(writer_reclaimer, &h->ee, table_free_deferred);
    } else {
        table_free_now(h);
    }
}

static struct ck_malloc table_allocator = {
    .malloc = table_malloc,
    .realloc = NULL,
    .free = table_free,
};

static unsigned long kv_hash_cb(const void *object, unsigned long seed)
{
    const struct pc__kv *kv = pc__index_unpack(object);

    return (unsigned long)pc__hash((const struct pc__hash_seed *)seed,
                                   pc__kv_key(kv), kv->klen);
}

/* Called by ck_hs for every occupied slot on a probe sequence: the hash tag
 * (index.h) filters out almost every non-matching slot without touching the
 * entry, and the common 8-byte key is compared inline, without memcmp. */
static bool kv_compare_cb(const void *stored, const void *key)
{
    const struct pc__kv *a, *b = pc__index_unpack(key);
    uintptr_t stag = (uintptr_t)stored & ~PC__INDEX_ADDR_MASK;

    if (b->flags & PC__KV_PROBE) { /* lookups: the hot path */
        const struct pc__probe *p = (const struct pc__probe *)b;

        /* Different hash tags: different keys, decided without touching
         * the stored entry (no cache miss). */
        if (stag != p->tag)
            return false;
        a = pc__index_unpack(stored);
        /* TSan: ck_hs found `stored` through a pointer it loaded inside
         * libck (uninstrumented); pairs with pc__index_upsert's release
         * (tsan.h, case 1). */
        PC_TSAN_ACQUIRE(a);
        if (a->klen != p->hdr.klen)
            return false;
        if (a->klen == 8)
            return pc__hash_rd64(a->data) == pc__hash_rd64(p->key);
        /* An empty key may be passed as NULL: memcmp must not see it. */
        return a->klen == 0 || memcmp(a->data, p->key, a->klen) == 0;
    }
    if (stag != ((uintptr_t)key & ~PC__INDEX_ADDR_MASK))
        return false;
    a = pc__index_unpack(stored);
    return a->klen == b->klen &&
           (a->klen == 0 || memcmp(a->data, b->data, a->klen) == 0);
}

bool pc__index_init(struct pc__index *ix, const struct pc__hash_seed *seed,
                    unsigned long expected)
{
    /* ck_hs grows past 50% load; size for `expected` live entries plus the
     * one a put inserts before it evicts. */
    unsigned long slots = expected ? 2 * (expected + 1) : 16;

    ix->slots = 8; /* ck_hs's minimum table, CK_HS_PROBE_L1 */
    while (ix->slots < slots)
        ix->slots <<= 1;
    return ck_hs_init(&ix->hs,
                      CK_HS_MODE_SPMC | CK_HS_MODE_OBJECT | CK_HS_MODE_DELETE,
                      kv_hash_cb, kv_compare_cb, &table_allocator, slots,
                      (unsigned long)(uintptr_t)seed);
}

void pc__index_destroy(struct pc__index *ix)
{
    ck_hs_destroy(&ix->hs);
}

void pc__index_maintain(struct pc__index *ix)
{
    struct ck_hs_stat st;

    /* ck_hs counts a tombstone when a key is removed but not when
     * ck_hs_set later reuses it, so st.tombstones is "removals since the
     * last rebuild", an over-estimate of the tombstones in the table. With
     * per-slot probe bounds (CK_HS_MODE_DELETE) lookups pay little for
     * tombstones, so the rebuild (which rehashes every entry: a cache miss
     * each) waits until that count plus the live entries reach 7/8 of the
     * slots. */
    ck_hs_stat(&ix->hs, &st);
    if (st.tombstones > 64 &&
        8 * (st.n_entries + st.tombstones) > 7 * ix->slots)
        ck_hs_rebuild(&ix->hs);
}

bool pc__index_reset(struct pc__index *ix)
{
    return ck_hs_reset(&ix->hs);
}
