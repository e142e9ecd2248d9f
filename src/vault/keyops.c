/*
 * keyops.c — the cryptographic operations on a stored key: encrypt,
 * decrypt, wrap, unwrap, sign and verify.
 *
 * Every operation checks, in the order a user can act on them: the key
 * exists and is not soft-deleted, it is enabled, it is inside its nbf/exp
 * window, and the operation is in its key_ops. Only then is the private key
 * opened, used once and freed.
 */
#include "vault/keys_internal.h"

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

/* Loads the version for an operation after every check a user can see. */
static ck_err load_for_op(struct ck_vaults *v, const char *vault, const char *name,
                          const char *version, unsigned op, struct ck_rsa **rsa,
                          char kid_version[33])
{
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
        rc = ck_key_open_private(v, vlt->name, name, kid_version, sealed, n, rsa);
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
    struct ck_rsa *rsa = NULL;
    CK_TRY(load_for_op(v, vault, name, version, key_op[op], &rsa, kid_version));
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
    ck_rsa_free(rsa);
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
    struct ck_rsa *rsa = NULL;
    CK_TRY(load_for_op(v, vault, name, version, CK_OP_VERIFY, &rsa, kid_version));
    ck_err rc = ck_rsa_verify_digest(rsa, sig_of(alg), digest, dn, sig, sn, valid);
    ck_rsa_free(rsa);
    return rc;
}
