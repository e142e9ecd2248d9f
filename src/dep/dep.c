/*
 * dep.c — data encryption policies: creation with root-key validation,
 * reads and changes, refresh after a key roll, the service-managed DEP, and
 * ck_dep_key with its availability-key fallback.
 *
 * Two stores: DEP rows (with the DEP key wrapped under each root key and
 * under the availability key) in the main store; the availability keys
 * themselves, sealed under their own master key, in the availability store.
 * A DEP is written availability key first: a crash in between leaves an
 * unused availability key, never a DEP whose availability copy is missing.
 */
#include "dep/dep.h"
#include "crypto/crypto.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEP_KEY_LEN 32
#define SERVICE_ROOT_URI "ckey:service-root"

struct ck_deps {
    struct ck_store *store, *avail;
    struct ck_secret master, avail_master; /* copies, 32 bytes each */
    struct ck_keyprov *keyprov;
    struct ck_audit *audit;
    struct ck_keycache *cache;
};

static const struct ck_migration dep_migrations[] = {
    {1, "CREATE TABLE ck_dep ("
        "  id TEXT PRIMARY KEY,"
        "  tenant TEXT NOT NULL,"
        "  name TEXT NOT NULL,"
        "  name_lc TEXT NOT NULL,"
        "  description TEXT NOT NULL DEFAULT '',"
        "  enabled BIGINT NOT NULL,"
        "  service_managed BIGINT NOT NULL,"
        "  uri1 TEXT NOT NULL, uri2 TEXT NOT NULL,"
        "  kid1 TEXT NOT NULL, kid2 TEXT NOT NULL,"
        "  wrapped1 BLOB NOT NULL, wrapped2 BLOB NOT NULL,"
        "  wrapped_avail BLOB NOT NULL,"
        "  created BIGINT NOT NULL,"
        "  changed BIGINT NOT NULL,"
        "  purge_requested BIGINT NOT NULL DEFAULT 0,"
        "  purge_reason TEXT, purge_contact TEXT,"
        "  UNIQUE (tenant, name_lc));"
        "CREATE TABLE ck_service_root ("
        "  tenant TEXT PRIMARY KEY,"
        "  sealed BLOB NOT NULL,"
        "  created BIGINT NOT NULL);"},
    {2, "CREATE TABLE ck_dep_purged ("
        "  id TEXT PRIMARY KEY,"
        "  tenant TEXT NOT NULL,"
        "  name TEXT NOT NULL,"
        "  purge_id TEXT NOT NULL,"
        "  purged BIGINT NOT NULL);"},
};

static const struct ck_migration avail_migrations[] = {
    {1, "CREATE TABLE ck_availability_key ("
        "  dep_id TEXT PRIMARY KEY,"
        "  sealed BLOB NOT NULL,"
        "  created BIGINT NOT NULL);"},
};

ck_err ck_deps_open(const struct ck_deps_config *cfg, struct ck_deps **out)
{
    CK_TRY(ck_store_migrate(cfg->store, "dep", dep_migrations,
                            sizeof dep_migrations / sizeof *dep_migrations));
    CK_TRY(ck_store_migrate(cfg->availability_store, "availability", avail_migrations, 1));
    struct ck_deps *d = ck_xcalloc(1, sizeof *d);
    d->store = cfg->store;
    d->avail = cfg->availability_store;
    d->keyprov = cfg->keyprov;
    d->audit = cfg->audit;
    d->cache = ck_keycache_new(cfg->cache_ttl > 0 ? cfg->cache_ttl : 300);
    ck_err rc = ck_secret_set(&d->master, cfg->master_key->p, cfg->master_key->n);
    if (rc == CK_OK)
        rc = ck_secret_set(&d->avail_master, cfg->availability_master_key->p,
                           cfg->availability_master_key->n);
    if (rc != CK_OK) {
        ck_deps_close(d);
        return rc;
    }
    *out = d;
    return CK_OK;
}

void ck_deps_close(struct ck_deps *d)
{
    if (!d)
        return;
    ck_keycache_free(d->cache);
    ck_secret_free(&d->master);
    ck_secret_free(&d->avail_master);
    free(d);
}

void ck_dep_free(struct ck_dep *dep)
{
    if (!dep)
        return;
    free(dep->description);
    free(dep->purge_reason);
    free(dep->purge_contact);
    free(dep);
}

void ck_dep_list_free(struct ck_dep **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        ck_dep_free(v[i]);
    free(v);
}

/* ---------- rows ---------- */

#define DEP_COLUMNS                                                                                \
    "id, tenant, name, description, enabled, service_managed, uri1, uri2, kid1, kid2, created, "   \
    "changed, purge_requested, purge_reason, purge_contact"

