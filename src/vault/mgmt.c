/*
 * mgmt.c — the management plane of the vault domain: the geography of
 * locations, key permission names, subscriptions and their owners, vaults
 * and their access policies.
 *
 * Identifiers people type in several spellings are stored normalised so
 * that SQL equality is enough on both backends: vault names and
 * subscription ids lowercased, locations lowercased without spaces
 * ("West US" → "westus"), GUIDs lowercased. Resource group names keep the
 * caller's spelling and are compared case-insensitively, as ARM does.
 *
 * Every change that touches more than one row runs in one transaction; a
 * vault and its ordered access policies are read with one statement, so a
 * reader never sees a vault with half of another writer's policies.
 */
#include "vault/internal.h"

#include <ctype.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const struct ck_migration mgmt_migrations[] = {
    {1, "CREATE TABLE ck_subscription ("
        "  id TEXT PRIMARY KEY,"
        "  created BIGINT NOT NULL);"
        "CREATE TABLE ck_subscription_owner ("
        "  subscription TEXT NOT NULL REFERENCES ck_subscription (id) ON DELETE CASCADE,"
        "  object_id TEXT NOT NULL,"
        "  PRIMARY KEY (subscription, object_id));"
        "CREATE TABLE ck_vault ("
        "  name TEXT PRIMARY KEY,"
        "  subscription TEXT NOT NULL REFERENCES ck_subscription (id),"
        "  resource_group TEXT NOT NULL,"
        "  location TEXT NOT NULL,"
        "  tenant_id TEXT NOT NULL,"
        "  sku TEXT NOT NULL,"
        "  retention_days INTEGER NOT NULL,"
        "  purge_protection INTEGER NOT NULL,"
        "  tags TEXT NOT NULL,"
        "  created BIGINT NOT NULL,"
        "  updated BIGINT NOT NULL);"
        "CREATE INDEX ck_vault_by_subscription ON ck_vault (subscription);"
        "CREATE TABLE ck_vault_policy ("
        "  vault TEXT NOT NULL REFERENCES ck_vault (name) ON DELETE CASCADE,"
        "  idx INTEGER NOT NULL,"
        "  tenant_id TEXT NOT NULL,"
        "  object_id TEXT NOT NULL,"
        "  application_id TEXT NOT NULL,"
        "  keys BIGINT NOT NULL,"
        "  PRIMARY KEY (vault, idx));"},
};

ck_err ck_vault_mgmt_migrate(struct ck_store *s)
{
    return ck_store_migrate(s, "vault", mgmt_migrations,
                            sizeof mgmt_migrations / sizeof mgmt_migrations[0]);
}

static void lower(char *s)
{
    for (; *s; s++)
        *s = (char)tolower((unsigned char)*s);
}

/* ---------- geography ---------- */

/* Azure region names and the geography each belongs to. A geography is the
 * boundary key material may not leave: a key backed up in one restores only
 * into a vault of the same geography. "local" is for development
 * installations that pretend to be nowhere in particular. Names are the
 * normalised form (lowercase, no spaces). */
static const struct {
    const char *location;
    const char *geography;
} geo_table[] = {
    {"eastus", "us"},
    {"eastus2", "us"},
    {"westus", "us"},
    {"westus2", "us"},
    {"westus3", "us"},
    {"centralus", "us"},
    {"northcentralus", "us"},
    {"southcentralus", "us"},
    {"westcentralus", "us"},

    {"northeurope", "europe"},
    {"westeurope", "europe"},
    {"francecentral", "europe"},
    {"germanywestcentral", "europe"},
    {"swedencentral", "europe"},
    {"switzerlandnorth", "europe"},
    {"norwayeast", "europe"},
    {"polandcentral", "europe"},
    {"italynorth", "europe"},
    {"spaincentral", "europe"},

    {"uksouth", "uk"},
    {"ukwest", "uk"},

    {"eastasia", "asia"},
    {"southeastasia", "asia"},

    {"japaneast", "japan"},
    {"japanwest", "japan"},

    {"australiaeast", "australia"},
    {"australiasoutheast", "australia"},

    {"canadacentral", "canada"},
    {"canadaeast", "canada"},

    {"centralindia", "india"},
    {"southindia", "india"},
    {"westindia", "india"},

    {"brazilsouth", "brazil"},

    {"local", "local"},
};

