/*
 * http.c - the HTTP/1.1 server (see http.h for the contract): connections,
 * writing, the server; the request parser's callbacks, the request
 * accessors and the URL helpers are in http_parse.c.
 *
 * Each accepted connection owns a uv_tcp_t, a uv_timer_t (read and idle
 * timeouts), an http_parser and an input buffer of bytes read but not yet
 * parsed. Bytes are read continuously (so a peer that goes away is noticed
 * even while a handler holds a request), but they are parsed only when no
 * request of that connection is pending: when a message completes the
 * parser is paused, the request is handed to the handler, and parsing
 * resumes after the response has been queued. So pipelined requests are
 * answered in order, and a slow handler applies backpressure (reading stops
 * once the unparsed input exceeds one request's worth of caps).
 *
 * Errors found by the server itself are answered with a JSON body and the
 * connection is closed gracefully (uv_shutdown after the write, then close).
 * A body over the cap is answered with 413 at once and the rest of that
 * request is read and discarded, so the client sees the answer rather than
 * a reset.
 *
 * TLS (http_server_set_tls): each connection then owns an SSL object over
 * two memory BIOs, so libuv keeps doing all socket I/O. Ciphertext read
 * from the socket goes into the read BIO; whatever SSL_read decrypts is
 * appended to the same plaintext input buffer the parser reads, so parsing,
 * caps and backpressure are the same as without TLS. A response is given
 * to SSL_write and the write BIO's ciphertext is queued with uv_write.
 * A handshake that fails closes the connection; one that does not finish
 * within the read timeout is closed by the same timer as a slow request.
 *
 * Limits, so a flood cannot starve the loop: at most max_connections open
 * (the next is answered 503 and closed, over TLS closed at once; or, with
 * defer_over_limit, not accepted until one closes), and per
 * connection at most max_requests_per_s requests handed to the handler
 * (a token bucket of one second's worth): a faster client's next request
 * waits, unread, on a timer, so the loop spends nothing on it meanwhile.
 *
 * Memory: a connection is freed in its handles' close callbacks; a request
 * is freed by http_respond()/http_reset(), or with its connection when it
 * was never handed out. A pending request whose connection closes is
 * detached (req->conn = NULL) and freed by its eventual response call. The
 * server struct is freed when its listener and every connection are closed.
 * Everything runs on the loop thread.
 */
#include "admin/http_internal.h"
#include "base/container_of.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct wreq {
    uv_write_t w;
    struct conn *c;
    int close_after;
    size_t len;
    char data[];
};

static void conn_close(struct conn *c, int reset);
static void conn_process(struct conn *c);

/* ---- writing ---- */

static void after_write(uv_write_t *w, int status)
{
    struct wreq *wr = container_of(w, struct wreq, w);
    struct conn *c = wr->c;
    int close_after = wr->close_after;

    free(wr);
    if (c->closing) {
        return;
    }
    if (status < 0) {
        conn_close(c, 0);
        return;
    }
    if (close_after) {
        http_conn_graceful_close(c);
    }
}

/* Queues len bytes (copied) on the socket as they are. Returns 0 or a
 * negative errno (the connection is then being closed). */
static int sock_write(struct conn *c, const char *data, size_t len,
                      int close_after)
{
    struct wreq *wr;
    uv_buf_t b;
    int rc;

    if (c->closing || c->shutting) {
        return -ECONNRESET;
    }
    wr = malloc(sizeof(*wr) + len);
    if (wr == NULL) {
        conn_close(c, 0);
        return -ENOMEM;
    }
    wr->c = c;
    wr->close_after = close_after;
    wr->len = len;
    memcpy(wr->data, data, len);
    b = uv_buf_init(wr->data, (unsigned int)len);
    rc = uv_write(&wr->w, (uv_stream_t *)&c->tcp, &b, 1, after_write);
    if (rc < 0) {
        free(wr);
        conn_close(c, 0);
        return rc;
    }
    return 0;
}

/* TLS: queues the ciphertext waiting in the write BIO (handshake
 * messages, records, alerts, close_notify). 0 or a negative errno. */
