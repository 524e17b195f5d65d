/*
 * backend: the Redis backend's state, shared by backend.c (options, pool,
 * operations) and subscriber.c (the invalidation thread).
 */
#ifndef PC_REDIS_BACKEND_H
#define PC_REDIS_BACKEND_H

#include <pthread.h>
#include <stdint.h>

#include "conn.h"
#include "near.h"
#include "purecache_redis.h"

/* One pooled connection; everything in it is guarded by mu. */
struct pc__redis_slot {
    pthread_mutex_t mu;
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

    /* The subscriber thread (near tier only). */
    pthread_t sub_thread;
    int wake[2];  /* destroy writes wake[1]; the thread polls wake[0] */
    int stopping; /* atomic */

    /* Counters (relaxed atomics). */
    uint64_t requests, errors, connects;
};

/* subscriber.c */
int pc__redis_subscriber_start(struct pc__redis *r);
void pc__redis_subscriber_stop(struct pc__redis *r);

/* backend.c: close a pooled connection (caller holds s->mu), flushing the
 * near tier if the server may have tracked keys through it. */
void pc__redis_slot_drop(struct pc__redis *r, struct pc__redis_slot *s);

#endif
