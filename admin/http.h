/*
 * http.h - a small HTTP/1.1 server on a libuv loop (libhttp-parser), shared
 * by the admin API and the ADX emulator.
 *
 * What it does: listens on "host:port", keeps connections alive, decodes
 * chunked request bodies, enforces caps (header bytes -> 431, body bytes ->
 * 413, a request that does not arrive within the read timeout -> 408 and
 * close, anything unparseable -> 400; all with a JSON error body) and hands
 * each complete request to one handler. Requests on a connection are handled
 * one at a time, in order (pipelined requests wait their turn).
 *
 * Threading: everything runs on the loop thread that owns the server; no
 * call is thread-safe.
 *
 * Request lifetime (the one contract to remember): the handler receives a
 * request and must later call exactly one of http_respond() or http_reset()
 * on it, either inside the handler or later (deferred), from the loop
 * thread. After that call the request is freed. If the peer goes away (or
 * the server is freed) while a request is pending, the request stays valid:
 * its abort callback (if set) runs once, and the eventual http_respond() or
 * http_reset() is a no-op that only frees it.
 */
#ifndef KADX_HTTP_H
#define KADX_HTTP_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

struct http_server;
struct http_request;

/* A header to send: both strings are borrowed for the duration of the
 * http_respond() call. */
struct http_header {
    const char *name;
    const char *value;
};

/* Called once per complete request, on the loop thread. data is the
 * server's user data. */
typedef void (*http_handler_fn)(struct http_request *req, void *data);

/* Called at most once when the connection of a pending request goes away
 * (peer closed or reset, write error, server freed). The request remains
 * valid until the handler responds to it. */
typedef void (*http_abort_fn)(struct http_request *req, void *data);

/*
 * Formats the body of an error the server sends by itself (400, 408, 413,
 * 431, 503). Writes at most len bytes into buf (NUL-terminated) and returns
 * the body length. message is lowercase text without a final period.
 */
typedef size_t (*http_error_fn)(int status, const char *message, char *buf,
                                size_t len, void *data);

struct http_server_config {
    size_t max_header_bytes;   /* request line + headers; over -> 431 */
    size_t max_body_bytes;     /* decoded body; over -> 413 */
    uint64_t read_timeout_ms;  /* a started request must be complete in this
                                  time; over -> 408 and close */
    uint64_t idle_timeout_ms;  /* a keep-alive connection with no request in
                                  progress is closed after this */
    size_t max_connections;    /* over -> 503 and close (TLS: close) */
    int defer_over_limit;      /* 1: over max_connections, leave the next
                                  connection in the kernel's backlog until
                                  one closes (nothing for the loop to do)
                                  instead of 503 and close */
    double max_requests_per_s; /* per connection; a faster client's next
                                  request waits (unread); 0 = no limit */
    http_error_fn error_body;  /* NULL: http_error_body_default */
    void *error_data;
};

/* Fills cfg with the defaults: 64 KiB headers, 8 MiB body, 30 s read
 * timeout, 120 s idle timeout, 1024 connections, no request rate limit,
 * default error body. */
void http_server_config_default(struct http_server_config *cfg);

/* {"error":{"code":"<Reason>","message":"<message>","@permanent":<4xx>}} */
size_t http_error_body_default(int status, const char *message, char *buf,
                               size_t len, void *data);

/* "OK", "Not Found", ... ("Unknown" for codes it does not know). */
const char *http_status_reason(int status);

/*
 * Creates a server on loop. cfg is copied (NULL: defaults). handler and
 * data are called for every request. Returns NULL on allocation failure.
 */
struct http_server *http_server_new(uv_loop_t *loop,
                                    const struct http_server_config *cfg,
                                    http_handler_fn handler, void *data);

/*
 * Binds and listens on "host:port" (IPv4 dotted, "[v6]:port", or
 * "localhost:port"; port 0 picks a free port). Returns 0 or a negative
 * errno with err filled.
 */
