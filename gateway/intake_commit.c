/*
 * intake_commit.c - the intake's commits and settled watermarks (INV-1,
 * INV-3): the async commit of what the journal reports durable, the commit
 * metadata's chain of committers (the crash window, intake.c), and the
 * acknowledged offsets saved to "<journal>.settled" (write, fsync, rename
 * on a libuv worker: persist_work_cb) before they are exposed. Loop thread
 * otherwise.
 */
#include "base/container_of.h"

#include "gateway/intake.h"
#include "gateway/intake_internal.h"
#include "gateway/log.h"
#include "gateway/phases.h"
#include "storage/journal.h"

#include <errno.h>
#include <fcntl.h>
#include <librdkafka/rdkafka.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ------------------------------------------------------------ settled */

/* Rebuilds settled_arr from the table. */
void settled_rebuild(struct intake *in)
{
    size_t n = 0;
    struct journal_offset *arr;

    arr =
        realloc(in->settled_arr, (in->nparts ? in->nparts : 1) * sizeof(*arr));
    if (arr == NULL) {
        return; /* keep the old (smaller but valid) array */
    }
    in->settled_arr = arr;
    for (size_t i = 0; i < in->nparts; i++) {
        struct ipart *p = in->parts[i];

        if (p->settled >= 0) {
            arr[n].topic = p->topic;
            arr[n].partition = p->partition;
            arr[n].offset = p->settled;
            n++;
        }
    }
    in->settled_n = n;
}

int intake_settled(const struct intake *in, const char *topic,
                   int32_t partition, int64_t *offset)
{
    for (size_t i = 0; i < in->nparts; i++) {
        const struct ipart *p = in->parts[i];

        if (p->partition == partition && strcmp(p->topic, topic) == 0) {
            if (p->settled < 0) {
                return -ENOENT;
            }
            *offset = p->settled;
            return 0;
        }
    }
    return -ENOENT;
}

const struct journal_offset *intake_settled_all(const struct intake *in,
                                                size_t *n)
{
    *n = in->settled_n;
    return in->settled_arr;
}

void intake_on_settled(struct intake *in, intake_settled_cb cb, void *arg)
{
    in->settled_cb = cb;
    in->settled_arg = arg;
}

/* Worker thread: writes the snapshot to PATH.tmp, fsyncs, renames over
 * PATH and fsyncs the directory. Touches only persist_* fields. */
static void persist_work_cb(uv_work_t *w)
{
    struct intake *in = container_of(w, struct intake, persist_work);
    size_t plen = strlen(in->settled_path);
    char *tmp = malloc(plen + 5);
    char *dir = NULL;
    size_t off = 0;
    int fd = -1;
    int rc = 0;

    if (tmp == NULL) {
        in->persist_rc = -ENOMEM;
        return;
    }
    memcpy(tmp, in->settled_path, plen);
    memcpy(tmp + plen, ".tmp", 5);
    /* 0600 whatever the umask; a leftover .tmp of another mode is reset */
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0 || fchmod(fd, 0600) < 0) {
        rc = -errno;
        snprintf(in->persist_err, sizeof(in->persist_err), "open '%s': %s", tmp,
                 strerror(errno));
        goto out;
    }
    while (off < in->persist_len) {
        ssize_t wr = write(fd, in->persist_buf + off, in->persist_len - off);

        if (wr < 0 && errno == EINTR) {
            continue;
        }
        if (wr < 0) {
            rc = -errno;
            snprintf(in->persist_err, sizeof(in->persist_err), "write '%s': %s",
                     tmp, strerror(errno));
            goto out;
        }
        off += (size_t)wr;
    }
    if (fsync(fd) < 0) {
        rc = -errno;
        snprintf(in->persist_err, sizeof(in->persist_err), "fsync '%s': %s",
                 tmp, strerror(errno));
        goto out;
    }
    close(fd);
    fd = -1;
    if (rename(tmp, in->settled_path) < 0) {
        rc = -errno;
        snprintf(in->persist_err, sizeof(in->persist_err), "rename to '%s': %s",
                 in->settled_path, strerror(errno));
        goto out;
    }
    dir = strdup(in->settled_path);
    if (dir != NULL) {
        char *slash = strrchr(dir, '/');
        int dfd;

        if (slash == NULL) {
            dir[0] = '.';
            dir[1] = '\0';
        } else if (slash == dir) {
            slash[1] = '\0';
        } else {
            *slash = '\0';
        }
        dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd >= 0) {
            (void)fsync(dfd);
            close(dfd);
        }
    }
