/*
 * test_kusto.c - the ADX emulator's engine (tests/emulators/kusto.c and
 * kql.c): management commands, the ingest-side calls (schema, mapping,
 * streaming policy, insert), the KQL subset, error messages, and a printed
 * (not asserted) timing of count and summarize over 1M rows.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "tests/emulators/kql.h"
#include "tests/emulators/kusto.h"

#define DB "leaderboard"

static const char seed_table[] =
    ".create table GamePlay (PlayerID: int, GameID: int, Win: long, "
    "Stake: int, EventTime: datetime)";

static const char seed_mapping[] =
    ".create table GamePlay ingestion json mapping 'gameplay_json_mapping' "
    "'[{\"column\":\"PlayerID\",\"Properties\":{\"Path\":\"$.playerId\"}},'"
    "'{\"column\":\"GameID\",\"Properties\":{\"Path\":\"$.gameId\"}},'"
    "\"{\\\"column\\\":\\\"Win\\\",\\\"Properties\\\":{\\\"Path\\\":"
    "\\\"$.win\\\"}},\""
    "'{\"column\":\"Stake\",\"Properties\":{\"Path\":\"$.stake\"}},'"
    "'{\"column\":\"EventTime\",\"Properties\":{\"Path\":\"$.eventTime\"}}]'";

static struct kusto *open_db(void)
{
    char err[256];
    struct kusto *k = kusto_open(NULL, err, sizeof(err));

    assert_non_null(k);
    assert_int_equal(kusto_create_database(k, DB), 0);
    return k;
}

/* Runs csl and expects success; returns the result (owned). */
static struct kusto_result *run_ok(struct kusto *k, const char *csl)
{
    struct kusto_result *r = NULL;
    struct kusto_error err;
    int rc;

    memset(&err, 0, sizeof(err));
    rc = kusto_execute(k, DB, csl, &r, &err);
    if (rc != 0) {
        fail_msg("'%s' failed: %d %s %s", csl, err.status, err.code,
                 err.message);
    }
    assert_non_null(r);
    assert_int_equal(r->ntables, 1);
    return r;
}

static void run_free(struct kusto *k, const char *csl)
{
    kusto_result_free(run_ok(k, csl));
}

/* Runs csl, expects failure with a message containing `needle`. */
static struct kusto_error run_err(struct kusto *k, const char *csl,
                                  const char *needle)
{
    struct kusto_result *r = NULL;
    struct kusto_error err;
    int rc;

    memset(&err, 0, sizeof(err));
    rc = kusto_execute(k, DB, csl, &r, &err);
    if (rc == 0) {
        fail_msg("'%s' succeeded, expected an error with '%s'", csl, needle);
    }
    assert_null(r);
    if (!strstr(err.message, needle)) {
        fail_msg("'%s': message '%s' lacks '%s'", csl, err.message, needle);
    }
    return err;
}

static int col_index(const struct kusto_table *t, const char *name)
{
    size_t i;

    for (i = 0; i < t->ncols; i++) {
        if (strcmp(t->cols[i].name, name) == 0) {
            return (int)i;
        }
    }
    fail_msg("no column '%s'", name);
    return -1;
}

static const struct kusto_value *cell(const struct kusto_table *t, size_t row,
                                      const char *col)
{
    assert_true(row < t->nrows);
    return &t->cells[row * t->ncols + (size_t)col_index(t, col)];
}

static int64_t ticks(const char *iso)
{
    int64_t t = 0;

    assert_int_equal(kql_parse_datetime(iso, strlen(iso), &t), 0);
    return t;
}

/* Inserts GamePlay rows (player, game, win, stake, event time). */
static void insert_gameplay(struct kusto *k, const int64_t (*rows)[5], size_t n,
                            int64_t ingest)
{
    struct kusto_value *v = calloc(n * 5, sizeof(*v));
    struct kusto_error err;
    size_t i, c;
    static const enum kusto_type types[5] = {KT_INT, KT_INT, KT_LONG, KT_INT,
                                             KT_DATETIME};

    assert_non_null(v);
    for (i = 0; i < n; i++) {
        for (c = 0; c < 5; c++) {
            v[i * 5 + c].type = types[c];
            v[i * 5 + c].i = rows[i][c];
        }
    }
    assert_int_equal(kusto_insert_rows(k, DB, "GamePlay", v, n, ingest, &err),
                     0);
    free(v);
}

