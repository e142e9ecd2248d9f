/*
 * The availability key, with the vaults in another process: a vault server
 * (--role vault) holds the root keys; a service server (--role service)
 * reaches them over HTTPS with the mail service's token. When the vault
 * server is down, reads go on through the availability key and each use is
 * audited; when the customer removes the service's permissions, user reads
 * fail closed after the key cache's time-to-live, while system jobs still
 * complete on the availability key.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/base.h"
#include "harness.h"

#define N 5

static struct srv V, M; /* vault server, mail service server */
static char OWNER[256]; /* vault owner on V */
static char ADMIN[256]; /* tenant admin on M */
static char SVC_OID[64];
static char *URI_A, *URI_B;

static void put_items(const char *upn)
{
    for (int i = 0; i < N; i++) {
        char path[200], body[64];
        snprintf(path, sizeof path, "/tenants/contoso/mailboxes/%s/items/m%d", upn, i);
        snprintf(body, sizeof body, "SECRET-BODY-%d of %s", i, upn);
        struct http_result r;
        http(&M, "PUT", path, ADMIN, body, strlen(body), NULL, &r);
        assert_int_equal(r.status, 201);
        http_free(&r);
    }
}

static long read_item(const char *upn, int i, char **body)
{
    char path[200];
    snprintf(path, sizeof path, "/tenants/contoso/mailboxes/%s/items/m%d", upn, i);
    struct http_result r;
    http(&M, "GET", path, ADMIN, NULL, 0, NULL, &r);
    long st = r.status;
    if (body)
        *body = r.body ? strndup(r.body, r.body_len) : strdup("");
    http_free(&r);
    return st;
}

static int fallbacks(void)
{
    char *out = NULL;
    sh(&out,
       "sqlite3 %s/ckey.db \"SELECT COUNT(*) FROM ck_audit WHERE operation = 'Fallback to "
       "Availability Key'\"",
       M.dir);
    int n = atoi(out);
    free(out);
    return n;
}

static int setup(void **state)
{
    /* The customer's vaults, on their own server. */
    srv_start_args(&V, false, "--role vault");
    provision_vault(&V, "alice@contoso.com", "sub1", "av-a", "westus", true, OWNER);
    char again[256];
    provision_vault(&V, "alice@contoso.com", "sub1", "av-b", "eastus", true, again);
    const char *rsa = "{\"kty\":\"RSA\",\"key_size\":2048,\"attributes\":{}}";
    vault_key(&V, OWNER, "av-a", "root-a", rsa);
    vault_key(&V, OWNER, "av-b", "root-b", rsa);
    /* The mail service is an application the vault installation knows. */
    char *out = NULL;
    if (cli(&V, NULL, &out, "principal add --app 'Contoso Mail Service'") != 0)
        return -1;
    free(out);
    char *svc = token_for(&V, "Contoso Mail Service", "2h", NULL);
    char tid[37];
    whoami(&V, svc, SVC_OID, tid);
    const char *grant = "\"get\",\"wrapKey\",\"unwrapKey\"";
    vault_policy(&V, OWNER, "av-a", "add", SVC_OID, grant);
    vault_policy(&V, OWNER, "av-b", "add", SVC_OID, grant);
    char tokfile[300], args[1600];
    snprintf(tokfile, sizeof tokfile, "%s/mail-service.token", V.dir);
    FILE *f = fopen(tokfile, "w");
    fprintf(f, "%s\n", svc);
    fclose(f);
    free(svc);
    /* And so is the files service. */
    if (cli(&V, NULL, &out, "principal add --app 'Contoso Files Service'") != 0)
        return -1;
    free(out);
    char *files = token_for(&V, "Contoso Files Service", "2h", NULL), files_oid[37];
    whoami(&V, files, files_oid, tid);
    vault_policy(&V, OWNER, "av-a", "add", files_oid, grant);
    vault_policy(&V, OWNER, "av-b", "add", files_oid, grant);
    char files_tokfile[300];
    snprintf(files_tokfile, sizeof files_tokfile, "%s/files-service.token", V.dir);
    f = fopen(files_tokfile, "w");
    fprintf(f, "%s\n", files);
    fclose(f);
    free(files);
    URI_A = vault_url(&V, "av-a", "/keys/root-a");
    URI_B = vault_url(&V, "av-b", "/keys/root-b");

    /* The service, elsewhere, with a short key cache. */
    snprintf(args, sizeof args,
             "--role service --vault-cacert %s --vault-token-file %s --files-vault-token-file %s "
             "--key-cache-ttl 2 --tik-cache-ttl 10 --tik-refresh-ahead 2",
             V.cacert, tokfile, files_tokfile);
    srv_start_args(&M, false, args);
    cli(&M, NULL, &out, "principal add --upn alice@contoso.com");
    free(out);
    char *admin = token_for(&M, "alice@contoso.com", "2h", NULL);
    snprintf(ADMIN, sizeof ADMIN, "%s", admin);
    free(admin);
    if (cli(&M, NULL, &out, "tenant create contoso --admin alice@contoso.com") != 0)
        return -1;
    free(out);
    int st = cli(&M, ADMIN, &out, "dep new --tenant contoso --name DEP-1 --key %s --key %s", URI_A,
                 URI_B);
    if (st != 0) {
        fprintf(stderr, "dep new: %s\n", out);
        return -1;
    }
    free(out);
    const char *boxes[] = {"bob@contoso.com", "dave@contoso.com"};
    for (int i = 0; i < 2; i++) {
        cli(&M, ADMIN, &out, "mailuser new --tenant contoso --identity %s --dep DEP-1", boxes[i]);
        free(out);
        if (cli(&M, ADMIN, &out, "mailbox new --tenant contoso --identity %s", boxes[i]) != 0) {
            fprintf(stderr, "mailbox new: %s\n", out);
            return -1;
        }
        free(out);
        put_items(boxes[i]);
    }
    return 0;
}

