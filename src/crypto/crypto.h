/*
 * crypto — every cryptographic primitive ckey uses, on OpenSSL 3 (libcrypto).
 *
 * This is the only module that includes OpenSSL headers. Callers get small,
 * hard-to-misuse functions over byte ranges; key objects are opaque.
 *
 * Ownership: outputs written to a struct ck_buf / struct ck_secret are owned
 * by the caller (free with ck_buf_free / ck_secret_free). Anything that is
 * or may be key material (decrypted data, unwrapped keys, private key
 * encodings) is returned in a ck_secret. Inputs are never retained.
 *
 * Failures: decryption, unwrapping and tag checks fail with CK_EINTEGRITY and
 * one fixed message per primitive ("decryption failed"), never saying which
 * check failed, so that callers cannot become padding oracles.
 *
 * Thread-safety: all functions are safe to call concurrently; a struct
 * ck_rsa may be shared between threads for read-only use.
 */
#ifndef CK_CRYPTO_H
#define CK_CRYPTO_H

#include "base/base.h"

/* ---------- random, hashing, MAC, KDF ---------- */

ck_err ck_rand_bytes(void *p, size_t n);
ck_err ck_sha256(const void *p, size_t n, uint8_t out[32]);
ck_err ck_hmac_sha256(const uint8_t *key, size_t keylen, const void *p, size_t n, uint8_t out[32]);
ck_err ck_hkdf_sha256(const uint8_t *salt, size_t saltlen, const uint8_t *ikm, size_t ikmlen,
                      const uint8_t *info, size_t infolen, uint8_t *out, size_t outlen);

/* ---------- RSA ---------- */

struct ck_rsa; /* an RSA public or private key */

enum ck_rsa_enc { CK_RSA_OAEP /* SHA-1 */, CK_RSA_OAEP_256, CK_RSA1_5 };
enum ck_rsa_sig { CK_RS256, CK_RS384, CK_RS512, CK_PS256, CK_PS384, CK_PS512 };

/* bits is 2048, 3072 or 4096; anything else is CK_EINVAL. e = 65537. */
ck_err ck_rsa_generate(unsigned bits, struct ck_rsa **out);
void ck_rsa_free(struct ck_rsa *k);
unsigned ck_rsa_bits(const struct ck_rsa *k);
bool ck_rsa_has_private(const struct ck_rsa *k);

/* From JWK components (big-endian unsigned integers). For a public key pass
 * NULL/0 for d..qi. A private key needs n, e, d, p, q; dp, dq, qi are
 * computed when absent. The key is checked for consistency. */
struct ck_rsa_jwk {
    struct ck_buf n, e, d, p, q, dp, dq, qi;
};
ck_err ck_rsa_from_jwk(const struct ck_rsa_jwk *j, struct ck_rsa **out);
/* Public components n and e, big-endian, no leading zeros. */
ck_err ck_rsa_public_ne(const struct ck_rsa *k, struct ck_buf *n, struct ck_buf *e);
/* Private exponent d, big-endian (tests use it to search the store). */
ck_err ck_rsa_private_d(const struct ck_rsa *k, struct ck_secret *d);
/* SubjectPublicKeyInfo PEM, NUL-terminated, malloc'd. */
ck_err ck_rsa_public_pem(const struct ck_rsa *k, char **pem);
/* PKCS#8 DER of the private key, for sealing under the master key. */
ck_err ck_rsa_private_der(const struct ck_rsa *k, struct ck_secret *der);
/* Parses PKCS#8 (private) or SubjectPublicKeyInfo (public) DER. */
ck_err ck_rsa_from_der(const uint8_t *der, size_t n, struct ck_rsa **out);

/* label may be NULL/0 (AKV never sends one; test vectors do). */
ck_err ck_rsa_encrypt(const struct ck_rsa *k, enum ck_rsa_enc alg, const uint8_t *label,
                      size_t labellen, const uint8_t *in, size_t n, struct ck_buf *out);
ck_err ck_rsa_decrypt(const struct ck_rsa *k, enum ck_rsa_enc alg, const uint8_t *label,
                      size_t labellen, const uint8_t *in, size_t n, struct ck_secret *out);
/* Signs a precomputed digest whose length must match the algorithm's hash.
 * PSS uses a salt as long as the digest. */
ck_err ck_rsa_sign_digest(const struct ck_rsa *k, enum ck_rsa_sig alg, const uint8_t *digest,
                          size_t dn, struct ck_buf *sig);
/* CK_OK with *valid set; an error only for unusable input (wrong digest size). */
ck_err ck_rsa_verify_digest(const struct ck_rsa *k, enum ck_rsa_sig alg, const uint8_t *digest,
                            size_t dn, const uint8_t *sig, size_t sn, bool *valid);
