/*
 * kql.c - the KQL subset of the ADX emulator: lexer, literal parsing and
 * formatting, SQLite helper functions, and a translator from one pipeline
 * to one SQLite SELECT.
 *
 * How a query runs: kql_translate() lexes the text, parses `Table | op |
 * op ...` stage by stage and turns every stage into a SELECT over the
 * previous one ("SELECT ... FROM (<previous>)"); SQLite flattens the nest.
 * While translating it keeps the current row schema (names and KQL types)
 * so that columns resolve as ADX resolves them (case-sensitive, SEM0100 on
 * a miss), expressions get their KQL type (int / int stays integer,
 * datetime - datetime is a timespan), and the result columns carry types.
 * The hidden "$IngestionTime" column travels along until an operator that
 * reshapes rows (project, summarize, ...) drops it; ingestion_time() after
 * that is null, as in ADX outside a table context.
 *
 * Values in SQL follow kusto.h's storage conventions: datetime and timespan
 * are INTEGER ticks (100 ns), bool is 0/1, dynamic is JSON text. The
 * functions that SQLite cannot express (has, bin, percentiles, string
 * conversions) are registered by kql_register() as kql_*.
 *
 * Owns nothing beyond each call; any thread may call it with its own
 * buffers and sqlite3 handle.
 */
#include "emulators/kql.h"

#include "base/sbuf.h"
#include "emulators/emu.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ */
/* Errors                                                               */

