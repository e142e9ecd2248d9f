/*
 * Integration tests of tenants: a real `ckey server --dev` over HTTPS. The
 * operator creates tenant contoso through the CLI with alice as its admin;
 * alice may read it, bob (no admin) may not, until the operator adds him.
 * Every refused request (unknown tenant, taken name, bad name, no right)
 * gets a 4xx with an error body and leaves `ckey tenant list` as it was.
 * Also: each new CLI noun answers --help, and `mailbox import` refuses a
 * malformed mbox file before it sends anything.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"

static struct srv S;
static char *alice_tok, *bob_tok;

static int setup(void **state)
{
    srv_start(&S, false);
    static const char *const users[] = {"alice@contoso.com", "bob@contoso.com"};
    for (size_t i = 0; i < 2; i++) {
        char *out = NULL;
        int st = cli(&S, NULL, &out, "principal add --upn %s", users[i]);
        if (st != 0)
            fprintf(stderr, "%s\n", out ? out : "");
        free(out);
        if (st != 0)
            return -1;
    }
    alice_tok = token_for(&S, "alice@contoso.com", "1h", NULL);
    bob_tok = token_for(&S, "bob@contoso.com", "1h", NULL);
    return 0;
}

static int teardown(void **state)
{
    free(alice_tok);
    free(bob_tok);
    int status = srv_stop(&S);
    srv_cleanup(&S);
    return status == 0 ? 0 : -1;
}

/* ---------- helpers ---------- */

static void post(const char *path, const char *token, const char *body, struct http_result *r)
{
    http(&S, "POST", path, token, body, body ? strlen(body) : 0, NULL, r);
}

static void assert_error(const struct http_result *r, long status, const char *code,
                         const char *mentions)
{
    if (r->status != status)
        fail_msg("status %ld, want %ld: %s", r->status, status, r->body ? r->body : "");
    json_t *err = json_object_get(r->json, "error");
    assert_non_null(err);
    if (code)
        assert_string_equal(json_string_value(json_object_get(err, "code")), code);
    const char *msg = json_string_value(json_object_get(err, "message"));
    assert_non_null(msg);
    if (mentions && !strstr(msg, mentions))
        fail_msg("message \"%s\" does not mention \"%s\"", msg, mentions);
}

/* `ckey -o json tenant list` as the operator. */
static char *tenant_list(void)
{
    char *out = NULL;
    if (cli(&S, NULL, &out, "-o json tenant list") != 0)
        fail_msg("tenant list failed: %s", out ? out : "");
    return out;
}

static void assert_list_unchanged(const char *before)
{
    char *after = tenant_list();
    assert_string_equal(after, before);
    free(after);
}

static void assert_contains(const char *out, const char *what)
{
    if (!out || !strstr(out, what))
        fail_msg("output does not mention \"%s\":\n%s", what, out ? out : "(none)");
}

static bool audit_has(const char *operation, const char *target, const char *result)
{
    struct http_result r;
    http(&S, "GET", "/admin/audit?max=1000", S.token, NULL, 0, NULL, &r);
    assert_int_equal(r.status, 200);
    bool found = false;
    size_t i;
    json_t *rec;
    json_array_foreach(json_object_get(r.json, "value"), i, rec)
    {
        const char *op = json_string_value(json_object_get(rec, "operation"));
        const char *tg = json_string_value(json_object_get(rec, "target"));
        const char *rs = json_string_value(json_object_get(rec, "result"));
        if (op && tg && rs && strcmp(op, operation) == 0 && strcmp(tg, target) == 0 &&
            strncmp(rs, result, strlen(result)) == 0)
            found = true;
    }
    http_free(&r);
    return found;
}

/* ---------- tests ---------- */

