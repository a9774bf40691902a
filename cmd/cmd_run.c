/*
 * cmd_run.c - `kadx run`: load and validate the configuration, then run the
 * gateway (Kafka -> journal -> ADX) until SIGTERM/SIGINT.
 *
 * This file is part of the composition root (with main.c): it is the one
 * place in gateway/ that may start admin/ pieces. It runs on the main
 * thread. A configuration error exits 2 before anything is started;
 * `--check` prints the effective configuration (secrets masked) and exits 0.
 */
#include "admin/api.h" /* admin: the admin API (added by admin) */
#include "cmd/cli.h"
#include "cmd/online_check.h"
#include "gateway/config.h"
#include "gateway/daemon.h"
#include "gateway/log.h"
#include "storage/journal.h"

#include <malloc.h>
#include <stdlib.h>
#include <string.h>

/* reload: the admin API switches to the reloaded config (token) */
static void admin_reload_apply(struct kadx *k, const struct config *next,
                               void *arg)
{
    char err[512] = "";

    if (k->admin == NULL) {
        return;
    }
    if (admin_reconfigure(k->admin, next) < 0) {
        log_error("reload", "admin: out of memory (admin.token kept)");
    }
    /* the certificate files are read again even when their names did not
     * change: a renewed certificate replaces the old one in place */
    if (next->admin.tls_cert != NULL) {
        if (admin_reload_tls(k->admin, next->admin.tls_cert,
                             next->admin.tls_key, err, sizeof(err)) < 0) {
            log_error("reload",
                      "admin: TLS certificate not reloaded, the previous "
                      "one stays in use: %s",
                      err);
        } else {
            log_info("reload", "admin: TLS certificate reloaded from '%s'",
                     next->admin.tls_cert);
        }
    }
}

/* admin: start the admin API on the daemon's loop (added by admin) */
static int admin_started(struct kadx *k, void *arg)
{
    const struct config *cfg = k->cfg;
    struct admin_sources src;
    struct admin_options o;
    char err[512] = "";
    int rc;

    if (cfg->admin.listen == NULL) {
        return 0; /* "off" */
    }
    memset(&src, 0, sizeof(src));
    src.cfg = cfg;
    src.journal = k->journal;
    src.intake = k->intake;
    src.forwarder = k->forwarder;
    memset(&o, 0, sizeof(o));
    o.listen = cfg->admin.listen;
    o.token = cfg->admin.token;
    o.token_on_get = cfg->admin.token_on_get;
    o.tls_cert = cfg->admin.tls_cert;
    o.tls_key = cfg->admin.tls_key;
    o.max_connections = (size_t)cfg->admin.max_connections;
    o.max_requests_per_s = (double)cfg->admin.max_requests_per_s;
    rc = admin_start(&k->loop, &src, &o, &k->admin, err, sizeof(err));
    if (rc < 0) {
        log_error("admin", "cannot serve on %s: %s", cfg->admin.listen, err);
        return rc;
    }
    {
        struct reload_hook h = {NULL, admin_reload_apply, NULL};

        (void)reload_add_hook(k, &h);
    }
    log_info("admin", "listening on %.*s:%d%s%s",
             (int)(strrchr(cfg->admin.listen, ':') - cfg->admin.listen),
             cfg->admin.listen, admin_port(k->admin),
             cfg->admin.tls_cert != NULL ? " (https)" : "",
             cfg->admin.token == NULL ? ""
             : cfg->admin.token_on_get
                 ? " (token required except /healthz, /readyz)"
                 : " (token required for POST)");
    return 0;
}

/* admin: stop it before the journal closes (added by admin) */
static void admin_stopping(struct kadx *k, void *arg)
{
    admin_stop(k->admin);
    k->admin = NULL;
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: kadx run -c FILE [--check] [--online] "
            "[--bootstrap-servers B] "
            "[--group-id G]\n"
            "                [--admin-listen HOST:PORT|off]\n\n"
            "run the gateway: Kafka -> journal -> ADX.\n\n"
            "FILE is a kadx.json or a Kusto Kafka sink connector config "
            "(the bare map or\nthe {\"name\": ..., \"config\": {...}} body "
            "posted to Kafka Connect).\n\n"
            "options:\n"
            "  -c, --config FILE          the configuration file (required)\n"
            "  --check                    validate, print the effective "
            "config as JSON\n"
            "                             (secrets masked) and exit\n"
            "  --online                   with --check: also reach Kafka "
            "(metadata, topics,\n"
            "                             group) and ADX (token, tables, "
            "dedupe column,\n"
            "                             policies, mappings); one line per "
            "check on stderr,\n"
            "                             exit 1 when one fails\n"
            "  --bootstrap-servers B      Kafka bootstrap servers (overrides "
            "the file;\n"
            "                             else $KADX_BOOTSTRAP_SERVERS if the "
            "file has none)\n"
            "  --group-id G               Kafka consumer group (overrides the "
            "file;\n"
            "                             else $KADX_GROUP_ID if the file has "
            "none)\n"
            "  --admin-listen A           admin endpoint address, or off "
            "(overrides the\n"
            "                             file; a connector config's default "
            "is\n"
            "                             127.0.0.1:8081)\n"
            "  -h, --help                 this help\n\n"
            "exit status: 0 ok, 1 failure at run time, 2 usage or "
            "configuration error\n");
}

