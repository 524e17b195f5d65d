/*
 * near: an in-process purecache in front of Redis, kept coherent by
 * server-assisted client-side caching.
 *
 * THE PROBLEM. Redis tells us (on the subscriber connection, see
 * subscriber.c) the name of every key this process has read that anyone
 * then modified, deleted, expired or evicted, or that every key is gone
 * (FLUSHALL: a nil list). The message travels on a different connection
 * than the GET reply it invalidates, so a reader can receive the old value
 * AFTER the subscriber has already processed the invalidation of that very
 * value:
 *
 *     reader                          server                 subscriber
 *     GET k ------------------------> reply "v1" (tracks k)
 *                                     SET k v2 (other client)
 *                                     invalidate k ---------> drop k
 *     <------------------ "v1" (late)
 *     store k = v1                    ... never invalidated again: stale
 *
 * The Redis documentation's answer is to "cache the null": mark the key as
 * being fetched before sending the GET, let an invalidation clear the
 * mark, and store the reply only if the mark survived. Here the mark is a
 * generation counter per stripe of keys:
 *
 *   fill_begin (before the GET is sent): read the stripe's gen, the global
 *     epoch and the near state (session, active).
 *   fill_end (reply in hand): under the stripe mutex, store the value only
 *     if gen, epoch and state are all unchanged.
 *   invalidate(k): under k's stripe mutex, gen++ then delete k.
 *   flush / session start / session end: epoch++ (and the state change),
 *     then lock and unlock every stripe mutex in turn, then clear the
 *     cache. A check+store that read the old epoch ran under some stripe
 *     mutex: before the flush passed that mutex (so its value is in the
 *     cache when the clear runs, and goes), or after (so it sees the new
 *     epoch and stores nothing).
 *
 * WHY NO STALE VALUE SURVIVES. Take a fill of k whose GET returned v1 and
 * an invalidation I of k caused by a write W that the server ordered after
 * that GET (a write ordered before it is reflected in v1). I cannot be
 * processed before fill_begin: the server sends I after executing W, which
 * it executed after the GET, which was sent after fill_begin. So I is
 * processed either (a) before fill_end takes the stripe mutex: gen
 * differs, v1 is not stored; or (b) after fill_end released it: I's delete
 * removes v1. The store is atomic with its check (the delete's mutex), so
 * there is no third case.
 * An invalidation that hashes to the same stripe for another key only
 * costs a skipped store. The same argument holds for a flush (the epoch
 * plays gen's part, and the pass through every stripe mutex orders the
 * flush against every check+store) and for this process's own put/del, which
 * invalidate after the server acknowledged them.
 *
 * WHAT TRACKING MUST COVER. The argument needs the server to send I for
 * every write after the GET. In per-key mode the GET's connection must
 * have tracking on with REDIRECT to the subscriber that is current for
 * the whole fill: the state word names the session, the backend enables
 * tracking for that session on the connection in the same pipeline as the
 * GET when it is not already on, and fill_end rejects the reply if the
 * session changed meanwhile. A session end (the subscriber connection is
 * lost: invalidations sent to it are dropped by the server) and the loss
 * of a tracked pooled connection (the server forgets what it read) flush
 * everything. In broadcast mode the subscriber's own connection carries
 * BCAST tracking for the prefix; pooled connections do not matter.
 *
 * READS. pc__near_read checks the state word (one load) and copies the
 * value out with pc_get: no lock, no shared write (a value over 1 KiB is
 * read through a pin instead, which takes the near cache's pin-table lock
 * for a few instructions). A reader that raced a flush returns a value the
 * flush was about to drop: it is ordered before the flush, like a read
 * before the write that caused it. Every near value carries the
 * monotonic deadline of its Redis value (from PTTL, measured from before
 * the GET was sent, so it is never later than the server's), and reads at
 * or after it are misses, so a near copy never outlives its Redis value
 * even if the server's expiry notice comes late.
 */
#include "near.h"

#include <stdlib.h>
#include <string.h>

#include "conn.h"

#define LOAD(p) __atomic_load_n((p), __ATOMIC_SEQ_CST)
#define STORE(p, v) __atomic_store_n((p), (v), __ATOMIC_SEQ_CST)
#define COUNT(p) __atomic_add_fetch((p), 1, __ATOMIC_RELAXED)
#define NEAR_COPY 1024 /* values up to this size are read by copy */

