/*
 * adx_emulator_internal.h - the ADX emulator's state (`struct emu`, owned
 * by its loop thread) and what adx_emulator.c (the command, routing, auth,
 * query and ingest) shares with adx_control.c (the control endpoint
 * /_emulator/: faults and statistics). Not for use outside those files.
 */
#ifndef KADX_EMULATOR_ADX_EMULATOR_INTERNAL_H
#define KADX_EMULATOR_ADX_EMULATOR_INTERNAL_H

#include "admin/http.h"
#include "emulators/dm.h"
#include "emulators/emu.h"
#include "emulators/ingest.h"
#include "emulators/kusto.h"
#include "emulators/render.h"

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#define EMU_MAX_DATABASES 32
#define EMU_MAX_TOKENS    4096
#define EMU_MAX_TABLES    1024
#define EMU_MAX_UNZIPPED  (64u * 1024u * 1024u)
#define EMU_NAME_MAX      256
#define TICKS_PER_SEC     10000000LL
#define TICKS_PER_DAY     (86400LL * TICKS_PER_SEC)

struct issued_token {
    char value[80];
    int64_t expires_ms;
};

struct table_count {
    char name[2 * EMU_NAME_MAX + 2]; /* "db.table" */
    uint64_t rows;
};

struct faults {
    int fail_count;
    int fail_status;
    int fail_permanent;
    char fail_code[64];
    char fail_message[256];
    uint64_t latency_ms;
    double late_share;    /* share of ingest requests applied late, 0: off */
    uint64_t late_min_ms; /* their delay: uniform in [min, max] */
    uint64_t late_max_ms;
    int reset_count;
    double throttle_rps;          /* 0: off */
    int retry_after_s;            /* for 429s; 0: derived from the rate */
    double bucket;                /* throttle tokens */
    uint64_t bucket_at_ms;        /* last refill */
    uint64_t token_down_until_ms; /* token endpoints answer 503 until then */
};

struct stats {
    uint64_t requests;
    uint64_t ingest_requests;
    uint64_t ingest_ok;
    uint64_t ingest_failed;
    uint64_t queries;
    uint64_t mgmt;
    uint64_t auth_failures;
    uint64_t fired_fail;
    uint64_t fired_latency;
    uint64_t fired_reset;
    uint64_t fired_throttle;
    uint64_t fired_token;      /* token requests refused (token_down_ms) */
    uint64_t fired_late;       /* requests that took the late path */
    uint64_t late_applied;     /* ... applied after their delay */
    uint64_t late_client_gone; /* ... of which the client had hung up */
    uint64_t late_expired;     /* ... cut off by servertimeout first */
};

struct delayed;

struct emu {
    uv_loop_t *loop;
    struct http_server *srv;
    struct kusto *k;
    uv_signal_t sigterm;
    uv_signal_t sigint;
    int stopping;
    /* options */
    char listen[256];
    const char *databases[EMU_MAX_DATABASES];
    size_t ndatabases;
    const char *data_path;
    int auth_token;
    const char *client_id;
    const char *client_secret;
    const char *static_token;
    long token_lifetime_s;
    int count_only;
    size_t max_body;
    /* state */
    struct issued_token *tokens;
    size_t ntokens;
    struct table_count *tables;
    size_t ntables;
    struct faults f;
    struct stats st;
    struct delayed *delayed;    /* requests waiting out a latency fault */
    char *map_json;             /* the last mapping parsed, its text */
    struct ingest_mapping *map; /* ... and its parse (owned) */
    struct dm_config dmc;       /* queued ingestion (--storage-*) */
    struct dm *dm;              /* ... its worker, or NULL */
};

/* A request that waits out the latency fault before it is processed, or
 * the late-apply fault before it is applied (late) or cut off (expire). */
enum delay_kind { DELAY_LATENCY = 0, DELAY_LATE, DELAY_EXPIRE };

struct delayed {
    uv_timer_t timer;
    struct emu *e;
    struct http_request *req;
    enum delay_kind kind;
    struct delayed *next;
    struct delayed *prev;
};

/* Per request: the ids echoed in the answer's headers. */
struct ctx {
    char crid[160];
    char aid[37];
    struct http_header hdrs[4];
    size_t nhdrs;
    char retry_after[16];
};

/* Answers req with status and the body in b (JSON; b's text is taken) plus
 * c's headers. */
void emu_respond(struct http_request *req, struct ctx *c, int status,
                 struct sbuf *b);
/* Answers a OneApi error with the message fmt. */
void emu_respond_error(struct http_request *req, struct ctx *c, int status,
                       const char *code, int permanent, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));

/* adx_control.c: clears every fault (at start, POST /_emulator/reset) */
void emu_faults_clear(struct emu *e);
/* adx_control.c: /_emulator/faults, /_emulator/stats, /_emulator/reset */
void emu_handle_control(struct emu *e, struct http_request *req, struct ctx *c);

#endif
