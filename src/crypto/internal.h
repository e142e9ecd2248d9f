/*
 * internal.h — helpers shared by the crypto module's source files only.
 *
 * Nothing outside src/crypto includes this: it pulls in OpenSSL headers,
 * which the rest of ckey must never see (crypto.h is the public contract).
 */
#ifndef CK_CRYPTO_INTERNAL_H
#define CK_CRYPTO_INTERNAL_H

#include "crypto.h"

#include <openssl/bio.h>

/* Records e with "what" plus OpenSSL's reason for the most recent failure
 * (a static string, never key material), then clears OpenSSL's error queue
 * so the next operation on this thread starts clean. Returns e. */
ck_err ck_crypto_fail(ck_err e, const char *what);

/* Clears OpenSSL's error queue and records the fixed message for a failed
 * decryption/unwrap/tag check. The message must not depend on the cause. */
ck_err ck_crypto_integrity(const char *fixed_msg);

/* Copies everything written to a memory BIO into a malloc'd NUL-terminated
 * string (for public material: certificates, public keys). */
ck_err ck_crypto_bio_to_string(BIO *b, char **out);

/* Copies everything written to a BIO into a ck_secret; the copy is followed
 * by a NUL that is not counted in out->n, so PEM text can be used as a C
 * string. Pair with BIO_s_secmem() so that OpenSSL's buffer is wiped too. */
ck_err ck_crypto_bio_to_secret(BIO *b, struct ck_secret *out);

/* EVP lengths are int; everything above this is refused up front. */
#define CK_CRYPTO_MAX_LEN ((size_t)0x7fffff00)

#endif
