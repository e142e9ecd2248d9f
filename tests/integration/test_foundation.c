/*
 * Integration tests of the foundation: a real `ckey server --dev` over HTTPS,
 * driven with raw HTTP (libcurl) and with the ckey CLI.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"

static struct srv S;

static int setup(void **state)
{
    srv_start(&S, false);
    return 0;
}

static int teardown(void **state)
{
    int status = srv_stop(&S);
    srv_cleanup(&S);
    /* SIGTERM drains and exits cleanly. */
    return status == 0 ? 0 : -1;
}

static void assert_error_body(const struct http_result *r, const char *code)
{
    assert_non_null(r->json);
    json_t *err = json_object_get(r->json, "error");
    assert_non_null(err);
    assert_string_equal(json_string_value(json_object_get(err, "code")), code);
    assert_true(json_string_length(json_object_get(err, "message")) > 0);
}

static void assert_request_id(const struct http_result *r)
{
    char *id = http_header(r, "x-ms-request-id");
    assert_non_null(id);
    assert_int_equal(strlen(id), 36);
    free(id);
}

static char *issue_token_id(const char *who, const char *ttl, char id[37])
{
    return token_for(&S, who, ttl, id);
}

static char *issue_token(const char *who, const char *ttl)
{
    return token_for(&S, who, ttl, NULL);
}

static void test_no_token_gets_challenge_before_body(void **state)
{
    struct http_result r;
    http(&S, "GET", "/whoami", NULL, NULL, 0, NULL, &r);
    assert_int_equal(r.status, 401);
    assert_error_body(&r, "Unauthorized");
    assert_request_id(&r);
    char *www = http_header(&r, "WWW-Authenticate");
    assert_non_null(www);
    assert_non_null(strstr(www, "Bearer authorization=\"https://login.ckey.local/"));
    assert_non_null(strstr(www, "resource=\"https://vault.azure.net\""));
    free(www);
    http_free(&r);

    /* A body over the limit without a token still meets the challenge, not
     * a 413: authentication happens before the body is read. The client
     * asks first (Expect: 100-continue) and never has to send the body. */
    size_t n = 2u << 20;
    char *big = malloc(n);
    memset(big, ' ', n);
    http(&S, "POST", "/admin/principals", NULL, big, n, "Expect: 100-continue", &r);
    assert_int_equal(r.status, 401);
    http_free(&r);
    /* Unknown routes are not revealed to unauthenticated callers. */
    http(&S, "GET", "/no/such/thing", NULL, NULL, 0, NULL, &r);
    assert_int_equal(r.status, 401);
    http_free(&r);
    free(big);
}

