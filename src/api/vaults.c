/*
 * vaults.c — the management plane: subscriptions (operator), ARM-shaped
 * vaults and access policies (subscription owners), and a directory lookup.
 *
 *   PUT    /admin/subscriptions/{sub}              operator  {"owners":[ref,...]}
 *   POST   /admin/subscriptions/{sub}/owners       operator or owner  {"owner":ref}
 *   GET    /admin/subscriptions/{sub}              operator or owner
 *   PUT|GET|PATCH|DELETE
 *          /subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.KeyVault/vaults/{name}
 *   GET    /subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.KeyVault/vaults
 *   GET    /subscriptions/{sub}/providers/Microsoft.KeyVault/vaults
 *   PUT    .../vaults/{name}/accessPolicies/{add|replace|remove}
 *   GET    /ckey/vaults/{name}                      the ARM vault found by name alone
 *   GET    /directory/principals/{ref}              any principal
 *
 * ARM routes accept any api-version. Callers must own the subscription or
 * be an operator. A PUT on an existing vault replaces the fields it gives
 * and keeps the others (a PUT that leaves out accessPolicies does not lock
 * everyone out); PATCH does the same with every field optional.
 */
#include "api/api.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define ARM_VAULT_TYPE "Microsoft.KeyVault/vaults"

/* ---------- helpers ---------- */

static bool is_operator(const struct ck_http_req *req)
{
    const struct ck_principal *p = ck_api_caller(req);
    return p && (p->roles & CK_ROLE_OPERATOR);
}

/* The caller must own sub or be an operator. A missing subscription is a
 * 404 SubscriptionNotFound (set by the domain). */
static ck_err authorize(struct ck_api *api, const struct ck_http_req *req, const char *sub,
                        const char *action, const char *operation, const char *target)
{
    const struct ck_principal *p = ck_api_caller(req);
    bool owner = false;
    CK_TRY(ck_subscription_is_owner(api->vaults, sub, p ? p->object_id : "", &owner));
    if (owner || is_operator(req))
        return CK_OK;
    ck_err_set(CK_EFORBIDDEN,
               "The client '%s' with object id '%s' does not have authorization to perform "
               "action 'Microsoft.KeyVault/vaults/%s' over scope '/subscriptions/%s': it is not "
               "an owner of subscription '%s'",
               p ? ck_principal_name(p) : "-", p ? p->object_id : "-", action, sub, sub);
    ck_err_code("Forbidden", "AuthorizationFailed");
    ck_api_audit(api, req, operation, target, CK_EFORBIDDEN, NULL);
    return CK_EFORBIDDEN;
}

static ck_err vault_not_found(const char *rg, const char *name)
{
    ck_err_set(CK_ENOTFOUND,
               "The Resource 'Microsoft.KeyVault/vaults/%.64s' under resource group '%.90s' was "
               "not found.",
               name, rg);
    ck_err_code("ResourceNotFound", NULL);
    return CK_ENOTFOUND;
}

/* The vault addressed by an ARM path: it must exist in that subscription
 * and resource group. */
static ck_err arm_vault(struct ck_api *api, const struct ck_http_req *req, struct ck_vault **out)
{
    const char *sub = ck_http_param(req, "sub"), *rg = ck_http_param(req, "rg");
    const char *name = ck_http_param(req, "name");
    struct ck_vault *x = NULL;
    ck_err rc = ck_vault_get(api->vaults, name, &x);
    if (rc == CK_ENOTFOUND || (rc == CK_OK && (strcasecmp(x->subscription, sub) != 0 ||
                                               strcasecmp(x->resource_group, rg) != 0))) {
        ck_vault_free(x);
        return vault_not_found(rg, name);
    }
    CK_TRY(rc);
    *out = x;
    return CK_OK;
}

static char *vault_id(const struct ck_vault *x)
{
    return ck_sprintf("/subscriptions/%s/resourceGroups/%s/providers/" ARM_VAULT_TYPE "/%s",
                      x->subscription, x->resource_group, x->name);
}

/* https://NAME.<suffix>[:port]/ with the port the client used (from Host),
 * left out when it is 443 or absent. */
