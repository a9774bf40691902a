/*
 * daemon.c - `kadx run`'s process: builds the struct kadx, opens the
 * journal, starts the intake (and the forwarder and admin server, in the
 * marked places), runs the libuv loop on the main thread until SIGTERM or
 * SIGINT, then stops everything in order:
 *
 *   intake (stop fetching, finish journal writes, commit, leave the group)
 *   -> forwarder (answers in flight recorded) -> admin server -> journal.
 *
 * The intake stops first so that its last commits settle what it
 * journaled; the forwarder stops after it so that it can still send what
 * became settled. Signals arrive through uv_signal_t, i.e. on the loop
 * thread like everything else. A second signal while stopping is logged and
 * otherwise ignored: every stop step has its own deadline (intake
 * INTAKE_STOP_DEADLINE_MS, 15 s; forwarder DAEMON_FORWARDER_STOP_MS, 5 s),
 * and the whole stop, up to the process's exit, is bounded by
 * DAEMON_STOP_DEADLINE_MS: a watchdog thread (watchdog.h) started with the
 * first stop request ends the process with status 1 at that deadline even
 * if the loop thread is blocked (gateway/FORWARDER.md "Stopping").
 */
#include "gateway/daemon.h"

#include "gateway/config.h"
#include "gateway/forwarder.h" /* forwarder: added */
#include "gateway/intake.h"
#include "gateway/log.h"
#include "gateway/watchdog.h"
#include "storage/journal.h"

#include <curl/curl.h>
#include <librdkafka/rdkafka.h>
#include <signal.h>
#include <sqlite3.h>
#include <string.h>

/* Answers in flight get this long to arrive once the intake has stopped;
 * the rest stays SENT (ambiguous) for the next start. */
#define DAEMON_FORWARDER_STOP_MS 5000
/* From the first stop request to the process's end, whatever Kafka, ADX,
 * the disk or a library is doing: the intake's 15 s and the forwarder's
 * 5 s, plus 5 s for the journal close, librdkafka's destroy and exit. */
#define DAEMON_STOP_DEADLINE_MS 25000

static void daemon_finish(struct kadx *k)
{
    /* forwarder: free (stopped before; handles close in the last run) */
    forwarder_free(k->forwarder);
    k->forwarder = NULL;
    /* admin: stop here (before the journal it reads is closed) */
    if (k->hooks != NULL && k->hooks->stopping != NULL) {
        k->hooks->stopping(k, k->hooks->arg);
    }
    uv_close((uv_handle_t *)&k->sigterm, NULL);
    uv_close((uv_handle_t *)&k->sigint, NULL);
    uv_close((uv_handle_t *)&k->sighup, NULL);
    /* libuv restored SIGHUP's default action (terminate): a late SIGHUP
     * must not kill a gateway that is still stopping in order */
    signal(SIGHUP, SIG_IGN);
    watchdog_phase(k->watchdog, "journal close");
    /* Waits for queued writes; its memory goes with the loop's last run. */
    journal_close(k->journal);
    k->journal = NULL;
}

/* forwarder: stopped -> finish (added by the forwarder) */
static void on_forwarder_stopped(void *arg)
{
    daemon_finish(arg);
}

static void on_intake_stopped(void *arg)
{
    struct kadx *k = arg;

    /* forwarder: stop here: answers in flight get 5 s to arrive and be
     * recorded; the rest stays SENT (ambiguous) for the next start */
    if (k->forwarder != NULL) {
        watchdog_phase(k->watchdog, "forwarder stop");
        forwarder_stop(k->forwarder, DAEMON_FORWARDER_STOP_MS,
                       on_forwarder_stopped, k);
        return;
    }
    daemon_finish(k);
}

/* forwarder: a settled watermark moved (intake_on_settled adapter) */
static void on_settled_kick(void *arg)
{
    forwarder_kick(arg);
}

