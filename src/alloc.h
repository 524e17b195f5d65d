/*
 * alloc: the one place the library gets and returns memory.
 *
 * Entries, index tables, rings and per-thread records all come from here, so
 * that (1) jemalloc serves them (sized allocation and deallocation, exact
 * accounting through its stats.allocated), and (2) tests can make any chosen
 * allocation fail, to prove that every failure returns PC_ENOMEM and leaves
 * the cache as it was.
 *
 * Sanitizer builds (PC_USE_JEMALLOC undefined) use the C library's allocator,
 * because AddressSanitizer must see every allocation.
 *
 * With jemalloc, blocks of 9..128 bytes freed by a thread are kept in its
 * magazine (up to 256 KiB per thread, and 32 KiB of pointers per size
 * class used) and serve its next allocations of the same size class;
 * they are returned to jemalloc when the thread exits and by pc_destroy
 * on its thread (alloc.c). Sanitizer builds have no magazine.
 *
 * Concurrency: these functions are as thread-safe as the allocator beneath.
 * The test hooks' state is relaxed atomics; while both are off, the common
 * allocation and free cost one load of a flag for them.
 */
#ifndef PC_ALLOC_H
#define PC_ALLOC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* pc__alloc and pc__free past their inline fast paths (below). */
__attribute__((noinline)) void *pc__alloc_slow(size_t n);
__attribute__((noinline)) void pc__free_slow(void *p, size_t n);

#ifdef PC_USE_JEMALLOC
/* The per-thread magazine (alloc.c has the design): per 16-byte size class
 * of 16..128 bytes, an array of blocks this thread freed, taken back LIFO.
 * Thread-local, so no synchronisation. Its common take and keep are inline
 * (an entry's allocation and its free after a grace period are on every
 * evicting put); arming the thread-exit destructor, making a class's array
 * and everything jemalloc does stay in alloc.c. */
#define PC__MAG_CLASSES 8    /* 16, 32, ..., 128 bytes */
#define PC__MAG_BLOCKS 4096  /* per class (an array of 32 KiB per class) */
#define PC__MAG_BYTES 262144 /* per thread, all classes */

struct pc__magazine {
    void **slot[PC__MAG_CLASSES]; /* PC__MAG_BLOCKS pointers each, or NULL */
    uint16_t n[PC__MAG_CLASSES];
    uint32_t bytes;
    bool armed; /* the thread-exit destructor is registered */
};

extern __thread struct pc__magazine pc__mag
    __attribute__((tls_model("initial-exec")));
/* Non-zero while a test hook is on (failure injection armed, or tracking):
 * then every call takes the slow path, which counts it. */
extern int pc__alloc_hooked;

/* The magazine class of an n-byte block, or -1. */
static inline int pc__mag_class(size_t n)
{
    return n > 8 && n <= PC__MAG_CLASSES * 16 ? (int)((n - 1) >> 4) : -1;
}

/* A block of class c (>= 0) from the magazine, or NULL if it has none. */
static inline void *pc__mag_take(int c)
{
    unsigned k;
    void *p;

    if (pc__mag.n[c] == 0)
        return NULL;
    k = --pc__mag.n[c];
    p = pc__mag.slot[c][k];
    if (k != 0) /* the next take's block, which it will write */
        __builtin_prefetch(pc__mag.slot[c][k - 1], 1);
    pc__mag.bytes -= (uint32_t)(c + 1) * 16;
    return p;
}

/* Whether one more block of class c (>= 0) keeps both bounds. */
static inline bool pc__mag_fits(int c)
{
    return pc__mag.n[c] < PC__MAG_BLOCKS &&
           pc__mag.bytes + (uint32_t)(c + 1) * 16 <= PC__MAG_BYTES;
}

/* Whether a block of class c (>= 0) can be kept as the magazine is: it
 * fits, the class's array is made and the magazine is armed. */
static inline bool pc__mag_room(int c)
{
    return pc__mag.slot[c] != NULL && pc__mag_fits(c) && pc__mag.armed;
}

