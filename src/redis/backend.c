/*
 * backend: pc_redis_backend, its connection pool and its operations.
 *
 * POOL. N slots, each a busy flag, a connection (opened lazily) and its
 * tracking state; the thread that set the flag owns the rest. A request
 * tries the calling thread's home slot first (threads get consecutive
 * homes, so up to N threads never meet), then the others, each with one
 * compare-and-swap, and only if every slot is busy waits: it joins a
 * FIFO queue (under wait_mu, counted in `waiters`) and sleeps on a
 * condition variable of its own until a release hands it a slot, or its
 * deadline passes. A release with nobody waiting clears the flag and
 * takes no lock; with waiters, it hands the slot, still taken, to the
 * first of them. A seq_cst fence on each side, between its own write
 * (the count; the flag) and its read of the other's, makes a release
 * either see the waiter or the waiter's tries see the slot free; a
 * release that cleared the flag and then saw a waiter takes the slot back,
 * if nobody did, and hands it over. So requests that wait are served in
 * arrival order, and a newcomer cannot take a slot past them (but for a
 * release's own window, above). A waiter whose deadline has passed is
 * dropped from the queue, not handed the slot, and a request that gets a
 * slot past its deadline gives it back unused (hand_over). Waiting for
 * its home slot alone, a request timed out while the other slots were
 * free again and again (helper-73: 93 timeouts in 96,000 requests, 32
 * threads on 2 connections, 100 ms; at 20 ms, 1,029 timeouts, and 137
 * connections opened for a pool of 2; now none, and 2); and waiting for
 * any slot on one condition variable, without the hand-over, newcomers
 * took the freed slots first, and a 20 ms timeout failed more requests
 * than that.
 *
 * REQUEST. One deadline (now + timeout_ms) bounds the whole request:
 * waiting for a slot, connecting, sending and receiving (conn.c). On an I/O
 * error the connection is closed; if it was an old connection (the server
 * may have closed it while it sat idle, e.g. after a restart), a GET or a
 * plain SET is retried once on a fresh one within the same deadline: run
 * twice, they leave what one run leaves. A request whose reply says what
 * it found (SET NX / XX, DEL) is never retried once sent: its first try
 * may have run before the connection failed, and a retry would answer
 * about that try's own write (NX created the key, then reported it
 * present). Instead, before sending one on an old connection, a peek
 * (no wait) finds a connection the server closed while it sat idle; a
 * failure after the send is PC_EIO, outcome unknown, as the header says.
 *
 * A request is not sent when the time it has left, once it holds a
 * connection, is under the pool's recent round trip (a low estimate of
 * the successful ones, at most half the timeout): it fails with PC_EIO
 * at once, and the connection stays. Sent, it would most likely time out
 * waiting for its reply, and a connection whose reply was not awaited is
 * dropped (its next reply would be this one's): under overload, requests
 * that waited most of their deadline for a slot did exactly that, and
 * the pool reconnected over and over (64 threads on 1 connection, 3 ms:
 * 7,499 connects and 103,855 failures in 128,000 requests). Capped at half
 * the timeout, the check never stops a request that got a connection at
 * once, so the estimate keeps learning when round trips get faster. A
 * low estimate, not an average: on a loaded machine the measured round
 * trip includes the time a woken thread waits for a CPU, and an average
 * (weight 1/8) refused requests that would have been answered in time
 * (32 threads on 2 connections, 5 ms: 3,069 failures against 104).
 *
 * CANCELLATION. A request runs with cancellation disabled (call, and
 * the backend's destroy and pc_redis_wait_near), as purecache.h's
 * conventions promise of every purecache function: its waits (poll,
 * recv, a pool wait on a condition variable, getaddrinfo, the join of the
 * subscriber) are cancellation points, and a thread cancelled there by a
 * caller who called the backend's operations directly (the memoizer
 * already disables it around its backend calls) left its slot taken for
 * ever, and its queue entry, on its dead stack, linked in the pool's
 * queue for the next release to write to. A request pending meanwhile is
 * acted upon at the caller's next cancellation point after the call.
 *
 * NEAR TIER (near.c has the coherence argument). get: a live near copy is
 * returned without I/O. Otherwise, when the tier is active, the request is
 * a fill: fill_begin, then one pipeline on one connection [CLIENT TRACKING
 * on REDIRECT id (per-key mode, only if this connection does not track for
 * the current session yet)] GET key, PTTL key; the value is returned to the
 * caller whatever happens, and stored only through fill_end. put/del
 * invalidate the key locally after the server answered (or failed: the
 * write may have happened), before returning.
 */
