/*
 * test_ingest.c - emulators/ingest.c and ingest_value.c: stream formats, JSON
 * mappings (paths, ConstValue, transforms), ADX-style conversion of bad values
 * to null, CSV quoting and field counts, gunzip (good, corrupt, truncated, over
 * the cap), and the datetime/timespan parsers.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "emulators/ingest.h"
#include "gateway/avro.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#define T0 (INT64_C(10000000)) /* ticks per second */

static const struct kusto_column gameplay[] = {
    {"PlayerID", KT_INT}, {"GameID", KT_INT},         {"Win", KT_LONG},
    {"Stake", KT_INT},    {"EventTime", KT_DATETIME},
};

static const char gameplay_mapping[] =
    "[{\"column\":\"PlayerID\",\"Properties\":{\"Path\":\"$.playerId\"}},"
    "{\"column\":\"GameID\",\"Properties\":{\"Path\":\"$.gameId\"}},"
    "{\"column\":\"Win\",\"Properties\":{\"Path\":\"$.win\"}},"
    "{\"column\":\"Stake\",\"Properties\":{\"Path\":\"$.stake\"}},"
    "{\"column\":\"EventTime\",\"Properties\":{\"Path\":\"$.eventTime\"}}]";

static struct ingest_mapping *
mapping(const char *json, const struct kusto_column *cols, size_t ncols)
{
    struct ingest_mapping *m = NULL;
    struct kusto_error err;

    assert_int_equal(ingest_mapping_parse(json, &m, &err), 0);
    assert_int_equal(ingest_mapping_bind(m, cols, ncols, &err), 0);
    return m;
}

static const struct kusto_value *cell(const struct ingest_rows *r, size_t row,
                                      size_t col)
{
    assert_true(row < r->nrows && col < r->ncols);
    return &r->values[row * r->ncols + col];
}

static void test_format_parse(void **state)
{
    enum ingest_format f;

    (void)state;
    assert_int_equal(ingest_format_parse("json", &f), 0);
    assert_int_equal(f, INGEST_JSON);
    assert_int_equal(ingest_format_parse("MultiJson", &f), 0);
    assert_int_equal(f, INGEST_MULTIJSON);
    assert_int_equal(ingest_format_parse("CSV", &f), 0);
    assert_int_equal(f, INGEST_CSV);
    assert_int_equal(ingest_format_parse("SingleJson", &f), 0);
    assert_int_equal(f, INGEST_JSON);
    assert_int_equal(ingest_format_parse("Avro", &f), 0);
    assert_int_equal(f, INGEST_AVRO);
    assert_int_equal(ingest_format_parse("apacheavro", &f), 0);
    assert_int_equal(f, INGEST_AVRO);
    assert_int_equal(ingest_format_parse("parquet", &f), -ENOTSUP);
}

static void test_datetime_parse(void **state)
{
    int64_t t;

    (void)state;
    assert_int_equal(ingest_parse_datetime("1970-01-01", 10, &t), 0);
    assert_int_equal(t, 0);
    assert_int_equal(ingest_parse_datetime("2024-05-01T10:20:30Z", 20, &t), 0);
    assert_int_equal(t, INT64_C(1714558830) * T0);
    assert_int_equal(
        ingest_parse_datetime("2024-05-01T10:20:30.1234567Z", 28, &t), 0);
    assert_int_equal(t, INT64_C(1714558830) * T0 + 1234567);
    assert_int_equal(
        ingest_parse_datetime("2024-05-01 12:20:30.5+02:00", 27, &t), 0);
    assert_int_equal(t, INT64_C(1714558830) * T0 + 5000000);
    assert_int_equal(ingest_parse_datetime("2024-02-29T00:00", 16, &t), 0);
    assert_int_equal(ingest_parse_datetime("2023-02-29", 10, &t), -EINVAL);
    assert_int_equal(ingest_parse_datetime("2024-13-01", 10, &t), -EINVAL);
    assert_int_equal(ingest_parse_datetime("yesterday", 9, &t), -EINVAL);
    assert_int_equal(ingest_parse_datetime("2024-05-01T10:20:30Zx", 21, &t),
                     -EINVAL);
    assert_int_equal(ingest_parse_datetime("1969-12-31T23:59:59", 19, &t), 0);
    assert_int_equal(t, -T0);
}