out:
    if (fd >= 0) {
        close(fd);
    }
    free(dir);
    free(tmp);
    in->persist_rc = rc;
}

static void persist_after_cb(uv_work_t *w, int status)
{
    struct intake *in = container_of(w, struct intake, persist_work);
    int moved = 0;

    in->persist_inflight = 0;
    phase_end(PHASE_SETTLE, &in->persist_ph_us);
    if (status == 0 && in->persist_rc == 0) {
        for (size_t i = 0; i < in->persist_n; i++) {
            struct ipart *p = in->persist_p[i];

            if (in->persist_v[i] > p->settled) {
                p->settled = in->persist_v[i];
                moved = 1;
            }
        }
    } else {
        in->persist_force = 1;
        log_error("intake", "saving settled offsets: %s",
                  status ? uv_strerror(status) : in->persist_err);
        intake_set_error(in, "saving settled offsets: %s",
                         status ? uv_strerror(status) : in->persist_err);
        in->persist_wanted = 1;
        in->persist_retry_at = uv_now(in->loop) + INTAKE_RETRY_MS;
    }
    free(in->persist_buf);
    in->persist_buf = NULL;
    if (moved) {
        settled_rebuild(in);
        if (in->settled_cb != NULL) {
            in->settled_cb(in->settled_arg);
        }
    }
    if (in->persist_wanted && in->persist_retry_at <= uv_now(in->loop)) {
        intake_persist(in);
    }
    intake_stop_advance(in);
}

/* Saves every acked watermark (async); coalesces while one save runs. */
void intake_persist(struct intake *in)
{
    size_t cap = 0;
    size_t n = 0;
    size_t len = 0;
    int changed = 0;

    if (in->persist_inflight) {
        in->persist_wanted = 1;
        return;
    }
    in->persist_wanted = 0;
    changed = in->persist_force;
    in->persist_force = 0;
    for (size_t i = 0; i < in->nparts; i++) {
        if (in->parts[i]->acked > in->parts[i]->settled) {
            changed = 1;
        }
        cap += strlen(in->parts[i]->topic) + 72;
    }
    if (!changed) {
        return;
    }
    free(in->persist_p);
    free(in->persist_v);
    in->persist_p = malloc(in->nparts * sizeof(*in->persist_p));
    in->persist_v = malloc(in->nparts * sizeof(*in->persist_v));
    in->persist_buf = malloc(cap + 1);
    if (in->persist_p == NULL || in->persist_v == NULL ||
        in->persist_buf == NULL) {
        free(in->persist_buf);
        in->persist_buf = NULL;
        in->persist_force = changed;
        in->persist_wanted = 1;
        in->persist_retry_at = uv_now(in->loop) + INTAKE_RETRY_MS;
        return;
    }
    for (size_t i = 0; i < in->nparts; i++) {
        struct ipart *p = in->parts[i];
        int64_t v = max64(p->acked, p->settled);

        if (v < 0) {
            continue;
        }
        /* the epoch column only when there is one: an older kadx reads
         * a journal without epochs */
        if (p->epoch > 0) {
            len += (size_t)snprintf(
                in->persist_buf + len, cap + 1 - len, "%s\t%d\t%lld\t%lld\n",
                p->topic, (int)p->partition, (long long)v, (long long)p->epoch);
        } else {
            len += (size_t)snprintf(in->persist_buf + len, cap + 1 - len,
                                    "%s\t%d\t%lld\n", p->topic,
                                    (int)p->partition, (long long)v);
        }
        in->persist_p[n] = p;
        in->persist_v[n] = v;
        n++;
    }
    in->persist_len = len;
    in->persist_n = n;
    in->persist_rc = 0;
    if (uv_queue_work(in->loop, &in->persist_work, persist_work_cb,
                      persist_after_cb) < 0) {
        free(in->persist_buf);
        in->persist_buf = NULL;
        in->persist_force = 1;
        in->persist_wanted = 1;
        in->persist_retry_at = uv_now(in->loop) + INTAKE_RETRY_MS;
        return;
    }
    in->persist_inflight = 1;
    in->persist_ph_us = phase_now_us();
}

