/*
 * cmd_consume.c - `kadx consume`: a console consumer that prints a topic's
 * messages as JSON lines (the seed's console consumer).
 *
 * Without -g it joins no group: it reads the topic's partitions from the
 * metadata and assigns them all (from the beginning or the end), commits
 * nothing and so starts at once, without the group join's seconds. With -g
 * it subscribes in that consumer group and lets librdkafka auto-commit,
 * so a second run continues where the first stopped.
 *
 * Each message becomes one line (shape in usage() below); the value is
 * embedded as parsed JSON when it is a JSON document, as a string when it
 * is other UTF-8 text, as base64 otherwise. Values over CONSUME_MAX_PARSE
 * bytes are not parsed. Single-threaded.
 */
#include "base/base64.h"
#include "base/clock.h"
#include "base/utf8.h"
#include "cmd/cli.h"
#include "gateway/log.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <librdkafka/rdkafka.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define CMD "consume"
/* Values bigger than this are printed without trying to parse them. */
#define CONSUME_MAX_PARSE (8 * 1024 * 1024)
/* How long to wait for the topic to exist without -g. */
#define METADATA_WAIT_MS 10000
/* How long to wait for a first assignment with -g (rebalances are slow). */
#define GROUP_JOIN_WAIT_MS 60000

/* Set by the SIGINT/SIGTERM handler (the only global). */
static volatile sig_atomic_t interrupted;

struct consume_opts {
    const char *topic;
    const char *brokers;
    const char *group;
    int from_beginning;
    int64_t max;            /* 0 = no limit */
    int64_t timeout_ms;     /* idle timeout, 0 = none */
    struct cli_props props; /* -X */
};

static void usage(void)
{
    printf(
        "usage: kadx consume -t TOPIC [-b BROKERS] [--from-beginning] "
        "[-g GROUP]\n"
        "                    [-n MAX] [--timeout-ms T] [-X KEY=VALUE ...]\n"
        "\n"
        "Prints a topic's messages on stdout, one JSON object per line:\n"
        "  {\"topic\":\"gameplay\",\"partition\":0,\"offset\":42,"
        "\"timestamp\":1767225600123,\n"
        "   \"key\":\"17\",\"value\":{...}}\n"
        "- timestamp: the message's Kafka timestamp in Unix epoch ms, or "
        "null;\n"
        "- key: a string, or null when the message has none (\"key_base64\" "
        "instead\n"
        "  when the key is not UTF-8);\n"
        "- value: the value parsed as JSON when it is a JSON document, else "
        "a\n"
        "  string, null for a tombstone (\"value_base64\" instead when not "
        "UTF-8);\n"
        "  JSON numbers go through double precision;\n"
        "- headers (only when the message has some): [[\"name\",\"value\"], "
        "...],\n"
        "  a value null when absent, {\"base64\":\"...\"} when not UTF-8.\n"
        "A count 'consumed N messages from TOPIC' goes to stderr at the "
        "end.\n"
        "\n"
        "options:\n"
        "  -t, --topic TOPIC      topic to read (required)\n"
        "  -b, --brokers LIST     bootstrap servers (default: "
        "$KADX_BOOTSTRAP_SERVERS,\n"
        "                         else " CLI_DEFAULT_BROKERS ")\n"
        "      --from-beginning   start at the oldest message (default: only "
        "new\n"
        "                         ones; with -g: when the group has no "
        "offset)\n"
        "  -g, --group GROUP      consume in this consumer group and commit "
        "offsets\n"
        "                         (default: no group, every partition, no "
        "commits)\n"
        "  -n, --max-messages N   exit after N messages\n"
        "      --timeout-ms T     exit when no message came for T ms\n"
        "  -X KEY=VALUE           librdkafka consumer property "
        "(repeatable)\n"
        "\n"
        "Exit status: 0 done (N messages, idle timeout or Ctrl-C), 1 Kafka "
        "error,\n"
        "2 usage.\n");
}

static void on_signal(int sig)
{
    (void)sig;
    interrupted++;
}

