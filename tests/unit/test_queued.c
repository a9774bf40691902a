/*
 * test_queued.c - gateway/queued.c: the resources and status parsers, the
 * ingestion message, and whole attempts against a scripted storage + DM
 * endpoint (mini_http.h): a 403 from storage fetches the resources again
 * and goes on, a 503 is transient, a Failed report is permanent or
 * transient by its FailureStatus, a Skipped report is delivered, and a
 * stop cancels an attempt that awaits its report.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "gateway/queued.h"
#include "tests/unit/mini_http.h"

#include <cjson/cJSON.h>

struct fx {
    uv_loop_t loop;
    struct mini_http mh;
    struct adx *adx;
    struct queued *q;
    int done;
    struct queued_result r;
    char reason[512];
    char resources[4096];
    char dm[128];
};

static void on_done(void *arg, const struct queued_result *r)
{
    struct fx *f = arg;

    f->r = *r;
    snprintf(f->reason, sizeof(f->reason), "%s", r->reason);
    f->r.reason = f->reason;
    f->done++;
}

static void run_until(struct fx *f, int n, int timeout_ms)
{
    mh_run_until(&f->loop, &f->done, n, timeout_ms);
    assert_int_equal(f->done, n);
}

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    struct adx_options opt = {.timeout_ms = 3000};
    char err[256];
    int p;

    assert_non_null(f);
    assert_int_equal(uv_loop_init(&f->loop), 0);
    mh_start(&f->mh, &f->loop);
    p = f->mh.port;
    assert_int_equal(adx_new(&f->loop, &opt, &f->adx, err, sizeof(err)), 0);
    assert_int_equal(queued_new(&f->loop, f->adx, &f->q), 0);
    mh_url(&f->mh, "", f->dm, sizeof(f->dm));
    snprintf(
        f->resources, sizeof(f->resources),
        "{\"Tables\":[{\"TableName\":\"Table_0\",\"Columns\":["
        "{\"ColumnName\":\"ResourceTypeName\",\"DataType\":\"String\"},"
        "{\"ColumnName\":\"StorageRoot\",\"DataType\":\"String\"}],\"Rows\":["
        "[\"SecuredReadyForAggregationQueue\","
        "\"http://127.0.0.1:%d/acct/ready?sv=1&sig=s\"],"
        "[\"TempStorage\",\"http://127.0.0.1:%d/acct/temp?sv=1&sig=s\"],"
        "[\"FailedIngestionsQueue\",\"http://127.0.0.1:%d/acct/failed?s\"],"
        "[\"IngestionsStatusTable\","
        "\"http://127.0.0.1:%d/acct/status?sv=1&sig=s\"]]}]}",
        p, p, p, p);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;

    queued_free(f->q);
    adx_free(f->adx);
    mh_stop(&f->mh);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&f->loop), 0);
    mh_release(&f->mh);
    free(f);
    return 0;
}

static const char ident[] =
    "{\"Tables\":[{\"TableName\":\"Table_0\",\"Columns\":[{\"ColumnName\":"
    "\"AuthorizationContext\",\"DataType\":\"String\"}],\"Rows\":[["
    "\"ctx-secret\"]]}]}";

static void start(struct fx *f, const char *batch)
{
    static const char body[] = "gzip bytes";
    struct queued_ingest in;
    struct queued_op *op = NULL;
    char err[256];

    memset(&in, 0, sizeof(in));
    in.dm_url = f->dm;
    in.token = "tok";
    in.database = "leaderboard";
    in.table = "GamePlay";
    in.format = "json";
    in.mapping = "m1";
    in.batch_id = batch;
    in.attempt = 1;
    in.body = body;
    in.body_len = sizeof(body) - 1;
    in.raw_size = 100;
    assert_int_equal(
        queued_ingest(f->q, &in, on_done, f, &op, err, sizeof(err)), 0);
    assert_non_null(op);
}

/* base64-decodes the MessageText of a recorded queue POST and parses it */
static cJSON *message_of(const struct mh_request *r)
{
    static const char tab[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const char *s = strstr(r->body, "<MessageText>");
    const char *e = strstr(r->body, "</MessageText>");
    char *out;
    size_t o = 0;
    uint32_t acc = 0;
    int bits = 0;
    cJSON *j;

    assert_non_null(s);
    assert_non_null(e);
    s += strlen("<MessageText>");
    out = calloc(1, (size_t)(e - s) + 1);
    assert_non_null(out);
    for (; s < e && *s != '='; s++) {
        const char *p = strchr(tab, *s);

        assert_non_null(p);
        acc = (acc << 6) | (uint32_t)(p - tab);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (char)((acc >> bits) & 0xff);
        }
    }
    j = cJSON_Parse(out);
    free(out);
    assert_non_null(j);
    return j;
}

