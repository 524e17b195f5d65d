/*
 * Epoch domains and thread records at scale: thousands of caches at once,
 * threads that use many caches, caches that come and go under a thread
 * that outlives them, and fork() while other threads hold read sections.
 *
 * Every cache (and memoizer) is an epoch domain, and every thread that
 * calls one gets a record in it. The library finds a thread's records
 * through one process-wide pthread key (domain.h): creating caches never
 * consumes the application's keys, and nothing limits how many exist.
 */
#define _GNU_SOURCE /* pthread_timedjoin_np, RTLD_NEXT */
#include <criterion/criterion.h>
#include <dlfcn.h>
#include <signal.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "alloc.h"
#include "domain.h"
#include "grace.h"
#include "testlib.h"

#define MANY 5000

struct many {
    pc_cache **cs;
    int n;
    pthread_barrier_t start;
    uint64_t bad[2];
};

struct many_arg {
    struct many *mc;
    int id;
};

static void *use_every_cache(void *p)
{
    struct many_arg *a = p;
    struct many *mc = a->mc;
    uint64_t bad = 0;

    pthread_barrier_wait(&mc->start);
    for (int round = 0; round < 2; round++)
        for (int i = 0; i < mc->n; i++) {
            int j = a->id ? mc->n - 1 - i : i; /* opposite orders */
            uint64_t k = (uint64_t)a->id, v = 0;

            bad += put_u64(mc->cs[j], k, (uint64_t)j * 2 + k) != PC_OK;
            bad += get_u64(mc->cs[j], k, &v) != PC_OK;
            bad += v != (uint64_t)j * 2 + k;
        }
    mc->bad[a->id] = bad;
    return NULL;
}

/* Wait for the forked child pid and assert that it exited with status 0;
 * `what` says what its other statuses mean. */
static void wait_child_ok(pid_t pid, const char *what)
{
    int status;

    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child %s %d %s",
              WIFEXITED(status) ? "exited with" : "killed by signal",
              WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status), what);
}

/* One pthread key per cache used to run out at PTHREAD_KEYS_MAX (1024):
 * pc_create failed, and so did the application's own pthread_key_create. */
Test(domain, thousands_of_caches_live_at_once_from_two_threads, .timeout = 300)
{
    struct many mc = {.n = MANY};
    struct many_arg args[2] = {{&mc, 0}, {&mc, 1}};
    pthread_t th[2];
    pthread_key_t key;

    mc.cs = calloc(MANY, sizeof *mc.cs);
    cr_assert_not_null(mc.cs);
    for (int i = 0; i < MANY; i++) {
        pc_options o = {.capacity = 4, .shards = 1};

        cr_assert_eq(pc_create(&o, &mc.cs[i]), PC_OK, "cache %d", i);
    }
    cr_assert_eq(pthread_key_create(&key, NULL), 0,
                 "the application can still create a pthread key");
    pthread_barrier_init(&mc.start, NULL, 2);
    for (int i = 0; i < 2; i++)
        pthread_create(&th[i], NULL, use_every_cache, &args[i]);
    for (int i = 0; i < 2; i++)
        pthread_join(th[i], NULL);
    pthread_barrier_destroy(&mc.start);
    cr_assert_eq(mc.bad[0] + mc.bad[1], 0, "%lu failed calls",
                 (unsigned long)(mc.bad[0] + mc.bad[1]));
    for (int i = 0; i < MANY; i++) {
        uint64_t v = 0;

        cr_assert_eq(get_u64(mc.cs[i], 1, &v), PC_OK);
        cr_assert_eq(v, (uint64_t)i * 2 + 1);
        pc_destroy(mc.cs[i]);
    }
    cr_assert_eq(pthread_key_delete(key), 0);
    free(mc.cs);
}

/* A thread records the caches it uses in a per-thread table. Caches
 * destroyed by other threads leave stale entries, purged when the table
 * fills: a long-lived thread that touches a stream of short-lived caches
 * keeps a small table. */
struct stream {
    pc_cache *c;
    sem_t ready, used;
    int stop;
    size_t max_slots;
    uint64_t bad;
};

static void *touch_each_new_cache(void *p)
{
    struct stream *s = p;

    for (;;) {
        size_t slots;

        while (sem_wait(&s->ready) != 0)
            ;
        if (s->stop)
            break;
        s->bad += put_u64(s->c, 1, 2) != PC_OK;
        slots = pc__domain_thread_slots();
        if (slots > s->max_slots)
            s->max_slots = slots;
        sem_post(&s->used);
    }
    return NULL;
}

