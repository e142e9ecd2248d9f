/*
 * Integration tests of the keys data plane over real HTTPS: every bad input
 * named in the vault issue gets a 4xx with an AKV error body, and a read
 * afterwards shows that nothing changed; access policies are enforced and
 * audited; links are built from the request's own origin.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

static struct srv S;
static char ALICE[256], BOB[256];

static int setup(void **state)
{
    srv_start(&S, false);
    provision_vault(&S, "alice@contoso.com", "sub1", "api-a", "westus", false, ALICE);
    char pp[256];
    provision_vault(&S, "alice@contoso.com", "sub1", "api-pp", "westus", true, pp);
    /* bob: get and list only. */
    char *out = NULL;
    cli(&S, NULL, &out, "principal add --upn bob@contoso.com");
    free(out);
    char *bob = token_for(&S, "bob@contoso.com", "2h", NULL);
    snprintf(BOB, sizeof BOB, "%s", bob);
    free(bob);
    char oid[37], tid[37], body[512];
    whoami(&S, BOB, oid, tid);
    snprintf(body, sizeof body,
             "{\"properties\":{\"accessPolicies\":[{\"tenantId\":\"%s\",\"objectId\":\"%s\","
             "\"permissions\":{\"keys\":[\"get\",\"list\"]}}]}}",
             tid, oid);
    struct http_result r;
    http(&S, "PUT",
         "/subscriptions/sub1/resourceGroups/rg1/providers/Microsoft.KeyVault/vaults/api-a/"
         "accessPolicies/add?api-version=2023-02-01",
         ALICE, body, strlen(body), NULL, &r);
    int ok = r.status == 200;
    http_free(&r);
    return ok ? 0 : -1;
}

static int teardown(void **state)
{
    int status = srv_stop(&S);
    srv_cleanup(&S);
    return status == 0 ? 0 : -1;
}

/* A data-plane call on vault api-a (or another vault). */
static void call(const char *vault, const char *method, const char *path, const char *token,
                 const char *body, struct http_result *r)
{
    char *full = NULL, *u;
    if (asprintf(&full, "%s%sapi-version=7.6", path, strchr(path, '?') ? "&" : "?") < 0)
        fail();
    u = vault_url(&S, vault, full);
    http(&S, method, u, token, body, body ? strlen(body) : 0, NULL, r);
    free(u);
    free(full);
}

static void expect_error(const struct http_result *r, long status, const char *code,
                         const char *needle)
{
    if (r->status != status)
        fail_msg("expected %ld, got %ld: %s", status, r->status, r->body ? r->body : "");
    json_t *err = json_object_get(r->json, "error");
    assert_non_null(err);
    assert_string_equal(json_string_value(json_object_get(err, "code")), code);
    const char *msg = json_string_value(json_object_get(err, "message"));
    assert_non_null(msg);
    if (needle && !strstr(msg, needle))
        fail_msg("message '%s' lacks '%s'", msg, needle);
}

/* The whole observable state of vault api-a: keys, their latest bundles,
 * and deleted keys. */
static char *snapshot(void)
{
    struct http_result a, b;
    call("api-a", "GET", "/keys?maxresults=25", ALICE, NULL, &a);
    call("api-a", "GET", "/deletedkeys?maxresults=25", ALICE, NULL, &b);
    assert_int_equal(a.status, 200);
    assert_int_equal(b.status, 200);
    char *s = NULL;
    if (asprintf(&s, "%s|%s", a.body, b.body) < 0)
        fail();
    size_t i;
    json_t *item;
    json_array_foreach(json_object_get(a.json, "value"), i, item)
    {
        const char *kid = json_string_value(json_object_get(item, "kid"));
        char path[300];
        snprintf(path, sizeof path, "/keys/%s/", strrchr(kid, '/') + 1);
        struct http_result k;
        call("api-a", "GET", path, ALICE, NULL, &k);
        char *t = NULL;
        if (asprintf(&t, "%s|%s", s, k.body) < 0)
            fail();
        free(s);
        s = t;
        http_free(&k);
    }
    http_free(&a);
    http_free(&b);
    return s;
}

static void create_key(const char *name)
{
    struct http_result r;
    char path[200];
    snprintf(path, sizeof path, "/keys/%s/create", name);
    call("api-a", "POST", path, ALICE, "{\"kty\":\"RSA\",\"key_size\":2048,\"attributes\":{}}", &r);
    assert_int_equal(r.status, 200);
    http_free(&r);
}

