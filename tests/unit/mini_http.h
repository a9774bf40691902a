/*
 * mini_http.h - a tiny scripted HTTP/1.1 responder for the unit tests of
 * gateway/adx.c, gateway/auth.c and gateway/forwarder.c. It runs on the
 * test's own libuv loop, on 127.0.0.1 with an ephemeral port, and answers
 * each request with the next step of a script: a status + headers + body,
 * a TCP reset after reading the whole request ("applied, then reset"), or
 * silence (for timeouts). Every request is recorded (method, target,
 * headers, body) for the test to inspect. Header-only (static functions):
 * each test program includes it once. Test code: caps are generous and
 * failures abort.
 */
#ifndef KADX_MINI_HTTP_H
#define KADX_MINI_HTTP_H

#include <assert.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <uv.h>

#define MH_MAX_STEPS    64
#define MH_MAX_REQS     1024
#define MH_MAX_REQBYTES (8 * 1024 * 1024)

enum mh_action { MH_RESPOND = 0, MH_RESET, MH_SILENT, MH_RESET_LATER };

struct mh_step {
    enum mh_action action;
    int status;
    const char *headers; /* extra header lines, each ending in \r\n */
    const char *body;
};

struct mh_request {
    char method[16];
    char target[2048];
    char *head; /* all header lines, NUL-terminated (owned) */
    char *body; /* owned, NUL-terminated */
    size_t body_len;
    int64_t at_ms; /* monotonic (uv_hrtime) ms when it was complete */
};

struct mh_conn;
struct mini_http;

/* Optional: decides a request's answer from its content (return 1 and fill
 * *out), or returns 0 to use the script. */
typedef int (*mh_decide_fn)(void *arg, const struct mh_request *r,
                            struct mh_step *out);

struct mini_http {
    uv_loop_t *loop;
    uv_tcp_t server;
    int port;
    struct mh_step steps[MH_MAX_STEPS];
    int nsteps;
    int next_step;
    struct mh_step fallback; /* once the script is used up */
    struct mh_request reqs[MH_MAX_REQS];
    int nreqs;
    int nconns; /* connections accepted */
    struct mh_conn *conns;
    mh_decide_fn decide;
    void *decide_arg;
    struct mh_step decided; /* storage for the decide hook's answer */
};

struct mh_conn {
    uv_tcp_t tcp;
    struct mini_http *mh;
    char *buf;
    size_t len, cap;
    int silent;
    uv_timer_t later; /* MH_RESET_LATER: reset 50 ms after the request */
    int later_used;
    struct mh_conn *next;
};

static void mh_later_closed(uv_handle_t *h)
{
    struct mh_conn *c = h->data;

    free(c->buf);
    free(c);
}

static void mh_conn_closed(uv_handle_t *h)
{
    struct mh_conn *c = h->data;
    struct mh_conn **pp = &c->mh->conns;

    while (*pp != NULL && *pp != c) {
        pp = &(*pp)->next;
    }
    if (*pp == c) {
        *pp = c->next;
    }
    if (c->later_used) {
        c->later.data = c;
        uv_close((uv_handle_t *)&c->later, mh_later_closed);
        return;
    }
    free(c->buf);
    free(c);
}

static void mh_reset_now(uv_timer_t *t)
{
    struct mh_conn *c = t->data;

    if (!uv_is_closing((uv_handle_t *)&c->tcp)) {
        uv_read_stop((uv_stream_t *)&c->tcp);
        uv_tcp_close_reset(&c->tcp, mh_conn_closed);
    }
}

static void mh_alloc(uv_handle_t *h, size_t sugg, uv_buf_t *b)
{
    struct mh_conn *c = h->data;

    (void)sugg;
    if (c->cap - c->len < 65536) {
        c->cap = c->cap ? c->cap * 2 : 131072;
        c->buf = realloc(c->buf, c->cap + 1);
        assert(c->buf != NULL);
    }
    b->base = c->buf + c->len;
    b->len = c->cap - c->len;
}

static void mh_written(uv_write_t *w, int status)
{
    (void)status;
    free(w->data);
    free(w);
}