static int teardown(void **state)
{
    int a = srv_stop(&M), b = srv_stop(&V);
    srv_cleanup(&M);
    srv_cleanup(&V);
    free(URI_A);
    free(URI_B);
    return a == 0 && b == 0 ? 0 : -1;
}

static void test_vaults_down_reads_use_availability_key(void **state)
{
    assert_int_equal(fallbacks(), 0);
    assert_int_equal(srv_stop(&V), 0);
    sleep(3); /* past the key cache's time-to-live */
    for (int i = 0; i < N; i++) {
        char *body = NULL, want[64];
        snprintf(want, sizeof want, "SECRET-BODY-%d of bob@contoso.com", i);
        assert_int_equal(read_item("bob@contoso.com", i, &body), 200);
        assert_string_equal(body, want);
        free(body);
    }
    /* Each use is on the record, with the DEP, key versions and request. */
    assert_int_equal(fallbacks(), N);
    char *out = NULL;
    sh(&out,
       "sqlite3 %s/ckey.db \"SELECT detail FROM ck_audit WHERE operation = 'Fallback to "
       "Availability Key' LIMIT 1\"",
       M.dir);
    assert_non_null(strstr(out, "root keys unreachable"));
    assert_non_null(strstr(out, "/keys/root-a/"));
    free(out);
    srv_start_args(&V, true, "--role vault");
}

static void test_permissions_removed_fail_closed(void **state)
{
    char *body = NULL;
    assert_int_equal(read_item("bob@contoso.com", 0, &body), 200);
    free(body);
    int before = fallbacks();
    /* The customer takes wrapKey and unwrapKey away on both vaults. */
    vault_policy(&V, OWNER, "av-a", "replace", SVC_OID, "\"get\"");
    vault_policy(&V, OWNER, "av-b", "replace", SVC_OID, "\"get\"");
    sleep(3);
    assert_int_equal(read_item("bob@contoso.com", 1, &body), 403);
    assert_null(strstr(body, "SECRET-BODY"));
    assert_non_null(strstr(body, "DEP-1"));
    free(body);
    assert_int_equal(fallbacks(), before);

    /* A system job still completes on the availability key, on the record. */
    char *out = NULL;
    assert_int_equal(cli(&M, ADMIN, &out,
                         "mailbox set dave@contoso.com --tenant contoso --dep "
                         "none"),
                     0);
    free(out);
    int st = cli(&M, ADMIN, &out,
                 "mailbox stats dave@contoso.com --tenant contoso --wait "
                 "--timeout 60");
    if (st != 0)
        fail_msg("%s", out);
    free(out);
    assert_true(fallbacks() > before);
    char want[64];
    snprintf(want, sizeof want, "SECRET-BODY-3 of dave@contoso.com");
    assert_int_equal(read_item("dave@contoso.com", 3, &body), 200);
    assert_string_equal(body, want);
    free(body);
}