static int parse_args(int argc, char **argv, struct consume_opts *o)
{
    enum { OPT_FROM_BEGINNING = 256, OPT_TIMEOUT };
    static const struct option longopts[] = {
        {"topic", required_argument, NULL, 't'},
        {"brokers", required_argument, NULL, 'b'},
        {"group", required_argument, NULL, 'g'},
        {"from-beginning", no_argument, NULL, OPT_FROM_BEGINNING},
        {"max-messages", required_argument, NULL, 'n'},
        {"timeout-ms", required_argument, NULL, OPT_TIMEOUT},
        {NULL, 0, NULL, 0},
    };
    int c;

    memset(o, 0, sizeof(*o));
    o->brokers = cli_default_brokers();
    optind = 1;
    opterr = 0;
    for (;;) {
        c = getopt_long(argc, argv, ":t:b:g:n:X:", longopts, NULL);
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
        case 'g':
            o->group = optarg;
            break;
        case OPT_FROM_BEGINNING:
            o->from_beginning = 1;
            break;
        case 'n':
            if (cli_parse_int(optarg, 1, INT64_MAX, &o->max) < 0) {
                return cli_usage_error(CMD, "bad message count '%s'", optarg);
            }
            break;
        case OPT_TIMEOUT:
            if (cli_parse_int(optarg, 1, INT32_MAX, &o->timeout_ms) < 0) {
                return cli_usage_error(CMD, "bad --timeout-ms '%s'", optarg);
            }
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
    if (o->topic == NULL || o->topic[0] == '\0') {
        return cli_usage_error(CMD, "-t TOPIC is required");
    }
    if (o->brokers[0] == '\0') {
        return cli_usage_error(CMD, "empty broker list");
    }
    if (o->group != NULL && o->group[0] == '\0') {
        return cli_usage_error(CMD, "empty group name");
    }
    return 0;
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

static int set_prop(rd_kafka_conf_t *conf, const char *key, const char *val)
{
    char errstr[512];

    if (rd_kafka_conf_set(conf, key, val, errstr, sizeof(errstr)) !=
        RD_KAFKA_CONF_OK) {
        fprintf(stderr, "kadx consume: %s: %s\n", key, errstr);
        return -EINVAL;
    }
    return 0;
}

/*
 * Group mode: applies assignments and notes when the first one arrived, so
 * that --timeout-ms does not count the seconds the group join takes.
 */
static void on_rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *parts, void *opaque)
{
    int64_t *assigned_at = opaque;
    int cooperative =
        strcmp(rd_kafka_rebalance_protocol(rk), "COOPERATIVE") == 0;
    rd_kafka_error_t *error = NULL;
    rd_kafka_resp_err_t aerr = RD_KAFKA_RESP_ERR_NO_ERROR;

    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        if (cooperative) {
            error = rd_kafka_incremental_assign(rk, parts);
        } else {
            aerr = rd_kafka_assign(rk, parts);
        }
        if (*assigned_at == 0) {
            *assigned_at = mono_ms();
        }
    } else if (cooperative) {
        error = rd_kafka_incremental_unassign(rk, parts);
    } else {
        aerr = rd_kafka_assign(rk, NULL);
    }
    if (error != NULL) {
        log_warn("consume", "rebalance: %s", rd_kafka_error_string(error));
        rd_kafka_error_destroy(error);
    } else if (aerr != RD_KAFKA_RESP_ERR_NO_ERROR) {
        log_warn("consume", "rebalance: %s", rd_kafka_err2str(aerr));
    }
}

static rd_kafka_t *make_consumer(const struct consume_opts *o,
                                 int64_t *assigned_at)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    char own_group[64];
    char errstr[512];
    rd_kafka_t *rk;

    /* assign() needs a group.id even though no group is joined */
    snprintf(own_group, sizeof(own_group), "kadx-consume-%ld", (long)getpid());
    if (set_prop(conf, "bootstrap.servers", o->brokers) < 0 ||
        set_prop(conf, "client.id", "kadx-consume") < 0 ||
        set_prop(conf, "enable.auto.commit", o->group ? "true" : "false") < 0 ||
        set_prop(conf, "auto.offset.reset",
                 o->from_beginning ? "earliest" : "latest") < 0 ||
        set_prop(conf, "group.id", o->group ? o->group : own_group) < 0) {
        goto fail;
    }
    if (cli_props_apply(CMD, &o->props, conf) < 0) {
        goto fail;
    }
    rd_kafka_conf_set_log_cb(conf, on_kafka_log);
    rd_kafka_conf_set_rebalance_cb(conf, on_rebalance);
    rd_kafka_conf_set_opaque(conf, assigned_at);
    rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr));
    if (rk == NULL) {
        fprintf(stderr, "kadx consume: cannot create consumer: %s\n", errstr);
        goto fail;
    }
    rd_kafka_poll_set_consumer(rk);
    return rk; /* rk owns conf now */