Test(domain, a_thread_outliving_many_caches_keeps_a_small_table, .timeout = 300)
{
    struct stream s = {.c = NULL};
    pthread_t th;

    sem_init(&s.ready, 0, 0);
    sem_init(&s.used, 0, 0);
    pthread_create(&th, NULL, touch_each_new_cache, &s);
    for (int i = 0; i < 3000; i++) {
        s.c = make_cache(4);
        cr_assert_not_null(s.c);
        sem_post(&s.ready);
        while (sem_wait(&s.used) != 0)
            ;
        pc_destroy(s.c); /* the worker's entry for it is now stale */
    }
    s.stop = 1;
    sem_post(&s.ready);
    pthread_join(th, NULL);
    cr_assert_eq(s.bad, 0);
    cr_assert_leq(s.max_slots, 16, "table grew to %zu slots", s.max_slots);
}

/* A thread that destroys caches takes their entries out of its table
 * (and the process's map of live domains) without losing the others: its
 * later calls on every cache it still uses find the record it has, and
 * register (allocate) none. The thread uses a scattered sixth of many
 * caches (consecutive ids hash to well-spread slots; these collide), and
 * destroys every other one of those, removing entries from the middle of
 * the table's probe clusters. */
#define SCATTERED 1200

Test(domain, destroying_caches_leaves_the_others_records_in_the_thread_table)
{
    static pc_cache *cs[SCATTERED];
    static int used[SCATTERED];
    int n = 0;
    long live;

    pc__alloc_track(1);
    for (int i = 0; i < SCATTERED; i++) {
        cs[i] = make_cache(4);
        cr_assert_not_null(cs[i]);
        if (mix64((uint64_t)i) % 6 == 0) {
            used[n++] = i;
            get_u64(cs[i], 1, NULL); /* registers this thread */
        }
    }
    cr_assert_gt(n, 100);
    for (int u = 0; u < n; u += 2) {
        pc_destroy(cs[used[u]]);
        cs[used[u]] = NULL;
    }
    live = pc__alloc_live();
    for (int round = 0; round < 2; round++)
        for (int u = 1; u < n; u += 2)
            get_u64(cs[used[u]], 1, NULL); /* its record: no allocation */
    cr_assert_eq(pc__alloc_live(), live,
                 "%ld allocations more: records registered again",
                 pc__alloc_live() - live);
    for (int i = 0; i < SCATTERED; i++)
        if (cs[i] != NULL)
            pc_destroy(cs[i]);
    pc__alloc_track(0);
}

/* "The thread that destroys a domain removes its own entry at once (and
 * frees its table when that leaves it empty)" (domain.h): a thread that
 * used one cache and destroyed it holds no table. */
static void *use_and_destroy_one_cache(void *p)
{
    pc_cache *c = make_cache(4);
    size_t *slots = p;
    uint64_t v;

    cr_assert_not_null(c);
    cr_assert_eq(put_u64(c, 1, 2), PC_OK);
    cr_assert_eq(get_u64(c, 1, &v), PC_OK); /* a read registers */
    slots[0] = pc__domain_thread_slots();
    pc_destroy(c);
    slots[1] = pc__domain_thread_slots();
    return NULL;
}

Test(domain, destroying_the_only_cache_a_thread_used_frees_its_table)
{
    size_t slots[2] = {0, 0};
    pthread_t th;

    cr_assert_eq(pthread_create(&th, NULL, use_and_destroy_one_cache, slots),
                 0);
    pthread_join(th, NULL);
    cr_assert_gt(slots[0], 0, "the thread had no table while using the cache");
    cr_assert_eq(slots[1], 0,
                 "the thread's table (%zu slots) outlived its "
                 "only cache",
                 slots[1]);
}

/* Thread exit releases the thread's record in every cache it used, for
 * the next thread to recycle: no allocation grows per thread. */
#define SEVERAL 300

static void *use_several(void *p)
{
    pc_cache **cs = p;

    for (int i = 0; i < SEVERAL; i++)
        get_u64(cs[i], 1, NULL); /* registers, allocates nothing else */
    return NULL;
}