void daemon_request_stop(struct kadx *k, int exit_code)
{
    int rc;

    if (exit_code > k->exit_code) {
        k->exit_code = exit_code;
    }
    if (k->stopping) {
        return;
    }
    k->stopping = 1;
    rc = watchdog_start(DAEMON_STOP_DEADLINE_MS, 1, &k->watchdog);
    if (rc < 0) {
        log_warn("kadx",
                 "stop: no watchdog (%s): the stop is bounded only "
                 "by its steps' deadlines",
                 uv_strerror(rc));
    }
    notify_stopping(&k->notify);
    if (k->intake != NULL) {
        watchdog_phase(k->watchdog, "intake stop");
        intake_stop(k->intake, on_intake_stopped, k);
    } else {
        daemon_finish(k);
    }
}

static void on_signal(uv_signal_t *s, int signum)
{
    struct kadx *k = s->data;
    const char *name = signum == SIGTERM ? "SIGTERM" : "SIGINT";

    if (k->stopping) {
        log_warn("kadx", "%s while stopping: still stopping", name);
        return;
    }
    log_info("kadx", "%s: stopping", name);
    daemon_request_stop(k, 0);
}

/* SIGHUP: reload (reload.c); whatever happens, the process goes on */
static void on_sighup(uv_signal_t *s, int signum)
{
    struct kadx *k = s->data;

    log_info("reload", "SIGHUP: reading '%s' again",
             k->config_path != NULL ? k->config_path : "(none)");
    (void)reload_run(k);
}

const struct journal_offset *kadx_settled_all(void *arg, size_t *n)
{
    struct kadx *k = arg;

    if (k->intake == NULL) {
        *n = 0;
        return NULL;
    }
    return intake_settled_all(k->intake, n);
}

static void on_walk(uv_handle_t *h, void *arg)
{
    log_warn("kadx", "handle of type %s still open at exit",
             uv_handle_type_name(uv_handle_get_type(h)));
}

/* Opens the journal (k->journal) and warns when others may read it or
 * when journal.max_bytes cannot fit on the disk. 0, or a negative errno
 * (logged). */
static int daemon_open_journal(struct kadx *k, const struct config *cfg)
{
    struct journal_options jo;
    char err[512];
    int rc;

    memset(&jo, 0, sizeof(jo));
    jo.path = cfg->journal.path;
    jo.max_bytes = cfg->journal.max_bytes;
    jo.sync_full = cfg->journal.sync_full;
    jo.reserve_bytes = cfg->journal.reserve_bytes;
    jo.loop = &k->loop;
    rc = journal_open(&jo, &k->journal, err, sizeof(err));
    if (rc < 0) {
        log_error("kadx", "journal: %s", err);
        return rc;
    }
    if (journal_permission_warning(k->journal) != NULL) {
        log_warn("kadx",
                 "journal: %s: others may read or change the journal "
                 "(chmod 600 them)",
                 journal_permission_warning(k->journal));
    }

    {
        struct journal_space sp;

        journal_space(k->journal, &sp);
        if (sp.disk_limited) {
            log_warn("kadx",
                     "journal.max_bytes %lld cannot fit on the disk: %lld "
                     "bytes free, %lld held by the journal, %lld kept in "
                     "reserve: effective cap %lld bytes",
                     (long long)sp.max_bytes, (long long)sp.fs_free_bytes,
                     (long long)sp.file_bytes, (long long)sp.reserve_bytes,
                     (long long)sp.effective_cap);
        }
    }
    return 0;
}

int daemon_run(const struct config *cfg)
{
    return daemon_run_hooks(cfg, NULL);
}

