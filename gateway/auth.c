/*
 * auth.c - token providers for ADX (see auth.h).
 *
 * One small state machine per provider: IDLE -> (METADATA) -> FETCHING ->
 * VALID, with WAITING between failed attempts. A single uv_timer_t drives
 * both the retry backoff and the refresh before expiry. While a refresh
 * runs, the old token stays in use until it actually expires, so a slow or
 * failing token endpoint does not stop a healthy route early.
 *
 * Requests (all through the loop's struct adx):
 *  - metadata: GET <cluster>/v1/rest/auth/metadata ->
 *    AzureAD.KustoServiceResourceId (".kusto." -> ".kustomfa." when
 *    LoginMfaRequired); a 404 or an unusable answer means "use the cluster
 *    URL" (what the SDKs do for a 404).
 *  - client secret: POST <authority>/<tenant>/oauth2/v2.0/token, form body
 *    grant_type=client_credentials&client_id&client_secret&scope.
 *  - workload identity: the same endpoint with client_assertion (the
 *    federated token file, re-read on each fetch: it rotates).
 *  - managed identity: GET <imds>?api-version=2018-02-01&resource=...
 *    [&client_id=...] with "Metadata: true".
 * expires_in is a number (v2) or a string (v1, IMDS): both are read.
 *
 * Owns: the cached token (a copy, wiped when replaced), the scope, the timer.
 * Loop thread only.
 */
#include "gateway/auth.h"
#include "base/clock.h"
#include "base/err.h"
#include "gateway/log.h"

#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#define AUTH_TOKEN_MAX      (32 * 1024) /* cap on a token we keep */
#define AUTH_ASSERTION_MAX  (64 * 1024) /* cap on the federated token file */
#define AUTH_MIN_LIFETIME_S 2
/* a lifetime beyond a day is taken as a day: keeps the ms arithmetic far
 * from overflow whatever the endpoint says */
#define AUTH_MAX_LIFETIME_S (24 * 3600)
#define AUTH_EXPIRY_SKEW_MS                                                    \
    2000 /* a token this close to expiry is unusable                           \
          */
#define AUTH_DEFAULT_IMDS                                                      \
    "http://169.254.169.254/metadata/identity/oauth2/token"

enum auth_state {
    AUTH_IDLE = 0,
    AUTH_METADATA, /* asking the cluster for its resource id */
    AUTH_FETCHING, /* token request in flight */
    AUTH_WAITING,  /* backoff before the next attempt */
    AUTH_VALID,    /* token cached; timer armed for the refresh */
};

static const char *const state_names[] = {"idle", "metadata", "fetching",
                                          "waiting", "valid"};

struct auth {
    uv_loop_t *loop;
    struct adx *http;
    const struct config_auth *cfg;
    char *cluster;
    char *resource; /* e.g. https://kusto.kusto.windows.net (no /.default) */
    enum auth_state state;
    uv_timer_t timer;
    int timer_open;
    int req_inflight;
    int closing;
    char *token;
    uint64_t expires_mono; /* uv_now() ms */
    uint64_t skew_ms;      /* unusable this long before expiry */
    int64_t expires_wall;  /* ms since the epoch */
    int64_t retry_initial_ms;
    int64_t retry_max_ms;
    int64_t backoff_ms;
    long timeout_ms;
    int64_t fetches;
    int64_t failures;
    uint64_t rng;
    char last_error[256];
    auth_cb listener;
    void *listener_arg;
    /* request buffers kept alive while in flight */
    char *req_body;
};

static void auth_fetch(struct auth *a);

static void set_state(struct auth *a, enum auth_state s)
{
    if (a->state != s) {
        log_debug("auth", "%s -> %s", state_names[a->state], state_names[s]);
    }
    a->state = s;
}

static uint64_t next_rand(struct auth *a)
{
    /* xorshift64*: jitter only, not security */
    a->rng ^= a->rng >> 12;
    a->rng ^= a->rng << 25;
    a->rng ^= a->rng >> 27;
    return a->rng * 2685821657736338717ULL;
}

static void wipe_token(struct auth *a)
{
    if (a->token != NULL) {
        explicit_bzero(a->token, strlen(a->token));
        free(a->token);
        a->token = NULL;
    }
    a->expires_mono = 0;
    a->expires_wall = 0;
}

