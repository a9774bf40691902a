/*
 * config.h - kadx configuration: the native kadx.json and the Kusto Kafka
 * sink connector's JSON, loaded, validated and turned into one plain value
 * struct.
 *
 * config_load_file() reads a file (at most CONFIG_MAX_BYTES), substitutes
 * ${ENV_VAR} in every string value, detects whether it is a native kadx.json
 * or a connector config (bare map or {"name":..,"config":{..}}), applies
 * defaults, validates everything and registers every secret with
 * log_add_secret(). The result is immutable after loading: any thread may
 * read it; nobody writes it. gateway/CONFIG.md documents every key.
 *
 * All strings in these structs are owned by the struct config and freed by
 * config_free(). A char * documented as "NULL = off/unset" may be NULL; every
 * other char * is non-NULL after a successful load.
 */
#ifndef KADX_CONFIG_H
#define KADX_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#define CONFIG_MAX_BYTES           (1024 * 1024)     /* config file size cap */
#define CONFIG_ADX_MAX_BATCH_BYTES (4 * 1024 * 1024) /* ADX streaming limit */
/* intake.prefetch_bytes: librdkafka's prefetch for all partitions together */
#define CONFIG_DEFAULT_PREFETCH_BYTES (4 * 1024 * 1024)
/* What Microsoft's SDKs give a streaming ingest request (10 minutes: the
 * Java SDK also sends it as `servertimeout`; FORWARDER.md) */
#define CONFIG_SERVER_TIMEOUT_DEFAULT_MS (10 * 60 * 1000)
/* Added to request + server timeout for the default ambiguous window: the
 * SDKs' client-server delta for network latency (30 s), which also covers
 * the time between the journal's send mark and the request leaving */
#define CONFIG_AMBIGUOUS_SLACK_MS (30 * 1000)

/* librdkafka properties, verbatim, in file order (flag overrides last). */
struct config_kafka {
    size_t n;
    char **keys;
    char **values;
};

enum config_auth_method {
    CONFIG_AUTH_NONE = 0,          /* no Authorization header (emulator) */
    CONFIG_AUTH_STATIC_TOKEN,      /* token: a bearer token used as is */
    CONFIG_AUTH_CLIENT_SECRET,     /* AAD v2 client credentials */
    CONFIG_AUTH_MANAGED_IDENTITY,  /* IMDS; client_id = user-assigned id */
    CONFIG_AUTH_WORKLOAD_IDENTITY, /* federated token file + client_id */
};

struct config_auth {
    enum config_auth_method method;
    char *tenant_id;      /* CLIENT_SECRET, WORKLOAD_IDENTITY; else NULL */
    char *client_id;      /* CLIENT_SECRET, WORKLOAD_IDENTITY; MI: NULL =
                             system-assigned */
    char *client_secret;  /* CLIENT_SECRET only; secret */
    char *token;          /* STATIC_TOKEN only; secret */
    char *token_file;     /* WORKLOAD_IDENTITY: federated token file path */
    char *authority_host; /* default $AZURE_AUTHORITY_HOST, else
                             https://login.microsoftonline.com (no slash) */
    char *scope;          /* NULL = from /v1/rest/auth/metadata or
                             <cluster>/.default (auth.c decides) */
    char *imds_url;       /* MANAGED_IDENTITY: default
                             http://169.254.169.254/metadata/identity/oauth2/token */
};

struct config_adx {
    char *ingest_url; /* engine URL used for streaming ingest, no final '/' */
    char *query_url;  /* engine URL for queries; default = ingest_url */
    char *dm_url;     /* data-management URL (queued ingestion): native
                         adx.dm_url, default ingest_url with "ingest-" put
                         before the host name (loopback/IP hosts: the same
                         URL); connector: kusto.ingestion.url */
    struct config_auth auth;
    int64_t request_timeout_ms; /* per HTTP request, default 30000 */
    int64_t server_timeout_ms;  /* life of an ingest request on the server,
                                   sent as the `servertimeout` request
                                   property; default 600000 (the SDKs') */
    char *proxy;    /* every HTTP request kadx makes (ADX, token endpoints)
                       goes through it; NULL = direct (the environment's
                       proxy variables are ignored); secret when it holds
                       user:password */
    char *no_proxy; /* libcurl's NOPROXY list; NULL = none */
    int64_t keepalive_idle_ms; /* a kept-alive connection idle this long is
                                  not reused (gateway/adx.c); 50000 */
};

