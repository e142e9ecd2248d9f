/*
 * Integration tests of mail encryption against a real server with two real
 * vaults: the reference document's walk (DEP, mail user, mbox import,
 * statistics, re-assignment, back to service-managed keys), refresh after a
 * key roll, no plaintext at rest, every bad input leaving state unchanged,
 * and a crash in the middle of a re-encryption job.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"

#define MAIL_APP_ID "6d61696c-0000-4000-8000-636b65790001"
#define NMSG 200

static struct srv S;
static char ALICE[256];
static char MAIL_OID[64];
static char *MSG[NMSG];
static size_t MSGLEN[NMSG];

/* ---------- helpers ---------- */

static void arm_policy(const char *vault, const char *op, const char *oid, const char *perms)
{
    vault_policy(&S, ALICE, vault, op, oid, perms);
}

static void make_key(const char *vault, const char *name, const char *body)
{
    vault_key(&S, ALICE, vault, name, body);
}

static char *dep_new(const char *name, const char *uri1, const char *uri2)
{
    json_t *d =
        cli_json_as(&S, ALICE, NULL, 0, "dep new --tenant contoso --name %s --key %s --key %s",
                    name, uri1, uri2);
    char *id = strdup(json_string_value(json_object_get(d, "Identity")));
    json_decref(d);
    return id;
}

static json_t *stats(const char *upn)
{
    return cli_json_as(&S, ALICE, NULL, 0, "mailbox stats %s --tenant contoso", upn);
}

static void wait_encrypted(const char *upn)
{
    char *out = NULL;
    int st = cli(&S, ALICE, &out, "mailbox stats %s --tenant contoso --wait --timeout 120", upn);
    if (st != 0) {
        size_t n = strlen(out);
        fail_msg("wait (exit %d): ...%s", st, out + (n > 300 ? n - 300 : 0));
    }
    free(out);
}

/* Every message reads back byte for byte. */
static void read_all(const char *upn)
{
    for (int i = 0; i < NMSG; i++) {
        char path[300];
        snprintf(path, sizeof path, "/tenants/contoso/mailboxes/%s/items/msg-%06d", upn, i + 1);
        struct http_result r;
        http(&S, "GET", path, ALICE, NULL, 0, NULL, &r);
        if (r.status != 200 || r.body_len != MSGLEN[i] || memcmp(r.body, MSG[i], MSGLEN[i]))
            fail_msg("message %d: status %ld, %zu bytes (want %zu)", i + 1, r.status, r.body_len,
                     MSGLEN[i]);
        http_free(&r);
    }
}

/* An mbox of NMSG messages, some with lines that need mboxrd escaping. */
static void write_mbox(const char *path)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    for (int i = 0; i < NMSG; i++) {
        char *m = NULL;
        size_t pad = (size_t)(i * 37 % 3000);
        char *filler = malloc(pad + 1);
        memset(filler, 'a' + i % 26, pad);
        filler[pad] = '\0';
        if (asprintf(&m,
                     "From: sender%d@fabrikam.com\nTo: bob@contoso.com\nSubject: message %d\n\n"
                     "PLAINTEXT-MARKER-%05d body\n%s%s\n",
                     i, i + 1, i, i % 10 == 0 ? "From here on, an escaped line.\n" : "",
                     filler) < 0)
            fail();
        free(filler);
        MSG[i] = m;
        MSGLEN[i] = strlen(m);
        fprintf(f, "From sender%d@fabrikam.com Thu Dec  3 17:00:00 2026\n", i);
        /* mboxrd: a body line starting with "From " is written as ">From ". */
        for (const char *line = m; *line;) {
            const char *nl = strchr(line, '\n');
            size_t len = nl ? (size_t)(nl - line + 1) : strlen(line);
            if (strncmp(line, "From ", 5) == 0)
                fputc('>', f);
            fwrite(line, 1, len, f);
            line += len;
        }
        fputc('\n', f);
    }
    fclose(f);
}

/* ---------- set-up ---------- */

