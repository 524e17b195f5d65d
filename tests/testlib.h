/*
 * Helpers shared by the test suites: integer keys, self-validating values,
 * and the policy this executable was built against.
 */
#ifndef PC_TESTLIB_H
#define PC_TESTLIB_H

#include <dirent.h>
#include <pthread.h>
#include <sched.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include "purecache.h"
#include "testthread.h"

/* The suite's policy: "clock" and "frequency" link the CLOCK build (the
 * latter asks for PC_POLICY_FREQUENCY in every pc_options it makes), "lru"
 * the exact-LRU build. */
static inline bool is_lru(void)
{
    return strcmp(PC_TEST_POLICY, "lru") == 0;
}

static inline bool is_frequency(void)
{
    return strcmp(PC_TEST_POLICY, "frequency") == 0;
}

/* Options for this suite's policy: start from these, then set fields. */
static inline pc_options test_opts(size_t capacity)
{
    pc_options o = {0};

    o.capacity = capacity;
    o.policy = is_frequency() ? PC_POLICY_FREQUENCY : PC_POLICY_DEFAULT;
    return o;
}

static inline pc_cache *make_cache_opts(const pc_options *o)
{
    pc_cache *c = NULL;

    if (pc_create(o, &c) != PC_OK)
        return NULL;
    return c;
}

static inline pc_cache *make_cache(size_t capacity)
{
    pc_options o = test_opts(capacity);

    return make_cache_opts(&o);
}

/* A memoizer over a cache of `capacity` of this suite's policy, which it
 * owns (pc_memo_destroy destroys both); NULL if either cannot be made. */
static inline pc_memo *make_memo(size_t capacity)
{
    pc_cache *c = make_cache(capacity);
    pc_backend be;
    pc_memo *m = NULL;

    if (c == NULL || pc_backend_from_cache(c, &be) != PC_OK ||
        pc_memo_create(&be, &m) != PC_OK) {
        pc_destroy(c);
        return NULL;
    }
    return m;
}

/* A clock the tests drive (pc_options.now_ms). */
static uint64_t test_clock_ms = 1000;

static inline uint64_t test_now(void *ctx)
{
    (void)ctx;
    return __atomic_load_n(&test_clock_ms, __ATOMIC_RELAXED);
}

static inline void test_advance(uint64_t ms)
{
    __atomic_add_fetch(&test_clock_ms, ms, __ATOMIC_RELAXED);
}

/* The threads of this process named as the ticker names its thread
 * (pc-ticker): how many, and the id of one in *tid if tid is not NULL
 * (one joined a moment ago may linger in /proc); -1 if /proc cannot be
 * read. */
static inline int test_ticker_threads(pid_t *tid)
{
    DIR *d = opendir("/proc/self/task");
    struct dirent *e;
    int n = 0;

    if (d == NULL)
        return -1;
    while ((e = readdir(d)) != NULL) {
        char path[288], comm[32] = "";
        FILE *f;

        if (e->d_name[0] == '.')
            continue;
        snprintf(path, sizeof path, "/proc/self/task/%s/comm", e->d_name);
        f = fopen(path, "r");
        if (f == NULL)
            continue; /* the thread just exited */
        if (fgets(comm, sizeof comm, f) != NULL &&
            strcmp(comm, "pc-ticker\n") == 0) {
            n++;
            if (tid != NULL)
                *tid = (pid_t)atoi(e->d_name);
        }
        fclose(f);
    }
    closedir(d);
    return n;
}

/* A debug hook's stall: once armed, the next thread through the hook
 * says it entered and waits until released. */
struct stall {
    int armed, entered, release;
};

static inline void stall_at(struct stall *st)
{
    if (!__atomic_exchange_n(&st->armed, 0, __ATOMIC_ACQ_REL))
        return;
    __atomic_store_n(&st->entered, 1, __ATOMIC_RELEASE);
    while (!__atomic_load_n(&st->release, __ATOMIC_ACQUIRE))
        sched_yield();
}

static inline pc_status put_u64(pc_cache *c, uint64_t k, uint64_t v)
{
    return pc_put(c, &k, sizeof k, &v, sizeof v);
}

static inline pc_status get_u64(pc_cache *c, uint64_t k, uint64_t *v)
{
    size_t n = 0;
    uint64_t tmp = 0;
    pc_status st = pc_get(c, &k, sizeof k, &tmp, sizeof tmp, &n);

    if (st == PC_OK && v != NULL)
        *v = tmp;
    return st;
}