static struct kusto *seeded(void)
{
    struct kusto *k = open_db();

    run_free(k, seed_table);
    run_free(k, seed_mapping);
    run_free(k, ".alter database leaderboard policy streamingingestion "
                "enable");
    return k;
}

/* ------------------------------------------------------------------ */

static void test_types(void **state)
{
    enum kusto_type t;
    char buf[64];
    int64_t v;

    (void)state;
    assert_int_equal(kusto_type_parse("long", &t), 0);
    assert_int_equal(t, KT_LONG);
    assert_int_equal(kusto_type_parse("int64", &t), 0);
    assert_int_equal(t, KT_LONG);
    assert_int_equal(kusto_type_parse("double", &t), 0);
    assert_int_equal(t, KT_REAL);
    assert_int_equal(kusto_type_parse("System.Int64", &t), -EINVAL);
    assert_string_equal(kusto_type_name(KT_TIMESPAN), "timespan");
    assert_string_equal(kusto_type_v1_name(KT_DATETIME), "DateTime");
    assert_string_equal(kusto_type_v1_name(KT_LONG), "Int64");

    v = ticks("2026-11-24T10:00:00Z");
    assert_string_equal(kql_format_datetime(v, buf, sizeof(buf)),
                        "2026-11-24T10:00:00.0000000Z");
    assert_int_equal(ticks("1970-01-01"), 0);
    assert_int_equal(ticks("1970-01-01T00:00:01.5Z"), 15000000);
    assert_int_equal(ticks("2026-11-24T12:00:00+02:00"), v);
    assert_int_equal(kql_parse_datetime("2026-13-01", 10, &v), -EINVAL);
    assert_int_equal(kql_parse_datetime("yesterday", 9, &v), -EINVAL);

    assert_int_equal(kql_parse_timespan("1.02:03:04.5", 12, &v), 0);
    assert_string_equal(kql_format_timespan(v, buf, sizeof(buf)),
                        "1.02:03:04.5000000");
    assert_int_equal(kql_parse_timespan("2h", 2, &v), 0);
    assert_int_equal(v, 2 * KQL_TICKS_PER_HOUR);
    assert_int_equal(kql_parse_timespan("100ms", 5, &v), 0);
    assert_int_equal(v, 1000000);
    assert_int_equal(kql_parse_timespan("-00:00:01", 9, &v), 0);
    assert_string_equal(kql_format_timespan(v, buf, sizeof(buf)), "-00:00:01");
    assert_int_equal(kql_parse_timespan("2x", 2, &v), -EINVAL);
}

