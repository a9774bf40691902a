/*
 * reload.c - SIGHUP reload of `kadx run`'s configuration (reload.h).
 *
 * The new file is loaded and validated exactly as at start; the keys that
 * need a restart get their running values back (so every module sees one
 * consistent struct config), the hooks check, the forwarder switches, the
 * hooks apply. Every config a reload made stays allocated until the daemon
 * ends: a batch in flight, a token provider or the intake may still hold
 * pointers into the one it started with. A reload costs one config's memory
 * (a few KiB).
 *
 * Runs on the loop thread (SIGHUP arrives through uv_signal_t).
 */
#include "gateway/reload.h"

#include "gateway/config.h"
#include "gateway/daemon.h"
#include "gateway/forwarder.h"
#include "gateway/log.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    if (err == NULL || errlen == 0) {
        return;
    }
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* Appends ", name" (or "name") to out; marks "..." when out is full. */
static void add_name(char *out, size_t outlen, const char *name)
{
    size_t n = strlen(out);

    if (n + strlen(name) + 3 >= outlen) {
        if (n + 4 < outlen && (n < 3 || strcmp(out + n - 3, "...") != 0)) {
            snprintf(out + n, outlen - n, "...");
        }
        return;
    }
    snprintf(out + n, outlen - n, "%s%s", n > 0 ? ", " : "", name);
}

static int str_eq(const char *a, const char *b)
{
    if (a == NULL || b == NULL) {
        return a == b;
    }
    return strcmp(a, b) == 0;
}

static int strv_eq(char **a, size_t na, char **b, size_t nb)
{
    if (na != nb) {
        return 0;
    }
    for (size_t i = 0; i < na; i++) {
        if (!str_eq(a[i], b[i])) {
            return 0;
        }
    }
    return 1;
}

static void strv_free(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(v[i]);
    }
    free(v);
}

/* *dst = a copy of src[0..n) (owned); 0 or -ENOMEM. */
static int strv_dup(char ***dst, char **src, size_t n)
{
    char **v = calloc(n ? n : 1, sizeof(*v));

    if (v == NULL) {
        return -ENOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        v[i] = strdup(src[i]);
        if (v[i] == NULL) {
            strv_free(v, i);
            return -ENOMEM;
        }
    }
    *dst = v;
    return 0;
}

static int str_dup(char **dst, const char *src)
{
    char *s = NULL;

    if (src != NULL && (s = strdup(src)) == NULL) {
        return -ENOMEM;
    }
    free(*dst);
    *dst = s;
    return 0;
}