static void test_bad_creates_and_imports(void **state)
{
    create_key("base");
    char *before = snapshot();
    struct {
        const char *method, *path, *body, *needle;
    } cases[] = {
        {"POST", "/keys/ec1/create", "{\"kty\":\"EC\",\"crv\":\"P-256\"}", "not supported"},
        {"POST", "/keys/oct1/create", "{\"kty\":\"oct\"}", "not supported"},
        {"POST", "/keys/small/create", "{\"kty\":\"RSA\",\"key_size\":1024}", "1024"},
        {"POST", "/keys/bad_name/create", "{\"kty\":\"RSA\"}", "not valid"},
        {"POST", "/keys/nokty/create", "{\"key_size\":2048}", "kty"},
        {"POST", "/keys/ops/create", "{\"kty\":\"RSA\",\"key_ops\":[\"fly\"]}", "fly"},
        {"POST", "/keys/attr/create", "{\"kty\":\"RSA\",\"attributes\":{\"enabled\":\"yes\"}}",
         "enabled"},
        {"POST", "/keys/tags/create", "{\"kty\":\"RSA\",\"tags\":{\"a\":1}}", "tag"},
        {"POST", "/keys/nbf/create",
         "{\"kty\":\"RSA\",\"attributes\":{\"nbf\":2000000000,\"exp\":1900000000}}", "exp"},
        {"POST", "/keys/json/create", "{\"kty\":", "not valid JSON"},
        {"PUT", "/keys/imp1", "{\"key\":{\"kty\":\"RSA\",\"n\":\"AQAB\",\"e\":\"AQAB\"}}",
         "private"},
        {"PUT", "/keys/imp2", "{\"key\":{\"kty\":\"EC\",\"crv\":\"P-256\"}}", "not supported"},
        {"PUT", "/keys/imp3", "{\"key\":{\"kty\":\"RSA\",\"n\":\"!!\",\"e\":\"AQAB\"}}",
         "base64url"},
        {"PUT", "/keys/imp4", "{}", "key"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct http_result r;
        call("api-a", cases[i].method, cases[i].path, ALICE, cases[i].body, &r);
        expect_error(&r, 400, "BadParameter", cases[i].needle);
        http_free(&r);
    }
    char *after = snapshot();
    assert_string_equal(before, after);
    free(before);
    free(after);
}

static void test_bad_updates_and_ops(void **state)
{
    create_key("upd");
    char *before = snapshot();
    const char *bad_updates[] = {
        "{\"attributes\":{\"exp\":\"tomorrow\"}}",
        "{\"key_ops\":\"wrapKey\"}",
        "{\"tags\":[]}",
        "{\"attributes\":{\"exportable\":true}}",
    };
    for (size_t i = 0; i < sizeof bad_updates / sizeof bad_updates[0]; i++) {
        struct http_result r;
        call("api-a", "PATCH", "/keys/upd/", ALICE, bad_updates[i], &r);
        expect_error(&r, 400, "BadParameter", NULL);
        http_free(&r);
    }
    struct {
        const char *path, *body, *needle;
    } ops[] = {
        {"/keys/upd//wrapkey", "{\"alg\":\"RSA-OAEP-256\",\"value\":\"%%%\"}", "base64url"},
        {"/keys/upd//wrapkey", "{\"alg\":\"A256KW\",\"value\":\"AAAA\"}", "A256KW"},
        {"/keys/upd//wrapkey", "{\"value\":\"AAAA\"}", "alg"},
        {"/keys/upd//unwrapkey", "{\"alg\":\"RSA-OAEP\",\"value\":\"AAAA\"}", "decryption failed"},
        {"/keys/upd//sign", "{\"alg\":\"RS256\",\"value\":\"AAAA\"}", "digest"},
        {"/keys/upd//sign", "{\"alg\":\"RSA-OAEP\",\"value\":\"AAAA\"}", "does not fit"},
    };
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++) {
        struct http_result r;
        call("api-a", "POST", ops[i].path, ALICE, ops[i].body, &r);
        expect_error(&r, 400, "BadParameter", ops[i].needle);
        http_free(&r);
    }
    struct http_result r;
    call("api-a", "GET", "/keys?maxresults=0", ALICE, NULL, &r);
    expect_error(&r, 400, "BadParameter", "maxresults");
    http_free(&r);
    call("api-a", "GET", "/keys?maxresults=26", ALICE, NULL, &r);
    expect_error(&r, 400, "BadParameter", "maxresults");
    http_free(&r);
    call("api-a", "GET", "/keys?$skiptoken=bogus", ALICE, NULL, &r);
    expect_error(&r, 400, "BadParameter", "skiptoken");
    http_free(&r);
    call("api-a", "POST", "/rng", ALICE, "{\"count\":129}", &r);
    expect_error(&r, 400, "BadParameter", "count");
    http_free(&r);
    call("api-a", "POST", "/keys/upd//frobnicate", ALICE, "{}", &r);
    assert_int_equal(r.status, 404);
    http_free(&r);
    char *after = snapshot();
    assert_string_equal(before, after);
    free(before);
    free(after);
}

