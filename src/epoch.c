/*
 * epoch: per-cache ck_epoch domains, lazily registered thread records,
 * grace-period detection, and batched retirement. The overall design is in
 * epoch.h. This file holds two protocols, each explained where it is
 * implemented:
 *
 *  - Grace periods ("Grace periods." below): how the global epoch advances
 *    (one scan per heavy barrier, serialised per domain, the barrier being
 *    membarrier(2) when readers elide their fence), why an entry deferred
 *    at epoch b is safe to free at b + 2, how paced steps are shared
 *    process-wide, and what happens when no barrier can be had.
 *
 *  - Thread exit. A thread's record is released by the domain key's
 *    destructor when the thread exits. pc_destroy may run at the same moment
 *    (POSIX leaves a key deleted during another thread's destructor pass
 *    undefined), so the destructor never trusts the record pointer it is
 *    given: under the global registry lock it looks the pointer up among the
 *    records of the domains still alive, and only then unregisters it, and
 *    only if the record's owner is this thread (the address may have been
 *    reused for another thread's record by then). pc_destroy unlinks its
 *    domain from that list under the same lock (domain_unlink) before it
 *    frees anything, which also keeps other caches' paced steps away from
 *    its records.
 */
#include "epoch.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#ifdef PC_ASYM_FENCE
#include <linux/membarrier.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

#include "alloc.h"

static pthread_mutex_t live_lock = PTHREAD_MUTEX_INITIALIZER;
static struct pc_domain *live_domains;
static uint64_t next_domain_id = 1;

__thread struct pc_thread_cache pc_tls_thread
    __attribute__((tls_model("initial-exec")));

#ifdef PC_ASYM_FENCE
bool pc_asym_fence;
static bool hb_degraded; /* membarrier failed later: mprotect from now on */
static void hb_page_init(void);
static bool asym_refused; /* test hook: behave as if the kernel refused */
static pthread_once_t asym_once = PTHREAD_ONCE_INIT;

static long membarrier(int cmd)
{
    return syscall(__NR_membarrier, cmd, 0, 0);
}

/* Once per process, before its first domain: readers may skip their fence
 * only if every later grace-period scan can run PRIVATE_EXPEDITED. */
static void asym_init(void)
{
    long cmds = membarrier(MEMBARRIER_CMD_QUERY);

    if (asym_refused || cmds < 0 ||
        !(cmds & MEMBARRIER_CMD_PRIVATE_EXPEDITED) ||
        membarrier(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED) != 0)
        return;
    hb_page_init();
    pc_asym_fence = true;
}
#endif

bool pc__read_fence_elided(bool refuse)
{
#ifdef PC_ASYM_FENCE
    if (refuse)
        asym_refused = true;
    pthread_once(&asym_once, asym_init);
    return pc_asym_fence;
#else
    (void)refuse;
    return false;
#endif
}

const char *read_fence_name(void)
{
#if defined(PC_ASYM_FENCE)
    if (!pc__read_fence_elided(false))
        return "mfence (membarrier refused)";
    return __atomic_load_n(&hb_degraded, __ATOMIC_RELAXED)
               ? "membarrier (failed later; mprotect fallback)"
               : "membarrier";
#elif defined(PC_READ_FENCE_LOCKED_ADD) && defined(__x86_64__)
    return "locked-add";
#else
    return "mfence";
#endif
}

static void thread_exit(void *value)
{
    struct pc_domain *d;

    /* Runs on the exiting thread: a later call on this cache (from another
     * key's destructor) must register afresh, not reuse the record. */
    if (pc_tls_thread.t == value) {
        pc_tls_thread.id = 0;
        pc_tls_thread.t = NULL;
    }

    pthread_mutex_lock(&live_lock);
    for (d = live_domains; d != NULL; d = d->live_next) {
        struct pc_thread *t;

        pthread_mutex_lock(&d->lock);
        for (t = d->threads; t != NULL; t = t->next) {
            /* The owner check matters when this thread's cache was
             * destroyed meanwhile and another cache reuses the address for
             * a live thread's record: never release someone else's. */
            if (t == value && pthread_equal(t->owner, pthread_self())) {
                ck_epoch_unregister(&t->rec);
                break;
            }
        }
        pthread_mutex_unlock(&d->lock);
        if (t != NULL)
            break;
    }
    pthread_mutex_unlock(&live_lock);
}

