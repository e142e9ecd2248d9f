/*
 * keys_internal.h — what keys.c, keyops.c, backup.c and rotation.c share.
 */
#ifndef CK_VAULT_KEYS_INTERNAL_H
#define CK_VAULT_KEYS_INTERNAL_H

#include "vault/internal.h"

/* A version row as stored. */
struct ck_key_row {
    char vault[25];
    char name[128];
    char version[33];
    char kty[8];
    unsigned ops;
    bool enabled;
    int64_t nbf, exp, created, updated;
    const char *tags_json;
    struct ck_buf n, e, sealed;
};

ck_err ck_key_name_check(const char *name);
ck_err ck_key_not_found(const char *name);
ck_err ck_key_vault(struct ck_vaults *v, const char *vault, struct ck_vault **out);
ck_err ck_key_state(struct ck_vaults *v, const char *vault, const char *name, bool *exists,
                    bool *deleted);
ck_err ck_key_new_version_id(char out[33]);
ck_err ck_key_seal_private(struct ck_vaults *v, const char *vault, const char *name,
                           const char *version, const struct ck_secret *der, struct ck_buf *out);
ck_err ck_key_open_private(struct ck_vaults *v, const char *vault, const char *name,
                           const char *version, const void *sealed, size_t n, struct ck_rsa **out);
ck_err ck_key_insert_version(struct ck_vaults *v, const struct ck_key_row *r);
/* The cache of opened private keys (keyops.c) saves unsealing and parsing;
 * it never decides access. After a change to a key commits, its writer
 * drops the key's entries (all versions; every key when name is NULL) so
 * that no private key of a changed key stays in memory. */
void ck_key_cache_drop(const char *vault, const char *name);
size_t ck_key_cache_count(void); /* entries held, for tests */
/* Deletes every row of a key and checkpoints the store. */
ck_err ck_key_destroy(struct ck_vaults *v, const char *vault, const char *name);
/* The expiry a rotation policy gives new versions (seconds; 0 = none). */
ck_err ck_key_policy_expiry(struct ck_vaults *v, const char *vault, const char *name,
                            int64_t *seconds);

#endif
