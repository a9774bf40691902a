/*
 * demo_http.c - `kadx demo`'s blocking HTTP calls to its children on
 * loopback (the gateway's admin endpoint, the ADX emulator): one GET or
 * POST with short timeouts and a capped answer, and one KQL query or
 * management command. Single-threaded: the demo's thread, on its one CURL
 * easy handle.
 */
#include "cmd/demo_http.h"

#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HTTP_MAX_BODY (8 * 1024 * 1024)

struct body {
    char *p;
    size_t len;
    int toobig;
};

static size_t on_body(char *ptr, size_t size, size_t nmemb, void *arg)
{
    struct body *b = arg;
    size_t n = size * nmemb;
    char *np;

    if (b->len + n > HTTP_MAX_BODY) {
        b->toobig = 1;
        return 0;
    }
    np = realloc(b->p, b->len + n + 1);
    if (np == NULL) {
        return 0;
    }
    b->p = np;
    memcpy(b->p + b->len, ptr, n);
    b->len += n;
    b->p[b->len] = '\0';
    return n;
}

int demo_http_call(CURL *curl, const char *url, const char *json, long *status,
                   char **out, char *err, size_t errlen)
{
    struct body b = {0};
    struct curl_slist *hdrs = NULL;
    CURLcode rc;

    assert(curl != NULL);
    assert(url != NULL);
    assert(status != NULL);
    assert(out != NULL);
    curl_easy_reset(curl);
    curl_easy_setopt(curl, CURLOPT_URL, url);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, 10000L);
    curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, 2000L);
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl, CURLOPT_PROXY, ""); /* loopback: no proxy */
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, &b);
    if (json != NULL) {
        hdrs = curl_slist_append(hdrs, "Content-Type: application/json; "
                                       "charset=utf-8");
        curl_easy_setopt(curl, CURLOPT_HTTPHEADER, hdrs);
        curl_easy_setopt(curl, CURLOPT_POSTFIELDS, json);
    }
    rc = curl_easy_perform(curl);
    curl_slist_free_all(hdrs);
    if (rc != CURLE_OK) {
        snprintf(err, errlen, "%s: %s", url,
                 b.toobig ? "answer too big" : curl_easy_strerror(rc));
        free(b.p);
        return -EIO;
    }
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, status);
    *out = b.p != NULL ? b.p : strdup("");
    return *out != NULL ? 0 : -ENOMEM;
}

/* The message of a OneApi error body, or the body's start. */
static void error_text(const char *body, char *err, size_t errlen)
{
    cJSON *root = cJSON_Parse(body);
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(root, "error");
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(e, "@message");

    if (!cJSON_IsString(m)) {
        m = cJSON_GetObjectItemCaseSensitive(e, "message");
    }
    if (cJSON_IsString(m)) {
        snprintf(err, errlen, "%s", m->valuestring);
    } else {
        snprintf(err, errlen, "%.200s", body);
    }
    cJSON_Delete(root);
}

int demo_http_kql(CURL *curl, const char *adx_url, const char *db,
                  const char *csl, int mgmt, cJSON **table, char *err,
                  size_t errlen)
{
    char url[256];
    cJSON *req = cJSON_CreateObject();
    cJSON *root = NULL;
    char *json = NULL;
    char *out = NULL;
    long status = 0;
    int rc = -ENOMEM;

    assert(curl != NULL);
    assert(adx_url != NULL);
    assert(db != NULL);
    assert(csl != NULL);
    assert(table != NULL);
    snprintf(url, sizeof(url), "%s/v1/rest/%s", adx_url,
             mgmt ? "mgmt" : "query");
    if (req != NULL && cJSON_AddStringToObject(req, "db", db) != NULL &&
        cJSON_AddStringToObject(req, "csl", csl) != NULL) {
        json = cJSON_PrintUnformatted(req);
    }
    if (json == NULL) {
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    rc = demo_http_call(curl, url, json, &status, &out, err, errlen);
    if (rc < 0) {
        goto out;
    }
    rc = -EIO;
    if (status != 200) {
        char why[256];
        error_text(out, why, sizeof(why));
        snprintf(err, errlen, "HTTP %ld: %s", status, why);
        goto out;
    }
    root = cJSON_Parse(out);
    {
        cJSON *tables = cJSON_GetObjectItemCaseSensitive(root, "Tables");
        cJSON *first = cJSON_GetArrayItem(tables, 0);

        if (!cJSON_IsObject(first)) {
            snprintf(err, errlen, "no result table in the answer");
            goto out;
        }
        *table = cJSON_DetachItemFromArray(tables, 0);
    }
    rc = 0;
out:
    cJSON_Delete(root);
    cJSON_Delete(req);
    free(json);
    free(out);
    return rc;
}
