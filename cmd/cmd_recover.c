/*
 * cmd_recover.c - `kadx recover JOURNAL CMD`: inspect and repair the journal
 * of a stopped gateway (DESIGN.md "Offline recovery tool", issue 7).
 *
 * This file is the command line: it parses the options, opens the journal
 * (journal_open takes the journal's lock, so a journal a running gateway
 * holds is refused with the holder's PID), runs one command from
 * storage/recover.h and prints its outcome. `replay` sends pending events
 * straight to ADX with the forwarder's code (gateway/forwarder.h) on a
 * private loop, settled_all = 1 since there is no Kafka. Progress of long
 * commands goes to stderr (a line every 0.5 s; `\r`-refreshed on a
 * terminal), results to stdout or -o FILE. Single-threaded.
 *
 * Exit codes: 0 done, 1 failed at run time (or `check` found problems),
 * 2 usage error.
 */
#include "base/clock.h"
#include "base/iso8601.h"
#include "cmd/cli.h"
#include "gateway/config.h"
#include "gateway/forwarder.h"
#include "gateway/log.h"
#include "storage/journal.h"
#include "storage/recover.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define CMD "recover"

struct recover_opts {
    const char *journal;
    const char *cmd;
    const char *what; /* export selection */
    const char *out;  /* -o */
    const char *config;
    int json;
    int read_only;
    int quiet;
    int all;
    int route;
    int64_t id;
    const char *topic;
    int32_t partition;
    int64_t from_offset, to_offset;
    int64_t since_ms, until_ms, before_ms;
};

static void usage(void)
{
    printf(
        "usage: kadx recover JOURNAL COMMAND [options]\n"
        "\n"
        "Inspects and repairs the journal of a stopped gateway. A journal a\n"
        "running gateway holds is refused; --read-only allows status, check\n"
        "and export anyway. Every command is safe to run twice.\n"
        "\n"
        "commands:\n"
        "  status              per route and partition: offsets, pending,\n"
        "                      in flight, delivered, dead (--json: one "
        "object)\n"
        "  check               PRAGMA integrity_check + kadx's invariants;\n"
        "                      exit 1 with a report when broken\n"
        "  export [WHAT]       events as JSON lines (stdout or -o FILE);\n"
        "                      WHAT: pending (default: not yet delivered),\n"
        "                      dead, delivered, all; narrowed by --topic,\n"
        "                      --partition, --from/--to OFFSET, --since/"
        "--until TIME\n"
        "  requeue             dead letters back to pending: all, --route N "
        "or --id ID\n"
        "  replay -c FILE      send pending events straight to ADX (no "
        "Kafka)\n"
        "  purge --before TIME delete delivered events appended before TIME\n"
        "  salvage -o NEW      copy every readable event of a damaged journal\n"
        "                      into the journal NEW (--all: delivered ones "
        "too)\n"
        "\n"
        "options:\n"
        "  --json              machine-readable output (status, check)\n"
        "  --read-only         open without the write lock (status, check,\n"
        "                      export)\n"
        "  -o, --output FILE   export: write here; salvage: the new journal\n"
        "  -c, --config FILE   kadx.json (replay; route names for --route)\n"
        "  --route N           route index (config order)\n"
        "  --id ID             one dead letter (requeue)\n"
        "  --topic T, --partition P, --from OFFSET, --to OFFSET\n"
        "  --since TIME, --until TIME, --before TIME\n"
        "                      TIME: 2026-01-31T12:00:00Z, 2026-01-31, ms "
        "since\n"
        "                      the epoch, or an age: 90s, 30m, 24h, 7d\n"
        "  -q, --quiet         no progress on stderr\n");
}

/* ------------------------------------------------------------- parsing */

static int parse_i64(const char *s, int64_t *out)
{
    char *end;
    long long v;

    if (s == NULL || *s == '\0') {
        return -EINVAL;
    }
    errno = 0;
    v = strtoll(s, &end, 10);
    if (errno != 0 || *end != '\0') {
        return -EINVAL;
    }
    *out = v;
    return 0;
}

/*
 * TIME: ISO-8601 UTC (base/iso8601.h: "2026-01-31T12:00:00Z", optional
 * fraction, "T" or a space, "Z" optional, or a date alone),
 * milliseconds since the epoch, or an age before now ("90s", "30m", "24h",
 * "7d"). 0 or -EINVAL.
 */
