/*
 * ossl.c — the seams between OpenSSL and ckey's conventions.
 *
 * OpenSSL reports failures on a per-thread error queue that outlives the
 * failing call; left alone, a stale entry would be blamed on a later,
 * unrelated operation. Every failure path in this module therefore goes
 * through ck_crypto_fail or ck_crypto_integrity, which translate to a
 * ck_err message and empty the queue. The BIO helpers move encoded output
 * (PEM/DER) into ckey's buffer types, secrets into locked memory.
 */
#include "internal.h"

#include <string.h>

#include <openssl/err.h>

ck_err ck_crypto_fail(ck_err e, const char *what)
{
    unsigned long code = ERR_peek_last_error();
    const char *reason = code ? ERR_reason_error_string(code) : NULL;
    if (reason)
        ck_err_set(e, "%s (%s)", what, reason);
    else
        ck_err_set(e, "%s", what);
    ERR_clear_error();
    return e;
}

ck_err ck_crypto_integrity(const char *fixed_msg)
{
    ERR_clear_error();
    return ck_err_set(CK_EINTEGRITY, "%s", fixed_msg);
}

ck_err ck_crypto_bio_to_string(BIO *b, char **out)
{
    char *data = NULL;
    long len = BIO_get_mem_data(b, &data);
    if (len < 0 || (len > 0 && !data))
        return ck_crypto_fail(CK_ECRYPTO, "cannot read encoded output");
    char *s = ck_xmalloc((size_t)len + 1);
    if (len)
        memcpy(s, data, (size_t)len);
    s[len] = '\0';
    *out = s;
    return CK_OK;
}

ck_err ck_crypto_bio_to_secret(BIO *b, struct ck_secret *out)
{
    char *data = NULL;
    long len = BIO_get_mem_data(b, &data);
    if (len < 0 || (len > 0 && !data))
        return ck_crypto_fail(CK_ECRYPTO, "cannot read encoded output");
    struct ck_secret s = {0};
    CK_TRY(ck_secret_alloc(&s, (size_t)len + 1)); /* zeroed: the NUL is there */
    if (len)
        memcpy(s.p, data, (size_t)len);
    s.n = (size_t)len;
    *out = s;
    return CK_OK;
}