static void test_timespan_parse(void **state)
{
    int64_t t;

    (void)state;
    assert_int_equal(ingest_parse_timespan("01:02:03", 8, &t), 0);
    assert_int_equal(t, (3600 + 120 + 3) * T0);
    assert_int_equal(ingest_parse_timespan("2.00:00:01.5", 12, &t), 0);
    assert_int_equal(t, (2 * 86400 + 1) * T0 + 5000000);
    assert_int_equal(ingest_parse_timespan("-00:00:01", 9, &t), 0);
    assert_int_equal(t, -T0);
    assert_int_equal(ingest_parse_timespan("1.5h", 4, &t), 0);
    assert_int_equal(t, 5400 * T0);
    assert_int_equal(ingest_parse_timespan("250ms", 5, &t), 0);
    assert_int_equal(t, T0 / 4);
    /* servertimeout as a KQL timespan ("00:10:00", kadx's form) and
     * Python's str(timedelta) ("0:10:00"): the late-apply fault's bound */
    assert_int_equal(ingest_parse_timespan("00:10:00", 8, &t), 0);
    assert_int_equal(t, 600 * T0);
    assert_int_equal(ingest_parse_timespan("0:10:00", 7, &t), 0);
    assert_int_equal(t, 600 * T0);
    assert_int_equal(ingest_parse_timespan("3parsecs", 8, &t), -EINVAL);
    assert_int_equal(ingest_parse_timespan("25:00:00", 8, &t), -EINVAL);
    {
        /* the servertimeout header: a timespan, or the Java SDK 7.0.x's
         * milliseconds on streaming ingest */
        uint64_t ms = 1;
        assert_int_equal(ingest_parse_servertimeout("600000", 6, &ms), 0);
        assert_int_equal(ms, 600000);
        assert_int_equal(ingest_parse_servertimeout("00:10:00", 8, &ms), 0);
        assert_int_equal(ms, 600000);
        assert_int_equal(ingest_parse_servertimeout("10m", 3, &ms), 0);
        assert_int_equal(ms, 600000);
        assert_int_equal(ingest_parse_servertimeout(" 250 ", 5, &ms), 0);
        assert_int_equal(ms, 250);
        assert_int_equal(ingest_parse_servertimeout("-00:00:01", 9, &ms),
                         -EINVAL);
        assert_int_equal(ingest_parse_servertimeout("", 0, &ms), -EINVAL);
        assert_int_equal(ingest_parse_servertimeout("12x", 3, &ms), -EINVAL);
        assert_int_equal(
            ingest_parse_servertimeout("99999999999999999999999", 23, &ms),
            -EINVAL);
    }
}

