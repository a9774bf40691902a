/*
 * status.c - GET /readyz (every readiness check with its detail) and GET
 * /status (routes, partitions, offsets, counters) of the admin API. Both
 * read the journal on the thread pool first (readjob.c) and build the
 * answer on the loop from the journal's statistics and the intake's and
 * the forwarder's state. Loop thread only; owns nothing beyond a call.
 */
#include "admin/api_internal.h"
#include "base/clock.h"

#include "gateway/config.h"
#include "gateway/forwarder.h"
#include "gateway/intake.h"
#include "kadx_version.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ----------------------------------------------------------- /readyz */

static void add_check(cJSON *arr, const char *name, int ok, const char *detail,
                      int *all_ok)
{
    cJSON *c = cJSON_CreateObject();

    cJSON_AddStringToObject(c, "name", name);
    cJSON_AddBoolToObject(c, "ok", ok);
    cJSON_AddStringToObject(c, "detail", detail);
    cJSON_AddItemToArray(arr, c);
    if (!ok) {
        *all_ok = 0;
    }
}

/* Offset continuity: red while a partition waits for the operator's
 * epoch (it went backwards; gateway/INTAKE.md). */
static void readyz_offsets(struct admin *a, cJSON *checks, int *all_ok)
{
    const struct intake_partition *ip;
    char detail[512] = "";
    size_t n = 0;
    size_t len = 0;
    int bad = 0;

    ip = intake_partitions(a->src.intake, &n);
    for (size_t i = 0; ip != NULL && i < n; i++) {
        if (!ip[i].assigned || !ip[i].rewound) {
            continue;
        }
        bad++;
        if (len < sizeof(detail) - 1) {
            int w =
                snprintf(detail + len, sizeof(detail) - len,
                         "%s'%s'[%d] went backwards (needs %lld, broker "
                         "log %lld..%lld)",
                         bad > 1 ? "; " : "", ip[i].topic, (int)ip[i].partition,
                         (long long)ip[i].rewind_offset,
                         (long long)ip[i].log_start, (long long)ip[i].log_end);
            len = w > 0 ? len + (size_t)w : len;
            len = len < sizeof(detail) ? len : sizeof(detail) - 1;
        }
    }
    if (bad == 0) {
        add_check(checks, "kafka_offsets", 1, "continuous", all_ok);
        return;
    }
    if (len < sizeof(detail) - 1) {
        snprintf(detail + len, sizeof(detail) - len,
                 ": paused until POST /partitions/epoch");
    }
    add_check(checks, "kafka_offsets", 0, detail, all_ok);
}

/* journal: readable, room for appends (not at its cap, disk not full),
 * intake not held back by backpressure (INV-7) */
static void readyz_journal(struct admin *a, const struct rjob *job,
                           cJSON *checks, int *all_ok)
{
    const struct config *cfg = a->src.cfg;
    const struct journal_stats *stp = &job->st;
    char detail[512];

    if (job->st_rc < 0) {
        snprintf(detail, sizeof(detail), "stats failed: %s", job->st_err);
        add_check(checks, "journal", 0, detail, all_ok);
    } else {
        struct journal_space sp;
        struct intake_counters ic;
        int ok = 1;

        memset(&ic, 0, sizeof(ic));
        if (a->src.intake != NULL) {
            intake_get_counters(a->src.intake, &ic);
        }
        journal_space(a->src.journal, &sp);
        if (sp.full == JOURNAL_FULL_DISK) {
            snprintf(detail, sizeof(detail),
                     "disk full: %" PRId64 " bytes used of an effective cap "
                     "of %" PRId64 " (%" PRId64 " bytes free on the "
                     "filesystem, %" PRId64 " kept in reserve); intake %s",
                     sp.used_bytes, sp.effective_cap, sp.fs_free_bytes,
                     sp.reserve_bytes, ic.bp_paused ? "paused" : "retrying");
            ok = 0;
        } else if (sp.full == JOURNAL_FULL_CAP) {
            snprintf(detail, sizeof(detail),
                     "journal at its cap: %" PRId64 " bytes used of %" PRId64
                     "; intake %s",
                     sp.used_bytes, stp->max_bytes,
                     ic.bp_paused ? "paused" : "retrying");
            ok = 0;
        } else if (ic.bp_paused) {
            snprintf(detail, sizeof(detail),
                     "intake paused: %" PRId64 " journal bytes pending "
                     "(high water %" PRId64 ")",
                     ic.pending_bytes, cfg->intake.high_water_bytes);
            ok = 0;
        } else {
            snprintf(detail, sizeof(detail),
                     "%" PRId64 " bytes used of %" PRId64 "%s", sp.used_bytes,
                     sp.effective_cap,
                     sp.disk_limited ? " (effective cap set by the disk)" : "");
        }
        add_check(checks, "journal", ok, detail, all_ok);
    }
}

