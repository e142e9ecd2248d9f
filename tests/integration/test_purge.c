/*
 * Integration tests of the exit path against a real server with real
 * vaults: the signed permanent purge of a mail DEP and of a files geo end to
 * end (revoke, request, document, sign, execute, certificate, verify, 410,
 * and a byte scan of the store files for the key copies captured before),
 * every out-of-order or forged step refused with nothing changed, a crash in
 * the middle of the purge job, and a tenant's offboarding back to
 * service-managed keys with no further call to its vaults.
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

#define MAIL_APP_ID "6d61696c-0000-4000-8000-636b65790001"
#define FILES_APP_ID "66696c65-0000-4000-8000-636b65790002"
#define GRANT "\"get\",\"wrapKey\",\"unwrapKey\""
#define RSA "{\"kty\":\"RSA\",\"key_size\":2048,\"attributes\":{}}"

static struct srv S;
static char ALICE[256];
static char MAIL_OID[64], FILES_OID[64];
static char TMP[64];

/* ---------- helpers ---------- */

static char *tmp(const char *name)
{
    static char path[8][300];
    static int next;
    char *p = path[next++ % 8];
    snprintf(p, 300, "%s/%s", TMP, name);
    return p;
}

/* Runs a refused command: exit 1 and a message containing want. */
static void refused(const char *token, const char *want, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void refused(const char *token, const char *want, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *args = NULL;
    if (vasprintf(&args, fmt, ap) < 0)
        fail();
    va_end(ap);
    char *o = NULL;
    int st = cli(&S, token, &o, "%s", args);
    if (st != 1 || !strstr(o, want))
        fail_msg("ckey %s: exit %d, want 1 and \"%s\":\n%s", args, st, want, o);
    free(o);
    free(args);
}

static const char *str(json_t *o, const char *k)
{
    const char *s = json_string_value(json_object_get(o, k));
    return s ? s : "";
}

static void principal_oid(const char *app, char out[64])
{
    struct http_result r;
    char path[100];
    snprintf(path, sizeof path, "/directory/principals/%s", app);
    http(&S, "GET", path, ALICE, NULL, 0, NULL, &r);
    assert_int_equal(r.status, 200);
    snprintf(out, 64, "%s", json_string_value(json_object_get(r.json, "objectId")));
    http_free(&r);
}

/* Two vaults with a root key each, the service principal oid granted. */
static void two_vaults(const char *a, const char *b, const char *oid)
{
    char again[256];
    provision_vault(&S, "alice@contoso.com", "sub1", a, "westus", true, again);
    provision_vault(&S, "alice@contoso.com", "sub1", b, "eastus", true, again);
    vault_policy(&S, ALICE, a, "add", oid, GRANT);
    vault_policy(&S, ALICE, b, "add", oid, GRANT);
    vault_key(&S, ALICE, a, "root", RSA);
    vault_key(&S, ALICE, b, "root", RSA);
}

static void put_item(const char *tenant, const char *upn, const char *id, const char *body)
{
    char path[300];
    snprintf(path, sizeof path, "/tenants/%s/mailboxes/%s/items/%s", tenant, upn, id);
    struct http_result r;
    http(&S, "PUT", path, ALICE, body, strlen(body), "Content-Type: message/rfc822", &r);
    if (r.status != 200 && r.status != 201 && r.status != 204)
        fail_msg("PUT %s: %ld %s", path, r.status, r.body);
    http_free(&r);
}

static long get_item(const char *tenant, const char *upn, const char *id, char **body)
{
    char path[300];
    snprintf(path, sizeof path, "/tenants/%s/mailboxes/%s/items/%s", tenant, upn, id);
    struct http_result r;
    http(&S, "GET", path, ALICE, NULL, 0, NULL, &r);
    long st = r.status;
    if (body)
        *body = strdup(r.body ? r.body : "");
    http_free(&r);
    return st;
}

/* One column of hex blobs from a store, via the sqlite3 shell. */
static int capture(const char *db, const char *sql, char blobs[][2100], int max)
{
    char *out = NULL;
    assert_int_equal(sh(&out, "sqlite3 %s/%s \"%s\"", S.dir, db, sql), 0);
    int n = 0;
    for (char *save = NULL, *line = strtok_r(out, "\n", &save); line && n < max;
         line = strtok_r(NULL, "\n", &save))
        if (strlen(line) >= 16)
            snprintf(blobs[n++], 2100, "%s", line);
    free(out);
    return n;
}

static size_t unhex(const char *h, unsigned char *out)
{
    size_t n = strlen(h) / 2;
    for (size_t i = 0; i < n; i++)
        sscanf(h + 2 * i, "%2hhx", &out[i]);
    return n;
}

/* Whether the bytes of hex blob occur in the file (missing file: no). */
static bool file_holds(const char *path, const char *hex)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return false;
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *data = malloc(size > 0 ? (size_t)size : 1);
    size_t got = fread(data, 1, (size_t)(size > 0 ? size : 0), f);
    fclose(f);
    unsigned char needle[1100];
    size_t n = unhex(hex, needle);
    bool found = memmem(data, got, needle, n) != NULL;
    free(data);
    return found;
}

