/*
 * test_api.c - unit tests for admin/api.c: every endpoint over real HTTP on
 * 127.0.0.1, with a real journal in a temporary directory and no Kafka or
 * ADX (intake and forwarder absent: the API must say so, not crash). The
 * admin server runs on its own loop in a second thread; the test talks to
 * it with blocking sockets from the main thread. Covers the bearer token
 * on every POST, paging, JSON errors, 404/405/413/431/408, garbage bytes
 * and a request that stops half way (the server keeps serving).
 */
#include "admin/api.h"
#include "gateway/config.h"
#include "storage/journal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#define TOKEN "test-admin-token-1234"

static const char *config_json =
    "{\"kafka\":{\"bootstrap.servers\":\"127.0.0.1:1\",\"group.id\":\"g\"},"
    "\"adx\":{\"ingest_url\":\"http://127.0.0.1:1\","
    "\"auth\":{\"method\":\"none\"}},"
    "\"routes\":[{\"name\":\"gameplay\",\"topic\":\"gameplay\","
    "\"database\":\"db\",\"table\":\"GamePlay\",\"format\":\"json\"},"
    "{\"name\":\"other\",\"topic\":\"other\",\"database\":\"db\","
    "\"table\":\"Other\",\"format\":\"json\"}],"
    "\"admin\":{\"listen\":\"127.0.0.1:0\",\"token\":\"" TOKEN "\"}}";

struct fixture {
    char dir[64];
    char path[128];
    struct config *cfg;
    uv_loop_t loop;
    uv_async_t stop;
    struct journal *j;
    struct admin *admin;
    pthread_t thread;
    int port;
};

static int64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* 200 events on gameplay[0]; 100 delivered, 3 of the next 50 dead. */
static void fill(struct journal *j)
{
    char values[200][48];
    struct journal_event ev[200];
    struct journal_cut_req req;
    struct journal_batch *b = NULL;
    struct journal_offset dead[3];
    char err[256] = "";

    for (int i = 0; i < 200; i++) {
        snprintf(values[i], sizeof(values[i]), "{\"o\":%d}", i);
        memset(&ev[i], 0, sizeof(ev[i]));
        ev[i].topic = "gameplay";
        ev[i].offset = i;
        ev[i].timestamp_ms = 1700000000000LL + i;
        ev[i].value = values[i];
        ev[i].value_len = strlen(values[i]);
    }
    assert_int_equal(journal_append(j, ev, 200, NULL, err, sizeof(err)), 0);
    memset(&req, 0, sizeof(req));
    req.max_rows = 100;
    req.max_bytes = 1 << 20;
    req.settled_all = 1;
    assert_int_equal(journal_batch_cut(j, &req, &b, err, sizeof(err)), 0);
    assert_int_equal(
        journal_batch_mark_delivered(j, b->id, now_ms(), err, sizeof(err)), 0);
    journal_batch_free(b);
    req.max_rows = 50;
    assert_int_equal(journal_batch_cut(j, &req, &b, err, sizeof(err)), 0);
    for (int i = 0; i < 3; i++) {
        dead[i].topic = "gameplay";
        dead[i].partition = 0;
        dead[i].offset = b->events[i * 10].offset;
    }
    assert_int_equal(journal_batch_mark_dead(j, b->id, dead, 3, "bad record",
                                             now_ms(), err, sizeof(err)),
                     0);
    journal_batch_free(b);
}

static void on_stop(uv_async_t *h)
{
    struct fixture *f = h->data;

    admin_stop(f->admin);
    journal_close(f->j);
    uv_close((uv_handle_t *)&f->stop, NULL);
}

static void *loop_main(void *arg)
{
    struct fixture *f = arg;

    uv_run(&f->loop, UV_RUN_DEFAULT);
    return NULL;
}

