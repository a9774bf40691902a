/*
 * config_ingestion.c - the route's ingestion mode (streaming, queued,
 * managed) and the data-management URL's default: the small parts of the
 * configuration that queued ingestion (gateway/queued.c, QUEUED.md) adds,
 * kept out of config.c. Pure functions; any thread.
 */
#include "gateway/config.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const char *const ingestion_names[] = {"streaming", "queued", "managed"};

const char *config_ingestion_name(enum config_ingestion m)
{
    if ((size_t)m < sizeof(ingestion_names) / sizeof(ingestion_names[0])) {
        return ingestion_names[m];
    }
    return "?";
}

int config_ingestion_parse(const char *s, enum config_ingestion *out)
{
    for (size_t i = 0; i < sizeof(ingestion_names) / sizeof(ingestion_names[0]);
         i++) {
        if (strcasecmp(s, ingestion_names[i]) == 0) {
            *out = (enum config_ingestion)i;
            return 0;
        }
    }
    return -EINVAL;
}

/* A host that is an address or a single label (localhost, 127.0.0.1,
 * [::1]): no DNS name to put "ingest-" before. */
static int host_is_plain(const char *host, size_t n)
{
    int dots = 0;
    int alpha = 0;

    if (n > 0 && host[0] == '[') {
        return 1;
    }
    for (size_t i = 0; i < n; i++) {
        if (host[i] == '.') {
            dots++;
        } else if (isalpha((unsigned char)host[i])) {
            alpha = 1;
        }
    }
    return dots == 0 || !alpha;
}

int config_dm_url_default(const char *engine, char **out)
{
    const char *host = strstr(engine, "://");
    size_t pre;
    size_t hn;

    host = host != NULL ? host + 3 : engine;
    pre = (size_t)(host - engine);
    hn = strcspn(host, ":/");
    if (strncasecmp(host, "ingest-", 7) == 0 || host_is_plain(host, hn)) {
        *out = strdup(engine);
        return *out == NULL ? -ENOMEM : 0;
    }
    *out = malloc(strlen(engine) + 7 + 1);
    if (*out == NULL) {
        return -ENOMEM;
    }
    memcpy(*out, engine, pre);
    memcpy(*out + pre, "ingest-", 7);
    memcpy(*out + pre + 7, host, strlen(host) + 1);
    return 0;
}