static char *vault_uri(const struct ck_api *api, const struct ck_http_req *req, const char *name)
{
    const char *host = req->host ? req->host : "";
    const char *bracket = strrchr(host, ']');
    const char *colon = strrchr(bracket ? bracket : host, ':');
    const char *port = colon && colon[1] ? colon + 1 : NULL;
    for (const char *p = port; p && *p; p++)
        if (*p < '0' || *p > '9')
            port = NULL;
    if (port && strcmp(port, "443") == 0)
        port = NULL;
    return ck_sprintf("https://%s.%s%s%s/", name, api->vault_suffix, port ? ":" : "",
                      port ? port : "");
}

static json_t *policy_json(const struct ck_access_policy *p)
{
    json_t *keys = json_array();
    for (unsigned b = 0; b < 20; b++)
        if (p->keys & (1u << b))
            json_array_append_new(keys, json_string(ck_perm_name((enum ck_key_perm)(1u << b))));
    json_t *o = json_object();
    json_object_set_new(o, "tenantId", json_string(p->tenant_id));
    json_object_set_new(o, "objectId", json_string(p->object_id));
    if (p->application_id[0])
        json_object_set_new(o, "applicationId", json_string(p->application_id));
    json_object_set_new(
        o, "permissions",
        json_pack("{s:o,s:[],s:[],s:[]}", "keys", keys, "secrets", "certificates", "storage"));
    return o;
}

static json_t *policies_json(const struct ck_vault *x)
{
    json_t *arr = json_array();
    for (size_t i = 0; i < x->npolicies; i++)
        json_array_append_new(arr, policy_json(&x->policies[i]));
    return arr;
}

/* The ARM Microsoft.KeyVault/vaults resource (reference §9). */
static json_t *vault_json(const struct ck_api *api, const struct ck_http_req *req,
                          const struct ck_vault *x)
{
    char *id = vault_id(x), *uri = vault_uri(api, req, x->name);
    json_t *tags = json_loads(x->tags_json, 0, NULL);
    json_t *props = json_object();
    json_object_set_new(props, "tenantId", json_string(x->tenant_id));
    json_object_set_new(props, "sku", json_pack("{s:s,s:s}", "family", "A", "name", x->sku));
    json_object_set_new(props, "accessPolicies", policies_json(x));
    json_object_set_new(props, "vaultUri", json_string(uri));
    json_object_set_new(props, "enabledForDeployment", json_false());
    json_object_set_new(props, "enabledForDiskEncryption", json_false());
    json_object_set_new(props, "enabledForTemplateDeployment", json_false());
    json_object_set_new(props, "enableSoftDelete", json_true());
    json_object_set_new(props, "softDeleteRetentionInDays", json_integer(x->retention_days));
    json_object_set_new(props, "enableRbacAuthorization", json_false());
    if (x->purge_protection)
        json_object_set_new(props, "enablePurgeProtection", json_true());
    json_object_set_new(props, "provisioningState", json_string("Succeeded"));
    json_object_set_new(props, "publicNetworkAccess", json_string("Enabled"));
    json_t *o = json_object();
    json_object_set_new(o, "id", json_string(id));
    json_object_set_new(o, "name", json_string(x->name));
    json_object_set_new(o, "type", json_string(ARM_VAULT_TYPE));
    json_object_set_new(o, "location", json_string(x->location));
    json_object_set_new(o, "tags", tags ? tags : json_object());
    json_object_set_new(o, "properties", props);
    free(id);
    free(uri);
    return o;
}

static json_t *vault_list_json(const struct ck_api *api, const struct ck_http_req *req,
                               struct ck_vault **v, size_t n)
{
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(arr, vault_json(api, req, v[i]));
    return json_pack("{s:o}", "value", arr);
}

/* ---------- parsing ---------- */

/* An optional array of strings (secrets, certificates, storage: accepted
 * for compatibility with templates that grant them, and ignored, since a
 * ckey vault holds keys only). */
