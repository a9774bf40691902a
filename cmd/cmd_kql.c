/*
 * cmd_kql.c - `kadx kql -c FILE [--sample EVENT.json]`: prints the KQL
 * management commands that make ADX ready for a config's routes (issue 17):
 * per database the streaming ingestion policy, per route the table with
 * kadx's metadata columns and the dedupe column (`.create-merge`: an
 * existing table keeps its columns and data), the IngestionTime policy the
 * dedupe query needs, and the ingestion mapping with an entry per column.
 *
 * kadx does not know the payload's fields: `--sample` gives one event (a
 * JSON object) whose top-level fields become columns of the same name, their
 * types taken from the sample's values. Without it a route with a mapping
 * gets its mapping printed as a comment only, since `.create-or-alter`
 * would replace the payload's entries with kadx's alone.
 *
 * Output format: docker/kql/setup.kql's (blocks separated by blank lines,
 * `//` comments), so docker/kql/apply.sh runs it. Exit codes: 0 printed,
 * 1 the sample cannot be read, 2 usage or config error.
 */
#include "cmd/cli.h"
#include "gateway/config.h"
#include "gateway/log.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct kcol {
    const char *name; /* column name */
    const char *type; /* KQL scalar type */
    const char *path; /* JSON field the mapping reads */
};

#define KQL_MAX_COLS 512

static void usage(FILE *f)
{
    fprintf(f, "usage: kadx kql -c FILE [--sample EVENT.json]\n\n"
               "Prints the KQL management commands that create or alter the "
               "routes'\ntables, ingestion mappings and policies for the "
               "config FILE: streaming\ningestion, the IngestionTime policy, "
               "kadx's metadata columns and the\ndedupe column (exactly once). "
               "--sample names a file holding one event\n(a JSON object): its "
               "top-level fields become columns of the same name,\ntyped from "
               "their values.\n");
}

/* An ISO-8601 date and time ("2026-11-24T12:00:00...") */
static int looks_datetime(const char *s)
{
    static const char pat[] = "dddd-dd-ddTdd:dd";

    for (size_t i = 0; pat[i] != '\0'; i++) {
        if (pat[i] == 'd'
                ? !isdigit((unsigned char)s[i])
                : (s[i] != pat[i] && !(pat[i] == 'T' && s[i] == ' '))) {
            return 0;
        }
    }
    return 1;
}

static const char *json_type(const cJSON *v)
{
    if (cJSON_IsBool(v)) {
        return "bool";
    }
    if (cJSON_IsNumber(v)) {
        double d = v->valuedouble;

        return d == (double)(long long)d && d > -9e15 && d < 9e15 ? "long"
                                                                  : "real";
    }
    if (cJSON_IsString(v)) {
        return looks_datetime(v->valuestring) ? "datetime" : "string";
    }
    return "dynamic"; /* object, array, null */
}

/* A KQL identifier as is, anything else as ['name']. */
static void put_name(FILE *out, const char *name)
{
    int plain = name[0] != '\0' && !isdigit((unsigned char)name[0]);

    for (const char *p = name; *p != '\0' && plain; p++) {
        plain = isalnum((unsigned char)*p) || *p == '_';
    }
    if (plain) {
        fputs(name, out);
        return;
    }
    fputs("['", out);
    for (const char *p = name; *p != '\0'; p++) {
        if (*p == '\'' || *p == '\\') {
            fputc('\\', out);
        }
        fputc(*p, out);
    }
    fputs("']", out);
}

static int has_col(const struct kcol *c, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++) {
        if (strcmp(c[i].name, name) == 0) {
            return 1;
        }
    }
    return 0;
}

static void add_col(struct kcol *c, size_t *n, const char *name,
                    const char *type, const char *path)
{
    if (name == NULL || has_col(c, *n, name) || *n >= KQL_MAX_COLS) {
        return;
    }
    c[*n].name = name;
    c[*n].type = type;
    c[*n].path = path;
    (*n)++;
}

