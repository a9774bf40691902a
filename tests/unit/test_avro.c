/*
 * test_avro.c - gateway/avro.c (schemas, datum -> JSON, OCF) and
 * gateway/srbody.c (bodies of Schema Registry routes: dead-letter reasons,
 * one schema per Avro request, metadata fields).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gateway/avro.h"
#include "gateway/config.h"
#include "gateway/forwarder.h"
#include "gateway/log.h"
#include "gateway/registry.h"
#include "gateway/srbody.h"
#include "storage/journal.h"

static const char *const USER_V1 =
    "{\"type\":\"record\",\"name\":\"User\",\"namespace\":\"ns\",\"fields\":["
    "{\"name\":\"name\",\"type\":\"string\"},"
    "{\"name\":\"age\",\"type\":\"int\"},"
    "{\"name\":\"tags\",\"type\":{\"type\":\"array\",\"items\":\"string\"}},"
    "{\"name\":\"score\",\"type\":[\"null\",\"double\"]},"
    "{\"name\":\"kind\",\"type\":{\"type\":\"enum\",\"name\":\"Kind\","
    "\"symbols\":[\"A\",\"B\"]}},"
    "{\"name\":\"attrs\",\"type\":{\"type\":\"map\",\"values\":\"long\"}},"
    "{\"name\":\"raw\",\"type\":\"bytes\"},"
    "{\"name\":\"fx\",\"type\":{\"type\":\"fixed\",\"name\":\"F2\",\"size\":2}}"
    ","
    "{\"name\":\"ok\",\"type\":\"boolean\"},"
    "{\"name\":\"ratio\",\"type\":\"float\"},"
    "{\"name\":\"next\",\"type\":[\"null\",\"ns.User\"]}"
    "]}";

static struct avro_schema *parse(const char *json)
{
    struct avro_schema *s = NULL;
    char err[160];
    int rc = avro_schema_parse(json, &s, err, sizeof(err));

    if (rc != 0) {
        print_error("schema: %s\n", err);
    }
    assert_int_equal(rc, 0);
    return s;
}

/* One User datum; next = 1 adds a nested User with no next. */
static void put_user(struct sbuf *b, const char *name, int nested)
{
    float ratio = 0.5f;
    uint32_t u;
    unsigned char f4[4];

    avro_put_string(b, name, strlen(name));
    avro_put_long(b, -42);
    avro_put_long(b, 2); /* one block of two tags */
    avro_put_string(b, "x", 1);
    avro_put_string(b, "y\"z", 3);
    avro_put_long(b, 0);
    avro_put_long(b, 1); /* score: double */
    {
        double d = 2.25;
        unsigned char d8[8];
        uint64_t v;

        memcpy(&v, &d, 8);
        for (int i = 0; i < 8; i++) {
            d8[i] = (unsigned char)(v >> (8 * i));
        }
        sbuf_add(b, d8, 8);
    }
    avro_put_long(b, 1);  /* kind B */
    avro_put_long(b, -1); /* a map block with a byte size */
    avro_put_long(b, 3);
    avro_put_string(b, "k", 1);
    avro_put_long(b, 7);
    avro_put_long(b, 0);
    avro_put_string(b, "\x01\x02\xff", 3);
    sbuf_add(b, "ab", 2);
    sbuf_add(b, "\x01", 1);
    memcpy(&u, &ratio, 4);
    for (int i = 0; i < 4; i++) {
        f4[i] = (unsigned char)(u >> (8 * i));
    }
    sbuf_add(b, f4, 4);
    if (nested) {
        avro_put_long(b, 1);
        put_user(b, "kid", 0);
    } else {
        avro_put_long(b, 0);
    }
}

static const char *const USER_JSON_KID =
    "{\"name\":\"kid\",\"age\":-42,\"tags\":[\"x\",\"y\\\"z\"],\"score\":2.25,"
    "\"kind\":\"B\",\"attrs\":{\"k\":7},\"raw\":\"AQL/\",\"fx\":\"YWI=\","
    "\"ok\":true,\"ratio\":0.5,\"next\":null}";

