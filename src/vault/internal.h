/*
 * internal.h — what the files of vault/ share and nothing else sees.
 *
 * Tables: mgmt.c owns ck_subscription, ck_subscription_owner, ck_vault and
 * ck_vault_policy (migration component "vault"); keys.c owns ck_key,
 * ck_key_version and ck_key_rotation (component "vault-keys"). Vault names
 * are stored lowercased; every key table has a `vault` column holding it.
 */
#ifndef CK_VAULT_INTERNAL_H
#define CK_VAULT_INTERNAL_H

#include "vault/vault.h"

struct ck_vaults {
    struct ck_store *store;
    struct ck_secret seal_key;   /* seals private keys at rest */
    struct ck_secret backup_key; /* seals backups */
    char install_id[37];         /* names this installation inside backups */
    /* Names the sealing key in the process-wide cache of opened private keys
     * (keyops.c), so that a cached key is only ever found by a domain that
     * could have unsealed it: an HMAC under seal_key, made at open. */
    uint8_t cache_id[32];
};

ck_err ck_vault_mgmt_migrate(struct ck_store *s);
ck_err ck_vault_keys_migrate(struct ck_store *s);
/* Lowercases a vault name into out (25 bytes); CK_EINVAL when not valid. */
ck_err ck_vault_name_norm(const char *name, char out[25]);
/* Whether any key (live or soft-deleted) lives in the vault. */
ck_err ck_vault_has_keys(struct ck_vaults *v, const char *vault, bool *any);

#endif
