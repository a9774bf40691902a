/*
 * cmd_produce.c - `kadx produce`: the GamePlay event generator (the seed's
 * runProducer.py). Two modes:
 *
 *  - single (default): shows one event, asks `publish? [Y/n]` on stdin,
 *    sends it on yes and waits for its delivery report, until EOF, `q` or
 *    -e N events offered;
 *  - loop (-l): sends -e N events (10 by default, 0 = until Ctrl-C),
 *    optionally paced at --rate events/s, with progress on stderr once a
 *    second and a final `produced N events to TOPIC` on stdout.
 *
 * Pacing is by the clock, not a sleep per event: each turn sends every
 * event that is due by now (elapsed time x rate) and then waits in
 * rd_kafka_poll() until the next one is due, which also serves delivery
 * reports. Every message is keyed by its playerId. The command waits for
 * all delivery reports and exits 1 when any message was not delivered,
 * with librdkafka's reason. Single-threaded (librdkafka's own threads call
 * nothing of ours except the logger).
 */
#include "cmd/cli.h"
#include "gateway/gameplay.h"
#include "gateway/log.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <librdkafka/rdkafka.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define CMD            "produce"
#define DEFAULT_EVENTS 10
#define MAX_ANSWER     256
/* The biggest burst sent before the loop polls and checks for Ctrl-C. */
#define MAX_BURST 10000

/* Set by the SIGINT/SIGTERM handler, read by the loops (the only global). */
static volatile sig_atomic_t interrupted;

struct produce_opts {
    const char *topic;
    const char *brokers;
    int loop;
    int64_t events; /* -1 = not given */
    double rate;    /* events/s, 0 = as fast as possible */
    int32_t players;
    int32_t games;
    uint64_t seed;
    int print;
    struct cli_props props; /* -X */
};

struct produce_state {
    int64_t sent;
    int64_t delivered;
    int64_t failed;
    char first_error[256];
    /* The last delivery report, for single mode's answer. */
    int32_t last_partition;
    int64_t last_offset;
    int last_err;
};

static void usage(void)
{
    printf(
        "usage: kadx produce -t TOPIC [-b BROKERS] [-l] [-e N] [--rate R]\n"
        "                    [--players P] [--games G] [--seed S] [--print]\n"
        "                    [-X KEY=VALUE ...]\n"
        "\n"
        "Produces GamePlay events, keyed by playerId, as JSON values:\n"
        "  {\"playerId\":int,\"gameId\":int,\"win\":long,\"stake\":int,\n"
        "   \"eventTime\":\"2026-01-31T12:00:00.123Z\"}\n"
        "\n"
        "Single mode (default) shows each event and asks 'publish? [Y/n]' on\n"
        "stdin (Enter or y sends it, n skips it, q or end of input stops).\n"
        "Loop mode (-l) sends N events without asking, with progress on\n"
        "stderr and a final line 'produced N events to TOPIC' on stdout.\n"
        "\n"
        "options:\n"
        "  -t, --topic TOPIC      topic to produce to (required)\n"
        "  -b, --brokers LIST     bootstrap servers (default: "
        "$KADX_BOOTSTRAP_SERVERS,\n"
        "                         else " CLI_DEFAULT_BROKERS ")\n"
        "  -l, --loop             loop mode: send without asking\n"
        "  -e, --events N         loop mode: events to send (default %d, 0 = "
        "until\n"
        "                         Ctrl-C); single mode: events to offer\n"
        "      --rate R           loop mode: events per second (default: as "
        "fast\n"
        "                         as possible)\n"
        "      --players P        number of distinct players (default 100)\n"
        "      --games G          number of distinct games (default 10)\n"
        "      --seed S           seed for reproducible events (default: "
        "random)\n"
        "      --print            loop mode: also print each event on stdout\n"
        "  -X KEY=VALUE           librdkafka producer property (repeatable),\n"
        "                         e.g. -X message.timeout.ms=5000\n"
        "\n"
        "Exit status: 0 all events delivered, 1 a delivery or Kafka error, 2 "
        "usage.\n",
        DEFAULT_EVENTS);
}

