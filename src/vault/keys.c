/*
 * keys.c — keys and their versions: create, import, read, update, list,
 * rotate, soft delete, recover and purge.
 *
 * A key is a row in ck_key (one per vault and name, carrying the soft-delete
 * state) and one row per version in ck_key_version. Versions are ordered by
 * `seq`; "latest" is the highest. The private key of a version is sealed
 * under the vault domain's sealing key with "vault/name/version" as
 * associated data (seal_private / open_private), so no query or file ever
 * sees it in plaintext. Every change to a key (a new version, an update, a
 * delete, a purge) drops its opened private keys from keyops.c's cache.
 */
#include "vault/internal.h"
#include "vault/keys_internal.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const struct ck_migration key_migrations[] = {
    {1, "CREATE TABLE ck_vault_meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);"
        "CREATE TABLE ck_key ("
        "  vault TEXT NOT NULL,"
        "  name TEXT NOT NULL,"
        "  created BIGINT NOT NULL,"
        "  deleted BIGINT NOT NULL DEFAULT 0,"
        "  scheduled_purge BIGINT NOT NULL DEFAULT 0,"
        "  PRIMARY KEY (vault, name));"
        "CREATE TABLE ck_key_version ("
        "  vault TEXT NOT NULL,"
        "  name TEXT NOT NULL,"
        "  version TEXT NOT NULL,"
        "  seq BIGINT NOT NULL,"
        "  kty TEXT NOT NULL,"
        "  ops BIGINT NOT NULL,"
        "  enabled BIGINT NOT NULL,"
        "  nbf BIGINT NOT NULL DEFAULT 0,"
        "  exp BIGINT NOT NULL DEFAULT 0,"
        "  created BIGINT NOT NULL,"
        "  updated BIGINT NOT NULL,"
        "  tags TEXT,"
        "  n BLOB NOT NULL,"
        "  e BLOB NOT NULL,"
        "  sealed BLOB NOT NULL,"
        "  PRIMARY KEY (vault, name, version),"
        "  FOREIGN KEY (vault, name) REFERENCES ck_key (vault, name) ON DELETE CASCADE);"
        "CREATE INDEX ck_key_version_by_seq ON ck_key_version (vault, name, seq);"
        "CREATE TABLE ck_key_rotation ("
        "  vault TEXT NOT NULL,"
        "  name TEXT NOT NULL,"
        "  policy TEXT NOT NULL,"
        "  created BIGINT NOT NULL,"
        "  updated BIGINT NOT NULL,"
        "  PRIMARY KEY (vault, name),"
        "  FOREIGN KEY (vault, name) REFERENCES ck_key (vault, name) ON DELETE CASCADE);"},
};

ck_err ck_vault_keys_migrate(struct ck_store *s)
{
    return ck_store_migrate(s, "vault-keys", key_migrations,
                            sizeof key_migrations / sizeof key_migrations[0]);
}

ck_err ck_vault_has_keys(struct ck_vaults *v, const char *vault, bool *any)
{
    struct ck_stmt *st;
    CK_TRY(
        ck_stmt_prepare(v->store, &st, "SELECT 1 FROM ck_key WHERE vault = ? LIMIT 1", "t", vault));
    ck_err rc = ck_stmt_step(st, any);
    ck_stmt_finalize(st);
    return rc;
}

/* ---------- names, operations, errors ---------- */

static const char *const op_names[] = {"encrypt", "decrypt",   "sign",   "verify",
                                       "wrapKey", "unwrapKey", "import", "export"};

const char *ck_key_op_name(enum ck_key_op op)
{
    for (unsigned i = 0; i < 8; i++)
        if (op == 1u << i)
            return op_names[i];
    return "?";
}

ck_err ck_key_op_parse(const char *name, unsigned *bit)
{
    for (unsigned i = 0; i < 8; i++)
        if (strcmp(name, op_names[i]) == 0) {
            *bit = 1u << i;
            return CK_OK;
        }
    return ck_err_set(CK_EINVAL,
                      "'%s' is not a key operation (encrypt, decrypt, sign, verify, wrapKey, "
                      "unwrapKey, import, export)",
                      name);
}

