/*
 * cmd_demo.c - `kadx demo`: the whole pipeline on one machine, no outside
 * services. Starts three children of this same binary (/proc/self/exe):
 * `kadx kafka-mock` (librdkafka's mock cluster), `kadx adx-emulator` and,
 * once the emulator has the GamePlay table (setup.kql, embedded below),
 * `kadx run` with a config generated in a temporary directory. Then it
 * produces GamePlay events at a steady rate (gameplay.c, paced by the
 * clock), shows live progress once a second, waits until the emulator holds
 * every produced event, prints the leaderboard and the ingestion-latency
 * percentiles, and ends with `delivered N of M produced events`.
 *
 * Progress comes from the gateway's admin endpoint (/status) when it
 * answers, and from the emulator's row count (/_emulator/stats) always.
 * Children run in their own process group, so Ctrl-C reaches only the demo,
 * which then stops them in order (gateway, emulator, mock: SIGTERM, then
 * SIGKILL after a deadline). They also get PR_SET_PDEATHSIG, so they die
 * with the demo even when it is killed (demo_child.c). Single-threaded;
 * HTTP calls to the children are blocking libcurl calls on loopback with
 * short timeouts (demo_http.c).
 */
#include "cmd/cli.h"
#include "cmd/demo_child.h"
#include "cmd/demo_http.h"
#include "gateway/gameplay.h"
#include "gateway/log.h"

#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <getopt.h>
#include <inttypes.h>
#include <librdkafka/rdkafka.h>
#include <limits.h>
#include <math.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define CMD             "demo"
#define DEMO_TOPIC      "gameplay"
#define DEMO_PARTITIONS 4
#define DEMO_DB         "leaderboard"
#define DEMO_TABLE      "GamePlay"
#define DEMO_MAPPING    "gameplay_json_mapping"
#define MAX_BURST       10000

#define LEADERBOARD_KQL                                                        \
    "GamePlay | summarize TotalWin=sum(Win), Spins=count() by PlayerID | "     \
    "top 10 by TotalWin"
#define LATENCY_KQL                                                            \
    "GamePlay | extend Latency = ingestion_time() - EventTime | summarize "    \
    "percentiles(Latency, 50, 90, 99)"

/*
 * docker/kql/setup.kql, verbatim (tests/e2e/test_demo.py checks that `kadx
 * demo --print-kql` equals the file). Blocks are separated by blank lines;
 * the demo runs the ones starting with '.' as management commands.
 */
static const char setup_kql[] =
    "// setup.kql - the GamePlay table in database `leaderboard`, as kadx's "
    "docker\n"
    "// stack, `kadx demo` and a real Azure Data Explorer cluster need it.\n"
    "//\n"
    "// Format: one command or query per block; blocks are separated by blank\n"
    "// lines; lines starting with // are comments. Blocks starting with '.' "
    "are\n"
    "// management commands (POST /v1/rest/mgmt), the others are queries\n"
    "// (POST /v1/rest/query). docker/kql/apply.sh and `kadx demo` run the\n"
    "// management commands in order; run the queries whenever you like.\n"
    "//\n"
    "// On a real cluster: create the database `leaderboard` first (Azure "
    "portal),\n"
    "// then paste the management commands into the ADX web UI's query window\n"
    "// and run them one by one.\n"
    "\n"
    "// 1. Streaming ingestion, which kadx uses, must be enabled on the "
    "database\n"
    "//    (and on the cluster: Azure portal > Configurations > Streaming\n"
    "//    ingestion).\n"
    ".alter database leaderboard policy streamingingestion enable\n"
    "\n"
    "// 2. The table. KadxBatchId holds the id of the request that carried "
    "each\n"
    "//    row: kadx's exactly-once check (the route's dedupe_column).\n"
    ".create table GamePlay (PlayerID: int, GameID: int, Win: long, Stake: "
    "int, EventTime: datetime, KadxBatchId: string)\n"
    "\n"
    "// 3. How a `kadx produce` event maps onto it:\n"
    "//    "
    "{\"playerId\":7,\"gameId\":3,\"win\":20,\"stake\":10,\"eventTime\":\"..."
    "Z\"}\n"
    "//    plus the field kadx adds to each record (the route's "
    "meta.batch_id):\n"
    "//    \"kadx_batch_id\".\n"
    ".create table GamePlay ingestion json mapping 'gameplay_json_mapping' "
    "'[{\"column\":\"PlayerID\",\"Properties\":{\"Path\":\"$.playerId\"}},{"
    "\"column\":\"GameID\",\"Properties\":{\"Path\":\"$.gameId\"}},{\"column\":"
    "\"Win\",\"Properties\":{\"Path\":\"$.win\"}},{\"column\":\"Stake\","
    "\"Properties\":{\"Path\":\"$.stake\"}},{\"column\":\"EventTime\","
    "\"Properties\":{\"Path\":\"$.eventTime\"}},{\"column\":\"KadxBatchId\","
    "\"Properties\":{\"Path\":\"$.kadx_batch_id\"}}]'\n"
    "\n"
    "// 4. Exactly once: after an ambiguous failure kadx asks whether a batch\n"
    "//    arrived with a query filtered on ingestion_time(), which is null "
    "for\n"
    "//    rows ingested while this policy is off (on by default on new "
    "tables).\n"
    ".alter table GamePlay policy ingestiontime true\n"
    "\n"
    "// ---- queries "
    "---------------------------------------------------------------\n"
    "\n"
    "// How many events have arrived.\n"
    "GamePlay | count\n"
    "\n"
    "// The leaderboard: the ten players who won most.\n"
    "GamePlay | summarize TotalWin=sum(Win), Spins=count() by PlayerID | top "
    "10 by TotalWin\n"
    "\n"
    "// End-to-end latency: from the event's time to its ingestion into ADX.\n"
    "GamePlay | extend Latency = ingestion_time() - EventTime | summarize "
    "percentiles(Latency, 50, 90, 99)\n";

/* Set by the SIGINT/SIGTERM handler (the only global). */
static volatile sig_atomic_t interrupted;

