/*
 * Unit tests for src/crypto.
 *
 * Every vector of every Wycheproof file in $CK_TESTDATA/wycheproof is run
 * through the public API (a missing file or directory fails, it never
 * skips), followed by round trips, tamper tests and known-answer tests for
 * everything the Wycheproof files do not reach: key generation, JWK/DER/PEM
 * import and export, the sealed box, Ed25519 PEM files and the development
 * TLS certificate (checked with the openssl command-line tool).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "crypto/crypto.h"

/* ====================================================================== */
/* helpers                                                                */
/* ====================================================================== */

static struct ck_rsa *shared_rsa; /* one 2048-bit key for the whole run */

static int group_setup(void **state)
{
    return ck_rsa_generate(2048, &shared_rsa) == CK_OK ? 0 : -1;
}

static int group_teardown(void **state)
{
    ck_rsa_free(shared_rsa);
    shared_rsa = NULL;
    return 0;
}

static char *testdata_path(const char *rel)
{
    const char *dir = getenv("CK_TESTDATA");
    if (!dir || !*dir)
        fail_msg("CK_TESTDATA is not set; the Wycheproof vectors cannot be found");
    return ck_sprintf("%s/%s", dir, rel);
}

static json_t *load_vectors(const char *file)
{
    char *rel = ck_sprintf("wycheproof/%s", file);
    char *path = testdata_path(rel);
    free(rel);
    json_error_t err;
    json_t *root = json_load_file(path, 0, &err);
    if (!root)
        fail_msg("cannot load Wycheproof file %s: %s", path, err.text);
    free(path);
    return root;
}

static const char *str_field(json_t *obj, const char *key)
{
    const char *s = json_string_value(json_object_get(obj, key));
    if (!s)
        fail_msg("Wycheproof field \"%s\" is missing or not a string", key);
    return s;
}

static struct ck_buf hex_field(json_t *obj, const char *key)
{
    struct ck_buf b = {0};
    if (ck_hex_decode(str_field(obj, key), &b) != CK_OK)
        fail_msg("Wycheproof field \"%s\" is not hex", key);
    return b;
}

static struct ck_buf b64_field(json_t *obj, const char *key)
{
    const char *s = str_field(obj, key);
    struct ck_buf b = {0};
    if (ck_b64url_decode(s, strlen(s), &b) != CK_OK)
        fail_msg("JWK field \"%s\" is not base64url", key);
    return b;
}

static struct ck_buf hex(const char *s)
{
    struct ck_buf b = {0};
    assert_int_equal(ck_hex_decode(s, &b), CK_OK);
    return b;
}

static bool buf_eq(const uint8_t *p, size_t n, const struct ck_buf *want)
{
    return n == want->n && (n == 0 || memcmp(p, want->p, n) == 0);
}

static bool all_zero(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i])
            return false;
    return true;
}

/* ---------- Wycheproof bookkeeping ---------- */

enum wp_result { WP_VALID, WP_INVALID, WP_ACCEPTABLE };

struct tally {
    const char *file;
    size_t run, ok, skipped;
};

static enum wp_result wp_result(json_t *tc)
{
    const char *r = str_field(tc, "result");
    if (strcmp(r, "valid") == 0)
        return WP_VALID;
    if (strcmp(r, "invalid") == 0)
        return WP_INVALID;
    if (strcmp(r, "acceptable") == 0)
        return WP_ACCEPTABLE;
    fail_msg("unknown Wycheproof result \"%s\"", r);
    return WP_INVALID;
}

/* Records one vector: valid must pass, invalid must be rejected, acceptable
 * may go either way. */
static void tally_add(struct tally *t, json_t *tc, bool passed, bool rejected)
{
    enum wp_result r = wp_result(tc);
    bool good = r == WP_ACCEPTABLE || (r == WP_VALID && passed) || (r == WP_INVALID && rejected);
    t->run++;
    if (good)
        t->ok++;
    else
        printf("  %s tcId %lld (%s, \"%s\"): unexpected outcome (passed=%d rejected=%d)\n", t->file,
               (long long)json_integer_value(json_object_get(tc, "tcId")), str_field(tc, "result"),
               str_field(tc, "comment"), passed, rejected);
}

static void tally_finish(struct tally *t, json_t *root, const char *skip_reason)
{
    json_int_t declared = json_integer_value(json_object_get(root, "numberOfTests"));
    printf("wycheproof %s: %zu vectors, %zu as expected", t->file, t->run, t->ok);
    if (t->skipped)
        printf(", %zu skipped (%s)", t->skipped, skip_reason);
    printf("\n");
    fflush(stdout);
    assert_true(declared > 0);
    assert_int_equal(t->run + t->skipped, (size_t)declared);
    assert_int_equal(t->ok, t->run);
}

#define FOR_EACH_TEST(root, group, tc)                                                             \
    for (size_t gi_ = 0; gi_ < json_array_size(json_object_get(root, "testGroups")); gi_++)        \
        for (json_t *group = json_array_get(json_object_get(root, "testGroups"), gi_),             \
                    *tcs_ = json_object_get(group, "tests");                                       \
             tcs_; tcs_ = NULL)                                                                    \
            for (size_t ti_ = 0; ti_ < json_array_size(tcs_); ti_++)                               \
                for (json_t *tc = json_array_get(tcs_, ti_); tc; tc = NULL)

/* ====================================================================== */
/* Wycheproof                                                             */
/* ====================================================================== */

static const char *const wycheproof_files[] = {
    "aes_gcm_test.json",
    "aes_kwp_test.json",
    "aes_wrap_test.json",
    "ed25519_test.json",
    "hkdf_sha256_test.json",
    "rsa_oaep_2048_sha1_mgf1sha1_test.json",
    "rsa_oaep_2048_sha256_mgf1sha256_test.json",
    "rsa_oaep_3072_sha256_mgf1sha256_test.json",
    "rsa_oaep_4096_sha256_mgf1sha256_test.json",
    "rsa_pkcs1_2048_test.json",
    "rsa_pss_2048_sha256_mgf1_32_test.json",
    "rsa_signature_2048_sha256_test.json",
};

/* A new vector file must get a runner here, not be silently ignored. */
static void test_wycheproof_every_file_has_a_runner(void **state)
{
    char *dir = testdata_path("wycheproof");
    DIR *d = opendir(dir);
    if (!d)
        fail_msg("cannot open %s", dir);
    size_t seen = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        size_t len = strlen(e->d_name);
        if (len < 5 || strcmp(e->d_name + len - 5, ".json") != 0)
            continue;
        bool known = false;
        for (size_t i = 0; i < sizeof wycheproof_files / sizeof *wycheproof_files; i++)
            known = known || strcmp(e->d_name, wycheproof_files[i]) == 0;
        if (!known)
            fail_msg("%s/%s has no runner in test_crypto.c", dir, e->d_name);
        seen++;
    }
    closedir(d);
    free(dir);
    assert_int_equal(seen, sizeof wycheproof_files / sizeof *wycheproof_files);
}

static void test_wycheproof_aes_gcm(void **state)
{
    json_t *root = load_vectors("aes_gcm_test.json");
    struct tally t = {.file = "aes_gcm_test.json"};
    FOR_EACH_TEST(root, group, tc)
    {
        assert_int_equal(json_integer_value(json_object_get(group, "tagSize")), 128);
        struct ck_buf key = hex_field(tc, "key"), iv = hex_field(tc, "iv"),
                      aad = hex_field(tc, "aad"), msg = hex_field(tc, "msg"),
                      ct = hex_field(tc, "ct"), tag = hex_field(tc, "tag");
        uint8_t *out = ck_xcalloc(1, msg.n + 1), *pt = ck_xcalloc(1, ct.n + 1), tg[16];
        if (iv.n > 128) {
            /* Skipped: OpenSSL's GCM accepts IVs of at most 128 bytes
             * (GCM_IV_MAX_SIZE); these 257-byte IVs cannot be computed with
             * it. The API must refuse them rather than answer wrongly. */
            assert_int_equal(ck_aes_gcm_decrypt(key.p, key.n, iv.p, iv.n, aad.p, aad.n, ct.p, ct.n,
                                                tag.p, tag.n, pt),
                             CK_EINVAL);
            assert_int_equal(
                ck_aes_gcm_encrypt(key.p, key.n, iv.p, iv.n, aad.p, aad.n, msg.p, msg.n, out, tg),
                CK_EINVAL);
            t.skipped++;
        } else {
            ck_err erc =
                ck_aes_gcm_encrypt(key.p, key.n, iv.p, iv.n, aad.p, aad.n, msg.p, msg.n, out, tg);
            bool enc_ok = erc == CK_OK && buf_eq(out, msg.n, &ct) && buf_eq(tg, 16, &tag);
            ck_err drc = ck_aes_gcm_decrypt(key.p, key.n, iv.p, iv.n, aad.p, aad.n, ct.p, ct.n,
                                            tag.p, tag.n, pt);
            bool dec_ok = drc == CK_OK && buf_eq(pt, ct.n, &msg);
            /* A rejected message leaves no plaintext behind. */
            bool rejected =
                drc != CK_OK && all_zero(pt, ct.n) &&
                (drc != CK_EINTEGRITY || strcmp(ck_err_msg(), "decryption failed") == 0);
            tally_add(&t, tc, enc_ok && dec_ok, rejected);
        }
        free(out);
        free(pt);
        ck_buf_free(&key);
        ck_buf_free(&iv);
        ck_buf_free(&aad);
        ck_buf_free(&msg);
        ck_buf_free(&ct);
        ck_buf_free(&tag);
    }
    tally_finish(&t, root, "IV longer than OpenSSL's 128-byte GCM limit");
    json_decref(root);
}