static void version_of(const char *kid, char out[33])
{
    const char *slash = strrchr(kid, '/');
    snprintf(out, 33, "%s", slash && strlen(slash + 1) == 32 ? slash + 1 : "");
}

static struct ck_dep *dep_from_row(struct ck_stmt *st)
{
    struct ck_dep *d = ck_xcalloc(1, sizeof *d);
    snprintf(d->id, sizeof d->id, "%s", ck_stmt_text(st, 0));
    snprintf(d->tenant, sizeof d->tenant, "%s", ck_stmt_text(st, 1));
    snprintf(d->name, sizeof d->name, "%s", ck_stmt_text(st, 2));
    d->description = ck_strdup(ck_stmt_text(st, 3) ? ck_stmt_text(st, 3) : "");
    d->enabled = ck_stmt_int(st, 4) != 0;
    d->service_managed = ck_stmt_int(st, 5) != 0;
    snprintf(d->key_uri[0], CK_KEY_URI_MAX, "%s", ck_stmt_text(st, 6));
    snprintf(d->key_uri[1], CK_KEY_URI_MAX, "%s", ck_stmt_text(st, 7));
    version_of(ck_stmt_text(st, 8), d->key_version[0]);
    version_of(ck_stmt_text(st, 9), d->key_version[1]);
    d->created = ck_stmt_int(st, 10);
    d->changed = ck_stmt_int(st, 11);
    d->purge_requested_at = ck_stmt_int(st, 12);
    d->purge_requested = d->purge_requested_at != 0;
    d->purge_reason = ck_strdup(ck_stmt_text(st, 13));
    d->purge_contact = ck_strdup(ck_stmt_text(st, 14));
    return d;
}

static ck_err dep_not_found(const char *ref)
{
    ck_err_set(CK_ENOTFOUND, "no data encryption policy '%s' in this tenant", ref);
    ck_err_code("DataEncryptionPolicyNotFound", NULL);
    return CK_ENOTFOUND;
}

static void lower_copy(const char *s, char *out, size_t n)
{
    size_t i = 0;
    for (; s[i] && i + 1 < n; i++)
        out[i] = (char)tolower((unsigned char)s[i]);
    out[i] = '\0';
}

/* A DEP that is no more: 410 naming its purge when it was purged. */
static ck_err dep_purged_or_not_found(struct ck_deps *d, const char *tenant, const char *ref)
{
    struct ck_stmt *st;
    CK_TRY(ck_stmt_prepare(d->store, &st,
                           "SELECT id, name, purge_id FROM ck_dep_purged WHERE tenant = ? AND "
                           "(id = ? OR lower(name) = lower(?))",
                           "ttt", tenant, ref, ref));
    bool row;
    ck_err rc = ck_stmt_step(st, &row);
    if (rc == CK_OK && row) {
        rc = ck_err_set(CK_EGONE,
                        "the data encryption policy %s (%s) was permanently purged (purge %s)",
                        ck_stmt_text(st, 0), ck_stmt_text(st, 1), ck_stmt_text(st, 2));
        ck_err_code("DataEncryptionPolicyPurged", NULL);
    }
    ck_stmt_finalize(st);
    CK_TRY(rc);
    return row ? CK_EGONE : dep_not_found(ref);
}

ck_err ck_dep_get(struct ck_deps *d, const char *tenant, const char *ref, struct ck_dep **out)
{
    char lc[129];
    lower_copy(ref ? ref : "", lc, sizeof lc);
    struct ck_stmt *st;
    CK_TRY(ck_stmt_prepare(d->store, &st,
                           "SELECT " DEP_COLUMNS " FROM ck_dep WHERE tenant = ? AND "
                           "(id = ? OR name_lc = ?)",
                           "ttt", tenant, lc, lc));
    bool row;
    ck_err rc = ck_stmt_step(st, &row);
    if (rc == CK_OK && row)
        *out = dep_from_row(st);
    ck_stmt_finalize(st);
    CK_TRY(rc);
    return row ? CK_OK : dep_purged_or_not_found(d, tenant, ref ? ref : "");
}

static ck_err dep_fill(struct ck_stmt *st, void *elem, void *arg)
{
    (void)arg;
    *(struct ck_dep **)elem = dep_from_row(st);
    return CK_OK;
}

static void dep_drop(void *elem)
{
    ck_dep_free(*(struct ck_dep **)elem);
}

ck_err ck_dep_list(struct ck_deps *d, const char *tenant, struct ck_dep ***out, size_t *n)
{
    struct ck_stmt *st;
    CK_TRY(ck_stmt_prepare(d->store, &st,
                           "SELECT " DEP_COLUMNS " FROM ck_dep WHERE tenant = ? AND "
                           "service_managed = 0 ORDER BY created, name_lc",
                           "t", tenant));
    void *v;
    CK_TRY(ck_stmt_collect(st, sizeof **out, dep_fill, NULL, dep_drop, &v, n));
    *out = v;
    return CK_OK;
}