int domain_init(struct pc_domain *d)
{
    memset(d, 0, sizeof *d);
    ck_epoch_init(&d->epoch);
    d->id = __atomic_fetch_add(&next_domain_id, 1, __ATOMIC_RELAXED);
#ifdef PC_ASYM_FENCE
    pthread_once(&asym_once, asym_init);
#endif
    if (pthread_key_create(&d->key, thread_exit) != 0)
        return PC_ENOMEM;
    pthread_mutex_init(&d->lock, NULL);
    pthread_mutex_init(&d->gp_lock, NULL);
    pthread_mutex_lock(&live_lock);
    d->live_next = live_domains;
    if (live_domains != NULL)
        live_domains->live_prev = d;
    live_domains = d;
    pthread_mutex_unlock(&live_lock);
    return 0;
}

void domain_unlink(struct pc_domain *d)
{
    pthread_mutex_lock(&live_lock);
    if (d->unlinked) {
        pthread_mutex_unlock(&live_lock);
        return;
    }
    d->unlinked = true;
    if (d->live_prev != NULL)
        d->live_prev->live_next = d->live_next;
    else
        live_domains = d->live_next;
    if (d->live_next != NULL)
        d->live_next->live_prev = d->live_prev;
    pthread_key_delete(d->key);
    pthread_mutex_unlock(&live_lock);
}

void domain_fini(struct pc_domain *d)
{
    struct pc_thread *t, *next;

    domain_unlink(d);

    for (t = d->threads; t != NULL; t = next) {
        next = t->next;
        pc_free(t, sizeof *t);
    }
    pthread_mutex_destroy(&d->lock);
    pthread_mutex_destroy(&d->gp_lock);
}

struct pc_thread *domain_thread_slow(struct pc_domain *d)
{
    struct pc_thread *t = pthread_getspecific(d->key);
    ck_epoch_record_t *r;

    if (t != NULL)
        goto cache;
    pthread_mutex_lock(&d->lock);
    /* Only thread records are ever unregistered, so a recycled record is
     * always the first member of a struct pc_thread. */
    r = ck_epoch_recycle(&d->epoch, NULL);
    if (r != NULL) {
        t = (struct pc_thread *)r;
        t->owner = pthread_self();
    } else {
        t = pc_alloc_aligned(sizeof *t, CK_MD_CACHELINE);
        if (t == NULL) {
            pthread_mutex_unlock(&d->lock);
            return NULL;
        }
        memset(t, 0, sizeof *t);
        t->dom = d;
        t->owner = pthread_self();
        PC_TSAN_RELEASE(&t->rec); /* tsan.h, case 4 */
        ck_epoch_register(&d->epoch, &t->rec, NULL);
        t->next = d->threads;
        d->threads = t;
    }
    pthread_mutex_unlock(&d->lock);
    if (pthread_setspecific(d->key, t) != 0) {
        ck_epoch_unregister(&t->rec);
        return NULL;
    }
cache:
    pc_tls_thread.id = d->id;
    pc_tls_thread.t = t;
    return t;
}

void domain_sum_stats(struct pc_domain *d, struct pc_thread_stats *out)
{
    pthread_mutex_lock(&d->lock);
    for (struct pc_thread *t = d->threads; t != NULL; t = t->next) {
        out->hits += PC_COUNTER_READ(t->stats.hits);
        out->misses += PC_COUNTER_READ(t->stats.misses);
        out->loader_calls += PC_COUNTER_READ(t->stats.loader_calls);
        out->loader_errors += PC_COUNTER_READ(t->stats.loader_errors);
    }
    pthread_mutex_unlock(&d->lock);
}

