/*
 * files.c — the module's state (open/close, tables), name validation, geos
 * and sites.
 *
 * A geo is added with its service-managed TIK (wrapped under the tenant's
 * files service root key, which is sealed under the master key) and its
 * policy row in state Unregistered. A site key is 32 random bytes wrapped
 * (AES-KWP) under the geo's current TIK: the policy row's tik_id, which is
 * the target TIK while a registration or roll runs, so new sites never need
 * moving.
 *
 * A site of a geo under purge answers CK_EGONE: from the moment the geo is
 * marked Purging, then as a tombstone (its row kept with an empty key and
 * the purge id, so that the path is not reused and reads say 410, not 404).
 */
#include "files/files_internal.h"
#include "crypto/crypto.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const struct ck_migration files_migrations[] = {
    {1, "CREATE TABLE ck_files_service_root ("
        "  tenant TEXT PRIMARY KEY,"
        "  sealed BLOB NOT NULL,"
        "  created BIGINT NOT NULL);"
        "CREATE TABLE ck_geo ("
        "  tenant TEXT NOT NULL,"
        "  geo TEXT NOT NULL,"
        "  created BIGINT NOT NULL,"
        "  PRIMARY KEY (tenant, geo));"
        "CREATE TABLE ck_tik ("
        "  id TEXT PRIMARY KEY,"
        "  tenant TEXT NOT NULL,"
        "  geo TEXT NOT NULL,"
        "  service_managed BIGINT NOT NULL,"
        "  kid1 TEXT NOT NULL, kid2 TEXT NOT NULL,"
        "  wrapped1 BLOB NOT NULL, wrapped2 BLOB NOT NULL,"
        "  wrapped_avail BLOB,"
        "  created BIGINT NOT NULL);"
        "CREATE TABLE ck_site ("
        "  id TEXT PRIMARY KEY,"
        "  tenant TEXT NOT NULL,"
        "  geo TEXT NOT NULL,"
        "  path TEXT NOT NULL,"
        "  tik_id TEXT NOT NULL,"
        "  wrapped_site_key BLOB NOT NULL,"
        "  created BIGINT NOT NULL,"
        "  UNIQUE (tenant, path));"
        "CREATE INDEX ck_site_by_geo ON ck_site (tenant, geo, tik_id);"
        "CREATE TABLE ck_spo_dep ("
        "  tenant TEXT NOT NULL,"
        "  geo TEXT NOT NULL,"
        "  state TEXT NOT NULL,"
        "  primary_uri TEXT NOT NULL DEFAULT '',"
        "  secondary_uri TEXT NOT NULL DEFAULT '',"
        "  tik_id TEXT NOT NULL,"
        "  old_tik_id TEXT NOT NULL DEFAULT '',"
        "  job_id TEXT NOT NULL DEFAULT '',"
        "  changed BIGINT NOT NULL,"
        "  PRIMARY KEY (tenant, geo));"
        "CREATE TABLE ck_file ("
        "  id TEXT PRIMARY KEY,"
        "  tenant TEXT NOT NULL,"
        "  site_id TEXT NOT NULL,"
        "  path TEXT NOT NULL,"
        "  version BIGINT NOT NULL,"
        "  size BIGINT NOT NULL,"
        "  chunk_size BIGINT NOT NULL,"
        "  chunks BIGINT NOT NULL,"
        "  state TEXT NOT NULL,"
        "  created BIGINT NOT NULL,"
        "  UNIQUE (site_id, path, version));"
        "CREATE TABLE ck_chunk ("
        "  file_id TEXT NOT NULL,"
        "  idx BIGINT NOT NULL,"
        "  wrapped_key BLOB NOT NULL,"
        "  nonce BLOB NOT NULL,"
        "  ct BLOB NOT NULL,"
        "  tag BLOB NOT NULL,"
        "  PRIMARY KEY (file_id, idx));"},
    /* Offboarding and purge: the purge a geo is under (its request), and
     * the purge that emptied a site (a tombstone). */
    {2, "ALTER TABLE ck_spo_dep ADD COLUMN purge_id TEXT NOT NULL DEFAULT '';"
        "ALTER TABLE ck_spo_dep ADD COLUMN purge_reason TEXT NOT NULL DEFAULT '';"
        "ALTER TABLE ck_spo_dep ADD COLUMN purge_contact TEXT NOT NULL DEFAULT '';"
        "ALTER TABLE ck_spo_dep ADD COLUMN purge_requested_at BIGINT NOT NULL DEFAULT 0;"
        "ALTER TABLE ck_site ADD COLUMN purge_id TEXT NOT NULL DEFAULT '';"},
    /* A move reads its next batch as a range of this index, in order: no
     * sort of the geo's remaining sites per batch (bench: files roll). */
    {3, "CREATE INDEX ck_site_by_geo_tik ON ck_site (tenant, geo, tik_id, id);"
        "DROP INDEX ck_site_by_geo;"},
};

