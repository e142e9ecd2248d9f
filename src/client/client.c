/*
 * client.c — libcurl easy handle reuse, JSON bodies, and error mapping.
 */
#include "client/client.h"

#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct ck_client {
    CURL *curl;
    char *url;
    char *auth_header; /* holds the token: wiped on free */
    char *cacert;
    long timeout_ms;
    long max_connections;
    long retry_after; /* seconds, from the last answer */
};

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;

static void curl_init(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
}

ck_err ck_client_new(const struct ck_client_config *cfg, struct ck_client **out)
{
    pthread_once(&curl_once, curl_init);
    if (cfg->url && strncmp(cfg->url, "https://", 8) != 0)
        return ck_err_set(CK_EINVAL, "the server URL must start with https:// (got '%s')",
                          cfg->url);
    struct ck_client *c = ck_xcalloc(1, sizeof *c);
    c->curl = curl_easy_init();
    if (!c->curl) {
        free(c);
        return ck_err_set(CK_ENOMEM, "cannot create an HTTP client");
    }
    c->url = ck_strdup(cfg->url);
    size_t n = c->url ? strlen(c->url) : 0;
    while (n > 8 && c->url[n - 1] == '/')
        c->url[--n] = '\0';
    ck_client_set_token(c, cfg->token);
    c->cacert = ck_strdup(cfg->cacert);
    c->timeout_ms = cfg->timeout_ms > 0  ? cfg->timeout_ms
                    : cfg->timeout_s > 0 ? cfg->timeout_s * 1000
                                         : 60000;
    c->max_connections = cfg->max_connections;
    *out = c;
    return CK_OK;
}

void ck_client_set_token(struct ck_client *c, const char *token)
{
    if (c->auth_header) {
        ck_wipe(c->auth_header, strlen(c->auth_header));
        free(c->auth_header);
    }
    c->auth_header = token ? ck_sprintf("Authorization: Bearer %s", token) : NULL;
}

long ck_client_retry_after(const struct ck_client *c)
{
    return c->retry_after;
}

void ck_client_free(struct ck_client *c)
{
    if (!c)
        return;
    curl_easy_cleanup(c->curl);
    ck_client_set_token(c, NULL);
    free(c->url);
    free(c->cacert);
    free(c);
}

char *ck_client_escape(const char *s)
{
    pthread_once(&curl_once, curl_init);
    char *e = curl_easy_escape(NULL, s, 0);
    char *r = ck_strdup(e);
    curl_free(e);
    return r;
}

static size_t on_data(char *p, size_t size, size_t nmemb, void *ud)
{
    struct ck_buf *b = ud;
    size_t n = size * nmemb;
    if (b->n + n > (64u << 20) || ck_buf_append(b, p, n) != CK_OK)
        return 0;
    return n;
}

static ck_err status_err(long status)
{
    switch (status) {
    case 400:
        return CK_EINVAL;
    case 401:
        return CK_EUNAUTH;
    case 403:
        return CK_EFORBIDDEN;
    case 404:
        return CK_ENOTFOUND;
    case 405:
        return CK_EMETHOD;
    case 409:
        return CK_ECONFLICT;
    case 410:
        return CK_EGONE;
    case 413:
        return CK_ETOOBIG;
    case 429:
        return CK_EUNAVAIL;
    default:
        return status >= 500 ? CK_EUNAVAIL : CK_EINTERNAL;
    }
}

/* The parts of a request that every call shares: the URL, the headers
 * (Accept, Content-Type when given, Authorization; Expect: 100-continue
 * only when expect), and the handle's options. *url and *hdr are the
 * caller's to free after the transfer. */
static ck_err prepare(struct ck_client *c, const char *method, const char *path,
                      const char *content_type, const char *accept, bool expect, long timeout_ms,
                      char **url_out, struct curl_slist **hdr_out)
{
    CURL *h = c->curl;
    c->retry_after = 0;
    bool absolute = strncmp(path, "https://", 8) == 0;
    if (!absolute && !c->url)
        return ck_err_set(CK_EINVAL, "'%s' is not an absolute https:// URL", path);
    char *url = absolute ? ck_strdup(path) : ck_sprintf("%s%s", c->url, path);
    char *accept_hdr = ck_sprintf("Accept: %s", accept);
    char *type_hdr = content_type ? ck_sprintf("Content-Type: %s", content_type) : NULL;
    struct curl_slist *hdr = NULL;
    hdr = curl_slist_append(hdr, accept_hdr);
    if (type_hdr)
        hdr = curl_slist_append(hdr, type_hdr);
    if (c->auth_header)
        hdr = curl_slist_append(hdr, c->auth_header);
    if (!expect)
        hdr = curl_slist_append(hdr, "Expect:");
    free(accept_hdr);
    free(type_hdr);

    curl_easy_reset(h);
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdr);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, timeout_ms);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, c->timeout_ms < 10000 ? c->timeout_ms : 10000L);
    if (c->max_connections > 0)
        curl_easy_setopt(h, CURLOPT_MAXCONNECTS, c->max_connections);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "https");
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 2L);
    if (c->cacert)
        curl_easy_setopt(h, CURLOPT_CAINFO, c->cacert);
    *url_out = url;
    *hdr_out = hdr;
    return CK_OK;
}

