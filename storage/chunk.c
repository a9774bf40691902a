/*
 * chunk.c - packs and unpacks the events of one journal chunk (format in
 * chunk.h). Used by the journal's writer thread when appending and by any
 * thread reading a chunk BLOB; holds no state of its own.
 */
#include "storage/chunk.h"
#include "storage/journal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

void chunk_buf_release(struct chunk_buf *b)
{
    if (b == NULL) {
        return;
    }
    free(b->data);
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
}

int chunk_buf_reserve(struct chunk_buf *b, size_t more)
{
    size_t need = b->len + more;
    if (need < b->len) {
        return -ENOMEM;
    }
    if (need <= b->cap) {
        return 0;
    }
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < need) {
        if (cap > SIZE_MAX / 2) {
            return -ENOMEM;
        }
        cap *= 2;
    }
    uint8_t *p = realloc(b->data, cap);
    if (p == NULL) {
        return -ENOMEM;
    }
    b->data = p;
    b->cap = cap;
    return 0;
}

static size_t put_varint(uint8_t *p, uint64_t v)
{
    size_t n = 0;
    while (v >= 0x80) {
        p[n++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    p[n++] = (uint8_t)v;
    return n;
}

static int get_varint(struct chunk_reader *r, uint64_t *out)
{
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        if (r->p >= r->end) {
            return -EIO;
        }
        uint8_t c = *r->p++;
        v |= (uint64_t)(c & 0x7f) << shift;
        if ((c & 0x80) == 0) {
            *out = v;
            return 0;
        }
    }
    return -EIO;
}

static uint64_t zigzag(int64_t v)
{
    return ((uint64_t)v << 1) ^ (uint64_t)(v >> 63);
}

static int64_t unzigzag(uint64_t v)
{
    return (int64_t)(v >> 1) ^ -(int64_t)(v & 1);
}

void chunk_writer_init(struct chunk_writer *w, struct chunk_buf *buf,
                       int64_t first_off)
{
    memset(w, 0, sizeof(*w));
    w->buf = buf;
    buf->len = 0;
    w->first_off = first_off;
    w->prev_off = first_off;
    w->ts_min = INT64_MAX;
    w->ts_max = INT64_MIN;
}

int chunk_writer_add(struct chunk_writer *w, int64_t offset, int64_t ts,
                     const void *key, size_t key_len, const void *value,
                     size_t value_len, const void *headers, size_t headers_len)
{
    if (key_len > CHUNK_FIELD_MAX || value_len > CHUNK_FIELD_MAX ||
        headers_len > CHUNK_FIELD_MAX) {
        return -EMSGSIZE;
    }
    if ((key == NULL && key_len > 0) || (value == NULL && value_len > 0) ||
        (headers == NULL && headers_len > 0)) {
        return -EINVAL;
    }
    if (w->count > 0 ? offset <= w->prev_off : offset < w->first_off) {
        return -EINVAL;
    }
    int rc =
        chunk_buf_reserve(w->buf, 5 * 10 + key_len + value_len + headers_len);
    if (rc < 0) {
        return rc;
    }
    uint8_t *p = w->buf->data + w->buf->len;
    size_t n = 0;
    n += put_varint(p + n, (uint64_t)(offset - w->prev_off));
    n += put_varint(p + n,
                    zigzag((int64_t)((uint64_t)ts - (uint64_t)w->prev_ts)));
    n += put_varint(p + n, key == NULL ? 0 : (uint64_t)key_len + 1);
    n += put_varint(p + n, value_len);
    n += put_varint(p + n, headers_len);
    if (key_len > 0) {
        memcpy(p + n, key, key_len);
        n += key_len;
    }
    if (value_len > 0) {
        memcpy(p + n, value, value_len);
        n += value_len;
    }
    if (headers_len > 0) {
        memcpy(p + n, headers, headers_len);
        n += headers_len;
    }
    w->buf->len += n;
    w->prev_off = offset;
    w->prev_ts = ts;
    w->count++;
    w->value_bytes += (int64_t)value_len;
    if (ts < w->ts_min) {
        w->ts_min = ts;
    }
    if (ts > w->ts_max) {
        w->ts_max = ts;
    }
    return 0;
}

void chunk_reader_init(struct chunk_reader *r, const void *data, size_t len,
                       int64_t first_off)
{
    r->p = data;
    r->end = r->p + len;
    r->prev_off = first_off;
    r->prev_ts = 0;
}

static int take(struct chunk_reader *r, uint64_t len, const uint8_t **out)
{
    if (len > CHUNK_FIELD_MAX || len > (uint64_t)(r->end - r->p)) {
        return -EIO;
    }
    *out = r->p;
    r->p += len;
    return 0;
}

int chunk_reader_next(struct chunk_reader *r, struct chunk_event *ev)
{
    if (r->p == NULL || r->p >= r->end) {
        return 0;
    }
    uint64_t doff, dts, klen, vlen, hlen;
    if (get_varint(r, &doff) < 0 || get_varint(r, &dts) < 0 ||
        get_varint(r, &klen) < 0 || get_varint(r, &vlen) < 0 ||
        get_varint(r, &hlen) < 0) {
        return -EIO;
    }
    /* Kafka offsets are >= 0: a negative one (a damaged row's first offset)
     * is corrupt, and would make the overflow check below wrap (found by
     * tests/fuzz/fuzz_chunk). */
    if (r->prev_off < 0 || doff > (uint64_t)(INT64_MAX - r->prev_off)) {
        return -EIO;
    }
    ev->offset = r->prev_off + (int64_t)doff;
    ev->timestamp_ms =
        (int64_t)((uint64_t)r->prev_ts + (uint64_t)unzigzag(dts));
    ev->key = NULL;
    ev->key_len = 0;
    if (klen > 0) {
        if (take(r, klen - 1, &ev->key) < 0) {
            return -EIO;
        }
        ev->key_len = (size_t)(klen - 1);
    }
    if (take(r, vlen, &ev->value) < 0 || take(r, hlen, &ev->headers) < 0) {
        return -EIO;
    }
    ev->value_len = (size_t)vlen;
    ev->headers_len = (size_t)hlen;
    r->prev_off = ev->offset;
    r->prev_ts = ev->timestamp_ms;
    return 1;
}

void chunk_event_to_journal(const struct chunk_event *ce,
                            struct journal_event *e)
{
    e->offset = ce->offset;
    e->timestamp_ms = ce->timestamp_ms;
    e->key = ce->key;
    e->key_len = ce->key_len;
    e->value = ce->value;
    e->value_len = ce->value_len;
    e->headers = ce->headers;
    e->headers_len = ce->headers_len;
}