static void test_create_show_drop(void **state)
{
    struct kusto *k = open_db();
    struct kusto_result *r;
    const struct kusto_table *t;
    const struct kusto_column *cols;
    struct kusto_error err;
    size_t n;

    (void)state;
    r = run_ok(k, seed_table);
    t = &r->tables[0];
    assert_string_equal(t->cols[0].name, "TableName");
    assert_string_equal(cell(t, 0, "TableName")->s, "GamePlay");
    assert_non_null(strstr(cell(t, 0, "Schema")->s,
                           "{\"Name\":\"EventTime\",\"Type\":"
                           "\"System.DateTime\",\"CslType\":\"datetime\"}"));
    kusto_result_free(r);

    assert_int_equal(kusto_table_schema(k, DB, "GamePlay", &cols, &n, &err), 0);
    assert_int_equal(n, 5);
    assert_string_equal(cols[0].name, "PlayerID");
    assert_int_equal(cols[0].type, KT_INT);
    assert_int_equal(cols[2].type, KT_LONG);
    assert_int_equal(cols[4].type, KT_DATETIME);

    /* .create on an existing table succeeds and changes nothing */
    run_free(k, ".create table GamePlay (Other: string)");
    assert_int_equal(kusto_table_schema(k, DB, "GamePlay", &cols, &n, &err), 0);
    assert_int_equal(n, 5);

    run_free(k, ".create table ['Other Table'] (A: string, ['b c']: real) "
                "with (folder = \"f1\", docstring = 'doc')");
    r = run_ok(k, ".show tables");
    t = &r->tables[0];
    assert_int_equal(t->ncols, 4);
    assert_string_equal(t->cols[0].name, "TableName");
    assert_string_equal(t->cols[1].name, "DatabaseName");
    assert_string_equal(t->cols[2].name, "Folder");
    assert_string_equal(t->cols[3].name, "DocString");
    assert_int_equal(t->nrows, 2);
    assert_string_equal(cell(t, 0, "TableName")->s, "GamePlay");
    assert_string_equal(cell(t, 1, "TableName")->s, "Other Table");
    assert_string_equal(cell(t, 1, "Folder")->s, "f1");
    assert_string_equal(cell(t, 1, "DocString")->s, "doc");
    assert_string_equal(cell(t, 1, "DatabaseName")->s, DB);
    kusto_result_free(r);

    r = run_ok(k, ".show table GamePlay cslschema");
    assert_string_equal(cell(&r->tables[0], 0, "Schema")->s,
                        "PlayerID:int,GameID:int,Win:long,Stake:int,"
                        "EventTime:datetime");
    kusto_result_free(r);

    r = run_ok(k, ".drop table ['Other Table']");
    assert_int_equal(r->tables[0].nrows, 1);
    assert_string_equal(cell(&r->tables[0], 0, "TableName")->s, "GamePlay");
    kusto_result_free(r);
    err = run_err(k, ".drop table Nope", "'Nope'");
    assert_int_equal(err.status, 404);
    assert_string_equal(err.code, "BadRequest_EntityNotFound");
    run_free(k, ".drop table Nope ifexists");
    assert_int_equal(kusto_table_schema(k, DB, "Other Table", &cols, &n, &err),
                     -ENOENT);
    assert_string_equal(err.code, "BadRequest_EntityNotFound");
    assert_int_equal(kusto_table_schema(k, "nodb", "GamePlay", &cols, &n, &err),
                     -ENOENT);
    assert_non_null(strstr(err.message, "'nodb'"));
    kusto_close(k);
}

static void test_create_merge_and_add_column(void **state)
{
    struct kusto *k = seeded();
    const struct kusto_column *cols;
    struct kusto_error err;
    struct kusto_result *r;
    size_t n;
    static const int64_t rows[1][5] = {{1, 2, 3, 4, 5}};

    (void)state;
    insert_gameplay(k, rows, 1, 42);
    r = run_ok(k, ".create-merge table GamePlay (PlayerID: int, "
                  "Region: string)");
    assert_non_null(strstr(cell(&r->tables[0], 0, "Schema")->s, "Region"));
    kusto_result_free(r);
    assert_int_equal(kusto_table_schema(k, DB, "GamePlay", &cols, &n, &err), 0);
    assert_int_equal(n, 6);
    assert_string_equal(cols[5].name, "Region");
    assert_int_equal(cols[5].type, KT_STRING);
    err = run_err(k, ".create-merge table GamePlay (PlayerID: string)",
                  "'PlayerID'");
    assert_int_equal(err.status, 400);

    assert_int_equal(
        kusto_add_column(k, DB, "GamePlay", "Extra", KT_REAL, &err), 0);
    assert_int_equal(kusto_table_schema(k, DB, "GamePlay", &cols, &n, &err), 0);
    assert_int_equal(n, 7);
    assert_int_equal(cols[6].type, KT_REAL);
    /* .create-merge creates a missing table */
    run_free(k, ".create-merge table Fresh (A: long)");
    assert_int_equal(kusto_table_schema(k, DB, "Fresh", &cols, &n, &err), 0);
    assert_int_equal(n, 1);
    kusto_close(k);
}