static void test_disabled_expired_and_key_ops_refused(void **state)
{
    create_key("rules");
    struct http_result r;
    const char *wrap = "{\"alg\":\"RSA-OAEP-256\",\"value\":\"AAECAwQFBgcICQoLDA0ODw\"}";
    call("api-a", "POST", "/keys/rules//wrapkey", ALICE, wrap, &r);
    assert_int_equal(r.status, 200);
    http_free(&r);
    struct {
        const char *patch, *inner;
    } cases[] = {
        {"{\"attributes\":{\"enabled\":false}}", "KeyDisabled"},
        {"{\"attributes\":{\"enabled\":true,\"exp\":1000}}", "KeyExpired"},
        {"{\"attributes\":{\"exp\":0,\"nbf\":4000000000}}", "KeyNotYetValid"},
        {"{\"attributes\":{\"nbf\":0},\"key_ops\":[\"unwrapKey\"]}", "KeyOperationForbidden"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        call("api-a", "PATCH", "/keys/rules/", ALICE, cases[i].patch, &r);
        assert_int_equal(r.status, 200);
        http_free(&r);
        call("api-a", "POST", "/keys/rules//wrapkey", ALICE, wrap, &r);
        expect_error(&r, 403, "Forbidden", NULL);
        assert_string_equal(
            json_string_value(json_object_get(
                json_object_get(json_object_get(r.json, "error"), "innererror"), "code")),
            cases[i].inner);
        http_free(&r);
    }
}

static void test_conflicts_and_backup_damage(void **state)
{
    create_key("dup");
    struct http_result r, backup;
    call("api-a", "POST", "/keys/dup/backup", ALICE, NULL, &backup);
    assert_int_equal(backup.status, 200);
    const char *value = json_string_value(json_object_get(backup.json, "value"));
    char *body = NULL;
    if (asprintf(&body, "{\"value\":\"%s\"}", value) < 0)
        fail();

    /* Restore while it exists. */
    char *before = snapshot();
    call("api-a", "POST", "/keys/restore", ALICE, body, &r);
    expect_error(&r, 409, "Conflict", "conflict restoring the key");
    http_free(&r);
    char *after = snapshot();
    assert_string_equal(before, after);
    free(after);
    free(before);

    /* Soft-deleted: create, import and restore over the name all conflict. */
    call("api-a", "DELETE", "/keys/dup", ALICE, NULL, &r);
    assert_int_equal(r.status, 200);
    assert_non_null(json_object_get(r.json, "recoveryId"));
    http_free(&r);
    before = snapshot();
    call("api-a", "POST", "/keys/dup/create", ALICE, "{\"kty\":\"RSA\"}", &r);
    expect_error(&r, 409, "Conflict", "deleted but recoverable");
    http_free(&r);
    call("api-a", "POST", "/keys/restore", ALICE, body, &r);
    expect_error(&r, 409, "Conflict", NULL);
    http_free(&r);

    /* Damaged backups: truncated, tampered, not base64url, not a backup. */
    size_t n = strlen(value);
    char *trunc = NULL, *tampered = strdup(body), *garbage = "{\"value\":\"aGVsbG8gd29ybGQ\"}";
    if (asprintf(&trunc, "{\"value\":\"%.*s\"}", (int)(n - 8), value) < 0)
        fail();
    char *mid = tampered + 10 + n / 2;
    *mid = *mid == 'A' ? 'B' : 'A';
    const char *damaged[] = {trunc, tampered, garbage, "{\"value\":\"***\"}", "{}"};
    for (size_t i = 0; i < 5; i++) {
        call("api-a", "POST", "/keys/restore", ALICE, damaged[i], &r);
        expect_error(&r, 400, "BadParameter", NULL);
        http_free(&r);
    }
    call("api-a", "POST", "/keys/restore", ALICE, trunc, &r);
    expect_error(&r, 400, "BadParameter", "cannot be restored");
    http_free(&r);
    after = snapshot();
    assert_string_equal(before, after);
    free(before);
    free(after);

    /* Purge, then the intact backup restores. */
    call("api-a", "DELETE", "/deletedkeys/dup", ALICE, NULL, &r);
    assert_int_equal(r.status, 204);
    assert_int_equal(r.body_len, 0);
    http_free(&r);
    call("api-a", "POST", "/keys/restore", ALICE, body, &r);
    assert_int_equal(r.status, 200);
    http_free(&r);
    free(trunc);
    free(tampered);
    free(body);
    http_free(&backup);
}

static void test_purge_protection_403(void **state)
{
    struct http_result r;
    call("api-pp", "POST", "/keys/kept/create", ALICE, "{\"kty\":\"RSA\"}", &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(r.json, "attributes"), "recoveryLevel")),
        "Recoverable");
    http_free(&r);
    call("api-pp", "DELETE", "/keys/kept", ALICE, NULL, &r);
    assert_int_equal(r.status, 200);
    http_free(&r);
    call("api-pp", "DELETE", "/deletedkeys/kept", ALICE, NULL, &r);
    expect_error(&r, 403, "Forbidden", "purge protection");
    http_free(&r);
    call("api-pp", "GET", "/deletedkeys/kept", ALICE, NULL, &r);
    assert_int_equal(r.status, 200);
    http_free(&r);
}