static unsigned stripe_of(const void *key, size_t klen)
{
    const unsigned char *p = key;
    uint64_t h = 0xcbf29ce484222325ULL;

    for (size_t i = 0; i < klen; i++)
        h = (h ^ p[i]) * 0x100000001b3ULL;
    h ^= h >> 29;
    return (unsigned)(h % PC__NEAR_STRIPES);
}

pc_status pc__near_create(struct pc__near **out, size_t capacity,
                          const char *prefix, size_t plen)
{
    pc_options o = {0};
    /* (Aligned as its stripes ask: calloc gives 16 bytes.) */
    struct pc__near *n = aligned_alloc(_Alignof(struct pc__near), sizeof *n);
    pc_status st;
    unsigned i;

    if (n == NULL)
        return PC_ENOMEM;
    memset(n, 0, sizeof *n);
    o.capacity = capacity;
    st = pc_create(&o, &n->cache);
    if (st != PC_OK) {
        free(n);
        return st;
    }
    for (i = 0; i < PC__NEAR_STRIPES; i++) {
        if (pthread_mutex_init(&n->stripes[i].mu, NULL) != 0) {
            while (i > 0)
                pthread_mutex_destroy(&n->stripes[--i].mu);
            pc_destroy(n->cache);
            free(n);
            return PC_ENOMEM;
        }
    }
    n->prefix = prefix;
    n->plen = plen;
    *out = n;
    return PC_OK;
}

void pc__near_destroy(struct pc__near *n)
{
    if (n == NULL)
        return;
    for (unsigned i = 0; i < PC__NEAR_STRIPES; i++)
        pthread_mutex_destroy(&n->stripes[i].mu);
    pc_destroy(n->cache);
    free(n);
}

size_t pc__near_len(const struct pc__near *n)
{
    return pc_len(n->cache);
}

int pc__near_is_active(const struct pc__near *n)
{
    return (int)(__atomic_load_n(&n->state, __ATOMIC_ACQUIRE) & 1);
}

/* A near value: its deadline, then the value's bytes, at most len bytes
 * from p. */
static pc_status near_value(const unsigned char *p, size_t len, void *buf,
                            size_t bufcap, size_t *vlen)
{
    uint64_t deadline;

    if (len < sizeof deadline) /* never stored so; be safe */
        return PC_NOTFOUND;
    memcpy(&deadline, p, sizeof deadline);
    if (deadline != 0 && pc__redis_now_ns() >= deadline)
        return PC_NOTFOUND;
    len -= sizeof deadline;
    if (vlen != NULL)
        *vlen = len;
    if (len > bufcap)
        return PC_ERANGE;
    if (len > 0)
        memcpy(buf, p + sizeof deadline, len);
    return PC_OK;
}

pc_status pc__near_read(struct pc__near *n, const void *key, size_t klen,
                        void *buf, size_t bufcap, size_t *vlen)
{
    /* Values up to NEAR_COPY bytes are copied out by pc_get (wait-free, no
     * shared write); larger ones are read in place through a pin, whose
     * table lock would otherwise be every near hit's shared line. */
    unsigned char tmp[sizeof(uint64_t) + NEAR_COPY];
    size_t len;
    pc_pin pin;
    pc_status st;

    if (!(__atomic_load_n(&n->state, __ATOMIC_ACQUIRE) & 1))
        return PC_NOTFOUND; /* bypassed: the channel is down */
    st = pc_get(n->cache, key, klen, tmp, sizeof tmp, &len);
    if (st == PC_OK)
        return near_value(tmp, len, buf, bufcap, vlen);
    if (st != PC_ERANGE || pc_get_pinned(n->cache, key, klen, &pin) != PC_OK)
        return PC_NOTFOUND;
    st = near_value(pin.value, pin.len, buf, bufcap, vlen);
    pc_unpin(&pin);
    return st;
}

void pc__near_fill_begin(struct pc__near *n, const void *key, size_t klen,
                         struct pc__near_fill *f)
{
    uint64_t s1, s2;

