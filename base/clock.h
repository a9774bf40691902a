/*
 * clock.h - the two clocks kadx reads, in milliseconds.
 *
 * wall_ms: CLOCK_REALTIME, ms since the Unix epoch, for timestamps that
 * leave the process (journal rows, /status, logs, token expiry). It can
 * jump (NTP, an operator); never measure a duration with it.
 * mono_ms: CLOCK_MONOTONIC, ms since an arbitrary start, for durations and
 * deadlines. Both read the clock fresh on every call (unlike libuv's cached
 * uv_now), so a send is never dated earlier than it was. Thread-safe.
 */
#ifndef KADX_BASE_CLOCK_H
#define KADX_BASE_CLOCK_H

#include <stdint.h>

int64_t wall_ms(void);
int64_t mono_ms(void);

#endif
