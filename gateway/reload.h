/*
 * reload.h - SIGHUP: `kadx run` reads its config file again and applies
 * what can change while it runs (gateway/CONFIG.md, "Reload on SIGHUP").
 *
 * Reloadable: adx.* (URLs, auth and the secrets read from files or the
 * environment, timeout, proxy), the routes' ADX settings (database, table,
 * format, mapping, meta, dedupe_column), forwarder.*, journal.retention_ms,
 * admin.token, log.level, and whatever a registered hook takes. Needs a
 * restart: kafka.*, journal.path/max_bytes/sync, intake.*, admin.listen
 * (logged, running values kept); a change to the routes' names or topics
 * (the reload is refused). A config that does not load is refused with the
 * loader's message; the running configuration stays in force. SIGHUP never
 * stops the process.
 *
 * Other modules extend the reload with hooks (e.g. admin TLS reloading its
 * certificate): check runs first and may refuse the whole reload, apply
 * runs once every check passed and cannot fail.
 *
 * Threading: loop thread only.
 */
#ifndef KADX_RELOAD_H
#define KADX_RELOAD_H

#include <stddef.h>

struct kadx;
struct config;

struct reload_hook {
    /* May be NULL. < 0 refuses the reload: err says why (no secrets). */
    int (*check)(struct kadx *k, const struct config *next, void *arg,
                 char *err, size_t errlen);
    /* May be NULL. Switches to next (borrowed: valid until the daemon
     * ends). */
    void (*apply)(struct kadx *k, const struct config *next, void *arg);
    void *arg;
};

#define RELOAD_MAX_HOOKS 8

/* Registers a hook (copied) for the run. 0, or -ENOSPC. */
int reload_add_hook(struct kadx *k, const struct reload_hook *h);

/*
 * Reads k->config_path again and applies it (see above); logs the outcome
 * on "reload": what changed, what needs a restart, or why the file was
 * refused. Returns 0 when applied, < 0 when the running config was kept.
 */
int reload_run(struct kadx *k);

/*
 * Keeps in next the running values of the keys that need a restart and
 * writes their names (comma-separated, "" when none changed) into
 * restart. Returns 0, -EINVAL when the routes' names or topics differ (err
 * says which; next unchanged), or -ENOMEM. Exposed for the unit tests.
 */
int reload_keep_restart_keys(struct config *next, const struct config *run,
                             char *restart, size_t restartlen, char *err,
                             size_t errlen);

/*
 * The keys whose values differ between a and b (comma-separated, secrets
 * named but never shown, "" when none) into out. Returns 0 or -ENOMEM.
 */
int reload_changed_keys(const struct config *a, const struct config *b,
                        char *out, size_t outlen);

/* Frees the configs reloads made (daemon end, after every user stopped). */
void reload_release(struct kadx *k);

#endif
