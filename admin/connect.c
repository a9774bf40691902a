/*
 * connect.c - Kafka Connect's REST API on the admin port (connect.h).
 *
 * Endpoints (Kafka Connect's documented shapes and status codes):
 *   GET  /connector-plugins                 [{"class","type","version"}]
 *   GET  /connectors[?expand=status|info]   ["name",...] or {name:{...}}
 *   GET  /connectors/{name}                 {"name","config","tasks","type"}
 *   GET  /connectors/{name}/config          {"key":"value",...}
 *   GET  /connectors/{name}/status          {"name","connector","tasks","type"}
 *   GET  /connectors/{name}/tasks           [{"id":{"connector","task"},
 *                                             "config"}]
 *   GET  /connectors/{name}/tasks/{id}/status  {"id","state","worker_id"}
 *   PUT  /connectors/{name}/pause, /resume  202, no body
 *   POST /connectors/{name}/restart         204 (202 + status with
 *                                           includeTasks / onlyFailed)
 *   POST /connectors/{name}/tasks/{id}/restart  204
 * Errors: {"error_code": N, "message": "..."} with the same status N.
 *
 * The config map is what the Kusto sink connector would be configured
 * with for these routes (connector.class, topics, kusto.*,
 * kusto.tables.topics.mapping, aad.auth.strategy), secrets left out.
 * States: a task is RUNNING, PAUSED (operator pause) or FAILED (the route
 * is paused by ADX: configuration error, retries exhausted, or a permanent
 * error with on_error=pause; "trace" holds the reason); UNASSIGNED while
 * the forwarder is not running. Loop thread.
 */
#include "admin/connect.h"

#include "gateway/config.h"
#include "gateway/forwarder.h"
#include "gateway/intake.h"
#include "gateway/log.h"
#include "kadx_version.h"

#include <cjson/cJSON.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define KUSTO_SINK_CLASS                                                       \
    "com.microsoft.azure.kusto.kafka.connect.sink.KustoSinkConnector"
#define NAME_MAX_LEN 256

/* One connector: routes [first, first + n). */
struct conn {
    const char *name;
    size_t first;
    size_t n;
};

static void error_json(struct http_request *req, int status, const char *fmt,
                       ...) __attribute__((format(printf, 3, 4)));

static void error_json(struct http_request *req, int status, const char *fmt,
                       ...)
{
    char msg[512];
    cJSON *o = cJSON_CreateObject();
    char *text;
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    cJSON_AddNumberToObject(o, "error_code", status);
    cJSON_AddStringToObject(o, "message", msg);
    text = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    if (text == NULL) {
        http_respond(req, 500, NULL, 0, NULL, 0);
        return;
    }
    http_respond_json(req, status, NULL, 0, text);
    cJSON_free(text);
}

static void send_json(struct http_request *req, int status, cJSON *o)
{
    char *text = o != NULL ? cJSON_PrintUnformatted(o) : NULL;

    cJSON_Delete(o);
    if (text == NULL) {
        error_json(req, 500, "out of memory");
        return;
    }
    http_respond_json(req, status, NULL, 0, text);
    cJSON_free(text);
}

static size_t nconns(const struct config *cfg)
{
    return cfg->connector_name != NULL ? 1 : cfg->nroutes;
}

static struct conn conn_at(const struct config *cfg, size_t i)
{
    struct conn c;

    if (cfg->connector_name != NULL) {
        c.name = cfg->connector_name;
        c.first = 0;
        c.n = cfg->nroutes;
    } else {
        c.name = cfg->routes[i].name;
        c.first = i;
        c.n = 1;
    }
    return c;
}

static int conn_find(const struct config *cfg, const char *name,
                     struct conn *out)
{
    for (size_t i = 0; i < nconns(cfg); i++) {
        *out = conn_at(cfg, i);
        if (strcmp(out->name, name) == 0) {
            return 0;
        }
    }
    return -1;
}

static const char *strategy(const struct config *cfg)
{
    switch (cfg->adx.auth.method) {
    case CONFIG_AUTH_CLIENT_SECRET:
        return "application";
    case CONFIG_AUTH_MANAGED_IDENTITY:
        return "managed_identity";
    case CONFIG_AUTH_WORKLOAD_IDENTITY:
        return "workload_identity";
    case CONFIG_AUTH_STATIC_TOKEN:
        return "az_dev_token";
    default:
        return "none";
    }
}