/* "West US" → "westus". false when the result does not fit or is empty. */
static bool location_norm(const char *in, char out[64])
{
    size_t n = 0;
    for (const char *p = in; p && *p; p++) {
        if (*p == ' ')
            continue;
        if (n == 63)
            return false;
        out[n++] = (char)tolower((unsigned char)*p);
    }
    out[n] = '\0';
    return n > 0;
}

const char *ck_geography_of(const char *location)
{
    char norm[64];
    if (!location_norm(location, norm))
        return NULL;
    for (size_t i = 0; i < sizeof geo_table / sizeof geo_table[0]; i++)
        if (strcmp(geo_table[i].location, norm) == 0)
            return geo_table[i].geography;
    return NULL;
}

/* ---------- key permissions ---------- */

/* Indexed by bit position of enum ck_key_perm; ARM spelling. */
static const char *const perm_names[] = {
    "encrypt",
    "decrypt",
    "wrapKey",
    "unwrapKey",
    "sign",
    "verify",
    "get",
    "list",
    "create",
    "update",
    "import",
    "delete",
    "backup",
    "restore",
    "recover",
    "purge",
    "release",
    "rotate",
    "getrotationpolicy",
    "setrotationpolicy",
};
_Static_assert(sizeof perm_names / sizeof perm_names[0] == 20, "one name per permission bit");
_Static_assert(CK_PERM_ALL_BITS == (1u << 20) - 1, "permission bits and names agree");

const char *ck_perm_name(enum ck_key_perm p)
{
    if ((unsigned)p == CK_PERM_ALL_BITS)
        return "all";
    for (unsigned i = 0; i < 20; i++)
        if ((unsigned)p == 1u << i)
            return perm_names[i];
    return NULL;
}

ck_err ck_perm_parse(const char *name, unsigned *bits)
{
    if (name && strcasecmp(name, "all") == 0) {
        *bits = CK_PERM_ALL_BITS;
        return CK_OK;
    }
    for (unsigned i = 0; name && i < 20; i++) {
        if (strcasecmp(name, perm_names[i]) == 0) {
            *bits = 1u << i;
            return CK_OK;
        }
    }
    return ck_err_set(CK_EINVAL,
                      "'%.64s' is not a key permission (expected all, encrypt, decrypt, wrapKey, "
                      "unwrapKey, sign, verify, get, list, create, update, import, delete, "
                      "backup, restore, recover, purge, release, rotate, getrotationpolicy or "
                      "setrotationpolicy)",
                      name ? name : "");
}

/* ---------- small validators ---------- */

/* Object ids are GUIDs in practice; the wire allows any short string. */
static bool object_id_valid(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > 64)
        return false;
    for (; *s; s++)
        if (!isgraph((unsigned char)*s))
            return false;
    return true;
}

/* Copies a GUID lowercased; false when not a GUID. */
static bool guid_copy(const char *in, char out[37])
{
    if (!in || !ck_uuid_valid(in))
        return false;
    snprintf(out, 37, "%s", in);
    lower(out);
    return true;
}

/* Object ids that are GUIDs are lowercased so equality in SQL holds. */
static void object_id_copy(const char *in, char *out, size_t cap)
{
    snprintf(out, cap, "%s", in);
    if (ck_uuid_valid(out))
        lower(out);
}

static ck_err subscription_norm(const char *id, char out[65])
{
    size_t n = id ? strlen(id) : 0;
    bool ok = n >= 1 && n <= 64;
    for (size_t i = 0; ok && i < n; i++)
        ok = isalnum((unsigned char)id[i]) || id[i] == '-' || id[i] == '_' || id[i] == '.';
    if (!ok)
        return ck_err_set(CK_EINVAL,
                          "the subscription id '%.80s' is not valid: use 1 to 64 letters, digits, "
                          "'-', '_' or '.'",
                          id ? id : "");
    snprintf(out, 65, "%s", id);
    lower(out);
    return CK_OK;
}

/* ARM: 1–90 characters of letters, digits, '_', '-', '.', '(' and ')', not
 * ending in '.'. ckey keeps to ASCII so that lower() agrees on every
 * backend. */
static ck_err resource_group_check(const char *rg)
{
    size_t n = rg ? strlen(rg) : 0;
    bool ok = n >= 1 && n <= 90 && rg[n - 1] != '.';
    for (size_t i = 0; ok && i < n; i++)
        ok = isalnum((unsigned char)rg[i]) || strchr("_-.()", rg[i]);
    if (!ok)
        return ck_err_set(CK_EINVAL,
                          "the resource group name '%.100s' is not valid: use 1 to 90 letters, "
                          "digits, '_', '-', '.', '(' or ')', not ending in '.'",
                          rg ? rg : "");
    return CK_OK;
}

