/*
 * kusto.c - the ADX emulator's engine: the catalog (databases, tables,
 * columns, ingestion mappings, streaming policies), the rows, the
 * management commands, and the entry point of KQL queries (translated to
 * SQL by kql.c), all kept in one SQLite database.
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
#include "emulators/kusto.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>
#include <sqlite3.h>

#include "emulators/kql.h"
#include "kadx_version.h"

#define NAME_MAX_LEN 1024 /* cap on database, table, column, mapping names */
#define MAX_COLUMNS  10000
#define STMT_CACHE   16

struct kusto {
    sqlite3 *db;
    int count_only;
    uint64_t accepted;
    /* scratch returned by kusto_table_schema / kusto_mapping_get */
    struct kusto_column *scols;
    size_t nscols;
    char *smapping;
    /* prepared catalog lookups of the ingest path, by SQL text */
    struct {
        const char *sql;
        sqlite3_stmt *st;
    } cache[STMT_CACHE];
    /* cached INSERT for the last table ingested into */
    sqlite3_stmt *ins;
    char *ins_key;
    size_t ins_ncols;
    /* the data-management side's resources (emulators/dm.c) */
    kusto_resources_fn resources_fn;
    void *resources_data;
};

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
static const char *sql_type(enum kusto_type t)
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

