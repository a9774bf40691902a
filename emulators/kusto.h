/*
 * kusto.h - the ADX emulator's engine: databases, tables, columns, JSON
 * mappings, streaming policies and rows, kept in one SQLite database; the
 * management commands and the KQL query subset run against it.
 *
 * The HTTP surface (adx_emulator.c) owns the sockets, auth, gzip, fault
 * injection and the parsing of ingest bodies; it calls this engine for
 * everything that touches the catalog or the rows. Not thread-safe: one
 * engine is used from the emulator's loop thread only.
 *
 * Storage conventions (the contract between the HTTP side and the engine):
 * - ADX table T of database D is SQLite table "D.T" (quoted), with one
 *   SQLite column per ADX column in order, plus a last hidden column
 *   "$IngestionTime".
 * - Values are stored as: int/long/timespan -> INTEGER (timespan in 100 ns
 *   ticks); real -> REAL; bool -> INTEGER 0/1; datetime -> INTEGER, 100 ns
 *   ticks since the Unix epoch; string, guid -> TEXT; dynamic -> TEXT (JSON).
 *   NULL is NULL.
 * - Names of databases are created on first use by `.create table` or by
 *   kusto_open's list; D must exist for ingest and query.
 */
#ifndef KADX_KUSTO_H
#define KADX_KUSTO_H

#include <stddef.h>
#include <stdint.h>

struct kusto;

enum kusto_type {
    KT_BOOL = 0,
    KT_INT,
    KT_LONG,
    KT_REAL,
    KT_STRING,
    KT_DATETIME,
    KT_TIMESPAN,
    KT_GUID,
    KT_DYNAMIC,
    KT_DECIMAL,
};

/* "long", "int", "string", ... (the ADX/KQL lower-case names). */
const char *kusto_type_name(enum kusto_type t);
/* Parses a KQL type name or one of its aliases, case-insensitively ("int64",
 * "double", "date", "boolean", "uuid", ...; "System.Int64" style names from
 * v1 tables are NOT accepted): the one table for `.create table` columns and
 * ingestion mappings' "datatype". 0 or -EINVAL */
int kusto_type_parse(const char *name, enum kusto_type *out);
/* The v1 DataType name for a column of this type ("Int64", "String", ...). */
const char *kusto_type_v1_name(enum kusto_type t);

/* An error in the OneApi shape: HTTP status, code and message. */
struct kusto_error {
    int status;    /* 400, 404, ... */
    int permanent; /* "@permanent" */
    char code[64]; /* e.g. "BadRequest_EntityNotFound" */
    char message[512];
};

/* A cell of a result table. */
struct kusto_value {
    enum kusto_type type;
    int is_null;
    int64_t i; /* bool, int, long, datetime, timespan */
    double r;  /* real */
    char *s;   /* string, guid, dynamic (JSON text); owned by the result */
};

struct kusto_column {
    char *name;
    enum kusto_type type;
};

struct kusto_table {
    char *name; /* "Table_0", "PrimaryResult", ... */
    size_t ncols;
    struct kusto_column *cols;
    size_t nrows;
    struct kusto_value *cells; /* nrows * ncols, row-major */
};

struct kusto_result {
    size_t ntables;
    struct kusto_table *tables;
};

void kusto_result_free(struct kusto_result *r);

/* path NULL or ":memory:" keeps everything in memory. Returns NULL and
 * fills err on failure. */
struct kusto *kusto_open(const char *path, char *err, size_t errlen);
void kusto_close(struct kusto *k);

/* Creates database `db` if it is not there (the emulator's --database). */
int kusto_create_database(struct kusto *k, const char *db);
int kusto_database_exists(struct kusto *k, const char *db);

/*
 * Runs a management command (starts with '.') or a KQL query against
 * database db. Returns 0 and *out (owned; free with kusto_result_free), or
 * a negative errno with err filled (status 400 for syntax and semantic
 * errors, naming the unsupported operator or the bad token).
 */
int kusto_execute(struct kusto *k, const char *db, const char *csl,
                  struct kusto_result **out, struct kusto_error *err);

/* Schema of db.table for the ingest path. Returns 0 and fills *cols and
 * *ncols (owned by the engine, valid until the next call into the
 * engine), or -ENOENT with err filled (database or table unknown). */
int kusto_table_schema(struct kusto *k, const char *db, const char *table,
                       const struct kusto_column **cols, size_t *ncols,
                       struct kusto_error *err);

/* The JSON text of mapping `name` (kind json) of db.table, owned by the
 * engine (valid as above), or -ENOENT with err filled
 * (BadRequest_MappingReferenceWasNotFound, permanent). */
int kusto_mapping_get(struct kusto *k, const char *db, const char *table,
                      const char *name, const char **json,
                      struct kusto_error *err);
/* Same for a mapping of another kind ("avro": an Avro mapping). */
int kusto_mapping_get_kind(struct kusto *k, const char *db, const char *table,
                           const char *kind, const char *name,
                           const char **json, struct kusto_error *err);

/* 1 when streaming ingestion is enabled for db.table (the table's policy
 * wins over the database's), else 0. */
int kusto_streaming_enabled(struct kusto *k, const char *db, const char *table);

/*
 * Appends nrows rows of values (row-major, ncols = the table's column count,
 * in schema order) to db.table in one transaction, stamping
 * $IngestionTime = ingest_ticks (100 ns since the epoch). When the engine
 * was opened with counting only (kusto_set_count_only), the rows are counted
 * and not stored. Returns 0 or a negative errno with err filled.
 */
int kusto_insert_rows(struct kusto *k, const char *db, const char *table,
                      const struct kusto_value *values, size_t nrows,
                      int64_t ingest_ticks, struct kusto_error *err);

/* Benchmark mode: accept and count rows without storing them. */
void kusto_set_count_only(struct kusto *k, int on);
/* Rows accepted so far (stored or counted). */
uint64_t kusto_rows_accepted(struct kusto *k);

/* Adds a column to db.table (a mapping that names a new column with a
 * valid datatype adds it on first ingest). 0, or negative errno + err. */
int kusto_add_column(struct kusto *k, const char *db, const char *table,
                     const char *column, enum kusto_type type,
                     struct kusto_error *err);

/*
 * The rows of `.get ingestion resources`: fn fills up to max (type, root)
 * pairs, roots malloc'd (freed by the engine), and returns their count.
 * Called on the engine's thread for each command. NULL: no rows.
 */
#define KUSTO_MAX_RESOURCES 16
typedef size_t (*kusto_resources_fn)(void *data, const char **types,
                                     char **roots, size_t max);
void kusto_set_resources_fn(struct kusto *k, kusto_resources_fn fn, void *data);

#endif
