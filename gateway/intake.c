/*
 * intake.c - Kafka -> journal, on the libuv loop (DESIGN.md INV-1, 2, 3, 7).
 *
 * This file holds the design (below) and the intake's lifecycle: start
 * (librdkafka's configuration, the loop wiring), the tick, the stop
 * sequence and free. The rest is split by concern into intake_consume.c,
 * intake_offsets.c, intake_append.c, intake_commit.c and intake_table.c
 * (intake_internal.h says which holds what).
 *
 * Wiring. The consumer's queue (the main queue, logs and rebalances are
 * forwarded into it: rd_kafka_poll_set_consumer, log.queue=true) signals a
 * pipe through rd_kafka_queue_io_event_enable(); a uv_poll_t watches the
 * pipe. librdkafka writes one byte when the queue goes from "served" to
 * non-empty, so every wake-up drains the queue with non-blocking
 * rd_kafka_consume_batch_queue(timeout 0) calls until a call returns less
 * than a full batch; after INTAKE_WAKE_BUDGET full batches it yields to the
 * loop and continues from a uv_idle_t. Rebalance, commit, error and log
 * callbacks run inside those calls, on the loop thread.
 *
 * The pipeline, per message:
 *   consumed -> acc (accumulating, up to INTAKE_ACC_MAX_*) -> fly (the ONE
 *   journal append in flight) -> durable (append callback) -> commit sent ->
 *   commit acknowledged ("acked") -> saved in "<journal>.settled" (fsync'd)
 *   -> settled (exposed to the forwarder).
 * One append in flight keeps the journal free of gaps: if an append fails
 * (-ENOSPC: byte cap or disk full) nothing after it has been journaled, so
 * the same messages (kept, not re-fetched) are appended again later and no
 * offset is skipped. While one append runs, the next one accumulates, so
 * each transaction carries everything consumed during the previous fsync
 * (group commit on our side too).
 *
 * INV-1: the commit for a partition is durable+1 where durable is the
 * highest offset the journal reported durable (skipped tombstones count as
 * durable once everything before them is).
 *
 * INV-2: on assignment the consumer starts at max(group committed, journal
 * high + 1); the committed offsets are read with rd_kafka_committed(), the
 * one blocking call on assignment (see "Blocking calls" below). Messages
 * below that start are skipped here and the journal ignores any
 * redelivery anyway.
 *
 * INV-3 and the settled watermark. An event in our journal may be sent only
 * if it is settled: this instance's commit covering it was acknowledged.
 * The acknowledged watermark is saved to "<journal>.settled" (write, fsync,
 * rename) before it is exposed, so that after a crash we know which of our
 * journaled events were ours to deliver: events above it were never
 * committed by us, and if the group's committed offset has moved past them
 * meanwhile, another member journaled and settled them, so ours are dropped
 * (journal_drop_partition) before consuming resumes. Every commit carries
 * metadata "kadx1 <our journal uuid> [<earlier committer>@<offset> ...]"
 * (each earlier committer once, with the offset it had committed when it
 * handed over; newest first, at most INTAKE_CHAIN_MAX), which
 * closes the crash window between a commit's acknowledgement and the save:
 * if the last committer of a partition is us, the committed offset is
 * ours; if an earlier one in the chain is us, the offset we handed over at
 * is. On a revoke, what is durable is committed
 * synchronously and whatever is still in flight is dropped after the
 * append (the journal runs requests in order); on a lost partition nothing
 * can be committed, so everything unsettled is dropped.
 *
 * Blocking calls on the loop thread (all rare, all bounded):
 *  - rd_kafka_committed() on assignment: consuming cannot start before the
 *    committed offsets are known (INV-2), librdkafka's own fetch start waits
 *    for the same OffsetFetch, and the whole group is stopped in the
 *    rebalance anyway; timeout INTAKE_COMMITTED_TIMEOUT_MS.
 *  - rd_kafka_commit() (sync) on revoke: the partitions must not be handed
 *    to the next owner before the durable offsets are committed, else it
 *    would consume them again and both instances would hold them; the
 *    rebalance waits for this member anyway. librdkafka bounds it by the
 *    request timeout.
 *  - journal_high_offset() on assignment (a read on the WAL read
 *    connection, no fsync).
 *
 * Offset resets (gateway/INTAKE.md "Offsets that go backwards"). librdkafka
 * runs with auto.offset.reset=error, so it never moves a partition's fetch
 * position on its own: a position the broker refuses (out of range) comes
 * back as an __AUTO_OFFSET_RESET error message, and on every one (the first
 * fetch after each assignment included) kadx reads the broker's log start
 * and end (rd_kafka_query_watermark_offsets, blocking, rare) and decides:
 *  - position below the log start: a retention GAP; the skipped range is
 *    counted, logged and shown; consuming goes on from the log start
 *    (earliest) or end (latest), as the user's auto.offset.reset says;
 *  - position above the log end: the partition went BACKWARDS (recreated,
 *    rebuilt, truncated); every new event would be at or below the
 *    journal's mark and dropped as a duplicate (INV-2), so the partition is
 *    paused and reported until the operator (or intake.on_rewind) starts a
 *    new journal epoch (journal_new_epoch): its own duplicate filter, its
 *    own settled watermark (the settled file carries the epoch), the old
 *    epoch's settled events still delivered, its unsettled ones dropped as
 *    on a revoke (INV-3).
 *
 * Backpressure (INV-7): when an append gets -ENOSPC, or the journal's
 * pending bytes reach intake.high_water_bytes, every assigned partition is
 * paused (rd_kafka_pause_partitions: the consumer keeps polling, so the
 * member stays in the group) and resumed only when the pending bytes fall
 * to intake.low_water_bytes: each resume costs the mock cluster ~1 s, so
 * never pause and resume per batch.
 */