static int kerr(struct kusto_error *err, int rc, int status, const char *code,
                const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static int kerr(struct kusto_error *err, int rc, int status, const char *code,
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

static int sql_fail(struct kusto *k, struct kusto_error *err, const char *what)
{
    return kerr(err, -EIO, 500, "Internal_ServiceError", "%s: %s", what,
                sqlite3_errmsg(k->db));
}

static int not_found_table(struct kusto_error *err, const char *db,
                           const char *table)
{
    return kerr(err, -ENOENT, 404, "BadRequest_EntityNotFound",
                "Entity ID '%s' of kind 'Table' was not found in database "
                "'%s'",
                table, db);
}

static int not_found_db(struct kusto_error *err, const char *db)
{
    return kerr(err, -ENOENT, 404, "BadRequest_EntityNotFound",
                "Entity ID '%s' of kind 'Database' was not found", db);
}

static int64_t now_ticks(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * KQL_TICKS_PER_SEC + ts.tv_nsec / 100;
}

/* "D.T" quoted as a SQLite identifier into buf. */
static int row_table_name(const char *db, const char *table, char *buf,
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

/* A growable string for building SQL. */
struct sbuf {
    char *s;
    size_t len, cap;
    int oom;
};

static void sb_add(struct sbuf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void sb_add(struct sbuf *b, const char *fmt, ...)
{
    va_list ap;
    int n;

    if (b->oom) {
        return;
    }
    for (;;) {
        size_t room = b->cap - b->len;

        va_start(ap, fmt);
        n = vsnprintf(b->s ? b->s + b->len : NULL, b->s ? room : 0, fmt, ap);
        va_end(ap);
        if (n < 0) {
            b->oom = 1;
            return;
        }
        if (b->s && (size_t)n < room) {
            b->len += (size_t)n;
            return;
        }
        {
            size_t ncap = (b->cap ? b->cap * 2 : 256) + (size_t)n + 1;
            char *ns = realloc(b->s, ncap);

            if (!ns) {
                b->oom = 1;
                return;
            }
            b->s = ns;
            b->cap = ncap;
        }
    }
}

static void sb_ident(struct sbuf *b, const char *name)
{
    const char *p;

    sb_add(b, "\"");
    for (p = name; *p; p++) {
        if (*p == '"') {
            sb_add(b, "\"\"");
        } else {
            sb_add(b, "%c", *p);
        }
    }
    sb_add(b, "\"");
}

static int exec_sql(struct kusto *k, const char *sql, struct kusto_error *err)
{
    char *msg = NULL;

    if (sqlite3_exec(k->db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        kerr(err, -EIO, 500, "Internal_ServiceError", "sqlite: %s",
             msg ? msg : "error");
        sqlite3_free(msg);
        return -EIO;
    }
    return 0;
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

static void drop_insert_cache(struct kusto *k)
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

struct colspec {
    const char *name;
    enum kusto_type type;
};

/* A result with one table of the given columns and no rows (owned). */
static struct kusto_result *result_new(const char *name,
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
static struct kusto_value *table_add_row(struct kusto_table *t, size_t *cap)
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

static int cell_str(struct kusto_value *v, const char *s)
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

static void cell_int(struct kusto_value *v, int64_t i)
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
    drop_insert_cache(k);
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

static int check_name(const char *what, const char *name,
                      struct kusto_error *err)
{
    size_t n = name ? strlen(name) : 0;

    if (n == 0 || n > NAME_MAX_LEN) {
        return kerr(err, -EINVAL, 400, "General_BadRequest",
                    "invalid %s name (empty or over %d bytes)", what,
                    NAME_MAX_LEN);
    }
    return 0;
}

int kusto_create_database(struct kusto *k, const char *db)
{
    sqlite3_stmt *st = NULL;
    int rc;

    if (check_name("database", db, NULL) < 0) {
        return -EINVAL;
    }
    if (!(st = cached(k, "INSERT OR IGNORE INTO \"$kusto_databases\"(name) "
                         "VALUES (?)"))) {
        return -EIO;
    }
    sqlite3_bind_text(st, 1, db, -1, SQLITE_TRANSIENT);
    rc = sqlite3_step(st) == SQLITE_DONE ? 0 : -EIO;
    stmt_done(st);
    return rc;
}

int kusto_database_exists(struct kusto *k, const char *db)
{
    sqlite3_stmt *st = NULL;
    int found = 0;

    if (!db) {
        return 0;
    }
    if (!(st =
              cached(k, "SELECT 1 FROM \"$kusto_databases\" WHERE name = ?"))) {
        return 0;
    }
    sqlite3_bind_text(st, 1, db, -1, SQLITE_TRANSIENT);
    found = sqlite3_step(st) == SQLITE_ROW;
    stmt_done(st);
    return found;
}

static int table_exists(struct kusto *k, const char *db, const char *table)
{
    sqlite3_stmt *st = NULL;
    int found = 0;

    if (!(st = cached(k, "SELECT 1 FROM \"$kusto_tables\" WHERE db = ? AND "
                         "name = ?"))) {
        return 0;
    }
    sqlite3_bind_text(st, 1, db, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 2, table, -1, SQLITE_TRANSIENT);
    found = sqlite3_step(st) == SQLITE_ROW;
    stmt_done(st);
    return found;
}

/* Loads the columns of db.table into k->scols. 0, -ENOENT or -EIO. */
static int load_schema(struct kusto *k, const char *db, const char *table)
{
    sqlite3_stmt *st = NULL;
    size_t cap = 0;
    int rc = 0, step;

    free_scols(k);
    if (!table_exists(k, db, table)) {
        return -ENOENT;
    }
    if (!(st = cached(k, "SELECT name, type FROM \"$kusto_columns\" WHERE "
                         "db = ? AND tbl = ? ORDER BY ord"))) {
        return -EIO;
    }
    sqlite3_bind_text(st, 1, db, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 2, table, -1, SQLITE_TRANSIENT);
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
        return not_found_db(err, db ? db : "");
    }
    rc = load_schema(k, db, table);
    if (rc == -ENOENT) {
        return not_found_table(err, db, table);
    }
    if (rc < 0) {
        return sql_fail(k, err, "cannot read the schema");
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
    if (!(st = cached(k, "SELECT json FROM \"$kusto_mappings\" WHERE db = ? "
                         "AND tbl = ? AND kind = ? AND name = ?"))) {
        return sql_fail(k, err, "cannot read the mapping");
    }
    sqlite3_bind_text(st, 1, db, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 2, table, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 3, kind, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 4, name, -1, SQLITE_TRANSIENT);
    if (sqlite3_step(st) == SQLITE_ROW) {
        k->smapping = strdup((const char *)sqlite3_column_text(st, 0));
        rc = k->smapping ? 0 : -ENOMEM;
        if (rc == 0) {
            *json = k->smapping;
        }
    } else {
        rc = kerr(err, -ENOENT, 400, "BadRequest_MappingReferenceWasNotFound",
                  "Mapping reference '%s' of kind '%s' in table '%s' of "
                  "database '%s' could not be found",
                  name, kind, table, db);
    }
    stmt_done(st);
    return rc;
}

/* The streaming policy value of a database or table row: 1, 0, or -1 (no
 * policy set). */
static int policy_value(struct kusto *k, const char *db, const char *table)
{
    sqlite3_stmt *st = NULL;
    int v = -1;
    const char *sql =
        table ? "SELECT streaming FROM \"$kusto_tables\" WHERE db = ? AND "
                "name = ?"
              : "SELECT streaming FROM \"$kusto_databases\" WHERE name = ?";

    if (!(st = cached(k, sql))) {
        return -1;
    }
    sqlite3_bind_text(st, 1, db, -1, SQLITE_TRANSIENT);
    if (table) {
        sqlite3_bind_text(st, 2, table, -1, SQLITE_TRANSIENT);
    }
    if (sqlite3_step(st) == SQLITE_ROW &&
        sqlite3_column_type(st, 0) != SQLITE_NULL) {
        v = sqlite3_column_int(st, 0) ? 1 : 0;
    }
    stmt_done(st);
    return v;
}

int kusto_streaming_enabled(struct kusto *k, const char *db, const char *table)
{
    int v = -1;

    if (table) {
        v = policy_value(k, db, table);
    }
    if (v < 0) {
        v = policy_value(k, db, NULL);
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
    drop_insert_cache(k);
    rc = row_table_name(db, table, qname, sizeof(qname));
    if (rc < 0) {
        return kerr(err, rc, 400, "General_BadRequest", "name too long");
    }
    sb_add(&b, "INSERT INTO %s VALUES (", qname);
    for (i = 0; i <= k->nscols; i++) {
        sb_add(&b, i ? ",?" : "?");
    }
    sb_add(&b, ")");
    if (b.oom) {
        free(b.s);
        return kerr(err, -ENOMEM, 500, "Internal_ServiceError",
                    "out of memory");
    }
    if (sqlite3_prepare_v2(k->db, b.s, -1, &k->ins, NULL) != SQLITE_OK) {
        free(b.s);
        return sql_fail(k, err, "cannot prepare the insert");
    }
    free(b.s);
    k->ins_key = strdup(key);
    if (!k->ins_key) {
        drop_insert_cache(k);
        return kerr(err, -ENOMEM, 500, "Internal_ServiceError",
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
static int itime_value(struct kusto *k, const char *db, const char *table)
{
    sqlite3_stmt *st = NULL;
    int v = 1;

    if (!(st = cached(k, "SELECT itime FROM \"$kusto_tables\" WHERE db = ? "
                         "AND name = ?"))) {
        return 1;
    }
    sqlite3_bind_text(st, 1, db, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 2, table, -1, SQLITE_TRANSIENT);
    if (sqlite3_step(st) == SQLITE_ROW &&
        sqlite3_column_type(st, 0) != SQLITE_NULL) {
        v = sqlite3_column_int(st, 0) ? 1 : 0;
    }
    stmt_done(st);
    return v;
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
    itime_on = itime_value(k, db, table) != 0;
    rc = exec_sql(k, "BEGIN", err);
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
            rc = sql_fail(k, err, "cannot insert");
            sqlite3_reset(k->ins);
            sqlite3_clear_bindings(k->ins);
            exec_sql(k, "ROLLBACK", NULL);
            return rc;
        }
    }
    sqlite3_reset(k->ins);
    sqlite3_clear_bindings(k->ins);
    rc = exec_sql(k, "COMMIT", err);
    if (rc < 0) {
        exec_sql(k, "ROLLBACK", NULL);
        return rc;
    }
    k->accepted += nrows;
    return 0;
}

/* ------------------------------------------------------------------ */
/* Catalog changes                                                      */

struct coldef {
    char *name;
    enum kusto_type type;
};

static void coldefs_free(struct coldef *c, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++) {
        free(c[i].name);
    }
    free(c);
}

/* Writes the catalog rows of the columns of db.table (replacing them). */
static int write_columns(struct kusto *k, const char *db, const char *table,
                         const struct kusto_column *cols, size_t n,
                         struct kusto_error *err)
{
    sqlite3_stmt *st = NULL;
    size_t i;
    int rc = 0;

    if (sqlite3_prepare_v2(k->db,
                           "DELETE FROM \"$kusto_columns\" WHERE db = ? AND "
                           "tbl = ?",
                           -1, &st, NULL) != SQLITE_OK) {
        return sql_fail(k, err, "cannot update the catalog");
    }
    sqlite3_bind_text(st, 1, db, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 2, table, -1, SQLITE_TRANSIENT);
    if (sqlite3_step(st) != SQLITE_DONE) {
        rc = sql_fail(k, err, "cannot update the catalog");
    }
    sqlite3_finalize(st);
    if (rc < 0) {
        return rc;
    }
    if (sqlite3_prepare_v2(k->db,
                           "INSERT INTO \"$kusto_columns\"(db, tbl, ord, "
                           "name, type) VALUES (?, ?, ?, ?, ?)",
                           -1, &st, NULL) != SQLITE_OK) {
        return sql_fail(k, err, "cannot update the catalog");
    }
    for (i = 0; i < n && rc == 0; i++) {
        sqlite3_reset(st);
        sqlite3_bind_text(st, 1, db, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(st, 2, table, -1, SQLITE_TRANSIENT);
        sqlite3_bind_int64(st, 3, (sqlite3_int64)i);
        sqlite3_bind_text(st, 4, cols[i].name, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(st, 5, kusto_type_name(cols[i].type), -1,
                          SQLITE_STATIC);
        if (sqlite3_step(st) != SQLITE_DONE) {
            rc = sql_fail(k, err, "cannot update the catalog");
        }
    }
    sqlite3_finalize(st);
    return rc;
}

/* CREATE TABLE "D.T"(cols..., "$IngestionTime") under the name qname. */
static int create_row_table(struct kusto *k, const char *qname,
                            const struct kusto_column *cols, size_t n,
                            struct kusto_error *err)
{
    struct sbuf b = {0};
    size_t i;
    int rc;

    sb_add(&b, "CREATE TABLE %s (", qname);
    for (i = 0; i < n; i++) {
        sb_ident(&b, cols[i].name);
        sb_add(&b, " %s, ", sql_type(cols[i].type));
    }
    sb_add(&b, "\"$IngestionTime\" INTEGER)");
    if (b.oom) {
        free(b.s);
        return kerr(err, -ENOMEM, 500, "Internal_ServiceError",
                    "out of memory");
    }
    rc = exec_sql(k, b.s, err);
    free(b.s);
    return rc;
}

/* Gives db.table the columns `cols` (a superset of the current ones, same
 * order first): rebuilds "D.T" so "$IngestionTime" stays last. Runs inside
 * the caller's transaction. */
static int rebuild_table(struct kusto *k, const char *db, const char *table,
                         const struct kusto_column *cols, size_t n, size_t nold,
                         struct kusto_error *err)
{
    char qname[4 * NAME_MAX_LEN + 8], qtmp[4 * NAME_MAX_LEN + 16];
    char raw[2 * NAME_MAX_LEN + 16];
    struct sbuf b = {0};
    size_t i;
    int rc;

    row_table_name(db, table, qname, sizeof(qname));
    snprintf(raw, sizeof(raw), "%s.%s$rebuild", db, table);
    kql_quote_ident(raw, qtmp, sizeof(qtmp));
    rc = create_row_table(k, qtmp, cols, n, err);
    if (rc < 0) {
        return rc;
    }
    sb_add(&b, "INSERT INTO %s (", qtmp);
    for (i = 0; i < nold; i++) {
        sb_ident(&b, cols[i].name);
        sb_add(&b, ", ");
    }
    sb_add(&b, "\"$IngestionTime\") SELECT ");
    for (i = 0; i < nold; i++) {
        sb_ident(&b, cols[i].name);
        sb_add(&b, ", ");
    }
    sb_add(&b, "\"$IngestionTime\" FROM %s; DROP TABLE %s; ", qname, qname);
    snprintf(raw, sizeof(raw), "%s.%s", db, table);
    sb_add(&b, "ALTER TABLE %s RENAME TO ", qtmp);
    sb_ident(&b, raw);
    if (b.oom) {
        free(b.s);
        return kerr(err, -ENOMEM, 500, "Internal_ServiceError",
                    "out of memory");
    }
    rc = exec_sql(k, b.s, err);
    free(b.s);
    if (rc < 0) {
        return rc;
    }
    return write_columns(k, db, table, cols, n, err);
}

/*
 * .create table / .create-merge table. Creates db.table with `defs`; an
 * existing table is left alone by .create (ADX returns success without
 * changing it) and gains the missing columns with .create-merge (a column
 * that exists with another type is an error).
 */
static int ddl_create_table(struct kusto *k, const char *db, const char *table,
                            const struct coldef *defs, size_t n, int merge,
                            const char *folder, const char *doc,
                            struct kusto_error *err)
{
    char qname[4 * NAME_MAX_LEN + 8];
    struct kusto_column *all = NULL;
    size_t nall = 0, i, j, nold;
    sqlite3_stmt *st = NULL;
    int rc, exists;

    rc = row_table_name(db, table, qname, sizeof(qname));
    if (rc < 0) {
        return kerr(err, rc, 400, "General_BadRequest", "name too long");
    }
    rc = load_schema(k, db, table);
    exists = rc == 0;
    if (rc < 0 && rc != -ENOENT) {
        return sql_fail(k, err, "cannot read the schema");
    }
    if (exists && !merge) {
        return 0;
    }
    drop_insert_cache(k);
    nold = exists ? k->nscols : 0;
    all = calloc(nold + n + 1, sizeof(*all));
    if (!all) {
        return kerr(err, -ENOMEM, 500, "Internal_ServiceError",
                    "out of memory");
    }
    for (i = 0; i < nold; i++) {
        all[nall++] = k->scols[i];
    }
    for (i = 0; i < n; i++) {
        for (j = 0; j < nall; j++) {
            if (strcmp(all[j].name, defs[i].name) == 0) {
                break;
            }
        }
        if (j < nall) {
            if (all[j].type != defs[i].type) {
                rc = kerr(err, -EINVAL, 400, "BadRequest_BadSchema",
                          "column '%s' of table '%s' already exists with "
                          "type '%s', not '%s'",
                          defs[i].name, table, kusto_type_name(all[j].type),
                          kusto_type_name(defs[i].type));
                goto out;
            }
            if (j >= nold) {
                rc = kerr(err, -EINVAL, 400, "General_BadRequest",
                          "column '%s' is declared twice", defs[i].name);
                goto out;
            }
            continue;
        }
        all[nall].name = defs[i].name;
        all[nall].type = defs[i].type;
        nall++;
    }
    if (exists && nall == nold) {
        rc = 0;
        goto out;
    }
    rc = exec_sql(k, "SAVEPOINT ddl", err);
    if (rc < 0) {
        goto out;
    }
    if (exists) {
        rc = rebuild_table(k, db, table, all, nall, nold, err);
    } else {
        rc = create_row_table(k, qname, all, nall, err);
        if (rc == 0 &&
            sqlite3_prepare_v2(k->db,
                               "INSERT INTO \"$kusto_tables\"(db, name, "
                               "folder, docstring) VALUES (?, ?, ?, ?)",
                               -1, &st, NULL) == SQLITE_OK) {
            sqlite3_bind_text(st, 1, db, -1, SQLITE_TRANSIENT);
            sqlite3_bind_text(st, 2, table, -1, SQLITE_TRANSIENT);
            sqlite3_bind_text(st, 3, folder ? folder : "", -1,
                              SQLITE_TRANSIENT);
            sqlite3_bind_text(st, 4, doc ? doc : "", -1, SQLITE_TRANSIENT);
            if (sqlite3_step(st) != SQLITE_DONE) {
                rc = sql_fail(k, err, "cannot update the catalog");
            }
            sqlite3_finalize(st);
        } else if (rc == 0) {
            rc = sql_fail(k, err, "cannot update the catalog");
        }
        if (rc == 0) {
            rc = write_columns(k, db, table, all, nall, err);
        }
    }
    if (rc < 0) {
        exec_sql(k, "ROLLBACK TO ddl; RELEASE ddl", NULL);
        goto out;
    }
    rc = exec_sql(k, "RELEASE ddl", err);
out:
    free(all);
    return rc;
}

int kusto_add_column(struct kusto *k, const char *db, const char *table,
                     const char *column, enum kusto_type type,
                     struct kusto_error *err)
{
    struct coldef d;

    if (check_name("column", column, err) < 0) {
        return -EINVAL;
    }
    if (!table_exists(k, db, table)) {
        return not_found_table(err, db, table);
    }
    d.name = (char *)column;
    d.type = type;
    return ddl_create_table(k, db, table, &d, 1, 1, NULL, NULL, err);
}

/* Runs sql with up to three text parameters; 0 or -EIO. */
static int exec_bound(struct kusto *k, const char *sql, const char *a,
                      const char *b, const char *c, struct kusto_error *err)
{
    sqlite3_stmt *st = NULL;
    int rc = 0;

    if (sqlite3_prepare_v2(k->db, sql, -1, &st, NULL) != SQLITE_OK) {
        return sql_fail(k, err, "cannot update the catalog");
    }
    if (a) {
        sqlite3_bind_text(st, 1, a, -1, SQLITE_TRANSIENT);
    }
    if (b) {
        sqlite3_bind_text(st, 2, b, -1, SQLITE_TRANSIENT);
    }
    if (c) {
        sqlite3_bind_text(st, 3, c, -1, SQLITE_TRANSIENT);
    }
    if (sqlite3_step(st) != SQLITE_DONE) {
        rc = sql_fail(k, err, "cannot update the catalog");
    }
    sqlite3_finalize(st);
    return rc;
}

static int ddl_drop_table(struct kusto *k, const char *db, const char *table,
                          struct kusto_error *err)
{
    char qname[4 * NAME_MAX_LEN + 8];
    char sql[4 * NAME_MAX_LEN + 32];
    int rc;

    rc = row_table_name(db, table, qname, sizeof(qname));
    if (rc < 0) {
        return kerr(err, rc, 400, "General_BadRequest", "name too long");
    }
    drop_insert_cache(k);
    rc = exec_sql(k, "SAVEPOINT ddl", err);
    if (rc < 0) {
        return rc;
    }
    snprintf(sql, sizeof(sql), "DROP TABLE IF EXISTS %s", qname);
    rc = exec_sql(k, sql, err);
    if (rc == 0) {
        rc = exec_bound(k,
                        "DELETE FROM \"$kusto_tables\" WHERE db = ? AND "
                        "name = ?",
                        db, table, NULL, err);
    }
    if (rc == 0) {
        rc = exec_bound(k,
                        "DELETE FROM \"$kusto_columns\" WHERE db = ? AND "
                        "tbl = ?",
                        db, table, NULL, err);
    }
    if (rc == 0) {
        rc = exec_bound(k,
                        "DELETE FROM \"$kusto_mappings\" WHERE db = ? AND "
                        "tbl = ?",
                        db, table, NULL, err);
    }
    if (rc < 0) {
        exec_sql(k, "ROLLBACK TO ddl; RELEASE ddl", NULL);
        return rc;
    }
    return exec_sql(k, "RELEASE ddl", err);
}

/* ------------------------------------------------------------------ */
/* Management commands                                                  */

#define MAX_CMD_STRINGS (4u * 1024u * 1024u) /* concatenated mapping text */

struct cmd {
    struct kusto *k;
    const char *db; /* the request's database (may be NULL) */
    struct kql_tokens tk;
    size_t i;
    const char *src;
    struct kusto_error *err;
};

static struct kql_token *cur(struct cmd *c)
{
    return &c->tk.v[c->i];
}

static int word_is(const struct kql_token *t, const char *w)
{
    return t->kind == KQL_IDENT && !t->quoted && strcasecmp(t->text, w) == 0;
}

static int accept_word(struct cmd *c, const char *w)
{
    if (word_is(cur(c), w)) {
        c->i++;
        return 1;
    }
    return 0;
}

static int punct_is(const struct kql_token *t, const char *p)
{
    return t->kind == KQL_PUNCT && strcmp(t->text, p) == 0;
}

static int accept_punct(struct cmd *c, const char *p)
{
    if (punct_is(cur(c), p)) {
        c->i++;
        return 1;
    }
    return 0;
}

static int syntax(struct cmd *c, const char *expected)
{
    const struct kql_token *t = cur(c);
    size_t n = 0;

    if (t->kind == KQL_EOF) {
        return kerr(c->err, -EINVAL, 400, "General_BadRequest",
                    "Syntax error: SYN0002: expected %s at the end of the "
                    "command",
                    expected);
    }
    while (c->src[t->pos + n] && n < 40 &&
           !isspace((unsigned char)c->src[t->pos + n])) {
        n++;
    }
    return kerr(c->err, -EINVAL, 400, "General_BadRequest",
                "Syntax error: SYN0002: expected %s at '%.*s' (position %zu)",
                expected, (int)(n ? n : 1), c->src + t->pos, t->pos);
}

/* A name: plain or ['quoted'] identifier, or a string. Borrowed from the
 * tokens. */
static int read_name(struct cmd *c, const char *what, const char **out)
{
    struct kql_token *t = cur(c);

    if ((t->kind != KQL_IDENT && t->kind != KQL_STRING) || !t->text) {
        return syntax(c, what);
    }
    if (check_name(what, t->text, c->err) < 0) {
        return -EINVAL;
    }
    *out = t->text;
    c->i++;
    return 0;
}

/* One or more adjacent string literals, concatenated (owned). */
static int read_strings(struct cmd *c, const char *what, char **out)
{
    struct sbuf b = {0};

    if (cur(c)->kind != KQL_STRING) {
        return syntax(c, what);
    }
    sb_add(&b, "%s", "");
    while (cur(c)->kind == KQL_STRING) {
        sb_add(&b, "%s", cur(c)->text);
        c->i++;
        if (b.len > MAX_CMD_STRINGS) {
            free(b.s);
            return kerr(c->err, -EMSGSIZE, 400, "General_BadRequest",
                        "%s is longer than %u bytes", what, MAX_CMD_STRINGS);
        }
    }
    if (b.oom) {
        free(b.s);
        return kerr(c->err, -ENOMEM, 500, "Internal_ServiceError",
                    "out of memory");
    }
    *out = b.s;
    return 0;
}

static int expect_end(struct cmd *c)
{
    if (cur(c)->kind != KQL_EOF) {
        return syntax(c, "the end of the command");
    }
    return 0;
}

/* with (folder = "x", docstring = "y", ...): only folder and docstring
 * are kept; other properties are accepted and ignored. */
static int read_with(struct cmd *c, const char **folder, const char **doc)
{
    if (!accept_word(c, "with")) {
        return 0;
    }
    if (!accept_punct(c, "(")) {
        return syntax(c, "'('");
    }
    while (!accept_punct(c, ")")) {
        struct kql_token *key = cur(c), *val;

        if (key->kind != KQL_IDENT) {
            return syntax(c, "a property name");
        }
        c->i++;
        if (!accept_punct(c, "=")) {
            return syntax(c, "'='");
        }
        val = cur(c);
        if (val->kind == KQL_EOF) {
            return syntax(c, "a property value");
        }
        c->i++;
        if (strcasecmp(key->text, "folder") == 0 && val->text) {
            *folder = val->text;
        } else if (strcasecmp(key->text, "docstring") == 0 && val->text) {
            *doc = val->text;
        }
        if (!punct_is(cur(c), ")") && !accept_punct(c, ",")) {
            return syntax(c, "',' or ')'");
        }
    }
    return 0;
}

static int require_db(struct cmd *c, const char *db)
{
    if (!db || !*db) {
        return kerr(c->err, -EINVAL, 400, "General_BadRequest",
                    "this command needs a database (the request's 'db')");
    }
    if (!kusto_database_exists(c->k, db)) {
        return not_found_db(c->err, db);
    }
    return 0;
}

static int require_table(struct cmd *c, const char *db, const char *table)
{
    int rc = require_db(c, db);

    if (rc < 0) {
        return rc;
    }
    if (!table_exists(c->k, db, table)) {
        return not_found_table(c->err, db, table);
    }
    return 0;
}

static int oom(struct cmd *c)
{
    return kerr(c->err, -ENOMEM, 500, "Internal_ServiceError", "out of memory");
}

/* The schema of db.table as ADX's `.show table T schema as json` (owned). */
static char *schema_json(struct kusto *k, const char *db, const char *table)
{
    cJSON *root = cJSON_CreateObject(), *arr;
    char *s = NULL;
    size_t i;

    if (!root || load_schema(k, db, table) < 0) {
        goto out;
    }
    cJSON_AddStringToObject(root, "Name", table);
    arr = cJSON_AddArrayToObject(root, "OrderedColumns");
    if (!arr) {
        goto out;
    }
    for (i = 0; i < k->nscols; i++) {
        cJSON *col = cJSON_CreateObject();
        char sys[64];

        if (!col) {
            goto out;
        }
        cJSON_AddItemToArray(arr, col);
        snprintf(sys, sizeof(sys), "System.%s",
                 kusto_type_v1_name(k->scols[i].type));
        cJSON_AddStringToObject(col, "Name", k->scols[i].name);
        cJSON_AddStringToObject(col, "Type", sys);
        cJSON_AddStringToObject(col, "CslType",
                                kusto_type_name(k->scols[i].type));
    }
    s = cJSON_PrintUnformatted(root);
out:
    cJSON_Delete(root);
    return s;
}

/* "A:int,B:string" (owned). */
static char *schema_csl(struct kusto *k, const char *db, const char *table)
{
    struct sbuf b = {0};
    size_t i;

    if (load_schema(k, db, table) < 0) {
        return NULL;
    }
    sb_add(&b, "%s", "");
    for (i = 0; i < k->nscols; i++) {
        sb_add(&b, "%s%s:%s", i ? "," : "", k->scols[i].name,
               kusto_type_name(k->scols[i].type));
    }
    if (b.oom) {
        free(b.s);
        return NULL;
    }
    return b.s;
}

/* Folder and DocString of a table (owned copies into the out params). */
static void table_props(struct kusto *k, const char *db, const char *table,
                        char **folder, char **doc)
{
    sqlite3_stmt *st = NULL;

    *folder = NULL;
    *doc = NULL;
    if (sqlite3_prepare_v2(k->db,
                           "SELECT folder, docstring FROM \"$kusto_tables\" "
                           "WHERE db = ? AND name = ?",
                           -1, &st, NULL) != SQLITE_OK) {
        return;
    }
    sqlite3_bind_text(st, 1, db, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 2, table, -1, SQLITE_TRANSIENT);
    if (sqlite3_step(st) == SQLITE_ROW) {
        *folder = strdup((const char *)sqlite3_column_text(st, 0));
        *doc = strdup((const char *)sqlite3_column_text(st, 1));
    }
    sqlite3_finalize(st);
}

/* TableName, Schema, DatabaseName, Folder, DocString for one table. */
static int result_table_schema(struct cmd *c, const char *db, const char *table,
                               int json, struct kusto_result **out)
{
    static const struct colspec cols[] = {
        {"TableName", KT_STRING},    {"Schema", KT_STRING},
        {"DatabaseName", KT_STRING}, {"Folder", KT_STRING},
        {"DocString", KT_STRING},
    };
    struct kusto_result *r = result_new("Table_0", cols, 5);
    struct kusto_value *row;
    char *schema, *folder = NULL, *doc = NULL;
    size_t cap = 0;
    int rc = 0;

    schema = json ? schema_json(c->k, db, table) : schema_csl(c->k, db, table);
    table_props(c->k, db, table, &folder, &doc);
    if (!r || !schema || !(row = table_add_row(&r->tables[0], &cap)) ||
        cell_str(&row[0], table) < 0 || cell_str(&row[1], schema) < 0 ||
        cell_str(&row[2], db) < 0 || cell_str(&row[3], folder ? folder : "") ||
        cell_str(&row[4], doc ? doc : "") < 0) {
        rc = oom(c);
        kusto_result_free(r);
        r = NULL;
    }
    free(schema);
    free(folder);
    free(doc);
    *out = r;
    return rc;
}

/* Runs sql (text parameters ?1..?n: params[0..nparams), NULL entries
 * unbound) and returns its rows as a result with the given columns; every
 * column is read as its colspec type. */
static int result_from_sql(struct cmd *c, const char *sql,
                           const char *const *params, size_t nparams,
                           const struct colspec *cols, size_t ncols,
                           struct kusto_result **out)
{
    struct kusto_result *r = result_new("Table_0", cols, ncols);
    sqlite3_stmt *st = NULL;
    size_t cap = 0, i;
    int step, rc = 0;

    if (!r) {
        return oom(c);
    }
    if (sqlite3_prepare_v2(c->k->db, sql, -1, &st, NULL) != SQLITE_OK) {
        kusto_result_free(r);
        return sql_fail(c->k, c->err, "cannot read the catalog");
    }
    for (i = 0; i < nparams; i++) {
        if (params[i]) {
            sqlite3_bind_text(st, (int)i + 1, params[i], -1, SQLITE_TRANSIENT);
        }
    }
    while (rc == 0 && (step = sqlite3_step(st)) == SQLITE_ROW) {
        struct kusto_value *row = table_add_row(&r->tables[0], &cap);

        if (!row) {
            rc = oom(c);
            break;
        }
        for (i = 0; i < ncols && rc == 0; i++) {
            if (sqlite3_column_type(st, (int)i) == SQLITE_NULL) {
                continue;
            }
            if (cols[i].type == KT_STRING) {
                if (cell_str(&row[i], (const char *)sqlite3_column_text(
                                          st, (int)i)) < 0) {
                    rc = oom(c);
                }
            } else if (cols[i].type == KT_REAL) {
                row[i].r = sqlite3_column_double(st, (int)i);
                row[i].is_null = 0;
            } else {
                cell_int(&row[i], sqlite3_column_int64(st, (int)i));
            }
        }
    }
    if (rc == 0 && step != SQLITE_DONE) {
        rc = sql_fail(c->k, c->err, "cannot read the catalog");
    }
    sqlite3_finalize(st);
    if (rc < 0) {
        kusto_result_free(r);
        return rc;
    }
    *out = r;
    return 0;
}

static int show_tables(struct cmd *c, const char *db, struct kusto_result **out)
{
    static const struct colspec cols[] = {
        {"TableName", KT_STRING},
        {"DatabaseName", KT_STRING},
        {"Folder", KT_STRING},
        {"DocString", KT_STRING},
    };

    return result_from_sql(c,
                           "SELECT name, db, folder, docstring FROM "
                           "\"$kusto_tables\" WHERE db = ? ORDER BY name",
                           &db, 1, cols, 4, out);
}

static const struct colspec mapping_cols[] = {
    {"Name", KT_STRING},     {"Kind", KT_STRING},
    {"Mapping", KT_STRING},  {"LastUpdatedOn", KT_DATETIME},
    {"Database", KT_STRING}, {"Table", KT_STRING},
};

/* Rows of "$kusto_mappings" of db.table: kind (NULL = all), name (NULL =
 * all; when given, no row is an EntityNotFound error). */
static int show_mappings(struct cmd *c, const char *db, const char *table,
                         const char *kind, const char *name,
                         struct kusto_result **out)
{
    const char *params[4] = {db, table, kind, name};
    struct kusto_result *r = NULL;
    int rc;

    rc = result_from_sql(
        c,
        "SELECT name, CASE kind WHEN 'json' THEN 'Json' WHEN 'csv' THEN "
        "'Csv' WHEN 'avro' THEN 'Avro' WHEN 'parquet' THEN 'Parquet' WHEN "
        "'orc' THEN 'Orc' ELSE kind END, json, updated, db, tbl FROM "
        "\"$kusto_mappings\" WHERE db = ?1 AND tbl = ?2 AND (?3 IS NULL OR "
        "kind = ?3) AND (?4 IS NULL OR name = ?4) ORDER BY name",
        params, 4, mapping_cols, 6, &r);
    if (rc < 0) {
        return rc;
    }
    if (name && r->tables[0].nrows == 0) {
        kusto_result_free(r);
        return kerr(c->err, -ENOENT, 404, "BadRequest_EntityNotFound",
                    "Entity ID '%s' of kind 'Mapping' was not found", name);
    }
    *out = r;
    return 0;
}

static int mapping_upsert(struct cmd *c, const char *db, const char *table,
                          const char *kind, const char *name, const char *json,
                          int mode /* 0 create, 1 alter, 2 create-or-alter */,
                          struct kusto_result **out)
{
    cJSON *parsed = cJSON_Parse(json);
    char *norm = NULL;
    sqlite3_stmt *st = NULL;
    int rc = 0, exists;

    if (!parsed || !cJSON_IsArray(parsed)) {
        cJSON_Delete(parsed);
        return kerr(c->err, -EINVAL, 400, "BadRequest_InvalidMapping",
                    "mapping '%s' is not a JSON array of column mappings",
                    name);
    }
    norm = cJSON_PrintUnformatted(parsed);
    cJSON_Delete(parsed);
    if (!norm) {
        return oom(c);
    }
    exists = 0;
    if (sqlite3_prepare_v2(c->k->db,
                           "SELECT 1 FROM \"$kusto_mappings\" WHERE db = ? "
                           "AND tbl = ? AND kind = ? AND name = ?",
                           -1, &st, NULL) == SQLITE_OK) {
        sqlite3_bind_text(st, 1, db, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(st, 2, table, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(st, 3, kind, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(st, 4, name, -1, SQLITE_TRANSIENT);
        exists = sqlite3_step(st) == SQLITE_ROW;
        sqlite3_finalize(st);
        st = NULL;
    }
    if (mode == 1 && !exists) {
        free(norm);
        return kerr(c->err, -ENOENT, 404, "BadRequest_EntityNotFound",
                    "Entity ID '%s' of kind 'Mapping' was not found", name);
    }
    /* .create over an existing mapping replaces it: setup scripts are
     * rerun against a kept --data file. */
    if (sqlite3_prepare_v2(c->k->db,
                           "INSERT OR REPLACE INTO \"$kusto_mappings\"(db, "
                           "tbl, kind, name, json, updated) VALUES (?, ?, ?, "
                           "?, ?, ?)",
                           -1, &st, NULL) != SQLITE_OK) {
        free(norm);
        return sql_fail(c->k, c->err, "cannot update the catalog");
    }
    sqlite3_bind_text(st, 1, db, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 2, table, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 3, kind, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 4, name, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 5, norm, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 6, now_ticks());
    if (sqlite3_step(st) != SQLITE_DONE) {
        rc = sql_fail(c->k, c->err, "cannot update the catalog");
    }
    sqlite3_finalize(st);
    free(norm);
    if (rc < 0) {
        return rc;
    }
    return show_mappings(c, db, table, kind, name, out);
}

static const char *const mapping_kinds[] = {
    "json", "csv", "avro", "apacheavro", "parquet", "orc", "w3clogfile"};

static int read_kind(struct cmd *c, const char **kind)
{
    struct kql_token *t = cur(c);
    size_t i;

    if (t->kind == KQL_IDENT && !t->quoted) {
        for (i = 0; i < sizeof(mapping_kinds) / sizeof(mapping_kinds[0]); i++) {
            if (strcasecmp(t->text, mapping_kinds[i]) == 0) {
                *kind = mapping_kinds[i];
                c->i++;
                return 0;
            }
        }
    }
    return syntax(c, "a mapping kind (json, csv, avro, parquet, orc)");
}

/* PolicyName, EntityName, Policy, ChildEntities, EntityType. */
static int show_policy(struct cmd *c, const char *db, const char *table,
                       struct kusto_result **out)
{
    static const struct colspec cols[] = {
        {"PolicyName", KT_STRING}, {"EntityName", KT_STRING},
        {"Policy", KT_STRING},     {"ChildEntities", KT_STRING},
        {"EntityType", KT_STRING},
    };
    struct kusto_result *r = result_new("Table_0", cols, 5);
    struct kusto_value *row;
    char entity[2 * NAME_MAX_LEN + 16];
    char policy[96];
    size_t cap = 0;
    int v = policy_value(c->k, db, table);
    char *children = NULL;

    if (table) {
        snprintf(entity, sizeof(entity), "[%s].[%s]", db, table);
    } else {
        struct sbuf b = {0};
        sqlite3_stmt *st = NULL;

        snprintf(entity, sizeof(entity), "[%s]", db);
        sb_add(&b, "[");
        if (sqlite3_prepare_v2(c->k->db,
                               "SELECT name FROM \"$kusto_tables\" WHERE db "
                               "= ? ORDER BY name",
                               -1, &st, NULL) == SQLITE_OK) {
            int first = 1;

            sqlite3_bind_text(st, 1, db, -1, SQLITE_TRANSIENT);
            while (sqlite3_step(st) == SQLITE_ROW) {
                sb_add(&b, "%s\"[%s].[%s]\"", first ? "" : ",", db,
                       (const char *)sqlite3_column_text(st, 0));
                first = 0;
            }
            sqlite3_finalize(st);
        }
        sb_add(&b, "]");
        children = b.oom ? NULL : b.s;
        if (b.oom) {
            free(b.s);
        }
    }
    if (v < 0) {
        snprintf(policy, sizeof(policy), "null");
    } else {
        snprintf(policy, sizeof(policy),
                 "{\"IsEnabled\":%s,\"HintAllocatedRate\":null}",
                 v ? "true" : "false");
    }
    if (!r || !(row = table_add_row(&r->tables[0], &cap)) ||
        cell_str(&row[0], "StreamingIngestionPolicy") < 0 ||
        cell_str(&row[1], entity) < 0 || cell_str(&row[2], policy) < 0 ||
        cell_str(&row[3], table ? "null" : (children ? children : "[]")) < 0 ||
        cell_str(&row[4], table ? "Table" : "Database") < 0) {
        free(children);
        kusto_result_free(r);
        return oom(c);
    }
    free(children);
    *out = r;
    return 0;
}

/* `.show table T policy ingestiontime`: ADX's policy row, Policy
 * {"IsEnabled":true|false}. */
static int show_itime_policy(struct cmd *c, const char *db, const char *table,
                             struct kusto_result **out)
{
    static const struct colspec cols[] = {
        {"PolicyName", KT_STRING}, {"EntityName", KT_STRING},
        {"Policy", KT_STRING},     {"ChildEntities", KT_STRING},
        {"EntityType", KT_STRING},
    };
    struct kusto_result *r = result_new("Table_0", cols, 5);
    struct kusto_value *row;
    char entity[2 * NAME_MAX_LEN + 16];
    size_t cap = 0;
    int on = itime_value(c->k, db, table);

    snprintf(entity, sizeof(entity), "[%s].[%s]", db, table);
    if (!r || !(row = table_add_row(&r->tables[0], &cap)) ||
        cell_str(&row[0], "IngestionTimePolicy") < 0 ||
        cell_str(&row[1], entity) < 0 ||
        cell_str(&row[2],
                 on ? "{\"IsEnabled\":true}" : "{\"IsEnabled\":false}") < 0 ||
        cell_str(&row[3], "null") < 0 || cell_str(&row[4], "Table") < 0) {
        kusto_result_free(r);
        return oom(c);
    }
    *out = r;
    return 0;
}

/* `.alter table T policy ingestiontime true|false` */
static int set_itime_policy(struct cmd *c, const char *db, const char *table,
                            struct kusto_result **out)
{
    int on;
    int rc;

    if (accept_word(c, "true")) {
        on = 1;
    } else if (accept_word(c, "false")) {
        on = 0;
    } else {
        return syntax(c, "true or false");
    }
    if (expect_end(c) < 0 || require_table(c, db, table) < 0) {
        return -EINVAL;
    }
    rc = exec_bound(c->k,
                    "UPDATE \"$kusto_tables\" SET itime = CAST(?3 AS "
                    "INTEGER) WHERE db = ?1 AND name = ?2",
                    db, table, on ? "1" : "0", c->err);
    if (rc < 0) {
        return rc;
    }
    return show_itime_policy(c, db, table, out);
}

/* enable | disable | '<policy JSON>' -> 1/0. */
static int read_policy_value(struct cmd *c, int *enabled)
{
    char *json = NULL;
    cJSON *p, *v;

    if (accept_word(c, "enable")) {
        *enabled = 1;
        return 0;
    }
    if (accept_word(c, "disable")) {
        *enabled = 0;
        return 0;
    }
    if (cur(c)->kind != KQL_STRING) {
        return syntax(c, "enable, disable or a policy JSON string");
    }
    if (read_strings(c, "the policy", &json) < 0) {
        return -EINVAL;
    }
    p = cJSON_Parse(json);
    free(json);
    if (!p || !cJSON_IsObject(p)) {
        cJSON_Delete(p);
        return kerr(c->err, -EINVAL, 400, "General_BadRequest",
                    "the streaming ingestion policy is not a JSON object");
    }
    v = cJSON_GetObjectItemCaseSensitive(p, "IsEnabled");
    if (v && !cJSON_IsBool(v)) {
        cJSON_Delete(p);
        return kerr(c->err, -EINVAL, 400, "General_BadRequest",
                    "'IsEnabled' of the streaming ingestion policy is not "
                    "a bool");
    }
    *enabled = v && cJSON_IsTrue(v);
    cJSON_Delete(p);
    return 0;
}

static int set_policy(struct cmd *c, const char *db, const char *table,
                      int value /* -1 deletes */, struct kusto_result **out)
{
    char v[8];
    int rc;

    snprintf(v, sizeof(v), "%d", value);
    if (table) {
        rc = exec_bound(c->k,
                        value < 0 ? "UPDATE \"$kusto_tables\" SET streaming "
                                    "= NULL WHERE db = ?1 AND name = ?2"
                                  : "UPDATE \"$kusto_tables\" SET streaming "
                                    "= CAST(?3 AS INTEGER) WHERE db = ?1 AND "
                                    "name = ?2",
                        db, table, value < 0 ? NULL : v, c->err);
    } else {
        rc = exec_bound(c->k,
                        value < 0 ? "UPDATE \"$kusto_databases\" SET "
                                    "streaming = NULL WHERE name = ?1"
                                  : "UPDATE \"$kusto_databases\" SET "
                                    "streaming = CAST(?2 AS INTEGER) WHERE "
                                    "name = ?1",
                        db, value < 0 ? NULL : v, NULL, c->err);
    }
    if (rc < 0) {
        return rc;
    }
    return show_policy(c, db, table, out);
}

/* The compile date of this file (__DATE__, "Nov 24 2026") in ticks. */
static void build_time(int64_t *ticks)
{
    static const char months[] = "JanFebMarAprMayJunJulAugSepOctNovDec";
    const char *date = __DATE__;
    const char *m = strstr(months, (char[4]){date[0], date[1], date[2], 0});
    char iso[32];

    *ticks = 0;
    if (!m) {
        return;
    }
    snprintf(iso, sizeof(iso), "%.4s-%02u-%02u", date + 7,
             (unsigned)((m - months) / 3 + 1) % 100u,
             (unsigned)((date[4] == ' ' ? 0 : date[4] - '0') * 10 +
                        (date[5] - '0')) %
                 100u);
    kql_parse_datetime(iso, strlen(iso), ticks);
}

static int show_version(struct cmd *c, struct kusto_result **out)
{
    static const struct colspec cols[] = {
        {"BuildVersion", KT_STRING},
        {"BuildTime", KT_DATETIME},
        {"ServiceType", KT_STRING},
        {"ProductVersion", KT_STRING},
    };
    struct kusto_result *r = result_new("Table_0", cols, 4);
    struct kusto_value *row;
    size_t cap = 0;
    int64_t built = 0;

    build_time(&built);
    if (!r || !(row = table_add_row(&r->tables[0], &cap)) ||
        cell_str(&row[0], KADX_VERSION) < 0 ||
        cell_str(&row[2], "Engine") < 0 ||
        cell_str(&row[3], "kadx-adx-emulator " KADX_VERSION) < 0) {
        kusto_result_free(r);
        return oom(c);
    }
    cell_int(&row[1], built);
    *out = r;
    return 0;
}

/* .show/.get ingestion resources: what a queued-ingestion client asks the
 * data-management endpoint for (blob containers and queues with SAS). With
 * blob storage (--storage-*, emulators/dm.c) the rows come from the
 * resources callback, fresh SAS each time; without it the table has ADX's
 * columns and no row: a client (the Java SDK's ManagedStreamingIngestClient
 * asks at start) sees the answer it parses, and finds no resource. */
static int show_ingestion_resources(struct cmd *c, struct kusto_result **out)
{
    static const struct colspec cols[] = {
        {"ResourceTypeName", KT_STRING},
        {"StorageRoot", KT_STRING},
    };
    struct kusto_result *r = result_new("Table_0", cols, 2);
    struct kusto *k = c->k;

    if (!r) {
        return oom(c);
    }
    if (k->resources_fn != NULL) {
        const char *types[KUSTO_MAX_RESOURCES];
        char *roots[KUSTO_MAX_RESOURCES];
        size_t n = k->resources_fn(k->resources_data, types, roots,
                                   KUSTO_MAX_RESOURCES);
        size_t cap = 0;
        int rc = 0;
        for (size_t i = 0; i < n; i++) {
            struct kusto_value *row;
            if (rc == 0 && (!(row = table_add_row(&r->tables[0], &cap)) ||
                            cell_str(&row[0], types[i]) < 0 ||
                            cell_str(&row[1], roots[i]) < 0)) {
                rc = -ENOMEM;
            }
            free(roots[i]);
        }
        if (rc < 0) {
            kusto_result_free(r);
            return oom(c);
        }
    }
    *out = r;
    return 0;
}

void kusto_set_resources_fn(struct kusto *k, kusto_resources_fn fn, void *data)
{
    k->resources_fn = fn;
    k->resources_data = data;
}

/* .get kusto identity token: the DM's token for queued-ingestion messages,
 * one row, column AuthorizationContext. An opaque string here. */
static int get_identity_token(struct cmd *c, struct kusto_result **out)
{
    static const struct colspec cols[] = {
        {"AuthorizationContext", KT_STRING},
    };
    struct kusto_result *r = result_new("Table_0", cols, 1);
    struct kusto_value *row;
    size_t cap = 0;

    if (!r || !(row = table_add_row(&r->tables[0], &cap)) ||
        cell_str(&row[0], "kadx-emulator-identity-token") < 0) {
        kusto_result_free(r);
        return oom(c);
    }
    *out = r;
    return 0;
}

static int show_databases(struct cmd *c, struct kusto_result **out)
{
    static const struct colspec cols[] = {
        {"DatabaseName", KT_STRING},
        {"PersistentStorage", KT_STRING},
        {"Version", KT_STRING},
        {"IsCurrent", KT_BOOL},
        {"DatabaseAccessMode", KT_STRING},
        {"PrettyName", KT_STRING},
    };

    return result_from_sql(c,
                           "SELECT name, '', 'v1.0', name = ?1, 'ReadWrite', "
                           "'' FROM \"$kusto_databases\" ORDER BY name",
                           &c->db, 1, cols, 6, out);
}

static int clear_table(struct cmd *c, const char *db, const char *table,
                       struct kusto_result **out)
{
    static const struct colspec cols[] = {
        {"Status", KT_STRING},
    };
    char qname[4 * NAME_MAX_LEN + 8], sql[4 * NAME_MAX_LEN + 32];
    struct kusto_result *r;
    struct kusto_value *row;
    size_t cap = 0;
    int rc;

    if (row_table_name(db, table, qname, sizeof(qname)) < 0) {
        return kerr(c->err, -ENAMETOOLONG, 400, "General_BadRequest",
                    "name too long");
    }
    drop_insert_cache(c->k);
    snprintf(sql, sizeof(sql), "DELETE FROM %s", qname);
    rc = exec_sql(c->k, sql, c->err);
    if (rc < 0) {
        return rc;
    }
    r = result_new("Table_0", cols, 1);
    if (!r || !(row = table_add_row(&r->tables[0], &cap)) ||
        cell_str(&row[0], "Completed") < 0) {
        kusto_result_free(r);
        return oom(c);
    }
    *out = r;
    return 0;
}

/* Column definitions "(A: int, ['B c']: string)" (owned array). */
static int read_coldefs(struct cmd *c, struct coldef **out, size_t *n)
{
    struct coldef *defs = NULL;
    size_t cap = 0, cnt = 0;
    int rc = 0;

    if (!accept_punct(c, "(")) {
        return syntax(c, "'(' and the column list");
    }
    while (!accept_punct(c, ")")) {
        const char *name, *type;
        enum kusto_type t;

        if (cnt >= MAX_COLUMNS) {
            rc = kerr(c->err, -EMSGSIZE, 400, "General_BadRequest",
                      "more than %d columns", MAX_COLUMNS);
            goto fail;
        }
        rc = read_name(c, "a column name", &name);
        if (rc < 0) {
            goto fail;
        }
        if (!accept_punct(c, ":")) {
            rc = syntax(c, "':' and a column type");
            goto fail;
        }
        if (cur(c)->kind != KQL_IDENT) {
            rc = syntax(c, "a column type");
            goto fail;
        }
        type = cur(c)->text;
        if (kusto_type_parse(type, &t) < 0) {
            rc = kerr(c->err, -EINVAL, 400, "General_BadRequest",
                      "Syntax error: unknown column type '%s' of column "
                      "'%s'",
                      type, name);
            goto fail;
        }
        c->i++;
        if (cnt == cap) {
            size_t ncap = cap ? cap * 2 : 8;
            struct coldef *nd = realloc(defs, ncap * sizeof(*nd));

            if (!nd) {
                rc = oom(c);
                goto fail;
            }
            defs = nd;
            cap = ncap;
        }
        defs[cnt].name = strdup(name);
        defs[cnt].type = t;
        if (!defs[cnt].name) {
            rc = oom(c);
            goto fail;
        }
        cnt++;
        if (!punct_is(cur(c), ")") && !accept_punct(c, ",")) {
            rc = syntax(c, "',' or ')'");
            goto fail;
        }
    }
    if (cnt == 0) {
        rc = kerr(c->err, -EINVAL, 400, "General_BadRequest",
                  "Syntax error: a table needs at least one column");
        goto fail;
    }
    *out = defs;
    *n = cnt;
    return 0;
fail:
    coldefs_free(defs, cnt);
    return rc;
}

/* The command word after '.', with dashes: "create-or-alter". */
static int read_verb(struct cmd *c, char *verb, size_t len)
{
    size_t o = 0;

    if (!accept_punct(c, ".") || cur(c)->kind != KQL_IDENT) {
        return syntax(c, "a management command");
    }
    verb[0] = '\0';
    for (;;) {
        o += (size_t)snprintf(verb + o, len - o, "%s", cur(c)->text);
        if (o >= len) {
            return syntax(c, "a management command");
        }
        c->i++;
        if (punct_is(cur(c), "-") && c->tk.v[c->i + 1].kind == KQL_IDENT) {
            o += (size_t)snprintf(verb + o, len - o, "-");
            c->i++;
            continue;
        }
        break;
    }
    for (o = 0; verb[o]; o++) {
        verb[o] = (char)tolower((unsigned char)verb[o]);
    }
    return 0;
}

static int unsupported_command(struct cmd *c)
{
    size_t n = 0;

    while (c->src[n] && c->src[n] != '\n' && n < 80) {
        n++;
    }
    return kerr(c->err, -ENOTSUP, 400, "General_BadRequest",
                "unsupported management command '%.*s' (the emulator "
                "supports .create/.create-merge/.drop/.clear table, "
                "ingestion mappings, streamingingestion policies, "
                ".show tables/databases/version, .show/.get ingestion "
                "resources, .get kusto identity token)",
                (int)n, c->src);
}

/* .show ... */
static int cmd_show(struct cmd *c, struct kusto_result **out)
{
    const char *name, *kind = NULL, *mname = NULL;
    int rc;

    if (accept_word(c, "version")) {
        return expect_end(c) < 0 ? -EINVAL : show_version(c, out);
    }
    if (accept_word(c, "databases")) {
        return expect_end(c) < 0 ? -EINVAL : show_databases(c, out);
    }
    if (accept_word(c, "ingestion")) {
        if (!accept_word(c, "resources")) {
            return syntax(c, "resources");
        }
        return expect_end(c) < 0 ? -EINVAL : show_ingestion_resources(c, out);
    }
    if (accept_word(c, "tables")) {
        accept_word(c, "details");
        if (expect_end(c) < 0 || require_db(c, c->db) < 0) {
            return -EINVAL;
        }
        return show_tables(c, c->db, out);
    }
    if (accept_word(c, "database")) {
        if (read_name(c, "a database name", &name) < 0) {
            return -EINVAL;
        }
        if (!accept_word(c, "policy") ||
            !accept_word(c, "streamingingestion")) {
            return syntax(c, "policy streamingingestion");
        }
        rc = expect_end(c);
        if (rc == 0) {
            rc = require_db(c, name);
        }
        return rc < 0 ? rc : show_policy(c, name, NULL, out);
    }
    if (!accept_word(c, "table")) {
        return unsupported_command(c);
    }
    if (read_name(c, "a table name", &name) < 0) {
        return -EINVAL;
    }
    if (require_table(c, c->db, name) < 0) {
        return -ENOENT;
    }
    if (accept_word(c, "ingestion")) {
        if (!word_is(cur(c), "mappings") && read_kind(c, &kind) < 0) {
            return -EINVAL;
        }
        if (accept_word(c, "mapping")) {
            if (read_name(c, "a mapping name", &mname) < 0) {
                return -EINVAL;
            }
        } else if (!accept_word(c, "mappings")) {
            return syntax(c, "mappings or mapping 'name'");
        }
        return expect_end(c) < 0
                   ? -EINVAL
                   : show_mappings(c, c->db, name, kind, mname, out);
    }
    if (accept_word(c, "policy")) {
        if (accept_word(c, "ingestiontime")) {
            return expect_end(c) < 0 || require_table(c, c->db, name) < 0
                       ? -EINVAL
                       : show_itime_policy(c, c->db, name, out);
        }
        if (!accept_word(c, "streamingingestion")) {
            return syntax(c, "streamingingestion or ingestiontime");
        }
        return expect_end(c) < 0 ? -EINVAL : show_policy(c, c->db, name, out);
    }
    if (accept_word(c, "cslschema")) {
        return expect_end(c) < 0 ? -EINVAL
                                 : result_table_schema(c, c->db, name, 0, out);
    }
    if (accept_word(c, "schema")) {
        if (!accept_word(c, "as") || !accept_word(c, "json")) {
            return syntax(c, "as json");
        }
        return expect_end(c) < 0 ? -EINVAL
                                 : result_table_schema(c, c->db, name, 1, out);
    }
    return unsupported_command(c);
}

/* .create / .create-merge / .create-or-alter / .alter / .alter-merge table
 * or database ... */
static int cmd_create_alter(struct cmd *c, const char *verb,
                            struct kusto_result **out)
{
    int is_create = strcmp(verb, "create") == 0;
    int is_merge = strcmp(verb, "create-merge") == 0;
    int is_cor = strcmp(verb, "create-or-alter") == 0;
    int is_alter =
        strcmp(verb, "alter") == 0 || strcmp(verb, "alter-merge") == 0;
    const char *name, *folder = NULL, *doc = NULL;
    int rc, enabled;

    if (accept_word(c, "database")) {
        if (!is_alter) {
            return unsupported_command(c);
        }
        if (read_name(c, "a database name", &name) < 0) {
            return -EINVAL;
        }
        if (!accept_word(c, "policy") ||
            !accept_word(c, "streamingingestion")) {
            return syntax(c, "policy streamingingestion");
        }
        if (read_policy_value(c, &enabled) < 0 || expect_end(c) < 0 ||
            require_db(c, name) < 0) {
            return -EINVAL;
        }
        return set_policy(c, name, NULL, enabled, out);
    }
    if (!accept_word(c, "table")) {
        return unsupported_command(c);
    }
    if (read_name(c, "a table name", &name) < 0) {
        return -EINVAL;
    }
    if (require_db(c, c->db) < 0) {
        return -ENOENT;
    }
    if (punct_is(cur(c), "(")) {
        struct coldef *defs = NULL;
        size_t n = 0;

        if (!is_create && !is_merge) {
            return unsupported_command(c);
        }
        rc = read_coldefs(c, &defs, &n);
        if (rc == 0) {
            rc = read_with(c, &folder, &doc);
        }
        if (rc == 0) {
            rc = expect_end(c);
        }
        if (rc == 0) {
            rc = ddl_create_table(c->k, c->db, name, defs, n, is_merge, folder,
                                  doc, c->err);
        }
        coldefs_free(defs, n);
        if (rc < 0) {
            return rc;
        }
        return result_table_schema(c, c->db, name, 1, out);
    }
    if (accept_word(c, "ingestion")) {
        const char *kind, *mname;
        char *json = NULL;

        if (read_kind(c, &kind) < 0) {
            return -EINVAL;
        }
        if (!accept_word(c, "mapping")) {
            return syntax(c, "mapping");
        }
        if (read_name(c, "a mapping name", &mname) < 0 ||
            read_strings(c, "the mapping", &json) < 0) {
            return -EINVAL;
        }
        rc = read_with(c, &folder, &doc);
        if (rc == 0) {
            rc = expect_end(c);
        }
        if (rc == 0) {
            rc = require_table(c, c->db, name);
        }
        if (rc == 0 && !is_create && !is_cor && !is_alter) {
            rc = unsupported_command(c);
        }
        if (rc == 0) {
            rc = mapping_upsert(c, c->db, name, kind, mname, json,
                                is_alter ? 1
                                : is_cor ? 2
                                         : 0,
                                out);
        }
        free(json);
        return rc;
    }
    if (accept_word(c, "policy")) {
        if (!is_alter) {
            return unsupported_command(c);
        }
        if (accept_word(c, "ingestiontime")) {
            return set_itime_policy(c, c->db, name, out);
        }
        if (!accept_word(c, "streamingingestion")) {
            return syntax(c, "streamingingestion or ingestiontime");
        }
        if (read_policy_value(c, &enabled) < 0 || expect_end(c) < 0 ||
            require_table(c, c->db, name) < 0) {
            return -EINVAL;
        }
        return set_policy(c, c->db, name, enabled, out);
    }
    return unsupported_command(c);
}

static int cmd_drop(struct cmd *c, struct kusto_result **out)
{
    static const struct colspec cols[] = {
        {"TableName", KT_STRING},
        {"DatabaseName", KT_STRING},
    };
    const char *name, *kind, *mname;
    int rc, ifexists;

    if (!accept_word(c, "table")) {
        return unsupported_command(c);
    }
    if (read_name(c, "a table name", &name) < 0 || require_db(c, c->db) < 0) {
        return -EINVAL;
    }
    if (accept_word(c, "ingestion")) {
        if (read_kind(c, &kind) < 0) {
            return -EINVAL;
        }
        if (!accept_word(c, "mapping")) {
            return syntax(c, "mapping");
        }
        if (read_name(c, "a mapping name", &mname) < 0 || expect_end(c) < 0 ||
            require_table(c, c->db, name) < 0) {
            return -EINVAL;
        }
        {
            sqlite3_stmt *st = NULL;

            if (sqlite3_prepare_v2(c->k->db,
                                   "DELETE FROM \"$kusto_mappings\" WHERE db "
                                   "= ? AND tbl = ? AND kind = ? AND name = ?",
                                   -1, &st, NULL) != SQLITE_OK) {
                return sql_fail(c->k, c->err, "cannot update the catalog");
            }
            sqlite3_bind_text(st, 1, c->db, -1, SQLITE_TRANSIENT);
            sqlite3_bind_text(st, 2, name, -1, SQLITE_TRANSIENT);
            sqlite3_bind_text(st, 3, kind, -1, SQLITE_TRANSIENT);
            sqlite3_bind_text(st, 4, mname, -1, SQLITE_TRANSIENT);
            rc = sqlite3_step(st) == SQLITE_DONE ? 0 : -EIO;
            sqlite3_finalize(st);
            if (rc < 0) {
                return sql_fail(c->k, c->err, "cannot update the catalog");
            }
            if (sqlite3_changes(c->k->db) == 0) {
                return kerr(c->err, -ENOENT, 404, "BadRequest_EntityNotFound",
                            "Entity ID '%s' of kind 'Mapping' was not found",
                            mname);
            }
        }
        return show_mappings(c, c->db, name, kind, NULL, out);
    }
    ifexists = accept_word(c, "ifexists");
    if (expect_end(c) < 0) {
        return -EINVAL;
    }
    if (!table_exists(c->k, c->db, name)) {
        if (!ifexists) {
            return not_found_table(c->err, c->db, name);
        }
    } else {
        rc = ddl_drop_table(c->k, c->db, name, c->err);
        if (rc < 0) {
            return rc;
        }
    }
    return result_from_sql(c,
                           "SELECT name, db FROM \"$kusto_tables\" WHERE db "
                           "= ? ORDER BY name",
                           &c->db, 1, cols, 2, out);
}

static int run_command(struct kusto *k, const char *db, const char *csl,
                       struct kusto_result **out, struct kusto_error *err)
{
    struct cmd c;
    char verb[64];
    const char *name;
    int rc;

    memset(&c, 0, sizeof(c));
    c.k = k;
    c.db = db && *db ? db : NULL;
    c.src = csl;
    c.err = err;
    rc = kql_lex(csl, &c.tk, err);
    if (rc < 0) {
        goto out;
    }
    rc = read_verb(&c, verb, sizeof(verb));
    if (rc < 0) {
        goto out;
    }
    if (strcmp(verb, "show") == 0) {
        rc = cmd_show(&c, out);
    } else if (strcmp(verb, "create") == 0 ||
               strcmp(verb, "create-merge") == 0 ||
               strcmp(verb, "create-or-alter") == 0 ||
               strcmp(verb, "alter") == 0 || strcmp(verb, "alter-merge") == 0) {
        rc = cmd_create_alter(&c, verb, out);
    } else if (strcmp(verb, "get") == 0) {
        if (accept_word(&c, "ingestion")) {
            rc = !accept_word(&c, "resources") ? syntax(&c, "resources")
                 : (rc = expect_end(&c)) < 0
                     ? rc
                     : show_ingestion_resources(&c, out);
        } else if (accept_word(&c, "kusto")) {
            rc = !accept_word(&c, "identity") ? syntax(&c, "identity")
                 : !accept_word(&c, "token")  ? syntax(&c, "token")
                 : (rc = expect_end(&c)) < 0  ? rc
                                              : get_identity_token(&c, out);
        } else {
            rc = unsupported_command(&c);
        }
    } else if (strcmp(verb, "drop") == 0) {
        rc = cmd_drop(&c, out);
    } else if (strcmp(verb, "clear") == 0) {
        if (!accept_word(&c, "table")) {
            rc = unsupported_command(&c);
        } else if ((rc = read_name(&c, "a table name", &name)) == 0) {
            if (!accept_word(&c, "data")) {
                rc = syntax(&c, "data");
            } else if ((rc = expect_end(&c)) == 0 &&
                       (rc = require_table(&c, c.db, name)) == 0) {
                rc = clear_table(&c, c.db, name, out);
            }
        }
    } else if (strcmp(verb, "delete") == 0) {
        int is_table = accept_word(&c, "table");

        if (!is_table && !accept_word(&c, "database")) {
            rc = unsupported_command(&c);
        } else if ((rc = read_name(&c, "a name", &name)) == 0) {
            if (!accept_word(&c, "policy") ||
                !accept_word(&c, "streamingingestion")) {
                rc = syntax(&c, "policy streamingingestion");
            } else if ((rc = expect_end(&c)) == 0) {
                rc = is_table ? require_table(&c, c.db, name)
                              : require_db(&c, name);
                if (rc == 0) {
                    rc = set_policy(&c, is_table ? c.db : name,
                                    is_table ? name : NULL, -1, out);
                }
            }
        }
    } else {
        rc = unsupported_command(&c);
    }
out:
    kql_tokens_release(&c.tk);
    return rc;
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
    int rc = load_schema(sc->k, sc->db, name);

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

    rc = kql_translate(csl, db, schema_cb, &sc, now_ticks(), &plan, err);
    if (rc < 0) {
        goto out;
    }
    specs = calloc(plan.ncols ? plan.ncols : 1, sizeof(*specs));
    if (!specs) {
        rc = kerr(err, -ENOMEM, 500, "Internal_ServiceError", "out of memory");
        goto out;
    }
    for (i = 0; i < plan.ncols; i++) {
        specs[i].name = plan.cols[i].name;
        specs[i].type = plan.cols[i].type;
    }
    r = result_new("PrimaryResult", specs, plan.ncols);
    if (!r) {
        rc = kerr(err, -ENOMEM, 500, "Internal_ServiceError", "out of memory");
        goto out;
    }
    if (sqlite3_prepare_v2(k->db, plan.sql, -1, &st, NULL) != SQLITE_OK) {
        rc = kerr(err, -EINVAL, 400, "General_BadRequest",
                  "query could not be run: %s", sqlite3_errmsg(k->db));
        goto out;
    }
    while ((step = sqlite3_step(st)) == SQLITE_ROW) {
        struct kusto_value *row;

        if (r->tables[0].nrows >= MAX_RESULT_ROWS) {
            rc = kerr(err, -E2BIG, 400, "LimitsExceeded",
                      "Query result set has exceeded the internal record "
                      "count limit %d (E_QUERY_RESULT_SET_TOO_LARGE)",
                      MAX_RESULT_ROWS);
            goto out;
        }
        row = table_add_row(&r->tables[0], &cap);
        if (!row) {
            rc = kerr(err, -ENOMEM, 500, "Internal_ServiceError",
                      "out of memory");
            goto out;
        }
        for (i = 0; i < plan.ncols; i++) {
            if (read_cell(st, (int)i, plan.cols[i].type, &row[i]) < 0) {
                rc = kerr(err, -ENOMEM, 500, "Internal_ServiceError",
                          "out of memory");
                goto out;
            }
        }
    }
    if (step != SQLITE_DONE) {
        rc = kerr(err, -EINVAL, 400, "General_BadRequest", "query failed: %s",
                  sqlite3_errmsg(k->db));
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
        return kerr(err, -EINVAL, 400, "General_BadRequest",
                    "the request has no query text ('csl')");
    }
    if (strlen(csl) > KQL_MAX_TEXT) {
        return kerr(err, -EMSGSIZE, 400, "General_BadRequest",
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
        return run_command(k, db, p, out, err);
    }
    if (!db || !*db) {
        return kerr(err, -EINVAL, 400, "General_BadRequest",
                    "a query needs a database (the request's 'db')");
    }
    if (!kusto_database_exists(k, db)) {
        return not_found_db(err, db);
    }
    return run_query(k, db, p, out, err);
}
