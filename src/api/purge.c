/*
 * purge.c — the exit path over HTTP (docs/purge.md, docs/service-api.md):
 * purge approvers, purge requests, documents, execution, status,
 * certificates, verification, offboarding and the signing key.
 *
 *   GET  /purge/signing-key                    no token   {algorithm, publicKey, fingerprint}
 *   PUT  /tenants/{t}/purge-approver           admin (first) / operator  {publicKey: PEM}
 *   GET  /tenants/{t}/purge-approver           admin
 *   POST /tenants/{t}/deps/{dep}/purge-request admin      {reason, contact} → 201 purge
 *   POST /tenants/{t}/geos/{geo}/dep/purge-request  admin {reason, contact} → 201 purge
 *   GET  /tenants/{t}/purges                   admin      {value: [purge]}
 *   GET  /purges/{id}                          admin      purge
 *   POST /purges/{id}/document                 admin      {reissue?} → {document, documentId}
 *   POST /purges/execute                       operator   {document, signature} → 202 purge
 *   GET  /purges/{id}/certificate              admin      the signed certificate file
 *   POST /purges/{id}/verify                   admin      the verification report
 *   POST /tenants/{t}/offboard                 operator   → 202 progress
 *   GET  /tenants/{t}/offboard                 admin      progress
 * "admin" means the operator or an admin of the tenant the purge is of.
 */
#include "api/api.h"
#include "crypto/crypto.h"

#include <stdlib.h>
#include <string.h>

static json_t *time_or_null(int64_t t)
{
    if (!t)
        return json_null();
    char s[32];
    ck_time_rfc3339(t, s);
    return json_string(s);
}

static json_t *str_or_null(const char *s)
{
    return s && *s ? json_string(s) : json_null();
}

static json_t *purge_json(const struct ck_purge *p)
{
    json_t *o = json_pack(
        "{s:s,s:s,s:s,s:s,s:s,s:s,s:i,s:s,s:s,s:s,s:o}", "id", p->id, "tenant", p->tenant, "kind",
        ck_purge_kind_name(p->kind), "policy", p->target, "policyName", p->target_name, "stage",
        ck_purge_stage_name(p->stage), "percent", p->percent, "reason", p->reason, "contact",
        p->contact, "requestedBy", p->requested_by, "requestedAt", time_or_null(p->requested_at));
    json_object_set_new(o, "documentId", str_or_null(p->document_id));
    json_object_set_new(o, "issuedAt", time_or_null(p->issued_at));
    json_object_set_new(o, "executedBy", str_or_null(p->executed_by));
    json_object_set_new(o, "executedAt", time_or_null(p->executed_at));
    json_object_set_new(o, "completedAt", time_or_null(p->completed_at));
    json_object_set_new(o, "jobId", str_or_null(p->job_id));
    return o;
}

static ck_err send_purge(struct ck_http_resp *resp, unsigned status, const struct ck_purge *p)
{
    resp->status = status;
    resp->json = purge_json(p);
    return CK_OK;
}

static const char *caller_name(const struct ck_http_req *req)
{
    const struct ck_principal *p = ck_api_caller(req);
    return p ? ck_principal_name(p) : "-";
}

/* The purge {id}, for the operator or an admin of its tenant. */
static ck_err purge_access(struct ck_http_req *req, struct ck_purge *pg)
{
    struct ck_api *api = req->ctx;
    CK_TRY(ck_purge_get(api->purges, NULL, ck_http_param(req, "id"), pg));
    struct ck_tenant t;
    return ck_api_tenant_access(api, req, pg->tenant, true, &t);
}

/* ---------- the signing key and approvers ---------- */

static ck_err get_signing_key(struct ck_http_req *req, struct ck_http_resp *resp)
{
    struct ck_api *api = req->ctx;
    char *pem = NULL, fpr[CK_PURGE_FPR_LEN];
    CK_TRY(ck_purge_signing_key(api->purges, &pem, fpr));
    json_t *o =
        json_pack("{s:s,s:s,s:s}", "algorithm", "Ed25519", "publicKey", pem, "fingerprint", fpr);
    free(pem);
    return ck_http_ok(resp, o);
}

static json_t *approver_json(const struct ck_purge_approver *a)
{
    char *pem = NULL;
    if (ck_ed25519_public_pem(a->public_key, &pem) != CK_OK)
        pem = NULL;
    json_t *o = json_pack("{s:s,s:o,s:s,s:o}", "fingerprint", a->fingerprint, "publicKey",
                          str_or_null(pem), "setBy", a->set_by, "setAt", time_or_null(a->set_at));
    free(pem);
    return o;
}

