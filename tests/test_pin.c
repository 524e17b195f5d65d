/*
 * Pinned reads hold their own entry and nothing else: reclamation, other
 * threads and pc_reclaim go on while a pin is held; a pin may be released
 * from any thread, and releasing a released pin, or a copy of one, does
 * nothing. (Issue 11, items 7, 9 and 10.)
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core.h" /* the cache's pin table */
#include "pin.h"  /* pc__debug_pin_steps */
#include "purecache.h"
#include "testlib.h"

#define BIG 4096

static pc_stats stats_of(pc_cache *c)
{
    pc_stats s;

    cr_assert_eq(pc_stats_get(c, &s), PC_OK);
    return s;
}

/* pc_reclaim returns while this very thread holds a pin, and frees
 * everything removed meanwhile except the pinned entry itself, which the
 * statistics show as pending until it is unpinned. */
Test(pin, reclaim_while_pinned_frees_all_but_the_pinned_entry, .timeout = 60)
{
    pc_cache *c = make_cache(64);
    static unsigned char big[BIG];
    pc_pin pin;

    memset(big, 'p', sizeof big);
    cr_assert_eq(pc_put(c, "k", 1, big, sizeof big), PC_OK);
    cr_assert_eq(pc_get_pinned(c, "k", 1, &pin), PC_OK);
    memset(big, 'q', sizeof big);
    for (int i = 0; i < 2000; i++) { /* 8 MiB of replaced values */
        big[0] = (unsigned char)i;
        cr_assert_eq(pc_put(c, "k", 1, big, sizeof big), PC_OK);
        cr_assert_eq(pc_put(c, &i, sizeof i, big, sizeof big), PC_OK);
    }
    pc_reclaim(c);
    pc_stats s = stats_of(c);
    cr_assert_eq(s.pending, 1, "only the pinned entry may wait, not %llu",
                 (unsigned long long)s.pending);
    cr_assert_geq(s.pending_bytes, BIG);
    cr_assert_lt(s.pending_bytes, 2 * BIG);
    cr_assert_eq(pin.len, BIG);
    for (size_t i = 0; i < BIG; i++)
        cr_assert_eq(((const unsigned char *)pin.value)[i], 'p');
    pc_unpin(&pin);
    s = stats_of(c);
    cr_assert_eq(s.pending, 0, "the last unpin frees the replaced entry");
    cr_assert_eq(s.pending_bytes, 0);
    pc_destroy(c);
}

/* An entry removed while no batch could be allocated is spilled
 * (retire.h); a pin held on it keeps it past pc_reclaim all the same,
 * counted as pending, until the pin is released. */
Test(pin, reclaim_keeps_a_pinned_entry_that_was_spilled, .timeout = 60)
{
    pc_cache *c = make_cache(64);
    static unsigned char big[BIG];
    pc_stats s;
    pc_pin pin;
    int rc = PC_ENOMEM;

    memset(big, 'p', sizeof big);
    cr_assert_eq(pc_put(c, "k", 1, big, sizeof big), PC_OK);
    cr_assert_eq(pc_get_pinned(c, "k", 1, &pin), PC_OK);
    memset(big, 'q', sizeof big);
    /* The first replacement that succeeds had every allocation it needed
     * and no more: the retire batch after them (a fresh cache has none)
     * cannot be had, so the replaced entry spills. */
    for (long n = 0; n < 64 && rc != PC_OK; n++) {
        pc__alloc_fail_after(n);
        rc = pc_put(c, "k", 1, big, sizeof big);
        pc__alloc_fail_after(-1);
        cr_assert(rc == PC_OK || rc == PC_ENOMEM, "put: %d", rc);
    }
    cr_assert_eq(rc, PC_OK);
    s = stats_of(c);
    cr_assert_eq(s.pending, 1);
    pc_reclaim(c);
    s = stats_of(c);
    cr_assert_eq(s.pending, 1, "the pinned entry was freed by pc_reclaim");
    cr_assert_geq(s.pending_bytes, BIG);
    cr_assert_eq(pin.len, BIG);
    for (size_t i = 0; i < BIG; i++)
        cr_assert_eq(((const unsigned char *)pin.value)[i], 'p');
    pc_unpin(&pin);
    s = stats_of(c);
    cr_assert_eq(s.pending, 0, "the last unpin frees the replaced entry");
    cr_assert_eq(s.pending_bytes, 0);
    pc_destroy(c);
}

/* A pin on a live entry that is never removed: unpinning frees nothing, and
 * the entry stays readable. */
Test(pin, pin_of_a_live_entry_leaves_it_in_place)
{
    pc_cache *c = make_cache(8);
    pc_pin pin;
    char out[8];
    size_t n;

    cr_assert_eq(pc_put(c, "a", 1, "alpha", 5), PC_OK);
    cr_assert_eq(pc_get_pinned(c, "a", 1, &pin), PC_OK);
    pc_reclaim(c);
    pc_unpin(&pin);
    cr_assert_eq(pin.value, NULL, "an unpinned pc_pin is cleared");
    cr_assert_eq(pc_get(c, "a", 1, out, sizeof out, &n), PC_OK);
    cr_assert_eq(n, 5);
    cr_assert_eq(memcmp(out, "alpha", 5), 0);
    cr_assert_eq(stats_of(c).pending, 0);
    pc_destroy(c);
}

/* pin.h: "a held pin delays the freeing of its own entry and nothing
 * else". An entry pinned and unpinned while live, then removed while
 * another entry is pinned, is freed as any other: nothing of its old pin
 * is left to keep it (a mutation that left the entry's record in the pin
 * table once its last pin was released, unless already removed, passed
 * every suite: the removed entry was then kept as pinned for good). */
