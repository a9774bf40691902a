/*
 * http_parse.c - the request side of the HTTP/1.1 server (admin/http.c has
 * the connections, writing and the server): http_parser's callbacks, which
 * build a struct http_request under the header and body caps and answer
 * Expect: 100-continue and 413 through http.c; the request accessors; the
 * default JSON error bodies; the URL helpers. Runs on the loop thread.
 */
#include "admin/http_internal.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---- small helpers ---- */

const char *http_status_reason(int status)
{
    switch (status) {
    case 100:
        return "Continue";
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 202:
        return "Accepted";
    case 204:
        return "No Content";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 408:
        return "Request Timeout";
    case 409:
        return "Conflict";
    case 410:
        return "Gone";
    case 411:
        return "Length Required";
    case 413:
        return "Payload Too Large";
    case 415:
        return "Unsupported Media Type";
    case 422:
        return "Unprocessable Entity";
    case 429:
        return "Too Many Requests";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 501:
        return "Not Implemented";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    case 520:
        return "Unknown Error";
    default:
        return "Unknown";
    }
}

static const char *error_code_for(int status)
{
    switch (status) {
    case 400:
        return "BadRequest";
    case 408:
        return "RequestTimeout";
    case 413:
        return "PayloadTooLarge";
    case 431:
        return "RequestHeaderFieldsTooLarge";
    case 503:
        return "ServiceUnavailable";
    default:
        return "Error";
    }
}

/* Appends s to buf as JSON string content (no quotes); returns new pos. */
static size_t json_escape_into(char *buf, size_t len, size_t pos, const char *s)
{
    for (; *s != '\0' && pos + 7 < len; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\') {
            buf[pos++] = '\\';
            buf[pos++] = (char)ch;
        } else if (ch < 0x20) {
            pos += (size_t)snprintf(buf + pos, len - pos, "\\u%04x", ch);
        } else {
            buf[pos++] = (char)ch;
        }
    }
    buf[pos] = '\0';
    return pos;
}

size_t http_error_body_default(int status, const char *message, char *buf,
                               size_t len, void *data)
{
    size_t pos;
    int n;

    (void)data;
    if (len < 64) {
        if (len > 0) {
            buf[0] = '\0';
        }
        return 0;
    }
    n = snprintf(buf, len, "{\"error\":{\"code\":\"%s\",\"message\":\"",
                 error_code_for(status));
    pos = (size_t)n;
    pos = json_escape_into(buf, len - 40, pos, message);
    n = snprintf(buf + pos, len - pos, "\",\"@permanent\":%s}}",
                 status >= 400 && status < 500 && status != 408 ? "true"
                                                                : "false");
    pos += (size_t)n;
    if (pos >= len) {
        pos = len - 1;
    }
    return pos;
}

/* Grows *buf (capacity *cap) to hold need bytes; 0 or -ENOMEM. */
int http_grow(char **buf, size_t *cap, size_t need)
{
    size_t ncap = *cap != 0 ? *cap : 64;
    char *nb;

    if (need <= *cap) {
        return 0;
    }
    while (ncap < need) {
        ncap *= 2;
    }
    nb = realloc(*buf, ncap);
    if (nb == NULL) {
        return -ENOMEM;
    }
    *buf = nb;
    *cap = ncap;
    return 0;
}

/* Appends at..len to a NUL-terminated growing string (*s, *slen). */
static int str_append(char **s, size_t *slen, const char *at, size_t len)
{
    char *ns = realloc(*s, *slen + len + 1);

    if (ns == NULL) {
        return -ENOMEM;
    }
    memcpy(ns + *slen, at, len);
    *slen += len;
    ns[*slen] = '\0';
    *s = ns;
    return 0;
}

void http_req_free(struct http_request *r)
{
    if (r == NULL) {
        return;
    }
    for (size_t i = 0; i < r->nhdrs; i++) {
        free(r->hdrs[i].name);
        free(r->hdrs[i].value);
    }
    free(r->hdrs);
    free(r->url);
    free(r->pathbuf);
    free(r->body);
    free(r);
}

/* ---- parser callbacks ---- */

static int count_header_bytes(struct conn *c, size_t len)
{
    c->header_bytes += len;
    if (c->header_bytes > c->srv->cfg.max_header_bytes) {
        c->err_status = 431;
        return -1;
    }
    return 0;
}

static int on_message_begin(http_parser *p)
{
    struct conn *c = p->data;

    http_req_free(c->cur);
    c->cur = calloc(1, sizeof(*c->cur));
    if (c->cur == NULL) {
        c->err_status = 503;
        return -1;
    }
    c->cur->peer_loopback = c->peer_loopback;
    c->header_bytes = 0;
    c->last_was_value = 0;
    c->in_message = 1;
    http_conn_arm_timer(c, c->srv->cfg.read_timeout_ms);
    return 0;
}

