/* Unit tests for src/base: errors, buffers, secrets, encodings, ids, time. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"

static ck_err fails_with_conflict(void)
{
    return ck_err_set(CK_ECONFLICT, "key %s exists", "k1");
}

static ck_err propagates(int *reached)
{
    CK_TRY(fails_with_conflict());
    *reached = 1;
    return CK_OK;
}

static void test_err_try_propagates_and_keeps_message(void **state)
{
    int reached = 0;
    assert_int_equal(propagates(&reached), CK_ECONFLICT);
    assert_int_equal(reached, 0);
    assert_string_equal(ck_err_msg(), "key k1 exists");
    assert_null(ck_err_code_get());
    ck_err_code("KeyNotFound", "Inner");
    assert_string_equal(ck_err_code_get(), "KeyNotFound");
    assert_string_equal(ck_err_inner_get(), "Inner");
    ck_err_clear();
    assert_string_equal(ck_err_msg(), "");
    assert_null(ck_err_code_get());
    assert_string_equal(ck_err_name(CK_EINVAL), "EINVAL");
}

static void test_b64url_roundtrip_all_lengths(void **state)
{
    uint8_t data[64];
    for (size_t i = 0; i < sizeof data; i++)
        data[i] = (uint8_t)(i * 37 + 250);
    for (size_t n = 0; n <= sizeof data; n++) {
        char *s;
        assert_int_equal(ck_b64url_encode(data, n, &s), CK_OK);
        assert_null(strchr(s, '='));
        assert_null(strchr(s, '+'));
        assert_null(strchr(s, '/'));
        struct ck_buf b = {0};
        assert_int_equal(ck_b64url_decode(s, strlen(s), &b), CK_OK);
        assert_int_equal(b.n, n);
        assert_memory_equal(b.p, data, n);
        ck_buf_free(&b);
        free(s);
    }
}

static void test_b64url_accepts_padding_rejects_garbage(void **state)
{
    struct ck_buf b = {0};
    /* "hello?" -> aGVsbG8_ ; padded variant of "hi" is aGk= */
    assert_int_equal(ck_b64url_decode("aGk=", 4, &b), CK_OK);
    assert_int_equal(b.n, 2);
    assert_memory_equal(b.p, "hi", 2);
    ck_buf_free(&b);
    assert_int_equal(ck_b64url_decode("aGk", 3, &b), CK_OK);
    assert_memory_equal(b.p, "hi", 2);
    ck_buf_free(&b);
    assert_int_equal(ck_b64url_decode("aGVsbG8_", 8, &b), CK_OK);
    assert_memory_equal(b.p, "hello?", 6);
    ck_buf_free(&b);
    assert_int_equal(ck_b64url_decode("aG k", 4, &b), CK_EINVAL);
    assert_int_equal(ck_b64url_decode("a", 1, &b), CK_EINVAL);
    assert_int_equal(ck_b64url_decode("a$bc", 4, &b), CK_EINVAL);
    assert_null(b.p);
}

static void test_hex(void **state)
{
    char out[9];
    ck_hex_encode((const uint8_t *)"\x01\xab\xff\x00", 4, out);
    assert_string_equal(out, "01abff00");
    struct ck_buf b = {0};
    assert_int_equal(ck_hex_decode("01ABff00", &b), CK_OK);
    assert_memory_equal(b.p, "\x01\xab\xff\x00", 4);
    ck_buf_free(&b);
    assert_int_equal(ck_hex_decode("0g", &b), CK_EINVAL);
    assert_int_equal(ck_hex_decode("abc", &b), CK_EINVAL);
}

static void test_secret_is_zeroed_usable_and_freed(void **state)
{
    struct ck_secret s = {0};
    assert_int_equal(ck_secret_alloc(&s, 100), CK_OK);
    for (size_t i = 0; i < s.n; i++)
        assert_int_equal(s.p[i], 0);
    memset(s.p, 0xAA, s.n);
    ck_secret_free(&s);
    assert_null(s.p);
    assert_int_equal(s.n, 0);
    ck_secret_free(&s); /* idempotent */
    assert_int_equal(ck_secret_set(&s, "key", 3), CK_OK);
    assert_memory_equal(s.p, "key", 3);
    ck_secret_free(&s);
}

