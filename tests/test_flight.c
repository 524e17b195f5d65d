/*
 * Single flight under the conditions a server meets: loaders that call
 * other loaders from several threads, threads that come and go, and
 * threads that are cancelled.
 *
 * Deadlock detection must follow only flights that are still running. A
 * "waits for" chain that passes through a finished flight leads to that
 * flight's former leader, who may have moved on (a spurious PC_EDEADLK if
 * it is the asking thread itself) or exited (its thread-local record
 * unmapped). To hold a chain in that state on purpose, the test parks a
 * thread that waits for a flight inside a signal handler: the flight
 * finishes, the parked waiter cannot take notice, and the chain stays as
 * it was until the test lets the waiter go.
 */
#define _GNU_SOURCE /* pthread_timedjoin_np */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "testlib.h"

/* ---- parking a thread inside a signal handler ---- */

static sem_t parked, unpark;

static void park_handler(int sig)
{
    (void)sig;
    sem_post(&parked);
    while (sem_wait(&unpark) != 0 && errno == EINTR)
        ;
}

static void park_setup(void)
{
    struct sigaction sa;

    memset(&sa, 0, sizeof sa);
    sa.sa_handler = park_handler;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    cr_assert_eq(sigaction(SIGUSR1, &sa, NULL), 0);
    sem_init(&parked, 0, 0);
    sem_init(&unpark, 0, 0);
}

/* Park th inside the handler; returns once it is there. */
static void park(pthread_t th)
{
    cr_assert_eq(pthread_kill(th, SIGUSR1), 0);
    while (sem_wait(&parked) != 0 && errno == EINTR)
        ;
}

static void *unpark_later(void *p)
{
    usleep((useconds_t)(uintptr_t)p);
    sem_post(&unpark);
    return NULL;
}

/*
 * Wait until n lookups have missed on c (or on memo m, when not NULL):
 * threads that missed are at the flight, or about to be. A test then
 * sleeps a little more before it relies on them waiting there.
 */
static void wait_misses(pc_cache *c, pc_memo *m, uint64_t n)
{
    pc_stats s;

    for (;;) {
        if (m != NULL)
            pc_memo_stats(m, &s);
        else
            pc_stats_get(c, &s);
        if (s.misses >= n)
            return;
        usleep(1000);
    }
}

/* ---- a chain through a finished flight ---- */

/*
 * W leads "f"; f's loader asks for "g", which S leads, and waits. S's
 * loader parks W, so when S finishes g, W still waits for g (done) as far
 * as the flight records go. Then someone asks for "f": its chain is
 * f -> W -> g (done) -> g's former leader S.
 */
struct chain {
    pc_cache *c;
    pthread_t w;
    int w_asking; /* atomic: W is about to ask for g */
    pc_status w_inner, w_outer;
};

static int load_f(void *ctx, const void *key, size_t klen, pc_sink *out)
{
    struct chain *ch = ctx;
    char buf[8];
    size_t n = 0;

    (void)key;
    (void)klen;
    __atomic_store_n(&ch->w_asking, 1, __ATOMIC_RELEASE);
    ch->w_inner =
        pc_get_or_load(ch->c, "g", 1, load_f, ch, buf, sizeof buf, &n, NULL);
    return pc_sink_set(out, "F", 1) == PC_OK ? 0 : 1;
}

static void *w_main(void *p)
{
    struct chain *ch = p;
    char buf[8];

    ch->w_outer =
        pc_get_or_load(ch->c, "f", 1, load_f, ch, buf, sizeof buf, NULL, NULL);
    return NULL;
}

/* S's loader for g: start W, let it wait for g, park it, then finish. */
static int load_g(void *ctx, const void *key, size_t klen, pc_sink *out)
{
    struct chain *ch = ctx;

    (void)key;
    (void)klen;
    cr_assert_eq(pthread_create(&ch->w, NULL, w_main, ch), 0);
    while (!__atomic_load_n(&ch->w_asking, __ATOMIC_ACQUIRE))
        usleep(1000);
    /* Misses, one per call: S's g, W's f, W's g. */
    wait_misses(ch->c, NULL, 3);
    usleep(200000); /* W is now waiting for g */
    park(ch->w);
    return pc_sink_set(out, "G", 1) == PC_OK ? 0 : 1;
}

static pc_status lead_g(struct chain *ch)
{
    char buf[8];

    return pc_get_or_load(ch->c, "g", 1, load_g, ch, buf, sizeof buf, NULL,
                          NULL);
}