static void test_decode_all_types(void **state)
{
    struct avro_schema *s = parse(USER_V1);
    struct sbuf in = {0}, out = {0};
    char err[160];
    char want[1024];

    (void)state;
    assert_true(avro_schema_is_record(s));
    put_user(&in, "bob", 1);
    assert_int_equal(avro_to_json(s, in.p, in.len, &out, err, sizeof(err)), 0);
    snprintf(want, sizeof(want),
             "{\"name\":\"bob\",\"age\":-42,\"tags\":[\"x\",\"y\\\"z\"],"
             "\"score\":2.25,\"kind\":\"B\",\"attrs\":{\"k\":7},\"raw\":"
             "\"AQL/\",\"fx\":\"YWI=\",\"ok\":true,\"ratio\":0.5,\"next\":%s}",
             USER_JSON_KID);
    assert_string_equal(out.p, want);
    /* validation only */
    assert_int_equal(avro_to_json(s, in.p, in.len, NULL, err, sizeof(err)), 0);
    sbuf_release(&in);
    sbuf_release(&out);
    avro_schema_free(s);
}

static void expect_bad(const struct avro_schema *s, const void *p, size_t n,
                       const char *why)
{
    struct sbuf out = {0};
    char err[160] = "";
    int rc;

    sbuf_add(&out, "keep", 4);
    rc = avro_to_json(s, p, n, &out, err, sizeof(err));
    if (rc != -EBADMSG || strstr(err, why) == NULL) {
        print_error("rc %d err '%s', want '%s'\n", rc, err, why);
        fail();
    }
    /* the caller's buffer is left as it was */
    assert_string_equal(out.p, "keep");
    sbuf_release(&out);
}

static void test_malformed_bodies(void **state)
{
    struct avro_schema *s = parse(USER_V1);
    struct avro_schema *nulls =
        parse("{\"type\":\"array\",\"items\":\"null\"}");
    struct avro_schema *str = parse("\"string\"");
    struct avro_schema *un = parse("[\"null\",\"int\"]");
    struct sbuf in = {0}, b = {0};

    (void)state;
    put_user(&in, "bob", 0);
    /* every truncation is an error, never a read past the end */
    for (size_t cut = 0; cut < in.len; cut++) {
        struct sbuf out = {0};
        char err[160];

        assert_int_equal(avro_to_json(s, in.p, cut, &out, err, sizeof(err)),
                         -EBADMSG);
        sbuf_release(&out);
    }
    sbuf_add(&in, "\x00", 1);
    expect_bad(s, in.p, in.len, "1 bytes left after the record");
    expect_bad(un, "\x04", 1, "union index 2 out of range");
    avro_put_string(&b, "\xc3\x28", 2);
    expect_bad(str, b.p, b.len, "not valid UTF-8");
    b.len = 0;
    avro_put_string(&b, "ab", 2);
    expect_bad(str, b.p, 1, "truncated");
    expect_bad(str, "\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", 11,
               "longer than 64 bits");
    /* a huge count of zero-byte items: bounded by the output cap */
    b.len = 0;
    avro_put_long(&b, INT64_MAX / 2);
    avro_put_long(&b, 0);
    {
        struct sbuf out = {0};
        char err[160];

        out.max = 1 << 20;
        assert_int_equal(
            avro_to_json(nulls, b.p, b.len, &out, err, sizeof(err)), -EMSGSIZE);
        sbuf_release(&out);
        assert_int_equal(
            avro_to_json(nulls, b.p, b.len, NULL, err, sizeof(err)), -EBADMSG);
    }
    sbuf_release(&in);
    sbuf_release(&b);
    avro_schema_free(s);
    avro_schema_free(nulls);
    avro_schema_free(str);
    avro_schema_free(un);
}

