/*
 * kafka_mock.c - `kadx kafka-mock`: librdkafka's mock Kafka cluster
 * (rd_kafka_mock_cluster_new) run as a process of its own, so that a test
 * can SIGKILL and restart kadx against the same cluster, and inject faults
 * from outside.
 *
 * On start it creates the brokers and the --topic topics, prints exactly one
 * line "bootstrap.servers=HOST:PORT,..." on stdout (flushed), then reads
 * commands on stdin, one per line, and answers each with one line, "ok" or
 * "error: ...":
 *
 *   create-topic NAME PARTITIONS      a topic (replication min(brokers, 3))
 *   broker-down ID | broker-up ID     disconnect / accept a broker (-1: all)
 *   push-error API_KEY ERRCODE COUNT  the next COUNT requests of API_KEY fail
 *                                     with ERRCODE (a Kafka error code, or
 *                                     -195 = transport: a disconnect)
 *   coordinator GROUP ID              make broker ID the group's coordinator
 *   rtt ID MS                         delay every response of broker ID
 *   quit                              exit 0
 *
 * EOF on stdin, SIGTERM or SIGINT also exit 0. The mock brokers run on
 * librdkafka's own threads; this file's thread only reads stdin and a
 * signalfd. The limits of librdkafka 2.0.2's mock cluster that callers must
 * know (measured; see gateway/INTAKE.md): a partition keeps only ~5 MiB (or
 * 100k message sets) and silently drops older data; a new group's first
 * join takes ~3 s and every later rebalance waits session.timeout.ms - 1 s;
 * there is no TLS or SASL; topics named by a client that do not exist are
 * auto-created (4 partitions) on metadata requests.
 */
#include "cmd/cli.h"
#include "emulators/emulators.h"

#include <errno.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#define MOCK_MAX_TOPICS     64
#define MOCK_LINE_MAX       1024
#define MOCK_MAX_PARTITIONS 10000
#define MOCK_MAX_ERRORS     100000

struct mock_topic {
    char name[250];
    int partitions;
};

struct kafka_mock {
    rd_kafka_t *rk;
    rd_kafka_mock_cluster_t *mc;
    int brokers;
};

/* Parses a whole decimal long in [lo, hi]; 0 or -EINVAL. */
static int mock_parse_long(const char *s, long lo, long hi, long *out)
{
    char *end = NULL;
    long v;

    if (s == NULL || *s == '\0') {
        return -EINVAL;
    }
    errno = 0;
    v = strtol(s, &end, 10);
    if (errno != 0 || *end != '\0' || v < lo || v > hi) {
        return -EINVAL;
    }
    *out = v;
    return 0;
}

/* "NAME:PARTITIONS" (or "NAME", 4 partitions) into *t; 0 or -EINVAL. */
static int mock_parse_topic(const char *arg, struct mock_topic *t)
{
    const char *colon = strrchr(arg, ':');
    size_t len = colon ? (size_t)(colon - arg) : strlen(arg);
    long n = 4;

    if (len == 0 || len >= sizeof(t->name)) {
        return -EINVAL;
    }
    if (colon != NULL &&
        mock_parse_long(colon + 1, 1, MOCK_MAX_PARTITIONS, &n) < 0) {
        return -EINVAL;
    }
    memcpy(t->name, arg, len);
    t->name[len] = '\0';
    t->partitions = (int)n;
    return 0;
}

static int mock_create_topic(struct kafka_mock *m, const char *name,
                             int partitions, char *err, size_t errlen)
{
    int rf = m->brokers < 3 ? m->brokers : 3;
    rd_kafka_resp_err_t e;

    e = rd_kafka_mock_topic_create(m->mc, name, partitions, rf);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
        snprintf(err, errlen, "create topic '%.200s': %s", name,
                 rd_kafka_err2str(e));
        return -EINVAL;
    }
    return 0;
}