static int setup_with(void **state, int token_on_get)
{
    struct fixture *f = calloc(1, sizeof(*f));
    struct journal_options jo;
    struct admin_sources src;
    struct admin_options ao;
    char err[256] = "";

    assert_non_null(f);
    snprintf(f->dir, sizeof(f->dir), "/tmp/kadx-test-api-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->path, sizeof(f->path), "%s/j.db", f->dir);
    assert_int_equal(
        config_load_string(config_json, NULL, &f->cfg, err, sizeof(err)), 0);
    assert_int_equal(uv_loop_init(&f->loop), 0);
    memset(&jo, 0, sizeof(jo));
    jo.path = f->path;
    jo.loop = &f->loop;
    assert_int_equal(journal_open(&jo, &f->j, err, sizeof(err)), 0);
    fill(f->j);
    memset(&src, 0, sizeof(src));
    src.cfg = f->cfg;
    src.journal = f->j;
    memset(&ao, 0, sizeof(ao));
    ao.listen = "127.0.0.1:0";
    ao.token = f->cfg->admin.token;
    ao.token_on_get = token_on_get;
    ao.read_timeout_ms = 300;
    assert_int_equal(
        admin_start(&f->loop, &src, &ao, &f->admin, err, sizeof(err)), 0);
    f->port = admin_port(f->admin);
    assert_true(f->port > 0);
    assert_int_equal(uv_async_init(&f->loop, &f->stop, on_stop), 0);
    f->stop.data = f;
    assert_int_equal(pthread_create(&f->thread, NULL, loop_main, f), 0);
    *state = f;
    return 0;
}

static int setup(void **state)
{
    return setup_with(state, 0);
}

/* admin.token_on_get: every GET but the probes (and the page) needs it */
static int setup_token_on_get(void **state)
{
    return setup_with(state, 1);
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    char cmd[160];

    uv_async_send(&f->stop);
    pthread_join(f->thread, NULL);
    assert_int_equal(uv_loop_close(&f->loop), 0);
    config_free(f->cfg);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
    assert_int_equal(system(cmd), 0);
    free(f);
    return 0;
}

static int connect_to(int port)
{
    struct sockaddr_in sa;
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    assert_true(fd >= 0);
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    return fd;
}

static void send_all(int fd, const char *data, size_t len)
{
    while (len > 0) {
        ssize_t n = send(fd, data, len, MSG_NOSIGNAL);

        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            return; /* the server may close early (413, 431): fine */
        }
        data += n;
        len -= (size_t)n;
    }
}

struct resp {
    int status;
    char head[4096];
    char *body; /* NUL-terminated, owned */
    size_t len;
};

/* Reads one response (Content-Length framed) within 5 s. Returns 0, or -1
 * when the connection closed (or timed out) first. */
static int read_resp(int fd, struct resp *r)
{
    char *buf = NULL;
    size_t len = 0, cap = 0;
    char *hend = NULL;
    size_t need = 0;
    int64_t deadline = now_ms() + 5000;

    memset(r, 0, sizeof(*r));
    for (;;) {
        struct pollfd pfd = {fd, POLLIN, 0};
        ssize_t n;

        if (hend != NULL && len >= need) {
            break;
        }
        if (poll(&pfd, 1, (int)(deadline - now_ms())) <= 0) {
            free(buf);
            return -1;
        }
        if (len + 4096 + 1 > cap) {
            cap = (len + 4096 + 1) * 2;
            buf = realloc(buf, cap);
            assert_non_null(buf);
        }
        n = recv(fd, buf + len, 4096, 0);
        if (n <= 0) {
            free(buf);
            return -1;
        }
        len += (size_t)n;
        buf[len] = '\0';
        if (hend == NULL && (hend = strstr(buf, "\r\n\r\n")) != NULL) {
            const char *cl = strcasestr(buf, "\r\ncontent-length:");
            size_t hl = (size_t)(hend - buf) + 4;

            assert_non_null(cl);
            need = hl + strtoul(cl + 17, NULL, 10);
            assert_true(hl < sizeof(r->head));
            memcpy(r->head, buf, hl);
            r->head[hl] = '\0';
        }
    }
    r->status = atoi(buf + 9) /* "HTTP/1.1 200" */;
    r->len = need - strlen(r->head);
    r->body = malloc(r->len + 1);
    assert_non_null(r->body);
    memcpy(r->body, buf + strlen(r->head), r->len);
    r->body[r->len] = '\0';
    free(buf);
    return 0;
}

/* One request on a fresh connection. */
static void req(struct fixture *f, const char *method, const char *path,
                const char *auth, const char *body, struct resp *r)
{
    char head[1024];
    int fd = connect_to(f->port);
    int n;

    n = snprintf(head, sizeof(head),
                 "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\n%s%s%s"
                 "Content-Length: %zu\r\n\r\n",
                 method, path, auth ? "Authorization: Bearer " : "",
                 auth ? auth : "", auth ? "\r\n" : "", body ? strlen(body) : 0);
    send_all(fd, head, (size_t)n);
    if (body != NULL) {
        send_all(fd, body, strlen(body));
    }
    assert_int_equal(read_resp(fd, r), 0);
    close(fd);
}

static void resp_free(struct resp *r)
{
    free(r->body);
}

