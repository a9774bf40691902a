/*
 * ingest_value.c - ADX's conversions of ingested text and JSON values to
 * typed cells (ingest.h, ingest_value.h): datetime (ISO 8601 and the forms
 * ADX accepts), timespan ([-][d.]hh:mm:ss[.f], the servertimeout header),
 * guid, numbers, bool, dynamic. A value that does not convert is stored as
 * null (ADX's rule), it never fails a request. Pure functions, any thread.
 */
#include "emulators/ingest_value.h"

#include "emulators/emu.h"
#include "emulators/ingest.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---- datetime, timespan, guid ---- */

/* Reads exactly n digits at s[*i]; -1 when they are not there. */
static long read_digits(const char *s, size_t len, size_t *i, int n)
{
    long v = 0;

    for (int k = 0; k < n; k++) {
        if (*i >= len || !isdigit((unsigned char)s[*i])) {
            return -1;
        }
        v = v * 10 + (s[*i] - '0');
        (*i)++;
    }
    return v;
}

void ingest_trim(const char **s, size_t *len)
{
    while (*len > 0 && isspace((unsigned char)**s)) {
        (*s)++;
        (*len)--;
    }
    while (*len > 0 && isspace((unsigned char)(*s)[*len - 1])) {
        (*len)--;
    }
}

int ingest_parse_datetime(const char *s, size_t len, int64_t *ticks)
{
    static const int mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    size_t i = 0;
    long y;
    long mo;
    long d;
    long h = 0;
    long mi = 0;
    long sec = 0;
    int64_t frac = 0;
    int64_t offset = 0;
    int64_t t;

    ingest_trim(&s, &len);
    y = read_digits(s, len, &i, 4);
    if (y < 0 || i >= len || s[i++] != '-') {
        return -EINVAL;
    }
    mo = read_digits(s, len, &i, 2);
    if (mo < 1 || mo > 12 || i >= len || s[i++] != '-') {
        return -EINVAL;
    }
    d = read_digits(s, len, &i, 2);
    if (d < 1 || d > mdays[mo - 1]) {
        return -EINVAL;
    }
    if (mo == 2 && d == 29 && !((y % 4 == 0 && y % 100 != 0) || y % 400 == 0)) {
        return -EINVAL;
    }
    if (i < len && (s[i] == 'T' || s[i] == 't' || s[i] == ' ')) {
        i++;
        h = read_digits(s, len, &i, 2);
        if (h < 0 || h > 23 || i >= len || s[i++] != ':') {
            return -EINVAL;
        }
        mi = read_digits(s, len, &i, 2);
        if (mi < 0 || mi > 59) {
            return -EINVAL;
        }
        if (i < len && s[i] == ':') {
            i++;
            sec = read_digits(s, len, &i, 2);
            if (sec < 0 || sec > 60) {
                return -EINVAL;
            }
            if (i < len && (s[i] == '.' || s[i] == ',')) {
                int nd = 0;
                i++;
                if (i >= len || !isdigit((unsigned char)s[i])) {
                    return -EINVAL;
                }
                while (i < len && isdigit((unsigned char)s[i])) {
                    if (nd < 7) {
                        frac = frac * 10 + (s[i] - '0');
                    }
                    nd++;
                    i++;
                }
                for (; nd < 7; nd++) {
                    frac *= 10;
                }
            }
        }
        if (i < len && (s[i] == 'Z' || s[i] == 'z')) {
            i++;
        } else if (i < len && (s[i] == '+' || s[i] == '-')) {
            int sign = s[i] == '-' ? -1 : 1;
            long oh;
            long om = 0;
            i++;
            oh = read_digits(s, len, &i, 2);
            if (oh < 0 || oh > 23) {
                return -EINVAL;
            }
            if (i < len && s[i] == ':') {
                i++;
            }
            if (i < len) {
                om = read_digits(s, len, &i, 2);
                if (om < 0 || om > 59) {
                    return -EINVAL;
                }
            }
            offset = sign * (oh * 3600 + om * 60) * TICKS_PER_SEC;
        }
    }
    if (i != len) {
        return -EINVAL;
    }
    t = emu_days_from_civil(y, (unsigned)mo, (unsigned)d) * 86400 + h * 3600 +
        mi * 60 + sec;
    *ticks = t * TICKS_PER_SEC + frac - offset;
    return 0;
}

