/*
 * conn: sockets with deadlines, the RESP protocol through hiredis.
 *
 * Every blocking step (connect, send, receive) waits for at most the time
 * left before the caller's absolute deadline (poll(2), or for a reply's
 * first bytes a blocking recv(2) under an SO_RCVTIMEO no longer than that),
 * so a request never outlives it whatever the server does (stops
 * answering, trickles bytes, vanishes). Writes use send(MSG_NOSIGNAL): a closed
 * peer is an EPIPE error, never a SIGPIPE. Replies are decoded by a hiredis
 * redisReader fed with what recv(2) returned; several replies may arrive in one
 * read (a pipeline, or the subscriber's messages) and are handed out one by
 * one.
 */
#define _GNU_SOURCE
#include "conn.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

uint64_t pc__redis_now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Wait for events on fd until deadline_ns: 1 ready, 0 timed out, -1 error. */
static int wait_fd(int fd, short events, uint64_t deadline_ns)
{
    for (;;) {
        struct pollfd p = {.fd = fd, .events = events};
        uint64_t now = pc__redis_now_ns(), left;
        int ms, rc;

        if (now >= deadline_ns)
            return 0;
        /* Round up: a 0 ms poll would spin until the deadline. At most
         * INT_MAX ms a poll (the loop polls again): a deadline over 24.8
         * days away (timeout_ms is unsigned) would make it negative, a
         * poll that never times out. */
        left = (deadline_ns - now + 999999) / 1000000;
        ms = left > INT_MAX ? INT_MAX : (int)left;
        rc = poll(&p, 1, ms);
        if (rc > 0)
            return 1;
        if (rc < 0 && errno != EINTR)
            return -1;
    }
}

static int connect_addr(const struct addrinfo *ai, uint64_t deadline_ns)
{
    int fd =
        socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
               ai->ai_protocol);
    int one = 1, err = 0;
    socklen_t elen = sizeof err;

    if (fd < 0)
        return -1;
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
        if (errno != EINPROGRESS || wait_fd(fd, POLLOUT, deadline_ns) != 1 ||
            getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen) != 0 ||
            err != 0) {
            close(fd);
            return -1;
        }
    }
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    /* Blocking from now on, for recv_blocking; every other call passes
     * MSG_DONTWAIT. */
    if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

int pc__redis_conn_open(struct pc__redis_conn *c, const char *host, int port,
                        uint64_t deadline_ns)
{
    struct addrinfo hints = {0}, *res = NULL;
    char service[16];
    int fd = -1;

    c->fd = -1;
    c->reader = NULL;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    snprintf(service, sizeof service, "%d", port);
    if (getaddrinfo(host, service, &hints, &res) != 0)
        return -1;
    for (struct addrinfo *ai = res; ai != NULL && fd < 0; ai = ai->ai_next)
        fd = connect_addr(ai, deadline_ns);
    freeaddrinfo(res);
    if (fd < 0)
        return -1;
    c->reader = redisReaderCreate();
    if (c->reader == NULL) {
        close(fd);
        return -1;
    }
    c->fd = fd;
    c->rcvtimeo_ms = 0;
    return 0;
}

void pc__redis_conn_close(struct pc__redis_conn *c)
{
    if (c->fd >= 0)
        close(c->fd);
    if (c->reader != NULL)
        redisReaderFree(c->reader);
    c->fd = -1;
    c->reader = NULL;
}

void pc__redis_cmds_init(struct pc__redis_cmds *q)
{
    q->buf = q->inline_;
    q->len = 0;
    q->cap = sizeof q->inline_;
    q->count = 0;
    q->err = 0;
}

void pc__redis_cmds_free(struct pc__redis_cmds *q)
{
    if (q->buf != q->inline_)
        free(q->buf);
    pc__redis_cmds_init(q);
}

/* Append n encoded bytes holding `count` commands. */
static void cmds_put(struct pc__redis_cmds *q, const char *bytes, size_t n,
                     size_t count)
{
    if (q->err)
        return;
    if (q->len + n > q->cap) {
        size_t cap = (q->len + n) * 2;
        char *nb = malloc(cap);

        if (nb == NULL) {
            q->err = 1;
            return;
        }
        memcpy(nb, q->buf, q->len);
        if (q->buf != q->inline_)
            free(q->buf);
        q->buf = nb;
        q->cap = cap;
    }
    memcpy(q->buf + q->len, bytes, n);
    q->len += n;
    q->count += count;
}

void pc__redis_cmds_add(struct pc__redis_cmds *q, int argc, const char **argv,
                        const size_t *lens)
{
    char *cmd = NULL;
    size_t total = 64;
    int n;

    if (q->err)
        return;
    /* hiredis 0.14 sums a command's length in an int: one near 4 GiB
     * wraps it, and it copies the arguments into a buffer of the wrapped
     * size. The callers refuse such arguments (PC_REDIS_VALUE_MAX); this
     * holds whatever they pass. */
    for (int i = 0; i < argc; i++) {
        total += lens[i] + 32;
        if (lens[i] > INT_MAX / 2 || total > INT_MAX / 2) {
            q->err = 1;
            return;
        }
    }
    n = redisFormatCommandArgv(&cmd, argc, argv, lens);
    if (n < 0 || cmd == NULL) {
        q->err = 1;
        return;
    }
    cmds_put(q, cmd, (size_t)n, 1);
    redisFreeCommand(cmd);
}

