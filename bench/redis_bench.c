/*
 * purecache-redis-bench: what the near tier buys, and what coherence costs.
 *
 * Starts its own redis-server on a free loopback port (no persistence, a
 * temporary directory; killed at exit and, through PR_SET_PDEATHSIG, if
 * the bench dies), or uses --port P of a running one, then measures at 1
 * and 2 threads, each thread reading random keys of a pre-filled set
 * (--keys, default 1000; 64-byte values):
 *
 *   near     pc_redis_backend with a near tier holding every key: hits
 *   redis    pc_redis_backend without a near tier: one GET round trip each
 *   redis-1c the same with a pool of 1 connection: what pooling buys at 2
 *            threads
 *   hiredis  raw hiredis, redisCommand("GET") on a context per thread: the
 *            reference for our round trip
 *   local    a plain purecache (pc_get): the floor
 *
 * Each point is --runs (3) runs of --duration (1 s), interleaved across
 * modes so that drifting load on a shared machine hits all alike; the
 * median run is reported (ops/s, mean ns per op per thread) with the min
 * and max (an even run count: the middle two's mean); Redis GETs are also
 * timed one by one for p50/p99, reported from the last run.
 *
 * Invalidation delay: --writes (1000) times, for each tracking mode, a key
 * is read into the near tier (and seen there), an external hiredis client
 * SETs it, and the main thread spins on pc_redis_near_get until the copy
 * is gone; the delay is measured from the SET's reply (the moment the
 * write is acknowledged: how long a stale read stays possible) and from
 * just before it was sent. Median, p99 and max.
 *
 * Output: a readable table, CSV lines (prefix "csv,") and a targets table:
 * near hit >= 20x faster than a Redis GET (1 thread, mean latency),
 * invalidation p99 <= 50 ms, 2-thread/1-thread Redis GET throughput >= 1.8.
 */
#define _GNU_SOURCE
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "purecache.h"
#include "purecache_redis.h"

#define VLEN 64
#define MAX_THREADS 8
#define MAX_RUNS 15

static int opt_keys = 1000, opt_runs = 3, opt_writes = 1000, opt_port;
static double opt_duration = 1.0;
static int opt_mode_on[5] = {1, 1, 1, 1, 1}; /* --modes */
static int opt_inval = 1;                    /* --no-inval */

static uint64_t now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ---- the server ---- */

static pid_t server_pid;
static char server_dir[64];

static void server_kill(void)
{
    char path[128];

    if (server_pid > 0) {
        kill(server_pid, SIGKILL);
        waitpid(server_pid, NULL, 0);
        server_pid = 0;
    }
    if (server_dir[0]) {
        snprintf(path, sizeof path, "%s/redis.log", server_dir);
        unlink(path);
        rmdir(server_dir);
        server_dir[0] = '\0';
    }
}

static void on_signal(int sig)
{
    if (server_pid > 0)
        kill(server_pid, SIGKILL);
    signal(sig, SIG_DFL);
    raise(sig);
}

static int free_port(void)
{
    struct sockaddr_in a = {0};
    socklen_t len = sizeof a;
    int fd = socket(AF_INET, SOCK_STREAM, 0), port = 0;

    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    if (fd >= 0)
        close(fd);
    return port;
}

static redisContext *client(int port)
{
    struct timeval tv = {2, 0};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", port, tv);

    if (c == NULL || c->err) {
        if (c != NULL)
            redisFree(c);
        return NULL;
    }
    redisSetTimeout(c, tv);
    return c;
}

static int server_start(void)
{
    pid_t parent = getpid();
    char port[16], log[128];

    snprintf(server_dir, sizeof server_dir, "/tmp/pc-redis-bench-XXXXXX");
    if (mkdtemp(server_dir) == NULL)
        return -1;
    atexit(server_kill);
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    for (int attempt = 0; attempt < 5; attempt++) {
        int p = free_port();

        snprintf(port, sizeof port, "%d", p);
        snprintf(log, sizeof log, "%s/redis.log", server_dir);
        server_pid = fork();
        if (server_pid == 0) {
            prctl(PR_SET_PDEATHSIG, SIGKILL);
            if (getppid() != parent)
                _exit(1);
            if (freopen(log, "a", stdout) == NULL ||
                freopen(log, "a", stderr) == NULL)
                _exit(1);
            execlp("redis-server", "redis-server", "--port", port, "--bind",
                   "127.0.0.1", "--save", "", "--appendonly", "no", "--dir",
                   server_dir, "--daemonize", "no", (char *)NULL);
            _exit(127);
        }
        for (int i = 0; i < 500 && server_pid > 0; i++) {
            redisContext *c;

            if (waitpid(server_pid, NULL, WNOHANG) == server_pid) {
                server_pid = 0;
                break;
            }
            if ((c = client(p)) != NULL) {
                redisFree(c);
                return p;
            }
            usleep(10000);
        }
        if (server_pid > 0) {
            kill(server_pid, SIGKILL);
            waitpid(server_pid, NULL, 0);
            server_pid = 0;
        }
    }
    fprintf(stderr, "cannot start redis-server (installed? see %s)\n",
            server_dir);
    return -1;
}

