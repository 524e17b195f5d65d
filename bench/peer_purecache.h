/*
 * peer_purecache: what the harness can ask of a purecache peer beyond the
 * common vtable (peer.h): configured variants of a policy (a time to live,
 * a byte bound, values of other sizes), and the cache's own figures
 * (entries, bytes, statistics of the last cache a variant ran).
 */
#ifndef BENCH_PEER_PURECACHE_H
#define BENCH_PEER_PURECACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "peer.h"

/* Largest value a variant stores (its gets copy into a buffer this big). */
#define PEER_PC_VALUE_MAX 4096u

/* A variant of a purecache peer. Zero-initialise, then set what differs
 * from the plain peer (8-byte values, capacity from the harness, no ttl,
 * no byte bound). */
struct peer_pc_variant {
    const char *suffix;   /* appended to the base peer's name: "+ttl" */
    const char *what;     /* legend line; NULL: one is written */
    uint64_t ttl_ms;      /* pc_options.ttl_ms (0: none) */
    uint64_t warm_ttl_ms; /* > 0: until warmed, puts get a ttl drawn
                             uniformly from 1..warm_ttl_ms (pc_put_ex) */
    uint64_t max_bytes;   /* pc_options.max_bytes (0: none) */
    size_t capacity;      /* > 0: replaces the capacity the harness asks */
    uint32_t vmin, vmax;  /* value bytes, uniform in [vmin, vmax] as a
                             function of the key (0: 8-byte values) */
};

/* What a variant's last cache saw between the end of its warm-up and its
 * destruction (filled by its destroy; stale until a cache was destroyed). */
struct peer_pc_run {
    bool valid;
    double seconds;       /* wall time from warmed to destroy */
    uint64_t expirations; /* pc_stats, after a final pc_expire */
    uint64_t evictions;   /* pc_stats */
    size_t len;           /* pc_len before that pc_expire */
    uint64_t bytes;       /* pc_bytes, likewise */
};

/* Whether p is a purecache peer (any policy, plain or a variant). */
bool peer_purecache_is(const struct bench_peer *p);

/* A variant of the purecache peer base, in *out: same library and policy,
 * its own name and configuration. Returns 0, or -1 (message on stderr) when
 * the library lacks what the variant needs (pc_put_ex, pc_len, ...). Free
 * with peer_purecache_variant_free. */
int peer_purecache_variant(struct bench_peer *out,
                           const struct bench_peer *base,
                           const struct peer_pc_variant *v);
void peer_purecache_variant_free(struct bench_peer *p);

/* The figures of the variant's last destroyed cache (see above). */
struct peer_pc_run peer_purecache_last_run(const struct bench_peer *p);

/* Of a live handle: pc_len and pc_bytes. */
size_t peer_purecache_len(void *handle);
uint64_t peer_purecache_bytes(void *handle);

#endif
