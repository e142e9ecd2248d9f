/*
 * backup.c — key backup and restore.
 *
 * A backup is "CKB1" followed by a sealed box (AES-256-GCM under a key
 * derived from the master key) holding JSON: the key's name, every version
 * with its attributes, tags and private key, the rotation policy, and the
 * installation and geography it came from. So a backup restores only into
 * this installation (another master key cannot open it), only into a vault
 * of the same geography, and any change to a single byte is refused.
 */
#include "vault/keys_internal.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#define BACKUP_MAGIC "CKB1"
#define BACKUP_AAD "ckey key backup v1"

static ck_err bad_backup(const char *why)
{
    ck_err_set(CK_EINVAL, "the key backup cannot be restored: %s", why);
    ck_err_code("BadParameter", "InvalidBackup");
    return CK_EINVAL;
}

/* Adds every version, private key included, to arr. */
static ck_err add_versions(struct ck_vaults *v, const char *vault, const char *name, json_t *arr)
{
    struct ck_stmt *st;
    CK_TRY(ck_stmt_prepare(v->store, &st,
                           "SELECT version, seq, kty, ops, enabled, nbf, exp, created, updated, "
                           "tags, sealed FROM ck_key_version WHERE vault = ? AND name = ? "
                           "ORDER BY seq",
                           "tt", vault, name));
    bool row;
    ck_err rc;
    while ((rc = ck_stmt_step(st, &row)) == CK_OK && row) {
        const char *version = ck_stmt_text(st, 0);
        size_t sn;
        const void *sealed = ck_stmt_blob(st, 10, &sn);
        struct ck_rsa *rsa = NULL;
        struct ck_secret der = {0};
        char *d = NULL;
        rc = ck_key_open_private(v, vault, name, version, sealed, sn, &rsa);
        if (rc == CK_OK)
            rc = ck_rsa_private_der(rsa, &der);
        if (rc == CK_OK)
            rc = ck_b64url_encode(der.p, der.n, &d);
        ck_secret_free(&der);
        ck_rsa_free(rsa);
        if (rc != CK_OK)
            break;
        json_t *o =
            json_pack("{s:s,s:I,s:s,s:I,s:b,s:I,s:I,s:I,s:I,s:s?,s:s}", "version", version, "seq",
                      (json_int_t)ck_stmt_int(st, 1), "kty", ck_stmt_text(st, 2), "ops",
                      (json_int_t)ck_stmt_int(st, 3), "enabled", (int)ck_stmt_int(st, 4), "nbf",
                      (json_int_t)ck_stmt_int(st, 5), "exp", (json_int_t)ck_stmt_int(st, 6),
                      "created", (json_int_t)ck_stmt_int(st, 7), "updated",
                      (json_int_t)ck_stmt_int(st, 8), "tags", ck_stmt_text(st, 9), "private", d);
        ck_wipe(d, strlen(d));
        free(d);
        json_array_append_new(arr, o);
    }
    ck_stmt_finalize(st);
    return rc;
}

static ck_err rotation_json(struct ck_vaults *v, const char *vault, const char *name, json_t **out)
{
    struct ck_stmt *st;
    CK_TRY(ck_stmt_prepare(v->store, &st,
                           "SELECT policy, created, updated FROM ck_key_rotation "
                           "WHERE vault = ? AND name = ?",
                           "tt", vault, name));
    bool row;
    ck_err rc = ck_stmt_step(st, &row);
    *out = rc == CK_OK && row ? json_pack("{s:s,s:I,s:I}", "policy", ck_stmt_text(st, 0), "created",
                                          (json_int_t)ck_stmt_int(st, 1), "updated",
                                          (json_int_t)ck_stmt_int(st, 2))
                              : json_null();
    ck_stmt_finalize(st);
    return rc;
}