static int parse_time(const char *s, int64_t *out)
{
    size_t n = strlen(s);
    int64_t v;

    if (n >= 2 && strchr("smhd", s[n - 1]) != NULL) {
        char num[32];
        int64_t unit = s[n - 1] == 's'   ? 1000
                       : s[n - 1] == 'm' ? 60000
                       : s[n - 1] == 'h' ? 3600000
                                         : 86400000;
        if (n - 1 >= sizeof(num)) {
            return -EINVAL;
        }
        memcpy(num, s, n - 1);
        num[n - 1] = '\0';
        if (parse_i64(num, &v) < 0 || v < 0) {
            return -EINVAL;
        }
        *out = wall_ms() - v * unit;
        return 0;
    }
    if (parse_i64(s, &v) == 0) {
        if (v < 0) {
            return -EINVAL;
        }
        *out = v;
        return 0;
    }
    return iso8601_parse_ms(s, out);
}

enum {
    OPT_JSON = 256,
    OPT_READ_ONLY,
    OPT_ROUTE,
    OPT_ID,
    OPT_TOPIC,
    OPT_PARTITION,
    OPT_FROM,
    OPT_TO,
    OPT_SINCE,
    OPT_UNTIL,
    OPT_BEFORE,
    OPT_ALL,
};

/* One option with a number or a time (c from getopt_long, arg its value):
 * stored in o, or a usage error (exit 2). */
static int parse_value_opt(int c, const char *arg, struct recover_opts *o)
{
    int64_t v;

    switch (c) {
    case OPT_ROUTE:
        if (parse_i64(arg, &v) < 0 || v < 0 || v > 100000) {
            return cli_usage_error(CMD, "bad --route '%s' (an index)", arg);
        }
        o->route = (int)v;
        break;
    case OPT_ID:
        if (parse_i64(arg, &o->id) < 0 || o->id <= 0) {
            return cli_usage_error(CMD, "bad --id '%s'", arg);
        }
        break;
    case OPT_PARTITION:
        if (parse_i64(arg, &v) < 0 || v < 0 || v > INT32_MAX) {
            return cli_usage_error(CMD, "bad --partition '%s'", arg);
        }
        o->partition = (int32_t)v;
        break;
    case OPT_FROM:
    case OPT_TO:
        if (parse_i64(arg, &v) < 0 || v < 0) {
            return cli_usage_error(CMD, "bad offset '%s'", arg);
        }
        *(c == OPT_FROM ? &o->from_offset : &o->to_offset) = v;
        break;
    case OPT_SINCE:
    case OPT_UNTIL:
    case OPT_BEFORE:
        if (parse_time(arg, &v) < 0) {
            return cli_usage_error(
                CMD, "bad time '%s' (2026-01-31T12:00:00Z, ms, or 24h)", arg);
        }
        *(c == OPT_SINCE   ? &o->since_ms
          : c == OPT_UNTIL ? &o->until_ms
                           : &o->before_ms) = v;
        break;
    }
    return 0;
}

