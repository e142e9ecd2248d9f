/*
 * http_internal.h — what the files of http/ share and nothing else sees.
 */
#ifndef CK_HTTP_INTERNAL_H
#define CK_HTTP_INTERNAL_H

#include "http/http.h"

struct ck_route_match {
    ck_http_handler handler;
    void *ctx;
    unsigned flags;
    size_t max_body;
};

char **ck_http_split_path(const char *path, size_t *n);
/* Percent-decodes in place; false on a malformed escape. */
bool ck_http_pct_decode(char *s);
ck_err ck_router_match(const struct ck_router *r, struct ck_http_req *req,
                       struct ck_route_match *m);

#endif
