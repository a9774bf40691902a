/*
 * kusto_internal.h - what the parts of the emulator's engine share: the
 * engine struct, the SQL helpers and the result builders of kusto.c, the
 * catalog changes of kusto_ddl.c and the management command entry of
 * kusto_cmd.c. Not for use outside kusto*.c (the API is kusto.h). Loop
 * thread only, like the engine.
 */
#ifndef KADX_EMULATOR_KUSTO_INTERNAL_H
#define KADX_EMULATOR_KUSTO_INTERNAL_H

#include "base/sbuf.h"
#include "emulators/emu.h"
#include "emulators/kusto.h"

#include <sqlite3.h>
#include <stddef.h>
#include <stdint.h>

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

struct colspec {
    const char *name;
    enum kusto_type type;
};

/* A column of a .create table command (name owned). */
struct coldef {
    char *name;
    enum kusto_type type;
};

/* ---- kusto.c: errors ---- */

/* Fills err (when not NULL) with the HTTP status, the OneApi code and the
 * message; returns rc. */
int kusto_err(struct kusto_error *err, int rc, int status, const char *code,
              const char *fmt, ...) __attribute__((format(printf, 5, 6)));
int kusto_sql_fail(struct kusto *k, struct kusto_error *err, const char *what);
int kusto_no_table(struct kusto_error *err, const char *db, const char *table);
int kusto_no_db(struct kusto_error *err, const char *db);

/* ---- kusto.c: SQL helpers ---- */

const char *kusto_sql_type(enum kusto_type t);
int kusto_row_table_name(const char *db, const char *table, char *buf,
                         size_t len);
void kusto_sb_ident(struct sbuf *b, const char *name);
int kusto_exec(struct kusto *k, const char *sql, struct kusto_error *err);
/* Runs the SQL built in b, then frees b's text (-ENOMEM when building it
 * ran out of memory). */
int kusto_exec_sb(struct kusto *k, struct sbuf *b, struct kusto_error *err);
int kusto_exec_bound(struct kusto *k, const char *sql, const char *a,
                     const char *b, const char *c, const char *d,
                     struct kusto_error *err);
void kusto_drop_insert_cache(struct kusto *k);
int kusto_check_name(const char *what, const char *name,
                     struct kusto_error *err);

/* ---- kusto.c: results (owned; free with kusto_result_free) ---- */

struct kusto_result *kusto_result_new(const char *name,
                                      const struct colspec *cols, size_t ncols);
struct kusto_value *kusto_table_add_row(struct kusto_table *t, size_t *cap);
int kusto_cell_str(struct kusto_value *v, const char *s);
void kusto_cell_int(struct kusto_value *v, int64_t i);

/* ---- kusto.c: catalog reads ---- */

int kusto_table_exists(struct kusto *k, const char *db, const char *table);
int kusto_load_schema(struct kusto *k, const char *db, const char *table);
int kusto_policy_value(struct kusto *k, const char *db, const char *table);
int kusto_itime_value(struct kusto *k, const char *db, const char *table);

/* ---- kusto_ddl.c: catalog changes ---- */

void kusto_coldefs_free(struct coldef *c, size_t n);
int kusto_ddl_create_table(struct kusto *k, const char *db, const char *table,
                           const struct coldef *defs, size_t n, int merge,
                           const char *folder, const char *doc,
                           struct kusto_error *err);
int kusto_ddl_drop_table(struct kusto *k, const char *db, const char *table,
                         struct kusto_error *err);

/* ---- kusto_cmd.c: a management command (csl starts with '.') ---- */

int kusto_run_command(struct kusto *k, const char *db, const char *csl,
                      struct kusto_result **out, struct kusto_error *err);

#endif