/* Splits line (modified in place) on blanks into at most max words. */
static int mock_split(char *line, char **words, int max)
{
    int n = 0;
    char *p = line;

    while (*p != '\0') {
        while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n') {
            *p++ = '\0';
        }
        if (*p == '\0') {
            break;
        }
        if (n == max) {
            return -E2BIG;
        }
        words[n++] = p;
        while (*p != '\0' && *p != ' ' && *p != '\t' && *p != '\r' &&
               *p != '\n') {
            p++;
        }
    }
    return n;
}

/*
 * Runs one command line. Returns 0 (answer "ok"), 1 (quit), or a negative
 * errno with err filled (answer "error: ERR").
 */
static int mock_command(struct kafka_mock *m, char *line, char *err,
                        size_t errlen)
{
    char *w[5];
    int n = mock_split(line, w, 5);
    long a = 0;
    long b = 0;
    long c = 0;
    rd_kafka_resp_err_t e = RD_KAFKA_RESP_ERR_NO_ERROR;

    if (n < 0) {
        snprintf(err, errlen, "too many words");
        return -EINVAL;
    }
    if (n == 0) {
        snprintf(err, errlen, "empty command");
        return -EINVAL;
    }
    if (strcmp(w[0], "quit") == 0 && n == 1) {
        return 1;
    }
    if (strcmp(w[0], "create-topic") == 0 && n == 3) {
        if (strlen(w[1]) >= 250 ||
            mock_parse_long(w[2], 1, MOCK_MAX_PARTITIONS, &a) < 0) {
            snprintf(err, errlen, "usage: create-topic NAME PARTITIONS");
            return -EINVAL;
        }
        return mock_create_topic(m, w[1], (int)a, err, errlen);
    }
    if ((strcmp(w[0], "broker-down") == 0 || strcmp(w[0], "broker-up") == 0) &&
        n == 2) {
        if (mock_parse_long(w[1], -1, m->brokers, &a) < 0 || a == 0) {
            snprintf(err, errlen, "bad broker id '%s' (1..%d or -1)", w[1],
                     m->brokers);
            return -EINVAL;
        }
        e = w[0][7] == 'd' ? rd_kafka_mock_broker_set_down(m->mc, (int32_t)a)
                           : rd_kafka_mock_broker_set_up(m->mc, (int32_t)a);
    } else if (strcmp(w[0], "push-error") == 0 && n == 4) {
        rd_kafka_resp_err_t *errs;

        if (mock_parse_long(w[1], 0, 1000, &a) < 0 ||
            mock_parse_long(w[2], -200, 1000, &b) < 0 ||
            mock_parse_long(w[3], 1, MOCK_MAX_ERRORS, &c) < 0) {
            snprintf(err, errlen,
                     "usage: push-error API_KEY ERRCODE COUNT (count 1..%d)",
                     MOCK_MAX_ERRORS);
            return -EINVAL;
        }
        errs = calloc((size_t)c, sizeof(*errs));
        if (errs == NULL) {
            snprintf(err, errlen, "out of memory");
            return -ENOMEM;
        }
        for (long i = 0; i < c; i++) {
            errs[i] = (rd_kafka_resp_err_t)b;
        }
        rd_kafka_mock_push_request_errors_array(m->mc, (int16_t)a, (size_t)c,
                                                errs);
        free(errs);
    } else if (strcmp(w[0], "coordinator") == 0 && n == 3) {
        if (mock_parse_long(w[2], 1, m->brokers, &a) < 0) {
            snprintf(err, errlen, "usage: coordinator GROUP BROKER_ID");
            return -EINVAL;
        }
        e = rd_kafka_mock_coordinator_set(m->mc, "group", w[1], (int32_t)a);
    } else if (strcmp(w[0], "rtt") == 0 && n == 3) {
        if (mock_parse_long(w[1], -1, m->brokers, &a) < 0 || a == 0 ||
            mock_parse_long(w[2], 0, 600000, &b) < 0) {
            snprintf(err, errlen, "usage: rtt BROKER_ID MS");
            return -EINVAL;
        }
        e = rd_kafka_mock_broker_set_rtt(m->mc, (int32_t)a, (int)b);
    } else {
        snprintf(err, errlen, "unknown command '%s' or wrong arguments", w[0]);
        return -EINVAL;
    }
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
        snprintf(err, errlen, "%s", rd_kafka_err2str(e));
        return -EINVAL;
    }
    return 0;
}