static void expect(struct fixture *f, const char *method, const char *path,
                   const char *auth, const char *body, int status,
                   const char *needle)
{
    struct resp r;

    req(f, method, path, auth, body, &r);
    if (r.status != status || (needle && strstr(r.body, needle) == NULL)) {
        print_error("%s %s: got %d %s, want %d with '%s'\n", method, path,
                    r.status, r.body, status, needle ? needle : "");
        resp_free(&r);
        fail();
    }
    resp_free(&r);
}

static void test_health_ready_status(void **state)
{
    struct fixture *f = *state;

    expect(f, "GET", "/healthz", NULL, NULL, 200, "\"status\":\"ok\"");
    /* no intake, no forwarder: not ready, and the body says why. Offsets
     * 0..99 are delivered and 100 is dead: delivered (or dead) up to 100 */
    expect(f, "GET", "/readyz", NULL, NULL, 503, "intake not running");
    expect(f, "GET", "/readyz", NULL, NULL, 503, "\"name\":\"journal\"");
    expect(f, "GET", "/status", NULL, NULL, 200, "\"journal_pending\":50");
    expect(f, "GET", "/status", NULL, NULL, 200, "\"dead_letters\":3");
    expect(f, "GET", "/status", NULL, NULL, 200, "\"delivered_offset\":100");
    expect(f, "GET", "/status/", NULL, NULL, 200, "\"routes\":[");
}

static void test_metrics(void **state)
{
    struct fixture *f = *state;
    struct resp r;

    req(f, "GET", "/metrics", NULL, NULL, &r);
    assert_int_equal(r.status, 200);
    assert_non_null(strcasestr(r.head, "content-type: text/plain; "
                                       "version=0.0.4"));
    assert_non_null(strstr(r.body, "# TYPE kadx_journal_events gauge\n"));
    assert_non_null(strstr(r.body,
                           "kadx_journal_events{route=\"gameplay\",topic="
                           "\"gameplay\",partition=\"0\",state=\"dead\"} 3\n"));
    assert_non_null(strstr(r.body, "state=\"delivered\"} 100\n"));
    assert_true(r.body[r.len - 1] == '\n');
    resp_free(&r);
}

static void test_dead_letters_paged(void **state)
{
    struct fixture *f = *state;
    struct resp r;
    char path[128];
    const char *p;
    long next;

    req(f, "GET", "/dead-letters?limit=2", NULL, NULL, &r);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "\"total\":3"));
    assert_non_null(strstr(r.body, "\"count\":2"));
    assert_non_null(strstr(r.body, "\"reason\":\"bad record\""));
    p = strstr(r.body, "\"next_after\":");
    assert_non_null(p);
    next = strtol(p + 13, NULL, 10);
    assert_true(next > 0);
    resp_free(&r);
    snprintf(path, sizeof(path), "/dead-letters?limit=2&after=%ld", next);
    expect(f, "GET", path, NULL, NULL, 200, "\"count\":1");
    expect(f, "GET", path, NULL, NULL, 200, "\"next_after\":null");
    expect(f, "GET", "/dead-letters?route=other", NULL, NULL, 200,
           "\"total\":0");
    expect(f, "GET", "/dead-letters?route=nope", NULL, NULL, 400,
           "no route named 'nope'");
    expect(f, "GET", "/dead-letters?limit=0", NULL, NULL, 400, "'limit'");
    expect(f, "GET", "/dead-letters?limit=x", NULL, NULL, 400, "'limit'");
}

static void test_token_on_every_post(void **state)
{
    struct fixture *f = *state;
    static const char *const posts[] = {"/dead-letters/requeue", "/pause",
                                        "/resume", "/replay"};
    struct resp r;

    for (size_t i = 0; i < 4; i++) {
        req(f, "POST", posts[i], NULL, "{}", &r);
        assert_int_equal(r.status, 401);
        assert_non_null(strcasestr(r.head, "www-authenticate: bearer"));
        assert_non_null(strstr(r.body, "\"error\""));
        resp_free(&r);
        expect(f, "POST", posts[i], "wrong-token-1234", "{}", 401, "bearer");
        expect(f, "POST", posts[i], TOKEN "x", "{}", 401, "bearer");
    }
    /* GETs stay open */
    expect(f, "GET", "/status", NULL, NULL, 200, "\"routes\"");
}

static void test_requeue(void **state)
{
    struct fixture *f = *state;

    expect(f, "POST", "/dead-letters/requeue", TOKEN, "{\"id\":999999}", 404,
           "no such dead letter");
    expect(f, "POST", "/dead-letters/requeue", TOKEN, "{\"route\":\"x\"}", 400,
           "no route named");
    expect(f, "POST", "/dead-letters/requeue", TOKEN, "{\"bogus\":1}", 400,
           "unknown field 'bogus'");
    expect(f, "POST", "/dead-letters/requeue", TOKEN, "{\"route\":1}", 200,
           "\"requeued\":0");
    expect(f, "POST", "/dead-letters/requeue", TOKEN, "{\"route\":0}", 200,
           "\"requeued\":3");
    /* safe twice */
    expect(f, "POST", "/dead-letters/requeue", TOKEN, "", 200,
           "\"requeued\":0");
    expect(f, "GET", "/dead-letters", NULL, NULL, 200, "\"total\":0");
}

