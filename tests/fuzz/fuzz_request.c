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
    struct sockaddr_in sa;
    char buf[65536];
    size_t off = 0;
    int fd;

    if (server == NULL) {
        setup();
    }
    if (size > 32768) {
        return 0;
    }
    fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    assert(fd >= 0);
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 &&
        errno != EINPROGRESS) {
        abort();
    }
    /* write all, read what comes, until the server closes or goes quiet */
    for (int idle = 0; idle < 50;) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int progressed = 0;

        if (off < size) {
            ssize_t w = send(fd, data + off, size - off, MSG_NOSIGNAL);

            if (w > 0) {
                off += (size_t)w;
                progressed = 1;
                if (off == size) {
                    shutdown(fd, SHUT_WR);
                }
            }
        } else if (size == 0 && off == 0) {
            shutdown(fd, SHUT_WR);
            off = 1; /* once */
        }
        uv_run(&loop, UV_RUN_NOWAIT);
        if (poll(&p, 1, 1) > 0) {
            ssize_t r = recv(fd, buf, sizeof(buf), 0);

            if (r == 0 || (r < 0 && errno != EAGAIN)) {
                break; /* the server closed (or reset) */
            }
            if (r > 0) {
                progressed = 1;
            }
        }
        idle = progressed ? 0 : idle + 1;
    }
    close(fd);
    /* let the server see the close and free the connection */
    for (int i = 0; i < 100 && http_server_connections(server) > 0; i++) {
        uv_run(&loop, UV_RUN_NOWAIT);
        usleep(100);
    }
    return 0;
}
