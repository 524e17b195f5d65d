/*
 * write: queueing removals for the removal listener and reporting them
 * without recursion (design in write.h).
 */
#include "write.h"

#include <pthread.h>

#include "core.h"
#include "retire.h"

/* The notifications running on this thread, innermost first: a listener
 * that writes to a cache already being reported on this thread appends
 * to that report instead of starting a nested one. */
struct notifier {
    struct notifier *outer;
    const pc_cache *cache;
    struct pc__removals *queue;
};
static _Thread_local struct notifier *running;

/* The queue is linked through w.retire_next; entries are 16-byte aligned,
 * so a link's low 3 bits carry the cause of the entry it points to (the
 * entry's own bytes may still be read by readers: they stay untouched,
 * but for the header's hx, so the links are stored as entry.h says:
 * pc__kv_unlinking first, then atomic stores). The head's cause lives in
 * rm->head_cause. */
#define CAUSE_MASK ((uintptr_t)7)

static struct pc__kv *link_kv(uintptr_t link)
{
    return (struct pc__kv *)(link & ~CAUSE_MASK);
}

static pc_removal_cause link_cause(uintptr_t link)
{
    return (pc_removal_cause)(link & CAUSE_MASK);
}

static uintptr_t link_of(struct pc__kv *kv, pc_removal_cause cause)
{
    return (uintptr_t)kv | (uintptr_t)cause;
}

/* pc__removed with a listener: queue kv for it. */
void pc__removed_queue(struct pc__removals *rm, struct pc__kv *kv,
                       pc_removal_cause cause)
{
    PC__ASSERT(((uintptr_t)kv & CAUSE_MASK) == 0);
    pc__kv_unlinking(kv);
    pc__kv_set_link(kv, NULL);
    if (rm->head == NULL) {
        rm->head = kv;
        rm->head_cause = cause;
    } else {
        pc__kv_set_link(rm->tail, (struct pc__kv *)link_of(kv, cause));
    }
    rm->tail = kv;
}

static void retire_all(struct pc__writer *w, struct pc__kv *kv, pc_cache *c)
{
    pc__writer_lock(w);
    while (kv != NULL) {
        struct pc__kv *next = kv->w.retire_next;

        pc__reclaimer_retire(w->rc, kv);
        kv = next;
    }
    pc__writer_unlock(c, w);
}

/* pc__removals_finish with removals queued. */
void pc__removals_report(pc_cache *c, struct pc__removals *rm,
                         struct pc__writer *w)
{
    struct notifier self, *n;
    struct pc__kv *done = NULL, *done_tail = NULL;
    int cancel_state;

    PC__ASSERT(rm->head != NULL);
    for (n = running; n != NULL; n = n->outer) {
        if (n->cache == c) { /* a listener's own write: join its report */
            if (n->queue->head == NULL) {
                n->queue->head = rm->head;
                n->queue->head_cause = rm->head_cause;
            } else {
                pc__kv_set_link(n->queue->tail, (struct pc__kv *)link_of(
                                                    rm->head, rm->head_cause));
            }
            n->queue->tail = rm->tail;
            rm->head = rm->tail = NULL;
            return;
        }
    }
    /* The listener is the caller's code but not a cancellation point of
     * ours (purecache.h, "Cancellation"): a thread cancelled inside it
     * would leave `running` on a dead frame and never retire the entries
     * still queued (they leak), nor finish the call (pc_delete's detach). */
    pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &cancel_state);
    self = (struct notifier){running, c, rm};
    running = &self;
    while (rm->head != NULL) {
        struct pc__kv *kv = rm->head;
        pc_removal_cause cause = rm->head_cause;
        uintptr_t next = (uintptr_t)kv->w.retire_next;

        /* Detach before the call: the listener may append to the queue. */
        rm->head = link_kv(next);
        rm->head_cause = link_cause(next);
        if (rm->head == NULL)
            rm->tail = NULL;
        rm->fn(rm->ctx, pc__kv_key(kv), kv->klen, pc__kv_value(kv), kv->vlen,
               cause);
        pc__kv_set_link(kv, NULL);
        if (done == NULL)
            done = kv;
        else
            pc__kv_set_link(done_tail, kv);
        done_tail = kv;
    }
    running = self.outer;
    retire_all(w, done, c);
    pthread_setcancelstate(cancel_state, NULL);
}
