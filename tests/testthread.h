/*
 * Thread helpers shared by the test suites (testlib.h includes this; the
 * Redis suite, which is built once for all policies, includes it alone).
 */
#ifndef PC_TESTTHREAD_H
#define PC_TESTTHREAD_H

#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

/* The calling thread's kernel id (for test_thread_blocked). */
static inline long test_gettid(void)
{
    return (long)syscall(SYS_gettid);
}

/* Whether thread tid of this process comes to sleep in the kernel (state
 * S: blocked on a lock or a wait, past any spinning) within ms ms, polled
 * every ms: a test's way to know another thread has reached a wait,
 * instead of sleeping a fixed time and hoping it has (ms is a deadlock
 * breaker, not a timing target). */
static inline bool test_thread_blocked(long tid, int ms)
{
    char path[64], buf[256], *st;

    snprintf(path, sizeof path, "/proc/self/task/%ld/stat", tid);
    for (int i = 0; i < ms; i++) {
        FILE *f = fopen(path, "r");
        size_t n = f != NULL ? fread(buf, 1, sizeof buf - 1, f) : 0;

        if (f != NULL)
            fclose(f);
        buf[n] = 0;
        st = strrchr(buf, ')'); /* "pid (comm) S ..." */
        if (st != NULL && st[1] == ' ' && st[2] == 'S')
            return true;
        usleep(1000);
    }
    return false;
}

#endif