static void on_signal(int sig)
{
    (void)sig;
    interrupted++;
}

static int64_t mono_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int valid_topic(const char *t)
{
    size_t n = strlen(t);

    if (n == 0 || n > 249 || strcmp(t, ".") == 0 || strcmp(t, "..") == 0) {
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        char c = t[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-')) {
            return 0;
        }
    }
    return 1;
}

static int parse_args(int argc, char **argv, struct produce_opts *o)
{
    enum { OPT_RATE = 256, OPT_PLAYERS, OPT_GAMES, OPT_SEED, OPT_PRINT };
    static const struct option longopts[] = {
        {"topic", required_argument, NULL, 't'},
        {"brokers", required_argument, NULL, 'b'},
        {"loop", no_argument, NULL, 'l'},
        {"events", required_argument, NULL, 'e'},
        {"rate", required_argument, NULL, OPT_RATE},
        {"players", required_argument, NULL, OPT_PLAYERS},
        {"games", required_argument, NULL, OPT_GAMES},
        {"seed", required_argument, NULL, OPT_SEED},
        {"print", no_argument, NULL, OPT_PRINT},
        {NULL, 0, NULL, 0},
    };
    int64_t v;
    int c;

    memset(o, 0, sizeof(*o));
    o->brokers = cli_default_brokers();
    o->events = -1;
    o->players = 100;
    o->games = 10;
    optind = 1;
    opterr = 0;
    for (;;) {
        c = getopt_long(argc, argv, ":t:b:le:X:", longopts, NULL);
        if (c == -1) {
            break;
        }
        switch (c) {
        case 't':
            o->topic = optarg;
            break;
        case 'b':
            o->brokers = optarg;
            break;
        case 'l':
            o->loop = 1;
            break;
        case 'e':
            if (cli_parse_int(optarg, 0, INT64_MAX / 2, &v) < 0) {
                return cli_usage_error(CMD, "bad event count '%s'", optarg);
            }
            o->events = v;
            break;
        case OPT_RATE:
            if (cli_parse_double(optarg, 0, 1e9, &o->rate) < 0) {
                return cli_usage_error(CMD, "bad --rate '%s'", optarg);
            }
            break;
        case OPT_PLAYERS:
            if (cli_parse_int(optarg, 1, GAMEPLAY_MAX_PLAYERS, &v) < 0) {
                return cli_usage_error(CMD, "bad --players '%s' (1..%d)",
                                       optarg, GAMEPLAY_MAX_PLAYERS);
            }
            o->players = (int32_t)v;
            break;
        case OPT_GAMES:
            if (cli_parse_int(optarg, 1, GAMEPLAY_MAX_GAMES, &v) < 0) {
                return cli_usage_error(CMD, "bad --games '%s' (1..%d)", optarg,
                                       GAMEPLAY_MAX_GAMES);
            }
            o->games = (int32_t)v;
            break;
        case OPT_SEED:
            if (cli_parse_int(optarg, 1, INT64_MAX, &v) < 0) {
                return cli_usage_error(CMD, "bad --seed '%s'", optarg);
            }
            o->seed = (uint64_t)v;
            break;
        case OPT_PRINT:
            o->print = 1;
            break;
        case 'X':
            if (cli_props_add(CMD, &o->props, optarg) != 0) {
                return EXIT_USAGE;
            }
            break;
        default:
            return cli_bad_option(CMD, c, argv);
        }
    }
    if (optind < argc) {
        return cli_usage_error(CMD, "unexpected argument '%s'", argv[optind]);
    }
    if (o->topic == NULL) {
        return cli_usage_error(CMD, "-t TOPIC is required");
    }
    if (!valid_topic(o->topic)) {
        return cli_usage_error(CMD,
                               "bad topic name '%s' (letters, digits, '.', "
                               "'_', '-'; at most 249)",
                               o->topic);
    }
    if (o->brokers[0] == '\0') {
        return cli_usage_error(CMD, "empty broker list");
    }
    if (!o->loop && o->rate > 0) {
        return cli_usage_error(CMD, "--rate needs loop mode (-l)");
    }
    if (!o->loop && o->print) {
        return cli_usage_error(CMD, "--print needs loop mode (-l)");
    }
    if (o->loop && o->events < 0) {
        o->events = DEFAULT_EVENTS;
    }
    return 0;
}

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *msg,
                        void *opaque)
{
    struct produce_state *st = opaque;

    (void)rk;
    st->last_err = msg->err;
    st->last_partition = msg->partition;
    st->last_offset = msg->offset;
    if (msg->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        st->delivered++;
        return;
    }
    if (st->failed++ == 0) {
        snprintf(st->first_error, sizeof(st->first_error), "%s",
                 rd_kafka_err2str(msg->err));
    }
}

