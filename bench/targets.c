/*
 * targets: the performance targets, evaluated on this run's results.
 *
 * The targets are data: one row of `targets[]` per target. A throughput
 * target compares two points (peer, mix, thread count) of the same
 * distribution and is evaluated on each distribution, a row per target
 * per distribution. Its ratio is taken run by run: run i of one point over
 * run i of the other, which were interleaved (see runner.c) and so saw the
 * same moment of a shared machine. The table shows the median of those
 * ratios, their range over the runs (a wide range means a noisy machine,
 * and a verdict near the goal is then not to be trusted), the goal and
 * MET or MISSED. A tail-latency target compares two points' p99.9 from
 * their latency runs (one run each, no range). A memory target holds a
 * peer's bytes per entry beyond key and value (measured once, not per
 * distribution). A target whose points were not measured (a peer, mix,
 * distribution or thread count left out) shows SKIP and is not counted as
 * missed. Instruction counts need valgrind, so the callgrind script checks
 * those; the table only names it.
 */
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "results.h"
#include "targets.h"

enum target_kind {
    T_TPUT, /* a's median Mops/s / b's, per run pair, >= goal */
    T_P999, /* a's p99.9 / b's p99.9 <= goal */
    T_MEM,  /* a's bytes per entry beyond key + value <= goal */
};

struct target {
    enum target_kind kind;
    const char *a; /* the measured peer */
    enum mix ma;
    unsigned ta;
    const char *b; /* the peer it is compared with (T_TPUT, T_P999) */
    enum mix mb;
    unsigned tb;
    double goal;
};

#define TPUT(a, ma, ta, b, mb, tb, goal)                                       \
    {                                                                          \
        T_TPUT, a, ma, ta, b, mb, tb, goal                                     \
    }
#define P999(a, ma, ta, b, mb, tb, goal)                                       \
    {                                                                          \
        T_P999, a, ma, ta, b, mb, tb, goal                                     \
    }
#define MEM(a, goal)                                                           \
    {                                                                          \
        T_MEM, a, MIX_GET, 0, NULL, MIX_GET, 0, goal                           \
    }

/* clang-format off */
static const struct target targets[] = {
    /* CLOCK, cache-aside: one thread against the locks, then scaling */
    TPUT("clock", MIX_ASIDE, 1, "mutex-lru",   MIX_ASIDE, 1, 1.5),
    TPUT("clock", MIX_ASIDE, 1, "striped-lru", MIX_ASIDE, 1, 1.5),
    TPUT("clock", MIX_ASIDE, 2, "striped-lru", MIX_ASIDE, 2, 2.0),
    TPUT("clock", MIX_ASIDE, 2, "clock",       MIX_ASIDE, 1, 1.8),
    /* CLOCK, writes */
    TPUT("clock", MIX_9010,  2, "striped-lru", MIX_9010,  2, 2.0),
    TPUT("clock", MIX_PUT,   2, "striped-lru", MIX_PUT,   2, 2.0),
    TPUT("clock", MIX_9010,  1, "mutex-lru",   MIX_9010,  1, 1.3),
    /* exact LRU against the mutex-guarded list it replaces */
    TPUT("lru",   MIX_9010,  1, "mutex-lru",   MIX_9010,  1, 1.0),
    TPUT("lru",   MIX_ASIDE, 1, "mutex-lru",   MIX_ASIDE, 1, 1.0),
    TPUT("lru",   MIX_PUT,   1, "mutex-lru",   MIX_PUT,   1, 1.0),
    TPUT("lru",   MIX_9010,  2, "mutex-lru",   MIX_9010,  2, 2.0),
    TPUT("lru",   MIX_ASIDE, 2, "mutex-lru",   MIX_ASIDE, 2, 2.0),
    TPUT("lru",   MIX_PUT,   2, "mutex-lru",   MIX_PUT,   2, 2.0),
    /* reads: no regression */
    TPUT("clock", MIX_GET,   2, "ck_hs",       MIX_GET,   2, 0.7),
    TPUT("clock", MIX_GET,   2, "clock",       MIX_GET,   1, 1.9),
    /* tail latency */
    P999("clock", MIX_ASIDE, 2, "striped-lru", MIX_ASIDE, 2, 1.0),
    /* memory per entry beyond key and value */
    MEM("clock", 48),
    MEM("lru", 56),
};
/* clang-format on */