static void run_keywrap(const char *file, bool pad)
{
    json_t *root = load_vectors(file);
    struct tally t = {.file = file};
    FOR_EACH_TEST(root, group, tc)
    {
        struct ck_buf key = hex_field(tc, "key"), msg = hex_field(tc, "msg"),
                      ct = hex_field(tc, "ct"), wrapped = {0};
        struct ck_secret unwrapped = {0};
        ck_err wrc = pad ? ck_aes_kwp_wrap(key.p, key.n, msg.p, msg.n, &wrapped)
                         : ck_aes_kw_wrap(key.p, key.n, msg.p, msg.n, &wrapped);
        bool wrap_ok = wrc == CK_OK && buf_eq(wrapped.p, wrapped.n, &ct);
        ck_err urc = pad ? ck_aes_kwp_unwrap(key.p, key.n, ct.p, ct.n, &unwrapped)
                         : ck_aes_kw_unwrap(key.p, key.n, ct.p, ct.n, &unwrapped);
        bool unwrap_ok = urc == CK_OK && buf_eq(unwrapped.p, unwrapped.n, &msg);
        /* Rejected: unwrapping fails with the one fixed message, and wrapping
         * the message does not produce this ciphertext either. */
        bool rejected = urc == CK_EINTEGRITY && strcmp(ck_err_msg(), "key unwrap failed") == 0 &&
                        !wrap_ok && unwrapped.p == NULL;
        tally_add(&t, tc, wrap_ok && unwrap_ok, rejected);
        ck_buf_free(&wrapped);
        ck_secret_free(&unwrapped);
        ck_buf_free(&key);
        ck_buf_free(&msg);
        ck_buf_free(&ct);
    }
    tally_finish(&t, root, "");
    json_decref(root);
}

static void test_wycheproof_aes_kwp(void **state)
{
    run_keywrap("aes_kwp_test.json", true);
}

static void test_wycheproof_aes_wrap(void **state)
{
    run_keywrap("aes_wrap_test.json", false);
}

static void test_wycheproof_hkdf_sha256(void **state)
{
    json_t *root = load_vectors("hkdf_sha256_test.json");
    struct tally t = {.file = "hkdf_sha256_test.json"};
    FOR_EACH_TEST(root, group, tc)
    {
        struct ck_buf ikm = hex_field(tc, "ikm"), salt = hex_field(tc, "salt"),
                      info = hex_field(tc, "info"), okm = hex_field(tc, "okm");
        json_int_t size = json_integer_value(json_object_get(tc, "size"));
        assert_true(size > 0);
        uint8_t *out = ck_xcalloc(1, (size_t)size);
        ck_err rc = ck_hkdf_sha256(salt.p, salt.n, ikm.p, ikm.n, info.p, info.n, out, (size_t)size);
        tally_add(&t, tc, rc == CK_OK && buf_eq(out, (size_t)size, &okm), rc == CK_EINVAL);
        free(out);
        ck_buf_free(&ikm);
        ck_buf_free(&salt);
        ck_buf_free(&info);
        ck_buf_free(&okm);
    }
    tally_finish(&t, root, "");
    json_decref(root);
}

static void test_wycheproof_ed25519(void **state)
{
    json_t *root = load_vectors("ed25519_test.json");
    struct tally t = {.file = "ed25519_test.json"};
    FOR_EACH_TEST(root, group, tc)
    {
        struct ck_buf pk = hex_field(json_object_get(group, "publicKey"), "pk");
        assert_int_equal(pk.n, 32);
        struct ck_buf msg = hex_field(tc, "msg"), sig = hex_field(tc, "sig");
        ck_err rc = ck_ed25519_verify(pk.p, msg.p, msg.n, sig.p, sig.n);
        tally_add(&t, tc, rc == CK_OK, rc == CK_EINTEGRITY);
        ck_buf_free(&pk);
        ck_buf_free(&msg);
        ck_buf_free(&sig);
    }
    tally_finish(&t, root, "");
    json_decref(root);
}

static struct ck_rsa *group_private_key(json_t *group)
{
    struct ck_buf der = hex_field(group, "privateKeyPkcs8");
    struct ck_rsa *k = NULL;
    if (ck_rsa_from_der(der.p, der.n, &k) != CK_OK)
        fail_msg("cannot import Wycheproof private key: %s", ck_err_msg());
    ck_buf_free(&der);
    assert_true(ck_rsa_has_private(k));
    assert_int_equal(ck_rsa_bits(k), json_integer_value(json_object_get(group, "keySize")));
    return k;
}

static struct ck_rsa *group_public_key(json_t *group)
{
    struct ck_buf der = hex_field(group, "publicKeyDer");
    struct ck_rsa *k = NULL;
    if (ck_rsa_from_der(der.p, der.n, &k) != CK_OK)
        fail_msg("cannot import Wycheproof public key: %s", ck_err_msg());
    ck_buf_free(&der);
    assert_false(ck_rsa_has_private(k));
    return k;
}

/* RSA decryption vectors: OAEP (with label) or PKCS#1 v1.5. */
static void run_rsa_decrypt(const char *file, bool oaep)
{
    json_t *root = load_vectors(file), *key_group = NULL;
    struct ck_rsa *k = NULL;
    struct tally t = {.file = file};
    FOR_EACH_TEST(root, group, tc)
    {
        enum ck_rsa_enc alg = CK_RSA1_5;
        if (oaep) {
            const char *sha = str_field(group, "sha"), *mgf = str_field(group, "mgfSha");
            if (strcmp(sha, "SHA-1") == 0 && strcmp(mgf, "SHA-1") == 0)
                alg = CK_RSA_OAEP;
            else if (strcmp(sha, "SHA-256") == 0 && strcmp(mgf, "SHA-256") == 0)
                alg = CK_RSA_OAEP_256;
            else
                fail_msg("%s: OAEP with %s/MGF1-%s is not an algorithm ckey offers", file, sha,
                         mgf);
        }
        if (group != key_group) { /* import (and check) each key once */
            ck_rsa_free(k);
            k = group_private_key(group);
            key_group = group;
        }
        struct ck_buf msg = hex_field(tc, "msg"), ct = hex_field(tc, "ct"), label = {0};
        if (oaep)
            label = hex_field(tc, "label");
        struct ck_secret pt = {0};
        ck_err rc = ck_rsa_decrypt(k, alg, label.p, label.n, ct.p, ct.n, &pt);
        bool passed = rc == CK_OK && buf_eq(pt.p, pt.n, &msg);
        bool rejected = rc == CK_EINTEGRITY && strcmp(ck_err_msg(), "decryption failed") == 0;
        tally_add(&t, tc, passed, rejected);
        ck_secret_free(&pt);
        ck_buf_free(&msg);
        ck_buf_free(&ct);
        ck_buf_free(&label);
    }
    ck_rsa_free(k);
    tally_finish(&t, root, "");
    json_decref(root);
}

static void test_wycheproof_rsa_oaep_2048_sha1(void **state)
{
    run_rsa_decrypt("rsa_oaep_2048_sha1_mgf1sha1_test.json", true);
}

