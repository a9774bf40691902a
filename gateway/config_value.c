/*
 * config_value.c - the config loader's toolkit, shared by both readers and
 * the checks (config_internal.h): the error buffer and the connector's
 * notes, small string helpers, integers, ${ENV_VAR} substitution, and the
 * checks of one value (URL, identifier, column, topic, id, listen address)
 * with the librdkafka property list. Main thread, during config_load_*().
 */
#include "gateway/config.h"
#include "gateway/config_internal.h"
#include "gateway/log.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <librdkafka/rdkafka.h>
#include <limits.h>
#include <math.h>
#include <regex.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#define VALUE_MAX (64 * 1024) /* one string after ${} substitution */
#define IDENT_MAX 1024        /* database, table, mapping names */

/* ---- small helpers ---------------------------------------------------- */

int cfg_fail(struct loader *l, const char *fmt, ...)
{
    va_list ap;

    if (l->err != NULL && l->errlen > 0) {
        va_start(ap, fmt);
        vsnprintf(l->err, l->errlen, fmt, ap);
        va_end(ap);
    }
    return -EINVAL;
}

int cfg_oom(struct loader *l)
{
    if (l->err != NULL && l->errlen > 0) {
        snprintf(l->err, l->errlen, "out of memory while loading the config");
    }
    return -ENOMEM;
}

int cfg_sbuf_add(struct sbuf *b, const char *s, size_t n)
{
    if (b->len + n + 1 > VALUE_MAX) {
        return -EMSGSIZE;
    }
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        char *p;

        while (cap < b->len + n + 1) {
            cap *= 2;
        }
        p = realloc(b->s, cap);
        if (p == NULL) {
            return -ENOMEM;
        }
        b->s = p;
        b->cap = cap;
    }
    memcpy(b->s + b->len, s, n);
    b->len += n;
    b->s[b->len] = '\0';
    return 0;
}

int cfg_sbuf_adds(struct sbuf *b, const char *s)
{
    return cfg_sbuf_add(b, s, strlen(s));
}

/* Appends ", item" (or "item" when empty) to a note list. */
void cfg_note(struct loader *l, struct sbuf *b, const char *item)
{
    if (b->len > 0 && cfg_sbuf_adds(b, ", ") < 0) {
        l->oom = 1;
    }
    if (cfg_sbuf_adds(b, item) < 0) {
        l->oom = 1;
    }
}

/*
 * Copies s into buf for an error message: non-printable bytes become '?',
 * long strings end in "...". Returns buf.
 */
const char *cfg_clean(const char *s, char *buf, size_t n)
{
    size_t i;

    for (i = 0; s[i] != '\0' && i + 1 < n; i++) {
        unsigned char c = (unsigned char)s[i];
        buf[i] = (c < 0x20 || c == 0x7f) ? '?' : (char)c;
    }
    buf[i] = '\0';
    if (s[i] != '\0' && n > 4) {
        memcpy(buf + n - 4, "...", 4);
    }
    return buf;
}

/* buf = parent.key (or key at the top), cleaned and capped. */
void cfg_join(char *buf, size_t n, const char *parent, const char *key)
{
    char k[PATHLEN];
    int r;

    cfg_clean(key, k, sizeof(k));
    if (parent == NULL || parent[0] == '\0') {
        r = snprintf(buf, n, "%s", k);
    } else {
        r = snprintf(buf, n, "%s.%s", parent, k);
    }
    if (r < 0 || (size_t)r >= n) {
        memcpy(buf + n - 4, "...", 4);
    }
}

void cfg_join_index(char *buf, size_t n, const char *parent, size_t i)
{
    int r = snprintf(buf, n, "%s[%zu]", parent, i);

    if (r < 0 || (size_t)r >= n) {
        memcpy(buf + n - 4, "...", 4);
    }
}

int cfg_replace(char **dst, const char *src)
{
    char *p = NULL;

    if (src != NULL) {
        p = strdup(src);
        if (p == NULL) {
            return -ENOMEM;
        }
    }
    free(*dst);
    *dst = p;
    return 0;
}