static void test_deep_recursion(void **state)
{
    struct avro_schema *s =
        parse("{\"type\":\"record\",\"name\":\"L\",\"fields\":[{\"name\":\"n\","
              "\"type\":[\"null\",\"L\"]}]}");
    unsigned char body[400];
    struct sbuf out = {0};
    char err[160];

    (void)state;
    memset(body, 2, sizeof(body)); /* branch 1 (L) again and again */
    assert_int_equal(
        avro_to_json(s, body, sizeof(body), &out, err, sizeof(err)), -EBADMSG);
    assert_non_null(strstr(err, "deeper"));
    sbuf_release(&out);
    avro_schema_free(s);
}

static void test_schema_errors(void **state)
{
    static const struct {
        const char *json, *why;
    } bad[] = {
        {"{", "not valid JSON"},
        {"\"nosuch\"", "unknown type 'nosuch'"},
        {"{\"type\":\"record\",\"name\":\"R\"}", "without fields"},
        {"{\"type\":\"enum\",\"name\":\"E\"}", "without symbols"},
        {"{\"type\":\"fixed\",\"name\":\"F\"}", "without a size"},
        {"[]", "an empty union"},
        {"{\"type\":\"record\",\"fields\":[]}", "without a 'name'"},
        {"{\"type\":\"array\"}", "array without items"},
        /* a field whose type fails after its name was taken (fuzz_avro) */
        {"{\"type\":\"record\",\"name\":\"R\",\"fields\":[{\"name\":\"a\","
         "\"type\":\"nosuch\"}]}",
         "unknown type 'nosuch'"},
        {"[{\"type\":\"record\",\"name\":\"R\",\"fields\":[]},"
         "{\"type\":\"record\",\"name\":\"R\",\"fields\":[]}]",
         "defined twice"},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct avro_schema *s = NULL;
        char err[160] = "";

        assert_int_equal(avro_schema_parse(bad[i].json, &s, err, sizeof(err)),
                         -EINVAL);
        assert_null(s);
        if (strstr(err, bad[i].why) == NULL) {
            print_error("%s: '%s'\n", bad[i].json, err);
            fail();
        }
    }
}

static int collect(void *arg, const char *json, size_t len)
{
    struct sbuf *b = arg;

    sbuf_add(b, json, len);
    sbuf_add(b, "\n", 1);
    return 0;
}

static void test_ocf_round_trip(void **state)
{
    struct sbuf f = {0}, recs = {0}, rows = {0};
    unsigned char sync[16] = "0123456789abcdef";
    char err[160];

    (void)state;
    put_user(&recs, "kid", 0);
    put_user(&recs, "kid", 0);
    avro_ocf_header(&f, USER_V1, sync);
    avro_ocf_block(&f, 2, recs.p, recs.len, sync);
    assert_int_equal(
        avro_ocf_read(f.p, f.len, 1 << 20, collect, &rows, err, sizeof(err)),
        0);
    {
        char want[1024];

        snprintf(want, sizeof(want), "%s\n%s\n", USER_JSON_KID, USER_JSON_KID);
        assert_string_equal(rows.p, want);
    }
    /* a wrong sync marker, a short file, no magic */
    f.p[f.len - 1] ^= 1;
    assert_int_equal(
        avro_ocf_read(f.p, f.len, 1 << 20, collect, &rows, err, sizeof(err)),
        -EBADMSG);
    assert_non_null(strstr(err, "sync marker"));
    assert_int_equal(
        avro_ocf_read(f.p, 3, 1 << 20, collect, &rows, err, sizeof(err)),
        -EBADMSG);
    for (size_t cut = 4; cut < f.len - 1; cut += 7) {
        avro_ocf_read(f.p, cut, 1 << 20, collect, &rows, err, sizeof(err));
    }
    sbuf_release(&f);
    sbuf_release(&recs);
    sbuf_release(&rows);
}

/* ---- srbody */

static struct registry_entry entry_v1, entry_json, entry_gone;

