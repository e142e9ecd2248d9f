/*
 * principal.c — the principal table, the home tenant, and lookups by the
 * names people use (UPN, application id, object id, application name).
 */
#include "auth/auth.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const struct ck_migration auth_migrations[] = {
    {1, "CREATE TABLE ck_meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);"
        "CREATE TABLE ck_principal ("
        "  object_id TEXT PRIMARY KEY,"
        "  tenant_id TEXT NOT NULL,"
        "  kind INTEGER NOT NULL,"
        "  upn TEXT UNIQUE,"
        "  display_name TEXT,"
        "  app_id TEXT UNIQUE,"
        "  roles INTEGER NOT NULL DEFAULT 0,"
        "  created BIGINT NOT NULL);"
        "CREATE TABLE ck_token ("
        "  id TEXT PRIMARY KEY,"
        "  hash BLOB NOT NULL UNIQUE,"
        "  object_id TEXT NOT NULL REFERENCES ck_principal(object_id) ON DELETE CASCADE,"
        "  created BIGINT NOT NULL,"
        "  expires BIGINT NOT NULL,"
        "  revoked BIGINT NOT NULL DEFAULT 0);"
        "CREATE INDEX ck_token_by_principal ON ck_token(object_id);"},
    /* Tenants (tenant.c): name is the lowercased key for case-insensitive
     * lookups, display_name the spelling the operator chose. */
    {2, "CREATE TABLE ck_tenant ("
        "  id TEXT PRIMARY KEY,"
        "  name TEXT NOT NULL UNIQUE,"
        "  display_name TEXT NOT NULL,"
        "  created BIGINT NOT NULL);"
        "CREATE TABLE ck_tenant_admin ("
        "  tenant TEXT REFERENCES ck_tenant(id) ON DELETE CASCADE,"
        "  object_id TEXT NOT NULL,"
        "  PRIMARY KEY (tenant, object_id));"
        "CREATE INDEX ck_tenant_admin_by_principal ON ck_tenant_admin(object_id);"},
};

ck_err ck_auth_migrate(struct ck_store *s)
{
    return ck_store_migrate(s, "auth", auth_migrations,
                            sizeof auth_migrations / sizeof auth_migrations[0]);
}

ck_err ck_auth_home_tenant(struct ck_store *s, char out[37])
{
    struct ck_stmt *st;
    bool row;
    CK_TRY(ck_stmt_prepare(s, &st, "SELECT value FROM ck_meta WHERE name = ?", "t", "home_tenant"));
    ck_err rc = ck_stmt_step(st, &row);
    if (rc == CK_OK && row)
        snprintf(out, 37, "%s", ck_stmt_text(st, 0));
    ck_stmt_finalize(st);
    if (rc != CK_OK || row)
        return rc;
    char id[37];
    CK_TRY(ck_uuid_v4(id));
    /* Two processes may race to create it; the first one wins. */
    CK_TRY(ck_store_run(s, NULL,
                        "INSERT INTO ck_meta (name, value) VALUES (?, ?) ON CONFLICT (name) DO "
                        "NOTHING",
                        "tt", "home_tenant", id));
    return ck_auth_home_tenant(s, out);
}

static bool upn_valid(const char *upn)
{
    const char *at = strchr(upn, '@');
    size_t n = strlen(upn);
    if (!at || at == upn || !at[1] || strchr(at + 1, '@') || n > 256)
        return false;
    for (const char *p = upn; *p; p++)
        if (isspace((unsigned char)*p) || iscntrl((unsigned char)*p))
            return false;
    return strchr(at + 1, '.') != NULL;
}

static void lower(char *s)
{
    for (; *s; s++)
        *s = (char)tolower((unsigned char)*s);
}

