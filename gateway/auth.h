/*
 * auth.h - bearer tokens for ADX: a static token, AAD v2 client credentials
 * (client secret), managed identity (IMDS) and workload identity (federated
 * token file), per DESIGN.md "Configuration" and adx-protocol.md section 3.
 *
 * A struct auth fetches its first token when started, caches it, refreshes
 * it in the background before it expires (a fifth of its lifetime early, at
 * most 5 minutes), retries failed token requests with exponential backoff
 * and jitter, and tells one listener whenever a new token is in place. The
 * scope is the configured one, else `<KustoServiceResourceId>/.default` from
 * the cluster's /v1/rest/auth/metadata, else `<cluster>/.default`. Every
 * secret and token it sees is registered with log_add_secret().
 *
 * Threading: loop thread only (it uses the loop's struct adx for HTTP).
 */
#ifndef KADX_AUTH_H
#define KADX_AUTH_H

#include "gateway/adx.h"
#include "gateway/config.h"

#include <stdint.h>
#include <uv.h>

struct auth;

struct auth_options {
    const struct config_auth *cfg; /* borrowed; must outlive the auth */
    const char *cluster;           /* engine URL (metadata, default scope) */
    int64_t retry_initial_ms;      /* token request backoff; 0 = 1000 */
    int64_t retry_max_ms;          /* backoff cap; 0 = 60000 */
    long timeout_ms;               /* per token request; 0 = 20000 */
};

/* Called on the loop thread when a new token is in place. */
typedef void (*auth_cb)(void *arg);

/*
 * Creates the provider (nothing is fetched yet). http is borrowed and must
 * outlive the auth. Returns 0 or -errno with a message in err (e.g. a
 * missing client_id); *out is freed by auth_free().
 */
int auth_new(uv_loop_t *loop, struct adx *http, const struct auth_options *o,
             struct auth **out, char *err, size_t errlen);

/* Starts fetching (no-op for static tokens and no auth). 0 or -errno. */
int auth_start(struct auth *a);

/* Sets the listener told about each new token (cb may be NULL). */
void auth_set_listener(struct auth *a, auth_cb cb, void *arg);

/*
 * 1 when requests may go out: no auth configured, or a token that is valid
 * for at least a few more seconds.
 */
int auth_ready(const struct auth *a);

/*
 * The current bearer token (borrowed: valid until the next return to the
 * loop), or NULL when there is none (no auth, or not fetched yet).
 */
const char *auth_token(const struct auth *a);

/*
 * A request got 401 with token `used` (NULL = the current one): drop it
 * (when it is still the cached one) and fetch a new one at once, unless a
 * fetch is already running. A static token cannot be refreshed: returns
 * -EPERM; otherwise 0.
 */
int auth_invalidate(struct auth *a, const char *used);

/* Expiry of the cached token (wall clock ms since the epoch), 0 = none. */
int64_t auth_expires_ms(const struct auth *a);

/* Last token-endpoint error (no secrets), "" when the last fetch worked. */
const char *auth_last_error(const struct auth *a);

/* Tokens fetched, token requests failed (for /status and /metrics). */
int64_t auth_fetches(const struct auth *a);
int64_t auth_failures(const struct auth *a);

/*
 * Stops the timers and the request in flight; memory is freed by the close
 * callbacks (run the loop afterwards). NULL-safe. Must not be called from
 * inside the listener.
 */
void auth_free(struct auth *a);

/*
 * Parses a token endpoint's 200 reply (AAD v2, IMDS, the emulator): a JSON
 * object with a non-empty `access_token` (at most 32 KiB, no space, CR or
 * LF) and its lifetime from `expires_in` (seconds, number or string), else
 * `expires_on` (Unix seconds) minus now_s, else one hour; clamped to
 * 2 s..1 day. On 0 *token is a malloc'd copy (the caller registers it as a
 * secret and frees it) and the copy in the parsed tree is wiped. -EBADMSG
 * when the reply has no usable token, -ENOMEM. Any input is safe (fuzzed:
 * tests/fuzz/fuzz_token.c).
 */
int auth_parse_token_reply(const char *body, size_t len, int64_t now_s,
                           char **token, int64_t *life_s);

#endif