Test(domain, exiting_threads_release_their_records_in_every_cache)
{
    pc_cache *cs[SEVERAL];
    long after_first = 0;

    pc__alloc_track(1);
    long base = pc__alloc_live();
    for (int i = 0; i < SEVERAL; i++)
        cs[i] = make_cache(4);
    for (int round = 0; round < 20; round++) {
        pthread_t th;

        pthread_create(&th, NULL, use_several, cs);
        pthread_join(th, NULL);
        if (round == 0)
            after_first = pc__alloc_live();
    }
    cr_assert_eq(pc__alloc_live(), after_first,
                 "each thread's records were recycled by the next");
    for (int i = 0; i < SEVERAL; i++)
        pc_destroy(cs[i]);
    cr_assert_eq(pc__alloc_live(), base, "%ld allocations leaked",
                 pc__alloc_live() - base);
    pc__alloc_track(0);
}

/* "Counters summed over all threads" (pc_stats): a thread's counts outlive
 * it, also once the next thread has recycled its record. */
static void *hit_and_miss(void *p)
{
    pc_cache *c = p;
    uint64_t v;

    for (int i = 0; i < 3; i++)
        cr_assert_eq(get_u64(c, 1, &v), PC_OK);
    for (int i = 0; i < 2; i++)
        cr_assert_eq(get_u64(c, 2, &v), PC_NOTFOUND);
    return NULL;
}

Test(domain, an_exited_threads_counts_stay_in_the_stats)
{
    pc_cache *c = make_cache(4);
    pc_stats st;

    cr_assert_eq(put_u64(c, 1, 1), PC_OK);
    for (int round = 1; round <= 3; round++) {
        pthread_t th;

        cr_assert_eq(pthread_create(&th, NULL, hit_and_miss, c), 0);
        pthread_join(th, NULL); /* the next one recycles its record */
        cr_assert_eq(pc_stats_get(c, &st), PC_OK);
        cr_assert_eq(st.hits, 3u * round, "hits %lu after %d threads",
                     (unsigned long)st.hits, round);
        cr_assert_eq(st.misses, 2u * round, "misses %lu after %d threads",
                     (unsigned long)st.misses, round);
    }
    pc_destroy(c);
}

/* The same with each thread started before the previous one exits, so
 * that it cannot have the exited thread's pthread_t: the record it
 * recycles must become its own, for its exit to release it in turn. */
struct relay {
    pc_cache **cs;
    sem_t go;
};

static void *use_several_when_told(void *p)
{
    struct relay *r = p;

    while (sem_wait(&r->go) != 0)
        ;
    return use_several(r->cs);
}

Test(domain, a_recycled_record_is_released_by_its_new_owners_exit)
{
    pc_cache *cs[SEVERAL];
    struct relay relay[2];
    pthread_t th[2];
    long after_first = 0;

    pc__alloc_track(1);
    for (int i = 0; i < SEVERAL; i++)
        cs[i] = make_cache(4);
    for (int i = 0; i < 2; i++) {
        relay[i].cs = cs;
        sem_init(&relay[i].go, 0, 0);
    }
    cr_assert_eq(pthread_create(&th[0], NULL, use_several_when_told, &relay[0]),
                 0);
    for (int round = 0; round < 20; round++) {
        int cur = round & 1, next = cur ^ 1;

        /* The next thread exists before the current one exits. */
        cr_assert_eq(pthread_create(&th[next], NULL, use_several_when_told,
                                    &relay[next]),
                     0);
        sem_post(&relay[cur].go);
        pthread_join(th[cur], NULL);
        if (round == 0)
            after_first = pc__alloc_live();
    }
    sem_post(&relay[0].go); /* (round 19 started th[0]) */
    pthread_join(th[0], NULL);
    cr_assert_eq(pc__alloc_live(), after_first,
                 "%ld allocations more: recycled records were not released",
                 pc__alloc_live() - after_first);
    for (int i = 0; i < SEVERAL; i++)
        pc_destroy(cs[i]);
    pc__alloc_track(0);
}

/* ---- fork() while another thread holds a read section ---- */

struct pin_holder {
    pc_cache *c[2];
    sem_t pinned, release;
};

