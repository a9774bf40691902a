/*
 * config_internal.h - what the config loader's files share, private to
 * gateway/config*.c (nothing else includes it).
 *
 * Loading is split by concern: config.c holds the model's defaults, the
 * checks both formats end in and the entry points; config_value.c the
 * loader's toolkit (error and notes, strings, ${ENV_VAR} substitution, one
 * value's checks); config_native.c reads kadx.json; config_connector.c reads
 * a Kusto sink connector config; config_print.c prints the effective config.
 * Everything runs on the main thread before anything starts.
 *
 * Steps that stop at the first error are chained as
 *     rc = rc < 0 ? rc : next_step(...);
 * so that the first message stays in the caller's buffer (each failing step
 * writes it) and no assignment hides inside a condition.
 */
#ifndef KADX_CONFIG_INTERNAL_H
#define KADX_CONFIG_INTERNAL_H

#include "gateway/config.h"

#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdint.h>

#define PATHLEN  256  /* key paths in messages */
#define MAX_KEYS 1000 /* keys in one object, routes */
#define MIB      (1024 * 1024)

/* A growing string (the connector's notes); s is owned, NULL when empty. */
struct sbuf {
    char *s;
    size_t len;
    size_t cap;
};

/* One load: the struct being filled and where its error goes. */
struct loader {
    struct config *cfg;
    const struct config_overrides *ov;
    char *err;
    size_t errlen;
    struct sbuf info; /* connector keys that mean nothing to kadx */
    struct sbuf warn; /* connector keys kadx cannot honour */
    int oom;
};

/* ---- config_value.c: errors, notes, strings ---------------------------- */

/* Writes the message into l's buffer; returns -EINVAL. */
int cfg_fail(struct loader *l, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* "out of memory"; returns -ENOMEM. */
int cfg_oom(struct loader *l);
int cfg_sbuf_add(struct sbuf *b, const char *s, size_t n);
int cfg_sbuf_adds(struct sbuf *b, const char *s);
/* Adds item to a ", "-separated note list (sets l->oom on failure). */
void cfg_note(struct loader *l, struct sbuf *b, const char *item);
/* s for a message: control bytes become '?', cut with "..."; returns buf */
const char *cfg_clean(const char *s, char *buf, size_t n);
/* buf = parent.key (or key when parent is ""), cut to n. */
void cfg_join(char *buf, size_t n, const char *parent, const char *key);
/* buf = parent[i] */
void cfg_join_index(char *buf, size_t n, const char *parent, size_t i);
/* *dst = a copy of src (NULL stays NULL), the old value freed. */
int cfg_replace(char **dst, const char *src);
int cfg_strv_push(char ***v, size_t *n, const char *s);
void cfg_strv_free(char **v, size_t n);
int cfg_strv_has(char *const *v, size_t n, const char *s);
int cfg_parse_i64(const char *s, int64_t *out);
/* A JSON number that is an exact integer (|v| <= 2^53). */
int cfg_json_int(const cJSON *it, int64_t *out);
/* *out = in with ${ENV_VAR} substituted (owned); path names it in errors. */
int cfg_subst_env(struct loader *l, const char *path, const char *in,
                  char **out);

/* ---- config_value.c: one value's checks --------------------------------- */

int cfg_range(struct loader *l, const char *path, int64_t v, int64_t min,
              int64_t max);
/* Every key of obj is in allowed (NULL-terminated; NULL = any) and appears
 * once. */
int cfg_check_keys(struct loader *l, const cJSON *obj, const char *parent,
                   const char *const *allowed);
int cfg_check_url(struct loader *l, const char *path, char *url,
                  const char *extra_http_host);
int cfg_check_ident(struct loader *l, const char *path, const char *s);
int cfg_check_column(struct loader *l, const char *path, const char *s);
int cfg_check_topic(struct loader *l, const char *path, const char *s);
int cfg_check_id(struct loader *l, const char *path, const char *s);
int cfg_check_listen(struct loader *l, const char *path, const char *s);
/* A kafka key whose value must be masked and registered. */
int cfg_kafka_key_is_secret(const char *k);
/* Sets (or replaces) a librdkafka property; 0 or -ENOMEM. */
int cfg_kafka_set(struct config_kafka *k, const char *key, const char *value);

/* ---- the readers and the model ----------------------------------------- */

/* config.c: the adx.auth.method named s (case-insensitive). */
int cfg_parse_auth_method(const char *s, enum config_auth_method *m);
/* config_native.c: fills l->cfg from a kadx.json object. */
int cfg_load_native(struct loader *l, const cJSON *root);
/* config_connector.c: fills l->cfg from a connector's flat key map; name is
 * the wrapper's "name" (may be NULL). */
int cfg_load_connector(struct loader *l, const cJSON *map, const char *name);

#endif
