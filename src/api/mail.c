/*
 * mail.c — mail users, mailboxes, items and jobs (docs/service-api.md):
 * Set-MailUser, Set-Mailbox, Get-MailboxStatistics, the item data API and
 * job progress.
 *
 * Tenant admins and the operator manage everything here; an end user may
 * read and write the items, and read the statistics, of the mailbox whose
 * UPN is their own — and nothing else.
 */
#include "api/api.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* May the caller act on mailbox upn of tenant t? Admins and the operator
 * always; an end user only on their own mailbox, and only when own_ok. */
static ck_err mailbox_access(struct ck_http_req *req, struct ck_tenant *t, bool own_ok)
{
    struct ck_api *api = req->ctx;
    const struct ck_principal *p = ck_api_caller(req);
    const char *upn = ck_http_param(req, "upn");
    CK_TRY(ck_api_tenant_access(api, req, ck_http_param(req, "t"), false, t));
    bool admin = p->roles & CK_ROLE_OPERATOR;
    if (!admin)
        CK_TRY(ck_tenant_is_admin(api->store, t->id, p->object_id, &admin));
    if (admin || (own_ok && p->upn && upn && strcasecmp(p->upn, upn) == 0))
        return CK_OK;
    ck_err_set(CK_EFORBIDDEN, "the principal '%s' may not act on the mailbox '%s' of tenant %s",
               ck_principal_name(p), upn ? upn : "-", t->name);
    ck_err_code("Forbidden", "AccessDenied");
    ck_api_audit(api, req, "mailbox.access", upn ? upn : "-", CK_EFORBIDDEN, NULL);
    return CK_EFORBIDDEN;
}

static json_t *time_json(int64_t t)
{
    char s[32];
    ck_time_rfc3339(t, s);
    return json_string(s);
}

static json_t *stats_json(struct ck_api *api, const struct ck_mailbox_info *i)
{
    int64_t pct = i->item_count ? (i->item_count - i->pending) * 100 / i->item_count : 100;
    json_t *o = json_pack(
        "{s:s,s:b,s:o,s:o,s:b,s:I,s:I,s:I,s:I,s:o}", "Identity", i->upn, "Migrated", i->migrated,
        "DataEncryptionPolicyID", *i->dep_id ? json_string(i->dep_id) : json_null(),
        "EffectiveDataEncryptionPolicyID",
        *i->effective_dep ? json_string(i->effective_dep) : json_null(), "IsEncrypted",
        i->is_encrypted, "ItemCount", (json_int_t)i->item_count, "TotalItemSize",
        (json_int_t)i->total_size, "PendingItems", (json_int_t)i->pending, "PercentComplete",
        (json_int_t)(i->migrated ? pct : 0), "WhenCreatedUTC", time_json(i->created));
    json_object_set_new(o, "JobId", *i->job_id ? json_string(i->job_id) : json_null());
    struct ck_job *j = NULL;
    if (*i->job_id && ck_job_get(api->jobs, i->job_id, &j) == CK_OK) {
        json_object_set_new(o, "JobState", json_string(ck_job_state_name(j->state)));
        if (j->error)
            json_object_set_new(o, "JobError", json_string(j->error));
    } else {
        json_object_set_new(o, "JobState", json_null());
    }
    ck_job_free(j);
    return o;
}

static ck_err send_stats(struct ck_http_req *req, struct ck_http_resp *resp, unsigned status,
                         const char *tenant, const char *upn)
{
    struct ck_api *api = req->ctx;
    struct ck_mailbox_info info;
    CK_TRY(ck_mailbox_info(api->mail, tenant, upn, &info));
    resp->status = status;
    resp->json = stats_json(api, &info);
    return CK_OK;
}

/* The "dataEncryptionPolicy" member: a DEP id or name, or null for the
 * service-managed DEP. *dep_id is NULL for null. */
static ck_err dep_member(struct ck_api *api, json_t *body, const char *tenant, bool required,
                         bool *given, char dep_id[37])
{
    json_t *v = json_object_get(body, "dataEncryptionPolicy");
    *given = v != NULL;
    dep_id[0] = '\0';
    if (!v) {
        if (required)
            return ck_err_set(CK_EINVAL, "the request body must have the field "
                                         "'dataEncryptionPolicy' (a DEP id or name, or null)");
        return CK_OK;
    }
    if (json_is_null(v))
        return CK_OK;
    if (!json_is_string(v))
        return ck_err_set(CK_EINVAL, "dataEncryptionPolicy must be a DEP id or name, or null");
    struct ck_dep *d;
    CK_TRY(ck_dep_get(api->deps, tenant, json_string_value(v), &d));
    bool sm = d->service_managed;
    snprintf(dep_id, 37, "%s", d->id);
    ck_dep_free(d);
    if (sm)
        dep_id[0] = '\0';
    return CK_OK;
}

