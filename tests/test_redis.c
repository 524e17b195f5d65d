/*
 * The Redis tier (include/purecache_redis.h) against a real redis-server
 * that each test starts on a free loopback port (tests/redis/server.h) and
 * kills at its end: what it promises while the server is up. The near
 * tier's fill protocol, step by step (no server); options and argument
 * checking; write-through and read-back, values larger than a socket
 * buffer and keys up to PC_KEY_MAX; an external client's SET / DEL /
 * FLUSHALL / expiry evicting the near copy within INVAL_BOUND_MS (measured
 * and printed); ttls and conditions; two backends ("two servers") staying
 * coherent under concurrent writes (no read returns a version older than
 * one acknowledged CO_BOUND_MS before the read began); the stats; the
 * memoizer over the backend. Each near-tier test runs in both tracking
 * modes (per-key and BCAST). Outages, deadlines and error replies are in
 * test_redis_faults.c, the connection pool in test_redis_pool.c; the
 * bounds are explained in tests/redis/testredis.h.
 */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "redis/testredis.h"

/* ---- the near tier's fill protocol, step by step (no server) ---- */

static int near_holds(struct pc__near *n, const char *k, const char *want)
{
    char buf[64];
    size_t len = 0;

    return pc__near_read(n, k, strlen(k), buf, sizeof buf, &len) == PC_OK &&
           len == strlen(want) && memcmp(buf, want, len) == 0;
}

/* A fill: begin (before the GET), `between` (what happens while the GET is
 * in flight), end with the reply v. */
static void near_fill(struct pc__near *n, const char *k, const char *v,
                      void (*between)(struct pc__near *, const char *))
{
    struct pc__near_fill f;

    pc__near_fill_begin(n, k, strlen(k), &f);
    if (between != NULL)
        between(n, k);
    pc__near_fill_end(n, &f, k, strlen(k), v, strlen(v), 0);
}

static void inval_key(struct pc__near *n, const char *k)
{
    pc__near_invalidate(n, k, strlen(k));
}

static void inval_remote(struct pc__near *n, const char *k)
{
    char rk[64];

    snprintf(rk, sizeof rk, "t:%s", k);
    pc__near_invalidate_remote(n, rk, strlen(rk));
}

static void inval_other_stripe(struct pc__near *n, const char *k)
{
    char other[32];
    struct pc__near_fill a, b;

    /* A key of another stripe: its invalidation must not void k's fill. */
    pc__near_fill_begin(n, k, strlen(k), &a);
    for (int i = 0;; i++) {
        snprintf(other, sizeof other, "other%d", i);
        pc__near_fill_begin(n, other, strlen(other), &b);
        if (b.stripe != a.stripe)
            break;
    }
    pc__near_invalidate(n, other, strlen(other));
}

static void flush(struct pc__near *n, const char *k)
{
    (void)k;
    pc__near_flush(n);
}

static void new_session(struct pc__near *n, const char *k)
{
    (void)k;
    pc__near_session_end(n);
    pc__near_session_start(n, 43);
}

Test(redis, a_fill_that_an_invalidation_overtook_stores_nothing)
{
    struct pc__near *n;
    uint64_t dropped;

    cr_assert_eq(pc__near_create(&n, 64, "t:", 2), PC_OK);
    /* Inactive (no subscriber session): nothing is stored or read. */
    near_fill(n, "k", "v0", NULL);
    cr_assert(!near_holds(n, "k", "v0"));
    pc__near_session_start(n, 42);
    cr_assert(pc__near_is_active(n));

    near_fill(n, "k", "v1", NULL); /* nothing in between: stored */
    cr_assert(near_holds(n, "k", "v1"));
    /* Each of these, while the GET is in flight, voids the reply (which
     * may predate the write behind it): the old copy is gone and the fill
     * is dropped, not stored. */
    void (*voiding[])(struct pc__near *, const char *) = {
        inval_key, inval_remote, flush, new_session};
    for (size_t i = 0; i < sizeof voiding / sizeof *voiding; i++) {
        near_fill(n, "k", "v1", NULL);
        cr_assert(near_holds(n, "k", "v1"));
        dropped = __atomic_load_n(&n->dropped, __ATOMIC_RELAXED);
        near_fill(n, "k", "stale", voiding[i]);
        cr_assert(!near_holds(n, "k", "stale"), "case %zu stored", i);
        cr_assert(!near_holds(n, "k", "v1"), "case %zu kept the old copy", i);
        cr_assert_eq(__atomic_load_n(&n->dropped, __ATOMIC_RELAXED),
                     dropped + 1, "case %zu", i);
        near_fill(n, "k", "v2", NULL); /* the next fill is stored again */
        cr_assert(near_holds(n, "k", "v2"), "case %zu", i);
    }
    /* Another key's invalidation (another stripe), or one for a key outside
     * the prefix, leaves the fill alone. */
    near_fill(n, "k", "v3", inval_other_stripe);
    cr_assert(near_holds(n, "k", "v3"));
    pc__near_invalidate_remote(n, "u:k", 3);
    cr_assert(near_holds(n, "k", "v3"));
    /* A session that ends makes the tier inactive: nothing is read. */
    pc__near_session_end(n);
    cr_assert(!pc__near_is_active(n));
    cr_assert(!near_holds(n, "k", "v3"));
    pc__near_destroy(n);
}

/* Each of the near tier's events counts once, in its own counter (a
 * mutation that stopped counting fills, invalidations or flushes survived,
 * as did one that armed fills while the tier is bypassed). */
#define NEAR_COUNT(n, c) __atomic_load_n(&(n)->c, __ATOMIC_RELAXED)
Test(redis, the_near_tier_counts_each_fill_invalidation_flush_and_session)
{
    struct pc__near *n;

    cr_assert_eq(pc__near_create(&n, 64, "t:", 2), PC_OK);
    /* Bypassed (no session yet): a fill stores and counts nothing. */
    near_fill(n, "k", "v0", NULL);
    cr_assert_eq(pc__near_len(n), 0, "a fill stored while bypassed");
    cr_assert_eq(NEAR_COUNT(n, fills), 0);
    pc__near_session_start(n, 42);
    cr_assert_eq(NEAR_COUNT(n, sessions), 1);
    cr_assert_eq(NEAR_COUNT(n, flushes), 0);

    near_fill(n, "k", "v1", NULL);
    cr_assert_eq(NEAR_COUNT(n, fills), 1);
    cr_assert_eq(pc__near_len(n), 1);
    /* Key names from the server count, ours or not; our own puts' and
     * deletes' local invalidations do not. */
    inval_remote(n, "k");
    cr_assert_eq(NEAR_COUNT(n, invalidations), 1);
    cr_assert_eq(pc__near_len(n), 0);
    pc__near_invalidate_remote(n, "u:k", 3);
    cr_assert_eq(NEAR_COUNT(n, invalidations), 2);
    inval_key(n, "k");
    cr_assert_eq(NEAR_COUNT(n, invalidations), 2);

    near_fill(n, "k", "v2", NULL);
    cr_assert_eq(NEAR_COUNT(n, fills), 2);
    pc__near_flush(n); /* FLUSHALL, a pooled connection lost */
    cr_assert_eq(NEAR_COUNT(n, flushes), 1);
    cr_assert_eq(pc__near_len(n), 0);

    near_fill(n, "k", "v3", NULL);
    cr_assert_eq(NEAR_COUNT(n, fills), 3);
    pc__near_session_end(n); /* the channel lost: a flush */
    cr_assert_eq(NEAR_COUNT(n, flushes), 2);
    cr_assert_eq(pc__near_len(n), 0);
    near_fill(n, "k", "v4", NULL); /* bypassed again */
    cr_assert_eq(pc__near_len(n), 0, "a fill stored while bypassed");
    cr_assert_eq(NEAR_COUNT(n, fills), 3);
    pc__near_session_start(n, 43); /* regained: counted in sessions */
    cr_assert_eq(NEAR_COUNT(n, sessions), 2);
    cr_assert_eq(NEAR_COUNT(n, flushes), 2);
    cr_assert_eq(NEAR_COUNT(n, dropped), 0);
    pc__near_destroy(n);
}

