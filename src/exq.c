/*
 * exq: the expiry queue's binary min-heap (the design, and how the shard
 * keeps every entry that can expire covered: exq.h). Writer-only.
 */
#include "exq.h"

#include "alloc.h"

/* Move the items to an array of cap (>= n) items; false on ENOMEM (the
 * queue unchanged). */
static bool resize(struct pc__exq *q, size_t cap)
{
    struct pc__exq_item *a = pc__alloc_array(sizeof *a * cap, 0);

    if (a == NULL)
        return false;
    if (q->n)
        memcpy(a, q->a, sizeof *a * q->n);
    pc__free_array(q->a, sizeof *q->a * q->cap, 0);
    q->a = a;
    q->cap = (uint32_t)cap;
    return true;
}

/* A quarter more items, or 16, to the end of the array's allocation class
 * (so the queue costs about what it holds, where doubling cost up to twice
 * that). Out of line: rare, and the flattened puts would copy it in. */
__attribute__((noinline, cold)) bool pc__exq_grow(struct pc__exq *q)
{
    size_t cap = (size_t)q->cap + q->cap / 4 + 16;

    if (q->cap >= UINT32_MAX / 2)
        return false;
    cap = pc__alloc_usable_count(cap, sizeof *q->a);
    return resize(q, cap < UINT32_MAX / 2 ? cap : UINT32_MAX / 2);
}

static void sift_up(struct pc__exq *q, uint32_t i)
{
    struct pc__exq_item it = q->a[i];

    while (i > 0) {
        uint32_t p = (i - 1) / 2;

        if (q->a[p].at <= it.at)
            break;
        q->a[i] = q->a[p];
        i = p;
    }
    q->a[i] = it;
}

static void sift_down(struct pc__exq *q, uint32_t i)
{
    struct pc__exq_item it = q->a[i];

    for (;;) {
        uint32_t c = 2 * i + 1;

        if (c >= q->n)
            break;
        if (c + 1 < q->n && q->a[c + 1].at < q->a[c].at)
            c++;
        if (it.at <= q->a[c].at)
            break;
        q->a[i] = q->a[c];
        i = c;
    }
    q->a[i] = it;
}

void pc__exq_append(struct pc__exq *q, uint64_t at, struct pc__index_pos pos)
{
    PC__ASSERT(q->n < q->cap && pos.slot < PC__CHUNK_SLOTS);
    q->a[q->n++] = (struct pc__exq_item){at, pos.chunk, pos.slot};
    if (pos.chunk < q->nmarks)
        q->marks[pos.chunk] |= (uint8_t)(1u << pos.slot);
}

bool pc__exq_mark_room(struct pc__exq *q, size_t chunks)
{
    uint8_t *m = chunks <= UINT32_MAX ? pc__alloc_array(chunks, 0) : NULL;

    if (m == NULL)
        return false;
    memset(m, 0, chunks);
    pc__free_array(q->marks, q->nmarks, 0);
    q->marks = m;
    q->nmarks = (uint32_t)chunks;
    return true;
}

static void note_max(struct pc__exq *q)
{
    q->max_at = 0;
    for (uint32_t i = q->n / 2; i < q->n; i++) /* the maximum is a leaf */
        if (q->a[i].at > q->max_at)
            q->max_at = q->a[i].at;
}

void pc__exq_push(struct pc__exq *q, uint64_t at, struct pc__index_pos pos)
{
    pc__exq_append(q, at, pos);
    /* Expiring no sooner than any other (one default TTL): its place is
     * the end, without reading its parent, a cache miss in a large heap. */
    if (q->a[q->n - 1].at >= q->max_at)
        q->max_at = q->a[q->n - 1].at;
    else
        sift_up(q, q->n - 1);
}

struct pc__exq_item pc__exq_pop(struct pc__exq *q)
{
    struct pc__exq_item top = q->a[0];

    q->a[0] = q->a[--q->n];
    if (q->n > 1)
        sift_down(q, 0);
    if (q->n == 0)
        q->max_at = 0;
    return top;
}

void pc__exq_reset(struct pc__exq *q, uint32_t gen)
{
    q->gen = gen;
    q->n = 0;
    q->max_at = 0;
    if (q->nmarks != 0)
        memset(q->marks, 0, q->nmarks);
}

void pc__exq_heapify(struct pc__exq *q)
{
    for (uint32_t i = q->n / 2; i-- > 0;)
        sift_down(q, i);
    note_max(q);
    /* Give back what is unused (if memory is short, the larger array
     * stays: nothing is lost), but only when most of it is: a queue that
     * refills to the same size between rebuilds keeps its array, since a
     * large one comes back from the system page by page (alloc.c). */
    if (q->cap > 64 && q->n < q->cap / 6)
        resize(q, q->n < 11 ? 32 : 3 * (size_t)q->n);
}

void pc__exq_free(struct pc__exq *q)
{
    pc__free_array(q->a, sizeof *q->a * q->cap, 0);
    pc__free_array(q->marks, q->nmarks, 0);
    q->a = NULL;
    q->n = q->cap = 0;
    q->max_at = 0;
    q->marks = NULL;
    q->nmarks = 0;
}