#include "gateway/intake.h"
#include "base/container_of.h"

#include "gateway/config.h"
#include "gateway/intake_internal.h"
#include "gateway/log.h"
#include "gateway/prefetch.h"
#include "storage/journal.h"

#include <errno.h>
#include <fcntl.h>
#include <librdkafka/rdkafka.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *const stop_phase_names[] = {
    "running", "flush", "commit", "close", "persist", "handles", "done",
};

/* ------------------------------------------------------------ ticking */

static void on_tick(uv_timer_t *t)
{
    struct intake *in = container_of(t, struct intake, tick);
    uint64_t now = uv_now(in->loop);

    if (in->stop == STOP_NONE) {
        intake_reset_retry(in);
    }
    if (in->stop == STOP_NONE || in->stop == STOP_FLUSH) {
        intake_check_pressure(in);
        if (in->append_failed && !in->appending && in->retry_at <= now) {
            intake_submit(in);
        }
    }
    if (in->commit_wanted && !in->commit_inflight &&
        in->commit_retry_at <= now) {
        intake_commit(in);
    } else if (!in->commit_inflight && in->commit_retry_at != 0 &&
               in->commit_retry_at <= now) {
        in->commit_retry_at = 0;
        intake_commit(in);
    }
    if (in->persist_wanted && !in->persist_inflight &&
        in->persist_retry_at <= now) {
        intake_persist(in);
    }
    intake_stop_advance(in);
}

/* ------------------------------------------------------------ stop */

static void on_handle_closed(uv_handle_t *h)
{
    struct intake *in = h->data;

    if (--in->handles == 0) {
        in->stop = STOP_DONE;
        if (in->free_on_close) {
            intake_free(in);
        } else if (in->stop_cb != NULL) {
            in->stop_cb(in->stop_arg);
        }
    }
}

static void set_stop(struct intake *in, enum stop_phase s)
{
    log_info("intake", "stop: %s -> %s", stop_phase_names[in->stop],
             stop_phase_names[s]);
    in->stop = s;
}