ck_err ck_vault_name_norm(const char *name, char out[25])
{
    size_t n = name ? strlen(name) : 0;
    bool ok = n >= 3 && n <= 24;
    for (size_t i = 0; ok && i < n; i++)
        ok = isalnum((unsigned char)name[i]) || name[i] == '-';
    if (!ok)
        return ck_err_set(CK_EINVAL,
                          "the vault name '%.64s' is not valid: use 3 to 24 letters, digits and "
                          "hyphens",
                          name ? name : "");
    memcpy(out, name, n + 1);
    lower(out);
    return CK_OK;
}

/* ARM allows 50 tags, names up to 512 and values up to 256 characters. */
static ck_err tags_check(const char *tags_json)
{
    json_error_t jerr;
    json_t *t = json_loads(tags_json, JSON_REJECT_DUPLICATES, &jerr);
    ck_err rc = CK_OK;
    if (!t || !json_is_object(t)) {
        rc = ck_err_set(CK_EINVAL, "tags must be a JSON object of strings");
    } else if (json_object_size(t) > 50) {
        rc = ck_err_set(CK_EINVAL, "a vault has at most 50 tags, got %zu", json_object_size(t));
    } else {
        const char *k;
        json_t *val;
        json_object_foreach(t, k, val)
        {
            if (!json_is_string(val)) {
                rc = ck_err_set(CK_EINVAL, "the tag '%.64s' must have a string value", k);
                break;
            }
            if (strlen(k) == 0 || strlen(k) > 512 || json_string_length(val) > 256) {
                rc = ck_err_set(CK_EINVAL,
                                "the tag '%.64s' is too long or empty (names 1-512, "
                                "values up to 256 characters)",
                                k);
                break;
            }
        }
    }
    json_decref(t);
    return rc;
}

/* Validates one policy and writes its normalised form to out. i is the
 * entry's index, for the message. */
static ck_err policy_norm(const struct ck_access_policy *in, size_t i, struct ck_access_policy *out)
{
    memset(out, 0, sizeof *out);
    if (!guid_copy(in->tenant_id, out->tenant_id))
        return ck_err_set(CK_EINVAL, "access policy %zu: the tenantId '%.40s' is not a GUID", i,
                          in->tenant_id);
    if (!object_id_valid(in->object_id))
        return ck_err_set(
            CK_EINVAL, "access policy %zu: the objectId must be 1 to 64 printable characters", i);
    object_id_copy(in->object_id, out->object_id, sizeof out->object_id);
    if (in->application_id[0] && !guid_copy(in->application_id, out->application_id))
        return ck_err_set(CK_EINVAL, "access policy %zu: the applicationId '%.40s' is not a GUID",
                          i, in->application_id);
    if (in->keys & ~(unsigned)CK_PERM_ALL_BITS)
        return ck_err_set(CK_EINVAL, "access policy %zu: unknown key permission bits", i);
    out->keys = in->keys;
    return CK_OK;
}

/* ---------- subscriptions ---------- */

static ck_err owner_norm(const char *object_id, char out[65])
{
    if (!object_id_valid(object_id))
        return ck_err_set(CK_EINVAL, "an owner must be a principal object id (1 to 64 printable "
                                     "characters)");
    object_id_copy(object_id, out, 65);
    return CK_OK;
}

static ck_err subscription_exists(struct ck_store *s, const char *id, bool *exists)
{
    struct ck_stmt *st;
    CK_TRY(ck_stmt_prepare(s, &st, "SELECT 1 FROM ck_subscription WHERE id = ?", "t", id));
    ck_err rc = ck_stmt_step(st, exists);
    ck_stmt_finalize(st);
    return rc;
}

static ck_err subscription_missing(const char *id)
{
    ck_err_set(CK_ENOTFOUND, "The subscription '%s' could not be found.", id);
    ck_err_code("SubscriptionNotFound", NULL);
    return CK_ENOTFOUND;
}

