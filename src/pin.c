/*
 * pin: the pin table (design in pin.h): two chained hash tables under one
 * lock, entries with pins by entry address and pins by id, resized
 * together (doubled past two pins per bucket, halved under an eighth).
 */
#include "pin.h"

#include <string.h>

#include "alloc.h"
#include "util.h"

struct pc__pin_entry {
    struct pc__pin_entry *next;
    const void *kv;
    size_t pins;
    void *kept; /* the retired entry's block, once the reclaimer gave it */
    size_t kept_size;
};

struct pc__pin {
    struct pc__pin *next;
    uint64_t id;
    struct pc__pin_entry *entry;
};

#define GROW_LOAD 2  /* pins per bucket past which the tables double */
#define SHRINK_DIV 8 /* they halve once pins * SHRINK_DIV < buckets */

#ifdef PC_DEBUG
uint64_t pc__debug_pin_steps;
#define STEP() __atomic_add_fetch(&pc__debug_pin_steps, 1, __ATOMIC_RELAXED)
#else
#define STEP() ((void)0)
#endif

static uint64_t next_id = 1;

/* Lock held: count kept blocks (stored atomically: pc__pins_pending). */
static void zombies_add(struct pc__pin_table *t, int64_t n, int64_t bytes)
{
    __atomic_store_n(&t->zombies, t->zombies + (uint64_t)n, __ATOMIC_RELAXED);
    __atomic_store_n(&t->zombie_bytes, t->zombie_bytes + (uint64_t)bytes,
                     __ATOMIC_RELAXED);
}

/* x's bucket among nb (a power of two): the high bits of a multiplicative
 * hash. */
static size_t bucket_of(uint64_t x, size_t nb)
{
    return (size_t)((x * 0x9E3779B97F4A7C15ull) >> (64 - __builtin_ctzll(nb)));
}

static size_t bucket_of_ptr(const void *p, size_t nb)
{
    return bucket_of((uintptr_t)p >> 4, nb);
}

/* The bytes of bucket arrays for nb buckets (both tables, one block). */
static size_t arrays_size(size_t nb)
{
    return nb * (sizeof(struct pc__pin_entry *) + sizeof(struct pc__pin *));
}

static bool arrays_inline(const struct pc__pin_table *t)
{
    return t->by_entry == t->entry0;
}

void pc__pins_init(struct pc__pin_table *t)
{
    memset(t, 0, sizeof *t);
    t->lock = (pc__lock)PC__LOCK_INIT;
    t->nb = PC__PIN_BUCKETS;
    t->by_entry = t->entry0;
    t->by_id = t->id0;
}

/* Lock held: move every record to the bucket arrays at mem (nb buckets;
 * the inline ones if mem is NULL), and return the arrays left (NULL if
 * they were the inline ones), to be freed once the lock is released. */
static void *move_to(struct pc__pin_table *t, void *mem, size_t nb)
{
    struct pc__pin_entry **be = t->entry0;
    struct pc__pin **bi = t->id0;
    void *old = arrays_inline(t) ? NULL : (void *)t->by_entry;
    struct pc__pin_entry *e;
    struct pc__pin *pin;

    if (mem != NULL) {
        memset(mem, 0, arrays_size(nb));
        be = mem;
        bi = (struct pc__pin **)(void *)(be + nb);
    } else { /* back inline: the old arrays hold every record */
        PC__ASSERT(old != NULL && nb == PC__PIN_BUCKETS);
        memset(t->entry0, 0, sizeof t->entry0);
        memset(t->id0, 0, sizeof t->id0);
    }
    for (size_t b = 0; b < t->nb; b++) {
        while ((e = t->by_entry[b]) != NULL) {
            size_t k = bucket_of_ptr(e->kv, nb);

            t->by_entry[b] = e->next;
            e->next = be[k];
            be[k] = e;
        }
        while ((pin = t->by_id[b]) != NULL) {
            size_t k = bucket_of(pin->id, nb);

            t->by_id[b] = pin->next;
            pin->next = bi[k];
            bi[k] = pin;
        }
    }
    t->by_entry = be;
    t->by_id = bi;
    __atomic_store_n(&t->nb, nb, __ATOMIC_RELAXED);
    return old;
}

static struct pc__pin_entry **find_entry(struct pc__pin_table *t,
                                         const void *kv)
{
    struct pc__pin_entry **p = &t->by_entry[bucket_of_ptr(kv, t->nb)];

    while (*p != NULL && (*p)->kv != kv) {
        STEP();
        p = &(*p)->next;
    }
    return p;
}

bool pc__pins_prepare(struct pc__pin_prep *prep)
{
    prep->pin = pc__alloc(sizeof *prep->pin);
    prep->spare = pc__alloc(sizeof *prep->spare);
    if (prep->pin != NULL && prep->spare != NULL)
        return true;
    pc__pins_unprepare(prep);
    return false;
}

void pc__pins_unprepare(struct pc__pin_prep *prep)
{
    pc__free(prep->pin, sizeof *prep->pin);
    pc__free(prep->spare, sizeof *prep->spare);
    prep->pin = NULL;
    prep->spare = NULL;
}

uint64_t pc__pins_take(struct pc__pin_table *t, const void *kv,
                       struct pc__pin_prep *prep)
{
    struct pc__pin *pin = prep->pin;
    struct pc__pin_entry **e;
    uint64_t id = __atomic_fetch_add(&next_id, 1, __ATOMIC_RELAXED);
    size_t b;

