/*
 * keyops.c — the cryptographic operations on a stored key: encrypt,
 * decrypt, wrap, unwrap, sign and verify.
 *
 * Every operation checks, in the order a user can act on them: the key
 * exists and is not soft-deleted, it is enabled, it is inside its nbf/exp
 * window, and the operation is in its key_ops. Only then is the private key
 * opened, from the cache of opened keys below when it is there.
 */
#include "vault/keys_internal.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const struct {
    const char *name;
    enum ck_crypto_alg alg;
} algs[] = {
    {"RSA-OAEP", CK_ALG_RSA_OAEP}, {"RSA-OAEP-256", CK_ALG_RSA_OAEP_256},
    {"RSA1_5", CK_ALG_RSA1_5},     {"RS256", CK_ALG_RS256},
    {"RS384", CK_ALG_RS384},       {"RS512", CK_ALG_RS512},
    {"PS256", CK_ALG_PS256},       {"PS384", CK_ALG_PS384},
    {"PS512", CK_ALG_PS512},
};

ck_err ck_crypto_alg_parse(const char *name, enum ck_crypto_alg *alg)
{
    for (size_t i = 0; i < sizeof algs / sizeof algs[0]; i++)
        if (name && strcmp(name, algs[i].name) == 0) {
            *alg = algs[i].alg;
            return CK_OK;
        }
    return ck_err_set(CK_EINVAL, "the algorithm '%s' is not supported for RSA keys",
                      name ? name : "");
}

static bool is_encryption(enum ck_crypto_alg alg)
{
    return alg == CK_ALG_RSA_OAEP || alg == CK_ALG_RSA_OAEP_256 || alg == CK_ALG_RSA1_5;
}

static enum ck_rsa_enc enc_of(enum ck_crypto_alg alg)
{
    return alg == CK_ALG_RSA_OAEP       ? CK_RSA_OAEP
           : alg == CK_ALG_RSA_OAEP_256 ? CK_RSA_OAEP_256
                                        : CK_RSA1_5;
}

static enum ck_rsa_sig sig_of(enum ck_crypto_alg alg)
{
    static const enum ck_rsa_sig map[] = {
        [CK_ALG_RS256] = CK_RS256, [CK_ALG_RS384] = CK_RS384, [CK_ALG_RS512] = CK_RS512,
        [CK_ALG_PS256] = CK_PS256, [CK_ALG_PS384] = CK_PS384, [CK_ALG_PS512] = CK_PS512,
    };
    return map[alg];
}

