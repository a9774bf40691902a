/*
 * dm_storage.c - the storage side of the emulator's data-management part
 * (dm_internal.h): Azure Storage REST calls with an account SAS signed
 * here (HMAC-SHA256 of the account key), creating the container, queues
 * and table at start, the resource URLs `.get ingestion resources`
 * answers, and the small helpers (time, uuid, base64) the worker
 * shares. The calls block: the worker thread and dm_start make them.
 */
#include "emulators/dm_internal.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <inttypes.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

/* ---- small helpers ---- */

void dm_url_encode(const char *s, char *out, size_t outlen)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0;

    for (; *s != '\0' && o + 4 < outlen; s++) {
        unsigned char c = (unsigned char)*s;
        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
            (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.' ||
            c == '~') {
            out[o++] = (char)c;
        } else {
            out[o++] = '%';
            out[o++] = hex[c >> 4];
            out[o++] = hex[c & 15];
        }
    }
    out[o] = '\0';
}

static void utc_iso(long long secs, int frac7, char *out, size_t len)
{
    time_t t = (time_t)secs;
    struct tm tm;

    int n;

    gmtime_r(&t, &tm);
    /* the return value checked: gcc -O2 (release and .deb builds) warns of
     * a possible truncation otherwise (-Werror=format-truncation) */
    if (frac7 >= 0) {
        n = snprintf(out, len, "%04d-%02d-%02dT%02d:%02d:%02d.%07dZ",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
                     tm.tm_min, tm.tm_sec, frac7 % 10000000);
    } else {
        n = snprintf(out, len, "%04d-%02d-%02dT%02d:%02d:%02dZ",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
                     tm.tm_min, tm.tm_sec);
    }
    if ((n < 0 || (size_t)n >= len) && len > 0) {
        out[0] = '\0'; /* not a time: never a cut one */
    }
}

void dm_now_iso(char *out, size_t len)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    utc_iso((long long)ts.tv_sec, (int)(ts.tv_nsec / 100), out, len);
}

/* Base64 (standard alphabet, padded) of n bytes: malloc'd or NULL. */
char *dm_b64_encode(const void *in, size_t n)
{
    char *out = malloc(4 * ((n + 2) / 3) + 1);

    if (out != NULL) {
        EVP_EncodeBlock((unsigned char *)out, in, (int)n);
    }
    return out;
}

/* Decodes base64 text (whitespace ignored): malloc'd bytes, NUL-terminated,
 * length in *outlen; NULL when it is not base64. */
unsigned char *dm_b64_decode(const char *in, size_t n, size_t *outlen)
{
    char *clean = malloc(n + 1);
    unsigned char *out;
    size_t m = 0;
    int len;

    if (clean == NULL) {
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        if (in[i] != ' ' && in[i] != '\n' && in[i] != '\r' && in[i] != '\t') {
            clean[m++] = in[i];
        }
    }
    if (m == 0 || m % 4 != 0) {
        free(clean);
        return NULL;
    }
    out = malloc(m / 4 * 3 + 1);
    if (out == NULL) {
        free(clean);
        return NULL;
    }
    len = EVP_DecodeBlock(out, (const unsigned char *)clean, (int)m);
    if (len < 0) {
        free(clean);
        free(out);
        return NULL;
    }
    /* EVP_DecodeBlock counts the padding as zero bytes */
    if (clean[m - 1] == '=') {
        len--;
    }
    if (clean[m - 2] == '=') {
        len--;
    }
    free(clean);
    out[len] = '\0';
    *outlen = (size_t)len;
    return out;
}

