/*
 * aes.c — AES key wrap (RFC 3394 KW, RFC 5649 KWP), AES-GCM, and the sealed
 * box every stored secret lives in.
 *
 * KW/KWP run on OpenSSL's "id-aesNNN-wrap[-pad]" ciphers; GCM on
 * "AES-NNN-GCM". Each cipher is fetched from the default library context
 * once and kept for the life of the process: a fetched EVP_CIPHER is
 * read-only and may be shared, so any thread may call anything here, and
 * no call pays for a provider lookup (bench: files roll, mail read).
 *
 * Unwrap and GCM decryption fail with CK_EINTEGRITY and one fixed message
 * whatever went wrong (length, integrity check value, padding, tag), so
 * that no caller can turn them into an oracle. Partial plaintext that
 * OpenSSL wrote before the check failed is wiped.
 *
 * OpenSSL bounds GCM nonces at 128 bytes; longer ones are refused with
 * CK_EINVAL rather than silently truncated.
 *
 * Sealed box: 0x01 || nonce(12, random) || ciphertext || tag(16), AES-256-GCM
 * with the caller's aad bound. The version byte lets a future format be
 * recognised; anything else is rejected as tampering.
 */
#include "internal.h"

#include <pthread.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#define CK_GCM_MAX_IV 128 /* OpenSSL's GCM_IV_MAX_SIZE */
#define CK_SEAL_VERSION 0x01
#define CK_SEAL_OVERHEAD (1 + CK_GCM_IV_LEN + CK_GCM_TAG_LEN)

static const char unwrap_failed[] = "key unwrap failed";
static const char decrypt_failed[] = "decryption failed";

static bool aes_keylen_ok(size_t n)
{
    return n == 16 || n == 24 || n == 32;
}

/* ---------- fetched ciphers ---------- */

enum { KW128, KW192, KW256, KWP128, KWP192, KWP256, GCM128, GCM192, GCM256, NCIPHERS };

static const char *const cipher_names[NCIPHERS] = {
    "id-aes128-wrap",     "id-aes192-wrap",     "id-aes256-wrap",
    "id-aes128-wrap-pad", "id-aes192-wrap-pad", "id-aes256-wrap-pad",
    "AES-128-GCM",        "AES-192-GCM",        "AES-256-GCM",
};

static EVP_CIPHER *ciphers[NCIPHERS];
static pthread_once_t ciphers_once = PTHREAD_ONCE_INIT;

static void fetch_ciphers(void)
{
    for (int i = 0; i < NCIPHERS; i++)
        ciphers[i] = EVP_CIPHER_fetch(NULL, cipher_names[i], NULL);
}

/* The cipher of family base (KW128, KWP128 or GCM128) for a key of keylen
 * bytes (16, 24 or 32), or NULL when OpenSSL does not provide it. */
static const EVP_CIPHER *cipher(int base, size_t keylen)
{
    pthread_once(&ciphers_once, fetch_ciphers);
    return ciphers[base + (keylen == 16 ? 0 : keylen == 24 ? 1 : 2)];
}

/* ---------- key wrap ---------- */

/* Runs one wrap or unwrap over the whole input; out must hold n + 16 bytes
 * (EVP assumes room for a block beyond the input). Returns false on any
 * failure, leaving the OpenSSL error queue for the caller to clear. */
static bool kw_run(const uint8_t *kek, size_t keklen, bool pad, bool enc, const uint8_t *in,
                   size_t n, uint8_t *out, size_t *outlen)
{
    const EVP_CIPHER *c = cipher(pad ? KWP128 : KW128, keklen);
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    int l1 = 0, l2 = 0;
    bool ok = c && ctx;
    if (ok) {
        EVP_CIPHER_CTX_set_flags(ctx, EVP_CIPHER_CTX_FLAG_WRAP_ALLOW);
        ok = EVP_CipherInit_ex2(ctx, c, kek, NULL, enc ? 1 : 0, NULL) == 1 &&
             EVP_CipherUpdate(ctx, out, &l1, in, (int)n) == 1 && l1 >= 0 &&
             EVP_CipherFinal_ex(ctx, out + l1, &l2) == 1 && l2 >= 0;
    }
    EVP_CIPHER_CTX_free(ctx); /* cleanses the key schedule */
    *outlen = ok ? (size_t)l1 + (size_t)l2 : 0;
    return ok;
}

static ck_err kw_wrap(const uint8_t *kek, size_t keklen, bool pad, const uint8_t *in, size_t n,
                      struct ck_buf *out)
{
    if (!aes_keylen_ok(keklen))
        return ck_err_set(CK_EINVAL, "key-encryption key must be 16, 24 or 32 bytes, not %zu",
                          keklen);
    if (n > CK_CRYPTO_MAX_LEN)
        return ck_err_set(CK_ETOOBIG, "key to wrap is too large");
    if (!pad && (n < 16 || n % 8 != 0))
        return ck_err_set(CK_EINVAL, "AES-KW input must be 16+ bytes, a multiple of 8 (got %zu)",
                          n);
    if (pad && n == 0)
        return ck_err_set(CK_EINVAL, "AES-KWP input must not be empty");