static int fail(struct kusto_error *err, int rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(struct kusto_error *err, int rc, const char *fmt, ...)
{
    va_list ap;

    if (err) {
        err->status = 400;
        err->permanent = 1;
        snprintf(err->code, sizeof(err->code), "General_BadRequest");
        va_start(ap, fmt);
        vsnprintf(err->message, sizeof(err->message), fmt, ap);
        va_end(ap);
    }
    return rc;
}

/* ------------------------------------------------------------------ */
/* Datetime and timespan literals                                       */

/* Reads exactly `digits` decimal digits at *p (bounded by end). */
static int read_digits(const char **p, const char *end, int digits,
                       int64_t *out)
{
    int64_t v = 0;
    int i;

    for (i = 0; i < digits; i++) {
        if (*p >= end || !isdigit((unsigned char)**p)) {
            return -EINVAL;
        }
        v = v * 10 + (**p - '0');
        (*p)++;
    }
    *out = v;
    return 0;
}

/* Fraction ".1234567..." after the dot: up to 7 digits count, more are
 * ignored (ADX keeps 100 ns precision). */
static int64_t read_fraction(const char **p, const char *end)
{
    int64_t v = 0;
    int n = 0;

    while (*p < end && isdigit((unsigned char)**p)) {
        if (n < 7) {
            v = v * 10 + (**p - '0');
            n++;
        }
        (*p)++;
    }
    while (n < 7) {
        v *= 10;
        n++;
    }
    return v;
}

int kql_parse_datetime(const char *s, size_t n, int64_t *ticks)
{
    const char *p = s, *end = s + n;
    int64_t y, mo, d, h = 0, mi = 0, sec = 0, frac = 0, off = 0;
    int64_t days;

    while (p < end && isspace((unsigned char)*p)) {
        p++;
    }
    while (end > p && isspace((unsigned char)end[-1])) {
        end--;
    }
    if (read_digits(&p, end, 4, &y) < 0 || p >= end || *p != '-') {
        return -EINVAL;
    }
    p++;
    if (read_digits(&p, end, 2, &mo) < 0 || p >= end || *p != '-') {
        return -EINVAL;
    }
    p++;
    if (read_digits(&p, end, 2, &d) < 0) {
        return -EINVAL;
    }
    if (mo < 1 || mo > 12 || d < 1 || d > 31) {
        return -EINVAL;
    }
    if (p < end && (*p == 'T' || *p == 't' || *p == ' ')) {
        p++;
        if (read_digits(&p, end, 2, &h) < 0 || p >= end || *p != ':') {
            return -EINVAL;
        }
        p++;
        if (read_digits(&p, end, 2, &mi) < 0) {
            return -EINVAL;
        }
        if (p < end && *p == ':') {
            p++;
            if (read_digits(&p, end, 2, &sec) < 0) {
                return -EINVAL;
            }
            if (p < end && *p == '.') {
                p++;
                frac = read_fraction(&p, end);
            }
        }
        if (h > 23 || mi > 59 || sec > 60) {
            return -EINVAL;
        }
    }
    if (p < end && (*p == 'Z' || *p == 'z')) {
        p++;
    } else if (p < end && (*p == '+' || *p == '-')) {
        int64_t oh, om;
        int sign = *p == '-' ? -1 : 1;

        p++;
        if (read_digits(&p, end, 2, &oh) < 0) {
            return -EINVAL;
        }
        if (p < end && *p == ':') {
            p++;
        }
        if (read_digits(&p, end, 2, &om) < 0) {
            return -EINVAL;
        }
        off = sign * (oh * 3600 + om * 60);
    }
    if (p != end) {
        return -EINVAL;
    }
    days = emu_days_from_civil(y, (unsigned)mo, (unsigned)d);
    *ticks =
        ((days * 86400 + h * 3600 + mi * 60 + sec) - off) * KQL_TICKS_PER_SEC +
        frac;
    return 0;
}

char *kql_format_datetime(int64_t ticks, char *buf, size_t len)
{
    int64_t secs, frac, days, rem, y;
    unsigned m, d;

    secs = ticks / KQL_TICKS_PER_SEC;
    frac = ticks % KQL_TICKS_PER_SEC;
    if (frac < 0) {
        frac += KQL_TICKS_PER_SEC;
        secs--;
    }
    days = secs / 86400;
    rem = secs % 86400;
    if (rem < 0) {
        rem += 86400;
        days--;
    }
    emu_civil_from_days(days, &y, &m, &d);
    snprintf(buf, len, "%04lld-%02u-%02uT%02d:%02d:%02d.%07lldZ", (long long)y,
             m, d, (int)(rem / 3600), (int)(rem / 60 % 60), (int)(rem % 60),
             (long long)frac);
    return buf;
}

char *kql_format_timespan(int64_t ticks, char *buf, size_t len)
{
    uint64_t t, days, rem, frac;
    const char *sign = "";
    char dpart[32] = "", fpart[16] = "";

    if (ticks < 0) {
        sign = "-";
        t = (uint64_t)0 - (uint64_t)ticks;
    } else {
        t = (uint64_t)ticks;
    }
    days = t / (uint64_t)KQL_TICKS_PER_DAY;
    rem = t % (uint64_t)KQL_TICKS_PER_DAY;
    frac = rem % (uint64_t)KQL_TICKS_PER_SEC;
    rem /= (uint64_t)KQL_TICKS_PER_SEC;
    if (days) {
        snprintf(dpart, sizeof(dpart), "%llu.", (unsigned long long)days);
    }
    if (frac) {
        snprintf(fpart, sizeof(fpart), ".%07llu", (unsigned long long)frac);
    }
    snprintf(buf, len, "%s%s%02u:%02u:%02u%s", sign, dpart,
             (unsigned)(rem / 3600), (unsigned)(rem / 60 % 60),
             (unsigned)(rem % 60), fpart);
    return buf;
}

struct ts_unit {
    const char *name;
    int64_t ticks;
};

static const struct ts_unit ts_units[] = {
    {"d", KQL_TICKS_PER_DAY},
    {"day", KQL_TICKS_PER_DAY},
    {"days", KQL_TICKS_PER_DAY},
    {"h", KQL_TICKS_PER_HOUR},
    {"hr", KQL_TICKS_PER_HOUR},
    {"hrs", KQL_TICKS_PER_HOUR},
    {"hour", KQL_TICKS_PER_HOUR},
    {"hours", KQL_TICKS_PER_HOUR},
    {"m", 60 * KQL_TICKS_PER_SEC},
    {"min", 60 * KQL_TICKS_PER_SEC},
    {"minute", 60 * KQL_TICKS_PER_SEC},
    {"minutes", 60 * KQL_TICKS_PER_SEC},
    {"s", KQL_TICKS_PER_SEC},
    {"sec", KQL_TICKS_PER_SEC},
    {"second", KQL_TICKS_PER_SEC},
    {"seconds", KQL_TICKS_PER_SEC},
    {"ms", 10000},
    {"milli", 10000},
    {"millis", 10000},
    {"millisecond", 10000},
    {"milliseconds", 10000},
    {"micro", 10},
    {"micros", 10},
    {"microsecond", 10},
    {"microseconds", 10},
    {"tick", 1},
    {"ticks", 1},
};

/* The ticks of unit name [u, u+n), or 0 when it is not a unit. */
static int64_t ts_unit_ticks(const char *u, size_t n)
{
    size_t i;

    for (i = 0; i < sizeof(ts_units) / sizeof(ts_units[0]); i++) {
        if (strlen(ts_units[i].name) == n &&
            strncasecmp(ts_units[i].name, u, n) == 0) {
            return ts_units[i].ticks;
        }
    }
    return 0;
}

int kql_parse_timespan(const char *s, size_t n, int64_t *ticks)
{
    const char *p = s, *end = s + n, *num;
    int neg = 0;
    int64_t a = 0, h, mi, sec = 0, frac = 0, days = 0;
    char tmp[64];
    double v;
    int64_t unit;

    while (p < end && isspace((unsigned char)*p)) {
        p++;
    }
    while (end > p && isspace((unsigned char)end[-1])) {
        end--;
    }
    if (p < end && (*p == '-' || *p == '+')) {
        neg = *p == '-';
        p++;
    }
    if (p >= end || !(isdigit((unsigned char)*p) || *p == '.')) {
        return -EINVAL;
    }
    if (memchr(p, ':', (size_t)(end - p))) {
        /* [d.]hh:mm[:ss[.fffffff]] */
        const char *colon = memchr(p, ':', (size_t)(end - p));
        const char *dot = memchr(p, '.', (size_t)(colon - p));

        if (dot) {
            while (p < dot) {
                if (!isdigit((unsigned char)*p) || days > 100000000) {
                    return -EINVAL;
                }
                days = days * 10 + (*p - '0');
                p++;
            }
            p++;
        }
        h = 0;
        while (p < colon) {
            if (!isdigit((unsigned char)*p) || h > 1000000) {
                return -EINVAL;
            }
            h = h * 10 + (*p - '0');
            p++;
        }
        p++;
        if (read_digits(&p, end, 2, &mi) < 0) {
            return -EINVAL;
        }
        if (p < end && *p == ':') {
            p++;
            if (read_digits(&p, end, 2, &sec) < 0) {
                return -EINVAL;
            }
            if (p < end && *p == '.') {
                p++;
                frac = read_fraction(&p, end);
            }
        }
        if (p != end || mi > 59 || sec > 59) {
            return -EINVAL;
        }
        a = ((days * 24 + h) * 3600 + mi * 60 + sec) * KQL_TICKS_PER_SEC + frac;
        *ticks = neg ? -a : a;
        return 0;
    }
    /* number[unit] */
    num = p;
    while (p < end && (isdigit((unsigned char)*p) || *p == '.')) {
        p++;
    }
    if ((size_t)(p - num) >= sizeof(tmp)) {
        return -EINVAL;
    }
    memcpy(tmp, num, (size_t)(p - num));
    tmp[p - num] = '\0';
    {
        char *e;

        v = strtod(tmp, &e);
        if (*e != '\0') {
            return -EINVAL;
        }
    }
    if (p == end) {
        unit = KQL_TICKS_PER_DAY;
    } else {
        unit = ts_unit_ticks(p, (size_t)(end - p));
        if (unit == 0) {
            return -EINVAL;
        }
    }
    v *= (double)unit;
    if (!(v < 9.2e18)) {
        return -EINVAL;
    }
    a = (int64_t)llround(v);
    *ticks = neg ? -a : a;
    return 0;
}

/* ------------------------------------------------------------------ */
/* Lexer                                                                */

void kql_tokens_release(struct kql_tokens *t)
{
    size_t i;

    if (!t) {
        return;
    }
    for (i = 0; i < t->n; i++) {
        free(t->v[i].text);
    }
    free(t->v);
    t->v = NULL;
    t->n = 0;
}

struct lexer {
    const char *src;
    size_t len;
    size_t cap;
    struct kql_tokens *out;
    struct kusto_error *err;
};

static struct kql_token *lex_push(struct lexer *lx, enum kql_tok_kind kind,
                                  size_t pos)
{
    struct kql_token *t;

    if (lx->out->n >= KQL_MAX_TOKENS) {
        fail(lx->err, -EMSGSIZE, "query has more than %u tokens",
             KQL_MAX_TOKENS);
        return NULL;
    }
    if (lx->out->n == lx->cap) {
        size_t ncap = lx->cap ? lx->cap * 2 : 64;
        struct kql_token *nv = realloc(lx->out->v, ncap * sizeof(*nv));

        if (!nv) {
            fail(lx->err, -ENOMEM, "out of memory");
            return NULL;
        }
        lx->out->v = nv;
        lx->cap = ncap;
    }
    t = &lx->out->v[lx->out->n++];
    memset(t, 0, sizeof(*t));
    t->kind = kind;
    t->pos = pos;
    return t;
}

static char *dup_range(const char *s, size_t n)
{
    char *d = malloc(n + 1);

    if (d) {
        memcpy(d, s, n);
        d[n] = '\0';
    }
    return d;
}

/* Reads a quoted string at src[*i] (the quote char); decodes escapes unless
 * verbatim. Sets *i past the closing quote. */
static int lex_string(struct lexer *lx, size_t *i, int verbatim, char **out)
{
    char q = lx->src[*i];
    size_t j = *i + 1, start = *i, o = 0;
    char *buf = malloc(lx->len - *i + 1);

    if (!buf) {
        return fail(lx->err, -ENOMEM, "out of memory");
    }
    for (;;) {
        char c;

        if (j >= lx->len) {
            free(buf);
            return fail(lx->err, -EINVAL,
                        "Syntax error: SYN0002: unterminated string literal "
                        "at position %zu",
                        start);
        }
        c = lx->src[j];
        if (c == q) {
            if (verbatim && j + 1 < lx->len && lx->src[j + 1] == q) {
                buf[o++] = q;
                j += 2;
                continue;
            }
            j++;
            break;
        }
        if (c == '\\' && !verbatim && j + 1 < lx->len) {
            char e = lx->src[j + 1];

            switch (e) {
            case 'n':
                buf[o++] = '\n';
                break;
            case 't':
                buf[o++] = '\t';
                break;
            case 'r':
                buf[o++] = '\r';
                break;
            case '0':
                buf[o++] = '\0';
                break;
            default:
                buf[o++] = e;
                break;
            }
            j += 2;
            continue;
        }
        buf[o++] = c;
        j++;
    }
    buf[o] = '\0';
    *i = j;
    *out = buf;
    return 0;
}

static int is_ident_start(char c)
{
    return isalpha((unsigned char)c) || c == '_' || c == '$';
}

static int is_ident_char(char c)
{
    return isalnum((unsigned char)c) || c == '_' || c == '$';
}

/* datetime(...) / time(...) / timespan(...): the raw text up to ')'. */
static int lex_literal_call(struct lexer *lx, size_t *i, size_t pos,
                            int is_datetime)
{
    size_t j = *i, start;
    struct kql_token *t;
    int64_t ticks = 0;
    int is_null = 0;

    while (j < lx->len && isspace((unsigned char)lx->src[j])) {
        j++;
    }
    j++; /* '(' */
    start = j;
    while (j < lx->len && lx->src[j] != ')') {
        j++;
    }
    if (j >= lx->len) {
        return fail(lx->err, -EINVAL,
                    "Syntax error: SYN0002: missing ')' after the literal "
                    "at position %zu",
                    pos);
    }
    {
        const char *s = lx->src + start;
        size_t n = j - start;

        while (n && isspace((unsigned char)*s)) {
            s++;
            n--;
        }
        while (n && isspace((unsigned char)s[n - 1])) {
            n--;
        }
        if (n == 4 && strncmp(s, "null", 4) == 0) {
            is_null = 1;
        } else if ((is_datetime ? kql_parse_datetime(s, n, &ticks)
                                : kql_parse_timespan(s, n, &ticks)) < 0) {
            return fail(lx->err, -EINVAL,
                        "Syntax error: SYN0002: invalid %s literal '%.*s'",
                        is_datetime ? "datetime" : "timespan",
                        (int)(n > 100 ? 100 : n), s);
        }
    }
    t = lex_push(lx, is_datetime ? KQL_DATETIME : KQL_TIMESPAN, pos);
    if (!t) {
        return -ENOMEM;
    }
    t->i = ticks;
    t->is_null = is_null;
    *i = j + 1;
    return 0;
}

static const char *const puncts2[] = {
    "==", "!=", "<=", ">=", "=~", "!~", "..", "<>"};

static int lex_number(struct lexer *lx, size_t *i)
{
    const char *s = lx->src;
    size_t j = *i, start = *i, ustart;
    int is_real = 0;
    char tmp[64];
    struct kql_token *t;

    while (j < lx->len && isdigit((unsigned char)s[j])) {
        j++;
    }
    if (j + 1 < lx->len && s[j] == '.' && isdigit((unsigned char)s[j + 1])) {
        is_real = 1;
        j++;
        while (j < lx->len && isdigit((unsigned char)s[j])) {
            j++;
        }
    }
    if (j < lx->len && (s[j] == 'e' || s[j] == 'E')) {
        size_t k = j + 1;

        if (k < lx->len && (s[k] == '+' || s[k] == '-')) {
            k++;
        }
        if (k < lx->len && isdigit((unsigned char)s[k])) {
            is_real = 1;
            j = k;
            while (j < lx->len && isdigit((unsigned char)s[j])) {
                j++;
            }
        }
    }
    if (j - start >= sizeof(tmp)) {
        return fail(lx->err, -EINVAL,
                    "Syntax error: SYN0002: number too long at position %zu",
                    start);
    }
    memcpy(tmp, s + start, j - start);
    tmp[j - start] = '\0';
    ustart = j;
    while (j < lx->len && is_ident_char(s[j])) {
        j++;
    }
    if (j > ustart) {
        int64_t unit = ts_unit_ticks(s + ustart, j - ustart);
        double v;

        if (unit == 0) {
            return fail(lx->err, -EINVAL,
                        "Syntax error: SYN0002: Query could not be parsed at "
                        "'%.*s' (position %zu)",
                        (int)(j - start > 60 ? 60 : j - start), s + start,
                        start);
        }
        v = strtod(tmp, NULL) * (double)unit;
        if (!(v < 9.2e18)) {
            return fail(lx->err, -EINVAL,
                        "Syntax error: SYN0002: timespan out of range at "
                        "position %zu",
                        start);
        }
        t = lex_push(lx, KQL_TIMESPAN, start);
        if (!t) {
            return -ENOMEM;
        }
        t->i = (int64_t)llround(v);
    } else if (is_real) {
        t = lex_push(lx, KQL_REAL, start);
        if (!t) {
            return -ENOMEM;
        }
        t->r = strtod(tmp, NULL);
    } else {
        char *e;
        long long v;

        errno = 0;
        v = strtoll(tmp, &e, 10);
        if (errno == ERANGE) {
            t = lex_push(lx, KQL_REAL, start);
            if (!t) {
                return -ENOMEM;
            }
            t->r = strtod(tmp, NULL);
        } else {
            t = lex_push(lx, KQL_LONG, start);
            if (!t) {
                return -ENOMEM;
            }
            t->i = v;
        }
    }
    *i = j;
    return 0;
}

/* Lexes a string literal: '...', "...", @'...' (verbatim) at *ip; moves *ip
 * past it. 0 or < 0 with lx->err filled. */
static int lex_quoted(struct lexer *lx, size_t *ip)
{
    const char *src = lx->src;
    size_t i = *ip;
    char c = src[i];
    struct kql_token *t;
    int rc;
    size_t pos = i;
    int verbatim = c == '@';
    char *text = NULL;

    if (verbatim) {
        i++;
    }
    rc = lex_string(lx, &i, verbatim, &text);
    if (rc < 0) {
        return rc;
    }
    t = lex_push(lx, KQL_STRING, pos);
    if (!t) {
        free(text);
        return -ENOMEM;
    }
    t->text = text;
    *ip = i;
    return 0;
}

/* Lexes a quoted name: ['name'] or ["name"] at *ip; moves *ip past it. 0 or < 0
 * with lx->err filled. */
static int lex_bracket_ident(struct lexer *lx, size_t *ip)
{
    const char *src = lx->src;
    struct kusto_error *err = lx->err;
    size_t i = *ip;
    struct kql_token *t;
    int rc;

    /* ['name'] */
    size_t pos = i;
    char *text = NULL;

    i++;
    rc = lex_string(lx, &i, 0, &text);
    if (rc < 0) {
        return rc;
    }
    while (i < lx->len && isspace((unsigned char)src[i])) {
        i++;
    }
    if (i >= lx->len || src[i] != ']') {
        free(text);
        return fail(err, -EINVAL,
                    "Syntax error: SYN0002: expected ']' at "
                    "position %zu",
                    i);
    }
    i++;
    t = lex_push(lx, KQL_IDENT, pos);
    if (!t) {
        free(text);
        return -ENOMEM;
    }
    t->text = text;
    t->quoted = 1;
    *ip = i;
    return 0;
}

/* Lexes a name, or a datetime(...)/timespan(...) literal at *ip; moves *ip past
 * it. 0 or < 0 with lx->err filled. */
static int lex_ident(struct lexer *lx, size_t *ip)
{
    const char *src = lx->src;
    struct kusto_error *err = lx->err;
    size_t i = *ip;
    struct kql_token *t;
    int rc;
    size_t start = i, k;

    while (i < lx->len && is_ident_char(src[i])) {
        i++;
    }
    k = i;
    while (k < lx->len && isspace((unsigned char)src[k])) {
        k++;
    }
    if (k < lx->len && src[k] == '(') {
        size_t n = i - start;

        if ((n == 8 && strncmp(src + start, "datetime", 8) == 0) ||
            (n == 4 && strncmp(src + start, "date", 4) == 0)) {
            rc = lex_literal_call(lx, &i, start, 1);
            if (rc < 0) {
                return rc;
            }
            *ip = i;
            return 0;
        }
        if ((n == 4 && strncmp(src + start, "time", 4) == 0) ||
            (n == 8 && strncmp(src + start, "timespan", 8) == 0)) {
            rc = lex_literal_call(lx, &i, start, 0);
            if (rc < 0) {
                return rc;
            }
            *ip = i;
            return 0;
        }
    }
    t = lex_push(lx, KQL_IDENT, start);
    if (!t) {
        return -ENOMEM;
    }
    t->text = dup_range(src + start, i - start);
    if (!t->text) {
        return fail(err, -ENOMEM, "out of memory");
    }
    *ip = i;
    return 0;
}

/* Lexes an operator or punctuation (one or two characters, or !has style
 * negations) at *ip; moves *ip past it. 0 or < 0 with lx->err
 * filled. */
static int lex_punct(struct lexer *lx, size_t *ip)
{
    const char *src = lx->src;
    struct kusto_error *err = lx->err;
    size_t i = *ip;
    char c = src[i];
    struct kql_token *t;
    size_t pos = i, n = 1, k;

    for (k = 0; k < sizeof(puncts2) / sizeof(puncts2[0]); k++) {
        if (i + 1 < lx->len && src[i] == puncts2[k][0] &&
            src[i + 1] == puncts2[k][1]) {
            n = 2;
            break;
        }
    }
    if (n == 1 && c == '!' && i + 1 < lx->len &&
        isalpha((unsigned char)src[i + 1])) {
        /* !has, !contains, !in, !between ... */
        n = 1;
        while (i + n < lx->len && is_ident_char(src[i + n])) {
            n++;
        }
    } else if (n == 1 && !strchr("|(),=<>+-*/%.:;[]{}!", c)) {
        return fail(err, -EINVAL,
                    "Syntax error: SYN0002: unexpected character "
                    "'%c' at position %zu",
                    isprint((unsigned char)c) ? c : '?', pos);
    }
    t = lex_push(lx, KQL_PUNCT, pos);
    if (!t) {
        return -ENOMEM;
    }
    t->text = dup_range(src + pos, n);
    if (!t->text) {
        return fail(err, -ENOMEM, "out of memory");
    }
    i += n;
    *ip = i;
    return 0;
}

int kql_lex(const char *src, struct kql_tokens *out, struct kusto_error *err)
{
    struct lexer lx;
    size_t i = 0;
    int rc;

    memset(out, 0, sizeof(*out));
    lx.src = src;
    lx.len = strlen(src);
    lx.cap = 0;
    lx.out = out;
    lx.err = err;
    if (lx.len > KQL_MAX_TEXT) {
        return fail(err, -EMSGSIZE, "query text is longer than %u bytes",
                    KQL_MAX_TEXT);
    }
    while (i < lx.len) {
        char c = src[i];

        if (isspace((unsigned char)c)) {
            i++;
            continue;
        }
        if (c == '/' && i + 1 < lx.len && src[i + 1] == '/') {
            while (i < lx.len && src[i] != '\n') {
                i++;
            }
            continue;
        }
        if (c == '\'' || c == '"' ||
            (c == '@' && i + 1 < lx.len &&
             (src[i + 1] == '\'' || src[i + 1] == '"'))) {
            rc = lex_quoted(&lx, &i);
            if (rc < 0) {
                return rc;
            }
            continue;
        }
        if (c == '[' && i + 1 < lx.len &&
            (src[i + 1] == '\'' || src[i + 1] == '"')) {
            rc = lex_bracket_ident(&lx, &i);
            if (rc < 0) {
                return rc;
            }
            continue;
        }
        if (isdigit((unsigned char)c) ||
            (c == '.' && i + 1 < lx.len && isdigit((unsigned char)src[i + 1]) &&
             !(i > 0 && src[i - 1] == '.'))) {
            rc = lex_number(&lx, &i);
            if (rc < 0) {
                return rc;
            }
            continue;
        }
        if (is_ident_start(c)) {
            rc = lex_ident(&lx, &i);
            if (rc < 0) {
                return rc;
            }
            continue;
        }
        rc = lex_punct(&lx, &i);
        if (rc < 0) {
            return rc;
        }
    }
    if (!lex_push(&lx, KQL_EOF, lx.len)) {
        return -ENOMEM;
    }
    return 0;
}

char *kql_quote_ident(const char *name, char *buf, size_t len)
{
    size_t o = 0;

    if (len < 3) {
        return NULL;
    }
    buf[o++] = '"';
    for (; *name; name++) {
        if (o + 3 >= len) {
            return NULL;
        }
        if (*name == '"') {
            buf[o++] = '"';
        }
        buf[o++] = *name;
    }
    buf[o++] = '"';
    buf[o] = '\0';
    return buf;
}

/* ------------------------------------------------------------------ */
/* SQLite functions used by the translated SQL                          */

/* Case-insensitive search of needle in hay; `term` requires the match to
 * be a whole term (not preceded or followed by a letter or digit), as
 * KQL's `has` does. */
static int ci_find(const char *hay, size_t hn, const char *needle, size_t nn,
                   int term)
{
    size_t i;

    if (nn == 0) {
        return 1;
    }
    if (nn > hn) {
        return 0;
    }
    for (i = 0; i + nn <= hn; i++) {
        if (strncasecmp(hay + i, needle, nn) != 0) {
            continue;
        }
        if (!term) {
            return 1;
        }
        if ((i == 0 || !isalnum((unsigned char)hay[i - 1])) &&
            (i + nn == hn || !isalnum((unsigned char)hay[i + nn]))) {
            return 1;
        }
    }
    return 0;
}

/* kql_strop(op, hay, needle): op 0 contains, 1 has, 2 startswith,
 * 3 endswith, 4 contains_cs, 5 has_cs, 6 startswith_cs, 7 endswith_cs. */
static void fn_strop(sqlite3_context *ctx, int argc, sqlite3_value **argv)
{
    int op = sqlite3_value_int(argv[0]);
    const char *h = (const char *)sqlite3_value_text(argv[1]);
    const char *n = (const char *)sqlite3_value_text(argv[2]);
    size_t hn, nn;
    int cs = op >= 4, r = 0;

    (void)argc;
    if (!h) {
        h = "";
    }
    if (!n) {
        n = "";
    }
    hn = strlen(h);
    nn = strlen(n);
    switch (op % 4) {
    case 0:
        r = cs ? strstr(h, n) != NULL : ci_find(h, hn, n, nn, 0);
        break;
    case 1:
        if (cs) {
            const char *p = h;

            while ((p = strstr(p, n)) != NULL) {
                if ((p == h || !isalnum((unsigned char)p[-1])) &&
                    !isalnum((unsigned char)p[nn])) {
                    r = 1;
                    break;
                }
                p++;
                if (nn == 0) {
                    r = 1;
                    break;
                }
            }
        } else {
            r = ci_find(h, hn, n, nn, 1);
        }
        break;
    case 2:
        r = nn <= hn && (cs ? strncmp(h, n, nn) : strncasecmp(h, n, nn)) == 0;
        break;
    default:
        r = nn <= hn && (cs ? strncmp(h + hn - nn, n, nn)
                            : strncasecmp(h + hn - nn, n, nn)) == 0;
        break;
    }
    sqlite3_result_int(ctx, r);
}

/* kql_bin(x, size): floor(x / size) * size; integer in, integer out. */
static void fn_bin(sqlite3_context *ctx, int argc, sqlite3_value **argv)
{
    (void)argc;
    if (sqlite3_value_type(argv[0]) == SQLITE_NULL ||
        sqlite3_value_type(argv[1]) == SQLITE_NULL) {
        sqlite3_result_null(ctx);
        return;
    }
    if (sqlite3_value_type(argv[0]) == SQLITE_INTEGER &&
        sqlite3_value_type(argv[1]) == SQLITE_INTEGER) {
        int64_t x = sqlite3_value_int64(argv[0]);
        int64_t s = sqlite3_value_int64(argv[1]);
        int64_t q;

        if (s <= 0) {
            sqlite3_result_null(ctx);
            return;
        }
        q = x / s;
        if (x % s != 0 && x < 0) {
            q--;
        }
        sqlite3_result_int64(ctx, q * s);
    } else {
        double x = sqlite3_value_double(argv[0]);
        double s = sqlite3_value_double(argv[1]);

        if (!(s > 0)) {
            sqlite3_result_null(ctx);
            return;
        }
        sqlite3_result_double(ctx, floor(x / s) * s);
    }
}

static void format_real(double d, char *buf, size_t len)
{
    if (isnan(d)) {
        snprintf(buf, len, "NaN");
    } else if (isinf(d)) {
        snprintf(buf, len, d > 0 ? "Infinity" : "-Infinity");
    } else {
        snprintf(buf, len, "%.15g", d);
        if (strtod(buf, NULL) != d) {
            snprintf(buf, len, "%.17g", d);
        }
    }
}

/* kql_tostr(x, type): the KQL tostring() of a value of kusto_type type. */
static void fn_tostr(sqlite3_context *ctx, int argc, sqlite3_value **argv)
{
    enum kusto_type t = (enum kusto_type)sqlite3_value_int(argv[1]);
    char buf[64];

    (void)argc;
    if (sqlite3_value_type(argv[0]) == SQLITE_NULL) {
        sqlite3_result_text(ctx, "", 0, SQLITE_STATIC);
        return;
    }
    switch (t) {
    case KT_DATETIME: {
        char *dot;

        kql_format_datetime(sqlite3_value_int64(argv[0]), buf, sizeof(buf));
        dot = strstr(buf, ".0000000Z");
        if (dot) {
            memcpy(dot, "Z", 2);
        }
        break;
    }
    case KT_TIMESPAN:
        kql_format_timespan(sqlite3_value_int64(argv[0]), buf, sizeof(buf));
        break;
    case KT_BOOL:
        snprintf(buf, sizeof(buf), "%s",
                 sqlite3_value_int64(argv[0]) ? "true" : "false");
        break;
    case KT_REAL:
    case KT_DECIMAL:
        format_real(sqlite3_value_double(argv[0]), buf, sizeof(buf));
        break;
    case KT_INT:
    case KT_LONG:
        snprintf(buf, sizeof(buf), "%lld",
                 (long long)sqlite3_value_int64(argv[0]));
        break;
    default:
        sqlite3_result_value(ctx, argv[0]);
        return;
    }
    sqlite3_result_text(ctx, buf, -1, SQLITE_TRANSIENT);
}

/* Trims s into buf; returns the length or -1 when it does not fit. */
static int trimmed(const char *s, char *buf, size_t len)
{
    size_t n;

    while (isspace((unsigned char)*s)) {
        s++;
    }
    n = strlen(s);
    while (n && isspace((unsigned char)s[n - 1])) {
        n--;
    }
    if (n >= len) {
        return -1;
    }
    memcpy(buf, s, n);
    buf[n] = '\0';
    return (int)n;
}

/* kql_conv(x, kind): kind 0 tolong, 1 toint, 2 todouble, 3 todatetime,
 * 4 totimespan, 5 tobool; text is parsed, numbers converted, a value that
 * does not convert is null. */
static void fn_conv(sqlite3_context *ctx, int argc, sqlite3_value **argv)
{
    int kind = sqlite3_value_int(argv[1]);
    int vt = sqlite3_value_type(argv[0]);
    char buf[128];
    int n;

    (void)argc;
    if (vt == SQLITE_NULL) {
        sqlite3_result_null(ctx);
        return;
    }
    if (vt == SQLITE_INTEGER || vt == SQLITE_FLOAT) {
        double d = sqlite3_value_double(argv[0]);
        int64_t i = sqlite3_value_int64(argv[0]);

        switch (kind) {
        case 0:
        case 3:
        case 4:
            if (vt == SQLITE_FLOAT) {
                if (!(d < 9.2e18 && d > -9.2e18)) {
                    sqlite3_result_null(ctx);
                    return;
                }
                i = (int64_t)d;
            }
            sqlite3_result_int64(ctx, i);
            return;
        case 1:
            if (vt == SQLITE_FLOAT) {
                if (!(d < 2147483648.0 && d > -2147483649.0)) {
                    sqlite3_result_null(ctx);
                    return;
                }
                i = (int64_t)d;
            }
            sqlite3_result_int64(ctx, (int32_t)i);
            return;
        case 2:
            sqlite3_result_double(ctx, d);
            return;
        default:
            sqlite3_result_int(ctx, d != 0);
            return;
        }
    }
    n = trimmed((const char *)sqlite3_value_text(argv[0]), buf, sizeof(buf));
    if (n <= 0) {
        sqlite3_result_null(ctx);
        return;
    }
    switch (kind) {
    case 0:
    case 1: {
        char *e;
        long long v;
        double d;

        errno = 0;
        v = strtoll(buf, &e, 10);
        if (*e == '\0' && errno == 0) {
            if (kind == 1 && (v > INT32_MAX || v < INT32_MIN)) {
                sqlite3_result_null(ctx);
            } else {
                sqlite3_result_int64(ctx, v);
            }
            return;
        }
        d = strtod(buf, &e);
        if (*e == '\0' && d < 9.2e18 && d > -9.2e18 &&
            (kind == 0 || (d < 2147483648.0 && d > -2147483649.0))) {
            sqlite3_result_int64(ctx, (int64_t)d);
        } else {
            sqlite3_result_null(ctx);
        }
        return;
    }
    case 2: {
        char *e;
        double d = strtod(buf, &e);

        if (*e == '\0') {
            sqlite3_result_double(ctx, d);
        } else {
            sqlite3_result_null(ctx);
        }
        return;
    }
    case 3:
    case 4: {
        int64_t t;

        if ((kind == 3 ? kql_parse_datetime(buf, (size_t)n, &t)
                       : kql_parse_timespan(buf, (size_t)n, &t)) == 0) {
            sqlite3_result_int64(ctx, t);
        } else {
            sqlite3_result_null(ctx);
        }
        return;
    }
    default:
        if (strcasecmp(buf, "true") == 0 || strcmp(buf, "1") == 0) {
            sqlite3_result_int(ctx, 1);
        } else if (strcasecmp(buf, "false") == 0 || strcmp(buf, "0") == 0) {
            sqlite3_result_int(ctx, 0);
        } else {
            sqlite3_result_null(ctx);
        }
        return;
    }
}

/* percentile aggregate: keeps every value (as int64 while all values are
 * integers, so datetime ticks stay exact; as double once a real shows
 * up), sorts at the end, returns the nearest-rank value. */
struct pct_state {
    int64_t *iv;
    double *dv;
    size_t n, cap;
    double p;
    int real;
    int oom;
};

static int pct_grow(struct pct_state *s)
{
    size_t ncap = s->cap ? s->cap * 2 : 64;

    if (s->real) {
        double *nv = realloc(s->dv, ncap * sizeof(*nv));

        if (!nv) {
            return -ENOMEM;
        }
        s->dv = nv;
    } else {
        int64_t *nv = realloc(s->iv, ncap * sizeof(*nv));

        if (!nv) {
            return -ENOMEM;
        }
        s->iv = nv;
    }
    s->cap = ncap;
    return 0;
}

/* Switches the state to doubles. */
static int pct_to_real(struct pct_state *s)
{
    size_t i;

    s->dv = malloc((s->cap ? s->cap : 1) * sizeof(*s->dv));
    if (!s->dv) {
        return -ENOMEM;
    }
    for (i = 0; i < s->n; i++) {
        s->dv[i] = (double)s->iv[i];
    }
    free(s->iv);
    s->iv = NULL;
    s->real = 1;
    return 0;
}

static void pct_step(sqlite3_context *ctx, int argc, sqlite3_value **argv)
{
    struct pct_state *s = sqlite3_aggregate_context(ctx, sizeof(*s));
    int vt = sqlite3_value_type(argv[0]);

    (void)argc;
    if (!s) {
        sqlite3_result_error_nomem(ctx);
        return;
    }
    s->p = sqlite3_value_double(argv[1]);
    if (vt == SQLITE_NULL || s->oom) {
        return;
    }
    if (vt != SQLITE_INTEGER && !s->real && pct_to_real(s) < 0) {
        s->oom = 1;
        return;
    }
    if (s->n == s->cap && pct_grow(s) < 0) {
        s->oom = 1;
        return;
    }
    if (s->real) {
        s->dv[s->n++] = sqlite3_value_double(argv[0]);
    } else {
        s->iv[s->n++] = sqlite3_value_int64(argv[0]);
    }
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

    return x < y ? -1 : x > y;
}

static int cmp_dbl(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return x < y ? -1 : x > y;
}

static void pct_final(sqlite3_context *ctx)
{
    struct pct_state *s = sqlite3_aggregate_context(ctx, 0);
    size_t idx;
    double rank;

    if (!s || s->n == 0 || s->oom) {
        if (s && s->oom) {
            sqlite3_result_error_nomem(ctx);
        } else {
            sqlite3_result_null(ctx);
        }
        goto out;
    }
    rank = ceil(s->p / 100.0 * (double)s->n);
    if (rank < 1) {
        rank = 1;
    }
    idx = rank >= (double)s->n ? s->n - 1 : (size_t)rank - 1;
    if (s->real) {
        qsort(s->dv, s->n, sizeof(*s->dv), cmp_dbl);
        sqlite3_result_double(ctx, s->dv[idx]);
    } else {
        qsort(s->iv, s->n, sizeof(*s->iv), cmp_i64);
        sqlite3_result_int64(ctx, s->iv[idx]);
    }
out:
    if (s) {
        free(s->iv);
        free(s->dv);
    }
}

int kql_register(sqlite3 *db)
{
    int flags = SQLITE_UTF8 | SQLITE_DETERMINISTIC;

    if (sqlite3_create_function(db, "kql_strop", 3, flags, NULL, fn_strop, NULL,
                                NULL) != SQLITE_OK ||
        sqlite3_create_function(db, "kql_bin", 2, flags, NULL, fn_bin, NULL,
                                NULL) != SQLITE_OK ||
        sqlite3_create_function(db, "kql_tostr", 2, flags, NULL, fn_tostr, NULL,
                                NULL) != SQLITE_OK ||
        sqlite3_create_function(db, "kql_conv", 2, flags, NULL, fn_conv, NULL,
                                NULL) != SQLITE_OK ||
        sqlite3_create_function(db, "kql_percentile", 2, SQLITE_UTF8, NULL,
                                NULL, pct_step, pct_final) != SQLITE_OK) {
        return -EIO;
    }
    return 0;
}

/* ------------------------------------------------------------------ */
/* Translator: state and helpers                                        */

void kql_plan_release(struct kql_plan *plan)
{
    size_t i;

    if (!plan) {
        return;
    }
    for (i = 0; i < plan->ncols; i++) {
        free(plan->cols[i].name);
    }
    free(plan->cols);
    free(plan->sql);
    memset(plan, 0, sizeof(*plan));
}

/* A translated expression. */
struct ex {
    char *sql; /* owned */
    enum kusto_type type;
    char *name;     /* owned: the default column name it gives, or NULL */
    int is_num_lit; /* a numeric literal: value in num */
    double num;
};

/* The relation built so far: its SQL and its columns. */
struct rel {
    char *sql; /* owned */
    struct kusto_column *cols;
    size_t ncols;
    int has_itime; /* "$IngestionTime" is a column of sql too */
};

struct tr {
    struct kql_tokens tk;
    size_t i;
    const char *src;
    struct kusto_error *err;
    int64_t now;
    const char *op; /* the operator being translated, for messages */
    struct rel cur;
    int allow_agg;
    int naggs; /* aggregate calls seen in the current summarize item */
    int depth;
    int ncolumn; /* Column1, Column2, ... */
};

static void ex_free(struct ex *e)
{
    free(e->sql);
    free(e->name);
    memset(e, 0, sizeof(*e));
}

static char *xprintf(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));