/* librdkafka's log lines go through kadx's logger (masking, format). */
static void on_kafka_log(const rd_kafka_t *rk, int level, const char *fac,
                         const char *buf)
{
    enum log_level l = level <= 4   ? LOG_WARN
                       : level <= 6 ? LOG_INFO
                                    : LOG_DEBUG;

    (void)rk;
    if (l <= log_get_level()) {
        log_msg(l, "kafka", "%s: %s", fac, buf);
    }
}

static rd_kafka_t *make_producer(const struct produce_opts *o,
                                 struct produce_state *st)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    char errstr[512];
    rd_kafka_t *rk;

    if (rd_kafka_conf_set(conf, "bootstrap.servers", o->brokers, errstr,
                          sizeof(errstr)) != RD_KAFKA_CONF_OK ||
        rd_kafka_conf_set(conf, "client.id", "kadx-produce", errstr,
                          sizeof(errstr)) != RD_KAFKA_CONF_OK ||
        /* a console tool should not wait 5 minutes for a dead broker */
        rd_kafka_conf_set(conf, "message.timeout.ms", "30000", errstr,
                          sizeof(errstr)) != RD_KAFKA_CONF_OK) {
        fprintf(stderr, "kadx produce: %s\n", errstr);
        goto fail;
    }
    if (cli_props_apply(CMD, &o->props, conf) < 0) {
        goto fail;
    }
    rd_kafka_conf_set_log_cb(conf, on_kafka_log);
    rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
    rd_kafka_conf_set_opaque(conf, st);
    rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
    if (rk == NULL) {
        fprintf(stderr, "kadx produce: cannot create producer: %s\n", errstr);
        goto fail;
    }
    return rk; /* rk owns conf now */
fail:
    rd_kafka_conf_destroy(conf);
    return NULL;
}

/*
 * Enqueues one event. Waits (serving delivery reports) while librdkafka's
 * queue is full. Returns 0, or -EIO with the reason on stderr.
 */
static int send_event(rd_kafka_t *rk, const struct produce_opts *o,
                      struct produce_state *st, const struct gameplay_event *ev,
                      const char *json, size_t len)
{
    char key[16];
    int klen = snprintf(key, sizeof(key), "%d", (int)ev->player_id);

    for (;;) {
        rd_kafka_resp_err_t err = rd_kafka_producev(
            rk, RD_KAFKA_V_TOPIC(o->topic), RD_KAFKA_V_KEY(key, (size_t)klen),
            RD_KAFKA_V_VALUE((void *)json, len),
            RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);

        if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
            st->sent++;
            return 0;
        }
        if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
            fprintf(stderr, "kadx produce: cannot produce to '%s': %s\n",
                    o->topic, rd_kafka_err2str(err));
            return -EIO;
        }
        rd_kafka_poll(rk, 50);
    }
}

/*
 * Waits until every enqueued message has its delivery report. A second
 * Ctrl-C gives up: the rest is purged and counted as failed.
 */
