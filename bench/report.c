/*
 * report: stdout tables and CSV files of the synthetic mode.
 *
 * A table row per point: peer, threads, median Mops/s with the min..max of
 * the timed runs, the throughput relative to clock's at the same thread
 * count (the median of the per-run ratios of interleaved runs, as the
 * targets take it; "-" when clock did not run the mix), hit ratio (mean
 * over runs; "-" for the put mix, which does no gets, and an empty field
 * in the CSV files), and the latency percentiles of the separate sampled
 * runs. Rows are grouped by peer, so each
 * peer's thread counts read together. The CSV files carry the same numbers, and
 * runs.csv every run behind a median, in the order the runs were taken.
 */
#include <math.h>
#include <string.h>

#include "hitratio.h"
#include "report.h"
#include "results.h"
#include "rss.h"
#include "util.h"
#include "variants.h"

void report_banner(const struct bench_opts *o, long ncpu, uint32_t timer_ns,
                   const struct bench_peer *peers, int npeers)
{
    printf("purecache-bench: %ld CPUs, threads", ncpu);
    for (unsigned i = 0; i < o->nthreads; i++)
        printf("%s%u", i ? "," : " ", o->threads[i]);
    printf(" (%s), %u runs x %.2fs per point, latency: 1 op in %u sampled "
           "in %u separate runs, pooled (clock_gettime, %u ns overhead "
           "subtracted)\n",
           o->pin ? "pinned" : "not pinned", o->runs, o->duration, o->lat_every,
           o->lat_runs, timer_ns);
    printf("peers:\n");
    for (int i = 0; i < npeers; i++)
        printf("  %-12s %s\n", peers[i].name, peers[i].what);
    printf("mixes:\n");
    for (int m = 0; m < MIX_COUNT; m++)
        if (bench_list_has(o->mixes, mix_name[m]))
            printf("  %-12s %s\n", mix_name[m], mix_desc[m]);
    for (int i = 0; i < npeers; i++)
        if ((peers[i].caps & (PEER_PUT | PEER_EVICTS)) == PEER_PUT &&
            strcmp(o->mixes, "get") != 0)
            printf("  (%s never evicts: in the mixes with puts its puts "
                   "only add keys, a ceiling, not a cache)\n",
                   peers[i].name);
}

void report_open(const struct bench_opts *o, struct report_csv *csv)
{
    csv->runs = bench_open_out(o->out_dir, "runs.csv");
    csv->points = bench_open_out(o->out_dir, "throughput.csv");
    csv->memory = bench_open_out(o->out_dir, "memory.csv");
    fprintf(csv->runs, "dist,mix,peer,threads,run,mops,hit_ratio\n");
    fprintf(csv->points, "dist,mix,peer,threads,runs,mops_median,mops_min,"
                         "mops_max,hit_ratio,p50_ns,p99_ns,p999_ns,"
                         "vs_clock\n");
    fprintf(csv->memory, "peer,capacity,bytes_per_entry_beyond_kv,"
                         "after_2c_evicting_puts\n");
    csv->hit = bench_open_out(o->out_dir, "hitratio.csv");
    hitratio_csv_header(csv->hit);
    csv->variants = bench_open_out(o->out_dir, "variants.csv");
    variants_csv_header(csv->variants);
    csv->rss = bench_open_out(o->out_dir, "rss.csv");
    rss_csv_header(csv->rss);
}

void report_close(struct report_csv *csv)
{
    fclose(csv->runs);
    fclose(csv->points);
    fclose(csv->memory);
    fclose(csv->hit);
    fclose(csv->variants);
    fclose(csv->rss);
}

void report_workload(const struct workload *wl)
{
    if (wl->nfill > 0)
        printf("\n(%s: the warm-up stream holds too few distinct keys to "
               "fill the caches; %zu more keys are inserted before it)\n",
               wl->dist, wl->nfill);
}

void report_mix_begin(const struct bench_opts *o, const char *dist, enum mix m)
{
    char dname[64];

    if (strcmp(dist, "zipf") == 0)
        snprintf(dname, sizeof dname, "zipf(%.2f)", o->skew);
    else
        snprintf(dname, sizeof dname, "%s", dist);
    printf("\n== %s N=%zu C=%zu, mix %s (%s), %u runs x %.2fs, interleaved "
           "==\n",
           dname, o->keys, o->capacity, mix_name[m], mix_desc[m], o->runs,
           o->duration);
    printf("  %-12s %3s  %8s  %-18s  %8s  %7s  %7s %7s %8s\n", "peer", "thr",
           "Mops/s", "(min..max)", "vs clock", "hit", "p50ns", "p99ns",
           "p99.9ns");
    fflush(stdout);
}