static void test_wycheproof_rsa_oaep_2048_sha256(void **state)
{
    run_rsa_decrypt("rsa_oaep_2048_sha256_mgf1sha256_test.json", true);
}

static void test_wycheproof_rsa_oaep_3072_sha256(void **state)
{
    run_rsa_decrypt("rsa_oaep_3072_sha256_mgf1sha256_test.json", true);
}

static void test_wycheproof_rsa_oaep_4096_sha256(void **state)
{
    run_rsa_decrypt("rsa_oaep_4096_sha256_mgf1sha256_test.json", true);
}

static void test_wycheproof_rsa_pkcs1_2048(void **state)
{
    run_rsa_decrypt("rsa_pkcs1_2048_test.json", false);
}

/* RSA signature vectors; our API signs digests, so the message is hashed. */
static void run_rsa_verify(const char *file, enum ck_rsa_sig alg)
{
    json_t *root = load_vectors(file);
    struct tally t = {.file = file};
    FOR_EACH_TEST(root, group, tc)
    {
        assert_string_equal(str_field(group, "sha"), "SHA-256");
        if (alg == CK_PS256) {
            assert_string_equal(str_field(group, "mgfSha"), "SHA-256");
            assert_int_equal(json_integer_value(json_object_get(group, "sLen")), 32);
        }
        struct ck_rsa *k = group_public_key(group);
        struct ck_buf msg = hex_field(tc, "msg"), sig = hex_field(tc, "sig");
        uint8_t digest[32];
        assert_int_equal(ck_sha256(msg.p, msg.n, digest), CK_OK);
        bool valid = true;
        ck_err rc = ck_rsa_verify_digest(k, alg, digest, sizeof digest, sig.p, sig.n, &valid);
        assert_int_equal(rc, CK_OK); /* a bad signature is not an error */
        tally_add(&t, tc, valid, !valid);
        ck_buf_free(&msg);
        ck_buf_free(&sig);
        ck_rsa_free(k);
    }
    tally_finish(&t, root, "");
    json_decref(root);
}

static void test_wycheproof_rsa_pss_2048_sha256(void **state)
{
    run_rsa_verify("rsa_pss_2048_sha256_mgf1_32_test.json", CK_PS256);
}

static void test_wycheproof_rsa_signature_2048_sha256(void **state)
{
    run_rsa_verify("rsa_signature_2048_sha256_test.json", CK_RS256);
}

/* ====================================================================== */
/* random, hashing, MAC, KDF                                              */
/* ====================================================================== */

static void test_rand_bytes(void **state)
{
    uint8_t a[32] = {0}, b[32] = {0};
    assert_int_equal(ck_rand_bytes(a, sizeof a), CK_OK);
    assert_int_equal(ck_rand_bytes(b, sizeof b), CK_OK);
    assert_memory_not_equal(a, b, sizeof a);
    assert_int_equal(ck_rand_bytes(a, 0), CK_OK);
}