/* ---- options and arguments ---- */

Test(redis, bad_options_are_refused_and_change_nothing)
{
    pc_redis_options o = {0};
    pc_backend be = {(const pc_backend_ops *)1, (void *)2}, keep = be;
    char prefix[PC_REDIS_PREFIX_MAX + 2], host[PC_REDIS_HOST_MAX + 2];

    cr_assert_eq(pc_redis_backend(NULL, &be), PC_EINVAL);
    cr_assert_eq(pc_redis_backend(&o, NULL), PC_EINVAL);
    o.port = -1;
    cr_assert_eq(pc_redis_backend(&o, &be), PC_EINVAL);
    o.port = 65536;
    cr_assert_eq(pc_redis_backend(&o, &be), PC_EINVAL);
    o.port = 0;
    memset(prefix, 'p', sizeof prefix - 1);
    prefix[sizeof prefix - 1] = '\0';
    o.key_prefix = prefix; /* PC_REDIS_PREFIX_MAX + 1 bytes */
    cr_assert_eq(pc_redis_backend(&o, &be), PC_EINVAL);
    prefix[PC_REDIS_PREFIX_MAX] = '\0'; /* exactly the maximum: fine */
    o.key_prefix = NULL;
    memset(host, 'h', sizeof host - 1);
    host[sizeof host - 1] = '\0';
    o.host = host;
    cr_assert_eq(pc_redis_backend(&o, &be), PC_EINVAL);
    o.host = "";
    cr_assert_eq(pc_redis_backend(&o, &be), PC_EINVAL);
    o.host = NULL;
    o.connections = PC_REDIS_CONNECTIONS_MAX + 1;
    cr_assert_eq(pc_redis_backend(&o, &be), PC_EINVAL);
    o.connections = 0;
    o.ttl_ms = PC_REDIS_TTL_MAX + 1;
    cr_assert_eq(pc_redis_backend(&o, &be), PC_EINVAL);
    o.ttl_ms = 0;
    o.tracking = 7;
    cr_assert_eq(pc_redis_backend(&o, &be), PC_EINVAL);
    o.tracking = 0;
    o.near_capacity = SIZE_MAX; /* beyond what pc_create takes */
    cr_assert_eq(pc_redis_backend(&o, &be), PC_EINVAL);
    cr_assert(be.ops == keep.ops && be.self == keep.self,
              "a failing call changed *out");

    /* Port 0 and every other 0 mean the defaults; nothing connects yet. */
    o = (pc_redis_options){0};
    o.key_prefix = prefix;
    cr_assert_eq(pc_redis_backend(&o, &be), PC_OK);
    cr_assert_eq(be.ops->len(be.self), 0);
    destroy(&be);
}

Test(redis, bad_arguments_and_foreign_backends_are_refused)
{
    pc_redis_options o = {0};
    pc_backend be, local;
    pc_options co = {.capacity = 4};
    pc_cache *c;
    pc_redis_stats rs;
    char big[PC_KEY_MAX + 1] = {0}, buf[8];
    size_t n;

    o.port = 1; /* nothing is sent for bad arguments */
    o.near_capacity = 16;
    cr_assert_eq(pc_redis_backend(&o, &be), PC_OK);
    cr_assert_eq(be.ops->get(be.self, NULL, 1, buf, sizeof buf, &n), PC_EINVAL);
    cr_assert_eq(be.ops->get(be.self, big, sizeof big, buf, sizeof buf, &n),
                 PC_EINVAL);
    cr_assert_eq(be.ops->get(be.self, "k", 1, NULL, 4, &n), PC_EINVAL);
    cr_assert_eq(be.ops->put(be.self, "k", 1, NULL, 1), PC_EINVAL);
    cr_assert_eq(be.ops->put(be.self, NULL, 2, "v", 1), PC_EINVAL);
    cr_assert_eq(be.ops->del(be.self, big, sizeof big), PC_EINVAL);
    cr_assert_eq(pc_redis_stats_get(&be, NULL), PC_EINVAL);
    cr_assert_eq(pc_redis_stats_get(&be, &rs), PC_OK);
    cr_assert_eq(rs.requests, 0, "bad arguments reached the network");

    cr_assert_eq(pc_create(&co, &c), PC_OK);
    cr_assert_eq(pc_backend_from_cache(c, &local), PC_OK);
    cr_assert_eq(pc_redis_stats_get(&local, &rs), PC_EINVAL);
    cr_assert_eq(pc_redis_near_get(&local, "k", 1, buf, sizeof buf, &n),
                 PC_EINVAL);
    cr_assert_eq(pc_redis_wait_near(&local, 1), PC_EINVAL);
    cr_assert_eq(pc_redis_wait_near(NULL, 1), PC_EINVAL);
    local.ops->destroy(local.self);
    destroy(&be);
}

/* Bad arguments to every operation of a live backend with a near copy:
 * refused with PC_EINVAL before any I/O, outputs untouched, the near copy
 * and the value in Redis unchanged (API audit). */