static int setup(void **state)
{
    srv_start_args(&S, false, "--key-cache-ttl 2");
    provision_vault(&S, "alice@contoso.com", "sub1", "mail-a", "westus", true, ALICE);
    char again[256];
    provision_vault(&S, "alice@contoso.com", "sub1", "mail-b", "eastus", true, again);
    provision_vault(&S, "alice@contoso.com", "sub1", "mail-nopp", "westus", false, again);
    struct http_result r;
    http(&S, "GET", "/directory/principals/" MAIL_APP_ID, ALICE, NULL, 0, NULL, &r);
    if (r.status != 200)
        return -1;
    snprintf(MAIL_OID, sizeof MAIL_OID, "%s",
             json_string_value(json_object_get(r.json, "objectId")));
    http_free(&r);
    const char *grant = "\"get\",\"wrapKey\",\"unwrapKey\"";
    arm_policy("mail-a", "add", MAIL_OID, grant);
    arm_policy("mail-b", "add", MAIL_OID, grant);
    arm_policy("mail-nopp", "add", MAIL_OID, grant);
    const char *rsa = "{\"kty\":\"RSA\",\"key_size\":2048,\"attributes\":{}}";
    make_key("mail-a", "root-a", rsa);
    make_key("mail-b", "root-b", rsa);
    char *out = NULL;
    if (cli(&S, NULL, &out, "tenant create contoso --admin alice@contoso.com") != 0) {
        fprintf(stderr, "%s\n", out);
        return -1;
    }
    free(out);
    return 0;
}

static int teardown(void **state)
{
    int status = srv_stop(&S);
    srv_cleanup(&S);
    for (int i = 0; i < NMSG; i++)
        free(MSG[i]);
    return status == 0 ? 0 : -1;
}

/* ---------- the reference walk ---------- */

static void test_reference_walk(void **state)
{
    char *a = key_uri(&S, "mail-a", "root-a"), *b = key_uri(&S, "mail-b", "root-b");
    char *dep1 = dep_new("Contoso-EX-NA-DEP1", a, b);
    assert_int_equal(strlen(dep1), 36);

    char *out = NULL;
    assert_int_equal(cli(&S, ALICE, &out,
                         "mailuser new --tenant contoso --identity "
                         "bob@contoso.com"),
                     0);
    free(out);
    assert_int_equal(
        cli(&S, ALICE, &out, "mailuser set bob@contoso.com --tenant contoso --dep %s", dep1), 0);
    free(out);

    char mbox[300];
    snprintf(mbox, sizeof mbox, "%s/bob.mbox", S.dir);
    write_mbox(mbox);
    assert_int_equal(cli(&S, ALICE, &out,
                         "mailbox import bob@contoso.com --tenant contoso "
                         "--mbox %s",
                         mbox),
                     0);
    free(out);

    json_t *st = stats("bob@contoso.com");
    assert_string_equal(json_string_value(json_object_get(st, "DataEncryptionPolicyID")), dep1);
    assert_true(json_is_true(json_object_get(st, "IsEncrypted")));
    assert_int_equal(json_integer_value(json_object_get(st, "ItemCount")), NMSG);
    json_decref(st);
    json_t *d = cli_json_as(&S, ALICE, NULL, 0, "dep get --tenant contoso %s", dep1);
    assert_string_equal(json_string_value(json_object_get(d, "Name")), "Contoso-EX-NA-DEP1");
    json_decref(d);
    read_all("bob@contoso.com");

    /* A second DEP: a new mailbox key and a job that moves every item. */
    char *dep2 = dep_new("Contoso-EX-NA-DEP2", a, b);
    assert_int_equal(
        cli(&S, ALICE, &out, "mailbox set bob@contoso.com --tenant contoso --dep %s", dep2), 0);
    free(out);
    wait_encrypted("bob@contoso.com");
    st = stats("bob@contoso.com");
    assert_string_equal(json_string_value(json_object_get(st, "DataEncryptionPolicyID")), dep2);
    assert_int_equal(json_integer_value(json_object_get(st, "PendingItems")), 0);
    json_decref(st);
    read_all("bob@contoso.com");

    /* Back to service-managed keys. */
    assert_int_equal(cli(&S, ALICE, &out,
                         "mailbox set bob@contoso.com --tenant contoso --dep "
                         "none"),
                     0);
    free(out);
    wait_encrypted("bob@contoso.com");
    st = stats("bob@contoso.com");
    assert_true(json_is_null(json_object_get(st, "DataEncryptionPolicyID")));
    assert_true(json_is_true(json_object_get(st, "IsEncrypted")));
    json_decref(st);
    read_all("bob@contoso.com");

    /* And onto DEP1 again, for the tests that follow. */
    assert_int_equal(
        cli(&S, ALICE, &out, "mailbox set bob@contoso.com --tenant contoso --dep %s", dep1), 0);
    free(out);
    wait_encrypted("bob@contoso.com");
    free(dep1);
    free(dep2);
    free(a);
    free(b);
}