/* ---------- the service root key (service-managed DEPs) ---------- */

static ck_err service_root(struct ck_deps *d, const char *tenant, struct ck_secret *root)
{
    char *aad = ck_sprintf("ckey service root/%s", tenant);
    struct ck_stmt *st;
    ck_err rc = ck_stmt_prepare(d->store, &st,
                                "SELECT sealed FROM ck_service_root WHERE tenant = ?", "t", tenant);
    bool row = false;
    if (rc == CK_OK) {
        rc = ck_stmt_step(st, &row);
        if (rc == CK_OK && row) {
            size_t n;
            const void *sealed = ck_stmt_blob(st, 0, &n);
            if (ck_unseal(d->master.p, aad, strlen(aad), sealed, n, root) != CK_OK)
                rc = ck_err_set(CK_EINTERNAL,
                                "the service root key of tenant %s does not open "
                                "with this master key",
                                tenant);
        }
        ck_stmt_finalize(st);
    }
    if (rc == CK_OK && !row) {
        /* First use: make one. Two racing creators: the first insert wins
         * and both read it back. */
        struct ck_secret k = {0};
        struct ck_buf sealed = {0};
        rc = ck_secret_alloc(&k, 32);
        if (rc == CK_OK)
            rc = ck_rand_bytes(k.p, 32);
        if (rc == CK_OK)
            rc = ck_seal(d->master.p, aad, strlen(aad), k.p, 32, &sealed);
        if (rc == CK_OK)
            rc = ck_store_run(d->store, NULL,
                              "INSERT INTO ck_service_root (tenant, sealed, created) VALUES "
                              "(?, ?, ?) ON CONFLICT (tenant) DO NOTHING",
                              "tbi", tenant, sealed.p, sealed.n, ck_now());
        ck_secret_free(&k);
        ck_buf_free(&sealed);
        free(aad);
        return rc == CK_OK ? service_root(d, tenant, root) : rc;
    }
    free(aad);
    return rc;
}

/* ---------- availability keys ---------- */

static ck_err avail_aad(const char *dep_id, char **aad)
{
    *aad = ck_sprintf("ckey availability key/%s", dep_id);
    return CK_OK;
}

/* Makes the DEP's availability key, stores it sealed, and wraps dep_key
 * under it into wrapped. */
static ck_err avail_create(struct ck_deps *d, const char *dep_id, const struct ck_secret *dep_key,
                           struct ck_buf *wrapped)
{
    struct ck_secret k = {0};
    struct ck_buf sealed = {0};
    char *aad;
    avail_aad(dep_id, &aad);
    ck_err rc = ck_secret_alloc(&k, 32);
    if (rc == CK_OK)
        rc = ck_rand_bytes(k.p, 32);
    if (rc == CK_OK)
        rc = ck_aes_kwp_wrap(k.p, 32, dep_key->p, dep_key->n, wrapped);
    if (rc == CK_OK)
        rc = ck_seal(d->avail_master.p, aad, strlen(aad), k.p, 32, &sealed);
    if (rc == CK_OK)
        rc = ck_store_run(d->avail, NULL,
                          "INSERT INTO ck_availability_key (dep_id, sealed, created) VALUES (?, "
                          "?, ?)",
                          "tbi", dep_id, sealed.p, sealed.n, ck_now());
    ck_secret_free(&k);
    ck_buf_free(&sealed);
    free(aad);
    return rc;
}

static ck_err avail_key(struct ck_deps *d, const char *dep_id, struct ck_secret *key)
{
    char *aad;
    avail_aad(dep_id, &aad);
    struct ck_stmt *st;
    ck_err rc = ck_stmt_prepare(
        d->avail, &st, "SELECT sealed FROM ck_availability_key WHERE dep_id = ?", "t", dep_id);
    bool row = false;
    if (rc == CK_OK) {
        rc = ck_stmt_step(st, &row);
        if (rc == CK_OK && row) {
            size_t n;
            const void *sealed = ck_stmt_blob(st, 0, &n);
            if (ck_unseal(d->avail_master.p, aad, strlen(aad), sealed, n, key) != CK_OK)
                rc = ck_err_set(CK_EINTERNAL, "the availability key of DEP %s does not open",
                                dep_id);
        } else if (rc == CK_OK) {
            rc = ck_err_set(CK_EGONE, "the availability key of DEP %s no longer exists", dep_id);
        }
        ck_stmt_finalize(st);
    }
    free(aad);
    return rc;
}

/* ---------- validation ---------- */

