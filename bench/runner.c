/*
 * runner: warm-up, timed runs, latency sampling, interleaving.
 *
 * Method, and why.
 *  - Warm-up: a bounded cache is created once per (distribution, mix,
 *    peer) and warmed single-threaded by cache-aside over a separate stream
 *    of --warm ops (after the workload's fill keys, if it has any), so
 *    every timed run starts from a full, steady-state cache. Unbounded peers
 * (raw ck_hs, libcuckoo) are instead pre-filled with the C hottest keys: the
 * content of an ideal cache of capacity C.
 *  - Mixes: "get" = 100% get after warm-up; "90-10" = 90% get / 10% put
 *    (put of the same key stream, so it replaces or inserts-and-evicts);
 *    "aside" = get, put on miss (oneTBB: operator[], which loads on miss);
 *    "put" = 100% put of the stream's keys (Caffeine's "Write 100%"): into
 *    a full cache, so a put of a key not cached evicts one. Peers without
 *    put do not run it (tbb-lru only loads; ck_hs's put is for pre-filling
 *    only); unbounded ones (cuckoo) do, as ceilings: their puts only add
 *    keys.
 *  - Streams: each run continues a thread's stream where its previous run
 *    stopped (replaying the same prefix every run would hand a slow cache
 *    hits it only has because it saw those keys one run earlier), and
 *    wraps at its end: the stream is long enough that no cache can learn
 *    it (workload.c).
 *  - Timing: T threads (pinned to CPU i mod ncpu unless --no-pin) wait on a
 *    barrier; the main thread takes the start time, sleeps --duration, sets
 *    a stop flag the workers read every 256 ops; throughput is total ops
 *    over (last worker's end - start). Medians over --runs runs.
 *  - Latency: --lat-runs extra runs per point (default 3), not counted in
 *    throughput, interleaved as the timed runs are, in which every
 *    --lat-every'th op of each thread is bracketed by clock_gettime; the
 *    median cost of an empty clock_gettime pair is subtracted, and the
 *    percentiles come from the runs' samples pooled. So the throughput
 *    runs carry no sampling overhead at all. --lat-every 0 (and the
 *    expiry/byte-bound variants) skip them.
 *  - Interleaving: for each thread count, run 1 of every peer, then run 2
 *    of every peer in reverse order, and so on, each peer continuing its
 *    own streams. A shared machine's load drifts over seconds; measured
 *    peer after peer, a ratio between two peers would compare different
 *    moments, interleaved it compares neighbouring ones, and the medians
 *    absorb the rest. The order alternates because a peer's place in a
 *    round showed: with one library A/B'd against a byte-identical copy
 *    (--lib-b), the copy, always run right after it, measured 2-9% faster
 *    in 11 of 12 comparisons (1 thread, put and aside, both
 *    distributions); alternating, about 2% (perhaps the copy's own
 *    thread-local and global state, where the original shares its library
 *    with the clock peer: not established). Every peer's cache is
 *    therefore created and warmed up front and lives until the mix is
 *    done. The frequency policy's copy still measured 1.03-1.09x (clock's
 *    0.99-1.03x; README, "What the frequency policy's ghost costs"): read
 *    an A/B of it in both orders.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "results.h"
#include "runner.h"
#include "util.h"

#define LAT_MAX_SAMPLES (1u << 20)

static inline uint64_t now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return (x > y) - (x < y);
}

static double median(const double *v, unsigned n)
{
    double s[BENCH_MAX_RUNS];

    memcpy(s, v, n * sizeof *s);
    qsort(s, n, sizeof *s, cmp_double);
    return n % 2 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
}

bool runner_can_run(const struct bench_peer *p, enum mix m)
{
    switch (m) {
    case MIX_GET:
        return (p->caps & PEER_GET) != 0;
    case MIX_9010:
        return (p->caps & (PEER_GET | PEER_PUT)) == (PEER_GET | PEER_PUT);
    case MIX_ASIDE:
        return (p->caps & (PEER_GET | PEER_PUT)) == (PEER_GET | PEER_PUT) ||
               (p->caps & PEER_LOAD);
    case MIX_PUT:
        return (p->caps & PEER_PUT) != 0;
    default:
        return false;
    }
}

static inline int op_aside(const struct bench_peer *p, void *h, uint64_t k)
{
    uint64_t v;

    if (p->load != NULL)
        return p->load(h, k, &v);
    if (p->get(h, k, &v))
        return 1;
    p->put(h, k, bench_value_of(k));
    return 0;
}

int runner_aside(const struct bench_peer *p, void *h, uint64_t k)
{
    return op_aside(p, h, k);
}

/* Warm (bounded peers) or pre-fill (unbounded ones); see the top comment. */
void runner_warm(const struct bench_peer *p, void *h, const struct workload *w,
                 const struct bench_opts *o)
{
    if (p->caps & PEER_EVICTS) {
        for (size_t i = 0; i < w->nfill; i++)
            op_aside(p, h, w->fill[i]);
        for (size_t i = 0; i < o->warm_ops; i++)
            op_aside(p, h, w->warm[i]);
    } else {
        for (size_t r = 0; r < o->capacity && r < o->keys; r++)
            p->put(h, key_of_rank(r), bench_value_of(key_of_rank(r)));
    }
    if (p->warmed != NULL)
        p->warmed(h);
}