#define _GNU_SOURCE
#include "backend.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define COUNT(p) __atomic_add_fetch((p), 1, __ATOMIC_RELAXED)
#define READ(p) __atomic_load_n((p), __ATOMIC_RELAXED)

static const pc_backend_ops redis_ops;

#ifdef PC_DEBUG
void (*pc__redis_debug_fill_hook)(void);
#endif

/* ---- pool ---- */

static unsigned thread_home(void)
{
    static unsigned next;
    static __thread unsigned home_plus_one;

    if (home_plus_one == 0)
        home_plus_one =
            __atomic_fetch_add(&next, 1, __ATOMIC_RELAXED) % 0x7fffffffu + 1;
    return home_plus_one - 1;
}

bool pc__redis_slot_try(struct pc__redis_slot *s)
{
    int free_ = 0;

    return __atomic_load_n(&s->busy, __ATOMIC_RELAXED) == 0 &&
           __atomic_compare_exchange_n(&s->busy, &free_, 1, false,
                                       __ATOMIC_ACQUIRE, __ATOMIC_RELAXED);
}

/* A free slot, trying the calling thread's home first; NULL if every
 * slot is busy. */
static struct pc__redis_slot *slot_try_any(struct pc__redis *r, unsigned home)
{
    for (unsigned i = 0; i < r->nslots; i++) {
        struct pc__redis_slot *s = &r->slots[(home + i) % r->nslots];

        if (pc__redis_slot_try(s))
            return s;
    }
    return NULL;
}

/* A request waiting for a slot (on its stack, in the queue under
 * wait_mu); slot is set by the release that hands it one. */
struct pc__redis_waiter {
    struct pc__redis_waiter *next;
    struct pc__redis_slot *slot; /* handed over by a release */
    uint64_t deadline_ns;
    int dropped; /* taken off the queue by a release, past its deadline */
    pthread_cond_t cv;
};

static void unqueue(struct pc__redis *r, struct pc__redis_waiter *w)
{
    struct pc__redis_waiter **p = &r->wait_head, *prev = NULL;

    while (*p != w) {
        prev = *p;
        p = &(*p)->next;
    }
    *p = w->next;
    if (r->wait_tail == w)
        r->wait_tail = prev;
}

/* Every slot busy: queue, and wait until a release hands this request a
 * slot or the deadline passes (NULL). */
static __attribute__((noinline)) struct pc__redis_slot *
slot_wait(struct pc__redis *r, unsigned home, uint64_t deadline_ns)
{
    struct pc__redis_waiter w = {.deadline_ns = deadline_ns};
    struct timespec abs = {.tv_sec = (time_t)(deadline_ns / 1000000000u),
                           .tv_nsec = (long)(deadline_ns % 1000000000u)};
    struct pc__redis_slot *s;

    pthread_mutex_lock(&r->wait_mu);
    __atomic_add_fetch(&r->waiters, 1, __ATOMIC_SEQ_CST);
    /* Paired with the fence in pc__redis_slot_release: either its load
     * of waiters sees this request, or these tries see the slot free. */
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    s = slot_try_any(r, home);
    if (s != NULL || pc__redis_now_ns() >= deadline_ns ||
        pthread_cond_init(&w.cv, &r->wait_attr) != 0) {
        __atomic_sub_fetch(&r->waiters, 1, __ATOMIC_SEQ_CST);
        pthread_mutex_unlock(&r->wait_mu);
        return s;
    }
    if (r->wait_tail != NULL)
        r->wait_tail->next = &w;
    else
        r->wait_head = &w;
    r->wait_tail = &w;
    while (w.slot == NULL && !w.dropped &&
           pthread_cond_timedwait(&w.cv, &r->wait_mu, &abs) != ETIMEDOUT)
        ;
    /* Handed a slot or dropped, it was taken off the queue and counted
     * out by the release; timed out, it leaves by itself. */
    if (w.slot == NULL && !w.dropped) {
        unqueue(r, &w);
        __atomic_sub_fetch(&r->waiters, 1, __ATOMIC_SEQ_CST);
    }
    pthread_cond_destroy(&w.cv);
    pthread_mutex_unlock(&r->wait_mu);
    return w.slot;
}

