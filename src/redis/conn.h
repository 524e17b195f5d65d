/*
 * conn: one connection to a Redis server, with a deadline on every step.
 *
 * hiredis 0.14's blocking context bounds each read(2) by SO_RCVTIMEO, not a
 * request as a whole, and it writes with write(2), which raises SIGPIPE on
 * a connection the server has closed: a library may not kill its host
 * process for that. So the socket is ours (TCP_NODELAY,
 * send(MSG_NOSIGNAL), every wait bounded by an absolute CLOCK_MONOTONIC
 * deadline) and hiredis does the protocol: redisFormatCommandArgv encodes
 * commands, a redisReader decodes replies.
 *
 * A conn is used by one thread at a time (the pool slot's busy flag, or the
 * subscriber thread that owns it). After any error it must be closed.
 */
#ifndef PC_REDIS_CONN_H
#define PC_REDIS_CONN_H

#include <hiredis/hiredis.h>
#include <stddef.h>
#include <stdint.h>

struct pc__redis_conn {
    int fd;              /* -1 when closed */
    redisReader *reader; /* NULL when closed */
    long rcvtimeo_ms;    /* the socket's SO_RCVTIMEO; 0 = not set */
};

/* A growable buffer of encoded commands (a pipeline). */
struct pc__redis_cmds {
    char *buf;
    size_t len, cap;
    size_t count; /* commands appended */
    int err;      /* sticky: an append failed (ENOMEM) */
    char inline_[512];
};

uint64_t pc__redis_now_ns(void);

/* Connect to host:port before deadline_ns. 0 on success, -1 on failure
 * (c stays closed). */
int pc__redis_conn_open(struct pc__redis_conn *c, const char *host, int port,
                        uint64_t deadline_ns);
void pc__redis_conn_close(struct pc__redis_conn *c);
static inline int pc__redis_conn_is_open(const struct pc__redis_conn *c)
{
    return c->fd >= 0;
}

void pc__redis_cmds_init(struct pc__redis_cmds *q);
void pc__redis_cmds_free(struct pc__redis_cmds *q);
/* Append one command; argv[i] is binary safe (lens[i] bytes). */
void pc__redis_cmds_add(struct pc__redis_cmds *q, int argc, const char **argv,
                        const size_t *lens);

/* Append src's commands to q. */
void pc__redis_cmds_append(struct pc__redis_cmds *q,
                           const struct pc__redis_cmds *src);

/* Send all of q before deadline_ns. 0 or -1 (I/O error or timeout). */
int pc__redis_conn_send(struct pc__redis_conn *c,
                        const struct pc__redis_cmds *q, uint64_t deadline_ns);
/* Read the next reply, waiting until deadline_ns. 0 with *reply set (free
 * it with freeReplyObject), or -1 (EOF, I/O or protocol error, timeout). */
int pc__redis_conn_read(struct pc__redis_conn *c, redisReply **reply,
                        uint64_t deadline_ns);
/* Whether an idle connection can take a request: 1 if the server has
 * neither closed it nor sent anything unasked (a peek, no wait), else 0
 * (then close it). One system call. */
int pc__redis_conn_idle_ok(struct pc__redis_conn *c);
/* Read whatever the socket holds now, without waiting: 0 on success
 * (possibly nothing), -1 on EOF or error. */
int pc__redis_conn_pump(struct pc__redis_conn *c);
/* A reply already received, without I/O: 1 (set *reply), 0 (none yet), -1
 * (protocol error). */
int pc__redis_conn_next(struct pc__redis_conn *c, redisReply **reply);

/* Send q and read q->count replies into replies[] (all NULL on failure).
 * 0 or -1. */
int pc__redis_conn_call(struct pc__redis_conn *c,
                        const struct pc__redis_cmds *q, redisReply **replies,
                        uint64_t deadline_ns);

#endif
