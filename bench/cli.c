/*
 * cli: option table, parser and usage text.
 *
 * One table row per option: its name, its argument's placeholder, how the
 * argument is stored (kind + offset into struct bench_opts) and its help
 * line. The parser and --help both walk the table, so an option cannot be
 * accepted without being documented, or documented without being parsed.
 * Numbers are converted as strtoull/atof/atoi do (no range checks beyond
 * the final sanity check in cli_finish); --quick overrides the sizes after
 * everything else is parsed, whatever their position on the line.
 */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

#ifndef PC_BENCH_LIB_CLOCK
#define PC_BENCH_LIB_CLOCK "libpurecache_clock.so"
#endif
#ifndef PC_BENCH_LIB_LRU
#define PC_BENCH_LIB_LRU "libpurecache_lru.so"
#endif
#ifndef PC_BENCH_TRACE_DIR
#define PC_BENCH_TRACE_DIR "../shared/traces"
#endif

static const struct bench_opts defaults = {
    .dists = "zipf,uniform",
    .skew = 0.99,
    .keys = 1000000,
    .capacity = 100000,
    .mixes = "get,90-10,aside,put",
    .runs = 3,
    .duration = 0.5,
    .stream_len = 0, /* cli_finish: 16 draws per key (see workload.c) */
    .lat_every = 64,
    .lat_runs = 3,
    .peers = "all",
    .traces = NULL, /* "all", or "lirs-cpp" with --quick (cli_finish) */
    .trace_dir = PC_BENCH_TRACE_DIR,
    .out_dir = "bench-out",
    .lib_clock = PC_BENCH_LIB_CLOCK,
    .lib_lru = PC_BENCH_LIB_LRU,
    .hash_seed = 0x5eed5eed5eedull,
    .hit_ops = BENCH_HIT_OPS,
    .hit_dists = "zipf",
    .var_dists = "zipf",
    .var_mixes = "get,aside,put",
    .var_duration = 0.25,
    .var_runs = 7,
    .ttl_ms = 10000,
    .var_bytes = 32u << 20,
    .rss_bytes = BENCH_RSS_BYTES,
    .pin = true,
    .plot = true,
    .synth = true,
};

enum opt_kind {
    OPT_HELP,    /* print the usage on stdout and exit 0 */
    OPT_TRUE,    /* flag: set a bool */
    OPT_FALSE,   /* flag: clear a bool */
    OPT_STRING,  /* const char *, the argument itself */
    OPT_DOUBLE,  /* double, atof */
    OPT_SIZE,    /* size_t, strtoull */
    OPT_U64,     /* uint64_t, strtoull */
    OPT_UINT,    /* unsigned, atoi */
    OPT_LONG,    /* long, atol */
    OPT_THREADS, /* the --threads list */
};

struct opt_spec {
    const char *name;
    const char *arg; /* placeholder in --help; NULL: takes no argument */
    enum opt_kind kind;
    size_t off;       /* of the field in struct bench_opts */
    const char *help; /* NULL: accepted but not listed */
};

#define OFF(field) offsetof(struct bench_opts, field)

