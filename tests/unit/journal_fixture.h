/*
 * journal_fixture.h - the temporary journal that test_journal.c and
 * test_journal_retention.c (storage/journal.c's two cmocka programs) share:
 * a fresh directory per test (fx_setup/fx_teardown), opening and reopening
 * it, and ranges of events to append and cut.
 */
#ifndef KADX_TESTS_UNIT_JOURNAL_FIXTURE_H
#define KADX_TESTS_UNIT_JOURNAL_FIXTURE_H

#include "storage/journal.h"

#include <stddef.h>
#include <stdint.h>

struct fx {
    char dir[64];
    char path[128];
    struct journal *j;
    char err[256];
};

int fx_setup(void **state);
int fx_teardown(void **state);
void jopen(struct fx *f, int64_t max_bytes, int64_t disk_limit);
void jreopen(struct fx *f);

/* Events topic/partition offsets [from, to], value "v<offset>" (+pad). */
struct evs {
    struct journal_event *ev;
    char (*val)[256];
    size_t n;
};

void mkevs(struct evs *e, int route, const char *topic, int32_t part,
           int64_t from, int64_t to, size_t pad);
void freeevs(struct evs *e);
int append_range(struct fx *f, int route, const char *topic, int32_t part,
                 int64_t from, int64_t to, struct journal_append_result *res);
struct journal_batch *cut(struct fx *f, int route, int64_t rows, int64_t bytes);

#endif