/* ---- throughput modes ---- */

enum mode { M_NEAR, M_REDIS, M_REDIS1, M_HIREDIS, M_LOCAL, M_COUNT };
static const char *mode_name[M_COUNT] = {"near", "redis", "redis-1c", "hiredis",
                                         "local"};

struct target {
    pc_backend near, redis, redis1;
    pc_cache *local;
    int port;
};

struct worker {
    struct target *t;
    enum mode mode;
    int id;
    uint64_t until, ops, errors;
    uint64_t *lat; /* per-op ns, Redis modes only */
    size_t nlat, caplat;
    pthread_barrier_t *start;
};

static void key_of(char *k, uint64_t i)
{
    snprintf(k, 32, "bench:%07llu", (unsigned long long)i);
}

static void *work(void *p)
{
    struct worker *w = p;
    redisContext *hc = NULL;
    char key[32], buf[256];
    uint64_t x = 0x9e3779b97f4a7c15ull * (uint64_t)(w->id + 1), ops = 0;
    int timed =
        w->mode == M_REDIS || w->mode == M_REDIS1 || w->mode == M_HIREDIS;

    if (w->mode == M_HIREDIS)
        hc = client(w->t->port);
    pthread_barrier_wait(w->start);
    w->until = now_ns() + (uint64_t)(opt_duration * 1e9);
    for (;;) {
        uint64_t t0 = 0;
        pc_status st = PC_OK;
        size_t n;

        /* Check the clock every 64 ops: cheap next to a near hit. */
        if ((ops & 63) == 0 && now_ns() >= w->until)
            break;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        key_of(key, x % (uint64_t)opt_keys);
        if (timed)
            t0 = now_ns();
        switch (w->mode) {
        case M_NEAR:
            st = w->t->near.ops->get(w->t->near.self, key, 13, buf, sizeof buf,
                                     &n);
            break;
        case M_REDIS:
            st = w->t->redis.ops->get(w->t->redis.self, key, 13, buf,
                                      sizeof buf, &n);
            break;
        case M_REDIS1:
            st = w->t->redis1.ops->get(w->t->redis1.self, key, 13, buf,
                                       sizeof buf, &n);
            break;
        case M_LOCAL:
            st = pc_get(w->t->local, key, 13, buf, sizeof buf, &n);
            break;
        case M_HIREDIS: {
            redisReply *r =
                hc != NULL ? redisCommand(hc, "GET %b", key, (size_t)13) : NULL;

            st = r != NULL && r->type == REDIS_REPLY_STRING ? PC_OK : PC_EIO;
            if (r != NULL)
                freeReplyObject(r);
            break;
        }
        default:
            break;
        }
        if (timed && w->nlat < w->caplat)
            w->lat[w->nlat++] = now_ns() - t0;
        if (st != PC_OK)
            w->errors++;
        ops++;
    }
    w->ops = ops;
    if (hc != NULL)
        redisFree(hc);
    return NULL;
}

struct point {
    double mops[MAX_RUNS]; /* ops/s of each run */
    double p50_ns, p99_ns; /* Redis modes: from the last run */
    uint64_t errors;
};

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return x < y ? -1 : x > y;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

    return x < y ? -1 : x > y;
}

static void run_once(struct target *t, enum mode m, int threads,
                     struct point *pt, int run)
{
    pthread_t th[MAX_THREADS];
    struct worker w[MAX_THREADS];
    pthread_barrier_t start;
    uint64_t ops = 0;
    size_t total = 0;
    uint64_t *all;