/* Reads "<journal>.settled" (a missing file is an empty table). */
int settled_load(struct intake *in, char *err, size_t errlen)
{
    FILE *f = fopen(in->settled_path, "re");
    char line[512];
    long lineno = 0;
    int rc = 0;

    if (f == NULL) {
        if (errno == ENOENT) {
            return 0;
        }
        snprintf(err, errlen, "open '%s': %s", in->settled_path,
                 strerror(errno));
        return -errno;
    }
    while (fgets(line, sizeof(line), f) != NULL) {
        char *tab1 = strchr(line, '\t');
        char *tab2 = tab1 ? strchr(tab1 + 1, '\t') : NULL;
        char *end = NULL;
        long part;
        long long off;
        long long epoch;
        struct ipart *p;

        lineno++;
        if (tab1 == NULL || tab2 == NULL || lineno > 1000000) {
            snprintf(err, errlen, "'%s' line %ld: malformed", in->settled_path,
                     lineno);
            rc = -EINVAL;
            break;
        }
        *tab1 = '\0';
        errno = 0;
        part = strtol(tab1 + 1, &end, 10);
        if (errno != 0 || end != tab2 || part < 0 || part > INT32_MAX) {
            snprintf(err, errlen, "'%s' line %ld: bad partition",
                     in->settled_path, lineno);
            rc = -EINVAL;
            break;
        }
        off = strtoll(tab2 + 1, &end, 10);
        epoch = 0;
        if (errno == 0 && *end == '\t') {
            epoch = strtoll(end + 1, &end, 10);
            if (epoch < 0) {
                errno = EINVAL;
            }
        }
        if (errno != 0 || (*end != '\n' && *end != '\0') || off < -1) {
            snprintf(err, errlen, "'%s' line %ld: bad offset", in->settled_path,
                     lineno);
            rc = -EINVAL;
            break;
        }
        p = ipart_get(in, line, (int32_t)part, 1);
        if (p == NULL) {
            snprintf(err, errlen, "out of memory");
            rc = -ENOMEM;
            break;
        }
        p->acked = p->settled = p->commit_sent = off;
        p->file_epoch = epoch;
    }
    fclose(f);
    return rc;
}

/* ------------------------------------------------------------ commits */

/* This journal as a committer of p: its uuid, with "/<epoch>" after the
 * first epoch, so that a commit of an older life of the partition is never
 * taken as ours (its offsets mean other events). buf: INTAKE_UUID_MAX. */
const char *part_ident(const struct intake *in, const struct ipart *p,
                       char *buf)
{
    if (p->epoch == 0) {
        return in->uuid;
    }
    /* a uuid is 36 characters */
    snprintf(buf, INTAKE_UUID_MAX, "%.40s/%lld", in->uuid, (long long)p->epoch);
    return buf;
}

/* Commit metadata: "kadx1 <ident>[ <ident>@<offset>]..." (the chain of
 * earlier committers, newest first, at most INTAKE_CHAIN_MAX). */
char *commit_meta(struct intake *in, const struct ipart *p)
{
    char buf[INTAKE_META_MAX + INTAKE_UUID_MAX + 8];
    char id[INTAKE_UUID_MAX];

    if (p->prev[0] != '\0') {
        snprintf(buf, sizeof(buf), "kadx1 %s %s", part_ident(in, p, id),
                 p->prev);
    } else {
        snprintf(buf, sizeof(buf), "kadx1 %s", part_ident(in, p, id));
    }
    return strdup(buf);
}

/* Copies at most cap-1 bytes of src into dst, NUL-terminated. */
static void copy_capped(char *dst, size_t cap, const char *src)
{
    size_t n = strnlen(src, cap - 1);

    memcpy(dst, src, n);
    dst[n] = '\0';
}

/*
 * Parses commit metadata: owner gets the committer's uuid, chain (cap
 * INTAKE_META_MAX) the earlier committers; both "" when absent or foreign.
 */