Test(redis, bad_arguments_change_neither_redis_nor_the_near_tier)
{
    struct rs_server s;
    pc_backend be, plain;
    pc_redis_options o = {0};
    pc_redis_stats before, after;
    pc_put_args a = {0};
    static char big[PC_KEY_MAX + 1];
    char buf[8];
    size_t n = 77;
    redisContext *x;
    redisReply *r;

    rs_start(&s);
    be = make(&s, "bad:", 16, PC_REDIS_TRACK_KEYS, 0);
    cr_assert_eq(put_s(&be, "k", "v"), PC_OK);
    cr_assert(filled(&be, "k"), "no near copy");
    cr_assert_eq(pc_redis_stats_get(&be, &before), PC_OK);

    cr_assert_eq(be.ops->get(NULL, "k", 1, buf, sizeof buf, &n), PC_EINVAL);
    cr_assert_eq(be.ops->get(be.self, "k", SIZE_MAX, buf, sizeof buf, &n),
                 PC_EINVAL);
    cr_assert_eq(be.ops->put(NULL, "k", 1, "w", 1), PC_EINVAL);
    cr_assert_eq(be.ops->put(be.self, big, sizeof big, "w", 1), PC_EINVAL);
    cr_assert_eq(be.ops->put(be.self, "k", 1, "w", PC_VALUE_MAX + 1),
                 PC_EINVAL);
    /* (Refused before a byte is read: hiredis would have summed a command
     * near 4 GiB in an int and overrun its buffer.) */
    cr_assert_eq(be.ops->put(be.self, "k", 1, "w", PC_REDIS_VALUE_MAX + 1),
                 PC_EINVAL);
    cr_assert_eq(be.ops->put(be.self, "k", 1, "w", PC_VALUE_MAX), PC_EINVAL);
    cr_assert_eq(be.ops->put(be.self, "k", 1, "w", SIZE_MAX), PC_EINVAL);
    cr_assert_eq(be.ops->put_ex(NULL, "k", 1, "w", 1, &a), PC_EINVAL);
    cr_assert_eq(be.ops->put_ex(be.self, NULL, 1, "w", 1, &a), PC_EINVAL);
    cr_assert_eq(be.ops->put_ex(be.self, "k", 1, NULL, 1, &a), PC_EINVAL);
    a.flags = PC_PUT_IF_ABSENT | PC_PUT_IF_PRESENT;
    cr_assert_eq(be.ops->put_ex(be.self, "k", 1, "w", 1, &a), PC_EINVAL);
    a.flags = 0x80000000u;
    cr_assert_eq(be.ops->put_ex(be.self, "k", 1, "w", 1, &a), PC_EINVAL);
    cr_assert_eq(be.ops->del(NULL, "k", 1), PC_EINVAL);
    cr_assert_eq(be.ops->del(be.self, NULL, 1), PC_EINVAL);
    cr_assert_eq(be.ops->len(NULL), 0);
    be.ops->destroy(NULL); /* a no-op */
    cr_assert_eq(pc_redis_near_get(NULL, "k", 1, buf, sizeof buf, &n),
                 PC_EINVAL);
    cr_assert_eq(pc_redis_near_get(&be, NULL, 1, buf, sizeof buf, &n),
                 PC_EINVAL);
    cr_assert_eq(pc_redis_near_get(&be, big, sizeof big, buf, sizeof buf, &n),
                 PC_EINVAL);
    cr_assert_eq(pc_redis_near_get(&be, "k", 1, NULL, 4, &n), PC_EINVAL);
    cr_assert_eq(pc_redis_stats_get(NULL, &after), PC_EINVAL);
    cr_assert_eq(n, 77, "vlen must be untouched on EINVAL");

    cr_assert_eq(pc_redis_stats_get(&be, &after), PC_OK);
    cr_assert_eq(after.requests, before.requests,
                 "bad arguments reached the network");
    cr_assert_eq(after.flushes, before.flushes);
    cr_assert(near_has(&be, "k"), "a refused call dropped the near copy");
    x = rs_client(&s);
    r = ext(x, "GET %s", "bad:k", NULL);
    cr_assert_eq(r->type, REDIS_REPLY_STRING);
    cr_assert_str_eq(r->str, "v");
    freeReplyObject(r);
    redisFree(x);

    /* Without a near tier: near_get finds nothing, wait_near refuses. */
    o.port = s.port;
    cr_assert_eq(pc_redis_backend(&o, &plain), PC_OK);
    cr_assert_eq(pc_redis_near_get(&plain, "k", 1, buf, sizeof buf, &n),
                 PC_NOTFOUND);
    cr_assert_eq(pc_redis_near_get(&plain, NULL, 1, buf, sizeof buf, &n),
                 PC_EINVAL);
    cr_assert_eq(pc_redis_wait_near(&plain, 1), PC_EINVAL);
    cr_assert_eq(plain.ops->len(plain.self), 0);
    destroy(&plain);
    destroy(&be);
    rs_stop(&s);
}

Test(redis, unreachable_server_is_eio_within_the_timeout)
{
    struct rs_server s;
    pc_redis_options o = {0};
    pc_backend be;
    char buf[8];
    uint64_t t0;

    rs_start(&s); /* take a free port; nothing listens on it after this */
    rs_kill(&s);
    o.port = s.port;
    o.timeout_ms = 200;
    o.near_capacity = 8;
    cr_assert_eq(pc_redis_backend(&o, &be), PC_OK);
    t0 = now_ns();
    cr_assert_eq(get_s(&be, "k", buf), PC_EIO);
    cr_assert_eq(put_s(&be, "k", "v"), PC_EIO);
    cr_assert_eq(be.ops->del(be.self, "k", 1), PC_EIO);
    cr_assert_lt(now_ns() - t0, 3 * 300000000ull * time_scale());
    cr_assert_eq(pc_redis_wait_near(&be, 50), PC_EIO);
    destroy(&be);
    rs_stop(&s);
}

/* ---- round trips ---- */

static void write_through(size_t near, unsigned tracking)
{
    struct rs_server s;
    pc_redis_options o = {0};
    pc_backend be;
    redisContext *x;
    redisReply *r;
    char buf[256];
    const char bin[] = {'a', 0, 'b'};
    size_t n = 0;

    rs_start(&s);
    o.port = s.port;
    o.key_prefix = "app:";
    o.ttl_ms = 60000;
    o.near_capacity = near;
    o.tracking = tracking;
    cr_assert_eq(pc_redis_backend(&o, &be), PC_OK);
    if (near)
        cr_assert_eq(pc_redis_wait_near(&be, 5000), PC_OK);
    x = rs_client(&s);

    cr_assert_eq(put_s(&be, "user:1", "alice"), PC_OK);
    r = ext(x, "GET %s", "app:user:1", NULL);
    cr_assert(r->type == REDIS_REPLY_STRING && strcmp(r->str, "alice") == 0,
              "Redis does not hold the prefixed key");
    freeReplyObject(r);
    r = ext(x, "PTTL %s", "app:user:1", NULL);
    cr_assert(r->integer > 50000 && r->integer <= 60000, "PX not applied");
    freeReplyObject(r);

    cr_assert_eq(get_s(&be, "user:1", buf), PC_OK);
    cr_assert(strcmp(buf, "alice") == 0, "got \"%s\"", buf);
    cr_assert_eq(near ? filled(&be, "user:1") : near_has(&be, "user:1"),
                 near > 0);
    cr_assert_eq(get_s(&be, "user:1", buf), PC_OK); /* near hit if any */
    cr_assert(strcmp(buf, "alice") == 0, "got \"%s\"", buf);
    cr_assert_eq(be.ops->len(be.self), near > 0 ? 1u : 0u);

    /* Too small a buffer: PC_ERANGE with the length, from either tier. */
    for (int i = 0; i < 2; i++) {
        n = 0;
        cr_assert_eq(be.ops->get(be.self, "user:1", 6, buf, 2, &n), PC_ERANGE);
        cr_assert_eq(n, 5);
    }
    /* A value over the near tier's copy size (1 KiB) is read through a
     * pin: the same bytes, and PC_ERANGE with its length, from either
     * tier. */
    {
        static char big[3000], got[3000];

        for (size_t i = 0; i < sizeof big; i++)
            big[i] = (char)('a' + i % 23);
        cr_assert_eq(be.ops->put(be.self, "big", 3, big, sizeof big), PC_OK);
        for (uint64_t t0 = now_ns(); near && !near_has(&be, "big");) {
            cr_assert_lt(now_ns() - t0, 2000000000ull, "big never filled");
            cr_assert_eq(be.ops->get(be.self, "big", 3, got, sizeof got, &n),
                         PC_OK);
            usleep(1000);
        }
        for (int i = 0; i < 3; i++) {
            n = 0;
            memset(got, 0, sizeof got);
            cr_assert_eq(be.ops->get(be.self, "big", 3, got, sizeof got, &n),
                         PC_OK);
            cr_assert_eq(n, sizeof big);
            cr_assert(memcmp(got, big, sizeof big) == 0, "read %d differs", i);
            n = 0;
            cr_assert_eq(be.ops->get(be.self, "big", 3, got, 100, &n),
                         PC_ERANGE);
            cr_assert_eq(n, sizeof big);
        }
        if (near)
            cr_assert_eq(near_has(&be, "big"), 1);
    }
    /* Empty values are values; keys are binary. */
    cr_assert_eq(be.ops->put(be.self, bin, 3, NULL, 0), PC_OK);
    for (int i = 0; i < 2; i++) {
        n = 99;
        cr_assert_eq(be.ops->get(be.self, bin, 3, NULL, 0, &n), PC_OK);
        cr_assert_eq(n, 0);
    }
    /* Own writes replace the near copy before put returns. */
    cr_assert_eq(put_s(&be, "user:1", "bob"), PC_OK);
    cr_assert_eq(get_s(&be, "user:1", buf), PC_OK);
    cr_assert(strcmp(buf, "bob") == 0, "got \"%s\"", buf);
    cr_assert_eq(be.ops->del(be.self, "user:1", 6), PC_OK);
    cr_assert_eq(near_has(&be, "user:1"), 0);
    cr_assert_eq(get_s(&be, "user:1", buf), PC_NOTFOUND);
    cr_assert_eq(be.ops->del(be.self, "user:1", 6), PC_NOTFOUND);

    /* A key of another type is an error reply: PC_EIO, not a crash. */
    freeReplyObject(ext(x, "LPUSH %s %s", "app:list", "x"));
    cr_assert_eq(get_s(&be, "list", buf), PC_EIO);

    redisFree(x);
    destroy(&be);
    rs_stop(&s);
}