struct demo_opts {
    double duration; /* seconds of producing */
    double rate;     /* events/s */
    int64_t events;  /* total; default rate x duration */
    int32_t players;
    int64_t timeout_ms; /* wait for delivery after producing */
    int keep;
    int print_kql;
    const char *bootstrap; /* --bootstrap-servers: NULL = the mock */
};

struct demo {
    struct demo_opts o;
    char exe[PATH_MAX];
    char dir[256];
    struct demo_child mock;
    struct demo_child emu;
    struct demo_child gw;
    char bootstrap[512];
    char topic[128];   /* DEMO_TOPIC, or a fresh one on an outside cluster */
    int topic_created; /* delete it at the end (unless --keep) */
    char adx_url[128];
    char admin_url[128];
    CURL *curl;
    rd_kafka_t *rk;
    int64_t sent;
    int64_t delivered; /* delivery reports: in Kafka */
    int64_t failed;
    char kafka_error[256];
    int tty;
};

/* What the progress line shows; -1 = unknown. */
struct demo_progress {
    int64_t journaled;
    int64_t committed;
    int64_t delivered; /* rows in the emulator's GamePlay table */
    int64_t lag;
};

static void on_signal(int sig)
{
    (void)sig;
    interrupted++;
}

static void usage(void)
{
    printf(
        "usage: kadx demo [--duration S] [--rate R] [--events N] "
        "[--players P]\n"
        "                 [--timeout S] [--keep] [--print-kql]\n"
        "                 [--bootstrap-servers HOST:PORT,...]\n"
        "\n"
        "Runs the whole pipeline locally with no outside service: the Kafka "
        "mock\n"
        "cluster, the ADX emulator (set up with docker/kql/setup.kql), and "
        "the\n"
        "gateway (kadx run), all as child processes. Produces GamePlay events "
        "at a\n"
        "steady rate to topic '" DEMO_TOPIC "', shows live progress "
        "(produced, journaled,\n"
        "committed, delivered, lag, events/s), then prints the leaderboard "
        "and\n"
        "the ingestion-latency percentiles and ends with 'delivered N of M "
        "produced\n"
        "events'. Ctrl-C stops everything cleanly.\n"
        "\n"
        "options:\n"
        "      --duration S   seconds of producing (default 10)\n"
        "      --rate R       events per second (default 1000)\n"
        "      --events N     events in all (default rate x duration)\n"
        "      --players P    distinct players (default 100)\n"
        "      --timeout S    how long to wait for delivery after the last "
        "event\n"
        "                     (default 60)\n"
        "      --keep         keep the work directory (config, journal, "
        "logs)\n"
        "      --print-kql    print the embedded setup.kql and exit\n"
        "      --bootstrap-servers HOST:PORT,...\n"
        "                     use this Kafka cluster instead of the mock: "
        "the demo\n"
        "                     creates its own topic and group there "
        "(kadx-demo-<id>,\n"
        "                     4 partitions, the broker's replication factor) "
        "and\n"
        "                     deletes the topic at the end (not with "
        "--keep)\n"
        "\n"
        "Exit status: 0 every produced event delivered, 1 not (or a part "
        "failed),\n"
        "2 usage, 130 interrupted.\n");
}

static int parse_args(int argc, char **argv, struct demo_opts *o)
{
    enum {
        OPT_DURATION = 256,
        OPT_RATE,
        OPT_EVENTS,
        OPT_PLAYERS,
        OPT_TIMEOUT,
        OPT_KEEP,
        OPT_PRINT_KQL,
        OPT_BOOTSTRAP
    };
    static const struct option longopts[] = {
        {"duration", required_argument, NULL, OPT_DURATION},
        {"rate", required_argument, NULL, OPT_RATE},
        {"events", required_argument, NULL, OPT_EVENTS},
        {"players", required_argument, NULL, OPT_PLAYERS},
        {"timeout", required_argument, NULL, OPT_TIMEOUT},
        {"keep", no_argument, NULL, OPT_KEEP},
        {"print-kql", no_argument, NULL, OPT_PRINT_KQL},
        {"bootstrap-servers", required_argument, NULL, OPT_BOOTSTRAP},
        {NULL, 0, NULL, 0},
    };
    int have_duration = 0;
    double v;
    int c;

    memset(o, 0, sizeof(*o));
    o->duration = 10;
    o->rate = 1000;
    o->events = -1;
    o->players = 100;
    o->timeout_ms = 60000;
    optind = 1;
    opterr = 0;
    for (;;) {
        c = getopt_long(argc, argv, ":", longopts, NULL);
        if (c == -1) {
            break;
        }
        switch (c) {
        case OPT_DURATION:
            if (cli_parse_double(optarg, 0.1, 86400, &o->duration) < 0) {
                return cli_usage_error(CMD, "bad --duration '%s'", optarg);
            }
            have_duration = 1;
            break;
        case OPT_RATE:
            if (cli_parse_double(optarg, 1, 1e7, &o->rate) < 0) {
                return cli_usage_error(CMD, "bad --rate '%s'", optarg);
            }
            break;
        case OPT_EVENTS:
            if (cli_parse_double(optarg, 1, 1e9, &v) < 0 || v != floor(v)) {
                return cli_usage_error(CMD, "bad --events '%s'", optarg);
            }
            o->events = (int64_t)v;
            break;
        case OPT_PLAYERS:
            if (cli_parse_double(optarg, 1, GAMEPLAY_MAX_PLAYERS, &v) < 0 ||
                v != floor(v)) {
                return cli_usage_error(CMD, "bad --players '%s'", optarg);
            }
            o->players = (int32_t)v;
            break;
        case OPT_TIMEOUT:
            if (cli_parse_double(optarg, 1, 86400, &v) < 0) {
                return cli_usage_error(CMD, "bad --timeout '%s'", optarg);
            }
            o->timeout_ms = (int64_t)(v * 1000);
            break;
        case OPT_KEEP:
            o->keep = 1;
            break;
        case OPT_PRINT_KQL:
            o->print_kql = 1;
            break;
        case OPT_BOOTSTRAP:
            if (optarg[0] == '\0' || strlen(optarg) >= 512) {
                return cli_usage_error(CMD, "bad --bootstrap-servers '%s'",
                                       optarg);
            }
            o->bootstrap = optarg;
            break;
        default:
            return cli_bad_option(CMD, c, argv);
        }
    }
    if (optind < argc) {
        return cli_usage_error(CMD, "unexpected argument '%s'", argv[optind]);
    }
    if (o->events > 0 && have_duration) {
        return cli_usage_error(CMD, "give --events or --duration, not both");
    }
    if (o->events < 0) {
        o->events = (int64_t)ceil(o->rate * o->duration);
    }
    return 0;
}