static int on_url(http_parser *p, const char *at, size_t len)
{
    struct conn *c = p->data;

    if (count_header_bytes(c, len) < 0) {
        return -1;
    }
    if (str_append(&c->cur->url, &c->cur->url_len, at, len) < 0) {
        c->err_status = 503;
        return -1;
    }
    return 0;
}

static int on_header_field(http_parser *p, const char *at, size_t len)
{
    struct conn *c = p->data;
    struct http_request *r = c->cur;

    if (count_header_bytes(c, len + 4) < 0) {
        return -1;
    }
    if (r->nhdrs == 0 || c->last_was_value) {
        if (r->nhdrs == r->caphdrs) {
            size_t ncap = r->caphdrs ? r->caphdrs * 2 : 16;
            struct http_hdr *nh = realloc(r->hdrs, ncap * sizeof(*nh));
            if (nh == NULL) {
                c->err_status = 503;
                return -1;
            }
            r->hdrs = nh;
            r->caphdrs = ncap;
        }
        memset(&r->hdrs[r->nhdrs], 0, sizeof(r->hdrs[0]));
        r->nhdrs++;
        c->last_was_value = 0;
    }
    if (str_append(&r->hdrs[r->nhdrs - 1].name, &r->hdrs[r->nhdrs - 1].nlen, at,
                   len) < 0) {
        c->err_status = 503;
        return -1;
    }
    return 0;
}

static int on_header_value(http_parser *p, const char *at, size_t len)
{
    struct conn *c = p->data;
    struct http_request *r = c->cur;
    struct http_hdr *h;

    if (count_header_bytes(c, len) < 0) {
        return -1;
    }
    if (r->nhdrs == 0) {
        c->err_status = 400;
        return -1;
    }
    h = &r->hdrs[r->nhdrs - 1];
    c->last_was_value = 1;
    if (str_append(&h->value, &h->vlen, at, len) < 0) {
        c->err_status = 503;
        return -1;
    }
    return 0;
}

static int on_headers_complete(http_parser *p)
{
    struct conn *c = p->data;
    struct http_request *r = c->cur;
    const char *expect;
    size_t qlen;
    char *q;

    for (size_t i = 0; i < r->nhdrs; i++) {
        if (r->hdrs[i].value == NULL) {
            r->hdrs[i].value = strdup("");
            if (r->hdrs[i].value == NULL) {
                c->err_status = 503;
                return -1;
            }
        }
    }
    snprintf(r->method, sizeof(r->method), "%s",
             http_method_str((enum http_method)p->method));
    if (r->url == NULL) {
        c->err_status = 400;
        return -1;
    }
    r->pathbuf = malloc(r->url_len + 2);
    if (r->pathbuf == NULL) {
        c->err_status = 503;
        return -1;
    }
    memcpy(r->pathbuf, r->url, r->url_len + 1);
    r->pathbuf[r->url_len + 1] = '\0';
    q = strchr(r->pathbuf, '?');
    r->path = r->pathbuf;
    if (q != NULL) {
        *q = '\0';
        r->query = q + 1;
    } else {
        qlen = strlen(r->pathbuf);
        r->query = r->pathbuf + qlen + 1; /* the extra NUL: "" */
    }
    {
        char *hash = strchr(r->query, '#');
        if (hash != NULL) {
            *hash = '\0';
        }
    }
    if ((p->flags & F_CONTENTLENGTH) && p->content_length != ULLONG_MAX &&
        p->content_length > c->srv->cfg.max_body_bytes) {
        r->too_large = 1;
    }
    expect = http_req_header(r, "Expect");
    if (expect != NULL && strcasecmp(expect, "100-continue") == 0 &&
        p->http_major == 1 && p->http_minor >= 1) {
        if (r->too_large) {
            /* the client waits: answer now, it will not send the body */
            http_conn_send_error(c, 413, "request body too large");
            c->err_status = -1; /* already answered */
            return -1;
        }
        static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
        if (http_conn_write_raw(c, cont, sizeof(cont) - 1, 0) < 0) {
            c->err_status = -1;
            return -1;
        }
    }
    if (r->too_large) {
        char msg[96];
        snprintf(msg, sizeof(msg), "request body exceeds %zu bytes",
                 c->srv->cfg.max_body_bytes);
        http_conn_send_error(c, 413, msg);
        c->draining = 1;
    }
    return 0;
}

static int on_body(http_parser *p, const char *at, size_t len)
{
    struct conn *c = p->data;
    struct http_request *r = c->cur;

    if (c->draining) {
        return 0;
    }
    if (r->body_len + len > c->srv->cfg.max_body_bytes) {
        char msg[96];
        snprintf(msg, sizeof(msg), "request body exceeds %zu bytes",
                 c->srv->cfg.max_body_bytes);
        http_conn_send_error(c, 413, msg);
        c->draining = 1;
        free(r->body);
        r->body = NULL;
        r->body_len = r->body_cap = 0;
        return 0;
    }
    if (http_grow(&r->body, &r->body_cap, r->body_len + len + 1) < 0) {
        c->err_status = 503;
        return -1;
    }
    memcpy(r->body + r->body_len, at, len);
    r->body_len += len;
    r->body[r->body_len] = '\0';
    return 0;
}