int cfg_strv_push(char ***v, size_t *n, const char *s)
{
    char **p = realloc(*v, (*n + 1) * sizeof(**v));

    if (p == NULL) {
        return -ENOMEM;
    }
    *v = p;
    p[*n] = strdup(s);
    if (p[*n] == NULL) {
        return -ENOMEM;
    }
    (*n)++;
    return 0;
}

void cfg_strv_free(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(v[i]);
    }
    free(v);
}

int cfg_strv_has(char *const *v, size_t n, const char *s)
{
    for (size_t i = 0; i < n; i++) {
        if (strcmp(v[i], s) == 0) {
            return 1;
        }
    }
    return 0;
}

/* Strict decimal int64 with optional surrounding blanks. */
int cfg_parse_i64(const char *s, int64_t *out)
{
    char *end;
    long long v;

    while (isspace((unsigned char)*s)) {
        s++;
    }
    if (*s == '\0') {
        return -EINVAL;
    }
    errno = 0;
    v = strtoll(s, &end, 10);
    if (errno != 0 || end == s) {
        return -EINVAL;
    }
    while (isspace((unsigned char)*end)) {
        end++;
    }
    if (*end != '\0') {
        return -EINVAL;
    }
    *out = v;
    return 0;
}

int cfg_json_int(const cJSON *it, int64_t *out)
{
    double d;

    if (!cJSON_IsNumber(it)) {
        return -EINVAL;
    }
    d = it->valuedouble;
    if (!isfinite(d) || d != floor(d) || fabs(d) > 9007199254740992.0) {
        return -EINVAL;
    }
    *out = (int64_t)d;
    return 0;
}

/* ---- ${ENV_VAR} substitution ------------------------------------------ */

/*
 * ${file:/path}: the file's content, one final newline ("\n" or "\r\n")
 * removed (a secret mounted by Kubernetes, Docker or systemd credentials).
 * At most VALUE_MAX bytes; the path must be absolute. Appends to b.
 */
static int subst_file(struct loader *l, const char *path, const char *file,
                      struct sbuf *b)
{
    char buf[4096];
    size_t total = 0;
    size_t start = b->len;
    FILE *f;
    int rc = 0;

    if (file[0] != '/') {
        return cfg_fail(l, "'${file:%s}' in '%s': the path must be absolute",
                        file, path);
    }
    f = fopen(file, "rb");
    if (f == NULL) {
        return cfg_fail(l, "cannot read '%s' (used in '%s'): %s", file, path,
                        strerror(errno));
    }
    for (;;) {
        size_t n = fread(buf, 1, sizeof(buf), f);

        if (n == 0) {
            break;
        }
        total += n;
        if (total > VALUE_MAX) {
            rc = -EMSGSIZE;
            break;
        }
        rc = cfg_sbuf_add(b, buf, n);
        if (rc < 0) {
            break;
        }
    }
    if (rc == 0 && ferror(f)) {
        rc = cfg_fail(l, "cannot read '%s' (used in '%s'): %s", file, path,
                      strerror(EIO));
    }
    fclose(f);
    if (rc < 0) {
        return rc;
    }
    if (b->len > start && b->s[b->len - 1] == '\n') {
        b->len--;
        if (b->len > start && b->s[b->len - 1] == '\r') {
            b->len--;
        }
        b->s[b->len] = '\0';
    }
    return 0;
}

/*
 * Returns in *out (owned) the value with every ${NAME} replaced by the
 * environment variable NAME, every ${NAME:-default} by NAME's value when it
 * is set and not empty, else by default (taken as written), and every
 * ${file:/path} by the file's content (subst_file); "$${" stands for a
 * literal "${". A missing variable (without a default) or an unreadable
 * file is an error that names it and the key.
 */