fail:
    rd_kafka_conf_destroy(conf);
    return NULL;
}

/*
 * Without a group: assigns every partition of the topic, waiting up to
 * METADATA_WAIT_MS (or the idle timeout) for the topic to exist. Returns
 * 0 or -ENOENT / -EIO with the reason on stderr.
 */
static int assign_all(rd_kafka_t *rk, const struct consume_opts *o)
{
    int64_t wait = o->timeout_ms > 0 ? o->timeout_ms : METADATA_WAIT_MS;
    int64_t deadline = mono_ms() + wait;
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, o->topic, NULL);
    rd_kafka_topic_partition_list_t *parts = NULL;
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t err = RD_KAFKA_RESP_ERR_NO_ERROR;
    int rc = -EIO;

    if (rkt == NULL) {
        fprintf(stderr, "kadx consume: bad topic '%s'\n", o->topic);
        return -EINVAL;
    }
    while (!interrupted) {
        int64_t left = deadline - mono_ms();

        err = rd_kafka_metadata(
            rk, 0, rkt, &md, (int)(left < 1000 ? (left > 0 ? left : 1) : 1000));
        if (err == RD_KAFKA_RESP_ERR_NO_ERROR && md->topic_cnt == 1 &&
            md->topics[0].err == RD_KAFKA_RESP_ERR_NO_ERROR &&
            md->topics[0].partition_cnt > 0) {
            break;
        }
        if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
            err = md->topic_cnt == 1 ? md->topics[0].err
                                     : RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC;
            rd_kafka_metadata_destroy(md);
            md = NULL;
        }
        if (mono_ms() >= deadline) {
            break;
        }
        rd_kafka_poll(rk, 200);
    }
    if (md == NULL) {
        if (!interrupted) {
            fprintf(stderr, "kadx consume: cannot find topic '%s' on %s: %s\n",
                    o->topic, o->brokers,
                    err == RD_KAFKA_RESP_ERR_NO_ERROR ? "no partitions"
                                                      : rd_kafka_err2str(err));
        }
        rc = interrupted ? 0 : -ENOENT;
        goto out;
    }
    parts = rd_kafka_topic_partition_list_new(md->topics[0].partition_cnt);
    for (int i = 0; i < md->topics[0].partition_cnt; i++) {
        rd_kafka_topic_partition_list_add(parts, o->topic,
                                          md->topics[0].partitions[i].id)
            ->offset =
            o->from_beginning ? RD_KAFKA_OFFSET_BEGINNING : RD_KAFKA_OFFSET_END;
    }
    err = rd_kafka_assign(rk, parts);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        fprintf(stderr, "kadx consume: cannot assign '%s': %s\n", o->topic,
                rd_kafka_err2str(err));
        goto out;
    }
    rc = 0;
out:
    if (parts != NULL) {
        rd_kafka_topic_partition_list_destroy(parts);
    }
    if (md != NULL) {
        rd_kafka_metadata_destroy(md);
    }
    rd_kafka_topic_destroy(rkt);
    return rc;
}

/* A cJSON string from bytes known to be UTF-8 without NUL; NULL on ENOMEM. */
static cJSON *text_item(const void *p, size_t n)
{
    char *s = malloc(n + 1);
    cJSON *item;

    if (s == NULL) {
        return NULL;
    }
    memcpy(s, p, n);
    s[n] = '\0';
    item = cJSON_CreateString(s);
    free(s);
    return item;
}

static cJSON *base64_item(const void *p, size_t n)
{
    char *s = base64_dup(p, n);
    cJSON *item;

    if (s == NULL) {
        return NULL;
    }
    item = cJSON_CreateString(s);
    free(s);
    return item;
}