static ck_err string_array(json_t *perms, const char *field, size_t i, json_t **out)
{
    json_t *a = json_object_get(perms, field);
    *out = NULL;
    if (!a || json_is_null(a))
        return CK_OK;
    bool ok = json_is_array(a);
    size_t k;
    json_t *e;
    json_array_foreach(a, k, e) ok = ok && json_is_string(e);
    if (!ok)
        return ck_err_set(
            CK_EINVAL, "accessPolicies[%zu].permissions.%s must be an array of strings", i, field);
    *out = a;
    return CK_OK;
}

static ck_err copy_field(json_t *o, const char *field, size_t i, bool required, char *out,
                         size_t cap)
{
    json_t *v = json_object_get(o, field);
    if (!v || json_is_null(v)) {
        if (required)
            return ck_err_set(CK_EINVAL, "accessPolicies[%zu] must have the field '%s'", i, field);
        return CK_OK;
    }
    if (!json_is_string(v) || json_string_length(v) >= cap)
        return ck_err_set(CK_EINVAL,
                          "accessPolicies[%zu].%s must be a string of at most %zu characters", i,
                          field, cap - 1);
    memcpy(out, json_string_value(v), json_string_length(v) + 1);
    return CK_OK;
}

static ck_err parse_policy(json_t *o, size_t i, struct ck_access_policy *p)
{
    memset(p, 0, sizeof *p);
    if (!json_is_object(o))
        return ck_err_set(CK_EINVAL, "accessPolicies[%zu] must be an object", i);
    CK_TRY(copy_field(o, "tenantId", i, true, p->tenant_id, sizeof p->tenant_id));
    CK_TRY(copy_field(o, "objectId", i, true, p->object_id, sizeof p->object_id));
    CK_TRY(copy_field(o, "applicationId", i, false, p->application_id, sizeof p->application_id));
    json_t *perms = json_object_get(o, "permissions");
    if (!perms || json_is_null(perms))
        return CK_OK;
    if (!json_is_object(perms))
        return ck_err_set(CK_EINVAL, "accessPolicies[%zu].permissions must be an object", i);
    json_t *keys, *ignored;
    CK_TRY(string_array(perms, "keys", i, &keys));
    CK_TRY(string_array(perms, "secrets", i, &ignored));
    CK_TRY(string_array(perms, "certificates", i, &ignored));
    CK_TRY(string_array(perms, "storage", i, &ignored));
    size_t k;
    json_t *e;
    json_array_foreach(keys, k, e)
    {
        unsigned bit;
        if (ck_perm_parse(json_string_value(e), &bit) != CK_OK) {
            char msg[400];
            snprintf(msg, sizeof msg, "%s", ck_err_msg());
            return ck_err_set(CK_EINVAL, "accessPolicies[%zu].permissions.keys[%zu]: %s", i, k,
                              msg);
        }
        p->keys |= bit;
    }
    return CK_OK;
}

/* accessPolicies: an array of at most CK_VAULT_MAX_POLICIES entries. */
static ck_err parse_policies(json_t *arr, struct ck_access_policy **out, size_t *n)
{
    if (!json_is_array(arr))
        return ck_err_set(CK_EINVAL, "properties.accessPolicies must be an array");
    size_t count = json_array_size(arr);
    if (count > CK_VAULT_MAX_POLICIES)
        return ck_err_set(CK_EINVAL, "a vault holds at most %d access policies; got %zu",
                          CK_VAULT_MAX_POLICIES, count);
    struct ck_access_policy *p = ck_xcalloc(count ? count : 1, sizeof *p);
    for (size_t i = 0; i < count; i++) {
        ck_err rc = parse_policy(json_array_get(arr, i), i, &p[i]);
        if (rc != CK_OK) {
            free(p);
            return rc;
        }
    }
    *out = p;
    *n = count;
    return CK_OK;
}