static void test_convert_text_bad_values_are_null(void **state)
{
    struct kusto_value v;

    (void)state;
    assert_int_equal(ingest_convert_text("42", 2, KT_INT, &v), 0);
    assert_false(v.is_null);
    assert_int_equal(v.i, 42);
    assert_int_equal(ingest_convert_text("abc", 3, KT_INT, &v), 0);
    assert_true(v.is_null);
    assert_int_equal(ingest_convert_text("3000000000", 10, KT_INT, &v), 0);
    assert_true(v.is_null); /* over int32 */
    assert_int_equal(ingest_convert_text("3000000000", 10, KT_LONG, &v), 0);
    assert_int_equal(v.i, INT64_C(3000000000));
    assert_int_equal(
        ingest_convert_text("9223372036854775807", 19, KT_LONG, &v), 0);
    assert_int_equal(v.i, INT64_MAX); /* exact from text */
    assert_int_equal(ingest_convert_text("", 0, KT_LONG, &v), 0);
    assert_true(v.is_null);
    assert_int_equal(ingest_convert_text("2.5", 3, KT_REAL, &v), 0);
    assert_true(v.r == 2.5);
    assert_int_equal(ingest_convert_text("TRUE", 4, KT_BOOL, &v), 0);
    assert_int_equal(v.i, 1);
    assert_int_equal(ingest_convert_text("maybe", 5, KT_BOOL, &v), 0);
    assert_true(v.is_null);
    assert_int_equal(ingest_convert_text("not a date", 10, KT_DATETIME, &v), 0);
    assert_true(v.is_null);
    assert_int_equal(
        ingest_convert_text("{4F9B1C2A-0000-4000-8000-00000000ABCD}", 38,
                            KT_GUID, &v),
        0);
    assert_string_equal(v.s, "4f9b1c2a-0000-4000-8000-00000000abcd");
    free(v.s);
    assert_int_equal(ingest_convert_text("zz", 2, KT_GUID, &v), 0);
    assert_true(v.is_null);
    assert_int_equal(ingest_convert_text("{\"a\": [1, 2]}", 13, KT_DYNAMIC, &v),
                     0);
    assert_string_equal(v.s, "{\"a\":[1,2]}");
    free(v.s);
    assert_int_equal(ingest_convert_text("plain", 5, KT_DYNAMIC, &v), 0);
    assert_string_equal(v.s, "\"plain\"");
    free(v.s);
    assert_int_equal(ingest_convert_text("", 0, KT_STRING, &v), 0);
    assert_false(v.is_null);
    assert_string_equal(v.s, "");
    free(v.s);
}

static void test_gameplay_json_lines(void **state)
{
    struct ingest_mapping *m = mapping(gameplay_mapping, gameplay, 5);
    struct ingest_rows r;
    struct kusto_error err;
    const char body[] =
        "{\"playerId\":7,\"gameId\":3,\"win\":120,\"stake\":10,"
        "\"eventTime\":\"2024-05-01T10:20:30.5Z\"}\r\n"
        "\n"
        "{\"playerId\":\"8\",\"gameId\":\"x\",\"win\":1e30,\"stake\":2.9}\n";

    (void)state;
    assert_int_equal(ingest_parse(body, strlen(body), INGEST_JSON, gameplay, 5,
                                  m, 0, &r, &err),
                     0);
    assert_int_equal(r.nrows, 2);
    assert_int_equal(cell(&r, 0, 0)->i, 7);
    assert_int_equal(cell(&r, 0, 1)->i, 3);
    assert_int_equal(cell(&r, 0, 2)->i, 120);
    assert_int_equal(cell(&r, 0, 3)->i, 10);
    assert_int_equal(cell(&r, 0, 4)->i, INT64_C(1714558830) * T0 + 5000000);
    /* "8" converts; "x" and 1e30 do not (null); 2.9 truncates */
    assert_int_equal(cell(&r, 1, 0)->i, 8);
    assert_true(cell(&r, 1, 1)->is_null);
    assert_true(cell(&r, 1, 2)->is_null);
    assert_int_equal(cell(&r, 1, 3)->i, 2);
    assert_true(cell(&r, 1, 4)->is_null); /* missing */
    ingest_rows_release(&r);
    ingest_mapping_free(m);
}

static void test_invalid_json_line_is_permanent_error(void **state)
{
    struct ingest_rows r;
    struct kusto_error err;
    const char body[] = "{\"PlayerID\":1}\n{not json}\n";

    (void)state;
    assert_int_equal(ingest_parse(body, strlen(body), INGEST_JSON, gameplay, 5,
                                  NULL, 0, &r, &err),
                     -EBADMSG);
    assert_int_equal(err.status, 400);
    assert_int_equal(err.permanent, 1);
    assert_non_null(strstr(err.message, "line 2"));
    assert_int_equal(r.nrows, 0);
}

