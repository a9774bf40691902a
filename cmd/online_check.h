/*
 * online_check.h - `kadx run --check --online`: Kafka and ADX reachable and
 * ready for the config's routes (online_check.c says what is checked).
 */
#ifndef KADX_ONLINE_CHECK_H
#define KADX_ONLINE_CHECK_H

#include <stdio.h>

struct config;

/*
 * Runs every check, one line per check to out ("ok   ..." / "FAIL ...",
 * then "online check: all ok" or "online check: FAILED"). Returns 0 when
 * all passed, 1 otherwise. Each network step is bounded (15 s). Main
 * thread; makes its own loop and Kafka client.
 */
int online_check(const struct config *cfg, FILE *out);

#endif