void writer_mutex_init(pthread_mutex_t *m)
{
    pthread_mutexattr_t a;

    pthread_mutexattr_init(&a);
    pthread_mutexattr_settype(&a, PTHREAD_MUTEX_ADAPTIVE_NP);
    pthread_mutex_init(m, &a);
    pthread_mutexattr_destroy(&a);
}

/*
 * Grace periods. ck_epoch supplies the records, their registration and the
 * per-record deferral lists (ck_epoch_call's four buckets, indexed by the
 * global epoch at deferral time); detecting grace periods is done here, by
 * one rule that holds in every fence mode:
 *
 *   the global epoch moves from e to e+1 only in domain_advance, under the
 *   domain's gp_lock, after a heavy barrier that follows the read of e, and
 *   only if every record that is active has observed e.
 *
 * The heavy barrier is membarrier(PRIVATE_EXPEDITED) when readers elide
 * their fence (epoch.h), else an ordinary full fence. Claim: something
 * deferred at epoch b (its unlink made visible by a full fence before the
 * epoch was read) is unreachable by every reader once the epoch is b+2.
 * Consider the advance b+1 -> b+2. Its writer read b+1, and the epoch became
 * b+1 after the deferral read b, so the unlink precedes that read, which
 * precedes the heavy barrier. Take a reader R that still holds the entry.
 * R loaded it before the unlink was visible to R. membarrier makes R's CPU
 * execute a full barrier at some point p during the call: if p came before
 * R's load of the entry, that load follows the unlink and cannot see the
 * entry, a contradiction; so p follows the load, and therefore also R's
 * earlier stores to `active` and `epoch`, which p drains. The scan then
 * reads R active with the epoch R observed, which R read before its load of
 * the entry, hence before the epoch became b+1: at most b, so the advance is
 * refused until R leaves. (With reader fences the same argument holds with
 * R's own fence, which follows both of its stores, in place of p.) A reader
 * seen active with an older `epoch` value than the one it is about to store
 * has not passed its barrier point yet, so it has loaded nothing; a reader
 * that left and came back finds the entry unlinked.
 *
 * Serialising advances under gp_lock is what makes "the heavy barrier
 * follows the read of e" enforceable: nobody else can move the epoch between
 * the read and the scan. ck's own ck_epoch_poll and ck_epoch_synchronize
 * rely on readers' fences (poll frees bucket e-2 on the strength of earlier
 * scans, synchronize advances twice per call), so they are not used.
 *
 * Cost: a membarrier interrupts every CPU running one of our threads (a few
 * microseconds here, tens in a busy guest), and that cost falls on the whole
 * process, so it is shared and paced process-wide. Writers that want a
 * step in membarrier mode flag their domain; at most once per
 * PC_ADVANCE_PACE_NS one of them runs a tick (tick_all): it reads the epoch
 * of every flagged domain, issues one membarrier for all of them, then
 * scans and advances each. No writer lock is held meanwhile. Garbage waits
 * two or three paces; pc_reclaim does not wait for the pace.
 *
 * Failure. The barrier is process state (heavy_barrier, under hb_lock). If
 * membarrier starts failing after the mode was chosen (a seccomp filter
 * installed later, a fork child on a kernel that does not carry the
 * registration), readers cannot be told to fence again without a barrier,
 * so the process degrades, for good, to the classic fallback (as in folly's
 * asymmetric heavy barrier): changing the protection of a dirty page forces
 * a TLB shootdown, an interrupt on every CPU running this address space,
 * which serialises each of them like membarrier does. Not on CPUs that
 * invalidate remote TLBs without an interrupt (AMD INVLPGB, used by Linux
 * 6.15+): there the fallback is never set up. Without any barrier, advances
 * are refused: garbage waits (it is freed by pc_destroy), nothing is freed
 * early, and pc_reclaim gives up after a few tries instead of waiting for
 * ever. Only an EPERM, ENOSYS or EINVAL from membarrier degrades; a
 * transient error fails one step. A fork child inherits these locks in the
 * state they were in: like every purecache lock, the child may use its
 * caches only if no other thread was inside a purecache call at fork time
 * (purecache.h).
 */