static void test_paths_consts_transforms(void **state)
{
    static const struct kusto_column cols[] = {
        {"Spaced", KT_STRING}, {"Deep", KT_LONG},    {"Whole", KT_DYNAMIC},
        {"Const", KT_LONG},    {"Sec", KT_DATETIME}, {"Ms", KT_DATETIME},
        {"Us", KT_DATETIME},   {"Ns", KT_DATETIME},  {"Idx", KT_STRING},
        {"Line", KT_LONG},
    };
    const char *mj =
        "[{\"column\":\"Spaced\",\"Properties\":{\"Path\":\"$['x y']\"}},"
        "{\"column\":\"Deep\",\"path\":\"$.a.b\",\"datatype\":\"\"},"
        "{\"column\":\"Whole\",\"Properties\":{\"Path\":\"$\"}},"
        "{\"column\":\"Const\",\"Properties\":{\"ConstValue\":\"99\"}},"
        "{\"column\":\"Sec\",\"Properties\":{\"Path\":\"$.t\","
        "\"Transform\":\"DateTimeFromUnixSeconds\"}},"
        "{\"column\":\"Ms\",\"Properties\":{\"Path\":\"$.t_ms\","
        "\"Transform\":\"DateTimeFromUnixMilliseconds\"}},"
        "{\"column\":\"Us\",\"Properties\":{\"Path\":\"$.t_us\","
        "\"Transform\":\"DateTimeFromUnixMicroseconds\"}},"
        "{\"column\":\"Ns\",\"Properties\":{\"Path\":\"$.t_ns\","
        "\"Transform\":\"DateTimeFromUnixNanoseconds\"}},"
        "{\"column\":\"Idx\",\"Properties\":{\"Path\":\"$.arr[1]\"}},"
        "{\"column\":\"Line\",\"Properties\":{"
        "\"Transform\":\"SourceLineNumber\"}}]";
    struct ingest_mapping *m = mapping(mj, cols, 10);
    struct ingest_rows r;
    struct kusto_error err;
    const char body[] = "{\"x y\":\"hi\",\"a\":{\"b\":5},\"t\":1714558830,"
                        "\"t_ms\":1714558830500,\"t_us\":\"1714558830000001\","
                        "\"t_ns\":1714558830000000100,\"arr\":[\"p\",\"q\"]}";

    (void)state;
    assert_int_equal(ingest_parse(body, strlen(body), INGEST_MULTIJSON, cols,
                                  10, m, 0, &r, &err),
                     0);
    assert_int_equal(r.nrows, 1);
    assert_string_equal(cell(&r, 0, 0)->s, "hi");
    assert_int_equal(cell(&r, 0, 1)->i, 5);
    assert_non_null(strstr(cell(&r, 0, 2)->s, "\"x y\":\"hi\""));
    assert_int_equal(cell(&r, 0, 3)->i, 99);
    assert_int_equal(cell(&r, 0, 4)->i, INT64_C(1714558830) * T0);
    assert_int_equal(cell(&r, 0, 5)->i, INT64_C(1714558830) * T0 + 5000000);
    assert_int_equal(cell(&r, 0, 6)->i, INT64_C(1714558830) * T0 + 10);
    /* nanoseconds arrive as a double: precise to about 1 us here */
    assert_true(cell(&r, 0, 7)->i / 100 == INT64_C(1714558830) * T0 / 100);
    assert_string_equal(cell(&r, 0, 8)->s, "q");
    assert_int_equal(cell(&r, 0, 9)->i, 1);
    ingest_rows_release(&r);
    ingest_mapping_free(m);
}

/* format avro: an object container file through an Avro mapping (Field
 * and Path properties), and a corrupt file as a permanent error */
