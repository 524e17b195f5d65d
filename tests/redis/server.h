/*
 * A throwaway redis-server for the Redis suites: started on a free
 * loopback port in a temporary directory, with no persistence, and killed
 * at the end of the test, at exit, on SIGTERM/SIGINT/SIGHUP, and by the
 * kernel if the test process dies any other way (PR_SET_PDEATHSIG in the
 * child: the server dies with the thread that started it, so start it
 * from the test's main thread). Tests can kill it, stop it (SIGSTOP) and
 * restart it on the same port mid-run.
 *
 * If redis-server is not installed the test FAILS, saying so: the test
 * command installs it (scripts/deps.sh).
 */
#ifndef PC_TEST_REDIS_SERVER_H
#define PC_TEST_REDIS_SERVER_H

#include <criterion/criterion.h>
#include <errno.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

struct rs_server {
    pid_t pid; /* 0 when not running */
    int port;
    char dir[64];
};

#define RS_MAX 4
static volatile pid_t rs_pids[RS_MAX]; /* for the signal-safe cleanup */
static struct rs_server *rs_list[RS_MAX];

static inline void rs_kill_all_signal_safe(void)
{
    for (int i = 0; i < RS_MAX; i++)
        if (rs_pids[i] > 0)
            kill(rs_pids[i], SIGKILL);
}

static inline void rs_on_signal(int sig)
{
    rs_kill_all_signal_safe();
    signal(sig, SIG_DFL);
    raise(sig);
}

static inline void rs_remove_dir(struct rs_server *s)
{
    char path[128];

    if (s->dir[0] == '\0')
        return;
    snprintf(path, sizeof path, "%s/redis.log", s->dir);
    unlink(path);
    rmdir(s->dir);
    s->dir[0] = '\0';
}

static inline void rs_atexit(void)
{
    rs_kill_all_signal_safe();
    for (int i = 0; i < RS_MAX; i++) {
        if (rs_list[i] != NULL) {
            if (rs_list[i]->pid > 0)
                waitpid(rs_list[i]->pid, NULL, 0);
            rs_list[i]->pid = 0;
            rs_remove_dir(rs_list[i]);
        }
        rs_pids[i] = 0;
        rs_list[i] = NULL;
    }
}

static inline void rs_register(struct rs_server *s)
{
    static int installed;

    if (!installed) {
        installed = 1;
        atexit(rs_atexit);
        signal(SIGTERM, rs_on_signal);
        signal(SIGINT, rs_on_signal);
        signal(SIGHUP, rs_on_signal);
    }
    for (int i = 0; i < RS_MAX; i++) {
        if (rs_list[i] == s || rs_list[i] == NULL) {
            rs_list[i] = s;
            rs_pids[i] = s->pid;
            return;
        }
    }
}

static inline int rs_free_port(void)
{
    struct sockaddr_in a = {0};
    socklen_t len = sizeof a;
    int fd = socket(AF_INET, SOCK_STREAM, 0), port = 0;

    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    if (fd >= 0)
        close(fd);
    return port;
}

static inline int rs_installed(void)
{
    const char *path = getenv("PATH");
    char buf[4096];

    if (path == NULL)
        path = "/usr/bin:/bin";
    while (*path) {
        size_t n = strcspn(path, ":");

        snprintf(buf, sizeof buf, "%.*s/redis-server", (int)n, path);
        if (access(buf, X_OK) == 0)
            return 1;
        path += n + (path[n] == ':');
    }
    return 0;
}

/* PING until the server answers (1) or it exited / 5 s passed (0). */
static inline int rs_wait_ready(struct rs_server *s)
{
    for (int i = 0; i < 500; i++) {
        struct timeval tv = {1, 0};
        redisContext *c;
        int st;

        if (waitpid(s->pid, &st, WNOHANG) == s->pid) {
            s->pid = 0;
            return 0;
        }
        c = redisConnectWithTimeout("127.0.0.1", s->port, tv);
        if (c != NULL && c->err == 0) {
            redisReply *r = redisCommand(c, "PING");
            int ok = r != NULL && r->type == REDIS_REPLY_STATUS;

            if (r != NULL)
                freeReplyObject(r);
            redisFree(c);
            if (ok)
                return 1;
        } else if (c != NULL) {
            redisFree(c);
        }
        usleep(10000);
    }
    return 0;
}

