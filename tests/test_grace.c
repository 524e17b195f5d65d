/*
 * Grace periods, tested directly on src/grace.c, src/domain.c and src/retire.c.
 *
 *  - Store-buffer litmus. A reader enters its section with the library's own
 *    read_enter, loads a published object, checks it twice and leaves; a
 *    writer swaps the object out, defers it the way pc__reclaimer_defer does
 *    (fence, read the epoch b), advances the domain until the epoch reaches
 *    b + 2, then "frees" it (clears its valid flag). A reader that sees a
 *    cleared flag inside its section was overtaken by a free. Both threads
 *    store to one shared line just before the reader's read_enter, so the
 *    reader's `active` store tends to wait in the store buffer. It runs in
 *    the default mode (membarrier, if the kernel allows it) and with the
 *    fallback forced (reader fences), each in its own process (Criterion
 *    forks per test). What it catches, checked by hand: a scan that lets a
 *    reader lag one epoch fails the fenced run within 2 s. What it does not
 *    reliably catch: removing the writers' membarrier. With read_enter's
 *    earlier order (fence between the two stores) that failed hundreds of
 *    times per 4 s; with the current order the reader's load of the global
 *    epoch, a line every advance writes, misses and holds back its later
 *    loads, and no violation showed in 4 s. The barrier's necessity rests
 *    on the argument in grace.c; TSan cannot check it either (it models
 *    happens-before, not the store buffer).
 *  - Bucket liveness. A reclaimer that only ever polls at epochs of the same
 *    residues mod 4 (other writers advance the epoch in between) must still
 *    free everything it retired.
 *  - Destroying a cache while another cache's writers run paced steps over
 *    every flagged domain (grace.c, step_all): the destroyed cache's records
 * must be out of reach first (a use-after-free that ASan caught within 0.5 s
 *    before pc__domain_unlink).
 *  - Garbage stays bounded under a steady write load, and pc_reclaim returns,
 *    after membarrier(2) starts failing (a seccomp filter installed after
 *    the first cache): the process degrades to the mprotect barrier.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "internal.h" /* every internal header compiles together */
#include "testlib.h"

/* ------------------------------------------------------ store-buffer litmus */

#define NOBJ 64
#define LITMUS_MIN_FREES 2000

struct obj {
    long valid;
    char pad[120];
};

static struct obj objs[NOBJ] __attribute__((aligned(128)));
static struct obj *slot;
static struct pc__domain dom;
static int stop;
static long noise[16] __attribute__((aligned(128)));
static long violations, reads, swaps;

static void *litmus_reader(void *arg)
{
    struct pc__record *t = pc__domain_record(&dom);
    long v = 0, n = 0;

    (void)arg;
    while (!__atomic_load_n(&stop, __ATOMIC_RELAXED)) {
        struct obj *o;
        long a, b;

        /* A store to a line the writer also writes, right before the
         * section's `active` store, keeps the latter in the store buffer
         * a little longer (stores leave it in order). */
        __atomic_store_n(&noise[0], n, __ATOMIC_RELAXED);
        pc__read_enter(t);
        o = __atomic_load_n(&slot, __ATOMIC_ACQUIRE);
        a = __atomic_load_n(&o->valid, __ATOMIC_RELAXED);
        for (volatile int i = 0; i < 20; i++)
            ;
        b = __atomic_load_n(&o->valid, __ATOMIC_RELAXED);
        v += a != 1 || b != 1;
        pc__read_leave(t);
        n++;
    }
    __atomic_add_fetch(&violations, v, __ATOMIC_RELAXED);
    __atomic_add_fetch(&reads, n, __ATOMIC_RELAXED);
    return NULL;
}

static void *litmus_writer(void *arg)
{
    unsigned i = 0;
    long n = 0;

    (void)arg;
    while (!__atomic_load_n(&stop, __ATOMIC_RELAXED)) {
        struct obj *nw = &objs[++i % NOBJ], *old = slot;
        unsigned int b;

        /* The same line the reader stores to: its store then misses and
         * waits in the store buffer, with `active` queued behind it. */
        __atomic_store_n(&noise[0], -1, __ATOMIC_RELAXED);
        __atomic_store_n(&nw->valid, 1, __ATOMIC_RELAXED);
        __atomic_store_n(&slot, nw, __ATOMIC_RELEASE); /* unlink old */
        ck_pr_fence_memory(); /* as pc__reclaimer_defer */
        b = __atomic_load_n(&dom.epoch.epoch, __ATOMIC_ACQUIRE);
        while ((int)(__atomic_load_n(&dom.epoch.epoch, __ATOMIC_ACQUIRE) -
                     (b + 2)) < 0)
            pc__grace_step(&dom, false);
        __atomic_store_n(&old->valid, 0, __ATOMIC_RELAXED); /* "free" */
        __atomic_store_n(&swaps, ++n, __ATOMIC_RELAXED);
    }
    return NULL;
}

