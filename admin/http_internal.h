/*
 * http_internal.h - what admin/http.c (connections, writing, the server)
 * and admin/http_parse.c (the request parser's callbacks, the request
 * accessors, error bodies and URL helpers) share. Private to those two.
 */
#ifndef KADX_ADMIN_HTTP_INTERNAL_H
#define KADX_ADMIN_HTTP_INTERNAL_H

#include "admin/http.h"

#include <http_parser.h>
#include <openssl/ssl.h>
#include <stddef.h>
#include <stdint.h>

#define HTTP_IN_CHUNK 65536

struct http_hdr {
    char *name;
    size_t nlen;
    char *value;
    size_t vlen;
};

struct http_request {
    struct conn *conn; /* NULL once the connection is gone */
    char method[16];
    char *url;
    size_t url_len;
    char *path;  /* points into pathbuf */
    char *query; /* points into pathbuf, or "" */
    char *pathbuf;
    struct http_hdr *hdrs;
    size_t nhdrs;
    size_t caphdrs;
    char *body;
    size_t body_len;
    size_t body_cap;
    int keep_alive;
    int too_large;
    int peer_loopback;
    http_abort_fn abort_cb;
    void *abort_data;
    void *user;
};

struct conn {
    uv_tcp_t tcp;
    uv_timer_t timer;
    uv_timer_t rate_timer; /* a throttled request's wait */
    uv_shutdown_t shut;
    struct http_server *srv;
    struct conn *prev;
    struct conn *next;
    http_parser parser;
    char *in;
    size_t in_len;
    size_t in_cap;
    struct http_request *cur;     /* being parsed */
    struct http_request *ready;   /* complete, not yet handed out */
    struct http_request *pending; /* handed to the handler */
    size_t header_bytes;
    int err_status; /* set by a parser callback that stopped parsing */
    int in_message; /* a request has started and is not complete */
    int draining;   /* answered already (413): discard the rest */
    int last_was_value;
    int closing;    /* uv_close called (or about to be) */
    int shutting;   /* graceful close started */
    int reading;    /* uv_read_start active */
    int in_process; /* inside process(): no re-entry */
    int open_handles;
    int peer_loopback;
    int throttled;      /* a ready request waits for rate_timer */
    double tokens;      /* rate limit: requests that may start now */
    uint64_t refill_ms; /* uv_now of the last refill */
    SSL *ssl;           /* TLS: owns both memory BIOs; NULL = plain */
    char *cbuf;         /* TLS: ciphertext read buffer (HTTP_IN_CHUNK) */
};

struct http_server {
    uv_loop_t *loop;
    uv_tcp_t listener;
    struct http_server_config cfg;
    http_handler_fn handler;
    void *data;
    int port;
    struct conn *conns;
    size_t nconns;
    int freeing;
    int listener_open;
    SSL_CTX *tls; /* NULL = plain HTTP; each SSL holds its own reference */
    int accept_waiting; /* defer_over_limit: a connection waits in the
                           kernel's backlog; libuv stopped polling */
};

/* http_parse.c */

/* Grows *buf (capacity *cap) to hold need bytes; 0 or -ENOMEM. */
int http_grow(char **buf, size_t *cap, size_t need);
void http_req_free(struct http_request *r);
/* The parser callbacks (p->data is the struct conn). */
extern const http_parser_settings http_parse_settings;

/* http.c */

void http_conn_arm_timer(struct conn *c, uint64_t ms);
/* Stops parsing; closes after every queued write is out. */
void http_conn_graceful_close(struct conn *c);
/* Queues len bytes of the HTTP stream (encrypted first over TLS). */
int http_conn_write_raw(struct conn *c, const char *data, size_t len,
                        int close_after);
void http_conn_send_error(struct conn *c, int status, const char *message);

#endif
