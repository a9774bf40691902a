/*
 * cli.h - the kadx subcommands. main() parses the global flags
 * (--log-level, --log-format, --help, --version), then calls one of these
 * with argv[0] set to the command's name. Each returns the process exit
 * code: 0 success, 1 failure at run time, 2 usage or configuration error.
 * Each command owns its own `--help`.
 */
#ifndef KADX_CLI_H
#define KADX_CLI_H

#include <librdkafka/rdkafka.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define EXIT_USAGE 2

typedef int (*cli_cmd_fn)(int argc, char **argv);

int cmd_run(int argc, char **argv);     /* cmd/cmd_run.c */
int cmd_recover(int argc, char **argv); /* cmd/cmd_recover.c */
int cmd_kql(int argc, char **argv);     /* cmd/cmd_kql.c */
int cmd_produce(int argc, char **argv); /* cmd/cmd_produce.c */
int cmd_consume(int argc, char **argv); /* cmd/cmd_consume.c */
int cmd_demo(int argc, char **argv);    /* cmd/cmd_demo.c */

/*
 * Prints "kadx CMD: MSG" and "try 'kadx CMD --help'" to stderr; returns
 * EXIT_USAGE so callers can `return cli_usage_error(...)`.
 */
int cli_usage_error(const char *cmd, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/*
 * The usage error for what getopt_long returned c for outside the
 * command's options: ':' (an option without its value) or anything else
 * (an unknown option), naming argv[optind - 1]. Returns EXIT_USAGE.
 */
int cli_bad_option(const char *cmd, int c, char **argv);

/* True when argv holds -h or --help before any "--". */
int cli_wants_help(int argc, char **argv);

/* Parses a whole decimal integer in [min, max]; returns 0 or -EINVAL. */
int cli_parse_int(const char *s, int64_t min, int64_t max, int64_t *out);

/* Parses a whole finite decimal number in [min, max]; returns 0 or
 * -EINVAL. */
int cli_parse_double(const char *s, double min, double max, double *out);

/* The brokers `kadx produce` and `kadx consume` use without -b:
 * $KADX_BOOTSTRAP_SERVERS when set and not empty, else
 * CLI_DEFAULT_BROKERS. */
#define CLI_DEFAULT_BROKERS "127.0.0.1:9092"
const char *cli_default_brokers(void);

/* librdkafka properties given as -X KEY=VALUE (borrowed from argv). */
#define CLI_MAX_PROPS 64
struct cli_props {
    const char *v[CLI_MAX_PROPS];
    size_t n;
};

/* Adds one -X argument; returns 0, or a usage error naming it (exit 2). */
int cli_props_add(const char *cmd, struct cli_props *p, const char *arg);

/* Sets every property on conf; on a refusal prints "kadx CMD: -X KEY:
 * why" and returns -EINVAL. */
int cli_props_apply(const char *cmd, const struct cli_props *p,
                    rd_kafka_conf_t *conf);

#endif