int cfg_subst_env(struct loader *l, const char *path, const char *in,
                  char **out)
{
    struct sbuf b = {0};
    const char *p = in;
    int rc = 0;

    if (cfg_sbuf_add(&b, "", 0) < 0) {
        return cfg_oom(l);
    }
    while (*p != '\0' && rc == 0) {
        if (p[0] == '$' && p[1] == '$' && p[2] == '{') {
            rc = cfg_sbuf_add(&b, "${", 2);
            p += 3;
        } else if (p[0] == '$' && p[1] == '{') {
            const char *name = p + 2;
            const char *end = strchr(name, '}');
            const char *dflt = NULL;
            char var[PATH_MAX];
            const char *val;
            size_t n;

            if (end == NULL) {
                free(b.s);
                return cfg_fail(l, "unterminated '${' in '%s'", path);
            }
            n = (size_t)(end - name);
            if (n > 5 && strncmp(name, "file:", 5) == 0) {
                if (n - 5 >= sizeof(var)) {
                    free(b.s);
                    return cfg_fail(l, "file name too long in '%s'", path);
                }
                memcpy(var, name + 5, n - 5);
                var[n - 5] = '\0';
                rc = subst_file(l, path, var, &b);
                if (rc < 0 && rc != -EMSGSIZE) {
                    free(b.s);
                    return rc;
                }
                p = end + 1;
                continue;
            }
            for (size_t i = 0; i + 1 < n; i++) {
                if (name[i] == ':' && name[i + 1] == '-') {
                    dflt = name + i + 2;
                    n = i;
                    break;
                }
            }
            if (n == 0 || n >= 129 ||
                !(isalpha((unsigned char)name[0]) || name[0] == '_')) {
                free(b.s);
                return cfg_fail(l, "bad environment variable name in '%s'",
                                path);
            }
            for (size_t i = 0; i < n; i++) {
                if (!isalnum((unsigned char)name[i]) && name[i] != '_') {
                    free(b.s);
                    return cfg_fail(l, "bad environment variable name in '%s'",
                                    path);
                }
            }
            memcpy(var, name, n);
            var[n] = '\0';
            val = getenv(var);
            if (dflt != NULL && (val == NULL || val[0] == '\0')) {
                rc = cfg_sbuf_add(&b, dflt, (size_t)(end - dflt));
            } else if (val == NULL) {
                free(b.s);
                return cfg_fail(l,
                                "environment variable '%s' is not set (used in "
                                "'%s')",
                                var, path);
            } else {
                rc = cfg_sbuf_adds(&b, val);
            }
            p = end + 1;
        } else {
            rc = cfg_sbuf_add(&b, p, 1);
            p++;
        }
    }
    if (rc == -EMSGSIZE) {
        free(b.s);
        return cfg_fail(l, "'%s' is longer than %d bytes", path, VALUE_MAX);
    }
    if (rc < 0) {
        free(b.s);
        return cfg_oom(l);
    }
    *out = b.s;
    return 0;
}

int cfg_range(struct loader *l, const char *path, int64_t v, int64_t min,
              int64_t max)
{
    if (v < min) {
        return cfg_fail(l, "'%s' must be at least %lld", path, (long long)min);
    }
    if (v > max) {
        return cfg_fail(l, "'%s' must be at most %lld", path, (long long)max);
    }
    return 0;
}

int cfg_check_keys(struct loader *l, const cJSON *obj, const char *parent,
                   const char *const *allowed)
{
    char path[PATHLEN];
    int n = 0;

    for (const cJSON *c = obj->child; c != NULL; c = c->next) {
        int ok = allowed == NULL;

        cfg_join(path, sizeof(path), parent, c->string);
        if (++n > MAX_KEYS) {
            return cfg_fail(l, "'%s' has more than %d keys", parent, MAX_KEYS);
        }
        for (size_t i = 0; !ok && allowed[i] != NULL; i++) {
            ok = strcmp(c->string, allowed[i]) == 0;
        }
        if (!ok) {
            return cfg_fail(l, "unknown key '%s'", path);
        }
        for (const cJSON *d = obj->child; d != c; d = d->next) {
            if (strcmp(d->string, c->string) == 0) {
                return cfg_fail(l, "duplicate key '%s'", path);
            }
        }
    }
    return 0;
}

/* ---- value checks shared by both formats ------------------------------ */

static int is_loopback(const char *host, size_t n)
{
    return (n == 9 && strncasecmp(host, "localhost", 9) == 0) ||
           (n == 9 && strncmp(host, "127.0.0.1", 9) == 0) ||
           (n == 5 && strncmp(host, "[::1]", 5) == 0);
}

/*
 * Checks an http(s) URL in place and removes trailing slashes. http:// is
 * accepted only for loopback hosts and for extra_http_host (IMDS).
 */
