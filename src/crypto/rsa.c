/*
 * rsa.c — RSA keys: generation, JWK/DER/PEM import and export, OAEP and
 * PKCS#1 v1.5 encryption, PKCS#1 v1.5 and PSS signatures over digests.
 *
 * A struct ck_rsa wraps one EVP_PKEY. Every operation builds its own
 * EVP_PKEY_CTX, so a key can be shared read-only between threads.
 *
 * Private keys are checked before use: a key whose d does not match n and e
 * would otherwise sign and decrypt through the CRT values and give wrong or
 * fault-revealing results. Two levels:
 *  - JWK import (foreign material, once per key) runs EVP_PKEY_pairwise_check,
 *    OpenSSL's full check including primality of p and q. OpenSSL 3.0's
 *    default provider accepts d reduced modulo phi(n) as well as lambda(n)
 *    and any odd e, so keys produced by other toolkits import fine.
 *  - PKCS#8 parsing is how sealed keys come back from the store, on every
 *    use; the full check costs ~45 ms for RSA-2048 and ~320 ms for RSA-4096
 *    there, so it gets the arithmetic check alone (n = pq, ed = 1 modulo p-1
 *    and q-1, CRT values match), which takes microseconds and still refuses
 *    any inconsistent key.
 *
 * Decryption never says why it failed: a wrong length, a bad padding and a
 * bad OAEP label all give CK_EINTEGRITY "decryption failed". Debian's
 * OpenSSL 3.0 has no implicit rejection for PKCS#1 v1.5, so RSA1_5 remains
 * a legacy algorithm whose safety depends on callers not exposing timing;
 * the uniform error is what this layer can promise.
 */
#include "internal.h"

#include <string.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/encoder.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

/* Imported keys outside this range are refused: below it RSA is broken, above
 * it a single operation costs enough CPU to be a denial of service. */
#define CK_RSA_MIN_BITS 1024
#define CK_RSA_MAX_BITS 16384

static const char decrypt_failed[] = "decryption failed";

struct ck_rsa {
    EVP_PKEY *pkey;
    bool priv;
};

/* The arithmetic relations between the components of a two-prime private
 * key (RFC 8017 §3.2), without the primality tests of the full check. */
static bool rsa_components_consistent(EVP_PKEY *pkey)
{
    static const char *const names[] = {
        OSSL_PKEY_PARAM_RSA_N,         OSSL_PKEY_PARAM_RSA_E,
        OSSL_PKEY_PARAM_RSA_D,         OSSL_PKEY_PARAM_RSA_FACTOR1,
        OSSL_PKEY_PARAM_RSA_FACTOR2,   OSSL_PKEY_PARAM_RSA_EXPONENT1,
        OSSL_PKEY_PARAM_RSA_EXPONENT2, OSSL_PKEY_PARAM_RSA_COEFFICIENT1,
    };
    enum { N, E, D, P, Q, DP, DQ, QI, COUNT };
    BIGNUM *v[COUNT] = {0};
    BN_CTX *bc = BN_CTX_secure_new();
    BIGNUM *t = BN_secure_new(), *p1 = BN_secure_new(), *q1 = BN_secure_new();
    bool ok = bc && t && p1 && q1;
    for (int i = 0; i < COUNT && ok; i++)
        ok = EVP_PKEY_get_bn_param(pkey, names[i], &v[i]) == 1;
    const BIGNUM *one = BN_value_one();
    ok = ok && BN_cmp(v[P], one) > 0 && BN_cmp(v[Q], one) > 0 && BN_sub(p1, v[P], one) &&
         BN_sub(q1, v[Q], one);
    /* n = pq, which also refuses multi-prime keys */
    ok = ok && BN_mul(t, v[P], v[Q], bc) && BN_cmp(t, v[N]) == 0;
    /* ed = 1 modulo p-1 and q-1: holds for d taken mod phi(n) or lambda(n) */
    ok = ok && BN_mod_mul(t, v[D], v[E], p1, bc) && BN_is_one(t);
    ok = ok && BN_mod_mul(t, v[D], v[E], q1, bc) && BN_is_one(t);
    /* dp = d mod (p-1), dq = d mod (q-1), qi q = 1 mod p */
    ok = ok && BN_mod(t, v[D], p1, bc) && BN_cmp(t, v[DP]) == 0;
    ok = ok && BN_mod(t, v[D], q1, bc) && BN_cmp(t, v[DQ]) == 0;
    ok = ok && BN_mod_mul(t, v[QI], v[Q], v[P], bc) && BN_is_one(t);
    for (int i = 0; i < COUNT; i++)
        BN_clear_free(v[i]);
    BN_clear_free(t);
    BN_clear_free(p1);
    BN_clear_free(q1);
    BN_CTX_free(bc);
    return ok;
}

