/*
 * kusto.c - the ADX emulator's engine: the catalog (databases, tables,
 * columns, ingestion mappings, streaming policies) and its reads, the
 * rows, the entry point of queries and commands, and the KQL queries
 * (translated to SQL by kql.c), all kept in one SQLite database. The
 * catalog changes are in kusto_ddl.c, the management commands in
 * kusto_cmd.c; what the three share is kusto_internal.h.
 *
 * Schema of that database (kusto.h states the row-table conventions):
 *   "$kusto_databases"(name PK, streaming)     streaming NULL = no policy
 *   "$kusto_tables"(db, name, folder, docstring, streaming, itime),
 *                  PK (db, name); itime 0 = IngestionTime policy off
 *                  (ingestion_time() null for rows ingested then), NULL/1
 *                  on (ADX's default for new tables)
 *   "$kusto_columns"(db, tbl, ord, name, type)  type = KQL type name
 *   "$kusto_mappings"(db, tbl, kind, name, json, updated), PK all four keys
 *   "D.T"(<one column per ADX column, in order>, "$IngestionTime")
 * The catalog rows and the row table of a table change together in one
 * transaction. A column added later (.create-merge, kusto_add_column)
 * rebuilds "D.T" so that "$IngestionTime" stays the last column.
 *
 * Owned by one thread (the emulator's loop thread): no locking. Pointers
 * handed out by kusto_table_schema and kusto_mapping_get point at scratch
 * buffers of the engine and stay valid until the next call that reads or
 * changes the catalog.
 */
#include "emulators/kusto_internal.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sqlite3.h>

#include "emulators/kql.h"

/* ------------------------------------------------------------------ */
/* Types                                                                */

static const char *const type_names[] = {
    [KT_BOOL] = "bool",         [KT_INT] = "int",
    [KT_LONG] = "long",         [KT_REAL] = "real",
    [KT_STRING] = "string",     [KT_DATETIME] = "datetime",
    [KT_TIMESPAN] = "timespan", [KT_GUID] = "guid",
    [KT_DYNAMIC] = "dynamic",   [KT_DECIMAL] = "decimal",
};

static const char *const type_v1_names[] = {
    [KT_BOOL] = "Boolean",      [KT_INT] = "Int32",
    [KT_LONG] = "Int64",        [KT_REAL] = "Double",
    [KT_STRING] = "String",     [KT_DATETIME] = "DateTime",
    [KT_TIMESPAN] = "TimeSpan", [KT_GUID] = "Guid",
    [KT_DYNAMIC] = "Object",    [KT_DECIMAL] = "Decimal",
};

const char *kusto_type_name(enum kusto_type t)
{
    if ((unsigned)t > KT_DECIMAL) {
        return "unknown";
    }
    return type_names[t];
}

const char *kusto_type_v1_name(enum kusto_type t)
{
    if ((unsigned)t > KT_DECIMAL) {
        return "Object";
    }
    return type_v1_names[t];
}

int kusto_type_parse(const char *name, enum kusto_type *out)
{
    static const struct {
        const char *name;
        enum kusto_type t;
    } aliases[] = {
        {"bool", KT_BOOL},       {"boolean", KT_BOOL},
        {"int", KT_INT},         {"int32", KT_INT},
        {"long", KT_LONG},       {"int64", KT_LONG},
        {"real", KT_REAL},       {"double", KT_REAL},
        {"string", KT_STRING},   {"datetime", KT_DATETIME},
        {"date", KT_DATETIME},   {"timespan", KT_TIMESPAN},
        {"time", KT_TIMESPAN},   {"guid", KT_GUID},
        {"uuid", KT_GUID},       {"uniqueid", KT_GUID},
        {"dynamic", KT_DYNAMIC}, {"decimal", KT_DECIMAL},
    };
    size_t i;

    if (!name) {
        return -EINVAL;
    }
    for (i = 0; i < sizeof(aliases) / sizeof(aliases[0]); i++) {
        if (strcasecmp(name, aliases[i].name) == 0) {
            *out = aliases[i].t;
            return 0;
        }
    }
    return -EINVAL;
}

/* The SQLite declared type of a column of this type. */
const char *kusto_sql_type(enum kusto_type t)
{
    switch (t) {
    case KT_REAL:
    case KT_DECIMAL:
        return "REAL";
    case KT_STRING:
    case KT_GUID:
    case KT_DYNAMIC:
        return "TEXT";
    default:
        return "INTEGER";
    }
}