#define PC_ADVANCE_PACE_NS 1000000u

#ifdef PC_ASYM_FENCE
static pthread_mutex_t hb_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t tick_lock = PTHREAD_MUTEX_INITIALIZER;
static uint64_t hb_started;    /* barriers begun; written under hb_lock */
static uint64_t hb_done;       /* the last one that succeeded; under hb_lock */
static uint64_t hb_last_ns;    /* when the last tick began (pacing) */
static unsigned char *hb_page; /* mlocked page for the fallback, or NULL */

/* Whether the CPU can invalidate other CPUs' TLBs without interrupting them
 * (AMD's INVLPGB, used by Linux 6.15+): then a shootdown is no barrier. */
static bool broadcast_tlb_flush(void)
{
    FILE *f = fopen("/proc/cpuinfo", "r");
    char line[4096];
    bool found = false;

    if (f == NULL)
        return true; /* cannot tell: do not rely on shootdowns */
    while (!found && fgets(line, sizeof line, f) != NULL)
        if (strncmp(line, "flags", 5) == 0)
            found = strstr(line, " invlpgb") != NULL;
    fclose(f);
    return found;
}

static void hb_page_init(void)
{
    long size = sysconf(_SC_PAGESIZE);
    void *p;

    if (broadcast_tlb_flush())
        return;
    p = mmap(NULL, (size_t)size, PROT_READ | PROT_WRITE,
             MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return;
    /* Best effort: mprotect_barrier dirties the page right before the
     * protection change anyway, so it is mapped then. */
    (void)mlock(p, (size_t)size);
    hb_page = p;
}

static bool mprotect_barrier(void)
{
    size_t size = (size_t)sysconf(_SC_PAGESIZE);

    if (hb_page == NULL || mprotect(hb_page, size, PROT_READ | PROT_WRITE))
        return false;
    /* Dirty it, so every CPU that may cache the translation must drop it. */
    __atomic_add_fetch(hb_page, 1, __ATOMIC_SEQ_CST);
    return mprotect(hb_page, size, PROT_READ) == 0;
}

/* hb_lock held: one process-wide heavy barrier. */
static bool barrier_now(void)
{
    if (!hb_degraded) {
        if (membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED) == 0)
            return true;
        /* Not registered (a fork child): register and try once more. */
        if (membarrier(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED) == 0 &&
            membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED) == 0)
            return true;
        /* A transient failure (ENOMEM) only fails this step. */
        if (errno != EPERM && errno != ENOSYS && errno != EINVAL)
            return false;
        __atomic_store_n(&hb_degraded, true, __ATOMIC_RELAXED);
    }
    return mprotect_barrier();
}

/* A barrier stamp: read after the epoch it protects. */
static uint64_t barrier_stamp(void)
{
    return __atomic_load_n(&hb_started, __ATOMIC_ACQUIRE);
}
#endif

/* Wait for a heavy barrier that began after the caller took `stamp` (after
 * its epoch read): one that another thread completed meanwhile will do. */
static bool heavy_barrier(uint64_t stamp)
{
#ifdef PC_ASYM_FENCE
    if (pc_asym_fence) {
        bool ok = true;

        pthread_mutex_lock(&hb_lock);
        if (hb_done <= stamp) {
            uint64_t n = hb_started + 1;

            __atomic_store_n(&hb_started, n, __ATOMIC_RELEASE);
            ok = barrier_now();
            if (ok)
                hb_done = n;
        }
        pthread_mutex_unlock(&hb_lock);
        return ok;
    }
#endif
    (void)stamp;
    ck_pr_fence_memory();
    return true;
}

