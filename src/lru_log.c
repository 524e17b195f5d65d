/*
 * lru_log: the exact-LRU build's per-thread access logs (algorithm atop
 * lru.c): windows on the recency clock, and draining the logs into the
 * recency list in stamp order.
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
 * Memory safety of log records. A record names an entry that may since
 * have been removed; draining skips removed entries, but must never read a
 * freed one. Retired entries are freed only after a grace period, which
 * every reader that found one has left, having published its record
 * first; and before retired memory is handed over to be freed the writer
 * drains all logs (lru_before_free, called by core.c with the lock held).
 * A record published after that drain was stamped after the writer's
 * cutoff, by a reader that began after the grace period: it cannot name
 * that memory.
 */
#include "lru.h"

#ifdef PC_DEBUG
uint64_t pc__debug_drain_steps;
#define STEP() __atomic_add_fetch(&pc__debug_drain_steps, 1, __ATOMIC_RELAXED)
#else
#define STEP() ((void)0)
#endif

/* Wait until no reader is between announcing itself and publishing. */
static void wait_inflight(struct lru_cache *c)
{
    for (struct lru_log *l = c->logs; l != NULL; l = l->next)
        while (__atomic_load_n(&l->inflight, __ATOMIC_ACQUIRE))
            ck_pr_stall();
}

/* Restore the min-heap order of h[0..n) below slot i (keys: stamps). */
static void merge_down(struct lru_merge *h, size_t n, size_t i)
{
    struct lru_merge e = h[i];

    for (;;) {
        size_t m = 2 * i + 1;

        STEP();
        if (m >= n)
            break;
        if (m + 1 < n && h[m + 1].stamp < h[m].stamp)
            m++;
        if (h[m].stamp >= e.stamp)
            break;
        h[i] = h[m];
        i = m;
    }
    h[i] = e;
}

/* Apply, in stamp order, every logged use stamped below cutoff. Each log's
 * records are in stamp order (a thread's stamps grow), so this is a merge
 * of the logs: a min-heap of the logs on their oldest record's stamp
 * (c->merge, one slot per log), whose top's records are applied in a run
 * up to the second oldest log head (or the cutoff). O(records * log logs):
 * a scan of every log per run made a drain of L logs whose records
 * interleave O(records * L), 68 ms with 200 logs of 250 records each,
 * all of it inside a put's window, where every reader waits. No record
 * below the cutoff appears during the drain (above: every one was
 * published before it began), so the bound holds for the whole run. The
 * head is stored once per run: a reader sees its log full a little
 * longer, never a record overwritten before it was read. */
static void drain_below(struct lru_cache *c, uint64_t cutoff)
{
    struct lru_merge *h = c->merge;
    size_t n = 0;

    for (struct lru_log *l = c->logs; l != NULL; l = l->next) {
        uint64_t t = __atomic_load_n(&l->tail, __ATOMIC_ACQUIRE), s;

        STEP();
        if (l->head == t || (s = l->rec[l->head % LOG_RECORDS].stamp) >= cutoff)
            continue;
        PC__ASSERT(n < c->merge_cap);
        h[n++] = (struct lru_merge){s, l};
    }
    for (size_t i = n / 2; i-- > 0;)
        merge_down(h, n, i);
    while (n > 0) {
        struct lru_log *best = h[0].l;
        uint64_t bound = cutoff, head, tail;

        if (n > 1 && h[1].stamp < bound)
            bound = h[1].stamp;
        if (n > 2 && h[2].stamp < bound)
            bound = h[2].stamp;
        tail = __atomic_load_n(&best->tail, __ATOMIC_ACQUIRE);
        head = best->head;
        do {
            struct pc__kv *kv = best->rec[head % LOG_RECORDS].kv;

            head++;
            if (!pc__kv_removed_flags(pc__kv_flags(kv)))
                list_move_head(c, node_of(kv));
        } while (head != tail && best->rec[head % LOG_RECORDS].stamp < bound);
        __atomic_store_n(&best->head, head, __ATOMIC_RELEASE);
        if (head != tail && best->rec[head % LOG_RECORDS].stamp < cutoff)
            h[0].stamp = best->rec[head % LOG_RECORDS].stamp;
        else
            h[0] = h[--n];
        merge_down(h, n, 0);
    }
}

uint64_t pc__lru_catch_up(struct lru_cache *c)
{
    uint64_t cutoff = __atomic_add_fetch(&c->clock, 2, __ATOMIC_ACQ_REL);

    wait_inflight(c);
    drain_below(c, cutoff);
    return cutoff;
}

void pc__lru_window_open(struct lru_cache *c)
{
    uint64_t p = __atomic_add_fetch(&c->clock, 1, __ATOMIC_ACQ_REL);

    PC__ASSERT(p & 1);
    wait_inflight(c);
    drain_below(c, p);
}

void pc__lru_window_close(struct lru_cache *c)
{
    __atomic_add_fetch(&c->clock, 1, __ATOMIC_RELEASE);
}

void pc__lru_before_free(pc_cache *base)
{
    pc__lru_catch_up(lru_of(base));
}