static struct pc__redis_slot *slot_acquire(struct pc__redis *r,
                                           uint64_t deadline_ns)
{
    unsigned home = thread_home() % r->nslots;
    struct pc__redis_slot *s = slot_try_any(r, home);

    return s != NULL ? s : slot_wait(r, home, deadline_ns);
}

/* Hand s (held) to the first waiter whose deadline has not passed;
 * those whose deadline has are dropped from the queue on the way (each
 * then leaves with no slot): a slot handed to one would be used past its
 * deadline, its request sent and its connection dropped when the reply
 * could not be awaited (helper-81). False if no waiter took s. */
static bool hand_over(struct pc__redis *r, struct pc__redis_slot *s)
{
    struct pc__redis_waiter *w;
    uint64_t now = 0;

    while ((w = r->wait_head) != NULL) {
        r->wait_head = w->next;
        if (r->wait_head == NULL)
            r->wait_tail = NULL;
        __atomic_sub_fetch(&r->waiters, 1, __ATOMIC_SEQ_CST);
        if (now == 0)
            now = pc__redis_now_ns();
        if (now < w->deadline_ns)
            w->slot = s;
        else
            w->dropped = 1;
        pthread_cond_signal(&w->cv);
        if (w->slot != NULL)
            return true;
    }
    return false;
}

void pc__redis_slot_release(struct pc__redis *r, struct pc__redis_slot *s)
{
    if (__atomic_load_n(&r->waiters, __ATOMIC_SEQ_CST) == 0) {
        __atomic_store_n(&s->busy, 0, __ATOMIC_RELEASE);
        __atomic_thread_fence(__ATOMIC_SEQ_CST); /* (slot_wait) */
        if (__atomic_load_n(&r->waiters, __ATOMIC_SEQ_CST) == 0)
            return;
        /* A request came to wait meanwhile: it found s free, or it is
         * queued and s is handed to the first in the queue, if no one
         * took s first. */
        pthread_mutex_lock(&r->wait_mu);
        if (pc__redis_slot_try(s) && !hand_over(r, s))
            __atomic_store_n(&s->busy, 0, __ATOMIC_RELEASE);
        pthread_mutex_unlock(&r->wait_mu);
        return;
    }
    pthread_mutex_lock(&r->wait_mu);
    if (!hand_over(r, s))
        __atomic_store_n(&s->busy, 0, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&r->wait_mu);
}

void pc__redis_slot_drop(struct pc__redis *r, struct pc__redis_slot *s)
{
    pc__redis_conn_close(&s->conn);
    if (s->track_state != 0 && r->near != NULL) {
        /* The server forgot which keys this connection read: their
         * invalidations will never come. */
        s->track_state = 0;
        pc__near_flush(r->near);
    }
}

/* Whether a request with `left` ns before its deadline is worth sending:
 * at least the recent round trip, or half the timeout (REQUEST). */
static bool time_for_a_round_trip(const struct pc__redis *r, uint64_t left)
{
    uint64_t rtt = READ(&r->rtt_ns);
    uint64_t half = (uint64_t)r->timeout_ms * 500000u;

    return left >= (rtt < half ? rtt : half);
}

/* A successful round trip of `ns` into the estimate: a faster one
 * replaces it, a slower one moves it up by 1/64 of the difference (a
 * low percentile, roughly; racing updates may lose one: a hint). */