static uint64_t read_stamp(void)
{
#ifdef PC_ASYM_FENCE
    return barrier_stamp();
#else
    return 0;
#endif
}

/* gp_lock held, a heavy barrier completed after e was read: advance from e
 * if every active record has observed it. */
static bool scan_and_advance(struct pc_domain *d, unsigned int e)
{
    ck_stack_entry_t *cursor;

    /* Records are only ever pushed (registration); a record pushed after
     * this walk read the head was pushed with a locked instruction after
     * the barrier, so its reader's later loads see every earlier unlink.
     * Unregistered records have active == 0. */
    for (cursor = ck_pr_load_ptr(&d->epoch.records.head); cursor != NULL;
         cursor = ck_pr_load_ptr(&cursor->next)) {
        ck_epoch_record_t *r =
            (ck_epoch_record_t *)((char *)cursor -
                                  offsetof(ck_epoch_record_t, record_next));

        PC_TSAN_ACQUIRE(r); /* published by ck_epoch_register (tsan.h, 4) */
        if (__atomic_load_n(&r->active, __ATOMIC_ACQUIRE) != 0 &&
            __atomic_load_n(&r->epoch, __ATOMIC_RELAXED) != e)
            return false;
    }
    __atomic_store_n(&d->epoch.epoch, e + 1, __ATOMIC_RELEASE);
    return true;
}

/* gp_lock held. ADVANCED, BLOCKED (a reader has not observed the epoch),
 * or NO_BARRIER (no heavy barrier can be had: do not advance). */
enum advance { ADVANCED, BLOCKED, NO_BARRIER };

static enum advance advance_locked(struct pc_domain *d)
{
    unsigned int e = __atomic_load_n(&d->epoch.epoch, __ATOMIC_ACQUIRE);

    if (!heavy_barrier(read_stamp()))
        return NO_BARRIER;
    return scan_and_advance(d, e) ? ADVANCED : BLOCKED;
}

static uint64_t monotonic_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

#ifdef PC_ASYM_FENCE
/* One paced step for every domain that asked (see "Cost" above). */
static void tick_all(void)
{
    struct pc_domain *d;
    uint64_t now = monotonic_ns(), stamp;
    unsigned int held = 0;
    bool ok;

    if (pthread_mutex_trylock(&tick_lock) != 0)
        return;
    if (now - __atomic_load_n(&hb_last_ns, __ATOMIC_RELAXED) <
        PC_ADVANCE_PACE_NS) {
        pthread_mutex_unlock(&tick_lock);
        return;
    }
    __atomic_store_n(&hb_last_ns, now, __ATOMIC_RELAXED);
    pthread_mutex_lock(&live_lock);
    for (d = live_domains; d != NULL; d = d->live_next) {
        d->tick_held = false;
        if (!__atomic_load_n(&d->tick_wanted, __ATOMIC_RELAXED) ||
            pthread_mutex_trylock(&d->gp_lock) != 0)
            continue;
        __atomic_store_n(&d->tick_wanted, false, __ATOMIC_RELAXED);
        d->tick_epoch = __atomic_load_n(&d->epoch.epoch, __ATOMIC_ACQUIRE);
        d->tick_held = true;
        held++;
    }
    if (held == 0)
        goto out; /* nothing to advance: no barrier */
    stamp = read_stamp();
    ok = heavy_barrier(stamp);
    for (d = live_domains; d != NULL; d = d->live_next) {
        if (!d->tick_held)
            continue;
        if (ok)
            scan_and_advance(d, d->tick_epoch);
        d->tick_held = false;
        pthread_mutex_unlock(&d->gp_lock);
    }
out:
    pthread_mutex_unlock(&live_lock);
    pthread_mutex_unlock(&tick_lock);
}
#endif