    pthread_barrier_init(&start, NULL, (unsigned)threads);
    for (int i = 0; i < threads; i++) {
        w[i] = (struct worker){
            .t = t, .mode = m, .id = i + run * 16, .start = &start};
        if (m == M_REDIS || m == M_REDIS1 || m == M_HIREDIS) {
            w[i].caplat = (size_t)(opt_duration * 200000) + 1;
            w[i].lat = malloc(w[i].caplat * sizeof *w[i].lat);
            if (w[i].lat == NULL)
                w[i].caplat = 0;
        }
        pthread_create(&th[i], NULL, work, &w[i]);
    }
    for (int i = 0; i < threads; i++) {
        pthread_join(th[i], NULL);
        ops += w[i].ops;
        pt->errors += w[i].errors;
        total += w[i].nlat;
    }
    pthread_barrier_destroy(&start);
    pt->mops[run] = (double)ops / opt_duration;
    all = total ? malloc(total * sizeof *all) : NULL;
    if (all != NULL) {
        size_t k = 0;

        for (int i = 0; i < threads; i++) {
            memcpy(all + k, w[i].lat, w[i].nlat * sizeof *all);
            k += w[i].nlat;
        }
        qsort(all, total, sizeof *all, cmp_u64);
        /* Percentiles of the last run (runs are interleaved and alike). */
        pt->p50_ns = (double)all[total / 2];
        pt->p99_ns = (double)all[total * 99 / 100];
        free(all);
    }
    for (int i = 0; i < threads; i++)
        free(w[i].lat);
}

static double median(const double *v, int n, double *lo, double *hi)
{
    double s[MAX_RUNS];

    memcpy(s, v, (size_t)n * sizeof *s);
    qsort(s, (size_t)n, sizeof *s, cmp_double);
    *lo = s[0];
    *hi = s[n - 1];
    /* (An even count: the mean of the middle two; s[n / 2] was the upper
     * one, the faster run of two.) */
    return n % 2 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
}

/* ---- invalidation delay ---- */

struct delays {
    double from_ack_ms[3], from_send_ms[3]; /* median, p99, max */
    int n, lost;
};

static void pctl(double *v, int n, double out[3])
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    out[0] = v[n / 2];
    out[1] = v[(n * 99) / 100 < n ? (n * 99) / 100 : n - 1];
    out[2] = v[n - 1];
}

static int measure_invalidation(int port, unsigned tracking, struct delays *d)
{
    pc_redis_options o = {0};
    pc_backend be;
    redisContext *x = client(port);
    double *ack = calloc((size_t)opt_writes, sizeof *ack);
    double *snd = calloc((size_t)opt_writes, sizeof *snd);
    char buf[256], val[32];
    size_t n;

    memset(d, 0, sizeof *d);
    o.port = port;
    o.key_prefix = "inval:";
    o.near_capacity = 16;
    o.tracking = tracking;
    if (x == NULL || ack == NULL || snd == NULL ||
        pc_redis_backend(&o, &be) != PC_OK)
        return -1;
    if (pc_redis_wait_near(&be, 5000) != PC_OK)
        return -1;
    for (int i = 0; i < opt_writes; i++) {
        uint64_t t_send, t_ack, t_gone, give_up;
        redisReply *r;

        /* Get a near copy (a read, then until a read finds it there). */
        give_up = now_ns() + 2000000000ull;
        while (pc_redis_near_get(&be, "k", 1, buf, sizeof buf, &n) != PC_OK) {
            be.ops->get(be.self, "k", 1, buf, sizeof buf, &n);
            if (now_ns() > give_up)
                break;
        }
        snprintf(val, sizeof val, "%d", i);
        t_send = now_ns();
        r = redisCommand(x, "SET inval:k %s", val);
        t_ack = now_ns();
        if (r == NULL)
            return -1;
        freeReplyObject(r);
        give_up = t_ack + 5000000000ull;
        /* Yield while polling: on a small machine a pure spin would
         * take the CPU the subscriber thread needs. */
        while (pc_redis_near_get(&be, "k", 1, buf, sizeof buf, &n) == PC_OK &&
               now_ns() < give_up)
            sched_yield();
        t_gone = now_ns();
        if (t_gone >= give_up)
            d->lost++;
        ack[d->n] = (double)(t_gone - t_ack) / 1e6;
        snd[d->n] = (double)(t_gone - t_send) / 1e6;
        d->n++;
    }
    pctl(ack, d->n, d->from_ack_ms);
    pctl(snd, d->n, d->from_send_ms);
    be.ops->destroy(be.self);
    redisFree(x);
    free(ack);
    free(snd);
    return 0;
}