static void maybe_free(struct auth *a)
{
    if (!a->closing || a->timer_open || a->req_inflight) {
        return;
    }
    wipe_token(a);
    free(a->req_body);
    free(a->cluster);
    free(a->resource);
    free(a);
}

static void on_timer_closed(uv_handle_t *h)
{
    struct auth *a = h->data;

    a->timer_open = 0;
    maybe_free(a);
}

static void on_timer(uv_timer_t *t)
{
    struct auth *a = t->data;

    if (a->req_inflight) {
        return; /* an invalidation already started a fetch */
    }
    auth_fetch(a);
}

/* Schedules the next attempt after a failure: backoff with full jitter
 * between half and all of the current step. */
static void schedule_retry(struct auth *a)
{
    int64_t step = a->backoff_ms;
    int64_t delay =
        step / 2 + (int64_t)(next_rand(a) % (uint64_t)(step / 2 + 1));

    a->failures++;
    a->backoff_ms = step * 2 > a->retry_max_ms ? a->retry_max_ms : step * 2;
    set_state(a, AUTH_WAITING);
    uv_timer_start(&a->timer, on_timer, (uint64_t)delay, 0);
}

static int method_fetches(const struct config_auth *c)
{
    return c->method == CONFIG_AUTH_CLIENT_SECRET ||
           c->method == CONFIG_AUTH_MANAGED_IDENTITY ||
           c->method == CONFIG_AUTH_WORKLOAD_IDENTITY;
}

int auth_new(uv_loop_t *loop, struct adx *http, const struct auth_options *o,
             struct auth **out, char *err, size_t errlen)
{
    const struct config_auth *c = o->cfg;
    struct auth *a;
    int rc;

    *out = NULL;
    if (c->method == CONFIG_AUTH_STATIC_TOKEN &&
        (c->token == NULL || c->token[0] == '\0')) {
        set_err(err, errlen, "auth: static_token needs 'token'");
        return -EINVAL;
    }
    if ((c->method == CONFIG_AUTH_CLIENT_SECRET ||
         c->method == CONFIG_AUTH_WORKLOAD_IDENTITY) &&
        (c->client_id == NULL || c->tenant_id == NULL)) {
        set_err(err, errlen, "auth: %s needs 'client_id' and 'tenant_id'",
                config_auth_method_name(c->method));
        return -EINVAL;
    }
    if (c->method == CONFIG_AUTH_CLIENT_SECRET && c->client_secret == NULL) {
        set_err(err, errlen, "auth: client_secret needs 'client_secret'");
        return -EINVAL;
    }
    a = calloc(1, sizeof(*a));
    if (a == NULL) {
        set_err(err, errlen, "out of memory");
        return -ENOMEM;
    }
    a->loop = loop;
    a->http = http;
    a->cfg = c;
    a->cluster = strdup(o->cluster ? o->cluster : "");
    if (a->cluster == NULL) {
        free(a);
        set_err(err, errlen, "out of memory");
        return -ENOMEM;
    }
    {
        size_t n = strlen(a->cluster);

        while (n > 0 && a->cluster[n - 1] == '/') {
            a->cluster[--n] = '\0';
        }
    }
    a->retry_initial_ms = o->retry_initial_ms > 0 ? o->retry_initial_ms : 1000;
    a->retry_max_ms = o->retry_max_ms > 0 ? o->retry_max_ms : 60000;
    a->backoff_ms = a->retry_initial_ms;
    a->timeout_ms = o->timeout_ms > 0 ? o->timeout_ms : 20000;
    a->rng = (uint64_t)wall_ms() ^ ((uint64_t)getpid() << 32) ^ (uintptr_t)a;
    if (a->rng == 0) {
        a->rng = 88172645463325252ULL;
    }
    rc = uv_timer_init(loop, &a->timer);
    if (rc < 0) {
        free(a->cluster);
        free(a);
        set_err(err, errlen, "uv_timer_init: %s", uv_strerror(rc));
        return rc;
    }
    a->timer.data = a;
    a->timer_open = 1;
    if (c->client_secret != NULL) {
        log_add_secret(c->client_secret);
    }
    if (c->method == CONFIG_AUTH_STATIC_TOKEN) {
        log_add_secret(c->token);
    }
    *out = a;
    return 0;
}

