/*
 * purecache-bench: the benchmark harness (the README's main job).
 *
 * What it measures, per (key distribution, mix, peer, thread count):
 * throughput (Mops/s, median of --runs timed runs), hit ratio, latency
 * percentiles from a separate sampled run, and once per peer the memory per
 * entry beyond key and value. Then, in trace mode, the miss ratio of both
 * purecache policies and a reference LRU on real traces. All peers run in
 * the same process, on the same pre-generated keys, through the same loop.
 *
 * Method, and why.
 *  - Keys: 8-byte integers, 8-byte values. Synthetic streams are Zipf
 *    (exponent --skew, by inverse CDF over the N ranks) or uniform over N
 *    distinct keys; a rank is turned into a key with a bijective 64-bit mix
 *    so that hot keys are not neighbouring integers. Every thread gets its
 *    own stream of --stream keys (and, for 90/10, its own put/get flags),
 *    generated before any timing; the timed loop only indexes an array.
 *    Each run continues a thread's stream where its previous run stopped
 *    (replaying the same prefix every run would hand a slow cache hits it
 *    only has because it saw those keys one run earlier).
 *  - Warm-up: a bounded cache is created once per (distribution, mix, peer)
 *    and warmed single-threaded by cache-aside over a separate stream of
 *    --warm ops, so every timed run starts from a full, steady-state cache.
 *    Unbounded peers (raw ck_hs, libcuckoo) are instead pre-filled with the
 *    C hottest keys: the content of an ideal cache of capacity C.
 *  - Mixes: "get" = 100% get after warm-up; "90-10" = 90% get / 10% put
 *    (put of the same key stream, so it replaces or inserts-and-evicts);
 *    "aside" = get, put on miss (oneTBB: operator[], which loads on miss).
 *  - Timing: T threads (pinned to CPU i mod ncpu unless --no-pin) wait on a
 *    barrier; the main thread takes the start time, sleeps --duration, sets
 *    a stop flag the workers read every 256 ops; throughput is total ops
 *    over (last worker's end - start). Medians over --runs runs.
 *  - Latency: one extra run per point, not counted in throughput, in which
 *    every --lat-every'th op of each thread is bracketed by clock_gettime;
 *    the median cost of an empty clock_gettime pair is subtracted. So the
 *    throughput runs carry no sampling overhead at all.
 *  - Memory: jemalloc's stats.allocated (after an "epoch" refresh and a
 *    tcache flush) before creating a cache and after filling it with C
 *    distinct keys (purecache: after pc_reclaim, so retired garbage is not
 *    counted): (delta - 16 C) / C bytes per entry. It includes everything
 *    the cache allocates (index, shards, per-thread records), amortised.
 *
 * Both purecache policies are loaded from their shared libraries with
 * dlopen (see peer_purecache.c). The harness is single-binary and prints a
 * table on stdout, a progress line on stderr, CSV files and gnuplot PNGs
 * into --out (default bench-out/).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <jemalloc/jemalloc.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"

#ifndef PC_BENCH_LIB_CLOCK
#define PC_BENCH_LIB_CLOCK "libpurecache_clock.so"
#endif
#ifndef PC_BENCH_LIB_LRU
#define PC_BENCH_LIB_LRU "libpurecache_lru.so"
#endif
#ifndef PC_BENCH_TRACE_DIR
#define PC_BENCH_TRACE_DIR "../shared/traces"
#endif

enum mix { MIX_GET, MIX_9010, MIX_ASIDE, MIX_COUNT };
static const char *const mix_name[MIX_COUNT] = {"get", "90-10", "aside"};
static const char *const mix_desc[MIX_COUNT] = {
    "100% get after warm-up", "90% get / 10% put",
    "cache-aside: get, put on miss"};

#define MAX_PEERS 8
#define MAX_RUNS 64

struct point {
    const char *dist;
    enum mix mix;
    const char *peer;
    unsigned threads;
    double mops[MAX_RUNS];
    unsigned runs;
    double med, min, max, hit;
    double p50, p99, p999;
};

static struct point *points;
static size_t npoints, points_cap;

/* ------------------------------------------------------------------ util */

double bench_now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static inline uint64_t now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static bool progress_tty;
static int progress_len;

void bench_progress(const char *fmt, ...)
{
    char buf[256];
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (progress_tty) {
        fprintf(stderr, "\r%s%*s", buf, progress_len > n ? progress_len - n : 0,
                "");
        progress_len = n;
    } else {
        /* Not a terminal (a log): a heartbeat every few seconds. */
        static double last;
        double t = bench_now();

        if (t - last >= 5.0) {
            fprintf(stderr, "%s\n", buf);
            last = t;
        }
    }
}

void bench_progress_done(void)
{
    if (progress_tty && progress_len > 0)
        fprintf(stderr, "\r%*s\r", progress_len, "");
    progress_len = 0;
}

FILE *bench_open_out(const struct bench_opts *o, const char *name)
{
    char path[4096];
    FILE *f;

    snprintf(path, sizeof path, "%s/%s", o->out_dir, name);
    f = fopen(path, "w");
    if (f == NULL) {
        fprintf(stderr, "purecache-bench: %s: %s\n", path, strerror(errno));
        exit(1);
    }
    return f;
}