static ck_err insert(struct ck_store *s, struct ck_principal *p)
{
    ck_err rc = ck_store_run(s, NULL,
                             "INSERT INTO ck_principal (object_id, tenant_id, kind, upn, "
                             "display_name, app_id, roles, created) VALUES (?,?,?,?,?,?,?,?)",
                             "ttitttii", p->object_id, p->tenant_id, (int64_t)p->kind, p->upn,
                             p->display_name, p->app_id, (int64_t)p->roles, p->created);
    if (rc == CK_ECONFLICT)
        return ck_err_set(CK_ECONFLICT, "a principal named '%s' already exists",
                          ck_principal_name(p));
    return rc;
}

static ck_err new_principal(struct ck_store *s, const char *tenant_id, unsigned roles,
                            struct ck_principal **out)
{
    struct ck_principal *p = ck_xcalloc(1, sizeof *p);
    ck_err rc = ck_uuid_v4(p->object_id);
    if (rc == CK_OK && tenant_id) {
        if (!ck_uuid_valid(tenant_id))
            rc = ck_err_set(CK_EINVAL, "the tenant id must be a GUID");
        else
            snprintf(p->tenant_id, sizeof p->tenant_id, "%s", tenant_id);
    } else if (rc == CK_OK) {
        rc = ck_auth_home_tenant(s, p->tenant_id);
    }
    if (rc != CK_OK) {
        free(p);
        return rc;
    }
    lower(p->tenant_id);
    p->roles = roles;
    p->created = ck_now();
    *out = p;
    return CK_OK;
}

ck_err ck_principal_add_user(struct ck_store *s, const char *upn, const char *tenant_id,
                             unsigned roles, struct ck_principal **out)
{
    /* The bootstrap operator is the one user without a domain. */
    if (!upn || (!upn_valid(upn) && !(roles & CK_ROLE_OPERATOR && strcmp(upn, "operator") == 0)))
        return ck_err_set(CK_EINVAL, "'%s' is not a user principal name (expected name@domain)",
                          upn ? upn : "");
    struct ck_principal *p;
    CK_TRY(new_principal(s, tenant_id, roles, &p));
    p->kind = CK_PRINCIPAL_USER;
    p->upn = ck_strdup(upn);
    lower(p->upn);
    ck_err rc = insert(s, p);
    if (rc != CK_OK) {
        ck_principal_free(p);
        return rc;
    }
    *out = p;
    return CK_OK;
}

ck_err ck_principal_add_app(struct ck_store *s, const char *name, const char *app_id,
                            const char *tenant_id, unsigned roles, struct ck_principal **out)
{
    if (!name || !*name || strlen(name) > 256)
        return ck_err_set(CK_EINVAL, "an application needs a display name of 1 to 256 characters");
    if (app_id && !ck_uuid_valid(app_id))
        return ck_err_set(CK_EINVAL, "the application id must be a GUID, got '%s'", app_id);
    struct ck_principal *p;
    CK_TRY(new_principal(s, tenant_id, roles, &p));
    p->kind = CK_PRINCIPAL_APP;
    p->display_name = ck_strdup(name);
    if (app_id) {
        p->app_id = ck_strdup(app_id);
    } else {
        p->app_id = ck_xmalloc(37);
        if (ck_uuid_v4(p->app_id) != CK_OK) {
            ck_principal_free(p);
            return CK_EIO;
        }
    }
    lower(p->app_id);
    ck_err rc = insert(s, p);
    if (rc == CK_ECONFLICT)
        rc = ck_err_set(CK_ECONFLICT, "an application with id %s already exists", p->app_id);
    if (rc != CK_OK) {
        ck_principal_free(p);
        return rc;
    }
    *out = p;
    return CK_OK;
}

#define PRINCIPAL_COLUMNS "object_id, tenant_id, kind, upn, display_name, app_id, roles, created"

