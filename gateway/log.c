/*
 * log.c - the logger (see log.h). Lines look like
 *   2026-11-24T17:31:42.123Z info  intake: assigned 'gameplay' [0]
 * or, in JSON format,
 *   {"ts":"2026-11-24T17:31:42.123Z","level":"info","module":"intake",
 *    "msg":"assigned 'gameplay' [0]"}
 * Masking happens after formatting, so a secret cannot leak through any
 * format argument.
 */
#include "gateway/log.h"
#include "base/utf8.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define LOG_LINE_MAX    8192
#define LOG_SECRETS_MAX 64

static const char *const level_names[] = {"error", "warn", "info", "debug"};

/* Process-wide by necessity (see log.h); written before threads start. */
static enum log_level cur_level = LOG_INFO;
static enum log_format cur_format = LOG_TEXT;
static pthread_mutex_t secrets_lock = PTHREAD_MUTEX_INITIALIZER;
static char *secrets[LOG_SECRETS_MAX];
static int n_secrets;

int log_level_parse(const char *s, enum log_level *out)
{
    for (int i = 0; i < 4; i++) {
        if (strcmp(s, level_names[i]) == 0) {
            *out = (enum log_level)i;
            return 0;
        }
    }
    if (strcmp(s, "warning") == 0) {
        *out = LOG_WARN;
        return 0;
    }
    return -EINVAL;
}

int log_format_parse(const char *s, enum log_format *out)
{
    if (strcmp(s, "text") == 0) {
        *out = LOG_TEXT;
        return 0;
    }
    if (strcmp(s, "json") == 0) {
        *out = LOG_JSON;
        return 0;
    }
    return -EINVAL;
}

void log_setup(enum log_level level, enum log_format format)
{
    cur_level = level;
    cur_format = format;
}

void log_set_level(enum log_level level)
{
    cur_level = level;
}

enum log_level log_get_level(void)
{
    return cur_level;
}

void log_add_secret(const char *secret)
{
    if (secret == NULL || strlen(secret) < 4) {
        return;
    }
    pthread_mutex_lock(&secrets_lock);
    for (int i = 0; i < n_secrets; i++) {
        if (strcmp(secrets[i], secret) == 0) {
            pthread_mutex_unlock(&secrets_lock);
            return;
        }
    }
    if (n_secrets < LOG_SECRETS_MAX) {
        char *copy = strdup(secret);
        if (copy != NULL) {
            secrets[n_secrets++] = copy;
        }
    }
    pthread_mutex_unlock(&secrets_lock);
}

void log_release(void)
{
    pthread_mutex_lock(&secrets_lock);
    for (int i = 0; i < n_secrets; i++) {
        free(secrets[i]);
        secrets[i] = NULL;
    }
    n_secrets = 0;
    pthread_mutex_unlock(&secrets_lock);
}

char *log_mask(const char *src, char *dst, size_t dstlen)
{
    size_t o = 0;

    if (dstlen == 0) {
        return dst;
    }
    pthread_mutex_lock(&secrets_lock);
    while (*src != '\0' && o + 1 < dstlen) {
        int hit = -1;
        for (int i = 0; i < n_secrets; i++) {
            size_t n = strlen(secrets[i]);
            if (strncmp(src, secrets[i], n) == 0) {
                hit = i;
                break;
            }
        }
        if (hit >= 0) {
            for (const char *r = "***"; *r != '\0' && o + 1 < dstlen; r++) {
                dst[o++] = *r;
            }
            src += strlen(secrets[hit]);
        } else {
            dst[o++] = *src++;
        }
    }
    pthread_mutex_unlock(&secrets_lock);
    dst[o] = '\0';
    return dst;
}

size_t log_escape(const char *src, char *out, size_t cap, int json)
{
    const unsigned char *s = (const unsigned char *)src;
    size_t o = 0;

    if (cap == 0) {
        return 0;
    }
    while (*s != '\0') {
        char unit[8];
        size_t n = utf8_len(s);
        size_t take = n ? n : 1;

        if (n == 0) {
            memcpy(unit, "\xef\xbf\xbd", 3); /* U+FFFD */
            n = 3;
        } else if (n > 1) {
            memcpy(unit, s, n);
        } else if (*s == '\n') {
            memcpy(unit, "\\n", 2);
            n = 2;
        } else if (*s == '\r') {
            memcpy(unit, "\\r", 2);
            n = 2;
        } else if (*s == '\t' && json) {
            memcpy(unit, "\\t", 2);
            n = 2;
        } else if ((*s < 0x20 && *s != '\t') || *s == 0x7f) {
            n = (size_t)snprintf(unit, sizeof(unit),
                                 json ? "\\u%04x" : "\\x%02x", *s);
        } else if (json && (*s == '"' || *s == '\\')) {
            unit[0] = '\\';
            unit[1] = (char)*s;
            n = 2;
        } else {
            unit[0] = (char)*s;
        }
        if (o + n >= cap) {
            break; /* never half a sequence or half an escape */
        }
        memcpy(out + o, unit, n);
        o += n;
        s += take;
    }
    out[o] = '\0';
    return o;
}

void log_vmsg(enum log_level level, const char *module, const char *fmt,
              va_list ap)
{
    char raw[LOG_LINE_MAX];
    char masked[LOG_LINE_MAX];
    char line[LOG_LINE_MAX * 2];
    char ts[40];
    struct timeval tv;
    struct tm tm;
    int n;

    if (level > cur_level) {
        return;
    }
    vsnprintf(raw, sizeof(raw), fmt, ap);
    log_mask(raw, masked, sizeof(masked));

    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    n = (int)strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(ts + n, sizeof(ts) - (size_t)n, ".%03ldZ",
             (long)(tv.tv_usec / 1000));

    if (cur_format == LOG_JSON) {
        char esc[LOG_LINE_MAX * 2 - 128];
        log_escape(masked, esc, sizeof(esc), 1);
        n = snprintf(line, sizeof(line),
                     "{\"ts\":\"%s\",\"level\":\"%s\",\"module\":\"%s\","
                     "\"msg\":\"%s\"}\n",
                     ts, level_names[level], module, esc);
    } else {
        char esc[LOG_LINE_MAX * 2 - 128];
        log_escape(masked, esc, sizeof(esc), 0);
        n = snprintf(line, sizeof(line), "%s %-5s %s: %s\n", ts,
                     level_names[level], module, esc);
    }
    if (n < 0) {
        return;
    }
    if ((size_t)n >= sizeof(line)) {
        n = (int)sizeof(line) - 1;
        line[n - 1] = '\n';
    }
    /* One write per line: lines from several threads never interleave. */
    ssize_t w = write(STDERR_FILENO, line, (size_t)n);
    (void)w;
}

void log_msg(enum log_level level, const char *module, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    log_vmsg(level, module, fmt, ap);
    va_end(ap);
}
