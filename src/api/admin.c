/*
 * admin.c — the operator's surface: health, whoami, principals, tokens and
 * the audit log.
 *
 *   GET    /healthz                 no token
 *   GET    /whoami                  any principal
 *   GET    /admin/principals        operator
 *   POST   /admin/principals        operator  {"userPrincipalName"} |
 * {"displayName","applicationId"?} GET    /admin/tokens            operator  ?principal= POST
 * /admin/tokens            operator  {"principal","ttl"?}  → the token, once DELETE
 * /admin/tokens/{id}       operator GET    /admin/audit             operator  ?after=&max= POST
 * /admin/audit/verify      operator
 */
#include "api/api.h"

#include <stdlib.h>
#include <string.h>

#define DEFAULT_TOKEN_TTL (8 * 3600)

static ck_err get_healthz(struct ck_http_req *req, struct ck_http_resp *resp)
{
    return ck_http_ok(resp, json_pack("{s:s}", "status", "ok"));
}

static ck_err get_whoami(struct ck_http_req *req, struct ck_http_resp *resp)
{
    return ck_http_ok(resp, ck_api_principal_json(ck_api_caller(req)));
}

static ck_err list_principals(struct ck_http_req *req, struct ck_http_resp *resp)
{
    struct ck_api *api = req->ctx;
    CK_TRY(ck_api_require_operator(api, req, "list principals"));
    struct ck_principal **v;
    size_t n;
    CK_TRY(ck_principal_list(api->store, &v, &n));
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(arr, ck_api_principal_json(v[i]));
    ck_principal_list_free(v, n);
    return ck_http_ok(resp, json_pack("{s:o}", "value", arr));
}

static ck_err add_principal(struct ck_http_req *req, struct ck_http_resp *resp)
{
    struct ck_api *api = req->ctx;
    CK_TRY(ck_api_require_operator(api, req, "add principals"));
    const char *upn = NULL, *name = NULL, *app_id = NULL, *tenant = NULL;
    CK_TRY(ck_json_str(req->json, "userPrincipalName", false, &upn));
    CK_TRY(ck_json_str(req->json, "displayName", false, &name));
    CK_TRY(ck_json_str(req->json, "applicationId", false, &app_id));
    CK_TRY(ck_json_str(req->json, "tenantId", false, &tenant));
    if (!upn == !name)
        return ck_err_set(CK_EINVAL, "give either userPrincipalName (a user) or displayName (an "
                                     "application)");
    if (upn && app_id)
        return ck_err_set(CK_EINVAL, "a user has no applicationId");
    struct ck_principal *p;
    ck_err rc = upn ? ck_principal_add_user(api->store, upn, tenant, 0, &p)
                    : ck_principal_add_app(api->store, name, app_id, tenant, 0, &p);
    ck_api_audit(api, req, "principal.add", upn ? upn : name, rc, NULL);
    CK_TRY(rc);
    resp->status = 201;
    resp->json = ck_api_principal_json(p);
    ck_principal_free(p);
    return CK_OK;
}

static json_t *token_json(const struct ck_token_info *t, const struct ck_principal *p)
{
    char created[32], expires[32], revoked[32];
    ck_time_rfc3339(t->created, created);
    ck_time_rfc3339(t->expires, expires);
    json_t *o = json_pack("{s:s,s:s,s:s,s:s}", "id", t->id, "principalObjectId", t->object_id,
                          "created", created, "expires", expires);
    if (p)
        json_object_set_new(o, "principal", json_string(ck_principal_name(p)));
    if (t->revoked) {
        ck_time_rfc3339(t->revoked, revoked);
        json_object_set_new(o, "revoked", json_string(revoked));
    }
    json_object_set_new(o, "state",
                        json_string(t->revoked               ? "revoked"
                                    : t->expires <= ck_now() ? "expired"
                                                             : "active"));
    return o;
}

static ck_err issue_token(struct ck_http_req *req, struct ck_http_resp *resp)
{
    struct ck_api *api = req->ctx;
    CK_TRY(ck_api_require_operator(api, req, "issue tokens"));
    const char *who = NULL;
    int64_t ttl = DEFAULT_TOKEN_TTL;
    CK_TRY(ck_json_str(req->json, "principal", true, &who));
    CK_TRY(ck_json_int(req->json, "ttl", false, &ttl, NULL));
    struct ck_principal *p;
    ck_err rc = ck_principal_find(api->store, who, &p);
    if (rc != CK_OK) {
        ck_api_audit(api, req, "token.issue", who, rc, NULL);
        return rc;
    }
    char *token = NULL;
    struct ck_token_info ti;
    rc = ck_token_issue(api->store, p->object_id, ttl, &token, &ti);
    ck_api_audit(api, req, "token.issue", ck_principal_name(p), rc, rc == CK_OK ? ti.id : NULL);
    if (rc == CK_OK) {
        json_t *o = token_json(&ti, p);
        json_object_set_new(o, "token", json_string(token));
        resp->status = 201;
        resp->json = o;
        ck_wipe(token, strlen(token));
        free(token);
    }
    ck_principal_free(p);
    return rc;
}