/* The mapping's JSON text (owned) or NULL (out of memory). */
static char *mapping_json(const struct kcol *c, size_t n)
{
    cJSON *arr = cJSON_CreateArray();
    char *text = NULL;
    char path[512];

    if (arr == NULL) {
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        cJSON *e = cJSON_CreateObject();
        cJSON *props =
            e != NULL ? cJSON_AddObjectToObject(e, "Properties") : NULL;

        snprintf(path, sizeof(path), "$['%s']", c[i].path);
        if (strspn(c[i].path, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRS"
                              "TUVWXYZ0123456789_") == strlen(c[i].path)) {
            snprintf(path, sizeof(path), "$.%s", c[i].path);
        }
        if (props == NULL || !cJSON_AddStringToObject(e, "column", c[i].name) ||
            !cJSON_AddStringToObject(props, "Path", path)) {
            cJSON_Delete(e);
            cJSON_Delete(arr);
            return NULL;
        }
        /* "column" first, as ADX prints it */
        cJSON_DetachItemViaPointer(e, props);
        cJSON_AddItemToObject(e, "Properties", props);
        cJSON_AddItemToArray(arr, e);
    }
    text = cJSON_PrintUnformatted(arr);
    cJSON_Delete(arr);
    return text;
}

/* Prints one route's commands; 0 or -ENOMEM. */
static int print_route(FILE *out, const struct config_route *r,
                       const cJSON *sample)
{
    struct kcol *c = calloc(KQL_MAX_COLS, sizeof(*c));
    const struct config_meta *m = &r->meta;
    int csv = strcmp(r->format, "csv") == 0;
    char *mj = NULL;
    size_t n = 0;

    if (c == NULL) {
        return -ENOMEM;
    }
    fprintf(out, "// route '%s': %s '%s' -> %s.%s (%s%s%s%s)\n", r->name,
            r->topic != NULL ? "topic" : "topics matching",
            r->topic != NULL ? r->topic : r->topic_regex, r->database, r->table,
            r->format, r->mapping != NULL ? ", mapping '" : "",
            r->mapping != NULL ? r->mapping : "",
            r->mapping != NULL ? "'" : "");
    if (csv) {
        fprintf(out, "// csv: kadx adds no metadata columns and cannot be "
                     "exactly once here (no\n// dedupe column); the table and "
                     "its csv mapping are yours.\n");
    }
    for (const cJSON *f = sample != NULL ? sample->child : NULL;
         f != NULL && !csv; f = f->next) {
        add_col(c, &n, f->string, json_type(f), f->string);
    }
    if (!csv) {
        add_col(c, &n, m->topic, "string", m->topic);
        add_col(c, &n, m->partition, "int", m->partition);
        add_col(c, &n, m->offset, "long", m->offset);
        add_col(c, &n, m->timestamp, "datetime", m->timestamp);
        add_col(c, &n, m->key, "string", m->key);
        add_col(c, &n, m->headers, "dynamic", m->headers);
        if (r->dedupe_column != NULL) {
            /* the batch id lands in the dedupe column, not in a column
             * named after its JSON field */
            add_col(c, &n, r->dedupe_column, "string", m->batch_id);
        } else {
            add_col(c, &n, m->batch_id, "string", m->batch_id);
        }
    }
    if (n > 0) {
        fprintf(out, ".create-merge table ");
        put_name(out, r->table);
        fprintf(out, " (");
        for (size_t i = 0; i < n; i++) {
            fprintf(out, "%s", i > 0 ? ", " : "");
            put_name(out, c[i].name);
            fprintf(out, ": %s", c[i].type);
        }
        fprintf(out, ")\n\n");
    }
    if (r->dedupe_column != NULL) {
        fprintf(out, "// exactly once: kadx's dedupe query filters on "
                     "ingestion_time()\n.alter table ");
    } else {
        fprintf(out, "// no dedupe_column: a batch resent after an ambiguous "
                     "failure may be\n// duplicated (set meta.batch_id and "
                     "dedupe_column for exactly once)\n.alter table ");
    }
    put_name(out, r->table);
    fprintf(out, " policy ingestiontime true\n\n");
    if (r->mapping != NULL && !csv && n > 0) {
        mj = mapping_json(c, n);
        if (mj == NULL) {
            free(c);
            return -ENOMEM;
        }
        if (sample == NULL) {
            fprintf(out, "// without --sample the payload's columns are "
                         "unknown: add their entries\n// before running this "
                         "(it replaces the whole mapping)\n// ");
        }
        fprintf(out, ".create-or-alter table ");
        put_name(out, r->table);
        fprintf(out, " ingestion json mapping '%s' '%s'\n\n", r->mapping, mj);
        free(mj);
    } else if (!csv && r->mapping == NULL && r->dedupe_column != NULL &&
               m->batch_id != NULL &&
               strcmp(r->dedupe_column, m->batch_id) != 0) {
        fprintf(out,
                "// no mapping: ADX matches fields to columns by name, so "
                "meta.batch_id\n// ('%s') should equal dedupe_column "
                "('%s')\n\n",
                m->batch_id, r->dedupe_column);
    }
    free(c);
    return 0;
}