/* Keep p, of class c, where pc__mag_room(c). */
static inline void pc__mag_put(int c, void *p)
{
    __builtin_prefetch(p, 1); /* the take that hands it out next writes it */
    pc__mag.slot[c][pc__mag.n[c]++] = p;
    pc__mag.bytes += (uint32_t)(c + 1) * 16;
}
#endif

/* Memory for n bytes aligned for any object, or NULL. */
static inline __attribute__((always_inline)) void *pc__alloc(size_t n)
{
#ifdef PC_USE_JEMALLOC
    int c = pc__mag_class(n);

    if (__builtin_expect(c >= 0, 1) &&
        !__atomic_load_n(&pc__alloc_hooked, __ATOMIC_RELAXED)) {
        void *p = pc__mag_take(c);

        if (p != NULL)
            return p;
    }
#endif
    return pc__alloc_slow(n);
}

/* Memory for n bytes aligned to align (a power of two >= 16), or NULL. */
void *pc__alloc_aligned(size_t n, size_t align);

/* Return memory from pc__alloc; n must be the size asked for (jemalloc's
 * sized deallocation trusts it). NULL is a no-op. */
static inline __attribute__((always_inline)) void pc__free(void *p, size_t n)
{
#ifdef PC_USE_JEMALLOC
    int c = pc__mag_class(n);

    if (__builtin_expect(c >= 0, 1) && p != NULL &&
        !__atomic_load_n(&pc__alloc_hooked, __ATOMIC_RELAXED) &&
        pc__mag_room(c)) {
        pc__mag_put(c, p);
        return;
    }
#endif
    pc__free_slow(p, n);
}
/* Return memory from pc__alloc_aligned, with the same n and align. */
void pc__free_aligned(void *p, size_t n, size_t align);
/* An array the cache replaces by a larger copy as it grows (a ring, a
 * ghost, a heap, an index table), aligned to align (a power of two; <= 16
 * for malloc's alignment), or NULL. With jemalloc, one of 64 KiB or more
 * comes from a private arena that returns freed pages to the system at
 * once, so replaced copies do not stay resident (alloc.c). Free it with
 * pc__free_array, the same n and align. Sizes and classes are those of
 * pc__alloc (pc__alloc_usable applies). */
void *pc__alloc_array(size_t n, size_t align);
void pc__free_array(void *p, size_t n, size_t align);
/* The bytes an allocation of n really occupies: its size class under
 * jemalloc (nallocx), n itself otherwise. An array sized to it uses memory
 * that would be paid for anyway; pass that size to pc__alloc and pc__free.
 * Thread-safe, lock-free (a table lookup). */
size_t pc__alloc_usable(size_t n);
/* How many elements of `size` bytes an array allocated for n of them
 * holds: to the end of its size class (an array grown or sized to it uses
 * memory paid for anyway). */
static inline size_t pc__alloc_usable_count(size_t n, size_t size)
{
    return pc__alloc_usable(n * size) / size;
}
/* The same for an allocation aligned to align (pc__alloc_aligned,
 * pc__alloc_array): a size class that alignment allows. */
size_t pc__alloc_usable_aligned(size_t n, size_t align);
/* Return the calling thread's magazine to jemalloc (pc_destroy does, so a
 * destroyed cache's entries do not stay with the destroying thread). */
void pc__alloc_release_thread(void);

/*
 * Test hook: let the next `n` allocations succeed and fail every one after
 * that; a negative n disables injection (the default). Returns the number of
 * allocations attempted while injection was armed since the last call, so a
 * test can count the sites an operation reaches (pass a large n to count
 * without failing).
 */
long pc__alloc_fail_after(long n);

/*
 * Test hook: while tracking is on, count allocations made minus those freed
 * (a relaxed atomic per call; off by default, when it costs one load).
 * Turn it on before creating a cache and pc__alloc_live() returns to its
 * earlier value once the cache is destroyed, unless something leaked.
 */
void pc__alloc_track(int on);
long pc__alloc_live(void);

/* Test hook: the private arena of large arrays (jemalloc's index), or -1
 * if there is none (no jemalloc, or it could not be made). Makes it if no
 * array has yet. */
int pc__alloc_array_arena(void);

#endif
