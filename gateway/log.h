/*
 * log.h - levelled logging to stderr, as text or JSON lines, with secrets
 * masked.
 *
 * The logger is the one piece of process-wide state in kadx: it is set up
 * once by main() before any thread starts and then only read, except for the
 * secret list, which is guarded by a mutex. Any thread may log; each line is
 * written with a single write(2) so lines from threads never interleave.
 */
#ifndef KADX_LOG_H
#define KADX_LOG_H

#include <stdarg.h>
#include <stddef.h>

enum log_level { LOG_ERROR = 0, LOG_WARN, LOG_INFO, LOG_DEBUG };
enum log_format { LOG_TEXT = 0, LOG_JSON };

/* Parses "error|warn|info|debug"; returns 0 or -EINVAL. */
int log_level_parse(const char *s, enum log_level *out);
/* Parses "text|json"; returns 0 or -EINVAL. */
int log_format_parse(const char *s, enum log_format *out);

void log_setup(enum log_level level, enum log_format format);
enum log_level log_get_level(void);
/* Changes the level only (SIGHUP reload of log.level). Main thread. */
void log_set_level(enum log_level level);

/*
 * Registers a secret: every later log line has each occurrence replaced by
 * "***". Borrows nothing (the string is copied). Secrets shorter than 4
 * bytes are ignored, so that masking cannot shred ordinary words.
 */
void log_add_secret(const char *secret);

/*
 * Copies src into dst (size dstlen, always NUL-terminated) with every
 * registered secret replaced by "***". Returns dst.
 */
char *log_mask(const char *src, char *dst, size_t dstlen);

/*
 * Writes src into out (cap bytes, NUL-terminated) so that a log line stays
 * one line of valid UTF-8 whatever the bytes (a Kafka payload, a config
 * key, an HTTP reply): invalid UTF-8 becomes U+FFFD; newline and carriage
 * return become \n and \r; other control bytes \xNN (text) or \u00NN
 * (json, which also escapes '"', '\' and tab). Stops before a unit that
 * would not fit. Returns the length written.
 */
size_t log_escape(const char *src, char *out, size_t cap, int json);

/* Frees the secret list (for leak checkers at exit). */
void log_release(void);

#if defined(__GNUC__)
#define LOG_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define LOG_PRINTF(a, b)
#endif

/* module is a short constant word such as "journal" or "intake". */
void log_msg(enum log_level level, const char *module, const char *fmt, ...)
    LOG_PRINTF(3, 4);
void log_vmsg(enum log_level level, const char *module, const char *fmt,
              va_list ap);

#define log_error(mod, ...) log_msg(LOG_ERROR, mod, __VA_ARGS__)
#define log_warn(mod, ...)  log_msg(LOG_WARN, mod, __VA_ARGS__)
#define log_info(mod, ...)  log_msg(LOG_INFO, mod, __VA_ARGS__)
#define log_debug(mod, ...)                                                    \
    do {                                                                       \
        if (log_get_level() >= LOG_DEBUG) {                                    \
            log_msg(LOG_DEBUG, mod, __VA_ARGS__);                              \
        }                                                                      \
    } while (0)

#endif