    pc__lock_acquire(&t->lock);
    e = find_entry(t, kv);
    if (*e == NULL) {
        memset(prep->spare, 0, sizeof *prep->spare);
        prep->spare->kv = kv;
        *e = prep->spare;
        prep->spare = NULL;
    }
    (*e)->pins++;
    pin->id = id;
    pin->entry = *e;
    b = bucket_of(id, t->nb);
    pin->next = t->by_id[b];
    t->by_id[b] = pin;
    __atomic_add_fetch(&t->active, 1, __ATOMIC_RELAXED);
    pc__lock_release(&t->lock);
    prep->pin = NULL;
    return id;
}

static bool grow_due(size_t active, size_t nb)
{
    return active > GROW_LOAD * nb && nb <= SIZE_MAX / 4 / sizeof(void *);
}

static bool shrink_due(size_t active, size_t nb)
{
    return nb > PC__PIN_BUCKETS && active * SHRINK_DIV < nb;
}

/* Resize the tables from nb buckets to `to` if they still have nb and the
 * resize is still due (due: grow_due or shrink_due) once the lock is
 * held: the arrays (none for the inline ones) are allocated before the
 * lock and the arrays left are freed after it. Not done if that
 * allocation fails: the table works on at its size. */
static void resize(struct pc__pin_table *t, size_t nb, size_t to,
                   bool (*due)(size_t active, size_t nb))
{
    void *mem = NULL, *old = NULL;

    if (to > PC__PIN_BUCKETS && (mem = pc__alloc(arrays_size(to))) == NULL)
        return;
    pc__lock_acquire(&t->lock);
    if (t->nb == nb && due(t->active, nb)) {
        old = move_to(t, mem, to);
        mem = NULL;
    }
    pc__lock_release(&t->lock);
    if (mem != NULL)
        pc__free(mem, arrays_size(to));
    if (old != NULL)
        pc__free(old, arrays_size(nb));
}

void pc__pins_grow(struct pc__pin_table *t)
{
    size_t nb = __atomic_load_n(&t->nb, __ATOMIC_RELAXED);

    if (grow_due(__atomic_load_n(&t->active, __ATOMIC_RELAXED), nb))
        resize(t, nb, 2 * nb, grow_due);
}

/* After a release: halve the tables if the pins held fell under an eighth
 * of a bucket each. */
static void maybe_shrink(struct pc__pin_table *t)
{
    size_t nb = __atomic_load_n(&t->nb, __ATOMIC_RELAXED);

    if (shrink_due(__atomic_load_n(&t->active, __ATOMIC_RELAXED), nb))
        resize(t, nb, nb / 2, shrink_due);
}

void pc__pins_release(struct pc__pin_table *t, uint64_t id)
{
    struct pc__pin **p, *pin;
    struct pc__pin_entry *gone = NULL;

    pc__lock_acquire(&t->lock);
    for (p = &t->by_id[bucket_of(id, t->nb)]; *p != NULL && (*p)->id != id;
         p = &(*p)->next)
        STEP();
    pin = *p;
    if (pin != NULL) {
        *p = pin->next;
        if (--pin->entry->pins == 0) {
            gone = pin->entry;
            *find_entry(t, gone->kv) = gone->next;
            if (gone->kept != NULL) {
                zombies_add(t, -1, -(int64_t)gone->kept_size);
            }
        }
        /* Release: the holder's reads of the pinned value happen before
         * a reclaimer that reads the count 0 (acquire) frees it. */
        __atomic_sub_fetch(&t->active, 1, __ATOMIC_RELEASE);
    }
    pc__lock_release(&t->lock);
    if (pin == NULL)
        return; /* released already, or a copy of a released pin */
    pc__free(pin, sizeof *pin);
    if (gone != NULL) {
        pc__free(gone->kept, gone->kept_size);
        pc__free(gone, sizeof *gone);
    }
    maybe_shrink(t);
}

bool pc__pins_keep(struct pc__pin_table *t, void *kv, size_t size)
{
    struct pc__pin_entry *e;

    if (__atomic_load_n(&t->active, __ATOMIC_ACQUIRE) == 0)
        return false; /* (pairs with pc_unpin's release) */
    pc__lock_acquire(&t->lock);
    e = *find_entry(t, kv);
    if (e != NULL) {
        PC__ASSERT(e->kept == NULL);
        e->kept = kv;
        e->kept_size = size;
        zombies_add(t, 1, (int64_t)size);
    }
    pc__lock_release(&t->lock);
    return e != NULL;
}

/* No lock: pc_stats_get waits only for registrations (purecache.h; it
 * took this lock, found by helper-65). The two counts are changed under
 * the lock and read atomically here, each a snapshot of its own. */
void pc__pins_pending(struct pc__pin_table *t, uint64_t *n, uint64_t *bytes)
{
    *n += __atomic_load_n(&t->zombies, __ATOMIC_RELAXED);
    *bytes += __atomic_load_n(&t->zombie_bytes, __ATOMIC_RELAXED);
}

void pc__pins_fini(struct pc__pin_table *t)
{
    for (size_t b = 0; b < t->nb; b++) {
        while (t->by_id[b] != NULL) {
            struct pc__pin *pin = t->by_id[b];

            t->by_id[b] = pin->next;
            pc__free(pin, sizeof *pin);
        }
        while (t->by_entry[b] != NULL) {
            struct pc__pin_entry *e = t->by_entry[b];

            t->by_entry[b] = e->next;
            pc__free(e->kept, e->kept_size);
            pc__free(e, sizeof *e);
        }
    }
    if (!arrays_inline(t))
        pc__free(t->by_entry, arrays_size(t->nb));
}
