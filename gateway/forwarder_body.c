/*
 * forwarder_body.c - the forwarder's request bodies: the local check of a
 * json record (forwarder_json_check: a record ADX would drop without an
 * error is dead-lettered instead, INV-6) and the body of one batch, one
 * record a line, with the route's Kafka metadata fields injected
 * (forwarder_build_body). No state: any thread (the body builder runs on
 * libuv's thread pool).
 */
#include "base/err.h"
#include "base/sbuf.h"
#include "base/utf8.h"
#include "gateway/config.h"
#include "gateway/forwarder.h"
#include "storage/journal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#define FW_JSON_MAX_DEPTH 256

/* ------------------------------------------------------ JSON checking */

/* Bytes a JSON string holds as they are: printable ASCII but '"' and '\\'
 * (js_skip_plain skips runs of them). */
static const unsigned char js_plain[256] = {
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
};

/*
 * The first byte in p..end that is not plain (js_plain), or end. With
 * SSE2 (every x86-64) 16 bytes are tested at once: a signed byte < 0x20 is
 * a control byte or a byte of a UTF-8 sequence (>= 0x80).
 */
static const unsigned char *js_skip_plain(const unsigned char *p,
                                          const unsigned char *end)
{
#if defined(__SSE2__)
    const __m128i quote = _mm_set1_epi8('"');
    const __m128i bslash = _mm_set1_epi8('\\');
    const __m128i space = _mm_set1_epi8(0x20);

    while (end - p >= 16) {
        __m128i v = _mm_loadu_si128((const __m128i *)(const void *)p);
        __m128i stop = _mm_or_si128(
            _mm_or_si128(_mm_cmpeq_epi8(v, quote), _mm_cmpeq_epi8(v, bslash)),
            _mm_cmplt_epi8(v, space));
        unsigned mask = (unsigned)_mm_movemask_epi8(stop);

        if (mask != 0) {
            return p + __builtin_ctz(mask);
        }
        p += 16;
    }
#endif
    while (p < end && js_plain[*p]) {
        p++;
    }
    return p;
}

static int js_hex4(const unsigned char *p, const unsigned char *end)
{
    if (end - p < 4) {
        return -1;
    }
    for (int k = 0; k < 4; k++) {
        unsigned char h = p[k];

        if (!((h >= '0' && h <= '9') || (h >= 'a' && h <= 'f') ||
              (h >= 'A' && h <= 'F'))) {
            return -1;
        }
    }
    return 0;
}

/*
 * A string from its opening quote at p: the byte after its closing quote,
 * or NULL with *what set and *at on the offending byte (the byte after the
 * backslash for an escape, the end when unterminated).
 */
static const unsigned char *js_string(const unsigned char *p,
                                      const unsigned char *end,
                                      const unsigned char **at,
                                      const char **what)
{
    for (p++;;) {
        unsigned char c;

        p = js_skip_plain(p, end);
        if (p >= end) {
            break;
        }
        c = *p;
        if (c == '"') {
            return p + 1;
        }
        if (c < 0x20) {
            *what = "control character in string";
            goto bad;
        }
        if (c >= 0x80) {
            /* RFC 8259: UTF-8. ADX ignores malformed json records without
             * an error, so one must be dead-lettered here, not sent */
            size_t n = utf8_len_n(p, (size_t)(end - p));

            if (n == 0) {
                *what = "invalid UTF-8 in string";
                goto bad;
            }
            p += n;
            continue;
        }
        /* a backslash */
        if (++p >= end) {
            break;
        }
        c = *p;
        if (c == 'u') {
            if (js_hex4(p + 1, end) < 0) {
                *what = "bad \\u escape";
                goto bad;
            }
            p += 5;
            continue;
        }
        if (strchr("\"\\/bfnrt", c) == NULL || c == '\0') {
            *what = "bad escape";
            goto bad;
        }
        p++;
    }
    p = end;
    *what = "unterminated string";
bad:
    *at = p;
    return NULL;
}

static const unsigned char *js_digits(const unsigned char *p,
                                      const unsigned char *end)
{
    while (p < end && *p >= '0' && *p <= '9') {
        p++;
    }
    return p;
}

/* A number from p: the byte after it, or NULL with *at on the byte where
 * a digit was missing. */