static void test_mappings(void **state)
{
    struct kusto *k = seeded();
    struct kusto_result *r;
    struct kusto_error err;
    const char *json;

    (void)state;
    assert_int_equal(kusto_mapping_get(k, DB, "GamePlay",
                                       "gameplay_json_mapping", &json, &err),
                     0);
    assert_non_null(strstr(json, "\"$.playerId\""));
    assert_non_null(strstr(json, "\"$.win\""));
    assert_non_null(strstr(json, "\"$.eventTime\""));
    assert_int_equal(kusto_mapping_get(k, DB, "GamePlay", "nope", &json, &err),
                     -ENOENT);
    assert_string_equal(err.code, "BadRequest_MappingReferenceWasNotFound");
    assert_int_equal(err.permanent, 1);

    r = run_ok(k, ".show table GamePlay ingestion json mappings");
    assert_int_equal(r->tables[0].nrows, 1);
    assert_string_equal(cell(&r->tables[0], 0, "Name")->s,
                        "gameplay_json_mapping");
    assert_string_equal(cell(&r->tables[0], 0, "Kind")->s, "Json");
    assert_string_equal(cell(&r->tables[0], 0, "Table")->s, "GamePlay");
    assert_string_equal(cell(&r->tables[0], 0, "Database")->s, DB);
    kusto_result_free(r);

    run_free(k, ".create-or-alter table GamePlay ingestion json mapping "
                "\"m2\" '[{\"column\":\"Win\",\"path\":\"$.w\"}]'");
    r = run_ok(k, ".show table GamePlay ingestion json mapping 'm2'");
    assert_int_equal(r->tables[0].nrows, 1);
    assert_string_equal(cell(&r->tables[0], 0, "Mapping")->s,
                        "[{\"column\":\"Win\",\"path\":\"$.w\"}]");
    kusto_result_free(r);
    r = run_ok(k, ".show table GamePlay ingestion mappings");
    assert_int_equal(r->tables[0].nrows, 2);
    kusto_result_free(r);
    run_err(k, ".show table GamePlay ingestion json mapping 'zz'", "'zz'");
    run_err(k, ".create table GamePlay ingestion json mapping 'bad' '{'",
            "'bad'");
    run_err(k, ".create table Nope ingestion json mapping 'm' '[]'", "'Nope'");
    run_free(k, ".drop table GamePlay ingestion json mapping 'm2'");
    assert_int_equal(kusto_mapping_get(k, DB, "GamePlay", "m2", &json, &err),
                     -ENOENT);
    kusto_close(k);
}

static void test_streaming_policy(void **state)
{
    struct kusto *k = open_db();
    struct kusto_result *r;

    (void)state;
    run_free(k, seed_table);
    assert_int_equal(kusto_streaming_enabled(k, DB, "GamePlay"), 0);
    r = run_ok(k, ".show database leaderboard policy streamingingestion");
    assert_string_equal(cell(&r->tables[0], 0, "Policy")->s, "null");
    assert_string_equal(cell(&r->tables[0], 0, "PolicyName")->s,
                        "StreamingIngestionPolicy");
    kusto_result_free(r);

    run_free(k, ".alter database ['leaderboard'] policy streamingingestion "
                "enable");
    assert_int_equal(kusto_streaming_enabled(k, DB, "GamePlay"), 1);
    r = run_ok(k, ".show database leaderboard policy streamingingestion");
    assert_non_null(
        strstr(cell(&r->tables[0], 0, "Policy")->s, "\"IsEnabled\":true"));
    assert_string_equal(cell(&r->tables[0], 0, "EntityName")->s,
                        "[leaderboard]");
    kusto_result_free(r);

    /* the table's policy wins over the database's */
    run_free(k, ".alter table GamePlay policy streamingingestion disable");
    assert_int_equal(kusto_streaming_enabled(k, DB, "GamePlay"), 0);
    run_free(k, ".alter table GamePlay policy streamingingestion "
                "'{\"IsEnabled\": true}'");
    assert_int_equal(kusto_streaming_enabled(k, DB, "GamePlay"), 1);
    run_free(k, ".alter database leaderboard policy streamingingestion "
                "'{\"IsEnabled\": ' 'false}'");
    assert_int_equal(kusto_streaming_enabled(k, DB, "GamePlay"), 1);
    run_free(k, ".delete table GamePlay policy streamingingestion");
    assert_int_equal(kusto_streaming_enabled(k, DB, "GamePlay"), 0);
    r = run_ok(k, ".show table GamePlay policy streamingingestion");
    assert_string_equal(cell(&r->tables[0], 0, "Policy")->s, "null");
    assert_string_equal(cell(&r->tables[0], 0, "EntityType")->s, "Table");
    kusto_result_free(r);
    run_err(k, ".alter database nodb policy streamingingestion enable",
            "'nodb'");
    run_err(k, ".alter database leaderboard policy streamingingestion maybe",
            "enable, disable");
    run_err(k, ".alter table GamePlay policy streamingingestion '{'",
            "not a JSON object");
    kusto_close(k);
}