ck_err ck_key_name_check(const char *name)
{
    size_t n = name ? strlen(name) : 0;
    if (n == 0 || n > 127)
        return ck_err_set(CK_EINVAL, "a key name must have 1 to 127 characters");
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)name[i]) && name[i] != '-')
            return ck_err_set(CK_EINVAL,
                              "the key name '%s' is not valid: use letters, digits and '-' only",
                              name);
    return CK_OK;
}

ck_err ck_key_not_found(const char *name)
{
    ck_err_set(CK_ENOTFOUND,
               "A key with (name/id) %s was not found in this key vault. If you recently "
               "deleted this key you may be able to recover it using the correct recovery "
               "command. For help resolving this issue, please see "
               "https://go.microsoft.com/fwlink/?linkid=2125182",
               name);
    ck_err_code("KeyNotFound", NULL);
    return CK_ENOTFOUND;
}

static ck_err deleted_conflict(const char *name)
{
    ck_err_set(CK_ECONFLICT,
               "Key %s is currently in a deleted but recoverable state, and its name cannot be "
               "reused; in this state, the key can only be recovered or purged.",
               name);
    ck_err_code("Conflict", "ObjectIsDeletedButRecoverable");
    return CK_ECONFLICT;
}

/* The vault row a key operation needs: existence, retention, protection. */
ck_err ck_key_vault(struct ck_vaults *v, const char *vault, struct ck_vault **out)
{
    ck_err rc = ck_vault_get(v, vault, out);
    if (rc == CK_ENOTFOUND) {
        ck_err_set(CK_ENOTFOUND, "the vault '%s' does not exist", vault);
        ck_err_code("VaultNotFound", NULL);
    }
    return rc;
}

static const char *recovery_level(const struct ck_vault *vault)
{
    if (vault->retention_days >= 90)
        return vault->purge_protection ? "Recoverable" : "Recoverable+Purgeable";
    return vault->purge_protection ? "CustomizedRecoverable" : "CustomizedRecoverable+Purgeable";
}

/* ---------- rows ---------- */

#define VERSION_COLUMNS                                                                            \
    "v.vault, v.name, v.version, v.kty, v.ops, v.enabled, v.nbf, v.exp, v.created, v.updated, "    \
    "v.tags, v.n, v.e, k.deleted, k.scheduled_purge"

static struct ck_key *key_from_row(struct ck_stmt *st, const struct ck_vault *vault)
{
    struct ck_key *k = ck_xcalloc(1, sizeof *k);
    snprintf(k->vault, sizeof k->vault, "%s", ck_stmt_text(st, 0));
    snprintf(k->name, sizeof k->name, "%s", ck_stmt_text(st, 1));
    snprintf(k->version, sizeof k->version, "%s", ck_stmt_text(st, 2));
    snprintf(k->kty, sizeof k->kty, "%s", ck_stmt_text(st, 3));
    k->ops = (unsigned)ck_stmt_int(st, 4);
    k->enabled = ck_stmt_int(st, 5) != 0;
    k->nbf = ck_stmt_int(st, 6);
    k->exp = ck_stmt_int(st, 7);
    k->created = ck_stmt_int(st, 8);
    k->updated = ck_stmt_int(st, 9);
    k->tags_json = ck_strdup(ck_stmt_text(st, 10));
    size_t len;
    const void *p = ck_stmt_blob(st, 11, &len);
    ck_buf_set(&k->n, p, len);
    p = ck_stmt_blob(st, 12, &len);
    ck_buf_set(&k->e, p, len);
    k->deleted = ck_stmt_int(st, 13);
    k->scheduled_purge = ck_stmt_int(st, 14);
    k->recoverable_days = vault->retention_days;
    k->recovery_level = recovery_level(vault);
    return k;
}

void ck_key_free(struct ck_key *k)
{
    if (!k)
        return;
    free(k->tags_json);
    ck_buf_free(&k->n);
    ck_buf_free(&k->e);
    free(k);
}

void ck_key_list_free(struct ck_key **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        ck_key_free(v[i]);
    free(v);
}

/* Reads one version; version NULL/"" = latest. deleted: which state the key
 * must be in. */
