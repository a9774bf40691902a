/*
 * config.c - loads kadx.json or a Kusto sink connector config into a
 * struct config (config.h), with ${ENV_VAR} substitution, defaults and
 * validation.
 *
 * Loading runs on the main thread before anything starts; the result is
 * read-only afterwards. The text is parsed with cJSON, then one of two
 * readers fills the struct: the native reader walks the sections (kafka, adx,
 * routes, journal, forwarder, intake, admin) and rejects any key it does not
 * know, naming its path; the connector reader maps the connector's flat keys
 * (section 7 of adx-protocol.md) onto the same struct and sorts the keys it
 * does not use into "meaningless for kadx" (one info line) and "cannot be
 * honoured" (one warning line). Both end in the same checks (finish()):
 * cross-field limits, route uniqueness, the Kafka subscription, and every
 * kafka property passed through rd_kafka_conf_set() so that a misspelt
 * librdkafka property is caught here and not at start-up. Every error is one
 * line in the caller's buffer; values of secret keys never appear in it.
 */
#include "gateway/config.h"
#include "gateway/log.h"
#include "storage/util.h"

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

#define PATHLEN            256         /* key paths in messages */
#define VALUE_MAX          (64 * 1024) /* one string after ${} substitution */
#define MAX_KEYS           1000        /* keys in one object, routes */
#define IDENT_MAX          1024        /* database, table, mapping names */
#define DEFAULT_AUTHORITY  "https://login.microsoftonline.com"
#define DEFAULT_IMDS       "http://169.254.169.254/metadata/identity/oauth2/token"
#define DEFAULT_TOKEN_FILE "/var/run/secrets/azure/tokens/azure-identity-token"
#define MIB                (1024 * 1024)

struct sbuf {
    char *s;
    size_t len;
    size_t cap;
};

struct loader {
    struct config *cfg;
    const struct config_overrides *ov;
    char *err;
    size_t errlen;
    struct sbuf info; /* connector keys that mean nothing to kadx */
    struct sbuf warn; /* connector keys kadx cannot honour */
    int oom;
};

/* ---- small helpers ---------------------------------------------------- */

static int fail(struct loader *l, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int fail(struct loader *l, const char *fmt, ...)
{
    va_list ap;

    if (l->err != NULL && l->errlen > 0) {
        va_start(ap, fmt);
        vsnprintf(l->err, l->errlen, fmt, ap);
        va_end(ap);
    }
    return -EINVAL;
}

static int oom(struct loader *l)
{
    if (l->err != NULL && l->errlen > 0) {
        snprintf(l->err, l->errlen, "out of memory while loading the config");
    }
    return -ENOMEM;
}

static int sbuf_add(struct sbuf *b, const char *s, size_t n)
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

static int sbuf_adds(struct sbuf *b, const char *s)
{
    return sbuf_add(b, s, strlen(s));
}

/* Appends ", item" (or "item" when empty) to a note list. */
static void note(struct loader *l, struct sbuf *b, const char *item)
{
    if (b->len > 0 && sbuf_adds(b, ", ") < 0) {
        l->oom = 1;
    }
    if (sbuf_adds(b, item) < 0) {
        l->oom = 1;
    }
}

/* Appends text to the last item of a note list. */
static void note_more(struct loader *l, struct sbuf *b, const char *text)
{
    if (sbuf_adds(b, text) < 0) {
        l->oom = 1;
    }
}

/*
 * Copies s into buf for an error message: non-printable bytes become '?',
 * long strings end in "...". Returns buf.
 */
static const char *clean(const char *s, char *buf, size_t n)
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
static void join(char *buf, size_t n, const char *parent, const char *key)
{
    char k[PATHLEN];
    int r;

    clean(key, k, sizeof(k));
    if (parent == NULL || parent[0] == '\0') {
        r = snprintf(buf, n, "%s", k);
    } else {
        r = snprintf(buf, n, "%s.%s", parent, k);
    }
    if (r < 0 || (size_t)r >= n) {
        memcpy(buf + n - 4, "...", 4);
    }
}

static void join_index(char *buf, size_t n, const char *parent, size_t i)
{
    int r = snprintf(buf, n, "%s[%zu]", parent, i);

    if (r < 0 || (size_t)r >= n) {
        memcpy(buf + n - 4, "...", 4);
    }
}

static int replace(char **dst, const char *src)
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

static int strv_push(char ***v, size_t *n, const char *s)
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

static void strv_free(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(v[i]);
    }
    free(v);
}

static int strv_has(char *const *v, size_t n, const char *s)
{
    for (size_t i = 0; i < n; i++) {
        if (strcmp(v[i], s) == 0) {
            return 1;
        }
    }
    return 0;
}

/* Strict decimal int64 with optional surrounding blanks. */
static int parse_i64(const char *s, int64_t *out)
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

/* A "123" followed by an optional unit from units[] (multipliers). */
struct unit {
    const char *name;
    int64_t mul;
};

static const struct unit size_units[] = {
    {"", 1},
    {"B", 1},
    {"KB", 1000},
    {"MB", 1000 * 1000},
    {"GB", 1000 * 1000 * 1000},
    {"KiB", 1024},
    {"MiB", MIB},
    {"GiB", (int64_t)1024 * MIB},
    {"TiB", (int64_t)1024 * 1024 * MIB},
    {NULL, 0},
};

static const struct unit time_units[] = {
    {"", 1},          {"ms", 1},          {"s", 1000},
    {"m", 60 * 1000}, {"h", 3600 * 1000}, {"d", 24 * 3600 * 1000},
    {NULL, 0},
};

static int parse_with_unit(const char *s, const struct unit *units,
                           int64_t *out)
{
    char *end;
    long long v;

    if (!isdigit((unsigned char)*s)) {
        return -EINVAL;
    }
    errno = 0;
    v = strtoll(s, &end, 10);
    if (errno != 0) {
        return -EINVAL;
    }
    if (*end == ' ') {
        end++;
    }
    for (size_t i = 0; units[i].name != NULL; i++) {
        if (strcmp(end, units[i].name) == 0) {
            if (v > INT64_MAX / units[i].mul) {
                return -EINVAL;
            }
            *out = (int64_t)v * units[i].mul;
            return 0;
        }
    }
    return -EINVAL;
}

static int json_int(const cJSON *it, int64_t *out)
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
        return fail(l, "'${file:%s}' in '%s': the path must be absolute", file,
                    path);
    }
    f = fopen(file, "rb");
    if (f == NULL) {
        return fail(l, "cannot read '%s' (used in '%s'): %s", file, path,
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
        rc = sbuf_add(b, buf, n);
        if (rc < 0) {
            break;
        }
    }
    if (rc == 0 && ferror(f)) {
        rc = fail(l, "cannot read '%s' (used in '%s'): %s", file, path,
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
static int subst_env(struct loader *l, const char *path, const char *in,
                     char **out)
{
    struct sbuf b = {0};
    const char *p = in;
    int rc = 0;

    if (sbuf_add(&b, "", 0) < 0) {
        return oom(l);
    }
    while (*p != '\0' && rc == 0) {
        if (p[0] == '$' && p[1] == '$' && p[2] == '{') {
            rc = sbuf_add(&b, "${", 2);
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
                return fail(l, "unterminated '${' in '%s'", path);
            }
            n = (size_t)(end - name);
            if (n > 5 && strncmp(name, "file:", 5) == 0) {
                if (n - 5 >= sizeof(var)) {
                    free(b.s);
                    return fail(l, "file name too long in '%s'", path);
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
                return fail(l, "bad environment variable name in '%s'", path);
            }
            for (size_t i = 0; i < n; i++) {
                if (!isalnum((unsigned char)name[i]) && name[i] != '_') {
                    free(b.s);
                    return fail(l, "bad environment variable name in '%s'",
                                path);
                }
            }
            memcpy(var, name, n);
            var[n] = '\0';
            val = getenv(var);
            if (dflt != NULL && (val == NULL || val[0] == '\0')) {
                rc = sbuf_add(&b, dflt, (size_t)(end - dflt));
            } else if (val == NULL) {
                free(b.s);
                return fail(l,
                            "environment variable '%s' is not set (used in "
                            "'%s')",
                            var, path);
            } else {
                rc = sbuf_adds(&b, val);
            }
            p = end + 1;
        } else {
            rc = sbuf_add(&b, p, 1);
            p++;
        }
    }
    if (rc == -EMSGSIZE) {
        free(b.s);
        return fail(l, "'%s' is longer than %d bytes", path, VALUE_MAX);
    }
    if (rc < 0) {
        free(b.s);
        return oom(l);
    }
    *out = b.s;
    return 0;
}

/* ---- typed getters for the native format -------------------------------
 * Each returns 1 when the key was present and stored, 0 when absent (or
 * null, which means "unset"), or a negative errno with the message set. */

static int opt_string(struct loader *l, const cJSON *obj, const char *parent,
                      const char *key, char **dst)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, key);
    char path[PATHLEN];
    char *v = NULL;
    int rc;

    join(path, sizeof(path), parent, key);
    if (it == NULL || cJSON_IsNull(it)) {
        return 0;
    }
    if (!cJSON_IsString(it)) {
        return fail(l, "'%s' must be a string", path);
    }
    rc = subst_env(l, path, it->valuestring, &v);
    if (rc < 0) {
        return rc;
    }
    free(*dst);
    *dst = v;
    return 1;
}

/* A present string must not be empty. */
static int opt_nonempty(struct loader *l, const cJSON *obj, const char *parent,
                        const char *key, char **dst)
{
    char path[PATHLEN];
    int rc = opt_string(l, obj, parent, key, dst);

    if (rc == 1 && (*dst)[0] == '\0') {
        join(path, sizeof(path), parent, key);
        return fail(l, "'%s' must not be empty", path);
    }
    return rc;
}

static int req_string(struct loader *l, const cJSON *obj, const char *parent,
                      const char *key, char **dst)
{
    char path[PATHLEN];
    int rc = opt_nonempty(l, obj, parent, key, dst);

    if (rc == 0) {
        join(path, sizeof(path), parent, key);
        return fail(l, "missing required key '%s'", path);
    }
    return rc;
}

static int range(struct loader *l, const char *path, int64_t v, int64_t min,
                 int64_t max)
{
    if (v < min) {
        return fail(l, "'%s' must be at least %lld", path, (long long)min);
    }
    if (v > max) {
        return fail(l, "'%s' must be at most %lld", path, (long long)max);
    }
    return 0;
}

enum numkind { NUM_INT, NUM_SIZE, NUM_MS };

static int opt_num(struct loader *l, const cJSON *obj, const char *parent,
                   const char *key, enum numkind kind, int64_t min, int64_t max,
                   int64_t *dst)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, key);
    char path[PATHLEN];
    int64_t v;
    int rc;

    join(path, sizeof(path), parent, key);
    if (it == NULL || cJSON_IsNull(it)) {
        return 0;
    }
    if (cJSON_IsNumber(it)) {
        if (json_int(it, &v) < 0) {
            return fail(l, "'%s' must be an integer", path);
        }
    } else if (cJSON_IsString(it) && kind != NUM_INT) {
        char *s = NULL;

        rc = subst_env(l, path, it->valuestring, &s);
        if (rc < 0) {
            return rc;
        }
        rc = parse_with_unit(s, kind == NUM_SIZE ? size_units : time_units, &v);
        free(s);
        if (rc < 0) {
            return fail(l,
                        kind == NUM_SIZE
                            ? "'%s' must be a byte count (an integer, or a "
                              "string such as \"64MiB\")"
                            : "'%s' must be a duration in ms (an integer, or "
                              "a string such as \"30s\")",
                        path);
        }
    } else {
        return fail(l, "'%s' must be an integer", path);
    }
    rc = range(l, path, v, min, max);
    if (rc < 0) {
        return rc;
    }
    *dst = v;
    return 1;
}

static int opt_bool(struct loader *l, const cJSON *obj, const char *parent,
                    const char *key, int *dst)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, key);
    char path[PATHLEN];

    if (it == NULL || cJSON_IsNull(it)) {
        return 0;
    }
    if (!cJSON_IsBool(it)) {
        join(path, sizeof(path), parent, key);
        return fail(l, "'%s' must be true or false", path);
    }
    *dst = cJSON_IsTrue(it) ? 1 : 0;
    return 1;
}

/* obj's key must be absent/null or an object; *out = it or NULL. */
static int opt_object(struct loader *l, const cJSON *obj, const char *parent,
                      const char *key, const cJSON **out)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, key);
    char path[PATHLEN];

    *out = NULL;
    if (it == NULL || cJSON_IsNull(it)) {
        return 0;
    }
    if (!cJSON_IsObject(it)) {
        join(path, sizeof(path), parent, key);
        return fail(l, "'%s' must be an object", path);
    }
    *out = it;
    return 1;
}