static void litmus(double seconds)
{
    pthread_t r, w;

    cr_assert(pc__domain_init(&dom));
    objs[0].valid = 1;
    slot = &objs[0];
    cr_assert_eq(pthread_create(&r, NULL, litmus_reader, NULL), 0);
    cr_assert_eq(pthread_create(&w, NULL, litmus_writer, NULL), 0);
    /* At least `seconds`, and until enough frees happened under concurrent
     * reads to mean something: a membarrier on a loaded machine can take a
     * millisecond. Capped, so a stalled writer fails instead of hanging. */
    for (double t0 = now_s(), t = t0;
         t - t0 < 30 &&
         (t - t0 < seconds ||
          __atomic_load_n(&swaps, __ATOMIC_RELAXED) < LITMUS_MIN_FREES);
         t = now_s())
        usleep(10000);
    __atomic_store_n(&stop, 1, __ATOMIC_RELAXED);
    pthread_join(r, NULL);
    pthread_join(w, NULL);
    cr_log_info("read fence %s: %ld reads, %ld frees, %ld violations\n",
                pc__read_fence_name(), reads, swaps, violations);
    /* Enough frees happened under concurrent reads to mean something. */
    cr_assert_geq(swaps, LITMUS_MIN_FREES, "only %ld frees in 30 s", swaps);
    cr_assert_gt(reads, 100000, "only %ld reads", reads);
    cr_assert_eq(violations, 0, "%ld reads saw their object freed under them",
                 violations);
    pc__domain_fini(&dom);
}

Test(grace, no_free_overtakes_a_reader_default_fence)
{
    litmus(2.0);
}

Test(grace, no_free_overtakes_a_reader_fenced_reads)
{
    cr_assert_not(pc__read_fence_setup(true));
    litmus(2.0);
}

/* ---------------------------------------- a wait outlasts an open section */

static struct pc__domain wait_dom;
static int section_open, section_leave, waiter_done;
static long waiter_tid;

static void *section_holder(void *arg)
{
    struct pc__record *t = pc__domain_record(&wait_dom);

    (void)arg;
    cr_assert_not_null(t);
    pc__read_enter(t);
    __atomic_store_n(&section_open, 1, __ATOMIC_SEQ_CST);
    while (!__atomic_load_n(&section_leave, __ATOMIC_SEQ_CST))
        usleep(1000);
    pc__read_leave(t);
    return NULL;
}

static void *grace_waiter(void *arg)
{
    (void)arg;
    __atomic_store_n(&waiter_tid, test_gettid(), __ATOMIC_SEQ_CST);
    cr_assert(pc__grace_wait(&wait_dom));
    __atomic_store_n(&waiter_done, 1, __ATOMIC_SEQ_CST);
    return NULL;
}

/* pc__grace_wait (grace.h) waits for every read section that was active
 * when it began, so pc_reclaim frees nothing a reader still holds: a
 * reader that entered at epoch e has observed e, so the advance to e + 1
 * does not wait for it; the wait must reach e + 2. The waiter must be
 * found asleep in its wait, not returned, while the section stays open. */
Test(grace, a_wait_outlasts_a_section_open_when_it_began)
{
    pthread_t r, w;
    long tid;

    cr_assert(pc__domain_init(&wait_dom));
    cr_assert_eq(pthread_create(&r, NULL, section_holder, NULL), 0);
    while (!__atomic_load_n(&section_open, __ATOMIC_SEQ_CST))
        usleep(1000);
    cr_assert_eq(pthread_create(&w, NULL, grace_waiter, NULL), 0);
    while ((tid = __atomic_load_n(&waiter_tid, __ATOMIC_SEQ_CST)) == 0)
        usleep(1000);
    /* Until the waiter sleeps in its back-off (10 s: a deadlock breaker),
     * or returns. */
    for (int i = 0;
         i < 10000 && !__atomic_load_n(&waiter_done, __ATOMIC_SEQ_CST); i++)
        if (test_thread_blocked(tid, 1))
            break;
    cr_assert_not(__atomic_load_n(&waiter_done, __ATOMIC_SEQ_CST),
                  "pc__grace_wait returned while a section open when it "
                  "began was still open");
    __atomic_store_n(&section_leave, 1, __ATOMIC_SEQ_CST);
    pthread_join(r, NULL);
    pthread_join(w, NULL);
    cr_assert(waiter_done);
    pc__domain_fini(&wait_dom);
}

/* ------------------------------------------------------- bucket liveness */

static struct pc__kv *entry_sized(size_t vlen)
{
    static const unsigned char value[128 << 10];
    struct pc__kv *kv = pc__alloc(pc__kv_size(0, vlen, 0));

    cr_assert_not_null(kv);
    cr_assert_leq(vlen, sizeof value);
    pc__kv_fill(kv, 0, NULL, 0, value, vlen, 0, 0, 0);
    return kv;
}

static struct pc__kv *entry_new(void)
{
    return entry_sized(0);
}

/* A write's unlock: poll, then free what it handed over. Returns the
 * entries handed over one by one; *whole (if not NULL): whether whole
 * batches (or spilled entries) came too. */
