/*
 * test_auth.c - gateway/auth.c against a scripted token endpoint on
 * loopback (mini_http.h): client credentials with the scope from
 * /v1/rest/auth/metadata, the 404 fallback to the cluster URL, managed
 * identity (IMDS query and header), workload identity (assertion from the
 * token file), retries with backoff, refresh before expiry, invalidation
 * after a 401, static tokens, and that tokens and secrets are masked in
 * logs.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "gateway/auth.h"
#include "gateway/log.h"
#include "tests/unit/mini_http.h"

#include <errno.h>
#include <unistd.h>

struct fx {
    uv_loop_t loop;
    struct mini_http mh;
    struct adx *adx;
    struct auth *auth;
    struct config_auth ca;
    char cluster[128];
    char authority[128];
    char imds[160];
    int tokens; /* listener calls */
};

static void on_new_token(void *arg)
{
    struct fx *f = arg;

    f->tokens++;
}

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    char err[256];

    assert_non_null(f);
    assert_int_equal(uv_loop_init(&f->loop), 0);
    mh_start(&f->mh, &f->loop);
    assert_int_equal(adx_new(&f->loop, NULL, &f->adx, err, sizeof(err)), 0);
    mh_url(&f->mh, "", f->cluster, sizeof(f->cluster));
    mh_url(&f->mh, "", f->authority, sizeof(f->authority));
    mh_url(&f->mh, "/metadata/identity/oauth2/token", f->imds, sizeof(f->imds));
    f->ca.tenant_id = "tenant-1";
    f->ca.client_id = "app-1";
    f->ca.client_secret = "s3cret-value";
    f->ca.authority_host = f->authority;
    f->ca.imds_url = f->imds;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;

    auth_free(f->auth);
    adx_free(f->adx);
    mh_stop(&f->mh);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&f->loop), 0);
    mh_release(&f->mh);
    free(f);
    log_release();
    return 0;
}

static void start(struct fx *f, enum config_auth_method m)
{
    struct auth_options o;
    char err[256];

    f->ca.method = m;
    memset(&o, 0, sizeof(o));
    o.cfg = &f->ca;
    o.cluster = f->cluster;
    o.retry_initial_ms = 40;
    o.retry_max_ms = 200;
    assert_int_equal(auth_new(&f->loop, f->adx, &o, &f->auth, err, sizeof(err)),
                     0);
    auth_set_listener(f->auth, on_new_token, f);
    assert_int_equal(auth_start(f->auth), 0);
}

static void run_until_tokens(struct fx *f, int n, int timeout_ms)
{
    mh_run_until(&f->loop, &f->tokens, n, timeout_ms);
    assert_int_equal(f->tokens, n);
}

static void test_client_secret_scope_from_metadata(void **state)
{
    struct fx *f = *state;
    char masked[256];

    mh_push(&f->mh, MH_RESPOND, 200, NULL,
            "{\"AzureAD\":{\"LoginEndpoint\":\"x\",\"LoginMfaRequired\":false,"
            "\"KustoServiceResourceId\":\"https://kusto.example.net\"}}");
    mh_push(&f->mh, MH_RESPOND, 200, NULL,
            "{\"token_type\":\"Bearer\",\"expires_in\":3599,"
            "\"access_token\":\"tok-AAAA-1\"}");
    start(f, CONFIG_AUTH_CLIENT_SECRET);
    assert_false(auth_ready(f->auth));
    assert_null(auth_token(f->auth));
    run_until_tokens(f, 1, 5000);
    assert_true(auth_ready(f->auth));
    assert_string_equal(auth_token(f->auth), "tok-AAAA-1");
    assert_true(auth_expires_ms(f->auth) > 0);
    assert_int_equal(f->mh.nreqs, 2);
    assert_string_equal(f->mh.reqs[0].target, "/v1/rest/auth/metadata");
    assert_string_equal(f->mh.reqs[1].method, "POST");
    assert_string_equal(f->mh.reqs[1].target, "/tenant-1/oauth2/v2.0/token");
    assert_string_equal(f->mh.reqs[1].body,
                        "grant_type=client_credentials&client_id=app-1&"
                        "client_secret=s3cret-value&scope=https%3A%2F%2F"
                        "kusto.example.net%2F.default");
    /* the token and the secret never reach a log line */
    log_mask("a tok-AAAA-1 b s3cret-value", masked, sizeof(masked));
    assert_string_equal(masked, "a *** b ***");
    assert_int_equal(auth_fetches(f->auth), 1);
}

