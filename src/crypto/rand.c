/*
 * rand.c — randomness, SHA-256, HMAC-SHA-256 and HKDF-SHA-256.
 *
 * The symmetric building blocks the rest of ckey derives keys and tokens
 * from. They are one-shot wrappers over OpenSSL's EVP_RAND (via RAND_bytes),
 * EVP_Digest, EVP_MAC and EVP_KDF: no state survives a call, so all of them
 * are safe to call from any thread.
 */
#include "internal.h"

#include <string.h>

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/params.h>
#include <openssl/rand.h>

/* RFC 5869: L <= 255 * HashLen. */
#define CK_HKDF_MAX_OUT (255u * 32u)

ck_err ck_rand_bytes(void *p, size_t n)
{
    uint8_t *q = p;
    while (n > 0) {
        int chunk = n > (1u << 30) ? (1 << 30) : (int)n;
        if (RAND_bytes(q, chunk) != 1)
            return ck_crypto_fail(CK_ECRYPTO, "random number generator failed");
        q += chunk;
        n -= (size_t)chunk;
    }
    return CK_OK;
}

ck_err ck_sha256(const void *p, size_t n, uint8_t out[32])
{
    static const uint8_t empty[1];
    unsigned int len = 0;
    if (EVP_Digest(n ? p : empty, n, out, &len, EVP_sha256(), NULL) != 1 || len != 32)
        return ck_crypto_fail(CK_ECRYPTO, "SHA-256 failed");
    return CK_OK;
}

ck_err ck_hmac_sha256(const uint8_t *key, size_t keylen, const void *p, size_t n, uint8_t out[32])
{
    /* OpenSSL treats a NULL key as "no key"; an empty HMAC key is legal. */
    static const uint8_t empty[1];
    size_t len = 0;
    if (!EVP_Q_mac(NULL, "HMAC", NULL, "SHA256", NULL, keylen ? key : empty, keylen, n ? p : empty,
                   n, out, 32, &len) ||
        len != 32)
        return ck_crypto_fail(CK_ECRYPTO, "HMAC-SHA-256 failed");
    return CK_OK;
}

ck_err ck_hkdf_sha256(const uint8_t *salt, size_t saltlen, const uint8_t *ikm, size_t ikmlen,
                      const uint8_t *info, size_t infolen, uint8_t *out, size_t outlen)
{
    static uint8_t empty[1];
    if (outlen == 0 || outlen > CK_HKDF_MAX_OUT)
        return ck_err_set(CK_EINVAL, "HKDF-SHA-256 output must be 1..%u bytes, not %zu",
                          CK_HKDF_MAX_OUT, outlen);

    EVP_KDF *kdf = EVP_KDF_fetch(NULL, "HKDF", NULL);
    EVP_KDF_CTX *ctx = kdf ? EVP_KDF_CTX_new(kdf) : NULL;
    EVP_KDF_free(kdf);
    if (!ctx)
        return ck_crypto_fail(CK_ECRYPTO, "HKDF is unavailable");

    /* An empty salt means HashLen zero bytes (RFC 5869 §2.2), which is
     * what OpenSSL does when the salt parameter is empty. */
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, (char *)"SHA256", 0),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, ikmlen ? (void *)ikm : empty, ikmlen),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, saltlen ? (void *)salt : empty,
                                          saltlen),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, infolen ? (void *)info : empty,
                                          infolen),
        OSSL_PARAM_construct_end(),
    };
    ck_err rc = CK_OK;
    if (EVP_KDF_derive(ctx, out, outlen, params) != 1)
        rc = ck_crypto_fail(CK_ECRYPTO, "HKDF-SHA-256 failed");
    EVP_KDF_CTX_free(ctx); /* wipes the copies of ikm and salt it holds */
    return rc;
}
