/*
 * runner: the timed part. Creates and warms every peer's cache for one
 * (distribution, mix), runs the peers' timed runs interleaved, then one
 * latency-sampling run per point, and records a point per (peer, thread
 * count) in results.
 */
#ifndef BENCH_RUNNER_H
#define BENCH_RUNNER_H

#include <stdbool.h>
#include <stdint.h>

#include "opts.h"
#include "peer.h"
#include "workload.h"

/* Whether peer p can express mix m (see peer.h's capabilities). */
bool runner_can_run(const struct bench_peer *p, enum mix m);

/* Measure the cost of an empty clock_gettime pair (subtracted from every
 * latency sample); call once before runner_mix. Returns it in ns. */
uint32_t runner_init(void);

/* Run mix m of workload wl on every peer that can run it, at every thread
 * count of o (o->duration per run; no latency run when o->lat_every is 0).
 * step/steps number the progress line; *step advances by one per (peer,
 * thread count). Adds the points to results in blocks, one block per
 * thread count, the peers in the same order in each, each point tagged
 * with `set` (NULL for the main tables; see struct point). */
void runner_mix(const struct bench_opts *o, struct workload *wl, enum mix m,
                const struct bench_peer *peers, int npeers, int *step,
                int steps, const char *set);

/* Warm a freshly created cache of peer p up as runner_mix does (bounded
 * peers: the workload's fill and warm-up keys by cache-aside; unbounded
 * ones: the C hottest keys), then call its warmed hook. */
void runner_warm(const struct bench_peer *p, void *h, const struct workload *w,
                 const struct bench_opts *o);

/* One cache-aside op on key k (get, put on a miss; or load): 1 on a hit. */
int runner_aside(const struct bench_peer *p, void *h, uint64_t k);

#endif