int cfg_check_url(struct loader *l, const char *path, char *url,
                  const char *extra_http_host)
{
    char shown[128];
    const char *host;
    const char *p;
    size_t hn;
    size_t len;
    int https;

    cfg_clean(url, shown, sizeof(shown));
    if (strncasecmp(url, "https://", 8) == 0) {
        https = 1;
        host = url + 8;
    } else if (strncasecmp(url, "http://", 7) == 0) {
        https = 0;
        host = url + 7;
    } else {
        return cfg_fail(l, "'%s' must be an https:// URL, not '%s'", path,
                        shown);
    }
    for (p = host; *p != '\0' && *p != '/'; p++) {
        if (*p == '@') {
            return cfg_fail(l, "'%s' must not contain credentials", path);
        }
    }
    p = host;
    if (*p == '[') {
        while (*p != '\0' && *p != ']') {
            if (!isxdigit((unsigned char)*p) && *p != ':' && *p != '[' &&
                *p != '.') {
                return cfg_fail(l, "'%s' has a bad host: '%s'", path, shown);
            }
            p++;
        }
        if (*p != ']') {
            return cfg_fail(l, "'%s' has a bad host: '%s'", path, shown);
        }
        p++;
    } else {
        while (*p != '\0' && *p != ':' && *p != '/') {
            if (!isalnum((unsigned char)*p) && *p != '.' && *p != '-' &&
                *p != '_') {
                return cfg_fail(l, "'%s' has a bad host: '%s'", path, shown);
            }
            p++;
        }
    }
    hn = (size_t)(p - host);
    if (hn == 0) {
        return cfg_fail(l, "'%s' has no host: '%s'", path, shown);
    }
    if (*p == ':') {
        long port = 0;
        int digits = 0;

        for (p++; isdigit((unsigned char)*p) && digits < 6; p++, digits++) {
            port = port * 10 + (*p - '0');
        }
        if (digits == 0 || port < 1 || port > 65535 ||
            (*p != '\0' && *p != '/')) {
            return cfg_fail(l, "'%s' has a bad port: '%s'", path, shown);
        }
    }
    for (; *p != '\0'; p++) {
        if (*p == '?' || *p == '#' || *p == '@' || isspace((unsigned char)*p) ||
            (unsigned char)*p < 0x20) {
            return cfg_fail(l,
                            "'%s' must be a plain URL (no query, fragment or "
                            "credentials): '%s'",
                            path, shown);
        }
    }
    if (!https && !is_loopback(host, hn) &&
        !(extra_http_host != NULL && hn == strlen(extra_http_host) &&
          strncmp(host, extra_http_host, hn) == 0)) {
        return cfg_fail(
            l,
            "'%s' must use https:// (http:// only for 127.0.0.1, ::1 "
            "or localhost): '%s'",
            path, shown);
    }
    len = strlen(url);
    while (len > 0 && url[len - 1] == '/') {
        url[--len] = '\0';
    }
    return 0;
}

/* ADX database, table and mapping names (the connector's rule). */
int cfg_check_ident(struct loader *l, const char *path, const char *s)
{
    size_t n = strlen(s);

    if (n == 0) {
        return cfg_fail(l, "'%s' must not be empty", path);
    }
    if (n > IDENT_MAX) {
        return cfg_fail(l, "'%s' is longer than %d characters", path,
                        IDENT_MAX);
    }
    for (size_t i = 0; i < n; i++) {
        if (!isalnum((unsigned char)s[i]) && s[i] != '_' && s[i] != '.' &&
            s[i] != '-') {
            return cfg_fail(
                l,
                "'%s' may contain only letters, digits, '_', '.' and "
                "'-'",
                path);
        }
    }
    return 0;
}

/* JSON field and column names: they end up in KQL queries. */
int cfg_check_column(struct loader *l, const char *path, const char *s)
{
    size_t n = strlen(s);

    if (n == 0 || n > 256 || !(isalpha((unsigned char)s[0]) || s[0] == '_')) {
        return cfg_fail(
            l, "'%s' must be a column name ([A-Za-z_][A-Za-z0-9_]*)", path);
    }
    for (size_t i = 0; i < n; i++) {
        if (!isalnum((unsigned char)s[i]) && s[i] != '_') {
            return cfg_fail(
                l, "'%s' must be a column name ([A-Za-z_][A-Za-z0-9_]*)", path);
        }
    }
    return 0;
}

