/*
 * alloc: jemalloc-backed allocation with a failure-injection hook for tests.
 * See alloc.h for the why; there is no algorithm here beyond the countdown.
 */
#include "alloc.h"

#include <stdlib.h>

#ifdef PC_USE_JEMALLOC
#include <jemalloc/jemalloc.h>
#endif

static long fail_countdown = -1; /* < 0: never fail */
static long alloc_count;
static int tracking; /* count live allocations (tests only) */
static long live_allocs;

static int inject_failure(void)
{
    long left = __atomic_load_n(&fail_countdown, __ATOMIC_RELAXED);

    if (__builtin_expect(left < 0, 1))
        return 0;
    __atomic_fetch_add(&alloc_count, 1, __ATOMIC_RELAXED);
    if (left == 0)
        return 1;
    __atomic_store_n(&fail_countdown, left - 1, __ATOMIC_RELAXED);
    return 0;
}

void pc__alloc_track(int on)
{
    __atomic_store_n(&tracking, on, __ATOMIC_RELAXED);
}

long pc__alloc_live(void)
{
    return __atomic_load_n(&live_allocs, __ATOMIC_RELAXED);
}

static void *track(void *p)
{
    if (p != NULL && __atomic_load_n(&tracking, __ATOMIC_RELAXED))
        __atomic_fetch_add(&live_allocs, 1, __ATOMIC_RELAXED);
    return p;
}

long pc__alloc_fail_after(long n)
{
    long made = __atomic_exchange_n(&alloc_count, 0, __ATOMIC_RELAXED);

    __atomic_store_n(&fail_countdown, n, __ATOMIC_RELAXED);
    return made;
}

void *pc__alloc(size_t n)
{
    if (inject_failure())
        return NULL;
#ifdef PC_USE_JEMALLOC
    return track(mallocx(n == 0 ? 1 : n, 0));
#else
    return track(malloc(n == 0 ? 1 : n));
#endif
}

void *pc__alloc_aligned(size_t n, size_t align)
{
    if (inject_failure())
        return NULL;
#ifdef PC_USE_JEMALLOC
    return track(mallocx(n == 0 ? 1 : n, MALLOCX_ALIGN(align)));
#else
    void *p = NULL;

    n = (n + align - 1) & ~(align - 1);
    if (posix_memalign(&p, align, n == 0 ? align : n) != 0)
        return NULL;
    return track(p);
#endif
}

static void untrack(void *p)
{
    if (p != NULL && __atomic_load_n(&tracking, __ATOMIC_RELAXED))
        __atomic_fetch_sub(&live_allocs, 1, __ATOMIC_RELAXED);
}

void pc__free_aligned(void *p, size_t n, size_t align)
{
    if (p == NULL)
        return;
    untrack(p);
#ifdef PC_USE_JEMALLOC
    sdallocx(p, n == 0 ? 1 : n, MALLOCX_ALIGN(align));
#else
    (void)n;
    (void)align;
    free(p);
#endif
}

void pc__free(void *p, size_t n)
{
    if (p == NULL)
        return;
    untrack(p);
#ifdef PC_USE_JEMALLOC
    /* Sized: jemalloc's fast path needs no lookup of the size class. */
    sdallocx(p, n == 0 ? 1 : n, 0);
#else
    (void)n;
    free(p);
#endif
}
