/*
 * Helpers shared by the Redis suites (test_redis.c, test_redis_faults.c,
 * test_redis_pool.c): time bounds that stretch under sanitizers, a backend
 * made against a throwaway server (server.h), string puts and gets, what
 * the near tier holds, an external client's commands, and a bounded wait
 * on a stats counter.
 *
 * INVAL_BOUND_MS is the bound on the invalidation delay that the tests
 * enforce: a bound past the scheduler's delays (see CO_BOUND_MS), not a
 * timing target. It catches an invalidation that never comes; the delay
 * itself is well under a millisecond on an idle loopback (printed here;
 * purecache-redis-bench measures its median and p99). TIMEOUT_SLACK_NS
 * likewise: a request with a timeout must end, and no sooner than it;
 * how soon after is the scheduler's (a broken timeout never ends).
 *
 * CO_BOUND_MS is the bound of the coherence test, whose six threads (four
 * readers that never sleep long) and two redis-servers outnumber the
 * cores. There, an invalidation waits until the other side's subscriber
 * thread gets a CPU, and the scheduler can keep that runnable thread
 * waiting for hundreds of ms (measured through /proc/thread-self/schedstat
 * with another suite running beside it: up to 560 ms runnable, under 10 ms
 * on CPU), while the near copy it would remove was correct when stored.
 * The bound is set past that: it catches a subscriber that stops, or that
 * falls behind for good, not the scheduler's delays. A lost message or a
 * fill that stored a voided value would be undone by the next write of the
 * key within a millisecond, so no time bound can catch those: the
 * generation protocol's argument (src/redis/near.c) does, and
 * a_fill_that_an_invalidation_overtook_stores_nothing drives it step by
 * step.
 */
#ifndef PC_TEST_REDIS_TESTREDIS_H
#define PC_TEST_REDIS_TESTREDIS_H

#include <criterion/criterion.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "purecache_redis.h"
#include "testthread.h"
#include "redis/backend.h" /* src/: the pool's slots (a fill held back) */
#include "redis/near.h"    /* src/: the fill protocol, driven step by step */
#include "redis/server.h"

/* Time bounds stretch under sanitizers and heavy load: CMake sets
 * PC_TEST_TIME_SCALE for the ASan and TSan trees (1 elsewhere). Only upper
 * bounds stretch. */
static inline unsigned time_scale(void)
{
    const char *e = getenv("PC_TEST_TIME_SCALE");
    int v = e != NULL ? atoi(e) : 1;

    return v >= 1 ? (unsigned)v : 1;
}
#define INVAL_BOUND_MS (1000 * time_scale())
#define CO_BOUND_MS (1000 * time_scale())
#define TIMEOUT_SLACK_NS (1500000000ull * time_scale())

static inline uint64_t now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* A backend to s with options o (its port set here), its near tier (if
 * any) active. */
static inline pc_backend make_with(const struct rs_server *s,
                                   pc_redis_options o)
{
    pc_backend be;

    o.port = s->port;
    cr_assert_eq(pc_redis_backend(&o, &be), PC_OK);
    if (o.near_capacity > 0)
        cr_assert_eq(pc_redis_wait_near(&be, 5000), PC_OK,
                     "near tier never became active");
    return be;
}

static inline pc_backend make(const struct rs_server *s, const char *prefix,
                              size_t near, unsigned tracking,
                              unsigned timeout_ms)
{
    pc_redis_options o = {0};

    o.key_prefix = prefix;
    o.near_capacity = near;
    o.tracking = tracking;
    o.timeout_ms = timeout_ms;
    return make_with(s, o);
}

static inline void destroy(pc_backend *be)
{
    be->ops->destroy(be->self);
}

static inline pc_status put_s(pc_backend *be, const char *k, const char *v)
{
    return be->ops->put(be->self, k, strlen(k), v, strlen(v));
}

/* get as a NUL-terminated string (buf of 256). */
static inline pc_status get_s(pc_backend *be, const char *k, char *buf)
{
    size_t n = 0;
    pc_status st = be->ops->get(be->self, k, strlen(k), buf, 255, &n);

    buf[st == PC_OK ? n : 0] = '\0';
    return st;
}

static inline int near_has(pc_backend *be, const char *k)
{
    char buf[256];
    size_t n;
    pc_status st = pc_redis_near_get(be, k, strlen(k), buf, sizeof buf, &n);

    return st == PC_OK || st == PC_ERANGE; /* ERANGE: present, longer */
}

/*
 * Make sure k has a near copy, reading it again if needed: in broadcast
 * mode this process's own earlier write is echoed back as an invalidation
 * that may undo the first fill after it (one extra miss, never a stale
 * value).
 */
static inline int filled(pc_backend *be, const char *k)
{
    char buf[256];
    uint64_t t0 = now_ns();

    while (!near_has(be, k)) {
        if (now_ns() - t0 > 2000000000ull ||
            be->ops->get(be->self, k, strlen(k), buf, sizeof buf, NULL) !=
                PC_OK)
            return 0;
        usleep(1000);
    }
    return 1;
}

/* Wait until k leaves the near tier; its delay in ms, or -1 past 5 s. */
static inline double wait_evicted(pc_backend *be, const char *k, uint64_t since)
{
    while (near_has(be, k)) {
        if (now_ns() - since > 5000000000ull)
            return -1;
        usleep(50);
    }
    return (double)(now_ns() - since) / 1e6;
}

static inline redisReply *ext(redisContext *c, const char *fmt, const char *a,
                              const char *b)
{
    redisReply *r = redisCommand(c, fmt, a, b);

    cr_assert_not_null(r, "external client: %s", c->errstr);
    return r;
}

/* Wait (a deadlock breaker, not a timing target) until counter field f of
 * be's stats exceeds v; its last value. */
#define STAT_OVER(be, f, v)                                                    \
    ({                                                                         \
        pc_redis_stats st_;                                                    \
        uint64_t t0_ = now_ns();                                               \
        do {                                                                   \
            pc_redis_stats_get((be), &st_);                                    \
        } while (st_.f <= (v) && now_ns() - t0_ < 5000000000ull &&             \
                 usleep(1000) == 0);                                           \
        st_.f;                                                                 \
    })

/* Test `name` in both tracking modes: name_per_key and name_bcast, each
 * calling fn(mode), with Criterion's options (e.g. .timeout = 60). */
#define REDIS_TEST_BOTH_MODES(name, fn, ...)                                   \
    Test(redis, name##_per_key, __VA_ARGS__)                                   \
    {                                                                          \
        fn(PC_REDIS_TRACK_KEYS);                                               \
    }                                                                          \
    Test(redis, name##_bcast, __VA_ARGS__)                                     \
    {                                                                          \
        fn(PC_REDIS_TRACK_BCAST);                                              \
    }

#endif