static cJSON *read_sample(const char *path)
{
    FILE *f = fopen(path, "rb");
    char *buf;
    size_t n;
    cJSON *j = NULL;

    if (f == NULL) {
        log_error("kql", "cannot read the sample '%s': %s", path,
                  strerror(errno));
        return NULL;
    }
    buf = malloc(1 << 20);
    if (buf != NULL) {
        n = fread(buf, 1, (1 << 20) - 1, f);
        buf[n] = '\0';
        j = cJSON_Parse(buf);
        free(buf);
    }
    fclose(f);
    if (!cJSON_IsObject(j)) {
        log_error("kql", "the sample '%s' is not one JSON object", path);
        cJSON_Delete(j);
        return NULL;
    }
    return j;
}

int cmd_kql(int argc, char **argv)
{
    const char *path = NULL;
    const char *sample_path = NULL;
    struct config *cfg = NULL;
    cJSON *sample = NULL;
    char err[512];
    int rc = 0;

    if (cli_wants_help(argc, argv)) {
        usage(stdout);
        return 0;
    }
    for (int i = 1; i < argc; i++) {
        const char **dst = NULL;

        if (strcmp(argv[i], "-c") == 0 || strcmp(argv[i], "--config") == 0) {
            dst = &path;
        } else if (strcmp(argv[i], "--sample") == 0) {
            dst = &sample_path;
        } else {
            return cli_usage_error("kql", "unknown option '%s'", argv[i]);
        }
        if (i + 1 >= argc) {
            return cli_usage_error("kql", "option '%s' needs a value", argv[i]);
        }
        *dst = argv[++i];
    }
    if (path == NULL) {
        return cli_usage_error("kql", "a config file is required (-c FILE)");
    }
    if (config_load_file(path, NULL, &cfg, err, sizeof(err)) < 0) {
        log_error("kql", "%s", err);
        return EXIT_USAGE;
    }
    if (sample_path != NULL && (sample = read_sample(sample_path)) == NULL) {
        config_free(cfg);
        return 1;
    }
    printf("// kadx kql -c %s: the ADX objects its routes need. Blocks are "
           "separated\n// by blank lines; run the management commands in "
           "order, each against\n// the database named above it "
           "(docker/kql/apply.sh does).\n\n",
           path);
    for (size_t i = 0; i < cfg->nroutes && rc == 0; i++) {
        const struct config_route *r = &cfg->routes[i];
        int seen = 0;

        for (size_t j = 0; j < i; j++) {
            seen |= strcmp(cfg->routes[j].database, r->database) == 0;
        }
        if (!seen) {
            printf("// database %s: streaming ingestion (kadx ingests with "
                   "it)\n.alter database ",
                   r->database);
            put_name(stdout, r->database);
            printf(" policy streamingingestion enable\n\n");
        }
        rc = print_route(stdout, r, sample);
    }
    cJSON_Delete(sample);
    config_free(cfg);
    if (rc < 0) {
        log_error("kql", "out of memory");
        return 1;
    }
    return fflush(stdout) == 0 ? 0 : 1;
}