/* The asker: W finishes f once it is let go, so this must wait and get F. */
static void ask_f_and_check(struct chain *ch)
{
    pthread_t rel;
    char buf[8] = {0};
    size_t n = 0;

    pthread_create(&rel, NULL, unpark_later, (void *)(uintptr_t)300000);
    cr_assert_eq(
        pc_get_or_load(ch->c, "f", 1, load_f, ch, buf, sizeof buf, &n, NULL),
        PC_OK, "waiting for f can end: W is only slow to notice g is done");
    cr_assert_eq(n, 1);
    cr_assert_eq(buf[0], 'F');
    pthread_join(rel, NULL);
    pthread_join(ch->w, NULL);
    cr_assert_eq(ch->w_inner, PC_OK);
    cr_assert_eq(ch->w_outer, PC_OK);
}

Test(flight, a_finished_flight_ends_the_deadlock_walk, .timeout = 30)
{
    struct chain ch = {.c = make_cache(16)};

    park_setup();
    /* S is this thread: it led g, then asks for f. */
    cr_assert_eq(lead_g(&ch), PC_OK);
    ask_f_and_check(&ch);
    pc_destroy(ch.c);
}

/* S on a stack of our own, unmapped once S has exited: a walk that
 * follows g to its former leader reads unmapped memory. */
#define S_STACK (4u << 20)

static void *s_main(void *p)
{
    cr_assert_eq(lead_g(p), PC_OK);
    return NULL;
}

