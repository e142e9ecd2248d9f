/*
 * files.c — geos, sites, files and the SharePoint-style data encryption
 * policy of each geo (docs/service-api.md, "Files"):
 *
 *   POST   /tenants/{t}/geos                         {geo}
 *   GET    /tenants/{t}/geos
 *   POST   /tenants/{t}/sites                        {geo, site:"/sites/NAME"}
 *   GET    /tenants/{t}/sites
 *   GET    /tenants/{t}/sites/{site}/dep-status      (Get-SPOSiteDataEncryptionPolicy)
 *   GET    /tenants/{t}/sites/{site}/files
 *   PUT    /tenants/{t}/sites/{site}/files/{*path}   streamed body; ?chunkSize=N
 *   GET    /tenants/{t}/sites/{site}/files/{*path}   streamed answer; ?offset=&length=
 *   DELETE /tenants/{t}/sites/{site}/files/{*path}
 *   POST   /tenants/{t}/geos/{geo}/dep               (Register-SPODataEncryptionPolicy)
 *   GET    /tenants/{t}/geos/{geo}/dep               (Get-SPODataEncryptionPolicy)
 *   PATCH  /tenants/{t}/geos/{geo}/dep               (Update-SPODataEncryptionPolicy)
 *   POST   /tenants/{t}/geos/{geo}/dep/restore       (Restore-SPODataEncryptionPolicy)
 * {site} is the site's NAME, the part after "/sites/". Tenant admins and the
 * operator only.
 *
 * Downloads: the status line and Content-Length go out before the first
 * chunk is decrypted, so a stored chunk failing its integrity check (or any
 * other failure while reading) ends the body early; the client sees fewer
 * bytes than Content-Length and must treat the download as failed (the CLI
 * reports "integrity error"). Wrong bytes are never sent. A range is asked
 * with the query parameters offset and length (a Range header is ignored,
 * as HTTP allows: the answer is then the whole file with 200).
 */
#include "api/api.h"
#include "files/files.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define FILES_MAX_BODY ((size_t)64 << 30) /* 64 GiB */

static json_t *time_json(int64_t t)
{
    char s[32];
    ck_time_rfc3339(t, s);
    return json_string(s);
}

static json_t *str_or_null(const char *s)
{
    return s && *s ? json_string(s) : json_null();
}

static ck_err files_on(struct ck_api *api)
{
    if (!api->files)
        return ck_err_set(CK_ENOTFOUND, "the files service is not enabled on this server");
    return CK_OK;
}

/* Access check for every route: the operator or an admin of {t}. */
static ck_err tenant_admin(struct ck_http_req *req, struct ck_tenant *t)
{
    struct ck_api *api = req->ctx;
    CK_TRY(files_on(api));
    return ck_api_tenant_access(api, req, ck_http_param(req, "t"), true, t);
}

/* "/sites/" + {site}. */
static ck_err site_path(const struct ck_http_req *req, char out[257])
{
    const char *name = ck_http_param(req, "site");
    if (!name || !*name || strlen(name) > 128)
        return ck_err_set(CK_EINVAL, "a site name must be 1-128 characters");
    snprintf(out, 257, "/sites/%s", name);
    return CK_OK;
}

/* A non-negative integer query parameter; *present false when absent. */
static ck_err query_int(const struct ck_http_req *req, const char *name, int64_t *out,
                        bool *present)
{
    char *s = ck_http_query(req, name);
    *present = s != NULL;
    if (!s)
        return CK_OK;
    char *end = NULL;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    bool ok = *s && *end == '\0' && errno == 0 && v >= 0;
    free(s);
    if (!ok)
        return ck_err_set(CK_EINVAL, "the query parameter %s must be a non-negative integer", name);
    *out = (int64_t)v;
    return CK_OK;
}

/* ---------- geos and sites ---------- */