void auth_set_listener(struct auth *a, auth_cb cb, void *arg)
{
    a->listener = cb;
    a->listener_arg = arg;
}

int auth_start(struct auth *a)
{
    if (!method_fetches(a->cfg) || a->state != AUTH_IDLE) {
        return 0;
    }
    auth_fetch(a);
    return 0;
}

int auth_ready(const struct auth *a)
{
    if (!method_fetches(a->cfg)) {
        return 1;
    }
    return a->token != NULL && uv_now(a->loop) + a->skew_ms < a->expires_mono;
}

const char *auth_token(const struct auth *a)
{
    switch (a->cfg->method) {
    case CONFIG_AUTH_NONE:
        return NULL;
    case CONFIG_AUTH_STATIC_TOKEN:
        return a->cfg->token;
    default:
        return auth_ready(a) ? a->token : NULL;
    }
}

int64_t auth_expires_ms(const struct auth *a)
{
    return a->expires_wall;
}

const char *auth_last_error(const struct auth *a)
{
    return a->last_error;
}

int64_t auth_fetches(const struct auth *a)
{
    return a->fetches;
}

int64_t auth_failures(const struct auth *a)
{
    return a->failures;
}

int auth_invalidate(struct auth *a, const char *used)
{
    if (a->cfg->method == CONFIG_AUTH_STATIC_TOKEN ||
        a->cfg->method == CONFIG_AUTH_NONE) {
        return -EPERM;
    }
    if (used != NULL && a->token != NULL && strcmp(used, a->token) != 0) {
        return 0; /* a newer token is already in place */
    }
    wipe_token(a);
    if (!a->req_inflight && !a->closing) {
        uv_timer_stop(&a->timer);
        a->backoff_ms = a->retry_initial_ms;
        auth_fetch(a);
    }
    return 0;
}

/* ------------------------------------------------------------ responses */

static void fail_attempt(struct auth *a, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void fail_attempt(struct auth *a, const char *fmt, ...)
{
    va_list ap;
    char msg[sizeof(a->last_error)];

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (strcmp(msg, a->last_error) != 0) {
        /* log each distinct error once, not every retry */
        log_warn("auth", "token request failed: %s", msg);
    }
    memcpy(a->last_error, msg, sizeof(msg));
    schedule_retry(a);
}

/* expires_in / expires_on as number or string; -1 when missing, bad, or
 * outside 0..10^12 (seconds: a lifetime or a Unix time; beyond that the
 * conversion to int64_t would be undefined for a double). */
static int64_t json_seconds(const cJSON *o, const char *name)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, name);

    if (cJSON_IsNumber(it)) {
        return it->valuedouble >= 0 && it->valuedouble <= 1e12
                   ? (int64_t)it->valuedouble
                   : -1;
    }
    if (cJSON_IsString(it)) {
        char *end = NULL;
        long long v;

        errno = 0;
        v = strtoll(it->valuestring, &end, 10);
        if (end != it->valuestring && *end == '\0' && errno == 0 && v >= 0 &&
            v <= 1000000000000LL) {
            return v;
        }
    }
    return -1;
}

int auth_parse_token_reply(const char *body, size_t len, int64_t now_s,
                           char **token, int64_t *life_s)
{
    cJSON *root;
    cJSON *tok;
    int64_t life;
    char *copy;

    *token = NULL;
    *life_s = 0;
    root = cJSON_ParseWithLength(body, len);
    tok = cJSON_GetObjectItemCaseSensitive(root, "access_token");
    if (!cJSON_IsString(tok) || tok->valuestring[0] == '\0' ||
        strlen(tok->valuestring) > AUTH_TOKEN_MAX ||
        strpbrk(tok->valuestring, "\r\n ") != NULL) {
        cJSON_Delete(root);
        return -EBADMSG;
    }
    life = json_seconds(root, "expires_in");
    if (life < 0) {
        int64_t on = json_seconds(root, "expires_on");

        if (on <= 0) {
            life = 3600;
        } else if (now_s < 0 || on <= now_s) {
            life = now_s < 0 ? AUTH_MAX_LIFETIME_S : 0; /* then clamped */
        } else {
            life = on - now_s;
        }
    }
    if (life < AUTH_MIN_LIFETIME_S) {
        life = AUTH_MIN_LIFETIME_S;
    }
    if (life > AUTH_MAX_LIFETIME_S) {
        life = AUTH_MAX_LIFETIME_S;
    }
    copy = strdup(tok->valuestring);
    explicit_bzero(tok->valuestring, strlen(tok->valuestring));
    cJSON_Delete(root);
    if (copy == NULL) {
        return -ENOMEM;
    }
    *token = copy;
    *life_s = life;
    return 0;
}

