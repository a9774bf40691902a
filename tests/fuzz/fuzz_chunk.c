/*
 * fuzz_chunk.c - libFuzzer target: journal chunk decoding (chunk_reader) on
 * arbitrary bytes, as `kadx recover` and the forwarder read chunks from a
 * journal that may be damaged. The first 8 bytes are the chunk's first
 * offset. Every event read must lie inside the input.
 */
#include "storage/chunk.h"

#include <assert.h>
#include <errno.h>
#include <stdint.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct chunk_reader r;
    struct chunk_event ev;
    int64_t first = 0;
    int rc;

    if (size >= 8) {
        memcpy(&first, data, 8);
        data += 8;
        size -= 8;
    }
    chunk_reader_init(&r, data, size, first);
    while ((rc = chunk_reader_next(&r, &ev)) == 1) {
        assert(ev.value_len == 0 ||
               (ev.value >= data && ev.value + ev.value_len <= data + size));
        assert(ev.key == NULL ||
               (ev.key >= data && ev.key + ev.key_len <= data + size));
        assert(
            ev.headers_len == 0 ||
            (ev.headers >= data && ev.headers + ev.headers_len <= data + size));
    }
    assert(rc == 0 || rc == -EIO);
    return 0;
}