int dm_account_sas(const char *account, const char *key_b64, long long expiry,
                   char *out, size_t outlen)
{
    char se[32];
    char sts[512];
    unsigned char *key;
    size_t klen;
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int maclen = 0;
    char *sig;
    char sig_enc[200];
    char se_enc[64];
    int n;

    utc_iso(expiry, -1, se, sizeof(se));
    key = dm_b64_decode(key_b64, strlen(key_b64), &klen);
    if (key == NULL) {
        return -EINVAL;
    }
    /* account SAS, version 2019-12-12: account, sp, ss, srt, st, se, sip,
     * spr, sv, and a final newline */
    n = snprintf(sts, sizeof(sts),
                 "%s\nrwdlacup\nbqt\nsco\n\n%s\n\nhttps,http\n"
                 "%s\n",
                 account, se, DM_SAS_VER);
    if (n < 0 || (size_t)n >= sizeof(sts) ||
        HMAC(EVP_sha256(), key, (int)klen, (const unsigned char *)sts,
             (size_t)n, mac, &maclen) == NULL) {
        free(key);
        return -EINVAL;
    }
    free(key);
    sig = dm_b64_encode(mac, maclen);
    if (sig == NULL) {
        return -EINVAL;
    }
    dm_url_encode(sig, sig_enc, sizeof(sig_enc));
    free(sig);
    dm_url_encode(se, se_enc, sizeof(se_enc));
    n = snprintf(out, outlen,
                 "sv=%s&ss=bqt&srt=sco&sp=rwdlacup&se=%s&spr=https,http&sig=%s",
                 DM_SAS_VER, se_enc, sig_enc);
    return n < 0 || (size_t)n >= outlen ? -EINVAL : 0;
}

/* A resource's URL with a fresh SAS: malloc'd or NULL. */
char *dm_resource_url(struct dm *d, const char *base, const char *name)
{
    char sas[512];
    char *url = NULL;

    if (dm_account_sas(d->account, d->key_b64,
                       (long long)time(NULL) + d->sas_lifetime_s, sas,
                       sizeof(sas)) < 0 ||
        asprintf(&url, "%s/%s?%s", base, name, sas) < 0) {
        return NULL;
    }
    return url;
}

char *dm_internal_url(const struct dm *d, const char *url)
{
    const struct {
        const char *pub;
        const char *in;
    } m[] = {{d->pub_blob_url, d->blob_url},
             {d->pub_queue_url, d->queue_url},
             {d->pub_table_url, d->table_url}};
    char *out = NULL;

    if (url == NULL) {
        return NULL;
    }
    for (size_t i = 0; i < sizeof(m) / sizeof(m[0]); i++) {
        size_t n = strlen(m[i].pub);

        if (n > 0 && strncmp(url, m[i].pub, n) == 0 &&
            (url[n] == '/' || url[n] == '?' || url[n] == '\0')) {
            return asprintf(&out, "%s%s", m[i].in, url + n) < 0 ? NULL : out;
        }
    }
    return strdup(url);
}

static const char *pub_or(const char *pub, const char *in)
{
    return pub[0] != '\0' ? pub : in;
}

size_t dm_resources_cb(void *data, const char **types, char **roots, size_t max)
{
    struct dm *d = data;
    const char *qu = pub_or(d->pub_queue_url, d->queue_url);
    const struct {
        const char *type;
        const char *base;
        const char *name;
    } rs[] = {
        {"SecuredReadyForAggregationQueue", qu, DM_Q_READY},
        {"FailedIngestionsQueue", qu, DM_Q_FAILED},
        {"SuccessfulIngestionsQueue", qu, DM_Q_SUCCESS},
        {"TempStorage", pub_or(d->pub_blob_url, d->blob_url), DM_CONTAINER},
        {"IngestionsStatusTable", pub_or(d->pub_table_url, d->table_url),
         DM_TABLE},
    };
    size_t n = 0;

    for (size_t i = 0; i < sizeof(rs) / sizeof(rs[0]) && n < max; i++) {
        char *u = dm_resource_url(d, rs[i].base, rs[i].name);
        if (u != NULL) {
            types[n] = rs[i].type;
            roots[n] = u;
            n++;
        }
    }
    return n;
}

/* ---- storage REST calls ---- */

static size_t on_body(char *p, size_t size, size_t n, void *data)
{
    struct sbuf *b = data;

    if (b->len + size * n > DM_MAX_BLOB) {
        b->err = -EMSGSIZE; /* too big: the call fails */
        return 0;
    }
    return sbuf_add(b, p, size * n) < 0 ? 0 : size * n;
}

static int on_progress(void *data, curl_off_t dt, curl_off_t dn, curl_off_t ut,
                       curl_off_t un)
{
    struct dm *d = data;

    (void)dt;
    (void)dn;
    (void)ut;
    (void)un;
    return __atomic_load_n(&d->stop, __ATOMIC_RELAXED) ? 1 : 0;
}

/* One storage call: 0 with *status (the HTTP status) and out (the body), or
 * -EIO (no answer: refused, reset, timed out, stopped). */
