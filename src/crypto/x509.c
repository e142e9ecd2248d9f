/*
 * x509.c — a self-signed TLS certificate for development and tests.
 *
 * The certificate doubles as its own trust anchor: clients (libcurl, Node,
 * the Azure SDKs) are pointed at it with a CA-file option, and OpenSSL only
 * accepts a certificate from a CA file as an issuer if it is a CA. So it is
 * marked CA:TRUE (critical) with keyCertSign, and also carries
 * digitalSignature/keyEncipherment and extendedKeyUsage serverAuth so the
 * same certificate serves as the server's leaf. RSA-2048 works with every
 * TLS stack ckey meets (GnuTLS in libmicrohttpd, OpenSSL in curl and Node).
 *
 * SANs are built as GENERAL_NAMEs rather than from an OpenSSL config string,
 * so a name containing a comma cannot smuggle in extra entries.
 */
#include "internal.h"

#include <string.h>

#include <openssl/bn.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#define CK_CERT_DAYS 825
#define CK_CERT_BACKDATE_SECONDS 3600
#define CK_CN_MAX 64 /* ub-common-name */

static bool dns_name_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 253)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '-' || c == '.' || c == '_' || c == '*';
        if (!ok)
            return false;
    }
    return true;
}

static bool add_name(GENERAL_NAMES *gens, int type, ASN1_STRING *value)
{
    GENERAL_NAME *g = GENERAL_NAME_new();
    if (!g) {
        ASN1_STRING_free(value);
        return false;
    }
    GENERAL_NAME_set0_value(g, type, value);
    if (!sk_GENERAL_NAME_push(gens, g)) {
        GENERAL_NAME_free(g);
        return false;
    }
    return true;
}

/* Builds the SubjectAltName list; CK_EINVAL names the offending entry. */
static ck_err build_sans(const char *const *dns, size_t ndns, const char *const *ips, size_t nips,
                         GENERAL_NAMES **out)
{
    GENERAL_NAMES *gens = sk_GENERAL_NAME_new_null();
    if (!gens)
        return ck_crypto_fail(CK_ENOMEM, "cannot allocate SAN list");
    for (size_t i = 0; i < ndns; i++) {
        if (!dns[i] || !dns_name_ok(dns[i])) {
            GENERAL_NAMES_free(gens);
            return ck_err_set(CK_EINVAL, "invalid DNS name for certificate: \"%s\"",
                              dns[i] ? dns[i] : "(null)");
        }
        ASN1_IA5STRING *s = ASN1_IA5STRING_new();
        if (!s || !ASN1_STRING_set(s, dns[i], (int)strlen(dns[i]))) {
            ASN1_IA5STRING_free(s);
            GENERAL_NAMES_free(gens);
            return ck_crypto_fail(CK_ECRYPTO, "cannot build SAN list");
        }
        if (!add_name(gens, GEN_DNS, s)) { /* add_name freed s */
            GENERAL_NAMES_free(gens);
            return ck_crypto_fail(CK_ECRYPTO, "cannot build SAN list");
        }
    }
    for (size_t i = 0; i < nips; i++) {
        ASN1_OCTET_STRING *ip = ips[i] ? a2i_IPADDRESS(ips[i]) : NULL;
        if (!ip) {
            GENERAL_NAMES_free(gens);
            return ck_crypto_fail(CK_EINVAL, ips[i] ? "invalid IP address for certificate"
                                                    : "NULL IP address for certificate");
        }
        if (!add_name(gens, GEN_IPADD, ip)) {
            GENERAL_NAMES_free(gens);
            return ck_crypto_fail(CK_ECRYPTO, "cannot build SAN list");
        }
    }
    *out = gens;
    return CK_OK;
}

static bool add_ext(X509 *x, X509V3_CTX *v3, int nid, const char *value)
{
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, v3, nid, value);
    bool ok = ext && X509_add_ext(x, ext, -1) == 1;
    X509_EXTENSION_free(ext);
    return ok;
}