static const struct opt_spec options[] = {
    {"--dists", "LIST", OPT_STRING, OFF(dists), "zipf,uniform (default both)"},
    {"--skew", "S", OPT_DOUBLE, OFF(skew), "Zipf exponent (default 0.99)"},
    {"--keys", "N", OPT_SIZE, OFF(keys), "distinct keys (default 1000000)"},
    {"--capacity", "C", OPT_SIZE, OFF(capacity),
     "cache capacity (default 100000)"},
    {"--mixes", "LIST", OPT_STRING, OFF(mixes),
     "get,90-10,aside,put (default all)"},
    {"--threads", "LIST", OPT_THREADS, OFF(threads),
     "e.g. 1,2,4 (default 1..nproc)"},
    {"--runs", "R", OPT_UINT, OFF(runs),
     "timed runs per point, median (default 3)"},
    {"--duration", "SEC", OPT_DOUBLE, OFF(duration),
     "seconds per timed run (default 0.5)"},
    {"--warm", "OPS", OPT_SIZE, OFF(warm_ops),
     "cache-aside warm-up ops (default max(N, 4C))"},
    {"--stream", "LEN", OPT_SIZE, OFF(stream_len),
     "pre-generated keys per thread, rounded to a power of two (default "
     "16 or more per key, at least 2^20, within 2 GiB of streams in all)"},
    {"--lat-every", "K", OPT_UINT, OFF(lat_every),
     "latency run samples 1 op in K (default 64)"},
    {"--lat-runs", "R", OPT_UINT, OFF(lat_runs),
     "latency runs per point, interleaved, samples pooled (default 3)"},
    {"--peers", "LIST", OPT_STRING, OFF(peers),
     "all, or of clock,frequency,lru,ck_hs,mutex-lru,striped-lru,tbb-lru,"
     "cuckoo (and clock-b,frequency-b,lru-b with --lib-b)"},
    {"--hit-ops", "N", OPT_SIZE, OFF(hit_ops),
     "hit-ratio report: cache-aside ops counted, single-threaded, after the "
     "warm-up and 2N more (default 4000000; 0 skips it)"},
    {"--hit-dists", "LIST", OPT_STRING, OFF(hit_dists),
     "its distributions (default zipf)"},
    {"--variant-dists", "LIST", OPT_STRING, OFF(var_dists),
     "expiry and byte-bound variants of clock, frequency, lru: on these "
     "distributions (default zipf; none skips them)"},
    {"--variant-mixes", "LIST", OPT_STRING, OFF(var_mixes),
     "their mixes (default get,aside,put)"},
    {"--variant-runs", "R", OPT_UINT, OFF(var_runs),
     "their timed runs per point (default 7: their ratios compare two "
     "caches a few percent apart)"},
    {"--variant-duration", "SEC", OPT_DOUBLE, OFF(var_duration),
     "their seconds per timed run (default 0.25; no latency run)"},
    {"--ttl-ms", "MS", OPT_U64, OFF(ttl_ms),
     "the expiry variant's ttl (default 10000: 10% of entries expire per "
     "second)"},
    {"--variant-bytes", "B", OPT_U64, OFF(var_bytes),
     "the byte-bound variant's max_bytes, values of 10..4096 bytes "
     "(default 33554432)"},
    {"--rss-bytes", "B", OPT_U64, OFF(rss_bytes),
     "RSS / max_bytes of byte-bounded caches of 100-byte values: the bound "
     "(default 67108864; 0 skips it)"},
    {"--traces", "SET", OPT_STRING, OFF(traces),
     "all (default: every shared trace, about 45 s), small (those under 1M "
     "requests, seconds), none, or a list of names (e.g. lirs-cpp,arc-OLTP)"},
    {"--trace-dir", "DIR", OPT_STRING, OFF(trace_dir),
     "default " PC_BENCH_TRACE_DIR},
    {"--no-synth", NULL, OPT_FALSE, OFF(synth), "trace mode only"},
    {"--out", "DIR", OPT_STRING, OFF(out_dir),
     "CSV, gnuplot scripts and PNGs (default bench-out)"},
    {"--no-plot", NULL, OPT_FALSE, OFF(plot), "do not run gnuplot"},
    {"--no-pin", NULL, OPT_FALSE, OFF(pin),
     "do not pin thread i to CPU i mod ncpu"},
    {"--lib-clock", "PATH", OPT_STRING, OFF(lib_clock),
     "the CLOCK policy's shared library"},
    {"--lib-lru", "PATH", OPT_STRING, OFF(lib_lru),
     "the exact-LRU policy's shared library"},
    {"--lib-b", "PATH", OPT_STRING, OFF(lib_b),
     "a second build of either policy, run as peers clock-b and frequency-b "
     "(or lru-b) beside the others: an A/B comparison in one process, "
     "whose 'vs clock' column is B / A"},
    {"--quick", NULL, OPT_TRUE, OFF(quick), "a few-second smoke run (CI)"},
    {"--callgrind-get", "N", OPT_LONG, OFF(callgrind_get),
     "only run N CLOCK gets in bench_get_loop (see bench/callgrind-get.sh)"},
    {"--callgrind-miss", "N", OPT_LONG, OFF(callgrind_miss),
     "only run N get misses, each followed by a put that evicts, in "
     "bench_miss_loop (see bench/callgrind-miss.sh)"},
    {"--callgrind-peer", "P", OPT_STRING, OFF(callgrind_peer),
     "with --callgrind-get: N gets of peer P in bench_peer_get_loop; with "
     "--callgrind-miss: the peer (default clock)"},
    {"--help", NULL, OPT_HELP, 0, NULL},
    {"-h", NULL, OPT_HELP, 0, NULL},
};

#define NOPTIONS (sizeof options / sizeof options[0])

static void usage(FILE *f)
{
    fprintf(f, "usage: purecache-bench [options]\n");
    for (size_t i = 0; i < NOPTIONS; i++) {
        const struct opt_spec *s = &options[i];
        char col[64];

        if (s->help == NULL)
            continue;
        snprintf(col, sizeof col, "%s%s%s", s->name, s->arg ? " " : "",
                 s->arg ? s->arg : "");
        fprintf(f, "  %-18s %s\n", col, s->help);
    }
}

static const struct opt_spec *find_option(const char *name)
{
    for (size_t i = 0; i < NOPTIONS; i++)
        if (strcmp(options[i].name, name) == 0)
            return &options[i];
    return NULL;
}