static ck_err check_name(const char *name)
{
    size_t n = name ? strlen(name) : 0;
    if (n == 0 || n > 64)
        return ck_err_set(CK_EINVAL, "a DEP name must have 1 to 64 characters");
    for (size_t i = 0; i < n; i++)
        if (iscntrl((unsigned char)name[i]))
            return ck_err_set(CK_EINVAL, "a DEP name must not hold control characters");
    return CK_OK;
}

#define MAIL_PRINCIPAL "mail service principal"
static const char *const dep_slots[2] = {"the first key", "the second key"};

static void audit_dep(struct ck_deps *d, const char *operation, const char *dep_id,
                      const char *request_id, ck_err rc, const char *detail)
{
    if (!d->audit)
        return;
    char saved[512];
    snprintf(saved, sizeof saved, "%s", ck_err_msg());
    const char *code = ck_err_code_get(), *inner = ck_err_inner_get();
    struct ck_audit_event ev = {
        "ckey Mail Service", operation, dep_id, rc == CK_OK ? "success" : ck_err_name(rc),
        request_id,          detail};
    if (ck_audit_append(d->audit, &ev) != CK_OK)
        ck_log(CK_LOG_ERROR, "audit append failed", "operation", operation, NULL);
    ck_err_set(rc, "%s", saved);
    ck_err_code(code, inner);
}

ck_err ck_dep_create(struct ck_deps *d, const char *tenant, const char *name,
                     const char *description, bool enabled, const char *uri1, const char *uri2,
                     const char *request_id, struct ck_dep **out)
{
    CK_TRY(check_name(name));
    if (description && strlen(description) > 1024)
        return ck_err_set(CK_EINVAL, "a DEP description must have at most 1024 characters");
    char lc[65];
    lower_copy(name, lc, sizeof lc);
    int64_t v[2]; /* the tenant's DEPs, and those of this name */
    CK_TRY(ck_store_ints(d->store, v, 2,
                         "SELECT COUNT(*), SUM(CASE WHEN name_lc = ? THEN 1 ELSE 0 END) FROM "
                         "ck_dep WHERE tenant = ? AND service_managed = 0",
                         "tt", lc, tenant));
    int64_t count = v[0], same = v[1];
    if (same)
        return ck_err_set(CK_ECONFLICT, "a DEP named '%s' already exists in this tenant", name);
    if (count >= CK_DEP_MAX_PER_TENANT)
        return ck_err_set(CK_ECONFLICT, "a tenant has at most %d data encryption policies",
                          CK_DEP_MAX_PER_TENANT);

    const char *uri[2] = {uri1, uri2};
    struct ck_root_key_info info[2];
    CK_TRY(ck_root_check_pair(d->keyprov, uri, dep_slots, MAIL_PRINCIPAL, info));

    char id[37], kid[2][CK_KEY_URI_MAX];
    struct ck_secret key = {0};
    struct ck_buf wrapped[2] = {{0}}, wrapped_avail = {0};
    ck_err rc;
    CK_GUARD(ck_uuid_v4(id));
    CK_GUARD(ck_secret_alloc(&key, DEP_KEY_LEN));
    CK_GUARD(ck_rand_bytes(key.p, key.n));
    CK_GUARD(ck_root_wrap_pair(d->keyprov, uri, dep_slots, MAIL_PRINCIPAL, &key, wrapped, kid));
    CK_GUARD(avail_create(d, id, &key, &wrapped_avail));
    int64_t now = ck_now();
    rc = ck_store_run(d->store, NULL,
                      "INSERT INTO ck_dep (id, tenant, name, name_lc, description, enabled, "
                      "service_managed, uri1, uri2, kid1, kid2, wrapped1, wrapped2, "
                      "wrapped_avail, created, changed) VALUES (?,?,?,?,?,?,0,?,?,?,?,?,?,?,?,?)",
                      "tttttittttbbbii", id, tenant, name, lc, description ? description : "",
                      (int64_t)enabled, uri1, uri2, kid[0], kid[1], wrapped[0].p, wrapped[0].n,
                      wrapped[1].p, wrapped[1].n, wrapped_avail.p, wrapped_avail.n, now, now);
    if (rc == CK_ECONFLICT)
        rc = ck_err_set(CK_ECONFLICT, "a DEP named '%s' already exists in this tenant", name);
out:
    audit_dep(d, "dep.create", rc == CK_OK ? id : name, request_id, rc, NULL);
    ck_secret_free(&key);
    ck_buf_free(&wrapped[0]);
    ck_buf_free(&wrapped[1]);
    ck_buf_free(&wrapped_avail);
    CK_TRY(rc);
    return ck_dep_get(d, tenant, id, out);
}