static ck_err add_geo(struct ck_http_req *req, struct ck_http_resp *resp)
{
    struct ck_api *api = req->ctx;
    struct ck_tenant t;
    CK_TRY(tenant_admin(req, &t));
    const char *geo = NULL;
    CK_TRY(ck_json_str(req->json, "geo", true, &geo));
    ck_err rc = ck_geo_add(api->files, t.id, geo);
    ck_api_audit(api, req, "geo.add", geo, rc, NULL);
    CK_TRY(rc);
    resp->status = 201;
    resp->json = json_pack("{s:s,s:s}", "geo", geo, "tenant", t.id);
    return CK_OK;
}

static ck_err list_geos(struct ck_http_req *req, struct ck_http_resp *resp)
{
    struct ck_api *api = req->ctx;
    struct ck_tenant t;
    CK_TRY(tenant_admin(req, &t));
    char(*geos)[9] = NULL;
    size_t n = 0;
    CK_TRY(ck_geo_list(api->files, t.id, &geos, &n));
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(arr, json_pack("{s:s}", "geo", geos[i]));
    free(geos);
    return ck_http_ok(resp, json_pack("{s:o}", "value", arr));
}

static json_t *site_json(const struct ck_site *s)
{
    return json_pack("{s:s,s:s,s:s,s:o}", "id", s->id, "site", s->path, "geo", s->geo, "created",
                     time_json(s->created));
}

static ck_err new_site(struct ck_http_req *req, struct ck_http_resp *resp)
{
    struct ck_api *api = req->ctx;
    struct ck_tenant t;
    CK_TRY(tenant_admin(req, &t));
    const char *geo = NULL, *path = NULL;
    CK_TRY(ck_json_str(req->json, "geo", true, &geo));
    CK_TRY(ck_json_str(req->json, "site", true, &path));
    struct ck_site s;
    ck_err rc = ck_site_new(api->files, t.id, geo, path, &s);
    ck_api_audit(api, req, "site.new", path, rc, geo);
    CK_TRY(rc);
    resp->status = 201;
    resp->json = site_json(&s);
    return CK_OK;
}

static ck_err list_sites(struct ck_http_req *req, struct ck_http_resp *resp)
{
    struct ck_api *api = req->ctx;
    struct ck_tenant t;
    CK_TRY(tenant_admin(req, &t));
    struct ck_site *v = NULL;
    size_t n = 0;
    CK_TRY(ck_site_list(api->files, t.id, &v, &n));
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(arr, site_json(&v[i]));
    free(v);
    return ck_http_ok(resp, json_pack("{s:o}", "value", arr));
}

/* PercentComplete: 100 once Registered, the job's share while one runs,
 * 0 before any registration. */
static int spo_percent(const struct ck_spo_dep *d)
{
    return d->state == CK_SPO_REGISTERED ? 100 : d->state == CK_SPO_UNREGISTERED ? 0 : d->percent;
}

/* Get-SPOSiteDataEncryptionPolicy. */
static ck_err site_dep_status(struct ck_http_req *req, struct ck_http_resp *resp)
{
    struct ck_api *api = req->ctx;
    struct ck_tenant t;
    char path[257];
    CK_TRY(tenant_admin(req, &t));
    CK_TRY(site_path(req, path));
    struct ck_site s;
    CK_TRY(ck_site_get(api->files, t.id, path, &s));
    struct ck_spo_dep d;
    CK_TRY(ck_spo_get(api->files, t.id, s.geo, &d));
    json_t *o = json_pack("{s:s,s:s,s:s,s:i,s:o,s:o,s:b}", "Site", s.path, "Geo", s.geo, "State",
                          ck_spo_state_name(d.state), "PercentComplete", spo_percent(&d),
                          "PrimaryKeyVaultUri", str_or_null(d.primary_uri), "SecondaryKeyVaultUri",
                          str_or_null(d.secondary_uri), "SiteOnCurrentKey",
                          *d.tik_id && strcmp(s.tik_id, d.tik_id) == 0);
    return ck_http_ok(resp, o);
}

/* ---------- files ---------- */

static json_t *file_json(const struct ck_file_info *i)
{
    return json_pack("{s:s,s:I,s:I,s:I,s:I,s:o}", "path", i->path, "version",
                     (json_int_t)i->version, "size", (json_int_t)i->size, "chunkSize",
                     (json_int_t)i->chunk_size, "chunks", (json_int_t)i->chunks, "created",
                     time_json(i->created));
}