    struct ck_buf b = {0};
    CK_TRY(ck_buf_alloc(&b, n + 16));
    size_t len = 0;
    if (!kw_run(kek, keklen, pad, true, in, n, b.p, &len) || len > n + 16) {
        ck_buf_free(&b);
        return ck_crypto_fail(CK_ECRYPTO, pad ? "AES-KWP wrap failed" : "AES-KW wrap failed");
    }
    b.n = len;
    *out = b;
    return CK_OK;
}

static ck_err kw_unwrap(const uint8_t *kek, size_t keklen, bool pad, const uint8_t *in, size_t n,
                        struct ck_secret *out)
{
    if (!aes_keylen_ok(keklen))
        return ck_err_set(CK_EINVAL, "key-encryption key must be 16, 24 or 32 bytes, not %zu",
                          keklen);
    /* KW output is 24+ bytes (16+ wrapped), KWP 16+; both multiples of 8. */
    if (n > CK_CRYPTO_MAX_LEN || n % 8 != 0 || n < (pad ? 16u : 24u))
        return ck_crypto_integrity(unwrap_failed);

    struct ck_secret s = {0};
    CK_TRY(ck_secret_alloc(&s, n + 16));
    size_t len = 0;
    if (!kw_run(kek, keklen, pad, false, in, n, s.p, &len) || len > n - 8 ||
        (!pad && len != n - 8)) {
        ck_secret_free(&s);
        return ck_crypto_integrity(unwrap_failed);
    }
    s.n = len;
    *out = s;
    return CK_OK;
}

ck_err ck_aes_kw_wrap(const uint8_t *kek, size_t keklen, const uint8_t *in, size_t n,
                      struct ck_buf *out)
{
    return kw_wrap(kek, keklen, false, in, n, out);
}

ck_err ck_aes_kw_unwrap(const uint8_t *kek, size_t keklen, const uint8_t *in, size_t n,
                        struct ck_secret *out)
{
    return kw_unwrap(kek, keklen, false, in, n, out);
}

ck_err ck_aes_kwp_wrap(const uint8_t *kek, size_t keklen, const uint8_t *in, size_t n,
                       struct ck_buf *out)
{
    return kw_wrap(kek, keklen, true, in, n, out);
}

ck_err ck_aes_kwp_unwrap(const uint8_t *kek, size_t keklen, const uint8_t *in, size_t n,
                         struct ck_secret *out)
{
    return kw_unwrap(kek, keklen, true, in, n, out);
}

/* ---------- GCM ---------- */

static ck_err gcm_check_args(size_t keylen, size_t ivlen, size_t aadlen, size_t n)
{
    if (!aes_keylen_ok(keylen))
        return ck_err_set(CK_EINVAL, "AES key must be 16, 24 or 32 bytes, not %zu", keylen);
    if (ivlen == 0 || ivlen > CK_GCM_MAX_IV)
        return ck_err_set(CK_EINVAL, "AES-GCM IV must be 1..%d bytes, not %zu", CK_GCM_MAX_IV,
                          ivlen);
    if (aadlen > CK_CRYPTO_MAX_LEN || n > CK_CRYPTO_MAX_LEN)
        return ck_err_set(CK_ETOOBIG, "AES-GCM input too large");
    return CK_OK;
}

/* Creates a context keyed for one message with an IV of any supported
 * length (the IV length must be set before the IV itself). */
static EVP_CIPHER_CTX *gcm_start(const uint8_t *key, size_t keylen, const uint8_t *iv, size_t ivlen,
                                 bool enc)
{
    const EVP_CIPHER *c = cipher(GCM128, keylen);
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_size_t(OSSL_CIPHER_PARAM_AEAD_IVLEN, &ivlen),
        OSSL_PARAM_construct_end(),
    };
    bool ok = c && ctx && EVP_CipherInit_ex2(ctx, c, NULL, NULL, enc ? 1 : 0, NULL) == 1 &&
              EVP_CIPHER_CTX_set_params(ctx, params) == 1 &&
              EVP_CipherInit_ex2(ctx, NULL, key, iv, enc ? 1 : 0, NULL) == 1;
    if (!ok) {
        EVP_CIPHER_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

ck_err ck_aes_gcm_encrypt(const uint8_t *key, size_t keylen, const uint8_t *iv, size_t ivlen,
                          const uint8_t *aad, size_t aadlen, const uint8_t *in, size_t n,
                          uint8_t *out, uint8_t tag[CK_GCM_TAG_LEN])
{
    CK_TRY(gcm_check_args(keylen, ivlen, aadlen, n));
    EVP_CIPHER_CTX *ctx = gcm_start(key, keylen, iv, ivlen, true);
    if (!ctx)
        return ck_crypto_fail(CK_ECRYPTO, "AES-GCM setup failed");
    int l = 0;
    uint8_t scratch[16]; /* Final writes nothing for GCM; out may be NULL when n is 0 */
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_octet_string(OSSL_CIPHER_PARAM_AEAD_TAG, tag, CK_GCM_TAG_LEN),
        OSSL_PARAM_construct_end(),
    };
    bool ok = (aadlen == 0 || EVP_EncryptUpdate(ctx, NULL, &l, aad, (int)aadlen) == 1) &&
              (n == 0 || (EVP_EncryptUpdate(ctx, out, &l, in, (int)n) == 1 && (size_t)l == n)) &&
              EVP_EncryptFinal_ex(ctx, scratch, &l) == 1 && l == 0 &&
              EVP_CIPHER_CTX_get_params(ctx, params) == 1;
    EVP_CIPHER_CTX_free(ctx);
    if (!ok)
        return ck_crypto_fail(CK_ECRYPTO, "AES-GCM encryption failed");
    return CK_OK;
}