enum rsa_check { RSA_CHECK_NONE, RSA_CHECK_ARITHMETIC, RSA_CHECK_FULL };

static bool rsa_check(EVP_PKEY *pkey, enum rsa_check check)
{
    if (check == RSA_CHECK_ARITHMETIC)
        return rsa_components_consistent(pkey);
    if (check == RSA_CHECK_FULL) {
        EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL);
        bool ok = ctx && EVP_PKEY_pairwise_check(ctx) == 1;
        EVP_PKEY_CTX_free(ctx);
        return ok;
    }
    return true;
}

/* Takes ownership of pkey in every case. check is RSA_CHECK_NONE for public
 * keys. */
static ck_err rsa_wrap(EVP_PKEY *pkey, enum rsa_check check, struct ck_rsa **out)
{
    ERR_clear_error(); /* decoders may leave notes behind even on success */
    if (!EVP_PKEY_is_a(pkey, "RSA")) {
        EVP_PKEY_free(pkey);
        return ck_err_set(CK_EINVAL, "not an RSA key");
    }
    int bits = EVP_PKEY_get_bits(pkey);
    if (bits < CK_RSA_MIN_BITS || bits > CK_RSA_MAX_BITS) {
        EVP_PKEY_free(pkey);
        return ck_err_set(CK_EINVAL, "RSA key size %d bits is outside %d..%d", bits,
                          CK_RSA_MIN_BITS, CK_RSA_MAX_BITS);
    }
    if (!rsa_check(pkey, check)) {
        EVP_PKEY_free(pkey);
        return ck_crypto_fail(CK_EINVAL, "RSA private key is inconsistent");
    }
    struct ck_rsa *k = ck_xcalloc(1, sizeof *k);
    k->pkey = pkey;
    k->priv = check != RSA_CHECK_NONE;
    *out = k;
    return CK_OK;
}

ck_err ck_rsa_generate(unsigned bits, struct ck_rsa **out)
{
    if (bits != 2048 && bits != 3072 && bits != 4096)
        return ck_err_set(CK_EINVAL, "RSA key size must be 2048, 3072 or 4096, not %u", bits);

    EVP_PKEY *pkey = NULL;
    BIGNUM *e = BN_new();
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL);
    if (!e || !ctx || !BN_set_word(e, RSA_F4) || EVP_PKEY_keygen_init(ctx) != 1 ||
        EVP_PKEY_CTX_set_rsa_keygen_bits(ctx, (int)bits) != 1 ||
        EVP_PKEY_CTX_set1_rsa_keygen_pubexp(ctx, e) != 1 || EVP_PKEY_generate(ctx, &pkey) != 1) {
        BN_free(e);
        EVP_PKEY_CTX_free(ctx);
        return ck_crypto_fail(CK_ECRYPTO, "RSA key generation failed");
    }
    BN_free(e);
    EVP_PKEY_CTX_free(ctx);
    struct ck_rsa *k = ck_xcalloc(1, sizeof *k);
    k->pkey = pkey;
    k->priv = true;
    *out = k;
    return CK_OK;
}

void ck_rsa_free(struct ck_rsa *k)
{
    if (!k)
        return;
    EVP_PKEY_free(k->pkey);
    free(k);
}

unsigned ck_rsa_bits(const struct ck_rsa *k)
{
    return (unsigned)EVP_PKEY_get_bits(k->pkey);
}