static int tls_flush(struct conn *c, int close_after)
{
    BIO *wbio = SSL_get_wbio(c->ssl);
    size_t n = BIO_ctrl_pending(wbio);
    char *buf;
    int rc;

    if (n == 0) {
        if (close_after) {
            http_conn_graceful_close(c);
        }
        return 0;
    }
    buf = malloc(n);
    if (buf == NULL) {
        conn_close(c, 0);
        return -ENOMEM;
    }
    if (BIO_read(wbio, buf, (int)n) != (int)n) {
        free(buf);
        conn_close(c, 0);
        return -EIO;
    }
    rc = sock_write(c, buf, n, close_after);
    free(buf);
    return rc;
}

/* Queues len bytes of the HTTP stream (encrypted first over TLS). */
int http_conn_write_raw(struct conn *c, const char *data, size_t len,
                        int close_after)
{
    if (c->ssl == NULL) {
        return sock_write(c, data, len, close_after);
    }
    if (c->closing || c->shutting) {
        return -ECONNRESET;
    }
    /* memory BIOs grow: SSL_write takes everything once the handshake is
     * done (it is: a request was decrypted before any answer) */
    if (len > 0 && SSL_write(c->ssl, data, (int)len) != (int)len) {
        ERR_clear_error();
        conn_close(c, 0);
        return -EIO;
    }
    return tls_flush(c, close_after);
}

/*
 * TLS: takes len bytes of ciphertext from the socket, advances the
 * handshake and appends the plaintext to c->in. 0, or a negative errno when
 * the connection must close (bad handshake, protocol error, peer's
 * close_notify).
 */
static int tls_feed(struct conn *c, const char *data, size_t len)
{
    int n;
    int e;

    if (BIO_write(SSL_get_rbio(c->ssl), data, (int)len) != (int)len) {
        return -ENOMEM;
    }
    if (!SSL_is_init_finished(c->ssl)) {
        n = SSL_do_handshake(c->ssl);
        if (n != 1) {
            e = SSL_get_error(c->ssl, n);
            ERR_clear_error();
            tls_flush(c, 0); /* our part of the handshake, or an alert */
            return e == SSL_ERROR_WANT_READ ? 0 : -EPROTO;
        }
    }
    for (;;) {
        if (http_grow(&c->in, &c->in_cap, c->in_len + HTTP_IN_CHUNK) < 0) {
            return -ENOMEM;
        }
        n = SSL_read(c->ssl, c->in + c->in_len, HTTP_IN_CHUNK);
        if (n > 0) {
            c->in_len += (size_t)n;
            continue;
        }
        e = SSL_get_error(c->ssl, n);
        ERR_clear_error();
        if (e == SSL_ERROR_WANT_READ) {
            break;
        }
        tls_flush(c, 0);
        return e == SSL_ERROR_ZERO_RETURN ? -ECONNRESET : -EPROTO;
    }
    /* session tickets after the handshake, key updates */
    return tls_flush(c, 0);
}

/* Builds and queues a full response. */
static int write_response(struct conn *c, int status,
                          const struct http_header *headers, size_t n,
                          const void *body, size_t len, int keep_alive,
                          int head_only)
{
    size_t head_len = 128;
    char *buf;
    size_t pos = 0;
    int rc;

    for (size_t i = 0; i < n; i++) {
        head_len += strlen(headers[i].name) + strlen(headers[i].value) + 4;
    }
    buf = malloc(head_len + len);
    if (buf == NULL) {
        conn_close(c, 0);
        return -ENOMEM;
    }
    pos += (size_t)snprintf(buf + pos, head_len - pos, "HTTP/1.1 %d %s\r\n",
                            status, http_status_reason(status));
    for (size_t i = 0; i < n; i++) {
        pos += (size_t)snprintf(buf + pos, head_len - pos, "%s: %s\r\n",
                                headers[i].name, headers[i].value);
    }
    pos += (size_t)snprintf(buf + pos, head_len - pos,
                            "Content-Length: %zu\r\nConnection: %s\r\n\r\n",
                            len, keep_alive ? "keep-alive" : "close");
    if (head_only) {
        len = 0; /* HEAD: the headers tell the length, no body follows */
    }
    if (len > 0) {
        memcpy(buf + pos, body, len);
    }
    rc = http_conn_write_raw(c, buf, pos + len, !keep_alive);
    free(buf);
    return rc;
}

