/*
 * fuzz_request.c - libFuzzer target: the admin HTTP server's request path
 * (admin/http.c over libhttp-parser): request lines, headers, bodies,
 * chunked encoding, pipelining, the size limits, on a real loopback TCP
 * connection to a real server on a libuv loop. Each input is written by a
 * client socket, which then closes its sending side; the loop runs until
 * the server has closed the connection or answered everything and gone
 * idle. The handler answers every request that gets through with its
 * method, path, query and body length, so responses are built too.
 * Small limits make the 413/431 paths reachable with small inputs.
 */
#include "admin/http.h"
#include "tests/fuzz/loopback.h"

#include <assert.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static uv_loop_t loop;
static struct http_server *server;
static int port;

static void handle(struct http_request *req, void *data)
{
    char out[512];
    size_t blen = 0;
    const char *q = http_req_query(req);

    (void)data;
    (void)http_req_body(req, &blen);
    (void)http_req_header(req, "authorization");
    snprintf(out, sizeof(out),
             "{\"m\":\"%.16s\",\"p\":%zu,\"q\":%zu,\"b\":%zu}",
             http_req_method(req), strlen(http_req_path(req)),
             q ? strlen(q) : 0, blen);
    http_respond_json(req, 200, NULL, 0, out);
}

static void setup(void)
{
    struct http_server_config cfg;
    char err[256];

    uv_loop_init(&loop);
    http_server_config_default(&cfg);
    cfg.max_header_bytes = 2048;
    cfg.max_body_bytes = 4096;
    cfg.read_timeout_ms = 2000;
    cfg.idle_timeout_ms = 2000;
    server = http_server_new(&loop, &cfg, handle, NULL);
    assert(server != NULL);
    if (http_server_listen(server, "127.0.0.1:0", err, sizeof(err)) != 0) {
        fprintf(stderr, "fuzz_request: listen: %s\n", err);
        abort();
    }
    port = http_server_port(server);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (server == NULL) {
        setup();
    }
    if (size > 32768) {
        return 0;
    }
    fuzz_loopback_send(&loop, port, data, size, 50);
    /* let the server see the close and free the connection */
    for (int i = 0; i < 100 && http_server_connections(server) > 0; i++) {
        uv_run(&loop, UV_RUN_NOWAIT);
        usleep(100);
    }
    return 0;
}