bool ck_rsa_has_private(const struct ck_rsa *k)
{
    return k->priv;
}

static size_t rsa_size(const struct ck_rsa *k)
{
    return (size_t)EVP_PKEY_get_size(k->pkey);
}

/* ---------- JWK import ---------- */

static bool present(const struct ck_buf *b)
{
    return b->p && b->n > 0;
}

/* Private components go into secure BIGNUMs, so that OSSL_PARAM_BLD puts
 * them in memory that is cleansed when the parameters are freed. */
static BIGNUM *bn_from(const struct ck_buf *b, bool secret)
{
    BIGNUM *bn = secret ? BN_secure_new() : BN_new();
    if (bn && !BN_bin2bn(b->p, (int)b->n, bn)) {
        BN_clear_free(bn);
        return NULL;
    }
    return bn;
}

/* The CRT values a JWK may omit: dp = d mod (p-1), dq = d mod (q-1),
 * qi = q^-1 mod p. On failure the caller frees whatever was set. */
static bool crt_compute(const BIGNUM *d, const BIGNUM *p, const BIGNUM *q, BIGNUM **dp, BIGNUM **dq,
                        BIGNUM **qi)
{
    BN_CTX *bc = BN_CTX_secure_new();
    BIGNUM *p1 = BN_secure_new(), *q1 = BN_secure_new();
    bool ok = bc && p1 && q1 && BN_sub(p1, p, BN_value_one()) && BN_sub(q1, q, BN_value_one());
    if (ok && !*dp)
        ok = (*dp = BN_secure_new()) && BN_mod(*dp, d, p1, bc);
    if (ok && !*dq)
        ok = (*dq = BN_secure_new()) && BN_mod(*dq, d, q1, bc);
    if (ok && !*qi)
        ok = (*qi = BN_secure_new()) && BN_mod_inverse(*qi, q, p, bc);
    BN_clear_free(p1);
    BN_clear_free(q1);
    BN_CTX_free(bc);
    return ok;
}

ck_err ck_rsa_from_jwk(const struct ck_rsa_jwk *j, struct ck_rsa **out)
{
    if (!present(&j->n) || !present(&j->e))
        return ck_err_set(CK_EINVAL, "RSA key needs n and e");
    bool priv = present(&j->d) || present(&j->p) || present(&j->q) || present(&j->dp) ||
                present(&j->dq) || present(&j->qi);
    if (priv && !(present(&j->d) && present(&j->p) && present(&j->q)))
        return ck_err_set(CK_EINVAL, "RSA private key needs d, p and q");
    const struct ck_buf *all[] = {&j->n, &j->e, &j->d, &j->p, &j->q, &j->dp, &j->dq, &j->qi};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        if (all[i]->n > CK_RSA_MAX_BITS / 8 + 1)
            return ck_err_set(CK_EINVAL, "RSA key component too large");

    ck_err rc = CK_OK;
    BIGNUM *n = bn_from(&j->n, false), *e = bn_from(&j->e, false);
    BIGNUM *d = NULL, *p = NULL, *q = NULL, *dp = NULL, *dq = NULL, *qi = NULL;
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    OSSL_PARAM *params = NULL;
    EVP_PKEY_CTX *ctx = NULL;
    EVP_PKEY *pkey = NULL;

    if (n && e && (!BN_is_odd(n) || !BN_is_odd(e) || BN_is_one(e))) {
        rc = ck_err_set(CK_EINVAL, "invalid RSA key: n and e must be odd and e > 1");
        goto out;
    }
    bool ok = n && e && bld && OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, n) &&
              OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, e);
    if (ok && priv) {
        d = bn_from(&j->d, true);
        p = bn_from(&j->p, true);
        q = bn_from(&j->q, true);
        if (present(&j->dp))
            dp = bn_from(&j->dp, true);
        if (present(&j->dq))
            dq = bn_from(&j->dq, true);
        if (present(&j->qi))
            qi = bn_from(&j->qi, true);
        ok = d && p && q && (dp || !present(&j->dp)) && (dq || !present(&j->dq)) &&
             (qi || !present(&j->qi));
        if (ok && !crt_compute(d, p, q, &dp, &dq, &qi)) {
            /* e.g. q has no inverse mod p: not a key */
            rc = ck_crypto_fail(CK_EINVAL, "RSA private key is inconsistent");
            goto out;
        }
        ok = ok && OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_D, d) &&
             OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_FACTOR1, p) &&
             OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_FACTOR2, q) &&
             OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_EXPONENT1, dp) &&
             OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_EXPONENT2, dq) &&
             OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_COEFFICIENT1, qi);
    }
    if (!ok || !(params = OSSL_PARAM_BLD_to_param(bld))) {
        rc = ck_crypto_fail(CK_ECRYPTO, "cannot assemble RSA key parameters");
        goto out;
    }
    ctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL);
    if (!ctx || EVP_PKEY_fromdata_init(ctx) != 1 ||
        EVP_PKEY_fromdata(ctx, &pkey, priv ? EVP_PKEY_KEYPAIR : EVP_PKEY_PUBLIC_KEY, params) != 1) {
        rc = ck_crypto_fail(CK_EINVAL, "invalid RSA key");
        goto out;
    }
    rc = rsa_wrap(pkey, priv ? RSA_CHECK_FULL : RSA_CHECK_NONE, out);