static void test_parse_resources(void **state)
{
    struct fx *f = *state;
    struct queued_resources r;
    static const char none[] =
        "{\"Tables\":[{\"TableName\":\"Table_0\",\"Columns\":["
        "{\"ColumnName\":\"ResourceTypeName\"},{\"ColumnName\":"
        "\"StorageRoot\"}],\"Rows\":[]}]}";

    assert_int_equal(
        queued_parse_resources(f->resources, strlen(f->resources), &r), 0);
    assert_int_equal(r.ntemp, 1);
    assert_int_equal(r.nqueues, 1);
    assert_non_null(strstr(r.temp[0], "/acct/temp?"));
    assert_non_null(strstr(r.status_table, "/acct/status?"));
    queued_resources_release(&r);
    assert_int_equal(queued_parse_resources(none, strlen(none), &r), -ENOENT);
    assert_int_equal(queued_parse_resources("[1]", 3, &r), -EBADMSG);
}

static void test_parse_status(void **state)
{
    struct queued_result r;
    char why[256];
    static const char *const pending = "{\"Status\":\"Pending\"}";
    static const char *const ok = "{\"Status\":\"Succeeded\"}";
    static const char *const skip = "{\"Status\":\"Skipped\",\"ErrorCode\":"
                                    "\"Skipped_IngestByTagAlreadyExists\"}";
    static const char *const perm =
        "{\"Status\":\"Failed\",\"ErrorCode\":\"BadRequest_InvalidBlob\","
        "\"FailureStatus\":\"Permanent\",\"Details\":\"bad\"}";
    static const char *const trans =
        "{\"Status\":\"Failed\",\"ErrorCode\":\"X\",\"FailureStatus\":"
        "\"Transient\"}";
    static const char *const cfg =
        "{\"Status\":\"Failed\",\"ErrorCode\":"
        "\"BadRequest_MappingReferenceWasNotFound\",\"FailureStatus\":"
        "\"Permanent\"}";

    (void)state;
    assert_int_equal(
        queued_parse_status(pending, strlen(pending), &r, why, sizeof(why)), 0);
    assert_int_equal(queued_parse_status(ok, strlen(ok), &r, why, sizeof(why)),
                     1);
    assert_int_equal(r.outcome, ADX_OK);
    assert_int_equal(r.skipped, 0);
    assert_int_equal(
        queued_parse_status(skip, strlen(skip), &r, why, sizeof(why)), 1);
    assert_int_equal(r.outcome, ADX_OK);
    assert_int_equal(r.skipped, 1);
    assert_int_equal(
        queued_parse_status(perm, strlen(perm), &r, why, sizeof(why)), 1);
    assert_int_equal(r.outcome, ADX_PERMANENT);
    assert_non_null(strstr(why, "BadRequest_InvalidBlob"));
    assert_int_equal(
        queued_parse_status(trans, strlen(trans), &r, why, sizeof(why)), 1);
    assert_int_equal(r.outcome, ADX_TRANSIENT);
    assert_int_equal(
        queued_parse_status(cfg, strlen(cfg), &r, why, sizeof(why)), 1);
    assert_int_equal(r.outcome, ADX_CONFIG);
    assert_int_equal(queued_parse_status("x", 1, &r, why, sizeof(why)),
                     -EBADMSG);
}