static void entries_setup(void)
{
    char err[160];

    memset(&entry_v1, 0, sizeof(entry_v1));
    entry_v1.id = 7;
    entry_v1.state = REGISTRY_OK;
    entry_v1.text = (char *)USER_V1;
    assert_int_equal(
        avro_schema_parse(USER_V1, &entry_v1.avro, err, sizeof(err)), 0);
    memset(&entry_json, 0, sizeof(entry_json));
    entry_json.id = 8;
    entry_json.state = REGISTRY_OK;
    entry_json.json_schema = 1;
    entry_json.text = (char *)"{\"type\":\"object\"}";
    memset(&entry_gone, 0, sizeof(entry_gone));
    entry_gone.id = 9;
    entry_gone.state = REGISTRY_UNKNOWN;
    snprintf(entry_gone.reason, sizeof(entry_gone.reason),
             "unknown schema id 9 (the registry answered 404)");
}

static void framed(struct sbuf *b, int32_t id, const void *body, size_t n)
{
    unsigned char h[5] = {0, (unsigned char)(id >> 24),
                          (unsigned char)(id >> 16), (unsigned char)(id >> 8),
                          (unsigned char)id};

    b->len = 0;
    sbuf_add(b, h, 5);
    sbuf_add(b, body, n);
}

static void test_srbody_json(void **state)
{
    struct config_route r;
    struct sbuf user = {0}, v[5] = {{0}};
    struct journal_event ev[5];
    struct srbody_schema sch[3] = {
        {7, &entry_v1}, {8, &entry_json}, {9, &entry_gone}};
    struct forwarder_bad *bad = NULL;
    size_t nbad = 0, len = 0, split = 0;
    char *body = NULL;
    int32_t *ids;
    size_t nids;

    (void)state;
    entries_setup();
    memset(&r, 0, sizeof(r));
    r.name = "r";
    r.format = "json";
    r.value_converter = "avro";
    r.meta.offset = "off";
    put_user(&user, "kid", 0);
    framed(&v[0], 7, user.p, user.len);
    sbuf_add(&v[1], "{\"plain\":1}", 11);   /* no magic byte */
    framed(&v[2], 9, user.p, user.len);     /* 404 id */
    framed(&v[3], 7, user.p, user.len - 1); /* does not decode */
    framed(&v[4], 7, user.p, user.len);
    memset(ev, 0, sizeof(ev));
    for (int i = 0; i < 5; i++) {
        ev[i].topic = "t";
        ev[i].offset = 100 + i;
        ev[i].value = v[i].p;
        ev[i].value_len = v[i].len;
    }
    assert_int_equal(srbody_ids(&r, ev, 5, &ids, &nids), 0);
    assert_int_equal(nids, 2); /* 7 and 9, once each */
    free(ids);
    assert_int_equal(
        srbody_build(&r, "b1", ev, 5, sch, 3, &body, &len, &bad, &nbad, &split),
        0);
    assert_int_equal(split, 0);
    assert_int_equal(nbad, 3);
    assert_int_equal(bad[0].index, 1);
    assert_non_null(strstr(bad[0].reason, "no schema registry framing"));
    assert_int_equal(bad[1].index, 2);
    assert_non_null(strstr(bad[1].reason, "unknown schema id 9"));
    assert_int_equal(bad[2].index, 3);
    assert_non_null(strstr(bad[2].reason, "does not decode with schema id 7"));
    {
        char want[2048];

        snprintf(want, sizeof(want), "{\"off\":100,%s\n{\"off\":104,%s\n",
                 USER_JSON_KID + 1, USER_JSON_KID + 1);
        assert_string_equal(body, want);
    }
    free(body);
    free(bad);
    /* a JSON Schema id on an Avro route is a reason too */
    framed(&v[0], 8, "{}", 2);
    ev[0].value = v[0].p;
    ev[0].value_len = v[0].len;
    assert_int_equal(
        srbody_build(&r, "b1", ev, 1, sch, 3, &body, &len, &bad, &nbad, &split),
        0);
    assert_int_equal(nbad, 1);
    assert_non_null(strstr(bad[0].reason, "JSON Schema"));
    free(body);
    free(bad);
    /* JSON Schema route: the document after the header */
    r.value_converter = "json_schema";
    framed(&v[0], 8, "{\"a\":[1]}", 9);
    ev[0].value = v[0].p;
    ev[0].value_len = v[0].len;
    assert_int_equal(
        srbody_build(&r, "b1", ev, 1, sch, 3, &body, &len, &bad, &nbad, &split),
        0);
    assert_int_equal(nbad, 0);
    assert_string_equal(body, "{\"off\":100,\"a\":[1]}\n");
    free(body);
    free(bad);
    for (int i = 0; i < 5; i++) {
        sbuf_release(&v[i]);
    }
    sbuf_release(&user);
    avro_schema_free(entry_v1.avro);
}

