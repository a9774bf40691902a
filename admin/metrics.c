/*
 * metrics.c - the Prometheus page (metrics.h): one table per source (the
 * forwarder's per-route counters, the intake's counters), the journal's
 * statistics by route, partition and state, the disk under the journal,
 * and the standard process_* families. Loop thread only; owns nothing
 * beyond the call.
 */
#include "admin/metrics.h"
#include "admin/api.h"
#include "admin/procstat.h"
#include "base/clock.h"
#include "base/sbuf.h"

#include "gateway/config.h"
#include "gateway/forwarder.h"
#include "gateway/intake.h"
#include "gateway/phases.h"
#include "kadx_version.h"
#include "storage/journal.h"

#include <errno.h>
#include <inttypes.h>
#include <librdkafka/rdkafka.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

/* A label value, escaped per the exposition format (\\, \", \n). */
static void sb_label(struct sbuf *b, const char *s)
{
    for (; *s != '\0'; s++) {
        if (*s == '\\') {
            sbuf_printf(b, "\\\\");
        } else if (*s == '"') {
            sbuf_printf(b, "\\\"");
        } else if (*s == '\n') {
            sbuf_printf(b, "\\n");
        } else {
            sbuf_printf(b, "%c", *s);
        }
    }
}

static void sb_family(struct sbuf *b, const char *name, const char *type,
                      const char *help)
{
    sbuf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* A family with one unlabelled sample. */
static void sb_scalar(struct sbuf *b, const char *name, const char *type,
                      const char *help, int64_t v)
{
    sb_family(b, name, type, help);
    sbuf_printf(b, "%s %" PRId64 "\n", name, v);
}

/* name{route="R"} v */
static void sb_route_sample(struct sbuf *b, const char *name, const char *route,
                            const char *extra, double v)
{
    sbuf_printf(b, "%s{route=\"", name);
    sb_label(b, route);
    sbuf_printf(b, "\"%s} %.17g\n", extra ? extra : "", v);
}

static void sb_part_sample(struct sbuf *b, const char *name, const char *topic,
                           int32_t partition, double v)
{
    sbuf_printf(b, "%s{topic=\"", name);
    sb_label(b, topic);
    sbuf_printf(b, "\",partition=\"%" PRId32 "\"} %.17g\n", partition, v);
}

/* Per-route forwarder counters: one family, one sample per route. */
typedef double (*rs_get_fn)(const struct forwarder_route_stats *rs);

#define RS_GETTER(field)                                                       \
    static double rs_##field(const struct forwarder_route_stats *rs)           \
    {                                                                          \
        return (double)rs->field;                                              \
    }
RS_GETTER(events_delivered)
RS_GETTER(batches_delivered)
RS_GETTER(bytes_delivered)
RS_GETTER(bytes_sent)
RS_GETTER(requests)
RS_GETTER(dead_events)
RS_GETTER(possible_duplicates)
RS_GETTER(dedupe_queries)
RS_GETTER(splits)
RS_GETTER(permanent)
RS_GETTER(config_errors)
RS_GETTER(inflight)

static double rs_paused(const struct forwarder_route_stats *rs)
{
    return rs->state != FORWARDER_RUNNING;
}

static const struct {
    const char *name;
    const char *type;
    const char *help;
    rs_get_fn get;
} route_metrics[] = {
    {"kadx_delivered_events_total", "counter",
     "Events delivered to ADX (HTTP 200), replays included.",
     rs_events_delivered},
    {"kadx_delivered_batches_total", "counter",
     "Batches delivered to ADX (HTTP 200).", rs_batches_delivered},
    {"kadx_delivered_bytes_total", "counter",
     "Record bytes delivered (uncompressed request bodies).",
     rs_bytes_delivered},
    {"kadx_sent_bytes_total", "counter",
     "Compressed request bytes sent to ADX, all attempts.", rs_bytes_sent},
    {"kadx_ingest_requests_total", "counter", "Streaming ingest requests made.",
     rs_requests},
    {"kadx_dead_events_total", "counter",
     "Events moved to the dead-letter set (INV-6).", rs_dead_events},
    {"kadx_possible_duplicates_total", "counter",
     "Batches resent after an ambiguous outcome without a dedupe column.",
     rs_possible_duplicates},
    {"kadx_dedupe_queries_total", "counter",
     "Queries asking ADX whether an ambiguous batch arrived.",
     rs_dedupe_queries},
    {"kadx_batch_splits_total", "counter",
     "Bisections of batches ADX refused permanently.", rs_splits},
    {"kadx_permanent_errors_total", "counter",
     "Permanent (non-retryable) answers from ADX.", rs_permanent},
    {"kadx_config_errors_total", "counter",
     "Configuration errors from ADX (table, mapping, permission).",
     rs_config_errors},
    {"kadx_inflight_batches", "gauge", "Batches this process holds in flight.",
     rs_inflight},
    {"kadx_route_paused", "gauge",
     "1 while the route is paused (operator, configuration error, retries).",
     rs_paused},
};

/* The intake's counters: one family, one sample each. */
typedef int64_t (*ic_get_fn)(const struct intake_counters *c);

#define IC_GETTER(field)                                                       \
    static int64_t ic_##field(const struct intake_counters *c)                 \
    {                                                                          \
        return (int64_t)c->field;                                              \
    }
IC_GETTER(journaled)
IC_GETTER(duplicates)
IC_GETTER(tombstones)
IC_GETTER(commits)
IC_GETTER(commit_errors)
IC_GETTER(rebalances)
IC_GETTER(rewinds)
IC_GETTER(rewound)
IC_GETTER(epochs)
IC_GETTER(gaps)

static int64_t ic_paused(const struct intake_counters *c)
{
    return c->paused ? 1 : 0;
}

static const struct {
    const char *name;
    const char *type;
    const char *help;
    ic_get_fn get;
} intake_metrics[] = {
    {"kadx_journaled_events_total", "counter",
     "Events newly stored in the journal by this process.", ic_journaled},
    {"kadx_duplicate_events_total", "counter",
     "Kafka redeliveries the journal ignored (INV-2).", ic_duplicates},
    {"kadx_tombstones_total", "counter", "Null-value messages skipped.",
     ic_tombstones},
    {"kadx_commits_total", "counter", "Offset commits Kafka acknowledged.",
     ic_commits},
    {"kadx_commit_errors_total", "counter",
     "Partition offset commits that failed.", ic_commit_errors},
    {"kadx_rebalances_total", "counter",
     "Consumer group assign, revoke and lost callbacks.", ic_rebalances},
    {"kadx_intake_paused", "gauge",
     "1 while intake is paused (backpressure or operator).", ic_paused},
    {"kadx_offset_rewinds_total", "counter",
     "Partitions found gone backwards (recreated, rebuilt).", ic_rewinds},
    {"kadx_partitions_rewound", "gauge",
     "Partitions paused until an operator starts a new epoch.", ic_rewound},
    {"kadx_offset_epochs_total", "counter", "New offset epochs started.",
     ic_epochs},
    {"kadx_offset_gaps_total", "counter",
     "Retention gaps: offsets deleted before kadx read them.", ic_gaps},
};

/* The batch latency histogram: cumulative buckets per route. */
static void metrics_latency(struct sbuf *b, const struct config *cfg,
                            const struct forwarder_route_stats *rs)
{
    static const char name[] = "kadx_batch_latency_seconds";

    sb_family(b, name, "histogram",
              "Seconds from a batch's cut to ADX's acknowledgement, retries "
              "included.");
    for (size_t r = 0; r < cfg->nroutes; r++) {
        uint64_t cum = 0;

        for (size_t i = 0; i <= FORWARDER_LATENCY_BUCKETS; i++) {
            cum += rs[r].latency_hist[i];
            sbuf_printf(b, "%s_bucket{route=\"", name);
            sb_label(b, cfg->routes[r].name);
            if (i < FORWARDER_LATENCY_BUCKETS) {
                sbuf_printf(b, "\",le=\"%g\"} %" PRIu64 "\n",
                            forwarder_latency_bounds[i], cum);
            } else {
                sbuf_printf(b, "\",le=\"+Inf\"} %" PRIu64 "\n", cum);
            }
        }
        sb_route_sample(b, "kadx_batch_latency_seconds_sum",
                        cfg->routes[r].name, NULL, rs[r].latency_sum_s);
        sb_route_sample(b, "kadx_batch_latency_seconds_count",
                        cfg->routes[r].name, NULL, (double)rs[r].latency_count);
    }
}

/* Queued ingestion per route (gateway/QUEUED.md): the mode as a label. */
static void metrics_queued(struct sbuf *b, const struct config *cfg,
                           const struct forwarder_route_stats *rs)
{
    sb_family(b, "kadx_route_awaiting_report", "gauge",
              "Batches posted to queued ingestion, no status report yet.");
    for (size_t r = 0; r < cfg->nroutes; r++) {
        char lab[64];

        snprintf(lab, sizeof(lab), ",ingestion=\"%s\"",
                 rs[r].ingestion ? rs[r].ingestion : "");
        sb_route_sample(b, "kadx_route_awaiting_report", cfg->routes[r].name,
                        lab, rs[r].awaiting_report);
    }
    sb_family(b, "kadx_route_oldest_report_wait_seconds", "gauge",
              "Age of the oldest batch awaiting a queued status report.");
    for (size_t r = 0; r < cfg->nroutes; r++) {
        sb_route_sample(b, "kadx_route_oldest_report_wait_seconds",
                        cfg->routes[r].name, NULL,
                        (double)rs[r].oldest_report_wait_ms / 1000.0);
    }
}

static void metrics_forwarder(const struct metrics_sources *a, struct sbuf *b)
{
    const struct config *cfg = a->src->cfg;
    struct forwarder_route_stats *rs;
    size_t n = cfg->nroutes;
    int64_t exp;

    rs = calloc(n ? n : 1, sizeof(*rs));
    if (rs == NULL) {
        b->err = -ENOMEM;
        return;
    }
    for (size_t r = 0; r < n; r++) {
        forwarder_route_stats(a->src->forwarder, (int)r, &rs[r]);
    }
    for (size_t m = 0; m < sizeof(route_metrics) / sizeof(route_metrics[0]);
         m++) {
        sb_family(b, route_metrics[m].name, route_metrics[m].type,
                  route_metrics[m].help);
        for (size_t r = 0; r < n; r++) {
            sb_route_sample(b, route_metrics[m].name, cfg->routes[r].name, NULL,
                            route_metrics[m].get(&rs[r]));
        }
    }
    sb_family(b, "kadx_retries_total", "counter",
              "Ingest attempts that will be retried, by reason.");
    for (size_t r = 0; r < n; r++) {
        sb_route_sample(b, "kadx_retries_total", cfg->routes[r].name,
                        ",reason=\"transient\"", (double)rs[r].transient);
        sb_route_sample(b, "kadx_retries_total", cfg->routes[r].name,
                        ",reason=\"throttled\"", (double)rs[r].throttled);
        sb_route_sample(b, "kadx_retries_total", cfg->routes[r].name,
                        ",reason=\"ambiguous\"", (double)rs[r].ambiguous);
        sb_route_sample(b, "kadx_retries_total", cfg->routes[r].name,
                        ",reason=\"auth\"", (double)rs[r].auth_errors);
    }
    metrics_latency(b, cfg, rs);
    metrics_queued(b, cfg, rs);
    free(rs);
    exp = forwarder_token_expires_ms(a->src->forwarder);
    if (exp > 0) {
        sb_family(b, "kadx_token_expiry_seconds", "gauge",
                  "Seconds until the ADX access token expires.");
        sbuf_printf(b, "kadx_token_expiry_seconds %.3f\n",
                    (double)(exp - wall_ms()) / 1000.0);
    }
}

static void metrics_intake(const struct metrics_sources *a, struct sbuf *b)
{
    struct intake_counters c;
    const struct intake_partition *ip;
    size_t n = 0;

    intake_get_counters(a->src->intake, &c);
    for (size_t m = 0; m < sizeof(intake_metrics) / sizeof(intake_metrics[0]);
         m++) {
        sb_scalar(b, intake_metrics[m].name, intake_metrics[m].type,
                  intake_metrics[m].help, intake_metrics[m].get(&c));
    }

    ip = intake_partitions(a->src->intake, &n);
    sb_family(b, "kadx_consumed_events_total", "counter",
              "Messages consumed from Kafka by this process.");
    for (size_t i = 0; i < n; i++) {
        sb_part_sample(b, "kadx_consumed_events_total", ip[i].topic,
                       ip[i].partition, (double)ip[i].n_consumed);
    }
    sb_family(b, "kadx_committed_offset", "gauge",
              "Highest offset whose commit Kafka acknowledged.");
    for (size_t i = 0; i < n; i++) {
        if (ip[i].committed >= 0) {
            sb_part_sample(b, "kadx_committed_offset", ip[i].topic,
                           ip[i].partition, (double)ip[i].committed);
        }
    }
    sb_family(b, "kadx_offset_gap_events_total", "counter",
              "Events skipped by retention gaps, per partition.");
    for (size_t i = 0; i < n; i++) {
        sb_part_sample(b, "kadx_offset_gap_events_total", ip[i].topic,
                       ip[i].partition, (double)ip[i].gap_events);
    }
    sb_family(b, "kadx_partition_rewound", "gauge",
              "1 while the partition is paused: it went backwards.");
    for (size_t i = 0; i < n; i++) {
        if (ip[i].assigned) {
            sb_part_sample(b, "kadx_partition_rewound", ip[i].topic,
                           ip[i].partition, ip[i].rewound ? 1 : 0);
        }
    }
    sb_family(b, "kadx_consumer_lag", "gauge",
              "Messages in Kafka not yet consumed, per partition.");
    for (size_t i = 0; i < n; i++) {
        if (ip[i].lag >= 0) {
            sb_part_sample(b, "kadx_consumer_lag", ip[i].topic, ip[i].partition,
                           (double)ip[i].lag);
        }
    }
}

/* One family per route/topic/partition and state: event counts, or their
 * bytes. */
static void metrics_by_state(struct sbuf *b, const struct config *cfg,
                             const struct journal_stats *st, const char *name,
                             const char *help, int bytes)
{
    static const char *const state_names[] = {"pending", "inflight",
                                              "delivered", "dead"};

    sb_family(b, name, "gauge", help);
    for (size_t i = 0; i < st->nparts; i++) {
        const struct journal_partition_stats *p = &st->parts[i];
        int64_t counts[4] = {p->pending_count, p->inflight_count,
                             p->delivered_count, p->dead_count};
        int64_t sizes[4] = {p->pending_bytes, p->inflight_bytes,
                            p->delivered_bytes, p->dead_bytes};
        const int64_t *v = bytes ? sizes : counts;

        /* the epochs of one partition (sorted together): one series */
        while (i + 1 < st->nparts && st->parts[i + 1].route == p->route &&
               st->parts[i + 1].partition == p->partition &&
               strcmp(st->parts[i + 1].topic, p->topic) == 0) {
            const struct journal_partition_stats *q = &st->parts[++i];

            counts[0] += q->pending_count;
            counts[1] += q->inflight_count;
            counts[2] += q->delivered_count;
            counts[3] += q->dead_count;
            sizes[0] += q->pending_bytes;
            sizes[1] += q->inflight_bytes;
            sizes[2] += q->delivered_bytes;
            sizes[3] += q->dead_bytes;
        }
        const char *route = p->route >= 0 && (size_t)p->route < cfg->nroutes
                                ? cfg->routes[p->route].name
                                : "";

        for (int s = 0; s < 4; s++) {
            sbuf_printf(b, "%s{route=\"", name);
            sb_label(b, route);
            sbuf_printf(b, "\",topic=\"");
            sb_label(b, p->topic);
            sbuf_printf(
                b, "\",partition=\"%" PRId32 "\",state=\"%s\"} %" PRId64 "\n",
                p->partition, state_names[s], v[s]);
        }
    }
}

/* The disk under the journal and retention under space pressure. */
static void metrics_space(const struct metrics_sources *a, struct sbuf *b,
                          const struct journal_stats *st)
{
    struct journal_space sp;
    int64_t now = wall_ms();

    journal_space(a->src->journal, &sp);
    sb_family(b, "kadx_journal_disk_free_bytes", "gauge",
              "bytes the journal's filesystem still grants");
    sbuf_printf(b, "kadx_journal_disk_free_bytes %" PRId64 "\n",
                sp.fs_free_bytes);
    sb_family(b, "kadx_journal_reserve_bytes", "gauge",
              "disk bytes appends never take (journal.reserve_bytes)");
    sbuf_printf(b, "kadx_journal_reserve_bytes %" PRId64 "\n",
                sp.reserve_bytes);
    sb_family(b, "kadx_journal_effective_max_bytes", "gauge",
              "the cap appends obey: journal.max_bytes or what the disk "
              "holds minus the reserve, the smaller");
    sbuf_printf(b, "kadx_journal_effective_max_bytes %" PRId64 "\n",
                sp.effective_cap == INT64_MAX ? (int64_t)0 : sp.effective_cap);
    sb_family(b, "kadx_journal_used_bytes", "gauge",
              "journal pages in use (the cap's measure)");
    sbuf_printf(b, "kadx_journal_used_bytes %" PRId64 "\n", sp.used_bytes);
    sb_family(b, "kadx_journal_disk_full", "gauge",
              "1 while appends are refused because the disk is full");
    sbuf_printf(b, "kadx_journal_disk_full %d\n",
                sp.full == JOURNAL_FULL_DISK ? 1 : 0);
    sb_family(b, "kadx_journal_replay_window_seconds", "gauge",
              "age of the oldest delivered event still kept for replay");
    sbuf_printf(b, "kadx_journal_replay_window_seconds %.3f\n",
                st->oldest_delivered_ms > 0
                    ? (double)(now - st->oldest_delivered_ms) / 1000.0
                    : 0.0);
    if (a->src->forwarder != NULL) {
        struct forwarder_retention fr;

        forwarder_retention(a->src->forwarder, &fr);
        sb_family(b, "kadx_early_retired_events_total", "counter",
                  "delivered events retired before journal.retention_ms "
                  "under disk space pressure");
        sbuf_printf(b, "kadx_early_retired_events_total %" PRId64 "\n",
                    fr.early_events);
    }
}

/* Per route: age of its oldest undelivered (pending or in-flight) event,
 * from its journal append time; 0 when nothing waits. */
static void metrics_oldest(struct sbuf *b, const struct config *cfg,
                           const struct journal_stats *st)
{
    int64_t now = wall_ms();

    sb_family(b, "kadx_oldest_undelivered_age_seconds", "gauge",
              "Age of the route's oldest event not yet delivered (journal "
              "append time), 0 when none.");
    for (size_t r = 0; r < cfg->nroutes; r++) {
        int64_t oldest = 0;

        for (size_t i = 0; i < st->nparts; i++) {
            const struct journal_partition_stats *p = &st->parts[i];

            if (p->route == (int)r && p->oldest_pending_ms > 0 &&
                (oldest == 0 || p->oldest_pending_ms < oldest)) {
                oldest = p->oldest_pending_ms;
            }
        }
        sb_route_sample(
            b, "kadx_oldest_undelivered_age_seconds", cfg->routes[r].name, NULL,
            oldest > 0 && now > oldest ? (double)(now - oldest) / 1000.0 : 0.0);
    }
}

/* kadx_build_info and the standard process_* metrics. */
static void metrics_process(struct sbuf *b)
{
    struct procstat ps;

    sb_family(b, "kadx_build_info", "gauge",
              "Always 1; the labels say which kadx this is.");
    sbuf_printf(b,
                "kadx_build_info{version=\"%s\",sqlite=\"%s\","
                "librdkafka=\"%s\",libuv=\"%s\"} 1\n",
                KADX_VERSION, sqlite3_libversion(), rd_kafka_version_str(),
                uv_version_string());
    if (procstat_read(&ps) < 0) {
        return;
    }
    sb_family(b, "process_cpu_seconds_total", "counter",
              "Total user and system CPU time spent in seconds.");
    sbuf_printf(b, "process_cpu_seconds_total %.2f\n", ps.cpu_seconds);
    sb_family(b, "process_resident_memory_bytes", "gauge",
              "Resident memory size in bytes.");
    sbuf_printf(b, "process_resident_memory_bytes %" PRId64 "\n", ps.rss_bytes);
    sb_family(b, "process_virtual_memory_bytes", "gauge",
              "Virtual memory size in bytes.");
    sbuf_printf(b, "process_virtual_memory_bytes %" PRId64 "\n",
                ps.vsize_bytes);
    sb_family(b, "process_open_fds", "gauge",
              "Number of open file descriptors.");
    sbuf_printf(b, "process_open_fds %" PRId64 "\n", ps.open_fds);
    if (ps.max_fds >= 0) {
        sb_family(b, "process_max_fds", "gauge",
                  "Maximum number of open file descriptors.");
        sbuf_printf(b, "process_max_fds %" PRId64 "\n", ps.max_fds);
    }
    sb_family(b, "process_start_time_seconds", "gauge",
              "Start time of the process since unix epoch in seconds.");
    sbuf_printf(b, "process_start_time_seconds %.2f\n", ps.start_time_seconds);
}

/* The journal's totals (gauges); the disk's families come between the
 * file sizes and the backlog (JOURNAL_METRICS_BEFORE_SPACE). */
typedef int64_t (*js_get_fn)(const struct journal_stats *st);

#define JS_GETTER(field)                                                       \
    static int64_t js_##field(const struct journal_stats *st)                  \
    {                                                                          \
        return st->field;                                                      \
    }
JS_GETTER(file_bytes)
JS_GETTER(wal_bytes)
JS_GETTER(max_bytes)
JS_GETTER(pending_bytes)
JS_GETTER(batches_unfinished)

#define JOURNAL_METRICS_BEFORE_SPACE 3

static const struct {
    const char *name;
    const char *help;
    js_get_fn get;
} journal_metrics[] = {
    {"kadx_journal_file_bytes", "Size of the journal database file.",
     js_file_bytes},
    {"kadx_journal_wal_bytes", "Size of the journal's write-ahead log.",
     js_wal_bytes},
    {"kadx_journal_max_bytes", "The journal's byte cap (0 = none).",
     js_max_bytes},
    {"kadx_journal_pending_bytes",
     "Bytes of events not yet delivered nor dead.", js_pending_bytes},
    {"kadx_journal_unfinished_batches",
     "Batches pending, sent or failed in the journal.", js_batches_unfinished},
};

static void metrics_journal(const struct metrics_sources *a, struct sbuf *b,
                            const struct journal_stats *st)
{
    const struct config *cfg = a->src->cfg;

    for (size_t m = 0; m < sizeof(journal_metrics) / sizeof(journal_metrics[0]);
         m++) {
        if (m == JOURNAL_METRICS_BEFORE_SPACE) {
            metrics_space(a, b, st);
        }
        sb_scalar(b, journal_metrics[m].name, "gauge", journal_metrics[m].help,
                  journal_metrics[m].get(st));
    }
    metrics_by_state(b, cfg, st, "kadx_journal_events",
                     "Events in the journal by state.", 0);
    metrics_by_state(b, cfg, st, "kadx_journal_bytes",
                     "Event bytes in the journal by state.", 1);
    metrics_oldest(b, cfg, st);
}

/* Per-batch phase histograms (gateway/phases.h). */
static void metrics_phases(struct sbuf *b)
{
    char *ph = phases_metrics_text();

    if (ph == NULL) {
        b->err = -ENOMEM;
        return;
    }
    sbuf_printf(b, "%s", ph);
    free(ph);
}

void metrics_render(struct sbuf *b, const struct metrics_sources *ms)
{
    sb_family(b, "kadx_uptime_seconds", "gauge",
              "Seconds since the admin server started.");
    sbuf_printf(b, "kadx_uptime_seconds %.3f\n",
                (double)(wall_ms() - ms->started_ms) / 1000.0);
    sb_family(b, "kadx_paused", "gauge",
              "1 while the operator paused the whole gateway.");
    sbuf_printf(b, "kadx_paused %d\n", ms->paused_all);
    metrics_process(b);
    metrics_journal(ms, b, ms->st);
    if (ms->src->intake != NULL) {
        metrics_intake(ms, b);
    }
    if (ms->src->forwarder != NULL) {
        metrics_forwarder(ms, b);
    }
    metrics_phases(b);
}