bool bench_list_has(const char *list, const char *item)
{
    size_t n = strlen(item);
    const char *p = list;

    if (strcmp(list, "all") == 0)
        return true;
    while (*p) {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);

        if (len == n && strncmp(p, item, n) == 0)
            return true;
        if (e == NULL)
            break;
        p = e + 1;
    }
    return false;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return (x > y) - (x < y);
}

static double median(const double *v, unsigned n)
{
    double s[MAX_RUNS];

    memcpy(s, v, n * sizeof *s);
    qsort(s, n, sizeof *s, cmp_double);
    return n % 2 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
}

/* splitmix64: the generator for every stream, and (its finalizer alone) a
 * bijection from ranks to keys. */
static inline uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static inline uint64_t rng_next(uint64_t *s)
{
    return mix64(*s += 0x9e3779b97f4a7c15ull);
}

static inline double rng_unit(uint64_t *s)
{
    return (double)(rng_next(s) >> 11) * 0x1.0p-53;
}

static inline uint64_t key_of_rank(uint64_t rank)
{
    return mix64(rank);
}

/* -------------------------------------------------------------- jemalloc */

static size_t mem_allocated(void)
{
    uint64_t epoch = 1;
    size_t sz = sizeof epoch, allocated = 0;

    mallctl("thread.tcache.flush", NULL, NULL, NULL, 0);
    mallctl("epoch", &epoch, &sz, &epoch, sz);
    sz = sizeof allocated;
    if (mallctl("stats.allocated", &allocated, &sz, NULL, 0) != 0)
        return 0;
    return allocated;
}

/* ------------------------------------------------------------- workloads */

struct workload {
    const char *dist;
    double *cdf; /* Zipf only: cdf[r] = P(rank <= r) */
    uint64_t **keys;
    uint8_t **isput;
    size_t *pos;   /* where each thread's next run continues its stream */
    unsigned nthr; /* streams generated (the largest thread count) */
    uint64_t *warm;
};

