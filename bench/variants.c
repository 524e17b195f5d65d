/*
 * variants: what a time to live and a byte bound cost (issue 12).
 *
 * For every purecache policy that runs (clock, frequency, lru), and every
 * mix of --variant-mixes (default get, aside, put) on the distributions of
 * --variant-dists (default zipf), two blocks of caches are timed, each
 * block interleaved run by run as the main tables are (runner.c), so that
 * a variant and its baseline see the same moments of a shared machine:
 *
 *   expiry block      P        the plain cache (8-byte values, capacity C)
 *                     P+ttl    the same with pc_options.ttl_ms = --ttl-ms
 *   byte-bound block  P+var    values of 10..4096 bytes (uniform, a fixed
 *                              function of the key), count-bounded:
 *                              capacity = --variant-bytes / 2061 (the mean
 *                              entry: 8-byte key + 2053-byte value)
 *                     P+bytes  the same values, max_bytes = --variant-bytes
 *                              and twice that capacity (the count bound
 *                              never binds), so the byte bound alone evicts
 *                     P+bytesN the same with capacity N (there are only N
 *                              keys): "capacity large" taken literally
 *
 * P+ttl is compared with P, and P+bytes and P+bytesN with P+var: the same
 * values under a count bound, so the ratio isolates the byte bound (values
 * of 2 KB instead of 8 bytes cost far more than any bound; P+var against P
 * shows that, across blocks, in the tables). P+bytes is the one held to
 * the target: P+bytesN adds what a capacity 60 times the entries costs by
 * itself (structures sized by the capacity, not by the entries present),
 * which is the capacity's cost, not the bound's.
 *
 * How the ttl was chosen. A cache in which each entry is put at a random
 * moment and lives ttl has, in steady state, remaining lifetimes uniform
 * in (0, ttl], so 1/ttl of its entries expire every second: --ttl-ms
 * 10000 makes that 10%/s. A cache warmed up in half a second would instead
 * hold entries that all expire together ten seconds later, long after the
 * runs, so P+ttl's warm-up puts get ttls drawn uniformly from 1..ttl
 * (pc_put_ex) and its timed runs' puts the cache's own ttl: the runs start
 * in that steady state. Hot keys that expire are missed and put again
 * (cache-aside), cold ones are evicted (expired first) or removed by
 * writes that meet them. The report prints the expirations the cache
 * counted, per second of its life after warm-up and per entry, to show the
 * rate was reached. The clock runs on while the other caches of the block
 * take their turns, so per operation of its own a cache meets more
 * expirations than a cache under continuous load at 10%/s would: the cost
 * shown errs high. In the read-only get mix nothing is put again, so there
 * the entries get a ttl of one hour: every read checks an expiry time, no
 * entry expires, and the hit ratio stays that of the plain cache.
 *
 * Latency runs are skipped and runs last --variant-duration (default
 * 0.25 s), to keep the default run short. There are --variant-runs of
 * them (default 7), more than the main tables' 3: the targets check the
 * median of per-run ratios of two caches a few percent apart, and with 3
 * runs that median swung by 0.05 to 0.1 between jobs on a shared 2-core
 * machine, as much as the cost it measures.
 */
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "peer_purecache.h"
#include "results.h"
#include "runner.h"
#include "util.h"
#include "variants.h"

#define SET "variants"
#define VAL_MIN 10u
#define VAL_MAX 4096u
#define ENTRY_MEAN (8u + (VAL_MIN + VAL_MAX) / 2u) /* 2061 bytes */
#define GET_TTL_MS 3600000ull                      /* the get mix's ttl */
#define MAX_BLOCK 12 /* caches in a block: 3 policies x 3 */

struct vpeer {
    struct bench_peer p;
    const char *base; /* the peer it is compared with; NULL: none */
    bool variant;     /* p was made by peer_purecache_variant */
    uint64_t ttl_ms, max_bytes;
    size_t capacity;
};

static void set_vpeer(struct vpeer *vp, const struct peer_pc_variant *v,
                      size_t capacity)
{
    vp->ttl_ms = v->ttl_ms;
    vp->max_bytes = v->max_bytes;
    vp->capacity = v->capacity ? v->capacity : capacity;
}

/* The block's caches for mix m: per purecache peer, its baseline (the
 * plain peer, or P+var) and the variants compared with it. */
static int build_block(const struct bench_opts *o, bool bytes, enum mix m,
                       const struct bench_peer *peers, int npeers,
                       struct vpeer *out)
{
    int n = 0;

