/*
 * kusto_cmd.c - the emulator engine's management commands (a csl that
 * starts with '.'): a small parser over kql.c's tokens and the commands it
 * knows (.show, .create/.alter/.create-merge/.create-or-alter, .drop,
 * .clear table data, .delete ... policy, .get ingestion resources, .get
 * kusto identity token), each answering with a result table as ADX does.
 * Loop thread only, like the engine.
 */
#include "emulators/kusto_internal.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>
#include <sqlite3.h>

#include "emulators/kql.h"
#include "kadx_version.h"

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
        return kusto_err(c->err, -EINVAL, 400, "General_BadRequest",
                         "Syntax error: SYN0002: expected %s at the end of the "
                         "command",
                         expected);
    }
    while (c->src[t->pos + n] && n < 40 &&
           !isspace((unsigned char)c->src[t->pos + n])) {
        n++;
    }
    return kusto_err(
        c->err, -EINVAL, 400, "General_BadRequest",
        "Syntax error: SYN0002: expected %s at '%.*s' (position %zu)", expected,
        (int)(n ? n : 1), c->src + t->pos, t->pos);
}

/* A name: plain or ['quoted'] identifier, or a string. Borrowed from the
 * tokens. */
static int read_name(struct cmd *c, const char *what, const char **out)
{
    struct kql_token *t = cur(c);

    if ((t->kind != KQL_IDENT && t->kind != KQL_STRING) || !t->text) {
        return syntax(c, what);
    }
    if (kusto_check_name(what, t->text, c->err) < 0) {
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
    sbuf_printf(&b, "%s", "");
    while (cur(c)->kind == KQL_STRING) {
        sbuf_printf(&b, "%s", cur(c)->text);
        c->i++;
        if (b.len > MAX_CMD_STRINGS) {
            free(b.p);
            return kusto_err(c->err, -EMSGSIZE, 400, "General_BadRequest",
                             "%s is longer than %u bytes", what,
                             MAX_CMD_STRINGS);
        }
    }
    if (b.err) {
        free(b.p);
        return kusto_err(c->err, -ENOMEM, 500, "Internal_ServiceError",
                         "out of memory");
    }
    *out = b.p;
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
        return kusto_err(c->err, -EINVAL, 400, "General_BadRequest",
                         "this command needs a database (the request's 'db')");
    }
    if (!kusto_database_exists(c->k, db)) {
        return kusto_no_db(c->err, db);
    }
    return 0;
}

static int require_table(struct cmd *c, const char *db, const char *table)
{
    int rc = require_db(c, db);

    if (rc < 0) {
        return rc;
    }
    if (!kusto_table_exists(c->k, db, table)) {
        return kusto_no_table(c->err, db, table);
    }
    return 0;
}

static int oom(struct cmd *c)
{
    return kusto_err(c->err, -ENOMEM, 500, "Internal_ServiceError",
                     "out of memory");
}

