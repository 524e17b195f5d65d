/*
 * util: the small helpers every module uses, written once.
 *
 *  - PC__CONTAINER_OF: from a member back to its enclosing struct.
 *  - PC__ASSERT: an internal invariant, checked only in debug builds
 *    (-DPURECACHE_DEBUG=ON defines PC_DEBUG; the test command's normal tree
 *    builds that way). A failed check aborts with the file, line and
 *    expression: it means a bug in the library, never bad input, which is
 *    always answered with a status. Release builds compile the check out
 *    entirely (the expression is not evaluated).
 *  - Single-writer counters: a counter written by one thread at a time
 *    (its owner, or the holder of one lock) and read by any thread. A bump
 *    is a relaxed load and a relaxed store, not an atomic read-modify-write,
 *    yet race-free for readers (and for TSan).
 *  - pc__copy_out: the pc_get contract for copying a value into a caller's
 *    buffer, used by the read path, single flight and get-or-load alike.
 *  - PC__CTOR_PRIORITY: the priority of the library's constructors (they
 *    register its fork handlers, domain.c and ticker.c): the first that
 *    applications may use, so that in a static link they run before the
 *    program's own (unprioritised ones run after every prioritised one).
 */
#ifndef PC_UTIL_H
#define PC_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "purecache.h"

#define PC__CTOR_PRIORITY 101

#define PC__CONTAINER_OF(ptr, type, member)                                    \
    ((type *)((char *)(ptr)-offsetof(type, member)))

#ifdef PC_DEBUG
void pc__assert_fail(const char *expr, const char *file, int line)
    __attribute__((noreturn, noinline, cold));
#define PC__ASSERT(cond)                                                       \
    ((cond) ? (void)0 : pc__assert_fail(#cond, __FILE__, __LINE__))
#else
#define PC__ASSERT(cond) ((void)0)
#endif

#define PC__COUNTER_INC(field) PC__COUNTER_ADD(field, 1)
#define PC__COUNTER_ADD(field, n)                                              \
    __atomic_store_n(&(field),                                                 \
                     __atomic_load_n(&(field), __ATOMIC_RELAXED) + (n),        \
                     __ATOMIC_RELAXED)
#define PC__COUNTER_READ(field) __atomic_load_n(&(field), __ATOMIC_RELAXED)

/*
 * Copy a value of n bytes at src out under the pc_get contract: *vlen (if
 * not NULL) gets n; PC_ERANGE, buf untouched, if n > bufcap; else the bytes
 * are copied and PC_OK returned.
 */
static inline pc_status pc__copy_out(const void *src, size_t n, void *buf,
                                     size_t bufcap, size_t *vlen)
{
    if (vlen != NULL)
        *vlen = n;
    if (n > bufcap)
        return PC_ERANGE;
    if (n == 8) /* the common case: a constant-size copy, no memcpy call */
        memcpy(buf, src, 8);
    else if (n)
        memcpy(buf, src, n);
    return PC_OK;
}

/* Argument checks shared by every entry point that takes bytes (a key, a
 * value, an output buffer): a NULL pointer is allowed only with length 0. */
static inline int pc__bytes_ok(const void *p, size_t n)
{
    return p != NULL || n == 0;
}

static inline int pc__key_ok(const void *key, size_t klen)
{
    return pc__bytes_ok(key, klen) && klen <= PC_KEY_MAX;
}

static inline int pc__value_ok(const void *val, size_t vlen)
{
    return pc__bytes_ok(val, vlen) && vlen <= PC_VALUE_MAX;
}

#endif
