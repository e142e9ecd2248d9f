/*
 * server.c — libmicrohttpd over TLS: request state, authentication before
 * the body, body limits, dispatch, responses and the access log.
 *
 * libmicrohttpd calls the access handler several times per request: once
 * with the headers, then once per body fragment, then once more with no
 * data. We route and authenticate on the first call so a 401 (or a 413 for
 * a declared Content-Length over the limit) is queued before any body byte
 * is read — the Azure SDK depends on that: its first request of every
 * client carries no token and no body and must meet the challenge.
 */
#include "http_internal.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

struct ck_http_server {
    struct MHD_Daemon *d;
    struct ck_http_config cfg;
    char *cert;
    char *key;
    unsigned port;
    int inflight; /* atomic */
};

struct req_state {
    struct ck_http_req req;
    struct ck_route_match match;
    bool matched;
    bool responded; /* a response was queued on the first call */
    bool too_big;
    /* Streamed bodies: the handler's stream, and its first failure. */
    bool streaming;
    size_t streamed;
    ck_err stream_rc;
    char stream_msg[512];
    const char *stream_code, *stream_inner;
    int64_t start_ms;
    unsigned status;
    const char *principal_name;
    char *principal_name_copy;
    struct ck_http_server *srv;
};

static bool begin_stream(struct req_state *st, enum MHD_Result *ret);

/* Keep the URL as sent: we split it into segments first and decode each
 * segment after, so an encoded '/' inside a name cannot add a segment. */
static size_t keep_raw(void *cls, struct MHD_Connection *c, char *s)
{
    return strlen(s);
}

bool ck_http_pct_decode(char *s)
{
    char *o = s;
    for (char *p = s; *p; p++) {
        if (*p != '%') {
            *o++ = *p;
            continue;
        }
        int hi = ck_hex_digit((unsigned char)p[1]),
            lo = hi < 0 ? -1 : ck_hex_digit((unsigned char)p[2]);
        /* An encoded NUL would cut the string short: refuse it. */
        if (hi < 0 || lo < 0 || (hi | lo) == 0)
            return false;
        *o++ = (char)(hi << 4 | lo);
        p += 2;
    }
    *o = '\0';
    return true;
}

const char *ck_http_header(const struct ck_http_req *req, const char *name)
{
    return MHD_lookup_connection_value(req->conn_, MHD_HEADER_KIND, name);
}

char *ck_http_query(const struct ck_http_req *req, const char *name)
{
    const char *v = MHD_lookup_connection_value(req->conn_, MHD_GET_ARGUMENT_KIND, name);
    if (!v)
        return NULL;
    char *d = ck_strdup(v);
    for (char *p = d; *p; p++)
        if (*p == '+')
            *p = ' ';
    if (!ck_http_pct_decode(d)) {
        free(d);
        return NULL;
    }
    return d;
}

static void add_common_headers(struct MHD_Response *r, const struct req_state *st)
{
    MHD_add_response_header(r, "x-ms-request-id", st->req.request_id);
    MHD_add_response_header(r, "Cache-Control", "no-store");
    MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
    MHD_add_response_header(r, "Strict-Transport-Security", "max-age=31536000");
}

/* Response bodies may hold key material: libmicrohttpd gets its own copy
 * and hands it back to this function to be wiped when sent. */