Test(pin, an_entry_once_pinned_is_freed_when_removed_later)
{
    pc_cache *c = make_cache(8);
    pc_pin pin, other;
    pc_stats s;

    cr_assert_eq(pc_put(c, "a", 1, "alpha", 5), PC_OK);
    cr_assert_eq(pc_put(c, "b", 1, "beta", 4), PC_OK);
    cr_assert_eq(pc_get_pinned(c, "a", 1, &pin), PC_OK);
    pc_unpin(&pin);
    cr_assert_eq(pc_get_pinned(c, "b", 1, &other), PC_OK); /* a pin held */
    cr_assert_eq(pc_put(c, "a", 1, "again", 5), PC_OK);    /* "alpha" removed */
    cr_assert_eq(pc_delete(c, "a", 1), PC_OK);             /* "again" too */
    pc_reclaim(c);
    s = stats_of(c);
    cr_assert_eq(s.pending, 0, "%llu removed entries kept",
                 (unsigned long long)s.pending);
    cr_assert_eq(s.pending_bytes, 0);
    cr_assert_eq(memcmp(other.value, "beta", 4), 0);
    pc_unpin(&other);
    cr_assert_eq(stats_of(c).pending, 0);
    pc_destroy(c);
}

/* pc_unpin: "Release a pin ... and clear *pin", and "a zeroed pc_pin ... is
 * a no-op": a released pc_pin is all zeros, so releasing it again is a
 * no-op even once its cache is destroyed (a mutation that left the pin's
 * pointer to its cache's pin table in place passed every suite; a second
 * pc_unpin then reads the destroyed cache's table). */
Test(pin, an_unpinned_pc_pin_is_zeroed)
{
    pc_cache *c = make_cache(8);
    pc_pin pin, zero;

    memset(&zero, 0, sizeof zero);
    cr_assert_eq(pc_put(c, "a", 1, "alpha", 5), PC_OK);
    cr_assert_eq(pc_get_pinned(c, "a", 1, &pin), PC_OK);
    pc_unpin(&pin);
    cr_assert(memcmp(&pin, &zero, sizeof pin) == 0,
              "a released pc_pin is not cleared");
    pc_destroy(c);
    pc_unpin(&pin); /* a zeroed pc_pin: touches no cache */
    cr_assert(memcmp(&pin, &zero, sizeof pin) == 0);
}

/* Releasing a copy of a released pin, or a pin twice, is a no-op: the other
 * pins on the same entry keep it alive (AddressSanitizer reports the read
 * below if they did not). */
Test(pin, copies_and_double_releases_are_no_ops)
{
    pc_cache *c = make_cache(8);
    pc_pin p1, p2, copy;

    cr_assert_eq(pc_put(c, "a", 1, "first", 5), PC_OK);
    cr_assert_eq(pc_get_pinned(c, "a", 1, &p1), PC_OK);
    cr_assert_eq(pc_get_pinned(c, "a", 1, &p2), PC_OK);
    cr_assert_eq(p1.value, p2.value, "both pins name the same entry");
    copy = p1;
    pc_unpin(&p1);
    pc_unpin(&copy); /* the copy's pin was released through p1 */
    pc_unpin(&p1);
    pc_unpin(&copy);
    cr_assert_eq(pc_put(c, "a", 1, "again", 5), PC_OK);
    pc_reclaim(c);
    cr_assert_eq(stats_of(c).pending, 1, "p2 still holds the old entry");
    cr_assert_eq(memcmp(p2.value, "first", 5), 0);
    pc_unpin(&p2);
    cr_assert_eq(stats_of(c).pending, 0);
    pc_destroy(c);
}

struct handoff {
    pc_pin pin;
    pc_cache *c;
};

static void *unpin_elsewhere(void *p)
{
    struct handoff *h = p;

    pc_unpin(&h->pin);
    return NULL;
}

Test(pin, a_pin_may_be_released_from_another_thread)
{
    struct handoff h = {.c = make_cache(8)};
    pthread_t th;

    cr_assert_eq(pc_put(h.c, "a", 1, "first", 5), PC_OK);
    cr_assert_eq(pc_get_pinned(h.c, "a", 1, &h.pin), PC_OK);
    cr_assert_eq(pc_delete(h.c, "a", 1), PC_OK);
    pc_reclaim(h.c);
    cr_assert_eq(stats_of(h.c).pending, 1);
    cr_assert_eq(pthread_create(&th, NULL, unpin_elsewhere, &h), 0);
    pthread_join(th, NULL);
    cr_assert_eq(stats_of(h.c).pending, 0);
    pc_reclaim(h.c); /* nothing left to wait for */
    pc_destroy(h.c);
}

/* Two copies of one pin released at once, from two threads, release it
 * once: a second pin of the same removed entry still holds it (pending
 * stays 1), and frees it when released. */
struct copy_release {
    pc_pin pin;
    pthread_barrier_t *go;
};

static void *release_copy(void *p)
{
    struct copy_release *r = p;

    pthread_barrier_wait(r->go);
    pc_unpin(&r->pin);
    return NULL;
}

Test(pin, two_copies_released_at_once_release_the_pin_once, .timeout = 60)
{
    pc_cache *c = make_cache(8);
    pthread_barrier_t go;

    pthread_barrier_init(&go, NULL, 2);
    for (int i = 0; i < 300; i++) {
        struct copy_release a = {.go = &go}, b;
        pc_pin other;
        pthread_t ta, tb;

        cr_assert_eq(pc_put(c, "a", 1, &i, sizeof i), PC_OK);
        cr_assert_eq(pc_get_pinned(c, "a", 1, &a.pin), PC_OK);
        cr_assert_eq(pc_get_pinned(c, "a", 1, &other), PC_OK);
        b = a; /* a copy of the first pin */
        cr_assert_eq(pc_delete(c, "a", 1), PC_OK);
        pc_reclaim(c);
        cr_assert_eq(stats_of(c).pending, 1);
        cr_assert_eq(pthread_create(&ta, NULL, release_copy, &a), 0);
        cr_assert_eq(pthread_create(&tb, NULL, release_copy, &b), 0);
        pthread_join(ta, NULL);
        pthread_join(tb, NULL);
        cr_assert_eq(stats_of(c).pending, 1,
                     "round %d: the entry went with the first pin's "
                     "copies, while the second pin holds it",
                     i);
        cr_assert_eq(memcmp(other.value, &i, sizeof i), 0);
        pc_unpin(&other);
        cr_assert_eq(stats_of(c).pending, 0);
    }
    pthread_barrier_destroy(&go);
    pc_destroy(c);
}