static void test_avro_file(void **state)
{
    static const struct kusto_column cols[] = {
        {"Name", KT_STRING},
        {"Age", KT_LONG},
        {"When", KT_DATETIME},
        {"Opt", KT_REAL},
    };
    const char *schema = "{\"type\":\"record\",\"name\":\"R\",\"fields\":["
                         "{\"name\":\"name\",\"type\":\"string\"},"
                         "{\"name\":\"age\",\"type\":\"long\"},"
                         "{\"name\":\"ts\",\"type\":\"string\"},"
                         "{\"name\":\"opt\",\"type\":[\"null\",\"double\"]}]}";
    const char *mj =
        "[{\"column\":\"Name\",\"Properties\":{\"Field\":\"name\"}},"
        "{\"column\":\"Age\",\"Properties\":{\"Path\":\"$.age\"}},"
        "{\"column\":\"When\",\"Properties\":{\"Field\":\"ts\"}},"
        "{\"column\":\"Opt\",\"Properties\":{\"Field\":\"opt\"}}]";
    struct ingest_mapping *m = mapping(mj, cols, 4);
    struct sbuf f = {0}, recs = {0};
    const unsigned char sync[16] = "ABCDEFGHIJKLMNOP";
    struct ingest_rows r;
    struct kusto_error err;

    (void)state;
    for (int i = 0; i < 3; i++) {
        char name[8];

        snprintf(name, sizeof(name), "n%d", i);
        avro_put_string(&recs, name, strlen(name));
        avro_put_long(&recs, 40 + i);
        avro_put_string(&recs, "2024-05-01T10:20:30.500Z", 24);
        avro_put_long(&recs, 0); /* opt: null */
    }
    avro_ocf_header(&f, schema, sync);
    avro_ocf_block(&f, 3, recs.p, recs.len, sync);
    assert_int_equal(
        ingest_parse(f.p, f.len, INGEST_AVRO, cols, 4, m, 0, &r, &err), 0);
    assert_int_equal(r.nrows, 3);
    assert_string_equal(cell(&r, 2, 0)->s, "n2");
    assert_int_equal(cell(&r, 1, 1)->i, 41);
    assert_false(cell(&r, 0, 2)->is_null);
    assert_true(cell(&r, 0, 3)->is_null);
    ingest_rows_release(&r);
    /* over max_rows, then a body that is not Avro */
    assert_int_equal(
        ingest_parse(f.p, f.len, INGEST_AVRO, cols, 4, m, 2, &r, &err), -E2BIG);
    assert_int_equal(
        ingest_parse("{\"a\":1}", 7, INGEST_AVRO, cols, 4, m, 0, &r, &err),
        -EBADMSG);
    assert_int_equal(err.status, 400);
    assert_non_null(strstr(err.message, "not a valid Avro file"));
    sbuf_release(&f);
    sbuf_release(&recs);
    ingest_mapping_free(m);
}

static void test_bag_and_drop_mapped_fields(void **state)
{
    static const struct kusto_column cols[] = {
        {"Id", KT_LONG}, {"Bag", KT_DYNAMIC}, {"Rest", KT_DYNAMIC}};
    const char *mj = "[{\"column\":\"Id\",\"Properties\":{\"Path\":\"$.id\"}},"
                     "{\"column\":\"Bag\",\"Properties\":{\"Path\":\"$.props\","
                     "\"Transform\":\"PropertyBagArrayToDictionary\"}},"
                     "{\"column\":\"Rest\",\"Properties\":{\"Path\":\"$\","
                     "\"Transform\":\"DropMappedFields\"}}]";
    struct ingest_mapping *m = mapping(mj, cols, 3);
    struct ingest_rows r;
    struct kusto_error err;
    const char body[] = "{\"id\":4,\"props\":[{\"Key\":\"a\",\"Value\":1},"
                        "{\"Key\":\"b\",\"Value\":\"x\"}],\"other\":true}";

    (void)state;
    assert_int_equal(
        ingest_parse(body, strlen(body), INGEST_JSON, cols, 3, m, 0, &r, &err),
        0);
    assert_int_equal(cell(&r, 0, 0)->i, 4);
    assert_string_equal(cell(&r, 0, 1)->s, "{\"a\":1,\"b\":\"x\"}");
    assert_string_equal(cell(&r, 0, 2)->s, "{\"other\":true}");
    ingest_rows_release(&r);
    ingest_mapping_free(m);
}