ck_err ck_subscription_create_many(struct ck_vaults *v, const char *id,
                                   const char *const *owner_object_ids, size_t n)
{
    char sub[65];
    CK_TRY(subscription_norm(id, sub));
    char(*owners)[65] = ck_xcalloc(n ? n : 1, sizeof *owners);
    ck_err rc = CK_OK;
    for (size_t i = 0; i < n && rc == CK_OK; i++)
        rc = owner_norm(owner_object_ids[i], owners[i]);
    if (rc != CK_OK) {
        free(owners);
        return rc;
    }
    CK_GUARD(ck_store_begin(v->store));
    rc = ck_store_run(v->store, NULL, "INSERT INTO ck_subscription (id, created) VALUES (?, ?)",
                      "ti", sub, ck_now());
    if (rc == CK_ECONFLICT)
        rc = ck_err_set(CK_ECONFLICT, "the subscription '%s' already exists", sub);
    for (size_t i = 0; i < n && rc == CK_OK; i++)
        rc = ck_store_run(v->store, NULL,
                          "INSERT INTO ck_subscription_owner (subscription, object_id) "
                          "VALUES (?, ?) ON CONFLICT (subscription, object_id) DO NOTHING",
                          "tt", sub, owners[i]);
    if (rc == CK_OK)
        rc = ck_store_commit(v->store);
    else
        ck_store_rollback(v->store);
out:
    free(owners);
    return rc;
}

ck_err ck_subscription_create(struct ck_vaults *v, const char *id, const char *owner_object_id)
{
    return ck_subscription_create_many(v, id, &owner_object_id, owner_object_id ? 1 : 0);
}

ck_err ck_subscription_add_owner(struct ck_vaults *v, const char *id, const char *owner_object_id)
{
    char sub[65], owner[65];
    CK_TRY(subscription_norm(id, sub));
    CK_TRY(owner_norm(owner_object_id, owner));
    bool exists = false;
    CK_TRY(subscription_exists(v->store, sub, &exists));
    if (!exists)
        return subscription_missing(sub);
    /* The owner row references the subscription, so a concurrent delete
     * of the subscription (there is none yet) would fail the insert. */
    return ck_store_run(v->store, NULL,
                        "INSERT INTO ck_subscription_owner (subscription, object_id) VALUES (?, ?) "
                        "ON CONFLICT (subscription, object_id) DO NOTHING",
                        "tt", sub, owner);
}

ck_err ck_subscription_is_owner(struct ck_vaults *v, const char *id, const char *object_id,
                                bool *owner)
{
    char sub[65], oid[65];
    ck_err rc = subscription_norm(id, sub);
    if (rc != CK_OK)
        return subscription_missing(id ? id : "");
    *owner = false;
    if (!object_id_valid(object_id))
        object_id = "";
    object_id_copy(object_id, oid, sizeof oid);
    /* One statement: whether the subscription exists and whether oid owns it. */
    struct ck_stmt *st;
    CK_TRY(ck_stmt_prepare(v->store, &st,
                           "SELECT (SELECT COUNT(*) FROM ck_subscription_owner o "
                           "        WHERE o.subscription = s.id AND o.object_id = ?) "
                           "FROM ck_subscription s WHERE s.id = ?",
                           "tt", oid, sub));
    bool row = false;
    rc = ck_stmt_step(st, &row);
    if (rc == CK_OK && row)
        *owner = ck_stmt_int(st, 0) > 0;
    ck_stmt_finalize(st);
    if (rc == CK_OK && !row)
        return subscription_missing(sub);
    return rc;
}

ck_err ck_subscription_get(struct ck_vaults *v, const char *id, struct ck_subscription **out)
{
    char sub[65];
    if (subscription_norm(id, sub) != CK_OK)
        return subscription_missing(id ? id : "");
    struct ck_stmt *st;
    CK_TRY(ck_stmt_prepare(v->store, &st,
                           "SELECT s.created, o.object_id FROM ck_subscription s "
                           "LEFT JOIN ck_subscription_owner o ON o.subscription = s.id "
                           "WHERE s.id = ? ORDER BY o.object_id",
                           "t", sub));
    struct ck_subscription *s = NULL;
    bool row;
    ck_err rc;
    while ((rc = ck_stmt_step(st, &row)) == CK_OK && row) {
        if (!s) {
            s = ck_xcalloc(1, sizeof *s);
            snprintf(s->id, sizeof s->id, "%s", sub);
            s->created = ck_stmt_int(st, 0);
        }
        if (ck_stmt_isnull(st, 1))
            continue;
        s->owners = realloc(s->owners, (s->nowners + 1) * sizeof *s->owners);
        if (!s->owners)
            abort();
        s->owners[s->nowners++] = ck_strdup(ck_stmt_text(st, 1));
    }
    ck_stmt_finalize(st);
    if (rc == CK_OK && !s)
        rc = subscription_missing(sub);
    if (rc != CK_OK) {
        ck_subscription_free(s);
        return rc;
    }
    *out = s;
    return CK_OK;
}