static uint32_t poll_and_free_whole(struct pc__reclaimer *r, bool *step,
                                    bool *whole)
{
    struct pc__handover h;
    bool any = pc__reclaimer_poll(r, &h, step);

    cr_assert_eq(any, h.n != 0 || h.g.batches != NULL || h.g.spilled != NULL);
    if (whole != NULL)
        *whole = h.g.batches != NULL || h.g.spilled != NULL;
    pc__reclaimer_after_unlock(r, &h, false);
    return h.n;
}

static uint32_t poll_and_free(struct pc__reclaimer *r, bool *step)
{
    return poll_and_free_whole(r, step, NULL);
}

static uint64_t pending_of(const struct pc__reclaimer *r)
{
    uint64_t n = 0, bytes = 0;

    pc__reclaimer_pending(r, &n, &bytes);
    return n;
}

/* Step the epoch until it is 0 or 1 mod 4 (never the same one twice): a
 * writer that only ever looks at those residues. */
static void step_to_low_residue(struct pc__domain *d)
{
    unsigned int e;

    do {
        pc__grace_step(d, false);
        e = __atomic_load_n(&d->epoch.epoch, __ATOMIC_RELAXED);
    } while ((e & 3) > 1);
}

Test(grace, buckets_drain_whatever_epochs_a_writer_sees)
{
    struct pc__domain d;
    struct pc__reclaimer *r;
    long base, outstanding;

    pc__alloc_track(1);
    base = pc__alloc_live();
    cr_assert(pc__domain_init(&d));
    r = pc__reclaimer_create(&d, NULL, false);
    cr_assert_not_null(r);
    for (int round = 0; round < 400; round++) {
        bool step;

        step_to_low_residue(&d);
        for (int i = 0; i < PC__RETIRE_BATCH_ITEMS; i++)
            pc__reclaimer_retire(r, entry_new());
        poll_and_free(r, &step);
    }
    /* At most the last few rounds' entries (and the batches holding them,
     * the reclaimer itself) may still be allocated. */
    outstanding = pc__alloc_live() - base;
    cr_assert_leq(outstanding, 4 * PC__RETIRE_BATCH_ITEMS + 16,
                  "%ld allocations outstanding after 400 rounds", outstanding);
    pc__reclaimer_destroy(r);
    cr_assert_eq(pc__alloc_live(), base, "leaked %ld", pc__alloc_live() - base);
    pc__domain_fini(&d);
    pc__alloc_track(0);
}

/* No batch can be allocated: entries spill onto the chain through their own
 * link words, and are still freed once their grace period has passed. */
Test(grace, retirement_without_memory_spills_and_still_frees)
{
    struct pc__domain d;
    struct pc__reclaimer *r;
    struct pc__kv *kv[300];
    long base;

    pc__alloc_track(1);
    base = pc__alloc_live();
    cr_assert(pc__domain_init(&d));
    r = pc__reclaimer_create(&d, NULL, false);
    cr_assert_not_null(r);
    for (int i = 0; i < 300; i++)
        kv[i] = entry_new();
    pc__alloc_fail_after(0); /* every allocation fails from here */
    for (int i = 0; i < 300; i++)
        pc__reclaimer_retire(r, kv[i]);
    cr_assert_gt(pc__alloc_fail_after(-1), 0, "no batch allocation tried");
    cr_assert_not_null(r->spill, "nothing spilled");
    for (int round = 0; round < 8; round++) {
        bool step;

        poll_and_free(r, &step);
        pc__grace_step(&d, false);
    }
    cr_assert_null(r->spill);
    cr_assert_eq(pc__alloc_live() - base, 1, "%ld left besides the reclaimer",
                 pc__alloc_live() - base - 1);
    pc__reclaimer_destroy(r);
    cr_assert_eq(pc__alloc_live(), base);
    pc__domain_fini(&d);
    pc__alloc_track(0);
}

/* The spill carrier is reused: entries spilled after an earlier spill was
 * freed are deferred and freed too, by polls alone, time after time. */
Test(grace, every_spill_is_freed_not_only_the_first)
{
    struct pc__domain d;
    struct pc__reclaimer *r;
    struct pc__kv *kv[100];
    long base;

    pc__alloc_track(1);
    base = pc__alloc_live();
    cr_assert(pc__domain_init(&d));
    r = pc__reclaimer_create(&d, NULL, false);
    cr_assert_not_null(r);
    for (int spill = 0; spill < 3; spill++) {
        for (int i = 0; i < 100; i++)
            kv[i] = entry_new();
        pc__alloc_fail_after(0); /* no batch can be had */
        for (int i = 0; i < 100; i++)
            pc__reclaimer_retire(r, kv[i]);
        pc__alloc_fail_after(-1);
        cr_assert_not_null(r->spill, "spill %d: nothing spilled", spill);
        cr_assert_eq(pending_of(r), 100);
        for (int round = 0; round < 8; round++) {
            bool step;

            poll_and_free(r, &step);
            pc__grace_step(&d, false);
        }
        cr_assert_null(r->spill, "spill %d: never deferred", spill);
        cr_assert_eq(pending_of(r), 0, "spill %d: %llu pending", spill,
                     (unsigned long long)pending_of(r));
        cr_assert_eq(pc__alloc_live() - base, 1,
                     "spill %d: %ld left besides the reclaimer", spill,
                     pc__alloc_live() - base - 1);
    }
    pc__reclaimer_destroy(r);
    cr_assert_eq(pc__alloc_live(), base);
    pc__domain_fini(&d);
    pc__alloc_track(0);
}

