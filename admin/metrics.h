/*
 * metrics.h - the admin API's Prometheus page (GET /metrics, text format
 * 0.0.4): renders the counters of the journal, the intake, the forwarder
 * and the process into a buffer. The families are listed in tables (name,
 * type, help, getter), one row per family; admin/ADMIN.md lists them.
 *
 * Loop thread only: it reads the intake's and the forwarder's counters,
 * which belong to the loop; the journal's statistics are read before, on
 * the thread pool (admin/readjob.c), and handed in.
 */
#ifndef KADX_ADMIN_METRICS_H
#define KADX_ADMIN_METRICS_H

#include <stdint.h>

struct admin_sources;
struct journal_stats;
struct sbuf;

/* What one page shows; all borrowed for the call. */
struct metrics_sources {
    const struct admin_sources *src; /* intake, forwarder may be NULL */
    const struct journal_stats *st;  /* read on the thread pool */
    int64_t started_ms;              /* wall_ms() when the admin started */
    int paused_all;                  /* POST /pause without a route */
};

/* Appends the whole page to b; on failure b->err is set (-ENOMEM). */
void metrics_render(struct sbuf *b, const struct metrics_sources *ms);

#endif