/* ------------------------------------------------------------- timed run */

struct worker {
    pthread_t tid;
    const struct bench_peer *peer;
    void *h;
    enum mix mix;
    const uint64_t *keys;
    const uint8_t *isput;
    size_t mask;
    size_t *pos; /* in: where to start in the stream; out: where it ended */
    unsigned lat_every; /* 0: throughput run */
    uint32_t *lat;
    size_t nlat;
    uint64_t ops, gets, hits;
    double end;
    pthread_barrier_t *start;
    volatile int *stop;
};

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    const struct bench_peer *p = w->peer;
    void *h = w->h;
    size_t i = *w->pos;
    uint64_t ops = 0, gets = 0, hits = 0, v;
    unsigned every = w->lat_every, tick = 0;

    pthread_barrier_wait(w->start);
    while (!__atomic_load_n(w->stop, __ATOMIC_RELAXED)) {
        for (int j = 0; j < 256; j++, i++) {
            uint64_t k = w->keys[i & w->mask];
            uint64_t t0 = 0;
            bool sample = every && ++tick == every;

            if (sample)
                t0 = now_ns();
            switch (w->mix) {
            case MIX_GET:
                gets++;
                hits += (uint64_t)p->get(h, k, &v);
                break;
            case MIX_9010:
                if (w->isput[i & w->mask]) {
                    p->put(h, k, bench_value_of(k));
                } else {
                    gets++;
                    hits += (uint64_t)p->get(h, k, &v);
                }
                break;
            case MIX_PUT:
                p->put(h, k, bench_value_of(k));
                break;
            default:
                gets++;
                hits += (uint64_t)op_aside(p, h, k);
                break;
            }
            if (sample) {
                uint64_t d = now_ns() - t0;

                tick = 0;
                if (w->nlat < LAT_MAX_SAMPLES)
                    w->lat[w->nlat++] =
                        d > UINT32_MAX ? UINT32_MAX : (uint32_t)d;
            }
        }
        ops += 256;
    }
    w->end = bench_now();
    *w->pos = i & w->mask;
    w->ops = ops;
    w->gets = gets;
    w->hits = hits;
    return NULL;
}

struct run_result {
    double mops, hit;
    uint32_t *lat;
    size_t nlat;
};