/* Retire n entries of vlen-byte values, one write's poll, then two grace
 * periods: all of them are safe to free at the next poll. */
static void retire_sized_and_wait(struct pc__domain *d, struct pc__reclaimer *r,
                                  int n, size_t vlen)
{
    bool step, whole;

    for (int i = 0; i < n; i++)
        pc__reclaimer_retire(r, entry_sized(vlen));
    cr_assert_eq(poll_and_free_whole(r, &step, &whole), 0,
                 "freed before a grace period");
    cr_assert(!whole, "freed before a grace period");
    for (int i = 0; i < 3; i++)
        cr_assert(pc__grace_step(d, false));
}

static void retire_and_wait(struct pc__domain *d, struct pc__reclaimer *r,
                            int n)
{
    retire_sized_and_wait(d, r, n, 0);
}

/* A paced reclaimer on a fresh domain, allocations counted from *base. */
static struct pc__reclaimer *paced_setup(struct pc__domain *d, long *base)
{
    struct pc__reclaimer *r;

    pc__alloc_track(1);
    *base = pc__alloc_live();
    cr_assert(pc__domain_init(d));
    r = pc__reclaimer_create(d, NULL, true);
    cr_assert_not_null(r);
    return r;
}

/* Destroy it: everything it held is freed, nothing twice. */
static void paced_teardown(struct pc__domain *d, struct pc__reclaimer *r,
                           long base)
{
    pc__reclaimer_destroy(r);
    cr_assert_eq(pc__alloc_live(), base, "leaked %ld", pc__alloc_live() - base);
    pc__domain_fini(d);
    pc__alloc_track(0);
}

/* A burst of removals in one write (a pc_clear, a lowered limit) fills a
 * batch per 128 entries; once later writes have freed the entries, at most
 * PC__SPARE_BATCHES batches stay allocated, for reuse, whether the
 * reclaimer paces its frees or hands over whole batches. Every batch of a
 * burst used to stay allocated until pc_reclaim (about 20 MB after an
 * exact-LRU cache's capacity went from 1M to 10k; found by helper-66). */
Test(grace, a_burst_of_removals_leaves_at_most_the_spare_batches)
{
    for (int paced = 0; paced < 2; paced++) {
        struct pc__domain d;
        struct pc__reclaimer *r;
        long base, left;
        bool step;
        int polls = 0;

        pc__alloc_track(1);
        base = pc__alloc_live();
        cr_assert(pc__domain_init(&d));
        r = pc__reclaimer_create(&d, NULL, paced);
        cr_assert_not_null(r);
        retire_and_wait(&d, r, 200 * PC__RETIRE_BATCH_ITEMS);
        while (pending_of(r) != 0 && polls++ < 100000)
            poll_and_free(r, &step); /* later writes, retiring nothing */
        cr_assert_eq(pending_of(r), 0);
        left = pc__alloc_live() - base - 1; /* (the reclaimer) */
        cr_assert_leq(left, PC__SPARE_BATCHES,
                      "%ld batches left allocated (paced: %d)", left, paced);
        cr_assert_geq(left, 1, "a batch is kept for the next write");
        paced_teardown(&d, r, base);
    }
}

/* The batches a reclaimer holds past their grace period. */
static long ready_batches(const struct pc__reclaimer *r)
{
    long n = 0;

    for (const struct pc__retire_batch *b = r->ready.batches; b != NULL;
         b = b->ready)
        n++;
    return n;
}

/* Paced frees (retire.h): a grace period that makes many batches safe
 * spreads their frees over the writes that follow, PC__FREE_QUOTA each,
 * and past PC__READY_MAX waiting entries whole batches go at once. */
Test(grace, paced_frees_spread_a_grace_period_over_writes_and_bound_the_rest)
{
    struct pc__domain d;
    struct pc__reclaimer *r;
    const int few = 3 * PC__RETIRE_BATCH_ITEMS;
    const int many = 3 * PC__READY_MAX;
    long base, extra, nb, emptied;
    size_t nfree;
    int polls = 0;
    uint32_t n;
    bool step;

    r = paced_setup(&d, &base);
    retire_and_wait(&d, r, few);
    extra = pc__alloc_live() - base - few; /* the reclaimer, its batches */
    while ((n = poll_and_free(r, &step)) != 0) {
        cr_assert_eq(n, PC__FREE_QUOTA, "poll %d handed over %u", polls, n);
        polls++;
        cr_assert_eq(pc__alloc_live() - base - extra,
                     few - polls * PC__FREE_QUOTA);
    }
    cr_assert_eq(polls, few / PC__FREE_QUOTA);
    cr_assert_eq(r->ready_n, 0);

    /* More than may wait: the first poll hands over whole batches too,
     * down to PC__READY_MAX, which the following polls pace. Every entry
     * handed over is freed, the waiting ones are not; the batches emptied
     * are kept as spares, up to PC__SPARE_BATCHES, or freed. */
    retire_and_wait(&d, r, many);
    extra = pc__alloc_live() - base - many;
    nb = many / PC__RETIRE_BATCH_ITEMS; /* all safe by the poll */
    nfree = __atomic_load_n(&r->nfree, __ATOMIC_RELAXED);
    cr_assert_eq(poll_and_free(r, &step), PC__FREE_QUOTA);
    cr_assert_leq(r->ready_n, PC__READY_MAX);
    cr_assert_gt(r->ready_n, PC__READY_MAX - PC__RETIRE_BATCH_ITEMS);
    emptied = nb - ready_batches(r);
    cr_assert_gt(emptied, 0, "no whole batch was handed over");
    cr_assert_eq(
        pc__alloc_live() - base - extra,
        (long)r->ready_n -
            (emptied -
             (long)(__atomic_load_n(&r->nfree, __ATOMIC_RELAXED) - nfree)));

    /* A batch left half handed over is freed from where it stands, by a
     * drain as by destruction: nothing twice, nothing leaked. */
    poll_and_free(r, &step);
    paced_teardown(&d, r, base);
}