/* Runs setup_kql's management blocks in order; returns how many, or < 0. */
static int run_setup(struct demo *d, char *err, size_t errlen)
{
    char block[4096];
    size_t blen = 0;
    const char *p = setup_kql;
    int count = 0;

    for (;;) {
        const char *nl = strchr(p, '\n');
        size_t n = nl != NULL ? (size_t)(nl - p) : strlen(p);
        int blank = n == 0;

        if (!blank && !(n >= 2 && p[0] == '/' && p[1] == '/')) {
            if (blen + n + 2 > sizeof(block)) {
                snprintf(err, errlen, "setup.kql: block too long");
                return -EMSGSIZE;
            }
            if (blen > 0) {
                block[blen++] = ' ';
            }
            memcpy(block + blen, p, n);
            blen += n;
        }
        if ((blank || nl == NULL) && blen > 0) {
            block[blen] = '\0';
            if (block[0] == '.') {
                cJSON *t = NULL;
                char why[512];

                if (demo_http_kql(d->curl, d->adx_url, DEMO_DB, block, 1, &t,
                                  why, sizeof(why)) < 0) {
                    snprintf(err, errlen, "setup.kql: '%.60s...': %s", block,
                             why);
                    return -EIO;
                }
                cJSON_Delete(t);
                count++;
            }
            blen = 0;
        }
        if (nl == NULL) {
            break;
        }
        p = nl + 1;
    }
    return count;
}

/* ---- the gateway ----------------------------------------------------------
 */

/* A TCP port on 127.0.0.1 that was free a moment ago, or 0. */
static int free_port(void)
{
    struct sockaddr_in a = {.sin_family = AF_INET};
    socklen_t len = sizeof(a);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int port = 0;

    if (fd < 0) {
        return 0;
    }
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &len) == 0) {
        port = ntohs(a.sin_port);
    }
    close(fd);
    return port;
}