static void test_mapping_errors(void **state)
{
    struct ingest_mapping *m = NULL;
    struct kusto_error err;

    (void)state;
    assert_int_equal(ingest_mapping_parse("{}", &m, &err), -EINVAL);
    assert_int_equal(
        ingest_mapping_parse("[{\"column\":\"A\",\"Properties\":{\"Path\":"
                             "\"$.a\",\"Transform\":\"Frobnicate\"}}]",
                             &m, &err),
        -EINVAL);
    assert_non_null(strstr(err.message, "Frobnicate"));
    assert_int_equal(
        ingest_mapping_parse("[{\"column\":\"A\",\"Properties\":{\"Path\":"
                             "\"$.a[\"}}]",
                             &m, &err),
        -EINVAL);
    assert_int_equal(
        ingest_mapping_parse("[{\"column\":\"New\",\"datatype\":\"string\","
                             "\"Properties\":{\"Path\":\"$.n\"}}]",
                             &m, &err),
        0);
    assert_true(m->e[0].has_type);
    assert_int_equal(m->e[0].type, KT_STRING);
    assert_int_equal(ingest_mapping_bind(m, gameplay, 5, &err), -ENOENT);
    assert_non_null(strstr(err.message, "'New'"));
    ingest_mapping_free(m);
}

static void test_identity_and_multijson(void **state)
{
    struct ingest_rows r;
    struct kusto_error err;
    const char body[] = "[{\"PlayerID\":1,\"Win\":5},{\"PlayerID\":2}]\n"
                        "{\"PlayerID\":3,\n \"EventTime\":\"2024-01-01\"}";

    (void)state;
    assert_int_equal(ingest_parse(body, strlen(body), INGEST_MULTIJSON,
                                  gameplay, 5, NULL, 0, &r, &err),
                     0);
    assert_int_equal(r.nrows, 3);
    assert_int_equal(cell(&r, 0, 0)->i, 1);
    assert_int_equal(cell(&r, 0, 2)->i, 5);
    assert_true(cell(&r, 1, 2)->is_null);
    assert_int_equal(cell(&r, 2, 0)->i, 3);
    assert_false(cell(&r, 2, 4)->is_null);
    ingest_rows_release(&r);
    assert_int_equal(ingest_parse("[{\"a\":1}, {", 11, INGEST_MULTIJSON,
                                  gameplay, 5, NULL, 0, &r, &err),
                     -EBADMSG);
    /* the row cap */
    assert_int_equal(ingest_parse(body, strlen(body), INGEST_MULTIJSON,
                                  gameplay, 5, NULL, 2, &r, &err),
                     -E2BIG);
}