static int on_message_complete(http_parser *p)
{
    struct conn *c = p->data;

    c->in_message = 0;
    uv_timer_stop(&c->timer);
    if (c->draining) {
        /* the 413 is queued; close once it is written */
        http_req_free(c->cur);
        c->cur = NULL;
        http_conn_graceful_close(c);
        http_parser_pause(p, 1);
        return 0;
    }
    c->cur->keep_alive = http_should_keep_alive(p);
    if (p->upgrade) {
        c->cur->keep_alive = 0;
    }
    c->ready = c->cur;
    c->cur = NULL;
    http_parser_pause(p, 1);
    return 0;
}

const http_parser_settings http_parse_settings = {
    .on_message_begin = on_message_begin,
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

/* ---- request accessors ---- */

const char *http_req_method(const struct http_request *r)
{
    return r->method;
}

const char *http_req_path(const struct http_request *r)
{
    return r->path;
}

const char *http_req_query(const struct http_request *r)
{
    return r->query;
}

const char *http_req_header(const struct http_request *r, const char *name)
{
    for (size_t i = 0; i < r->nhdrs; i++) {
        if (r->hdrs[i].name != NULL && strcasecmp(r->hdrs[i].name, name) == 0) {
            return r->hdrs[i].value != NULL ? r->hdrs[i].value : "";
        }
    }
    return NULL;
}

const char *http_req_bearer(const struct http_request *r)
{
    const char *h = http_req_header(r, "Authorization");

    if (h == NULL || strncasecmp(h, "Bearer ", 7) != 0) {
        return NULL;
    }
    h += 7;
    while (*h == ' ') {
        h++;
    }
    return h;
}

const char *http_req_body(const struct http_request *r, size_t *len)
{
    *len = r->body_len;
    return r->body != NULL ? r->body : "";
}

int http_req_peer_is_loopback(const struct http_request *r)
{
    return r->peer_loopback;
}

int http_req_aborted(const struct http_request *r)
{
    return r->conn == NULL;
}

void http_req_on_abort(struct http_request *r, http_abort_fn cb, void *data)
{
    r->abort_cb = cb;
    r->abort_data = data;
}

void http_req_set_data(struct http_request *r, void *data)
{
    r->user = data;
}

void *http_req_data(const struct http_request *r)
{
    return r->user;
}
/* ---- URL helpers ---- */

static int hexval(int ch)
{
    if (ch >= '0' && ch <= '9') {
        return ch - '0';
    }
    ch = tolower(ch);
    if (ch >= 'a' && ch <= 'f') {
        return ch - 'a' + 10;
    }
    return -1;
}

int http_url_decode(const char *src, size_t len, char *out, size_t outlen,
                    int plus_is_space)
{
    size_t o = 0;

    for (size_t i = 0; i < len; i++) {
        char ch = src[i];
        if (ch == '%') {
            int hi;
            int lo;
            if (i + 2 >= len) {
                return -EINVAL;
            }
            hi = hexval((unsigned char)src[i + 1]);
            lo = hexval((unsigned char)src[i + 2]);
            if (hi < 0 || lo < 0) {
                return -EINVAL;
            }
            ch = (char)(hi * 16 + lo);
            i += 2;
        } else if (ch == '+' && plus_is_space) {
            ch = ' ';
        }
        if (o + 1 >= outlen) {
            return -EMSGSIZE;
        }
        out[o++] = ch;
    }
    if (outlen == 0) {
        return -EMSGSIZE;
    }
    out[o] = '\0';
    return (int)o;
}

int http_query_param(const char *query, const char *name, char *out,
                     size_t outlen)
{
    size_t nlen = strlen(name);
    const char *p = query;

    while (p != NULL && *p != '\0') {
        const char *amp = strchr(p, '&');
        size_t plen = amp != NULL ? (size_t)(amp - p) : strlen(p);
        const char *eq = memchr(p, '=', plen);
        size_t klen = eq != NULL ? (size_t)(eq - p) : plen;
        char key[256];
        int kl = klen < sizeof(key)
                     ? http_url_decode(p, klen, key, sizeof(key), 1)
                     : -EMSGSIZE;

        if (kl >= 0 && (size_t)kl == nlen && memcmp(key, name, nlen) == 0) {
            if (eq == NULL) {
                if (outlen == 0) {
                    return -EMSGSIZE;
                }
                out[0] = '\0';
                return 0;
            }
            return http_url_decode(eq + 1, plen - klen - 1, out, outlen, 1);
        }
        p = amp != NULL ? amp + 1 : NULL;
    }
    return -ENOENT;
}