/* A complete request at the start of c->buf? Returns its length or 0. */
static size_t mh_complete(struct mh_conn *c, size_t *head_len, size_t *body_len)
{
    char *end;
    const char *cl;
    size_t hl, bl = 0;

    c->buf[c->len] = '\0';
    end = strstr(c->buf, "\r\n\r\n");
    if (end == NULL) {
        return 0;
    }
    hl = (size_t)(end - c->buf) + 4;
    cl = strcasestr(c->buf, "\r\ncontent-length:");
    if (cl != NULL && cl < end) {
        bl = (size_t)strtoul(cl + 17, NULL, 10);
    }
    assert(bl < MH_MAX_REQBYTES);
    if (c->len < hl + bl) {
        return 0;
    }
    *head_len = hl;
    *body_len = bl;
    return hl + bl;
}

static void mh_record(struct mini_http *mh, struct mh_conn *c, size_t hl,
                      size_t bl)
{
    struct mh_request *r;
    char *sp1, *sp2;

    assert(mh->nreqs < MH_MAX_REQS);
    r = &mh->reqs[mh->nreqs++];
    memset(r, 0, sizeof(*r));
    r->head = malloc(hl + 1);
    r->body = malloc(bl + 1);
    assert(r->head && r->body);
    memcpy(r->head, c->buf, hl);
    r->head[hl] = '\0';
    memcpy(r->body, c->buf + hl, bl);
    r->body[bl] = '\0';
    r->body_len = bl;
    r->at_ms = (int64_t)(uv_hrtime() / 1000000u);
    sp1 = strchr(r->head, ' ');
    sp2 = sp1 ? strchr(sp1 + 1, ' ') : NULL;
    if (sp1 && sp2) {
        snprintf(r->method, sizeof(r->method), "%.*s", (int)(sp1 - r->head),
                 r->head);
        snprintf(r->target, sizeof(r->target), "%.*s", (int)(sp2 - sp1 - 1),
                 sp1 + 1);
    }
}

static void mh_respond(struct mh_conn *c, const struct mh_step *s)
{
    uv_write_t *w = malloc(sizeof(*w));
    const char *body = s->body ? s->body : "";
    size_t n = strlen(body) + (s->headers ? strlen(s->headers) : 0) + 256;
    char *out = malloc(n);
    uv_buf_t b;
    int len;

    assert(w && out);
    len = snprintf(out, n,
                   "HTTP/1.1 %d X\r\nContent-Length: %zu\r\n"
                   "Content-Type: application/json\r\n%s\r\n%s",
                   s->status, strlen(body), s->headers ? s->headers : "", body);
    w->data = out;
    b = uv_buf_init(out, (unsigned)len);
    uv_write(w, (uv_stream_t *)&c->tcp, &b, 1, mh_written);
}

static void mh_read(uv_stream_t *st, ssize_t n, const uv_buf_t *b)
{
    struct mh_conn *c = st->data;
    struct mini_http *mh = c->mh;
    size_t hl, bl, total;

    (void)b;
    if (n < 0) {
        uv_close((uv_handle_t *)&c->tcp, mh_conn_closed);
        return;
    }
    c->len += (size_t)n;
    while (!c->silent && (total = mh_complete(c, &hl, &bl)) > 0) {
        const struct mh_step *s;

        mh_record(mh, c, hl, bl);
        memset(&mh->decided, 0, sizeof(mh->decided));
        if (mh->decide != NULL &&
            mh->decide(mh->decide_arg, &mh->reqs[mh->nreqs - 1],
                       &mh->decided)) {
            s = &mh->decided;
        } else if (mh->next_step < mh->nsteps) {
            s = &mh->steps[mh->next_step++];
        } else {
            s = &mh->fallback;
        }
        memmove(c->buf, c->buf + total, c->len - total);
        c->len -= total;
        if (s->action == MH_RESET) {
            uv_read_stop(st);
            uv_tcp_close_reset(&c->tcp, mh_conn_closed);
            return;
        }
        if (s->action == MH_RESET_LATER) {
            /* like a server that applied the request, then died: the
             * client is already waiting for the answer */
            c->silent = 1;
            c->later_used = 1;
            uv_timer_init(mh->loop, &c->later);
            c->later.data = c;
            uv_timer_start(&c->later, mh_reset_now, 50, 0);
            return;
        }
        if (s->action == MH_SILENT) {
            c->silent = 1;
            return;
        }
        mh_respond(c, s);
    }
}