static void drain(rd_kafka_t *rk)
{
    int purged = 0;

    while (rd_kafka_outq_len(rk) > 0) {
        if (interrupted >= 2 && !purged) {
            rd_kafka_purge(rk,
                           RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
            purged = 1;
        }
        rd_kafka_flush(rk, 100);
    }
    rd_kafka_poll(rk, 0);
}

static void progress(const struct produce_state *st, int64_t total,
                     int64_t start_ns, int final, int tty)
{
    double secs = (double)(mono_ns() - start_ns) / 1e9;
    double rate = secs > 0 ? (double)st->sent / secs : 0;
    char of[32] = "";

    if (total > 0) {
        snprintf(of, sizeof(of), "/%" PRId64, total);
    }
    fprintf(stderr,
            "%sproduce: %" PRId64 "%s sent, %" PRId64 " delivered, %" PRId64
            " failed, %.0f events/s%s",
            tty ? "\r" : "", st->sent, of, st->delivered, st->failed, rate,
            tty && !final ? "" : "\n");
    fflush(stderr);
}

/* The next event of the game, as JSON into json (GAMEPLAY_JSON_MAX);
 * its length, or -EIO after saying why. */
static int next_event(struct gameplay *g, struct gameplay_event *ev, char *json)
{
    int n;

    gameplay_next(g, gameplay_now_ms(), ev);
    n = gameplay_format(ev, json, GAMEPLAY_JSON_MAX);
    if (n < 0) {
        fprintf(stderr, "kadx produce: cannot format event: %s\n",
                strerror(-n));
        return -EIO;
    }
    return n;
}

static int run_loop(rd_kafka_t *rk, const struct produce_opts *o,
                    struct produce_state *st, struct gameplay *g)
{
    int tty = isatty(STDERR_FILENO);
    int64_t start = mono_ns();
    int64_t last_report = start;
    char json[GAMEPLAY_JSON_MAX];

    while (!interrupted && (o->events == 0 || st->sent < o->events)) {
        int64_t now = mono_ns();
        int64_t due;

        if (o->rate > 0) {
            /* events due by now: one at t=0, then one every 1/rate s */
            due = (int64_t)((double)(now - start) / 1e9 * o->rate) + 1;
        } else {
            due = st->sent + MAX_BURST;
        }
        if (o->events > 0 && due > o->events) {
            due = o->events;
        }
        if (due - st->sent > MAX_BURST) {
            due = st->sent + MAX_BURST;
        }
        for (int64_t i = st->sent; i < due; i++) {
            struct gameplay_event ev;
            int n;

            n = next_event(g, &ev, json);
            if (n < 0) {
                return n;
            }
            if (send_event(rk, o, st, &ev, json, (size_t)n) < 0) {
                return -EIO;
            }
            if (o->print) {
                fwrite(json, 1, (size_t)n, stdout);
                fputc('\n', stdout);
            }
        }
        if (o->rate > 0 && (o->events == 0 || st->sent < o->events)) {
            /* wait for the next event's time, serving delivery reports */
            int64_t next = start + (int64_t)((double)st->sent / o->rate * 1e9);
            /* round up: a 0 ms poll until the due time would spin */
            int64_t wait_ms = (next - mono_ns() + 999999) / 1000000;

            rd_kafka_poll(rk, (int)(wait_ms < 0     ? 0
                                    : wait_ms > 100 ? 100
                                                    : wait_ms));
        } else {
            rd_kafka_poll(rk, 0);
        }
        if (mono_ns() - last_report >= 1000000000) {
            last_report = mono_ns();
            progress(st, o->events, start, 0, tty);
        }
    }
    drain(rk);
    progress(st, o->events, start, 1, tty);
    return 0;
}

/*
 * Reads one answer line from stdin into buf (trimmed, lowercased; a longer
 * line is cut at the cap). Returns 0, or -1 on EOF, error or Ctrl-C.
 */
static int read_answer(char *buf, size_t len)
{
    size_t n;
    size_t start = 0;

    if (fgets(buf, (int)len, stdin) == NULL) {
        return -1;
    }
    n = strlen(buf);
    if (n > 0 && buf[n - 1] != '\n') {
        int c = getchar();

        while (c != EOF && c != '\n') {
            c = getchar();
        }
    }
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r' ||
                     buf[n - 1] == ' ' || buf[n - 1] == '\t')) {
        buf[--n] = '\0';
    }
    while (buf[start] == ' ' || buf[start] == '\t') {
        start++;
    }
    memmove(buf, buf + start, n - start + 1);
    for (char *p = buf; *p != '\0'; p++) {
        if (*p >= 'A' && *p <= 'Z') {
            *p = (char)(*p - 'A' + 'a');
        }
    }
    return 0;
}

