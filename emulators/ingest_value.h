/*
 * ingest_value.h - the conversions of ingest_value.c that the body parsers
 * of ingest.c share (the public ones, datetime/timespan/text, are in
 * ingest.h). Not for use outside ingest*.c.
 */
#ifndef KADX_EMULATOR_INGEST_VALUE_H
#define KADX_EMULATOR_INGEST_VALUE_H

#include "emulators/kusto.h"

#include <cjson/cJSON.h>
#include <stddef.h>

#define TICKS_PER_SEC 10000000LL

/* Narrows s/len to the text without leading and trailing white space. */
void ingest_trim(const char **s, size_t *len);

/* v := a null of type t. */
void ingest_value_null(struct kusto_value *v, enum kusto_type t);

/* Converts a JSON value (NULL: missing) to type t into v (a value that does
 * not convert is a null, ADX's rule); 0, or < 0 as ingest_convert_text
 * (out of memory). */
int ingest_convert_json(const cJSON *item, enum kusto_type t,
                        struct kusto_value *v);

#endif
