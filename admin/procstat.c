/*
 * procstat.c - process metrics from /proc/self (procstat.h): stat fields
 * 14/15 (utime, stime in clock ticks), 22 (start time in ticks after boot),
 * 23 (vsize) and 24 (rss in pages), proc(5); the fd count from
 * /proc/self/fd; boot time from /proc/stat's btime.
 */
#include "admin/procstat.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

static int64_t boot_time(void)
{
    char line[256];
    FILE *f = fopen("/proc/stat", "r");
    long long bt = 0;

    if (f == NULL) {
        return 0;
    }
    while (fgets(line, sizeof(line), f) != NULL) {
        if (sscanf(line, "btime %lld", &bt) == 1) {
            break;
        }
    }
    fclose(f);
    return bt;
}

int procstat_read(struct procstat *ps)
{
    char buf[2048];
    unsigned long long utime, stime, start, vsize;
    long long rss;
    long tick = sysconf(_SC_CLK_TCK);
    long page = sysconf(_SC_PAGESIZE);
    struct rlimit rl;
    const char *p;
    size_t n;
    FILE *f;
    DIR *d;

    memset(ps, 0, sizeof(*ps));
    f = fopen("/proc/self/stat", "r");
    if (f == NULL) {
        return -errno;
    }
    n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    /* the command name (field 2) may hold spaces: start after its ')' */
    p = strrchr(buf, ')');
    if (p == NULL || tick <= 0 || page <= 0 ||
        sscanf(p + 2,
               "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu "
               "%*d %*d %*d %*d %*d %*d %llu %llu %lld",
               &utime, &stime, &start, &vsize, &rss) != 5) {
        return -EBADMSG;
    }
    ps->cpu_seconds = (double)(utime + stime) / (double)tick;
    ps->vsize_bytes = (int64_t)vsize;
    ps->rss_bytes = (int64_t)rss * page;
    ps->start_time_seconds = (double)boot_time() + (double)start / (double)tick;
    d = opendir("/proc/self/fd");
    if (d != NULL) {
        struct dirent *e;

        while ((e = readdir(d)) != NULL) {
            if (e->d_name[0] != '.') {
                ps->open_fds++;
            }
        }
        closedir(d);
        ps->open_fds--; /* the directory stream's own fd */
    }
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        ps->max_fds = rl.rlim_cur == RLIM_INFINITY ? -1 : (int64_t)rl.rlim_cur;
    }
    return 0;
}