static ck_err forbidden(const char *inner, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static ck_err forbidden(const char *inner, const char *fmt, ...)
{
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    ck_err_set(CK_EFORBIDDEN, "%s", msg);
    ck_err_code("Forbidden", inner);
    return CK_EFORBIDDEN;
}

/* ---------- opened private keys ---------- */

/* Unsealing a private key and parsing its PKCS#8 costs more than a 2048-bit
 * RSA decryption with it, so opened keys are cached per version: at most
 * KEY_CACHE_MAX, least recently used out first, and none kept longer than
 * KEY_CACHE_IDLE_MS unused.
 *
 * The cache decides nothing. load_for_op reads and checks the version row
 * (exists, not deleted, enabled, nbf/exp, key_ops) on every call before it
 * asks for the key, and an entry is only used for the very sealed bytes it
 * was opened from, by a vault domain with the same sealing key: it is always
 * the key that unsealing would give. Changes to a key drop its entries
 * (ck_key_cache_drop) so that the private key of a disabled, deleted, purged
 * or rotated key does not stay in memory, and a generation count keeps an
 * operation that raced with such a change from putting the key back.
 *
 * Entries are shared between threads (a struct ck_rsa may be used
 * concurrently) and counted; the last user frees the key with ck_rsa_free,
 * which cleanses its private parts. The cache is process-wide because a
 * struct ck_vaults has no say in when it is closed; entries carry the
 * domain's cache_id instead. */
#define KEY_CACHE_MAX 256
#define KEY_CACHE_IDLE_MS (60 * 1000)

struct opened_key {
    struct opened_key *prev, *next; /* on the cache's list, most recently used first */
    uint8_t domain[32];             /* the cache_id of the domain that opened it */
    char vault[25], name[128], version[33];
    uint8_t *sealed; /* the stored (sealed) bytes it was opened from */
    size_t sealed_n;
    struct ck_rsa *rsa;
    int64_t last_used_ms;
    unsigned refs; /* operations using it, plus one while in the cache */
};

static struct {
    pthread_mutex_t mu;
    struct opened_key *head, *tail;
    size_t n;
    uint64_t gen; /* bumped by every drop; read without the lock */
} cache = {.mu = PTHREAD_MUTEX_INITIALIZER};

static void opened_free(struct opened_key *e)
{
    ck_rsa_free(e->rsa);
    free(e->sealed);
    free(e);
}

/* Frees a chain of entries linked by `next` (taken off the cache). */
static void opened_free_chain(struct opened_key *e)
{
    while (e) {
        struct opened_key *next = e->next;
        opened_free(e);
        e = next;
    }
}

static void list_remove(struct opened_key *e)
{
    if (e->prev)
        e->prev->next = e->next;
    else
        cache.head = e->next;
    if (e->next)
        e->next->prev = e->prev;
    else
        cache.tail = e->prev;
    e->prev = e->next = NULL;
}

static void list_push_front(struct opened_key *e)
{
    e->prev = NULL;
    e->next = cache.head;
    if (cache.head)
        cache.head->prev = e;
    else
        cache.tail = e;
    cache.head = e;
}

/* Takes e out of the cache (lock held); when nobody uses it any more, links
 * it onto *dead for the caller to free after unlocking. */
static void cache_unlink(struct opened_key *e, struct opened_key **dead)
{
    list_remove(e);
    cache.n--;
    if (--e->refs == 0) {
        e->next = *dead;
        *dead = e;
    }
}

/* Drops the entries unused for too long (lock held). */
static void cache_expire(int64_t now_ms, struct opened_key **dead)
{
    while (cache.tail && now_ms - cache.tail->last_used_ms > KEY_CACHE_IDLE_MS)
        cache_unlink(cache.tail, dead);
}

/* The entry for exactly these sealed bytes in this domain (lock held). */
static struct opened_key *cache_find(const uint8_t domain[32], const char *vault, const char *name,
                                     const char *version, const void *sealed, size_t n)
{
    for (struct opened_key *e = cache.head; e; e = e->next)
        if (strcmp(e->version, version) == 0 && strcmp(e->name, name) == 0 &&
            strcmp(e->vault, vault) == 0 && memcmp(e->domain, domain, 32) == 0 &&
            e->sealed_n == n && memcmp(e->sealed, sealed, n) == 0)
            return e;
    return NULL;
}

static void opened_release(struct opened_key *e)
{
    if (!e)
        return;
    pthread_mutex_lock(&cache.mu);
    bool last = --e->refs == 0;
    pthread_mutex_unlock(&cache.mu);
    if (last)
        opened_free(e);
}

/* The opened private key of a version whose row was read after the cache
 * generation was gen; release with opened_release. */
static ck_err open_version(struct ck_vaults *v, uint64_t gen, const char *vault, const char *name,
                           const char *version, const void *sealed, size_t n,
                           struct opened_key **out)
{
    const uint8_t *domain = v->cache_id;
    int64_t now = ck_now_ms();
    struct opened_key *dead = NULL;
    pthread_mutex_lock(&cache.mu);
    cache_expire(now, &dead);
    struct opened_key *e = cache_find(domain, vault, name, version, sealed, n);
    if (e) {
        e->refs++;
        e->last_used_ms = now;
        list_remove(e);
        list_push_front(e);
    }
    pthread_mutex_unlock(&cache.mu);
    opened_free_chain(dead);
    if (e) {
        *out = e;
        return CK_OK;
    }

    struct ck_rsa *rsa = NULL;
    CK_TRY(ck_key_open_private(v, vault, name, version, sealed, n, &rsa));
    e = ck_xcalloc(1, sizeof *e);
    memcpy(e->domain, domain, 32);
    snprintf(e->vault, sizeof e->vault, "%s", vault);
    snprintf(e->name, sizeof e->name, "%s", name);
    snprintf(e->version, sizeof e->version, "%s", version);
    e->sealed = ck_xmalloc(n);
    memcpy(e->sealed, sealed, n);
    e->sealed_n = n;
    e->rsa = rsa;
    e->last_used_ms = now;
    e->refs = 1;

    dead = NULL;
    pthread_mutex_lock(&cache.mu);
    /* A drop since the row was read: the row may be stale, do not cache. */
    if (__atomic_load_n(&cache.gen, __ATOMIC_RELAXED) == gen) {
        struct opened_key *twin = cache_find(domain, vault, name, version, sealed, n);
        if (twin) {
            /* Another operation opened it meanwhile: use that one. */
            twin->refs++;
            e->next = dead;
            dead = e;
            e = twin;
        } else {
            e->refs++;
            cache.n++;
            list_push_front(e);
            if (cache.n > KEY_CACHE_MAX)
                cache_unlink(cache.tail, &dead);
        }
    }
    pthread_mutex_unlock(&cache.mu);
    opened_free_chain(dead);
    *out = e;
    return CK_OK;
}

void ck_key_cache_drop(const char *vault, const char *name)
{
    struct opened_key *dead = NULL;
    pthread_mutex_lock(&cache.mu);
    __atomic_add_fetch(&cache.gen, 1, __ATOMIC_RELEASE);
    for (struct opened_key *e = cache.head, *next; e; e = next) {
        next = e->next;
        if (!name || (strcmp(e->vault, vault) == 0 && strcmp(e->name, name) == 0))
            cache_unlink(e, &dead);
    }
    pthread_mutex_unlock(&cache.mu);
    opened_free_chain(dead);
}

size_t ck_key_cache_count(void)
{
    pthread_mutex_lock(&cache.mu);
    size_t n = cache.n;
    pthread_mutex_unlock(&cache.mu);
    return n;
}

/* ---------- operations ---------- */

/* Loads the version for an operation after every check a user can see. */
static ck_err load_for_op(struct ck_vaults *v, const char *vault, const char *name,
                          const char *version, unsigned op, struct opened_key **key,
                          char kid_version[33])
{
    /* Before the row is read: see open_version. */
    uint64_t gen = __atomic_load_n(&cache.gen, __ATOMIC_ACQUIRE);
    struct ck_vault *vlt;
    CK_TRY(ck_key_vault(v, vault, &vlt));
    bool latest = !version || !*version;
    struct ck_stmt *st = NULL;
    ck_err rc = ck_stmt_prepare(
        v->store, &st,
        "SELECT v.version, v.ops, v.enabled, v.nbf, v.exp, v.sealed FROM ck_key k "
        "JOIN ck_key_version v ON v.vault = k.vault AND v.name = k.name "
        "WHERE k.vault = ? AND k.name = ? AND k.deleted = 0 "
        "AND (v.version = ? OR (? = 1 AND v.seq = (SELECT MAX(seq) FROM ck_key_version x "
        "WHERE x.vault = k.vault AND x.name = k.name)))",
        "ttti", vlt->name, name, latest ? "" : version, (int64_t)latest);
    bool row = false;
    if (rc == CK_OK)
        rc = ck_stmt_step(st, &row);
    if (rc == CK_OK && !row)
        rc = ck_key_not_found(name);
    if (rc == CK_OK) {
        int64_t now = ck_now(), nbf = ck_stmt_int(st, 3), exp = ck_stmt_int(st, 4);
        const char *opname = ck_key_op_name((enum ck_key_op)op);
        snprintf(kid_version, 33, "%s", ck_stmt_text(st, 0));
        if (!ck_stmt_int(st, 2))
            rc = forbidden("KeyDisabled", "Operation %s is not allowed on a disabled key (%s).",
                           opname, name);
        else if (nbf && now < nbf)
            rc = forbidden("KeyNotYetValid",
                           "Operation %s is not allowed: the key %s is not valid yet (nbf).",
                           opname, name);
        else if (exp && now >= exp)
            rc = forbidden("KeyExpired",
                           "Operation %s is not allowed: the key %s has expired (exp).", opname,
                           name);
        else if (!((unsigned)ck_stmt_int(st, 1) & op))
            rc = forbidden("KeyOperationForbidden",
                           "Operation %s is not permitted on this key (%s): it is not in the "
                           "key's key_ops.",
                           opname, name);
    }
    if (rc == CK_OK) {
        size_t n;
        const void *sealed = ck_stmt_blob(st, 5, &n);
        rc = open_version(v, gen, vlt->name, name, kid_version, sealed, n, key);
    }
    ck_stmt_finalize(st);
    ck_vault_free(vlt);
    return rc;
}

static size_t max_plaintext(enum ck_rsa_enc enc, size_t k)
{
    size_t overhead = enc == CK_RSA_OAEP ? 42 : enc == CK_RSA_OAEP_256 ? 66 : 11;
    return k > overhead ? k - overhead : 0;
}

ck_err ck_key_crypto(struct ck_vaults *v, const char *vault, const char *name, const char *version,
                     enum ck_key_crypto_op op, enum ck_crypto_alg alg, const uint8_t *in, size_t n,
                     struct ck_buf *out, struct ck_secret *out_secret, char kid_version[33])
{
    static const unsigned key_op[] = {
        [CK_KEY_ENCRYPT] = CK_OP_ENCRYPT, [CK_KEY_DECRYPT] = CK_OP_DECRYPT,
        [CK_KEY_WRAP] = CK_OP_WRAPKEY,    [CK_KEY_UNWRAP] = CK_OP_UNWRAPKEY,
        [CK_KEY_SIGN] = CK_OP_SIGN,
    };
    bool wants_enc = op != CK_KEY_SIGN;
    if (wants_enc != is_encryption(alg))
        return ck_err_set(CK_EINVAL, "the algorithm does not fit the operation %s",
                          ck_key_op_name((enum ck_key_op)key_op[op]));
    struct opened_key *key = NULL;
    CK_TRY(load_for_op(v, vault, name, version, key_op[op], &key, kid_version));
    const struct ck_rsa *rsa = key->rsa;
    size_t k = ck_rsa_bits(rsa) / 8;
    ck_err rc;
    switch (op) {
    case CK_KEY_ENCRYPT:
    case CK_KEY_WRAP:
        if (n == 0 || n > max_plaintext(enc_of(alg), k))
            rc = ck_err_set(CK_EINVAL,
                            "the value is %zu bytes; this key and algorithm take 1 to %zu", n,
                            max_plaintext(enc_of(alg), k));
        else
            rc = ck_rsa_encrypt(rsa, enc_of(alg), NULL, 0, in, n, out);
        break;
    case CK_KEY_DECRYPT:
    case CK_KEY_UNWRAP:
        rc = ck_rsa_decrypt(rsa, enc_of(alg), NULL, 0, in, n, out_secret);
        break;
    case CK_KEY_SIGN:
        if (n != ck_rsa_sig_digest_len(sig_of(alg)))
            rc = ck_err_set(CK_EINVAL, "the digest is %zu bytes; this algorithm takes %zu", n,
                            ck_rsa_sig_digest_len(sig_of(alg)));
        else
            rc = ck_rsa_sign_digest(rsa, sig_of(alg), in, n, out);
        break;
    default:
        rc = ck_err_set(CK_EINTERNAL, "unknown key operation");
    }
    opened_release(key);
    return rc;
}

ck_err ck_key_verify(struct ck_vaults *v, const char *vault, const char *name, const char *version,
                     enum ck_crypto_alg alg, const uint8_t *digest, size_t dn, const uint8_t *sig,
                     size_t sn, bool *valid, char kid_version[33])
{
    if (is_encryption(alg))
        return ck_err_set(CK_EINVAL, "the algorithm does not fit the operation verify");
    if (dn != ck_rsa_sig_digest_len(sig_of(alg)))
        return ck_err_set(CK_EINVAL, "the digest is %zu bytes; this algorithm takes %zu", dn,
                          ck_rsa_sig_digest_len(sig_of(alg)));
    struct opened_key *key = NULL;
    CK_TRY(load_for_op(v, vault, name, version, CK_OP_VERIFY, &key, kid_version));
    ck_err rc = ck_rsa_verify_digest(key->rsa, sig_of(alg), digest, dn, sig, sn, valid);
    opened_release(key);
    return rc;
}