int ingest_parse_servertimeout(const char *s, size_t len, uint64_t *ms)
{
    int64_t ticks = 0;
    uint64_t v = 0;
    size_t i;

    ingest_trim(&s, &len);
    for (i = 0; i < len && isdigit((unsigned char)s[i]); i++) {
        if (v > (UINT64_MAX - 9) / 10) {
            return -EINVAL;
        }
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    if (len > 0 && i == len) {
        *ms = v;
        return 0;
    }
    if (ingest_parse_timespan(s, len, &ticks) < 0 || ticks < 0) {
        return -EINVAL;
    }
    *ms = (uint64_t)(ticks / 10000); /* 100 ns ticks -> ms */
    return 0;
}

/* The clock form of a timespan from s[i]: [d.]hh:mm[:ss[.fffffff]]. */
static int timespan_clock(const char *s, size_t len, size_t i, int64_t *ticks)
{
    /* [d.]hh:mm[:ss[.fffffff]] */
    long days = 0;
    long h;
    long mi;
    long sec = 0;
    int64_t frac = 0;
    size_t start = i;
    long v = 0;

    while (i < len && isdigit((unsigned char)s[i]) && i - start < 9) {
        v = v * 10 + (s[i] - '0');
        i++;
    }
    if (i == start || i >= len) {
        return -EINVAL;
    }
    if (s[i] == '.') {
        days = v;
        i++;
        h = read_digits(s, len, &i, 2);
    } else {
        h = v;
    }
    if (h < 0 || h > 23 || i >= len || s[i++] != ':') {
        return -EINVAL;
    }
    mi = read_digits(s, len, &i, 2);
    if (mi < 0 || mi > 59) {
        return -EINVAL;
    }
    if (i < len && s[i] == ':') {
        i++;
        sec = read_digits(s, len, &i, 2);
        if (sec < 0 || sec > 59) {
            return -EINVAL;
        }
        if (i < len && s[i] == '.') {
            int nd = 0;
            i++;
            while (i < len && isdigit((unsigned char)s[i]) && nd < 7) {
                frac = frac * 10 + (s[i] - '0');
                nd++;
                i++;
            }
            if (nd == 0) {
                return -EINVAL;
            }
            for (; nd < 7; nd++) {
                frac *= 10;
            }
        }
    }
    if (i != len) {
        return -EINVAL;
    }
    *ticks =
        ((int64_t)days * 86400 + h * 3600 + mi * 60 + sec) * TICKS_PER_SEC +
        frac;
    return 0;
}

/* The unit form of a timespan from s[i]: a number and a unit, 1d 2h 3m 4s
 * 5ms 6microsecond 7tick. */
static int timespan_unit(const char *s, size_t len, size_t i, int64_t *ticks)
{
    /* number + unit: 1d 2h 3m 4s 5ms 6microsecond 7tick */
    char num[64];
    size_t nl = 0;
    const char *unit;
    size_t ul;
    double v;
    double mult;
    char *end;

    while (i < len && (isdigit((unsigned char)s[i]) || s[i] == '.') &&
           nl + 1 < sizeof(num)) {
        num[nl++] = s[i++];
    }
    num[nl] = '\0';
    if (nl == 0) {
        return -EINVAL;
    }
    v = strtod(num, &end);
    if (*end != '\0') {
        return -EINVAL;
    }
    unit = s + i;
    ul = len - i;
#define UNIT_IS(u) (ul == strlen(u) && strncasecmp(unit, u, ul) == 0)
    if (UNIT_IS("d") || UNIT_IS("day") || UNIT_IS("days")) {
        mult = 86400.0 * TICKS_PER_SEC;
    } else if (UNIT_IS("h") || UNIT_IS("hr") || UNIT_IS("hrs") ||
               UNIT_IS("hour") || UNIT_IS("hours")) {
        mult = 3600.0 * TICKS_PER_SEC;
    } else if (UNIT_IS("m") || UNIT_IS("min") || UNIT_IS("minute") ||
               UNIT_IS("minutes")) {
        mult = 60.0 * TICKS_PER_SEC;
    } else if (UNIT_IS("s") || UNIT_IS("sec") || UNIT_IS("second") ||
               UNIT_IS("seconds")) {
        mult = (double)TICKS_PER_SEC;
    } else if (UNIT_IS("ms") || UNIT_IS("milli") || UNIT_IS("millis") ||
               UNIT_IS("millisecond") || UNIT_IS("milliseconds")) {
        mult = TICKS_PER_SEC / 1000.0;
    } else if (UNIT_IS("microsecond") || UNIT_IS("microseconds")) {
        mult = 10.0;
    } else if (UNIT_IS("tick") || UNIT_IS("ticks")) {
        mult = 1.0;
    } else {
        return -EINVAL;
    }
#undef UNIT_IS
    if (v * mult > 9.2e18) {
        return -EINVAL;
    }
    *ticks = (int64_t)llround(v * mult);
    return 0;
}

int ingest_parse_timespan(const char *s, size_t len, int64_t *ticks)
{
    int neg = 0;
    size_t i = 0;
    int rc;

    ingest_trim(&s, &len);
    if (len == 0) {
        return -EINVAL;
    }
    if (s[0] == '-') {
        neg = 1;
        i++;
    }
    if (memchr(s, ':', len) != NULL) {
        rc = timespan_clock(s, len, i, ticks);
    } else {
        rc = timespan_unit(s, len, i, ticks);
    }
    if (rc < 0) {
        return rc;
    }
    if (neg) {
        *ticks = -*ticks;
    }
    return 0;
}

/* Normalises a GUID (8-4-4-4-12 hex, optional braces) into out[37]. */
static int parse_guid(const char *s, size_t len, char out[37])
{
    ingest_trim(&s, &len);
    if (len == 38 && s[0] == '{' && s[37] == '}') {
        s++;
        len -= 2;
    }
    if (len != 36) {
        return -EINVAL;
    }
    for (size_t i = 0; i < 36; i++) {
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (s[i] != '-') {
                return -EINVAL;
            }
            out[i] = '-';
        } else if (!isxdigit((unsigned char)s[i])) {
            return -EINVAL;
        } else {
            out[i] = (char)tolower((unsigned char)s[i]);
        }
    }
    out[36] = '\0';
    return 0;
}