/* pt's throughput over clock's at the same thread count (see the top
 * comment); false when clock has no such point. */
static bool vs_clock(const struct point *pt, double *ratio)
{
    const struct point *c =
        results_find_in(pt->set, pt->dist, pt->mix, "clock", pt->threads);
    double lo, hi;

    return results_ratio(pt, c, ratio, &lo, &hi) > 0;
}

static void print_point(const struct point *pt)
{
    char hit[16] = "      -", vs[16] = "       -";
    double r;

    if (mix_has_gets(pt->mix))
        snprintf(hit, sizeof hit, "%6.2f%%", 100 * pt->hit);
    if (vs_clock(pt, &r))
        snprintf(vs, sizeof vs, "%7.2fx", r);
    printf("  %-12s %3u  %8.2f  (%7.2f..%7.2f)  %s  %s  %7.0f %7.0f %8.0f\n",
           pt->peer, pt->threads, pt->med, pt->min, pt->max, vs, hit, pt->p50,
           pt->p99, pt->p999);
    fflush(stdout);
}

/* A hit ratio CSV field: empty for a mix without gets. */
static const char *csv_hit(char *buf, size_t n, enum mix m, double hit)
{
    if (!mix_has_gets(m))
        return "";
    snprintf(buf, n, "%.6f", hit);
    return buf;
}

/* runner_mix adds points in blocks, one per thread count, each holding
 * every live peer once in the same order: the block size is the number of
 * points before the first peer repeats. */
static size_t block_size(size_t first, size_t last)
{
    for (size_t i = first + 1; i < last; i++)
        if (strcmp(results_point(i)->peer, results_point(first)->peer) == 0)
            return i - first;
    return last - first;
}

void report_mix_end(struct report_csv *csv, size_t first, size_t last)
{
    size_t nlive = block_size(first, last);

    /* runs.csv in the order the runs were taken: per thread count, run 1
     * of every peer, then run 2, ... */
    for (size_t b = first; nlive > 0 && b < last; b += nlive) {
        for (unsigned r = 0; r < results_point(b)->runs; r++) {
            for (size_t i = b; i < b + nlive && i < last; i++) {
                const struct point *pt = results_point(i);
                char hit[32];

                fprintf(csv->runs, "%s,%s,%s,%u,%u,%.4f,%s\n", pt->dist,
                        mix_name[pt->mix], pt->peer, pt->threads, r,
                        pt->mops[r],
                        csv_hit(hit, sizeof hit, pt->mix, pt->run_hit[r]));
            }
        }
    }
    fflush(csv->runs);
    /* The table lists each peer's thread counts together. */
    for (size_t li = first; li < first + nlive; li++) {
        for (size_t i = li; i < last; i += nlive) {
            const struct point *pt = results_point(i);
            char hit[32], vs[32] = "";
            double r;

            print_point(pt);
            if (vs_clock(pt, &r))
                snprintf(vs, sizeof vs, "%.4f", r);
            fprintf(csv->points,
                    "%s,%s,%s,%u,%u,%.4f,%.4f,%.4f,%s,%.0f,%.0f,"
                    "%.0f,%s\n",
                    pt->dist, mix_name[pt->mix], pt->peer, pt->threads,
                    pt->runs, pt->med, pt->min, pt->max,
                    csv_hit(hit, sizeof hit, pt->mix, pt->hit), pt->p50,
                    pt->p99, pt->p999, vs);
        }
        fflush(csv->points);
    }
}

void report_memory_begin(const struct bench_opts *o)
{
    printf("\n== memory per entry beyond 8-byte key + 8-byte value "
           "(C=%zu, jemalloc stats.allocated; filled with C keys, then after "
           "2C evicting puts; targets hold the larger) ==\n",
           o->capacity);
}

void report_memory_row(struct report_csv *csv, const char *peer,
                       size_t capacity, const struct memory_figure *m)
{
    if (isnan(m->churned))
        printf("  %-14s %8.1f bytes/entry   (does not evict)\n", peer,
               m->filled);
    else
        printf("  %-14s %8.1f bytes/entry   %8.1f after 2C evicting puts\n",
               peer, m->filled, m->churned);
    fprintf(csv->memory, "%s,%zu,%.2f,%.2f\n", peer, capacity, m->filled,
            m->churned);
}

void report_footer(const struct bench_opts *o, int missed)
{
    printf("\nresults in %s/ (throughput.csv, runs.csv, memory.csv, "
           "hitratio.csv, variants.csv, rss.csv, traces.csv, *.png)\n",
           o->out_dir);
    printf("targets missed in this run: %d\n", missed);
}