/* The Kusto sink connector's config for routes [first, first+n). */
static cJSON *conn_config(const struct config *cfg, const struct conn *c,
                          int task)
{
    cJSON *o = cJSON_CreateObject();
    cJSON *map = cJSON_CreateArray();
    char *mapping;
    char topics[4096] = "";
    size_t tl = 0;

    for (size_t i = c->first; i < c->first + c->n; i++) {
        const struct config_route *r = &cfg->routes[i];
        const char *t = r->topic != NULL ? r->topic : r->topic_regex;
        cJSON *e = cJSON_CreateObject();

        if (task >= 0 && (size_t)task != i - c->first) {
            cJSON_Delete(e);
            continue;
        }
        cJSON_AddStringToObject(e, "topic", t);
        cJSON_AddStringToObject(e, "db", r->database);
        cJSON_AddStringToObject(e, "table", r->table);
        cJSON_AddStringToObject(e, "format", r->format);
        if (r->mapping != NULL) {
            cJSON_AddStringToObject(e, "mapping", r->mapping);
        }
        cJSON_AddStringToObject(e, "streaming", "true");
        cJSON_AddItemToArray(map, e);
        if (r->topic != NULL && strcmp(r->topic, "*") != 0) {
            tl += (size_t)snprintf(topics + tl, sizeof(topics) - tl, "%s%s",
                                   tl > 0 ? "," : "", r->topic);
            if (tl >= sizeof(topics)) {
                tl = sizeof(topics) - 1;
            }
        }
    }
    mapping = cJSON_PrintUnformatted(map);
    cJSON_Delete(map);
    cJSON_AddStringToObject(o, "connector.class", KUSTO_SINK_CLASS);
    cJSON_AddStringToObject(o, "name", c->name);
    if (task >= 0) {
        cJSON_AddStringToObject(o, "task.class",
                                "com.microsoft.azure.kusto.kafka.connect."
                                "sink.KustoSinkTask");
    } else {
        char tasks[32];

        snprintf(tasks, sizeof(tasks), "%zu", c->n);
        cJSON_AddStringToObject(o, "tasks.max", tasks);
    }
    cJSON_AddStringToObject(o, "topics", topics);
    cJSON_AddStringToObject(o, "kusto.query.url", cfg->adx.query_url);
    cJSON_AddStringToObject(o, "kusto.ingestion.url", cfg->adx.ingest_url);
    cJSON_AddStringToObject(o, "kusto.tables.topics.mapping",
                            mapping != NULL ? mapping : "[]");
    cJSON_free(mapping);
    cJSON_AddStringToObject(o, "aad.auth.strategy", strategy(cfg));
    if (cfg->adx.auth.tenant_id != NULL) {
        cJSON_AddStringToObject(o, "aad.auth.authority",
                                cfg->adx.auth.tenant_id);
    }
    if (cfg->adx.auth.client_id != NULL) {
        cJSON_AddStringToObject(o, "aad.auth.appid", cfg->adx.auth.client_id);
    }
    {
        char v[32];

        snprintf(v, sizeof(v), "%lld", (long long)cfg->forwarder.linger_ms);
        cJSON_AddStringToObject(o, "flush.interval.ms", v);
        snprintf(v, sizeof(v), "%lld",
                 (long long)cfg->forwarder.batch_max_bytes);
        cJSON_AddStringToObject(o, "flush.size.bytes", v);
    }
    cJSON_AddStringToObject(
        o, "behavior.on.error",
        cfg->forwarder.on_error == CONFIG_ON_ERROR_PAUSE ? "fail" : "log");
    return o;
}

/* A task's state and trace (NULL = none). */
static const char *task_state(const struct connect_ctx *cx, size_t route,
                              const char **trace, char *buf, size_t buflen)
{
    struct forwarder_route_stats st;

    *trace = NULL;
    if (cx->forwarder == NULL ||
        forwarder_route_stats(cx->forwarder, (int)route, &st) < 0) {
        return "UNASSIGNED";
    }
    switch (st.state) {
    case FORWARDER_RUNNING:
        return *cx->paused_all ? "PAUSED" : "RUNNING";
    case FORWARDER_PAUSED_OPERATOR:
        return "PAUSED";
    default:
        snprintf(buf, buflen, "route '%s' %s: %s", cx->cfg->routes[route].name,
                 forwarder_route_state_name(st.state), st.reason);
        *trace = buf;
        return "FAILED";
    }
}

