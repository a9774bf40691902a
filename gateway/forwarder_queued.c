/*
 * forwarder_queued.c - a batch through queued ingestion (queued.h,
 * QUEUED.md): which attempts go queued (every one of a queued route's; a
 * managed route's once ADX refused to stream it), the post of the batch's
 * body, and the report, handed to fb_outcome like a streaming answer.
 * Loop thread only.
 */
#include "base/clock.h"
#include "gateway/config.h"
#include "gateway/forwarder.h"
#include "gateway/forwarder_internal.h"
#include "gateway/log.h"
#include "gateway/queued.h"
#include "storage/journal.h"

#include <stdio.h>
#include <string.h>

/* Does b go through queued ingestion (this attempt)? */
int fb_uses_queued(const struct fbatch *b)
{
    const struct route *rt = b->rt;

    switch (rt->cfg->ingestion) {
    case CONFIG_INGEST_QUEUED:
        return 1;
    case CONFIG_INGEST_MANAGED:
        return b->use_queued || rt->streaming_off_mono > mono_ms();
    default:
        return 0;
    }
}

static void on_queued(void *arg, const struct queued_result *r)
{
    struct fbatch *b = arg;
    struct route *rt = b->rt;

    b->qop = NULL;
    if (r->cancelled) {
        fb_finish(b); /* stopping: SENT in the journal, posted again later */
        return;
    }
    if (r->outcome == ADX_OK && r->skipped) {
        rt->st.queued_skipped++;
        log_info("forwarder", "%s: already in ADX (%s): delivered", b->jb->id,
                 r->reason);
    }
    fb_outcome(b, r->outcome, r->reason, r->retry_after_ms);
}

/* Queued ingestion of b's body (queued.h): the outcome comes to
 * fb_outcome like a streaming answer's. */
void fb_send_queued(struct fbatch *b, const char *token)
{
    struct route *rt = b->rt;
    struct forwarder *fw = rt->fw;
    const struct config_route *rc = rt->cfg;
    struct queued_ingest in;
    char err[256];

    memset(&in, 0, sizeof(in));
    in.dm_url = fw->cfg->adx.dm_url;
    in.token = token;
    in.database = rc->database;
    in.table = rc->table;
    in.format = rc->format;
    in.mapping = rc->mapping;
    in.batch_id = b->jb->id;
    in.attempt = b->jb->attempts;
    in.body = b->gz;
    in.body_len = b->gz_len;
    in.raw_size = b->raw_len;
    in.timeout_ms = (long)fw->cfg->adx.request_timeout_ms;
    fb_set_state(b, FB_SENDING);
    b->sent_mono = mono_ms();
    rt->st.requests++;
    rt->st.queued_posts++;
    rt->st.bytes_sent += b->gz_len;
    if (queued_ingest(fw->queued, &in, on_queued, b, &b->qop, err,
                      sizeof(err)) < 0) {
        snprintf(b->last_error, sizeof(b->last_error), "%s", err);
        rt->st.transient++;
        fb_retry_transient(b, -1);
    }
}