/* Item 10's scenario: one pin held while another thread replaces 4 KiB
 * values; memory awaiting reclamation stays bounded by the pinned entry
 * plus what reclamation has not yet caught up with, not by everything
 * replaced since the pin was taken. */
struct replacer {
    pc_cache *c;
    uint64_t max_pending_bytes;
};

static void *replace_values(void *p)
{
    struct replacer *r = p;
    static unsigned char v[BIG];

    for (int i = 0; i < 20000; i++) { /* 80 MiB replaced */
        v[0] = (unsigned char)i;
        pc_put(r->c, &(int){i % 16}, sizeof(int), v, sizeof v);
        if (i % 1000 == 999) {
            pc_stats s;

            pc_reclaim(r->c);
            pc_stats_get(r->c, &s);
            if (s.pending_bytes > r->max_pending_bytes)
                r->max_pending_bytes = s.pending_bytes;
        }
    }
    return NULL;
}

Test(pin, a_held_pin_does_not_hold_other_garbage, .timeout = 120)
{
    struct replacer r = {.c = make_cache(64)};
    static unsigned char v[BIG];
    pthread_t th;
    pc_pin pin;

    cr_assert_eq(pc_put(r.c, "held", 4, v, sizeof v), PC_OK);
    cr_assert_eq(pc_get_pinned(r.c, "held", 4, &pin), PC_OK);
    cr_assert_eq(pc_delete(r.c, "held", 4), PC_OK);
    cr_assert_eq(pthread_create(&th, NULL, replace_values, &r), 0);
    pthread_join(th, NULL);
    /* After each pc_reclaim only the pinned entry remains (other threads
     * may not write meanwhile: this one is idle). */
    cr_assert_lt(r.max_pending_bytes, 2 * BIG, "pending reached %llu bytes",
                 (unsigned long long)r.max_pending_bytes);
    pc_unpin(&pin);
    pc_reclaim(r.c);
    cr_assert_eq(stats_of(r.c).pending, 0);
    pc_destroy(r.c);
}

/* Item 7: T holds a pin and waits, as a follower, for a load whose loader
 * (another thread) calls pc_reclaim. pc_reclaim no longer waits for pins,
 * so both finish. */
struct pin_follow {
    pc_cache *c;
    int loading; /* the loader has started (atomic) */
    pc_status follower_st;
};

static int reclaiming_loader(void *ctx, const void *key, size_t klen,
                             pc_sink *out)
{
    struct pin_follow *pf = ctx;

    (void)key;
    (void)klen;
    __atomic_store_n(&pf->loading, 1, __ATOMIC_RELEASE);
    usleep(100000); /* let the pinned thread become a follower */
    pc_reclaim(pf->c);
    return pc_sink_set(out, "loaded", 6) == PC_OK ? 0 : 1;
}

static void *leader(void *p)
{
    struct pin_follow *pf = p;
    char buf[16];

    pc_get_or_load(pf->c, "K", 1, reclaiming_loader, pf, buf, sizeof buf, NULL,
                   NULL);
    return NULL;
}

static void *pinned_follower(void *p)
{
    struct pin_follow *pf = p;
    char buf[16];
    pc_pin pin;

    if (pc_get_pinned(pf->c, "a", 1, &pin) != PC_OK)
        return NULL;
    while (!__atomic_load_n(&pf->loading, __ATOMIC_ACQUIRE))
        usleep(1000);
    pf->follower_st = pc_get_or_load(pf->c, "K", 1, reclaiming_loader, pf, buf,
                                     sizeof buf, NULL, NULL);
    pc_unpin(&pin);
    return NULL;
}

Test(pin, pinned_follower_and_reclaiming_loader_do_not_deadlock, .timeout = 60)
{
    struct pin_follow pf = {.c = make_cache(16), .follower_st = PC_EINVAL};
    pthread_t a, b;

    cr_assert_eq(pc_put(pf.c, "a", 1, "1", 1), PC_OK);
    for (int i = 0; i < 100; i++) /* garbage for pc_reclaim to wait on */
        pc_put(pf.c, "x", 1, &i, sizeof i);
    cr_assert_eq(pthread_create(&a, NULL, leader, &pf), 0);
    cr_assert_eq(pthread_create(&b, NULL, pinned_follower, &pf), 0);
    pthread_join(a, NULL);
    pthread_join(b, NULL);
    cr_assert_eq(pf.follower_st, PC_OK);
    pc_destroy(pf.c);
}

/* Item 9: fork() while another thread holds a pin; pc_reclaim in the child
 * returns (the pin holds no read section the child would wait for). */
struct holder {
    pc_cache *c;
    pthread_barrier_t pinned, release;
};

static void *hold_a_pin(void *p)
{
    struct holder *h = p;
    pc_pin pin;

    pc_get_pinned(h->c, "a", 1, &pin);
    pthread_barrier_wait(&h->pinned);
    pthread_barrier_wait(&h->release);
    pc_unpin(&pin);
    return NULL;
}