static uint64_t sample_rank(const struct workload *w,
                            const struct bench_opts *o, uint64_t *rng)
{
    double u = rng_unit(rng);
    size_t lo = 0, hi = o->keys - 1;

    if (w->cdf == NULL)
        return rng_next(rng) % o->keys;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;

        if (w->cdf[mid] < u)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static void fill_stream(const struct workload *w, const struct bench_opts *o,
                        uint64_t seed, uint64_t *keys, uint8_t *isput, size_t n)
{
    uint64_t rng = seed, prng = seed ^ 0xabcdef;

    for (size_t i = 0; i < n; i++) {
        keys[i] = key_of_rank(sample_rank(w, o, &rng));
        if (isput != NULL)
            isput[i] = rng_unit(&prng) < 0.10;
    }
}

static void *xmalloc(size_t n)
{
    void *p = malloc(n);

    if (p == NULL) {
        fprintf(stderr, "purecache-bench: out of memory\n");
        exit(1);
    }
    return p;
}

static void workload_init(struct workload *w, const struct bench_opts *o,
                          const char *dist, unsigned maxthreads)
{
    memset(w, 0, sizeof *w);
    w->dist = dist;
    if (strcmp(dist, "zipf") == 0) {
        double sum = 0;

        w->cdf = xmalloc(o->keys * sizeof *w->cdf);
        for (size_t r = 0; r < o->keys; r++)
            w->cdf[r] = sum += pow((double)(r + 1), -o->skew);
        for (size_t r = 0; r < o->keys; r++)
            w->cdf[r] /= sum;
    }
    w->keys = xmalloc(maxthreads * sizeof *w->keys);
    w->nthr = maxthreads;
    w->pos = calloc(maxthreads, sizeof *w->pos);
    if (w->pos == NULL)
        exit(1);
    w->isput = xmalloc(maxthreads * sizeof *w->isput);
    for (unsigned t = 0; t < maxthreads; t++) {
        bench_progress("generating %s keys: thread %u/%u", dist, t + 1,
                       maxthreads);
        w->keys[t] = xmalloc(o->stream_len * sizeof(uint64_t));
        w->isput[t] = xmalloc(o->stream_len);
        fill_stream(w, o, 1000 + t, w->keys[t], w->isput[t], o->stream_len);
    }
    w->warm = xmalloc(o->warm_ops * sizeof *w->warm);
    fill_stream(w, o, 999, w->warm, NULL, o->warm_ops);
}

static void workload_fini(struct workload *w, unsigned maxthreads)
{
    for (unsigned t = 0; t < maxthreads; t++) {
        free(w->keys[t]);
        free(w->isput[t]);
    }
    free(w->keys);
    free(w->isput);
    free(w->pos);
    free(w->warm);
    free(w->cdf);
}

/* ---------------------------------------------------------------- peers */

static bool peer_can_run(const struct bench_peer *p, enum mix m)
{
    switch (m) {
    case MIX_GET:
        return (p->caps & PEER_GET) != 0;
    case MIX_9010:
        return (p->caps & (PEER_GET | PEER_PUT)) == (PEER_GET | PEER_PUT);
    case MIX_ASIDE:
        return (p->caps & (PEER_GET | PEER_PUT)) == (PEER_GET | PEER_PUT) ||
               (p->caps & PEER_LOAD);
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

/* Warm (bounded peers) or pre-fill (unbounded ones); see the top comment. */
static void peer_warm(const struct bench_peer *p, void *h,
                      const struct workload *w, const struct bench_opts *o)
{
    if (p->caps & PEER_EVICTS) {
        for (size_t i = 0; i < o->warm_ops; i++)
            op_aside(p, h, w->warm[i]);
    } else {
        for (size_t r = 0; r < o->capacity && r < o->keys; r++)
            p->put(h, key_of_rank(r), bench_value_of(key_of_rank(r)));
    }
}

/* ------------------------------------------------------------- timed run */

#define LAT_MAX_SAMPLES (1u << 20)

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
            w[t].lat = xmalloc(LAT_MAX_SAMPLES * sizeof(uint32_t));
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

        r->lat = xmalloc((r->nlat + 1) * sizeof(uint32_t));
        for (unsigned t = 0; t < nthr; t++) {
            memcpy(r->lat + k, w[t].lat, w[t].nlat * sizeof(uint32_t));
            k += w[t].nlat;
            free(w[t].lat);
        }
    }
    pthread_barrier_destroy(&start);
    free(w);
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

    return (x > y) - (x < y);
}

static uint32_t timer_overhead_ns;

static void measure_timer_overhead(void)
{
    uint32_t s[10001];

    for (int i = 0; i < 10001; i++) {
        uint64_t a = now_ns(), b = now_ns();

        s[i] = (uint32_t)(b - a);
    }
    qsort(s, 10001, sizeof *s, cmp_u32);
    timer_overhead_ns = s[5000];
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

static struct point *point_add(void)
{
    if (npoints == points_cap) {
        points_cap = points_cap ? 2 * points_cap : 64;
        points = realloc(points, points_cap * sizeof *points);
        if (points == NULL)
            exit(1);
    }
    memset(&points[npoints], 0, sizeof *points);
    return &points[npoints++];
}

static const struct point *point_find(const char *dist, enum mix m,
                                      const char *peer, unsigned threads)
{
    for (size_t i = 0; i < npoints; i++)
        if (strcmp(points[i].dist, dist) == 0 && points[i].mix == m &&
            strcmp(points[i].peer, peer) == 0 && points[i].threads == threads)
            return &points[i];
    return NULL;
}

static void print_point(const struct point *pt)
{
    printf("  %-12s %3u  %8.2f  (%7.2f..%7.2f)  %6.2f%%  %7.0f %7.0f %8.0f\n",
           pt->peer, pt->threads, pt->med, pt->min, pt->max, 100 * pt->hit,
           pt->p50, pt->p99, pt->p999);
    fflush(stdout);
}

/* One (distribution, mix): every peer that can run it, every thread count.
 *
 * Runs are interleaved: for each thread count, run 1 of every peer, then run
 * 2 of every peer, and so on, each peer continuing its own streams. A shared
 * machine's load drifts over seconds; measured peer after peer, a ratio
 * between two peers would compare different moments, interleaved it
 * compares neighbouring ones, and the medians absorb the rest. Every peer's
 * cache is therefore created and warmed up front and lives until the mix
 * is done. */
struct live_peer {
    const struct bench_peer *p;
    void *h;
    size_t *pos; /* this peer's stream positions, one per thread */
    size_t pt;   /* index of its current point (point_add reallocates) */
};

static void bench_mix(const struct bench_opts *o, struct workload *wl,
                      enum mix m, struct bench_peer *peers, int npeers,
                      FILE *csv_runs, FILE *csv_points, int *step, int steps)
{
    struct live_peer live[MAX_PEERS];
    int nlive = 0;
    char dname[64];

    if (strcmp(wl->dist, "zipf") == 0)
        snprintf(dname, sizeof dname, "zipf(%.2f)", o->skew);
    else
        snprintf(dname, sizeof dname, "%s", wl->dist);
    printf("\n== %s N=%zu C=%zu, mix %s (%s), %u runs x %.2fs, interleaved "
           "==\n",
           dname, o->keys, o->capacity, mix_name[m], mix_desc[m], o->runs,
           o->duration);
    printf("  %-12s %3s  %8s  %-18s  %7s  %7s %7s %8s\n", "peer", "thr",
           "Mops/s", "(min..max)", "hit", "p50ns", "p99ns", "p99.9ns");
    for (int pi = 0; pi < npeers; pi++) {
        const struct bench_peer *p = &peers[pi];
        struct live_peer *lp = &live[nlive];

        if (!peer_can_run(p, m))
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
        peer_warm(p, lp->h, wl, o);
        nlive++;
    }
    for (unsigned ti = 0; ti < o->nthreads; ti++) {
        unsigned nthr = o->threads[ti];

        for (int li = 0; li < nlive; li++) {
            struct point *pt = point_add();

            pt->dist = wl->dist;
            pt->mix = m;
            pt->peer = live[li].p->name;
            pt->threads = nthr;
            pt->runs = o->runs;
            live[li].pt = (size_t)(pt - points);
        }
        for (unsigned r = 0; r < o->runs; r++) {
            for (int li = 0; li < nlive; li++) {
                struct live_peer *lp = &live[li];
                struct point *pt = &points[lp->pt];
                struct run_result rr;

                bench_progress("[%d/%d] %s %s %-11s threads=%u run %u/%u",
                               *step + li, steps, wl->dist, mix_name[m],
                               lp->p->name, nthr, r + 1, o->runs);
                memcpy(wl->pos, lp->pos, wl->nthr * sizeof *wl->pos);
                run_once(o, lp->p, lp->h, m, wl, nthr, 0, &rr);
                memcpy(lp->pos, wl->pos, wl->nthr * sizeof *wl->pos);
                pt->mops[r] = rr.mops;
                fprintf(csv_runs, "%s,%s,%s,%u,%u,%.4f,%.6f\n", wl->dist,
                        mix_name[m], lp->p->name, nthr, r, rr.mops, rr.hit);
                if (r == 0 || rr.mops < pt->min)
                    pt->min = rr.mops;
                if (r == 0 || rr.mops > pt->max)
                    pt->max = rr.mops;
                pt->hit += rr.hit / o->runs;
            }
        }
        for (int li = 0; li < nlive; li++) {
            struct live_peer *lp = &live[li];
            struct point *pt = &points[lp->pt];
            struct run_result rr;

            pt->med = median(pt->mops, o->runs);
            bench_progress("[%d/%d] %s %s %-11s threads=%u latency run",
                           *step + li, steps, wl->dist, mix_name[m],
                           lp->p->name, nthr);
            memcpy(wl->pos, lp->pos, wl->nthr * sizeof *wl->pos);
            run_once(o, lp->p, lp->h, m, wl, nthr, o->lat_every, &rr);
            memcpy(lp->pos, wl->pos, wl->nthr * sizeof *wl->pos);
            qsort(rr.lat, rr.nlat, sizeof *rr.lat, cmp_u32);
            pt->p50 = percentile(rr.lat, rr.nlat, 0.50);
            pt->p99 = percentile(rr.lat, rr.nlat, 0.99);
            pt->p999 = percentile(rr.lat, rr.nlat, 0.999);
            free(rr.lat);
        }
        *step += nlive;
    }
    bench_progress_done();
    /* The table lists each peer's thread counts together. */
    for (int li = 0; li < nlive; li++) {
        for (size_t i = 0; i < npoints; i++) {
            const struct point *pt = &points[i];

            if (pt->dist != wl->dist || pt->mix != m ||
                strcmp(pt->peer, live[li].p->name) != 0)
                continue;
            print_point(pt);
            fprintf(csv_points,
                    "%s,%s,%s,%u,%u,%.4f,%.4f,%.4f,%.6f,%.0f,%.0f,"
                    "%.0f\n",
                    pt->dist, mix_name[m], pt->peer, pt->threads, pt->runs,
                    pt->med, pt->min, pt->max, pt->hit, pt->p50, pt->p99,
                    pt->p999);
        }
        fflush(csv_points);
    }
    for (int li = 0; li < nlive; li++) {
        live[li].p->destroy(live[li].h);
        free(live[li].pos);
    }
}

/* -------------------------------------------------------------- memory */

struct mem_result {
    const char *peer;
    double per_entry;
};

static struct mem_result mems[MAX_PEERS];
static int nmems;

static void bench_memory(const struct bench_opts *o, struct bench_peer *peers,
                         int npeers, FILE *csv)
{
    printf("\n== memory per entry beyond 8-byte key + 8-byte value "
           "(C=%zu, jemalloc stats.allocated) ==\n",
           o->capacity);
    for (int pi = 0; pi < npeers; pi++) {
        const struct bench_peer *p = &peers[pi];
        size_t before, after;
        double per;
        void *h;

        bench_progress("memory: %s", p->name);
        before = mem_allocated();
        h = p->create(p->ctx, o->capacity);
        if (h == NULL)
            continue;
        for (size_t r = 0; r < o->capacity; r++) {
            uint64_t k = key_of_rank(r), v;

            if (p->put != NULL)
                p->put(h, k, bench_value_of(k));
            else
                p->load(h, k, &v);
        }
        if (p->quiesce != NULL)
            p->quiesce(h);
        after = mem_allocated();
        p->destroy(h);
        per = ((double)after - (double)before - 16.0 * (double)o->capacity) /
              (double)o->capacity;
        bench_progress_done();
        printf("  %-12s %8.1f bytes/entry\n", p->name, per);
        fprintf(csv, "%s,%zu,%.2f\n", p->name, o->capacity, per);
        mems[nmems].peer = p->name;
        mems[nmems++].per_entry = per;
    }
}

/* ------------------------------------------------------------- targets */

/* A ratio of two points' medians, with the range it spans over their
 * runs (worst min/max .. best max/min): a wide range means a noisy
 * machine, and a verdict near the bound is then not to be trusted. */
struct ratio {
    double med, lo, hi;
};

static struct ratio ratio(const struct point *a, const struct point *b)
{
    struct ratio r = {NAN, NAN, NAN};

    if (a && b && b->med > 0 && b->min > 0) {
        r.med = a->med / b->med;
        r.lo = a->min / b->max;
        r.hi = a->max / b->min;
    }
    return r;
}

static int target_ratio(const char *what, struct ratio r, double want)
{
    bool ok = !isnan(r.med) && r.med >= want;

    if (isnan(r.med)) {
        printf("  %-40s   n/a                    (>= %.2f)  SKIP\n", what,
               want);
        return 0;
    }
    printf("  %-40s %7.2f  [runs %5.2f..%5.2f]  (>= %.2f)  %s\n", what, r.med,
           r.lo, r.hi, want, ok ? "MET" : "MISSED");
    return ok ? 0 : 1;
}

static int target_max(const char *what, double got, double want)
{
    bool ok = got <= want;

    printf("  %-40s %7.2f                      (<= %.2f)  %s\n", what, got,
           want, ok ? "MET" : "MISSED");
    return ok ? 0 : 1;
}

static int bench_targets(void)
{
    const char *d = "zipf";
    int missed = 0;

    printf("\n== targets (zipf, medians of this run) ==\n");
    missed += target_ratio("clock get 2thr / ck_hs get 2thr",
                           ratio(point_find(d, MIX_GET, "clock", 2),
                                 point_find(d, MIX_GET, "ck_hs", 2)),
                           0.75);
    missed += target_ratio("clock get 2thr / clock get 1thr",
                           ratio(point_find(d, MIX_GET, "clock", 2),
                                 point_find(d, MIX_GET, "clock", 1)),
                           1.9);
    missed += target_ratio("clock 90-10 2thr / mutex-lru 90-10 2thr",
                           ratio(point_find(d, MIX_9010, "clock", 2),
                                 point_find(d, MIX_9010, "mutex-lru", 2)),
                           5);
    missed += target_ratio("clock aside 2thr / tbb-lru aside 2thr",
                           ratio(point_find(d, MIX_ASIDE, "clock", 2),
                                 point_find(d, MIX_ASIDE, "tbb-lru", 2)),
                           3);
    missed += target_ratio("lru 90-10 2thr / mutex-lru 90-10 2thr",
                           ratio(point_find(d, MIX_9010, "lru", 2),
                                 point_find(d, MIX_9010, "mutex-lru", 2)),
                           1.5);
    for (int i = 0; i < nmems; i++) {
        if (strcmp(mems[i].peer, "clock") == 0)
            missed += target_max("clock bytes per entry beyond key+value",
                                 mems[i].per_entry, 48);
        else if (strcmp(mems[i].peer, "lru") == 0)
            printf("  %-40s %7.2f                      (info: the 48-byte "
                   "target is CLOCK's)\n",
                   "lru bytes per entry beyond key+value", mems[i].per_entry);
    }
    printf("  (instructions per CLOCK get hit: bench/callgrind-get.sh)\n");
    return missed;
}

/* ------------------------------------------------------------- plotting */

static void plot_throughput(const struct bench_opts *o, const char *dist,
                            enum mix m, struct bench_peer *peers, int npeers)
{
    char name[128];
    FILE *dat, *gp;
    int blocks = 0;

    snprintf(name, sizeof name, "tput-%s-%s.dat", dist, mix_name[m]);
    dat = bench_open_out(o, name);
    snprintf(name, sizeof name, "tput-%s-%s.gp", dist, mix_name[m]);
    gp = bench_open_out(o, name);
    fprintf(gp,
            "set terminal pngcairo size 900,560 font 'sans,11'\n"
            "set output 'tput-%s-%s.png'\n"
            "set title 'purecache-bench: %s, mix %s (N=%zu, C=%zu)'\n"
            "set xlabel 'threads'\nset ylabel 'Mops/s (median)'\n"
            "set key outside right top\nset grid\nset xtics 1\n"
            "set yrange [0:*]\nset xrange [0.5:%u.5]\nplot ",
            dist, mix_name[m], dist, mix_name[m], o->keys, o->capacity,
            o->threads[o->nthreads - 1]);
    for (int pi = 0; pi < npeers; pi++) {
        bool any = false;

        for (unsigned ti = 0; ti < o->nthreads; ti++) {
            const struct point *pt =
                point_find(dist, m, peers[pi].name, o->threads[ti]);

            if (pt == NULL)
                continue;
            if (!any)
                fprintf(dat, "# %s\n", peers[pi].name);
            any = true;
            fprintf(dat, "%u %.4f\n", pt->threads, pt->med);
        }
        if (!any)
            continue;
        fprintf(dat, "\n\n");
        fprintf(gp,
                "%s'tput-%s-%s.dat' index %d using 1:2 with linespoints "
                "lw 2 title '%s'",
                blocks ? ", \\\n     " : "", dist, mix_name[m], blocks,
                peers[pi].name);
        blocks++;
    }
    fprintf(gp, "\n");
    fclose(dat);
    fclose(gp);
    if (blocks > 0)
        bench_gnuplot(o, name);
}

void bench_gnuplot(const struct bench_opts *o, const char *script)
{
    char cmd[8192];

    if (!o->plot)
        return;
    snprintf(cmd, sizeof cmd,
             "cd '%s' && command -v gnuplot >/dev/null 2>&1 && "
             "gnuplot '%s' 2>/dev/null",
             o->out_dir, script);
    if (system(cmd) != 0)
        fprintf(stderr,
                "purecache-bench: gnuplot %s failed or missing "
                "(no PNG)\n",
                script);
}

/* -------------------------------------------------------- callgrind mode */

/*
 * `valgrind --tool=callgrind --toggle-collect=bench_get_loop` counts only
 * what runs inside this function: n CLOCK gets of one present 8-byte key,
 * each a call through the pc_get pointer the library exported (plus the
 * loop's own few instructions, which are charged to the gets).
 */
__attribute__((noinline)) uint64_t bench_get_loop(
    int (*get)(void *, const void *, size_t, void *, size_t, size_t *),
    void *cache, uint64_t key, long n)
{
    uint64_t v = 0, sum = 0;

    for (long i = 0; i < n; i++) {
        get(cache, &key, sizeof key, &v, sizeof v, NULL);
        sum += v;
    }
    return sum;
}

/* The same for any peer, through its vtable (one more indirect call). */
__attribute__((noinline)) uint64_t
bench_peer_get_loop(const struct bench_peer *p, void *h, uint64_t key, long n)
{
    uint64_t v = 0, sum = 0;

    for (long i = 0; i < n; i++) {
        p->get(h, key, &v);
        sum += v;
    }
    return sum;
}

static int callgrind_peer(const struct bench_peer *p,
                          const struct bench_opts *o, long n)
{
    void *h = p->create(p->ctx, o->capacity);
    uint64_t key = 42, v;

    if (h == NULL || p->get == NULL || p->put == NULL)
        return 1;
    p->put(h, key, bench_value_of(key));
    p->get(h, key, &v);
    v = bench_peer_get_loop(p, h, key, n);
    printf("callgrind-peer: %ld %s gets of a present 8-byte key (checksum "
           "%llu)\n",
           n, p->name, (unsigned long long)v);
    p->destroy(h);
    return 0;
}

static int callgrind_get(struct bench_peer *clock, const struct bench_opts *o,
                         long n)
{
    void *h = clock->create(clock->ctx, o->capacity);
    uint64_t key = 42, v;
    int (*get)(void *, const void *, size_t, void *, size_t, size_t *);

    if (h == NULL)
        return 1;
    clock->put(h, key, bench_value_of(key));
    clock->get(h, key, &v); /* registers this thread outside the count */
    *(void **)&get = peer_purecache_get_fn(clock);
    v = bench_get_loop(get, peer_purecache_cache(h), key, n);
    printf("callgrind-get: %ld gets of a present 8-byte key (checksum %llu)\n",
           n, (unsigned long long)v);
    clock->destroy(h);
    return 0;
}

/* ---------------------------------------------------------------- main */

static void usage(FILE *f)
{
    fprintf(f,
            "usage: purecache-bench [options]\n"
            "  --dists LIST       zipf,uniform (default both)\n"
            "  --skew S           Zipf exponent (default 0.99)\n"
            "  --keys N           distinct keys (default 1000000)\n"
            "  --capacity C       cache capacity (default 100000)\n"
            "  --mixes LIST       get,90-10,aside (default all)\n"
            "  --threads LIST     e.g. 1,2,4 (default 1..nproc)\n"
            "  --runs R           timed runs per point, median (default 3)\n"
            "  --duration SEC     seconds per timed run (default 0.5)\n"
            "  --warm OPS         cache-aside warm-up ops (default "
            "max(N, 4C))\n"
            "  --stream LEN       pre-generated keys per thread, rounded "
            "to a power of two (default 2^20)\n"
            "  --lat-every K      latency run samples 1 op in K (default 64)\n"
            "  --peers LIST       all, or of clock,lru,ck_hs,mutex-lru,"
            "striped-lru,tbb-lru,cuckoo\n"
            "  --traces SET       default (traces under 1M requests), all, "
            "none, or a list of names (e.g. lirs-cpp,arc-OLTP)\n"
            "  --trace-dir DIR    default %s\n"
            "  --no-synth         trace mode only\n"
            "  --out DIR          CSV, gnuplot scripts and PNGs (default "
            "bench-out)\n"
            "  --no-plot          do not run gnuplot\n"
            "  --no-pin           do not pin thread i to CPU i mod ncpu\n"
            "  --lib-clock PATH, --lib-lru PATH  the policies' shared "
            "libraries\n"
            "  --quick            a few-second smoke run (CI)\n"
            "  --callgrind-get N  only run N CLOCK gets in bench_get_loop "
            "(see bench/callgrind-get.sh)\n"
            "  --callgrind-peer P with --callgrind-get: N gets of peer P "
            "in bench_peer_get_loop\n",
            PC_BENCH_TRACE_DIR);
}

static void parse_threads(struct bench_opts *o, const char *s)
{
    o->nthreads = 0;
    while (*s && o->nthreads < 64) {
        char *end;
        unsigned long v = strtoul(s, &end, 10);

        if (end == s || v == 0 || v > 1024) {
            fprintf(stderr, "purecache-bench: bad --threads\n");
            exit(2);
        }
        o->threads[o->nthreads++] = (unsigned)v;
        s = *end == ',' ? end + 1 : end;
    }
}

int main(int argc, char **argv)
{
    struct bench_opts o = {
        .dists = "zipf,uniform",
        .skew = 0.99,
        .keys = 1000000,
        .capacity = 100000,
        .mixes = "get,90-10,aside",
        .runs = 3,
        .duration = 0.5,
        .stream_len = 1u << 20,
        .lat_every = 64,
        .peers = "all",
        .traces = "default",
        .trace_dir = PC_BENCH_TRACE_DIR,
        .out_dir = "bench-out",
        .lib_clock = PC_BENCH_LIB_CLOCK,
        .lib_lru = PC_BENCH_LIB_LRU,
        .hash_seed = 0x5eed5eed5eedull,
        .pin = true,
        .plot = true,
        .synth = true,
    };
    struct bench_peer peers[MAX_PEERS], *clock = NULL, *lru = NULL, *ref = NULL;
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN), cg_n = 0;
    unsigned maxthr = 0;
    int npeers = 0, missed = 0;
    bool quick = false;
    const char *cg_peer = NULL;

    progress_tty = isatty(2);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        bool used = true;

        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return 0;
        } else if (strcmp(a, "--no-plot") == 0) {
            o.plot = false;
            continue;
        } else if (strcmp(a, "--no-pin") == 0) {
            o.pin = false;
            continue;
        } else if (strcmp(a, "--no-synth") == 0) {
            o.synth = false;
            continue;
        } else if (strcmp(a, "--quick") == 0) {
            quick = true;
            continue;
        }
        if (v == NULL) {
            usage(stderr);
            return 2;
        }
        if (strcmp(a, "--dists") == 0)
            o.dists = v;
        else if (strcmp(a, "--skew") == 0)
            o.skew = atof(v);
        else if (strcmp(a, "--keys") == 0)
            o.keys = strtoull(v, NULL, 10);
        else if (strcmp(a, "--capacity") == 0)
            o.capacity = strtoull(v, NULL, 10);
        else if (strcmp(a, "--mixes") == 0)
            o.mixes = v;
        else if (strcmp(a, "--threads") == 0)
            parse_threads(&o, v);
        else if (strcmp(a, "--runs") == 0)
            o.runs = (unsigned)atoi(v);
        else if (strcmp(a, "--duration") == 0)
            o.duration = atof(v);
        else if (strcmp(a, "--warm") == 0)
            o.warm_ops = strtoull(v, NULL, 10);
        else if (strcmp(a, "--stream") == 0)
            o.stream_len = strtoull(v, NULL, 10);
        else if (strcmp(a, "--lat-every") == 0)
            o.lat_every = (unsigned)atoi(v);
        else if (strcmp(a, "--peers") == 0)
            o.peers = v;
        else if (strcmp(a, "--traces") == 0)
            o.traces = v;
        else if (strcmp(a, "--trace-dir") == 0)
            o.trace_dir = v;
        else if (strcmp(a, "--out") == 0)
            o.out_dir = v;
        else if (strcmp(a, "--lib-clock") == 0)
            o.lib_clock = v;
        else if (strcmp(a, "--lib-lru") == 0)
            o.lib_lru = v;
        else if (strcmp(a, "--callgrind-get") == 0)
            cg_n = atol(v);
        else if (strcmp(a, "--callgrind-peer") == 0)
            cg_peer = v;
        else
            used = false;
        if (!used) {
            fprintf(stderr, "purecache-bench: unknown option %s\n", a);
            usage(stderr);
            return 2;
        }
        i++;
    }
    if (quick) {
        o.keys = 20000;
        o.capacity = 2000;
        o.runs = 1;
        o.duration = 0.05;
        o.stream_len = 1u << 14;
        if (strcmp(o.traces, "default") == 0)
            o.traces = "lirs-cpp";
        if (o.nthreads == 0)
            parse_threads(&o, "1,2");
    }
    if (o.nthreads == 0)
        for (long t = 1; t <= (ncpu > 0 ? ncpu : 1) && t <= 64; t++)
            o.threads[o.nthreads++] = (unsigned)t;
    for (unsigned i = 0; i < o.nthreads; i++)
        if (o.threads[i] > maxthr)
            maxthr = o.threads[i];
    if (o.warm_ops == 0)
        o.warm_ops = o.keys > 4 * o.capacity ? o.keys : 4 * o.capacity;
    {
        size_t p = 1;

        while (p < o.stream_len)
            p <<= 1;
        o.stream_len = p;
    }
    if (o.keys == 0 || o.capacity == 0 || o.runs == 0 || o.runs > MAX_RUNS ||
        o.duration <= 0) {
        fprintf(stderr, "purecache-bench: bad keys/capacity/runs/duration\n");
        return 2;
    }

    /* Peers, in table order. The first three are also trace mode's. */
    if (peer_purecache(&peers[npeers], "clock", o.lib_clock, o.hash_seed) == 0)
        clock = &peers[npeers++];
    if (peer_purecache(&peers[npeers], "lru", o.lib_lru, o.hash_seed) == 0)
        lru = &peers[npeers++];
    if (clock == NULL || lru == NULL) {
        fprintf(stderr, "purecache-bench: cannot load both policies "
                        "(--lib-clock / --lib-lru)\n");
        return 1;
    }
    if (cg_n > 0 && cg_peer == NULL)
        return callgrind_get(clock, &o, cg_n);
    peer_ckhs(&peers[npeers++]);
    peer_mutex_lru(&peers[npeers]);
    ref = &peers[npeers++];
    peer_striped_lru(&peers[npeers++]);
