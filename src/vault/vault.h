/*
 * vault — key vaults: subscriptions and their owners, vaults with access
 * policies, and RSA keys with versions, soft delete, backup/restore,
 * rotation and the cryptographic operations.
 *
 * This is the customer's side of Customer Key: the service role never
 * includes this header, it reaches keys only through the AKV REST API.
 *
 * Key material: a private key exists in plaintext only inside a single
 * operation, in ck_secret memory. At rest every private key is sealed
 * (AES-256-GCM) under a key derived from the master key, with the vault,
 * key name and version as associated data, so a sealed key copied to
 * another row does not open. Backups are sealed under a second derived key
 * and name the geography of the vault they came from.
 *
 * Owns the tables ck_subscription*, ck_vault*, ck_key*. Calls store/,
 * crypto/ and audit/ only. Thread-safety: all functions may be called from
 * any thread; struct ck_vaults is read-only after ck_vaults_open.
 * Ownership: returned structs and arrays belong to the caller (the *_free
 * functions below).
 */
#ifndef CK_VAULT_H
#define CK_VAULT_H

#include "base/base.h"
#include "crypto/crypto.h"
#include "store/store.h"

struct ck_vaults; /* the vault domain: store + derived sealing keys */

ck_err ck_vaults_open(struct ck_store *s, const struct ck_secret *master_key,
                      struct ck_vaults **out);
void ck_vaults_close(struct ck_vaults *v);
struct ck_store *ck_vaults_store(struct ck_vaults *v);

/* ---------- geography ---------- */

/* The geography of an Azure-style location ("westus" → "us",
 * "northeurope" → "europe"); NULL for an unknown location. Backups restore
 * only into vaults of the same geography. */
const char *ck_geography_of(const char *location);

/* ---------- key permissions (ARM `permissions.keys`) ---------- */

enum ck_key_perm {
    CK_PERM_ENCRYPT = 1u << 0,
    CK_PERM_DECRYPT = 1u << 1,
    CK_PERM_WRAPKEY = 1u << 2,
    CK_PERM_UNWRAPKEY = 1u << 3,
    CK_PERM_SIGN = 1u << 4,
    CK_PERM_VERIFY = 1u << 5,
    CK_PERM_GET = 1u << 6,
    CK_PERM_LIST = 1u << 7,
    CK_PERM_CREATE = 1u << 8,
    CK_PERM_UPDATE = 1u << 9,
    CK_PERM_IMPORT = 1u << 10,
    CK_PERM_DELETE = 1u << 11,
    CK_PERM_BACKUP = 1u << 12,
    CK_PERM_RESTORE = 1u << 13,
    CK_PERM_RECOVER = 1u << 14,
    CK_PERM_PURGE = 1u << 15,
    CK_PERM_RELEASE = 1u << 16,
    CK_PERM_ROTATE = 1u << 17,
    CK_PERM_GETROTATIONPOLICY = 1u << 18,
    CK_PERM_SETROTATIONPOLICY = 1u << 19,
    CK_PERM_ALL_BITS = (1u << 20) - 1,
};
/* The ARM spelling ("wrapKey", "getrotationpolicy"); case-insensitive parse.
 * "all" parses to CK_PERM_ALL_BITS. */
const char *ck_perm_name(enum ck_key_perm p);
ck_err ck_perm_parse(const char *name, unsigned *bits);

/* ---------- subscriptions ---------- */

/* id: 1–64 chars of [A-Za-z0-9-_.]. Owners are principal object ids. */
ck_err ck_subscription_create(struct ck_vaults *v, const char *id, const char *owner_object_id);
ck_err ck_subscription_add_owner(struct ck_vaults *v, const char *id, const char *owner_object_id);
/* CK_ENOTFOUND when the subscription does not exist. */
ck_err ck_subscription_is_owner(struct ck_vaults *v, const char *id, const char *object_id,
                                bool *owner);
/* Creates the subscription with n owners (n may be 0) in one transaction;
 * CK_ECONFLICT when it exists. Ids are case-insensitive (kept lowercased). */
ck_err ck_subscription_create_many(struct ck_vaults *v, const char *id,
                                   const char *const *owner_object_ids, size_t n);

struct ck_subscription {
    char id[65];
    int64_t created;
    char **owners; /* object ids, sorted */
    size_t nowners;
};
ck_err ck_subscription_get(struct ck_vaults *v, const char *id, struct ck_subscription **out);
void ck_subscription_free(struct ck_subscription *s);

/* ---------- vaults ---------- */

struct ck_access_policy {
    char tenant_id[37];
    char object_id[65];
    char application_id[37]; /* "" when none */
    unsigned keys;           /* ck_key_perm bits */
};

