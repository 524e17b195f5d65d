/*
 * domain: epoch domains, the registry of thread records, the threads'
 * tables of records and thread-exit cleanup. The design and the
 * thread-exit argument are in domain.h.
 *
 * Id maps. Both the process's map of live domains (id -> domain, under
 * the live lock) and each thread's table (id -> record, its thread's
 * alone) are the same small structure: a power-of-two array of (id,
 * pointer) slots, linear probing from a multiplicative hash of the id, id
 * 0 marking a free slot, deletion by backward shift (no tombstones).
 * They are the process's and its threads' bookkeeping, not any cache's,
 * so they come from the C allocator directly, outside alloc.h's per-cache
 * accounting (a thread's table lives as long as the thread).
 */
#include "domain.h"

#include <stdlib.h>
#include <string.h>

#include "alloc.h"

/* The live lock: level 3 of the lock order (internal.h). */
static pthread_mutex_t live_lock = PTHREAD_MUTEX_INITIALIZER;
static struct pc__domain *live_domains; /* under live_lock */
static struct idmap *live_ids;          /* id -> domain; under live_lock */
static uint64_t next_domain_id = 1;

/* The one pthread key: each thread's table (struct idmap, id -> record).
 * Made with the first domain, under init_lock; a first attempt that fails
 * (every key taken, or no memory for the fork handlers) is retried by the
 * next pc__domain_init, so a momentary shortage is not the process's for
 * good. thread_key_ok is set once, with a release store after the key and
 * the handlers exist; readers of the key run with a domain, so after it. */
static pthread_mutex_t init_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_key_t thread_key;
static bool thread_key_ok;
static bool atfork_ok; /* under init_lock */

__thread struct pc__record_cache pc__tls_record
    __attribute__((tls_model("initial-exec")));

/* ---- id maps ---- */

struct idmap_slot {
    uint64_t id; /* 0: free */
    void *val;
};

struct idmap {
    uint32_t cap; /* a power of two */
    uint32_t used;
    struct idmap_slot slot[];
};

#define IDMAP_MIN 8

static size_t idmap_bytes(uint32_t cap)
{
    return sizeof(struct idmap) + (size_t)cap * sizeof(struct idmap_slot);
}

static struct idmap *idmap_new(uint32_t cap)
{
    struct idmap *m = calloc(1, idmap_bytes(cap));

    if (m != NULL)
        m->cap = cap;
    return m;
}

static void idmap_free(struct idmap *m)
{
    free(m);
}

static uint32_t idmap_home(const struct idmap *m, uint64_t id)
{
    return (uint32_t)((id * 0x9e3779b97f4a7c15ull) >> 32) & (m->cap - 1);
}

/* The slot holding id, or the free slot where it would go. */
static uint32_t idmap_find(const struct idmap *m, uint64_t id)
{
    uint32_t i = idmap_home(m, id);

    while (m->slot[i].id != 0 && m->slot[i].id != id)
        i = (i + 1) & (m->cap - 1);
    return i;
}

static void *idmap_get(const struct idmap *m, uint64_t id)
{
    return m == NULL ? NULL : m->slot[idmap_find(m, id)].val;
}

/* id is absent and m has a free slot. */
static void idmap_put(struct idmap *m, uint64_t id, void *val)
{
    uint32_t i = idmap_find(m, id);

    PC__ASSERT(m->slot[i].id == 0 && m->used < m->cap);
    m->slot[i].id = id;
    m->slot[i].val = val;
    m->used++;
}

/* Remove id if present: shift back every later entry of its cluster that
 * may not sit beyond the hole (its home is not cyclically in (hole, j]). */
static void idmap_del(struct idmap *m, uint64_t id)
{
    uint32_t mask = m->cap - 1, hole = idmap_find(m, id), j = hole;

    if (m->slot[hole].id == 0)
        return;
    for (;;) {
        uint32_t home;

        j = (j + 1) & mask;
        if (m->slot[j].id == 0)
            break;
        home = idmap_home(m, m->slot[j].id);
        if (hole <= j ? (hole < home && home <= j) : (hole < home || home <= j))
            continue;
        m->slot[hole] = m->slot[j];
        hole = j;
    }
    m->slot[hole].id = 0;
    m->slot[hole].val = NULL;
    m->used--;
}