static void test_replay(void **state)
{
    struct fixture *f = *state;

    expect(f, "POST", "/replay", TOKEN,
           "{\"route\":\"gameplay\",\"partition\":0,\"from_offset\":10,"
           "\"to_offset\":19}",
           200, "\"events\":10");
    /* only delivered events are replayed: 100..199 are not */
    expect(f, "POST", "/replay", TOKEN,
           "{\"route\":0,\"partition\":0,\"from_offset\":90,"
           "\"to_offset\":150}",
           200, "\"events\":10");
    expect(f, "POST", "/replay", TOKEN,
           "{\"route\":0,\"from_time\":\"2023-11-14T22:13:20.005Z\","
           "\"to_time\":1700000000007}",
           200, "\"events\":3");
    expect(f, "POST", "/replay", TOKEN, "{\"route\":0,\"mode\":\"missing\"}",
           400, "needs a dedupe column");
    expect(f, "POST", "/replay", TOKEN, "{\"route\":0,\"mode\":\"some\"}", 400,
           "'mode'");
    expect(f, "POST", "/replay", TOKEN, "{\"route\":0,\"from_offset\":1}", 400,
           "needs a 'partition'");
    expect(f, "POST", "/replay", TOKEN,
           "{\"route\":0,\"partition\":0,\"from_offset\":5,\"to_offset\":1}",
           400, "after");
    expect(f, "POST", "/replay", TOKEN, "{}", 400, "'route' is required");
    expect(f, "POST", "/replay", TOKEN, "[1,2]", 400, "JSON object");
    expect(f, "POST", "/replay", TOKEN, "{\"route\":", 400, "JSON object");
    expect(f, "POST", "/replay", TOKEN, "{\"route\":0,\"from_time\":\"x\"}",
           400, "'from_time'");
}

static void test_pause_resume(void **state)
{
    struct fixture *f = *state;

    expect(f, "POST", "/pause", TOKEN, "{}", 200, "\"scope\":\"gateway\"");
    expect(f, "GET", "/status", NULL, NULL, 200, "\"paused\":true");
    expect(f, "GET", "/metrics", NULL, NULL, 200, "kadx_paused 1\n");
    expect(f, "POST", "/resume", TOKEN, "", 200, "\"paused\":false");
    expect(f, "GET", "/status", NULL, NULL, 200, "\"paused\":false");
    /* a route needs the forwarder, which this test does not run */
    expect(f, "POST", "/pause", TOKEN, "{\"route\":\"gameplay\"}", 503,
           "forwarder is not running");
}

static void test_404_405(void **state)
{
    struct fixture *f = *state;
    struct resp r;

    expect(f, "GET", "/nope", NULL, NULL, 404, "no such endpoint");
    expect(f, "GET", "/index.html", NULL, NULL, 404, "\"error\"");
    req(f, "GET", "/replay", NULL, NULL, &r);
    assert_int_equal(r.status, 405);
    assert_non_null(strcasestr(r.head, "allow: POST"));
    resp_free(&r);
    req(f, "POST", "/metrics", TOKEN, "", &r);
    assert_int_equal(r.status, 405);
    assert_non_null(strcasestr(r.head, "allow: GET"));
    resp_free(&r);
    expect(f, "DELETE", "/status", NULL, NULL, 405, "\"error\"");
}

/* GET /: the status page (admin/page.c), self-contained, with its CSP
 * (only its own inline blocks, by hash) and hardening headers; open even
 * with token_on_get (it holds no data: the endpoints it reads ask). */