void http_conn_send_error(struct conn *c, int status, const char *message)
{
    char body[1024];
    size_t len;
    struct http_server *s = c->srv;
    static const struct http_header ct[] = {
        {"Content-Type", "application/json; charset=utf-8"}};

    if (s->cfg.error_body != NULL) {
        len = s->cfg.error_body(status, message, body, sizeof(body),
                                s->cfg.error_data);
    } else {
        len =
            http_error_body_default(status, message, body, sizeof(body), NULL);
    }
    if (len >= sizeof(body)) {
        len = sizeof(body) - 1;
    }
    write_response(c, status, ct, 1, body, len, 0, 0);
}

/* ---- connection lifecycle ---- */

static void conn_free_if_done(struct conn *c);
static void on_connection(uv_stream_t *ls, int status);

static void on_handle_closed(uv_handle_t *h)
{
    struct conn *c = h->data;

    c->open_handles--;
    conn_free_if_done(c);
}

static void server_free_if_done(struct http_server *s)
{
    if (s->freeing && !s->listener_open && s->nconns == 0) {
        SSL_CTX_free(s->tls);
        free(s);
    }
}

static void conn_free_if_done(struct conn *c)
{
    struct http_server *s = c->srv;

    if (c->open_handles > 0) {
        return;
    }
    if (c->prev != NULL) {
        c->prev->next = c->next;
    } else {
        s->conns = c->next;
    }
    if (c->next != NULL) {
        c->next->prev = c->prev;
    }
    s->nconns--;
    if (s->accept_waiting && !s->freeing) {
        s->accept_waiting = 0;
        on_connection((uv_stream_t *)&s->listener, 0); /* accepts it now */
    }
    http_req_free(c->cur);
    http_req_free(c->ready);
    SSL_free(c->ssl);
    free(c->cbuf);
    free(c->in);
    free(c);
    server_free_if_done(s);
}

/* Closes at once (pending writes are cancelled). reset: TCP RST. */
static void conn_close(struct conn *c, int reset)
{
    struct http_request *p;

    if (c->closing) {
        return;
    }
    c->closing = 1;
    p = c->pending;
    c->pending = NULL;
    uv_timer_stop(&c->timer);
    uv_close((uv_handle_t *)&c->timer, on_handle_closed);
    uv_close((uv_handle_t *)&c->rate_timer, on_handle_closed);
    if (reset && !c->shutting) {
        if (uv_tcp_close_reset(&c->tcp, on_handle_closed) < 0) {
            uv_close((uv_handle_t *)&c->tcp, on_handle_closed);
        }
    } else {
        uv_close((uv_handle_t *)&c->tcp, on_handle_closed);
    }
    if (p != NULL) {
        p->conn = NULL;
        if (p->abort_cb != NULL) {
            p->abort_cb(p, p->abort_data);
        }
    }
}

static void after_shutdown(uv_shutdown_t *sh, int status)
{
    struct conn *c = sh->data;

    (void)status;
    conn_close(c, 0);
}

/* Stops parsing; closes after every queued write is out. */
void http_conn_graceful_close(struct conn *c)
{
    if (c->closing || c->shutting) {
        return;
    }
    if (c->draining && c->in_message) {
        /* still reading the rest of a refused body; close at its end */
        return;
    }
    if (c->ssl != NULL && SSL_is_init_finished(c->ssl)) {
        SSL_shutdown(c->ssl); /* close_notify; the peer's is not awaited */
        ERR_clear_error();
        tls_flush(c, 0);
        if (c->closing) {
            return;
        }
    }
    c->shutting = 1;
    c->shut.data = c;
    if (uv_shutdown(&c->shut, (uv_stream_t *)&c->tcp, after_shutdown) < 0) {
        conn_close(c, 0);
    }
}

static void on_timer(uv_timer_t *t)
{
    struct conn *c = t->data;

    if (c->closing || c->shutting) {
        return;
    }
    if (c->in_message && !c->draining && c->pending == NULL) {
        http_conn_send_error(c, 408, "request not received in time");
        c->in_message = 0;
        return;
    }
    if (c->pending != NULL) {
        return;
    }
    c->draining = 0;
    c->in_message = 0;
    http_conn_graceful_close(c);
}

