/*
 * trace: replay real access traces and compare miss ratios.
 *
 * Each `*.keys.gz` file under --trace-dir (format: gzip text, one u64
 * decimal key per line; see that directory's README) is read into memory
 * with zlib, its distinct keys are counted (sort + unique), and for cache
 * sizes of 0.1%, 1% and 10% of the distinct keys, rounded down as
 * libCacheSim does, it is replayed from an empty cache as the traces are
 * meant to be used: get, and put on a miss (demand fill). Sizes under 100
 * entries are skipped: the targets exclude them, and sharding/rounding
 * dominates there.
 *
 * Four caches per size, in the same run, single-threaded so the result is
 * deterministic: purecache CLOCK and frequency (fixed hash_seed, so shard
 * placement is reproducible), purecache exact LRU, and the mutex+list LRU
 * peer as the reference LRU. Two checks per size, flagged in the table and
 * counted as violations:
 *   CLOCK miss ratio <= exact-LRU miss ratio + 0.01, and
 *   exact LRU's miss count == the reference's, exactly.
 * Beside them, the miss ratios libCacheSim computed for the same cells
 * (refmiss.c: LRU, Clock, SIEVE, S3-FIFO, W-TinyLFU, ARC, LIRS, FIFO,
 * LFU, whatever the CSV's columns are) and the best of them. A cell is
 * "shared" when the CSV has it with the same size and it holds at least
 * 100 entries (44 cells when every trace is replayed); the summary gives
 * every column's mean miss ratio over the shared cells replayed and the
 * worst cell of frequency (and CLOCK) against exact LRU, which the targets
 * table holds to issue 13's goals (mean <= 0.505, no cell worse than LRU
 * by more than 0.02). Over fewer than all shared cells those figures are
 * marked partial.
 *
 * Which files: "all" (the default) replays every trace (about 45 s on this
 * 2-core machine, 41 of them in the multi-million-request ones:
 * cache2k-orm-*, arc-P3/P6/P12, cloudphysics-w106); "small" only those of
 * at most 2 MB compressed (up to about 1M requests, 28 of the 44 shared
 * cells, 2.4 s); or name a comma-separated list.
 */
#include <dirent.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

#include "plot.h"
#include "refmiss.h"
#include "results.h"
#include "trace.h"
#include "util.h"

#define TRACE_SMALL_MAX_GZ (2u << 20)

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

/* The caches replayed: their table column names. */
enum { C_CLOCK, C_FREQ, C_LRU, C_REF, NCOL };
static const char *const col_name[NCOL] = {"clock", "frequency", "lru",
                                           "ref-lru"};

/* Sums over the shared cells replayed (see the top comment). */
struct summary {
    size_t cells;
    double ours[NCOL], ref[REFMISS_MAX_POLICIES], best;
    size_t freq_beats_best;
    double worst[2]; /* clock - lru, frequency - lru: the largest */
    char worst_cell[2][96];
    bool any_worst[2];
};

/* A traces.csv cell field: the value, or empty. */
static void csv_field(FILE *f, bool have, double v)
{
    if (have)
        fprintf(f, ",%.6f", v);
    else
        fprintf(f, ",");
}

static void print_header(const struct refmiss *ref, FILE *csv)
{
    fprintf(csv, "trace,requests,distinct,size_fraction,size,clock_miss,"
                 "frequency_miss,lru_miss,ref_lru_miss,ok");
    for (int i = 0; i < ref->npolicies; i++)
        fprintf(csv, ",lcs_%s", ref->policy[i]);
    fprintf(csv, "%s\n", ref->npolicies ? ",lcs_best,lcs_best_policy" : "");
    printf("  %-28s %6s %8s  %7s %7s %7s %7s", "trace", "size%", "entries",
           "clock", "freq", "lru", "ref-lru");
    if (ref->npolicies > 0) {
        printf(" |");
        for (int i = 0; i < ref->npolicies; i++)
            printf(" %*s",
                   strlen(ref->policy[i]) > 7 ? (int)strlen(ref->policy[i]) : 7,
                   ref->policy[i]);
        printf(" | %-17s", "best (lcs)");
    }
    printf(" | %8s %8s  %s\n", "clk-lru", "frq-lru", "check");
}

