/*
 * ingest.h - the ADX emulator's ingest-body parsing: gunzip, the stream
 * formats (json = JSON lines, multijson, csv), JSON ingestion mappings
 * ($.a.b, $['x y'], $, ConstValue, the DateTimeFromUnix* transforms) or the
 * identity mapping, and the conversion of each value to its column's type
 * the way ADX does it: a value that does not convert becomes null.
 *
 * Pure functions over buffers: no I/O, no engine calls (the caller fetches
 * the schema and the mapping text from kusto.h and inserts the rows). Any
 * thread; no shared state.
 */
#ifndef KADX_INGEST_H
#define KADX_INGEST_H

#include <stddef.h>
#include <stdint.h>

#include "emulators/kusto.h"

enum ingest_format {
    INGEST_JSON = 0, /* JSON lines; "singlejson" is read the same way */
    INGEST_MULTIJSON,
    INGEST_CSV,
    INGEST_AVRO, /* an Avro object container file (codec null or deflate) */
};

/* Case-insensitive: json, singlejson, multijson, csv, avro, apacheavro.
 * 0 or -ENOTSUP. */
int ingest_format_parse(const char *s, enum ingest_format *out);

enum ingest_transform {
    INGEST_TR_NONE = 0,
    INGEST_TR_UNIX_SECONDS,
    INGEST_TR_UNIX_MILLISECONDS,
    INGEST_TR_UNIX_MICROSECONDS,
    INGEST_TR_UNIX_NANOSECONDS,
    INGEST_TR_PROPERTY_BAG_ARRAY_TO_DICT,
    INGEST_TR_SOURCE_LOCATION,
    INGEST_TR_SOURCE_LINE_NUMBER,
    INGEST_TR_DROP_MAPPED_FIELDS,
};

/* One path step: an object key or an array index. */
struct ingest_step {
    char *key; /* NULL for an index step */
    long index;
};

/* One mapping element (a plain value struct, owned by its mapping). */
struct ingest_mapping_entry {
    char *column;
    int has_type; /* "datatype" was given and valid */
    enum kusto_type type;
    int is_const;      /* ConstValue, or a Path that does not start with $ */
    char *const_value; /* when is_const */
    struct ingest_step *steps; /* the JSON path after '$' */
    size_t nsteps;             /* 0 with !is_const: the whole record */
    enum ingest_transform transform;
    long col_index; /* set by ingest_mapping_bind, -1 before */
};

struct ingest_mapping {
    size_t n;
    struct ingest_mapping_entry *e;
};

/*
 * Parses a JSON mapping (an array of {"column","datatype","Properties":
 * {"Path","Transform","ConstValue"}} or the flat legacy form with "path").
 * An Avro mapping has the same shape; its "Field" property names a
 * top-level field (Path "$.<field>").
 * Returns 0 and *out (free with ingest_mapping_free) or a negative errno
 * with err filled (400, permanent).
 */
int ingest_mapping_parse(const char *json, struct ingest_mapping **out,
                         struct kusto_error *err);
void ingest_mapping_free(struct ingest_mapping *m);

/*
 * Resolves each entry's column against the table's schema. Returns 0, or
 * -ENOENT with err filled naming the first column that is missing (the
 * caller may add columns that have a datatype and bind again).
 */
int ingest_mapping_bind(struct ingest_mapping *m,
                        const struct kusto_column *cols, size_t ncols,
                        struct kusto_error *err);

/*
 * Adds to db.table the columns of m that the table lacks and that have a
 * datatype (ADX adds a mapped column with a datatype on first ingest), so
 * that a second ingest_mapping_bind finds them. 0, or < 0 with err filled.
 */
int ingest_mapping_add_columns(struct kusto *k, const char *db,
                               const char *table,
                               const struct ingest_mapping *m,
                               struct kusto_error *err);

/* Parsed rows: nrows * ncols values, row-major; strings owned here. */
struct ingest_rows {
    struct kusto_value *values;
    size_t ncols;
    size_t nrows;
    size_t cap; /* rows allocated */
};

/* Frees the values and their strings; the struct itself is the caller's.
 * Accepts a zeroed struct. */
void ingest_rows_release(struct ingest_rows *r);

/*
 * Parses body (len bytes; need not be NUL-terminated) in format fmt into
 * rows for a table with the given columns. m (bound) applies a JSON mapping;
 * NULL means the identity mapping (JSON: fields named like the columns;
 * CSV: fields by position). max_rows caps the row count (0: no cap).
 * Returns 0 (out filled, possibly with 0 rows), or a negative errno with
 * err filled: -EBADMSG for data that is not valid for its format (400,
 * permanent; json and multijson name the record), -E2BIG over max_rows,
 * -ENOMEM.
 */
int ingest_parse(const char *body, size_t len, enum ingest_format fmt,
                 const struct kusto_column *cols, size_t ncols,
                 const struct ingest_mapping *m, size_t max_rows,
                 struct ingest_rows *out, struct kusto_error *err);

/*
 * Inflates a gzip (or zlib) body into a new buffer (*out, *outlen; free
 * with free(); NUL-terminated). Output over max_out bytes is -EMSGSIZE.
 * Corrupt or truncated input is -EBADMSG. err is filled on failure.
 */
int ingest_gunzip(const void *in, size_t inlen, size_t max_out, char **out,
                  size_t *outlen, struct kusto_error *err);

/* ---- value conversions (exported for the tests and the engine's use) ---- */

/* ISO 8601 ("2024-05-01", "2024-05-01T10:20:30.1234567Z", "... +02:00",
 * space for T) to 100 ns ticks since the Unix epoch. 0 or -EINVAL. */
int ingest_parse_datetime(const char *s, size_t len, int64_t *ticks);
/* "[-][d.]hh:mm[:ss[.fffffff]]" or "1d" "2h" "3m" "4s" "5ms" to ticks. */
int ingest_parse_timespan(const char *s, size_t len, int64_t *ticks);

/* A streaming-ingest request's `servertimeout` header in milliseconds: a
 * KQL timespan ("00:10:00", "10m"), or a bare integer of milliseconds, the
 * form the Java SDK 7.0.x sends on streaming ingest (its
 * ClientRequestProperties option, a Long of ms, copied as the header:
 * "600000"). 0, or -EINVAL for anything else or a negative span. */
int ingest_parse_servertimeout(const char *s, size_t len, uint64_t *ms);
/* Converts text (a CSV field or a string constant) to type t into v.
 * Never fails: a bad value is null. Strings are strdup'ed (NULL on OOM
 * gives -ENOMEM). */
int ingest_convert_text(const char *s, size_t len, enum kusto_type t,
                        struct kusto_value *v);

#endif