/* None of the blobs is in the database, WAL or availability store files. */
static void assert_gone(char blobs[][2100], int n)
{
    static const char *const files[] = {"ckey.db", "ckey.db-wal", "availability.db",
                                        "availability.db-wal"};
    for (int i = 0; i < n; i++)
        for (size_t f = 0; f < sizeof files / sizeof *files; f++) {
            char path[400];
            snprintf(path, sizeof path, "%s/%s", S.dir, files[f]);
            if (file_holds(path, blobs[i]))
                fail_msg("blob %d (%.16s...) is still in %s", i, blobs[i], files[f]);
        }
}

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

/* The stage of purge id. */
static char *stage_of(const char *id)
{
    json_t *p = cli_json_as(&S, ALICE, NULL, 0, "purge status %s", id);
    char *s = strdup(str(p, "stage"));
    json_decref(p);
    return s;
}

/* ---------- set-up ---------- */

static int setup(void **state)
{
    (void)state;
    srv_start_args(&S, false, "--key-cache-ttl 1 --tik-cache-ttl 2");
    provision_vault(&S, "alice@contoso.com", "sub1", "purge-ma", "westus", true, ALICE);
    principal_oid(MAIL_APP_ID, MAIL_OID);
    principal_oid(FILES_APP_ID, FILES_OID);
    if (cli(&S, NULL, NULL, "tenant create contoso --admin alice@contoso.com") != 0 ||
        cli(&S, NULL, NULL, "tenant create fabrikam --admin alice@contoso.com") != 0)
        return -1;
    snprintf(TMP, sizeof TMP, "/tmp/ckey-purge-XXXXXX");
    if (!mkdtemp(TMP))
        return -1;
    /* The approver's key pair, made offline; and a stranger's. */
    if (cli(&S, NULL, NULL, "purge keygen --out %s --public-out %s", tmp("approver.pem"),
            tmp("approver.pub.pem")) != 0 ||
        cli(&S, NULL, NULL, "purge keygen --out %s --public-out %s", tmp("other.pem"),
            tmp("other.pub.pem")) != 0)
        return -1;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    int status = srv_stop(&S);
    srv_cleanup(&S);
    char *out = NULL;
    sh(&out, "rm -rf %s", TMP);
    free(out);
    return status == 0 ? 0 : -1;
}

/* ---------- onboarding: the approver ---------- */