void ck_subscription_free(struct ck_subscription *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->nowners; i++)
        free(s->owners[i]);
    free(s->owners);
    free(s);
}

/* ---------- vaults: reading ---------- */

#define VAULT_SELECT                                                                               \
    "SELECT v.name, v.subscription, v.resource_group, v.location, v.tenant_id, v.sku, "            \
    "v.retention_days, v.purge_protection, v.tags, v.created, v.updated, "                         \
    "p.idx, p.tenant_id, p.object_id, p.application_id, p.keys "                                   \
    "FROM ck_vault v LEFT JOIN ck_vault_policy p ON p.vault = v.name "

static struct ck_vault *vault_from_row(struct ck_stmt *st)
{
    struct ck_vault *x = ck_xcalloc(1, sizeof *x);
    snprintf(x->name, sizeof x->name, "%s", ck_stmt_text(st, 0));
    snprintf(x->subscription, sizeof x->subscription, "%s", ck_stmt_text(st, 1));
    snprintf(x->resource_group, sizeof x->resource_group, "%s", ck_stmt_text(st, 2));
    snprintf(x->location, sizeof x->location, "%s", ck_stmt_text(st, 3));
    snprintf(x->tenant_id, sizeof x->tenant_id, "%s", ck_stmt_text(st, 4));
    snprintf(x->sku, sizeof x->sku, "%s", ck_stmt_text(st, 5));
    x->retention_days = (int)ck_stmt_int(st, 6);
    x->purge_protection = ck_stmt_int(st, 7) != 0;
    x->tags_json = ck_strdup(ck_stmt_text(st, 8));
    x->created = ck_stmt_int(st, 9);
    x->updated = ck_stmt_int(st, 10);
    return x;
}

static void policy_from_row(struct ck_stmt *st, struct ck_vault *x)
{
    if (ck_stmt_isnull(st, 11))
        return; /* a vault without policies: the LEFT JOIN's empty side */
    x->policies = realloc(x->policies, (x->npolicies + 1) * sizeof *x->policies);
    if (!x->policies)
        abort();
    struct ck_access_policy *p = &x->policies[x->npolicies++];
    memset(p, 0, sizeof *p);
    snprintf(p->tenant_id, sizeof p->tenant_id, "%s", ck_stmt_text(st, 12));
    snprintf(p->object_id, sizeof p->object_id, "%s", ck_stmt_text(st, 13));
    snprintf(p->application_id, sizeof p->application_id, "%s", ck_stmt_text(st, 14));
    p->keys = (unsigned)ck_stmt_int(st, 15);
}

/* Reads rows of VAULT_SELECT ordered by vault name then idx into vaults;
 * finalizes st. */
static ck_err read_vaults(struct ck_stmt *st, struct ck_vault ***out, size_t *n)
{
    struct ck_vault **v = NULL;
    size_t count = 0;
    bool row;
    ck_err rc;
    while ((rc = ck_stmt_step(st, &row)) == CK_OK && row) {
        if (count == 0 || strcmp(v[count - 1]->name, ck_stmt_text(st, 0)) != 0) {
            v = realloc(v, (count + 1) * sizeof *v);
            if (!v)
                abort();
            v[count++] = vault_from_row(st);
        }
        policy_from_row(st, v[count - 1]);
    }
    ck_stmt_finalize(st);
    if (rc != CK_OK) {
        ck_vault_list_free(v, count);
        return rc;
    }
    *out = v;
    *n = count;
    return CK_OK;
}

static ck_err vault_missing(const char *name)
{
    return ck_err_set(CK_ENOTFOUND, "vault '%.64s' not found", name);
}

