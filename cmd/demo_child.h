/*
 * demo_child.h - the child processes of `kadx demo` (demo_child.c): start,
 * read the ready line, notice the exit, stop. Single-threaded.
 */
#ifndef KADX_DEMO_CHILD_H
#define KADX_DEMO_CHILD_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct demo_child {
    const char *name;
    pid_t pid; /* 0 = not running */
    int in_fd; /* write end of its stdin, -1 = none */
    char log[320];
};

/* CLOCK_MONOTONIC in ns: the clock of every deadline here. */
int64_t demo_child_mono_ns(void);

/*
 * Starts exe with argv (argv[0] is the kadx subcommand; borrowed) in its own
 * process group, stderr appended to c->log. With want_stdin the child's
 * stdin is a pipe kept in c->in_fd (closing it tells kafka-mock to quit);
 * with out_fd its stdout is a pipe whose read end is returned there (owned
 * by the caller), else stdout goes to the log too. Returns 0 or -errno with
 * err filled.
 */
int demo_child_start(const char *exe, struct demo_child *c, char *const argv[],
                     int want_stdin, int *out_fd, char *err, size_t errlen);

/*
 * Reads lines from fd until one starts with prefix; copies the rest of that
 * line into out. Gives up at the deadline, on EOF, or once *interrupted is
 * set (Ctrl-C). Returns 0, -ETIMEDOUT, -EPIPE (child gone) or -EINTR.
 */
int demo_child_read_line(int fd, const char *prefix, int64_t timeout_ms,
                         const volatile sig_atomic_t *interrupted, char *out,
                         size_t outlen);

/* True while the child runs; reaps it (and says so) when it has exited. */
int demo_child_alive(struct demo_child *c);

/* SIGTERM (and stdin closed), wait up to grace_ms, then SIGKILL. */
void demo_child_stop(struct demo_child *c, int64_t grace_ms);

/* Prints the last lines of a child's log to stderr. */
void demo_child_log_tail(const struct demo_child *c, int lines);

#endif