static void note_round_trip(struct pc__redis *r, uint64_t ns)
{
    uint64_t rtt = READ(&r->rtt_ns);

    rtt = rtt == 0 || ns < rtt ? ns : rtt - rtt / 64 + ns / 64;
    __atomic_store_n(&r->rtt_ns, rtt, __ATOMIC_RELAXED);
}

/*
 * Run q on a pooled connection; on success replies[0..q->count) are set.
 * With fill armed (per-key mode), make sure the connection tracks for the
 * fill's session first, in the same pipeline; disarm the fill if that
 * fails. once: q must not run twice (REQUEST above).
 */
static pc_status call_io(struct pc__redis *r, const struct pc__redis_cmds *q,
                         redisReply **replies, struct pc__near_fill *fill,
                         bool once)
{
    uint64_t deadline;
    struct pc__redis_slot *s;
    redisReply *all[4];

    if (q->err || q->count > 3)
        return PC_ENOMEM;
#ifdef PC_DEBUG
    if (fill != NULL && pc__redis_debug_fill_hook != NULL)
        pc__redis_debug_fill_hook();
#endif
    deadline = pc__redis_now_ns() + (uint64_t)r->timeout_ms * 1000000u;
    s = slot_acquire(r, deadline);
    /* A slot got just past the deadline is given back unused: its request
     * could only be sent, not awaited, and its connection would be
     * dropped for it. */
    if (s != NULL && pc__redis_now_ns() >= deadline) {
        pc__redis_slot_release(r, s);
        s = NULL;
    }
    if (s == NULL) {
        COUNT(&r->errors);
        return PC_EIO;
    }
    for (int attempt = 0;; attempt++) {
        struct pc__redis_cmds tq;
        const struct pc__redis_cmds *send = q;
        int fresh = 0, track = 0, rc;
        uint64_t start;

        /* A request that must not run twice is never retried after it
         * was sent (its first try may have run on the server): so an idle
         * pooled connection that the server has closed is found here,
         * before sending, rather than by the failure of a send. */
        if (once && attempt == 0 && pc__redis_conn_is_open(&s->conn) &&
            !pc__redis_conn_idle_ok(&s->conn))
            pc__redis_slot_drop(r, s);
        if (!pc__redis_conn_is_open(&s->conn)) {
            if (pc__redis_conn_open(&s->conn, r->host, r->port, deadline) != 0)
                break;
            COUNT(&r->connects);
            s->track_state = 0;
            fresh = 1;
        }
        /* A fill of an older session than the one this connection now
         * tracks for stores nothing: re-pointing the connection's tracking
         * at that session's subscriber would send every key it tracks,
         * the newer session's too, to a client nobody reads (if it is
         * still connected: a stalled path), and those near copies would
         * never be invalidated (helper-73). States only grow. */
        if (fill != NULL && fill->armed && s->track_state > fill->state) {
            fill->armed = 0;
            COUNT(&r->near->dropped); /* its session's end flushed */
        }
        if (fill != NULL && fill->armed && r->tracking == PC_REDIS_TRACK_KEYS &&
            s->track_state != fill->state) {
            char id[24];
            const char *argv[5] = {"CLIENT", "TRACKING", "on", "REDIRECT", id};
            size_t lens[5] = {6, 8, 2, 8, 0};

            lens[4] = (size_t)snprintf(id, sizeof id, "%llu",
                                       (unsigned long long)fill->sub_id);
            pc__redis_cmds_init(&tq);
            pc__redis_cmds_add(&tq, 5, argv, lens);
            pc__redis_cmds_append(&tq, q);
            if (tq.err) { /* memory: the connection is fine */
                pc__redis_cmds_free(&tq);
                pc__redis_slot_release(r, s);
                return PC_ENOMEM;
            }
            send = &tq;
            track = 1;
        }
        start = pc__redis_now_ns();
        if (start >= deadline || !time_for_a_round_trip(r, deadline - start)) {
            if (track) /* (nothing sent: the connection is fine) */
                pc__redis_cmds_free(&tq);
            break;
        }
        COUNT(&r->requests);
        rc = pc__redis_conn_call(&s->conn, send, all, deadline);
        if (track)
            pc__redis_cmds_free(&tq);
        if (rc == 0) {
            note_round_trip(r, pc__redis_now_ns() - start);
            if (track) {
                if (all[0]->type == REDIS_REPLY_STATUS)
                    s->track_state = fill->state;
                else
                    fill->armed = 0; /* e.g. the subscriber just left */
                freeReplyObject(all[0]);
            }
            memcpy(replies, all + track, q->count * sizeof *replies);
            pc__redis_slot_release(r, s);
            return PC_OK;
        }
        pc__redis_slot_drop(r, s);
        if (fresh || once || attempt > 0 || pc__redis_now_ns() >= deadline)
            break;
    }
    pc__redis_slot_release(r, s);
    COUNT(&r->errors);
    return PC_EIO;
}