static const struct ck_migration avail_migrations[] = {
    {1, "CREATE TABLE ck_files_availability_key ("
        "  tik_id TEXT PRIMARY KEY,"
        "  sealed BLOB NOT NULL,"
        "  created BIGINT NOT NULL);"},
};

ck_err ck_files_open(const struct ck_files_config *cfg, struct ck_files **out)
{
    if (!cfg || !cfg->store || !cfg->availability_store || !cfg->master_key ||
        cfg->master_key->n != 32 || !cfg->availability_master_key ||
        cfg->availability_master_key->n != 32 || !cfg->jobs)
        return ck_err_set(CK_EINVAL, "files: a store, an availability store, two 32-byte "
                                     "master keys and a job queue are required");
    int64_t ttl = cfg->tik_cache_ttl > 0 ? cfg->tik_cache_ttl : 3600;
    int64_t ahead = cfg->tik_refresh_ahead > 0 ? cfg->tik_refresh_ahead : ttl / 4;
    if (cfg->tik_cache_ttl < 0 || cfg->tik_refresh_ahead < 0 || ahead >= ttl)
        return ck_err_set(CK_EINVAL, "files: the TIK refresh-ahead must be shorter than its TTL");
    size_t chunk = cfg->chunk_size ? cfg->chunk_size : CK_FILES_CHUNK_DEFAULT;
    if (chunk < CK_FILES_CHUNK_MIN || chunk > CK_FILES_CHUNK_MAX)
        return ck_err_set(CK_EINVAL, "files: the chunk size must be between %u and %u bytes",
                          CK_FILES_CHUNK_MIN, CK_FILES_CHUNK_MAX);
    CK_TRY(ck_store_migrate(cfg->store, "files", files_migrations,
                            sizeof files_migrations / sizeof files_migrations[0]));
    CK_TRY(ck_store_migrate(cfg->availability_store, "files-availability", avail_migrations, 1));
    struct ck_files *f = ck_xcalloc(1, sizeof *f);
    f->store = cfg->store;
    f->avail = cfg->availability_store;
    f->keyprov = cfg->keyprov;
    f->jobs = cfg->jobs;
    f->audit = cfg->audit;
    f->ttl = ttl;
    f->refresh_ahead = ahead;
    f->chunk_size = chunk;
    pthread_mutex_init(&f->mu, NULL);
    ck_err rc = ck_secret_set(&f->master, cfg->master_key->p, cfg->master_key->n);
    if (rc == CK_OK)
        rc = ck_secret_set(&f->avail_master, cfg->availability_master_key->p,
                           cfg->availability_master_key->n);
    if (rc != CK_OK) {
        ck_files_close(f);
        return rc;
    }
    ck_jobs_register(f->jobs, CK_FILES_REWRAP_JOB, files_rewrap_step, f);
    *out = f;
    return CK_OK;
}