Test(flight, the_deadlock_walk_never_reads_an_exited_leader, .timeout = 30)
{
    struct chain ch = {.c = make_cache(16)};
    pthread_attr_t attr;
    pthread_t s;
    void *stack;

    park_setup();
    stack = mmap(NULL, S_STACK, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
    cr_assert_neq(stack, MAP_FAILED);
    pthread_attr_init(&attr);
    cr_assert_eq(pthread_attr_setstack(&attr, stack, S_STACK), 0);
    cr_assert_eq(pthread_create(&s, &attr, s_main, &ch), 0);
    pthread_join(s, NULL);
    pthread_attr_destroy(&attr);
    cr_assert_eq(munmap(stack, S_STACK), 0); /* S's thread-local data too */
    ask_f_and_check(&ch);
    pc_destroy(ch.c);
}

/* ---- cancellation ---- */

/* Run fn(arg) on a thread and fail if it has not returned within
 * `seconds`: a call that hangs fails the test instead of the run. */
static void within(double seconds, void *(*fn)(void *), void *arg,
                   const char *what)
{
    struct timespec until;
    pthread_t th;
    int rc;

    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += (time_t)seconds;
    cr_assert_eq(pthread_create(&th, NULL, fn, arg), 0);
    rc = pthread_timedjoin_np(th, NULL, &until);
    if (rc == ETIMEDOUT) {
        fprintf(stderr, "%s: still blocked after %.0f s\n", what, seconds);
        fflush(stderr);
        _exit(1); /* the blocked thread holds what a clean exit needs */
    }
    cr_assert_eq(rc, 0);
}

/*
 * A loader that blocks in a cancellation point until it is let go. It
 * waits on a condition variable: ThreadSanitizer unwinds a cancelled
 * pthread_cond_wait properly, but not every blocking call (cancelled in
 * sem_wait, the thread's later locks go unseen and TSan reports races
 * that are not there).
 */
struct gate {
    pthread_mutex_t m;
    pthread_cond_t cv;
    int entered, open;
    long calls;
};

static void gate_unlock(void *p)
{
    pthread_mutex_unlock(p);
}

static int load_at_gate(void *ctx, const void *key, size_t klen, pc_sink *out)
{
    struct gate *g = ctx;

    (void)key;
    (void)klen;
    pthread_mutex_lock(&g->m);
    g->calls++;
    g->entered++;
    pthread_cond_broadcast(&g->cv);
    pthread_cleanup_push(gate_unlock, &g->m);
    while (!g->open)
        pthread_cond_wait(&g->cv, &g->m); /* a cancellation point */
    pthread_cleanup_pop(1);
    return pc_sink_set(out, "v", 1) == PC_OK ? 0 : 1;
}

static void gate_init(struct gate *g)
{
    pthread_mutex_init(&g->m, NULL);
    pthread_cond_init(&g->cv, NULL);
    g->entered = g->open = 0;
    g->calls = 0;
}

static void gate_wait_entered(struct gate *g)
{
    pthread_mutex_lock(&g->m);
    while (!g->entered)
        pthread_cond_wait(&g->cv, &g->m);
    pthread_mutex_unlock(&g->m);
}

static void gate_open(struct gate *g)
{
    pthread_mutex_lock(&g->m);
    g->open = 1;
    pthread_cond_broadcast(&g->cv);
    pthread_mutex_unlock(&g->m);
}

static long gate_calls(struct gate *g)
{
    long n;

    pthread_mutex_lock(&g->m);
    n = g->calls;
    pthread_mutex_unlock(&g->m);
    return n;
}

enum via { VIA_CACHE, VIA_MEMO };

struct caller {
    enum via via;
    pc_cache *c;
    pc_memo *m;
    struct gate *g;
    const char *key;
    pc_status st;
    int err;
};

static void *call_main(void *p)
{
    struct caller *a = p;
    char buf[8];

    a->err = 0;
    if (a->via == VIA_CACHE)
        a->st = pc_get_or_load(a->c, a->key, strlen(a->key), load_at_gate, a->g,
                               buf, sizeof buf, NULL, &a->err);
    else
        a->st = pc_memo_call(a->m, a->key, strlen(a->key), load_at_gate, a->g,
                             buf, sizeof buf, NULL, &a->err);
    return NULL;
}

static void *fresh_load_of_another_key(void *p)
{
    struct caller a = *(struct caller *)p;
    struct gate g;

    gate_init(&g);
    gate_open(&g);
    a.g = &g;
    a.key = "another";
    call_main(&a);
    cr_assert_eq(a.st, PC_OK);
    return NULL;
}

static void setup_via(struct caller *a, enum via via)
{
    pc_backend be;

    a->via = via;
    a->c = make_cache(16);
    a->m = NULL;
    if (via == VIA_MEMO) {
        cr_assert_eq(pc_backend_from_cache(a->c, &be), PC_OK);
        cr_assert_eq(pc_memo_create(&be, &a->m), PC_OK);
    }
}

static void teardown_via(struct caller *a)
{
    if (a->m != NULL)
        pc_memo_destroy(a->m); /* and the cache */
    else
        pc_destroy(a->c);
}

/* A thread cancelled while it waits for another thread's load must not
 * leave the process-wide flights lock held (pthread_cond_wait re-takes
 * its mutex before acting on the cancellation). */
Test(flight, a_waiter_may_be_cancelled, .timeout = 60)
{
    for (int via = VIA_CACHE; via <= VIA_MEMO; via++) {
        struct gate g;
        struct caller lead, wait;
        pthread_t tl, tw;

        gate_init(&g);
        setup_via(&lead, (enum via)via);
        lead.g = &g;
        lead.key = "k";
        wait = lead;
        cr_assert_eq(pthread_create(&tl, NULL, call_main, &lead), 0);
        gate_wait_entered(&g); /* the leader is inside its loader */
        cr_assert_eq(pthread_create(&tw, NULL, call_main, &wait), 0);
        wait_misses(lead.c, lead.m, 2); /* one per call */
        usleep(100000); /* the waiter now waits for the leader */
        cr_assert_eq(pthread_cancel(tw), 0);
        usleep(50000);
        within(10, fresh_load_of_another_key, &lead,
               "a miss after a waiter was cancelled");
        gate_open(&g);
        pthread_join(tl, NULL);
        pthread_join(tw, NULL);
        cr_assert_eq(lead.st, PC_OK);
        cr_assert_eq(gate_calls(&g), 1);
        teardown_via(&lead);
    }
}

/* A leader cancelled inside its loader completes the flight as failed:
 * its waiters get PC_ELOAD with ECANCELED, nothing is cached, and the
 * next call loads again. */
#define WAITERS 3

static void *join_waiters(void *p)
{
    pthread_t *tw = p;

    for (int i = 0; i < WAITERS; i++)
        pthread_join(tw[i], NULL);
    return NULL;
}

Test(flight, a_leader_cancelled_in_its_loader_fails_its_waiters, .timeout = 60)
{
    for (int via = VIA_CACHE; via <= VIA_MEMO; via++) {
        struct gate g;
        struct caller lead, wait[WAITERS], again;
        pthread_t tl, tw[WAITERS];
        pc_stats s;
        void *ret;

        gate_init(&g);
        setup_via(&lead, (enum via)via);
        lead.g = &g;
        lead.key = "k";
        cr_assert_eq(pthread_create(&tl, NULL, call_main, &lead), 0);
        gate_wait_entered(&g);
        for (int i = 0; i < WAITERS; i++) {
            wait[i] = lead;
            cr_assert_eq(pthread_create(&tw[i], NULL, call_main, &wait[i]), 0);
        }
        /* One miss per call: the leader's and each waiter's. */
        wait_misses(lead.c, lead.m, 1 + WAITERS);
        usleep(100000); /* they wait for the leader */
        cr_assert_eq(pthread_cancel(tl), 0);
        pthread_join(tl, &ret);
        cr_assert_eq(ret, PTHREAD_CANCELED);
        within(10, join_waiters, tw, "waiters of a cancelled leader");
        for (int i = 0; i < WAITERS; i++) {
            cr_assert_eq(wait[i].st, PC_ELOAD, "waiter %d: %d", i, wait[i].st);
            cr_assert_eq(wait[i].err, ECANCELED);
        }
        cr_assert_eq(pc_get(lead.c, "k", 1, NULL, 0, NULL), PC_NOTFOUND);
        again = lead;
        gate_open(&g);
        call_main(&again);
        cr_assert_eq(again.st, PC_OK, "the next call loads again");
        cr_assert_eq(gate_calls(&g), 2);
        if (lead.m != NULL)
            pc_memo_stats(lead.m, &s);
        else
            pc_stats_get(lead.c, &s);
        cr_assert_eq(s.loader_calls, 2);
        cr_assert_eq(s.loader_errors, 1);
        teardown_via(&lead);
    }
}

/* The memoizer calls a user's backend with cancellation disabled
 * (purecache.h, pc_memo_call): a backend whose get is a cancellation point
 * does not act on a request pending when the call begins; the call
 * returns. The thread then disables cancellation and returns, leaving the
 * request unacted upon: acting on it would unwind the thread, which ASan
 * misreports as a stack overflow in its own sigaltstack at thread exit
 * (test_listener's a_listener_is_not_a_cancellation_point does the same). */
struct cancel_backend {
    int gets, puts;
};

static pc_status cb_get(void *self, const void *key, size_t klen, void *buf,
                        size_t bufcap, size_t *vlen)
{
    (void)key, (void)klen, (void)buf, (void)bufcap, (void)vlen;
    ((struct cancel_backend *)self)->gets++;
    pthread_testcancel(); /* as a socket read would be */
    return PC_NOTFOUND;
}

static pc_status cb_put(void *self, const void *key, size_t klen,
                        const void *val, size_t vlen)
{
    (void)key, (void)klen, (void)val, (void)vlen;
    ((struct cancel_backend *)self)->puts++;
    return PC_OK;
}

static pc_status cb_del(void *self, const void *key, size_t klen)
{
    (void)self, (void)key, (void)klen;
    return PC_NOTFOUND;
}

static size_t cb_len(void *self)
{
    (void)self;
    return 0;
}

static const pc_backend_ops cancel_backend_ops = {
    .size = sizeof(pc_backend_ops),
    .get = cb_get,
    .put = cb_put,
    .del = cb_del,
    .len = cb_len,
};

static int no_cancel_point_load(void *ctx, const void *key, size_t klen,
                                pc_sink *out)
{
    (void)ctx, (void)key, (void)klen;
    return pc_sink_set(out, "v", 1) == PC_OK ? 0 : 1;
}

struct cancelled_call {
    pc_memo *m;
    pc_status st;
    int returned;
};

static void *call_cancelled(void *p)
{
    struct cancelled_call *cc = p;
    char buf[8];

    pthread_cancel(pthread_self()); /* pending: deferred cancellation */
    cc->st = pc_memo_call(cc->m, "k", 1, no_cancel_point_load, NULL, buf,
                          sizeof buf, NULL, NULL);
    cc->returned = 1;
    pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, NULL);
    return NULL;
}

