/*
 * watchdog.c - a thread that ends the process at a deadline (watchdog.h).
 *
 * The thread waits on a condition variable clocked on CLOCK_MONOTONIC
 * until the absolute deadline (a spurious wake-up only resumes the wait),
 * logs one line and calls _exit(): no atexit handler, no destructor,
 * nothing that could wait for the stuck part. The loop thread stores the
 * phase (an atomic pointer to a string literal) and, once the stop has
 * finished, cancels the wait and joins the thread (watchdog_cancel), so
 * that a clean exit leaves no thread or memory behind (valgrind).
 */
#include "gateway/watchdog.h"

#include "gateway/log.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

struct watchdog {
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cond;      /* clocked on CLOCK_MONOTONIC */
    int cancelled;            /* under mu */
    struct timespec deadline; /* CLOCK_MONOTONIC, absolute */
    int64_t deadline_ms;
    int exit_code;
    _Atomic(const char *) phase;
};

static void *watchdog_main(void *arg)
{
    struct watchdog *w = arg;
    int rc = 0;

    pthread_setname_np(pthread_self(), "kadx-watchdog");
    pthread_mutex_lock(&w->mu);
    while (!w->cancelled && rc != ETIMEDOUT) {
        rc = pthread_cond_timedwait(&w->cond, &w->mu, &w->deadline);
    }
    if (w->cancelled) {
        pthread_mutex_unlock(&w->mu);
        return NULL;
    }
    pthread_mutex_unlock(&w->mu);
    log_error("kadx",
              "stop: not finished %" PRId64 " ms after it began (still in "
              "'%s'): exiting now with status %d; the journal is consistent "
              "as after kill -9",
              w->deadline_ms, atomic_load(&w->phase), w->exit_code);
    _exit(w->exit_code);
    return NULL;
}

int watchdog_start(int64_t deadline_ms, int exit_code, struct watchdog **out)
{
    struct watchdog *w = calloc(1, sizeof(*w));
    pthread_condattr_t cattr;
    sigset_t all;
    sigset_t old;
    int rc;

    if (w == NULL) {
        return -ENOMEM;
    }
    clock_gettime(CLOCK_MONOTONIC, &w->deadline);
    w->deadline.tv_sec += deadline_ms / 1000;
    w->deadline.tv_nsec += (deadline_ms % 1000) * 1000000;
    if (w->deadline.tv_nsec >= 1000000000) {
        w->deadline.tv_sec++;
        w->deadline.tv_nsec -= 1000000000;
    }
    w->deadline_ms = deadline_ms;
    w->exit_code = exit_code;
    atomic_init(&w->phase, "stopping");
    pthread_mutex_init(&w->mu, NULL);
    pthread_condattr_init(&cattr);
    pthread_condattr_setclock(&cattr, CLOCK_MONOTONIC);
    pthread_cond_init(&w->cond, &cattr);
    pthread_condattr_destroy(&cattr);
    /* the thread takes no signal: SIGTERM/SIGINT stay the loop's */
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    rc = pthread_create(&w->thread, NULL, watchdog_main, w);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        pthread_cond_destroy(&w->cond);
        pthread_mutex_destroy(&w->mu);
        free(w);
        return -rc;
    }
    *out = w;
    return 0;
}

void watchdog_phase(struct watchdog *w, const char *phase)
{
    if (w != NULL) {
        atomic_store(&w->phase, phase);
    }
}

void watchdog_cancel(struct watchdog *w)
{
    if (w == NULL) {
        return;
    }
    pthread_mutex_lock(&w->mu);
    w->cancelled = 1;
    pthread_cond_signal(&w->cond);
    pthread_mutex_unlock(&w->mu);
    pthread_join(w->thread, NULL);
    pthread_cond_destroy(&w->cond);
    pthread_mutex_destroy(&w->mu);
    free(w);
}
