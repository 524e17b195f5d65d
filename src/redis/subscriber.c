/*
 * subscriber: the thread that owns the invalidation channel.
 *
 * A session: connect, CLIENT ID, (broadcast mode: CLIENT TRACKING on BCAST
 * PREFIX <key_prefix> REDIRECT <own id>), SUBSCRIBE __redis__:invalidate;
 * once the server confirmed all of it, pc__near_session_start publishes the
 * client id and turns the near tier on. Then the thread waits on the socket
 * and on the backend's wake pipe:
 *   - a message names keys: each is invalidated (near.c); a nil list
 *     (FLUSHALL, FLUSHDB) flushes the near tier;
 *   - after 1 s without traffic it sends PING, and declares the channel lost
 *     if no answer comes within timeout_ms (a server that stopped answering
 *     cannot be told apart from one that lost our connection);
 *   - in per-key mode, every 100 ms it looks at idle pooled connections that
 *     carry tracking: one that became readable while idle was closed by the
 *     server (idle `timeout`, CLIENT KILL); it is dropped, which flushes the
 *     near tier, because the server forgot the keys it tracked.
 * On EOF, error or a missed heartbeat the session ends (pc__near_session_end
 * flushes and bypasses the near tier) and the thread reconnects with
 * exponential backoff, 10 ms doubling to 500 ms. Pooled connections
 * re-enable tracking towards the new client id lazily, before their next
 * fill (backend.c), and the new session's state word voids fills that
 * started under the old one.
 *
 * The thread runs with every signal blocked (it must not receive the host
 * program's signals) and never prints. destroy sets `stopping`, writes the
 * wake pipe and joins it.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "backend.h"

#define HEARTBEAT_NS 1000000000ull
#define SWEEP_NS 100000000ull
#define BACKOFF_MIN_MS 10
#define BACKOFF_MAX_MS 500
#define CHANNEL "__redis__:invalidate"

static int stopping(struct pc__redis *r)
{
    return __atomic_load_n(&r->stopping, __ATOMIC_ACQUIRE);
}

/* Sleep ms unless woken; 1 if the backend is being destroyed. */
static int nap(struct pc__redis *r, int ms)
{
    struct pollfd p = {.fd = r->wake[0], .events = POLLIN};

    if (!stopping(r))
        (void)poll(&p, 1, ms);
    return stopping(r);
}

static redisReply *command(struct pc__redis_conn *c, int argc,
                           const char **argv, uint64_t deadline)
{
    struct pc__redis_cmds q;
    size_t lens[8];
    redisReply *rep = NULL;

    for (int i = 0; i < argc; i++)
        lens[i] = strlen(argv[i]);
    pc__redis_cmds_init(&q);
    pc__redis_cmds_add(&q, argc, argv, lens);
    if (pc__redis_conn_call(c, &q, &rep, deadline) != 0)
        rep = NULL;
    pc__redis_cmds_free(&q);
    return rep;
}

/* Connect and subscribe: 0 with *id set, or -1 (c closed). */
static int session_open(struct pc__redis *r, struct pc__redis_conn *c,
                        uint64_t *id)
{
    uint64_t deadline = pc__redis_now_ns() + (uint64_t)r->timeout_ms * 1000000u;
    const char *cid[2] = {"CLIENT", "ID"};
    const char *sub[2] = {"SUBSCRIBE", CHANNEL};
    redisReply *rep;
    int ok;

    if (pc__redis_conn_open(c, r->host, r->port, deadline) != 0)
        return -1;
    rep = command(c, 2, cid, deadline);
    ok = rep != NULL && rep->type == REDIS_REPLY_INTEGER && rep->integer > 0;
    if (ok)
        *id = (uint64_t)rep->integer;
    if (rep != NULL)
        freeReplyObject(rep);
    if (ok && r->tracking == PC_REDIS_TRACK_BCAST) {
        char ids[24];
        const char *trk[8] = {"CLIENT", "TRACKING", "on", "BCAST"};
        int argc = 4;

        /* No PREFIX for an empty prefix: every key. */
        if (r->plen > 0) {
            trk[argc++] = "PREFIX";
            trk[argc++] = r->prefix;
        }
        snprintf(ids, sizeof ids, "%llu", (unsigned long long)*id);
        trk[argc++] = "REDIRECT";
        trk[argc++] = ids;
        rep = command(c, argc, trk, deadline);
        ok = rep != NULL && rep->type == REDIS_REPLY_STATUS;
        if (rep != NULL)
            freeReplyObject(rep);
    }
    if (ok) {
        rep = command(c, 2, sub, deadline);
        ok = rep != NULL && rep->type == REDIS_REPLY_ARRAY &&
             rep->elements == 3 &&
             rep->element[0]->type == REDIS_REPLY_STRING &&
             strcmp(rep->element[0]->str, "subscribe") == 0;
        if (rep != NULL)
            freeReplyObject(rep);
    }
    if (!ok)
        pc__redis_conn_close(c);
    return ok ? 0 : -1;
}

static void handle(struct pc__redis *r, const redisReply *m)
{
    const redisReply *keys;

    if (m->type != REDIS_REPLY_ARRAY || m->elements != 3 ||
        m->element[0]->type != REDIS_REPLY_STRING ||
        strcmp(m->element[0]->str, "message") != 0)
        return; /* "pong", or a subscription confirmation */
    keys = m->element[2];
    if (keys->type == REDIS_REPLY_ARRAY) {
        for (size_t i = 0; i < keys->elements; i++)
            if (keys->element[i]->type == REDIS_REPLY_STRING)
                pc__near_invalidate_remote(r->near, keys->element[i]->str,
                                           (size_t)keys->element[i]->len);
    } else if (keys->type == REDIS_REPLY_STRING) {
        pc__near_invalidate_remote(r->near, keys->str, (size_t)keys->len);
    } else {
        pc__near_flush(r->near); /* nil: every key is gone */
    }
}