Test(pin, fork_while_another_thread_holds_a_pin, .timeout = 60)
{
    struct holder h = {.c = make_cache(16)};
    pthread_t th;
    pid_t pid;
    int status;

    cr_assert_eq(pc_put(h.c, "a", 1, "1", 1), PC_OK);
    pthread_barrier_init(&h.pinned, NULL, 2);
    pthread_barrier_init(&h.release, NULL, 2);
    cr_assert_eq(pthread_create(&th, NULL, hold_a_pin, &h), 0);
    pthread_barrier_wait(&h.pinned);
    pc_put(h.c, "a", 1, "2", 1); /* the pinned entry is now garbage */
    pid = fork();
    if (pid == 0) {
        alarm(20); /* a hang fails the test (SIGALRM) */
        pc_put(h.c, "b", 1, "3", 1);
        pc_reclaim(h.c);
        _exit(pc_get(h.c, "b", 1, NULL, 0, NULL) == PC_ERANGE ? 0 : 3);
    }
    cr_assert_gt(pid, 0);
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    pthread_barrier_wait(&h.release);
    pthread_join(th, NULL);
    cr_assert(WIFEXITED(status), "child killed by signal %d",
              WIFSIGNALED(status) ? WTERMSIG(status) : 0);
    cr_assert_eq(WEXITSTATUS(status), 0);
    pthread_barrier_destroy(&h.pinned);
    pthread_barrier_destroy(&h.release);
    pc_destroy(h.c);
}

#ifdef PC_DEBUG
/* Counted, not timed: the lookups of the pin table (pin, unpin, and the
 * reclaimer asking whether an entry it frees is pinned) walk a few chain
 * records each whatever the pins held (pin.h, "Size"). With a fixed 64
 * buckets and 20,000 pins held, each walked about 20,000 / 64 records (a
 * pin and unpin took 15 us at 100,000 pins held, 244 us at 300,000). */
#define HELD 20000
#define MORE 2000
#define STEPS_PER_LOOKUP 4 /* ~1 at the table's load (2 pins per bucket) */

static uint64_t pin_steps(void)
{
    return __atomic_load_n(&pc__debug_pin_steps, __ATOMIC_RELAXED);
}

Test(pin, many_held_pins_keep_the_pin_tables_chains_short, .timeout = 120)
{
    pc_cache *c = make_cache(2 * HELD);
    pc_pin *held = calloc(HELD, sizeof *held);
    uint64_t before, steps;
    pc_pin p;

    cr_assert_not_null(held);
    for (uint64_t k = 0; k < HELD; k++) {
        cr_assert_eq(pc_put(c, &k, sizeof k, &k, sizeof k), PC_OK);
        cr_assert_eq(pc_get_pinned(c, &k, sizeof k, &held[k]), PC_OK);
    }
    /* Pins on entries that have pins (the pin's own lookup and the
     * unpin's two), and on entries that have none (an absent record). */
    before = pin_steps();
    for (uint64_t i = 0; i < MORE; i++) {
        uint64_t k = i * 7 % HELD, fresh = HELD + i;

        cr_assert_eq(pc_get_pinned(c, &k, sizeof k, &p), PC_OK);
        pc_unpin(&p);
        cr_assert_eq(pc_put(c, &fresh, sizeof fresh, &k, sizeof k), PC_OK);
        cr_assert_eq(pc_get_pinned(c, &fresh, sizeof fresh, &p), PC_OK);
        pc_unpin(&p);
    }
    steps = pin_steps() - before;
    cr_assert_leq(steps, (uint64_t)MORE * 6 * STEPS_PER_LOOKUP,
                  "%llu chain records passed in %d pins and unpins with %d "
                  "pins held",
                  (unsigned long long)steps, 2 * MORE, HELD);
    /* Replacing pinned entries: each free asks the table (a kept one). */
    before = pin_steps();
    for (uint64_t k = 0; k < MORE; k++) {
        uint64_t v = k + 1;

        cr_assert_eq(pc_put(c, &k, sizeof k, &v, sizeof v), PC_OK);
    }
    pc_reclaim(c);
    steps = pin_steps() - before;
    cr_assert_leq(steps, (uint64_t)MORE * STEPS_PER_LOOKUP,
                  "%llu chain records passed in %d frees of pinned entries",
                  (unsigned long long)steps, MORE);
    /* Every pin still reads its own value; released, nothing waits. */
    for (uint64_t k = 0; k < HELD; k++) {
        uint64_t v;

        cr_assert_eq(held[k].len, sizeof v);
        memcpy(&v, held[k].value, sizeof v);
        cr_assert_eq(v, k);
        pc_unpin(&held[k]);
    }
    pc_reclaim(c);
    cr_assert_eq(stats_of(c).pending, 0);
    /* And the table, shrunk back, still pins. */
    uint64_t k = 1;
    cr_assert_eq(pc_get_pinned(c, &k, sizeof k, &p), PC_OK);
    pc_unpin(&p);
    free(held);
    pc_destroy(c);
}
#endif

/* pc_stats_get waits only for thread registration (purecache.h, "What may
 * wait on what"), not for the pin-table lock that pins and unpins take:
 * with that lock held (as an unpin holds it), a pc_stats_get in another
 * thread returns (waited for up to 5 s, a deadlock breaker, not a timing
 * target). It took the lock to read the kept blocks (found by helper-65). */
struct stats_call {
    pc_cache *c;
    int done;
};

static void *call_stats(void *p)
{
    struct stats_call *sc = p;
    pc_stats s;

    cr_assert_eq(pc_stats_get(sc->c, &s), PC_OK);
    __atomic_store_n(&sc->done, 1, __ATOMIC_RELEASE);
    return NULL;
}

Test(pin, stats_do_not_wait_for_the_pin_table_lock, .timeout = 60)
{
    struct stats_call sc = {make_cache(16), 0};
    pthread_t th;
    int done = 0;

    pc__lock_acquire(&sc.c->pins.lock); /* as pc_unpin holds it */
    cr_assert_eq(pthread_create(&th, NULL, call_stats, &sc), 0);
    for (int i = 0; i < 5000 && !done; i++) {
        usleep(1000);
        done = __atomic_load_n(&sc.done, __ATOMIC_ACQUIRE);
    }
    pc__lock_release(&sc.c->pins.lock);
    pthread_join(th, NULL);
    cr_assert(done, "pc_stats_get waited for the pin-table lock");
    pc_destroy(sc.c);
}

/* ---- review-s48: the pin table's resize under concurrency and faults ---- */

