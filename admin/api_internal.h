/*
 * api_internal.h - what the admin API's files share (private to admin/):
 * the admin's state, the answer helpers, and the journal reads on the
 * thread pool. api.c routes and owns the lifecycle; readjob.c runs the
 * reads; status.c answers /readyz and /status; metrics.c renders /metrics.
 * Loop thread only, except where a field says "under jmu".
 */
#ifndef KADX_ADMIN_API_INTERNAL_H
#define KADX_ADMIN_API_INTERNAL_H

#include "admin/api.h"
#include "admin/http.h"
#include "storage/journal.h"

#include <cjson/cJSON.h>
#include <pthread.h>
#include <stdint.h>
#include <uv.h>

struct journal_delivered;

struct admin {
    uv_loop_t *loop;
    struct http_server *srv;
    struct admin_sources src;
    char *token;      /* NULL = POSTs are open */
    int token_on_get; /* GETs need the token too (not /healthz, /readyz) */
    char *tls_cert;   /* NULL = plain HTTP */
    char *tls_key;
    int64_t started_ms;
    int paused_all;       /* POST /pause without a route */
    int stopped;          /* admin_stop ran */
    int pending;          /* journal/ADX operations not called back yet */
    struct reconcile *rc; /* the one reconcile running, or NULL */
    struct http_request *rc_req; /* the request it answers */
    /* journal reads on the thread pool (see rjob_*) */
    pthread_mutex_t jmu;
    pthread_cond_t jcv;
    int closing;      /* under jmu: no new read may start */
    int jobs_in_work; /* under jmu: reads running now */
    /* loop thread: one journal read queued on the thread pool at a time;
     * the others wait here in order, so an admin flood cannot take the
     * pool's threads (the intake's settled-file writes use them) or more
     * than one core of scans */
    int rjob_running;
    struct rjob *rq_head, *rq_tail;
};

/* An operation finished: drop the count; the last one after admin_stop
 * frees the admin. */
void op_done(struct admin *a);

/* Answers a JSON error {"error":{...}} with status (401 adds
 * WWW-Authenticate). */
void respond_error(struct http_request *req, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Sends obj (consumed) as the JSON body. */
void respond_obj(struct http_request *req, int status, cJSON *obj);

/* A number member; an offset member (-1, "none", becomes null). */
void add_num(cJSON *o, const char *name, double v);
void add_off(cJSON *o, const char *name, int64_t v);

/* ------------------------------------------------ journal reads, off-loop */

/*
 * Reading the journal's statistics scans every chunk row (100+ ms for a few
 * hundred thousand small chunks), so /status, /metrics, /readyz and
 * /dead-letters read it on libuv's thread pool (journal reads are safe from
 * any thread) and build their answer back on the loop, where the intake's
 * and the forwarder's state may be read. admin_stop() waits for reads that
 * already started (they take milliseconds), so the journal can be closed
 * right after it.
 */
enum { RJ_STATS = 1, RJ_DELIVERED = 2, RJ_DEAD = 4 };

struct rjob;
typedef void (*rjob_answer_fn)(struct admin *a, struct http_request *req,
                               struct rjob *j);

struct rjob {
    uv_work_t w;
    struct rjob *next; /* waiting for the running read (rjob_start) */
    struct admin *a;
    struct http_request *req;
    rjob_answer_fn answer;
    int what;    /* RJ_* */
    int skipped; /* the admin was stopping: nothing read */
    int st_rc;   /* RJ_STATS */
    char st_err[256];
    struct journal_stats st;
    int dl_rc; /* RJ_DELIVERED */
    struct journal_delivered *dl;
    size_t ndl;
    int dead_rc; /* RJ_DEAD: in route, after, limit; out list, n, total */
    char dead_err[256];
    int route;
    int64_t after;
    size_t limit;
    struct journal_dead *list;
    size_t n;
    int64_t total;
};

/* A zeroed job, or NULL after answering 500 itself. */
struct rjob *rjob_new(struct http_request *req);

/* Starts a read job (what: RJ_*); answer runs on the loop with the
 * results; on failure answers 500 itself. j is taken. */
void rjob_start(struct admin *a, struct http_request *req, struct rjob *j,
                int what, rjob_answer_fn answer);

/* GET /readyz and GET /status (status.c). */
void h_readyz(struct admin *a, struct http_request *req);
void h_status(struct admin *a, struct http_request *req);

#endif