/* Matches "--name VALUE" and "--name=VALUE"; advances *i past a VALUE. */
static int take_value(int argc, char **argv, int *i, const char *name,
                      const char **val, int *missing)
{
    const char *a = argv[*i];
    size_t n = strlen(name);

    if (strncmp(a, name, n) != 0) {
        return 0;
    }
    if (a[n] == '=') {
        *val = a + n + 1;
        return 1;
    }
    if (a[n] != '\0') {
        return 0;
    }
    if (*i + 1 >= argc) {
        *missing = 1;
        return 1;
    }
    *val = argv[++*i];
    return 1;
}

/*
 * --check: says when journal.max_bytes cannot fit on the journal's disk
 * (what the filesystem grants now plus the journal's own file, minus
 * journal.reserve_bytes). A warning, not a refusal: the journal then obeys
 * the smaller effective cap and intake pauses there (INV-7).
 */
static void check_space(const struct config *cfg)
{
    struct journal_space sp;
    char err[512];

    if (journal_space_probe(cfg->journal.path, cfg->journal.max_bytes,
                            cfg->journal.reserve_bytes, &sp, err,
                            sizeof(err)) < 0) {
        log_warn("run", "journal: %s", err);
        return;
    }
    if (sp.disk_limited) {
        log_warn("run",
                 "journal.max_bytes %lld cannot fit on the disk of '%s': "
                 "%lld bytes free, %lld held by the journal, %lld kept in "
                 "reserve (journal.reserve_bytes): effective cap %lld bytes",
                 (long long)sp.max_bytes, cfg->journal.path,
                 (long long)sp.fs_free_bytes, (long long)sp.file_bytes,
                 (long long)sp.reserve_bytes, (long long)sp.effective_cap);
    }
}

int cmd_run(int argc, char **argv)
{
    struct config_overrides ov = {0};
    const char *path = NULL;
    struct config *cfg = NULL;
    char err[512];
    int check = 0;
    int online = 0; /* --check --online: Kafka and ADX too */
    int rc;

    if (cli_wants_help(argc, argv)) {
        usage(stdout);
        return 0;
    }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int missing = 0;

        if (strcmp(a, "--check") == 0) {
            check = 1;
        } else if (strcmp(a, "--online") == 0) {
            online = 1;
        } else if (take_value(argc, argv, &i, "--config", &path, &missing) ||
                   take_value(argc, argv, &i, "-c", &path, &missing) ||
                   take_value(argc, argv, &i, "--bootstrap-servers",
                              &ov.bootstrap_servers, &missing) ||
                   take_value(argc, argv, &i, "--group-id", &ov.group_id,
                              &missing) ||
                   take_value(argc, argv, &i, "--admin-listen",
                              &ov.admin_listen, &missing)) {
            if (missing) {
                return cli_usage_error("run", "option '%s' needs a value", a);
            }
        } else {
            return cli_usage_error("run", "unknown option '%s'", a);
        }
    }
    if (path == NULL) {
        return cli_usage_error("run", "a config file is required (-c FILE)");
    }
    if (online && !check) {
        return cli_usage_error("run", "--online goes with --check");
    }

    rc = config_load_file(path, &ov, &cfg, err, sizeof(err));
    if (rc < 0) {
        log_error("run", "%s", err);
        return EXIT_USAGE;
    }
    if (cfg->log_level >= 0) {
        log_set_level((enum log_level)cfg->log_level);
    }
    if (check) {
        char *json = config_to_json(cfg);

        check_space(cfg);

        if (json == NULL) {
            log_error("run", "out of memory");
            config_free(cfg);
            return 1;
        }
        printf("%s\n", json);
        free(json);
        fflush(stdout);
        /* the report goes to stderr: stdout stays the config's JSON */
        rc = online ? online_check(cfg, stderr) : 0;
        config_free(cfg);
        return rc;
    }

    /* At most 2 malloc arenas: the loop, the journal writer, the thread
     * pool (body building) and librdkafka's threads otherwise each keep
     * their own freed memory. bench_e2e at 200k events/s: peak RSS 52 MiB
     * instead of 61-62 MiB, same throughput (README, Benchmarks). */
    (void)mallopt(M_ARENA_MAX, 2);
    {
        /* admin: the admin API rides on the daemon's hooks */
        struct daemon_hooks hooks = {admin_started, admin_stopping, NULL, path,
                                     &ov};

        rc = daemon_run_hooks(cfg, &hooks);
    }

    config_free(cfg);
    return rc;
}