void ck_files_close(struct ck_files *f)
{
    if (!f)
        return;
    files_tik_cache_free(f);
    pthread_mutex_destroy(&f->mu);
    ck_secret_free(&f->master);
    ck_secret_free(&f->avail_master);
    free(f);
}

/* ---------- validation ---------- */

ck_err files_check_tenant(const char *tenant)
{
    size_t n = tenant ? strlen(tenant) : 0;
    if (n == 0 || n > 36)
        return ck_err_set(CK_EINVAL, "a tenant id must have 1 to 36 characters");
    for (size_t i = 0; i < n; i++)
        if (tenant[i] == '/' || iscntrl((unsigned char)tenant[i]))
            return ck_err_set(CK_EINVAL, "a tenant id must not hold '/' or control characters");
    return CK_OK;
}

ck_err files_check_geo(const char *geo)
{
    size_t n = geo ? strlen(geo) : 0;
    bool ok = n >= 2 && n <= 8;
    for (size_t i = 0; ok && i < n; i++)
        ok = geo[i] >= 'A' && geo[i] <= 'Z';
    if (!ok)
        return ck_err_set(CK_EINVAL, "'%s' is not a geo: 2 to 8 uppercase letters (\"EUR\")",
                          geo ? geo : "");
    return CK_OK;
}

static ck_err check_site_path(const char *path)
{
    const char *prefix = "/sites/";
    size_t n = path ? strlen(path) : 0, pl = strlen(prefix);
    bool ok = n > pl && n - pl <= 128 && strncmp(path, prefix, pl) == 0;
    for (size_t i = pl; ok && i < n; i++)
        ok = isalnum((unsigned char)path[i]) || path[i] == '.' || path[i] == '_' || path[i] == '-';
    if (!ok)
        return ck_err_set(CK_EINVAL,
                          "'%.300s' is not a site path: /sites/NAME, NAME of 1 to 128 letters, "
                          "digits, '.', '_' or '-'",
                          path ? path : "");
    return CK_OK;
}

/* ---------- geos ---------- */

ck_err ck_geo_add(struct ck_files *f, const char *tenant, const char *geo)
{
    CK_TRY(files_check_tenant(tenant));
    CK_TRY(files_check_geo(geo));
    struct ck_buf wrapped = {0};
    char tik_id[37];
    bool began = false;
    ck_err rc;
    CK_GUARD(files_service_tik_make(f, tenant, tik_id, &wrapped));
    CK_GUARD(ck_store_begin(f->store));
    began = true;
    int64_t now = ck_now();
    rc = ck_store_run(f->store, NULL, "INSERT INTO ck_geo (tenant, geo, created) VALUES (?,?,?)",
                      "tti", tenant, geo, now);
    if (rc == CK_ECONFLICT)
        rc = ck_err_set(CK_ECONFLICT, "geo %s already exists in this tenant", geo);
    if (rc == CK_OK)
        rc = files_service_tik_insert(f, tenant, geo, tik_id, &wrapped);
    if (rc == CK_OK)
        rc =
            ck_store_run(f->store, NULL,
                         "INSERT INTO ck_spo_dep (tenant, geo, state, tik_id, changed) VALUES "
                         "(?,?,?,?,?)",
                         "tttti", tenant, geo, ck_spo_state_name(CK_SPO_UNREGISTERED), tik_id, now);
    if (rc == CK_OK)
        rc = ck_store_commit(f->store);
out:
    if (rc != CK_OK && began)
        ck_store_rollback(f->store);
    ck_buf_free(&wrapped);
    return rc;
}

static ck_err geo_fill(struct ck_stmt *st, void *elem, void *arg)
{
    (void)arg;
    snprintf(elem, 9, "%s", ck_stmt_text(st, 0));
    return CK_OK;
}

ck_err ck_geo_list(struct ck_files *f, const char *tenant, char (**geos)[9], size_t *n)
{
    struct ck_stmt *st;
    CK_TRY(ck_stmt_prepare(f->store, &st, "SELECT geo FROM ck_geo WHERE tenant = ? ORDER BY geo",
                           "t", tenant ? tenant : ""));
    void *v;
    CK_TRY(ck_stmt_collect(st, sizeof **geos, geo_fill, NULL, NULL, &v, n));
    *geos = v;
    return CK_OK;
}

