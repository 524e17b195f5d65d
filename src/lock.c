/*
 * lock: the slow paths of the writer lock (lock.h): spin, then sleep.
 */
#include "lock.h"

#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <ck_pr.h>

/* Spin rounds before sleeping: a few microseconds, longer than a critical
 * section, shorter than a sleep and wake-up. */
#define SPINS 1000

static void futex_wait(uint32_t *word, uint32_t expected)
{
    /* EINTR and EAGAIN (the word changed) both mean: look again. */
    (void)syscall(SYS_futex, word, FUTEX_WAIT_PRIVATE, expected, NULL, NULL, 0);
}

void pc__lock_slow(pc__lock *l)
{
    uint32_t c;

    for (int i = 0; i < SPINS; i++) {
        c = __atomic_load_n(&l->word, __ATOMIC_RELAXED);
        if (c == 0 && pc__lock_try(l))
            return;
        if (c == 2)
            break; /* others are already asleep: join them */
        ck_pr_stall();
    }
    /* Mark "held, maybe waiters" and sleep until it was free. */
    while ((c = __atomic_exchange_n(&l->word, 2, __ATOMIC_ACQUIRE)) != 0)
        futex_wait(&l->word, 2);
}

void pc__unlock_wake(pc__lock *l)
{
    (void)syscall(SYS_futex, &l->word, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}