static ck_err list_files(struct ck_http_req *req, struct ck_http_resp *resp)
{
    struct ck_api *api = req->ctx;
    struct ck_tenant t;
    char site[257];
    CK_TRY(tenant_admin(req, &t));
    CK_TRY(site_path(req, site));
    struct ck_file_info *v = NULL;
    size_t n = 0;
    CK_TRY(ck_file_list(api->files, t.id, site, &v, &n));
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(arr, file_json(&v[i]));
    free(v);
    return ck_http_ok(resp, json_pack("{s:o}", "value", arr));
}

/* An upload in flight: the request body goes chunk by chunk into w. */
struct upload {
    struct ck_api *api;
    struct ck_http_req *req; /* alive while data() and end() run */
    struct ck_file_writer *w;
    char target[257 + 1025 + 1];
    int64_t received;
    bool done; /* committed, or failed and audited */
};

static ck_err upload_data(void *ctx, const uint8_t *p, size_t n)
{
    struct upload *u = ctx;
    if (u->done)
        return CK_OK;
    ck_err rc = ck_file_writer_write(u->w, p, n);
    if (rc != CK_OK) {
        /* Audited here: the request is alive; nothing is stored. */
        ck_api_audit(u->api, u->req, "file.put", u->target, rc, NULL);
        ck_file_writer_abort(u->w);
        u->w = NULL;
        u->done = true;
        return rc;
    }
    u->received += (int64_t)n;
    return CK_OK;
}

static ck_err upload_end(void *ctx, struct ck_http_req *req, struct ck_http_resp *resp)
{
    struct upload *u = ctx;
    if (!u->w)
        return ck_err_set(CK_EINTERNAL, "the upload of %s already failed", u->target);
    struct ck_file_info info = {0};
    /* Commit frees the writer, whatever its outcome; on failure it also
     * drops the chunks written. */
    ck_err rc = ck_file_writer_commit(u->w, &info);
    u->w = NULL;
    u->done = true;
    char detail[96];
    snprintf(detail, sizeof detail, "version %lld, %lld bytes", (long long)info.version,
             (long long)info.size);
    ck_api_audit(u->api, req, "file.put", u->target, rc, rc == CK_OK ? detail : NULL);
    CK_TRY(rc);
    resp->status = 201;
    resp->json = file_json(&info);
    return CK_OK;
}

static void upload_free(void *ctx)
{
    struct upload *u = ctx;
    /* Not committed (the client went away, or the server stops): drop
     * every chunk written. */
    ck_file_writer_abort(u->w);
    free(u);
}

static ck_err put_file(struct ck_http_req *req, struct ck_http_resp *resp)
{
    (void)resp;
    struct ck_api *api = req->ctx;
    struct ck_tenant t;
    char site[257];
    CK_TRY(tenant_admin(req, &t));
    CK_TRY(site_path(req, site));
    const char *path = ck_http_param(req, "path");
    int64_t chunk = 0;
    bool has_chunk = false;
    CK_TRY(query_int(req, "chunkSize", &chunk, &has_chunk));
    if (has_chunk && (chunk < CK_FILES_CHUNK_MIN || chunk > CK_FILES_CHUNK_MAX))
        return ck_err_set(CK_EINVAL, "chunkSize must be between %u and %u bytes",
                          CK_FILES_CHUNK_MIN, CK_FILES_CHUNK_MAX);
    struct upload *u = ck_xcalloc(1, sizeof *u);
    u->api = api;
    u->req = req;
    snprintf(u->target, sizeof u->target, "%s/%s", site, path);
    ck_err rc = ck_file_writer_open(api->files, t.id, site, path, (size_t)chunk, &u->w);
    if (rc != CK_OK) {
        ck_api_audit(api, req, "file.put", u->target, rc, NULL);
        free(u);
        return rc;
    }
    req->stream = (struct ck_http_stream){
        .ctx = u, .data = upload_data, .end = upload_end, .free = upload_free};
    return CK_OK;
}

