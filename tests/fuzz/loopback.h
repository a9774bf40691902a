/*
 * loopback.h - what fuzz_request and fuzz_admin share: one input sent by a
 * client on one loopback TCP connection to a server on a libuv loop of the
 * same thread. The client writes the input (then closes its sending side)
 * and reads what comes back, turning the loop between steps, until the
 * server closes or nothing moved for idle_max turns of about 1 ms.
 */
#ifndef KADX_FUZZ_LOOPBACK_H
#define KADX_FUZZ_LOOPBACK_H

#include <assert.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

static void fuzz_loopback_send(uv_loop_t *loop, int port, const uint8_t *data,
                               size_t size, int idle_max)
{
    struct sockaddr_in sa;
    char buf[65536];
    size_t off = 0;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);

    assert(fd >= 0);
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 &&
        errno != EINPROGRESS) {
        abort();
    }
    if (size == 0) {
        shutdown(fd, SHUT_WR);
    }
    for (int idle = 0; idle < idle_max;) {
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
        }
        uv_run(loop, UV_RUN_NOWAIT);
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
}

#endif