static void test_approver(void **state)
{
    (void)state;
    json_t *a =
        cli_json_as(&S, ALICE, NULL, 0, "tenant approver set --tenant contoso --public-key %s",
                    tmp("approver.pub.pem"));
    assert_non_null(strstr(str(a, "fingerprint"), "SHA256:"));
    json_decref(a);
    /* Changing it is the operator's, and audited. */
    refused(ALICE, "only the operator", "tenant approver set --tenant contoso --public-key %s",
            tmp("other.pub.pem"));
    json_t *now = cli_json_as(&S, ALICE, NULL, 0, "tenant approver get --tenant contoso");
    json_t *op =
        cli_json_as(&S, NULL, NULL, 0, "tenant approver set --tenant contoso --public-key %s",
                    tmp("other.pub.pem"));
    assert_string_not_equal(str(op, "fingerprint"), str(now, "fingerprint"));
    json_decref(op);
    json_decref(cli_json_as(&S, NULL, NULL, 0,
                            "tenant approver set --tenant contoso --public-key %s",
                            tmp("approver.pub.pem")));
    json_decref(now);
    refused(ALICE, "Ed25519 public key", "tenant approver set --tenant contoso --public-key %s",
            tmp("approver.pem"));
    char *out = NULL;
    sh(&out,
       "sqlite3 %s/ckey.db \"SELECT COUNT(*) FROM ck_audit WHERE operation = "
       "'purge.approver.set'\"",
       S.dir);
    assert_int_equal(atoi(out), 4);
    free(out);
    /* Anyone can fetch the certificate signing key. */
    struct http_result r;
    http(&S, "GET", "/purge/signing-key", NULL, NULL, 0, NULL, &r);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(str(r.json, "publicKey"), "BEGIN PUBLIC KEY"));
    http_free(&r);
}

/* A DEP named name on root keys in two new vaults va and vb (the mail
 * service granted), and upn's mailbox under it; the DEP id into dep. */
static void dep_with_mailbox(const char *va, const char *vb, const char *name, const char *upn,
                             char dep[37])
{
    two_vaults(va, vb, MAIL_OID);
    char *a = key_uri(&S, va, "root"), *b = key_uri(&S, vb, "root");
    json_t *d = cli_json_as(&S, ALICE, NULL, 0,
                            "dep new --tenant contoso --name %s --key %s --key %s", name, a, b);
    snprintf(dep, 37, "%s", str(d, "Identity"));
    json_decref(d);
    json_decref(cli_json_as(&S, ALICE, NULL, 0,
                            "mailuser new --tenant contoso --identity %s --dep %s", upn, dep));
    json_decref(cli_json_as(&S, ALICE, NULL, 0, "mailbox new --tenant contoso --identity %s", upn));
    free(a);
    free(b);
}

/* ---------- the mail path ---------- */