/* ------------------------------------------------------------------ */
/* Errors and small helpers                                            */

int kusto_err(struct kusto_error *err, int rc, int status, const char *code,
              const char *fmt, ...)
{
    va_list ap;

    if (err) {
        err->status = status;
        err->permanent = status >= 400 && status < 500 && status != 429;
        snprintf(err->code, sizeof(err->code), "%s", code);
        va_start(ap, fmt);
        vsnprintf(err->message, sizeof(err->message), fmt, ap);
        va_end(ap);
    }
    return rc;
}

int kusto_sql_fail(struct kusto *k, struct kusto_error *err, const char *what)
{
    return kusto_err(err, -EIO, 500, "Internal_ServiceError", "%s: %s", what,
                     sqlite3_errmsg(k->db));
}

int kusto_no_table(struct kusto_error *err, const char *db, const char *table)
{
    return kusto_err(err, -ENOENT, 404, "BadRequest_EntityNotFound",
                     "Entity ID '%s' of kind 'Table' was not found in database "
                     "'%s'",
                     table, db);
}

int kusto_no_db(struct kusto_error *err, const char *db)
{
    return kusto_err(err, -ENOENT, 404, "BadRequest_EntityNotFound",
                     "Entity ID '%s' of kind 'Database' was not found", db);
}

/* "D.T" quoted as a SQLite identifier into buf. */
int kusto_row_table_name(const char *db, const char *table, char *buf,
                         size_t len)
{
    char raw[2 * NAME_MAX_LEN + 2];

    if (strlen(db) + strlen(table) + 2 > sizeof(raw)) {
        return -ENAMETOOLONG;
    }
    /* lengths checked above; the precision only quiets -Wformat-truncation */
    snprintf(raw, sizeof(raw), "%.*s.%.*s", NAME_MAX_LEN, db, NAME_MAX_LEN,
             table);
    if (!kql_quote_ident(raw, buf, len)) {
        return -ENAMETOOLONG;
    }
    return 0;
}

void kusto_sb_ident(struct sbuf *b, const char *name)
{
    const char *p;

    sbuf_printf(b, "\"");
    for (p = name; *p; p++) {
        if (*p == '"') {
            sbuf_printf(b, "\"\"");
        } else {
            sbuf_printf(b, "%c", *p);
        }
    }
    sbuf_printf(b, "\"");
}