/* A download: the reader's bytes, as they are decrypted. */
static ck_err download_read(void *ctx, uint8_t *buf, size_t max, size_t *got)
{
    return ck_file_reader_read(ctx, buf, max, got);
}

static void download_free(void *ctx)
{
    ck_file_reader_close(ctx);
}

static ck_err get_file(struct ck_http_req *req, struct ck_http_resp *resp)
{
    struct ck_api *api = req->ctx;
    struct ck_tenant t;
    char site[257];
    CK_TRY(tenant_admin(req, &t));
    CK_TRY(site_path(req, site));
    int64_t offset = 0, length = 0;
    bool has_offset = false, has_length = false;
    CK_TRY(query_int(req, "offset", &offset, &has_offset));
    CK_TRY(query_int(req, "length", &length, &has_length));
    if (has_length && length == 0)
        return ck_err_set(CK_EINVAL, "length must be at least 1 (leave it out for the rest of "
                                     "the file)");
    struct ck_file_reader *r = NULL;
    struct ck_file_info info;
    CK_TRY(ck_file_reader_open(api->files, t.id, site, ck_http_param(req, "path"), offset, length,
                               &r, &info));
    resp->status = 200;
    resp->content_type = "application/octet-stream";
    resp->reader = (struct ck_http_reader){
        .ctx = r,
        .read = download_read,
        .free = download_free,
        .size = length ? length : info.size - offset,
    };
    return CK_OK;
}

static ck_err delete_file(struct ck_http_req *req, struct ck_http_resp *resp)
{
    struct ck_api *api = req->ctx;
    struct ck_tenant t;
    char site[257], target[257 + 1025 + 1];
    CK_TRY(tenant_admin(req, &t));
    CK_TRY(site_path(req, site));
    const char *path = ck_http_param(req, "path");
    snprintf(target, sizeof target, "%s/%s", site, path);
    ck_err rc = ck_file_delete(api->files, t.id, site, path);
    ck_api_audit(api, req, "file.delete", target, rc, NULL);
    CK_TRY(rc);
    resp->status = 204;
    return CK_OK;
}

/* ---------- SPO data encryption policy ---------- */

static json_t *spo_json(const struct ck_spo_dep *d)
{
    int pct = spo_percent(d);
    json_t *o = json_pack("{s:s,s:s,s:i,s:o,s:o,s:o,s:o,s:o}", "Geo", d->geo, "State",
                          ck_spo_state_name(d->state), "PercentComplete", pct, "PrimaryKeyVaultUri",
                          str_or_null(d->primary_uri), "SecondaryKeyVaultUri",
                          str_or_null(d->secondary_uri), "PrimaryKeyVersion",
                          str_or_null(d->primary_version), "SecondaryKeyVersion",
                          str_or_null(d->secondary_version), "JobId", str_or_null(d->job_id));
    json_object_set_new(o, "PermanentDataPurgeRequested", json_boolean(d->purge_requested));
    json_object_set_new(o, "PermanentDataPurgeReason", str_or_null(d->purge_reason));
    json_object_set_new(o, "PermanentDataPurgeContact", str_or_null(d->purge_contact));
    json_object_set_new(o, "PurgeId", str_or_null(d->purge_id));
    return o;
}

static ck_err get_spo(struct ck_http_req *req, struct ck_http_resp *resp)
{
    struct ck_api *api = req->ctx;
    struct ck_tenant t;
    CK_TRY(tenant_admin(req, &t));
    struct ck_spo_dep d;
    CK_TRY(ck_spo_get(api->files, t.id, ck_http_param(req, "geo"), &d));
    return ck_http_ok(resp, spo_json(&d));
}

/* Register-SPODataEncryptionPolicy and Restore-SPODataEncryptionPolicy take
 * the same two key URIs. */
typedef ck_err (*spo_keys_fn)(struct ck_files *f, const char *tenant, const char *geo,
                              const char *primary_uri, const char *secondary_uri,
                              const char *request_id, struct ck_spo_dep *out);