Test(flight, a_users_backend_is_called_with_cancellation_disabled,
     .timeout = 30)
{
    struct cancel_backend cb = {0};
    pc_backend be = {.ops = &cancel_backend_ops, .self = &cb};
    struct cancelled_call cc = {.st = PC_EINVAL};
    pthread_t th;
    void *ret = PTHREAD_CANCELED;

    cr_assert_eq(pc_memo_create(&be, &cc.m), PC_OK);
    cr_assert_eq(pthread_create(&th, NULL, call_cancelled, &cc), 0);
    cr_assert_eq(pthread_join(th, &ret), 0);
    cr_assert_null(ret, "the thread was cancelled inside the call");
    cr_assert_eq(cc.returned, 1,
                 "the call was cancelled inside the backend's lookup");
    cr_assert_eq(cc.st, PC_OK);
    cr_assert_geq(cb.gets, 1);
    cr_assert_eq(cb.puts, 1);
    pc_memo_destroy(cc.m);
}

/* pc_reclaim cancelled while it waits for a pinned reader must not leave
 * the cache's reclaim lock held. */
struct pinned_reader {
    pc_cache *c;
    sem_t pinned, release;
};

static void *hold_pin(void *p)
{
    struct pinned_reader *pr = p;
    pc_pin pin;

    cr_assert_eq(pc_get_pinned(pr->c, "a", 1, &pin), PC_OK);
    sem_post(&pr->pinned);
    while (sem_wait(&pr->release) != 0)
        ;
    pc_unpin(&pin);
    return NULL;
}