static void test_no_plaintext_at_rest(void **state)
{
    char *out = NULL;
    /* Fold the WAL in half-way: both the WAL and the database are searched. */
    int st =
        sh(&out, "cd %s && cat ckey.db* availability.db* | grep -c -a PLAINTEXT-MARKER", S.dir);
    assert_int_equal(st, 1); /* grep: no match */
    free(out);
    st = sh(&out,
            "cd %s && sqlite3 ckey.db 'PRAGMA wal_checkpoint(TRUNCATE)' >/dev/null && cat "
            "ckey.db* | grep -c -a PLAINTEXT-MARKER",
            S.dir);
    assert_int_equal(st, 1);
    free(out);
    /* The search itself works: the marker is in the mbox file. */
    st = sh(&out, "grep -c -a PLAINTEXT-MARKER %s/bob.mbox", S.dir);
    assert_int_equal(st, 0);
    free(out);
}

static void test_refresh_after_key_roll(void **state)
{
    json_t *deps = cli_json_as(&S, ALICE, NULL, 0, "dep get --tenant contoso");
    const char *dep1 = NULL;
    size_t i;
    json_t *d;
    json_array_foreach(deps, i, d) if (strcmp(json_string_value(json_object_get(d, "Name")),
                                              "Contoso-EX-NA-DEP1") == 0) dep1 =
        json_string_value(json_object_get(d, "Identity"));
    assert_non_null(dep1);
    json_t *before = cli_json_as(&S, ALICE, NULL, 0, "dep get --tenant contoso %s", dep1);
    json_t *jobs_before = cli_json_as(&S, ALICE, NULL, 0, "job list --tenant contoso");

    char *out = NULL;
    assert_int_equal(cli(&S, ALICE, &out, "key rotate --vault mail-a --name root-a"), 0);
    free(out);
    json_t *rotated = cli_json_as(&S, ALICE, NULL, 0, "key show --vault mail-a --name root-a");
    const char *new_version = NULL;
    const char *kid = json_string_value(json_object_get(json_object_get(rotated, "key"), "kid"));
    new_version = strrchr(kid, '/') + 1;

    json_t *after = cli_json_as(&S, ALICE, NULL, 0, "dep refresh --tenant contoso %s", dep1);
    const char *v0 = json_string_value(json_array_get(json_object_get(after, "KeyVersions"), 0));
    assert_string_equal(v0, new_version);
    assert_string_not_equal(
        v0, json_string_value(json_array_get(json_object_get(before, "KeyVersions"), 0)));
    /* The second key's version did not move; no mailbox was touched. */
    assert_string_equal(
        json_string_value(json_array_get(json_object_get(after, "KeyVersions"), 1)),
        json_string_value(json_array_get(json_object_get(before, "KeyVersions"), 1)));
    json_t *jobs_after = cli_json_as(&S, ALICE, NULL, 0, "job list --tenant contoso");
    assert_int_equal(json_array_size(jobs_after), json_array_size(jobs_before));
    json_t *st = stats("bob@contoso.com");
    assert_true(json_is_true(json_object_get(st, "IsEncrypted")));
    json_decref(st);
    read_all("bob@contoso.com");
    /* With both vaults answering, the availability key was never used. */
    char *out2 = NULL;
    sh(&out2,
       "sqlite3 %s/ckey.db \"SELECT COUNT(*) FROM ck_audit WHERE operation = 'Fallback to "
       "Availability Key'\"",
       S.dir);
    assert_int_equal(atoi(out2), 0);
    free(out2);
    json_decref(rotated);
    json_decref(before);
    json_decref(after);
    json_decref(jobs_before);
    json_decref(jobs_after);
    json_decref(deps);
}