/* After curl_easy_perform: a transport failure, or a non-2xx answer whose
 * error body (in got) gives the message. *code gets the status. */
static ck_err finish(struct ck_client *c, CURLcode cc, const char *url, const struct ck_buf *got,
                     long *code)
{
    CURL *h = c->curl;
    *code = 0;
    if (cc != CURLE_OK) {
        /* Name the origin actually asked, without path or query. */
        const char *slash = strchr(url + 8, '/');
        return ck_err_set(CK_EUNAVAIL, "cannot reach %.*s: %s",
                          slash ? (int)(slash - url) : (int)strlen(url), url,
                          curl_easy_strerror(cc));
    }
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, code);
    curl_off_t retry_after = 0;
    if (curl_easy_getinfo(h, CURLINFO_RETRY_AFTER, &retry_after) == CURLE_OK && retry_after > 0)
        c->retry_after = retry_after > 86400 ? 86400 : (long)retry_after;
    if (*code < 200 || *code > 299) {
        json_t *parsed = got->n ? json_loadb((const char *)got->p, got->n, 0, NULL) : NULL;
        json_t *msg = json_object_get(json_object_get(parsed, "error"), "message");
        ck_err rc = ck_err_set(status_err(*code), "%s",
                               json_is_string(msg) ? json_string_value(msg) : "unexpected answer");
        json_decref(parsed);
        return rc;
    }
    return CK_OK;
}

/* One request, shared by the JSON and the raw calls: body (n bytes, NULL for
 * none) goes with content_type; the answer's bytes land in *got, which the
 * caller wipes and frees. A transport failure or a non-2xx answer becomes
 * the error the module comment describes. */
static ck_err perform(struct ck_client *c, const char *method, const char *path,
                      const uint8_t *body, size_t n, const char *content_type, const char *accept,
                      long *status, struct ck_buf *got)
{
    CURL *h = c->curl;
    if (status)
        *status = 0;
    char *url = NULL;
    struct curl_slist *hdr = NULL;
    CK_TRY(prepare(c, method, path, body ? content_type : NULL, accept, false, c->timeout_ms, &url,
                   &hdr));
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, got);
    if (body) {
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)n);
    } else if (strcmp(method, "GET") == 0) {
        curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
    } else if (strcmp(method, "POST") == 0 || strcmp(method, "PUT") == 0) {
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, "");
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, 0L);
    }

    long code = 0;
    ck_err rc = finish(c, curl_easy_perform(h), url, got, &code);
    if (status)
        *status = code;
    curl_slist_free_all(hdr);
    free(url);
    return rc;
}

/* ---------- streamed bodies ---------- */

/* A stalled transfer (under 1 byte/s for this long) fails; a long one that
 * moves does not: streamed calls have no whole-request timeout. */
#define STREAM_STALL_S 120L

struct xfer {
    struct ck_client *c;
    int fd;
    int64_t done, total;
    ck_client_progress progress;
    void *pctx;
    struct ck_buf answer; /* the JSON answer of an upload; a download's error body */
    ck_err io_rc;         /* a local read or write failure */
};

static void xfer_progress(struct xfer *x)
{
    if (x->progress)
        x->progress(x->pctx, x->done, x->total);
}

static size_t on_upload(char *buf, size_t size, size_t nmemb, void *ud)
{
    struct xfer *x = ud;
    for (;;) {
        ssize_t r = read(x->fd, buf, size * nmemb);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            x->io_rc = ck_err_set(CK_EIO, "cannot read the file to send: %s", strerror(errno));
            return CURL_READFUNC_ABORT;
        }
        x->done += r;
        xfer_progress(x);
        return (size_t)r;
    }
}

static size_t on_download(char *p, size_t size, size_t nmemb, void *ud)
{
    struct xfer *x = ud;
    size_t n = size * nmemb;
    long code = 0;
    curl_easy_getinfo(x->c->curl, CURLINFO_RESPONSE_CODE, &code);
    if (code < 200 || code > 299)
        return on_data(p, size, nmemb, &x->answer);
    if (x->total < 0) {
        curl_off_t len = -1;
        if (curl_easy_getinfo(x->c->curl, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &len) == CURLE_OK)
            x->total = len;
    }
    for (size_t off = 0; off < n;) {
        ssize_t w = write(x->fd, p + off, n - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0) {
            x->io_rc = ck_err_set(CK_EIO, "cannot write the file: %s", strerror(errno));
            return 0;
        }
        off += (size_t)w;
    }
    x->done += (int64_t)n;
    xfer_progress(x);
    return n;
}