/* The smallest capacity that holds n entries at most half full. */
static uint32_t idmap_cap_for(uint32_t n)
{
    uint32_t cap = IDMAP_MIN;

    while (cap < 2 * n)
        cap *= 2;
    return cap;
}

/* ---- the live domains ---- */

void pc__domain_live_lock(void)
{
    pthread_mutex_lock(&live_lock);
}

void pc__domain_live_unlock(void)
{
    pthread_mutex_unlock(&live_lock);
}

struct pc__domain *pc__domain_first_live(void)
{
    return live_domains;
}

/* live_lock held. Make room for one more live id; false: out of memory. */
static bool live_ids_reserve(void)
{
    struct idmap *m;

    if (live_ids != NULL && 2 * (live_ids->used + 1) <= live_ids->cap)
        return true;
    m = idmap_new(idmap_cap_for(live_ids == NULL ? 1 : live_ids->used + 1));
    if (m == NULL)
        return false;
    for (uint32_t i = 0; live_ids != NULL && i < live_ids->cap; i++)
        if (live_ids->slot[i].id != 0)
            idmap_put(m, live_ids->slot[i].id, live_ids->slot[i].val);
    idmap_free(live_ids);
    live_ids = m;
    return true;
}

/* ---- the threads' tables ---- */

static struct idmap *thread_table(void)
{
    return __atomic_load_n(&thread_key_ok, __ATOMIC_RELAXED)
               ? pthread_getspecific(thread_key)
               : NULL;
}

/* The calling thread's table no longer needs d's entry (d is going). */
static void thread_table_drop(struct pc__domain *d)
{
    struct idmap *tt = thread_table();

    if (pc__tls_record.id == d->id) {
        pc__tls_record.id = 0;
        pc__tls_record.rec = NULL;
    }
    if (tt == NULL)
        return;
    idmap_del(tt, d->id);
    if (tt->used == 0 && pthread_setspecific(thread_key, NULL) == 0)
        idmap_free(tt);
}

/*
 * Make room in the calling thread's table for one more entry. A full
 * table (3/4) is rebuilt with the entries of live domains only, at most
 * half full, so stale entries of destroyed domains never pile up. False
 * for lack of memory, with the table as it was.
 */
static bool thread_table_reserve(void)
{
    struct idmap *tt = thread_table(), *nt;
    uint32_t kept = 0;

    if (tt == NULL) {
        nt = idmap_new(IDMAP_MIN);
    } else if (4 * (tt->used + 1) <= 3 * tt->cap) {
        return true;
    } else {
        pthread_mutex_lock(&live_lock);
        for (uint32_t i = 0; i < tt->cap; i++)
            kept += tt->slot[i].id != 0 &&
                    idmap_get(live_ids, tt->slot[i].id) != NULL;
        nt = idmap_new(idmap_cap_for(kept + 1));
        for (uint32_t i = 0; nt != NULL && i < tt->cap; i++)
            if (tt->slot[i].id != 0 &&
                idmap_get(live_ids, tt->slot[i].id) != NULL)
                idmap_put(nt, tt->slot[i].id, tt->slot[i].val);
        pthread_mutex_unlock(&live_lock);
    }
    if (nt == NULL)
        return false;
    if (pthread_setspecific(thread_key, nt) != 0) {
        idmap_free(nt);
        return false;
    }
    idmap_free(tt);
    return true;
}

size_t pc__domain_thread_slots(void)
{
    struct idmap *tt = thread_table();

    return tt == NULL ? 0 : tt->cap;
}

/* The key's destructor, on the exiting thread (see domain.h). */
static void thread_exit(void *value)
{
    struct idmap *tt = value;
    pthread_t self = pthread_self();

    /* A later call (from another key's destructor) registers afresh. */
    pc__tls_record.id = 0;
    pc__tls_record.rec = NULL;

    pthread_mutex_lock(&live_lock);
    for (uint32_t i = 0; i < tt->cap; i++) {
        struct pc__domain *d;
        struct pc__record *t;

        if (tt->slot[i].id == 0)
            continue;
        d = idmap_get(live_ids, tt->slot[i].id);
        if (d == NULL)
            continue; /* destroyed: its records went with it */
        /* A domain frees its records only in its fini, after unlinking
         * it under the live lock, which this exit holds: so t, found
         * through a live d, is a record of d, in memory; the
         * owner check keeps a record that another thread recycled (after
         * a fork's child released it) from being released twice. O(1)
         * per cache, where a walk of d's list made an exit O(records). */
        t = tt->slot[i].val;
        pthread_mutex_lock(&d->registry_lock);
        if (t->in_use && pthread_equal(t->owner, self)) {
            t->in_use = false;
            ck_epoch_unregister(&t->rec);
        }
        pthread_mutex_unlock(&d->registry_lock);
    }
    pthread_mutex_unlock(&live_lock);
    idmap_free(tt);
}

