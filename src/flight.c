/*
 * flight: single-flight table and deadlock detection; see flight.h for the
 * protocol and its argument.
 *
 * The table is a fixed array of hash chains. It holds only flights in
 * progress (one per key being loaded right now), so it stays tiny and a
 * chain walk is short; it never resizes.
 */
#include "flight.h"

#include <pthread.h>
#include <string.h>

#include "alloc.h"
#include "hash.h"
#include "util.h"
#include "write.h"

#define FLIGHT_BUCKETS 64

/* The flight a thread is waiting for; see the deadlock argument. */
struct flight_waiter {
    struct pc__flight *waiting_for;
};

struct pc__flight {
    struct pc__flight *next;
    uint64_t h;
    size_t klen;
    unsigned char *key;
    struct flight_waiter *owner;
    unsigned refs;
    bool linked; /* in its table: new callers of the key join it */
    bool done;
    bool retry;     /* abandoned: the key was stored after all */
    bool forgotten; /* pc__flight_forget: hand the value over, keep nothing;
                       on the table's forgotten list until it ends */
    bool storing;   /* the leader is storing the value (store_begin/end) */
    pc_status status;
    int load_err;
    unsigned char *val;
    size_t vlen;
    pthread_cond_t cv;
    struct pc__lease lease; /* the leader's, when it loads into a cache */
};

struct pc__flight_table {
    struct pc__flight_count count; /* first: pc__flight_none reads it */
    struct pc__hash_seed seed;
    struct pc__flight *bucket[FLIGHT_BUCKETS];
    /* Forgotten flights not ended yet, through their `next`: out of the
     * buckets (new callers do not join them), but a later forget of the
     * key must still wait for a store of theirs in progress. */
    struct pc__flight *forgotten;
};

/* One lock for every table: waits-for chains cross tables. A leaf of the
 * lock order (internal.h). */
static pthread_mutex_t flights_lock = PTHREAD_MUTEX_INITIALIZER;
static _Thread_local struct flight_waiter self;

struct pc__flight_table *pc__flight_table_create(void)
{
    struct pc__flight_table *fl = pc__alloc(sizeof *fl);

    if (fl != NULL) {
        memset(fl, 0, sizeof *fl);
        pc__hash_seed_init(&fl->seed, 0);
    }
    return fl;
}

void pc__flight_table_destroy(struct pc__flight_table *fl)
{
    pc__free(fl, sizeof *fl);
}

static struct pc__flight **slot_of(struct pc__flight_table *fl, uint64_t h)
{
    return &fl->bucket[(h >> 7) % FLIGHT_BUCKETS];
}

static struct pc__flight *find(struct pc__flight_table *fl, uint64_t h,
                               const void *key, size_t klen)
{
    for (struct pc__flight *f = *slot_of(fl, h); f != NULL; f = f->next)
        if (f->h == h && f->klen == klen &&
            (klen == 0 || memcmp(f->key, key, klen) == 0))
            return f;
    return NULL;
}

static void unlink_flight(struct pc__flight_table *fl, struct pc__flight *f)
{
    struct pc__flight **p = slot_of(fl, f->h);

    if (!f->linked)
        return; /* forgotten: unlinked already */
    while (*p != f)
        p = &(*p)->next;
    *p = f->next;
    f->linked = false;
    __atomic_store_n(&fl->count.linked, fl->count.linked - 1, __ATOMIC_RELAXED);
}

/* f ends (done): off the forgotten list if it is on it. */
static void forgotten_unlink(struct pc__flight_table *fl, struct pc__flight *f)
{
    struct pc__flight **p = &fl->forgotten;

    if (!f->forgotten)
        return;
    while (*p != NULL && *p != f)
        p = &(*p)->next;
    if (*p == f)
        *p = f->next;
}

static void flight_free(struct pc__flight *f)
{
    pthread_cond_destroy(&f->cv);
    pc__free(f->val, f->vlen);
    pc__free(f, sizeof *f + f->klen);
}

static void release(struct pc__flight *f)
{
    if (--f->refs == 0)
        flight_free(f);
}

/*
 * Would waiting on f ever end? Not if f's owner chain leads back to us.
 * The walk stops at the first finished flight: whoever waits for it is
 * about to wake up, so the chain ends there, and its former owner may have
 * moved on (following it could find this very thread and report a cycle
 * that does not exist) or exited (its record, thread-local storage, gone).
 * An owner is only ever read through a flight that is not done, whose
 * owner must still finish it and so is alive (flight.h).
 */
static bool waits_for_self(struct pc__flight *f)
{
    for (int hops = 0; f != NULL && !f->done && hops < 1 << 20; hops++) {
        if (f->owner == &self)
            return true;
        f = f->owner->waiting_for;
    }
    return false;
}