static void run_once(const struct bench_opts *o, const struct bench_peer *p,
                     void *h, enum mix m, struct workload *wl, unsigned nthr,
                     unsigned lat_every, struct run_result *r)
{
    struct worker *w = calloc(nthr, sizeof *w);
    pthread_barrier_t start;
    volatile int stop = 0;
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    double t0, end = 0;
    uint64_t ops = 0, gets = 0, hits = 0;

    if (w == NULL)
        exit(1);
    pthread_barrier_init(&start, NULL, nthr + 1);
    for (unsigned t = 0; t < nthr; t++) {
        pthread_attr_t attr;

        w[t] = (struct worker){.peer = p,
                               .h = h,
                               .mix = m,
                               .keys = wl->keys[t],
                               .isput = wl->isput[t],
                               .mask = o->stream_len - 1,
                               .pos = &wl->pos[t],
                               .lat_every = lat_every,
                               .start = &start,
                               .stop = &stop};
        if (lat_every)
            w[t].lat = bench_xmalloc(LAT_MAX_SAMPLES * sizeof(uint32_t));
        pthread_attr_init(&attr);
        if (o->pin && ncpu > 0) {
            cpu_set_t set;

            CPU_ZERO(&set);
            CPU_SET(t % (unsigned)ncpu, &set);
            pthread_attr_setaffinity_np(&attr, sizeof set, &set);
        }
        if (pthread_create(&w[t].tid, &attr, worker_main, &w[t]) != 0) {
            fprintf(stderr, "purecache-bench: pthread_create failed\n");
            exit(1);
        }
        pthread_attr_destroy(&attr);
    }
    pthread_barrier_wait(&start);
    t0 = bench_now();
    {
        struct timespec d = {
            .tv_sec = (time_t)o->duration,
            .tv_nsec =
                (long)((o->duration - (double)(time_t)o->duration) * 1e9)};
        while (nanosleep(&d, &d) != 0 && errno == EINTR)
            ;
    }
    __atomic_store_n(&stop, 1, __ATOMIC_RELAXED);
    r->nlat = 0;
    for (unsigned t = 0; t < nthr; t++) {
        pthread_join(w[t].tid, NULL);
        ops += w[t].ops;
        gets += w[t].gets;
        hits += w[t].hits;
        if (w[t].end > end)
            end = w[t].end;
        r->nlat += w[t].nlat;
    }
    r->mops = (double)ops / (end - t0) / 1e6;
    r->hit = gets ? (double)hits / (double)gets : 0;
    r->lat = NULL;
    if (lat_every) {
        size_t k = 0;

        r->lat = bench_xmalloc((r->nlat + 1) * sizeof(uint32_t));
        for (unsigned t = 0; t < nthr; t++) {
            memcpy(r->lat + k, w[t].lat, w[t].nlat * sizeof(uint32_t));
            k += w[t].nlat;
            free(w[t].lat);
        }
    }
    pthread_barrier_destroy(&start);
    free(w);
}

/* --------------------------------------------------------------- latency */

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

    return (x > y) - (x < y);
}

static uint32_t timer_overhead_ns;

uint32_t runner_init(void)
{
    uint32_t s[10001];

    for (int i = 0; i < 10001; i++) {
        uint64_t a = now_ns(), b = now_ns();

        s[i] = (uint32_t)(b - a);
    }
    qsort(s, 10001, sizeof *s, cmp_u32);
    timer_overhead_ns = s[5000];
    return timer_overhead_ns;
}

static double percentile(const uint32_t *sorted, size_t n, double q)
{
    double v;

    if (n == 0)
        return NAN;
    v = (double)sorted[(size_t)(q * (double)(n - 1))];
    v -= timer_overhead_ns;
    return v < 0 ? 0 : v;
}

/* ------------------------------------------------------------ one mix */

struct live_peer {
    const struct bench_peer *p;
    void *h;
    size_t *pos; /* this peer's stream positions, one per thread */
    size_t pt;   /* index of its current point */
};

/* The latency runs of every live peer at nthr threads, interleaved as the
 * timed runs are; each point's percentiles come from the samples of all
 * its runs, pooled (one run of 0.5 s at 5 Mops/s samples about 39,000 ops,
 * so its p99.9 rests on the 39 slowest: three runs give it 117). */
static void latency_block(const struct bench_opts *o, struct workload *wl,
                          enum mix m, struct live_peer *live, int nlive,
                          unsigned nthr, int step, int steps)
{
    uint32_t *pool[BENCH_MAX_PEERS] = {NULL};
    size_t npool[BENCH_MAX_PEERS] = {0};

    for (unsigned r = 0; r < o->lat_runs; r++) {
        for (int k = 0; k < nlive; k++) {
            int li = (r & 1) ? nlive - 1 - k : k;
            struct live_peer *lp = &live[li];
            struct run_result rr;

            bench_progress("[%d/%d] %s %s %-11s threads=%u latency run %u/%u",
                           step + li, steps, wl->dist, mix_name[m], lp->p->name,
                           nthr, r + 1, o->lat_runs);
            memcpy(wl->pos, lp->pos, wl->nthr * sizeof *wl->pos);
            run_once(o, lp->p, lp->h, m, wl, nthr, o->lat_every, &rr);
            memcpy(lp->pos, wl->pos, wl->nthr * sizeof *wl->pos);
            pool[li] = bench_xrealloc(pool[li], (npool[li] + rr.nlat + 1) *
                                                    sizeof *pool[li]);
            memcpy(pool[li] + npool[li], rr.lat, rr.nlat * sizeof *rr.lat);
            npool[li] += rr.nlat;
            free(rr.lat);
        }
    }
    for (int li = 0; li < nlive; li++) {
        struct point *pt = results_point(live[li].pt);

        qsort(pool[li], npool[li], sizeof *pool[li], cmp_u32);
        pt->p50 = percentile(pool[li], npool[li], 0.50);
        pt->p99 = percentile(pool[li], npool[li], 0.99);
        pt->p999 = percentile(pool[li], npool[li], 0.999);
        pt->nlat = npool[li];
        free(pool[li]);
    }
}

