/*
 * adx_control.c - the ADX emulator's control endpoint /_emulator/
 * (loopback only, no auth; EMULATOR.md, "Faults"): POST/GET faults (fail
 * the next N requests, latency, late apply, reset, throttle, token endpoint
 * down), GET stats, POST reset. Runs on the emulator's loop thread.
 */
#include "emulators/adx_emulator_internal.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- control endpoint ---- */

static const char *default_fail_code(int status)
{
    switch (status) {
    case 400:
        return "General_BadRequest";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "BadRequest_EntityNotFound";
    case 413:
        return "Stream_InputStreamTooLarge";
    case 429:
        return "Throttling";
    case 503:
        return "ServiceUnavailable";
    default:
        return status >= 500 ? "Internal_ServiceError" : "General_Error";
    }
}

static void render_faults(struct emu *e, struct sbuf *b)
{
    sbuf_printf(b,
                "{\"fail_count\":%d,\"fail_status\":%d,\"fail_permanent\":%s,"
                "\"fail_code\":",
                e->f.fail_count, e->f.fail_status,
                e->f.fail_permanent ? "true" : "false");
    rb_json(b, e->f.fail_code);
    sbuf_adds(b, ",\"fail_message\":");
    rb_json(b, e->f.fail_message);
    sbuf_printf(b,
                ",\"latency_ms\":%" PRIu64 ",\"reset_count\":%d,"
                "\"throttle_rps\":%g,\"retry_after_s\":%d,\"late_share\":%g,"
                "\"late_min_ms\":%" PRIu64 ",\"late_max_ms\":%" PRIu64
                ",\"token_down_ms\":%" PRIu64 "}",
                e->f.latency_ms, e->f.reset_count, e->f.throttle_rps,
                e->f.retry_after_s, e->f.late_share, e->f.late_min_ms,
                e->f.late_max_ms,
                e->f.token_down_until_ms > emu_now_ms()
                    ? e->f.token_down_until_ms - emu_now_ms()
                    : 0);
}

void emu_faults_clear(struct emu *e)
{
    memset(&e->f, 0, sizeof(e->f));
    e->f.fail_status = 503;
    snprintf(e->f.fail_code, sizeof(e->f.fail_code), "%s",
             default_fail_code(503));
    snprintf(e->f.fail_message, sizeof(e->f.fail_message), "injected fault");
    e->f.late_min_ms = 1000;
    e->f.late_max_ms = 8000;
}

/* Reads an optional number member into *out with bounds; -EINVAL if bad. */
static int num_member(const cJSON *o, const char *name, double lo, double hi,
                      double *out, int *present)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, name);

    *present = 0;
    if (it == NULL) {
        return 0;
    }
    if (!cJSON_IsNumber(it) || it->valuedouble < lo || it->valuedouble > hi) {
        return -EINVAL;
    }
    *out = it->valuedouble;
    *present = 1;
    return 0;
}

static void handle_faults_post(struct emu *e, struct http_request *req,
                               struct ctx *c)
{
    size_t blen;
    const char *body = http_req_body(req, &blen);
    cJSON *root = cJSON_ParseWithLength(body, blen);
    static const char *const known[] = {
        "fail_count",    "fail_status", "fail_permanent", "fail_code",
        "fail_message",  "latency_ms",  "reset_count",    "throttle_rps",
        "retry_after_s", "late_share",  "late_min_ms",    "late_max_ms",
        "token_down_ms"};
    struct faults nf;
    const cJSON *it;
    double v;
    int present;
    int code_given = 0;
    struct sbuf b = {0};