static inline int rs_spawn(struct rs_server *s)
{
    char port[16], log[128];
    pid_t parent = getpid(), pid;

    snprintf(port, sizeof port, "%d", s->port);
    snprintf(log, sizeof log, "%s/redis.log", s->dir);
    pid = fork();
    if (pid < 0)
        return 0;
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(1);
        if (freopen(log, "a", stdout) == NULL ||
            freopen(log, "a", stderr) == NULL)
            _exit(1);
        execlp("redis-server", "redis-server", "--port", port, "--bind",
               "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", s->dir,
               "--daemonize", "no", (char *)NULL);
        _exit(127);
    }
    s->pid = pid;
    rs_register(s);
    if (rs_wait_ready(s))
        return 1;
    if (s->pid > 0) {
        kill(s->pid, SIGKILL);
        waitpid(s->pid, NULL, 0);
        s->pid = 0;
    }
    rs_register(s);
    return 0;
}

/* Start a server on a free port (fails the test if it cannot). */
static inline void rs_start(struct rs_server *s)
{
    if (!rs_installed())
        cr_assert_fail("redis-server is not installed (apt-get install "
                       "redis-server redis-tools; scripts/deps.sh does it)");
    memset(s, 0, sizeof *s);
    snprintf(s->dir, sizeof s->dir, "/tmp/pc-redis-test-XXXXXX");
    cr_assert_not_null(mkdtemp(s->dir), "mkdtemp: %s", strerror(errno));
    for (int attempt = 0; attempt < 5; attempt++) {
        s->port = rs_free_port();
        if (s->port > 0 && rs_spawn(s))
            return;
    }
    cr_assert_fail("could not start redis-server (see %s/redis.log)", s->dir);
}

/* SIGKILL the server (no clean shutdown, like a crash). */
static inline void rs_kill(struct rs_server *s)
{
    if (s->pid > 0) {
        kill(s->pid, SIGKILL);
        waitpid(s->pid, NULL, 0);
        s->pid = 0;
        rs_register(s);
    }
}

/* Start it again on the same port, empty (no persistence). */
static inline void rs_restart(struct rs_server *s)
{
    rs_kill(s);
    for (int attempt = 0; attempt < 50; attempt++) {
        if (rs_spawn(s))
            return;
        usleep(100000); /* the port may linger briefly */
    }
    cr_assert_fail("could not restart redis-server on port %d", s->port);
}

static inline void rs_stop(struct rs_server *s)
{
    rs_kill(s);
    rs_remove_dir(s);
}

/* An external client: a plain hiredis connection. */
static inline redisContext *rs_client(const struct rs_server *s)
{
    struct timeval tv = {2, 0};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", s->port, tv);

    cr_assert(c != NULL && c->err == 0, "external client cannot connect");
    redisSetTimeout(c, tv);
    return c;
}

/* Run redis-cli -p PORT args... (an external client process); exit code. */
static inline int rs_cli(const struct rs_server *s, const char *const *args)
{
    char port[16];
    const char *argv[16] = {"redis-cli", "-p", port};
    int n = 3, st = 0;
    pid_t pid;

    snprintf(port, sizeof port, "%d", s->port);
    while (*args != NULL && n < 15)
        argv[n++] = *args++;
    argv[n] = NULL;
    pid = fork();
    if (pid == 0) {
        if (freopen("/dev/null", "w", stdout) == NULL)
            _exit(126);
        execvp("redis-cli", (char *const *)argv);
        _exit(127);
    }
    if (pid < 0 || waitpid(pid, &st, 0) != pid)
        return -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

#endif