static void test_srbody_avro(void **state)
{
    struct config_route r;
    struct sbuf user = {0}, v[3] = {{0}}, rows = {0};
    struct journal_event ev[3];
    struct srbody_schema sch[2] = {{7, &entry_v1}, {9, &entry_gone}};
    struct forwarder_bad *bad = NULL;
    size_t nbad = 0, len = 0, split = 0;
    char *body = NULL;
    char err[160];

    (void)state;
    entries_setup();
    memset(&r, 0, sizeof(r));
    r.name = "r";
    r.format = "avro";
    r.value_converter = "avro";
    r.meta.partition = "p";
    r.meta.key = "k";
    r.meta.batch_id = "bid";
    put_user(&user, "kid", 0);
    framed(&v[0], 7, user.p, user.len);
    framed(&v[1], 7, user.p, 3); /* does not decode */
    framed(&v[2], 7, user.p, user.len);
    memset(ev, 0, sizeof(ev));
    for (int i = 0; i < 3; i++) {
        ev[i].topic = "t";
        ev[i].partition = 3;
        ev[i].value = v[i].p;
        ev[i].value_len = v[i].len;
    }
    ev[2].key = "key-2";
    ev[2].key_len = 5;
    assert_int_equal(
        srbody_build(&r, "b7", ev, 3, sch, 2, &body, &len, &bad, &nbad, &split),
        0);
    assert_int_equal(split, 0);
    assert_int_equal(nbad, 1);
    assert_int_equal(bad[0].index, 1);
    /* an OCF with the metadata fields after the record's own */
    assert_int_equal(
        avro_ocf_read(body, len, 1 << 20, collect, &rows, err, sizeof(err)), 0);
    {
        char want[4096], kid[1024];

        snprintf(kid, sizeof(kid), "%.*s", (int)strlen(USER_JSON_KID) - 1,
                 USER_JSON_KID);
        snprintf(want, sizeof(want),
                 "%s,\"p\":3,\"k\":null,\"bid\":\"b7\"}\n"
                 "%s,\"p\":3,\"k\":\"key-2\",\"bid\":\"b7\"}\n",
                 kid, kid);
        assert_string_equal(rows.p, want);
    }
    free(body);
    free(bad);
    /* records of two schema ids: split where the id changes */
    framed(&v[1], 9, user.p, user.len);
    ev[1].value = v[1].p;
    ev[1].value_len = v[1].len;
    assert_int_equal(
        srbody_build(&r, "b7", ev, 3, sch, 2, &body, &len, &bad, &nbad, &split),
        0);
    assert_int_equal(split, 1);
    assert_null(body);
    /* a metadata field the schema already has */
    r.meta.partition = "age";
    assert_int_equal(
        srbody_build(&r, "b7", ev, 1, sch, 2, &body, &len, &bad, &nbad, &split),
        0);
    assert_int_equal(nbad, 1);
    assert_non_null(strstr(bad[0].reason, "already has a field 'age'"));
    free(body);
    free(bad);
    for (int i = 0; i < 3; i++) {
        sbuf_release(&v[i]);
    }
    sbuf_release(&user);
    sbuf_release(&rows);
    avro_schema_free(entry_v1.avro);
}

/* key_converter avro with meta.key: a string key as is, a record key as
 * its JSON text, an undecodable key dead-letters its record */
