/*
 * A throwaway redis-server for the Redis suites: started on a free
 * loopback port in a temporary directory, with no persistence, and killed
 * at the end of the test, at exit, on SIGTERM/SIGINT/SIGHUP, and by the
 * kernel if the test process dies any other way (PR_SET_PDEATHSIG in the
 * child: the server dies with the thread that started it, so start it
 * from the test's main thread). Tests can kill it, stop it (SIGSTOP) and
 * restart it on the same port mid-run.
 *
 * Ports. The suites run in parallel (ctest -j), each test in its own
 * process, and a test that kills its server expects nothing to answer on
 * that port until it restarts it. A port taken by binding port 0 and
 * closing it again is free to the next bind(0) or connect() of any
 * process, so another suite's server could take it while ours is down
 * (it did: a get after the kill hit another test's server). So a server
 * takes its port from below the kernel's ephemeral range (which bind(0)
 * and connect() never hand out) and holds it, from rs_start to rs_stop,
 * across kills and restarts, by binding the abstract Unix socket
 * "pc-redis-port-<port>": one holder per port across processes, released
 * by the kernel when the holder closes it or dies, no file left behind.
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
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

struct rs_server {
    pid_t pid; /* 0 when not running */
    int port;
    int hold; /* the port's abstract-socket claim, -1 when none */
    char dir[64];
};

#define RS_MAX 4
/* What the cleanup at exit needs, copied: a failed assertion leaves the
 * test's function, and with it the struct rs_server on its stack, before
 * exit runs (their dirs were left behind). rs_list only names the slot. */
static volatile pid_t rs_pids[RS_MAX]; /* for the signal-safe cleanup */
static const struct rs_server *rs_list[RS_MAX];
static char rs_dirs[RS_MAX][64];

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

static inline void rs_rmdir(char dir[64])
{
    char path[128];

    if (dir[0] == '\0')
        return;
    if (snprintf(path, sizeof path, "%.63s/redis.log", dir) < (int)sizeof path)
        unlink(path);
    rmdir(dir);
    dir[0] = '\0';
}

static inline void rs_remove_dir(struct rs_server *s)
{
    for (int i = 0; i < RS_MAX; i++) {
        if (rs_list[i] == s) { /* stopped: its slot is free again */
            rs_dirs[i][0] = '\0';
            rs_pids[i] = 0;
            rs_list[i] = NULL;
        }
    }
    rs_rmdir(s->dir);
}

static inline void rs_atexit(void)
{
    rs_kill_all_signal_safe();
    for (int i = 0; i < RS_MAX; i++) {
        if (rs_pids[i] > 0)
            waitpid(rs_pids[i], NULL, 0);
        rs_rmdir(rs_dirs[i]);
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
            snprintf(rs_dirs[i], sizeof rs_dirs[i], "%s", s->dir);
            return;
        }
    }
}

/* The lowest port the kernel hands out for bind(0) and connect(). */
static inline int rs_ephemeral_low(void)
{
    FILE *f = fopen("/proc/sys/net/ipv4/ip_local_port_range", "r");
    int low = 32768;

    if (f != NULL) {
        if (fscanf(f, "%d", &low) != 1)
            low = 32768;
        fclose(f);
    }
    return low;
}

/* Claim PORT for this process (the abstract socket; see the top): the
 * claim's descriptor, or -1 if another process holds it. */
static inline int rs_claim(int port)
{
    struct sockaddr_un u = {0};
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int n = snprintf(u.sun_path + 1, sizeof u.sun_path - 1, "pc-redis-port-%d",
                     port);
    socklen_t len =
        (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)n);

    u.sun_family = AF_UNIX; /* sun_path[0] == 0: the abstract namespace */
    if (fd >= 0 && bind(fd, (struct sockaddr *)&u, len) == 0)
        return fd;
    if (fd >= 0)
        close(fd);
    return -1;
}

/* Whether a listener could bind PORT now (as redis-server does, with
 * SO_REUSEADDR, so a closed connection's TIME_WAIT does not count). */
static inline int rs_bindable(int port)
{
    struct sockaddr_in a = {0};
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1, ok;

    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons((uint16_t)port);
    if (fd < 0)
        return 0;
    (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    ok = bind(fd, (struct sockaddr *)&a, sizeof a) == 0;
    close(fd);
    return ok;
}

/* Claim a free port below the ephemeral range, from a random start: its
 * number, with the claim in s->hold, or 0 if none is free. */
static inline int rs_take_port(struct rs_server *s)
{
    int high = rs_ephemeral_low(),
        low = high > 12288 + 1024 ? high - 12288 : 1024;
    int span = high - low;
    unsigned start = (unsigned)getpid() * 2654435761u ^ (unsigned)time(NULL);

    if (span <= 0)
        return 0;
    for (int i = 0; i < span; i++) {
        int port = low + (int)((start + (unsigned)i) % (unsigned)span);
        int fd = rs_claim(port);

        if (fd < 0)
            continue;
        if (rs_bindable(port)) {
            s->hold = fd;
            return port;
        }
        close(fd);
    }
    return 0;
}

static inline void rs_release_port(struct rs_server *s)
{
    if (s->hold >= 0)
        close(s->hold);
    s->hold = -1;
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

/* Start a server on a free port, which it holds until rs_stop (fails the
 * test if it cannot). */
static inline void rs_start(struct rs_server *s)
{
    if (!rs_installed())
        cr_assert_fail("redis-server is not installed (apt-get install "
                       "redis-server redis-tools; scripts/deps.sh does it)");
    memset(s, 0, sizeof *s);
    s->hold = -1;
    snprintf(s->dir, sizeof s->dir, "/tmp/pc-redis-test-XXXXXX");
    cr_assert_not_null(mkdtemp(s->dir), "mkdtemp: %s", strerror(errno));
    for (int attempt = 0; attempt < 5; attempt++) {
        s->port = rs_take_port(s);
        if (s->port > 0 && rs_spawn(s))
            return;
        rs_release_port(s);
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

/* Kill the server, give up its port and remove its directory. */
static inline void rs_stop(struct rs_server *s)
{
    rs_kill(s);
    rs_release_port(s);
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