#define CK_VAULT_MAX_POLICIES 1024

struct ck_vault {
    char name[25];
    char subscription[65];
    char resource_group[91];
    char location[64];
    char tenant_id[37];
    char sku[16];       /* "standard" | "premium" */
    int retention_days; /* 7–90 */
    bool purge_protection;
    char *tags_json; /* JSON object text, never NULL ("{}") */
    struct ck_access_policy *policies;
    size_t npolicies;
    int64_t created, updated;
};

/* Creates or replaces a vault (ARM PUT). Validates the name
 * (^[a-zA-Z0-9-]{3,24}$, unique in the installation across subscriptions),
 * location (known geography), retention (7–90), sku, ≤ 1024 policies; purge
 * protection cannot be switched off once on, and retention cannot change
 * once purge protection is on. *created tells whether it was new. */
ck_err ck_vault_put(struct ck_vaults *v, const struct ck_vault *in, bool *created);
/* name is case-insensitive. */
ck_err ck_vault_get(struct ck_vaults *v, const char *name, struct ck_vault **out);
/* resource_group NULL: the whole subscription. */
ck_err ck_vault_list(struct ck_vaults *v, const char *subscription, const char *resource_group,
                     struct ck_vault ***out, size_t *n);
/* Refused (CK_ECONFLICT) while the vault holds keys, live or soft-deleted. */
ck_err ck_vault_delete(struct ck_vaults *v, const char *name);

enum ck_policy_op { CK_POLICY_ADD, CK_POLICY_REPLACE, CK_POLICY_REMOVE };
/* ARM accessPolicies/{add|replace|remove}: add merges permissions into the
 * entry with the same (object id, application id) or appends one; replace
 * sets the entry's permissions (appending when absent); remove drops the
 * entry, or only the listed permissions when some are given. */
ck_err ck_vault_policy_edit(struct ck_vaults *v, const char *name, enum ck_policy_op op,
                            const struct ck_access_policy *p, size_t n, struct ck_vault **out);
/* The permissions object_id holds on the vault (union of its entries). */
unsigned ck_vault_permissions(const struct ck_vault *vault, const char *object_id);

void ck_vault_free(struct ck_vault *vault);
void ck_vault_list_free(struct ck_vault **v, size_t n);

/* ---------- keys ---------- */

enum ck_key_op {
    CK_OP_ENCRYPT = 1u << 0,
    CK_OP_DECRYPT = 1u << 1,
    CK_OP_SIGN = 1u << 2,
    CK_OP_VERIFY = 1u << 3,
    CK_OP_WRAPKEY = 1u << 4,
    CK_OP_UNWRAPKEY = 1u << 5,
    CK_OP_IMPORT = 1u << 6,
    CK_OP_EXPORT = 1u << 7,
};
#define CK_OP_DEFAULT_RSA                                                                          \
    (CK_OP_ENCRYPT | CK_OP_DECRYPT | CK_OP_SIGN | CK_OP_VERIFY | CK_OP_WRAPKEY | CK_OP_UNWRAPKEY)
const char *ck_key_op_name(enum ck_key_op op); /* "wrapKey" */
ck_err ck_key_op_parse(const char *name, unsigned *bit);

/* One version of a key, as the API shows it (public parts only). */
struct ck_key {
    char vault[25];
    char name[128];
    char version[33]; /* 32 lowercase hex */
    char kty[8];      /* "RSA" | "RSA-HSM" */
    unsigned ops;     /* ck_key_op bits */
    bool enabled;
    int64_t nbf, exp; /* 0 = not set */
    int64_t created, updated;
    int recoverable_days;
    const char *recovery_level; /* static string */
    char *tags_json;            /* JSON object text or NULL */
    struct ck_buf n, e;
    /* Soft delete (0 when not deleted). */
    int64_t deleted, scheduled_purge;
};
void ck_key_free(struct ck_key *k);
void ck_key_list_free(struct ck_key **v, size_t n);

/* Fields a caller may set; a `has_` flag says the field was given. */
struct ck_key_props {
    bool has_ops, has_enabled, has_nbf, has_exp, has_tags;
    unsigned ops;
    bool enabled;
    int64_t nbf, exp;
    const char *tags_json; /* JSON object of string values */
};

/* kty "RSA" or "RSA-HSM"; size 2048 (default when 0), 3072 or 4096. */
ck_err ck_key_create(struct ck_vaults *v, const char *vault, const char *name, const char *kty,
                     unsigned size, const struct ck_key_props *props, struct ck_key **out);
