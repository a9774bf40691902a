/*
 * readjob.c - the admin API's journal reads on libuv's thread pool
 * (api_internal.h: rjob_*). Reading the journal's statistics scans every
 * chunk row (100+ ms for a few hundred thousand small chunks), so /status,
 * /metrics, /readyz and /dead-letters read it on the pool (journal reads
 * are safe from any thread) and build their answer back on the loop, where
 * the intake's and the forwarder's state may be read. One read runs at a
 * time; the others wait in order (struct admin's rq_head). admin_stop()
 * waits for reads that already started (they take milliseconds), so the
 * journal can be closed right after it.
 *
 * rjob_work runs on a pool thread and touches only its job, the journal's
 * read connection and the admin's jmu-guarded fields; everything else here
 * runs on the loop.
 */
#include "admin/api_internal.h"
#include "base/container_of.h"

#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

static void rjob_work(uv_work_t *w)
{
    struct rjob *j = container_of(w, struct rjob, w);
    struct admin *a = j->a;

    pthread_mutex_lock(&a->jmu);
    if (a->closing) {
        j->skipped = 1;
        pthread_mutex_unlock(&a->jmu);
        return;
    }
    a->jobs_in_work++;
    pthread_mutex_unlock(&a->jmu);
    if (j->what & RJ_STATS) {
        j->st_rc =
            journal_stats(a->src.journal, &j->st, j->st_err, sizeof(j->st_err));
    }
    if (j->what & RJ_DELIVERED) {
        j->dl_rc =
            journal_delivered_offsets(a->src.journal, &j->dl, &j->ndl, NULL, 0);
    }
    if (j->what & RJ_DEAD) {
        j->dead_rc = journal_dead_list(a->src.journal, j->route, j->after,
                                       j->limit, &j->list, &j->n, &j->total,
                                       j->dead_err, sizeof(j->dead_err));
    }
    pthread_mutex_lock(&a->jmu);
    a->jobs_in_work--;
    pthread_cond_broadcast(&a->jcv);
    pthread_mutex_unlock(&a->jmu);
}

static int rjob_queue(struct admin *a, struct rjob *j);

static void rjob_after(uv_work_t *w, int status)
{
    struct rjob *j = container_of(w, struct rjob, w);
    struct admin *a = j->a;
    struct rjob *next;

    if (status < 0 || j->skipped || a->stopped) {
        respond_error(j->req, 503, "the admin server is stopping");
    } else {
        j->answer(a, j->req, j);
    }
    if ((j->what & RJ_STATS) && j->st_rc == 0) {
        journal_stats_release(&j->st);
    }
    journal_delivered_free(j->dl, j->ndl);
    journal_dead_list_free(j->list, j->n);
    free(j);
    a->rjob_running = 0;
    while ((next = a->rq_head) != NULL) {
        a->rq_head = next->next;
        if (a->rq_head == NULL) {
            a->rq_tail = NULL;
        }
        if (!a->stopped) {
            if (rjob_queue(a, next) == 0) {
                break;
            }
            continue; /* answered 500: try the next one */
        }
        respond_error(next->req, 503, "the admin server is stopping");
        free(next);
        /* not op_done: j's own op_done is still owed, so a outlives this
         * (and gcc -O3 cannot see that the free there is unreachable) */
        assert(a->pending > 1);
        a->pending--;
    }
    op_done(a);
}

/* Hands j to the thread pool. 0, or -1 after answering 500 itself (j is
 * freed, its operation done). */
static int rjob_queue(struct admin *a, struct rjob *j)
{
    int rc = uv_queue_work(a->loop, &j->w, rjob_work, rjob_after);

    if (rc < 0) {
        respond_error(j->req, 500, "cannot queue the journal read: %s",
                      uv_strerror(rc));
        free(j);
        op_done(a);
        return -1;
    }
    a->rjob_running = 1;
    return 0;
}

/* Starts a read job; on failure answers 500 itself. j is taken. */
void rjob_start(struct admin *a, struct http_request *req, struct rjob *j,
                int what, rjob_answer_fn answer)
{
    j->a = a;
    j->req = req;
    j->what = what;
    j->answer = answer;
    a->pending++;
    if (a->rjob_running) {
        if (a->rq_tail != NULL) {
            a->rq_tail->next = j;
        } else {
            a->rq_head = j;
        }
        a->rq_tail = j;
        return;
    }
    rjob_queue(a, j);
}

struct rjob *rjob_new(struct http_request *req)
{
    struct rjob *j = calloc(1, sizeof(*j));

    if (j == NULL) {
        respond_error(req, 500, "out of memory");
    }
    return j;
}