static inline uint64_t mix64(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    return x ^ (x >> 33);
}

/*
 * A self-validating value: 16-byte header (key, version) followed by
 * filler bytes derived from both, of a length derived from both. A torn or
 * misdirected value fails sv_check.
 */
#define SV_MAX 256

static inline size_t sv_make(unsigned char *buf, uint64_t key, uint64_t ver)
{
    uint64_t seed = mix64(key * 31 + ver);
    size_t len = 16 + (size_t)(seed % (SV_MAX - 16));

    memcpy(buf, &key, 8);
    memcpy(buf + 8, &ver, 8);
    for (size_t i = 16; i < len; i++)
        buf[i] = (unsigned char)(mix64(seed + i) & 0xff);
    return len;
}

static inline bool sv_check(const unsigned char *buf, size_t len, uint64_t key)
{
    unsigned char want[SV_MAX];
    uint64_t k, ver;

    if (len < 16 || len > SV_MAX)
        return false;
    memcpy(&k, buf, 8);
    memcpy(&ver, buf + 8, 8);
    if (k != key)
        return false;
    return sv_make(want, key, ver) == len && memcmp(want, buf, len) == 0;
}

static inline double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* A gate a hooked call (a loader, a backend) stops at until the test lets
 * it go: test_gate_pass in the hooked call says it is there and waits;
 * the test waits until n calls are there (test_gate_wait) and then opens
 * the gate (test_gate_open), for every later pass too. */
struct test_gate {
    pthread_mutex_t m;
    pthread_cond_t cv;
    int entered, go;
};

#define TEST_GATE_INIT                                                         \
    {                                                                          \
        PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0              \
    }

static inline void test_gate_pass(struct test_gate *g)
{
    pthread_mutex_lock(&g->m);
    g->entered++;
    pthread_cond_broadcast(&g->cv);
    while (!g->go)
        pthread_cond_wait(&g->cv, &g->m);
    pthread_mutex_unlock(&g->m);
}

static inline void test_gate_wait(struct test_gate *g, int n)
{
    pthread_mutex_lock(&g->m);
    while (g->entered < n)
        pthread_cond_wait(&g->cv, &g->m);
    pthread_mutex_unlock(&g->m);
}

static inline void test_gate_open(struct test_gate *g)
{
    pthread_mutex_lock(&g->m);
    g->go = 1;
    pthread_cond_broadcast(&g->cv);
    pthread_mutex_unlock(&g->m);
}

/* Poll `stats` of obj (pc_stats_get, pc_memo_stats) until it counts n
 * misses, at most 10 s (a failure detector, not a timing target), and
 * return the last count: a caller that joins a load counts its miss under
 * the flight table's lock, which it holds until it waits on the flight. */
#define TEST_WAIT_MISSES(stats, obj, n)                                        \
    ({                                                                         \
        pc_stats s_ = {0};                                                     \
        for (int i_ = 0; i_ < 10000; i_++) {                                   \
            if ((stats)((obj), &s_) == PC_OK && s_.misses >= (n))              \
                break;                                                         \
            usleep(1000);                                                      \
        }                                                                      \
        s_.misses;                                                             \
    })

/* The soaks' run (test_soak*.c): `secs` is PC_SOAK_SECONDS (default 10) per
 * policy, which its configurations share; a monitor and one worker per
 * online CPU (2 to max_workers) run on arg, the workers until they see
 * their time is up; then *stop is set and the monitor joined. */
static inline double soak_seconds(void)
{
    const char *env = getenv("PC_SOAK_SECONDS");

    return env ? atof(env) : 10.0;
}

#define SOAK_MAX_WORKERS 16

static inline void soak_run(void *(*worker)(void *), void *(*monitor)(void *),
                            void *arg, int *stop)
{
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    int nw = cpus < 2                  ? 2
             : cpus > SOAK_MAX_WORKERS ? SOAK_MAX_WORKERS
                                       : (int)cpus;
    pthread_t w[SOAK_MAX_WORKERS], mon;

    pthread_create(&mon, NULL, monitor, arg);
    for (int i = 0; i < nw; i++)
        pthread_create(&w[i], NULL, worker, arg);
    for (int i = 0; i < nw; i++)
        pthread_join(w[i], NULL);
    __atomic_store_n(stop, 1, __ATOMIC_RELAXED);
    pthread_join(mon, NULL);
}

/* Allocations the library made and has not freed since `before`. */
long pc__alloc_live(void);
static inline long pc_alloc_live_delta(long before)
{
    return pc__alloc_live() - before;
}

#endif
