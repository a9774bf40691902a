/*
 * api.h - the admin HTTP API of `kadx run` (DESIGN.md "Admin HTTP", issue
 * 7; notes in admin/ADMIN.md): health, readiness, status, Prometheus
 * metrics, dead letters, pause/resume and replay, served by admin/http.c on
 * the gateway's own libuv loop.
 *
 * Endpoints (JSON unless said otherwise; errors are JSON too):
 *   GET  /healthz               200 while the process serves
 *   GET  /readyz                200 or 503, with every check and its detail
 *   GET  /status                routes and partitions, offsets, counters
 *   GET  /metrics               Prometheus text format 0.0.4
 *   GET  /dead-letters          ?route=&after=&limit= (paged by id)
 *   POST /dead-letters/requeue  {} | {"route":R} | {"id":N}
 *   POST /pause, POST /resume   {} (whole gateway) | {"route":R}
 *   POST /replay                {"route":R, "partition":P, "from_offset":A,
 *                                "to_offset":B, "from_time":T, "to_time":T,
 *                                "topic":S, "mode":"all"|"missing"}
 * R is a route name or index. When a token is configured, every POST needs
 * "Authorization: Bearer <token>" (401 otherwise); with token_on_get every
 * GET too, except /healthz and /readyz (probes carry no token). Unknown path
 * 404, wrong method 405 (with Allow), oversized body 413, oversized headers
 * 431, a request that does not arrive in time 408 (admin/http.c).
 *
 * Threading: everything runs on the loop thread given to admin_start; the
 * sources it reads (intake, forwarder) belong to that thread too.
 */
#ifndef KADX_ADMIN_API_H
#define KADX_ADMIN_API_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

struct config;
struct journal;
struct intake;
struct forwarder;
struct admin;

/* What the API reads and steers; all borrowed and must outlive the admin
 * (until admin_stop). intake and forwarder may be NULL (not running: the
 * API says so in /readyz and /status). The journal must have been opened
 * with this loop (async writes for requeue and replay). */
struct admin_sources {
    const struct config *cfg;
    struct journal *journal;
    struct intake *intake;
    struct forwarder *forwarder;
};

struct admin_options {
    const char *listen;        /* "HOST:PORT" (port 0 = any free port) */
    const char *token;         /* bearer token for POSTs; NULL/"" = none */
    uint64_t read_timeout_ms;  /* slow request -> 408; 0 = 5000 */
    size_t max_header_bytes;   /* 0 = 16 KiB */
    size_t max_body_bytes;     /* 0 = 64 KiB */
    int token_on_get;          /* 1: GETs need the token too (not /healthz,
                                  /readyz) */
    const char *tls_cert;      /* PEM certificate chain; NULL = plain HTTP */
    const char *tls_key;       /* PEM private key (with tls_cert) */
    size_t max_connections;    /* 0 = 64 */
    double max_requests_per_s; /* per connection; 0 = 20 */
};

/*
 * Starts the server: binds o->listen and serves until admin_stop. The
 * token (if any) is registered with log_add_secret. Returns 0 and *out, or
 * -errno with err filled (nothing left running).
 */
int admin_start(uv_loop_t *loop, const struct admin_sources *src,
                const struct admin_options *o, struct admin **out, char *err,
                size_t errlen);

/* The bound port (useful with port 0). */
int admin_port(const struct admin *a);

/*
 * Reloads the TLS certificate and key from the files cert and key (NULL:
 * the files in use), for SIGHUP: a renewed certificate is served to new
 * connections; open ones keep theirs. On failure the old pair (and its
 * file names) stays in use. Returns 0, -ENOENT when TLS is off, or a
 * negative errno with err naming the file and OpenSSL's reason. Loop
 * thread.
 */
int admin_reload_tls(struct admin *a, const char *cert, const char *key,
                     char *err, size_t errlen);

/*
 * Updates the sources (e.g. the forwarder started after the admin). Loop
 * thread.
 */
void admin_set_sources(struct admin *a, const struct admin_sources *src);

/*
 * SIGHUP reload: from now on the API reads cfg (borrowed; same routes as
 * before) and checks POSTs against cfg->admin.token. The ADX client of
 * `replay mode=missing` is made again from cfg on its next use (a reconcile
 * running now finishes with the old one). admin.listen needs a restart.
 * Returns 0 or -ENOMEM (nothing changed). Loop thread.
 */
int admin_reconfigure(struct admin *a, const struct config *cfg);

/*
 * Stops listening and closes every connection; requests still waiting for
 * the journal are answered with nothing (their connections are gone) when
 * the journal calls back. Memory goes once the last of those callbacks ran
 * and the loop has run the close callbacks. Call it before closing the
 * journal. NULL-safe.
 */
void admin_stop(struct admin *a);

#endif
