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
