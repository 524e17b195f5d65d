/*
 * backend: the Redis backend's state, shared by backend.c (options, pool,
 * operations) and subscriber.c (the invalidation thread).
 */
#ifndef PC_REDIS_BACKEND_H
#define PC_REDIS_BACKEND_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "conn.h"
#include "near.h"
#include "purecache_redis.h"

/* One pooled connection; everything in it belongs to the thread that
 * took the slot (backend.c, POOL). */
struct pc__redis_slot {
    int busy; /* atomic: 1 while a thread holds the slot */
    struct pc__redis_conn conn;
    /* Per-key mode: the near state (session) whose subscriber this
     * connection redirects its tracking to; 0 = tracking off. */
    uint64_t track_state;
} __attribute__((aligned(64)));

struct pc__redis {
    char *host;
    char *prefix;
    size_t plen;
    int port;
    unsigned int timeout_ms, nslots, tracking;
    uint64_t ttl_ms;
    struct pc__near *near; /* NULL: no near tier */
    struct pc__redis_slot *slots;

    /* Requests waiting for a slot when every one was busy (backend.c,
     * POOL), in arrival order, under wait_mu; waiters counts them
     * (atomic: a release with none takes no lock). */
    pthread_mutex_t wait_mu;
    pthread_condattr_t wait_attr; /* CLOCK_MONOTONIC */
    struct pc__redis_waiter *wait_head, *wait_tail;
    unsigned int waiters;
    int wait_init; /* wait_mu and wait_attr were initialised */

    /* The subscriber thread (near tier only). */
    pthread_t sub_thread;
    int wake[2];  /* destroy writes wake[1]; the thread polls wake[0] */
    int stopping; /* atomic */

    /* Recent round trips (backend.c, REQUEST): a low estimate of the
     * successful ones, in ns (relaxed atomics; 0 until the first). */
    uint64_t rtt_ns;

    /* Counters (relaxed atomics). */
    uint64_t requests, errors, connects;
};

/* subscriber.c */
int pc__redis_subscriber_start(struct pc__redis *r);
void pc__redis_subscriber_stop(struct pc__redis *r);

/* backend.c: close a pooled connection (caller holds slot s), flushing the
 * near tier if the server may have tracked keys through it. */
void pc__redis_slot_drop(struct pc__redis *r, struct pc__redis_slot *s);

/* backend.c: take slot s if it is free (true), without waiting; and
 * release a slot taken, handing it to the request that has waited
 * longest, if any. Every holder of a slot releases it through this. */
bool pc__redis_slot_try(struct pc__redis_slot *s);
void pc__redis_slot_release(struct pc__redis *r, struct pc__redis_slot *s);

#ifdef PC_DEBUG
/* Test hook (debug builds): if set, called by every fill (a get whose
 * reply the near tier may store) after the fill began, before it takes a
 * pooled connection; a test parks a thread there. */
extern void (*pc__redis_debug_fill_hook)(void);
#endif

#endif
