/*
 * fuzz_avro.c - libFuzzer target: gateway/avro.c on hostile bytes. The
 * first byte picks what the rest is: an Avro datum decoded with a fixed
 * schema that has every type (a recursive record, unions, arrays, maps,
 * enum, fixed), an object container file read as the emulator reads
 * ingest bodies, or a schema text parsed (and, when it parses, the input
 * decoded with it). Errors must come back as a status and a reason, never
 * a crash, a leak or an unbounded allocation.
 */
#include "gateway/avro.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static const char *const SCHEMA =
    "{\"type\":\"record\",\"name\":\"R\",\"namespace\":\"f\",\"fields\":["
    "{\"name\":\"s\",\"type\":\"string\"},{\"name\":\"i\",\"type\":\"int\"},"
    "{\"name\":\"l\",\"type\":\"long\"},{\"name\":\"f\",\"type\":\"float\"},"
    "{\"name\":\"d\",\"type\":\"double\"},{\"name\":\"b\",\"type\":\"bytes\"},"
    "{\"name\":\"o\",\"type\":\"boolean\"},"
    "{\"name\":\"e\",\"type\":{\"type\":\"enum\",\"name\":\"E\","
    "\"symbols\":[\"A\",\"B\",\"C\"]}},"
    "{\"name\":\"x\",\"type\":{\"type\":\"fixed\",\"name\":\"X\",\"size\":3}},"
    "{\"name\":\"a\",\"type\":{\"type\":\"array\",\"items\":[\"null\","
    "\"string\",\"long\"]}},"
    "{\"name\":\"m\",\"type\":{\"type\":\"map\",\"values\":\"double\"}},"
    "{\"name\":\"n\",\"type\":[\"null\",\"R\"]}]}";

static int row(void *arg, const char *json, size_t len)
{
    (void)arg;
    (void)json;
    (void)len;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct avro_schema *fixed;
    struct sbuf out = {0};
    char err[160];

    if (size < 1 || size > 1 << 20) {
        return 0;
    }
    if (fixed == NULL && avro_schema_parse(SCHEMA, &fixed, err, sizeof(err))) {
        abort();
    }
    out.max = 1 << 20;
    switch (data[0] % 3) {
    case 0:
        avro_to_json(fixed, data + 1, size - 1, &out, err, sizeof(err));
        avro_to_json(fixed, data + 1, size - 1, NULL, err, sizeof(err));
        break;
    case 1:
        avro_ocf_read(data + 1, size - 1, 1 << 20, row, NULL, err, sizeof(err));
        break;
    default: {
        char *text = malloc(size);
        struct avro_schema *s = NULL;

        if (text == NULL) {
            return 0;
        }
        memcpy(text, data + 1, size - 1);
        text[size - 1] = '\0';
        if (avro_schema_parse(text, &s, err, sizeof(err)) == 0) {
            size_t k = strlen(text) + 1;

            if (k < size - 1) {
                avro_to_json(s, data + 1 + k, size - 1 - k, &out, err,
                             sizeof(err));
            }
            avro_schema_free(s);
        }
        free(text);
        break;
    }
    }
    sbuf_release(&out);
    return 0;
}