static int parse_args(int argc, char **argv, struct recover_opts *o)
{
    static const struct option longopts[] = {
        {"json", no_argument, NULL, OPT_JSON},
        {"read-only", no_argument, NULL, OPT_READ_ONLY},
        {"output", required_argument, NULL, 'o'},
        {"config", required_argument, NULL, 'c'},
        {"quiet", no_argument, NULL, 'q'},
        {"route", required_argument, NULL, OPT_ROUTE},
        {"id", required_argument, NULL, OPT_ID},
        {"topic", required_argument, NULL, OPT_TOPIC},
        {"partition", required_argument, NULL, OPT_PARTITION},
        {"from", required_argument, NULL, OPT_FROM},
        {"to", required_argument, NULL, OPT_TO},
        {"since", required_argument, NULL, OPT_SINCE},
        {"until", required_argument, NULL, OPT_UNTIL},
        {"before", required_argument, NULL, OPT_BEFORE},
        {"all", no_argument, NULL, OPT_ALL},
        {NULL, 0, NULL, 0},
    };
    const char *pos[3];
    size_t npos = 0;
    int c;

    memset(o, 0, sizeof(*o));
    o->route = -1;
    o->partition = -1;
    o->from_offset = -1;
    o->to_offset = -1;
    o->since_ms = -1;
    o->until_ms = -1;
    o->before_ms = -1;
    optind = 0;
    opterr = 0;
    /* "-": positionals come back as option 1, in order */
    while (optind < argc) {
        c = getopt_long(argc, argv, "-o:c:q", longopts, NULL);
        if (c == -1) {
            break;
        }
        switch (c) {
        case 1:
            if (npos >= 3) {
                return cli_usage_error(CMD, "unexpected argument '%s'", optarg);
            }
            pos[npos++] = optarg;
            break;
        case 'o':
            o->out = optarg;
            break;
        case 'c':
            o->config = optarg;
            break;
        case 'q':
            o->quiet = 1;
            break;
        case OPT_JSON:
            o->json = 1;
            break;
        case OPT_READ_ONLY:
            o->read_only = 1;
            break;
        case OPT_ALL:
            o->all = 1;
            break;
        case OPT_TOPIC:
            o->topic = optarg;
            break;
        case OPT_ROUTE:
        case OPT_ID:
        case OPT_PARTITION:
        case OPT_FROM:
        case OPT_TO:
        case OPT_SINCE:
        case OPT_UNTIL:
        case OPT_BEFORE: {
            int rc = parse_value_opt(c, optarg, o);

            if (rc != 0) {
                return rc;
            }
            break;
        }
        default:
            return cli_bad_option(CMD, c, argv);
        }
    }
    while (optind < argc) {
        if (npos >= 3) {
            return cli_usage_error(CMD, "unexpected argument '%s'",
                                   argv[optind]);
        }
        pos[npos++] = argv[optind++];
    }
    if (npos < 2) {
        return cli_usage_error(CMD, "needs a JOURNAL and a COMMAND");
    }
    o->journal = pos[0];
    o->cmd = pos[1];
    o->what = npos > 2 ? pos[2] : NULL;
    if (o->what != NULL && strcmp(o->cmd, "export") != 0) {
        return cli_usage_error(CMD, "unexpected argument '%s'", o->what);
    }
    return 0;
}

/* ------------------------------------------------------------- progress */

struct progress_out {
    int tty;
    int dirty; /* a \r line is on the terminal */
};

static void progress_print(void *arg, const char *phase, int64_t done,
                           int64_t total)
{
    struct progress_out *po = arg;
    char line[160];

    if (total > 0) {
        snprintf(line, sizeof(line),
                 "%s: %" PRId64 " of %" PRId64 " (%" PRId64 "%%)", phase, done,
                 total, done * 100 / total);
    } else {
        snprintf(line, sizeof(line), "%s: %" PRId64, phase, done);
    }
    if (po->tty) {
        fprintf(stderr, "\r%-60s", line);
        po->dirty = 1;
    } else {
        fprintf(stderr, "%s\n", line);
    }
}

static void progress_done(struct progress_out *po)
{
    if (po->dirty) {
        fputc('\n', stderr);
        po->dirty = 0;
    }
}

/* ------------------------------------------------------------ commands */

/*
 * Opens PATH for writing an export: events' payloads, so a file it creates
 * is 0600 whatever the umask, and an existing regular file is truncated and
 * set to 0600 too (a FIFO or a device such as /dev/stdout is left as is).
 * Returns an owned stream (fclose), or NULL with errno set.
 */
static FILE *open_private(const char *path)
{
    struct stat sb;
    FILE *f;
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

    if (fd < 0) {
        return NULL;
    }
    if (fstat(fd, &sb) == 0 && S_ISREG(sb.st_mode) &&
        (sb.st_mode & 0777) != 0600 && fchmod(fd, 0600) < 0) {
        int e = errno;
        close(fd);
        errno = e;
        return NULL;
    }
    f = fdopen(fd, "w");
    if (f == NULL) {
        int e = errno;
        close(fd);
        errno = e;
    }
    return f;
}

/* An open journal, possibly a snapshot of one a gateway holds. */
struct opened {
    struct journal *j;
    char snapdir[256]; /* "" unless reading a snapshot */
    char snap[320];
};