ck_err ck_dep_set(struct ck_deps *d, const char *tenant, const char *ref, const char *name,
                  const char *description, const bool *enabled, struct ck_dep **out)
{
    struct ck_dep *cur;
    CK_TRY(ck_dep_get(d, tenant, ref, &cur));
    ck_err rc = CK_OK;
    if (cur->service_managed)
        rc = ck_err_set(CK_EINVAL, "the service-managed DEP cannot be changed");
    if (rc == CK_OK && name)
        rc = check_name(name);
    if (rc == CK_OK && description && strlen(description) > 1024)
        rc = ck_err_set(CK_EINVAL, "a DEP description must have at most 1024 characters");
    char lc[65];
    lower_copy(name ? name : cur->name, lc, sizeof lc);
    if (rc == CK_OK)
        rc = ck_store_run(d->store, NULL,
                          "UPDATE ck_dep SET name = ?, name_lc = ?, description = ?, enabled = ?, "
                          "changed = ? WHERE id = ?",
                          "tttiit", name ? name : cur->name, lc,
                          description ? description : cur->description,
                          (int64_t)(enabled ? *enabled : cur->enabled), ck_now(), cur->id);
    if (rc == CK_ECONFLICT)
        rc = ck_err_set(CK_ECONFLICT, "a DEP named '%s' already exists in this tenant", name);
    if (rc == CK_OK)
        rc = ck_dep_get(d, tenant, cur->id, out);
    ck_dep_free(cur);
    return rc;
}

ck_err ck_dep_assignable(struct ck_deps *d, const char *tenant, const char *dep_id)
{
    struct ck_dep *dep;
    CK_TRY(ck_dep_get(d, tenant, dep_id, &dep));
    ck_err rc = CK_OK;
    if (!dep->enabled)
        rc = ck_err_set(CK_EINVAL, "the DEP %s (%s) is disabled and cannot be assigned", dep->id,
                        dep->name);
    else if (dep->purge_requested)
        rc = ck_err_set(CK_EINVAL,
                        "a permanent data purge was requested for the DEP %s (%s); it can no "
                        "longer be assigned",
                        dep->id, dep->name);
    ck_dep_free(dep);
    return rc;
}

ck_err ck_dep_service_managed(struct ck_deps *d, const char *tenant, struct ck_dep **out)
{
    struct ck_stmt *st;
    CK_TRY(ck_stmt_prepare(d->store, &st,
                           "SELECT id FROM ck_dep WHERE tenant = ? AND service_managed = 1", "t",
                           tenant));
    bool row;
    char id[37] = "";
    ck_err rc = ck_stmt_step(st, &row);
    if (rc == CK_OK && row)
        snprintf(id, sizeof id, "%s", ck_stmt_text(st, 0));
    ck_stmt_finalize(st);
    CK_TRY(rc);
    if (*id)
        return ck_dep_get(d, tenant, id, out);

    struct ck_secret root = {0}, key = {0};
    struct ck_buf wrapped = {0}, wrapped_avail = {0};
    CK_GUARD(service_root(d, tenant, &root));
    CK_GUARD(ck_uuid_v4(id));
    CK_GUARD(ck_secret_alloc(&key, DEP_KEY_LEN));
    CK_GUARD(ck_rand_bytes(key.p, key.n));
    CK_GUARD(ck_aes_kwp_wrap(root.p, root.n, key.p, key.n, &wrapped));
    CK_GUARD(avail_create(d, id, &key, &wrapped_avail));
    int64_t now = ck_now();
    char *uri = ck_sprintf(SERVICE_ROOT_URI "/%s", tenant);
    rc = ck_store_run(d->store, NULL,
                      "INSERT INTO ck_dep (id, tenant, name, name_lc, description, enabled, "
                      "service_managed, uri1, uri2, kid1, kid2, wrapped1, wrapped2, "
                      "wrapped_avail, created, changed) VALUES (?,?,?,?,?,1,1,?,?,?,?,?,?,?,?,?)",
                      "tttttttttbbbii", id, tenant, "Service-managed", "\x01service-managed",
                      "The tenant's DEP under service-managed keys", uri, uri, uri, uri, wrapped.p,
                      wrapped.n, wrapped.p, wrapped.n, wrapped_avail.p, wrapped_avail.n, now, now);
    free(uri);
out:
    ck_secret_free(&root);
    ck_secret_free(&key);
    ck_buf_free(&wrapped);
    ck_buf_free(&wrapped_avail);
    if (rc == CK_ECONFLICT) /* another thread made it first */
        return ck_dep_service_managed(d, tenant, out);
    CK_TRY(rc);
    return ck_dep_get(d, tenant, id, out);
}

/* ---------- unwrapping ---------- */

