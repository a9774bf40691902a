/*
 * render.h - what the ADX emulator answers with, as text written into a
 * base/sbuf.h buffer: the v1 and v2 shapes of a query or command result
 * (typed values, datetime and timespan formats of adx-protocol.md) and the
 * OneApi error body. Pure functions, no state; any thread.
 */
#ifndef KADX_EMULATOR_RENDER_H
#define KADX_EMULATOR_RENDER_H

#include "base/sbuf.h"
#include "emulators/kusto.h"

#include <stddef.h>
#include <stdint.h>

/* A JSON string literal, quotes included. */
void rb_json(struct sbuf *b, const char *s);

/* A result in the v1 shape (Tables[], values as JSON by v1 type). */
void render_v1(struct sbuf *b, const struct kusto_result *res);
/* A result in the v2 shape (frames: DataSetHeader, DataTable per table,
 * QueryCompletionInformation, DataSetCompletion). */
void render_v2(struct sbuf *b, const struct kusto_result *res, const char *crid,
               const char *aid);
/* The OneApi error body (adx-protocol.md section 1). */
void render_error(struct sbuf *b, int status, const char *code,
                  const char *detail, int permanent, const char *crid,
                  const char *aid);
/* http_error_body_fn for the errors the HTTP server answers by itself
 * (400, 408, 413, 431, 503): the OneApi body into buf, its length. */
size_t render_server_error_body(int status, const char *message, char *buf,
                                size_t len, void *data);

#endif