int http_server_listen(struct http_server *s, const char *hostport, char *err,
                       size_t errlen);

/*
 * Serves HTTPS from now on: loads a PEM certificate chain and its private
 * key (TLS 1.2 or later, no renegotiation). Called again, it replaces them
 * for new connections (a reload: open connections keep what they
 * negotiated); on failure the server keeps what it had. Returns 0 or a
 * negative errno with err naming the file and OpenSSL's reason.
 */
int http_server_set_tls(struct http_server *s, const char *cert_file,
                        const char *key_file, char *err, size_t errlen);

/* The bound port (after http_server_listen), else 0. */
int http_server_port(const struct http_server *s);

/* Number of open connections. */
size_t http_server_connections(const struct http_server *s);

/*
 * Stops listening and closes every connection (pending requests are
 * aborted: see the lifetime contract above). Memory is released by libuv
 * close callbacks: run the loop until it is empty afterwards. Accepts NULL.
 */
void http_server_free(struct http_server *s);

/* ---- the request (valid from the handler call until the response) ---- */

const char *http_req_method(const struct http_request *r); /* "POST" */
/* The path without the query string, as sent (not percent-decoded). */
const char *http_req_path(const struct http_request *r);
/* The raw query string without '?', or "" when there is none. */
const char *http_req_query(const struct http_request *r);
/* First header of that name (case-insensitive), or NULL. */
const char *http_req_header(const struct http_request *r, const char *name);
/* The token of an "Authorization: Bearer TOKEN" header (scheme
 * case-insensitive, spaces before TOKEN skipped), or NULL when there is
 * no such header. */
const char *http_req_bearer(const struct http_request *r);
/* The decoded body (chunked or not). Always NUL-terminated at body[*len];
 * never NULL (an empty body is ""). */
const char *http_req_body(const struct http_request *r, size_t *len);
/* 1 when the peer's address is in 127.0.0.0/8 or ::1, else 0. */
int http_req_peer_is_loopback(const struct http_request *r);
/* 1 once the connection is gone (responding is then a no-op). */
int http_req_aborted(const struct http_request *r);

/* Sets the abort callback (see http_abort_fn); data is passed to it. */
void http_req_on_abort(struct http_request *r, http_abort_fn cb, void *data);

/* A slot for the handler's own pointer, NULL at first. */
void http_req_set_data(struct http_request *r, void *data);
void *http_req_data(const struct http_request *r);

/*
 * Sends the response and frees r. headers (may be NULL when n is 0) must
 * not contain Content-Length, Transfer-Encoding or Connection: the server
 * sets them. body (len bytes) is copied. Returns 0, or -ECONNRESET when the
 * connection was gone (r is freed all the same), or -EINVAL for a bad
 * status (then a 500 is sent instead).
 */
int http_respond(struct http_request *r, int status,
                 const struct http_header *headers, size_t n, const void *body,
                 size_t len);

/* http_respond with Content-Type: application/json; charset=utf-8 and the
 * given extra headers. */
int http_respond_json(struct http_request *r, int status,
                      const struct http_header *headers, size_t n,
                      const char *json);

/*
 * Answers nothing: closes the connection with a TCP RST (SO_LINGER 0) and
 * frees r. Used by the emulator for "applied, then connection reset".
 */
void http_reset(struct http_request *r);

/*
 * Finds name in a query string (a=1&b=x%20y) and percent-decodes its value
 * ('+' is a space) into out (outlen bytes, NUL-terminated). Returns the
 * decoded length, -ENOENT when absent, -EMSGSIZE when it does not fit,
 * -EINVAL for bad percent escapes.
 */
int http_query_param(const char *query, const char *name, char *out,
                     size_t outlen);

/* Percent-decodes src (len bytes) into out; same returns as above. '+' is
 * kept as '+' (paths), unless plus_is_space. */
int http_url_decode(const char *src, size_t len, char *out, size_t outlen,
                    int plus_is_space);

#endif