/* Files never fall back to the availability key: with the vaults down,
 * they are served from the TIK cache until it expires, then 503. */
static void test_files_outage_serves_cache_then_503(void **state)
{
    char *out = NULL;
    assert_int_equal(cli(&M, ADMIN, &out, "geo add --tenant contoso --geo EUR"), 0);
    free(out);
    assert_int_equal(cli(&M, ADMIN, &out, "site new --tenant contoso --geo EUR --site /sites/hr"),
                     0);
    free(out);
    int st = cli(&M, ADMIN, &out,
                 "spo-dep register --tenant contoso --geo EUR --primary-key %s "
                 "--secondary-key %s",
                 URI_A, URI_B);
    if (st != 0)
        fail_msg("register: %s", out);
    free(out);
    assert_int_equal(cli(&M, ADMIN, &out, "spo-dep get --tenant contoso --geo EUR --wait"), 0);
    assert_non_null(strstr(out, "Registered"));
    free(out);
    const char *doc = "quarterly numbers, confidential";
    struct http_result r;
    http(&M, "PUT", "/tenants/contoso/sites/hr/files/q3.txt", ADMIN, doc, strlen(doc), NULL, &r);
    assert_int_equal(r.status, 201);
    http_free(&r);
    int before = fallbacks();

    /* A read just before the outage: the TIK is in the cache, fetched at
     * most 8 s ago (older entries are refreshed in the last 2 s of 10). */
    http(&M, "GET", "/tenants/contoso/sites/hr/files/q3.txt", ADMIN, NULL, 0, NULL, &r);
    assert_int_equal(r.status, 200);
    http_free(&r);
    int64_t t0 = ck_now_ms();
    assert_int_equal(srv_stop(&V), 0);
    http(&M, "GET", "/tenants/contoso/sites/hr/files/q3.txt", ADMIN, NULL, 0, NULL, &r);
    if (ck_now_ms() - t0 < 1500) {       /* else too loaded a machine to tell */
        assert_int_equal(r.status, 200); /* from the TIK cache */
        assert_int_equal(r.body_len, strlen(doc));
    }
    http_free(&r);
    sleep(11); /* past the TIK cache's time-to-live */
    http(&M, "GET", "/tenants/contoso/sites/hr/files/q3.txt", ADMIN, NULL, 0, NULL, &r);
    assert_int_equal(r.status, 503);
    assert_non_null(strstr(r.body, "unreachable"));
    assert_null(strstr(r.body, "confidential"));
    http_free(&r);
    assert_int_equal(fallbacks(), before);
    sh(&out,
       "sqlite3 %s/ckey.db \"SELECT COUNT(*) FROM ck_audit WHERE operation LIKE "
       "'%%Availability%%' AND target LIKE '%%EUR%%'\"",
       M.dir);
    assert_int_equal(atoi(out), 0);
    free(out);
    srv_start_args(&V, true, "--role vault");
    http(&M, "GET", "/tenants/contoso/sites/hr/files/q3.txt", ADMIN, NULL, 0, NULL, &r);
    assert_int_equal(r.status, 200);
    http_free(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vaults_down_reads_use_availability_key),
        cmocka_unit_test(test_permissions_removed_fail_closed),
        cmocka_unit_test(test_files_outage_serves_cache_then_503),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
