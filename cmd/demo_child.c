/*
 * demo_child.c - the child processes of `kadx demo` (kafka-mock, the ADX
 * emulator, `kadx run`): started from this same binary in their own process
 * group with PR_SET_PDEATHSIG (they die with the demo), their ready line read
 * from a pipe with a deadline, their exit noticed, and their stop (SIGTERM,
 * then SIGKILL after a grace period). Single-threaded: the demo's thread.
 */
#include "cmd/demo_child.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define LINE_MAX_BYTES 1024

int64_t demo_child_mono_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/*
 * Starts argv (argv[0] is the kadx subcommand) as a child of /proc/self/exe
 * in its own process group, stderr appended to c->log. With want_stdin the
 * child's stdin is a pipe kept in c->in_fd (closing it tells kafka-mock to
 * quit); with out_fd its stdout is a pipe whose read end is returned there,
 * else stdout goes to the log too. Returns 0 or -errno with err filled.
 */
int demo_child_start(const char *exe, struct demo_child *c, char *const argv[],
                     int want_stdin, int *out_fd, char *err, size_t errlen)
{
    int in_pipe[2] = {-1, -1};
    int out_pipe[2] = {-1, -1};
    char *args[32];
    size_t n = 0;
    pid_t parent = getpid();
    sigset_t all;
    sigset_t old;
    int logfd;
    pid_t pid;

    assert(exe != NULL);
    assert(c != NULL);
    assert(argv != NULL);
    assert(err != NULL);

    args[n++] = (char *)exe;
    for (size_t i = 0; argv[i] != NULL && n < 31; i++) {
        args[n++] = argv[i];
    }
    args[n] = NULL;
    logfd = open(c->log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (logfd < 0) {
        snprintf(err, errlen, "cannot open '%.300s': %s", c->log,
                 strerror(errno));
        return -errno;
    }
    if ((want_stdin && pipe2(in_pipe, O_CLOEXEC) < 0) ||
        (out_fd != NULL && pipe2(out_pipe, O_CLOEXEC) < 0)) {
        int e = errno;
        snprintf(err, errlen, "pipe: %s", strerror(e));
        close(logfd);
        if (in_pipe[0] >= 0) {
            close(in_pipe[0]);
            close(in_pipe[1]);
        }
        return -e;
    }
    fflush(NULL);
    /* Every signal blocked across fork: the child must not run the demo's
     * SIGTERM handler (inherited until it resets it), which would swallow
     * the parent-death signal of a demo killed in that window and leave a
     * `kadx run` with parent 1 (issue 12; reproduced with strace delaying
     * the child's setpgid). */
    sigfillset(&all);
    sigprocmask(SIG_BLOCK, &all, &old);
    pid = fork();
    if (pid < 0) {
        int e = errno;
        sigprocmask(SIG_SETMASK, &old, NULL);
        snprintf(err, errlen, "fork: %s", strerror(e));
        close(logfd);
        return -e;
    }
    if (pid == 0) {
        /* the child: default dispositions first, then die with the demo
         * (a SIGTERM pending from here on kills it once unblocked), keep
         * out of the terminal's ^C */
        signal(SIGINT, SIG_DFL);
        signal(SIGTERM, SIG_DFL);
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        if (getppid() != parent) {
            _exit(127);
        }
        setpgid(0, 0);
        sigprocmask(SIG_SETMASK, &old, NULL);
        if (want_stdin) {
            dup2(in_pipe[0], STDIN_FILENO);
        } else {
            int nul = open("/dev/null", O_RDONLY);
            if (nul >= 0) {
                dup2(nul, STDIN_FILENO);
            }
        }
        dup2(out_fd != NULL ? out_pipe[1] : logfd, STDOUT_FILENO);
        dup2(logfd, STDERR_FILENO);
        execv(exe, args);
        {
            /* only async-signal-safe calls between fork and exec */
            static const char msg[] = "kadx demo: cannot exec the kadx "
                                      "binary\n";
            ssize_t w = write(logfd, msg, sizeof(msg) - 1);
            (void)w;
        }
        _exit(127);
    }
    sigprocmask(SIG_SETMASK, &old, NULL);
    close(logfd);
    c->pid = pid;
    if (want_stdin) {
        close(in_pipe[0]);
        c->in_fd = in_pipe[1];
    }
    if (out_fd != NULL) {
        close(out_pipe[1]);
        *out_fd = out_pipe[0];
    }
    return 0;
}

/*
 * Reads lines from fd until one starts with prefix; copies the rest of that
 * line into out. Gives up at the deadline, on EOF, or on Ctrl-C. Returns 0,
 * -ETIMEDOUT, -EPIPE (child gone) or -EINTR.
 */
int demo_child_read_line(int fd, const char *prefix, int64_t timeout_ms,
                         const volatile sig_atomic_t *interrupted, char *out,
                         size_t outlen)
{
    int64_t deadline = demo_child_mono_ns() + timeout_ms * 1000000;
    char buf[LINE_MAX_BYTES];
    size_t len = 0;

    assert(prefix != NULL);
    assert(interrupted != NULL);
    assert(out != NULL);

    for (;;) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        int64_t left = (deadline - demo_child_mono_ns()) / 1000000;
        char *nl;
        ssize_t r;

        if (*interrupted) {
            return -EINTR;
        }
        if (left <= 0) {
            return -ETIMEDOUT;
        }
        if (poll(&pfd, 1, (int)(left > 200 ? 200 : left)) <= 0) {
            continue;
        }
        r = read(fd, buf + len, sizeof(buf) - 1 - len);
        if (r <= 0) {
            return -EPIPE;
        }
        len += (size_t)r;
        buf[len] = '\0';
        for (nl = strchr(buf, '\n'); nl != NULL; nl = strchr(buf, '\n')) {
            *nl = '\0';
            if (strncmp(buf, prefix, strlen(prefix)) == 0) {
                snprintf(out, outlen, "%s", buf + strlen(prefix));
                return 0;
            }
            len -= (size_t)(nl + 1 - buf);
            memmove(buf, nl + 1, len + 1);
        }
        if (len == sizeof(buf) - 1) {
            len = 0; /* an over-long line without the prefix: drop it */
        }
    }
}