Test(redis, write_through_and_read_back_plain)
{
    write_through(0, PC_REDIS_TRACK_KEYS);
}

Test(redis, write_through_and_read_back_near_per_key)
{
    write_through(64, PC_REDIS_TRACK_KEYS);
}

Test(redis, write_through_and_read_back_near_bcast)
{
    write_through(64, PC_REDIS_TRACK_BCAST);
}

/* ---- external writes evict the near copy ---- */

static void external_writes_evict(unsigned tracking)
{
    struct rs_server s;
    pc_backend be;
    redisContext *x;
    char buf[256], key[32], rkey[40];
    double worst = 0, d;

    rs_start(&s);
    be = make(&s, "t:", 1024, tracking, 1000);
    x = rs_client(&s);

    /* redis-cli, an external process: SET then DEL. */
    cr_assert_eq(put_s(&be, "k", "v1"), PC_OK);
    cr_assert_eq(get_s(&be, "k", buf), PC_OK);
    cr_assert(filled(&be, "k"), "no near copy of %s", "k");
    {
        const char *set[] = {"SET", "t:k", "v2", NULL};
        const char *del[] = {"DEL", "t:k", NULL};
        uint64_t t0;

        t0 = now_ns();
        cr_assert_eq(rs_cli(&s, set), 0, "redis-cli failed");
        d = wait_evicted(&be, "k", t0);
        cr_assert(d >= 0 && d <= INVAL_BOUND_MS + 100.0,
                  "redis-cli SET: near copy stayed %.1f ms", d);
        cr_assert_eq(get_s(&be, "k", buf), PC_OK);
        cr_assert(strcmp(buf, "v2") == 0, "got \"%s\"", buf);
        cr_assert(filled(&be, "k"), "no near copy of %s", "k");
        t0 = now_ns();
        cr_assert_eq(rs_cli(&s, del), 0);
        d = wait_evicted(&be, "k", t0);
        cr_assert(d >= 0, "redis-cli DEL did not evict");
        cr_assert_eq(get_s(&be, "k", buf), PC_NOTFOUND);
    }

    /* 200 external SETs through hiredis, each timed from its reply. */
    for (int i = 0; i < 200; i++) {
        uint64_t t0;

        snprintf(key, sizeof key, "key%d", i % 20);
        snprintf(rkey, sizeof rkey, "t:%s", key);
        freeReplyObject(ext(x, "SET %s %s", rkey, "old"));
        /* The previous round's near copy goes within the bound too. */
        cr_assert(wait_evicted(&be, key, now_ns()) >= 0);
        cr_assert_eq(get_s(&be, key, buf), PC_OK);
        cr_assert(strcmp(buf, "old") == 0, "got \"%s\"", buf);
        cr_assert(filled(&be, key), "no near copy of %s", key);
        freeReplyObject(ext(x, "SET %s %s", rkey, "new"));
        t0 = now_ns(); /* the write is acknowledged */
        d = wait_evicted(&be, key, t0);
        cr_assert(d >= 0 && d <= INVAL_BOUND_MS,
                  "near copy of %s outlived an acknowledged SET by %.1f ms",
                  key, d);
        if (d > worst)
            worst = d;
        cr_assert_eq(get_s(&be, key, buf), PC_OK);
        cr_assert(strcmp(buf, "new") == 0, "got \"%s\"", buf);
    }
    fprintf(stderr,
            "[redis] %s: worst invalidation delay over 200 SETs "
            "%.3f ms (bound %d ms)\n",
            tracking == PC_REDIS_TRACK_BCAST ? "bcast" : "per-key", worst,
            INVAL_BOUND_MS);

    /* EXPIRE, then FLUSHALL (a nil key list) empties the near tier. */
    cr_assert_eq(get_s(&be, "key1", buf), PC_OK);
    freeReplyObject(ext(x, "PEXPIRE %s %s", "t:key1", "100000"));
    cr_assert(wait_evicted(&be, "key1", now_ns()) >= 0, "EXPIRE kept it");
    for (int i = 0; i < 20; i++) {
        snprintf(key, sizeof key, "key%d", i);
        cr_assert_eq(get_s(&be, key, buf), PC_OK);
    }
    cr_assert_geq(be.ops->len(be.self), 19);
    freeReplyObject(ext(x, "FLUSHALL", NULL, NULL));
    {
        uint64_t t0 = now_ns();

        while (be.ops->len(be.self) != 0 && now_ns() - t0 < 5000000000ull)
            usleep(100);
        cr_assert_eq(be.ops->len(be.self), 0, "FLUSHALL kept near copies");
    }
    cr_assert_eq(get_s(&be, "key3", buf), PC_NOTFOUND);

    redisFree(x);
    destroy(&be);
    rs_stop(&s);
}

REDIS_TEST_BOTH_MODES(external_set_del_expire_flushall_evict_near,
                      external_writes_evict, .timeout = 60)

/* Every other kind of write an outside client can make to a key held near
 * drops the near copy within the bound: a delete by another name, moves
 * away and onto the key, read-and-delete, a new expiry (or none), in-place
 * edits, a replacement that keeps the ttl, a flush of the database (sync
 * or async), a move to another database and a script's write. (From
 * helper-97's review, which found each one sent.) */
static void external_commands_evict(unsigned tracking)
{
    static const char *const cmds[][6] = {
        {"UNLINK", "t:k"},
        {"RENAME", "t:k", "t:z"},
        {"GETDEL", "t:k"},
        {"GETEX", "t:k", "PX", "50000"},
        {"APPEND", "t:k", "x"},
        {"SETRANGE", "t:k", "0", "Z"},
        {"SET", "t:k", "q", "KEEPTTL"},
        {"FLUSHDB"},
        {"FLUSHDB", "ASYNC"},
        {"FLUSHALL", "ASYNC"},
        {"PEXPIRE", "t:k", "1"},
        {"PERSIST", "t:k"},
        {"COPY", "t:src", "t:k", "REPLACE"},
        {"MOVE", "t:k", "1"},
        {"EVAL", "redis.call('set', KEYS[1], 'lua') return 1", "1", "t:k"},
        {"RENAME", "t:src", "t:k"},
    };
    struct rs_server s;
    pc_backend be;
    redisContext *x;
    char buf[256];

    rs_start(&s);
    be = make(&s, "t:", 1024, tracking, 1000);
    x = rs_client(&s);
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++) {
        int argc = 0;
        redisReply *r;
        uint64_t t0;
        double d;

        freeReplyObject(ext(x, "SET %s %s PX 100000", "t:k", "v"));
        freeReplyObject(ext(x, "SET %s %s", "t:src", "s"));
        cr_assert(wait_evicted(&be, "k", now_ns()) >= 0);
        cr_assert_eq(get_s(&be, "k", buf), PC_OK);
        cr_assert(filled(&be, "k"), "no near copy of %s", "k");
        while (argc < 6 && cmds[i][argc] != NULL)
            argc++;
        r = redisCommandArgv(x, argc, (const char **)cmds[i], NULL);
        cr_assert_not_null(r, "external client: %s", x->errstr);
        cr_assert(r->type != REDIS_REPLY_ERROR, "%s: %s", cmds[i][0], r->str);
        freeReplyObject(r);
        t0 = now_ns(); /* the write is acknowledged */
        d = wait_evicted(&be, "k", t0);
        cr_assert(d >= 0 && d <= INVAL_BOUND_MS,
                  "%s %s: the near copy stayed %.1f ms", cmds[i][0],
                  argc > 1 ? cmds[i][1] : "", d);
    }
    redisFree(x);
    destroy(&be);
    rs_stop(&s);
}