static void *pin_both(void *p)
{
    struct pin_holder *h = p;
    pc_pin pin[3];

    cr_assert_eq(pc_get_pinned(h->c[0], "a", 1, &pin[0]), PC_OK);
    cr_assert_eq(pc_get_pinned(h->c[0], "a", 1, &pin[1]), PC_OK); /* nested */
    cr_assert_eq(pc_get_pinned(h->c[1], "a", 1, &pin[2]), PC_OK);
    sem_post(&h->pinned);
    while (sem_wait(&h->release) != 0)
        ;
    for (int i = 2; i >= 0; i--)
        pc_unpin(&pin[i]);
    return NULL;
}

/* In the child: reclaim (waits for no reader: the pinning thread does not
 * exist here), then use the caches. Exit status 0 when all went well. */
static int child_uses_caches(pc_cache *c[2])
{
    int bad = 0;

    alarm(10); /* a hang kills the child instead of the run */
    for (int i = 0; i < 2; i++) {
        uint64_t v = 0;

        pc_reclaim(c[i]);
        for (uint64_t k = 0; k < 32; k++) /* capacity 64: no eviction */
            bad += put_u64(c[i], k, k + 1) != PC_OK;
        for (uint64_t k = 0; k < 32; k++)
            bad += get_u64(c[i], k, &v) != PC_OK || v != k + 1;
        pc_reclaim(c[i]);
        pc_destroy(c[i]);
    }
    return bad == 0 ? 0 : 2;
}

Test(domain, a_fork_child_reclaims_past_the_parents_pins, .timeout = 120)
{
    struct pin_holder h;
    pthread_t th;
    pid_t pid;

    for (int i = 0; i < 2; i++) {
        h.c[i] = make_cache(64);
        for (int v = 0; v < 100; v++) /* garbage for pc_reclaim */
            cr_assert_eq(pc_put(h.c[i], "a", 1, &v, sizeof v), PC_OK);
    }
    sem_init(&h.pinned, 0, 0);
    sem_init(&h.release, 0, 0);
    pthread_create(&th, NULL, pin_both, &h);
    while (sem_wait(&h.pinned) != 0)
        ;
    for (int i = 0; i < 2; i++) /* retired while pinned */
        cr_assert_eq(pc_put(h.c[i], "a", 1, "x", 1), PC_OK);
    pid = fork();
    cr_assert_neq(pid, -1);
    if (pid == 0)
        _exit(child_uses_caches(h.c));
    wait_child_ok(pid, "(a hang ends in SIGALRM, 14)");
    sem_post(&h.release);
    pthread_join(th, NULL);
    for (int i = 0; i < 2; i++) {
        pc_reclaim(h.c[i]); /* the parent's pins are gone too */
        pc_destroy(h.c[i]);
    }
}

/* The child handler releases the records of the threads fork() left
 * behind, not the forking thread's own, which it goes on using: a thread
 * started in the child gets a record of its own. (Handed the forking
 * thread's, the two would share one `active` count: one's read_leave
 * would end the other's read section, and a grace period would no longer
 * wait for it.) */
static struct pc__domain fork_dom;
static struct pc__record *new_threads_record;

static void *register_in_fork_dom(void *p)
{
    (void)p;
    new_threads_record = pc__domain_record(&fork_dom);
    return NULL;
}

Test(domain, a_fork_child_keeps_the_forking_threads_own_record, .timeout = 60)
{
    struct pc__record *mine;
    pid_t pid;

    cr_assert(pc__domain_init(&fork_dom));
    mine = pc__domain_record(&fork_dom);
    cr_assert_not_null(mine);
    pid = fork();
    cr_assert_neq(pid, -1);
    if (pid == 0) {
        pthread_t th;

        alarm(10); /* a hang kills the child instead of the run */
        if (pthread_create(&th, NULL, register_in_fork_dom, NULL) != 0)
            _exit(3);
        pthread_join(th, NULL);
        _exit(new_threads_record == NULL             ? 3
              : new_threads_record == mine           ? 2
              : pc__domain_record(&fork_dom) != mine ? 4
                                                     : 0);
    }
    wait_child_ok(pid, "(2: a thread of the child was handed the "
                       "forking thread's record)");
    pc__domain_fini(&fork_dom);
}

/* "one that was inside a read section would otherwise block every grace
 * period there" (domain.h, fork()): a thread of the parent inside a read
 * section when another forks, the child's grace periods do not wait for
 * it, and its record is free for the child's threads to recycle. */
static sem_t section_entered, section_release;
static struct pc__record *section_record;