static void on_token(void *arg, const struct adx_response *res)
{
    struct auth *a = arg;
    cJSON *root = NULL;
    const cJSON *tok;
    int64_t life;
    int64_t margin;
    uint64_t refresh_in;
    char *copy = NULL;

    a->req_inflight = 0;
    free(a->req_body);
    a->req_body = NULL;
    if (a->closing) {
        maybe_free(a);
        return;
    }
    if (res->status != 200) {
        char code[96] = "";

        if (res->status != 0) {
            /* AAD puts "error":"invalid_client" etc.: safe to show */
            root = cJSON_ParseWithLength(res->body, res->body_len);
            tok = cJSON_GetObjectItemCaseSensitive(root, "error");
            if (cJSON_IsString(tok)) {
                snprintf(code, sizeof(code), " (%.80s)", tok->valuestring);
            }
            cJSON_Delete(root);
            fail_attempt(a, "http %ld%s", res->status, code);
        } else {
            fail_attempt(a, "%s", res->errmsg);
        }
        return;
    }
    if (auth_parse_token_reply(res->body, res->body_len, wall_ms() / 1000,
                               &copy, &life) < 0) {
        fail_attempt(a, "token response without a usable access_token");
        return;
    }
    log_add_secret(copy);
    wipe_token(a);
    a->token = copy;
    a->expires_mono = uv_now(a->loop) + (uint64_t)life * 1000;
    a->skew_ms = (uint64_t)life * 100 < AUTH_EXPIRY_SKEW_MS
                     ? (uint64_t)life * 100
                     : AUTH_EXPIRY_SKEW_MS;
    a->expires_wall = wall_ms() + life * 1000;
    a->fetches++;
    a->backoff_ms = a->retry_initial_ms;
    a->last_error[0] = '\0';
    /* refresh a fifth of the lifetime early, at most 5 min early */
    margin = life * 1000 / 5;
    if (margin > 300000) {
        margin = 300000;
    }
    refresh_in = (uint64_t)(life * 1000 - margin);
    set_state(a, AUTH_VALID);
    uv_timer_start(&a->timer, on_timer, refresh_in, 0);
    log_debug("auth", "token valid for %llds, refresh in %llums",
              (long long)life, (unsigned long long)refresh_in);
    if (a->listener != NULL) {
        a->listener(a->listener_arg);
    }
}

static void on_metadata(void *arg, const struct adx_response *res)
{
    struct auth *a = arg;
    cJSON *root;
    const cJSON *aad, *rid, *mfa;
    char *resource = NULL;

    a->req_inflight = 0;
    if (a->closing) {
        maybe_free(a);
        return;
    }
    if (res->status == 200) {
        root = cJSON_ParseWithLength(res->body, res->body_len);
        aad = cJSON_GetObjectItemCaseSensitive(root, "AzureAD");
        rid = cJSON_GetObjectItemCaseSensitive(aad, "KustoServiceResourceId");
        mfa = cJSON_GetObjectItemCaseSensitive(aad, "LoginMfaRequired");
        if (cJSON_IsString(rid) && rid->valuestring[0] != '\0' &&
            strlen(rid->valuestring) < 1024) {
            const char *s = rid->valuestring;
            const char *k = strstr(s, ".kusto.");

            if (cJSON_IsTrue(mfa) && k != NULL) {
                size_t n = strlen(s) + 4;

                resource = malloc(n);
                if (resource != NULL) {
                    snprintf(resource, n, "%.*s.kustomfa.%s", (int)(k - s), s,
                             k + 7);
                }
            } else {
                resource = strdup(s);
            }
        }
        cJSON_Delete(root);
    } else if (res->status != 404) {
        fail_attempt(a, "auth metadata: %s",
                     res->status ? "unexpected status" : res->errmsg);
        return;
    }
    if (resource == NULL) {
        resource = strdup(a->cluster); /* 404 or no resource id */
        if (resource == NULL) {
            fail_attempt(a, "out of memory");
            return;
        }
    }
    {
        size_t n = strlen(resource);

        while (n > 0 && resource[n - 1] == '/') {
            resource[--n] = '\0';
        }
    }
    free(a->resource);
    a->resource = resource;
    auth_fetch(a);
}