/* Writes the gateway's kadx.json into the work directory. */
static int write_config(struct demo *d, const char *path, int admin_port,
                        char *err, size_t errlen)
{
    cJSON *root = cJSON_CreateObject();
    cJSON *kafka = cJSON_AddObjectToObject(root, "kafka");
    cJSON *adx = cJSON_AddObjectToObject(root, "adx");
    cJSON *auth = cJSON_AddObjectToObject(adx, "auth");
    cJSON *routes = cJSON_AddArrayToObject(root, "routes");
    cJSON *route = cJSON_CreateObject();
    cJSON *meta = cJSON_AddObjectToObject(route, "meta");
    cJSON *journal = cJSON_AddObjectToObject(root, "journal");
    cJSON *fwd = cJSON_AddObjectToObject(root, "forwarder");
    cJSON *admin = cJSON_AddObjectToObject(root, "admin");
    char jpath[320];
    char listen[64];
    char *text = NULL;
    FILE *f = NULL;
    int rc = -ENOMEM;

    snprintf(jpath, sizeof(jpath), "%s/journal.db", d->dir);
    snprintf(listen, sizeof(listen), "127.0.0.1:%d", admin_port);
    cJSON_AddItemToArray(routes, route);
    /* the mock cluster rebalances only after session.timeout.ms - 1 s */
    if (!cJSON_AddStringToObject(kafka, "bootstrap.servers", d->bootstrap) ||
        !cJSON_AddStringToObject(kafka, "group.id",
                                 d->o.bootstrap != NULL ? d->topic
                                                        : "kadx-demo") ||
        !cJSON_AddStringToObject(kafka, "session.timeout.ms", "6000") ||
        !cJSON_AddStringToObject(kafka, "heartbeat.interval.ms", "500") ||
        !cJSON_AddStringToObject(adx, "ingest_url", d->adx_url) ||
        !cJSON_AddStringToObject(auth, "method", "none") ||
        !cJSON_AddStringToObject(route, "topic", d->topic) ||
        !cJSON_AddStringToObject(route, "database", DEMO_DB) ||
        !cJSON_AddStringToObject(route, "table", DEMO_TABLE) ||
        !cJSON_AddStringToObject(route, "format", "json") ||
        !cJSON_AddStringToObject(route, "mapping", DEMO_MAPPING) ||
        /* exactly once: setup.kql's KadxBatchId column and mapping entry */
        !cJSON_AddStringToObject(meta, "batch_id", "kadx_batch_id") ||
        !cJSON_AddStringToObject(route, "dedupe_column", "KadxBatchId") ||
        !cJSON_AddStringToObject(journal, "path", jpath) ||
        !cJSON_AddNumberToObject(fwd, "linger_ms", 50) ||
        !cJSON_AddStringToObject(admin, "listen", listen) ||
        (text = cJSON_Print(root)) == NULL) {
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    f = fopen(path, "we");
    if (f == NULL || fputs(text, f) == EOF || fputc('\n', f) == EOF) {
        rc = -errno;
        snprintf(err, errlen, "cannot write '%.300s': %s", path,
                 strerror(errno));
        goto out;
    }
    rc = 0;
out:
    if (f != NULL && fclose(f) != 0 && rc == 0) {
        rc = -errno;
        snprintf(err, errlen, "cannot write '%.300s': %s", path,
                 strerror(errno));
    }
    free(text);
    cJSON_Delete(root);
    return rc;
}

/*
 * Waits until the gateway has joined the consumer group and owns every
 * partition (its log says "intake: assigned gameplay[N]" for each), so that
 * the latency figures measure the pipeline, not the mock cluster's ~3 s
 * group join. Returns 1 when ready, 0 at the deadline (the demo goes on:
 * the events wait in Kafka), -EINTR on Ctrl-C, -EPIPE if the gateway died.
 */
static int wait_gateway_ready(struct demo *d, int64_t timeout_ms)
{
    int64_t deadline = demo_child_mono_ns() + timeout_ms * 1000000;
    char needle[160];

    snprintf(needle, sizeof(needle), "intake: assigned %s[", d->topic);
    for (;;) {
        char buf[65536];
        int fd = open(d->gw.log, O_RDONLY | O_CLOEXEC);
        ssize_t n = fd >= 0 ? read(fd, buf, sizeof(buf) - 1) : -1;
        struct timespec ts = {0, 100 * 1000000};
        int seen = 0;

        if (fd >= 0) {
            close(fd);
        }
        if (n > 0) {
            buf[n] = '\0';
            for (const char *p = strstr(buf, needle); p != NULL;
                 p = strstr(p + 1, needle)) {
                seen++;
            }
        }
        if (seen >= DEMO_PARTITIONS) {
            return 1;
        }
        if (interrupted) {
            return -EINTR;
        }
        if (!demo_child_alive(&d->gw)) {
            return -EPIPE;
        }
        if (demo_child_mono_ns() >= deadline) {
            return 0;
        }
        nanosleep(&ts, NULL); /* polling the log, with a deadline */
    }
}

/* ---- progress ---------------------------------------------------------------
 */

/* Sums a numeric field over an array of objects, or -1 if absent. */
static int64_t sum_field(const cJSON *arr, const char *name)
{
    const cJSON *it;
    int64_t total = -1;

    cJSON_ArrayForEach(it, arr)
    {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(it, name);
        if (cJSON_IsNumber(v)) {
            total = (total < 0 ? 0 : total) + (int64_t)v->valuedouble;
        }
    }
    return total;
}

/*
 * Events up to and including an offset, summed over partitions: offset + 1
 * for each partition whose field is a number >= 0 (the demo's topic starts
 * at offset 0). -1 when arr is not an array.
 */
static int64_t count_to_offsets(const cJSON *arr, const char *name)
{
    const cJSON *it;
    int64_t total = 0;

    if (!cJSON_IsArray(arr)) {
        return -1;
    }
    cJSON_ArrayForEach(it, arr)
    {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(it, name);
        if (cJSON_IsNumber(v) && v->valuedouble >= 0) {
            total += (int64_t)v->valuedouble + 1;
        }
    }
    return total;
}

/*
 * Fills p from the gateway's /status (when it answers) and the emulator's
 * row count. Counters the status does not carry stay -1.
 */
static void poll_progress(struct demo *d, struct demo_progress *p)
{
    char url[256];
    char err[256];
    char *out = NULL;
    long status = 0;
    cJSON *root;

    p->journaled = p->committed = p->lag = -1;
    p->delivered = -1;
    snprintf(url, sizeof(url), "%s/_emulator/stats", d->adx_url);
    if (demo_http_call(d->curl, url, NULL, &status, &out, err, sizeof(err)) ==
            0 &&
        status == 200) {
        const cJSON *tables;
        const cJSON *t;

        root = cJSON_Parse(out);
        tables = cJSON_GetObjectItemCaseSensitive(root, "tables");
        if (cJSON_IsObject(tables)) {
            p->delivered = 0; /* the table appears with its first rows */
        }
        cJSON_ArrayForEach(t, tables)
        {
            size_t n = strlen(t->string);
            if (cJSON_IsNumber(t) && n >= strlen(DEMO_TABLE) &&
                strcmp(t->string + n - strlen(DEMO_TABLE), DEMO_TABLE) == 0) {
                p->delivered = (int64_t)t->valuedouble;
            }
        }
        cJSON_Delete(root);
    }
    free(out);
    out = NULL;

    /*
     * The gateway's GET /status (admin/api.c), when it answers: the
     * intake's journaled counter, and per partition of the route the
     * highest committed offset (inclusive: offset + 1 events for a topic
     * that starts at 0) and the lag.
     */
    snprintf(url, sizeof(url), "%s/status", d->admin_url);
    if (demo_http_call(d->curl, url, NULL, &status, &out, err, sizeof(err)) ==
            0 &&
        status == 200) {
        const cJSON *intake;
        const cJSON *route;
        const cJSON *parts;
        const cJSON *v;

        root = cJSON_Parse(out);
        intake = cJSON_GetObjectItemCaseSensitive(root, "intake");
        v = cJSON_GetObjectItemCaseSensitive(intake, "journaled");
        if (cJSON_IsNumber(v)) {
            p->journaled = (int64_t)v->valuedouble;
        }
        route = cJSON_GetArrayItem(
            cJSON_GetObjectItemCaseSensitive(root, "routes"), 0);
        parts = cJSON_GetObjectItemCaseSensitive(route, "partitions");
        p->committed = count_to_offsets(parts, "committed_offset");
        p->lag = sum_field(parts, "lag");
        cJSON_Delete(root);
    }
    free(out);
}

static void fmt_count(int64_t v, char *buf, size_t len)
{
    if (v < 0) {
        snprintf(buf, len, "%s", "-");
    } else {
        snprintf(buf, len, "%" PRId64, v);
    }
}

static void show_progress(struct demo *d, const struct demo_progress *p,
                          double secs, double rate, int final)
{
    char j[24];
    char c[24];
    char l[24];
    char dl[24];

    fmt_count(p->journaled, j, sizeof(j));
    fmt_count(p->committed, c, sizeof(c));
    fmt_count(p->lag, l, sizeof(l));
    fmt_count(p->delivered, dl, sizeof(dl));
    printf("%s%6.1fs  produced %8" PRId64 "  journaled %8s  committed %8s  "
           "delivered %8s  lag %6s  %7.0f events/s%s",
           d->tty ? "\r" : "", secs, d->delivered, j, c, dl, l, rate,
           d->tty && !final ? "" : "\n");
    fflush(stdout);
}

/*
 * Once the emulator holds every event, the gateway's own counters may lag
 * by an offset commit or a status refresh: polls /status a little longer
 * (at most 3 s) so that the final line shows them settled.
 */
static void settle_counters(struct demo *d, struct demo_progress *p)
{
    int64_t deadline = demo_child_mono_ns() + 3000000000LL;

    while (!interrupted && demo_child_mono_ns() < deadline &&
           ((p->journaled >= 0 && p->journaled < d->o.events) ||
            (p->committed >= 0 && p->committed < d->o.events) || p->lag > 0)) {
        struct timespec ts = {0, 100 * 1000000};

        nanosleep(&ts, NULL); /* polling /status, with a deadline */
        poll_progress(d, p);
    }
}

/* ---- producing --------------------------------------------------------------
 */

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *msg,
                        void *opaque)
{
    struct demo *d = opaque;

    (void)rk;
    if (msg->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        d->delivered++;
    } else if (d->failed++ == 0) {
        snprintf(d->kafka_error, sizeof(d->kafka_error), "%s",
                 rd_kafka_err2str(msg->err));
    }
}