/* pc_reclaim's sequence on r (pc__core_reclaim): then nothing is pending,
 * and only the reclaimer itself is still allocated. */
static void drain_and_check_empty(struct pc__domain *d, struct pc__reclaimer *r,
                                  long base)
{
    pc__reclaimer_drain_detach(r);
    cr_assert(pc__grace_wait(d));
    pc__reclaimer_free(r, pc__reclaimer_drain_finish(r));
    cr_assert_eq(pending_of(r), 0, "%llu pending after the drain",
                 (unsigned long long)pending_of(r));
    pc__reclaimer_trim(r);
    cr_assert_eq(pc__alloc_live() - base, 1, "%ld left besides the reclaimer",
                 pc__alloc_live() - base - 1);
}

/* pc_reclaim's drain frees a batch that polls left half handed over from
 * where it stands, and nothing waits after it. */
Test(grace, a_drain_frees_what_paced_polls_left_half_handed_over)
{
    struct pc__domain d;
    struct pc__reclaimer *r;
    long base;
    bool step;

    r = paced_setup(&d, &base);
    retire_and_wait(&d, r, 2 * PC__RETIRE_BATCH_ITEMS);
    for (int i = 0; i < 5; i++) /* 10 out, one batch half handed over */
        cr_assert_eq(poll_and_free(r, &step), PC__FREE_QUOTA);
    /* Some retired since, not yet past a grace period. */
    for (int i = 0; i < 7; i++)
        pc__reclaimer_retire(r, entry_new());
    cr_assert_eq(pending_of(r),
                 2 * PC__RETIRE_BATCH_ITEMS - 5 * PC__FREE_QUOTA);
    drain_and_check_empty(&d, r, base);
    cr_assert_eq(r->ready_n, 0);
    cr_assert_eq(r->ready_bytes, 0);
    paced_teardown(&d, r, base);
}

/* A drain covers what its own detach sets aside. A shard defers a full
 * batch at epoch e0, retires one entry more into its open batch, then sees
 * no write while other writers move the epoch on by four: the drain's
 * deferral of the open batch lands in e0's bucket, which it must first set
 * aside (safe) onto the list the drain runs. Before the fix (the list ran
 * before the open batch was deferred) the 128 entries stayed after
 * pc_reclaim, until the shard's next write. */
Test(grace, a_drain_frees_what_its_own_deferral_sets_aside)
{
    struct pc__domain d;
    struct pc__reclaimer *r;
    unsigned int e0;
    long base;
    bool step;

    r = paced_setup(&d, &base);
    for (int i = 0; i < PC__RETIRE_BATCH_ITEMS; i++)
        pc__reclaimer_retire(r, entry_new());
    cr_assert_eq(poll_and_free(r, &step), 0); /* deferred, nothing due */
    e0 = __atomic_load_n(&d.epoch.epoch, __ATOMIC_RELAXED);
    pc__reclaimer_retire(r, entry_new()); /* the open batch: one entry */
    cr_assert_eq(poll_and_free(r, &step), 0);
    cr_assert_eq(pending_of(r), PC__RETIRE_BATCH_ITEMS); /* (per batch) */
    for (int i = 0; i < 4; i++) /* other writers' steps */
        cr_assert(pc__grace_step(&d, false));
    cr_assert_eq(__atomic_load_n(&d.epoch.epoch, __ATOMIC_RELAXED), e0 + 4);
    drain_and_check_empty(&d, r, base);
    paced_teardown(&d, r, base);
}

/* Destruction frees what a retire's own deferral set aside. A full batch
 * is deferred at epoch e0; other writers move the epoch on by four; the
 * next batch fills and is deferred by a retire (no poll follows), which
 * sets e0's bucket aside as safe: pc__reclaimer_destroy must run it too. */