static ck_err copy_str(json_t *obj, const char *field, const char *shown, bool required, char *out,
                       size_t cap)
{
    const char *s = NULL;
    json_t *v = json_object_get(obj, field);
    if (v && !json_is_null(v) && !json_is_string(v))
        return ck_err_set(CK_EINVAL, "the field '%s' must be a string", shown);
    if (v && json_is_string(v))
        s = json_string_value(v);
    if (!s) {
        if (required)
            return ck_err_set(CK_EINVAL, "the request body must have the field '%s'", shown);
        return CK_OK;
    }
    if (strlen(s) >= cap)
        return ck_err_set(CK_EINVAL, "the field '%s' is too long (at most %zu characters)", shown,
                          cap - 1);
    memcpy(out, s, strlen(s) + 1);
    return CK_OK;
}

/* Merges a PUT or PATCH body into *x (which holds the vault as it is, or
 * the defaults of a new one). For a PUT, location, properties.tenantId and
 * properties.sku are required, as in ARM. *tags and *policies receive
 * storage that the caller frees. */
static ck_err merge_body(json_t *body, bool put, struct ck_vault *x, char **tags,
                         struct ck_access_policy **policies)
{
    if (!body)
        return ck_err_set(CK_EINVAL, "the request needs a JSON body");
    CK_TRY(copy_str(body, "location", "location", put, x->location, sizeof x->location));
    json_t *t = json_object_get(body, "tags");
    if (t && !json_is_null(t)) {
        if (!json_is_object(t))
            return ck_err_set(CK_EINVAL, "the field 'tags' must be an object");
        *tags = json_dumps(t, JSON_COMPACT | JSON_PRESERVE_ORDER);
        x->tags_json = *tags;
    }
    json_t *props = json_object_get(body, "properties");
    if (!props || json_is_null(props)) {
        if (put)
            return ck_err_set(CK_EINVAL, "the request body must have the field 'properties'");
        return CK_OK;
    }
    if (!json_is_object(props))
        return ck_err_set(CK_EINVAL, "the field 'properties' must be an object");
    CK_TRY(
        copy_str(props, "tenantId", "properties.tenantId", put, x->tenant_id, sizeof x->tenant_id));
    json_t *sku = json_object_get(props, "sku");
    if (put && (!sku || json_is_null(sku)))
        return ck_err_set(CK_EINVAL, "the request body must have the field 'properties.sku'");
    if (sku && !json_is_null(sku)) {
        if (!json_is_object(sku))
            return ck_err_set(CK_EINVAL, "the field 'properties.sku' must be an object");
        const char *family = NULL;
        CK_TRY(ck_json_str(sku, "family", false, &family));
        if (family && strcmp(family, "A") != 0)
            return ck_err_set(CK_EINVAL, "properties.sku.family must be \"A\", got '%.16s'",
                              family);
        CK_TRY(copy_str(sku, "name", "properties.sku.name", true, x->sku, sizeof x->sku));
    }
    bool b, present;
    CK_TRY(ck_json_bool(props, "enableSoftDelete", false, &b, &present));
    if (present && !b)
        return ck_err_set(CK_EINVAL, "soft delete cannot be disabled: ckey vaults always keep "
                                     "deleted keys for softDeleteRetentionInDays");
    CK_TRY(ck_json_bool(props, "enableRbacAuthorization", false, &b, &present));
    if (present && b)
        return ck_err_set(CK_EINVAL, "enableRbacAuthorization is not supported: ckey vaults "
                                     "use access policies");
    const char *mode = NULL;
    CK_TRY(ck_json_str(props, "createMode", false, &mode));
    if (mode && strcasecmp(mode, "default") != 0)
        return ck_err_set(CK_EINVAL, "createMode '%.16s' is not supported (only default)", mode);
    int64_t days;
    CK_TRY(ck_json_int(props, "softDeleteRetentionInDays", false, &days, &present));
    if (present) {
        if (days < 7 || days > 90)
            return ck_err_set(CK_EINVAL, "softDeleteRetentionInDays must be from 7 to 90, got %lld",
                              (long long)days);
        x->retention_days = (int)days;
    }
    CK_TRY(ck_json_bool(props, "enablePurgeProtection", false, &b, &present));
    if (present)
        x->purge_protection = b;
    json_t *ap = json_object_get(props, "accessPolicies");
    if (ap && !json_is_null(ap)) {
        struct ck_access_policy *p;
        size_t n;
        CK_TRY(parse_policies(ap, &p, &n));
        *policies = p;
        x->policies = p;
        x->npolicies = n;
    }
    return CK_OK;
}

