/*
 * test_gameplay.c - the GamePlay event generator (gateway/gameplay.c):
 * ranges, the shape of the numbers (mostly losses, wins a multiple of the
 * stake), determinism under a seed, the JSON and time formats, caps.
 */
#include "gateway/gameplay.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

static void test_init_rejects_bad_sizes(void **state)
{
    struct gameplay g;

    (void)state;
    assert_int_equal(gameplay_init(&g, 1, 0, 10), -EINVAL);
    assert_int_equal(gameplay_init(&g, 1, 10, 0), -EINVAL);
    assert_int_equal(gameplay_init(&g, 1, GAMEPLAY_MAX_PLAYERS + 1, 10),
                     -EINVAL);
    assert_int_equal(gameplay_init(&g, 1, 10, GAMEPLAY_MAX_GAMES + 1), -EINVAL);
    assert_int_equal(gameplay_init(&g, 1, 1, 1), 0);
}

static void test_ranges_and_distribution(void **state)
{
    static const int stakes[] = {1, 2, 5, 10, 20, 50, 100};
    struct gameplay g;
    int zero = 0;
    int low_players = 0;
    int seen_player[51] = {0};
    int seen_game[6] = {0};
    const int n = 20000;

    (void)state;
    assert_int_equal(gameplay_init(&g, 42, 50, 5), 0);
    for (int i = 0; i < n; i++) {
        struct gameplay_event ev;
        int stake_ok = 0;

        gameplay_next(&g, 1000, &ev);
        assert_in_range(ev.player_id, 1, 50);
        assert_in_range(ev.game_id, 1, 5);
        for (size_t k = 0; k < sizeof(stakes) / sizeof(stakes[0]); k++) {
            stake_ok |= ev.stake == stakes[k];
        }
        assert_true(stake_ok);
        assert_true(ev.win >= 0);
        assert_int_equal(ev.win % ev.stake, 0);
        assert_true(ev.win <= (int64_t)ev.stake * 100);
        assert_int_equal(ev.event_time_ms, 1000);
        zero += ev.win == 0;
        low_players += ev.player_id <= 25;
        seen_player[ev.player_id] = 1;
        seen_game[ev.game_id] = 1;
    }
    /* about 70% losses */
    assert_in_range(zero, n * 60 / 100, n * 80 / 100);
    /* skewed towards low ids: the lower half plays well over half */
    assert_in_range(low_players, n * 60 / 100, n * 80 / 100);
    for (int p = 1; p <= 50; p++) {
        assert_true(seen_player[p]);
    }
    for (int k = 1; k <= 5; k++) {
        assert_true(seen_game[k]);
    }
}

static void test_seed_is_deterministic(void **state)
{
    struct gameplay a;
    struct gameplay b;
    struct gameplay c;
    int differ = 0;

    (void)state;
    gameplay_init(&a, 7, 100, 10);
    gameplay_init(&b, 7, 100, 10);
    gameplay_init(&c, 8, 100, 10);
    for (int i = 0; i < 100; i++) {
        struct gameplay_event ea;
        struct gameplay_event eb;
        struct gameplay_event ec;

        gameplay_next(&a, 5, &ea);
        gameplay_next(&b, 5, &eb);
        gameplay_next(&c, 5, &ec);
        assert_int_equal(ea.player_id, eb.player_id);
        assert_int_equal(ea.game_id, eb.game_id);
        assert_int_equal(ea.win, eb.win);
        assert_int_equal(ea.stake, eb.stake);
        differ |= ea.player_id != ec.player_id || ea.win != ec.win;
    }
    assert_true(differ);
}

static void test_time_format(void **state)
{
    char buf[40];

    (void)state;
    assert_int_equal(gameplay_format_time(0, buf, sizeof(buf)), 24);
    assert_string_equal(buf, "1970-01-01T00:00:00.000Z");
    assert_int_equal(gameplay_format_time(1767225600123, buf, sizeof(buf)), 24);
    assert_string_equal(buf, "2026-01-01T00:00:00.123Z");
    /* before the epoch, milliseconds still count up within the second */
    assert_int_equal(gameplay_format_time(-1, buf, sizeof(buf)), 24);
    assert_string_equal(buf, "1969-12-31T23:59:59.999Z");
    assert_int_equal(gameplay_format_time(0, buf, 24), -ENOSPC);
    assert_int_equal(gameplay_format_time(0, buf, 25), 24);
}

static void test_json_format(void **state)
{
    struct gameplay_event ev = {
        .player_id = 17,
        .game_id = 3,
        .win = 2500,
        .stake = 100,
        .event_time_ms = 1767225600123,
    };
    char buf[GAMEPLAY_JSON_MAX];
    cJSON *obj;
    int n;

    (void)state;
    n = gameplay_format(&ev, buf, sizeof(buf));
    assert_true(n > 0);
    assert_int_equal((size_t)n, strlen(buf));
    assert_string_equal(buf, "{\"playerId\":17,\"gameId\":3,\"win\":2500,"
                             "\"stake\":100,\"eventTime\":\"2026-01-01T00:"
                             "00:00.123Z\"}");
    obj = cJSON_Parse(buf);
    assert_non_null(obj);
    assert_int_equal(cJSON_GetArraySize(obj), 5);
    assert_int_equal(cJSON_GetObjectItem(obj, "win")->valuedouble, 2500);
    cJSON_Delete(obj);

    assert_int_equal(gameplay_format(&ev, buf, (size_t)n), -ENOSPC);
    assert_int_equal(gameplay_format(&ev, buf, (size_t)n + 1), n);

    /* the largest values still fit GAMEPLAY_JSON_MAX */
    ev.player_id = GAMEPLAY_MAX_PLAYERS;
    ev.game_id = GAMEPLAY_MAX_GAMES;
    ev.win = INT64_MAX;
    ev.stake = INT32_MAX;
    assert_true(gameplay_format(&ev, buf, sizeof(buf)) > 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_init_rejects_bad_sizes),
        cmocka_unit_test(test_ranges_and_distribution),
        cmocka_unit_test(test_seed_is_deterministic),
        cmocka_unit_test(test_time_format),
        cmocka_unit_test(test_json_format),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
