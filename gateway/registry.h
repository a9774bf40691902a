/*
 * registry.h - a Confluent-compatible Schema Registry client and its schema
 * cache (gateway/REGISTRY.md): `GET {url}/schemas/ids/{id}` on the libuv
 * loop through gateway/adx.c's HTTP client (basic auth as a secret, the
 * registry's CA bundle, its timeout), each id fetched once per process and
 * kept in memory; parsed Avro schemas are immutable and live until
 * registry_free, so the forwarder's build workers may read them.
 *
 * The wire format (Confluent "Schema Registry > Wire format"): byte 0 is the
 * magic 0, bytes 1-4 the schema id (big-endian), then the payload (Avro
 * binary, or a JSON document for JSON Schema).
 *
 * Threading: the loop thread, except registry_frame() and reading an entry
 * that registry_get() returned (any thread).
 */
#ifndef KADX_REGISTRY_H
#define KADX_REGISTRY_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

struct config_registry;
struct avro_schema;
struct registry;
struct journal;

enum registry_state {
    REGISTRY_FETCHING = 0, /* a GET is in flight */
    REGISTRY_OK,           /* schema known (avro set for AVRO) */
    REGISTRY_UNKNOWN,      /* the registry answered 404: a permanent miss */
    REGISTRY_FAILED,       /* transient (5xx, network): fetched again later */
};

struct registry_entry {
    int32_t id;
    enum registry_state state;
    int json_schema;          /* schemaType JSON */
    char *text;               /* the schema as served */
    struct avro_schema *avro; /* parsed, for AVRO; NULL otherwise */
    char reason[160];         /* UNKNOWN/FAILED/unparsable: why */
};

/* Reads the 5-byte header: 0 and *id, or -EBADMSG (short / no magic). */
int registry_frame(const void *data, size_t len, int32_t *id);

/*
 * journal (borrowed, may be NULL) keeps the schemas fetched (journal.h,
 * journal_schema_*) and is asked first for an id not in memory: a restart
 * with the registry down still decodes what was journaled.
 */
int registry_new(uv_loop_t *loop, struct journal *journal,
                 struct registry **out, char *err, size_t errlen);
/* Cancels what is in flight (waiters get -ECANCELED) and frees; the loop
 * must run once more for the HTTP handles. NULL-safe. */
void registry_free(struct registry *r);

/* The cache entry of (g->url, id), or NULL when never asked. */
const struct registry_entry *
registry_get(struct registry *r, const struct config_registry *g, int32_t id);

typedef void (*registry_cb)(void *arg, int status, const char *err);

/*
 * Makes sure every id of ids[0..n) is OK or UNKNOWN in the cache; starts
 * GETs for the ones missing or FAILED. cb runs once, later: status 0 when
 * all are settled, -EAGAIN (err: the registry's failure, no secret) when
 * one could not be fetched now. Returns < 0 (cb never runs) on bad
 * arguments or ENOMEM; returns 1 (cb never runs) when nothing was
 * missing.
 */
int registry_fetch(struct registry *r, const struct config_registry *g,
                   const int32_t *ids, size_t n, registry_cb cb, void *arg);

/* The last transient failure ("" when the last fetch worked). */
const char *registry_last_error(const struct registry *r);

#endif