REDIS_TEST_BOTH_MODES(every_external_write_command_evicts_near,
                      external_commands_evict, .timeout = 60)

Test(redis, near_copy_never_outlives_its_redis_ttl)
{
    struct rs_server s;
    pc_redis_options o = {0};
    pc_backend be;
    redisContext *x;
    char buf[256];

    rs_start(&s);
    o.port = s.port;
    o.ttl_ms = 300;
    o.near_capacity = 64;
    cr_assert_eq(pc_redis_backend(&o, &be), PC_OK);
    cr_assert_eq(pc_redis_wait_near(&be, 5000), PC_OK);
    x = rs_client(&s);

    cr_assert_eq(put_s(&be, "a", "1"), PC_OK);
    cr_assert_eq(get_s(&be, "a", buf), PC_OK);
    cr_assert(filled(&be, "a"), "no near copy of %s", "a");
    /* An external value with its own expiry is cached with it too. */
    freeReplyObject(ext(x, "SET %s %s PX 200", "b", "2"));
    cr_assert_eq(get_s(&be, "b", buf), PC_OK);
    cr_assert(filled(&be, "b"), "no near copy of %s", "b");
    usleep(320000);
    /* Past both deadlines: misses whether or not the server's expiry
     * notice has arrived yet. */
    cr_assert_not(near_has(&be, "a"), "near copy outlived PX 300");
    cr_assert_not(near_has(&be, "b"), "near copy outlived PX 200");
    cr_assert_eq(get_s(&be, "a", buf), PC_NOTFOUND);
    cr_assert_eq(get_s(&be, "b", buf), PC_NOTFOUND);
    redisFree(x);
    destroy(&be);
    rs_stop(&s);
}

/* PTTL of k in Redis, through an external client: -1 none, -2 absent. */
static long long pttl(redisContext *x, const char *k)
{
    redisReply *r = ext(x, "PTTL %s", k, NULL);
    long long v;

    cr_assert_eq(r->type, REDIS_REPLY_INTEGER);
    v = r->integer;
    freeReplyObject(r);
    return v;
}

static int one_square(void *ctx, const void *key, size_t klen, pc_sink *out)
{
    uint64_t k, v;

    (void)ctx;
    cr_assert_eq(klen, sizeof k);
    memcpy(&k, key, sizeof k);
    v = k * k;
    return pc_sink_set(out, &v, sizeof v) == PC_OK ? 0 : -1;
}

/* put_ex: a put's own ttl (0: the backend's, PC_TTL_NEVER: none) reaches
 * Redis as PX, PC_PUT_IF_ABSENT / _PRESENT as NX / XX with pc_put_ex's
 * statuses; so a memoizer with a ttl works over the backend. */
Test(redis, put_ex_sends_ttls_and_conditions_and_memoizes_with_a_ttl)
{
    struct rs_server s;
    pc_redis_options o = {0};
    pc_backend be;
    redisContext *x;
    char buf[256];
    pc_put_args a = {0};
    pc_memo *m;
    pc_memo_options mo = {0};
    uint64_t k = 7, v = 0;
    long long t;

    rs_start(&s);
    o.port = s.port;
    o.ttl_ms = 600000;
    o.near_capacity = 64;
    cr_assert_eq(pc_redis_backend(&o, &be), PC_OK);
    cr_assert_not_null(be.ops->put_ex);
    x = rs_client(&s);

    a.ttl_ms = 50000;
    cr_assert_eq(be.ops->put_ex(be.self, "a", 1, "1", 1, &a), PC_OK);
    t = pttl(x, "a");
    cr_assert(t > 40000 && t <= 50000, "PTTL %lld after ttl 50000", t);
    a.ttl_ms = 0; /* the backend's */
    cr_assert_eq(be.ops->put_ex(be.self, "b", 1, "2", 1, &a), PC_OK);
    t = pttl(x, "b");
    cr_assert(t > 500000 && t <= 600000, "PTTL %lld after the default", t);
    a.ttl_ms = PC_TTL_NEVER;
    cr_assert_eq(be.ops->put_ex(be.self, "c", 1, "3", 1, &a), PC_OK);
    cr_assert_eq(pttl(x, "c"), -1);
    cr_assert_eq(be.ops->put_ex(be.self, "d", 1, "4", 1, NULL), PC_OK);
    t = pttl(x, "d");
    cr_assert(t > 500000 && t <= 600000, "PTTL %lld without args", t);

    a.ttl_ms = 0;
    a.flags = PC_PUT_IF_ABSENT;
    cr_assert_eq(be.ops->put_ex(be.self, "a", 1, "9", 1, &a), PC_EXISTS);
    cr_assert_eq(be.ops->put_ex(be.self, "e", 1, "5", 1, &a), PC_OK);
    a.flags = PC_PUT_IF_PRESENT;
    cr_assert_eq(be.ops->put_ex(be.self, "f", 1, "6", 1, &a), PC_NOTFOUND);
    cr_assert_eq(get_s(&be, "f", buf), PC_NOTFOUND);
    cr_assert_eq(be.ops->put_ex(be.self, "a", 1, "8", 1, &a), PC_OK);
    cr_assert_eq(get_s(&be, "a", buf), PC_OK);
    cr_assert_str_eq(buf, "8");
    cr_assert_eq(get_s(&be, "e", buf), PC_OK);
    cr_assert_str_eq(buf, "5");
    a.flags = PC_PUT_IF_ABSENT | PC_PUT_IF_PRESENT;
    cr_assert_eq(be.ops->put_ex(be.self, "g", 1, "7", 1, &a), PC_EINVAL);
    a.flags = 4;
    cr_assert_eq(be.ops->put_ex(be.self, "g", 1, "7", 1, &a), PC_EINVAL);
    cr_assert_eq(get_s(&be, "g", buf), PC_NOTFOUND);

    mo.ttl_ms = 30000;
    cr_assert_eq(pc_memo_create_ex(&be, &mo, &m), PC_OK);
    cr_assert_eq(pc_memo_call(m, &k, sizeof k, one_square, NULL, &v, sizeof v,
                              NULL, NULL),
                 PC_OK);
    cr_assert_eq(v, 49);
    {
        redisReply *r = redisCommand(x, "PTTL %b", &k, sizeof k);

        cr_assert_not_null(r);
        cr_assert_eq(r->type, REDIS_REPLY_INTEGER);
        cr_assert(r->integer > 20000 && r->integer <= 30000,
                  "memoized PTTL %lld after ttl 30000", r->integer);
        freeReplyObject(r);
    }
    redisFree(x);
    pc_memo_destroy(m); /* destroys the backend */
    rs_stop(&s);
}

