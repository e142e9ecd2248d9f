/*
 * Unit tests of keyprov without a vault: key URI parsing, the failure
 * classification, the provider's own input checks, and the cache of
 * unwrapped keys (hits, expiry, replace, drop, sweep; run under ASan for
 * leaks of wiped entries).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "keyprov/keyprov.h"

/* ---------- key URIs ---------- */

static void test_uri_valid(void **state)
{
    struct ck_key_uri u;
    assert_int_equal(ck_key_uri_parse("https://contoso-a.vault.localhost:8443/keys/k1", &u), CK_OK);
    assert_string_equal(u.origin, "https://contoso-a.vault.localhost:8443");
    assert_string_equal(u.vault, "contoso-a");
    assert_string_equal(u.name, "k1");
    assert_string_equal(u.version, "");

    assert_int_equal(ck_key_uri_parse("https://contoso-a.vault.azure.net/keys/Root-Key-1/"
                                      "19710f3aeca74f0398effdb1ae164cfa",
                                      &u),
                     CK_OK);
    assert_string_equal(u.origin, "https://contoso-a.vault.azure.net");
    assert_string_equal(u.vault, "contoso-a");
    assert_string_equal(u.name, "Root-Key-1");
    assert_string_equal(u.version, "19710f3aeca74f0398effdb1ae164cfa");

    /* The Azure SDK's "latest version" spelling. */
    assert_int_equal(ck_key_uri_parse("https://v1.vault.localhost:1/keys/k/", &u), CK_OK);
    assert_string_equal(u.name, "k");
    assert_string_equal(u.version, "");
    assert_string_equal(u.origin, "https://v1.vault.localhost:1");

    /* Host names are case-insensitive: one spelling in origin and vault. */
    assert_int_equal(ck_key_uri_parse("HTTPS://Contoso-B.Vault.Localhost:8443/keys/k/abc", &u),
                     CK_OK);
    assert_string_equal(u.origin, "https://contoso-b.vault.localhost:8443");
    assert_string_equal(u.vault, "contoso-b");
    assert_string_equal(u.version, "abc");

    /* An IP literal names the vault by the whole address. */
    assert_int_equal(ck_key_uri_parse("https://127.0.0.1:8443/keys/k", &u), CK_OK);
    assert_string_equal(u.origin, "https://127.0.0.1:8443");
    assert_string_equal(u.vault, "127.0.0.1");
    assert_int_equal(ck_key_uri_parse("https://[::1]:8443/keys/k", &u), CK_OK);
    assert_string_equal(u.origin, "https://[::1]:8443");
    assert_string_equal(u.vault, "[::1]");
    assert_int_equal(ck_key_uri_parse("https://localhost/keys/k", &u), CK_OK);
    assert_string_equal(u.vault, "localhost");
}

static void test_uri_invalid(void **state)
{
    static const char *const bad[] = {
        NULL,
        "",
        "http://contoso-a.vault.localhost:8443/keys/k1", /* not HTTPS */
        "ftp://contoso-a.vault.localhost/keys/k1",
        "contoso-a.vault.localhost/keys/k1",
        "https://contoso-a.vault.localhost:8443",            /* no path */
        "https://contoso-a.vault.localhost:8443/",           /* no /keys/ */
        "https://contoso-a.vault.localhost:8443/secrets/k1", /* not a key */
        "https://contoso-a.vault.localhost:8443/vault/keys/k1",
        "https://contoso-a.vault.localhost:8443/keys/",    /* empty name */
        "https://contoso-a.vault.localhost:8443/keys",     /* no name */
        "https://contoso-a.vault.localhost:8443/keys//v",  /* empty name */
        "https://contoso-a.vault.localhost:8443/keys/k_1", /* name charset */
        "https://contoso-a.vault.localhost:8443/keys/k%201",
        "https://contoso-a.vault.localhost:8443/keys/k1/v1/extra",
        "https://contoso-a.vault.localhost:8443/keys/k1/v1/",
        "https://contoso-a.vault.localhost:8443/keys/k1/0123456789abcdef0123456789abcdef0",
        "https://contoso-a.vault.localhost:8443/keys/k1/v-1",
        "https://contoso-a.vault.localhost:8443/keys/k1?api-version=7.6", /* query */
        "https://contoso-a.vault.localhost:8443/keys/k1/v1?x=1",
        "https://contoso-a.vault.localhost:8443/keys/k1#frag",
        "https://contoso-a.vault.localhost:0/keys/k1", /* port */
        "https://contoso-a.vault.localhost:65536/keys/k1",
        "https://contoso-a.vault.localhost:/keys/k1",
        "https://contoso-a.vault.localhost:8x/keys/k1",
        "https://contoso-a.vault.localhost:123456/keys/k1",
        "https:///keys/k1", /* host */
        "https://:8443/keys/k1",
        "https://user@contoso-a.vault.localhost/keys/k1",
        "https://contoso..vault.localhost/keys/k1",
        "https://contoso_a.vault.localhost/keys/k1",
        "https://[::1/keys/k1",
        "https://[::1]x/keys/k1",
    };
    struct ck_key_uri u;
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        ck_err rc = ck_key_uri_parse(bad[i], &u);
        if (rc != CK_EINVAL)
            fail_msg("'%s' parsed (%s)", bad[i] ? bad[i] : "(null)", ck_err_name(rc));
        assert_true(strlen(ck_err_msg()) > 0);
    }
}