static void test_create_and_show(void **state)
{
    char *out = NULL;
    assert_int_equal(cli(&S, NULL, &out, "tenant create Contoso --admin alice@contoso.com"), 0);
    assert_contains(out, "Contoso");
    assert_contains(out, "alice@contoso.com");
    free(out);
    assert_true(audit_has("tenant.create", "Contoso", "success"));

    /* The operator's list holds it, with its admin. */
    out = tenant_list();
    json_t *list = json_loads(out, 0, NULL);
    free(out);
    assert_int_equal(json_array_size(list), 1);
    json_t *t = json_array_get(list, 0);
    assert_string_equal(json_string_value(json_object_get(t, "name")), "Contoso");
    const char *id = json_string_value(json_object_get(t, "id"));
    assert_non_null(id);
    assert_int_equal(strlen(id), 36);
    json_t *admins = json_object_get(t, "admins");
    assert_int_equal(json_array_size(admins), 1);
    assert_string_equal(json_string_value(json_object_get(json_array_get(admins, 0), "name")),
                        "alice@contoso.com");

    /* alice, its admin, reads it by name in any case, and by id. */
    assert_int_equal(cli(&S, alice_tok, &out, "tenant show contoso"), 0);
    assert_contains(out, "Contoso");
    free(out);
    struct http_result r;
    http(&S, "GET", "/tenants/CONTOSO", alice_tok, NULL, 0, NULL, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(json_string_value(json_object_get(r.json, "id")), id);
    http_free(&r);
    char path[128];
    snprintf(path, sizeof path, "/tenants/%s", id);
    http(&S, "GET", path, alice_tok, NULL, 0, NULL, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(json_string_value(json_object_get(r.json, "name")), "Contoso");
    http_free(&r);
    json_decref(list);

    /* The table names it too. */
    assert_int_equal(cli(&S, NULL, &out, "tenant list"), 0);
    assert_contains(out, "NAME");
    assert_contains(out, "Contoso");
    free(out);
}

static void test_non_admin_is_refused(void **state)
{
    char *before = tenant_list(), *out = NULL;
    struct http_result r;
    /* bob is not contoso's admin. */
    http(&S, "GET", "/tenants/contoso", bob_tok, NULL, 0, NULL, &r);
    assert_error(&r, 403, "Forbidden", "bob@contoso.com");
    assert_error(&r, 403, NULL, "Contoso");
    http_free(&r);
    assert_int_equal(cli(&S, bob_tok, &out, "tenant show contoso"), 1);
    assert_contains(out, "bob@contoso.com");
    free(out);
    assert_true(audit_has("tenant.access", "Contoso", "denied"));

    /* Only the operator creates, lists tenants and adds admins; alice is an
     * admin of contoso, not an operator. */
    post("/admin/tenants", bob_tok, "{\"name\":\"fabrikam\",\"admin\":\"bob@contoso.com\"}", &r);
    assert_error(&r, 403, "Forbidden", NULL);
    http_free(&r);
    assert_int_equal(cli(&S, alice_tok, &out, "tenant list"), 1);
    free(out);
    assert_int_equal(cli(&S, alice_tok, &out, "tenant add-admin contoso --admin bob@contoso.com"),
                     1);
    free(out);
    post("/tenants/contoso/admins", bob_tok, "{\"admin\":\"bob@contoso.com\"}", &r);
    assert_error(&r, 403, "Forbidden", NULL);
    http_free(&r);
    assert_list_unchanged(before);
    free(before);
}

static void test_unknown_tenant(void **state)
{
    char *before = tenant_list(), *out = NULL;
    struct http_result r;
    http(&S, "GET", "/tenants/nosuch", alice_tok, NULL, 0, NULL, &r);
    assert_error(&r, 404, "TenantNotFound", "nosuch");
    http_free(&r);
    http(&S, "GET", "/tenants/nosuch", S.token, NULL, 0, NULL, &r);
    assert_error(&r, 404, "TenantNotFound", "nosuch");
    http_free(&r);
    post("/tenants/nosuch/admins", S.token, "{\"admin\":\"bob@contoso.com\"}", &r);
    assert_error(&r, 404, "TenantNotFound", NULL);
    http_free(&r);
    assert_int_equal(cli(&S, NULL, &out, "tenant show nosuch"), 1);
    assert_contains(out, "nosuch");
    free(out);
    assert_list_unchanged(before);
    free(before);
}

static void test_duplicate_name(void **state)
{
    char *before = tenant_list(), *out = NULL;
    struct http_result r;
    post("/admin/tenants", S.token, "{\"name\":\"contoso\",\"admin\":\"bob@contoso.com\"}", &r);
    assert_error(&r, 409, "Conflict", "contoso");
    http_free(&r);
    assert_int_equal(cli(&S, NULL, &out, "tenant create CONTOSO --admin bob@contoso.com"), 1);
    assert_contains(out, "already exists");
    free(out);
    assert_true(audit_has("tenant.create", "CONTOSO", "failed"));
    assert_list_unchanged(before);
    free(before);
}

static void test_bad_requests(void **state)
{
    char *before = tenant_list(), *out = NULL;
    struct http_result r;
    static const char *const bad[] = {
        "{\"name\":\"bad name\",\"admin\":\"alice@contoso.com\"}",
        "{\"name\":\"\",\"admin\":\"alice@contoso.com\"}",
        "{\"name\":\"a/b\",\"admin\":\"alice@contoso.com\"}",
        "{\"name\":\"x12345678901234567890123456789012345678901234567890123456789012345\","
        "\"admin\":\"alice@contoso.com\"}",
        "{\"name\":\"12345678-1234-4234-8234-123456789012\",\"admin\":\"alice@contoso.com\"}",
        "{\"name\":\"fabrikam\",\"admin\":\"nobody@contoso.com\"}",
        "{\"name\":\"fabrikam\"}",
        "{\"admin\":\"alice@contoso.com\"}",
        "{\"name\":7,\"admin\":\"alice@contoso.com\"}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        post("/admin/tenants", S.token, bad[i], &r);
        if (r.status != 400)
            fail_msg("%s: status %ld, want 400: %s", bad[i], r.status, r.body);
        assert_error(&r, 400, NULL, NULL);
        http_free(&r);
    }
    assert_int_equal(cli(&S, NULL, &out, "tenant create 'bad name!' --admin alice@contoso.com"), 1);
    assert_contains(out, "not a tenant name");
    free(out);
    post("/tenants/contoso/admins", S.token, "{\"admin\":\"nobody@contoso.com\"}", &r);
    assert_error(&r, 400, NULL, "nobody@contoso.com");
    http_free(&r);
    /* Usage errors never reach the server. */
    assert_int_equal(cli(&S, NULL, &out, "tenant create fabrikam"), 2);
    free(out);
    assert_int_equal(cli(&S, NULL, &out, "tenant show"), 2);
    free(out);
    assert_list_unchanged(before);
    free(before);
}

static void test_add_admin(void **state)
{
    char *out = NULL;
    assert_int_equal(cli(&S, NULL, &out, "tenant add-admin contoso --admin bob@contoso.com"), 0);
    assert_contains(out, "bob@contoso.com");
    assert_contains(out, "alice@contoso.com");
    free(out);
    assert_true(audit_has("tenant.admin.add", "Contoso", "success"));
    /* Adding him again changes nothing and is no error. */
    assert_int_equal(
        cli(&S, NULL, &out, "-o json tenant add-admin contoso --admin bob@contoso.com"), 0);
    json_t *t = json_loads(out, 0, NULL);
    free(out);
    assert_int_equal(json_array_size(json_object_get(t, "admins")), 2);
    json_decref(t);
    /* Now bob may read it. */
    assert_int_equal(cli(&S, bob_tok, &out, "tenant show contoso"), 0);
    assert_contains(out, "bob@contoso.com");
    free(out);
}

static void test_cli_help(void **state)
{
    static const char *const nouns[] = {"tenant", "dep", "mailuser", "mailbox", "job"};
    for (size_t i = 0; i < sizeof nouns / sizeof *nouns; i++) {
        char *out = NULL;
        if (cli(&S, NULL, &out, "%s --help", nouns[i]) != 0)
            fail_msg("ckey %s --help: %s", nouns[i], out ? out : "");
        assert_contains(out, "Usage:");
        free(out);
        /* No verb: help on stderr, exit 2. */
        assert_int_equal(cli(&S, NULL, &out, "%s", nouns[i]), 2);
        free(out);
    }
    char *out = NULL;
    assert_int_equal(cli(&S, NULL, &out, "--help"), 0);
    for (size_t i = 0; i < sizeof nouns / sizeof *nouns; i++)
        assert_contains(out, nouns[i]);
    free(out);
    /* A service command needs a tenant, from --tenant or CKEY_TENANT. */
    assert_int_equal(cli(&S, NULL, &out, "mailbox list"), 2);
    assert_contains(out, "--tenant");
    free(out);
}

static void test_import_refuses_malformed_mbox(void **state)
{
    char path[300], *out = NULL;
    snprintf(path, sizeof path, "%s/bad.mbox", S.dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("Subject: not an mbox file\n\nbody\n", f);
    fclose(f);
    assert_int_equal(
        cli(&S, NULL, &out, "mailbox import carol@contoso.com --tenant contoso --mbox %s", path),
        1);
    assert_contains(out, "not a valid mbox file");
    assert_contains(out, "nothing was imported");
    free(out);
    /* Nothing was sent: no mailbox was made for carol. */
    struct http_result r;
    http(&S, "GET", "/tenants/contoso/mailboxes/carol%40contoso.com", S.token, NULL, 0, NULL, &r);
    assert_true(r.status == 404);
    http_free(&r);
    unlink(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_create_and_show),
        cmocka_unit_test(test_non_admin_is_refused),
        cmocka_unit_test(test_unknown_tenant),
        cmocka_unit_test(test_duplicate_name),
        cmocka_unit_test(test_bad_requests),
        cmocka_unit_test(test_add_admin),
        cmocka_unit_test(test_cli_help),
        cmocka_unit_test(test_import_refuses_malformed_mbox),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
