/*
 * daemon.h - the `kadx run` process: one libuv loop that owns the journal,
 * the Kafka intake, the forwarder and the admin server, started in that
 * order and stopped in order on SIGTERM/SIGINT (DESIGN.md "Data flow").
 *
 * struct kadx is public so that the forwarder and the admin API can reach
 * the parts they read (the intake's settled watermarks and counters, the
 * journal). Everything in it belongs to the loop thread.
 */
#ifndef KADX_DAEMON_H
#define KADX_DAEMON_H

#include "gateway/notify.h"
#include "gateway/reload.h"

#include <stddef.h>
#include <uv.h>

struct config;
struct journal;
struct journal_offset;
struct intake;
struct forwarder;
struct admin;
struct watchdog;

struct kadx;

/*
 * admin: hooks (added by admin). The composition root (cmd_run.c) starts
 * the admin API through these, so that gateway/ never calls admin/.
 * started runs on the loop thread once the journal, intake, forwarder and
 * signal handlers are up (< 0: the daemon stops with exit code 1);
 * stopping runs on the loop thread during shutdown, before the journal is
 * closed. Either may be NULL.
 */
struct config_overrides;

struct daemon_hooks {
    int (*started)(struct kadx *k, void *arg);
    void (*stopping)(struct kadx *k, void *arg);
    void *arg;
    /* SIGHUP reads this file again (gateway/reload.h); NULL = SIGHUP only
     * logs that there is nothing to reload. Borrowed for the run. */
    const char *config_path;
    const struct config_overrides *overrides;
};

struct kadx {
    uv_loop_t loop;
    const struct config *cfg;         /* the one in force: the caller's, or the
                                         last SIGHUP reload's (reload.h) */
    struct journal *journal;          /* opened first, closed last */
    struct intake *intake;            /* Kafka -> journal (gateway/intake.h) */
    struct forwarder *forwarder;      /* journal -> ADX (gateway/forwarder.h);
                                         NULL until its engineer wires it */
    struct admin *admin;              /* admin HTTP API; NULL until wired */
    const struct daemon_hooks *hooks; /* admin: hooks (added by admin) */
    uv_signal_t sigterm;
    uv_signal_t sigint;
    uv_signal_t sighup;      /* reload (reload.h); never stops the process */
    struct notify notify;    /* systemd: READY, WATCHDOG, STOPPING */
    const char *config_path; /* borrowed; NULL = none */
    const struct config_overrides *overrides; /* borrowed; may be NULL */
    struct reload_hook reload_hooks[RELOAD_MAX_HOOKS];
    size_t nreload_hooks;
    struct config **reloaded; /* configs SIGHUP loaded, freed at the end */
    size_t nreloaded;
    struct watchdog *watchdog; /* started by the first stop request; ends
                                  the process at the stop deadline */
    int stopping;              /* a stop was requested */
    int exit_code;             /* daemon_run's return value */
};

/*
 * Runs the gateway until SIGTERM/SIGINT (or daemon_request_stop) and a
 * clean shutdown: stop fetching, finish journal writes, commit, leave the
 * group, stop the forwarder and the admin server, close the journal.
 * Logs "kadx: running (group G, N routes)" once started and "kadx: stopped"
 * at the end. Returns the process exit code: 0 after a clean stop, 1 when
 * something could not start or failed at run time.
 */
int daemon_run(const struct config *cfg);

/* admin: daemon_run with hooks (borrowed for the run; NULL = none). */
int daemon_run_hooks(const struct config *cfg, const struct daemon_hooks *h);

/* Asks the daemon to stop as if it got SIGTERM; exit_code is what
 * daemon_run will return (the larger of all requests wins). Loop thread. */
void daemon_request_stop(struct kadx *k, int exit_code);

/*
 * Adapter for forwarder_settled_source.all: arg is the struct kadx; returns
 * the intake's settled watermarks (intake_settled_all), borrowed until the
 * loop runs again. *n = 0 while there is no intake.
 */
const struct journal_offset *kadx_settled_all(void *arg, size_t *n);

#endif