static void test_sha256_hmac_hkdf_known_answers(void **state)
{
    uint8_t out[42];
    struct ck_buf want = hex("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    assert_int_equal(ck_sha256("abc", 3, out), CK_OK);
    assert_memory_equal(out, want.p, 32);
    ck_buf_free(&want);

    /* RFC 4231 test case 2 */
    want = hex("5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    assert_int_equal(
        ck_hmac_sha256((const uint8_t *)"Jefe", 4, "what do ya want for nothing?", 28, out), CK_OK);
    assert_memory_equal(out, want.p, 32);
    ck_buf_free(&want);

    /* RFC 5869 test case 1 */
    struct ck_buf ikm = hex("0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b"),
                  salt = hex("000102030405060708090a0b0c"), info = hex("f0f1f2f3f4f5f6f7f8f9");
    want = hex("3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b8871858"
               "65");
    assert_int_equal(ck_hkdf_sha256(salt.p, salt.n, ikm.p, ikm.n, info.p, info.n, out, 42), CK_OK);
    assert_memory_equal(out, want.p, 42);
    ck_buf_free(&want);

    /* Output limits: 1..255*32 bytes. */
    uint8_t *big = ck_xmalloc(255 * 32 + 1);
    assert_int_equal(ck_hkdf_sha256(salt.p, salt.n, ikm.p, ikm.n, info.p, info.n, big, 255 * 32),
                     CK_OK);
    assert_int_equal(
        ck_hkdf_sha256(salt.p, salt.n, ikm.p, ikm.n, info.p, info.n, big, 255 * 32 + 1), CK_EINVAL);
    assert_int_equal(ck_hkdf_sha256(salt.p, salt.n, ikm.p, ikm.n, info.p, info.n, big, 0),
                     CK_EINVAL);
    free(big);
    ck_buf_free(&ikm);
    ck_buf_free(&salt);
    ck_buf_free(&info);
}

/* ====================================================================== */
/* RSA                                                                    */
/* ====================================================================== */

static const uint8_t secret_msg[] = "a 32-byte content encryption key";

static void rsa_roundtrip(struct ck_rsa *k, enum ck_rsa_enc alg)
{
    struct ck_buf ct = {0};
    struct ck_secret pt = {0};
    assert_int_equal(ck_rsa_encrypt(k, alg, NULL, 0, secret_msg, 32, &ct), CK_OK);
    assert_int_equal(ct.n, ck_rsa_bits(k) / 8);
    assert_int_equal(ck_rsa_decrypt(k, alg, NULL, 0, ct.p, ct.n, &pt), CK_OK);
    assert_int_equal(pt.n, 32);
    assert_memory_equal(pt.p, secret_msg, 32);
    ck_secret_free(&pt);
    ck_buf_free(&ct);
}

static void test_rsa_generate_sizes(void **state)
{
    struct ck_rsa *k = NULL;
    assert_int_equal(ck_rsa_generate(1024, &k), CK_EINVAL);
    assert_int_equal(ck_rsa_generate(2047, &k), CK_EINVAL);
    assert_int_equal(ck_rsa_generate(8192, &k), CK_EINVAL);
    assert_null(k);

    assert_int_equal(ck_rsa_bits(shared_rsa), 2048);
    assert_true(ck_rsa_has_private(shared_rsa));
    const unsigned sizes[] = {3072, 4096};
    for (size_t i = 0; i < 2; i++) {
        assert_int_equal(ck_rsa_generate(sizes[i], &k), CK_OK);
        assert_int_equal(ck_rsa_bits(k), sizes[i]);
        assert_true(ck_rsa_has_private(k));
        struct ck_buf n = {0}, e = {0};
        assert_int_equal(ck_rsa_public_ne(k, &n, &e), CK_OK);
        assert_int_equal(n.n, sizes[i] / 8);
        assert_int_equal(e.n, 3);
        assert_memory_equal(e.p, "\x01\x00\x01", 3);
        ck_buf_free(&n);
        ck_buf_free(&e);
        rsa_roundtrip(k, CK_RSA_OAEP_256);
        ck_rsa_free(k);
        k = NULL;
    }
}

static void test_rsa_encrypt_roundtrips(void **state)
{
    rsa_roundtrip(shared_rsa, CK_RSA_OAEP_256);
    rsa_roundtrip(shared_rsa, CK_RSA_OAEP);
    rsa_roundtrip(shared_rsa, CK_RSA1_5);

    /* Plaintext limits: k - 2h - 2 for OAEP, k - 11 for PKCS#1 v1.5. */
    uint8_t big[256] = {0};
    struct ck_buf ct = {0};
    const struct {
        enum ck_rsa_enc alg;
        size_t max;
    } limits[] = {{CK_RSA_OAEP, 256 - 42}, {CK_RSA_OAEP_256, 256 - 66}, {CK_RSA1_5, 256 - 11}};
    for (size_t i = 0; i < 3; i++) {
        assert_int_equal(
            ck_rsa_encrypt(shared_rsa, limits[i].alg, NULL, 0, big, limits[i].max, &ct), CK_OK);
        ck_buf_free(&ct);
        assert_int_equal(
            ck_rsa_encrypt(shared_rsa, limits[i].alg, NULL, 0, big, limits[i].max + 1, &ct),
            CK_EINVAL);
    }

    /* An OAEP label must match. */
    struct ck_secret pt = {0};
    assert_int_equal(
        ck_rsa_encrypt(shared_rsa, CK_RSA_OAEP_256, (const uint8_t *)"L", 1, secret_msg, 8, &ct),
        CK_OK);
    assert_int_equal(
        ck_rsa_decrypt(shared_rsa, CK_RSA_OAEP_256, (const uint8_t *)"L", 1, ct.p, ct.n, &pt),
        CK_OK);
    assert_memory_equal(pt.p, secret_msg, 8);
    ck_secret_free(&pt);
    assert_int_equal(ck_rsa_decrypt(shared_rsa, CK_RSA_OAEP_256, NULL, 0, ct.p, ct.n, &pt),
                     CK_EINTEGRITY);
    assert_string_equal(ck_err_msg(), "decryption failed");
    ck_buf_free(&ct);
    assert_int_equal(
        ck_rsa_encrypt(shared_rsa, CK_RSA1_5, (const uint8_t *)"L", 1, secret_msg, 8, &ct),
        CK_EINVAL);
}

/* A tampered ciphertext and a wrong-length one must be indistinguishable. */
static void expect_uniform_failure(struct ck_rsa *k, enum ck_rsa_enc alg, const struct ck_buf *ct)
{
    struct ck_secret pt = {0};
    struct ck_buf bad = {0};
    assert_int_equal(ck_buf_set(&bad, ct->p, ct->n), CK_OK);
    bad.p[ct->n / 2] ^= 0x01;
    assert_int_equal(ck_rsa_decrypt(k, alg, NULL, 0, bad.p, bad.n, &pt), CK_EINTEGRITY);
    assert_null(pt.p);
    char *flipped = ck_strdup(ck_err_msg());

    assert_int_equal(ck_rsa_decrypt(k, alg, NULL, 0, ct->p, ct->n - 1, &pt), CK_EINTEGRITY);
    assert_string_equal(ck_err_msg(), flipped);
    assert_int_equal(ck_buf_append(&bad, "", 1), CK_OK); /* one byte too long */
    assert_int_equal(ck_rsa_decrypt(k, alg, NULL, 0, bad.p, bad.n, &pt), CK_EINTEGRITY);
    assert_string_equal(ck_err_msg(), flipped);
    assert_string_equal(flipped, "decryption failed");
    assert_null(pt.p);
    free(flipped);
    ck_buf_free(&bad);
}

static void test_rsa_decrypt_failures_are_uniform(void **state)
{
    const enum ck_rsa_enc oaep[] = {CK_RSA_OAEP, CK_RSA_OAEP_256};
    for (size_t i = 0; i < 2; i++) {
        struct ck_buf ct = {0};
        assert_int_equal(ck_rsa_encrypt(shared_rsa, oaep[i], NULL, 0, secret_msg, 32, &ct), CK_OK);
        expect_uniform_failure(shared_rsa, oaep[i], &ct);
        ck_buf_free(&ct);
    }
    /* RSA1_5 with a random key would succeed on ~1 in 2^16 flipped inputs;
     * a fixed key and ciphertext (Wycheproof tcId 2) make it deterministic. */
    json_t *root = load_vectors("rsa_pkcs1_2048_test.json");
    json_t *group = json_array_get(json_object_get(root, "testGroups"), 0);
    json_t *tc = json_array_get(json_object_get(group, "tests"), 1);
    assert_string_equal(str_field(tc, "result"), "valid");
    struct ck_rsa *k = group_private_key(group);
    struct ck_buf ct = hex_field(tc, "ct");
    expect_uniform_failure(k, CK_RSA1_5, &ct);
    ck_buf_free(&ct);
    ck_rsa_free(k);
    json_decref(root);
}

static void test_rsa_sign_verify_all_algs(void **state)
{
    const enum ck_rsa_sig algs[] = {CK_RS256, CK_RS384, CK_RS512, CK_PS256, CK_PS384, CK_PS512};
    const size_t dlen[] = {32, 48, 64, 32, 48, 64};
    struct ck_buf n = {0}, e = {0};
    assert_int_equal(ck_rsa_public_ne(shared_rsa, &n, &e), CK_OK);
    struct ck_rsa_jwk jwk = {.n = n, .e = e};
    struct ck_rsa *pub = NULL;
    assert_int_equal(ck_rsa_from_jwk(&jwk, &pub), CK_OK);

    for (size_t i = 0; i < 6; i++) {
        uint8_t digest[64];
        for (size_t j = 0; j < sizeof digest; j++)
            digest[j] = (uint8_t)(j * 7 + i);
        assert_int_equal(ck_rsa_sig_digest_len(algs[i]), dlen[i]);
        struct ck_buf sig = {0}, sig2 = {0};
        bool valid = false;
        assert_int_equal(ck_rsa_sign_digest(shared_rsa, algs[i], digest, dlen[i], &sig), CK_OK);
        assert_int_equal(sig.n, 256);
        assert_int_equal(
            ck_rsa_verify_digest(shared_rsa, algs[i], digest, dlen[i], sig.p, sig.n, &valid),
            CK_OK);
        assert_true(valid);
        assert_int_equal(ck_rsa_verify_digest(pub, algs[i], digest, dlen[i], sig.p, sig.n, &valid),
                         CK_OK);
        assert_true(valid);

        /* PKCS#1 v1.5 is deterministic, PSS is salted. */
        assert_int_equal(ck_rsa_sign_digest(shared_rsa, algs[i], digest, dlen[i], &sig2), CK_OK);
        if (i < 3)
            assert_memory_equal(sig.p, sig2.p, sig.n);
        else
            assert_memory_not_equal(sig.p, sig2.p, sig.n);
        ck_buf_free(&sig2);

        /* The other family never accepts it. */
        assert_int_equal(
            ck_rsa_verify_digest(pub, algs[(i + 3) % 6], digest, dlen[i], sig.p, sig.n, &valid),
            CK_OK);
        assert_false(valid);

        sig.p[10] ^= 0x80;
        assert_int_equal(ck_rsa_verify_digest(pub, algs[i], digest, dlen[i], sig.p, sig.n, &valid),
                         CK_OK);
        assert_false(valid);
        sig.p[10] ^= 0x80;
        digest[0] ^= 1;
        assert_int_equal(ck_rsa_verify_digest(pub, algs[i], digest, dlen[i], sig.p, sig.n, &valid),
                         CK_OK);
        assert_false(valid);
        assert_int_equal(
            ck_rsa_verify_digest(pub, algs[i], digest, dlen[i], sig.p, sig.n - 1, &valid), CK_OK);
        assert_false(valid);

        /* Wrong digest sizes are caller errors. */
        assert_int_equal(ck_rsa_sign_digest(shared_rsa, algs[i], digest, dlen[i] - 1, &sig2),
                         CK_EINVAL);
        assert_int_equal(
            ck_rsa_verify_digest(pub, algs[i], digest, dlen[i] + 1, sig.p, sig.n, &valid),
            CK_EINVAL);
        /* A public key cannot sign. */
        assert_int_equal(ck_rsa_sign_digest(pub, algs[i], digest, dlen[i], &sig2), CK_EINVAL);
        ck_buf_free(&sig);
    }
    ck_rsa_free(pub);
    ck_buf_free(&n);
    ck_buf_free(&e);
}

static void test_rsa_jwk_public_roundtrip(void **state)
{
    struct ck_buf n = {0}, e = {0}, ct = {0};
    assert_int_equal(ck_rsa_public_ne(shared_rsa, &n, &e), CK_OK);
    assert_int_equal(n.n, 256);
    assert_int_not_equal(n.p[0], 0);
    struct ck_rsa_jwk jwk = {.n = n, .e = e};
    struct ck_rsa *pub = NULL;
    assert_int_equal(ck_rsa_from_jwk(&jwk, &pub), CK_OK);
    assert_false(ck_rsa_has_private(pub));
    assert_int_equal(ck_rsa_bits(pub), 2048);

    const enum ck_rsa_enc algs[] = {CK_RSA_OAEP_256, CK_RSA_OAEP, CK_RSA1_5};
    for (size_t i = 0; i < 3; i++) {
        struct ck_secret pt = {0};
        assert_int_equal(ck_rsa_encrypt(pub, algs[i], NULL, 0, secret_msg, 32, &ct), CK_OK);
        assert_int_equal(ck_rsa_decrypt(shared_rsa, algs[i], NULL, 0, ct.p, ct.n, &pt), CK_OK);
        assert_memory_equal(pt.p, secret_msg, 32);
        ck_secret_free(&pt);
        /* The public half cannot decrypt. */
        assert_int_equal(ck_rsa_decrypt(pub, algs[i], NULL, 0, ct.p, ct.n, &pt), CK_EINVAL);
        ck_buf_free(&ct);
    }
    struct ck_secret d = {0};
    assert_int_equal(ck_rsa_private_d(pub, &d), CK_EINVAL);
    assert_int_equal(ck_rsa_private_d(shared_rsa, &d), CK_OK);
    assert_true(d.n > 200 && d.n <= 256);
    ck_secret_free(&d);

    /* n and e are required; an even modulus is not a key. */
    struct ck_rsa *k = NULL;
    struct ck_rsa_jwk no_e = {.n = n};
    assert_int_equal(ck_rsa_from_jwk(&no_e, &k), CK_EINVAL);
    n.p[n.n - 1] &= 0xfe;
    assert_int_equal(ck_rsa_from_jwk(&jwk, &k), CK_EINVAL);
    assert_null(k);
    ck_rsa_free(pub);
    ck_buf_free(&n);
    ck_buf_free(&e);
}

struct jwk_fixture {
    json_t *root;
    struct ck_rsa_jwk jwk;
    struct ck_buf ct, msg;
};

/* The Wycheproof RSA-OAEP-256 key as a JWK, with its first non-empty vector. */
static void jwk_fixture_load(struct jwk_fixture *f)
{
    f->root = load_vectors("rsa_oaep_2048_sha256_mgf1sha256_test.json");
    json_t *group = json_array_get(json_object_get(f->root, "testGroups"), 0);
    json_t *j = json_object_get(group, "privateKeyJwk");
    f->jwk.n = b64_field(j, "n");
    f->jwk.e = b64_field(j, "e");
    f->jwk.d = b64_field(j, "d");
    f->jwk.p = b64_field(j, "p");
    f->jwk.q = b64_field(j, "q");
    f->jwk.dp = b64_field(j, "dp");
    f->jwk.dq = b64_field(j, "dq");
    f->jwk.qi = b64_field(j, "qi");
    json_t *tests = json_object_get(group, "tests");
    for (size_t i = 0; i < json_array_size(tests); i++) {
        json_t *tc = json_array_get(tests, i);
        if (strcmp(str_field(tc, "result"), "valid") == 0 && strlen(str_field(tc, "msg")) > 0 &&
            strlen(str_field(tc, "label")) == 0) {
            f->ct = hex_field(tc, "ct");
            f->msg = hex_field(tc, "msg");
            return;
        }
    }
    fail_msg("no usable vector for the JWK test");
}

static void jwk_fixture_free(struct jwk_fixture *f)
{
    struct ck_buf *all[] = {&f->jwk.n,  &f->jwk.e,  &f->jwk.d,  &f->jwk.p, &f->jwk.q,
                            &f->jwk.dp, &f->jwk.dq, &f->jwk.qi, &f->ct,    &f->msg};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++)
        ck_buf_free(all[i]);
    json_decref(f->root);
}

