/*
 * main.c - the kadx binary: parses the global flags, sets up logging and
 * dispatches to one subcommand (cli.h). Global flags may appear before or
 * after the command name; they are removed from argv before the command
 * sees it.
 */
#include "base/memtune.h"
#include "cmd/cli.h"
#include "emulators/emulators.h"
#include "gateway/log.h"
#include "kadx_version.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>

struct command {
    const char *name;
    cli_cmd_fn fn;
    const char *summary;
    int hidden;
};

static const struct command commands[] = {
    {"run", cmd_run, "run the gateway: Kafka -> journal -> ADX", 0},
    {"recover", cmd_recover, "inspect and repair a stopped gateway's journal",
     0},
    {"kql", cmd_kql,
     "print the KQL that prepares ADX for a config's routes (exactly once)", 0},
    {"produce", cmd_produce, "produce GamePlay events to a Kafka topic", 0},
    {"consume", cmd_consume, "print a Kafka topic's events as JSON lines", 0},
    {"demo", cmd_demo,
     "run mock Kafka + ADX emulator + gateway, print the leaderboard", 0},
    {"adx-emulator", cmd_adx_emulator,
     "run the local Azure Data Explorer emulator (development, tests)", 0},
    {"kafka-mock", cmd_kafka_mock,
     "run librdkafka's mock Kafka cluster (development, tests)", 0},
};

static void usage(FILE *f)
{
    fprintf(f, "usage: kadx [--log-level LEVEL] [--log-format FORMAT] "
               "COMMAND [ARGS]\n\n"
               "kadx streams Kafka events into Azure Data Explorer, durably "
               "and exactly once.\n\ncommands:\n");
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
        fprintf(f, "  %-14s %s\n", commands[i].name, commands[i].summary);
    }
    fprintf(f, "\nglobal options:\n"
               "  --log-level LEVEL    error, warn, info (default), debug\n"
               "  --log-format FORMAT  text (default) or json lines, on "
               "stderr\n"
               "  -h, --help           this help; 'kadx COMMAND --help' for "
               "a command\n"
               "  -V, --version        print the version\n");
}

/*
 * Removes --log-level/--log-format (both "--x v" and "--x=v") from argv.
 * Returns 0, or EXIT_USAGE after printing why.
 */
static int take_global_flags(int *argc, char **argv, enum log_level *level,
                             enum log_format *format)
{
    int out = 1;

    for (int i = 1; i < *argc; i++) {
        const char *a = argv[i];
        const char *val = NULL;
        int is_level = 0;
        int is_format = 0;

        if (strcmp(a, "--") == 0) {
            while (i < *argc) {
                argv[out++] = argv[i++];
            }
            break;
        }
        if (strncmp(a, "--log-level", 11) == 0 &&
            (a[11] == '\0' || a[11] == '=')) {
            is_level = 1;
            val = a[11] == '=' ? a + 12 : NULL;
        } else if (strncmp(a, "--log-format", 12) == 0 &&
                   (a[12] == '\0' || a[12] == '=')) {
            is_format = 1;
            val = a[12] == '=' ? a + 13 : NULL;
        }
        if (!is_level && !is_format) {
            argv[out++] = argv[i];
            continue;
        }
        if (val == NULL) {
            if (i + 1 >= *argc) {
                fprintf(stderr, "kadx: option '%s' needs a value\n", a);
                return EXIT_USAGE;
            }
            val = argv[++i];
        }
        if (is_level && log_level_parse(val, level) < 0) {
            fprintf(stderr,
                    "kadx: bad --log-level '%s' (error, warn, info, "
                    "debug)\n",
                    val);
            return EXIT_USAGE;
        }
        if (is_format && log_format_parse(val, format) < 0) {
            fprintf(stderr, "kadx: bad --log-format '%s' (text, json)\n", val);
            return EXIT_USAGE;
        }
    }
    argv[out] = NULL;
    *argc = out;
    return 0;
}

/*
 * Secrets (client secrets, tokens, SASL passwords, the admin token) live
 * in this process's memory, so no core file may be written: RLIMIT_CORE 0,
 * and not dumpable (which also covers a core_pattern that pipes to a
 * collector). Sanitized test builds stay dumpable: LeakSanitizer attaches
 * to the process with ptrace to scan it at exit.
 */
static void no_core_files(void)
{
    const struct rlimit zero = {0, 0};

    (void)setrlimit(RLIMIT_CORE, &zero);
#ifndef __SANITIZE_ADDRESS__
    (void)prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
#endif
}

int main(int argc, char **argv)
{
    enum log_level level = LOG_INFO;
    enum log_format format = LOG_TEXT;
    int rc;

    no_core_files();
    memtune_apply(); /* base/memtune.h */
    /* Everything kadx writes (journal and its -wal/-shm, lock, settled
     * file, exports, snapshots, logs) holds event payloads or state: owner
     * only, whatever umask it was started with. The modules also pass 0600
     * themselves where they create files (storage/README.md, Permissions). */
    umask(077);
    /* A closed peer must give EPIPE, not kill the daemon. */
    signal(SIGPIPE, SIG_IGN);

    rc = take_global_flags(&argc, argv, &level, &format);
    if (rc != 0) {
        return rc;
    }
    log_setup(level, format);

    if (argc < 2) {
        usage(stderr);
        return EXIT_USAGE;
    }
    if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0 ||
        strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(argv[1], "-V") == 0 || strcmp(argv[1], "--version") == 0 ||
        strcmp(argv[1], "version") == 0) {
        printf("kadx %s\n", KADX_VERSION);
        return 0;
    }
    if (argv[1][0] == '-') {
        fprintf(stderr, "kadx: unknown option '%s'\ntry 'kadx --help'\n",
                argv[1]);
        return EXIT_USAGE;
    }
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
        if (strcmp(argv[1], commands[i].name) == 0) {
            rc = commands[i].fn(argc - 1, argv + 1);
            log_release();
            return rc;
        }
    }
    fprintf(stderr, "kadx: unknown command '%s'\ntry 'kadx --help'\n", argv[1]);
    return EXIT_USAGE;
}