Test(grace, destroy_frees_what_a_retire_set_aside)
{
    struct pc__domain d;
    struct pc__reclaimer *r;
    long base;
    bool step;

    r = paced_setup(&d, &base);
    for (int i = 0; i < PC__RETIRE_BATCH_ITEMS; i++)
        pc__reclaimer_retire(r, entry_new());
    cr_assert_eq(poll_and_free(r, &step), 0); /* deferred at e0 */
    for (int i = 0; i < 4; i++)               /* other writers' steps */
        cr_assert(pc__grace_step(&d, false));
    for (int i = 0; i <= PC__RETIRE_BATCH_ITEMS; i++)
        pc__reclaimer_retire(r, entry_new());
    cr_assert(!CK_STACK_ISEMPTY(&r->safe), "nothing was set aside");
    paced_teardown(&d, r, base);
}

/* A batch that holds a mebibyte (PC__RETIRE_BATCH_BYTES) is deferred by
 * the next poll, however few entries it holds: eight removed values of
 * 128 KiB do not wait for 120 more before their grace period starts. */
Test(grace, a_mebibyte_of_removed_entries_is_deferred_before_the_batch_fills)
{
    struct pc__domain d;
    struct pc__reclaimer *r;
    const size_t vlen = 128 << 10;
    long base;
    bool step;
    int polls = 0;

    r = paced_setup(&d, &base);
    for (int i = 0; i < 8; i++) { /* eight writes, each removing one */
        pc__reclaimer_retire(r, entry_sized(vlen));
        cr_assert_eq(poll_and_free(r, &step), 0);
    }
    cr_assert_null(r->open, "%u entries, %zu bytes, not deferred", r->open->n,
                   r->open->bytes);
    cr_assert_eq(pending_of(r), 8);
    for (int i = 0; i < 3; i++)
        cr_assert(pc__grace_step(&d, false));
    while (poll_and_free(r, &step) != 0)
        polls++;
    cr_assert_eq(polls, 8 / PC__FREE_QUOTA);
    cr_assert_eq(pending_of(r), 0);
    /* The reclaimer and its emptied batch, kept for reuse. */
    cr_assert_eq(pc__alloc_live() - base, 2, "%ld allocated",
                 pc__alloc_live() - base);
    paced_teardown(&d, r, base);
}

/* Large entries: what waits is bounded in bytes too (PC__READY_MAX_BYTES),
 * so a few hundred large values are not left for hundreds of writes. */
Test(grace, paced_frees_let_at_most_a_mebibyte_wait)
{
    struct pc__domain d;
    struct pc__reclaimer *r;
    const size_t vlen = 8000; /* an 8 KiB class: 384 of them, 3 MiB */
    long base, extra;
    bool step, whole;

    r = paced_setup(&d, &base);
    retire_sized_and_wait(&d, r, 3 * PC__RETIRE_BATCH_ITEMS, vlen);
    extra = pc__alloc_live() - base - 3 * PC__RETIRE_BATCH_ITEMS;
    cr_assert_eq(poll_and_free_whole(r, &step, &whole), PC__FREE_QUOTA);
    cr_assert(whole, "3 MiB waited for two entries a write");
    cr_assert_leq(r->ready_bytes, PC__READY_MAX_BYTES);
    cr_assert_eq(pc__alloc_live() - base - extra, (long)r->ready_n);
    paced_teardown(&d, r, base);
}

/* What waits is counted down as polls hand it over, in bytes as in
 * entries: once more than PC__READY_MAX_BYTES has been handed over two
 * entries at a time, a batch that then becomes safe is still paced, not
 * handed over whole as if the bytes already freed still waited. */
Test(grace, paced_frees_stay_paced_after_a_mebibyte_went_two_at_a_time)
{
    struct pc__domain d;
    struct pc__reclaimer *r;
    const size_t vlen = 2000; /* a batch: about 256 KiB */
    long base;
    bool step, whole;

    r = paced_setup(&d, &base);
    for (int round = 0; round < 6; round++) {
        int polls = 0;
        uint32_t n;

        retire_sized_and_wait(&d, r, PC__RETIRE_BATCH_ITEMS, vlen);
        while ((n = poll_and_free_whole(r, &step, &whole)) != 0) {
            cr_assert_not(whole,
                          "round %d, poll %d: a whole batch handed over "
                          "with %d entries waiting",
                          round, polls, PC__RETIRE_BATCH_ITEMS);
            cr_assert_eq(n, PC__FREE_QUOTA);
            polls++;
        }
        cr_assert_eq(polls, PC__RETIRE_BATCH_ITEMS / PC__FREE_QUOTA);
        cr_assert_eq(r->ready_n, 0);
        cr_assert_eq(r->ready_bytes, 0, "round %d: %zu bytes left waiting",
                     round, r->ready_bytes);
    }
    paced_teardown(&d, r, base);
}

/* A batch that goes whole after polls handed over some of its entries
 * takes off what waits only the bytes it still holds: once everything has
 * been handed over nothing is counted as waiting, and a batch made safe
 * later is paced again. */