static ck_err list_tokens(struct ck_http_req *req, struct ck_http_resp *resp)
{
    struct ck_api *api = req->ctx;
    CK_TRY(ck_api_require_operator(api, req, "list tokens"));
    char *who = ck_http_query(req, "principal");
    struct ck_principal *p = NULL;
    ck_err rc = who ? ck_principal_find(api->store, who, &p) : CK_OK;
    free(who);
    CK_TRY(rc);
    struct ck_token_info *v;
    size_t n;
    rc = ck_token_list(api->store, p ? p->object_id : NULL, &v, &n);
    ck_principal_free(p);
    CK_TRY(rc);
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++) {
        struct ck_principal *owner = NULL;
        (void)ck_principal_find(api->store, v[i].object_id, &owner);
        json_array_append_new(arr, token_json(&v[i], owner));
        ck_principal_free(owner);
    }
    free(v);
    ck_err_clear();
    return ck_http_ok(resp, json_pack("{s:o}", "value", arr));
}

static ck_err revoke_token(struct ck_http_req *req, struct ck_http_resp *resp)
{
    struct ck_api *api = req->ctx;
    CK_TRY(ck_api_require_operator(api, req, "revoke tokens"));
    const char *id = ck_http_param(req, "id");
    ck_err rc = ck_token_revoke(api->store, id);
    ck_api_audit(api, req, "token.revoke", id, rc, NULL);
    CK_TRY(rc);
    resp->status = 204;
    return CK_OK;
}

static ck_err query_int(const struct ck_http_req *req, const char *name, int64_t min, int64_t max,
                        int64_t *out)
{
    char *v = ck_http_query(req, name);
    if (!v)
        return CK_OK;
    char *end;
    long long x = strtoll(v, &end, 10);
    bool bad = !*v || *end || x < min || x > max;
    free(v);
    if (bad)
        return ck_err_set(CK_EINVAL, "the query parameter '%s' must be a number from %lld to %lld",
                          name, (long long)min, (long long)max);
    *out = x;
    return CK_OK;
}

static ck_err list_audit(struct ck_http_req *req, struct ck_http_resp *resp)
{
    struct ck_api *api = req->ctx;
    CK_TRY(ck_api_require_operator(api, req, "read the audit log"));
    int64_t after = 0, max = 100;
    CK_TRY(query_int(req, "after", 0, INT64_MAX, &after));
    CK_TRY(query_int(req, "max", 1, 1000, &max));
    struct ck_audit_record *v;
    size_t n;
    CK_TRY(ck_audit_list(api->audit, after, (size_t)max, &v, &n));
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++) {
        char ts[32];
        ck_time_rfc3339(v[i].ts, ts);
        json_array_append_new(arr, json_pack("{s:I,s:s,s:s,s:s,s:s,s:s,s:s,s:s}", "seq",
                                             (json_int_t)v[i].seq, "time", ts, "principal",
                                             v[i].principal, "operation", v[i].operation, "target",
                                             v[i].target, "result", v[i].result, "requestId",
                                             v[i].request_id, "detail", v[i].detail));
    }
    json_t *body = json_pack("{s:o}", "value", arr);
    if (n == (size_t)max)
        json_object_set_new(body, "next", json_integer(v[n - 1].seq));
    ck_audit_records_free(v, n);
    return ck_http_ok(resp, body);
}

static ck_err verify_audit(struct ck_http_req *req, struct ck_http_resp *resp)
{
    struct ck_api *api = req->ctx;
    CK_TRY(ck_api_require_operator(api, req, "verify the audit log"));
    struct ck_audit_report rep;
    CK_TRY(ck_audit_verify(api->audit, &rep));
    json_t *o = json_pack("{s:b,s:I}", "ok", rep.ok, "checked", (json_int_t)rep.checked);
    if (!rep.ok) {
        json_object_set_new(o, "problem", json_string(rep.problem));
        if (rep.bad_seq)
            json_object_set_new(o, "seq", json_integer(rep.bad_seq));
    }
    return ck_http_ok(resp, o);
}

void ck_api_register_admin(struct ck_router *r, struct ck_api *api)
{
    ck_router_add(r, "GET", "/healthz", get_healthz, api, CK_ROUTE_PUBLIC, 0);
    ck_router_add(r, "GET", "/whoami", get_whoami, api, 0, 0);
    ck_router_add(r, "GET", "/admin/principals", list_principals, api, 0, 0);
    ck_router_add(r, "POST", "/admin/principals", add_principal, api, 0, 0);
    ck_router_add(r, "GET", "/admin/tokens", list_tokens, api, 0, 0);
    ck_router_add(r, "POST", "/admin/tokens", issue_token, api, 0, 0);
    ck_router_add(r, "DELETE", "/admin/tokens/{id}", revoke_token, api, 0, 0);
    ck_router_add(r, "GET", "/admin/audit", list_audit, api, 0, 0);
    ck_router_add(r, "POST", "/admin/audit/verify", verify_audit, api, 0, 0);
}