static void readyz_answer(struct admin *a, struct http_request *req,
                          struct rjob *job)
{
    const struct config *cfg = a->src.cfg;
    cJSON *o = cJSON_CreateObject();
    cJSON *checks = cJSON_AddArrayToObject(o, "checks");
    char detail[512];
    int all_ok = 1;

    /* Kafka: the member got an assignment (possibly empty) from the group */
    if (a->src.intake == NULL) {
        add_check(checks, "kafka_group", 0, "intake not running", &all_ok);
    } else {
        struct intake_counters ic;

        intake_get_counters(a->src.intake, &ic);
        if (ic.rebalances > 0) {
            snprintf(detail, sizeof(detail), "joined (%" PRIu64 " rebalances)",
                     ic.rebalances);
            add_check(checks, "kafka_group", 1, detail, &all_ok);
        } else {
            snprintf(detail, sizeof(detail), "not joined yet%s%s",
                     ic.last_error[0] ? ": " : "", ic.last_error);
            add_check(checks, "kafka_group", 0, detail, &all_ok);
        }
        readyz_offsets(a, checks, &all_ok);
    }

    readyz_journal(a, job, checks, &all_ok);

    /* ADX: a token, and no route paused by a configuration error */
    if (a->src.forwarder == NULL) {
        add_check(checks, "adx", 0, "forwarder not running", &all_ok);
    } else {
        char why[256] = "";
        int ok = forwarder_ready(a->src.forwarder, why, sizeof(why));
        const char *terr = forwarder_token_error(a->src.forwarder);
        int op_paused = 0;

        if (terr != NULL && terr[0] != '\0') {
            snprintf(detail, sizeof(detail), "token: %s", terr);
            add_check(checks, "adx_auth", 0, detail, &all_ok);
        } else {
            add_check(checks, "adx_auth", 1, "ok", &all_ok);
        }
        for (size_t i = 0; i < cfg->nroutes; i++) {
            struct forwarder_route_stats rs;
            char name[160];

            snprintf(name, sizeof(name), "route %s", cfg->routes[i].name);
            if (forwarder_route_stats(a->src.forwarder, (int)i, &rs) < 0) {
                add_check(checks, name, 0, "unknown route", &all_ok);
                continue;
            }
            if (forwarder_route_exactly_once_error(a->src.forwarder, (int)i) !=
                NULL) {
                /* issue 18: a dedupe query that cannot see its batches */
                snprintf(detail, sizeof(detail), "not exactly once: %s",
                         forwarder_route_exactly_once_error(a->src.forwarder,
                                                            (int)i));
                add_check(checks, name, 0, detail, &all_ok);
            } else if (rs.state == FORWARDER_RUNNING) {
                add_check(checks, name, 1, "running", &all_ok);
            } else if (rs.state == FORWARDER_PAUSED_OPERATOR) {
                /* an operator's pause is not a fault */
                add_check(checks, name, 1, "paused by the operator", &all_ok);
                op_paused = 1;
            } else {
                snprintf(detail, sizeof(detail), "%s: %s",
                         forwarder_route_state_name(rs.state), rs.reason);
                add_check(checks, name, 0, detail, &all_ok);
            }
        }
        /* what else forwarder_ready refuses (no token yet), unless it is
         * only an operator's pause */
        if (!ok && all_ok && !op_paused) {
            add_check(checks, "adx", 0, why, &all_ok);
        }
    }
    cJSON_AddBoolToObject(o, "ready", all_ok);
    respond_obj(req, all_ok ? 200 : 503, o);
}