static void summarize(const struct summary *sm, const struct refmiss *ref,
                      const struct bench_peer *const cols[NCOL])
{
    size_t total = refmiss_cells(ref, 100);
    bool partial = sm->cells < total;
    char note[64], name[64];

    if (ref->npolicies == 0) {
        printf("  (no %s in the trace directory: no reference columns, no "
               "summary)\n",
               REFMISS_FILE);
        return;
    }
    printf("  shared cells (>= 100 entries, in %s): %zu of %zu "
           "replayed%s\n",
           REFMISS_FILE, sm->cells, total,
           partial ? " (partial: --traces all, the default, replays every one)"
                   : "");
    if (sm->cells == 0)
        return;
    snprintf(note, sizeof note, "%zu/%zu cells", sm->cells, total);
    results_add_figure("trace.cells", (double)sm->cells, note, partial);
    printf("  mean miss ratio over them:");
    for (int c = 0; c < NCOL; c++) {
        double mean = sm->ours[c] / (double)sm->cells;

        if (cols[c] == NULL)
            continue;
        printf("  %s %.4f", col_name[c], mean);
        snprintf(name, sizeof name, "trace.mean.%s", col_name[c]);
        results_add_figure(name, mean, note, partial);
    }
    printf("\n  libCacheSim, same cells:   ");
    for (int i = 0; i < ref->npolicies; i++) {
        double mean = sm->ref[i] / (double)sm->cells;

        printf("  %s %.4f", ref->policy[i], mean);
        snprintf(name, sizeof name, "trace.mean.lcs-%s", ref->policy[i]);
        results_add_figure(name, mean, note, partial);
    }
    printf("  best-of-cell %.4f\n", sm->best / (double)sm->cells);
    results_add_figure("trace.mean.lcs-best", sm->best / (double)sm->cells,
                       note, partial);
    for (int k = 0; k < 2; k++) {
        int c = k ? C_FREQ : C_CLOCK;

        if (!sm->any_worst[k])
            continue;
        printf("  %s - lru: worst cell %+.4f (%s), mean %+.4f\n", col_name[c],
               sm->worst[k], sm->worst_cell[k],
               (sm->ours[c] - sm->ours[C_LRU]) / (double)sm->cells);
        snprintf(name, sizeof name, "trace.worst.%s", col_name[c]);
        results_add_figure(name, sm->worst[k], sm->worst_cell[k], partial);
    }
    if (cols[C_FREQ] != NULL)
        printf("  frequency at or below libCacheSim's best policy in %zu of "
               "%zu cells\n",
               sm->freq_beats_best, sm->cells);
}