static void test_access_policy_enforced_and_audited(void **state)
{
    create_key("guarded");
    char *before = snapshot();
    struct http_result r;
    call("api-a", "GET", "/keys/guarded/", BOB, NULL, &r);
    assert_int_equal(r.status, 200);
    http_free(&r);
    call("api-a", "POST", "/keys/guarded//unwrapkey", BOB,
         "{\"alg\":\"RSA-OAEP-256\",\"value\":\"AAAA\"}", &r);
    expect_error(&r, 403, "Forbidden", "bob@contoso.com");
    const char *msg =
        json_string_value(json_object_get(json_object_get(r.json, "error"), "message"));
    assert_non_null(strstr(msg, "unwrapKey"));
    assert_non_null(strstr(msg, "api-a"));
    assert_string_equal(
        json_string_value(json_object_get(
            json_object_get(json_object_get(r.json, "error"), "innererror"), "code")),
        "AccessDenied");
    http_free(&r);
    call("api-a", "DELETE", "/keys/guarded", BOB, NULL, &r);
    expect_error(&r, 403, "Forbidden", "delete");
    http_free(&r);
    char *after = snapshot();
    assert_string_equal(before, after);
    free(before);
    free(after);

    char *out = NULL;
    assert_int_equal(cli(&S, NULL, &out, "-o json audit list --max 1000"), 0);
    assert_non_null(strstr(out, "\"operation\": \"key.unwrapKey\""));
    assert_non_null(strstr(out, "\"target\": \"api-a/guarded\""));
    assert_non_null(strstr(out, "\"result\": \"denied\""));
    assert_non_null(strstr(out, "\"principal\": \"bob@contoso.com\""));
    free(out);
    assert_int_equal(cli(&S, NULL, &out, "audit verify"), 0);
    free(out);
}

static void test_links_use_request_origin_and_unknown_vault(void **state)
{
    create_key("links");
    struct http_result r;
    call("api-a", "GET", "/keys/links/", ALICE, NULL, &r);
    assert_int_equal(r.status, 200);
    char prefix[128];
    snprintf(prefix, sizeof prefix, "https://api-a.vault.localhost:%u/keys/links/", S.port);
    const char *kid = json_string_value(json_object_get(json_object_get(r.json, "key"), "kid"));
    assert_true(strncmp(kid, prefix, strlen(prefix)) == 0);
    assert_int_equal(strlen(kid), strlen(prefix) + 32);
    http_free(&r);
    call("api-a", "GET", "/keys?maxresults=1", ALICE, NULL, &r);
    const char *next = json_string_value(json_object_get(r.json, "nextLink"));
    assert_non_null(next);
    snprintf(prefix, sizeof prefix, "https://api-a.vault.localhost:%u/keys?", S.port);
    assert_true(strncmp(next, prefix, strlen(prefix)) == 0);
    struct http_result page2;
    http(&S, "GET", next, ALICE, NULL, 0, NULL, &page2);
    assert_int_equal(page2.status, 200);
    assert_int_equal(json_array_size(json_object_get(page2.json, "value")), 1);
    http_free(&page2);
    http_free(&r);
    call("no-such-vault", "GET", "/keys", ALICE, NULL, &r);
    expect_error(&r, 404, "VaultNotFound", "no-such-vault");
    http_free(&r);
    /* A bare IP addresses --default-vault, which this server has not. */
    http(&S, "GET", "/keys?api-version=7.6", ALICE, NULL, 0, NULL, &r);
    assert_int_equal(r.status, 404);
    http_free(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_creates_and_imports),
        cmocka_unit_test(test_bad_updates_and_ops),
        cmocka_unit_test(test_disabled_expired_and_key_ops_refused),
        cmocka_unit_test(test_conflicts_and_backup_damage),
        cmocka_unit_test(test_purge_protection_403),
        cmocka_unit_test(test_access_policy_enforced_and_audited),
        cmocka_unit_test(test_links_use_request_origin_and_unknown_vault),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