static ck_err spo_with_keys(struct ck_http_req *req, struct ck_http_resp *resp, spo_keys_fn fn,
                            const char *operation, unsigned status)
{
    struct ck_api *api = req->ctx;
    struct ck_tenant t;
    CK_TRY(tenant_admin(req, &t));
    const char *geo = ck_http_param(req, "geo"), *primary = NULL, *secondary = NULL;
    CK_TRY(ck_json_str(req->json, "primaryKeyVaultUri", true, &primary));
    CK_TRY(ck_json_str(req->json, "secondaryKeyVaultUri", true, &secondary));
    struct ck_spo_dep d;
    ck_err rc = fn(api->files, t.id, geo, primary, secondary, req->request_id, &d);
    ck_api_audit(api, req, operation, geo, rc, NULL);
    CK_TRY(rc);
    resp->status = status;
    resp->json = spo_json(&d);
    return CK_OK;
}

static ck_err register_spo(struct ck_http_req *req, struct ck_http_resp *resp)
{
    return spo_with_keys(req, resp, ck_spo_register, "spodep.register", 201);
}

static ck_err update_spo(struct ck_http_req *req, struct ck_http_resp *resp)
{
    struct ck_api *api = req->ctx;
    struct ck_tenant t;
    CK_TRY(tenant_admin(req, &t));
    const char *geo = ck_http_param(req, "geo"), *type = NULL, *uri = NULL;
    CK_TRY(ck_json_str(req->json, "keyType", true, &type));
    CK_TRY(ck_json_str(req->json, "keyVaultUri", true, &uri));
    bool primary = strcasecmp(type, "Primary") == 0;
    if (!primary && strcasecmp(type, "Secondary") != 0)
        return ck_err_set(CK_EINVAL, "keyType must be Primary or Secondary, not '%s'", type);
    struct ck_spo_dep d;
    ck_err rc = ck_spo_update(api->files, t.id, geo, primary, uri, req->request_id, &d);
    ck_api_audit(api, req, "spodep.update", geo, rc, primary ? "primary" : "secondary");
    CK_TRY(rc);
    return ck_http_ok(resp, spo_json(&d));
}

static ck_err restore_spo(struct ck_http_req *req, struct ck_http_resp *resp)
{
    return spo_with_keys(req, resp, ck_spo_restore, "spodep.restore", 200);
}

void ck_api_register_files(struct ck_router *r, struct ck_api *api)
{
    ck_router_add(r, "POST", "/tenants/{t}/geos", add_geo, api, 0, 0);
    ck_router_add(r, "GET", "/tenants/{t}/geos", list_geos, api, 0, 0);
    ck_router_add(r, "POST", "/tenants/{t}/geos/{geo}/dep", register_spo, api, 0, 0);
    ck_router_add(r, "GET", "/tenants/{t}/geos/{geo}/dep", get_spo, api, 0, 0);
    ck_router_add(r, "PATCH", "/tenants/{t}/geos/{geo}/dep", update_spo, api, 0, 0);
    ck_router_add(r, "POST", "/tenants/{t}/geos/{geo}/dep/restore", restore_spo, api, 0, 0);
    ck_router_add(r, "POST", "/tenants/{t}/sites", new_site, api, 0, 0);
    ck_router_add(r, "GET", "/tenants/{t}/sites", list_sites, api, 0, 0);
    ck_router_add(r, "GET", "/tenants/{t}/sites/{site}/dep-status", site_dep_status, api, 0, 0);
    ck_router_add(r, "GET", "/tenants/{t}/sites/{site}/files", list_files, api, 0, 0);
    ck_router_add(r, "PUT", "/tenants/{t}/sites/{site}/files/{*path}", put_file, api,
                  CK_ROUTE_STREAM, FILES_MAX_BODY);
    ck_router_add(r, "GET", "/tenants/{t}/sites/{site}/files/{*path}", get_file, api, 0, 0);
    ck_router_add(r, "DELETE", "/tenants/{t}/sites/{site}/files/{*path}", delete_file, api, 0, 0);
}