/* Moves the stop sequence on as far as it can go now. */
void intake_stop_advance(struct intake *in)
{
    int late = in->stop != STOP_NONE && uv_now(in->loop) >= in->stop_deadline;

    switch (in->stop) {
    case STOP_NONE:
    case STOP_DONE:
    case STOP_HANDLES:
        return;
    case STOP_FLUSH:
        if (in->append_failed && !in->appending) {
            /* Cannot be journaled now: leave them to the next run. */
            log_warn("intake", "stop: %zu messages not journaled (%s)",
                     in->fly.n + in->acc.n, in->c.last_error);
            msgbuf_clear(&in->fly);
            msgbuf_clear(&in->acc);
            in->append_failed = 0;
        }
        if (!in->appending) {
            intake_submit(in);
        }
        if ((in->appending || in->acc.n > 0) && !late) {
            return;
        }
        set_stop(in, STOP_COMMIT);
        intake_commit(in);
        /* fall through */
    case STOP_COMMIT:
        if ((in->commit_inflight || in->commit_wanted) && !late) {
            if (!in->commit_inflight) {
                intake_commit(in);
            }
            return;
        }
        set_stop(in, STOP_CLOSE);
        {
            rd_kafka_error_t *e =
                rd_kafka_consumer_close_queue(in->rk, in->rkqu);

            if (e != NULL) {
                log_warn("intake", "consumer close: %s",
                         rd_kafka_error_string(e));
                rd_kafka_error_destroy(e);
            } else {
                in->closing_consumer = 1;
            }
        }
        /* fall through */
    case STOP_CLOSE:
        if (in->closing_consumer && !rd_kafka_consumer_closed(in->rk) &&
            !late) {
            return;
        }
        if (in->closing_consumer && !rd_kafka_consumer_closed(in->rk)) {
            log_warn("intake", "stop: the consumer did not close in time");
        }
        set_stop(in, STOP_PERSIST);
        intake_persist(in);
        /* fall through */
    case STOP_PERSIST:
        if ((in->persist_inflight || in->persist_wanted) && !late) {
            if (!in->persist_inflight) {
                intake_persist(in);
            }
            return;
        }
        if (in->persist_inflight) {
            return; /* its after-callback must run before we free */
        }
        set_stop(in, STOP_HANDLES);
        uv_idle_stop(&in->idle);
        uv_timer_stop(&in->tick);
        uv_poll_stop(&in->poll);
        rd_kafka_queue_io_event_enable(in->rkqu, -1, NULL, 0);
        uv_close((uv_handle_t *)&in->poll, on_handle_closed);
        uv_close((uv_handle_t *)&in->idle, on_handle_closed);
        uv_close((uv_handle_t *)&in->tick, on_handle_closed);
        return;
    }
}

void intake_stop(struct intake *in, intake_stopped_cb cb, void *arg)
{
    if (in->stop != STOP_NONE) {
        return;
    }
    in->stop_cb = cb;
    in->stop_arg = arg;
    in->stop_deadline = uv_now(in->loop) + INTAKE_STOP_DEADLINE_MS;
    set_stop(in, STOP_FLUSH);
    intake_apply_pause(in); /* stop fetching */
    /* Continue from the loop, never inside this call (STYLE 9). */
    uv_idle_start(&in->idle, intake_on_idle);
}

/* ------------------------------------------------------------ start */

/* Sets one property; on failure fills err. */
static int conf_set(rd_kafka_conf_t *conf, const char *k, const char *v,
                    char *err, size_t errlen)
{
    char e[512];

    if (rd_kafka_conf_set(conf, k, v, e, sizeof(e)) != RD_KAFKA_CONF_OK) {
        snprintf(err, errlen, "kafka '%s': %s", k, e);
        return -EINVAL;
    }
    return 0;
}

/* intake.prefetch_bytes: librdkafka's queue and fetch limits (prefetch.c);
 * the user's kafka map wins. */