/* Parses a whole JSON document from p (not NUL-terminated); NULL if not. */
static cJSON *json_item(const char *p, size_t n)
{
    const char *end = NULL;
    cJSON *item;

    if (n == 0 || n > CONSUME_MAX_PARSE) {
        return NULL;
    }
    item = cJSON_ParseWithLengthOpts(p, n, &end, 0);
    if (item == NULL) {
        return NULL;
    }
    while (end < p + n &&
           (*end == ' ' || *end == '\t' || *end == '\n' || *end == '\r')) {
        end++;
    }
    if (end != p + n) {
        cJSON_Delete(item);
        return NULL;
    }
    return item;
}

/*
 * Adds name (or name_base64) for bytes p/n to obj: null when p is NULL,
 * parsed JSON when parse_json and it parses, a string when UTF-8, base64
 * otherwise. Returns 0 or -ENOMEM.
 */
static int add_bytes(cJSON *obj, const char *name, const void *p, size_t n,
                     int parse_json)
{
    char b64name[32];
    cJSON *item = NULL;

    if (p == NULL) {
        return cJSON_AddNullToObject(obj, name) ? 0 : -ENOMEM;
    }
    if (parse_json) {
        item = json_item(p, n);
    }
    if (item == NULL && utf8_valid(p, n)) {
        item = text_item(p, n);
    } else if (item == NULL) {
        snprintf(b64name, sizeof(b64name), "%s_base64", name);
        name = b64name;
        item = base64_item(p, n);
    }
    if (item == NULL) {
        return -ENOMEM;
    }
    cJSON_AddItemToObject(obj, name, item);
    return 0;
}

static int add_headers(cJSON *obj, rd_kafka_message_t *msg)
{
    rd_kafka_headers_t *hdrs = NULL;
    const char *name;
    const void *val;
    size_t size;
    cJSON *arr;

    if (rd_kafka_message_headers(msg, &hdrs) != RD_KAFKA_RESP_ERR_NO_ERROR ||
        rd_kafka_header_cnt(hdrs) == 0) {
        return 0;
    }
    arr = cJSON_AddArrayToObject(obj, "headers");
    if (arr == NULL) {
        return -ENOMEM;
    }
    for (size_t i = 0; rd_kafka_header_get_all(hdrs, i, &name, &val, &size) ==
                       RD_KAFKA_RESP_ERR_NO_ERROR;
         i++) {
        cJSON *pair = cJSON_CreateArray();
        cJSON *v;

        if (pair == NULL) {
            return -ENOMEM;
        }
        cJSON_AddItemToArray(arr, pair);
        v = cJSON_CreateString(name);
        if (v == NULL) {
            return -ENOMEM;
        }
        cJSON_AddItemToArray(pair, v);
        if (val == NULL) {
            v = cJSON_CreateNull();
        } else if (utf8_valid(val, size)) {
            v = text_item(val, size);
        } else {
            cJSON *b = base64_item(val, size);

            v = b != NULL ? cJSON_CreateObject() : NULL;
            if (v != NULL) {
                cJSON_AddItemToObject(v, "base64", b);
            } else {
                cJSON_Delete(b);
            }
        }
        if (v == NULL) {
            return -ENOMEM;
        }
        cJSON_AddItemToArray(pair, v);
    }
    return 0;
}

/* Prints msg as one JSON line. Returns 0, -ENOMEM or -EIO (stdout). */
static int print_message(rd_kafka_message_t *msg)
{
    rd_kafka_timestamp_type_t tstype;
    int64_t ts = rd_kafka_message_timestamp(msg, &tstype);
    cJSON *obj = cJSON_CreateObject();
    char *line = NULL;
    int rc = -ENOMEM;

    if (obj == NULL ||
        !cJSON_AddStringToObject(obj, "topic", rd_kafka_topic_name(msg->rkt)) ||
        !cJSON_AddNumberToObject(obj, "partition", msg->partition) ||
        !cJSON_AddNumberToObject(obj, "offset", (double)msg->offset)) {
        goto out;
    }
    if (tstype == RD_KAFKA_TIMESTAMP_NOT_AVAILABLE || ts < 0) {
        if (!cJSON_AddNullToObject(obj, "timestamp")) {
            goto out;
        }
    } else if (!cJSON_AddNumberToObject(obj, "timestamp", (double)ts)) {
        goto out;
    }
    if (add_bytes(obj, "key", msg->key, msg->key_len, 0) < 0 ||
        add_bytes(obj, "value", msg->payload, msg->len, 1) < 0 ||
        add_headers(obj, msg) < 0) {
        goto out;
    }
    line = cJSON_PrintUnformatted(obj);
    if (line == NULL) {
        goto out;
    }
    rc = 0;
    if (fputs(line, stdout) == EOF || fputc('\n', stdout) == EOF) {
        rc = -EIO;
    }
out:
    free(line);
    cJSON_Delete(obj);
    return rc;
}

