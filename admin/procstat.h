/*
 * procstat.h - the process's own resource figures for /metrics (the
 * Prometheus client libraries' standard process_* metrics), read from
 * /proc/self. Any thread; no state.
 */
#ifndef KADX_ADMIN_PROCSTAT_H
#define KADX_ADMIN_PROCSTAT_H

#include <stdint.h>

struct procstat {
    double cpu_seconds;        /* user + system CPU time */
    int64_t rss_bytes;         /* resident set size */
    int64_t vsize_bytes;       /* virtual memory size */
    int64_t open_fds;          /* entries in /proc/self/fd */
    int64_t max_fds;           /* RLIMIT_NOFILE soft limit */
    double start_time_seconds; /* since the epoch */
};

/* Fills *ps. Returns 0, or -errno when /proc/self cannot be read. */
int procstat_read(struct procstat *ps);

#endif