static void on_kafka_log(const rd_kafka_t *rk, int level, const char *fac,
                         const char *buf)
{
    (void)rk;
    if (level <= 3 && log_get_level() >= LOG_DEBUG) {
        log_msg(LOG_DEBUG, "kafka", "%s: %s", fac, buf);
    }
}

static int make_producer(struct demo *d, char *err, size_t errlen)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t rerr = RD_KAFKA_RESP_ERR_NO_ERROR;
    rd_kafka_topic_t *rkt;

    if (rd_kafka_conf_set(conf, "bootstrap.servers", d->bootstrap, err,
                          errlen) != RD_KAFKA_CONF_OK ||
        rd_kafka_conf_set(conf, "client.id", "kadx-demo", err, errlen) !=
            RD_KAFKA_CONF_OK ||
        rd_kafka_conf_set(conf, "linger.ms", "5", err, errlen) !=
            RD_KAFKA_CONF_OK ||
        rd_kafka_conf_set(conf, "message.timeout.ms", "30000", err, errlen) !=
            RD_KAFKA_CONF_OK) {
        rd_kafka_conf_destroy(conf);
        return -EINVAL;
    }
    rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
    rd_kafka_conf_set_log_cb(conf, on_kafka_log);
    rd_kafka_conf_set_opaque(conf, d);
    d->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, errlen);
    if (d->rk == NULL) {
        rd_kafka_conf_destroy(conf);
        return -EINVAL;
    }
    /*
     * Connect and learn the partition leaders before the clock starts, so
     * the first events do not wait in the producer (their eventTime would
     * count that wait as ingestion latency).
     */
    rkt = rd_kafka_topic_new(d->rk, d->topic, NULL);
    if (rkt != NULL) {
        rerr = rd_kafka_metadata(d->rk, 0, rkt, &md, 10000);
        if (rerr == RD_KAFKA_RESP_ERR_NO_ERROR) {
            rd_kafka_metadata_destroy(md);
        }
        rd_kafka_topic_destroy(rkt);
    }
    if (rkt == NULL || rerr != RD_KAFKA_RESP_ERR_NO_ERROR) {
        snprintf(err, errlen, "no metadata for topic '%s': %s", d->topic,
                 rkt == NULL ? "cannot create the topic handle"
                             : rd_kafka_err2str(rerr));
        return -EIO;
    }
    return 0;
}