    if (!cJSON_IsObject(root)) {
        emu_respond_error(req, c, 400, "General_BadRequest", 1,
                          "the faults body must be a JSON object");
        goto out;
    }
    cJSON_ArrayForEach(it, root)
    {
        size_t k;
        for (k = 0; k < sizeof(known) / sizeof(known[0]); k++) {
            if (strcmp(it->string, known[k]) == 0) {
                break;
            }
        }
        if (k == sizeof(known) / sizeof(known[0])) {
            emu_respond_error(req, c, 400, "General_BadRequest", 1,
                              "unknown fault key '%s'", it->string);
            goto out;
        }
    }
    nf = e->f;
#define NUM(name, lo, hi, dst, cast)                                           \
    do {                                                                       \
        if (num_member(root, name, lo, hi, &v, &present) < 0) {                \
            emu_respond_error(req, c, 400, "General_BadRequest", 1,            \
                              "fault key '%s' must be a number in [%g, %g]",   \
                              name, (double)(lo), (double)(hi));               \
            goto out;                                                          \
        }                                                                      \
        if (present) {                                                         \
            dst = (cast)v;                                                     \
        }                                                                      \
    } while (0)
    NUM("fail_count", 0, 1e9, nf.fail_count, int);
    NUM("fail_status", 400, 599, nf.fail_status, int);
    NUM("latency_ms", 0, 600000, nf.latency_ms, uint64_t);
    NUM("reset_count", 0, 1e9, nf.reset_count, int);
    NUM("throttle_rps", 0, 1e9, nf.throttle_rps, double);
    NUM("retry_after_s", 0, 3600, nf.retry_after_s, int);
    NUM("late_share", 0, 1, nf.late_share, double);
    NUM("late_min_ms", 0, 600000, nf.late_min_ms, uint64_t);
    NUM("late_max_ms", 0, 600000, nf.late_max_ms, uint64_t);
    NUM("token_down_ms", 0, 3600000, v, double);
    if (present) {
        nf.token_down_until_ms = v > 0 ? emu_now_ms() + (uint64_t)v : 0;
    }
#undef NUM
    if (nf.late_max_ms < nf.late_min_ms) {
        emu_respond_error(req, c, 400, "General_BadRequest", 1,
                          "fault key 'late_max_ms' (%" PRIu64
                          ") must not be below 'late_min_ms' (%" PRIu64 ")",
                          nf.late_max_ms, nf.late_min_ms);
        goto out;
    }
    it = cJSON_GetObjectItemCaseSensitive(root, "fail_permanent");
    if (it != NULL) {
        if (!cJSON_IsBool(it)) {
            emu_respond_error(
                req, c, 400, "General_BadRequest", 1,
                "fault key 'fail_permanent' must be true or false");
            goto out;
        }
        nf.fail_permanent = cJSON_IsTrue(it);
    } else if (cJSON_GetObjectItemCaseSensitive(root, "fail_status") != NULL) {
        /* ADX: 4xx are permanent, 429 and 5xx are not */
        nf.fail_permanent = nf.fail_status >= 400 && nf.fail_status < 500 &&
                            nf.fail_status != 429 && nf.fail_status != 408;
    }
    it = cJSON_GetObjectItemCaseSensitive(root, "fail_code");
    if (cJSON_IsString(it) && it->valuestring[0] != '\0' &&
        strlen(it->valuestring) < sizeof(nf.fail_code)) {
        snprintf(nf.fail_code, sizeof(nf.fail_code), "%s", it->valuestring);
        code_given = 1;
    } else if (it != NULL) {
        emu_respond_error(req, c, 400, "General_BadRequest", 1,
                          "fault key 'fail_code' must be a short string");
        goto out;
    }
    if (!code_given &&
        cJSON_GetObjectItemCaseSensitive(root, "fail_status") != NULL) {
        snprintf(nf.fail_code, sizeof(nf.fail_code), "%s",
                 default_fail_code(nf.fail_status));
    }
    it = cJSON_GetObjectItemCaseSensitive(root, "fail_message");
    if (cJSON_IsString(it)) {
        snprintf(nf.fail_message, sizeof(nf.fail_message), "%s",
                 it->valuestring);
    }
    if (nf.throttle_rps != e->f.throttle_rps) {
        nf.bucket = nf.throttle_rps;
        nf.bucket_at_ms = emu_now_ms();
    }
    e->f = nf;
    render_faults(e, &b);
    emu_respond(req, c, 200, &b);
out:
    cJSON_Delete(root);
}

static void handle_stats(struct emu *e, struct http_request *req, struct ctx *c)
{
    struct sbuf b = {0};

    sbuf_printf(&b,
                "{\"requests\":%" PRIu64 ",\"ingest_requests\":%" PRIu64
                ",\"ingest_ok\":%" PRIu64 ",\"ingest_failed\":%" PRIu64
                ",\"queries\":%" PRIu64 ",\"mgmt\":%" PRIu64
                ",\"auth_failures\":%" PRIu64 ",\"rows_accepted\":%" PRIu64
                ",\"count_only\":%s,\"connections\":%zu,"
                "\"faults_fired\":{\"fail\":%" PRIu64 ",\"latency\":%" PRIu64
                ",\"reset\":%" PRIu64 ",\"throttle\":%" PRIu64
                ",\"late\":%" PRIu64 ",\"token\":%" PRIu64
                "},\"late_applied\":%" PRIu64 ",\"late_client_gone\":%" PRIu64
                ",\"late_expired\":%" PRIu64 ",\"tables\":{",
                e->st.requests, e->st.ingest_requests, e->st.ingest_ok,
                e->st.ingest_failed, e->st.queries, e->st.mgmt,
                e->st.auth_failures, kusto_rows_accepted(e->k),
                e->count_only ? "true" : "false",
                http_server_connections(e->srv), e->st.fired_fail,
                e->st.fired_latency, e->st.fired_reset, e->st.fired_throttle,
                e->st.fired_late, e->st.fired_token, e->st.late_applied,
                e->st.late_client_gone, e->st.late_expired);
    for (size_t i = 0; i < e->ntables; i++) {
        if (i > 0) {
            sbuf_add(&b, ",", 1);
        }
        rb_json(&b, e->tables[i].name);
        sbuf_printf(&b, ":%" PRIu64, e->tables[i].rows);
    }
    sbuf_adds(&b, "},\"faults\":");
    render_faults(e, &b);
    sbuf_adds(&b, "}");
    emu_respond(req, c, 200, &b);
}

void emu_handle_control(struct emu *e, struct http_request *req, struct ctx *c)
{
    const char *path = http_req_path(req);
    const char *m = http_req_method(req);

    if (!http_req_peer_is_loopback(req)) {
        emu_respond_error(req, c, 403, "Forbidden", 1,
                          "the control endpoint answers loopback clients only");
        return;
    }
    if (dm_handle_control(e->dm, req, c->hdrs, c->nhdrs)) {
        return;
    }
    if (strcmp(path, "/_emulator/faults") == 0 && strcmp(m, "POST") == 0) {
        handle_faults_post(e, req, c);
    } else if (strcmp(path, "/_emulator/faults") == 0 &&
               strcmp(m, "GET") == 0) {
        struct sbuf b = {0};
        render_faults(e, &b);
        emu_respond(req, c, 200, &b);
    } else if (strcmp(path, "/_emulator/stats") == 0 && strcmp(m, "GET") == 0) {
        handle_stats(e, req, c);
    } else if (strcmp(path, "/_emulator/reset") == 0 &&
               strcmp(m, "POST") == 0) {
        emu_faults_clear(e);
        memset(&e->st, 0, sizeof(e->st));
        e->ntables = 0;
        http_respond_json(req, 200, c->hdrs, c->nhdrs, "{\"reset\":true}");
    } else {
        emu_respond_error(req, c, 404, "General_NotFound", 1,
                          "no control endpoint %s %s (faults, stats, reset)", m,
                          path);
    }
}