int cmd_consume(int argc, char **argv)
{
    struct consume_opts o;
    struct sigaction sa;
    rd_kafka_t *rk = NULL;
    int64_t count = 0;
    int64_t last_msg;
    int64_t assigned_at = 0; /* group mode: first assignment, mono ms */
    int rc;
    int exit_code = 1;

    if (cli_wants_help(argc, argv)) {
        usage();
        return 0;
    }
    rc = parse_args(argc, argv, &o);
    if (rc != 0) {
        return rc;
    }
    rk = make_consumer(&o, &assigned_at);
    if (rk == NULL) {
        return 1;
    }
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    if (o.group != NULL) {
        rd_kafka_topic_partition_list_t *topics =
            rd_kafka_topic_partition_list_new(1);
        rd_kafka_resp_err_t err;

        rd_kafka_topic_partition_list_add(topics, o.topic,
                                          RD_KAFKA_PARTITION_UA);
        err = rd_kafka_subscribe(rk, topics);
        rd_kafka_topic_partition_list_destroy(topics);
        if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
            fprintf(stderr, "kadx consume: cannot subscribe to '%s': %s\n",
                    o.topic, rd_kafka_err2str(err));
            goto out;
        }
    } else if (assign_all(rk, &o) < 0) {
        goto out;
    }

    last_msg = mono_ms();
    exit_code = 0;
    while (!interrupted && (o.max == 0 || count < o.max)) {
        rd_kafka_message_t *msg = rd_kafka_consumer_poll(rk, 100);
        char errstr[512];

        if (msg == NULL) {
            if (fflush(stdout) == EOF) {
                exit_code = errno == EPIPE ? 0 : 1;
                break;
            }
            if (o.group != NULL && assigned_at == 0) {
                /* the idle clock starts at the first assignment */
                if (mono_ms() - last_msg >= GROUP_JOIN_WAIT_MS) {
                    fprintf(stderr,
                            "kadx consume: no partition of '%s' assigned "
                            "to group '%s' within %d s\n",
                            o.topic, o.group, GROUP_JOIN_WAIT_MS / 1000);
                    exit_code = 1;
                    break;
                }
                continue;
            }
            if (o.group != NULL && assigned_at > last_msg) {
                last_msg = assigned_at;
            }
            if (o.timeout_ms > 0 && mono_ms() - last_msg >= o.timeout_ms) {
                break;
            }
            continue;
        }
        if (msg->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
            rc = print_message(msg);
            rd_kafka_message_destroy(msg);
            if (rc == -EIO) {
                exit_code = errno == EPIPE ? 0 : 1;
                break;
            }
            if (rc < 0) {
                fprintf(stderr, "kadx consume: out of memory\n");
                exit_code = 1;
                break;
            }
            count++;
            last_msg = mono_ms();
            continue;
        }
        if (msg->err != RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            log_warn("consume", "%s", rd_kafka_message_errstr(msg));
        }
        rd_kafka_message_destroy(msg);
        if (rd_kafka_fatal_error(rk, errstr, sizeof(errstr)) !=
            RD_KAFKA_RESP_ERR_NO_ERROR) {
            fprintf(stderr, "kadx consume: fatal Kafka error: %s\n", errstr);
            exit_code = 1;
            break;
        }
    }
    if (fflush(stdout) == EOF && errno != EPIPE) {
        exit_code = 1;
    }
    fprintf(stderr, "consumed %" PRId64 " messages from %s\n", count, o.topic);
out:
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    return exit_code;
}