static bool all_zero(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i])
            return false;
    return true;
}

/* Every size, from the smallest pool class through the classes carved from
 * shared regions, the large pooled classes and the direct mappings beyond
 * them: zeroed, aligned, usable over n bytes, released. */
static void test_secret_sizes(void **state)
{
    static const size_t sizes[] = {
        0,    1,     15,    16,    17,        31,      100,           4095,   4096,
        4097, 65535, 65536, 65537, 200 << 10, 1 << 20, (1 << 20) + 1, 3 << 20};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        struct ck_secret s = {0};
        assert_int_equal(ck_secret_alloc(&s, sizes[i]), CK_OK);
        assert_non_null(s.p);
        assert_int_equal(s.n, sizes[i]);
        assert_int_equal((uintptr_t)s.p % 16, 0);
        assert_true(all_zero(s.p, s.n));
        memset(s.p, 0x5c, s.n);
        ck_secret_free(&s);
        assert_null(s.p);
        assert_int_equal(s.n, 0);
    }
}

/* A freed block comes back (most recently freed first) wiped whole, even
 * the bytes past a length the owner shortened after writing them. */
static void test_secret_reuse_is_wiped(void **state)
{
    static const size_t sizes[] = {24, 100, 3000, 65536, 300 << 10};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        struct ck_secret s = {0};
        assert_int_equal(ck_secret_alloc(&s, sizes[i]), CK_OK);
        memset(s.p, 0xAA, s.n);
        uint8_t *was = s.p;
        s.n = 3; /* as a decryption that sized its output to the maximum does */
        ck_secret_free(&s);
        assert_int_equal(ck_secret_alloc(&s, sizes[i]), CK_OK);
        assert_ptr_equal(s.p, was);
        assert_true(all_zero(s.p, s.n));
        ck_secret_free(&s);
    }
    /* Blocks of one class are distinct while live. */
    struct ck_secret a = {0}, b = {0};
    assert_int_equal(ck_secret_alloc(&a, 64), CK_OK);
    assert_int_equal(ck_secret_alloc(&b, 64), CK_OK);
    assert_ptr_not_equal(a.p, b.p);
    memset(a.p, 1, a.n);
    memset(b.p, 2, b.n);
    assert_int_equal(a.p[63], 1);
    ck_secret_free(&a);
    ck_secret_free(&b);
}

struct churn {
    unsigned seed;
    int bad;
};

/* Keeps up to 8 live secrets of random sizes, each filled with a pattern of
 * its own, and checks every one is intact when freed and zero when made. */
static void *secret_churn(void *arg)
{
    struct churn *c = arg;
    struct ck_secret live[8] = {{0}};
    uint8_t tag[8] = {0};
    for (int round = 0; round < 4000; round++) {
        int slot = (int)(rand_r(&c->seed) % 8);
        struct ck_secret *s = &live[slot];
        if (s->p) {
            for (size_t i = 0; i < s->n; i++)
                if (s->p[i] != tag[slot]) {
                    c->bad++;
                    break;
                }
            ck_secret_free(s);
            continue;
        }
        unsigned r = (unsigned)rand_r(&c->seed);
        size_t n = r % 16 == 0 ? 70000 + r % (400 << 10) : r % 9000;
        if (ck_secret_alloc(s, n) != CK_OK || !all_zero(s->p, n)) {
            c->bad++;
            continue;
        }
        tag[slot] = (uint8_t)(1 + (c->seed & 0xfe));
        memset(s->p, tag[slot], n);
    }
    for (int i = 0; i < 8; i++)
        ck_secret_free(&live[i]);
    return NULL;
}

static void test_secret_threads(void **state)
{
    enum { N = 4 };
    pthread_t t[N];
    struct churn c[N];
    for (int i = 0; i < N; i++) {
        c[i] = (struct churn){.seed = 1234u + (unsigned)i};
        assert_int_equal(pthread_create(&t[i], NULL, secret_churn, &c[i]), 0);
    }
    for (int i = 0; i < N; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(c[i].bad, 0);
    }
}