    for (int pi = 0; pi < npeers && n + 3 <= MAX_BLOCK; pi++) {
        const struct bench_peer *b = &peers[pi];
        struct peer_pc_variant v[3];
        int nv, first = n;

        if (!peer_purecache_is(b))
            continue;
        memset(v, 0, sizeof v);
        if (!bytes) {
            /* v[0]: the plain peer itself */
            v[1].suffix = "+ttl";
            v[1].ttl_ms = m == MIX_GET ? GET_TTL_MS : o->ttl_ms;
            v[1].warm_ttl_ms = m == MIX_GET ? 0 : o->ttl_ms;
            nv = 2;
        } else {
            v[0].suffix = "+var";
            v[0].vmin = VAL_MIN;
            v[0].vmax = VAL_MAX;
            v[0].capacity = (size_t)(o->var_bytes / ENTRY_MEAN);
            if (v[0].capacity == 0)
                v[0].capacity = 1;
            v[1] = v[0];
            v[1].suffix = "+bytes";
            v[1].capacity = 2 * v[0].capacity;
            v[1].max_bytes = o->var_bytes;
            v[2] = v[1];
            v[2].suffix = "+bytesN";
            v[2].capacity = o->keys;
            nv = 3;
        }
        for (int k = 0; k < nv; k++) {
            struct vpeer *vp = &out[n];

            vp->base = k ? out[first].p.name : NULL;
            vp->variant = bytes || k > 0;
            set_vpeer(vp, &v[k], o->capacity);
            if (!vp->variant)
                vp->p = *b;
            else if (peer_purecache_variant(&vp->p, b, &v[k]) != 0)
                break;
            n++;
        }
        if (n - first < nv) /* drop this policy's partial set */
            while (n > first)
                if (out[--n].variant)
                    peer_purecache_variant_free(&out[n].p);
    }
    return n;
}

void variants_csv_header(FILE *csv)
{
    fprintf(csv, "block,dist,mix,peer,base,threads,runs,mops_median,mops_min,"
                 "mops_max,hit_ratio,ratio_vs_base,ratio_min,ratio_max,"
                 "ttl_ms,max_bytes,capacity,expired_per_s_pct,entries_end,"
                 "bytes_end\n");
}

static void print_head(const struct bench_opts *o, const struct workload *wl,
                       enum mix m, bool bytes)
{
    char dname[64];

    if (strcmp(wl->dist, "zipf") == 0)
        snprintf(dname, sizeof dname, "zipf(%.2f)", o->skew);
    else
        snprintf(dname, sizeof dname, "%s", wl->dist);
    printf("\n== %s: %s N=%zu, mix %s (%s), %u runs x %.2fs, interleaved, "
           "no latency run ==\n",
           bytes ? "byte bound" : "expiry", dname, o->keys, mix_name[m],
           mix_desc[m], o->var_runs, o->var_duration);
    if (!bytes && m == MIX_GET)
        printf("  +ttl: every entry has a ttl of %llu ms (reads check it; "
               "none expires while the mix runs: nothing would put it "
               "again)\n",
               GET_TTL_MS);
    else if (!bytes)
        printf("  +ttl: pc_options.ttl_ms = %llu; warm-up puts got ttls "
               "uniform in 1..%llu ms, so 1/ttl of the entries (%.0f%%) "
               "expire per second from the start\n",
               (unsigned long long)o->ttl_ms, (unsigned long long)o->ttl_ms,
               o->ttl_ms ? 100000.0 / (double)o->ttl_ms : 0.0);
    else
        printf("  +var: values of %u..%u bytes, capacity %llu (= max_bytes / "
               "%u-byte mean entry); +bytes: the same values, max_bytes %llu, "
               "capacity twice +var's; +bytesN: the same, capacity N\n",
               VAL_MIN, VAL_MAX,
               (unsigned long long)(o->var_bytes / ENTRY_MEAN), ENTRY_MEAN,
               (unsigned long long)o->var_bytes);
    printf("  %-16s %3s  %8s  %-18s  %7s  %-14s %s\n", "peer", "thr", "Mops/s",
           "(min..max)", "hit", "vs", "ratio [runs]");
}

/* The table rows and CSV rows of points [first, last), which runner_mix
 * added (one block per thread count), a peer's rows together; then a line
 * per variant on what its cache saw. */