static void expect_jwk_decrypts(const struct ck_rsa_jwk *jwk, const struct jwk_fixture *f)
{
    struct ck_rsa *k = NULL;
    if (ck_rsa_from_jwk(jwk, &k) != CK_OK)
        fail_msg("JWK import failed: %s", ck_err_msg());
    assert_true(ck_rsa_has_private(k));
    struct ck_secret pt = {0}, d = {0};
    assert_int_equal(ck_rsa_decrypt(k, CK_RSA_OAEP_256, NULL, 0, f->ct.p, f->ct.n, &pt), CK_OK);
    assert_true(buf_eq(pt.p, pt.n, &f->msg));
    assert_int_equal(ck_rsa_private_d(k, &d), CK_OK);
    assert_true(buf_eq(d.p, d.n, &f->jwk.d));
    ck_secret_free(&pt);
    ck_secret_free(&d);
    ck_rsa_free(k);
}

static void test_rsa_jwk_private_import(void **state)
{
    struct jwk_fixture f = {0};
    jwk_fixture_load(&f);
    expect_jwk_decrypts(&f.jwk, &f);

    /* dp, dq and qi are optional. */
    struct ck_rsa_jwk minimal = {
        .n = f.jwk.n, .e = f.jwk.e, .d = f.jwk.d, .p = f.jwk.p, .q = f.jwk.q};
    expect_jwk_decrypts(&minimal, &f);

    /* A d that does not belong to n and e is refused, whether or not the
     * CRT values (which alone would still decrypt) are supplied. */
    struct ck_rsa *k = NULL;
    f.jwk.d.p[f.jwk.d.n - 1] ^= 0x02;
    minimal.d = f.jwk.d;
    assert_int_equal(ck_rsa_from_jwk(&f.jwk, &k), CK_EINVAL);
    assert_int_equal(ck_rsa_from_jwk(&minimal, &k), CK_EINVAL);
    f.jwk.d.p[f.jwk.d.n - 1] ^= 0x02;

    /* So is a wrong CRT value, and a private key without its primes. */
    f.jwk.qi.p[0] ^= 0x01;
    assert_int_equal(ck_rsa_from_jwk(&f.jwk, &k), CK_EINVAL);
    f.jwk.qi.p[0] ^= 0x01;
    struct ck_rsa_jwk no_q = {.n = f.jwk.n, .e = f.jwk.e, .d = f.jwk.d, .p = f.jwk.p};
    assert_int_equal(ck_rsa_from_jwk(&no_q, &k), CK_EINVAL);
    assert_null(k);
    jwk_fixture_free(&f);
}

static void test_rsa_pem_and_der(void **state)
{
    char *pem = NULL;
    assert_int_equal(ck_rsa_public_pem(shared_rsa, &pem), CK_OK);
    assert_true(strncmp(pem, "-----BEGIN PUBLIC KEY-----\n", 27) == 0);
    assert_non_null(strstr(pem, "-----END PUBLIC KEY-----"));
    free(pem);

    struct ck_secret der = {0};
    assert_int_equal(ck_rsa_private_der(shared_rsa, &der), CK_OK);
    assert_true(der.n > 1100 && der.p[0] == 0x30);
    struct ck_rsa *k = NULL;
    assert_int_equal(ck_rsa_from_der(der.p, der.n, &k), CK_OK);
    assert_true(ck_rsa_has_private(k));
    assert_int_equal(ck_rsa_bits(k), 2048);

    /* Same key: what one signs the other verifies, and n matches. */
    uint8_t digest[32] = {1, 2, 3};
    struct ck_buf sig = {0}, n1 = {0}, e1 = {0}, n2 = {0}, e2 = {0};
    bool valid = false;
    assert_int_equal(ck_rsa_sign_digest(k, CK_PS256, digest, 32, &sig), CK_OK);
    assert_int_equal(ck_rsa_verify_digest(shared_rsa, CK_PS256, digest, 32, sig.p, sig.n, &valid),
                     CK_OK);
    assert_true(valid);
    assert_int_equal(ck_rsa_public_ne(shared_rsa, &n1, &e1), CK_OK);
    assert_int_equal(ck_rsa_public_ne(k, &n2, &e2), CK_OK);
    assert_int_equal(n1.n, n2.n);
    assert_memory_equal(n1.p, n2.p, n1.n);
    ck_rsa_free(k);
    k = NULL;

    /* Trailing bytes and garbage are refused. */
    struct ck_buf longer = {0};
    assert_int_equal(ck_buf_set(&longer, der.p, der.n), CK_OK);
    assert_int_equal(ck_buf_append(&longer, "\0", 1), CK_OK);
    assert_int_equal(ck_rsa_from_der(longer.p, longer.n, &k), CK_EINVAL);
    assert_int_equal(ck_rsa_from_der((const uint8_t *)"\x30\x03\x02\x01\x00", 5, &k), CK_EINVAL);
    assert_int_equal(ck_rsa_from_der((const uint8_t *)"", 0, &k), CK_EINVAL);
    assert_null(k);

    /* An Ed25519 SubjectPublicKeyInfo is not an RSA key. */
    struct ck_buf ed = hex("302a300506032b65700321007d4d0e7f6153a69b6242b522abbee685fda4420f8834b1"
                           "08c3bdae369ef549fa");
    assert_int_equal(ck_rsa_from_der(ed.p, ed.n, &k), CK_EINVAL);
    assert_null(k);

    ck_buf_free(&ed);
    ck_buf_free(&longer);
    ck_buf_free(&sig);
    ck_buf_free(&n1);
    ck_buf_free(&e1);
    ck_buf_free(&n2);
    ck_buf_free(&e2);
    ck_secret_free(&der);
}

