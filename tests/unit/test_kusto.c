/*
 * test_kusto.c - the ADX emulator's engine (emulators/kusto.c and
 * kql.c): management commands, the ingest-side calls (schema, mapping,
 * streaming policy, insert), the KQL subset and error messages. The
 * timing over 1M rows is tests/bench/bench_kusto.c.
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
#include <unistd.h>

#include <cmocka.h>

#include "emulators/kql.h"
#include "emulators/kusto.h"

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
    /* one table for DDL and mappings: "uuid" was only the mapping's */
    assert_int_equal(kusto_type_parse("UUID", &t), 0);
    assert_int_equal(t, KT_GUID);
    assert_int_equal(kusto_type_parse("uniqueid", &t), 0);
    assert_int_equal(t, KT_GUID);
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
    assert_false(cell(&r->tables[0], 0, "BuildTime")->is_null);
    assert_true(cell(&r->tables[0], 0, "BuildTime")->i > ticks("2020-01-01"));
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

/* What the Java SDK's ingest clients ask the DM endpoint at start. */
static void test_ingestion_resources_identity_token(void **state)
{
    struct kusto *k = open_db();
    struct kusto_result *r;

    (void)state;
    r = run_ok(k, ".show ingestion resources");
    assert_int_equal(r->ntables, 1);
    assert_int_equal(r->tables[0].ncols, 2);
    assert_string_equal(r->tables[0].cols[0].name, "ResourceTypeName");
    assert_string_equal(r->tables[0].cols[1].name, "StorageRoot");
    assert_int_equal(r->tables[0].nrows, 0);
    kusto_result_free(r);
    r = run_ok(k, ".get ingestion resources");
    assert_string_equal(r->tables[0].cols[1].name, "StorageRoot");
    assert_int_equal(r->tables[0].nrows, 0);
    kusto_result_free(r);
    r = run_ok(k, ".get kusto identity token");
    assert_int_equal(r->tables[0].ncols, 1);
    assert_string_equal(r->tables[0].cols[0].name, "AuthorizationContext");
    assert_int_equal(r->tables[0].nrows, 1);
    assert_true(strlen(cell(&r->tables[0], 0, "AuthorizationContext")->s) > 0);
    kusto_result_free(r);
    run_err(k, ".get kusto identity", "token");
    run_err(k, ".get ingestion", "resources");
    run_err(k, ".show ingestion resources x", "");
    run_err(k, ".get nothing", "unsupported management command");
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

/* ------------------------------------------------------------------ */
/* KQL                                                                  */

#define B "2026-11-24T10:00:00Z"

/* GamePlay with five rows, all ingested at B + 10 s. */
static struct kusto *gameplay(void)
{
    struct kusto *k = seeded();
    int64_t b = ticks(B), s = KQL_TICKS_PER_SEC;
    const int64_t rows[5][5] = {
        {1, 10, 100, 5, b},          {2, 10, 50, 5, b + s},
        {1, 11, 7, 5, b + 2 * s},    {3, 12, 0, 10, b + 3 * s},
        {2, 12, 500, 10, b + 4 * s},
    };

    insert_gameplay(k, rows, 5, b + 10 * s);
    return k;
}

/* Runs a query expected to give one row and one long column; returns it. */
static int64_t scalar(struct kusto *k, const char *q)
{
    struct kusto_result *r = run_ok(k, q);
    int64_t v;

    if (r->tables[0].nrows != 1 || r->tables[0].ncols != 1) {
        fail_msg("'%s': %zu rows x %zu columns", q, r->tables[0].nrows,
                 r->tables[0].ncols);
    }
    assert_false(r->tables[0].cells[0].is_null);
    v = r->tables[0].cells[0].i;
    kusto_result_free(r);
    return v;
}

static void test_seed_queries(void **state)
{
    struct kusto *k = gameplay();
    struct kusto_result *r;
    const struct kusto_table *t;
    int64_t s = KQL_TICKS_PER_SEC;

    (void)state;
    /* GamePlay | count */
    r = run_ok(k, "GamePlay | count");
    t = &r->tables[0];
    assert_int_equal(t->ncols, 1);
    assert_string_equal(t->cols[0].name, "Count");
    assert_int_equal(t->cols[0].type, KT_LONG);
    assert_int_equal(cell(t, 0, "Count")->i, 5);
    kusto_result_free(r);

    /* the latency query */
    r = run_ok(k, "GamePlay | extend Latency = ingestion_time() - EventTime "
                  "| summarize percentiles(Latency, 50, 90, 99)");
    t = &r->tables[0];
    assert_int_equal(t->ncols, 3);
    assert_int_equal(t->nrows, 1);
    assert_string_equal(t->cols[0].name, "percentile_Latency_50");
    assert_string_equal(t->cols[1].name, "percentile_Latency_90");
    assert_string_equal(t->cols[2].name, "percentile_Latency_99");
    assert_int_equal(t->cols[0].type, KT_TIMESPAN);
    /* latencies 10, 9, 8, 7, 6 s; nearest rank */
    assert_int_equal(cell(t, 0, "percentile_Latency_50")->i, 8 * s);
    assert_int_equal(cell(t, 0, "percentile_Latency_90")->i, 10 * s);
    assert_int_equal(cell(t, 0, "percentile_Latency_99")->i, 10 * s);
    kusto_result_free(r);

    /* the leaderboard */
    r = run_ok(k, "GamePlay | summarize TotalWin=sum(Win), Spins=count() by "
                  "PlayerID | top 10 by TotalWin");
    t = &r->tables[0];
    assert_int_equal(t->ncols, 3);
    assert_string_equal(t->cols[0].name, "PlayerID");
    assert_string_equal(t->cols[1].name, "TotalWin");
    assert_string_equal(t->cols[2].name, "Spins");
    assert_int_equal(t->cols[0].type, KT_INT);
    assert_int_equal(t->cols[1].type, KT_LONG);
    assert_int_equal(t->cols[2].type, KT_LONG);
    assert_int_equal(t->nrows, 3);
    assert_int_equal(cell(t, 0, "PlayerID")->i, 2);
    assert_int_equal(cell(t, 0, "TotalWin")->i, 550);
    assert_int_equal(cell(t, 0, "Spins")->i, 2);
    assert_int_equal(cell(t, 1, "PlayerID")->i, 1);
    assert_int_equal(cell(t, 1, "TotalWin")->i, 107);
    assert_int_equal(cell(t, 2, "PlayerID")->i, 3);
    assert_int_equal(cell(t, 2, "TotalWin")->i, 0);
    kusto_result_free(r);

    /* .clear table GamePlay data empties it */
    run_free(k, ".clear table GamePlay data");
    assert_int_equal(scalar(k, "GamePlay | count"), 0);
    kusto_close(k);
}

static void test_where(void **state)
{
    struct kusto *k = gameplay();

    (void)state;
    assert_int_equal(scalar(k, "GamePlay | where PlayerID == 1 | count"), 2);
    assert_int_equal(scalar(k, "GamePlay | where PlayerID != 1 | count"), 3);
    assert_int_equal(scalar(k, "GamePlay | where Win > 50 | count"), 2);
    assert_int_equal(scalar(k, "GamePlay | where Win >= 50 | count"), 3);
    assert_int_equal(scalar(k, "GamePlay | where Win < 50 | count"), 2);
    assert_int_equal(scalar(k, "GamePlay | where Win <= 50 | count"), 3);
    assert_int_equal(
        scalar(k, "GamePlay | where Win > 50 and Stake == 5 | count"), 1);
    assert_int_equal(
        scalar(k, "GamePlay | where Win >= 50 or PlayerID == 3 | count"), 4);
    assert_int_equal(scalar(k, "GamePlay | where not(PlayerID == 1) | count"),
                     3);
    assert_int_equal(scalar(k, "GamePlay | where PlayerID in (1, 3) | count"),
                     3);
    assert_int_equal(scalar(k, "GamePlay | where PlayerID !in (1, 3) | count"),
                     2);
    assert_int_equal(
        scalar(k, "GamePlay | where Win between (7 .. 100) | count"), 3);
    assert_int_equal(
        scalar(k, "GamePlay | where Win !between (7 .. 100) | count"), 2);
    assert_int_equal(scalar(k, "GamePlay | where EventTime between "
                               "(datetime(2026-11-24T10:00:01Z) .. 2s) | "
                               "count"),
                     3);
    assert_int_equal(scalar(k, "GamePlay | where EventTime >= "
                               "datetime(2026-11-24 10:00:03) | count"),
                     2);
    assert_int_equal(scalar(k, "GamePlay | where EventTime < now() | count"),
                     5);
    assert_int_equal(scalar(k, "GamePlay | where EventTime > now() | count"),
                     0);
    assert_int_equal(
        scalar(k, "GamePlay | where EventTime > ago(36500d) | count"), 5);
    assert_int_equal(scalar(k, "GamePlay | where ingestion_time() > ago(1h) or "
                               "ingestion_time() <= now() | count"),
                     5);
    assert_int_equal(scalar(k, "GamePlay | where isnotnull(Win) and "
                               "isnotempty(Win) | where PlayerID == 2 "
                               "| count"),
                     2);
    assert_int_equal(scalar(k, "GamePlay | where isnull(Win) | count"), 0);
    assert_int_equal(scalar(k, "GamePlay | filter Win == 0 | count"), 1);
    kusto_close(k);
}

static struct kusto *logs(void)
{
    struct kusto *k = open_db();
    struct kusto_value v[4 * 6];
    struct kusto_error err;
    static const char *msgs[4] = {"Error in module Foo", "foobar started", NULL,
                                  "FOO done"};
    static const char *levels[4] = {"error", "info", "warn", "Info"};
    static const double reals[4] = {1.5, 2.5, 0, -1};
    static const int64_t durs[4] = {36000000000LL, 18000000000LL, 0,
                                    100000000LL};
    size_t i;

    run_free(k, ".create table Logs (Msg: string, Level: string, N: long, "
                "R: real, Flag: bool, Dur: timespan)");
    memset(v, 0, sizeof(v));
    for (i = 0; i < 4; i++) {
        struct kusto_value *row = &v[i * 6];

        row[0].type = KT_STRING;
        row[0].s = (char *)msgs[i];
        row[0].is_null = msgs[i] == NULL;
        row[1].type = KT_STRING;
        row[1].s = (char *)levels[i];
        row[2].type = KT_LONG;
        row[2].i = (int64_t)i + 1;
        row[3].type = KT_REAL;
        row[3].r = reals[i];
        row[4].type = KT_BOOL;
        row[4].i = i % 2 == 0;
        row[5].type = KT_TIMESPAN;
        row[5].i = durs[i];
        if (i == 2) {
            row[2].is_null = row[3].is_null = row[4].is_null = 1;
            row[5].is_null = 1;
        }
    }
    assert_int_equal(kusto_insert_rows(k, DB, "Logs", v, 4, 0, &err), 0);
    return k;
}

static void test_string_operators(void **state)
{
    struct kusto *k = logs();

    (void)state;
    assert_int_equal(scalar(k, "Logs | where Msg has \"foo\" | count"), 2);
    assert_int_equal(scalar(k, "Logs | where Msg contains 'foo' | count"), 3);
    assert_int_equal(scalar(k, "Logs | where Msg startswith 'foo' | count"), 2);
    assert_int_equal(scalar(k, "Logs | where Msg endswith 'DONE' | count"), 1);
    assert_int_equal(scalar(k, "Logs | where Msg !has 'foo' | count"), 2);
    assert_int_equal(scalar(k, "Logs | where Msg !contains 'foo' | count"), 1);
    assert_int_equal(scalar(k, "Logs | where Msg has_cs 'Foo' | count"), 1);
    assert_int_equal(scalar(k, "Logs | where Msg contains_cs 'foo' | count"),
                     1);
    assert_int_equal(scalar(k, "Logs | where isempty(Msg) | count"), 1);
    assert_int_equal(scalar(k, "Logs | where isnotempty(Msg) | count"), 3);
    assert_int_equal(scalar(k, "Logs | where isnull(N) | count"), 1);
    assert_int_equal(scalar(k, "Logs | where isnotnull(N) | count"), 3);
    assert_int_equal(scalar(k, "Logs | where Level == 'info' | count"), 1);
    assert_int_equal(scalar(k, "Logs | where Level =~ 'INFO' | count"), 2);
    assert_int_equal(scalar(k, "Logs | where Level !~ 'info' | count"), 2);
    assert_int_equal(scalar(k, "Logs | where Level in ('warn', 'error') | "
                               "count"),
                     2);
    assert_int_equal(scalar(k, "Logs | where Flag | count"), 1);
    assert_int_equal(scalar(k, "Logs | where Flag == false | count"), 2);
    assert_int_equal(scalar(k, "Logs | where Dur > 20m | count"), 2);
    assert_int_equal(scalar(k, "Logs | where Dur == time(1h) | count"), 1);
    assert_int_equal(scalar(k, "Logs | where Dur < timespan(00:00:11) | "
                               "count"),
                     1);
    assert_int_equal(scalar(k, "Logs | where R > 1.0 and R < 2e0 | count"), 1);
    assert_int_equal(
        scalar(k, "Logs | where Msg has @'module' or Level == \"x\" | count"),
        1);
    assert_int_equal(scalar(k, "Logs | where Msg == 'FOO ' \"done\" | count"),
                     1);
    kusto_close(k);
}

static void test_project_extend(void **state)
{
    struct kusto *k = gameplay();
    struct kusto_result *r;
    const struct kusto_table *t;
    int64_t s = KQL_TICKS_PER_SEC;

    (void)state;
    r = run_ok(k, "GamePlay | where PlayerID == 3 | project PlayerID, W = "
                  "Win * 2, Stake");
    t = &r->tables[0];
    assert_int_equal(t->ncols, 3);
    assert_string_equal(t->cols[1].name, "W");
    assert_int_equal(t->cols[1].type, KT_LONG);
    assert_int_equal(cell(t, 0, "W")->i, 0);
    assert_int_equal(cell(t, 0, "Stake")->i, 10);
    kusto_result_free(r);

    r = run_ok(k, "GamePlay | where PlayerID == 3 | extend Net = Win - "
                  "Stake, Net2 = Net * 2, Win = Win + 1");
    t = &r->tables[0];
    assert_int_equal(t->ncols, 7);
    assert_string_equal(t->cols[2].name, "Win");
    assert_string_equal(t->cols[5].name, "Net");
    assert_string_equal(t->cols[6].name, "Net2");
    assert_int_equal(cell(t, 0, "Net")->i, -10);
    assert_int_equal(cell(t, 0, "Net2")->i, -20);
    assert_int_equal(cell(t, 0, "Win")->i, 1);
    kusto_result_free(r);

    r = run_ok(k, "GamePlay | where PlayerID == 3 | extend A = 7 / 2, "
                  "B = 7 % 3, C = 7.0 / 2, D = EventTime - "
                  "datetime(2026-11-24T10:00:00Z), E = EventTime + 1h, "
                  "F = 1h / 2, G = -Stake, H = 2 * 30m, I = 1d + 2h + 30m "
                  "+ 10s + 100ms, J = ingestion_time() - 1s");
    t = &r->tables[0];
    assert_int_equal(cell(t, 0, "A")->i, 3);
    assert_int_equal(cell(t, 0, "A")->type, KT_LONG);
    assert_int_equal(cell(t, 0, "B")->i, 1);
    assert_true(cell(t, 0, "C")->r == 3.5);
    assert_int_equal(cell(t, 0, "C")->type, KT_REAL);
    assert_int_equal(cell(t, 0, "D")->i, 3 * s);
    assert_int_equal(cell(t, 0, "D")->type, KT_TIMESPAN);
    assert_int_equal(cell(t, 0, "E")->i, ticks(B) + 3 * s + 3600 * s);
    assert_int_equal(cell(t, 0, "E")->type, KT_DATETIME);
    assert_int_equal(cell(t, 0, "F")->i, 1800 * s);
    assert_int_equal(cell(t, 0, "F")->type, KT_TIMESPAN);
    assert_int_equal(cell(t, 0, "G")->i, -10);
    assert_int_equal(cell(t, 0, "H")->i, 3600 * s);
    assert_int_equal(cell(t, 0, "I")->i,
                     (86400 + 7200 + 1800 + 10) * s + s / 10);
    assert_int_equal(cell(t, 0, "J")->i, ticks(B) + 9 * s);
    kusto_result_free(r);

    /* an unnamed expression is Column1 */
    r = run_ok(k, "GamePlay | take 1 | project Win + 1, It = "
                  "ingestion_time()");
    t = &r->tables[0];
    assert_string_equal(t->cols[0].name, "Column1");
    assert_int_equal(cell(t, 0, "It")->i, ticks(B) + 10 * s);
    kusto_result_free(r);

    r = run_ok(k, "GamePlay | project-away GameID, Stake | project-rename "
                  "Player = PlayerID | take 1");
    t = &r->tables[0];
    assert_int_equal(t->ncols, 3);
    assert_string_equal(t->cols[0].name, "Player");
    assert_string_equal(t->cols[1].name, "Win");
    assert_string_equal(t->cols[2].name, "EventTime");
    kusto_result_free(r);
    kusto_close(k);
}

static void test_conversions(void **state)
{
    struct kusto *k = logs();
    struct kusto_result *r;
    const struct kusto_table *t;

    (void)state;
    r = run_ok(k, "Logs | where N == 1 | extend S = strcat"
                  "(Level, '-', N, "
                  "'-', Flag), L = tolong('42'), I = toint(R), D = "
                  "todouble('2.5'), T = tostring(Dur), DT = "
                  "todatetime('2026-11-24T10:00:00Z'), TS = "
                  "totimespan('01:00:00'), Len = strlen(Level), Bad = "
                  "tolong('x'), U = toupper(Level), Sub = substring(Msg, 0, "
                  "5), RS = tostring(R), DS = tostring(DT)");
    t = &r->tables[0];
    assert_int_equal(t->nrows, 1);
    assert_string_equal(cell(t, 0, "S")->s, "error-1-true");
    assert_int_equal(cell(t, 0, "L")->i, 42);
    assert_int_equal(cell(t, 0, "L")->type, KT_LONG);
    assert_int_equal(cell(t, 0, "I")->i, 1);
    assert_int_equal(cell(t, 0, "I")->type, KT_INT);
    assert_true(cell(t, 0, "D")->r == 2.5);
    assert_string_equal(cell(t, 0, "T")->s, "01:00:00");
    assert_int_equal(cell(t, 0, "DT")->i, ticks(B));
    assert_int_equal(cell(t, 0, "DT")->type, KT_DATETIME);
    assert_int_equal(cell(t, 0, "TS")->i, KQL_TICKS_PER_HOUR);
    assert_int_equal(cell(t, 0, "TS")->type, KT_TIMESPAN);
    assert_int_equal(cell(t, 0, "Len")->i, 5);
    assert_true(cell(t, 0, "Bad")->is_null);
    assert_string_equal(cell(t, 0, "U")->s, "ERROR");
    assert_string_equal(cell(t, 0, "Sub")->s, "Error");
    assert_string_equal(cell(t, 0, "RS")->s, "1.5");
    assert_string_equal(cell(t, 0, "DS")->s, "2026-11-24T10:00:00Z");
    kusto_result_free(r);
    kusto_close(k);
}

static void test_summarize(void **state)
{
    struct kusto *k = gameplay();
    struct kusto_result *r;
    const struct kusto_table *t;
    int64_t s = KQL_TICKS_PER_SEC;

    (void)state;
    r = run_ok(k, "GamePlay | summarize count(), sum(Win), avg(Stake), "
                  "min(Win), max(Win), dcount(PlayerID), percentile(Win, 50)"
                  ", countif(Win > 10)");
    t = &r->tables[0];
    assert_int_equal(t->nrows, 1);
    assert_string_equal(t->cols[0].name, "count_");
    assert_int_equal(cell(t, 0, "count_")->i, 5);
    assert_int_equal(cell(t, 0, "sum_Win")->i, 657);
    assert_int_equal(cell(t, 0, "avg_Stake")->type, KT_REAL);
    assert_true(cell(t, 0, "avg_Stake")->r == 7.0);
    assert_int_equal(cell(t, 0, "min_Win")->i, 0);
    assert_int_equal(cell(t, 0, "max_Win")->i, 500);
    assert_int_equal(cell(t, 0, "dcount_PlayerID")->i, 3);
    assert_int_equal(cell(t, 0, "percentile_Win_50")->i, 50);
    assert_int_equal(cell(t, 0, "countif_")->i, 3);
    kusto_result_free(r);

    r = run_ok(k, "GamePlay | summarize n = count() by bin(EventTime, 2s) | "
                  "order by EventTime asc");
    t = &r->tables[0];
    assert_int_equal(t->nrows, 3);
    assert_string_equal(t->cols[0].name, "EventTime");
    assert_int_equal(t->cols[0].type, KT_DATETIME);
    assert_string_equal(t->cols[1].name, "n");
    assert_int_equal(cell(t, 0, "EventTime")->i, ticks(B));
    assert_int_equal(cell(t, 0, "n")->i, 2);
    assert_int_equal(cell(t, 1, "EventTime")->i, ticks(B) + 2 * s);
    assert_int_equal(cell(t, 2, "n")->i, 1);
    kusto_result_free(r);

    r = run_ok(k, "GamePlay | summarize W = sum(Win) by Stake, bin(Win, 100)"
                  " | order by Stake asc, Win asc");
    t = &r->tables[0];
    assert_string_equal(t->cols[0].name, "Stake");
    assert_string_equal(t->cols[1].name, "Win");
    assert_string_equal(t->cols[2].name, "W");
    assert_int_equal(t->nrows, 4);
    /* (5,0): 50+7, (5,100): 100, (10,0): 0, (10,500): 500 */
    assert_int_equal(cell(t, 0, "W")->i, 57);
    assert_int_equal(cell(t, 1, "Win")->i, 100);
    assert_int_equal(cell(t, 3, "W")->i, 500);
    kusto_result_free(r);

    r = run_ok(k, "GamePlay | summarize (p50, p99) = percentiles(Win, 50, "
                  "99), avg(Win) / 2, It = max(ingestion_time())");
    t = &r->tables[0];
    assert_string_equal(t->cols[0].name, "p50");
    assert_string_equal(t->cols[1].name, "p99");
    assert_int_equal(cell(t, 0, "p99")->i, 500);
    assert_string_equal(t->cols[2].name, "Column1");
    assert_true(cell(t, 0, "Column1")->r == 657.0 / 5 / 2);
    assert_int_equal(cell(t, 0, "It")->i, ticks(B) + 10 * s);
    kusto_result_free(r);

    r = run_ok(k, "GamePlay | summarize P = percentiles(Stake, 50, 99.5)");
    t = &r->tables[0];
    assert_string_equal(t->cols[0].name, "P_50");
    assert_string_equal(t->cols[1].name, "P_99_5");
    assert_int_equal(cell(t, 0, "P_99_5")->i, 10);
    kusto_result_free(r);

    /* ingestion_time() has no table context after summarize */
    r = run_ok(k, "GamePlay | summarize count() by PlayerID | extend It = "
                  "ingestion_time() | take 1");
    assert_true(cell(&r->tables[0], 0, "It")->is_null);
    kusto_result_free(r);

    /* summarize over no rows: one row with count 0 */
    assert_int_equal(
        scalar(k, "GamePlay | where Win > 100000 | summarize count()"), 0);
    kusto_close(k);
}

static void test_sort_take_distinct(void **state)
{
    struct kusto *k = gameplay();
    struct kusto_result *r;
    const struct kusto_table *t;

    (void)state;
    r = run_ok(k, "GamePlay | top 2 by Win asc");
    t = &r->tables[0];
    assert_int_equal(t->nrows, 2);
    assert_int_equal(cell(t, 0, "Win")->i, 0);
    assert_int_equal(cell(t, 1, "Win")->i, 7);
    kusto_result_free(r);

    r = run_ok(k, "GamePlay | order by Win desc | take 2");
    t = &r->tables[0];
    assert_int_equal(t->nrows, 2);
    assert_int_equal(cell(t, 0, "Win")->i, 500);
    assert_int_equal(cell(t, 1, "Win")->i, 100);
    kusto_result_free(r);

    r = run_ok(k, "GamePlay | sort by PlayerID asc, Win desc | project "
                  "PlayerID, Win");
    t = &r->tables[0];
    assert_int_equal(t->nrows, 5);
    assert_int_equal(cell(t, 0, "Win")->i, 100);
    assert_int_equal(cell(t, 1, "Win")->i, 7);
    assert_int_equal(cell(t, 2, "Win")->i, 500);
    assert_int_equal(cell(t, 4, "PlayerID")->i, 3);
    kusto_result_free(r);

    /* the order survives the operators after it */
    r = run_ok(k, "GamePlay | order by Win asc | where Stake == 5 | extend "
                  "X = 1 | project Win");
    t = &r->tables[0];
    assert_int_equal(t->nrows, 3);
    assert_int_equal(cell(t, 0, "Win")->i, 7);
    assert_int_equal(cell(t, 1, "Win")->i, 50);
    assert_int_equal(cell(t, 2, "Win")->i, 100);
    kusto_result_free(r);

    r = run_ok(k, "GamePlay | take 3");
    assert_int_equal(r->tables[0].nrows, 3);
    kusto_result_free(r);
    r = run_ok(k, "GamePlay | limit 0");
    assert_int_equal(r->tables[0].nrows, 0);
    assert_int_equal(r->tables[0].ncols, 5);
    kusto_result_free(r);
    assert_int_equal(scalar(k, "GamePlay | take 4 | count"), 4);

    r = run_ok(k, "GamePlay | distinct PlayerID | order by PlayerID asc");
    t = &r->tables[0];
    assert_int_equal(t->nrows, 3);
    assert_int_equal(t->ncols, 1);
    assert_int_equal(cell(t, 2, "PlayerID")->i, 3);
    kusto_result_free(r);
    assert_int_equal(scalar(k, "GamePlay | distinct PlayerID, Stake | count"),
                     4);
    assert_int_equal(scalar(k, "GamePlay | distinct * | count"), 5);

    /* a plain table name returns its rows, without $IngestionTime */
    r = run_ok(k, "GamePlay");
    assert_int_equal(r->tables[0].nrows, 5);
    assert_int_equal(r->tables[0].ncols, 5);
    assert_int_equal(r->tables[0].cols[4].type, KT_DATETIME);
    kusto_result_free(r);
    r = run_ok(k, "['GamePlay'] | where GameID == 12 | project EventTime");
    assert_int_equal(r->tables[0].nrows, 2);
    kusto_result_free(r);
    kusto_close(k);
}

static void test_query_errors(void **state)
{
    struct kusto *k = gameplay();
    struct kusto_error err;

    (void)state;
    err = run_err(k, "GamePlay | join (Other) on PlayerID",
                  "unsupported operator 'join'");
    assert_int_equal(err.status, 400);
    assert_string_equal(err.code, "General_BadRequest");
    run_err(k, "GamePlay | mv-expand x", "unsupported operator 'mv-expand'");
    run_err(k, "GamePlay | frobnicate", "unsupported operator 'frobnicate'");
    run_err(k, "GamePlay | union Other", "unsupported operator 'union'");
    run_err(k, "let x = 1; GamePlay", "unsupported statement 'let'");
    run_err(k, "print 1", "unsupported operator 'print'");
    run_err(k, "GamePlay | extend x = foo(1)", "unsupported function 'foo'");
    run_err(k, "GamePlay | where Nope == 1",
            "SEM0100: 'where' operator: Failed to resolve scalar expression "
            "named 'Nope'");
    err = run_err(k, "Nope | count",
                  "SEM0100: 'count' operator: Failed to resolve table or "
                  "column expression named 'Nope'");
    assert_int_equal(err.status, 400);
    run_err(k, "GamePlay | where", "Syntax error");
    run_err(k, "GamePlay | where PlayerID ==", "Syntax error");
    run_err(k, "GamePlay | where (PlayerID == 1", "expected ')'");
    run_err(k, "GamePlay || count", "Syntax error");
    run_err(k, "GamePlay | take 'x'", "expected a row count");
    run_err(k, "GamePlay count", "expected '|'");
    run_err(k, "GamePlay | where Win == 'x'",
            "Cannot compare values of types long and string");
    run_err(k, "GamePlay | where Win + 1", "not bool");
    run_err(k, "GamePlay | summarize Win", "not an aggregate");
    run_err(k, "GamePlay | extend x = sum(Win)", "only allowed in summarize");
    run_err(k, "GamePlay | extend x = EventTime + EventTime",
            "operator '+' cannot be applied to types 'datetime' and "
            "'datetime'");
    run_err(k, "GamePlay | where Win == 'abc", "unterminated string");
    run_err(k, "GamePlay | where EventTime > datetime(yesterday)",
            "invalid datetime literal");
    run_err(k, "GamePlay | where EventTime > ago(3x)", "'3x'");
    run_err(k, "GamePlay | top 3 by", "Syntax error");
    run_err(k, "GamePlay | where Win == 1 #", "unexpected character '#'");
    err = run_err(k, "GamePlay | extend x = percentile(Win, 50)",
                  "only allowed in summarize");
    assert_int_equal(err.status, 400);
    kusto_close(k);
}

static void remove_db_files(const char *path)
{
    char buf[256];

    remove(path);
    snprintf(buf, sizeof(buf), "%s-wal", path);
    remove(buf);
    snprintf(buf, sizeof(buf), "%s-shm", path);
    remove(buf);
}

/* --data FILE: the catalog and the rows survive a close and reopen, and
 * DDL works on a file database with the cached lookups open. */
static void test_file_persistence(void **state)
{
    char path[64], errbuf[256];
    struct kusto *k;
    static const int64_t rows[2][5] = {{1, 2, 3, 4, 5}, {6, 7, 8, 9, 10}};

    (void)state;
    snprintf(path, sizeof(path), "test_kusto_%ld.db", (long)getpid());
    remove_db_files(path);
    k = kusto_open(path, errbuf, sizeof(errbuf));
    assert_non_null(k);
    assert_int_equal(kusto_create_database(k, DB), 0);
    run_free(k, seed_table);
    run_free(k, seed_mapping);
    run_free(k, ".alter database leaderboard policy streamingingestion "
                "enable");
    insert_gameplay(k, rows, 2, 7);
    run_free(k, ".create-merge table GamePlay (Extra: string)");
    run_free(k, ".create table Tmp (A: int)");
    run_free(k, ".drop table Tmp");
    kusto_close(k);

    k = kusto_open(path, errbuf, sizeof(errbuf));
    assert_non_null(k);
    assert_int_equal(kusto_database_exists(k, DB), 1);
    assert_int_equal(kusto_streaming_enabled(k, DB, "GamePlay"), 1);
    assert_int_equal(scalar(k, "GamePlay | count"), 2);
    assert_int_equal(scalar(k, "GamePlay | where isempty(Extra) | "
                               "summarize sum(Win)"),
                     11);
    assert_int_equal(scalar(k, "GamePlay | summarize max(ingestion_time())"),
                     7);
    run_free(k, ".show table GamePlay ingestion json mapping "
                "'gameplay_json_mapping'");
    kusto_close(k);
    remove_db_files(path);

    assert_null(kusto_open("/nonexistent-dir/x.db", errbuf, sizeof(errbuf)));
    assert_non_null(strstr(errbuf, "/nonexistent-dir/x.db"));
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
        cmocka_unit_test(test_ingestion_resources_identity_token),
        cmocka_unit_test(test_command_errors),
        cmocka_unit_test(test_seed_queries),
        cmocka_unit_test(test_where),
        cmocka_unit_test(test_string_operators),
        cmocka_unit_test(test_project_extend),
        cmocka_unit_test(test_conversions),
        cmocka_unit_test(test_summarize),
        cmocka_unit_test(test_sort_take_distinct),
        cmocka_unit_test(test_query_errors),
        cmocka_unit_test(test_file_persistence),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