static void snapshot_remove(struct opened *op)
{
    char lock[340];

    if (op->snapdir[0] == '\0') {
        return;
    }
    snprintf(lock, sizeof(lock), "%s.lock", op->snap);
    unlink(op->snap);
    unlink(lock);
    rmdir(op->snapdir);
    op->snapdir[0] = '\0';
}

/*
 * --read-only on a journal a gateway holds: copies a consistent snapshot
 * into a private temporary directory. Returns 0 (op->snap names it) or 1
 * after printing why.
 */
static int snapshot_take(const char *path, struct opened *op)
{
    const char *tmp = getenv("TMPDIR");
    char err[512] = "";
    int rc;

    snprintf(op->snapdir, sizeof(op->snapdir), "%s/kadx-recover-XXXXXX",
             tmp != NULL && tmp[0] != '\0' ? tmp : "/tmp");
    if (mkdtemp(op->snapdir) == NULL) {
        fprintf(stderr,
                "kadx recover: cannot create a temporary directory: "
                "%s\n",
                strerror(errno));
        op->snapdir[0] = '\0';
        return 1;
    }
    snprintf(op->snap, sizeof(op->snap), "%s/snapshot.db", op->snapdir);
    rc = recover_snapshot(path, op->snap, err, sizeof(err));
    if (rc < 0) {
        fprintf(stderr, "kadx recover: %s\n", err);
        snapshot_remove(op);
        return 1;
    }
    return 0;
}

static int open_journal(const struct recover_opts *o, int read_only,
                        struct opened *op)
{
    struct journal_options jo;
    struct stat st;
    char err[512];
    int rc;

    memset(op, 0, sizeof(*op));
    if (stat(o->journal, &st) < 0) {
        fprintf(stderr, "kadx recover: no journal at '%s': %s\n", o->journal,
                strerror(errno));
        return 1;
    }
    memset(&jo, 0, sizeof(jo));
    jo.path = o->journal;
    jo.sync_full = 1;
    jo.read_only = read_only;
    err[0] = '\0';
    rc = journal_open(&jo, &op->j, err, sizeof(err));
    if (rc == 0 && journal_permission_warning(op->j) != NULL) {
        fprintf(stderr,
                "kadx recover: warning: %s: others may read or change the "
                "journal (chmod 600 them)\n",
                journal_permission_warning(op->j));
    }
    if (rc == -EBUSY && read_only) {
        /* a running gateway holds it: read a snapshot instead */
        fprintf(stderr, "kadx recover: %s: reading a snapshot\n", err);
        if (snapshot_take(o->journal, op) != 0) {
            return 1;
        }
        jo.path = op->snap;
        err[0] = '\0';
        rc = journal_open(&jo, &op->j, err, sizeof(err));
        if (rc < 0) {
            fprintf(stderr, "kadx recover: %s\n", err);
            snapshot_remove(op);
            return 1;
        }
        return 0;
    }
    if (rc == -EBUSY) {
        fprintf(stderr,
                "kadx recover: %s\nstop the gateway first (status, check and "
                "export work with --read-only)\n",
                err);
        return 1;
    }
    if (rc < 0) {
        fprintf(stderr, "kadx recover: %s\n", err);
        fprintf(stderr, "kadx recover: if the journal is damaged: 'kadx "
                        "recover JOURNAL check', then 'salvage'\n");
        return 1;
    }
    return 0;
}

static void close_journal(struct opened *op)
{
    journal_close(op->j);
    op->j = NULL;
    snapshot_remove(op);
}

static int cmd_status(const struct recover_opts *o)
{
    struct opened op;
    char err[512] = "";
    int rc;

    rc = open_journal(o, o->read_only, &op);
    if (rc != 0) {
        return rc;
    }
    rc = recover_status(op.j, o->journal, stdout, o->json, err, sizeof(err));
    close_journal(&op);
    if (rc < 0) {
        fprintf(stderr, "kadx recover: %s\n", err);
        return 1;
    }
    return 0;
}