Test(grace, a_half_handed_over_batch_going_whole_counts_only_what_it_holds)
{
    struct pc__domain d;
    struct pc__reclaimer *r;
    const int many = 3 * PC__READY_MAX;
    long base;
    bool step, whole;
    int polls = 0;

    r = paced_setup(&d, &base);
    retire_and_wait(&d, r, many);
    /* Two entries of the first batch, then whole batches, it among them. */
    cr_assert_eq(poll_and_free_whole(r, &step, &whole), PC__FREE_QUOTA);
    cr_assert(whole, "no whole batch was handed over");
    while (poll_and_free(r, &step) != 0)
        polls++;
    cr_assert_gt(polls, 0);
    cr_assert_eq(r->ready_n, 0);
    cr_assert_eq(r->ready_bytes, 0, "%zu bytes counted as waiting",
                 r->ready_bytes);
    retire_and_wait(&d, r, PC__RETIRE_BATCH_ITEMS);
    cr_assert_eq(poll_and_free_whole(r, &step, &whole), PC__FREE_QUOTA);
    cr_assert_not(whole, "a batch of %d entries handed over whole",
                  PC__RETIRE_BATCH_ITEMS);
    paced_teardown(&d, r, base);
}

/* ------------------------------------- membarrier failing after startup */

static void deny_membarrier(void)
{
    struct sock_filter f[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_membarrier, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog = {sizeof f / sizeof f[0], f};

    cr_assert_eq(prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), 0);
    cr_assert_eq(prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog), 0);
    cr_assert_eq(syscall(__NR_membarrier, 0, 0, 0), -1);
}

static void reclaim_hung(int sig)
{
    static const char m[] = "pc_reclaim did not return\n";

    (void)sig;
    (void)!write(2, m, sizeof m - 1);
    _exit(3);
}

Test(grace, reclamation_survives_membarrier_failing_later)
{
    const char *before;
    pc_cache *c;
    long base, peak = 0;

    pc__alloc_track(1);
    base = pc__alloc_live();
    c = make_cache(1000);
    before = pc_read_fence();
    deny_membarrier();
    for (long i = 0; i < 400000; i++) {
        uint64_t k = (uint64_t)(i % 5000), v = (uint64_t)i;

        cr_assert_eq(pc_put(c, &k, sizeof k, &v, sizeof v), PC_OK);
        if (i % 1000 == 0) {
            long live = pc__alloc_live() - base;

            peak = live > peak ? live : peak;
            usleep(100); /* let the pace allow a step now and then */
        }
    }
    cr_log_info("read fence %s, then %s; peak live allocations %ld\n", before,
                pc_read_fence(), peak);
    if (strcmp(before, "membarrier") == 0)
        cr_assert_str_eq(pc_read_fence(),
                         "membarrier (failed later; mprotect fallback)");
    /* 1000 entries plus the garbage of a few milliseconds of puts, not the
     * 400,000 replaced entries. */
    cr_assert_lt(peak, 100000, "garbage grew to %ld allocations", peak);
    signal(SIGALRM, reclaim_hung);
    alarm(20);
    pc_reclaim(c);
    alarm(0);
    pc_destroy(c);
    cr_assert_eq(pc__alloc_live(), base);
}

/* A heavy barrier that fails (membarrier failing with a transient error,
 * which does not degrade to the fallback) is no barrier: it counts for
 * nobody, not even a caller whose stamp predates it, who must fail too
 * rather than assume the readers' stores visible. */
Test(grace, a_failed_heavy_barrier_counts_for_nobody)
{
    struct sock_filter f[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_membarrier, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ENOMEM),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog = {sizeof f / sizeof f[0], f};
    uint64_t stamp;

    if (!pc__read_fence_setup(false))
        return; /* readers fence: the heavy barrier is a plain fence */
    cr_assert_eq(prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), 0);
    cr_assert_eq(prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog), 0);
    stamp = pc__heavy_barrier_stamp();
    cr_assert_not(pc__heavy_barrier(stamp));
    cr_assert_not(pc__heavy_barrier(stamp),
                  "a failed barrier counted for a stamp taken before it");
    cr_assert_not(pc__heavy_barrier(pc__heavy_barrier_stamp()));
    cr_assert_str_eq(pc__read_fence_name(), "membarrier",
                     "a transient failure degraded the barrier");
}

/* membarrier and mprotect both denied: no heavy barrier can be had, so no
 * grace period may end (grace.c, "Failure"), paced steps included: what
 * writes remove waits (pending never goes down), pc_reclaim gives up
 * rather than waiting for ever, and pc_destroy frees it all.
 * (Not under the sanitizers, whose run-times may need mprotect.) */
#ifdef PC_TEST_JEMALLOC
static void deny_every_heavy_barrier(void)
{
    struct sock_filter f[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_membarrier, 1, 0),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_mprotect, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog = {sizeof f / sizeof f[0], f};

    cr_assert_eq(prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), 0);
    cr_assert_eq(prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog), 0);
    cr_assert_eq(syscall(__NR_membarrier, 0, 0, 0), -1);
}