bool domain_advance(struct pc_domain *d, bool paced)
{
    bool advanced;

#ifdef PC_ASYM_FENCE
    if (paced && pc_asym_fence) {
        __atomic_store_n(&d->tick_wanted, true, __ATOMIC_RELAXED);
        if (monotonic_ns() - __atomic_load_n(&hb_last_ns, __ATOMIC_RELAXED) >=
            PC_ADVANCE_PACE_NS)
            tick_all();
        return false;
    }
#else
    (void)paced;
#endif
    if (pthread_mutex_trylock(&d->gp_lock) != 0)
        return false; /* someone else is advancing */
    advanced = advance_locked(d) == ADVANCED;
    pthread_mutex_unlock(&d->gp_lock);
    return advanced;
}

bool domain_synchronize(struct pc_domain *d)
{
    unsigned int goal;
    long wait_ns = 0;
    int failures = 0;

    /* The caller's unlinks are visible before the epoch they wait on. */
    ck_pr_fence_memory();
    goal = __atomic_load_n(&d->epoch.epoch, __ATOMIC_ACQUIRE) + 2;
    for (;;) {
        enum advance a = BLOCKED;
        bool done;

        pthread_mutex_lock(&d->gp_lock);
        done = (int)(__atomic_load_n(&d->epoch.epoch, __ATOMIC_ACQUIRE) -
                     goal) >= 0;
        if (!done) {
            a = advance_locked(d);
            done = (int)(__atomic_load_n(&d->epoch.epoch, __ATOMIC_RELAXED) -
                         goal) >= 0;
        }
        pthread_mutex_unlock(&d->gp_lock);
        if (done)
            return true;
        if (a == ADVANCED) {
            wait_ns = 0;
            continue;
        }
        /* No barrier to be had (see "Failure" above): give up rather than
         * wait for ever; the caller keeps its garbage. A few tries first,
         * in case the failure was transient. */
        if (a == NO_BARRIER && ++failures >= 8)
            return false;
        if (wait_ns == 0) {
            wait_ns = 1000; /* a reader is inside: let it finish */
            sched_yield();
            continue;
        }
        /* A long section (a pin): back off, up to 1 ms between scans, so a
         * waiting pc_reclaim does not flood the other CPUs with barriers. */
        struct timespec ts = {0, wait_ns};
        while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
            ;
        if (wait_ns < 1000000)
            wait_ns *= 2;
    }
}

static void free_chain(struct pc_reclaimer *r, struct pc_kv *kv)
{
    while (kv != NULL) {
        struct pc_kv *next = kv->w.retire_next;

        r->free_kv(kv);
        kv = next;
    }
}

void reclaimer_free(struct pc_reclaimer *r, struct pc_kv *chain)
{
    free_chain(r, chain);
}

/* Runs from reclaimer_dispatch (or ck_epoch_reclaim at destruction) on the
 * writer's record: the batch's grace period is over. Its entries move to the
 * ready chain (freed by the writer after it unlocks) and the batch becomes
 * reusable. */
static void batch_dispatch(ck_epoch_entry_t *ee)
{
    struct pc_retire_batch *b = (struct pc_retire_batch *)ee;
    struct pc_reclaimer *r = b->owner;
    /* TSan: the scans that advanced the epoch saw every reader that could
     * hold these entries leave, through relaxed loads; pairs with
     * read_leave's release (tsan.h, 2). The writer frees them after
     * unlocking, on this thread. */
    PC_TSAN_ACQUIRE(&r->dom->tsan_grace);
    if (b->head != NULL) {
        b->tail->w.retire_next = r->ready;
        r->ready = b->head;
    }
    b->head = b->tail = NULL;
    b->queued = false;
}

/* Run the callbacks of one chain. */
static ck_epoch_entry_t *entry_of(ck_stack_entry_t *cursor)
{
    return (ck_epoch_entry_t *)((char *)cursor -
                                offsetof(ck_epoch_entry_t, stack_entry));
}

static void run_chain(struct pc_reclaimer *r, ck_stack_entry_t *cursor)
{
    ck_stack_entry_t *next;

    for (; cursor != NULL; cursor = next) {
        next = CK_STACK_NEXT(cursor);
        entry_of(cursor)->function(entry_of(cursor));
        r->rec.n_pending--;
    }
}