/* One request (call_io) with cancellation disabled (CANCELLATION above). */
static pc_status call(struct pc__redis *r, const struct pc__redis_cmds *q,
                      redisReply **replies, struct pc__near_fill *fill,
                      bool once)
{
    int cs;
    pc_status st;

    pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &cs);
    st = call_io(r, q, replies, fill, once);
    pthread_setcancelstate(cs, NULL);
    return st;
}

static void free_replies(redisReply **rep, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (rep[i] != NULL)
            freeReplyObject(rep[i]);
}

/* ---- operations ---- */

static int key_args_ok(const void *key, size_t klen)
{
    return !(key == NULL && klen > 0) && klen <= PC_KEY_MAX;
}

/* prefix + key into buf (PC_REDIS_PREFIX_MAX + PC_KEY_MAX bytes). */
static size_t redis_key(const struct pc__redis *r, char *buf, const void *key,
                        size_t klen)
{
    memcpy(buf, r->prefix, r->plen);
    if (klen > 0)
        memcpy(buf + r->plen, key, klen);
    return r->plen + klen;
}

static pc_status copy_out(const redisReply *v, void *buf, size_t bufcap,
                          size_t *vlen)
{
    size_t len = (size_t)v->len;

    if (vlen != NULL)
        *vlen = len;
    if (len > bufcap)
        return PC_ERANGE;
    if (len > 0)
        memcpy(buf, v->str, len);
    return PC_OK;
}

static pc_status rb_get(void *self, const void *key, size_t klen, void *buf,
                        size_t bufcap, size_t *vlen)
{
    struct pc__redis *r = self;
    char rk[PC_REDIS_PREFIX_MAX + PC_KEY_MAX];
    const char *argv[2];
    size_t lens[2];
    struct pc__redis_cmds q;
    struct pc__near_fill fill = {0};
    redisReply *rep[2] = {NULL, NULL};
    uint64_t sent;
    pc_status st;

    if (r == NULL || !key_args_ok(key, klen) || (buf == NULL && bufcap > 0))
        return PC_EINVAL;
    if (r->near != NULL) {
        st = pc__near_read(r->near, key, klen, buf, bufcap, vlen);
        if (st != PC_NOTFOUND)
            return st;
        pc__near_fill_begin(r->near, key, klen, &fill);
    }
    argv[1] = rk;
    lens[1] = redis_key(r, rk, key, klen);
    pc__redis_cmds_init(&q);
    argv[0] = "GET";
    lens[0] = 3;
    pc__redis_cmds_add(&q, 2, argv, lens);
    if (fill.armed) {
        argv[0] = "PTTL";
        lens[0] = 4;
        pc__redis_cmds_add(&q, 2, argv, lens);
    }
    sent = pc__redis_now_ns();
    st = call(r, &q, rep, fill.armed ? &fill : NULL, false);
    pc__redis_cmds_free(&q);
    if (st != PC_OK)
        return st;
    if (rep[0]->type == REDIS_REPLY_NIL) {
        st = PC_NOTFOUND;
    } else if (rep[0]->type != REDIS_REPLY_STRING) {
        st = PC_EIO; /* WRONGTYPE and the like */
        COUNT(&r->errors);
    } else {
        st = copy_out(rep[0], buf, bufcap, vlen);
        /* PTTL: -1 no expiry, -2 gone meanwhile (do not cache), else ms
         * left when the server ran it, which was after `sent`. */
        if (fill.armed && rep[1]->type == REDIS_REPLY_INTEGER &&
            rep[1]->integer != -2) {
            uint64_t deadline = 0;

            /* (A ttl too long for the clock's nanoseconds: none.) */
            if (rep[1]->integer >= 0 &&
                (uint64_t)rep[1]->integer <= (UINT64_MAX - sent) / 1000000u)
                deadline = sent + (uint64_t)rep[1]->integer * 1000000u;
            pc__near_fill_end(r->near, &fill, key, klen, rep[0]->str,
                              (size_t)rep[0]->len, deadline);
        }
    }
    free_replies(rep, 2);
    return st;
}

