/*
 * bench_emulator.c - how fast the ADX emulator accepts streaming ingest
 * (DESIGN.md "Performance", measure (c)). Starts `kadx adx-emulator` twice,
 * storing rows and with --count-only, sets up the seed's GamePlay table,
 * mapping and streaming policy, then drives it from C client threads over
 * keep-alive loopback connections with gzip'd JSON-lines bodies of the
 * seed's ~150-byte events, and prints requests/s and rows/s per mode.
 *
 * usage: bench_emulator [--kadx PATH] [--seconds S] [--conns C]
 *                       [--rows R]
 * Build without sanitizers for real numbers:
 *   meson setup build-rel -Dbuildtype=release && ninja -C build-rel
 *   build-rel/tests/bench/bench_emulator
 */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#ifndef KADX_BIN
#define KADX_BIN "kadx"
#endif

#define MAX_CONNS 64

struct bench {
    int port;
    const char *req; /* a full HTTP request, reused */
    size_t req_len;
    double seconds;
    atomic_int stop;
    atomic_uint_fast64_t requests;
    atomic_uint_fast64_t failures;
};

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int connect_port(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a;
    int one = 1;

    if (fd < 0) {
        return -errno;
    }
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return fd;
}

static int send_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w <= 0) {
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Reads one response; returns its status or -1. buf is scratch. */
static int read_response(int fd, char *buf, size_t cap)
{
    size_t len = 0;
    size_t want = 0;
    char *hend = NULL;

    for (;;) {
        ssize_t n;
        if (hend != NULL && len >= want) {
            break;
        }
        if (len + 1 >= cap) {
            return -1;
        }
        n = recv(fd, buf + len, cap - 1 - len, 0);
        if (n <= 0) {
            return -1;
        }
        len += (size_t)n;
        buf[len] = '\0';
        if (hend == NULL && (hend = strstr(buf, "\r\n\r\n")) != NULL) {
            const char *cl = strcasestr(buf, "Content-Length:");
            want = (size_t)(hend - buf) + 4 +
                   (cl != NULL ? strtoul(cl + 15, NULL, 10) : 0);
        }
    }
    return (int)strtol(buf + 9, NULL, 10);
}

/* One request on a fresh connection (setup calls). */
static int http_once(int port, const char *method, const char *path,
                     const char *body)
{
    char req[8192];
    char buf[65536];
    int fd = connect_port(port);
    int n;
    int st;

    if (fd < 0) {
        return -1;
    }
    n = snprintf(req, sizeof(req),
                 "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                 "Content-Type: application/json\r\nContent-Length: %zu\r\n"
                 "\r\n%s",
                 method, path, strlen(body), body);
    if (n < 0 || (size_t)n >= sizeof(req) || send_all(fd, req, (size_t)n)) {
        close(fd);
        return -1;
    }
    st = read_response(fd, buf, sizeof(buf));
    close(fd);
    return st;
}

static void *client_main(void *arg)
{
    struct bench *b = arg;
    char buf[16384];
    int fd = connect_port(b->port);

    if (fd < 0) {
        atomic_fetch_add(&b->failures, 1);
        return NULL;
    }
    while (!atomic_load(&b->stop)) {
        if (send_all(fd, b->req, b->req_len) < 0 ||
            read_response(fd, buf, sizeof(buf)) != 200) {
            atomic_fetch_add(&b->failures, 1);
            break;
        }
        atomic_fetch_add(&b->requests, 1);
    }
    close(fd);
    return NULL;
}

/* Starts the emulator; returns its pid and port (from the listening line). */
static pid_t start_emulator(const char *kadx, int count_only, int *port)
{
    int pfd[2];
    pid_t pid;
    char line[256];
    size_t len = 0;

    if (pipe(pfd) < 0) {
        return -1;
    }
    pid = fork();
    if (pid == 0) {
        dup2(pfd[1], 1);
        close(pfd[0]);
        close(pfd[1]);
        if (count_only) {
            execl(kadx, kadx, "--log-level", "warn", "adx-emulator", "--listen",
                  "127.0.0.1:0", "--count-only", (char *)NULL);
        } else {
            execl(kadx, kadx, "--log-level", "warn", "adx-emulator", "--listen",
                  "127.0.0.1:0", (char *)NULL);
        }
        _exit(127);
    }
    close(pfd[1]);
    while (len + 1 < sizeof(line)) {
        ssize_t n = read(pfd[0], line + len, 1);
        if (n <= 0) {
            break;
        }
        len++;
        if (line[len - 1] == '\n') {
            break;
        }
    }
    line[len] = '\0';
    close(pfd[0]);
    {
        const char *p = strstr(line, "127.0.0.1:");
        if (p == NULL) {
            fprintf(stderr, "bench: emulator did not start (%s)\n", line);
            kill(pid, SIGKILL);
            waitpid(pid, NULL, 0);
            return -1;
        }
        *port = (int)strtol(p + 10, NULL, 10);
    }
    return pid;
}

static char *build_request(int rows, size_t *req_len, size_t *raw_len,
                           size_t *gz_len)
{
    size_t cap = (size_t)rows * 200 + 64;
    char *raw = malloc(cap);
    size_t len = 0;
    unsigned char *gz;
    uLongf gzcap;
    z_stream zs;
    char head[512];
    int hl;
    char *req;

    if (raw == NULL) {
        return NULL;
    }
    for (int i = 0; i < rows; i++) {
        len += (size_t)snprintf(
            raw + len, cap - len,
            "{\"playerId\":%d,\"gameId\":%d,\"win\":%d,\"stake\":%d,"
            "\"eventTime\":\"2024-05-01T10:%02d:%02d.%03dZ\","
            "\"pad\":\"xxxxxxxxxxxxxxxxxxxxxxxxxxxx\"}\n",
            1000 + i % 5000, i % 17, (i * 37) % 1000 - 300, 10 + i % 5,
            (i / 60) % 60, i % 60, i % 1000);
    }
    gzcap = compressBound(len) + 64;
    gz = malloc(gzcap);
    memset(&zs, 0, sizeof(zs));
    if (gz == NULL || deflateInit2(&zs, 1, Z_DEFLATED, 15 + 16, 8,
                                   Z_DEFAULT_STRATEGY) != Z_OK) {
        free(raw);
        free(gz);
        return NULL;
    }
    zs.next_in = (Bytef *)raw;
    zs.avail_in = (uInt)len;
    zs.next_out = gz;
    zs.avail_out = (uInt)gzcap;
    deflate(&zs, Z_FINISH);
    *gz_len = gzcap - zs.avail_out;
    deflateEnd(&zs);
    hl = snprintf(head, sizeof(head),
                  "POST /v1/rest/ingest/leaderboard/GamePlay?streamFormat="
                  "json&mappingName=gameplay_json_mapping HTTP/1.1\r\n"
                  "Host: 127.0.0.1\r\nContent-Encoding: gzip\r\n"
                  "Content-Type: application/octet-stream\r\n"
                  "Content-Length: %zu\r\n\r\n",
                  *gz_len);
    req = malloc((size_t)hl + *gz_len);
    if (req != NULL) {
        memcpy(req, head, (size_t)hl);
        memcpy(req + hl, gz, *gz_len);
        *req_len = (size_t)hl + *gz_len;
    }
    *raw_len = len;
    free(raw);
    free(gz);
    return req;
}

static int setup_gameplay(int port)
{
    static const char *const cmds[] = {
        "{\"db\":\"leaderboard\",\"csl\":\".create table GamePlay (PlayerID: "
        "int, GameID: int, Win: long, Stake: int, EventTime: datetime)\"}",
        "{\"db\":\"leaderboard\",\"csl\":\".create table GamePlay ingestion "
        "json mapping 'gameplay_json_mapping' '[{\\\"column\\\":"
        "\\\"PlayerID\\\",\\\"Properties\\\":{\\\"Path\\\":"
        "\\\"$.playerId\\\"}},{\\\"column\\\":\\\"GameID\\\","
        "\\\"Properties\\\":{\\\"Path\\\":\\\"$.gameId\\\"}},{\\\"column\\\":"
        "\\\"Win\\\",\\\"Properties\\\":{\\\"Path\\\":\\\"$.win\\\"}},"
        "{\\\"column\\\":\\\"Stake\\\",\\\"Properties\\\":{\\\"Path\\\":"
        "\\\"$.stake\\\"}},{\\\"column\\\":\\\"EventTime\\\","
        "\\\"Properties\\\":{\\\"Path\\\":\\\"$.eventTime\\\"}}]'\"}",
        "{\"db\":\"leaderboard\",\"csl\":\".alter database leaderboard "
        "policy streamingingestion enable\"}",
    };

    for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
        int st = http_once(port, "POST", "/v1/rest/mgmt", cmds[i]);
        if (st != 200) {
            fprintf(stderr, "bench: setup command %zu answered %d\n", i, st);
            return -1;
        }
    }
    return 0;
}