static ck_err load_version(struct ck_vaults *v, const struct ck_vault *vault, const char *name,
                           const char *version, bool deleted, struct ck_key **out)
{
    bool latest = !version || !*version;
    struct ck_stmt *st;
    CK_TRY(ck_stmt_prepare(
        v->store, &st,
        "SELECT " VERSION_COLUMNS " FROM ck_key k JOIN ck_key_version v "
        "ON v.vault = k.vault AND v.name = k.name "
        "WHERE k.vault = ? AND k.name = ? AND (k.deleted > 0) = ? "
        "AND (v.version = ? OR (? = 1 AND v.seq = (SELECT MAX(seq) FROM ck_key_version x "
        "WHERE x.vault = k.vault AND x.name = k.name)))",
        "ttiti", vault->name, name, (int64_t)deleted, latest ? "" : version, (int64_t)latest));
    bool row;
    ck_err rc = ck_stmt_step(st, &row);
    if (rc == CK_OK && row)
        *out = key_from_row(st, vault);
    ck_stmt_finalize(st);
    CK_TRY(rc);
    if (!row) {
        if (deleted) {
            ck_err_set(CK_ENOTFOUND, "Deleted Key not found: %s", name);
            ck_err_code("KeyNotFound", NULL);
            return CK_ENOTFOUND;
        }
        return ck_key_not_found(name);
    }
    return CK_OK;
}

/* The key's state: *exists, and *deleted when soft-deleted. */
ck_err ck_key_state(struct ck_vaults *v, const char *vault, const char *name, bool *exists,
                    bool *deleted)
{
    struct ck_stmt *st;
    CK_TRY(ck_stmt_prepare(v->store, &st, "SELECT deleted FROM ck_key WHERE vault = ? AND name = ?",
                           "tt", vault, name));
    ck_err rc = ck_stmt_step(st, exists);
    *deleted = rc == CK_OK && *exists && ck_stmt_int(st, 0) > 0;
    ck_stmt_finalize(st);
    return rc;
}

ck_err ck_key_new_version_id(char out[33])
{
    uint8_t b[16];
    CK_TRY(ck_rand_bytes(b, sizeof b));
    ck_hex_encode(b, sizeof b, out);
    return CK_OK;
}

ck_err ck_key_seal_private(struct ck_vaults *v, const char *vault, const char *name,
                           const char *version, const struct ck_secret *der, struct ck_buf *out)
{
    char *aad = ck_sprintf("ckey-key/%s/%s/%s", vault, name, version);
    ck_err rc = ck_seal(v->seal_key.p, aad, strlen(aad), der->p, der->n, out);
    free(aad);
    return rc;
}

ck_err ck_key_open_private(struct ck_vaults *v, const char *vault, const char *name,
                           const char *version, const void *sealed, size_t n, struct ck_rsa **out)
{
    char *aad = ck_sprintf("ckey-key/%s/%s/%s", vault, name, version);
    struct ck_secret der = {0};
    ck_err rc = ck_unseal(v->seal_key.p, aad, strlen(aad), sealed, n, &der);
    free(aad);
    if (rc != CK_OK)
        return ck_err_set(CK_EINTERNAL,
                          "the stored key %s/%s cannot be opened with this "
                          "installation's master key",
                          name, version);
    rc = ck_rsa_from_der(der.p, der.n, out);
    ck_secret_free(&der);
    return rc;
}

/* Inserts a version row (the key row must exist). */
ck_err ck_key_insert_version(struct ck_vaults *v, const struct ck_key_row *r)
{
    return ck_store_run(v->store, NULL,
                        "INSERT INTO ck_key_version (vault, name, version, seq, kty, ops, "
                        "enabled, nbf, exp, created, updated, tags, n, e, sealed) VALUES "
                        "(?, ?, ?, (SELECT COALESCE(MAX(seq), 0) + 1 FROM ck_key_version "
                        "WHERE vault = ? AND name = ?), ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        "ttttttiiiiiitbbb", r->vault, r->name, r->version, r->vault, r->name,
                        r->kty, (int64_t)r->ops, (int64_t)r->enabled, r->nbf, r->exp, r->created,
                        r->updated, r->tags_json, r->n.p, r->n.n, r->e.p, r->e.n, r->sealed.p,
                        r->sealed.n);
}

