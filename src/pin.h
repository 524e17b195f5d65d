/*
 * pin: pinned (zero-copy) reads that keep only their own entry alive.
 *
 * A pin is a record in the cache's pin table, not an open read section: a
 * reader finds the entry inside a short epoch section and, before leaving
 * it, counts a pin on that entry here. From then on the entry's memory is
 * the pin table's concern: when the reclaimer is about to free a retired
 * entry (retire.c), it asks pc__pins_keep, and an entry that is pinned is
 * kept (a "zombie") instead, until its last pin is released, which frees
 * it. So a held pin delays the freeing of its own entry and nothing else:
 * grace periods, pc_reclaim and other entries' frees go on.
 *
 * Every pin has a unique id (a process-wide counter), which is what the
 * caller's pc_pin holds: releasing looks the id up, so a pin released
 * twice, or a copy of a released pin, finds nothing and does nothing, and
 * a pin may be released from any thread.
 *
 * Size. Both tables are chained hash tables of the same power-of-two
 * bucket count, 64 to start with (inline in the table), doubled once the
 * pins held pass two per bucket and halved once they fall under an
 * eighth, so a lookup walks a chain of about two records whatever the pins
 * held (with a fixed 64, 300,000 pins made a pin and unpin take 244 us and
 * a put that replaced a key 765 us, each free of a retired entry walking a
 * chain under the lock; now 0.15 and 0.21 us, against 0.07 and 0.14 with
 * no pin held, release build). The bucket arrays are allocated outside the
 * lock (pc__pins_grow after a pin, pc__pins_release's shrink) and moved
 * to under it: a rehash, O(pins) once per doubling, amortised O(1) per
 * pin. A resize whose allocation fails is not made: the table works on at
 * its size (slower, never wrong), and nothing fails for it.
 *
 * Concurrency: the table is guarded by its own lock, a leaf of the lock
 * order (internal.h): taken inside a read section (pinning) and by
 * whoever frees retired memory (pc_reclaim with its reclaim_lock held,
 * above it in that order), and no other lock is taken under it. The
 * reclaimer checks `active` first, so with no pin held freeing takes no
 * lock. A pin counted inside the section that found the entry happens
 * before the section ends, hence before the grace period that allows the
 * entry's free, hence before pc__pins_keep looks: a pinned entry is never
 * freed.
 */
#ifndef PC_PIN_H
#define PC_PIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lock.h"

#define PC__PIN_BUCKETS 64 /* the least bucket count (inline) */

struct pc__pin_entry; /* an entry with pins (or a zombie) */
struct pc__pin;       /* one pin */

struct pc__pin_table {
    pc__lock lock;
    size_t active; /* pins held (atomic reads by the freeing path) */
    /* Kept after retirement: changed under the lock, stored and loaded
     * atomically (pc__pins_pending reads them without it). */
    uint64_t zombies, zombie_bytes;
    /* Buckets in each table (a power of two, >= PC__PIN_BUCKETS): changed
     * under the lock, read atomically to decide on a resize outside it. */
    size_t nb;
    /* nb buckets each: entry0 and id0, or one allocation holding
     * by_entry's buckets and then by_id's */
    struct pc__pin_entry **by_entry;
    struct pc__pin **by_id;
    struct pc__pin_entry *entry0[PC__PIN_BUCKETS];
    struct pc__pin *id0[PC__PIN_BUCKETS];
};

/* The memory a pin needs, allocated before the lookup it follows, so that
 * a pin that cannot be had fails before the lookup has recorded a use
 * (the exact-LRU policy's lookup promotes the key). */
struct pc__pin_prep {
    struct pc__pin *pin;
    struct pc__pin_entry *spare;
};

/* An empty table (pc_create). */
void pc__pins_init(struct pc__pin_table *t);

/* False on ENOMEM (nothing held). */
bool pc__pins_prepare(struct pc__pin_prep *prep);
/* Give back what a prepare allocated and no take used (a miss, or the
 * spare of an entry that had pins). */
void pc__pins_unprepare(struct pc__pin_prep *prep);
/* Count a pin on the entry kv (inside the read section that found it),
 * with prepared memory (cannot fail); returns its id. What it did not use
 * stays in prep, for pc__pins_unprepare once the caller has left the
 * section. */
uint64_t pc__pins_take(struct pc__pin_table *t, const void *kv,
                       struct pc__pin_prep *prep);

/* After a pin was taken, outside the read section: double the tables if
 * the pins held passed two per bucket (allocating outside the lock; not
 * done if that fails, or if another thread resized meanwhile). A pinned
 * read that misses never gets here: it holds no pin, and allocated
 * arrays for nothing when prepare decided on growth (found by
 * helper-67). */
void pc__pins_grow(struct pc__pin_table *t);

/* Release the pin with this id; an unknown id (released already, or a
 * copy's) is a no-op. Frees the entry's block if it was the last pin of a
 * retired entry. */
void pc__pins_release(struct pc__pin_table *t, uint64_t id);

/* The reclaimer is about to free the entry kv (size bytes): true if it is
 * pinned, in which case the table keeps it and frees it with the last
 * pin. */
bool pc__pins_keep(struct pc__pin_table *t, void *kv, size_t size);

/* Add the kept blocks to *n and *bytes (pc_stats's pending). Takes no
 * lock; wait-free. */
void pc__pins_pending(struct pc__pin_table *t, uint64_t *n, uint64_t *bytes);

/* Free every record and kept block (pc_destroy). */
void pc__pins_fini(struct pc__pin_table *t);

#ifdef PC_DEBUG
/* Debug builds: chain records passed by lookups in every pin table (a
 * test's measure of the chains' length). */
extern uint64_t pc__debug_pin_steps;
#endif

#endif