static void test_insert_clear_count_only(void **state)
{
    struct kusto *k = seeded();
    struct kusto_value v[5];
    struct kusto_error err;
    struct kusto_result *r;
    static const int64_t rows[3][5] = {
        {1, 10, 100, 5, 0}, {2, 10, 50, 5, 0}, {1, 11, 7, 5, 0}};

    (void)state;
    insert_gameplay(k, rows, 3, 1);
    assert_int_equal(kusto_rows_accepted(k), 3);
    /* a null cell is stored as null */
    memset(v, 0, sizeof(v));
    v[0].type = KT_INT;
    v[0].is_null = 1;
    v[1].type = KT_INT;
    v[1].i = 3;
    v[2].type = KT_LONG;
    v[2].i = 9;
    v[3].type = KT_INT;
    v[3].is_null = 1;
    v[4].type = KT_DATETIME;
    v[4].is_null = 1;
    assert_int_equal(kusto_insert_rows(k, DB, "GamePlay", v, 1, 2, &err), 0);
    assert_int_equal(kusto_insert_rows(k, DB, "Nope", v, 1, 2, &err), -ENOENT);
    assert_int_equal(err.status, 404);

    r = run_ok(k, ".clear table GamePlay data");
    kusto_result_free(r);
    run_err(k, ".clear table Nope data", "'Nope'");

    kusto_set_count_only(k, 1);
    insert_gameplay(k, rows, 3, 1);
    assert_int_equal(kusto_rows_accepted(k), 7);
    kusto_close(k);
}

static void test_show_version_databases(void **state)
{
    struct kusto *k = open_db();
    struct kusto_result *r;

    (void)state;
    r = run_ok(k, ".show version");
    assert_string_equal(r->tables[0].cols[0].name, "BuildVersion");
    assert_int_equal(r->tables[0].nrows, 1);
    assert_int_equal(cell(&r->tables[0], 0, "BuildTime")->type, KT_DATETIME);
    kusto_result_free(r);
    assert_int_equal(kusto_create_database(k, "second"), 0);
    assert_int_equal(kusto_database_exists(k, "second"), 1);
    assert_int_equal(kusto_database_exists(k, "third"), 0);
    r = run_ok(k, "  // comment first\n.show databases");
    assert_int_equal(r->tables[0].nrows, 2);
    assert_string_equal(cell(&r->tables[0], 0, "DatabaseName")->s,
                        "leaderboard");
    assert_int_equal(cell(&r->tables[0], 0, "IsCurrent")->i, 1);
    kusto_result_free(r);
    kusto_close(k);
}

static void test_command_errors(void **state)
{
    struct kusto *k = open_db();
    struct kusto_error err;

    (void)state;
    err = run_err(k, ".frobnicate table X", "unsupported management command");
    assert_int_equal(err.status, 400);
    assert_string_equal(err.code, "General_BadRequest");
    run_err(k, ".create table T (A int)", "expected ':'");
    run_err(k, ".create table T (A: integer)", "unknown column type");
    run_err(k, ".create table T (A: int", "expected");
    run_err(k, ".create table T (A: 'x)", "unterminated string");
    run_err(k, ".show tables extra", "expected the end of the command");
    run_err(k, ".show table Nope ingestion json mappings", "'Nope'");
    kusto_close(k);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_types),
        cmocka_unit_test(test_create_show_drop),
        cmocka_unit_test(test_create_merge_and_add_column),
        cmocka_unit_test(test_mappings),
        cmocka_unit_test(test_streaming_policy),
        cmocka_unit_test(test_insert_clear_count_only),
        cmocka_unit_test(test_show_version_databases),
        cmocka_unit_test(test_command_errors),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