int reload_keep_restart_keys(struct config *next, const struct config *run,
                             char *restart, size_t restartlen, char *err,
                             size_t errlen)
{
    char **keys = NULL;
    char **values = NULL;
    char **topics = NULL;

    restart[0] = '\0';
    if (next->nroutes != run->nroutes) {
        set_err(err, errlen,
                "the number of routes changed (%zu -> %zu): restart kadx to "
                "apply",
                run->nroutes, next->nroutes);
        return -EINVAL;
    }
    for (size_t i = 0; i < run->nroutes; i++) {
        const struct config_route *a = &run->routes[i];
        const struct config_route *b = &next->routes[i];

        if (!str_eq(a->name, b->name) || !str_eq(a->topic, b->topic) ||
            !str_eq(a->topic_regex, b->topic_regex)) {
            set_err(err, errlen,
                    "routes[%zu] ('%s') changed its name or topic: restart "
                    "kadx to apply",
                    i, a->name);
            return -EINVAL;
        }
    }
    /* copies first (they can fail), then nothing can */
    if (strv_dup(&keys, run->kafka.keys, run->kafka.n) < 0 ||
        strv_dup(&values, run->kafka.values, run->kafka.n) < 0 ||
        strv_dup(&topics, run->intake.topics, run->intake.ntopics) < 0) {
        goto nomem;
    }
    if (!strv_eq(run->kafka.keys, run->kafka.n, next->kafka.keys,
                 next->kafka.n) ||
        !strv_eq(run->kafka.values, run->kafka.n, next->kafka.values,
                 next->kafka.n)) {
        add_name(restart, restartlen, "kafka");
    }
    if (!str_eq(run->journal.path, next->journal.path)) {
        add_name(restart, restartlen, "journal.path");
    }
    if (run->journal.max_bytes != next->journal.max_bytes) {
        add_name(restart, restartlen, "journal.max_bytes");
    }
    if (run->journal.sync_full != next->journal.sync_full) {
        add_name(restart, restartlen, "journal.sync");
    }
    if (run->journal.reserve_bytes != next->journal.reserve_bytes) {
        add_name(restart, restartlen, "journal.reserve_bytes");
    }
    if (run->intake.skip_tombstones != next->intake.skip_tombstones ||
        run->intake.high_water_bytes != next->intake.high_water_bytes ||
        run->intake.low_water_bytes != next->intake.low_water_bytes ||
        !strv_eq(run->intake.topics, run->intake.ntopics, next->intake.topics,
                 next->intake.ntopics)) {
        add_name(restart, restartlen, "intake");
    }
    if (!str_eq(run->admin.listen, next->admin.listen)) {
        add_name(restart, restartlen, "admin.listen");
    }
    if (run->admin.max_connections != next->admin.max_connections ||
        run->admin.max_requests_per_s != next->admin.max_requests_per_s) {
        add_name(restart, restartlen, "admin.max_connections/requests_per_s");
    }
    if ((run->admin.tls_cert == NULL) != (next->admin.tls_cert == NULL)) {
        add_name(restart, restartlen, "admin.tls_cert (https on/off)");
    }
    if (run->adx.keepalive_idle_ms != next->adx.keepalive_idle_ms) {
        add_name(restart, restartlen, "adx.keepalive_idle_ms");
        next->adx.keepalive_idle_ms = run->adx.keepalive_idle_ms;
    }
    if (!str_eq(run->connector_name, next->connector_name)) {
        add_name(restart, restartlen, "name");
    }
    if (str_dup(&next->journal.path, run->journal.path) < 0 ||
        str_dup(&next->connector_name, run->connector_name) < 0 ||
        str_dup(&next->admin.listen, run->admin.listen) < 0) {
        goto nomem;
    }
    if ((run->admin.tls_cert == NULL) != (next->admin.tls_cert == NULL) &&
        (str_dup(&next->admin.tls_cert, run->admin.tls_cert) < 0 ||
         str_dup(&next->admin.tls_key, run->admin.tls_key) < 0)) {
        goto nomem;
    }
    strv_free(next->kafka.keys, next->kafka.n);
    strv_free(next->kafka.values, next->kafka.n);
    next->kafka.keys = keys;
    next->kafka.values = values;
    next->kafka.n = run->kafka.n;
    strv_free(next->intake.topics, next->intake.ntopics);
    next->intake = run->intake;
    next->intake.topics = topics;
    next->journal.max_bytes = run->journal.max_bytes;
    next->journal.sync_full = run->journal.sync_full;
    next->journal.reserve_bytes = run->journal.reserve_bytes;
    next->admin.max_connections = run->admin.max_connections;
    next->admin.max_requests_per_s = run->admin.max_requests_per_s;
    next->from_connector = run->from_connector;
    return 0;

nomem:
    strv_free(keys, keys ? run->kafka.n : 0);
    strv_free(values, values ? run->kafka.n : 0);
    strv_free(topics, topics ? run->intake.ntopics : 0);
    set_err(err, errlen, "out of memory");
    return -ENOMEM;
}

/* Walks a and b (config_to_json's output) and names what differs. */
static void json_diff(const cJSON *a, const cJSON *b, const char *path,
                      char *out, size_t outlen)
{
    char sub[256];

    if (cJSON_IsObject(a) && cJSON_IsObject(b)) {
        for (const cJSON *x = a->child; x != NULL; x = x->next) {
            snprintf(sub, sizeof(sub), "%s%s%s", path, path[0] ? "." : "",
                     x->string);
            json_diff(x, cJSON_GetObjectItemCaseSensitive(b, x->string), sub,
                      out, outlen);
        }
        for (const cJSON *y = b->child; y != NULL; y = y->next) {
            if (cJSON_GetObjectItemCaseSensitive(a, y->string) == NULL) {
                snprintf(sub, sizeof(sub), "%s%s%s", path, path[0] ? "." : "",
                         y->string);
                add_name(out, outlen, sub);
            }
        }
        return;
    }
    if (cJSON_IsArray(a) && cJSON_IsArray(b) &&
        cJSON_GetArraySize(a) == cJSON_GetArraySize(b) &&
        strcmp(path, "routes") == 0) {
        int i = 0;

        for (const cJSON *x = a->child, *y = b->child; x != NULL && y != NULL;
             x = x->next, y = y->next, i++) {
            snprintf(sub, sizeof(sub), "%s[%d]", path, i);
            json_diff(x, y, sub, out, outlen);
        }
        return;
    }
    if (a == NULL || b == NULL || !cJSON_Compare(a, b, 1)) {
        add_name(out, outlen, path);
    }
}