void meta_parse(const void *meta, size_t len, char *owner, char *chain)
{
    char buf[INTAKE_META_MAX + INTAKE_UUID_MAX + 8];
    char *sp;

    owner[0] = '\0';
    chain[0] = '\0';
    if (meta == NULL || len < 7 || len >= sizeof(buf)) {
        return;
    }
    memcpy(buf, meta, len);
    buf[len] = '\0';
    if (strncmp(buf, "kadx1 ", 6) != 0) {
        return;
    }
    sp = strchr(buf + 6, ' ');
    if (sp != NULL) {
        *sp = '\0';
    }
    copy_capped(owner, INTAKE_UUID_MAX, buf + 6);
    if (sp != NULL) {
        copy_capped(chain, INTAKE_META_MAX, sp + 1);
    }
}

/* The highest offset uuid had committed according to chain, or -1. */
int64_t chain_find(const char *chain, const char *uuid)
{
    size_t ulen = strlen(uuid);
    int64_t best = -1;
    const char *t = chain;

    while (*t != '\0') {
        size_t tlen = strcspn(t, " ");

        if (tlen > ulen && strncmp(t, uuid, ulen) == 0 && t[ulen] == '@') {
            char *end;
            long long off = strtoll(t + ulen + 1, &end, 10);

            if (end == t + tlen && off > best) {
                best = off;
            }
        }
        t += tlen;
        t += strspn(t, " ");
    }
    return best;
}

/* 1 if the chain token t (tlen bytes, "<uuid>@<offset>") names a
 * committer already in the chain p->prev, or none ("-"). */
static int chain_has(const char *chain, const char *t, size_t tlen)
{
    size_t ulen = strcspn(t, "@");

    if (ulen >= tlen || (ulen == 1 && t[0] == '-')) {
        return 1;
    }
    for (const char *c = chain; *c != '\0';) {
        size_t clen = strcspn(c, " ");

        if (clen > ulen && c[ulen] == '@' && memcmp(c, t, ulen) == 0) {
            return 1;
        }
        c += clen;
        c += strspn(c, " ");
    }
    return 0;
}

/*
 * Sets p->prev for our commits after taking p over at committed offset
 * `offset` from `owner` ("" = unknown): that hand-over first, then the
 * owner's own chain, newest first, one entry per committer (its latest
 * hand-over; a stable group's chain stays as short as the group) and at
 * most INTAKE_CHAIN_MAX entries, so the metadata of every commit stays
 * well under Kafka's offset.metadata.max.bytes (4096).
 */
void chain_extend(struct ipart *p, const char *owner, const char *chain,
                  int64_t offset)
{
    size_t len = 0;
    int n = 0;
    const char *t = chain;

    p->prev[0] = '\0';
    if (owner[0] != '\0') {
        len = (size_t)snprintf(p->prev, sizeof(p->prev), "%s@%lld", owner,
                               (long long)offset);
        n = 1;
    }
    while (n < INTAKE_CHAIN_MAX && *t != '\0') {
        size_t tlen = strcspn(t, " ");

        if (len + 1 + tlen >= sizeof(p->prev)) {
            break;
        }
        if (!chain_has(p->prev, t, tlen)) {
            if (len > 0) {
                p->prev[len++] = ' ';
            }
            memcpy(p->prev + len, t, tlen);
            len += tlen;
            p->prev[len] = '\0';
            n++;
        }
        t += tlen;
        t += strspn(t, " ");
    }
}

/* The offset we may commit for p now (INV-1), or -1. Never at or below
 * what is already committed for the group. */
int64_t commit_target(const struct ipart *p)
{
    int64_t floor = max64(p->acked, p->group - 1);

    if (!p->assigned || p->drops_pending > 0 || p->rewind != REWIND_NONE) {
        return -1;
    }
    if (p->epoch_commit) {
        return p->durable + 1; /* a new epoch's start, maybe 0 */
    }
    if (p->durable <= floor) {
        return -1;
    }
    return p->durable + 1;
}

/* Builds the commit list of assigned partitions with something new to
 * commit; NULL when there is nothing. */
