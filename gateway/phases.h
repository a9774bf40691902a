/* Where the time between produce and ADX's acknowledgement goes.
 *
 * Per-batch (never per-event) durations of each step of the path, kept in
 * process-wide histograms and exposed on /metrics as kadx_phase_seconds
 * (gateway/FORWARDER.md, "Phases"). tests/bench/bench_e2e.py reads them
 * beside its end-to-end percentiles. Recording is a clock read and a few
 * relaxed atomic adds; it is safe from any thread. */
#ifndef KADX_PHASES_H
#define KADX_PHASES_H

#include <stdint.h>

enum phase {
    PHASE_FETCH,  /* produce timestamp -> intake got it (oldest of a read) */
    PHASE_QUEUE,  /* first message held -> its append handed to the journal */
    PHASE_APPEND, /* journal append + fsync */
    PHASE_COMMIT, /* offset commit sent -> the broker's acknowledgement */
    PHASE_SETTLE, /* settled offsets saved (write + fsync + rename) */
    PHASE_LINGER, /* first settled kick -> cut requested */
    PHASE_CUT,    /* batch cut in the journal */
    PHASE_BUILD,  /* body built and gzipped on the thread pool */
    PHASE_MARK_SENT, /* batch marked SENT in the journal (INV-4) */
    PHASE_INGEST,    /* HTTP request -> ADX's answer */
    PHASE_MARK_DONE, /* batch marked delivered in the journal */
    PHASE_COUNT
};

#define PHASE_BUCKETS 24

extern const double phase_bounds_s[PHASE_BUCKETS];

struct phase_snapshot {
    uint64_t bucket[PHASE_BUCKETS + 1]; /* not cumulative; last is +Inf */
    uint64_t count;
    uint64_t sum_us;
};

const char *phase_name(enum phase ph);

/* Monotonic microseconds (never 0, so 0 can mean "not started"). */
int64_t phase_now_us(void);

/* Counts one duration of us microseconds; negative ones are ignored. */
void phase_observe_us(enum phase ph, int64_t us);

/* Counts now - *start_us when *start_us is set, then clears it. */
void phase_end(enum phase ph, int64_t *start_us);

void phase_snapshot(enum phase ph, struct phase_snapshot *out);

/* Prometheus text of every phase (malloc'd, NULL when out of memory). */
char *phases_metrics_text(void);

/* For tests: all counts back to 0. */
void phases_reset(void);

#endif
