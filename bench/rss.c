/*
 * rss: how much resident memory a byte-bounded cache costs per byte of its
 * bound.
 *
 * For each purecache policy: a cache with max_bytes = --rss-bytes (M) and
 * a capacity twice the entries M can hold (so the byte bound is what
 * binds) is filled with 1.5 x M / 108 distinct keys (8-byte key, 100-byte
 * value: 108 bytes against the bound), so it ends full after evicting a
 * third of what went in. Then pc_reclaim frees what its evictions retired.
 * A second row repeats it with the capacity equal to those entries, to
 * show what the capacity itself costs (structures sized by it: the index
 * presized for its share, the frequency policy's ghost).
 *
 * RSS is read from /proc/self/statm before the cache is created and after
 * that pc_reclaim; before the first reading jemalloc's tcache is flushed
 * and every arena purged, so memory freed by earlier phases of the run
 * does not sit in the baseline, ready to be reused unseen. The growth
 * divided by M is the figure the target holds (<= 1.5); (growth - pc_bytes)
 * / pc_len is the overhead per entry beyond key and value, so that
 * RSS ~ bytes + entries x overhead. It counts everything: the entries'
 * allocations at their size class, the index, the policy's rings (and the
 * frequency policy's ghost, which is sized by the capacity, not by the
 * entries present), per-thread records, and the pages jemalloc keeps
 * dirty after the evictions' frees. Two more columns separate those: the
 * same ratio after purging jemalloc's free pages, and jemalloc's
 * stats.allocated growth over M (what the cache holds, without the
 * allocator's slack).
 */
#include <jemalloc/jemalloc.h>
#include <math.h>
#include <stdio.h>
#include <unistd.h>

#include "memory.h"
#include "peer_purecache.h"
#include "results.h"
#include "rss.h"
#include "util.h"
#include "workload.h"

#define VLEN 100u
#define ENTRY (8u + VLEN)

static void jemalloc_purge(void)
{
    char name[64];

    mallctl("thread.tcache.flush", NULL, NULL, NULL, 0);
    snprintf(name, sizeof name, "arena.%u.purge", (unsigned)MALLCTL_ARENAS_ALL);
    mallctl(name, NULL, NULL, NULL, 0);
}

static double rss_now(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long size = 0, resident = 0;

    if (f == NULL)
        return 0;
    if (fscanf(f, "%lu %lu", &size, &resident) != 2)
        resident = 0;
    fclose(f);
    return (double)resident * (double)sysconf(_SC_PAGESIZE);
}

void rss_csv_header(FILE *csv)
{
    fprintf(csv, "peer,max_bytes,capacity,entries,bytes,rss_growth,"
                 "rss_per_max_bytes,"
                 "overhead_per_entry,purged_rss_per_max_bytes,"
                 "allocated_per_max_bytes\n");
}

/* One cache of policy base: prints its row, returns RSS growth / M. */
static double measure(const struct bench_opts *o, const struct bench_peer *base,
                      size_t capacity, size_t fill, FILE *csv, double *over)
{
    const double m = (double)o->rss_bytes;
    struct peer_pc_variant v = {.suffix = "+rss",
                                .max_bytes = o->rss_bytes,
                                .capacity = capacity,
                                .vmin = VLEN,
                                .vmax = VLEN};
    struct bench_peer p;
    double before, after, purged, a0, a1, len, bytes;
    void *h;

    if (peer_purecache_variant(&p, base, &v) != 0)
        return NAN;
    bench_progress("rss: %s, capacity %zu", base->name, capacity);
    jemalloc_purge();
    before = rss_now();
    a0 = (double)memory_allocated();
    h = p.create(p.ctx, capacity);
    if (h == NULL) {
        bench_progress_done();
        fprintf(stderr, "purecache-bench: %s: create failed\n", p.name);
        peer_purecache_variant_free(&p);
        return NAN;
    }
    for (size_t r = 0; r < fill; r++)
        p.put(h, key_of_rank(r), bench_value_of(key_of_rank(r)));
    p.quiesce(h);
    a1 = (double)memory_allocated();
    after = rss_now();
    len = (double)peer_purecache_len(h);
    bytes = (double)peer_purecache_bytes(h);
    jemalloc_purge();
    purged = rss_now();
    p.destroy(h);
    jemalloc_purge();
    peer_purecache_variant_free(&p);
    *over = len > 0 ? (after - before - bytes) / len : 0;
    bench_progress_done();
    printf("  %-12s %9zu %9.0f %11.0f %11.0f  %8.3f %14.1f  %14.3f %10.3f\n",
           base->name, capacity, len, bytes, after - before,
           (after - before) / m, *over, (purged - before) / m, (a1 - a0) / m);
    fflush(stdout);
    fprintf(csv, "%s,%llu,%zu,%.0f,%.0f,%.0f,%.4f,%.2f,%.4f,%.4f\n", base->name,
            (unsigned long long)o->rss_bytes, capacity, len, bytes,
            after - before, (after - before) / m, *over, (purged - before) / m,
            (a1 - a0) / m);
    return (after - before) / m;
}

void rss_run(const struct bench_opts *o, const struct bench_peer *peers,
             int npeers, FILE *csv)
{
    size_t fits = (size_t)(o->rss_bytes / ENTRY), fill = fits + fits / 2;

    if (o->rss_bytes == 0)
        return;
    printf("\n== RSS of a byte-bounded cache: max_bytes %llu (%.0f MiB), "
           "8-byte keys + %u-byte values, %zu distinct keys put, after "
           "pc_reclaim; the capacity twice the %zu entries the bound holds "
           "(the figure held to the target), then equal to it ==\n",
           (unsigned long long)o->rss_bytes, (double)o->rss_bytes / 1048576.0,
           VLEN, fill, fits);
    printf("  %-12s %9s %9s %11s %11s  %8s %14s  %14s %10s\n", "peer",
           "capacity", "entries", "bytes", "RSS growth", "RSS/max",
           "overhead/entry", "purged RSS/max", "alloc/max");
    for (int pi = 0; pi < npeers; pi++) {
        double ratio, over, over1;
        char name[64];

        if (!peer_purecache_is(&peers[pi]))
            continue;
        ratio = measure(o, &peers[pi], 2 * fits, fill, csv, &over);
        if (isnan(ratio))
            continue;
        snprintf(name, sizeof name, "rss.%s", peers[pi].name);
        /* PARTIAL below the default bound (the target's): a smaller
         * cache is dominated by fixed costs (2.74 at 1 MiB for clock). */
        results_add_figure(name, ratio,
                           o->rss_bytes >= BENCH_RSS_BYTES
                               ? "capacity 2x entries"
                               : "capacity 2x, bound < 64M",
                           o->rss_bytes < BENCH_RSS_BYTES);
        snprintf(name, sizeof name, "rss-overhead.%s", peers[pi].name);
        results_add_figure(name, over, "", false);
        measure(o, &peers[pi], fits, fill, csv, &over1);
    }
    fflush(csv);
}
