/*
 * http — the HTTPS server (libmicrohttpd over TLS), the router, JSON helpers
 * and the one table that turns a ck_err into an HTTP status and error body.
 *
 * Request flow, in the order a request meets it:
 *   1. route match on method and path (empty segments are kept, so
 *      "/keys/k//wrapkey" matches "/keys/{name}/{version}/wrapkey" with an
 *      empty version);
 *   2. authentication through the server's authenticate callback, on the
 *      first call for the request, before any body byte is read; a failure is
 *      a 401 with the configured WWW-Authenticate challenge (unknown routes
 *      are authenticated too, so their existence is not revealed);
 *   3. body collected up to the route's limit (default 1 MiB; more → 413);
 *      a JSON route with a non-empty body that does not parse → 400;
 *   4. the handler runs and fills a struct ck_http_resp, or returns a
 *      ck_err whose message and code become the error body.
 * Every response carries x-ms-request-id; every request gets one access log
 * line (method, path, status, time, principal; never bodies or headers).
 *
 * Threads: handlers run on the server's thread pool (one thread per core),
 * concurrently; they must be thread-safe. A request's memory belongs to the
 * server and is freed after the response is sent.
 */
#ifndef CK_HTTP_H
#define CK_HTTP_H

#include <jansson.h>

#include "base/base.h"

#define CK_HTTP_JSON_LIMIT (1u << 20)

struct ck_http_req;
struct ck_http_resp;

/* A streamed request body (routes flagged CK_ROUTE_STREAM). The handler
 * runs once, when the headers are in and before any body byte is read; it
 * may refuse at once by returning an error, or accept by setting
 * req->stream. Then data() gets the body piece by piece, and end() runs
 * once the body is complete to fill the response. An error from data()
 * answers the request with that error once the client stops sending (the
 * rest of the body is read and dropped). free() is always called last. */
struct ck_http_stream {
    void *ctx;
    ck_err (*data)(void *ctx, const uint8_t *p, size_t n);
    ck_err (*end)(void *ctx, struct ck_http_req *req, struct ck_http_resp *resp);
    void (*free)(void *ctx);
};

/* A streamed response body: read() fills up to max bytes into buf and
 * sets *got (0 = the end); an error ends the response early (the client
 * sees a truncated body, as it must: the status line is already sent). */
struct ck_http_reader {
    void *ctx;
    ck_err (*read)(void *ctx, uint8_t *buf, size_t max, size_t *got);
    void (*free)(void *ctx);
    int64_t size; /* -1: unknown (chunked transfer) */
};

struct ck_http_req {
    const char *method;
    const char *path; /* raw path, no query */
    char **seg;       /* percent-decoded path segments after the first '/' */
    size_t nseg;
    const char *host;   /* Host header ("" when absent) */
    const char *origin; /* "https://" + Host: for kid, nextLink and other links */
    char request_id[37];
    struct ck_buf body;
    json_t *json;                 /* parsed body of a JSON route; NULL when the body was empty */
    void *principal;              /* from the authenticate callback; NULL on public routes */
    void *ctx;                    /* the route's context pointer */
    struct ck_http_stream stream; /* set by a CK_ROUTE_STREAM handler */
    /* internal */
    const char *const *param_names_;
    char **param_values_;
    size_t nparam_;
    void *conn_;
};

struct ck_http_resp {
    unsigned status;              /* 0 means 200 */
    json_t *json;                 /* body, owned (decref'd by the server); NULL for no body */
    struct ck_buf raw;            /* alternative raw body, owned */
    const char *content_type;     /* default application/json; charset=utf-8 */
    char *location;               /* optional Location header, owned */
    struct ck_http_reader reader; /* when reader.read is set: a streamed body */
};

typedef ck_err (*ck_http_handler)(struct ck_http_req *req, struct ck_http_resp *resp);

enum ck_route_flags {
    CK_ROUTE_PUBLIC = 1 << 0, /* no authentication (only /healthz and the like) */
    CK_ROUTE_RAW = 1 << 1,    /* body is not JSON; not parsed */
    CK_ROUTE_STREAM = 1 << 2, /* body streamed to the handler (implies raw; see ck_http_stream) */
};

struct ck_router;
struct ck_router *ck_router_new(void);
void ck_router_free(struct ck_router *r);
/* pattern: "/keys/{name}/{version}/wrapkey"; a final "{*rest}" captures the
 * remaining segments joined by '/'. max_body 0 means CK_HTTP_JSON_LIMIT. */
void ck_router_add(struct ck_router *r, const char *method, const char *pattern, ck_http_handler h,
                   void *ctx, unsigned flags, size_t max_body);

/* A path parameter captured by the route ("" for an empty segment). */
const char *ck_http_param(const struct ck_http_req *req, const char *name);
/* A percent-decoded query parameter, malloc'd (free it); NULL when absent. */
char *ck_http_query(const struct ck_http_req *req, const char *name);
/* A request header, NULL when absent. */
const char *ck_http_header(const struct ck_http_req *req, const char *name);

/* Authentication: given the Authorization header (NULL when absent) decide
 * who is calling. On success set *principal (freed later with
 * principal_free) and *name (a printable id for the access log, borrowed from
 * the principal). Return CK_EUNAUTH with a message otherwise. */
struct ck_http_auth {
    ck_err (*authenticate)(void *ctx, const char *authorization, void **principal,
                           const char **name);
    void (*principal_free)(void *principal);
    void *ctx;
    const char *challenge; /* full WWW-Authenticate value */
};

struct ck_http_config {
    const char *listen; /* "127.0.0.1:8443", "[::1]:8443", "0.0.0.0:0" */
    const char *cert_pem;
    const char *key_pem;
    unsigned threads; /* 0: one per core */
    /* One thread per connection instead of a pool: needed when handlers
     * call this same server (the service role calling the vault role in one
     * process), or a pool of busy handlers could wait on each other. */
    bool thread_per_connection;
    struct ck_http_auth auth;
    struct ck_router *router; /* borrowed; must outlive the server */
};

struct ck_http_server;
ck_err ck_http_start(const struct ck_http_config *cfg, struct ck_http_server **out);
unsigned ck_http_port(const struct ck_http_server *s);
/* Stops accepting, waits up to drain_ms for requests in flight, then stops. */
void ck_http_stop(struct ck_http_server *s, unsigned drain_ms);

/* The one table: status and default error code for each ck_err. */
unsigned ck_http_status_of(ck_err e);
const char *ck_http_code_of(ck_err e);
/* {"error":{"code","message","innererror"?:{"code"}}} from the thread's error. */
json_t *ck_http_error_body(ck_err e, const char *request_id);

/* JSON helpers for handlers: fetch a typed member; CK_EINVAL with a message
 * naming the field when present with the wrong type. Absent: *out untouched,
 * *present false (present may be NULL when the field is required). */
ck_err ck_json_str(json_t *obj, const char *field, bool required, const char **out);
ck_err ck_json_int(json_t *obj, const char *field, bool required, int64_t *out, bool *present);
ck_err ck_json_bool(json_t *obj, const char *field, bool required, bool *out, bool *present);
/* Sets resp to 200 with the given JSON (stolen reference). */
ck_err ck_http_ok(struct ck_http_resp *resp, json_t *body);

#endif