/* Run r of every live peer at nthr threads (odd runs in reverse order:
 * see Interleaving above), then their latency runs. */
static void run_block(const struct bench_opts *o, struct workload *wl,
                      enum mix m, struct live_peer *live, int nlive,
                      unsigned nthr, int step, int steps)
{
    for (unsigned r = 0; r < o->runs; r++) {
        for (int k = 0; k < nlive; k++) {
            int li = (r & 1) ? nlive - 1 - k : k;
            struct live_peer *lp = &live[li];
            struct point *pt = results_point(lp->pt);
            struct run_result rr;

            bench_progress("[%d/%d] %s %s %-11s threads=%u run %u/%u",
                           step + li, steps, wl->dist, mix_name[m], lp->p->name,
                           nthr, r + 1, o->runs);
            memcpy(wl->pos, lp->pos, wl->nthr * sizeof *wl->pos);
            run_once(o, lp->p, lp->h, m, wl, nthr, 0, &rr);
            memcpy(lp->pos, wl->pos, wl->nthr * sizeof *wl->pos);
            pt->mops[r] = rr.mops;
            pt->run_hit[r] = rr.hit;
            if (r == 0 || rr.mops < pt->min)
                pt->min = rr.mops;
            if (r == 0 || rr.mops > pt->max)
                pt->max = rr.mops;
            pt->hit += rr.hit / o->runs;
        }
    }
    for (int li = 0; li < nlive; li++) {
        struct point *pt = results_point(live[li].pt);

        pt->med = median(pt->mops, o->runs);
        pt->p50 = pt->p99 = pt->p999 = NAN;
        pt->nlat = 0;
    }
    if (o->lat_every != 0)
        latency_block(o, wl, m, live, nlive, nthr, step, steps);
}

void runner_mix(const struct bench_opts *o, struct workload *wl, enum mix m,
                const struct bench_peer *peers, int npeers, int *step,
                int steps, const char *set)
{
    struct live_peer live[BENCH_MAX_PEERS];
    int nlive = 0;

    for (int pi = 0; pi < npeers; pi++) {
        const struct bench_peer *p = &peers[pi];
        struct live_peer *lp = &live[nlive];

        if (!runner_can_run(p, m))
            continue;
        bench_progress("[%d/%d] %s %s %s: create + warm-up", *step, steps,
                       wl->dist, mix_name[m], p->name);
        lp->pos = calloc(wl->nthr, sizeof *lp->pos);
        lp->h = lp->pos != NULL ? p->create(p->ctx, o->capacity) : NULL;
        if (lp->h == NULL) {
            fprintf(stderr, "purecache-bench: %s: create failed\n", p->name);
            free(lp->pos);
            continue;
        }
        lp->p = p;
        runner_warm(p, lp->h, wl, o);
        nlive++;
    }
    for (unsigned ti = 0; ti < o->nthreads; ti++) {
        unsigned nthr = o->threads[ti];

        for (int li = 0; li < nlive; li++) {
            size_t i = results_add_point();
            struct point *pt = results_point(i);

            pt->set = set;
            pt->dist = wl->dist;
            pt->mix = m;
            pt->peer = live[li].p->name;
            pt->threads = nthr;
            pt->runs = o->runs;
            live[li].pt = i;
        }
        run_block(o, wl, m, live, nlive, nthr, *step, steps);
        *step += nlive;
    }
    bench_progress_done();
    for (int li = 0; li < nlive; li++) {
        live[li].p->destroy(live[li].h);
        free(live[li].pos);
    }
}