out:
    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(bld);
    EVP_PKEY_CTX_free(ctx);
    BN_free(n);
    BN_free(e);
    BN_clear_free(d);
    BN_clear_free(p);
    BN_clear_free(q);
    BN_clear_free(dp);
    BN_clear_free(dq);
    BN_clear_free(qi);
    return rc;
}

/* ---------- export ---------- */

static ck_err bn_param_to_buf(const struct ck_rsa *k, const char *name, struct ck_buf *out)
{
    BIGNUM *bn = NULL;
    if (EVP_PKEY_get_bn_param(k->pkey, name, &bn) != 1)
        return ck_crypto_fail(CK_ECRYPTO, "cannot read RSA public component");
    struct ck_buf b = {0};
    ck_err rc = ck_buf_alloc(&b, (size_t)BN_num_bytes(bn));
    if (rc == CK_OK)
        BN_bn2bin(bn, b.p);
    BN_free(bn);
    if (rc == CK_OK)
        *out = b;
    return rc;
}

ck_err ck_rsa_public_ne(const struct ck_rsa *k, struct ck_buf *n, struct ck_buf *e)
{
    struct ck_buf nb = {0}, eb = {0};
    CK_TRY(bn_param_to_buf(k, OSSL_PKEY_PARAM_RSA_N, &nb));
    ck_err rc = bn_param_to_buf(k, OSSL_PKEY_PARAM_RSA_E, &eb);
    if (rc != CK_OK) {
        ck_buf_free(&nb);
        return rc;
    }
    *n = nb;
    *e = eb;
    return CK_OK;
}

ck_err ck_rsa_private_d(const struct ck_rsa *k, struct ck_secret *d)
{
    if (!k->priv)
        return ck_err_set(CK_EINVAL, "RSA key has no private part");
    BIGNUM *bn = NULL;
    if (EVP_PKEY_get_bn_param(k->pkey, OSSL_PKEY_PARAM_RSA_D, &bn) != 1)
        return ck_crypto_fail(CK_ECRYPTO, "cannot read RSA private exponent");
    struct ck_secret s = {0};
    ck_err rc = ck_secret_alloc(&s, (size_t)BN_num_bytes(bn));
    if (rc == CK_OK) {
        BN_bn2bin(bn, s.p);
        *d = s;
    }
    BN_clear_free(bn);
    return rc;
}

ck_err ck_rsa_public_pem(const struct ck_rsa *k, char **pem)
{
    BIO *b = BIO_new(BIO_s_mem());
    if (!b || PEM_write_bio_PUBKEY(b, k->pkey) != 1) {
        BIO_free(b);
        return ck_crypto_fail(CK_ECRYPTO, "cannot encode RSA public key");
    }
    ck_err rc = ck_crypto_bio_to_string(b, pem);
    BIO_free(b);
    return rc;
}