static void test_message_json(void **state)
{
    struct queued_ingest in;
    char *js;
    cJSON *o, *ap;

    (void)state;
    memset(&in, 0, sizeof(in));
    in.database = "db";
    in.table = "T";
    in.format = "multijson";
    in.mapping = "map";
    in.batch_id = "u-1";
    in.raw_size = 1234;
    js = queued_message_json(&in, "id-1", "http://b/c/x?sig", "http://t?s",
                             "ctx", 0);
    assert_non_null(js);
    o = cJSON_Parse(js);
    free(js);
    assert_non_null(o);
    assert_string_equal(cJSON_GetObjectItem(o, "Id")->valuestring, "id-1");
    assert_string_equal(cJSON_GetObjectItem(o, "BlobPath")->valuestring,
                        "http://b/c/x?sig");
    assert_int_equal(cJSON_GetObjectItem(o, "RawDataSize")->valueint, 1234);
    assert_int_equal(cJSON_GetObjectItem(o, "ReportLevel")->valueint, 2);
    assert_int_equal(cJSON_GetObjectItem(o, "ReportMethod")->valueint, 1);
    assert_string_equal(
        cJSON_GetObjectItem(cJSON_GetObjectItem(o, "IngestionStatusInTable"),
                            "RowKey")
            ->valuestring,
        "id-1");
    ap = cJSON_GetObjectItem(o, "AdditionalProperties");
    assert_string_equal(cJSON_GetObjectItem(ap, "format")->valuestring,
                        "multijson");
    assert_string_equal(
        cJSON_GetObjectItem(ap, "ingestionMappingReference")->valuestring,
        "map");
    assert_string_equal(
        cJSON_GetObjectItem(ap, "ingestionMappingType")->valuestring, "Json");
    assert_string_equal(cJSON_GetObjectItem(ap, "tags")->valuestring,
                        "[\"ingest-by:u-1\"]");
    assert_string_equal(
        cJSON_GetObjectItem(ap, "ingestIfNotExists")->valuestring, "[\"u-1\"]");
    assert_string_equal(
        cJSON_GetObjectItem(ap, "authorizationContext")->valuestring, "ctx");
    cJSON_Delete(o);
}

/* Issue 15 part 3: an expired SAS (403) fetches the resources again */
static void test_403_refreshes_resources(void **state)
{
    struct fx *f = *state;
    struct mini_http *mh = &f->mh;
    cJSON *msg, *ap;

    mh_push(mh, MH_RESPOND, 200, NULL, f->resources);
    mh_push(mh, MH_RESPOND, 200, NULL, ident);
    mh_push(mh, MH_RESPOND, 403, NULL, "AuthenticationFailed");
    mh_push(mh, MH_RESPOND, 200, NULL, f->resources);
    mh_push(mh, MH_RESPOND, 200, NULL, ident);
    mh_push(mh, MH_RESPOND, 201, NULL, "");
    mh_push(mh, MH_RESPOND, 204, NULL, "");
    mh_push(mh, MH_RESPOND, 201, NULL, "");
    mh_push(mh, MH_RESPOND, 200, NULL, "{\"Status\":\"Pending\"}");
    mh_push(mh, MH_RESPOND, 200, NULL, "{\"Status\":\"Succeeded\"}");
    start(f, "b-1");
    run_until(f, 1, 10000);
    assert_int_equal(f->r.cancelled, 0);
    assert_int_equal(f->r.outcome, ADX_OK);
    assert_int_equal(mh->nreqs, 10);
    assert_string_equal(mh->reqs[0].target, "/v1/rest/mgmt");
    assert_non_null(strstr(mh->reqs[0].body, ".get ingestion resources"));
    assert_non_null(strstr(mh->reqs[1].body, ".get kusto identity token"));
    assert_string_equal(mh->reqs[2].method, "PUT");
    assert_non_null(strstr(mh->reqs[2].target,
                           "/acct/temp/kadx__leaderboard__GamePlay__b-1__1."
                           "json.gz?sv=1&sig=s"));
    assert_non_null(strstr(mh->reqs[3].body, ".get ingestion resources"));
    assert_string_equal(mh->reqs[5].method, "PUT");
    assert_string_equal(mh->reqs[5].body, "gzip bytes");
    {
        char v[64];

        assert_non_null(
            mh_header(&mh->reqs[5], "x-ms-blob-type", v, sizeof(v)));
        assert_string_equal(v, "BlockBlob");
        /* storage requests carry their SAS, never the bearer token */
        assert_null(mh_header(&mh->reqs[5], "Authorization", v, sizeof(v)));
    }
    assert_string_equal(mh->reqs[6].method, "PUT"); /* Pending row */
    assert_non_null(strstr(mh->reqs[6].target, "/acct/status(PartitionKey="));
    assert_non_null(strstr(mh->reqs[6].body, "\"Pending\""));
    assert_string_equal(mh->reqs[7].method, "POST");
    assert_non_null(strstr(mh->reqs[7].target, "/acct/ready/messages?"));
    msg = message_of(&mh->reqs[7]);
    ap = cJSON_GetObjectItem(msg, "AdditionalProperties");
    assert_string_equal(cJSON_GetObjectItem(ap, "tags")->valuestring,
                        "[\"ingest-by:b-1\"]");
    assert_string_equal(
        cJSON_GetObjectItem(ap, "authorizationContext")->valuestring,
        "ctx-secret");
    cJSON_Delete(msg);
    assert_string_equal(mh->reqs[8].method, "GET");
    assert_string_equal(mh->reqs[8].target, mh->reqs[6].target);
}

