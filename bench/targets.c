/*
 * targets: the performance targets, evaluated on this run's results.
 *
 * A throughput target is a ratio of two points' medians, shown with the
 * range it spans over their runs (worst min/max .. best max/min): a wide
 * range means a noisy machine, and a verdict near the bound is then not to
 * be trusted. The two points' runs were interleaved (see runner.c), so
 * both saw the same machine. Memory targets are bytes per entry beyond key
 * and value. A target whose points were not measured (peer or mix left
 * out) is shown as SKIP and not counted as missed.
 */
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "results.h"
#include "targets.h"

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

int targets_check(void)
{
    const char *d = "zipf";
    int missed = 0;

    printf("\n== targets (zipf, medians of this run) ==\n");
    missed += target_ratio("clock get 2thr / ck_hs get 2thr",
                           ratio(results_find(d, MIX_GET, "clock", 2),
                                 results_find(d, MIX_GET, "ck_hs", 2)),
                           0.75);
    missed += target_ratio("clock get 2thr / clock get 1thr",
                           ratio(results_find(d, MIX_GET, "clock", 2),
                                 results_find(d, MIX_GET, "clock", 1)),
                           1.9);
    missed += target_ratio("clock 90-10 2thr / mutex-lru 90-10 2thr",
                           ratio(results_find(d, MIX_9010, "clock", 2),
                                 results_find(d, MIX_9010, "mutex-lru", 2)),
                           5);
    missed += target_ratio("clock aside 2thr / tbb-lru aside 2thr",
                           ratio(results_find(d, MIX_ASIDE, "clock", 2),
                                 results_find(d, MIX_ASIDE, "tbb-lru", 2)),
                           3);
    missed += target_ratio("lru 90-10 2thr / mutex-lru 90-10 2thr",
                           ratio(results_find(d, MIX_9010, "lru", 2),
                                 results_find(d, MIX_9010, "mutex-lru", 2)),
                           1.5);
    for (size_t i = 0; i < results_nmemory(); i++) {
        const char *peer = results_memory_peer(i);

        if (strcmp(peer, "clock") == 0)
            missed += target_max("clock bytes per entry beyond key+value",
                                 results_memory(i), 48);
        else if (strcmp(peer, "lru") == 0)
            printf("  %-40s %7.2f                      (info: the 48-byte "
                   "target is CLOCK's)\n",
                   "lru bytes per entry beyond key+value", results_memory(i));
    }
    printf("  (instructions per CLOCK get hit: bench/callgrind-get.sh)\n");
    return missed;
}