/* An RSA JWK with private parts; hsm marks the key RSA-HSM. */
ck_err ck_key_import(struct ck_vaults *v, const char *vault, const char *name,
                     const struct ck_rsa_jwk *jwk, bool hsm, const struct ck_key_props *props,
                     struct ck_key **out);
/* version "" or NULL = latest. */
ck_err ck_key_get(struct ck_vaults *v, const char *vault, const char *name, const char *version,
                  struct ck_key **out);
ck_err ck_key_update(struct ck_vaults *v, const char *vault, const char *name, const char *version,
                     const struct ck_key_props *props, struct ck_key **out);
/* Paging: skip items, at most max (1–25); *more when items remain. The
 * list of keys shows each key's latest version. */
ck_err ck_key_list(struct ck_vaults *v, const char *vault, size_t skip, size_t max,
                   struct ck_key ***out, size_t *n, bool *more);
ck_err ck_key_list_versions(struct ck_vaults *v, const char *vault, const char *name, size_t skip,
                            size_t max, struct ck_key ***out, size_t *n, bool *more);
ck_err ck_key_rotate(struct ck_vaults *v, const char *vault, const char *name, struct ck_key **out);

/* Soft delete and what follows it. *out is the deleted key's latest version
 * with deleted/scheduled_purge set. */
ck_err ck_key_delete(struct ck_vaults *v, const char *vault, const char *name, struct ck_key **out);
ck_err ck_key_get_deleted(struct ck_vaults *v, const char *vault, const char *name,
                          struct ck_key **out);
ck_err ck_key_list_deleted(struct ck_vaults *v, const char *vault, size_t skip, size_t max,
                           struct ck_key ***out, size_t *n, bool *more);
ck_err ck_key_recover(struct ck_vaults *v, const char *vault, const char *name,
                      struct ck_key **out);
/* CK_EFORBIDDEN under purge protection. */
ck_err ck_key_purge(struct ck_vaults *v, const char *vault, const char *name);

/* An opaque blob: every version and all metadata, sealed. */
ck_err ck_key_backup(struct ck_vaults *v, const char *vault, const char *name, struct ck_buf *blob);
/* CK_ECONFLICT when the name exists or is soft-deleted; CK_EINVAL for a
 * malformed, truncated, tampered or foreign blob, or another geography. */
ck_err ck_key_restore(struct ck_vaults *v, const char *vault, const uint8_t *blob, size_t n,
                      struct ck_key **out);

/* Rotation policy as JSON text ({lifetimeActions, attributes}); get returns
 * the default policy when none was set. */
ck_err ck_key_rotation_policy_get(struct ck_vaults *v, const char *vault, const char *name,
                                  char **json, int64_t *created, int64_t *updated);
ck_err ck_key_rotation_policy_set(struct ck_vaults *v, const char *vault, const char *name,
                                  const char *json, int64_t *created, int64_t *updated);

/* Crypto. Each refuses a disabled key, a key outside nbf/exp, and an
 * operation missing from key_ops (CK_EFORBIDDEN with a message saying
 * which). *kid_version gets the version used (33 bytes). */
enum ck_crypto_alg {
    CK_ALG_RSA_OAEP,
    CK_ALG_RSA_OAEP_256,
    CK_ALG_RSA1_5,
    CK_ALG_RS256,
    CK_ALG_RS384,
    CK_ALG_RS512,
    CK_ALG_PS256,
    CK_ALG_PS384,
    CK_ALG_PS512,
};
ck_err ck_crypto_alg_parse(const char *name, enum ck_crypto_alg *alg);

enum ck_key_crypto_op { CK_KEY_ENCRYPT, CK_KEY_DECRYPT, CK_KEY_WRAP, CK_KEY_UNWRAP, CK_KEY_SIGN };
/* Encrypt/wrap output and signatures are ck_buf; decrypt/unwrap output is
 * key material and goes in out_secret. */
ck_err ck_key_crypto(struct ck_vaults *v, const char *vault, const char *name, const char *version,
                     enum ck_key_crypto_op op, enum ck_crypto_alg alg, const uint8_t *in, size_t n,
                     struct ck_buf *out, struct ck_secret *out_secret, char kid_version[33]);
ck_err ck_key_verify(struct ck_vaults *v, const char *vault, const char *name, const char *version,
                     enum ck_crypto_alg alg, const uint8_t *digest, size_t dn, const uint8_t *sig,
                     size_t sn, bool *valid, char kid_version[33]);

/* Housekeeping, run periodically by the server: purges soft-deleted keys
 * past their scheduled purge date, and rotates keys whose rotation policy
 * says so. *count gets how many were acted on. */
ck_err ck_vault_housekeeping(struct ck_vaults *v, int64_t now, size_t *purged, size_t *rotated);

#endif