static enum MHD_Result send_body(struct req_state *st, unsigned status, const char *ctype,
                                 const void *p, size_t n, const char *location)
{
    char *copy = ck_xmalloc(n + 1);
    if (n)
        memcpy(copy, p, n);
    struct MHD_Response *r =
        MHD_create_response_from_buffer_with_free_callback(n, copy, ck_free_wiped);
    if (!r) {
        free(copy);
        return MHD_NO;
    }
    add_common_headers(r, st);
    if (n || ctype)
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE,
                                ctype ? ctype : "application/json; charset=utf-8");
    if (location)
        MHD_add_response_header(r, MHD_HTTP_HEADER_LOCATION, location);
    if (status == 401 && st->srv->cfg.auth.challenge)
        MHD_add_response_header(r, MHD_HTTP_HEADER_WWW_AUTHENTICATE, st->srv->cfg.auth.challenge);
    st->status = status;
    enum MHD_Result ret = MHD_queue_response(st->req.conn_, status, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result send_json(struct req_state *st, unsigned status, json_t *body)
{
    char *s = json_dumps(body, JSON_COMPACT);
    enum MHD_Result ret = send_body(st, status, NULL, s, s ? strlen(s) : 0, NULL);
    free(s);
    return ret;
}

static enum MHD_Result send_error(struct req_state *st, ck_err e)
{
    unsigned status = ck_http_status_of(e);
    if (status >= 500)
        ck_log(CK_LOG_ERROR, "request failed", "request_id", st->req.request_id, "error",
               ck_err_name(e), "detail", ck_err_msg(), NULL);
    json_t *body = ck_http_error_body(e, st->req.request_id);
    enum MHD_Result ret = send_json(st, status, body);
    json_decref(body);
    return ret;
}

static ck_err authenticate(struct req_state *st)
{
    const struct ck_http_auth *a = &st->srv->cfg.auth;
    if (!a->authenticate)
        return CK_OK;
    const char *authz = ck_http_header(&st->req, MHD_HTTP_HEADER_AUTHORIZATION);
    const char *name = NULL;
    ck_err rc = a->authenticate(a->ctx, authz, &st->req.principal, &name);
    if (rc != CK_OK)
        return rc;
    st->principal_name = name;
    return CK_OK;
}

/* First call: request state, routing, authentication, declared-size check.
 * Returns true when a response has already been queued. */
static bool begin_request(struct req_state *st, struct MHD_Connection *conn, const char *url,
                          const char *method, enum MHD_Result *ret)
{
    struct ck_http_req *req = &st->req;
    req->conn_ = conn;
    req->method = method;
    req->path = url;
    if (ck_uuid_v4(req->request_id) != CK_OK)
        strcpy(req->request_id, "00000000-0000-4000-8000-000000000000");
    const char *host = ck_http_header(req, MHD_HTTP_HEADER_HOST);
    req->host = host ? host : "";
    req->origin = ck_sprintf("https://%s", req->host);
    req->seg = ck_http_split_path(url, &req->nseg);

    bool bad_escape = false;
    for (size_t i = 0; i < req->nseg; i++)
        bad_escape |= !ck_http_pct_decode(req->seg[i]);

    ck_err route_rc = bad_escape
                          ? ck_err_set(CK_EINVAL, "the request path has a malformed %% escape")
                          : ck_router_match(st->srv->cfg.router, req, &st->match);
    st->matched = route_rc == CK_OK;
    char route_msg[512];
    snprintf(route_msg, sizeof route_msg, "%s", ck_err_msg());

    if (!(st->matched && (st->match.flags & CK_ROUTE_PUBLIC))) {
        ck_err rc = authenticate(st);
        if (rc != CK_OK) {
            *ret = send_error(st, rc);
            return true;
        }
    }
    if (!st->matched) {
        ck_err_set(route_rc, "%s", route_msg);
        *ret = send_error(st, route_rc);
        return true;
    }
    req->ctx = st->match.ctx;
    const char *cl = ck_http_header(req, MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (cl && strtoull(cl, NULL, 10) > st->match.max_body) {
        *ret = send_error(st, ck_err_set(CK_ETOOBIG,
                                         "the request body is larger than the limit of %zu bytes",
                                         st->match.max_body));
        return true;
    }
    if (st->match.flags & CK_ROUTE_STREAM)
        return begin_stream(st, ret);
    return false;
}

/* libmicrohttpd pulls a streamed response through these. */
struct reader_box {
    struct ck_http_reader r;
};

static ssize_t reader_cb(void *cls, uint64_t pos, char *buf, size_t max)
{
    struct reader_box *b = cls;
    size_t got = 0;
    if (b->r.read(b->r.ctx, (uint8_t *)buf, max, &got) != CK_OK) {
        ck_log(CK_LOG_ERROR, "a streamed response ended early", "detail", ck_err_msg(), NULL);
        return MHD_CONTENT_READER_END_WITH_ERROR;
    }
    return got ? (ssize_t)got : MHD_CONTENT_READER_END_OF_STREAM;
}

static void reader_free(void *cls)
{
    struct reader_box *b = cls;
    if (b->r.free)
        b->r.free(b->r.ctx);
    free(b);
}

static enum MHD_Result send_reader(struct req_state *st, struct ck_http_resp *resp)
{
    struct reader_box *b = ck_xcalloc(1, sizeof *b);
    b->r = resp->reader;
    memset(&resp->reader, 0, sizeof resp->reader); /* the box owns it now */
    struct MHD_Response *r =
        MHD_create_response_from_callback(b->r.size < 0 ? MHD_SIZE_UNKNOWN : (uint64_t)b->r.size,
                                          64 * 1024, reader_cb, b, reader_free);
    if (!r) {
        reader_free(b);
        return MHD_NO;
    }
    add_common_headers(r, st);
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE,
                            resp->content_type ? resp->content_type : "application/octet-stream");
    st->status = resp->status ? resp->status : 200;
    enum MHD_Result ret = MHD_queue_response(st->req.conn_, st->status, r);
    MHD_destroy_response(r);
    return ret;
}

/* Answers with the handler's outcome and releases the response. */
static enum MHD_Result send_resp(struct req_state *st, ck_err rc, struct ck_http_resp *resp)
{
    enum MHD_Result ret;
    if (rc != CK_OK) {
        ret = send_error(st, rc);
    } else if (resp->reader.read) {
        ret = send_reader(st, resp);
    } else if (resp->json) {
        char *s = json_dumps(resp->json, JSON_COMPACT);
        ret = send_body(st, resp->status ? resp->status : 200, NULL, s, s ? strlen(s) : 0,
                        resp->location);
        if (s)
            ck_wipe(s, strlen(s));
        free(s);
    } else {
        ret = send_body(st, resp->status ? resp->status : 200,
                        resp->raw.n ? resp->content_type : NULL, resp->raw.p, resp->raw.n,
                        resp->location);
    }
    if (resp->reader.free) /* not sent: an error came first */
        resp->reader.free(resp->reader.ctx);
    json_decref(resp->json);
    ck_wipe(resp->raw.p, resp->raw.n);
    ck_buf_free(&resp->raw);
    free(resp->location);
    return ret;
}

/* A CK_ROUTE_STREAM route meets its handler before the body: it refuses, or
 * accepts by setting req->stream. Returns true when a response was queued. */
static bool begin_stream(struct req_state *st, enum MHD_Result *ret)
{
    struct ck_http_resp resp = {0};
    ck_err_clear();
    ck_err rc = st->match.handler(&st->req, &resp);
    if (rc == CK_OK && st->req.stream.data && st->req.stream.end) {
        st->streaming = true;
        return false;
    }
    if (rc == CK_OK && !resp.json && !resp.raw.n && !resp.reader.read && !resp.status)
        rc = ck_err_set(CK_EINTERNAL, "a streaming handler neither accepted nor answered");
    *ret = send_resp(st, rc, &resp);
    return true;
}

static void stream_fail(struct req_state *st, ck_err rc)
{
    if (st->stream_rc != CK_OK)
        return;
    st->stream_rc = rc;
    snprintf(st->stream_msg, sizeof st->stream_msg, "%s", ck_err_msg());
    st->stream_code = ck_err_code_get();
    st->stream_inner = ck_err_inner_get();
}

static void stream_data(struct req_state *st, const char *p, size_t n)
{
    if (st->stream_rc != CK_OK)
        return;
    st->streamed += n;
    if (st->streamed > st->match.max_body) {
        stream_fail(st,
                    ck_err_set(CK_ETOOBIG, "the request body is larger than the limit of %zu bytes",
                               st->match.max_body));
        return;
    }
    ck_err_clear();
    ck_err rc = st->req.stream.data(st->req.stream.ctx, (const uint8_t *)p, n);
    if (rc != CK_OK)
        stream_fail(st, rc);
}

static enum MHD_Result stream_end(struct req_state *st)
{
    struct ck_http_resp resp = {0};
    ck_err rc = st->stream_rc;
    if (rc == CK_OK) {
        ck_err_clear();
        rc = st->req.stream.end(st->req.stream.ctx, &st->req, &resp);
    } else {
        ck_err_set(rc, "%s", st->stream_msg);
        ck_err_code(st->stream_code, st->stream_inner);
    }
    return send_resp(st, rc, &resp);
}

static enum MHD_Result dispatch(struct req_state *st)
{
    struct ck_http_req *req = &st->req;
    if (st->too_big)
        return send_error(st, ck_err_set(CK_ETOOBIG,
                                         "the request body is larger than the limit of %zu bytes",
                                         st->match.max_body));
    if (!(st->match.flags & CK_ROUTE_RAW) && req->body.n > 0) {
        json_error_t jerr;
        req->json =
            json_loadb((const char *)req->body.p, req->body.n, JSON_REJECT_DUPLICATES, &jerr);
        if (!req->json)
            return send_error(st, ck_err_set(CK_EINVAL,
                                             "the request body is not valid JSON: %s (line %d, "
                                             "column %d)",
                                             jerr.text, jerr.line, jerr.column));
        if (!json_is_object(req->json))
            return send_error(st, ck_err_set(CK_EINVAL, "the request body must be a JSON object"));
    }
    struct ck_http_resp resp = {0};
    ck_err_clear();
    ck_err rc = st->match.handler(req, &resp);
    return send_resp(st, rc, &resp);
}

static enum MHD_Result on_access(void *cls, struct MHD_Connection *conn, const char *url,
                                 const char *method, const char *version, const char *upload_data,
                                 size_t *upload_data_size, void **con_cls)
{
    struct ck_http_server *srv = cls;
    struct req_state *st = *con_cls;
    if (!st) {
        st = ck_xcalloc(1, sizeof *st);
        st->srv = srv;
        st->start_ms = ck_now_ms();
        __atomic_add_fetch(&srv->inflight, 1, __ATOMIC_SEQ_CST);
        *con_cls = st;
        enum MHD_Result ret = MHD_YES;
        st->responded = begin_request(st, conn, url, method, &ret);
        return ret;
    }
    if (st->responded) {
        /* A response is queued; discard whatever body still arrives. */
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (st->streaming) {
        if (*upload_data_size > 0) {
            stream_data(st, upload_data, *upload_data_size);
            *upload_data_size = 0;
            return MHD_YES;
        }
        st->responded = true;
        return stream_end(st);
    }
    if (*upload_data_size > 0) {
        if (!st->too_big && st->req.body.n + *upload_data_size <= st->match.max_body)
            ck_buf_append(&st->req.body, upload_data, *upload_data_size);
        else
            st->too_big = true;
        *upload_data_size = 0;
        return MHD_YES;
    }
    st->responded = true;
    return dispatch(st);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    struct ck_http_server *srv = cls;
    struct req_state *st = *con_cls;
    if (!st)
        return;
    char status[8], ms[24];
    snprintf(status, sizeof status, "%u", st->status);
    snprintf(ms, sizeof ms, "%lld", (long long)(ck_now_ms() - st->start_ms));
    ck_log(CK_LOG_INFO, "request", "request_id", st->req.request_id, "method", st->req.method,
           "path", st->req.path, "status", status, "ms", ms, "principal",
           st->principal_name ? st->principal_name : "-", "completed",
           toe == MHD_REQUEST_TERMINATED_COMPLETED_OK ? "ok" : "aborted", NULL);
    struct ck_http_req *req = &st->req;
    if (req->stream.free)
        req->stream.free(req->stream.ctx);
    if (req->principal && srv->cfg.auth.principal_free)
        srv->cfg.auth.principal_free(req->principal);
    for (size_t i = 0; i < req->nseg; i++)
        free(req->seg[i]);
    free(req->seg);
    for (size_t i = 0; i < req->nparam_; i++)
        free(req->param_values_[i]);
    free(req->param_values_);
    free((char *)req->origin);
    json_decref(req->json);
    /* Bodies may carry key material (imports, unwrap results). */
    ck_wipe(req->body.p, req->body.n);
    ck_buf_free(&req->body);
    free(st);
    *con_cls = NULL;
    __atomic_sub_fetch(&srv->inflight, 1, __ATOMIC_SEQ_CST);
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    size_t n = strlen(msg);
    while (n && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
        msg[--n] = '\0';
    ck_log(CK_LOG_DEBUG, "libmicrohttpd", "detail", msg, NULL);
}

static ck_err parse_listen(const char *listen, struct sockaddr_storage *ss, bool *v6)
{
    char host[128];
    const char *colon = strrchr(listen, ':');
    if (!colon || (size_t)(colon - listen) >= sizeof host)
        return ck_err_set(CK_EINVAL, "--listen must be HOST:PORT, got '%s'", listen);
    memcpy(host, listen, (size_t)(colon - listen));
    host[colon - listen] = '\0';
    char *end;
    long port = strtol(colon + 1, &end, 10);
    if (*end || port < 0 || port > 65535)
        return ck_err_set(CK_EINVAL, "--listen has an invalid port in '%s'", listen);
    memset(ss, 0, sizeof *ss);
    size_t hl = strlen(host);
    if (hl >= 2 && host[0] == '[' && host[hl - 1] == ']') {
        host[hl - 1] = '\0';
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)ss;
        a->sin6_family = AF_INET6;
        a->sin6_port = htons((uint16_t)port);
        if (inet_pton(AF_INET6, host + 1, &a->sin6_addr) != 1)
            return ck_err_set(CK_EINVAL, "--listen has an invalid IPv6 address in '%s'", listen);
        *v6 = true;
        return CK_OK;
    }
    struct sockaddr_in *a = (struct sockaddr_in *)ss;
    a->sin_family = AF_INET;
    a->sin_port = htons((uint16_t)port);
    if (strcmp(host, "localhost") == 0)
        strcpy(host, "127.0.0.1");
    if (inet_pton(AF_INET, host, &a->sin_addr) != 1)
        return ck_err_set(CK_EINVAL, "--listen has an invalid IPv4 address in '%s'", listen);
    *v6 = false;
    return CK_OK;
}

ck_err ck_http_start(const struct ck_http_config *cfg, struct ck_http_server **out)
{
    struct sockaddr_storage ss;
    bool v6 = false;
    CK_TRY(parse_listen(cfg->listen, &ss, &v6));
    if (!cfg->cert_pem || !cfg->key_pem)
        return ck_err_set(CK_EINVAL, "a TLS certificate and key are required: ckey serves HTTPS "
                                     "only");
    struct ck_http_server *s = ck_xcalloc(1, sizeof *s);
    s->cfg = *cfg;
    s->cert = ck_strdup(cfg->cert_pem);
    s->key = ck_strdup(cfg->key_pem);
    unsigned threads = cfg->threads;
    if (!threads) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        threads = n > 0 ? (unsigned)n : 2;
    }
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_TLS | MHD_USE_ERROR_LOG |
                     MHD_USE_ITC | (v6 ? MHD_USE_IPv6 : 0);
    if (cfg->thread_per_connection) {
        flags |= MHD_USE_THREAD_PER_CONNECTION | MHD_USE_POLL;
    } else {
        flags |= MHD_USE_EPOLL;
    }
    s->d = MHD_start_daemon(
        flags, 0, NULL, NULL, on_access, s, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
        MHD_OPTION_HTTPS_MEM_CERT, s->cert, MHD_OPTION_HTTPS_MEM_KEY, s->key,
        /* No pool size in per-connection mode: repeat the timeout instead. */
        cfg->thread_per_connection ? MHD_OPTION_CONNECTION_TIMEOUT : MHD_OPTION_THREAD_POOL_SIZE,
        cfg->thread_per_connection ? 120u : threads, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)120,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned)1024, MHD_OPTION_NOTIFY_COMPLETED, on_completed, s,
        MHD_OPTION_UNESCAPE_CALLBACK, keep_raw, NULL, MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL,
        MHD_OPTION_END);
    if (!s->d) {
        ck_wipe(s->key, strlen(s->key));
        free(s->key);
        free(s->cert);
        free(s);
        return ck_err_set(CK_EIO,
                          "cannot listen on %s (address in use, or a bad TLS "
                          "certificate/key)",
                          cfg->listen);
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(s->d, MHD_DAEMON_INFO_BIND_PORT);
    s->port = info ? info->port : 0;
    *out = s;
    return CK_OK;
}

unsigned ck_http_port(const struct ck_http_server *s)
{
    return s->port;
}

void ck_http_stop(struct ck_http_server *s, unsigned drain_ms)
{
    if (!s)
        return;
    MHD_socket fd = MHD_quiesce_daemon(s->d);
    if (fd != MHD_INVALID_SOCKET)
        close(fd);
    for (unsigned waited = 0;
         waited < drain_ms && __atomic_load_n(&s->inflight, __ATOMIC_SEQ_CST) > 0; waited += 20)
        usleep(20 * 1000);
    MHD_stop_daemon(s->d);
    ck_wipe(s->key, strlen(s->key));
    free(s->key);
    free(s->cert);
    free(s);
}
