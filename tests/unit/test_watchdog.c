/*
 * test_watchdog.c - the stop watchdog (gateway/watchdog.c): a process whose
 * loop is stuck is ended at the deadline with the given status and one log
 * line naming the phase; a process that exits before the deadline keeps
 * its own status. Each case runs in a forked child whose stderr is a pipe.
 */
#include "base/clock.h"
#include "gateway/log.h"
#include "gateway/watchdog.h"

#include <errno.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

/* Forks; the child runs body(). Collects the child's stderr until it
 * closes, then its status; fails the test after 10 s. */
static int run_child(void (*body)(void), char *errbuf, size_t errlen,
                     int64_t *elapsed_ms)
{
    int64_t t0 = mono_ms();
    int fds[2];
    size_t len = 0;
    int status;
    pid_t pid;

    assert_int_equal(pipe(fds), 0);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(fds[0]);
        dup2(fds[1], STDERR_FILENO);
        close(fds[1]);
        body();
        _exit(99);
    }
    close(fds[1]);
    for (;;) {
        struct pollfd p = {.fd = fds[0], .events = POLLIN};
        int64_t left = t0 + 10000 - mono_ms();
        ssize_t r;

        if (left <= 0) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            close(fds[0]);
            fail_msg("the child did not end within 10 s");
        }
        if (poll(&p, 1, (int)left) <= 0) {
            continue;
        }
        r = read(fds[0], errbuf + len, errlen - 1 - len);
        if (r <= 0) {
            break;
        }
        len += (size_t)r;
        if (len == errlen - 1) {
            break;
        }
    }
    errbuf[len] = '\0';
    close(fds[0]);
    assert_int_equal(waitpid(pid, &status, 0), pid);
    *elapsed_ms = mono_ms() - t0;
    assert_true(WIFEXITED(status));
    return WEXITSTATUS(status);
}

static void stuck_body(void)
{
    struct watchdog *w = NULL;
    sigset_t none;

    if (watchdog_start(300, 7, &w) != 0) {
        _exit(98);
    }
    watchdog_phase(w, "intake stop");
    /* a loop thread that never comes back */
    sigemptyset(&none);
    for (;;) {
        sigsuspend(&none);
    }
}

static void test_stuck_process_ends_at_the_deadline(void **state)
{
    char err[4096];
    int64_t ms;
    int rc;

    (void)state;
    rc = run_child(stuck_body, err, sizeof(err), &ms);
    assert_int_equal(rc, 7);
    assert_true(ms >= 300);
    assert_true(ms < 5000);
    assert_non_null(strstr(err, "stop: not finished 300 ms after it began "
                                "(still in 'intake stop'): exiting now "
                                "with status 7"));
}

static void prompt_body(void)
{
    struct watchdog *w = NULL;

    if (watchdog_start(60000, 7, &w) != 0) {
        _exit(98);
    }
    watchdog_phase(w, "exit");
    exit(3); /* exits normally, atexit handlers and all */
}

static void test_prompt_exit_keeps_its_status(void **state)
{
    char err[4096];
    int64_t ms;
    int rc;

    (void)state;
    rc = run_child(prompt_body, err, sizeof(err), &ms);
    assert_int_equal(rc, 3);
    assert_true(ms < 5000);
    assert_null(strstr(err, "not finished"));
}

static void cancelled_body(void)
{
    struct watchdog *w = NULL;
    struct timespec past = {.tv_sec = 0, .tv_nsec = 500 * 1000000};

    if (watchdog_start(200, 7, &w) != 0) {
        _exit(98);
    }
    watchdog_cancel(w); /* joins the thread: no _exit(7) after this */
    while (nanosleep(&past, &past) != 0 && errno == EINTR) {
    }
    _exit(5);
}

/* A cancelled watchdog never fires, even once its deadline has passed. */
static void test_cancelled_watchdog_never_fires(void **state)
{
    char err[4096];
    int64_t ms;

    (void)state;
    assert_int_equal(run_child(cancelled_body, err, sizeof(err), &ms), 5);
    assert_true(ms >= 500);
    assert_null(strstr(err, "not finished"));
}

/* SIGTERM to the process still reaches a handler on the main thread: the
 * watchdog thread blocks every signal. */
static volatile sig_atomic_t got_term;
static void on_term(int sig)
{
    (void)sig;
    got_term = 1;
}

static void signal_body(void)
{
    struct watchdog *w = NULL;
    struct sigaction sa;
    sigset_t none;

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_term;
    sigaction(SIGTERM, &sa, NULL);
    if (watchdog_start(60000, 7, &w) != 0) {
        _exit(98);
    }
    kill(getpid(), SIGTERM);
    sigemptyset(&none);
    while (!got_term) {
        sigsuspend(&none);
    }
    _exit(4);
}

static void test_signals_stay_with_the_main_thread(void **state)
{
    char err[4096];
    int64_t ms;

    (void)state;
    assert_int_equal(run_child(signal_body, err, sizeof(err), &ms), 4);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stuck_process_ends_at_the_deadline),
        cmocka_unit_test(test_prompt_exit_keeps_its_status),
        cmocka_unit_test(test_signals_stay_with_the_main_thread),
        cmocka_unit_test(test_cancelled_watchdog_never_fires),
    };

    log_setup(LOG_INFO, LOG_TEXT);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