struct wrapped_row {
    char tenant[37];
    char name[65];
    bool service_managed;
    char kid[2][CK_KEY_URI_MAX];
    struct ck_buf wrapped[2], wrapped_avail;
};

static void wrapped_row_free(struct wrapped_row *w)
{
    ck_buf_free(&w->wrapped[0]);
    ck_buf_free(&w->wrapped[1]);
    ck_buf_free(&w->wrapped_avail);
}

static ck_err load_wrapped(struct ck_deps *d, const char *dep_id, struct wrapped_row *w)
{
    struct ck_stmt *st;
    CK_TRY(ck_stmt_prepare(d->store, &st,
                           "SELECT tenant, name, service_managed, kid1, kid2, wrapped1, wrapped2, "
                           "wrapped_avail FROM ck_dep WHERE id = ?",
                           "t", dep_id));
    bool row;
    ck_err rc = ck_stmt_step(st, &row);
    if (rc == CK_OK && row) {
        snprintf(w->tenant, sizeof w->tenant, "%s", ck_stmt_text(st, 0));
        snprintf(w->name, sizeof w->name, "%s", ck_stmt_text(st, 1));
        w->service_managed = ck_stmt_int(st, 2) != 0;
        for (int i = 0; i < 2; i++) {
            snprintf(w->kid[i], CK_KEY_URI_MAX, "%s", ck_stmt_text(st, 3 + i));
            size_t n;
            const void *p = ck_stmt_blob(st, 5 + i, &n);
            ck_buf_set(&w->wrapped[i], p, n);
        }
        size_t n;
        const void *p = ck_stmt_blob(st, 7, &n);
        ck_buf_set(&w->wrapped_avail, p, n);
    } else if (rc == CK_OK) {
        rc = ck_err_set(CK_EGONE, "the data encryption policy %s no longer exists", dep_id);
    }
    ck_stmt_finalize(st);
    return rc;
}

static ck_err unwrap_with_availability(struct ck_deps *d, const char *dep_id,
                                       const struct wrapped_row *w, struct ck_secret *key)
{
    struct ck_secret ak = {0};
    CK_TRY(avail_key(d, dep_id, &ak));
    ck_err rc = ck_aes_kwp_unwrap(ak.p, ak.n, w->wrapped_avail.p, w->wrapped_avail.n, key);
    ck_secret_free(&ak);
    return rc;
}

ck_err ck_dep_key(struct ck_deps *d, const char *dep_id, enum ck_dep_purpose purpose,
                  const char *request_id, struct ck_secret *key)
{
    char cache_id[48];
    snprintf(cache_id, sizeof cache_id, "dep:%s", dep_id);
    if (ck_keycache_get(d->cache, cache_id, key))
        return CK_OK;
    struct wrapped_row w = {0};
    CK_TRY(load_wrapped(d, dep_id, &w));
    ck_err rc;
    if (w.service_managed) {
        struct ck_secret root = {0};
        rc = service_root(d, w.tenant, &root);
        if (rc == CK_OK)
            rc = ck_aes_kwp_unwrap(root.p, root.n, w.wrapped[0].p, w.wrapped[0].n, key);
        ck_secret_free(&root);
        if (rc == CK_OK)
            ck_keycache_put(d->cache, cache_id, key->p, key->n);
        wrapped_row_free(&w);
        return rc;
    }
    /* One root key at random, then the other. */
    uint8_t coin = 0;
    ck_rand_bytes(&coin, 1);
    int first = coin & 1;
    ck_err cls[2] = {CK_OK, CK_OK};
    char why[2][256] = {"", ""};
    for (int k = 0; k < 2; k++) {
        int i = k == 0 ? first : 1 - first;
        rc = ck_keyprov_unwrap(d->keyprov, w.kid[i], w.wrapped[i].p, w.wrapped[i].n, key);
        if (rc == CK_OK) {
            ck_keycache_put(d->cache, cache_id, key->p, key->n);
            wrapped_row_free(&w);
            return CK_OK;
        }
        cls[i] = ck_keyprov_classify(rc);
        snprintf(why[i], sizeof why[i], "%s", ck_err_msg());
    }
    bool transient = cls[0] == CK_EUNAVAIL && cls[1] == CK_EUNAVAIL;
    if (!transient && purpose == CK_DEP_USER) {
        /* Denied by the customer (or mixed): users fail closed. */
        ck_err_set(CK_EFORBIDDEN,
                   "access to data under the data encryption policy %s (%s) is denied: its root "
                   "keys refuse the mail service (%s)",
                   dep_id, w.name, why[0]);
        ck_err_code("Forbidden", "CustomerKeyAccessDenied");
        audit_dep(d, "dep.unwrap", dep_id, request_id, CK_EFORBIDDEN, "both root keys denied");
        wrapped_row_free(&w);
        return CK_EFORBIDDEN;
    }
    rc = unwrap_with_availability(d, dep_id, &w, key);
    char detail[1400];
    snprintf(detail, sizeof detail, "DEP %s; key versions %s, %s; reason: %s; purpose: %s", dep_id,
             w.kid[0], w.kid[1], transient ? "root keys unreachable" : "root keys denied",
             purpose == CK_DEP_USER ? "user request" : "system operation");
    audit_dep(d, "Fallback to Availability Key", dep_id, request_id, rc, detail);
    ck_log(CK_LOG_WARN, "Fallback to Availability Key", "dep", dep_id, "request_id",
           request_id ? request_id : "-", "reason",
           transient ? "root keys unreachable" : "root keys denied", NULL);
    wrapped_row_free(&w);
    return rc;
}