static void run_stack(struct pc_reclaimer *r, ck_stack_t *s)
{
    ck_stack_entry_t *head = CK_STACK_FIRST(s);

    ck_stack_init(s);
    run_chain(r, head);
}

void reclaimer_bucket_reuse(struct pc_reclaimer *r, unsigned int i)
{
    ck_stack_entry_t *cursor = CK_STACK_FIRST(&r->rec.pending[i]), *next;

    ck_stack_init(&r->rec.pending[i]);
    for (; cursor != NULL; cursor = next) {
        next = CK_STACK_NEXT(cursor);
        ck_stack_push_spnc(&r->safe, cursor);
    }
}

struct pc_reclaimer *reclaimer_create(struct pc_domain *d,
                                      pc_kv_free_fn *free_kv)
{
    struct pc_reclaimer *r = pc_alloc_aligned(sizeof *r, CK_MD_CACHELINE);

    if (r == NULL)
        return NULL;
    memset(r, 0, sizeof *r);
    r->free_kv = free_kv;
    r->dom = d;
    for (int i = 0; i < PC_RETIRE_BATCHES; i++)
        r->batch[i].owner = r;
    /* Registered under the registry lock so the list stays consistent for
     * domain_thread_slow's recycling; never unregistered, never active. */
    pthread_mutex_lock(&d->lock);
    PC_TSAN_RELEASE(&r->rec); /* tsan.h, case 4 */
    ck_epoch_register(&d->epoch, &r->rec, NULL);
    pthread_mutex_unlock(&d->lock);
    return r;
}

void reclaimer_destroy(struct pc_reclaimer *r)
{
    if (r == NULL)
        return;
    ck_epoch_reclaim(&r->rec);
    run_stack(r, &r->safe);
    reclaimer_free(r, reclaimer_drain_finish(r)); /* set-aside, if any */
    free_chain(r, r->open);
    pc_free(r, sizeof *r);
}

/* Writer (lock held): run every callback past its grace period: those set
 * aside by reclaimer_bucket_reuse, and every bucket deferred at least two
 * epochs ago (see the claim above). Buckets are homogeneous, so each one is
 * run as soon as the epoch allows, whatever epochs this writer happens to
 * observe. */
static void reclaimer_dispatch(struct pc_reclaimer *r)
{
    unsigned int e = __atomic_load_n(&r->dom->epoch.epoch, __ATOMIC_ACQUIRE);

    /* A bucket becomes due only when the epoch moves, so a poll at the
     * same epoch as the last one has nothing to do unless reclaimer_defer
     * set something aside. */
    if (e == r->dispatched && CK_STACK_ISEMPTY(&r->safe))
        return;
    r->dispatched = e;
    run_stack(r, &r->safe);
    for (unsigned int i = 0; i < CK_EPOCH_LENGTH; i++) {
        if (!CK_STACK_ISEMPTY(&r->rec.pending[i]) &&
            e - r->bucket_epoch[i] >= 2u) /* e only grows: wrap-safe */
            run_stack(r, &r->rec.pending[i]);
    }
}

struct pc_kv *reclaimer_poll(struct pc_reclaimer *r, bool *advance)
{
    struct pc_kv *ready;
    bool queued = false;

    if (r->n_open >= PC_RETIRE_BATCH_ENTRIES ||
        r->open_bytes >= PC_RETIRE_BATCH_BYTES) {
        for (int i = 0; i < PC_RETIRE_BATCHES; i++) {
            struct pc_retire_batch *b = &r->batch[i];

            if (!b->queued) {
                b->head = r->open;
                b->tail = r->open_tail;
                b->queued = true;
                r->open = NULL;
                r->n_open = r->open_bytes = 0;
                reclaimer_defer(r, &b->ee, batch_dispatch);
                queued = true;
                break;
            }
        }
        /* All batches still waiting: the open list keeps growing until a
         * grace period frees one. */
    }
    if (r->rec.n_pending > 0)
        reclaimer_dispatch(r);
    *advance =
        r->rec.n_pending > 0 && (queued || ++r->writes % PC_POLL_INTERVAL == 0);
    ready = r->ready;
    r->ready = NULL;
    return ready;
}

