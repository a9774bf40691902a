/*
 * cli.c - small helpers shared by the subcommands (see cli.h).
 */
#include "cmd/cli.h"

#include <assert.h>
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

int cli_usage_error(const char *cmd, const char *fmt, ...)
{
    va_list ap;

    assert(cmd != NULL);
    assert(fmt != NULL);

    fprintf(stderr, "kadx %s: ", cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\ntry 'kadx %s --help'\n", cmd);
    return EXIT_USAGE;
}

int cli_bad_option(const char *cmd, int c, char **argv)
{
    assert(cmd != NULL);
    assert(argv != NULL);

    if (c == ':') {
        return cli_usage_error(cmd, "option '%s' needs a value",
                               argv[optind - 1]);
    }
    return cli_usage_error(cmd, "unknown option '%s'", argv[optind - 1]);
}

int cli_wants_help(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0) {
            return 0;
        }
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            return 1;
        }
    }
    return 0;
}

int cli_parse_int(const char *s, int64_t min, int64_t max, int64_t *out)
{
    char *end;
    long long v;

    assert(s != NULL);
    assert(out != NULL);
    assert(min <= max);

    errno = 0;
    v = strtoll(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < min || v > max) {
        return -EINVAL;
    }
    *out = v;
    return 0;
}

int cli_parse_double(const char *s, double min, double max, double *out)
{
    char *end;
    double v;

    assert(s != NULL);
    assert(out != NULL);

    errno = 0;
    v = strtod(s, &end);
    if (errno != 0 || end == s || *end != '\0' || !isfinite(v) || v < min ||
        v > max) {
        return -EINVAL;
    }
    *out = v;
    return 0;
}

const char *cli_default_brokers(void)
{
    const char *env = getenv("KADX_BOOTSTRAP_SERVERS");

    return env != NULL && env[0] != '\0' ? env : CLI_DEFAULT_BROKERS;
}

int cli_props_add(const char *cmd, struct cli_props *p, const char *arg)
{
    assert(cmd != NULL);
    assert(p != NULL);
    assert(arg != NULL);

    if (strchr(arg, '=') == NULL || arg[0] == '=') {
        return cli_usage_error(cmd, "-X needs KEY=VALUE, got '%s'", arg);
    }
    if (p->n >= CLI_MAX_PROPS) {
        return cli_usage_error(cmd, "too many -X properties");
    }
    p->v[p->n++] = arg;
    return 0;
}

int cli_props_apply(const char *cmd, const struct cli_props *p,
                    rd_kafka_conf_t *conf)
{
    char errstr[512];

    assert(cmd != NULL);
    assert(p != NULL);
    assert(conf != NULL);

    for (size_t i = 0; i < p->n; i++) {
        char key[256];
        const char *eq = strchr(p->v[i], '=');
        size_t klen = (size_t)(eq - p->v[i]);

        if (klen >= sizeof(key)) {
            fprintf(stderr, "kadx %s: -X property name too long\n", cmd);
            return -EINVAL;
        }
        memcpy(key, p->v[i], klen);
        key[klen] = '\0';
        if (rd_kafka_conf_set(conf, key, eq + 1, errstr, sizeof(errstr)) !=
            RD_KAFKA_CONF_OK) {
            fprintf(stderr, "kadx %s: -X %s: %s\n", cmd, key, errstr);
            return -EINVAL;
        }
    }
    return 0;
}
