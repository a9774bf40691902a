/*
 * prefetch.h - one byte budget for what librdkafka prefetches
 * (intake.prefetch_bytes), turned into librdkafka's limits.
 *
 * librdkafka 2.0.2 checks queued.max.messages.kbytes and
 * queued.min.messages against a partition's fetch queue, but a consumer's
 * partition queues are forwarded to the one consumer queue, and the check
 * reads the length of the queue it is forwarded to: the limits bound the
 * sum over all assigned partitions, whatever their number (seen in
 * librdkafka's FETCH debug lines: every partition reports the same
 * "37873/512 msgs, 5126/128 kb queued"). So no division by the partition
 * count is needed, and an assignment change changes nothing.
 * gateway/INTAKE.md "Memory".
 */
#ifndef KADX_GATEWAY_PREFETCH_H
#define KADX_GATEWAY_PREFETCH_H

#include <librdkafka/rdkafka.h>
#include <stddef.h>
#include <stdint.h>

/* fetch.max.bytes may not be below message.max.bytes (1000000) */
#define PREFETCH_MIN_FETCH_BYTES (1024 * 1024)
#define PREFETCH_MIN_BUDGET      (4 * 1024 * 1024)

struct prefetch_plan {
    int64_t budget;       /* intake.prefetch_bytes; 0 = unbounded */
    int queued_kbytes;    /* queued.max.messages.kbytes */
    int queued_msgs;      /* queued.min.messages */
    int fetch_max_bytes;  /* fetch.max.bytes (one response per broker) */
    int part_fetch_bytes; /* max.partition.fetch.bytes */
};

/*
 * Fills plan for budget bytes (0: unbounded, nothing to set): half of it
 * for the consumer queue (queued.max.messages.kbytes; queued.min.messages
 * at one message per 256 bytes, since librdkafka counts only payload bytes
 * against the first and keeps ~200 bytes of its own per message), an
 * eighth for each fetch response in flight (fetch.max.bytes: one per
 * broker connection; a response may overshoot the queue limit by that
 * much). Pure (unit-tested).
 */
void prefetch_plan_compute(int64_t budget, struct prefetch_plan *plan);

/*
 * Sets the plan's properties on conf, except those the user set in the
 * kafka map (user_keys, n: their values win). Returns 0 or -EINVAL with
 * err filled.
 */
int prefetch_apply(rd_kafka_conf_t *conf, const struct prefetch_plan *plan,
                   char *const *user_keys, size_t n, char *err, size_t errlen);

/*
 * Makes every broker thread look at the queue limits again, once the
 * consumer queue ran dry after the application stopped draining it: in
 * librdkafka 2.0.2 a partition over the limits is taken off the fetch
 * list with no deadline and checked again only when its broker thread
 * wakes (a response, an operation, or after up to 1 s). Pauses and
 * resumes the assignment (the queue is empty now, so nothing prefetched
 * is thrown away; fetching resumes at the application's position). That
 * does not wake the broker threads (librdkafka serves the pause on its
 * main thread): intake seeks the partitions instead (prefetch_wake in
 * intake_consume.c) and calls this only when it has none to seek. Loop
 * thread; rk borrowed.
 */
void prefetch_kick(rd_kafka_t *rk);

#endif