int dm_storage_call(struct dm *d, CURL *h, const char *method, const char *url,
                    const char *content_type, const char *body, size_t blen,
                    struct sbuf *out, long *status)
{
    struct curl_slist *hdrs = NULL;
    CURLcode rc;

    out->len = 0;
    if (out->p != NULL) {
        out->p[0] = '\0';
    }
    curl_easy_reset(h);
    hdrs = curl_slist_append(hdrs, "x-ms-version: " DM_STORAGE_VER);
    if (content_type != NULL) {
        char ct[128];
        snprintf(ct, sizeof(ct), "Content-Type: %s", content_type);
        hdrs = curl_slist_append(hdrs, ct);
        if (strncmp(content_type, "application/json", 16) == 0) {
            hdrs = curl_slist_append(
                hdrs, "Accept: application/json;odata=nometadata");
            hdrs = curl_slist_append(hdrs, "DataServiceVersion: 3.0");
        }
    }
    hdrs = curl_slist_append(hdrs, "Expect:");
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 60000L);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, out);
    curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(h, CURLOPT_XFERINFODATA, d);
    if (body != NULL) {
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)blen);
    } else if (strcmp(method, "PUT") == 0 || strcmp(method, "POST") == 0) {
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, "");
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)0);
    } else if (strcmp(method, "GET") == 0) {
        curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
        curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, NULL);
    }
    rc = curl_easy_perform(h);
    curl_slist_free_all(hdrs);
    if (rc != CURLE_OK || out->err) {
        return -EIO;
    }
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, status);
    return 0;
}

/* Creates a resource; "already exists" (409) is fine. */
static int create_resource(struct dm *d, CURL *h, const char *method,
                           const char *url, const char *ctype, const char *body,
                           const char *what, char *err, size_t errlen)
{
    struct sbuf out = {0};
    long status = 0;
    int rc = dm_storage_call(d, h, method, url, ctype, body,
                             body != NULL ? strlen(body) : 0, &out, &status);

    if (rc < 0 || (status != 201 && status != 204 && status != 409)) {
        if (rc < 0) {
            snprintf(err, errlen, "cannot create the %s: no answer from %s",
                     what, url);
        } else {
            snprintf(err, errlen, "cannot create the %s: HTTP %ld: %.200s",
                     what, status, out.p != NULL ? out.p : "");
        }
        /* the SAS must not reach the log */
        {
            char *q = strchr(err, '?');
            if (q != NULL) {
                *q = '\0';
            }
        }
        sbuf_release(&out);
        return -EIO;
    }
    sbuf_release(&out);
    return 0;
}

int dm_create_resources(struct dm *d, char *err, size_t errlen)
{
    CURL *h = curl_easy_init();
    char sas[512];
    char *url = NULL;
    int rc = -EIO;

    if (h == NULL) {
        snprintf(err, errlen, "curl_easy_init failed");
        return -ENOMEM;
    }
    if (dm_account_sas(d->account, d->key_b64,
                       (long long)time(NULL) + d->sas_lifetime_s, sas,
                       sizeof(sas)) < 0) {
        snprintf(err, errlen, "the storage key is not base64");
        curl_easy_cleanup(h);
        return -EINVAL;
    }
    if (asprintf(&url, "%s/%s?restype=container&%s", d->blob_url, DM_CONTAINER,
                 sas) < 0) {
        url = NULL;
        goto out;
    }
    if (create_resource(d, h, "PUT", url, NULL, NULL, "blob container", err,
                        errlen) < 0) {
        goto out;
    }
    {
        const char *queues[] = {DM_Q_READY, DM_Q_SUCCESS, DM_Q_FAILED};
        for (size_t i = 0; i < 3; i++) {
            free(url);
            if (asprintf(&url, "%s/%s?%s", d->queue_url, queues[i], sas) < 0) {
                url = NULL;
                goto out;
            }
            if (create_resource(d, h, "PUT", url, NULL, NULL, "queue", err,
                                errlen) < 0) {
                goto out;
            }
        }
    }
    free(url);
    if (asprintf(&url, "%s/Tables?%s", d->table_url, sas) < 0) {
        url = NULL;
        goto out;
    }
    if (create_resource(d, h, "POST", url, "application/json",
                        "{\"TableName\":\"" DM_TABLE "\"}", "status table", err,
                        errlen) < 0) {
        goto out;
    }
    rc = 0;
out:
    free(url);
    curl_easy_cleanup(h);
    return rc;
}