/* printf into a new string (owned), or NULL when out of memory. */
static char *xprintf(const char *fmt, ...)
{
    va_list ap;
    char *s = NULL;
    int n;

    va_start(ap, fmt);
    n = vasprintf(&s, fmt, ap);
    va_end(ap);
    return n < 0 ? NULL : s;
}

static void sb_qident(struct sbuf *b, const char *name)
{
    const char *p;

    sbuf_add(b, "\"", 1);
    for (p = name; *p; p++) {
        sbuf_add(b, p, 1);
        if (*p == '"') {
            sbuf_add(b, "\"", 1);
        }
    }
    sbuf_add(b, "\"", 1);
}

static void sb_qstring(struct sbuf *b, const char *s)
{
    const char *p;

    sbuf_add(b, "'", 1);
    for (p = s; *p; p++) {
        sbuf_add(b, p, 1);
        if (*p == '\'') {
            sbuf_add(b, "'", 1);
        }
    }
    sbuf_add(b, "'", 1);
}

static int oom_err(struct tr *t)
{
    return fail(t->err, -ENOMEM, "out of memory");
}

static struct kql_token *tok(struct tr *t)
{
    return &t->tk.v[t->i];
}

static struct kql_token *tok_at(struct tr *t, long ahead)
{
    size_t j = (size_t)((long)t->i + ahead);