static void print_block(const struct bench_opts *o, FILE *csv, bool bytes,
                        const struct vpeer *vp, int nb, size_t first,
                        size_t last)
{
    for (int k = 0; k < nb; k++) {
        struct peer_pc_run run = {0};
        double pct = NAN;

        if (vp[k].variant)
            run = peer_purecache_last_run(&vp[k].p);
        if (run.valid && run.seconds > 0 && run.len > 0)
            pct =
                100.0 * (double)run.expirations / run.seconds / (double)run.len;
        for (size_t i = first; i < last; i++) {
            const struct point *pt = results_point(i);
            const struct point *b;
            double med = NAN, lo = NAN, hi = NAN;
            char hit[16] = "      -", ratio[48] = "";

            if (strcmp(pt->peer, vp[k].p.name) != 0)
                continue;
            b = vp[k].base ? results_find_in(SET, pt->dist, pt->mix, vp[k].base,
                                             pt->threads)
                           : NULL;
            if (mix_has_gets(pt->mix))
                snprintf(hit, sizeof hit, "%6.2f%%", 100 * pt->hit);
            if (results_ratio(pt, b, &med, &lo, &hi) > 0)
                snprintf(ratio, sizeof ratio, "%5.2f [%4.2f..%4.2f]", med, lo,
                         hi);
            printf("  %-16s %3u  %8.2f  (%7.2f..%7.2f)  %s  %-14s %s\n",
                   pt->peer, pt->threads, pt->med, pt->min, pt->max, hit,
                   vp[k].base ? vp[k].base : "", ratio);
            fprintf(csv,
                    "%s,%s,%s,%s,%s,%u,%u,%.4f,%.4f,%.4f,%.6f,%.4f,%.4f,"
                    "%.4f,%llu,%llu,%zu,%.3f,%zu,%llu\n",
                    bytes ? "bytes" : "expiry", pt->dist, mix_name[pt->mix],
                    pt->peer, vp[k].base ? vp[k].base : "", pt->threads,
                    pt->runs, pt->med, pt->min, pt->max, pt->hit, med, lo, hi,
                    (unsigned long long)vp[k].ttl_ms,
                    (unsigned long long)vp[k].max_bytes, vp[k].capacity, pct,
                    run.len, (unsigned long long)run.bytes);
        }
    }
    for (int k = 0; k < nb; k++) {
        struct peer_pc_run run;

        if (!vp[k].variant)
            continue;
        run = peer_purecache_last_run(&vp[k].p);
        if (!run.valid)
            continue;
        if (!bytes)
            printf("  %s: %llu expirations in %.1f s after warm-up, %zu "
                   "entries: %.1f%% of the entries per second (entries "
                   "evicted first never expire)\n",
                   vp[k].p.name, (unsigned long long)run.expirations,
                   run.seconds, run.len,
                   run.len && run.seconds > 0
                       ? 100.0 * (double)run.expirations / run.seconds /
                             (double)run.len
                       : 0.0);
        else
            printf("  %s: %zu entries, %llu bytes of keys + values at the "
                   "end (%s %llu)\n",
                   vp[k].p.name, run.len, (unsigned long long)run.bytes,
                   vp[k].max_bytes ? "bound" : "capacity",
                   vp[k].max_bytes ? (unsigned long long)vp[k].max_bytes
                                   : (unsigned long long)vp[k].capacity);
    }
    fflush(stdout);
    fflush(csv);
}

void variants_run(const struct bench_opts *o, struct workload *wl,
                  const struct bench_peer *peers, int npeers, FILE *csv)
{
    struct bench_opts vo = *o;

    vo.duration = o->var_duration;
    vo.runs = o->var_runs;
    vo.lat_every = 0;
    for (int m = 0; m < MIX_COUNT; m++) {
        if (!bench_list_has(o->var_mixes, mix_name[m]))
            continue;
        for (int bytes = 0; bytes < 2; bytes++) {
            struct vpeer vp[MAX_BLOCK];
            struct bench_peer bp[MAX_BLOCK];
            int nb = build_block(o, bytes, (enum mix)m, peers, npeers, vp);
            int step = 1, steps = nb * (int)o->nthreads;
            size_t first = results_npoints();

            if (nb == 0)
                continue;
            for (int k = 0; k < nb; k++)
                bp[k] = vp[k].p;
            print_head(o, wl, (enum mix)m, bytes);
            fflush(stdout);
            runner_mix(&vo, wl, (enum mix)m, bp, nb, &step, steps, SET);
            print_block(o, csv, bytes, vp, nb, first, results_npoints());
            for (int k = 0; k < nb; k++)
                if (vp[k].variant)
                    peer_purecache_variant_free(&vp[k].p);
        }
    }
}
