/*
 * purecache-bench: the benchmark harness (the README's main job).
 *
 * What it measures, per (key distribution, mix, peer, thread count):
 * throughput (Mops/s, median of --runs timed runs, and its ratio to
 * CLOCK's), hit ratio, latency percentiles from a separate sampled run;
 * per distribution, every bounded peer's steady-state hit ratio beside
 * the static optimum, and the purecache policies with a time to live and
 * with a byte bound beside their plain forms; once per peer the memory per
 * entry beyond key and value, and for the purecache policies the RSS of a
 * byte-bounded cache per byte of its bound. In trace mode, the miss ratio
 * of the three purecache policies and a reference LRU on real traces,
 * beside libCacheSim's for the same cells. Then the targets all those
 * figures are held to. All peers run in the same process, on the same
 * pre-generated keys, through the same loop, behind one vtable (peer.h).
 *
 * This file only wires the modules together, each of which explains its
 * own method at its top:
 *   cli.c       options and their defaults          -> struct bench_opts
 *   peer_*.c    the caches compared                 -> struct bench_peer
 *   workload.c  Zipf / uniform key streams, mixes
 *   runner.c    warm-up, interleaved timed runs, latency sampling
 *   results.c   the points and figures of this run
 *   report.c    stdout tables, CSV files
 *   hitratio.c  hit ratios outside the timed runs, the static optimum
 *   variants.c  expiry and byte-bound variants beside the plain caches
 *   memory.c    jemalloc per-entry measurement
 *   rss.c       RSS / max_bytes of byte-bounded caches
 *   targets.c   the targets table
 *   plot.c      gnuplot data, scripts and PNGs
 *   trace.c     trace replay and its policy checks
 *   refmiss.c   libCacheSim's miss ratios for the same trace cells
 *   callgrind.c the instruction-counting modes (bench/callgrind-*.sh)
 *
 * The purecache policies are loaded from their shared libraries with
 * dlopen (see peer_purecache.c). The harness is single-binary and prints
 * tables on stdout, a progress line on stderr, CSV files and gnuplot PNGs
 * into --out (default bench-out/).
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "callgrind.h"
#include "cli.h"
#include "hitratio.h"
#include "memory.h"
#include "opts.h"
#include "peer.h"
#include "peer_purecache.h"
#include "plot.h"
#include "report.h"
#include "results.h"
#include "rss.h"
#include "runner.h"
#include "targets.h"
#include "trace.h"
#include "util.h"
#include "variants.h"
#include "workload.h"

/* Timed (distribution, mix) steps, for the progress line's [i/n]. */
static int count_steps(const struct bench_opts *o,
                       const struct bench_peer *peers, int npeers)
{
    int steps = 0;

    for (int m = 0; m < MIX_COUNT; m++)
        for (int pi = 0; pi < npeers; pi++)
            if (bench_list_has(o->mixes, mix_name[m]) &&
                runner_can_run(&peers[pi], (enum mix)m))
                steps += (int)o->nthreads;
    return steps * ((bench_list_has(o->dists, "zipf") ? 1 : 0) +
                    (bench_list_has(o->dists, "uniform") ? 1 : 0));
}

/* The synthetic mode: every distribution and mix, its hit ratios and
 * variants, then memory and RSS. Returns 0, or -1 for a bad --dists. */
static int run_synthetic(const struct bench_opts *o,
                         const struct bench_peer *peers, int npeers)
{
    struct report_csv csv;
    int step = 1, steps = count_steps(o, peers, npeers);
    char dists[256];

    report_open(o, &csv);
    snprintf(dists, sizeof dists, "%s", o->dists);
    for (char *save, *d = strtok_r(dists, ",", &save); d != NULL;
         d = strtok_r(NULL, ",", &save)) {
        struct workload wl;
        const char *dn = strcmp(d, "zipf") == 0      ? "zipf"
                         : strcmp(d, "uniform") == 0 ? "uniform"
                                                     : NULL;

        if (dn == NULL) {
            fprintf(stderr, "purecache-bench: unknown dist %s\n", d);
            return -1;
        }
        workload_init(&wl, o, dn);
        bench_progress_done();
        report_workload(&wl);
        for (int m = 0; m < MIX_COUNT; m++) {
            size_t first = results_npoints();

            if (!bench_list_has(o->mixes, mix_name[m]))
                continue;
            report_mix_begin(o, dn, (enum mix)m);
            runner_mix(o, &wl, (enum mix)m, peers, npeers, &step, steps, NULL);
            report_mix_end(&csv, first, results_npoints());
            plot_throughput(o, dn, (enum mix)m, peers, npeers);
        }
        if (bench_list_has(o->hit_dists, dn))
            hitratio_run(o, &wl, peers, npeers, csv.hit);
        if (bench_list_has(o->var_dists, dn))
            variants_run(o, &wl, peers, npeers, csv.variants);
        workload_fini(&wl);
    }
    report_memory_begin(o);
    for (int pi = 0; pi < npeers; pi++) {
        struct memory_figure m;

        if (memory_per_entry(o, &peers[pi], &m) != 0)
            continue;
        report_memory_row(&csv, peers[pi].name, o->capacity, &m);
        results_add_memory(peers[pi].name, memory_judged(&m));
    }
    /* Each purecache policy again with every entry given a ttl (an hour):
     * what expiry adds per entry (the shard's expiry queue, or lru's heap;
     * near expiry times live in the entry's header, src/entry.h). */
    for (int pi = 0; pi < npeers; pi++) {
        struct peer_pc_variant v = {.suffix = "+ttl", .ttl_ms = 3600000};
        struct bench_peer vp;
        struct memory_figure m;

        if (!peer_purecache_is(&peers[pi]) ||
            peer_purecache_variant(&vp, &peers[pi], &v) != 0)
            continue;
        if (memory_per_entry(o, &vp, &m) == 0) {
            report_memory_row(&csv, vp.name, o->capacity, &m);
            results_add_memory(vp.name, memory_judged(&m));
        }
        peer_purecache_variant_free(&vp);
    }
    rss_run(o, peers, npeers, csv.rss);
    report_close(&csv);
    return 0;
}