static void test_ct_equal(void **state)
{
    assert_true(ck_ct_equal("abcd", "abcd", 4));
    assert_false(ck_ct_equal("abcd", "abce", 4));
    assert_true(ck_ct_equal("", "", 0));
}

static void test_uuid(void **state)
{
    char a[37], b[37];
    assert_int_equal(ck_uuid_v4(a), CK_OK);
    assert_int_equal(ck_uuid_v4(b), CK_OK);
    assert_true(ck_uuid_valid(a));
    assert_string_not_equal(a, b);
    assert_int_equal(a[14], '4');
    assert_true(strchr("89ab", a[19]) != NULL);
    assert_false(ck_uuid_valid("not-a-uuid"));
    assert_false(ck_uuid_valid("0123456789012345678901234567890123456"));
}

static void test_duration_and_time(void **state)
{
    int64_t s;
    assert_int_equal(ck_duration_parse("90", &s), CK_OK);
    assert_int_equal(s, 90);
    assert_int_equal(ck_duration_parse("15m", &s), CK_OK);
    assert_int_equal(s, 900);
    assert_int_equal(ck_duration_parse("1h", &s), CK_OK);
    assert_int_equal(s, 3600);
    assert_int_equal(ck_duration_parse("7d", &s), CK_OK);
    assert_int_equal(s, 7 * 86400);
    assert_int_equal(ck_duration_parse("1w", &s), CK_EINVAL);
    assert_int_equal(ck_duration_parse("-1h", &s), CK_EINVAL);
    assert_int_equal(ck_duration_parse("", &s), CK_EINVAL);
    char ts[32];
    ck_time_rfc3339(0, ts);
    assert_string_equal(ts, "1970-01-01T00:00:00Z");
    assert_true(ck_now() > 1700000000);
}

static void test_iso_duration(void **state)
{
    int64_t s;
    assert_int_equal(ck_iso_duration_parse("P90D", &s), CK_OK);
    assert_int_equal(s, 90 * 86400);
    assert_int_equal(ck_iso_duration_parse("PT12H", &s), CK_OK);
    assert_int_equal(s, 12 * 3600);
    assert_int_equal(ck_iso_duration_parse("P1Y2M3DT4H5M6S", &s), CK_OK);
    assert_int_equal(s, 365 * 86400 + 60 * 86400 + 3 * 86400 + 4 * 3600 + 5 * 60 + 6);
    assert_int_equal(ck_iso_duration_parse("PT1M", &s), CK_OK);
    assert_int_equal(s, 60);
    assert_int_equal(ck_iso_duration_parse("P2W", &s), CK_OK);
    assert_int_equal(s, 14 * 86400);
    const char *bad[] = {"", "P", "90D", "PT", "P1H", "PT1D", "P-1D", "P1X", "P1D2"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        assert_int_equal(ck_iso_duration_parse(bad[i], &s), CK_EINVAL);
}

static void test_buf_append(void **state)
{
    struct ck_buf b = {0};
    assert_int_equal(ck_buf_append(&b, "ab", 2), CK_OK);
    assert_int_equal(ck_buf_append(&b, "cde", 3), CK_OK);
    assert_int_equal(b.n, 5);
    assert_memory_equal(b.p, "abcde", 5);
    ck_buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_err_try_propagates_and_keeps_message),
        cmocka_unit_test(test_b64url_roundtrip_all_lengths),
        cmocka_unit_test(test_b64url_accepts_padding_rejects_garbage),
        cmocka_unit_test(test_hex),
        cmocka_unit_test(test_secret_is_zeroed_usable_and_freed),
        cmocka_unit_test(test_secret_sizes),
        cmocka_unit_test(test_secret_reuse_is_wiped),
        cmocka_unit_test(test_secret_threads),
        cmocka_unit_test(test_ct_equal),
        cmocka_unit_test(test_uuid),
        cmocka_unit_test(test_duration_and_time),
        cmocka_unit_test(test_iso_duration),
        cmocka_unit_test(test_buf_append),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
