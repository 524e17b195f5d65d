/*
 * util: clock, progress line, output files, lists, allocation, interned
 * names (see util.h). Nothing here is on a timed path.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "util.h"

double bench_now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static bool progress_tty;
static int progress_len;

void bench_progress_init(void)
{
    progress_tty = isatty(2);
}

void bench_progress(const char *fmt, ...)
{
    char buf[256];
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (progress_tty) {
        fprintf(stderr, "\r%s%*s", buf, progress_len > n ? progress_len - n : 0,
                "");
        progress_len = n;
    } else {
        /* Not a terminal (a log): a heartbeat every few seconds. */
        static double last;
        double t = bench_now();

        if (t - last >= 5.0) {
            fprintf(stderr, "%s\n", buf);
            last = t;
        }
    }
}

void bench_progress_done(void)
{
    if (progress_tty && progress_len > 0)
        fprintf(stderr, "\r%*s\r", progress_len, "");
    progress_len = 0;
}

FILE *bench_open_out(const char *dir, const char *name)
{
    char path[4096];
    FILE *f;

    snprintf(path, sizeof path, "%s/%s", dir, name);
    f = fopen(path, "w");
    if (f == NULL) {
        fprintf(stderr, "purecache-bench: %s: %s\n", path, strerror(errno));
        exit(1);
    }
    return f;
}

bool bench_list_has(const char *list, const char *item)
{
    size_t n = strlen(item);
    const char *p = list;

    if (strcmp(list, "all") == 0)
        return true;
    while (*p) {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);

        if (len == n && strncmp(p, item, n) == 0)
            return true;
        if (e == NULL)
            break;
        p = e + 1;
    }
    return false;
}

void *bench_xmalloc(size_t n)
{
    void *p = malloc(n);

    if (p == NULL) {
        fprintf(stderr, "purecache-bench: out of memory\n");
        exit(1);
    }
    return p;
}

void *bench_xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n);

    if (q == NULL) {
        fprintf(stderr, "purecache-bench: out of memory\n");
        exit(1);
    }
    return q;
}

const char *bench_intern(const char *s)
{
    static char **pool;
    static size_t n, cap;
    char *copy;

    for (size_t i = 0; i < n; i++)
        if (strcmp(pool[i], s) == 0)
            return pool[i];
    if (n == cap) {
        cap = cap ? 2 * cap : 32;
        pool = realloc(pool, cap * sizeof *pool);
        if (pool == NULL)
            exit(1);
    }
    copy = strdup(s);
    if (copy == NULL)
        exit(1);
    return pool[n++] = copy;
}