static void *hold_a_section(void *p)
{
    (void)p;
    section_record = pc__domain_record(&fork_dom);
    cr_assert_not_null(section_record);
    pc__read_enter(section_record);
    sem_post(&section_entered);
    while (sem_wait(&section_release) != 0)
        ;
    pc__read_leave(section_record);
    return NULL;
}

Test(domain, a_fork_child_releases_a_section_another_thread_held, .timeout = 60)
{
    pthread_t holder;
    pid_t pid;

    cr_assert(pc__domain_init(&fork_dom));
    sem_init(&section_entered, 0, 0);
    sem_init(&section_release, 0, 0);
    cr_assert_eq(pthread_create(&holder, NULL, hold_a_section, NULL), 0);
    while (sem_wait(&section_entered) != 0)
        ;
    pid = fork();
    cr_assert_neq(pid, -1);
    if (pid == 0) {
        pthread_t th;

        alarm(10); /* a hang kills the child instead of the run */
        if (!pc__grace_wait(&fork_dom))
            _exit(3);
#ifdef PC_TSAN_CRITERION_SHIM_H /* TSan starts no thread after such a fork */
        (void)th;
        _exit(0);
#else
        if (pthread_create(&th, NULL, register_in_fork_dom, NULL) != 0)
            _exit(3);
        pthread_join(th, NULL);
        _exit(new_threads_record == section_record ? 0 : 2);
#endif
    }
    wait_child_ok(pid, "(a hang in the grace period ends in SIGALRM, 14; "
                       "2: the gone thread's record was not recycled)");
    sem_post(&section_release);
    pthread_join(holder, NULL);
    pc__domain_fini(&fork_dom);
}

/* ---- process-wide set-up ---- */

/* key's one-byte value, or 0 if it is not there */
static char get1(pc_cache *c, const char *key)
{
    char b[8];
    size_t n = 0;

    return pc_get(c, key, 1, b, sizeof b, &n) == PC_OK && n == 1 ? b[0] : 0;
}

/* The process's one pthread key is made with its first cache. If every
 * key is taken at that moment, that cache fails with PC_ENOMEM, and the
 * next pc_create tries again: the shortage is not the process's for good
 * (it was, under pthread_once: every later pc_create failed). Criterion
 * runs each test in its own process, so no cache exists yet here. */
Test(domain, a_transient_key_shortage_does_not_disable_the_library_for_good)
{
    static pthread_key_t keys[PTHREAD_KEYS_MAX];
    int n = 0;
    pc_options o = test_opts(16);
    pc_cache *c = NULL;

    while (n < PTHREAD_KEYS_MAX && pthread_key_create(&keys[n], NULL) == 0)
        n++;
#ifndef PC_TSAN_CRITERION_SHIM_H /* (one process for all tests: made) */
    cr_assert_eq(pc_create(&o, &c), PC_ENOMEM, "no key left: ENOMEM");
    cr_assert_null(c, "*out untouched on failure");
#endif
    for (int i = 0; i < n; i++)
        pthread_key_delete(keys[i]);
    cr_assert_eq(pc_create(&o, &c), PC_OK,
                 "keys are free again, so pc_create succeeds");
    cr_assert_eq(pc_put(c, "k", 1, "v", 1), PC_OK);
    cr_assert_eq(get1(c, "k"), 'v');
    pc_destroy(c);
}

/* purecache registers its fork handlers when it loads, so an application's
 * handlers registered later run their prepare before ours and their child
 * handler after ours: both may call a cache. Registered with the first
 * cache, ours ran first, held the live lock and every registry lock, and
 * an application prepare handler's pc_stats_get waited for ever (fork()
 * never returned). The prepare handler here also takes a thread's first
 * read of the cache (registry lock) and puts with a time to live (the
 * ticker's locks); the child handler reads and reclaims. */
static pc_cache *atfork_cache;
static int atfork_child_ok; /* the child's exit status */

static void app_prepare(void)
{
    pc_stats s;
    char b[8];
    pc_put_args a = {.ttl_ms = 60000};

    if (atfork_cache != NULL) {
        (void)pc_stats_get(atfork_cache, &s);
        (void)pc_get(atfork_cache, "k", 1, b, sizeof b, NULL);
        (void)pc_put_ex(atfork_cache, "t", 1, "w", 1, &a);
    }
}