/* ---------- ARM vault handlers ---------- */

static ck_err respond_vault(struct ck_api *api, struct ck_http_req *req, struct ck_http_resp *resp,
                            const char *name)
{
    struct ck_vault *x;
    CK_TRY(ck_vault_get(api->vaults, name, &x));
    json_t *body = vault_json(api, req, x);
    ck_vault_free(x);
    return ck_http_ok(resp, body);
}

static ck_err put_vault(struct ck_http_req *req, struct ck_http_resp *resp)
{
    struct ck_api *api = req->ctx;
    const char *sub = ck_http_param(req, "sub"), *rg = ck_http_param(req, "rg");
    const char *name = ck_http_param(req, "name");
    CK_TRY(authorize(api, req, sub, "write", "vault.update", name));
    /* The name first, so that a bad one is the error reported (the domain
     * checks it again). */
    ck_err rc = CK_OK;
    size_t len = strlen(name);
    bool name_ok = len >= 3 && len <= 24 &&
                   strspn(name, "abcdefghijklmnopqrstuvwxyz"
                                "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                "0123456789-") == len;
    if (!name_ok)
        rc = ck_err_set(CK_EINVAL,
                        "the vault name '%.64s' is not valid: use 3 to 24 letters, digits and "
                        "hyphens",
                        name);
    else if (strlen(rg) > 90)
        rc = ck_err_set(CK_EINVAL, "the resource group name is longer than 90 characters");
    if (rc != CK_OK) {
        ck_api_audit(api, req, "vault.create", name, rc, NULL);
        return rc;
    }
    struct ck_vault *old = NULL;
    rc = ck_vault_get(api->vaults, name, &old);
    if (rc != CK_OK && rc != CK_ENOTFOUND)
        return rc;
    ck_err_clear();
    /* The update starts from the vault as it is only when it is this one;
     * a vault of that name elsewhere is the domain's conflict to report. */
    bool same =
        old && strcasecmp(old->subscription, sub) == 0 && strcasecmp(old->resource_group, rg) == 0;
    struct ck_vault x = {.retention_days = 90, .sku = "standard", .tags_json = "{}"};
    if (same)
        x = *old; /* borrows old's tags and policies until merge_body replaces them */
    snprintf(x.name, sizeof x.name, "%s", name);
    for (char *c = x.name; *c; c++)
        *c = (char)tolower((unsigned char)*c); /* the stored spelling, for the audit */
    snprintf(x.subscription, sizeof x.subscription, "%s", sub);
    snprintf(x.resource_group, sizeof x.resource_group, "%s", rg);
    char *tags = NULL;
    struct ck_access_policy *policies = NULL;
    rc = merge_body(req->json, true, &x, &tags, &policies);
    if (rc == CK_OK)
        rc = ck_vault_put(api->vaults, &x, NULL);
    ck_api_audit(api, req, same ? "vault.update" : "vault.create", x.name, rc, NULL);
    free(tags);
    free(policies);
    ck_vault_free(old);
    CK_TRY(rc);
    return respond_vault(api, req, resp, x.name);
}

static ck_err get_vault(struct ck_http_req *req, struct ck_http_resp *resp)
{
    struct ck_api *api = req->ctx;
    const char *name = ck_http_param(req, "name");
    CK_TRY(authorize(api, req, ck_http_param(req, "sub"), "read", "vault.get", name));
    struct ck_vault *x;
    CK_TRY(arm_vault(api, req, &x));
    json_t *body = vault_json(api, req, x);
    ck_vault_free(x);
    return ck_http_ok(resp, body);
}

static ck_err patch_vault(struct ck_http_req *req, struct ck_http_resp *resp)
{
    struct ck_api *api = req->ctx;
    const char *name = ck_http_param(req, "name");
    CK_TRY(authorize(api, req, ck_http_param(req, "sub"), "write", "vault.update", name));
    struct ck_vault *old;
    CK_TRY(arm_vault(api, req, &old));
    struct ck_vault x = *old;
    char *tags = NULL;
    struct ck_access_policy *policies = NULL;
    ck_err rc = merge_body(req->json, false, &x, &tags, &policies);
    if (rc == CK_OK)
        rc = ck_vault_put(api->vaults, &x, NULL);
    ck_api_audit(api, req, "vault.update", old->name, rc, NULL);
    free(tags);
    free(policies);
    ck_vault_free(old);
    CK_TRY(rc);
    return respond_vault(api, req, resp, x.name);
}

static ck_err delete_vault(struct ck_http_req *req, struct ck_http_resp *resp)
{
    struct ck_api *api = req->ctx;
    const char *name = ck_http_param(req, "name");
    CK_TRY(authorize(api, req, ck_http_param(req, "sub"), "delete", "vault.delete", name));
    struct ck_vault *x;
    ck_err rc = arm_vault(api, req, &x);
    if (rc == CK_ENOTFOUND) {
        /* ARM: deleting what is not there is 204, so deletes can be retried. */
        ck_err_clear();
        resp->status = 204;
        return CK_OK;
    }
    CK_TRY(rc);
    rc = ck_vault_delete(api->vaults, x->name);
    ck_api_audit(api, req, "vault.delete", x->name, rc, NULL);
    ck_vault_free(x);
    CK_TRY(rc);
    resp->status = 200;
    return CK_OK;
}

static ck_err list_vaults(struct ck_http_req *req, struct ck_http_resp *resp)
{
    struct ck_api *api = req->ctx;
    const char *sub = ck_http_param(req, "sub");
    /* Absent in the by-subscription route: "" from ck_http_param. */
    const char *rg = ck_http_param(req, "rg");
    CK_TRY(authorize(api, req, sub, "read", "vault.list", sub));
    struct ck_vault **v;
    size_t n;
    CK_TRY(ck_vault_list(api->vaults, sub, rg && *rg ? rg : NULL, &v, &n));
    json_t *body = vault_list_json(api, req, v, n);
    ck_vault_list_free(v, n);
    return ck_http_ok(resp, body);
}

static ck_err edit_policies(struct ck_http_req *req, struct ck_http_resp *resp)
{
    struct ck_api *api = req->ctx;
    const char *name = ck_http_param(req, "name"), *kind = ck_http_param(req, "kind");
    enum ck_policy_op op;
    const char *operation;
    if (strcmp(kind, "add") == 0)
        op = CK_POLICY_ADD, operation = "vault.policy.add";
    else if (strcmp(kind, "replace") == 0)
        op = CK_POLICY_REPLACE, operation = "vault.policy.replace";
    else if (strcmp(kind, "remove") == 0)
        op = CK_POLICY_REMOVE, operation = "vault.policy.remove";
    else
        return ck_err_set(CK_EINVAL,
                          "the access policy operation must be add, replace or "
                          "remove, not '%.32s'",
                          kind);
    CK_TRY(authorize(api, req, ck_http_param(req, "sub"), "accessPolicies/write", operation, name));
    struct ck_vault *x;
    CK_TRY(arm_vault(api, req, &x));
    json_t *props = req->json ? json_object_get(req->json, "properties") : NULL;
    json_t *arr = props && json_is_object(props) ? json_object_get(props, "accessPolicies") : NULL;
    struct ck_access_policy *p = NULL;
    size_t n = 0;
    ck_err rc = arr ? parse_policies(arr, &p, &n)
                    : ck_err_set(CK_EINVAL, "the request body must have the field "
                                            "'properties.accessPolicies'");
    struct ck_vault *after = NULL;
    if (rc == CK_OK)
        rc = ck_vault_policy_edit(api->vaults, x->name, op, p, n, &after);
    ck_api_audit(api, req, operation, x->name, rc, NULL);
    free(p);
    if (rc == CK_OK) {
        char *vid = vault_id(after);
        char *id = ck_sprintf("%s/accessPolicies/%s", vid, kind);
        json_t *body = json_pack("{s:s,s:s,s:s,s:{s:o}}", "id", id, "name", kind, "type",
                                 ARM_VAULT_TYPE "/accessPolicies", "properties", "accessPolicies",
                                 policies_json(after));
        free(vid);
        free(id);
        rc = ck_http_ok(resp, body);
    }
    ck_vault_free(x);
    ck_vault_free(after);
    return rc;
}

/* GET /ckey/vaults/{name}: the vault by name alone, for `ckey vault show`. */
static ck_err get_vault_by_name(struct ck_http_req *req, struct ck_http_resp *resp)
{
    struct ck_api *api = req->ctx;
    const char *name = ck_http_param(req, "name");
    struct ck_vault *x;
    ck_err rc = ck_vault_get(api->vaults, name, &x);
    if (rc == CK_ENOTFOUND) {
        ck_err_code("ResourceNotFound", NULL);
        return rc;
    }
    CK_TRY(rc);
    rc = authorize(api, req, x->subscription, "read", "vault.get", x->name);
    if (rc == CK_OK)
        rc = ck_http_ok(resp, vault_json(api, req, x));
    ck_vault_free(x);
    return rc;
}

/* ---------- directory ---------- */

static ck_err get_directory_principal(struct ck_http_req *req, struct ck_http_resp *resp)
{
    struct ck_api *api = req->ctx;
    struct ck_principal *p;
    CK_TRY(ck_principal_find(api->store, ck_http_param(req, "ref"), &p));
    /* What a directory shows anyone: identity, not roles. */
    json_t *o = json_object();
    json_object_set_new(o, "objectId", json_string(p->object_id));
    json_object_set_new(o, "type",
                        json_string(p->kind == CK_PRINCIPAL_USER ? "user" : "application"));
    if (p->upn)
        json_object_set_new(o, "userPrincipalName", json_string(p->upn));
    if (p->display_name)
        json_object_set_new(o, "displayName", json_string(p->display_name));
    if (p->app_id)
        json_object_set_new(o, "applicationId", json_string(p->app_id));
    json_object_set_new(o, "tenantId", json_string(p->tenant_id));
    ck_principal_free(p);
    return ck_http_ok(resp, o);
}

/* ---------- subscriptions ---------- */

static json_t *subscription_json(struct ck_api *api, const struct ck_subscription *s)
{
    char created[32];
    ck_time_rfc3339(s->created, created);
    json_t *owners = json_array();
    for (size_t i = 0; i < s->nowners; i++) {
        struct ck_principal *p = NULL;
        json_t *o = json_pack("{s:s}", "objectId", s->owners[i]);
        if (ck_principal_find(api->store, s->owners[i], &p) == CK_OK) {
            json_object_set_new(o, "type",
                                json_string(p->kind == CK_PRINCIPAL_USER ? "user" : "application"));
            json_object_set_new(o, "name", json_string(ck_principal_name(p)));
        }
        ck_principal_free(p);
        json_array_append_new(owners, o);
    }
    ck_err_clear();
    return json_pack("{s:s,s:s,s:o}", "id", s->id, "created", created, "owners", owners);
}

static ck_err respond_subscription(struct ck_api *api, struct ck_http_resp *resp, const char *id,
                                   unsigned status)
{
    struct ck_subscription *s;
    CK_TRY(ck_subscription_get(api->vaults, id, &s));
    resp->status = status;
    resp->json = subscription_json(api, s);
    ck_subscription_free(s);
    return CK_OK;
}

/* Resolves a principal reference from a request body; an unknown one is
 * bad input (400), not a missing resource. */
static ck_err resolve_owner(struct ck_api *api, const char *ref, char out[37])
{
    struct ck_principal *p;
    ck_err rc = ck_principal_find(api->store, ref, &p);
    if (rc != CK_OK) {
        char msg[300];
        snprintf(msg, sizeof msg, "%s", ck_err_msg());
        return ck_err_set(rc == CK_ENOTFOUND ? CK_EINVAL : rc, "owner '%.100s': %s", ref, msg);
    }
    snprintf(out, 37, "%s", p->object_id);
    ck_principal_free(p);
    return CK_OK;
}

static ck_err put_subscription(struct ck_http_req *req, struct ck_http_resp *resp)
{
    struct ck_api *api = req->ctx;
    const char *sub = ck_http_param(req, "sub");
    CK_TRY(ck_api_require_operator(api, req, "create subscriptions"));
    json_t *arr = req->json ? json_object_get(req->json, "owners") : NULL;
    if (arr && !json_is_array(arr))
        return ck_err_set(CK_EINVAL, "the field 'owners' must be an array of principals");
    size_t n = json_array_size(arr);
    if (n > 100)
        return ck_err_set(CK_EINVAL, "at most 100 owners at a time, got %zu", n);
    char(*ids)[37] = ck_xcalloc(n ? n : 1, sizeof *ids);
    const char **refs = ck_xcalloc(n ? n : 1, sizeof *refs);
    ck_err rc = CK_OK;
    for (size_t i = 0; i < n && rc == CK_OK; i++) {
        json_t *e = json_array_get(arr, i);
        if (!json_is_string(e))
            rc = ck_err_set(CK_EINVAL, "owners[%zu] must be a string", i);
        else
            rc = resolve_owner(api, json_string_value(e), ids[i]);
        refs[i] = ids[i];
    }
    if (rc == CK_OK)
        rc = ck_subscription_create_many(api->vaults, sub, refs, n);
    ck_api_audit(api, req, "subscription.create", sub, rc, NULL);
    free(refs);
    free(ids);
    CK_TRY(rc);
    return respond_subscription(api, resp, sub, 201);
}

static ck_err add_subscription_owner(struct ck_http_req *req, struct ck_http_resp *resp)
{
    struct ck_api *api = req->ctx;
    const char *sub = ck_http_param(req, "sub");
    CK_TRY(authorize(api, req, sub, "owners/write", "subscription.owner.add", sub));
    const char *ref = NULL;
    CK_TRY(ck_json_str(req->json, "owner", true, &ref));
    char oid[37];
    ck_err rc = resolve_owner(api, ref, oid);
    if (rc == CK_OK)
        rc = ck_subscription_add_owner(api->vaults, sub, oid);
    ck_api_audit(api, req, "subscription.owner.add", sub, rc, ref);
    CK_TRY(rc);
    return respond_subscription(api, resp, sub, 200);
}

static ck_err get_subscription(struct ck_http_req *req, struct ck_http_resp *resp)
{
    struct ck_api *api = req->ctx;
    const char *sub = ck_http_param(req, "sub");
    CK_TRY(authorize(api, req, sub, "read", "subscription.get", sub));
    return respond_subscription(api, resp, sub, 200);
}

void ck_api_register_vaults(struct ck_router *r, struct ck_api *api)
{
#define RG_VAULTS "/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.KeyVault/vaults"
    ck_router_add(r, "PUT", "/admin/subscriptions/{sub}", put_subscription, api, 0, 0);
    ck_router_add(r, "GET", "/admin/subscriptions/{sub}", get_subscription, api, 0, 0);
    ck_router_add(r, "POST", "/admin/subscriptions/{sub}/owners", add_subscription_owner, api, 0,
                  0);
    ck_router_add(r, "PUT", RG_VAULTS "/{name}", put_vault, api, 0, 0);
    ck_router_add(r, "GET", RG_VAULTS "/{name}", get_vault, api, 0, 0);
    ck_router_add(r, "PATCH", RG_VAULTS "/{name}", patch_vault, api, 0, 0);
    ck_router_add(r, "DELETE", RG_VAULTS "/{name}", delete_vault, api, 0, 0);
    ck_router_add(r, "PUT", RG_VAULTS "/{name}/accessPolicies/{kind}", edit_policies, api, 0, 0);
    ck_router_add(r, "GET", RG_VAULTS, list_vaults, api, 0, 0);
    ck_router_add(r, "GET", "/subscriptions/{sub}/providers/Microsoft.KeyVault/vaults", list_vaults,
                  api, 0, 0);
    ck_router_add(r, "GET", "/ckey/vaults/{name}", get_vault_by_name, api, 0, 0);
    ck_router_add(r, "GET", "/directory/principals/{ref}", get_directory_principal, api, 0, 0);
#undef RG_VAULTS
}