/* 503 from storage is transient; the resources stay cached; a Failed
 * report is handed over as permanent; Skipped counts as delivered */
static void test_503_and_reports(void **state)
{
    struct fx *f = *state;
    struct mini_http *mh = &f->mh;

    mh_push(mh, MH_RESPOND, 200, NULL, f->resources);
    mh_push(mh, MH_RESPOND, 200, NULL, ident);
    mh_push(mh, MH_RESPOND, 503, NULL, "ServerBusy");
    start(f, "b-2");
    run_until(f, 1, 10000);
    assert_int_equal(f->r.outcome, ADX_TRANSIENT);
    assert_non_null(strstr(f->reason, "HTTP 503"));

    mh_push(mh, MH_RESPOND, 201, NULL, "");
    mh_push(mh, MH_RESPOND, 204, NULL, "");
    mh_push(mh, MH_RESPOND, 201, NULL, "");
    mh_push(mh, MH_RESPOND, 200, NULL,
            "{\"Status\":\"Failed\",\"ErrorCode\":\"BadRequest_InvalidBlob\","
            "\"FailureStatus\":\"Permanent\"}");
    start(f, "b-2");
    run_until(f, 2, 10000);
    assert_int_equal(f->r.outcome, ADX_PERMANENT);
    assert_int_equal(mh->nreqs, 7); /* no second fetch */

    mh_push(mh, MH_RESPOND, 201, NULL, "");
    mh_push(mh, MH_RESPOND, 204, NULL, "");
    mh_push(mh, MH_RESPOND, 201, NULL, "");
    mh_push(mh, MH_RESPOND, 404, NULL, ""); /* row not there yet */
    mh_push(mh, MH_RESPOND, 200, NULL,
            "{\"Status\":\"Skipped\",\"ErrorCode\":"
            "\"Skipped_IngestByTagAlreadyExists\"}");
    start(f, "b-2");
    run_until(f, 3, 10000);
    assert_int_equal(f->r.outcome, ADX_OK);
    assert_int_equal(f->r.skipped, 1);
}

/* a DM endpoint without storage: a config error naming the command */
static void test_no_resources_is_config(void **state)
{
    struct fx *f = *state;

    mh_push(&f->mh, MH_RESPOND, 200, NULL,
            "{\"Tables\":[{\"TableName\":\"Table_0\",\"Columns\":["
            "{\"ColumnName\":\"ResourceTypeName\"},{\"ColumnName\":"
            "\"StorageRoot\"}],\"Rows\":[]}]}");
    start(f, "b-3");
    run_until(f, 1, 10000);
    assert_int_equal(f->r.outcome, ADX_CONFIG);
    assert_non_null(strstr(f->reason, ".get ingestion resources"));
}

/* stop: an attempt awaiting its report ends cancelled, at once */
static void test_stop_cancels_awaiting(void **state)
{
    struct fx *f = *state;
    struct mini_http *mh = &f->mh;

    mh_push(mh, MH_RESPOND, 200, NULL, f->resources);
    mh_push(mh, MH_RESPOND, 200, NULL, ident);
    mh_push(mh, MH_RESPOND, 201, NULL, "");
    mh_push(mh, MH_RESPOND, 204, NULL, "");
    mh_push(mh, MH_RESPOND, 201, NULL, "");
    mh->fallback.body = "{\"Status\":\"Pending\"}";
    start(f, "b-4");
    while (mh->nreqs < 6) {
        uv_run(&f->loop, UV_RUN_ONCE);
    }
    assert_int_equal(f->done, 0);
    assert_int_equal(queued_pending(f->q), 1);
    queued_stop(f->q);
    run_until(f, 1, 5000);
    assert_int_equal(f->r.cancelled, 1);
    assert_int_equal(queued_pending(f->q), 0);
}

/* A body over the block size goes as Put Block x n + Put Block List (here
 * blocks of 4 bytes: "gzip bytes" is 3 blocks); a 503 on a block is
 * transient, and the next attempt uploads every block again. */