static void app_child(void)
{
    char b[8];
    size_t n = 0;

    if (atfork_cache != NULL) {
        atfork_child_ok =
            pc_get(atfork_cache, "t", 1, b, sizeof b, &n) == PC_OK && n == 1;
        pc_reclaim(atfork_cache);
    }
}

static void *fork_and_reap(void *p)
{
    int *status = p;
    pid_t pid = fork();

    if (pid == 0)
        _exit(atfork_child_ok ? 0 : 3);
    if (pid > 0 && waitpid(pid, status, 0) != pid)
        *status = -1;
    return NULL;
}

/* Run fn (a fork and its reaping) on a thread of its own; whether it
 * ended within 20 s (a deadlock breaker, not a timing target). */
static bool forked_from_a_thread(void *(*fn)(void *), int *status)
{
    pthread_t th;
    struct timespec ts;

    cr_assert_eq(pthread_create(&th, NULL, fn, status), 0);
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += 20;
    return pthread_timedjoin_np(th, NULL, &ts) == 0;
}

Test(domain, application_fork_handlers_may_call_the_cache, .timeout = 60)
{
    int status = -1;

    cr_assert_eq(pthread_atfork(app_prepare, NULL, app_child), 0);
    atfork_cache = make_cache(16);
    cr_assert_eq(pc_put(atfork_cache, "k", 1, "v", 1), PC_OK);
    cr_assert(forked_from_a_thread(fork_and_reap, &status),
              "fork() hung: the application's prepare handler waits for "
              "a lock purecache's own prepare handler holds");
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0,
              "the child's handler read the key the prepare handler put "
              "(status %d)",
              status);
    cr_assert_eq(get1(atfork_cache, "t"), 'w');
    pc_destroy(atfork_cache);
}

/* The same from a handler the program registers in a constructor of its
 * own (unprioritised). The suites link the library statically, where the
 * linker runs the program's objects' constructors in input order, the
 * program's first: the library's register its handlers from constructors
 * of priority 101, which run before every unprioritised one. Without the
 * priority the program's handler was registered first, its prepare ran
 * after purecache's, and fork() hung (helper-77's reproducer). */
static pc_cache *ctor_cache;

static void ctor_prepare(void)
{
    pc_stats s;

    if (ctor_cache != NULL)
        (void)pc_stats_get(ctor_cache, &s);
}

__attribute__((constructor)) static void register_ctor_prepare(void)
{
    (void)pthread_atfork(ctor_prepare, NULL, NULL);
}

static void *fork_and_reap_plain(void *p)
{
    int *status = p;
    pid_t pid = fork();

    if (pid == 0)
        _exit(0);
    if (pid > 0 && waitpid(pid, status, 0) != pid)
        *status = -1;
    return NULL;
}

Test(domain, a_programs_constructor_fork_handler_may_call_the_cache,
     .timeout = 60)
{
    int status = -1;

    ctor_cache = make_cache(16);
    cr_assert(forked_from_a_thread(fork_and_reap_plain, &status),
              "fork() hung: a handler the program registered in a "
              "constructor ran after purecache's prepare handler");
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    pc_destroy(ctor_cache);
    ctor_cache = NULL;
}

#ifndef PC_TSAN_CRITERION_SHIM_H /* (interposes a libc call TSan wraps) */
/* A fork() while another thread makes the process's key (the library's
 * first cache, init_lock held) must not leave the child's first pc_create
 * waiting for ever on an init_lock no thread there will release (the
 * child handler starts it afresh; pthread_once, before, was fork-safe in
 * glibc). pthread_key_create is interposed to fork from another thread
 * just there; the child's pc_create runs under a 10 s alarm, a deadlock
 * breaker. Criterion runs each test in its own process: this one makes
 * the first cache. (helper-77's reproducer.) */
static sem_t key_go, key_done;
static int key_armed, key_calls, key_child_status = -1;

int pthread_key_create(pthread_key_t *k, void (*dtor)(void *))
{
    int (*real)(pthread_key_t *, void (*)(void *)) =
        (int (*)(pthread_key_t *, void (*)(void *)))dlsym(RTLD_NEXT,
                                                          "pthread_key_create");

    if (__atomic_load_n(&key_armed, __ATOMIC_ACQUIRE) &&
        __atomic_fetch_add(&key_calls, 1, __ATOMIC_RELAXED) == 0) {
        sem_post(&key_go);
        while (sem_wait(&key_done) != 0)
            ;
    }
    return real(k, dtor);
}