ck_err ck_rsa_private_der(const struct ck_rsa *k, struct ck_secret *der)
{
    if (!k->priv)
        return ck_err_set(CK_EINVAL, "RSA key has no private part");
    BIO *b = BIO_new(BIO_s_secmem());
    OSSL_ENCODER_CTX *enc =
        OSSL_ENCODER_CTX_new_for_pkey(k->pkey, EVP_PKEY_KEYPAIR, "DER", "PrivateKeyInfo", NULL);
    ck_err rc;
    if (!b || !enc || OSSL_ENCODER_CTX_get_num_encoders(enc) == 0 ||
        OSSL_ENCODER_to_bio(enc, b) != 1)
        rc = ck_crypto_fail(CK_ECRYPTO, "cannot encode RSA private key");
    else
        rc = ck_crypto_bio_to_secret(b, der);
    OSSL_ENCODER_CTX_free(enc);
    BIO_free(b);
    return rc;
}

ck_err ck_rsa_from_der(const uint8_t *der, size_t n, struct ck_rsa **out)
{
    if (n == 0 || n > 65536)
        return ck_err_set(CK_EINVAL, "RSA key DER has an invalid length (%zu bytes)", n);

    /* PKCS#8 first; the whole input must be one structure. */
    const unsigned char *p = der;
    PKCS8_PRIV_KEY_INFO *p8 = d2i_PKCS8_PRIV_KEY_INFO(NULL, &p, (long)n);
    if (p8) {
        EVP_PKEY *pkey = p == der + n ? EVP_PKCS82PKEY(p8) : NULL;
        PKCS8_PRIV_KEY_INFO_free(p8); /* cleanses its copy of the key */
        if (!pkey)
            return ck_crypto_fail(CK_EINVAL, "invalid PKCS#8 RSA private key");
        return rsa_wrap(pkey, RSA_CHECK_ARITHMETIC, out);
    }
    ERR_clear_error();
    p = der;
    EVP_PKEY *pkey = d2i_PUBKEY(NULL, &p, (long)n);
    if (!pkey || p != der + n) {
        EVP_PKEY_free(pkey);
        return ck_crypto_fail(CK_EINVAL, "not a PKCS#8 or SubjectPublicKeyInfo RSA key");
    }
    return rsa_wrap(pkey, RSA_CHECK_NONE, out);
}

/* ---------- encryption ---------- */

static const EVP_MD *enc_md(enum ck_rsa_enc alg)
{
    return alg == CK_RSA_OAEP ? EVP_sha1() : EVP_sha256();
}

static bool enc_alg_valid(enum ck_rsa_enc alg)
{
    return alg == CK_RSA_OAEP || alg == CK_RSA_OAEP_256 || alg == CK_RSA1_5;
}

/* Largest plaintext for this key and padding (RFC 8017 §7.1.1, §7.2.1). */
static size_t enc_max_plaintext(const struct ck_rsa *k, enum ck_rsa_enc alg)
{
    size_t kb = rsa_size(k);
    size_t overhead = alg == CK_RSA1_5 ? 11 : 2 * (size_t)EVP_MD_get_size(enc_md(alg)) + 2;
    return kb > overhead ? kb - overhead : 0;
}

static bool enc_setup(EVP_PKEY_CTX *ctx, enum ck_rsa_enc alg, const uint8_t *label, size_t labellen)
{
    if (alg == CK_RSA1_5)
        return EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PADDING) == 1;
    if (EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_OAEP_PADDING) != 1 ||
        EVP_PKEY_CTX_set_rsa_oaep_md(ctx, enc_md(alg)) != 1 ||
        EVP_PKEY_CTX_set_rsa_mgf1_md(ctx, enc_md(alg)) != 1)
        return false;
    if (labellen == 0)
        return true;
    void *copy = OPENSSL_memdup(label, labellen);
    if (!copy)
        return false;
    if (EVP_PKEY_CTX_set0_rsa_oaep_label(ctx, copy, (int)labellen) != 1) {
        OPENSSL_free(copy);
        return false;
    }
    return true;
}

