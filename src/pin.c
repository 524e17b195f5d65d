/*
 * pin: the pin table (design in pin.h): two small chained hash tables
 * under one lock, entries with pins by entry address and pins by id.
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

static uint64_t next_id = 1;

static size_t bucket_of_ptr(const void *p)
{
    return (size_t)(((uintptr_t)p >> 4) * 0x9E3779B97F4A7C15ull >> 58) %
           PC__PIN_BUCKETS;
}

static size_t bucket_of_id(uint64_t id)
{
    return (size_t)(id * 0x9E3779B97F4A7C15ull >> 58) % PC__PIN_BUCKETS;
}

static struct pc__pin_entry **find_entry(struct pc__pin_table *t,
                                         const void *kv)
{
    struct pc__pin_entry **p = &t->by_entry[bucket_of_ptr(kv)];

    while (*p != NULL && (*p)->kv != kv)
        p = &(*p)->next;
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
    pin->next = t->by_id[bucket_of_id(id)];
    t->by_id[bucket_of_id(id)] = pin;
    __atomic_add_fetch(&t->active, 1, __ATOMIC_RELAXED);
    pc__lock_release(&t->lock);
    prep->pin = NULL;
    pc__pins_unprepare(prep); /* the spare, if the entry had pins */
    return id;
}

void pc__pins_release(struct pc__pin_table *t, uint64_t id)
{
    struct pc__pin **p, *pin;
    struct pc__pin_entry *gone = NULL;

    pc__lock_acquire(&t->lock);
    for (p = &t->by_id[bucket_of_id(id)]; *p != NULL && (*p)->id != id;
         p = &(*p)->next)
        ;
    pin = *p;
    if (pin != NULL) {
        *p = pin->next;
        if (--pin->entry->pins == 0) {
            gone = pin->entry;
            *find_entry(t, gone->kv) = gone->next;
            if (gone->kept != NULL) {
                t->zombies--;
                t->zombie_bytes -= gone->kept_size;
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
        t->zombies++;
        t->zombie_bytes += size;
    }
    pc__lock_release(&t->lock);
    return e != NULL;
}

void pc__pins_pending(struct pc__pin_table *t, uint64_t *n, uint64_t *bytes)
{
    pc__lock_acquire(&t->lock);
    *n += t->zombies;
    *bytes += t->zombie_bytes;
    pc__lock_release(&t->lock);
}

void pc__pins_fini(struct pc__pin_table *t)
{
    for (size_t b = 0; b < PC__PIN_BUCKETS; b++) {
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
}
