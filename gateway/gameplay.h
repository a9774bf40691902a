/*
 * gameplay.h - the GamePlay event generator behind `kadx produce` and
 * `kadx demo`: believable slot-machine spins as JSON objects
 * {"playerId":int,"gameId":int,"win":long,"stake":int,"eventTime":"ISO"}.
 *
 * A struct gameplay is a plain value (a seeded PRNG and the population
 * sizes); it has no resources to release. One thread uses a generator at a
 * time.
 */
#ifndef KADX_GAMEPLAY_H
#define KADX_GAMEPLAY_H

#include <stddef.h>
#include <stdint.h>

/* Caps on the population flags (--players, --games). */
#define GAMEPLAY_MAX_PLAYERS 10000000
#define GAMEPLAY_MAX_GAMES   100000

/* Room for one formatted event, including the NUL; always enough. */
#define GAMEPLAY_JSON_MAX 160

struct gameplay_event {
    int32_t player_id;     /* 1..players, skewed towards low ids */
    int32_t game_id;       /* 1..games, uniform */
    int64_t win;           /* 0 most of the time, else a multiple of stake */
    int32_t stake;         /* 1, 2, 5, 10, 20, 50 or 100 */
    int64_t event_time_ms; /* Unix epoch milliseconds, UTC */
};

struct gameplay {
    uint64_t state; /* xorshift64* state, never 0 */
    int32_t players;
    int32_t games;
};

/*
 * Sets up g. seed 0 picks one from the clock and the PID. Returns 0, or
 * -EINVAL when players or games is outside 1..GAMEPLAY_MAX_*.
 */
int gameplay_init(struct gameplay *g, uint64_t seed, int32_t players,
                  int32_t games);

/* Draws the next event, stamped with now_ms (see gameplay_now_ms()). */
void gameplay_next(struct gameplay *g, int64_t now_ms,
                   struct gameplay_event *ev);

/* The current wall-clock time in Unix epoch milliseconds. */
int64_t gameplay_now_ms(void);

/*
 * Writes ms as "YYYY-MM-DDTHH:MM:SS.mmmZ" (UTC) into buf. Returns the
 * length, or -ENOSPC when buf is too small (25 bytes are enough), or
 * -EOVERFLOW for a time gmtime cannot represent.
 */
int gameplay_format_time(int64_t ms, char *buf, size_t len);

/*
 * Writes ev as one compact JSON object (no newline) into buf. Returns the
 * length, or -ENOSPC when buf is too small (GAMEPLAY_JSON_MAX is enough).
 */
int gameplay_format(const struct gameplay_event *ev, char *buf, size_t len);

#endif