size_t ck_rsa_sig_digest_len(enum ck_rsa_sig alg);

/* ---------- AES key wrap (RFC 3394) and with padding (RFC 5649) ---------- */

/* kek is 16, 24 or 32 bytes. KW needs input of 16+ bytes, a multiple of 8. */
ck_err ck_aes_kw_wrap(const uint8_t *kek, size_t keklen, const uint8_t *in, size_t n,
                      struct ck_buf *out);
ck_err ck_aes_kw_unwrap(const uint8_t *kek, size_t keklen, const uint8_t *in, size_t n,
                        struct ck_secret *out);
ck_err ck_aes_kwp_wrap(const uint8_t *kek, size_t keklen, const uint8_t *in, size_t n,
                       struct ck_buf *out);
ck_err ck_aes_kwp_unwrap(const uint8_t *kek, size_t keklen, const uint8_t *in, size_t n,
                         struct ck_secret *out);

/* ---------- AES-GCM ---------- */

#define CK_GCM_TAG_LEN 16
#define CK_GCM_IV_LEN 12

/* key is 16, 24 or 32 bytes; iv any non-zero length. out holds n bytes. */
ck_err ck_aes_gcm_encrypt(const uint8_t *key, size_t keylen, const uint8_t *iv, size_t ivlen,
                          const uint8_t *aad, size_t aadlen, const uint8_t *in, size_t n,
                          uint8_t *out, uint8_t tag[CK_GCM_TAG_LEN]);
/* out holds n bytes; on CK_EINTEGRITY out is wiped. taglen 16. */
ck_err ck_aes_gcm_decrypt(const uint8_t *key, size_t keylen, const uint8_t *iv, size_t ivlen,
                          const uint8_t *aad, size_t aadlen, const uint8_t *in, size_t n,
                          const uint8_t *tag, size_t taglen, uint8_t *out);

/* Sealed box under a 256-bit key: version(1) || nonce(12) || ct || tag(16),
 * AES-256-GCM with aad bound. Used for everything stored under a master key. */
ck_err ck_seal(const uint8_t key[32], const void *aad, size_t aadlen, const uint8_t *in, size_t n,
               struct ck_buf *out);
ck_err ck_unseal(const uint8_t key[32], const void *aad, size_t aadlen, const uint8_t *in, size_t n,
                 struct ck_secret *out);

/* ---------- fingerprints of destroyed blobs (prints.c) ---------- */

ck_err ck_blob_print_make(const char *what, bool availability_store, const void *p, size_t n,
                          struct ck_blob_print *out);
/* Reads the file at path once and sets found[i] when a copy of blob i
 * occurs in it anywhere (found[] is only ever set, never cleared, so one
 * array can collect several files). A missing file is scanned as empty;
 * *bytes gets the size read. */
ck_err ck_blob_print_scan(const char *path, const struct ck_blob_print *v, size_t n, bool *found,
                          int64_t *bytes);

/* ---------- Ed25519 ---------- */

ck_err ck_ed25519_keygen(uint8_t pub[32], struct ck_secret *priv /* 32-byte seed */);
ck_err ck_ed25519_public(const uint8_t seed[32], uint8_t pub[32]);
ck_err ck_ed25519_sign(const uint8_t seed[32], const void *msg, size_t n, uint8_t sig[64]);
/* CK_OK when valid, CK_EINTEGRITY otherwise. */
ck_err ck_ed25519_verify(const uint8_t pub[32], const void *msg, size_t n, const uint8_t *sig,
                         size_t siglen);
/* PEM (SubjectPublicKeyInfo / PKCS#8) conversions for operators' files. */
ck_err ck_ed25519_public_pem(const uint8_t pub[32], char **pem);
ck_err ck_ed25519_public_from_pem(const char *pem, uint8_t pub[32]);
ck_err ck_ed25519_private_pem(const uint8_t seed[32], struct ck_secret *pem);
ck_err ck_ed25519_private_from_pem(const char *pem, struct ck_secret *seed);

/* ---------- TLS material for development ---------- */

/* A self-signed certificate (RSA-2048 or P-256, SHA-256, valid 825 days)
 * with the given DNS names and IP addresses as SANs, CN = first DNS name.
 * Both PEMs are malloc'd, NUL-terminated; key_pem is in a ck_secret. */
ck_err ck_tls_selfsigned(const char *const *dns, size_t ndns, const char *const *ips, size_t nips,
                         char **cert_pem, struct ck_secret *key_pem);

#endif