    f->armed = 0;
    f->stripe = stripe_of(key, klen);
    /* gen and epoch first: anything that changes them after this point
     * voids the fill. */
    f->gen = LOAD(&n->stripes[f->stripe].gen);
    f->epoch = LOAD(&n->epoch);
    s1 = LOAD(&n->state);
    f->sub_id = LOAD(&n->sub_id);
    s2 = LOAD(&n->state);
    /* sub_id is written while the state is inactive, so an unchanged
     * active state on both sides means sub_id belongs to it. */
    if (s1 != s2 || !(s1 & 1))
        return;
    f->state = s1;
    f->armed = 1;
}

void pc__near_fill_end(struct pc__near *n, const struct pc__near_fill *f,
                       const void *key, size_t klen, const void *val,
                       size_t vlen, uint64_t deadline_ns)
{
    struct pc__near_stripe *s = &n->stripes[f->stripe];
    unsigned char small[512], *v = small;
    size_t total = vlen + sizeof deadline_ns;

    if (!f->armed)
        return;
    if (vlen > PC_VALUE_MAX - sizeof deadline_ns)
        return; /* too large to hold with its deadline: not cached */
    if (total > sizeof small && (v = malloc(total)) == NULL)
        return;
    memcpy(v, &deadline_ns, sizeof deadline_ns);
    if (vlen > 0)
        memcpy(v + sizeof deadline_ns, val, vlen);
    pthread_mutex_lock(&s->mu);
    if (LOAD(&s->gen) == f->gen && LOAD(&n->epoch) == f->epoch &&
        LOAD(&n->state) == f->state) {
        if (pc_put(n->cache, key, klen, v, total) == PC_OK)
            COUNT(&n->fills);
    } else {
        COUNT(&n->dropped);
    }
    pthread_mutex_unlock(&s->mu);
    if (v != small)
        free(v);
}

void pc__near_invalidate(struct pc__near *n, const void *key, size_t klen)
{
    struct pc__near_stripe *s = &n->stripes[stripe_of(key, klen)];

    pthread_mutex_lock(&s->mu);
    STORE(&s->gen, s->gen + 1);
    (void)pc_delete(n->cache, key, klen);
    pthread_mutex_unlock(&s->mu);
}

void pc__near_invalidate_remote(struct pc__near *n, const void *rkey,
                                size_t rlen)
{
    COUNT(&n->invalidations);
    if (rlen < n->plen || memcmp(rkey, n->prefix, n->plen) != 0 ||
        rlen - n->plen > PC_KEY_MAX)
        return; /* not one of ours: it cannot be in the near tier */
    pc__near_invalidate(n, (const char *)rkey + n->plen, rlen - n->plen);
}

/*
 * Wait until every check+store that may have read the epoch or state from
 * before the caller's change has finished: each one runs under a stripe
 * mutex, so passing through every stripe mutex once orders them all
 * before the caller's next step. (One mutex at a time: holding all 256
 * together would do as well, but exceeds what ThreadSanitizer's deadlock
 * detector can follow.)
 */
static void pass_all_stripes(struct pc__near *n)
{
    for (unsigned i = 0; i < PC__NEAR_STRIPES; i++) {
        pthread_mutex_lock(&n->stripes[i].mu);
        pthread_mutex_unlock(&n->stripes[i].mu);
    }
}

void pc__near_flush(struct pc__near *n)
{
    __atomic_add_fetch(&n->epoch, 1, __ATOMIC_SEQ_CST);
    pass_all_stripes(n);
    pc_clear(n->cache);
    COUNT(&n->flushes);
}

/* Only the subscriber thread changes sessions, so n->session is its own. */
void pc__near_session_start(struct pc__near *n, uint64_t sub_id)
{
    n->session++;
    STORE(&n->state, n->session << 1); /* inactive while sub_id changes */
    STORE(&n->sub_id, sub_id);
    __atomic_add_fetch(&n->epoch, 1, __ATOMIC_SEQ_CST);
    pass_all_stripes(n);
    pc_clear(n->cache);
    STORE(&n->state, (n->session << 1) | 1);
    COUNT(&n->sessions);
}

void pc__near_session_end(struct pc__near *n)
{
    STORE(&n->state, n->session << 1);
    __atomic_add_fetch(&n->epoch, 1, __ATOMIC_SEQ_CST);
    pass_all_stripes(n);
    pc_clear(n->cache);
    COUNT(&n->flushes);
}