static const unsigned char *js_number(const unsigned char *p,
                                      const unsigned char *end,
                                      const unsigned char **at)
{
    const unsigned char *q;

    if (*p == '-') {
        p++;
    }
    if (p < end && *p == '0') {
        p++;
    } else if ((q = js_digits(p, end)) == p) {
        goto bad;
    } else {
        p = q;
    }
    if (p < end && *p == '.') {
        p++;
        if ((q = js_digits(p, end)) == p) {
            goto bad;
        }
        p = q;
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < end && (*p == '+' || *p == '-')) {
            p++;
        }
        if ((q = js_digits(p, end)) == p) {
            goto bad;
        }
        p = q;
    }
    return p;
bad:
    *at = p;
    return NULL;
}

/*
 * forwarder_json_check; *newline = 1 if the text has a raw CR or LF (only
 * possible as whitespace between tokens in valid JSON). One loop over the
 * tokens with the open containers on a stack of their kinds, not one call
 * per value: the cursor stays in a register (a byte read through an
 * unsigned char pointer may alias a struct field holding it).
 */
static int json_check(const char *s, size_t len, int *newline, char *why,
                      size_t whylen)
{
    const unsigned char *start = (const unsigned char *)s;
    const unsigned char *p = start, *end = start + len, *q, *at = NULL;
    unsigned char open[FW_JSON_MAX_DEPTH]; /* '{' or '[' */
    const char *what = NULL;
    int depth = 0, nl = 0;

#define JS_WS()                                                                \
    for (; p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r');   \
         p++) {                                                                \
        nl |= *p == '\n' || *p == '\r';                                        \
    }

value:
    JS_WS();
    if (p >= end) {
        what = "unexpected end";
        goto bad;
    }
    switch (*p) {
    case '{':
    case '[':
        if (depth >= FW_JSON_MAX_DEPTH) {
            what = "nested too deep";
            goto bad;
        }
        open[depth++] = *p++;
        JS_WS();
        if (p < end && *p == (open[depth - 1] == '{' ? '}' : ']')) {
            p++;
            depth--;
            goto next;
        }
        if (open[depth - 1] == '{') {
            goto member;
        }
        goto value;
    case '"':
        q = js_string(p, end, &at, &what);
        break;
    case 't':
    case 'f':
    case 'n': {
        const char *lit = *p == 't' ? "true" : *p == 'f' ? "false" : "null";
        size_t n = strlen(lit);

        if ((size_t)(end - p) < n || memcmp(p, lit, n) != 0) {
            what = "unexpected character";
            goto bad;
        }
        q = p + n;
        break;
    }
    default:
        if (*p != '-' && (*p < '0' || *p > '9')) {
            what = "unexpected character";
            goto bad;
        }
        q = js_number(p, end, &at);
        if (q == NULL) {
            what = "bad number";
        }
        break;
    }
    if (q == NULL) {
        p = at;
        goto bad;
    }
    p = q;
next: /* after a value */
    JS_WS();
    if (depth == 0) {
        if (p == end) {
            *newline = nl;
            return 0;
        }
        what = "trailing data";
        goto bad;
    }
    if (p < end && *p == ',') {
        p++;
        if (open[depth - 1] == '[') {
            goto value;
        }
        goto member;
    }
    if (p < end && *p == (open[depth - 1] == '{' ? '}' : ']')) {
        p++;
        depth--;
        goto next;
    }
    what =
        open[depth - 1] == '{' ? "expected ',' or '}'" : "expected ',' or ']'";
    goto bad;
member:
    JS_WS();
    if (p >= end || *p != '"') {
        what = "expected a member name";
        goto bad;
    }
    q = js_string(p, end, &at, &what);
    if (q == NULL) {
        p = at;
        goto bad;
    }
    p = q;
    JS_WS();
    if (p >= end || *p != ':') {
        what = "expected ':'";
        goto bad;
    }
    p++;
    goto value;
#undef JS_WS
bad:
    set_err(why, whylen, "%s at byte %zu", what, (size_t)(p - start));
    return -EINVAL;
}

int forwarder_json_check(const char *s, size_t len, char *why, size_t whylen)
{
    int newline;

    return json_check(s, len, &newline, why, whylen);
}

/* ------------------------------------------------------- body building */

/* Appends bytes as a JSON string: escapes quotes, backslashes and control
 * characters; bytes that are not valid UTF-8 become \u00XX (Latin-1). */
static void sb_json_str(struct sbuf *b, const void *data, size_t n)
{
    const unsigned char *s = data;
    size_t i = 0;

    sbuf_add(b, "\"", 1);
    while (i < n) {
        unsigned char c = s[i];
        size_t seq = 0;

        if (c < 0x80) {
            if (c == '"' || c == '\\') {
                char esc[2] = {'\\', (char)c};

                sbuf_add(b, esc, 2);
            } else if (c < 0x20 || c == 0x7f) {
                sbuf_printf(b, "\\u%04x", c);
            } else {
                sbuf_add(b, &s[i], 1);
            }
            i++;
            continue;
        }
        if (c >= 0xc2 && c <= 0xdf) {
            seq = 2;
        } else if (c >= 0xe0 && c <= 0xef) {
            seq = 3;
        } else if (c >= 0xf0 && c <= 0xf4) {
            seq = 4;
        }
        if (seq > 0 && i + seq <= n) {
            size_t k;

            for (k = 1; k < seq; k++) {
                if ((s[i + k] & 0xc0) != 0x80) {
                    break;
                }
            }
            if (k == seq) {
                sbuf_add(b, &s[i], seq);
                i += seq;
                continue;
            }
        }
        sbuf_printf(b, "\\u%04x", c);
        i++;
    }
    sbuf_add(b, "\"", 1);
}

static void sb_field(struct sbuf *b, int *first, const char *name)
{
    if (!*first) {
        sbuf_add(b, ",", 1);
    }
    *first = 0;
    sb_json_str(b, name, strlen(name));
    sbuf_add(b, ":", 1);
}

static void sb_iso_ms(struct sbuf *b, int64_t ms)
{
    time_t secs = (time_t)(ms >= 0 ? ms / 1000 : (ms - 999) / 1000);
    int frac = (int)(ms - (int64_t)secs * 1000);
    struct tm tm;
    char buf[40];

    gmtime_r(&secs, &tm);
    strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S", &tm);
    sbuf_printf(b, "\"%s.%03dZ\"", buf, frac);
}

/* Kafka headers as intake stores them (intake.h: u16 BE name length, name,
 * u32 BE value length or 0xffffffff for null, value) as a JSON object. */
static void sb_headers(struct sbuf *b, const unsigned char *h, size_t len)
{
    size_t pos = 0;
    int first = 1;

    sbuf_add(b, "{", 1);
    while (pos + 2 <= len) {
        size_t nl = (size_t)h[pos] << 8 | h[pos + 1];
        uint32_t vl;

        pos += 2;
        if (pos + nl + 4 > len) {
            break;
        }
        if (!first) {
            sbuf_add(b, ",", 1);
        }
        first = 0;
        sb_json_str(b, h + pos, nl);
        sbuf_add(b, ":", 1);
        pos += nl;
        vl = (uint32_t)h[pos] << 24 | (uint32_t)h[pos + 1] << 16 |
             (uint32_t)h[pos + 2] << 8 | h[pos + 3];
        pos += 4;
        if (vl == 0xffffffffu) {
            sbuf_add(b, "null", 4);
            continue;
        }
        if (pos + vl > len) {
            sbuf_add(b, "null", 4);
            break;
        }
        sb_json_str(b, h + pos, vl);
        pos += vl;
    }
    sbuf_add(b, "}", 1);
}

static int route_is_json(const struct config_route *r)
{
    return strcmp(r->format, "json") == 0 ||
           strcmp(r->format, "multijson") == 0;
}

static int route_has_meta(const struct config_route *r)
{
    const struct config_meta *m = &r->meta;

    return m->topic || m->partition || m->offset || m->timestamp || m->key ||
           m->headers || m->batch_id;
}

/* The metadata members for one event, without braces. */
static void sb_meta(struct sbuf *b, const struct config_route *r,
                    const char *batch_id, const struct journal_event *ev)
{
    const struct config_meta *m = &r->meta;
    int first = 1;

    if (m->topic) {
        sb_field(b, &first, m->topic);
        sb_json_str(b, ev->topic, strlen(ev->topic));
    }
    if (m->partition) {
        sb_field(b, &first, m->partition);
        sbuf_printf(b, "%d", (int)ev->partition);
    }
    if (m->offset) {
        sb_field(b, &first, m->offset);
        sbuf_printf(b, "%lld", (long long)ev->offset);
    }
    if (m->timestamp) {
        sb_field(b, &first, m->timestamp);
        sb_iso_ms(b, ev->timestamp_ms);
    }
    if (m->key) {
        sb_field(b, &first, m->key);
        if (ev->key == NULL) {
            sbuf_add(b, "null", 4);
        } else {
            sb_json_str(b, ev->key, ev->key_len);
        }
    }
    if (m->headers) {
        sb_field(b, &first, m->headers);
        sb_headers(b, ev->headers, ev->headers_len);
    }
    if (m->batch_id) {
        sb_field(b, &first, m->batch_id);
        sb_json_str(b, batch_id, strlen(batch_id));
    }
}

/* Copies a valid JSON text turning CR/LF (whitespace, since raw newlines
 * are invalid inside strings) into spaces: one record stays one line.
 * newline = 0: the check saw none, a plain copy. */
static void sb_json_oneline(struct sbuf *b, const char *s, size_t n,
                            int newline)
{
    size_t start = b->len;

    sbuf_add(b, s, n);
    if (b->err || !newline) {
        return;
    }
    for (size_t i = start; i < b->len; i++) {
        if (b->p[i] == '\n' || b->p[i] == '\r') {
            b->p[i] = ' ';
        }
    }
}

int forwarder_build_body(const struct config_route *r, const char *batch_id,
                         const struct journal_event *events, size_t n,
                         char **body, size_t *len, struct forwarder_bad **bad,
                         size_t *nbad)
{
    struct sbuf b = {0};
    struct forwarder_bad *bl = NULL;
    size_t nb = 0, capb = 0;
    int json = route_is_json(r);
    int meta = json && route_has_meta(r);
    size_t total = 0;

    *body = NULL;
    *len = 0;
    *bad = NULL;
    *nbad = 0;
    for (size_t i = 0; i < n; i++) {
        total += events[i].value_len + 1;
    }
    sbuf_reserve(&b, total + (meta ? n * 160 : 0));
    for (size_t i = 0; i < n && !b.err; i++) {
        const struct journal_event *ev = &events[i];
        const char *v = ev->value ? ev->value : "";
        size_t vl = ev->value_len;
        char why[128];
        int newline = 1;

        if (json) {
            const char *reject = NULL;

            if (json_check(v, vl, &newline, why, sizeof(why)) < 0) {
                reject = "record is not valid JSON";
            } else if (meta) {
                size_t k = 0;

                while (k < vl && (v[k] == ' ' || v[k] == '\t' || v[k] == '\n' ||
                                  v[k] == '\r')) {
                    k++;
                }
                if (k >= vl || v[k] != '{') {
                    reject = "record is not a JSON object (needed for the "
                             "route's metadata fields)";
                    why[0] = '\0';
                } else {
                    size_t rest = k + 1;

                    while (rest < vl && (v[rest] == ' ' || v[rest] == '\t' ||
                                         v[rest] == '\n' || v[rest] == '\r')) {
                        rest++;
                    }
                    sbuf_add(&b, "{", 1);
                    sb_meta(&b, r, batch_id, ev);
                    if (rest < vl && v[rest] != '}') {
                        sbuf_add(&b, ",", 1);
                    }
                    sb_json_oneline(&b, v + rest, vl - rest, newline);
                    sbuf_add(&b, "\n", 1);
                    continue;
                }
            }
            if (reject != NULL) {
                if (nb == capb) {
                    size_t nc = capb ? capb * 2 : 4;
                    struct forwarder_bad *p = realloc(bl, nc * sizeof(*bl));

                    if (p == NULL) {
                        b.err = -ENOMEM;
                        break;
                    }
                    bl = p;
                    capb = nc;
                }
                bl[nb].index = i;
                snprintf(bl[nb].reason, sizeof(bl[nb].reason), "%s%s%s", reject,
                         why[0] ? ": " : "", why);
                nb++;
                continue;
            }
            sb_json_oneline(&b, v, vl, newline);
            sbuf_add(&b, "\n", 1);
        } else {
            sbuf_add(&b, v, vl);
            if (vl == 0 || v[vl - 1] != '\n') {
                sbuf_add(&b, "\n", 1);
            }
        }
    }
    if (b.err) {
        free(b.p);
        free(bl);
        return -ENOMEM;
    }
    if (b.p == NULL) {
        b.p = calloc(1, 1);
        if (b.p == NULL) {
            free(bl);
            return -ENOMEM;
        }
    }
    *body = b.p;
    *len = b.len;
    *bad = bl;
    *nbad = nb;
    return 0;
}