#define RS_THREADS 4
#define RS_KEYS 2048
#define RS_ROUNDS 30

struct rs_arg {
    pc_cache *c;
    unsigned seed;
    pc_pin *shared; /* pins released by the next thread */
    int bad;
};

static pc_pin rs_handoff[RS_THREADS][RS_KEYS];
static pthread_barrier_t rs_bar;

static void *rs_worker(void *p)
{
    struct rs_arg *a = p;
    int me = (int)a->seed;

    for (int r = 0; r < RS_ROUNDS; r++) {
        /* pin a wave (grows the table), with some misses in between */
        int n = 64 + (int)((unsigned)(r * 7919 + me * 31) % RS_KEYS);

        if (n > RS_KEYS)
            n = RS_KEYS;
        for (int i = 0; i < n; i++) {
            uint64_t k = (uint64_t)((i * 13 + me) % RS_KEYS), miss = ~k, v;

            (void)pc_get_pinned(a->c, &miss, sizeof miss, &rs_handoff[me][i]);
            if (pc_get_pinned(a->c, &k, sizeof k, &rs_handoff[me][i]) !=
                PC_OK) {
                memset(&rs_handoff[me][i], 0, sizeof rs_handoff[me][i]);
                continue;
            }
            memcpy(&v, rs_handoff[me][i].value, sizeof v);
            if (v != k)
                __atomic_store_n(&a->bad, 1, __ATOMIC_RELAXED);
        }
        for (int i = n; i < RS_KEYS; i++)
            memset(&rs_handoff[me][i], 0, sizeof rs_handoff[me][i]);
        pthread_barrier_wait(&rs_bar);
        /* release the next thread's pins (shrinks), twice each */
        int o = (me + 1) % RS_THREADS;
        for (int i = 0; i < RS_KEYS; i++) {
            pc_pin cp = rs_handoff[o][i];
            pc_unpin(&rs_handoff[o][i]);
            pc_unpin(&cp);
        }
        pthread_barrier_wait(&rs_bar);
    }
    return NULL;
}

Test(pin, resize_races_keep_every_pin, .timeout = 300)
{
    pthread_t th[RS_THREADS];
    struct rs_arg a[RS_THREADS];
    pc_cache *c = make_cache(4 * RS_KEYS);

    cr_assert_not_null(c);
    for (uint64_t k = 0; k < RS_KEYS; k++)
        cr_assert_eq(pc_put(c, &k, sizeof k, &k, sizeof k), PC_OK);
    pthread_barrier_init(&rs_bar, NULL, RS_THREADS);
    for (int i = 0; i < RS_THREADS; i++) {
        a[i] = (struct rs_arg){c, (unsigned)i, NULL, 0};
        cr_assert_eq(pthread_create(&th[i], NULL, rs_worker, &a[i]), 0);
    }
    for (int i = 0; i < RS_THREADS; i++)
        pthread_join(th[i], NULL);
    for (int i = 0; i < RS_THREADS; i++)
        cr_assert_eq(a[i].bad, 0);
    cr_assert_eq(__atomic_load_n(&c->pins.active, __ATOMIC_RELAXED), 0);
    pthread_barrier_destroy(&rs_bar);
    pc_destroy(c);
}

/* Every allocation failing in turn while the table grows and shrinks:
 * nothing leaks, and the pins that were had read their values. */
Test(pin, resize_under_fault_injection_leaks_nothing, .timeout = 300)
{
    enum { N = 600 };
    static pc_pin held[N];
    long live0;

    pc__alloc_track(1);
    live0 = pc__alloc_live();
    for (long fail = 0; fail < 40; fail++) {
        pc_cache *c = make_cache(2 * N);

        cr_assert_not_null(c);
        for (uint64_t k = 0; k < N; k++)
            cr_assert_eq(pc_put(c, &k, sizeof k, &k, sizeof k), PC_OK);
        /* warm this thread's record */
        uint64_t k0 = 0;
        cr_assert_eq(pc_get_pinned(c, &k0, sizeof k0, &held[0]), PC_OK);
        pc_unpin(&held[0]);
        for (int round = 0; round < 3; round++) {
            pc__alloc_fail_after(fail * 7 + round);
            for (uint64_t k = 0; k < N; k++) {
                memset(&held[k], 0, sizeof held[k]);
                pc_status st = pc_get_pinned(c, &k, sizeof k, &held[k]);
                cr_assert(st == PC_OK || st == PC_ENOMEM);
                if (st == PC_OK) {
                    uint64_t v;
                    memcpy(&v, held[k].value, sizeof v);
                    cr_assert_eq(v, k);
                } else {
                    memset(&held[k], 0, sizeof held[k]);
                }
                if (k % 97 == 0)
                    pc__alloc_fail_after(fail * 7 + round);
            }
            for (uint64_t k = 0; k < N; k++)
                pc_unpin(&held[(k * 7) % N]);
            pc__alloc_fail_after(-1);
        }
        cr_assert_eq(__atomic_load_n(&c->pins.active, __ATOMIC_RELAXED), 0);
        pc_destroy(c);
    }
    cr_assert_eq(pc__alloc_live(), live0, "leaked %ld blocks",
                 pc__alloc_live() - live0);
    pc__alloc_track(0);
}

/* Pin and unpin at exactly the growth and shrink thresholds: no resize
 * per pin (each resize moves every pin: the chain-step counter would not
 * show it, so count resizes via the bucket count changing). */
