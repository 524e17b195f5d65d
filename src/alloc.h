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
 * The failure-injection countdown is a relaxed atomic; it is a test hook and
 * costs one load on the allocation path.
 */
#ifndef PC_ALLOC_H
#define PC_ALLOC_H

#include <stddef.h>

/* Memory for n bytes aligned for any object, or NULL. */
void *pc__alloc(size_t n);
/* Memory for n bytes aligned to align (a power of two >= 16), or NULL. */
void *pc__alloc_aligned(size_t n, size_t align);
/* Return memory from pc__alloc; n must be the size asked for (jemalloc's
 * sized deallocation trusts it). NULL is a no-op. */
void pc__free(void *p, size_t n);
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
