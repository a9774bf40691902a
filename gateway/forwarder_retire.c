/*
 * forwarder_retire.c - retention (INV-8): delivered events are deleted
 * once older than journal.retention_ms, earlier (but not before
 * journal.min_retention_ms) while the disk is short of space, in small
 * transactions on a timer; the journal's space state is logged when it
 * changes; forwarder_retention reports it. Loop thread only.
 */
#include "base/clock.h"
#include "gateway/config.h"
#include "gateway/forwarder.h"
#include "gateway/forwarder_internal.h"
#include "gateway/log.h"
#include "storage/journal.h"

#include <string.h>

#define FW_RETIRE_BUSY_MS     10  /* ... while a backlog is being deleted */
#define FW_RETIRE_PRESSURE_MS 250 /* ... while the disk is short of space */
#define FW_RETIRE_CHUNKS      64  /* chunks per retention transaction */

/* ----------------------------------------------------------- retention */

static void on_retired(void *arg, int status, int64_t count, const char *err)
{
    struct forwarder *fw = arg;

    fw->retiring = 0;
    if (status < 0) {
        if (!fw->retire_failed) {
            log_warn("forwarder", "retention: %s", err);
        }
        fw->retire_failed = 1;
        count = 0;
    } else {
        fw->retire_failed = 0;
        if (count > 0 && fw->retire_early) {
            fw->early_events += count;
            fw->last_early_ms = wall_ms();
            log_debug("forwarder",
                      "retention: %lld delivered events deleted early "
                      "(disk space pressure)",
                      (long long)count);
        } else if (count > 0) {
            log_debug("forwarder", "retention: %lld delivered events deleted",
                      (long long)count);
        }
    }
    if (fw->stopping) {
        fw_check_stopped(fw);
        return;
    }
    /* more to retire: go on soon, in small transactions; else idle (but
     * look again soon while the disk sets the cap: deliveries free chunks
     * and appends fill them, faster than FW_RETIRE_IDLE_MS) */
    uv_timer_start(&fw->retire_timer, fw_on_retire_timer,
                   count > 0 ? FW_RETIRE_BUSY_MS
                   : fw->space_pressure || fw->space_limited
                       ? FW_RETIRE_PRESSURE_MS
                       : FW_RETIRE_IDLE_MS,
                   0);
}

/* Logs the changes of the journal's space state (each once). */
static void fw_space_log(struct forwarder *fw, const struct journal_space *sp,
                         int pressure)
{
    if (sp->disk_limited != fw->space_limited) {
        fw->space_limited = sp->disk_limited;
        if (sp->disk_limited) {
            log_warn("forwarder",
                     "journal: the disk sets the effective cap: %lld bytes "
                     "(journal.max_bytes %lld; %lld bytes free on the "
                     "filesystem, %lld held by the journal's file, %lld kept "
                     "in reserve)",
                     (long long)sp->effective_cap, (long long)sp->max_bytes,
                     (long long)sp->fs_free_bytes, (long long)sp->file_bytes,
                     (long long)sp->reserve_bytes);
        } else {
            log_info("forwarder",
                     "journal: journal.max_bytes %lld fits on the disk again",
                     (long long)sp->max_bytes);
        }
    }
    if ((int)sp->full != fw->space_full) {
        fw->space_full = (int)sp->full;
        if (sp->full == JOURNAL_FULL_DISK) {
            log_warn("forwarder",
                     "journal: disk full: %lld bytes used of an effective cap "
                     "of %lld, %lld bytes free on the filesystem; intake "
                     "paused until delivered events make room",
                     (long long)sp->used_bytes, (long long)sp->effective_cap,
                     (long long)sp->fs_free_bytes);
        } else if (sp->full == JOURNAL_FULL_CAP) {
            log_warn("forwarder",
                     "journal: at its cap (%lld bytes); intake paused until "
                     "delivered events make room",
                     (long long)sp->max_bytes);
        } else {
            log_info("forwarder", "journal: appends go through again");
        }
    }
    if (pressure != fw->space_pressure) {
        fw->space_pressure = pressure;
        /* a small disk goes in and out of pressure all day: warn once,
         * then say it at debug level */
        if (pressure && !fw->pressure_seen) {
            fw->pressure_seen = 1;
            log_warn("forwarder",
                     "journal: space pressure (%lld bytes used of an "
                     "effective cap of %lld): delivered events older than "
                     "journal.min_retention_ms (%lld ms) are retired early, "
                     "oldest first",
                     (long long)sp->used_bytes, (long long)sp->effective_cap,
                     (long long)fw->cfg->journal.min_retention_ms);
        } else if (pressure) {
            log_debug("forwarder",
                      "journal: space pressure again (%lld bytes used of an "
                      "effective cap of %lld)",
                      (long long)sp->used_bytes, (long long)sp->effective_cap);
        } else {
            log_debug("forwarder",
                      "journal: space pressure over (%lld bytes "
                      "used of an effective cap of %lld)",
                      (long long)sp->used_bytes, (long long)sp->effective_cap);
        }
    }
}

/* INV-8: delivered events are kept for journal.retention_ms, then deleted
 * in chunks of FW_RETIRE_CHUNKS per transaction; never undelivered or dead
 * ones (journal_retire's contract). */
void fw_on_retire_timer(uv_timer_t *t)
{
    struct forwarder *fw = t->data;
    int64_t now = wall_ms();
    int64_t cutoff = now - fw->cfg->journal.retention_ms;
    int64_t min_ms = fw->cfg->journal.min_retention_ms;
    struct journal_space sp;
    int64_t target = 0;
    int pressure;
    int rc;

    if (fw->stopping || fw->retiring) {
        return;
    }
    /* the periodic look at the disk (journal_space: statvfs) */
    journal_space(fw->journal, &sp);
    pressure = journal_space_pressure(&sp, &target);
    fw_space_log(fw, &sp, pressure);
    fw->retiring = 1;
    fw->retire_early = pressure && now - min_ms > cutoff;
    if (fw->retire_early) {
        /* retention yields to pressure: delivered events older than the
         * replay window journal.min_retention_ms keeps, oldest first,
         * until half the effective cap is free */
        rc = journal_retire_to_async(fw->journal, now - min_ms, target,
                                     FW_RETIRE_CHUNKS, on_retired, fw);
    } else {
        rc = journal_retire_async(fw->journal, cutoff, FW_RETIRE_CHUNKS,
                                  on_retired, fw);
    }
    if (rc < 0) {
        fw->retiring = 0;
        uv_timer_start(&fw->retire_timer, fw_on_retire_timer, FW_RETIRE_IDLE_MS,
                       0);
    }
}

void forwarder_retention(const struct forwarder *fw,
                         struct forwarder_retention *out)
{
    memset(out, 0, sizeof(*out));
    out->retention_ms = fw->cfg->journal.retention_ms;
    out->min_retention_ms = fw->cfg->journal.min_retention_ms;
    out->pressure = fw->space_pressure;
    out->early_events = fw->early_events;
    out->last_early_ms = fw->last_early_ms;
}