void http_conn_arm_timer(struct conn *c, uint64_t ms)
{
    if (c->closing || ms == 0) {
        uv_timer_stop(&c->timer);
        return;
    }
    uv_timer_start(&c->timer, on_timer, ms, 0);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct conn *c = h->data;

    (void)suggested;
    if (c->ssl != NULL) {
        if (c->cbuf == NULL) {
            c->cbuf = malloc(HTTP_IN_CHUNK);
        }
        *buf = c->cbuf != NULL ? uv_buf_init(c->cbuf, HTTP_IN_CHUNK)
                               : uv_buf_init(NULL, 0);
        return;
    }
    if (http_grow(&c->in, &c->in_cap, c->in_len + HTTP_IN_CHUNK) < 0) {
        *buf = uv_buf_init(NULL, 0);
        return;
    }
    *buf = uv_buf_init(c->in + c->in_len, HTTP_IN_CHUNK);
}

static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
    struct conn *c = st->data;
    size_t limit;

    if (c->closing) {
        return;
    }
    if (nread < 0) {
        /* EOF or error: a pending request is aborted */
        conn_close(c, 0);
        return;
    }
    if (nread == 0) {
        return;
    }
    if (c->ssl != NULL) {
        if (tls_feed(c, buf->base, (size_t)nread) < 0) {
            conn_close(c, 0);
            return;
        }
        if (c->closing) {
            return;
        }
    } else {
        c->in_len += (size_t)nread;
    }
    if (c->shutting) {
        c->in_len = 0; /* answered and closing: ignore what comes */
        return;
    }
    limit = c->srv->cfg.max_header_bytes + c->srv->cfg.max_body_bytes +
            HTTP_IN_CHUNK;
    if (c->pending != NULL && c->in_len > limit && c->reading) {
        uv_read_stop(st);
        c->reading = 0;
    }
    conn_process(c);
}

static void on_rate_timer(uv_timer_t *t)
{
    struct conn *c = t->data;

    c->throttled = 0;
    if (!c->closing) {
        conn_process(c);
    }
}

/*
 * Rate limit: takes one request token (bucket of max_requests_per_s,
 * refilled continuously). Returns 1, or 0 with rate_timer armed for when
 * the next token is due.
 */
static int rate_take(struct conn *c)
{
    double rate = (double)c->srv->cfg.max_requests_per_s;
    uint64_t now;
    double wait_ms;

    if (rate <= 0) {
        return 1;
    }
    now = uv_now(c->srv->loop);
    c->tokens += (double)(now - c->refill_ms) * rate / 1000.0;
    c->refill_ms = now;
    if (c->tokens > rate) {
        c->tokens = rate;
    }
    if (c->tokens >= 1.0) {
        c->tokens -= 1.0;
        return 1;
    }
    wait_ms = (1.0 - c->tokens) * 1000.0 / rate;
    c->throttled = 1;
    uv_timer_start(&c->rate_timer, on_rate_timer, (uint64_t)wait_ms + 1, 0);
    return 0;
}

static void conn_dispatch(struct conn *c)
{
    struct http_request *r = c->ready;

    c->ready = NULL;
    c->pending = r;
    r->conn = c;
    c->srv->handler(r, c->srv->data);
}

/* Parses buffered input and dispatches requests while none is pending. */
static void conn_process(struct conn *c)
{
    size_t off = 0;

    if (c->in_process) {
        return;
    }
    c->in_process = 1;
    while (!c->closing && !c->shutting && c->pending == NULL) {
        size_t n;
        enum http_errno e;

        if (c->ready != NULL) {
            if (c->throttled || !rate_take(c)) {
                break;
            }
            conn_dispatch(c);
            continue;
        }
        if (off >= c->in_len) {
            break;
        }
        n = http_parser_execute(&c->parser, &http_parse_settings, c->in + off,
                                c->in_len - off);
        off += n;
        e = HTTP_PARSER_ERRNO(&c->parser);
        if (e == HPE_PAUSED) {
            http_parser_pause(&c->parser, 0);
            continue;
        }
        if (e != HPE_OK) {
            if (c->err_status > 0) {
                http_conn_send_error(c, c->err_status,
                                     c->err_status == 431
                                         ? "request headers too large"
                                         : (c->err_status == 503
                                                ? "out of memory"
                                                : "malformed request"));
            } else if (c->err_status == 0) {
                char msg[160];
                if (e == HPE_HEADER_OVERFLOW) {
                    http_conn_send_error(c, 431, "request headers too large");
                } else {
                    snprintf(msg, sizeof(msg), "malformed request: %s",
                             http_errno_description(e));
                    http_conn_send_error(c, 400, msg);
                }
            }
            c->in_message = 0;
            c->draining = 0;
            http_conn_graceful_close(c);
            off = c->in_len;
            break;
        }
        if (n == 0) {
            break;
        }
    }
    if (off > 0) {
        if (off >= c->in_len) {
            c->in_len = 0;
        } else {
            memmove(c->in, c->in + off, c->in_len - off);
            c->in_len -= off;
        }
    }
    c->in_process = 0;
    if (c->closing || c->shutting) {
        return;
    }
    if (c->ready != NULL) {
        /* throttled: read nothing more until the request is handed out */
        if (c->reading) {
            uv_read_stop((uv_stream_t *)&c->tcp);
            c->reading = 0;
        }
        uv_timer_stop(&c->timer);
        return;
    }
    if (c->pending == NULL && !c->reading) {
        if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) == 0) {
            c->reading = 1;
        }
    }
    if (c->pending == NULL && !c->in_message) {
        http_conn_arm_timer(c, c->srv->cfg.idle_timeout_ms);
    }
}