/* ---------- sites ---------- */

#define SITE_COLUMNS "s.id, s.tenant, s.geo, s.path, s.tik_id, s.created, s.wrapped_site_key"

/* A ck_stmt_fill_fn: the site from SITE_COLUMNS. */
static ck_err site_from_row(struct ck_stmt *st, void *elem, void *arg)
{
    (void)arg;
    struct ck_site *s = elem;
    memset(s, 0, sizeof *s);
    snprintf(s->id, sizeof s->id, "%s", ck_stmt_text(st, 0));
    snprintf(s->tenant, sizeof s->tenant, "%s", ck_stmt_text(st, 1));
    snprintf(s->geo, sizeof s->geo, "%s", ck_stmt_text(st, 2));
    snprintf(s->path, sizeof s->path, "%s", ck_stmt_text(st, 3));
    snprintf(s->tik_id, sizeof s->tik_id, "%s", ck_stmt_text(st, 4));
    s->created = ck_stmt_int(st, 5);
    return CK_OK;
}

ck_err files_site_load(struct ck_files *f, const char *tenant, const char *site,
                       struct files_site_row *out)
{
    memset(out, 0, sizeof *out);
    if (!site || !*site)
        return ck_err_set(CK_EINVAL, "a site path or id is required");
    struct ck_stmt *st;
    CK_TRY(ck_stmt_prepare(f->store, &st,
                           "SELECT " SITE_COLUMNS ", s.purge_id, p.state, p.purge_id FROM ck_site "
                           "s LEFT JOIN ck_spo_dep p ON p.tenant = s.tenant AND p.geo = s.geo "
                           "WHERE s.tenant = ? AND (s.path = ? OR s.id = ?)",
                           "ttt", tenant ? tenant : "", site, site));
    bool row = false;
    ck_err rc = ck_stmt_step(st, &row);
    const char *state = rc == CK_OK && row ? ck_stmt_text(st, 8) : NULL;
    bool purging = state && (strcmp(state, ck_spo_state_name(CK_SPO_PURGING)) == 0 ||
                             strcmp(state, ck_spo_state_name(CK_SPO_PURGED)) == 0);
    if (rc == CK_OK && row && (*ck_stmt_text(st, 7) || purging)) {
        const char *purge = *ck_stmt_text(st, 7) ? ck_stmt_text(st, 7) : ck_stmt_text(st, 9);
        rc = ck_err_set(CK_EGONE, "the site %s was permanently purged (purge %s)",
                        ck_stmt_text(st, 3), purge ? purge : "");
        ck_err_code("Gone", "SitePurged");
    } else if (rc == CK_OK && row) {
        site_from_row(st, &out->site, NULL);
        size_t n;
        const void *p = ck_stmt_blob(st, 6, &n);
        rc = ck_buf_set(&out->wrapped_key, p, n);
    } else if (rc == CK_OK) {
        rc = ck_err_set(CK_ENOTFOUND, "no site '%.300s' in this tenant", site);
        ck_err_code("SiteNotFound", NULL);
    }
    ck_stmt_finalize(st);
    return rc;
}

ck_err files_site_key(struct ck_files *f, struct files_site_row *r, struct ck_secret *key)
{
    struct ck_secret tik = {0};
    ck_err rc = files_tik(f, r->site.tik_id, &tik);
    if (rc == CK_EGONE) {
        /* A rewrap job moved the site and deleted its old TIK since the
         * row was read: read it again, once. */
        char id[37];
        snprintf(id, sizeof id, "%s", r->site.id);
        ck_buf_free(&r->wrapped_key);
        CK_TRY(files_site_load(f, r->site.tenant, id, r));
        rc = files_tik(f, r->site.tik_id, &tik);
    }
    CK_TRY(rc);
    rc = ck_aes_kwp_unwrap(tik.p, tik.n, r->wrapped_key.p, r->wrapped_key.n, key);
    ck_secret_free(&tik);
    if (rc != CK_OK)
        return ck_err_set(CK_EINTERNAL,
                          "the key of site %s does not unwrap: stored data is damaged",
                          r->site.path);
    return CK_OK;
}