void h_readyz(struct admin *a, struct http_request *req)
{
    struct rjob *j = rjob_new(req);

    if (j != NULL) {
        rjob_start(a, req, j, RJ_STATS, readyz_answer);
    }
}

/* ----------------------------------------------------------- /status */

/* The intake's view of (topic, partition), or NULL. */
static const struct intake_partition *find_ip(const struct intake_partition *ip,
                                              size_t n, const char *topic,
                                              int32_t partition)
{
    for (size_t i = 0; i < n; i++) {
        if (ip[i].partition == partition && strcmp(ip[i].topic, topic) == 0) {
            return &ip[i];
        }
    }
    return NULL;
}

static const struct journal_partition_stats *
find_jp(const struct journal_stats *st, const char *topic, int32_t partition)
{
    for (size_t i = 0; i < st->nparts; i++) {
        if (st->parts[i].partition == partition &&
            strcmp(st->parts[i].topic, topic) == 0) {
            return &st->parts[i];
        }
    }
    return NULL;
}

/* One partition object from the intake's and the journal's views (either
 * may be NULL). */
static cJSON *partition_json(const char *topic, int32_t partition,
                             const struct intake_partition *ip,
                             const struct journal_partition_stats *jp,
                             const int64_t *delivered_off)
{
    cJSON *p = cJSON_CreateObject();

    cJSON_AddStringToObject(p, "topic", topic);
    add_num(p, "partition", partition);
    cJSON_AddBoolToObject(p, "assigned", ip != NULL && ip->assigned);
    add_off(p, "consumed_offset", ip ? ip->consumed : -1);
    add_off(p, "journaled_offset",
            jp ? jp->high_offset : (ip ? ip->journaled : -1));
    add_off(p, "committed_offset", ip ? ip->committed : -1);
    add_off(p, "settled_offset", ip ? ip->settled : -1);
    add_off(p, "batched_offset", jp ? jp->batched_offset : -1);
    add_off(p, "delivered_offset", delivered_off ? *delivered_off : -1);
    add_off(p, "end_offset", ip ? ip->end_offset : -1);
    add_off(p, "lag", ip ? ip->lag : -1);
    add_num(p, "consumed", ip ? (double)ip->n_consumed : 0);
    add_num(p, "journal_pending", jp ? (double)jp->pending_count : 0);
    add_num(p, "journal_pending_bytes", jp ? (double)jp->pending_bytes : 0);
    add_num(p, "journal_inflight", jp ? (double)jp->inflight_count : 0);
    add_num(p, "journal_inflight_bytes", jp ? (double)jp->inflight_bytes : 0);
    add_num(p, "journal_delivered", jp ? (double)jp->delivered_count : 0);
    add_num(p, "journal_delivered_bytes", jp ? (double)jp->delivered_bytes : 0);
    add_num(p, "dead_letters", jp ? (double)jp->dead_count : 0);
    add_num(p, "oldest_pending_ms", jp ? (double)jp->oldest_pending_ms : 0);
    /* offset continuity (gateway/INTAKE.md) */
    add_num(p, "epoch", jp ? (double)jp->epoch : (ip ? (double)ip->epoch : 0));
    cJSON_AddBoolToObject(p, "sealed", jp != NULL && jp->sealed);
    add_off(p, "epoch_start", jp ? jp->epoch_start : -1);
    cJSON_AddBoolToObject(p, "rewound", ip != NULL && ip->rewound);
    add_off(p, "rewind_offset", ip ? ip->rewind_offset : -1);
    add_off(p, "log_start_offset", ip ? ip->log_start : -1);
    add_off(p, "log_end_offset", ip ? ip->log_end : -1);
    add_num(p, "gaps", ip ? (double)ip->gaps : 0);
    add_num(p, "gap_events", ip ? (double)ip->gap_events : 0);
    add_off(p, "gap_first_offset", ip ? ip->gap_first : -1);
    add_off(p, "gap_last_offset", ip ? ip->gap_last : -1);
    return p;
}