static ck_err new_mailuser(struct ck_http_req *req, struct ck_http_resp *resp)
{
    struct ck_api *api = req->ctx;
    struct ck_tenant t;
    CK_TRY(ck_api_tenant_access(api, req, ck_http_param(req, "t"), true, &t));
    const char *upn = NULL;
    CK_TRY(ck_json_str(req->json, "identity", true, &upn));
    bool given;
    char dep[37];
    CK_TRY(dep_member(api, req->json, t.id, false, &given, dep));
    if (*dep)
        CK_TRY(ck_dep_assignable(api->deps, t.id, dep));
    ck_err rc = ck_mailuser_new(api->mail, t.id, upn);
    if (rc == CK_OK && *dep)
        rc = ck_mailuser_set_dep(api->mail, t.id, upn, dep, NULL);
    ck_api_audit(api, req, "mailuser.new", upn, rc, *dep ? dep : NULL);
    CK_TRY(rc);
    return send_stats(req, resp, 201, t.id, upn);
}

/* Set-MailUser / Set-Mailbox -DataEncryptionPolicy. */
static ck_err assign(struct ck_http_req *req, struct ck_http_resp *resp, const char *operation)
{
    struct ck_api *api = req->ctx;
    struct ck_tenant t;
    CK_TRY(mailbox_access(req, &t, false));
    const char *upn = ck_http_param(req, "upn");
    bool given;
    char dep[37], job[37] = "";
    CK_TRY(dep_member(api, req->json, t.id, true, &given, dep));
    ck_err rc = ck_mailbox_set_dep(api->mail, t.id, upn, *dep ? dep : NULL, req->request_id, job);
    ck_api_audit(api, req, operation, upn, rc, *dep ? dep : "service-managed");
    CK_TRY(rc);
    return send_stats(req, resp, 200, t.id, upn);
}

static ck_err set_mailuser(struct ck_http_req *req, struct ck_http_resp *resp)
{
    return assign(req, resp, "mailuser.set");
}

static ck_err set_mailbox(struct ck_http_req *req, struct ck_http_resp *resp)
{
    return assign(req, resp, "mailbox.set");
}

static ck_err new_mailbox(struct ck_http_req *req, struct ck_http_resp *resp)
{
    struct ck_api *api = req->ctx;
    struct ck_tenant t;
    CK_TRY(ck_api_tenant_access(api, req, ck_http_param(req, "t"), true, &t));
    const char *upn = NULL;
    CK_TRY(ck_json_str(req->json, "identity", true, &upn));
    ck_err rc = ck_mailbox_new(api->mail, t.id, upn, req->request_id);
    ck_api_audit(api, req, "mailbox.new", upn, rc, NULL);
    CK_TRY(rc);
    return send_stats(req, resp, 201, t.id, upn);
}

static ck_err list_mailboxes(struct ck_http_req *req, struct ck_http_resp *resp)
{
    struct ck_api *api = req->ctx;
    struct ck_tenant t;
    CK_TRY(ck_api_tenant_access(api, req, ck_http_param(req, "t"), true, &t));
    struct ck_mailbox_info *v;
    size_t n;
    CK_TRY(ck_mailbox_list(api->mail, t.id, &v, &n));
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(arr, stats_json(api, &v[i]));
    free(v);
    return ck_http_ok(resp, json_pack("{s:o}", "value", arr));
}

static ck_err get_stats(struct ck_http_req *req, struct ck_http_resp *resp)
{
    struct ck_tenant t;
    CK_TRY(mailbox_access(req, &t, true));
    return send_stats(req, resp, 200, t.id, ck_http_param(req, "upn"));
}

/* ---------- items ---------- */

static ck_err put_item(struct ck_http_req *req, struct ck_http_resp *resp)
{
    struct ck_api *api = req->ctx;
    struct ck_tenant t;
    CK_TRY(mailbox_access(req, &t, true));
    const char *id = ck_http_param(req, "id");
    CK_TRY(ck_item_put(api->mail, t.id, ck_http_param(req, "upn"), id, req->body.p, req->body.n,
                       req->request_id));
    resp->status = 201;
    resp->json = json_pack("{s:s,s:I}", "id", id, "size", (json_int_t)req->body.n);
    return CK_OK;
}

static ck_err get_item(struct ck_http_req *req, struct ck_http_resp *resp)
{
    struct ck_api *api = req->ctx;
    struct ck_tenant t;
    CK_TRY(mailbox_access(req, &t, true));
    struct ck_secret plain = {0};
    CK_TRY(ck_item_get(api->mail, t.id, ck_http_param(req, "upn"), ck_http_param(req, "id"),
                       req->request_id, &plain));
    /* The server wipes resp->raw after sending. */
    ck_err rc = ck_buf_set(&resp->raw, plain.p, plain.n);
    ck_secret_free(&plain);
    resp->status = 200;
    resp->content_type = "message/rfc822";
    return rc;
}

static ck_err delete_item(struct ck_http_req *req, struct ck_http_resp *resp)
{
    struct ck_api *api = req->ctx;
    struct ck_tenant t;
    CK_TRY(mailbox_access(req, &t, true));
    CK_TRY(ck_item_delete(api->mail, t.id, ck_http_param(req, "upn"), ck_http_param(req, "id")));
    resp->status = 204;
    return CK_OK;
}