/*
 * fork(). The child has one thread, the one that forked; every other
 * thread's records would stay as they were for ever, and one left inside
 * a read section (a pin held, a lookup under way) would make every grace
 * period, so pc_reclaim, wait for ever. The child handler releases every
 * record not owned by the forking thread in every live domain, as if those
 * threads had exited (active cleared, free for recycling). The prepare
 * handler takes the live lock and every registry lock, so no list is
 * half-changed when the address space is copied; the parent and child
 * handlers release them (in the child, on behalf of the same thread).
 */
static void fork_prepare(void)
{
    pthread_mutex_lock(&live_lock);
    for (struct pc__domain *d = live_domains; d != NULL; d = d->live_next)
        pthread_mutex_lock(&d->registry_lock);
}

static void fork_parent(void)
{
    for (struct pc__domain *d = live_domains; d != NULL; d = d->live_next)
        pthread_mutex_unlock(&d->registry_lock);
    pthread_mutex_unlock(&live_lock);
}

static void fork_child(void)
{
    pthread_t self = pthread_self(); /* the forking thread's, here too */

    /* A thread that was making the key (process_init) does not exist
     * here: its init_lock would stay held for ever (not taken by the
     * prepare handler: a thread holding it in pthread_atfork waits for
     * fork's own lock). The child starts it afresh. */
    pthread_mutex_init(&init_lock, NULL);
    for (struct pc__domain *d = live_domains; d != NULL; d = d->live_next) {
        for (struct pc__record *t = d->records; t != NULL; t = t->next)
            if (t->in_use && !pthread_equal(t->owner, self)) {
                t->in_use = false;
                ck_epoch_unregister(&t->rec);
            }
        pthread_mutex_unlock(&d->registry_lock);
    }
    pthread_mutex_unlock(&live_lock);
}

/* The fork handlers are registered when the library is loaded, before an
 * application's own handlers: prepare handlers run in the
 * reverse order of registration and child handlers in order, so an
 * application handler registered later may call any cache from its
 * prepare handler (ours has not yet taken the locks) and in its child
 * handler (ours has already released them and the other threads' records).
 * Registered with the first cache instead, ours ran first and an
 * application prepare handler's pc_stats_get waited for ever on the
 * registry lock ours held (helper-71's reproducer: fork() never returned).
 * Shared, the library's constructors run before the program's; linked
 * statically, they run before the program's unprioritised constructors
 * (and those of priority above PC__CTOR_PRIORITY), as the linker orders
 * them (helper-77: an application constructor's handler, registered
 * first, hung fork() that way before the priority). If registration
 * fails here (no memory), the first domain retries it. */
static void register_atfork(void)
{
    pthread_mutex_lock(&init_lock);
    if (!atfork_ok)
        atfork_ok = pthread_atfork(fork_prepare, fork_parent, fork_child) == 0;
    pthread_mutex_unlock(&init_lock);
}

__attribute__((constructor(PC__CTOR_PRIORITY))) static void domain_load(void)
{
    register_atfork();
}

static bool process_init(void)
{
    bool ok;

    if (__atomic_load_n(&thread_key_ok, __ATOMIC_ACQUIRE))
        return true;
    register_atfork();
    pthread_mutex_lock(&init_lock);
    ok = thread_key_ok ||
         (atfork_ok && pthread_key_create(&thread_key, thread_exit) == 0);
    if (ok)
        __atomic_store_n(&thread_key_ok, true, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&init_lock);
    return ok;
}

/* ---- domains ---- */