/* Stores a new version of key `name` holding `rsa`: creates the key row
 * when the name is new, refuses a soft-deleted name. One transaction. */
static ck_err store_new_version(struct ck_vaults *v, const struct ck_vault *vault, const char *name,
                                const char *kty, const struct ck_rsa *rsa,
                                const struct ck_key_props *props, unsigned default_ops,
                                struct ck_key **out)
{
    struct ck_key_row r = {0};
    struct ck_secret der = {0};
    ck_err rc;
    snprintf(r.vault, sizeof r.vault, "%s", vault->name);
    snprintf(r.name, sizeof r.name, "%s", name);
    snprintf(r.kty, sizeof r.kty, "%s", kty);
    CK_GUARD(ck_key_new_version_id(r.version));
    r.ops = props && props->has_ops ? props->ops : default_ops;
    r.enabled = props && props->has_enabled ? props->enabled : true;
    r.nbf = props && props->has_nbf ? props->nbf : 0;
    r.exp = props && props->has_exp ? props->exp : 0;
    r.tags_json = props && props->has_tags ? props->tags_json : NULL;
    r.created = r.updated = ck_now();
    CK_GUARD(ck_rsa_public_ne(rsa, &r.n, &r.e));
    CK_GUARD(ck_rsa_private_der(rsa, &der));
    CK_GUARD(ck_key_seal_private(v, r.vault, r.name, r.version, &der, &r.sealed));

    CK_GUARD(ck_store_begin(v->store));
    bool exists, deleted;
    rc = ck_key_state(v, r.vault, name, &exists, &deleted);
    if (rc == CK_OK && deleted)
        rc = deleted_conflict(name);
    if (rc == CK_OK && !exists)
        rc = ck_store_run(v->store, NULL,
                          "INSERT INTO ck_key (vault, name, created) VALUES (?, ?, ?)", "tti",
                          r.vault, name, r.created);
    if (rc == CK_OK)
        rc = ck_key_insert_version(v, &r);
    if (rc == CK_OK)
        rc = ck_store_commit(v->store);
    if (rc != CK_OK) {
        ck_store_rollback(v->store);
        goto out;
    }
    ck_key_cache_drop(r.vault, name); /* a new version (create again, import, rotate) */
    rc = load_version(v, vault, name, r.version, false, out);
out:
    ck_secret_free(&der);
    ck_buf_free(&r.n);
    ck_buf_free(&r.e);
    ck_buf_free(&r.sealed);
    return rc;
}

static ck_err check_kty(const char *kty, bool *hsm)
{
    if (!kty || strcmp(kty, "RSA") == 0) {
        *hsm = false;
        return CK_OK;
    }
    if (strcmp(kty, "RSA-HSM") == 0) {
        *hsm = true;
        return CK_OK;
    }
    return ck_err_set(CK_EINVAL,
                      "the key type '%s' is not supported: ckey vaults hold RSA and RSA-HSM keys "
                      "(root keys for Customer Key are RSA)",
                      kty);
}

ck_err ck_key_create(struct ck_vaults *v, const char *vault, const char *name, const char *kty,
                     unsigned size, const struct ck_key_props *props, struct ck_key **out)
{
    bool hsm = false;
    CK_TRY(ck_key_name_check(name));
    CK_TRY(check_kty(kty, &hsm));
    if (size == 0)
        size = 2048;
    if (size != 2048 && size != 3072 && size != 4096)
        return ck_err_set(CK_EINVAL, "the key size %u is not supported: use 2048, 3072 or 4096",
                          size);
    struct ck_vault *vlt;
    CK_TRY(ck_key_vault(v, vault, &vlt));
    bool exists, deleted;
    ck_err rc = ck_key_state(v, vlt->name, name, &exists, &deleted);
    if (rc == CK_OK && deleted)
        rc = deleted_conflict(name);
    struct ck_rsa *rsa = NULL;
    if (rc == CK_OK)
        rc = ck_rsa_generate(size, &rsa);
    if (rc == CK_OK)
        rc = store_new_version(v, vlt, name, hsm ? "RSA-HSM" : "RSA", rsa, props, CK_OP_DEFAULT_RSA,
                               out);
    ck_rsa_free(rsa);
    ck_vault_free(vlt);
    return rc;
}