static int addr_is_loopback(const struct sockaddr_storage *ss)
{
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)ss;
        return (ntohl(a->sin_addr.s_addr) >> 24) == 127;
    }
    if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ss;
        static const unsigned char v4mapped[12] = {0, 0, 0, 0, 0,    0,
                                                   0, 0, 0, 0, 0xff, 0xff};
        if (IN6_IS_ADDR_LOOPBACK(&a->sin6_addr)) {
            return 1;
        }
        if (memcmp(a->sin6_addr.s6_addr, v4mapped, 12) == 0) {
            return a->sin6_addr.s6_addr[12] == 127;
        }
    }
    return 0;
}

static void on_connection(uv_stream_t *ls, int status)
{
    struct http_server *s = ls->data;
    struct conn *c;
    struct sockaddr_storage ss;
    int sslen = sizeof(ss);

    if (status < 0 || s->freeing) {
        return;
    }
    if (s->cfg.defer_over_limit && s->nconns >= s->cfg.max_connections) {
        /* not accepted: libuv stops watching the listener until a
         * connection closes (conn_free_if_done accepts it then), so a
         * flood costs the loop nothing; the kernel's backlog holds it */
        s->accept_waiting = 1;
        return;
    }
    c = calloc(1, sizeof(*c));
    if (c == NULL) {
        return;
    }
    c->srv = s;
    uv_tcp_init(s->loop, &c->tcp);
    uv_timer_init(s->loop, &c->timer);
    uv_timer_init(s->loop, &c->rate_timer);
    c->tcp.data = c;
    c->timer.data = c;
    c->rate_timer.data = c;
    c->open_handles = 3;
    c->tokens = (double)s->cfg.max_requests_per_s;
    c->refill_ms = uv_now(s->loop);
    c->next = s->conns;
    if (s->conns != NULL) {
        s->conns->prev = c;
    }
    s->conns = c;
    s->nconns++;
    http_parser_init(&c->parser, HTTP_REQUEST);
    c->parser.data = c;
    if (uv_accept(ls, (uv_stream_t *)&c->tcp) < 0) {
        conn_close(c, 0);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    memset(&ss, 0, sizeof(ss));
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &sslen) == 0) {
        c->peer_loopback = addr_is_loopback(&ss);
    }
    if (s->nconns > s->cfg.max_connections) {
        if (s->tls != NULL) {
            conn_close(c, 0); /* no handshake spent on it */
        } else {
            http_conn_send_error(c, 503, "too many connections");
        }
        return;
    }
    if (s->tls != NULL) {
        BIO *rbio = BIO_new(BIO_s_mem());
        BIO *wbio = BIO_new(BIO_s_mem());

        c->ssl = SSL_new(s->tls);
        if (c->ssl == NULL || rbio == NULL || wbio == NULL) {
            BIO_free(rbio);
            BIO_free(wbio);
            ERR_clear_error();
            conn_close(c, 0);
            return;
        }
        SSL_set_bio(c->ssl, rbio, wbio); /* the SSL owns both */
        SSL_set_accept_state(c->ssl);
    }
    if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) < 0) {
        conn_close(c, 0);
        return;
    }
    c->reading = 1;
    http_conn_arm_timer(c, s->cfg.read_timeout_ms);
}