pc_status pc__flight_begin(struct pc__flight_table *fl, const void *key,
                           size_t klen, const struct pc__flight_join *join,
                           enum pc__flight_role *role, struct pc__flight **out,
                           void *buf, size_t bufcap, size_t *vlen,
                           int *load_err, pc_status *out_status)
{
    uint64_t h = pc__hash(&fl->seed, key, klen);
    struct pc__flight *f;
    int cancel_state;

    /* pthread_cond_wait is a cancellation point, and acting on it would
     * leave flights_lock held (the wait re-takes it first): cancellation
     * waits until this call is over (flight.h). */
    pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &cancel_state);
    pthread_mutex_lock(&flights_lock);
    f = find(fl, h, key, klen);
    if (f == NULL) {
        f = pc__alloc(sizeof *f + klen);
        if (f == NULL) {
            pthread_mutex_unlock(&flights_lock);
            pthread_setcancelstate(cancel_state, NULL);
            return PC_ENOMEM;
        }
        memset(f, 0, sizeof *f);
        f->key = (unsigned char *)(f + 1);
        if (klen)
            memcpy(f->key, key, klen);
        f->h = h;
        f->klen = klen;
        f->owner = &self;
        f->refs = 1;
        f->linked = true;
        /* Release: a pc__flight_detach that sees the key deleted after
         * this flight's lease was registered also sees this. */
        __atomic_store_n(&fl->count.linked, fl->count.linked + 1,
                         __ATOMIC_RELEASE);
        pthread_cond_init(&f->cv, NULL);
        f->next = *slot_of(fl, h);
        *slot_of(fl, h) = f;
        if (join != NULL)
            join->fn(join->arg);
        pthread_mutex_unlock(&flights_lock);
        pthread_setcancelstate(cancel_state, NULL);
        *role = PC__FLIGHT_LEADER;
        *out = f;
        return PC_OK;
    }
    if (join != NULL)
        join->fn(join->arg);
    if (waits_for_self(f)) {
        pthread_mutex_unlock(&flights_lock);
        pthread_setcancelstate(cancel_state, NULL);
        return PC_EDEADLK;
    }
    f->refs++;
    self.waiting_for = f;
    while (!f->done)
        pthread_cond_wait(&f->cv, &flights_lock);
    self.waiting_for = NULL;

    *role = f->retry ? PC__FLIGHT_RETRY : PC__FLIGHT_FOLLOWER;
    *out_status = f->status;
    if (f->retry)
        ; /* nothing to hand over: the caller looks the key up again */
    else if (f->status == PC_OK)
        *out_status = pc__copy_out(f->val, f->vlen, buf, bufcap, vlen);
    else if (f->status == PC_ELOAD && load_err != NULL)
        *load_err = f->load_err;
    release(f);
    pthread_mutex_unlock(&flights_lock);
    pthread_setcancelstate(cancel_state, NULL);
    return PC_OK;
}

void pc__flight_finish(struct pc__flight_table *fl, struct pc__flight *f,
                       pc_status status, int load_err, const void *val,
                       size_t vlen)
{
    pthread_mutex_lock(&flights_lock);
    unlink_flight(fl, f); /* no new waiters from here on */
    forgotten_unlink(fl, f);
    if (status == PC_OK && vlen > 0 && f->refs > 1) {
        /* Waiters read the value after the leader has returned: copy. */
        f->val = pc__alloc(vlen);
        if (f->val == NULL)
            status = PC_ENOMEM;
        else
            memcpy(f->val, val, vlen);
    }
    f->done = true;
    f->status = status;
    f->load_err = load_err;
    f->vlen = status == PC_OK ? vlen : 0;
    pthread_cond_broadcast(&f->cv);
    release(f);
    pthread_mutex_unlock(&flights_lock);
}

bool pc__flight_store_begin(struct pc__flight *f)
{
    bool store;

    pthread_mutex_lock(&flights_lock);
    store = !f->forgotten;
    f->storing = store;
    pthread_mutex_unlock(&flights_lock);
    return store;
}

void pc__flight_store_end(struct pc__flight *f)
{
    pthread_mutex_lock(&flights_lock);
    f->storing = false;
    pthread_cond_broadcast(&f->cv); /* a pc__flight_forget may wait */
    pthread_mutex_unlock(&flights_lock);
}

void pc__flight_forget(struct pc__flight_table *fl, const void *key,
                       size_t klen)
{
    uint64_t h = pc__hash(&fl->seed, key, klen);
    struct pc__flight *f;
    int cancel_state;

    pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &cancel_state);
    pthread_mutex_lock(&flights_lock);
    f = find(fl, h, key, klen);
    if (f != NULL) {
        f->forgotten = true;
        unlink_flight(fl, f); /* later callers start a new load */
        f->next = fl->forgotten;
        fl->forgotten = f;
    }
    /* Wait while any forgotten flight of the key is storing: this one, or
     * one an earlier forget took out of the table (a store that began
     * before that forget). Each wait lets the list change: look again. */
    for (;;) {
        for (f = fl->forgotten; f != NULL; f = f->next)
            if (f->storing && f->h == h && f->klen == klen &&
                (klen == 0 || memcmp(f->key, key, klen) == 0))
                break;
        if (f == NULL)
            break;
        f->refs++;
        while (f->storing)
            pthread_cond_wait(&f->cv, &flights_lock);
        release(f);
    }
    pthread_mutex_unlock(&flights_lock);
    pthread_setcancelstate(cancel_state, NULL);
}

void pc__flight_detach(struct pc__flight_table *fl, const void *key,
                       size_t klen, bool all)
{
    int cancel_state;

    if (pc__flight_none(fl))
        return; /* the common case: no load in flight */
    pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &cancel_state);
    pthread_mutex_lock(&flights_lock);
    if (all) {
        for (unsigned int i = 0; i < FLIGHT_BUCKETS; i++)
            while (fl->bucket[i] != NULL)
                unlink_flight(fl, fl->bucket[i]);
    } else {
        struct pc__flight *f =
            find(fl, pc__hash(&fl->seed, key, klen), key, klen);

        if (f != NULL)
            unlink_flight(fl, f);
    }
    pthread_mutex_unlock(&flights_lock);
    pthread_setcancelstate(cancel_state, NULL);
}

void pc__flight_abandon(struct pc__flight_table *fl, struct pc__flight *f)
{
    pthread_mutex_lock(&flights_lock);
    unlink_flight(fl, f);
    forgotten_unlink(fl, f);
    f->done = true;
    f->retry = true;
    pthread_cond_broadcast(&f->cv);
    release(f);
    pthread_mutex_unlock(&flights_lock);
}

struct pc__lease *pc__flight_lease(struct pc__flight *f)
{
    return &f->lease;
}
