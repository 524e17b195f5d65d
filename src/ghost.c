/*
 * ghost: sizing the frequency policy's ghost (ghost.h has its layout,
 * costs and concurrency): creation, growth and shrink by rebuilding, and
 * the move of a shrunk ghost's words to an allocation of their size. All
 * of it runs under the shard's writer lock, off the put's common path
 * (the policy's reserve and trim decide when); a reader outside the lock
 * loads only w and nb, so each is stored atomically.
 */
#include "ghost.h"

#include "alloc.h"

static size_t ghost_bytes(uint32_t nb)
{
    return (size_t)nb * PC__GHOST_GB * sizeof(uint32_t);
}

uint32_t pc__ghost_want(uint64_t n, uint32_t nb_max)
{
    uint64_t nb = (n + PC__GHOST_GB - 1) / PC__GHOST_GB;

    nb = pc__alloc_usable(ghost_bytes(nb < 8 ? 8 : (uint32_t)nb)) /
         ghost_bytes(1);
    return nb > nb_max ? nb_max : (uint32_t)nb;
}

bool pc__ghost_init(struct pc__ghost *g)
{
    uint32_t nb = pc__ghost_want(0, g->nb_max);
    uint32_t *w = pc__alloc_array(ghost_bytes(nb), 32);

    if (w == NULL)
        return false;
    memset(w, 0, ghost_bytes(nb));
    g->w = w;
    g->nb = g->nb_alloc = nb;
    return true;
}

void pc__ghost_free(struct pc__ghost *g)
{
    pc__free_array(g->w, ghost_bytes(g->nb_alloc), 32);
    g->w = NULL;
    g->nb = g->nb_alloc = 0;
}

/* (A shard only grows while it fills, when the ghost has little to
 * forget, and a ghost shrinks only with a lowered limit.) */
__attribute__((cold)) void pc__ghost_rebuild(struct pc__ghost *g, uint32_t nb)
{
    uint32_t *w, *old = g->w;

    if (nb > g->nb && nb <= g->nb_alloc) { /* a growth the old one holds */
        memset(old, 0, ghost_bytes(nb));
        __atomic_store_n(&g->nb, nb, __ATOMIC_RELAXED);
        return;
    }
    w = pc__alloc_array(ghost_bytes(nb), 32);
    if (w == NULL) {
        if (nb < g->nb) {
            memset(old, 0, ghost_bytes(nb));
            __atomic_store_n(&g->nb, nb, __ATOMIC_RELAXED);
        }
        return;
    }
    memset(w, 0, ghost_bytes(nb));
    pc__free_array(old, ghost_bytes(g->nb_alloc), 32);
    g->nb_alloc = nb;
    __atomic_store_n(&g->w, w, __ATOMIC_RELAXED);
    __atomic_store_n(&g->nb, nb, __ATOMIC_RELAXED);
}

/* The bucket count does not change, so every word stays where its key
 * looks. */
__attribute__((cold)) void pc__ghost_move(struct pc__ghost *g)
{
    uint32_t *w = pc__alloc_array(ghost_bytes(g->nb), 32);

    if (w == NULL)
        return;
    memcpy(w, g->w, ghost_bytes(g->nb));
    pc__free_array(g->w, ghost_bytes(g->nb_alloc), 32);
    g->nb_alloc = g->nb;
    __atomic_store_n(&g->w, w, __ATOMIC_RELAXED);
}