/* ---- two "servers" under concurrent writes ---- */

#define CO_KEYS 8
#define CO_VERSIONS 100000

struct coherence {
    pc_backend be[2];
    uint64_t ack_ns[CO_KEYS][CO_VERSIONS]; /* atomic */
    uint64_t acked[CO_KEYS];               /* atomic: last acked version */
    uint64_t until_ns;
    /* results */
    uint64_t reads, stale, errors, own_stale, max_lag_ns;
};

struct co_arg {
    struct coherence *co;
    int side, writer;
};

static void *co_writer(void *p)
{
    struct co_arg *a = p;
    struct coherence *co = a->co;
    pc_backend *be = &co->be[a->side];
    char key[16], val[32], buf[256];

    for (uint64_t v = 1; v < CO_VERSIONS && now_ns() < co->until_ns; v++) {
        for (int k = a->side; k < CO_KEYS; k += 2) { /* side owns k */
            uint64_t got;

            snprintf(key, sizeof key, "k%d", k);
            snprintf(val, sizeof val, "%llu", (unsigned long long)v);
            if (put_s(be, key, val) != PC_OK) {
                __atomic_add_fetch(&co->errors, 1, __ATOMIC_RELAXED);
                continue;
            }
            __atomic_store_n(&co->ack_ns[k][v], now_ns(), __ATOMIC_RELEASE);
            __atomic_store_n(&co->acked[k], v, __ATOMIC_RELEASE);
            /* Read your own write, at once. */
            if (get_s(be, key, buf) != PC_OK ||
                (got = strtoull(buf, NULL, 10)) < v)
                __atomic_add_fetch(&co->own_stale, 1, __ATOMIC_RELAXED);
        }
        usleep(200);
    }
    return NULL;
}

static void *co_reader(void *p)
{
    struct co_arg *a = p;
    struct coherence *co = a->co;
    pc_backend *be = &co->be[a->side];
    char key[16], buf[256];
    uint64_t reads = 0, stale = 0, errors = 0, max_lag = 0, x = 1;

    while (now_ns() < co->until_ns) {
        int k =
            (int)((x = x * 6364136223846793005ull + 1442695040888963407ull) >>
                  61);
        uint64_t t0 = now_ns(), seen, next, acked;
        pc_status st;

        /* Breathe now and then: six busy threads on a small machine
         * would otherwise measure the scheduler, not the invalidation. */
        if ((reads & 127) == 127)
            usleep(20);
        snprintf(key, sizeof key, "k%d", k);
        st = get_s(be, key, buf);
        reads++;
        if (st == PC_NOTFOUND)
            seen = 0;
        else if (st == PC_OK)
            seen = strtoull(buf, NULL, 10);
        else {
            errors++;
            continue;
        }
        /* The first version this read missed: was it acknowledged
         * before the read began, and how long before? */
        next = seen + 1;
        acked = __atomic_load_n(&co->acked[k], __ATOMIC_ACQUIRE);
        if (seen > acked + 1)
            stale++; /* a version nobody wrote yet: corrupt */
        if (next <= acked && next < CO_VERSIONS) {
            uint64_t at =
                __atomic_load_n(&co->ack_ns[k][next], __ATOMIC_ACQUIRE);

            if (at != 0 && at < t0) {
                if (t0 - at > max_lag)
                    max_lag = t0 - at;
                if (t0 - at > (uint64_t)CO_BOUND_MS * 1000000u)
                    stale++;
            }
        }
    }
    __atomic_add_fetch(&co->reads, reads, __ATOMIC_RELAXED);
    __atomic_add_fetch(&co->stale, stale, __ATOMIC_RELAXED);
    __atomic_add_fetch(&co->errors, errors, __ATOMIC_RELAXED);
    for (uint64_t m = __atomic_load_n(&co->max_lag_ns, __ATOMIC_RELAXED);
         max_lag > m &&
         !__atomic_compare_exchange_n(&co->max_lag_ns, &m, max_lag, 0,
                                      __ATOMIC_RELAXED, __ATOMIC_RELAXED);)
        ;
    return NULL;
}

static void two_backends_coherent(unsigned tracking)
{
    struct rs_server s;
    struct coherence *co = calloc(1, sizeof *co);
    pthread_t th[6];
    struct co_arg args[6];
    pc_redis_stats st[2];

    cr_assert_not_null(co);
    rs_start(&s);
    co->be[0] = make(&s, "co:", 64, tracking, 2000);
    co->be[1] = make(&s, "co:", 64, tracking, 2000);
    co->until_ns = now_ns() + 2000000000ull;
    for (int i = 0; i < 6; i++) {
        args[i] = (struct co_arg){co, i % 2, i < 2};
        pthread_create(&th[i], NULL, i < 2 ? co_writer : co_reader, &args[i]);
    }
    for (int i = 0; i < 6; i++)
        pthread_join(th[i], NULL);
    pc_redis_stats_get(&co->be[0], &st[0]);
    pc_redis_stats_get(&co->be[1], &st[1]);
    fprintf(stderr,
            "[redis] coherence (%s): %llu reads, max lag behind an acked "
            "write %.3f ms (bound %d ms), %llu+%llu invalidations, "
            "%llu+%llu fills, %llu+%llu dropped fills\n",
            tracking == PC_REDIS_TRACK_BCAST ? "bcast" : "per-key",
            (unsigned long long)co->reads, (double)co->max_lag_ns / 1e6,
            CO_BOUND_MS, (unsigned long long)st[0].invalidations,
            (unsigned long long)st[1].invalidations,
            (unsigned long long)st[0].near_fills,
            (unsigned long long)st[1].near_fills,
            (unsigned long long)st[0].fills_dropped,
            (unsigned long long)st[1].fills_dropped);
    cr_assert_eq(co->errors, 0, "requests failed");
    cr_assert_eq(co->own_stale, 0, "a writer did not read its own write");
    cr_assert_eq(co->stale, 0,
                 "%llu reads returned a version older than one acknowledged "
                 "more than %d ms before the read",
                 (unsigned long long)co->stale, CO_BOUND_MS);
    cr_assert_gt(co->reads, 100);
    destroy(&co->be[0]);
    destroy(&co->be[1]);
    free(co);
    rs_stop(&s);
}

REDIS_TEST_BOTH_MODES(two_backends_stay_coherent_under_concurrent_writes,
                      two_backends_coherent, .timeout = 60)

/* A ttl of centuries (PTTL * 1e6 ns past 2^64) gave the near copy a
 * deadline in the past: every get went back to Redis. */
Test(redis, a_ttl_of_centuries_keeps_its_near_copy)
{
    struct rs_server s;
    pc_backend be;
    pc_put_args a = {0};
    pc_redis_stats st0, st1;
    char buf[256];

    rs_start(&s);
    be = make(&s, "", 16, PC_REDIS_TRACK_KEYS, 0);
    /* 584 years: in ns, 1 s short of 2^64, so that the monotonic clock's
     * time since boot (over 1 s) carried the sum past it. */
    a.ttl_ms = 18446744072709ull;
    cr_assert_eq(be.ops->put_ex(be.self, "k", 1, "v", 1, &a), PC_OK);
    cr_assert(filled(&be, "k"), "no near copy");
    cr_assert_eq(pc_redis_stats_get(&be, &st0), PC_OK);
    for (int i = 0; i < 5; i++)
        cr_assert_eq(get_s(&be, "k", buf), PC_OK);
    cr_assert_eq(pc_redis_stats_get(&be, &st1), PC_OK);
    cr_assert_eq(st1.requests, st0.requests, "near copy dead on arrival");
    destroy(&be);
    rs_stop(&s);
}