static rd_kafka_topic_partition_list_t *commit_list(struct intake *in,
                                                    int only_unsent)
{
    rd_kafka_topic_partition_list_t *l = NULL;

    for (size_t i = 0; i < in->nparts; i++) {
        struct ipart *p = in->parts[i];
        int64_t off = commit_target(p);
        rd_kafka_topic_partition_t *tp;

        if (off < 0 || (only_unsent && off - 1 <= p->commit_sent)) {
            continue;
        }
        if (l == NULL) {
            l = rd_kafka_topic_partition_list_new(8);
        }
        tp = rd_kafka_topic_partition_list_add(l, p->topic, p->partition);
        tp->offset = off;
        tp->metadata = commit_meta(in, p);
        tp->metadata_size = tp->metadata ? strlen(tp->metadata) : 0;
    }
    return l;
}

/* Applies a commit result list (async callback or sync commit). */
void commit_apply(struct intake *in, rd_kafka_resp_err_t err,
                  const rd_kafka_topic_partition_list_t *l)
{
    int ok = 0;

    for (int i = 0; l != NULL && i < l->cnt; i++) {
        const rd_kafka_topic_partition_t *tp = &l->elems[i];
        rd_kafka_resp_err_t e = tp->err ? tp->err : err;
        struct ipart *p = ipart_get(in, tp->topic, tp->partition, 0);

        if (p == NULL || tp->offset < 0) {
            continue;
        }
        if (e == RD_KAFKA_RESP_ERR_NO_ERROR) {
            if (p->epoch_guard && tp->offset - 1 > p->durable) {
                continue; /* an older epoch's commit, acknowledged late */
            }
            p->epoch_guard = 0;
            p->epoch_commit = 0;
            p->acked = max64(p->acked, tp->offset - 1);
            p->group = max64(p->group, tp->offset);
            ok = 1;
        } else {
            in->c.commit_errors++;
            p->commit_sent = p->acked;
            intake_set_error(in, "commit %s[%d]@%lld: %s", tp->topic,
                             (int)tp->partition, (long long)tp->offset,
                             rd_kafka_err2str(e));
            log_warn("intake", "%s", in->c.last_error);
            in->commit_retry_at = uv_now(in->loop) + INTAKE_RETRY_MS;
        }
    }
    if (ok) {
        in->c.commits++;
        intake_persist(in);
    }
}

static void on_committed(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *offsets, void *opaque)
{
    struct intake *in = opaque;

    in->commit_inflight = 0;
    phase_end(PHASE_COMMIT, &in->commit_ph_us);
    if (err == RD_KAFKA_RESP_ERR__NO_OFFSET) {
        err = RD_KAFKA_RESP_ERR_NO_ERROR; /* nothing to commit */
    }
    commit_apply(in, err, offsets);
    /* The drops on_revoke deferred (INV-3): now that the commit that was
     * in flight is answered, what it settled stays ours to deliver (the
     * group's committed offset is past it: nobody else will consume it)
     * and only what is above it is dropped. */
    for (size_t i = 0; i < in->nparts; i++) {
        struct ipart *p = in->parts[i];

        if (p->drop_deferred) {
            p->drop_deferred = 0;
            if (!p->assigned) { /* also what the void append wrote */
                intake_drop(in, p, p->acked);
            }
        }
    }
    if (in->commit_wanted && in->commit_retry_at <= uv_now(in->loop)) {
        intake_commit(in);
    }
    intake_stop_advance(in);
}

/* Async commit of what is durable; one commit in flight at a time. */
void intake_commit(struct intake *in)
{
    rd_kafka_topic_partition_list_t *l;
    rd_kafka_resp_err_t e;

    if (in->commit_inflight) {
        in->commit_wanted = 1;
        return;
    }
    in->commit_wanted = 0;
    l = commit_list(in, 0);
    if (l == NULL) {
        return;
    }
    e = rd_kafka_commit_queue(in->rk, l, in->rkqu, on_committed, in);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
        in->c.commit_errors++;
        intake_set_error(in, "commit: %s", rd_kafka_err2str(e));
        log_warn("intake", "%s", in->c.last_error);
        in->commit_wanted = 1;
        in->commit_retry_at = uv_now(in->loop) + INTAKE_RETRY_MS;
    } else {
        in->commit_inflight = 1;
        in->commit_ph_us = phase_now_us();
        for (int i = 0; i < l->cnt; i++) {
            struct ipart *p =
                ipart_get(in, l->elems[i].topic, l->elems[i].partition, 0);

            if (p != NULL) {
                p->commit_sent = l->elems[i].offset - 1;
            }
        }
    }
    rd_kafka_topic_partition_list_destroy(l);
}