ck_err ck_key_import(struct ck_vaults *v, const char *vault, const char *name,
                     const struct ck_rsa_jwk *jwk, bool hsm, const struct ck_key_props *props,
                     struct ck_key **out)
{
    CK_TRY(ck_key_name_check(name));
    if (!jwk->d.n || !jwk->p.n || !jwk->q.n)
        return ck_err_set(CK_EINVAL, "an imported RSA key needs its private parts (d, p, q)");
    struct ck_rsa *rsa;
    CK_TRY(ck_rsa_from_jwk(jwk, &rsa));
    unsigned bits = ck_rsa_bits(rsa);
    ck_err rc = CK_OK;
    if (bits != 2048 && bits != 3072 && bits != 4096)
        rc = ck_err_set(CK_EINVAL, "the imported key has %u bits: use 2048, 3072 or 4096", bits);
    struct ck_vault *vlt = NULL;
    if (rc == CK_OK)
        rc = ck_key_vault(v, vault, &vlt);
    if (rc == CK_OK)
        rc = store_new_version(v, vlt, name, hsm ? "RSA-HSM" : "RSA", rsa, props, CK_OP_DEFAULT_RSA,
                               out);
    ck_rsa_free(rsa);
    ck_vault_free(vlt);
    return rc;
}

ck_err ck_key_get(struct ck_vaults *v, const char *vault, const char *name, const char *version,
                  struct ck_key **out)
{
    struct ck_vault *vlt;
    CK_TRY(ck_key_vault(v, vault, &vlt));
    ck_err rc = load_version(v, vlt, name, version, false, out);
    ck_vault_free(vlt);
    return rc;
}

ck_err ck_key_update(struct ck_vaults *v, const char *vault, const char *name, const char *version,
                     const struct ck_key_props *p, struct ck_key **out)
{
    struct ck_vault *vlt;
    CK_TRY(ck_key_vault(v, vault, &vlt));
    struct ck_key *cur = NULL;
    ck_err rc = load_version(v, vlt, name, version, false, &cur);
    if (rc == CK_OK) {
        unsigned ops = p->has_ops ? p->ops : cur->ops;
        bool enabled = p->has_enabled ? p->enabled : cur->enabled;
        int64_t nbf = p->has_nbf ? p->nbf : cur->nbf, exp = p->has_exp ? p->exp : cur->exp;
        const char *tags = p->has_tags ? p->tags_json : cur->tags_json;
        rc = ck_store_run(v->store, NULL,
                          "UPDATE ck_key_version SET ops = ?, enabled = ?, nbf = ?, exp = ?, "
                          "tags = ?, updated = ? WHERE vault = ? AND name = ? AND version = ?",
                          "iiiitittt", (int64_t)ops, (int64_t)enabled, nbf, exp, tags, ck_now(),
                          vlt->name, name, cur->version);
        ck_key_cache_drop(vlt->name, name);
    }
    if (rc == CK_OK)
        rc = load_version(v, vlt, name, cur->version, false, out);
    ck_key_free(cur);
    ck_vault_free(vlt);
    return rc;
}

/* Pages through a listing query whose two last parameters are LIMIT and
 * OFFSET; fetches one extra row to know whether more remain. */
static ck_err page(struct ck_stmt *st, const struct ck_vault *vault, size_t max,
                   struct ck_key ***out, size_t *n, bool *more)
{
    struct ck_key **v = ck_xcalloc(max + 1, sizeof *v);
    size_t count = 0;
    bool row;
    ck_err rc;
    *more = false;
    while ((rc = ck_stmt_step(st, &row)) == CK_OK && row) {
        if (count == max) {
            *more = true;
            break;
        }
        v[count++] = key_from_row(st, vault);
    }
    ck_stmt_finalize(st);
    if (rc != CK_OK) {
        ck_key_list_free(v, count);
        return rc;
    }
    *out = v;
    *n = count;
    return CK_OK;
}

