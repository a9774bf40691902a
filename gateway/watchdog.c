/*
 * watchdog.c - a thread that ends the process at a deadline (watchdog.h).
 *
 * The thread sleeps on CLOCK_MONOTONIC until the deadline (absolute, so
 * EINTR only resumes the wait), logs one line and calls _exit(): no atexit
 * handler, no destructor, nothing that could wait for the stuck part. The
 * struct belongs to the thread; the loop thread only stores the phase
 * (an atomic pointer to a string literal).
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
    struct timespec deadline; /* CLOCK_MONOTONIC, absolute */
    int64_t deadline_ms;
    int exit_code;
    _Atomic(const char *) phase;
};

static void *watchdog_main(void *arg)
{
    struct watchdog *w = arg;

    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &w->deadline,
                           NULL) == EINTR) {
    }
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
    pthread_attr_t attr;
    pthread_t t;
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
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    /* the thread takes no signal: SIGTERM/SIGINT stay the loop's */
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    rc = pthread_create(&t, &attr, watchdog_main, w);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    pthread_attr_destroy(&attr);
    if (rc != 0) {
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
