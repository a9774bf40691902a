/*
 * test_http.c - admin/http.c: a real server on a loop thread, driven by
 * blocking loopback sockets from the test thread. Covers keep-alive,
 * pipelining, chunked bodies, the caps (431, 413, 408), malformed requests
 * (400 and the server keeps serving), deferred responses, http_reset (the
 * client sees a reset), a peer that leaves while its request is pending,
 * Expect: 100-continue and the query-string helpers; the admin's limits:
 * a connection over max_connections is accepted only once another closes
 * (defer_over_limit), and max_requests_per_s spaces one connection's
 * requests.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "admin/http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

struct fixture {
    uv_loop_t loop;
    uv_async_t stop;
    struct http_server *srv;
    pthread_t thread;
    int port;
    atomic_int aborts;
    atomic_int late_rc;
    atomic_int handled;
};

struct deferred {
    uv_timer_t timer;
    struct http_request *req;
};

static void on_deferred_closed(uv_handle_t *h)
{
    free(h->data);
}

static void on_deferred(uv_timer_t *t)
{
    struct deferred *d = t->data;

    http_respond(d->req, 200, NULL, 0, "late", 4);
    uv_close((uv_handle_t *)&d->timer, on_deferred_closed);
}

static void on_abort(struct http_request *req, void *data)
{
    struct fixture *f = data;

    atomic_fetch_add(&f->aborts, 1);
    /* responding to an aborted request is a no-op that frees it */
    atomic_store(&f->late_rc, http_respond(req, 200, NULL, 0, "x", 1));
}

static void handler(struct http_request *req, void *data)
{
    struct fixture *f = data;
    const char *path = http_req_path(req);
    char out[4096];
    size_t blen;
    const char *body = http_req_body(req, &blen);
    const char *xt = http_req_header(req, "x-TEST");

    atomic_fetch_add(&f->handled, 1);
    if (strcmp(path, "/defer") == 0) {
        struct deferred *d = calloc(1, sizeof(*d));
        char ms[16];
        assert_non_null(d);
        d->req = req;
        d->timer.data = d;
        assert_true(
            http_query_param(http_req_query(req), "ms", ms, sizeof(ms)) > 0);
        uv_timer_init(&f->loop, &d->timer);
        uv_timer_start(&d->timer, on_deferred, strtoull(ms, NULL, 10), 0);
        return;
    }
    if (strcmp(path, "/reset") == 0) {
        http_reset(req);
        return;
    }
    if (strcmp(path, "/hold") == 0) {
        http_req_on_abort(req, on_abort, f);
        return;
    }
    if (strcmp(path, "/json") == 0) {
        struct http_header h[] = {{"X-Extra", "1"}};
        http_respond_json(req, 201, h, 1, "{\"ok\":true}");
        return;
    }
    snprintf(out, sizeof(out), "%s %s?%s x-test=%s loop=%d len=%zu body=%s",
             http_req_method(req), path, http_req_query(req),
             xt != NULL ? xt : "-", http_req_peer_is_loopback(req), blen, body);
    http_respond(req, 200, NULL, 0, out, strlen(out));
}

static void on_stop(uv_async_t *a)
{
    struct fixture *f = a->data;

    http_server_free(f->srv);
    uv_close((uv_handle_t *)&f->stop, NULL);
}

static void *loop_main(void *arg)
{
    struct fixture *f = arg;

    uv_run(&f->loop, UV_RUN_DEFAULT);
    return NULL;
}

/* Limits for the next setup_cfg (0 = defaults); reset by each setup. */
static size_t next_max_conns;
static double next_rate;