static void test_csv(void **state)
{
    struct ingest_rows r;
    struct kusto_error err;
    static const struct kusto_column cols[] = {
        {"A", KT_STRING}, {"B", KT_LONG}, {"C", KT_DATETIME}};
    const char body[] = "\"x, \"\"quoted\"\"\",1,2024-01-01T00:00:00Z\r\n"
                        "plain,zz,\n"
                        "\n"
                        "\"multi\nline\",3,2024-01-02";

    (void)state;
    assert_int_equal(ingest_parse(body, strlen(body), INGEST_CSV, cols, 3, NULL,
                                  0, &r, &err),
                     0);
    assert_int_equal(r.nrows, 3);
    assert_string_equal(cell(&r, 0, 0)->s, "x, \"quoted\"");
    assert_int_equal(cell(&r, 0, 1)->i, 1);
    assert_false(cell(&r, 0, 2)->is_null);
    assert_string_equal(cell(&r, 1, 0)->s, "plain");
    assert_true(cell(&r, 1, 1)->is_null);
    assert_true(cell(&r, 1, 2)->is_null);
    assert_string_equal(cell(&r, 2, 0)->s, "multi\nline");
    ingest_rows_release(&r);
    assert_int_equal(
        ingest_parse("a,1\n", 4, INGEST_CSV, cols, 3, NULL, 0, &r, &err),
        -EBADMSG);
    assert_string_equal(err.code, "Stream_WrongNumberOfFields");
    assert_int_equal(ingest_parse("\"open,1,2\n", 10, INGEST_CSV, cols, 3, NULL,
                                  0, &r, &err),
                     -EBADMSG);
}

static size_t gzip_buf(const char *in, size_t len, unsigned char *out,
                       size_t cap)
{
    z_stream zs;

    memset(&zs, 0, sizeof(zs));
    assert_int_equal(
        deflateInit2(&zs, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY), Z_OK);
    zs.next_in = (Bytef *)(uintptr_t)in;
    zs.avail_in = (uInt)len;
    zs.next_out = out;
    zs.avail_out = (uInt)cap;
    assert_int_equal(deflate(&zs, Z_FINISH), Z_STREAM_END);
    deflateEnd(&zs);
    return cap - zs.avail_out;
}

static void test_gunzip(void **state)
{
    static unsigned char gz[200000];
    static char plain[150000];
    struct kusto_error err;
    char *out = NULL;
    size_t outlen = 0;
    size_t n;
    size_t n2;

    (void)state;
    for (size_t i = 0; i < sizeof(plain); i++) {
        plain[i] = (char)('a' + (i * 7) % 26);
    }
    n = gzip_buf(plain, sizeof(plain), gz, sizeof(gz));
    assert_int_equal(ingest_gunzip(gz, n, 1 << 20, &out, &outlen, &err), 0);
    assert_int_equal(outlen, sizeof(plain));
    assert_memory_equal(out, plain, sizeof(plain));
    assert_int_equal(out[outlen], '\0');
    free(out);
    /* two members back to back are one body */
    n2 = gzip_buf("tail", 4, gz + n, sizeof(gz) - n);
    assert_int_equal(ingest_gunzip(gz, n + n2, 1 << 20, &out, &outlen, &err),
                     0);
    assert_int_equal(outlen, sizeof(plain) + 4);
    free(out);
    /* over the cap */
    assert_int_equal(ingest_gunzip(gz, n, 1000, &out, &outlen, &err),
                     -EMSGSIZE);
    assert_int_equal(err.status, 413);
    /* truncated */
    assert_int_equal(ingest_gunzip(gz, n / 2, 1 << 20, &out, &outlen, &err),
                     -EBADMSG);
    assert_non_null(strstr(err.message, "truncated"));
    /* not gzip at all */
    assert_int_equal(
        ingest_gunzip("hello world", 11, 1 << 20, &out, &outlen, &err),
        -EBADMSG);
    assert_int_equal(err.status, 400);
    assert_int_equal(err.permanent, 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_format_parse),
        cmocka_unit_test(test_datetime_parse),
        cmocka_unit_test(test_timespan_parse),
        cmocka_unit_test(test_convert_text_bad_values_are_null),
        cmocka_unit_test(test_gameplay_json_lines),
        cmocka_unit_test(test_invalid_json_line_is_permanent_error),
        cmocka_unit_test(test_paths_consts_transforms),
        cmocka_unit_test(test_bag_and_drop_mapped_fields),
        cmocka_unit_test(test_avro_file),
        cmocka_unit_test(test_mapping_errors),
        cmocka_unit_test(test_identity_and_multijson),
        cmocka_unit_test(test_csv),
        cmocka_unit_test(test_gunzip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
