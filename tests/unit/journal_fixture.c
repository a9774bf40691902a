/*
 * journal_fixture.c - the temporary journal of storage/journal.c's unit
 * tests (journal_fixture.h).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "tests/unit/journal_fixture.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int fx_setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));

    snprintf(f->dir, sizeof(f->dir), "/tmp/test_journal.XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->path, sizeof(f->path), "%s/j.db", f->dir);
    *state = f;
    return 0;
}

int fx_teardown(void **state)
{
    struct fx *f = *state;
    char cmd[160];

    journal_close(f->j);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
    if (system(cmd) != 0) {
        return -1;
    }
    free(f);
    return 0;
}

void jopen(struct fx *f, int64_t max_bytes, int64_t disk_limit)
{
    struct journal_options o;

    memset(&o, 0, sizeof(o));
    o.path = f->path;
    o.max_bytes = max_bytes;
    o.sync_full = 1;
    o.disk_limit_bytes = disk_limit;
    int rc = journal_open(&o, &f->j, f->err, sizeof(f->err));
    if (rc != 0) {
        fail_msg("open: %d %s", rc, f->err);
    }
}

void jreopen(struct fx *f)
{
    journal_close(f->j);
    f->j = NULL;
    jopen(f, 0, 0);
}

void mkevs(struct evs *e, int route, const char *topic, int32_t part,
           int64_t from, int64_t to, size_t pad)
{
    e->n = (size_t)(to - from + 1);
    e->ev = calloc(e->n, sizeof(*e->ev));
    e->val = calloc(e->n, sizeof(*e->val));
    for (size_t i = 0; i < e->n; i++) {
        int64_t off = from + (int64_t)i;
        int len = snprintf(e->val[i], sizeof(e->val[i]), "v%" PRId64, off);
        memset(e->val[i] + len, 'x', pad);
        e->ev[i].route = route;
        e->ev[i].topic = topic;
        e->ev[i].partition = part;
        e->ev[i].offset = off;
        e->ev[i].timestamp_ms = 1000 + off;
        e->ev[i].value = e->val[i];
        e->ev[i].value_len = (size_t)len + pad;
        if (off % 2 == 0) {
            e->ev[i].key = "k";
            e->ev[i].key_len = 1;
        }
        e->ev[i].headers = off % 3 == 0 ? "h" : NULL;
        e->ev[i].headers_len = off % 3 == 0 ? 1 : 0;
    }
}

void freeevs(struct evs *e)
{
    free(e->ev);
    free(e->val);
}

int append_range(struct fx *f, int route, const char *topic, int32_t part,
                 int64_t from, int64_t to, struct journal_append_result *res)
{
    struct evs e;
    mkevs(&e, route, topic, part, from, to, 0);
    int rc = journal_append(f->j, e.ev, e.n, res, f->err, sizeof(f->err));
    freeevs(&e);
    return rc;
}

struct journal_batch *cut(struct fx *f, int route, int64_t rows, int64_t bytes)
{
    struct journal_cut_req q;
    struct journal_batch *b = NULL;

    memset(&q, 0, sizeof(q));
    q.route = route;
    q.max_rows = rows;
    q.max_bytes = bytes;
    q.settled_all = 1;
    int rc = journal_batch_cut(f->j, &q, &b, f->err, sizeof(f->err));
    if (rc != 0) {
        fail_msg("cut: %d %s", rc, f->err);
    }
    return b;
}
