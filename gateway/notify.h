/*
 * notify.h - the service manager's side of `kadx run` (systemd's
 * Type=notify): READY=1 once the gateway runs, RELOADING=1 / READY=1 around
 * a SIGHUP reload, STOPPING=1 when the orderly stop begins, and WATCHDOG=1
 * from a loop timer at half of WatchdogSec (so a stuck loop gets the
 * process restarted). Without $NOTIFY_SOCKET (not under systemd) or when
 * kadx was built without libsystemd, every call does nothing.
 *
 * Threading: loop thread.
 */
#ifndef KADX_NOTIFY_H
#define KADX_NOTIFY_H

#include <uv.h>

struct notify {
    uv_timer_t watchdog;
    int armed; /* the watchdog timer is initialised */
};

/* READY=1 and the watchdog timer (when the manager asked for one). */
void notify_ready(struct notify *n, uv_loop_t *loop, const char *status);
void notify_reloading(void);
void notify_reloaded(const char *status);
/* STOPPING=1 and the watchdog timer closed (its memory is n's). */
void notify_stopping(struct notify *n);

#endif