static void test_uri_lengths(void **state)
{
    struct ck_key_uri u;
    char uri[CK_KEY_URI_MAX + 64];
    /* The longest name (127) is fine; 128 is not. */
    char name[129];
    memset(name, 'n', 127);
    name[127] = '\0';
    snprintf(uri, sizeof uri, "https://v.vault.localhost/keys/%s", name);
    assert_int_equal(ck_key_uri_parse(uri, &u), CK_OK);
    assert_string_equal(u.name, name);
    memset(name, 'n', 128);
    name[128] = '\0';
    snprintf(uri, sizeof uri, "https://v.vault.localhost/keys/%s", name);
    assert_int_equal(ck_key_uri_parse(uri, &u), CK_EINVAL);

    /* A URI of CK_KEY_URI_MAX characters or more. */
    memset(uri, 'a', sizeof uri);
    memcpy(uri, "https://v.vault.localhost/keys/", 31);
    uri[CK_KEY_URI_MAX] = '\0';
    assert_int_equal(ck_key_uri_parse(uri, &u), CK_EINVAL);
    assert_non_null(strstr(ck_err_msg(), "too long"));

    /* A host label over 63 characters; 63 is the longest, and names the vault. */
    char host[80];
    memset(host, 'h', 64);
    host[64] = '\0';
    snprintf(uri, sizeof uri, "https://%s.vault.localhost/keys/k", host);
    assert_int_equal(ck_key_uri_parse(uri, &u), CK_EINVAL);
    host[63] = '\0';
    snprintf(uri, sizeof uri, "https://%s.vault.localhost/keys/k", host);
    assert_int_equal(ck_key_uri_parse(uri, &u), CK_OK);
    assert_string_equal(u.vault, host);

    /* A host of 245 characters fits an origin (https:// + 245), but not with
     * a port. */
    char big[246];
    for (int i = 0; i < 245; i++)
        big[i] = i % 50 == 49 ? '.' : 'b';
    big[245] = '\0';
    snprintf(uri, sizeof uri, "https://%s/keys/k", big);
    assert_int_equal(ck_key_uri_parse(uri, &u), CK_OK);
    snprintf(uri, sizeof uri, "https://%s:8443/keys/k", big);
    assert_int_equal(ck_key_uri_parse(uri, &u), CK_EINVAL);
    assert_non_null(strstr(ck_err_msg(), "too long"));
}

/* ---------- classification ---------- */

static void test_classify(void **state)
{
    assert_int_equal(ck_keyprov_classify(CK_OK), CK_OK);
    /* transient */
    assert_int_equal(ck_keyprov_classify(CK_EUNAVAIL), CK_EUNAVAIL);
    assert_int_equal(ck_keyprov_classify(CK_EIO), CK_EUNAVAIL);
    assert_int_equal(ck_keyprov_classify(CK_ENOMEM), CK_EUNAVAIL);
    assert_int_equal(ck_keyprov_classify(CK_EINTERNAL), CK_EUNAVAIL);
    /* denied: 401, 403, 404, and whatever the key refuses */
    assert_int_equal(ck_keyprov_classify(CK_EUNAUTH), CK_EFORBIDDEN);
    assert_int_equal(ck_keyprov_classify(CK_EFORBIDDEN), CK_EFORBIDDEN);
    assert_int_equal(ck_keyprov_classify(CK_ENOTFOUND), CK_EFORBIDDEN);
    assert_int_equal(ck_keyprov_classify(CK_EGONE), CK_EFORBIDDEN);
    assert_int_equal(ck_keyprov_classify(CK_ECONFLICT), CK_EFORBIDDEN);
    assert_int_equal(ck_keyprov_classify(CK_EINTEGRITY), CK_EFORBIDDEN);
    assert_int_equal(ck_keyprov_classify(CK_ECRYPTO), CK_EFORBIDDEN);
    /* the request is wrong */
    assert_int_equal(ck_keyprov_classify(CK_EINVAL), CK_EINVAL);
    assert_int_equal(ck_keyprov_classify(CK_ETOOBIG), CK_EINVAL);
    assert_int_equal(ck_keyprov_classify(CK_EMETHOD), CK_EINVAL);
    /* every error lands in exactly one of the three classes */
    for (int e = 1; e < CK_ERR_COUNT; e++) {
        ck_err c = ck_keyprov_classify((ck_err)e);
        assert_true(c == CK_EUNAVAIL || c == CK_EFORBIDDEN || c == CK_EINVAL);
    }
    assert_int_equal(ck_keyprov_classify((ck_err)999), CK_EUNAVAIL);
}

