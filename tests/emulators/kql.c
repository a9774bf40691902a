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
#include "tests/emulators/kql.h"

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

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant). */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
    int64_t era;
    unsigned yoe, doy, doe;

    y -= m <= 2;
    era = (y >= 0 ? y : y - 399) / 400;
    yoe = (unsigned)(y - era * 400);
    doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

static void civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d)
{
    int64_t era;
    unsigned doe, yoe, doy, mp;

    z += 719468;
    era = (z >= 0 ? z : z - 146096) / 146097;
    doe = (unsigned)(z - era * 146097);
    yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    *y = (int64_t)yoe + era * 400;
    doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    mp = (5 * doy + 2) / 153;
    *d = doy - (153 * mp + 2) / 5 + 1;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y += *m <= 2;
}

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
    days = days_from_civil(y, (unsigned)mo, (unsigned)d);
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
    civil_from_days(days, &y, &m, &d);
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
        struct kql_token *t;

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
            size_t pos = i;
            int verbatim = c == '@';
            char *text = NULL;

            if (verbatim) {
                i++;
            }
            rc = lex_string(&lx, &i, verbatim, &text);
            if (rc < 0) {
                return rc;
            }
            t = lex_push(&lx, KQL_STRING, pos);
            if (!t) {
                free(text);
                return -ENOMEM;
            }
            t->text = text;
            continue;
        }
        if (c == '[' && i + 1 < lx.len &&
            (src[i + 1] == '\'' || src[i + 1] == '"')) {
            /* ['name'] */
            size_t pos = i;
            char *text = NULL;

            i++;
            rc = lex_string(&lx, &i, 0, &text);
            if (rc < 0) {
                return rc;
            }
            while (i < lx.len && isspace((unsigned char)src[i])) {
                i++;
            }
            if (i >= lx.len || src[i] != ']') {
                free(text);
                return fail(err, -EINVAL,
                            "Syntax error: SYN0002: expected ']' at "
                            "position %zu",
                            i);
            }
            i++;
            t = lex_push(&lx, KQL_IDENT, pos);
            if (!t) {
                free(text);
                return -ENOMEM;
            }
            t->text = text;
            t->quoted = 1;
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
            size_t start = i, k;

            while (i < lx.len && is_ident_char(src[i])) {
                i++;
            }
            k = i;
            while (k < lx.len && isspace((unsigned char)src[k])) {
                k++;
            }
            if (k < lx.len && src[k] == '(') {
                size_t n = i - start;

                if ((n == 8 && strncmp(src + start, "datetime", 8) == 0) ||
                    (n == 4 && strncmp(src + start, "date", 4) == 0)) {
                    rc = lex_literal_call(&lx, &i, start, 1);
                    if (rc < 0) {
                        return rc;
                    }
                    continue;
                }
                if ((n == 4 && strncmp(src + start, "time", 4) == 0) ||
                    (n == 8 && strncmp(src + start, "timespan", 8) == 0)) {
                    rc = lex_literal_call(&lx, &i, start, 0);
                    if (rc < 0) {
                        return rc;
                    }
                    continue;
                }
            }
            t = lex_push(&lx, KQL_IDENT, start);
            if (!t) {
                return -ENOMEM;
            }
            t->text = dup_range(src + start, i - start);
            if (!t->text) {
                return fail(err, -ENOMEM, "out of memory");
            }
            continue;
        }
        {
            size_t pos = i, n = 1, k;

            for (k = 0; k < sizeof(puncts2) / sizeof(puncts2[0]); k++) {
                if (i + 1 < lx.len && src[i] == puncts2[k][0] &&
                    src[i + 1] == puncts2[k][1]) {
                    n = 2;
                    break;
                }
            }
            if (n == 1 && c == '!' && i + 1 < lx.len &&
                isalpha((unsigned char)src[i + 1])) {
                /* !has, !contains, !in, !between ... */
                n = 1;
                while (i + n < lx.len && is_ident_char(src[i + n])) {
                    n++;
                }
            } else if (n == 1 && !strchr("|(),=<>+-*/%.:;[]{}!", c)) {
                return fail(err, -EINVAL,
                            "Syntax error: SYN0002: unexpected character "
                            "'%c' at position %zu",
                            isprint((unsigned char)c) ? c : '?', pos);
            }
            t = lex_push(&lx, KQL_PUNCT, pos);
            if (!t) {
                return -ENOMEM;
            }
            t->text = dup_range(src + pos, n);
            if (!t->text) {
                return fail(err, -ENOMEM, "out of memory");
            }
            i += n;
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

/* percentile aggregate: keeps every value (long double holds an int64
 * exactly), sorts at the end, returns the nearest-rank value. */
struct pct_state {
    long double *v;
    size_t n, cap;
    double p;
    int any_real;
    int oom;
};

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
    if (s->n == s->cap) {
        size_t ncap = s->cap ? s->cap * 2 : 64;
        long double *nv = sqlite3_realloc64(s->v, ncap * sizeof(*nv));

        if (!nv) {
            s->oom = 1;
            return;
        }
        s->v = nv;
        s->cap = ncap;
    }
    if (vt == SQLITE_INTEGER) {
        s->v[s->n++] = (long double)sqlite3_value_int64(argv[0]);
    } else {
        s->any_real = 1;
        s->v[s->n++] = (long double)sqlite3_value_double(argv[0]);
    }
}

static int cmp_ld(const void *a, const void *b)
{
    long double x = *(const long double *)a, y = *(const long double *)b;

    return x < y ? -1 : x > y;
}

static void pct_final(sqlite3_context *ctx)
{
    struct pct_state *s = sqlite3_aggregate_context(ctx, 0);
    size_t idx;
    double rank;

    if (!s || s->n == 0) {
        if (s) {
            sqlite3_free(s->v);
        }
        sqlite3_result_null(ctx);
        return;
    }
    if (s->oom) {
        sqlite3_free(s->v);
        sqlite3_result_error_nomem(ctx);
        return;
    }
    qsort(s->v, s->n, sizeof(*s->v), cmp_ld);
    rank = ceil(s->p / 100.0 * (double)s->n);
    if (rank < 1) {
        rank = 1;
    }
    idx = rank >= (double)s->n ? s->n - 1 : (size_t)rank - 1;
    if (s->any_real) {
        sqlite3_result_double(ctx, (double)s->v[idx]);
    } else {
        sqlite3_result_int64(ctx, (int64_t)s->v[idx]);
    }
    sqlite3_free(s->v);
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

/* UNFINISHED: the translator lands in the next commit. */
int kql_translate(const char *csl, const char *db, kql_schema_fn schema,
                  void *ctx, int64_t now, struct kql_plan *plan,
                  struct kusto_error *err)
{
    memset(plan, 0, sizeof(*plan));
    return fail(err, -ENOTSUP, "KQL queries are not implemented yet");
}
