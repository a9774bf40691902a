/*
 * iso8601.c - the UTC time parser (grammar in iso8601.h). Pure: no locale,
 * no time zone, no strptime (whose %Y and %d skip blanks and accept one
 * digit), so the grammar is exactly what the header says.
 */
#include "base/iso8601.h"

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>

/* Reads exactly n digits at *p into *v and advances *p. */
static bool digits(const char **p, int n, int *v)
{
    int x = 0;

    for (int i = 0; i < n; i++) {
        char c = (*p)[i];

        if (c < '0' || c > '9') {
            return false;
        }
        x = x * 10 + (c - '0');
    }
    *p += n;
    *v = x;
    return true;
}

static bool leap(int y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static int month_days(int y, int m)
{
    static const int days[12] = {31, 28, 31, 30, 31, 30,
                                 31, 31, 30, 31, 30, 31};

    return m == 2 && leap(y) ? 29 : days[m - 1];
}

/* Days from 1970-01-01 to y-m-d (proleptic Gregorian; H. Hinnant's
 * days_from_civil). */
static int64_t days_from_civil(int y, int m, int d)
{
    int64_t era, yoe, doy, doe;

    y -= m <= 2;
    era = y / 400;
    yoe = y - era * 400;
    doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

/* clock = hh ":" mm ":" ss [ "." digit+ ], into ms of the day. */
static int parse_clock(const char **p, int64_t *ms)
{
    const char *s = *p;
    int hh, mm, ss, frac = 0, nfrac = 0;

    if (!digits(&s, 2, &hh) || *s++ != ':' || !digits(&s, 2, &mm) ||
        *s++ != ':' || !digits(&s, 2, &ss)) {
        return -EINVAL;
    }
    if (hh > 23 || mm > 59 || ss > 60) {
        return -EINVAL;
    }
    if (*s == '.') {
        s++;
        while (*s >= '0' && *s <= '9') {
            if (nfrac < 3) {
                frac = frac * 10 + (*s - '0');
            }
            nfrac++;
            s++;
        }
        if (nfrac == 0) {
            return -EINVAL;
        }
        for (; nfrac < 3; nfrac++) {
            frac *= 10;
        }
    }
    *ms = ((int64_t)hh * 3600 + mm * 60 + ss) * 1000 + frac;
    *p = s;
    return 0;
}

int iso8601_parse_ms(const char *s, int64_t *out)
{
    int y, m, d;
    int64_t ms = 0;

    if (s == NULL || !digits(&s, 4, &y) || *s++ != '-' || !digits(&s, 2, &m) ||
        *s++ != '-' || !digits(&s, 2, &d)) {
        return -EINVAL;
    }
    if (y < 1970 || m < 1 || m > 12 || d < 1 || d > month_days(y, m)) {
        return -EINVAL;
    }
    if (*s == 'T' || *s == ' ') {
        s++;
        if (parse_clock(&s, &ms) < 0) {
            return -EINVAL;
        }
        if (*s == 'Z') {
            s++;
        }
    }
    if (*s != '\0') {
        return -EINVAL;
    }
    *out = days_from_civil(y, m, d) * 86400000 + ms;
    return 0;
}
