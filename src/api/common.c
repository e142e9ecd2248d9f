/*
 * common.c — what every surface shares: the authentication hook, the
 * caller, operator checks and audit records for requests.
 */
#include "api/api.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

ck_err ck_api_authenticate(void *ctx, const char *authorization, void **principal,
                           const char **name)
{
    struct ck_api *api = ctx;
    if (!authorization || !*authorization) {
        ck_err_set(CK_EUNAUTH, "AKV10000: Request is missing a Bearer or PoP token.");
        return CK_EUNAUTH;
    }
    if (strncasecmp(authorization, "Bearer ", 7) != 0)
        return ck_err_set(CK_EUNAUTH, "the Authorization header must be 'Bearer <token>'");
    const char *token = authorization + 7;
    while (*token == ' ')
        token++;
    struct ck_principal *p;
    ck_err rc = ck_token_check(api->store, token, &p);
    if (rc != CK_OK)
        return rc;
    *principal = p;
    *name = ck_principal_name(p);
    return CK_OK;
}

void ck_api_principal_free(void *principal)
{
    ck_principal_free(principal);
}

char *ck_api_challenge(const struct ck_api *api)
{
    return ck_sprintf("Bearer authorization=\"https://login.ckey.local/%s\", "
                      "resource=\"https://vault.azure.net\"",
                      api->home_tenant);
}

const struct ck_principal *ck_api_caller(const struct ck_http_req *req)
{
    return req->principal;
}

void ck_api_audit(struct ck_api *api, const struct ck_http_req *req, const char *operation,
                  const char *target, ck_err result, const char *detail)
{
    const struct ck_principal *p = ck_api_caller(req);
    char res[160];
    if (result == CK_OK)
        snprintf(res, sizeof res, "success");
    else if (result == CK_EFORBIDDEN || result == CK_EUNAUTH)
        snprintf(res, sizeof res, "denied");
    else
        snprintf(res, sizeof res, "failed: %s", ck_err_name(result));
    struct ck_audit_event ev = {
        .principal = p ? ck_principal_name(p) : "-",
        .operation = operation,
        .target = target,
        .result = res,
        .request_id = req->request_id,
        .detail = detail,
    };
    /* Keep the request's error message: appending must not overwrite it. */
    char saved[512];
    snprintf(saved, sizeof saved, "%s", ck_err_msg());
    const char *code = ck_err_code_get(), *inner = ck_err_inner_get();
    if (ck_audit_append(api->audit, &ev) != CK_OK)
        ck_log(CK_LOG_ERROR, "audit append failed", "request_id", req->request_id, "operation",
               operation, "detail", ck_err_msg(), NULL);
    ck_err_set(result, "%s", saved);
    ck_err_code(code, inner);
}

ck_err ck_api_require_operator(struct ck_api *api, const struct ck_http_req *req,
                               const char *operation)
{
    const struct ck_principal *p = ck_api_caller(req);
    if (p && (p->roles & CK_ROLE_OPERATOR))
        return CK_OK;
    ck_err_set(CK_EFORBIDDEN, "the principal '%s' may not %s: it is not an operator",
               p ? ck_principal_name(p) : "-", operation);
    ck_api_audit(api, req, operation, "-", CK_EFORBIDDEN, NULL);
    return CK_EFORBIDDEN;
}

json_t *ck_api_principal_json(const struct ck_principal *p)
{
    char created[32];
    ck_time_rfc3339(p->created, created);
    json_t *o = json_object();
    json_object_set_new(o, "objectId", json_string(p->object_id));
    json_object_set_new(o, "tenantId", json_string(p->tenant_id));
    json_object_set_new(o, "type",
                        json_string(p->kind == CK_PRINCIPAL_USER ? "user" : "application"));
    if (p->upn)
        json_object_set_new(o, "userPrincipalName", json_string(p->upn));
    if (p->display_name)
        json_object_set_new(o, "displayName", json_string(p->display_name));
    if (p->app_id)
        json_object_set_new(o, "applicationId", json_string(p->app_id));
    json_t *roles = json_array();
    if (p->roles & CK_ROLE_OPERATOR)
        json_array_append_new(roles, json_string("operator"));
    json_object_set_new(o, "roles", roles);
    json_object_set_new(o, "created", json_string(created));
    return o;
}