/* PKCS#8 parsing checks the arithmetic of the key it reads. */
static void test_rsa_der_inconsistent_refused(void **state)
{
    json_t *root = load_vectors("rsa_pkcs1_2048_test.json");
    json_t *group = json_array_get(json_object_get(root, "testGroups"), 0);
    struct ck_buf der = hex_field(group, "privateKeyPkcs8"),
                  d = hex_field(json_object_get(group, "privateKey"), "privateExponent");
    struct ck_rsa *k = NULL;
    assert_int_equal(ck_rsa_from_der(der.p, der.n, &k), CK_OK);
    ck_rsa_free(k);
    k = NULL;

    uint8_t *at = memmem(der.p, der.n, d.p, d.n);
    assert_non_null(at);
    at[d.n / 2] ^= 0x10; /* d no longer inverts e */
    assert_int_equal(ck_rsa_from_der(der.p, der.n, &k), CK_EINVAL);
    assert_string_equal(ck_err_msg(), "RSA private key is inconsistent");
    at[d.n / 2] ^= 0x10;
    der.p[der.n - 1] ^= 0x01; /* the last component: qi */
    assert_int_equal(ck_rsa_from_der(der.p, der.n, &k), CK_EINVAL);
    assert_null(k);
    ck_buf_free(&der);
    ck_buf_free(&d);
    json_decref(root);
}

/* ====================================================================== */
/* AES                                                                    */
/* ====================================================================== */

static void test_aes_kw_kwp(void **state)
{
    /* RFC 3394 §4.6 and RFC 5649 §6 known answers. */
    struct ck_buf kek = hex("000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F"),
                  key = hex("00112233445566778899AABBCCDDEEFF000102030405060708090A0B0C0D0E0F"),
                  want = hex("28C9F404C4B810F4CBCCB35CFB87F8263F5786E2D80ED326CBC7F0E71A99F43BFB98"
                             "8B9B7A02DD21"),
                  out = {0};
    assert_int_equal(ck_aes_kw_wrap(kek.p, kek.n, key.p, key.n, &out), CK_OK);
    assert_true(buf_eq(out.p, out.n, &want));
    ck_buf_free(&out);
    ck_buf_free(&kek);
    ck_buf_free(&key);
    ck_buf_free(&want);
    kek = hex("5840df6e29b02af1ab493b705bf16ea1ae8338f4dcc176a8");
    key = hex("466f7250617369");
    want = hex("afbeb0f07dfbf5419200f2ccb50bb24f");
    assert_int_equal(ck_aes_kwp_wrap(kek.p, kek.n, key.p, key.n, &out), CK_OK);
    assert_true(buf_eq(out.p, out.n, &want));
    ck_buf_free(&out);
    ck_buf_free(&kek);
    ck_buf_free(&key);
    ck_buf_free(&want);

    uint8_t k[32], data[72];
    assert_int_equal(ck_rand_bytes(k, sizeof k), CK_OK);
    assert_int_equal(ck_rand_bytes(data, sizeof data), CK_OK);
    const size_t keklens[] = {16, 24, 32};
    for (size_t ki = 0; ki < 3; ki++) {
        for (size_t n = 1; n <= sizeof data; n++) {
            struct ck_secret back = {0};
            /* KWP: any non-empty length */
            assert_int_equal(ck_aes_kwp_wrap(k, keklens[ki], data, n, &out), CK_OK);
            assert_int_equal(out.n, (n + 7) / 8 * 8 + 8);
            assert_int_equal(ck_aes_kwp_unwrap(k, keklens[ki], out.p, out.n, &back), CK_OK);
            assert_int_equal(back.n, n);
            assert_memory_equal(back.p, data, n);
            ck_secret_free(&back);
            out.p[out.n - 1] ^= 1;
            assert_int_equal(ck_aes_kwp_unwrap(k, keklens[ki], out.p, out.n, &back), CK_EINTEGRITY);
            assert_string_equal(ck_err_msg(), "key unwrap failed");
            ck_buf_free(&out);

            /* KW: 16+ bytes, multiples of 8 */
            ck_err rc = ck_aes_kw_wrap(k, keklens[ki], data, n, &out);
            if (n < 16 || n % 8) {
                assert_int_equal(rc, CK_EINVAL);
                continue;
            }
            assert_int_equal(rc, CK_OK);
            assert_int_equal(out.n, n + 8);
            assert_int_equal(ck_aes_kw_unwrap(k, keklens[ki], out.p, out.n, &back), CK_OK);
            assert_int_equal(back.n, n);
            assert_memory_equal(back.p, data, n);
            ck_secret_free(&back);
            out.p[0] ^= 1;
            assert_int_equal(ck_aes_kw_unwrap(k, keklens[ki], out.p, out.n, &back), CK_EINTEGRITY);
            assert_string_equal(ck_err_msg(), "key unwrap failed");
            /* a wrong length gives the very same answer */
            assert_int_equal(ck_aes_kw_unwrap(k, keklens[ki], out.p, out.n - 1, &back),
                             CK_EINTEGRITY);
            assert_string_equal(ck_err_msg(), "key unwrap failed");
            assert_null(back.p);
            ck_buf_free(&out);
        }
    }
    assert_int_equal(ck_aes_kw_wrap(k, 20, data, 16, &out), CK_EINVAL);
    assert_int_equal(ck_aes_kwp_wrap(k, 16, data, 0, &out), CK_EINVAL);
    assert_null(out.p);
}

static void test_aes_gcm_tamper(void **state)
{
    uint8_t key[32], iv[12], pt[100], ct[100], back[100], tag[16];
    const uint8_t aad[] = "vault/key/version";
    assert_int_equal(ck_rand_bytes(key, sizeof key), CK_OK);
    assert_int_equal(ck_rand_bytes(iv, sizeof iv), CK_OK);
    assert_int_equal(ck_rand_bytes(pt, sizeof pt), CK_OK);
    assert_int_equal(ck_aes_gcm_encrypt(key, 32, iv, 12, aad, sizeof aad, pt, sizeof pt, ct, tag),
                     CK_OK);
    assert_int_equal(
        ck_aes_gcm_decrypt(key, 32, iv, 12, aad, sizeof aad, ct, sizeof ct, tag, 16, back), CK_OK);
    assert_memory_equal(back, pt, sizeof pt);

    ct[50] ^= 4;
    assert_int_equal(
        ck_aes_gcm_decrypt(key, 32, iv, 12, aad, sizeof aad, ct, sizeof ct, tag, 16, back),
        CK_EINTEGRITY);
    assert_string_equal(ck_err_msg(), "decryption failed");
    assert_true(all_zero(back, sizeof back)); /* no unauthenticated plaintext */
    ct[50] ^= 4;
    tag[15] ^= 1;
    assert_int_equal(
        ck_aes_gcm_decrypt(key, 32, iv, 12, aad, sizeof aad, ct, sizeof ct, tag, 16, back),
        CK_EINTEGRITY);
    tag[15] ^= 1;
    assert_int_equal(
        ck_aes_gcm_decrypt(key, 32, iv, 12, aad, sizeof aad - 1, ct, sizeof ct, tag, 16, back),
        CK_EINTEGRITY);
    assert_int_equal(
        ck_aes_gcm_decrypt(key, 32, iv, 12, aad, sizeof aad, ct, sizeof ct, tag, 12, back),
        CK_EINTEGRITY);
    assert_string_equal(ck_err_msg(), "decryption failed");

    /* Parameter errors are caller errors. */
    assert_int_equal(ck_aes_gcm_encrypt(key, 20, iv, 12, NULL, 0, pt, 16, ct, tag), CK_EINVAL);
    assert_int_equal(ck_aes_gcm_encrypt(key, 32, iv, 0, NULL, 0, pt, 16, ct, tag), CK_EINVAL);

    /* Empty message, empty aad. */
    assert_int_equal(ck_aes_gcm_encrypt(key, 16, iv, 12, NULL, 0, NULL, 0, NULL, tag), CK_OK);
    assert_int_equal(ck_aes_gcm_decrypt(key, 16, iv, 12, NULL, 0, NULL, 0, tag, 16, NULL), CK_OK);
}