/* Per-key mode: drop idle tracked connections the server has closed. */
static void sweep_idle(struct pc__redis *r)
{
    for (unsigned i = 0; i < r->nslots; i++) {
        struct pc__redis_slot *s = &r->slots[i];

        if (!pc__redis_slot_try(s))
            continue; /* in use: its user will see any error */
        if (pc__redis_conn_is_open(&s->conn) && s->track_state != 0) {
            struct pollfd p = {.fd = s->conn.fd, .events = POLLIN | POLLRDHUP};

            /* Idle, every reply consumed: readable means closed. */
            if (poll(&p, 1, 0) != 0)
                pc__redis_slot_drop(r, s);
        }
        pc__redis_slot_release(r, s);
    }
}

/* How long the loop may sleep: until the next sweep is due (at most its
 * period), so a message that wakes the loop just before a sweep does not
 * put the sweep off by a whole period (a pooled connection the server
 * closed was seen up to ~200 ms late, not within 100: helper-73). */
static int poll_ms(const struct pc__redis *r, uint64_t now, uint64_t last_sweep)
{
    uint64_t due = last_sweep + SWEEP_NS;

    if (r->tracking != PC_REDIS_TRACK_KEYS)
        return (int)(SWEEP_NS / 1000000u);
    if (due <= now)
        return 0;
    return (int)((due - now + 999999u) / 1000000u);
}

/* Serve one session until it is lost or the backend stops. */
static void listen_loop(struct pc__redis *r, struct pc__redis_conn *c)
{
    uint64_t now = pc__redis_now_ns(), last_rx = now, last_sweep = now;
    uint64_t ping_sent = 0, timeout_ns = (uint64_t)r->timeout_ms * 1000000u;
    const char *ping[1] = {"PING"};
    size_t ping_len[1] = {4};
    struct pc__redis_cmds pq;

    pc__redis_cmds_init(&pq);
    pc__redis_cmds_add(&pq, 1, ping, ping_len);
    while (!stopping(r)) {
        struct pollfd p[2] = {{.fd = c->fd, .events = POLLIN},
                              {.fd = r->wake[0], .events = POLLIN}};
        int rc = poll(p, 2, poll_ms(r, pc__redis_now_ns(), last_sweep));

        if (rc < 0 && errno != EINTR)
            break;
        now = pc__redis_now_ns();
        if (rc > 0 && p[0].revents != 0) {
            redisReply *m;
            int alive = pc__redis_conn_pump(c) == 0, got;

            /* Messages that arrived before an EOF still count. */
            while ((got = pc__redis_conn_next(c, &m)) > 0) {
                handle(r, m);
                freeReplyObject(m);
            }
            if (!alive || got < 0)
                break;
            last_rx = now;
            ping_sent = 0;
        }
        if (ping_sent != 0 && now - ping_sent >= timeout_ns) {
            struct pollfd q = {.fd = c->fd, .events = POLLIN};

            /* The answer may have come while this thread waited for a
             * CPU between the poll and the clock read (helper-97): read
             * it before ending a live session (an EOF ends it there). */
            if (poll(&q, 1, 0) > 0)
                continue;
            break; /* no answer to the heartbeat */
        }
        if (ping_sent == 0 && now - last_rx >= HEARTBEAT_NS) {
            if (pc__redis_conn_send(c, &pq, now + timeout_ns) != 0)
                break;
            ping_sent = now;
        }
        if (r->tracking == PC_REDIS_TRACK_KEYS &&
            now - last_sweep >= SWEEP_NS) {
            sweep_idle(r);
            last_sweep = now;
        }
    }
    pc__redis_cmds_free(&pq);
}

static void *subscriber_main(void *arg)
{
    struct pc__redis *r = arg;
    int backoff = BACKOFF_MIN_MS;

    while (!stopping(r)) {
        struct pc__redis_conn c;
        uint64_t id = 0;

        if (session_open(r, &c, &id) == 0) {
            backoff = BACKOFF_MIN_MS;
            pc__near_session_start(r->near, id);
            listen_loop(r, &c);
            pc__near_session_end(r->near);
            pc__redis_conn_close(&c);
        }
        if (nap(r, backoff))
            break;
        backoff = backoff * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : backoff * 2;
    }
    return NULL;
}

int pc__redis_subscriber_start(struct pc__redis *r)
{
    sigset_t all, old;
    int rc;

    if (pipe2(r->wake, O_CLOEXEC | O_NONBLOCK) != 0) {
        r->wake[0] = r->wake[1] = -1;
        return -1;
    }
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    rc = pthread_create(&r->sub_thread, NULL, subscriber_main, r);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        close(r->wake[0]);
        close(r->wake[1]);
        r->wake[0] = r->wake[1] = -1;
        return -1;
    }
    return 0;
}

void pc__redis_subscriber_stop(struct pc__redis *r)
{
    if (r->wake[1] < 0)
        return;
    __atomic_store_n(&r->stopping, 1, __ATOMIC_RELEASE);
    while (write(r->wake[1], "x", 1) < 0 && errno == EINTR)
        ;
    pthread_join(r->sub_thread, NULL);
    close(r->wake[0]);
    close(r->wake[1]);
    r->wake[0] = r->wake[1] = -1;
}
