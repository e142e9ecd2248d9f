/*
 * errors.c — the one table from ck_err to HTTP status and error code, and
 * the AKV-shaped error body {"error":{"code","message","innererror"}}.
 *
 * Server-side failures (5xx) do not echo the internal message to the caller:
 * it may name files or statements. The caller gets the request id to quote,
 * and the full message goes to the log. 503 is the exception: its message
 * says which dependency is unreachable, which the caller needs.
 */
#include "http/http.h"

static const struct {
    unsigned status;
    const char *code;
} err_table[CK_ERR_COUNT] = {
    [CK_OK] = {200, "OK"},
    [CK_EINVAL] = {400, "BadParameter"},
    [CK_ENOTFOUND] = {404, "NotFound"},
    [CK_ECONFLICT] = {409, "Conflict"},
    [CK_EUNAUTH] = {401, "Unauthorized"},
    [CK_EFORBIDDEN] = {403, "Forbidden"},
    [CK_ETOOBIG] = {413, "RequestTooLarge"},
    [CK_EMETHOD] = {405, "MethodNotAllowed"},
    [CK_EGONE] = {410, "Gone"},
    [CK_EINTEGRITY] = {400, "BadParameter"},
    [CK_ECRYPTO] = {500, "InternalError"},
    [CK_EUNAVAIL] = {503, "ServiceUnavailable"},
    [CK_ENOMEM] = {500, "InternalError"},
    [CK_EIO] = {500, "InternalError"},
    [CK_EINTERNAL] = {500, "InternalError"},
};

unsigned ck_http_status_of(ck_err e)
{
    if ((unsigned)e >= CK_ERR_COUNT)
        return 500;
    return err_table[e].status;
}

const char *ck_http_code_of(ck_err e)
{
    if ((unsigned)e >= CK_ERR_COUNT)
        return "InternalError";
    return err_table[e].code;
}

json_t *ck_http_error_body(ck_err e, const char *request_id)
{
    unsigned status = ck_http_status_of(e);
    const char *code = ck_err_code_get() ? ck_err_code_get() : ck_http_code_of(e);
    json_t *err = json_object();
    json_object_set_new(err, "code", json_string(code));
    /* 503 says which dependency is unavailable and that a retry may work:
     * the caller needs that; other 5xx stay opaque. */
    if (status >= 500 && status != 503) {
        char *msg = ck_sprintf("The server could not complete the request; quote request id %s "
                               "to the operator.",
                               request_id);
        json_object_set_new(err, "message", json_string(msg));
        free(msg);
    } else {
        const char *msg = ck_err_msg();
        json_object_set_new(err, "message", json_string(*msg ? msg : code));
    }
    if (ck_err_inner_get()) {
        json_t *inner = json_object();
        json_object_set_new(inner, "code", json_string(ck_err_inner_get()));
        json_object_set_new(err, "innererror", inner);
    }
    json_t *body = json_object();
    json_object_set_new(body, "error", err);
    return body;
}