/* ---- value conversion ---- */

void ingest_value_null(struct kusto_value *v, enum kusto_type t)
{
    memset(v, 0, sizeof(*v));
    v->type = t;
    v->is_null = 1;
}

static int value_str(struct kusto_value *v, const char *s, size_t len)
{
    v->s = malloc(len + 1);
    if (v->s == NULL) {
        v->is_null = 1;
        return -ENOMEM;
    }
    memcpy(v->s, s, len);
    v->s[len] = '\0';
    v->is_null = 0;
    return 0;
}

/* Integer from text, exactly; falls back to a truncated real ("3.0"). */
static int text_to_int64(const char *s, size_t len, int64_t *out)
{
    char buf[64];
    char *end;
    long long ll;
    double d;

    ingest_trim(&s, &len);
    if (len == 0 || len >= sizeof(buf)) {
        return -EINVAL;
    }
    memcpy(buf, s, len);
    buf[len] = '\0';
    errno = 0;
    ll = strtoll(buf, &end, 10);
    if (errno == 0 && *end == '\0') {
        *out = ll;
        return 0;
    }
    errno = 0;
    d = strtod(buf, &end);
    if (errno != 0 || *end != '\0' || !isfinite(d) || d >= 9.2233720368e18 ||
        d <= -9.2233720368e18) {
        return -EINVAL;
    }
    *out = (int64_t)d;
    return 0;
}

int ingest_convert_text(const char *s, size_t len, enum kusto_type t,
                        struct kusto_value *v)
{
    const char *ts = s;
    size_t tl = len;