static int intake_prefetch(struct intake *in, rd_kafka_conf_t *conf, char *err,
                           size_t errlen)
{
    const struct prefetch_plan *pl = &in->prefetch;
    const struct config_kafka *k = &in->cfg->kafka;

    prefetch_plan_compute(in->cfg->intake.prefetch_bytes, &in->prefetch);
    if (pl->budget > 0) {
        log_info("intake",
                 "prefetch budget %lld bytes: queued.max.messages.kbytes %d, "
                 "queued.min.messages %d, fetch.max.bytes %d, "
                 "max.partition.fetch.bytes %d (unless set in 'kafka')",
                 (long long)pl->budget, pl->queued_kbytes, pl->queued_msgs,
                 pl->fetch_max_bytes, pl->part_fetch_bytes);
    }
    return prefetch_apply(conf, pl, k->keys, k->n, err, errlen);
}

static int build_conf(struct intake *in, rd_kafka_conf_t **out, char *err,
                      size_t errlen)
{
    static const char *const defaults[][2] = {
        {"client.id", "kadx"},
        {"group.id", "kadx"},
        {"enable.auto.commit", "false"},
        {"enable.auto.offset.store", "false"},
        /* Records of aborted transactions never reach the journal (and
         * so ADX); librdkafka's default too, but kadx's own contract:
         * tests/e2e/test_real_kafka.py checks it against a real broker. */
        {"isolation.level", "read_committed"},
        {"enable.partition.eof", "false"},
        {"queued.min.messages", "1000000"},
        {"fetch.wait.max.ms", "100"},
        {"log.connection.close", "false"},
    };
    const struct config_kafka *k = &in->cfg->kafka;
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    int rc;

    for (size_t i = 0; i < sizeof(defaults) / sizeof(defaults[0]); i++) {
        rc = conf_set(conf, defaults[i][0], defaults[i][1], err, errlen);
        if (rc < 0) {
            goto fail;
        }
    }
    for (size_t i = 0; i < k->n; i++) {
        if (strcmp(k->keys[i], "enable.auto.commit") == 0 &&
            strcmp(k->values[i], "false") != 0) {
            snprintf(err, errlen,
                     "kafka 'enable.auto.commit' must be false: kadx "
                     "commits offsets only after they are durable");
            rc = -EINVAL;
            goto fail;
        }
        rc = conf_set(conf, k->keys[i], k->values[i], err, errlen);
        if (rc < 0) {
            goto fail;
        }
        if ((strcmp(k->keys[i], "sasl.mechanisms") == 0 ||
             strcmp(k->keys[i], "sasl.mechanism") == 0) &&
            strncmp(k->values[i], "SCRAM", 5) == 0 &&
            rd_kafka_version() < 0x020601ff) {
            /* librdkafka#4895: the client-final-message repeats the client
             * nonce; Kafka 4.x checks it strictly (RFC 5802) and refuses. */
            log_warn("intake",
                     "kafka sasl.mechanisms %s with librdkafka %s: versions "
                     "before 2.6.1 cannot authenticate with SCRAM to Kafka "
                     "4.x brokers (they can to 3.x); see gateway/INTAKE.md",
                     k->values[i], rd_kafka_version_str());
        }
    }
    rc = intake_prefetch(in, conf, err, errlen);
    if (rc < 0) {
        goto fail;
    }
    /* Not overridable: kadx's own wiring. The user's auto.offset.reset
     * (earliest or latest, config.c) is applied by intake itself. */
    rc = conf_set(conf, "log.queue", "true", err, errlen);
    if (rc == 0) {
        rc = conf_set(conf, "auto.offset.reset", "error", err, errlen);
    }
    if (rc < 0) {
        goto fail;
    }
    rd_kafka_conf_set_opaque(conf, in);
    rd_kafka_conf_set_rebalance_cb(conf, intake_on_rebalance);
    rd_kafka_conf_set_error_cb(conf, intake_on_kafka_error);
    rd_kafka_conf_set_log_cb(conf, intake_on_kafka_log);
    *out = conf;
    return 0;
fail:
    rd_kafka_conf_destroy(conf);
    return rc;
}