static void test_mail_purge(void **state)
{
    (void)state;
    char dep[37];
    dep_with_mailbox("purge-ma2", "purge-mb", "Leaving", "bob@contoso.com", dep);
    for (int i = 0; i < 30; i++) {
        char id[32], body[100];
        snprintf(id, sizeof id, "m%03d", i);
        snprintf(body, sizeof body, "Subject: %d\n\nsecret body %d\n", i, i);
        put_item("contoso", "bob@contoso.com", id, body);
    }
    /* Every stored copy of the DEP key, the availability key, the mailbox key. */
    char blobs[8][2100];
    char sql[300];
    snprintf(sql, sizeof sql,
             "SELECT hex(wrapped1) FROM ck_dep WHERE id='%s' UNION ALL SELECT hex(wrapped2) FROM "
             "ck_dep WHERE id='%s' UNION ALL SELECT hex(wrapped_avail) FROM ck_dep WHERE id='%s'",
             dep, dep, dep);
    int n = capture("ckey.db", sql, blobs, 8);
    assert_int_equal(n, 3);
    snprintf(sql, sizeof sql, "SELECT hex(sealed) FROM ck_availability_key WHERE dep_id='%s'", dep);
    n += capture("availability.db", sql, blobs + n, 8 - n);
    snprintf(sql, sizeof sql, "SELECT hex(wrapped) FROM ck_mailbox_key WHERE dep_id='%s'", dep);
    n += capture("ckey.db", sql, blobs + n, 8 - n);
    assert_int_equal(n, 5);

    /* Request while the vaults still grant wrapKey: refused, naming them. */
    refused(ALICE, "'purge-ma2' still grants wrapKey",
            "dep purge-request --tenant contoso %s --reason leaving --contact ciso@contoso.com",
            dep);
    vault_policy(&S, ALICE, "purge-ma2", "remove", MAIL_OID, GRANT);
    refused(ALICE, "'purge-mb' still grants wrapKey",
            "dep purge-request --tenant contoso %s --reason leaving --contact ciso@contoso.com",
            dep);
    json_t *d = cli_json_as(&S, ALICE, NULL, 0, "dep get --tenant contoso %s", dep);
    assert_true(json_is_false(json_object_get(d, "PermanentDataPurgeRequested")));
    json_decref(d);
    vault_policy(&S, ALICE, "purge-mb", "remove", MAIL_OID, GRANT);
    json_t *p =
        cli_json_as(&S, ALICE, NULL, 0,
                    "dep purge-request --tenant contoso %s --reason \"contract ended\" --contact "
                    "ciso@contoso.com",
                    dep);
    char id[37];
    snprintf(id, sizeof id, "%s", str(p, "id"));
    assert_string_equal(str(p, "stage"), "requested");
    json_decref(p);
    d = cli_json_as(&S, ALICE, NULL, 0, "dep get --tenant contoso %s", dep);
    assert_true(json_is_true(json_object_get(d, "PermanentDataPurgeRequested")));
    assert_string_equal(str(d, "PermanentDataPurgeReason"), "contract ended");
    assert_string_equal(str(d, "PermanentDataPurgeContact"), "ciso@contoso.com");
    json_decref(d);

    /* Out of order and forged steps: each refused, nothing changed. */
    json_decref(cli_json_as(&S, ALICE, NULL, 0,
                            "mailuser new --tenant contoso --identity eve@contoso.com"));
    refused(ALICE, "can no longer be assigned",
            "mailuser set eve@contoso.com --tenant contoso "
            "--dep %s",
            dep);
    refused(ALICE, "already requested",
            "dep purge-request --tenant contoso %s --reason again --contact x@contoso.com", dep);
    write_text(tmp("forged.json"), "{\"purgeId\":\"00000000-0000-4000-8000-000000000000\"}");
    assert_int_equal(cli(&S, NULL, NULL, "purge sign --in %s --key %s --out %s", tmp("forged.json"),
                         tmp("approver.pem"), tmp("forged.sig")),
                     0);
    refused(NULL, "no purge request", "purge execute --doc %s --sig %s", tmp("forged.json"),
            tmp("forged.sig"));
    char forged[200];
    snprintf(forged, sizeof forged, "{\"purgeId\":\"%s\"}", id);
    write_text(tmp("early.json"), forged);
    assert_int_equal(cli(&S, NULL, NULL, "purge sign --in %s --key %s --out %s", tmp("early.json"),
                         tmp("approver.pem"), tmp("early.sig")),
                     0);
    refused(NULL, "no document was issued", "purge execute --doc %s --sig %s", tmp("early.json"),
            tmp("early.sig"));

    json_decref(cli_json_as(&S, ALICE, NULL, 0, "purge document %s --out %s", id, tmp("doc.json")));
    char *stage = stage_of(id);
    assert_string_equal(stage, "document issued");
    free(stage);
    char *doc = NULL;
    assert_int_equal(sh(&doc, "cat %s", tmp("doc.json")), 0);
    assert_non_null(strstr(doc, "\"upn\":\"bob@contoso.com\""));
    assert_non_null(strstr(doc, "\"name\":\"contoso\""));
    assert_non_null(strstr(doc, "\"items\":30"));
    /* The approver signs offline; a stranger's key; an edited document. */
    assert_int_equal(cli(&S, NULL, NULL, "purge sign --in %s --key %s --out %s", tmp("doc.json"),
                         tmp("approver.pem"), tmp("doc.sig")),
                     0);
    assert_int_equal(cli(&S, NULL, NULL, "purge sign --in %s --key %s --out %s", tmp("doc.json"),
                         tmp("other.pem"), tmp("other.sig")),
                     0);
    char *edited = strdup(doc);
    char *reason = strstr(edited, "contract ended");
    reason[0] = 'C';
    write_text(tmp("edited.json"), edited);
    free(edited);
    free(doc);
    refused(NULL, "\"signature\" is missing", "purge execute --doc %s", tmp("doc.json"));
    refused(NULL, "does not verify", "purge execute --doc %s --sig %s", tmp("doc.json"),
            tmp("other.sig"));
    refused(NULL, "changed after it was issued", "purge execute --doc %s --sig %s",
            tmp("edited.json"), tmp("doc.sig"));
    refused(ALICE, "not an operator", "purge execute --doc %s --sig %s", tmp("doc.json"),
            tmp("doc.sig"));
    stage = stage_of(id);
    assert_string_equal(stage, "document issued");
    free(stage);
    json_decref(cli_json_as(&S, ALICE, NULL, 0, "dep get --tenant contoso %s", dep));

    /* Execute, and wait for the certificate. */
    json_t *done =
        cli_json_as(&S, NULL, NULL, 0, "purge execute --doc %s --sig %s --wait --timeout 120",
                    tmp("doc.json"), tmp("doc.sig"));
    assert_string_equal(str(done, "stage"), "done");
    json_decref(done);
    refused(NULL, "already executed", "purge execute --doc %s --sig %s", tmp("doc.json"),
            tmp("doc.sig"));

    /* Every read of a purged object: 410 naming the purge. */
    struct http_result r;
    http(&S, "GET", "/tenants/contoso/mailboxes/bob@contoso.com/items/m001", ALICE, NULL, 0, NULL,
         &r);
    assert_int_equal(r.status, 410);
    assert_non_null(strstr(r.body, id));
    http_free(&r);
    http(&S, "GET", "/tenants/contoso/mailboxes/bob@contoso.com", ALICE, NULL, 0, NULL, &r);
    assert_int_equal(r.status, 410);
    http_free(&r);
    char path[200];
    snprintf(path, sizeof path, "/tenants/contoso/deps/%s", dep);
    http(&S, "GET", path, ALICE, NULL, 0, NULL, &r);
    assert_int_equal(r.status, 410);
    assert_non_null(strstr(r.body, id));
    http_free(&r);

    /* The certificate, checked against the key the server publishes. */
    assert_int_equal(cli(&S, ALICE, NULL, "purge certificate %s --out %s", id, tmp("cert.json")),
                     0);
    assert_int_equal(cli(&S, NULL, NULL, "purge signing-key --out %s", tmp("service.pem")), 0);
    char *out = NULL;
    assert_int_equal(cli(&S, NULL, &out, "purge check-certificate --in %s --public-key %s",
                         tmp("cert.json"), tmp("service.pem")),
                     0);
    free(out);
    assert_int_equal(sh(&out, "sed 's/\"items\": 30/\"items\": 29/' %s > %s && ! cmp -s %s %s",
                        tmp("cert.json"), tmp("cert-edited.json"), tmp("cert.json"),
                        tmp("cert-edited.json")),
                     0);
    free(out);
    refused(NULL, "does not verify", "purge check-certificate --in %s --public-key %s",
            tmp("cert-edited.json"), tmp("service.pem"));
    /* verify: pass, and the byte scan of our own agrees. */
    assert_int_equal(cli(&S, ALICE, &out, "purge verify %s", id), 0);
    assert_non_null(strstr(out, "result: PASS"));
    free(out);
    assert_gone(blobs, n);
}