/* The schema of db.table as ADX's `.show table T schema as json` (owned). */
static char *schema_json(struct kusto *k, const char *db, const char *table)
{
    cJSON *root = cJSON_CreateObject(), *arr;
    char *s = NULL;
    size_t i;

    if (!root || kusto_load_schema(k, db, table) < 0) {
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

    if (kusto_load_schema(k, db, table) < 0) {
        return NULL;
    }
    sbuf_printf(&b, "%s", "");
    for (i = 0; i < k->nscols; i++) {
        sbuf_printf(&b, "%s%s:%s", i ? "," : "", k->scols[i].name,
                    kusto_type_name(k->scols[i].type));
    }
    if (b.err) {
        free(b.p);
        return NULL;
    }
    return b.p;
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
    struct kusto_result *r = kusto_result_new("Table_0", cols, 5);
    struct kusto_value *row;
    char *schema, *folder = NULL, *doc = NULL;
    size_t cap = 0;
    int rc = 0;

    schema = json ? schema_json(c->k, db, table) : schema_csl(c->k, db, table);
    table_props(c->k, db, table, &folder, &doc);
    if (!r || !schema || !(row = kusto_table_add_row(&r->tables[0], &cap)) ||
        kusto_cell_str(&row[0], table) < 0 ||
        kusto_cell_str(&row[1], schema) < 0 ||
        kusto_cell_str(&row[2], db) < 0 ||
        kusto_cell_str(&row[3], folder ? folder : "") ||
        kusto_cell_str(&row[4], doc ? doc : "") < 0) {
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
    struct kusto_result *r = kusto_result_new("Table_0", cols, ncols);
    sqlite3_stmt *st = NULL;
    size_t cap = 0, i;
    int step, rc = 0;

    if (!r) {
        return oom(c);
    }
    if (sqlite3_prepare_v2(c->k->db, sql, -1, &st, NULL) != SQLITE_OK) {
        kusto_result_free(r);
        return kusto_sql_fail(c->k, c->err, "cannot read the catalog");
    }
    for (i = 0; i < nparams; i++) {
        if (params[i]) {
            sqlite3_bind_text(st, (int)i + 1, params[i], -1, SQLITE_TRANSIENT);
        }
    }
    while (rc == 0 && (step = sqlite3_step(st)) == SQLITE_ROW) {
        struct kusto_value *row = kusto_table_add_row(&r->tables[0], &cap);

        if (!row) {
            rc = oom(c);
            break;
        }
        for (i = 0; i < ncols && rc == 0; i++) {
            if (sqlite3_column_type(st, (int)i) == SQLITE_NULL) {
                continue;
            }
            if (cols[i].type == KT_STRING) {
                if (kusto_cell_str(&row[i], (const char *)sqlite3_column_text(
                                                st, (int)i)) < 0) {
                    rc = oom(c);
                }
            } else if (cols[i].type == KT_REAL) {
                row[i].r = sqlite3_column_double(st, (int)i);
                row[i].is_null = 0;
            } else {
                kusto_cell_int(&row[i], sqlite3_column_int64(st, (int)i));
            }
        }
    }
    if (rc == 0 && step != SQLITE_DONE) {
        rc = kusto_sql_fail(c->k, c->err, "cannot read the catalog");
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
        return kusto_err(c->err, -ENOENT, 404, "BadRequest_EntityNotFound",
                         "Entity ID '%s' of kind 'Mapping' was not found",
                         name);
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
        return kusto_err(c->err, -EINVAL, 400, "BadRequest_InvalidMapping",
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
        return kusto_err(c->err, -ENOENT, 404, "BadRequest_EntityNotFound",
                         "Entity ID '%s' of kind 'Mapping' was not found",
                         name);
    }
    /* .create over an existing mapping replaces it: setup scripts are
     * rerun against a kept --data file. */
    if (sqlite3_prepare_v2(c->k->db,
                           "INSERT OR REPLACE INTO \"$kusto_mappings\"(db, "
                           "tbl, kind, name, json, updated) VALUES (?, ?, ?, "
                           "?, ?, ?)",
                           -1, &st, NULL) != SQLITE_OK) {
        free(norm);
        return kusto_sql_fail(c->k, c->err, "cannot update the catalog");
    }
    sqlite3_bind_text(st, 1, db, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 2, table, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 3, kind, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 4, name, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 5, norm, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 6, emu_now_ticks());
    if (sqlite3_step(st) != SQLITE_DONE) {
        rc = kusto_sql_fail(c->k, c->err, "cannot update the catalog");
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

    *kind = NULL; /* gcc -O3 cannot see that syntax() fails */
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

/* The columns of a `.show ... policy` row, as ADX answers it. */
static const struct colspec policy_cols[] = {
    {"PolicyName", KT_STRING}, {"EntityName", KT_STRING},
    {"Policy", KT_STRING},     {"ChildEntities", KT_STRING},
    {"EntityType", KT_STRING},
};

/* PolicyName, EntityName, Policy, ChildEntities, EntityType. */
static int show_policy(struct cmd *c, const char *db, const char *table,
                       struct kusto_result **out)
{
    struct kusto_result *r = kusto_result_new("Table_0", policy_cols, 5);
    struct kusto_value *row;
    char entity[2 * NAME_MAX_LEN + 16];
    char policy[96];
    size_t cap = 0;
    int v = kusto_policy_value(c->k, db, table);
    char *children = NULL;

    if (table) {
        snprintf(entity, sizeof(entity), "[%s].[%s]", db, table);
    } else {
        struct sbuf b = {0};
        sqlite3_stmt *st = NULL;

        snprintf(entity, sizeof(entity), "[%s]", db);
        sbuf_printf(&b, "[");
        if (sqlite3_prepare_v2(c->k->db,
                               "SELECT name FROM \"$kusto_tables\" WHERE db "
                               "= ? ORDER BY name",
                               -1, &st, NULL) == SQLITE_OK) {
            int first = 1;

            sqlite3_bind_text(st, 1, db, -1, SQLITE_TRANSIENT);
            while (sqlite3_step(st) == SQLITE_ROW) {
                sbuf_printf(&b, "%s\"[%s].[%s]\"", first ? "" : ",", db,
                            (const char *)sqlite3_column_text(st, 0));
                first = 0;
            }
            sqlite3_finalize(st);
        }
        sbuf_printf(&b, "]");
        children = b.err ? NULL : b.p;
        if (b.err) {
            free(b.p);
        }
    }
    if (v < 0) {
        snprintf(policy, sizeof(policy), "null");
    } else {
        snprintf(policy, sizeof(policy),
                 "{\"IsEnabled\":%s,\"HintAllocatedRate\":null}",
                 v ? "true" : "false");
    }
    if (!r || !(row = kusto_table_add_row(&r->tables[0], &cap)) ||
        kusto_cell_str(&row[0], "StreamingIngestionPolicy") < 0 ||
        kusto_cell_str(&row[1], entity) < 0 ||
        kusto_cell_str(&row[2], policy) < 0 ||
        kusto_cell_str(&row[3], table ? "null" : (children ? children : "[]")) <
            0 ||
        kusto_cell_str(&row[4], table ? "Table" : "Database") < 0) {
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
    struct kusto_result *r = kusto_result_new("Table_0", policy_cols, 5);
    struct kusto_value *row;
    char entity[2 * NAME_MAX_LEN + 16];
    size_t cap = 0;
    int on = kusto_itime_value(c->k, db, table);

    snprintf(entity, sizeof(entity), "[%s].[%s]", db, table);
    if (!r || !(row = kusto_table_add_row(&r->tables[0], &cap)) ||
        kusto_cell_str(&row[0], "IngestionTimePolicy") < 0 ||
        kusto_cell_str(&row[1], entity) < 0 ||
        kusto_cell_str(&row[2], on ? "{\"IsEnabled\":true}"
                                   : "{\"IsEnabled\":false}") < 0 ||
        kusto_cell_str(&row[3], "null") < 0 ||
        kusto_cell_str(&row[4], "Table") < 0) {
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
    rc = kusto_exec_bound(c->k,
                          "UPDATE \"$kusto_tables\" SET itime = CAST(?3 AS "
                          "INTEGER) WHERE db = ?1 AND name = ?2",
                          db, table, on ? "1" : "0", NULL, c->err);
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
        return kusto_err(c->err, -EINVAL, 400, "General_BadRequest",
                         "the streaming ingestion policy is not a JSON object");
    }
    v = cJSON_GetObjectItemCaseSensitive(p, "IsEnabled");
    if (v && !cJSON_IsBool(v)) {
        cJSON_Delete(p);
        return kusto_err(c->err, -EINVAL, 400, "General_BadRequest",
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
        rc = kusto_exec_bound(c->k,
                              value < 0
                                  ? "UPDATE \"$kusto_tables\" SET streaming "
                                    "= NULL WHERE db = ?1 AND name = ?2"
                                  : "UPDATE \"$kusto_tables\" SET streaming "
                                    "= CAST(?3 AS INTEGER) WHERE db = ?1 AND "
                                    "name = ?2",
                              db, table, value < 0 ? NULL : v, NULL, c->err);
    } else {
        rc = kusto_exec_bound(c->k,
                              value < 0
                                  ? "UPDATE \"$kusto_databases\" SET "
                                    "streaming = NULL WHERE name = ?1"
                                  : "UPDATE \"$kusto_databases\" SET "
                                    "streaming = CAST(?2 AS INTEGER) WHERE "
                                    "name = ?1",
                              db, value < 0 ? NULL : v, NULL, NULL, c->err);
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
    struct kusto_result *r = kusto_result_new("Table_0", cols, 4);
    struct kusto_value *row;
    size_t cap = 0;
    int64_t built = 0;

    build_time(&built);
    if (!r || !(row = kusto_table_add_row(&r->tables[0], &cap)) ||
        kusto_cell_str(&row[0], KADX_VERSION) < 0 ||
        kusto_cell_str(&row[2], "Engine") < 0 ||
        kusto_cell_str(&row[3], "kadx-adx-emulator " KADX_VERSION) < 0) {
        kusto_result_free(r);
        return oom(c);
    }
    kusto_cell_int(&row[1], built);
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
    struct kusto_result *r = kusto_result_new("Table_0", cols, 2);
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
            if (rc == 0 && (!(row = kusto_table_add_row(&r->tables[0], &cap)) ||
                            kusto_cell_str(&row[0], types[i]) < 0 ||
                            kusto_cell_str(&row[1], roots[i]) < 0)) {
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
    struct kusto_result *r = kusto_result_new("Table_0", cols, 1);
    struct kusto_value *row;
    size_t cap = 0;

    if (!r || !(row = kusto_table_add_row(&r->tables[0], &cap)) ||
        kusto_cell_str(&row[0], "kadx-emulator-identity-token") < 0) {
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

    if (kusto_row_table_name(db, table, qname, sizeof(qname)) < 0) {
        return kusto_err(c->err, -ENAMETOOLONG, 400, "General_BadRequest",
                         "name too long");
    }
    kusto_drop_insert_cache(c->k);
    snprintf(sql, sizeof(sql), "DELETE FROM %s", qname);
    rc = kusto_exec(c->k, sql, c->err);
    if (rc < 0) {
        return rc;
    }
    r = kusto_result_new("Table_0", cols, 1);
    if (!r || !(row = kusto_table_add_row(&r->tables[0], &cap)) ||
        kusto_cell_str(&row[0], "Completed") < 0) {
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
        const char *name = NULL, *type = NULL;
        enum kusto_type t;

        if (cnt >= MAX_COLUMNS) {
            rc = kusto_err(c->err, -EMSGSIZE, 400, "General_BadRequest",
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
            rc = kusto_err(c->err, -EINVAL, 400, "General_BadRequest",
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
        rc = kusto_err(c->err, -EINVAL, 400, "General_BadRequest",
                       "Syntax error: a table needs at least one column");
        goto fail;
    }
    *out = defs;
    *n = cnt;
    return 0;
fail:
    kusto_coldefs_free(defs, cnt);
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
    return kusto_err(c->err, -ENOTSUP, 400, "General_BadRequest",
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
    const char *name = NULL, *kind = NULL, *mname = NULL;
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
    const char *name = NULL, *folder = NULL, *doc = NULL;
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
            rc = kusto_ddl_create_table(c->k, c->db, name, defs, n, is_merge,
                                        folder, doc, c->err);
        }
        kusto_coldefs_free(defs, n);
        if (rc < 0) {
            return rc;
        }
        return result_table_schema(c, c->db, name, 1, out);
    }
    if (accept_word(c, "ingestion")) {
        const char *kind = NULL, *mname = NULL;
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
    const char *name = NULL, *kind = NULL, *mname = NULL;
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
                return kusto_sql_fail(c->k, c->err,
                                      "cannot update the catalog");
            }
            sqlite3_bind_text(st, 1, c->db, -1, SQLITE_TRANSIENT);
            sqlite3_bind_text(st, 2, name, -1, SQLITE_TRANSIENT);
            sqlite3_bind_text(st, 3, kind, -1, SQLITE_TRANSIENT);
            sqlite3_bind_text(st, 4, mname, -1, SQLITE_TRANSIENT);
            rc = sqlite3_step(st) == SQLITE_DONE ? 0 : -EIO;
            sqlite3_finalize(st);
            if (rc < 0) {
                return kusto_sql_fail(c->k, c->err,
                                      "cannot update the catalog");
            }
            if (sqlite3_changes(c->k->db) == 0) {
                return kusto_err(
                    c->err, -ENOENT, 404, "BadRequest_EntityNotFound",
                    "Entity ID '%s' of kind 'Mapping' was not found", mname);
            }
        }
        return show_mappings(c, c->db, name, kind, NULL, out);
    }
    ifexists = accept_word(c, "ifexists");
    if (expect_end(c) < 0) {
        return -EINVAL;
    }
    if (!kusto_table_exists(c->k, c->db, name)) {
        if (!ifexists) {
            return kusto_no_table(c->err, c->db, name);
        }
    } else {
        rc = kusto_ddl_drop_table(c->k, c->db, name, c->err);
        if (rc < 0) {
            return rc;
        }
    }
    return result_from_sql(c,
                           "SELECT name, db FROM \"$kusto_tables\" WHERE db "
                           "= ? ORDER BY name",
                           &c->db, 1, cols, 2, out);
}

int kusto_run_command(struct kusto *k, const char *db, const char *csl,
                      struct kusto_result **out, struct kusto_error *err)
{
    struct cmd c;
    char verb[64];
    const char *name = NULL;
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