/* ---------- bad input ---------- */

static char *state_of_tenant(void)
{
    char *deps = NULL, *boxes = NULL, *all = NULL;
    cli(&S, ALICE, &deps, "-o json dep get --tenant contoso");
    cli(&S, ALICE, &boxes, "-o json mailbox list --tenant contoso");
    if (asprintf(&all, "%s|%s", deps, boxes) < 0)
        fail();
    free(deps);
    free(boxes);
    return all;
}

static void test_bad_dep_input_changes_nothing(void **state)
{
    const char *rsa = "{\"kty\":\"RSA\",\"key_size\":2048,\"attributes\":{}}";
    make_key("mail-a", "nowrap", "{\"kty\":\"RSA\",\"key_ops\":[\"unwrapKey\"],\"attributes\":{}}");
    make_key("mail-a", "expiring", "{\"kty\":\"RSA\",\"attributes\":{\"exp\":4102444800}}");
    make_key("mail-a", "other-a", rsa);
    make_key("mail-nopp", "root-np", rsa);
    /* A vault the mail service was never granted. */
    char spare[256];
    provision_vault(&S, "alice@contoso.com", "sub1", "mail-closed", "westus", true, spare);
    make_key("mail-closed", "root-c", rsa);

    char *a = key_uri(&S, "mail-a", "root-a"), *b = key_uri(&S, "mail-b", "root-b");
    char *a2 = key_uri(&S, "mail-a", "other-a"), *nowrap = key_uri(&S, "mail-a", "nowrap");
    char *exp = key_uri(&S, "mail-a", "expiring"), *np = key_uri(&S, "mail-nopp", "root-np");
    char *closed = key_uri(&S, "mail-closed", "root-c"),
         *missing = key_uri(&S, "mail-b", "no-such-key");
    struct {
        const char *k1, *k2, *needle;
    } cases[] = {
        {a, a2, "two different vaults"},
        {nowrap, b, "wrapKey"},
        {exp, b, "expiry"},
        {np, b, "purge protection"},
        {closed, b, "mail service principal"},
        {missing, a, "mail service principal"},
        {"not-a-uri", b, "not a key URI"},
    };
    char *before = state_of_tenant();
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *out = NULL;
        int st = cli(&S, ALICE, &out, "dep new --tenant contoso --name bad%zu --key %s --key %s", i,
                     cases[i].k1, cases[i].k2);
        if (st != 1 || !strstr(out, cases[i].needle))
            fail_msg("case %zu: exit %d: %s", i, st, out);
        free(out);
    }
    char *after = state_of_tenant();
    assert_string_equal(before, after);
    free(before);
    free(after);
    free(a);
    free(b);
    free(a2);
    free(nowrap);
    free(exp);
    free(np);
    free(closed);
    free(missing);
}