static int setup_cfg(void **state, uint64_t read_timeout_ms)
{
    struct fixture *f = calloc(1, sizeof(*f));
    struct http_server_config cfg;
    char err[256];

    assert_non_null(f);
    assert_int_equal(uv_loop_init(&f->loop), 0);
    http_server_config_default(&cfg);
    cfg.max_header_bytes = 4096;
    cfg.max_body_bytes = 1000;
    cfg.read_timeout_ms = read_timeout_ms;
    if (next_max_conns > 0) {
        cfg.max_connections = next_max_conns;
        cfg.defer_over_limit = 1;
    }
    cfg.max_requests_per_s = next_rate;
    next_max_conns = 0;
    next_rate = 0;
    f->srv = http_server_new(&f->loop, &cfg, handler, f);
    assert_non_null(f->srv);
    assert_int_equal(
        http_server_listen(f->srv, "127.0.0.1:0", err, sizeof(err)), 0);
    f->port = http_server_port(f->srv);
    assert_true(f->port > 0);
    uv_async_init(&f->loop, &f->stop, on_stop);
    f->stop.data = f;
    assert_int_equal(pthread_create(&f->thread, NULL, loop_main, f), 0);
    *state = f;
    return 0;
}

static int setup(void **state)
{
    return setup_cfg(state, 5000);
}

static int setup_short_timeout(void **state)
{
    return setup_cfg(state, 200);
}

static int setup_one_conn(void **state)
{
    next_max_conns = 1;
    return setup_cfg(state, 5000);
}

static int setup_rate_2(void **state)
{
    next_rate = 2;
    return setup_cfg(state, 5000);
}

static int teardown(void **state)
{
    struct fixture *f = *state;

    uv_async_send(&f->stop);
    pthread_join(f->thread, NULL);
    assert_int_equal(uv_loop_close(&f->loop), 0);
    free(f);
    return 0;
}

/* Bytes received past the last response (pipelining), per test. */
static char carry[16384];
static size_t carry_len;

static int connect_to(int port)
{
    carry_len = 0;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a;
    struct timeval tv = {.tv_sec = 5};

    assert_true(fd >= 0);
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    return fd;
}

static void send_all(int fd, const char *s, size_t len)
{
    while (len > 0) {
        ssize_t n = send(fd, s, len, MSG_NOSIGNAL);
        assert_true(n > 0);
        s += n;
        len -= (size_t)n;
    }
}

static void send_str(int fd, const char *s)
{
    send_all(fd, s, strlen(s));
}

/*
 * Reads one response (headers + Content-Length body) into buf, keeping any
 * following bytes for the next call. Returns the status, or -1 on EOF or
 * reset before a full response (errno_out set).
 */
static int read_response(int fd, char *buf, size_t cap, int *errno_out)
{
    size_t len = 0;
    char *hend = NULL;
    size_t want = 0;

    *errno_out = 0;
    assert_true(carry_len < cap);
    memcpy(buf, carry, carry_len);
    len = carry_len;
    buf[len] = '\0';
    carry_len = 0;
    for (;;) {
        ssize_t n;
        if (hend == NULL) {
            hend = strstr(buf, "\r\n\r\n");
            if (hend != NULL) {
                const char *cl = strcasestr(buf, "Content-Length:");
                size_t blen = 0;
                if (cl != NULL && cl < hend) {
                    blen = strtoul(cl + 15, NULL, 10);
                }
                want = (size_t)(hend - buf) + 4 + blen;
            }
        }
        if (hend != NULL && len >= want) {
            break;
        }
        n = recv(fd, buf + len, cap - 1 - len, 0);
        if (n <= 0) {
            *errno_out = n == 0 ? 0 : errno;
            return -1;
        }
        len += (size_t)n;
        buf[len] = '\0';
    }
    carry_len = len - want;
    memcpy(carry, buf + want, carry_len);
    buf[want] = '\0';
    return (int)strtol(buf + 9, NULL, 10);
}

static const char *body_of(const char *resp)
{
    const char *h = strstr(resp, "\r\n\r\n");
    return h != NULL ? h + 4 : "";
}

static void test_get_and_keepalive(void **state)
{
    struct fixture *f = *state;
    int fd = connect_to(f->port);
    char buf[8192];
    int e;

    send_str(fd, "GET /echo?a=1&b=x%20y HTTP/1.1\r\nHost: h\r\n"
                 "X-Test: hello\r\n\r\n");
    assert_int_equal(read_response(fd, buf, sizeof(buf), &e), 200);
    assert_string_equal(body_of(buf),
                        "GET /echo?a=1&b=x%20y x-test=hello loop=1 len=0 "
                        "body=");
    assert_non_null(strstr(buf, "Connection: keep-alive"));
    /* same connection again, a POST with a body */
    send_str(fd, "POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\n"
                 "hello");
    assert_int_equal(read_response(fd, buf, sizeof(buf), &e), 200);
    assert_string_equal(body_of(buf), "POST /p? x-test=- loop=1 len=5 "
                                      "body=hello");
    close(fd);
}

