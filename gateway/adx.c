/*
 * adx.c - libcurl multi on the libuv loop, and the ADX calls built on it.
 *
 * The wiring is curl's docs/examples/multi-uv.c: curl tells us which sockets
 * to watch (CURLMOPT_SOCKETFUNCTION -> one uv_poll_t per socket, allocated
 * here and freed in its close callback) and when to wake it
 * (CURLMOPT_TIMERFUNCTION -> one uv_timer_t); both call
 * curl_multi_socket_action() and then drain curl_multi_info_read(), which is
 * where finished requests call back. One easy handle per request; the multi
 * handle's connection cache gives keep-alive across requests.
 *
 * "Did the request reach the server?" matters for exactly-once (INV-5): a
 * transport failure after the whole body was uploaded may have been applied
 * (ambiguous); one before cannot have been (transient). CURLINFO_SIZE_UPLOAD_T
 * tells which.
 *
 * Owns: the CURLM handle, the timer, the per-socket polls, every request in
 * flight (struct adx_req, on a list so adx_free() can cancel them). All of it
 * runs on the loop thread.
 */
#include "gateway/adx.h"
#include "base/err.h"
#include "base/utf8.h"
#include "kadx_version.h"

#include <assert.h>
#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <errno.h>
#include <isa-l/igzip_lib.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define ADX_DEFAULT_CONNECT_MS 10000L
#define ADX_DEFAULT_TIMEOUT_MS 60000L
#define ADX_DEFAULT_MAX_RESP   (1024 * 1024)
#define ADX_URL_MAX            4096
#define ADX_HEADER_MAX         1024
#define ADX_DEFAULT_IDLE_MS    50000L

struct adx_req {
    struct adx *owner;
    CURL *easy;
    struct curl_slist *headers;
    char *owned_body; /* request body we built (query), else NULL */
    const char *body; /* no_replay requests: read by on_read */
    size_t body_len;
    size_t read_off; /* bytes of body handed to curl */
    int no_replay;
    adx_cb cb;
    void *arg;
    char *resp; /* response body, NUL-terminated */
    size_t resp_len;
    size_t resp_cap;
    int truncated;
    int64_t retry_after_ms;
    char errbuf[CURL_ERROR_SIZE];
    struct adx_req *prev, *next;
};

struct adx_sock {
    uv_poll_t poll;
    curl_socket_t fd;
    struct adx *owner;
};

struct adx {
    uv_loop_t *loop;
    CURLM *multi;
    uv_timer_t timer;
    int closing;
    int open_handles; /* libuv handles not yet closed (timer + polls) */
    size_t inflight;
    struct adx_req *reqs; /* doubly linked list of requests in flight */
    char app[128];
    char version_hdr[160];
    long connect_timeout_ms;
    long maxage_s; /* CURLOPT_MAXAGE_CONN, from keepalive_idle_ms */
    long timeout_ms;
    size_t max_response;
    char *ca_file;
    char *proxy;    /* NULL = direct; the environment is never consulted */
    char *no_proxy; /* NULL = none */
};

static void check_multi_info(struct adx *a);

static void maybe_free(struct adx *a)
{
    if (a->closing && a->open_handles == 0) {
        free(a->ca_file);
        free(a->proxy);
        free(a->no_proxy);
        free(a);
    }
}

static void on_handle_closed(uv_handle_t *h)
{
    struct adx *a = h->data;

    a->open_handles--;
    maybe_free(a);
}

static void on_sock_closed(uv_handle_t *h)
{
    struct adx_sock *s = h->data;
    struct adx *a = s->owner;

    free(s);
    a->open_handles--;
    maybe_free(a);
}

static void on_poll(uv_poll_t *p, int status, int events)
{
    struct adx_sock *s = p->data;
    struct adx *a = s->owner;
    int flags = 0;
    int running = 0;

    if (status < 0) {
        flags = CURL_CSELECT_ERR;
    }
    if (events & UV_READABLE) {
        flags |= CURL_CSELECT_IN;
    }
    if (events & UV_WRITABLE) {
        flags |= CURL_CSELECT_OUT;
    }
    curl_multi_socket_action(a->multi, s->fd, flags, &running);
    check_multi_info(a);
}

static void on_timer(uv_timer_t *t)
{
    struct adx *a = t->data;
    int running = 0;

    curl_multi_socket_action(a->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    check_multi_info(a);
}

/* CURLMOPT_SOCKETFUNCTION: start, change or stop watching one socket. */
static int socket_cb(CURL *easy, curl_socket_t fd, int action, void *userp,
                     void *socketp)
{
    struct adx *a = userp;
    struct adx_sock *s = socketp;
    int events = 0;

    (void)easy;
    if (action == CURL_POLL_REMOVE) {
        if (s != NULL) {
            uv_poll_stop(&s->poll);
            uv_close((uv_handle_t *)&s->poll, on_sock_closed);
            curl_multi_assign(a->multi, fd, NULL);
        }
        return 0;
    }
    if (s == NULL) {
        s = calloc(1, sizeof(*s));
        if (s == NULL) {
            return -1;
        }
        s->fd = fd;
        s->owner = a;
        if (uv_poll_init_socket(a->loop, &s->poll, fd) < 0) {
            free(s);
            return -1;
        }
        s->poll.data = s;
        a->open_handles++;
        curl_multi_assign(a->multi, fd, s);
    }
    if (action != CURL_POLL_IN) {
        events |= UV_WRITABLE;
    }
    if (action != CURL_POLL_OUT) {
        events |= UV_READABLE;
    }
    uv_poll_start(&s->poll, events, on_poll);
    return 0;
}

/* CURLMOPT_TIMERFUNCTION */
static int timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
    struct adx *a = userp;

    (void)multi;
    if (timeout_ms < 0) {
        uv_timer_stop(&a->timer);
    } else {
        /* 0 means "now": a 0 ms uv timer runs on the next loop iteration,
         * never inside this call (curl must not be re-entered here). */
        uv_timer_start(&a->timer, on_timer, (uint64_t)timeout_ms, 0);
    }
    return 0;
}

