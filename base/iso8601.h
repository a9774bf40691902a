/*
 * iso8601.h - the one parser for UTC times given by people: admin's
 * POST /replay ("from"/"to") and `kadx recover --since/--until` both use it,
 * so the two accept the same text.
 *
 * Grammar (UTC only; no offsets, no week or ordinal dates):
 *
 *   time     = date [ sep clock [ "Z" ] ]
 *   date     = YYYY "-" MM "-" DD            4, 2 and 2 digits
 *   sep      = "T" | " "
 *   clock    = hh ":" mm ":" ss [ "." digit+ ]
 *
 * The date alone means midnight UTC; a clock without "Z" is UTC too.
 * Fields are range-checked (month 1-12, the day within its month, leap
 * years included; hh 0-23, mm 0-59, ss 0-60 where 60 is a leap second and
 * counts as the next second). Fraction digits beyond the third are read
 * and dropped (truncated, not rounded). Years 1970-9999.
 * Examples: "2026-01-31", "2026-01-31T12:00:00Z", "2026-01-31 12:00:00.25".
 */
#ifndef KADX_BASE_ISO8601_H
#define KADX_BASE_ISO8601_H

#include <stdint.h>

/* Parses s (borrowed, the whole string) into ms since the Unix epoch.
 * Returns 0, or -EINVAL with *out untouched. */
int iso8601_parse_ms(const char *s, int64_t *out);

#endif
