/*
 * plot: gnuplot output.
 *
 * Each plot is a .dat file (gnuplot's blank-line-separated blocks) and a
 * .gp script beside it, written whether or not gnuplot runs, so that the
 * figures can be re-rendered or restyled from --out alone. Rendering runs
 * gnuplot in --out (so the scripts use relative names) unless --no-plot;
 * a missing gnuplot only costs the PNG, never the run.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

#include "plot.h"
#include "results.h"
#include "util.h"

static void plot_render(const struct bench_opts *o, const char *script)
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

void plot_throughput(const struct bench_opts *o, const char *dist, enum mix m,
                     const struct bench_peer *peers, int npeers)
{
    char name[128];
    FILE *dat, *gp;
    int blocks = 0;

    snprintf(name, sizeof name, "tput-%s-%s.dat", dist, mix_name[m]);
    dat = bench_open_out(o->out_dir, name);
    snprintf(name, sizeof name, "tput-%s-%s.gp", dist, mix_name[m]);
    gp = bench_open_out(o->out_dir, name);
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
                results_find(dist, m, peers[pi].name, o->threads[ti]);

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
        plot_render(o, name);
}

void plot_trace(const struct bench_opts *o, const char *trace,
                const double rows[][5], int nrows)
{
    char fn[512];
    FILE *dat, *gp;

    if (nrows == 0)
        return;
    snprintf(fn, sizeof fn, "miss-%s.dat", trace);
    dat = bench_open_out(o->out_dir, fn);
    fprintf(dat, "# size clock frequency lru ref-lru\n");
    for (int i = 0; i < nrows; i++)
        fprintf(dat, "%.0f %.6f %.6f %.6f %.6f\n", rows[i][0], rows[i][1],
                rows[i][2], rows[i][3], rows[i][4]);
    fclose(dat);
    snprintf(fn, sizeof fn, "miss-%s.gp", trace);
    gp = bench_open_out(o->out_dir, fn);
    fprintf(gp,
            "set terminal pngcairo size 800,500 font 'sans,11'\n"
            "set output 'miss-%s.png'\n"
            "set title 'miss ratio vs cache size: %s (get, put on miss)'\n"
            "set xlabel 'cache size (entries)'\nset ylabel 'miss ratio'\n"
            "set logscale x\nset grid\nset key top right\n"
            "set yrange [0:*]\nset offsets graph 0.05, graph 0.05, 0, 0\n"
            "plot 'miss-%s.dat' using 1:2 with linespoints lw 2 pt 7 "
            "title 'clock', \\\n"
            "     '' using 1:3 with linespoints lw 2 pt 9 title 'frequency', "
            "\\\n"
            "     '' using 1:4 with linespoints lw 2 pt 5 title 'lru', \\\n"
            "     '' using 1:5 with linespoints lw 1 pt 1 dt 2 "
            "title 'ref mutex-lru'\n",
            trace, trace, trace);
    fclose(gp);
    plot_render(o, fn);
}
