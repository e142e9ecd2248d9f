/*
 * client — the HTTPS client (libcurl) that the CLI, and later the key
 * provider, use to talk to a ckey server or any AKV-compatible vault.
 *
 * One struct ck_client keeps one curl handle, so consecutive calls reuse the
 * TLS connection. TLS is always verified: against --cacert when given, else
 * the system store. Names under *.localhost resolve to loopback (libcurl).
 *
 * Errors: a non-2xx answer becomes a ck_err mapped back from the status
 * (400 → CK_EINVAL, 401 → CK_EUNAUTH, 403 → CK_EFORBIDDEN, 404 →
 * CK_ENOTFOUND, 409 → CK_ECONFLICT, 410 → CK_EGONE, 413 → CK_ETOOBIG,
 * 429/5xx → CK_EUNAVAIL) whose message is the server's error.message.
 * A transport failure (refused, TLS, timeout) is CK_EUNAVAIL.
 *
 * Answers are read with their Retry-After header (ck_client_retry_after), so
 * a caller that retries can honour it.
 *
 * Thread-safety: a struct ck_client is used by one thread at a time.
 */
#ifndef CK_CLIENT_H
#define CK_CLIENT_H

#include <jansson.h>

#include "base/base.h"

struct ck_client_config {
    const char *url;      /* base URL, e.g. https://127.0.0.1:8443; NULL when every
                             call names an absolute https:// URL */
    const char *token;    /* bearer token, or NULL */
    const char *cacert;   /* PEM file of trusted CAs, or NULL for the system store */
    long timeout_s;       /* whole-request timeout; 0 = 60 s */
    long timeout_ms;      /* whole-request timeout in ms; overrides timeout_s when set */
    long max_connections; /* keep-alive connections kept; 0 = libcurl's default (5) */
};

struct ck_client;

ck_err ck_client_new(const struct ck_client_config *cfg, struct ck_client **out);
void ck_client_free(struct ck_client *c);

/* path is appended to the base URL unless it is an absolute https:// URL.
 * body may be NULL (no body). *resp (optional) gets the parsed JSON answer,
 * NULL for an empty body. *status (optional) gets the HTTP status even when
 * an error is returned. */
ck_err ck_client_json(struct ck_client *c, const char *method, const char *path, json_t *body,
                      long *status, json_t **resp);
/* The same with raw bytes: body (n bytes; NULL for none) is sent with
 * content_type (NULL: application/octet-stream); *resp (optional) gets the
 * answer's bytes, the caller's to free. Errors are mapped as above. */
ck_err ck_client_raw(struct ck_client *c, const char *method, const char *path, const uint8_t *body,
                     size_t n, const char *content_type, long *status, struct ck_buf *resp);

/* Streamed bodies, for files of any size: no whole-request timeout (a
 * transfer stalled for two minutes fails instead). progress (may be NULL)
 * is called with the bytes moved so far and the total (-1 when unknown). */
typedef void (*ck_client_progress)(void *ctx, int64_t done, int64_t total);
/* Sends size bytes read from fd (size -1: until EOF, chunked) as an
 * application/octet-stream body; *resp (optional) gets the JSON answer. */
ck_err ck_client_upload(struct ck_client *c, const char *method, const char *path, int fd,
                        int64_t size, ck_client_progress progress, void *pctx, long *status,
                        json_t **resp);
/* GETs path and writes a 2xx answer's body to fd as it arrives (an error
 * answer is not written; it becomes the error as above). *got gets the
 * bytes written, *expected the Content-Length (-1 when none). A body that
 * ends before Content-Length is CK_EUNAVAIL, with *got < *expected. */
ck_err ck_client_download(struct ck_client *c, const char *path, int fd,
                          ck_client_progress progress, void *pctx, long *status, int64_t *got,
                          int64_t *expected);

/* Replaces the bearer token (NULL: none) for the following calls; the old
 * one is wiped. */
void ck_client_set_token(struct ck_client *c, const char *token);

/* Seconds the last answer's Retry-After header asked for (delay-seconds or
 * HTTP-date); 0 when it had none or there was no answer. */
long ck_client_retry_after(const struct ck_client *c);

/* Percent-encodes one path segment or query value (malloc'd). */
char *ck_client_escape(const char *s);

#endif