static void test_status_page(void **state)
{
    struct fixture *f = *state;
    struct resp r;

    req(f, "GET", "/", NULL, NULL, &r);
    assert_int_equal(r.status, 200);
    assert_non_null(strcasestr(r.head, "\r\ncontent-type: text/html"));
    assert_non_null(strcasestr(r.head, "\r\nx-content-type-options: nosniff"));
    assert_non_null(strcasestr(r.head, "\r\ncontent-security-policy: "
                                       "default-src 'none'; script-src "
                                       "'sha256-"));
    assert_non_null(strstr(r.head, "connect-src 'self'"));
    assert_non_null(strstr(r.head, "form-action 'none'"));
    assert_null(strstr(r.head, "unsafe-inline"));
    assert_non_null(strstr(r.body, "<title>kadx</title>"));
    assert_non_null(strstr(r.body, "fetch("));
    /* no external asset: nothing loaded from another origin */
    assert_null(strstr(r.body, "src=\""));
    assert_null(strstr(r.body, "href=\"http"));
    resp_free(&r);
    /* the token guards the data, not the page */
    expect(f, "GET", "/status", NULL, NULL, 401, "bearer token");
    expect(f, "GET", "/status", TOKEN, NULL, 200, "\"routes\"");
    req(f, "POST", "/", TOKEN, "", &r);
    assert_int_equal(r.status, 405);
    assert_non_null(strcasestr(r.head, "allow: GET, HEAD"));
    resp_free(&r);
}

/* The server survives a request and still answers the next one. */
static void still_serving(struct fixture *f)
{
    expect(f, "GET", "/healthz", NULL, NULL, 200, "ok");
}

static void test_oversized(void **state)
{
    struct fixture *f = *state;
    size_t big = 1 << 20;
    char *junk = malloc(big + 256);
    struct resp r;
    int fd;
    int n;

    assert_non_null(junk);
    /* a 1 MB header -> 431 */
    fd = connect_to(f->port);
    n = snprintf(junk, 256, "GET /status HTTP/1.1\r\nHost: x\r\nX-Big: ");
    memset(junk + n, 'a', big);
    memcpy(junk + n + big, "\r\n\r\n", 4);
    send_all(fd, junk, (size_t)n + big + 4);
    assert_int_equal(read_resp(fd, &r), 0);
    assert_int_equal(r.status, 431);
    assert_non_null(strstr(r.body, "\"error\""));
    resp_free(&r);
    close(fd);
    still_serving(f);
    /* a 1 MB body -> 413 */
    fd = connect_to(f->port);
    n = snprintf(junk, 256,
                 "POST /replay HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
                 "%s\r\nContent-Length: %zu\r\n\r\n",
                 TOKEN, big);
    send_all(fd, junk, (size_t)n);
    memset(junk, ' ', big);
    send_all(fd, junk, big);
    assert_int_equal(read_resp(fd, &r), 0);
    assert_int_equal(r.status, 413);
    resp_free(&r);
    close(fd);
    free(junk);
    still_serving(f);
}

static void test_garbage_and_slow(void **state)
{
    struct fixture *f = *state;
    static const char garbage[] = "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03"
                                  "\x03 not http at all\r\n\r\n";
    struct resp r;
    int fd;

    fd = connect_to(f->port);
    send_all(fd, garbage, sizeof(garbage) - 1);
    if (read_resp(fd, &r) == 0) {
        assert_int_equal(r.status, 400);
        resp_free(&r);
    }
    close(fd);
    still_serving(f);

    /* a request that stops half way: answered 408 (or closed) after the
     * read timeout (300 ms here), and the server keeps serving meanwhile */
    fd = connect_to(f->port);
    send_all(fd, "GET /status HTTP/1.1\r\nHost: x\r\nX-Half: ", 39);
    still_serving(f);
    if (read_resp(fd, &r) == 0) {
        assert_int_equal(r.status, 408);
        resp_free(&r);
    }
    close(fd);
    still_serving(f);
}

static void test_keep_alive(void **state)
{
    struct fixture *f = *state;
    static const char one[] = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
    static const char two[] = "GET /status HTTP/1.1\r\nHost: x\r\n\r\n";
    struct resp r;
    int fd = connect_to(f->port);

    /* two requests, one after the other, on one connection */
    send_all(fd, one, sizeof(one) - 1);
    assert_int_equal(read_resp(fd, &r), 0);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "\"status\":\"ok\""));
    resp_free(&r);
    send_all(fd, two, sizeof(two) - 1);
    assert_int_equal(read_resp(fd, &r), 0);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "\"routes\""));
    resp_free(&r);
    close(fd);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_health_ready_status, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_metrics, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dead_letters_paged, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_token_on_every_post, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_requeue, setup, teardown),
        cmocka_unit_test_setup_teardown(test_replay, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pause_resume, setup, teardown),
        cmocka_unit_test_setup_teardown(test_404_405, setup, teardown),
        cmocka_unit_test_setup_teardown(test_oversized, setup, teardown),
        cmocka_unit_test_setup_teardown(test_garbage_and_slow, setup, teardown),
        cmocka_unit_test_setup_teardown(test_keep_alive, setup, teardown),
        cmocka_unit_test_setup_teardown(test_status_page, setup_token_on_get,
                                        teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