Test(pin, no_resize_thrash_at_the_thresholds, .timeout = 120)
{
    enum { N = 4096 };
    static pc_pin held[N];
    pc_cache *c = make_cache(2 * N);
    pc_pin p;

    cr_assert_not_null(c);
    for (uint64_t k = 0; k < N; k++)
        cr_assert_eq(pc_put(c, &k, sizeof k, &k, sizeof k), PC_OK);
    for (size_t target = 1; target < N; target++) {
        size_t changes = 0;
        for (uint64_t k = 0; k < target; k++)
            if (held[k].internal_[0] == NULL)
                cr_assert_eq(pc_get_pinned(c, &k, sizeof k, &held[k]), PC_OK);
        if (target % 61 != 0 && target != 128 && target != 129 &&
            target != 15 && target != 16)
            continue;
        for (int i = 0; i < 200; i++) {
            size_t nb = __atomic_load_n(&c->pins.nb, __ATOMIC_RELAXED);
            uint64_t k = N - 1;
            cr_assert_eq(pc_get_pinned(c, &k, sizeof k, &p), PC_OK);
            changes += __atomic_load_n(&c->pins.nb, __ATOMIC_RELAXED) != nb;
            nb = __atomic_load_n(&c->pins.nb, __ATOMIC_RELAXED);
            pc_unpin(&p);
            changes += __atomic_load_n(&c->pins.nb, __ATOMIC_RELAXED) != nb;
        }
        cr_assert_leq(changes, 1, "%zu resizes at %zu pins held", changes,
                      target);
    }
    for (size_t k = N; k-- > 0;) {
        size_t changes = 0;
        pc_unpin(&held[k]);
        for (int i = 0; i < 20; i++) {
            size_t nb = __atomic_load_n(&c->pins.nb, __ATOMIC_RELAXED);
            uint64_t kk = N - 1;
            cr_assert_eq(pc_get_pinned(c, &kk, sizeof kk, &p), PC_OK);
            pc_unpin(&p);
            changes += __atomic_load_n(&c->pins.nb, __ATOMIC_RELAXED) != nb;
        }
        cr_assert_leq(changes, 1, "%zu resizes at %zu pins held", changes, k);
    }
    pc_destroy(c);
}

/* review-s48: retire batches under writers, frees after unlock (pins
 * kept blocks), pc_reclaim's drain and trim, all at once: afterwards
 * every reclaimer's free count matches its free lists, stays bounded, and
 * nothing leaks. */
struct rb_arg {
    pc_cache *c;
    int stop;
    int id;
};

static void *rb_writer(void *p)
{
    struct rb_arg *a = p;
    uint64_t x = (uint64_t)a->id * 0x9E3779B97F4A7C15ull + 1;
    char val[200];

    memset(val, 'v', sizeof val);
    while (!__atomic_load_n(&a->stop, __ATOMIC_RELAXED)) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        uint64_t k = x % 50000;
        if (x % 11 == 0)
            pc_delete(a->c, &k, sizeof k);
        else
            pc_put(a->c, &k, sizeof k, val, 8 + x % 190);
        if (x % 5000 == 0)
            pc_clear(a->c);
    }
    return NULL;
}

static void *rb_pinner(void *p)
{
    struct rb_arg *a = p;
    pc_pin pins[64] = {0};
    uint64_t i = 0;

    while (!__atomic_load_n(&a->stop, __ATOMIC_RELAXED)) {
        uint64_t k = (i * 7919) % 50000;
        pc_unpin(&pins[i % 64]);
        (void)pc_get_pinned(a->c, &k, sizeof k, &pins[i % 64]);
        i++;
    }
    for (int j = 0; j < 64; j++)
        pc_unpin(&pins[j]);
    return NULL;
}

static void *rb_reclaimer(void *p)
{
    struct rb_arg *a = p;

    while (!__atomic_load_n(&a->stop, __ATOMIC_RELAXED)) {
        pc_reclaim(a->c);
        usleep(500);
    }
    return NULL;
}

static size_t rb_len(struct pc__retire_batch *b)
{
    size_t n = 0;

    for (; b != NULL; b = b->next)
        n++;
    return n;
}

Test(pin, retire_free_lists_stay_counted_and_bounded, .timeout = 300)
{
    long live0;
    pc_cache *c;
    pthread_t th[5];
    struct rb_arg a[5];
    void *(*fn[5])(void *) = {rb_writer, rb_writer, rb_writer, rb_pinner,
                              rb_reclaimer};

    pc__alloc_track(1);
    live0 = pc__alloc_live();
    c = make_cache(2000);
    cr_assert_not_null(c);
    for (int i = 0; i < 5; i++) {
        a[i] = (struct rb_arg){c, 0, i};
        cr_assert_eq(pthread_create(&th[i], NULL, fn[i], &a[i]), 0);
    }
    sleep(4);
    for (int i = 0; i < 5; i++)
        __atomic_store_n(&a[i].stop, 1, __ATOMIC_RELAXED);
    for (int i = 0; i < 5; i++)
        pthread_join(th[i], NULL);
    for (unsigned i = 0; i < c->nwriters; i++) {
        struct pc__reclaimer *r = c->writers[i]->rc;
        size_t listed = rb_len(r->spare) + rb_len(r->returned);

        cr_assert_eq(listed, r->nfree,
                     "writer %u: %zu free batches listed, "
                     "nfree %zu",
                     i, listed, r->nfree);
        cr_assert_leq(listed, PC__SPARE_BATCHES + 8);
    }
    pc_reclaim(c);
    pc_destroy(c);
    cr_assert_eq(pc__alloc_live(), live0, "leaked %ld blocks",
                 pc__alloc_live() - live0);
    pc__alloc_track(0);
}

/* review-s48: with exactly 2 * nb pins held (the growth threshold), every
 * pinned read that MISSES allocates, and frees unused, bucket arrays for
 * twice the table (32 * nb bytes: 4 MiB at 262,144 pins held), since
 * pc__pins_prepare allocates growth before the lookup and only a hit
 * takes it: a miss costs O(pins held) bytes of allocator traffic, not the
 * documented amortised O(1) (0.115 -> 0.441 us per miss at 8192 pins). A
 * miss should attempt at most the pin's two records. */
