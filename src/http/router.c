/*
 * router.c — method + path pattern matching.
 *
 * Patterns are split into segments once, at registration. Matching keeps
 * empty segments: the Azure SDK addresses "the latest version" with an empty
 * segment (GET /keys/k/, POST /keys/k//wrapkey), so "/keys/k/" has two
 * segments, "keys" and "k" followed by "" — not the same as "/keys/k".
 */
#include "http_internal.h"

#include <stdlib.h>
#include <string.h>

struct route {
    char *method;
    char **seg;
    size_t nseg;
    bool rest; /* last segment is "{*name}" */
    const char **names;
    size_t nnames;
    ck_http_handler h;
    void *ctx;
    unsigned flags;
    size_t max_body;
};

struct ck_router {
    struct route *routes;
    size_t n;
};

struct ck_router *ck_router_new(void)
{
    return ck_xcalloc(1, sizeof(struct ck_router));
}

void ck_router_free(struct ck_router *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->n; i++) {
        struct route *rt = &r->routes[i];
        for (size_t j = 0; j < rt->nseg; j++)
            free(rt->seg[j]);
        free(rt->seg);
        free(rt->names);
        free(rt->method);
    }
    free(r->routes);
    free(r);
}

/* Splits "/a/b//c" into {"a","b","","c"}; the leading '/' is dropped. */
char **ck_http_split_path(const char *path, size_t *n)
{
    if (*path == '/')
        path++;
    size_t count = 1;
    for (const char *p = path; *p; p++)
        count += *p == '/';
    char **seg = ck_xcalloc(count, sizeof *seg);
    size_t i = 0;
    for (const char *p = path;; i++) {
        const char *e = strchr(p, '/');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        seg[i] = ck_xmalloc(len + 1);
        memcpy(seg[i], p, len);
        seg[i][len] = '\0';
        if (!e)
            break;
        p = e + 1;
    }
    *n = i + 1;
    return seg;
}

void ck_router_add(struct ck_router *r, const char *method, const char *pattern, ck_http_handler h,
                   void *ctx, unsigned flags, size_t max_body)
{
    r->routes = realloc(r->routes, (r->n + 1) * sizeof *r->routes);
    if (!r->routes)
        abort();
    struct route *rt = &r->routes[r->n++];
    memset(rt, 0, sizeof *rt);
    rt->method = ck_strdup(method);
    rt->seg = ck_http_split_path(pattern, &rt->nseg);
    rt->names = ck_xcalloc(rt->nseg, sizeof *rt->names);
    for (size_t i = 0; i < rt->nseg; i++) {
        char *s = rt->seg[i];
        size_t len = strlen(s);
        if (len >= 2 && s[0] == '{' && s[len - 1] == '}') {
            s[len - 1] = '\0';
            if (s[1] == '*') {
                /* A rest capture must be last. */
                if (i != rt->nseg - 1)
                    abort();
                rt->rest = true;
                rt->names[rt->nnames++] = s + 2;
            } else {
                rt->names[rt->nnames++] = s + 1;
            }
        }
    }
    rt->h = h;
    rt->ctx = ctx;
    rt->flags = flags;
    rt->max_body = max_body ? max_body : CK_HTTP_JSON_LIMIT;
}

static bool is_capture(const char *s)
{
    return s[0] == '{';
}

static bool path_matches(const struct route *rt, char **seg, size_t nseg)
{
    if (rt->rest ? nseg < rt->nseg : nseg != rt->nseg)
        return false;
    for (size_t i = 0; i < rt->nseg; i++) {
        if (is_capture(rt->seg[i]))
            continue;
        if (strcmp(rt->seg[i], seg[i]) != 0)
            return false;
    }
    return true;
}

ck_err ck_router_match(const struct ck_router *r, struct ck_http_req *req, struct ck_route_match *m)
{
    bool path_seen = false;
    for (size_t i = 0; i < r->n; i++) {
        const struct route *rt = &r->routes[i];
        if (!path_matches(rt, req->seg, req->nseg))
            continue;
        path_seen = true;
        if (strcmp(rt->method, req->method) != 0)
            continue;
        m->handler = rt->h;
        m->ctx = rt->ctx;
        m->flags = rt->flags;
        m->max_body = rt->max_body;
        req->param_names_ = rt->names;
        req->nparam_ = rt->nnames;
        req->param_values_ = ck_xcalloc(rt->nnames ? rt->nnames : 1, sizeof(char *));
        size_t k = 0;
        for (size_t j = 0; j < rt->nseg; j++) {
            if (!is_capture(rt->seg[j]))
                continue;
            if (rt->rest && j == rt->nseg - 1) {
                struct ck_buf joined = {0};
                for (size_t x = j; x < req->nseg; x++) {
                    if (x > j)
                        ck_buf_append(&joined, "/", 1);
                    ck_buf_append(&joined, req->seg[x], strlen(req->seg[x]));
                }
                ck_buf_append(&joined, "", 1);
                req->param_values_[k++] = (char *)joined.p;
            } else {
                req->param_values_[k++] = ck_strdup(req->seg[j]);
            }
        }
        return CK_OK;
    }
    if (path_seen)
        return ck_err_set(CK_EMETHOD, "method %s is not allowed on %s", req->method, req->path);
    return ck_err_set(CK_ENOTFOUND, "no such resource: %s %s", req->method, req->path);
}

const char *ck_http_param(const struct ck_http_req *req, const char *name)
{
    for (size_t i = 0; i < req->nparam_; i++)
        if (strcmp(req->param_names_[i], name) == 0)
            return req->param_values_[i];
    return NULL;
}
