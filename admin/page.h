/*
 * page.h - the status page at GET / on the admin port (issue 17): one
 * self-contained HTML page (admin/page.html, embedded at build time by
 * admin/embed_page.py) that reads /status, /readyz and /dead-letters and
 * pauses and resumes routes through the admin POST endpoints. See
 * admin/ADMIN.md, "Status page".
 *
 * Threading: loop thread (called from admin/api.c's router).
 */
#ifndef KADX_ADMIN_PAGE_H
#define KADX_ADMIN_PAGE_H

#include "admin/http.h"

/* 1 when path is the page's ("/"). */
int page_owns(const char *path);

/*
 * Answers req (a path page_owns accepted): GET and HEAD get the page with
 * its Content-Security-Policy and the other hardening headers, other
 * methods 405. The page holds no data, so it needs no token: the token
 * guards the endpoints it reads (admin.token_on_get) and the POSTs it
 * makes, and the page asks for it. Always responds.
 */
void page_handle(struct http_request *req);

#endif
