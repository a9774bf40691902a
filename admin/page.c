/*
 * page.c - serves the status page (page.h). The page's bytes and its
 * Content-Security-Policy come from page_html.h, which meson generates
 * from admin/page.html with admin/embed_page.py at build time. Owns
 * nothing; loop thread.
 */
#include "admin/page.h"

#include <string.h>

#include "page_html.h"

int page_owns(const char *path)
{
    return strcmp(path, "/") == 0;
}

void page_handle(struct http_request *req)
{
    const char *method = http_req_method(req);
    /* CSP: only the page's own inline style and script (by hash) and
     * fetches to its origin; the others keep the page from being sniffed,
     * framed, cached or leaking its address */
    static const struct http_header h[] = {
        {"Content-Type", "text/html; charset=utf-8"},
        {"Content-Security-Policy", PAGE_CSP},
        {"X-Content-Type-Options", "nosniff"},
        {"X-Frame-Options", "DENY"},
        {"Referrer-Policy", "no-referrer"},
        {"Cache-Control", "no-store"},
    };

    /* HEAD: http.c sends the headers (the length) without the body */
    if (strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0) {
        http_respond(req, 200, h, sizeof(h) / sizeof(h[0]), page_html,
                     PAGE_HTML_LEN);
        return;
    }
    {
        char body[256];
        struct http_header allow = {"Allow", "GET, HEAD"};

        http_error_body_default(405, "method not allowed", body, sizeof(body),
                                NULL);
        http_respond_json(req, 405, &allow, 1, body);
    }
}