static void mh_accept(uv_stream_t *server, int status)
{
    struct mini_http *mh = server->data;
    struct mh_conn *c;

    assert(status == 0);
    c = calloc(1, sizeof(*c));
    assert(c != NULL);
    c->mh = mh;
    uv_tcp_init(mh->loop, &c->tcp);
    c->tcp.data = c;
    assert(uv_accept(server, (uv_stream_t *)&c->tcp) == 0);
    c->next = mh->conns;
    mh->conns = c;
    mh->nconns++;
    uv_read_start((uv_stream_t *)&c->tcp, mh_alloc, mh_read);
}

static void mh_start(struct mini_http *mh, uv_loop_t *loop)
{
    struct sockaddr_in addr;
    struct sockaddr_storage bound;
    int blen = sizeof(bound);

    memset(mh, 0, sizeof(*mh));
    mh->loop = loop;
    mh->fallback.status = 200;
    mh->fallback.body = "{}";
    uv_tcp_init(loop, &mh->server);
    mh->server.data = mh;
    uv_ip4_addr("127.0.0.1", 0, &addr);
    assert(uv_tcp_bind(&mh->server, (struct sockaddr *)&addr, 0) == 0);
    assert(uv_listen((uv_stream_t *)&mh->server, 64, mh_accept) == 0);
    uv_tcp_getsockname(&mh->server, (struct sockaddr *)&bound, &blen);
    mh->port = ntohs(((struct sockaddr_in *)&bound)->sin_port);
}

static void mh_push(struct mini_http *mh, enum mh_action action, int status,
                    const char *headers, const char *body)
{
    struct mh_step *s;

    assert(mh->nsteps < MH_MAX_STEPS);
    s = &mh->steps[mh->nsteps++];
    s->action = action;
    s->status = status;
    s->headers = headers;
    s->body = body;
}

/* The url of the responder plus path, in a static-per-call buffer. */
static const char *mh_url(struct mini_http *mh, const char *path, char *buf,
                          size_t len)
{
    snprintf(buf, len, "http://127.0.0.1:%d%s", mh->port, path);
    return buf;
}

/* A header's value in a recorded request (copied into out), or NULL. */
static const char *mh_header(const struct mh_request *r, const char *name,
                             char *out, size_t len)
{
    const char *p = r->head;
    size_t nl = strlen(name);

    while ((p = strstr(p, "\r\n")) != NULL) {
        p += 2;
        if (strncasecmp(p, name, nl) == 0 && p[nl] == ':') {
            const char *v = p + nl + 1;
            const char *e = strstr(v, "\r\n");

            while (*v == ' ') {
                v++;
            }
            snprintf(out, len, "%.*s", (int)(e ? e - v : (long)strlen(v)), v);
            return out;
        }
    }
    return NULL;
}

/* Closes the server and every connection; run the loop afterwards. */
static void mh_stop(struct mini_http *mh)
{
    uv_close((uv_handle_t *)&mh->server, NULL);
    for (struct mh_conn *c = mh->conns; c != NULL; c = c->next) {
        if (!uv_is_closing((uv_handle_t *)&c->tcp)) {
            uv_close((uv_handle_t *)&c->tcp, mh_conn_closed);
        }
    }
}

/* Runs loop until *count reaches n or timeout_ms have passed; the test then
 * checks *count. */
static inline void mh_run_until(uv_loop_t *loop, const int *count, int n,
                                int timeout_ms)
{
    uint64_t deadline;

    uv_update_time(loop);
    deadline = uv_now(loop) + (uint64_t)timeout_ms;
    while (*count < n && uv_now(loop) < deadline) {
        uv_run(loop, UV_RUN_ONCE);
        uv_update_time(loop);
    }
}

static void mh_release(struct mini_http *mh)
{
    for (int i = 0; i < mh->nreqs; i++) {
        free(mh->reqs[i].head);
        free(mh->reqs[i].body);
    }
    mh->nreqs = 0;
}

#endif