static ck_err list_latest(struct ck_vaults *v, const char *vault, bool deleted, size_t skip,
                          size_t max, struct ck_key ***out, size_t *n, bool *more)
{
    if (max < 1 || max > 25)
        return ck_err_set(CK_EINVAL, "maxresults must be between 1 and 25");
    struct ck_vault *vlt;
    CK_TRY(ck_key_vault(v, vault, &vlt));
    struct ck_stmt *st;
    ck_err rc = ck_stmt_prepare(
        v->store, &st,
        "SELECT " VERSION_COLUMNS " FROM ck_key k JOIN ck_key_version v "
        "ON v.vault = k.vault AND v.name = k.name "
        "WHERE k.vault = ? AND (k.deleted > 0) = ? AND v.seq = (SELECT MAX(seq) FROM "
        "ck_key_version x WHERE x.vault = k.vault AND x.name = k.name) "
        "ORDER BY k.name LIMIT ? OFFSET ?",
        "tiii", vlt->name, (int64_t)deleted, (int64_t)max + 1, (int64_t)skip);
    if (rc == CK_OK)
        rc = page(st, vlt, max, out, n, more);
    ck_vault_free(vlt);
    return rc;
}

ck_err ck_key_list(struct ck_vaults *v, const char *vault, size_t skip, size_t max,
                   struct ck_key ***out, size_t *n, bool *more)
{
    return list_latest(v, vault, false, skip, max, out, n, more);
}

ck_err ck_key_list_deleted(struct ck_vaults *v, const char *vault, size_t skip, size_t max,
                           struct ck_key ***out, size_t *n, bool *more)
{
    return list_latest(v, vault, true, skip, max, out, n, more);
}

ck_err ck_key_list_versions(struct ck_vaults *v, const char *vault, const char *name, size_t skip,
                            size_t max, struct ck_key ***out, size_t *n, bool *more)
{
    if (max < 1 || max > 25)
        return ck_err_set(CK_EINVAL, "maxresults must be between 1 and 25");
    struct ck_vault *vlt;
    CK_TRY(ck_key_vault(v, vault, &vlt));
    bool exists, deleted;
    ck_err rc = ck_key_state(v, vlt->name, name, &exists, &deleted);
    if (rc == CK_OK && (!exists || deleted))
        rc = ck_key_not_found(name);
    struct ck_stmt *st;
    if (rc == CK_OK)
        rc = ck_stmt_prepare(v->store, &st,
                             "SELECT " VERSION_COLUMNS " FROM ck_key k JOIN ck_key_version v "
                             "ON v.vault = k.vault AND v.name = k.name "
                             "WHERE k.vault = ? AND k.name = ? ORDER BY v.seq LIMIT ? OFFSET ?",
                             "ttii", vlt->name, name, (int64_t)max + 1, (int64_t)skip);
    if (rc == CK_OK)
        rc = page(st, vlt, max, out, n, more);
    ck_vault_free(vlt);
    return rc;
}

ck_err ck_key_rotate(struct ck_vaults *v, const char *vault, const char *name, struct ck_key **out)
{
    struct ck_vault *vlt;
    CK_TRY(ck_key_vault(v, vault, &vlt));
    struct ck_key *cur = NULL;
    struct ck_rsa *rsa = NULL;
    int64_t expiry = 0;
    ck_err rc = load_version(v, vlt, name, NULL, false, &cur);
    if (rc == CK_OK)
        rc = ck_key_policy_expiry(v, vlt->name, name, &expiry);
    if (rc == CK_OK)
        rc = ck_rsa_generate((unsigned)cur->n.n * 8, &rsa);
    if (rc == CK_OK) {
        /* The new version keeps the key's type, operations and tags. */
        struct ck_key_props p = {.has_ops = true,
                                 .ops = cur->ops,
                                 .has_tags = cur->tags_json != NULL,
                                 .tags_json = cur->tags_json,
                                 .has_exp = expiry > 0,
                                 .exp = expiry > 0 ? ck_now() + expiry : 0};
        rc = store_new_version(v, vlt, name, cur->kty, rsa, &p, cur->ops, out);
    }
    ck_rsa_free(rsa);
    ck_key_free(cur);
    ck_vault_free(vlt);
    return rc;
}