static cJSON *route_stats_json(const struct forwarder_route_stats *rs)
{
    cJSON *f = cJSON_CreateObject();

    cJSON_AddStringToObject(f, "state", forwarder_route_state_name(rs->state));
    cJSON_AddStringToObject(f, "last_error", rs->reason);
    add_num(f, "batches_in_flight", rs->inflight);
    add_num(f, "batches_waiting", rs->waiting);
    add_num(f, "batches_cut", (double)rs->batches_cut);
    add_num(f, "batches_delivered", (double)rs->batches_delivered);
    add_num(f, "events_delivered", (double)rs->events_delivered);
    add_num(f, "bytes_delivered", (double)rs->bytes_delivered);
    add_num(f, "bytes_sent", (double)rs->bytes_sent);
    add_num(f, "requests", (double)rs->requests);
    add_num(f, "transient_errors", (double)rs->transient);
    add_num(f, "throttled", (double)rs->throttled);
    add_num(f, "ambiguous", (double)rs->ambiguous);
    add_num(f, "dedupe_queries", (double)rs->dedupe_queries);
    add_num(f, "dedupe_found", (double)rs->dedupe_found);
    add_num(f, "dedupe_absent_early", (double)rs->dedupe_absent_early);
    add_num(f, "possible_duplicates", (double)rs->possible_duplicates);
    add_num(f, "permanent_errors", (double)rs->permanent);
    add_num(f, "splits", (double)rs->splits);
    add_num(f, "dead_events", (double)rs->dead_events);
    add_num(f, "config_errors", (double)rs->config_errors);
    add_num(f, "auth_errors", (double)rs->auth_errors);
    add_num(f, "last_delivered_ms", (double)rs->last_delivered_ms);
    add_num(f, "last_latency_ms", rs->last_latency_ms);
    /* queued ingestion (gateway/QUEUED.md) */
    cJSON_AddStringToObject(f, "ingestion", rs->ingestion ? rs->ingestion : "");
    add_num(f, "awaiting_report", rs->awaiting_report);
    add_num(f, "oldest_report_wait_ms", (double)rs->oldest_report_wait_ms);
    add_num(f, "queued_posts", (double)rs->queued_posts);
    add_num(f, "queued_skipped", (double)rs->queued_skipped);
    add_num(f, "managed_fallbacks", (double)rs->managed_fallbacks);
    return f;
}

static cJSON *intake_json(struct intake *in)
{
    struct intake_counters c;
    cJSON *o = cJSON_CreateObject();

    intake_get_counters(in, &c);
    add_num(o, "consumed", (double)c.consumed);
    add_num(o, "journaled", (double)c.journaled);
    add_num(o, "duplicates", (double)c.duplicates);
    add_num(o, "tombstones", (double)c.tombstones);
    add_num(o, "commits", (double)c.commits);
    add_num(o, "commit_errors", (double)c.commit_errors);
    add_num(o, "append_errors", (double)c.append_errors);
    add_num(o, "kafka_errors", (double)c.kafka_errors);
    add_num(o, "rebalances", (double)c.rebalances);
    add_num(o, "lost_partitions", (double)c.lost);
    add_num(o, "dropped", (double)c.dropped);
    add_num(o, "backpressure_pauses", (double)c.pauses);
    add_num(o, "offset_rewinds", (double)c.rewinds);
    add_num(o, "partitions_rewound", (double)c.rewound);
    add_num(o, "epochs_started", (double)c.epochs);
    add_num(o, "offset_gaps", (double)c.gaps);
    add_num(o, "offset_gap_events", (double)c.gap_events);
    cJSON_AddBoolToObject(o, "paused", c.paused);
    cJSON_AddStringToObject(o, "last_error", c.last_error);
    add_num(o, "last_error_ms", (double)c.last_error_ms);
    return o;
}

