/*
 * srbody.h - request bodies for routes whose Kafka values (and keys) are in
 * the Schema Registry wire format (gateway/REGISTRY.md).
 *
 * format json/multijson: each value is decoded (Avro) or unframed (JSON
 * Schema) into JSON text and the batch is built by forwarder_build_body, so
 * the metadata fields and the dedupe column work as for plain JSON.
 * format avro: an Avro object container file with the records' writer
 * schema (one schema per request: a batch whose records carry different
 * schema ids asks to be split), the route's metadata fields appended to the
 * schema and encoded after each record's body.
 *
 * A record without the magic byte, with an id the registry does not know,
 * or whose body does not decode, is listed in *bad with the reason; the
 * rest of the batch goes on. Pure: any thread (the entries are immutable).
 */
#ifndef KADX_SRBODY_H
#define KADX_SRBODY_H

#include <stddef.h>
#include <stdint.h>

struct config_route;
struct journal_event;
struct forwarder_bad;
struct registry_entry;

/* The batch's schema ids resolved on the loop thread. */
struct srbody_schema {
    int32_t id;
    const struct registry_entry *e; /* borrowed; NULL = not asked */
};

/* 1 when the route's values or keys need the registry. */
int srbody_route_uses_registry(const struct config_route *r);

/*
 * The distinct schema ids the batch needs (values; keys too when the route
 * adds meta.key). *ids owned (free()), *n entries. 0 or -ENOMEM.
 */
int srbody_ids(const struct config_route *r, const struct journal_event *ev,
               size_t n, int32_t **ids, size_t *nids);

/*
 * Builds the body (same contract as forwarder_build_body). *split_at > 0
 * (format avro, records with different schema ids): nothing is built, the
 * batch should be split after that many events.
 */
int srbody_build(const struct config_route *r, const char *batch_id,
                 const struct journal_event *events, size_t n,
                 const struct srbody_schema *schemas, size_t nschemas,
                 char **body, size_t *len, struct forwarder_bad **bad,
                 size_t *nbad, size_t *split_at);

#endif