ck_err ck_key_backup(struct ck_vaults *v, const char *vault, const char *name, struct ck_buf *blob)
{
    struct ck_key *latest = NULL;
    CK_TRY(ck_key_get(v, vault, name, NULL, &latest));
    struct ck_vault *vlt = NULL;
    json_t *doc = NULL, *versions = json_array(), *rot = NULL;
    char *text = NULL;
    ck_err rc;
    CK_GUARD(ck_key_vault(v, vault, &vlt));
    CK_GUARD(add_versions(v, vlt->name, name, versions));
    CK_GUARD(rotation_json(v, vlt->name, name, &rot));
    doc = json_pack("{s:s,s:i,s:s,s:s,s:s,s:s,s:O,s:O}", "format", "ckey-key-backup", "v", 1,
                    "installation", v->install_id, "geography", ck_geography_of(vlt->location),
                    "vault", vlt->name, "name", name, "rotation", rot, "versions", versions);
    text = json_dumps(doc, JSON_COMPACT);
    if (!doc || !text) {
        rc = ck_err_set(CK_EINTERNAL, "cannot encode the backup");
        goto out;
    }
    struct ck_buf sealed = {0};
    CK_GUARD(ck_seal(v->backup_key.p, BACKUP_AAD, strlen(BACKUP_AAD), (const uint8_t *)text,
                     strlen(text), &sealed));
    ck_buf_free(blob);
    rc = ck_buf_set(blob, BACKUP_MAGIC, 4);
    if (rc == CK_OK)
        rc = ck_buf_append(blob, sealed.p, sealed.n);
    ck_buf_free(&sealed);
out:
    if (text) {
        ck_wipe(text, strlen(text));
        free(text);
    }
    json_decref(doc);
    json_decref(versions);
    json_decref(rot);
    ck_vault_free(vlt);
    ck_key_free(latest);
    return rc;
}

/* Re-seals one backed-up version for the target vault and inserts it. */
static ck_err restore_version(struct ck_vaults *v, const char *vault, const char *name, json_t *jv)
{
    struct ck_key_row r = {0};
    const char *version = json_string_value(json_object_get(jv, "version"));
    const char *kty = json_string_value(json_object_get(jv, "kty"));
    const char *priv = json_string_value(json_object_get(jv, "private"));
    if (!version || strlen(version) != 32 || !kty || !priv)
        return bad_backup("a version record is incomplete");
    snprintf(r.vault, sizeof r.vault, "%s", vault);
    snprintf(r.name, sizeof r.name, "%s", name);
    snprintf(r.version, sizeof r.version, "%s", version);
    snprintf(r.kty, sizeof r.kty, "%s", kty);
    r.ops = (unsigned)json_integer_value(json_object_get(jv, "ops"));
    r.enabled = json_is_true(json_object_get(jv, "enabled"));
    r.nbf = json_integer_value(json_object_get(jv, "nbf"));
    r.exp = json_integer_value(json_object_get(jv, "exp"));
    r.created = json_integer_value(json_object_get(jv, "created"));
    r.updated = json_integer_value(json_object_get(jv, "updated"));
    r.tags_json = json_string_value(json_object_get(jv, "tags"));
    struct ck_secret der = {0};
    struct ck_rsa *rsa = NULL;
    ck_err rc = ck_b64url_decode_secret(priv, strlen(priv), &der);
    if (rc == CK_OK && ck_rsa_from_der(der.p, der.n, &rsa) != CK_OK)
        rc = bad_backup("a version's key does not parse");
    if (rc == CK_OK)
        rc = ck_rsa_public_ne(rsa, &r.n, &r.e);
    if (rc == CK_OK)
        rc = ck_key_seal_private(v, vault, name, version, &der, &r.sealed);
    if (rc == CK_OK)
        rc = ck_key_insert_version(v, &r);
    ck_rsa_free(rsa);
    ck_secret_free(&der);
    ck_buf_free(&r.n);
    ck_buf_free(&r.e);
    ck_buf_free(&r.sealed);
    return rc;
}

static ck_err restore_conflict(const char *name)
{
    ck_err_set(CK_ECONFLICT,
               "There was a conflict restoring the key. This can happen if either: a second key "
               "with the same name was created after the first key was deleted; thus trying to "
               "restore a key whose name is already in use, or the key %s is in a deleted state "
               "and must be recovered or purged first.",
               name);
    ck_err_code("Conflict", NULL);
    return CK_ECONFLICT;
}