static void stream_options(CURL *h)
{
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, STREAM_STALL_S);
}

ck_err ck_client_upload(struct ck_client *c, const char *method, const char *path, int fd,
                        int64_t size, ck_client_progress progress, void *pctx, long *status,
                        json_t **resp)
{
    CURL *h = c->curl;
    if (status)
        *status = 0;
    if (resp)
        *resp = NULL;
    char *url = NULL;
    struct curl_slist *hdr = NULL;
    CK_TRY(prepare(c, method, path, "application/octet-stream", "application/json", true, 0, &url,
                   &hdr));
    struct xfer x = {.c = c, .fd = fd, .total = size, .progress = progress, .pctx = pctx};
    stream_options(h);
    curl_easy_setopt(h, CURLOPT_UPLOAD, 1L);
    curl_easy_setopt(h, CURLOPT_READFUNCTION, on_upload);
    curl_easy_setopt(h, CURLOPT_READDATA, &x);
    if (size >= 0)
        curl_easy_setopt(h, CURLOPT_INFILESIZE_LARGE, (curl_off_t)size);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &x.answer);
    long code = 0;
    CURLcode cc = curl_easy_perform(h);
    ck_err rc = x.io_rc != CK_OK ? x.io_rc : finish(c, cc, url, &x.answer, &code);
    if (rc == CK_OK && resp && x.answer.n) {
        *resp = json_loadb((const char *)x.answer.p, x.answer.n, 0, NULL);
        if (!*resp)
            rc = ck_err_set(CK_EINTERNAL, "the server's answer is not JSON");
    }
    if (status)
        *status = code;
    ck_buf_free(&x.answer);
    curl_slist_free_all(hdr);
    free(url);
    return rc;
}

ck_err ck_client_download(struct ck_client *c, const char *path, int fd,
                          ck_client_progress progress, void *pctx, long *status, int64_t *got,
                          int64_t *expected)
{
    CURL *h = c->curl;
    if (status)
        *status = 0;
    *got = 0;
    *expected = -1;
    char *url = NULL;
    struct curl_slist *hdr = NULL;
    CK_TRY(prepare(c, "GET", path, NULL, "*/*", false, 0, &url, &hdr));
    struct xfer x = {.c = c, .fd = fd, .total = -1, .progress = progress, .pctx = pctx};
    stream_options(h);
    curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_download);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &x);
    CURLcode cc = curl_easy_perform(h);
    long code = 0;
    ck_err rc = x.io_rc != CK_OK ? x.io_rc : finish(c, cc, url, &x.answer, &code);
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
    curl_off_t len = -1;
    if (curl_easy_getinfo(h, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &len) == CURLE_OK)
        *expected = len;
    if (code >= 200 && code <= 299) {
        *got = x.done;
        /* A body shorter than announced is a failure even when curl did
         * not notice (a connection closed without Content-Length). */
        if (rc == CK_OK && *expected >= 0 && *got != *expected)
            rc = ck_err_set(CK_EUNAVAIL, "the server stopped after %lld of %lld bytes",
                            (long long)*got, (long long)*expected);
    }
    if (status)
        *status = code;
    ck_buf_free(&x.answer);
    curl_slist_free_all(hdr);
    free(url);
    return rc;
}

ck_err ck_client_json(struct ck_client *c, const char *method, const char *path, json_t *body,
                      long *status, json_t **resp)
{
    if (resp)
        *resp = NULL;
    char *payload = body ? json_dumps(body, JSON_COMPACT) : NULL;
    struct ck_buf got = {0};
    ck_err rc = perform(c, method, path, (const uint8_t *)payload, payload ? strlen(payload) : 0,
                        "application/json", "application/json", status, &got);
    json_t *parsed = NULL;
    if (rc == CK_OK && got.n) {
        parsed = json_loadb((const char *)got.p, got.n, 0, NULL);
        if (!parsed)
            rc = ck_err_set(CK_EINTERNAL, "the server's answer is not JSON");
    }
    if (rc == CK_OK && resp)
        *resp = parsed;
    else
        json_decref(parsed);
    /* Bodies may carry tokens or key material. */
    if (payload)
        ck_wipe(payload, strlen(payload));
    ck_wipe(got.p, got.n);
    free(payload);
    ck_buf_free(&got);
    return rc;
}

ck_err ck_client_raw(struct ck_client *c, const char *method, const char *path, const uint8_t *body,
                     size_t n, const char *content_type, long *status, struct ck_buf *resp)
{
    if (resp)
        *resp = (struct ck_buf){0};
    struct ck_buf got = {0};
    ck_err rc =
        perform(c, method, path, body, n, content_type ? content_type : "application/octet-stream",
                "*/*", status, &got);
    if (rc == CK_OK && resp) {
        *resp = got;
        return rc;
    }
    ck_wipe(got.p, got.n);
    ck_buf_free(&got);
    return rc;
}