static void test_seal_unseal(void **state)
{
    uint8_t key[32], other[32];
    assert_int_equal(ck_rand_bytes(key, sizeof key), CK_OK);
    memcpy(other, key, sizeof key);
    other[0] ^= 1;
    const char aad[] = "keys/k1/v1";
    const uint8_t msg[] = "the private key encoding";
    struct ck_buf box = {0}, box2 = {0};
    struct ck_secret out = {0};

    assert_int_equal(ck_seal(key, aad, strlen(aad), msg, sizeof msg, &box), CK_OK);
    assert_int_equal(box.n, 1 + 12 + sizeof msg + 16);
    assert_int_equal(box.p[0], 0x01);
    assert_int_equal(ck_unseal(key, aad, strlen(aad), box.p, box.n, &out), CK_OK);
    assert_int_equal(out.n, sizeof msg);
    assert_memory_equal(out.p, msg, sizeof msg);
    ck_secret_free(&out);

    /* Fresh nonce each time. */
    assert_int_equal(ck_seal(key, aad, strlen(aad), msg, sizeof msg, &box2), CK_OK);
    assert_memory_not_equal(box.p + 1, box2.p + 1, 12);
    ck_buf_free(&box2);

    assert_int_equal(ck_unseal(key, "keys/k1/v2", 10, box.p, box.n, &out), CK_EINTEGRITY);
    assert_string_equal(ck_err_msg(), "decryption failed");
    assert_int_equal(ck_unseal(other, aad, strlen(aad), box.p, box.n, &out), CK_EINTEGRITY);
    for (size_t i = 0; i < box.n; i++) { /* every byte, version included */
        box.p[i] ^= 0x20;
        assert_int_equal(ck_unseal(key, aad, strlen(aad), box.p, box.n, &out), CK_EINTEGRITY);
        assert_string_equal(ck_err_msg(), "decryption failed");
        box.p[i] ^= 0x20;
    }
    for (size_t n = 0; n < box.n; n++) { /* every truncation */
        assert_int_equal(ck_unseal(key, aad, strlen(aad), box.p, n, &out), CK_EINTEGRITY);
        assert_string_equal(ck_err_msg(), "decryption failed");
    }
    assert_null(out.p);
    ck_buf_free(&box);

    /* Nothing to seal is still authenticated. */
    assert_int_equal(ck_seal(key, NULL, 0, NULL, 0, &box), CK_OK);
    assert_int_equal(box.n, 29);
    assert_int_equal(ck_unseal(key, NULL, 0, box.p, box.n, &out), CK_OK);
    assert_int_equal(out.n, 0);
    ck_secret_free(&out);
    assert_int_equal(ck_unseal(key, "x", 1, box.p, box.n, &out), CK_EINTEGRITY);
    ck_buf_free(&box);
}

/* ====================================================================== */
/* Ed25519                                                                */
/* ====================================================================== */

static void test_ed25519_known_answer(void **state)
{
    /* RFC 8032 §7.1, test 1 */
    struct ck_buf seed = hex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60"),
                  pub = hex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"),
                  sig = hex("e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8"
                            "821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b");
    uint8_t p[32], s[64];
    assert_int_equal(ck_ed25519_public(seed.p, p), CK_OK);
    assert_memory_equal(p, pub.p, 32);
    assert_int_equal(ck_ed25519_sign(seed.p, "", 0, s), CK_OK);
    assert_memory_equal(s, sig.p, 64);
    assert_int_equal(ck_ed25519_verify(pub.p, "", 0, sig.p, sig.n), CK_OK);
    ck_buf_free(&seed);
    ck_buf_free(&pub);
    ck_buf_free(&sig);
}

static void test_ed25519_sign_verify(void **state)
{
    uint8_t pub[32], sig[64];
    struct ck_secret seed = {0};
    assert_int_equal(ck_ed25519_keygen(pub, &seed), CK_OK);
    assert_int_equal(seed.n, 32);
    const char msg[] = "audit record 42";
    assert_int_equal(ck_ed25519_sign(seed.p, msg, strlen(msg), sig), CK_OK);
    assert_int_equal(ck_ed25519_verify(pub, msg, strlen(msg), sig, 64), CK_OK);
    assert_int_equal(ck_ed25519_verify(pub, msg, strlen(msg) - 1, sig, 64), CK_EINTEGRITY);
    assert_int_equal(ck_ed25519_verify(pub, msg, strlen(msg), sig, 63), CK_EINTEGRITY);
    sig[5] ^= 1;
    assert_int_equal(ck_ed25519_verify(pub, msg, strlen(msg), sig, 64), CK_EINTEGRITY);
    sig[5] ^= 1;
    uint8_t pub2[32];
    struct ck_secret seed2 = {0};
    assert_int_equal(ck_ed25519_keygen(pub2, &seed2), CK_OK);
    assert_memory_not_equal(seed.p, seed2.p, 32);
    assert_int_equal(ck_ed25519_verify(pub2, msg, strlen(msg), sig, 64), CK_EINTEGRITY);
    ck_secret_free(&seed);
    ck_secret_free(&seed2);
}

static void test_ed25519_pem(void **state)
{
    uint8_t pub[32], back[32];
    struct ck_secret seed = {0}, pem = {0}, seed_back = {0};
    char *pubpem = NULL;
    assert_int_equal(ck_ed25519_keygen(pub, &seed), CK_OK);

    assert_int_equal(ck_ed25519_public_pem(pub, &pubpem), CK_OK);
    assert_true(strncmp(pubpem, "-----BEGIN PUBLIC KEY-----\n", 27) == 0);
    assert_int_equal(ck_ed25519_public_from_pem(pubpem, back), CK_OK);
    assert_memory_equal(back, pub, 32);
    free(pubpem);

    assert_int_equal(ck_ed25519_private_pem(seed.p, &pem), CK_OK);
    assert_int_equal(strlen((const char *)pem.p), pem.n);
    assert_true(strncmp((const char *)pem.p, "-----BEGIN PRIVATE KEY-----\n", 28) == 0);
    assert_int_equal(ck_ed25519_private_from_pem((const char *)pem.p, &seed_back), CK_OK);
    assert_int_equal(seed_back.n, 32);
    assert_memory_equal(seed_back.p, seed.p, 32);
    ck_secret_free(&pem);
    ck_secret_free(&seed_back);
    ck_secret_free(&seed);

    /* RFC 8410 §10.3 example key pair. */
    const char *rfc_priv = "-----BEGIN PRIVATE KEY-----\n"
                           "MC4CAQAwBQYDK2VwBCIEINTuctv5E1hK1bbY8fdp+K06/nwoy/HU++CXqI9EdVhC\n"
                           "-----END PRIVATE KEY-----\n";
    const char *rfc_pub = "-----BEGIN PUBLIC KEY-----\n"
                          "MCowBQYDK2VwAyEAGb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE=\n"
                          "-----END PUBLIC KEY-----\n";
    struct ck_buf want_seed =
        hex("d4ee72dbf913584ad5b6d8f1f769f8ad3afe7c28cbf1d4fbe097a88f44755842");
    assert_int_equal(ck_ed25519_private_from_pem(rfc_priv, &seed_back), CK_OK);
    assert_true(buf_eq(seed_back.p, seed_back.n, &want_seed));
    assert_int_equal(ck_ed25519_public(seed_back.p, pub), CK_OK);
    assert_int_equal(ck_ed25519_public_from_pem(rfc_pub, back), CK_OK);
    assert_memory_equal(back, pub, 32);
    ck_secret_free(&seed_back);
    ck_buf_free(&want_seed);

    /* Not Ed25519, not PEM. */
    char *rsapem = NULL;
    assert_int_equal(ck_rsa_public_pem(shared_rsa, &rsapem), CK_OK);
    assert_int_equal(ck_ed25519_public_from_pem(rsapem, back), CK_EINVAL);
    free(rsapem);
    assert_int_equal(ck_ed25519_public_from_pem("hello", back), CK_EINVAL);
    assert_int_equal(ck_ed25519_private_from_pem(rfc_pub, &seed_back), CK_EINVAL);
    assert_null(seed_back.p);
}

/* ====================================================================== */
/* TLS certificate                                                        */
/* ====================================================================== */

static char *run_cmd(const char *cmd)
{
    FILE *f = popen(cmd, "r");
    if (!f)
        fail_msg("cannot run %s", cmd);
    struct ck_buf out = {0};
    char chunk[512];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
        assert_int_equal(ck_buf_append(&out, chunk, n), CK_OK);
    int status = pclose(f);
    assert_int_equal(ck_buf_append(&out, "", 1), CK_OK);
    if (status != 0)
        fail_msg("command failed (%d): %s\n%s", status, cmd, (char *)out.p);
    return (char *)out.p;
}