Test(pin, pinned_misses_at_the_growth_threshold_allocate_no_arrays,
     .timeout = 120)
{
    enum { N = 8192 }; /* = 2 * 4096 buckets, once grown to 4096 */
    static pc_pin held[N];
    pc_cache *c = make_cache(2 * N);
    long attempts;
    pc_pin p;

    cr_assert_not_null(c);
    for (uint64_t k = 0; k < N; k++) {
        cr_assert_eq(pc_put(c, &k, sizeof k, &k, sizeof k), PC_OK);
        cr_assert_eq(pc_get_pinned(c, &k, sizeof k, &held[k]), PC_OK);
    }
    cr_assert_eq(__atomic_load_n(&c->pins.nb, __ATOMIC_RELAXED), N / 2);
    pc__alloc_fail_after(1L << 40); /* count, never fail */
    for (uint64_t i = 0; i < 1000; i++) {
        uint64_t k = ~i;

        cr_assert_eq(pc_get_pinned(c, &k, sizeof k, &p), PC_NOTFOUND);
    }
    attempts = pc__alloc_fail_after(-1);
    cr_assert_leq(attempts, 2 * 1000,
                  "%ld allocations for 1000 pinned misses (each a pin "
                  "record, a spare and %zu bytes of bucket arrays)",
                  attempts, (size_t)N * 2 * sizeof(void *));
    for (uint64_t k = 0; k < N; k++)
        pc_unpin(&held[k]);
    pc_destroy(c);
}

/* A pinned read is counted and used as pc_get's: one hit or one miss in
 * the statistics, and the policy then evicts what it evicts after the
 * same reads made by pc_get. */
static void reads_then_puts(bool pinned, bool present[16], pc_stats *s)
{
    pc_options o = test_opts(8);
    pc_cache *c;

    o.shards = 1;
    o.hash_seed = 0x5eed; /* both caches alike (frequency's ghost) */
    c = make_cache_opts(&o);
    cr_assert_not_null(c);
    for (uint64_t k = 0; k < 8; k++)
        cr_assert_eq(put_u64(c, k, k), PC_OK);
    for (uint64_t k = 0; k < 4; k++) { /* three hits, one miss each */
        for (uint64_t key = 0; key < 4; key++) {
            uint64_t kk = key == 3 ? 100 + k : key;
            pc_pin p;
            pc_status st;

            if (pinned) {
                st = pc_get_pinned(c, &kk, sizeof kk, &p);
                if (st == PC_OK)
                    pc_unpin(&p);
            } else {
                st = pc_get(c, &kk, sizeof kk, NULL, 0, NULL);
                st = st == PC_ERANGE ? PC_OK : st;
            }
            cr_assert_eq(st, key == 3 ? PC_NOTFOUND : PC_OK);
        }
    }
    for (uint64_t k = 8; k < 12; k++)
        cr_assert_eq(put_u64(c, k, k), PC_OK);
    for (uint64_t k = 0; k < 12; k++) {
        uint64_t v;

        present[k] = get_u64(c, k, &v) == PC_OK;
    }
    cr_assert_eq(pc_stats_get(c, s), PC_OK);
    pc_destroy(c);
}

Test(pin, a_pinned_read_counts_and_is_used_as_pc_gets)
{
    bool by_get[16], by_pin[16];
    pc_stats sg, sp;

    reads_then_puts(false, by_get, &sg);
    reads_then_puts(true, by_pin, &sp);
    cr_assert_eq(sp.hits, sg.hits, "%llu pinned hits counted, %llu by pc_get",
                 (unsigned long long)sp.hits, (unsigned long long)sg.hits);
    cr_assert_eq(sp.misses, sg.misses);
    cr_assert_eq(sg.hits, 12 + 8); /* the reads, then the 8 of 12 kept */
    cr_assert_eq(sg.misses, 4 + 4);
    for (int k = 0; k < 3; k++) /* read four times: kept */
        cr_assert(by_get[k], "key %d, read, was evicted", k);
    for (int k = 0; k < 12; k++)
        cr_assert_eq(by_pin[k], by_get[k], "key %d: %s after pinned reads", k,
                     by_pin[k] ? "kept" : "evicted");
}

/* The pin table's bucket count follows the pins held as pin.h says:
 * doubled once they pass two per bucket, halved once they fall under an
 * eighth of one, never under 64: step for step, pinning 1500 keys and
 * releasing them. */
Test(pin, the_pin_tables_size_follows_the_pins_held)
{
    enum { N = 1500 };
    static pc_pin held[N];
    pc_cache *c = make_cache(2 * N);
    size_t nb = 64, most = 64;

    cr_assert_not_null(c);
    for (uint64_t k = 0; k < N; k++)
        cr_assert_eq(pc_put(c, &k, sizeof k, &k, sizeof k), PC_OK);
    for (uint64_t k = 0; k < N; k++) {
        cr_assert_eq(pc_get_pinned(c, &k, sizeof k, &held[k]), PC_OK);
        if (k + 1 > 2 * nb)
            nb *= 2;
        most = nb > most ? nb : most;
        cr_assert_eq(__atomic_load_n(&c->pins.nb, __ATOMIC_RELAXED), nb,
                     "%zu buckets at %lu pins, not %zu",
                     __atomic_load_n(&c->pins.nb, __ATOMIC_RELAXED),
                     (unsigned long)k + 1, nb);
    }
    cr_assert_eq(most, 1024);
    for (uint64_t k = N; k-- > 0;) {
        pc_unpin(&held[k]);
        if (nb > 64 && k * 8 < nb)
            nb /= 2;
        cr_assert_eq(__atomic_load_n(&c->pins.nb, __ATOMIC_RELAXED), nb,
                     "%zu buckets at %lu pins, not %zu",
                     __atomic_load_n(&c->pins.nb, __ATOMIC_RELAXED),
                     (unsigned long)k, nb);
    }
    cr_assert_eq(nb, 64);
    pc_destroy(c);
}

/* ---- pinned reads ---- */