static int cmd_check(const struct recover_opts *o,
                     const struct recover_progress *pg)
{
    struct recover_report rep;
    char err[512] = "";
    int rc;

    rc = recover_check(o->journal, pg, &rep, err, sizeof(err));
    if (rc == -EBUSY && o->read_only) {
        struct opened op;

        memset(&op, 0, sizeof(op));
        fprintf(stderr, "kadx recover: %s: checking a snapshot\n", err);
        recover_report_release(&rep);
        if (snapshot_take(o->journal, &op) != 0) {
            return 1;
        }
        rc = recover_check(op.snap, pg, &rep, err, sizeof(err));
        snapshot_remove(&op);
    }
    progress_done(pg->arg);
    if (rc == -EBUSY) {
        fprintf(stderr, "kadx recover: %s\nstop the gateway first\n", err);
        recover_report_release(&rep);
        return 1;
    }
    if (rc < 0) {
        fprintf(stderr, "kadx recover: check failed: %s\n", err);
        recover_report_release(&rep);
        return 1;
    }
    if (o->json) {
        printf("{\"ok\":%s,\"integrity_ok\":%s,\"problems\":%" PRId64
               ",\"chunks\":%" PRId64 ",\"events\":%" PRId64
               ",\"batches\":%" PRId64 ",\"unreadable_chunks\":%" PRId64
               ",\"report\":[",
               rep.problems == 0 ? "true" : "false",
               rep.integrity_ok ? "true" : "false", rep.problems, rep.chunks,
               rep.events, rep.batches, rep.unreadable);
        for (size_t i = 0; i < rep.nlines; i++) {
            if (i > 0) {
                putchar(',');
            }
            recover_json_string(stdout, rep.lines[i], strlen(rep.lines[i]));
        }
        printf("]}\n");
    } else {
        for (size_t i = 0; i < rep.nlines; i++) {
            printf("problem: %s\n", rep.lines[i]);
        }
        if ((int64_t)rep.nlines < rep.problems) {
            printf("... and %" PRId64 " more problems\n",
                   rep.problems - (int64_t)rep.nlines);
        }
        printf("check: %s: %" PRId64 " chunks, %" PRId64 " events, %" PRId64
               " batches examined; integrity_check %s; %" PRId64 " problem%s\n",
               rep.problems == 0 ? "ok" : "BROKEN", rep.chunks, rep.events,
               rep.batches, rep.integrity_ok ? "ok" : "failed", rep.problems,
               rep.problems == 1 ? "" : "s");
    }
    rc = rep.problems == 0 ? 0 : 1;
    recover_report_release(&rep);
    return rc;
}

static int cmd_export(const struct recover_opts *o,
                      const struct recover_progress *pg)
{
    struct recover_export_req req;
    struct opened op;
    FILE *out = stdout;
    char err[512] = "";
    int64_t n = 0;
    int rc;

    recover_export_req_init(&req);
    if (o->what == NULL || strcmp(o->what, "pending") == 0) {
        req.states = JOURNAL_SEL_PENDING | JOURNAL_SEL_INFLIGHT;
    } else if (strcmp(o->what, "dead") == 0) {
        req.states = JOURNAL_SEL_DEAD;
    } else if (strcmp(o->what, "delivered") == 0) {
        req.states = JOURNAL_SEL_DELIVERED;
    } else if (strcmp(o->what, "all") == 0) {
        req.states = JOURNAL_SEL_ALL;
    } else {
        return cli_usage_error(CMD,
                               "export: bad selection '%s' (pending, dead, "
                               "delivered, all)",
                               o->what);
    }
    req.route = o->route;
    req.topic = o->topic;
    req.partition = o->partition;
    req.from_offset = o->from_offset;
    req.to_offset = o->to_offset;
    req.from_ts_ms = o->since_ms;
    req.to_ts_ms = o->until_ms;
    rc = open_journal(o, o->read_only, &op);
    if (rc != 0) {
        return rc;
    }
    if (o->out != NULL && strcmp(o->out, "-") != 0) {
        out = open_private(o->out);
        if (out == NULL) {
            fprintf(stderr, "kadx recover: cannot create '%s': %s\n", o->out,
                    strerror(errno));
            close_journal(&op);
            return 1;
        }
    }
    rc = recover_export(op.j, &req, out, pg, &n, err, sizeof(err));
    progress_done(pg->arg);
    close_journal(&op);
    if (out != stdout && fclose(out) != 0 && rc == 0) {
        snprintf(err, sizeof(err), "cannot write '%s': %s", o->out,
                 strerror(errno));
        rc = -EIO;
    }
    if (rc < 0) {
        fprintf(stderr, "kadx recover: export failed: %s\n", err);
        return 1;
    }
    fprintf(stderr, "exported %" PRId64 " events\n", n);
    return 0;
}