static void *fork_at_key_creation(void *p)
{
    pid_t pid;

    (void)p;
    while (sem_wait(&key_go) != 0)
        ;
    pid = fork();
    if (pid == 0) {
        pc_options o = test_opts(16);
        pc_cache *c;

        alarm(10);
        _exit(pc_create(&o, &c) == PC_OK ? 0 : 2);
    }
    if (pid > 0)
        waitpid(pid, &key_child_status, 0);
    sem_post(&key_done);
    return NULL;
}

Test(domain, a_fork_while_the_key_is_made_leaves_the_child_able_to_create,
     .timeout = 60)
{
    pthread_t th;
    pc_options o = test_opts(16);
    pc_cache *c = NULL;

    sem_init(&key_go, 0, 0);
    sem_init(&key_done, 0, 0);
    cr_assert_eq(pthread_create(&th, NULL, fork_at_key_creation, NULL), 0);
    __atomic_store_n(&key_armed, 1, __ATOMIC_RELEASE);
    cr_assert_eq(pc_create(&o, &c), PC_OK);
    __atomic_store_n(&key_armed, 0, __ATOMIC_RELEASE);
    cr_assert_gt(key_calls, 0, "the library made no key: nothing tested");
    pthread_join(th, NULL);
    cr_assert(!(WIFSIGNALED(key_child_status) &&
                WTERMSIG(key_child_status) == SIGALRM),
              "the child's pc_create hung on the inherited init_lock");
    cr_assert(WIFEXITED(key_child_status) && WEXITSTATUS(key_child_status) == 0,
              "child status %d", key_child_status);
    pc_destroy(c);
}
#endif

#ifdef PC_TEST_SHARED_LIB
/* ---- a thread that outlives the library it used ----
 *
 * A plug-in (or the benchmark's harness) dlopens libpurecache, uses a
 * cache from one of its threads, destroys it and dlcloses the library;
 * the thread then exits. Both of the library's pthread keys (the threads'
 * tables of records, domain.c; the magazine of freed blocks, alloc.c)
 * still hold a value for that thread, so glibc calls their destructors,
 * which must not be code that dlclose unmapped. Here the thread even
 * destroyed the cache itself, which the header says returns what it kept
 * ("returned ... by pc_destroy on that thread"). */
static void *use_unloaded_library(void *p)
{
    void *dl = dlopen(p, RTLD_NOW | RTLD_LOCAL);
    pc_status (*create)(const pc_options *, pc_cache **);
    pc_status (*put)(pc_cache *, const void *, size_t, const void *, size_t);
    pc_status (*get)(pc_cache *, const void *, size_t, void *, size_t,
                     size_t *);
    void (*destroy)(pc_cache *);
    pc_options o = {.capacity = 4};
    pc_cache *c;
    uint64_t v;
    size_t n;

    cr_assert_not_null(dl, "%s", dlerror());
    *(void **)&create = dlsym(dl, "pc_create");
    *(void **)&put = dlsym(dl, "pc_put");
    *(void **)&get = dlsym(dl, "pc_get");
    *(void **)&destroy = dlsym(dl, "pc_destroy");
    cr_assert(create && put && get && destroy);
    cr_assert_eq(create(&o, &c), PC_OK);
    for (uint64_t k = 0; k < 100; k++) /* evicts: frees entries */
        cr_assert_eq(put(c, &k, sizeof k, &k, sizeof k), PC_OK);
    cr_assert_eq(get(c, &(uint64_t){99}, 8, &v, sizeof v, &n), PC_OK);
    destroy(c);
    cr_assert_eq(dlclose(dl), 0);
    return NULL; /* the keys' destructors run after this */
}

Test(domain, a_thread_may_exit_after_the_library_it_used_is_unloaded,
     .timeout = 60)
{
    pid_t pid = fork(); /* a crash kills the child, not the run */

    cr_assert_neq(pid, -1);
    if (pid == 0) {
        pthread_t th;

        alarm(30);
        if (pthread_create(&th, NULL, use_unloaded_library,
                           (void *)PC_TEST_SHARED_LIB) != 0)
            _exit(3);
        pthread_join(th, NULL);
        _exit(0);
    }
    wait_child_ok(pid, "(a signal: a key destructor ran unmapped code)");
}
#endif