int adx_new(uv_loop_t *loop, const struct adx_options *opt, struct adx **out,
            char *err, size_t errlen)
{
    struct adx *a = NULL;
    static const struct adx_options defaults;
    int rc = -ENOMEM;
    long idle_ms;

    if (opt == NULL) {
        opt = &defaults;
    }
    *out = NULL;
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        set_err(err, errlen, "curl_global_init failed");
        return -EIO;
    }
    a = calloc(1, sizeof(*a));
    if (a == NULL) {
        set_err(err, errlen, "out of memory");
        goto fail;
    }
    a->loop = loop;
    snprintf(a->app, sizeof(a->app), "%s", opt->app ? opt->app : "kadx");
    snprintf(a->version_hdr, sizeof(a->version_hdr),
             "x-ms-client-version: Kusto.kadx:{%s}", KADX_VERSION);
    a->connect_timeout_ms = opt->connect_timeout_ms > 0
                                ? opt->connect_timeout_ms
                                : ADX_DEFAULT_CONNECT_MS;
    a->timeout_ms =
        opt->timeout_ms > 0 ? opt->timeout_ms : ADX_DEFAULT_TIMEOUT_MS;
    /* libcurl reuses a connection while its idle time in whole seconds is
     * <= MAXAGE_CONN, i.e. idle < MAXAGE_CONN + 1 s: so idle_ms / 1000 - 1
     * reuses only connections idle less than keepalive_idle_ms */
    idle_ms = opt->keepalive_idle_ms >= 1000 ? opt->keepalive_idle_ms
                                             : ADX_DEFAULT_IDLE_MS;
    a->maxage_s = idle_ms / 1000 - 1;
    a->max_response =
        opt->max_response > 0 ? opt->max_response : ADX_DEFAULT_MAX_RESP;
    if (opt->ca_file != NULL) {
        a->ca_file = strdup(opt->ca_file);
        if (a->ca_file == NULL) {
            set_err(err, errlen, "out of memory");
            goto fail;
        }
    }
    if (adx_set_proxy(a, opt->proxy, opt->no_proxy) < 0) {
        set_err(err, errlen, "out of memory");
        goto fail;
    }
    a->multi = curl_multi_init();
    if (a->multi == NULL) {
        set_err(err, errlen, "curl_multi_init failed");
        rc = -EIO;
        goto fail;
    }
    curl_multi_setopt(a->multi, CURLMOPT_SOCKETFUNCTION, socket_cb);
    curl_multi_setopt(a->multi, CURLMOPT_SOCKETDATA, a);
    curl_multi_setopt(a->multi, CURLMOPT_TIMERFUNCTION, timer_cb);
    curl_multi_setopt(a->multi, CURLMOPT_TIMERDATA, a);
    curl_multi_setopt(a->multi, CURLMOPT_MAXCONNECTS, 64L);
    rc = uv_timer_init(loop, &a->timer);
    if (rc < 0) {
        set_err(err, errlen, "uv_timer_init: %s", uv_strerror(rc));
        goto fail_multi;
    }
    a->timer.data = a;
    a->open_handles = 1;
    *out = a;
    return 0;

fail_multi:
    curl_multi_cleanup(a->multi);
fail:
    if (a != NULL) {
        free(a->ca_file);
        free(a->proxy);
        free(a->no_proxy);
    }
    free(a);
    curl_global_cleanup();
    return rc;
}

int adx_set_proxy(struct adx *a, const char *proxy, const char *no_proxy)
{
    char *p = NULL;
    char *np = NULL;

    if ((proxy != NULL && (p = strdup(proxy)) == NULL) ||
        (no_proxy != NULL && (np = strdup(no_proxy)) == NULL)) {
        free(p);
        return -ENOMEM;
    }
    free(a->proxy);
    free(a->no_proxy);
    a->proxy = p;
    a->no_proxy = np;
    return 0;
}

static void req_unlink(struct adx *a, struct adx_req *r)
{
    if (r->prev != NULL) {
        r->prev->next = r->next;
    } else {
        a->reqs = r->next;
    }
    if (r->next != NULL) {
        r->next->prev = r->prev;
    }
    r->prev = r->next = NULL;
    a->inflight--;
}

static void req_free(struct adx_req *r)
{
    if (r == NULL) {
        return;
    }
    if (r->easy != NULL) {
        curl_easy_cleanup(r->easy);
    }
    curl_slist_free_all(r->headers);
    free(r->owned_body);
    free(r->resp);
    free(r);
}

static int curle_to_errno(CURLcode c)
{
    switch (c) {
    case CURLE_OK:
        return 0;
    case CURLE_OPERATION_TIMEDOUT:
        return -ETIMEDOUT;
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
        return -EHOSTUNREACH;
    case CURLE_COULDNT_CONNECT:
        return -ECONNREFUSED;
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE:
        return -ECONNRESET;
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CACERT_BADFILE:
        return -EPROTO;
    case CURLE_OUT_OF_MEMORY:
        return -ENOMEM;
    case CURLE_ABORTED_BY_CALLBACK:
        return -ECANCELED;
    default:
        return -EIO;
    }
}

/* Finishes r: builds the response, unlinks, calls back, frees. */
static void req_finish(struct adx *a, struct adx_req *r, CURLcode code)
{
    struct adx_response res;
    curl_off_t up = 0;
    double total = 0;

    memset(&res, 0, sizeof(res));
    curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &res.status);
    curl_easy_getinfo(r->easy, CURLINFO_SIZE_UPLOAD_T, &up);
    curl_easy_getinfo(r->easy, CURLINFO_TOTAL_TIME, &total);
    res.err = curle_to_errno(code);
    if (code == CURLE_OK) {
        res.body_sent = 1;
    } else {
        /* INV-5: with the whole body uploaded the server may have applied
         * it; with less it cannot have (it needs every byte). */
        res.body_sent = r->body_len > 0 && (size_t)up >= r->body_len;
        if (r->no_replay && r->read_off >= r->body_len && r->body_len > 0) {
            res.body_sent = 1; /* all of it went to the socket's buffers */
        }
    }
    res.truncated = r->truncated;
    res.body = r->resp != NULL ? r->resp : "";
    res.body_len = r->resp_len;
    res.retry_after_ms = r->retry_after_ms;
    res.total_s = total;
    if (code != CURLE_OK) {
        res.errmsg = r->errbuf[0] ? r->errbuf : curl_easy_strerror(code);
    } else {
        res.errmsg = "";
    }
    curl_multi_remove_handle(a->multi, r->easy);
    req_unlink(a, r);
    r->cb(r->arg, &res);
    req_free(r);
}