static void test_metadata_404_uses_cluster(void **state)
{
    struct fx *f = *state;
    char want[256];
    char *esc;

    mh_push(&f->mh, MH_RESPOND, 404, NULL, "");
    mh_push(&f->mh, MH_RESPOND, 200, NULL,
            "{\"expires_in\":\"3599\",\"access_token\":\"tok-B\"}");
    start(f, CONFIG_AUTH_CLIENT_SECRET);
    run_until_tokens(f, 1, 5000);
    esc = strstr(f->mh.reqs[1].body, "scope=");
    assert_non_null(esc);
    snprintf(want, sizeof(want),
             "scope=http%%3A%%2F%%2F127.0.0.1%%3A%d%%2F."
             "default",
             f->mh.port);
    assert_string_equal(esc, want);
}

static void test_configured_scope_skips_metadata(void **state)
{
    struct fx *f = *state;

    f->ca.scope = "https://help.kusto.windows.net/.default";
    mh_push(&f->mh, MH_RESPOND, 200, NULL,
            "{\"expires_in\":3599,\"access_token\":\"tok-C\"}");
    start(f, CONFIG_AUTH_CLIENT_SECRET);
    run_until_tokens(f, 1, 5000);
    assert_int_equal(f->mh.nreqs, 1);
    assert_non_null(strstr(f->mh.reqs[0].body,
                           "scope=https%3A%2F%2Fhelp.kusto.windows.net%2F."
                           "default"));
}

static void test_retry_with_backoff(void **state)
{
    struct fx *f = *state;

    f->ca.scope = "https://k/.default";
    mh_push(&f->mh, MH_RESPOND, 500, NULL, "{}");
    mh_push(&f->mh, MH_RESPOND, 400, NULL, "{\"error\":\"invalid_client\"}");
    mh_push(&f->mh, MH_RESET, 0, NULL, NULL);
    mh_push(&f->mh, MH_RESPOND, 200, NULL,
            "{\"expires_in\":3599,\"access_token\":\"tok-D\"}");
    start(f, CONFIG_AUTH_CLIENT_SECRET);
    run_until_tokens(f, 1, 5000);
    assert_int_equal(f->mh.nreqs, 4);
    assert_int_equal(auth_failures(f->auth), 3);
    assert_string_equal(auth_last_error(f->auth), "");
    assert_string_equal(auth_token(f->auth), "tok-D");
}

static void test_refresh_before_expiry(void **state)
{
    struct fx *f = *state;

    f->ca.scope = "https://k/.default";
    /* a 2 s token is refreshed a fifth of its life early (~1.6 s) */
    mh_push(&f->mh, MH_RESPOND, 200, NULL,
            "{\"expires_in\":2,\"access_token\":\"tok-E1\"}");
    mh_push(&f->mh, MH_RESPOND, 200, NULL,
            "{\"expires_in\":3599,\"access_token\":\"tok-E2\"}");
    start(f, CONFIG_AUTH_CLIENT_SECRET);
    run_until_tokens(f, 1, 5000);
    assert_string_equal(auth_token(f->auth), "tok-E1");
    run_until_tokens(f, 2, 5000);
    assert_string_equal(auth_token(f->auth), "tok-E2");
}

static void test_invalidate_after_401(void **state)
{
    struct fx *f = *state;

    f->ca.scope = "https://k/.default";
    mh_push(&f->mh, MH_RESPOND, 200, NULL,
            "{\"expires_in\":3599,\"access_token\":\"tok-F1\"}");
    mh_push(&f->mh, MH_RESPOND, 200, NULL,
            "{\"expires_in\":3599,\"access_token\":\"tok-F2\"}");
    start(f, CONFIG_AUTH_CLIENT_SECRET);
    run_until_tokens(f, 1, 5000);
    /* a 401 with an older token does not throw the current one away */
    assert_int_equal(auth_invalidate(f->auth, "tok-OLD"), 0);
    assert_string_equal(auth_token(f->auth), "tok-F1");
    assert_int_equal(auth_invalidate(f->auth, "tok-F1"), 0);
    assert_false(auth_ready(f->auth));
    run_until_tokens(f, 2, 5000);
    assert_string_equal(auth_token(f->auth), "tok-F2");
}

static void test_managed_identity(void **state)
{
    struct fx *f = *state;
    char v[64];

    f->ca.client_id = "mi-client";
    f->ca.scope = "https://kusto.example.net/.default";
    mh_push(&f->mh, MH_RESPOND, 200, NULL,
            "{\"access_token\":\"tok-MI\",\"expires_in\":\"3599\","
            "\"expires_on\":\"1578439805\",\"token_type\":\"Bearer\"}");
    start(f, CONFIG_AUTH_MANAGED_IDENTITY);
    run_until_tokens(f, 1, 5000);
    assert_string_equal(f->mh.reqs[0].method, "GET");
    assert_string_equal(f->mh.reqs[0].target,
                        "/metadata/identity/oauth2/token?api-version="
                        "2018-02-01&resource=https%3A%2F%2Fkusto.example.net&"
                        "client_id=mi-client");
    assert_string_equal(mh_header(&f->mh.reqs[0], "Metadata", v, sizeof(v)),
                        "true");
    assert_string_equal(auth_token(f->auth), "tok-MI");
}

