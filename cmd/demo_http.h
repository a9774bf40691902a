/*
 * demo_http.h - `kadx demo`'s blocking HTTP calls to its children on
 * loopback (demo_http.c). curl is the demo's easy handle (borrowed; reset
 * by each call).
 */
#ifndef KADX_DEMO_HTTP_H
#define KADX_DEMO_HTTP_H

#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <stddef.h>

/*
 * GET (json NULL) or POST a JSON body. Returns 0 with *out (owned, free())
 * and *status set, or -EIO with err filled (answers over 8 MiB included).
 */
int demo_http_call(CURL *curl, const char *url, const char *json, long *status,
                   char **out, char *err, size_t errlen);

/*
 * Runs one KQL query or management command (mgmt != 0) on database db of
 * the emulator at adx_url. Returns 0 with *table = the first result table
 * (owned: cJSON_Delete), or -EIO / -ENOMEM with the reason in err.
 */
int demo_http_kql(CURL *curl, const char *adx_url, const char *db,
                  const char *csl, int mgmt, cJSON **table, char *err,
                  size_t errlen);

#endif
