/*
 * alloc: jemalloc-backed allocation with a failure-injection hook for tests,
 * and a per-thread magazine of small freed blocks in front of jemalloc
 * (below). See alloc.h for the why.
 */
#include "alloc.h"

#include <stdlib.h>

#ifdef PC_USE_JEMALLOC
#include <jemalloc/jemalloc.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>
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

#ifdef PC_USE_JEMALLOC
int pc__alloc_hooked;
#endif

/* pc__alloc_hooked follows the hooks (set by one test thread at a time). */
static void hooks_changed(void)
{
#ifdef PC_USE_JEMALLOC
    __atomic_store_n(&pc__alloc_hooked,
                     __atomic_load_n(&fail_countdown, __ATOMIC_RELAXED) >= 0 ||
                         __atomic_load_n(&tracking, __ATOMIC_RELAXED) != 0,
                     __ATOMIC_RELAXED);
#endif
}

void pc__alloc_track(int on)
{
    __atomic_store_n(&tracking, on, __ATOMIC_RELAXED);
    hooks_changed();
}

long pc__alloc_live(void)
{
    return __atomic_load_n(&live_allocs, __ATOMIC_RELAXED);
}

static void untrack(void *p)
{
    if (p != NULL && __atomic_load_n(&tracking, __ATOMIC_RELAXED))
        __atomic_fetch_sub(&live_allocs, 1, __ATOMIC_RELAXED);
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
    hooks_changed();
    return made;
}

#ifdef PC_USE_JEMALLOC
/*
 * The magazine: each thread keeps blocks of 16..128 bytes it freed, in one
 * LIFO stack per 16-byte size class, and hands them out again before asking
 * jemalloc. A cache frees entries in bursts (a grace period's batches, up
 * to a few hundred at once, retire.h) and allocates them one by one;
 * jemalloc's own thread cache absorbs that too, but mallocx has no fast
 * path in jemalloc 5.3 (its general entry is several times malloc's), and
 * a burst larger than the thread cache's bin is flushed to the arena and
 * fetched back. Only sizes whose 16-byte round-up is a jemalloc size class
 * (9..128 bytes) are kept, so a block serves any request of its class, and
 * sdallocx later receives a size of the block's class.
 *
 * Bounds: PC__MAG_BLOCKS blocks per class and PC__MAG_BYTES in all per
 * thread; past either, a free goes to jemalloc. Sized to hold what one
 * grace period makes safe on a busy thread: grace periods are paced at
 * 1 ms (grace.c), so a thread evicting millions of entries a second gets
 * back thousands at a time. Smaller bounds sent a good part of the
 * allocations and frees of a thread doing evicting puts past a full or
 * empty magazine to jemalloc's thread cache, which refills and flushes
 * its bin a hundred blocks at a time: a pause of microseconds that was the
 * cache's 99.9th-percentile latency. The blocks are released at thread
 * exit (a pthread key's destructor, registered on the thread's first
 * keep; if it cannot be, nothing is kept). Thread-local, so no
 * synchronisation: a block changes threads only through jemalloc or
 * through the caches' own grace periods, exactly as without the magazine.
 *
 * The magazine itself (struct pc__magazine) and its common take and keep
 * are in alloc.h, inline in pc__alloc and pc__free; arming, making a
 * class's array and everything that calls jemalloc are here. A class's
 * blocks are kept as pointers in an array of its own (made on the
 * class's first keep), not linked through the blocks: a free then does
 * not write into the block it frees, nor a take read from the block it
 * takes. A freed entry has not been touched for a grace period, so it is
 * rarely in cache; through a list, each take waited for the block's line
 * to read the next link, right after the free that pushed it had missed
 * on it (most of pc__alloc's time, when it was measured). So a keep
 * prefetches the block for writing (the caller's next take hands it out
 * and the caller fills it), and a take prefetches the one below it.
 */
__thread struct pc__magazine pc__mag __attribute__((tls_model("initial-exec")));
static pthread_once_t mag_once = PTHREAD_ONCE_INIT;
static pthread_key_t mag_key;
static bool mag_key_ok;

/* The key's destructor: the exiting thread's blocks, and the arrays that
 * held them, back to jemalloc. A later free on this thread (another key's
 * destructor) arms it afresh. */
static void mag_release(void *arg)
{
    struct pc__magazine *m = arg;

    for (unsigned c = 0; c < PC__MAG_CLASSES; c++) {
        for (unsigned i = 0; i < m->n[c]; i++)
            sdallocx(m->slot[c][i], (c + 1) * 16, 0);
        if (m->slot[c] != NULL)
            sdallocx(m->slot[c], PC__MAG_BLOCKS * sizeof(void *), 0);
        m->slot[c] = NULL;
        m->n[c] = 0;
    }
    m->bytes = 0;
    m->armed = false;
}

/* Once per process: the magazine is used only if jemalloc's size classes
 * in 9..128 bytes are the 16-byte multiples (its quantum is 16 on x86-64
 * and most 64-bit targets, 8 on some 32-bit ones or if so configured), so
 * that a block serves any request of its magazine class. */
static void mag_key_init(void)
{
    for (size_t n = 9; n <= PC__MAG_CLASSES * 16; n++)
        if (nallocx(n, 0) != ((n + 15) & ~(size_t)15))
            return;
    mag_key_ok = pthread_key_create(&mag_key, mag_release) == 0;
}

static bool mag_arm(void)
{
    pthread_once(&mag_once, mag_key_init);
    if (!mag_key_ok || pthread_setspecific(mag_key, &pc__mag) != 0)
        return false;
    pc__mag.armed = true;
    return true;
}