/* /status journal: the disk (journal_space) and the replay window kept
 * (retention yields to space pressure). */
static void status_space(struct admin *a, cJSON *j,
                         const struct journal_stats *st, int64_t now)
{
    struct journal_space sp;
    cJSON *d, *r;

    journal_space(a->src.journal, &sp);
    add_num(j, "used_bytes", (double)sp.used_bytes);
    add_num(j, "effective_max_bytes", (double)sp.effective_cap);
    d = cJSON_AddObjectToObject(j, "disk");
    add_num(d, "fs_bytes", (double)sp.fs_bytes);
    add_num(d, "free_bytes", (double)sp.fs_free_bytes);
    add_num(d, "reserve_bytes", (double)sp.reserve_bytes);
    cJSON_AddBoolToObject(d, "limits_cap", sp.disk_limited);
    cJSON_AddStringToObject(d, "full",
                            sp.full == JOURNAL_FULL_DISK  ? "disk"
                            : sp.full == JOURNAL_FULL_CAP ? "cap"
                                                          : "no");
    r = cJSON_AddObjectToObject(j, "retention");
    if (a->src.forwarder != NULL) {
        struct forwarder_retention fr;

        forwarder_retention(a->src.forwarder, &fr);
        add_num(r, "retention_ms", (double)fr.retention_ms);
        add_num(r, "min_retention_ms", (double)fr.min_retention_ms);
        cJSON_AddBoolToObject(r, "space_pressure", fr.pressure);
        add_num(r, "early_retired_events", (double)fr.early_events);
        add_num(r, "last_early_retire_ms", (double)fr.last_early_ms);
        /* shortened: the last early retirement is younger than the
         * normal retention would have allowed */
        cJSON_AddBoolToObject(r, "shortened",
                              fr.last_early_ms > 0 &&
                                  now - fr.last_early_ms < fr.retention_ms);
    }
    if (st->oldest_delivered_ms > 0) {
        add_num(r, "replay_window_ms", (double)(now - st->oldest_delivered_ms));
    } else {
        cJSON_AddNullToObject(r, "replay_window_ms");
    }
}

/* /status "journal": its files, fill and space. */
static void status_journal(struct admin *a, cJSON *j,
                           const struct journal_stats *st, int64_t now)
{
    cJSON_AddStringToObject(j, "path", journal_path(a->src.journal));
    add_num(j, "file_bytes", (double)st->file_bytes);
    add_num(j, "wal_bytes", (double)st->wal_bytes);
    add_num(j, "wal_truncates", (double)st->wal_truncates);
    add_num(j, "max_bytes", (double)st->max_bytes);
    add_num(j, "pending_bytes", (double)st->pending_bytes);
    add_num(j, "batches_unfinished", (double)st->batches_unfinished);
    add_num(j, "chunks", (double)st->chunks);
    status_space(a, j, st, now);
}

static void status_answer(struct admin *a, struct http_request *req,
                          struct rjob *job)
{
    const struct config *cfg = a->src.cfg;
    const struct intake_partition *ip = NULL;
    const struct journal_stats st = job->st;
    /* delivered offsets: a failure leaves them null rather than failing
     * the status */
    const struct journal_delivered *dl = job->dl_rc == 0 ? job->dl : NULL;
    size_t nip = 0, ndl = job->dl_rc == 0 ? job->ndl : 0;
    cJSON *o, *routes, *tok;
    int64_t now = wall_ms();