static ck_err enc_check_args(enum ck_rsa_enc alg, const uint8_t *label, size_t labellen)
{
    if (!enc_alg_valid(alg))
        return ck_err_set(CK_EINVAL, "unknown RSA encryption algorithm");
    if (labellen > 0 && alg == CK_RSA1_5)
        return ck_err_set(CK_EINVAL, "RSA1_5 takes no label");
    if (labellen > 0 && !label)
        return ck_err_set(CK_EINVAL, "label pointer is NULL");
    if (labellen > 65536)
        return ck_err_set(CK_EINVAL, "OAEP label too long");
    return CK_OK;
}

ck_err ck_rsa_encrypt(const struct ck_rsa *k, enum ck_rsa_enc alg, const uint8_t *label,
                      size_t labellen, const uint8_t *in, size_t n, struct ck_buf *out)
{
    static const uint8_t empty[1];
    CK_TRY(enc_check_args(alg, label, labellen));
    if (n > enc_max_plaintext(k, alg))
        return ck_err_set(CK_EINVAL, "plaintext of %zu bytes is too long for this key (max %zu)", n,
                          enc_max_plaintext(k, alg));

    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_pkey(NULL, k->pkey, NULL);
    size_t len = 0;
    struct ck_buf b = {0};
    ck_err rc = CK_OK;
    if (!ctx || EVP_PKEY_encrypt_init(ctx) != 1 || !enc_setup(ctx, alg, label, labellen) ||
        EVP_PKEY_encrypt(ctx, NULL, &len, n ? in : empty, n) != 1) {
        rc = ck_crypto_fail(CK_ECRYPTO, "RSA encryption failed");
        goto out;
    }
    CK_GUARD(ck_buf_alloc(&b, len));
    if (EVP_PKEY_encrypt(ctx, b.p, &len, n ? in : empty, n) != 1) {
        ck_buf_free(&b);
        rc = ck_crypto_fail(CK_ECRYPTO, "RSA encryption failed");
        goto out;
    }
    b.n = len;
    *out = b;
out:
    EVP_PKEY_CTX_free(ctx);
    return rc;
}

ck_err ck_rsa_decrypt(const struct ck_rsa *k, enum ck_rsa_enc alg, const uint8_t *label,
                      size_t labellen, const uint8_t *in, size_t n, struct ck_secret *out)
{
    CK_TRY(enc_check_args(alg, label, labellen));
    if (!k->priv)
        return ck_err_set(CK_EINVAL, "RSA key has no private part");
    /* OpenSSL would accept a ciphertext shorter than the modulus (as an
     * integer with leading zeros dropped); RFC 8017 does not. */
    size_t kb = rsa_size(k);
    if (n != kb)
        return ck_crypto_integrity(decrypt_failed);

    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_pkey(NULL, k->pkey, NULL);
    if (!ctx || EVP_PKEY_decrypt_init(ctx) != 1 || !enc_setup(ctx, alg, label, labellen)) {
        EVP_PKEY_CTX_free(ctx);
        return ck_crypto_fail(CK_ECRYPTO, "RSA decryption setup failed");
    }
    struct ck_secret s = {0};
    ck_err rc = ck_secret_alloc(&s, kb);
    if (rc == CK_OK) {
        size_t len = s.n;
        if (EVP_PKEY_decrypt(ctx, s.p, &len, in, n) == 1 && len <= kb) {
            s.n = len; /* the rest of the mapping stays zero, is wiped on free */
            *out = s;
        } else {
            ck_secret_free(&s);
            rc = ck_crypto_integrity(decrypt_failed);
        }
    }
    EVP_PKEY_CTX_free(ctx);
    return rc;
}

/* ---------- signatures ---------- */

