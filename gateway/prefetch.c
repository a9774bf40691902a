/*
 * prefetch.c - intake.prefetch_bytes turned into librdkafka's limits
 * (prefetch.h). Called on the loop thread by intake; owns nothing.
 *
 * Where the budget goes (librdkafka 2.0.2; figures in gateway/INTAKE.md
 * "Memory"): a fetched message stays in the fetch response buffer it came
 * in (librdkafka parses it in place) until the application destroys it,
 * so the consumer queue's memory is the response buffers its messages pin
 * plus librdkafka's own structures per message. The queue limits are
 * checked before each fetch, so a queue under its limit can still receive
 * one whole response per broker: fetch.max.bytes bounds that overshoot.
 */
#include "gateway/prefetch.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

static int64_t clamp64(int64_t v, int64_t lo, int64_t hi)
{
    return v < lo ? lo : v > hi ? hi : v;
}

void prefetch_plan_compute(int64_t budget, struct prefetch_plan *plan)
{
    int64_t queue;

    memset(plan, 0, sizeof(*plan));
    if (budget <= 0) {
        return;
    }
    plan->budget = budget;
    /* within librdkafka's ranges of the properties */
    queue = clamp64(budget / 2, 1024, INT64_C(2097151) * 1024);
    plan->queued_kbytes = (int)(queue / 1024);
    plan->queued_msgs = (int)clamp64(queue / 256, 16, 10000000);
    plan->fetch_max_bytes =
        (int)clamp64(budget / 8, PREFETCH_MIN_FETCH_BYTES, 512 << 20);
    plan->part_fetch_bytes =
        (int)clamp64(budget / 16, 64 * 1024, plan->fetch_max_bytes);
}

static int user_set(char *const *keys, size_t n, const char *k)
{
    for (size_t i = 0; i < n; i++) {
        if (strcmp(keys[i], k) == 0) {
            return 1;
        }
    }
    return 0;
}

int prefetch_apply(rd_kafka_conf_t *conf, const struct prefetch_plan *plan,
                   char *const *user_keys, size_t n, char *err, size_t errlen)
{
    const struct {
        const char *k;
        int v;
    } props[] = {
        {"queued.max.messages.kbytes", plan->queued_kbytes},
        {"queued.min.messages", plan->queued_msgs},
        {"fetch.max.bytes", plan->fetch_max_bytes},
        {"max.partition.fetch.bytes", plan->part_fetch_bytes},
    };

    if (plan->budget <= 0) {
        return 0;
    }
    for (size_t i = 0; i < sizeof(props) / sizeof(props[0]); i++) {
        char v[32], e[256];

        if (user_set(user_keys, n, props[i].k)) {
            continue;
        }
        snprintf(v, sizeof(v), "%d", props[i].v);
        if (rd_kafka_conf_set(conf, props[i].k, v, e, sizeof(e)) !=
            RD_KAFKA_CONF_OK) {
            snprintf(err, errlen, "intake.prefetch_bytes: kafka '%s' %s: %s",
                     props[i].k, v, e);
            return -EINVAL;
        }
    }
    return 0;
}

void prefetch_kick(rd_kafka_t *rk)
{
    rd_kafka_topic_partition_list_t *a = NULL;

    if (rd_kafka_assignment(rk, &a) != RD_KAFKA_RESP_ERR_NO_ERROR) {
        return;
    }
    if (a->cnt > 0) {
        (void)rd_kafka_pause_partitions(rk, a);
        (void)rd_kafka_resume_partitions(rk, a);
    }
    rd_kafka_topic_partition_list_destroy(a);
}