    ingest_value_null(v, t);
    if (t == KT_STRING) {
        return value_str(v, s, len);
    }
    ingest_trim(&ts, &tl);
    if (tl == 0) {
        return 0;
    }
    switch (t) {
    case KT_BOOL:
        if ((tl == 4 && strncasecmp(ts, "true", 4) == 0) ||
            (tl == 1 && ts[0] == '1')) {
            v->i = 1;
            v->is_null = 0;
        } else if ((tl == 5 && strncasecmp(ts, "false", 5) == 0) ||
                   (tl == 1 && ts[0] == '0')) {
            v->i = 0;
            v->is_null = 0;
        }
        return 0;
    case KT_INT:
    case KT_LONG: {
        int64_t x;
        if (text_to_int64(ts, tl, &x) == 0 &&
            (t == KT_LONG || (x >= INT32_MIN && x <= INT32_MAX))) {
            v->i = x;
            v->is_null = 0;
        }
        return 0;
    }
    case KT_REAL:
    case KT_DECIMAL: {
        char buf[128];
        char *end;
        double d;
        if (tl >= sizeof(buf)) {
            return 0;
        }
        memcpy(buf, ts, tl);
        buf[tl] = '\0';
        d = strtod(buf, &end);
        if (*end == '\0') {
            v->r = d;
            v->is_null = 0;
        }
        return 0;
    }
    case KT_DATETIME:
        if (ingest_parse_datetime(ts, tl, &v->i) == 0) {
            v->is_null = 0;
        }
        return 0;
    case KT_TIMESPAN:
        if (ingest_parse_timespan(ts, tl, &v->i) == 0) {
            v->is_null = 0;
        }
        return 0;
    case KT_GUID: {
        char g[37];
        if (parse_guid(ts, tl, g) == 0) {
            return value_str(v, g, 36);
        }
        return 0;
    }
    case KT_DYNAMIC: {
        cJSON *j = cJSON_ParseWithLength(ts, tl);
        char *txt;
        int rc;
        if (j == NULL) {
            /* not JSON: a dynamic string */
            txt = strndup(ts, tl);
            if (txt == NULL) {
                return -ENOMEM;
            }
            j = cJSON_CreateString(txt);
            free(txt);
            if (j == NULL) {
                return -ENOMEM;
            }
        }
        txt = cJSON_PrintUnformatted(j);
        cJSON_Delete(j);
        if (txt == NULL) {
            return -ENOMEM;
        }
        rc = value_str(v, txt, strlen(txt));
        cJSON_free(txt);
        return rc;
    }
    default:
        return 0;
    }
}

/* Converts a JSON value (NULL: missing) to type t. */
int ingest_convert_json(const cJSON *item, enum kusto_type t,
                        struct kusto_value *v)
{
    ingest_value_null(v, t);
    if (item == NULL || cJSON_IsNull(item)) {
        return 0;
    }
    if (cJSON_IsString(item)) {
        if (t == KT_DYNAMIC) {
            char *txt = cJSON_PrintUnformatted(item);
            int rc;
            if (txt == NULL) {
                return -ENOMEM;
            }
            rc = value_str(v, txt, strlen(txt));
            cJSON_free(txt);
            return rc;
        }
        return ingest_convert_text(item->valuestring, strlen(item->valuestring),
                                   t, v);
    }
    switch (t) {
    case KT_BOOL:
        if (cJSON_IsBool(item)) {
            v->i = cJSON_IsTrue(item) ? 1 : 0;
            v->is_null = 0;
        } else if (cJSON_IsNumber(item)) {
            v->i = item->valuedouble != 0.0;
            v->is_null = 0;
        }
        return 0;
    case KT_INT:
    case KT_LONG:
        if (cJSON_IsNumber(item)) {
            double d = item->valuedouble;
            double lo = t == KT_INT ? (double)INT32_MIN : -9.2233720368e18;
            double hi = t == KT_INT ? (double)INT32_MAX : 9.2233720368e18;
            if (isfinite(d) && d >= lo && d <= hi) {
                v->i = (int64_t)d;
                v->is_null = 0;
            }
        } else if (cJSON_IsBool(item)) {
            v->i = cJSON_IsTrue(item) ? 1 : 0;
            v->is_null = 0;
        }
        return 0;
    case KT_REAL:
    case KT_DECIMAL:
        if (cJSON_IsNumber(item)) {
            v->r = item->valuedouble;
            v->is_null = 0;
        } else if (cJSON_IsBool(item)) {
            v->r = cJSON_IsTrue(item) ? 1.0 : 0.0;
            v->is_null = 0;
        }
        return 0;
    case KT_STRING:
    case KT_DYNAMIC: {
        char *txt = cJSON_PrintUnformatted(item);
        int rc;
        if (txt == NULL) {
            return -ENOMEM;
        }
        rc = value_str(v, txt, strlen(txt));
        cJSON_free(txt);
        return rc;
    }
    default:
        /* datetime, timespan, guid from a non-string: null */
        return 0;
    }
}
