/*
 * vaults.c — opening the vault domain: migrations, derived sealing keys and
 * the installation id that backups carry.
 */
#include "vault/internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static ck_err derive(const struct ck_secret *master, const char *info, struct ck_secret *out)
{
    CK_TRY(ck_secret_alloc(out, 32));
    return ck_hkdf_sha256(NULL, 0, master->p, master->n, (const uint8_t *)info, strlen(info),
                          out->p, 32);
}

/* The installation id: random, made once, kept in the store's meta table of
 * the vault component so that a backup can say where it was made. */
static ck_err install_id(struct ck_store *s, char out[37])
{
    char id[37];
    CK_TRY(ck_uuid_v4(id));
    CK_TRY(ck_store_run(s, NULL,
                        "INSERT INTO ck_vault_meta (name, value) VALUES ('install_id', ?) "
                        "ON CONFLICT (name) DO NOTHING",
                        "t", id));
    struct ck_stmt *st;
    CK_TRY(
        ck_stmt_prepare(s, &st, "SELECT value FROM ck_vault_meta WHERE name = 'install_id'", ""));
    bool row = false;
    ck_err rc = ck_stmt_step(st, &row);
    if (rc == CK_OK && row)
        snprintf(out, 37, "%s", ck_stmt_text(st, 0));
    else if (rc == CK_OK)
        rc = ck_err_set(CK_EINTERNAL, "the installation id is missing");
    ck_stmt_finalize(st);
    return rc;
}

ck_err ck_vaults_open(struct ck_store *s, const struct ck_secret *master_key,
                      struct ck_vaults **out)
{
    CK_TRY(ck_vault_mgmt_migrate(s));
    CK_TRY(ck_vault_keys_migrate(s));
    struct ck_vaults *v = ck_xcalloc(1, sizeof *v);
    v->store = s;
    ck_err rc = derive(master_key, "ckey vault key sealing v1", &v->seal_key);
    static const char cache_info[] = "ckey opened-key cache v1";
    if (rc == CK_OK)
        rc = ck_hmac_sha256(v->seal_key.p, v->seal_key.n, cache_info, sizeof cache_info - 1,
                            v->cache_id);
    if (rc == CK_OK)
        rc = derive(master_key, "ckey vault backup v1", &v->backup_key);
    if (rc == CK_OK)
        rc = install_id(s, v->install_id);
    if (rc != CK_OK) {
        ck_vaults_close(v);
        return rc;
    }
    *out = v;
    return CK_OK;
}

void ck_vaults_close(struct ck_vaults *v)
{
    if (!v)
        return;
    ck_secret_free(&v->seal_key);
    ck_secret_free(&v->backup_key);
    free(v);
}

struct ck_store *ck_vaults_store(struct ck_vaults *v)
{
    return v->store;
}