    return j < t->tk.n ? &t->tk.v[j] : &t->tk.v[t->tk.n - 1];
}

static int is_word(const struct kql_token *k, const char *w)
{
    return k->kind == KQL_IDENT && !k->quoted && strcmp(k->text, w) == 0;
}

static int is_punct(const struct kql_token *k, const char *p)
{
    return k->kind == KQL_PUNCT && strcmp(k->text, p) == 0;
}

static int take_word(struct tr *t, const char *w)
{
    if (is_word(tok(t), w)) {
        t->i++;
        return 1;
    }
    return 0;
}

static int take_punct(struct tr *t, const char *p)
{
    if (is_punct(tok(t), p)) {
        t->i++;
        return 1;
    }
    return 0;
}

/* A syntax error at the current token. */
static int syn(struct tr *t, const char *expected)
{
    const struct kql_token *k = tok(t);
    size_t n = 0;

    if (k->kind == KQL_EOF) {
        return fail(t->err, -EINVAL,
                    "Syntax error: SYN0002: Query could not be parsed at the "
                    "end of the query: expected %s",
                    expected);
    }
    while (t->src[k->pos + n] && n < 40 &&
           !isspace((unsigned char)t->src[k->pos + n])) {
        n++;
    }
    return fail(t->err, -EINVAL,
                "Syntax error: SYN0002: Query could not be parsed at '%.*s' "
                "(position %zu): expected %s",
                (int)(n ? n : 1), t->src + k->pos, k->pos, expected);
}

static int is_intt(enum kusto_type ty)
{
    return ty == KT_INT || ty == KT_LONG || ty == KT_BOOL;
}

static int is_numt(enum kusto_type ty)
{
    return is_intt(ty) || ty == KT_REAL || ty == KT_DECIMAL;
}

static int is_strt(enum kusto_type ty)
{
    return ty == KT_STRING || ty == KT_GUID || ty == KT_DYNAMIC;
}

static const struct kusto_column *find_col(const struct rel *r,
                                           const char *name)
{
    size_t i;

    for (i = 0; i < r->ncols; i++) {
        if (strcmp(r->cols[i].name, name) == 0) {
            return &r->cols[i];
        }
    }
    return NULL;
}

static void rel_release(struct rel *r)
{
    size_t i;

    for (i = 0; i < r->ncols; i++) {
        free(r->cols[i].name);
    }
    free(r->cols);
    free(r->sql);
    memset(r, 0, sizeof(*r));
}

/* Output columns of a stage being built: names owned, each with its SQL. */
struct outcols {
    struct kusto_column *cols;
    char **sql;
    size_t n, cap;
};

static void outcols_release(struct outcols *o)
{
    size_t i;

    for (i = 0; i < o->n; i++) {
        free(o->cols[i].name);
        free(o->sql[i]);
    }
    free(o->cols);
    free(o->sql);
    memset(o, 0, sizeof(*o));
}

static int outcols_find(const struct outcols *o, const char *name)
{
    size_t i;

    for (i = 0; i < o->n; i++) {
        if (strcmp(o->cols[i].name, name) == 0) {
            return (int)i;
        }
    }
    return -1;
}

/* Adds (or, with replace, overwrites in place) column name = sql. Takes
 * name and sql. */
static int outcols_put(struct tr *t, struct outcols *o, char *name, char *sql,
                       enum kusto_type type, int replace)
{
    int at;

    if (!name || !sql) {
        free(name);
        free(sql);
        return oom_err(t);
    }
    at = outcols_find(o, name);
    if (at >= 0 && replace) {
        free(o->cols[at].name);
        free(o->sql[at]);
        o->cols[at].name = name;
        o->cols[at].type = type;
        o->sql[at] = sql;
        return 0;
    }
    if (at >= 0) {
        /* ADX adds a numeric suffix to a repeated column name */
        int k;

        for (k = 1; k < 10000; k++) {
            char *alt = xprintf("%s%d", name, k);

            if (!alt) {
                free(name);
                free(sql);
                return oom_err(t);
            }
            if (outcols_find(o, alt) < 0) {
                free(name);
                name = alt;
                break;
            }
            free(alt);
        }
    }
    if (o->n == o->cap) {
        size_t ncap = o->cap ? o->cap * 2 : 16;
        struct kusto_column *nc = realloc(o->cols, ncap * sizeof(*nc));
        char **ns;

        if (!nc) {
            free(name);
            free(sql);
            return oom_err(t);
        }
        o->cols = nc;
        ns = realloc(o->sql, ncap * sizeof(*ns));
        if (!ns) {
            free(name);
            free(sql);
            return oom_err(t);
        }
        o->sql = ns;
        o->cap = ncap;
    }
    o->cols[o->n].name = name;
    o->cols[o->n].type = type;
    o->sql[o->n] = sql;
    o->n++;
    return 0;
}

/* Copies every column of the current relation into o as a plain
 * reference. */
static int outcols_from_cur(struct tr *t, struct outcols *o)
{
    size_t i;
    struct sbuf b;

    for (i = 0; i < t->cur.ncols; i++) {
        memset(&b, 0, sizeof(b));
        sb_qident(&b, t->cur.cols[i].name);
        if (b.err) {
            free(b.p);
            return oom_err(t);
        }
        if (outcols_put(t, o, strdup(t->cur.cols[i].name), b.p,
                        t->cur.cols[i].type, 0) < 0) {
            return -ENOMEM;
        }
    }
    return 0;
}

/*
 * Replaces the current relation with "SELECT <o> [, $IngestionTime] FROM
 * (<cur>) <tail>" (tail: WHERE/GROUP BY/... text or ""). keep_itime keeps
 * the hidden column when the current relation has it. Takes o's contents.
 */
static int push_stage(struct tr *t, struct outcols *o, int distinct,
                      int keep_itime, const char *tail)
{
    struct sbuf b;
    size_t i;
    int itime = keep_itime && t->cur.has_itime;

    memset(&b, 0, sizeof(b));
    sbuf_adds(&b, distinct ? "SELECT DISTINCT " : "SELECT ");
    for (i = 0; i < o->n; i++) {
        if (i) {
            sbuf_adds(&b, ", ");
        }
        sbuf_adds(&b, o->sql[i]);
        sbuf_adds(&b, " AS ");
        sb_qident(&b, o->cols[i].name);
    }
    if (itime) {
        sbuf_adds(&b, o->n ? ", \"$IngestionTime\"" : "\"$IngestionTime\"");
    }
    if (o->n == 0 && !itime) {
        sbuf_adds(&b, "NULL");
    }
    sbuf_adds(&b, " FROM (");
    sbuf_adds(&b, t->cur.sql);
    sbuf_adds(&b, ")");
    if (tail && *tail) {
        sbuf_adds(&b, " ");
        sbuf_adds(&b, tail);
    }
    if (b.err) {
        free(b.p);
        outcols_release(o);
        return oom_err(t);
    }
    rel_release(&t->cur);
    t->cur.sql = b.p;
    t->cur.cols = o->cols;
    t->cur.ncols = o->n;
    t->cur.has_itime = itime;
    for (i = 0; i < o->n; i++) {
        free(o->sql[i]);
    }
    free(o->sql);
    memset(o, 0, sizeof(*o));
    return 0;
}

/* Wraps the current relation: "SELECT * FROM (<cur>) <tail>". */
static int wrap_stage(struct tr *t, const char *tail)
{
    char *s = xprintf("SELECT * FROM (%s) %s", t->cur.sql, tail);

    if (!s) {
        return oom_err(t);
    }
    free(t->cur.sql);
    t->cur.sql = s;
    return 0;
}

static char *next_column_name(struct tr *t)
{
    return xprintf("Column%d", ++t->ncolumn);
}

/* ------------------------------------------------------------------ */
/* Expressions                                                          */

static int parse_expr(struct tr *t, struct ex *out);

static int mk(struct tr *t, struct ex *out, enum kusto_type type, char *sql)
{
    memset(out, 0, sizeof(*out));
    if (!sql) {
        return oom_err(t);
    }
    out->sql = sql;
    out->type = type;
    return 0;
}

static char *real_literal(double d)
{
    char buf[64];

    if (isnan(d) || isinf(d)) {
        return xprintf("%s", isnan(d) ? "NULL" : d > 0 ? "9e999" : "-9e999");
    }
    snprintf(buf, sizeof(buf), "%.17g", d);
    if (!strpbrk(buf, ".e")) {
        return xprintf("%s.0", buf);
    }
    return xprintf("%s", buf);
}

/* The SQL that turns e into its KQL string form (for has, strcat...). */
static char *as_text(const struct ex *e)
{
    if (is_strt(e->type)) {
        return xprintf("coalesce(%s, '')", e->sql);
    }
    return xprintf("kql_tostr(%s, %d)", e->sql, (int)e->type);
}

static int type_err(struct tr *t, const char *op, const struct ex *a,
                    const struct ex *b)
{
    if (!b) {
        return fail(t->err, -EINVAL,
                    "Semantic error: '%s' operator: operator '%s' cannot be "
                    "applied to type '%s'",
                    t->op, op, kusto_type_name(a->type));
    }
    return fail(t->err, -EINVAL,
                "Semantic error: '%s' operator: operator '%s' cannot be "
                "applied to types '%s' and '%s'",
                t->op, op, kusto_type_name(a->type), kusto_type_name(b->type));
}

/* a op b for + - * / %; takes a and b, result in out. */
static int arith(struct tr *t, const char *op, struct ex *a, struct ex *b,
                 struct ex *out)
{
    enum kusto_type ta = a->type, tb = b->type, rt;
    char *sql = NULL;
    int rc = 0;

    memset(out, 0, sizeof(*out));
    if (is_numt(ta) && is_numt(tb)) {
        if (ta == KT_REAL || tb == KT_REAL || ta == KT_DECIMAL ||
            tb == KT_DECIMAL) {
            rt = KT_REAL;
        } else if (ta == KT_LONG || tb == KT_LONG) {
            rt = KT_LONG;
        } else {
            rt = KT_INT;
        }
        if (*op == '%' && rt == KT_REAL) {
            rc = type_err(t, op, a, b);
            goto out;
        }
        sql = xprintf("(%s %s %s)", a->sql, op, b->sql);
    } else if (*op == '+' && ((ta == KT_DATETIME && tb == KT_TIMESPAN) ||
                              (ta == KT_TIMESPAN && tb == KT_DATETIME))) {
        rt = KT_DATETIME;
        sql = xprintf("(%s + %s)", a->sql, b->sql);
    } else if ((*op == '+' || *op == '-') && ta == KT_TIMESPAN &&
               tb == KT_TIMESPAN) {
        rt = KT_TIMESPAN;
        sql = xprintf("(%s %s %s)", a->sql, op, b->sql);
    } else if (*op == '-' && ta == KT_DATETIME && tb == KT_DATETIME) {
        rt = KT_TIMESPAN;
        sql = xprintf("(%s - %s)", a->sql, b->sql);
    } else if (*op == '-' && ta == KT_DATETIME && tb == KT_TIMESPAN) {
        rt = KT_DATETIME;
        sql = xprintf("(%s - %s)", a->sql, b->sql);
    } else if (*op == '*' && ((ta == KT_TIMESPAN && is_numt(tb)) ||
                              (is_numt(ta) && tb == KT_TIMESPAN))) {
        rt = KT_TIMESPAN;
        sql = xprintf("CAST(round(%s * %s) AS INTEGER)", a->sql, b->sql);
    } else if (*op == '/' && ta == KT_TIMESPAN && is_numt(tb)) {
        rt = KT_TIMESPAN;
        sql = xprintf("CAST(round(CAST(%s AS REAL) / %s) AS INTEGER)", a->sql,
                      b->sql);
    } else if (*op == '/' && ta == KT_TIMESPAN && tb == KT_TIMESPAN) {
        rt = KT_REAL;
        sql = xprintf("(CAST(%s AS REAL) / %s)", a->sql, b->sql);
    } else {
        rc = type_err(t, op, a, b);
        goto out;
    }
    rc = mk(t, out, rt, sql);
out:
    ex_free(a);
    ex_free(b);
    return rc;
}

static int comparable(enum kusto_type a, enum kusto_type b)
{
    if (is_numt(a) && is_numt(b)) {
        return 1;
    }
    if (is_strt(a) && is_strt(b)) {
        return 1;
    }
    return a == b;
}

static int parse_args(struct tr *t, struct ex *args, size_t max, size_t *n,
                      const char *fname)
{
    *n = 0;
    if (take_punct(t, ")")) {
        return 0;
    }
    for (;;) {
        int rc;

        if (*n == max) {
            return fail(t->err, -EINVAL,
                        "Semantic error: too many arguments to '%s'", fname);
        }
        rc = parse_expr(t, &args[*n]);
        if (rc < 0) {
            return rc;
        }
        (*n)++;
        if (take_punct(t, ")")) {
            return 0;
        }
        if (!take_punct(t, ",")) {
            return syn(t, "',' or ')'");
        }
    }
}