static int produce_one(struct demo *d, struct gameplay *g, char *err,
                       size_t errlen)
{
    struct gameplay_event ev;
    char json[GAMEPLAY_JSON_MAX];
    char key[16];
    int klen;
    int n;

    gameplay_next(g, gameplay_now_ms(), &ev);
    n = gameplay_format(&ev, json, sizeof(json));
    if (n < 0) {
        snprintf(err, errlen, "cannot format an event");
        return n;
    }
    klen = snprintf(key, sizeof(key), "%d", (int)ev.player_id);
    for (;;) {
        rd_kafka_resp_err_t e = rd_kafka_producev(
            d->rk, RD_KAFKA_V_TOPIC(d->topic),
            RD_KAFKA_V_KEY(key, (size_t)klen),
            RD_KAFKA_V_VALUE(json, (size_t)n),
            RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
        if (e == RD_KAFKA_RESP_ERR_NO_ERROR) {
            d->sent++;
            return 0;
        }
        if (e != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
            snprintf(err, errlen, "produce: %s", rd_kafka_err2str(e));
            return -EIO;
        }
        rd_kafka_poll(d->rk, 20);
    }
}

/*
 * The main loop: sends the events due by now (rate pacing by the clock),
 * waits in rd_kafka_poll() for the next one, shows progress once a second,
 * and after the last event waits until the emulator holds all of them (or
 * the timeout). Returns 0, or -EINTR / -EIO / -ETIMEDOUT.
 */
static int run_pipeline(struct demo *d, struct demo_progress *last, char *err,
                        size_t errlen)
{
    struct gameplay g;
    int64_t start = demo_child_mono_ns();
    int64_t last_show = start;
    int64_t produced_at = 0; /* when the last event was acknowledged */
    int64_t prev_delivered = 0;
    int64_t prev_show = start;
    int rc;

    gameplay_init(&g, 0, d->o.players, 100);
    memset(last, 0xff, sizeof(*last)); /* all -1 */
    for (;;) {
        int64_t now = demo_child_mono_ns();
        int64_t due = (int64_t)((double)(now - start) / 1e9 * d->o.rate) + 1;

        if (interrupted) {
            return -EINTR;
        }
        if (due > d->o.events) {
            due = d->o.events;
        }
        if (due - d->sent > MAX_BURST) {
            due = d->sent + MAX_BURST;
        }
        while (d->sent < due) {
            rc = produce_one(d, &g, err, errlen);
            if (rc < 0) {
                return rc;
            }
        }
        if (d->sent < d->o.events) {
            int64_t next = start + (int64_t)((double)d->sent / d->o.rate * 1e9);
            /* round up: a 0 ms poll until the due time would spin */
            int64_t wait_ms = (next - demo_child_mono_ns() + 999999) / 1000000;
            rd_kafka_poll(d->rk, (int)(wait_ms < 0     ? 0
                                       : wait_ms > 100 ? 100
                                                       : wait_ms));
        } else {
            rd_kafka_poll(d->rk, 100);
        }
        if (d->failed > 0) {
            snprintf(err, errlen,
                     "%" PRId64 " events not accepted by Kafka: %s", d->failed,
                     d->kafka_error);
            return -EIO;
        }
        now = demo_child_mono_ns();
        if (produced_at == 0 && d->delivered == d->o.events) {
            produced_at = now;
        }
        if (now - last_show >= 1000000000 ||
            (produced_at != 0 && now - last_show >= 250000000)) {
            double secs = (double)(now - start) / 1e9;
            double dt = (double)(now - prev_show) / 1e9;
            double rate;

            poll_progress(d, last);
            rate = last->delivered >= 0 && dt > 0
                       ? (double)(last->delivered - prev_delivered) / dt
                       : 0;
            prev_delivered = last->delivered >= 0 ? last->delivered : 0;
            prev_show = now;
            last_show = now;
            if (produced_at != 0 && last->delivered >= d->o.events) {
                /* the last line, once the gateway's counters settled */
                settle_counters(d, last);
                show_progress(d, last,
                              (double)(demo_child_mono_ns() - start) / 1e9,
                              rate, 1);
                return 0;
            }
            show_progress(d, last, secs, rate, 0);
            if (!demo_child_alive(&d->gw) || !demo_child_alive(&d->emu) ||
                (d->o.bootstrap == NULL && !demo_child_alive(&d->mock))) {
                if (d->tty) {
                    printf("\n");
                }
                snprintf(err, errlen, "a child process stopped");
                return -EIO;
            }
        }
        if (produced_at != 0 && now - produced_at > d->o.timeout_ms * 1000000) {
            if (d->tty) {
                printf("\n");
            }
            snprintf(err, errlen,
                     "not every event reached the emulator within %" PRId64
                     " s",
                     d->o.timeout_ms / 1000);
            return -ETIMEDOUT;
        }
    }
}

/* ---- results
 * ------------------------------------------------------------------ */

static const char *cell(const cJSON *row, int i, char *buf, size_t len)
{
    const cJSON *v = cJSON_GetArrayItem(row, i);

    if (cJSON_IsNumber(v)) {
        snprintf(buf, len, "%.0f", v->valuedouble);
    } else if (cJSON_IsString(v)) {
        snprintf(buf, len, "%s", v->valuestring);
    } else {
        snprintf(buf, len, "%s", "null");
    }
    return buf;
}

/* Prints a v1 result table with right-aligned columns. */
static void print_table(const cJSON *table)
{
    const cJSON *cols = cJSON_GetObjectItemCaseSensitive(table, "Columns");
    const cJSON *rows = cJSON_GetObjectItemCaseSensitive(table, "Rows");
    const cJSON *col;
    const cJSON *row;
    char buf[128];
    int width[16] = {0};
    int ncols = 0;

    cJSON_ArrayForEach(col, cols)
    {
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(col, "ColumnName");
        if (ncols < 16) {
            width[ncols] =
                cJSON_IsString(name) ? (int)strlen(name->valuestring) : 4;
        }
        ncols++;
    }
    if (ncols > 16) {
        ncols = 16;
    }
    cJSON_ArrayForEach(row, rows)
    {
        for (int i = 0; i < ncols; i++) {
            int w = (int)strlen(cell(row, i, buf, sizeof(buf)));
            width[i] = w > width[i] ? w : width[i];
        }
    }
    printf(" ");
    for (int i = 0; i < ncols; i++) {
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(
            cJSON_GetArrayItem(cols, i), "ColumnName");
        printf("  %*s", width[i],
               cJSON_IsString(name) ? name->valuestring : "?");
    }
    printf("\n");
    cJSON_ArrayForEach(row, rows)
    {
        printf(" ");
        for (int i = 0; i < ncols; i++) {
            printf("  %*s", width[i], cell(row, i, buf, sizeof(buf)));
        }
        printf("\n");
    }
}

static void print_results(struct demo *d)
{
    cJSON *t = NULL;
    char err[512];

    printf("\nleaderboard: %s\n", LEADERBOARD_KQL);
    if (demo_http_kql(d->curl, d->adx_url, DEMO_DB, LEADERBOARD_KQL, 0, &t, err,
                      sizeof(err)) == 0) {
        print_table(t);
    } else {
        printf("  (query failed: %s)\n", err);
    }
    cJSON_Delete(t);
    t = NULL;
    printf("\ningestion latency: %s\n", LATENCY_KQL);
    if (demo_http_kql(d->curl, d->adx_url, DEMO_DB, LATENCY_KQL, 0, &t, err,
                      sizeof(err)) == 0) {
        print_table(t);
    } else {
        printf("  (query failed: %s)\n", err);
    }
    cJSON_Delete(t);
    printf("\n");
}

/* ---- the command
 * ------------------------------------------------------------- */

static int rm_entry(const char *path, const struct stat *sb, int flag,
                    struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

/*
 * Creates (create=1) or deletes d->topic on the cluster of
 * --bootstrap-servers with librdkafka's admin API, on a short-lived client
 * of its own. 0, or a negative errno with err filled.
 */
static int topic_admin(struct demo *d, int create, char *err, size_t errlen)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_t *rk = NULL;
    rd_kafka_queue_t *q = NULL;
    rd_kafka_event_t *ev = NULL;
    rd_kafka_NewTopic_t *nt = NULL;
    rd_kafka_DeleteTopic_t *dt = NULL;
    const rd_kafka_topic_result_t **res = NULL;
    size_t n = 0;
    char e[512];
    int rc = -EIO;

    if (rd_kafka_conf_set(conf, "bootstrap.servers", d->o.bootstrap, e,
                          sizeof(e)) != RD_KAFKA_CONF_OK) {
        snprintf(err, errlen, "--bootstrap-servers: %.300s", e);
        rd_kafka_conf_destroy(conf);
        return -EINVAL;
    }
    rd_kafka_conf_set_log_cb(conf, on_kafka_log);
    rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, e, sizeof(e));
    if (rk == NULL) {
        snprintf(err, errlen, "kafka client: %.300s", e);
        rd_kafka_conf_destroy(conf);
        return -EINVAL;
    }
    q = rd_kafka_queue_new(rk);
    if (create) {
        nt = rd_kafka_NewTopic_new(d->topic, DEMO_PARTITIONS, -1, e, sizeof(e));
        if (nt == NULL) {
            snprintf(err, errlen, "topic '%s': %.300s", d->topic, e);
            goto out;
        }
        rd_kafka_CreateTopics(rk, &nt, 1, NULL, q);
    } else {
        dt = rd_kafka_DeleteTopic_new(d->topic);
        rd_kafka_DeleteTopics(rk, &dt, 1, NULL, q);
    }
    ev = rd_kafka_queue_poll(q, 70000);
    if (ev == NULL) {
        snprintf(err, errlen, "no answer from %s", d->o.bootstrap);
        rc = -ETIMEDOUT;
        goto out;
    }
    if (rd_kafka_event_error(ev) != RD_KAFKA_RESP_ERR_NO_ERROR) {
        snprintf(err, errlen, "%.300s", rd_kafka_event_error_string(ev));
        goto out;
    }
    res = create ? rd_kafka_CreateTopics_result_topics(
                       rd_kafka_event_CreateTopics_result(ev), &n)
                 : rd_kafka_DeleteTopics_result_topics(
                       rd_kafka_event_DeleteTopics_result(ev), &n);
    if (n != 1 || rd_kafka_topic_result_error(res[0]) != 0) {
        snprintf(err, errlen, "%.300s",
                 n != 1 ? "no result"
                        : rd_kafka_topic_result_error_string(res[0]));
        goto out;
    }
    rc = 0;
out:
    if (ev != NULL) {
        rd_kafka_event_destroy(ev);
    }
    if (nt != NULL) {
        rd_kafka_NewTopic_destroy(nt);
    }
    if (dt != NULL) {
        rd_kafka_DeleteTopic_destroy(dt);
    }
    rd_kafka_queue_destroy(q);
    rd_kafka_destroy(rk);
    return rc;
}