ck_err ck_site_new(struct ck_files *f, const char *tenant, const char *geo, const char *path,
                   struct ck_site *out)
{
    CK_TRY(files_check_tenant(tenant));
    CK_TRY(files_check_geo(geo));
    CK_TRY(check_site_path(path));
    struct ck_spo_dep spo;
    CK_TRY(files_spo_load(f, tenant, geo, &spo, NULL));
    CK_TRY(files_purge_guard(&spo));

    struct ck_secret tik = {0}, key = {0};
    struct ck_buf wrapped = {0};
    const char *tik_id = spo.tik_id;
    char id[37];
    ck_err rc;
    CK_GUARD(files_tik(f, tik_id, &tik));
    CK_GUARD(ck_uuid_v4(id));
    CK_GUARD(ck_secret_alloc(&key, FILES_KEY_LEN));
    CK_GUARD(ck_rand_bytes(key.p, key.n));
    CK_GUARD(ck_aes_kwp_wrap(tik.p, tik.n, key.p, key.n, &wrapped));
    /* The guard on the policy row: a registration or roll that changed the
     * target TIK, or a purge requested, since we read it makes this insert a
     * no-op, and we retry (and see why). */
    int64_t changes = 0;
    rc = ck_store_run(f->store, &changes,
                      "INSERT INTO ck_site (id, tenant, geo, path, tik_id, wrapped_site_key, "
                      "created) SELECT ?,?,?,?,?,?,? WHERE EXISTS (SELECT 1 FROM ck_spo_dep "
                      "WHERE tenant = ? AND geo = ? AND tik_id = ? AND purge_id = '')",
                      "tttttbittt", id, tenant, geo, path, tik_id, wrapped.p, wrapped.n, ck_now(),
                      tenant, geo, tik_id);
    if (rc == CK_ECONFLICT) {
        /* A purged site keeps its path: say so rather than "exists". */
        struct files_site_row old;
        char gone[512];
        if (files_site_load(f, tenant, path, &old) == CK_EGONE) {
            snprintf(gone, sizeof gone, "%s", ck_err_msg());
            rc = ck_err_set(CK_ECONFLICT, "%s: its path cannot be used again", gone);
        } else {
            rc = ck_err_set(CK_ECONFLICT, "a site %s already exists in this tenant", path);
        }
        ck_buf_free(&old.wrapped_key);
    }
out:
    ck_secret_free(&tik);
    ck_secret_free(&key);
    ck_buf_free(&wrapped);
    CK_TRY(rc);
    if (changes == 0)
        return ck_site_new(f, tenant, geo, path, out);
    return ck_site_get(f, tenant, path, out);
}

ck_err ck_site_get(struct ck_files *f, const char *tenant, const char *path, struct ck_site *out)
{
    struct files_site_row r;
    ck_err rc = files_site_load(f, tenant, path, &r);
    if (rc == CK_OK && out)
        *out = r.site;
    ck_buf_free(&r.wrapped_key);
    return rc;
}

ck_err ck_site_list(struct ck_files *f, const char *tenant, struct ck_site **out, size_t *n)
{
    struct ck_stmt *st;
    CK_TRY(ck_stmt_prepare(f->store, &st,
                           "SELECT " SITE_COLUMNS " FROM ck_site s WHERE tenant = ? ORDER BY "
                           "path",
                           "t", tenant ? tenant : ""));
    void *v;
    CK_TRY(ck_stmt_collect(st, sizeof **out, site_from_row, NULL, NULL, &v, n));
    *out = v;
    return CK_OK;
}