ck_err ck_vault_get(struct ck_vaults *v, const char *name, struct ck_vault **out)
{
    char key[25];
    /* A name that cannot be a vault names no vault. */
    if (ck_vault_name_norm(name, key) != CK_OK)
        return vault_missing(name ? name : "");
    struct ck_stmt *st;
    CK_TRY(
        ck_stmt_prepare(v->store, &st, VAULT_SELECT "WHERE v.name = ? ORDER BY p.idx", "t", key));
    struct ck_vault **list;
    size_t n;
    CK_TRY(read_vaults(st, &list, &n));
    if (n == 0) {
        free(list);
        return vault_missing(key);
    }
    *out = list[0];
    free(list);
    return CK_OK;
}

ck_err ck_vault_list(struct ck_vaults *v, const char *subscription, const char *resource_group,
                     struct ck_vault ***out, size_t *n)
{
    char sub[65];
    CK_TRY(subscription_norm(subscription, sub));
    struct ck_stmt *st;
    if (resource_group)
        CK_TRY(ck_stmt_prepare(v->store, &st,
                               VAULT_SELECT "WHERE v.subscription = ? AND "
                                            "lower(v.resource_group) = lower(?) "
                                            "ORDER BY v.name, p.idx",
                               "tt", sub, resource_group));
    else
        CK_TRY(ck_stmt_prepare(v->store, &st,
                               VAULT_SELECT "WHERE v.subscription = ? ORDER BY v.name, p.idx", "t",
                               sub));
    return read_vaults(st, out, n);
}

/* ---------- vaults: writing ---------- */

/* Replaces the vault's policies with p[0..n) in order. Inside a
 * transaction. */
static ck_err write_policies(struct ck_store *s, const char *vault,
                             const struct ck_access_policy *p, size_t n)
{
    CK_TRY(ck_store_run(s, NULL, "DELETE FROM ck_vault_policy WHERE vault = ?", "t", vault));
    for (size_t i = 0; i < n; i++)
        CK_TRY(ck_store_run(s, NULL,
                            "INSERT INTO ck_vault_policy (vault, idx, tenant_id, object_id, "
                            "application_id, keys) VALUES (?, ?, ?, ?, ?, ?)",
                            "tittti", vault, (int64_t)i, p[i].tenant_id, p[i].object_id,
                            p[i].application_id, (int64_t)p[i].keys));
    return CK_OK;
}

static ck_err too_many_policies(size_t n)
{
    return ck_err_set(CK_EINVAL, "a vault holds at most %d access policies; this would leave %zu",
                      CK_VAULT_MAX_POLICIES, n);
}

/* Validates in into the normalised *x (x->policies is a fresh array the
 * caller frees; x->tags_json points into in). */
static ck_err vault_norm(const struct ck_vault *in, struct ck_vault *x)
{
    memset(x, 0, sizeof *x);
    CK_TRY(ck_vault_name_norm(in->name, x->name));
    CK_TRY(subscription_norm(in->subscription, x->subscription));
    CK_TRY(resource_group_check(in->resource_group));
    snprintf(x->resource_group, sizeof x->resource_group, "%s", in->resource_group);
    if (!location_norm(in->location, x->location) || !ck_geography_of(x->location))
        return ck_err_set(CK_EINVAL, "the location '%.64s' is not a known Azure region",
                          in->location);
    if (!guid_copy(in->tenant_id, x->tenant_id))
        return ck_err_set(CK_EINVAL, "the tenantId '%.40s' is not a GUID", in->tenant_id);
    if (strcasecmp(in->sku, "standard") != 0 && strcasecmp(in->sku, "premium") != 0)
        return ck_err_set(CK_EINVAL, "the sku '%.16s' is not valid: use standard or premium",
                          in->sku);
    snprintf(x->sku, sizeof x->sku, "%s", in->sku);
    lower(x->sku);
    if (in->retention_days < 7 || in->retention_days > 90)
        return ck_err_set(CK_EINVAL, "softDeleteRetentionInDays must be from 7 to 90, got %d",
                          in->retention_days);
    x->retention_days = in->retention_days;
    x->purge_protection = in->purge_protection;
    x->tags_json = in->tags_json ? in->tags_json : "{}";
    CK_TRY(tags_check(x->tags_json));
    if (in->npolicies > CK_VAULT_MAX_POLICIES)
        return too_many_policies(in->npolicies);
    x->policies = ck_xcalloc(in->npolicies ? in->npolicies : 1, sizeof *x->policies);
    x->npolicies = in->npolicies;
    for (size_t i = 0; i < in->npolicies; i++)
        CK_TRY(policy_norm(&in->policies[i], i, &x->policies[i]));
    return CK_OK;
}