static int argc_err(struct tr *t, const char *fname, const char *expected)
{
    return fail(t->err, -EINVAL,
                "Semantic error: function '%s' expects %s argument(s)", fname,
                expected);
}

/* Name "<fn>_<column>" for an aggregate over e. */
static char *agg_name(const char *fn, const struct ex *e)
{
    return xprintf("%s_%s", fn, e && e->name ? e->name : "");
}

#define MAX_ARGS 64

static int call_aggregate(struct tr *t, const char *f, struct ex *a, size_t n,
                          struct ex *out)
{
    char *sql = NULL, *name = NULL;
    enum kusto_type rt = KT_LONG;
    int rc;

    if (!t->allow_agg) {
        return fail(t->err, -EINVAL,
                    "Semantic error: '%s' operator: aggregate function "
                    "'%s' is only allowed in summarize",
                    t->op, f);
    }
    t->naggs++;
    if (strcmp(f, "count") == 0) {
        if (n > 1) {
            return argc_err(t, f, "0 or 1");
        }
        sql = n ? xprintf("count(%s)", a[0].sql) : xprintf("count(*)");
        name = xprintf("count_");
    } else if (strcmp(f, "countif") == 0) {
        if (n != 1) {
            return argc_err(t, f, "1");
        }
        sql = xprintf("coalesce(sum(CASE WHEN %s THEN 1 ELSE 0 END), 0)",
                      a[0].sql);
        name = xprintf("countif_");
    } else if (strcmp(f, "dcount") == 0) {
        if (n < 1 || n > 2) {
            return argc_err(t, f, "1 or 2");
        }
        sql = xprintf("count(DISTINCT %s)", a[0].sql);
        name = agg_name(f, &a[0]);
    } else if (strcmp(f, "sum") == 0 || strcmp(f, "sumif") == 0) {
        int is_if = f[3] == 'i';

        if (n != (size_t)(is_if ? 2 : 1)) {
            return argc_err(t, f, is_if ? "2" : "1");
        }
        if (!is_numt(a[0].type) && a[0].type != KT_TIMESPAN) {
            return type_err(t, f, &a[0], NULL);
        }
        rt = a[0].type == KT_REAL || a[0].type == KT_DECIMAL ? KT_REAL
             : a[0].type == KT_TIMESPAN                      ? KT_TIMESPAN
                                                             : KT_LONG;
        sql = is_if
                  ? xprintf("sum(CASE WHEN %s THEN %s END)", a[1].sql, a[0].sql)
                  : xprintf("sum(%s)", a[0].sql);
        name = agg_name(f, &a[0]);
    } else if (strcmp(f, "avg") == 0) {
        if (n != 1) {
            return argc_err(t, f, "1");
        }
        if (a[0].type == KT_TIMESPAN || a[0].type == KT_DATETIME) {
            rt = a[0].type;
            sql = xprintf("CAST(avg(%s) AS INTEGER)", a[0].sql);
        } else if (is_numt(a[0].type)) {
            rt = KT_REAL;
            sql = xprintf("avg(%s)", a[0].sql);
        } else {
            return type_err(t, f, &a[0], NULL);
        }
        name = agg_name(f, &a[0]);
    } else if (strcmp(f, "min") == 0 || strcmp(f, "max") == 0 ||
               strcmp(f, "take_any") == 0 || strcmp(f, "any") == 0) {
        if (n != 1) {
            return argc_err(t, f, "1");
        }
        rt = a[0].type;
        sql = xprintf("%s(%s)", f[1] == 'a' ? "max" : "min", a[0].sql);
        name = agg_name(f, &a[0]);
    } else if (strcmp(f, "percentile") == 0) {
        char pbuf[32], *dot;

        if (n != 2) {
            return argc_err(t, f, "2");
        }
        if (!a[1].is_num_lit || a[1].num < 0 || a[1].num > 100) {
            return fail(t->err, -EINVAL,
                        "Semantic error: percentile() needs a constant "
                        "percentage between 0 and 100");
        }
        if (!is_numt(a[0].type) && a[0].type != KT_TIMESPAN &&
            a[0].type != KT_DATETIME) {
            return type_err(t, f, &a[0], NULL);
        }
        rt = a[0].type;
        sql = xprintf("kql_percentile(%s, %s)", a[0].sql, a[1].sql);
        snprintf(pbuf, sizeof(pbuf), "%g", a[1].num);
        dot = strchr(pbuf, '.');
        if (dot) {
            *dot = '_';
        }
        name = xprintf("percentile_%s_%s", a[0].name ? a[0].name : "", pbuf);
    } else {
        return -ENOENT;
    }
    rc = mk(t, out, rt, sql);
    if (rc == 0) {
        out->name = name;
        if (!name) {
            rc = oom_err(t);
        }
    } else {
        free(name);
    }
    return rc;
}

static const char *const agg_names[] = {"count", "countif",  "dcount",    "sum",
                                        "sumif", "avg",      "min",       "max",
                                        "any",   "take_any", "percentile"};

static int is_agg_name(const char *f)
{
    size_t i;

    for (i = 0; i < sizeof(agg_names) / sizeof(agg_names[0]); i++) {
        if (strcmp(agg_names[i], f) == 0) {
            return 1;
        }
    }
    return 0;
}

/* tolong / toint / todouble / ... of e (not freed). */
static int convert(struct tr *t, const char *f, struct ex *e, struct ex *out)
{
    enum kusto_type s = e->type;

    if (strcmp(f, "tostring") == 0) {
        return mk(t, out, KT_STRING,
                  is_strt(s) ? xprintf("%s", e->sql)
                             : xprintf("kql_tostr(%s, %d)", e->sql, (int)s));
    }
    if (strcmp(f, "tolong") == 0 || strcmp(f, "toint") == 0) {
        enum kusto_type rt = f[2] == 'l' ? KT_LONG : KT_INT;

        if (is_intt(s) || s == KT_DATETIME || s == KT_TIMESPAN) {
            return mk(t, out, rt, xprintf("%s", e->sql));
        }
        return mk(t, out, rt,
                  xprintf("kql_conv(%s, %d)", e->sql, rt == KT_LONG ? 0 : 1));
    }
    if (strcmp(f, "todouble") == 0 || strcmp(f, "toreal") == 0 ||
        strcmp(f, "todecimal") == 0) {
        if (is_numt(s) || s == KT_TIMESPAN || s == KT_DATETIME) {
            return mk(t, out, KT_REAL, xprintf("CAST(%s AS REAL)", e->sql));
        }
        return mk(t, out, KT_REAL, xprintf("kql_conv(%s, 2)", e->sql));
    }
    if (strcmp(f, "todatetime") == 0) {
        if (s == KT_DATETIME) {
            return mk(t, out, KT_DATETIME, xprintf("%s", e->sql));
        }
        if (is_strt(s)) {
            return mk(t, out, KT_DATETIME, xprintf("kql_conv(%s, 3)", e->sql));
        }
        return mk(t, out, KT_DATETIME, xprintf("NULL"));
    }
    if (strcmp(f, "totimespan") == 0) {
        if (s == KT_TIMESPAN) {
            return mk(t, out, KT_TIMESPAN, xprintf("%s", e->sql));
        }
        return mk(t, out, KT_TIMESPAN, xprintf("kql_conv(%s, 4)", e->sql));
    }
    /* tobool / toboolean */
    if (s == KT_BOOL) {
        return mk(t, out, KT_BOOL, xprintf("%s", e->sql));
    }
    return mk(t, out, KT_BOOL, xprintf("kql_conv(%s, 5)", e->sql));
}

/* ago, now, ingestion_time and the string functions (strcat, strlen,
 * tolower, toupper, substring) over the parsed arguments a[0..n): 1 with
 * *rc set (0 or an error in t) when f is one of them, 0 when it is not. */
static int time_string_function(struct tr *t, const char *f, struct ex *a,
                                size_t n, struct ex *out, int *rc)
{
    size_t i;

    if (strcmp(f, "ago") == 0 || strcmp(f, "now") == 0) {
        int is_ago = f[0] == 'a';

        if (n != (size_t)is_ago && !(n == 1 && !is_ago)) {
            *rc = argc_err(t, f, is_ago ? "1" : "0 or 1");
        } else if (n == 1 && a[0].type != KT_TIMESPAN) {
            *rc = type_err(t, f, &a[0], NULL);
        } else if (n == 0) {
            *rc = mk(t, out, KT_DATETIME, xprintf("%lld", (long long)t->now));
        } else {
            *rc = mk(t, out, KT_DATETIME,
                     xprintf("(%lld %s %s)", (long long)t->now,
                             is_ago ? "-" : "+", a[0].sql));
        }
    } else if (strcmp(f, "ingestion_time") == 0) {
        if (n != 0) {
            *rc = argc_err(t, f, "0");
        } else {
            *rc = mk(t, out, KT_DATETIME,
                     xprintf("%s",
                             t->cur.has_itime ? "\"$IngestionTime\"" : "NULL"));
        }
    } else if (strcmp(f, "strcat") == 0) {
        struct sbuf b;

        if (n < 1) {
            *rc = argc_err(t, f, "1 or more");
            return 1;
        }
        memset(&b, 0, sizeof(b));
        sbuf_adds(&b, "(");
        for (i = 0; i < n; i++) {
            char *s = as_text(&a[i]);

            if (!s) {
                b.err = -ENOMEM;
                break;
            }
            if (i) {
                sbuf_adds(&b, " || ");
            }
            sbuf_adds(&b, s);
            free(s);
        }
        sbuf_adds(&b, ")");
        if (b.err) {
            free(b.p);
            *rc = oom_err(t);
        } else {
            *rc = mk(t, out, KT_STRING, b.p);
        }
    } else if (strcmp(f, "strlen") == 0) {
        char *s = n == 1 ? as_text(&a[0]) : NULL;

        if (n != 1) {
            *rc = argc_err(t, f, "1");
        } else {
            *rc = mk(t, out, KT_LONG, s ? xprintf("length(%s)", s) : NULL);
        }
        free(s);
    } else if (strcmp(f, "tolower") == 0 || strcmp(f, "toupper") == 0) {
        char *s = n == 1 ? as_text(&a[0]) : NULL;

        if (n != 1) {
            *rc = argc_err(t, f, "1");
        } else {
            *rc = mk(t, out, KT_STRING,
                     s ? xprintf("%s(%s)", f[2] == 'l' ? "lower" : "upper", s)
                       : NULL);
        }
        free(s);
    } else if (strcmp(f, "substring") == 0) {
        char *s = n >= 2 && n <= 3 ? as_text(&a[0]) : NULL;

        if (n < 2 || n > 3) {
            *rc = argc_err(t, f, "2 or 3");
        } else if (n == 2) {
            *rc = mk(t, out, KT_STRING,
                     s ? xprintf("substr(%s, (%s) + 1)", s, a[1].sql) : NULL);
        } else {
            *rc = mk(
                t, out, KT_STRING,
                s ? xprintf("substr(%s, (%s) + 1, %s)", s, a[1].sql, a[2].sql)
                  : NULL);
        }
        free(s);
    } else {
        return 0;
    }
    return 1;
}

/* The conversions (tostring, tolong, ...), null and emptiness tests and
 * not: as time_string_function. */
static int value_function(struct tr *t, const char *f, struct ex *a, size_t n,
                          struct ex *out, int *rc)
{
    if (strcmp(f, "tostring") == 0 || strcmp(f, "tolong") == 0 ||
        strcmp(f, "toint") == 0 || strcmp(f, "todouble") == 0 ||
        strcmp(f, "toreal") == 0 || strcmp(f, "todecimal") == 0 ||
        strcmp(f, "todatetime") == 0 || strcmp(f, "totimespan") == 0 ||
        strcmp(f, "tobool") == 0 || strcmp(f, "toboolean") == 0) {
        if (n != 1) {
            *rc = argc_err(t, f, "1");
        } else {
            *rc = convert(t, f, &a[0], out);
        }
    } else if (strcmp(f, "isempty") == 0 || strcmp(f, "isnotempty") == 0) {
        int neg = f[2] == 'n';

        if (n != 1) {
            *rc = argc_err(t, f, "1");
        } else if (is_strt(a[0].type)) {
            *rc = mk(t, out, KT_BOOL,
                     xprintf(neg ? "(%s IS NOT NULL AND %s <> '')"
                                 : "(%s IS NULL OR %s = '')",
                             a[0].sql, a[0].sql));
        } else {
            *rc = mk(
                t, out, KT_BOOL,
                xprintf(neg ? "(%s IS NOT NULL)" : "(%s IS NULL)", a[0].sql));
        }
    } else if (strcmp(f, "isnull") == 0 || strcmp(f, "isnotnull") == 0) {
        if (n != 1) {
            *rc = argc_err(t, f, "1");
        } else {
            *rc = mk(t, out, KT_BOOL,
                     xprintf(strcmp(f, "isnotnull") == 0 ? "(%s IS NOT NULL)"
                                                         : "(%s IS NULL)",
                             a[0].sql));
        }
    } else if (strcmp(f, "not") == 0) {
        if (n != 1) {
            *rc = argc_err(t, f, "1");
        } else {
            *rc = mk(t, out, KT_BOOL, xprintf("(NOT %s)", a[0].sql));
        }
    } else {
        return 0;
    }
    return 1;
}

/* bin/floor, startofday, iff, coalesce, abs and round: as
 * time_string_function. */
static int math_function(struct tr *t, const char *f, struct ex *a, size_t n,
                         struct ex *out, int *rc)
{
    size_t i;

