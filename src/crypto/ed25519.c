/*
 * ed25519.c — Ed25519 (RFC 8032) keys, signatures and their PEM files.
 *
 * ckey keeps an Ed25519 private key as its 32-byte seed in a ck_secret and
 * rebuilds the EVP_PKEY for each operation; no key object outlives a call,
 * so everything here is thread-safe. Operators exchange keys as PEM
 * (SubjectPublicKeyInfo / PKCS#8), hence the conversions.
 *
 * Verification is OpenSSL's: it rejects non-canonical S (malleability) and
 * undecodable points. Every failure, including a malformed key or a
 * signature of the wrong length, is CK_EINTEGRITY.
 */
#include "internal.h"

#include <string.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#define CK_ED25519_KEYLEN 32
#define CK_ED25519_SIGLEN 64

static const char verify_failed[] = "signature verification failed";

/* Never prompt on a terminal for a passphrase: encrypted PEM is refused. */
static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
    (void)buf;
    (void)size;
    (void)rwflag;
    (void)u;
    return -1;
}

static EVP_PKEY *from_seed(const uint8_t seed[32])
{
    return EVP_PKEY_new_raw_private_key_ex(NULL, "ED25519", NULL, seed, CK_ED25519_KEYLEN);
}

static EVP_PKEY *from_public(const uint8_t pub[32])
{
    return EVP_PKEY_new_raw_public_key_ex(NULL, "ED25519", NULL, pub, CK_ED25519_KEYLEN);
}

ck_err ck_ed25519_public(const uint8_t seed[32], uint8_t pub[32])
{
    EVP_PKEY *pkey = from_seed(seed);
    size_t len = CK_ED25519_KEYLEN;
    bool ok = pkey && EVP_PKEY_get_raw_public_key(pkey, pub, &len) == 1 && len == CK_ED25519_KEYLEN;
    EVP_PKEY_free(pkey);
    if (!ok)
        return ck_crypto_fail(CK_ECRYPTO, "cannot derive Ed25519 public key");
    return CK_OK;
}

ck_err ck_ed25519_keygen(uint8_t pub[32], struct ck_secret *priv)
{
    struct ck_secret s = {0};
    CK_TRY(ck_secret_alloc(&s, CK_ED25519_KEYLEN));
    ck_err rc = ck_rand_bytes(s.p, s.n);
    if (rc == CK_OK)
        rc = ck_ed25519_public(s.p, pub);
    if (rc != CK_OK) {
        ck_secret_free(&s);
        return rc;
    }
    *priv = s;
    return CK_OK;
}

ck_err ck_ed25519_sign(const uint8_t seed[32], const void *msg, size_t n, uint8_t sig[64])
{
    static const uint8_t empty[1];
    EVP_PKEY *pkey = from_seed(seed);
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    size_t len = CK_ED25519_SIGLEN;
    bool ok = pkey && md && EVP_DigestSignInit_ex(md, NULL, NULL, NULL, NULL, pkey, NULL) == 1 &&
              EVP_DigestSign(md, sig, &len, n ? msg : empty, n) == 1 && len == CK_ED25519_SIGLEN;
    EVP_MD_CTX_free(md);
    EVP_PKEY_free(pkey);
    if (!ok)
        return ck_crypto_fail(CK_ECRYPTO, "Ed25519 signing failed");
    return CK_OK;
}

ck_err ck_ed25519_verify(const uint8_t pub[32], const void *msg, size_t n, const uint8_t *sig,
                         size_t siglen)
{
    static const uint8_t empty[1];
    if (!sig || siglen != CK_ED25519_SIGLEN)
        return ck_crypto_integrity(verify_failed);
    EVP_PKEY *pkey = from_public(pub);
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    bool ok = pkey && md && EVP_DigestVerifyInit_ex(md, NULL, NULL, NULL, NULL, pkey, NULL) == 1 &&
              EVP_DigestVerify(md, sig, siglen, n ? msg : empty, n) == 1;
    EVP_MD_CTX_free(md);
    EVP_PKEY_free(pkey);
    if (!ok)
        return ck_crypto_integrity(verify_failed);
    return CK_OK;
}

ck_err ck_ed25519_public_pem(const uint8_t pub[32], char **pem)
{
    EVP_PKEY *pkey = from_public(pub);
    BIO *b = BIO_new(BIO_s_mem());
    ck_err rc;
    if (!pkey || !b || PEM_write_bio_PUBKEY(b, pkey) != 1)
        rc = ck_crypto_fail(CK_ECRYPTO, "cannot encode Ed25519 public key");
    else
        rc = ck_crypto_bio_to_string(b, pem);
    BIO_free(b);
    EVP_PKEY_free(pkey);
    return rc;
}

ck_err ck_ed25519_public_from_pem(const char *pem, uint8_t pub[32])
{
    BIO *b = BIO_new_mem_buf(pem, -1);
    EVP_PKEY *pkey = b ? PEM_read_bio_PUBKEY(b, NULL, no_passphrase, NULL) : NULL;
    BIO_free(b);
    if (!pkey)
        return ck_crypto_fail(CK_EINVAL, "not a PEM public key");
    size_t len = CK_ED25519_KEYLEN;
    bool ok = EVP_PKEY_is_a(pkey, "ED25519") && EVP_PKEY_get_raw_public_key(pkey, pub, &len) == 1 &&
              len == CK_ED25519_KEYLEN;
    EVP_PKEY_free(pkey);
    if (!ok)
        return ck_crypto_fail(CK_EINVAL, "PEM public key is not an Ed25519 key");
    return CK_OK;
}

ck_err ck_ed25519_private_pem(const uint8_t seed[32], struct ck_secret *pem)
{
    EVP_PKEY *pkey = from_seed(seed);
    BIO *b = BIO_new(BIO_s_secmem());
    ck_err rc;
    if (!pkey || !b || PEM_write_bio_PrivateKey(b, pkey, NULL, NULL, 0, NULL, NULL) != 1)
        rc = ck_crypto_fail(CK_ECRYPTO, "cannot encode Ed25519 private key");
    else
        rc = ck_crypto_bio_to_secret(b, pem);
    BIO_free(b);
    EVP_PKEY_free(pkey);
    return rc;
}

ck_err ck_ed25519_private_from_pem(const char *pem, struct ck_secret *seed)
{
    BIO *b = BIO_new_mem_buf(pem, -1);
    EVP_PKEY *pkey = b ? PEM_read_bio_PrivateKey(b, NULL, no_passphrase, NULL) : NULL;
    BIO_free(b);
    if (!pkey)
        return ck_crypto_fail(CK_EINVAL, "not an unencrypted PEM private key");
    if (!EVP_PKEY_is_a(pkey, "ED25519")) {
        EVP_PKEY_free(pkey);
        return ck_err_set(CK_EINVAL, "PEM private key is not an Ed25519 key");
    }
    struct ck_secret s = {0};
    ck_err rc = ck_secret_alloc(&s, CK_ED25519_KEYLEN);
    size_t len = CK_ED25519_KEYLEN;
    if (rc == CK_OK &&
        (EVP_PKEY_get_raw_private_key(pkey, s.p, &len) != 1 || len != CK_ED25519_KEYLEN)) {
        ck_secret_free(&s);
        rc = ck_crypto_fail(CK_ECRYPTO, "cannot read Ed25519 private key");
    }
    EVP_PKEY_free(pkey);
    if (rc == CK_OK)
        *seed = s;
    return rc;
}
