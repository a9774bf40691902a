/*
 * kusto_ddl.c - the emulator engine's catalog changes: .create /
 * .create-merge table (a new row table, or the old one rebuilt so that
 * "$IngestionTime" stays the last column), kusto_add_column and .drop
 * table, each in one savepoint with its catalog rows (the schema is in
 * kusto.c's opening comment). Loop thread only, like the engine.
 */
#include "emulators/kusto_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <sqlite3.h>

#include "emulators/kql.h"

void kusto_coldefs_free(struct coldef *c, size_t n)
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

    rc = kusto_exec_bound(k,
                          "DELETE FROM \"$kusto_columns\" WHERE db = ? AND "
                          "tbl = ?",
                          db, table, NULL, NULL, err);
    if (rc < 0) {
        return rc;
    }
    if (sqlite3_prepare_v2(k->db,
                           "INSERT INTO \"$kusto_columns\"(db, tbl, ord, "
                           "name, type) VALUES (?, ?, ?, ?, ?)",
                           -1, &st, NULL) != SQLITE_OK) {
        return kusto_sql_fail(k, err, "cannot update the catalog");
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
            rc = kusto_sql_fail(k, err, "cannot update the catalog");
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

    sbuf_printf(&b, "CREATE TABLE %s (", qname);
    for (i = 0; i < n; i++) {
        kusto_sb_ident(&b, cols[i].name);
        sbuf_printf(&b, " %s, ", kusto_sql_type(cols[i].type));
    }
    sbuf_printf(&b, "\"$IngestionTime\" INTEGER)");
    rc = kusto_exec_sb(k, &b, err);
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

    kusto_row_table_name(db, table, qname, sizeof(qname));
    snprintf(raw, sizeof(raw), "%s.%s$rebuild", db, table);
    kql_quote_ident(raw, qtmp, sizeof(qtmp));
    rc = create_row_table(k, qtmp, cols, n, err);
    if (rc < 0) {
        return rc;
    }
    sbuf_printf(&b, "INSERT INTO %s (", qtmp);
    for (i = 0; i < nold; i++) {
        kusto_sb_ident(&b, cols[i].name);
        sbuf_printf(&b, ", ");
    }
    sbuf_printf(&b, "\"$IngestionTime\") SELECT ");
    for (i = 0; i < nold; i++) {
        kusto_sb_ident(&b, cols[i].name);
        sbuf_printf(&b, ", ");
    }
    sbuf_printf(&b, "\"$IngestionTime\" FROM %s; DROP TABLE %s; ", qname,
                qname);
    snprintf(raw, sizeof(raw), "%s.%s", db, table);
    sbuf_printf(&b, "ALTER TABLE %s RENAME TO ", qtmp);
    kusto_sb_ident(&b, raw);
    rc = kusto_exec_sb(k, &b, err);
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
int kusto_ddl_create_table(struct kusto *k, const char *db, const char *table,
                           const struct coldef *defs, size_t n, int merge,
                           const char *folder, const char *doc,
                           struct kusto_error *err)
{
    char qname[4 * NAME_MAX_LEN + 8];
    struct kusto_column *all = NULL;
    size_t nall = 0, i, j, nold;
    int rc, exists;

    rc = kusto_row_table_name(db, table, qname, sizeof(qname));
    if (rc < 0) {
        return kusto_err(err, rc, 400, "General_BadRequest", "name too long");
    }
    rc = kusto_load_schema(k, db, table);
    exists = rc == 0;
    if (rc < 0 && rc != -ENOENT) {
        return kusto_sql_fail(k, err, "cannot read the schema");
    }
    if (exists && !merge) {
        return 0;
    }
    kusto_drop_insert_cache(k);
    nold = exists ? k->nscols : 0;
    all = calloc(nold + n + 1, sizeof(*all));
    if (!all) {
        return kusto_err(err, -ENOMEM, 500, "Internal_ServiceError",
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
                rc =
                    kusto_err(err, -EINVAL, 400, "BadRequest_BadSchema",
                              "column '%s' of table '%s' already exists with "
                              "type '%s', not '%s'",
                              defs[i].name, table, kusto_type_name(all[j].type),
                              kusto_type_name(defs[i].type));
                goto out;
            }
            if (j >= nold) {
                rc = kusto_err(err, -EINVAL, 400, "General_BadRequest",
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
    rc = kusto_exec(k, "SAVEPOINT ddl", err);
    if (rc < 0) {
        goto out;
    }
    if (exists) {
        rc = rebuild_table(k, db, table, all, nall, nold, err);
    } else {
        rc = create_row_table(k, qname, all, nall, err);
        if (rc == 0) {
            rc = kusto_exec_bound(k,
                                  "INSERT INTO \"$kusto_tables\"(db, name, "
                                  "folder, docstring) VALUES (?, ?, ?, ?)",
                                  db, table, folder ? folder : "",
                                  doc ? doc : "", err);
        }
        if (rc == 0) {
            rc = write_columns(k, db, table, all, nall, err);
        }
    }
    if (rc < 0) {
        kusto_exec(k, "ROLLBACK TO ddl; RELEASE ddl", NULL);
        goto out;
    }
    rc = kusto_exec(k, "RELEASE ddl", err);
out:
    free(all);
    return rc;
}

int kusto_add_column(struct kusto *k, const char *db, const char *table,
                     const char *column, enum kusto_type type,
                     struct kusto_error *err)
{
    struct coldef d;

    if (kusto_check_name("column", column, err) < 0) {
        return -EINVAL;
    }
    if (!kusto_table_exists(k, db, table)) {
        return kusto_no_table(err, db, table);
    }
    d.name = (char *)column;
    d.type = type;
    return kusto_ddl_create_table(k, db, table, &d, 1, 1, NULL, NULL, err);
}

int kusto_ddl_drop_table(struct kusto *k, const char *db, const char *table,
                         struct kusto_error *err)
{
    char qname[4 * NAME_MAX_LEN + 8];
    char sql[4 * NAME_MAX_LEN + 32];
    int rc;

    rc = kusto_row_table_name(db, table, qname, sizeof(qname));
    if (rc < 0) {
        return kusto_err(err, rc, 400, "General_BadRequest", "name too long");
    }
    kusto_drop_insert_cache(k);
    rc = kusto_exec(k, "SAVEPOINT ddl", err);
    if (rc < 0) {
        return rc;
    }
    snprintf(sql, sizeof(sql), "DROP TABLE IF EXISTS %s", qname);
    rc = kusto_exec(k, sql, err);
    if (rc == 0) {
        rc = kusto_exec_bound(k,
                              "DELETE FROM \"$kusto_tables\" WHERE db = ? AND "
                              "name = ?",
                              db, table, NULL, NULL, err);
    }
    if (rc == 0) {
        rc = kusto_exec_bound(k,
                              "DELETE FROM \"$kusto_columns\" WHERE db = ? AND "
                              "tbl = ?",
                              db, table, NULL, NULL, err);
    }
    if (rc == 0) {
        rc =
            kusto_exec_bound(k,
                             "DELETE FROM \"$kusto_mappings\" WHERE db = ? AND "
                             "tbl = ?",
                             db, table, NULL, NULL, err);
    }
    if (rc < 0) {
        kusto_exec(k, "ROLLBACK TO ddl; RELEASE ddl", NULL);
        return rc;
    }
    return kusto_exec(k, "RELEASE ddl", err);
}