Test(grace, without_any_heavy_barrier_nothing_is_freed_early)
{
    pc_cache *c;
    pc_stats st;
    uint64_t last = 0;
    long base;

    pc__alloc_track(1);
    base = pc__alloc_live();
    c = make_cache(1000);
    if (strcmp(pc_read_fence(), "membarrier") != 0) {
        /* Readers fence: the heavy barrier is a plain fence. */
        cr_log_info("read fence %s: no heavy barrier to deny\n",
                    pc_read_fence());
        pc_destroy(c);
        return;
    }
    deny_every_heavy_barrier();
    for (long i = 0; i < 200000; i++) {
        uint64_t k = (uint64_t)(i % 5000), v = (uint64_t)i;

        cr_assert_eq(pc_put(c, &k, sizeof k, &v, sizeof v), PC_OK);
        if (i % 1000 == 0) {
            cr_assert_eq(pc_stats_get(c, &st), PC_OK);
            cr_assert_geq(st.pending, last,
                          "pending went from %llu down to %llu without a "
                          "heavy barrier",
                          (unsigned long long)last,
                          (unsigned long long)st.pending);
            last = st.pending;
            usleep(100); /* let the pace allow a step now and then */
        }
    }
    cr_assert_gt(last, 100000);
    signal(SIGALRM, reclaim_hung);
    alarm(20);
    pc_reclaim(c); /* gives up */
    alarm(0);
    cr_assert_eq(pc_stats_get(c, &st), PC_OK);
    cr_assert_geq(st.pending, last, "pc_reclaim freed without a barrier");
    pc_destroy(c);
    cr_assert_eq(pc__alloc_live(), base);
}
/* Replace k's value with the allocation of a retire batch failing: the
 * first put that succeeds had every allocation it needed and the batch
 * after them could not be had, so the replaced entry spilled. */
static void put_spilling(pc_cache *c, uint64_t k, uint64_t v)
{
    int rc = PC_ENOMEM;

    for (long n = 0; n < 64 && rc != PC_OK; n++) {
        pc__alloc_fail_after(n);
        rc = pc_put(c, &k, sizeof k, &v, sizeof v);
        pc__alloc_fail_after(-1);
        cr_assert(rc == PC_OK || rc == PC_ENOMEM, "put: %d", rc);
    }
    cr_assert_eq(rc, PC_OK);
}

/* A pc_reclaim that cannot wait (no heavy barrier) puts back what it set
 * aside, spilled entries included: pc_destroy frees them all. Two spills:
 * the first is deferred by its write's poll (and never runs), the second
 * waits on the spill chain, which the drain takes and must give back. */
Test(grace, a_reclaim_without_a_barrier_gives_back_the_spilled_entries)
{
    pc_options o = test_opts(64);
    pc_cache *c;
    pc_stats st;
    long base;

    pc__alloc_track(1);
    base = pc__alloc_live();
    o.shards = 1;
    c = make_cache_opts(&o);
    cr_assert_not_null(c);
    if (strcmp(pc_read_fence(), "membarrier") != 0) {
        cr_log_info("read fence %s: no heavy barrier to deny\n",
                    pc_read_fence());
        pc_destroy(c);
        return;
    }
    cr_assert_eq(put_u64(c, 1, 1), PC_OK);
    deny_every_heavy_barrier();
    put_spilling(c, 1, 2);
    put_spilling(c, 1, 3);
    cr_assert_eq(pc_stats_get(c, &st), PC_OK);
    cr_assert_eq(st.pending, 2);
    signal(SIGALRM, reclaim_hung);
    alarm(20);
    pc_reclaim(c); /* gives up */
    alarm(0);
    cr_assert_eq(pc_stats_get(c, &st), PC_OK);
    cr_assert_eq(st.pending, 2);
    pc_destroy(c);
    cr_assert_eq(pc__alloc_live(), base, "leaked %ld", pc__alloc_live() - base);
}
#endif

/* ------------------------------------ destroy during other caches' ticks */

struct hammer_arg {
    pc_cache *c;
    int stop;
};

static void *hammer(void *p)
{
    struct hammer_arg *h = p;
    uint64_t i = 0;

    while (!__atomic_load_n(&h->stop, __ATOMIC_RELAXED)) {
        uint64_t k = i++ % 4096;

        pc_put(h->c, &k, sizeof k, &i, sizeof i);
    }
    return NULL;
}

Test(grace, destroy_while_other_caches_tick)
{
    struct hammer_arg h = {.c = make_cache(1024)};
    pthread_t th;
    double until = now_s() + 1.5;
    int rounds = 0;

    cr_assert_not_null(h.c);
    cr_assert_eq(pthread_create(&th, NULL, hammer, &h), 0);
    while (now_s() < until) {
        pc_options o = test_opts(0);
        pc_cache *y;

        o.capacity = 256;
        o.shards = 4;
        cr_assert_eq(pc_create(&o, &y), PC_OK);
        for (uint64_t j = 0; j < 2000; j++)
            cr_assert_eq(put_u64(y, j, j), PC_OK);
        pc_destroy(y);
        rounds++;
    }
    __atomic_store_n(&h.stop, 1, __ATOMIC_RELAXED);
    pthread_join(th, NULL);
    cr_log_info("%d caches created, filled and destroyed\n", rounds);
    cr_assert_gt(rounds, 10);
    pc_destroy(h.c);
}
