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

/* Wait until no reader is between announcing itself and publishing. */
static void wait_inflight(struct lru_cache *c)
{
    for (struct lru_log *l = c->logs; l != NULL; l = l->next)
        while (__atomic_load_n(&l->inflight, __ATOMIC_ACQUIRE))
            ck_pr_stall();
}

/* Apply, in stamp order, every logged use stamped below cutoff. Each log's
 * records are in stamp order (a thread's stamps grow), so this is a merge:
 * one scan finds the log with the oldest record and the oldest record of
 * every other log, and that log's records are applied in a run up to the
 * latter (or the cutoff). No record below the cutoff appears during the
 * drain (above: every one was published before it began), so the bound
 * found by the scan holds for the whole run. The head is stored once per
 * run: a reader sees its log full a little longer, never a record
 * overwritten before it was read. */
static void drain_below(struct lru_cache *c, uint64_t cutoff)
{
    for (;;) {
        struct lru_log *best = NULL;
        uint64_t best_stamp = cutoff, bound = cutoff, head, tail;

        for (struct lru_log *l = c->logs; l != NULL; l = l->next) {
            uint64_t t = __atomic_load_n(&l->tail, __ATOMIC_ACQUIRE), s;

            if (l->head == t)
                continue;
            s = l->rec[l->head % LOG_RECORDS].stamp;
            if (s < best_stamp) {
                bound = best_stamp;
                best_stamp = s;
                best = l;
            } else if (s < bound) {
                bound = s;
            }
        }
        if (best == NULL)
            return;
        tail = __atomic_load_n(&best->tail, __ATOMIC_ACQUIRE);
        head = best->head;
        do {
            struct pc__kv *kv = best->rec[head % LOG_RECORDS].kv;

            head++;
            if (!pc__kv_removed_flags(pc__kv_flags(kv)))
                list_move_head(c, node_of(kv));
        } while (head != tail && best->rec[head % LOG_RECORDS].stamp < bound);
        __atomic_store_n(&best->head, head, __ATOMIC_RELEASE);
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