static cJSON *task_status(const struct connect_ctx *cx, const struct conn *c,
                          size_t t)
{
    cJSON *o = cJSON_CreateObject();
    const char *trace;
    char buf[512];
    const char *state = task_state(cx, c->first + t, &trace, buf, sizeof(buf));

    cJSON_AddNumberToObject(o, "id", (double)t);
    cJSON_AddStringToObject(o, "state", state);
    cJSON_AddStringToObject(o, "worker_id", cx->worker_id);
    if (trace != NULL) {
        cJSON_AddStringToObject(o, "trace", trace);
    }
    return o;
}

static cJSON *conn_status(const struct connect_ctx *cx, const struct conn *c)
{
    cJSON *o = cJSON_CreateObject();
    cJSON *co = cJSON_AddObjectToObject(o, "connector");
    cJSON *tasks;
    size_t paused = 0;

    cJSON_AddStringToObject(o, "name", c->name);
    for (size_t t = 0; t < c->n; t++) {
        const char *trace;
        char buf[512];

        if (strcmp(task_state(cx, c->first + t, &trace, buf, sizeof(buf)),
                   "PAUSED") == 0) {
            paused++;
        }
    }
    cJSON_AddStringToObject(co, "state",
                            cx->forwarder == NULL ? "UNASSIGNED"
                            : paused == c->n      ? "PAUSED"
                                                  : "RUNNING");
    cJSON_AddStringToObject(co, "worker_id", cx->worker_id);
    tasks = cJSON_AddArrayToObject(o, "tasks");
    for (size_t t = 0; t < c->n; t++) {
        cJSON_AddItemToArray(tasks, task_status(cx, c, t));
    }
    cJSON_AddStringToObject(o, "type", "sink");
    return o;
}

static cJSON *task_ids(const struct conn *c)
{
    cJSON *a = cJSON_CreateArray();

    for (size_t t = 0; t < c->n; t++) {
        cJSON *id = cJSON_CreateObject();

        cJSON_AddStringToObject(id, "connector", c->name);
        cJSON_AddNumberToObject(id, "task", (double)t);
        cJSON_AddItemToArray(a, id);
    }
    return a;
}

static cJSON *conn_info(const struct connect_ctx *cx, const struct conn *c)
{
    cJSON *o = cJSON_CreateObject();

    cJSON_AddStringToObject(o, "name", c->name);
    cJSON_AddItemToObject(o, "config", conn_config(cx->cfg, c, -1));
    cJSON_AddItemToObject(o, "tasks", task_ids(c));
    cJSON_AddStringToObject(o, "type", "sink");
    return o;
}

/* 1 when the query has name=value among its &-separated parameters. */
static int query_has(const char *q, const char *name, const char *value)
{
    size_t nl = strlen(name);
    size_t vl = strlen(value);

    while (q != NULL && *q != '\0') {
        const char *end = strchr(q, '&');
        size_t len = end != NULL ? (size_t)(end - q) : strlen(q);

        if (len == nl + 1 + vl && strncmp(q, name, nl) == 0 && q[nl] == '=' &&
            strncasecmp(q + nl + 1, value, vl) == 0) {
            return 1;
        }
        q = end != NULL ? end + 1 : NULL;
    }
    return 0;
}

static void list_connectors(const struct connect_ctx *cx,
                            struct http_request *req)
{
    const char *q = http_req_query(req);
    int status = query_has(q, "expand", "status");
    int info = query_has(q, "expand", "info");
    cJSON *o = status || info ? cJSON_CreateObject() : cJSON_CreateArray();

    for (size_t i = 0; i < nconns(cx->cfg); i++) {
        struct conn c = conn_at(cx->cfg, i);

        if (!status && !info) {
            cJSON_AddItemToArray(o, cJSON_CreateString(c.name));
            continue;
        }
        {
            cJSON *e = cJSON_AddObjectToObject(o, c.name);

            if (status) {
                cJSON_AddItemToObject(e, "status", conn_status(cx, &c));
            }
            if (info) {
                cJSON_AddItemToObject(e, "info", conn_info(cx, &c));
            }
        }
    }
    send_json(req, 200, o);
}

static void set_paused(const struct connect_ctx *cx, const struct conn *c,
                       int pause)
{
    if (cx->cfg->connector_name != NULL) {
        /* the connector is the whole gateway: as POST /pause {} */
        *cx->paused_all = pause;
        if (cx->intake != NULL) {
            intake_set_paused(cx->intake, pause);
        }
    }
    for (size_t t = 0; t < c->n; t++) {
        if (pause) {
            forwarder_pause(cx->forwarder, (int)(c->first + t));
        } else {
            forwarder_resume(cx->forwarder, (int)(c->first + t));
        }
    }
    log_info("admin", "connect: %s connector '%s'",
             pause ? "paused" : "resumed", c->name);
}