static char *write_temp(const char *text)
{
    char *path = ck_strdup("/tmp/ck_test_crypto_XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    size_t len = strlen(text);
    assert_int_equal(write(fd, text, len), (ssize_t)len);
    close(fd);
    return path;
}

static void test_tls_selfsigned(void **state)
{
    const char *dns[] = {"localhost", "*.vault.localhost"};
    const char *ips[] = {"127.0.0.1", "::1"};
    char *cert = NULL;
    struct ck_secret key = {0};
    assert_int_equal(ck_tls_selfsigned(dns, 2, ips, 2, &cert, &key), CK_OK);
    assert_true(strncmp(cert, "-----BEGIN CERTIFICATE-----\n", 28) == 0);
    assert_true(strncmp((const char *)key.p, "-----BEGIN PRIVATE KEY-----\n", 28) == 0);
    assert_int_equal(strlen((const char *)key.p), key.n);

    char *certfile = write_temp(cert), *keyfile = write_temp((const char *)key.p);
    char *cmd = ck_sprintf("openssl x509 -noout -ext subjectAltName -in %s 2>&1", certfile);
    char *out = run_cmd(cmd);
    assert_non_null(strstr(out, "DNS:localhost"));
    assert_non_null(strstr(out, "DNS:*.vault.localhost"));
    assert_non_null(strstr(out, "IP Address:127.0.0.1"));
    assert_non_null(strstr(out, "IP Address:0:0:0:0:0:0:0:1"));
    free(out);
    free(cmd);

    /* A trust anchor for itself: what curl/Node do with a CA file. */
    cmd = ck_sprintf("openssl verify -CAfile %s %s 2>&1", certfile, certfile);
    out = run_cmd(cmd);
    assert_non_null(strstr(out, ": OK"));
    free(out);
    free(cmd);

    cmd = ck_sprintf("openssl x509 -noout -text -in %s 2>&1", certfile);
    out = run_cmd(cmd);
    assert_non_null(strstr(out, "Version: 3"));
    assert_non_null(strstr(out, "CA:TRUE"));
    assert_non_null(strstr(out, "Certificate Sign"));
    assert_non_null(strstr(out, "TLS Web Server Authentication"));
    assert_non_null(strstr(out, "sha256WithRSAEncryption"));
    assert_non_null(strstr(out, "Subject: CN = localhost"));
    free(out);
    free(cmd);

    /* The key belongs to the certificate. */
    cmd = ck_sprintf("openssl x509 -noout -pubkey -in %s", certfile);
    char *certpub = run_cmd(cmd);
    free(cmd);
    cmd = ck_sprintf("openssl pkey -pubout -in %s", keyfile);
    char *keypub = run_cmd(cmd);
    free(cmd);
    assert_string_equal(certpub, keypub);
    free(certpub);
    free(keypub);

    unlink(certfile);
    unlink(keyfile);
    free(certfile);
    free(keyfile);
    free(cert);
    ck_secret_free(&key);

    /* Bad names are refused, not encoded. */
    const char *bad_ip[] = {"300.1.1.1"};
    const char *bad_dns[] = {"a,DNS:evil.example"};
    assert_int_equal(ck_tls_selfsigned(dns, 1, bad_ip, 1, &cert, &key), CK_EINVAL);
    assert_int_equal(ck_tls_selfsigned(bad_dns, 1, NULL, 0, &cert, &key), CK_EINVAL);
    assert_int_equal(ck_tls_selfsigned(NULL, 0, NULL, 0, &cert, &key), CK_EINVAL);
    assert_null(key.p);
}

/* ---------- fingerprints of destroyed blobs ---------- */

/* A blob is found wherever it lies in a file — at the start, across the
 * scanner's 8 MiB window edge, at the very end — and a blob that differs in
 * one byte after its head is not. */
static void test_blob_print_scan(void **state)
{
    (void)state;
    char path[] = "/tmp/ck-prints-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    size_t size = (9u << 20) + 1000;
    uint8_t *data = malloc(size);
    assert_int_equal(ck_rand_bytes(data, size), CK_OK);
    uint8_t blob[3][300];
    for (int i = 0; i < 3; i++)
        assert_int_equal(ck_rand_bytes(blob[i], sizeof blob[i]), CK_OK);
    size_t at[3] = {0, (8u << 20) - 100, size - sizeof blob[2]};
    for (int i = 0; i < 3; i++)
        memcpy(data + at[i], blob[i], sizeof blob[i]);
    assert_int_equal(write(fd, data, size), (ssize_t)size);
    close(fd);

    struct ck_blob_print v[5];
    for (int i = 0; i < 3; i++)
        assert_int_equal(ck_blob_print_make("blob", false, blob[i], sizeof blob[i], &v[i]), CK_OK);
    uint8_t near[300];
    memcpy(near, blob[1], sizeof near);
    near[200] ^= 1; /* same head, other bytes */
    assert_int_equal(ck_blob_print_make("near", false, near, sizeof near, &v[3]), CK_OK);
    uint8_t absent[64];
    assert_int_equal(ck_rand_bytes(absent, sizeof absent), CK_OK);
    assert_int_equal(ck_blob_print_make("absent", true, absent, sizeof absent, &v[4]), CK_OK);
    assert_int_equal(v[4].len, 64);
    assert_true(v[4].availability_store);

    bool found[5] = {false};
    int64_t bytes = 0;
    assert_int_equal(ck_blob_print_scan(path, v, 5, found, &bytes), CK_OK);
    assert_int_equal(bytes, (int64_t)size);
    assert_true(found[0] && found[1] && found[2]);
    assert_false(found[3]);
    assert_false(found[4]);

    /* A missing file scans as empty; a blob shorter than a head is refused. */
    unlink(path);
    bool none[5] = {false};
    assert_int_equal(ck_blob_print_scan(path, v, 5, none, &bytes), CK_OK);
    assert_int_equal(bytes, 0);
    for (int i = 0; i < 5; i++)
        assert_false(none[i]);
    assert_int_equal(ck_blob_print_make("short", false, absent, 7, &v[0]), CK_EINVAL);
    free(data);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_wycheproof_every_file_has_a_runner),
        cmocka_unit_test(test_wycheproof_aes_gcm),
        cmocka_unit_test(test_wycheproof_aes_kwp),
        cmocka_unit_test(test_wycheproof_aes_wrap),
        cmocka_unit_test(test_wycheproof_hkdf_sha256),
        cmocka_unit_test(test_wycheproof_ed25519),
        cmocka_unit_test(test_wycheproof_rsa_oaep_2048_sha1),
        cmocka_unit_test(test_wycheproof_rsa_oaep_2048_sha256),
        cmocka_unit_test(test_wycheproof_rsa_oaep_3072_sha256),
        cmocka_unit_test(test_wycheproof_rsa_oaep_4096_sha256),
        cmocka_unit_test(test_wycheproof_rsa_pkcs1_2048),
        cmocka_unit_test(test_wycheproof_rsa_pss_2048_sha256),
        cmocka_unit_test(test_wycheproof_rsa_signature_2048_sha256),
        cmocka_unit_test(test_rand_bytes),
        cmocka_unit_test(test_sha256_hmac_hkdf_known_answers),
        cmocka_unit_test(test_rsa_generate_sizes),
        cmocka_unit_test(test_rsa_encrypt_roundtrips),
        cmocka_unit_test(test_rsa_decrypt_failures_are_uniform),
        cmocka_unit_test(test_rsa_sign_verify_all_algs),
        cmocka_unit_test(test_rsa_jwk_public_roundtrip),
        cmocka_unit_test(test_rsa_jwk_private_import),
        cmocka_unit_test(test_rsa_pem_and_der),
        cmocka_unit_test(test_rsa_der_inconsistent_refused),
        cmocka_unit_test(test_aes_kw_kwp),
        cmocka_unit_test(test_aes_gcm_tamper),
        cmocka_unit_test(test_seal_unseal),
        cmocka_unit_test(test_ed25519_known_answer),
        cmocka_unit_test(test_ed25519_sign_verify),
        cmocka_unit_test(test_ed25519_pem),
        cmocka_unit_test(test_tls_selfsigned),
        cmocka_unit_test(test_blob_print_scan),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