int main(int argc, char **argv)
{
    struct bench_opts o;
    struct bench_peer peers[BENCH_MAX_PEERS], *clock = NULL, *freq = NULL,
                                              *lru = NULL, *ref = NULL;
    /* Trace mode always uses clock, frequency, lru and the mutex-lru
     * reference; the synthetic benchmarks run the peers --peers selects. */
    struct bench_peer trace_peers[4];
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    int npeers = 0, missed = 0, status;

    bench_progress_init();
    status = cli_parse(argc, argv, &o);
    if (status >= 0)
        return status;

    /* Peers, in table order. clock, frequency, lru and mutex-lru are also
     * trace mode's. The frequency policy is optional (a CLOCK library
     * older than it). */
    if (peer_purecache(&peers[npeers], "clock", o.lib_clock, o.hash_seed) == 0)
        clock = &peers[npeers++];
    if (peer_purecache(&peers[npeers], "frequency", o.lib_clock, o.hash_seed) ==
        0)
        freq = &peers[npeers++];
    if (peer_purecache(&peers[npeers], "lru", o.lib_lru, o.hash_seed) == 0)
        lru = &peers[npeers++];
    if (clock == NULL || lru == NULL) {
        fprintf(stderr, "purecache-bench: cannot load both policies "
                        "(--lib-clock / --lib-lru)\n");
        return 1;
    }
    /* --lib-b: the second build's peers, as its policy allows. */
    if (o.lib_b != NULL) {
        const char *pol = peer_purecache_lib_policy(o.lib_b);

        if (pol == NULL)
            return 1;
        if (strcmp(pol, "lru") == 0) {
            if (peer_purecache_as(&peers[npeers], "lru", o.lib_b, o.hash_seed,
                                  "lru-b") == 0)
                npeers++;
        } else {
            if (peer_purecache_as(&peers[npeers], "clock", o.lib_b, o.hash_seed,
                                  "clock-b") == 0)
                npeers++;
            if (peer_purecache_as(&peers[npeers], "frequency", o.lib_b,
                                  o.hash_seed, "frequency-b") == 0)
                npeers++;
        }
    }
    if (o.callgrind_get > 0 && o.callgrind_peer == NULL)
        return callgrind_get(clock, &o, o.callgrind_get);
    if (o.callgrind_get > 0 && freq != NULL &&
        strcmp(o.callgrind_peer, "frequency") == 0)
        return callgrind_get(freq, &o, o.callgrind_get);
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
    if (o.callgrind_miss > 0) {
        const char *name = o.callgrind_peer ? o.callgrind_peer : "clock";

        for (int i = 0; i < npeers; i++)
            if (strcmp(peers[i].name, name) == 0)
                return callgrind_miss(&peers[i], &o, o.callgrind_miss);
        fprintf(stderr, "purecache-bench: no peer %s\n", name);
        return 2;
    }
    if (o.callgrind_peer != NULL) {
        for (int i = 0; i < npeers; i++)
            if (strcmp(peers[i].name, o.callgrind_peer) == 0)
                return callgrind_peer(&peers[i], &o,
                                      o.callgrind_get > 0 ? o.callgrind_get
                                                          : 1000000);
        fprintf(stderr, "purecache-bench: no peer %s\n", o.callgrind_peer);
        return 2;
    }
    trace_peers[0] = *clock;
    if (freq != NULL)
        trace_peers[1] = *freq;
    trace_peers[2] = *lru;
    trace_peers[3] = *ref;
    {
        int k = 0;

        for (int i = 0; i < npeers; i++)
            if (bench_list_has(o.peers, peers[i].name))
                peers[k++] = peers[i];
        npeers = k;
    }

    if (mkdir(o.out_dir, 0777) != 0 && errno != EEXIST) {
        fprintf(stderr, "purecache-bench: %s: %s\n", o.out_dir,
                strerror(errno));
        return 1;
    }
    report_banner(&o, ncpu, runner_init(), peers, npeers);
    if (o.synth && run_synthetic(&o, peers, npeers) < 0)
        return 2;
    if (strcmp(o.traces, "none") != 0)
        missed += trace_run(&o, &trace_peers[0],
                            freq != NULL ? &trace_peers[1] : NULL,
                            &trace_peers[2], &trace_peers[3]);
    missed += targets_check(&o);
    report_footer(&o, missed);
    return 0;
}