/* Restart: a route paused by an error (or the operator) goes again now. */
static void restart_tasks(const struct connect_ctx *cx, const struct conn *c,
                          long task, int only_failed)
{
    for (size_t t = 0; t < c->n; t++) {
        const char *trace;
        char buf[512];
        const char *st;

        if (task >= 0 && (size_t)task != t) {
            continue;
        }
        st = task_state(cx, c->first + t, &trace, buf, sizeof(buf));
        if (only_failed && strcmp(st, "FAILED") != 0) {
            continue;
        }
        if (strcmp(st, "FAILED") == 0) {
            forwarder_resume(cx->forwarder, (int)(c->first + t));
        }
    }
    log_info("admin", "connect: restarted connector '%s'%s", c->name,
             task >= 0 ? " (one task)" : "");
}

/* Splits "/connectors/{name}[/rest]": decodes name; rest points after it. */
static int split_path(const char *path, char *name, size_t namelen,
                      const char **rest)
{
    const char *p = path + strlen("/connectors/");
    const char *slash = strchr(p, '/');
    size_t len = slash != NULL ? (size_t)(slash - p) : strlen(p);

    *rest = slash != NULL ? slash : "";
    if (len == 0 || http_url_decode(p, len, name, namelen, 0) < 0) {
        return -1;
    }
    return 0;
}

static int parse_task(const char *s, const char **after, long *task)
{
    char *end = NULL;

    if (*s < '0' || *s > '9') {
        return -1;
    }
    *task = strtol(s, &end, 10);
    *after = end;
    return 0;
}

int connect_owns(const char *path)
{
    return strcmp(path, "/connectors") == 0 ||
           strcmp(path, "/connectors/") == 0 ||
           strncmp(path, "/connectors/", 12) == 0 ||
           strcmp(path, "/connector-plugins") == 0 ||
           strcmp(path, "/connector-plugins/") == 0;
}

/* Why a connector cannot be created, changed or deleted here. */
#define FROM_CONFIG                                                            \
    "kadx's connectors come from its config file (edit it and send SIGHUP)"

static void method_not_allowed(struct http_request *req, const char *allow,
                               const char *why)
{
    char msg[256];
    char body[512];
    cJSON *o = cJSON_CreateObject();
    char *text;
    struct http_header h = {"Allow", allow};

    snprintf(msg, sizeof(msg), "HTTP %s not allowed here%s%s",
             http_req_method(req), why[0] ? ": " : "", why);
    cJSON_AddNumberToObject(o, "error_code", 405);
    cJSON_AddStringToObject(o, "message", msg);
    text = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    snprintf(body, sizeof(body), "%s", text != NULL ? text : "{}");
    cJSON_free(text);
    http_respond_json(req, 405, &h, 1, body);
}

/* An action (pause, resume, restart) needs its method and a running
 * forwarder: 1, or 0 with the answer sent. */
static int can_act(const struct connect_ctx *cx, struct http_request *req,
                   const char *method)
{
    if (strcmp(http_req_method(req), method) != 0) {
        method_not_allowed(req, method, "");
        return 0;
    }
    if (cx->forwarder == NULL) {
        error_json(req, 409, "the forwarder is not running");
        return 0;
    }
    return 1;
}

/* GET /connector-plugins: the one plugin kadx is. */
static void handle_plugins(struct http_request *req, int get)
{
    cJSON *a;
    cJSON *p;

    if (!get) {
        method_not_allowed(req, "GET", "");
        return;
    }
    a = cJSON_CreateArray();
    p = cJSON_CreateObject();
    cJSON_AddStringToObject(p, "class", KUSTO_SINK_CLASS);
    cJSON_AddStringToObject(p, "type", "sink");
    cJSON_AddStringToObject(p, "version", "kadx-" KADX_VERSION);
    cJSON_AddItemToArray(a, p);
    send_json(req, 200, a);
}