/* Field names added to each JSON record; NULL = that field is not added. */
struct config_meta {
    char *topic;
    char *partition;
    char *offset;
    char *timestamp;
    char *key;
    char *headers;
    char *batch_id;
};

/* A Confluent-compatible Schema Registry (gateway/REGISTRY.md). */
struct config_registry {
    char *url;          /* NULL = none configured */
    char *basic_auth;   /* "user:secret"; NULL = none; secret */
    char *ca_file;      /* extra CA bundle for https; NULL = system */
    int64_t timeout_ms; /* per request, default 10000 */
};

/* How a route's batches reach ADX (gateway/QUEUED.md). */
enum config_ingestion {
    CONFIG_INGEST_STREAMING = 0, /* POST /v1/rest/ingest (native default) */
    CONFIG_INGEST_QUEUED,        /* blob + queue message + status report */
    CONFIG_INGEST_MANAGED,       /* streaming, queued when ADX says the
                                    batch is too large or streaming is off */
};

struct config_route {
    char *name;        /* unique; default = topic, topic_regex or "*" */
    char *topic;       /* exact topic, or "*" (fallback); NULL if regex */
    char *topic_regex; /* POSIX ERE starting with '^'; NULL if topic */
    char *database;
    char *table;
    char *format;            /* "json", "multijson" or "csv" (lower case) */
    char *mapping;           /* ingestion mapping reference name; NULL = none */
    struct config_meta meta; /* json/multijson only */
    char *dedupe_column;     /* NULL = none; requires meta.batch_id */
    enum config_ingestion ingestion; /* native `ingestion`; connector:
                                        "streaming" true = managed, else
                                        queued */
    /* Schema Registry framing of values / keys: "avro", "json_schema" or
       NULL (raw bytes, as before); format "avro" needs value "avro" */
    char *value_converter;
    char *key_converter;
    struct config_registry registry; /* the route's, else the global one */
    void *topic_re; /* private to config.c (compiled topic_regex) */
};

struct config_journal {
    char *path;               /* default "$STATE_DIRECTORY/kadx-journal.db"
                                 (first entry) when set, else
                                 "./kadx-journal.db" */
    int64_t max_bytes;        /* default 1 GiB */
    int64_t retention_ms;     /* delivered data kept for replay; default 24 h */
    int sync_full;            /* 1 = synchronous=FULL (default), 0 = NORMAL */
    int64_t reserve_bytes;    /* disk space appends never take (kept for
                                 draining); default 8 MiB, 0 = off */
    int64_t min_retention_ms; /* replay window kept even under disk
                                 pressure; default 0 */
};

/*
 * What a permanent per-record failure does. kadx never drops data:
 * DEADLETTER moves only the bad records to the dead-letter set and the route
 * goes on (connector behavior.on.error LOG / IGNORE); PAUSE stops the route
 * with the batch kept, until an operator acts (connector FAIL).
 */
enum config_on_error {
    CONFIG_ON_ERROR_DEADLETTER = 0,
    CONFIG_ON_ERROR_PAUSE,
};

struct config_forwarder {
    int64_t batch_max_bytes;       /* uncompressed; default 1 MiB; <= 4 MiB */
    int64_t batch_max_rows;        /* default 10000 */
    int64_t linger_ms;             /* default 200 */
    int max_inflight;              /* requests in flight per route, default 4 */
    int64_t retry_initial_ms;      /* default 500 */
    int64_t retry_max_ms;          /* backoff cap, default 30000 */
    int64_t retry_max_time_ms;     /* 0 = retry forever (default); after it the
                                      route pauses, nothing is dropped */
    int64_t ambiguous_delay_ms;    /* wait before the dedupe query, def. 2000 */
    int64_t ambiguous_window_ms;   /* after a send, how long its request may
                                      still commit in ADX: an ambiguous batch
                                      found absent is resent only after it;
                                      default request + server timeout + 30 s,
                                      never below their sum */
    enum config_on_error on_error; /* default DEADLETTER */
};

/* What intake does when a partition went backwards (INTAKE.md). */
enum config_on_rewind {
    CONFIG_ON_REWIND_PAUSE = 0, /* pause it until POST /partitions/epoch */
    CONFIG_ON_REWIND_EPOCH,     /* new epoch from the broker's log start */
};