/* ---------- the provider's own checks (no vault reached) ---------- */

static void test_provider_input_checks(void **state)
{
    struct ck_keyprov *p = NULL;
    struct ck_keyprov_config bad = {.token = "t", .cacert = "/nonexistent/ca.pem"};
    assert_int_equal(ck_keyprov_new(&bad, &p), CK_EINVAL);
    assert_null(p);

    struct ck_keyprov_config cfg = {.token = "tok", .timeout_ms = 200, .retries = -1};
    assert_int_equal(ck_keyprov_new(&cfg, &p), CK_OK);
    uint8_t key[32] = {1};
    struct ck_buf out = {0};
    struct ck_secret sec = {0};
    char kid[CK_KEY_URI_MAX];
    struct ck_root_key_info info;
    assert_int_equal(ck_keyprov_wrap(p, "http://v.vault.localhost/keys/k", key, 32, &out, kid),
                     CK_EINVAL);
    assert_int_equal(ck_keyprov_wrap(p, "https://v.vault.localhost/keys/k", key, 0, &out, kid),
                     CK_EINVAL);
    assert_int_equal(ck_keyprov_get(p, "https://v.vault.localhost/secrets/k", &info), CK_EINVAL);
    /* unwrap needs the version the key was wrapped under */
    assert_int_equal(ck_keyprov_unwrap(p, "https://v.vault.localhost/keys/k", key, 32, &sec),
                     CK_EINVAL);
    assert_non_null(strstr(ck_err_msg(), "versioned"));
    assert_null(sec.p);
    assert_null(out.p);

    ck_keyprov_set_token(p, "another");
    ck_keyprov_set_token(p, NULL);
    struct ck_keyprov_stats st;
    ck_keyprov_stats(p, &st);
    assert_int_equal(st.kept, 0);
    assert_int_equal(st.created, 0);
    ck_keyprov_free(p);
    ck_keyprov_free(NULL);
}

/* ---------- cache ---------- */

static void expect_key(struct ck_keycache *c, const char *id, const uint8_t *want, size_t n)
{
    struct ck_secret s = {0};
    assert_true(ck_keycache_get(c, id, &s));
    assert_int_equal(s.n, n);
    assert_memory_equal(s.p, want, n);
    ck_secret_free(&s);
}

static void test_cache_put_get(void **state)
{
    struct ck_keycache *c = ck_keycache_new(300);
    assert_int_equal(ck_keycache_ttl(c), 300);
    uint8_t a[32], b[32];
    memset(a, 0xa1, sizeof a);
    memset(b, 0xb2, sizeof b);
    struct ck_secret s = {0};
    assert_false(ck_keycache_get(c, "dep-1", &s));
    assert_null(s.p);
    ck_keycache_put(c, "dep-1", a, sizeof a);
    ck_keycache_put(c, "dep-2", b, sizeof b);
    assert_int_equal(ck_keycache_count(c), 2);
    expect_key(c, "dep-1", a, sizeof a);
    expect_key(c, "dep-2", b, sizeof b);
    assert_false(ck_keycache_get(c, "dep-3", &s));
    assert_false(ck_keycache_get(c, NULL, &s));
    /* get copies: the caller's copy outlives the entry */
    assert_true(ck_keycache_get(c, "dep-1", &s));
    ck_keycache_drop(c, "dep-1");
    assert_memory_equal(s.p, a, sizeof a);
    /* a non-empty out is replaced, not leaked */
    assert_true(ck_keycache_get(c, "dep-2", &s));
    assert_memory_equal(s.p, b, sizeof b);
    ck_secret_free(&s);
    ck_keycache_free(c);
}

static void test_cache_replace_drop(void **state)
{
    struct ck_keycache *c = ck_keycache_new(300);
    uint8_t a[32], b[16];
    memset(a, 1, sizeof a);
    memset(b, 2, sizeof b);
    ck_keycache_put(c, "k", a, sizeof a);
    ck_keycache_put(c, "k", b, sizeof b);
    assert_int_equal(ck_keycache_count(c), 1);
    expect_key(c, "k", b, sizeof b);
    ck_keycache_drop(c, "k");
    ck_keycache_drop(c, "k");       /* absent: nothing happens */
    ck_keycache_drop(c, "missing"); /* likewise */
    ck_keycache_drop(c, NULL);
    struct ck_secret s = {0};
    assert_false(ck_keycache_get(c, "k", &s));
    assert_int_equal(ck_keycache_count(c), 0);
    ck_keycache_free(c);
}