/* ---- server ---- */

void http_server_config_default(struct http_server_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->max_header_bytes = 64 * 1024;
    cfg->max_body_bytes = 8 * 1024 * 1024;
    cfg->read_timeout_ms = 30000;
    cfg->idle_timeout_ms = 120000;
    cfg->max_connections = 1024;
    cfg->max_requests_per_s = 0;
    cfg->error_body = NULL;
    cfg->error_data = NULL;
}

struct http_server *http_server_new(uv_loop_t *loop,
                                    const struct http_server_config *cfg,
                                    http_handler_fn handler, void *data)
{
    struct http_server *s = calloc(1, sizeof(*s));

    if (s == NULL) {
        return NULL;
    }
    if (cfg != NULL) {
        s->cfg = *cfg;
    } else {
        http_server_config_default(&s->cfg);
    }
    if (s->cfg.max_connections == 0) {
        s->cfg.max_connections = 1024;
    }
    s->loop = loop;
    s->handler = handler;
    s->data = data;
    uv_tcp_init(loop, &s->listener);
    s->listener.data = s;
    s->listener_open = 1;
    return s;
}

/* Splits "host:port" / "[v6]:port" into host and port. */
static int split_hostport(const char *hp, char *host, size_t hostlen, int *port)
{
    const char *colon;
    const char *hs = hp;
    size_t hl;
    char *end;
    long p;

    if (hp[0] == '[') {
        const char *rb = strchr(hp, ']');
        if (rb == NULL || rb[1] != ':') {
            return -EINVAL;
        }
        hs = hp + 1;
        hl = (size_t)(rb - hs);
        colon = rb + 1;
    } else {
        colon = strrchr(hp, ':');
        if (colon == NULL) {
            return -EINVAL;
        }
        hl = (size_t)(colon - hp);
    }
    if (hl == 0 || hl >= hostlen) {
        return -EINVAL;
    }
    memcpy(host, hs, hl);
    host[hl] = '\0';
    errno = 0;
    p = strtol(colon + 1, &end, 10);
    if (errno != 0 || *end != '\0' || end == colon + 1 || p < 0 || p > 65535) {
        return -EINVAL;
    }
    *port = (int)p;
    return 0;
}

int http_server_listen(struct http_server *s, const char *hostport, char *err,
                       size_t errlen)
{
    char host[256];
    int port;
    struct sockaddr_storage ss;
    int sslen = sizeof(ss);
    int rc;

    if (split_hostport(hostport, host, sizeof(host), &port) < 0) {
        snprintf(err, errlen, "bad listen address '%s' (want host:port)",
                 hostport);
        return -EINVAL;
    }
    if (strcmp(host, "localhost") == 0) {
        snprintf(host, sizeof(host), "127.0.0.1");
    }
    memset(&ss, 0, sizeof(ss));
    if (strchr(host, ':') != NULL) {
        rc = uv_ip6_addr(host, port, (struct sockaddr_in6 *)&ss);
    } else {
        rc = uv_ip4_addr(host, port, (struct sockaddr_in *)&ss);
    }
    if (rc < 0) {
        snprintf(err, errlen, "bad listen address '%s': %s", hostport,
                 uv_strerror(rc));
        return rc;
    }
    rc = uv_tcp_bind(&s->listener, (const struct sockaddr *)&ss, 0);
    if (rc == 0) {
        rc = uv_listen((uv_stream_t *)&s->listener, 511, on_connection);
    }
    if (rc < 0) {
        snprintf(err, errlen, "cannot listen on '%s': %s", hostport,
                 uv_strerror(rc));
        return rc;
    }
    memset(&ss, 0, sizeof(ss));
    if (uv_tcp_getsockname(&s->listener, (struct sockaddr *)&ss, &sslen) == 0) {
        if (ss.ss_family == AF_INET) {
            s->port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
        } else if (ss.ss_family == AF_INET6) {
            s->port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
        }
    }
    return 0;
}

int http_server_port(const struct http_server *s)
{
    return s->port;
}

size_t http_server_connections(const struct http_server *s)
{
    return s->nconns;
}