    if (strcmp(f, "bin") == 0 || strcmp(f, "floor") == 0) {
        if (n != 2) {
            *rc = argc_err(t, f, "2");
        } else if (!((is_numt(a[0].type) && is_numt(a[1].type)) ||
                     ((a[0].type == KT_DATETIME || a[0].type == KT_TIMESPAN) &&
                      a[1].type == KT_TIMESPAN))) {
            *rc = type_err(t, f, &a[0], &a[1]);
        } else {
            enum kusto_type rt = a[0].type;

            if (is_numt(rt) && (a[1].type == KT_REAL || rt == KT_DECIMAL)) {
                rt = KT_REAL;
            }
            *rc =
                mk(t, out, rt, xprintf("kql_bin(%s, %s)", a[0].sql, a[1].sql));
            if (*rc == 0 && a[0].name) {
                out->name = strdup(a[0].name);
                if (!out->name) {
                    *rc = oom_err(t);
                }
            }
        }
    } else if (strcmp(f, "startofday") == 0) {
        if (n != 1 || a[0].type != KT_DATETIME) {
            *rc = n != 1 ? argc_err(t, f, "1") : type_err(t, f, &a[0], NULL);
        } else {
            *rc = mk(t, out, KT_DATETIME,
                     xprintf("kql_bin(%s, %lld)", a[0].sql,
                             (long long)KQL_TICKS_PER_DAY));
        }
    } else if (strcmp(f, "iff") == 0 || strcmp(f, "iif") == 0) {
        if (n != 3) {
            *rc = argc_err(t, f, "3");
        } else if (!comparable(a[1].type, a[2].type)) {
            *rc = type_err(t, f, &a[1], &a[2]);
        } else {
            *rc = mk(t, out, a[1].type,
                     xprintf("(CASE WHEN %s THEN %s ELSE %s END)", a[0].sql,
                             a[1].sql, a[2].sql));
        }
    } else if (strcmp(f, "coalesce") == 0) {
        struct sbuf b;

        if (n < 1) {
            *rc = argc_err(t, f, "1 or more");
            return 1;
        }
        memset(&b, 0, sizeof(b));
        sbuf_adds(&b, n == 1 ? "(" : "coalesce(");
        for (i = 0; i < n; i++) {
            if (i) {
                sbuf_adds(&b, ", ");
            }
            sbuf_adds(&b, a[i].sql);
        }
        sbuf_adds(&b, ")");
        *rc = b.err ? (free(b.p), oom_err(t)) : mk(t, out, a[0].type, b.p);
    } else if (strcmp(f, "abs") == 0) {
        if (n != 1 || !(is_numt(a[0].type) || a[0].type == KT_TIMESPAN)) {
            *rc = n != 1 ? argc_err(t, f, "1") : type_err(t, f, &a[0], NULL);
        } else {
            *rc = mk(t, out, a[0].type, xprintf("abs(%s)", a[0].sql));
        }
    } else if (strcmp(f, "round") == 0) {
        if (n < 1 || n > 2 || !is_numt(a[0].type)) {
            *rc = n < 1 || n > 2 ? argc_err(t, f, "1 or 2")
                                 : type_err(t, f, &a[0], NULL);
        } else {
            *rc =
                mk(t, out, KT_REAL,
                   xprintf("round(%s, %s)", a[0].sql, n == 2 ? a[1].sql : "0"));
        }
    } else {
        return 0;
    }
    return 1;
}

static int call_function(struct tr *t, const char *f, size_t fpos,
                         struct ex *out)
{
    struct ex a[MAX_ARGS];
    size_t n = 0, i;
    int rc, saved_agg = t->allow_agg;

    memset(a, 0, sizeof(a));
    if (is_agg_name(f)) {
        /* no aggregate inside an aggregate */
        t->allow_agg = 0;
    }
    rc = parse_args(t, a, MAX_ARGS, &n, f);
    t->allow_agg = saved_agg;
    if (rc < 0) {
        goto out;
    }
    memset(out, 0, sizeof(*out));
    if (is_agg_name(f)) {
        rc = call_aggregate(t, f, a, n, out);
        goto out;
    }
    if (time_string_function(t, f, a, n, out, &rc) == 0 &&
        value_function(t, f, a, n, out, &rc) == 0 &&
        math_function(t, f, a, n, out, &rc) == 0) {
        rc = fail(t->err, -ENOTSUP,
                  "Semantic error: '%s' operator: unsupported function "
                  "'%s' (position %zu)",
                  t->op, f, fpos);
    }
out:
    for (i = 0; i < n; i++) {
        ex_free(&a[i]);
    }
    return rc;
}

static int parse_primary(struct tr *t, struct ex *out)
{
    struct kql_token *k = tok(t);
    int rc;

    memset(out, 0, sizeof(*out));
    switch (k->kind) {
    case KQL_LONG:
        t->i++;
        rc = mk(t, out, KT_LONG, xprintf("%lld", (long long)k->i));
        out->is_num_lit = 1;
        out->num = (double)k->i;
        return rc;
    case KQL_REAL:
        t->i++;
        rc = mk(t, out, KT_REAL, real_literal(k->r));
        out->is_num_lit = 1;
        out->num = k->r;
        return rc;
    case KQL_TIMESPAN:
        t->i++;
        return mk(t, out, KT_TIMESPAN,
                  k->is_null ? xprintf("NULL")
                             : xprintf("%lld", (long long)k->i));
    case KQL_DATETIME:
        t->i++;
        return mk(t, out, KT_DATETIME,
                  k->is_null ? xprintf("NULL")
                             : xprintf("%lld", (long long)k->i));
    case KQL_STRING: {
        struct sbuf b;

        memset(&b, 0, sizeof(b));
        t->i++;
        /* adjacent string literals concatenate: 'a' "b" is "ab" */
        while (tok(t)->kind == KQL_STRING) {
            char *joined = xprintf("%s%s", k->text, tok(t)->text);

            if (!joined) {
                return oom_err(t);
            }
            free(k->text);
            k->text = joined;
            t->i++;
        }
        sb_qstring(&b, k->text);
        if (b.err) {
            free(b.p);
            return oom_err(t);
        }
        return mk(t, out, KT_STRING, b.p);
    }
    case KQL_PUNCT:
        if (is_punct(k, "(")) {
            t->i++;
            rc = parse_expr(t, out);
            if (rc < 0) {
                return rc;
            }
            if (!take_punct(t, ")")) {
                ex_free(out);
                return syn(t, "')'");
            }
            if (out->sql) {
                char *s = xprintf("(%s)", out->sql);

                if (!s) {
                    ex_free(out);
                    return oom_err(t);
                }
                free(out->sql);
                out->sql = s;
            }
            return 0;
        }
        return syn(t, "an expression");
    case KQL_IDENT: {
        const struct kusto_column *c;

        if (!k->quoted && is_punct(tok_at(t, 1), "(")) {
            t->i += 2;
            return call_function(t, k->text, k->pos, out);
        }
        t->i++;
        if (!k->quoted &&
            (strcmp(k->text, "true") == 0 || strcmp(k->text, "false") == 0)) {
            return mk(t, out, KT_BOOL,
                      xprintf("%d", k->text[0] == 't' ? 1 : 0));
        }
        c = find_col(&t->cur, k->text);
        if (!c) {
            return fail(t->err, -ENOENT,
                        "Semantic error: SEM0100: '%s' operator: Failed to "
                        "resolve scalar expression named '%s'",
                        t->op, k->text);
        }
        {
            struct sbuf b;

            memset(&b, 0, sizeof(b));
            sb_qident(&b, c->name);
            if (b.err) {
                free(b.p);
                return oom_err(t);
            }
            rc = mk(t, out, c->type, b.p);
            if (rc == 0) {
                out->name = strdup(c->name);
                if (!out->name) {
                    ex_free(out);
                    return oom_err(t);
                }
            }
            return rc;
        }
    }
    default:
        return syn(t, "an expression");
    }
}

static int parse_unary(struct tr *t, struct ex *out)
{
    int rc;

    memset(out, 0, sizeof(*out));
    if (++t->depth > KQL_MAX_DEPTH) {
        return fail(t->err, -EINVAL, "expression nested too deeply");
    }
    if (is_punct(tok(t), "-") || is_punct(tok(t), "+")) {
        int neg = is_punct(tok(t), "-");
        struct ex e;

        t->i++;
        rc = parse_unary(t, &e);
        if (rc == 0) {
            if (!is_numt(e.type) && e.type != KT_TIMESPAN) {
                rc = type_err(t, neg ? "-" : "+", &e, NULL);
                ex_free(&e);
            } else if (neg) {
                rc = mk(t, out, e.type, xprintf("(-%s)", e.sql));
                out->is_num_lit = e.is_num_lit;
                out->num = -e.num;
                ex_free(&e);
            } else {
                *out = e;
            }
        }
    } else {
        rc = parse_primary(t, out);
    }
    t->depth--;
    return rc;
}

static int parse_mul(struct tr *t, struct ex *out)
{
    int rc = parse_unary(t, out);

    while (rc == 0 && (is_punct(tok(t), "*") || is_punct(tok(t), "/") ||
                       is_punct(tok(t), "%"))) {
        const char *op = tok(t)->text;
        struct ex a = *out, b;

        memset(out, 0, sizeof(*out));
        t->i++;
        rc = parse_unary(t, &b);
        if (rc < 0) {
            ex_free(&a);
            memset(out, 0, sizeof(*out));
            return rc;
        }
        rc = arith(t, op, &a, &b, out);
    }
    return rc;
}

static int parse_add(struct tr *t, struct ex *out)
{
    int rc = parse_mul(t, out);

    while (rc == 0 && (is_punct(tok(t), "+") || is_punct(tok(t), "-"))) {
        const char *op = tok(t)->text;
        struct ex a = *out, b;

        memset(out, 0, sizeof(*out));
        t->i++;
        rc = parse_mul(t, &b);
        if (rc < 0) {
            ex_free(&a);
            memset(out, 0, sizeof(*out));
            return rc;
        }
        rc = arith(t, op, &a, &b, out);
    }
    return rc;
}

struct strop {
    const char *name;
    int code; /* kql_strop op */
    int neg;
};

static const struct strop strops[] = {
    {"contains", 0, 0},      {"!contains", 0, 1},      {"has", 1, 0},
    {"!has", 1, 1},          {"startswith", 2, 0},     {"!startswith", 2, 1},
    {"endswith", 3, 0},      {"!endswith", 3, 1},      {"contains_cs", 4, 0},
    {"!contains_cs", 4, 1},  {"has_cs", 5, 0},         {"!has_cs", 5, 1},
    {"startswith_cs", 6, 0}, {"!startswith_cs", 6, 1}, {"endswith_cs", 7, 0},
    {"!endswith_cs", 7, 1},
};

static const struct strop *find_strop(const struct kql_token *k)
{
    size_t i;

    if ((k->kind != KQL_IDENT || k->quoted) && k->kind != KQL_PUNCT) {
        return NULL;
    }
    for (i = 0; i < sizeof(strops) / sizeof(strops[0]); i++) {
        if (strcmp(k->text, strops[i].name) == 0) {
            return &strops[i];
        }
    }
    return NULL;
}

/* x in (a, b, ...) / !in / between (a .. b) / !between. Takes *lhs. */
static int parse_in_between(struct tr *t, struct ex *lhs, struct ex *out)
{
    struct kql_token *k = tok(t);
    int neg = k->text[0] == '!';
    int between = strstr(k->text, "between") != NULL;
    int rc = 0;
    struct sbuf b;

    memset(&b, 0, sizeof(b));
    t->i++;
    if (!take_punct(t, "(")) {
        ex_free(lhs);
        return syn(t, "'('");
    }
    if (between) {
        struct ex lo, hi;
        char *hisql;

        rc = parse_add(t, &lo);
        if (rc < 0) {
            ex_free(lhs);
            return rc;
        }
        if (!take_punct(t, "..")) {
            ex_free(lhs);
            ex_free(&lo);
            return syn(t, "'..'");
        }
        rc = parse_add(t, &hi);
        if (rc < 0) {
            ex_free(lhs);
            ex_free(&lo);
            return rc;
        }
        if (!take_punct(t, ")")) {
            rc = syn(t, "')'");
        } else if (!comparable(lhs->type, lo.type)) {
            rc = type_err(t, "between", lhs, &lo);
        } else if (lo.type == KT_DATETIME && hi.type == KT_TIMESPAN) {
            /* between (start .. duration) */
            hisql = xprintf("(%s + %s)", lo.sql, hi.sql);
            rc = mk(t, out, KT_BOOL,
                    hisql ? xprintf("(%s %sBETWEEN %s AND %s)", lhs->sql,
                                    neg ? "NOT " : "", lo.sql, hisql)
                          : NULL);
            free(hisql);
        } else if (!comparable(lhs->type, hi.type)) {
            rc = type_err(t, "between", lhs, &hi);
        } else {
            rc = mk(t, out, KT_BOOL,
                    xprintf("(%s %sBETWEEN %s AND %s)", lhs->sql,
                            neg ? "NOT " : "", lo.sql, hi.sql));
        }
        ex_free(lhs);
        ex_free(&lo);
        ex_free(&hi);
        return rc;
    }
    sbuf_adds(&b, "(");
    sbuf_adds(&b, lhs->sql);
    sbuf_adds(&b, neg ? " NOT IN (" : " IN (");
    for (;;) {
        struct ex e;

        rc = parse_expr(t, &e);
        if (rc < 0) {
            break;
        }
        if (!comparable(lhs->type, e.type)) {
            rc = type_err(t, "in", lhs, &e);
            ex_free(&e);
            break;
        }
        sbuf_adds(&b, e.sql);
        ex_free(&e);
        if (take_punct(t, ")")) {
            break;
        }
        if (!take_punct(t, ",")) {
            rc = syn(t, "',' or ')'");
            break;
        }
        sbuf_adds(&b, ", ");
    }
    sbuf_adds(&b, "))");
    ex_free(lhs);
    if (rc < 0 || b.err) {
        free(b.p);
        return rc < 0 ? rc : oom_err(t);
    }
    return mk(t, out, KT_BOOL, b.p);
}

