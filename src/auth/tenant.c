/*
 * tenant.c — tenants (the service's customer organisations) and their
 * admins.
 *
 * A tenant is found by its id or by its name, case-insensitively: the
 * ck_tenant.name column holds the lowercased name (unique), display_name
 * the spelling it was created with. A name may not look like a GUID, so
 * "name or id" never means two tenants. The first admin is added in the
 * same transaction as the tenant: no tenant exists without an admin.
 */
#include "auth/auth.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TENANT_COLUMNS "id, display_name, created"

static bool name_valid(const char *name)
{
    size_t n = strlen(name);
    if (n < 1 || n > 64)
        return false;
    for (const char *p = name; *p; p++)
        if (!isalnum((unsigned char)*p) && *p != '.' && *p != '_' && *p != '-')
            return false;
    return true;
}

static char *lowered(const char *s)
{
    char *c = ck_strdup(s);
    for (char *p = c; *p; p++)
        *p = (char)tolower((unsigned char)*p);
    return c;
}

static ck_err tenant_fill(struct ck_stmt *st, void *elem, void *arg)
{
    (void)arg;
    struct ck_tenant *t = elem;
    memset(t, 0, sizeof *t);
    snprintf(t->id, sizeof t->id, "%s", ck_stmt_text(st, 0));
    snprintf(t->name, sizeof t->name, "%s", ck_stmt_text(st, 1));
    t->created = ck_stmt_int(st, 2);
    return CK_OK;
}

static ck_err principal_exists(struct ck_store *s, const char *object_id)
{
    struct ck_stmt *st;
    bool row = false;
    CK_TRY(
        ck_stmt_prepare(s, &st, "SELECT 1 FROM ck_principal WHERE object_id = ?", "t", object_id));
    ck_err rc = ck_stmt_step(st, &row);
    ck_stmt_finalize(st);
    if (rc == CK_OK && !row)
        rc = ck_err_set(CK_ENOTFOUND, "no principal with object id %s", object_id);
    return rc;
}

ck_err ck_tenant_create(struct ck_store *s, const char *name, const char *admin_object_id,
                        struct ck_tenant *out)
{
    if (!name || !name_valid(name))
        return ck_err_set(CK_EINVAL,
                          "'%s' is not a tenant name: use 1 to 64 letters, digits, '.', '_' or '-'",
                          name ? name : "");
    if (ck_uuid_valid(name))
        return ck_err_set(CK_EINVAL, "a tenant name may not look like a tenant id (a GUID)");
    if (!admin_object_id || !*admin_object_id)
        return ck_err_set(CK_EINVAL, "a tenant needs a first admin");
    struct ck_tenant t = {.created = ck_now()};
    CK_TRY(ck_uuid_v4(t.id));
    snprintf(t.name, sizeof t.name, "%s", name);
    char *key = lowered(name);
    ck_err rc = ck_store_begin(s);
    if (rc != CK_OK)
        goto out;
    rc = principal_exists(s, admin_object_id);
    if (rc == CK_OK) {
        rc = ck_store_run(s, NULL,
                          "INSERT INTO ck_tenant (id, name, display_name, created) "
                          "VALUES (?, ?, ?, ?)",
                          "ttti", t.id, key, t.name, t.created);
        if (rc == CK_ECONFLICT)
            rc = ck_err_set(CK_ECONFLICT, "a tenant named '%s' already exists", name);
    }
    if (rc == CK_OK)
        rc = ck_store_run(s, NULL, "INSERT INTO ck_tenant_admin (tenant, object_id) VALUES (?, ?)",
                          "tt", t.id, admin_object_id);
    if (rc == CK_OK)
        rc = ck_store_commit(s);
    if (rc != CK_OK)
        ck_store_rollback(s);
out:
    free(key);
    if (rc == CK_OK && out)
        *out = t;
    return rc;
}

ck_err ck_tenant_find(struct ck_store *s, const char *ref, struct ck_tenant *out)
{
    if (!ref || !*ref)
        return ck_err_set(CK_EINVAL, "a tenant must be named");
    char *key = lowered(ref);
    struct ck_stmt *st;
    ck_err rc =
        ck_stmt_prepare(s, &st, "SELECT " TENANT_COLUMNS " FROM ck_tenant WHERE name = ? OR id = ?",
                        "tt", key, key);
    free(key);
    CK_TRY(rc);
    bool row = false;
    rc = ck_stmt_step(st, &row);
    if (rc == CK_OK && row)
        rc = tenant_fill(st, out, NULL);
    ck_stmt_finalize(st);
    if (rc == CK_OK && !row)
        rc = ck_err_set(CK_ENOTFOUND, "no tenant '%s'", ref);
    return rc;
}