static int cmd_requeue(const struct recover_opts *o)
{
    struct opened op;
    char err[512] = "";
    int64_t n = 0;
    int rc;

    rc = open_journal(o, 0, &op);
    if (rc != 0) {
        return rc;
    }
    rc = recover_requeue(op.j, o->route, o->id, &n, err, sizeof(err));
    close_journal(&op);
    if (rc < 0) {
        fprintf(stderr, "kadx recover: requeue failed: %s\n", err);
        return 1;
    }
    printf("requeued %" PRId64 " dead letters\n", n);
    return 0;
}

static int cmd_purge(const struct recover_opts *o,
                     const struct recover_progress *pg)
{
    struct opened op;
    char err[512] = "";
    int64_t n = 0;
    int rc;

    if (o->before_ms < 0) {
        return cli_usage_error(CMD, "purge needs --before TIME");
    }
    rc = open_journal(o, 0, &op);
    if (rc != 0) {
        return rc;
    }
    rc = recover_purge(op.j, o->before_ms, pg, &n, err, sizeof(err));
    progress_done(pg->arg);
    close_journal(&op);
    if (rc < 0) {
        fprintf(stderr, "kadx recover: purge failed: %s\n", err);
        return 1;
    }
    printf("purged %" PRId64 " delivered events\n", n);
    return 0;
}

static int cmd_salvage(const struct recover_opts *o,
                       const struct recover_progress *pg)
{
    struct recover_salvage_result res;
    char err[512] = "";
    int rc;

    if (o->out == NULL) {
        return cli_usage_error(CMD, "salvage needs -o NEW_JOURNAL");
    }
    rc = recover_salvage(o->journal, o->out,
                         o->all ? RECOVER_SALVAGE_DELIVERED : 0, pg, &res, err,
                         sizeof(err));
    progress_done(pg->arg);
    if (rc < 0) {
        fprintf(stderr, "kadx recover: salvage failed: %s\n", err);
        return 1;
    }
    printf("salvaged into %s: %" PRId64 " chunks read, %" PRId64
           " damaged (%" PRId64 " of them partly read); %" PRId64
           " events read, %" PRId64 " copied, %" PRId64
           " already there, %" PRId64 " delivered skipped, %" PRId64
           " of unknown state copied, %" PRId64 " dead letters copied as "
           "pending\n",
           o->out, res.chunks_read, res.chunks_lost, res.chunks_partial,
           res.events_read, res.events_copied, res.events_present,
           res.events_skipped, res.events_unknown, res.events_dead);
    return 0;
}

/* --------------------------------------------------------------- replay */

/*
 * `replay -c FILE`: the forwarder's own code on a private loop, with every
 * journaled event treated as settled (no Kafka here), until nothing is
 * pending or in flight any more. Unfinished batches of the stopped gateway
 * come first, SENT ones resolved as ambiguous (INV-5: the dedupe query
 * when the route has a dedupe column). Dead letters stay dead (requeue
 * them first to send them). A route paused by a configuration error or by
 * its retry budget ends the command with exit 1: offline, nobody would fix
 * it while we wait.
 */
struct rp {
    uv_loop_t loop;
    uv_timer_t tick;
    uv_signal_t sigint, sigterm;
    const struct config *cfg;
    struct journal *j;
    struct forwarder *fw;
    struct progress_out *po;
    int quiet;
    int64_t start_undone;
    int64_t last_print_ms;
    int exit_code;
    int stopping;
    /* totals over routes, read when the forwarder stopped */
    uint64_t delivered, batches, ambiguous, dedupe_found, dups, dead;
};

static int64_t rp_now_ms(void)
{
    return (int64_t)(uv_hrtime() / 1000000);
}

/* Events not yet delivered nor dead (pending + in flight), over routes. */
static int rp_undone(struct rp *r, int64_t *undone)
{
    struct journal_stats st;
    char err[256] = "";
    int rc;

    memset(&st, 0, sizeof(st));
    rc = journal_stats(r->j, &st, err, sizeof(err));
    if (rc < 0) {
        fprintf(stderr, "kadx recover: %s\n", err);
        return rc;
    }
    *undone = 0;
    for (size_t i = 0; i < st.nparts; i++) {
        *undone += st.parts[i].pending_count + st.parts[i].inflight_count;
    }
    journal_stats_release(&st);
    return 0;
}