int trace_run(const struct bench_opts *o, const struct bench_peer *clock,
              const struct bench_peer *freq, const struct bench_peer *lru,
              const struct bench_peer *ref_lru)
{
    static const double pct[3] = {0.001, 0.01, 0.10};
    const struct bench_peer *const cols[NCOL] = {clock, freq, lru, ref_lru};
    DIR *dir = opendir(o->trace_dir);
    char **names = NULL;
    size_t nnames = 0, cap = 0;
    struct dirent *de;
    struct refmiss ref;
    struct summary sm;
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
        if (strcmp(o->traces, "small") == 0
                ? (size_t)st.st_size > TRACE_SMALL_MAX_GZ
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
    refmiss_load(&ref, o->trace_dir);
    memset(&sm, 0, sizeof sm);

    csv = bench_open_out(o->out_dir, "traces.csv");
    printf("\n== traces (%s): miss ratio, get then put on miss, "
           "single-threaded, from empty; libCacheSim's for the same cells "
           "(%s) ==\n",
           o->traces, ref.npolicies ? REFMISS_FILE : REFMISS_FILE " not found");
    print_header(&ref, csv);
    for (size_t ti = 0; ti < nnames; ti++) {
        char path[4096];
        struct trace t;
        double rows[3][5];
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
        bench_progress_done();
        printf("  %s: %zu requests, %zu distinct keys\n", names[ti], t.n,
               t.distinct);
        for (int si = 0; si < 3; si++) {
            size_t size = (size_t)floor((double)t.distinct * pct[si] + 1e-9);
            const struct refmiss_row *rr =
                refmiss_find(&ref, names[ti], pct[si]);
            double r[NCOL] = {0};
            size_t miss[NCOL] = {0};
            const char *check = "ok";
            bool shared;
            int best = 0;

            if (size < 100) {
                printf("  %-28s %5.1f%% %8zu  skipped (< 100 entries)\n",
                       names[ti], 100 * pct[si], size);
                continue;
            }
            if (rr != NULL && (rr->size != size || rr->distinct != t.distinct))
                printf("  (%s %.1f%%: %s has %zu entries of %zu distinct "
                       "keys; not compared)\n",
                       names[ti], 100 * pct[si], REFMISS_FILE, rr->size,
                       rr->distinct);
            shared =
                rr != NULL && rr->size == size && rr->distinct == t.distinct;
            for (int c = 0; c < NCOL; c++) {
                if (cols[c] == NULL)
                    continue;
                bench_progress("trace %s size %zu: %s", names[ti], size,
                               col_name[c]);
                miss[c] = replay(cols[c], size, &t);
                r[c] = (double)miss[c] / (double)t.n;
            }
            if (miss[C_LRU] != miss[C_REF])
                check = "VIOLATION lru != ref";
            else if (r[C_CLOCK] > r[C_LRU] + 0.01)
                check = "VIOLATION clock > lru + 0.01";
            if (strcmp(check, "ok") != 0)
                violations++;
            else if (freq != NULL && r[C_FREQ] > r[C_LRU] + 0.02)
                check = "ok (freq > lru + 0.02: see targets)";
            bench_progress_done();
            printf("  %-28s %5.1f%% %8zu ", names[ti], 100 * pct[si], size);
            for (int c = 0; c < NCOL; c++)
                if (cols[c] != NULL)
                    printf(" %7.4f", r[c]);
                else
                    printf(" %7s", "-");
            if (ref.npolicies > 0) {
                printf(" |");
                for (int i = 0; i < ref.npolicies; i++) {
                    int w = strlen(ref.policy[i]) > 7
                                ? (int)strlen(ref.policy[i])
                                : 7;

                    if (shared)
                        printf(" %*.4f", w, rr->miss[i]);
                    else
                        printf(" %*s", w, "-");
                }
                if (shared) {
                    best = refmiss_best(&ref, rr);
                    printf(" | %-10s %6.4f", ref.policy[best], rr->miss[best]);
                } else {
                    printf(" | %-17s", "-");
                }
            }
            printf(" | %+8.4f", r[C_CLOCK] - r[C_LRU]);
            if (freq != NULL)
                printf(" %+8.4f", r[C_FREQ] - r[C_LRU]);
            else
                printf(" %8s", "-");
            printf("  %s\n", check);
            fflush(stdout);
            fprintf(csv, "%s,%zu,%zu,%.3f,%zu", names[ti], t.n, t.distinct,
                    pct[si], size);
            for (int c = 0; c < NCOL; c++)
                csv_field(csv, cols[c] != NULL, r[c]);
            fprintf(csv, ",%d", strncmp(check, "ok", 2) == 0);
            for (int i = 0; i < ref.npolicies; i++)
                csv_field(csv, shared, shared ? rr->miss[i] : 0);
            if (ref.npolicies > 0) {
                csv_field(csv, shared, shared ? rr->miss[best] : 0);
                fprintf(csv, ",%s", shared ? ref.policy[best] : "");
            }
            fprintf(csv, "\n");
            if (shared) {
                sm.cells++;
                for (int c = 0; c < NCOL; c++)
                    sm.ours[c] += r[c];
                for (int i = 0; i < ref.npolicies; i++)
                    sm.ref[i] += rr->miss[i];
                sm.best += rr->miss[best];
                sm.freq_beats_best +=
                    freq != NULL && r[C_FREQ] <= rr->miss[best];
                for (int k = 0; k < 2; k++) {
                    int c = k ? C_FREQ : C_CLOCK;
                    double d = r[c] - r[C_LRU];

                    if (cols[c] == NULL ||
                        (sm.any_worst[k] && d <= sm.worst[k]))
                        continue;
                    sm.any_worst[k] = true;
                    sm.worst[k] = d;
                    snprintf(sm.worst_cell[k], sizeof sm.worst_cell[k],
                             "%s %.1f%%", names[ti], 100 * pct[si]);
                }
            }
            rows[nrows][0] = (double)size;
            for (int c = 0; c < NCOL; c++)
                rows[nrows][1 + c] = cols[c] != NULL ? r[c] : NAN;
            nrows++;
            ran++;
        }
        plot_trace(o, names[ti], (const double(*)[5])rows, nrows);
        free(t.keys);
        free(names[ti]);
    }
    free(names);
    fclose(csv);
    printf("  trace checks: %d sizes replayed, %d violation(s)%s\n", ran,
           violations, violations ? "  <-- POLICY REGRESSION" : "");
    summarize(&sm, &ref, cols);
    refmiss_free(&ref);
    return violations;
}