static bool set_random_serial(X509 *x)
{
    uint8_t raw[16];
    if (ck_rand_bytes(raw, sizeof raw) != CK_OK)
        return false;
    raw[0] = (uint8_t)((raw[0] & 0x7f) | 0x40); /* positive, full 16 bytes */
    BIGNUM *bn = BN_bin2bn(raw, sizeof raw, NULL);
    bool ok = bn && BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) != NULL;
    BN_free(bn);
    return ok;
}

static bool fill_cert(X509 *x, EVP_PKEY *pkey, const char *cn, GENERAL_NAMES *sans)
{
    X509_NAME *name = X509_get_subject_name(x);
    if (X509_set_version(x, X509_VERSION_3) != 1 || !set_random_serial(x) ||
        !X509_gmtime_adj(X509_getm_notBefore(x), -CK_CERT_BACKDATE_SECONDS) ||
        !X509_time_adj_ex(X509_getm_notAfter(x), CK_CERT_DAYS, 0, NULL) ||
        X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, (const unsigned char *)cn, -1, -1,
                                   0) != 1 ||
        X509_set_issuer_name(x, name) != 1 || X509_set_pubkey(x, pkey) != 1)
        return false;

    X509V3_CTX v3;
    X509V3_set_ctx_nodb(&v3);
    X509V3_set_ctx(&v3, x, x, NULL, NULL, 0);
    return add_ext(x, &v3, NID_basic_constraints, "critical,CA:TRUE") &&
           add_ext(x, &v3, NID_key_usage,
                   "critical,digitalSignature,keyEncipherment,keyCertSign") &&
           add_ext(x, &v3, NID_ext_key_usage, "serverAuth") &&
           add_ext(x, &v3, NID_subject_key_identifier, "hash") &&
           add_ext(x, &v3, NID_authority_key_identifier, "keyid:always") &&
           X509_add1_ext_i2d(x, NID_subject_alt_name, sans, 0, X509V3_ADD_DEFAULT) == 1 &&
           X509_sign(x, pkey, EVP_sha256()) > 0;
}

ck_err ck_tls_selfsigned(const char *const *dns, size_t ndns, const char *const *ips, size_t nips,
                         char **cert_pem, struct ck_secret *key_pem)
{
    if (ndns + nips == 0)
        return ck_err_set(CK_EINVAL, "a certificate needs at least one DNS name or IP address");

    GENERAL_NAMES *sans = NULL;
    CK_TRY(build_sans(dns, ndns, ips, nips, &sans));

    /* CN = first DNS name when it fits (it is informational: clients match
     * on SANs), else a fixed label. */
    const char *cn = ndns > 0 && strlen(dns[0]) <= CK_CN_MAX ? dns[0] : "ckey development";

    ck_err rc = CK_OK;
    char *cert = NULL;
    struct ck_secret key = {0};
    BIO *cb = NULL, *kb = NULL;
    X509 *x = NULL;
    EVP_PKEY *pkey = EVP_RSA_gen(2048);
    if (!pkey) {
        rc = ck_crypto_fail(CK_ECRYPTO, "TLS key generation failed");
        goto out;
    }
    if (!(x = X509_new()) || !fill_cert(x, pkey, cn, sans)) {
        rc = ck_crypto_fail(CK_ECRYPTO, "cannot build self-signed certificate");
        goto out;
    }
    cb = BIO_new(BIO_s_mem());
    kb = BIO_new(BIO_s_secmem());
    if (!cb || !kb || PEM_write_bio_X509(cb, x) != 1 ||
        PEM_write_bio_PrivateKey(kb, pkey, NULL, NULL, 0, NULL, NULL) != 1) {
        rc = ck_crypto_fail(CK_ECRYPTO, "cannot encode certificate or key");
        goto out;
    }
    CK_GUARD(ck_crypto_bio_to_string(cb, &cert));
    CK_GUARD(ck_crypto_bio_to_secret(kb, &key));
    *cert_pem = cert;
    *key_pem = key;
    cert = NULL;
out:
    free(cert);
    BIO_free(cb);
    BIO_free(kb);
    X509_free(x);
    EVP_PKEY_free(pkey);
    GENERAL_NAMES_free(sans);
    return rc;
}