static int run_single(rd_kafka_t *rk, const struct produce_opts *o,
                      struct produce_state *st, struct gameplay *g)
{
    char json[GAMEPLAY_JSON_MAX];
    char answer[MAX_ANSWER];
    int64_t offered = 0;

    while (!interrupted && (o->events <= 0 || offered < o->events)) {
        struct gameplay_event ev;
        int n;

        n = next_event(g, &ev, json);
        if (n < 0) {
            return n;
        }
        offered++;
        printf("%s\n", json);
        for (;;) {
            printf("publish? [Y/n] ");
            fflush(stdout);
            if (read_answer(answer, sizeof(answer)) < 0) {
                printf("\n");
                return 0;
            }
            if (answer[0] == '\0' || strcmp(answer, "y") == 0 ||
                strcmp(answer, "yes") == 0) {
                int64_t before = st->delivered + st->failed;

                if (send_event(rk, o, st, &ev, json, (size_t)n) < 0) {
                    return -EIO;
                }
                while (st->delivered + st->failed == before) {
                    rd_kafka_flush(rk, 100);
                    if (interrupted >= 2) {
                        rd_kafka_purge(rk, RD_KAFKA_PURGE_F_QUEUE |
                                               RD_KAFKA_PURGE_F_INFLIGHT);
                    }
                }
                if (st->last_err == RD_KAFKA_RESP_ERR_NO_ERROR) {
                    printf("published to %s [%d] at offset %" PRId64 "\n",
                           o->topic, (int)st->last_partition, st->last_offset);
                } else {
                    printf("not published: %s\n",
                           rd_kafka_err2str(st->last_err));
                }
                break;
            }
            if (strcmp(answer, "n") == 0 || strcmp(answer, "no") == 0) {
                printf("skipped\n");
                break;
            }
            if (strcmp(answer, "q") == 0 || strcmp(answer, "quit") == 0) {
                return 0;
            }
            printf("please answer y (publish), n (skip) or q (quit)\n");
        }
    }
    return 0;
}

int cmd_produce(int argc, char **argv)
{
    struct produce_opts o;
    struct produce_state st;
    struct gameplay g;
    struct sigaction sa;
    rd_kafka_t *rk = NULL;
    int rc;

    if (cli_wants_help(argc, argv)) {
        usage();
        return 0;
    }
    rc = parse_args(argc, argv, &o);
    if (rc != 0) {
        return rc;
    }
    if (gameplay_init(&g, o.seed, o.players, o.games) < 0) {
        return cli_usage_error(CMD, "bad --players or --games");
    }
    memset(&st, 0, sizeof(st));
    rk = make_producer(&o, &st);
    if (rk == NULL) {
        return 1;
    }

    /* No SA_RESTART: Ctrl-C must interrupt the prompt's read. */
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    rc = o.loop ? run_loop(rk, &o, &st, &g) : run_single(rk, &o, &st, &g);
    drain(rk);
    rd_kafka_destroy(rk);

    printf("produced %" PRId64 " events to %s\n", st.delivered, o.topic);
    fflush(stdout);
    if (st.failed > 0) {
        fprintf(stderr,
                "kadx produce: %" PRId64 " of %" PRId64
                " events were not delivered: %s\n",
                st.failed, st.sent, st.first_error);
        return 1;
    }
    if (rc < 0) {
        return 1;
    }
    return 0;
}