/* SET, with PX (the put's ttl, else the backend's) and NX or XX for the
 * conditional puts. */
static pc_status rb_put_ex(void *self, const void *key, size_t klen,
                           const void *val, size_t vlen,
                           const pc_put_args *args)
{
    struct pc__redis *r = self;
    char rk[PC_REDIS_PREFIX_MAX + PC_KEY_MAX], ttl[24];
    const char *argv[6] = {"SET", rk, val != NULL ? (const char *)val : ""};
    size_t lens[6] = {3, 0, vlen}, argc = 3;
    unsigned int flags = args != NULL ? args->flags : 0;
    uint64_t ttl_ms = args != NULL && args->ttl_ms != 0 ? args->ttl_ms
                      : r != NULL                       ? r->ttl_ms
                                                        : 0;
    struct pc__redis_cmds q;
    redisReply *rep = NULL;
    pc_status st;

    if (r == NULL || !key_args_ok(key, klen) || (val == NULL && vlen > 0) ||
        vlen > PC_REDIS_VALUE_MAX ||
        (flags & ~(PC_PUT_IF_ABSENT | PC_PUT_IF_PRESENT)) != 0 ||
        flags == (PC_PUT_IF_ABSENT | PC_PUT_IF_PRESENT))
        return PC_EINVAL;
    lens[1] = redis_key(r, rk, key, klen);
    if (ttl_ms != 0 && ttl_ms != PC_TTL_NEVER) {
        if (ttl_ms > PC_REDIS_TTL_MAX)
            ttl_ms = PC_REDIS_TTL_MAX; /* saturate, as pc_put_ex does */
        argv[argc] = "PX";
        lens[argc++] = 2;
        argv[argc] = ttl;
        lens[argc++] = (size_t)snprintf(ttl, sizeof ttl, "%llu",
                                        (unsigned long long)ttl_ms);
    }
    if (flags != 0) {
        argv[argc] = flags == PC_PUT_IF_ABSENT ? "NX" : "XX";
        lens[argc++] = 2;
    }
    pc__redis_cmds_init(&q);
    pc__redis_cmds_add(&q, (int)argc, argv, lens);
    /* SET NX / XX answers whether the key was there: a retry would answer
     * about the first try's own write. */
    st = call(r, &q, &rep, NULL, flags != 0);
    pc__redis_cmds_free(&q);
    if (st != PC_ENOMEM && r->near != NULL)
        pc__near_invalidate(r->near, key, klen);
    if (st != PC_OK)
        return st;
    if (rep->type == REDIS_REPLY_NIL && flags != 0) {
        /* NX found the key, or XX did not. */
        st = flags == PC_PUT_IF_ABSENT ? PC_EXISTS : PC_NOTFOUND;
    } else if (rep->type != REDIS_REPLY_STATUS) {
        st = PC_EIO;
        COUNT(&r->errors);
    }
    freeReplyObject(rep);
    return st;
}

static pc_status rb_put(void *self, const void *key, size_t klen,
                        const void *val, size_t vlen)
{
    return rb_put_ex(self, key, klen, val, vlen, NULL);
}

