/*
 * watchdog.h - the last-resort bound on a stop (issue 12).
 *
 * `kadx run` stops in steps, each with its own deadline on the loop (intake
 * 15 s, forwarder 5 s: gateway/FORWARDER.md "Stopping"). Those deadlines
 * only work while the loop turns; a call that blocks the loop thread or the
 * exit itself (rd_kafka_destroy waiting for a consumer group that never
 * terminates, a journal fsync on a hung disk, a thread-pool job that never
 * returns) would still keep the process alive forever. The watchdog is a
 * thread of its own that ends the process with _exit(exit_code) once the
 * deadline has passed, whatever the loop is doing. Ending the process there
 * is as safe as kill -9, which the journal survives by design (INV-1..3).
 */
#ifndef KADX_WATCHDOG_H
#define KADX_WATCHDOG_H

#include <stdint.h>

struct watchdog;

/*
 * Starts the watchdog thread: deadline_ms from now it logs one error line
 * naming the last phase set (watchdog_phase) and calls _exit(exit_code),
 * unless watchdog_cancel was called before. Returns 0 and sets *out, or
 * -errno (then nothing was started).
 */
int watchdog_start(int64_t deadline_ms, int exit_code, struct watchdog **out);

/* Ends the wait, joins the thread and frees w (NULL: nothing). Called once
 * the stop has finished, from the thread that started it. */
void watchdog_cancel(struct watchdog *w);

/* Records what the stop is doing now, for the watchdog's message. phase
 * must be a string literal (borrowed for the life of the process). Any
 * thread. */
void watchdog_phase(struct watchdog *w, const char *phase);

#endif