void pc__redis_cmds_append(struct pc__redis_cmds *q,
                           const struct pc__redis_cmds *src)
{
    if (src->err)
        q->err = 1;
    else
        cmds_put(q, src->buf, src->len, src->count);
}

int pc__redis_conn_send(struct pc__redis_conn *c,
                        const struct pc__redis_cmds *q, uint64_t deadline_ns)
{
    size_t off = 0;

    if (c->fd < 0 || q->err)
        return -1;
    while (off < q->len) {
        ssize_t n = send(c->fd, q->buf + off, q->len - off,
                         MSG_NOSIGNAL | MSG_DONTWAIT);

        if (n > 0) {
            off += (size_t)n;
        } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (wait_fd(c->fd, POLLOUT, deadline_ns) != 1)
                return -1;
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else {
            return -1;
        }
    }
    return 0;
}

int pc__redis_conn_next(struct pc__redis_conn *c, redisReply **reply)
{
    void *r = NULL;

    *reply = NULL;
    if (c->reader == NULL || redisReaderGetReply(c->reader, &r) != REDIS_OK)
        return -1;
    *reply = r;
    return r != NULL;
}

/* One recv into the reader: 1 got bytes, 0 nothing available, -1 EOF or
 * error. */
static int recv_some(struct pc__redis_conn *c)
{
    char buf[16384];

    for (;;) {
        ssize_t n = recv(c->fd, buf, sizeof buf, MSG_DONTWAIT);

        if (n > 0)
            return redisReaderFeed(c->reader, buf, (size_t)n) == REDIS_OK ? 1
                                                                          : -1;
        if (n == 0)
            return -1;
        if (errno == EINTR)
            continue;
        return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -1;
    }
}

/*
 * Wait for the reply's first bytes inside recv(2) itself, bounded by
 * SO_RCVTIMEO: one system call where poll + recv take two, on every
 * request. The socket timeout is kept at or below the time left (set
 * again only when it is above it, or far below); if it fires before the
 * deadline, the caller goes on with poll. 1 got bytes, 0 nothing yet (use
 * poll), -1 EOF or error.
 */
static int recv_blocking(struct pc__redis_conn *c, uint64_t deadline_ns)
{
    char buf[16384];
    uint64_t now = pc__redis_now_ns();
    long rem_ms;

    if (now >= deadline_ns)
        return 0;
    rem_ms = (long)((deadline_ns - now) / 1000000);
    if (rem_ms < 1)
        return 0;
    if (c->rcvtimeo_ms == 0 || c->rcvtimeo_ms > rem_ms ||
        c->rcvtimeo_ms < rem_ms / 2) {
        struct timeval tv = {rem_ms / 1000, (rem_ms % 1000) * 1000};

        if (setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) != 0)
            return 0;
        c->rcvtimeo_ms = rem_ms;
    }
    for (;;) {
        ssize_t n = recv(c->fd, buf, sizeof buf, 0);

        if (n > 0)
            return redisReaderFeed(c->reader, buf, (size_t)n) == REDIS_OK ? 1
                                                                          : -1;
        if (n == 0)
            return -1;
        if (errno == EINTR)
            return 0; /* the poll path recomputes the time left */
        return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -1;
    }
}

int pc__redis_conn_idle_ok(struct pc__redis_conn *c)
{
    char b;

    if (c->fd < 0)
        return 0;
    for (;;) {
        ssize_t n = recv(c->fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);

        if (n < 0 && errno == EINTR)
            continue;
        return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
    }
}

int pc__redis_conn_pump(struct pc__redis_conn *c)
{
    int rc;

    if (c->fd < 0)
        return -1;
    while ((rc = recv_some(c)) > 0)
        ;
    return rc;
}

int pc__redis_conn_read(struct pc__redis_conn *c, redisReply **reply,
                        uint64_t deadline_ns)
{
    *reply = NULL;
    if (c->fd < 0)
        return -1;
    for (int first = 1;; first = 0) {
        int rc = pc__redis_conn_next(c, reply);

        if (rc != 0)
            return rc > 0 ? 0 : -1;
        if (first) {
            rc = recv_blocking(c, deadline_ns);
            if (rc < 0)
                return -1;
            if (rc > 0)
                continue;
        }
        if (wait_fd(c->fd, POLLIN, deadline_ns) != 1)
            return -1;
        if (recv_some(c) < 0)
            return -1;
    }
}

int pc__redis_conn_call(struct pc__redis_conn *c,
                        const struct pc__redis_cmds *q, redisReply **replies,
                        uint64_t deadline_ns)
{
    size_t i;

    for (i = 0; i < q->count; i++)
        replies[i] = NULL;
    if (pc__redis_conn_send(c, q, deadline_ns) != 0)
        return -1;
    for (i = 0; i < q->count; i++) {
        if (pc__redis_conn_read(c, &replies[i], deadline_ns) != 0) {
            while (i > 0) {
                freeReplyObject(replies[--i]);
                replies[i] = NULL;
            }
            return -1;
        }
    }
    return 0;
}