/* ---------- a crash in the middle of the purge job ---------- */

static void test_purge_crash(void **state)
{
    (void)state;
    char dep[37];
    dep_with_mailbox("purge-ca", "purge-cb", "Crash", "carol@contoso.com", dep);
    for (int i = 0; i < 1200; i++) {
        char id[32];
        snprintf(id, sizeof id, "c%04d", i);
        put_item("contoso", "carol@contoso.com", id, "Subject: x\n\nbody\n");
    }
    vault_policy(&S, ALICE, "purge-ca", "remove", MAIL_OID, GRANT);
    vault_policy(&S, ALICE, "purge-cb", "remove", MAIL_OID, GRANT);
    json_t *p =
        cli_json_as(&S, ALICE, NULL, 0,
                    "dep purge-request --tenant contoso Crash --reason r --contact c@contoso.com");
    char id[37];
    snprintf(id, sizeof id, "%s", str(p, "id"));
    json_decref(p);
    json_decref(
        cli_json_as(&S, ALICE, NULL, 0, "purge document %s --out %s", id, tmp("crash.json")));
    assert_int_equal(cli(&S, NULL, NULL, "purge sign --in %s --key %s --out %s", tmp("crash.json"),
                         tmp("approver.pem"), tmp("crash.sig")),
                     0);

    /* Slow the job down, execute, and kill the server once the DEP row is
     * gone but items remain. */
    srv_stop(&S);
    srv_start_args(&S, true, "--key-cache-ttl 1 --tik-cache-ttl 2 --job-throttle-ms 700");
    json_decref(cli_json_as(&S, NULL, NULL, 0, "purge execute --doc %s --sig %s", tmp("crash.json"),
                            tmp("crash.sig")));
    bool killed = false;
    for (int i = 0; i < 200 && !killed; i++) {
        char *out = NULL;
        sh(&out,
           "sqlite3 %s/ckey.db \"SELECT (SELECT COUNT(*) FROM ck_dep WHERE id='%s') || ' ' || "
           "(SELECT COUNT(*) FROM ck_mail_item WHERE upn='carol@contoso.com')\"",
           S.dir, dep);
        int dep_rows = -1, items = -1;
        sscanf(out, "%d %d", &dep_rows, &items);
        free(out);
        if (dep_rows == 0 && items > 0 && items < 1200) {
            srv_kill(&S);
            killed = true;
        } else {
            usleep(50 * 1000);
        }
    }
    assert_true(killed);
    srv_start_args(&S, true, "--key-cache-ttl 1 --tik-cache-ttl 2");
    char *out = NULL;
    if (cli(&S, ALICE, &out, "purge status %s --wait --timeout 120", id) != 0)
        fail_msg("after the crash: %s", out);
    free(out);
    assert_int_equal(cli(&S, ALICE, &out, "purge verify %s", id), 0);
    assert_non_null(strstr(out, "result: PASS"));
    free(out);
}