/* pc_redis_stats_get reports each near-tier event in its own field: a
 * fill, a key name from the server, a FLUSHALL, the channel lost and
 * regained (mutations that stopped counting fills, invalidations or
 * flushes survived the suite). */
Test(redis, stats_count_fills_invalidations_flushes_and_sessions, .timeout = 60)
{
    struct rs_server s;
    pc_backend be;
    pc_redis_stats st0, st;
    redisContext *x;
    char buf[256];

    rs_start(&s);
    be = make(&s, "t:", 64, PC_REDIS_TRACK_KEYS, 1000);
    x = rs_client(&s);
    cr_assert_eq(put_s(&be, "k", "v1"), PC_OK);
    cr_assert_eq(pc_redis_stats_get(&be, &st0), PC_OK);
    cr_assert_eq(st0.sessions, 1);
    cr_assert(st0.near_active);
    /* One read of a key nobody else touches: one fill, none dropped. */
    cr_assert_eq(get_s(&be, "k", buf), PC_OK);
    pc_redis_stats_get(&be, &st);
    cr_assert_eq(st.near_fills, st0.near_fills + 1, "fill not counted");
    cr_assert_eq(st.fills_dropped, st0.fills_dropped);
    cr_assert_eq(st.invalidations, st0.invalidations);
    cr_assert_eq(st.flushes, st0.flushes);
    cr_assert_eq(st.sessions, st0.sessions);
    cr_assert(near_has(&be, "k"));
    /* Another client's SET: its key name arrives. */
    freeReplyObject(ext(x, "SET %s %s", "t:k", "v2"));
    cr_assert_gt(STAT_OVER(&be, invalidations, st0.invalidations),
                 st0.invalidations, "invalidation not counted");
    pc_redis_stats_get(&be, &st);
    cr_assert_eq(st.near_fills, st0.near_fills + 1);
    cr_assert_eq(st.flushes, st0.flushes);
    /* FLUSHALL (a nil key list): a flush. */
    cr_assert_eq(get_s(&be, "k", buf), PC_OK);
    cr_assert(filled(&be, "k"), "no near copy of %s", "k");
    pc_redis_stats_get(&be, &st);
    freeReplyObject(ext(x, "FLUSHALL", NULL, NULL));
    cr_assert_gt(STAT_OVER(&be, flushes, st.flushes), st.flushes,
                 "FLUSHALL's flush not counted");
    cr_assert_eq(be.ops->len(be.self), 0);
    /* The channel lost (a flush), then regained (a session). */
    pc_redis_stats_get(&be, &st);
    freeReplyObject(ext(x, "CLIENT KILL TYPE %s", "pubsub", NULL));
    cr_assert_gt(STAT_OVER(&be, sessions, st.sessions), st.sessions,
                 "subscriber did not come back");
    cr_assert_gt(STAT_OVER(&be, flushes, st.flushes), st.flushes,
                 "the lost channel's flush not counted");
    redisFree(x);
    destroy(&be);
    rs_stop(&s);
}

/* A pooled connection whose CLIENT TRACKING the server refuses (here an
 * ACL forbids it; in the wild, the subscriber just left) reads untracked:
 * its reply must not be stored, or another client's write would never
 * evict it (a mutation that stored it anyway survived). */
Test(redis, a_read_whose_tracking_was_refused_is_not_stored, .timeout = 60)
{
    struct rs_server s;
    pc_backend be;
    redisContext *x;
    redisReply *rr;
    char buf[256];

    rs_start(&s);
    be = make(&s, "", 16, PC_REDIS_TRACK_KEYS, 1000);
    x = rs_client(&s);
    cr_assert_eq(put_s(&be, "k", "v1"), PC_OK); /* (pooled, not tracking) */
    rr = ext(x, "ACL SETUSER default %s", "-client|tracking", NULL);
    cr_assert_eq(rr->type, REDIS_REPLY_STATUS, "ACL SETUSER: %s", rr->str);
    freeReplyObject(rr);
    cr_assert_eq(get_s(&be, "k", buf), PC_OK);
    cr_assert_str_eq(buf, "v1");
    cr_assert_not(near_has(&be, "k"), "an untracked read was stored");
    /* So another client's write is seen at once. */
    freeReplyObject(ext(x, "SET %s %s", "k", "v2"));
    cr_assert_eq(get_s(&be, "k", buf), PC_OK);
    cr_assert_str_eq(buf, "v2");
    redisFree(x);
    destroy(&be);
    rs_stop(&s);
}

/* Broadcast mode tracks key_prefix only: another prefix's writes send
 * nothing (a mutation that tracked every key survived). The messages come
 * in the server's order on one connection: when the name of t:y has
 * arrived, that of u:x would have too. */
Test(redis, bcast_tracks_only_the_key_prefix, .timeout = 60)
{
    struct rs_server s;
    pc_backend be;
    pc_redis_stats st0, st;
    redisContext *x;

    rs_start(&s);
    be = make(&s, "t:", 16, PC_REDIS_TRACK_BCAST, 1000);
    x = rs_client(&s);
    pc_redis_stats_get(&be, &st0);
    freeReplyObject(ext(x, "SET %s %s", "t:y", "0"));
    cr_assert_gt(STAT_OVER(&be, invalidations, st0.invalidations),
                 st0.invalidations); /* (its own message has come) */
    cr_assert(filled(&be, "y"), "no near copy of %s", "y");
    pc_redis_stats_get(&be, &st0);
    freeReplyObject(ext(x, "SET %s %s", "u:x", "1"));
    freeReplyObject(ext(x, "SET %s %s", "t:y", "1"));
    cr_assert(wait_evicted(&be, "y", now_ns()) >= 0);
    pc_redis_stats_get(&be, &st);
    cr_assert_eq(st.invalidations, st0.invalidations + 1,
                 "a write outside the prefix was broadcast");
    redisFree(x);
    destroy(&be);
    rs_stop(&s);
}

/* ---- memoizer and pool ---- */

static int slow_square(void *ctx, const void *key, size_t klen, pc_sink *out)
{
    uint64_t k, v;

    __atomic_add_fetch((long *)ctx, 1, __ATOMIC_SEQ_CST);
    memcpy(&k, key, sizeof k);
    (void)klen;
    usleep(2000);
    v = k * k;
    return pc_sink_set(out, &v, sizeof v) == PC_OK ? 0 : 1;
}

struct memo_run {
    pc_memo *m;
    long loads;
    int bad;
};

static void *memo_worker(void *p)
{
    struct memo_run *mr = p;

    for (int round = 0; round < 3; round++) {
        for (uint64_t k = 0; k < 32; k++) {
            uint64_t v = 0;
            size_t n = 0;

            if (pc_memo_call(mr->m, &k, sizeof k, slow_square, &mr->loads, &v,
                             sizeof v, &n, NULL) != PC_OK ||
                v != k * k)
                __atomic_add_fetch(&mr->bad, 1, __ATOMIC_RELAXED);
        }
    }
    return NULL;
}