static void *reclaim_main(void *p)
{
    pc_reclaim(p);
    return NULL;
}

Test(flight, pc_reclaim_may_be_cancelled, .timeout = 60)
{
    struct pinned_reader pr = {.c = make_cache(16)};
    pthread_t holder, rec;

    sem_init(&pr.pinned, 0, 0);
    sem_init(&pr.release, 0, 0);
    for (int i = 0; i < 100; i++) /* garbage to wait for */
        cr_assert_eq(pc_put(pr.c, "a", 1, &i, sizeof i), PC_OK);
    cr_assert_eq(pthread_create(&holder, NULL, hold_pin, &pr), 0);
    sem_wait(&pr.pinned);
    pc_put(pr.c, "a", 1, "x", 1);
    cr_assert_eq(pthread_create(&rec, NULL, reclaim_main, pr.c), 0);
    usleep(100000); /* pc_reclaim now waits for the pin */
    cr_assert_eq(pthread_cancel(rec), 0);
    usleep(50000);
    sem_post(&pr.release);
    pthread_join(holder, NULL);
    pthread_join(rec, NULL);
    within(10, reclaim_main, pr.c, "pc_reclaim after a cancelled one");
    pc_destroy(pr.c);
}

/* The same for a PC_MEMOIZE wrapper: its function runs in the caller's
 * cancellation state; cancelled there, the call fails for its waiters. */
static struct gate memo_gate;

static int64_t gated_value(int64_t x)
{
    pthread_mutex_lock(&memo_gate.m);
    memo_gate.calls++;
    memo_gate.entered++;
    pthread_cond_broadcast(&memo_gate.cv);
    pthread_cleanup_push(gate_unlock, &memo_gate.m);
    while (!memo_gate.open)
        pthread_cond_wait(&memo_gate.cv, &memo_gate.m);
    pthread_cleanup_pop(1);
    return x + 1;
}

static int gated_result(int64_t x, int64_t *out)
{
    *out = gated_value(x);
    return 0;
}

PC_MEMOIZE(gated, int64_t, gated_value, (int64_t x), (x), PC_KEY_I64(x))
PC_MEMOIZE_ERR(gated_err, int64_t, gated_result, (int64_t x), (x),
               PC_KEY_I64(x))

struct memo_caller {
    pc_memo *m;
    bool with_err;
    pc_status st;
    int err;
    int64_t v;
};

static void *memo_call_main(void *p)
{
    struct memo_caller *a = p;

    if (a->with_err)
        a->st = gated_err(a->m, &a->v, &a->err, 1);
    else
        a->st = gated(a->m, &a->v, 1);
    return NULL;
}

Test(flight, a_memoized_function_cancelled_fails_its_waiters, .timeout = 60)
{
    for (int with_err = 0; with_err <= 1; with_err++) {
        struct caller holder;
        struct memo_caller lead, wait[WAITERS], again;
        pthread_t tl, tw[WAITERS];
        void *ret;

        gate_init(&memo_gate);
        setup_via(&holder, VIA_MEMO);
        lead = (struct memo_caller){holder.m, with_err, PC_EINVAL, 0, 0};
        cr_assert_eq(pthread_create(&tl, NULL, memo_call_main, &lead), 0);
        gate_wait_entered(&memo_gate);
        for (int i = 0; i < WAITERS; i++) {
            wait[i] = lead;
            cr_assert_eq(pthread_create(&tw[i], NULL, memo_call_main, &wait[i]),
                         0);
        }
        wait_misses(NULL, holder.m, 1 + WAITERS);
        usleep(100000); /* they wait for the leader */
        cr_assert_eq(pthread_cancel(tl), 0);
        pthread_join(tl, &ret);
        cr_assert_eq(ret, PTHREAD_CANCELED);
        within(10, join_waiters, tw, "waiters of a cancelled memoized call");
        for (int i = 0; i < WAITERS; i++) {
            cr_assert_eq(wait[i].st, PC_ELOAD, "waiter %d: %d", i, wait[i].st);
            if (with_err)
                cr_assert_eq(wait[i].err, ECANCELED);
        }
        again = lead;
        gate_open(&memo_gate);
        memo_call_main(&again);
        cr_assert_eq(again.st, PC_OK);
        cr_assert_eq(again.v, 2);
        cr_assert_eq(gate_calls(&memo_gate), 2);
        teardown_via(&holder);
    }
}
