/*
 * avro.h - a small Avro implementation for Schema Registry topics: schema
 * parsing (the JSON form a registry serves), binary decoding of one datum
 * into JSON text (for `format: json` routes and for meta.key), and the
 * object container file (OCF) framing that ADX's `avro` format reads,
 * written by the gateway and read by the emulator.
 *
 * Our own rather than Debian's libavro-c: decoding straight into the
 * JSON shape a JSON ingestion mapping expects (a union as its plain value,
 * bytes as base64, like Kafka Connect's JsonConverter), a hard cap on the
 * output of hostile input (every read bounded by the body, every output
 * bounded by a cap), a depth cap, and no dependency (Avro's binary encoding
 * is a short spec: Avro 1.11 "Binary Encoding", "Object Container Files").
 *
 * A parsed schema is immutable: any thread may read it. No global state.
 */
#ifndef KADX_AVRO_H
#define KADX_AVRO_H

#include "base/sbuf.h"

#include <stddef.h>
#include <stdint.h>

struct avro_schema;

#define AVRO_MAX_DEPTH 64 /* nesting of schemas and of data */

/*
 * Parses a schema from its JSON text. Returns 0 and *out (avro_schema_free)
 * or -EINVAL with a one-line reason in err (-ENOMEM).
 */
int avro_schema_parse(const char *json, struct avro_schema **out, char *err,
                      size_t errlen);
void avro_schema_free(struct avro_schema *s); /* NULL-safe */

/* 1 when the schema's top level is a record. */
int avro_schema_is_record(const struct avro_schema *s);

/* Output goes to a base/sbuf.h buffer: its err says -ENOMEM, or
 * -EMSGSIZE past its max. */

/*
 * Decodes the datum in data[0..len) (which it must use exactly) and appends
 * it as one line of JSON (no newline) to out; out == NULL only validates.
 * Returns 0, -EBADMSG with a reason in err (truncated, trailing bytes, bad
 * union index, invalid UTF-8 string, too deep...), -EMSGSIZE when out
 * would pass out->max, or -ENOMEM. Any thread.
 */
int avro_to_json(const struct avro_schema *s, const void *data, size_t len,
                 struct sbuf *out, char *err, size_t errlen);

/* Avro's zig-zag varint of a long, appended. */
void avro_put_long(struct sbuf *b, int64_t v);
/* A string (or bytes): length then the bytes. */
void avro_put_string(struct sbuf *b, const void *s, size_t n);

/* The OCF header: magic, metadata (avro.schema = schema_json, avro.codec
 * = null) and the 16-byte sync marker. */
void avro_ocf_header(struct sbuf *b, const char *schema_json,
                     const unsigned char sync[16]);
/* One block: count, byte size, data[0..len), sync marker. */
void avro_ocf_block(struct sbuf *b, int64_t count, const void *data, size_t len,
                    const unsigned char sync[16]);

/*
 * Reads an OCF (codec null or deflate) and calls row(arg, json, len) with
 * each record as JSON text (NUL-terminated). row returning < 0 stops the
 * read with that value. Returns 0, -EBADMSG with a reason in err, -EMSGSIZE
 * over max_json bytes for one record, -ENOMEM, or row's value.
 */
int avro_ocf_read(const void *data, size_t len, size_t max_json,
                  int (*row)(void *arg, const char *json, size_t len),
                  void *arg, char *err, size_t errlen);

#endif