static const EVP_MD *sig_md(enum ck_rsa_sig alg)
{
    switch (alg) {
    case CK_RS256:
    case CK_PS256:
        return EVP_sha256();
    case CK_RS384:
    case CK_PS384:
        return EVP_sha384();
    case CK_RS512:
    case CK_PS512:
        return EVP_sha512();
    }
    return NULL;
}

size_t ck_rsa_sig_digest_len(enum ck_rsa_sig alg)
{
    const EVP_MD *md = sig_md(alg);
    return md ? (size_t)EVP_MD_get_size(md) : 0;
}

static bool sig_is_pss(enum ck_rsa_sig alg)
{
    return alg == CK_PS256 || alg == CK_PS384 || alg == CK_PS512;
}

static bool sig_setup(EVP_PKEY_CTX *ctx, enum ck_rsa_sig alg)
{
    const EVP_MD *md = sig_md(alg);
    if (!sig_is_pss(alg))
        return EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PADDING) == 1 &&
               EVP_PKEY_CTX_set_signature_md(ctx, md) == 1;
    return EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PSS_PADDING) == 1 &&
           EVP_PKEY_CTX_set_signature_md(ctx, md) == 1 &&
           EVP_PKEY_CTX_set_rsa_mgf1_md(ctx, md) == 1 &&
           EVP_PKEY_CTX_set_rsa_pss_saltlen(ctx, RSA_PSS_SALTLEN_DIGEST) == 1;
}

static ck_err sig_check_args(enum ck_rsa_sig alg, const uint8_t *digest, size_t dn)
{
    size_t want = ck_rsa_sig_digest_len(alg);
    if (want == 0)
        return ck_err_set(CK_EINVAL, "unknown RSA signature algorithm");
    if (dn != want || !digest)
        return ck_err_set(CK_EINVAL, "digest must be %zu bytes for this algorithm, not %zu", want,
                          dn);
    return CK_OK;
}

ck_err ck_rsa_sign_digest(const struct ck_rsa *k, enum ck_rsa_sig alg, const uint8_t *digest,
                          size_t dn, struct ck_buf *sig)
{
    CK_TRY(sig_check_args(alg, digest, dn));
    if (!k->priv)
        return ck_err_set(CK_EINVAL, "RSA key has no private part");

    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_pkey(NULL, k->pkey, NULL);
    size_t len = 0;
    struct ck_buf b = {0};
    ck_err rc = CK_OK;
    if (!ctx || EVP_PKEY_sign_init(ctx) != 1 || !sig_setup(ctx, alg) ||
        EVP_PKEY_sign(ctx, NULL, &len, digest, dn) != 1) {
        rc = ck_crypto_fail(CK_ECRYPTO, "RSA signing failed");
        goto out;
    }
    CK_GUARD(ck_buf_alloc(&b, len));
    if (EVP_PKEY_sign(ctx, b.p, &len, digest, dn) != 1) {
        ck_buf_free(&b);
        rc = ck_crypto_fail(CK_ECRYPTO, "RSA signing failed");
        goto out;
    }
    b.n = len;
    *sig = b;
out:
    EVP_PKEY_CTX_free(ctx);
    return rc;
}

ck_err ck_rsa_verify_digest(const struct ck_rsa *k, enum ck_rsa_sig alg, const uint8_t *digest,
                            size_t dn, const uint8_t *sig, size_t sn, bool *valid)
{
    *valid = false;
    CK_TRY(sig_check_args(alg, digest, dn));
    /* A signature is exactly as long as the modulus (RFC 8017 §8.1.2, §8.2.2). */
    if (!sig || sn != rsa_size(k))
        return CK_OK;

    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_pkey(NULL, k->pkey, NULL);
    if (!ctx || EVP_PKEY_verify_init(ctx) != 1 || !sig_setup(ctx, alg)) {
        EVP_PKEY_CTX_free(ctx);
        return ck_crypto_fail(CK_ECRYPTO, "RSA verification setup failed");
    }
    *valid = EVP_PKEY_verify(ctx, sig, sn, digest, dn) == 1;
    ERR_clear_error(); /* a bad signature leaves entries behind */
    EVP_PKEY_CTX_free(ctx);
    return CK_OK;
}
