/*
 * near: the in-process tier of a Redis backend, and its coherence protocol
 * (the argument is in near.c's top comment).
 */
#ifndef PC_REDIS_NEAR_H
#define PC_REDIS_NEAR_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "purecache.h"

#define PC__NEAR_STRIPES 256

struct pc__near_stripe {
    pthread_mutex_t mu;
    uint64_t gen; /* bumped (under mu) by every invalidation that hashes
                     here; read atomically by fills */
} __attribute__((aligned(64)));

struct pc__near {
    pc_cache *cache; /* values: 8-byte deadline (ns, 0 = none), then bytes */
    const char *prefix;
    size_t plen;
    /* Atomics. */
    uint64_t epoch;  /* bumped by every flush and session change */
    uint64_t state;  /* (session << 1) | active */
    uint64_t sub_id; /* the current session's subscriber client id */
    uint64_t session;
    /* Counters (relaxed atomics). */
    uint64_t fills, dropped, invalidations, flushes, sessions;
    struct pc__near_stripe stripes[PC__NEAR_STRIPES];
};

/* A fill in progress: what it saw before its GET was sent. */
struct pc__near_fill {
    uint64_t state, epoch, gen, sub_id;
    unsigned stripe;
    int armed; /* the near tier was active: the reply may be stored */
};

pc_status pc__near_create(struct pc__near **out, size_t capacity,
                          const char *prefix, size_t plen);
void pc__near_destroy(struct pc__near *n);
size_t pc__near_len(const struct pc__near *n);
int pc__near_is_active(const struct pc__near *n);

/* A live near copy: PC_OK / PC_ERANGE as pc_get, else PC_NOTFOUND. */
pc_status pc__near_read(struct pc__near *n, const void *key, size_t klen,
                        void *buf, size_t bufcap, size_t *vlen);

/* Call before the GET is sent; arms f only while the tier is active. */
void pc__near_fill_begin(struct pc__near *n, const void *key, size_t klen,
                         struct pc__near_fill *f);
/* Store the reply iff nothing invalidated it since fill_begin. */
void pc__near_fill_end(struct pc__near *n, const struct pc__near_fill *f,
                       const void *key, size_t klen, const void *val,
                       size_t vlen, uint64_t deadline_ns);

/* Drop key (this process's own key, without prefix). */
void pc__near_invalidate(struct pc__near *n, const void *key, size_t klen);
/* Drop a key named by the server (with prefix; others are ignored). */
void pc__near_invalidate_remote(struct pc__near *n, const void *rkey,
                                size_t rlen);
/* Drop everything and void every fill in flight. */
void pc__near_flush(struct pc__near *n);
/* The invalidation channel is up (subscriber client id sub_id) / down. */
void pc__near_session_start(struct pc__near *n, uint64_t sub_id);
void pc__near_session_end(struct pc__near *n);

#endif