    if (job->st_rc < 0) {
        respond_error(req, 500, "journal stats: %s", job->st_err);
        return;
    }
    if (a->src.intake != NULL) {
        ip = intake_partitions(a->src.intake, &nip);
    }
    o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "version", KADX_VERSION);
    add_num(o, "uptime_s", (double)(now - a->started_ms) / 1000.0);
    add_num(o, "now_ms", (double)now);
    cJSON_AddBoolToObject(o, "paused", a->paused_all);

    status_journal(a, cJSON_AddObjectToObject(o, "journal"), &st, now);

    if (a->src.intake != NULL) {
        cJSON_AddItemToObject(o, "intake", intake_json(a->src.intake));
    } else {
        cJSON_AddNullToObject(o, "intake");
    }
    tok = cJSON_AddObjectToObject(o, "token");
    if (a->src.forwarder != NULL) {
        int64_t exp = forwarder_token_expires_ms(a->src.forwarder);
        const char *terr = forwarder_token_error(a->src.forwarder);

        add_num(tok, "expires_ms", (double)exp);
        if (exp > 0) {
            add_num(tok, "expires_in_s", (double)(exp - now) / 1000.0);
        } else {
            cJSON_AddNullToObject(tok, "expires_in_s");
        }
        cJSON_AddStringToObject(tok, "error", terr ? terr : "");
        add_num(o, "batches_in_flight",
                (double)forwarder_inflight(a->src.forwarder));
    }

    routes = cJSON_AddArrayToObject(o, "routes");
    for (size_t r = 0; r < cfg->nroutes; r++) {
        const struct config_route *cr = &cfg->routes[r];
        cJSON *ro = cJSON_CreateObject();
        cJSON *parts;
        int64_t dead = 0, depth = 0, bytes = 0;

        cJSON_AddStringToObject(ro, "name", cr->name);
        add_num(ro, "index", (double)r);
        cJSON_AddStringToObject(ro, "topic",
                                cr->topic ? cr->topic : cr->topic_regex);
        cJSON_AddStringToObject(ro, "database", cr->database);
        cJSON_AddStringToObject(ro, "table", cr->table);
        if (a->src.forwarder != NULL) {
            struct forwarder_route_stats rs;

            if (forwarder_route_stats(a->src.forwarder, (int)r, &rs) == 0) {
                cJSON_AddItemToObject(ro, "forwarder", route_stats_json(&rs));
            }
        }
        parts = cJSON_AddArrayToObject(ro, "partitions");
        /* journal partitions of this route, then partitions the intake
         * knows for it that the journal has not seen yet */
        for (size_t i = 0; i < st.nparts; i++) {
            const struct journal_partition_stats *jp = &st.parts[i];
            const int64_t *doff = NULL;

            if (jp->route != (int)r) {
                continue;
            }
            for (size_t k = 0; k < ndl; k++) {
                if (dl[k].partition == jp->partition &&
                    strcmp(dl[k].topic, jp->topic) == 0) {
                    doff = &dl[k].delivered_offset;
                }
            }
            /* an older (sealed) epoch: the journal's view only */
            cJSON_AddItemToArray(
                parts, partition_json(jp->topic, jp->partition,
                                      jp->sealed ? NULL
                                                 : find_ip(ip, nip, jp->topic,
                                                           jp->partition),
                                      jp, jp->sealed ? NULL : doff));
            dead += jp->dead_count;
            depth += jp->pending_count + jp->inflight_count;
            bytes += jp->pending_bytes + jp->inflight_bytes;
        }
        for (size_t i = 0; i < nip; i++) {
            if (ip[i].route != (int)r ||
                find_jp(&st, ip[i].topic, ip[i].partition) != NULL) {
                continue;
            }
            cJSON_AddItemToArray(parts,
                                 partition_json(ip[i].topic, ip[i].partition,
                                                &ip[i], NULL, NULL));
        }
        add_num(ro, "journal_depth", (double)depth);
        add_num(ro, "journal_depth_bytes", (double)bytes);
        add_num(ro, "dead_letters", (double)dead);
        cJSON_AddItemToArray(routes, ro);
    }
    respond_obj(req, 200, o);
}

void h_status(struct admin *a, struct http_request *req)
{
    struct rjob *j = rjob_new(req);

    if (j != NULL) {
        rjob_start(a, req, j, RJ_STATS | RJ_DELIVERED, status_answer);
    }
}