#define NTARGETS (sizeof targets / sizeof targets[0])

static const char *const target_dists[] = {"zipf", "uniform"};

static int cmp_double(const void *x, const void *y)
{
    double a = *(const double *)x, b = *(const double *)y;

    return (a > b) - (a < b);
}

static const char *verdict(bool ok)
{
    return ok ? "MET" : "MISSED";
}

static void label(char *buf, size_t n, const char *dist, const struct target *t)
{
    if (t->kind == T_MEM)
        snprintf(buf, n, "%s bytes per entry beyond key+value", t->a);
    else
        snprintf(buf, n, "%-7s %s%s %s %uthr / %s %s %uthr", dist,
                 t->kind == T_P999 ? "p99.9 " : "", t->a, mix_name[t->ma],
                 t->ta, t->b, mix_name[t->mb], t->tb);
}

static int skip(const char *what, const char *op, double goal)
{
    printf("  %-56s %7s                      (%s %.2f)  SKIP\n", what, "n/a",
           op, goal);
    return 0;
}

/* Median and range of the per-run ratios a.mops[i] / b.mops[i]. */
static int check_tput(const char *what, const struct target *t,
                      const struct point *a, const struct point *b)
{
    double r[BENCH_MAX_RUNS], med;
    unsigned n = 0;
    bool ok;

    if (a != NULL && b != NULL)
        for (unsigned i = 0; i < a->runs && i < b->runs; i++)
            if (b->mops[i] > 0)
                r[n++] = a->mops[i] / b->mops[i];
    if (n == 0)
        return skip(what, ">=", t->goal);
    qsort(r, n, sizeof *r, cmp_double);
    med = n % 2 ? r[n / 2] : (r[n / 2 - 1] + r[n / 2]) / 2;
    ok = med >= t->goal;
    printf("  %-56s %7.2f  [runs %5.2f..%5.2f]  (>= %.2f)  %s\n", what, med,
           r[0], r[n - 1], t->goal, verdict(ok));
    return ok ? 0 : 1;
}

static int check_p999(const char *what, const struct target *t,
                      const struct point *a, const struct point *b)
{
    double q;
    bool ok;

    if (a == NULL || b == NULL || isnan(a->p999) || isnan(b->p999) ||
        b->p999 <= 0)
        return skip(what, "<=", t->goal);
    q = a->p999 / b->p999;
    ok = q <= t->goal;
    printf("  %-56s %7.2f  [%6.0f / %6.0f ns]  (<= %.2f)  %s\n", what, q,
           a->p999, b->p999, t->goal, verdict(ok));
    return ok ? 0 : 1;
}

static int check_mem(const char *what, const struct target *t)
{
    for (size_t i = 0; i < results_nmemory(); i++) {
        bool ok;

        if (strcmp(results_memory_peer(i), t->a) != 0)
            continue;
        ok = results_memory(i) <= t->goal;
        printf("  %-56s %7.2f                      (<= %.2f)  %s\n", what,
               results_memory(i), t->goal, verdict(ok));
        return ok ? 0 : 1;
    }
    return skip(what, "<=", t->goal);
}

int targets_check(void)
{
    char what[128];
    int missed = 0;

    printf("\n== targets (throughput: per-run ratios of interleaved runs, "
           "median [range over runs]) ==\n");
    for (size_t d = 0; d < sizeof target_dists / sizeof *target_dists; d++) {
        const char *dist = target_dists[d];

        for (size_t i = 0; i < NTARGETS; i++) {
            const struct target *t = &targets[i];
            const struct point *a, *b;

            if (t->kind == T_MEM)
                continue;
            a = results_find(dist, t->ma, t->a, t->ta);
            b = results_find(dist, t->mb, t->b, t->tb);
            label(what, sizeof what, dist, t);
            missed += t->kind == T_TPUT ? check_tput(what, t, a, b)
                                        : check_p999(what, t, a, b);
        }
    }
    for (size_t i = 0; i < NTARGETS; i++) {
        if (targets[i].kind != T_MEM)
            continue;
        label(what, sizeof what, NULL, &targets[i]);
        missed += check_mem(what, &targets[i]);
    }
    printf("  (instructions per CLOCK get hit: bench/callgrind-get.sh)\n");
    printf("  (instructions per get miss + evicting put, clock <= mutex-lru: "
           "bench/callgrind-miss.sh)\n");
    return missed;
}