/* The first queued OpenSSL error as text (and the queue cleared). */
static void tls_error(char *err, size_t errlen, const char *what,
                      const char *file)
{
    char buf[256] = "unknown error";
    unsigned long e = ERR_get_error();

    if (e != 0) {
        ERR_error_string_n(e, buf, sizeof(buf));
    }
    ERR_clear_error();
    snprintf(err, errlen, "%s '%s': %s", what, file, buf);
}

int http_server_set_tls(struct http_server *s, const char *cert_file,
                        const char *key_file, char *err, size_t errlen)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());

    if (ctx == NULL) {
        tls_error(err, errlen, "tls", "context");
        return -ENOMEM;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    if (SSL_CTX_use_certificate_chain_file(ctx, cert_file) != 1) {
        tls_error(err, errlen, "cannot load certificate", cert_file);
        SSL_CTX_free(ctx);
        return -EINVAL;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, key_file, SSL_FILETYPE_PEM) != 1) {
        tls_error(err, errlen, "cannot load private key", key_file);
        SSL_CTX_free(ctx);
        return -EINVAL;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        tls_error(err, errlen, "private key does not match the certificate",
                  key_file);
        SSL_CTX_free(ctx);
        return -EINVAL;
    }
    SSL_CTX_free(s->tls); /* open connections keep their own reference */
    s->tls = ctx;
    return 0;
}

static void on_listener_closed(uv_handle_t *h)
{
    struct http_server *s = h->data;

    s->listener_open = 0;
    server_free_if_done(s);
}

void http_server_free(struct http_server *s)
{
    struct conn *c;
    struct conn *next;

    if (s == NULL || s->freeing) {
        return;
    }
    s->freeing = 1;
    for (c = s->conns; c != NULL; c = next) {
        next = c->next;
        conn_close(c, 0);
    }
    uv_close((uv_handle_t *)&s->listener, on_listener_closed);
}
/* ---- responses ---- */

static int header_ok(const struct http_header *h)
{
    if (h->name == NULL || h->value == NULL || h->name[0] == '\0') {
        return 0;
    }
    if (strpbrk(h->name, "\r\n: ") != NULL || strpbrk(h->value, "\r\n")) {
        return 0;
    }
    if (strcasecmp(h->name, "Content-Length") == 0 ||
        strcasecmp(h->name, "Transfer-Encoding") == 0 ||
        strcasecmp(h->name, "Connection") == 0) {
        return 0;
    }
    return 1;
}

int http_respond(struct http_request *r, int status,
                 const struct http_header *headers, size_t n, const void *body,
                 size_t len)
{
    struct conn *c = r->conn;
    int rc = 0;
    int bad = status < 200 || status > 599;
    int head = strcmp(r->method, "HEAD") == 0;

    for (size_t i = 0; i < n && !bad; i++) {
        bad = !header_ok(&headers[i]);
    }
    if (c == NULL) {
        http_req_free(r);
        return -ECONNRESET;
    }
    if (c->pending != r) {
        /* not the connection's pending request: a caller bug */
        http_req_free(r);
        return -EINVAL;
    }
    c->pending = NULL;
    if (bad) {
        static const char msg[] = "{\"error\":{\"code\":\"Internal\","
                                  "\"message\":\"bad response\"}}";
        write_response(c, 500, NULL, 0, msg, sizeof(msg) - 1, r->keep_alive,
                       head);
        rc = -EINVAL;
    } else if (write_response(c, status, headers, n, body, len, r->keep_alive,
                              head) < 0) {
        rc = -ECONNRESET;
    }
    http_req_free(r);
    if (!c->closing) {
        conn_process(c);
    }
    return rc;
}

int http_respond_json(struct http_request *r, int status,
                      const struct http_header *headers, size_t n,
                      const char *json)
{
    struct http_header hs[24];
    size_t k = 0;

    hs[k++] =
        (struct http_header){"Content-Type", "application/json; charset=utf-8"};
    for (size_t i = 0; i < n && k < sizeof(hs) / sizeof(hs[0]); i++) {
        hs[k++] = headers[i];
    }
    return http_respond(r, status, hs, k, json, strlen(json));
}

void http_reset(struct http_request *r)
{
    struct conn *c = r->conn;

    if (c != NULL && c->pending == r) {
        c->pending = NULL;
        conn_close(c, 1);
    }
    http_req_free(r);
}