static void check_multi_info(struct adx *a)
{
    CURLMsg *msg;
    int left = 0;

    /* a->multi goes NULL if a callback closed the client */
    while (a->multi != NULL &&
           (msg = curl_multi_info_read(a->multi, &left)) != NULL) {
        struct adx_req *r = NULL;

        if (msg->msg != CURLMSG_DONE) {
            continue;
        }
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&r);
        assert(r != NULL);
        req_finish(a, r, msg->data.result);
    }
}

void adx_free(struct adx *a)
{
    if (a == NULL) {
        return;
    }
    assert(!a->closing);
    a->closing = 1; /* callbacks below cannot start new requests */
    while (a->reqs != NULL) {
        /* the callback learns body_sent, so an ambiguous request stays
         * ambiguous for the journal */
        req_finish(a, a->reqs, CURLE_ABORTED_BY_CALLBACK);
    }
    /* curl_multi_cleanup calls socket_cb(CURL_POLL_REMOVE) for sockets it
     * still watches (connection cache), closing their polls. */
    curl_multi_cleanup(a->multi);
    a->multi = NULL;
    uv_timer_stop(&a->timer);
    uv_close((uv_handle_t *)&a->timer, on_handle_closed);
    curl_global_cleanup();
}

size_t adx_inflight(const struct adx *a)
{
    return a != NULL ? a->inflight : 0;
}

static size_t on_body(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    struct adx_req *r = userdata;
    size_t n = size * nmemb;
    size_t cap = r->owner->max_response;
    size_t take = n;

    if (r->resp_len + take > cap) {
        take = cap > r->resp_len ? cap - r->resp_len : 0;
        r->truncated = 1;
    }
    if (take > 0) {
        if (r->resp_len + take + 1 > r->resp_cap) {
            size_t ncap = r->resp_cap ? r->resp_cap : 1024;
            char *p;

            while (ncap < r->resp_len + take + 1) {
                ncap *= 2;
            }
            p = realloc(r->resp, ncap);
            if (p == NULL) {
                return 0; /* CURLE_WRITE_ERROR */
            }
            r->resp = p;
            r->resp_cap = ncap;
        }
        memcpy(r->resp + r->resp_len, ptr, take);
        r->resp_len += take;
        r->resp[r->resp_len] = '\0';
    }
    /* the excess is dropped, not an error: the status is what counts */
    return n;
}

/* Retry-After: delta-seconds or an HTTP-date. */
static int64_t parse_retry_after(const char *v, size_t len)
{
    char buf[128];
    char *end = NULL;
    long long secs;
    time_t when;

    while (len > 0 && (*v == ' ' || *v == '\t')) {
        v++;
        len--;
    }
    while (len > 0 &&
           (v[len - 1] == '\r' || v[len - 1] == '\n' || v[len - 1] == ' ')) {
        len--;
    }
    if (len == 0 || len >= sizeof(buf)) {
        return -1;
    }
    memcpy(buf, v, len);
    buf[len] = '\0';
    errno = 0;
    secs = strtoll(buf, &end, 10);
    if (errno == 0 && end != buf && *end == '\0' && secs >= 0) {
        if (secs > 86400) {
            secs = 86400;
        }
        return (int64_t)secs * 1000;
    }
    when = curl_getdate(buf, NULL);
    if (when > 0) {
        time_t now = time(NULL);

        return when > now ? (int64_t)(when - now) * 1000 : 0;
    }
    return -1;
}

static size_t on_header(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    struct adx_req *r = userdata;
    size_t n = size * nmemb;
    static const char name[] = "retry-after:";

    if (n > sizeof(name) - 1 && strncasecmp(ptr, name, sizeof(name) - 1) == 0) {
        r->retry_after_ms =
            parse_retry_after(ptr + sizeof(name) - 1, n - (sizeof(name) - 1));
    }
    return n;
}

/*
 * Body reader for no_replay requests. libcurl silently re-sends a request
 * whose reused keep-alive connection died before any answer ("connection
 * died, retrying a fresh connect"); for an ingest that may already have
 * been applied that is a duplicate (INV-5). With the body given through a
 * read callback, curl must rewind it first: on_seek refuses once any byte
 * was read, so the request fails instead and the caller resolves it.
 */
static size_t on_read(char *buf, size_t size, size_t nitems, void *userdata)
{
    struct adx_req *r = userdata;
    size_t n = size * nitems;
    size_t left = r->body_len - r->read_off;

    if (n > left) {
        n = left;
    }
    memcpy(buf, r->body + r->read_off, n);
    r->read_off += n;
    return n;
}

static int on_seek(void *userdata, curl_off_t offset, int origin)
{
    struct adx_req *r = userdata;

    if (origin == SEEK_SET && offset == 0 && r->read_off == 0) {
        return CURL_SEEKFUNC_OK;
    }
    return CURL_SEEKFUNC_CANTSEEK;
}

/* Host part of an http(s) URL, copied into host. 0 or -EINVAL. */
static int url_host(const char *url, char *host, size_t hostlen, int *https)
{
    CURLU *u = curl_url();
    char *h = NULL;
    char *scheme = NULL;
    int rc = -EINVAL;

    if (u == NULL) {
        return -ENOMEM;
    }
    if (curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK) {
        goto out;
    }
    if (curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_HOST, &h, 0) != CURLUE_OK) {
        goto out;
    }
    if (strcasecmp(scheme, "https") == 0) {
        *https = 1;
    } else if (strcasecmp(scheme, "http") == 0) {
        *https = 0;
    } else {
        goto out;
    }
    if (strlen(h) >= hostlen) {
        goto out;
    }
    memcpy(host, h, strlen(h) + 1);
    rc = 0;