int kusto_exec(struct kusto *k, const char *sql, struct kusto_error *err)
{
    char *msg = NULL;

    if (sqlite3_exec(k->db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        kusto_err(err, -EIO, 500, "Internal_ServiceError", "sqlite: %s",
                  msg ? msg : "error");
        sqlite3_free(msg);
        return -EIO;
    }
    return 0;
}

/* Runs the SQL built in b, then frees b's text; -ENOMEM when building it
 * ran out of memory. */
int kusto_exec_sb(struct kusto *k, struct sbuf *b, struct kusto_error *err)
{
    int rc;

    if (b->err) {
        free(b->p);
        return kusto_err(err, -ENOMEM, 500, "Internal_ServiceError",
                         "out of memory");
    }
    rc = kusto_exec(k, b->p, err);
    free(b->p);
    return rc;
}

/* The prepared statement for a constant SQL text (cached; NULL when it
 * does not prepare). Give it back with stmt_done, never finalize it. */
static sqlite3_stmt *cached(struct kusto *k, const char *sql)
{
    size_t i;

    for (i = 0; i < STMT_CACHE && k->cache[i].sql; i++) {
        if (k->cache[i].sql == sql || strcmp(k->cache[i].sql, sql) == 0) {
            return k->cache[i].st;
        }
    }
    if (i == STMT_CACHE) {
        return NULL;
    }
    if (sqlite3_prepare_v3(k->db, sql, -1, SQLITE_PREPARE_PERSISTENT,
                           &k->cache[i].st, NULL) != SQLITE_OK) {
        k->cache[i].st = NULL;
        return NULL;
    }
    k->cache[i].sql = sql;
    return k->cache[i].st;
}

/* Resets a cached statement so that it holds no lock and no bindings. */
static void stmt_done(sqlite3_stmt *st)
{
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
}

/* Binds the text parameters a, b, c, d (up to the first NULL) as ?1..?4. */
static void bind_texts(sqlite3_stmt *st, const char *a, const char *b,
                       const char *c, const char *d)
{
    const char *v[4] = {a, b, c, d};

    for (int i = 0; i < 4 && v[i]; i++) {
        sqlite3_bind_text(st, i + 1, v[i], -1, SQLITE_TRANSIENT);
    }
}

/* The cached statement for sql with its text parameters bound (see
 * bind_texts), or NULL when it does not prepare. Give it back with
 * stmt_done. */
static sqlite3_stmt *cached_bound(struct kusto *k, const char *sql,
                                  const char *a, const char *b, const char *c,
                                  const char *d)
{
    sqlite3_stmt *st = cached(k, sql);

    if (st) {
        bind_texts(st, a, b, c, d);
    }
    return st;
}

/* 1 when the lookup sql (parameters a, b) finds a row; 0 when it finds
 * none or cannot run. */
static int row_exists(struct kusto *k, const char *sql, const char *a,
                      const char *b)
{
    sqlite3_stmt *st = cached_bound(k, sql, a, b, NULL, NULL);
    int found;

    if (!st) {
        return 0;
    }
    found = sqlite3_step(st) == SQLITE_ROW;
    stmt_done(st);
    return found;
}

/* Column 0 of the first row of the lookup sql (parameters a, b) as 1 or 0;
 * dflt when there is no row, the value is NULL or the lookup cannot run. */
static int flag_value(struct kusto *k, const char *sql, const char *a,
                      const char *b, int dflt)
{
    sqlite3_stmt *st = cached_bound(k, sql, a, b, NULL, NULL);
    int v = dflt;

    if (!st) {
        return dflt;
    }
    if (sqlite3_step(st) == SQLITE_ROW &&
        sqlite3_column_type(st, 0) != SQLITE_NULL) {
        v = sqlite3_column_int(st, 0) ? 1 : 0;
    }
    stmt_done(st);
    return v;
}

/* Runs the catalog change sql with up to four text parameters (see
 * bind_texts); 0 or -EIO. */
int kusto_exec_bound(struct kusto *k, const char *sql, const char *a,
                     const char *b, const char *c, const char *d,
                     struct kusto_error *err)
{
    sqlite3_stmt *st = NULL;
    int rc = 0;

    if (sqlite3_prepare_v2(k->db, sql, -1, &st, NULL) != SQLITE_OK) {
        return kusto_sql_fail(k, err, "cannot update the catalog");
    }
    bind_texts(st, a, b, c, d);
    if (sqlite3_step(st) != SQLITE_DONE) {
        rc = kusto_sql_fail(k, err, "cannot update the catalog");
    }
    sqlite3_finalize(st);
    return rc;
}

void kusto_drop_insert_cache(struct kusto *k)
{
    sqlite3_finalize(k->ins);
    k->ins = NULL;
    free(k->ins_key);
    k->ins_key = NULL;
}

/* ------------------------------------------------------------------ */
/* Results                                                              */

void kusto_result_free(struct kusto_result *r)
{
    size_t t, c;

    if (!r) {
        return;
    }
    for (t = 0; t < r->ntables; t++) {
        struct kusto_table *tb = &r->tables[t];

        for (c = 0; c < tb->nrows * tb->ncols; c++) {
            free(tb->cells[c].s);
        }
        for (c = 0; c < tb->ncols; c++) {
            free(tb->cols[c].name);
        }
        free(tb->cells);
        free(tb->cols);
        free(tb->name);
    }
    free(r->tables);
    free(r);
}

/* A result with one table of the given columns and no rows (owned). */
struct kusto_result *kusto_result_new(const char *name,
                                      const struct colspec *cols, size_t ncols)
{
    struct kusto_result *r = calloc(1, sizeof(*r));
    struct kusto_table *t;
    size_t i;

    if (!r) {
        return NULL;
    }
    r->tables = calloc(1, sizeof(*r->tables));
    if (!r->tables) {
        free(r);
        return NULL;
    }
    r->ntables = 1;
    t = &r->tables[0];
    t->name = strdup(name);
    t->cols = calloc(ncols ? ncols : 1, sizeof(*t->cols));
    if (!t->name || !t->cols) {
        kusto_result_free(r);
        return NULL;
    }
    t->ncols = ncols;
    for (i = 0; i < ncols; i++) {
        t->cols[i].type = cols[i].type;
        t->cols[i].name = strdup(cols[i].name);
        if (!t->cols[i].name) {
            kusto_result_free(r);
            return NULL;
        }
    }
    return r;
}

/* Appends a row of nulls; returns its first cell or NULL (out of memory).
 * *cap tracks the allocated rows. */
struct kusto_value *kusto_table_add_row(struct kusto_table *t, size_t *cap)
{
    struct kusto_value *row;
    size_t c;

    if (t->nrows == *cap) {
        size_t ncap = *cap ? *cap * 2 : 16;
        struct kusto_value *nc;

        nc = realloc(t->cells, ncap * (t->ncols ? t->ncols : 1) * sizeof(*nc));
        if (!nc) {
            return NULL;
        }
        t->cells = nc;
        *cap = ncap;
    }
    row = &t->cells[t->nrows * t->ncols];
    for (c = 0; c < t->ncols; c++) {
        memset(&row[c], 0, sizeof(row[c]));
        row[c].type = t->cols[c].type;
        row[c].is_null = 1;
    }
    t->nrows++;
    return row;
}

int kusto_cell_str(struct kusto_value *v, const char *s)
{
    if (!s) {
        v->is_null = 1;
        return 0;
    }
    v->s = strdup(s);
    if (!v->s) {
        return -ENOMEM;
    }
    v->is_null = 0;
    return 0;
}

void kusto_cell_int(struct kusto_value *v, int64_t i)
{
    v->i = i;
    v->is_null = 0;
}

/* ------------------------------------------------------------------ */
/* Open, close, databases                                              */

static const char catalog_sql[] =
    "CREATE TABLE IF NOT EXISTS \"$kusto_databases\"("
    " name TEXT PRIMARY KEY, streaming INTEGER);"
    "CREATE TABLE IF NOT EXISTS \"$kusto_tables\"("
    " db TEXT NOT NULL, name TEXT NOT NULL, folder TEXT NOT NULL DEFAULT '',"
    " docstring TEXT NOT NULL DEFAULT '', streaming INTEGER, itime INTEGER,"
    " PRIMARY KEY (db, name));"
    "CREATE TABLE IF NOT EXISTS \"$kusto_columns\"("
    " db TEXT NOT NULL, tbl TEXT NOT NULL, ord INTEGER NOT NULL,"
    " name TEXT NOT NULL, type TEXT NOT NULL, PRIMARY KEY (db, tbl, ord));"
    "CREATE TABLE IF NOT EXISTS \"$kusto_mappings\"("
    " db TEXT NOT NULL, tbl TEXT NOT NULL, kind TEXT NOT NULL,"
    " name TEXT NOT NULL, json TEXT NOT NULL, updated INTEGER NOT NULL,"
    " PRIMARY KEY (db, tbl, kind, name));";

struct kusto *kusto_open(const char *path, char *err, size_t errlen)
{
    struct kusto *k = calloc(1, sizeof(*k));
    char *msg = NULL;
    int file;

    if (!k) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    if (!path) {
        path = ":memory:";
    }
    file = strcmp(path, ":memory:") != 0;
    if (sqlite3_open_v2(path, &k->db,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
                            SQLITE_OPEN_NOMUTEX,
                        NULL) != SQLITE_OK) {
        snprintf(err, errlen, "cannot open '%s': %s", path,
                 k->db ? sqlite3_errmsg(k->db) : "out of memory");
        goto fail;
    }
    if (sqlite3_exec(k->db,
                     file ? "PRAGMA journal_mode=WAL;PRAGMA synchronous=NORMAL;"
                          : "PRAGMA synchronous=OFF;",
                     NULL, NULL, &msg) != SQLITE_OK ||
        sqlite3_exec(k->db, catalog_sql, NULL, NULL, &msg) != SQLITE_OK) {
        snprintf(err, errlen, "cannot set up '%s': %s", path,
                 msg ? msg : sqlite3_errmsg(k->db));
        sqlite3_free(msg);
        goto fail;
    }
    /* a file written before the itime column: add it (an error only says
     * it is there already) */
    sqlite3_exec(k->db,
                 "ALTER TABLE \"$kusto_tables\" ADD COLUMN itime INTEGER", NULL,
                 NULL, NULL);
    if (kql_register(k->db) < 0) {
        snprintf(err, errlen, "cannot register the KQL functions: %s",
                 sqlite3_errmsg(k->db));
        goto fail;
    }
    return k;
fail:
    kusto_close(k);
    return NULL;
}

static void free_scols(struct kusto *k)
{
    size_t i;

    for (i = 0; i < k->nscols; i++) {
        free(k->scols[i].name);
    }
    free(k->scols);
    k->scols = NULL;
    k->nscols = 0;
}

void kusto_close(struct kusto *k)
{
    size_t i;

    if (!k) {
        return;
    }
    kusto_drop_insert_cache(k);
    for (i = 0; i < STMT_CACHE; i++) {
        sqlite3_finalize(k->cache[i].st);
    }
    free_scols(k);
    free(k->smapping);
    sqlite3_close(k->db);
    free(k);
}

void kusto_set_count_only(struct kusto *k, int on)
{
    k->count_only = on;
}

uint64_t kusto_rows_accepted(struct kusto *k)
{
    return k->accepted;
}

int kusto_check_name(const char *what, const char *name,
                     struct kusto_error *err)
{
    size_t n = name ? strlen(name) : 0;

    if (n == 0 || n > NAME_MAX_LEN) {
        return kusto_err(err, -EINVAL, 400, "General_BadRequest",
                         "invalid %s name (empty or over %d bytes)", what,
                         NAME_MAX_LEN);
    }
    return 0;
}

int kusto_create_database(struct kusto *k, const char *db)
{
    sqlite3_stmt *st = NULL;
    int rc;

    if (kusto_check_name("database", db, NULL) < 0) {
        return -EINVAL;
    }
    st = cached_bound(k,
                      "INSERT OR IGNORE INTO \"$kusto_databases\"(name) "
                      "VALUES (?)",
                      db, NULL, NULL, NULL);
    if (!st) {
        return -EIO;
    }
    rc = sqlite3_step(st) == SQLITE_DONE ? 0 : -EIO;
    stmt_done(st);
    return rc;
}

int kusto_database_exists(struct kusto *k, const char *db)
{
    if (!db) {
        return 0;
    }
    return row_exists(k, "SELECT 1 FROM \"$kusto_databases\" WHERE name = ?",
                      db, NULL);
}

int kusto_table_exists(struct kusto *k, const char *db, const char *table)
{
    return row_exists(k,
                      "SELECT 1 FROM \"$kusto_tables\" WHERE db = ? AND "
                      "name = ?",
                      db, table);
}

/* Loads the columns of db.table into k->scols. 0, -ENOENT or -EIO. */
int kusto_load_schema(struct kusto *k, const char *db, const char *table)
{
    sqlite3_stmt *st = NULL;
    size_t cap = 0;
    int rc = 0, step;

    free_scols(k);
    if (!kusto_table_exists(k, db, table)) {
        return -ENOENT;
    }
    st = cached_bound(k,
                      "SELECT name, type FROM \"$kusto_columns\" WHERE "
                      "db = ? AND tbl = ? ORDER BY ord",
                      db, table, NULL, NULL);
    if (!st) {
        return -EIO;
    }
    while ((step = sqlite3_step(st)) == SQLITE_ROW) {
        const char *name = (const char *)sqlite3_column_text(st, 0);
        const char *type = (const char *)sqlite3_column_text(st, 1);
        enum kusto_type t = KT_STRING;

        if (k->nscols == cap) {
            size_t ncap = cap ? cap * 2 : 16;
            struct kusto_column *nc = realloc(k->scols, ncap * sizeof(*nc));

            if (!nc) {
                rc = -ENOMEM;
                goto out;
            }
            k->scols = nc;
            cap = ncap;
        }
        kusto_type_parse(type, &t);
        k->scols[k->nscols].type = t;
        k->scols[k->nscols].name = strdup(name ? name : "");
        if (!k->scols[k->nscols].name) {
            rc = -ENOMEM;
            goto out;
        }
        k->nscols++;
    }
    if (step != SQLITE_DONE) {
        rc = -EIO;
    }
out:
    stmt_done(st);
    return rc;
}

int kusto_table_schema(struct kusto *k, const char *db, const char *table,
                       const struct kusto_column **cols, size_t *ncols,
                       struct kusto_error *err)
{
    int rc;

    if (!kusto_database_exists(k, db)) {
        return kusto_no_db(err, db ? db : "");
    }
    rc = kusto_load_schema(k, db, table);
    if (rc == -ENOENT) {
        return kusto_no_table(err, db, table);
    }
    if (rc < 0) {
        return kusto_sql_fail(k, err, "cannot read the schema");
    }
    *cols = k->scols;
    *ncols = k->nscols;
    return 0;
}

int kusto_mapping_get(struct kusto *k, const char *db, const char *table,
                      const char *name, const char **json,
                      struct kusto_error *err)
{
    return kusto_mapping_get_kind(k, db, table, "json", name, json, err);
}

int kusto_mapping_get_kind(struct kusto *k, const char *db, const char *table,
                           const char *kind, const char *name,
                           const char **json, struct kusto_error *err)
{
    sqlite3_stmt *st = NULL;
    int rc;

    free(k->smapping);
    k->smapping = NULL;
    st = cached_bound(k,
                      "SELECT json FROM \"$kusto_mappings\" WHERE db = ? "
                      "AND tbl = ? AND kind = ? AND name = ?",
                      db, table, kind, name);
    if (!st) {
        return kusto_sql_fail(k, err, "cannot read the mapping");
    }
    if (sqlite3_step(st) == SQLITE_ROW) {
        k->smapping = strdup((const char *)sqlite3_column_text(st, 0));
        rc = k->smapping ? 0 : -ENOMEM;
        if (rc == 0) {
            *json = k->smapping;
        }
    } else {
        rc = kusto_err(err, -ENOENT, 400,
                       "BadRequest_MappingReferenceWasNotFound",
                       "Mapping reference '%s' of kind '%s' in table '%s' of "
                       "database '%s' could not be found",
                       name, kind, table, db);
    }
    stmt_done(st);
    return rc;
}

/* The streaming policy value of a database or table row: 1, 0, or -1 (no
 * policy set). */
int kusto_policy_value(struct kusto *k, const char *db, const char *table)
{
    const char *sql =
        table ? "SELECT streaming FROM \"$kusto_tables\" WHERE db = ? AND "
                "name = ?"
              : "SELECT streaming FROM \"$kusto_databases\" WHERE name = ?";

    return flag_value(k, sql, db, table, -1);
}

int kusto_streaming_enabled(struct kusto *k, const char *db, const char *table)
{
    int v = -1;

    if (table) {
        v = kusto_policy_value(k, db, table);
    }
    if (v < 0) {
        v = kusto_policy_value(k, db, NULL);
    }
    return v > 0;
}

/* Prepares "INSERT INTO "D.T" VALUES (?, ..., ?)" for the table whose
 * schema is in k->scols, reusing the cached statement. */
static int prepare_insert(struct kusto *k, const char *db, const char *table,
                          struct kusto_error *err)
{
    char key[2 * NAME_MAX_LEN + 2];
    char qname[4 * NAME_MAX_LEN + 8];
    struct sbuf b = {0};
    size_t i;
    int rc;

    snprintf(key, sizeof(key), "%s\x1f%s", db, table);
    if (k->ins && strcmp(k->ins_key, key) == 0 && k->ins_ncols == k->nscols) {
        return 0;
    }
    kusto_drop_insert_cache(k);
    rc = kusto_row_table_name(db, table, qname, sizeof(qname));
    if (rc < 0) {
        return kusto_err(err, rc, 400, "General_BadRequest", "name too long");
    }
    sbuf_printf(&b, "INSERT INTO %s VALUES (", qname);
    for (i = 0; i <= k->nscols; i++) {
        sbuf_printf(&b, i ? ",?" : "?");
    }
    sbuf_printf(&b, ")");
    if (b.err) {
        free(b.p);
        return kusto_err(err, -ENOMEM, 500, "Internal_ServiceError",
                         "out of memory");
    }
    if (sqlite3_prepare_v2(k->db, b.p, -1, &k->ins, NULL) != SQLITE_OK) {
        free(b.p);
        return kusto_sql_fail(k, err, "cannot prepare the insert");
    }
    free(b.p);
    k->ins_key = strdup(key);
    if (!k->ins_key) {
        kusto_drop_insert_cache(k);
        return kusto_err(err, -ENOMEM, 500, "Internal_ServiceError",
                         "out of memory");
    }
    k->ins_ncols = k->nscols;
    return 0;
}

static void bind_value(sqlite3_stmt *st, int idx, enum kusto_type ct,
                       const struct kusto_value *v)
{
    if (v->is_null) {
        sqlite3_bind_null(st, idx);
        return;
    }
    switch (ct) {
    case KT_REAL:
    case KT_DECIMAL:
        sqlite3_bind_double(
            st, idx,
            v->type == KT_REAL || v->type == KT_DECIMAL ? v->r : (double)v->i);
        break;
    case KT_STRING:
    case KT_GUID:
    case KT_DYNAMIC:
        if (v->s) {
            sqlite3_bind_text(st, idx, v->s, -1, SQLITE_STATIC);
        } else {
            sqlite3_bind_null(st, idx);
        }
        break;
    default:
        sqlite3_bind_int64(st, idx, v->i);
        break;
    }
}

/* A table's IngestionTime policy: 1 on (also when never set), 0 off. */
int kusto_itime_value(struct kusto *k, const char *db, const char *table)
{
    return flag_value(k,
                      "SELECT itime FROM \"$kusto_tables\" WHERE db = ? "
                      "AND name = ?",
                      db, table, 1);
}

int kusto_insert_rows(struct kusto *k, const char *db, const char *table,
                      const struct kusto_value *values, size_t nrows,
                      int64_t ingest_ticks, struct kusto_error *err)
{
    size_t r, c;
    int itime_on;
    int rc;

    rc = kusto_table_schema(k, db, table, &(const struct kusto_column *){0},
                            &(size_t){0}, err);
    if (rc < 0) {
        return rc;
    }
    if (k->count_only) {
        k->accepted += nrows;
        return 0;
    }
    rc = prepare_insert(k, db, table, err);
    if (rc < 0) {
        return rc;
    }
    itime_on = kusto_itime_value(k, db, table) != 0;
    rc = kusto_exec(k, "BEGIN", err);
    if (rc < 0) {
        return rc;
    }
    for (r = 0; r < nrows; r++) {
        const struct kusto_value *row = &values[r * k->nscols];

        sqlite3_reset(k->ins);
        for (c = 0; c < k->nscols; c++) {
            bind_value(k->ins, (int)c + 1, k->scols[c].type, &row[c]);
        }
        if (itime_on) {
            sqlite3_bind_int64(k->ins, (int)k->nscols + 1, ingest_ticks);
        } else {
            sqlite3_bind_null(k->ins, (int)k->nscols + 1);
        }
        if (sqlite3_step(k->ins) != SQLITE_DONE) {
            rc = kusto_sql_fail(k, err, "cannot insert");
            sqlite3_reset(k->ins);
            sqlite3_clear_bindings(k->ins);
            kusto_exec(k, "ROLLBACK", NULL);
            return rc;
        }
    }
    sqlite3_reset(k->ins);
    sqlite3_clear_bindings(k->ins);
    rc = kusto_exec(k, "COMMIT", err);
    if (rc < 0) {
        kusto_exec(k, "ROLLBACK", NULL);
        return rc;
    }
    k->accepted += nrows;
    return 0;
}

/* ------------------------------------------------------------------ */
/* Queries                                                              */

#define MAX_RESULT_ROWS 500000 /* ADX's default truncation limit */

struct schema_ctx {
    struct kusto *k;
    const char *db;
};

static int schema_cb(void *ctx, const char *name,
                     const struct kusto_column **cols, size_t *ncols)
{
    struct schema_ctx *sc = ctx;
    int rc = kusto_load_schema(sc->k, sc->db, name);

    if (rc < 0) {
        return rc;
    }
    *cols = sc->k->scols;
    *ncols = sc->k->nscols;
    return 0;
}

/* Reads column i of the current row of st into v as type t. */
static int read_cell(sqlite3_stmt *st, int i, enum kusto_type t,
                     struct kusto_value *v)
{
    int st_type = sqlite3_column_type(st, i);

    v->type = t;
    if (st_type == SQLITE_NULL) {
        v->is_null = 1;
        return 0;
    }
    v->is_null = 0;
    switch (t) {
    case KT_REAL:
    case KT_DECIMAL:
        v->r = sqlite3_column_double(st, i);
        break;
    case KT_STRING:
    case KT_GUID:
    case KT_DYNAMIC:
        v->s = strdup((const char *)sqlite3_column_text(st, i));
        if (!v->s) {
            return -ENOMEM;
        }
        break;
    case KT_BOOL:
        v->i = sqlite3_column_int64(st, i) != 0;
        break;
    default:
        if (st_type == SQLITE_FLOAT) {
            double d = sqlite3_column_double(st, i);

            if (d != d || d >= 9.2e18 || d <= -9.2e18) {
                v->is_null = 1;
            } else {
                v->i = (int64_t)d;
            }
        } else {
            v->i = sqlite3_column_int64(st, i);
        }
        break;
    }
    return 0;
}

static int run_query(struct kusto *k, const char *db, const char *csl,
                     struct kusto_result **out, struct kusto_error *err)
{
    struct schema_ctx sc = {k, db};
    struct kql_plan plan = {0};
    struct kusto_result *r = NULL;
    struct colspec *specs = NULL;
    sqlite3_stmt *st = NULL;
    size_t cap = 0, i;
    int rc, step;

    rc = kql_translate(csl, db, schema_cb, &sc, emu_now_ticks(), &plan, err);
    if (rc < 0) {
        goto out;
    }
    specs = calloc(plan.ncols ? plan.ncols : 1, sizeof(*specs));
    if (!specs) {
        rc = kusto_err(err, -ENOMEM, 500, "Internal_ServiceError",
                       "out of memory");
        goto out;
    }
    for (i = 0; i < plan.ncols; i++) {
        specs[i].name = plan.cols[i].name;
        specs[i].type = plan.cols[i].type;
    }
    r = kusto_result_new("PrimaryResult", specs, plan.ncols);
    if (!r) {
        rc = kusto_err(err, -ENOMEM, 500, "Internal_ServiceError",
                       "out of memory");
        goto out;
    }
    if (sqlite3_prepare_v2(k->db, plan.sql, -1, &st, NULL) != SQLITE_OK) {
        rc = kusto_err(err, -EINVAL, 400, "General_BadRequest",
                       "query could not be run: %s", sqlite3_errmsg(k->db));
        goto out;
    }
    while ((step = sqlite3_step(st)) == SQLITE_ROW) {
        struct kusto_value *row;

        if (r->tables[0].nrows >= MAX_RESULT_ROWS) {
            rc = kusto_err(err, -E2BIG, 400, "LimitsExceeded",
                           "Query result set has exceeded the internal record "
                           "count limit %d (E_QUERY_RESULT_SET_TOO_LARGE)",
                           MAX_RESULT_ROWS);
            goto out;
        }
        row = kusto_table_add_row(&r->tables[0], &cap);
        if (!row) {
            rc = kusto_err(err, -ENOMEM, 500, "Internal_ServiceError",
                           "out of memory");
            goto out;
        }
        for (i = 0; i < plan.ncols; i++) {
            if (read_cell(st, (int)i, plan.cols[i].type, &row[i]) < 0) {
                rc = kusto_err(err, -ENOMEM, 500, "Internal_ServiceError",
                               "out of memory");
                goto out;
            }
        }
    }
    if (step != SQLITE_DONE) {
        rc = kusto_err(err, -EINVAL, 400, "General_BadRequest",
                       "query failed: %s", sqlite3_errmsg(k->db));
        goto out;
    }
    *out = r;
    r = NULL;
out:
    sqlite3_finalize(st);
    kusto_result_free(r);
    free(specs);
    kql_plan_release(&plan);
    return rc;
}

int kusto_execute(struct kusto *k, const char *db, const char *csl,
                  struct kusto_result **out, struct kusto_error *err)
{
    const char *p = csl;

    *out = NULL;
    if (!csl) {
        return kusto_err(err, -EINVAL, 400, "General_BadRequest",
                         "the request has no query text ('csl')");
    }
    if (strlen(csl) > KQL_MAX_TEXT) {
        return kusto_err(err, -EMSGSIZE, 400, "General_BadRequest",
                         "query text is longer than %u bytes", KQL_MAX_TEXT);
    }
    for (;;) {
        while (isspace((unsigned char)*p)) {
            p++;
        }
        if (p[0] == '/' && p[1] == '/') {
            while (*p && *p != '\n') {
                p++;
            }
            continue;
        }
        break;
    }
    if (*p == '.') {
        return kusto_run_command(k, db, p, out, err);
    }
    if (!db || !*db) {
        return kusto_err(err, -EINVAL, 400, "General_BadRequest",
                         "a query needs a database (the request's 'db')");
    }
    if (!kusto_database_exists(k, db)) {
        return kusto_no_db(err, db);
    }
    return run_query(k, db, p, out, err);
}