static ck_err set_approver(struct ck_http_req *req, struct ck_http_resp *resp)
{
    struct ck_api *api = req->ctx;
    struct ck_tenant t;
    CK_TRY(ck_api_tenant_access(api, req, ck_http_param(req, "t"), true, &t));
    const char *pem = NULL;
    CK_TRY(ck_json_str(req->json, "publicKey", true, &pem));
    const struct ck_principal *p = ck_api_caller(req);
    struct ck_purge_approver a;
    CK_TRY(ck_purge_approver_set(api->purges, t.id, pem, p && (p->roles & CK_ROLE_OPERATOR),
                                 caller_name(req), req->request_id, &a));
    return ck_http_ok(resp, approver_json(&a));
}

static ck_err get_approver(struct ck_http_req *req, struct ck_http_resp *resp)
{
    struct ck_api *api = req->ctx;
    struct ck_tenant t;
    CK_TRY(ck_api_tenant_access(api, req, ck_http_param(req, "t"), true, &t));
    struct ck_purge_approver a;
    CK_TRY(ck_purge_approver_get(api->purges, t.id, &a));
    return ck_http_ok(resp, approver_json(&a));
}

/* ---------- requests ---------- */

/* A purge request, of a mail DEP ({dep}) or of a geo's files ({geo}). */
static ck_err request(struct ck_http_req *req, struct ck_http_resp *resp, enum ck_purge_kind kind)
{
    struct ck_api *api = req->ctx;
    struct ck_tenant t;
    CK_TRY(ck_api_tenant_access(api, req, ck_http_param(req, "t"), true, &t));
    const char *reason, *contact;
    CK_TRY(ck_json_str(req->json, "reason", true, &reason));
    CK_TRY(ck_json_str(req->json, "contact", true, &contact));
    struct ck_purge pg;
    if (kind == CK_PURGE_MAIL)
        CK_TRY(ck_purge_request_mail(api->purges, t.id, ck_http_param(req, "dep"), reason, contact,
                                     caller_name(req), req->request_id, &pg));
    else
        CK_TRY(ck_purge_request_files(api->purges, t.id, ck_http_param(req, "geo"), reason, contact,
                                      caller_name(req), req->request_id, &pg));
    return send_purge(resp, 201, &pg);
}

static ck_err request_mail(struct ck_http_req *req, struct ck_http_resp *resp)
{
    return request(req, resp, CK_PURGE_MAIL);
}

static ck_err request_files(struct ck_http_req *req, struct ck_http_resp *resp)
{
    return request(req, resp, CK_PURGE_FILES);
}

static ck_err list_purges(struct ck_http_req *req, struct ck_http_resp *resp)
{
    struct ck_api *api = req->ctx;
    struct ck_tenant t;
    CK_TRY(ck_api_tenant_access(api, req, ck_http_param(req, "t"), true, &t));
    struct ck_purge *v;
    size_t n;
    CK_TRY(ck_purge_list(api->purges, t.id, &v, &n));
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(arr, purge_json(&v[i]));
    free(v);
    return ck_http_ok(resp, json_pack("{s:o}", "value", arr));
}

static ck_err get_purge(struct ck_http_req *req, struct ck_http_resp *resp)
{
    struct ck_purge pg;
    CK_TRY(purge_access(req, &pg));
    return send_purge(resp, 200, &pg);
}

/* ---------- document, execution ---------- */

static ck_err issue_document(struct ck_http_req *req, struct ck_http_resp *resp)
{
    struct ck_api *api = req->ctx;
    struct ck_purge pg;
    CK_TRY(purge_access(req, &pg));
    bool reissue = false;
    if (req->json)
        CK_TRY(ck_json_bool(req->json, "reissue", false, &reissue, NULL));
    char *doc = NULL;
    CK_TRY(ck_purge_document(api->purges, pg.tenant, pg.id, reissue, req->request_id, &doc));
    CK_TRY(ck_purge_get(api->purges, pg.tenant, pg.id, &pg));
    json_t *o =
        json_pack("{s:s,s:s,s:s}", "purgeId", pg.id, "documentId", pg.document_id, "document", doc);
    free(doc);
    return ck_http_ok(resp, o);
}

