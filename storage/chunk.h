/*
 * chunk.h - the packed form of one journal chunk: the events of one
 * (topic, partition) appended in one request, stored as one BLOB in the
 * journal's `chunks` table (see storage/journal.c for why).
 *
 * Each event is a record of five varints and three byte strings:
 *   varint  offset - previous offset (the first: offset - chunk first_off)
 *   varint  zigzag(timestamp - previous timestamp) (previous starts at 0)
 *   varint  key length + 1 (0 = null key)
 *   varint  value length
 *   varint  headers length
 *   bytes   key, value, headers
 * Offsets strictly increase within a chunk. Pure functions and a growable
 * buffer; no threads, no SQLite.
 */
#ifndef KADX_CHUNK_H
#define KADX_CHUNK_H

#include <stddef.h>
#include <stdint.h>

/* Caps checked on pack and unpack: a value, key or headers string larger
 * than this is refused (-EMSGSIZE) or reported corrupt. */
#define CHUNK_FIELD_MAX ((size_t)64 << 20)

/* A growable byte buffer. Zero-initialise; chunk_buf_release frees. */
struct chunk_buf {
    uint8_t *data;
    size_t len;
    size_t cap;
};

void chunk_buf_release(struct chunk_buf *b);
/* Ensures room for `more` bytes. 0 or -ENOMEM. */
int chunk_buf_reserve(struct chunk_buf *b, size_t more);

/* Running state of a chunk being packed. */
struct chunk_writer {
    struct chunk_buf *buf; /* borrowed */
    int64_t first_off;
    int64_t prev_off;
    int64_t prev_ts;
    int64_t count;
    int64_t value_bytes; /* sum of value lengths */
    int64_t ts_min, ts_max;
};

/* Starts packing into buf (cleared) a chunk whose first event has offset
 * first_off. */
void chunk_writer_init(struct chunk_writer *w, struct chunk_buf *buf,
                       int64_t first_off);

/* Appends one event (offset > previous). Borrows the byte pointers for the
 * call. 0, -ENOMEM, -EMSGSIZE (a field over CHUNK_FIELD_MAX) or -EINVAL
 * (offset not increasing, or a NULL pointer with a non-zero length). */
int chunk_writer_add(struct chunk_writer *w, int64_t offset, int64_t ts,
                     const void *key, size_t key_len, const void *value,
                     size_t value_len, const void *headers, size_t headers_len);

/* One unpacked event; the pointers borrow the chunk's bytes. */
struct chunk_event {
    int64_t offset;
    int64_t timestamp_ms;
    const uint8_t *key; /* NULL = null key */
    size_t key_len;
    const uint8_t *value;
    size_t value_len;
    const uint8_t *headers;
    size_t headers_len;
};

struct journal_event;

/* Points e's offset, timestamp, key, value and headers at ce's (borrowed:
 * valid as long as the chunk's bytes are); route, topic and partition are
 * the caller's to set. */
void chunk_event_to_journal(const struct chunk_event *ce,
                            struct journal_event *e);

struct chunk_reader {
    const uint8_t *p, *end;
    int64_t prev_off;
    int64_t prev_ts;
};

/* Reads the chunk (data, len) whose first offset is first_off; borrows the
 * bytes until the reader is no longer used. */
void chunk_reader_init(struct chunk_reader *r, const void *data, size_t len,
                       int64_t first_off);

/* Next event: 1 = *ev filled, 0 = end, -EIO = corrupt bytes. */
int chunk_reader_next(struct chunk_reader *r, struct chunk_event *ev);

#endif