static int parse_threads(struct bench_opts *o, const char *s)
{
    o->nthreads = 0;
    while (*s && o->nthreads < BENCH_MAX_THREADS) {
        char *end;
        unsigned long v = strtoul(s, &end, 10);

        if (end == s || v == 0 || v > 1024) {
            fprintf(stderr, "purecache-bench: bad --threads\n");
            return -1;
        }
        o->threads[o->nthreads++] = (unsigned)v;
        s = *end == ',' ? end + 1 : end;
    }
    return 0;
}

/* Store one option's argument (v is NULL for a flag). */
static int apply(struct bench_opts *o, const struct opt_spec *s, const char *v)
{
    char *field = (char *)o + s->off;

    switch (s->kind) {
    case OPT_HELP:
        return 0;
    case OPT_TRUE:
    case OPT_FALSE:
        *(bool *)field = s->kind == OPT_TRUE;
        return 0;
    case OPT_STRING:
        *(const char **)field = v;
        return 0;
    case OPT_DOUBLE:
        *(double *)field = atof(v);
        return 0;
    case OPT_SIZE:
        *(size_t *)field = strtoull(v, NULL, 10);
        return 0;
    case OPT_U64:
        *(uint64_t *)field = strtoull(v, NULL, 10);
        return 0;
    case OPT_UINT:
        *(unsigned *)field = (unsigned)atoi(v);
        return 0;
    case OPT_LONG:
        *(long *)field = atol(v);
        return 0;
    case OPT_THREADS:
        return parse_threads(o, v);
    }
    return -1;
}

/* --quick, then the settings that derive from the others; 0 or -1. */
static int cli_finish(struct bench_opts *o)
{
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);

    if (o->quick) {
        o->keys = 20000;
        o->capacity = 2000;
        o->runs = 1;
        o->lat_runs = 1;
        o->duration = 0.05;
        o->stream_len = 1u << 14;
        o->hit_ops = 50000;
        o->var_duration = 0.05;
        o->var_runs = 1;
        o->var_bytes = 4u << 20;
        o->rss_bytes = 8u << 20;
        if (o->nthreads == 0)
            parse_threads(o, "1,2");
    }
    if (o->traces == NULL)
        o->traces = o->quick ? "lirs-cpp" : "all";
    if (o->nthreads == 0)
        for (long t = 1; t <= (ncpu > 0 ? ncpu : 1) && t <= BENCH_MAX_THREADS;
             t++)
            o->threads[o->nthreads++] = (unsigned)t;
    o->max_threads = 0;
    for (unsigned i = 0; i < o->nthreads; i++)
        if (o->threads[i] > o->max_threads)
            o->max_threads = o->threads[i];
    if (o->warm_ops == 0)
        o->warm_ops = o->keys > 4 * o->capacity ? o->keys : 4 * o->capacity;
    if (o->stream_len == 0) {
        /* Long enough that no cache can learn it (workload.c): the least
         * power of two of 16 draws per key or more, at least 2^20, as
         * long as the streams' keys and put flags (9 bytes a draw) over
         * all threads stay within 2 GiB. */
        size_t most = ((size_t)2 << 30) / (9 * (size_t)o->max_threads);

        o->stream_len = 1u << 20;
        while (o->stream_len < o->keys * 16 && o->stream_len * 2 <= most)
            o->stream_len *= 2;
    }
    {
        size_t p = 1;

        while (p < o->stream_len)
            p <<= 1;
        o->stream_len = p;
    }
    if (o->keys == 0 || o->capacity == 0 || o->runs == 0 ||
        o->runs > BENCH_MAX_RUNS || o->lat_runs == 0 ||
        o->lat_runs > BENCH_MAX_RUNS || o->var_runs == 0 ||
        o->var_runs > BENCH_MAX_RUNS || o->duration <= 0 ||
        o->var_duration <= 0) {
        fprintf(stderr, "purecache-bench: bad keys/capacity/runs/duration\n");
        return -1;
    }
    return 0;
}

int cli_parse(int argc, char **argv, struct bench_opts *o)
{
    *o = defaults;
    for (int i = 1; i < argc; i++) {
        const struct opt_spec *s = find_option(argv[i]);
        const char *v = NULL;

        if (s == NULL) {
            fprintf(stderr, "purecache-bench: unknown option %s\n", argv[i]);
            usage(stderr);
            return 2;
        }
        if (s->kind == OPT_HELP) {
            usage(stdout);
            return 0;
        }
        if (s->arg != NULL) {
            if (i + 1 == argc) {
                fprintf(stderr, "purecache-bench: %s needs an argument\n",
                        s->name);
                usage(stderr);
                return 2;
            }
            v = argv[++i];
        }
        if (apply(o, s, v) != 0)
            return 2;
    }
    return cli_finish(o) == 0 ? -1 : 2;
}
