/*
 * trace: replay real access traces and compare miss ratios.
 *
 * Each `*.keys.gz` file under --trace-dir (format: gzip text, one u64
 * decimal key per line; see that directory's README) is read into memory
 * with zlib, its distinct keys are counted (sort + unique), and for cache
 * sizes of 0.1%, 1% and 10% of the distinct keys it is replayed from an
 * empty cache as the traces are meant to be used: get, and put on a miss
 * (demand fill). Sizes under 100 entries are skipped: the targets exclude
 * them, and sharding/rounding dominates there.
 *
 * Three caches per size, in the same run, single-threaded so the result is
 * deterministic: purecache CLOCK (fixed hash_seed, so shard placement is
 * reproducible), purecache exact LRU, and the mutex+list LRU peer as the
 * reference LRU. Two checks per size, flagged in the table:
 *   CLOCK miss ratio <= exact-LRU miss ratio + 0.01, and
 *   exact LRU's miss count == the reference's, exactly.
 *
 * Which files: "default" replays every trace of at most 2 MB compressed
 * (up to about 1M requests), "all" adds the multi-million-request ones
 * (cache2k-orm-*, arc-P3/P6/P12, cloudphysics-w106), or name a
 * comma-separated list.
 */
#include <dirent.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

#include "plot.h"
#include "trace.h"
#include "util.h"

#define TRACE_DEFAULT_MAX_GZ (2u << 20)

struct trace {
    uint64_t *keys;
    size_t n, cap, distinct;
};

static int trace_load(const char *path, struct trace *t)
{
    gzFile f = gzopen(path, "rb");
    unsigned char buf[1 << 16];
    uint64_t cur = 0;
    bool in_num = false;
    int got;

    memset(t, 0, sizeof *t);
    if (f == NULL)
        return -1;
    gzbuffer(f, 1 << 17);
    while ((got = gzread(f, buf, sizeof buf)) > 0) {
        for (int i = 0; i < got; i++) {
            unsigned char c = buf[i];

            if (c >= '0' && c <= '9') {
                cur = cur * 10 + (uint64_t)(c - '0');
                in_num = true;
                continue;
            }
            if (c == '\n' && in_num) {
                if (t->n == t->cap) {
                    t->cap = t->cap ? 2 * t->cap : 1 << 16;
                    t->keys = realloc(t->keys, t->cap * sizeof *t->keys);
                    if (t->keys == NULL) {
                        gzclose(f);
                        return -1;
                    }
                }
                t->keys[t->n++] = cur;
            }
            cur = 0;
            in_num = false;
        }
    }
    gzclose(f);
    return got < 0 ? -1 : 0;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

    return (x > y) - (x < y);
}

static size_t count_distinct(const struct trace *t)
{
    uint64_t *s = malloc(t->n * sizeof *s);
    size_t d = 0;

    if (s == NULL)
        return 0;
    memcpy(s, t->keys, t->n * sizeof *s);
    qsort(s, t->n, sizeof *s, cmp_u64);
    for (size_t i = 0; i < t->n; i++)
        if (i == 0 || s[i] != s[i - 1])
            d++;
    free(s);
    return d;
}