ck_err ck_aes_gcm_decrypt(const uint8_t *key, size_t keylen, const uint8_t *iv, size_t ivlen,
                          const uint8_t *aad, size_t aadlen, const uint8_t *in, size_t n,
                          const uint8_t *tag, size_t taglen, uint8_t *out)
{
    CK_TRY(gcm_check_args(keylen, ivlen, aadlen, n));
    if (taglen != CK_GCM_TAG_LEN || !tag)
        return ck_crypto_integrity(decrypt_failed);
    EVP_CIPHER_CTX *ctx = gcm_start(key, keylen, iv, ivlen, false);
    if (!ctx)
        return ck_crypto_fail(CK_ECRYPTO, "AES-GCM setup failed");
    uint8_t tagcopy[CK_GCM_TAG_LEN]; /* the parameter API wants a mutable buffer */
    memcpy(tagcopy, tag, sizeof tagcopy);
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_octet_string(OSSL_CIPHER_PARAM_AEAD_TAG, tagcopy, sizeof tagcopy),
        OSSL_PARAM_construct_end(),
    };
    int l = 0;
    uint8_t scratch[16]; /* Final writes nothing for GCM; out may be NULL when n is 0 */
    bool ok = (aadlen == 0 || EVP_DecryptUpdate(ctx, NULL, &l, aad, (int)aadlen) == 1) &&
              (n == 0 || (EVP_DecryptUpdate(ctx, out, &l, in, (int)n) == 1 && (size_t)l == n)) &&
              EVP_CIPHER_CTX_set_params(ctx, params) == 1 &&
              EVP_DecryptFinal_ex(ctx, scratch, &l) == 1 && l == 0;
    EVP_CIPHER_CTX_free(ctx);
    if (!ok) {
        ck_wipe(out, n);
        return ck_crypto_integrity(decrypt_failed);
    }
    return CK_OK;
}

/* ---------- sealed box ---------- */

ck_err ck_seal(const uint8_t key[32], const void *aad, size_t aadlen, const uint8_t *in, size_t n,
               struct ck_buf *out)
{
    if (n > CK_CRYPTO_MAX_LEN - CK_SEAL_OVERHEAD)
        return ck_err_set(CK_ETOOBIG, "data to seal is too large");
    struct ck_buf b = {0};
    CK_TRY(ck_buf_alloc(&b, CK_SEAL_OVERHEAD + n));
    b.p[0] = CK_SEAL_VERSION;
    uint8_t *nonce = b.p + 1, *ct = nonce + CK_GCM_IV_LEN, *tag = ct + n;
    ck_err rc = ck_rand_bytes(nonce, CK_GCM_IV_LEN);
    if (rc == CK_OK)
        rc = ck_aes_gcm_encrypt(key, 32, nonce, CK_GCM_IV_LEN, aad, aadlen, in, n, ct, tag);
    if (rc != CK_OK) {
        ck_buf_free(&b);
        return rc;
    }
    *out = b;
    return CK_OK;
}

ck_err ck_unseal(const uint8_t key[32], const void *aad, size_t aadlen, const uint8_t *in, size_t n,
                 struct ck_secret *out)
{
    if (n < CK_SEAL_OVERHEAD || in[0] != CK_SEAL_VERSION)
        return ck_crypto_integrity(decrypt_failed);
    size_t ptlen = n - CK_SEAL_OVERHEAD;
    const uint8_t *nonce = in + 1, *ct = nonce + CK_GCM_IV_LEN, *tag = ct + ptlen;
    struct ck_secret s = {0};
    CK_TRY(ck_secret_alloc(&s, ptlen));
    ck_err rc = ck_aes_gcm_decrypt(key, 32, nonce, CK_GCM_IV_LEN, aad, aadlen, ct, ptlen, tag,
                                   CK_GCM_TAG_LEN, s.p);
    if (rc != CK_OK) {
        ck_secret_free(&s);
        return rc == CK_EINTEGRITY ? ck_crypto_integrity(decrypt_failed) : rc;
    }
    *out = s;
    return CK_OK;
}