/* Registers the journal's partitions (status, INV-3 checks). */
static int load_journal_parts(struct intake *in, char *err, size_t errlen)
{
    struct journal_stats st;
    int rc = journal_stats(in->j, &st, err, errlen);

    if (rc < 0) {
        return rc;
    }
    for (size_t i = 0; i < st.nparts; i++) {
        struct ipart *p =
            ipart_get(in, st.parts[i].topic, st.parts[i].partition, 1);

        if (p == NULL) {
            journal_stats_release(&st);
            snprintf(err, errlen, "out of memory");
            return -ENOMEM;
        }
        if (st.parts[i].sealed) {
            continue; /* an older epoch: delivered without a limit */
        }
        p->epoch = st.parts[i].epoch;
        p->durable = max64(p->durable, st.parts[i].high_offset);
    }
    journal_stats_release(&st);
    /* A settled line of another epoch says nothing about this one (a crash
     * between the journal's new epoch and the file's rewrite). */
    for (size_t i = 0; i < in->nparts; i++) {
        struct ipart *p = in->parts[i];

        if (p->file_epoch >= 0 && p->file_epoch != p->epoch) {
            log_info("intake",
                     "%s[%d]: settled offset %lld is of epoch %lld, the "
                     "journal is at epoch %lld: not settled in this epoch",
                     p->topic, (int)p->partition, (long long)p->settled,
                     (long long)p->file_epoch, (long long)p->epoch);
            p->acked = p->settled = p->commit_sent = -1;
            p->file_epoch = p->epoch;
            in->persist_force = 1;
        }
    }
    return 0;
}

/* Wires the consumer queue into the loop: a pipe librdkafka writes to when
 * the queue gets something, watched by a uv_poll_t, and the idle and tick
 * handles (each counted in in->handles once initialised). 0 or a negative
 * errno with err filled. */
static int intake_wire(struct intake *in, uv_loop_t *loop, char *err,
                       size_t errlen)
{
    int rc;

    if (pipe2(in->pipefd, O_NONBLOCK | O_CLOEXEC) < 0) {
        rc = -errno;
        snprintf(err, errlen, "pipe: %s", strerror(errno));
        return rc;
    }
    rc = uv_poll_init(loop, &in->poll, in->pipefd[0]);
    if (rc < 0) {
        snprintf(err, errlen, "uv_poll_init: %s", uv_strerror(rc));
        return rc;
    }
    in->poll.data = in;
    in->handles++;
    uv_idle_init(loop, &in->idle);
    in->idle.data = in;
    in->handles++;
    uv_timer_init(loop, &in->tick);
    in->tick.data = in;
    in->handles++;
    rd_kafka_queue_io_event_enable(in->rkqu, in->pipefd[1], "1", 1);
    rc = uv_poll_start(&in->poll, UV_READABLE, intake_on_poll);
    if (rc < 0) {
        snprintf(err, errlen, "uv_poll_start: %s", uv_strerror(rc));
        return rc;
    }
    uv_timer_start(&in->tick, on_tick, INTAKE_TICK_MS, INTAKE_TICK_MS);
    return 0;
}

int intake_start(uv_loop_t *loop, const struct config *cfg, struct journal *j,
                 struct intake **out, char *err, size_t errlen)
{
    struct intake *in = calloc(1, sizeof(*in));
    rd_kafka_conf_t *conf = NULL;
    rd_kafka_topic_partition_list_t *topics = NULL;
    rd_kafka_resp_err_t e;
    char kerr[512];
    const char *jp;
    int rc;