ck_err ck_dep_refresh(struct ck_deps *d, const char *tenant, const char *ref,
                      const char *request_id, struct ck_dep **out)
{
    struct ck_dep *cur;
    CK_TRY(ck_dep_get(d, tenant, ref, &cur));
    struct ck_secret key = {0};
    struct ck_buf wrapped[2] = {{0}};
    char kid[2][CK_KEY_URI_MAX];
    ck_err rc = CK_OK;
    if (cur->service_managed)
        rc = ck_err_set(CK_EINVAL, "the service-managed DEP has no customer keys to refresh");
    if (rc == CK_OK)
        rc = ck_dep_key(d, cur->id, CK_DEP_USER, request_id, &key);
    const char *uri[2] = {cur->key_uri[0], cur->key_uri[1]};
    struct ck_root_key_info info[2];
    if (rc == CK_OK)
        rc = ck_root_check_pair(d->keyprov, uri, dep_slots, MAIL_PRINCIPAL, info);
    if (rc == CK_OK)
        rc = ck_root_wrap_pair(d->keyprov, uri, dep_slots, MAIL_PRINCIPAL, &key, wrapped, kid);
    if (rc == CK_OK)
        rc = ck_store_run(d->store, NULL,
                          "UPDATE ck_dep SET kid1 = ?, kid2 = ?, wrapped1 = ?, wrapped2 = ?, "
                          "changed = ? WHERE id = ?",
                          "ttbbit", kid[0], kid[1], wrapped[0].p, wrapped[0].n, wrapped[1].p,
                          wrapped[1].n, ck_now(), cur->id);
    audit_dep(d, "dep.refresh", cur->id, request_id, rc, NULL);
    if (rc == CK_OK)
        rc = ck_dep_get(d, tenant, cur->id, out);
    ck_secret_free(&key);
    ck_buf_free(&wrapped[0]);
    ck_buf_free(&wrapped[1]);
    ck_dep_free(cur);
    return rc;
}

/* ---------- the purge path (DESIGN §6) ---------- */

ck_err ck_dep_purge_request(struct ck_deps *d, const char *tenant, const char *ref,
                            const char *reason, const char *contact, const char *request_id,
                            struct ck_dep **out)
{
    if (!reason || !*reason || strlen(reason) > 512)
        return ck_err_set(CK_EINVAL, "a purge reason of 1 to 512 characters is required");
    if (!contact || !*contact || strlen(contact) > 256)
        return ck_err_set(CK_EINVAL, "a purge contact of 1 to 256 characters is required");
    struct ck_dep *cur;
    CK_TRY(ck_dep_get(d, tenant, ref, &cur));
    ck_err rc = CK_OK;
    if (cur->service_managed)
        rc = ck_err_set(CK_EINVAL, "the service-managed DEP cannot be purged: offboard the "
                                   "tenant instead");
    else if (cur->purge_requested)
        rc = ck_err_set(CK_ECONFLICT,
                        "a permanent data purge was already requested for the DEP %s (%s)", cur->id,
                        cur->name);
    const char *uri[2] = {cur->key_uri[0], cur->key_uri[1]};
    if (rc == CK_OK)
        rc = ck_root_check_revoked(d->keyprov, uri, "ckey Mail Service");
    int64_t changes = 0;
    if (rc == CK_OK)
        rc = ck_store_run(d->store, &changes,
                          "UPDATE ck_dep SET purge_requested = ?, purge_reason = ?, "
                          "purge_contact = ?, changed = ? WHERE id = ? AND purge_requested = 0",
                          "ittit", ck_now(), reason, contact, ck_now(), cur->id);
    if (rc == CK_OK && changes == 0)
        rc = ck_err_set(CK_ECONFLICT,
                        "a permanent data purge was already requested for the DEP %s (%s)", cur->id,
                        cur->name);
    audit_dep(d, "dep.purge-request", cur->id, request_id, rc, reason);
    if (rc == CK_OK)
        rc = ck_dep_get(d, tenant, cur->id, out);
    ck_dep_free(cur);
    return rc;
}

