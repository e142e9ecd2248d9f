/*
 * tenants.c — tenants and their admins, and the access rule every surface
 * under /tenants/{t} shares (ck_api_tenant_access).
 *
 *   POST /admin/tenants         operator  {"name","admin"}  → 201 tenant
 *   GET  /admin/tenants         operator                    → {"value":[tenant]}
 *   GET  /tenants/{t}           operator or admin of {t}    → tenant
 *   POST /tenants/{t}/admins    operator  {"admin"}         → tenant
 *
 * tenant = {"id","name","created","admins":[{"objectId","name"}]}; {t} is
 * the tenant's name (any case) or id; "admin" a UPN, application id, object
 * id or application name.
 */
#include "api/api.h"

#include <stdlib.h>
#include <string.h>

static ck_err tenant_json(struct ck_api *api, const struct ck_tenant *t, json_t **out)
{
    struct ck_principal **admins;
    size_t n;
    CK_TRY(ck_tenant_admins(api->store, t->id, &admins, &n));
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(arr, json_pack("{s:s,s:s}", "objectId", admins[i]->object_id, "name",
                                             ck_principal_name(admins[i])));
    ck_principal_list_free(admins, n);
    char created[32];
    ck_time_rfc3339(t->created, created);
    *out = json_pack("{s:s,s:s,s:s,s:o}", "id", t->id, "name", t->name, "created", created,
                     "admins", arr);
    return CK_OK;
}

static ck_err render(struct ck_api *api, const struct ck_tenant *t, unsigned status,
                     struct ck_http_resp *resp)
{
    json_t *o;
    CK_TRY(tenant_json(api, t, &o));
    resp->status = status;
    resp->json = o;
    return CK_OK;
}

/* The principal a request body names as an admin. Naming nobody known is a
 * bad request, not a missing resource: the URL addressed exists. */
static ck_err find_admin(struct ck_api *api, const char *ref, struct ck_principal **out)
{
    ck_err rc = ck_principal_find(api->store, ref, out);
    if (rc == CK_ENOTFOUND)
        return ck_err_set(CK_EINVAL,
                          "no principal '%s' to make a tenant admin; add it first "
                          "(ckey principal add)",
                          ref);
    return rc;
}

ck_err ck_api_tenant_access(struct ck_api *api, const struct ck_http_req *req,
                            const char *tenant_ref, bool admin_required, struct ck_tenant *out)
{
    ck_err rc = ck_tenant_find(api->store, tenant_ref, out);
    if (rc == CK_ENOTFOUND) {
        ck_err_set(CK_ENOTFOUND, "the tenant '%s' does not exist", tenant_ref);
        ck_err_code("TenantNotFound", NULL);
        return CK_ENOTFOUND;
    }
    CK_TRY(rc);
    if (!admin_required)
        return CK_OK;
    const struct ck_principal *p = ck_api_caller(req);
    if (p && (p->roles & CK_ROLE_OPERATOR))
        return CK_OK;
    bool admin = false;
    if (p)
        CK_TRY(ck_tenant_is_admin(api->store, out->id, p->object_id, &admin));
    if (admin)
        return CK_OK;
    ck_err_set(CK_EFORBIDDEN, "the principal '%s' is not an admin of the tenant '%s'",
               p ? ck_principal_name(p) : "-", out->name);
    ck_api_audit(api, req, "tenant.access", out->name, CK_EFORBIDDEN, req->path);
    return CK_EFORBIDDEN;
}

static ck_err create_tenant(struct ck_http_req *req, struct ck_http_resp *resp)
{
    struct ck_api *api = req->ctx;
    CK_TRY(ck_api_require_operator(api, req, "create tenants"));
    const char *name = NULL, *admin = NULL;
    CK_TRY(ck_json_str(req->json, "name", true, &name));
    CK_TRY(ck_json_str(req->json, "admin", true, &admin));
    struct ck_principal *p = NULL;
    struct ck_tenant t;
    ck_err rc = find_admin(api, admin, &p);
    if (rc == CK_OK)
        rc = ck_tenant_create(api->store, name, p->object_id, &t);
    char *detail = rc == CK_OK ? ck_sprintf("id %s, admin %s", t.id, ck_principal_name(p)) : NULL;
    ck_api_audit(api, req, "tenant.create", name, rc, detail);
    free(detail);
    ck_principal_free(p);
    CK_TRY(rc);
    return render(api, &t, 201, resp);
}

static ck_err list_tenants(struct ck_http_req *req, struct ck_http_resp *resp)
{
    struct ck_api *api = req->ctx;
    CK_TRY(ck_api_require_operator(api, req, "list tenants"));
    struct ck_tenant *v;
    size_t n;
    CK_TRY(ck_tenant_list(api->store, &v, &n));
    json_t *arr = json_array();
    ck_err rc = CK_OK;
    for (size_t i = 0; i < n && rc == CK_OK; i++) {
        json_t *o;
        rc = tenant_json(api, &v[i], &o);
        if (rc == CK_OK)
            json_array_append_new(arr, o);
    }
    free(v);
    if (rc != CK_OK) {
        json_decref(arr);
        return rc;
    }
    return ck_http_ok(resp, json_pack("{s:o}", "value", arr));
}

static ck_err get_tenant(struct ck_http_req *req, struct ck_http_resp *resp)
{
    struct ck_api *api = req->ctx;
    struct ck_tenant t;
    CK_TRY(ck_api_tenant_access(api, req, ck_http_param(req, "t"), true, &t));
    return render(api, &t, 200, resp);
}

static ck_err add_admin(struct ck_http_req *req, struct ck_http_resp *resp)
{
    struct ck_api *api = req->ctx;
    CK_TRY(ck_api_require_operator(api, req, "add tenant admins"));
    struct ck_tenant t;
    CK_TRY(ck_api_tenant_access(api, req, ck_http_param(req, "t"), true, &t));
    const char *admin = NULL;
    CK_TRY(ck_json_str(req->json, "admin", true, &admin));
    struct ck_principal *p = NULL;
    ck_err rc = find_admin(api, admin, &p);
    if (rc == CK_OK)
        rc = ck_tenant_add_admin(api->store, t.id, p->object_id);
    char *detail = ck_sprintf("admin %s", p ? ck_principal_name(p) : admin);
    ck_api_audit(api, req, "tenant.admin.add", t.name, rc, detail);
    free(detail);
    ck_principal_free(p);
    CK_TRY(rc);
    return render(api, &t, 200, resp);
}

void ck_api_register_tenants(struct ck_router *r, struct ck_api *api)
{
    ck_router_add(r, "POST", "/admin/tenants", create_tenant, api, 0, 0);
    ck_router_add(r, "GET", "/admin/tenants", list_tenants, api, 0, 0);
    ck_router_add(r, "GET", "/tenants/{t}", get_tenant, api, 0, 0);
    ck_router_add(r, "POST", "/tenants/{t}/admins", add_admin, api, 0, 0);
}