    *out = NULL;
    if (in == NULL) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    in->loop = loop;
    in->cfg = cfg;
    in->j = j;
    intake_acc_limit(in);
    in->pipefd[0] = in->pipefd[1] = -1;
    snprintf(in->uuid, sizeof(in->uuid), "%s", journal_uuid(j));
    if (cfg->intake.ntopics == 0) {
        snprintf(err, errlen, "no topic to consume");
        rc = -EINVAL;
        goto fail;
    }
    jp = journal_path(j);
    in->settled_path = malloc(strlen(jp) + sizeof(".settled"));
    if (in->settled_path == NULL) {
        snprintf(err, errlen, "out of memory");
        rc = -ENOMEM;
        goto fail;
    }
    memcpy(in->settled_path, jp, strlen(jp));
    memcpy(in->settled_path + strlen(jp), ".settled", sizeof(".settled"));
    rc = settled_load(in, err, errlen);
    if (rc < 0) {
        goto fail;
    }
    rc = load_journal_parts(in, err, errlen);
    if (rc < 0) {
        goto fail;
    }
    settled_rebuild(in);

    rc = build_conf(in, &conf, err, errlen);
    if (rc < 0) {
        goto fail;
    }
    in->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, kerr, sizeof(kerr));
    if (in->rk == NULL) {
        rd_kafka_conf_destroy(conf);
        snprintf(err, errlen, "kafka consumer: %s", kerr);
        rc = -EINVAL;
        goto fail;
    }
    rd_kafka_set_log_queue(in->rk, NULL);
    rd_kafka_poll_set_consumer(in->rk);
    in->rkqu = rd_kafka_queue_get_consumer(in->rk);

    rc = intake_wire(in, loop, err, errlen);
    if (rc < 0) {
        goto fail;
    }

    topics = rd_kafka_topic_partition_list_new((int)cfg->intake.ntopics);
    for (size_t i = 0; i < cfg->intake.ntopics; i++) {
        rd_kafka_topic_partition_list_add(topics, cfg->intake.topics[i],
                                          RD_KAFKA_PARTITION_UA);
    }
    e = rd_kafka_subscribe(in->rk, topics);
    rd_kafka_topic_partition_list_destroy(topics);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
        snprintf(err, errlen, "subscribe: %s", rd_kafka_err2str(e));
        rc = -EINVAL;
        goto fail;
    }
    *out = in;
    /* Whatever is queued already: drain it from the loop. */
    uv_idle_start(&in->idle, intake_on_idle);
    return 0;

fail:
    /* Nothing was started that owes a callback: tear down directly. */
    if (in->handles > 0) {
        in->stop = STOP_HANDLES;
        uv_poll_stop(&in->poll);
        uv_timer_stop(&in->tick);
        uv_idle_stop(&in->idle);
        if (in->rkqu != NULL) {
            rd_kafka_queue_io_event_enable(in->rkqu, -1, NULL, 0);
        }
        uv_close((uv_handle_t *)&in->poll, on_handle_closed);
        uv_close((uv_handle_t *)&in->idle, on_handle_closed);
        uv_close((uv_handle_t *)&in->tick, on_handle_closed);
        in->free_on_close = 1; /* freed once the loop has closed them */
        return rc;
    }
    intake_free(in);
    return rc;
}

void intake_free(struct intake *in)
{
    if (in == NULL) {
        return;
    }
    msgbuf_release(&in->acc);
    msgbuf_release(&in->fly);
    if (in->rkqu != NULL) {
        rd_kafka_queue_io_event_enable(in->rkqu, -1, NULL, 0);
        rd_kafka_queue_destroy(in->rkqu);
    }
    if (in->rk != NULL) {
        rd_kafka_destroy_flags(in->rk, RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE);
    }
    if (in->pipefd[0] >= 0) {
        close(in->pipefd[0]);
    }
    if (in->pipefd[1] >= 0) {
        close(in->pipefd[1]);
    }
    for (size_t i = 0; i < in->nparts; i++) {
        free(in->parts[i]->topic);
        free(in->parts[i]);
    }
    free(in->parts);
    free(in->ev);
    free(in->settled_path);
    free(in->persist_buf);
    free(in->persist_p);
    free(in->persist_v);
    free(in->settled_arr);
    free(in->pout);
    free(in);
}