Test(redis, memoizer_runs_each_load_once_per_process, .timeout = 60)
{
    struct rs_server s;
    struct memo_run mr = {0};
    pc_backend be;
    pthread_t th[6];
    uint64_t k = 5, v;
    size_t n;

    rs_start(&s);
    be = make(&s, "memo:", 256, 0, 2000);
    cr_assert_eq(pc_memo_create(&be, &mr.m), PC_OK);
    for (int i = 0; i < 6; i++)
        pthread_create(&th[i], NULL, memo_worker, &mr);
    for (int i = 0; i < 6; i++)
        pthread_join(th[i], NULL);
    cr_assert_eq(mr.bad, 0);
    cr_assert_eq(mr.loads, 32, "%ld loads for 32 keys", mr.loads);
    /* Invalidated elsewhere (deleted in Redis): loaded again. */
    {
        redisContext *x = rs_client(&s);
        char rk[32] = "memo:";

        memcpy(rk + 5, &k, sizeof k);
        uint64_t t0 = now_ns();
        size_t vn;

        freeReplyObject(redisCommand(x, "DEL %b", rk, (size_t)13));
        redisFree(x);
        /* `be` still names the backend the memoizer owns. */
        while (pc_redis_near_get(&be, &k, sizeof k, &v, sizeof v, &vn) == PC_OK)
            cr_assert_lt(now_ns() - t0, 5000000000ull * time_scale(),
                         "DEL not seen");
    }
    cr_assert_eq(pc_memo_call(mr.m, &k, sizeof k, slow_square, &mr.loads, &v,
                              sizeof v, &n, NULL),
                 PC_OK);
    cr_assert_eq(v, 25);
    cr_assert_eq(mr.loads, 33);
    pc_memo_destroy(mr.m); /* destroys the backend */
    rs_stop(&s);
}

/* A put's ttl longer than PC_REDIS_TTL_MAX is sent as that (the header:
 * "longer than PC_REDIS_TTL_MAX: that"), not as a PX Redis refuses. */
Test(redis, a_ttl_beyond_the_maximum_is_saturated)
{
    struct rs_server s;
    pc_backend be;
    redisContext *x;
    pc_put_args a = {0};
    long long t;

    rs_start(&s);
    be = make(&s, "", 0, 0, 0);
    x = rs_client(&s);
    a.ttl_ms = PC_TTL_NEVER - 1;
    cr_assert_eq(be.ops->put_ex(be.self, "k", 1, "v", 1, &a), PC_OK);
    t = pttl(x, "k");
    cr_assert(t > (long long)PC_REDIS_TTL_MAX - 60000 &&
                  t <= (long long)PC_REDIS_TTL_MAX,
              "PTTL %lld after a ttl of 2^64 - 2", t);
    a.ttl_ms = PC_REDIS_TTL_MAX + 1;
    cr_assert_eq(be.ops->put_ex(be.self, "k", 1, "w", 1, &a), PC_OK);
    t = pttl(x, "k");
    cr_assert(t > (long long)PC_REDIS_TTL_MAX - 60000 &&
                  t <= (long long)PC_REDIS_TTL_MAX,
              "PTTL %lld after a ttl of 2^48 + 1", t);
    redisFree(x);
    destroy(&be);
    rs_stop(&s);
}

/* ---- values larger than a socket buffer (review-mut17) ---- */

/* A value of 16 MiB goes out in many partial sends and comes back in many
 * reads: every byte of the SET must be sent (a partial send taken for the
 * whole left the server waiting for the rest, and the put timed out), and
 * the GET's reply, split over hundreds of reads, decodes to the same
 * bytes, from a plain backend and through the near tier's fill. */
static void big_values_round_trip(size_t near)
{
    enum { BIG = 16 << 20 };
    struct rs_server s;
    pc_backend be;
    char *big = malloc(BIG), *got = malloc(BIG);
    size_t n = 0;

    cr_assert(big != NULL && got != NULL);
    for (size_t i = 0; i < BIG; i++)
        big[i] = (char)('a' + (i * 7 + i / 4099) % 26);
    rs_start(&s);
    be = make(&s, "", near, PC_REDIS_TRACK_KEYS, 5000);
    for (int round = 0; round < 2; round++) {
        big[round] = (char)('A' + round); /* each round its own bytes */
        cr_assert_eq(be.ops->put(be.self, "big", 3, big, BIG), PC_OK,
                     "put of %d bytes (round %d)", BIG, round);
        memset(got, 0, BIG);
        n = 0;
        cr_assert_eq(be.ops->get(be.self, "big", 3, got, BIG, &n), PC_OK,
                     "get of %d bytes (round %d)", BIG, round);
        cr_assert_eq(n, (size_t)BIG);
        cr_assert(memcmp(got, big, BIG) == 0, "round %d: bytes differ", round);
    }
    /* The connection is still in step: a small request after them. */
    cr_assert_eq(be.ops->put(be.self, "s", 1, "v", 1), PC_OK);
    n = 0;
    cr_assert_eq(be.ops->get(be.self, "s", 1, got, 8, &n), PC_OK);
    cr_assert(n == 1 && got[0] == 'v');
    destroy(&be);
    rs_stop(&s);
    free(big);
    free(got);
}

Test(redis, values_larger_than_a_socket_buffer_round_trip_plain, .timeout = 60)
{
    big_values_round_trip(0);
}

Test(redis, values_larger_than_a_socket_buffer_round_trip_near, .timeout = 60)
{
    big_values_round_trip(16);
}

/* Long keys: a request's pipeline (CLIENT TRACKING, GET, PTTL of a key of
 * hundreds of bytes) outgrows its inline buffer while commands are
 * appended, and the commands already in it must move with it (a mutation
 * that dropped them on growth survived: every key here was short). Near
 * tier, per-key tracking: the fill is stored and another client's write
 * evicts it. */
Test(redis, long_keys_round_trip_and_are_tracked, .timeout = 60)
{
    static const size_t lens[] = {200, 300, 600, PC_KEY_MAX};
    struct rs_server s;
    pc_backend be;
    redisContext *x;
    static char key[PC_KEY_MAX], val[64], got[64];
    size_t n;

    rs_start(&s);
    be = make(&s, "p:", 16, PC_REDIS_TRACK_KEYS, 1000);
    x = rs_client(&s);
    for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
        size_t kl = lens[i];
        redisReply *r;
        uint64_t t0;

        memset(key, 'a' + (int)i, kl);
        snprintf(val, sizeof val, "v%zu", kl);
        cr_assert_eq(be.ops->put(be.self, key, kl, val, strlen(val)), PC_OK,
                     "put, key of %zu bytes", kl);
        t0 = now_ns();
        do {
            n = 0;
            cr_assert_eq(be.ops->get(be.self, key, kl, got, sizeof got, &n),
                         PC_OK, "get, key of %zu bytes", kl);
            cr_assert(n == strlen(val) && memcmp(got, val, n) == 0,
                      "key of %zu bytes: wrong value", kl);
            cr_assert_lt(now_ns() - t0, 2000000000ull,
                         "key of %zu bytes never filled", kl);
        } while (pc_redis_near_get(&be, key, kl, got, sizeof got, &n) != PC_OK);
        /* Another client's write evicts it: it was tracked. */
        r = redisCommand(x, "SET p:%b x", key, kl);
        cr_assert(r != NULL && r->type == REDIS_REPLY_STATUS);
        freeReplyObject(r);
        t0 = now_ns();
        while (pc_redis_near_get(&be, key, kl, got, sizeof got, &n) == PC_OK)
            cr_assert_lt(now_ns() - t0, (uint64_t)INVAL_BOUND_MS * 1000000u,
                         "key of %zu bytes: near copy kept", kl);
        n = 0;
        cr_assert_eq(be.ops->get(be.self, key, kl, got, sizeof got, &n), PC_OK);
        cr_assert(n == 1 && got[0] == 'x');
    }
    redisFree(x);
    destroy(&be);
    rs_stop(&s);
}