ck_err ck_tenant_list(struct ck_store *s, struct ck_tenant **out, size_t *n)
{
    struct ck_stmt *st;
    CK_TRY(ck_stmt_prepare(s, &st, "SELECT " TENANT_COLUMNS " FROM ck_tenant ORDER BY name", ""));
    void *v;
    CK_TRY(ck_stmt_collect(st, sizeof **out, tenant_fill, NULL, NULL, &v, n));
    *out = v;
    return CK_OK;
}

static ck_err tenant_exists(struct ck_store *s, const char *tenant_id)
{
    struct ck_stmt *st;
    bool row = false;
    CK_TRY(ck_stmt_prepare(s, &st, "SELECT 1 FROM ck_tenant WHERE id = ?", "t", tenant_id));
    ck_err rc = ck_stmt_step(st, &row);
    ck_stmt_finalize(st);
    if (rc == CK_OK && !row)
        rc = ck_err_set(CK_ENOTFOUND, "no tenant with id %s", tenant_id);
    return rc;
}

/* Adding an admin twice is not an error: the outcome is the one asked for. */
ck_err ck_tenant_add_admin(struct ck_store *s, const char *tenant_id, const char *object_id)
{
    if (!tenant_id || !object_id)
        return ck_err_set(CK_EINVAL, "a tenant id and an object id are needed");
    CK_TRY(ck_store_begin(s));
    ck_err rc = tenant_exists(s, tenant_id);
    if (rc == CK_OK)
        rc = principal_exists(s, object_id);
    if (rc == CK_OK)
        rc = ck_store_run(s, NULL,
                          "INSERT INTO ck_tenant_admin (tenant, object_id) VALUES (?, ?) "
                          "ON CONFLICT (tenant, object_id) DO NOTHING",
                          "tt", tenant_id, object_id);
    if (rc == CK_OK)
        rc = ck_store_commit(s);
    if (rc != CK_OK)
        ck_store_rollback(s);
    return rc;
}

ck_err ck_tenant_is_admin(struct ck_store *s, const char *tenant_id, const char *object_id,
                          bool *admin)
{
    struct ck_stmt *st;
    bool row = false;
    CK_TRY(ck_stmt_prepare(s, &st,
                           "SELECT 1 FROM ck_tenant_admin WHERE tenant = ? AND object_id = ?", "tt",
                           tenant_id, object_id));
    ck_err rc = ck_stmt_step(st, &row);
    ck_stmt_finalize(st);
    if (rc == CK_OK)
        *admin = row;
    return rc;
}

static int by_name(const void *a, const void *b)
{
    const struct ck_principal *x = *(const struct ck_principal *const *)a;
    const struct ck_principal *y = *(const struct ck_principal *const *)b;
    return strcmp(ck_principal_name(x), ck_principal_name(y));
}

ck_err ck_tenant_admins(struct ck_store *s, const char *tenant_id, struct ck_principal ***out,
                        size_t *n)
{
    struct ck_stmt *st;
    CK_TRY(ck_stmt_prepare(s, &st, "SELECT object_id FROM ck_tenant_admin WHERE tenant = ?", "t",
                           tenant_id));
    char **ids = NULL;
    size_t count = 0;
    bool row;
    ck_err rc;
    while ((rc = ck_stmt_step(st, &row)) == CK_OK && row) {
        ids = realloc(ids, (count + 1) * sizeof *ids);
        if (!ids)
            abort();
        ids[count++] = ck_strdup(ck_stmt_text(st, 0));
    }
    ck_stmt_finalize(st);
    struct ck_principal **v = ck_xcalloc(count ? count : 1, sizeof *v);
    for (size_t i = 0; i < count && rc == CK_OK; i++) {
        rc = ck_principal_find(s, ids[i], &v[i]);
        if (rc == CK_ENOTFOUND) {
            v[i] = ck_xcalloc(1, sizeof *v[i]);
            snprintf(v[i]->object_id, sizeof v[i]->object_id, "%s", ids[i]);
            rc = CK_OK;
        }
    }
    for (size_t i = 0; i < count; i++)
        free(ids[i]);
    free(ids);
    if (rc != CK_OK) {
        ck_principal_list_free(v, count);
        return rc;
    }
    ck_err_clear();
    qsort(v, count, sizeof *v, by_name);
    *out = v;
    *n = count;
    return CK_OK;
}