void pc__alloc_release_thread(void)
{
    if (pc__mag.armed)
        mag_release(&pc__mag);
}

/* Keep p, an n-byte block, in the magazine (arming the thread-exit
 * destructor and making the class's array if need be); false if it is not
 * of a magazine class, the magazine is full, or either could not be
 * done. */
static bool mag_keep(void *p, size_t n)
{
    int c = pc__mag_class(n);

    if (c < 0 || !pc__mag_fits(c) || (!pc__mag.armed && !mag_arm()))
        return false;
    if (__builtin_expect(pc__mag.slot[c] == NULL, 0) &&
        (pc__mag.slot[c] = mallocx(PC__MAG_BLOCKS * sizeof(void *), 0)) == NULL)
        return false;
    pc__mag_put(c, p);
    return true;
}
#else
void pc__alloc_release_thread(void)
{
}
#endif

#ifdef PC_USE_JEMALLOC
/*
 * Arrays (below): an array of ARRAY_MIN bytes or more comes from a private
 * arena whose freed pages go back to the system at once (dirty and muzzy
 * decay 0), bypassing the thread cache. Rings, ghosts, heaps and index
 * tables are replaced by larger copies as a cache grows; from the default
 * arena, each replaced copy would stay resident as jemalloc's dirty pages
 * for its decay time (10 s by default), a few percent of a full cache's
 * memory that no accounting of the cache shows. Growth is geometric, so
 * the madvise per free is amortised like the copy itself. Entries stay in
 * the default arena: their frees are frequent and their pages reused.
 * If the arena cannot be made, arrays come from the default arena.
 */
#define ARRAY_MIN ((size_t)64 << 10)

static pthread_once_t array_once = PTHREAD_ONCE_INIT;
static int array_flags; /* MALLOCX_ARENA(private) | MALLOCX_TCACHE_NONE */

static void array_arena_init(void)
{
    unsigned a;
    size_t sz = sizeof a;
    ssize_t zero = 0;
    char name[64];

    if (mallctl("arenas.create", &a, &sz, NULL, 0) != 0)
        return;
    snprintf(name, sizeof name, "arena.%u.dirty_decay_ms", a);
    if (mallctl(name, NULL, NULL, &zero, sizeof zero) != 0)
        return;
    snprintf(name, sizeof name, "arena.%u.muzzy_decay_ms", a);
    if (mallctl(name, NULL, NULL, &zero, sizeof zero) != 0)
        return;
    array_flags = MALLOCX_ARENA(a) | MALLOCX_TCACHE_NONE;
}

static int array_flags_for(size_t n)
{
    if (n < ARRAY_MIN)
        return 0;
    pthread_once(&array_once, array_arena_init);
    return array_flags;
}
#endif

int pc__alloc_array_arena(void)
{
#ifdef PC_USE_JEMALLOC
    int f = array_flags_for(ARRAY_MIN);

    /* (MALLOCX_ARENA(a) is (a + 1) << 20.) */
    return f != 0 ? (int)(((unsigned)f >> 20) & 0xfffu) - 1 : -1;
#else
    return -1;
#endif
}

void *pc__alloc_array(size_t n, size_t align)
{
#ifdef PC_USE_JEMALLOC
    if (inject_failure())
        return NULL;
    return track(
        mallocx(n == 0 ? 1 : n,
                array_flags_for(n) | (align > 16 ? MALLOCX_ALIGN(align) : 0)));
#else
    return align <= 16 ? pc__alloc(n) : pc__alloc_aligned(n, align);
#endif
}

void pc__free_array(void *p, size_t n, size_t align)
{
#ifdef PC_USE_JEMALLOC
    if (p == NULL)
        return;
    untrack(p);
    /* (The arena is found from the pointer; the flags keep the block out
     * of the thread cache, and give the alignment it was made with.) */
    sdallocx(p, n == 0 ? 1 : n,
             (array_flags_for(n) & MALLOCX_TCACHE_NONE) |
                 (align > 16 ? MALLOCX_ALIGN(align) : 0));
#else
    pc__free_aligned(p, n, align); /* free(), whatever the alignment */
#endif
}

void *pc__alloc_slow(size_t n)
{
    if (inject_failure())
        return NULL;
#ifdef PC_USE_JEMALLOC
    int c = pc__mag_class(n);
    void *p = c >= 0 ? pc__mag_take(c) : NULL;

    return track(p != NULL ? p : mallocx(n == 0 ? 1 : n, 0));
#else
    return track(malloc(n == 0 ? 1 : n));
#endif
}

size_t pc__alloc_usable(size_t n)
{
#ifdef PC_USE_JEMALLOC
    size_t u = nallocx(n == 0 ? 1 : n, 0);

    return u >= n ? u : n; /* (0: a size past every class) */
#else
    return n;
#endif
}

size_t pc__alloc_usable_aligned(size_t n, size_t align)
{
#ifdef PC_USE_JEMALLOC
    size_t u = nallocx(n == 0 ? 1 : n, MALLOCX_ALIGN(align));

    return u >= n ? u : n;
#else
    (void)align;
    return n;
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

void pc__free_slow(void *p, size_t n)
{
    if (p == NULL)
        return;
    untrack(p);
#ifdef PC_USE_JEMALLOC
    if (mag_keep(p, n))
        return;
    int c = pc__mag_class(n);

    /* Sized: jemalloc's fast path needs no lookup of the size class. A
     * block of a magazine class may have been asked for with another size
     * of the class: its class's size is the one always valid. */
    sdallocx(p, c >= 0 ? (size_t)(c + 1) * 16 : (n == 0 ? 1 : n), 0);
#else
    (void)n;
    free(p);
#endif
}