static void rp_closed(uv_handle_t *h)
{
    (void)h;
}

static void rp_fw_stopped(void *arg)
{
    struct rp *r = arg;

    for (size_t i = 0; i < r->cfg->nroutes; i++) {
        struct forwarder_route_stats rs;

        if (forwarder_route_stats(r->fw, (int)i, &rs) == 0) {
            r->delivered += rs.events_delivered;
            r->batches += rs.batches_delivered;
            r->ambiguous += rs.ambiguous;
            r->dedupe_found += rs.dedupe_found;
            r->dups += rs.possible_duplicates;
            r->dead += rs.dead_events;
        }
    }
    forwarder_free(r->fw);
    r->fw = NULL;
    uv_close((uv_handle_t *)&r->tick, rp_closed);
    uv_close((uv_handle_t *)&r->sigint, rp_closed);
    uv_close((uv_handle_t *)&r->sigterm, rp_closed);
    journal_close(r->j);
    r->j = NULL;
}

static void rp_stop(struct rp *r, int exit_code)
{
    if (exit_code > r->exit_code) {
        r->exit_code = exit_code;
    }
    if (r->stopping) {
        return;
    }
    r->stopping = 1;
    uv_timer_stop(&r->tick);
    forwarder_stop(r->fw, 5000, rp_fw_stopped, r);
}

static void rp_on_signal(uv_signal_t *s, int signum)
{
    struct rp *r = s->data;

    fprintf(stderr, "kadx recover: %s: stopping\n",
            signum == SIGINT ? "SIGINT" : "SIGTERM");
    rp_stop(r, 1);
}

static void rp_on_tick(uv_timer_t *t)
{
    struct rp *r = t->data;
    int64_t undone = 0;
    int64_t now = rp_now_ms();

    if (rp_undone(r, &undone) < 0) {
        rp_stop(r, 1);
        return;
    }
    if (!r->quiet && now - r->last_print_ms >= 500) {
        r->last_print_ms = now;
        progress_print(r->po, "replay", r->start_undone - undone,
                       r->start_undone);
    }
    for (size_t i = 0; i < r->cfg->nroutes; i++) {
        struct forwarder_route_stats rs;

        if (forwarder_route_stats(r->fw, (int)i, &rs) == 0 &&
            (rs.state == FORWARDER_PAUSED_CONFIG ||
             rs.state == FORWARDER_PAUSED_RETRIES ||
             rs.state == FORWARDER_PAUSED_ERROR)) {
            progress_done(r->po);
            fprintf(stderr, "kadx recover: route '%s' is %s: %s\n", rs.name,
                    forwarder_route_state_name(rs.state), rs.reason);
            rp_stop(r, 1);
            return;
        }
    }
    if (undone == 0 && forwarder_inflight(r->fw) == 0) {
        if (!r->quiet) {
            progress_print(r->po, "replay", r->start_undone, r->start_undone);
        }
        rp_stop(r, 0);
    }
}

