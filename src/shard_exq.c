/*
 * shard_exq: each shard's expiry queue (exq.h) kept in step with its index
 * and policy, for the CLOCK build's cache (shard.c). A put of an entry
 * that can expire reserves room (pc__shard_exq_room: marks sized for the
 * index's table, made anew when the table was replaced, and a rebuild
 * instead of a doubling when the array is full of stale items) and then,
 * unless the position's mark says an earlier item covers it, pushes an
 * item (pc__shard_exq_note). An eviction asks first for an expired entry
 * (pc__shard_take_expired): items that come due are checked against what
 * their position holds now, and dropped, pushed again at the occupant's
 * time, or taken. Positions hold only while the index keeps its table:
 * any use of a position under another table generation rebuilds the
 * queue from the index first (a walk over every chunk and entry, paid for
 * by the pushes between rebuilds: exq.h gives the bound).
 *
 * Concurrency: writer-only, under the shard's lock; readers never look at
 * the queue (an expired entry they meet is a miss by its own time).
 */
#include "shard_state.h"

/* The generation of s's index table, as the expiry queue keeps it (32
 * bits: exq.h says why that cannot wrap). */
static uint32_t table_gen(const struct shard *s)
{
    return (uint32_t)pc__index_gen(&s->ix);
}

struct rebuild {
    struct shard *s;
    uint64_t origin;
};

static void exq_append_cb(void *arg, struct pc__kv *kv,
                          struct pc__index_pos pos)
{
    const struct rebuild *rb = arg;

    if (pc__kv_flags(kv) & PC__KV_EXPIRES)
        pc__exq_append(&rb->s->exq, pc__kv_expires(kv, rb->origin), pos);
}

/* Rebuild s's queue from its index: one item per entry that can expire,
 * at its expiry time and its position in today's table (exq.h). */
void pc__shard_exq_rebuild(struct shard_cache *sc, struct shard *s)
{
    struct rebuild rb = {s, pc__core_origin(&sc->base)};

    pc__exq_reset(&s->exq, table_gen(s));
    pc__index_each(&s->ix, exq_append_cb, &rb);
    pc__exq_heapify(&s->exq);
}

/* An entry of s expired at now, from its expiry queue, taken out of the
 * policy (not the index); NULL if none is due. Never `keep`. */
struct pc__kv *pc__shard_take_expired(struct shard_cache *sc, struct shard *s,
                                      struct pc__now now,
                                      const struct pc__kv *keep)
{
    struct pc__kv *taken = NULL;
    bool keep_due = false;

    while (pc__exq_due(&s->exq, now.ms)) {
        if (s->exq.gen != table_gen(s)) {
            pc__shard_exq_rebuild(sc, s); /* positions from before a growth */
            continue;
        }
        struct pc__exq_item it = pc__exq_pop(&s->exq);
        struct pc__index_pos pos = pc__exq_pos(it);
        struct pc__kv *kv = pc__index_at(&s->ix, pos);

        if (kv == NULL || !(pc__kv_flags(kv) & PC__KV_EXPIRES)) {
            pc__exq_unmark(&s->exq, pos); /* nothing there to cover */
            continue;
        }
        if (!pc__kv_expired(kv, now)) {
            /* A later occupant, or a replacement, that expires later:
             * cover it at its own time (in the room the pop left). */
            pc__exq_push(&s->exq, pc__kv_expires(kv, now.origin), pos);
        } else if (kv == keep) {
            keep_due = true; /* covered again below, not taken */
        } else {
            pc__exq_unmark(&s->exq, pos); /* (its entry leaves) */
            sc->pol->remove(s->pol, kv);
            taken = kv;
            break;
        }
    }
    if (keep_due) { /* (not expected: a put removes an expired old first) */
        struct pc__index_pos pos = pc__index_locate(&s->ix, keep);

        pc__exq_push(&s->exq, pc__kv_expires(keep, now.origin), pos);
    }
    return taken;
}

/* How many items s's queue may hold before a rebuild is worth its walk:
 * twice an item per entry that can expire, plus an eighth of the entries
 * and chunks the walk visits, plus 64 (exq.h). */
static uint64_t exq_worth(const struct shard *s)
{
    return 2 * (uint64_t)s->expiring +
           (pc__shard_count(s) + pc__index_chunk_count(&s->ix)) / 8 + 64;
}

/* Room in s's queue for one more push, and marks for every chunk of s's
 * table, all of today's table (exq.h): after a growth, new marks, and the
 * queue rebuilt for the new positions; a full array whose items are
 * mostly stale is rebuilt in place rather than doubled; false on ENOMEM,
 * with nothing changed that the queue covers (a rebuild, or marks made
 * anew, change only what it holds). */
bool pc__shard_exq_room(struct shard_cache *sc, struct shard *s)
{
    size_t chunks = pc__index_chunk_count(&s->ix);

    /* (Marks lost with a smaller array cost needless pushes, no more.) A
     * table replaced by a smaller one (the growth after a trim short of
     * memory) gets marks its size if memory allows (else the larger array
     * stays: no chunk beyond the table is looked at). */
    if (s->exq.nmarks < chunks ||
        (s->exq.nmarks > chunks && s->exq.gen != table_gen(s))) {
        if (!pc__exq_mark_room(&s->exq, chunks) && s->exq.nmarks < chunks)
            return false;
    }
    /* Marks of another table name other slots now: one left set would
     * skip a push the entry needs, and the entry would then be one that no
     * item covers, which a rebuild must hold in an array sized by the
     * items. So the queue moves to today's table before its marks are
     * read: rebuilt (clearing them), or, empty, just cleared. Even when
     * the array is as large as the table needs (a regrowth to the size of
     * a table that a trim short of memory left the marks of). */
    if (s->exq.gen != table_gen(s)) {
        if (s->exq.n != 0)
            pc__shard_exq_rebuild(sc, s);
        else
            pc__exq_reset(&s->exq, table_gen(s));
    }
    if (s->exq.n == s->exq.cap && s->exq.n > exq_worth(s))
        pc__shard_exq_rebuild(sc, s); /* (then at most expiring < n items) */
    return pc__exq_reserve(&s->exq);
}

/* kv, which expires at `at`, has entered s and is not covered
 * (room reserved, s->expiring counts it; *pos its position, if known, else
 * NULL): queue it, and rebuild the queue from s's index once stale items
 * outnumber live ones two to one in an array that has room (exq_room
 * rebuilds a full one sooner). A rebuild visits every entry of s and every
 * chunk of its table, so an eighth of those counts also pays for its next
 * one (exq.h). */
void pc__shard_exq_note(struct shard_cache *sc, struct shard *s,
                        const struct pc__kv *kv, uint64_t at,
                        const struct pc__index_pos *pos)
{
    /* pc__shard_exq_room brought the queue to today's table, after the
     * put's index growth; nothing between it and here replaces the table. */
    PC__ASSERT(s->exq.gen == table_gen(s));
    pc__exq_push(&s->exq, at,
                 pos != NULL ? *pos : pc__index_locate(&s->ix, kv));
    if (s->exq.n > exq_worth(s) + s->expiring)
        pc__shard_exq_rebuild(sc, s);
}