/* --bootstrap-servers: a fresh topic (and group) of the demo's own, so the
 * delivered count is of this run's events only. */
static int outside_cluster(struct demo *d, char *err, size_t errlen)
{
    char why[512] = "";
    int rc;

    snprintf(d->bootstrap, sizeof(d->bootstrap), "%s", d->o.bootstrap);
    snprintf(d->topic, sizeof(d->topic), "kadx-demo-%lx-%ld",
             (unsigned long)time(NULL), (long)getpid());
    rc = topic_admin(d, 1, why, sizeof(why));
    if (rc < 0) {
        snprintf(err, errlen, "cannot create topic '%s' on %.200s: %.300s",
                 d->topic, d->bootstrap, why);
        return rc;
    }
    d->topic_created = 1;
    printf("kadx demo: Kafka at %s: created topic %s (%d partitions), "
           "group %s\n",
           d->bootstrap, d->topic, DEMO_PARTITIONS, d->topic);
    return 0;
}

static int start_all(struct demo *d, char *err, size_t errlen)
{
    char parts[64];
    char line[512];
    char cfg[320];
    char *mock_argv[] = {"kafka-mock", "--brokers", "1",
                         "--topic",    parts,       NULL};
    char *emu_argv[] = {"adx-emulator", "--listen", "127.0.0.1:0",
                        "--database",   DEMO_DB,    NULL};
    char *gw_argv[] = {"run", "-c", cfg, NULL};
    int admin_port;
    int fd = -1;
    int rc;

    snprintf(parts, sizeof(parts), "%s:%d", DEMO_TOPIC, DEMO_PARTITIONS);
    if (d->o.bootstrap != NULL) {
        rc = outside_cluster(d, err, errlen);
        if (rc < 0) {
            return rc;
        }
        goto emulator;
    }
    rc = demo_child_start(d->exe, &d->mock, mock_argv, 1, &fd, err, errlen);
    if (rc < 0) {
        return rc;
    }
    rc = demo_child_read_line(fd, "bootstrap.servers=", 20000, &interrupted,
                              d->bootstrap, sizeof(d->bootstrap));
    close(fd);
    if (rc < 0) {
        snprintf(err, errlen, "the Kafka mock cluster did not start (%s)",
                 strerror(-rc));
        if (rc != -EINTR) {
            demo_child_log_tail(&d->mock, 20);
        }
        return rc;
    }
    printf("kadx demo: Kafka mock cluster at %s (topic %s, %d partitions)\n",
           d->bootstrap, DEMO_TOPIC, DEMO_PARTITIONS);

emulator:
    rc = demo_child_start(d->exe, &d->emu, emu_argv, 0, &fd, err, errlen);
    if (rc < 0) {
        return rc;
    }
    rc = demo_child_read_line(fd, "adx-emulator listening on ", 20000,
                              &interrupted, line, sizeof(line));
    close(fd);
    if (rc < 0) {
        snprintf(err, errlen, "the ADX emulator did not start (%s)",
                 strerror(-rc));
        if (rc != -EINTR) {
            demo_child_log_tail(&d->emu, 20);
        }
        return rc;
    }
    if (strlen(line) >= sizeof(d->adx_url)) {
        snprintf(err, errlen, "the ADX emulator's URL is too long");
        return -EMSGSIZE;
    }
    snprintf(d->adx_url, sizeof(d->adx_url), "%.127s", line);
    printf("kadx demo: ADX emulator at %s (database %s)\n", d->adx_url,
           DEMO_DB);

    rc = run_setup(d, err, errlen);
    if (rc < 0) {
        return rc;
    }
    printf("kadx demo: setup.kql: %d management commands applied "
           "(streaming policy, table %s, mapping %s)\n",
           rc, DEMO_TABLE, DEMO_MAPPING);

    admin_port = free_port();
    snprintf(d->admin_url, sizeof(d->admin_url), "http://127.0.0.1:%d",
             admin_port);
    snprintf(cfg, sizeof(cfg), "%s/kadx.json", d->dir);
    rc = write_config(d, cfg, admin_port, err, errlen);
    if (rc < 0) {
        return rc;
    }
    rc = demo_child_start(d->exe, &d->gw, gw_argv, 0, NULL, err, errlen);
    if (rc < 0) {
        return rc;
    }
    printf("kadx demo: gateway started (kadx run -c %s; log %s)\n", cfg,
           d->gw.log);
    fflush(stdout);
    rc = wait_gateway_ready(d, 30000);
    if (rc < 0) {
        snprintf(err, errlen, "%s",
                 rc == -EINTR ? "interrupted" : "the gateway stopped");
        return rc;
    }
    printf("kadx demo: gateway %s\n",
           rc == 1 ? "joined the consumer group and owns every partition"
                   : "has not joined the consumer group yet; going on");
    return 0;
}