/* The mock cluster's own client logs only warnings and worse. */
static void mock_log_cb(const rd_kafka_t *rk, int level, const char *fac,
                        const char *buf)
{
    if (level <= 4) {
        fprintf(stderr, "kafka-mock: %s: %s\n", fac, buf);
    }
}

static void mock_usage(FILE *f)
{
    fprintf(f, "usage: kadx kafka-mock [--brokers N] [--topic NAME:PARTITIONS "
               "...]\n\n"
               "run librdkafka's mock Kafka cluster as a process. Prints\n"
               "'bootstrap.servers=...' on stdout, then reads commands on "
               "stdin\n"
               "(one per line, answered 'ok' or 'error: ...'):\n"
               "  create-topic NAME PARTITIONS\n"
               "  broker-down ID | broker-up ID   (ID -1: every broker)\n"
               "  push-error API_KEY ERRCODE COUNT\n"
               "  coordinator GROUP ID\n"
               "  rtt ID MS\n"
               "  quit\n"
               "EOF on stdin, SIGTERM or SIGINT stop it (exit 0).\n\n"
               "options:\n"
               "  --brokers N              brokers, 1..16 (default 3)\n"
               "  --topic NAME[:PARTS]     create a topic (default 4 "
               "partitions);\n"
               "                           repeatable\n");
}

/*
 * Serves stdin until quit, EOF or a signal. sigfd is a signalfd for
 * SIGTERM/SIGINT. Returns 0.
 */
static int mock_serve(struct kafka_mock *m, int sigfd)
{
    char buf[MOCK_LINE_MAX];
    size_t used = 0;
    int skipping = 0;

    for (;;) {
        struct pollfd pfd[2] = {{.fd = 0, .events = POLLIN},
                                {.fd = sigfd, .events = POLLIN}};
        ssize_t r;

        if (poll(pfd, 2, -1) < 0) {
            if (errno == EINTR) {
                continue;
            }
            return 0;
        }
        if (pfd[1].revents != 0) {
            return 0;
        }
        if (pfd[0].revents == 0) {
            continue;
        }
        r = read(0, buf + used, sizeof(buf) - 1 - used);
        if (r < 0 && errno == EINTR) {
            continue;
        }
        if (r <= 0) {
            return 0;
        }
        used += (size_t)r;
        for (;;) {
            char *nl = memchr(buf, '\n', used);
            char err[512];
            size_t len;
            int rc;

            if (nl == NULL) {
                if (used == sizeof(buf) - 1) {
                    /* Over the cap: answer once, drop to the next line. */
                    if (!skipping) {
                        printf("error: line longer than %d bytes\n",
                               MOCK_LINE_MAX - 1);
                        fflush(stdout);
                    }
                    skipping = 1;
                    used = 0;
                }
                break;
            }
            *nl = '\0';
            len = (size_t)(nl - buf) + 1;
            if (skipping) {
                skipping = 0;
            } else {
                err[0] = '\0';
                rc = mock_command(m, buf, err, sizeof(err));
                if (rc == 1) {
                    printf("ok\n");
                    fflush(stdout);
                    return 0;
                }
                if (rc < 0) {
                    printf("error: %s\n", err);
                } else {
                    printf("ok\n");
                }
                fflush(stdout);
            }
            memmove(buf, buf + len, used - len);
            used -= len;
        }
    }
}