static void test_cache_expiry_and_sweep(void **state)
{
    struct ck_keycache *c = ck_keycache_new(1);
    uint8_t a[32];
    memset(a, 7, sizeof a);
    ck_keycache_put(c, "old-1", a, sizeof a);
    ck_keycache_put(c, "old-2", a, sizeof a);
    ck_keycache_put(c, "old-3", a, sizeof a);
    expect_key(c, "old-1", a, sizeof a);
    usleep(1200 * 1000);
    ck_keycache_put(c, "new", a, sizeof a);
    /* get evicts lazily */
    struct ck_secret s = {0};
    assert_false(ck_keycache_get(c, "old-1", &s));
    assert_null(s.p);
    assert_int_equal(ck_keycache_count(c), 3);
    /* sweep evicts the rest of the expired, keeps the fresh */
    ck_keycache_sweep(c);
    assert_int_equal(ck_keycache_count(c), 1);
    assert_false(ck_keycache_get(c, "old-2", &s));
    expect_key(c, "new", a, sizeof a);
    /* replacing refreshes the expiry */
    usleep(600 * 1000);
    ck_keycache_put(c, "new", a, sizeof a);
    usleep(600 * 1000);
    expect_key(c, "new", a, sizeof a);
    ck_keycache_free(c);

    /* ttl 0 caches nothing */
    c = ck_keycache_new(0);
    ck_keycache_put(c, "k", a, sizeof a);
    assert_false(ck_keycache_get(c, "k", &s));
    assert_int_equal(ck_keycache_count(c), 0);
    ck_keycache_free(c);
}

/* Many entries (growth of the table), freed with entries still in it: under
 * ASan this shows no entry or key leaks. */
static void test_cache_many_and_free(void **state)
{
    struct ck_keycache *c = ck_keycache_new(300);
    char id[32];
    uint8_t key[32];
    for (int i = 0; i < 3000; i++) {
        snprintf(id, sizeof id, "dep-%d", i);
        memset(key, i & 0xff, sizeof key);
        ck_keycache_put(c, id, key, sizeof key);
    }
    assert_int_equal(ck_keycache_count(c), 3000);
    for (int i = 0; i < 3000; i += 97) {
        snprintf(id, sizeof id, "dep-%d", i);
        memset(key, i & 0xff, sizeof key);
        expect_key(c, id, key, sizeof key);
    }
    for (int i = 0; i < 3000; i += 2) {
        snprintf(id, sizeof id, "dep-%d", i);
        ck_keycache_drop(c, id);
    }
    assert_int_equal(ck_keycache_count(c), 1500);
    struct ck_secret s = {0};
    assert_false(ck_keycache_get(c, "dep-0", &s));
    assert_true(ck_keycache_get(c, "dep-1", &s));
    ck_secret_free(&s);
    ck_keycache_free(c);
    ck_keycache_free(NULL);
}

struct worker {
    struct ck_keycache *c;
    int n;
    bool ok;
};

static void *cache_worker(void *arg)
{
    struct worker *w = arg;
    char id[32];
    uint8_t key[32];
    w->ok = true;
    for (int i = 0; i < 500; i++) {
        snprintf(id, sizeof id, "t%d-%d", w->n, i % 50);
        memset(key, w->n, sizeof key);
        ck_keycache_put(w->c, id, key, sizeof key);
        struct ck_secret s = {0};
        if (!ck_keycache_get(w->c, id, &s) || s.n != 32 || s.p[0] != (uint8_t)w->n)
            w->ok = false;
        ck_secret_free(&s);
        if (i % 7 == 0)
            ck_keycache_drop(w->c, id);
        if (i % 100 == 0)
            ck_keycache_sweep(w->c);
    }
    return NULL;
}

static void test_cache_threads(void **state)
{
    struct ck_keycache *c = ck_keycache_new(300);
    pthread_t t[8];
    struct worker w[8];
    for (int i = 0; i < 8; i++) {
        w[i] = (struct worker){c, i, false};
        pthread_create(&t[i], NULL, cache_worker, &w[i]);
    }
    for (int i = 0; i < 8; i++) {
        pthread_join(t[i], NULL);
        assert_true(w[i].ok);
    }
    ck_keycache_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_uri_valid),
        cmocka_unit_test(test_uri_invalid),
        cmocka_unit_test(test_uri_lengths),
        cmocka_unit_test(test_classify),
        cmocka_unit_test(test_provider_input_checks),
        cmocka_unit_test(test_cache_put_get),
        cmocka_unit_test(test_cache_replace_drop),
        cmocka_unit_test(test_cache_expiry_and_sweep),
        cmocka_unit_test(test_cache_many_and_free),
        cmocka_unit_test(test_cache_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