void reclaimer_after_unlock(struct pc_reclaimer *r, struct pc_kv *chain,
                            bool advance)
{
    free_chain(r, chain);
    if (advance)
        domain_advance(r->dom, true);
}

/*
 * pc_reclaim in three steps, so that no writer lock is held while waiting for
 * readers (a pinned reader may itself be about to take that lock):
 *  1. drain_detach (lock held): set aside everything retired so far, the
 *     open list and every callback queued on the record (retired batches,
 *     deferred index tables), exactly as ck_epoch_reclaim would take them;
 *  2. drain_wait (no lock): one grace period on the whole domain;
 *  3. drain_finish (lock held again): run the set-aside callbacks, which
 *     only touch reclaimer state (hence the lock), and hand back every entry
 *     now safe to free. Callbacks queued after step 1 stay on the record for
 *     normal polling: they were not covered by the grace period.
 * Callers serialise whole pc_reclaim calls (the set-aside state is per
 * reclaimer).
 */
void reclaimer_drain_detach(struct pc_reclaimer *r)
{
    run_stack(r, &r->safe); /* already past their grace period */
    if (r->open != NULL) {
        if (r->drain_open == NULL)
            r->drain_tail = r->open_tail;
        r->open_tail->w.retire_next = r->drain_open;
        r->drain_open = r->open;
    }
    r->open = NULL;
    r->n_open = r->open_bytes = 0;
    for (int i = 0; i < CK_EPOCH_LENGTH; i++) {
        ck_stack_entry_t *head = CK_STACK_FIRST(&r->rec.pending[i]);

        if (head == NULL)
            continue;
        /* Keep any earlier set-aside callbacks: append them. */
        ck_stack_entry_t *t = head;
        while (CK_STACK_NEXT(t) != NULL)
            t = CK_STACK_NEXT(t);
        t->next = r->drain_pending[i];
        r->drain_pending[i] = head;
        ck_stack_init(&r->rec.pending[i]);
    }
}

bool reclaimer_drain_wait(struct pc_domain *d)
{
    return domain_synchronize(d);
}

void reclaimer_drain_abort(struct pc_reclaimer *r)
{
    struct pc_kv *kv = r->drain_open, *next;

    /* Entries go back to the open list, callbacks back to the buckets as
     * if deferred now (later than they were: safe). */
    for (; kv != NULL; kv = next) {
        next = kv->w.retire_next;
        reclaimer_retire(r, kv);
    }
    r->drain_open = NULL;
    for (int i = 0; i < CK_EPOCH_LENGTH; i++) {
        ck_stack_entry_t *cursor = r->drain_pending[i], *nx;

        for (; cursor != NULL; cursor = nx) {
            ck_epoch_entry_t *e = entry_of(cursor);

            nx = CK_STACK_NEXT(cursor);
            r->rec.n_pending--; /* reclaimer_defer counts it again */
            reclaimer_defer(r, e, e->function);
        }
        r->drain_pending[i] = NULL;
    }
}

struct pc_kv *reclaimer_drain_finish(struct pc_reclaimer *r)
{
    struct pc_kv *chain = r->drain_open;

    PC_TSAN_ACQUIRE(&r->dom->tsan_grace); /* as in batch_dispatch (tsan.h, 2) */
    for (int i = 0; i < CK_EPOCH_LENGTH; i++) {
        run_chain(r, r->drain_pending[i]);
        r->drain_pending[i] = NULL;
    }
    r->drain_open = NULL;
    /* The callbacks moved their entries to the ready chain. */
    if (chain == NULL)
        chain = r->ready;
    else
        r->drain_tail->w.retire_next = r->ready;
    r->ready = NULL;
    return chain;
}
