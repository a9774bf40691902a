/*
 * notify.c - sd_notify for `kadx run` (notify.h). Loop thread.
 */
#include "gateway/notify.h"

#include "gateway/log.h"

#include <stdint.h>
#include <stdio.h>

#ifdef KADX_HAVE_SYSTEMD
#include <systemd/sd-daemon.h>

static void on_watchdog(uv_timer_t *t)
{
    (void)t;
    sd_notify(0, "WATCHDOG=1");
}

void notify_ready(struct notify *n, uv_loop_t *loop, const char *status)
{
    uint64_t usec = 0;
    char msg[256];

    snprintf(msg, sizeof(msg), "READY=1\nSTATUS=%s", status);
    sd_notify(0, msg);
    if (sd_watchdog_enabled(0, &usec) > 0 && usec > 0) {
        uint64_t every = usec / 2000; /* half the period, in ms */

        uv_timer_init(loop, &n->watchdog);
        n->armed = 1;
        uv_timer_start(&n->watchdog, on_watchdog, every ? every : 1,
                       every ? every : 1);
        log_info("kadx", "systemd watchdog: every %llu ms",
                 (unsigned long long)(every ? every : 1));
    }
}

void notify_reloading(void)
{
    sd_notify(0, "RELOADING=1");
}

void notify_reloaded(const char *status)
{
    char msg[256];

    snprintf(msg, sizeof(msg), "READY=1\nSTATUS=%s", status);
    sd_notify(0, msg);
}

void notify_stopping(struct notify *n)
{
    sd_notify(0, "STOPPING=1");
    if (n->armed) {
        n->armed = 0;
        uv_close((uv_handle_t *)&n->watchdog, NULL);
    }
}

#else /* built without libsystemd: nothing to tell */

void notify_ready(struct notify *n, uv_loop_t *loop, const char *status)
{
    (void)n;
    (void)loop;
    (void)status;
}

void notify_reloading(void)
{
}

void notify_reloaded(const char *status)
{
    (void)status;
}

void notify_stopping(struct notify *n)
{
    (void)n;
}

#endif