/* ------------------------------------------------------------- requests */

/* Appends "&name=value" (value form-encoded) to a growing string. */
static int form_add(char **buf, size_t *len, const char *name,
                    const char *value)
{
    char *e = curl_easy_escape(NULL, value, 0);
    size_t need;
    char *p;

    if (e == NULL) {
        return -ENOMEM;
    }
    need = *len + strlen(name) + strlen(e) + 3;
    p = realloc(*buf, need);
    if (p == NULL) {
        curl_free(e);
        return -ENOMEM;
    }
    *buf = p;
    *len += (size_t)snprintf(p + *len, need - *len, "%s%s=%s", *len ? "&" : "",
                             name, e);
    explicit_bzero(e, strlen(e));
    curl_free(e);
    return 0;
}

/* Reads the federated token file (capped) into a new string. */
static int read_assertion(const char *path, char **out, char *err,
                          size_t errlen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    char *buf;
    ssize_t n;
    size_t len = 0;

    if (fd < 0) {
        set_err(err, errlen, "cannot open token file '%s': %s", path,
                strerror(errno));
        return -errno;
    }
    buf = malloc(AUTH_ASSERTION_MAX + 1);
    if (buf == NULL) {
        close(fd);
        set_err(err, errlen, "out of memory");
        return -ENOMEM;
    }
    while (len < AUTH_ASSERTION_MAX &&
           (n = read(fd, buf + len, AUTH_ASSERTION_MAX - len)) > 0) {
        len += (size_t)n;
    }
    close(fd);
    while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r' ||
                       buf[len - 1] == ' ')) {
        len--;
    }
    buf[len] = '\0';
    if (len == 0 || len >= AUTH_ASSERTION_MAX) {
        free(buf);
        set_err(err, errlen, "token file '%s' is empty or over %d bytes", path,
                AUTH_ASSERTION_MAX);
        return -EINVAL;
    }
    log_add_secret(buf);
    *out = buf;
    return 0;
}

static void start_request(struct auth *a, const struct adx_request_spec *spec,
                          adx_cb cb)
{
    char err[256];

    if (adx_request(a->http, spec, cb, a, err, sizeof(err)) < 0) {
        free(a->req_body);
        a->req_body = NULL;
        fail_attempt(a, "%s", err);
        return;
    }
    a->req_inflight = 1;
}

static void fetch_metadata(struct auth *a)
{
    char url[2048];
    static const char *const hdrs[] = {"Accept: application/json", NULL};
    struct adx_request_spec spec;

    snprintf(url, sizeof(url), "%s/v1/rest/auth/metadata", a->cluster);
    memset(&spec, 0, sizeof(spec));
    spec.method = "GET";
    spec.url = url;
    spec.headers = hdrs;
    spec.timeout_ms = a->timeout_ms;
    set_state(a, AUTH_METADATA);
    start_request(a, &spec, on_metadata);
}

static void fetch_imds(struct auth *a)
{
    const struct config_auth *c = a->cfg;
    char *q = NULL;
    size_t qlen = 0;
    char *url = NULL;
    size_t n;
    static const char *const hdrs[] = {"Metadata: true",
                                       "Accept: application/json", NULL};
    struct adx_request_spec spec;
    const char *base = c->imds_url ? c->imds_url : AUTH_DEFAULT_IMDS;

    if (form_add(&q, &qlen, "api-version", "2018-02-01") < 0 ||
        form_add(&q, &qlen, "resource", a->resource) < 0 ||
        (c->client_id != NULL &&
         form_add(&q, &qlen, "client_id", c->client_id) < 0)) {
        free(q);
        fail_attempt(a, "out of memory");
        return;
    }
    n = strlen(base) + qlen + 2;
    url = malloc(n);
    if (url == NULL) {
        free(q);
        fail_attempt(a, "out of memory");
        return;
    }
    snprintf(url, n, "%s%s%s", base, strchr(base, '?') ? "&" : "?", q);
    free(q);
    memset(&spec, 0, sizeof(spec));
    spec.method = "GET";
    spec.url = url;
    spec.headers = hdrs;
    spec.timeout_ms = a->timeout_ms;
    spec.allow_link_local = 1;
    set_state(a, AUTH_FETCHING);
    start_request(a, &spec, on_token);
    free(url); /* curl copied it */
}