/* Every key of obj is in allowed (NULL-terminated) and appears once. */
static int check_keys(struct loader *l, const cJSON *obj, const char *parent,
                      const char *const *allowed)
{
    char path[PATHLEN];
    int n = 0;

    for (const cJSON *c = obj->child; c != NULL; c = c->next) {
        int ok = allowed == NULL;

        join(path, sizeof(path), parent, c->string);
        if (++n > MAX_KEYS) {
            return fail(l, "'%s' has more than %d keys", parent, MAX_KEYS);
        }
        for (size_t i = 0; !ok && allowed[i] != NULL; i++) {
            ok = strcmp(c->string, allowed[i]) == 0;
        }
        if (!ok) {
            return fail(l, "unknown key '%s'", path);
        }
        for (const cJSON *d = obj->child; d != c; d = d->next) {
            if (strcmp(d->string, c->string) == 0) {
                return fail(l, "duplicate key '%s'", path);
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
static int check_url(struct loader *l, const char *path, char *url,
                     const char *extra_http_host)
{
    char shown[128];
    const char *host;
    const char *p;
    size_t hn;
    size_t len;
    int https;

    clean(url, shown, sizeof(shown));
    if (strncasecmp(url, "https://", 8) == 0) {
        https = 1;
        host = url + 8;
    } else if (strncasecmp(url, "http://", 7) == 0) {
        https = 0;
        host = url + 7;
    } else {
        return fail(l, "'%s' must be an https:// URL, not '%s'", path, shown);
    }
    for (p = host; *p != '\0' && *p != '/'; p++) {
        if (*p == '@') {
            return fail(l, "'%s' must not contain credentials", path);
        }
    }
    p = host;
    if (*p == '[') {
        while (*p != '\0' && *p != ']') {
            if (!isxdigit((unsigned char)*p) && *p != ':' && *p != '[' &&
                *p != '.') {
                return fail(l, "'%s' has a bad host: '%s'", path, shown);
            }
            p++;
        }
        if (*p != ']') {
            return fail(l, "'%s' has a bad host: '%s'", path, shown);
        }
        p++;
    } else {
        while (*p != '\0' && *p != ':' && *p != '/') {
            if (!isalnum((unsigned char)*p) && *p != '.' && *p != '-' &&
                *p != '_') {
                return fail(l, "'%s' has a bad host: '%s'", path, shown);
            }
            p++;
        }
    }
    hn = (size_t)(p - host);
    if (hn == 0) {
        return fail(l, "'%s' has no host: '%s'", path, shown);
    }
    if (*p == ':') {
        long port = 0;
        int digits = 0;

        for (p++; isdigit((unsigned char)*p) && digits < 6; p++, digits++) {
            port = port * 10 + (*p - '0');
        }
        if (digits == 0 || port < 1 || port > 65535 ||
            (*p != '\0' && *p != '/')) {
            return fail(l, "'%s' has a bad port: '%s'", path, shown);
        }
    }
    for (; *p != '\0'; p++) {
        if (*p == '?' || *p == '#' || *p == '@' || isspace((unsigned char)*p) ||
            (unsigned char)*p < 0x20) {
            return fail(l,
                        "'%s' must be a plain URL (no query, fragment or "
                        "credentials): '%s'",
                        path, shown);
        }
    }
    if (!https && !is_loopback(host, hn) &&
        !(extra_http_host != NULL && hn == strlen(extra_http_host) &&
          strncmp(host, extra_http_host, hn) == 0)) {
        return fail(l,
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
static int check_ident(struct loader *l, const char *path, const char *s)
{
    size_t n = strlen(s);

    if (n == 0) {
        return fail(l, "'%s' must not be empty", path);
    }
    if (n > IDENT_MAX) {
        return fail(l, "'%s' is longer than %d characters", path, IDENT_MAX);
    }
    for (size_t i = 0; i < n; i++) {
        if (!isalnum((unsigned char)s[i]) && s[i] != '_' && s[i] != '.' &&
            s[i] != '-') {
            return fail(l,
                        "'%s' may contain only letters, digits, '_', '.' and "
                        "'-'",
                        path);
        }
    }
    return 0;
}

/* JSON field and column names: they end up in KQL queries. */
static int check_column(struct loader *l, const char *path, const char *s)
{
    size_t n = strlen(s);

    if (n == 0 || n > 256 || !(isalpha((unsigned char)s[0]) || s[0] == '_')) {
        return fail(l, "'%s' must be a column name ([A-Za-z_][A-Za-z0-9_]*)",
                    path);
    }
    for (size_t i = 0; i < n; i++) {
        if (!isalnum((unsigned char)s[i]) && s[i] != '_') {
            return fail(
                l, "'%s' must be a column name ([A-Za-z_][A-Za-z0-9_]*)", path);
        }
    }
    return 0;
}

/* Kafka's legal topic names: [a-zA-Z0-9._-], 1..249 characters. */
static int check_topic(struct loader *l, const char *path, const char *s)
{
    size_t n = strlen(s);
    char shown[64];

    if (n == 0) {
        return fail(l, "'%s' must not be empty", path);
    }
    if (n > 249) {
        return fail(l, "'%s' is longer than 249 characters", path);
    }
    for (size_t i = 0; i < n; i++) {
        if (!isalnum((unsigned char)s[i]) && s[i] != '_' && s[i] != '.' &&
            s[i] != '-') {
            return fail(l, "'%s' is not a valid Kafka topic name: '%s'", path,
                        clean(s, shown, sizeof(shown)));
        }
    }
    return 0;
}

/* Tenant ids and client ids go into URLs: GUIDs or domain names. */
static int check_id(struct loader *l, const char *path, const char *s)
{
    size_t n = strlen(s);

    if (n == 0 || n > 256) {
        return fail(l, "'%s' must be an id (1 to 256 characters)", path);
    }
    for (size_t i = 0; i < n; i++) {
        if (!isalnum((unsigned char)s[i]) && s[i] != '-' && s[i] != '.' &&
            s[i] != '_') {
            return fail(l,
                        "'%s' must be an id (letters, digits, '-', '.', "
                        "'_')",
                        path);
        }
    }
    return 0;
}

/* "HOST:PORT" with HOST an IPv4 address, a [IPv6] address or a name. */
static int check_listen(struct loader *l, const char *path, const char *s)
{
    const char *colon = strrchr(s, ':');
    char shown[128];
    int64_t port;

    clean(s, shown, sizeof(shown));
    if (colon == NULL || colon == s || parse_i64(colon + 1, &port) < 0 ||
        port < 0 || port > 65535 || !isdigit((unsigned char)colon[1])) {
        return fail(l, "'%s' must be HOST:PORT (or \"off\"), not '%s'", path,
                    shown);
    }
    if (s[0] == '[') {
        if (colon[-1] != ']') {
            return fail(l, "'%s' must be HOST:PORT (or \"off\"), not '%s'",
                        path, shown);
        }
        for (const char *p = s + 1; p < colon - 1; p++) {
            if (!isxdigit((unsigned char)*p) && *p != ':' && *p != '.') {
                return fail(l, "'%s' has a bad host: '%s'", path, shown);
            }
        }
        return 0;
    }
    for (const char *p = s; p < colon; p++) {
        if (!isalnum((unsigned char)*p) && *p != '.' && *p != '-') {
            return fail(l, "'%s' has a bad host: '%s'", path, shown);
        }
    }
    return 0;
}

/* A kafka key whose value must be masked and registered. */
static int kafka_key_is_secret(const char *k)
{
    return strstr(k, "password") != NULL || strstr(k, "secret") != NULL ||
           strcmp(k, "ssl.key.pem") == 0 ||
           strcmp(k, "sasl.oauthbearer.config") == 0;
}

static int kafka_set(struct config_kafka *k, const char *key, const char *value)
{
    char **keys;
    char **values;
    char *kd;
    char *vd;

    for (size_t i = 0; i < k->n; i++) {
        if (strcmp(k->keys[i], key) == 0) {
            return replace(&k->values[i], value);
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

/* ---- defaults --------------------------------------------------------- */

/*
 * journal.path's default: under systemd's StateDirectory= when the service
 * manager gives one ($STATE_DIRECTORY, a ':'-separated list: the first
 * entry; the packaged unit sets StateDirectory=kadx, i.e. /var/lib/kadx),
 * else ./kadx-journal.db in the working directory (CONFIG.md, "journal").
 */
static int default_journal_path(char **out)
{
    const char *sd = getenv("STATE_DIRECTORY");
    size_t n;
    char *p;

    if (sd == NULL || sd[0] == '\0' || sd[0] != '/') {
        return replace(out, "./kadx-journal.db");
    }
    n = strcspn(sd, ":");
    while (n > 1 && sd[n - 1] == '/') {
        n--;
    }
    p = malloc(n + sizeof("/kadx-journal.db"));
    if (p == NULL) {
        return -ENOMEM;
    }
    memcpy(p, sd, n);
    memcpy(p + n, "/kadx-journal.db", sizeof("/kadx-journal.db"));
    free(*out);
    *out = p;
    return 0;
}

static int set_defaults(struct config *c)
{
    const char *authority = getenv("AZURE_AUTHORITY_HOST");

    c->log_level = -1;
    c->adx.request_timeout_ms = 30000;
    c->adx.server_timeout_ms = CONFIG_SERVER_TIMEOUT_DEFAULT_MS;
    c->adx.keepalive_idle_ms = 50000;
    c->journal.max_bytes = (int64_t)1024 * MIB;
    c->journal.retention_ms = (int64_t)24 * 3600 * 1000;
    c->journal.reserve_bytes = 8 * MIB;
    c->journal.min_retention_ms = 0;
    c->journal.sync_full = 1;
    c->forwarder.batch_max_bytes = MIB;
    c->forwarder.batch_max_rows = 10000;
    c->forwarder.linger_ms = 200;
    c->forwarder.max_inflight = 4;
    c->forwarder.retry_initial_ms = 500;
    c->forwarder.retry_max_ms = 30000;
    c->forwarder.retry_max_time_ms = 0;
    c->forwarder.ambiguous_delay_ms = 2000;
    c->forwarder.ambiguous_window_ms = -1; /* computed in finish() */
    c->forwarder.on_error = CONFIG_ON_ERROR_DEADLETTER;
    c->intake.skip_tombstones = 1;
    c->admin.max_connections = 64;
    c->admin.max_requests_per_s = 20;
    c->intake.high_water_bytes = -1; /* computed in finish() */
    c->intake.low_water_bytes = -1;
    c->intake.prefetch_bytes = CONFIG_DEFAULT_PREFETCH_BYTES;
    if (default_journal_path(&c->journal.path) < 0 ||
        replace(&c->admin.listen, "127.0.0.1:8081") < 0 ||
        replace(&c->adx.auth.authority_host,
                authority != NULL && authority[0] != '\0'
                    ? authority
                    : DEFAULT_AUTHORITY) < 0) {
        return -ENOMEM;
    }
    return 0;
}

/* ---- native reader ---------------------------------------------------- */

static const char *const top_keys[] = {
    "kafka",     "adx",   "routes", "journal",         "intake",
    "forwarder", "admin", "log",    "schema_registry", NULL};
static const char *const adx_keys[] = {
    "ingest_url",         "query_url",         "auth",
    "request_timeout_ms", "server_timeout_ms", "proxy",
    "no_proxy",           "keepalive_idle_ms", NULL};
static const char *const auth_keys[] = {
    "method",     "tenant_id",      "client_id", "client_secret", "token",
    "token_file", "authority_host", "scope",     "imds_url",      NULL};
static const char *const route_keys[] = {"name",
                                         "topic",
                                         "topic_regex",
                                         "database",
                                         "table",
                                         "format",
                                         "mapping",
                                         "meta",
                                         "dedupe_column",
                                         "value_converter",
                                         "key_converter",
                                         "schema_registry",
                                         NULL};
static const char *const meta_keys[] = {"topic",     "partition", "offset",
                                        "timestamp", "key",       "headers",
                                        "batch_id",  NULL};
static const char *const journal_keys[] = {
    "path", "max_bytes",     "retention_ms",
    "sync", "reserve_bytes", "min_retention_ms",
    NULL};
static const char *const forwarder_keys[] = {"batch_max_bytes",
                                             "batch_max_rows",
                                             "linger_ms",
                                             "max_inflight",
                                             "retry_initial_ms",
                                             "retry_max_ms",
                                             "retry_max_time_ms",
                                             "ambiguous_delay_ms",
                                             "ambiguous_window_ms",
                                             "on_error",
                                             NULL};
static const char *const intake_keys[] = {"skip_tombstones",
                                          "high_water_bytes",
                                          "low_water_bytes",
                                          "topics",
                                          "on_rewind",
                                          "prefetch_bytes",
                                          NULL};
static const char *const admin_keys[] = {
    "listen",  "token",           "token_on_get",       "tls_cert",
    "tls_key", "max_connections", "max_requests_per_s", NULL};
static const char *const log_keys[] = {"level", NULL};

static const char *const auth_names[] = {"none", "static_token",
                                         "client_secret", "managed_identity",
                                         "workload_identity"};

const char *config_auth_method_name(enum config_auth_method m)
{
    if ((size_t)m < sizeof(auth_names) / sizeof(auth_names[0])) {
        return auth_names[m];
    }
    return "?";
}

static int load_kafka_native(struct loader *l, const cJSON *o)
{
    char path[PATHLEN];
    char num[64];
    int rc;

    rc = check_keys(l, o, "kafka", NULL);
    if (rc < 0) {
        return rc;
    }
    for (const cJSON *c = o->child; c != NULL; c = c->next) {
        char *v = NULL;

        join(path, sizeof(path), "kafka", c->string);
        if (cJSON_IsString(c)) {
            rc = subst_env(l, path, c->valuestring, &v);
            if (rc < 0) {
                return rc;
            }
        } else if (cJSON_IsNumber(c)) {
            int64_t i;

            if (json_int(c, &i) == 0) {
                snprintf(num, sizeof(num), "%lld", (long long)i);
            } else {
                snprintf(num, sizeof(num), "%.17g", c->valuedouble);
            }
            v = strdup(num);
        } else if (cJSON_IsBool(c)) {
            v = strdup(cJSON_IsTrue(c) ? "true" : "false");
        } else {
            return fail(l, "'%s' must be a string, number or boolean", path);
        }
        if (v == NULL) {
            return oom(l);
        }
        rc = kafka_set(&l->cfg->kafka, c->string, v);
        free(v);
        if (rc < 0) {
            return oom(l);
        }
    }
    return 0;
}

static int parse_auth_method(const char *s, enum config_auth_method *m)
{
    for (size_t i = 0; i < sizeof(auth_names) / sizeof(auth_names[0]); i++) {
        if (strcasecmp(s, auth_names[i]) == 0) {
            *m = (enum config_auth_method)i;
            return 0;
        }
    }
    return -EINVAL;
}

static int load_auth_native(struct loader *l, const cJSON *o)
{
    struct config_auth *a = &l->cfg->adx.auth;
    const char *p = "adx.auth";
    char *method = NULL;
    char shown[64];
    int rc;

    rc = check_keys(l, o, p, auth_keys);
    if (rc >= 0) {
        rc = req_string(l, o, p, "method", &method);
    }
    if (rc >= 0 && parse_auth_method(method, &a->method) < 0) {
        rc = fail(l,
                  "'adx.auth.method' must be none, static_token, "
                  "client_secret, managed_identity or workload_identity, "
                  "not '%s'",
                  clean(method, shown, sizeof(shown)));
    }
    free(method);
    if (rc < 0) {
        return rc;
    }
    if ((rc = opt_nonempty(l, o, p, "tenant_id", &a->tenant_id)) < 0 ||
        (rc = opt_nonempty(l, o, p, "client_id", &a->client_id)) < 0 ||
        (rc = opt_nonempty(l, o, p, "client_secret", &a->client_secret)) < 0 ||
        (rc = opt_nonempty(l, o, p, "token", &a->token)) < 0 ||
        (rc = opt_nonempty(l, o, p, "token_file", &a->token_file)) < 0 ||
        (rc = opt_nonempty(l, o, p, "authority_host", &a->authority_host)) <
            0 ||
        (rc = opt_nonempty(l, o, p, "scope", &a->scope)) < 0 ||
        (rc = opt_nonempty(l, o, p, "imds_url", &a->imds_url)) < 0) {
        return rc;
    }
    return 0;
}

static int load_adx_native(struct loader *l, const cJSON *o)
{
    struct config_adx *x = &l->cfg->adx;
    const cJSON *auth;
    int rc;

    if ((rc = check_keys(l, o, "adx", adx_keys)) < 0 ||
        (rc = req_string(l, o, "adx", "ingest_url", &x->ingest_url)) < 0 ||
        (rc = opt_nonempty(l, o, "adx", "query_url", &x->query_url)) < 0 ||
        (rc = opt_num(l, o, "adx", "request_timeout_ms", NUM_MS, 100,
                      3600 * 1000, &x->request_timeout_ms)) < 0 ||
        (rc = opt_num(l, o, "adx", "server_timeout_ms", NUM_MS, 1000,
                      3600 * 1000, &x->server_timeout_ms)) < 0 ||
        (rc = opt_nonempty(l, o, "adx", "proxy", &x->proxy)) < 0 ||
        (rc = opt_string(l, o, "adx", "no_proxy", &x->no_proxy)) < 0 ||
        (rc = opt_num(l, o, "adx", "keepalive_idle_ms", NUM_MS, 1000,
                      3600 * 1000, &x->keepalive_idle_ms)) < 0 ||
        (rc = opt_object(l, o, "adx", "auth", &auth)) < 0) {
        return rc;
    }
    if (auth != NULL) {
        return load_auth_native(l, auth);
    }
    return 0;
}

static const char *const registry_keys[] = {"url", "basic_auth", "ca_file",
                                            "timeout_ms", NULL};

/* parent.schema_registry {url, basic_auth, ca_file, timeout_ms}, if set */
static int load_registry_native(struct loader *l, const cJSON *parent,
                                const char *p, struct config_registry *g)
{
    const cJSON *o;
    char rp[PATHLEN];
    int rc;

    if ((rc = opt_object(l, parent, p, "schema_registry", &o)) < 0 ||
        o == NULL) {
        return rc;
    }
    join(rp, sizeof(rp), p, "schema_registry");
    if ((rc = check_keys(l, o, rp, registry_keys)) < 0 ||
        (rc = opt_nonempty(l, o, rp, "url", &g->url)) < 0 ||
        (rc = opt_nonempty(l, o, rp, "basic_auth", &g->basic_auth)) < 0 ||
        (rc = opt_nonempty(l, o, rp, "ca_file", &g->ca_file)) < 0 ||
        (rc = opt_num(l, o, rp, "timeout_ms", NUM_MS, 100, 600 * 1000,
                      &g->timeout_ms)) < 0) {
        return rc;
    }
    if (g->url == NULL) {
        return fail(l, "missing required key '%s.url'", rp);
    }
    return 0;
}

static int load_route_native(struct loader *l, const cJSON *o, const char *p,
                             struct config_route *r)
{
    const cJSON *meta;
    char mp[PATHLEN];
    int rc;

    if ((rc = check_keys(l, o, p, route_keys)) < 0 ||
        (rc = opt_nonempty(l, o, p, "name", &r->name)) < 0 ||
        (rc = opt_nonempty(l, o, p, "topic", &r->topic)) < 0 ||
        (rc = opt_nonempty(l, o, p, "topic_regex", &r->topic_regex)) < 0 ||
        (rc = req_string(l, o, p, "database", &r->database)) < 0 ||
        (rc = req_string(l, o, p, "table", &r->table)) < 0 ||
        (rc = opt_nonempty(l, o, p, "format", &r->format)) < 0 ||
        (rc = opt_nonempty(l, o, p, "mapping", &r->mapping)) < 0 ||
        (rc = opt_nonempty(l, o, p, "dedupe_column", &r->dedupe_column)) < 0 ||
        (rc = opt_nonempty(l, o, p, "value_converter", &r->value_converter)) <
            0 ||
        (rc = opt_nonempty(l, o, p, "key_converter", &r->key_converter)) < 0 ||
        (rc = load_registry_native(l, o, p, &r->registry)) < 0 ||
        (rc = opt_object(l, o, p, "meta", &meta)) < 0) {
        return rc;
    }
    if (r->topic == NULL && r->topic_regex == NULL) {
        return fail(l, "%s: set one of 'topic' and 'topic_regex'", p);
    }
    if (r->topic != NULL && r->topic_regex != NULL) {
        return fail(l, "%s: set only one of 'topic' and 'topic_regex'", p);
    }
    if (r->format == NULL && replace(&r->format, "json") < 0) {
        return oom(l);
    }
    if (meta == NULL) {
        return 0;
    }
    join(mp, sizeof(mp), p, "meta");
    if ((rc = check_keys(l, meta, mp, meta_keys)) < 0 ||
        (rc = opt_nonempty(l, meta, mp, "topic", &r->meta.topic)) < 0 ||
        (rc = opt_nonempty(l, meta, mp, "partition", &r->meta.partition)) < 0 ||
        (rc = opt_nonempty(l, meta, mp, "offset", &r->meta.offset)) < 0 ||
        (rc = opt_nonempty(l, meta, mp, "timestamp", &r->meta.timestamp)) < 0 ||
        (rc = opt_nonempty(l, meta, mp, "key", &r->meta.key)) < 0 ||
        (rc = opt_nonempty(l, meta, mp, "headers", &r->meta.headers)) < 0 ||
        (rc = opt_nonempty(l, meta, mp, "batch_id", &r->meta.batch_id)) < 0) {
        return rc;
    }
    return 0;
}

static int load_routes_native(struct loader *l, const cJSON *arr)
{
    struct config *c = l->cfg;
    char p[PATHLEN];
    int n;
    int rc;

    if (!cJSON_IsArray(arr)) {
        return fail(l, "'routes' must be an array");
    }
    n = cJSON_GetArraySize(arr);
    if (n == 0) {
        return fail(l, "'routes' must not be empty");
    }
    if (n > MAX_KEYS) {
        return fail(l, "'routes' has more than %d entries", MAX_KEYS);
    }
    c->routes = calloc((size_t)n, sizeof(*c->routes));
    if (c->routes == NULL) {
        return oom(l);
    }
    for (const cJSON *e = arr->child; e != NULL; e = e->next) {
        join_index(p, sizeof(p), "routes", c->nroutes);
        if (!cJSON_IsObject(e)) {
            return fail(l, "'%s' must be an object", p);
        }
        rc = load_route_native(l, e, p, &c->routes[c->nroutes++]);
        if (rc < 0) {
            return rc;
        }
    }
    return 0;
}

static int load_native(struct loader *l, const cJSON *root)
{
    struct config *c = l->cfg;
    const cJSON *o;
    const cJSON *arr;
    char *s = NULL;
    char shown[64];
    int rc;

    if ((rc = check_keys(l, root, "", top_keys)) < 0) {
        return rc;
    }
    if ((rc = opt_object(l, root, "", "kafka", &o)) < 0) {
        return rc;
    }
    if (o != NULL && (rc = load_kafka_native(l, o)) < 0) {
        return rc;
    }
    if ((rc = opt_object(l, root, "", "adx", &o)) < 0) {
        return rc;
    }
    if (o == NULL) {
        return fail(l, "missing required key 'adx'");
    }
    if ((rc = load_adx_native(l, o)) < 0) {
        return rc;
    }
    if ((rc = load_registry_native(l, root, "", &c->registry)) < 0) {
        return rc;
    }
    arr = cJSON_GetObjectItemCaseSensitive(root, "routes");
    if (arr == NULL || cJSON_IsNull(arr)) {
        return fail(l, "missing required key 'routes'");
    }
    if ((rc = load_routes_native(l, arr)) < 0) {
        return rc;
    }

    if ((rc = opt_object(l, root, "", "journal", &o)) < 0) {
        return rc;
    }
    if (o != NULL) {
        if ((rc = check_keys(l, o, "journal", journal_keys)) < 0 ||
            (rc = opt_nonempty(l, o, "journal", "path", &c->journal.path)) <
                0 ||
            (rc = opt_num(l, o, "journal", "max_bytes", NUM_SIZE, 16 * MIB,
                          INT64_MAX, &c->journal.max_bytes)) < 0 ||
            (rc = opt_num(l, o, "journal", "retention_ms", NUM_MS, 0,
                          (int64_t)365 * 24 * 3600 * 1000,
                          &c->journal.retention_ms)) < 0 ||
            (rc = opt_num(l, o, "journal", "reserve_bytes", NUM_SIZE, 0,
                          (int64_t)1 << 40, &c->journal.reserve_bytes)) < 0 ||
            (rc = opt_num(l, o, "journal", "min_retention_ms", NUM_MS, 0,
                          (int64_t)365 * 24 * 3600 * 1000,
                          &c->journal.min_retention_ms)) < 0 ||
            (rc = opt_nonempty(l, o, "journal", "sync", &s)) < 0) {
            free(s);
            return rc;
        }
        if (s != NULL) {
            if (strcasecmp(s, "full") == 0) {
                c->journal.sync_full = 1;
            } else if (strcasecmp(s, "normal") == 0) {
                c->journal.sync_full = 0;
            } else {
                rc = fail(l, "'journal.sync' must be full or normal, not '%s'",
                          clean(s, shown, sizeof(shown)));
            }
            free(s);
            s = NULL;
            if (rc < 0) {
                return rc;
            }
        }
    }

    if ((rc = opt_object(l, root, "", "forwarder", &o)) < 0) {
        return rc;
    }
    if (o != NULL) {
        struct config_forwarder *f = &c->forwarder;
        const char *p = "forwarder";
        int64_t inflight = f->max_inflight;

        if ((rc = check_keys(l, o, p, forwarder_keys)) < 0 ||
            (rc = opt_num(l, o, p, "batch_max_bytes", NUM_SIZE, 1024, INT64_MAX,
                          &f->batch_max_bytes)) < 0 ||
            (rc = opt_num(l, o, p, "batch_max_rows", NUM_INT, 1, 1000000,
                          &f->batch_max_rows)) < 0 ||
            (rc = opt_num(l, o, p, "linger_ms", NUM_MS, 0, 3600 * 1000,
                          &f->linger_ms)) < 0 ||
            (rc = opt_num(l, o, p, "max_inflight", NUM_INT, 1, 64, &inflight)) <
                0 ||
            (rc = opt_num(l, o, p, "retry_initial_ms", NUM_MS, 1, 3600 * 1000,
                          &f->retry_initial_ms)) < 0 ||
            (rc = opt_num(l, o, p, "retry_max_ms", NUM_MS, 1, 24 * 3600 * 1000,
                          &f->retry_max_ms)) < 0 ||
            (rc = opt_num(l, o, p, "retry_max_time_ms", NUM_MS, 0, INT64_MAX,
                          &f->retry_max_time_ms)) < 0 ||
            (rc = opt_num(l, o, p, "ambiguous_delay_ms", NUM_MS, 0, 3600 * 1000,
                          &f->ambiguous_delay_ms)) < 0 ||
            (rc = opt_num(l, o, p, "ambiguous_window_ms", NUM_MS, 1,
                          INT64_MAX / 4, &f->ambiguous_window_ms)) < 0 ||
            (rc = opt_nonempty(l, o, p, "on_error", &s)) < 0) {
            free(s);
            return rc;
        }
        f->max_inflight = (int)inflight;
        if (s != NULL) {
            if (strcasecmp(s, "deadletter") == 0) {
                f->on_error = CONFIG_ON_ERROR_DEADLETTER;
            } else if (strcasecmp(s, "pause") == 0) {
                f->on_error = CONFIG_ON_ERROR_PAUSE;
            } else {
                rc = fail(l,
                          "'forwarder.on_error' must be deadletter or pause, "
                          "not '%s'",
                          clean(s, shown, sizeof(shown)));
            }
            free(s);
            s = NULL;
            if (rc < 0) {
                return rc;
            }
        }
    }

    if ((rc = opt_object(l, root, "", "intake", &o)) < 0) {
        return rc;
    }
    if (o != NULL) {
        struct config_intake *in = &c->intake;

        if ((rc = check_keys(l, o, "intake", intake_keys)) < 0 ||
            (rc = opt_bool(l, o, "intake", "skip_tombstones",
                           &in->skip_tombstones)) < 0 ||
            (rc = opt_num(l, o, "intake", "high_water_bytes", NUM_SIZE, 1,
                          INT64_MAX, &in->high_water_bytes)) < 0 ||
            (rc = opt_num(l, o, "intake", "low_water_bytes", NUM_SIZE, 0,
                          INT64_MAX, &in->low_water_bytes)) < 0 ||
            (rc = opt_num(l, o, "intake", "prefetch_bytes", NUM_SIZE, 0,
                          INT64_C(1) << 40, &in->prefetch_bytes)) < 0) {
            return rc;
        }
        if (in->prefetch_bytes > 0 && in->prefetch_bytes < (4 << 20)) {
            return fail(l,
                        "'intake.prefetch_bytes' must be 0 (unbounded) or at "
                        "least 4MiB");
        }
        if ((rc = opt_nonempty(l, o, "intake", "on_rewind", &s)) < 0) {
            return rc;
        }
        if (s != NULL) {
            if (strcasecmp(s, "pause") == 0) {
                in->on_rewind = CONFIG_ON_REWIND_PAUSE;
            } else if (strcasecmp(s, "new_epoch") == 0) {
                in->on_rewind = CONFIG_ON_REWIND_EPOCH;
            } else {
                rc = fail(l,
                          "'intake.on_rewind' must be pause or new_epoch, "
                          "not '%s'",
                          clean(s, shown, sizeof(shown)));
            }
            free(s);
            s = NULL;
            if (rc < 0) {
                return rc;
            }
        }
        arr = cJSON_GetObjectItemCaseSensitive(o, "topics");
        if (arr != NULL && !cJSON_IsNull(arr)) {
            char p[PATHLEN];
            size_t i = 0;

            if (!cJSON_IsArray(arr)) {
                return fail(l, "'intake.topics' must be an array of strings");
            }
            for (const cJSON *e = arr->child; e != NULL; e = e->next, i++) {
                join_index(p, sizeof(p), "intake.topics", i);
                if (!cJSON_IsString(e)) {
                    return fail(l, "'%s' must be a string", p);
                }
                if (i >= MAX_KEYS) {
                    return fail(l, "'intake.topics' has more than %d entries",
                                MAX_KEYS);
                }
                rc = subst_env(l, p, e->valuestring, &s);
                if (rc < 0) {
                    return rc;
                }
                if (s[0] == '^') {
                    regex_t re;

                    rc = regcomp(&re, s, REG_EXTENDED | REG_NOSUB);
                    if (rc != 0) {
                        free(s);
                        return fail(l, "'%s' is not a valid regular expression",
                                    p);
                    }
                    regfree(&re);
                } else if ((rc = check_topic(l, p, s)) < 0) {
                    free(s);
                    return rc;
                }
                rc = 0;
                if (!strv_has(in->topics, in->ntopics, s)) {
                    rc = strv_push(&in->topics, &in->ntopics, s);
                }
                free(s);
                s = NULL;
                if (rc < 0) {
                    return oom(l);
                }
            }
        }
    }

    if ((rc = opt_object(l, root, "", "admin", &o)) < 0) {
        return rc;
    }
    if (o != NULL) {
        if ((rc = check_keys(l, o, "admin", admin_keys)) < 0 ||
            (rc = opt_string(l, o, "admin", "listen", &c->admin.listen)) < 0 ||
            (rc = opt_nonempty(l, o, "admin", "token", &c->admin.token)) < 0 ||
            (rc = opt_bool(l, o, "admin", "token_on_get",
                           &c->admin.token_on_get)) < 0 ||
            (rc = opt_nonempty(l, o, "admin", "tls_cert", &c->admin.tls_cert)) <
                0 ||
            (rc = opt_nonempty(l, o, "admin", "tls_key", &c->admin.tls_key)) <
                0 ||
            (rc = opt_num(l, o, "admin", "max_connections", NUM_INT, 1, 100000,
                          &c->admin.max_connections)) < 0 ||
            (rc = opt_num(l, o, "admin", "max_requests_per_s", NUM_INT, 1,
                          1000000, &c->admin.max_requests_per_s)) < 0) {
            return rc;
        }
        if (c->admin.listen == NULL || c->admin.listen[0] == '\0' ||
            strcasecmp(c->admin.listen, "off") == 0) {
            free(c->admin.listen);
            c->admin.listen = NULL;
        }
    }
    if ((rc = opt_object(l, root, "", "log", &o)) < 0) {
        return rc;
    }
    if (o != NULL) {
        char *lv = NULL;
        enum log_level level;

        if ((rc = check_keys(l, o, "log", log_keys)) < 0 ||
            (rc = opt_nonempty(l, o, "log", "level", &lv)) < 0) {
            return rc;
        }
        if (lv != NULL) {
            if (log_level_parse(lv, &level) < 0) {
                rc = fail(l,
                          "'log.level' must be error, warn, info or debug, "
                          "not '%s'",
                          clean(lv, shown, sizeof(shown)));
                free(lv);
                return rc;
            }
            c->log_level = (int)level;
            free(lv);
        }
    }
    return 0;
}

/* ---- connector reader ------------------------------------------------- */

struct conn {
    char *name;
    char *cls;
    char *topics;
    char *topics_regex;
    char *ingest_url;
    char *query_url;
    char *strategy;
    char *appid;
    char *appkey;
    char *authority;
    char *accesstoken;
    char *mapping;
    char *flush_size;
    char *flush_interval;
    char *retry_max_time;
    char *retry_backoff;
    char *on_error;
    char *proxy_host;
    char *proxy_port;
    /* converters: [0] value, [1] key */
    char *conv[2];
    char *conv_url[2];
    char *conv_source[2];
    char *conv_user[2];
};

static const struct {
    const char *key;
    size_t off;
} conn_keys[] = {
    {"name", offsetof(struct conn, name)},
    {"connector.class", offsetof(struct conn, cls)},
    {"topics", offsetof(struct conn, topics)},
    {"topics.regex", offsetof(struct conn, topics_regex)},
    {"kusto.ingestion.url", offsetof(struct conn, ingest_url)},
    {"kusto.url", offsetof(struct conn, ingest_url)},
    {"kusto.query.url", offsetof(struct conn, query_url)},
    {"aad.auth.strategy", offsetof(struct conn, strategy)},
    {"aad.auth.appid", offsetof(struct conn, appid)},
    {"aad.auth.appkey", offsetof(struct conn, appkey)},
    {"aad.auth.authority", offsetof(struct conn, authority)},
    {"aad.auth.accesstoken", offsetof(struct conn, accesstoken)},
    {"kusto.tables.topics.mapping", offsetof(struct conn, mapping)},
    {"flush.size.bytes", offsetof(struct conn, flush_size)},
    {"proxy.host", offsetof(struct conn, proxy_host)},
    {"proxy.port", offsetof(struct conn, proxy_port)},
    {"flush.interval.ms", offsetof(struct conn, flush_interval)},
    {"errors.retry.max.time.ms", offsetof(struct conn, retry_max_time)},
    {"errors.retry.backoff.time.ms", offsetof(struct conn, retry_backoff)},
    {"behavior.on.error", offsetof(struct conn, on_error)},
    {"value.converter", offsetof(struct conn, conv[0])},
    {"key.converter", offsetof(struct conn, conv[1])},
    {"value.converter.schema.registry.url", offsetof(struct conn, conv_url[0])},
    {"key.converter.schema.registry.url", offsetof(struct conn, conv_url[1])},
    {"value.converter.basic.auth.credentials.source",
     offsetof(struct conn, conv_source[0])},
    {"key.converter.basic.auth.credentials.source",
     offsetof(struct conn, conv_source[1])},
    {"value.converter.basic.auth.user.info",
     offsetof(struct conn, conv_user[0])},
    {"key.converter.basic.auth.user.info", offsetof(struct conn, conv_user[1])},
};

/* Kafka Connect framework keys that configure Connect itself. */
static const char *const conn_info_exact[] = {"tasks.max",
                                              "key.converter",
                                              "value.converter",
                                              "header.converter",
                                              "config.action.reload",
                                              "errors.log.enable",
                                              "errors.log.include.messages",
                                              NULL};
static const char *const conn_info_prefix[] = {
    "key.converter.", "value.converter.", "header.converter.", NULL};
/* Keys whose behaviour kadx does not reproduce. */
static const char *const conn_warn_exact[] = {
    "tempdir.path",     "kusto.validation.table.enable",
    "errors.tolerance", "transforms",
    "predicates",       NULL};
static const char *const conn_warn_prefix[] = {
    "misc.deadletterqueue.", "errors.deadletterqueue.", "transforms.",
    "predicates.", NULL};

static int in_list(const char *k, const char *const *exact,
                   const char *const *prefix)
{
    for (size_t i = 0; exact != NULL && exact[i] != NULL; i++) {
        if (strcmp(k, exact[i]) == 0) {
            return 1;
        }
    }
    for (size_t i = 0; prefix != NULL && prefix[i] != NULL; i++) {
        if (strncmp(k, prefix[i], strlen(prefix[i])) == 0) {
            return 1;
        }
    }
    return 0;
}

static void conn_free(struct conn *cn)
{
    for (size_t i = 0; i < sizeof(conn_keys) / sizeof(conn_keys[0]); i++) {
        char **f = (char **)((char *)cn + conn_keys[i].off);

        free(*f);
        *f = NULL;
    }
}

/* A connector value as a string (Connect configs are string maps, but
 * numbers and booleans are common in hand-written files). 0 = null. */
static int conn_string(struct loader *l, const cJSON *c, const char *path,
                       char **out)
{
    char num[64];

    if (cJSON_IsNull(c)) {
        return 0;
    }
    if (cJSON_IsString(c)) {
        int rc = subst_env(l, path, c->valuestring, out);

        return rc < 0 ? rc : 1;
    }
    if (cJSON_IsNumber(c)) {
        int64_t i;

        if (json_int(c, &i) == 0) {
            snprintf(num, sizeof(num), "%lld", (long long)i);
        } else {
            snprintf(num, sizeof(num), "%.17g", c->valuedouble);
        }
        *out = strdup(num);
    } else if (cJSON_IsBool(c)) {
        *out = strdup(cJSON_IsTrue(c) ? "true" : "false");
    } else {
        return fail(l, "'%s' must be a string", path);
    }
    return *out == NULL ? oom(l) : 1;
}

/*
 * Turns the connector's single-quoted JSON into JSON: 'x' becomes "x"
 * (with " inside escaped, \' unescaped); double-quoted strings are kept.
 */
static int unsinglequote(const char *in, char **out)
{
    struct sbuf b = {0};
    int rc = sbuf_add(&b, "", 0);
    char q = 0;

    for (const char *p = in; *p != '\0' && rc == 0; p++) {
        if (q == 0) {
            if (*p == '\'' || *p == '"') {
                q = *p;
                rc = sbuf_add(&b, "\"", 1);
            } else {
                rc = sbuf_add(&b, p, 1);
            }
        } else if (*p == '\\' && p[1] != '\0') {
            if (q == '\'' && p[1] == '\'') {
                rc = sbuf_add(&b, "'", 1);
            } else {
                rc = sbuf_add(&b, p, 2);
            }
            p++;
        } else if (*p == q) {
            q = 0;
            rc = sbuf_add(&b, "\"", 1);
        } else if (*p == '"') {
            rc = sbuf_add(&b, "\\\"", 2);
        } else {
            rc = sbuf_add(&b, p, 1);
        }
    }
    if (rc < 0) {
        free(b.s);
        return rc;
    }
    *out = b.s;
    return 0;
}

static int conn_bool(const char *s, int *v)
{
    if (strcasecmp(s, "true") == 0) {
        *v = 1;
    } else if (strcasecmp(s, "false") == 0) {
        *v = 0;
    } else {
        return -EINVAL;
    }
    return 0;
}

static const char *const mapping_keys[] = {"topic",
                                           "db",
                                           "table",
                                           "format",
                                           "mapping",
                                           "streaming",
                                           "eventDataCompression",
                                           NULL};

static int load_conn_mapping(struct loader *l, const char *text)
{
    const char *mk = "kusto.tables.topics.mapping";
    struct config *c = l->cfg;
    char *json = NULL;
    cJSON *arr = NULL;
    char p[PATHLEN];
    char fp[PATHLEN];
    int n;
    int rc = 0;

    if (unsinglequote(text, &json) < 0) {
        return oom(l);
    }
    arr = cJSON_Parse(json);
    free(json);
    if (arr == NULL) {
        return fail(l, "'%s' is not valid JSON", mk);
    }
    if (!cJSON_IsArray(arr) || (n = cJSON_GetArraySize(arr)) == 0) {
        rc = fail(l, "'%s' must be a non-empty JSON array", mk);
        goto out_arr;
    }
    if (n > MAX_KEYS) {
        rc = fail(l, "'%s' has more than %d entries", mk, MAX_KEYS);
        goto out_arr;
    }
    c->routes = calloc((size_t)n, sizeof(*c->routes));
    if (c->routes == NULL) {
        rc = oom(l);
        goto out_arr;
    }
    for (const cJSON *e = arr->child; e != NULL; e = e->next) {
        struct config_route *r = &c->routes[c->nroutes];
        char *streaming = NULL;
        const cJSON *it;
        int on;

        join_index(p, sizeof(p), mk, c->nroutes);
        c->nroutes++;
        if (!cJSON_IsObject(e)) {
            rc = fail(l, "'%s' must be an object", p);
            goto out_arr;
        }
        if ((rc = check_keys(l, e, p, mapping_keys)) < 0) {
            goto out_arr;
        }
        for (it = e->child; it != NULL; it = it->next) {
            char **dst = NULL;
            char *v = NULL;

            join(fp, sizeof(fp), p, it->string);
            if (strcmp(it->string, "topic") == 0) {
                dst = &r->topic;
            } else if (strcmp(it->string, "db") == 0) {
                dst = &r->database;
            } else if (strcmp(it->string, "table") == 0) {
                dst = &r->table;
            } else if (strcmp(it->string, "format") == 0) {
                dst = &r->format;
            } else if (strcmp(it->string, "mapping") == 0) {
                dst = &r->mapping;
            } else if (strcmp(it->string, "streaming") == 0) {
                dst = &streaming;
            } else {
                note(l, &l->warn, fp);
                continue;
            }
            rc = conn_string(l, it, fp, &v);
            if (rc < 0) {
                free(streaming);
                goto out_arr;
            }
            free(*dst);
            *dst = v;
        }
        rc = 0;
        if (streaming != NULL) {
            if (conn_bool(streaming, &on) < 0) {
                rc = fail(l, "'%s.streaming' must be true or false", p);
            } else if (!on) {
                note(l, &l->warn, p);
                note_more(l, &l->warn,
                          ".streaming=false (kadx always streams)");
            }
            free(streaming);
            if (rc < 0) {
                goto out_arr;
            }
        }
        if (r->topic == NULL || r->topic[0] == '\0') {
            rc = fail(l, "missing required key '%s.topic'", p);
            goto out_arr;
        }
        if (r->database == NULL || r->database[0] == '\0') {
            rc = fail(l, "missing required key '%s.db'", p);
            goto out_arr;
        }
        if (r->table == NULL || r->table[0] == '\0') {
            rc = fail(l, "missing required key '%s.table'", p);
            goto out_arr;
        }
        /* blank format: the Java SDK's default, csv */
        if ((r->format == NULL || r->format[0] == '\0') &&
            replace(&r->format, "csv") < 0) {
            rc = oom(l);
            goto out_arr;
        }
        if (r->mapping != NULL && r->mapping[0] == '\0') {
            free(r->mapping);
            r->mapping = NULL;
        }
    }
out_arr:
    cJSON_Delete(arr);
    return rc;
}

/* https://ingest-x.region.kusto.windows.net -> https://x.region... */
static int engine_from_dm(const char *dm, char **out)
{
    const char *host = strstr(dm, "://");
    size_t pre;

    host = host != NULL ? host + 3 : dm;
    pre = (size_t)(host - dm);
    if (strncasecmp(host, "ingest-", 7) != 0) {
        *out = strdup(dm);
    } else {
        *out = malloc(strlen(dm) - 7 + 1);
        if (*out != NULL) {
            memcpy(*out, dm, pre);
            memcpy(*out + pre, host + 7, strlen(host + 7) + 1);
        }
    }
    return *out == NULL ? -ENOMEM : 0;
}

static int conn_int(struct loader *l, const char *key, const char *s,
                    int64_t min, int64_t max, int64_t *v)
{
    if (parse_i64(s, v) < 0) {
        return fail(l, "'%s' must be an integer", key);
    }
    return range(l, key, *v, min, max);
}

static int load_conn_values(struct loader *l, struct conn *cn)
{
    struct config *c = l->cfg;
    struct config_auth *a = &c->adx.auth;
    char shown[64];
    int64_t v;
    int rc;

    if (cn->cls != NULL) {
        size_t n = strlen(cn->cls);
        const char *want = "KustoSinkConnector";

        if (n < strlen(want) || strcmp(cn->cls + n - strlen(want), want)) {
            return fail(l,
                        "'connector.class' is '%s': kadx reads the Kusto sink "
                        "connector's config only",
                        clean(cn->cls, shown, sizeof(shown)));
        }
    }
    if (cn->ingest_url == NULL || cn->ingest_url[0] == '\0') {
        return fail(l, "missing required key 'kusto.ingestion.url'");
    }
    if ((rc = check_url(l, "kusto.ingestion.url", cn->ingest_url, NULL)) < 0) {
        return rc;
    }
    if (cn->query_url != NULL && cn->query_url[0] != '\0') {
        if (replace(&c->adx.ingest_url, cn->query_url) < 0) {
            return oom(l);
        }
    } else if (engine_from_dm(cn->ingest_url, &c->adx.ingest_url) < 0) {
        return oom(l);
    }

    /* proxy.host and proxy.port: the connector's HTTP proxy */
    if (cn->proxy_host != NULL && cn->proxy_host[0] != '\0') {
        char url[512];
        char *end = NULL;
        long port = 0;

        if (cn->proxy_port != NULL) {
            errno = 0;
            port = strtol(cn->proxy_port, &end, 10);
        }
        if (cn->proxy_port == NULL || end == cn->proxy_port || *end != '\0' ||
            errno != 0 || port < 1 || port > 65535) {
            return fail(l, "'proxy.port' must be a port number (1-65535) "
                           "when 'proxy.host' is set");
        }
        snprintf(url, sizeof(url), "%s%s:%ld",
                 strstr(cn->proxy_host, "://") != NULL ? "" : "http://",
                 cn->proxy_host, port);
        if (replace(&c->adx.proxy, url) < 0) {
            return oom(l);
        }
    }

    /* aad.auth.* */
    if (cn->strategy == NULL || strcasecmp(cn->strategy, "application") == 0) {
        a->method = CONFIG_AUTH_CLIENT_SECRET;
    } else if (strcasecmp(cn->strategy, "managed_identity") == 0) {
        a->method = CONFIG_AUTH_MANAGED_IDENTITY;
    } else if (strcasecmp(cn->strategy, "workload_identity") == 0) {
        a->method = CONFIG_AUTH_WORKLOAD_IDENTITY;
    } else if (strcasecmp(cn->strategy, "az_dev_token") == 0) {
        a->method = CONFIG_AUTH_STATIC_TOKEN;
    } else {
        return fail(l,
                    "'aad.auth.strategy' must be application, "
                    "managed_identity, workload_identity or az_dev_token, "
                    "not '%s'",
                    clean(cn->strategy, shown, sizeof(shown)));
    }
    if (replace(&a->client_id, cn->appid) < 0 ||
        replace(&a->tenant_id, cn->authority) < 0 ||
        replace(&a->client_secret, cn->appkey) < 0 ||
        replace(&a->token, cn->accesstoken) < 0) {
        return oom(l);
    }
    /* the keys of other strategies are ignored by the connector too */
    if (a->method != CONFIG_AUTH_CLIENT_SECRET) {
        if (cn->appkey != NULL) {
            note(l, &l->info, "aad.auth.appkey");
        }
        free(a->client_secret);
        a->client_secret = NULL;
    }
    if (a->method != CONFIG_AUTH_STATIC_TOKEN) {
        if (cn->accesstoken != NULL) {
            note(l, &l->info, "aad.auth.accesstoken");
        }
        free(a->token);
        a->token = NULL;
    }
    if (a->method == CONFIG_AUTH_STATIC_TOKEN ||
        a->method == CONFIG_AUTH_MANAGED_IDENTITY) {
        if (a->method == CONFIG_AUTH_STATIC_TOKEN && a->client_id != NULL) {
            free(a->client_id);
            a->client_id = NULL;
        }
        free(a->tenant_id);
        a->tenant_id = NULL;
    }

    if (cn->mapping == NULL || cn->mapping[0] == '\0') {
        return fail(l, "missing required key 'kusto.tables.topics.mapping'");
    }
    if ((rc = load_conn_mapping(l, cn->mapping)) < 0) {
        return rc;
    }

    if (cn->flush_size != NULL) {
        if ((rc = conn_int(l, "flush.size.bytes", cn->flush_size, 100,
                           INT64_MAX, &v)) < 0) {
            return rc;
        }
        if (v > CONFIG_ADX_MAX_BATCH_BYTES) {
            return fail(l,
                        "'flush.size.bytes' (%lld) must be at most %d: ADX "
                        "streaming ingestion takes at most 4 MiB per request",
                        (long long)v, CONFIG_ADX_MAX_BATCH_BYTES);
        }
        c->forwarder.batch_max_bytes = v;
    }
    if (cn->flush_interval != NULL) {
        if ((rc = conn_int(l, "flush.interval.ms", cn->flush_interval, 100,
                           3600 * 1000, &v)) < 0) {
            return rc;
        }
        c->forwarder.linger_ms = v;
    }
    if (cn->retry_backoff != NULL) {
        if ((rc = conn_int(l, "errors.retry.backoff.time.ms", cn->retry_backoff,
                           1, 3600 * 1000, &v)) < 0) {
            return rc;
        }
        c->forwarder.retry_initial_ms = v;
        if (c->forwarder.retry_max_ms < v) {
            c->forwarder.retry_max_ms = v;
        }
    }
    if (cn->retry_max_time != NULL) {
        if ((rc = conn_int(l, "errors.retry.max.time.ms", cn->retry_max_time, 0,
                           INT64_MAX, &v)) < 0) {
            return rc;
        }
        c->forwarder.retry_max_time_ms = v;
    }
    if (cn->on_error != NULL) {
        if (strcasecmp(cn->on_error, "fail") == 0) {
            c->forwarder.on_error = CONFIG_ON_ERROR_PAUSE;
        } else if (strcasecmp(cn->on_error, "log") == 0 ||
                   strcasecmp(cn->on_error, "ignore") == 0) {
            c->forwarder.on_error = CONFIG_ON_ERROR_DEADLETTER;
        } else {
            return fail(l,
                        "'behavior.on.error' must be fail, log or ignore, not "
                        "'%s'",
                        clean(cn->on_error, shown, sizeof(shown)));
        }
    } else {
        c->forwarder.on_error = CONFIG_ON_ERROR_PAUSE; /* connector: FAIL */
    }

    /* the subscription: `topics` (comma list) and `topics.regex` */
    if ((cn->topics == NULL || cn->topics[0] == '\0') &&
        (cn->topics_regex == NULL || cn->topics_regex[0] == '\0')) {
        return fail(l, "missing required key 'topics'");
    }
    if (cn->topics != NULL) {
        char *t = cn->topics;

        while (t != NULL) {
            char *comma = strchr(t, ',');
            char *end;

            if (comma != NULL) {
                *comma = '\0';
            }
            end = t + strlen(t);
            while (isspace((unsigned char)*t)) {
                t++;
            }
            while (end > t && isspace((unsigned char)end[-1])) {
                *--end = '\0';
            }
            if (*t != '\0') {
                if ((rc = check_topic(l, "topics", t)) < 0) {
                    return rc;
                }
                if (!strv_has(c->intake.topics, c->intake.ntopics, t) &&
                    strv_push(&c->intake.topics, &c->intake.ntopics, t) < 0) {
                    return oom(l);
                }
            }
            t = comma != NULL ? comma + 1 : NULL;
        }
    }
    if (cn->topics_regex != NULL && cn->topics_regex[0] != '\0') {
        struct sbuf b = {0};
        regex_t re;

        /* Connect matches the whole name; librdkafka wants a leading ^ */
        if ((cn->topics_regex[0] != '^' && sbuf_adds(&b, "^") < 0) ||
            sbuf_adds(&b, cn->topics_regex) < 0) {
            free(b.s);
            return oom(l);
        }
        if (regcomp(&re, b.s, REG_EXTENDED | REG_NOSUB) != 0) {
            free(b.s);
            return fail(l, "'topics.regex' is not a valid regular expression");
        }
        regfree(&re);
        rc = strv_push(&c->intake.topics, &c->intake.ntopics, b.s);
        free(b.s);
        if (rc < 0) {
            return oom(l);
        }
    }
    return 0;
}

/* The registry kind of a Connect converter class: "avro", "json_schema",
 * "" for one kadx cannot honour, NULL for a pass-through one (the bytes as
 * they are: String, ByteArray, Json without schemas). */
static const char *conn_converter_kind(const char *cls)
{
    static const struct {
        const char *cls;
        const char *kind;
    } known[] = {
        {"io.confluent.connect.avro.AvroConverter", "avro"},
        {"io.confluent.connect.json.JsonSchemaConverter", "json_schema"},
        {"org.apache.kafka.connect.storage.StringConverter", NULL},
        {"org.apache.kafka.connect.converters.ByteArrayConverter", NULL},
        {"org.apache.kafka.connect.json.JsonConverter", NULL},
    };

    if (cls == NULL) {
        return NULL;
    }
    for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++) {
        if (strcmp(cls, known[i].cls) == 0) {
            return known[i].kind;
        }
    }
    return "";
}

/* value.converter / key.converter with their registry settings, applied to
 * every route (a connector has one converter for all its topics) */
static int load_conn_converters(struct loader *l, struct conn *cn)
{
    static const char *const side[2] = {"value", "key"};
    char shown[96];

    for (int i = 0; i < 2; i++) {
        const char *kind = conn_converter_kind(cn->conv[i]);
        struct config_registry *g = &l->cfg->registry;

        if (kind != NULL && kind[0] == '\0') {
            return fail(
                l,
                "'%s.converter' is '%s': kadx reads Avro "
                "(io.confluent.connect.avro.AvroConverter), JSON "
                "Schema (io.confluent.connect.json.JsonSchemaConverter) "
                "or plain (String, ByteArray, Json) values only",
                side[i], clean(cn->conv[i], shown, sizeof(shown)));
        }
        if (kind == NULL) {
            continue;
        }
        if (cn->conv_url[i] == NULL) {
            return fail(
                l, "'%s.converter' needs '%s.converter.schema.registry.url'",
                side[i], side[i]);
        }
        if (strchr(cn->conv_url[i], ',') != NULL) {
            return fail(l,
                        "'%s.converter.schema.registry.url': kadx takes one "
                        "registry URL",
                        side[i]);
        }
        if (cn->conv_source[i] != NULL &&
            strcmp(cn->conv_source[i], "USER_INFO") != 0) {
            return fail(l,
                        "'%s.converter.basic.auth.credentials.source' is '%s': "
                        "kadx takes USER_INFO only",
                        side[i],
                        clean(cn->conv_source[i], shown, sizeof(shown)));
        }
        if (g->url != NULL && strcmp(g->url, cn->conv_url[i]) != 0) {
            return fail(l, "'key.converter.schema.registry.url' and "
                           "'value.converter.schema.registry.url' differ: kadx "
                           "takes one registry");
        }
        if (replace(&g->url, cn->conv_url[i]) < 0 ||
            (cn->conv_user[i] != NULL &&
             replace(&g->basic_auth, cn->conv_user[i]) < 0)) {
            return oom(l);
        }
        for (size_t r = 0; r < l->cfg->nroutes; r++) {
            char **dst = i == 0 ? &l->cfg->routes[r].value_converter
                                : &l->cfg->routes[r].key_converter;

            if (replace(dst, kind) < 0) {
                return oom(l);
            }
        }
    }
    return 0;
}

static int load_connector(struct loader *l, const cJSON *map, const char *name)
{
    struct conn cn = {0};
    char path[PATHLEN];
    int n = 0;
    int rc = 0;

    for (const cJSON *c = map->child; c != NULL; c = c->next) {
        const char *k = c->string;
        char *v = NULL;
        size_t i;

        join(path, sizeof(path), "", k);
        if (++n > MAX_KEYS) {
            rc =
                fail(l, "the connector config has more than %d keys", MAX_KEYS);
            goto out;
        }
        for (const cJSON *d = map->child; d != c; d = d->next) {
            if (strcmp(d->string, k) == 0) {
                rc = fail(l, "duplicate key '%s'", path);
                goto out;
            }
        }
        for (i = 0; i < sizeof(conn_keys) / sizeof(conn_keys[0]); i++) {
            if (strcmp(k, conn_keys[i].key) == 0) {
                break;
            }
        }
        if (i < sizeof(conn_keys) / sizeof(conn_keys[0])) {
            char **f = (char **)((char *)&cn + conn_keys[i].off);

            rc = conn_string(l, c, path, &v);
            if (rc < 0) {
                goto out;
            }
            if (rc == 1) {
                free(*f);
                *f = v;
            }
            if (strcmp(k, "aad.auth.appkey") == 0 ||
                strcmp(k, "aad.auth.accesstoken") == 0 ||
                strstr(k, ".basic.auth.user.info") != NULL) {
                if (v != NULL) {
                    log_add_secret(v);
                }
            }
            if (strcmp(k, "name") == 0 || strcmp(k, "connector.class") == 0 ||
                ((strcmp(k, "value.converter") == 0 ||
                  strcmp(k, "key.converter") == 0) &&
                 conn_converter_kind(v) == NULL)) {
                note(l, &l->info, k);
            }
        } else if (strncmp(k, "consumer.override.", 18) == 0) {
            rc = conn_string(l, c, path, &v);
            if (rc < 0) {
                goto out;
            }
            if (rc == 1) {
                rc = kafka_set(&l->cfg->kafka, k + 18, v);
                free(v);
                if (rc < 0) {
                    rc = oom(l);
                    goto out;
                }
            }
        } else if (in_list(k, conn_info_exact, conn_info_prefix)) {
            note(l, &l->info, path);
        } else if (in_list(k, conn_warn_exact, conn_warn_prefix)) {
            note(l, &l->warn, path);
        } else {
            rc = fail(l, "unknown key '%s'", path);
            goto out;
        }
    }
    rc = 0;
    if (name != NULL && cn.name == NULL) {
        cn.name = strdup(name);
        if (cn.name == NULL) {
            rc = oom(l);
            goto out;
        }
    }
    if (cn.name != NULL && cn.name[0] != '\0' &&
        replace(&l->cfg->connector_name, cn.name) < 0) {
        rc = oom(l);
        goto out;
    }
    /* Connect's own group for a sink connector, the last fallback */
    if (cn.name != NULL && config_kafka_get(l->cfg, "group.id") == NULL &&
        (l->ov == NULL || l->ov->group_id == NULL) &&
        (getenv("KADX_GROUP_ID") == NULL ||
         getenv("KADX_GROUP_ID")[0] == '\0')) {
        struct sbuf b = {0};

        if (sbuf_adds(&b, "connect-") < 0 || sbuf_adds(&b, cn.name) < 0 ||
            kafka_set(&l->cfg->kafka, "group.id", b.s) < 0) {
            free(b.s);
            rc = oom(l);
            goto out;
        }
        free(b.s);
    }
    rc = load_conn_values(l, &cn);
    if (rc == 0) {
        rc = load_conn_converters(l, &cn);
    }
out:
    conn_free(&cn);
    return rc;
}

/* ---- common checks ---------------------------------------------------- */

static int check_auth(struct loader *l)
{
    struct config_auth *a = &l->cfg->adx.auth;
    const char *m = config_auth_method_name(a->method);
    int conn = l->cfg->from_connector;
    int rc;

    /* fields that the method does not use are an error, not silently
     * ignored: a client_secret next to managed_identity is a mistake */
    struct {
        const char *key;
        char *val;
        unsigned used_by; /* bit per method */
    } f[] = {
        {"tenant_id", a->tenant_id,
         1u << CONFIG_AUTH_CLIENT_SECRET | 1u << CONFIG_AUTH_WORKLOAD_IDENTITY},
        {"client_id", a->client_id,
         1u << CONFIG_AUTH_CLIENT_SECRET | 1u << CONFIG_AUTH_WORKLOAD_IDENTITY |
             1u << CONFIG_AUTH_MANAGED_IDENTITY},
        {"client_secret", a->client_secret, 1u << CONFIG_AUTH_CLIENT_SECRET},
        {"token", a->token, 1u << CONFIG_AUTH_STATIC_TOKEN},
        {"token_file", a->token_file, 1u << CONFIG_AUTH_WORKLOAD_IDENTITY},
        {"imds_url", a->imds_url, 1u << CONFIG_AUTH_MANAGED_IDENTITY},
    };

    for (size_t i = 0; i < sizeof(f) / sizeof(f[0]); i++) {
        if (f[i].val != NULL && !(f[i].used_by & (1u << a->method))) {
            return fail(l, "'adx.auth.%s' is not used by auth method '%s'",
                        f[i].key, m);
        }
    }
    if (a->client_secret != NULL) {
        log_add_secret(a->client_secret);
    }
    if (a->token != NULL) {
        log_add_secret(a->token);
    }
    switch (a->method) {
    case CONFIG_AUTH_NONE:
        break;
    case CONFIG_AUTH_STATIC_TOKEN:
        if (a->token == NULL) {
            return fail(l, "missing required key '%s' (%s)",
                        conn ? "aad.auth.accesstoken" : "adx.auth.token",
                        conn ? "aad.auth.strategy az_dev_token"
                             : "auth method static_token");
        }
        break;
    case CONFIG_AUTH_CLIENT_SECRET:
    case CONFIG_AUTH_WORKLOAD_IDENTITY:
        if (a->tenant_id == NULL) {
            return fail(l, "missing required key '%s' (auth method %s)",
                        conn ? "aad.auth.authority" : "adx.auth.tenant_id", m);
        }
        if (a->client_id == NULL) {
            return fail(l, "missing required key '%s' (auth method %s)",
                        conn ? "aad.auth.appid" : "adx.auth.client_id", m);
        }
        if (a->method == CONFIG_AUTH_CLIENT_SECRET &&
            a->client_secret == NULL) {
            return fail(l, "missing required key '%s' (auth method %s)",
                        conn ? "aad.auth.appkey" : "adx.auth.client_secret", m);
        }
        if (a->method == CONFIG_AUTH_WORKLOAD_IDENTITY &&
            a->token_file == NULL) {
            const char *env = getenv("AZURE_FEDERATED_TOKEN_FILE");

            if (replace(&a->token_file, env != NULL && env[0] != '\0'
                                            ? env
                                            : DEFAULT_TOKEN_FILE) < 0) {
                return oom(l);
            }
        }
        break;
    case CONFIG_AUTH_MANAGED_IDENTITY:
        if (a->imds_url == NULL && replace(&a->imds_url, DEFAULT_IMDS) < 0) {
            return oom(l);
        }
        if ((rc = check_url(l, "adx.auth.imds_url", a->imds_url,
                            "169.254.169.254")) < 0) {
            return rc;
        }
        break;
    }
    if (a->tenant_id != NULL &&
        (rc = check_id(l, conn ? "aad.auth.authority" : "adx.auth.tenant_id",
                       a->tenant_id)) < 0) {
        return rc;
    }
    if (a->client_id != NULL &&
        (rc = check_id(l, conn ? "aad.auth.appid" : "adx.auth.client_id",
                       a->client_id)) < 0) {
        return rc;
    }
    return check_url(l, "adx.auth.authority_host", a->authority_host, NULL);
}

/* value_converter / key_converter and the registry they need */
static int check_route_registry(struct loader *l, struct config_route *r,
                                const char *p)
{
    struct config_registry *g = &r->registry, *top = &l->cfg->registry;
    char *conv[2] = {r->value_converter, r->key_converter};
    const char *names[2] = {"value_converter", "key_converter"};
    char fp[PATHLEN], shown[64];
    int rc;

    for (int i = 0; i < 2; i++) {
        if (conv[i] != NULL && strcmp(conv[i], "avro") != 0 &&
            strcmp(conv[i], "json_schema") != 0) {
            join(fp, sizeof(fp), p, names[i]);
            return fail(l, "'%s' must be avro or json_schema, not '%s'", fp,
                        clean(conv[i], shown, sizeof(shown)));
        }
    }
    if (strcmp(r->format, "avro") == 0 &&
        (r->value_converter == NULL ||
         strcmp(r->value_converter, "avro") != 0)) {
        join(fp, sizeof(fp), p, "format");
        return fail(l,
                    "'%s' avro needs '%s.value_converter' avro (the records' "
                    "writer schemas come from the registry)",
                    fp, p);
    }
    if (strcmp(r->format, "avro") == 0 && r->meta.headers != NULL) {
        return fail(l,
                    "'%s.meta.headers' is not available with format avro "
                    "(topic, partition, offset, timestamp, key and batch_id "
                    "are)",
                    p);
    }
    if (r->value_converter != NULL && strcmp(r->format, "csv") == 0) {
        join(fp, sizeof(fp), p, "value_converter");
        return fail(l, "'%s' needs format json, multijson or avro", fp);
    }
    if (r->value_converter == NULL && r->key_converter == NULL) {
        return 0;
    }
    if (g->url == NULL && top->url != NULL) {
        if (replace(&g->url, top->url) < 0 ||
            replace(&g->basic_auth, top->basic_auth) < 0 ||
            replace(&g->ca_file, top->ca_file) < 0) {
            return oom(l);
        }
        g->timeout_ms = top->timeout_ms;
    }
    if (g->url == NULL) {
        return fail(l,
                    "'%s' uses a schema registry converter but no "
                    "'schema_registry.url' is set",
                    p);
    }
    if (g->timeout_ms == 0) {
        g->timeout_ms = 10000;
    }
    join(fp, sizeof(fp), p, "schema_registry.url");
    if ((rc = check_url(l, fp, g->url, NULL)) < 0) {
        return rc;
    }
    if (g->basic_auth != NULL) {
        if (strchr(g->basic_auth, ':') == NULL) {
            join(fp, sizeof(fp), p, "schema_registry.basic_auth");
            return fail(l, "'%s' must be 'user:secret'", fp);
        }
        log_add_secret(g->basic_auth);
        log_add_secret(strchr(g->basic_auth, ':') + 1);
    }
    return 0;
}

static int check_route(struct loader *l, size_t i)
{
    struct config_route *r = &l->cfg->routes[i];
    const char *base =
        l->cfg->from_connector ? "kusto.tables.topics.mapping" : "routes";
    const char *dbkey = l->cfg->from_connector ? "db" : "database";
    struct {
        const char *name;
        const char *val;
    } meta[] = {
        {"topic", r->meta.topic},       {"partition", r->meta.partition},
        {"offset", r->meta.offset},     {"timestamp", r->meta.timestamp},
        {"key", r->meta.key},           {"headers", r->meta.headers},
        {"batch_id", r->meta.batch_id},
    };
    char p[PATHLEN];
    char fp[PATHLEN];
    char mp[PATHLEN];
    char shown[64];
    int has_meta = 0;
    int rc;

    join_index(p, sizeof(p), base, i);
    if (r->topic != NULL && strcmp(r->topic, "*") != 0) {
        join(fp, sizeof(fp), p, "topic");
        if ((rc = check_topic(l, fp, r->topic)) < 0) {
            return rc;
        }
    }
    if (r->topic_regex != NULL) {
        regex_t *re;
        char msg[128];

        join(fp, sizeof(fp), p, "topic_regex");
        if (r->topic_regex[0] != '^') {
            return fail(l,
                        "'%s' must start with '^' (librdkafka's mark of a "
                        "pattern subscription)",
                        fp);
        }
        re = calloc(1, sizeof(*re));
        if (re == NULL) {
            return oom(l);
        }
        rc = regcomp(re, r->topic_regex, REG_EXTENDED | REG_NOSUB);
        if (rc != 0) {
            regerror(rc, re, msg, sizeof(msg));
            free(re);
            return fail(l, "'%s' is not a valid regular expression: %s", fp,
                        msg);
        }
        r->topic_re = re;
    }
    join(fp, sizeof(fp), p, dbkey);
    if ((rc = check_ident(l, fp, r->database)) < 0) {
        return rc;
    }
    join(fp, sizeof(fp), p, "table");
    if ((rc = check_ident(l, fp, r->table)) < 0) {
        return rc;
    }
    if (r->mapping != NULL) {
        join(fp, sizeof(fp), p, "mapping");
        if ((rc = check_ident(l, fp, r->mapping)) < 0) {
            return rc;
        }
    }
    for (char *s = r->format; *s != '\0'; s++) {
        *s = (char)tolower((unsigned char)*s);
    }
    if (strcmp(r->format, "json") != 0 && strcmp(r->format, "multijson") != 0 &&
        strcmp(r->format, "csv") != 0 && strcmp(r->format, "avro") != 0) {
        join(fp, sizeof(fp), p, "format");
        return fail(l, "'%s' must be json, multijson, csv or avro, not '%s'",
                    fp, clean(r->format, shown, sizeof(shown)));
    }
    if ((rc = check_route_registry(l, r, p)) < 0) {
        return rc;
    }
    for (size_t m = 0; m < sizeof(meta) / sizeof(meta[0]); m++) {
        if (meta[m].val == NULL) {
            continue;
        }
        has_meta = 1;
        join(mp, sizeof(mp), p, "meta");
        join(fp, sizeof(fp), mp, meta[m].name);
        if ((rc = check_column(l, fp, meta[m].val)) < 0) {
            return rc;
        }
        for (size_t k = 0; k < m; k++) {
            if (meta[k].val != NULL && strcmp(meta[k].val, meta[m].val) == 0) {
                return fail(l,
                            "'%s.meta': '%s' and '%s' use the same field "
                            "name '%s'",
                            p, meta[k].name, meta[m].name, meta[m].val);
            }
        }
    }
    if (has_meta && strcmp(r->format, "csv") == 0) {
        return fail(l,
                    "'%s.meta' needs format json, multijson or avro (fields "
                    "cannot be added to csv records)",
                    p);
    }
    if (r->dedupe_column != NULL) {
        join(fp, sizeof(fp), p, "dedupe_column");
        if ((rc = check_column(l, fp, r->dedupe_column)) < 0) {
            return rc;
        }
        if (r->meta.batch_id == NULL) {
            return fail(l,
                        "'%s' needs '%s.meta.batch_id' (the batch id is "
                        "what is deduplicated)",
                        fp, p);
        }
    }
    if (r->name == NULL) {
        const char *n = r->topic != NULL ? r->topic : r->topic_regex;

        if (replace(&r->name, n) < 0) {
            return oom(l);
        }
    }
    if (strlen(r->name) > 256) {
        return fail(l, "'%s.name' is longer than 256 characters", p);
    }
    for (const char *s = r->name; *s != '\0'; s++) {
        if ((unsigned char)*s < 0x20 || *s == '"' || *s == '\\' ||
            (unsigned char)*s == 0x7f) {
            return fail(l,
                        "'%s.name' must not contain quotes, backslashes or "
                        "control characters",
                        p);
        }
    }
    /* uniqueness against earlier routes */
    for (size_t j = 0; j < i; j++) {
        struct config_route *o = &l->cfg->routes[j];
        char q[PATHLEN];

        join_index(q, sizeof(q), base, j);
        if (r->topic != NULL && o->topic != NULL &&
            strcmp(r->topic, o->topic) == 0) {
            return fail(l, "%s: topic '%s' is already routed by %s", p,
                        r->topic, q);
        }
        if (r->topic_regex != NULL && o->topic_regex != NULL &&
            strcmp(r->topic_regex, o->topic_regex) == 0) {
            return fail(l, "%s: topic_regex '%s' is already routed by %s", p,
                        clean(r->topic_regex, shown, sizeof(shown)), q);
        }
        if (strcmp(r->name, o->name) == 0) {
            return fail(l, "%s: route name '%s' is already used by %s", p,
                        clean(r->name, shown, sizeof(shown)), q);
        }
    }
    return 0;
}

/* Runs every kafka property through librdkafka's own parser. */
static int check_kafka(struct loader *l)
{
    struct config_kafka *k = &l->cfg->kafka;
    rd_kafka_conf_t *conf;
    char errstr[256];
    char path[PATHLEN];
    int rc = 0;

    conf = rd_kafka_conf_new();
    if (conf == NULL) {
        return oom(l);
    }
    for (size_t i = 0; i < k->n && rc == 0; i++) {
        rd_kafka_conf_res_t res;

        join(path, sizeof(path), "kafka", k->keys[i]);
        if (kafka_key_is_secret(k->keys[i])) {
            log_add_secret(k->values[i]);
        }
        if ((strcmp(k->keys[i], "enable.auto.commit") == 0 ||
             strcmp(k->keys[i], "enable.auto.offset.store") == 0) &&
            strcmp(k->values[i], "false") != 0) {
            rc = fail(l,
                      "'%s' must be false: kadx commits offsets itself, once "
                      "the journal is durable",
                      path);
            break;
        }
        if (strcmp(k->keys[i], "auto.offset.reset") == 0) {
            /* kadx runs librdkafka with "error" and applies the choice
             * itself, counting what a reset skips (INTAKE.md) */
            const char *v = k->values[i];

            if (strcmp(v, "earliest") == 0 || strcmp(v, "smallest") == 0 ||
                strcmp(v, "beginning") == 0) {
                l->cfg->intake.reset_latest = 0;
            } else if (strcmp(v, "latest") == 0 || strcmp(v, "largest") == 0 ||
                       strcmp(v, "end") == 0) {
                l->cfg->intake.reset_latest = 1;
            } else {
                rc = fail(l,
                          "'%s' must be earliest or latest (kadx resets "
                          "offsets itself and reports what a reset skips)",
                          path);
                break;
            }
        }
        /* setting it loads shared objects: not a side effect for --check */
        if (strcmp(k->keys[i], "plugin.library.paths") == 0) {
            continue;
        }
        res = rd_kafka_conf_set(conf, k->keys[i], k->values[i], errstr,
                                sizeof(errstr));
        if (res == RD_KAFKA_CONF_UNKNOWN) {
            rc = fail(l, "unknown key '%s' (not a librdkafka property)", path);
        } else if (res != RD_KAFKA_CONF_OK) {
            if (kafka_key_is_secret(k->keys[i])) {
                rc = fail(l, "'%s' is invalid", path);
            } else {
                rc = fail(l, "'%s': %s", path, errstr);
            }
        }
    }
    rd_kafka_conf_destroy(conf);
    return rc;
}

/*
 * adx.proxy: a proxy URL libcurl understands (http://, https://, socks4://,
 * socks4a://, socks5://, socks5h://), possibly with user:password (then it
 * is a secret). adx.no_proxy: libcurl's list (comma-separated host names,
 * domains, IPs, CIDRs, or "*"). The environment's http_proxy, https_proxy,
 * all_proxy and no_proxy are ignored (adx.c): CONFIG.md, "Proxy".
 */
static int check_proxy(struct loader *l)
{
    static const char *const schemes[] = {
        "http://",   "https://",   "socks4://", "socks4a://",
        "socks5://", "socks5h://", NULL};
    const char *p = l->cfg->adx.proxy;
    const char *np = l->cfg->adx.no_proxy;
    int ok = 0;

    if (p != NULL) {
        for (size_t i = 0; schemes[i] != NULL; i++) {
            if (strncasecmp(p, schemes[i], strlen(schemes[i])) == 0 &&
                p[strlen(schemes[i])] != '\0') {
                ok = 1;
            }
        }
        if (!ok) {
            return fail(l, "'adx.proxy' must be a URL starting with http://, "
                           "https://, socks4://, socks4a://, socks5:// or "
                           "socks5h://");
        }
        for (const char *s = p; *s != '\0'; s++) {
            if ((unsigned char)*s <= 0x20) {
                return fail(l, "'adx.proxy' must not contain spaces or "
                               "control characters");
            }
        }
        if (strchr(p, '@') != NULL) {
            log_add_secret(p); /* user:password inside */
        }
    }
    for (const char *s = np; s != NULL && *s != '\0'; s++) {
        if ((unsigned char)*s < 0x20) {
            return fail(l, "'adx.no_proxy' must not contain control "
                           "characters");
        }
    }
    return 0;
}

static int finish(struct loader *l)
{
    struct config *c = l->cfg;
    const struct config_overrides *ov = l->ov;
    const char *env;
    int wildcard = 0;
    int rc;

    /* Kafka: flags override the file; the environment fills gaps */
    if (ov != NULL && ov->bootstrap_servers != NULL &&
        kafka_set(&c->kafka, "bootstrap.servers", ov->bootstrap_servers) < 0) {
        return oom(l);
    }
    if (ov != NULL && ov->group_id != NULL &&
        kafka_set(&c->kafka, "group.id", ov->group_id) < 0) {
        return oom(l);
    }
    if (ov != NULL && ov->admin_listen != NULL) {
        free(c->admin.listen);
        c->admin.listen = NULL;
        if (strcasecmp(ov->admin_listen, "off") != 0 &&
            replace(&c->admin.listen, ov->admin_listen) < 0) {
            return oom(l);
        }
    }
    env = getenv("KADX_BOOTSTRAP_SERVERS");
    if (config_kafka_get(c, "bootstrap.servers") == NULL && env != NULL &&
        env[0] != '\0' && kafka_set(&c->kafka, "bootstrap.servers", env) < 0) {
        return oom(l);
    }
    env = getenv("KADX_GROUP_ID");
    if (config_kafka_get(c, "group.id") == NULL && env != NULL &&
        env[0] != '\0' && kafka_set(&c->kafka, "group.id", env) < 0) {
        return oom(l);
    }
    env = config_kafka_get(c, "bootstrap.servers");
    if (env == NULL || env[0] == '\0') {
        return fail(l, "missing required key 'kafka.bootstrap.servers' (or "
                       "--bootstrap-servers, or KADX_BOOTSTRAP_SERVERS)");
    }
    env = config_kafka_get(c, "group.id");
    if (env == NULL || env[0] == '\0') {
        return fail(l, "missing required key 'kafka.group.id' (or "
                       "--group-id, or KADX_GROUP_ID)");
    }
    if ((rc = check_kafka(l)) < 0) {
        return rc;
    }

    /* ADX */
    if ((rc = check_url(
             l, c->from_connector ? "kusto.query.url" : "adx.ingest_url",
             c->adx.ingest_url, NULL)) < 0) {
        return rc;
    }
    if (c->adx.query_url == NULL &&
        replace(&c->adx.query_url, c->adx.ingest_url) < 0) {
        return oom(l);
    }
    if ((rc = check_url(l, "adx.query_url", c->adx.query_url, NULL)) < 0 ||
        (rc = check_auth(l)) < 0) {
        return rc;
    }
    if ((rc = check_proxy(l)) < 0) {
        return rc;
    }
    if (c->adx.auth.scope != NULL) {
        for (const char *s = c->adx.auth.scope; *s != '\0'; s++) {
            if ((unsigned char)*s <= 0x20 || *s == '&') {
                return fail(l, "'adx.auth.scope' must not contain spaces, "
                               "'&' or control characters");
            }
        }
    }

    /* routes */
    for (size_t i = 0; i < c->nroutes; i++) {
        if ((rc = check_route(l, i)) < 0) {
            return rc;
        }
        if (c->routes[i].topic != NULL &&
            strcmp(c->routes[i].topic, "*") == 0) {
            wildcard = 1;
        }
    }

    /* the subscription */
    if (c->from_connector) {
        for (size_t i = 0; i < c->intake.ntopics; i++) {
            const char *t = c->intake.topics[i];

            if (t[0] != '^' && !wildcard &&
                config_route_for_topic(c, t) == NULL) {
                return fail(l,
                            "topic '%s' in 'topics' has no entry in "
                            "'kusto.tables.topics.mapping' (and there is no "
                            "'*' entry)",
                            t);
            }
        }
    } else {
        size_t extra = c->intake.ntopics;

        for (size_t i = 0; i < extra; i++) {
            const char *t = c->intake.topics[i];

            if (t[0] != '^' && !wildcard &&
                config_route_for_topic(c, t) == NULL) {
                return fail(l, "topic '%s' in 'intake.topics' has no route", t);
            }
        }
        for (size_t i = 0; i < c->nroutes; i++) {
            const struct config_route *r = &c->routes[i];
            const char *t = r->topic != NULL ? r->topic : r->topic_regex;

            if (strcmp(t, "*") != 0 &&
                !strv_has(c->intake.topics, c->intake.ntopics, t) &&
                strv_push(&c->intake.topics, &c->intake.ntopics, t) < 0) {
                return oom(l);
            }
        }
        if (wildcard && extra == 0) {
            return fail(l, "a '*' route needs 'intake.topics' (the topics to "
                           "subscribe to)");
        }
    }

    /* limits */
    if (c->forwarder.batch_max_bytes > CONFIG_ADX_MAX_BATCH_BYTES) {
        return fail(l,
                    "'forwarder.batch_max_bytes' (%lld) must be at most %d: "
                    "ADX streaming ingestion takes at most 4 MiB per request",
                    (long long)c->forwarder.batch_max_bytes,
                    CONFIG_ADX_MAX_BATCH_BYTES);
    }
    if (c->forwarder.retry_max_ms < c->forwarder.retry_initial_ms) {
        return fail(l,
                    "'forwarder.retry_max_ms' (%lld) must not be below "
                    "'forwarder.retry_initial_ms' (%lld)",
                    (long long)c->forwarder.retry_max_ms,
                    (long long)c->forwarder.retry_initial_ms);
    }
    {
        /* INV-5: a request ADX received may commit until the client gave
         * up (request_timeout_ms after the send) plus the life the server
         * gives it (server_timeout_ms); "absent" before then proves
         * nothing (FORWARDER.md, "How long an ambiguous batch waits") */
        int64_t min = c->adx.request_timeout_ms + c->adx.server_timeout_ms;

        if (c->forwarder.ambiguous_window_ms < 0) {
            c->forwarder.ambiguous_window_ms = min + CONFIG_AMBIGUOUS_SLACK_MS;
        } else if (c->forwarder.ambiguous_window_ms < min) {
            return fail(l,
                        "'forwarder.ambiguous_window_ms' (%lld) must be at "
                        "least 'adx.request_timeout_ms' + "
                        "'adx.server_timeout_ms' (%lld): a batch resent "
                        "sooner can duplicate a request ADX is still "
                        "running",
                        (long long)c->forwarder.ambiguous_window_ms,
                        (long long)min);
        }
    }
    if (c->intake.high_water_bytes < 0) {
        c->intake.high_water_bytes = c->journal.max_bytes / 5 * 4;
    }
    if (c->intake.low_water_bytes < 0) {
        c->intake.low_water_bytes = c->journal.max_bytes / 2;
        if (c->intake.low_water_bytes >= c->intake.high_water_bytes) {
            c->intake.low_water_bytes = c->intake.high_water_bytes / 2;
        }
    }
    if (c->intake.high_water_bytes > c->journal.max_bytes) {
        return fail(l,
                    "'intake.high_water_bytes' (%lld) must not exceed "
                    "'journal.max_bytes' (%lld)",
                    (long long)c->intake.high_water_bytes,
                    (long long)c->journal.max_bytes);
    }
    if (c->intake.low_water_bytes >= c->intake.high_water_bytes) {
        return fail(l,
                    "'intake.low_water_bytes' (%lld) must be below "
                    "'intake.high_water_bytes' (%lld)",
                    (long long)c->intake.low_water_bytes,
                    (long long)c->intake.high_water_bytes);
    }

    /* admin */
    if (c->admin.token != NULL) {
        if (strlen(c->admin.token) < 8) {
            return fail(l, "'admin.token' must be at least 8 characters");
        }
        log_add_secret(c->admin.token);
    }
    if (c->admin.listen != NULL &&
        (rc = check_listen(l, "admin.listen", c->admin.listen)) < 0) {
        return rc;
    }
    if (c->admin.token_on_get && c->admin.token == NULL) {
        return fail(l, "'admin.token_on_get' needs 'admin.token'");
    }
    if ((c->admin.tls_cert == NULL) != (c->admin.tls_key == NULL)) {
        return fail(l, "'admin.%s' needs 'admin.%s' (TLS takes both files)",
                    c->admin.tls_cert != NULL ? "tls_cert" : "tls_key",
                    c->admin.tls_cert != NULL ? "tls_key" : "tls_cert");
    }
    return 0;
}

/* ---- entry points ----------------------------------------------------- */

static int is_connector(const cJSON *root, const cJSON **map, const char **name)
{
    const cJSON *cfg = cJSON_GetObjectItemCaseSensitive(root, "config");
    const cJSON *nm = cJSON_GetObjectItemCaseSensitive(root, "name");

    *map = root;
    *name = NULL;
    if (cJSON_IsObject(cfg)) {
        *map = cfg;
        if (cJSON_IsString(nm)) {
            *name = nm->valuestring;
        }
        return 1;
    }
    for (const cJSON *c = root->child; c != NULL; c = c->next) {
        if (strchr(c->string, '.') != NULL ||
            strcmp(c->string, "topics") == 0 ||
            strcmp(c->string, "name") == 0) {
            return 1;
        }
    }
    return 0;
}

static const char *const wrapper_keys[] = {"name", "config", "tasks", "type",
                                           NULL};

int config_load_string(const char *json, const struct config_overrides *ov,
                       struct config **out, char *err, size_t errlen)
{
    struct loader l = {0};
    const char *end = NULL;
    const cJSON *map;
    const char *name;
    cJSON *root = NULL;
    size_t len = strlen(json);
    int rc;

    *out = NULL;
    l.ov = ov;
    l.err = err;
    l.errlen = errlen;
    if (err != NULL && errlen > 0) {
        err[0] = '\0';
    }
    if (len > CONFIG_MAX_BYTES) {
        fail(&l, "the config is larger than %d bytes", CONFIG_MAX_BYTES);
        return -EFBIG;
    }
    for (size_t i = 0, line = 1; i < len;) {
        size_t n = utf8_len((const unsigned char *)json + i);

        if (n == 0) {
            /* JSON is UTF-8 (RFC 8259); a stray byte would reach names,
             * logs and ADX as it is */
            fail(&l, "the config is not valid UTF-8 (line %zu, byte %zu)", line,
                 i + 1);
            return -EINVAL;
        }
        line += json[i] == '\n';
        i += n;
    }
    l.cfg = calloc(1, sizeof(*l.cfg));
    if (l.cfg == NULL) {
        return oom(&l);
    }
    if (set_defaults(l.cfg) < 0) {
        rc = oom(&l);
        goto out_cfg;
    }
    root = cJSON_ParseWithLengthOpts(json, len + 1, &end, 1);
    if (root == NULL) {
        int line = 1;
        int col = 1;

        for (const char *p = json; end != NULL && p < end && *p; p++) {
            if (*p == '\n') {
                line++;
                col = 1;
            } else {
                col++;
            }
        }
        rc = fail(&l, "the config is not valid JSON (line %d, column %d)", line,
                  col);
        goto out_cfg;
    }
    if (!cJSON_IsObject(root)) {
        rc = fail(&l, "the config must be a JSON object");
        goto out_root;
    }
    if (is_connector(root, &map, &name)) {
        l.cfg->from_connector = 1;
        if (map != root && (rc = check_keys(&l, root, "", wrapper_keys)) < 0) {
            goto out_root;
        }
        rc = load_connector(&l, map, name);
    } else {
        rc = load_native(&l, root);
    }
    if (rc == 0) {
        rc = finish(&l);
    }
    if (rc == 0 && l.oom) {
        rc = oom(&l);
    }
    if (rc == 0) {
        if (l.info.len > 0) {
            log_info("config",
                     "connector keys with no meaning for kadx (accepted): %s",
                     l.info.s);
        }
        if (l.warn.len > 0) {
            log_warn("config",
                     "connector keys kadx cannot honour (ignored): %s",
                     l.warn.s);
        }
        if (l.cfg->admin.listen != NULL && l.cfg->admin.token == NULL &&
            strncmp(l.cfg->admin.listen, "127.", 4) != 0 &&
            strncmp(l.cfg->admin.listen, "localhost:", 10) != 0 &&
            strncmp(l.cfg->admin.listen, "[::1]:", 6) != 0) {
            log_warn("config",
                     "admin.listen '%s' is not a loopback address and "
                     "admin.token is not set: anyone who can reach it can "
                     "replay and pause",
                     l.cfg->admin.listen);
        } else if (l.cfg->admin.listen != NULL &&
                   strncmp(l.cfg->admin.listen, "127.", 4) != 0 &&
                   strncmp(l.cfg->admin.listen, "localhost:", 10) != 0 &&
                   strncmp(l.cfg->admin.listen, "[::1]:", 6) != 0 &&
                   (l.cfg->admin.tls_cert == NULL ||
                    !l.cfg->admin.token_on_get)) {
            log_warn("config",
                     "admin.listen '%s' is not a loopback address: %s",
                     l.cfg->admin.listen,
                     l.cfg->admin.tls_cert == NULL
                         ? "without admin.tls_cert the token and the "
                           "status travel in clear text"
                         : "without admin.token_on_get anyone who can "
                           "reach it can read /status, /metrics and "
                           "/dead-letters");
        }
        *out = l.cfg;
        l.cfg = NULL;
    }
out_root:
    cJSON_Delete(root);
out_cfg:
    config_free(l.cfg);
    free(l.info.s);
    free(l.warn.s);
    return rc;
}

int config_load_file(const char *path, const struct config_overrides *ov,
                     struct config **out, char *err, size_t errlen)
{
    char shown[128];
    struct stat st;
    char *buf = NULL;
    size_t len = 0;
    int fd;
    int rc;

    *out = NULL;
    clean(path, shown, sizeof(shown));
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        rc = -errno;
        snprintf(err, errlen, "cannot read config file '%s': %s", shown,
                 strerror(-rc));
        return rc;
    }
    if (fstat(fd, &st) < 0) {
        rc = -errno;
        snprintf(err, errlen, "cannot read config file '%s': %s", shown,
                 strerror(-rc));
        goto out_fd;
    }
    if (!S_ISREG(st.st_mode)) {
        rc = -EINVAL;
        snprintf(err, errlen, "config file '%s' is not a regular file", shown);
        goto out_fd;
    }
    buf = malloc(CONFIG_MAX_BYTES + 2);
    if (buf == NULL) {
        rc = -ENOMEM;
        snprintf(err, errlen, "out of memory while loading the config");
        goto out_fd;
    }
    for (;;) {
        ssize_t n = read(fd, buf + len, CONFIG_MAX_BYTES + 1 - len);

        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            rc = -errno;
            snprintf(err, errlen, "cannot read config file '%s': %s", shown,
                     strerror(-rc));
            goto out_buf;
        }
        if (n == 0) {
            break;
        }
        len += (size_t)n;
        if (len > CONFIG_MAX_BYTES) {
            rc = -EFBIG;
            snprintf(err, errlen, "config file '%s' is larger than %d bytes",
                     shown, CONFIG_MAX_BYTES);
            goto out_buf;
        }
    }
    buf[len] = '\0';
    if (memchr(buf, '\0', len) != NULL) {
        rc = -EINVAL;
        snprintf(err, errlen, "config file '%s' contains a NUL byte", shown);
        goto out_buf;
    }
    rc = config_load_string(buf, ov, out, err, errlen);
out_buf:
    free(buf);
out_fd:
    close(fd);
    return rc;
}

static void registry_release(struct config_registry *g)
{
    free(g->url);
    free(g->basic_auth);
    free(g->ca_file);
}

static void route_release(struct config_route *r)
{
    free(r->name);
    free(r->topic);
    free(r->topic_regex);
    free(r->database);
    free(r->table);
    free(r->format);
    free(r->mapping);
    free(r->meta.topic);
    free(r->meta.partition);
    free(r->meta.offset);
    free(r->meta.timestamp);
    free(r->meta.key);
    free(r->meta.headers);
    free(r->meta.batch_id);
    free(r->dedupe_column);
    free(r->value_converter);
    free(r->key_converter);
    registry_release(&r->registry);
    if (r->topic_re != NULL) {
        regfree(r->topic_re);
        free(r->topic_re);
    }
}

void config_free(struct config *cfg)
{
    struct config_auth *a;

    if (cfg == NULL) {
        return;
    }
    strv_free(cfg->kafka.keys, cfg->kafka.n);
    strv_free(cfg->kafka.values, cfg->kafka.n);
    free(cfg->adx.ingest_url);
    free(cfg->adx.query_url);
    free(cfg->adx.proxy);
    free(cfg->adx.no_proxy);
    a = &cfg->adx.auth;
    free(a->tenant_id);
    free(a->client_id);
    free(a->client_secret);
    free(a->token);
    free(a->token_file);
    free(a->authority_host);
    free(a->scope);
    free(a->imds_url);
    for (size_t i = 0; i < cfg->nroutes; i++) {
        route_release(&cfg->routes[i]);
    }
    free(cfg->routes);
    free(cfg->journal.path);
    strv_free(cfg->intake.topics, cfg->intake.ntopics);
    free(cfg->admin.listen);
    free(cfg->admin.token);
    free(cfg->admin.tls_cert);
    free(cfg->admin.tls_key);
    free(cfg->connector_name);
    registry_release(&cfg->registry);
    free(cfg);
}

const char *config_kafka_get(const struct config *cfg, const char *key)
{
    for (size_t i = 0; i < cfg->kafka.n; i++) {
        if (strcmp(cfg->kafka.keys[i], key) == 0) {
            return cfg->kafka.values[i];
        }
    }
    return NULL;
}

const struct config_route *config_route_for_topic(const struct config *cfg,
                                                  const char *topic)
{
    const struct config_route *star = NULL;

    for (size_t i = 0; i < cfg->nroutes; i++) {
        const struct config_route *r = &cfg->routes[i];

        if (r->topic != NULL && strcmp(r->topic, topic) == 0) {
            return r;
        }
    }
    for (size_t i = 0; i < cfg->nroutes; i++) {
        const struct config_route *r = &cfg->routes[i];

        if (r->topic_re != NULL &&
            regexec(r->topic_re, topic, 0, NULL, 0) == 0) {
            return r;
        }
        if (r->topic != NULL && strcmp(r->topic, "*") == 0 && star == NULL) {
            star = r;
        }
    }
    return star;
}

/* ---- effective config as JSON ----------------------------------------- */

static int add_str(cJSON *o, const char *k, const char *v)
{
    cJSON *it = v != NULL ? cJSON_CreateString(v) : cJSON_CreateNull();

    return it != NULL && cJSON_AddItemToObject(o, k, it) ? 0 : -ENOMEM;
}

static int add_secret(cJSON *o, const char *k, const char *v)
{
    return add_str(o, k, v != NULL ? "***" : NULL);
}

static int add_num(cJSON *o, const char *k, int64_t v)
{
    return cJSON_AddNumberToObject(o, k, (double)v) != NULL ? 0 : -ENOMEM;
}

static cJSON *add_obj(cJSON *parent, const char *k)
{
    return cJSON_AddObjectToObject(parent, k);
}

char *config_to_json(const struct config *cfg)
{
    const struct config_auth *a = &cfg->adx.auth;
    cJSON *root = cJSON_CreateObject();
    cJSON *o;
    cJSON *arr;
    char *text = NULL;
    int rc = 0;

    if (root == NULL) {
        return NULL;
    }
    o = add_obj(root, "kafka");
    if (o == NULL) {
        goto out;
    }
    for (size_t i = 0; i < cfg->kafka.n && rc == 0; i++) {
        const char *k = cfg->kafka.keys[i];

        rc = kafka_key_is_secret(k) ? add_secret(o, k, cfg->kafka.values[i])
                                    : add_str(o, k, cfg->kafka.values[i]);
    }
    o = add_obj(root, "adx");
    if (rc < 0 || o == NULL) {
        goto out;
    }
    rc |= add_str(o, "ingest_url", cfg->adx.ingest_url);
    rc |= add_str(o, "query_url", cfg->adx.query_url);
    rc |= add_num(o, "request_timeout_ms", cfg->adx.request_timeout_ms);
    rc |= add_num(o, "server_timeout_ms", cfg->adx.server_timeout_ms);
    rc |= add_num(o, "keepalive_idle_ms", cfg->adx.keepalive_idle_ms);
    if (cfg->adx.proxy != NULL) {
        rc |= strchr(cfg->adx.proxy, '@') != NULL
                  ? add_secret(o, "proxy", cfg->adx.proxy)
                  : add_str(o, "proxy", cfg->adx.proxy);
    }
    if (cfg->adx.no_proxy != NULL) {
        rc |= add_str(o, "no_proxy", cfg->adx.no_proxy);
    }
    o = add_obj(o, "auth");
    if (rc < 0 || o == NULL) {
        goto out;
    }
    rc |= add_str(o, "method", config_auth_method_name(a->method));
    rc |= add_str(o, "tenant_id", a->tenant_id);
    rc |= add_str(o, "client_id", a->client_id);
    rc |= add_secret(o, "client_secret", a->client_secret);
    rc |= add_secret(o, "token", a->token);
    rc |= add_str(o, "token_file", a->token_file);
    rc |= add_str(o, "authority_host", a->authority_host);
    rc |= add_str(o, "scope", a->scope);
    rc |= add_str(o, "imds_url", a->imds_url);
    arr = cJSON_AddArrayToObject(root, "routes");
    if (rc < 0 || arr == NULL) {
        goto out;
    }
    for (size_t i = 0; i < cfg->nroutes; i++) {
        const struct config_route *r = &cfg->routes[i];
        cJSON *ro = cJSON_CreateObject();
        cJSON *m;

        if (ro == NULL || !cJSON_AddItemToArray(arr, ro)) {
            cJSON_Delete(ro);
            goto out;
        }
        rc |= add_str(ro, "name", r->name);
        if (r->topic != NULL) {
            rc |= add_str(ro, "topic", r->topic);
        } else {
            rc |= add_str(ro, "topic_regex", r->topic_regex);
        }
        rc |= add_str(ro, "database", r->database);
        rc |= add_str(ro, "table", r->table);
        rc |= add_str(ro, "format", r->format);
        rc |= add_str(ro, "mapping", r->mapping);
        m = add_obj(ro, "meta");
        if (rc < 0 || m == NULL) {
            goto out;
        }
        rc |= add_str(m, "topic", r->meta.topic);
        rc |= add_str(m, "partition", r->meta.partition);
        rc |= add_str(m, "offset", r->meta.offset);
        rc |= add_str(m, "timestamp", r->meta.timestamp);
        rc |= add_str(m, "key", r->meta.key);
        rc |= add_str(m, "headers", r->meta.headers);
        rc |= add_str(m, "batch_id", r->meta.batch_id);
        rc |= add_str(ro, "dedupe_column", r->dedupe_column);
        rc |= add_str(ro, "value_converter", r->value_converter);
        rc |= add_str(ro, "key_converter", r->key_converter);
        if (r->registry.url != NULL) {
            cJSON *g = add_obj(ro, "schema_registry");

            if (g == NULL) {
                goto out;
            }
            rc |= add_str(g, "url", r->registry.url);
            rc |=
                add_str(g, "basic_auth", r->registry.basic_auth ? "***" : NULL);
            rc |= add_str(g, "ca_file", r->registry.ca_file);
            rc |= cJSON_AddNumberToObject(g, "timeout_ms",
                                          (double)r->registry.timeout_ms)
                      ? 0
                      : -1;
        }
    }
    o = add_obj(root, "journal");
    if (rc < 0 || o == NULL) {
        goto out;
    }
    rc |= add_str(o, "path", cfg->journal.path);
    rc |= add_num(o, "max_bytes", cfg->journal.max_bytes);
    rc |= add_num(o, "retention_ms", cfg->journal.retention_ms);
    rc |= add_num(o, "reserve_bytes", cfg->journal.reserve_bytes);
    rc |= add_num(o, "min_retention_ms", cfg->journal.min_retention_ms);
    rc |= add_str(o, "sync", cfg->journal.sync_full ? "full" : "normal");
    o = add_obj(root, "forwarder");
    if (rc < 0 || o == NULL) {
        goto out;
    }
    rc |= add_num(o, "batch_max_bytes", cfg->forwarder.batch_max_bytes);
    rc |= add_num(o, "batch_max_rows", cfg->forwarder.batch_max_rows);
    rc |= add_num(o, "linger_ms", cfg->forwarder.linger_ms);
    rc |= add_num(o, "max_inflight", cfg->forwarder.max_inflight);
    rc |= add_num(o, "retry_initial_ms", cfg->forwarder.retry_initial_ms);
    rc |= add_num(o, "retry_max_ms", cfg->forwarder.retry_max_ms);
    rc |= add_num(o, "retry_max_time_ms", cfg->forwarder.retry_max_time_ms);
    rc |= add_num(o, "ambiguous_delay_ms", cfg->forwarder.ambiguous_delay_ms);
    rc |= add_num(o, "ambiguous_window_ms", cfg->forwarder.ambiguous_window_ms);
    rc |= add_str(o, "on_error",
                  cfg->forwarder.on_error == CONFIG_ON_ERROR_PAUSE
                      ? "pause"
                      : "deadletter");
    o = add_obj(root, "intake");
    if (rc < 0 || o == NULL) {
        goto out;
    }
    if (cJSON_AddBoolToObject(o, "skip_tombstones",
                              cfg->intake.skip_tombstones) == NULL) {
        goto out;
    }
    rc |= add_num(o, "high_water_bytes", cfg->intake.high_water_bytes);
    rc |= add_num(o, "low_water_bytes", cfg->intake.low_water_bytes);
    rc |= add_num(o, "prefetch_bytes", cfg->intake.prefetch_bytes);
    rc |= add_str(o, "on_rewind",
                  cfg->intake.on_rewind == CONFIG_ON_REWIND_EPOCH ? "new_epoch"
                                                                  : "pause");
    arr = cJSON_AddArrayToObject(o, "topics");
    if (rc < 0 || arr == NULL) {
        goto out;
    }
    for (size_t i = 0; i < cfg->intake.ntopics; i++) {
        cJSON *s = cJSON_CreateString(cfg->intake.topics[i]);

        if (s == NULL || !cJSON_AddItemToArray(arr, s)) {
            cJSON_Delete(s);
            goto out;
        }
    }
    o = add_obj(root, "admin");
    if (o == NULL) {
        goto out;
    }
    rc |= add_str(o, "listen",
                  cfg->admin.listen != NULL ? cfg->admin.listen : "off");
    rc |= add_secret(o, "token", cfg->admin.token);
    rc |= cJSON_AddBoolToObject(o, "token_on_get", cfg->admin.token_on_get) ==
          NULL;
    if (cfg->admin.tls_cert != NULL) {
        rc |= add_str(o, "tls_cert", cfg->admin.tls_cert);
        rc |= add_str(o, "tls_key", cfg->admin.tls_key);
    }
    rc |= add_num(o, "max_connections", cfg->admin.max_connections);
    rc |= add_num(o, "max_requests_per_s", cfg->admin.max_requests_per_s);
    if (cfg->log_level >= 0) {
        static const char *const names[] = {"error", "warn", "info", "debug"};

        o = add_obj(root, "log");
        if (o == NULL) {
            goto out;
        }
        rc |= add_str(o, "level", names[cfg->log_level & 3]);
    }
    if (rc == 0) {
        text = cJSON_Print(root);
    }
out:
    cJSON_Delete(root);
    return text;
}