/* ---- main ---- */

static void usage(void)
{
    printf("usage: purecache-redis-bench [--port P] [--keys N] "
           "[--duration S] [--runs R] [--writes W] [--no-inval]\n"
           "       [--modes near,redis,redis-1c,hiredis,local]\n");
}

int main(int argc, char **argv)
{
    struct target t = {0};
    pc_redis_options o = {0};
    pc_options lo = {0};
    static struct point pts[M_COUNT][3];
    double mean_ns[M_COUNT][3] = {{0}}, tput[M_COUNT][3] = {{0}};
    struct delays dk, db;
    redisContext *x;
    char key[32], val[VLEN];
    int threads_list[2] = {1, 2};

    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--port") && i + 1 < argc)
            opt_port = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--keys") && i + 1 < argc)
            opt_keys = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--duration") && i + 1 < argc)
            opt_duration = atof(argv[++i]);
        else if (!strcmp(argv[i], "--runs") && i + 1 < argc)
            opt_runs = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--writes") && i + 1 < argc)
            opt_writes = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--no-inval"))
            opt_inval = 0;
        else if (!strcmp(argv[i], "--modes") && i + 1 < argc) {
            const char *list = argv[++i];

            for (int m = 0; m < M_COUNT; m++) {
                size_t len = strlen(mode_name[m]);
                const char *p = list;

                opt_mode_on[m] = 0;
                while ((p = strstr(p, mode_name[m])) != NULL) {
                    if ((p == list || p[-1] == ',') &&
                        (p[len] == ',' || p[len] == '\0'))
                        opt_mode_on[m] = 1;
                    p += len;
                }
            }
        } else {
            usage();
            return strcmp(argv[i], "--help") == 0 ? 0 : 2;
        }
    }
    if (opt_keys < 1 || opt_runs < 1 || opt_runs > MAX_RUNS ||
        opt_duration <= 0 || opt_writes < 1) {
        usage();
        return 2;
    }
    t.port = opt_port > 0 ? opt_port : server_start();
    if (t.port < 0)
        return 1;

    /* Fill Redis and the local cache. */
    x = client(t.port);
    lo.capacity = (size_t)opt_keys;
    if (x == NULL || pc_create(&lo, &t.local) != PC_OK)
        return 1;
    memset(val, 'v', sizeof val);
    for (int i = 0; i < opt_keys; i++) {
        redisReply *r;

        key_of(key, (uint64_t)i);
        r = redisCommand(x, "SET %s %b", key, val, (size_t)VLEN);
        if (r == NULL)
            return 1;
        freeReplyObject(r);
        pc_put(t.local, key, 13, val, VLEN);
    }
    redisFree(x);
    o.port = t.port;
    o.connections = 4;
    if (pc_redis_backend(&o, &t.redis) != PC_OK)
        return 1;
    o.connections = 1;
    if (pc_redis_backend(&o, &t.redis1) != PC_OK)
        return 1;
    o.connections = 4;
    o.near_capacity = (size_t)opt_keys;
    if (pc_redis_backend(&o, &t.near) != PC_OK ||
        pc_redis_wait_near(&t.near, 5000) != PC_OK)
        return 1;
    for (int i = 0; i < opt_keys; i++) { /* warm the near tier */
        char buf[256];
        size_t n;

        key_of(key, (uint64_t)i);
        t.near.ops->get(t.near.self, key, 13, buf, sizeof buf, &n);
    }

    fprintf(stderr, "redis-server on port %d; %d keys, %d runs of %.1f s\n",
            t.port, opt_keys, opt_runs, opt_duration);
    for (int run = 0; run < opt_runs; run++)
        for (int ti = 0; ti < 2; ti++)
            for (int m = 0; m < M_COUNT; m++) {
                if (!opt_mode_on[m])
                    continue;
                fprintf(stderr, "\rrun %d/%d: %-8s %d thread(s)   ", run + 1,
                        opt_runs, mode_name[m], threads_list[ti]);
                run_once(&t, (enum mode)m, threads_list[ti], &pts[m][ti], run);
            }
    fprintf(stderr, "\rmeasuring invalidation delays...           \n");
    memset(&dk, 0, sizeof dk);
    memset(&db, 0, sizeof db);
    if (opt_inval &&
        (measure_invalidation(t.port, PC_REDIS_TRACK_KEYS, &dk) != 0 ||
         measure_invalidation(t.port, PC_REDIS_TRACK_BCAST, &db) != 0)) {
        fprintf(stderr, "invalidation measurement failed\n");
        return 1;
    }

    printf("purecache-redis-bench: GET of 13-byte keys, %d-byte values, "
           "%d keys, loopback, median of %d x %.1f s\n\n",
           VLEN, opt_keys, opt_runs, opt_duration);
    printf("%-8s %7s %14s %16s %10s %10s %7s\n", "mode", "threads", "ops/s",
           "(min..max)", "ns/op", "p50/p99 us", "errors");
    for (int m = 0; m < M_COUNT; m++)
        for (int ti = 0; ti < 2 && opt_mode_on[m]; ti++) {
            struct point *p = &pts[m][ti];
            double lo_, hi_, med = median(p->mops, opt_runs, &lo_, &hi_);
            char range[40], pct[32] = "-";

            tput[m][ti] = med;
            mean_ns[m][ti] = med > 0 ? 1e9 * threads_list[ti] / med : 0;
            snprintf(range, sizeof range, "%.3g..%.3g", lo_, hi_);
            if (m == M_REDIS || m == M_REDIS1 || m == M_HIREDIS)
                snprintf(pct, sizeof pct, "%.0f/%.0f", p->p50_ns / 1e3,
                         p->p99_ns / 1e3);
            printf("%-8s %7d %14.0f %16s %10.1f %10s %7llu\n", mode_name[m],
                   threads_list[ti], med, range, mean_ns[m][ti], pct,
                   (unsigned long long)p->errors);
            printf("csv,throughput,%s,%d,%.0f,%.0f,%.0f,%.1f,%.0f,%.0f,%llu\n",
                   mode_name[m], threads_list[ti], med, lo_, hi_,
                   mean_ns[m][ti], p->p50_ns, p->p99_ns,
                   (unsigned long long)p->errors);
        }
    printf("\ninvalidation delay, external SET -> near copy gone "
           "(%d writes each)\n",
           opt_writes);
    printf("%-8s %28s %28s %5s\n", "tracking", "from ack: median/p99/max ms",
           "from send: median/p99/max ms", "lost");
    for (int k = 0; k < 2; k++) {
        struct delays *d = k == 0 ? &dk : &db;
        const char *name = k == 0 ? "per-key" : "bcast";

        printf("%-8s %10.3f/%7.3f/%8.3f  %10.3f/%7.3f/%8.3f %5d\n", name,
               d->from_ack_ms[0], d->from_ack_ms[1], d->from_ack_ms[2],
               d->from_send_ms[0], d->from_send_ms[1], d->from_send_ms[2],
               d->lost);
        printf("csv,invalidation,%s,%d,%.4f,%.4f,%.4f,%.4f,%.4f,%.4f,%d\n",
               name, d->n, d->from_ack_ms[0], d->from_ack_ms[1],
               d->from_ack_ms[2], d->from_send_ms[0], d->from_send_ms[1],
               d->from_send_ms[2], d->lost);
    }
    {
        double speedup = mean_ns[M_NEAR][0] > 0
                             ? mean_ns[M_REDIS][0] / mean_ns[M_NEAR][0]
                             : 0;
        double p99 = dk.from_ack_ms[1] > db.from_ack_ms[1] ? dk.from_ack_ms[1]
                                                           : db.from_ack_ms[1];
        double scale =
            tput[M_REDIS][0] > 0 ? tput[M_REDIS][1] / tput[M_REDIS][0] : 0;

        printf("\ntargets\n");
        printf("  near hit vs Redis GET (1 thread, mean)  %8.1fx  (>= 20x)  "
               "%s\n",
               speedup, speedup >= 20 ? "PASS" : "FAIL");
        printf("  invalidation p99 (worse mode, from ack) %8.3f ms (<= 50 "
               "ms) %s\n",
               p99, p99 <= 50 && dk.lost + db.lost == 0 ? "PASS" : "FAIL");
        printf("  Redis GET 2 threads / 1 thread          %8.2fx  (>= 1.8x) "
               "%s\n",
               scale, scale >= 1.8 ? "PASS" : "FAIL");
        printf("csv,targets,%.2f,%.4f,%.3f\n", speedup, p99, scale);
    }
    t.near.ops->destroy(t.near.self);
    t.redis.ops->destroy(t.redis.self);
    t.redis1.ops->destroy(t.redis1.self);
    pc_destroy(t.local);
    return 0;
}
