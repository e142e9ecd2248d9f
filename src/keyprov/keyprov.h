/*
 * keyprov — how the service reaches root keys: the key-provider interface,
 * its Azure Key Vault REST provider, and the cache of unwrapped keys.
 *
 * The service modules (dep, mail, files) never include vault/: a customer's
 * root key is a key URI ("https://contoso-a.vault.localhost:8443/keys/k1")
 * in some AKV-compatible vault, reached over HTTPS with the service
 * principal's token, wherever that vault runs.
 *
 * Failure classes, the one thing callers decide on:
 *   CK_EUNAVAIL   transient: connection refused or reset, TLS or DNS failure,
 *                 timeout, 5xx, 429 (after retries with backoff)
 *   CK_EFORBIDDEN denied: 401, 403, 404, a disabled or expired key, an
 *                 operation the key refuses — the customer said no
 *   CK_EINVAL     the request itself is wrong (bad URI, 400)
 * ck_keyprov_classify() maps any other ck_err into one of these.
 *
 * Thread-safety: a provider may be used from many threads at once; it keeps
 * a pool of keep-alive connections. The cache is thread-safe.
 */
#ifndef CK_KEYPROV_H
#define CK_KEYPROV_H

#include "base/base.h"

#define CK_KEY_URI_MAX 512

/* What the service needs to know of a root key to accept it. */
struct ck_root_key_info {
    char kid[CK_KEY_URI_MAX]; /* with version, as the vault returns it */
    char version[33];
    char kty[16];              /* "RSA" | "RSA-HSM" | ... */
    unsigned bits;             /* modulus size */
    bool can_wrap, can_unwrap; /* wrapKey / unwrapKey in key_ops */
    bool enabled;
    int64_t nbf, exp;        /* 0 = not set */
    char recovery_level[48]; /* e.g. "Recoverable" (90 days + purge protection) */
    int recoverable_days;
};

/* Parses "https://HOST[:PORT]/keys/NAME[/VERSION]" into its vault origin,
 * name and version (version "" when absent); CK_EINVAL otherwise. The vault
 * is named by the first label of HOST. */
struct ck_key_uri {
    char origin[256]; /* https://host:port */
    char vault[64];   /* first label of host */
    char name[128];
    char version[33];
};
ck_err ck_key_uri_parse(const char *uri, struct ck_key_uri *out);

struct ck_keyprov;

struct ck_keyprov_config {
    const char *token;  /* bearer token of the service principal (copied, wiped on free) */
    const char *cacert; /* PEM file of trusted CAs, NULL = system store */
    long timeout_ms;    /* per attempt; 0 = 5000 */
    int retries;        /* extra attempts on transient failures; 0 = 2 */
    unsigned pool_size; /* keep-alive connections kept; 0 = 8 */
};

ck_err ck_keyprov_new(const struct ck_keyprov_config *cfg, struct ck_keyprov **out);
void ck_keyprov_free(struct ck_keyprov *p);
/* Replaces the token (e.g. after a restart issued a new one). */
void ck_keyprov_set_token(struct ck_keyprov *p, const char *token);

/* GET uri (latest version when the URI has none). */
ck_err ck_keyprov_get(struct ck_keyprov *p, const char *uri, struct ck_root_key_info *info);
/* wrapkey with RSA-OAEP-256 under uri (latest version when none);
 * kid (CK_KEY_URI_MAX bytes) gets the versioned key id used. */
ck_err ck_keyprov_wrap(struct ck_keyprov *p, const char *uri, const uint8_t *in, size_t n,
                       struct ck_buf *out, char *kid);
/* A wrapKey of 32 random bytes under uri, as a probe of the caller's
 * access: the vault's HTTP status of the last attempt goes to *status (200
 * when it wrapped, 403 when it denied, 0 when no answer came), and the
 * return is what ck_keyprov_wrap would return, its error message set. */
ck_err ck_keyprov_probe_wrap(struct ck_keyprov *p, const char *uri, long *status);
/* unwrapkey with RSA-OAEP-256 under kid (a versioned key id). */
ck_err ck_keyprov_unwrap(struct ck_keyprov *p, const char *kid, const uint8_t *in, size_t n,
                         struct ck_secret *out);
/* CK_EUNAVAIL, CK_EFORBIDDEN or CK_EINVAL for any error. */
ck_err ck_keyprov_classify(ck_err e);

/* What the pool has done, for metrics and tests. */
struct ck_keyprov_stats {
    unsigned kept;         /* idle clients (one keep-alive connection each) kept now */
    unsigned kept_max;     /* the most ever kept at once; never above pool_size */
    unsigned busy_max;     /* the most clients in use at once */
    unsigned long created; /* clients created */
    unsigned long retries; /* attempts repeated after a transient failure */
};
void ck_keyprov_stats(struct ck_keyprov *p, struct ck_keyprov_stats *out);

/* ---------- the rules for customer root keys (DESIGN §4) ---------- */

/* One root key: a key URI, reachable and readable by principal (named in
 * messages, e.g. "mail service principal"), RSA of 2048 bits or more,
 * wrapKey and unwrapKey in key_ops, enabled, no expiry, not before nbf,
 * recoveryLevel Recoverable with 90-day retention (soft delete with purge
 * protection). CK_EINVAL naming `which` key and the failed check. */
ck_err ck_root_check(struct ck_keyprov *p, const char *which, const char *uri,
                     const char *principal, struct ck_root_key_info *info);
/* Both keys, and in two different vaults. */
ck_err ck_root_check_pair(struct ck_keyprov *p, const char *const uri[2],
                          const char *const which[2], const char *principal,
                          struct ck_root_key_info info[2]);
/* Wraps key under both roots and proves each wrapped copy unwraps to key. */
ck_err ck_root_wrap_pair(struct ck_keyprov *p, const char *const uri[2], const char *const which[2],
                         const char *principal, const struct ck_secret *key,
                         struct ck_buf wrapped[2], char kid[2][CK_KEY_URI_MAX]);

/* Proves that principal lost wrapKey on both root keys, before a purge: a
 * wrapKey probe (ck_keyprov_probe_wrap) under each must answer 403. Both
 * are always probed. CK_ECONFLICT when a vault still grants it (naming the
 * vault and key) or answered anything else but 403; CK_EUNAVAIL when one
 * did not answer (and none still grants). Never call inside a store
 * transaction: the vault may be this process. */
ck_err ck_root_check_revoked(struct ck_keyprov *p, const char *const uri[2], const char *principal);

/* ---------- cache of unwrapped keys ---------- */

/* Keys in locked memory, each with a time-to-live; wiped when evicted,
 * replaced, cleared or when the cache is freed. */
struct ck_keycache;
struct ck_keycache *ck_keycache_new(int64_t ttl_seconds);
void ck_keycache_free(struct ck_keycache *c);
/* Copies the key for id into out when present and fresh; false otherwise. */
bool ck_keycache_get(struct ck_keycache *c, const char *id, struct ck_secret *out);
void ck_keycache_put(struct ck_keycache *c, const char *id, const uint8_t *key, size_t n);
void ck_keycache_drop(struct ck_keycache *c, const char *id);
/* Evicts expired entries (get does so lazily too). */
void ck_keycache_sweep(struct ck_keycache *c);
/* Entries held, expired ones not yet evicted included. */
size_t ck_keycache_count(struct ck_keycache *c);
int64_t ck_keycache_ttl(const struct ck_keycache *c);

#endif