static ck_err open_backup(struct ck_vaults *v, const uint8_t *blob, size_t n, json_t **doc)
{
    if (n < 4 + 1 + 12 + 16 || memcmp(blob, BACKUP_MAGIC, 4) != 0)
        return bad_backup("it is not a ckey key backup (malformed or truncated)");
    struct ck_secret text = {0};
    if (ck_unseal(v->backup_key.p, BACKUP_AAD, strlen(BACKUP_AAD), blob + 4, n - 4, &text) != CK_OK)
        return bad_backup("it is truncated, tampered with, or was made by another ckey "
                          "installation");
    *doc = json_loadb((const char *)text.p, text.n, 0, NULL);
    ck_secret_free(&text);
    const char *format = json_string_value(json_object_get(*doc, "format"));
    const char *inst = json_string_value(json_object_get(*doc, "installation"));
    if (!format || strcmp(format, "ckey-key-backup") != 0 ||
        !json_is_array(json_object_get(*doc, "versions")) ||
        json_array_size(json_object_get(*doc, "versions")) == 0) {
        json_decref(*doc);
        return bad_backup("its contents are malformed");
    }
    if (!inst || strcmp(inst, v->install_id) != 0) {
        json_decref(*doc);
        return bad_backup("it was made by another ckey installation");
    }
    return CK_OK;
}

ck_err ck_key_restore(struct ck_vaults *v, const char *vault, const uint8_t *blob, size_t n,
                      struct ck_key **out)
{
    struct ck_vault *vlt;
    CK_TRY(ck_key_vault(v, vault, &vlt));
    json_t *doc = NULL;
    ck_err rc = open_backup(v, blob, n, &doc);
    const char *name = rc == CK_OK ? json_string_value(json_object_get(doc, "name")) : NULL;
    const char *geo = rc == CK_OK ? json_string_value(json_object_get(doc, "geography")) : NULL;
    const char *here = ck_geography_of(vlt->location);
    if (rc == CK_OK && (!name || ck_key_name_check(name) != CK_OK))
        rc = bad_backup("it names no valid key");
    if (rc == CK_OK && (!geo || !here || strcmp(geo, here) != 0)) {
        ck_err_set(CK_EINVAL,
                   "the key backup was made in geography '%s' and cannot be restored into vault "
                   "'%s' in geography '%s'",
                   geo ? geo : "?", vlt->name, here ? here : "?");
        ck_err_code("BadParameter", "GeographyMismatch");
        rc = CK_EINVAL;
    }
    bool began = false;
    if (rc == CK_OK)
        began = (rc = ck_store_begin(v->store)) == CK_OK;
    bool exists = false, deleted = false;
    if (rc == CK_OK)
        rc = ck_key_state(v, vlt->name, name, &exists, &deleted);
    if (rc == CK_OK && exists)
        rc = restore_conflict(name);
    int64_t now = ck_now();
    if (rc == CK_OK)
        rc = ck_store_run(v->store, NULL,
                          "INSERT INTO ck_key (vault, name, created) VALUES (?, ?, ?)", "tti",
                          vlt->name, name, now);
    size_t i;
    json_t *jv;
    json_array_foreach(json_object_get(doc, "versions"), i, jv)
    {
        if (rc != CK_OK)
            break;
        rc = restore_version(v, vlt->name, name, jv);
    }
    json_t *rot = json_object_get(doc, "rotation");
    if (rc == CK_OK && json_is_object(rot))
        rc = ck_store_run(v->store, NULL,
                          "INSERT INTO ck_key_rotation (vault, name, policy, created, updated) "
                          "VALUES (?, ?, ?, ?, ?)",
                          "tttii", vlt->name, name,
                          json_string_value(json_object_get(rot, "policy")),
                          (int64_t)json_integer_value(json_object_get(rot, "created")),
                          (int64_t)json_integer_value(json_object_get(rot, "updated")));
    if (rc == CK_OK)
        rc = ck_store_commit(v->store);
    else if (began)
        ck_store_rollback(v->store);
    if (rc == CK_OK)
        rc = ck_key_get(v, vlt->name, name, NULL, out);
    json_decref(doc);
    ck_vault_free(vlt);
    return rc;
}
