/*
 * adx.h - the HTTP client kadx uses to talk to Azure Data Explorer and to
 * token endpoints: libcurl's multi interface driven by the libuv loop
 * (curl_multi_socket_action from uv_poll_t and uv_timer_t, wired like curl's
 * docs/examples/multi-uv.c). Connections are kept alive and reused; TLS
 * verification is always on; plain http is accepted only for loopback hosts
 * (and, for the managed-identity endpoint only, the link-local IMDS address).
 *
 * On top of the generic request it knows three ADX calls: streaming ingest
 * (POST /v1/rest/ingest/{db}/{table}, gzip body, the SDK headers), a v1 query
 * (POST /v1/rest/query, used by the forwarder's dedupe check) and the
 * classification of an ingest outcome into delivered / transient / throttled
 * / ambiguous / permanent / auth / config (DESIGN.md invariants 5 and 6).
 *
 * Threading: a struct adx belongs to the loop thread that created it; every
 * call except adx_gzip() and adx_classify() must be made on that thread.
 */
#ifndef KADX_ADX_H
#define KADX_ADX_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

struct adx;

struct adx_options {
    const char *app;         /* x-ms-app; NULL = "kadx" */
    long connect_timeout_ms; /* 0 = 10000 */
    long timeout_ms;         /* whole request, default for specs; 0 = 60000 */
    size_t max_response;     /* response body cap; 0 = 1 MiB (rest dropped) */
    const char *ca_file;     /* extra CA bundle (tests); NULL = system */
    const char *proxy;       /* proxy URL; NULL = none (environment ignored) */
    const char *no_proxy;    /* libcurl NOPROXY list; NULL = none */
    long keepalive_idle_ms;  /* a kept-alive connection idle this long is
                                not reused (whole seconds); 0 = 50000 */
};

/* A response as the callback sees it. Pointers are valid during the call. */
struct adx_response {
    long status;            /* HTTP status, 0 when no response arrived */
    int err;                /* 0, or -errno for a transport failure */
    int body_sent;          /* the whole request body went to the socket */
    int truncated;          /* the body was longer than the cap */
    const char *body;       /* NUL-terminated, possibly truncated */
    size_t body_len;        /* bytes in body */
    int64_t retry_after_ms; /* from Retry-After, -1 when absent */
    double total_s;         /* request duration */
    const char *errmsg;     /* transport error text ("" when none) */
};

typedef void (*adx_cb)(void *arg, const struct adx_response *res);

struct adx_request_spec {
    const char *method;         /* "GET", "POST" or "PUT" */
    const char *url;            /* absolute http(s) URL */
    const char *const *headers; /* "Name: value" strings, NULL-terminated */
    const void *body;           /* borrowed until the callback runs */
    size_t body_len;
    long timeout_ms;      /* 0 = the client's default */
    int allow_link_local; /* accept http://169.254.x.x (IMDS only) */
    int no_replay;        /* a POST libcurl must never re-send on its own
                             (ingest: the first copy may be applied) */
};

/*
 * Creates a client on loop. Returns 0 or -errno with a message in err.
 * *out is freed by adx_free().
 */
int adx_new(uv_loop_t *loop, const struct adx_options *opt, struct adx **out,
            char *err, size_t errlen);

/*
 * Cancels every request in flight (each callback runs once, at once, with
 * err = -ECANCELED and body_sent telling whether the request may have been
 * applied), then closes the libuv handles; the memory is freed by their close
 * callbacks, so the loop must run once more. NULL-safe. Must not be called
 * from inside an adx callback.
 */
void adx_free(struct adx *a);

/*
 * Replaces the proxy settings (copied) for the requests started from now
 * on; NULL = no proxy / no exceptions. The environment's proxy variables
 * are never used. Returns 0 or -ENOMEM (settings unchanged). Loop thread.
 */
int adx_set_proxy(struct adx *a, const char *proxy, const char *no_proxy);

/* Requests in flight (for status and shutdown). */
size_t adx_inflight(const struct adx *a);

/*
 * Starts a request. If it returns < 0 (bad URL, plain http to a non-loopback
 * host, out of memory: message in err), cb never runs; if it returns 0, cb
 * runs exactly once, later, on the loop thread.
 */