int daemon_run_hooks(const struct config *cfg, const struct daemon_hooks *hooks)
{
    struct kadx k;
    const char *group = config_kafka_get(cfg, "group.id");
    char err[512];
    int rc;
    int fw_failed = 0; /* forwarder: added */

    /* SIGHUP before the loop watches it (journal open, Kafka start) must
     * not kill the process either */
    signal(SIGHUP, SIG_IGN);
    memset(&k, 0, sizeof(k));
    k.cfg = cfg;
    k.hooks = hooks; /* admin: hooks */
    if (hooks != NULL) {
        k.config_path = hooks->config_path;
        k.overrides = hooks->overrides;
    }
    rc = uv_loop_init(&k.loop);
    if (rc < 0) {
        log_error("kadx", "event loop: %s", uv_strerror(rc));
        return 1;
    }

    rc = daemon_open_journal(&k, cfg);
    if (rc < 0) {
        k.exit_code = 1;
        goto close_loop;
    }
    rc = intake_start(&k.loop, cfg, k.journal, &k.intake, err, sizeof(err));
    if (rc < 0) {
        log_error("kadx", "intake: %s", err);
        k.exit_code = 1;
        goto close_journal;
    }

    /* forwarder: start here (added by the forwarder) */
    {
        struct forwarder_options fo;

        memset(&fo, 0, sizeof(fo));
        fo.cfg = cfg;
        fo.journal = k.journal;
        fo.settled.all = kadx_settled_all;
        fo.settled.arg = &k;
        rc = forwarder_new(&k.loop, &fo, &k.forwarder, err, sizeof(err));
        if (rc == 0) {
            rc = forwarder_start(k.forwarder, err, sizeof(err));
        }
        if (rc < 0) {
            log_error("kadx", "forwarder: %s", err);
            fw_failed = 1; /* stops once the signals are set up */
        } else {
            intake_on_settled(k.intake, on_settled_kick, k.forwarder);
        }
    }

    /* admin: start here */

    uv_signal_init(&k.loop, &k.sigterm);
    uv_signal_init(&k.loop, &k.sigint);
    k.sigterm.data = &k;
    k.sigint.data = &k;
    uv_signal_start(&k.sigterm, on_signal, SIGTERM);
    uv_signal_start(&k.sigint, on_signal, SIGINT);
    uv_signal_init(&k.loop, &k.sighup);
    k.sighup.data = &k;
    uv_signal_start(&k.sighup, on_sighup, SIGHUP);

    /* admin: started hook (added by admin; after the signals, so that a
     * failure can stop the daemon the usual way) */
    if (hooks != NULL && hooks->started != NULL &&
        hooks->started(&k, hooks->arg) < 0) {
        daemon_request_stop(&k, 1);
    }

    /* the libraries' versions as loaded (not as compiled): what a support
     * question needs first */
    log_info("kadx",
             "running (group %s, %zu routes; librdkafka %s, libcurl %s, "
             "SQLite %s, libuv %s)",
             group ? group : "kadx", cfg->nroutes, rd_kafka_version_str(),
             curl_version_info(CURLVERSION_NOW)->version, sqlite3_libversion(),
             uv_version_string());
    if (fw_failed) { /* forwarder: could not start */
        daemon_request_stop(&k, 1);
    }
    if (!k.stopping) {
        notify_ready(&k.notify, &k.loop, "running");
    }
    uv_run(&k.loop, UV_RUN_DEFAULT);
    watchdog_phase(k.watchdog, "kafka client destroy");
    intake_free(k.intake);
    k.intake = NULL;
    watchdog_phase(k.watchdog, "exit");
    log_info("kadx", "stopped");
    goto close_loop;

close_journal:
    journal_close(k.journal);
    k.journal = NULL;
    uv_run(&k.loop, UV_RUN_DEFAULT); /* lets the closed handles go */
close_loop:
    if (uv_loop_close(&k.loop) == UV_EBUSY) {
        uv_walk(&k.loop, on_walk, NULL);
    }
    reload_release(&k);
    /* the stop has finished: what is left is freeing the config */
    watchdog_cancel(k.watchdog);
    k.watchdog = NULL;
    return k.exit_code;
}