static void test_workload_identity(void **state)
{
    struct fx *f = *state;
    char path[] = "/tmp/kadx-test-wi-XXXXXX";
    int fd = mkstemp(path);

    assert_true(fd >= 0);
    assert_int_equal(write(fd, "eyJfederated.jwt\n", 17), 17);
    close(fd);
    f->ca.token_file = path;
    f->ca.scope = "https://k/.default";
    mh_push(&f->mh, MH_RESPOND, 200, NULL,
            "{\"expires_in\":3599,\"access_token\":\"tok-WI\"}");
    start(f, CONFIG_AUTH_WORKLOAD_IDENTITY);
    run_until_tokens(f, 1, 5000);
    unlink(path);
    assert_string_equal(
        f->mh.reqs[0].body,
        "grant_type=client_credentials&client_id=app-1&client_assertion_type="
        "urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer&"
        "client_assertion=eyJfederated.jwt&scope=https%3A%2F%2Fk%2F.default");
    assert_string_equal(auth_token(f->auth), "tok-WI");
}

/* The token endpoint's reply, as the fuzz target sees it: lifetimes from
 * expires_in (number or string), else expires_on - now, else one hour,
 * clamped to 2 s..1 day; unusable tokens refused. */
static void test_parse_token_reply(void **state)
{
    static const struct {
        const char *body;
        int rc;
        int64_t life;
    } cases[] = {
        {"{\"access_token\":\"abc\",\"expires_in\":3599}", 0, 3599},
        {"{\"access_token\":\"abc\",\"expires_in\":\"86399\"}", 0, 86399},
        {"{\"access_token\":\"abc\",\"expires_on\":\"1000600\"}", 0, 600},
        {"{\"access_token\":\"abc\",\"expires_on\":999999}", 0, 2},
        {"{\"access_token\":\"abc\"}", 0, 3600},
        {"{\"access_token\":\"abc\",\"expires_in\":1e300}", 0, 3600},
        {"{\"access_token\":\"abc\",\"expires_in\":9999999}", 0, 86400},
        {"{\"access_token\":\"abc\",\"expires_in\":\"99999999999999999999\"}",
         0, 3600},
        {"{\"access_token\":\"a b\",\"expires_in\":10}", -EBADMSG, 0},
        {"{\"access_token\":\"\"}", -EBADMSG, 0},
        {"{\"error\":\"invalid_client\"}", -EBADMSG, 0},
        {"<html>502</html>", -EBADMSG, 0},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *tok = NULL;
        int64_t life = -1;
        int rc = auth_parse_token_reply(cases[i].body, strlen(cases[i].body),
                                        1000000, &tok, &life);

        assert_int_equal(rc, cases[i].rc);
        if (rc == 0) {
            assert_string_equal(tok, "abc");
            assert_int_equal(life, cases[i].life);
            free(tok);
        } else {
            assert_null(tok);
        }
    }
}

static void test_static_and_none(void **state)
{
    struct fx *f = *state;
    struct auth_options o;
    char err[256];

    f->ca.token = "static-token-xyz";
    start(f, CONFIG_AUTH_STATIC_TOKEN);
    assert_true(auth_ready(f->auth));
    assert_string_equal(auth_token(f->auth), "static-token-xyz");
    assert_int_equal(auth_invalidate(f->auth, NULL), -EPERM);
    auth_free(f->auth);
    f->auth = NULL;
    start(f, CONFIG_AUTH_NONE);
    assert_true(auth_ready(f->auth));
    assert_null(auth_token(f->auth));
    assert_int_equal(f->mh.nreqs, 0);
    /* a static token method without a token is refused at creation */
    f->ca.method = CONFIG_AUTH_STATIC_TOKEN;
    f->ca.token = NULL;
    memset(&o, 0, sizeof(o));
    o.cfg = &f->ca;
    o.cluster = f->cluster;
    {
        struct auth *a2 = NULL;

        assert_int_equal(auth_new(&f->loop, f->adx, &o, &a2, err, sizeof(err)),
                         -EINVAL);
        assert_null(a2);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_client_secret_scope_from_metadata,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_metadata_404_uses_cluster, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_configured_scope_skips_metadata,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_retry_with_backoff, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_refresh_before_expiry, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_invalidate_after_401, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_managed_identity, setup, teardown),
        cmocka_unit_test_setup_teardown(test_workload_identity, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_static_and_none, setup, teardown),
        cmocka_unit_test(test_parse_token_reply),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
