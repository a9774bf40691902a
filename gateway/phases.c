#include "gateway/phases.h"

#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

const double phase_bounds_s[PHASE_BUCKETS] = {
    0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075,
    0.01,   0.015,   0.02,   0.025, 0.03,  0.04,  0.05,  0.075,
    0.1,    0.15,    0.2,    0.3,   0.5,   1,     2.5,   10,
};

static const char *const names[PHASE_COUNT] = {
    "fetch", "queue", "append",    "commit", "settle",    "linger",
    "cut",   "build", "mark_sent", "ingest", "mark_done",
};

struct phase_hist {
    _Atomic uint64_t bucket[PHASE_BUCKETS + 1];
    _Atomic uint64_t count;
    _Atomic uint64_t sum_us;
};

static struct phase_hist hist[PHASE_COUNT];

const char *phase_name(enum phase ph)
{
    return (unsigned)ph < PHASE_COUNT ? names[ph] : "?";
}

int64_t phase_now_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000 + 1;
}

void phase_observe_us(enum phase ph, int64_t us)
{
    struct phase_hist *h;
    size_t i = 0;
    double s;

    if ((unsigned)ph >= PHASE_COUNT || us < 0) {
        return;
    }
    h = &hist[ph];
    s = (double)us / 1e6;
    while (i < PHASE_BUCKETS && s > phase_bounds_s[i]) {
        i++;
    }
    atomic_fetch_add_explicit(&h->bucket[i], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->count, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->sum_us, (uint64_t)us, memory_order_relaxed);
}

void phase_end(enum phase ph, int64_t *start_us)
{
    if (*start_us > 0) {
        phase_observe_us(ph, phase_now_us() - *start_us);
        *start_us = 0;
    }
}

void phase_snapshot(enum phase ph, struct phase_snapshot *out)
{
    memset(out, 0, sizeof(*out));
    if ((unsigned)ph >= PHASE_COUNT) {
        return;
    }
    for (size_t i = 0; i <= PHASE_BUCKETS; i++) {
        out->bucket[i] =
            atomic_load_explicit(&hist[ph].bucket[i], memory_order_relaxed);
    }
    out->count = atomic_load_explicit(&hist[ph].count, memory_order_relaxed);
    out->sum_us = atomic_load_explicit(&hist[ph].sum_us, memory_order_relaxed);
}

void phases_reset(void)
{
    for (size_t p = 0; p < PHASE_COUNT; p++) {
        for (size_t i = 0; i <= PHASE_BUCKETS; i++) {
            atomic_store(&hist[p].bucket[i], 0);
        }
        atomic_store(&hist[p].count, 0);
        atomic_store(&hist[p].sum_us, 0);
    }
}

char *phases_metrics_text(void)
{
    static const char name[] = "kadx_phase_seconds";
    size_t cap = 1024 + (size_t)PHASE_COUNT * (PHASE_BUCKETS + 3) * 128;
    char *t = malloc(cap);
    size_t len = 0;

    if (t == NULL) {
        return NULL;
    }
    len += (size_t)snprintf(
        t + len, cap - len,
        "# HELP %s Seconds each step of the path from produce to ADX's "
        "acknowledgement took, per batch (FORWARDER.md, Phases).\n"
        "# TYPE %s histogram\n",
        name, name);
    for (size_t p = 0; p < PHASE_COUNT; p++) {
        struct phase_snapshot s;
        uint64_t cum = 0;

        phase_snapshot((enum phase)p, &s);
        for (size_t i = 0; i <= PHASE_BUCKETS; i++) {
            cum += s.bucket[i];
            if (i < PHASE_BUCKETS) {
                len += (size_t)snprintf(
                    t + len, cap - len,
                    "%s_bucket{phase=\"%s\",le=\"%g\"} %" PRIu64 "\n", name,
                    names[p], phase_bounds_s[i], cum);
            } else {
                len += (size_t)snprintf(
                    t + len, cap - len,
                    "%s_bucket{phase=\"%s\",le=\"+Inf\"} %" PRIu64 "\n", name,
                    names[p], cum);
            }
        }
        len += (size_t)snprintf(t + len, cap - len,
                                "%s_sum{phase=\"%s\"} %.6f\n"
                                "%s_count{phase=\"%s\"} %" PRIu64 "\n",
                                name, names[p], (double)s.sum_us / 1e6, name,
                                names[p], s.count);
    }
    return t;
}
