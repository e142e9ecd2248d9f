/*
 * deps.c — data encryption policies for mail (docs/service-api.md):
 * New-, Get- and Set-DataEncryptionPolicy, including -Refresh.
 *
 *   POST  /tenants/{t}/deps               {name, description?, enabled?, azureKeyIds:[u1,u2]}
 *   GET   /tenants/{t}/deps
 *   GET   /tenants/{t}/deps/{dep}
 *   PATCH /tenants/{t}/deps/{dep}         {name?, description?, enabled?}
 *   POST  /tenants/{t}/deps/{dep}/refresh
 * Tenant admins and the operator only.
 */
#include "api/api.h"

#include <stdlib.h>
#include <string.h>

static json_t *time_json(int64_t t)
{
    char s[32];
    ck_time_rfc3339(t, s);
    return json_string(s);
}

json_t *ck_api_dep_json(const struct ck_dep *d)
{
    json_t *uris = json_array(), *versions = json_array();
    for (int i = 0; i < 2 && !d->service_managed; i++) {
        json_array_append_new(uris, json_string(d->key_uri[i]));
        json_array_append_new(versions, json_string(d->key_version[i]));
    }
    json_t *o =
        json_pack("{s:s,s:s,s:s,s:o,s:b,s:o,s:b,s:o,s:o,s:b}", "Identity", d->id, "Name", d->name,
                  "Description", d->description ? d->description : "", "AzureKeyIDs", uris,
                  "Enabled", d->enabled, "KeyVersions", versions, "ServiceManaged",
                  d->service_managed, "WhenCreatedUTC", time_json(d->created), "WhenChangedUTC",
                  time_json(d->changed), "PermanentDataPurgeRequested", d->purge_requested);
    json_object_set_new(o, "PermanentDataPurgeReason",
                        d->purge_reason ? json_string(d->purge_reason) : json_null());
    json_object_set_new(o, "PermanentDataPurgeContact",
                        d->purge_contact ? json_string(d->purge_contact) : json_null());
    return o;
}

static ck_err send_dep(struct ck_http_resp *resp, unsigned status, struct ck_dep *d)
{
    resp->status = status;
    resp->json = ck_api_dep_json(d);
    ck_dep_free(d);
    return CK_OK;
}

static ck_err create_dep(struct ck_http_req *req, struct ck_http_resp *resp)
{
    struct ck_api *api = req->ctx;
    struct ck_tenant t;
    CK_TRY(ck_api_tenant_access(api, req, ck_http_param(req, "t"), true, &t));
    const char *name = NULL, *description = NULL;
    bool enabled = true;
    CK_TRY(ck_json_str(req->json, "name", true, &name));
    CK_TRY(ck_json_str(req->json, "description", false, &description));
    CK_TRY(ck_json_bool(req->json, "enabled", false, &enabled, NULL));
    json_t *ids = json_object_get(req->json, "azureKeyIds");
    if (!json_is_array(ids) || json_array_size(ids) != 2 ||
        !json_is_string(json_array_get(ids, 0)) || !json_is_string(json_array_get(ids, 1)))
        return ck_err_set(CK_EINVAL, "azureKeyIds must list exactly two root key URIs, one in "
                                     "each of two vaults");
    struct ck_dep *d = NULL;
    ck_err rc = ck_dep_create(api->deps, t.id, name, description, enabled,
                              json_string_value(json_array_get(ids, 0)),
                              json_string_value(json_array_get(ids, 1)), req->request_id, &d);
    ck_api_audit(api, req, "dep.new", d ? d->id : name, rc, NULL);
    CK_TRY(rc);
    return send_dep(resp, 201, d);
}

static ck_err list_deps(struct ck_http_req *req, struct ck_http_resp *resp)
{
    struct ck_api *api = req->ctx;
    struct ck_tenant t;
    CK_TRY(ck_api_tenant_access(api, req, ck_http_param(req, "t"), true, &t));
    struct ck_dep **v;
    size_t n;
    CK_TRY(ck_dep_list(api->deps, t.id, &v, &n));
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(arr, ck_api_dep_json(v[i]));
    ck_dep_list_free(v, n);
    return ck_http_ok(resp, json_pack("{s:o}", "value", arr));
}

static ck_err get_dep(struct ck_http_req *req, struct ck_http_resp *resp)
{
    struct ck_api *api = req->ctx;
    struct ck_tenant t;
    CK_TRY(ck_api_tenant_access(api, req, ck_http_param(req, "t"), true, &t));
    struct ck_dep *d;
    CK_TRY(ck_dep_get(api->deps, t.id, ck_http_param(req, "dep"), &d));
    return send_dep(resp, 200, d);
}

static ck_err set_dep(struct ck_http_req *req, struct ck_http_resp *resp)
{
    struct ck_api *api = req->ctx;
    struct ck_tenant t;
    CK_TRY(ck_api_tenant_access(api, req, ck_http_param(req, "t"), true, &t));
    const char *name = NULL, *description = NULL;
    bool enabled = false, has_enabled = false;
    CK_TRY(ck_json_str(req->json, "name", false, &name));
    CK_TRY(ck_json_str(req->json, "description", false, &description));
    CK_TRY(ck_json_bool(req->json, "enabled", false, &enabled, &has_enabled));
    struct ck_dep *d = NULL;
    ck_err rc = ck_dep_set(api->deps, t.id, ck_http_param(req, "dep"), name, description,
                           has_enabled ? &enabled : NULL, &d);
    ck_api_audit(api, req, "dep.set", d ? d->id : ck_http_param(req, "dep"), rc, NULL);
    CK_TRY(rc);
    return send_dep(resp, 200, d);
}

static ck_err refresh_dep(struct ck_http_req *req, struct ck_http_resp *resp)
{
    struct ck_api *api = req->ctx;
    struct ck_tenant t;
    CK_TRY(ck_api_tenant_access(api, req, ck_http_param(req, "t"), true, &t));
    struct ck_dep *d = NULL;
    ck_err rc = ck_dep_refresh(api->deps, t.id, ck_http_param(req, "dep"), req->request_id, &d);
    ck_api_audit(api, req, "dep.refresh", d ? d->id : ck_http_param(req, "dep"), rc, NULL);
    CK_TRY(rc);
    return send_dep(resp, 200, d);
}

void ck_api_register_deps(struct ck_router *r, struct ck_api *api)
{
    ck_router_add(r, "POST", "/tenants/{t}/deps", create_dep, api, 0, 0);
    ck_router_add(r, "GET", "/tenants/{t}/deps", list_deps, api, 0, 0);
    ck_router_add(r, "GET", "/tenants/{t}/deps/{dep}", get_dep, api, 0, 0);
    ck_router_add(r, "PATCH", "/tenants/{t}/deps/{dep}", set_dep, api, 0, 0);
    ck_router_add(r, "POST", "/tenants/{t}/deps/{dep}/refresh", refresh_dep, api, 0, 0);
}
