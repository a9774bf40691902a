/*
 * kql.h - the KQL side of the ADX emulator's engine: a lexer shared with
 * the management-command parser in kusto.c, the datetime/timespan literal
 * parsers and formatters, the SQLite functions the translated queries call,
 * and the translator from a single KQL pipeline to one SQLite SELECT.
 *
 * Nothing here owns a database: kusto.c hands in the schema of a table
 * through a callback and runs the SQL it gets back. Not thread-safe per
 * call chain (no shared state: every call works on its own buffers).
 */
#ifndef KADX_KQL_H
#define KADX_KQL_H

#include <sqlite3.h>
#include <stddef.h>
#include <stdint.h>

#include "emulators/kusto.h"

/* Caps on input fed from outside (a CSL text comes from HTTP bodies). */
#define KQL_MAX_TEXT   (4u * 1024u * 1024u)
#define KQL_MAX_TOKENS 200000u
#define KQL_MAX_DEPTH  200

/* 100 ns ticks. */
#define KQL_TICKS_PER_SEC  10000000LL
#define KQL_TICKS_PER_DAY  (86400LL * KQL_TICKS_PER_SEC)
#define KQL_TICKS_PER_HOUR (3600LL * KQL_TICKS_PER_SEC)

enum kql_tok_kind {
    KQL_EOF = 0,
    KQL_IDENT,    /* text = name; quoted = 1 for ['x'] / ["x"] */
    KQL_STRING,   /* text = decoded value */
    KQL_LONG,     /* i */
    KQL_REAL,     /* r */
    KQL_TIMESPAN, /* i = ticks; from 1h or time(...)/timespan(...) */
    KQL_DATETIME, /* i = ticks, is_null for datetime(null) */
    KQL_PUNCT,    /* text = "==", "|", "(", "!has", ... */
};

struct kql_token {
    enum kql_tok_kind kind;
    size_t pos; /* byte offset in the source */
    char *text; /* owned; NULL for numbers and literals */
    int quoted;
    int is_null;
    int64_t i;
    double r;
};

struct kql_tokens {
    struct kql_token *v; /* n tokens, the last one KQL_EOF */
    size_t n;
};

/* Splits src into tokens. 0, or -EINVAL / -EMSGSIZE / -ENOMEM with err
 * filled (status 400, code General_BadRequest, message naming the token).
 * *out is owned by the caller: kql_tokens_release (also after errors). */
int kql_lex(const char *src, struct kql_tokens *out, struct kusto_error *err);
void kql_tokens_release(struct kql_tokens *t);

/* Parses "2026-11-24", "2026-11-24T10:00:00Z", "2026-11-24 10:00:00.1234567",
 * with an optional Z or +hh:mm offset, into ticks since the epoch. n is the
 * length of s. 0 or -EINVAL. */
int kql_parse_datetime(const char *s, size_t n, int64_t *ticks);
/* Parses "1.02:03:04.5", "02:03:04", "-00:00:01", or a KQL timespan literal
 * body ("2h", "1.5d", "100ms", "10") into ticks (a bare number is days, as
 * in time(10)). 0 or -EINVAL. */
int kql_parse_timespan(const char *s, size_t n, int64_t *ticks);
/* "2026-11-24T10:00:00.0000000Z" (always 7 fractional digits). buf needs
 * 32 bytes; returns buf. */
char *kql_format_datetime(int64_t ticks, char *buf, size_t len);
/* "[-][d.]hh:mm:ss.fffffff" ("00:00:01.5000000", "1.00:00:00"): fraction
 * printed only when nonzero, as ADX does. buf needs 40 bytes. */
char *kql_format_timespan(int64_t ticks, char *buf, size_t len);

/* Registers the kql_* scalar functions and aggregates the translated SQL
 * uses on db. 0 or -EIO. */
int kql_register(sqlite3 *db);

/* Returns the schema of table `name` in *cols (borrowed, valid for the
 * duration of kql_translate), 0 or -ENOENT. */
typedef int (*kql_schema_fn)(void *ctx, const char *name,
                             const struct kusto_column **cols, size_t *ncols);

struct kql_plan {
    char *sql;                 /* owned */
    size_t ncols;              /* result columns */
    struct kusto_column *cols; /* owned (names too) */
};

/*
 * Translates one KQL pipeline (`T | where ... | summarize ...`) over the
 * tables of database `db` into one SQLite SELECT that yields the result
 * columns in order. now_ticks is the query's now(). 0, or a negative errno
 * with err filled (status 400; unknown tables and columns as ADX's SEM0100,
 * unsupported operators and functions by name). plan is released with
 * kql_plan_release (also after errors).
 */
int kql_translate(const char *csl, const char *db, kql_schema_fn schema,
                  void *ctx, int64_t now_ticks, struct kql_plan *plan,
                  struct kusto_error *err);
void kql_plan_release(struct kql_plan *plan);

/* Quotes a SQLite identifier ("a""b") into buf; returns buf, or NULL when
 * it does not fit. */
char *kql_quote_ident(const char *name, char *buf, size_t len);

#endif