Test(pinned, pin_returns_the_value_and_counts_as_a_use)
{
    pc_cache *c = make_cache(2);
    pc_pin pin;

    pc_put(c, "a", 1, "alpha", 5);
    pc_put(c, "b", 1, "beta", 4);
    cr_assert_eq(pc_get_pinned(c, "a", 1, &pin), PC_OK);
    cr_assert_eq(pin.len, 5);
    cr_assert_eq(memcmp(pin.value, "alpha", 5), 0);
    pc_unpin(&pin);
    pc_unpin(&pin);       /* released pins are inert */
    if (is_frequency()) { /* probation: a second use promotes */
        cr_assert_eq(pc_get_pinned(c, "a", 1, &pin), PC_OK);
        pc_unpin(&pin);
    }
    pc_put(c, "c", 1, "gamma", 5); /* evicts b, not the pinned-and-used a */
    cr_assert_eq(pc_get(c, "a", 1, NULL, 0, NULL), PC_ERANGE);
    cr_assert_eq(pc_get(c, "b", 1, NULL, 0, NULL), PC_NOTFOUND);
    cr_assert_eq(pc_get_pinned(c, "zz", 2, &pin), PC_NOTFOUND);
    cr_assert_eq(pc_get_pinned(c, "a", 1, NULL), PC_EINVAL);
    cr_assert_eq(pc_get_pinned(NULL, "a", 1, &pin), PC_EINVAL);
    pc_unpin(NULL);
    pc_destroy(c);
}

struct churner {
    pc_cache *c;
    int done;
};

static void *churn_keys(void *p)
{
    struct churner *ch = p;
    unsigned char val[SV_MAX];

    for (uint64_t i = 0; i < 20000; i++) {
        uint64_t k = i % 3 == 0 ? 7 : 1000 + i;

        pc_put(ch->c, &k, sizeof k, val, sv_make(val, k, i));
        if (i % 1000 == 0)
            pc_delete(ch->c, &(uint64_t){7}, 8);
    }
    __atomic_store_n(&ch->done, 1, __ATOMIC_RELEASE);
    return NULL;
}

Test(pinned, pinned_value_survives_concurrent_replacement_and_eviction)
{
    struct churner ch = {.c = make_cache(64)};
    unsigned char val[SV_MAX], copy[SV_MAX];
    uint64_t k = 7;
    size_t n = sv_make(val, k, 123456);
    pthread_t th;
    pc_pin pin;

    pc_put(ch.c, &k, sizeof k, val, n);
    cr_assert_eq(pc_get_pinned(ch.c, &k, sizeof k, &pin), PC_OK);
    memcpy(copy, pin.value, pin.len);
    pthread_create(&th, NULL, churn_keys, &ch);
    while (!__atomic_load_n(&ch.done, __ATOMIC_ACQUIRE))
        cr_assert_eq(memcmp(pin.value, copy, n), 0,
                     "pinned bytes changed under the pin");
    pthread_join(th, NULL);
    cr_assert_eq(pin.len, n);
    cr_assert(sv_check(pin.value, pin.len, k));
    cr_assert_eq(memcmp(pin.value, copy, n), 0);
    /* Other readers see the current state meanwhile. */
    unsigned char now[SV_MAX];
    size_t nn;
    if (pc_get(ch.c, &k, sizeof k, now, sizeof now, &nn) == PC_OK)
        cr_assert(sv_check(now, nn, k));
    pc_unpin(&pin);
    pc_reclaim(ch.c); /* returns once the pin is gone */
    pc_destroy(ch.c);
}

Test(pinned, pins_nest_and_the_thread_may_write_while_pinned)
{
    pc_cache *c = make_cache(4);
    pc_pin a, b;

    pc_put(c, "a", 1, "1", 1);
    pc_put(c, "b", 1, "2", 1);
    cr_assert_eq(pc_get_pinned(c, "a", 1, &a), PC_OK);
    cr_assert_eq(pc_get_pinned(c, "b", 1, &b), PC_OK);
    for (int i = 0; i < 1000; i++)
        cr_assert_eq(pc_put(c, "a", 1, &i, sizeof i), PC_OK);
    cr_assert_eq(*(const char *)a.value, '1');
    pc_unpin(&b);
    cr_assert_eq(*(const char *)a.value, '1');
    pc_unpin(&a);
    pc_destroy(c);
}

/* pc_reclaim waits for pins without holding a writer lock: a pinned thread
 * that writes while another thread reclaims must not deadlock. */
struct pin_then_write {
    pc_cache *c;
    pthread_barrier_t pinned;
    pc_status put_st;
};

static void *pinner(void *p)
{
    struct pin_then_write *pw = p;
    pc_pin pin;

    if (pc_get_pinned(pw->c, "a", 1, &pin) != PC_OK)
        return NULL;
    pthread_barrier_wait(&pw->pinned);
    usleep(100000); /* let the reclaimer start waiting for this pin */
    pw->put_st = pc_put(pw->c, "b", 1, "2", 1); /* same (only) shard */
    pc_unpin(&pin);
    return NULL;
}

static void *reclaimer(void *p)
{
    struct pin_then_write *pw = p;

    pthread_barrier_wait(&pw->pinned);
    pc_reclaim(pw->c);
    return NULL;
}

Test(pinned, reclaim_waits_for_pins_without_blocking_their_writes,
     .timeout = 60)
{
    pc_options o = test_opts(16);

    o.shards = 1;
    struct pin_then_write pw = {.put_st = PC_EINVAL};
    pthread_t a, b;

    cr_assert_eq(pc_create(&o, &pw.c), PC_OK);
    for (int i = 0; i < 100; i++) /* some garbage to reclaim */
        pc_put(pw.c, "a", 1, &i, sizeof i);
    pthread_barrier_init(&pw.pinned, NULL, 2);
    pthread_create(&a, NULL, pinner, &pw);
    pthread_create(&b, NULL, reclaimer, &pw);
    pthread_join(a, NULL);
    pthread_join(b, NULL);
    cr_assert_eq(pw.put_st, PC_OK);
    pthread_barrier_destroy(&pw.pinned);
    pc_destroy(pw.c);
}