/* Misses of a get-then-put-on-miss replay from an empty cache. */
static size_t replay(const struct bench_peer *p, size_t size,
                     const struct trace *t)
{
    void *h = p->create(p->ctx, size);
    size_t misses = 0;
    uint64_t v;

    if (h == NULL)
        return (size_t)-1;
    for (size_t i = 0; i < t->n; i++) {
        uint64_t k = t->keys[i];

        if (!p->get(h, k, &v)) {
            misses++;
            p->put(h, k, bench_value_of(k));
        }
    }
    p->destroy(h);
    return misses;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static bool has_suffix(const char *s, const char *suf)
{
    size_t n = strlen(s), m = strlen(suf);

    return n >= m && strcmp(s + n - m, suf) == 0;
}

int trace_run(const struct bench_opts *o, const struct bench_peer *clock,
              const struct bench_peer *lru, const struct bench_peer *ref)
{
    static const double pct[3] = {0.001, 0.01, 0.10};
    DIR *dir = opendir(o->trace_dir);
    char **names = NULL;
    size_t nnames = 0, cap = 0;
    struct dirent *de;
    int violations = 0, ran = 0;
    FILE *csv;

    if (dir == NULL) {
        printf("\n== traces: %s not found, trace mode skipped ==\n",
               o->trace_dir);
        return 0;
    }
    while ((de = readdir(dir)) != NULL) {
        char path[4096], base[256];
        struct stat st;

        if (!has_suffix(de->d_name, ".keys.gz"))
            continue;
        snprintf(base, sizeof base, "%.*s",
                 (int)(strlen(de->d_name) - strlen(".keys.gz")), de->d_name);
        snprintf(path, sizeof path, "%s/%s", o->trace_dir, de->d_name);
        if (stat(path, &st) != 0)
            continue;
        if (strcmp(o->traces, "default") == 0
                ? (size_t)st.st_size > TRACE_DEFAULT_MAX_GZ
                : !bench_list_has(o->traces, base))
            continue;
        if (nnames == cap) {
            cap = cap ? 2 * cap : 32;
            names = realloc(names, cap * sizeof *names);
            if (names == NULL)
                exit(1);
        }
        names[nnames++] = strdup(base);
    }
    closedir(dir);
    qsort(names, nnames, sizeof *names, cmp_str);

    csv = bench_open_out(o->out_dir, "traces.csv");
    fprintf(csv, "trace,requests,distinct,size_fraction,size,clock_miss,"
                 "lru_miss,ref_lru_miss,ok\n");
    printf("\n== traces (%s): miss ratio, get then put on miss, "
           "single-threaded, from empty ==\n",
           o->traces);
    printf("  %-28s %9s %8s %6s %8s  %7s %7s %7s  %8s  %s\n", "trace",
           "requests", "distinct", "size%", "entries", "clock", "lru",
           "ref-lru", "clk-lru", "check");
    for (size_t ti = 0; ti < nnames; ti++) {
        char path[4096];
        struct trace t;
        double rows[3][4];
        int nrows = 0;

        snprintf(path, sizeof path, "%s/%s.keys.gz", o->trace_dir, names[ti]);
        bench_progress("trace %s: loading", names[ti]);
        if (trace_load(path, &t) != 0 || t.n == 0) {
            bench_progress_done();
            printf("  %-28s unreadable\n", names[ti]);
            violations++;
            free(t.keys);
            continue;
        }
        t.distinct = count_distinct(&t);
        for (int si = 0; si < 3; si++) {
            size_t size = (size_t)((double)t.distinct * pct[si] + 0.5);
            size_t mc, ml, mr;
            double rc, rl, rr;
            const char *check = "ok";

            if (size < 100) {
                bench_progress_done();
                printf("  %-28s %9zu %8zu %5.1f%% %8zu  skipped (< 100 "
                       "entries)\n",
                       names[ti], t.n, t.distinct, 100 * pct[si], size);
                continue;
            }
            bench_progress("trace %s size %zu: clock", names[ti], size);
            mc = replay(clock, size, &t);
            bench_progress("trace %s size %zu: lru", names[ti], size);
            ml = replay(lru, size, &t);
            bench_progress("trace %s size %zu: ref-lru", names[ti], size);
            mr = replay(ref, size, &t);
            rc = (double)mc / (double)t.n;
            rl = (double)ml / (double)t.n;
            rr = (double)mr / (double)t.n;
            if (ml != mr)
                check = "VIOLATION lru != ref";
            else if (rc > rl + 0.01)
                check = "VIOLATION clock > lru + 0.01";
            if (strcmp(check, "ok") != 0)
                violations++;
            bench_progress_done();
            printf("  %-28s %9zu %8zu %5.1f%% %8zu  %7.4f %7.4f %7.4f  "
                   "%+8.4f  %s\n",
                   names[ti], t.n, t.distinct, 100 * pct[si], size, rc, rl, rr,
                   rc - rl, check);
            fflush(stdout);
            fprintf(csv, "%s,%zu,%zu,%.3f,%zu,%.6f,%.6f,%.6f,%d\n", names[ti],
                    t.n, t.distinct, pct[si], size, rc, rl, rr,
                    strcmp(check, "ok") == 0);
            rows[nrows][0] = (double)size;
            rows[nrows][1] = rc;
            rows[nrows][2] = rl;
            rows[nrows][3] = rr;
            nrows++;
            ran++;
        }
        plot_trace(o, names[ti], (const double(*)[4])rows, nrows);
        free(t.keys);
        free(names[ti]);
    }
    free(names);
    fclose(csv);
    printf("  trace checks: %d sizes replayed, %d violation(s)%s\n", ran,
           violations, violations ? "  <-- POLICY REGRESSION" : "");
    return violations;
}