int reload_changed_keys(const struct config *a, const struct config *b,
                        char *out, size_t outlen)
{
    char *ja = config_to_json(a);
    char *jb = config_to_json(b);
    cJSON *x = ja ? cJSON_Parse(ja) : NULL;
    cJSON *y = jb ? cJSON_Parse(jb) : NULL;
    int rc = 0;

    out[0] = '\0';
    if (x == NULL || y == NULL) {
        rc = -ENOMEM;
        goto out;
    }
    json_diff(x, y, "", out, outlen);
    /* config_to_json masks secrets: compare them here, name them only */
    if (!str_eq(a->adx.auth.client_secret, b->adx.auth.client_secret)) {
        add_name(out, outlen, "adx.auth.client_secret");
    }
    if (!str_eq(a->adx.auth.token, b->adx.auth.token)) {
        add_name(out, outlen, "adx.auth.token");
    }
    if (!str_eq(a->admin.token, b->admin.token)) {
        add_name(out, outlen, "admin.token");
    }
    if (!str_eq(a->adx.proxy, b->adx.proxy) && a->adx.proxy != NULL &&
        b->adx.proxy != NULL && strstr(out, "adx.proxy") == NULL) {
        add_name(out, outlen, "adx.proxy");
    }
out:
    cJSON_Delete(x);
    cJSON_Delete(y);
    free(ja);
    free(jb);
    return rc;
}

int reload_add_hook(struct kadx *k, const struct reload_hook *h)
{
    if (k->nreload_hooks >= RELOAD_MAX_HOOKS) {
        return -ENOSPC;
    }
    k->reload_hooks[k->nreload_hooks++] = *h;
    return 0;
}

static int keep(struct kadx *k, struct config *next)
{
    struct config **v;

    v = realloc(k->reloaded, (k->nreloaded + 1) * sizeof(*v));
    if (v == NULL) {
        return -ENOMEM;
    }
    k->reloaded = v;
    v[k->nreloaded++] = next;
    return 0;
}

int reload_run(struct kadx *k)
{
    struct config *next = NULL;
    char err[512] = "";
    char restart[256];
    char changed[1024];
    int rc;

    if (k->config_path == NULL) {
        log_warn("reload", "SIGHUP: no config file to read again (kept)");
        return -ENOENT;
    }
    if (k->stopping) {
        log_warn("reload", "SIGHUP while stopping: ignored");
        return -ECANCELED;
    }
    notify_reloading();
    rc =
        config_load_file(k->config_path, k->overrides, &next, err, sizeof(err));
    if (rc < 0) {
        log_error("reload",
                  "'%s' not applied, the running configuration stays: %s",
                  k->config_path, err);
        notify_reloaded("running (last reload refused)");
        return rc;
    }
    rc = reload_keep_restart_keys(next, k->cfg, restart, sizeof(restart), err,
                                  sizeof(err));
    if (rc == 0) {
        rc = reload_changed_keys(k->cfg, next, changed, sizeof(changed));
        if (rc < 0) {
            snprintf(err, sizeof(err), "out of memory");
        }
    }
    for (size_t i = 0; i < k->nreload_hooks && rc == 0; i++) {
        const struct reload_hook *h = &k->reload_hooks[i];

        if (h->check != NULL) {
            rc = h->check(k, next, h->arg, err, sizeof(err));
        }
    }
    if (rc == 0 && (rc = keep(k, next)) < 0) {
        snprintf(err, sizeof(err), "out of memory");
    }
    if (rc == 0 && k->forwarder != NULL) {
        rc = forwarder_reconfigure(k->forwarder, next, err, sizeof(err));
        if (rc < 0) {
            k->nreloaded--; /* not in use: freed below */
        }
    }
    if (rc < 0) {
        log_error("reload",
                  "'%s' not applied, the running configuration stays: %s",
                  k->config_path, err);
        config_free(next);
        notify_reloaded("running (last reload refused)");
        return rc;
    }
    for (size_t i = 0; i < k->nreload_hooks; i++) {
        const struct reload_hook *h = &k->reload_hooks[i];

        if (h->apply != NULL) {
            h->apply(k, next, h->arg);
        }
    }
    if (next->log_level >= 0) {
        log_set_level((enum log_level)next->log_level);
    }
    k->cfg = next;
    notify_reloaded("running");
    log_info("reload", "'%s' applied: %s", k->config_path,
             changed[0] ? changed : "no change");
    if (restart[0] != '\0') {
        log_warn("reload",
                 "changed but needs a restart (running values kept): %s",
                 restart);
    }
    return 0;
}

void reload_release(struct kadx *k)
{
    for (size_t i = 0; i < k->nreloaded; i++) {
        config_free(k->reloaded[i]);
    }
    free(k->reloaded);
    k->reloaded = NULL;
    k->nreloaded = 0;
}