/* The rules an update must keep, given the vault as it is. */
static ck_err check_update(const struct ck_vault *old, const struct ck_vault *x)
{
    if (strcmp(old->subscription, x->subscription) != 0 ||
        strcasecmp(old->resource_group, x->resource_group) != 0)
        return ck_err_set(CK_ECONFLICT,
                          "vault name '%s' already in use: vault names are unique across the "
                          "installation",
                          x->name);
    if (strcmp(old->location, x->location) != 0)
        return ck_err_set(CK_EINVAL, "vault %s is in %s; its location cannot change to %s", x->name,
                          old->location, x->location);
    if (old->purge_protection && !x->purge_protection)
        return ck_err_set(
            CK_EINVAL, "purge protection is enabled on vault %s and cannot be turned off", x->name);
    if (old->purge_protection && old->retention_days != x->retention_days)
        return ck_err_set(CK_EINVAL,
                          "vault %s has purge protection: its softDeleteRetentionInDays (%d) "
                          "cannot change",
                          x->name, old->retention_days);
    return CK_OK;
}

ck_err ck_vault_put(struct ck_vaults *v, const struct ck_vault *in, bool *created)
{
    struct ck_vault x;
    ck_err rc = vault_norm(in, &x);
    struct ck_vault *old = NULL;
    bool began = false;
    if (rc != CK_OK)
        goto out;
    CK_GUARD(ck_store_begin(v->store));
    began = true;
    bool sub_exists = false;
    CK_GUARD(subscription_exists(v->store, x.subscription, &sub_exists));
    if (!sub_exists) {
        rc = subscription_missing(x.subscription);
        goto out;
    }
    rc = ck_vault_get(v, x.name, &old);
    if (rc == CK_ENOTFOUND)
        rc = CK_OK;
    if (rc != CK_OK)
        goto out;
    int64_t now = ck_now();
    if (old) {
        CK_GUARD(check_update(old, &x));
        CK_GUARD(ck_store_run(v->store, NULL,
                              "UPDATE ck_vault SET resource_group = ?, tenant_id = ?, sku = ?, "
                              "retention_days = ?, purge_protection = ?, tags = ?, updated = ? "
                              "WHERE name = ?",
                              "tttiitit", x.resource_group, x.tenant_id, x.sku,
                              (int64_t)x.retention_days, (int64_t)x.purge_protection, x.tags_json,
                              now, x.name));
    } else {
        CK_GUARD(ck_store_run(v->store, NULL,
                              "INSERT INTO ck_vault (name, subscription, resource_group, location, "
                              "tenant_id, sku, retention_days, purge_protection, tags, created, "
                              "updated) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                              "ttttttiitii", x.name, x.subscription, x.resource_group, x.location,
                              x.tenant_id, x.sku, (int64_t)x.retention_days,
                              (int64_t)x.purge_protection, x.tags_json, now, now));
    }
    CK_GUARD(write_policies(v->store, x.name, x.policies, x.npolicies));
    rc = ck_store_commit(v->store);
    began = false;
    if (rc == CK_OK && created)
        *created = old == NULL;
out:
    if (began)
        ck_store_rollback(v->store);
    ck_vault_free(old);
    free(x.policies);
    return rc;
}

ck_err ck_vault_delete(struct ck_vaults *v, const char *name)
{
    char key[25];
    if (ck_vault_name_norm(name, key) != CK_OK)
        return vault_missing(name ? name : "");
    ck_err rc;
    CK_TRY(ck_store_begin(v->store));
    int64_t changes = 0;
    bool any = false;
    CK_GUARD(ck_vault_has_keys(v, key, &any));
    if (any) {
        rc = ck_err_set(CK_ECONFLICT,
                        "vault %s still holds keys (live or soft-deleted); delete and purge them "
                        "first",
                        key);
        goto out;
    }
    CK_GUARD(ck_store_run(v->store, NULL, "DELETE FROM ck_vault_policy WHERE vault = ?", "t", key));
    CK_GUARD(ck_store_run(v->store, &changes, "DELETE FROM ck_vault WHERE name = ?", "t", key));
    if (changes == 0) {
        rc = vault_missing(key);
        goto out;
    }
    return ck_store_commit(v->store);
out:
    ck_store_rollback(v->store);
    return rc;
}

/* ---------- access policies ---------- */