static int cmd_replay(const struct recover_opts *o, struct progress_out *po)
{
    struct config *cfg = NULL;
    struct journal_options jo;
    struct forwarder_options fo;
    struct stat st;
    struct rp r;
    char err[512] = "";
    int rc;

    if (o->config == NULL) {
        return cli_usage_error(CMD, "replay needs -c kadx.json (ADX and "
                                    "routes)");
    }
    if (stat(o->journal, &st) < 0) {
        fprintf(stderr, "kadx recover: no journal at '%s': %s\n", o->journal,
                strerror(errno));
        return 1;
    }
    rc = config_load_file(o->config, NULL, &cfg, err, sizeof(err));
    if (rc < 0) {
        fprintf(stderr, "kadx recover: %s\n", err);
        return EXIT_USAGE;
    }
    memset(&r, 0, sizeof(r));
    r.cfg = cfg;
    r.po = po;
    r.quiet = o->quiet;
    rc = uv_loop_init(&r.loop);
    if (rc < 0) {
        fprintf(stderr, "kadx recover: event loop: %s\n", uv_strerror(rc));
        config_free(cfg);
        return 1;
    }
    memset(&jo, 0, sizeof(jo));
    jo.path = o->journal;
    jo.max_bytes = cfg->journal.max_bytes;
    jo.sync_full = cfg->journal.sync_full;
    jo.loop = &r.loop;
    rc = journal_open(&jo, &r.j, err, sizeof(err));
    if (rc < 0) {
        fprintf(stderr, "kadx recover: %s%s\n", err,
                rc == -EBUSY ? "\nstop the gateway first" : "");
        r.exit_code = 1;
        goto close_loop;
    }
    if (rp_undone(&r, &r.start_undone) < 0) {
        r.exit_code = 1;
        goto close_journal;
    }
    memset(&fo, 0, sizeof(fo));
    fo.cfg = cfg;
    fo.journal = r.j;
    fo.settled.everything = 1; /* no Kafka: everything journaled is ours */
    rc = forwarder_new(&r.loop, &fo, &r.fw, err, sizeof(err));
    if (rc == 0) {
        rc = forwarder_start(r.fw, err, sizeof(err));
    }
    if (rc < 0) {
        fprintf(stderr, "kadx recover: forwarder: %s\n", err);
        forwarder_free(r.fw);
        r.fw = NULL;
        r.exit_code = 1;
        goto close_journal;
    }
    uv_timer_init(&r.loop, &r.tick);
    r.tick.data = &r;
    uv_timer_start(&r.tick, rp_on_tick, 100, 100);
    uv_signal_init(&r.loop, &r.sigint);
    uv_signal_init(&r.loop, &r.sigterm);
    r.sigint.data = &r;
    r.sigterm.data = &r;
    uv_signal_start(&r.sigint, rp_on_signal, SIGINT);
    uv_signal_start(&r.sigterm, rp_on_signal, SIGTERM);
    uv_run(&r.loop, UV_RUN_DEFAULT);
    progress_done(po);
    printf("replayed: %" PRIu64 " events delivered in %" PRIu64
           " batches; %" PRIu64 " ambiguous batches (%" PRIu64
           " found already in ADX), %" PRIu64 " possible duplicates, %" PRIu64
           " dead-lettered\n",
           r.delivered, r.batches, r.ambiguous, r.dedupe_found, r.dups, r.dead);
    goto close_loop;

close_journal:
    journal_close(r.j);
    r.j = NULL;
    uv_run(&r.loop, UV_RUN_DEFAULT);
close_loop:
    if (uv_loop_close(&r.loop) != 0) {
        fprintf(stderr, "kadx recover: handles left open at exit\n");
    }
    config_free(cfg);
    return r.exit_code;
}

int cmd_recover(int argc, char **argv)
{
    struct recover_opts o;
    struct progress_out po;
    struct recover_progress pg;
    int rc;

    if (cli_wants_help(argc, argv)) {
        usage();
        return 0;
    }
    rc = parse_args(argc, argv, &o);
    if (rc != 0) {
        return rc;
    }
    memset(&po, 0, sizeof(po));
    po.tty = isatty(STDERR_FILENO);
    pg.fn = o.quiet ? NULL : progress_print;
    pg.arg = &po;
    if (o.read_only && strcmp(o.cmd, "status") != 0 &&
        strcmp(o.cmd, "check") != 0 && strcmp(o.cmd, "export") != 0) {
        return cli_usage_error(CMD, "--read-only allows only status, check "
                                    "and export");
    }
    if (strcmp(o.cmd, "status") == 0) {
        return cmd_status(&o);
    }
    if (strcmp(o.cmd, "check") == 0) {
        return cmd_check(&o, &pg);
    }
    if (strcmp(o.cmd, "export") == 0) {
        return cmd_export(&o, &pg);
    }
    if (strcmp(o.cmd, "requeue") == 0) {
        return cmd_requeue(&o);
    }
    if (strcmp(o.cmd, "purge") == 0) {
        return cmd_purge(&o, &pg);
    }
    if (strcmp(o.cmd, "salvage") == 0) {
        return cmd_salvage(&o, &pg);
    }
    if (strcmp(o.cmd, "replay") == 0) {
        return cmd_replay(&o, &po);
    }
    return cli_usage_error(CMD, "unknown command '%s'", o.cmd);
}