static void test_block_upload(void **state)
{
    struct fx *f = *state;
    struct mini_http *mh = &f->mh;
    char id[QUEUED_BLOCK_ID_MAX];
    char *xml;
    char v[64];

    queued_block_id(0, id);
    assert_string_equal(id, "a2FkeDAwMDAwMDAw"); /* base64("kadx00000000") */
    queued_block_id(12345, id);
    assert_int_equal(strlen(id), 16);
    xml = queued_block_list_xml(2);
    assert_non_null(xml);
    assert_string_equal(xml, "<?xml version=\"1.0\" encoding=\"utf-8\"?>"
                             "<BlockList><Latest>a2FkeDAwMDAwMDAw</Latest>"
                             "<Latest>a2FkeDAwMDAwMDAx</Latest></BlockList>");
    free(xml);

    queued_set_block_bytes(f->q, 4);
    mh_push(mh, MH_RESPOND, 200, NULL, f->resources);
    mh_push(mh, MH_RESPOND, 200, NULL, ident);
    mh_push(mh, MH_RESPOND, 201, NULL, "");
    mh_push(mh, MH_RESPOND, 503, NULL, "ServerBusy");
    start(f, "b-5");
    run_until(f, 1, 10000);
    assert_int_equal(f->r.outcome, ADX_TRANSIENT);
    assert_non_null(strstr(f->r.reason, "put block"));
    assert_int_equal(mh->nreqs, 4);

    f->done = 0;
    mh_push(mh, MH_RESPOND, 201, NULL, "");
    mh_push(mh, MH_RESPOND, 201, NULL, "");
    mh_push(mh, MH_RESPOND, 201, NULL, "");
    mh_push(mh, MH_RESPOND, 201, NULL, ""); /* the block list */
    mh_push(mh, MH_RESPOND, 204, NULL, "");
    mh_push(mh, MH_RESPOND, 201, NULL, "");
    mh_push(mh, MH_RESPOND, 200, NULL, "{\"Status\":\"Succeeded\"}");
    start(f, "b-5");
    run_until(f, 1, 10000);
    assert_int_equal(f->r.outcome, ADX_OK);
    assert_int_equal(mh->nreqs, 11);
    {
        static const char *const parts[] = {"gzip", " byt", "es"};
        static const char *const ids[] = {
            "a2FkeDAwMDAwMDAw", "a2FkeDAwMDAwMDAx", "a2FkeDAwMDAwMDAy"};

        for (int i = 0; i < 3; i++) {
            const struct mh_request *r = &mh->reqs[4 + i];
            char want[160];

            assert_string_equal(r->method, "PUT");
            snprintf(want, sizeof(want),
                     "/acct/temp/kadx__leaderboard__GamePlay__b-5__1.json.gz"
                     "?sv=1&sig=s&comp=block&blockid=%s",
                     ids[i]);
            assert_string_equal(r->target, want);
            assert_string_equal(r->body, parts[i]);
            /* a block is not a blob: no blob type */
            assert_null(mh_header(r, "x-ms-blob-type", v, sizeof(v)));
        }
    }
    assert_string_equal(mh->reqs[7].method, "PUT");
    assert_non_null(strstr(mh->reqs[7].target, "?sv=1&sig=s&comp=blocklist"));
    assert_string_equal(mh->reqs[7].body,
                        "<?xml version=\"1.0\" encoding=\"utf-8\"?><BlockList>"
                        "<Latest>a2FkeDAwMDAwMDAw</Latest>"
                        "<Latest>a2FkeDAwMDAwMDAx</Latest>"
                        "<Latest>a2FkeDAwMDAwMDAy</Latest></BlockList>");
    assert_string_equal(mh->reqs[8].method, "PUT"); /* Pending row */
    assert_non_null(strstr(mh->reqs[8].target, "/acct/status(PartitionKey="));
    assert_string_equal(mh->reqs[9].method, "POST");
    {
        cJSON *msg = message_of(&mh->reqs[9]);

        assert_non_null(
            strstr(cJSON_GetObjectItem(msg, "BlobPath")->valuestring,
                   "kadx__leaderboard__GamePlay__b-5__1.json.gz?sv=1&sig=s"));
        assert_null(
            strstr(cJSON_GetObjectItem(msg, "BlobPath")->valuestring, "comp="));
        cJSON_Delete(msg);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_parse_resources, setup, teardown),
        cmocka_unit_test(test_parse_status),
        cmocka_unit_test(test_message_json),
        cmocka_unit_test_setup_teardown(test_403_refreshes_resources, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_503_and_reports, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_resources_is_config, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_stop_cancels_awaiting, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_block_upload, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
