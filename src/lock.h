/*
 * lock: the writer lock, a futex mutex sized for critical sections of a
 * few hundred nanoseconds.
 *
 * Algorithm (Drepper, "Futexes Are Tricky", mutex 3): the word is 0 when
 * free, 1 when held, 2 when held and a thread may be sleeping on it. Lock
 * is one compare-and-swap when free; otherwise the caller spins a while
 * (the holder will be out within a few hundred nanoseconds unless it was
 * preempted), then marks the word 2 and sleeps in futex(FUTEX_WAIT) until
 * an unlock that saw 2 wakes one waiter. Unlock is one exchange, plus a
 * futex(FUTEX_WAKE) system call only if someone may be asleep.
 *
 * Why not pthread_mutex_t: an uncontended lock and unlock pair of the
 * adaptive pthread mutex costs about 60 instructions, this one about 10,
 * on a path (every put) that is otherwise short; and the futex system
 * call is not a cancellation point, so a thread cancelled while it waits
 * here cannot leave the lock in a broken state (pthread_cancel only acts
 * at cancellation points).
 *
 * Concurrency: acquire on lock, release on unlock, through the atomic word
 * itself (ThreadSanitizer sees both). Not recursive; not robust against a
 * holder that exits without unlocking (no library path does).
 */
#ifndef PC_LOCK_H
#define PC_LOCK_H

#include <stdbool.h>
#include <stdint.h>

typedef struct pc__lock {
    uint32_t word;
} pc__lock;

#define PC__LOCK_INIT                                                          \
    {                                                                          \
        0                                                                      \
    }

__attribute__((noinline, cold)) void pc__lock_slow(pc__lock *l);
__attribute__((noinline, cold)) void pc__unlock_wake(pc__lock *l);

static inline void pc__lock_acquire(pc__lock *l)
{
    uint32_t free_word = 0;

    if (__builtin_expect(__atomic_compare_exchange_n(&l->word, &free_word, 1,
                                                     false, __ATOMIC_ACQUIRE,
                                                     __ATOMIC_RELAXED),
                         1))
        return;
    pc__lock_slow(l);
}

static inline bool pc__lock_try(pc__lock *l)
{
    uint32_t free_word = 0;

    return __atomic_compare_exchange_n(&l->word, &free_word, 1, false,
                                       __ATOMIC_ACQUIRE, __ATOMIC_RELAXED);
}

static inline void pc__lock_release(pc__lock *l)
{
    if (__builtin_expect(
            __atomic_exchange_n(&l->word, 0, __ATOMIC_RELEASE) == 2, 0))
        pc__unlock_wake(l);
}

#endif