out:
    curl_free(h);
    curl_free(scheme);
    curl_url_cleanup(u);
    return rc;
}

static int host_is_loopback(const char *h)
{
    return strcasecmp(h, "localhost") == 0 || strncmp(h, "127.", 4) == 0 ||
           strcmp(h, "[::1]") == 0 || strcmp(h, "::1") == 0;
}

int adx_url_is_loopback(const char *url)
{
    char host[256];
    int https = 0;

    if (url_host(url, host, sizeof(host), &https) < 0) {
        return 0;
    }
    return host_is_loopback(host);
}

/* The options every request gets: its url and callbacks, TLS, timeouts,
 * connection reuse and the proxy (the method and body are set apart). */
static void req_setopt(struct adx *a, struct adx_req *r,
                       const struct adx_request_spec *spec)
{
    curl_easy_setopt(r->easy, CURLOPT_URL, spec->url);
    curl_easy_setopt(r->easy, CURLOPT_PRIVATE, r);
    curl_easy_setopt(r->easy, CURLOPT_HTTPHEADER, r->headers);
    curl_easy_setopt(r->easy, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(r->easy, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(r->easy, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(r->easy, CURLOPT_HEADERDATA, r);
    curl_easy_setopt(r->easy, CURLOPT_ERRORBUFFER, r->errbuf);
    curl_easy_setopt(r->easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(r->easy, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(r->easy, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(r->easy, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(r->easy, CURLOPT_SSL_VERIFYHOST, 2L);
    curl_easy_setopt(r->easy, CURLOPT_TCP_KEEPALIVE, 1L);
    /* below the idle timeout of the servers in front of ADX (FORWARDER.md
     * "Connections"): a request written on a connection the server is
     * closing dies, and an ingest that dies after its body is ambiguous */
    curl_easy_setopt(r->easy, CURLOPT_MAXAGE_CONN, a->maxage_s);
    curl_easy_setopt(r->easy, CURLOPT_ACCEPT_ENCODING, "gzip,deflate");
    curl_easy_setopt(r->easy, CURLOPT_CONNECTTIMEOUT_MS, a->connect_timeout_ms);
    curl_easy_setopt(r->easy, CURLOPT_TIMEOUT_MS,
                     spec->timeout_ms > 0 ? spec->timeout_ms : a->timeout_ms);
    if (a->ca_file != NULL) {
        curl_easy_setopt(r->easy, CURLOPT_CAINFO, a->ca_file);
    }
    /* "" disables every proxy, including http_proxy, https_proxy,
     * all_proxy and no_proxy from the environment: the config is the only
     * source (CONFIG.md, "Proxy") */
    curl_easy_setopt(r->easy, CURLOPT_PROXY, a->proxy != NULL ? a->proxy : "");
    if (a->no_proxy != NULL) {
        curl_easy_setopt(r->easy, CURLOPT_NOPROXY, a->no_proxy);
    }
}

int adx_request(struct adx *a, const struct adx_request_spec *spec, adx_cb cb,
                void *arg, char *err, size_t errlen)
{
    struct adx_req *r = NULL;
    char host[256];
    int https = 0;
    CURLMcode mc;
    int rc;

    assert(a != NULL && spec != NULL && cb != NULL);
    if (a->closing) {
        set_err(err, errlen, "client is closing");
        return -ECANCELED;
    }
    if (spec->url == NULL || strlen(spec->url) >= ADX_URL_MAX ||
        url_host(spec->url, host, sizeof(host), &https) < 0) {
        set_err(err, errlen, "invalid url");
        return -EINVAL;
    }
    if (!https && !host_is_loopback(host) &&
        !(spec->allow_link_local && strncmp(host, "169.254.", 8) == 0)) {
        set_err(err, errlen,
                "plain http is allowed only for loopback hosts, not '%s'",
                host);
        return -EINVAL;
    }
    r = calloc(1, sizeof(*r));
    if (r == NULL) {
        goto nomem;
    }
    r->owner = a;
    r->cb = cb;
    r->arg = arg;
    r->retry_after_ms = -1;
    r->body_len = spec->body_len;
    r->easy = curl_easy_init();
    if (r->easy == NULL) {
        goto nomem;
    }
    for (const char *const *h = spec->headers; h != NULL && *h != NULL; h++) {
        struct curl_slist *n = curl_slist_append(r->headers, *h);

        if (n == NULL) {
            goto nomem;
        }
        r->headers = n;
    }
    {
        /* curl adds "Expect: 100-continue" to big POSTs: one round trip
         * more, and not every server answers it */
        struct curl_slist *n = curl_slist_append(r->headers, "Expect:");

        if (n == NULL) {
            goto nomem;
        }
        r->headers = n;
    }
    req_setopt(a, r, spec);
    if (spec->method != NULL && (strcmp(spec->method, "POST") == 0 ||
                                 strcmp(spec->method, "PUT") == 0)) {
        curl_easy_setopt(r->easy, CURLOPT_POST, 1L);
        if (strcmp(spec->method, "PUT") == 0) {
            /* Azure Storage's Put Blob and table entity writes */
            curl_easy_setopt(r->easy, CURLOPT_CUSTOMREQUEST, "PUT");
        }
        curl_easy_setopt(r->easy, CURLOPT_POSTFIELDSIZE_LARGE,
                         (curl_off_t)spec->body_len);
        if (spec->no_replay) {
            r->no_replay = 1;
            r->body = spec->body != NULL ? spec->body : "";
            curl_easy_setopt(r->easy, CURLOPT_READFUNCTION, on_read);
            curl_easy_setopt(r->easy, CURLOPT_READDATA, r);
            curl_easy_setopt(r->easy, CURLOPT_SEEKFUNCTION, on_seek);
            curl_easy_setopt(r->easy, CURLOPT_SEEKDATA, r);
        } else {
            curl_easy_setopt(r->easy, CURLOPT_POSTFIELDS,
                             spec->body != NULL ? spec->body : "");
        }
    } else if (spec->method == NULL || strcmp(spec->method, "GET") == 0) {
        curl_easy_setopt(r->easy, CURLOPT_HTTPGET, 1L);
    } else {
        set_err(err, errlen, "unsupported method '%s'", spec->method);
        req_free(r);
        return -EINVAL;
    }
    r->next = a->reqs;
    if (a->reqs != NULL) {
        a->reqs->prev = r;
    }
    a->reqs = r;
    a->inflight++;
    mc = curl_multi_add_handle(a->multi, r->easy);
    if (mc != CURLM_OK) {
        req_unlink(a, r);
        set_err(err, errlen, "curl_multi_add_handle: %s",
                curl_multi_strerror(mc));
        rc = mc == CURLM_OUT_OF_MEMORY ? -ENOMEM : -EIO;
        req_free(r);
        return rc;
    }
    return 0;

nomem:
    req_free(r);
    set_err(err, errlen, "out of memory");
    return -ENOMEM;
}

/* Copies the request's owned body into place and starts it. */
static int request_owned(struct adx *a, struct adx_request_spec *spec,
                         char *owned, adx_cb cb, void *arg, char *err,
                         size_t errlen)
{
    int rc = adx_request(a, spec, cb, arg, err, errlen);

    if (rc < 0) {
        free(owned);
        return rc;
    }
    /* adx_request put the request at the head of the list */
    a->reqs->owned_body = owned;
    return 0;
}

/* Appends s URL-escaped to buf at *pos. -ENAMETOOLONG when it won't fit. */
static int url_append_escaped(char *buf, size_t cap, size_t *pos, const char *s)
{
    char *e = curl_easy_escape(NULL, s, 0);
    int n;

    if (e == NULL) {
        return -ENOMEM;
    }
    n = snprintf(buf + *pos, cap - *pos, "%s", e);
    curl_free(e);
    if (n < 0 || (size_t)n >= cap - *pos) {
        return -ENAMETOOLONG;
    }
    *pos += (size_t)n;
    return 0;
}

static int url_append(char *buf, size_t cap, size_t *pos, const char *s)
{
    int n = snprintf(buf + *pos, cap - *pos, "%s", s);

    if (n < 0 || (size_t)n >= cap - *pos) {
        return -ENAMETOOLONG;
    }
    *pos += (size_t)n;
    return 0;
}

/* cluster without trailing slashes into buf. */
static int url_base(char *buf, size_t cap, size_t *pos, const char *cluster)
{
    size_t n = strlen(cluster);

    while (n > 0 && cluster[n - 1] == '/') {
        n--;
    }
    if (n + 1 > cap) {
        return -ENAMETOOLONG;
    }
    memcpy(buf, cluster, n);
    buf[n] = '\0';
    *pos = n;
    return 0;
}

/* Header "Name: value" into dst; refuses CR/LF in value. */
static int make_header(char *dst, size_t cap, const char *name,
                       const char *value)
{
    int n;

    if (strpbrk(value, "\r\n") != NULL) {
        return -EINVAL;
    }
    n = snprintf(dst, cap, "%s: %s", name, value);
    if (n < 0 || (size_t)n >= cap) {
        return -ENAMETOOLONG;
    }
    return 0;
}

int adx_timespan(char *dst, size_t cap, int64_t ms)
{
    int64_t s = ms / 1000;
    int n;

    if (ms < 0 || cap == 0) {
        return -EINVAL;
    }
    if (s >= 86400) {
        n = snprintf(dst, cap, "%lld.", (long long)(s / 86400));
        if (n < 0 || (size_t)n >= cap) {
            return -ENAMETOOLONG;
        }
        dst += n;
        cap -= (size_t)n;
    }
    n = snprintf(dst, cap, "%02d:%02d:%02d", (int)(s % 86400 / 3600),
                 (int)(s % 3600 / 60), (int)(s % 60));
    if (n >= 0 && (size_t)n < cap && ms % 1000 != 0) {
        n += snprintf(dst + n, cap - (size_t)n, ".%03d", (int)(ms % 1000));
    }
    return n < 0 || (size_t)n >= cap ? -ENAMETOOLONG : 0;
}

int adx_ingest(struct adx *a, const struct adx_ingest *in, adx_cb cb, void *arg,
               char *err, size_t errlen)
{
    char url[ADX_URL_MAX];
    char rid[ADX_HEADER_MAX];
    char app[ADX_HEADER_MAX];
    char srvto[64];
    char *auth = NULL;
    const char *hdrs[12];
    struct adx_request_spec spec;
    size_t pos = 0;
    int nh = 0;
    int rc;

    assert(in->cluster && in->database && in->table && in->format);
    rc = url_base(url, sizeof(url), &pos, in->cluster);
    if (rc == 0) {
        rc = url_append(url, sizeof(url), &pos, "/v1/rest/ingest/");
    }
    if (rc == 0) {
        rc = url_append_escaped(url, sizeof(url), &pos, in->database);
    }
    if (rc == 0) {
        rc = url_append(url, sizeof(url), &pos, "/");
    }
    if (rc == 0) {
        rc = url_append_escaped(url, sizeof(url), &pos, in->table);
    }
    if (rc == 0) {
        rc = url_append(url, sizeof(url), &pos, "?streamFormat=");
    }
    if (rc == 0) {
        rc = url_append_escaped(url, sizeof(url), &pos, in->format);
    }
    if (rc == 0 && in->mapping != NULL && in->mapping[0] != '\0') {
        rc = url_append(url, sizeof(url), &pos, "&mappingName=");
        if (rc == 0) {
            rc = url_append_escaped(url, sizeof(url), &pos, in->mapping);
        }
    }
    if (rc < 0) {
        set_err(err, errlen, "ingest url too long");
        return rc;
    }
    {
        char v[ADX_HEADER_MAX];

        snprintf(v, sizeof(v), "KADX.ingest;%s;%d",
                 in->batch_id ? in->batch_id : "-", in->attempt);
        rc = make_header(rid, sizeof(rid), "x-ms-client-request-id", v);
    }
    if (rc == 0) {
        rc = make_header(app, sizeof(app), "x-ms-app", a->app);
    }
    if (rc == 0 && in->server_timeout_ms > 0) {
        /* the request property travels as a header on streaming ingest:
         * the SDKs copy ClientRequestProperties options into headers */
        char v[48];

        rc = adx_timespan(v, sizeof(v), in->server_timeout_ms);
        if (rc == 0) {
            rc = make_header(srvto, sizeof(srvto), "servertimeout", v);
        }
    }
    if (rc < 0) {
        set_err(err, errlen, "invalid header value");
        return rc;
    }
    hdrs[nh++] = "Accept: application/json";
    hdrs[nh++] = "x-ms-version: 2024-12-12";
    hdrs[nh++] = "Content-Type: application/octet-stream";
    if (in->server_timeout_ms > 0) {
        hdrs[nh++] = srvto;
    }
    if (in->gzipped) {
        hdrs[nh++] = "Content-Encoding: gzip";
    }
    hdrs[nh++] = rid;
    hdrs[nh++] = app;
    hdrs[nh++] = a->version_hdr;
    if (in->token != NULL) {
        size_t n = strlen(in->token) + sizeof("Authorization: Bearer ");

        if (strpbrk(in->token, "\r\n") != NULL) {
            set_err(err, errlen, "invalid token");
            return -EINVAL;
        }
        auth = malloc(n);
        if (auth == NULL) {
            set_err(err, errlen, "out of memory");
            return -ENOMEM;
        }
        snprintf(auth, n, "Authorization: Bearer %s", in->token);
        hdrs[nh++] = auth;
    }
    hdrs[nh] = NULL;
    memset(&spec, 0, sizeof(spec));
    spec.method = "POST";
    spec.url = url;
    spec.headers = hdrs;
    spec.body = in->body;
    spec.body_len = in->body_len;
    spec.timeout_ms = in->timeout_ms;
    spec.no_replay = 1; /* INV-5: never a silent second copy */
    /* curl copies the header list's strings, so auth can go at once */
    rc = adx_request(a, &spec, cb, arg, err, errlen);
    if (auth != NULL) {
        explicit_bzero(auth, strlen(auth));
        free(auth);
    }
    return rc;
}

static int post_csl(struct adx *a, const char *path, const char *cluster,
                    const char *database, const char *csl, const char *token,
                    const char *request_id, adx_cb cb, void *arg, char *err,
                    size_t errlen);

int adx_query(struct adx *a, const char *cluster, const char *database,
              const char *csl, const char *token, const char *request_id,
              adx_cb cb, void *arg, char *err, size_t errlen)
{
    return post_csl(a, "/v1/rest/query", cluster, database, csl, token,
                    request_id, cb, arg, err, errlen);
}

int adx_mgmt(struct adx *a, const char *cluster, const char *database,
             const char *csl, const char *token, const char *request_id,
             adx_cb cb, void *arg, char *err, size_t errlen)
{
    return post_csl(a, "/v1/rest/mgmt", cluster, database, csl, token,
                    request_id, cb, arg, err, errlen);
}

static int post_csl(struct adx *a, const char *path, const char *cluster,
                    const char *database, const char *csl, const char *token,
                    const char *request_id, adx_cb cb, void *arg, char *err,
                    size_t errlen)
{
    char url[ADX_URL_MAX];
    char rid[ADX_HEADER_MAX];
    char app[ADX_HEADER_MAX];
    char *auth = NULL;
    char *body = NULL;
    const char *hdrs[10];
    struct adx_request_spec spec;
    cJSON *o = NULL;
    size_t pos = 0;
    int nh = 0;
    int rc;

    rc = url_base(url, sizeof(url), &pos, cluster);
    if (rc == 0) {
        rc = url_append(url, sizeof(url), &pos, path);
    }
    if (rc < 0) {
        set_err(err, errlen, "query url too long");
        return rc;
    }
    {
        char v[ADX_HEADER_MAX];

        snprintf(v, sizeof(v), "KADX.query;%s", request_id ? request_id : "-");
        rc = make_header(rid, sizeof(rid), "x-ms-client-request-id", v);
    }
    if (rc == 0) {
        rc = make_header(app, sizeof(app), "x-ms-app", a->app);
    }
    if (rc < 0) {
        set_err(err, errlen, "invalid header value");
        return rc;
    }
    o = cJSON_CreateObject();
    if (o == NULL || cJSON_AddStringToObject(o, "db", database) == NULL ||
        cJSON_AddStringToObject(o, "csl", csl) == NULL) {
        goto nomem;
    }
    body = cJSON_PrintUnformatted(o);
    if (body == NULL) {
        goto nomem;
    }
    cJSON_Delete(o);
    o = NULL;
    hdrs[nh++] = "Accept: application/json";
    hdrs[nh++] = "Content-Type: application/json; charset=utf-8";
    hdrs[nh++] = "x-ms-version: 2024-12-12";
    hdrs[nh++] = rid;
    hdrs[nh++] = app;
    hdrs[nh++] = a->version_hdr;
    if (token != NULL) {
        size_t n = strlen(token) + sizeof("Authorization: Bearer ");

        if (strpbrk(token, "\r\n") != NULL) {
            free(body);
            set_err(err, errlen, "invalid token");
            return -EINVAL;
        }
        auth = malloc(n);
        if (auth == NULL) {
            goto nomem;
        }
        snprintf(auth, n, "Authorization: Bearer %s", token);
        hdrs[nh++] = auth;
    }
    hdrs[nh] = NULL;
    memset(&spec, 0, sizeof(spec));
    spec.method = "POST";
    spec.url = url;
    spec.headers = hdrs;
    spec.body = body;
    spec.body_len = strlen(body);
    rc = request_owned(a, &spec, body, cb, arg, err, errlen);
    if (auth != NULL) {
        explicit_bzero(auth, strlen(auth));
        free(auth);
    }
    return rc;

nomem:
    cJSON_Delete(o);
    free(body);
    free(auth);
    set_err(err, errlen, "out of memory");
    return -ENOMEM;
}

int adx_parse_count(const char *body, size_t len, int64_t *out)
{
    cJSON *root = cJSON_ParseWithLength(body, len);
    cJSON *tables, *t0, *rows, *r0, *c0;
    int rc = -EBADMSG;

    if (root == NULL) {
        return -EBADMSG;
    }
    tables = cJSON_GetObjectItemCaseSensitive(root, "Tables");
    t0 = cJSON_IsArray(tables) ? cJSON_GetArrayItem(tables, 0) : NULL;
    rows = t0 ? cJSON_GetObjectItemCaseSensitive(t0, "Rows") : NULL;
    r0 = cJSON_IsArray(rows) ? cJSON_GetArrayItem(rows, 0) : NULL;
    c0 = cJSON_IsArray(r0) ? cJSON_GetArrayItem(r0, 0) : NULL;
    /* below 2^63: a larger count is not a count, and converting it to
     * int64_t is undefined (found by tests/fuzz/fuzz_adx) */
    if (cJSON_IsNumber(c0) && c0->valuedouble >= 0 &&
        c0->valuedouble < 9223372036854775808.0) {
        *out = (int64_t)c0->valuedouble;
        rc = 0;
    } else if (cJSON_IsString(c0)) {
        char *end = NULL;
        long long v = strtoll(c0->valuestring, &end, 10);

        if (end != c0->valuestring && *end == '\0' && v >= 0) {
            *out = v;
            rc = 0;
        }
    }
    cJSON_Delete(root);
    return rc;
}

int adx_parse_cell(const char *body, size_t len, const char *column, char *out,
                   size_t outlen)
{
    cJSON *root = cJSON_ParseWithLength(body, len);
    cJSON *tables, *t0, *cols, *rows, *r0, *col, *cell;
    int idx = -1, i = 0;
    int rc = -EBADMSG;

    if (root == NULL) {
        return -EBADMSG;
    }
    tables = cJSON_GetObjectItemCaseSensitive(root, "Tables");
    t0 = cJSON_IsArray(tables) ? cJSON_GetArrayItem(tables, 0) : NULL;
    cols = t0 ? cJSON_GetObjectItemCaseSensitive(t0, "Columns") : NULL;
    rows = t0 ? cJSON_GetObjectItemCaseSensitive(t0, "Rows") : NULL;
    if (!cJSON_IsArray(cols)) {
        goto out;
    }
    cJSON_ArrayForEach(col, cols)
    {
        cJSON *name = cJSON_GetObjectItemCaseSensitive(col, "ColumnName");

        if (cJSON_IsString(name) && strcmp(name->valuestring, column) == 0) {
            idx = i;
            break;
        }
        i++;
    }
    if (idx < 0 || !cJSON_IsArray(rows)) {
        goto out;
    }
    r0 = cJSON_GetArrayItem(rows, 0);
    if (r0 == NULL) {
        rc = -ENOENT;
        goto out;
    }
    cell = cJSON_IsArray(r0) ? cJSON_GetArrayItem(r0, idx) : NULL;
    if (cJSON_IsString(cell)) {
        snprintf(out, outlen, "%s", cell->valuestring);
        rc = strlen(cell->valuestring) < outlen ? 0 : -EMSGSIZE;
    } else if (cJSON_IsNull(cell)) {
        snprintf(out, outlen, "null");
        rc = 0;
    }
out:
    cJSON_Delete(root);
    return rc;
}

const char *adx_outcome_name(enum adx_outcome o)
{
    static const char *const names[] = {
        "ok",        "transient", "throttled", "ambiguous",
        "permanent", "auth",      "config",
    };

    if ((unsigned)o < sizeof(names) / sizeof(names[0])) {
        return names[o];
    }
    return "?";
}

/* OneApi error fields, borrowed from root. */
struct oneapi {
    const char *code;
    const char *message;
    const char *detail; /* @message */
    int permanent;      /* -1 unknown, 0, 1 */
};

static cJSON *parse_oneapi(const struct adx_response *res, struct oneapi *e)
{
    cJSON *root, *error, *it;

    e->code = e->message = e->detail = NULL;
    e->permanent = -1;
    if (res->body_len == 0 || res->truncated) {
        return NULL;
    }
    root = cJSON_ParseWithLength(res->body, res->body_len);
    if (root == NULL) {
        return NULL;
    }
    error = cJSON_GetObjectItemCaseSensitive(root, "error");
    if (!cJSON_IsObject(error)) {
        return root;
    }
    it = cJSON_GetObjectItemCaseSensitive(error, "code");
    e->code = cJSON_IsString(it) ? it->valuestring : NULL;
    it = cJSON_GetObjectItemCaseSensitive(error, "message");
    e->message = cJSON_IsString(it) ? it->valuestring : NULL;
    it = cJSON_GetObjectItemCaseSensitive(error, "@message");
    e->detail = cJSON_IsString(it) ? it->valuestring : NULL;
    it = cJSON_GetObjectItemCaseSensitive(error, "@permanent");
    if (cJSON_IsBool(it)) {
        e->permanent = cJSON_IsTrue(it) ? 1 : 0;
    }
    return root;
}

static int contains_ci(const char *hay, const char *needle)
{
    return hay != NULL && strcasestr(hay, needle) != NULL;
}

/* Errors that a person must fix on the cluster: pause, never dead-letter. */
static int is_config_error(const struct oneapi *e)
{
    static const char *const markers[] = {
        "StreamingIngestionPolicyNotEnabled",
        "StreamingIngestionDisabled",
        "MappingReferenceWasNotFound",
        "MappingNotFound",
        "EntityNotFound",
        "TableNotFound",
        "TableNotExist",
        "DatabaseNotFound",
        "DatabaseNotExist",
        "Forbidden",
        "Unauthorized",
    };

    for (size_t i = 0; i < sizeof(markers) / sizeof(markers[0]); i++) {
        if (contains_ci(e->code, markers[i])) {
            return 1;
        }
    }
    return 0;
}

/*
 * Cuts s to one short line of valid UTF-8 into dst (it ends up in logs,
 * /status and dead-letter reasons, so at most 200 bytes, which any
 * reason buffer holds whole): control bytes become spaces, bytes
 * that are not UTF-8 '?', and a character is never cut in half.
 */
static void one_line(char *dst, size_t cap, const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;

    if (cap == 0) {
        return;
    }
    while (p != NULL && *p != '\0' && i < 200) {
        size_t n = utf8_len(p);

        if (n == 0 || n == 1) {
            if (i + 1 >= cap) {
                break;
            }
            dst[i++] = n == 0                      ? '?'
                       : (*p < 0x20 || *p == 0x7f) ? ' '
                                                   : (char)*p;
            p++;
            continue;
        }
        if (i + n >= cap) {
            break;
        }
        memcpy(dst + i, p, n);
        i += n;
        p += n;
    }
    dst[i] = '\0';
}

enum adx_outcome adx_classify(const struct adx_response *res, char *reason,
                              size_t reasonlen)
{
    struct oneapi e;
    cJSON *root = NULL;
    enum adx_outcome o;
    char detail[320];
    long st = res->status;

    if (st == 200 && res->err == 0) {
        set_err(reason, reasonlen, "200");
        return ADX_OK;
    }
    if (st == 0 || st == 200) {
        /* no answer, or a 200 cut short: only a whole 200 is a definite
         * yes (INV-5); with the body sent the batch may have been applied */
        if (res->body_sent) {
            set_err(reason, reasonlen,
                    "no complete answer after the body "
                    "was sent: %s",
                    res->errmsg ? res->errmsg : "");
            return ADX_AMBIGUOUS;
        }
        set_err(reason, reasonlen, "%s", res->errmsg ? res->errmsg : "");
        return ADX_TRANSIENT;
    }
    /* a non-200 status arrived: the server answered, even if the error
     * body broke off afterwards */
    root = parse_oneapi(res, &e);
    if (e.code != NULL || e.detail != NULL || e.message != NULL) {
        char raw[300];

        snprintf(raw, sizeof(raw), "%s: %s", e.code ? e.code : "error",
                 e.detail ? e.detail : (e.message ? e.message : ""));
        one_line(detail, sizeof(detail), raw);
    } else if (res->body_len > 0 && res->body[0] != '{') {
        /* a plain-text error line (no JSON Accept): its start only */
        char raw[160];

        snprintf(raw, sizeof(raw), "%.120s", res->body);
        one_line(detail, sizeof(detail), raw);
    } else {
        detail[0] = '\0';
    }
    if (st == 429) {
        o = ADX_THROTTLED;
    } else if (st == 401) {
        o = ADX_AUTH;
    } else if (st == 403 || st == 404) {
        o = ADX_CONFIG;
    } else if (st >= 500 || st == 408) {
        o = ADX_TRANSIENT;
    } else if (is_config_error(&e)) {
        o = ADX_CONFIG;
    } else if (st == 413) {
        o = ADX_PERMANENT;
    } else if (e.permanent == 0) {
        o = ADX_TRANSIENT; /* e.g. General_ThrottledIngestion (400) */
    } else {
        /* 400 and the other 4xx: the request itself is bad */
        o = ADX_PERMANENT;
    }
    set_err(reason, reasonlen, "http %ld%s%s", st, detail[0] ? " " : "",
            detail);
    cJSON_Delete(root);
    return o;
}

/*
 * ISA-L's igzip, not zlib or libdeflate: level 1 on 1 MiB of GamePlay JSON
 * lines ran at 1155 MB/s here against libdeflate's 565 (zlib's 247) for 2%
 * more bytes (tests/bench/BENCHMARKS.md, "CPU per event"). ISA-L has
 * levels 0-3: kadx's 1 is its 1, 2-4 its 2, 5-9 its 3. The output buffer
 * starts at a quarter of the input (JSON lines shrink 6-8x) and doubles
 * when a body compresses worse.
 */
int adx_gzip(const void *in, size_t len, int level, void **out, size_t *outlen)
{
    static const uint32_t lbsize[4] = {
        0, ISAL_DEF_LVL1_DEFAULT, ISAL_DEF_LVL2_DEFAULT, ISAL_DEF_LVL3_DEFAULT};
    int il = level <= 1 ? 1 : level <= 4 ? 2 : 3;
    size_t cap = len / 4 + 4096;
    struct isal_zstream *s = malloc(sizeof(*s));
    uint8_t *lb = malloc(lbsize[il]), *buf = malloc(cap);
    int rc = -ENOMEM;

    *out = NULL;
    *outlen = 0;
    if (s == NULL || lb == NULL || buf == NULL) {
        goto done;
    }
    if (len > UINT32_MAX / 2) {
        rc = -EMSGSIZE; /* ISA-L counts in 32 bits */
        goto done;
    }
    isal_deflate_init(s);
    s->level = (uint32_t)il;
    s->level_buf = lb;
    s->level_buf_size = lbsize[il];
    s->gzip_flag = IGZIP_GZIP;
    s->end_of_stream = 1;
    s->flush = NO_FLUSH;
    s->next_in = (uint8_t *)(uintptr_t)in;
    s->avail_in = (uint32_t)len;
    for (;;) {
        uint8_t *nb;

        s->next_out = buf + s->total_out;
        s->avail_out = (uint32_t)(cap - s->total_out);
        if (isal_deflate(s) != COMP_OK) {
            rc = -EIO;
            goto done;
        }
        if (s->internal_state.state == ZSTATE_END) {
            break;
        }
        /* the output is full: more room, and go on where it stopped */
        nb = realloc(buf, cap * 2);
        if (nb == NULL) {
            goto done;
        }
        buf = nb;
        cap *= 2;
    }
    *out = buf;
    *outlen = s->total_out;
    buf = NULL;
    rc = 0;
done:
    free(buf);
    free(lb);
    free(s);
    return rc;
}