static void test_pipelined_in_order(void **state)
{
    struct fixture *f = *state;
    int fd = connect_to(f->port);
    char buf[8192];
    int e;

    /* the first is deferred 100 ms; the second must still come second */
    send_str(fd, "GET /defer?ms=100 HTTP/1.1\r\nHost: h\r\n\r\n"
                 "GET /second HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_int_equal(read_response(fd, buf, sizeof(buf), &e), 200);
    assert_string_equal(body_of(buf), "late");
    assert_int_equal(read_response(fd, buf, sizeof(buf), &e), 200);
    assert_non_null(strstr(body_of(buf), "GET /second?"));
    close(fd);
}

static void test_chunked_body(void **state)
{
    struct fixture *f = *state;
    int fd = connect_to(f->port);
    char buf[8192];
    int e;

    send_str(fd, "POST /c HTTP/1.1\r\nHost: h\r\n"
                 "Transfer-Encoding: chunked\r\n\r\n"
                 "5\r\nhello\r\n");
    send_str(fd, "6\r\n world\r\n0\r\n\r\n");
    assert_int_equal(read_response(fd, buf, sizeof(buf), &e), 200);
    assert_non_null(strstr(body_of(buf), "len=11 body=hello world"));
    close(fd);
}

static void test_header_cap_431(void **state)
{
    struct fixture *f = *state;
    int fd = connect_to(f->port);
    char big[6000];
    char buf[8192];
    int e;

    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    send_str(fd, "GET / HTTP/1.1\r\nX-Big: ");
    send_str(fd, big);
    send_str(fd, "\r\n\r\n");
    assert_int_equal(read_response(fd, buf, sizeof(buf), &e), 431);
    assert_non_null(strstr(body_of(buf), "\"error\""));
    close(fd);
}

static void test_body_cap_413(void **state)
{
    struct fixture *f = *state;
    int fd = connect_to(f->port);
    char big[3000];
    char buf[8192];
    int e;

    memset(big, 'b', sizeof(big));
    /* announced by Content-Length */
    send_str(fd, "POST / HTTP/1.1\r\nContent-Length: 3000\r\n\r\n");
    send_all(fd, big, sizeof(big));
    assert_int_equal(read_response(fd, buf, sizeof(buf), &e), 413);
    assert_non_null(strstr(buf, "Connection: close"));
    close(fd);
    /* found while reading a chunked body */
    fd = connect_to(f->port);
    send_str(fd, "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                 "bb8\r\n");
    send_all(fd, big, sizeof(big));
    send_str(fd, "\r\n0\r\n\r\n");
    assert_int_equal(read_response(fd, buf, sizeof(buf), &e), 413);
    assert_non_null(strstr(body_of(buf), "exceeds 1000 bytes"));
    close(fd);
}

static void test_malformed_then_serving(void **state)
{
    struct fixture *f = *state;
    int fd = connect_to(f->port);
    char buf[8192];
    int e;

    send_str(fd, "GARBAGE\x01\x02 / nonsense\r\n\r\n");
    assert_int_equal(read_response(fd, buf, sizeof(buf), &e), 400);
    assert_non_null(strstr(body_of(buf), "malformed request"));
    close(fd);
    fd = connect_to(f->port);
    send_str(fd, "POST / HTTP/1.1\r\nContent-Length: zz\r\n\r\n");
    assert_int_equal(read_response(fd, buf, sizeof(buf), &e), 400);
    close(fd);
    fd = connect_to(f->port);
    send_str(fd, "GET /ok HTTP/1.1\r\n\r\n");
    assert_int_equal(read_response(fd, buf, sizeof(buf), &e), 200);
    close(fd);
}

static void test_read_timeout_408(void **state)
{
    struct fixture *f = *state;
    int fd = connect_to(f->port);
    char buf[8192];
    int e;

    send_str(fd, "POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc");
    assert_int_equal(read_response(fd, buf, sizeof(buf), &e), 408);
    /* and the server closes the connection */
    assert_int_equal(recv(fd, buf, sizeof(buf), 0), 0);
    close(fd);
    fd = connect_to(f->port);
    send_str(fd, "GET /ok HTTP/1.1\r\n\r\n");
    assert_int_equal(read_response(fd, buf, sizeof(buf), &e), 200);
    close(fd);
}

static void test_reset(void **state)
{
    struct fixture *f = *state;
    int fd = connect_to(f->port);
    char buf[8192];
    int e;

    send_str(fd, "POST /reset HTTP/1.1\r\nContent-Length: 2\r\n\r\nhi");
    assert_int_equal(read_response(fd, buf, sizeof(buf), &e), -1);
    assert_int_equal(e, ECONNRESET);
    close(fd);
}

static void test_peer_gone_while_pending(void **state)
{
    struct fixture *f = *state;
    int fd = connect_to(f->port);
    struct timespec ts = {0, 5 * 1000 * 1000};

    send_str(fd, "GET /hold HTTP/1.1\r\n\r\n");
    for (int i = 0; i < 1000 && atomic_load(&f->handled) == 0; i++) {
        nanosleep(&ts, NULL);
    }
    assert_int_equal(atomic_load(&f->handled), 1);
    close(fd);
    for (int i = 0; i < 1000 && atomic_load(&f->aborts) == 0; i++) {
        nanosleep(&ts, NULL);
    }
    assert_int_equal(atomic_load(&f->aborts), 1);
    assert_int_equal(atomic_load(&f->late_rc), -ECONNRESET);
}

static void test_expect_continue_and_json(void **state)
{
    struct fixture *f = *state;
    int fd = connect_to(f->port);
    char buf[8192];
    int e;

    send_str(fd, "POST /json HTTP/1.1\r\nContent-Length: 2\r\n"
                 "Expect: 100-continue\r\n\r\n");
    assert_int_equal(read_response(fd, buf, sizeof(buf), &e), 100);
    send_str(fd, "{}");
    assert_int_equal(read_response(fd, buf, sizeof(buf), &e), 201);
    assert_non_null(strstr(buf, "Content-Type: application/json"));
    assert_non_null(strstr(buf, "X-Extra: 1"));
    assert_string_equal(body_of(buf), "{\"ok\":true}");
    close(fd);
    /* too large with Expect: refused before the body is sent */
    fd = connect_to(f->port);
    send_str(fd, "POST /json HTTP/1.1\r\nContent-Length: 5000\r\n"
                 "Expect: 100-continue\r\n\r\n");
    assert_int_equal(read_response(fd, buf, sizeof(buf), &e), 413);
    close(fd);
}

static void test_head_has_no_body(void **state)
{
    struct fixture *f = *state;
    int fd = connect_to(f->port);
    char buf[8192] = "";
    size_t len = 0;

    send_str(fd, "HEAD /echo HTTP/1.1\r\n\r\nGET /after HTTP/1.1\r\n\r\n");
    /* both answers arrive; the HEAD one announces a length but sends no
     * body, so the second status line follows its headers directly */
    while (strstr(buf, "GET /after?") == NULL) {
        ssize_t n = recv(fd, buf + len, sizeof(buf) - 1 - len, 0);
        assert_true(n > 0);
        len += (size_t)n;
        buf[len] = '\0';
    }
    assert_true(strncmp(buf, "HTTP/1.1 200", 12) == 0);
    assert_non_null(strstr(buf, "\r\n\r\nHTTP/1.1 200"));
    assert_null(strstr(buf, "HEAD /echo?"));
    close(fd);
}

static void test_query_helpers(void **state)
{
    char out[32];

    (void)state;
    assert_int_equal(http_query_param("a=1&streamFormat=json&m=x%2By+z",
                                      "streamFormat", out, sizeof(out)),
                     4);
    assert_string_equal(out, "json");
    assert_int_equal(http_query_param("a=1&m=x%2By+z", "m", out, sizeof(out)),
                     5);
    assert_string_equal(out, "x+y z");
    assert_int_equal(http_query_param("a=1", "b", out, sizeof(out)), -ENOENT);
    assert_int_equal(http_query_param("a=%zz", "a", out, sizeof(out)), -EINVAL);
    assert_int_equal(http_query_param("a=%4", "a", out, sizeof(out)), -EINVAL);
    assert_int_equal(http_query_param("a=0123456789", "a", out, 5), -EMSGSIZE);
    assert_int_equal(http_query_param("flag&x=1", "flag", out, sizeof(out)), 0);
    assert_int_equal(http_url_decode("a+b%2F", 6, out, sizeof(out), 0), 4);
    assert_string_equal(out, "a+b/");
}

/* max_connections 1, defer_over_limit: B is not served while A is open,
 * and is served once A closes (nothing refused, nothing lost). */
static void test_over_limit_waits_for_a_close(void **state)
{
    struct fixture *f = *state;
    int a = connect_to(f->port);
    int b;
    char buf[8192];
    struct pollfd p;
    int e;

    send_str(a, "GET /a HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_int_equal(read_response(a, buf, sizeof(buf), &e), 200);
    b = connect_to(f->port); /* the kernel's backlog completes it */
    send_str(b, "GET /b HTTP/1.1\r\nHost: h\r\n\r\n");
    p.fd = b;
    p.events = POLLIN;
    p.revents = 0;
    /* A is open: no answer (and no 503) for B */
    assert_int_equal(poll(&p, 1, 300), 0);
    assert_int_equal(atomic_load(&f->handled), 1);
    close(a);
    assert_int_equal(read_response(b, buf, sizeof(buf), &e), 200);
    assert_non_null(strstr(body_of(buf), "GET /b?"));
    close(b);
}

/* max_requests_per_s 2: five pipelined requests are all answered, in
 * order, but the three past the burst of two wait their turn (>= 1 s). */
static void test_rate_limit_spaces_requests(void **state)
{
    struct fixture *f = *state;
    int fd = connect_to(f->port);
    char buf[8192];
    struct timespec t0, t1;
    double secs;
    int e;

    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int i = 0; i < 5; i++) {
        char req[64];

        snprintf(req, sizeof(req), "GET /r%d HTTP/1.1\r\nHost: h\r\n\r\n", i);
        send_str(fd, req);
    }
    for (int i = 0; i < 5; i++) {
        char want[16];

        assert_int_equal(read_response(fd, buf, sizeof(buf), &e), 200);
        snprintf(want, sizeof(want), "GET /r%d?", i);
        assert_non_null(strstr(body_of(buf), want));
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    secs = (double)(t1.tv_sec - t0.tv_sec) +
           (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    /* 2 at once, then one per 0.5 s: 1.5 s; a lower bound only */
    assert_true(secs >= 1.0);
    close(fd);
}

static void test_listen_errors(void **state)
{
    uv_loop_t loop;
    struct http_server *s;
    char err[256];

    (void)state;
    uv_loop_init(&loop);
    s = http_server_new(&loop, NULL, handler, NULL);
    assert_int_equal(http_server_listen(s, "nonsense", err, sizeof(err)),
                     -EINVAL);
    assert_non_null(strstr(err, "bad listen address"));
    assert_int_equal(http_server_listen(s, "127.0.0.1:99999", err, sizeof(err)),
                     -EINVAL);
    http_server_free(s);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_get_and_keepalive, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_pipelined_in_order, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_chunked_body, setup, teardown),
        cmocka_unit_test_setup_teardown(test_header_cap_431, setup, teardown),
        cmocka_unit_test_setup_teardown(test_body_cap_413, setup, teardown),
        cmocka_unit_test_setup_teardown(test_malformed_then_serving, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_read_timeout_408,
                                        setup_short_timeout, teardown),
        cmocka_unit_test_setup_teardown(test_reset, setup, teardown),
        cmocka_unit_test_setup_teardown(test_peer_gone_while_pending, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_expect_continue_and_json, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_head_has_no_body, setup, teardown),
        cmocka_unit_test_setup_teardown(test_over_limit_waits_for_a_close,
                                        setup_one_conn, teardown),
        cmocka_unit_test_setup_teardown(test_rate_limit_spaces_requests,
                                        setup_rate_2, teardown),
        cmocka_unit_test(test_query_helpers),
        cmocka_unit_test(test_listen_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