/* Kafka's legal topic names: [a-zA-Z0-9._-], 1..249 characters. */
int cfg_check_topic(struct loader *l, const char *path, const char *s)
{
    size_t n = strlen(s);
    char shown[64];

    if (n == 0) {
        return cfg_fail(l, "'%s' must not be empty", path);
    }
    if (n > 249) {
        return cfg_fail(l, "'%s' is longer than 249 characters", path);
    }
    for (size_t i = 0; i < n; i++) {
        if (!isalnum((unsigned char)s[i]) && s[i] != '_' && s[i] != '.' &&
            s[i] != '-') {
            return cfg_fail(l, "'%s' is not a valid Kafka topic name: '%s'",
                            path, cfg_clean(s, shown, sizeof(shown)));
        }
    }
    return 0;
}

/* Tenant ids and client ids go into URLs: GUIDs or domain names. */
int cfg_check_id(struct loader *l, const char *path, const char *s)
{
    size_t n = strlen(s);

    if (n == 0 || n > 256) {
        return cfg_fail(l, "'%s' must be an id (1 to 256 characters)", path);
    }
    for (size_t i = 0; i < n; i++) {
        if (!isalnum((unsigned char)s[i]) && s[i] != '-' && s[i] != '.' &&
            s[i] != '_') {
            return cfg_fail(l,
                            "'%s' must be an id (letters, digits, '-', '.', "
                            "'_')",
                            path);
        }
    }
    return 0;
}

/* "HOST:PORT" with HOST an IPv4 address, a [IPv6] address or a name. */
int cfg_check_listen(struct loader *l, const char *path, const char *s)
{
    const char *colon = strrchr(s, ':');
    char shown[128];
    int64_t port;

    cfg_clean(s, shown, sizeof(shown));
    if (colon == NULL || colon == s || cfg_parse_i64(colon + 1, &port) < 0 ||
        port < 0 || port > 65535 || !isdigit((unsigned char)colon[1])) {
        return cfg_fail(l, "'%s' must be HOST:PORT (or \"off\"), not '%s'",
                        path, shown);
    }
    if (s[0] == '[') {
        if (colon[-1] != ']') {
            return cfg_fail(l, "'%s' must be HOST:PORT (or \"off\"), not '%s'",
                            path, shown);
        }
        for (const char *p = s + 1; p < colon - 1; p++) {
            if (!isxdigit((unsigned char)*p) && *p != ':' && *p != '.') {
                return cfg_fail(l, "'%s' has a bad host: '%s'", path, shown);
            }
        }
        return 0;
    }
    for (const char *p = s; p < colon; p++) {
        if (!isalnum((unsigned char)*p) && *p != '.' && *p != '-') {
            return cfg_fail(l, "'%s' has a bad host: '%s'", path, shown);
        }
    }
    return 0;
}

/* A kafka key whose value must be masked and registered. */
int cfg_kafka_key_is_secret(const char *k)
{
    return strstr(k, "password") != NULL || strstr(k, "secret") != NULL ||
           strcmp(k, "ssl.key.pem") == 0 ||
           strcmp(k, "sasl.oauthbearer.config") == 0;
}

int cfg_kafka_set(struct config_kafka *k, const char *key, const char *value)
{
    char **keys;
    char **values;
    char *kd;
    char *vd;

    for (size_t i = 0; i < k->n; i++) {
        if (strcmp(k->keys[i], key) == 0) {
            return cfg_replace(&k->values[i], value);
        }
    }
    keys = realloc(k->keys, (k->n + 1) * sizeof(*keys));
    if (keys == NULL) {
        return -ENOMEM;
    }
    k->keys = keys;
    values = realloc(k->values, (k->n + 1) * sizeof(*values));
    if (values == NULL) {
        return -ENOMEM;
    }
    k->values = values;
    kd = strdup(key);
    vd = strdup(value);
    if (kd == NULL || vd == NULL) {
        free(kd);
        free(vd);
        return -ENOMEM;
    }
    keys[k->n] = kd;
    values[k->n] = vd;
    k->n++;
    return 0;
}