static void test_healthz_needs_no_token(void **state)
{
    struct http_result r;
    http(&S, "GET", "/healthz", NULL, NULL, 0, NULL, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(json_string_value(json_object_get(r.json, "status")), "ok");
    assert_request_id(&r);
    http_free(&r);
}

static void test_wrong_expired_revoked_tokens(void **state)
{
    struct http_result r;
    http(&S, "GET", "/whoami", "ck_not-a-real-token", NULL, 0, NULL, &r);
    assert_int_equal(r.status, 401);
    assert_error_body(&r, "Unauthorized");
    http_free(&r);
    http(&S, "GET", "/whoami", "garbage", NULL, 0, NULL, &r);
    assert_int_equal(r.status, 401);
    http_free(&r);

    char *out = NULL;
    assert_int_equal(cli(&S, NULL, &out, "principal add --upn bob@contoso.com"), 0);
    free(out);

    char valid_id[37];
    char *valid = issue_token_id("bob@contoso.com", "1h", valid_id);
    http(&S, "GET", "/whoami", valid, NULL, 0, NULL, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(json_string_value(json_object_get(r.json, "userPrincipalName")),
                        "bob@contoso.com");
    http_free(&r);

    char *expiring = issue_token("bob@contoso.com", "1s");
    sleep(2);
    http(&S, "GET", "/whoami", expiring, NULL, 0, NULL, &r);
    assert_int_equal(r.status, 401);
    assert_non_null(
        strstr(json_string_value(json_object_get(json_object_get(r.json, "error"), "message")),
               "expired"));
    http_free(&r);

    /* Revoke the valid one by its id. */
    assert_int_equal(cli(&S, NULL, &out, "-o json token list --principal bob@contoso.com"), 0);
    json_t *list = json_loads(out, 0, NULL);
    assert_non_null(list);
    assert_int_equal(json_array_size(list), 2);
    assert_non_null(strstr(out, valid_id));
    free(out);
    assert_int_equal(cli(&S, NULL, &out, "token revoke %s", valid_id), 0);
    free(out);
    json_decref(list);
    http(&S, "GET", "/whoami", valid, NULL, 0, NULL, &r);
    assert_int_equal(r.status, 401);
    assert_non_null(
        strstr(json_string_value(json_object_get(json_object_get(r.json, "error"), "message")),
               "revoked"));
    http_free(&r);
    free(valid);
    free(expiring);
}

static void test_tokens_are_stored_only_hashed(void **state)
{
    char *tok = issue_token("operator", "1h");
    char *out = NULL;
    /* Checkpoint so the WAL is folded in, then search every database file. */
    int st = sh(&out,
                "sqlite3 %s/ckey.db 'PRAGMA wal_checkpoint;' >/dev/null; cat %s/ckey.db* | "
                "grep -c -a -F -e '%s'",
                S.dir, S.dir, tok + 3);
    free(out);
    assert_int_equal(st, 1); /* grep: no match */
    free(tok);
}

static void test_body_limit_413(void **state)
{
    size_t n = 2u << 20;
    char *big = malloc(n + 64);
    int len = snprintf(big, 64, "{\"userPrincipalName\":\"");
    memset(big + len, 'a', n - (size_t)len - 2);
    memcpy(big + n - 2, "\"}", 2);
    struct http_result r;
    /* Declared size over the limit: refused before the body is sent. */
    http(&S, "POST", "/admin/principals", S.token, big, n, "Expect: 100-continue", &r);
    assert_int_equal(r.status, 413);
    assert_error_body(&r, "RequestTooLarge");
    assert_request_id(&r);
    http_free(&r);
    /* Same body sent chunked (no Content-Length): still refused. */
    http(&S, "POST", "/admin/principals", S.token, big, n, "Transfer-Encoding: chunked", &r);
    assert_int_equal(r.status, 413);
    http_free(&r);
    free(big);
}

static void test_malformed_json_400_changes_nothing(void **state)
{
    struct http_result before, r, after;
    http(&S, "GET", "/admin/principals", S.token, NULL, 0, NULL, &before);
    assert_int_equal(before.status, 200);
    const char *bad = "{\"userPrincipalName\": \"eve@contoso.com\",";
    http(&S, "POST", "/admin/principals", S.token, bad, strlen(bad), NULL, &r);
    assert_int_equal(r.status, 400);
    assert_error_body(&r, "BadParameter");
    assert_non_null(strstr(r.body, "not valid JSON"));
    http_free(&r);
    const char *wrong_type = "{\"userPrincipalName\": 42}";
    http(&S, "POST", "/admin/principals", S.token, wrong_type, strlen(wrong_type), NULL, &r);
    assert_int_equal(r.status, 400);
    assert_non_null(strstr(r.body, "userPrincipalName"));
    http_free(&r);
    const char *not_upn = "{\"userPrincipalName\": \"not a upn\"}";
    http(&S, "POST", "/admin/principals", S.token, not_upn, strlen(not_upn), NULL, &r);
    assert_int_equal(r.status, 400);
    http_free(&r);
    http(&S, "GET", "/admin/principals", S.token, NULL, 0, NULL, &after);
    assert_true(json_equal(before.json, after.json));
    http_free(&before);
    http_free(&after);
}

static void test_unknown_route_404_and_method_405(void **state)
{
    struct http_result r;
    http(&S, "GET", "/no/such/thing", S.token, NULL, 0, NULL, &r);
    assert_int_equal(r.status, 404);
    assert_error_body(&r, "NotFound");
    assert_request_id(&r);
    http_free(&r);
    http(&S, "PATCH", "/whoami", S.token, NULL, 0, NULL, &r);
    assert_int_equal(r.status, 405);
    assert_error_body(&r, "MethodNotAllowed");
    http_free(&r);
    /* An empty trailing segment is its own path, kept by the router. */
    http(&S, "DELETE", "/admin/tokens/", S.token, NULL, 0, NULL, &r);
    assert_int_equal(r.status, 404);
    assert_non_null(strstr(r.body, "no token with id"));
    http_free(&r);
}

static void test_non_operator_is_forbidden_and_audited(void **state)
{
    char *out = NULL;
    assert_int_equal(cli(&S, NULL, &out, "principal add --app 'Contoso Sync App'"), 0);
    free(out);
    char *tok = issue_token("Contoso Sync App", "1h");
    assert_int_equal(cli(&S, tok, &out, "principal list"), 1);
    assert_non_null(strstr(out, "not an operator"));
    free(out);
    assert_int_equal(cli(&S, NULL, &out, "-o json audit list --max 1000"), 0);
    assert_non_null(strstr(out, "\"result\": \"denied\""));
    assert_non_null(strstr(out, "\"principal\": \"Contoso Sync App\""));
    free(out);
    assert_int_equal(cli(&S, tok, &out, "whoami"), 0);
    assert_non_null(strstr(out, "application"));
    free(out);
    free(tok);
}

static void test_audit_verify_detects_tampering(void **state)
{
    char *out = NULL;
    assert_int_equal(cli(&S, NULL, &out, "audit verify"), 0);
    assert_non_null(strstr(out, "intact"));
    free(out);

    /* Edit one record in place. */
    assert_int_equal(sh(&out,
                        "sqlite3 %s/ckey.db \"UPDATE ck_audit SET result='success' "
                        "WHERE result='denied'\"",
                        S.dir),
                     0);
    free(out);
    assert_int_equal(cli(&S, NULL, &out, "audit verify"), 1);
    assert_non_null(strstr(out, "TAMPERED"));
    assert_non_null(strstr(out, "does not match its MAC"));
    free(out);
    assert_int_equal(cli(&S, NULL, &out, "-o json audit verify"), 1);
    assert_non_null(strstr(out, "\"ok\": false"));
    free(out);
}

static void test_audit_verify_detects_deletion_and_insertion(void **state)
{
    struct srv t;
    srv_start(&t, false);
    char *out = NULL;
    for (int i = 0; i < 3; i++) {
        assert_int_equal(cli(&t, NULL, &out, "principal add --upn u%d@contoso.com", i), 0);
        free(out);
    }
    assert_int_equal(cli(&t, NULL, &out, "audit verify"), 0);
    free(out);
    /* Delete a record in the middle. */
    sh(&out, "sqlite3 %s/ckey.db 'DELETE FROM ck_audit WHERE seq = 2'", t.dir);
    free(out);
    assert_int_equal(cli(&t, NULL, &out, "audit verify"), 1);
    assert_non_null(strstr(out, "record 2 is missing"));
    free(out);
    /* Put a forged record in its place. */
    sh(&out,
       "sqlite3 %s/ckey.db \"INSERT INTO ck_audit SELECT 2, ts, principal, operation, "
       "'forged', result, request_id, detail, mac FROM ck_audit WHERE seq = 1\"",
       t.dir);
    free(out);
    assert_int_equal(cli(&t, NULL, &out, "audit verify"), 1);
    assert_non_null(strstr(out, "record 2 does not match"));
    free(out);
    /* Restore a consistent chain, then drop the newest record. */
    sh(&out, "sqlite3 %s/ckey.db 'DELETE FROM ck_audit WHERE seq >= 2'", t.dir);
    free(out);
    assert_int_equal(cli(&t, NULL, &out, "audit verify"), 1);
    assert_non_null(strstr(out, "missing"));
    free(out);
    assert_int_equal(srv_stop(&t), 0);
    srv_cleanup(&t);
}

static void test_restart_reuses_dev_material(void **state)
{
    struct srv t;
    srv_start(&t, false);
    char token[256], *cert1 = NULL, *cert2 = NULL, *out = NULL;
    snprintf(token, sizeof token, "%s", t.token);
    sh(&cert1, "sha256sum %s/tls/cert.pem %s/master.key", t.dir, t.dir);
    assert_int_equal(srv_stop(&t), 0);
    srv_start(&t, true);
    sh(&cert2, "sha256sum %s/tls/cert.pem %s/master.key", t.dir, t.dir);
    assert_string_equal(cert1, cert2);
    assert_string_equal(token, t.token);
    assert_int_equal(cli(&t, NULL, &out, "whoami"), 0);
    free(out);
    /* Files holding secrets are private to the owner. */
    const char *private_files[] = {"master.key", "operator.token", "tls/key.pem", "ckey.db"};
    for (size_t i = 0; i < 4; i++) {
        char path[400];
        struct stat sb;
        snprintf(path, sizeof path, "%s/%s", t.dir, private_files[i]);
        assert_int_equal(stat(path, &sb), 0);
        assert_int_equal(sb.st_mode & 0777, 0600);
    }
    assert_int_equal(srv_stop(&t), 0);
    srv_cleanup(&t);
    free(cert1);
    free(cert2);
}

static void test_cli_errors_and_help(void **state)
{
    char *out = NULL;
    assert_int_equal(cli(&S, NULL, &out, "--help"), 0);
    assert_non_null(strstr(out, "Usage: ckey"));
    free(out);
    assert_int_equal(cli(&S, NULL, &out, "token --help"), 0);
    assert_non_null(strstr(out, "token issue"));
    free(out);
    assert_int_equal(cli(&S, NULL, &out, "frobnicate"), 2);
    assert_non_null(strstr(out, "unknown command"));
    free(out);
    assert_int_equal(cli(&S, NULL, &out, "principal add --upn a@b.c --bogus"), 2);
    free(out);
    assert_int_equal(cli(&S, "ck_wrong", &out, "whoami"), 1);
    assert_non_null(strstr(out, "not valid"));
    free(out);
    assert_int_equal(cli(&S, NULL, &out, "--url http://127.0.0.1:1 whoami"), 1);
    assert_non_null(strstr(out, "https://"));
    free(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_no_token_gets_challenge_before_body),
        cmocka_unit_test(test_healthz_needs_no_token),
        cmocka_unit_test(test_wrong_expired_revoked_tokens),
        cmocka_unit_test(test_tokens_are_stored_only_hashed),
        cmocka_unit_test(test_body_limit_413),
        cmocka_unit_test(test_malformed_json_400_changes_nothing),
        cmocka_unit_test(test_unknown_route_404_and_method_405),
        cmocka_unit_test(test_non_operator_is_forbidden_and_audited),
        cmocka_unit_test(test_audit_verify_detects_tampering),
        cmocka_unit_test(test_audit_verify_detects_deletion_and_insertion),
        cmocka_unit_test(test_restart_reuses_dev_material),
        cmocka_unit_test(test_cli_errors_and_help),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