static struct ck_principal *from_row(struct ck_stmt *st)
{
    struct ck_principal *p = ck_xcalloc(1, sizeof *p);
    snprintf(p->object_id, sizeof p->object_id, "%s", ck_stmt_text(st, 0));
    snprintf(p->tenant_id, sizeof p->tenant_id, "%s", ck_stmt_text(st, 1));
    p->kind = (enum ck_principal_kind)ck_stmt_int(st, 2);
    p->upn = ck_strdup(ck_stmt_text(st, 3));
    p->display_name = ck_strdup(ck_stmt_text(st, 4));
    p->app_id = ck_strdup(ck_stmt_text(st, 5));
    p->roles = (unsigned)ck_stmt_int(st, 6);
    p->created = ck_stmt_int(st, 7);
    return p;
}

/* Steps a lookup that should find at most one principal; finalizes st. */
static ck_err take_one(struct ck_stmt *st, struct ck_principal **out, bool *ambiguous)
{
    bool row = false;
    ck_err rc = ck_stmt_step(st, &row);
    *out = NULL;
    *ambiguous = false;
    if (rc == CK_OK && row) {
        *out = from_row(st);
        rc = ck_stmt_step(st, ambiguous);
    }
    ck_stmt_finalize(st);
    return rc;
}

ck_err ck_principal_find(struct ck_store *s, const char *ref, struct ck_principal **out)
{
    if (!ref || !*ref)
        return ck_err_set(CK_EINVAL, "a principal must be named");
    char *key = ck_strdup(ref);
    lower(key);
    struct ck_principal *p = NULL;
    bool ambiguous = false;
    struct ck_stmt *st;
    ck_err rc = ck_stmt_prepare(s, &st,
                                "SELECT " PRINCIPAL_COLUMNS " FROM ck_principal "
                                "WHERE upn = ? OR app_id = ? OR object_id = ?",
                                "ttt", key, key, key);
    free(key);
    if (rc == CK_OK)
        rc = take_one(st, &p, &ambiguous);
    /* Not an identifier: an application's display name, when unambiguous. */
    if (rc == CK_OK && !p) {
        rc = ck_stmt_prepare(s, &st,
                             "SELECT " PRINCIPAL_COLUMNS " FROM ck_principal "
                             "WHERE kind = 1 AND display_name = ?",
                             "t", ref);
        if (rc == CK_OK)
            rc = take_one(st, &p, &ambiguous);
    }
    if (rc == CK_OK && ambiguous)
        rc = ck_err_set(CK_ECONFLICT,
                        "more than one application is named '%s'; use its application id", ref);
    if (rc == CK_OK && !p)
        rc = ck_err_set(CK_ENOTFOUND, "no principal '%s'", ref);
    if (rc != CK_OK) {
        ck_principal_free(p);
        return rc;
    }
    *out = p;
    return CK_OK;
}

static ck_err principal_fill(struct ck_stmt *st, void *elem, void *arg)
{
    (void)arg;
    *(struct ck_principal **)elem = from_row(st);
    return CK_OK;
}

static void principal_drop(void *elem)
{
    ck_principal_free(*(struct ck_principal **)elem);
}

ck_err ck_principal_list(struct ck_store *s, struct ck_principal ***out, size_t *n)
{
    struct ck_stmt *st;
    CK_TRY(ck_stmt_prepare(
        s, &st, "SELECT " PRINCIPAL_COLUMNS " FROM ck_principal ORDER BY kind, upn, display_name",
        ""));
    void *v;
    CK_TRY(ck_stmt_collect(st, sizeof **out, principal_fill, NULL, principal_drop, &v, n));
    *out = v;
    return CK_OK;
}

const char *ck_principal_name(const struct ck_principal *p)
{
    if (p->upn)
        return p->upn;
    if (p->display_name)
        return p->display_name;
    return p->object_id;
}

void ck_principal_free(struct ck_principal *p)
{
    if (!p)
        return;
    free(p->upn);
    free(p->display_name);
    free(p->app_id);
    free(p);
}

void ck_principal_list_free(struct ck_principal **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        ck_principal_free(v[i]);
    free(v);
}