static pc_status rb_del(void *self, const void *key, size_t klen)
{
    struct pc__redis *r = self;
    char rk[PC_REDIS_PREFIX_MAX + PC_KEY_MAX];
    const char *argv[2] = {"DEL", rk};
    size_t lens[2] = {3, 0};
    struct pc__redis_cmds q;
    redisReply *rep = NULL;
    pc_status st;

    if (r == NULL || !key_args_ok(key, klen))
        return PC_EINVAL;
    lens[1] = redis_key(r, rk, key, klen);
    pc__redis_cmds_init(&q);
    pc__redis_cmds_add(&q, 2, argv, lens);
    st = call(r, &q, &rep, NULL, true); /* (DEL answers whether it was) */
    pc__redis_cmds_free(&q);
    if (st != PC_ENOMEM && r->near != NULL)
        pc__near_invalidate(r->near, key, klen);
    if (st != PC_OK)
        return st;
    if (rep->type != REDIS_REPLY_INTEGER) {
        st = PC_EIO;
        COUNT(&r->errors);
    } else {
        st = rep->integer > 0 ? PC_OK : PC_NOTFOUND;
    }
    freeReplyObject(rep);
    return st;
}

static size_t rb_len(void *self)
{
    struct pc__redis *r = self;

    return r != NULL && r->near != NULL ? pc__near_len(r->near) : 0;
}

static void free_backend(struct pc__redis *r)
{
    if (r->slots != NULL) {
        for (unsigned i = 0; i < r->nslots; i++) {
            pc__redis_conn_close(&r->slots[i].conn);
        }
        free(r->slots);
    }
    if (r->wait_init) {
        pthread_condattr_destroy(&r->wait_attr);
        pthread_mutex_destroy(&r->wait_mu);
    }
    pc__near_destroy(r->near);
    free(r->host);
    free(r->prefix);
    free(r);
}

static void rb_destroy(void *self)
{
    struct pc__redis *r = self;
    int cs;

    if (r == NULL)
        return;
    pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &cs);
    if (r->near != NULL)
        pc__redis_subscriber_stop(r);
    free_backend(r);
    pthread_setcancelstate(cs, NULL);
}

static const pc_backend_ops redis_ops = {
    .size = sizeof(pc_backend_ops),
    .get = rb_get,
    .put = rb_put,
    .put_ex = rb_put_ex,
    .del = rb_del,
    .len = rb_len,
    .destroy = rb_destroy,
};

/* ---- creation ---- */

static char *dup_bounded(const char *s, size_t max, size_t *len)
{
    size_t n = strnlen(s, max + 1);
    char *d;

    if (n > max)
        return NULL;
    d = malloc(n + 1);
    if (d != NULL) {
        memcpy(d, s, n);
        d[n] = '\0';
    }
    *len = n;
    return d;
}

/* The pool's waiting room: its waits are timed on CLOCK_MONOTONIC, the
 * deadlines' clock (a wall clock stepped back would stretch a wait past
 * timeout_ms). */
static int wait_init(struct pc__redis *r)
{
    if (pthread_condattr_init(&r->wait_attr) != 0)
        return -1;
    if (pthread_condattr_setclock(&r->wait_attr, CLOCK_MONOTONIC) != 0 ||
        pthread_mutex_init(&r->wait_mu, NULL) != 0) {
        pthread_condattr_destroy(&r->wait_attr);
        return -1;
    }
    r->wait_init = 1;
    return 0;
}