/* ---------- soft delete ---------- */

ck_err ck_key_delete(struct ck_vaults *v, const char *vault, const char *name, struct ck_key **out)
{
    struct ck_vault *vlt;
    CK_TRY(ck_key_vault(v, vault, &vlt));
    int64_t now = ck_now(), changes = 0;
    ck_err rc =
        ck_store_run(v->store, &changes,
                     "UPDATE ck_key SET deleted = ?, scheduled_purge = ? "
                     "WHERE vault = ? AND name = ? AND deleted = 0",
                     "iitt", now, now + (int64_t)vlt->retention_days * 86400, vlt->name, name);
    if (rc == CK_OK)
        ck_key_cache_drop(vlt->name, name);
    if (rc == CK_OK && changes == 0)
        rc = ck_key_not_found(name);
    if (rc == CK_OK)
        rc = load_version(v, vlt, name, NULL, true, out);
    ck_vault_free(vlt);
    return rc;
}

ck_err ck_key_get_deleted(struct ck_vaults *v, const char *vault, const char *name,
                          struct ck_key **out)
{
    struct ck_vault *vlt;
    CK_TRY(ck_key_vault(v, vault, &vlt));
    ck_err rc = load_version(v, vlt, name, NULL, true, out);
    ck_vault_free(vlt);
    return rc;
}

ck_err ck_key_recover(struct ck_vaults *v, const char *vault, const char *name, struct ck_key **out)
{
    struct ck_vault *vlt;
    CK_TRY(ck_key_vault(v, vault, &vlt));
    int64_t changes = 0;
    ck_err rc = ck_store_run(v->store, &changes,
                             "UPDATE ck_key SET deleted = 0, scheduled_purge = 0 "
                             "WHERE vault = ? AND name = ? AND deleted > 0",
                             "tt", vlt->name, name);
    if (rc == CK_OK && changes == 0) {
        ck_err_set(CK_ENOTFOUND, "Deleted Key not found: %s", name);
        ck_err_code("KeyNotFound", NULL);
        rc = CK_ENOTFOUND;
    }
    if (rc == CK_OK)
        rc = load_version(v, vlt, name, NULL, false, out);
    ck_vault_free(vlt);
    return rc;
}

/* Deletes every row of a key; the store's secure_delete overwrites the
 * freed pages and the checkpoint empties the WAL of their old copies. */
ck_err ck_key_destroy(struct ck_vaults *v, const char *vault, const char *name)
{
    CK_TRY(ck_store_run(v->store, NULL, "DELETE FROM ck_key WHERE vault = ? AND name = ?", "tt",
                        vault, name));
    ck_key_cache_drop(vault, name);
    ck_err rc = ck_store_checkpoint(v->store);
    /* A busy checkpoint only delays the WAL truncation to the next one. */
    return rc == CK_EUNAVAIL ? CK_OK : rc;
}

ck_err ck_key_purge(struct ck_vaults *v, const char *vault, const char *name)
{
    struct ck_vault *vlt;
    CK_TRY(ck_key_vault(v, vault, &vlt));
    bool exists, deleted;
    ck_err rc = ck_key_state(v, vlt->name, name, &exists, &deleted);
    if (rc == CK_OK && !deleted) {
        ck_err_set(CK_ENOTFOUND, "Deleted Key not found: %s", name);
        ck_err_code("KeyNotFound", NULL);
        rc = CK_ENOTFOUND;
    }
    if (rc == CK_OK && vlt->purge_protection) {
        ck_err_set(CK_EFORBIDDEN,
                   "Operation \"purge\" is not allowed because purge protection is enabled for "
                   "this vault. Key Vault service will automatically purge it after the "
                   "retention period has passed.");
        ck_err_code("Forbidden", "PurgeProtectionEnabled");
        rc = CK_EFORBIDDEN;
    }
    if (rc == CK_OK)
        rc = ck_key_destroy(v, vlt->name, name);
    ck_vault_free(vlt);
    return rc;
}