int cmd_kafka_mock(int argc, char **argv)
{
    struct mock_topic topics[MOCK_MAX_TOPICS];
    struct kafka_mock m = {.brokers = 3};
    rd_kafka_conf_t *conf = NULL;
    char errstr[512];
    int ntopics = 0;
    int sigfd = -1;
    sigset_t mask;
    int rc = 1;
    long v;

    if (cli_wants_help(argc, argv)) {
        mock_usage(stdout);
        return 0;
    }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];

        if (i + 1 >= argc &&
            (strcmp(a, "--brokers") == 0 || strcmp(a, "--topic") == 0)) {
            return cli_usage_error("kafka-mock", "option '%s' needs a value",
                                   a);
        }
        if (strcmp(a, "--brokers") == 0) {
            if (mock_parse_long(argv[++i], 1, 16, &v) < 0) {
                return cli_usage_error("kafka-mock",
                                       "bad --brokers '%s' (1..16)", argv[i]);
            }
            m.brokers = (int)v;
        } else if (strcmp(a, "--topic") == 0) {
            if (ntopics == MOCK_MAX_TOPICS) {
                return cli_usage_error("kafka-mock", "more than %d topics",
                                       MOCK_MAX_TOPICS);
            }
            if (mock_parse_topic(argv[++i], &topics[ntopics]) < 0) {
                return cli_usage_error("kafka-mock",
                                       "bad --topic '%s' (NAME:PARTITIONS, "
                                       "1..%d partitions)",
                                       argv[i], MOCK_MAX_PARTITIONS);
            }
            ntopics++;
        } else {
            return cli_usage_error("kafka-mock", "unknown argument '%s'", a);
        }
    }

    /* Block the stop signals before librdkafka starts threads: they are
     * read from a signalfd by this thread only. */
    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    if (sigprocmask(SIG_BLOCK, &mask, NULL) < 0) {
        fprintf(stderr, "kadx kafka-mock: sigprocmask: %s\n", strerror(errno));
        return 1;
    }
    sigfd = signalfd(-1, &mask, SFD_CLOEXEC);
    if (sigfd < 0) {
        fprintf(stderr, "kadx kafka-mock: signalfd: %s\n", strerror(errno));
        return 1;
    }

    conf = rd_kafka_conf_new();
    rd_kafka_conf_set_log_cb(conf, mock_log_cb);
    if (rd_kafka_conf_set(conf, "client.id", "kadx-kafka-mock", errstr,
                          sizeof(errstr)) != RD_KAFKA_CONF_OK) {
        fprintf(stderr, "kadx kafka-mock: %s\n", errstr);
        rd_kafka_conf_destroy(conf);
        goto close_sigfd;
    }
    m.rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
    if (m.rk == NULL) {
        fprintf(stderr, "kadx kafka-mock: %s\n", errstr);
        rd_kafka_conf_destroy(conf);
        goto close_sigfd;
    }
    m.mc = rd_kafka_mock_cluster_new(m.rk, m.brokers);
    if (m.mc == NULL) {
        fprintf(stderr, "kadx kafka-mock: cannot create the mock cluster\n");
        goto destroy_rk;
    }
    for (int i = 0; i < ntopics; i++) {
        if (mock_create_topic(&m, topics[i].name, topics[i].partitions, errstr,
                              sizeof(errstr)) < 0) {
            fprintf(stderr, "kadx kafka-mock: %s\n", errstr);
            goto destroy_cluster;
        }
    }
    printf("bootstrap.servers=%s\n", rd_kafka_mock_cluster_bootstraps(m.mc));
    fflush(stdout);

    rc = mock_serve(&m, sigfd);

destroy_cluster:
    rd_kafka_mock_cluster_destroy(m.mc);
destroy_rk:
    rd_kafka_destroy(m.rk);
close_sigfd:
    close(sigfd);
    return rc;
}