struct config_intake {
    int skip_tombstones;             /* default 1 */
    enum config_on_rewind on_rewind; /* default pause */
    int reset_latest;         /* kafka.auto.offset.reset is latest (default: 0,
                                 earliest); kadx applies it itself */
    int64_t high_water_bytes; /* pending journal bytes that pause intake;
                                 default 80% of journal.max_bytes */
    int64_t low_water_bytes;  /* ... that resume it; default 50% */
    int64_t prefetch_bytes;   /* what librdkafka may prefetch for all
                                 partitions together; 0 = librdkafka's
                                 per-partition defaults (prefetch.h) */
    /* The Kafka subscription, computed: route topics, '^' patterns of regex
       routes, plus intake.topics (native) or `topics` (connector). Never
       contains "*". */
    size_t ntopics;
    char **topics;
};

struct config_admin {
    char *listen;     /* "HOST:PORT", default "127.0.0.1:8081"; NULL = off */
    char *token;      /* bearer token for POSTs; NULL = none; secret */
    int token_on_get; /* 1: GETs need the token too (except
                         /healthz, /readyz); needs token */
    char *tls_cert;   /* PEM certificate (chain) file; NULL = plain
                         HTTP; set with tls_key */
    char *tls_key;    /* PEM private key file */
    int64_t max_connections;    /* open connections; default 64 */
    int64_t max_requests_per_s; /* per connection; default 20 */
};

struct config {
    struct config_kafka kafka;
    struct config_adx adx;
    size_t nroutes;
    struct config_route *routes;
    struct config_journal journal;
    struct config_forwarder forwarder;
    struct config_intake intake;
    struct config_admin admin;
    int from_connector;   /* 1 when loaded from a connector config */
    char *connector_name; /* the connector config's "name"; NULL = none
                             (native, or a bare map without one) */
    int log_level;        /* log.level as an enum log_level; -1 = not set (the
                             --log-level flag stays in force) */
    struct config_registry registry; /* global `schema_registry` */
};

/*
 * Values from command-line flags. A non-NULL field overrides the file;
 * for a NULL field the file's value is used, else the environment
 * (KADX_BOOTSTRAP_SERVERS, KADX_GROUP_ID), else, for a connector config
 * with a name, group.id "connect-<name>" (what Kafka Connect uses, so the
 * gateway resumes from the connector's committed offsets).
 */
struct config_overrides {
    const char *bootstrap_servers;
    const char *group_id;
    const char *admin_listen; /* "HOST:PORT" or "off" (a connector config
                                 has no admin key of its own) */
};

/*
 * Loads and validates. ov may be NULL. On success returns 0 and sets *out
 * (owned: config_free). On failure returns -errno (-EINVAL for bad content,
 * -ENOENT etc. for I/O, -EFBIG over CONFIG_MAX_BYTES, -ENOMEM) and writes a
 * one-line message without secrets into err. May log info/warn lines about
 * connector keys kadx ignores or cannot honour.
 */
int config_load_file(const char *path, const struct config_overrides *ov,
                     struct config **out, char *err, size_t errlen);
/* Same, from a NUL-terminated string (at most CONFIG_MAX_BYTES). */
int config_load_string(const char *json, const struct config_overrides *ov,
                       struct config **out, char *err, size_t errlen);

/* NULL-safe. */
void config_free(struct config *cfg);

/*
 * The effective configuration as native kadx.json (pretty printed), secrets
 * replaced by "***". Returns an owned string (free()), or NULL on ENOMEM.
 */
char *config_to_json(const struct config *cfg);

/* The value of a kafka property, or NULL. Borrowed, valid until free. */
const char *config_kafka_get(const struct config *cfg, const char *key);

/*
 * The route for a topic: the exact-topic route first, then the first
 * matching regex route (file order), then the "*" route; NULL if none.
 */
const struct config_route *config_route_for_topic(const struct config *cfg,
                                                  const char *topic);

/* "streaming", "queued", "managed" (config_ingestion.c). */
const char *config_ingestion_name(enum config_ingestion m);
/* Parses one of those names (case-insensitive): 0, or -EINVAL. */
int config_ingestion_parse(const char *s, enum config_ingestion *out);
/* The default DM URL for an engine URL (see config_adx.dm_url): owned
 * string in *out (free()). 0 or -ENOMEM. */
int config_dm_url_default(const char *engine, char **out);

/* "none", "static_token", "client_secret", ... */
const char *config_auth_method_name(enum config_auth_method m);

#endif