#ifdef PC_BENCH_HAVE_TBB
    peer_tbb_lru(&peers[npeers++]);
#endif
#ifdef PC_BENCH_HAVE_CUCKOO
    peer_cuckoo(&peers[npeers++]);
#endif
    if (cg_peer != NULL) {
        for (int i = 0; i < npeers; i++)
            if (strcmp(peers[i].name, cg_peer) == 0)
                return callgrind_peer(&peers[i], &o, cg_n > 0 ? cg_n : 1000000);
        fprintf(stderr, "purecache-bench: no peer %s\n", cg_peer);
        return 2;
    }
    {
        /* Trace mode always uses clock, lru and the mutex-lru reference;
         * the synthetic benchmarks run the peers --peers selects. */
        static struct bench_peer trace_peers[3];
        struct bench_peer sel[MAX_PEERS];
        int k = 0;

        trace_peers[0] = *clock;
        trace_peers[1] = *lru;
        trace_peers[2] = *ref;
        clock = &trace_peers[0];
        lru = &trace_peers[1];
        ref = &trace_peers[2];
        for (int i = 0; i < npeers; i++)
            if (bench_list_has(o.peers, peers[i].name))
                sel[k++] = peers[i];
        memcpy(peers, sel, sizeof *sel * (size_t)k);
        npeers = k;
    }

    if (mkdir(o.out_dir, 0777) != 0 && errno != EEXIST) {
        fprintf(stderr, "purecache-bench: %s: %s\n", o.out_dir,
                strerror(errno));
        return 1;
    }
    measure_timer_overhead();
    printf("purecache-bench: %ld CPUs, threads", ncpu);
    for (unsigned i = 0; i < o.nthreads; i++)
        printf("%s%u", i ? "," : " ", o.threads[i]);
    printf(" (%s), %u runs x %.2fs per point, latency: 1 op in %u sampled "
           "in a separate run (clock_gettime, %u ns overhead subtracted)\n",
           o.pin ? "pinned" : "not pinned", o.runs, o.duration, o.lat_every,
           timer_overhead_ns);
    printf("peers:\n");
    for (int i = 0; i < npeers; i++)
        printf("  %-12s %s\n", peers[i].name, peers[i].what);

    if (o.synth) {
        FILE *runs = bench_open_out(&o, "runs.csv");
        FILE *pts = bench_open_out(&o, "throughput.csv");
        FILE *mem = bench_open_out(&o, "memory.csv");
        int step = 1, steps = 0;
        char dists[256];

        fprintf(runs, "dist,mix,peer,threads,run,mops,hit_ratio\n");
        fprintf(pts, "dist,mix,peer,threads,runs,mops_median,mops_min,"
                     "mops_max,hit_ratio,p50_ns,p99_ns,p999_ns\n");
        fprintf(mem, "peer,capacity,bytes_per_entry_beyond_kv\n");
        for (int m = 0; m < MIX_COUNT; m++)
            for (int pi = 0; pi < npeers; pi++)
                if (bench_list_has(o.mixes, mix_name[m]) &&
                    peer_can_run(&peers[pi], (enum mix)m))
                    steps += (int)o.nthreads;
        steps *= (bench_list_has(o.dists, "zipf") ? 1 : 0) +
                 (bench_list_has(o.dists, "uniform") ? 1 : 0);
        snprintf(dists, sizeof dists, "%s", o.dists);
        for (char *save, *d = strtok_r(dists, ",", &save); d != NULL;
             d = strtok_r(NULL, ",", &save)) {
            struct workload wl;
            const char *dn = strcmp(d, "zipf") == 0      ? "zipf"
                             : strcmp(d, "uniform") == 0 ? "uniform"
                                                         : NULL;

            if (dn == NULL) {
                fprintf(stderr, "purecache-bench: unknown dist %s\n", d);
                return 2;
            }
            workload_init(&wl, &o, dn, maxthr);
            bench_progress_done();
            for (int m = 0; m < MIX_COUNT; m++) {
                if (!bench_list_has(o.mixes, mix_name[m]))
                    continue;
                bench_mix(&o, &wl, (enum mix)m, peers, npeers, runs, pts, &step,
                          steps);
                plot_throughput(&o, dn, (enum mix)m, peers, npeers);
            }
            workload_fini(&wl, maxthr);
        }
        bench_memory(&o, peers, npeers, mem);
        fclose(runs);
        fclose(pts);
        fclose(mem);
        missed += bench_targets();
    }
    if (strcmp(o.traces, "none") != 0)
        missed += trace_run(&o, clock, lru, ref);
    printf("\nresults in %s/ (throughput.csv, runs.csv, memory.csv, "
           "traces.csv, *.png)\n",
           o.out_dir);
    printf("targets missed in this run: %d\n", missed);
    return 0;
}
