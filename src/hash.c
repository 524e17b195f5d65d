/*
 * hash: seed generation for the keyed hash in hash.h.
 *
 * A fixed seed is expanded with splitmix64 (so nearby user seeds give
 * unrelated keys); otherwise 32 bytes come from getrandom(2). If the kernel
 * refuses (very old kernels, seccomp), the seed falls back to a mix of the
 * clock, the seed's address and a process-wide counter: weaker, but the
 * library never fails or aborts for want of entropy.
 */
#include "hash.h"

#include <errno.h>
#include <pthread.h>
#include <sys/random.h>
#include <time.h>

static uint64_t splitmix64(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);

    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

void pc__hash_seed_init(struct pc__hash_seed *seed, uint64_t fixed)
{
    static uint64_t counter;
    uint64_t state = fixed;
    size_t got = 0;

    if (fixed == 0) {
        unsigned char *buf = (unsigned char *)seed->k;
        int cs;

        /* getrandom(2) is a cancellation point: pc_create is not. */
        pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &cs);
        while (got < sizeof seed->k) {
            ssize_t r = getrandom(buf + got, sizeof seed->k - got, 0);

            if (r < 0 && errno == EINTR)
                continue;
            if (r <= 0)
                break;
            got += (size_t)r;
        }
        pthread_setcancelstate(cs, NULL);
        if (got == sizeof seed->k)
            return;
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        state = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 32) ^
                (uint64_t)(uintptr_t)seed ^
                __atomic_add_fetch(&counter, 1, __ATOMIC_RELAXED);
    }
    for (int i = 0; i < 4; i++)
        seed->k[i] = splitmix64(&state);
}
