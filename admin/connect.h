/*
 * connect.h - Kafka Connect's REST API on kadx's admin port (issue 17), so
 * that scripts, Postman collections and kafka-ui's "Kafka Connect" view that
 * managed the Kusto sink connector work against kadx unchanged (shapes and
 * status codes of Kafka Connect's documented REST API; admin/ADMIN.md,
 * "Kafka Connect REST").
 *
 * A connector is the whole gateway when the config was a connector config
 * with a "name" (its routes are its tasks), else each route is a connector
 * named by the route, with one task. Read-only except pause, resume and
 * restart; create, delete and config changes answer 405 (the config file
 * is the source: edit it and send SIGHUP).
 *
 * Threading: loop thread (called from admin/api.c's router).
 */
#ifndef KADX_ADMIN_CONNECT_H
#define KADX_ADMIN_CONNECT_H

#include "admin/http.h"

struct config;
struct intake;
struct forwarder;

struct connect_ctx {
    const struct config *cfg;
    struct intake *intake;       /* may be NULL */
    struct forwarder *forwarder; /* may be NULL (not running) */
    int *paused_all;             /* the admin's whole-gateway pause flag */
    const char *worker_id;       /* "host:port" of the admin endpoint */
};

/* 1 when path is one of Connect's (/connectors..., /connector-plugins). */
int connect_owns(const char *path);

/*
 * Answers req (a path connect_owns accepted). The caller has checked the
 * bearer token for methods other than GET. Always responds.
 */
void connect_handle(const struct connect_ctx *c, struct http_request *req);

#endif