static ck_err list_items(struct ck_http_req *req, struct ck_http_resp *resp)
{
    struct ck_api *api = req->ctx;
    struct ck_tenant t;
    CK_TRY(mailbox_access(req, &t, true));
    char *after = ck_http_query(req, "after"), *maxs = ck_http_query(req, "max");
    long max = maxs ? strtol(maxs, NULL, 10) : 100;
    free(maxs);
    struct ck_item_entry *v = NULL;
    size_t n = 0;
    bool more = false;
    ck_err rc = max < 1 || max > 1000 ? ck_err_set(CK_EINVAL, "max must be between 1 and 1000")
                                      : ck_item_list(api->mail, t.id, ck_http_param(req, "upn"),
                                                     after, (size_t)max, &v, &n, &more);
    free(after);
    CK_TRY(rc);
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(arr,
                              json_pack("{s:s,s:I,s:o}", "id", v[i].id, "size",
                                        (json_int_t)v[i].size, "created", time_json(v[i].created)));
    json_t *body = json_pack("{s:o}", "value", arr);
    json_object_set_new(body, "next", more && n ? json_string(v[n - 1].id) : json_null());
    free(v);
    return ck_http_ok(resp, body);
}

/* ---------- jobs ---------- */

static json_t *job_json(const struct ck_job *j)
{
    json_t *o =
        json_pack("{s:s,s:s,s:s,s:s,s:s,s:I,s:I,s:I,s:i,s:o,s:o}", "id", j->id, "kind", j->kind,
                  "tenant", j->tenant, "target", j->target, "state", ck_job_state_name(j->state),
                  "done", (json_int_t)j->done, "total", (json_int_t)j->total, "percent",
                  (json_int_t)(j->state == CK_JOB_DONE ? 100
                               : j->total > 0          ? j->done * 100 / j->total
                                                       : 0),
                  "attempts", j->attempts, "created", time_json(j->created), "updated",
                  time_json(j->updated));
    json_object_set_new(o, "error", j->error ? json_string(j->error) : json_null());
    json_object_set_new(o, "finished", j->finished ? time_json(j->finished) : json_null());
    return o;
}

static ck_err list_jobs(struct ck_http_req *req, struct ck_http_resp *resp)
{
    struct ck_api *api = req->ctx;
    struct ck_tenant t;
    CK_TRY(ck_api_tenant_access(api, req, ck_http_param(req, "t"), true, &t));
    struct ck_job **v;
    size_t n;
    CK_TRY(ck_job_list(api->jobs, t.id, 100, &v, &n));
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(arr, job_json(v[i]));
    ck_job_list_free(v, n);
    return ck_http_ok(resp, json_pack("{s:o}", "value", arr));
}

static ck_err get_job(struct ck_http_req *req, struct ck_http_resp *resp)
{
    struct ck_api *api = req->ctx;
    struct ck_job *j;
    CK_TRY(ck_job_get(api->jobs, ck_http_param(req, "id"), &j));
    struct ck_tenant t;
    ck_err rc = ck_api_tenant_access(api, req, j->tenant, true, &t);
    if (rc == CK_OK)
        resp->json = job_json(j);
    ck_job_free(j);
    return rc;
}

void ck_api_register_mail(struct ck_router *r, struct ck_api *api)
{
    ck_router_add(r, "POST", "/tenants/{t}/mailusers", new_mailuser, api, 0, 0);
    ck_router_add(r, "PATCH", "/tenants/{t}/mailusers/{upn}", set_mailuser, api, 0, 0);
    ck_router_add(r, "POST", "/tenants/{t}/mailboxes", new_mailbox, api, 0, 0);
    ck_router_add(r, "GET", "/tenants/{t}/mailboxes", list_mailboxes, api, 0, 0);
    ck_router_add(r, "GET", "/tenants/{t}/mailboxes/{upn}", get_stats, api, 0, 0);
    ck_router_add(r, "PATCH", "/tenants/{t}/mailboxes/{upn}", set_mailbox, api, 0, 0);
    ck_router_add(r, "GET", "/tenants/{t}/mailboxes/{upn}/items", list_items, api, 0, 0);
    ck_router_add(r, "PUT", "/tenants/{t}/mailboxes/{upn}/items/{id}", put_item, api, CK_ROUTE_RAW,
                  CK_MAIL_ITEM_MAX);
    ck_router_add(r, "GET", "/tenants/{t}/mailboxes/{upn}/items/{id}", get_item, api, 0, 0);
    ck_router_add(r, "DELETE", "/tenants/{t}/mailboxes/{upn}/items/{id}", delete_item, api, 0, 0);
    ck_router_add(r, "GET", "/tenants/{t}/jobs", list_jobs, api, 0, 0);
    ck_router_add(r, "GET", "/jobs/{id}", get_job, api, 0, 0);
}