/* Names, the binary to start the children from, and a fresh work
 * directory for their logs. Returns 0, or 1 (the exit code) with the
 * reason printed. */
static int demo_prepare(struct demo *d)
{
    const char *tmpdir;
    ssize_t n;

    snprintf(d->topic, sizeof(d->topic), "%s", DEMO_TOPIC);
    d->mock = (struct demo_child){.name = "kafka-mock", .in_fd = -1};
    d->emu = (struct demo_child){.name = "adx-emulator", .in_fd = -1};
    d->gw = (struct demo_child){.name = "gateway", .in_fd = -1};
    d->tty = isatty(STDOUT_FILENO);

    n = readlink("/proc/self/exe", d->exe, sizeof(d->exe) - 1);
    if (n <= 0) {
        fprintf(stderr, "kadx demo: cannot find my own binary: %s\n",
                strerror(errno));
        return 1;
    }
    d->exe[n] = '\0';
    tmpdir = getenv("TMPDIR") != NULL ? getenv("TMPDIR") : "/tmp";
    if (strlen(tmpdir) > 200) {
        fprintf(stderr, "kadx demo: TMPDIR is too long\n");
        return 1;
    }
    snprintf(d->dir, sizeof(d->dir), "%.200s/kadx-demo-XXXXXX", tmpdir);
    if (mkdtemp(d->dir) == NULL) {
        fprintf(stderr, "kadx demo: cannot create a work directory: %s\n",
                strerror(errno));
        return 1;
    }
    snprintf(d->mock.log, sizeof(d->mock.log), "%s/kafka-mock.log", d->dir);
    snprintf(d->emu.log, sizeof(d->emu.log), "%s/adx-emulator.log", d->dir);
    snprintf(d->gw.log, sizeof(d->gw.log), "%s/gateway.log", d->dir);
    return 0;
}

int cmd_demo(int argc, char **argv)
{
    struct demo d;
    struct demo_progress last;
    struct sigaction sa;
    char err[1024] = "";
    int rc;
    int exit_code = 1;

    if (cli_wants_help(argc, argv)) {
        usage();
        return 0;
    }
    memset(&d, 0, sizeof(d));
    rc = parse_args(argc, argv, &d.o);
    if (rc != 0) {
        return rc;
    }
    if (d.o.print_kql) {
        fputs(setup_kql, stdout);
        return 0;
    }
    if (demo_prepare(&d) != 0) {
        return 1;
    }

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    d.curl = curl_easy_init();
    if (d.curl == NULL) {
        snprintf(err, sizeof(err), "cannot initialise libcurl");
        goto out;
    }
    if (start_all(&d, err, sizeof(err)) < 0) {
        goto out;
    }
    if (make_producer(&d, err, sizeof(err)) < 0) {
        goto out;
    }
    printf("kadx demo: producing %" PRId64 " GamePlay events at %.0f/s "
           "(about %.0f s); Ctrl-C stops\n",
           d.o.events, d.o.rate, (double)d.o.events / d.o.rate);
    rc = run_pipeline(&d, &last, err, sizeof(err));
    if (rc == -EINTR) {
        goto out;
    }
    if (rc < 0 && rc != -ETIMEDOUT) {
        goto out;
    }
    print_results(&d);
    printf("delivered %" PRId64 " of %" PRId64 " produced events\n",
           last.delivered < 0 ? 0 : last.delivered, d.delivered);
    if (rc == 0 && last.delivered == d.delivered && d.delivered == d.o.events) {
        exit_code = 0;
    } else if (rc == 0) {
        snprintf(err, sizeof(err),
                 "the emulator holds %" PRId64 " rows for %" PRId64
                 " produced events",
                 last.delivered, d.delivered);
    }
out:
    if (interrupted) {
        if (d.tty) {
            printf("\n");
        }
        fprintf(stderr, "kadx demo: interrupted, stopping\n");
        exit_code = 130;
    } else if (exit_code != 0 && err[0] != '\0') {
        fprintf(stderr, "kadx demo: %s\n", err);
        if (d.gw.pid > 0 || access(d.gw.log, R_OK) == 0) {
            demo_child_log_tail(&d.gw, 15);
        }
    }
    if (d.rk != NULL) {
        rd_kafka_purge(d.rk,
                       RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
        rd_kafka_flush(d.rk, 1000);
        rd_kafka_destroy(d.rk);
    }
    demo_child_stop(&d.gw, 15000);
    demo_child_stop(&d.emu, 5000);
    demo_child_stop(&d.mock, 5000);
    if (d.topic_created && !d.o.keep) {
        char why[512] = "";

        if (topic_admin(&d, 0, why, sizeof(why)) < 0) {
            fprintf(stderr, "kadx demo: cannot delete topic '%s': %s\n",
                    d.topic, why);
        }
    }
    if (d.curl != NULL) {
        curl_easy_cleanup(d.curl);
    }
    if (d.o.keep || (exit_code != 0 && exit_code != 130)) {
        fprintf(stderr, "kadx demo: work directory kept: %s\n", d.dir);
    } else {
        nftw(d.dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
    }
    return exit_code;
}