bool pc__domain_init(struct pc__domain *d)
{
    memset(d, 0, sizeof *d);
    ck_epoch_init(&d->epoch);
    (void)pc__read_fence_setup(false); /* before the first domain exists */
    if (!process_init())
        return false;
    pthread_mutex_lock(&live_lock);
    if (!live_ids_reserve()) {
        pthread_mutex_unlock(&live_lock);
        return false;
    }
    d->id = __atomic_fetch_add(&next_domain_id, 1, __ATOMIC_RELAXED);
    pthread_mutex_init(&d->registry_lock, NULL);
    pthread_mutex_init(&d->grace_lock, NULL);
    idmap_put(live_ids, d->id, d);
    d->live_next = live_domains;
    if (live_domains != NULL)
        live_domains->live_prev = d;
    live_domains = d;
    pthread_mutex_unlock(&live_lock);
    return true;
}

void pc__domain_unlink(struct pc__domain *d)
{
    pthread_mutex_lock(&live_lock);
    if (d->unlinked) {
        pthread_mutex_unlock(&live_lock);
        return;
    }
    d->unlinked = true;
    if (d->live_prev != NULL)
        d->live_prev->live_next = d->live_next;
    else
        live_domains = d->live_next;
    if (d->live_next != NULL)
        d->live_next->live_prev = d->live_prev;
    idmap_del(live_ids, d->id);
    if (live_ids->used == 0) {
        idmap_free(live_ids);
        live_ids = NULL;
    }
    pthread_mutex_unlock(&live_lock);
    thread_table_drop(d);
}

void pc__domain_fini(struct pc__domain *d)
{
    struct pc__record *t, *next;

    pc__domain_unlink(d);
    for (t = d->records; t != NULL; t = next) {
        next = t->next;
        pc__free_aligned(t, sizeof *t, CK_MD_CACHELINE);
    }
    pthread_mutex_destroy(&d->registry_lock);
    pthread_mutex_destroy(&d->grace_lock);
}

void pc__domain_register_writer(struct pc__domain *d, ck_epoch_record_t *r)
{
    /* Under the registry lock so the list stays consistent for
     * pc__domain_record_slow's recycling; never unregistered, never
     * active, so never recycled as a thread record. */
    pthread_mutex_lock(&d->registry_lock);
    PC_TSAN_RELEASE(r); /* tsan.h, case 4 */
    ck_epoch_register(&d->epoch, r, NULL);
    pthread_mutex_unlock(&d->registry_lock);
}

/* A record for this thread in d: an exited thread's, else a new one. */
static struct pc__record *register_record(struct pc__domain *d)
{
    struct pc__record *t;
    ck_epoch_record_t *r;

    pthread_mutex_lock(&d->registry_lock);
    /* Only thread records are ever unregistered, so a recycled record is
     * always the first member of a struct pc__record. */
    r = ck_epoch_recycle(&d->epoch, NULL);
    if (r != NULL) {
        t = (struct pc__record *)r;
        t->owner = pthread_self();
        t->in_use = true;
    } else {
        t = pc__alloc_aligned(sizeof *t, CK_MD_CACHELINE);
        if (t == NULL) {
            pthread_mutex_unlock(&d->registry_lock);
            return NULL;
        }
        memset(t, 0, sizeof *t);
        t->dom = d;
        t->owner = pthread_self();
        t->in_use = true;
        PC_TSAN_RELEASE(&t->rec); /* tsan.h, case 4 */
        ck_epoch_register(&d->epoch, &t->rec, NULL);
        t->next = d->records;
        d->records = t;
    }
    pthread_mutex_unlock(&d->registry_lock);
    return t;
}

struct pc__record *pc__domain_record_slow(struct pc__domain *d)
{
    struct pc__record *t = idmap_get(thread_table(), d->id);

    if (t == NULL) {
        /* Room first: once registered, nothing may fail. */
        if (!thread_table_reserve())
            return NULL;
        t = register_record(d);
        if (t == NULL)
            return NULL;
        idmap_put(thread_table(), d->id, t);
    }
    pc__tls_record.id = d->id;
    pc__tls_record.rec = t;
    return t;
}

void pc__domain_sum_stats(struct pc__domain *d, struct pc__record_stats *out)
{
    pthread_mutex_lock(&d->registry_lock);
    for (struct pc__record *t = d->records; t != NULL; t = t->next) {
        out->hits += PC__COUNTER_READ(t->stats.hits);
        out->misses += PC__COUNTER_READ(t->stats.misses);
        out->loader_calls += PC__COUNTER_READ(t->stats.loader_calls);
        out->loader_errors += PC__COUNTER_READ(t->stats.loader_errors);
    }
    pthread_mutex_unlock(&d->registry_lock);
}