ck_err ck_dep_purge_prints(struct ck_deps *d, const char *dep_id, struct ck_blob_print **out,
                           size_t *n)
{
    struct wrapped_row w = {0};
    CK_TRY(load_wrapped(d, dep_id, &w));
    struct ck_blob_print *v = ck_xcalloc(4, sizeof *v);
    size_t count = 0;
    char what[128];
    ck_err rc = CK_OK;
    for (int i = 0; i < 2 && rc == CK_OK; i++) {
        snprintf(what, sizeof what, "DEP %s key, copy under root key %d", dep_id, i + 1);
        rc = ck_blob_print_make(what, false, w.wrapped[i].p, w.wrapped[i].n, &v[count++]);
    }
    snprintf(what, sizeof what, "DEP %s key, copy under its availability key", dep_id);
    if (rc == CK_OK)
        rc = ck_blob_print_make(what, false, w.wrapped_avail.p, w.wrapped_avail.n, &v[count++]);
    wrapped_row_free(&w);
    struct ck_stmt *st = NULL;
    bool row = false;
    if (rc == CK_OK)
        rc = ck_stmt_prepare(
            d->avail, &st, "SELECT sealed FROM ck_availability_key WHERE dep_id = ?", "t", dep_id);
    if (rc == CK_OK)
        rc = ck_stmt_step(st, &row);
    if (rc == CK_OK && row) {
        size_t sn;
        const void *sealed = ck_stmt_blob(st, 0, &sn);
        snprintf(what, sizeof what, "availability key of DEP %s", dep_id);
        rc = ck_blob_print_make(what, true, sealed, sn, &v[count++]);
    }
    ck_stmt_finalize(st);
    if (rc != CK_OK) {
        free(v);
        return rc;
    }
    *out = v;
    *n = count;
    return CK_OK;
}

ck_err ck_dep_destroy(struct ck_deps *d, const char *dep_id, const char *purge_id)
{
    char cache_id[48];
    snprintf(cache_id, sizeof cache_id, "dep:%s", dep_id);
    ck_keycache_drop(d->cache, cache_id);
    CK_TRY(ck_store_begin(d->store));
    ck_err rc = ck_store_run(d->store, NULL,
                             "INSERT INTO ck_dep_purged (id, tenant, name, purge_id, purged) "
                             "SELECT id, tenant, name, ?, ? FROM ck_dep WHERE id = ? AND "
                             "purge_requested <> 0 ON CONFLICT (id) DO NOTHING",
                             "tit", purge_id, ck_now(), dep_id);
    if (rc == CK_OK)
        rc = ck_store_run(d->store, NULL,
                          "DELETE FROM ck_dep WHERE id = ? AND purge_requested <> 0", "t", dep_id);
    if (rc == CK_OK)
        rc = ck_store_commit(d->store);
    else
        ck_store_rollback(d->store);
    CK_TRY(rc);
    audit_dep(d, "dep.destroy", dep_id, purge_id, CK_OK, "every wrapped copy of the DEP key");
    return ck_store_checkpoint(d->store);
}

ck_err ck_dep_destroy_availability(struct ck_deps *d, const char *dep_id, const char *purge_id)
{
    bool live;
    CK_TRY(ck_dep_purge_remains(d, dep_id, &live, NULL));
    if (live)
        return ck_err_set(CK_ECONFLICT,
                          "the DEP %s still exists: its availability key is deleted only after it",
                          dep_id);
    CK_TRY(ck_store_run(d->avail, NULL, "DELETE FROM ck_availability_key WHERE dep_id = ?", "t",
                        dep_id));
    audit_dep(d, "dep.destroy-availability-key", dep_id, purge_id, CK_OK, NULL);
    return ck_store_checkpoint(d->avail);
}

ck_err ck_dep_purge_remains(struct ck_deps *d, const char *dep_id, bool *dep_row, bool *avail_row)
{
    struct ck_stmt *st;
    bool row;
    if (dep_row) {
        CK_TRY(ck_stmt_prepare(d->store, &st, "SELECT 1 FROM ck_dep WHERE id = ?", "t", dep_id));
        ck_err rc = ck_stmt_step(st, &row);
        ck_stmt_finalize(st);
        CK_TRY(rc);
        *dep_row = row;
    }
    if (avail_row) {
        CK_TRY(ck_stmt_prepare(d->avail, &st, "SELECT 1 FROM ck_availability_key WHERE dep_id = ?",
                               "t", dep_id));
        ck_err rc = ck_stmt_step(st, &row);
        ck_stmt_finalize(st);
        CK_TRY(rc);
        *avail_row = row;
    }
    return CK_OK;
}