static void test_bad_assignments_change_nothing(void **state)
{
    char *out = NULL;
    /* Another tenant with its own DEP. */
    assert_int_equal(cli(&S, NULL, &out, "tenant create fabrikam --admin alice@contoso.com"), 0);
    free(out);
    char *a = key_uri(&S, "mail-a", "root-a"), *b = key_uri(&S, "mail-b", "root-b");
    json_t *f = cli_json_as(&S, ALICE, NULL, 0,
                            "dep new --tenant fabrikam --name F1 --key %s --key %s", a, b);
    const char *foreign = json_string_value(json_object_get(f, "Identity"));
    char *disabled = dep_new("Disabled-DEP", a, b);
    json_t *x =
        cli_json_as(&S, ALICE, NULL, 0, "dep set --tenant contoso %s --enabled false", disabled);
    json_decref(x);

    char *before = state_of_tenant();
    const char *bad[] = {foreign, disabled, "00000000-0000-4000-8000-000000000000", "nonsense"};
    for (size_t i = 0; i < 4; i++) {
        assert_int_equal(
            cli(&S, ALICE, &out, "mailbox set bob@contoso.com --tenant contoso --dep %s", bad[i]),
            1);
        free(out);
    }
    /* A malformed mbox imports nothing. */
    char path[300];
    snprintf(path, sizeof path, "%s/bad.mbox", S.dir);
    FILE *fp = fopen(path, "w");
    fputs("Subject: no From_ line first\n\nbody\n", fp);
    fclose(fp);
    assert_int_equal(cli(&S, ALICE, &out,
                         "mailbox import carol@contoso.com --tenant contoso "
                         "--mbox %s",
                         path),
                     1);
    free(out);
    char *after = state_of_tenant();
    assert_string_equal(before, after);
    free(before);
    free(after);

    /* A principal who is no tenant admin can do none of it. */
    char *eve = NULL;
    cli(&S, NULL, &out, "principal add --upn eve@contoso.com");
    free(out);
    eve = token_for(&S, "eve@contoso.com", "1h", NULL);
    assert_int_equal(cli(&S, eve, &out, "dep get --tenant contoso"), 1);
    free(out);
    assert_int_equal(cli(&S, eve, &out, "mailbox stats bob@contoso.com --tenant contoso"), 1);
    free(out);
    free(eve);
    json_decref(f);
    free(disabled);
    free(a);
    free(b);
}

static void test_fifty_deps_at_most(void **state)
{
    char *a = key_uri(&S, "mail-a", "root-a"), *b = key_uri(&S, "mail-b", "root-b");
    json_t *deps = cli_json_as(&S, ALICE, NULL, 0, "dep get --tenant contoso");
    size_t have = json_array_size(deps);
    json_decref(deps);
    for (size_t i = have; i < 50; i++) {
        char name[32];
        snprintf(name, sizeof name, "filler-%zu", i);
        free(dep_new(name, a, b));
    }
    char *before = state_of_tenant(), *out = NULL;
    assert_int_equal(cli(&S, ALICE, &out,
                         "dep new --tenant contoso --name one-too-many --key %s "
                         "--key %s",
                         a, b),
                     1);
    assert_non_null(strstr(out, "at most 50"));
    free(out);
    char *after = state_of_tenant();
    assert_string_equal(before, after);
    free(before);
    free(after);
    free(a);
    free(b);
}

/* An end user reaches their own mailbox and nothing else. */
static void test_end_user_reaches_only_own_mailbox(void **state)
{
    char *out = NULL;
    cli(&S, NULL, &out, "principal add --upn bob@contoso.com");
    free(out);
    char *bob = token_for(&S, "bob@contoso.com", "1h", NULL);
    struct http_result r;
    http(&S, "GET", "/tenants/contoso/mailboxes/bob@contoso.com/items/msg-000007", bob, NULL, 0,
         NULL, &r);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.body_len, MSGLEN[6]);
    assert_memory_equal(r.body, MSG[6], MSGLEN[6]);
    http_free(&r);
    http(&S, "GET", "/tenants/contoso/mailboxes/bob@contoso.com", bob, NULL, 0, NULL, &r);
    assert_int_equal(r.status, 200);
    http_free(&r);
    const char *mine = "Subject: note to self\n\nhello\n";
    http(&S, "PUT", "/tenants/contoso/mailboxes/bob@contoso.com/items/note-1", bob, mine,
         strlen(mine), NULL, &r);
    assert_int_equal(r.status, 201);
    http_free(&r);
    /* Not another user's mailbox, not policies, not assignments. */
    http(&S, "GET", "/tenants/contoso/mailboxes/carol@contoso.com/items/i0001", bob, NULL, 0, NULL,
         &r);
    assert_int_equal(r.status, 403);
    assert_null(strstr(r.body, "carol's message"));
    http_free(&r);
    http(&S, "GET", "/tenants/contoso/deps", bob, NULL, 0, NULL, &r);
    assert_int_equal(r.status, 403);
    http_free(&r);
    const char *none = "{\"dataEncryptionPolicy\":null}";
    http(&S, "PATCH", "/tenants/contoso/mailboxes/bob@contoso.com", bob, none, strlen(none), NULL,
         &r);
    assert_int_equal(r.status, 403);
    http_free(&r);
    http(&S, "DELETE", "/tenants/contoso/mailboxes/bob@contoso.com/items/note-1", bob, NULL, 0,
         NULL, &r);
    assert_int_equal(r.status, 204);
    http_free(&r);
    free(bob);
}