static void test_srbody_keys(void **state)
{
    struct registry_entry kstr, krec;
    struct config_route r;
    struct sbuf user = {0}, v = {0}, k[3] = {{0}}, kb = {0};
    struct journal_event ev[3];
    struct srbody_schema sch[3];
    struct forwarder_bad *bad = NULL;
    size_t nbad = 0, len = 0, split = 0;
    char *body = NULL;
    char err[160];

    (void)state;
    entries_setup();
    memset(&kstr, 0, sizeof(kstr));
    kstr.id = 20;
    kstr.state = REGISTRY_OK;
    kstr.text = (char *)"\"string\"";
    assert_int_equal(avro_schema_parse(kstr.text, &kstr.avro, err, sizeof(err)),
                     0);
    memset(&krec, 0, sizeof(krec));
    krec.id = 21;
    krec.state = REGISTRY_OK;
    krec.text = (char *)"{\"type\":\"record\",\"name\":\"K\",\"fields\":"
                        "[{\"name\":\"id\",\"type\":\"int\"}]}";
    assert_int_equal(avro_schema_parse(krec.text, &krec.avro, err, sizeof(err)),
                     0);
    sch[0] = (struct srbody_schema){7, &entry_v1};
    sch[1] = (struct srbody_schema){20, &kstr};
    sch[2] = (struct srbody_schema){21, &krec};
    memset(&r, 0, sizeof(r));
    r.name = "r";
    r.format = "json";
    r.value_converter = "avro";
    r.key_converter = "avro";
    r.meta.key = "k";
    put_user(&user, "kid", 0);
    framed(&v, 7, user.p, user.len);
    avro_put_string(&kb, "p-1", 3);
    framed(&k[0], 20, kb.p, kb.len);
    kb.len = 0;
    avro_put_long(&kb, 5);
    framed(&k[1], 21, kb.p, kb.len);
    framed(&k[2], 21, "\x80", 1); /* a varint cut short */
    memset(ev, 0, sizeof(ev));
    for (int i = 0; i < 3; i++) {
        ev[i].topic = "t";
        ev[i].value = v.p;
        ev[i].value_len = v.len;
        ev[i].key = k[i].p;
        ev[i].key_len = k[i].len;
    }
    assert_int_equal(
        srbody_build(&r, "b", ev, 3, sch, 3, &body, &len, &bad, &nbad, &split),
        0);
    assert_int_equal(nbad, 1);
    assert_int_equal(bad[0].index, 2);
    assert_non_null(strstr(bad[0].reason, "key: does not decode"));
    {
        char want[2048];

        snprintf(want, sizeof(want),
                 "{\"k\":\"p-1\",%s\n{\"k\":"
                 "\"{\\\"id\\\":5}\",%s\n",
                 USER_JSON_KID + 1, USER_JSON_KID + 1);
        assert_string_equal(body, want);
    }
    free(body);
    free(bad);
    for (int i = 0; i < 3; i++) {
        sbuf_release(&k[i]);
    }
    sbuf_release(&kb);
    sbuf_release(&v);
    sbuf_release(&user);
    avro_schema_free(kstr.avro);
    avro_schema_free(krec.avro);
    avro_schema_free(entry_v1.avro);
}

static void test_frame(void **state)
{
    int32_t id = 0;

    (void)state;
    assert_int_equal(registry_frame("\x00\x00\x01\x00\x02", 5, &id), 0);
    assert_int_equal(id, 65538);
    assert_int_equal(registry_frame("\x01\x00\x01\x00\x02", 5, &id), -EBADMSG);
    assert_int_equal(registry_frame("\x00\x00\x01\x00", 4, &id), -EBADMSG);
    assert_int_equal(registry_frame(NULL, 0, &id), -EBADMSG);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_decode_all_types),
        cmocka_unit_test(test_malformed_bodies),
        cmocka_unit_test(test_deep_recursion),
        cmocka_unit_test(test_schema_errors),
        cmocka_unit_test(test_ocf_round_trip),
        cmocka_unit_test(test_srbody_json),
        cmocka_unit_test(test_srbody_avro),
        cmocka_unit_test(test_srbody_keys),
        cmocka_unit_test(test_frame),
    };
    int rc;

    log_setup(LOG_WARN, LOG_TEXT);
    rc = cmocka_run_group_tests(tests, NULL, NULL);
    log_release();
    return rc;
}