int adx_request(struct adx *a, const struct adx_request_spec *spec, adx_cb cb,
                void *arg, char *err, size_t errlen);

/* One streaming ingest request (adx-protocol.md section 1). */
struct adx_ingest {
    const char *cluster; /* engine URL, e.g. https://c.region.kusto.w... */
    const char *database;
    const char *table;
    const char *format;   /* streamFormat: json, multijson, csv, ... */
    const char *mapping;  /* mappingName, NULL = none */
    const char *token;    /* bearer token, NULL = no Authorization */
    const char *batch_id; /* for x-ms-client-request-id */
    int attempt;          /* 1, 2, ... */
    const void *body;     /* borrowed until cb; gzip unless !gzipped */
    size_t body_len;
    int gzipped;
    long timeout_ms; /* 0 = the client's default */
    /* > 0: sent as the `servertimeout` request property (header, as the
     * Java SDK sends it with every streaming ingest): the most ADX may
     * spend on the request. 0 = not sent */
    int64_t server_timeout_ms;
};

/*
 * Formats ms as a KQL timespan `[d.]hh:mm:ss[.fff]` (the form the Java SDK
 * sends, e.g. "00:10:00") into dst[cap]. Returns 0 or -ENAMETOOLONG.
 */
int adx_timespan(char *dst, size_t cap, int64_t ms);

/* POST /v1/rest/ingest/{db}/{table}: same contract as adx_request(). */
int adx_ingest(struct adx *a, const struct adx_ingest *in, adx_cb cb, void *arg,
               char *err, size_t errlen);

/* POST /v1/rest/query {"db":..,"csl":..}: same contract as adx_request(). */
int adx_query(struct adx *a, const char *cluster, const char *database,
              const char *csl, const char *token, const char *request_id,
              adx_cb cb, void *arg, char *err, size_t errlen);

/* POST /v1/rest/mgmt {"db":..,"csl":..} (a management command such as
 * `.show table T cslschema`): same contract as adx_request(). */
int adx_mgmt(struct adx *a, const char *cluster, const char *database,
             const char *csl, const char *token, const char *request_id,
             adx_cb cb, void *arg, char *err, size_t errlen);

/*
 * Reads the string cell of column `column` in the first row of a v1
 * answer's first table into out (outlen bytes; a null cell reads "null").
 * Returns 0, -ENOENT when the table has no row, -EMSGSIZE when it does not
 * fit, or -EBADMSG (not a v1 answer, no such column, not a string).
 */
int adx_parse_cell(const char *body, size_t len, const char *column, char *out,
                   size_t outlen);

/*
 * Reads a v1 query answer whose first table's first row's first cell is a
 * number (`T | ... | count`). Returns 0 and *out, or -EBADMSG.
 */
int adx_parse_count(const char *body, size_t len, int64_t *out);

enum adx_outcome {
    ADX_OK = 0,    /* 200: delivered (INV-5: the only definite yes) */
    ADX_TRANSIENT, /* 5xx, network before the body was sent, 408: retry */
    ADX_THROTTLED, /* 429 (Retry-After in the response): retry later */
    ADX_AMBIGUOUS, /* timeout/reset after the body was sent: maybe applied */
    ADX_PERMANENT, /* @permanent true, 400 bad data, 413: bisect (INV-6) */
    ADX_AUTH,      /* 401: refresh the token once, then retry */
    ADX_CONFIG,    /* 403, 404, table/mapping missing, streaming disabled */
};

const char *adx_outcome_name(enum adx_outcome o);

/*
 * Classifies an ingest response. reason (may be NULL) receives a one-line
 * cause without secrets or payload: the OneApi code and @message, or the
 * transport error. Any thread.
 */
enum adx_outcome adx_classify(const struct adx_response *res, char *reason,
                              size_t reasonlen);

/*
 * gzip-compresses in[0..len) at level (1..9) into a new buffer *out (owned:
 * free()), *outlen bytes. Any thread. Returns 0 or -ENOMEM / -EIO, or
 * -EMSGSIZE past 2 GiB.
 */
int adx_gzip(const void *in, size_t len, int level, void **out, size_t *outlen);

/*
 * True when url's host is loopback (localhost, 127.x, ::1). Used for the
 * "plain http only for loopback" rule; exposed for config checks and tests.
 */
int adx_url_is_loopback(const char *url);

#endif
