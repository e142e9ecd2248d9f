/*
 * dep — data encryption policies: DEP keys wrapped by two customer root keys
 * and a service-held availability key; the tenant's service-managed DEP;
 * validation of root keys; refresh after a key roll; and the one way to get
 * a usable DEP key, with the availability-key fallback rules of DESIGN §4.
 *
 * A DEP key exists only as three wrapped copies: RSA-OAEP-256 under each
 * root key (through keyprov), and AES-KWP under the DEP's availability key.
 * Availability keys (AES-256, one per DEP) live in their own store, sealed
 * under their own master key, apart from the DEP rows. A service-managed
 * DEP (one per tenant) wraps its key under a service root key (AES-KWP,
 * sealed under the main master key) instead of customer keys.
 *
 * Unwrapping (ck_dep_key): cache first; else one root key chosen at random,
 * then the other. If both fail transiently, the availability key serves and
 * the fallback is audited. If both deny access, user requests fail with 403
 * naming the DEP; system operations (re-encryption, indexing, purge) may
 * still use the availability key, audited too.
 *
 * Owns ck_dep (main store) and ck_availability_key (availability store).
 * Calls store/, crypto/, keyprov/, audit/. Thread-safe.
 */
#ifndef CK_DEP_H
#define CK_DEP_H

#include "audit/audit.h"
#include "base/base.h"
#include "keyprov/keyprov.h"
#include "store/store.h"

#define CK_DEP_MAX_PER_TENANT 50

struct ck_deps;

struct ck_deps_config {
    struct ck_store *store;                          /* DEP rows */
    struct ck_store *availability_store;             /* availability keys only */
    const struct ck_secret *master_key;              /* seals the service root keys */
    const struct ck_secret *availability_master_key; /* seals availability keys */
    struct ck_keyprov *keyprov;                      /* the mail service principal's provider */
    struct ck_audit *audit;
    int64_t cache_ttl; /* seconds unwrapped DEP keys stay cached; 0 = 300 */
};

ck_err ck_deps_open(const struct ck_deps_config *cfg, struct ck_deps **out);
void ck_deps_close(struct ck_deps *d);

struct ck_dep {
    char id[37];
    char tenant[37];
    char name[65];
    char *description;
    bool enabled;
    bool service_managed;
    char key_uri[2][CK_KEY_URI_MAX]; /* as given (no version) */
    char key_version[2][33];         /* versions in use */
    int64_t created, changed;
    bool purge_requested;
    char *purge_reason, *purge_contact;
    int64_t purge_requested_at;
};
void ck_dep_free(struct ck_dep *d);
void ck_dep_list_free(struct ck_dep **v, size_t n);

/* Validates both key URIs (reachable; RSA ≥ 2048; wrapKey and unwrapKey in
 * key_ops; enabled, no expiry; recovery level "Recoverable" = 90-day soft
 * delete with purge protection; the two in different vaults; the service
 * principal can wrap and unwrap), then makes the DEP. CK_EINVAL naming the
 * failed check and the key; CK_ECONFLICT for a 51st DEP or a taken name. */
ck_err ck_dep_create(struct ck_deps *d, const char *tenant, const char *name,
                     const char *description, bool enabled, const char *uri1, const char *uri2,
                     const char *request_id, struct ck_dep **out);
/* ref: id or name, within the tenant. */
ck_err ck_dep_get(struct ck_deps *d, const char *tenant, const char *ref, struct ck_dep **out);
ck_err ck_dep_list(struct ck_deps *d, const char *tenant, struct ck_dep ***out, size_t *n);
/* Only the fields given (non-NULL) change. */
ck_err ck_dep_set(struct ck_deps *d, const char *tenant, const char *ref, const char *name,
                  const char *description, const bool *enabled, struct ck_dep **out);
/* Rewraps the DEP key under the newest enabled version of each root key;
 * touches no mailbox. */
ck_err ck_dep_refresh(struct ck_deps *d, const char *tenant, const char *ref,
                      const char *request_id, struct ck_dep **out);
/* The tenant's service-managed DEP, made on first use. */
ck_err ck_dep_service_managed(struct ck_deps *d, const char *tenant, struct ck_dep **out);
/* Whether the DEP may be assigned now (exists in tenant, enabled, no purge
 * requested): CK_OK, or CK_EINVAL/CK_ENOTFOUND with the reason. */
ck_err ck_dep_assignable(struct ck_deps *d, const char *tenant, const char *dep_id);

/* ---------- the purge path (DESIGN §6, docs/purge.md) ---------- */

/* Sets PermanentDataPurgeRequested with reason (1–512 bytes) and contact
 * (1–256), only after proving the customer revoked the mail service: a
 * wrapKey of random bytes under each root key (ck_keyprov_probe_wrap) must
 * answer 403 from both. Otherwise CK_ECONFLICT naming the vault that still
 * grants it (or answered something else), CK_EUNAVAIL naming one that did
 * not answer; nothing changes. CK_EINVAL for the service-managed DEP,
 * CK_ECONFLICT when already requested. Audited. The DEP can no longer be
 * assigned afterwards (ck_dep_assignable). */
ck_err ck_dep_purge_request(struct ck_deps *d, const char *tenant, const char *ref,
                            const char *reason, const char *contact, const char *request_id,
                            struct ck_dep **out);
/* Fingerprints of every stored copy of the DEP's key (under root key 1 and
 * 2 and under its availability key) and of its sealed availability key
 * (availability_store = true): *n is 3 or 4. Taken before destroying. */
ck_err ck_dep_purge_prints(struct ck_deps *d, const char *dep_id, struct ck_blob_print **out,
                           size_t *n);
/* Deletes the DEP row, so every wrapped copy of its key, leaving a
 * tombstone: ck_dep_get then fails with CK_EGONE naming purge_id. Drops the
 * cached key, checkpoints the store. Only a DEP with a purge request is
 * deleted; a second call does nothing. */
ck_err ck_dep_destroy(struct ck_deps *d, const char *dep_id, const char *purge_id);
/* Deletes the DEP's availability key — refused (CK_ECONFLICT) while the DEP
 * row exists — and checkpoints the availability store. Idempotent. */
ck_err ck_dep_destroy_availability(struct ck_deps *d, const char *dep_id, const char *purge_id);
/* Whether the DEP row and its availability key still exist (either may be
 * NULL). */
ck_err ck_dep_purge_remains(struct ck_deps *d, const char *dep_id, bool *dep_row, bool *avail_row);

enum ck_dep_purpose { CK_DEP_USER, CK_DEP_SYSTEM };
/* The DEP's key (32 bytes) by the rules above. */
ck_err ck_dep_key(struct ck_deps *d, const char *dep_id, enum ck_dep_purpose purpose,
                  const char *request_id, struct ck_secret *key);

#endif