static bool same_identity(const struct ck_access_policy *a, const struct ck_access_policy *b)
{
    return strcasecmp(a->object_id, b->object_id) == 0 &&
           strcasecmp(a->application_id, b->application_id) == 0;
}

/* Applies one edit to the vault's list in place (x->policies has room for
 * CK_VAULT_MAX_POLICIES + 1 entries, so an add may overshoot by one before
 * the count is checked). */
static void apply_edit(struct ck_vault *x, enum ck_policy_op op, const struct ck_access_policy *p)
{
    size_t i = 0;
    while (i < x->npolicies && !same_identity(&x->policies[i], p))
        i++;
    bool found = i < x->npolicies;
    switch (op) {
    case CK_POLICY_ADD:
    case CK_POLICY_REPLACE:
        if (!found) {
            x->policies[x->npolicies++] = *p;
        } else if (op == CK_POLICY_ADD) {
            x->policies[i].keys |= p->keys;
        } else {
            x->policies[i].keys = p->keys;
        }
        break;
    case CK_POLICY_REMOVE:
        if (!found)
            break;
        /* Without permissions the whole entry goes; with some, only those,
         * and an entry left with none goes too. */
        x->policies[i].keys &= p->keys ? ~p->keys : 0;
        if (x->policies[i].keys == 0) {
            memmove(&x->policies[i], &x->policies[i + 1],
                    (x->npolicies - i - 1) * sizeof x->policies[0]);
            x->npolicies--;
        }
        break;
    }
}

ck_err ck_vault_policy_edit(struct ck_vaults *v, const char *name, enum ck_policy_op op,
                            const struct ck_access_policy *p, size_t n, struct ck_vault **out)
{
    if (op != CK_POLICY_ADD && op != CK_POLICY_REPLACE && op != CK_POLICY_REMOVE)
        return ck_err_set(CK_EINVAL, "unknown access policy operation %d", (int)op);
    if (n > CK_VAULT_MAX_POLICIES)
        return too_many_policies(n);
    struct ck_access_policy *given = ck_xcalloc(n ? n : 1, sizeof *given);
    struct ck_vault *x = NULL;
    bool began = false;
    ck_err rc = CK_OK;
    for (size_t i = 0; i < n; i++)
        CK_GUARD(policy_norm(&p[i], i, &given[i]));
    CK_GUARD(ck_store_begin(v->store));
    began = true;
    CK_GUARD(ck_vault_get(v, name, &x));
    /* Room for the worst case, so apply_edit never reallocates. */
    x->policies = realloc(x->policies, (CK_VAULT_MAX_POLICIES + 1) * sizeof *x->policies);
    if (!x->policies)
        abort();
    for (size_t i = 0; i < n; i++) {
        apply_edit(x, op, &given[i]);
        if (x->npolicies > CK_VAULT_MAX_POLICIES) {
            rc = too_many_policies(x->npolicies);
            goto out;
        }
    }
    CK_GUARD(write_policies(v->store, x->name, x->policies, x->npolicies));
    x->updated = ck_now();
    CK_GUARD(ck_store_run(v->store, NULL, "UPDATE ck_vault SET updated = ? WHERE name = ?", "it",
                          x->updated, x->name));
    rc = ck_store_commit(v->store);
    began = false;
    if (rc == CK_OK && out) {
        *out = x;
        x = NULL;
    }
out:
    if (began)
        ck_store_rollback(v->store);
    ck_vault_free(x);
    free(given);
    return rc;
}

/* Entries with an applicationId are compound identities: they grant the
 * user only while acting through that application. A ckey token names one
 * principal, never a user-through-an-app pair, so such entries grant
 * nothing here — counting them would give the user more than the vault
 * owner granted. */
unsigned ck_vault_permissions(const struct ck_vault *vault, const char *object_id)
{
    unsigned bits = 0;
    if (!vault || !object_id)
        return 0;
    for (size_t i = 0; i < vault->npolicies; i++) {
        const struct ck_access_policy *p = &vault->policies[i];
        if (!p->application_id[0] && strcasecmp(p->object_id, object_id) == 0)
            bits |= p->keys;
    }
    return bits;
}

void ck_vault_free(struct ck_vault *vault)
{
    if (!vault)
        return;
    free(vault->tags_json);
    free(vault->policies);
    free(vault);
}

void ck_vault_list_free(struct ck_vault **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        ck_vault_free(v[i]);
    free(v);
}