/* /connectors/{name}/tasks/{task}[/...]: rest points at "/tasks/". */
static void handle_task(const struct connect_ctx *cx, struct http_request *req,
                        const char *name, const struct conn *c,
                        const char *rest)
{
    const char *m = http_req_method(req);
    int get = strcmp(m, "GET") == 0;
    long task = -1;
    const char *after;

    if (parse_task(rest + 7, &after, &task) < 0 || task < 0 ||
        (size_t)task >= c->n) {
        error_json(req, 404, "Task %s-%s not found", name, rest + 7);
        return;
    }
    rest = after;
    if (strcmp(rest, "/status") == 0) {
        if (!get) {
            method_not_allowed(req, "GET", "");
            return;
        }
        {
            cJSON *o = task_status(cx, c, (size_t)task);

            send_json(req, 200, o);
        }
        return;
    }
    if (strcmp(rest, "/restart") == 0) {
        if (!can_act(cx, req, "POST")) {
            return;
        }
        restart_tasks(cx, c, task, 0);
        http_respond(req, 204, NULL, 0, NULL, 0);
        return;
    }
    error_json(req, 404, "Not found");
}

/* /connectors/{name}[rest] other than its tasks/{task}. */
static void handle_conn(const struct connect_ctx *cx, struct http_request *req,
                        const struct conn *c, const char *rest)
{
    const char *m = http_req_method(req);
    int get = strcmp(m, "GET") == 0;

    if (rest[0] == '\0' || strcmp(rest, "/") == 0) {
        if (!get) {
            method_not_allowed(req, "GET", FROM_CONFIG);
            return;
        }
        send_json(req, 200, conn_info(cx, c));
        return;
    }
    if (strcmp(rest, "/config") == 0) {
        if (!get) {
            method_not_allowed(req, "GET", FROM_CONFIG);
            return;
        }
        send_json(req, 200, conn_config(cx->cfg, c, -1));
        return;
    }
    if (strcmp(rest, "/status") == 0) {
        if (!get) {
            method_not_allowed(req, "GET", "");
            return;
        }
        send_json(req, 200, conn_status(cx, c));
        return;
    }
    if (strcmp(rest, "/tasks") == 0) {
        cJSON *a;

        if (!get) {
            method_not_allowed(req, "GET", "");
            return;
        }
        a = cJSON_CreateArray();
        for (size_t t = 0; t < c->n; t++) {
            cJSON *e = cJSON_CreateObject();
            cJSON *id = cJSON_AddObjectToObject(e, "id");

            cJSON_AddStringToObject(id, "connector", c->name);
            cJSON_AddNumberToObject(id, "task", (double)t);
            cJSON_AddItemToObject(e, "config", conn_config(cx->cfg, c, (int)t));
            cJSON_AddItemToArray(a, e);
        }
        send_json(req, 200, a);
        return;
    }
    if (strcmp(rest, "/pause") == 0 || strcmp(rest, "/resume") == 0) {
        if (!can_act(cx, req, "PUT")) {
            return;
        }
        set_paused(cx, c, strcmp(rest, "/pause") == 0);
        http_respond(req, 202, NULL, 0, NULL, 0);
        return;
    }
    if (strcmp(rest, "/restart") == 0) {
        const char *q = http_req_query(req);
        int include = query_has(q, "includeTasks", "true");
        int only = query_has(q, "onlyFailed", "true");

        if (!can_act(cx, req, "POST")) {
            return;
        }
        restart_tasks(cx, c, -1, only);
        if (include || only) {
            send_json(req, 202, conn_status(cx, c));
        } else {
            http_respond(req, 204, NULL, 0, NULL, 0);
        }
        return;
    }
    error_json(req, 404, "Not found");
}

void connect_handle(const struct connect_ctx *cx, struct http_request *req)
{
    const char *m = http_req_method(req);
    const char *path = http_req_path(req);
    int get = strcmp(m, "GET") == 0;
    char name[NAME_MAX_LEN];
    const char *rest;
    struct conn c;

    if (strncmp(path, "/connector-plugins", 18) == 0) {
        handle_plugins(req, get);
        return;
    }
    if (strcmp(path, "/connectors") == 0 || strcmp(path, "/connectors/") == 0) {
        if (!get) {
            method_not_allowed(req, "GET", FROM_CONFIG);
            return;
        }
        list_connectors(cx, req);
        return;
    }
    if (split_path(path, name, sizeof(name), &rest) < 0) {
        error_json(req, 404, "Connector not found");
        return;
    }
    if (conn_find(cx->cfg, name, &c) < 0) {
        error_json(req, 404, "Connector %s not found", name);
        return;
    }
    if (strncmp(rest, "/tasks/", 7) == 0) {
        handle_task(cx, req, name, &c, rest);
        return;
    }
    handle_conn(cx, req, &c, rest);
}