static int run_mode(const char *kadx, int count_only, int conns, int rows,
                    double seconds, const char *req, size_t req_len,
                    size_t raw_len, size_t gz_len)
{
    struct bench b;
    pthread_t th[MAX_CONNS];
    int port = 0;
    pid_t pid = start_emulator(kadx, count_only, &port);
    double t0;
    double el;
    int status;
    uint64_t n;

    if (pid < 0) {
        return -1;
    }
    memset(&b, 0, sizeof(b));
    b.port = port;
    b.req = req;
    b.req_len = req_len;
    b.seconds = seconds;
    if (setup_gameplay(port) < 0) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        return -1;
    }
    t0 = now_s();
    for (int i = 0; i < conns; i++) {
        pthread_create(&th[i], NULL, client_main, &b);
    }
    while (now_s() - t0 < seconds && atomic_load(&b.failures) == 0) {
        struct timespec ts = {0, 50 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    atomic_store(&b.stop, 1);
    for (int i = 0; i < conns; i++) {
        pthread_join(th[i], NULL);
    }
    el = now_s() - t0;
    n = atomic_load(&b.requests);
    kill(pid, SIGTERM);
    waitpid(pid, &status, 0);
    printf("| %-11s | %5d | %8d | %10.0f | %12.0f | %8.1f | %8.1f | %4" PRIu64
           " |\n",
           count_only ? "count-only" : "storing", conns, rows, (double)n / el,
           (double)n * rows / el, (double)n * (double)raw_len / el / 1e6,
           (double)n * (double)gz_len / el / 1e6,
           (uint64_t)atomic_load(&b.failures));
    return atomic_load(&b.failures) == 0 ? 0 : -1;
}

int main(int argc, char **argv)
{
    const char *kadx = getenv("KADX_BIN") ? getenv("KADX_BIN") : KADX_BIN;
    double seconds = 3.0;
    int conns = 4;
    int rows = 1000;
    size_t req_len = 0;
    size_t raw_len = 0;
    size_t gz_len = 0;
    char *req;
    int rc = 0;

    for (int i = 1; i < argc; i++) {
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(argv[i], "--kadx") == 0 && v != NULL) {
            kadx = v;
            i++;
        } else if (strcmp(argv[i], "--seconds") == 0 && v != NULL) {
            seconds = strtod(v, NULL);
            i++;
        } else if (strcmp(argv[i], "--conns") == 0 && v != NULL) {
            conns = (int)strtol(v, NULL, 10);
            i++;
        } else if (strcmp(argv[i], "--rows") == 0 && v != NULL) {
            rows = (int)strtol(v, NULL, 10);
            i++;
        } else {
            fprintf(stderr, "usage: bench_emulator [--kadx PATH] [--seconds S] "
                            "[--conns C] [--rows R]\n");
            return 2;
        }
    }
    if (conns < 1 || conns > MAX_CONNS || rows < 1 || rows > 100000 ||
        seconds <= 0 || seconds > 600) {
        fprintf(stderr, "bench_emulator: bad --conns/--rows/--seconds\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    req = build_request(rows, &req_len, &raw_len, &gz_len);
    if (req == NULL) {
        fprintf(stderr, "bench_emulator: out of memory\n");
        return 1;
    }
    printf("ADX emulator streaming ingest: %s, %.0f s per mode, body %zu "
           "rows = %zu bytes JSON, %zu bytes gzip\n\n",
           kadx, seconds, (size_t)rows, raw_len, gz_len);
    printf("| mode        | conns | rows/req |  requests/s |       rows/s "
           "| MB/s raw |  MB/s gz | fail |\n");
    printf("|-------------|-------|----------|------------|--------------|"
           "----------|----------|------|\n");
    rc |=
        run_mode(kadx, 0, conns, rows, seconds, req, req_len, raw_len, gz_len);
    rc |=
        run_mode(kadx, 1, conns, rows, seconds, req, req_len, raw_len, gz_len);
    free(req);
    return rc == 0 ? 0 : 1;
}