/* True while the child runs; reaps it (and says so) when it has exited. */
int demo_child_alive(struct demo_child *c)
{
    int status;

    assert(c != NULL);

    if (c->pid <= 0) {
        return 0;
    }
    if (waitpid(c->pid, &status, WNOHANG) == c->pid) {
        if (WIFSIGNALED(status)) {
            fprintf(stderr, "kadx demo: %s died of signal %d\n", c->name,
                    WTERMSIG(status));
        } else {
            fprintf(stderr, "kadx demo: %s exited with status %d\n", c->name,
                    WEXITSTATUS(status));
        }
        c->pid = 0;
        return 0;
    }
    return 1;
}

/* SIGTERM (and stdin closed), wait up to grace_ms, then SIGKILL. */
void demo_child_stop(struct demo_child *c, int64_t grace_ms)
{
    int64_t deadline = demo_child_mono_ns() + grace_ms * 1000000;
    int status;

    assert(c != NULL);

    if (c->in_fd >= 0) {
        close(c->in_fd);
        c->in_fd = -1;
    }
    if (c->pid <= 0) {
        return;
    }
    kill(c->pid, SIGTERM);
    for (;;) {
        pid_t r = waitpid(c->pid, &status, WNOHANG);
        struct timespec ts = {0, 20 * 1000000};

        if (r == c->pid || (r < 0 && errno != EINTR)) {
            break;
        }
        if (demo_child_mono_ns() >= deadline) {
            fprintf(stderr,
                    "kadx demo: %s did not stop within %" PRId64
                    " ms: killing it\n",
                    c->name, grace_ms);
            kill(c->pid, SIGKILL);
            waitpid(c->pid, &status, 0);
            break;
        }
        nanosleep(&ts, NULL); /* polling the child's exit, with a deadline */
    }
    c->pid = 0;
}

/* Prints the last lines of a child's log to stderr. */
void demo_child_log_tail(const struct demo_child *c, int lines)
{
    char buf[8192];
    ssize_t n;
    int fd = open(c->log, O_RDONLY | O_CLOEXEC);
    off_t size;
    const char *p;
    int seen = 0;

    assert(c != NULL);

    if (fd < 0) {
        return;
    }
    size = lseek(fd, 0, SEEK_END);
    if (size > (off_t)sizeof(buf) - 1) {
        lseek(fd, size - (off_t)sizeof(buf) + 1, SEEK_SET);
    } else {
        lseek(fd, 0, SEEK_SET);
    }
    n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0) {
        return;
    }
    buf[n] = '\0';
    p = buf + n;
    while (p > buf && seen <= lines) {
        p--;
        if (*p == '\n') {
            seen++;
        }
    }
    fprintf(stderr, "---- last lines of %s (%s) ----\n%s", c->name, c->log,
            p == buf ? p : p + 1);
}
