/* Unit tests for src/auth on a real SQLite store: principals, lookups,
 * tokens (hash-only storage, expiry, revocation). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "auth/auth.h"

struct fx {
    char dir[64];
    struct ck_store *s;
};

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof *f);
    snprintf(f->dir, sizeof f->dir, "/tmp/ck-auth-XXXXXX");
    if (!mkdtemp(f->dir))
        return -1;
    char uri[128];
    snprintf(uri, sizeof uri, "sqlite:%s/t.db", f->dir);
    if (ck_store_open(uri, &f->s) != CK_OK || ck_auth_migrate(f->s) != CK_OK)
        return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    ck_store_close(f->s);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", f->dir);
    int rc = system(cmd);
    free(f);
    return rc;
}

static void test_users_and_apps(void **state)
{
    struct fx *f = *state;
    struct ck_principal *u, *a, *found;
    assert_int_equal(ck_principal_add_user(f->s, "Alice@Contoso.com", NULL, 0, &u), CK_OK);
    assert_string_equal(u->upn, "alice@contoso.com");
    assert_true(ck_uuid_valid(u->object_id));
    assert_true(ck_uuid_valid(u->tenant_id));
    char home[37];
    assert_int_equal(ck_auth_home_tenant(f->s, home), CK_OK);
    assert_string_equal(u->tenant_id, home);

    assert_int_equal(ck_principal_add_user(f->s, "alice@contoso.com", NULL, 0, &found),
                     CK_ECONFLICT);
    assert_int_equal(ck_principal_add_user(f->s, "no-at-sign", NULL, 0, &found), CK_EINVAL);
    assert_int_equal(ck_principal_add_user(f->s, "a b@c.d", NULL, 0, &found), CK_EINVAL);
    assert_int_equal(ck_principal_add_user(f->s, "operator", NULL, 0, &found), CK_EINVAL);

    assert_int_equal(ck_principal_add_app(f->s, "ckey Mail Service",
                                          "00000002-0000-0ff1-ce00-000000000000", NULL, 0, &a),
                     CK_OK);
    assert_int_equal(ck_principal_add_app(f->s, "other", "not-a-guid", NULL, 0, &found), CK_EINVAL);
    assert_int_equal(
        ck_principal_add_app(f->s, "dup", "00000002-0000-0ff1-ce00-000000000000", NULL, 0, &found),
        CK_ECONFLICT);

    const char *refs[] = {"alice@contoso.com", "ALICE@contoso.com", u->object_id};
    for (size_t i = 0; i < 3; i++) {
        assert_int_equal(ck_principal_find(f->s, refs[i], &found), CK_OK);
        assert_string_equal(found->object_id, u->object_id);
        ck_principal_free(found);
    }
    assert_int_equal(ck_principal_find(f->s, "ckey Mail Service", &found), CK_OK);
    assert_string_equal(found->object_id, a->object_id);
    ck_principal_free(found);
    assert_int_equal(ck_principal_find(f->s, "00000002-0000-0ff1-ce00-000000000000", &found),
                     CK_OK);
    assert_string_equal(found->app_id, a->app_id);
    ck_principal_free(found);
    assert_int_equal(ck_principal_find(f->s, "nobody@contoso.com", &found), CK_ENOTFOUND);

    /* Two applications with one name: the name alone is ambiguous. */
    struct ck_principal *b;
    assert_int_equal(ck_principal_add_app(f->s, "ckey Mail Service", NULL, NULL, 0, &b), CK_OK);
    assert_int_equal(ck_principal_find(f->s, "ckey Mail Service", &found), CK_ECONFLICT);

    struct ck_principal **v;
    size_t n;
    assert_int_equal(ck_principal_list(f->s, &v, &n), CK_OK);
    assert_int_equal(n, 3);
    ck_principal_list_free(v, n);
    ck_principal_free(u);
    ck_principal_free(a);
    ck_principal_free(b);
}

static void test_tokens(void **state)
{
    struct fx *f = *state;
    struct ck_principal *u, *who;
    assert_int_equal(ck_principal_add_user(f->s, "bob@contoso.com", NULL, 0, &u), CK_OK);
    char *tok;
    struct ck_token_info ti;
    assert_int_equal(ck_token_issue(f->s, u->object_id, 3600, &tok, &ti), CK_OK);
    assert_true(strncmp(tok, "ck_", 3) == 0);
    assert_int_equal(strlen(tok), 3 + 43); /* 256 bits in base64url */
    assert_int_equal(ti.expires - ti.created, 3600);

    assert_int_equal(ck_token_check(f->s, tok, &who), CK_OK);
    assert_string_equal(who->upn, "bob@contoso.com");
    ck_principal_free(who);

    /* One character off, a prefix, and garbage are all refused. */
    char *bad = strdup(tok);
    bad[10] = bad[10] == 'A' ? 'B' : 'A';
    assert_int_equal(ck_token_check(f->s, bad, &who), CK_EUNAUTH);
    bad[20] = '\0';
    assert_int_equal(ck_token_check(f->s, bad, &who), CK_EUNAUTH);
    assert_int_equal(ck_token_check(f->s, "", &who), CK_EUNAUTH);
    free(bad);

    /* Revocation takes effect at once, and is idempotent. */
    assert_int_equal(ck_token_revoke(f->s, ti.id), CK_OK);
    assert_int_equal(ck_token_check(f->s, tok, &who), CK_EUNAUTH);
    assert_non_null(strstr(ck_err_msg(), "revoked"));
    assert_null(strstr(ck_err_msg(), tok));
    assert_int_equal(ck_token_revoke(f->s, ti.id), CK_OK);
    assert_int_equal(ck_token_revoke(f->s, "no-such-id"), CK_ENOTFOUND);

    char *shortlived;
    assert_int_equal(ck_token_issue(f->s, u->object_id, 1, &shortlived, NULL), CK_OK);
    sleep(2);
    assert_int_equal(ck_token_check(f->s, shortlived, &who), CK_EUNAUTH);
    assert_non_null(strstr(ck_err_msg(), "expired"));
    bool valid = true;
    assert_int_equal(ck_token_valid(f->s, shortlived, &valid), CK_OK);
    assert_false(valid);
    free(shortlived);

    assert_int_equal(ck_token_issue(f->s, u->object_id, 0, &shortlived, NULL), CK_EINVAL);
    assert_int_equal(ck_token_issue(f->s, u->object_id, CK_TOKEN_MAX_TTL + 1, &shortlived, NULL),
                     CK_EINVAL);
    assert_int_equal(
        ck_token_issue(f->s, "00000000-0000-4000-8000-000000000000", 60, &shortlived, NULL),
        CK_ENOTFOUND);

    struct ck_token_info *list;
    size_t n;
    assert_int_equal(ck_token_list(f->s, u->object_id, &list, &n), CK_OK);
    assert_int_equal(n, 2);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(list[i].revoked > 0, strcmp(list[i].id, ti.id) == 0);
    free(list);

    /* The token itself is nowhere in the database, only its hash. */
    char cmd[512];
    snprintf(cmd, sizeof cmd,
             "sqlite3 %s/t.db 'PRAGMA wal_checkpoint' >/dev/null; grep -c -a -F -e '%s' %s/t.db* "
             ">/dev/null",
             f->dir, tok + 3, f->dir);
    assert_int_not_equal(system(cmd), 0);
    free(tok);
    ck_principal_free(u);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_users_and_apps, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tokens, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