/* ---------- the files path ---------- */

static void test_files_purge(void **state)
{
    (void)state;
    two_vaults("purge-fa", "purge-fb", FILES_OID);
    char *a = key_uri(&S, "purge-fa", "root"), *b = key_uri(&S, "purge-fb", "root");
    char *out = NULL;
    assert_int_equal(cli(&S, ALICE, &out, "geo add --tenant contoso --geo EUR"), 0);
    free(out);
    assert_int_equal(cli(&S, ALICE, &out,
                         "spo-dep register --tenant contoso --geo EUR --primary-key %s "
                         "--secondary-key %s --wait --timeout 120",
                         a, b),
                     0);
    free(out);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(
            cli(&S, ALICE, &out, "site new --tenant contoso --geo EUR --site /sites/s%d", i), 0);
        free(out);
        write_text(tmp("f.txt"), "quarterly numbers\n");
        assert_int_equal(cli(&S, ALICE, &out,
                             "file put --tenant contoso --site /sites/s%d %s docs/q%d.txt", i,
                             tmp("f.txt"), i),
                         0);
        free(out);
    }
    char blobs[32][2100];
    int n = capture("ckey.db",
                    "SELECT hex(wrapped1) FROM ck_tik WHERE tenant IN (SELECT id FROM ck_tenant "
                    "WHERE name='contoso') AND geo='EUR' AND service_managed=0 UNION ALL SELECT "
                    "hex(wrapped2) FROM ck_tik WHERE geo='EUR' AND service_managed=0 UNION ALL "
                    "SELECT hex(wrapped_site_key) FROM ck_site WHERE geo='EUR'",
                    blobs, 32);
    assert_true(n >= 5);
    n += capture("availability.db", "SELECT hex(sealed) FROM ck_files_availability_key", blobs + n,
                 32 - n);

    refused(ALICE, "still grants wrapKey",
            "spo-dep purge-request --tenant contoso --geo EUR --reason r --contact c@contoso.com");
    vault_policy(&S, ALICE, "purge-fa", "remove", FILES_OID, GRANT);
    vault_policy(&S, ALICE, "purge-fb", "remove", FILES_OID, GRANT);
    json_t *p =
        cli_json_as(&S, ALICE, NULL, 0,
                    "spo-dep purge-request --tenant contoso --geo EUR --reason \"moving out\" "
                    "--contact it@contoso.com");
    char id[37];
    snprintf(id, sizeof id, "%s", str(p, "id"));
    assert_string_equal(str(p, "kind"), "files");
    json_decref(p);
    refused(ALICE, "purge", "site new --tenant contoso --geo EUR --site /sites/late");
    json_decref(
        cli_json_as(&S, ALICE, NULL, 0, "purge document %s --out %s", id, tmp("fdoc.json")));
    assert_int_equal(sh(&out, "grep -c '/sites/s2' %s", tmp("fdoc.json")), 0);
    free(out);
    /* This approver uses OpenSSL: an Ed25519 key and a raw signature made
     * with `openssl pkeyutl`, registered by the operator (a change). */
    assert_int_equal(sh(&out,
                        "openssl genpkey -algorithm ed25519 -out %s && openssl pkey -in %s "
                        "-pubout -out %s && openssl pkeyutl -sign -rawin -inkey %s -in %s -out %s",
                        tmp("ossl.pem"), tmp("ossl.pem"), tmp("ossl.pub.pem"), tmp("ossl.pem"),
                        tmp("fdoc.json"), tmp("fdoc.sig")),
                     0);
    free(out);
    refused(NULL, "does not verify", "purge execute --doc %s --sig %s", tmp("fdoc.json"),
            tmp("fdoc.sig"));
    json_decref(cli_json_as(&S, NULL, NULL, 0,
                            "tenant approver set --tenant contoso --public-key %s",
                            tmp("ossl.pub.pem")));
    refused(NULL, "does not verify", "purge execute --doc %s --sig %s", tmp("fdoc.json"),
            tmp("forged.sig"));
    json_decref(cli_json_as(&S, NULL, NULL, 0,
                            "purge execute --doc %s --sig %s --wait --timeout 120",
                            tmp("fdoc.json"), tmp("fdoc.sig")));
    json_decref(cli_json_as(&S, NULL, NULL, 0,
                            "tenant approver set --tenant contoso --public-key %s",
                            tmp("approver.pub.pem")));
    refused(ALICE, "purged", "file get --tenant contoso --site /sites/s1 docs/q1.txt %s",
            tmp("back.txt"));
    struct http_result r;
    http(&S, "GET", "/tenants/contoso/sites/s1/files/docs/q1.txt", ALICE, NULL, 0, NULL, &r);
    assert_int_equal(r.status, 410);
    assert_non_null(strstr(r.body, id));
    http_free(&r);
    assert_int_equal(cli(&S, ALICE, NULL, "purge certificate %s --out %s", id, tmp("fcert.json")),
                     0);
    assert_int_equal(cli(&S, NULL, &out, "purge check-certificate --in %s", tmp("fcert.json")), 0);
    free(out);
    assert_int_equal(cli(&S, ALICE, &out, "purge verify %s", id), 0);
    assert_non_null(strstr(out, "result: PASS"));
    free(out);
    assert_gone(blobs, n);
    free(a);
    free(b);
}