pc_status pc_redis_backend(const pc_redis_options *o, pc_backend *out)
{
    struct pc__redis *r;
    const char *host, *prefix;
    size_t hlen = 0, plen = 0;
    pc_status st;

    if (o == NULL || out == NULL || o->port < 0 || o->port > 65535 ||
        o->connections > PC_REDIS_CONNECTIONS_MAX ||
        o->ttl_ms > PC_REDIS_TTL_MAX ||
        (o->tracking != PC_REDIS_TRACK_KEYS &&
         o->tracking != PC_REDIS_TRACK_BCAST))
        return PC_EINVAL;
    host = o->host != NULL ? o->host : "127.0.0.1";
    prefix = o->key_prefix != NULL ? o->key_prefix : "";
    if (strnlen(host, PC_REDIS_HOST_MAX + 1) > PC_REDIS_HOST_MAX ||
        host[0] == '\0' ||
        strnlen(prefix, PC_REDIS_PREFIX_MAX + 1) > PC_REDIS_PREFIX_MAX)
        return PC_EINVAL;
    if ((r = calloc(1, sizeof *r)) == NULL)
        return PC_ENOMEM;
    r->wake[0] = r->wake[1] = -1;
    r->host = dup_bounded(host, PC_REDIS_HOST_MAX, &hlen);
    r->prefix = dup_bounded(prefix, PC_REDIS_PREFIX_MAX, &plen);
    r->plen = plen;
    r->port = o->port != 0 ? o->port : PC_REDIS_DEFAULT_PORT;
    r->timeout_ms =
        o->timeout_ms != 0 ? o->timeout_ms : PC_REDIS_DEFAULT_TIMEOUT_MS;
    r->nslots =
        o->connections != 0 ? o->connections : PC_REDIS_DEFAULT_CONNECTIONS;
    r->tracking = o->tracking;
    r->ttl_ms = o->ttl_ms;
    /* (Aligned as the type asks, a line each: calloc gives 16 bytes.) */
    r->slots = aligned_alloc(_Alignof(struct pc__redis_slot),
                             r->nslots * sizeof *r->slots);
    if (r->slots != NULL)
        memset(r->slots, 0, r->nslots * sizeof *r->slots);
    if (r->host == NULL || r->prefix == NULL || r->slots == NULL) {
        free(r->slots);
        r->slots = NULL;
        free_backend(r);
        return PC_ENOMEM;
    }
    if (wait_init(r) != 0) {
        free_backend(r);
        return PC_ENOMEM;
    }
    for (unsigned i = 0; i < r->nslots; i++)
        r->slots[i].conn.fd = -1;
    if (o->near_capacity > 0) {
        st = pc__near_create(&r->near, o->near_capacity, r->prefix, r->plen);
        if (st != PC_OK) {
            free_backend(r);
            return st;
        }
        if (pc__redis_subscriber_start(r) != 0) {
            free_backend(r);
            return PC_ENOMEM;
        }
    }
    out->ops = &redis_ops;
    out->self = r;
    return PC_OK;
}

/* ---- extras ---- */

static struct pc__redis *as_redis(const pc_backend *be)
{
    return be != NULL && be->ops == &redis_ops ? be->self : NULL;
}

pc_status pc_redis_stats_get(const pc_backend *be, pc_redis_stats *out)
{
    struct pc__redis *r = as_redis(be);

    if (r == NULL || out == NULL)
        return PC_EINVAL;
    memset(out, 0, sizeof *out);
    out->requests = READ(&r->requests);
    out->errors = READ(&r->errors);
    out->connects = READ(&r->connects);
    if (r->near != NULL) {
        struct pc__near *n = r->near;

        out->near_fills = READ(&n->fills);
        out->fills_dropped = READ(&n->dropped);
        out->invalidations = READ(&n->invalidations);
        out->flushes = READ(&n->flushes);
        out->sessions = READ(&n->sessions);
        out->near_active = pc__near_is_active(n);
    }
    return PC_OK;
}

pc_status pc_redis_near_get(const pc_backend *be, const void *key, size_t klen,
                            void *buf, size_t bufcap, size_t *vlen)
{
    struct pc__redis *r = as_redis(be);

    if (r == NULL || !key_args_ok(key, klen) || (buf == NULL && bufcap > 0))
        return PC_EINVAL;
    if (r->near == NULL)
        return PC_NOTFOUND;
    return pc__near_read(r->near, key, klen, buf, bufcap, vlen);
}

pc_status pc_redis_wait_near(const pc_backend *be, unsigned int timeout_ms)
{
    struct pc__redis *r = as_redis(be);
    uint64_t deadline = pc__redis_now_ns() + (uint64_t)timeout_ms * 1000000u;
    pc_status st = PC_OK;
    int cs;

    if (r == NULL || r->near == NULL)
        return PC_EINVAL;
    pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &cs);
    while (!pc__near_is_active(r->near)) {
        if (pc__redis_now_ns() >= deadline) {
            st = PC_EIO;
            break;
        }
        usleep(1000);
    }
    pthread_setcancelstate(cs, NULL);
    return st;
}
