/*
 * gameplay.c - GamePlay events for `kadx produce` and `kadx demo`.
 *
 * The numbers imitate a slot machine so that the demo's leaderboard looks
 * like one: a stake from a small ladder of coin values (small stakes are
 * common), a win that is 0 on about 70% of spins and otherwise a multiple
 * of the stake (1x and 2x often, 100x rarely), players drawn with a skew so
 * that some play far more than others, games drawn uniformly. The PRNG is
 * xorshift64*: fast, seedable (tests pass --seed), not cryptographic.
 * Pure computation: no resources, no threads, callable from any one thread.
 */
#include "gateway/gameplay.h"

#include <errno.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

struct weighted {
    int32_t value;
    int32_t weight;
};

static const struct weighted stakes[] = {
    {1, 25}, {2, 25}, {5, 20}, {10, 15}, {20, 8}, {50, 5}, {100, 2},
};

/* Multipliers of the stake for a winning spin. */
static const struct weighted multipliers[] = {
    {1, 40}, {2, 25}, {3, 12}, {5, 10}, {10, 8}, {25, 4}, {100, 1},
};

/* Percentage of spins that win nothing. */
#define LOSS_PERCENT 70

static uint64_t next_u64(struct gameplay *g)
{
    uint64_t x = g->state;

    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    g->state = x;
    return x * UINT64_C(2685821657736338717);
}

/* Uniform double in [0, 1). */
static double next_unit(struct gameplay *g)
{
    return (double)(next_u64(g) >> 11) * (1.0 / 9007199254740992.0);
}

/* Uniform integer in [0, n). */
static uint32_t next_below(struct gameplay *g, uint32_t n)
{
    return (uint32_t)(next_unit(g) * n);
}

static int32_t pick(struct gameplay *g, const struct weighted *w, size_t n)
{
    int32_t total = 0;
    int32_t r;

    for (size_t i = 0; i < n; i++) {
        total += w[i].weight;
    }
    r = (int32_t)next_below(g, (uint32_t)total);
    for (size_t i = 0; i < n; i++) {
        if (r < w[i].weight) {
            return w[i].value;
        }
        r -= w[i].weight;
    }
    return w[n - 1].value;
}

int gameplay_init(struct gameplay *g, uint64_t seed, int32_t players,
                  int32_t games)
{
    if (players < 1 || players > GAMEPLAY_MAX_PLAYERS || games < 1 ||
        games > GAMEPLAY_MAX_GAMES) {
        return -EINVAL;
    }
    if (seed == 0) {
        struct timespec ts;

        clock_gettime(CLOCK_REALTIME, &ts);
        seed = ((uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec) ^
               ((uint64_t)getpid() << 32);
    }
    /* splitmix64 scrambles small seeds (1, 2, ...) into good states. */
    seed += UINT64_C(0x9e3779b97f4a7c15);
    seed = (seed ^ (seed >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    seed = (seed ^ (seed >> 27)) * UINT64_C(0x94d049bb133111eb);
    seed ^= seed >> 31;
    g->state = seed != 0 ? seed : 1;
    g->players = players;
    g->games = games;
    return 0;
}

void gameplay_next(struct gameplay *g, int64_t now_ms,
                   struct gameplay_event *ev)
{
    double u = next_unit(g);

    /* u^2 skews towards low ids: player 1 plays most, like regulars do. */
    ev->player_id = (int32_t)(u * u * g->players) + 1;
    if (ev->player_id > g->players) {
        ev->player_id = g->players;
    }
    ev->game_id = (int32_t)next_below(g, (uint32_t)g->games) + 1;
    ev->stake = pick(g, stakes, sizeof(stakes) / sizeof(stakes[0]));
    if ((int)next_below(g, 100) < LOSS_PERCENT) {
        ev->win = 0;
    } else {
        ev->win =
            (int64_t)ev->stake *
            pick(g, multipliers, sizeof(multipliers) / sizeof(multipliers[0]));
    }
    ev->event_time_ms = now_ms;
}

int64_t gameplay_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int gameplay_format_time(int64_t ms, char *buf, size_t len)
{
    time_t secs = (time_t)(ms >= 0 ? ms / 1000 : (ms - 999) / 1000);
    int millis = (int)(ms - (int64_t)secs * 1000);
    struct tm tm;
    int n;

    if (gmtime_r(&secs, &tm) == NULL) {
        return -EOVERFLOW;
    }
    n = snprintf(buf, len, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ",
                 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
                 tm.tm_min, tm.tm_sec, millis);
    if (n < 0 || (size_t)n >= len) {
        return -ENOSPC;
    }
    return n;
}

int gameplay_format(const struct gameplay_event *ev, char *buf, size_t len)
{
    char when[40];
    int rc;
    int n;

    rc = gameplay_format_time(ev->event_time_ms, when, sizeof(when));
    if (rc < 0) {
        return rc;
    }
    n = snprintf(buf, len,
                 "{\"playerId\":%d,\"gameId\":%d,\"win\":%lld,\"stake\":%d,"
                 "\"eventTime\":\"%s\"}",
                 (int)ev->player_id, (int)ev->game_id, (long long)ev->win,
                 (int)ev->stake, when);
    if (n < 0 || (size_t)n >= len) {
        return -ENOSPC;
    }
    return n;
}
