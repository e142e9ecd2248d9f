/*
 * client.c — libcurl easy handle reuse, JSON bodies, and error mapping.
 */
#include "client/client.h"

#include <curl/curl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

struct ck_client {
    CURL *curl;
    char *url;
    char *auth_header; /* holds the token: wiped on free */
    char *cacert;
    long timeout_s;
};

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;

static void curl_init(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
}

ck_err ck_client_new(const struct ck_client_config *cfg, struct ck_client **out)
{
    pthread_once(&curl_once, curl_init);
    if (!cfg->url || strncmp(cfg->url, "https://", 8) != 0)
        return ck_err_set(CK_EINVAL, "the server URL must start with https:// (got '%s')",
                          cfg->url ? cfg->url : "");
    struct ck_client *c = ck_xcalloc(1, sizeof *c);
    c->curl = curl_easy_init();
    if (!c->curl) {
        free(c);
        return ck_err_set(CK_ENOMEM, "cannot create an HTTP client");
    }
    c->url = ck_strdup(cfg->url);
    size_t n = strlen(c->url);
    while (n > 8 && c->url[n - 1] == '/')
        c->url[--n] = '\0';
    if (cfg->token)
        c->auth_header = ck_sprintf("Authorization: Bearer %s", cfg->token);
    c->cacert = ck_strdup(cfg->cacert);
    c->timeout_s = cfg->timeout_s ? cfg->timeout_s : 60;
    *out = c;
    return CK_OK;
}

void ck_client_free(struct ck_client *c)
{
    if (!c)
        return;
    curl_easy_cleanup(c->curl);
    if (c->auth_header) {
        ck_wipe(c->auth_header, strlen(c->auth_header));
        free(c->auth_header);
    }
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

ck_err ck_client_json(struct ck_client *c, const char *method, const char *path, json_t *body,
                      long *status, json_t **resp)
{
    CURL *h = c->curl;
    char *url =
        strncmp(path, "https://", 8) == 0 ? ck_strdup(path) : ck_sprintf("%s%s", c->url, path);
    char *payload = body ? json_dumps(body, JSON_COMPACT) : NULL;
    struct ck_buf got = {0};
    struct curl_slist *hdr = NULL;
    hdr = curl_slist_append(hdr, "Accept: application/json");
    if (payload)
        hdr = curl_slist_append(hdr, "Content-Type: application/json");
    if (c->auth_header)
        hdr = curl_slist_append(hdr, c->auth_header);
    hdr = curl_slist_append(hdr, "Expect:");

    curl_easy_reset(h);
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdr);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &got);
    curl_easy_setopt(h, CURLOPT_TIMEOUT, c->timeout_s);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, 10L);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "https");
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 2L);
    if (c->cacert)
        curl_easy_setopt(h, CURLOPT_CAINFO, c->cacert);
    if (payload) {
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, payload);
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)strlen(payload));
    } else if (strcmp(method, "GET") == 0) {
        curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
    } else if (strcmp(method, "POST") == 0 || strcmp(method, "PUT") == 0) {
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, "");
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, 0L);
    }

    ck_err rc = CK_OK;
    long code = 0;
    if (resp)
        *resp = NULL;
    CURLcode cc = curl_easy_perform(h);
    if (cc != CURLE_OK) {
        /* Name the origin actually asked, without path or query. */
        const char *slash = strchr(url + 8, '/');
        rc = ck_err_set(CK_EUNAVAIL, "cannot reach %.*s: %s",
                        slash ? (int)(slash - url) : (int)strlen(url), url, curl_easy_strerror(cc));
        goto out;
    }
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
    json_t *parsed = NULL;
    if (got.n) {
        json_error_t jerr;
        parsed = json_loadb((const char *)got.p, got.n, 0, &jerr);
    }
    if (code < 200 || code > 299) {
        json_t *msg = json_object_get(json_object_get(parsed, "error"), "message");
        rc = ck_err_set(status_err(code), "%s",
                        json_is_string(msg) ? json_string_value(msg) : "unexpected answer");
        json_decref(parsed);
        goto out;
    }
    if (got.n && !parsed) {
        rc = ck_err_set(CK_EINTERNAL, "the server's answer is not JSON");
        goto out;
    }
    if (resp)
        *resp = parsed;
    else
        json_decref(parsed);
out:
    if (status)
        *status = code;
    curl_slist_free_all(hdr);
    /* Bodies may carry tokens or key material. */
    if (payload)
        ck_wipe(payload, strlen(payload));
    ck_wipe(got.p, got.n);
    free(payload);
    free(url);
    ck_buf_free(&got);
    return rc;
}