static int parse_cmp(struct tr *t, struct ex *out)
{
    static const char *const cmps[] = {
        "==", "!=", "<>", "<=", ">=", "<", ">", "=~", "!~"};
    const struct strop *so;
    struct kql_token *k;
    struct ex a, b;
    size_t i;
    int rc;

    rc = parse_add(t, out);
    if (rc < 0) {
        return rc;
    }
    k = tok(t);
    if ((k->kind == KQL_IDENT && !k->quoted &&
         (strcmp(k->text, "in") == 0 || strcmp(k->text, "between") == 0)) ||
        (k->kind == KQL_PUNCT &&
         (strcmp(k->text, "!in") == 0 || strcmp(k->text, "!between") == 0))) {
        a = *out;
        memset(out, 0, sizeof(*out));
        return parse_in_between(t, &a, out);
    }
    so = find_strop(k);
    if (so) {
        char *hs, *ns;

        a = *out;
        memset(out, 0, sizeof(*out));
        t->i++;
        rc = parse_add(t, &b);
        if (rc < 0) {
            ex_free(&a);
            memset(out, 0, sizeof(*out));
            return rc;
        }
        hs = as_text(&a);
        ns = as_text(&b);
        rc = mk(t, out, KT_BOOL,
                hs && ns ? xprintf("(%skql_strop(%d, %s, %s))",
                                   so->neg ? "NOT " : "", so->code, hs, ns)
                         : NULL);
        free(hs);
        free(ns);
        ex_free(&a);
        ex_free(&b);
        return rc;
    }
    if (k->kind != KQL_PUNCT) {
        return 0;
    }
    for (i = 0; i < sizeof(cmps) / sizeof(cmps[0]); i++) {
        if (strcmp(k->text, cmps[i]) == 0) {
            break;
        }
    }
    if (i == sizeof(cmps) / sizeof(cmps[0])) {
        return 0;
    }
    a = *out;
    memset(out, 0, sizeof(*out));
    t->i++;
    rc = parse_add(t, &b);
    if (rc < 0) {
        ex_free(&a);
        memset(out, 0, sizeof(*out));
        return rc;
    }
    if (!comparable(a.type, b.type)) {
        rc = fail(t->err, -EINVAL,
                  "Semantic error: '%s' operator: Cannot compare values of "
                  "types %s and %s. Try adding explicit casts",
                  t->op, kusto_type_name(a.type), kusto_type_name(b.type));
    } else if (strcmp(k->text, "=~") == 0 || strcmp(k->text, "!~") == 0) {
        rc = mk(t, out, KT_BOOL,
                xprintf("(%s(%s = %s COLLATE NOCASE))",
                        k->text[0] == '!' ? "NOT " : "", a.sql, b.sql));
    } else {
        const char *op = k->text;

        if (strcmp(op, "==") == 0) {
            op = "=";
        } else if (strcmp(op, "!=") == 0) {
            op = "<>";
        }
        rc = mk(t, out, KT_BOOL, xprintf("(%s %s %s)", a.sql, op, b.sql));
    }
    ex_free(&a);
    ex_free(&b);
    return rc;
}

static int parse_and(struct tr *t, struct ex *out)
{
    int rc = parse_cmp(t, out);

    while (rc == 0 && is_word(tok(t), "and")) {
        struct ex a = *out, b;

        memset(out, 0, sizeof(*out));
        t->i++;
        rc = parse_cmp(t, &b);
        if (rc < 0) {
            ex_free(&a);
            memset(out, 0, sizeof(*out));
            return rc;
        }
        rc = mk(t, out, KT_BOOL, xprintf("(%s AND %s)", a.sql, b.sql));
        ex_free(&a);
        ex_free(&b);
    }
    return rc;
}

static int parse_expr(struct tr *t, struct ex *out)
{
    int rc;

    if (++t->depth > KQL_MAX_DEPTH) {
        return fail(t->err, -EINVAL, "expression nested too deeply");
    }
    rc = parse_and(t, out);
    while (rc == 0 && is_word(tok(t), "or")) {
        struct ex a = *out, b;

        memset(out, 0, sizeof(*out));
        t->i++;
        rc = parse_and(t, &b);
        if (rc < 0) {
            ex_free(&a);
            memset(out, 0, sizeof(*out));
            break;
        }
        rc = mk(t, out, KT_BOOL, xprintf("(%s OR %s)", a.sql, b.sql));
        ex_free(&a);
        ex_free(&b);
    }
    t->depth--;
    return rc;
}

/* ------------------------------------------------------------------ */
/* Tabular operators                                                    */

/* Reads "[Name =] expr" of project / extend / summarize ... by. *name gets
 * the explicit name (owned) or NULL. */
static int parse_named(struct tr *t, char **name, struct ex *e)
{
    *name = NULL;
    if (tok(t)->kind == KQL_IDENT && is_punct(tok_at(t, 1), "=")) {
        *name = strdup(tok(t)->text);
        if (!*name) {
            return oom_err(t);
        }
        t->i += 2;
    }
    if (parse_expr(t, e) < 0) {
        free(*name);
        *name = NULL;
        return -EINVAL;
    }
    return 0;
}

/* extend A = e, ...: each assignment is its own stage, so later ones see
 * earlier ones; assigning an existing name replaces it in place. */
static int op_extend(struct tr *t)
{
    do {
        struct outcols o;
        struct ex e;
        char *name;
        int rc;

        memset(&o, 0, sizeof(o));
        if (parse_named(t, &name, &e) < 0) {
            return -EINVAL;
        }
        if (!name) {
            name = e.name && find_col(&t->cur, e.name) == NULL
                       ? strdup(e.name)
                       : next_column_name(t);
        }
        rc = outcols_from_cur(t, &o);
        if (rc == 0) {
            rc = outcols_put(t, &o, name, e.sql, e.type, 1);
            e.sql = NULL;
        } else {
            free(name);
        }
        ex_free(&e);
        if (rc == 0) {
            rc = push_stage(t, &o, 0, 1, NULL);
        }
        outcols_release(&o);
        if (rc < 0) {
            return rc;
        }
    } while (take_punct(t, ","));
    return 0;
}

static int op_project(struct tr *t)
{
    struct outcols o;
    int rc = 0;

    memset(&o, 0, sizeof(o));
    do {
        struct ex e;
        char *name;

        if (parse_named(t, &name, &e) < 0) {
            rc = -EINVAL;
            break;
        }
        if (!name) {
            name = e.name ? strdup(e.name) : next_column_name(t);
        }
        rc = outcols_put(t, &o, name, e.sql, e.type, 0);
        e.sql = NULL;
        ex_free(&e);
    } while (rc == 0 && take_punct(t, ","));
    if (rc == 0) {
        rc = push_stage(t, &o, 0, 1, NULL);
    }
    outcols_release(&o);
    return rc;
}

/* A column name operand of project-away / project-rename / distinct. */
static int column_operand(struct tr *t, const struct kusto_column **c)
{
    struct kql_token *k = tok(t);

    if (k->kind != KQL_IDENT) {
        return syn(t, "a column name");
    }
    *c = find_col(&t->cur, k->text);
    if (!*c) {
        return fail(t->err, -ENOENT,
                    "Semantic error: SEM0100: '%s' operator: Failed to "
                    "resolve scalar expression named '%s'",
                    t->op, k->text);
    }
    t->i++;
    return 0;
}

static int op_project_away(struct tr *t)
{
    struct outcols o;
    char *drop;
    size_t i;
    int rc = 0;

    memset(&o, 0, sizeof(o));
    drop = calloc(t->cur.ncols ? t->cur.ncols : 1, 1);
    if (!drop) {
        return oom_err(t);
    }
    do {
        const struct kusto_column *c;

        rc = column_operand(t, &c);
        if (rc == 0) {
            drop[c - t->cur.cols] = 1;
        }
    } while (rc == 0 && take_punct(t, ","));
    for (i = 0; rc == 0 && i < t->cur.ncols; i++) {
        struct sbuf b;

        if (drop[i]) {
            continue;
        }
        memset(&b, 0, sizeof(b));
        sb_qident(&b, t->cur.cols[i].name);
        rc = outcols_put(t, &o, strdup(t->cur.cols[i].name), b.p,
                         t->cur.cols[i].type, 0);
    }
    free(drop);
    if (rc == 0) {
        rc = push_stage(t, &o, 0, 1, NULL);
    }
    outcols_release(&o);
    return rc;
}

static int op_project_rename(struct tr *t)
{
    struct outcols o;
    int rc;

    memset(&o, 0, sizeof(o));
    rc = outcols_from_cur(t, &o);
    while (rc == 0) {
        const struct kusto_column *c;
        char *newname;
        int at;

        if (tok(t)->kind != KQL_IDENT || !is_punct(tok_at(t, 1), "=")) {
            rc = syn(t, "NewName = ExistingName");
            break;
        }
        newname = strdup(tok(t)->text);
        t->i += 2;
        if (!newname) {
            rc = oom_err(t);
            break;
        }
        rc = column_operand(t, &c);
        if (rc < 0) {
            free(newname);
            break;
        }
        at = outcols_find(&o, c->name);
        free(o.cols[at].name);
        o.cols[at].name = newname;
        if (!take_punct(t, ",")) {
            break;
        }
    }
    if (rc == 0) {
        rc = push_stage(t, &o, 0, 1, NULL);
    }
    outcols_release(&o);
    return rc;
}

static int op_where(struct tr *t)
{
    struct ex e;
    char *tail;
    int rc;

    rc = parse_expr(t, &e);
    if (rc < 0) {
        return rc;
    }
    if (e.type != KT_BOOL) {
        rc = fail(t->err, -EINVAL,
                  "Semantic error: 'where' operator: the predicate is of "
                  "type '%s', not bool",
                  kusto_type_name(e.type));
        ex_free(&e);
        return rc;
    }
    tail = xprintf("WHERE %s", e.sql);
    ex_free(&e);
    if (!tail) {
        return oom_err(t);
    }
    rc = wrap_stage(t, tail);
    free(tail);
    return rc;
}

/* A non-negative integer constant (take, top). */
static int count_operand(struct tr *t, long long *n)
{
    struct kql_token *k = tok(t);

    if (k->kind != KQL_LONG || k->i < 0) {
        return syn(t, "a row count");
    }
    *n = k->i;
    t->i++;
    return 0;
}

static int op_take(struct tr *t)
{
    long long n = 0;
    char tail[48];

    if (count_operand(t, &n) < 0) {
        return -EINVAL;
    }
    snprintf(tail, sizeof(tail), "LIMIT %lld", n);
    return wrap_stage(t, tail);
}

/* "e1 [asc|desc] [nulls first|last], ..." into b as ORDER BY terms. */
static int sort_terms(struct tr *t, struct sbuf *b)
{
    int first = 1;

    sbuf_adds(b, "ORDER BY ");
    do {
        struct ex e;
        int asc = 0;
        const char *nulls;

        if (parse_expr(t, &e) < 0) {
            return -EINVAL;
        }
        if (take_word(t, "asc")) {
            asc = 1;
        } else {
            take_word(t, "desc");
        }
        nulls = asc ? "NULLS FIRST" : "NULLS LAST";
        if (take_word(t, "nulls")) {
            if (take_word(t, "first")) {
                nulls = "NULLS FIRST";
            } else if (take_word(t, "last")) {
                nulls = "NULLS LAST";
            } else {
                ex_free(&e);
                return syn(t, "first or last");
            }
        }
        if (!first) {
            sbuf_adds(b, ", ");
        }
        first = 0;
        sbuf_adds(b, e.sql);
        sbuf_adds(b, asc ? " ASC " : " DESC ");
        sbuf_adds(b, nulls);
        ex_free(&e);
    } while (take_punct(t, ","));
    return b->err ? oom_err(t) : 0;
}

static int op_sort(struct tr *t)
{
    struct sbuf b;
    int rc;

    if (!take_word(t, "by")) {
        return syn(t, "'by'");
    }
    memset(&b, 0, sizeof(b));
    rc = sort_terms(t, &b);
    if (rc == 0) {
        rc = wrap_stage(t, b.p);
    }
    free(b.p);
    return rc;
}

static int op_top(struct tr *t)
{
    long long n = 0;
    struct sbuf b;
    char lim[48];
    int rc;

    if (count_operand(t, &n) < 0) {
        return -EINVAL;
    }
    if (!take_word(t, "by")) {
        return syn(t, "'by'");
    }
    memset(&b, 0, sizeof(b));
    rc = sort_terms(t, &b);
    snprintf(lim, sizeof(lim), " LIMIT %lld", n);
    sbuf_adds(&b, lim);
    if (rc == 0) {
        rc = b.err ? oom_err(t) : wrap_stage(t, b.p);
    }
    free(b.p);
    return rc;
}

static int op_count(struct tr *t)
{
    struct outcols o;
    int rc;

    memset(&o, 0, sizeof(o));
    rc = outcols_put(t, &o, strdup("Count"), strdup("count(*)"), KT_LONG, 0);
    if (rc == 0) {
        rc = push_stage(t, &o, 0, 0, NULL);
    }
    outcols_release(&o);
    return rc;
}

static int op_distinct(struct tr *t)
{
    struct outcols o;
    int rc = 0;

    memset(&o, 0, sizeof(o));
    if (take_punct(t, "*")) {
        rc = outcols_from_cur(t, &o);
    } else {
        do {
            const struct kusto_column *c;
            struct sbuf b;

            rc = column_operand(t, &c);
            if (rc < 0) {
                break;
            }
            memset(&b, 0, sizeof(b));
            sb_qident(&b, c->name);
            rc = outcols_put(t, &o, strdup(c->name), b.p, c->type, 0);
        } while (rc == 0 && take_punct(t, ","));
    }
    if (rc == 0) {
        rc = push_stage(t, &o, 1, 0, NULL);
    }
    outcols_release(&o);
    return rc;
}

/* percentiles(x, p1, p2, ...): one output column per percentage, named
 * by names[] when given ((a, b) = percentiles(...)), else
 * "<prefix>_<p>" when prefix is given (P = percentiles(...)), else
 * "percentile_<x>_<p>". */