static void fetch_aad(struct auth *a)
{
    const struct config_auth *c = a->cfg;
    char url[2048];
    char scope[1200];
    char err[256];
    char *assertion = NULL;
    size_t len = 0;
    static const char *const hdrs[] = {
        "Content-Type: application/x-www-form-urlencoded",
        "Accept: application/json", NULL};
    struct adx_request_spec spec;
    const char *host = c->authority_host ? c->authority_host
                                         : "https://login.microsoftonline.com";
    size_t hl = strlen(host);
    int rc = 0;

    while (hl > 0 && host[hl - 1] == '/') {
        hl--;
    }
    snprintf(url, sizeof(url), "%.*s/%s/oauth2/v2.0/token", (int)hl, host,
             c->tenant_id);
    if (c->scope != NULL) {
        snprintf(scope, sizeof(scope), "%s", c->scope);
    } else {
        snprintf(scope, sizeof(scope), "%s/.default", a->resource);
    }
    if (c->method == CONFIG_AUTH_WORKLOAD_IDENTITY) {
        rc = read_assertion(c->token_file, &assertion, err, sizeof(err));
        if (rc < 0) {
            fail_attempt(a, "%s", err);
            return;
        }
    }
    free(a->req_body);
    a->req_body = NULL;
    rc = form_add(&a->req_body, &len, "grant_type", "client_credentials");
    if (rc == 0) {
        rc = form_add(&a->req_body, &len, "client_id", c->client_id);
    }
    if (rc == 0 && c->method == CONFIG_AUTH_CLIENT_SECRET) {
        rc = form_add(&a->req_body, &len, "client_secret", c->client_secret);
    }
    if (rc == 0 && assertion != NULL) {
        rc = form_add(&a->req_body, &len, "client_assertion_type",
                      "urn:ietf:params:oauth:client-assertion-type:jwt-bearer");
        if (rc == 0) {
            rc = form_add(&a->req_body, &len, "client_assertion", assertion);
        }
    }
    if (rc == 0) {
        rc = form_add(&a->req_body, &len, "scope", scope);
    }
    if (assertion != NULL) {
        explicit_bzero(assertion, strlen(assertion));
        free(assertion);
    }
    if (rc < 0) {
        fail_attempt(a, "out of memory");
        return;
    }
    memset(&spec, 0, sizeof(spec));
    spec.method = "POST";
    spec.url = url;
    spec.headers = hdrs;
    spec.body = a->req_body;
    spec.body_len = len;
    spec.timeout_ms = a->timeout_ms;
    set_state(a, AUTH_FETCHING);
    start_request(a, &spec, on_token);
}

static void auth_fetch(struct auth *a)
{
    const struct config_auth *c = a->cfg;

    if (a->closing || a->req_inflight) {
        return;
    }
    /* the resource is needed unless a scope is configured (IMDS always
     * takes a resource: strip "/.default" from a configured scope) */
    if (a->resource == NULL && c->scope != NULL) {
        const char *sfx = "/.default";
        size_t n = strlen(c->scope);
        size_t sl = strlen(sfx);

        a->resource = strdup(c->scope);
        if (a->resource == NULL) {
            fail_attempt(a, "out of memory");
            return;
        }
        if (n > sl && strcmp(c->scope + n - sl, sfx) == 0) {
            a->resource[n - sl] = '\0';
        }
    }
    if (a->resource == NULL) {
        fetch_metadata(a);
        return;
    }
    if (c->method == CONFIG_AUTH_MANAGED_IDENTITY) {
        fetch_imds(a);
    } else {
        fetch_aad(a);
    }
}

void auth_free(struct auth *a)
{
    if (a == NULL) {
        return;
    }
    a->closing = 1;
    a->listener = NULL;
    uv_timer_stop(&a->timer);
    uv_close((uv_handle_t *)&a->timer, on_timer_closed);
    /* a request in flight calls back later (or from adx_free) and then
     * frees what is left */
}