/* ---------- offboarding ---------- */

static int vault_calls(const char *v1, const char *v2)
{
    char *out = NULL;
    sh(&out,
       "sqlite3 %s/ckey.db \"SELECT COUNT(*) FROM ck_audit WHERE operation LIKE 'key.%%' AND "
       "(target LIKE '%s/%%' OR target LIKE '%s/%%')\"",
       S.dir, v1, v2);
    int n = atoi(out);
    free(out);
    return n;
}

static void test_offboard(void **state)
{
    (void)state;
    two_vaults("off-ma", "off-mb", MAIL_OID);
    vault_policy(&S, ALICE, "off-ma", "add", FILES_OID, GRANT);
    vault_policy(&S, ALICE, "off-mb", "add", FILES_OID, GRANT);
    char *a = key_uri(&S, "off-ma", "root"), *b = key_uri(&S, "off-mb", "root");
    json_t *d = cli_json_as(&S, ALICE, NULL, 0,
                            "dep new --tenant fabrikam --name FabDEP --key %s --key %s", a, b);
    char dep[37];
    snprintf(dep, sizeof dep, "%s", str(d, "Identity"));
    json_decref(d);
    const char *upns[2] = {"dan@fabrikam.com", "fay@fabrikam.com"};
    for (int u = 0; u < 2; u++) {
        json_decref(cli_json_as(&S, ALICE, NULL, 0,
                                "mailuser new --tenant fabrikam --identity %s --dep %s", upns[u],
                                dep));
        json_decref(cli_json_as(&S, ALICE, NULL, 0, "mailbox new --tenant fabrikam --identity %s",
                                upns[u]));
        for (int i = 0; i < 60; i++) {
            char id[16], body[100];
            snprintf(id, sizeof id, "i%02d", i);
            snprintf(body, sizeof body, "Subject: %s %d\n\nhello %d\n", upns[u], i, i * 7);
            put_item("fabrikam", upns[u], id, body);
        }
    }
    char *out = NULL;
    assert_int_equal(cli(&S, ALICE, &out, "geo add --tenant fabrikam --geo NAM"), 0);
    free(out);
    assert_int_equal(cli(&S, ALICE, &out,
                         "spo-dep register --tenant fabrikam --geo NAM --primary-key %s "
                         "--secondary-key %s --wait --timeout 120",
                         a, b),
                     0);
    free(out);
    assert_int_equal(cli(&S, ALICE, &out, "site new --tenant fabrikam --geo NAM --site /sites/fin"),
                     0);
    free(out);
    assert_int_equal(sh(&out, "head -c 300000 /dev/urandom > %s", tmp("big.bin")), 0);
    free(out);
    assert_int_equal(cli(&S, ALICE, &out,
                         "file put --tenant fabrikam --site /sites/fin %s ledger.bin "
                         "--chunk-size 65536",
                         tmp("big.bin")),
                     0);
    free(out);

    /* Offboard: everything moves back, nothing is lost. */
    json_t *o = cli_json_as(&S, NULL, NULL, 0, "tenant offboard fabrikam --timeout 180");
    assert_string_equal(str(o, "state"), "done");
    assert_int_equal(json_integer_value(json_object_get(json_object_get(o, "mailboxes"), "moved")),
                     2);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(o, "geos"), "moved")), 1);
    json_decref(o);
    d = cli_json_as(&S, ALICE, NULL, 0, "dep get --tenant fabrikam %s", dep);
    assert_true(json_is_false(json_object_get(d, "Enabled")));
    json_decref(d);
    json_t *spo = cli_json_as(&S, ALICE, NULL, 0, "spo-dep get --tenant fabrikam --geo NAM");
    assert_string_equal(str(spo, "State"), "Unregistered");
    json_decref(spo);

    /* From now on the customer's vaults are not called, whatever is read. */
    sleep(3); /* past every cache TTL */
    int before = vault_calls("off-ma", "off-mb");
    for (int u = 0; u < 2; u++) {
        json_t *st = cli_json_as(&S, ALICE, NULL, 0, "mailbox stats %s --tenant fabrikam", upns[u]);
        assert_true(json_is_null(json_object_get(st, "DataEncryptionPolicyID")));
        assert_true(json_is_true(json_object_get(st, "IsEncrypted")));
        json_decref(st);
        for (int i = 0; i < 60; i++) {
            char id[16], want[100], *body = NULL;
            snprintf(id, sizeof id, "i%02d", i);
            snprintf(want, sizeof want, "Subject: %s %d\n\nhello %d\n", upns[u], i, i * 7);
            assert_int_equal(get_item("fabrikam", upns[u], id, &body), 200);
            assert_string_equal(body, want);
            free(body);
        }
    }
    assert_int_equal(cli(&S, ALICE, &out,
                         "file get --tenant fabrikam --site /sites/fin ledger.bin "
                         "%s",
                         tmp("back.bin")),
                     0);
    free(out);
    assert_int_equal(sh(&out, "cmp %s %s", tmp("big.bin"), tmp("back.bin")), 0);
    free(out);
    assert_int_equal(vault_calls("off-ma", "off-mb"), before);
    free(a);
    free(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_approver),    cmocka_unit_test(test_mail_purge),
        cmocka_unit_test(test_files_purge), cmocka_unit_test(test_offboard),
        cmocka_unit_test(test_purge_crash),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