static int summarize_percentiles(struct tr *t, struct outcols *aggs,
                                 char **names, size_t nnames,
                                 const char *prefix)
{
    struct ex x;
    size_t k = 0;
    int rc, saved = t->allow_agg;

    t->i += 2; /* percentiles ( */
    t->allow_agg = 0;
    rc = parse_expr(t, &x);
    t->allow_agg = saved;
    if (rc < 0) {
        return rc;
    }
    if (!is_numt(x.type) && x.type != KT_TIMESPAN && x.type != KT_DATETIME) {
        rc = type_err(t, "percentiles", &x, NULL);
        ex_free(&x);
        return rc;
    }
    while (rc == 0 && take_punct(t, ",")) {
        struct kql_token *p = tok(t);
        double v;
        char pbuf[32], *dot, *name, *sql;

        if (p->kind != KQL_LONG && p->kind != KQL_REAL) {
            rc = syn(t, "a percentage");
            break;
        }
        v = p->kind == KQL_LONG ? (double)p->i : p->r;
        if (v < 0 || v > 100) {
            rc = fail(t->err, -EINVAL,
                      "Semantic error: percentiles(): %g is not between 0 "
                      "and 100",
                      v);
            break;
        }
        t->i++;
        snprintf(pbuf, sizeof(pbuf), "%g", v);
        sql = xprintf("kql_percentile(%s, %s)", x.sql, pbuf);
        dot = strchr(pbuf, '.');
        if (dot) {
            *dot = '_';
        }
        if (names && k < nnames) {
            name = strdup(names[k]);
        } else if (prefix) {
            name = xprintf("%s_%s", prefix, pbuf);
        } else {
            name = xprintf("percentile_%s_%s", x.name ? x.name : "", pbuf);
        }
        k++;
        rc = outcols_put(t, aggs, name, sql, x.type, 0);
    }
    ex_free(&x);
    if (rc == 0 && k == 0) {
        rc = fail(t->err, -EINVAL,
                  "Semantic error: percentiles() needs at least one "
                  "percentage");
    }
    if (rc == 0 && !take_punct(t, ")")) {
        rc = syn(t, "')'");
    }
    if (rc == 0 && names && nnames != k) {
        rc = fail(t->err, -EINVAL,
                  "Semantic error: %zu names for %zu percentiles", nnames, k);
    }
    t->naggs++;
    return rc;
}

static int summarize_item(struct tr *t, struct outcols *aggs)
{
    char *names[32];
    size_t nnames = 0, i;
    char *name = NULL;
    struct ex e;
    int rc = 0;

    /* (a, b) = percentiles(...) */
    if (is_punct(tok(t), "(") && tok_at(t, 1)->kind == KQL_IDENT) {
        size_t save = t->i;

        t->i++;
        while (tok(t)->kind == KQL_IDENT && nnames < 32) {
            names[nnames] = strdup(tok(t)->text);
            if (!names[nnames]) {
                rc = oom_err(t);
                break;
            }
            nnames++;
            t->i++;
            if (!take_punct(t, ",")) {
                break;
            }
        }
        if (rc == 0 && take_punct(t, ")") && take_punct(t, "=") &&
            is_word(tok(t), "percentiles") && is_punct(tok_at(t, 1), "(")) {
            rc = summarize_percentiles(t, aggs, names, nnames, NULL);
            goto out;
        }
        for (i = 0; i < nnames; i++) {
            free(names[i]);
        }
        nnames = 0;
        if (rc < 0) {
            return rc;
        }
        t->i = save;
    }
    if (tok(t)->kind == KQL_IDENT && is_punct(tok_at(t, 1), "=")) {
        name = strdup(tok(t)->text);
        if (!name) {
            return oom_err(t);
        }
        t->i += 2;
    }
    if (is_word(tok(t), "percentiles") && is_punct(tok_at(t, 1), "(")) {
        rc = summarize_percentiles(t, aggs, NULL, 0, name);
        free(name);
        return rc;
    }
    t->naggs = 0;
    rc = parse_expr(t, &e);
    if (rc < 0) {
        free(name);
        return rc;
    }
    if (t->naggs == 0) {
        rc = fail(t->err, -EINVAL,
                  "Semantic error: 'summarize' operator: the expression is "
                  "not an aggregate (use count(), sum(), avg(), ...)");
        free(name);
        ex_free(&e);
        return rc;
    }
    if (!name) {
        name = e.name && t->naggs == 1 ? strdup(e.name) : next_column_name(t);
    }
    rc = outcols_put(t, aggs, name, e.sql, e.type, 0);
    e.sql = NULL;
    ex_free(&e);
    return rc;
out:
    for (i = 0; i < nnames; i++) {
        free(names[i]);
    }
    return rc;
}

static int op_summarize(struct tr *t)
{
    struct outcols aggs, keys, all;
    struct sbuf group;
    size_t i;
    int rc = 0;

    memset(&aggs, 0, sizeof(aggs));
    memset(&keys, 0, sizeof(keys));
    memset(&all, 0, sizeof(all));
    memset(&group, 0, sizeof(group));
    t->allow_agg = 1;
    if (!is_word(tok(t), "by")) {
        do {
            rc = summarize_item(t, &aggs);
        } while (rc == 0 && take_punct(t, ","));
    }
    t->allow_agg = 0;
    if (rc == 0 && take_word(t, "by")) {
        do {
            struct ex e;
            char *name;

            if (parse_named(t, &name, &e) < 0) {
                rc = -EINVAL;
                break;
            }
            if (!name) {
                name = e.name ? strdup(e.name) : next_column_name(t);
            }
            sbuf_adds(&group, keys.n ? ", " : "GROUP BY ");
            sbuf_adds(&group, e.sql);
            rc = outcols_put(t, &keys, name, e.sql, e.type, 0);
            e.sql = NULL;
            ex_free(&e);
        } while (rc == 0 && take_punct(t, ","));
    }
    if (rc == 0 && aggs.n == 0 && keys.n == 0) {
        rc = syn(t, "an aggregate or 'by'");
    }
    /* keys first, then aggregates (ADX's column order) */
    for (i = 0; rc == 0 && i < keys.n; i++) {
        rc = outcols_put(t, &all, keys.cols[i].name, keys.sql[i],
                         keys.cols[i].type, 0);
        keys.cols[i].name = NULL;
        keys.sql[i] = NULL;
    }
    for (i = 0; rc == 0 && i < aggs.n; i++) {
        rc = outcols_put(t, &all, aggs.cols[i].name, aggs.sql[i],
                         aggs.cols[i].type, 0);
        aggs.cols[i].name = NULL;
        aggs.sql[i] = NULL;
    }
    if (rc == 0 && group.err) {
        rc = oom_err(t);
    }
    if (rc == 0) {
        rc = push_stage(t, &all, 0, 0, group.p);
    }
    outcols_release(&aggs);
    outcols_release(&keys);
    outcols_release(&all);
    free(group.p);
    return rc;
}

static const char *const known_unsupported[] = {
    "join",
    "union",
    "lookup",
    "mv-expand",
    "mv-apply",
    "parse",
    "parse-where",
    "make-series",
    "render",
    "evaluate",
    "as",
    "getschema",
    "sample",
    "sample-distinct",
    "serialize",
    "search",
    "find",
    "facet",
    "fork",
    "invoke",
    "range",
    "print",
    "datatable",
    "externaldata",
    "project-reorder",
    "project-keep",
    "top-nested",
    "top-hitters",
    "partition",
    "scan",
    "consume",
    "reduce",
    "extend-with",
    "graph-match",
    "materialize",
};

/* The operator word after '|', with dashes: "project-away". */
static int read_operator(struct tr *t, char *op, size_t len)
{
    size_t o = 0;

    if (tok(t)->kind != KQL_IDENT || tok(t)->quoted) {
        return syn(t, "a tabular operator");
    }
    op[0] = '\0';
    for (;;) {
        int n = snprintf(op + o, len - o, "%s", tok(t)->text);

        if (n < 0 || (size_t)n >= len - o) {
            return syn(t, "a tabular operator");
        }
        o += (size_t)n;
        t->i++;
        /* project-away: the dash touches both words */
        if (is_punct(tok(t), "-") && tok_at(t, 1)->kind == KQL_IDENT &&
            tok(t)->pos == tok_at(t, -1)->pos + strlen(tok_at(t, -1)->text) &&
            tok_at(t, 1)->pos == tok(t)->pos + 1) {
            if (o + 1 >= len) {
                return syn(t, "a tabular operator");
            }
            op[o++] = '-';
            op[o] = '\0';
            t->i++;
            continue;
        }
        break;
    }
    return 0;
}

static int run_operator(struct tr *t, const char *op)
{
    size_t i;

    t->op = op;
    if (strcmp(op, "where") == 0 || strcmp(op, "filter") == 0) {
        t->op = "where";
        return op_where(t);
    }
    if (strcmp(op, "extend") == 0) {
        return op_extend(t);
    }
    if (strcmp(op, "project") == 0) {
        return op_project(t);
    }
    if (strcmp(op, "project-away") == 0) {
        return op_project_away(t);
    }
    if (strcmp(op, "project-rename") == 0) {
        return op_project_rename(t);
    }
    if (strcmp(op, "summarize") == 0) {
        return op_summarize(t);
    }
    if (strcmp(op, "take") == 0 || strcmp(op, "limit") == 0) {
        return op_take(t);
    }
    if (strcmp(op, "top") == 0) {
        return op_top(t);
    }
    if (strcmp(op, "order") == 0 || strcmp(op, "sort") == 0) {
        return op_sort(t);
    }
    if (strcmp(op, "count") == 0) {
        return op_count(t);
    }
    if (strcmp(op, "distinct") == 0) {
        return op_distinct(t);
    }
    for (i = 0; i < sizeof(known_unsupported) / sizeof(known_unsupported[0]);
         i++) {
        if (strcmp(op, known_unsupported[i]) == 0) {
            break;
        }
    }
    return fail(t->err, -ENOTSUP,
                "unsupported operator '%s' (the emulator supports where, "
                "project, project-away, project-rename, extend, summarize, "
                "top, order by, sort by, take, limit, count, distinct)",
                op);
}

/* The source table: SELECT "c1", ..., "$IngestionTime" FROM "D.T". */
static int source(struct tr *t, const char *db, kql_schema_fn schema, void *ctx)
{
    struct kql_token *k = tok(t);
    const struct kusto_column *cols;
    size_t ncols, i;
    struct sbuf b;
    char *full;

    if (k->kind != KQL_IDENT) {
        return syn(t, "a table name");
    }
    if (!k->quoted && strcmp(k->text, "let") == 0) {
        return fail(t->err, -ENOTSUP,
                    "unsupported statement 'let' (the emulator runs single "
                    "pipelines)");
    }
    if (!k->quoted && is_punct(tok_at(t, 1), "(")) {
        return fail(t->err, -ENOTSUP, "unsupported operator '%s'", k->text);
    }
    if (schema(ctx, k->text, &cols, &ncols) < 0) {
        const struct kql_token *nx = tok_at(t, 1);
        const struct kql_token *op = tok_at(t, 2);
        size_t u;

        for (u = 0; !k->quoted && u < sizeof(known_unsupported) /
                                          sizeof(known_unsupported[0]);
             u++) {
            if (strcmp(k->text, known_unsupported[u]) == 0) {
                return fail(t->err, -ENOTSUP, "unsupported operator '%s'",
                            k->text);
            }
        }
        if (is_punct(nx, "|") && op->kind == KQL_IDENT) {
            return fail(t->err, -ENOENT,
                        "Semantic error: SEM0100: '%s' operator: Failed to "
                        "resolve table or column expression named '%s'",
                        op->text, k->text);
        }
        return fail(t->err, -ENOENT,
                    "Semantic error: SEM0100: Failed to resolve table or "
                    "column expression named '%s'",
                    k->text);
    }
    t->i++;
    t->cur.cols = calloc(ncols ? ncols : 1, sizeof(*t->cur.cols));
    if (!t->cur.cols) {
        return oom_err(t);
    }
    memset(&b, 0, sizeof(b));
    sbuf_adds(&b, "SELECT ");
    for (i = 0; i < ncols; i++) {
        t->cur.cols[i].type = cols[i].type;
        t->cur.cols[i].name = strdup(cols[i].name);
        if (!t->cur.cols[i].name) {
            free(b.p);
            return oom_err(t);
        }
        t->cur.ncols++;
        sb_qident(&b, cols[i].name);
        sbuf_adds(&b, ", ");
    }
    sbuf_adds(&b, "\"$IngestionTime\" FROM ");
    full = xprintf("%s.%s", db, k->text);
    if (!full) {
        free(b.p);
        return oom_err(t);
    }
    sb_qident(&b, full);
    free(full);
    if (b.err) {
        free(b.p);
        return oom_err(t);
    }
    t->cur.sql = b.p;
    t->cur.has_itime = 1;
    return 0;
}

int kql_translate(const char *csl, const char *db, kql_schema_fn schema,
                  void *ctx, int64_t now, struct kql_plan *plan,
                  struct kusto_error *err)
{
    struct tr t;
    struct outcols o;
    size_t i;
    int rc;

    memset(plan, 0, sizeof(*plan));
    memset(&t, 0, sizeof(t));
    memset(&o, 0, sizeof(o));
    t.src = csl;
    t.err = err;
    t.now = now;
    t.op = "table";
    rc = kql_lex(csl, &t.tk, err);
    if (rc < 0) {
        goto out;
    }
    rc = source(&t, db, schema, ctx);
    while (rc == 0) {
        char op[64];

        if (tok(&t)->kind == KQL_EOF ||
            (is_punct(tok(&t), ";") && tok_at(&t, 1)->kind == KQL_EOF)) {
            break;
        }
        if (!take_punct(&t, "|")) {
            rc = syn(&t, "'|' or the end of the query");
            break;
        }
        rc = read_operator(&t, op, sizeof(op));
        if (rc == 0) {
            rc = run_operator(&t, op);
        }
    }
    if (rc < 0) {
        goto out;
    }
    /* the final projection drops "$IngestionTime" */
    for (i = 0; rc == 0 && i < t.cur.ncols; i++) {
        struct sbuf b;

        memset(&b, 0, sizeof(b));
        sb_qident(&b, t.cur.cols[i].name);
        rc = outcols_put(&t, &o, strdup(t.cur.cols[i].name), b.p,
                         t.cur.cols[i].type, 0);
    }
    if (rc == 0) {
        rc = push_stage(&t, &o, 0, 0, NULL);
    }
    if (rc == 0) {
        plan->sql = t.cur.sql;
        plan->cols = t.cur.cols;
        plan->ncols = t.cur.ncols;
        memset(&t.cur, 0, sizeof(t.cur));
    }
out:
    outcols_release(&o);
    rel_release(&t.cur);
    kql_tokens_release(&t.tk);
    return rc;
}