static char *dep_id_of(const char *name)
{
    json_t *d = cli_json_as(&S, ALICE, NULL, 0, "dep get --tenant contoso %s", name);
    char *id = strdup(json_string_value(json_object_get(d, "Identity")));
    json_decref(d);
    return id;
}

/* Kill -9 in the middle of a re-encryption job; the restarted server
 * finishes it and every item is intact. */
static void test_crash_during_reencryption(void **state)
{
    enum { N = 400 };
    char *out = NULL, *items[N];
    assert_int_equal(cli(&S, ALICE, &out,
                         "mailbox new --tenant contoso --identity "
                         "carol@contoso.com"),
                     0);
    free(out);
    for (int i = 0; i < N; i++) {
        if (asprintf(&items[i], "Subject: item %d\n\ncarol's message %d %s\n", i, i,
                     i % 7 ? "" : "with a longer body line") < 0)
            fail();
        char path[200];
        snprintf(path, sizeof path, "/tenants/contoso/mailboxes/carol@contoso.com/items/i%04d", i);
        struct http_result r;
        http(&S, "PUT", path, ALICE, items[i], strlen(items[i]), NULL, &r);
        assert_int_equal(r.status, 201);
        http_free(&r);
    }
    /* Slow the job down so that the kill lands in its middle. */
    assert_int_equal(srv_stop(&S), 0);
    srv_start_args(&S, true, "--key-cache-ttl 2 --job-throttle-ms 400 --job-lease 2");
    char *dep2 = dep_id_of("Contoso-EX-NA-DEP2");
    json_t *st = cli_json_as(&S, ALICE, NULL, 0,
                             "mailbox set carol@contoso.com --tenant contoso --dep %s", dep2);
    char job[64];
    snprintf(job, sizeof job, "%s", json_string_value(json_object_get(st, "JobId")));
    json_decref(st);
    int64_t done = 0;
    for (int tries = 0; tries < 200 && done < 100; tries++) {
        usleep(50 * 1000);
        json_t *j = cli_json_as(&S, ALICE, NULL, 0, "job show %s", job);
        done = json_integer_value(json_object_get(j, "done"));
        json_decref(j);
    }
    assert_true(done >= 100 && done < N);
    srv_kill(&S);

    srv_start_args(&S, true, "--key-cache-ttl 2");
    wait_encrypted("carol@contoso.com");
    json_t *j = cli_json_as(&S, ALICE, NULL, 0, "job show %s", job);
    assert_string_equal(json_string_value(json_object_get(j, "state")), "done");
    assert_true(json_integer_value(json_object_get(j, "attempts")) >= 2);
    json_decref(j);
    for (int i = 0; i < N; i++) {
        char path[200];
        snprintf(path, sizeof path, "/tenants/contoso/mailboxes/carol@contoso.com/items/i%04d", i);
        struct http_result r;
        http(&S, "GET", path, ALICE, NULL, 0, NULL, &r);
        if (r.status != 200 || r.body_len != strlen(items[i]) ||
            memcmp(r.body, items[i], r.body_len))
            fail_msg("item %d after the crash: %ld", i, r.status);
        http_free(&r);
        free(items[i]);
    }
    free(dep2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reference_walk),
        cmocka_unit_test(test_no_plaintext_at_rest),
        cmocka_unit_test(test_refresh_after_key_roll),
        cmocka_unit_test(test_bad_dep_input_changes_nothing),
        cmocka_unit_test(test_bad_assignments_change_nothing),
        cmocka_unit_test(test_fifty_deps_at_most),
        cmocka_unit_test(test_crash_during_reencryption),
        cmocka_unit_test(test_end_user_reaches_only_own_mailbox),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
