/*
 * fuzz_admin.c - libFuzzer target: the admin API's routing and handlers
 * (admin/api.c) behind the real admin HTTP server, as `kadx run` serves
 * them, with a real journal (a temporary file holding a few batches and
 * dead letters) and no Kafka or ADX (intake and forwarder absent, as in
 * tests/unit/test_api.c: the API must say so, not crash). Each input is
 * the bytes one client sends on one loopback connection before closing
 * its side: any method, path, query, header and JSON body, with or without
 * the bearer token (the seeds carry it, so POSTs get past the check).
 * The loop runs until the server has closed the connection or everything
 * sent was answered and the server is quiet.
 */
#include "admin/api.h"
#include "gateway/config.h"
#include "gateway/log.h"
#include "storage/journal.h"

#include <assert.h>
#include <errno.h>
#include <ftw.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static const char config_json[] =
    "{\"kafka\":{\"bootstrap.servers\":\"127.0.0.1:1\",\"group.id\":\"g\"},"
    "\"adx\":{\"ingest_url\":\"http://127.0.0.1:1\","
    "\"auth\":{\"method\":\"none\"}},"
    "\"routes\":[{\"name\":\"gameplay\",\"topic\":\"gameplay\","
    "\"database\":\"db\",\"table\":\"GamePlay\",\"format\":\"json\","
    "\"meta\":{\"batch_id\":\"BatchId\"},\"dedupe_column\":\"BatchId\"},"
    "{\"name\":\"other\",\"topic\":\"other\",\"database\":\"db\","
    "\"table\":\"Other\",\"format\":\"json\"}],"
    "\"admin\":{\"listen\":\"127.0.0.1:0\","
    "\"token\":\"fuzz-admin-token-1234\"}}";

static char dir[] = "/tmp/kadx-fuzz-admin-XXXXXX";
static uv_loop_t loop;
static struct config *cfg;
static struct journal *journal;
static struct admin *admin;
static int port;

static int rm_entry(const char *p, const struct stat *st, int flag,
                    struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(p);
}

/* the journal's directory goes with the process (libFuzzer exits) */
static void remove_dir(void)
{
    nftw(dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
}

static void setup(void)
{
    char path[64];
    char err[256] = "";
    struct journal_options jo;
    struct admin_sources src;
    struct admin_options ao;

    log_setup(LOG_ERROR, LOG_TEXT);
    if (mkdtemp(dir) == NULL ||
        config_load_string(config_json, NULL, &cfg, err, sizeof(err)) != 0) {
        fprintf(stderr, "fuzz_admin: setup: %s\n", err);
        abort();
    }
    atexit(remove_dir);
    snprintf(path, sizeof(path), "%s/j.db", dir);
    uv_loop_init(&loop);
    memset(&jo, 0, sizeof(jo));
    jo.path = path;
    jo.loop = &loop;
    if (journal_open(&jo, &journal, err, sizeof(err)) != 0) {
        fprintf(stderr, "fuzz_admin: journal: %s\n", err);
        abort();
    }
    memset(&src, 0, sizeof(src));
    src.cfg = cfg;
    src.journal = journal;
    memset(&ao, 0, sizeof(ao));
    ao.listen = "127.0.0.1:0";
    ao.token = cfg->admin.token;
    ao.read_timeout_ms = 1000;
    ao.max_requests_per_s = 1e9; /* no pacing: one input, many requests */
    ao.max_connections = 100000; /* closed connections linger a moment */
    if (admin_start(&loop, &src, &ao, &admin, err, sizeof(err)) != 0) {
        fprintf(stderr, "fuzz_admin: admin: %s\n", err);
        abort();
    }
    port = admin_port(admin);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct sockaddr_in sa;
    char buf[65536];
    size_t off = 0;
    int fd;

    if (admin == NULL) {
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
    if (size == 0) {
        shutdown(fd, SHUT_WR);
    }
    /* the API answers reads from the thread pool: wait for quiet, not
     * for one turn of the loop */
    for (int idle = 0; idle < 200;) {
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
    for (int i = 0; i < 10; i++) {
        uv_run(&loop, UV_RUN_NOWAIT); /* the server sees the close */
    }
    return 0;
}