static ck_err execute(struct ck_http_req *req, struct ck_http_resp *resp)
{
    struct ck_api *api = req->ctx;
    CK_TRY(ck_api_require_operator(api, req, "execute a purge"));
    const char *doc = NULL, *sig64 = NULL;
    CK_TRY(ck_json_str(req->json, "document", true, &doc));
    ck_err rc = ck_json_str(req->json, "signature", false, &sig64);
    CK_TRY(rc);
    struct ck_buf sig = {0};
    if (!sig64 || !*sig64)
        rc = ck_err_set(CK_EINVAL, "a purge is executed only with the approver's signature of "
                                   "its document: \"signature\" is missing");
    else if (ck_b64url_decode(sig64, strlen(sig64), &sig) != CK_OK || sig.n != 64)
        rc = ck_err_set(CK_EINVAL, "\"signature\" must be an Ed25519 signature: 64 bytes in "
                                   "base64url");
    struct ck_purge pg;
    if (rc == CK_OK)
        rc = ck_purge_execute(api->purges, doc, strlen(doc), sig.p, caller_name(req),
                              req->request_id, &pg);
    ck_buf_free(&sig);
    CK_TRY(rc); /* the domain audits every outcome of an execution it got to */
    return send_purge(resp, 202, &pg);
}

/* ---------- certificate, verification ---------- */

static ck_err get_certificate(struct ck_http_req *req, struct ck_http_resp *resp)
{
    struct ck_api *api = req->ctx;
    struct ck_purge pg;
    CK_TRY(purge_access(req, &pg));
    json_t *cert;
    CK_TRY(ck_purge_certificate(api->purges, pg.tenant, pg.id, &cert));
    return ck_http_ok(resp, cert);
}

static ck_err verify(struct ck_http_req *req, struct ck_http_resp *resp)
{
    struct ck_api *api = req->ctx;
    struct ck_purge pg;
    CK_TRY(purge_access(req, &pg));
    json_t *report;
    ck_err rc = ck_purge_verify(api->purges, pg.tenant, pg.id, &report);
    ck_api_audit(api, req, "purge.verify", pg.id, rc,
                 rc == CK_OK ? json_string_value(json_object_get(report, "result")) : NULL);
    CK_TRY(rc);
    return ck_http_ok(resp, report);
}

/* ---------- offboarding ---------- */

static ck_err start_offboard(struct ck_http_req *req, struct ck_http_resp *resp)
{
    struct ck_api *api = req->ctx;
    CK_TRY(ck_api_require_operator(api, req, "offboard a tenant"));
    struct ck_tenant t;
    CK_TRY(ck_api_tenant_access(api, req, ck_http_param(req, "t"), true, &t));
    char job_id[37];
    CK_TRY(ck_offboard_start(api->purges, t.id, req->request_id, job_id));
    json_t *o;
    CK_TRY(ck_offboard_status(api->purges, t.id, &o));
    resp->status = 202;
    resp->json = o;
    return CK_OK;
}

static ck_err offboard_status(struct ck_http_req *req, struct ck_http_resp *resp)
{
    struct ck_api *api = req->ctx;
    struct ck_tenant t;
    CK_TRY(ck_api_tenant_access(api, req, ck_http_param(req, "t"), true, &t));
    json_t *o;
    CK_TRY(ck_offboard_status(api->purges, t.id, &o));
    return ck_http_ok(resp, o);
}

void ck_api_register_purge(struct ck_router *r, struct ck_api *api)
{
    ck_router_add(r, "GET", "/purge/signing-key", get_signing_key, api, CK_ROUTE_PUBLIC, 0);
    ck_router_add(r, "PUT", "/tenants/{t}/purge-approver", set_approver, api, 0, 0);
    ck_router_add(r, "GET", "/tenants/{t}/purge-approver", get_approver, api, 0, 0);
    ck_router_add(r, "POST", "/tenants/{t}/deps/{dep}/purge-request", request_mail, api, 0, 0);
    ck_router_add(r, "POST", "/tenants/{t}/geos/{geo}/dep/purge-request", request_files, api, 0, 0);
    ck_router_add(r, "GET", "/tenants/{t}/purges", list_purges, api, 0, 0);
    ck_router_add(r, "POST", "/purges/execute", execute, api, 0, 0);
    ck_router_add(r, "GET", "/purges/{id}", get_purge, api, 0, 0);
    ck_router_add(r, "POST", "/purges/{id}/document", issue_document, api, 0, 0);
    ck_router_add(r, "GET", "/purges/{id}/certificate", get_certificate, api, 0, 0);
    ck_router_add(r, "POST", "/purges/{id}/verify", verify, api, 0, 0);
    ck_router_add(r, "POST", "/tenants/{t}/offboard", start_offboard, api, 0, 0);
    ck_router_add(r, "GET", "/tenants/{t}/offboard", offboard_status, api, 0, 0);
}
