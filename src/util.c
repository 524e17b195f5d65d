/*
 * util: the out-of-line half of util.h (the debug-build assertion report).
 */
#include "util.h"

#ifdef PC_DEBUG
#include <stdio.h>
#include <stdlib.h>

void pc__assert_fail(const char *expr, const char *file, int line)
{
    /* Debug builds only: an internal invariant is broken (a library bug). */
    fprintf(stderr, "purecache: invariant failed: %s (%s:%d)\n", expr, file,
            line);
    abort();
}
#endif
